// SPDX-License-Identifier: MIT
/*
 * TCP backend of xport: one fab_conn (TLS 1.3, mutual authentication with the
 * cluster certificates, TCP_NODELAY, bounded frames) per connection. Inside
 * every frame a small header of ours says what the frame is (all integers big
 * endian, like the frame header):
 *
 *   off 0  u8   type: 1 HELLO, 2 MSG, 3 READ_REQ, 4 READ_RESP, 5 WRITE_REQ,
 *               6 WRITE_RESP
 *   off 1  u8   flags, 0
 *   off 2  u16  reserved, 0
 *
 * HELLO (12 bytes, each side sends one right after it has authenticated the
 * peer, so receiving it proves the peer accepted us too):
 *   off 4  u32  version (1)
 *   off 8  u32  largest message/chunk the sender accepts (>= 4096)
 *
 * MSG: the user's message follows the 4 bytes (1..max bytes).
 *
 * READ_REQ, READ_RESP, WRITE_REQ, WRITE_RESP (40-byte header):
 *   off 4  u32  status: 0 ok, 1 no such key, 2 out of range, 3 no access
 *               (replies only; 0 in requests)
 *   off 8  u64  request id (non-zero, chosen by the requester, echoed)
 *   off 16 u64  key id
 *   off 24 u64  offset in the registration
 *   off 32 u32  length (READ_REQ: bytes wanted; WRITE_REQ, READ_RESP: bytes
 *               following the header; WRITE_RESP: echo of the request's)
 *   off 36 u32  reserved, 0
 * A failed READ_RESP carries no data and length 0.
 *
 * Remote operations are split into chunks of at most the connection's max
 * message size, and at most XTCP_WINDOW chunk requests are in flight per
 * connection and direction; this bounds what a well-behaved peer makes us
 * queue, and the send queue's hard limit closes the connection of one that
 * is not (it keeps asking and never reads the replies).
 *
 * A request the target refuses gets an error reply and the connection stays
 * usable; a frame that breaks the format or refers to a request we never made
 * closes the connection (-EPROTO, reason logged).
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "fab/conn.h"
#include "fab/frame.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "fab/xport.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define XTCP_VERSION	   1
#define XTCP_HDR_LEN	   4
#define XTCP_HELLO_LEN	   12
#define XTCP_RMA_HDR_LEN   40
#define XTCP_WINDOW	   4 /* chunk requests in flight per connection */
#define XTCP_DEFAULT_HWM   (4u << 20)
#define XTCP_DEFAULT_TMO_S 10.0
#define XTCP_FRAME_SLACK   64 /* frame header and ours, rounded up */

enum xtcp_type {
	XTCP_HELLO = 1,
	XTCP_MSG = 2,
	XTCP_READ_REQ = 3,
	XTCP_READ_RESP = 4,
	XTCP_WRITE_REQ = 5,
	XTCP_WRITE_RESP = 6,
};

enum xtcp_status {
	XTCP_ST_OK = 0,
	XTCP_ST_NOKEY = 1,
	XTCP_ST_RANGE = 2,
	XTCP_ST_ACCESS = 3,
	XTCP_ST_MAX = XTCP_ST_ACCESS,
};

enum xtcp_state {
	XTCP_AUTH,	 /* TLS handshake and identity check (fab_conn) */
	XTCP_HELLO_WAIT, /* we accepted the peer; has it accepted us? */
	XTCP_UP,
	XTCP_DOWN, /* closing: fab_conn's close_cb pending */
};

struct xtcp {
	struct xport base;
	char pki_dir[PATH_MAX];
	char name[FAB_NAME_MAX];
	uint32_t max_msg;
	size_t hwm, lwm, hard_queue;
	double tmo;
	SSL_CTX *sctx, *cctx;
	LIST_HEAD(, xtcp_listener) listeners;
	LIST_HEAD(, xtcp_conn) conns;
	LIST_HEAD(, xtcp_mr) mrs;
};

struct xtcp_listener {
	struct xtcp *t;
	ev_io io;
	xport_accept_cb cb;
	void *arg;
	LIST_ENTRY(xtcp_listener) link;
};

struct xtcp_mr {
	struct xport_mr base;
	LIST_ENTRY(xtcp_mr) link;
};

