// SPDX-License-Identifier: MIT
/*
 * The data path of one RDMA connection: an RC queue pair, one CQ for both
 * directions driven through its completion channel on the loop, SEND/RECV
 * messages under credit-based flow control (xrdma_proto.h), and RDMA
 * READ/WRITE split into chunks.
 *
 * Receives: depth buffers of (header + max) bytes, all posted before the
 * connection is accepted and each posted again right after its message was
 * handed to the user. wr_id = XRDMA_WRID_RECV | index.
 *
 * Sends: every send work request (SEND, RDMA READ, RDMA WRITE) takes the
 * next slot of a ring of sqd slots; wr_id is its sequence number. SENDs of
 * up to max_inline bytes are posted inline, larger ones are copied into the
 * send ring, a registered buffer freed in posting order. Only some SENDs
 * are signalled: one in XRDMA_SIGNAL_EVERY, and every one posted while the
 * slots are at least half used or while the ring could not take another
 * message of the largest size. So whenever posting has to wait for a slot
 * or ring space, the newest work request is signalled, and its completion
 * (completions of a QP arrive in posting order) frees everything before it.
 * RDMA READ/WRITE chunks are always signalled. One slot is kept for CREDIT
 * messages, like the last credit.
 *
 * Failures: an error completion ends the connection (-EIO; a remote access
 * error fails its operation with -EACCES). A flushed work request with no
 * error before it means the peer or the CM moved the QP to the error state;
 * the CM event that says why normally follows at once, else the connection
 * ends after XRDMA_FLUSH_GRACE_S.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/log.h"

#include "xrdma_int.h"

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

static unsigned sq_free(const struct xrdma_conn *c)
{
	return c->sqd - (unsigned)(c->sq_tail - c->sq_head);
}

static const char *peer(const struct xrdma_conn *c)
{
	return c->peer_name[0] ? c->peer_name : c->peer_addr;
}

/* ---- set-up and teardown ------------------------------------------------- */

static void cq_cb(struct ev_loop *loop, ev_io *w, int revents);
static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents);

static int post_recv(struct xrdma_conn *c, uint32_t idx)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(c->rbuf + (size_t)idx * c->rbuf_sz),
		.length = (uint32_t)c->rbuf_sz,
		.lkey = c->rmr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = XRDMA_WRID_RECV | idx, .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;

	return ibv_post_recv(c->id->qp, &wr, &bad);
}

static int create_qp(struct xrdma_conn *c, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa;
	uint32_t inl = XRDMA_INLINE_WANT;

	for (;;) {
		memset(&qa, 0, sizeof(qa));
		qa.send_cq = c->cq;
		qa.recv_cq = c->cq;
		qa.qp_type = IBV_QPT_RC;
		qa.sq_sig_all = 0;
		qa.cap.max_send_wr = c->sqd;
		qa.cap.max_recv_wr = c->depth;
		qa.cap.max_send_sge = 1;
		qa.cap.max_recv_sge = 1;
		qa.cap.max_inline_data = inl;
		if (rdma_create_qp(id, c->r->pd, &qa) == 0)
			break;
		/* Some devices take less inline data, some none. */
		if (inl == 0)
			return -errno;
		inl = inl > 64 ? 64 : 0;
	}
	c->max_inline = qa.cap.max_inline_data < XRDMA_INLINE_WANT ? qa.cap.max_inline_data
								   : XRDMA_INLINE_WANT;
	return 0;
}

