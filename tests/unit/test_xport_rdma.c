// SPDX-License-Identifier: MIT
/*
 * The RDMA transport (xport "rdma").
 *
 * Without an RDMA device (the development hosts have none) only the parts
 * that need none run: registration, create failing with -ENODEV, and the
 * pure wire formats, credit rules and send ring (xrdma_proto.h), including
 * a randomized two-sided simulation of the credit protocol. Then the program
 * prints "SKIP: no RDMA device" and exits 77 (ctest's skip code).
 *
 * With a device (soft-RoCE in the test VMs, deploy/vm/fabvm.sh) the
 * scenarios run: authentication and refusals, thousands of messages both
 * ways with order and content checked, credits exhausted by a burst and
 * replenished, RDMA READ/WRITE into a registered memfd with the data
 * checked, local bounds refusals, a bad key and a forbidden access ending
 * the connection, close and destroy with operations in flight.
 *
 *   test_xport_rdma                        host checks; with a device also
 *                                          the scenarios in this process
 *                                          over $XR_ADDR (else $FABVM_ADDR)
 *   test_xport_rdma pki DIR                makes the PKIs of the two roles
 *   test_xport_rdma server ADDR:PORT       serves the scenarios (cluster A
 *                                          node n2 on PORT, a node n2 of
 *                                          another cluster on PORT+1)
 *   test_xport_rdma client ADDR:PORT PEER  runs them against node PEER
 *
 * The roles take the PKI from $XR_PKI (made by "pki"); it must be visible to
 * both machines, e.g. under the build tree.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/xport.h"

#include "xrdma_proto.h"
#include "xrdma_testhook.h"

#define WAIT_S	    60.0 /* emulated machines are slow */
#define NMSGS	    3000
#define ECHO_WINDOW 200
#define NBURST	    2000
#define BURST_LEN   8192
#define REGION_LEN  ((4u << 20) + 4096)
#define LOCAL_LEN   (8u << 20)

static struct ev_loop *loop;
static char pki_a[512], pki_b[512];
static char self_addr[80]; /* local mode: this machine's RDMA address */
static char srv_addr[80], srv_addr_b[80], peer_node[FAB_NAME_MAX] = "n2";
static int local_mode;

