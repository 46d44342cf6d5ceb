// SPDX-License-Identifier: MIT
/*
 * Live migration between real fabnode processes (issue 8), the node side:
 * this test is the controller (as test_node_cmds is). It sends MigrateIn
 * to the target, MigrateOut to the source, waits for both to report
 * STOPPED (READY), commits as the controller would (the volume's access
 * to the target, RESUME to the target, DROP to the source) and checks
 * what every node reports.
 *
 *   - a partition running blockbench --mode persist on a remote disk
 *     served by a storage node moves node-a -> node-b -> node-a -> node-b,
 *     and ends (graceful stop) with every read verified and no I/O error;
 *     each move prints its rounds, bytes and downtime;
 *   - the target is SIGKILLed during the migration: the partition runs on
 *     at the source, and a later migration to the restarted node works;
 *   - the target's checks on the stream: the test sends one itself, from
 *     a node that is not the source (refused), then with a corrupt page
 *     batch (the CRC32C mismatch fails the migration, with that reason);
 *   - decisions for an unknown migration id (either action) and a DROP to
 *     a source that has not stopped: harmless; a resent decision gets the
 *     same answer.
 * Needs KVM: exits 77 (skipped) loudly without /dev/kvm.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/conn.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "fab/xport.h"
#include "harness.h"
#include "proto/fabric.pb-c.h"

#define ST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x
#define MIB   (1ull << 20)
#define WAIT  15000 /* ms for anything a node should do promptly */

static char dir[64], pki[128];

/* ---- the controller ---------------------------------------------------------- */

struct msg {
	char node[FAB_NAME_MAX];
	Fab__Envelope *env;
};

struct outmsg {
	struct outmsg *next;
	char node[FAB_NAME_MAX];
	size_t len;
	uint8_t buf[];
};

struct peer {
	struct fab_conn *c;
	char name[FAB_NAME_MAX];
};

static struct ctl {
	struct ev_loop *loop;
	pthread_t thread;
	SSL_CTX *ctx;
	int lfd;
	ev_io accept_w;
	ev_async wake;
	char addr[64];
	pthread_mutex_t lock;
	struct msg *msgs; /* everything the nodes sent but heartbeats (lock) */
	size_t nmsgs, cap;
	struct outmsg *out; /* to send (lock) */
	struct peer peers[8];
	uint64_t generation;
	bool stop;
	bool kick; /* close every node's connection (they register again) */
} ctl;

static void c_open(struct fab_conn *c, void *arg)
{
	for (size_t i = 0; i < FAB_ARRAY_SIZE(ctl.peers); i++)
		if (!ctl.peers[i].c) {
			ctl.peers[i].c = c;
			snprintf(ctl.peers[i].name, sizeof(ctl.peers[i].name), "%s",
				 fab_conn_peer(c)->name);
			return;
		}
	fab_conn_close(c, -EMFILE, "too many test peers");
}

static struct peer *peer_of(struct fab_conn *c)
{
	for (size_t i = 0; i < FAB_ARRAY_SIZE(ctl.peers); i++)
		if (ctl.peers[i].c == c)
			return &ctl.peers[i];
	return NULL;
}

static void c_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);
	Fab__Envelope reply = FAB__ENVELOPE__INIT;
	Fab__RegisterAck ack = FAB__REGISTER_ACK__INIT;
	Fab__HeartbeatAck hba = FAB__HEARTBEAT_ACK__INIT;
	struct peer *pe = peer_of(c);

	if (!env || !pe) {
		fprintf(stderr, "controller: undecodable message\n");
		fab_conn_close(c, -EPROTO, "undecodable");
		if (env)
			fab__envelope__free_unpacked(env, NULL);
		return;
	}
	if (env->body_case == FAB__ENVELOPE__BODY_HEARTBEAT) {
		hba.seq = env->heartbeat->seq;
		reply.id = env->id;
		reply.body_case = FAB__ENVELOPE__BODY_HEARTBEAT_ACK;
		reply.heartbeat_ack = &hba;
		fab_conn_send_pb(c, &reply.base);
		fab__envelope__free_unpacked(env, NULL);
		return;
	}
	if (env->body_case == FAB__ENVELOPE__BODY_REGISTER_NODE) {
		ack.heartbeat_ms = 200;
		ack.lease_ms = 3000;
		ack.generation = ++ctl.generation;
		reply.id = env->id;
		reply.body_case = FAB__ENVELOPE__BODY_REGISTER_ACK;
		reply.register_ack = &ack;
		fab_conn_send_pb(c, &reply.base);
	}
	pthread_mutex_lock(&ctl.lock);
	if (ctl.nmsgs == ctl.cap) {
		ctl.cap = ctl.cap ? ctl.cap * 2 : 256;
		ctl.msgs = realloc(ctl.msgs, ctl.cap * sizeof(*ctl.msgs));
		if (!ctl.msgs)
			abort(); /* not on the test's thread: no cmocka assert here */
	}
	snprintf(ctl.msgs[ctl.nmsgs].node, FAB_NAME_MAX, "%s", pe->name);
	ctl.msgs[ctl.nmsgs++].env = env;
	pthread_mutex_unlock(&ctl.lock);
}

static void c_close(struct fab_conn *c, int err, void *arg)
{
	struct peer *pe = peer_of(c);

	if (pe)
		memset(pe, 0, sizeof(*pe));
}

