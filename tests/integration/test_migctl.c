// SPDX-License-Identifier: MIT
/*
 * The controller's side of live migration, without KVM: the real fabctld
 * (and fabctl as an operator runs it) against nodes this test plays
 * itself. Three simulated nodes (a, b, c) register with node
 * certificates from `fabctl pki`, run what RunPartition asks for, and
 * answer MigrateIn/MigrateOut with scripted MigrationStatus sequences; the
 * decisions they receive are logged with the migration's phase as the
 * store had it at that moment (read from the database file).
 *
 * Scenarios: the happy path, a target that reports an error, a target
 * that loses its lease, an operator cancel, the controller killed in COPY
 * and right after COMMITTED, and a drain that moves what it can and
 * reports what anti-affinity keeps. After each, the partition must be on
 * exactly one node, the one the controller shows.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <sqlite3.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/tls.h"
#include "harness.h"
#include "proto/fabric.pb-c.h"

#define NNODES	 3
#define MAXP	 16
#define MAXM	 16
#define MAXD	 256
#define LEASE_MS "3000" /* heartbeats every 600 ms: slack for a loaded machine */
#define PH(x)	 FAB__MIGRATION_PHASE__MIGRATION_PHASE_##x
#define RESUME	 FAB__MIGRATION_ACTION__MIGRATION_ACTION_RESUME
#define DROP	 FAB__MIGRATION_ACTION__MIGRATION_ACTION_DROP

static char dir[64], pki[128], dbpath[160], ctl_addr[64];
static pid_t ctld_pid;

/* ---- simulated nodes (their own thread and loop) --------------------------------- */

/* TGT_SLOW: the first RESUME is not acted on (the controller resends). */
enum tgt_mode { TGT_OK, TGT_ERROR, TGT_SLOW };
enum src_mode { SRC_OK, SRC_HANG };

struct spart {
	char name[64];
	uint64_t epoch;
	bool used, paused;
};

struct smig {
	uint64_t id;
	char name[64];
	char peer[64]; /* source: the target's name */
	bool source, used, held;
	uint64_t epoch;
	Fab__MigrationPhase phase;
	uint32_t round;
};

struct snode {
	int idx;
	char name[16], data_addr[32], instance[24];
	SSL_CTX *ctx;
	struct fab_conn *conn;
	ev_timer beat, retry, progress, err_timer;
	bool registered, mute, kick; /* kick: drop the connection, register anew */
	struct smig inject;	     /* a status to send from the loop (id 0: none) */
	uint64_t next_id, seq;
	struct spart parts[MAXP];
	struct smig migs[MAXM];
	enum tgt_mode tgt;
	enum src_mode src;
	unsigned migrate_in, migrate_out, deletes, registers, runs;
	unsigned in_devices; /* devices of the last MigrateIn */
	char in_source[64];
	char in_dev[3][128];  /* its first device: path, node, address */
	char access_node[64]; /* the last VolumeAccess it got (a storage node) */
	uint64_t access_epoch;
};

struct decision {
	int node;
	uint64_t id;
	char name[64];
	int action;
	uint64_t epoch;
	int db_phase; /* the row's phase in the store when it arrived */
};

static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	struct ev_loop *loop;
	ev_async wake;
	bool stop;
	struct snode n[NNODES];
	struct decision d[MAXD];
	unsigned nd;
} S;

static void lock(void)
{
	pthread_mutex_lock(&S.lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&S.lock);
}

#define SIM_CHECK(c)                                                                             \
	do {                                                                                     \
		if (!(c)) {                                                                      \
			fprintf(stderr, "simulated node: %s failed at line %d\n", #c, __LINE__); \
			abort();                                                                 \
		}                                                                                \
	} while (0)

static struct snode *node_by_name(const char *name)
{
	for (int i = 0; i < NNODES; i++)
		if (!strcmp(S.n[i].name, name))
			return &S.n[i];
	return NULL;
}

static void nsend(struct snode *n, Fab__Envelope *env)
{
	if (!n->conn || !n->registered)
		return;
	env->id = ++n->next_id;
	fab_conn_send_pb(n->conn, &env->base);
}

static struct spart *part_find(struct snode *n, const char *name)
{
	for (int i = 0; i < MAXP; i++)
		if (n->parts[i].used && !strcmp(n->parts[i].name, name))
			return &n->parts[i];
	return NULL;
}

static struct spart *part_add(struct snode *n, const char *name, uint64_t epoch)
{
	struct spart *p = part_find(n, name);

	for (int i = 0; !p && i < MAXP; i++)
		if (!n->parts[i].used)
			p = &n->parts[i];
	SIM_CHECK(p);
	memset(p, 0, sizeof(*p));
	p->used = true;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->epoch = epoch;
	return p;
}

static struct smig *mig_find(struct snode *n, uint64_t id)
{
	for (int i = 0; i < MAXM; i++)
		if (n->migs[i].used && n->migs[i].id == id)
			return &n->migs[i];
	return NULL;
}

static struct smig *mig_add(struct snode *n, uint64_t id, const char *name, bool source,
			    uint64_t epoch)
{
	struct smig *m = NULL;

	for (int i = 0; !m && i < MAXM; i++)
		if (!n->migs[i].used)
			m = &n->migs[i];
	SIM_CHECK(m);
	memset(m, 0, sizeof(*m));
	m->used = true;
	m->id = id;
	m->source = source;
	m->epoch = epoch;
	snprintf(m->name, sizeof(m->name), "%s", name);
	return m;
}

static void fill_status(Fab__MigrationStatus *st, const struct smig *m)
{
	fab__migration_status__init(st);
	st->migration_id = m->id;
	st->name = (char *)m->name;
	st->role = m->source ? "source" : "target";
	st->phase = m->phase;
	st->round = m->round;
	st->ram_bytes = 64 << 20;
	st->bytes_sent = (uint64_t)m->round * (24 << 20);
	st->dirty_bytes = 2 << 20;
	st->dirty_bytes_per_s = 20 << 20;
	st->link_bytes_per_s = 400 << 20;
	st->est_downtime_us = 5000;
}

static void send_mstatus(struct snode *n, const struct smig *m, const char *error,
			 uint64_t downtime_us)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationStatus st;

	fill_status(&st, m);
	st.error = (char *)(error ? error : "");
	st.downtime_us = downtime_us;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATION_STATUS;
	env.migration_status = &st;
	nsend(n, &env);
}

static void send_pstatus(struct snode *n, const char *name, uint64_t epoch,
			 Fab__PartitionState state)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionStatus st = FAB__PARTITION_STATUS__INIT;

	st.name = (char *)name;
	st.epoch = epoch;
	st.state = state;
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_STATUS;
	env.partition_status = &st;
	nsend(n, &env);
}

