// SPDX-License-Identifier: MIT
/*
 * The TCP transport over loopback: instances of two nodes on one libev loop
 * (a third on its own loop where a receiver must stop reading), a PKI made
 * in a temp dir, and raw TLS clients on a thread sending bad frames.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <openssl/ssl.h>

#include "fab/frame.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "fab/xport.h"

static char dir_a[64], dir_b[64]; /* two independent cluster PKIs */
static struct ev_loop *loop, *loop2;
static struct xport *xa, *xb; /* nodes n1 and n2 of cluster A */
static char addr_b[64];

enum mode { MODE_PLAIN, MODE_ECHO, MODE_SEQ };

struct peer {
	struct xport_conn *c;
	int connected, closed, err, writable;
	enum mode mode;
	unsigned nmsgs;
	uint32_t next_seq;
	unsigned order_bad;
	size_t last_len;
	uint8_t last[4096];
};

static struct peer srv[8]; /* connections node n2 accepted */
static int nsrv;
static enum mode srv_mode;

/* ---- harness -------------------------------------------------------------- */

static void peer_connected(struct xport_conn *c, void *arg)
{
	((struct peer *)arg)->connected = 1;
}

static void peer_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct peer *p = arg;

	p->nmsgs++;
	p->last_len = len;
	memcpy(p->last, msg, len < sizeof(p->last) ? len : sizeof(p->last));
	if (p->mode == MODE_SEQ) {
		uint32_t seq;

		assert_true(len >= 4);
		memcpy(&seq, msg, 4);
		if (seq != p->next_seq)
			p->order_bad++;
		p->next_seq = seq + 1;
	} else if (p->mode == MODE_ECHO) {
		struct iovec v = { (void *)msg, len };

		assert_int_equal(xport_sendv(c, &v, 1), 0);
	}
}

static void peer_writable(struct xport_conn *c, void *arg)
{
	((struct peer *)arg)->writable++;
}

static void peer_closed(struct xport_conn *c, int err, void *arg)
{
	struct peer *p = arg;

	p->closed++;
	p->err = err;
	p->c = NULL;
}

static const struct xport_conn_cbs peer_cbs = {
	.connected_cb = peer_connected,
	.recv_cb = peer_recv,
	.writable_cb = peer_writable,
	.closed_cb = peer_closed,
};