static const struct fab_conn_ops c_ops = {
	.open_cb = c_open,
	.frame_cb = c_frame,
	.close_cb = c_close,
};

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct fab_conn_opts opts = { .peer_roles = FAB_ROLE_BIT(FAB_ROLE_NODE) };
	struct fab_conn *c;
	int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd >= 0)
		fab_conn_accept(loop, ctl.ctx, fd, "node", &opts, &c_ops, NULL, &c);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct outmsg *o;

	pthread_mutex_lock(&ctl.lock);
	o = ctl.out;
	ctl.out = NULL;
	pthread_mutex_unlock(&ctl.lock);
	while (o) {
		struct outmsg *next = o->next;

		for (size_t i = 0; i < FAB_ARRAY_SIZE(ctl.peers); i++)
			if (ctl.peers[i].c && !strcmp(ctl.peers[i].name, o->node))
				fab_conn_send(ctl.peers[i].c, o->buf, o->len);
		free(o);
		o = next;
	}
	if (ctl.kick) {
		ctl.kick = false;
		for (size_t i = 0; i < FAB_ARRAY_SIZE(ctl.peers); i++)
			if (ctl.peers[i].c)
				fab_conn_close(ctl.peers[i].c, 0, "controller restart (test)");
	}
	if (ctl.stop) {
		for (size_t i = 0; i < FAB_ARRAY_SIZE(ctl.peers); i++)
			if (ctl.peers[i].c)
				fab_conn_close(ctl.peers[i].c, 0, "test over");
		ev_io_stop(loop, &ctl.accept_w);
		ev_async_stop(loop, &ctl.wake);
	}
}

static void *ctl_main(void *arg)
{
	ev_run(ctl.loop, 0);
	return NULL;
}

static void ctl_start(void)
{
	memset(&ctl, 0, sizeof(ctl));
	pthread_mutex_init(&ctl.lock, NULL);
	assert_int_equal(fab_tls_ctx_new(pki, FAB_ROLE_CONTROLLER, "controller", 1, &ctl.ctx), 0);
	ctl.lfd = fab_listen("127.0.0.1:0", ctl.addr, sizeof(ctl.addr));
	assert_true(ctl.lfd >= 0);
	ctl.loop = ev_loop_new(EVFLAG_AUTO);
	ev_io_init(&ctl.accept_w, accept_cb, ctl.lfd, EV_READ);
	ev_io_start(ctl.loop, &ctl.accept_w);
	ev_async_init(&ctl.wake, wake_cb);
	ev_async_start(ctl.loop, &ctl.wake);
	assert_int_equal(pthread_create(&ctl.thread, NULL, ctl_main, NULL), 0);
}

static void ctl_stop(void)
{
	if (!ctl.loop)
		return;
	ctl.stop = true;
	ev_async_send(ctl.loop, &ctl.wake);
	pthread_join(ctl.thread, NULL);
	ev_loop_destroy(ctl.loop);
	close(ctl.lfd);
	SSL_CTX_free(ctl.ctx);
	for (size_t i = 0; i < ctl.nmsgs; i++)
		fab__envelope__free_unpacked(ctl.msgs[i].env, NULL);
	free(ctl.msgs);
	while (ctl.out) {
		struct outmsg *o = ctl.out;

		ctl.out = o->next;
		free(o);
	}
	pthread_mutex_destroy(&ctl.lock);
	memset(&ctl, 0, sizeof(ctl));
}

/* Sends env to node (on the controller's thread). */
static void ctl_send(const char *node, Fab__Envelope *env)
{
	size_t len = fab__envelope__get_packed_size(env);
	struct outmsg *o = malloc(sizeof(*o) + len), **pp;

	assert_non_null(o);
	o->next = NULL;
	snprintf(o->node, sizeof(o->node), "%s", node);
	o->len = fab__envelope__pack(env, o->buf);
	pthread_mutex_lock(&ctl.lock);
	for (pp = &ctl.out; *pp; pp = &(*pp)->next)
		;
	*pp = o;
	pthread_mutex_unlock(&ctl.lock);
	ev_async_send(ctl.loop, &ctl.wake);
}

/* Where the messages received so far end: waits look from here on. */
static size_t ctl_mark(void)
{
	size_t n;

	pthread_mutex_lock(&ctl.lock);
	n = ctl.nmsgs;
	pthread_mutex_unlock(&ctl.lock);
	return n;
}

/* What a wait looks for. */
struct match {
	Fab__Envelope__BodyCase kind;
	const char *name;   /* partition or volume name; NULL: any */
	int pstate;	    /* PartitionStatus state; 0: any */
	const char *vstate; /* VolumeStatus state; NULL: any */
};

static bool matches(const Fab__Envelope *e, const struct match *m)
{
	if (e->body_case != m->kind)
		return false;
	switch (e->body_case) {
	case FAB__ENVELOPE__BODY_PARTITION_STATUS:
		return (!m->name || !strcmp(e->partition_status->name, m->name)) &&
		       (!m->pstate || (int)e->partition_status->state == m->pstate);
	case FAB__ENVELOPE__BODY_VOLUME_STATUS:
		return (!m->name || !strcmp(e->volume_status->name, m->name)) &&
		       (!m->vstate || !strcmp(e->volume_status->state, m->vstate));
	case FAB__ENVELOPE__BODY_CONSOLE_OUTPUT:
		return !m->name || !strcmp(e->console_output->name, m->name);
	default:
		return true;
	}
}

/* Called while waiting (the fake stub of the fencing test pumps its loop). */
static void (*idle_hook)(void);

static void idle(void)
{
	if (idle_hook)
		idle_hook();
	else
		usleep(20000);
}

/* The first message of node at index *from or later that matches, waiting
 * up to ms; *from moves past it. NULL on timeout. */
static const Fab__Envelope *ctl_wait(const char *node, const struct match *m, size_t *from, int ms)
{
	int64_t until = fab_mono_ms() + ms;

	for (;;) {
		pthread_mutex_lock(&ctl.lock);
		for (size_t i = *from; i < ctl.nmsgs; i++)
			if (!strcmp(ctl.msgs[i].node, node) && matches(ctl.msgs[i].env, m)) {
				const Fab__Envelope *e = ctl.msgs[i].env;

				*from = i + 1;
				pthread_mutex_unlock(&ctl.lock);
				return e;
			}
		pthread_mutex_unlock(&ctl.lock);
		if (fab_mono_ms() > until)
			return NULL;
		idle();
	}
}

