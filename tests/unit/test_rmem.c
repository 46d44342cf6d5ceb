// SPDX-License-Identifier: MIT
/*
 * Remote guest memory over TCP on loopback: node A registers a "guest RAM"
 * buffer, node B's worker thread reads and writes it through rmem while
 * the loop runs on its own thread; bounds are enforced, and a dropped
 * connection fails calls instead of hanging them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/log.h"
#include "fab/pki.h"
#include "fab/rvmbus_rmem.h"
#include "fab/xport.h"

#define RAM (8u << 20)

static struct ev_loop *loop;
static struct xport *xa, *xb;
static struct xport_conn *conn_b; /* B's connection to A */
static int connected, closed;
static uint8_t *ram;
static struct rmem *rm;

static void on_connected(struct xport_conn *c, void *arg)
{
	connected = 1;
}

static void on_closed(struct xport_conn *c, int err, void *arg)
{
	closed = 1;
	if (rm)
		rmem_unbind(rm);
}

static const struct xport_conn_cbs client_cbs = { .connected_cb = on_connected,
						  .closed_cb = on_closed };
static const struct xport_conn_cbs server_cbs = { .closed_cb = on_closed };

static int on_accept(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
		     void **carg)
{
	*cbs = &server_cbs;
	*carg = NULL;
	return 0;
}

static ev_async stop_w;

static void stop_cb(struct ev_loop *l, ev_async *w, int revents)
{
	ev_break(l, EVBREAK_ALL);
}

static void *loop_main(void *arg)
{
	ev_run(loop, 0);
	return NULL;
}

static void close_cb(struct ev_loop *l, ev_async *w, int revents)
{
	xport_close(conn_b);
}

static void test_remote_memory(void **state)
{
	char dir[] = "/tmp/fabrmem-XXXXXX", addr[64], cmd[128];
	struct xport_cfg ca = { .pki_dir = dir, .node_name = "a" };
	struct xport_cfg cb = { .pki_dir = dir, .node_name = "b" };
	struct xport_mr *ram_mr;
	struct xport_key key;
	ev_async close_w;
	pthread_t th;
	uint8_t *buf = malloc(3u << 20);

	loop = ev_loop_new(0);
	assert_non_null(mkdtemp(dir));
	assert_int_equal(fab_pki_init_ca(dir, "c", 30), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "a", 30), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "b", 30), 0);
	assert_int_equal(xport_tcp_register(), 0);
	assert_int_equal(xport_create("tcp", loop, &ca, &xa), 0);
	assert_int_equal(xport_create("tcp", loop, &cb, &xb), 0);
	ram = aligned_alloc(4096, RAM);
	for (size_t i = 0; i < RAM; i++)
		ram[i] = (uint8_t)(i * 7);
	assert_int_equal(xport_reg_mr(xa, ram, RAM,
				      XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE,
				      &ram_mr),
			 0);
	key = *xport_mr_key(ram_mr);
	assert_int_equal(xport_listen(xa, "127.0.0.1:0", on_accept, NULL, addr, sizeof(addr)), 0);
	assert_int_equal(xport_connect(xb, addr, "a", &client_cbs, NULL, &conn_b), 0);
	for (int i = 0; i < 5000 && !connected; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	while (!connected)
		ev_run(loop, EVRUN_ONCE);
	assert_int_equal(rmem_create(loop, xb, &rm), 0);
	rmem_bind(rm, conn_b, &key);
	ev_async_init(&stop_w, stop_cb);
	ev_async_start(loop, &stop_w);
	ev_async_init(&close_w, close_cb);
	ev_async_start(loop, &close_w);
	pthread_create(&th, NULL, loop_main, NULL);

	/* From this (worker) thread: reads see A's memory... */
	assert_int_equal(rmem_read(rm, 4096 + 3, buf, 5000), 0);
	for (size_t i = 0; i < 5000; i++)
		assert_int_equal(buf[i], (uint8_t)((4096 + 3 + i) * 7));
	/* ...writes land in it, across the staging size... */
	for (size_t i = 0; i < (3u << 20); i++)
		buf[i] = (uint8_t)(i ^ 0x5a);
	assert_int_equal(rmem_write(rm, 1u << 20, buf, 3u << 20), 0);
	assert_int_equal(memcmp(ram + (1u << 20), buf, 3u << 20), 0);
	memset(buf, 0, 3u << 20);
	assert_int_equal(rmem_read(rm, 1u << 20, buf, 3u << 20), 0);
	for (size_t i = 0; i < (3u << 20); i++)
		assert_int_equal(buf[i], (uint8_t)(i ^ 0x5a));
	/* ...and nothing outside the guest's RAM is reachable. */
	assert_int_equal(rmem_read(rm, RAM - 10, buf, 11), -EFAULT);
	assert_int_equal(rmem_write(rm, UINT64_MAX - 2, buf, 8), -EFAULT);
	/* A dropped connection fails the next call, it does not hang. */
	ev_async_send(loop, &close_w);
	for (int i = 0; i < 1000 && !closed; i++)
		usleep(1000);
	assert_true(closed);
	assert_int_equal(rmem_read(rm, 0, buf, 16), -ENOTCONN);

	ev_async_send(loop, &stop_w);
	pthread_join(th, NULL);
	rmem_destroy(rm);
	xport_dereg_mr(ram_mr);
	xport_destroy(xa);
	xport_destroy(xb);
	ev_run(loop, EVRUN_NOWAIT);
	ev_loop_destroy(loop);
	free(ram);
	free(buf);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remote_memory),
	};

	signal(SIGPIPE, SIG_IGN);
	fab_log_init("test_rmem", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
