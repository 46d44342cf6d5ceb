// SPDX-License-Identifier: MIT
/*
 * bench_scheduler: one fabctld against many simulated nodes. Placement
 * latency (p50/p99) and partitions created per second, against three floors
 * measured in the same run, and the controller's resident memory.
 *
 * Set-up: a fresh PKI (fabctl pki init, then fabctl pki issue for the
 * nodes beyond the first 200), RLIMIT_NOFILE raised to its hard limit
 * (fabctld inherits it and sizes its connection budget from it), fabctld on
 * 127.0.0.1:0 with its own database in the temporary directory and a 10 s
 * lease, so the nodes heartbeat every 2 s.
 *
 * Simulated nodes live in this process on one libev loop: one mutually
 * authenticated TLS connection each, with its own node certificate. Each
 * registers (64 vCPUs, 256 GiB, tcp; every 10th node, n0000, n0010, ...,
 * also offers the storage VSP with a data address), sends an empty
 * NodeReport, heartbeats at the interval the RegisterAck asks for and plays
 * the node's side of the protocol: RunPartition is answered with
 * PartitionStatus RUNNING and one channel per device, CreateVolume with
 * VolumeStatus ready, StopPartition with STOPPED, DeleteVolume with
 * deleted; VolumeAccess and DeletePartition need no answer. Registrations
 * are paced at 64 handshakes in flight, which a real fleet coming up does
 * too (jittered backoff), and which keeps fabctld's listen backlog (128)
 * from overflowing.
 *
 * The admin client (its own connection on the same loop) then:
 *   1. creates --volumes volumes (no node: the controller chooses), 32
 *      requests outstanding, and waits until VolumeList shows them ready;
 *   2. creates --partitions partitions (image "sim", 1 vCPU, 64 MiB; every
 *      10th with the next free volume, every 5th in one of 50 anti-affinity
 *      groups chosen by a fixed hash, restart policy alternating
 *      on-failure/always) in two passes: the first half with --concurrency
 *      requests outstanding (default 1: the latency of one placement), the
 *      second half with 32 outstanding (throughput). With --concurrency 32
 *      there is one pass. Latency is send -> PartitionReply on the admin
 *      connection; it includes the node's RUNNING report of the previous
 *      partition where fabctld handles that first, as it would in service;
 *   3. shows every partition once (PartitionShow, one outstanding): the
 *      request round trip floor, and the check that each one is RUNNING on
 *      the node that got its RunPartition.
 *
 * Floors, in this process, on the same machine and file system:
 *   durable commit     one SQLite transaction inserting one row, WAL and
 *                      synchronous=FULL (the controller's settings), in the
 *                      directory of the controller's database, half just
 *                      before the creates and half after them; a create is
 *                      one such transaction, and the node's RUNNING report
 *                      that follows it is another;
 *   scheduler compute  ctl_sched_place() alone over the same node shape and
 *                      the same sequence of requests;
 *   request round trip PartitionShow of an existing partition over the same
 *                      TLS connection to the same controller, holding every
 *                      node and partition (heartbeats still arriving).
 *
 * Also reported: fabctld's CPU time per create (utime + stime from /proc)
 * and this process's, its resident memory before any node, after
 * registration and after the partitions, and every message the nodes got
 * and sent.
 *
 * Checks (exit 1 if any fails): every create answered SCHEDULED with a node;
 * exactly one RunPartition per partition, at that node, with the right
 * devices, and none more after a quiet reconcile tick; anti-affinity held;
 * every partition RUNNING in the end; every node still up, its heartbeats
 * answered, and the vCPUs the controller counts as used equal to the
 * partitions placed; no node connection lost, no message a node does not
 * expect.
 *
 * Every wait fails after 30 s without progress, naming what it waited for;
 * every exit path stops fabctld and removes the temporary directory (the
 * harness also does so on SIGINT/SIGTERM). FAB_KEEP_TMP=1 keeps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <sqlite3.h>

#include "benchlib.h"
#include "harness.h"
#include "fab/conn.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "proto/fabric.pb-c.h"
#include "sched.h"

#define NODES_MAX	 9999 /* names n0000..n9999 */
#define PARTS_MAX	 99999
#define NODE_VCPUS	 64
#define NODE_MEMORY	 (256ull << 30)
#define PART_MEMORY	 (64ull << 20)
#define VOLUME_BYTES	 (1ull << 30)
#define GROUPS		 50
#define STORAGE_EVERY	 10 /* every 10th node serves volumes */
#define HANDSHAKES	 64 /* node registrations in flight */
#define DEPTH_THROUGHPUT 32
#define INIT_NODES	 200 /* names given to fabctl pki init; the rest: pki issue */
#define ISSUE_JOBS	 8   /* fabctl pki issue processes at once */
#define COMMITS		 1000
#define COMMITS_QUICK	 200
#define STALL_S		 30.0 /* a wait fails after this long without progress */
#define DATA_PORT_BASE	 20000
#define ADMIN_MAX_FRAME	 (16u << 20) /* NodeList and VolumeList replies */
#define FAILS_SHOWN	 20

enum req_kind {
	RK_VOLUME = 1,
	RK_CREATE,
	RK_SHOW,
	RK_VOLUME_LIST,
	RK_NODE_LIST,
};

#define REQ_ID(kind, i) (((uint64_t)(kind) << 32) | (uint64_t)(i))

struct sim_node {
	unsigned idx;
	char name[16];
	char data_addr[32]; /* "" for a compute-only node */
	char instance[24];
	SSL_CTX *ctx;
	struct fab_conn *conn;
	ev_timer beat;
	bool registered;
	double connect_us; /* when its connection started */
	uint64_t next_id, seq;
};

struct part {
	double sent_us, lat_us, show_us;
	int reply_node; /* node in the create reply, -1 none */
	int run_node;	/* node that got RunPartition, -1 none */
	unsigned runs;
	uint64_t epoch;
	bool running; /* as PartitionShow last said */
};

struct volume {
	int node; /* storage node that got CreateVolume, -1 none */
	unsigned creates;
};

/* A window of requests of one kind: idx next..end (or list[next..end)). */
struct pipeline {
	enum req_kind kind;
	const unsigned *list;
	unsigned next, end, depth, outstanding;
	uint64_t done;
	double first_us, last_us;
};

/* Messages the simulated nodes got and sent. */
struct counts {
	uint64_t acks, hb_acks, runs, stops, deletes, vol_creates, vol_deletes, access, errors,
		unexpected;
	uint64_t registers, heartbeats, reports, statuses, vol_statuses;
};

static const char *prog = "bench_scheduler";

static struct {
	/* arguments */
	const char *fabctld, *fabctl;
	unsigned nodes, nparts, nvols, depth, commits;
	/* files */
	char dir[64], pki[128], db[128], log[128], addr_file[128];
	pid_t ctld;
	char addr[64];
	/* the loop */
	struct ev_loop *loop;
	ev_timer tick;
	bool stopping;
	unsigned live_conns;
	/* nodes */
	struct sim_node *node;
	unsigned next_connect, connecting;
	uint64_t nregistered;
	double *reg_us;
	uint32_t heartbeat_ms;
	struct counts cnt;
	/* admin */
	SSL_CTX *admin_ctx;
	struct fab_conn *admin;
	uint64_t admin_open;
	struct pipeline pipe;
	uint64_t admin_errors;
	/* list replies */
	uint64_t list_replies;
	unsigned list_total, list_up, list_ready;
	uint64_t list_vcpus_used, list_mem_used;
	/* partitions and volumes */
	struct part *part;
	struct volume *vol;
	bool measure_show;
	/* checks */
	unsigned nfail;
} B;

static pid_t issue_pid[ISSUE_JOBS];

/* ---- failure and cleanup ---------------------------------------------------- */

/* What became of fabctld, if it is gone (reaps it). A process that dies
 * closes its sockets before it can be reaped: wait up to grace_ms. */
