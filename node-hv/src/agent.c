// SPDX-License-Identifier: MIT
/*
 * The node's controller agent.
 *
 * A connection is "registered" once the controller acknowledged
 * RegisterNode; heartbeats follow every heartbeat_ms. If a heartbeat stays
 * unanswered for lease_ms the controller is considered gone (a stopped or
 * partitioned controller keeps TCP open, so EOF alone cannot tell), and the
 * agent reconnects. The clock starts when a heartbeat is sent, not at the
 * last reply, so a node that was itself stopped resumes on its connection. Reconnects back off
 * exponentially with jitter so a restarted controller is not hit by every node at the same instant.
 *
 * Commands. Once registered, the agent sends a NodeReport (what the node
 * holds, so the controller can reconcile) and then dispatches the
 * controller's one-way commands to the partition manager and the volume
 * store (pmgr.h), which report back through agent_report(). Reports are
 * sent only while registered: one made meanwhile is dropped, since the
 * NodeReport of the next registration supersedes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "fab/nodehv.h"
#include "pmgr.h"
#include "proto/fabric.pb-c.h"

#ifndef FAB_VERSION
#define FAB_VERSION "dev"
#endif

struct nhv_agent {
	struct ev_loop *loop;
	struct nhv_agent_cfg cfg;
	SSL_CTX *ctx;
	struct fab_conn *conn;
	enum nhv_agent_state state;
	ev_timer retry;
	ev_timer beat;
	uint32_t backoff_ms;
	uint32_t heartbeat_ms, lease_ms;
	uint64_t seq;
	int64_t unacked_since; /* monotonic ms the oldest unanswered heartbeat left; 0: none */
	int64_t sent_at[64];   /* send time of heartbeat seq, at seq % 64 */
	uint64_t next_id;
	int stopping;
	int refused;	       /* the controller sent an Error on this connection */
	char last_logged[256]; /* a failure repeated on every retry is logged once */
	char instance[24];     /* random per process: tells a restart from a duplicate */
};

/* Logs a connection problem unless it is the one logged last. */
static void agent_note(struct nhv_agent *a, enum fab_log_level level, const char *msg)
{
	if (!strcmp(a->last_logged, msg))
		return;
	snprintf(a->last_logged, sizeof(a->last_logged), "%s", msg);
	fab_log(level, "%s", msg);
}

static void agent_connect(struct nhv_agent *a);

static const char *fab_version(void)
{
	return FAB_VERSION;
}

static void agent_schedule_retry(struct nhv_agent *a)
{
	uint32_t d = a->backoff_ms;

	/* +-25% jitter */
	d = d - d / 4 + (uint32_t)(random() % (d / 2 + 1));
	a->state = NHV_AGENT_BACKOFF;
	ev_timer_set(&a->retry, d / 1000.0, 0.);
	ev_timer_start(a->loop, &a->retry);
	a->backoff_ms = a->backoff_ms * 2 > a->cfg.backoff_max_ms ? a->cfg.backoff_max_ms
								  : a->backoff_ms * 2;
}

static void agent_send(struct nhv_agent *a, Fab__Envelope *env)
{
	int rc;

	env->id = ++a->next_id;
	rc = fab_conn_send_pb(a->conn, &env->base);
	if (rc)
		fab_conn_close(a->conn, rc, "cannot queue a message to the controller");
}

/* The report callback of pmgr and volumes (loop thread). */
static int agent_report(Fab__Envelope *env, void *arg)
{
	struct nhv_agent *a = arg;
	int rc;

	if (!a->conn || a->state != NHV_AGENT_REGISTERED)
		return -ENOTCONN;
	env->id = 0; /* one-way */
	rc = fab_conn_send_pb(a->conn, &env->base);
	if (rc)
		fab_conn_close(a->conn, rc, "cannot queue a report to the controller");
	return rc;
}

static void agent_node_report(struct nhv_agent *a)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__NodeReport rep = FAB__NODE_REPORT__INIT;

	if (a->cfg.pmgr && nhv_pmgr_report_fill(a->cfg.pmgr, &rep))
		fab_err("out of memory listing partitions for the node report");
	if (a->cfg.vols && nhv_vols_report_fill(a->cfg.vols, &rep))
		fab_err("out of memory listing volumes for the node report");
	env.body_case = FAB__ENVELOPE__BODY_NODE_REPORT;
	env.node_report = &rep;
	if (agent_report(&env, a) == 0)
		fab_info("node report: %zu partition(s), %zu volume(s)", rep.n_partitions,
			 rep.n_volumes);
	nhv_pmgr_report_free(&rep);
	nhv_vols_report_free(&rep);
}

