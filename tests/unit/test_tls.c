// SPDX-License-Identifier: MIT
/*
 * Mutual TLS and framed connections over loopback, all in one process on one
 * libev loop (raw misbehaving clients run on a thread with blocking OpenSSL).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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

#include "fab/conn.h"
#include "fab/frame.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"

static char dir_a[64], dir_b[64]; /* two independent cluster PKIs */

struct side {
	struct fab_conn *c;
	int opened, closed, err;
	int nframes;
	char last[256];
	char reason[256];
};

static struct side server_sides[8];
static int nserver;
static struct fab_conn_opts server_opts;
static SSL_CTX *server_ctx;
static struct ev_loop *loop;

static void side_open(struct fab_conn *c, void *arg)
{
	((struct side *)arg)->opened = 1;
}

static void side_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	struct side *s = arg;

	s->nframes++;
	snprintf(s->last, sizeof(s->last), "%.*s", (int)len, (const char *)p);
	/* The server echoes so both directions are exercised. */
	if (s >= server_sides && s < server_sides + 8)
		assert_int_equal(fab_conn_send(c, p, len), 0);
}

static void side_close(struct fab_conn *c, int err, void *arg)
{
	struct side *s = arg;

	s->closed = 1;
	s->err = err;
	snprintf(s->reason, sizeof(s->reason), "%s", fab_conn_reason(c));
	s->c = NULL;
}

static const struct fab_conn_ops side_ops = {
	.open_cb = side_open,
	.frame_cb = side_frame,
	.close_cb = side_close,
};