/* After every registration: what it runs and the migrations not decided. */
static void send_report(struct snode *n)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__NodeReport r = FAB__NODE_REPORT__INIT;
	Fab__PartitionStatus ps[MAXP], *psp[MAXP];
	Fab__MigrationStatus ms[MAXM], *msp[MAXM];

	for (int i = 0; i < MAXP; i++) {
		if (!n->parts[i].used)
			continue;
		fab__partition_status__init(&ps[r.n_partitions]);
		ps[r.n_partitions].name = n->parts[i].name;
		ps[r.n_partitions].epoch = n->parts[i].epoch;
		ps[r.n_partitions].state = FAB__PARTITION_STATE__PARTITION_STATE_RUNNING;
		psp[r.n_partitions] = &ps[r.n_partitions];
		r.n_partitions++;
	}
	for (int i = 0; i < MAXM; i++) {
		if (!n->migs[i].used)
			continue;
		fill_status(&ms[r.n_migrations], &n->migs[i]);
		msp[r.n_migrations] = &ms[r.n_migrations];
		r.n_migrations++;
	}
	r.partitions = psp;
	r.migrations = msp;
	env.body_case = FAB__ENVELOPE__BODY_NODE_REPORT;
	env.node_report = &r;
	nsend(n, &env);
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct snode *n = w->data;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__Heartbeat hb = FAB__HEARTBEAT__INIT;

	lock();
	if (!n->mute) {
		hb.seq = ++n->seq;
		env.body_case = FAB__ENVELOPE__BODY_HEARTBEAT;
		env.heartbeat = &hb;
		nsend(n, &env);
	}
	unlock();
}

/* The source's copy: a round every 100 ms; SRC_OK stops after round 3
 * and tells its target (in this process) that the state has arrived. */
static void progress_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct snode *n = w->data;
	struct smig *m = NULL;

	lock();
	for (int i = 0; i < MAXM && !m; i++)
		if (n->migs[i].used && n->migs[i].source && n->migs[i].phase == PH(COPY))
			m = &n->migs[i];
	if (!m) {
		ev_timer_stop(loop, w);
		unlock();
		return;
	}
	m->round++;
	send_mstatus(n, m, NULL, 0);
	if (n->src == SRC_OK && m->round >= 3) {
		struct snode *t = node_by_name(m->peer);
		struct smig *tm = t ? mig_find(t, m->id) : NULL;
		struct spart *p = part_find(n, m->name);

		if (p)
			p->paused = true;
		m->phase = PH(STOPPED);
		send_mstatus(n, m, NULL, 0);
		ev_timer_stop(loop, w);
		if (tm && t->tgt != TGT_ERROR) {
			tm->phase = PH(STOPPED); /* restored, paused: READY */
			send_mstatus(t, tm, NULL, 0);
		}
	}
	unlock();
}

static void err_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct snode *n = w->data;

	lock();
	for (int i = 0; i < MAXM; i++)
		if (n->migs[i].used && !n->migs[i].source)
			send_mstatus(n, &n->migs[i],
				     "restoring: checksum mismatch in page batch 12", 0);
	unlock();
}

static int db_phase(uint64_t id)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int phase = -1;

	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -2;
	sqlite3_busy_timeout(db, 2000);
	if (sqlite3_prepare_v2(db, "SELECT phase FROM migrations WHERE id=?1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
		if (sqlite3_step(st) == SQLITE_ROW)
			phase = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return phase;
}

static void on_decision(struct snode *n, const Fab__MigrationDecision *d)
{
	struct smig *m = mig_find(n, d->migration_id);
	struct decision *rec;

	SIM_CHECK(S.nd < MAXD);
	rec = &S.d[S.nd++];
	rec->node = n->idx;
	rec->id = d->migration_id;
	snprintf(rec->name, sizeof(rec->name), "%s", d->name ? d->name : "");
	rec->action = d->action;
	rec->epoch = d->epoch;
	rec->db_phase = db_phase(d->migration_id);
	if (!m) {
		struct smig ack = { .id = d->migration_id };

		snprintf(ack.name, sizeof(ack.name), "%s", d->name ? d->name : "");
		ack.phase = d->action == RESUME ? PH(DONE) : PH(ABORTED);
		send_mstatus(n, &ack, NULL, 0);
		return;
	}
	if (m->source) {
		if (d->action == DROP) {
			struct spart *p = part_find(n, m->name);

			if (p)
				p->used = false;
			m->phase = PH(DONE);
		} else {
			struct spart *p = part_find(n, m->name);

			if (p)
				p->paused = false;
			m->phase = PH(ABORTED);
		}
		send_mstatus(n, m, NULL, 0);
	} else if (d->action == RESUME && n->tgt == TGT_SLOW && !m->held) {
		m->held = true;
		return;
	} else if (d->action == RESUME) {
		/* as fabnode does: the partition's status, then the migration's
		 * (with the measured downtime) */
		part_add(n, m->name, d->epoch);
		send_pstatus(n, m->name, d->epoch, FAB__PARTITION_STATE__PARTITION_STATE_RUNNING);
		m->phase = PH(DONE);
		send_mstatus(n, m, NULL, 3456);
	} else {
		m->phase = PH(ABORTED);
		send_mstatus(n, m, NULL, 0);
	}
	m->used = false;
}

static void node_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	struct snode *n = arg;
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);
	struct spart *sp;
	struct smig *m;

	SIM_CHECK(env);
	lock();
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_REGISTER_ACK: {
		double hb = env->register_ack->heartbeat_ms / 1000.0;

		n->registered = true;
		n->registers++;
		send_report(n);
		ev_timer_init(&n->beat, beat_cb, hb, hb);
		n->beat.data = n;
		ev_timer_start(S.loop, &n->beat);
		break;
	}
	case FAB__ENVELOPE__BODY_RUN_PARTITION:
		n->runs++;
		part_add(n, env->run_partition->name, env->run_partition->epoch);
		send_pstatus(n, env->run_partition->name, env->run_partition->epoch,
			     FAB__PARTITION_STATE__PARTITION_STATE_RUNNING);
		break;
	case FAB__ENVELOPE__BODY_STOP_PARTITION:
		sp = part_find(n, env->stop_partition->name);
		if (sp)
			sp->used = false;
		send_pstatus(n, env->stop_partition->name, env->stop_partition->epoch,
			     FAB__PARTITION_STATE__PARTITION_STATE_STOPPED);
		break;
	case FAB__ENVELOPE__BODY_DELETE_PARTITION:
		n->deletes++;
		sp = part_find(n, env->delete_partition->name);
		if (sp &&
		    (!env->delete_partition->epoch || sp->epoch == env->delete_partition->epoch))
			sp->used = false;
		break;
	case FAB__ENVELOPE__BODY_CREATE_VOLUME: {
		Fab__Envelope out = FAB__ENVELOPE__INIT;
		Fab__VolumeStatus vs = FAB__VOLUME_STATUS__INIT;
		char path[128];

		snprintf(path, sizeof(path), "/sim/%s.img", env->create_volume->name);
		vs.name = env->create_volume->name;
		vs.state = "ready";
		vs.size_bytes = env->create_volume->size_bytes;
		vs.path = path;
		out.body_case = FAB__ENVELOPE__BODY_VOLUME_STATUS;
		out.volume_status = &vs;
		nsend(n, &out);
		break;
	}
	case FAB__ENVELOPE__BODY_VOLUME_ACCESS:
		snprintf(n->access_node, sizeof(n->access_node), "%s",
			 env->volume_access->node ? env->volume_access->node : "");
		n->access_epoch = env->volume_access->epoch;
		break;
	case FAB__ENVELOPE__BODY_MIGRATE_IN:
		n->migrate_in++;
		n->in_devices = (unsigned)env->migrate_in->n_devices;
		if (env->migrate_in->n_devices) {
			const Fab__DeviceBinding *d = env->migrate_in->devices[0];

			snprintf(n->in_dev[0], sizeof(n->in_dev[0]), "%s", d->path ? d->path : "");
			snprintf(n->in_dev[1], sizeof(n->in_dev[1]), "%s", d->node ? d->node : "");
			snprintf(n->in_dev[2], sizeof(n->in_dev[2]), "%s",
				 d->address ? d->address : "");
		}
		snprintf(n->in_source, sizeof(n->in_source), "%s", env->migrate_in->source);
		m = mig_add(n, env->migrate_in->migration_id, env->migrate_in->name, false,
			    env->migrate_in->epoch);
		m->phase = PH(PREPARE);
		send_mstatus(n, m, NULL, 0);
		if (n->tgt == TGT_ERROR) {
			ev_timer_init(&n->err_timer, err_cb, 0.3, 0.);
			n->err_timer.data = n;
			ev_timer_start(S.loop, &n->err_timer);
		}
		break;
	case FAB__ENVELOPE__BODY_MIGRATE_OUT:
		n->migrate_out++;
		m = mig_add(n, env->migrate_out->migration_id, env->migrate_out->name, true,
			    env->migrate_out->epoch);
		snprintf(m->peer, sizeof(m->peer), "%s", env->migrate_out->target);
		m->phase = PH(COPY);
		ev_timer_init(&n->progress, progress_cb, 0.1, 0.1);
		n->progress.data = n;
		ev_timer_start(S.loop, &n->progress);
		break;
	case FAB__ENVELOPE__BODY_MIGRATION_DECISION:
		on_decision(n, env->migration_decision);
		break;
	default:
		break;
	}
	unlock();
	fab__envelope__free_unpacked(env, NULL);
}