/* Waits for a partition status; fails the test with what came instead. */
static const Fab__PartitionStatus *want_status(const char *node, const char *name, int state,
					       size_t *from)
{
	struct match m = { FAB__ENVELOPE__BODY_PARTITION_STATUS, name, state, NULL };
	size_t at = *from;
	const Fab__Envelope *e = ctl_wait(node, &m, from, WAIT);

	if (!e) {
		struct match any = { FAB__ENVELOPE__BODY_PARTITION_STATUS, name, 0, NULL };

		while ((e = ctl_wait(node, &any, &at, 0)))
			fprintf(stderr, "  %s: partition %s state %d: %s\n", node,
				e->partition_status->name, e->partition_status->state,
				e->partition_status->reason);
		fail_msg("%s: no status %d for partition %s", node, state, name);
	}
	return e->partition_status;
}

static const Fab__VolumeStatus *want_volume(const char *node, const char *name, const char *state,
					    size_t *from)
{
	struct match m = { FAB__ENVELOPE__BODY_VOLUME_STATUS, name, 0, state };
	size_t at = *from;
	const Fab__Envelope *e = ctl_wait(node, &m, from, WAIT);

	if (!e) {
		struct match any = { FAB__ENVELOPE__BODY_VOLUME_STATUS, name, 0, NULL };

		while ((e = ctl_wait(node, &any, &at, 0)))
			fprintf(stderr, "  %s: volume %s %s: %s\n", node, e->volume_status->name,
				e->volume_status->state, e->volume_status->error);
		fail_msg("%s: no volume status '%s' for %s", node, state, name);
	}
	return e->volume_status;
}

/* True once the console output of partition name sent since from holds
 * needle (waits up to ms). */
static bool console_has(const char *node, const char *name, size_t from, const char *needle, int ms)
{
	int64_t until = fab_mono_ms() + ms;

	for (;;) {
		char *all = NULL;
		size_t len = 0;
		bool found;

		pthread_mutex_lock(&ctl.lock);
		for (size_t i = from; i < ctl.nmsgs; i++) {
			const Fab__Envelope *e = ctl.msgs[i].env;

			if (strcmp(ctl.msgs[i].node, node) ||
			    e->body_case != FAB__ENVELOPE__BODY_CONSOLE_OUTPUT ||
			    strcmp(e->console_output->name, name))
				continue;
			all = realloc(all, len + e->console_output->data.len + 1);
			memcpy(all + len, e->console_output->data.data,
			       e->console_output->data.len);
			len += e->console_output->data.len;
		}
		pthread_mutex_unlock(&ctl.lock);
		found = all && (all[len] = '\0', strstr(all, needle));
		if (!found && fab_mono_ms() > until)
			fprintf(stderr, "console of %s on %s:\n%s\n", name, node, all ? all : "");
		free(all);
		if (found)
			return true;
		if (fab_mono_ms() > until)
			return false;
		idle();
	}
}

/* ---- commands ------------------------------------------------------------------ */

static void create_volume(const char *node, const char *name, uint64_t size)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__CreateVolume m = FAB__CREATE_VOLUME__INIT;

	m.name = (char *)name;
	m.size_bytes = size;
	env.body_case = FAB__ENVELOPE__BODY_CREATE_VOLUME;
	env.create_volume = &m;
	ctl_send(node, &env);
}

static void volume_access(const char *node, const char *name, const char *who, uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeAccess m = FAB__VOLUME_ACCESS__INIT;

	m.name = (char *)name;
	m.node = (char *)who;
	m.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_VOLUME_ACCESS;
	env.volume_access = &m;
	ctl_send(node, &env);
}

struct run_args {
	const char *image;
	uint32_t vcpus;
	uint64_t memory;
	const char *args[16];
	Fab__DeviceBinding *devs[4];
};

static void run_partition(const char *node, const char *name, uint64_t epoch,
			  const struct run_args *a)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RunPartition m = FAB__RUN_PARTITION__INIT;

	m.name = (char *)name;
	m.epoch = epoch;
	m.image = (char *)a->image;
	m.vcpus = a->vcpus;
	m.memory_bytes = a->memory ? a->memory : 64 * MIB;
	m.args = (char **)a->args;
	while (m.n_args < 16 && a->args[m.n_args])
		m.n_args++;
	m.devices = (Fab__DeviceBinding **)a->devs;
	while (m.n_devices < 4 && a->devs[m.n_devices])
		m.n_devices++;
	env.body_case = FAB__ENVELOPE__BODY_RUN_PARTITION;
	env.run_partition = &m;
	ctl_send(node, &env);
}

static void stop_partition(const char *node, const char *name, uint64_t epoch, uint32_t ms)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__StopPartition m = FAB__STOP_PARTITION__INIT;

	m.name = (char *)name;
	m.epoch = epoch;
	m.timeout_ms = ms;
	env.body_case = FAB__ENVELOPE__BODY_STOP_PARTITION;
	env.stop_partition = &m;
	ctl_send(node, &env);
}

/* ---- nodes ---------------------------------------------------------------------- */

struct node {
	const char *name;
	char dir[128], vol[160], state[160], log[160];
	char data_addr[64];
	pid_t pid;
};

static struct node na = { .name = "node-a" }, nb = { .name = "node-b" }, ns = { .name = "node-s" };