int xrdma_dp_setup(struct xrdma_conn *c, struct rdma_cm_id *id)
{
	struct xrdma *r = c->r;
	size_t rsz = XRDMA_MSG_HDR_LEN + (size_t)c->max;
	size_t ring = 8 * rsz;
	uint8_t tmo = XRDMA_ACK_TIMEOUT;
	const char *what;
	int rc;

	if (id->verbs != r->ctx) {
		fab_warn("xport rdma: %s is reached through RDMA device %s, but this transport "
			 "uses %s; refusing the connection",
			 c->peer_addr, id->verbs ? ibv_get_device_name(id->verbs->device) : "?",
			 r->devname);
		return -ENODEV;
	}
	c->rbuf_sz = round_up(rsz, 64);
	c->rbuf_len = round_up(c->rbuf_sz * c->depth, 4096);
	if (ring < (256u << 10))
		ring = 256u << 10;
	if (ring > (8u << 20))
		ring = 8u << 20;
	if (ring < 2 * rsz)
		ring = 2 * rsz;
	c->ring.size = round_up(ring, 4096);
	c->sqd = XRDMA_SQ_DEPTH < r->max_wr ? XRDMA_SQ_DEPTH : r->max_wr;

	what = "buffers";
	c->rbuf = aligned_alloc(4096, c->rbuf_len);
	c->sbuf = aligned_alloc(4096, c->ring.size);
	c->sq = calloc(c->sqd, sizeof(*c->sq));
	if (!c->rbuf || !c->sbuf || !c->sq) {
		rc = -ENOMEM;
		goto err;
	}
	what = "memory registration";
	c->rmr = ibv_reg_mr(r->pd, c->rbuf, c->rbuf_len, IBV_ACCESS_LOCAL_WRITE);
	if (!c->rmr)
		goto err_errno;
	c->smr = ibv_reg_mr(r->pd, c->sbuf, c->ring.size, 0);
	if (!c->smr)
		goto err_errno;
	what = "completion channel";
	c->cch = ibv_create_comp_channel(id->verbs);
	if (!c->cch)
		goto err_errno;
	if (fcntl(c->cch->fd, F_SETFL, fcntl(c->cch->fd, F_GETFL) | O_NONBLOCK) < 0)
		goto err_errno;
	what = "completion queue";
	c->cq = ibv_create_cq(id->verbs, (int)(c->depth + c->sqd + 1), c, c->cch, 0);
	if (!c->cq)
		goto err_errno;
	what = "queue pair";
	c->id = id;
	rc = create_qp(c, id);
	if (rc)
		goto err;
	what = "receive buffers";
	for (uint32_t i = 0; i < c->depth; i++) {
		rc = -post_recv(c, i);
		if (rc)
			goto err;
	}
	what = "completion notification";
	rc = -ibv_req_notify_cq(c->cq, 0);
	if (rc)
		goto err;
	/* Before rdma_connect()/rdma_accept(): applied when the QP goes to RTS.
	 * Older kernels lack the option; their default is then used. */
	if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &tmo, sizeof(tmo)))
		fab_debug("xport rdma: cannot set the ACK timeout: %s", strerror(errno));
	xrdma_credits_init(&c->cr, c->depth, c->peer_depth);
	ev_io_set(&c->cq_io, c->cch->fd, EV_READ);
	ev_io_start(c->loop, &c->cq_io);
	return 0;
err_errno:
	rc = -errno;
	if (!rc)
		rc = -EIO;
err:
	fab_warn("xport rdma: connection with %s: cannot set up the %s on %s: %s", peer(c), what,
		 r->devname, strerror(-rc));
	c->logged = 1;
	return rc;
}

void xrdma_dp_stop(struct xrdma_conn *c)
{
	ev_io_stop(c->loop, &c->cq_io);
	ev_timer_stop(c->loop, &c->kick);
}

void xrdma_dp_teardown(struct xrdma_conn *c)
{
	xrdma_dp_stop(c);
	/* The QP first: after it is gone nothing touches the buffers. */
	if (c->id && c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->cq) {
		if (c->cq_unacked)
			ibv_ack_cq_events(c->cq, c->cq_unacked);
		c->cq_unacked = 0;
		ibv_destroy_cq(c->cq);
		c->cq = NULL;
	}
	if (c->cch) {
		ibv_destroy_comp_channel(c->cch);
		c->cch = NULL;
	}
	if (c->rmr)
		ibv_dereg_mr(c->rmr);
	if (c->smr)
		ibv_dereg_mr(c->smr);
	c->rmr = c->smr = NULL;
	free(c->rbuf);
	free(c->sbuf);
	free(c->sq);
	c->rbuf = c->sbuf = NULL;
	c->sq = NULL;
}