static void node_open(struct fab_conn *c, void *arg)
{
	struct snode *n = arg;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RegisterNode reg = FAB__REGISTER_NODE__INIT;
	char *tr[] = { "tcp" }, *vsps[] = { "storage" };

	/* c also serves volumes */
	if (n->idx == 2) {
		reg.vsps = vsps;
		reg.n_vsps = 1;
	}
	reg.name = n->name;
	reg.vcpus = 4;
	reg.memory_bytes = 1ull << 30;
	reg.transports = tr;
	reg.n_transports = 1;
	reg.data_addr = n->data_addr;
	reg.version = "sim";
	reg.instance = n->instance;
	env.body_case = FAB__ENVELOPE__BODY_REGISTER_NODE;
	env.register_node = &reg;
	env.id = ++n->next_id;
	fab_conn_send_pb(c, &env.base);
}

static void node_connect(struct snode *n);

static void node_close(struct fab_conn *c, int err, void *arg)
{
	struct snode *n = arg;

	lock();
	n->conn = NULL;
	n->registered = false;
	ev_timer_stop(S.loop, &n->beat);
	if (!S.stop)
		ev_timer_start(S.loop, &n->retry);
	unlock();
}

static const struct fab_conn_ops node_ops = {
	.open_cb = node_open,
	.frame_cb = node_frame,
	.close_cb = node_close,
};

static void node_connect(struct snode *n)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.handshake_timeout_s = 5,
	};

	if (fab_conn_connect(S.loop, n->ctx, ctl_addr, &opts, &node_ops, n, &n->conn))
		ev_timer_start(S.loop, &n->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct snode *n = w->data;

	ev_timer_stop(loop, w);
	lock();
	if (!n->conn && !S.stop)
		node_connect(n);
	unlock();
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	lock();
	for (int i = 0; i < NNODES; i++) {
		if (S.n[i].kick && S.n[i].conn)
			fab_conn_close(S.n[i].conn, -ECONNRESET, "test: reconnect");
		S.n[i].kick = false;
		if (S.n[i].inject.id)
			send_mstatus(&S.n[i], &S.n[i].inject, NULL, 0);
		S.n[i].inject.id = 0;
	}
	if (S.stop) {
		for (int i = 0; i < NNODES; i++) {
			ev_timer_stop(loop, &S.n[i].retry);
			ev_timer_stop(loop, &S.n[i].beat);
			ev_timer_stop(loop, &S.n[i].progress);
			ev_timer_stop(loop, &S.n[i].err_timer);
			if (S.n[i].conn)
				fab_conn_close(S.n[i].conn, 0, "test over");
		}
		ev_async_stop(loop, w);
	}
	unlock();
}

static void *sim_main(void *arg)
{
	ev_run(S.loop, 0);
	return NULL;
}

static void sim_start(void)
{
	pthread_mutex_init(&S.lock, NULL);
	S.loop = ev_loop_new(EVFLAG_AUTO);
	ev_async_init(&S.wake, wake_cb);
	ev_async_start(S.loop, &S.wake);
	for (int i = 0; i < NNODES; i++) {
		struct snode *n = &S.n[i];

		n->idx = i;
		snprintf(n->name, sizeof(n->name), "%c", 'a' + i);
		snprintf(n->data_addr, sizeof(n->data_addr), "127.0.0.1:%d", 17800 + i);
		snprintf(n->instance, sizeof(n->instance), "sim-%d-%d", (int)getpid(), i);
		assert_int_equal(fab_tls_ctx_new(pki, FAB_ROLE_NODE, n->name, 0, &n->ctx), 0);
		ev_timer_init(&n->retry, retry_cb, 0.2, 0.);
		n->retry.data = n;
		ev_init(&n->beat, beat_cb);
		ev_init(&n->progress, progress_cb);
		ev_init(&n->err_timer, err_cb);
		node_connect(n);
	}
	assert_int_equal(pthread_create(&S.thread, NULL, sim_main, NULL), 0);
}