static void node_paths(struct node *n)
{
	snprintf(n->dir, sizeof(n->dir), "%s/%s", dir, n->name);
	snprintf(n->vol, sizeof(n->vol), "%s/volumes", n->dir);
	snprintf(n->state, sizeof(n->state), "%s/state", n->dir);
	snprintf(n->log, sizeof(n->log), "%s/%s.log", dir, n->name);
	mkdir(n->dir, 0755);
}

/* Starts fabnode serve (vcpus NULL: the default; config NULL: none) and
 * waits until it has registered and sent its node report, which is
 * returned. */
static const Fab__NodeReport *node_start_cfg(struct node *n, const char *vcpus, const char *config)
{
	const char *argv[32] = { FABNODE,	 "serve",   "--name",	    n->name,
				 "--controller", ctl.addr,  "--pki",	    pki,
				 "--memory",	 "1G",	    "--data-addr",  "127.0.0.1:0",
				 "--transport",	 "tcp",	    "--volume-dir", n->vol,
				 "--image-dir",	 GUEST_DIR, "--state-dir",  n->state };
	int argc = 20;
	struct match reg = { .kind = FAB__ENVELOPE__BODY_REGISTER_NODE };
	struct match rep = { .kind = FAB__ENVELOPE__BODY_NODE_REPORT };
	size_t from = ctl_mark();
	const Fab__Envelope *e;

	if (vcpus) {
		argv[argc++] = "--vcpus";
		argv[argc++] = vcpus;
	}
	if (config) {
		argv[argc++] = "--config";
		argv[argc++] = config;
	}
	argv[argc] = NULL;
	n->pid = th_spawn(n->log, NULL, argv);
	e = ctl_wait(n->name, &reg, &from, WAIT);
	assert_non_null(e);
	snprintf(n->data_addr, sizeof(n->data_addr), "%s", e->register_node->data_addr);
	/* Port 0 was asked: the node tells the port it got. */
	assert_null(strstr(n->data_addr, ":0"));
	e = ctl_wait(n->name, &rep, &from, WAIT);
	assert_non_null(e);
	return e->node_report;
}

static const Fab__NodeReport *node_start(struct node *n, const char *vcpus)
{
	return node_start_cfg(n, vcpus, NULL);
}

static void dump(const char *path)
{
	char *s = th_slurp(path);

	if (s)
		fprintf(stderr, "----- %s -----\n%s", path, s);
	free(s);
}

static int ok; /* set at the end of each test; teardown dumps logs if not */

struct grep {
	const char *path, *needle;
};

static int grep_pred(void *arg)
{
	const struct grep *g = arg;

	return th_file_has(g->path, g->needle);
}

/* Waits up to ms for a line in a node's log. */
static int log_has(const char *path, const char *needle, int ms)
{
	struct grep g = { path, needle };

	return th_wait(grep_pred, &g, ms);
}
static int setup(void **state)
{
	ok = 0;
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	if (fab_pki_init_ca(pki, "test", 30) ||
	    fab_pki_issue(pki, FAB_ROLE_CONTROLLER, "controller", 30) ||
	    fab_pki_issue(pki, FAB_ROLE_NODE, "node-a", 30) ||
	    fab_pki_issue(pki, FAB_ROLE_NODE, "node-b", 30) ||
	    fab_pki_issue(pki, FAB_ROLE_NODE, "node-s", 30))
		return -1;
	node_paths(&na);
	node_paths(&nb);
	node_paths(&ns);
	ctl_start();
	return 0;
}

static int log_clean(const char *path)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:" };

	for (size_t i = 0; i < FAB_ARRAY_SIZE(marks); i++)
		if (th_file_has(path, marks[i]))
			return 0;
	return 1;
}

#define MP(x) FAB__MIGRATION_PHASE__MIGRATION_PHASE_##x

/* What the guest said on every node (teardown of a failed test). */
static void dump_console(void)
{
	pthread_mutex_lock(&ctl.lock);
	fprintf(stderr, "----- console of mp -----\n");
	for (size_t i = 0; i < ctl.nmsgs; i++) {
		const Fab__Envelope *e = ctl.msgs[i].env;

		if (e->body_case == FAB__ENVELOPE__BODY_CONSOLE_OUTPUT)
			fprintf(stderr, "[%s] %.*s", ctl.msgs[i].node,
				(int)e->console_output->data.len,
				(const char *)e->console_output->data.data);
		else if (e->body_case == FAB__ENVELOPE__BODY_MIGRATION_STATUS &&
			 e->migration_status->phase >= MP(STOPPED))
			fprintf(stderr, "[%s] -- migration %llu phase %d %s\n", ctl.msgs[i].node,
				(unsigned long long)e->migration_status->migration_id,
				e->migration_status->phase, e->migration_status->error);
	}
	pthread_mutex_unlock(&ctl.lock);
}

static int teardown(void **state)
{
	if (!ok && ctl.loop)
		dump_console();
	struct node *nodes[] = { &na, &nb, &ns };
	int rc = 0;

	for (size_t i = 0; i < FAB_ARRAY_SIZE(nodes); i++) {
		struct node *n = nodes[i];

		if (n->pid > 0) {
			int st = th_stop(n->pid);

			if (st) {
				fprintf(stderr, "%s exited with status %d on SIGTERM\n", n->name,
					st);
				ok = 0;
				rc = -1;
			}
		}
		n->pid = 0;
	}
	th_cleanup_processes();
	ctl_stop();
	for (size_t i = 0; i < FAB_ARRAY_SIZE(nodes); i++)
		if (!log_clean(nodes[i]->log)) {
			fprintf(stderr, "sanitizer report in %s\n", nodes[i]->log);
			ok = 0;
			rc = -1;
		}
	if (!ok)
		for (size_t i = 0; i < FAB_ARRAY_SIZE(nodes); i++)
			dump(nodes[i]->log);
	th_cleanup();
	return rc;
}