void xrdma_dp_free_sendq(struct xrdma_conn *c)
{
	struct xrdma_msg *m;

	while ((m = TAILQ_FIRST(&c->sendq))) {
		TAILQ_REMOVE(&c->sendq, m, link);
		free(m);
	}
	c->queued = 0;
}

void xrdma_dp_fail_ops(struct xrdma_conn *c, int err, int keep_own)
{
	struct xrdma_op *op;

	c->rd_inflight = c->wr_inflight = 0;
	while ((op = TAILQ_FIRST(&c->ops))) {
		TAILQ_REMOVE(&c->ops, op, link);
		op->cb(keep_own && op->err ? op->err : err, op->arg);
		free(op);
	}
}

/* ---- posting ------------------------------------------------------------- */

static void gather(uint8_t *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Posts wr into the next slot, which becomes *s. Returns 0, or -EIO with
 * the connection failed. */
static int post_wr(struct xrdma_conn *c, struct ibv_send_wr *wr, const struct xrdma_slot *s,
		   int signal)
{
	struct ibv_send_wr *bad;
	uint64_t seq = c->sq_tail;
	int rc;

	signal = signal || c->unsignaled + 1 >= XRDMA_SIGNAL_EVERY ||
		 (unsigned)(seq + 1 - c->sq_head) >= c->sqd / 2 ||
		 !xrdma_ring_fits(&c->ring, XRDMA_MSG_HDR_LEN + (size_t)c->max);
	wr->wr_id = seq;
	if (signal)
		wr->send_flags |= IBV_SEND_SIGNALED;
	rc = ibv_post_send(c->id->qp, wr, &bad);
	if (rc) {
		char why[96];

		snprintf(why, sizeof(why), "cannot post a send work request: %s", strerror(rc));
		xrdma_conn_fail(c, -EIO, why);
		return -EIO;
	}
	c->sq[seq % c->sqd] = *s;
	c->sq_tail++;
	c->unsignaled = signal ? 0 : c->unsignaled + 1;
	return 0;
}

/* Posts one SEND of type whose payload is iov (len bytes). The caller has
 * checked credits and slots. Returns 0, -EAGAIN (no room in the ring) or
 * -EIO (connection failed). */
static int post_send(struct xrdma_conn *c, uint8_t type, const struct iovec *iov, int iovcnt,
		     size_t len)
{
	uint8_t tmp[XRDMA_INLINE_WANT];
	size_t total = XRDMA_MSG_HDR_LEN + len, off = 0, consumed = 0;
	struct xrdma_slot s = { 0 };
	struct ibv_sge sge;
	struct ibv_send_wr wr;
	uint8_t *p;

	memset(&wr, 0, sizeof(wr));
	if (total <= c->max_inline) {
		p = tmp;
		sge.lkey = 0;
		wr.send_flags = IBV_SEND_INLINE;
	} else {
		if (xrdma_ring_alloc(&c->ring, total, &off, &consumed))
			return -EAGAIN;
		p = c->sbuf + off;
		sge.lkey = c->smr->lkey;
		s.end = off + total;
		s.consumed = consumed;
	}
	sge.addr = (uintptr_t)p;
	sge.length = (uint32_t)total;
	gather(p + XRDMA_MSG_HDR_LEN, iov, iovcnt);
	xrdma_msg_hdr_put(p, type, xrdma_credit_tx(&c->cr), (uint32_t)len);
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	return post_wr(c, &wr, &s, 0);
}

/* A user message, if credits and resources allow now: 0, -EAGAIN, -EIO. */
static int post_msg(struct xrdma_conn *c, const struct iovec *iov, int iovcnt, size_t len)
{
	if (!xrdma_credit_can_send_msg(&c->cr) || sq_free(c) < 2)
		return -EAGAIN;
	return post_send(c, XRDMA_MSG, iov, iovcnt, len);
}

static void pump_ops(struct xrdma_conn *c)
{
	struct xrdma_op *op;

	TAILQ_FOREACH(op, &c->ops, link)
	{
		while (op->issued < op->len && !op->err) {
			struct xrdma_slot s = { .op = op };
			size_t left = op->len - op->issued;
			uint32_t n = left > c->r->chunk ? c->r->chunk : (uint32_t)left;
			struct ibv_sge sge = {
				.addr = (uintptr_t)(op->buf + op->issued),
				.length = n,
				.lkey = op->lkey,
			};
			struct ibv_send_wr wr;

			if (sq_free(c) < 2)
				return;
			if (op->write ? c->wr_inflight >= XRDMA_WRITE_WINDOW
				      : c->rd_inflight >= c->ord)
				break; /* the other kind may still go */
			memset(&wr, 0, sizeof(wr));
			wr.opcode = op->write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
			wr.sg_list = &sge;
			wr.num_sge = 1;
			wr.wr.rdma.remote_addr = op->raddr + op->issued;
			wr.wr.rdma.rkey = op->rkey;
			if (post_wr(c, &wr, &s, 1))
				return;
			op->issued += n;
			op->inflight++;
			if (op->write)
				c->wr_inflight++;
			else
				c->rd_inflight++;
		}
	}
}

/* Posts what waits: queued messages, chunks, then a CREDIT if one is due.
 * Never calls a user callback. */
static void pump(struct xrdma_conn *c)
{
	struct xrdma_msg *m;

	if (c->state != XRDMA_UP || c->flushed)
		return;
	while ((m = TAILQ_FIRST(&c->sendq))) {
		struct iovec v = { m->data, m->len };

		if (post_msg(c, &v, 1, m->len))
			break;
		TAILQ_REMOVE(&c->sendq, m, link);
		c->queued -= m->len;
		free(m);
	}
	if (c->state != XRDMA_UP)
		return;
	pump_ops(c);
	if (c->state == XRDMA_UP && sq_free(c) >= 1 && xrdma_credit_should_send_credit(&c->cr))
		post_send(c, XRDMA_CREDIT, NULL, 0, 0);
}

int xrdma_dp_sendv(struct xrdma_conn *c, const struct iovec *iov, int iovcnt)
{
	struct xrdma_msg *m;
	size_t len = 0;
	int rc;

	if (c->state != XRDMA_UP || c->flushed)
		return -ENOTCONN;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > c->max)
			return -EMSGSIZE;
		len += iov[i].iov_len;
	}
	if (len == 0)
		return -EINVAL;
	if (len > c->max)
		return -EMSGSIZE;
	/* Counted when taken: queued messages are sent unless the
	 * connection ends, as with TCP. */
	if (TAILQ_EMPTY(&c->sendq)) {
		rc = post_msg(c, iov, iovcnt, len);
		if (rc == 0)
			goto sent;
		if (rc != -EAGAIN)
			return -ENOTCONN;
	}
	if (c->queued + len > c->r->hwm) {
		c->blocked = 1;
		return -EAGAIN;
	}
	m = malloc(sizeof(*m) + len);
	if (!m)
		return -ENOMEM;
	m->len = len;
	gather(m->data, iov, iovcnt);
	TAILQ_INSERT_TAIL(&c->sendq, m, link);
	c->queued += len;