static int accept_cb(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
		     void **conn_arg)
{
	struct peer *p;

	assert_true(nsrv < 8);
	p = &srv[nsrv++];
	memset(p, 0, sizeof(*p));
	p->c = c;
	p->connected = 1;
	p->mode = srv_mode;
	*cbs = &peer_cbs;
	*conn_arg = p;
	return 0;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs loop (and loop2 too if both) until cond(arg) holds or 10 s pass. */
static int run_while(int (*cond)(void *), void *arg, int both)
{
	ev_timer tick, tick2;
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + 10.0;
	ev_timer_init(&tick, tick_cb, 0.005, 0.005);
	ev_timer_start(loop, &tick);
	if (both) {
		ev_timer_init(&tick2, tick_cb, 0.005, 0.005);
		ev_timer_start(loop2, &tick2);
	}
	while (!cond(arg) && ev_now(loop) < end) {
		ev_run(loop, EVRUN_ONCE);
		if (both)
			ev_run(loop2, EVRUN_ONCE);
	}
	ev_timer_stop(loop, &tick);
	if (both)
		ev_timer_stop(loop2, &tick2);
	return cond(arg);
}

static int flag_set(void *p)
{
	return *(int *)p != 0;
}

static int run_until(int *flag)
{
	return run_while(flag_set, flag, 0);
}

/* Runs loop (and loop2 without blocking if both) for s seconds. */
static void settle(double s, int both)
{
	ev_timer tick;
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + s;
	ev_timer_init(&tick, tick_cb, 0.005, 0.005);
	ev_timer_start(loop, &tick);
	while (ev_now(loop) < end) {
		ev_run(loop, EVRUN_ONCE);
		if (both)
			ev_run(loop2, EVRUN_NOWAIT);
	}
	ev_timer_stop(loop, &tick);
}

static int srv_all_closed(void *unused)
{
	for (int i = 0; i < nsrv; i++)
		if (srv[i].c && !srv[i].closed)
			return 0;
	return 1;
}

/* Closes what the last test left and forgets it. */
static void reset(enum mode mode)
{
	for (int i = 0; i < nsrv; i++)
		if (srv[i].c && !srv[i].closed)
			xport_close(srv[i].c);
	assert_true(run_while(srv_all_closed, NULL, 0));
	memset(srv, 0, sizeof(srv));
	nsrv = 0;
	srv_mode = mode;
}

static int srv_accepted(void *unused)
{
	return nsrv > 0;
}

/* Connects n1 to n2 and waits until both ends are up. */
static void connect_ab(struct peer *cl, enum mode mode)
{
	memset(cl, 0, sizeof(*cl));
	cl->mode = mode;
	assert_int_equal(xport_connect(xa, addr_b, "n2", &peer_cbs, cl, &cl->c), 0);
	assert_true(run_until(&cl->connected));
	assert_true(run_while(srv_accepted, NULL, 0));
}

static void close_client(struct peer *cl)
{
	if (cl->c && !cl->closed) {
		xport_close(cl->c);
		assert_true(run_until(&cl->closed));
	}
	assert_int_equal(cl->closed, 1);
}

static struct xport *make_xport(struct ev_loop *l, const char *dir, const char *name)
{
	struct xport_cfg cfg = { .pki_dir = dir, .node_name = name, .connect_timeout_s = 5 };
	struct xport *x = NULL;

	assert_int_equal(xport_create("tcp", l, &cfg, &x), 0);
	return x;
}

static int group_setup(void **state)
{
	strcpy(dir_a, "/tmp/fabxp-a-XXXXXX");
	strcpy(dir_b, "/tmp/fabxp-b-XXXXXX");
	if (!mkdtemp(dir_a) || !mkdtemp(dir_b))
		return -1;
	if (fab_pki_init_ca(dir_a, "cluster-a", 30) || fab_pki_init_ca(dir_b, "cluster-b", 30))
		return -1;
	if (fab_pki_issue(dir_a, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(dir_a, FAB_ROLE_NODE, "n2", 30) ||
	    fab_pki_issue(dir_a, FAB_ROLE_NODE, "n3", 30) ||
	    fab_pki_issue(dir_a, FAB_ROLE_CONTROLLER, "controller", 30) ||
	    fab_pki_issue(dir_b, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(dir_b, FAB_ROLE_NODE, "n2", 30))
		return -1;
	if (xport_tcp_register() || xport_tcp_register())
		return -1;
	loop = ev_default_loop(0);
	loop2 = ev_loop_new(0);
	xa = make_xport(loop, dir_a, "n1");
	xb = make_xport(loop, dir_a, "n2");
	return xport_listen(xb, "127.0.0.1:0", accept_cb, NULL, addr_b, sizeof(addr_b));
}

static int group_teardown(void **state)
{
	char cmd[256];

	reset(MODE_PLAIN);
	xport_destroy(xa);
	xport_destroy(xb);
	settle(0.05, 0);
	ev_loop_destroy(loop2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir_a, dir_b);
	return system(cmd);
}

/* ---- registry and configuration ------------------------------------------ */

static void test_registry(void **state)
{
	static const struct xport_ops fake = { .name = "tcp", .create = (void *)1 };
	struct xport_cfg cfg = { .pki_dir = dir_a, .node_name = "n1" };
	struct xport *x;

	assert_non_null(xport_lookup("tcp"));
	assert_string_equal(xport_lookup("tcp")->name, "tcp");
	assert_null(xport_lookup("rdma"));
	assert_int_equal(xport_register(&fake), -EEXIST);
	assert_int_equal(xport_create("nope", loop, &cfg, &x), -ENOENT);
	/* hwm must leave room for one whole message above lwm. */
	cfg.send_hwm = 1 << 20;
	cfg.send_lwm = 512 << 10;
	assert_int_equal(xport_create("tcp", loop, &cfg, &x), -EINVAL);
	cfg.send_hwm = 0;
	cfg.send_lwm = 0;
	cfg.node_name = "nobody"; /* no certificate */
	assert_int_not_equal(xport_create("tcp", loop, &cfg, &x), 0);
	cfg.node_name = "Bad Name";
	assert_int_equal(xport_create("tcp", loop, &cfg, &x), -EINVAL);
}

/* ---- authentication ------------------------------------------------------- */

static void test_connect_auth(void **state)
{
	struct peer cl;

	reset(MODE_PLAIN);
	connect_ab(&cl, MODE_PLAIN);
	assert_string_equal(xport_peer_name(cl.c), "n2");
	assert_string_equal(xport_peer_name(srv[0].c), "n1");
	assert_non_null(strstr(xport_peer_addr(cl.c), "127.0.0.1:"));
	assert_non_null(strstr(xport_peer_addr(srv[0].c), "127.0.0.1:"));
	close_client(&cl);
	assert_int_equal(cl.err, 0);
	assert_true(run_until(&srv[0].closed));
	assert_int_equal(srv[0].err, 0);
	assert_int_equal(srv[0].closed, 1);
}

static void test_wrong_peer_name(void **state)
{
	struct peer cl = { 0 };

	reset(MODE_PLAIN);
	/* n2 answers, but we asked for n3. */
	assert_int_equal(xport_connect(xa, addr_b, "n3", &peer_cbs, &cl, &cl.c), 0);
	assert_true(run_until(&cl.closed));
	assert_false(cl.connected);
	assert_int_equal(cl.err, -EACCES);
	settle(0.05, 0);
	assert_int_equal(nsrv, 0);
	assert_int_equal(xport_connect(xa, addr_b, "Not a name", &peer_cbs, &cl, &cl.c), -EINVAL);
}

static void test_other_ca_refused(void **state)
{
	struct xport *xo = make_xport(loop, dir_b, "n1"); /* n1 of another cluster */
	struct peer cl = { 0 };
	char addr_o[64];

	reset(MODE_PLAIN);
	/* As client: n2 refuses the certificate; the client never sees a
	 * connected callback even though its TLS handshake may finish first. */
	assert_int_equal(xport_connect(xo, addr_b, "n2", &peer_cbs, &cl, &cl.c), 0);
	assert_true(run_until(&cl.closed));
	assert_false(cl.connected);
	assert_int_not_equal(cl.err, 0);
	settle(0.05, 0);
	assert_int_equal(nsrv, 0);

	/* As server: our n1 refuses it. */
	memset(&cl, 0, sizeof(cl));
	assert_int_equal(xport_listen(xo, "127.0.0.1:0", accept_cb, NULL, addr_o, sizeof(addr_o)),
			 0);
	assert_int_equal(xport_connect(xa, addr_o, "n1", &peer_cbs, &cl, &cl.c), 0);
	assert_true(run_until(&cl.closed));
	assert_false(cl.connected);
	assert_int_not_equal(cl.err, 0);
	assert_int_equal(nsrv, 0);
	xport_destroy(xo);
	settle(0.02, 0);
}

/* ---- messages ------------------------------------------------------------- */

static int got_msgs(void *p)
{
	return ((struct peer *)p)->nmsgs > 0;
}

static void test_sg_roundtrip(void **state)
{
	static uint8_t big[(1 << 20) + 1];
	struct iovec v[3] = { { "hello, ", 7 }, { "scatter", 7 }, { "/gather", 7 } };
	struct xport_stats st;
	struct peer cl;

	reset(MODE_ECHO);
	connect_ab(&cl, MODE_PLAIN);
	assert_int_equal(xport_sendv(cl.c, v, 3), 0);
	assert_true(run_while(got_msgs, &cl, 0));
	assert_int_equal(cl.last_len, 21);
	assert_memory_equal(cl.last, "hello, scatter/gather", 21);
	assert_int_equal(srv[0].nmsgs, 1);

	/* Limits are refused locally, nothing sent. */
	v[0].iov_base = big;
	v[0].iov_len = sizeof(big);
	assert_int_equal(xport_sendv(cl.c, v, 1), -EMSGSIZE);
	v[0].iov_len = 0;
	assert_int_equal(xport_sendv(cl.c, v, 1), -EINVAL);
	assert_int_equal(xport_sendv(cl.c, v, XPORT_IOV_MAX + 1), -EINVAL);
	/* Exactly the maximum passes. */
	v[0].iov_len = sizeof(big) - 1;
	cl.nmsgs = 0;
	assert_int_equal(xport_sendv(cl.c, v, 1), 0);
	assert_true(run_while(got_msgs, &cl, 0));
	assert_int_equal(cl.last_len, 1 << 20);

	xport_stats(cl.c, &st);
	assert_int_equal(st.msgs_tx, 2);
	assert_int_equal(st.bytes_tx, 21 + (1 << 20));
	assert_int_equal(st.msgs_rx, 2);
	close_client(&cl);
}

struct seq_run {
	struct peer *cl;
	unsigned sent, total;
};

static int seq_done(void *arg)
{
	struct seq_run *r = arg;

	return srv[0].nmsgs == r->total;
}

static void test_ordering_10k(void **state)
{
	struct seq_run r = { .total = 10000 };
	struct peer cl;
	uint8_t pad[300] = { 0 };

	reset(MODE_SEQ);
	connect_ab(&cl, MODE_PLAIN);
	r.cl = &cl;
	while (r.sent < r.total) {
		uint32_t seq = r.sent;
		struct iovec v[2] = { { &seq, 4 }, { pad, seq % sizeof(pad) } };
		int rc = xport_sendv(cl.c, v, 2);

		if (rc == -EAGAIN) {
			int w = cl.writable;

			while (cl.writable == w)
				ev_run(loop, EVRUN_ONCE);
			continue;
		}
		assert_int_equal(rc, 0);
		r.sent++;
	}
	assert_true(run_while(seq_done, &r, 0));
	assert_int_equal(srv[0].order_bad, 0);
	assert_int_equal(srv[0].next_seq, 10000);
	close_client(&cl);
}

/* ---- backpressure --------------------------------------------------------- */

static struct peer slow; /* the receiver, on loop2 */

static int slow_accept(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
		       void **conn_arg)
{
	memset(&slow, 0, sizeof(slow));
	slow.c = c;
	slow.connected = 1;
	slow.mode = MODE_SEQ;
	*cbs = &peer_cbs;
	*conn_arg = &slow;
	return 0;
}

struct bp {
	struct peer *cl;
	unsigned sent;
};

static int bp_done(void *arg)
{
	struct bp *b = arg;

	return slow.nmsgs == b->sent && b->cl->writable;
}

static void test_backpressure(void **state)
{
	struct xport *xs = make_xport(loop2, dir_a, "n3");
	static uint8_t payload[64 << 10];
	struct xport_stats st;
	struct peer cl = { 0 };
	struct bp b = { &cl, 0 };
	char addr_s[64];
	int rc = 0;

	reset(MODE_PLAIN);
	assert_int_equal(xport_listen(xs, "127.0.0.1:0", slow_accept, NULL, addr_s, sizeof(addr_s)),
			 0);
	assert_int_equal(xport_connect(xa, addr_s, "n3", &peer_cbs, &cl, &cl.c), 0);
	assert_true(run_while(flag_set, &cl.connected, 1));
	assert_true(run_while(flag_set, &slow.connected, 1));

	/* loop2 no longer runs: the receiver reads nothing. The sender's loop
	 * keeps writing until the kernel buffers are full, then its queue
	 * grows to the mark and sendv refuses. */
	for (unsigned i = 0; i < 100000; i++) {
		uint32_t seq = b.sent;
		struct iovec v[2] = { { &seq, 4 }, { payload, sizeof(payload) - 4 } };

		rc = xport_sendv(cl.c, v, 2);
		if (rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
		b.sent++;
		xport_stats(cl.c, &st);
		assert_true(st.send_queued <= (4u << 20));
		ev_run(loop, EVRUN_NOWAIT);
	}
	assert_int_equal(rc, -EAGAIN);
	xport_stats(cl.c, &st);
	assert_true(st.send_queued <= (4u << 20));
	assert_true(st.send_queued > (4u << 20) - sizeof(payload) - 64);
	/* Nobody reads: the queue stays above the low-water mark (the kernel
	 * may still take a little), so no writable yet. */
	settle(0.05, 0);
	assert_int_equal(cl.writable, 0);
	xport_stats(cl.c, &st);
	assert_true(st.send_queued > (2u << 20));

	/* The receiver resumes: everything arrives in order and writable
	 * fires. */
	assert_true(run_while(bp_done, &b, 1));
	assert_int_equal(cl.writable, 1);
	assert_int_equal(slow.order_bad, 0);
	xport_stats(cl.c, &st);
	assert_int_equal(st.msgs_tx, b.sent);

	xport_close(cl.c);
	assert_true(run_while(flag_set, &cl.closed, 1));
	assert_true(run_while(flag_set, &slow.closed, 1));
	xport_destroy(xs);
	settle(0.02, 1);
}

/* ---- remote read and write ------------------------------------------------ */

struct rma_done {
	int n, err, calls;
};

static void rma_cb(int err, void *arg)
{
	struct rma_done *d = arg;

	d->calls++;
	d->err = err;
	d->n = 1;
}

static int rma_wait(struct xport_conn *c, int write, struct xport_mr *local, void *buf, size_t len,
		    const struct xport_key *key, uint64_t off)
{
	struct rma_done d = { 0 };
	int rc = write ? xport_write(c, local, buf, len, key, off, rma_cb, &d)
		       : xport_read(c, local, buf, len, key, off, rma_cb, &d);

	if (rc)
		return rc;
	assert_int_equal(d.calls, 0); /* never from inside the call */
	assert_true(run_until(&d.n));
	settle(0.002, 0);
	assert_int_equal(d.calls, 1);
	return d.err;
}

#define REGION (5u << 20)

static void test_rma_5mib(void **state)
{
	uint8_t *region = malloc(REGION), *src = malloc(REGION), *dst = calloc(1, REGION);
	struct xport_mr *rmr, *smr, *dmr;
	struct xport_stats st;
	struct peer cl;

	reset(MODE_PLAIN);
	connect_ab(&cl, MODE_PLAIN);
	for (size_t i = 0; i < REGION; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 13));
	memset(region, 0xee, REGION);
	assert_int_equal(xport_reg_mr(xb, region, REGION,
				      XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE, &rmr),
			 0);
	assert_int_equal(xport_reg_mr(xa, src, REGION, 0, &smr), 0);
	assert_int_equal(xport_reg_mr(xa, dst, REGION, XPORT_ACCESS_LOCAL_WRITE, &dmr), 0);
	assert_int_equal(xport_mr_key(rmr)->length, REGION);

	/* Whole region: five full chunks. */
	assert_int_equal(rma_wait(cl.c, 1, smr, src, REGION, xport_mr_key(rmr), 0), 0);
	assert_memory_equal(region, src, REGION);
	assert_int_equal(rma_wait(cl.c, 0, dmr, dst, REGION, xport_mr_key(rmr), 0), 0);
	assert_memory_equal(dst, src, REGION);

	/* Unaligned, crossing chunk boundaries, short last chunk. */
	memset(region + 777, 0x5a, (3u << 20) + 123);
	memset(dst, 0, REGION);
	assert_int_equal(rma_wait(cl.c, 0, dmr, dst + 3, (3u << 20) + 123, xport_mr_key(rmr), 777),
			 0);
	for (size_t i = 0; i < (3u << 20) + 123; i++)
		if (dst[3 + i] != 0x5a)
			fail_msg("byte %zu differs", i);
	assert_int_equal(dst[2], 0);
	assert_int_equal(dst[3 + (3u << 20) + 123], 0);
	assert_int_equal(rma_wait(cl.c, 1, smr, src + 1, 4097, xport_mr_key(rmr), REGION - 4097),
			 0);
	assert_memory_equal(region + REGION - 4097, src + 1, 4097);

	xport_stats(cl.c, &st);
	assert_int_equal(st.reads, 2);
	assert_int_equal(st.writes, 2);
	assert_int_equal(st.read_bytes, REGION + (3u << 20) + 123);
	assert_int_equal(st.write_bytes, REGION + 4097);
	xport_stats(srv[0].c, &st);
	assert_int_equal(st.served_read_bytes, REGION + (3u << 20) + 123);
	assert_int_equal(st.served_write_bytes, REGION + 4097);

	close_client(&cl);
	xport_dereg_mr(rmr);
	xport_dereg_mr(smr);
	xport_dereg_mr(dmr);
	free(region);
	free(src);
	free(dst);
}

static void test_rma_refused(void **state)
{
	static uint8_t ro[8192], wo[8192], lbuf[16384];
	struct xport_mr *romr, *womr, *lmr, *nolw, *gone;
	struct xport_key k;
	struct xport_stats st;
	struct peer cl;

	reset(MODE_ECHO);
	connect_ab(&cl, MODE_PLAIN);
	memset(ro, 0x11, sizeof(ro));
	assert_int_equal(xport_reg_mr(xb, ro, sizeof(ro), XPORT_ACCESS_REMOTE_READ, &romr), 0);
	assert_int_equal(xport_reg_mr(xb, wo, sizeof(wo), XPORT_ACCESS_REMOTE_WRITE, &womr), 0);
	assert_int_equal(xport_reg_mr(xa, lbuf, sizeof(lbuf), XPORT_ACCESS_LOCAL_WRITE, &lmr), 0);
	assert_int_equal(xport_reg_mr(xa, lbuf, sizeof(lbuf), 0, &nolw), 0);

	/* Refused by the target; the connection stays usable. */
	k = *xport_mr_key(romr);
	k.length = 1 << 20; /* a lying key gets past the local check */
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 4096, &k, 8192 - 100), -ERANGE);
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 16, &k, 1 << 19), -ERANGE);
	k.id ^= 1; /* never registered */
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 16, &k, 0), -ENOKEY);
	assert_int_equal(rma_wait(cl.c, 1, lmr, lbuf, 16, xport_mr_key(romr), 0), -EACCES);
	for (int i = 0; i < 16; i++)
		assert_int_equal(ro[i], 0x11);
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 16, xport_mr_key(womr), 0), -EACCES);
	assert_int_equal(xport_reg_mr(xb, wo, 64, XPORT_ACCESS_REMOTE_READ, &gone), 0);
	k = *xport_mr_key(gone);
	xport_dereg_mr(gone);
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 16, &k, 0), -ENOKEY);
	assert_null(cl.closed ? "closed" : NULL);

	/* Refused locally, before anything is sent. */
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 0, xport_mr_key(romr), 0), -EINVAL);
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, 16, xport_mr_key(romr), 8190), -ERANGE);
	assert_int_equal(rma_wait(cl.c, 0, nolw, lbuf, 16, xport_mr_key(romr), 0), -EACCES);
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf + 16380, 16, xport_mr_key(romr), 0), -EINVAL);
	assert_int_equal(rma_wait(cl.c, 0, lmr, ro, 16, xport_mr_key(romr), 0), -EINVAL);

	/* Still fine: a valid read and a message. */
	memset(lbuf, 0, sizeof(lbuf));
	assert_int_equal(rma_wait(cl.c, 0, lmr, lbuf, sizeof(ro), xport_mr_key(romr), 0), 0);
	assert_memory_equal(lbuf, ro, sizeof(ro));
	{
		struct iovec v = { "alive", 5 };

		assert_int_equal(xport_sendv(cl.c, &v, 1), 0);
		assert_true(run_while(got_msgs, &cl, 0));
	}
	xport_stats(srv[0].c, &st);
	assert_int_equal(st.refused, 6);
	assert_false(srv[0].closed);
	close_client(&cl);
	xport_dereg_mr(romr);
	xport_dereg_mr(womr);
	xport_dereg_mr(lmr);
	xport_dereg_mr(nolw);
}