static void accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[64];
	int fd = accept4(w->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	assert_true(nserver < 8);
	fab_sockaddr_str(&ss, peer, sizeof(peer));
	memset(&server_sides[nserver], 0, sizeof(server_sides[0]));
	assert_int_equal(fab_conn_accept(l, server_ctx, fd, peer, &server_opts, &side_ops,
					 &server_sides[nserver], &server_sides[nserver].c),
			 0);
	nserver++;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs the loop until *flag or *flag2 (if given) is non-zero, or 5 s pass. */
static int run_until2(const int *flag, const int *flag2)
{
	ev_timer tick;
	int i;

	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	for (i = 0; i < 500 && !*flag && !(flag2 && *flag2); i++)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return *flag;
}

static int run_until(const int *flag)
{
	return run_until2(flag, NULL);
}

/* Runs the loop for ms milliseconds of wall time. */
static void settle(int ms)
{
	ev_timer tick;
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + ms / 1000.0;
	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (ev_now(loop) < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
}

/* True when every server-side connection of the last test has closed. */
static int servers_closed(void)
{
	for (int i = 0; i < nserver; i++)
		if (server_sides[i].c && !server_sides[i].closed)
			return 0;
	return 1;
}

static int lfd;
static ev_io lio;
static char addr[64];

static int group_setup(void **state)
{
	strcpy(dir_a, "/tmp/fabtls-a-XXXXXX");
	strcpy(dir_b, "/tmp/fabtls-b-XXXXXX");
	if (!mkdtemp(dir_a) || !mkdtemp(dir_b))
		return -1;
	/* fab_pki_init_ca wants to create its files; the dirs may exist. */
	if (fab_pki_init_ca(dir_a, "cluster-a", 30) || fab_pki_init_ca(dir_b, "cluster-b", 30))
		return -1;
	if (fab_pki_issue(dir_a, FAB_ROLE_CONTROLLER, "controller", 30) ||
	    fab_pki_issue(dir_a, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(dir_a, FAB_ROLE_ADMIN, "admin", 30) ||
	    fab_pki_issue(dir_b, FAB_ROLE_NODE, "n1", 30) ||
	    fab_pki_issue(dir_b, FAB_ROLE_CONTROLLER, "controller", 30))
		return -1;
	loop = ev_default_loop(0);
	if (fab_tls_ctx_new(dir_a, FAB_ROLE_CONTROLLER, "controller", 1, &server_ctx))
		return -1;
	lfd = fab_listen("127.0.0.1:0", addr, sizeof(addr));
	if (lfd < 0)
		return -1;
	ev_io_init(&lio, accept_cb, lfd, EV_READ);
	ev_io_start(loop, &lio);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[256];

	ev_io_stop(loop, &lio);
	close(lfd);
	SSL_CTX_free(server_ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir_a, dir_b);
	return system(cmd);
}

static void reset(unsigned server_roles)
{
	/* Connections of the previous test must be gone before their slots
	 * are reused, or a late close would land in the next test. */
	for (int i = 0; i < nserver; i++)
		if (server_sides[i].c && !server_sides[i].closed)
			fab_conn_close(server_sides[i].c, 0, "test reset");
	for (int t = 0; t < 500 && !servers_closed(); t++)
		settle(10);
	assert_true(servers_closed());
	memset(server_sides, 0, sizeof(server_sides));
	nserver = 0;
	memset(&server_opts, 0, sizeof(server_opts));
	server_opts.peer_roles = server_roles;
	server_opts.max_frame = 4096;
}

/* Connects a client with the given context; returns once open or closed. */
static void client_connect(SSL_CTX *ctx, unsigned expect_roles, struct side *cl)
{
	struct fab_conn_opts o = { .peer_roles = expect_roles, .max_frame = 4096 };

	memset(cl, 0, sizeof(*cl));
	assert_int_equal(fab_conn_connect(loop, ctx, addr, &o, &side_ops, cl, &cl->c), 0);
	run_until2(&cl->opened, &cl->closed);
}

static void test_mutual_ok(void **state)
{
	SSL_CTX *cctx;
	struct side cl;

	reset(FAB_ROLE_BIT(FAB_ROLE_NODE) | FAB_ROLE_BIT(FAB_ROLE_ADMIN));
	assert_int_equal(fab_tls_ctx_new(dir_a, FAB_ROLE_NODE, "n1", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &cl);
	assert_true(cl.opened);
	assert_int_equal(fab_conn_peer(cl.c)->role, FAB_ROLE_CONTROLLER);
	assert_string_equal(fab_conn_peer(cl.c)->name, "controller");
	run_until(&server_sides[0].opened);
	assert_int_equal(fab_conn_peer(server_sides[0].c)->role, FAB_ROLE_NODE);
	assert_string_equal(fab_conn_peer(server_sides[0].c)->name, "n1");

	assert_int_equal(fab_conn_send(cl.c, "ping", 4), 0);
	run_until(&cl.nframes);
	assert_string_equal(server_sides[0].last, "ping");
	assert_string_equal(cl.last, "ping");

	/* Over max_frame is refused locally, nothing queued. */
	{
		static char big[5000];

		assert_int_equal(fab_conn_send(cl.c, big, sizeof(big)), -EMSGSIZE);
		assert_int_equal(fab_conn_queued(cl.c), 0);
	}
	fab_conn_close(cl.c, 0, NULL);
	run_until(&cl.closed);
	run_until(&server_sides[0].closed);
	assert_int_equal(server_sides[0].err, 0);
	SSL_CTX_free(cctx);
}

static void test_other_ca_refused(void **state)
{
	SSL_CTX *cctx;
	struct side cl;

	reset(FAB_ROLE_BIT(FAB_ROLE_NODE));
	/* Node n1 of cluster B: a well-formed certificate from the wrong CA. */
	assert_int_equal(fab_tls_ctx_new(dir_b, FAB_ROLE_NODE, "n1", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &cl);
	assert_false(cl.opened);
	assert_true(cl.closed);
	run_until(&server_sides[0].closed);
	assert_false(server_sides[0].opened);
	assert_int_not_equal(server_sides[0].err, 0);
	assert_non_null(strstr(server_sides[0].reason, "handshake"));
	SSL_CTX_free(cctx);
}

static void test_missing_client_cert_refused(void **state)
{
	char ca[128];
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	struct side cl;

	reset(FAB_ROLE_BIT(FAB_ROLE_NODE));
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir_a);
	assert_non_null(cctx);
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &cl);
	/* TLS 1.3 clients finish before the server's verdict: look at both. */
	if (cl.opened)
		run_until(&cl.closed);
	assert_true(cl.closed);
	run_until(&server_sides[0].closed);
	assert_false(server_sides[0].opened);
	assert_non_null(strstr(server_sides[0].reason, "handshake"));
	SSL_CTX_free(cctx);
}

static void test_node_cert_as_admin_refused(void **state)
{
	SSL_CTX *cctx;
	struct side cl;

	/* This server accepts admins only; the client holds a valid node
	 * certificate of the right cluster. */
	reset(FAB_ROLE_BIT(FAB_ROLE_ADMIN));
	assert_int_equal(fab_tls_ctx_new(dir_a, FAB_ROLE_NODE, "n1", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &cl);
	if (cl.opened)
		run_until(&cl.closed);
	assert_true(cl.closed);
	run_until(&server_sides[0].closed);
	assert_false(server_sides[0].opened);
	assert_int_equal(server_sides[0].err, -EACCES);
	assert_non_null(strstr(server_sides[0].reason, "node 'n1'"));
	SSL_CTX_free(cctx);

	/* And the admin certificate is accepted by the same server. */
	reset(FAB_ROLE_BIT(FAB_ROLE_ADMIN));
	assert_int_equal(fab_tls_ctx_new(dir_a, FAB_ROLE_ADMIN, "admin", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &cl);
	assert_true(cl.opened);
	run_until(&server_sides[0].opened);
	assert_true(server_sides[0].opened);
	fab_conn_close(cl.c, 0, NULL);
	run_until(&cl.closed);
	SSL_CTX_free(cctx);
}

static void test_client_checks_server_identity(void **state)
{
	SSL_CTX *cctx;
	struct side cl;

	/* A client that wants a node on the other end refuses the controller. */
	reset(FAB_ROLE_BIT(FAB_ROLE_NODE));
	assert_int_equal(fab_tls_ctx_new(dir_a, FAB_ROLE_NODE, "n1", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_NODE), &cl);
	assert_false(cl.opened);
	assert_int_equal(cl.err, -EACCES);
	SSL_CTX_free(cctx);
}

/* ---- misbehaving raw clients -------------------------------------------- */

struct raw_job {
	const uint8_t *bytes;
	size_t len;
	int abrupt; /* close the socket without TLS close_notify (a crashed peer) */
};

static void *raw_client(void *arg)
{
	struct raw_job *job = arg;
	char crt[128], key[128], ca[128];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char *colon = strrchr(addr, ':');

	snprintf(ca, sizeof(ca), "%s/ca.crt", dir_a);
	fab_pki_paths(dir_a, FAB_ROLE_NODE, "n1", crt, key, sizeof(crt));
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
			if (!job->abrupt)
				SSL_shutdown(ssl);
		}
		SSL_free(ssl);
	}
	close(fd);
	SSL_CTX_free(ctx);
	return NULL;
}

/* Opens a good client, then lets a raw client send bytes; checks the raw
 * connection is closed with want_err and the good one still works. */
static void misbehave2(const uint8_t *bytes, size_t len, int abrupt, int want_err,
		       const char *want_reason)
{
	struct raw_job job = { bytes, len, abrupt };
	SSL_CTX *cctx;
	struct side good;
	pthread_t th;

	reset(FAB_ROLE_BIT(FAB_ROLE_NODE));
	assert_int_equal(fab_tls_ctx_new(dir_a, FAB_ROLE_NODE, "n1", 0, &cctx), 0);
	client_connect(cctx, FAB_ROLE_BIT(FAB_ROLE_CONTROLLER), &good);
	assert_true(good.opened);
	run_until(&server_sides[0].opened);

	pthread_create(&th, NULL, raw_client, &job);
	for (int t = 0; t < 500 && nserver < 2; t++)
		settle(10);
	assert_int_equal(nserver, 2);
	run_until(&server_sides[1].closed);
	pthread_join(th, NULL);
	assert_true(server_sides[1].closed);
	/* A vanished peer may be seen as EOF or, if our echo raced its close,
	 * as a reset: either way an end, never a protocol error. */
	if (!(want_err == 0 && server_sides[1].err == -ECONNRESET))
		assert_int_equal(server_sides[1].err, want_err);
	assert_non_null(strstr(server_sides[1].reason, want_reason));

	/* Nothing else was affected. */
	assert_false(server_sides[0].closed);
	assert_int_equal(fab_conn_send(good.c, "still here", 10), 0);
	run_until(&good.nframes);
	assert_string_equal(good.last, "still here");
	fab_conn_close(good.c, 0, NULL);
	run_until(&good.closed);
	SSL_CTX_free(cctx);
}

static void misbehave(const uint8_t *bytes, size_t len, int want_err, const char *want_reason)
{
	misbehave2(bytes, len, 0, want_err, want_reason);
}

static void test_garbage_frame(void **state)
{
	static const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	misbehave(junk, sizeof(junk) - 1, -EPROTO, "garbage");
}

static void test_oversized_frame(void **state)
{
	uint8_t buf[FAB_FRAME_HDR_LEN];

	fab_frame_hdr_encode(buf, 4097); /* server max_frame is 4096 */
	misbehave(buf, sizeof(buf), -EMSGSIZE, "oversized");
}

static void test_zero_length_frame(void **state)
{
	uint8_t buf[FAB_FRAME_HDR_LEN];

	fab_frame_hdr_encode(buf, 0);
	misbehave(buf, sizeof(buf), -EBADMSG, "zero length");
}

static void test_truncated_frame(void **state)
{
	uint8_t buf[FAB_FRAME_HDR_LEN + 10];

	fab_frame_hdr_encode(buf, 100); /* announces 100, sends 10, closes */
	memset(buf + FAB_FRAME_HDR_LEN, 'x', 10);
	misbehave(buf, sizeof(buf), -EPIPE, "truncated");
	/* The same from a peer that dies without close_notify. */
	misbehave2(buf, sizeof(buf), 1, -EPIPE, "truncated");
}

static void test_abrupt_close_between_frames(void **state)
{
	uint8_t buf[FAB_FRAME_HDR_LEN + 4];

	/* A whole frame, then the peer vanishes: an orderly end, not an error. */
	fab_frame_hdr_encode(buf, 4);
	memcpy(buf + FAB_FRAME_HDR_LEN, "ping", 4);
	misbehave2(buf, sizeof(buf), 1, 0, "closed the connection");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mutual_ok),
		cmocka_unit_test(test_other_ca_refused),
		cmocka_unit_test(test_missing_client_cert_refused),
		cmocka_unit_test(test_node_cert_as_admin_refused),
		cmocka_unit_test(test_client_checks_server_identity),
		cmocka_unit_test(test_garbage_frame),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_zero_length_frame),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_abrupt_close_between_frames),
	};

	fab_log_init("test_tls", FAB_LOG_WARN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
