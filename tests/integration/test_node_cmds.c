// SPDX-License-Identifier: MIT
/*
 * fabnode serve under the controller's commands (proto/fabric.proto): this
 * test is the controller. It listens with the controller's certificate,
 * answers RegisterNode and heartbeats, sends commands to real fabnode
 * processes on loopback and checks what they report.
 *
 *   test_node_cmds volumes      volumes, fencing (the test also plays a
 *                               third node binding the exports), refused
 *                               RunPartitions, restarts: no KVM needed
 *   test_node_cmds partitions   partitions on KVM: running, console, stops,
 *                               local and remote disks, fencing a running
 *                               guest's remote disk. Exits 77 (skipped)
 *                               loudly without /dev/kvm.
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
#include "fab/rvmbus_link.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "fab/xport.h"
#include "harness.h"
#include "proto/fabric.pb-c.h"
#include "remote_int.h"

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

static void delete_volume(const char *node, const char *name)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__DeleteVolume m = FAB__DELETE_VOLUME__INIT;

	m.name = (char *)name;
	env.body_case = FAB__ENVELOPE__BODY_DELETE_VOLUME;
	env.delete_volume = &m;
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

static void delete_partition(const char *node, const char *name, uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__DeletePartition m = FAB__DELETE_PARTITION__INIT;

	m.name = (char *)name;
	m.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_DELETE_PARTITION;
	env.delete_partition = &m;
	ctl_send(node, &env);
}

static void local_disk(Fab__DeviceBinding *b, const char *device, const char *volume,
		       const char *path)
{
	fab__device_binding__init(b);
	b->device = (char *)device;
	b->volume = (char *)volume;
	b->path = (char *)path;
}

/* ---- nodes ---------------------------------------------------------------------- */

struct node {
	const char *name;
	char dir[128], vol[160], state[160], log[160];
	char data_addr[64];
	pid_t pid;
};

static struct node na = { .name = "node-a" }, nb = { .name = "node-b" };

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

static void node_stop(struct node *n)
{
	if (n->pid > 0)
		assert_int_equal(th_stop(n->pid), 0);
	n->pid = 0;
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
	    fab_pki_issue(pki, FAB_ROLE_NODE, "node-c", 30))
		return -1;
	node_paths(&na);
	node_paths(&nb);
	ctl_start();
	return 0;
}

/* Sanitizer reports in a node's log fail the test. */
static int log_clean(const char *path)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:" };

	for (size_t i = 0; i < FAB_ARRAY_SIZE(marks); i++)
		if (th_file_has(path, marks[i]))
			return 0;
	return 1;
}

