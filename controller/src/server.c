// SPDX-License-Identifier: MIT
/*
 * fabctld's network side: accepts nodes and admins over mutual TLS, keeps
 * node registrations in the store and node liveness (leases) in memory.
 *
 * Liveness: a node is up while heartbeats arrive within lease_ms of each
 * other. The lease, not the TCP connection, decides: a node that stops
 * (SIGSTOP, a hung host) keeps its socket open but is shown down once its
 * lease runs out, and up again with its next heartbeat.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "ctl.h"
#include "srv_int.h"

static const struct fab_conn_ops client_ops;

struct ctl_node *ctl_node_find(struct ctl_server *s, const char *name)
{
	struct ctl_hent *e = ctl_hmap_get(&s->node_map, name);

	return e ? ctl_container_of(e, struct ctl_node, h) : NULL;
}

void ctl_batch_flush(struct ctl_server *s)
{
	if (!s->batch_open)
		return;
	s->batch_open = false;
	if (ctl_store_commit(s->store)) {
		fab_err("store: node reports not stored (they are sent again on reconnection)");
		ctl_store_rollback(s->store);
	}
}

int ctl_tx_begin(struct ctl_server *s)
{
	ctl_batch_flush(s);
	return ctl_store_begin(s->store);
}

bool ctl_batch_join(struct ctl_server *s)
{
	if (!s->batch_open)
		s->batch_open = ctl_store_begin(s->store) == 0;
	return s->batch_open;
}

static void batch_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	ctl_batch_flush(w->data);
}

void ctl_crash_point(const char *name)
{
	const char *want = getenv("FABCTLD_TEST_CRASH_AT");

	if (want && !strcmp(want, name)) {
		fab_warn("test hook: crashing at '%s' (FABCTLD_TEST_CRASH_AT)", name);
		kill(getpid(), SIGKILL);
	}
}

static struct ctl_node *node_add(struct ctl_server *s, const struct ctl_node_rec *rec)
{
	struct ctl_node *n = calloc(1, sizeof(*n)), **pp = &s->nodes;

	if (!n)
		return NULL;
	n->rec = *rec;
	n->state = NODE_DOWN;
	while (*pp && strcmp((*pp)->rec.name, rec->name) < 0)
		pp = &(*pp)->next;
	n->next = *pp;
	*pp = n;
	ctl_hmap_add(&s->node_map, &n->h, n->rec.name);
	s->nnodes++;
	return n;
}

static int load_node(const struct ctl_node_rec *rec, void *arg)
{
	return node_add(arg, rec) ? 0 : -ENOMEM;
}

static void node_set_state(struct ctl_server *s, struct ctl_node *n, enum node_state st,
			   const char *why)
{
	if (n->state == st)
		return;
	n->state = st;
	fab_info("node %s: %s (%s)", n->rec.name, st == NODE_UP ? "up" : "down", why);
}

/*
 * Runs at the lowest priority, so heartbeats that arrived during a stall of
 * this process are handled before leases are judged; and the last-seen
 * times of every node that went down are written in one transaction.
 */
static void lease_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_server *s = w->data;
	int64_t now = fab_mono_ms();
	bool open = false;

	for (struct ctl_node *n = s->nodes; n; n = n->next) {
		if (n->state == NODE_UP && now >= n->lease_until) {
			char why[96];

			snprintf(why, sizeof(why), "lease expired: no heartbeat for %u ms",
				 s->lease_ms);
			node_set_state(s, n, NODE_DOWN, why);
			if (!open)
				open = ctl_tx_begin(s) == 0;
			ctl_store_node_seen(s->store, n->rec.name, n->rec.last_seen_unix_ms);
			ctl_node_lost(s, n);
		}
	}
	if (open && ctl_store_commit(s->store))
		fab_warn("could not record last-seen times (display only after a restart)");
}

static void node_heard(struct ctl_server *s, struct ctl_node *n, const char *why)
{
	n->lease_until = fab_mono_ms() + s->lease_ms;
	n->rec.last_seen_unix_ms = fab_unix_ms();
	node_set_state(s, n, NODE_UP, why);
}