/* ---- loop helpers --------------------------------------------------------- */

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs the loop until cond(arg) holds or s seconds pass. */
static int run_while_s(int (*cond)(void *), void *arg, double s)
{
	ev_timer tick;
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + s;
	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (!cond(arg) && ev_now(loop) < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return cond(arg);
}

static int run_while(int (*cond)(void *), void *arg)
{
	return run_while_s(cond, arg, WAIT_S);
}

static int flag_set(void *p)
{
	return *(volatile int *)p != 0;
}

static int never(void *p)
{
	return 0;
}

static void settle(double s)
{
	run_while_s(never, NULL, s);
}

/* Byte o of a registration filled with seed. */
static uint8_t pat(uint64_t o, unsigned seed)
{
	return (uint8_t)(o * 7 + seed + (o >> 8) * 13);
}

/* Byte i of data message seq. */
static uint8_t dpat(uint32_t seq, size_t i)
{
	return (uint8_t)(seq * 31 + i * 3 + (i >> 9));
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void *memfd_map(size_t len)
{
	int fd = memfd_create("xr-test", MFD_CLOEXEC);
	void *p;

	if (fd < 0 || ftruncate(fd, (off_t)len)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

static struct xport *make_xport(const char *dir, const char *name)
{
	struct xport_cfg cfg = { .pki_dir = dir, .node_name = name, .connect_timeout_s = 10 };
	struct xport *x = NULL;
	int rc = xport_create("rdma", loop, &cfg, &x);

	if (rc)
		fprintf(stderr, "xport_create(rdma, %s, %s): %s\n", dir, name, strerror(-rc));
	assert_int_equal(rc, 0);
	return x;
}

/* ---- the service (server side of the scenarios) --------------------------- */

/*
 * Messages to the service start with a kind byte:
 *   'D' u32 seq, then the pattern dpat(seq, i) for every byte i >= 5
 *   'C' a command line: "ECHO 0|1", "SLOW us", "STATS", "REG size access
 *       seed", "CHECK off len seed", "DEREG", "BYE"
 * Replies: 'R' text, or 'K' and the key's three u64, or 'D' echoes.
 */
struct svc_conn {
	struct xport_conn *c;
	uint32_t next_seq;
};

static struct svc {
	struct xport *x, *xb; /* node n2 of cluster A, node n2 of cluster B */
	char addr[80], addr_b[80];
	int accepted, accepted_b, open;
	int echo;
	unsigned slow_us;
	unsigned rx, bad, errs;
	struct xport_mr *mr;
	uint8_t *region;
	size_t region_len;
	int bye; /* BYE received and its connection closed */
	int bye_seen;
} svc;

static void svc_reply(struct xport_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void svc_reply(struct xport_conn *c, const char *fmt, ...)
{
	char buf[256] = "R";
	struct iovec v = { buf, 0 };
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	v.iov_len = strlen(buf);
	rc = xport_sendv(c, &v, 1);
	if (rc) {
		fprintf(stderr, "service: reply failed: %s\n", strerror(-rc));
		svc.errs++;
	}
}

static void svc_command(struct xport_conn *c, const char *cmd)
{
	unsigned long long a = 0, b = 0, s = 0;
	int rc;

	if (sscanf(cmd, "ECHO %llu", &a) == 1) {
		svc.echo = (int)a;
		svc_reply(c, "ok");
	} else if (sscanf(cmd, "SLOW %llu", &a) == 1) {
		svc.slow_us = (unsigned)a;
		svc_reply(c, "ok");
	} else if (!strcmp(cmd, "STATS")) {
		svc_reply(c, "%u %u %d %d", svc.rx, svc.bad, svc.accepted, svc.accepted_b);
		svc.rx = svc.bad = 0;
	} else if (sscanf(cmd, "REG %llu %llu %llu", &a, &b, &s) == 3) {
		uint8_t k[25] = { 'K' };
		struct iovec v = { k, sizeof(k) };
		const struct xport_key *key;

		if (svc.mr)
			xport_dereg_mr(svc.mr);
		if (svc.region)
			munmap(svc.region, svc.region_len);
		svc.mr = NULL;
		svc.region_len = a;
		svc.region = memfd_map(a);
		if (!svc.region) {
			svc_reply(c, "no memory");
			return;
		}
		for (size_t i = 0; i < a; i++)
			svc.region[i] = pat(i, (unsigned)s);
		rc = xport_reg_mr(svc.x, svc.region, a, (unsigned)b, &svc.mr);
		if (rc) {
			svc_reply(c, "reg_mr: %s", strerror(-rc));
			return;
		}
		key = xport_mr_key(svc.mr);
		memcpy(k + 1, &key->id, 8);
		memcpy(k + 9, &key->length, 8);
		memcpy(k + 17, &key->addr, 8);
		if (xport_sendv(c, &v, 1))
			svc.errs++;
	} else if (sscanf(cmd, "CHECK %llu %llu %llu", &a, &b, &s) == 3) {
		if (!svc.region || a > svc.region_len || b > svc.region_len - a) {
			svc_reply(c, "range");
			return;
		}
		for (size_t i = a; i < a + b; i++)
			if (svc.region[i] != pat(i, (unsigned)s)) {
				svc_reply(c, "bad at %zu", i);
				return;
			}
		svc_reply(c, "ok");
	} else if (!strcmp(cmd, "DEREG")) {
		xport_dereg_mr(svc.mr);
		svc.mr = NULL;
		svc_reply(c, "ok");
	} else if (!strcmp(cmd, "BYE")) {
		svc.bye_seen = 1;
		svc_reply(c, "bye");
	} else {
		svc_reply(c, "unknown command");
	}
}

static void svc_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct svc_conn *sc = arg;
	const uint8_t *p = msg;

	if (len >= 5 && p[0] == 'D') {
		uint32_t seq = get32(p + 1);
		int ok = seq == sc->next_seq || seq == 0; /* 0 starts a series */

		for (size_t i = 5; ok && i < len; i++)
			ok = p[i] == dpat(seq, i);
		if (ok)
			svc.rx++;
		else
			svc.bad++;
		sc->next_seq = seq + 1;
		if (svc.slow_us)
			usleep(svc.slow_us);
		if (svc.echo) {
			struct iovec v = { (void *)msg, len };
			int rc = xport_sendv(c, &v, 1);

			if (rc) {
				fprintf(stderr, "service: echo failed: %s\n", strerror(-rc));
				svc.errs++;
			}
		}
	} else if (len >= 2 && len < 200 && p[0] == 'C') {
		char cmd[200];

		memcpy(cmd, p + 1, len - 1);
		cmd[len - 1] = '\0';
		svc_command(c, cmd);
	} else {
		svc.errs++;
	}
}

static void svc_closed(struct xport_conn *c, int err, void *arg)
{
	if (err)
		fprintf(stderr, "service: a connection from %s ended: %s\n", xport_peer_name(c),
			strerror(-err));
	svc.open--;
	if (svc.bye_seen)
		svc.bye = 1;
	free(arg);
}

static const struct xport_conn_cbs svc_cbs = {
	.recv_cb = svc_recv,
	.closed_cb = svc_closed,
};

static int svc_accept(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
		      void **conn_arg)
{
	struct svc_conn *sc = calloc(1, sizeof(*sc));

	if (!sc)
		return -ENOMEM;
	if (arg == &svc.xb) {
		/* Nobody of cluster A may get here. */
		svc.accepted_b++;
	} else {
		svc.accepted++;
	}
	sc->c = c;
	svc.open++;
	*cbs = &svc_cbs;
	*conn_arg = sc;
	return 0;
}

static void svc_start(const char *hostport)
{
	char host[80], port[16], hp[100];
	unsigned p;

	memset(&svc, 0, sizeof(svc));
	svc.x = make_xport(pki_a, "n2");
	svc.xb = make_xport(pki_b, "n2");
	assert_int_equal(fab_hostport_split(hostport, host, sizeof(host), port, sizeof(port)), 0);
	assert_int_equal(
		xport_listen(svc.x, hostport, svc_accept, &svc.x, svc.addr, sizeof(svc.addr)), 0);
	p = (unsigned)atoi(port);
	snprintf(hp, sizeof(hp), "%s:%u", host, p ? p + 1 : 0);
	assert_int_equal(
		xport_listen(svc.xb, hp, svc_accept, &svc.xb, svc.addr_b, sizeof(svc.addr_b)), 0);
}

static void svc_stop(void)
{
	xport_destroy(svc.x);
	xport_destroy(svc.xb);
	if (svc.region)
		munmap(svc.region, svc.region_len);
	svc.x = svc.xb = NULL;
	svc.region = NULL;
	svc.mr = NULL;
}

/* ---- the client side ------------------------------------------------------ */

struct cl {
	struct xport_conn *c;
	int connected, closed, err, writable;
	uint32_t next_echo;
	unsigned echoes, echo_bad;
	char reply[256];
	int have_reply;
	struct xport_key key;
	int have_key;
};

static struct xport *xa, *xo; /* our node n1 of cluster A, n1 of cluster B */
static struct cl cl;

static void cl_connected(struct xport_conn *c, void *arg)
{
	((struct cl *)arg)->connected = 1;
}

static void cl_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct cl *k = arg;
	const uint8_t *p = msg;

	if (len >= 5 && p[0] == 'D') {
		uint32_t seq = get32(p + 1);
		int ok = seq == k->next_echo;

		for (size_t i = 5; ok && i < len; i++)
			ok = p[i] == dpat(seq, i);
		k->echoes++;
		k->echo_bad += !ok;
		k->next_echo = seq + 1;
	} else if (len == 25 && p[0] == 'K') {
		memcpy(&k->key.id, p + 1, 8);
		memcpy(&k->key.length, p + 9, 8);
		memcpy(&k->key.addr, p + 17, 8);
		k->have_key = 1;
	} else if (len >= 1 && p[0] == 'R' && len < sizeof(k->reply)) {
		memcpy(k->reply, p + 1, len - 1);
		k->reply[len - 1] = '\0';
		k->have_reply = 1;
	} else {
		k->echo_bad++;
	}
}

static void cl_writable(struct xport_conn *c, void *arg)
{
	((struct cl *)arg)->writable++;
}

static void cl_closed(struct xport_conn *c, int err, void *arg)
{
	struct cl *k = arg;

	k->closed++;
	k->err = err;
	k->c = NULL;
	if (err && getenv("XR_VERBOSE"))
		fprintf(stderr, "client: connection ended: %s\n", strerror(-err));
}

static const struct xport_conn_cbs cl_cbs = {
	.connected_cb = cl_connected,
	.recv_cb = cl_recv,
	.writable_cb = cl_writable,
	.closed_cb = cl_closed,
};

static int cl_done(void *arg)
{
	struct cl *k = arg;

	return k->connected || k->closed;
}

/* Connects x to node name at hostport; in the two-machine mode retries a
 * refused connection while the server may still be starting. */
static void cl_connect_to(struct cl *k, struct xport *x, const char *hostport, const char *name)
{
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + WAIT_S;
	for (;;) {
		memset(k, 0, sizeof(*k));
		assert_int_equal(xport_connect(x, hostport, name, &cl_cbs, k, &k->c), 0);
		assert_true(run_while(cl_done, k));
		if (k->connected || local_mode || k->err != -ECONNREFUSED || ev_now(loop) > end)
			return;
		settle(0.5);
	}
}

static void cl_connect(void)
{
	cl_connect_to(&cl, xa, srv_addr, peer_node);
	if (!cl.connected)
		fprintf(stderr, "connect to %s (%s): %s\n", srv_addr, peer_node, strerror(-cl.err));
	assert_true(cl.connected);
	assert_false(cl.closed);
}

static void cl_close(struct cl *k)
{
	if (k->c && !k->closed) {
		xport_close(k->c);
		assert_true(run_while(flag_set, &k->closed));
	}
	assert_int_equal(k->closed, 1);
}

static void cl_send(struct cl *k, const void *p, size_t len)
{
	struct iovec v = { (void *)p, len };
	int rc;

	assert_non_null(k->c); /* still connected */
	while ((rc = xport_sendv(k->c, &v, 1)) == -EAGAIN) {
		k->writable = 0;
		assert_true(run_while(flag_set, &k->writable));
	}
	assert_int_equal(rc, 0);
}

static int have_reply(void *arg)
{
	struct cl *k = arg;

	return k->have_reply || k->have_key || k->closed;
}

/* Sends a command and waits for its reply (text in k->reply). */
static void cl_cmd(struct cl *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cl_cmd(struct cl *k, const char *fmt, ...)
{
	char buf[200] = "C";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	k->have_reply = 0;
	k->have_key = 0;
	cl_send(k, buf, strlen(buf));
	assert_true(run_while(have_reply, k));
	assert_false(k->closed);
}

static void cl_expect(struct cl *k, const char *want, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cl_expect(struct cl *k, const char *want, const char *fmt, ...)
{
	char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cl_cmd(k, "%s", buf);
	assert_true(k->have_reply);
	if (strcmp(k->reply, want))
		fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", buf, k->reply, want);
	assert_string_equal(k->reply, want);
}

/* Sends data message seq of len bytes. */
static void cl_data(struct cl *k, uint32_t seq, size_t len, int *eagain)
{
	static uint8_t buf[1 << 20];
	struct iovec v = { buf, len };
	int rc;

	assert_non_null(k->c);
	buf[0] = 'D';
	put32(buf + 1, seq);
	for (size_t i = 5; i < len; i++)
		buf[i] = dpat(seq, i);
	while ((rc = xport_sendv(k->c, &v, 1)) == -EAGAIN) {
		if (eagain)
			(*eagain)++;
		k->writable = 0;
		assert_true(run_while(flag_set, &k->writable));
	}
	assert_int_equal(rc, 0);
}

/* ---- host checks (no device needed) --------------------------------------- */

static void test_registry(void **state)
{
	const struct xport_ops *ops;

	assert_int_equal(xport_rdma_register(), 0);
	assert_int_equal(xport_rdma_register(), 0);
	ops = xport_lookup("rdma");
	assert_non_null(ops);
	assert_string_equal(ops->name, "rdma");
	assert_int_equal(ops->flags, XPORT_F_NATIVE_RMA);
}

static int have_device(void)
{
	struct xport_cfg cfg = { .pki_dir = pki_a, .node_name = "n1" };
	struct xport *x = NULL;
	int rc = xport_create("rdma", loop, &cfg, &x);

	if (rc == 0)
		xport_destroy(x);
	return rc != -ENODEV;
}

static void test_create_checks(void **state)
{
	struct xport_cfg cfg = { .pki_dir = pki_a, .node_name = "Bad Name" };
	struct xport *x = NULL;

	assert_int_equal(xport_create("rdma", loop, &cfg, &x), -EINVAL);
	cfg.node_name = "n1";
	cfg.max_msg = 100;
	assert_int_equal(xport_create("rdma", loop, &cfg, &x), -EINVAL);
	cfg.max_msg = 0;
	cfg.send_hwm = 256 << 10;
	cfg.send_lwm = 200 << 10; /* no room for one message above it */
	assert_int_equal(xport_create("rdma", loop, &cfg, &x), -EINVAL);
	if (!have_device()) {
		/* "auto" relies on this to fall back to TCP. */
		cfg.send_hwm = cfg.send_lwm = 0;
		assert_int_equal(xport_create("rdma", loop, &cfg, &x), -ENODEV);
	}
}

static void test_ctl_formats(void **state)
{
	struct xrdma_ctl h = { .type = XRDMA_CTL_HELLO, .depth = 64, .max_msg = 128 << 10 };
	struct xrdma_ctl w = {
		.type = XRDMA_CTL_WELCOME, .depth = 8, .max_msg = 4096, .port = 7000
	};
	struct xrdma_ctl k = { .type = XRDMA_CTL_CONNECT };
	uint8_t b[XRDMA_PRIV_MAX + 8], c[XRDMA_PRIV_MAX + 8];
	struct xrdma_ctl out;
	const char *why;
	size_t n;

	for (int i = 0; i < XRDMA_TOKEN_LEN; i++)
		w.token[i] = k.token[i] = (uint8_t)(i * 17 + 1);

	n = xrdma_ctl_build(&h, b);
	assert_int_equal(n, XRDMA_HELLO_LEN);
	assert_int_equal(xrdma_ctl_parse(b, n, XRDMA_CTL_HELLO, &out, &why), 0);
	assert_int_equal(out.depth, 64);
	assert_int_equal(out.max_msg, 128 << 10);
	/* Each field out of its range, one at a time. */
	assert_int_equal(xrdma_ctl_parse(b, n, XRDMA_CTL_WELCOME, &out, &why), -EPROTO);
	assert_int_equal(xrdma_ctl_parse(b, n - 1, XRDMA_CTL_HELLO, &out, &why), -EPROTO);
	assert_int_equal(xrdma_ctl_parse(b, 3, XRDMA_CTL_HELLO, &out, &why), -EPROTO);
	memcpy(c, b, n);
	c[0] ^= 1;
	assert_int_equal(xrdma_ctl_parse(c, n, XRDMA_CTL_HELLO, &out, &why), -EPROTO);
	memcpy(c, b, n);
	c[5] = 2;
	assert_int_equal(xrdma_ctl_parse(c, n, XRDMA_CTL_HELLO, &out, &why), -EPROTO);
	memcpy(c, b, n);
	c[7] = 1;
	assert_int_equal(xrdma_ctl_parse(c, n, XRDMA_CTL_HELLO, &out, &why), -EPROTO);
	h.depth = XRDMA_MIN_DEPTH - 1;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&h, b), XRDMA_CTL_HELLO, &out, &why),
			 -EPROTO);
	h.depth = XRDMA_MAX_DEPTH + 1;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&h, b), XRDMA_CTL_HELLO, &out, &why),
			 -EPROTO);
	h.depth = 64;
	h.max_msg = 4095;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&h, b), XRDMA_CTL_HELLO, &out, &why),
			 -EPROTO);
	h.max_msg = XRDMA_MAX_MSG_LIMIT + 1;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&h, b), XRDMA_CTL_HELLO, &out, &why),
			 -EPROTO);

	n = xrdma_ctl_build(&w, b);
	assert_int_equal(n, XRDMA_WELCOME_LEN);
	assert_int_equal(xrdma_ctl_parse(b, n, XRDMA_CTL_WELCOME, &out, &why), 0);
	assert_int_equal(out.port, 7000);
	assert_memory_equal(out.token, w.token, XRDMA_TOKEN_LEN);
	memcpy(c, b, n);
	c[21] = 1; /* reserved */
	assert_int_equal(xrdma_ctl_parse(c, n, XRDMA_CTL_WELCOME, &out, &why), -EPROTO);
	w.port = 0;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&w, b), XRDMA_CTL_WELCOME, &out, &why),
			 -EPROTO);

	/* Private data: zero padding up to the CM's size is fine, anything
	 * else is not. */
	memset(b, 0, sizeof(b));
	n = xrdma_ctl_build(&k, b);
	assert_int_equal(n, XRDMA_CONNECT_LEN);
	assert_int_equal(xrdma_ctl_parse(b, n, XRDMA_CTL_CONNECT, &out, &why), 0);
	assert_memory_equal(out.token, k.token, XRDMA_TOKEN_LEN);
	assert_int_equal(xrdma_ctl_parse(b, XRDMA_PRIV_MAX, XRDMA_CTL_CONNECT, &out, &why), 0);
	assert_int_equal(xrdma_ctl_parse(b, XRDMA_PRIV_MAX + 1, XRDMA_CTL_CONNECT, &out, &why),
			 -EPROTO);
	assert_int_equal(xrdma_ctl_parse(b, n - 1, XRDMA_CTL_CONNECT, &out, &why), -EPROTO);
	b[40] = 1;
	assert_int_equal(xrdma_ctl_parse(b, XRDMA_PRIV_MAX, XRDMA_CTL_CONNECT, &out, &why),
			 -EPROTO);
	/* A HELLO is no connect request. */
	h.max_msg = 4096;
	assert_int_equal(xrdma_ctl_parse(b, xrdma_ctl_build(&h, b), XRDMA_CTL_CONNECT, &out, &why),
			 -EPROTO);
}