struct xtcp_op {
	TAILQ_ENTRY(xtcp_op) link;
	int write;
	uint8_t *buf;
	size_t len;
	uint64_t key, off;
	size_t issued;	   /* bytes requested so far */
	unsigned inflight; /* chunks awaiting a reply */
	int err;	   /* first error; no more chunks once set */
	xport_rma_cb cb;
	void *arg;
};

struct xtcp_chunk {
	uint64_t id; /* 0: slot free */
	struct xtcp_op *op;
	size_t at; /* offset inside the op */
	uint32_t len;
};

struct xtcp_conn {
	struct xport_conn base;
	struct xtcp *t; /* NULL once the instance was destroyed */
	struct ev_loop *loop;
	struct fab_conn *fc;
	LIST_ENTRY(xtcp_conn) link;
	struct xtcp_listener *l; /* incoming: who accepted it */
	enum xtcp_state state;
	int user;     /* the user holds it: closed_cb is owed */
	int closing;  /* xport_close() called */
	int blocked;  /* sendv said -EAGAIN: writable_cb owed */
	int logged;   /* the reason it ends was logged already */
	uint32_t max; /* min of both ends' max message */
	ev_timer hello_timer;
	uint64_t next_id;
	TAILQ_HEAD(, xtcp_op) ops;
	struct xtcp_chunk win[XTCP_WINDOW];
	unsigned ninflight;
	struct xport_stats st;
	char peer_name[FAB_NAME_MAX];
};

/* A frame from the peer after xtcp_parse(): sizes agree with each other and
 * with the limits; nothing about state is checked yet. */
struct xtcp_frame {
	uint8_t type;
	uint32_t status;
	uint64_t id, key, off;
	uint32_t len;
	const uint8_t *data; /* MSG, WRITE_REQ, READ_RESP */
	size_t data_len;
	uint32_t version, max; /* HELLO */
};

static inline struct xtcp *to_xtcp(struct xport *x)
{
	return container_of(x, struct xtcp, base);
}

static inline struct xtcp_conn *to_conn(struct xport_conn *c)
{
	return container_of(c, struct xtcp_conn, base);
}