static void sim_stop(void)
{
	if (!S.loop)
		return;
	lock();
	S.stop = true;
	unlock();
	ev_async_send(S.loop, &S.wake);
	pthread_join(S.thread, NULL);
	for (int i = 0; i < NNODES; i++)
		SSL_CTX_free(S.n[i].ctx);
	ev_loop_destroy(S.loop);
	S.loop = NULL;
}

/* ---- the controller and fabctl ---------------------------------------------------- */

static void dump_log(void)
{
	char path[160], *s;

	snprintf(path, sizeof(path), "%s/fabctld.log", dir);
	s = th_slurp(path);
	if (s) {
		size_t len = strlen(s);

		fprintf(stderr, "----- fabctld.log (tail) -----\n%s\n",
			len > 20000 ? s + len - 20000 : s);
		free(s);
	}
}

static pid_t start_ctld(const char *crash_at)
{
	char log[160];
	const char *argv[] = { FABCTLD, "--listen",   ctl_addr, "--db",	       dbpath,	"--pki",
			       pki,	"--lease-ms", LEASE_MS, "--log-level", "debug", NULL };
	pid_t pid;

	snprintf(log, sizeof(log), "%s/fabctld.log", dir);
	if (crash_at)
		setenv("FABCTLD_TEST_CRASH_AT", crash_at, 1);
	pid = th_spawn(log, NULL, argv);
	unsetenv("FABCTLD_TEST_CRASH_AT");
	return pid;
}

static struct {
	char *out, *err;
	int rc;
} R;

static int fabctl(const char *first, ...)
{
	const char *argv[40] = { FABCTL, "--controller", ctl_addr, "--pki", pki };
	char o[160], e[160];
	int n = 5;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a && n < 39; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(o, sizeof(o), "%s/out", dir);
	snprintf(e, sizeof(e), "%s/err", dir);
	free(R.out);
	free(R.err);
	R.rc = th_run(o, e, NULL, argv, 60);
	R.out = th_slurp(o);
	R.err = th_slurp(e);
	if (!R.out)
		R.out = strdup("");
	if (!R.err)
		R.err = strdup("");
	if (strstr(R.err, "Sanitizer") || strstr(R.err, "runtime error:"))
		fail_msg("sanitizer report from fabctl:\n%s", R.err);
	return R.rc;
}

#define OK(...)                                                                      \
	do {                                                                         \
		if (fabctl(__VA_ARGS__, NULL)) {                                     \
			dump_log();                                                  \
			fail_msg("fabctl failed (%d):\n%s\n%s", R.rc, R.out, R.err); \
		}                                                                    \
	} while (0)

#define HAS(text, needle)                                                      \
	do {                                                                   \
		if (!strstr((text), (needle))) {                               \
			dump_log();                                            \
			fail_msg("missing: [%s]\nin: [%s]", (needle), (text)); \
		}                                                              \
	} while (0)

static int json_get(const char *json, const char *key, char *out, size_t len)
{
	char pat[80];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '"') {
		p++;
		e = strchr(p, '"');
	} else {
		e = p + strcspn(p, ",}");
	}
	if (!e || (size_t)(e - p) >= len)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}

/* The partition as the controller shows it: its node, epoch and state. */
static void part_show(const char *name, char *node, uint64_t *epoch, char *state)
{
	char ep[32];

	OK("partition", "show", name, "--json");
	assert_int_equal(json_get(R.out, "node", node, 64), 0);
	assert_int_equal(json_get(R.out, "epoch", ep, sizeof(ep)), 0);
	assert_int_equal(json_get(R.out, "state", state, 32), 0);
	*epoch = strtoull(ep, NULL, 10);
}

/*
 * Never on two nodes or none: exactly one simulated node holds the
 * partition (running, not paused), and it is the node and epoch the
 * controller shows. Waits a little for the last decision to land.
 */
struct one_arg {
	const char *name;
	char node[64];
	uint64_t epoch;
	char why[256];
};

static int on_one_node(void *arg)
{
	struct one_arg *a = arg;
	int holders = 0, where = -1;

	lock();
	for (int i = 0; i < NNODES; i++) {
		struct spart *p = part_find(&S.n[i], a->name);

		if (p) {
			holders++;
			where = i;
			if (p->paused || p->epoch != a->epoch || strcmp(S.n[i].name, a->node))
				holders += 10; /* the wrong copy */
		}
	}
	snprintf(a->why, sizeof(a->why), "%d holder(s), last on %s", holders,
		 where >= 0 ? S.n[where].name : "none");
	unlock();
	return holders == 1;
}

static void check_one_node(const char *name, const char *want_node)
{
	struct one_arg a = { .name = name };
	char state[32];

	part_show(name, a.node, &a.epoch, state);
	assert_string_equal(state, "running");
	if (strstr(R.out, "\"migration\":"))
		fail_msg("partition %s still shows a migration: %s", name, R.out);
	if (want_node)
		assert_string_equal(a.node, want_node);
	if (!th_wait(on_one_node, &a, 5000)) {
		dump_log();
		fail_msg("partition %s: not on exactly node %s epoch %llu: %s", name, a.node,
			 (unsigned long long)a.epoch, a.why);
	}
}

/* ---- helpers on the simulated nodes' log ------------------------------------------- */

static unsigned decisions_for(uint64_t id, struct decision *out, unsigned max)
{
	unsigned k = 0;

	lock();
	for (unsigned i = 0; i < S.nd; i++)
		if (S.d[i].id == id && k < max)
			out[k++] = S.d[i];
	unlock();
	return k;
}

struct dec_arg {
	uint64_t id;
	unsigned want;
};

static int have_decisions(void *arg)
{
	struct dec_arg *a = arg;
	struct decision d[8];

	return decisions_for(a->id, d, 8) >= a->want;
}

static void wait_decisions(uint64_t id, unsigned want)
{
	struct dec_arg a = { id, want };

	if (!th_wait(have_decisions, &a, 15000)) {
		dump_log();
		fail_msg("migration %llu: fewer than %u decisions", (unsigned long long)id, want);
	}
}

/* The first decision each node got for id: target's and source's. */
static void first_decisions(uint64_t id, int target, int source, int *t_action, int *s_action,
			    int *t_phase, int *s_phase, bool *target_first)
{
	struct decision d[16];
	unsigned k = decisions_for(id, d, 16);
	int ti = -1, si = -1;

	for (unsigned i = 0; i < k; i++) {
		if (d[i].node == target && ti < 0)
			ti = (int)i;
		if (d[i].node == source && si < 0)
			si = (int)i;
	}
	assert_true(ti >= 0 && si >= 0);
	*t_action = d[ti].action;
	*s_action = d[si].action;
	*t_phase = d[ti].db_phase;
	*s_phase = d[si].db_phase;
	*target_first = ti < si;
}