static void test_msg_format(void **state)
{
	uint8_t b[64];
	struct xrdma_msg_hdr h;
	const char *why;

	xrdma_msg_hdr_put(b, XRDMA_MSG, 5, 10);
	assert_int_equal(xrdma_msg_parse(b, 18, 4096, &h, &why), 0);
	assert_int_equal(h.type, XRDMA_MSG);
	assert_int_equal(h.credits, 5);
	assert_int_equal(h.len, 10);
	assert_int_equal(xrdma_msg_parse(b, 17, 4096, &h, &why), -EPROTO); /* short */
	assert_int_equal(xrdma_msg_parse(b, 19, 4096, &h, &why), -EPROTO); /* long */
	assert_int_equal(xrdma_msg_parse(b, 18, 9, &h, &why), -EPROTO);	   /* over max */
	assert_int_equal(xrdma_msg_parse(b, 7, 4096, &h, &why), -EPROTO);
	xrdma_msg_hdr_put(b, XRDMA_MSG, 0, 0);
	assert_int_equal(xrdma_msg_parse(b, 8, 4096, &h, &why), -EPROTO); /* empty */
	xrdma_msg_hdr_put(b, XRDMA_CREDIT, 3, 0);
	assert_int_equal(xrdma_msg_parse(b, 8, 4096, &h, &why), 0);
	xrdma_msg_hdr_put(b, XRDMA_CREDIT, 0, 0);
	assert_int_equal(xrdma_msg_parse(b, 8, 4096, &h, &why), -EPROTO);
	xrdma_msg_hdr_put(b, XRDMA_CREDIT, 1, 1);
	assert_int_equal(xrdma_msg_parse(b, 9, 4096, &h, &why), -EPROTO);
	xrdma_msg_hdr_put(b, 9, 1, 0);
	assert_int_equal(xrdma_msg_parse(b, 8, 4096, &h, &why), -EPROTO);
	xrdma_msg_hdr_put(b, XRDMA_CREDIT, 1, 0);
	b[1] = 1;
	assert_int_equal(xrdma_msg_parse(b, 8, 4096, &h, &why), -EPROTO);
}