sent:
	c->st.msgs_tx++;
	c->st.bytes_tx += len;
	return 0;
}

int xrdma_dp_rma(struct xrdma_conn *c, int write, struct xport_mr *local, void *buf, size_t len,
		 const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	struct xrdma_mr *m = container_of(local, struct xrdma_mr, base);
	struct xrdma_op *op;

	if (c->state != XRDMA_UP || c->flushed)
		return -ENOTCONN;
	/* An rkey is 32 bits: anything else is not a key of ours. */
	if (key->id > UINT32_MAX)
		return -EINVAL;
	if (offset > key->length || len > key->length - offset || key->addr > UINT64_MAX - offset ||
	    len > UINT64_MAX - (key->addr + offset))
		return -ERANGE;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->write = write;
	op->buf = buf;
	op->len = len;
	op->lkey = m->mr->lkey;
	op->rkey = (uint32_t)key->id;
	op->raddr = key->addr + offset;
	op->cb = cb;
	op->arg = arg;
	TAILQ_INSERT_TAIL(&c->ops, op, link);
	pump_ops(c);
	return 0;
}

/* ---- completions --------------------------------------------------------- */

static void op_maybe_done(struct xrdma_conn *c, struct xrdma_op *op)
{
	/* Failed operations complete at teardown, after the QP is gone and
	 * none of their chunks can still move data. */
	if (op->err || op->inflight || op->issued < op->len)
		return;
	TAILQ_REMOVE(&c->ops, op, link);
	if (op->write) {
		c->st.writes++;
		c->st.write_bytes += op->len;
	} else {
		c->st.reads++;
		c->st.read_bytes += op->len;
	}
	op->cb(0, op->arg);
	free(op);
}