/* ---- migration messages ------------------------------------------------------------ */

#define RESUME	   FAB__MIGRATION_ACTION__MIGRATION_ACTION_RESUME
#define DROP	   FAB__MIGRATION_ACTION__MIGRATION_ACTION_DROP
#define MIG_WAIT   120000 /* ms: a whole migration in the test VM */
#define PART_MEM   (32 * MIB)
#define PERSIST_RE "reads verified"

static Fab__DeviceBinding disk;
/*
 * Of the next MigrateOut. The budget is 500 ms, not the default 50: the test
 * VM (TCG, nested KVM, other jobs on the machine) copies through TLS at
 * anywhere from 3 to 200 MiB/s, and the pages reported dirty in every
 * fetch (rings, SynIC) alone cost 80 pages a round: at the slow end that
 * is over 50 ms, and the migration fails, correctly, with "guest dirties
 * N MiB/s, link copies M MiB/s".
 */
static uint32_t budget_ms = 500, max_rounds = 30;
static bool throttle;

static void remote_disk(void)
{
	fab__device_binding__init(&disk);
	disk.device = "disk0";
	disk.volume = "mv";
	disk.node = "node-s";
	disk.address = ns.data_addr;
	disk.export = "mv";
	disk.timeout_ms = 10000;
}

static void migrate_in(struct node *n, uint64_t id, uint64_t epoch, const char *source)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrateIn m = FAB__MIGRATE_IN__INIT;
	Fab__DeviceBinding *devs[1] = { &disk };

	m.migration_id = id;
	m.name = "mp";
	m.epoch = epoch;
	m.vcpus = 1;
	m.memory_bytes = PART_MEM;
	m.devices = devs;
	m.n_devices = 1;
	m.source = (char *)source;
	m.image = "blockbench";
	env.body_case = FAB__ENVELOPE__BODY_MIGRATE_IN;
	env.migrate_in = &m;
	ctl_send(n->name, &env);
}

static void migrate_out(struct node *n, uint64_t id, uint64_t epoch, const struct node *to)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrateOut m = FAB__MIGRATE_OUT__INIT;
	Fab__DeviceBinding *devs[1] = { &disk };

	m.migration_id = id;
	m.name = "mp";
	m.epoch = epoch;
	m.target = (char *)to->name;
	m.target_address = (char *)to->data_addr;
	m.downtime_ms = budget_ms;
	m.max_rounds = max_rounds;
	m.throttle = throttle;
	m.devices = devs;
	m.n_devices = 1;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATE_OUT;
	env.migrate_out = &m;
	ctl_send(n->name, &env);
}

static void decide(const struct node *n, uint64_t id, int action, uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationDecision m = FAB__MIGRATION_DECISION__INIT;

	m.migration_id = id;
	m.name = "mp";
	m.action = action;
	m.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATION_DECISION;
	env.migration_decision = &m;
	ctl_send(n->name, &env);
}

/* The next MigrationStatus of migration id from node at *from or later
 * that is in phase (0: any) or carries an error; NULL after ms. */
static const Fab__MigrationStatus *mig_wait(const struct node *n, uint64_t id, int phase,
					    size_t *from, int ms)
{
	struct match m = { FAB__ENVELOPE__BODY_MIGRATION_STATUS, NULL, 0, NULL };
	int64_t until = fab_mono_ms() + ms;

	for (;;) {
		int left = (int)(until - fab_mono_ms());
		const Fab__Envelope *e = ctl_wait(n->name, &m, from, left > 0 ? left : 0);
		const Fab__MigrationStatus *s;

		if (!e)
			return NULL;
		s = e->migration_status;
		if (s->migration_id != id)
			continue;
		if (!phase || (int)s->phase == phase || s->error[0])
			return s;
	}
}

/* As mig_wait, failing the test unless phase came without an error. */
static const Fab__MigrationStatus *want_mig(const struct node *n, uint64_t id, int phase,
					    size_t *from, int ms)
{
	const Fab__MigrationStatus *s = mig_wait(n, id, phase, from, ms);

	if (!s)
		fail_msg("%s: no phase %d of migration %llu", n->name, phase,
			 (unsigned long long)id);
	if (s->error[0] || (int)s->phase != phase)
		fail_msg("%s: migration %llu: phase %d, error: %s", n->name, (unsigned long long)id,
			 s->phase, s->error);
	return s;
}

static double to_mib(uint64_t b)
{
	return (double)b / (double)MIB;
}

/* Prints the lines of a node's log that hold what and "migration <id>". */
static void log_lines(const char *path, const char *what, uint64_t id)
{
	char *all = th_slurp(path), *line, *save = NULL, tag[32];

	if (!all)
		return;
	snprintf(tag, sizeof(tag), "migration %llu", (unsigned long long)id);
	for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, what) && strstr(line, tag))
			fprintf(stderr, "    %s\n", line);
	free(all);
}