static void test_credit_police(void **state)
{
	struct xrdma_credits cr;
	const char *why;

	xrdma_credits_init(&cr, 4, 4);
	assert_int_equal(xrdma_credit_tx(&cr), 0); /* the peer owes us one now */
	/* The peer starts with 4 credits: 3 messages, then only a CREDIT. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(xrdma_credit_rx(&cr, XRDMA_MSG, 0, &why), 0);
	assert_int_equal(xrdma_credit_rx(&cr, XRDMA_MSG, 0, &why), -EPROTO);
	assert_int_equal(xrdma_credit_rx(&cr, XRDMA_CREDIT, 1, &why), 0);
	assert_int_equal(xrdma_credit_rx(&cr, XRDMA_CREDIT, 1, &why), -EPROTO);
	/* Returning more than we lent. */
	xrdma_credits_init(&cr, 4, 4);
	assert_int_equal(xrdma_credit_rx(&cr, XRDMA_MSG, 1, &why), -EPROTO);
	assert_int_equal(xrdma_credit_tx(&cr), 0);
	assert_int_equal(xrdma_credit_rx(&cr, XRDMA_MSG, 1, &why), 0);
	assert_int_equal(cr.avail, 4);
	/* The last credit is kept for credit messages. */
	xrdma_credits_init(&cr, 4, 2);
	assert_true(xrdma_credit_can_send_msg(&cr));
	xrdma_credit_tx(&cr);
	assert_false(xrdma_credit_can_send_msg(&cr));
	assert_false(xrdma_credit_should_send_credit(&cr)); /* nothing owed */
	xrdma_credit_reposted(&cr);
	assert_true(xrdma_credit_should_send_credit(&cr) || cr.peer_view >= 2);
}

/*
 * Two sides exchanging messages through a model network (FIFO per
 * direction, random delivery and random processing delays), with every
 * send decided by the rules of xrdma_proto.h. Checks: no side ever sends
 * without a credit (the receiver has a buffer for everything), the policing
 * never fires for honest peers, all messages arrive, and once the data is
 * through the credit messages stop (no ping-pong).
 */
#define SIM_Q 8192
struct sim_side {
	struct xrdma_credits cr;
	unsigned to_send, sent, got;
	unsigned unprocessed; /* received, buffer not yet reposted */
	unsigned credit_msgs;
	struct {
		uint8_t type;
		uint16_t credits;
	} q[SIM_Q]; /* in flight towards this side */
	unsigned qh, qt;
	unsigned posted; /* buffers posted right now */
};

static void sim_send(struct sim_side *from, struct sim_side *to, uint8_t type)
{
	uint16_t n = xrdma_credit_tx(&from->cr);

	assert_true(to->posted > 0); /* a credit means a buffer */
	to->posted--;
	to->q[to->qt % SIM_Q].type = type;
	to->q[to->qt % SIM_Q].credits = n;
	to->qt++;
	if (type == XRDMA_CREDIT)
		from->credit_msgs++;
	else
		from->sent++;
}

static void sim_step(struct sim_side *s, struct sim_side *peer, unsigned r)
{
	const char *why = NULL;

	switch (r % 4) {
	case 0: /* deliver one */
		if (s->qh != s->qt) {
			int rc = xrdma_credit_rx(&s->cr, s->q[s->qh % SIM_Q].type,
						 s->q[s->qh % SIM_Q].credits, &why);

			if (rc)
				fprintf(stderr, "simulation: %s\n", why);
			assert_int_equal(rc, 0);
			if (s->q[s->qh % SIM_Q].type == XRDMA_MSG)
				s->got++;
			s->qh++;
			s->unprocessed++;
		}
		break;
	case 1: /* process one, post its buffer again */
		if (s->unprocessed) {
			s->unprocessed--;
			s->posted++;
			xrdma_credit_reposted(&s->cr);
		}
		break;
	default: /* send what the rules allow */
		if (s->sent < s->to_send && xrdma_credit_can_send_msg(&s->cr))
			sim_send(s, peer, XRDMA_MSG);
		else if (xrdma_credit_should_send_credit(&s->cr))
			sim_send(s, peer, XRDMA_CREDIT);
		break;
	}
}

static void test_credit_simulation(void **state)
{
	static const uint32_t depths[][2] = {
		{ 4, 4 }, { 4, 64 }, { 64, 4 }, { 8, 8 }, { 64, 64 }
	};
	static struct sim_side a, b;

	srandom(12345);
	for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
		uint32_t mind = depths[d][0] < depths[d][1] ? depths[d][0] : depths[d][1];

		for (int run = 0; run < 20; run++) {
			unsigned idle = 0, steps = 0;

			memset(&a, 0, sizeof(a));
			memset(&b, 0, sizeof(b));
			xrdma_credits_init(&a.cr, depths[d][0], depths[d][1]);
			xrdma_credits_init(&b.cr, depths[d][1], depths[d][0]);
			a.posted = depths[d][0];
			b.posted = depths[d][1];
			a.to_send = 500 + (unsigned)(random() % 500);
			b.to_send = run % 3 == 0 ? 0 : (unsigned)(random() % 800);
			/* Run until everything arrived and nothing moved for a
			 * long while. */
			while (idle < 2000) {
				unsigned before = a.got + b.got + a.credit_msgs + b.credit_msgs +
						  a.qt + b.qt + a.posted + b.posted;
				long r = random();

				if (r & 1)
					sim_step(&a, &b, (unsigned)(r >> 1));
				else
					sim_step(&b, &a, (unsigned)(r >> 1));
				idle = before == a.got + b.got + a.credit_msgs + b.credit_msgs +
							       a.qt + b.qt + a.posted + b.posted
					       ? idle + 1
					       : 0;
				assert_true(++steps < 10000000);
			}
			assert_int_equal(b.got, a.to_send);
			assert_int_equal(a.got, b.to_send);
			/* Quiescent: all buffers posted again, nothing owed
			 * beyond what the threshold lets wait. */
			assert_int_equal(a.posted, depths[d][0]);
			assert_int_equal(b.posted, depths[d][1]);
			assert_false(xrdma_credit_should_send_credit(&a.cr));
			assert_false(xrdma_credit_should_send_credit(&b.cr));
			/* Credit messages are a fraction of the data that
			 * shrinks with the depth (about one per depth/4
			 * messages): no ping-pong. */
			if (getenv("XR_SIM_VERBOSE"))
				fprintf(stderr, "depth %u/%u: %u+%u messages, %u+%u credits\n",
					depths[d][0], depths[d][1], a.to_send, b.to_send,
					a.credit_msgs, b.credit_msgs);
			assert_true(a.credit_msgs + b.credit_msgs <=
				    (a.to_send + b.to_send) * 8 / mind + 8);
		}
	}
}