/* Whether fabctld logged decision a (to node na) before b (to nb). */
static bool sent_before(uint64_t id, const char *a, const char *na, const char *b, const char *nb)
{
	char path[160], la[128], lb[128], *log, *pa, *pb;
	bool ok;

	snprintf(path, sizeof(path), "%s/fabctld.log", dir);
	log = th_slurp(path);
	assert_non_null(log);
	snprintf(la, sizeof(la), "migration %llu: %s %s ", (unsigned long long)id, a, na);
	snprintf(lb, sizeof(lb), "migration %llu: %s %s ", (unsigned long long)id, b, nb);
	pa = strstr(log, la);
	pb = strstr(log, lb);
	ok = pa && pb && pa < pb;
	if (!ok)
		fprintf(stderr, "log order: [%s] at %p, [%s] at %p\n", la, (void *)pa, lb,
			(void *)pb);
	free(log);
	return ok;
}

static int node_idx(const char *name)
{
	for (int i = 0; i < NNODES; i++)
		if (!strcmp(S.n[i].name, name))
			return i;
	fail_msg("no node %s", name);
	return -1;
}

/* RunPartition and DeletePartition the simulated nodes got, in all. */
static unsigned commands(void)
{
	unsigned k = 0;

	lock();
	for (int i = 0; i < NNODES; i++)
		k += S.n[i].runs + S.n[i].deletes;
	unlock();
	return k;
}

static void set_modes(enum tgt_mode t, enum src_mode s)
{
	lock();
	for (int i = 0; i < NNODES; i++) {
		S.n[i].tgt = t;
		S.n[i].src = s;
	}
	unlock();
}

/* The partition's migration as fabctl migration show --json has it. */
static uint64_t mig_show(const char *name, char *phase, char *error, size_t errlen)
{
	char id[32];

	OK("migration", "show", name, "--json");
	assert_int_equal(json_get(R.out, "id", id, sizeof(id)), 0);
	if (phase)
		assert_int_equal(json_get(R.out, "phase", phase, 32), 0);
	if (error)
		json_get(R.out, "error", error, errlen);
	return strtoull(id, NULL, 10);
}

struct phase_arg {
	const char *name;
	const char *want;
};

static int phase_is(void *arg)
{
	struct phase_arg *a = arg;
	char phase[32];

	if (fabctl("migration", "show", a->name, "--json", NULL))
		return 0;
	return json_get(R.out, "phase", phase, sizeof(phase)) == 0 && !strcmp(phase, a->want);
}

static void wait_phase(const char *name, const char *want)
{
	struct phase_arg a = { name, want };

	if (!th_wait(phase_is, &a, 30000)) {
		dump_log();
		fail_msg("migration of %s never reached %s: %s", name, want, R.out);
	}
}

/* Creates a partition and returns the node it runs on. */
static void create(const char *name, const char *group, char *node)
{
	uint64_t epoch;
	char state[32];

	if (group)
		OK("partition", "create", name, "--image", "hello", "--group", group);
	else
		OK("partition", "create", name, "--image", "hello");
	part_show(name, node, &epoch, state);
	assert_string_equal(state, "running");
}

/* Some node other than `not`. */
static const char *other(const char * not )
{
	return strcmp(not, "a") ? "a" : "b";
}

/* ---- scenarios ------------------------------------------------------------------------ */

static int node_up(void *arg)
{
	char st[32];

	return fabctl("node", "show", (const char *)arg, "--json", NULL) == 0 &&
	       json_get(R.out, "state", st, sizeof(st)) == 0 && !strcmp(st, "up");
}

static void wait_node_up(const char *name)
{
	if (!th_wait(node_up, (void *)name, 10000))
		fail_msg("node %s is not up again", name);
}

/* Happy path: COMMITTED on disk before any decision; RESUME to the target
 * first, DROP to the source; placement and epoch moved; fabctl's table. */
static void test_happy(void **state)
{
	char from[64], to[64], node[64], phase[32], st[32];
	uint64_t id, epoch0, epoch;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_OK, SRC_OK);
	create("web1", NULL, from);
	part_show("web1", node, &epoch0, st);
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web1", "--to", to, "--downtime", "40");
	HAS(R.err, "web1: migrating from ");
	/* plain progress lines (stdout is not a terminal); which rounds a
	 * 200 ms poll sees depends on timing, the first reply does not */
	HAS(R.err, "web1: prepare, round 0, sent 0B of 64MiB RAM");
	HAS(R.out, "result:");
	HAS(R.out, "done");
	HAS(R.out, "rounds:");
	HAS(R.out, "3 (at most 30)");
	HAS(R.out, "downtime:");
	HAS(R.out, "3.46 ms (budget 40 ms)");
	HAS(R.out, "bytes sent:");
	HAS(R.out, "72MiB (RAM 64MiB)");
	HAS(R.out, "total time:");
	id = mig_show("web1", phase, NULL, 0);
	assert_string_equal(phase, "done");
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, RESUME);
	assert_int_equal(sa, DROP);
	/* the switch was on disk before either node heard of it: COMMITTED
	 * when the target got RESUME (DONE needs its answer), COMMITTED or
	 * already DONE when the source's DROP landed (its own connection) */
	assert_int_equal(tp, 4);
	assert_true(sp == 4 || sp == 5);
	/* sent RESUME to the target first (the two connections may deliver
	 * in either order, so the controller's log tells) */
	assert_true(sent_before(id, "RESUME to", to, "DROP to", from));
	part_show("web1", node, &epoch, st);
	assert_string_equal(node, to);
	assert_int_equal(epoch, epoch0 + 1);
	lock();
	assert_int_equal(S.n[node_idx(to)].in_devices, 0);
	assert_string_equal(S.n[node_idx(to)].in_source, from);
	unlock();
	check_one_node("web1", to);
	/* explain tells how the target was chosen */
	OK("partition", "explain", "web1");
	HAS(R.out, "migrate from ");
}

/* The target reports an error: ABORTED with it, DROP to the target,
 * RESUME to the source, fabctl exits 1 with the reason. */
static void test_target_error(void **state)
{
	char from[64], err[256], phase[32];
	uint64_t id;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_ERROR, SRC_HANG);
	create("web2", NULL, from);
	assert_int_equal(fabctl("partition", "migrate", "web2", "--to", other(from), NULL), 1);
	HAS(R.err, "aborted: target ");
	HAS(R.err, "checksum mismatch in page batch 12");
	id = mig_show("web2", phase, err, sizeof(err));
	assert_string_equal(phase, "aborted");
	HAS(err, "checksum mismatch");
	wait_decisions(id, 2);
	first_decisions(id, node_idx(other(from)), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	assert_int_equal(sa, RESUME);
	check_one_node("web2", from);
	set_modes(TGT_OK, SRC_OK);
}