/* ---- replies ------------------------------------------------------------ */

void ctl_send_env(struct ctl_client *c, Fab__Envelope *env)
{
	int rc = fab_conn_send_pb(c->conn, &env->base);

	if (rc == 0 || rc == -ENOTCONN)
		return;
	/* A peer that does not read its replies gets no more memory; a reply
	 * that cannot be framed is a bug worth a line, not a silent drop. */
	fab_warn("client %s: cannot send reply: %s; disconnecting", fab_conn_peer_addr(c->conn),
		 rc == -ENOBUFS ? "peer is not reading (send queue full)" : strerror(-rc));
	fab_conn_close(c->conn, rc, "cannot send reply");
}

void ctl_reply_error(struct ctl_client *c, uint64_t id, int code, const char *msg, int fatal)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__Error err = FAB__ERROR__INIT;

	err.code = code;
	err.message = (char *)msg;
	env.id = id;
	env.body_case = FAB__ENVELOPE__BODY_ERROR;
	env.error = &err;
	ctl_send_env(c, &env);
	if (fatal)
		fab_conn_close_after_flush(c->conn);
}

/* ---- requests ----------------------------------------------------------- */

static void handle_register(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const struct fab_ident *peer = fab_conn_peer(c->conn);
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RegisterAck ack = FAB__REGISTER_ACK__INIT;
	struct ctl_node_rec rec;
	struct ctl_node *n;
	char err[320], why[192];
	int rc;

	if (peer->role != FAB_ROLE_NODE) {
		fab_warn("client %s: %s '%s' tried to register as a node; refused",
			 fab_conn_peer_addr(c->conn), fab_role_name(peer->role), peer->name);
		ctl_reply_error(c, req->id, -EACCES,
			    "permission denied: only node certificates register", 1);
		return;
	}
	rc = ctl_register_validate(req->register_node, peer->name, &rec, err, sizeof(err));
	if (rc) {
		fab_warn("node %s (%s): registration refused: %s", peer->name,
			 fab_conn_peer_addr(c->conn), err);
		ctl_reply_error(c, req->id, rc, err, 1);
		return;
	}
	snprintf(rec.peer_addr, sizeof(rec.peer_addr), "%s", fab_conn_peer_addr(c->conn));
	rec.registered_unix_ms = rec.last_seen_unix_ms = fab_unix_ms();
	n = ctl_node_find(s, rec.name);
	/* Another fabnode process under the same name while the registered
	 * one is alive: refuse the newcomer (it retries, and gets in once the
	 * other is gone) rather than let the two evict each other forever. */
	if (n && n->client && n->client != c && n->state == NODE_UP &&
	    strcmp(n->rec.instance, rec.instance) != 0) {
		snprintf(err, sizeof(err),
			 "node name '%s' is in use by a live fabnode at %s (instance %s)", rec.name,
			 n->rec.peer_addr, n->rec.instance[0] ? n->rec.instance : "?");
		fab_warn("node %s (%s): registration refused: %s", rec.name,
			 fab_conn_peer_addr(c->conn), err);
		ctl_reply_error(c, req->id, -EEXIST, err, 1);
		return;
	}
	/* On disk before the node hears it is registered. */
	ctl_batch_flush(s);
	rc = ctl_store_node_register(s->store, &rec);
	if (rc) {
		ctl_reply_error(c, req->id, rc, "controller could not store the registration", 1);
		return;
	}
	if (!n) {
		n = node_add(s, &rec);
		if (!n) {
			ctl_reply_error(c, req->id, -ENOMEM, "out of memory", 1);
			return;
		}
	} else {
		bool drained = n->rec.drained;

		n->rec = rec;
		n->rec.drained = drained;
	}
	if (c->node && c->node != n)
		c->node->client = NULL;
	if (n->client && n->client != c) {
		/* The same fabnode process on a new connection (the old one is
		 * dead but not yet noticed), or a silent one: the new
		 * connection wins. */
		fab_info("node %s: new connection from %s replaces %s", rec.name,
			 fab_conn_peer_addr(c->conn), fab_conn_peer_addr(n->client->conn));
		n->client->node = NULL;
		fab_conn_close(n->client->conn, -ECONNABORTED, "superseded by a new connection");
	}
	n->client = c;
	c->node = n;
	snprintf(why, sizeof(why), "registered from %s, generation %llu", rec.peer_addr,
		 (unsigned long long)rec.generation);
	if (n->state == NODE_UP)
		fab_info("node %s: %s", rec.name, why);
	node_heard(s, n, why);

	ack.heartbeat_ms = s->heartbeat_ms;
	ack.lease_ms = s->lease_ms;
	ack.generation = rec.generation;
	env.id = req->id;
	env.body_case = FAB__ENVELOPE__BODY_REGISTER_ACK;
	env.register_ack = &ack;
	ctl_send_env(c, &env);
	ctl_node_registered(s, n);
}