static void agent_open(struct fab_conn *c, void *arg)
{
	struct nhv_agent *a = arg;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RegisterNode reg = FAB__REGISTER_NODE__INIT;

	reg.name = (char *)a->cfg.name;
	reg.vcpus = a->cfg.vcpus;
	reg.memory_bytes = a->cfg.memory_bytes;
	reg.transports = (char **)a->cfg.transports;
	reg.n_transports = a->cfg.n_transports;
	reg.vsps = (char **)a->cfg.vsps;
	reg.n_vsps = a->cfg.n_vsps;
	reg.data_addr = (char *)(a->cfg.data_addr ? a->cfg.data_addr : "");
	reg.version = (char *)fab_version();
	reg.instance = a->instance;
	env.body_case = FAB__ENVELOPE__BODY_REGISTER_NODE;
	env.register_node = &reg;
	agent_send(a, &env);
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct nhv_agent *a = w->data;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__Heartbeat hb = FAB__HEARTBEAT__INIT;
	int64_t now = fab_mono_ms();

	if (a->unacked_since && now - a->unacked_since > (int64_t)a->lease_ms) {
		fab_warn("controller %s has not answered a heartbeat for %lld ms; reconnecting",
			 a->cfg.controller, (long long)(now - a->unacked_since));
		fab_conn_close(a->conn, -ETIMEDOUT, "controller stopped answering");
		return;
	}
	if (!a->unacked_since)
		a->unacked_since = now;
	hb.seq = ++a->seq;
	a->sent_at[hb.seq % FAB_ARRAY_SIZE(a->sent_at)] = now;
	env.body_case = FAB__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	agent_send(a, &env);
}

static void agent_registered(struct nhv_agent *a, const Fab__RegisterAck *ack)
{
	/* Bound what the controller may ask so a bad reply cannot spin us. */
	a->heartbeat_ms = ack->heartbeat_ms < 10 ? 10 : ack->heartbeat_ms;
	a->lease_ms = ack->lease_ms < 2 * a->heartbeat_ms ? 2 * a->heartbeat_ms : ack->lease_ms;
	a->state = NHV_AGENT_REGISTERED;
	a->backoff_ms = a->cfg.backoff_min_ms;
	a->last_logged[0] = '\0';
	fab_info("registered with controller %s as '%s' (generation %llu, heartbeat %u ms)",
		 a->cfg.controller, a->cfg.name, (unsigned long long)ack->generation,
		 a->heartbeat_ms);
	ev_timer_set(&a->beat, a->heartbeat_ms / 1000.0, a->heartbeat_ms / 1000.0);
	ev_timer_start(a->loop, &a->beat);
	agent_node_report(a);
}

/* A command of the controller's: to whoever carries it out. Returns false
 * if this agent takes no commands (then it is a protocol error). */
static bool agent_command(struct nhv_agent *a, const Fab__Envelope *env)
{
	struct nhv_pmgr *pm = a->cfg.pmgr;
	struct nhv_vols *vs = a->cfg.vols;

	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_RUN_PARTITION:
		if (!pm)
			return false;
		nhv_pmgr_run(pm, env->run_partition);
		return true;
	case FAB__ENVELOPE__BODY_STOP_PARTITION:
		if (!pm)
			return false;
		nhv_pmgr_stop(pm, env->stop_partition);
		return true;
	case FAB__ENVELOPE__BODY_DELETE_PARTITION:
		if (!pm)
			return false;
		nhv_pmgr_delete(pm, env->delete_partition);
		return true;
	case FAB__ENVELOPE__BODY_MIGRATE_OUT:
		if (!pm)
			return false;
		nhv_pmgr_migrate_out(pm, env->migrate_out);
		return true;
	case FAB__ENVELOPE__BODY_MIGRATE_IN:
		if (!pm)
			return false;
		nhv_pmgr_migrate_in(pm, env->migrate_in);
		return true;
	case FAB__ENVELOPE__BODY_MIGRATION_DECISION:
		if (!pm)
			return false;
		nhv_pmgr_decide(pm, env->migration_decision);
		return true;
	case FAB__ENVELOPE__BODY_CREATE_VOLUME:
		if (!vs)
			return false;
		nhv_vols_create(vs, env->create_volume);
		return true;
	case FAB__ENVELOPE__BODY_DELETE_VOLUME:
		if (!vs)
			return false;
		nhv_vols_delete(vs, env->delete_volume);
		return true;
	case FAB__ENVELOPE__BODY_VOLUME_ACCESS:
		if (!vs)
			return false;
		nhv_vols_access(vs, env->volume_access);
		return true;
	default:
		return false;
	}
}