/* The target stops heartbeating mid-copy: its lease expires, ABORTED. */
static void test_target_lease_lost(void **state)
{
	char from[64], to[64], err[256], phase[32];
	uint64_t id;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_OK, SRC_HANG);
	create("web3", NULL, from);
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web3", "--to", to, "--no-wait");
	wait_phase("web3", "copy");
	lock();
	S.n[node_idx(to)].mute = true;
	unlock();
	wait_phase("web3", "aborted");
	id = mig_show("web3", phase, err, sizeof(err));
	HAS(err, "target node ");
	HAS(err, "lost (lease expired)");
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	assert_int_equal(sa, RESUME);
	lock();
	S.n[node_idx(to)].mute = false;
	unlock();
	wait_node_up(to);
	check_one_node("web3", from);
	set_modes(TGT_OK, SRC_OK);
}

static unsigned vcpus_used(const char *node)
{
	char v[32];

	OK("node", "show", node, "--json");
	assert_int_equal(json_get(R.out, "vcpus_used", v, sizeof(v)), 0);
	return (unsigned)strtoul(v, NULL, 10);
}

/* The operator cancels mid-copy. */
static void test_cancel(void **state)
{
	unsigned used0;
	char from[64], to[64], err[256], phase[32];
	uint64_t id;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_OK, SRC_HANG);
	create("web4", NULL, from);
	snprintf(to, sizeof(to), "%s", other(from));
	used0 = vcpus_used(to);
	OK("partition", "migrate", "web4", "--to", to, "--no-wait");
	wait_phase("web4", "copy");
	/* the partition shows its migration; the target holds its resources */
	OK("partition", "show", "web4", "--json");
	HAS(R.out, "\"migration\": {\"id\": ");
	HAS(R.out, "\"phase\": \"copy\"");
	OK("partition", "show", "web4");
	HAS(R.out, "migration:");
	assert_int_equal(vcpus_used(to), used0 + 1);
	OK("migration", "list", "--active");
	HAS(R.out, "web4");
	/* a second migration of it is a conflict */
	assert_int_equal(fabctl("partition", "migrate", "web4", NULL), 4);
	HAS(R.err, "already migrating");
	OK("migration", "cancel", "web4");
	HAS(R.out, "cancelled");
	id = mig_show("web4", phase, err, sizeof(err));
	assert_string_equal(phase, "aborted");
	HAS(err, "cancelled by admin");
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	assert_int_equal(sa, RESUME);
	/* the row was ABORTED on disk when the decisions went out */
	assert_int_equal(tp, 6);
	assert_int_equal(fabctl("migration", "cancel", "web4", NULL), 3);
	/* the hold on the target is gone with the migration */
	assert_int_equal(vcpus_used(to), used0);
	check_one_node("web4", from);

	/* Again, to the same node: done, under the epoch the cancelled one
	 * would have had. A late status of the cancelled one from that node
	 * still gets DROP, though the epoch is now the placement's. */
	set_modes(TGT_OK, SRC_OK);
	OK("partition", "migrate", "web4", "--to", to);
	check_one_node("web4", to);
	{
		struct decision d[16];
		unsigned before = decisions_for(id, d, 16);
		struct dec_arg da = { id, before + 1 };

		lock();
		S.n[node_idx(to)].inject = (struct smig){ .id = id, .phase = PH(STOPPED) };
		snprintf(S.n[node_idx(to)].inject.name, 64, "web4");
		unlock();
		ev_async_send(S.loop, &S.wake);
		if (!th_wait(have_decisions, &da, 10000))
			fail_msg("no answer to a late status of migration %llu",
				 (unsigned long long)id);
		assert_int_equal(decisions_for(id, d, 16), before + 1);
		assert_int_equal(d[before].node, node_idx(to));
		assert_int_equal(d[before].action, DROP);
	}
	check_one_node("web4", to);
	set_modes(TGT_OK, SRC_OK);
}

/* A partition with a disk: the target's bindings are as seen from it
 * (remote to the storage node, or local on it), and at the switch the
 * storage node is told that only the target may open the volume. */
static void test_volume(void **state)
{
	char from[64], node[64], st[32], want[64];
	uint64_t epoch;
	int c = node_idx("c");

	set_modes(TGT_OK, SRC_OK);
	OK("volume", "create", "vol1", "--size", "8M", "--node", "c");
	OK("partition", "create", "pv", "--image", "hello", "--volume", "vol1");
	part_show("pv", from, &epoch, st);
	if (strcmp(from, "a"))
		OK("partition", "migrate", "pv", "--to", "a");
	/* a -> b: remote to c */
	OK("partition", "migrate", "pv", "--to", "b");
	lock();
	assert_int_equal(S.n[node_idx("b")].in_devices, 1);
	assert_string_equal(S.n[node_idx("b")].in_dev[0], "");
	assert_string_equal(S.n[node_idx("b")].in_dev[1], "c");
	assert_string_equal(S.n[node_idx("b")].in_dev[2], S.n[c].data_addr);
	unlock();
	part_show("pv", node, &epoch, st);
	assert_string_equal(node, "b");
	lock();
	assert_string_equal(S.n[c].access_node, "b");
	assert_int_equal(S.n[c].access_epoch, epoch);
	unlock();
	/* b -> c: local on c */
	OK("partition", "migrate", "pv", "--to", "c");
	lock();
	assert_int_equal(S.n[c].in_devices, 1);
	snprintf(want, sizeof(want), "/sim/vol1.img");
	assert_string_equal(S.n[c].in_dev[0], want);
	unlock();
	part_show("pv", node, &epoch, st);
	lock();
	assert_string_equal(S.n[c].access_node, "c");
	assert_int_equal(S.n[c].access_epoch, epoch);
	unlock();
	check_one_node("pv", "c");
	OK("partition", "delete", "pv");
	OK("volume", "delete", "vol1");
}

/* Refusals and their exit codes. */
static void test_refusals(void **state)
{
	char from[64];

	create("web5", NULL, from);
	assert_int_equal(fabctl("partition", "migrate", "nope", NULL), 3);
	assert_int_equal(fabctl("partition", "migrate", "web5", "--to", "zz", NULL), 3);
	assert_int_equal(fabctl("partition", "migrate", "web5", "--to", from, NULL), 2);
	OK("partition", "stop", "web5");
	assert_int_equal(fabctl("partition", "migrate", "web5", NULL), 4);
	HAS(R.err, "not running");
	OK("partition", "delete", "web5");
}

struct up_arg {
	int want;
};