/* One migration of "mp", committed as the controller would. */
static void migrate(struct node *src, struct node *dst, uint64_t id, uint64_t epoch_from,
		    uint64_t epoch_to)
{
	const Fab__MigrationStatus *s, *t;
	const Fab__PartitionStatus *ps;
	size_t from = ctl_mark(), sfrom, tfrom, con;
	unsigned ncopy = 0;
	int64_t t0;

	migrate_in(dst, id, epoch_to, src->name);
	want_mig(dst, id, MP(PREPARE), &from, WAIT);
	sfrom = tfrom = from;
	t0 = fab_mono_ms();
	migrate_out(src, id, epoch_from, dst);
	{
		/* Progress while copying (about every 250 ms), then STOPPED. */
		size_t pfrom = sfrom;

		s = want_mig(src, id, MP(STOPPED), &sfrom, MIG_WAIT);
		for (const Fab__MigrationStatus *p;
		     (p = mig_wait(src, id, MP(COPY), &pfrom, 0)) && pfrom <= sfrom;)
			if ((int)p->phase == MP(COPY))
				ncopy++;
	}
	t = want_mig(dst, id, MP(STOPPED), &tfrom, MIG_WAIT);
	/* COMMIT: the volume follows, then the two decisions. */
	volume_access(ns.name, "mv", dst->name, epoch_to);
	con = ctl_mark();
	decide(dst, id, RESUME, epoch_to);
	decide(src, id, DROP, epoch_from);
	ps = want_status(dst->name, "mp", ST(RUNNING), &tfrom);
	assert_int_equal(ps->epoch, epoch_to);
	assert_true(ps->channels[0]->remote);
	t = want_mig(dst, id, MP(DONE), &tfrom, WAIT);
	fprintf(stderr,
		"  migration %llu %s -> %s: %u rounds, %.2f MiB sent (RAM %.0f MiB), link %.1f "
		"MiB/s, last estimate %.2f ms, source paused %.1f ms to READY; downtime %.1f ms; "
		"%lld ms in all; %u progress reports\n",
		(unsigned long long)id, src->name, dst->name, s->round, to_mib(s->bytes_sent),
		to_mib(s->ram_bytes), to_mib(s->link_bytes_per_s), (double)s->est_downtime_us / 1e3,
		(double)s->downtime_us / 1e3, (double)t->downtime_us / 1e3,
		(long long)(fab_mono_ms() - t0), ncopy);
	assert_true(t->downtime_us > 0);
	assert_true(ncopy >= 1);
	log_lines(src->log, "stopped and sent", id);
	log_lines(dst->log, "restored in", id);
	log_lines(dst->log, "running here after migration", id);
	want_mig(src, id, MP(DONE), &sfrom, WAIT);
	/* The guest goes on reading and verifying on its new node. */
	if (!console_has(dst->name, "mp", con, PERSIST_RE, 60000)) {
		th_signal(dst->pid, SIGUSR1); /* its channels' state, in its log */
		sleep(1);
		fail_msg("the guest does not go on after migration %llu", (unsigned long long)id);
	}
}

static void persist_start(struct node *n)
{
	struct run_args a = { .image = "blockbench",
			      .vcpus = 1,
			      .memory = PART_MEM,
			      .args = { "--mode", "persist", "--blocks", "256", "--bs", "4096",
					"--qd", "4" } };
	size_t from = ctl_mark();

	create_volume(ns.name, "mv", 16 * MIB);
	want_volume(ns.name, "mv", "ready", &from);
	volume_access(ns.name, "mv", n->name, 1);
	assert_true(log_has(ns.log, "volume mv: access for node node-a", WAIT));
	remote_disk();
	a.devs[0] = &disk;
	run_partition(n->name, "mp", 1, &a);
	want_status(n->name, "mp", ST(RUNNING), &from);
	assert_true(console_has(n->name, "mp", from, "persist: wrote 256 blocks", 60000));
}

/* The guest stops on request; every read it made was verified. */
static void persist_finish(struct node *n, uint64_t epoch)
{
	const Fab__PartitionStatus *ps;
	size_t from = ctl_mark();
	char *all = NULL;
	size_t len = 0;

	stop_partition(n->name, "mp", epoch, 30000);
	ps = want_status(n->name, "mp", ST(STOPPED), &from);
	if (ps->exit_status != 0 || ps->channels[0]->io_errors)
		fail_msg("mp stopped with status %d, %llu I/O errors: %s", ps->exit_status,
			 (unsigned long long)ps->channels[0]->io_errors, ps->reason);
	/* Everything the guest said, on every node it ran on. */
	pthread_mutex_lock(&ctl.lock);
	for (size_t i = 0; i < ctl.nmsgs; i++) {
		const Fab__Envelope *e = ctl.msgs[i].env;

		if (e->body_case != FAB__ENVELOPE__BODY_CONSOLE_OUTPUT ||
		    strcmp(e->console_output->name, "mp"))
			continue;
		all = realloc(all, len + e->console_output->data.len + 1);
		memcpy(all + len, e->console_output->data.data, e->console_output->data.len);
		len += e->console_output->data.len;
	}
	pthread_mutex_unlock(&ctl.lock);
	assert_non_null(all);
	all[len] = '\0';
	{
		const char *last = NULL, *p = all;

		while ((p = strstr(p, PERSIST_RE)))
			last = p++;
		if (strstr(all, "MISMATCH") || strstr(all, "FAILED") || !last ||
		    strncmp(last, PERSIST_RE ", 0 errors", strlen(PERSIST_RE ", 0 errors")))
			fail_msg("the guest's console:\n%s", all);
		while (last > all && last[-1] != '\n')
			last--;
		fprintf(stderr, "  guest: %.*s\n", (int)strcspn(last, "\n"), last);
	}
	free(all);
}

/* node-a -> node-b -> node-a -> node-b under a guest verifying its
 * remote disk all along. */
static void test_migrate_remote_disk(void **state)
{
	node_start(&ns, NULL);
	node_start(&na, NULL);
	node_start(&nb, NULL);
	persist_start(&na);
	migrate(&na, &nb, 101, 1, 2);
	migrate(&nb, &na, 102, 2, 3);
	migrate(&na, &nb, 103, 3, 4);
	migrate(&nb, &na, 104, 4, 5);
	{
		/* A resent decision gets the same answer. */
		size_t from = ctl_mark();

		decide(&na, 104, RESUME, 5);
		want_mig(&na, 104, MP(DONE), &from, WAIT);
		decide(&nb, 104, DROP, 4);
		want_mig(&nb, 104, MP(DONE), &from, WAIT);
	}
	persist_finish(&na, 5);
	ok = 1;
}