static void handle_heartbeat(struct ctl_client *c, const Fab__Envelope *req)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__HeartbeatAck ack = FAB__HEARTBEAT_ACK__INIT;

	if (!c->node) {
		ctl_reply_error(c, req->id, -ENOTCONN, "heartbeat before registration", 1);
		return;
	}
	node_heard(c->srv, c->node, "heartbeat resumed");
	ack.seq = req->heartbeat->seq;
	env.id = req->id;
	env.body_case = FAB__ENVELOPE__BODY_HEARTBEAT_ACK;
	env.heartbeat_ack = &ack;
	ctl_send_env(c, &env);
}

/* Reports only a registered node sends, and only about itself: the
 * handlers look everything up under the node the connection registered as. */
static void handle_node_msg(struct ctl_client *c, const Fab__Envelope *env)
{
	struct ctl_server *s = c->srv;

	if (fab_conn_peer(c->conn)->role != FAB_ROLE_NODE || !c->node) {
		ctl_reply_error(c, env->id, -EACCES,
				"permission denied: only a registered node reports", 1);
		return;
	}
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_NODE_REPORT:
		ctl_on_node_report(s, c->node, env->node_report);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_STATUS:
		ctl_on_partition_status(s, c->node, env->partition_status);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_STATUS:
		ctl_on_volume_status(s, c->node, env->volume_status);
		break;
	case FAB__ENVELOPE__BODY_CONSOLE_OUTPUT:
		ctl_on_console(s, c->node, env->console_output);
		break;
	case FAB__ENVELOPE__BODY_MIGRATION_STATUS:
		ctl_on_migration_status(s, c->node, env->migration_status);
		break;
	default:
		break;
	}
}

void ctl_node_send(struct ctl_server *s, struct ctl_node *n, Fab__Envelope *env)
{
	if (!n || !n->client)
		return; /* reconciled when it registers again */
	ctl_send_env(n->client, env);
}

/* ---- connections -------------------------------------------------------- */

static void client_open(struct fab_conn *conn, void *arg)
{
	const struct fab_ident *id = fab_conn_peer(conn);

	fab_debug("client %s: authenticated as %s '%s'", fab_conn_peer_addr(conn),
		  fab_role_name(id->role), id->name);
}

static void client_frame(struct fab_conn *conn, const uint8_t *p, size_t len, void *arg)
{
	struct ctl_client *c = arg;
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);

	if (!env) {
		fab_warn("client %s: undecodable message (%zu bytes); closing",
			 fab_conn_peer_addr(conn), len);
		fab_conn_close(conn, -EPROTO, "undecodable message");
		return;
	}
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_REGISTER_NODE:
		handle_register(c, env);
		break;
	case FAB__ENVELOPE__BODY_HEARTBEAT:
		handle_heartbeat(c, env);
		break;
	case FAB__ENVELOPE__BODY_NODE_REPORT:
	case FAB__ENVELOPE__BODY_PARTITION_STATUS:
	case FAB__ENVELOPE__BODY_VOLUME_STATUS:
	case FAB__ENVELOPE__BODY_CONSOLE_OUTPUT:
	case FAB__ENVELOPE__BODY_MIGRATION_STATUS:
		handle_node_msg(c, env);
		break;
	default:
		if (ctl_api_dispatch(c, env))
			break;
		fab_warn("client %s: unexpected message (body %d); closing",
			 fab_conn_peer_addr(conn), (int)env->body_case);
		ctl_reply_error(c, env->id, -EPROTO, "unexpected message", 1);
		break;
	}
	fab__envelope__free_unpacked(env, NULL);
}