static inline const struct xtcp_conn *to_cconn(const struct xport_conn *c)
{
	return container_of(c, const struct xtcp_conn, base);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static void rma_hdr(uint8_t h[XTCP_RMA_HDR_LEN], uint8_t type, uint32_t status, uint64_t id,
		    uint64_t key, uint64_t off, uint32_t len)
{
	memset(h, 0, XTCP_RMA_HDR_LEN);
	h[0] = type;
	put32(h + 4, status);
	put64(h + 8, id);
	put64(h + 16, key);
	put64(h + 24, off);
	put32(h + 32, len);
}

/*
 * The one place bytes from the peer are interpreted. max is the largest
 * message or chunk this connection allows. Returns 0 or -EPROTO with *why.
 */
static int xtcp_parse(const uint8_t *p, size_t n, uint32_t max, struct xtcp_frame *f,
		      const char **why)
{
	memset(f, 0, sizeof(*f));
	if (n < XTCP_HDR_LEN) {
		*why = "frame shorter than its header";
		return -EPROTO;
	}
	f->type = p[0];
	if (p[1] || get16(p + 2)) {
		*why = "reserved header bits set";
		return -EPROTO;
	}
	switch (f->type) {
	case XTCP_HELLO:
		if (n != XTCP_HELLO_LEN) {
			*why = "hello of the wrong size";
			return -EPROTO;
		}
		f->version = get32(p + 4);
		f->max = get32(p + 8);
		if (f->version != XTCP_VERSION) {
			*why = "unsupported protocol version";
			return -EPROTO;
		}
		if (f->max < XPORT_MIN_MAX_MSG) {
			*why = "hello announces a message size below the minimum";
			return -EPROTO;
		}
		return 0;
	case XTCP_MSG:
		f->data = p + XTCP_HDR_LEN;
		f->data_len = n - XTCP_HDR_LEN;
		if (f->data_len == 0 || f->data_len > max) {
			*why = f->data_len ? "message above the maximum size" : "empty message";
			return -EPROTO;
		}
		return 0;
	case XTCP_READ_REQ:
	case XTCP_READ_RESP:
	case XTCP_WRITE_REQ:
	case XTCP_WRITE_RESP:
		break;
	default:
		*why = "unknown frame type";
		return -EPROTO;
	}
	if (n < XTCP_RMA_HDR_LEN) {
		*why = "remote-access frame shorter than its header";
		return -EPROTO;
	}
	f->status = get32(p + 4);
	f->id = get64(p + 8);
	f->key = get64(p + 16);
	f->off = get64(p + 24);
	f->len = get32(p + 32);
	f->data = p + XTCP_RMA_HDR_LEN;
	f->data_len = n - XTCP_RMA_HDR_LEN;
	if (get32(p + 36) || f->id == 0) {
		*why = "remote-access header with reserved bits or id 0";
		return -EPROTO;
	}
	if (f->status > XTCP_ST_MAX ||
	    (f->status && (f->type == XTCP_READ_REQ || f->type == XTCP_WRITE_REQ))) {
		*why = "bad status";
		return -EPROTO;
	}
	if (f->len > max) {
		*why = "remote-access length above the chunk size";
		return -EPROTO;
	}
	switch (f->type) {
	case XTCP_READ_REQ:
		if (f->data_len || f->len == 0) {
			*why = "read request with data or length 0";
			return -EPROTO;
		}
		break;
	case XTCP_WRITE_REQ:
		if (f->data_len != f->len || f->len == 0) {
			*why = "write request whose length disagrees with its data";
			return -EPROTO;
		}
		break;
	case XTCP_READ_RESP:
		if (f->data_len != f->len || (f->status == XTCP_ST_OK) != (f->len != 0)) {
			*why = "read reply whose length disagrees with its data";
			return -EPROTO;
		}
		break;
	case XTCP_WRITE_RESP:
		if (f->data_len) {
			*why = "write reply with data";
			return -EPROTO;
		}
		break;
	}
	return 0;
}

static int status_errno(uint32_t st)
{
	switch (st) {
	case XTCP_ST_OK:
		return 0;
	case XTCP_ST_NOKEY:
		return -ENOKEY;
	case XTCP_ST_RANGE:
		return -ERANGE;
	default:
		return -EACCES;
	}
}

static void xtcp_proto_fail(struct xtcp_conn *c, const char *why)
{
	fab_warn("xport tcp: peer %s (%s) broke the protocol: %s; closing",
		 fab_conn_peer_addr(c->fc), c->peer_name[0] ? c->peer_name : "?", why);
	c->logged = 1;
	c->state = XTCP_DOWN;
	fab_conn_close(c->fc, -EPROTO, why);
}

/* ---- remote operations: requester side ---------------------------------- */

/* Completes op if nothing of it is left in flight and nothing more will be
 * issued. Returns 1 when it did (op is freed). */
static int op_maybe_done(struct xtcp_conn *c, struct xtcp_op *op)
{
	if (op->inflight || (!op->err && op->issued < op->len))
		return 0;
	TAILQ_REMOVE(&c->ops, op, link);
	if (!op->err) {
		if (op->write) {
			c->st.writes++;
			c->st.write_bytes += op->len;
		} else {
			c->st.reads++;
			c->st.read_bytes += op->len;
		}
	}
	op->cb(op->err, op->arg);
	free(op);
	return 1;
}

/* Completes every pending operation with err, each exactly once. The
 * callbacks may start new operations: those are refused (-ENOTCONN) because
 * the connection is already down when this runs. */
static void ops_fail_all(struct xtcp_conn *c, int err)
{
	struct xtcp_op *op;

	memset(c->win, 0, sizeof(c->win));
	c->ninflight = 0;
	while ((op = TAILQ_FIRST(&c->ops))) {
		TAILQ_REMOVE(&c->ops, op, link);
		op->cb(err, op->arg);
		free(op);
	}
}

/* Issues chunk requests while the window and the send queue allow. Never
 * calls a user callback, so it is safe inside xport_read/xport_write. */
static void xtcp_pump(struct xtcp_conn *c)
{
	struct xtcp_op *op;

	if (c->state != XTCP_UP || c->closing)
		return;
	TAILQ_FOREACH(op, &c->ops, link)
	{
		while (!op->err && op->issued < op->len) {
			uint8_t h[XTCP_RMA_HDR_LEN];
			struct iovec iov[2];
			struct xtcp_chunk *ch = NULL;
			size_t left = op->len - op->issued;
			uint32_t len = left > c->max ? c->max : (uint32_t)left;
			int rc;

			if (c->ninflight == XTCP_WINDOW || fab_conn_queued(c->fc) > c->t->hwm)
				return; /* a reply or the drain callback resumes */
			for (int i = 0; i < XTCP_WINDOW && !ch; i++)
				if (!c->win[i].id)
					ch = &c->win[i];
			ch->id = c->next_id++;
			ch->op = op;
			ch->at = op->issued;
			ch->len = len;
			rma_hdr(h, op->write ? XTCP_WRITE_REQ : XTCP_READ_REQ, 0, ch->id, op->key,
				op->off + op->issued, len);
			iov[0] = (struct iovec){ h, sizeof(h) };
			iov[1] = (struct iovec){ op->buf + op->issued, len };
			rc = fab_conn_sendv(c->fc, iov, op->write ? 2 : 1);
			if (rc) {
				/* Cannot happen below the hard limit; the close
				 * path completes the operations. */
				memset(ch, 0, sizeof(*ch));
				c->state = XTCP_DOWN;
				fab_conn_close(c->fc, rc, "cannot queue a remote-access request");
				return;
			}
			op->issued += len;
			op->inflight++;
			c->ninflight++;
		}
	}
}

static int xtcp_rma(struct xport_conn *xc, int write, void *buf, size_t len,
		    const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	struct xtcp_conn *c = to_conn(xc);
	struct xtcp_op *op;

	if (c->state != XTCP_UP || c->closing)
		return -ENOTCONN;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->write = write;
	op->buf = buf;
	op->len = len;
	op->key = key->id;
	op->off = offset;
	op->cb = cb;
	op->arg = arg;
	TAILQ_INSERT_TAIL(&c->ops, op, link);
	xtcp_pump(c);
	return 0;
}

static int xtcp_read(struct xport_conn *c, struct xport_mr *local, void *buf, size_t len,
		     const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	return xtcp_rma(c, 0, buf, len, key, offset, cb, arg);
}

static int xtcp_write(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		      const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	/* The buffer is only read: the cast keeps one op type for both. */
	return xtcp_rma(c, 1, (void *)buf, len, key, offset, cb, arg);
}

/* A reply to one of our chunk requests. */
static void on_reply(struct xtcp_conn *c, const struct xtcp_frame *f)
{
	struct xtcp_chunk *ch = NULL, done;
	struct xtcp_op *op;

	for (int i = 0; i < XTCP_WINDOW && !ch; i++)
		if (c->win[i].id == f->id)
			ch = &c->win[i];
	if (!ch) {
		xtcp_proto_fail(c, "reply to a request never made");
		return;
	}
	op = ch->op;
	if (op->write != (f->type == XTCP_WRITE_RESP) || f->key != op->key ||
	    f->off != op->off + ch->at ||
	    ((f->type == XTCP_WRITE_RESP || f->status == XTCP_ST_OK) && f->len != ch->len)) {
		xtcp_proto_fail(c, "reply does not match its request");
		return;
	}
	done = *ch;
	memset(ch, 0, sizeof(*ch));
	c->ninflight--;
	op->inflight--;
	if (f->status) {
		if (!op->err)
			op->err = status_errno(f->status);
	} else if (!op->write && !op->err) {
		memcpy(op->buf + done.at, f->data, done.len);
	}
	op_maybe_done(c, op);
	xtcp_pump(c);
}

/* ---- remote operations: target side ------------------------------------- */

static struct xtcp_mr *mr_find(struct xtcp *t, uint64_t id)
{
	struct xtcp_mr *m;

	LIST_FOREACH(m, &t->mrs, link)
	if (m->base.key.id == id)
		return m;
	return NULL;
}

/* Serves a READ_REQ or WRITE_REQ against our registrations. */
static void on_request(struct xtcp_conn *c, const struct xtcp_frame *f)
{
	int write = f->type == XTCP_WRITE_REQ;
	unsigned need = write ? XPORT_ACCESS_REMOTE_WRITE : XPORT_ACCESS_REMOTE_READ;
	struct xtcp_mr *m = mr_find(c->t, f->key);
	uint32_t st = XTCP_ST_OK;
	uint8_t h[XTCP_RMA_HDR_LEN];
	struct iovec iov[2];
	int rc, n = 1;

	if (!m)
		st = XTCP_ST_NOKEY;
	else if (f->off > m->base.len || f->len > m->base.len - f->off)
		st = XTCP_ST_RANGE;
	else if (!(m->base.access & need))
		st = XTCP_ST_ACCESS;
	if (st) {
		c->st.refused++;
		fab_debug("xport tcp: refused %s of %u bytes at %llu from %s: status %u",
			  write ? "write" : "read", f->len, (unsigned long long)f->off,
			  c->peer_name, st);
	}
	if (st == XTCP_ST_OK && write) {
		memcpy((uint8_t *)m->base.addr + f->off, f->data, f->len);
		c->st.served_writes++;
		c->st.served_write_bytes += f->len;
	}
	rma_hdr(h, write ? XTCP_WRITE_RESP : XTCP_READ_RESP, st, f->id, f->key, f->off,
		st && !write ? 0 : f->len);
	iov[0] = (struct iovec){ h, sizeof(h) };
	if (st == XTCP_ST_OK && !write) {
		iov[1] = (struct iovec){ (uint8_t *)m->base.addr + f->off, f->len };
		n = 2;
		c->st.served_reads++;
		c->st.served_read_bytes += f->len;
	}
	rc = fab_conn_sendv(c->fc, iov, n);
	if (rc == -ENOBUFS)
		xtcp_proto_fail(c, "too many requests without reading the replies");
	else if (rc)
		c->state = XTCP_DOWN;
}

/* ---- connections --------------------------------------------------------- */

static void conn_up(struct xtcp_conn *c)
{
	const struct xport_conn_cbs *cbs = NULL;
	void *arg = NULL;

	ev_timer_stop(c->loop, &c->hello_timer);
	c->state = XTCP_UP;
	if (c->l) {
		int rc = c->l->cb(&c->base, c->l->arg, &cbs, &arg);

		if (rc || !cbs || !cbs->closed_cb) {
			c->state = XTCP_DOWN;
			fab_conn_close(c->fc, rc ? rc : -ECONNREFUSED,
				       "refused by the accept callback");
			return;
		}
		c->base.cbs = cbs;
		c->base.arg = arg;
		c->user = 1;
	} else if (c->base.cbs->connected_cb) {
		c->base.cbs->connected_cb(&c->base, c->base.arg);
	}
	xtcp_pump(c);
}

static void fc_open(struct fab_conn *fc, void *arg)
{
	struct xtcp_conn *c = arg;
	uint8_t h[XTCP_HELLO_LEN] = { XTCP_HELLO };

	snprintf(c->peer_name, sizeof(c->peer_name), "%s", fab_conn_peer(fc)->name);
	put32(h + 4, XTCP_VERSION);
	put32(h + 8, c->t->max_msg);
	c->state = XTCP_HELLO_WAIT;
	if (fab_conn_send(fc, h, sizeof(h))) {
		c->state = XTCP_DOWN;
		fab_conn_close(fc, -EIO, "cannot queue hello");
		return;
	}
	ev_timer_set(&c->hello_timer, c->t->tmo, 0.);
	ev_timer_start(c->loop, &c->hello_timer);
}

static void hello_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct xtcp_conn *c = w->data;

	fab_warn("xport tcp: %s (%s) sent no hello in time (did it refuse our certificate?)",
		 fab_conn_peer_addr(c->fc), c->peer_name);
	c->state = XTCP_DOWN;
	fab_conn_close(c->fc, -ETIMEDOUT, "no hello from the peer");
}