/* The target goes away: before the source stopped, and after (then the
 * controller aborts: RESUME to the source). The partition runs on, and a
 * later migration works. Stray decisions change nothing. */
static void test_migrate_target_killed(void **state)
{
	const Fab__MigrationStatus *s;
	size_t from, con;

	node_start(&ns, NULL);
	node_start(&na, NULL);
	node_start(&nb, NULL);
	persist_start(&na);

	/* 1: node-b frozen once it expects the stream, killed while node-a
	 * is at it. */
	from = ctl_mark();
	migrate_in(&nb, 201, 2, "node-a");
	want_mig(&nb, 201, MP(PREPARE), &from, WAIT);
	th_signal(nb.pid, SIGSTOP);
	migrate_out(&na, 201, 1, &nb);
	assert_true(log_has(na.log, "migration 201: copying partition mp", WAIT));
	sleep(1);
	th_signal(nb.pid, SIGKILL);
	th_wait_exit(nb.pid, 10);
	nb.pid = 0;
	s = mig_wait(&na, 201, MP(STOPPED), &from, MIG_WAIT);
	assert_non_null(s);
	fprintf(stderr, "  target killed during the copy: source says: %s\n", s->error);
	assert_true(s->error[0]);
	con = ctl_mark();
	assert_true(console_has("node-a", "mp", con, PERSIST_RE, 30000));
	/* A DROP for a source that never stopped would lose the partition:
	 * refused, nothing changes. */
	from = ctl_mark();
	decide(&na, 201, DROP, 1);
	s = mig_wait(&na, 201, 0, &from, WAIT);
	assert_non_null(s);
	assert_int_not_equal(s->phase, MP(DONE));
	assert_int_not_equal(s->phase, MP(ABORTED));
	assert_true(log_has(na.log, "DROP before the partition was stopped", WAIT));
	con = ctl_mark();
	assert_true(console_has("node-a", "mp", con, PERSIST_RE, 30000));
	from = ctl_mark();
	decide(&na, 201, RESUME, 1);
	s = mig_wait(&na, 201, MP(ABORTED), &from, WAIT);
	assert_non_null(s);
	assert_int_equal(s->phase, MP(ABORTED));
	want_status("node-a", "mp", ST(RUNNING), &from);

	/* Stray decisions: an unknown id, either action; changes nothing. */
	from = ctl_mark();
	decide(&na, 999, DROP, 1);
	s = mig_wait(&na, 999, 0, &from, WAIT);
	assert_non_null(s);
	assert_int_equal(s->phase, MP(ABORTED));
	decide(&na, 998, RESUME, 1);
	s = mig_wait(&na, 998, 0, &from, WAIT);
	assert_non_null(s);
	assert_int_equal(s->phase, MP(DONE)); /* it does run here under epoch 1 */
	con = ctl_mark();
	assert_true(console_has("node-a", "mp", con, PERSIST_RE, 30000));

	/* 2: node-b back (a new process, a new port); the copy completes,
	 * then node-b dies before the decision: the controller aborts. */
	node_start(&nb, NULL);
	from = ctl_mark();
	migrate_in(&nb, 202, 2, "node-a");
	want_mig(&nb, 202, MP(PREPARE), &from, WAIT);
	{
		size_t sfrom = from;

		migrate_out(&na, 202, 1, &nb);
		want_mig(&na, 202, MP(STOPPED), &sfrom, MIG_WAIT);
		/* A DROP of the target's copy that never ran, and a RESUME
		 * for the source: the abort. */
		th_signal(nb.pid, SIGKILL);
		th_wait_exit(nb.pid, 10);
		nb.pid = 0;
		decide(&na, 202, RESUME, 1);
		s = mig_wait(&na, 202, MP(ABORTED), &sfrom, WAIT);
		assert_non_null(s);
		assert_int_equal(s->phase, MP(ABORTED));
	}
	con = ctl_mark();
	assert_true(console_has("node-a", "mp", con, PERSIST_RE, 30000));

	/* 3: and a migration that works, to a node-b started again, with a
	 * budget (1 ms) below what the pages every fetch reports dirty (the
	 * rings, about 80 pages) can cost, and throttle: it stops after
	 * max_rounds (3) anyway. (Whether the vCPUs get throttled depends on
	 * the link rate measured: under ASan in the test VM, sending 80 pages
	 * can take as long as the guest takes to dirty them again.) */
	node_start(&nb, NULL);
	budget_ms = 1;
	max_rounds = 3;
	throttle = true;
	migrate(&na, &nb, 203, 1, 2);
	budget_ms = 500;
	max_rounds = 30;
	throttle = false;
	assert_true(log_has(na.log, "3 rounds done; stopping with an estimated pause", WAIT));
	persist_finish(&nb, 2);
	ok = 1;
}

/* ---- a stream the test sends itself (the wire format of migrate.h) ------------- */

struct t_hello {
	uint16_t type, version;
	uint32_t reserved;
	uint64_t id, ram_bytes;
	uint32_t vcpus, reserved2;
	char name[64];
} __attribute__((packed));

struct t_status {
	uint16_t type, version;
	uint32_t reserved;
	int32_t status;
	char why[200];
} __attribute__((packed));

struct t_pages {
	uint16_t type, version;
	uint32_t reserved;
	uint32_t count, crc;
	uint64_t gpa;
	uint8_t page[4096];
} __attribute__((packed));

static struct {
	struct ev_loop *loop;
	struct xport *x;
	struct xport_conn *c;
	bool up, closed;
	struct t_status last;
	int got;
} ts;

static void t_connected(struct xport_conn *c, void *arg)
{
	ts.up = true;
}