static void retire(struct xrdma_conn *c, struct xrdma_slot *s)
{
	struct xrdma_op *op = s->op;

	if (s->consumed)
		xrdma_ring_free(&c->ring, s->end, s->consumed);
	memset(s, 0, sizeof(*s));
	if (!op)
		return;
	op->inflight--;
	if (op->write)
		c->wr_inflight--;
	else
		c->rd_inflight--;
	op_maybe_done(c, op);
}

static void on_flush(struct xrdma_conn *c)
{
	if (c->flushed)
		return;
	c->flushed = 1;
	fab_debug("xport rdma: queue pair with %s flushed", peer(c));
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, XRDMA_FLUSH_GRACE_S, 0.);
	ev_timer_start(c->loop, &c->timer);
}

static void on_send_wc(struct xrdma_conn *c, const struct ibv_wc *wc)
{
	uint64_t seq = wc->wr_id;
	char why[160];

	if (seq < c->sq_head || seq >= c->sq_tail) {
		xrdma_conn_fail(c, -EIO, "completion of an unknown send work request");
		return;
	}
	if (wc->status == IBV_WC_WR_FLUSH_ERR) {
		on_flush(c);
		return;
	}
	if (wc->status != IBV_WC_SUCCESS) {
		struct xrdma_op *op = c->sq[seq % c->sqd].op;

		if (op && !op->err)
			op->err = wc->status == IBV_WC_REM_ACCESS_ERR ? -EACCES : -EIO;
		snprintf(why, sizeof(why), "%s failed: %s (vendor error %u)",
			 !op	     ? "send"
			 : op->write ? "RDMA write"
				     : "RDMA read",
			 ibv_wc_status_str(wc->status), wc->vendor_err);
		xrdma_conn_fail(c, -EIO, why);
		return;
	}
	/* This one and every unsignalled one before it are done. */
	while (c->sq_head <= seq) {
		struct xrdma_slot *s = &c->sq[c->sq_head % c->sqd];

		c->sq_head++;
		retire(c, s);
	}
}