static void fc_frame(struct fab_conn *fc, const uint8_t *p, size_t n, void *arg)
{
	struct xtcp_conn *c = arg;
	struct xtcp_frame f;
	const char *why = "";

	if (c->state == XTCP_DOWN)
		return;
	/* Before HELLO only HELLO is allowed, and c->max is not known yet:
	 * bound by our own. */
	if (xtcp_parse(p, n, c->state == XTCP_UP ? c->max : c->t->max_msg, &f, &why)) {
		xtcp_proto_fail(c, why);
		return;
	}
	if ((f.type == XTCP_HELLO) != (c->state == XTCP_HELLO_WAIT)) {
		xtcp_proto_fail(c, f.type == XTCP_HELLO ? "second hello" : "data before hello");
		return;
	}
	switch (f.type) {
	case XTCP_HELLO:
		c->max = f.max < c->t->max_msg ? f.max : c->t->max_msg;
		conn_up(c);
		break;
	case XTCP_MSG:
		c->st.msgs_rx++;
		c->st.bytes_rx += f.data_len;
		if (c->base.cbs->recv_cb && !c->closing)
			c->base.cbs->recv_cb(&c->base, f.data, f.data_len, c->base.arg);
		break;
	case XTCP_READ_REQ:
	case XTCP_WRITE_REQ:
		on_request(c, &f);
		break;
	default:
		on_reply(c, &f);
		break;
	}
}