static const char *ctld_fate(char *buf, size_t len, int grace_ms)
{
	pid_t r = 0;
	int st;

	for (int waited = 0; B.ctld > 0; waited += 10) {
		r = waitpid(B.ctld, &st, WNOHANG);
		if (r != 0 || waited >= grace_ms)
			break;
		usleep(10000);
	}
	if (B.ctld <= 0 || r != B.ctld)
		return NULL;
	B.ctld = 0;
	if (WIFEXITED(st))
		snprintf(buf, len, "fabctld exited with status %d", WEXITSTATUS(st));
	else
		snprintf(buf, len, "fabctld was killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	return buf;
}

/* The last lines of fabctld's log, to stderr: the temporary directory is
 * about to go. */
static void log_tail(unsigned lines)
{
	char *text = B.log[0] ? th_slurp(B.log) : NULL;
	size_t len;
	const char *p;

	if (!text)
		return;
	len = strlen(text);
	p = text + len;
	if (p > text && p[-1] == '\n')
		p--; /* the last line's own newline */
	for (unsigned n = 0; p > text; p--)
		if (p[-1] == '\n' && ++n == lines)
			break;
	fprintf(stderr, "---- last lines of %s ----\n%s---- end of log ----\n", B.log, p);
	free(text);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	char fate[96];
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (ctld_fate(fate, sizeof(fate), 300))
		fprintf(stderr, "%s: %s\n", prog, fate);
	for (unsigned i = 0; i < ISSUE_JOBS; i++) {
		if (issue_pid[i] > 0) {
			kill(issue_pid[i], SIGKILL);
			waitpid(issue_pid[i], NULL, 0);
		}
	}
	log_tail(30);
	th_cleanup();
	exit(1);
}

/* A check that did not hold: counted, the first few shown. */
static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	va_list ap;

	if (B.nfail++ >= FAILS_SHOWN)
		return;
	fprintf(stderr, "%s: CHECK FAILED: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- small helpers ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	return bench_cmp_double(a, b);
}

/* Nearest-rank percentile p (0..1] of v[0..n), which it sorts. */
static double pct(double *v, size_t n, double p)
{
	size_t k;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	k = (size_t)(p * (double)n + 0.999999);
	return v[k ? k - 1 : 0];
}

/* "n0042" with prefix 'n' -> 42; -1 if not such a name below max. */
static int name_index(const char *s, char prefix, unsigned max)
{
	unsigned long v;
	char *end;

	if (!s || s[0] != prefix || s[1] < '0' || s[1] > '9')
		return -1;
	errno = 0;
	v = strtoul(s + 1, &end, 10);
	if (errno || *end || v >= max)
		return -1;
	return (int)v;
}

static bool is_storage(unsigned node)
{
	return node % STORAGE_EVERY == 0;
}

/* The volume of partition i, or -1: every 10th, while volumes last. */
static int part_volume(unsigned i)
{
	return i % 10 == 0 && i / 10 < B.nvols ? (int)(i / 10) : -1;
}

/*
 * Its anti-affinity group, or -1: every 5th, the group drawn by a fixed hash
 * of the index. Groups in turn would line up with the volumes: the
 * controller spreads volume v to storage node v mod 100, so every volume one
 * node serves would belong to one group, and anti-affinity would allow only
 * one of those partitions next to its disk.
 */
static int part_group(unsigned i)
{
	uint32_t x = i / 5;

	if (i % 5)
		return -1;
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return (int)(x % GROUPS);
}

static void rss_of(pid_t pid, unsigned long *rss_kib, unsigned long *hwm_kib)
{
	char path[64], line[256];
	FILE *f;

	*rss_kib = *hwm_kib = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		die("cannot read %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "VmRSS:", 6))
			*rss_kib = strtoul(line + 6, NULL, 10);
		else if (!strncmp(line, "VmHWM:", 6))
			*hwm_kib = strtoul(line + 6, NULL, 10);
	}
	fclose(f);
}

/* CPU seconds (user + system) pid has used. */
static double cpu_of(pid_t pid)
{
	unsigned long ut = 0, st = 0;
	char path[64], buf[1024];
	const char *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		die("cannot read %s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		die("cannot parse %s", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double file_mib(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (double)st.st_size / (1 << 20) : 0;
}

/* ---- waiting on the loop ------------------------------------------------------ */

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	/* Only wakes the loop so waits can look at the clock. */
}

/*
 * Runs the loop until *count reaches target. Fails when the count has not
 * moved for STALL_S, naming what was awaited.
 */
static void wait_count(const uint64_t *count, uint64_t target, const char *what)
{
	uint64_t last = *count;
	double moved = bench_now_us();

	while (*count < target) {
		ev_run(B.loop, EVRUN_ONCE);
		if (*count != last) {
			last = *count;
			moved = bench_now_us();
		} else if (bench_now_us() - moved > STALL_S * 1e6) {
			die("timed out waiting for %s: %llu of %llu after %.0f s without progress",
			    what, (unsigned long long)*count, (unsigned long long)target, STALL_S);
		}
	}
}

/* Runs the loop for s seconds (nodes keep heartbeating meanwhile). */
static void run_for(double s)
{
	double until = bench_now_us() + s * 1e6;

	while (bench_now_us() < until)
		ev_run(B.loop, EVRUN_ONCE);
}

/* ---- simulated nodes ------------------------------------------------------------ */

static void node_send(struct sim_node *n, Fab__Envelope *env)
{
	int rc;

	env->id = ++n->next_id;
	rc = fab_conn_send_pb(n->conn, &env->base);
	if (rc)
		die("node %s: cannot queue a message to fabctld: %s", n->name, strerror(-rc));
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sim_node *n = w->data;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__Heartbeat hb = FAB__HEARTBEAT__INIT;

	hb.seq = ++n->seq;
	env.body_case = FAB__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	node_send(n, &env);
	B.cnt.heartbeats++;
}

static void connect_more(void);

static void node_open(struct fab_conn *c, void *arg)
{
	struct sim_node *n = arg;
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RegisterNode reg = FAB__REGISTER_NODE__INIT;
	char *transports[] = { (char *)"tcp" }, *vsps[] = { (char *)"storage" };

	reg.name = n->name;
	reg.vcpus = NODE_VCPUS;
	reg.memory_bytes = NODE_MEMORY;
	reg.transports = transports;
	reg.n_transports = 1;
	if (n->data_addr[0]) {
		reg.vsps = vsps;
		reg.n_vsps = 1;
		reg.data_addr = n->data_addr;
	}
	reg.version = (char *)"bench";
	reg.instance = n->instance;
	env.body_case = FAB__ENVELOPE__BODY_REGISTER_NODE;
	env.register_node = &reg;
	node_send(n, &env);
	B.cnt.registers++;
}

static void node_registered(struct sim_node *n, const Fab__RegisterAck *ack)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__NodeReport rep = FAB__NODE_REPORT__INIT;
	double hb;

	B.cnt.acks++;
	if (n->registered) {
		bad("node %s: a second RegisterAck", n->name);
		return;
	}
	n->registered = true;
	B.reg_us[n->idx] = bench_now_us() - n->connect_us;
	B.nregistered++;
	B.connecting--;
	if (!B.heartbeat_ms)
		B.heartbeat_ms = ack->heartbeat_ms;
	/* Nothing runs here yet: the report is empty. */
	env.body_case = FAB__ENVELOPE__BODY_NODE_REPORT;
	env.node_report = &rep;
	node_send(n, &env);
	B.cnt.reports++;
	/* Bounded like the real agent; the first beat at a random point of
	 * the interval so a thousand nodes do not beat in step. */
	hb = (ack->heartbeat_ms < 100 ? 100 : ack->heartbeat_ms) / 1000.0;
	ev_timer_init(&n->beat, beat_cb, hb * (double)(random() % 1000 + 1) / 1000.0, hb);
	n->beat.data = n;
	ev_timer_start(B.loop, &n->beat);
	connect_more();
}