/* Completion counts of several operations, and when closed_cb saw them. */
static struct rma_done pend[6];
static int pend_done_at_close;

static void pend_closed(struct xport_conn *c, int err, void *arg)
{
	pend_done_at_close = 0;
	for (unsigned i = 0; i < 6; i++)
		pend_done_at_close += pend[i].calls;
	peer_closed(c, err, arg);
}

static const struct xport_conn_cbs pend_cbs = {
	.connected_cb = peer_connected,
	.recv_cb = peer_recv,
	.closed_cb = pend_closed,
};

static void pending_case(int local_close)
{
	uint8_t *region = calloc(1, REGION), *lbuf = calloc(1, REGION);
	struct xport_mr *rmr, *lmr;
	struct peer cl = { 0 };

	reset(MODE_PLAIN);
	memset(pend, 0, sizeof(pend));
	assert_int_equal(xport_connect(xa, addr_b, "n2", &pend_cbs, &cl, &cl.c), 0);
	assert_true(run_until(&cl.connected));
	assert_true(run_while(srv_accepted, NULL, 0));
	assert_int_equal(xport_reg_mr(xb, region, REGION,
				      XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE, &rmr),
			 0);
	assert_int_equal(xport_reg_mr(xa, lbuf, REGION, XPORT_ACCESS_LOCAL_WRITE, &lmr), 0);
	for (unsigned i = 0; i < 6; i++) {
		if (i & 1)
			assert_int_equal(xport_write(cl.c, lmr, lbuf, REGION, xport_mr_key(rmr), 0,
						     rma_cb, &pend[i]),
					 0);
		else
			assert_int_equal(xport_read(cl.c, lmr, lbuf, REGION, xport_mr_key(rmr), 0,
						    rma_cb, &pend[i]),
					 0);
	}
	/* Let a little traffic flow so some chunks are in flight. */
	ev_run(loop, EVRUN_NOWAIT);
	if (local_close)
		xport_close(cl.c);
	else
		xport_close(srv[0].c);
	assert_true(run_until(&cl.closed));
	settle(0.05, 0);
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(pend[i].calls, 1);
		assert_int_equal(pend[i].err, -ECONNRESET);
	}
	assert_int_equal(pend_done_at_close, 6); /* before closed_cb */
	assert_int_equal(cl.closed, 1);
	/* New operations on a closed connection are refused at once. */
	xport_dereg_mr(rmr);
	xport_dereg_mr(lmr);
	free(region);
	free(lbuf);
}