static void fc_drain(struct fab_conn *fc, void *arg)
{
	struct xtcp_conn *c = arg;

	if (c->state != XTCP_UP)
		return;
	xtcp_pump(c);
	if (c->blocked && c->state == XTCP_UP && !c->closing) {
		c->blocked = 0;
		if (c->base.cbs->writable_cb)
			c->base.cbs->writable_cb(&c->base, c->base.arg);
	}
}

static void fc_close(struct fab_conn *fc, int err, void *arg)
{
	struct xtcp_conn *c = arg;

	c->state = XTCP_DOWN;
	ev_timer_stop(c->loop, &c->hello_timer);
	if (c->t)
		LIST_REMOVE(c, link);
	ops_fail_all(c, -ECONNRESET);
	if (c->user)
		c->base.cbs->closed_cb(&c->base, err, c->base.arg);
	else if (err && c->t && c->l && !c->logged)
		fab_warn("xport tcp: connection from %s ended before it was accepted: %s",
			 fab_conn_peer_addr(fc), fab_conn_reason(fc));
	free(c);
}

static const struct fab_conn_ops xtcp_fc_ops = {
	.open_cb = fc_open,
	.frame_cb = fc_frame,
	.close_cb = fc_close,
};

static struct xtcp_conn *conn_new(struct xtcp *t)
{
	struct xtcp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base.x = &t->base;
	c->t = t;
	c->loop = t->base.loop;
	c->next_id = 1;
	TAILQ_INIT(&c->ops);
	ev_timer_init(&c->hello_timer, hello_timeout, t->tmo, 0.);
	c->hello_timer.data = c;
	return c;
}