static void t_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	if (len == sizeof(ts.last)) {
		memcpy(&ts.last, msg, len);
		ts.last.why[sizeof(ts.last.why) - 1] = '\0';
		ts.got++;
	}
}

static void t_closed(struct xport_conn *c, int err, void *arg)
{
	ts.closed = true;
	ts.c = NULL;
}

static const struct xport_conn_cbs t_cbs = { .connected_cb = t_connected,
					     .recv_cb = t_recv,
					     .closed_cb = t_closed };

/* Runs the test's loop until *flag or ms passed. */
static bool pump(bool *flag, int ms)
{
	int64_t until = fab_mono_ms() + ms;

	while (!*flag && fab_mono_ms() < until)
		ev_run(ts.loop, EVRUN_ONCE | EVRUN_NOWAIT), usleep(2000);
	return *flag;
}

/* Connects to n's data address as node me and says HELLO for id. */
static void t_open(const char *me, const struct node *n, uint64_t id)
{
	struct xport_cfg xc = { .pki_dir = pki, .node_name = me };
	struct t_hello h = { .type = 0x4d01, .version = 1, .id = id, .ram_bytes = PART_MEM };
	struct iovec iov = { &h, sizeof(h) };

	snprintf(h.name, sizeof(h.name), "mp");
	memset(&ts, 0, sizeof(ts));
	ts.loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(xport_tcp_register(), 0);
	assert_int_equal(xport_create("tcp", ts.loop, &xc, &ts.x), 0);
	assert_int_equal(xport_connect(ts.x, n->data_addr, n->name, &t_cbs, NULL, &ts.c), 0);
	assert_true(pump(&ts.up, WAIT));
	assert_int_equal(xport_sendv(ts.c, &iov, 1), 0);
}

static void t_close(void)
{
	if (ts.c)
		xport_close(ts.c);
	ev_run(ts.loop, EVRUN_NOWAIT);
	xport_destroy(ts.x);
	ev_run(ts.loop, EVRUN_NOWAIT);
	ev_loop_destroy(ts.loop);
	memset(&ts, 0, sizeof(ts));
}

/* The target's checks: only the node MigrateIn names may send the stream,
 * and a page batch whose CRC32C does not match fails the migration with
 * that reason; the controller's DROP then forgets it. */
static void test_migrate_bad_stream(void **state)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrateIn m = FAB__MIGRATE_IN__INIT;
	const Fab__MigrationStatus *s;
	struct t_pages pg = { .type = 0x4d03, .version = 1, .count = 1, .gpa = 1 << 20 };
	struct iovec iov = { &pg, sizeof(pg) };
	size_t from;

	node_start(&nb, NULL);
	from = ctl_mark();
	m.migration_id = 301;
	m.name = "mp";
	m.epoch = 2;
	m.vcpus = 1;
	m.memory_bytes = PART_MEM;
	m.source = "node-a";
	m.image = "blockbench";
	env.body_case = FAB__ENVELOPE__BODY_MIGRATE_IN;
	env.migrate_in = &m;
	ctl_send(nb.name, &env);
	want_mig(&nb, 301, MP(PREPARE), &from, WAIT);

	/* node-s is not the source. */
	t_open("node-s", &nb, 301);
	assert_true(pump(&ts.closed, WAIT));
	t_close();
	assert_true(log_has(nb.log, "comes from node node-a, not from node node-s", WAIT));

	/* node-a is; its batch is corrupt. */
	t_open("node-a", &nb, 301);
	{
		int64_t until = fab_mono_ms() + WAIT;

		while (!ts.got && !ts.closed && fab_mono_ms() < until) {
			ev_run(ts.loop, EVRUN_NOWAIT);
			usleep(2000);
		}
	}
	assert_int_equal(ts.got, 1);
	assert_int_equal(ts.last.type, 0x4d02); /* ACCEPT */
	memset(pg.page, 0x5a, sizeof(pg.page));
	pg.crc = 0x12345678; /* not the CRC32C of the GPA and page */
	assert_int_equal(xport_sendv(ts.c, &iov, 1), 0);
	assert_true(pump(&ts.closed, WAIT));
	fprintf(stderr, "  corrupt batch: the target answered type %#x: %s\n", ts.last.type,
		ts.last.why);
	assert_int_equal(ts.last.type, 0x4d07);
	assert_non_null(strstr(ts.last.why, "checksum mismatch"));
	t_close();
	s = mig_wait(&nb, 301, MP(STOPPED), &from, WAIT);
	assert_non_null(s);
	assert_non_null(strstr(s->error, "checksum mismatch"));
	{
		/* The controller comes back: the node's report lists the
		 * undecided migration, and no partition for its shell. */
		struct match rep = { .kind = FAB__ENVELOPE__BODY_NODE_REPORT };
		const Fab__Envelope *e;

		ctl.kick = true;
		ev_async_send(ctl.loop, &ctl.wake);
		e = ctl_wait(nb.name, &rep, &from, WAIT);
		assert_non_null(e);
		assert_int_equal(e->node_report->n_partitions, 0);
		assert_int_equal(e->node_report->n_migrations, 1);
		assert_int_equal(e->node_report->migrations[0]->migration_id, 301);
		assert_string_equal(e->node_report->migrations[0]->role, "target");
		assert_non_null(strstr(e->node_report->migrations[0]->error, "checksum"));
	}
	decide(&nb, 301, DROP, 2);
	s = mig_wait(&nb, 301, MP(ABORTED), &from, WAIT);
	assert_non_null(s);
	assert_int_equal(s->phase, MP(ABORTED));
	ok = 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate_remote_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_target_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_bad_stream, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	if (th_kvm_missing("live migration between nodes"))
		return 77;
	if (argc == 2)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("live migration between nodes", tests, NULL, NULL);
}