static void test_close_with_pending(void **state)
{
	pending_case(1);
	pending_case(0);
}

static void test_refused_after_close(void **state)
{
	static uint8_t buf[64];
	struct xport_mr *mr;
	struct rma_done d = { 0 };
	struct peer cl;

	reset(MODE_PLAIN);
	connect_ab(&cl, MODE_PLAIN);
	assert_int_equal(xport_reg_mr(xa, buf, sizeof(buf), XPORT_ACCESS_LOCAL_WRITE, &mr), 0);
	xport_close(cl.c);
	/* Closing: the connection object lives until closed_cb. */
	assert_int_equal(xport_read(cl.c, mr, buf, 16, xport_mr_key(mr), 0, rma_cb, &d), -ENOTCONN);
	{
		struct iovec v = { "x", 1 };

		assert_int_equal(xport_sendv(cl.c, &v, 1), -ENOTCONN);
	}
	assert_true(run_until(&cl.closed));
	assert_int_equal(d.calls, 0);
	xport_dereg_mr(mr);
}

/* ---- a peer that breaks the protocol -------------------------------------- */

struct raw_job {
	uint8_t bytes[4096];
	size_t len;
	atomic_int hold; /* stop reading until cleared */
	atomic_int done;
};

static void *raw_client(void *arg)
{
	struct raw_job *job = arg;
	char crt[128], key[128], ca[128];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char *colon = strrchr(addr_b, ':');
	uint8_t buf[4096];
	SSL *ssl;

	snprintf(ca, sizeof(ca), "%s/ca.crt", dir_a);
	fab_pki_paths(dir_a, FAB_ROLE_NODE, "n3", crt, key, sizeof(crt));
	SSL_CTX_load_verify_locations(ctx, ca, NULL);
	SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM);
	SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) == 1) {
			SSL_write(ssl, job->bytes, (int)job->len);
			while (atomic_load(&job->hold))
				usleep(1000);
			/* Read until the server hangs up on us. */
			while (SSL_read(ssl, buf, sizeof(buf)) > 0)
				;
		}
		SSL_free(ssl);
	}
	close(fd);
	SSL_CTX_free(ctx);
	atomic_store(&job->done, 1);
	return NULL;
}

