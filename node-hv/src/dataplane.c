// SPDX-License-Identifier: MIT
/*
 * The node's data plane: one thread running a libev loop that owns the
 * fabric transport and every rvmbus link of this process (stubs' links to
 * serving nodes, the skeleton's listener). Channel workers and vCPUs never
 * touch the transport; they post work to this thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "fab/log.h"
#include "fab/remote.h"
#include "fab/xport.h"
#include "remote_int.h"

struct dp_job {
	struct dp_job *next;
	void (*fn)(void *arg);
	void *arg;
};

struct ram_reg {
	struct ram_reg *next;
	void *ram;
	size_t len;
	struct xport_mr *mr;
	unsigned refs;
};

struct nhv_dp {
	struct ev_loop *loop;
	struct xport *x;
	char node[FAB_NAME_MAX];
	pthread_t thread;
	ev_async wake;
	pthread_mutex_t lock;
	struct dp_job *head, *tail;
	bool stopping;
	struct nhv_skel *skel;
	struct stub_links *links;
	struct ram_reg *rams; /* loop thread */
};

int nhv_dp_ram_get(struct nhv_dp *dp, void *ram, size_t len, struct xport_mr **out)
{
	struct ram_reg *r;
	int rc;

	for (r = dp->rams; r; r = r->next)
		if (r->ram == ram && r->len == len) {
			r->refs++;
			*out = r->mr;
			return 0;
		}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = xport_reg_mr(dp->x, ram, len,
			  XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE |
				  XPORT_ACCESS_LOCAL_WRITE,
			  &r->mr);
	if (rc) {
		free(r);
		return rc;
	}
	r->ram = ram;
	r->len = len;
	r->refs = 1;
	r->next = dp->rams;
	dp->rams = r;
	*out = r->mr;
	return 0;
}

void nhv_dp_ram_put(struct nhv_dp *dp, struct xport_mr *mr)
{
	for (struct ram_reg **pp = &dp->rams; *pp; pp = &(*pp)->next) {
		struct ram_reg *r = *pp;

		if (r->mr != mr)
			continue;
		if (--r->refs == 0) {
			*pp = r->next;
			xport_dereg_mr(r->mr);
			free(r);
		}
		return;
	}
}

struct ev_loop *nhv_dp_loop(struct nhv_dp *dp)
{
	return dp->loop;
}

struct xport *nhv_dp_xport(struct nhv_dp *dp)
{
	return dp->x;
}

const char *nhv_dp_node(struct nhv_dp *dp)
{
	return dp->node;
}

const char *nhv_dp_transport(struct nhv_dp *dp)
{
	return dp->x->ops->name;
}

struct nhv_skel **nhv_dp_skel_slot(struct nhv_dp *dp)
{
	return &dp->skel;
}

struct stub_links **nhv_dp_links_slot(struct nhv_dp *dp)
{
	return &dp->links;
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct nhv_dp *dp = w->data;
	struct dp_job *j;

	pthread_mutex_lock(&dp->lock);
	j = dp->head;
	dp->head = dp->tail = NULL;
	pthread_mutex_unlock(&dp->lock);
	while (j) {
		struct dp_job *next = j->next;

		j->fn(j->arg);
		free(j);
		j = next;
	}
	/* Skeleton channels stop on threads of their own (their workers may
	 * wait for this loop); the loop ends once they all have. */
	if (dp->stopping && (!dp->skel || nhv_skel_drained(dp->skel))) {
		nhv_skel_free(dp->skel);
		dp->skel = NULL;
		ev_break(loop, EVBREAK_ALL);
	}
}