static void client_close(struct fab_conn *conn, int err, void *arg)
{
	struct ctl_client *c = arg;
	struct ctl_server *s = c->srv;

	if (err && err != -ECONNABORTED)
		fab_warn("client %s%s%s: %s", fab_conn_peer_addr(conn), c->node ? " node " : "",
			 c->node ? c->node->rec.name : "", fab_conn_reason(conn));
	else
		fab_debug("client %s: closed (%s)", fab_conn_peer_addr(conn),
			  fab_conn_reason(conn));
	/* The node's lease, not this connection, decides when it is down. */
	if (c->node)
		c->node->client = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nclients--;
	free(c);
}

static const struct fab_conn_ops client_ops = {
	.open_cb = client_open,
	.frame_cb = client_frame,
	.close_cb = client_close,
};

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_server *s = w->data;

	for (;;) {
		struct fab_conn_opts opts = {
			.peer_roles = FAB_ROLE_BIT(FAB_ROLE_NODE) | FAB_ROLE_BIT(FAB_ROLE_ADMIN),
			/* requests are small; lists in replies may not be */
			.max_send_frame = CTL_MAX_REPLY,
			.max_queued = 2 * CTL_MAX_REPLY,
		};
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct ctl_client *c;
		char peer[64];
		int fd, rc;

		fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The listener stays readable: pause accepting
				 * instead of spinning on it. */
				fab_warn("accept: %s; pausing new connections for 100 ms",
					 strerror(errno));
				ev_io_stop(loop, &s->lio);
				ev_timer_start(loop, &s->accept_retry);
			} else if (errno != EAGAIN && errno != EINTR) {
				fab_warn("accept: %s", strerror(errno));
			}
			return;
		}
		fab_sockaddr_str(&ss, peer, sizeof(peer));
		if (s->nclients >= s->max_clients) {
			fab_warn("client %s: refused, %zu connections already", peer, s->nclients);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->srv = s;
		rc = fab_conn_accept(loop, s->ctx, fd, peer, &opts, &client_ops, c, &c->conn);
		if (rc) {
			fab_warn("client %s: %s", peer, strerror(-rc));
			free(c);
			continue;
		}
		c->next = s->clients;
		if (s->clients)
			s->clients->prev = c;
		s->clients = c;
		s->nclients++;
	}
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_server *s = w->data;

	ev_io_start(loop, &s->lio);
}

/* Connections this process can hold: its fd limit, less room for the
 * store, logs and the listener. */
static size_t fd_budget(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 1024;
	return rl.rlim_cur > 64 ? (size_t)rl.rlim_cur - 32 : 16;
}