static void node_run(struct sim_node *n, const Fab__RunPartition *run)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionStatus st = FAB__PARTITION_STATUS__INIT;
	Fab__ChannelInfo ci[8], *cip[8];
	int i = name_index(run->name, 'p', B.nparts), v;
	char want[16];
	struct part *p;

	B.cnt.runs++;
	if (i < 0) {
		bad("node %s: RunPartition for unknown partition '%s'", n->name, run->name);
		return;
	}
	p = &B.part[i];
	if (++p->runs > 1)
		bad("node %s: RunPartition %s (epoch %llu) again; first went to n%04d", n->name,
		    run->name, (unsigned long long)run->epoch, p->run_node);
	p->run_node = (int)n->idx;
	v = part_volume((unsigned)i);
	if (strcmp(run->image, "sim") || run->vcpus != 1 || run->memory_bytes != PART_MEMORY ||
	    run->n_devices != (v >= 0 ? 1u : 0u) || run->epoch == 0)
		bad("node %s: RunPartition %s: image '%s', %u vCPUs, %llu bytes, %zu devices, "
		    "epoch %llu: not what was created",
		    n->name, run->name, run->image, run->vcpus,
		    (unsigned long long)run->memory_bytes, run->n_devices,
		    (unsigned long long)run->epoch);
	if (v >= 0 && run->n_devices == 1) {
		const Fab__DeviceBinding *d = run->devices[0];
		bool local = d->path && d->path[0];

		snprintf(want, sizeof(want), "v%05d", v);
		if (strcmp(d->volume, want) || strcmp(d->device, "disk0") ||
		    (local && B.vol[v].node != (int)n->idx) ||
		    (!local && (!d->address || !d->address[0])))
			bad("node %s: RunPartition %s: device %s volume %s path '%s' address '%s': "
			    "%s on n%04d expected",
			    n->name, run->name, d->device, d->volume, d->path, d->address, want,
			    B.vol[v].node);
	}
	st.name = run->name;
	st.epoch = run->epoch;
	st.state = FAB__PARTITION_STATE__PARTITION_STATE_RUNNING;
	for (size_t k = 0; k < run->n_devices && k < 8; k++) {
		const Fab__DeviceBinding *d = run->devices[k];
		bool local = d->path && d->path[0];

		fab__channel_info__init(&ci[k]);
		ci[k].device = d->device;
		ci[k].volume = d->volume;
		ci[k].remote = !local;
		ci[k].transport = local ? (char *)"local" : (char *)"tcp";
		ci[k].vsp_node = local ? n->name : d->node;
		ci[k].health = (char *)"ok";
		cip[k] = &ci[k];
		st.n_channels = k + 1;
	}
	st.channels = cip;
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_STATUS;
	env.partition_status = &st;
	node_send(n, &env);
	B.cnt.statuses++;
}

static void node_stop(struct sim_node *n, const Fab__StopPartition *sp)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionStatus st = FAB__PARTITION_STATUS__INIT;

	B.cnt.stops++;
	st.name = sp->name;
	st.epoch = sp->epoch;
	st.state = FAB__PARTITION_STATE__PARTITION_STATE_STOPPED;
	st.reason = (char *)"stopped by the host";
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_STATUS;
	env.partition_status = &st;
	node_send(n, &env);
	B.cnt.statuses++;
}

static void node_volume(struct sim_node *n, const char *name, const char *state, uint64_t size)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeStatus vs = FAB__VOLUME_STATUS__INIT;
	char path[96];

	snprintf(path, sizeof(path), "/sim/%s.img", name);
	vs.name = (char *)name;
	vs.state = (char *)state;
	vs.size_bytes = size;
	vs.path = path;
	env.body_case = FAB__ENVELOPE__BODY_VOLUME_STATUS;
	env.volume_status = &vs;
	node_send(n, &env);
	B.cnt.vol_statuses++;
}

static void node_create_volume(struct sim_node *n, const Fab__CreateVolume *cv)
{
	int v = name_index(cv->name, 'v', B.nvols);

	B.cnt.vol_creates++;
	if (v < 0) {
		bad("node %s: CreateVolume for unknown volume '%s'", n->name, cv->name);
		return;
	}
	if (!n->data_addr[0])
		bad("node %s: CreateVolume %s on a node without a data address", n->name, cv->name);
	if (B.vol[v].creates++ && B.vol[v].node != (int)n->idx)
		bad("volume %s: created on n%04d and again on %s", cv->name, B.vol[v].node,
		    n->name);
	B.vol[v].node = (int)n->idx;
	node_volume(n, cv->name, "ready", cv->size_bytes);
}

static void node_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	struct sim_node *n = arg;
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);

	if (!env)
		die("node %s: undecodable message from fabctld (%zu bytes)", n->name, len);
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_REGISTER_ACK:
		node_registered(n, env->register_ack);
		break;
	case FAB__ENVELOPE__BODY_HEARTBEAT_ACK:
		B.cnt.hb_acks++;
		break;
	case FAB__ENVELOPE__BODY_RUN_PARTITION:
		node_run(n, env->run_partition);
		break;
	case FAB__ENVELOPE__BODY_STOP_PARTITION:
		node_stop(n, env->stop_partition);
		break;
	case FAB__ENVELOPE__BODY_DELETE_PARTITION:
		/* Freed here; the controller expects no answer. */
		B.cnt.deletes++;
		break;
	case FAB__ENVELOPE__BODY_CREATE_VOLUME:
		node_create_volume(n, env->create_volume);
		break;
	case FAB__ENVELOPE__BODY_DELETE_VOLUME:
		B.cnt.vol_deletes++;
		node_volume(n, env->delete_volume->name, "deleted", 0);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_ACCESS:
		B.cnt.access++;
		break;
	case FAB__ENVELOPE__BODY_ERROR:
		B.cnt.errors++;
		bad("node %s: fabctld sent an error: %s", n->name, env->error->message);
		break;
	default:
		B.cnt.unexpected++;
		bad("node %s: unexpected message from fabctld (body %d)", n->name,
		    (int)env->body_case);
		break;
	}
	fab__envelope__free_unpacked(env, NULL);
}

static void node_close(struct fab_conn *c, int err, void *arg)
{
	struct sim_node *n = arg;

	n->conn = NULL;
	B.live_conns--;
	if (n->registered)
		ev_timer_stop(B.loop, &n->beat);
	if (!B.stopping)
		die("node %s: connection to fabctld closed: %s", n->name, fab_conn_reason(c));
}

static const struct fab_conn_ops node_ops = {
	.open_cb = node_open,
	.frame_cb = node_frame,
	.close_cb = node_close,
};

static void node_connect(struct sim_node *n)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.handshake_timeout_s = STALL_S,
	};
	int rc;

	rc = fab_tls_ctx_new(B.pki, FAB_ROLE_NODE, n->name, 0, &n->ctx);
	if (rc)
		die("node %s: cannot load its certificate from %s: %s", n->name, B.pki,
		    strerror(-rc));
	n->connect_us = bench_now_us();
	rc = fab_conn_connect(B.loop, n->ctx, B.addr, &opts, &node_ops, n, &n->conn);
	if (rc)
		die("node %s: cannot connect to %s: %s", n->name, B.addr, strerror(-rc));
	B.live_conns++;
	B.connecting++;
}

/* Keeps HANDSHAKES registrations in flight until every node is started. */
static void connect_more(void)
{
	while (B.connecting < HANDSHAKES && B.next_connect < B.nodes)
		node_connect(&B.node[B.next_connect++]);
}

static void nodes_init(void)
{
	B.node = calloc(B.nodes, sizeof(*B.node));
	B.reg_us = calloc(B.nodes, sizeof(*B.reg_us));
	if (!B.node || !B.reg_us)
		die("out of memory");
	for (unsigned i = 0; i < B.nodes; i++) {
		struct sim_node *n = &B.node[i];
		uint64_t r;

		n->idx = i;
		snprintf(n->name, sizeof(n->name), "n%04u", i);
		if (is_storage(i))
			snprintf(n->data_addr, sizeof(n->data_addr), "127.0.0.1:%u",
				 DATA_PORT_BASE + i);
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = ((uint64_t)random() << 32) ^ (uint64_t)random();
		snprintf(n->instance, sizeof(n->instance), "%016llx", (unsigned long long)r);
	}
}

/* ---- the admin client ------------------------------------------------------------ */

static void admin_send(Fab__Envelope *env)
{
	int rc = fab_conn_send_pb(B.admin, &env->base);

	if (rc)
		die("admin: cannot queue a request to fabctld: %s", strerror(-rc));
}

static void send_volume_create(unsigned v)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeCreateRequest req = FAB__VOLUME_CREATE_REQUEST__INIT;
	char name[16];

	snprintf(name, sizeof(name), "v%05u", v);
	req.name = name;
	req.size_bytes = VOLUME_BYTES;
	env.id = REQ_ID(RK_VOLUME, v);
	env.body_case = FAB__ENVELOPE__BODY_VOLUME_CREATE;
	env.volume_create = &req;
	admin_send(&env);
}