static void conn_opts(struct xtcp *t, const char *peer_name, struct fab_conn_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->peer_roles = FAB_ROLE_BIT(FAB_ROLE_NODE);
	o->peer_name = peer_name;
	o->max_frame = t->max_msg + XTCP_RMA_HDR_LEN;
	o->max_queued = t->hard_queue;
	o->handshake_timeout_s = t->tmo;
}

static void listen_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xtcp_listener *l = w->data;
	struct xtcp *t = l->t;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct fab_conn_opts o;
		struct xtcp_conn *c;
		char peer[64];
		int fd = accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				fab_warn("xport tcp: accept: %s", strerror(errno));
			return;
		}
		fab_sockaddr_str(&ss, peer, sizeof(peer));
		c = conn_new(t);
		if (!c) {
			close(fd);
			continue;
		}
		c->l = l;
		conn_opts(t, NULL, &o);
		if (fab_conn_accept(loop, t->sctx, fd, peer, &o, &xtcp_fc_ops, c, &c->fc)) {
			free(c);
			continue;
		}
		fab_conn_set_drain_cb(c->fc, t->lwm, fc_drain);
		LIST_INSERT_HEAD(&t->conns, c, link);
	}
}

static int xtcp_listen(struct xport *x, const char *hostport, xport_accept_cb cb, void *arg,
		       char *bound, size_t boundlen)
{
	struct xtcp *t = to_xtcp(x);
	struct xtcp_listener *l = calloc(1, sizeof(*l));
	int fd;

	if (!l)
		return -ENOMEM;
	fd = fab_listen(hostport, bound, boundlen);
	if (fd < 0) {
		free(l);
		return fd;
	}
	l->t = t;
	l->cb = cb;
	l->arg = arg;
	ev_io_init(&l->io, listen_cb, fd, EV_READ);
	l->io.data = l;
	ev_io_start(x->loop, &l->io);
	LIST_INSERT_HEAD(&t->listeners, l, link);
	return 0;
}

