// SPDX-License-Identifier: MIT
/*
 * rvmbus link over the TCP transport on loopback: two nodes stream
 * messages both ways while the connection is cut again and again; every
 * message arrives exactly once and in order, and the session resumes on
 * each new connection. Then the restarts: a server process that comes back
 * without the session (the client restarts the stream once, reset_cb), and
 * a client process that comes back with a new session id (the server ends
 * the old session, end_cb).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/log.h"
#include "fab/pki.h"
#include "fab/rvmbus_link.h"
#include "fab/xport.h"

#define N 20000

struct side {
	uint64_t next; /* next value expected */
	uint64_t got;
	bool bad;
	bool drop_first_up; /* cut the first connection once it is up */
	int ups, downs, resets, ends;
	bool conn_bad;	  /* rvl_conn() disagreed with the link state */
	struct rvl *link; /* server side: the session, until it ends */
	struct rvl *ended;
	uint64_t ended_id;
};

static struct side at_client, at_server;
static struct rvl *server_link;
/* Where the next server session reports (restart tests). */
static struct side *next_server_side = &at_server;

static void deliver(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg)
{
	struct side *s = arg;
	uint64_t v;

	if (type != 0x100 || len != sizeof(v)) {
		s->bad = true;
		return;
	}
	memcpy(&v, body, sizeof(v));
	if (v != s->next)
		s->bad = true;
	s->next = v + 1;
	s->got++;
}

static void state(struct rvl *l, bool up, void *arg)
{
	struct side *s = arg;

	if (up)
		s->ups++;
	else
		s->downs++;
	if (up && s->drop_first_up) {
		s->drop_first_up = false;
		rvl_drop(l);
	}
	if (!rvl_conn(l) != !up)
		s->conn_bad = true;
}

static void reset(struct rvl *l, void *arg)
{
	struct side *s = arg;

	/* The peer's stream starts again from its first message; the link
	 * is not up yet. */
	s->resets++;
	s->next = 1;
	if (rvl_is_up(l) || rvl_conn(l))
		s->conn_bad = true;
}

static void end(struct rvl *l, void *arg)
{
	struct side *s = arg;

	s->ends++;
	s->ended = l;
	s->ended_id = rvl_session_id(l);
	if (s->link == l)
		s->link = NULL;
	if (server_link == l)
		server_link = NULL;
	if (rvl_is_up(l) || rvl_conn(l))
		s->conn_bad = true;
}

static const struct rvl_ops ops = {
	.deliver_cb = deliver, .state_cb = state, .reset_cb = reset, .end_cb = end
};