static void test_send_ring(void **state)
{
	struct xrdma_ring r = { .size = 1000 };
	struct {
		size_t off, n, consumed;
	} live[64];
	unsigned h = 0, t = 0;
	size_t off, consumed;

	assert_int_equal(xrdma_ring_alloc(&r, 0, &off, &consumed), -ENOBUFS);
	assert_int_equal(xrdma_ring_alloc(&r, 1001, &off, &consumed), -ENOBUFS);
	assert_int_equal(xrdma_ring_alloc(&r, 600, &off, &consumed), 0);
	assert_int_equal(off, 0);
	assert_false(xrdma_ring_fits(&r, 500));
	assert_true(xrdma_ring_fits(&r, 400));
	assert_int_equal(xrdma_ring_alloc(&r, 300, &off, &consumed), 0);
	assert_int_equal(off, 600);
	xrdma_ring_free(&r, 600, 600);
	/* 100 left at the end, 600 at the start: a 200 wraps. */
	assert_int_equal(xrdma_ring_alloc(&r, 200, &off, &consumed), 0);
	assert_int_equal(off, 0);
	assert_int_equal(consumed, 300);
	assert_int_equal(r.used, 600);
	xrdma_ring_free(&r, 900, 300);
	xrdma_ring_free(&r, 200, 300);
	assert_int_equal(r.used, 0);

	/* Random sizes against a model: live allocations never overlap and
	 * the accounting returns to 0. */
	srandom(777);
	memset(&r, 0, sizeof(r));
	r.size = 4096;
	for (int i = 0; i < 200000; i++) {
		if ((random() & 1) && t - h < 64) {
			size_t n = 1 + (size_t)(random() % 1500);

			if (xrdma_ring_alloc(&r, n, &off, &consumed) == 0) {
				assert_true(off + n <= r.size);
				for (unsigned j = h; j < t; j++) {
					size_t o = live[j % 64].off, m = live[j % 64].n;

					assert_true(off + n <= o || o + m <= off);
				}
				live[t % 64].off = off;
				live[t % 64].n = n;
				live[t % 64].consumed = consumed;
				t++;
			} else {
				/* Refused only when really full enough. */
				assert_true(r.used + n > r.size / 2 || t != h);
			}
		} else if (h != t) {
			xrdma_ring_free(&r, live[h % 64].off + live[h % 64].n,
					live[h % 64].consumed);
			h++;
		}
	}
	while (h != t) {
		xrdma_ring_free(&r, live[h % 64].off + live[h % 64].n, live[h % 64].consumed);
		h++;
	}
	assert_int_equal(r.used, 0);
}

/* ---- scenarios (need a device) -------------------------------------------- */

static void test_connect(void **state)
{
	struct xport_stats st;

	cl_connect();
	assert_string_equal(xport_peer_name(cl.c), peer_node);
	assert_non_null(strchr(xport_peer_addr(cl.c), ':'));
	xport_stats(cl.c, &st);
	assert_int_equal(st.msgs_tx, 0);
	cl_expect(&cl, "ok", "ECHO 0");
}

static size_t msg_len(unsigned i, uint32_t max)
{
	static const size_t sizes[] = { 9, 64, 200, 255, 256, 257, 300, 1000, 4096, 8192, 30000 };

	if (i % 50 == 49)
		return max;
	return sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
}

static int echoes_caught_up(void *arg)
{
	unsigned *want = arg;

	return cl.echoes >= *want || cl.closed;
}

static void test_messages_both_ways(void **state)
{
	const uint32_t max = 128 << 10; /* both ends' default */
	struct xport_stats st;
	unsigned want;
	uint8_t big[(128 << 10) + 1] = { 'D' };
	struct iovec v = { big, sizeof(big) };

	cl_expect(&cl, "ok", "ECHO 1");
	cl.next_echo = 0;
	cl.echoes = cl.echo_bad = 0;
	for (unsigned i = 0; i < NMSGS; i++) {
		if (i >= ECHO_WINDOW) {
			want = i - ECHO_WINDOW;
			assert_true(run_while(echoes_caught_up, &want));
		}
		cl_data(&cl, i, msg_len(i, max), NULL);
	}
	want = NMSGS;
	assert_true(run_while(echoes_caught_up, &want));
	assert_int_equal(cl.echoes, NMSGS);
	assert_int_equal(cl.echo_bad, 0);
	cl_expect(&cl, "ok", "ECHO 0");
	cl_cmd(&cl, "STATS");
	assert_int_equal(strncmp(cl.reply, "3000 0 ", 7), 0);
	/* One byte over the negotiated maximum is refused locally. */
	assert_int_equal(xport_sendv(cl.c, &v, 1), -EMSGSIZE);
	xport_stats(cl.c, &st);
	assert_true(st.msgs_rx >= NMSGS);
	assert_true(st.msgs_tx >= NMSGS);
}

static void test_credits_exhausted(void **state)
{
	struct xport_stats st;
	uint64_t tx_before, bytes_before;
	unsigned first_block = 0, i = 0;
	int eagain = 0;
	static uint8_t buf[BURST_LEN];
	struct iovec v = { buf, sizeof(buf) };

	/* A slow receiver (in the two-machine mode it really sleeps) and a
	 * burst far larger than the receive depth, sent without running the
	 * loop: credits run out, messages queue, and the queue's high-water
	 * mark refuses the rest until writable_cb. */
	cl_expect(&cl, "ok", "SLOW %u", local_mode ? 0 : 300);
	xport_stats(cl.c, &st);
	tx_before = st.msgs_tx;
	bytes_before = st.bytes_tx;
	cl.writable = 0;
	buf[0] = 'D';
	for (; i < NBURST; i++) {
		put32(buf + 1, i);
		for (size_t j = 5; j < sizeof(buf); j++)
			buf[j] = dpat(i, j);
		if (xport_sendv(cl.c, &v, 1) == -EAGAIN)
			break;
	}
	first_block = i;
	xport_stats(cl.c, &st);
	assert_true(first_block < NBURST);
	assert_true(st.send_queued > 0);
	assert_true(st.send_queued <= 4u << 20);
	/* Everything the high-water mark allowed minus what the credits let
	 * through is waiting. */
	assert_true(first_block > 64);
	for (; i < NBURST; i++)
		cl_data(&cl, i, BURST_LEN, &eagain);
	xport_stats(cl.c, &st);
	assert_int_equal(st.msgs_tx - tx_before, NBURST);
	assert_int_equal(st.bytes_tx - bytes_before, (uint64_t)NBURST * BURST_LEN);
	cl_expect(&cl, "ok", "SLOW 0");
	cl_cmd(&cl, "STATS");
	{
		char want[32];

		snprintf(want, sizeof(want), "%u 0 ", NBURST);
		if (strncmp(cl.reply, want, strlen(want)))
			fprintf(stderr, "STATS: %s\n", cl.reply);
		assert_int_equal(strncmp(cl.reply, want, strlen(want)), 0);
	}
	xport_stats(cl.c, &st);
	assert_int_equal(st.send_queued, 0);
	fprintf(stderr, "burst: %u messages accepted before the first -EAGAIN, %d more refusals\n",
		first_block, eagain);
}

struct rma_wait {
	int done, err;
	int closed_first; /* the connection's closed_cb ran before this */
};

static void rma_cb(int err, void *arg)
{
	struct rma_wait *w = arg;

	w->done++;
	w->err = err;
	w->closed_first = cl.closed;
}

static void cl_reg(struct cl *k, size_t len, unsigned access, unsigned seed)
{
	cl_cmd(k, "REG %zu %u %u", len, access, seed);
	assert_true(k->have_key);
	assert_int_equal(k->key.length, len);
}

static uint8_t *local_buf;
static struct xport_mr *local_mr;