static int job_done(void *arg)
{
	return atomic_load(&((struct raw_job *)arg)->done);
}

/* Appends one fab frame with payload p[0..n) to the job. */
static void job_frame(struct raw_job *j, const void *p, size_t n)
{
	fab_frame_hdr_encode(j->bytes + j->len, (uint32_t)n);
	memcpy(j->bytes + j->len + FAB_FRAME_HDR_LEN, p, n);
	j->len += FAB_FRAME_HDR_LEN + n;
}

static void job_hello(struct raw_job *j)
{
	uint8_t h[12] = { 1, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 0, 0 }; /* v1, 1 MiB */

	job_frame(j, h, sizeof(h));
}

static void rma_frame(uint8_t h[40], uint8_t type, uint32_t st, uint64_t id, uint64_t key,
		      uint64_t off, uint32_t len)
{
	memset(h, 0, 40);
	h[0] = type;
	st = htobe32(st);
	memcpy(h + 4, &st, 4);
	id = htobe64(id);
	memcpy(h + 8, &id, 8);
	key = htobe64(key);
	memcpy(h + 16, &key, 8);
	off = htobe64(off);
	memcpy(h + 24, &off, 8);
	len = htobe32(len);
	memcpy(h + 32, &len, 4);
}

/* Runs a raw client; checks only its connection closed and a good one works.
 * hello: the job says hello first, so n2 accepts it and must see -EPROTO. */