static int new_session(struct rvl *l, const char *peer, void *arg, const struct rvl_ops **o,
		       void **larg)
{
	if (strcmp(peer, "n1"))
		return -EACCES;
	/* Other sessions of n1 have ended before a new one starts. */
	if (server_link)
		return -EEXIST;
	server_link = l;
	next_server_side->link = l;
	*o = &ops;
	*larg = next_server_side;
	return 0;
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

static void test_stream_survives_cuts(void **state_)
{
	char dir[] = "/tmp/fabrvl-XXXXXX", addr[64], cmd[128];
	struct ev_loop *loop = ev_default_loop(0);
	struct xport *xa, *xb;
	struct xport_cfg ca = { .pki_dir = dir, .node_name = "n1" };
	struct xport_cfg cb = { .pki_dir = dir, .node_name = "n2" };
	struct rvl_cfg lc = { .window = 128, .backoff_min_ms = 5, .backoff_max_ms = 50 };
	struct rvl_server *srv;
	struct rvl *cl;
	uint64_t sent_c = 0, sent_s = 0, connects, resent, dups;
	ev_timer t;
	int cuts = 0;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(fab_pki_init_ca(dir, "c", 30), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", 30), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n2", 30), 0);
	assert_int_equal(xport_tcp_register(), 0);
	assert_int_equal(xport_create("tcp", loop, &ca, &xa), 0);
	assert_int_equal(xport_create("tcp", loop, &cb, &xb), 0);
	assert_int_equal(rvl_server_start(loop, xb, "127.0.0.1:0", &lc, new_session, NULL, addr,
					  sizeof(addr), &srv),
			 0);
	at_client.next = at_server.next = 1;
	assert_int_equal(rvl_client_start(loop, xa, addr, "n2", &lc, &ops, &at_client, &cl), 0);
	ev_timer_init(&t, tick, 0.001, 0.001);
	ev_timer_start(loop, &t);

	for (int i = 0; i < 200000 && (at_server.got < N || at_client.got < N); i++) {
		/* Feed both directions as fast as the windows allow. */
		while (sent_c < N) {
			uint64_t v = sent_c + 1;

			if (rvl_send(cl, 0x100, &v, sizeof(v)))
				break;
			sent_c++;
		}
		while (server_link && sent_s < N) {
			uint64_t v = sent_s + 1;

			if (rvl_send(server_link, 0x100, &v, sizeof(v)))
				break;
			sent_s++;
		}
		/* Cut the connection every ~1,000 messages (from either side). */
		if (rvl_is_up(cl) && at_server.got / 1000 > (uint64_t)cuts && cuts < 15) {
			cuts++;
			rvl_drop(cuts % 2 ? cl : server_link);
		}
		ev_run(loop, EVRUN_ONCE);
		if (getenv("RVL_DEBUG") && i % 2000 == 0)
			fprintf(stderr,
				"i=%d up=%d srv=%p got s=%llu c=%llu sent c=%llu s=%llu cuts=%d\n",
				i, rvl_is_up(cl), (void *)server_link,
				(unsigned long long)at_server.got,
				(unsigned long long)at_client.got, (unsigned long long)sent_c,
				(unsigned long long)sent_s, cuts);
	}
	assert_false(at_server.bad);
	assert_false(at_client.bad);
	assert_int_equal(at_server.got, N);
	assert_int_equal(at_client.got, N);
	rvl_counts(cl, &connects, &resent, &dups);
	fprintf(stderr, "rvl: %d cuts, %llu connections, %llu resent, %llu duplicates dropped\n",
		cuts, (unsigned long long)connects, (unsigned long long)resent,
		(unsigned long long)dups);
	assert_int_equal(cuts, 15);
	assert_true(connects >= 16);
	/* In-flight loss itself is exercised by test_rvs (a local close here
	 * flushes what was queued); this test proves resumption end to end. */
	assert_true(at_client.ups >= 16);

	ev_timer_stop(loop, &t);
	rvl_stop(cl);
	rvl_server_stop(srv);
	xport_destroy(xa);
	xport_destroy(xb);
	ev_run(loop, EVRUN_NOWAIT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- restarts ---------------------------------------------------------------- */

struct fixture {
	char dir[32];
	struct ev_loop *loop;
	ev_timer tick;
};

static void fixture_init(struct fixture *f)
{
	strcpy(f->dir, "/tmp/fabrvl-XXXXXX");
	/* A loop of its own: a failed test leaves nothing on the next one's. */
	f->loop = ev_loop_new(0);
	assert_non_null(f->loop);
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(fab_pki_init_ca(f->dir, "c", 30), 0);
	assert_int_equal(fab_pki_issue(f->dir, FAB_ROLE_NODE, "n1", 30), 0);
	assert_int_equal(fab_pki_issue(f->dir, FAB_ROLE_NODE, "n2", 30), 0);
	assert_int_equal(xport_tcp_register(), 0);
	/* Keeps ev_run(EVRUN_ONCE) from blocking for long. */
	ev_timer_init(&f->tick, tick, 0.001, 0.001);
	ev_timer_start(f->loop, &f->tick);
	memset(&at_client, 0, sizeof(at_client));
	memset(&at_server, 0, sizeof(at_server));
	server_link = NULL;
	next_server_side = &at_server;
}

static void fixture_fini(struct fixture *f)
{
	char cmd[64];

	ev_timer_stop(f->loop, &f->tick);
	ev_run(f->loop, EVRUN_NOWAIT);
	ev_loop_destroy(f->loop);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
}

static struct xport *node(struct fixture *f, const char *name)
{
	struct xport_cfg cfg = { .pki_dir = f->dir, .node_name = name };
	struct xport *x;

	assert_int_equal(xport_create("tcp", f->loop, &cfg, &x), 0);
	return x;
}

/* Runs the loop until *flag is true or 10 s have passed; returns *flag. */
static bool run_until(struct fixture *f, bool (*done)(void))
{
	double end;

	ev_now_update(f->loop);
	end = ev_now(f->loop) + 10;
	while (!done() && ev_now(f->loop) < end)
		ev_run(f->loop, EVRUN_ONCE);
	return done();
}

/* Runs the loop for secs. */
static void run_for(struct fixture *f, double secs)
{
	double end;

	ev_now_update(f->loop);
	end = ev_now(f->loop) + secs;
	while (ev_now(f->loop) < end)
		ev_run(f->loop, EVRUN_ONCE);
}

/*
 * Streams values 1..n each way between client c (reporting to cs) and the
 * server session of ss, which must each expect 1 next.
 */
static void exchange(struct fixture *f, struct rvl *c, struct side *cs, struct side *ss, uint64_t n)
{
	uint64_t sent_c = 0, sent_s = 0, got_c = cs->got, got_s = ss->got;
	double end;

	assert_int_equal(cs->next, 1);
	assert_int_equal(ss->next, 1);
	ev_now_update(f->loop);
	end = ev_now(f->loop) + 10;
	while ((cs->got - got_c < n || ss->got - got_s < n) && ev_now(f->loop) < end) {
		uint64_t v;

		while (sent_c < n && (v = sent_c + 1, !rvl_send(c, 0x100, &v, sizeof(v))))
			sent_c++;
		while (ss->link && sent_s < n &&
		       (v = sent_s + 1, !rvl_send(ss->link, 0x100, &v, sizeof(v))))
			sent_s++;
		ev_run(f->loop, EVRUN_ONCE);
	}
	assert_false(cs->bad);
	assert_false(ss->bad);
	assert_int_equal(cs->got - got_c, n);
	assert_int_equal(ss->got - got_s, n);
	assert_int_equal(cs->next, n + 1);
	assert_int_equal(ss->next, n + 1);
}

static struct rvl *cl_watch;
static bool client_down(void)
{
	return !rvl_is_up(cl_watch);
}

static int want_server_ups;
static bool reset_and_up(void)
{
	return at_client.resets && rvl_is_up(cl_watch) && server_link && rvl_is_up(server_link) &&
	       next_server_side->ups >= want_server_ups;
}

/*
 * The server process restarts: the client comes back to a server without
 * the session. It restarts the stream exactly once (reset_cb), drops what
 * it had queued for the lost server, and both directions start again from
 * the first message, with no sequence-gap loop. With cut, the new server
 * cuts its first connection right after its FRESH hello, which may or may
 * not have reached the client: still exactly one reset either way.
 */
static void server_restart(bool cut)
{
	struct rvl_cfg lc = { .window = 64, .backoff_min_ms = 5, .backoff_max_ms = 20 };
	struct side at_server2 = { .next = 1, .drop_first_up = cut };
	struct rvl_server *srv, *srv2;
	struct xport *xa, *xb, *xb2;
	uint64_t connects, resent, dups;
	struct fixture f;
	struct rvl *cl;
	char addr[64];

	fixture_init(&f);
	xa = node(&f, "n1");
	xb = node(&f, "n2");
	assert_int_equal(rvl_server_start(f.loop, xb, "127.0.0.1:0", &lc, new_session, NULL, addr,
					  sizeof(addr), &srv),
			 0);
	at_client.next = at_server.next = 1;
	assert_int_equal(rvl_client_start(f.loop, xa, addr, "n2", &lc, &ops, &at_client, &cl), 0);
	cl_watch = cl;
	exchange(&f, cl, &at_client, &at_server, 300);
	assert_int_equal(at_client.resets, 0);
	assert_int_not_equal(rvl_session_id(cl), 0);
	assert_true(rvl_session_id(cl) == rvl_session_id(server_link));

	/* The server process dies: its transport goes with it. */
	rvl_server_stop(srv);
	xport_destroy(xb);
	server_link = NULL;
	assert_true(run_until(&f, client_down));
	/* Queued for the dead server; must never reach the new one. */
	for (uint64_t v = 1000; v < 1010; v++)
		assert_int_equal(rvl_send(cl, 0x100, &v, sizeof(v)), 0);
	run_for(&f, 0.05); /* a few refused reconnects */

	/* A new process on the same port, without the session. */
	next_server_side = &at_server2;
	xb2 = node(&f, "n2");
	assert_int_equal(
		rvl_server_start(f.loop, xb2, addr, &lc, new_session, NULL, NULL, 0, &srv2), 0);
	want_server_ups = 1 + cut;
	assert_true(run_until(&f, reset_and_up));
	assert_int_equal(at_client.resets, 1);
	assert_int_equal(at_client.next, 1);
	assert_int_equal(at_server2.resets, 0); /* a server never resets */
	assert_int_equal(at_server2.got, 0);	/* the stale queue was dropped */
	exchange(&f, cl, &at_client, &at_server2, 300);

	/* It stays up: no drop-and-resume loop. */
	run_for(&f, 0.2);
	assert_true(rvl_is_up(cl));
	assert_int_equal(at_client.resets, 1);
	assert_false(at_client.conn_bad);
	assert_false(at_server2.conn_bad);
	assert_int_equal(at_server2.ups, 1 + cut);
	assert_int_equal(at_server2.downs, cut);
	rvl_counts(cl, &connects, &resent, &dups);
	assert_int_equal(connects, 2 + cut);
	assert_true(at_client.ups >= 2 && at_client.ups <= 2 + cut);
	assert_int_equal(at_client.downs, at_client.ups - 1);

	rvl_stop(cl);
	rvl_server_stop(srv2);
	xport_destroy(xa);
	xport_destroy(xb2);
	fixture_fini(&f);
}

static void test_server_restart(void **state_)
{
	server_restart(false);
}

static void test_server_restart_hello_cut(void **state_)
{
	server_restart(true);
}

static bool both_up(void)
{
	return rvl_is_up(cl_watch) && server_link && rvl_is_up(server_link);
}

static bool five_at_server(void)
{
	return at_server.got >= 5;
}

/*
 * A server that has received nothing from its client says FRESH on every
 * connection; a client that has nothing of the peer's stream (delivered
 * nothing, nothing acknowledged) just continues: no reset, and what it
 * queued while down arrives.
 */
static void test_idle_reconnect_no_reset(void **state_)
{
	struct rvl_cfg lc = { .window = 64, .backoff_min_ms = 5, .backoff_max_ms = 20 };
	struct rvl_server *srv;
	struct xport *xa, *xb;
	struct fixture f;
	struct rvl *cl;
	char addr[64];

	fixture_init(&f);
	xa = node(&f, "n1");
	xb = node(&f, "n2");
	assert_int_equal(rvl_server_start(f.loop, xb, "127.0.0.1:0", &lc, new_session, NULL, addr,
					  sizeof(addr), &srv),
			 0);
	at_client.next = at_server.next = 1;
	assert_int_equal(rvl_client_start(f.loop, xa, addr, "n2", &lc, &ops, &at_client, &cl), 0);
	cl_watch = cl;
	assert_true(run_until(&f, both_up));
	rvl_drop(cl);
	assert_true(run_until(&f, client_down));
	for (uint64_t v = 1; v <= 5; v++)
		assert_int_equal(rvl_send(cl, 0x100, &v, sizeof(v)), 0);
	assert_true(run_until(&f, five_at_server));
	assert_true(run_until(&f, both_up));
	assert_false(at_server.bad);
	assert_int_equal(at_server.got, 5);
	assert_int_equal(at_client.resets, 0);
	assert_int_equal(at_client.ups, 2);

	rvl_stop(cl);
	rvl_server_stop(srv);
	xport_destroy(xa);
	xport_destroy(xb);
	fixture_fini(&f);
}

static struct rvl *cl2_watch;
static bool second_up(void)
{
	return rvl_is_up(cl2_watch) && server_link && rvl_is_up(server_link) &&
	       !rvl_is_up(cl_watch);
}

/*
 * The client process restarts: a new session id from the same node. The
 * server ends the old session (end_cb, no state_cb, even though its
 * connection still looked alive) and serves the new one.
 */
static void test_client_restart(void **state_)
{
	/* The old client must not reconnect during the test (it stands for a
	 * dead process): its first retry is far away. */
	struct rvl_cfg slow = { .window = 64, .backoff_min_ms = 60000, .backoff_max_ms = 60000 };
	struct rvl_cfg lc = { .window = 64, .backoff_min_ms = 5, .backoff_max_ms = 20 };
	struct side at_client2 = { .next = 1 }, at_server2 = { .next = 1 };
	struct rvl *cl, *cl2, *old;
	struct xport *xa, *xa2, *xb;
	struct rvl_server *srv;
	uint64_t old_id;
	struct fixture f;
	char addr[64];

	fixture_init(&f);
	xa = node(&f, "n1");
	xa2 = node(&f, "n1");
	xb = node(&f, "n2");
	assert_int_equal(rvl_server_start(f.loop, xb, "127.0.0.1:0", &lc, new_session, NULL, addr,
					  sizeof(addr), &srv),
			 0);
	at_client.next = at_server.next = 1;
	assert_int_equal(rvl_client_start(f.loop, xa, addr, "n2", &slow, &ops, &at_client, &cl), 0);
	exchange(&f, cl, &at_client, &at_server, 100);
	old = server_link;
	old_id = rvl_session_id(old);
	assert_true(old_id == rvl_session_id(cl));
	assert_true(rvl_is_up(old));
	assert_non_null(rvl_conn(old));

	/* The restarted process: same node, new session id. */
	next_server_side = &at_server2;
	assert_int_equal(rvl_client_start(f.loop, xa2, addr, "n2", &lc, &ops, &at_client2, &cl2),
			 0);
	assert_true(rvl_session_id(cl2) != old_id);
	cl_watch = cl;
	cl2_watch = cl2;
	assert_true(run_until(&f, second_up));
	assert_int_equal(at_server.ends, 1);
	assert_ptr_equal(at_server.ended, old);
	assert_true(at_server.ended_id == old_id);
	assert_null(at_server.link);
	assert_int_equal(at_server.downs, 0); /* end_cb instead of state_cb */
	assert_int_equal(at_server2.ends, 0);
	assert_true(rvl_session_id(server_link) == rvl_session_id(cl2));
	assert_string_equal(xport_peer_name(rvl_conn(server_link)), "n1");
	assert_string_equal(xport_peer_name(rvl_conn(cl2)), "n2");
	/* The old client saw its connection end. */
	assert_int_equal(at_client.downs, 1);
	assert_null(rvl_conn(cl));
	rvl_stop(cl);

	exchange(&f, cl2, &at_client2, &at_server2, 100);
	assert_int_equal(at_client2.resets, 0);
	assert_false(at_client.conn_bad);
	assert_false(at_server.conn_bad);
	assert_false(at_client2.conn_bad);
	assert_false(at_server2.conn_bad);

	/* A server session can be stopped on its own. */
	rvl_stop(server_link);
	server_link = NULL;
	rvl_stop(cl2);
	rvl_server_stop(srv);
	xport_destroy(xa);
	xport_destroy(xa2);
	xport_destroy(xb);
	fixture_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_survives_cuts),
		cmocka_unit_test(test_idle_reconnect_no_reset),
		cmocka_unit_test(test_server_restart),
		cmocka_unit_test(test_server_restart_hello_cut),
		cmocka_unit_test(test_client_restart),
	};

	signal(SIGPIPE, SIG_IGN);
	fab_log_init("test_rvl", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