static int teardown(void **state)
{
	int rc = 0;

	idle_hook = NULL;
	/* A node must stop cleanly (exit 0) on SIGTERM: a crash on the way
	 * out (a double free, ...) fails the test. */
	for (struct node *n = &na; n; n = n == &na ? &nb : NULL) {
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
	if (!log_clean(na.log) || !log_clean(nb.log)) {
		fprintf(stderr, "sanitizer report in a node's log\n");
		ok = 0;
		rc = -1;
	}
	if (!ok) {
		dump(na.log);
		dump(nb.log);
	}
	th_cleanup();
	return rc;
}

static off_t file_size(const char *path, mode_t *mode)
{
	struct stat st;

	if (stat(path, &st))
		return -1;
	if (mode)
		*mode = st.st_mode & 07777;
	return st.st_size;
}

/* ---- without KVM ------------------------------------------------------------------ */

/* CreateVolume makes a sparse file, idempotently; bad requests fail with a
 * reason; DeleteVolume removes it, idempotently. */
static void test_volume_lifecycle(void **state)
{
	const Fab__NodeReport *rep = node_start(&na, NULL);
	const Fab__VolumeStatus *v;
	char path[256];
	size_t from = ctl_mark();
	mode_t mode;

	assert_int_equal(rep->n_volumes, 0);
	assert_int_equal(rep->n_partitions, 0);
	create_volume("node-a", "v1", 8 * MIB);
	v = want_volume("node-a", "v1", NULL, &from);
	assert_string_equal(v->state, "ready");
	assert_int_equal(v->size_bytes, 8 * MIB);
	snprintf(path, sizeof(path), "%s/v1.img", na.vol);
	assert_string_equal(v->path, path);
	assert_int_equal(file_size(path, &mode), 8 * MIB);
	assert_int_equal(mode, 0600);

	/* A resend gets the same answer. */
	create_volume("node-a", "v1", 8 * MIB);
	assert_string_equal(want_volume("node-a", "v1", NULL, &from)->state, "ready");
	/* The same name with another size is a conflict, not a resize. */
	create_volume("node-a", "v1", 16 * MIB);
	v = want_volume("node-a", "v1", NULL, &from);
	assert_string_equal(v->state, "failed");
	assert_non_null(strstr(v->error, "another size"));
	assert_int_equal(file_size(path, NULL), 8 * MIB);

	create_volume("node-a", "odd", MIB + 100);
	assert_non_null(strstr(want_volume("node-a", "odd", "failed", &from)->error, "512"));
	create_volume("node-a", "tiny", 4096);
	assert_non_null(strstr(want_volume("node-a", "tiny", "failed", &from)->error, "1 MiB"));
	create_volume("node-a", "../x", 8 * MIB);
	assert_non_null(strstr(want_volume("node-a", "../x", "failed", &from)->error, "invalid"));
	/* More than the file system holds. */
	create_volume("node-a", "huge", 1ull << 49);
	assert_non_null(strstr(want_volume("node-a", "huge", "failed", &from)->error, "free"));
	snprintf(path, sizeof(path), "%s/huge.img", na.vol);
	assert_int_equal(file_size(path, NULL), -1);
	snprintf(path, sizeof(path), "%s/v1.img", na.vol);

	delete_volume("node-a", "v1");
	want_volume("node-a", "v1", "deleted", &from);
	assert_int_equal(file_size(path, NULL), -1);
	delete_volume("node-a", "v1");
	want_volume("node-a", "v1", "deleted", &from);
	ok = 1;
}

/* Commands a node must refuse, with a reason, and keep going. */
static void test_run_refused(void **state)
{
	struct run_args a = { .image = "hello", .vcpus = 1 };
	Fab__DeviceBinding outside, *b = &outside;
	const Fab__PartitionStatus *st;
	char other[256];
	size_t from, stale;

	node_start(&na, NULL);
	from = ctl_mark();
	a.image = "../hello.elf";
	run_partition("node-a", "p1", 1, &a);
	st = want_status("node-a", "p1", ST(FAILED), &from);
	assert_non_null(strstr(st->reason, "image name"));

	a.image = ".hidden";
	run_partition("node-a", "p1", 2, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason, "image"));

	a.image = "no-such-image";
	run_partition("node-a", "p1", 3, &a);
	assert_non_null(
		strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason, "No such file"));

	a.image = "hello";
	a.vcpus = 0;
	run_partition("node-a", "p1", 4, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason, "vcpus"));

	a.vcpus = 1;
	a.memory = 3 * MIB;
	run_partition("node-a", "p1", 5, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason, "memory"));
	a.memory = 0;

	/* A "local" disk outside volume_dir. */
	create_volume("node-a", "in", 2 * MIB);
	want_volume("node-a", "in", "ready", &from);
	snprintf(other, sizeof(other), "%s/elsewhere.img", dir);
	close(open(other, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(truncate(other, (off_t)MIB), 0);
	local_disk(&outside, "disk0", "x", other);
	a.devs[0] = b;
	run_partition("node-a", "p1", 6, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason,
			       "not a volume of this node"));
	/* ... also through .. from inside it. */
	snprintf(other, sizeof(other), "%s/../../elsewhere.img", na.vol);
	run_partition("node-a", "p1", 7, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason,
			       "not a volume of this node"));
	a.devs[0] = NULL;

	run_partition("node-a", "Bad Name", 1, &a);
	assert_non_null(strstr(want_status("node-a", "Bad Name", ST(FAILED), &from)->reason,
			       "invalid partition name"));
	/* A resend of a failed epoch repeats the answer; an older epoch is
	 * stale and ignored. */
	run_partition("node-a", "p1", 7, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason,
			       "not a volume of this node"));
	stale = ctl_mark();
	run_partition("node-a", "p1", 2, &a);

	/* Without KVM a good request (a volume of this node as its disk)
	 * fails where KVM is needed, with why. */
	if (access("/dev/kvm", R_OK | W_OK)) {
		snprintf(other, sizeof(other), "%s/in.img", na.vol);
		a.devs[0] = b;
		run_partition("node-a", "p2", 1, &a);
		a.devs[0] = NULL;
		st = want_status("node-a", "p2", ST(FAILED), &from);
		fprintf(stderr, "  no KVM here: RunPartition fails with '%s'\n", st->reason);
		assert_non_null(strstr(st->reason, "VM"));
	}
	/* The node still works. */
	create_volume("node-a", "after", 2 * MIB);
	want_volume("node-a", "after", "ready", &from);
	{
		struct match m = { FAB__ENVELOPE__BODY_PARTITION_STATUS, "p1", 0, NULL };

		/* Nothing answered the stale epoch 2. */
		assert_null(ctl_wait("node-a", &m, &stale, 0));
	}
	ok = 1;
}