static int xtcp_connect(struct xport *x, const char *hostport, const char *peer_name,
			const struct xport_conn_cbs *cbs, void *arg, struct xport_conn **out)
{
	struct xtcp *t = to_xtcp(x);
	struct fab_conn_opts o;
	struct xtcp_conn *c;
	int rc;

	if (fab_name_valid(peer_name))
		return -EINVAL;
	c = conn_new(t);
	if (!c)
		return -ENOMEM;
	c->base.cbs = cbs;
	c->base.arg = arg;
	c->user = 1;
	conn_opts(t, peer_name, &o);
	rc = fab_conn_connect(x->loop, t->cctx, hostport, &o, &xtcp_fc_ops, c, &c->fc);
	if (rc) {
		free(c);
		return rc;
	}
	fab_conn_set_drain_cb(c->fc, t->lwm, fc_drain);
	LIST_INSERT_HEAD(&t->conns, c, link);
	*out = &c->base;
	return 0;
}

static int xtcp_sendv(struct xport_conn *xc, const struct iovec *iov, int iovcnt)
{
	struct xtcp_conn *c = to_conn(xc);
	struct iovec v[XPORT_IOV_MAX + 1];
	uint8_t h[XTCP_HDR_LEN] = { XTCP_MSG };
	size_t len = 0;
	int rc;

	if (c->state != XTCP_UP || c->closing)
		return -ENOTCONN;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > c->max)
			return -EMSGSIZE;
		len += iov[i].iov_len;
		v[i + 1] = iov[i];
	}
	if (len == 0)
		return -EINVAL;
	if (len > c->max)
		return -EMSGSIZE;
	/* Our mark, well below fab_conn's hard limit, which stays reserved
	 * for remote-access traffic. */
	if (fab_conn_queued(c->fc) + FAB_FRAME_HDR_LEN + XTCP_HDR_LEN + len > c->t->hwm) {
		c->blocked = 1;
		return -EAGAIN;
	}
	v[0] = (struct iovec){ h, sizeof(h) };
	rc = fab_conn_sendv(c->fc, v, iovcnt + 1);
	if (rc == -ENOBUFS) {
		c->blocked = 1;
		return -EAGAIN;
	}
	if (rc)
		return rc;
	c->st.msgs_tx++;
	c->st.bytes_tx += len;
	return 0;
}

static void xtcp_close(struct xport_conn *xc)
{
	struct xtcp_conn *c = to_conn(xc);

	if (c->closing || !c->fc)
		return;
	c->closing = 1;
	fab_conn_close(c->fc, 0, "closed locally");
}

static const char *xtcp_peer_name(const struct xport_conn *xc)
{
	return to_cconn(xc)->peer_name;
}

static const char *xtcp_peer_addr(const struct xport_conn *xc)
{
	return fab_conn_peer_addr(to_cconn(xc)->fc);
}

static void xtcp_stats(const struct xport_conn *xc, struct xport_stats *out)
{
	const struct xtcp_conn *c = to_cconn(xc);

	*out = c->st;
	out->send_queued = c->fc ? fab_conn_queued(c->fc) : 0;
}

/* ---- registrations ------------------------------------------------------- */

static int xtcp_reg_mr(struct xport *x, void *addr, size_t len, unsigned access,
		       struct xport_mr **out)
{
	struct xtcp *t = to_xtcp(x);
	struct xtcp_mr *m = calloc(1, sizeof(*m));
	uint64_t id;

	if (!m)
		return -ENOMEM;
	/* Unguessable ids: a peer can only use keys it was handed. */
	do {
		if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1) {
			free(m);
			return -EIO;
		}
	} while (id == 0 || mr_find(t, id));
	m->base.x = x;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.key.id = id;
	m->base.key.length = len;
	LIST_INSERT_HEAD(&t->mrs, m, link);
	*out = &m->base;
	return 0;
}