static void agent_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	struct nhv_agent *a = arg;
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);

	if (!env) {
		fab_conn_close(c, -EPROTO, "undecodable message from the controller");
		return;
	}
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_REGISTER_ACK:
		agent_registered(a, env->register_ack);
		break;
	case FAB__ENVELOPE__BODY_HEARTBEAT_ACK:
		/* Replies come in order: everything up to seq is answered; the
		 * clock now runs from the next one sent, if any. */
		if (env->heartbeat_ack->seq >= a->seq)
			a->unacked_since = 0;
		else if (a->seq - env->heartbeat_ack->seq < FAB_ARRAY_SIZE(a->sent_at))
			a->unacked_since = a->sent_at[(env->heartbeat_ack->seq + 1) %
						      FAB_ARRAY_SIZE(a->sent_at)];
		break;
	case FAB__ENVELOPE__BODY_ERROR: {
		char msg[256];

		/* The controller closes after an error; the retry path follows. */
		snprintf(msg, sizeof(msg), "controller %s refused: %s", a->cfg.controller,
			 env->error->message);
		agent_note(a, FAB_LOG_ERR, msg);
		a->refused = 1;
		/* A refusal will not change soon: retry at the slowest pace. */
		a->backoff_ms = a->cfg.backoff_max_ms;
		break;
	}
	default:
		if (!agent_command(a, env))
			fab_conn_close(c, -EPROTO, "unexpected message from the controller");
		break;
	}
	fab__envelope__free_unpacked(env, NULL);
}

static void agent_close(struct fab_conn *c, int err, void *arg)
{
	struct nhv_agent *a = arg;
	char msg[256];

	a->conn = NULL;
	ev_timer_stop(a->loop, &a->beat);
	if (a->stopping)
		return;
	if (a->refused) {
		/* Already said why; the close that follows adds nothing. */
	} else if (a->state == NHV_AGENT_REGISTERED) {
		fab_warn("lost controller %s: %s; reconnecting", a->cfg.controller,
			 fab_conn_reason(c));
	} else {
		snprintf(msg, sizeof(msg), "cannot reach controller %s: %s; retrying with backoff",
			 a->cfg.controller, fab_conn_reason(c));
		agent_note(a, FAB_LOG_WARN, msg);
	}
	agent_schedule_retry(a);
}

static const struct fab_conn_ops agent_ops = {
	.open_cb = agent_open,
	.frame_cb = agent_frame,
	.close_cb = agent_close,
};

static void agent_connect(struct nhv_agent *a)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.handshake_timeout_s = 5,
	};
	int rc;

	a->state = NHV_AGENT_CONNECTING;
	a->refused = 0;
	a->unacked_since = 0;
	rc = fab_conn_connect(a->loop, a->ctx, a->cfg.controller, &opts, &agent_ops, a, &a->conn);
	if (rc) {
		char msg[256];

		snprintf(msg, sizeof(msg), "controller address %s: %s; retrying", a->cfg.controller,
			 strerror(-rc));
		agent_note(a, FAB_LOG_WARN, msg);
		a->conn = NULL;
		agent_schedule_retry(a);
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	agent_connect(w->data);
}

int nhv_agent_start(struct ev_loop *loop, const struct nhv_agent_cfg *cfg, struct nhv_agent **out)
{
	struct nhv_agent *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return -ENOMEM;
	a->loop = loop;
	a->cfg = *cfg;
	if (!a->cfg.backoff_min_ms)
		a->cfg.backoff_min_ms = 100;
	if (!a->cfg.backoff_max_ms)
		a->cfg.backoff_max_ms = 5000;
	a->backoff_ms = a->cfg.backoff_min_ms;
	rc = fab_tls_ctx_new(cfg->pki_dir, FAB_ROLE_NODE, cfg->name, 0, &a->ctx);
	if (rc) {
		free(a);
		return rc;
	}
	if (a->cfg.pmgr)
		nhv_pmgr_set_report(a->cfg.pmgr, agent_report, a);
	if (a->cfg.vols)
		nhv_vols_set_report(a->cfg.vols, agent_report, a);
	ev_timer_init(&a->retry, retry_cb, 0., 0.);
	a->retry.data = a;
	ev_timer_init(&a->beat, beat_cb, 1., 1.);
	/* Replies that arrived while this process was stopped are read
	 * before the heartbeat timer judges the controller silent. */
	ev_set_priority(&a->beat, EV_MINPRI);
	a->beat.data = a;
	{
		uint64_t r[2] = { 0, 0 };

		if (getrandom(r, sizeof(r), 0) != sizeof(r))
			r[0] = (uint64_t)fab_unix_ms() ^ ((uint64_t)getpid() << 32);
		snprintf(a->instance, sizeof(a->instance), "%016llx", (unsigned long long)r[0]);
	}
	agent_connect(a);
	*out = a;
	return 0;
}

enum nhv_agent_state nhv_agent_state(const struct nhv_agent *a)
{
	return a->state;
}

void nhv_agent_stop(struct nhv_agent *a)
{
	if (!a)
		return;
	a->stopping = 1;
	if (a->cfg.pmgr)
		nhv_pmgr_set_report(a->cfg.pmgr, NULL, NULL);
	if (a->cfg.vols)
		nhv_vols_set_report(a->cfg.vols, NULL, NULL);
	ev_timer_stop(a->loop, &a->retry);
	ev_timer_stop(a->loop, &a->beat);
	if (a->conn) {
		fab_conn_close(a->conn, 0, "node shutting down");
		while (a->conn)
			ev_run(a->loop, EVRUN_ONCE);
	}
	SSL_CTX_free(a->ctx);
	free(a);
}