/* Volumes outlive the node process; a storage-only node refuses to run
 * partitions. */
static void test_restart_keeps_volumes(void **state)
{
	const Fab__NodeReport *rep;
	size_t from;
	struct run_args a = { .image = "hello", .vcpus = 1 };
	char path[256];

	node_start(&na, NULL);
	from = ctl_mark();
	create_volume("node-a", "keep", 4 * MIB);
	want_volume("node-a", "keep", "ready", &from);
	node_stop(&na);
	rep = node_start(&na, "0");
	assert_int_equal(rep->n_volumes, 1);
	snprintf(path, sizeof(path), "%s/keep.img", na.vol);
	assert_string_equal(rep->volumes[0]->name, "keep");
	assert_string_equal(rep->volumes[0]->state, "ready");
	assert_int_equal(rep->volumes[0]->size_bytes, 4 * MIB);
	assert_string_equal(rep->volumes[0]->path, path);
	from = ctl_mark();
	run_partition("node-a", "p1", 1, &a);
	assert_non_null(strstr(want_status("node-a", "p1", ST(FAILED), &from)->reason,
			       "node offers no vCPUs"));
	ok = 1;
}

/* The test as a third node (node-c) binding node-b's export, with rvmbus
 * messages as a stub sends them. */
static struct fake_stub {
	struct ev_loop *loop;
	struct xport *x;
	struct rvl *l;
	void *ram;
	struct xport_mr *mr;
	int n;		   /* BIND_OKs received */
	int32_t status[8]; /* their statuses */
} fs;

static void fs_deliver(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg)
{
	struct rch_bind_ok r;

	if (type != RCH_T_BIND_OK || len != sizeof(r) || fs.n == 8)
		return;
	memcpy(&r, body, sizeof(r));
	fs.status[fs.n++] = r.status;
}

static const struct rvl_ops fs_ops = { .deliver_cb = fs_deliver };

static void fs_pump(void)
{
	int64_t until = fab_mono_ms() + 20;

	while (fab_mono_ms() < until)
		ev_run(fs.loop, EVRUN_ONCE | EVRUN_NOWAIT);
	usleep(2000);
}

static void fs_start(const char *addr)
{
	struct xport_cfg xc = { .pki_dir = pki, .node_name = "node-c" };

	fs.loop = ev_loop_new(EVFLAG_AUTO);
	assert_int_equal(xport_tcp_register(), 0);
	assert_int_equal(xport_create("tcp", fs.loop, &xc, &fs.x), 0);
	fs.ram = aligned_alloc(4096, MIB);
	assert_int_equal(xport_reg_mr(fs.x, fs.ram, MIB,
				      XPORT_ACCESS_REMOTE_READ | XPORT_ACCESS_REMOTE_WRITE |
					      XPORT_ACCESS_LOCAL_WRITE,
				      &fs.mr),
			 0);
	assert_int_equal(
		rvl_client_start(fs.loop, fs.x, addr, "node-b", NULL, &fs_ops, NULL, &fs.l), 0);
	idle_hook = fs_pump;
}

static void fs_stop(void)
{
	idle_hook = NULL;
	rvl_stop(fs.l);
	xport_dereg_mr(fs.mr);
	xport_destroy(fs.x);
	ev_run(fs.loop, EVRUN_NOWAIT);
	ev_loop_destroy(fs.loop);
	free(fs.ram);
	memset(&fs, 0, sizeof(fs));
}

static void fs_bind(uint32_t chan, const char *export_name)
{
	struct rch_bind b = { .chan = chan, .type = 0 /* storage */ };
	const struct xport_key *k = xport_mr_key(fs.mr);

	b.ram_key_id = k->id;
	b.ram_len = k->length;
	b.ram_key_addr = k->addr;
	snprintf(b.partition, sizeof(b.partition), "web9");
	snprintf(b.device, sizeof(b.device), "disk0");
	snprintf(b.export_name, sizeof(b.export_name), "%s", export_name);
	assert_int_equal(rvl_send(fs.l, RCH_T_BIND, &b, sizeof(b)), 0);
}