static void xtcp_dereg_mr(struct xport_mr *mr)
{
	struct xtcp_mr *m = container_of(mr, struct xtcp_mr, base);

	LIST_REMOVE(m, link);
	free(m);
}

/* ---- instances ----------------------------------------------------------- */

static int xtcp_create(struct ev_loop *loop, const struct xport_cfg *cfg, struct xport **out)
{
	struct xtcp *t;
	int rc;

	if (!cfg->pki_dir || !cfg->node_name || fab_name_valid(cfg->node_name) ||
	    strlen(cfg->pki_dir) >= PATH_MAX)
		return -EINVAL;
	if (cfg->max_msg && (cfg->max_msg < XPORT_MIN_MAX_MSG || cfg->max_msg > (64u << 20)))
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->base.loop = loop;
	strcpy(t->pki_dir, cfg->pki_dir);
	strcpy(t->name, cfg->node_name);
	t->max_msg = cfg->max_msg ? cfg->max_msg : XPORT_DEFAULT_MAX_MSG;
	t->hwm = cfg->send_hwm ? cfg->send_hwm : XTCP_DEFAULT_HWM;
	t->lwm = cfg->send_lwm ? cfg->send_lwm : t->hwm / 2;
	t->tmo = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : XTCP_DEFAULT_TMO_S;
	if (t->hwm < t->lwm + t->max_msg + XTCP_FRAME_SLACK) {
		free(t);
		return -EINVAL;
	}
	/* Above hwm: our own chunk requests (the window, each possibly
	 * started just under hwm) and replies to a well-behaved peer's
	 * window. More than that means the peer ignores the protocol. */
	t->hard_queue = t->hwm + (2 * XTCP_WINDOW + 2) * (size_t)(t->max_msg + XTCP_FRAME_SLACK);
	LIST_INIT(&t->listeners);
	LIST_INIT(&t->conns);
	LIST_INIT(&t->mrs);
	rc = fab_tls_ctx_new(t->pki_dir, FAB_ROLE_NODE, t->name, 1, &t->sctx);
	if (rc)
		goto err;
	rc = fab_tls_ctx_new(t->pki_dir, FAB_ROLE_NODE, t->name, 0, &t->cctx);
	if (rc)
		goto err_sctx;
	*out = &t->base;
	return 0;
err_sctx:
	SSL_CTX_free(t->sctx);
err:
	free(t);
	return rc;
}

static void xtcp_destroy(struct xport *x)
{
	struct xtcp *t = to_xtcp(x);
	struct xtcp_listener *l;
	struct xtcp_conn *c;
	struct xtcp_mr *m;

	while ((l = LIST_FIRST(&t->listeners))) {
		LIST_REMOVE(l, link);
		ev_io_stop(x->loop, &l->io);
		close(l->io.fd);
		free(l);
	}
	/* The fab_conns end from the loop later: detach them from t so their
	 * close_cb only frees them. */
	while ((c = LIST_FIRST(&t->conns))) {
		LIST_REMOVE(c, link);
		c->t = NULL;
		c->l = NULL;
		c->user = 0;
		c->state = XTCP_DOWN;
		ev_timer_stop(c->loop, &c->hello_timer);
		ops_fail_all(c, -ECANCELED);
		fab_conn_close(c->fc, 0, "transport destroyed");
	}
	while ((m = LIST_FIRST(&t->mrs))) {
		LIST_REMOVE(m, link);
		free(m);
	}
	/* Each SSL holds its own reference to its context. */
	SSL_CTX_free(t->sctx);
	SSL_CTX_free(t->cctx);
	free(t);
}

static const struct xport_ops xtcp_ops = {
	.name = "tcp",
	.create = xtcp_create,
	.destroy = xtcp_destroy,
	.listen = xtcp_listen,
	.connect = xtcp_connect,
	.sendv = xtcp_sendv,
	.close = xtcp_close,
	.reg_mr = xtcp_reg_mr,
	.dereg_mr = xtcp_dereg_mr,
	.read = xtcp_read,
	.write = xtcp_write,
	.peer_name = xtcp_peer_name,
	.peer_addr = xtcp_peer_addr,
	.stats = xtcp_stats,
};

int xport_tcp_register(void)
{
	return xport_register(&xtcp_ops);
}