static void send_create(unsigned i)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionCreateRequest req = FAB__PARTITION_CREATE_REQUEST__INIT;
	Fab__PartitionSpec sp = FAB__PARTITION_SPEC__INIT;
	char name[16], vol[16], group[16], *vols[1] = { vol };
	int v = part_volume(i), g = part_group(i);

	snprintf(name, sizeof(name), "p%05u", i);
	sp.name = name;
	sp.image = (char *)"sim";
	sp.vcpus = 1;
	sp.memory_bytes = PART_MEMORY;
	if (v >= 0) {
		snprintf(vol, sizeof(vol), "v%05d", v);
		sp.volumes = vols;
		sp.n_volumes = 1;
	}
	if (g >= 0) {
		snprintf(group, sizeof(group), "g%02d", g);
		sp.group = group;
	}
	sp.restart = i % 2 ? FAB__RESTART_POLICY__RESTART_POLICY_ALWAYS
			   : FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE;
	req.spec = &sp;
	env.id = REQ_ID(RK_CREATE, i);
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_CREATE;
	env.partition_create = &req;
	B.part[i].sent_us = bench_now_us();
	admin_send(&env);
}

static void send_show(unsigned i)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionNameRequest req = FAB__PARTITION_NAME_REQUEST__INIT;
	char name[16];

	snprintf(name, sizeof(name), "p%05u", i);
	req.name = name;
	env.id = REQ_ID(RK_SHOW, i);
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_SHOW;
	env.partition_show = &req;
	B.part[i].show_us = bench_now_us();
	admin_send(&env);
}

static void send_list(enum req_kind kind)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeListRequest vl = FAB__VOLUME_LIST_REQUEST__INIT;
	Fab__NodeListRequest nl = FAB__NODE_LIST_REQUEST__INIT;

	env.id = REQ_ID(kind, 0);
	if (kind == RK_VOLUME_LIST) {
		env.body_case = FAB__ENVELOPE__BODY_VOLUME_LIST;
		env.volume_list = &vl;
	} else {
		env.body_case = FAB__ENVELOPE__BODY_NODE_LIST;
		env.node_list = &nl;
	}
	admin_send(&env);
}

/* Sends while the window has room. */
static void pump(void)
{
	struct pipeline *pl = &B.pipe;

	while (pl->outstanding < pl->depth && pl->next < pl->end) {
		unsigned i = pl->list ? pl->list[pl->next] : pl->next;

		pl->next++;
		pl->outstanding++;
		switch (pl->kind) {
		case RK_VOLUME:
			send_volume_create(i);
			break;
		case RK_CREATE:
			send_create(i);
			break;
		case RK_SHOW:
			send_show(i);
			break;
		default:
			die("internal: no pipeline for request kind %d", (int)pl->kind);
		}
	}
}

/* Sends requests begin..end (or list[begin..end)), depth at a time, and
 * waits for every answer. */
static void pipeline_run(enum req_kind kind, const unsigned *list, unsigned begin, unsigned end,
			 unsigned depth, const char *what)
{
	struct pipeline *pl = &B.pipe;

	memset(pl, 0, sizeof(*pl));
	pl->kind = kind;
	pl->list = list;
	pl->next = begin;
	pl->end = end;
	pl->depth = depth;
	pl->first_us = bench_now_us();
	pump();
	wait_count(&pl->done, end - begin, what);
}

static void reply_done(void)
{
	B.pipe.outstanding--;
	B.pipe.done++;
	B.pipe.last_us = bench_now_us();
	pump();
}

static void on_volume_reply(unsigned v, const Fab__Envelope *env)
{
	char want[16];

	snprintf(want, sizeof(want), "v%05u", v);
	if (env->body_case == FAB__ENVELOPE__BODY_ERROR) {
		B.admin_errors++;
		bad("volume %s: create refused: %s", want, env->error->message);
	} else if (env->body_case != FAB__ENVELOPE__BODY_VOLUME_REPLY ||
		   !env->volume_reply->volume || strcmp(env->volume_reply->volume->name, want) ||
		   name_index(env->volume_reply->volume->node, 'n', B.nodes) < 0) {
		bad("volume %s: unexpected reply to its create (body %d)", want,
		    (int)env->body_case);
	}
	reply_done();
}

static void on_create_reply(unsigned i, const Fab__Envelope *env)
{
	struct part *p = &B.part[i];
	const Fab__PartitionInfo *pi;
	char want[16];

	p->lat_us = bench_now_us() - p->sent_us;
	snprintf(want, sizeof(want), "p%05u", i);
	if (env->body_case == FAB__ENVELOPE__BODY_ERROR) {
		B.admin_errors++;
		bad("partition %s: create refused: %s", want, env->error->message);
		reply_done();
		return;
	}
	pi = env->body_case == FAB__ENVELOPE__BODY_PARTITION_REPLY ? env->partition_reply->partition
								   : NULL;
	if (!pi || !pi->spec || strcmp(pi->spec->name, want)) {
		bad("partition %s: unexpected reply to its create (body %d)", want,
		    (int)env->body_case);
		reply_done();
		return;
	}
	p->reply_node = name_index(pi->node, 'n', B.nodes);
	p->epoch = pi->epoch;
	if (pi->state != FAB__PARTITION_STATE__PARTITION_STATE_SCHEDULED || p->reply_node < 0 ||
	    pi->epoch == 0)
		bad("partition %s: created in state %d on node '%s' (epoch %llu): SCHEDULED on a "
		    "node expected (%s)",
		    want, (int)pi->state, pi->node, (unsigned long long)pi->epoch, pi->reason);
	reply_done();
}

static void on_show_reply(unsigned i, const Fab__Envelope *env)
{
	struct part *p = &B.part[i];
	const Fab__PartitionInfo *pi;

	if (B.measure_show)
		p->show_us = bench_now_us() - p->show_us;
	pi = env->body_case == FAB__ENVELOPE__BODY_PARTITION_REPLY ? env->partition_reply->partition
								   : NULL;
	if (!pi) {
		bad("partition p%05u: show answered with body %d%s%s", i, (int)env->body_case,
		    env->body_case == FAB__ENVELOPE__BODY_ERROR ? ": " : "",
		    env->body_case == FAB__ENVELOPE__BODY_ERROR ? env->error->message : "");
	} else {
		p->running = pi->state == FAB__PARTITION_STATE__PARTITION_STATE_RUNNING &&
			     name_index(pi->node, 'n', B.nodes) == p->run_node &&
			     pi->epoch == p->epoch;
	}
	reply_done();
}

static void on_node_list(const Fab__NodeListReply *r)
{
	B.list_total = (unsigned)r->n_nodes;
	B.list_up = 0;
	B.list_vcpus_used = B.list_mem_used = 0;
	for (size_t k = 0; k < r->n_nodes; k++) {
		const Fab__NodeInfo *ni = r->nodes[k];
		int i = name_index(ni->name, 'n', B.nodes);

		if (i < 0)
			continue;
		if (ni->state == FAB__NODE_STATE__NODE_STATE_UP && ni->vcpus == NODE_VCPUS &&
		    ni->memory_bytes == NODE_MEMORY && !strcmp(ni->data_addr, B.node[i].data_addr))
			B.list_up++;
		B.list_vcpus_used += ni->vcpus_used;
		B.list_mem_used += ni->memory_used;
	}
}

static void on_volume_list(const Fab__VolumeListReply *r)
{
	B.list_total = (unsigned)r->n_volumes;
	B.list_ready = 0;
	for (size_t k = 0; k < r->n_volumes; k++)
		B.list_ready += !strcmp(r->volumes[k]->state, "ready");
}