int ctl_server_new(struct ev_loop *loop, const struct ctl_server_cfg *cfg, struct ctl_server **out)
{
	struct ctl_server *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->lfd = -1;
	s->lease_ms = cfg->lease_ms ? cfg->lease_ms : CTL_DEFAULT_LEASE_MS;
	s->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : s->lease_ms / 5;
	if (s->heartbeat_ms == 0 || s->heartbeat_ms >= s->lease_ms) {
		fab_err("heartbeat interval (%u ms) must be below the lease (%u ms)",
			s->heartbeat_ms, s->lease_ms);
		rc = -EINVAL;
		goto fail;
	}
	s->max_clients = cfg->max_clients ? cfg->max_clients : fd_budget();
	s->stop_timeout_ms = cfg->stop_timeout_ms ? cfg->stop_timeout_ms : 10000;
	if (cfg->policy && ctl_sched_policy_parse(cfg->policy, &s->policy)) {
		fab_err("unknown placement policy '%s' (spread or pack)", cfg->policy);
		rc = -EINVAL;
		goto fail;
	}
	rc = fab_tls_ctx_new(cfg->pki_dir, FAB_ROLE_CONTROLLER, "controller", 1, &s->ctx);
	if (rc)
		goto fail;
	rc = ctl_store_open(cfg->db_path, &s->store);
	if (rc)
		goto fail;
	if (ctl_hmap_init(&s->node_map, 64) || ctl_hmap_init(&s->part_map, 256) ||
	    ctl_hmap_init(&s->vol_map, 64)) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = ctl_store_node_foreach(s->store, load_node, s);
	if (rc)
		goto fail;
	rc = ctl_cluster_load(s);
	if (rc)
		goto fail;
	s->lfd = fab_listen(cfg->listen, s->addr, sizeof(s->addr));
	if (s->lfd < 0) {
		rc = s->lfd;
		fab_err("listen on %s: %s", cfg->listen, strerror(-rc));
		goto fail;
	}
	ev_io_init(&s->lio, accept_cb, s->lfd, EV_READ);
	s->lio.data = s;
	ev_io_start(loop, &s->lio);
	ev_timer_init(&s->accept_retry, accept_retry_cb, 0.1, 0.);
	s->accept_retry.data = s;
	/* Check leases four times per lease so a down node shows within 25%. */
	ev_timer_init(&s->lease_timer, lease_cb, 0.05, s->lease_ms / 4000.0);
	ev_set_priority(&s->lease_timer, EV_MINPRI);
	s->lease_timer.data = s;
	ev_timer_start(loop, &s->lease_timer);
	/* Pending placements and unanswered commands are retried from here. */
	ev_timer_init(&s->reconcile_timer, ctl_reconcile_cb, 1., 1.);
	ev_set_priority(&s->reconcile_timer, EV_MINPRI);
	s->reconcile_timer.data = s;
	ev_timer_start(loop, &s->reconcile_timer);
	ev_prepare_init(&s->batch_watcher, batch_cb);
	s->batch_watcher.data = s;
	ev_prepare_start(loop, &s->batch_watcher);
	*out = s;
	return 0;
fail:
	ctl_server_free(s);
	return rc;
}

const char *ctl_server_addr(const struct ctl_server *s)
{
	return s->addr;
}

void ctl_server_free(struct ctl_server *s)
{
	struct ctl_node *n, *nn;
	struct ctl_client *c, *cn;

	if (!s)
		return;
	if (s->lfd >= 0) {
		ev_io_stop(s->loop, &s->lio);
		ev_timer_stop(s->loop, &s->accept_retry);
		close(s->lfd);
	}
	ev_timer_stop(s->loop, &s->lease_timer);
	ev_timer_stop(s->loop, &s->reconcile_timer);
	if (s->store)
		ctl_batch_flush(s);
	ev_prepare_stop(s->loop, &s->batch_watcher);
	for (c = s->clients; c; c = cn) {
		cn = c->next;
		fab_conn_close(c->conn, 0, "controller shutting down");
	}
	/* Let the connections run their close callbacks. */
	while (s->clients)
		ev_run(s->loop, EVRUN_ONCE);
	/* Before the nodes go: a migration holds resources on its target. */
	ctl_mig_free_all(s);
	for (n = s->nodes; n; n = nn) {
		nn = n->next;
		if (n->state == NODE_UP)
			ctl_store_node_seen(s->store, n->rec.name, n->rec.last_seen_unix_ms);
		free(n->groups);
		ctl_drain_free(n);
		free(n);
	}
	ctl_cluster_free(s);
	ctl_hmap_free(&s->node_map);
	ctl_hmap_free(&s->part_map);
	ctl_hmap_free(&s->vol_map);
	free(s->sn);
	free(s->sv);
	free(s->snp);
	ctl_store_close(s->store);
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	free(s);
}