static int all_registered(void *arg)
{
	int n = 0;

	lock();
	for (int i = 0; i < NNODES; i++)
		n += S.n[i].registered;
	unlock();
	return n == NNODES;
}

static unsigned reg_base[NNODES];

/* Before a controller restart: what "registered again" is counted from. */
static void mark_registers(void)
{
	lock();
	for (int i = 0; i < NNODES; i++)
		reg_base[i] = S.n[i].registers;
	unlock();
}

static int all_registered_again(void *arg)
{
	int n = 0;

	lock();
	for (int i = 0; i < NNODES; i++)
		n += S.n[i].registered && S.n[i].registers > reg_base[i];
	unlock();
	return n == NNODES;
}

/* Every node registered with the controller started since mark_registers. */
static void wait_registered(void)
{
	if (!th_wait(all_registered_again, NULL, 30000)) {
		dump_log();
		fail_msg("the simulated nodes did not register again");
	}
}

struct rereg_arg {
	int idx;
	unsigned before;
};

static int reregistered(void *arg)
{
	struct rereg_arg *a = arg;
	bool yes;

	lock();
	yes = S.n[a->idx].registers > a->before && S.n[a->idx].registered;
	unlock();
	return yes;
}

/* Stop during the copy: the migration is aborted first, then the source
 * stops the partition; nothing is left on the target. */
static void test_stop_during_copy(void **state)
{
	char from[64], to[64], err[256], phase[32], node[64], st[32];
	uint64_t id, epoch;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_OK, SRC_HANG);
	create("web8", NULL, from);
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web8", "--to", to, "--no-wait");
	wait_phase("web8", "copy");
	OK("partition", "stop", "web8");
	id = mig_show("web8", phase, err, sizeof(err));
	assert_string_equal(phase, "aborted");
	HAS(err, "stop requested by admin");
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	assert_int_equal(sa, RESUME);
	part_show("web8", node, &epoch, st);
	assert_string_equal(st, "stopped");
	lock();
	assert_null(part_find(&S.n[node_idx(to)], "web8"));
	assert_null(part_find(&S.n[node_idx(from)], "web8"));
	unlock();
	OK("partition", "delete", "web8");
	set_modes(TGT_OK, SRC_OK);
}

struct moved_arg {
	const char *name, *not_on;
};

static int placed_elsewhere(void *arg)
{
	struct moved_arg *a = arg;
	char node[64], st[32];

	if (fabctl("partition", "show", a->name, "--json", NULL) ||
	    json_get(R.out, "node", node, sizeof(node)) || json_get(R.out, "state", st, sizeof(st)))
		return 0;
	return strcmp(node, a->not_on) && !strcmp(st, "running");
}

/* The source loses its lease mid-copy: ABORTED (DROP to the target), and
 * the partition's normal lost path restarts it elsewhere. When the old
 * source comes back with its copy, that copy is deleted: one node. */
static void test_source_lost(void **state)
{
	char from[64], to[64], err[256], phase[32];
	struct moved_arg ma = { "web9", NULL };
	struct rereg_arg rr;
	uint64_t id;
	int ta, sa, tp, sp;
	bool tfirst;

	set_modes(TGT_OK, SRC_HANG);
	OK("partition", "create", "web9", "--image", "hello", "--restart", "on-failure");
	{
		uint64_t e;
		char st[32];

		part_show("web9", from, &e, st);
	}
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web9", "--to", to, "--no-wait");
	wait_phase("web9", "copy");
	lock();
	S.n[node_idx(from)].mute = true;
	unlock();
	wait_phase("web9", "aborted");
	id = mig_show("web9", phase, err, sizeof(err));
	HAS(err, "source node ");
	HAS(err, "lost (lease expired)");
	wait_decisions(id, 1);
	first_decisions(id, node_idx(to), node_idx(to), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	ma.not_on = from;
	if (!th_wait(placed_elsewhere, &ma, 15000)) {
		dump_log();
		fail_msg("web9 was not restarted off its lost node: %s", R.out);
	}
	/* the old source returns, still holding its copy */
	lock();
	rr.idx = node_idx(from);
	rr.before = S.n[rr.idx].registers;
	S.n[rr.idx].mute = false;
	S.n[rr.idx].kick = true;
	unlock();
	ev_async_send(S.loop, &S.wake);
	if (!th_wait(reregistered, &rr, 15000))
		fail_msg("node %s did not register again", from);
	wait_node_up(from);
	check_one_node("web9", NULL);
	set_modes(TGT_OK, SRC_OK);
}

/* The source loses its lease after the switch, before the target has
 * answered RESUME: the migration still completes, the partition runs on
 * the target, nothing is restarted. */
static void test_source_lost_after_commit(void **state)
{
	char from[64], to[64], phase[32], node[64], st[32];
	uint64_t epoch;
	int ta, sa, tp, sp;
	bool tfirst;
	uint64_t id;

	set_modes(TGT_SLOW, SRC_OK);
	create("web10", NULL, from);
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web10", "--to", to, "--no-wait");
	wait_phase("web10", "committed");
	lock();
	S.n[node_idx(from)].mute = true;
	unlock();
	wait_phase("web10", "done");
	id = mig_show("web10", phase, NULL, 0);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, RESUME);
	assert_int_equal(sa, DROP);
	{
		/* the unanswered RESUME was sent again */
		struct decision d[16];
		unsigned k = decisions_for(id, d, 16), resumes = 0;

		for (unsigned i = 0; i < k; i++)
			resumes += d[i].node == node_idx(to) && d[i].action == RESUME;
		assert_true(resumes >= 2);
	}
	/* the source's lease runs out meanwhile or after: no matter */
	sleep(4);
	part_show("web10", node, &epoch, st);
	assert_string_equal(node, to);
	OK("partition", "show", "web10", "--json");
	HAS(R.out, "\"restarts\": 0");
	lock();
	S.n[node_idx(from)].mute = false;
	unlock();
	wait_node_up(from);
	check_one_node("web10", to);
	OK("partition", "delete", "web10");
	set_modes(TGT_OK, SRC_OK);
}

static void restart_ctld(const char *crash_at)
{
	mark_registers();
	th_signal(ctld_pid, SIGKILL);
	th_wait_exit(ctld_pid, 10);
	ctld_pid = start_ctld(crash_at);
}

/* SIGKILL in COPY: after the restart the row is ABORTED, and the nodes,
 * reporting the migration as undecided, get DROP (target) and RESUME
 * (source). */