static void test_rma(void **state)
{
	struct rma_wait w[8] = { 0 };
	struct xport_stats st;
	size_t off = 1000000, len = (2u << 20) + 3;

	assert_non_null(cl.c);
	local_buf = memfd_map(LOCAL_LEN);
	assert_non_null(local_buf);
	assert_int_equal(
		xport_reg_mr(xa, local_buf, LOCAL_LEN, XPORT_ACCESS_LOCAL_WRITE, &local_mr), 0);
	assert_int_equal(xport_mr_key(local_mr)->length, LOCAL_LEN);
	cl_reg(&cl, REGION_LEN, XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE, 5);

	/* The whole region in one read (several chunks). */
	memset(local_buf, 0, LOCAL_LEN);
	assert_int_equal(
		xport_read(cl.c, local_mr, local_buf, REGION_LEN, &cl.key, 0, rma_cb, &w[0]), 0);
	assert_true(run_while(flag_set, &w[0].done));
	assert_int_equal(w[0].err, 0);
	for (size_t i = 0; i < REGION_LEN; i++)
		if (local_buf[i] != pat(i, 5))
			fail_msg("read: byte %zu is %u, want %u", i, local_buf[i], pat(i, 5));

	/* Small and unaligned. */
	memset(&w[0], 0, sizeof(w[0]));
	memset(local_buf, 0, 4096);
	assert_int_equal(
		xport_read(cl.c, local_mr, local_buf + 3, 777, &cl.key, 12345, rma_cb, &w[0]), 0);
	assert_true(run_while(flag_set, &w[0].done));
	assert_int_equal(w[0].err, 0);
	for (size_t i = 0; i < 777; i++)
		assert_int_equal(local_buf[3 + i], pat(12345 + i, 5));

	/* A write in the middle, then the target checks it and what is
	 * around it. */
	for (size_t i = 0; i < len; i++)
		local_buf[i] = pat(off + i, 9);
	memset(&w[0], 0, sizeof(w[0]));
	assert_int_equal(xport_write(cl.c, local_mr, local_buf, len, &cl.key, off, rma_cb, &w[0]),
			 0);
	assert_true(run_while(flag_set, &w[0].done));
	assert_int_equal(w[0].err, 0);
	cl_expect(&cl, "ok", "CHECK %zu %zu 9", off, len);
	cl_expect(&cl, "ok", "CHECK 0 %zu 5", off);
	cl_expect(&cl, "ok", "CHECK %zu %zu 5", off + len, (size_t)REGION_LEN - off - len);

	/* Eight reads at once, more than the read depth of some devices. */
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 8; i++)
		assert_int_equal(xport_read(cl.c, local_mr, local_buf + (size_t)i * (256 << 10),
					    256 << 10, &cl.key, (size_t)i * (256 << 10), rma_cb,
					    &w[i]),
				 0);
	for (int i = 0; i < 8; i++) {
		assert_true(run_while(flag_set, &w[i].done));
		assert_int_equal(w[i].err, 0);
		assert_int_equal(w[i].done, 1);
	}
	for (size_t i = 0; i < 8 * (256 << 10); i++) {
		unsigned seed = i >= off && i < off + len ? 9 : 5;

		if (local_buf[i] != pat(i, seed))
			fail_msg("parallel read: byte %zu is %u, want %u", i, local_buf[i],
				 pat(i, seed));
	}
	xport_stats(cl.c, &st);
	assert_int_equal(st.reads, 10);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.read_bytes, REGION_LEN + 777 + 8 * (256 << 10));
	assert_int_equal(st.write_bytes, len);
}

static void test_rma_bounds_local(void **state)
{
	struct xport_key k = cl.key;
	struct rma_wait w = { 0 };
	static uint8_t unregistered[64];

	assert_non_null(cl.c);
	assert_non_null(local_mr);
	/* Refused before anything is sent; the callback never runs. */
	assert_int_equal(
		xport_read(cl.c, local_mr, local_buf, 11, &cl.key, cl.key.length - 10, rma_cb, &w),
		-ERANGE);
	assert_int_equal(
		xport_write(cl.c, local_mr, local_buf, 1, &cl.key, cl.key.length, rma_cb, &w),
		-ERANGE);
	assert_int_equal(xport_read(cl.c, local_mr, local_buf, 1, &cl.key, UINT64_MAX, rma_cb, &w),
			 -ERANGE);
	assert_int_equal(xport_read(cl.c, local_mr, unregistered, 1, &cl.key, 0, rma_cb, &w),
			 -EINVAL);
	assert_int_equal(
		xport_read(cl.c, local_mr, local_buf + LOCAL_LEN - 1, 2, &cl.key, 0, rma_cb, &w),
		-EINVAL);
	k.id |= 1ull << 40; /* not an rkey */
	assert_int_equal(xport_read(cl.c, local_mr, local_buf, 1, &k, 0, rma_cb, &w), -EINVAL);
	settle(0.05);
	assert_int_equal(w.done, 0);
	assert_false(cl.closed);
}

/* An operation the target's device refuses: its callback reports an error,
 * then the connection ends (on RDMA a remote access error is fatal). */
static void expect_remote_refusal(int write, const struct xport_key *k, uint64_t off)
{
	struct rma_wait w = { 0 };

	assert_non_null(cl.c);
	assert_non_null(local_mr);
	if (write)
		assert_int_equal(xport_write(cl.c, local_mr, local_buf, 4096, k, off, rma_cb, &w),
				 0);
	else
		assert_int_equal(xport_read(cl.c, local_mr, local_buf, 4096, k, off, rma_cb, &w),
				 0);
	assert_true(run_while(flag_set, &w.done));
	assert_true(run_while(flag_set, &cl.closed));
	assert_false(w.closed_first); /* the operation completes first */
	assert_int_equal(w.done, 1);
	assert_int_not_equal(w.err, 0);
	assert_int_not_equal(cl.err, 0);
	fprintf(stderr, "refused %s: operation %s, connection %s\n", write ? "write" : "read",
		strerror(-w.err), strerror(-cl.err));
}

static void test_bad_rkey(void **state)
{
	struct xport_key k = cl.key;

	k.id ^= 0x5a; /* another key byte: no such registration */
	expect_remote_refusal(0, &k, 0);
	cl_connect();
}

static void test_outside_region(void **state)
{
	struct xport_key k;

	cl_reg(&cl, 1 << 20, XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE, 3);
	/* A key that lies about its length gets past the local check; the
	 * target's device refuses what lies beyond the registration. */
	k = cl.key;
	k.length = 64 << 20;
	expect_remote_refusal(0, &k, 32 << 20);
	cl_connect();
}

static void test_write_to_read_only(void **state)
{
	cl_reg(&cl, 1 << 20, XPORT_ACCESS_REMOTE_READ, 4);
	expect_remote_refusal(1, &cl.key, 0);
	cl_connect();
	/* The region is unchanged. */
	cl_expect(&cl, "ok", "CHECK 0 %u 4", 1u << 20);
}

struct close_order {
	int ops_done, ops_after_close, closed;
	int errs[8];
};

static struct close_order co;

static void co_rma_cb(int err, void *arg)
{
	co.errs[(intptr_t)arg] = err;
	co.ops_done++;
	if (co.closed)
		co.ops_after_close++;
}

static void co_closed(struct xport_conn *c, int err, void *arg)
{
	co.closed = 1;
	cl.closed++;
	cl.err = err;
	cl.c = NULL;
}

static const struct xport_conn_cbs co_cbs = {
	.recv_cb = cl_recv,
	.closed_cb = co_closed,
};

static void test_close_with_pending(void **state)
{
	cl_reg(&cl, REGION_LEN, XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE, 6);
	assert_non_null(local_mr);
	memset(&co, 0, sizeof(co));
	xport_set_cbs(cl.c, &co_cbs, &cl);
	for (intptr_t i = 0; i < 4; i++)
		assert_int_equal(xport_read(cl.c, local_mr, local_buf + i * (1 << 20), 1 << 20,
					    &cl.key, (uint64_t)i * (1 << 20), co_rma_cb, (void *)i),
				 0);
	xport_close(cl.c);
	xport_close(cl.c);		  /* idempotent */
	assert_int_equal(co.ops_done, 0); /* nothing from inside the call */
	assert_true(run_while(flag_set, &co.closed));
	assert_int_equal(co.ops_done, 4);
	assert_int_equal(co.ops_after_close, 0);
	assert_int_equal(cl.err, 0);
	for (int i = 0; i < 4; i++)
		assert_true(co.errs[i] == 0 || co.errs[i] == -ECONNRESET);
	cl_connect();
}