/* Waits for the n-th BIND_OK; returns its status. */
static int32_t fs_wait(int n)
{
	int64_t until = fab_mono_ms() + WAIT;

	while (fs.n < n && fab_mono_ms() < until)
		fs_pump();
	assert_true(fs.n >= n);
	return fs.status[n - 1];
}

/* A dynamically created volume is fenced: nobody may bind it until the
 * controller grants access, then only the node granted; granting another
 * node closes the first one's channel; a bound volume cannot be deleted. */
static void test_volume_fencing(void **state)
{
	size_t from;
	const Fab__VolumeStatus *v;
	char conf[256], text[512], img[256];

	/* An export of the config file: anyone in the cluster, as before. */
	snprintf(img, sizeof(img), "%s/static.img", dir);
	close(open(img, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(truncate(img, (off_t)MIB), 0);
	snprintf(conf, sizeof(conf), "%s/node-b.conf", dir);
	snprintf(text, sizeof(text),
		 "name = node-b\ndata_listen = 127.0.0.1:0\n[export static]\npath = %s\n", img);
	{
		FILE *f = fopen(conf, "w");

		assert_non_null(f);
		fputs(text, f);
		fclose(f);
	}
	node_start_cfg(&nb, NULL, conf);
	from = ctl_mark();
	create_volume("node-b", "shared", 4 * MIB);
	want_volume("node-b", "shared", "ready", &from);
	fs_start(nb.data_addr);

	fs_bind(1, "shared");
	assert_int_equal(fs_wait(1), -EACCES);
	assert_true(th_file_has(nb.log, "may not bind export shared: no node has been granted"));

	volume_access("node-b", "shared", "node-a", 1);
	assert_true(log_has(nb.log, "volume shared: access for node node-a", WAIT));
	fs_bind(2, "shared");
	assert_int_equal(fs_wait(2), -EACCES);
	assert_true(th_file_has(nb.log, "granted it to node node-a only"));

	volume_access("node-b", "shared", "node-c", 2);
	assert_true(log_has(nb.log, "volume shared: access for node node-c", WAIT));
	fs_bind(3, "shared");
	assert_int_equal(fs_wait(3), 0);

	/* Bound: DeleteVolume says by whom. */
	delete_volume("node-b", "shared");
	v = want_volume("node-b", "shared", "failed", &from);
	assert_non_null(strstr(v->error, "in use by"));
	assert_non_null(strstr(v->error, "node-c"));

	/* The controller moves the volume to node-a: our channel is closed
	 * and we are told (BIND_OK with -EACCES on channel 3). */
	volume_access("node-b", "shared", "node-a", 3);
	assert_int_equal(fs_wait(4), -EACCES);
	assert_true(th_file_has(nb.log, "access to export shared now belongs to node-a"));

	delete_volume("node-b", "shared");
	want_volume("node-b", "shared", "deleted", &from);
	/* Now the export is gone altogether. */
	fs_bind(4, "shared");
	assert_int_equal(fs_wait(5), -ENOENT);

	/* The configured export needs no grant, and takes none. */
	fs_bind(5, "static");
	assert_int_equal(fs_wait(6), 0);
	volume_access("node-b", "static", "node-a", 4);
	assert_true(log_has(nb.log, "a configured export, not fenced", WAIT));
	fs_bind(6, "static"); /* a second writer is still refused */
	assert_int_equal(fs_wait(7), -EBUSY);
	fs_stop();
	ok = 1;
}

/* ---- with KVM ------------------------------------------------------------------ */

static Fab__DeviceBinding *vol_disk(Fab__DeviceBinding *b, const struct node *n, const char *device,
				    const char *volume)
{
	static char paths[4][256];
	static int k;
	char *p = paths[k++ % 4];

	snprintf(p, 256, "%s/%s.img", n->vol, volume);
	local_disk(b, device, volume, p);
	return b;
}

/* blockbench on a local volume: RUNNING, console, EXITED 0; a resend
 * changes nothing. */
static void test_run_local_disk(void **state)
{
	Fab__DeviceBinding d0;
	struct run_args a = { .image = "blockbench",
			      .vcpus = 1,
			      .args = { "--mode", "write-then-verify", "--bs", "4096", "--qd", "8",
					"--blocks", "512" } };
	const Fab__PartitionStatus *st;
	const Fab__NodeReport *rep;
	size_t from, start;
	char path[256];
	int64_t t0;

	node_start(&na, NULL);
	from = ctl_mark();
	create_volume("node-a", "data", 16 * MIB);
	want_volume("node-a", "data", "ready", &from);
	a.devs[0] = vol_disk(&d0, &na, "disk0", "data");
	start = ctl_mark();
	t0 = fab_mono_ms();
	run_partition("node-a", "bb1", 1, &a);
	st = want_status("node-a", "bb1", ST(RUNNING), &from);
	assert_int_equal(st->epoch, 1);
	assert_int_equal(st->n_channels, 1);
	assert_string_equal(st->channels[0]->device, "disk0");
	assert_string_equal(st->channels[0]->volume, "data");
	assert_string_equal(st->channels[0]->transport, "local");
	assert_string_equal(st->channels[0]->vsp_node, "node-a");
	assert_string_equal(st->channels[0]->health, "ok");
	assert_false(st->channels[0]->remote);
	st = want_status("node-a", "bb1", ST(EXITED), &from);
	assert_int_equal(st->exit_status, 0);
	fprintf(stderr, "  blockbench on a local volume: RUNNING -> EXITED in %lld ms\n",
		(long long)(fab_mono_ms() - t0));
	assert_true(console_has("node-a", "bb1", start, "blockbench: OK", WAIT));
	snprintf(path, sizeof(path), "%s/console/bb1.log", na.state);
	assert_true(th_file_has(path, "blockbench: OK"));

	/* Resent after a controller restart: the same answer, no new run. */
	run_partition("node-a", "bb1", 1, &a);
	st = want_status("node-a", "bb1", 0, &from);
	assert_int_equal(st->state, ST(EXITED));
	sleep(1);
	{
		struct match m = { FAB__ENVELOPE__BODY_PARTITION_STATUS, "bb1", ST(RUNNING), NULL };

		assert_null(ctl_wait("node-a", &m, &from, 0));
	}
	/* The record stays for the next report... */
	node_stop(&na);
	rep = node_start(&na, NULL);
	/* ... of this process only: a restarted node holds no partitions. */
	assert_int_equal(rep->n_partitions, 0);
	assert_int_equal(rep->n_volumes, 1);
	ok = 1;
}

/* A guest that answers the shutdown IC stops gracefully; one that has not
 * opened it is stopped at once; the volume a running guest uses cannot be
 * deleted. */
static void test_stop_partitions(void **state)
{
	Fab__DeviceBinding d0;
	struct run_args a = { .image = "icwait", .vcpus = 1 };
	struct run_args w = { .image = "waiter", .vcpus = 1, .args = { "1000000" } };
	const Fab__PartitionStatus *st;
	const Fab__VolumeStatus *v;
	const Fab__NodeReport *rep;
	size_t from, start;

	node_start(&na, NULL);
	from = ctl_mark();
	create_volume("node-a", "vol", 4 * MIB);
	want_volume("node-a", "vol", "ready", &from);
	a.devs[0] = vol_disk(&d0, &na, "disk0", "vol");
	start = ctl_mark();
	run_partition("node-a", "ic", 7, &a);
	want_status("node-a", "ic", ST(RUNNING), &from);
	assert_true(console_has("node-a", "ic", start, "icwait: ready", WAIT));

	delete_volume("node-a", "vol");
	v = want_volume("node-a", "vol", "failed", &from);
	assert_non_null(strstr(v->error, "in use by partition ic"));

	/* The wrong epoch is ignored. */
	stop_partition("node-a", "ic", 6, 5000);
	stop_partition("node-a", "ic", 7, 5000);
	st = want_status("node-a", "ic", ST(STOPPING), &from);
	assert_int_equal(st->epoch, 7);
	st = want_status("node-a", "ic", ST(STOPPED), &from);
	assert_non_null(strstr(st->reason, "gracefully"));
	assert_int_equal(st->exit_status, 0);
	assert_true(console_has("node-a", "ic", start, "icwait: shutdown", WAIT));
	delete_volume("node-a", "vol");
	want_volume("node-a", "vol", "deleted", &from);

	/* waiter never opens VMBus: no shutdown channel, so forced now. */
	run_partition("node-a", "w", 1, &w);
	want_status("node-a", "w", ST(RUNNING), &from);
	stop_partition("node-a", "w", 1, 10000);
	st = want_status("node-a", "w", ST(STOPPED), &from);
	assert_non_null(strstr(st->reason, "shutdown channel"));

	/* timeout 0: forced; a newer epoch replaces the record. */
	run_partition("node-a", "w", 2, &w);
	want_status("node-a", "w", ST(RUNNING), &from);
	stop_partition("node-a", "w", 0, 0);
	st = want_status("node-a", "w", ST(STOPPED), &from);
	assert_int_equal(st->epoch, 2);
	assert_non_null(strstr(st->reason, "forced"));

	/* A running one, then DeletePartition: gone from the report. */
	run_partition("node-a", "w", 3, &w);
	want_status("node-a", "w", ST(RUNNING), &from);
	delete_partition("node-a", "w", 3);
	delete_partition("node-a", "w", 3); /* idempotent */
	node_stop(&na);
	rep = node_start(&na, NULL);
	assert_int_equal(rep->n_partitions, 0);
	ok = 1;
}

/* A partition on node-a whose disk is node-b's volume, reached over the
 * data plane once the controller grants node-a access; then the volume is
 * fenced away from node-a under a running guest. */
static void test_remote_disk_and_fencing(void **state)
{
	Fab__DeviceBinding d0 = FAB__DEVICE_BINDING__INIT;
	struct run_args a = { .image = "blockbench",
			      .vcpus = 1,
			      .args = { "--mode", "write-then-verify", "--bs", "4096", "--qd", "8",
					"--blocks", "512" } };
	struct run_args longrun = { .image = "blockbench",
				    .vcpus = 1,
				    .args = { "--mode", "randwrite", "--bs", "4096", "--qd", "4",
					      "--blocks", "512", "--ms", "60000" } };
	const Fab__PartitionStatus *st;
	size_t from, start;

	node_start(&na, NULL);
	node_start(&nb, NULL);
	from = ctl_mark();
	create_volume("node-b", "rv", 16 * MIB);
	want_volume("node-b", "rv", "ready", &from);
	volume_access("node-b", "rv", "node-a", 1);
	/* One-way, on another connection than the RunPartition: wait until
	 * it has landed, or node-a's bind could come first. */
	assert_true(log_has(nb.log, "volume rv: access for node node-a", WAIT));
	d0.device = "disk0";
	d0.volume = "rv";
	d0.node = "node-b";
	d0.address = nb.data_addr;
	d0.export = "rv";
	d0.timeout_ms = 1000;
	a.devs[0] = &d0;
	start = ctl_mark();
	run_partition("node-a", "rbb", 1, &a);
	st = want_status("node-a", "rbb", ST(RUNNING), &from);
	assert_true(st->channels[0]->remote);
	assert_string_equal(st->channels[0]->transport, "tcp");
	assert_string_equal(st->channels[0]->vsp_node, "node-b");
	st = want_status("node-a", "rbb", ST(EXITED), &from);
	assert_int_equal(st->exit_status, 0);
	assert_int_equal(st->channels[0]->io_errors, 0);
	assert_true(console_has("node-a", "rbb", start, "blockbench: OK", WAIT));

	/* A long run, then the volume goes to another node. */
	longrun.devs[0] = &d0;
	start = ctl_mark();
	run_partition("node-a", "rbb", 2, &longrun);
	want_status("node-a", "rbb", ST(RUNNING), &from);
	sleep(2);
	volume_access("node-b", "rv", "node-c", 2);
	for (;;) {
		st = want_status("node-a", "rbb", 0, &from);
		if (st->n_channels && st->channels[0]->io_errors > 0 &&
		    !strcmp(st->channels[0]->health, "failing"))
			break;
	}
	fprintf(stderr, "  fenced: %s, %llu I/O errors, state %d\n", st->channels[0]->health,
		(unsigned long long)st->channels[0]->io_errors, st->state);
	assert_true(th_file_has(nb.log, "access to export rv now belongs to node-c"));
	delete_partition("node-a", "rbb", 0);
	ok = 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest volumes[] = {
		cmocka_unit_test_setup_teardown(test_volume_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_keeps_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volume_fencing, setup, teardown),
	};
	const struct CMUnitTest partitions[] = {
		cmocka_unit_test_setup_teardown(test_run_local_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_partitions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remote_disk_and_fencing, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	if (argc == 2 && !strcmp(argv[1], "volumes"))
		return cmocka_run_group_tests_name("node commands (volumes)", volumes, NULL, NULL);
	if (argc == 2 && !strcmp(argv[1], "partitions")) {
		if (th_kvm_missing("partitions under controller commands"))
			return 77;
		return cmocka_run_group_tests_name("node commands (partitions)", partitions, NULL,
						   NULL);
	}
	fprintf(stderr, "usage: test_node_cmds volumes|partitions\n");
	return 2;
}