static void on_recv_wc(struct xrdma_conn *c, const struct ibv_wc *wc)
{
	uint64_t idx = wc->wr_id & ~XRDMA_WRID_RECV;
	struct xrdma_msg_hdr h;
	const char *why = NULL;
	const uint8_t *p;
	int rc;

	if (wc->status == IBV_WC_WR_FLUSH_ERR) {
		on_flush(c);
		return;
	}
	if (idx >= c->depth) {
		xrdma_conn_fail(c, -EIO, "completion of an unknown receive");
		return;
	}
	if (wc->status == IBV_WC_LOC_LEN_ERR) {
		xrdma_proto_fail(c, "message larger than the negotiated maximum");
		return;
	}
	if (wc->status != IBV_WC_SUCCESS) {
		char buf[128];

		snprintf(buf, sizeof(buf), "receive failed: %s (vendor error %u)",
			 ibv_wc_status_str(wc->status), wc->vendor_err);
		xrdma_conn_fail(c, -EIO, buf);
		return;
	}
	if (wc->opcode != IBV_WC_RECV || (wc->wc_flags & IBV_WC_WITH_IMM)) {
		xrdma_proto_fail(c, "work completion other than a plain SEND");
		return;
	}
	p = c->rbuf + idx * c->rbuf_sz;
	if (xrdma_msg_parse(p, wc->byte_len, c->max, &h, &why) ||
	    xrdma_credit_rx(&c->cr, h.type, h.credits, &why)) {
		xrdma_proto_fail(c, why);
		return;
	}
	if (h.type == XRDMA_MSG) {
		c->st.msgs_rx++;
		c->st.bytes_rx += h.len;
		if (c->base.cbs->recv_cb)
			c->base.cbs->recv_cb(&c->base, p + XRDMA_MSG_HDR_LEN, h.len, c->base.arg);
		if (c->state != XRDMA_UP)
			return; /* closed from the callback: the QP goes away */
	}
	rc = post_recv(c, (uint32_t)idx);
	if (rc) {
		char buf[96];

		snprintf(buf, sizeof(buf), "cannot post a receive: %s", strerror(rc));
		xrdma_conn_fail(c, -EIO, buf);
		return;
	}
	xrdma_credit_reposted(&c->cr);
}

void xrdma_dp_poll(struct xrdma_conn *c)
{
	int budget = XRDMA_POLL_BUDGET, armed = 0;
	struct ibv_wc wc[16];

	/* Before the user holds the connection nothing is delivered; the
	 * first poll after it is up arms the CQ. */
	if (c->state != XRDMA_UP || !c->cq)
		return;
	while (c->state == XRDMA_UP && !c->flushed) {
		int n = ibv_poll_cq(c->cq, (int)(sizeof(wc) / sizeof(wc[0])), wc);

		if (n < 0) {
			xrdma_conn_fail(c, -EIO, "polling the completion queue failed");
			return;
		}
		if (n == 0) {
			if (armed)
				break;
			/* Arm, then poll once more: a completion that came
			 * in between raised no event. */
			if (ibv_req_notify_cq(c->cq, 0)) {
				xrdma_conn_fail(c, -EIO, "cannot arm the completion queue");
				return;
			}
			armed = 1;
			continue;
		}
		for (int i = 0; i < n && c->state == XRDMA_UP && !c->flushed; i++) {
			if (wc[i].wr_id & XRDMA_WRID_RECV)
				on_recv_wc(c, &wc[i]);
			else
				on_send_wc(c, &wc[i]);
		}
		budget -= n;
		if (budget <= 0) {
			/* Let other watchers run; go on next iteration. */
			ev_timer_set(&c->kick, 0., 0.);
			ev_timer_start(c->loop, &c->kick);
			break;
		}
	}
	pump(c);
	if (c->blocked && c->state == XRDMA_UP && !c->flushed &&
	    (c->queued < c->r->lwm || c->queued == 0)) {
		c->blocked = 0;
		if (c->base.cbs->writable_cb)
			c->base.cbs->writable_cb(&c->base, c->base.arg);
	}
}

static void cq_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xrdma_conn *c = w->data;
	struct ibv_cq *cq;
	void *ctx;

	while (ibv_get_cq_event(c->cch, &cq, &ctx) == 0)
		c->cq_unacked++;
	if (c->cq_unacked >= XRDMA_CQ_ACK_BATCH) {
		ibv_ack_cq_events(c->cq, c->cq_unacked);
		c->cq_unacked = 0;
	}
	xrdma_dp_poll(c);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	xrdma_dp_poll(w->data);
}

void xrdma_dp_init(struct xrdma_conn *c)
{
	TAILQ_INIT(&c->sendq);
	TAILQ_INIT(&c->ops);
	ev_init(&c->cq_io, cq_cb);
	c->cq_io.data = c;
	ev_timer_init(&c->kick, kick_cb, 0., 0.);
	c->kick.data = c;
}