static void test_destroy_with_pending(void **state)
{
	struct xport *x2 = make_xport(pki_a, "n1");
	struct xport_mr *mr;
	struct cl k;
	struct rma_wait w = { 0 };
	uint8_t *buf = memfd_map(1 << 20);

	assert_non_null(buf);
	cl_reg(&cl, 1 << 20, XPORT_ACCESS_REMOTE_READ, 8);
	cl_connect_to(&k, x2, srv_addr, peer_node);
	assert_true(k.connected);
	assert_int_equal(xport_reg_mr(x2, buf, 1 << 20, XPORT_ACCESS_LOCAL_WRITE, &mr), 0);
	assert_int_equal(xport_read(k.c, mr, buf, 1 << 20, &cl.key, 0, rma_cb, &w), 0);
	xport_destroy(x2);
	/* Completed from inside destroy, no closed_cb. */
	assert_int_equal(w.done, 1);
	assert_int_equal(w.err, -ECANCELED);
	settle(0.2);
	assert_int_equal(k.closed, 0);
	munmap(buf, 1 << 20);
}

static void test_refusals(void **state)
{
	struct cl k;
	int accepted_before;

	/* The service may accept the last connection a little after our
	 * connected_cb: let that happen before counting. */
	settle(1.0);
	cl_cmd(&cl, "STATS");
	assert_int_equal(sscanf(cl.reply, "%*u %*u %d", &accepted_before), 1);

	/* Another cluster's node n1 calling our n2: refused. */
	cl_connect_to(&k, xo, srv_addr, peer_node);
	assert_false(k.connected);
	assert_int_not_equal(k.err, 0);
	fprintf(stderr, "other CA as client: %s\n", strerror(-k.err));

	/* Our n1 calling the other cluster's n2: we refuse it. */
	cl_connect_to(&k, xa, srv_addr_b, peer_node);
	assert_false(k.connected);
	assert_int_not_equal(k.err, 0);
	fprintf(stderr, "other CA as server: %s\n", strerror(-k.err));

	/* Right cluster, wrong name. */
	cl_connect_to(&k, xa, srv_addr, "n3");
	assert_false(k.connected);
	assert_int_equal(k.err, -EACCES);
	assert_int_equal(xport_connect(xa, srv_addr, "Not a name", &cl_cbs, &k, &k.c), -EINVAL);

	/* None of them reached the service's accept callbacks. */
	{
		int acc = -1, acc_b = -1;

		cl_cmd(&cl, "STATS");
		assert_int_equal(sscanf(cl.reply, "%*u %*u %d %d", &acc, &acc_b), 2);
		assert_int_equal(acc, accepted_before);
		assert_int_equal(acc_b, 0);
	}
}

/* ---- raw peers: the set-up protocol attacked from both sides ------------- */

struct raw_arg {
	char host[80];
	unsigned port;
	uint8_t priv[XRDMA_PRIV_MAX];
	size_t len;
	int rc;
	atomic_int done;
};

static void *raw_thread(void *p)
{
	struct raw_arg *a = p;

	a->rc = xrdma_test_raw_connect(a->host, a->port, a->priv, a->len, 20);
	atomic_store(&a->done, 1);
	return NULL;
}

static int raw_done(void *p)
{
	return atomic_load(&((struct raw_arg *)p)->done);
}

/* A raw RDMA CM connect on a thread while the loop runs (the listener may
 * be in this process). */
static int raw_connect(const char *host, unsigned port, const void *priv, size_t len)
{
	static struct raw_arg a;
	pthread_t th;

	memset(&a, 0, sizeof(a));
	snprintf(a.host, sizeof(a.host), "%s", host);
	a.port = port;
	if (len)
		memcpy(a.priv, priv, len);
	a.len = len;
	assert_int_equal(pthread_create(&th, NULL, raw_thread, &a), 0);
	assert_true(run_while(raw_done, &a));
	pthread_join(th, NULL);
	return a.rc;
}

/* A bare TLS connection of the inner transport, speaking our set-up
 * protocol by hand. */
struct tc {
	struct xport_conn *c;
	int connected, closed, err, got;
	uint8_t msg[64];
	size_t len;
};

static void tc_connected(struct xport_conn *c, void *arg)
{
	((struct tc *)arg)->connected = 1;
}

static void tc_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct tc *t = arg;

	t->got++;
	t->len = len < sizeof(t->msg) ? len : sizeof(t->msg);
	memcpy(t->msg, msg, t->len);
}

static void tc_closed(struct xport_conn *c, int err, void *arg)
{
	struct tc *t = arg;

	t->closed = 1;
	t->err = err;
}

static const struct xport_conn_cbs tc_cbs = {
	.connected_cb = tc_connected,
	.recv_cb = tc_recv,
	.closed_cb = tc_closed,
};

static void tc_open(struct xport *xt, struct tc *t)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(xport_connect(xt, srv_addr, peer_node, &tc_cbs, t, &t->c), 0);
	assert_true(run_while(flag_set, &t->connected));
}

static void tc_send(struct tc *t, const void *p, size_t len)
{
	struct iovec v = { (void *)p, len };

	assert_int_equal(xport_sendv(t->c, &v, 1), 0);
}

/* Authenticated over TLS, HELLO sent, WELCOME parsed into w. */
static void tc_hello(struct xport *xt, struct tc *t, struct xrdma_ctl *w)
{
	struct xrdma_ctl h = { .type = XRDMA_CTL_HELLO, .depth = 16, .max_msg = 4096 };
	uint8_t b[XRDMA_WELCOME_LEN];
	const char *why;

	tc_open(xt, t);
	tc_send(t, b, xrdma_ctl_build(&h, b));
	assert_true(run_while(flag_set, &t->got));
	assert_int_equal(xrdma_ctl_parse(t->msg, t->len, XRDMA_CTL_WELCOME, w, &why), 0);
}

static void test_raw_peers(void **state)
{
	struct xport_cfg cfg = { .pki_dir = pki_a, .node_name = "n1", .connect_timeout_s = 10 };
	struct xrdma_ctl w, k = { .type = XRDMA_CTL_CONNECT };
	uint8_t priv[XRDMA_CONNECT_LEN];
	char host[80], port[16];
	struct xport *xt = NULL;
	int accepted_before, acc;
	struct tc t;

	assert_int_equal(fab_hostport_split(srv_addr, host, sizeof(host), port, sizeof(port)), 0);
	assert_int_equal(xport_tcp_register(), 0);
	assert_int_equal(xport_create("tcp", loop, &cfg, &xt), 0);
	settle(0.5);
	cl_cmd(&cl, "STATS");
	assert_int_equal(sscanf(cl.reply, "%*u %*u %d", &accepted_before), 1);

	tc_hello(xt, &t, &w);
	fprintf(stderr, "welcome: RDMA port %u, depth %u, max %u\n", w.port, w.depth, w.max_msg);
	/* Wrong token, short private data, none at all: rejected. */
	memcpy(k.token, w.token, sizeof(k.token));
	k.token[7] ^= 0x40;
	xrdma_ctl_build(&k, priv);
	assert_int_equal(raw_connect(host, w.port, priv, sizeof(priv)), XRDMA_TEST_REJECTED);
	assert_int_equal(raw_connect(host, w.port, priv, 8), XRDMA_TEST_REJECTED);
	assert_int_equal(raw_connect(host, w.port, NULL, 0), XRDMA_TEST_REJECTED);
	/* The right token: accepted, once. */
	memcpy(k.token, w.token, sizeof(k.token));
	xrdma_ctl_build(&k, priv);
	assert_int_equal(raw_connect(host, w.port, priv, sizeof(priv)), XRDMA_TEST_ESTABLISHED);
	assert_int_equal(raw_connect(host, w.port, priv, sizeof(priv)), XRDMA_TEST_REJECTED);
	/* The raw peer left at once: the service's side ends, and so does
	 * its TLS half. */
	assert_true(run_while(flag_set, &t.closed));

	/* Garbage instead of HELLO, and a second HELLO after WELCOME: the
	 * service closes the TLS connection. */
	tc_open(xt, &t);
	tc_send(&t, "not a hello at all", 18);
	assert_true(run_while(flag_set, &t.closed));
	tc_hello(xt, &t, &w);
	{
		struct xrdma_ctl h = { .type = XRDMA_CTL_HELLO, .depth = 16, .max_msg = 4096 };
		uint8_t b[XRDMA_HELLO_LEN];

		tc_send(&t, b, xrdma_ctl_build(&h, b));
	}
	assert_true(run_while(flag_set, &t.closed));
	/* A HELLO with a depth below the minimum. */
	tc_open(xt, &t);
	{
		struct xrdma_ctl h = { .type = XRDMA_CTL_HELLO, .depth = 2, .max_msg = 4096 };
		uint8_t b[XRDMA_HELLO_LEN];

		tc_send(&t, b, xrdma_ctl_build(&h, b));
	}
	assert_true(run_while(flag_set, &t.closed));
	assert_int_equal(t.got, 0);

	xport_destroy(xt);
	settle(1.0);
	/* Exactly the one raw peer with the right token was accepted, and
	 * the service still works. */
	cl_cmd(&cl, "STATS");
	assert_int_equal(sscanf(cl.reply, "%*u %*u %d", &acc), 1);
	assert_int_equal(acc, accepted_before + 1);
}