static void misbehave(struct raw_job *job, int hello)
{
	struct peer cl;
	pthread_t th;

	reset(MODE_ECHO);
	connect_ab(&cl, MODE_PLAIN);
	atomic_store(&job->done, 0);
	pthread_create(&th, NULL, raw_client, job);
	assert_true(run_while(job_done, job, 0));
	pthread_join(th, NULL);
	if (hello) {
		assert_int_equal(nsrv, 2);
		assert_true(run_until(&srv[1].closed));
		assert_int_equal(srv[1].err, -EPROTO);
	} else {
		assert_int_equal(nsrv, 1);
	}
	assert_false(srv[0].closed);
	assert_false(cl.closed);
	{
		struct iovec v = { "still here", 10 };

		assert_int_equal(xport_sendv(cl.c, &v, 1), 0);
		assert_true(run_while(got_msgs, &cl, 0));
		assert_memory_equal(cl.last, "still here", 10);
	}
	close_client(&cl);
}

static void test_garbage(void **state)
{
	struct raw_job j;
	uint8_t h[64];

	/* Not even frames. */
	memset(&j, 0, sizeof(j));
	memcpy(j.bytes, "GET / HTTP/1.1\r\n\r\n", 18);
	j.len = 18;
	misbehave(&j, 0);

	/* A message before hello. */
	memset(&j, 0, sizeof(j));
	job_frame(&j, (uint8_t[]){ 2, 0, 0, 0, 'x' }, 5);
	misbehave(&j, 0);

	/* Hello with a bad version. */
	memset(&j, 0, sizeof(j));
	job_frame(&j, (uint8_t[]){ 1, 0, 0, 0, 0, 0, 0, 9, 0, 0x10, 0, 0 }, 12);
	misbehave(&j, 0);

	/* After hello: an unknown type. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	job_frame(&j, (uint8_t[]){ 77, 0, 0, 0 }, 4);
	misbehave(&j, 1);

	/* Reserved bits. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	job_frame(&j, (uint8_t[]){ 2, 1, 0, 0, 'x' }, 5);
	misbehave(&j, 1);

	/* A second hello. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	job_hello(&j);
	misbehave(&j, 1);

	/* An empty message. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	job_frame(&j, (uint8_t[]){ 2, 0, 0, 0 }, 4);
	misbehave(&j, 1);

	/* A write request whose length disagrees with its data. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 5, 0, 1, 42, 0, 100);
	memcpy(h + 40, "abcd", 4);
	job_frame(&j, h, 44);
	misbehave(&j, 1);

	/* A read request with a status, and one that is truncated. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 3, 2, 1, 42, 0, 16);
	job_frame(&j, h, 40);
	misbehave(&j, 1);
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 3, 0, 1, 42, 0, 16);
	job_frame(&j, h, 30);
	misbehave(&j, 1);

	/* A read request above the chunk size. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 3, 0, 1, 42, 0, (1u << 20) + 1);
	job_frame(&j, h, 40);
	misbehave(&j, 1);

	/* A reply to a request never made. */
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 6, 0, 99, 42, 0, 16);
	job_frame(&j, h, 40);
	misbehave(&j, 1);
}