static void admin_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	Fab__Envelope *env = fab__envelope__unpack(NULL, len, p);
	unsigned kind, idx;

	if (!env)
		die("admin: undecodable reply from fabctld (%zu bytes)", len);
	kind = (unsigned)(env->id >> 32);
	idx = (unsigned)(env->id & 0xffffffffu);
	if (kind != B.pipe.kind && kind != RK_VOLUME_LIST && kind != RK_NODE_LIST)
		die("admin: reply id %llu (body %d) matches no request in flight",
		    (unsigned long long)env->id, (int)env->body_case);
	switch (kind) {
	case RK_VOLUME:
		on_volume_reply(idx, env);
		break;
	case RK_CREATE:
		on_create_reply(idx, env);
		break;
	case RK_SHOW:
		on_show_reply(idx, env);
		break;
	case RK_VOLUME_LIST:
	case RK_NODE_LIST:
		if (env->body_case == FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY)
			on_volume_list(env->volume_list_reply);
		else if (env->body_case == FAB__ENVELOPE__BODY_NODE_LIST_REPLY)
			on_node_list(env->node_list_reply);
		else
			die("admin: list request answered with body %d%s%s", (int)env->body_case,
			    env->body_case == FAB__ENVELOPE__BODY_ERROR ? ": " : "",
			    env->body_case == FAB__ENVELOPE__BODY_ERROR ? env->error->message : "");
		B.list_replies++;
		break;
	}
	fab__envelope__free_unpacked(env, NULL);
}

static void admin_open(struct fab_conn *c, void *arg)
{
	B.admin_open = 1;
}

static void admin_close(struct fab_conn *c, int err, void *arg)
{
	B.admin = NULL;
	B.live_conns--;
	if (!B.stopping)
		die("admin: connection to fabctld closed: %s", fab_conn_reason(c));
}

static const struct fab_conn_ops admin_ops = {
	.open_cb = admin_open,
	.frame_cb = admin_frame,
	.close_cb = admin_close,
};

static void admin_connect(void)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.max_frame = ADMIN_MAX_FRAME,
		.handshake_timeout_s = STALL_S,
	};
	int rc;

	rc = fab_tls_ctx_new(B.pki, FAB_ROLE_ADMIN, "admin", 0, &B.admin_ctx);
	if (rc)
		die("cannot load the admin certificate from %s: %s", B.pki, strerror(-rc));
	rc = fab_conn_connect(B.loop, B.admin_ctx, B.addr, &opts, &admin_ops, NULL, &B.admin);
	if (rc)
		die("admin: cannot connect to %s: %s", B.addr, strerror(-rc));
	B.live_conns++;
	wait_count(&B.admin_open, 1, "the admin connection's TLS handshake");
}

/* One list request, answered (only one is ever in flight). */
static void list_call(enum req_kind kind, const char *what)
{
	B.list_replies = 0;
	send_list(kind);
	wait_count(&B.list_replies, 1, what);
}

/* ---- set-up: PKI, fd limit, fabctld ---------------------------------------------- */