static void test_orderly_close(void **state)
{
	cl_expect(&cl, "bye", "BYE");
	cl_close(&cl);
	assert_int_equal(cl.err, 0);
	if (local_mode)
		assert_true(run_while(flag_set, &svc.bye));
}

static int scen_setup(void **state)
{
	xa = make_xport(pki_a, "n1");
	xo = make_xport(pki_b, "n1");
	return 0;
}

static int scen_teardown(void **state)
{
	if (cl.c && !cl.closed)
		cl_close(&cl);
	xport_dereg_mr(local_mr);
	local_mr = NULL;
	if (local_buf)
		munmap(local_buf, LOCAL_LEN);
	local_buf = NULL;
	xport_destroy(xa);
	xport_destroy(xo);
	settle(0.1);
	return 0;
}

static const struct CMUnitTest scenarios[] = {
	cmocka_unit_test(test_connect),
	cmocka_unit_test(test_messages_both_ways),
	cmocka_unit_test(test_credits_exhausted),
	cmocka_unit_test(test_rma),
	cmocka_unit_test(test_rma_bounds_local),
	cmocka_unit_test(test_bad_rkey),
	cmocka_unit_test(test_outside_region),
	cmocka_unit_test(test_write_to_read_only),
	cmocka_unit_test(test_close_with_pending),
	cmocka_unit_test(test_destroy_with_pending),
	cmocka_unit_test(test_refusals),
	cmocka_unit_test(test_raw_peers),
	cmocka_unit_test(test_orderly_close),
};

/* ---- the server role ------------------------------------------------------ */

static void test_serve(void **state)
{
	svc_start(srv_addr);
	fprintf(stderr, "serving on %s (other cluster on %s)\n", svc.addr, svc.addr_b);
	/* The client's scenarios take a few minutes under emulation. */
	ev_now_update(loop);
	assert_true(run_while_s(flag_set, &svc.bye, 600));
	assert_int_equal(svc.errs, 0);
	assert_int_equal(svc.accepted_b, 0);
	assert_true(svc.accepted >= 7);
	svc_stop();
	settle(0.1);
}

/* ---- main ----------------------------------------------------------------- */

static int make_pki(const char *dir)
{
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	snprintf(pki_a, sizeof(pki_a), "%s/a", dir);
	snprintf(pki_b, sizeof(pki_b), "%s/b", dir);
	if (fab_pki_init_ca(pki_a, "cluster-a", 30) || fab_pki_init_ca(pki_b, "cluster-b", 30))
		return -EIO;
	if (fab_pki_issue(pki_a, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(pki_a, FAB_ROLE_NODE, "n2", 30) ||
	    fab_pki_issue(pki_a, FAB_ROLE_NODE, "n3", 30) ||
	    fab_pki_issue(pki_b, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(pki_b, FAB_ROLE_NODE, "n2", 30))
		return -EIO;
	return 0;
}

static int use_pki(void)
{
	const char *d = getenv("XR_PKI");

	if (!d) {
		fprintf(stderr, "XR_PKI must name the directory made by \"pki\"\n");
		return -1;
	}
	snprintf(pki_a, sizeof(pki_a), "%s/a", d);
	snprintf(pki_b, sizeof(pki_b), "%s/b", d);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: test_xport_rdma [pki DIR | server ADDR:PORT | "
			"client ADDR:PORT PEER]\n");
	return 2;
}

/* The other cluster's listener is on the next port. */
static void addr_b_of(const char *hostport, char *out, size_t len)
{
	char host[80], port[16];

	if (fab_hostport_split(hostport, host, sizeof(host), port, sizeof(port)))
		snprintf(out, len, "?");
	else
		snprintf(out, len, "%.64s:%d", host, atoi(port) + 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest host_tests[] = {
		cmocka_unit_test(test_registry),      cmocka_unit_test(test_create_checks),
		cmocka_unit_test(test_ctl_formats),   cmocka_unit_test(test_msg_format),
		cmocka_unit_test(test_credit_police), cmocka_unit_test(test_credit_simulation),
		cmocka_unit_test(test_send_ring),
	};
	const struct CMUnitTest serve[] = { cmocka_unit_test(test_serve) };
	const char *lvl = getenv("XR_LOG");
	enum fab_log_level level = FAB_LOG_ERR;
	char tmp[] = "/tmp/fabxr-XXXXXX";
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if (lvl)
		fab_log_level_parse(lvl, &level);
	fab_log_init("test_xport_rdma", level);
	setvbuf(stdout, NULL, _IOLBF, 0);
	loop = ev_default_loop(0);
	if (xport_rdma_register())
		return 1;

	if (argc == 3 && !strcmp(argv[1], "pki")) {
		rc = make_pki(argv[2]);
		if (rc)
			fprintf(stderr, "pki %s: %s\n", argv[2], strerror(-rc));
		return rc ? 1 : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "server")) {
		if (use_pki())
			return 2;
		snprintf(srv_addr, sizeof(srv_addr), "%s", argv[2]);
		return cmocka_run_group_tests_name("xport_rdma server", serve, NULL, NULL);
	}
	if (argc == 4 && !strcmp(argv[1], "client")) {
		if (use_pki() || fab_name_valid(argv[3]))
			return 2;
		snprintf(srv_addr, sizeof(srv_addr), "%s", argv[2]);
		addr_b_of(srv_addr, srv_addr_b, sizeof(srv_addr_b));
		snprintf(peer_node, sizeof(peer_node), "%s", argv[3]);
		return cmocka_run_group_tests_name("xport_rdma client", scenarios, scen_setup,
						   scen_teardown);
	}
	if (argc != 1)
		return usage();

	/* Host checks, then the scenarios in one process if there is a
	 * device and an address for it. */
	if (!mkdtemp(tmp) || make_pki(tmp))
		return 1;
	rc = cmocka_run_group_tests_name("xport_rdma without a device", host_tests, NULL, NULL);
	if (rc == 0 && !have_device()) {
		printf("SKIP: no RDMA device\n");
		rc = 77;
	} else if (rc == 0) {
		const char *a = getenv("XR_ADDR") ? getenv("XR_ADDR") : getenv("FABVM_ADDR");

		if (!a) {
			printf("SKIP: an RDMA device but no address (set XR_ADDR)\n");
			rc = 77;
		} else {
			char hp[100];

			local_mode = 1;
			snprintf(self_addr, sizeof(self_addr), "%s", a);
			snprintf(hp, sizeof(hp), "%s:0", self_addr);
			svc_start(hp);
			snprintf(srv_addr, sizeof(srv_addr), "%s", svc.addr);
			snprintf(srv_addr_b, sizeof(srv_addr_b), "%s", svc.addr_b);
			rc = cmocka_run_group_tests_name("xport_rdma scenarios, one process",
							 scenarios, scen_setup, scen_teardown);
			svc_stop();
			settle(0.1);
		}
	}
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd))
			rc = rc ? rc : 1;
	}
	return rc;
}