/* A read request from a raw peer for an unknown key gets an error reply, not
 * a closed connection (the protocol's answer to a bad key). */
static void test_raw_bad_key_is_not_fatal(void **state)
{
	struct raw_job j;
	uint8_t h[40];
	struct peer cl;
	pthread_t th;

	reset(MODE_PLAIN);
	connect_ab(&cl, MODE_PLAIN);
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	rma_frame(h, 3, 0, 1, 42, 0, 16);
	job_frame(&j, h, 40);
	pthread_create(&th, NULL, raw_client, &j);
	assert_true(run_while(srv_accepted, NULL, 0));
	while (nsrv < 2)
		ev_run(loop, EVRUN_ONCE);
	settle(0.1, 0);
	assert_false(srv[1].closed);
	{
		struct xport_stats st;

		xport_stats(srv[1].c, &st);
		assert_int_equal(st.refused, 1);
	}
	xport_close(srv[1].c);
	assert_true(run_while(job_done, &j, 0));
	pthread_join(th, NULL);
	assert_int_equal(srv[1].err, 0);
	close_client(&cl);
}

/* A peer that keeps asking for data and never reads the replies fills the
 * send queue to its hard limit: its connection closes, the others live. */
static void test_read_flood_closed(void **state)
{
	static uint8_t region[1 << 20];
	struct xport_mr *mr;
	struct raw_job j;
	uint8_t h[40];
	struct peer cl;
	pthread_t th;

	reset(MODE_ECHO);
	connect_ab(&cl, MODE_PLAIN);
	assert_int_equal(xport_reg_mr(xb, region, sizeof(region), XPORT_ACCESS_REMOTE_READ, &mr),
			 0);
	memset(&j, 0, sizeof(j));
	job_hello(&j);
	for (uint64_t id = 1; id <= 64; id++) {
		rma_frame(h, 3, 0, id, xport_mr_key(mr)->id, 0, sizeof(region));
		job_frame(&j, h, 40);
	}
	atomic_store(&j.hold, 1);
	pthread_create(&th, NULL, raw_client, &j);
	assert_true(run_while(srv_accepted, NULL, 0));
	while (nsrv < 2)
		ev_run(loop, EVRUN_ONCE);
	assert_true(run_until(&srv[1].closed));
	assert_int_equal(srv[1].err, -EPROTO);
	atomic_store(&j.hold, 0);
	assert_true(run_while(job_done, &j, 0));
	pthread_join(th, NULL);
	assert_false(srv[0].closed);
	{
		struct iovec v = { "ok", 2 };

		assert_int_equal(xport_sendv(cl.c, &v, 1), 0);
		assert_true(run_while(got_msgs, &cl, 0));
	}
	close_client(&cl);
	xport_dereg_mr(mr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_connect_auth),
		cmocka_unit_test(test_wrong_peer_name),
		cmocka_unit_test(test_other_ca_refused),
		cmocka_unit_test(test_sg_roundtrip),
		cmocka_unit_test(test_ordering_10k),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_rma_5mib),
		cmocka_unit_test(test_rma_refused),
		cmocka_unit_test(test_close_with_pending),
		cmocka_unit_test(test_refused_after_close),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_raw_bad_key_is_not_fatal),
		cmocka_unit_test(test_read_flood_closed),
	};

	/* As in the daemons' main(): a write to a vanished peer is an error
	 * return, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	fab_log_init("test_xport_tcp", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