static pid_t spawn_quiet(const char *const argv[], const char *errlog)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		int err = open(errlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		dup2(nul, 0);
		dup2(nul, 1);
		dup2(err >= 0 ? err : nul, 2);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* A CA, the controller and admin certificates and one per node. fabctl pki
 * init gets the first INIT_NODES names (its list is bounded); fabctl pki
 * issue, ISSUE_JOBS at a time, the others. */
static double make_pki(void)
{
	double t0 = bench_now_us();
	unsigned first = B.nodes < INIT_NODES ? B.nodes : INIT_NODES, next = first, running = 0;
	char out[160], *names = malloc((size_t)first * 6 + 1);
	char issue_name[ISSUE_JOBS][16];
	double started[ISSUE_JOBS] = { 0 };
	size_t off = 0;
	int rc;

	if (!names)
		die("out of memory");
	for (unsigned i = 0; i < first; i++)
		off += (size_t)sprintf(names + off, "%sn%04u", i ? "," : "", i);
	snprintf(out, sizeof(out), "%s/pki.log", B.dir);
	{
		const char *a[] = {
			B.fabctl, "pki", "init", "--dir", B.pki, "--nodes", names, NULL
		};

		rc = th_run(out, out, NULL, a, 120);
	}
	free(names);
	if (rc) {
		char *text = th_slurp(out);

		die("fabctl pki init exited %d:\n%s", rc, text ? text : "");
	}
	while (next < B.nodes || running) {
		for (unsigned j = 0; j < ISSUE_JOBS && next < B.nodes; j++) {
			if (issue_pid[j] > 0)
				continue;
			snprintf(issue_name[j], sizeof(issue_name[j]), "n%04u", next++);
			{
				const char *a[] = { B.fabctl,	   "pki",    "issue", "--dir",
						    B.pki,	   "--role", "node",  "--name",
						    issue_name[j], NULL };

				issue_pid[j] = spawn_quiet(a, out);
			}
			started[j] = bench_now_us();
			running++;
		}
		for (unsigned j = 0; j < ISSUE_JOBS; j++) {
			int st;

			if (issue_pid[j] <= 0)
				continue;
			if (waitpid(issue_pid[j], &st, WNOHANG) == issue_pid[j]) {
				issue_pid[j] = 0;
				running--;
				if (!WIFEXITED(st) || WEXITSTATUS(st)) {
					char *text = th_slurp(out);

					die("fabctl pki issue --name %s failed (status 0x%x):\n%s",
					    issue_name[j], st, text ? text : "");
				}
			} else if (bench_now_us() - started[j] > STALL_S * 1e6) {
				die("timed out waiting for fabctl pki issue --name %s (%.0f s)",
				    issue_name[j], STALL_S);
			}
		}
		usleep(1000);
	}
	/* Every node must have its pair: a silently shortened list would
	 * otherwise show up as a failed handshake much later. */
	for (unsigned i = 0; i < B.nodes; i++) {
		char crt[256], key[256], name[16];

		snprintf(name, sizeof(name), "n%04u", i);
		if (fab_pki_paths(B.pki, FAB_ROLE_NODE, name, crt, key, sizeof(crt)) ||
		    access(crt, R_OK) || access(key, R_OK))
			die("no certificate for node %s in %s after fabctl pki", name, B.pki);
	}
	return (bench_now_us() - t0) / 1e6;
}

/* Soft limit to hard: this process holds a connection per node, and fabctld
 * (which inherits the limit) sizes its connection budget from it. */
static void raise_nofile(void)
{
	rlim_t need = (rlim_t)B.nodes + 128;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	if (rl.rlim_cur != rl.rlim_max) {
		struct rlimit want = rl;

		want.rlim_cur = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : 1u << 20;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		die("RLIMIT_NOFILE is %llu (hard %llu); %u nodes need %llu descriptors here and in "
		    "fabctld: raise the hard limit (ulimit -Hn)",
		    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, B.nodes,
		    (unsigned long long)need);
}

static int addr_ready(void *arg)
{
	char fate[96];

	if (ctld_fate(fate, sizeof(fate), 0))
		die("%s before it listened", fate);
	return access(B.addr_file, R_OK) == 0;
}

static void start_fabctld(void)
{
	const char *a[] = { B.fabctld, "--listen",    "127.0.0.1:0", "--db",
			    B.db,      "--pki",	      B.pki,	     "--lease-ms",
			    "10000",   "--addr-file", B.addr_file,   NULL };
	char *text;

	B.ctld = th_spawn(B.log, NULL, a);
	if (!th_wait(addr_ready, NULL, 10000))
		die("timed out waiting for fabctld to write %s (10 s)", B.addr_file);
	text = th_slurp(B.addr_file);
	if (!text || sscanf(text, "%63s", B.addr) != 1)
		die("cannot read the address in %s", B.addr_file);
	free(text);
}

/* ---- floors ------------------------------------------------------------------------ */

static void sql(sqlite3 *db, const char *stmt)
{
	char *err = NULL;

	if (sqlite3_exec(db, stmt, NULL, NULL, &err) != SQLITE_OK)
		die("floor: sqlite '%s': %s", stmt, err ? err : "?");
}

/*
 * One transaction inserting one row, WAL + synchronous=FULL, next to the
 * controller's database. Measured in two halves that bracket the create
 * passes, while fabctld only answers heartbeats, so the floor sees the disk
 * as the creates did (on a shared machine its latency drifts).
 */
static struct {
	sqlite3 *db;
	sqlite3_stmt *ins;
	double *t;
	unsigned n;
} F;

static void floor_commit_one(int i, double *took)
{
	char name[16], body[256];
	double t0 = bench_now_us();

	memset(body, 'x', sizeof(body));
	snprintf(name, sizeof(name), "p%05d", i);
	sql(F.db, "BEGIN");
	sqlite3_bind_text(F.ins, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(F.ins, 2, body, sizeof(body), SQLITE_TRANSIENT);
	if (sqlite3_step(F.ins) != SQLITE_DONE)
		die("floor: insert: %s", sqlite3_errmsg(F.db));
	sqlite3_reset(F.ins);
	sql(F.db, "COMMIT");
	if (took)
		*took = bench_now_us() - t0;
}

static void floor_open(void)
{
	sqlite3_stmt *mode = NULL;
	char path[160];

	F.t = calloc(B.commits, sizeof(*F.t));
	if (!F.t)
		die("out of memory");
	snprintf(path, sizeof(path), "%s/floor.db", B.dir);
	if (sqlite3_open_v2(path, &F.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		die("floor: cannot open %s: %s", path, F.db ? sqlite3_errmsg(F.db) : "?");
	if (sqlite3_prepare_v2(F.db, "PRAGMA journal_mode=WAL", -1, &mode, NULL) != SQLITE_OK ||
	    sqlite3_step(mode) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(mode, 0), "wal"))
		die("floor: %s: WAL mode refused", path);
	sqlite3_finalize(mode);
	sql(F.db, "PRAGMA synchronous=FULL");
	sql(F.db, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB)");
	if (sqlite3_prepare_v2(F.db, "INSERT INTO t(name, body) VALUES(?, ?)", -1, &F.ins, NULL) !=
	    SQLITE_OK)
		die("floor: prepare: %s", sqlite3_errmsg(F.db));
	/* The first commits create the WAL: not timed. */
	for (int i = 0; i < 20; i++)
		floor_commit_one(-1 - i, NULL);
}

/* n more timed commits. The loop does not run meanwhile: nodes miss a
 * heartbeat or two, far inside their 10 s lease. */
static void floor_commits(unsigned n)
{
	for (unsigned k = 0; k < n && F.n < B.commits; k++, F.n++)
		floor_commit_one((int)F.n, &F.t[F.n]);
}

static void floor_close(double *p50, double *p99)
{
	sqlite3_finalize(F.ins);
	sqlite3_close(F.db);
	*p50 = pct(F.t, F.n, 0.50);
	*p99 = pct(F.t, F.n, 0.99);
	free(F.t);
}

/*
 * ctl_sched_place() alone, as the controller calls it (cluster.c): every
 * node judged, a node's groups narrowed to the request's group when it
 * holds it, volumes placed on the storage nodes in turn (as the controller
 * spreads them: fewest volumes first). Same nodes, same requests in the
 * same order; each placement is applied before the next.
 */
static void sched_floor(double *p50, double *p99)
{
	struct ctl_sched_node *sn = calloc(B.nodes, sizeof(*sn));
	struct ctl_sched_verdict *sv = calloc(B.nodes, sizeof(*sv));
	uint64_t *groups = calloc(B.nodes, sizeof(*groups)); /* GROUPS <= 64 bits */
	double *t = calloc(B.nparts, sizeof(*t));
	unsigned nstorage = (B.nodes + STORAGE_EVERY - 1) / STORAGE_EVERY;
	char(*gname)[8] = calloc(GROUPS, sizeof(*gname));

	if (!sn || !sv || !groups || !t || !gname)
		die("out of memory");
	for (unsigned g = 0; g < GROUPS; g++)
		snprintf(gname[g], sizeof(gname[g]), "g%02u", g);
	for (unsigned i = 0; i < B.nodes; i++) {
		sn[i].name = B.node[i].name;
		sn[i].up = true;
		sn[i].vcpus = NODE_VCPUS;
		sn[i].memory_bytes = NODE_MEMORY;
		sn[i].transports = "tcp";
		sn[i].has_data_addr = is_storage(i);
	}
	for (unsigned i = 0; i < B.nparts; i++) {
		int v = part_volume(i), g = part_group(i);
		const char *vsp[1];
		char pname[16];
		struct ctl_sched_req req = {
			.partition = pname,
			.vcpus = 1,
			.memory_bytes = PART_MEMORY,
			.group = g >= 0 ? gname[g] : NULL,
			.vsp_nodes = vsp,
			.nvsp = v >= 0 ? 1 : 0,
		};
		size_t chosen = 0;
		double t0;
		int rc;

		snprintf(pname, sizeof(pname), "p%05u", i);
		if (v >= 0)
			vsp[0] = B.node[(unsigned)v % nstorage * STORAGE_EVERY].name;
		for (unsigned k = 0; k < B.nodes; k++) {
			bool has = g >= 0 && ((groups[k] >> g) & 1);

			sn[k].groups = has ? &req.group : NULL;
			sn[k].ngroups = has ? 1 : 0;
		}
		t0 = bench_now_us();
		rc = ctl_sched_place(sn, B.nodes, &req, CTL_SCHED_SPREAD, sv, &chosen);
		t[i] = bench_now_us() - t0;
		if (rc)
			die("floor: ctl_sched_place(%s) = %s", pname, strerror(-rc));
		sn[chosen].vcpus_used += 1;
		sn[chosen].memory_used += PART_MEMORY;
		if (g >= 0)
			groups[chosen] |= 1ull << g;
	}
	*p50 = pct(t, B.nparts, 0.50);
	*p99 = pct(t, B.nparts, 0.99);
	free(sn);
	free(sv);
	free(groups);
	free(t);
	free(gname);
}

/* ---- checks after the run -------------------------------------------------------- */

struct placement_stats {
	unsigned per_node_min, per_node_max;
	unsigned vol_parts, vol_local;
	unsigned grouped;
};

static void check_placements(struct placement_stats *ps)
{
	unsigned *per_node = calloc(B.nodes, sizeof(*per_node));
	uint8_t *seen = calloc((size_t)GROUPS * B.nodes, 1);

	if (!per_node || !seen)
		die("out of memory");
	memset(ps, 0, sizeof(*ps));
	for (unsigned i = 0; i < B.nparts; i++) {
		struct part *p = &B.part[i];
		int v = part_volume(i), g = part_group(i);

		if (p->runs != 1)
			bad("partition p%05u: %u RunPartition messages reached the nodes, 1 "
			    "expected",
			    i, p->runs);
		else if (p->run_node != p->reply_node)
			bad("partition p%05u: placed on n%04d but RunPartition went to n%04d", i,
			    p->reply_node, p->run_node);
		if (p->reply_node < 0)
			continue;
		per_node[p->reply_node]++;
		if (v >= 0) {
			ps->vol_parts++;
			ps->vol_local += B.vol[v].node == p->reply_node;
		}
		if (g >= 0) {
			uint8_t *s = &seen[(size_t)g * B.nodes + (unsigned)p->reply_node];

			ps->grouped++;
			if (*s)
				bad("anti-affinity: two partitions of group g%02d on n%04d (one is "
				    "p%05u)",
				    g, p->reply_node, i);
			*s = 1;
		}
	}
	ps->per_node_min = UINT32_MAX;
	for (unsigned k = 0; k < B.nodes; k++) {
		if (per_node[k] < ps->per_node_min)
			ps->per_node_min = per_node[k];
		if (per_node[k] > ps->per_node_max)
			ps->per_node_max = per_node[k];
	}
	for (unsigned v = 0; v < B.nvols; v++)
		if (B.vol[v].creates != 1)
			bad("volume v%05u: %u CreateVolume messages reached the nodes, 1 expected",
			    v, B.vol[v].creates);
	free(per_node);
	free(seen);
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --fabctld PATH --fabctl PATH [--nodes N] [--partitions N] "
		"[--volumes N] [--concurrency N] [--quick]\n"
		"  --nodes N        simulated nodes (default 1000; every 10th serves volumes)\n"
		"  --partitions N   partitions created (default 10000)\n"
		"  --volumes N      volumes created first (default 1000)\n"
		"  --concurrency N  requests outstanding in the first create pass (default 1);\n"
		"                   the second half is created with 32 outstanding\n"
		"  --quick          50 nodes, 300 partitions, 20 volumes (smoke test)\n",
		prog);
}

static unsigned arg_uint(const char *opt, const char *s, unsigned min, unsigned max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v < min || v > max) {
		fprintf(stderr, "%s: %s wants %u..%u, not '%s'\n", prog, opt, min, max, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fabctld", required_argument, NULL, 'd' },
		{ "fabctl", required_argument, NULL, 'c' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "volumes", required_argument, NULL, 'v' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	double pki_s, commit50, commit99, sched50, sched99, rt50, rt99, reg_s, reg50, reg99;
	double vol_s, ready_s, t0, cpu0, own0, idle_cpu;
	double pass_s[2], pass50[2], pass99[2], pass_ctl_cpu[2], pass_own_cpu[2];
	unsigned pass_n[2], pass_depth[2], npass;
	unsigned with_vol = 0, nstorage, group_max = 0, running = 0, ncreated = 0;
	unsigned long rss_idle, hwm_idle, rss_reg, hwm_reg, rss_end, hwm_end;
	struct placement_stats ps;
	uint64_t runs_before;
	unsigned *created;
	double *lat;
	int c;

	B.nodes = 1000;
	B.nparts = 10000;
	B.nvols = 1000;
	B.depth = 1;
	B.commits = COMMITS;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			B.fabctld = optarg;
			break;
		case 'c':
			B.fabctl = optarg;
			break;
		case 'n':
			B.nodes = arg_uint("--nodes", optarg, 1, NODES_MAX);
			break;
		case 'p':
			B.nparts = arg_uint("--partitions", optarg, 1, PARTS_MAX);
			break;
		case 'v':
			B.nvols = arg_uint("--volumes", optarg, 0, PARTS_MAX);
			break;
		case 'C':
			B.depth = arg_uint("--concurrency", optarg, 1, 4096);
			break;
		case 'q':
			B.nodes = 50;
			B.nparts = 300;
			B.nvols = 20;
			B.commits = COMMITS_QUICK;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!B.fabctld || !B.fabctl || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* Shapes that cannot fit are refused rather than measured. */
	{
		unsigned members[GROUPS] = { 0 };

		for (unsigned i = 0; i < B.nparts; i++)
			if (part_group(i) >= 0)
				members[part_group(i)]++;
		for (unsigned g = 0; g < GROUPS; g++)
			group_max = members[g] > group_max ? members[g] : group_max;
	}
	if ((uint64_t)B.nparts > (uint64_t)B.nodes * NODE_VCPUS || group_max > B.nodes) {
		fprintf(stderr,
			"%s: %u partitions do not fit on %u nodes (%u vCPUs each; an "
			"anti-affinity group holds one partition per node)\n",
			prog, B.nparts, B.nodes, NODE_VCPUS);
		return 2;
	}
	for (unsigned i = 0; i < B.nparts; i++)
		with_vol += part_volume(i) >= 0;
	nstorage = (B.nodes + STORAGE_EVERY - 1) / STORAGE_EVERY;
	fab_log_init(prog, FAB_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)getpid());

	B.part = calloc(B.nparts, sizeof(*B.part));
	B.vol = calloc(B.nvols ? B.nvols : 1, sizeof(*B.vol));
	lat = calloc(B.nparts, sizeof(*lat));
	created = calloc(B.nparts, sizeof(*created));
	if (!B.part || !B.vol || !lat || !created)
		die("out of memory");
	for (unsigned i = 0; i < B.nparts; i++)
		B.part[i].reply_node = B.part[i].run_node = -1;
	for (unsigned v = 0; v < B.nvols; v++)
		B.vol[v].node = -1;
	nodes_init();

	th_tmpdir(B.dir, sizeof(B.dir));
	snprintf(B.pki, sizeof(B.pki), "%s/pki", B.dir);
	snprintf(B.db, sizeof(B.db), "%s/fabctld.db", B.dir);
	snprintf(B.log, sizeof(B.log), "%s/fabctld.log", B.dir);
	snprintf(B.addr_file, sizeof(B.addr_file), "%s/fabctld.addr", B.dir);
	pki_s = make_pki();
	raise_nofile();

	floor_open();
	sched_floor(&sched50, &sched99);

	start_fabctld();
	rss_of(B.ctld, &rss_idle, &hwm_idle);
	B.loop = EV_DEFAULT;
	ev_timer_init(&B.tick, tick_cb, 0.02, 0.02);
	ev_timer_start(B.loop, &B.tick);
	admin_connect();

	/* Registration. */
	t0 = bench_now_us();
	connect_more();
	wait_count(&B.nregistered, B.nodes, "RegisterAck at the simulated nodes");
	reg_s = (bench_now_us() - t0) / 1e6;
	reg50 = pct(B.reg_us, B.nodes, 0.50) / 1e3;
	reg99 = pct(B.reg_us, B.nodes, 0.99) / 1e3;
	list_call(RK_NODE_LIST, "NodeList after registration");
	if (B.list_total != B.nodes || B.list_up != B.nodes)
		bad("after registration NodeList shows %u nodes, %u of them up as registered; "
		    "%u expected",
		    B.list_total, B.list_up, B.nodes);
	rss_of(B.ctld, &rss_reg, &hwm_reg);

	/* Volumes. */
	t0 = bench_now_us();
	pipeline_run(RK_VOLUME, NULL, 0, B.nvols, DEPTH_THROUGHPUT, "replies to VolumeCreate");
	vol_s = (bench_now_us() - t0) / 1e6;
	wait_count(&B.cnt.vol_creates, B.nvols, "CreateVolume at the storage nodes");
	{
		unsigned last = 0;
		double moved = bench_now_us();

		for (;;) {
			list_call(RK_VOLUME_LIST, "VolumeList");
			if (B.list_ready >= B.nvols)
				break;
			if (B.list_ready != last) {
				last = B.list_ready;
				moved = bench_now_us();
			} else if (bench_now_us() - moved > STALL_S * 1e6) {
				die("timed out waiting for volumes to be ready: %u of %u after "
				    "%.0f s without progress",
				    B.list_ready, B.nvols, STALL_S);
			}
			run_for(0.05);
		}
	}
	ready_s = (bench_now_us() - t0) / 1e6 - vol_s;

	floor_commits(B.commits / 2);

	/* Partitions: the latency pass, then the throughput pass. */
	if (B.depth == DEPTH_THROUGHPUT || B.nparts < 2) {
		npass = 1;
		pass_n[0] = B.nparts;
		pass_depth[0] = B.depth;
	} else {
		npass = 2;
		pass_n[0] = B.nparts - B.nparts / 2;
		pass_n[1] = B.nparts / 2;
		pass_depth[0] = B.depth;
		pass_depth[1] = DEPTH_THROUGHPUT;
	}
	for (unsigned k = 0, begin = 0; k < npass; begin += pass_n[k], k++) {
		unsigned end = begin + pass_n[k];

		cpu0 = cpu_of(B.ctld);
		own0 = cpu_self();
		pipeline_run(RK_CREATE, NULL, begin, end, pass_depth[k],
			     "replies to PartitionCreate");
		pass_s[k] = (B.pipe.last_us - B.pipe.first_us) / 1e6;
		pass_ctl_cpu[k] = cpu_of(B.ctld) - cpu0;
		pass_own_cpu[k] = cpu_self() - own0;
		for (unsigned i = begin; i < end; i++)
			lat[i - begin] = B.part[i].lat_us;
		pass50[k] = pct(lat, pass_n[k], 0.50);
		pass99[k] = pct(lat, pass_n[k], 0.99);
	}
	/* What the controller accepted (a refusal is a failed check already). */
	for (unsigned i = 0; i < B.nparts; i++)
		if (B.part[i].reply_node >= 0)
			created[ncreated++] = i;
	if (!ncreated)
		die("fabctld placed none of the %u partitions", B.nparts);
	wait_count(&B.cnt.runs, ncreated, "RunPartition at the simulated nodes");

	/* Round trip floor, and every partition RUNNING where it was sent. */
	B.measure_show = true;
	pipeline_run(RK_SHOW, created, 0, ncreated, 1, "replies to PartitionShow");
	B.measure_show = false;
	for (unsigned k = 0; k < ncreated; k++)
		lat[k] = B.part[created[k]].show_us;
	rt50 = pct(lat, ncreated, 0.50);
	rt99 = pct(lat, ncreated, 0.99);
	{
		unsigned *left = calloc(ncreated, sizeof(*left)), nleft, last = UINT32_MAX;
		double moved = bench_now_us();

		if (!left)
			die("out of memory");
		for (;;) {
			nleft = 0;
			for (unsigned k = 0; k < ncreated; k++)
				if (!B.part[created[k]].running)
					left[nleft++] = created[k];
			if (!nleft)
				break;
			if (nleft != last) {
				last = nleft;
				moved = bench_now_us();
			} else if (bench_now_us() - moved > STALL_S * 1e6) {
				bad("%u partitions not RUNNING on their node after %.0f s (first: "
				    "p%05u)",
				    nleft, STALL_S, left[0]);
				break;
			}
			run_for(0.2);
			pipeline_run(RK_SHOW, left, 0, nleft, DEPTH_THROUGHPUT,
				     "replies to PartitionShow (recheck)");
		}
		free(left);
	}
	for (unsigned k = 0; k < ncreated; k++)
		running += B.part[created[k]].running;
	floor_commits(B.commits - B.commits / 2);
	floor_close(&commit50, &commit99);
	rss_of(B.ctld, &rss_end, &hwm_end);

	/* A reconcile tick (1 s) must not send anything again. */
	runs_before = B.cnt.runs;
	cpu0 = cpu_of(B.ctld);
	run_for(1.5);
	idle_cpu = (cpu_of(B.ctld) - cpu0) / 1.5;
	if (B.cnt.runs != runs_before)
		bad("%llu more RunPartition messages after every partition ran",
		    (unsigned long long)(B.cnt.runs - runs_before));
	list_call(RK_NODE_LIST, "NodeList at the end");
	if (B.list_up != B.nodes)
		bad("at the end NodeList shows %u of %u nodes up", B.list_up, B.nodes);
	if (B.list_vcpus_used != ncreated || B.list_mem_used != (uint64_t)ncreated * PART_MEMORY)
		bad("NodeList counts %llu vCPUs and %llu bytes used; the %u partitions placed use "
		    "%u "
		    "and %llu",
		    (unsigned long long)B.list_vcpus_used, (unsigned long long)B.list_mem_used,
		    ncreated, ncreated, (unsigned long long)ncreated * PART_MEMORY);
	if (B.cnt.heartbeats - B.cnt.hb_acks > B.nodes)
		bad("%llu of %llu heartbeats unanswered (at most one per node may be in flight)",
		    (unsigned long long)(B.cnt.heartbeats - B.cnt.hb_acks),
		    (unsigned long long)B.cnt.heartbeats);
	if (B.cnt.unexpected || B.cnt.errors)
		bad("nodes got %llu unexpected messages and %llu errors",
		    (unsigned long long)B.cnt.unexpected, (unsigned long long)B.cnt.errors);
	check_placements(&ps);

	/* The table. */
	printf("%s: %u nodes (%u storage), %u partitions (%u with a volume), %u volumes\n", prog,
	       B.nodes, nstorage, B.nparts, with_vol, B.nvols);
	printf("                               p50 µs    p99 µs   per second\n");
	for (unsigned k = 0; k < npass; k++) {
		char label[40];

		snprintf(label, sizeof(label), "create (concurrency %u)", pass_depth[k]);
		printf("%-30s %7.0f %9.0f %12.0f\n", label, pass50[k], pass99[k],
		       pass_s[k] > 0 ? pass_n[k] / pass_s[k] : 0);
	}
	printf("%-30s %7.0f %9.0f\n", "floor: durable commit", commit50, commit99);
	printf("%-30s %7.0f %9.0f\n", "floor: scheduler compute", sched50, sched99);
	printf("%-30s %7.0f %9.0f\n", "floor: request round trip", rt50, rt99);
	printf("controller RSS: %u nodes registered %.1f MiB; + %u partitions %.1f MiB (peak %.1f "
	       "MiB)\n",
	       B.nodes, rss_reg / 1024.0, B.nparts, rss_end / 1024.0, hwm_end / 1024.0);
	printf("\n");
	printf("pki        %u certificates (EC P-256) in %.1f s: fabctl pki init + %u x fabctl "
	       "pki issue, %d at a time\n",
	       B.nodes + 2, pki_s, B.nodes > INIT_NODES ? B.nodes - INIT_NODES : 0, ISSUE_JOBS);
	printf("register   %u nodes in %.2f s, %d handshakes in flight; per node p50 %.1f ms, p99 "
	       "%.1f ms; heartbeat every %u ms\n",
	       B.nodes, reg_s, HANDSHAKES, reg50, reg99, B.heartbeat_ms);
	printf("volumes    %u created in %.2f s (%.0f/s, %d outstanding), all ready %.2f s later\n",
	       B.nvols, vol_s, vol_s > 0 ? B.nvols / vol_s : 0, DEPTH_THROUGHPUT, ready_s);
	for (unsigned k = 0; k < npass; k++)
		printf("create     pass %u: %u partitions in %.2f s at concurrency %u; CPU per "
		       "create: fabctld %.0f µs, this process %.0f µs\n",
		       k + 1, pass_n[k], pass_s[k], pass_depth[k],
		       pass_ctl_cpu[k] * 1e6 / pass_n[k], pass_own_cpu[k] * 1e6 / pass_n[k]);
	printf("idle       fabctld %.1f%% of a CPU with %u nodes heartbeating; RSS %.1f MiB "
	       "before any node\n",
	       idle_cpu * 100, B.nodes, rss_idle / 1024.0);
	printf("placement  %u refused; anti-affinity held over %u grouped partitions in %d "
	       "groups (at most %u in one); %u/%u volume partitions on their volume's node; "
	       "%u..%u partitions per node\n",
	       (unsigned)B.admin_errors, ps.grouped, GROUPS, group_max, ps.vol_local, ps.vol_parts,
	       ps.per_node_min, ps.per_node_max);
	printf("nodes got  RunPartition %llu, CreateVolume %llu, VolumeAccess %llu, "
	       "StopPartition %llu, DeletePartition %llu, HeartbeatAck %llu, other %llu\n",
	       (unsigned long long)B.cnt.runs, (unsigned long long)B.cnt.vol_creates,
	       (unsigned long long)B.cnt.access, (unsigned long long)B.cnt.stops,
	       (unsigned long long)B.cnt.deletes, (unsigned long long)B.cnt.hb_acks,
	       (unsigned long long)(B.cnt.unexpected + B.cnt.errors));
	printf("nodes sent RegisterNode %llu, NodeReport %llu, Heartbeat %llu, PartitionStatus "
	       "%llu, VolumeStatus %llu\n",
	       (unsigned long long)B.cnt.registers, (unsigned long long)B.cnt.reports,
	       (unsigned long long)B.cnt.heartbeats, (unsigned long long)B.cnt.statuses,
	       (unsigned long long)B.cnt.vol_statuses);
	printf("end state  %u/%u partitions RUNNING where placed; NodeList %u/%u up, %llu vCPUs "
	       "used\n",
	       running, B.nparts, B.list_up, B.nodes, (unsigned long long)B.list_vcpus_used);
	{
		char wal[160];

		snprintf(wal, sizeof(wal), "%s-wal", B.db);
		printf("store      %.1f MiB database + %.1f MiB WAL\n", file_mib(B.db),
		       file_mib(wal));
	}
	if (B.nfail)
		printf("checks     %u FAILED (see stderr)\n", B.nfail);
	else
		printf("checks     all held\n");
	fflush(stdout);

	/* Orderly teardown: connections closed and freed, then fabctld. */
	B.stopping = true;
	if (B.admin)
		fab_conn_close(B.admin, 0, "bench done");
	for (unsigned i = 0; i < B.nodes; i++)
		if (B.node[i].conn)
			fab_conn_close(B.node[i].conn, 0, "bench done");
	{
		/* Close callbacks run from the loop; a few turns suffice. */
		double until = bench_now_us() + 10e6;

		while (B.live_conns && bench_now_us() < until)
			ev_run(B.loop, EVRUN_ONCE);
	}
	ev_timer_stop(B.loop, &B.tick);
	for (unsigned i = 0; i < B.nodes; i++)
		if (B.node[i].ctx)
			SSL_CTX_free(B.node[i].ctx);
	if (B.admin_ctx)
		SSL_CTX_free(B.admin_ctx);
	th_cleanup();
	free(B.node);
	free(B.reg_us);
	free(B.part);
	free(B.vol);
	free(lat);
	free(created);
	return B.nfail ? 1 : 0;
}