int nhv_dp_post(struct nhv_dp *dp, void (*fn)(void *arg), void *arg)
{
	struct dp_job *j = malloc(sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->next = NULL;
	j->fn = fn;
	j->arg = arg;
	pthread_mutex_lock(&dp->lock);
	if (dp->tail)
		dp->tail->next = j;
	else
		dp->head = j;
	dp->tail = j;
	pthread_mutex_unlock(&dp->lock);
	ev_async_send(dp->loop, &dp->wake);
	return 0;
}

struct dp_call {
	int (*fn)(void *arg);
	void *arg;
	int rc;
	bool done;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void call_run(void *arg)
{
	struct dp_call *c = arg;
	int rc = c->fn(c->arg);

	pthread_mutex_lock(&c->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int nhv_dp_call(struct nhv_dp *dp, int (*fn)(void *arg), void *arg)
{
	struct dp_call c = { .fn = fn, .arg = arg };
	int rc;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	rc = nhv_dp_post(dp, call_run, &c);
	if (!rc) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
		rc = c.rc;
	}
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	return rc;
}

static void *dp_main(void *arg)
{
	struct nhv_dp *dp = arg;

	ev_run(dp->loop, 0);
	return NULL;
}

int nhv_dp_start(const char *xport_name, const char *pki_dir, const char *node_name,
		 struct nhv_dp **out)
{
	struct xport_cfg xc = { .pki_dir = pki_dir, .node_name = node_name };
	struct nhv_dp *dp;
	int rc;

	if (fab_name_valid(node_name))
		return -EINVAL;
	rc = xport_tcp_register();
#ifdef FAB_HAVE_RDMA
	if (!rc)
		rc = xport_rdma_register();
#endif
	if (rc)
		return rc;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	snprintf(dp->node, sizeof(dp->node), "%s", node_name);
	dp->loop = ev_loop_new(EVFLAG_AUTO);
	if (!dp->loop) {
		free(dp);
		return -ENOMEM;
	}
	if (!strcmp(xport_name, "auto")) {
		/* RDMA where there is a device for it, else TCP. */
		rc = xport_lookup("rdma") ? xport_create("rdma", dp->loop, &xc, &dp->x) : -ENODEV;
		if (rc) {
			fab_info("data plane: transport auto: tcp (%s)",
				 xport_lookup("rdma") ? "no usable RDMA device"
						      : "this build has no RDMA backend");
			xport_name = "tcp";
		} else {
			fab_info("data plane: transport auto: rdma");
			xport_name = "rdma";
		}
	}
	if (!dp->x)
		rc = xport_create(xport_name, dp->loop, &xc, &dp->x);
	if (rc) {
		fab_err("data plane: cannot create the %s transport for node %s (PKI %s): %s",
			xport_name, node_name, pki_dir, strerror(-rc));
		ev_loop_destroy(dp->loop);
		free(dp);
		return rc;
	}
	pthread_mutex_init(&dp->lock, NULL);
	ev_async_init(&dp->wake, wake_cb);
	dp->wake.data = dp;
	ev_async_start(dp->loop, &dp->wake);
	rc = -pthread_create(&dp->thread, NULL, dp_main, dp);
	if (rc) {
		xport_destroy(dp->x);
		ev_loop_destroy(dp->loop);
		pthread_mutex_destroy(&dp->lock);
		free(dp);
		return rc;
	}
	*out = dp;
	return 0;
}

static void stop_job(void *arg)
{
	struct nhv_dp *dp = arg;

	nhv_stub_links_free(dp->links);
	dp->links = NULL;
	if (dp->skel)
		nhv_skel_shutdown(dp->skel);
	dp->stopping = true;
}

void nhv_conn_stats_str(struct xport_conn *c, char *buf, size_t len)
{
	struct xport_stats st;

	if (!c) {
		snprintf(buf, len, "not connected");
		return;
	}
	xport_stats(c, &st);
	snprintf(buf, len,
		 "msgs tx %llu (%llu B) rx %llu (%llu B), remote reads %llu (%llu B), "
		 "remote writes %llu (%llu B), served reads %llu (%llu B), served writes %llu "
		 "(%llu B), refused %llu, queued %llu B",
		 (unsigned long long)st.msgs_tx, (unsigned long long)st.bytes_tx,
		 (unsigned long long)st.msgs_rx, (unsigned long long)st.bytes_rx,
		 (unsigned long long)st.reads, (unsigned long long)st.read_bytes,
		 (unsigned long long)st.writes, (unsigned long long)st.write_bytes,
		 (unsigned long long)st.served_reads, (unsigned long long)st.served_read_bytes,
		 (unsigned long long)st.served_writes, (unsigned long long)st.served_write_bytes,
		 (unsigned long long)st.refused, (unsigned long long)st.send_queued);
}

static void status_job(void *arg)
{
	struct nhv_dp *dp = arg;

	fab_info("data plane of node %s: transport %s", dp->node, dp->x->ops->name);
	if (dp->skel)
		nhv_skel_log_status(dp->skel);
	if (dp->links)
		nhv_stub_links_log_status(dp->links);
}

void nhv_dp_log_status(struct nhv_dp *dp)
{
	if (dp)
		nhv_dp_post(dp, status_job, dp);
}

void nhv_dp_stop(struct nhv_dp *dp)
{
	if (!dp)
		return;
	if (nhv_dp_post(dp, stop_job, dp) == 0)
		pthread_join(dp->thread, NULL);
	/* The thread is gone: finish on this one. Jobs posted meanwhile
	 * (nothing should post now) are dropped. */
	xport_destroy(dp->x); /* and every registration left */
	while (dp->rams) {
		struct ram_reg *r = dp->rams;

		dp->rams = r->next;
		free(r);
	}
	ev_run(dp->loop, EVRUN_NOWAIT);
	ev_async_stop(dp->loop, &dp->wake);
	while (dp->head) {
		struct dp_job *j = dp->head;

		dp->head = j->next;
		free(j);
	}
	ev_loop_destroy(dp->loop);
	pthread_mutex_destroy(&dp->lock);
	free(dp);
}