static void test_kill_in_copy(void **state)
{
	char from[64], to[64], err[256], phase[32];
	uint64_t id;
	int ta, sa, tp, sp;
	unsigned cmds;
	bool tfirst;

	set_modes(TGT_OK, SRC_HANG);
	create("web6", NULL, from);
	snprintf(to, sizeof(to), "%s", other(from));
	OK("partition", "migrate", "web6", "--to", to, "--no-wait");
	wait_phase("web6", "copy");
	id = mig_show("web6", NULL, NULL, 0);
	cmds = commands();
	restart_ctld(NULL);
	wait_registered();
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, DROP);
	assert_int_equal(sa, RESUME);
	assert_int_equal(tp, 6);
	mig_show("web6", phase, err, sizeof(err));
	assert_string_equal(phase, "aborted");
	HAS(err, "controller restarted during the migration");
	check_one_node("web6", from);
	/* reconciliation neither restarted nor deleted anything */
	assert_int_equal(commands(), cmds);
	set_modes(TGT_OK, SRC_OK);
}

/* SIGKILL right after COMMITTED (before any decision): completed after the
 * restart, RESUME to the target, DROP to the source. */
static void test_kill_after_commit(void **state)
{
	char from[64], to[64], phase[32], node[64], st[32];
	uint64_t id, epoch0, epoch;
	int ta, sa, tp, sp;
	unsigned cmds;
	bool tfirst;

	create("web7", NULL, from);
	part_show("web7", node, &epoch0, st);
	snprintf(to, sizeof(to), "%s", other(from));
	restart_ctld("migration-after-commit");
	wait_registered();
	cmds = commands();
	/* fabctl loses its controller mid-wait: exit 7 */
	assert_int_equal(fabctl("partition", "migrate", "web7", "--to", to, NULL), 7);
	th_wait_exit(ctld_pid, 10);
	mark_registers();
	ctld_pid = start_ctld(NULL);
	wait_registered();
	wait_phase("web7", "done");
	id = mig_show("web7", phase, NULL, 0);
	wait_decisions(id, 2);
	first_decisions(id, node_idx(to), node_idx(from), &ta, &sa, &tp, &sp, &tfirst);
	assert_int_equal(ta, RESUME);
	assert_int_equal(sa, DROP);
	assert_true(tp == 4 || tp == 5);
	assert_true(sp == 4 || sp == 5);
	part_show("web7", node, &epoch, st);
	assert_string_equal(node, to);
	assert_int_equal(epoch, epoch0 + 1);
	check_one_node("web7", to);
	/* the old copy went by DROP, not by reconciliation */
	assert_int_equal(commands(), cmds);
}

/* Drain: everything that can move moves (one at a time, the scheduler
 * choosing); a partition whose anti-affinity group has a member on every
 * other node stays, and is reported. */
static void test_drain(void **state)
{
	char n1[64], n2[64], n3[64], f[64], node[64], st[32];
	char *names[] = { "g1", "g2", "g3" };
	char *nodes[] = { n1, n2, n3 };
	uint64_t epoch;
	int stuck = -1;

	set_modes(TGT_OK, SRC_OK);
	/* clear the nodes of earlier scenarios' partitions */
	for (const char *const *p = (const char *const[]){ "web1", "web2", "web3", "web4", "web6",
							   "web7", "web9", NULL };
	     *p; p++)
		OK("partition", "delete", *p);
	create("g1", "grp", n1);
	create("g2", "grp", n2);
	create("g3", "grp", n3);
	create("f1", NULL, f);
	if (strcmp(f, "a"))
		OK("partition", "migrate", "f1", "--to", "a");
	for (int i = 0; i < 3; i++)
		if (!strcmp(nodes[i], "a"))
			stuck = i;
	assert_true(stuck >= 0);
	assert_int_equal(fabctl("node", "drain", "a", "--wait", NULL), 5);
	HAS(R.out, "drained, no new placements");
	HAS(R.out, "could not move ");
	HAS(R.out, names[stuck]);
	HAS(R.out, "anti-affinity");
	HAS(R.err, "drain: done: 1 moved, 1 could not move");
	HAS(R.err, "1 partition could not move off it");
	/* f1 moved off a; the group member stayed */
	part_show("f1", node, &epoch, st);
	assert_true(strcmp(node, "a") != 0);
	check_one_node("f1", node);
	check_one_node(names[stuck], "a");
	OK("node", "show", "a");
	HAS(R.out, "could not move:");
	/* without --to the scheduler chooses, and says why */
	OK("partition", "migrate", "f1");
	HAS(R.err, "chosen by the scheduler (score ");
	/* nothing can take the stuck one: exit 5 with the scheduler's why */
	assert_int_equal(fabctl("partition", "migrate", names[stuck], NULL), 5);
	HAS(R.err, "anti-affinity");
	assert_int_equal(fabctl("partition", "migrate", names[stuck], "--to", "b", NULL), 5);
	HAS(R.err, "node b cannot take partition");
	/* and a drained node takes nothing: f1 cannot go back to a */
	assert_int_equal(fabctl("partition", "migrate", "f1", "--to", "a", NULL), 5);
	HAS(R.err, "drained");
	OK("cluster", "events", "--limit", "200");
	HAS(R.out, "drain of a: cannot move it: ");
	HAS(R.out, "drain done: 1 moved, 1 could not move");
}

static int group_setup(void **state)
{
	const char *argv[] = { FABCTL, "pki", "init", "--dir", pki, "--nodes", "a,b,c", NULL };
	char bound[64];
	int fd;

	fab_log_init("test_migctl", FAB_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	snprintf(dbpath, sizeof(dbpath), "%s/fabctld.db", dir);
	if (th_run(NULL, NULL, NULL, argv, 30))
		return -1;
	/* a free port, kept across controller restarts */
	fd = fab_listen("127.0.0.1:0", bound, sizeof(bound));
	if (fd < 0)
		return -1;
	close(fd);
	snprintf(ctl_addr, sizeof(ctl_addr), "%s", bound);
	ctld_pid = start_ctld(NULL);
	sim_start();
	if (!th_wait(all_registered, NULL, 20000)) {
		dump_log();
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	char path[160], *log;
	int rc = 0;

	sim_stop();
	th_stop(ctld_pid);
	/* In a sanitizer build the controller's log must be clean. */
	snprintf(path, sizeof(path), "%s/fabctld.log", dir);
	log = th_slurp(path);
	if (log && (strstr(log, "Sanitizer") || strstr(log, "runtime error:"))) {
		dump_log();
		rc = -1;
	}
	free(log);
	free(R.out);
	free(R.err);
	th_cleanup();
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_happy),
		cmocka_unit_test(test_target_error),
		cmocka_unit_test(test_target_lease_lost),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_volume),
		cmocka_unit_test(test_stop_during_copy),
		cmocka_unit_test(test_source_lost),
		cmocka_unit_test(test_source_lost_after_commit),
		cmocka_unit_test(test_kill_in_copy),
		cmocka_unit_test(test_kill_after_commit),
		cmocka_unit_test(test_drain),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
