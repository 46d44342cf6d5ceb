// SPDX-License-Identifier: MIT
/*
 * fabctl as a process: usage errors, help, exit codes, and every command
 * against a fake controller that speaks the real protocol (mutual TLS,
 * framed protobuf Envelopes) from a thread of this test. The fake answers
 * from scripts keyed by name, so waits, refusals and odd replies are
 * exact; nothing here needs KVM or a node.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/tls.h"
#include "harness.h"
#include "proto/fabric.pb-c.h"

#define ST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x

static char dir[64], pki[128];

/* ---- the fake controller ---------------------------------------------------- */

#define MAX_CONNS  16
#define MAX_BODIES 100
#define MAX_NAMES  32

struct fake {
	pthread_t thread;
	struct ev_loop *loop;
	ev_async stop;
	ev_io lio;
	int lfd;
	SSL_CTX *ctx;
	char addr[64];
	bool stopping;
	struct fab_conn *conns[MAX_CONNS];
	/* shared with the test thread */
	pthread_mutex_t lock;
	unsigned accepted;	       /* connections */
	unsigned requests[MAX_BODIES]; /* by body case */
	uint8_t *last[MAX_BODIES];     /* the latest request of each kind, packed */
	size_t last_len[MAX_BODIES];
	struct {
		char name[64];
		unsigned n;
	} seen[MAX_NAMES]; /* replies per name: a script's position */
};

static struct fake fk;

/* In the fake's thread: cmocka's asserts long-jump on the main thread's
 * stack, so a broken expectation here ends the test program loudly. */
#define FAKE_CHECK(cond)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "fake controller: %s failed at line %d\n", #cond, \
				__LINE__);                                                \
			abort();                                                          \
		}                                                                         \
	} while (0)

static unsigned next_step(const char *name)
{
	for (int i = 0; i < MAX_NAMES; i++) {
		if (!fk.seen[i].name[0])
			snprintf(fk.seen[i].name, sizeof(fk.seen[i].name), "%s", name);
		if (!strcmp(fk.seen[i].name, name))
			return fk.seen[i].n++;
	}
	return 0;
}

static void send_env(struct fab_conn *c, Fab__Envelope *e, uint64_t id)
{
	e->id = id;
	FAKE_CHECK(fab_conn_send_pb(c, &e->base) == 0);
}

static void send_error(struct fab_conn *c, uint64_t id, int code, const char *msg)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__Error err = FAB__ERROR__INIT;

	err.code = code;
	err.message = (char *)msg;
	e.body_case = FAB__ENVELOPE__BODY_ERROR;
	e.error = &err;
	send_env(c, &e, id);
}

/* Names that make any request about them fail with an Error. */
static const struct {
	const char *name;
	int code;
	const char *msg;
} refusals[] = {
	{ "enoent", -ENOENT, "" },
	{ "eexist", -EEXIST, "" },
	{ "ebusy", -EBUSY, "" },
	{ "enospc", -ENOSPC, "" },
	{ "eacces", -EACCES, "" },
	{ "eperm", -EPERM, "" },
	{ "einval", -EINVAL, "" },
	{ "eio", -EIO, "" },
	{ "terse", -ENOENT, "no such thing" },
	{ "named", -ENOENT, "partition 'named' is not in the store" },
	{ "vol9", -ENOENT, "volume 'v9' not found" },
};

static bool refuse(struct fab_conn *c, uint64_t id, const char *name)
{
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		if (!strcmp(name, refusals[i].name)) {
			send_error(c, id, refusals[i].code, refusals[i].msg);
			return true;
		}
	}
	return false;
}

/* ---- nodes ---- */

static char *tr_both[] = { "tcp", "rdma" };
static char *vsps[] = { "storage" };
static char *a_parts[] = { "web1", "web3" };
static char *a_vols[] = { "v2", "v\"3\\" };
static char *b_vols[] = { "v1" };

static void node_a(Fab__NodeInfo *n)
{
	fab__node_info__init(n);
	n->name = "a";
	n->state = FAB__NODE_STATE__NODE_STATE_UP;
	n->vcpus = 8;
	n->vcpus_used = 2;
	n->memory_bytes = 4ull << 30;
	n->memory_used = 1ull << 30;
	n->transports = tr_both;
	n->n_transports = 2;
	n->vsps = vsps;
	n->n_vsps = 1;
	n->data_addr = "10.0.0.1:7800";
	n->peer_addr = "10.0.0.1:40000";
	n->version = "0.1.0";
	n->generation = 3;
	n->last_seen_unix_ms = 1;
	n->partitions = a_parts;
	n->n_partitions = 2;
	n->volumes = a_vols;
	n->n_volumes = 2;
}

static void node_b(Fab__NodeInfo *n)
{
	fab__node_info__init(n);
	n->name = "b";
	n->state = FAB__NODE_STATE__NODE_STATE_DOWN;
	n->drained = true;
	n->vcpus = 4;
	n->memory_bytes = 2ull << 30;
	n->transports = tr_both;
	n->n_transports = 2;
	n->vsps = vsps;
	n->n_vsps = 1;
	/* odd text a controller might pass on from a node */
	n->version = "v\"1\\2\n\x01";
	n->volumes = b_vols;
	n->n_volumes = 1;
}

static void reply_node_list(struct fab_conn *c, uint64_t id)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__NodeListReply r = FAB__NODE_LIST_REPLY__INIT;
	Fab__NodeInfo a, b, *v[] = { &a, &b };

	node_a(&a);
	node_b(&b);
	r.nodes = v;
	r.n_nodes = 2;
	e.body_case = FAB__ENVELOPE__BODY_NODE_LIST_REPLY;
	e.node_list_reply = &r;
	send_env(c, &e, id);
}

static void reply_node(struct fab_conn *c, uint64_t id, const char *name, int drained)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__NodeReply r = FAB__NODE_REPLY__INIT;
	Fab__NodeInfo n;

	if (!strcmp(name, "b"))
		node_b(&n);
	else
		node_a(&n);
	if (drained >= 0)
		n.drained = drained;
	r.node = &n;
	e.body_case = FAB__ENVELOPE__BODY_NODE_REPLY;
	e.node_reply = &r;
	send_env(c, &e, id);
}

/* ---- volumes ---- */

struct vstep {
	const char *state, *node, *error;
};

#define V(state, node, error)      \
	{                          \
		state, node, error \
	}

/* Volume scripts: the create reply is step 0, each show the next step
 * (the last repeats). */
static const struct {
	const char *name;
	struct vstep steps[4];
	bool close_after; /* close the connection after each reply */
} vscripts[] = {
	{ .name = "v1",
	  .steps = { V("creating", "b", NULL), V("creating", "b", NULL), V("creating", "b", NULL),
		     V("ready", "b", NULL) } },
	{ .name = "bad",
	  .steps = { V("creating", "b", NULL), V("failed", "b", "disk full on b") } },
	{ .name = "flaky",
	  .steps = { V("creating", "a", NULL), V("creating", "a", NULL), V("ready", "a", NULL) },
	  .close_after = true },
	{ .name = "slowvol", .steps = { V("creating", "a", NULL) } },
};

static void fill_volume(Fab__VolumeInfo *v, const char *name, const struct vstep *s)
{
	fab__volume_info__init(v);
	v->name = (char *)name;
	v->node = (char *)(s && s->node ? s->node : "a");
	v->state = (char *)(s ? s->state : "ready");
	v->error = (char *)(s && s->error ? s->error : "");
	v->size_bytes = 1ull << 30;
	v->path = "/var/lib/fabric/volumes/x.img";
	v->created_unix_ms = 1;
}

static void reply_volume(struct fab_conn *c, uint64_t id, const char *name)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__VolumeReply r = FAB__VOLUME_REPLY__INIT;
	Fab__VolumeInfo v;
	bool close_after = false;
	const struct vstep *s = NULL;

	for (size_t i = 0; i < sizeof(vscripts) / sizeof(vscripts[0]); i++) {
		if (strcmp(vscripts[i].name, name))
			continue;
		unsigned k = next_step(name), n = 0;

		while (n < 4 && vscripts[i].steps[n].state)
			n++;
		s = &vscripts[i].steps[k < n ? k : n - 1];
		close_after = vscripts[i].close_after;
	}
	fill_volume(&v, name, s);
	r.volume = &v;
	e.body_case = FAB__ENVELOPE__BODY_VOLUME_REPLY;
	e.volume_reply = &r;
	send_env(c, &e, id);
	if (close_after)
		fab_conn_close_after_flush(c);
}

static void reply_volume_list(struct fab_conn *c, uint64_t id)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__VolumeListReply r = FAB__VOLUME_LIST_REPLY__INIT;
	Fab__VolumeInfo v1, v2, v3, v4, *v[] = { &v1, &v2, &v3, &v4 };
	struct vstep s1 = V("ready", "b", NULL), s2 = V("ready", "a", NULL),
		     s4 = V("failed", "gone", NULL);

	fill_volume(&v1, "v1", &s1);
	v1.attached_to = "web1";
	fill_volume(&v2, "v2", &s2);
	fill_volume(&v3, "v\"3\\", &s2);
	fill_volume(&v4, "orphan", &s4);
	v4.error = "node\tgone\x1b[31m";
	r.volumes = v;
	r.n_volumes = 4;
	e.body_case = FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY;
	e.volume_list_reply = &r;
	send_env(c, &e, id);
}

/* ---- partitions ---- */

struct pstep {
	Fab__PartitionState st;
	const char *node;
	int exit_status;
	const char *reason;
	int64_t state_ms;
};

#define P(st, node, exit, reason, ms)          \
	{                                      \
		ST(st), node, exit, reason, ms \
	}

static const struct {
	const char *name;
	struct pstep steps[5];
} pscripts[] = {
	{ "web1",
	  { P(PENDING, NULL, 0, NULL, 0), P(PENDING, NULL, 0, NULL, 0),
	    P(SCHEDULED, "a", 0, NULL, 0), P(RUNNING, "a", 0, NULL, 0) } },
	{ "crash1", { P(SCHEDULED, "a", 0, NULL, 0), P(CRASHED, "a", 0, "triple fault", 0) } },
	{ "exit0", { P(SCHEDULED, "a", 0, NULL, 0), P(EXITED, "a", 0, NULL, 0) } },
	{ "exit3", { P(SCHEDULED, "a", 0, NULL, 0), P(EXITED, "a", 3, NULL, 0) } },
	{ "failed1",
	  { P(PENDING, NULL, 0, NULL, 0), P(FAILED, "a", 0, "image 'nope' not found", 0) } },
	{ "nofit", { P(PENDING, "", 0, "no node can run nofit: a: 8 vCPUs free, 16 wanted", 0) } },
	{ "nofit2", { P(PENDING, "", 0, "waiting for capacity", 0) } },
	{ "slow", { P(SCHEDULED, "a", 0, NULL, 0) } },
	/* start of a partition that had exited: the reply still shows the
	 * old run, the next show the new one */
	{ "rerun",
	  { P(EXITED, "a", 1, "", 5000), P(EXITED, "a", 1, "", 5000),
	    P(RUNNING, "b", 0, "", 9000) } },
	{ "stopme",
	  { P(STOPPING, "a", 0, NULL, 0), P(STOPPING, "a", 0, NULL, 0),
	    P(STOPPED, "a", 0, NULL, 0) } },
};

static char *spec_vols[] = { "v1", "v2" };

static void fill_partition(Fab__PartitionInfo *p, Fab__PartitionSpec *s, const char *name,
			   const struct pstep *st)
{
	fab__partition_info__init(p);
	fab__partition_spec__init(s);
	s->name = (char *)name;
	s->image = "hello";
	s->vcpus = 1;
	s->memory_bytes = 64ull << 20;
	s->restart = FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE;
	p->spec = s;
	p->state = st ? st->st : ST(RUNNING);
	p->node = (char *)(!st ? "a" : st->node ? st->node : "");
	p->exit_status = st ? st->exit_status : 0;
	p->reason = (char *)(st && st->reason ? st->reason : "");
	p->state_unix_ms = st && st->state_ms ? st->state_ms : 1;
	p->desired_running = true;
	p->epoch = 2;
}

static void reply_partition(struct fab_conn *c, uint64_t id, const char *name)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__PartitionReply r = FAB__PARTITION_REPLY__INIT;
	Fab__PartitionInfo p;
	Fab__PartitionSpec s;
	Fab__ChannelInfo c0 = FAB__CHANNEL_INFO__INIT, c1 = FAB__CHANNEL_INFO__INIT;
	Fab__ChannelInfo *chans[] = { &c0, &c1 };
	const struct pstep *st = NULL;

	if (!strcmp(name, "nospec")) {
		/* a malformed reply: the spec is missing */
		fab__partition_info__init(&p);
		r.partition = &p;
		e.body_case = FAB__ENVELOPE__BODY_PARTITION_REPLY;
		e.partition_reply = &r;
		send_env(c, &e, id);
		return;
	}
	if (!strcmp(name, "wrongkind")) {
		reply_node(c, id, "a", -1);
		return;
	}
	for (size_t i = 0; i < sizeof(pscripts) / sizeof(pscripts[0]); i++) {
		if (strcmp(pscripts[i].name, name))
			continue;
		unsigned k = next_step(name), n = 0;

		while (n < 5 && pscripts[i].steps[n].st)
			n++;
		st = &pscripts[i].steps[k < n ? k : n - 1];
	}
	fill_partition(&p, &s, name, st);
	if (!strcmp(name, "chan")) {
		s.volumes = spec_vols;
		s.n_volumes = 2;
		c0.device = "disk0";
		c0.volume = "v1";
		c0.remote = true;
		c0.transport = "rdma";
		c0.vsp_node = "b";
		c0.health = "failing";
		c0.io_errors = 3;
		c1.device = "disk1";
		c1.volume = "v2";
		c1.transport = "local";
		c1.vsp_node = "a";
		c1.health = "ok";
		p.channels = chans;
		p.n_channels = 2;
	}
	r.partition = &p;
	e.body_case = FAB__ENVELOPE__BODY_PARTITION_REPLY;
	e.partition_reply = &r;
	send_env(c, &e, id);
}

static void reply_partition_list(struct fab_conn *c, uint64_t id)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__PartitionListReply r = FAB__PARTITION_LIST_REPLY__INIT;
	Fab__PartitionInfo p1, p2, p3, *v[] = { &p1, &p2, &p3 };
	Fab__PartitionSpec s1, s2, s3;
	Fab__ChannelInfo c0 = FAB__CHANNEL_INFO__INIT, c1 = FAB__CHANNEL_INFO__INIT;
	Fab__ChannelInfo *chans[] = { &c0, &c1 };
	struct pstep run = P(RUNNING, "a", 0, NULL, 0), pend = P(PENDING, "", 0, "no node fits", 0);
	static char *v2[] = { "v2" }, *v1[] = { "v1" };

	/* web1 on a: v1 remote over rdma (reported), v2 local (reported) */
	fill_partition(&p1, &s1, "web1", &run);
	s1.volumes = spec_vols;
	s1.n_volumes = 2;
	c0.device = "disk0";
	c0.volume = "v1";
	c0.remote = true;
	c0.transport = "rdma";
	c0.vsp_node = "b";
	c1.device = "disk1";
	c1.volume = "v2";
	c1.transport = "local";
	c1.vsp_node = "a";
	p1.channels = chans;
	p1.n_channels = 2;
	/* web2 placed nowhere, wants v2 */
	fill_partition(&p2, &s2, "web2", &pend);
	p2.node = "";
	s2.volumes = v2;
	s2.n_volumes = 1;
	/* web3 on a with v1 on b and no channel report: where they are
	 * decides (remote, over the transport both nodes have) */
	fill_partition(&p3, &s3, "web3", &run);
	s3.volumes = v1;
	s3.n_volumes = 1;
	p3.state = ST(CRASHED);
	r.partitions = v;
	r.n_partitions = 3;
	e.body_case = FAB__ENVELOPE__BODY_PARTITION_LIST_REPLY;
	e.partition_list_reply = &r;
	send_env(c, &e, id);
}

static void reply_placement(struct fab_conn *c, uint64_t id, const char *name)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__Placement p = FAB__PLACEMENT__INIT;
	Fab__NodeVerdict v0 = FAB__NODE_VERDICT__INIT, v1 = FAB__NODE_VERDICT__INIT,
			 v2 = FAB__NODE_VERDICT__INIT, v3 = FAB__NODE_VERDICT__INIT;
	Fab__NodeVerdict *v[] = { &v0, &v1, &v2, &v3 };
	bool none = !strcmp(name, "nofit2") || !strcmp(name, "nothing");

	p.partition = (char *)name;
	p.node = none ? "" : "n-high";
	p.policy = "spread";
	p.epoch = 4;
	p.trigger = "create";
	p.decided_unix_ms = 1700000000000;
	v0.node = "n-down";
	v0.reason = "down";
	v1.node = "n-low";
	v1.feasible = !none;
	v1.score = 0.25;
	v1.reason = "free share 0.25";
	v2.node = "n-high";
	v2.feasible = !none;
	v2.score = 0.75;
	v2.reason = "free share 0.75";
	v3.node = "a-drained";
	v3.reason = "drained";
	p.verdicts = v;
	p.n_verdicts = 4;
	e.body_case = FAB__ENVELOPE__BODY_PLACEMENT;
	e.placement = &p;
	send_env(c, &e, id);
}

static void reply_console(struct fab_conn *c, uint64_t id, const char *name)
{
	static const char text[] = "boot\x01ok\n\xff\xfe done\n";
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__ConsoleReply r = FAB__CONSOLE_REPLY__INIT;

	r.data.data = (uint8_t *)text;
	r.data.len = sizeof(text) - 1;
	r.truncated = !strcmp(name, "long");
	e.body_case = FAB__ENVELOPE__BODY_CONSOLE_REPLY;
	e.console_reply = &r;
	send_env(c, &e, id);
}

/* ---- migrations ---- */

#define PH(x) FAB__MIGRATION_PHASE__MIGRATION_PHASE_##x

struct mstep {
	Fab__MigrationPhase ph;
	uint32_t round;
	uint64_t sent, rate;
	const char *error;
};

/* Migration scripts: the migrate reply is step 0, each show the next. */
static const struct {
	const char *name;
	struct mstep steps[8];
} mscripts[] = {
	{ "mig1",
	  { { PH(PREPARE), 0, 0, 0, NULL },
	    { PH(COPY), 1, 32 << 20, 0, NULL },
	    { PH(COPY), 2, 70 << 20, 8 << 20, NULL },
	    { PH(COPY), 3, 75 << 20, 1 << 20, NULL },
	    { PH(STOPPED), 3, 76 << 20, 0, NULL },
	    { PH(COMMITTED), 3, 76 << 20, 0, NULL },
	    { PH(DONE), 3, 76 << 20, 0, NULL } } },
	{ "mig2",
	  { { PH(PREPARE), 0, 0, 0, NULL },
	    { PH(COPY), 1, 32 << 20, 0, NULL },
	    { PH(COPY), 2, 70 << 20, 8 << 20, NULL },
	    { PH(DONE), 3, 76 << 20, 0, NULL } } },
	{ "migfail",
	  { { PH(PREPARE), 0, 0, 0, NULL },
	    { PH(COPY), 1, 10 << 20, 0, NULL },
	    { PH(ABORTED), 1, 10 << 20, 0,
	      "source b: guest dirties 900 MiB/s, link copies 100 MiB/s" } } },
	{ "migslow", { { PH(COPY), 1, 1 << 20, 0, NULL } } },
};

static void reply_migration(struct fab_conn *c, uint64_t id, const char *name, bool cancel)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__MigrationReply r = FAB__MIGRATION_REPLY__INIT;
	Fab__MigrationInfo m = FAB__MIGRATION_INFO__INIT;
	Fab__Placement pl = FAB__PLACEMENT__INIT;
	Fab__NodeVerdict v0 = FAB__NODE_VERDICT__INIT, *vv[] = { &v0 };
	const struct mstep *st = NULL;

	for (size_t i = 0; i < sizeof(mscripts) / sizeof(mscripts[0]); i++) {
		if (strcmp(mscripts[i].name, name))
			continue;
		unsigned k = next_step(name), n = 0;

		while (n < 8 && mscripts[i].steps[n].ph)
			n++;
		st = &mscripts[i].steps[k < n ? k : n - 1];
	}
	m.id = 7;
	m.partition = (char *)name;
	m.source = "a";
	m.target = "b";
	m.phase = cancel ? PH(ABORTED) : st ? st->ph : PH(DONE);
	m.epoch_from = 2;
	m.epoch_to = 3;
	m.trigger = "operator admin";
	m.downtime_budget_ms = 50;
	m.max_rounds = 30;
	m.ram_bytes = 64 << 20;
	m.round = st ? st->round : 1;
	m.bytes_sent = st ? st->sent : 64 << 20;
	m.dirty_bytes_per_s = st ? st->rate : 0;
	m.link_bytes_per_s = 100 << 20;
	m.est_downtime_us = 4200;
	m.error = (char *)(cancel ? "cancelled by admin" : st && st->error ? st->error : "");
	m.started_unix_ms = 1700000000000;
	if (m.phase == PH(DONE) || m.phase == PH(ABORTED))
		m.ended_unix_ms = 1700000001500;
	if (m.phase == PH(DONE))
		m.downtime_us = 12345;
	r.migration = &m;
	if (!st || st == &mscripts[0].steps[0]) {
		pl.partition = (char *)name;
		pl.node = "b";
		pl.epoch = 3;
		v0.node = "b";
		v0.feasible = true;
		v0.reason = "score 0.50";
		pl.verdicts = vv;
		pl.n_verdicts = 1;
		r.placement = &pl;
	}
	e.body_case = FAB__ENVELOPE__BODY_MIGRATION_REPLY;
	e.migration_reply = &r;
	send_env(c, &e, id);
}

static void reply_migration_list(struct fab_conn *c, uint64_t id)
{
	Fab__Envelope e = FAB__ENVELOPE__INIT;
	Fab__MigrationListReply r = FAB__MIGRATION_LIST_REPLY__INIT;
	Fab__MigrationInfo m1 = FAB__MIGRATION_INFO__INIT, m2 = FAB__MIGRATION_INFO__INIT;
	Fab__MigrationInfo *v[] = { &m1, &m2 };

	m1.id = 1;
	m1.partition = "web1";
	m1.source = "a";
	m1.target = "b";
	m1.phase = PH(DONE);
	m1.round = 4;
	m1.bytes_sent = 80 << 20;
	m1.downtime_us = 9000;
	m1.trigger = "drain a";
	m2.id = 2;
	m2.partition = "web3";
	m2.source = "a";
	m2.target = "c";
	m2.phase = PH(ABORTED);
	m2.error = "target node c lost (lease expired)";
	m2.trigger = "operator admin";
	r.migrations = v;
	r.n_migrations = 2;
	e.body_case = FAB__ENVELOPE__BODY_MIGRATION_LIST_REPLY;
	e.migration_list_reply = &r;
	send_env(c, &e, id);
}

/* The name a request is about, or "". */
static const char *req_name(const Fab__Envelope *r)
{
	switch (r->body_case) {
	case FAB__ENVELOPE__BODY_NODE_SHOW:
		return r->node_show->name;
	case FAB__ENVELOPE__BODY_NODE_DRAIN:
		return r->node_drain->name;
	case FAB__ENVELOPE__BODY_NODE_UNDRAIN:
		return r->node_undrain->name;
	case FAB__ENVELOPE__BODY_VOLUME_CREATE:
		return r->volume_create->name;
	case FAB__ENVELOPE__BODY_VOLUME_DELETE:
		return r->volume_delete->name;
	case FAB__ENVELOPE__BODY_VOLUME_SHOW:
		return r->volume_show->name;
	case FAB__ENVELOPE__BODY_PARTITION_CREATE:
		return r->partition_create->spec ? r->partition_create->spec->name : "";
	case FAB__ENVELOPE__BODY_PARTITION_START:
		return r->partition_start->name;
	case FAB__ENVELOPE__BODY_PARTITION_STOP:
		return r->partition_stop->name;
	case FAB__ENVELOPE__BODY_PARTITION_DELETE:
		return r->partition_delete->name;
	case FAB__ENVELOPE__BODY_PARTITION_SHOW:
		return r->partition_show->name;
	case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
		return r->partition_explain->name;
	case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
		return r->partition_console->name;
	case FAB__ENVELOPE__BODY_PARTITION_MIGRATE:
		return r->partition_migrate->name;
	case FAB__ENVELOPE__BODY_MIGRATION_SHOW:
		return r->migration_show->partition;
	case FAB__ENVELOPE__BODY_MIGRATION_CANCEL:
		return r->migration_cancel->partition;
	default:
		return "";
	}
}

static void fake_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	Fab__Envelope *r = fab__envelope__unpack(NULL, len, p);
	const char *name;
	uint64_t id;

	FAKE_CHECK(r != NULL);
	id = r->id;
	name = req_name(r);
	pthread_mutex_lock(&fk.lock);
	if ((unsigned)r->body_case < MAX_BODIES) {
		fk.requests[r->body_case]++;
		free(fk.last[r->body_case]);
		fk.last[r->body_case] = malloc(len ? len : 1);
		FAKE_CHECK(fk.last[r->body_case] != NULL);
		memcpy(fk.last[r->body_case], p, len);
		fk.last_len[r->body_case] = len;
	}
	pthread_mutex_unlock(&fk.lock);

	if (!strcmp(name, "silent")) {
		/* never answers */
	} else if (refuse(c, id, name)) {
	} else {
		switch (r->body_case) {
		case FAB__ENVELOPE__BODY_NODE_LIST:
			reply_node_list(c, id);
			break;
		case FAB__ENVELOPE__BODY_NODE_SHOW:
			reply_node(c, id, name, -1);
			break;
		case FAB__ENVELOPE__BODY_NODE_DRAIN:
			reply_node(c, id, name, 1);
			break;
		case FAB__ENVELOPE__BODY_NODE_UNDRAIN:
			reply_node(c, id, name, 0);
			break;
		case FAB__ENVELOPE__BODY_VOLUME_CREATE:
		case FAB__ENVELOPE__BODY_VOLUME_SHOW:
		case FAB__ENVELOPE__BODY_VOLUME_DELETE:
			reply_volume(c, id, name);
			break;
		case FAB__ENVELOPE__BODY_VOLUME_LIST:
			reply_volume_list(c, id);
			break;
		case FAB__ENVELOPE__BODY_PARTITION_CREATE:
		case FAB__ENVELOPE__BODY_PARTITION_START:
		case FAB__ENVELOPE__BODY_PARTITION_STOP:
		case FAB__ENVELOPE__BODY_PARTITION_DELETE:
		case FAB__ENVELOPE__BODY_PARTITION_SHOW:
			reply_partition(c, id, name);
			break;
		case FAB__ENVELOPE__BODY_PARTITION_LIST:
			reply_partition_list(c, id);
			break;
		case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
			reply_placement(c, id, name);
			break;
		case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
			reply_console(c, id, name);
			break;
		case FAB__ENVELOPE__BODY_PARTITION_MIGRATE:
		case FAB__ENVELOPE__BODY_MIGRATION_SHOW:
			reply_migration(c, id, name, false);
			break;
		case FAB__ENVELOPE__BODY_MIGRATION_CANCEL:
			reply_migration(c, id, name, true);
			break;
		case FAB__ENVELOPE__BODY_MIGRATION_LIST:
			reply_migration_list(c, id);
			break;
		default:
			send_error(c, id, -EPROTO, "unexpected message");
			break;
		}
	}
	fab__envelope__free_unpacked(r, NULL);
}

static void fake_open(struct fab_conn *c, void *arg)
{
}

static void fake_close(struct fab_conn *c, int err, void *arg)
{
	bool any = false;

	for (int i = 0; i < MAX_CONNS; i++) {
		if (fk.conns[i] == c)
			fk.conns[i] = NULL;
		any |= fk.conns[i] != NULL;
	}
	if (fk.stopping && !any)
		ev_break(fk.loop, EVBREAK_ALL);
}

static const struct fab_conn_ops fake_ops = {
	.open_cb = fake_open,
	.frame_cb = fake_frame,
	.close_cb = fake_close,
};

static void fake_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct fab_conn_opts opts = { .peer_roles = FAB_ROLE_BIT(FAB_ROLE_ADMIN) };
	int fd = accept4(fk.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int slot = -1;

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONNS && slot < 0; i++)
		if (!fk.conns[i])
			slot = i;
	if (slot < 0) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&fk.lock);
	fk.accepted++;
	pthread_mutex_unlock(&fk.lock);
	FAKE_CHECK(fab_conn_accept(loop, fk.ctx, fd, "fabctl", &opts, &fake_ops, NULL,
				   &fk.conns[slot]) == 0);
}

static void fake_stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	bool any = false;

	fk.stopping = true;
	ev_io_stop(loop, &fk.lio);
	ev_async_stop(loop, &fk.stop);
	for (int i = 0; i < MAX_CONNS; i++) {
		if (fk.conns[i]) {
			fab_conn_close(fk.conns[i], 0, "test over");
			any = true;
		}
	}
	if (!any)
		ev_break(loop, EVBREAK_ALL);
}

static void *fake_main(void *arg)
{
	ev_run(fk.loop, 0);
	return NULL;
}

static void fake_start(void)
{
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.lock, NULL);
	assert_int_equal(fab_tls_ctx_new(pki, FAB_ROLE_CONTROLLER, "controller", 1, &fk.ctx), 0);
	fk.lfd = fab_listen("127.0.0.1:0", fk.addr, sizeof(fk.addr));
	assert_true(fk.lfd >= 0);
	fk.loop = ev_loop_new(EVFLAG_AUTO);
	ev_io_init(&fk.lio, fake_accept, fk.lfd, EV_READ);
	ev_io_start(fk.loop, &fk.lio);
	ev_async_init(&fk.stop, fake_stop_cb);
	ev_async_start(fk.loop, &fk.stop);
	assert_int_equal(pthread_create(&fk.thread, NULL, fake_main, NULL), 0);
}

static void fake_stop(void)
{
	if (!fk.loop)
		return;
	ev_async_send(fk.loop, &fk.stop);
	pthread_join(fk.thread, NULL);
	ev_loop_destroy(fk.loop);
	close(fk.lfd);
	SSL_CTX_free(fk.ctx);
	for (int i = 0; i < MAX_BODIES; i++)
		free(fk.last[i]);
	pthread_mutex_destroy(&fk.lock);
	fk.loop = NULL;
}

static unsigned fake_requests(Fab__Envelope__BodyCase b)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = fk.requests[b];
	pthread_mutex_unlock(&fk.lock);
	return n;
}

static unsigned fake_accepted(void)
{
	unsigned n;

	pthread_mutex_lock(&fk.lock);
	n = fk.accepted;
	pthread_mutex_unlock(&fk.lock);
	return n;
}

/* The latest request of kind b, decoded (free with
 * fab__envelope__free_unpacked). */
static Fab__Envelope *fake_last(Fab__Envelope__BodyCase b)
{
	Fab__Envelope *e = NULL;

	pthread_mutex_lock(&fk.lock);
	if (fk.last[b])
		e = fab__envelope__unpack(NULL, fk.last_len[b], fk.last[b]);
	pthread_mutex_unlock(&fk.lock);
	assert_non_null(e);
	return e;
}

/* ---- running fabctl ------------------------------------------------------------ */

static struct {
	char *out, *err;
} res;

static int run_argv(const char *const *argv)
{
	char o[128], e[128];
	int rc;

	free(res.out);
	free(res.err);
	snprintf(o, sizeof(o), "%s/out", dir);
	snprintf(e, sizeof(e), "%s/err", dir);
	rc = th_run(o, e, NULL, argv, 60);
	res.out = th_slurp(o);
	res.err = th_slurp(e);
	if (!res.out)
		res.out = strdup("");
	if (!res.err)
		res.err = strdup("");
	/* In a sanitizer build every run must be clean. */
	if (strstr(res.err, "Sanitizer") || strstr(res.err, "runtime error:"))
		fail_msg("sanitizer report from %s:\n%s", argv[0], res.err);
	return rc;
}

/* fabctl --controller <fake> --pki <pki> ARGS... (NULL-terminated) */
static int fabctl(const char *first, ...)
{
	const char *argv[48] = { FABCTL, "--controller", fk.addr[0] ? fk.addr : "127.0.0.1:1",
				 "--pki", pki };
	int n = 5;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		assert_true(n < 47);
		argv[n++] = a;
	}
	va_end(ap);
	argv[n] = NULL;
	return run_argv(argv);
}

#define HAS(text, needle)                                                      \
	do {                                                                   \
		if (!strstr((text), (needle)))                                 \
			fail_msg("missing: [%s]\nin: [%s]", (needle), (text)); \
	} while (0)

#define HAS_NOT(text, needle)                                                     \
	do {                                                                      \
		if (strstr((text), (needle)))                                     \
			fail_msg("unexpected: [%s]\nin: [%s]", (needle), (text)); \
	} while (0)

/* One line on stderr, ending with a newline. */
static void one_line(const char *s)
{
	const char *nl = strchr(s, '\n');

	if (!nl || nl[1])
		fail_msg("not one line: [%s]", s);
}

static int setup(void **state)
{
	const char *argv[] = { FABCTL, "pki", "init", "--dir", pki, NULL };

	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	memset(&res, 0, sizeof(res));
	return th_run(NULL, NULL, NULL, argv, 30) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	fake_stop();
	memset(fk.addr, 0, sizeof(fk.addr));
	free(res.out);
	free(res.err);
	memset(&res, 0, sizeof(res));
	th_cleanup();
	return 0;
}

/* ---- usage ------------------------------------------------------------------------ */

static void test_help(void **state)
{
	static const char *const codes[] = {
		"0  success",  "1  the operation failed", "2  usage error",	  "3  not found",
		"4  conflict", "5  no node fits",	  "6  permission denied", "7  cannot reach",
	};
	const char *argv[] = { FABCTL, "--help", NULL };

	assert_int_equal(run_argv(argv), 0);
	HAS(res.out, "exit codes:");
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		HAS(res.out, codes[i]);
	for (const char *const *c = (const char *const[]){ "node list", "node drain NAME",
							   "volume create NAME --size SIZE",
							   "partition create NAME --image IMAGE",
							   "partition explain NAME",
							   "cluster graph", "pki init", NULL };
	     *c; c++)
		HAS(res.out, *c);
	assert_int_equal(fabctl("partition", "create", "--help", NULL), 0);
	HAS(res.out, "usage: fabctl partition create NAME --image IMAGE");
	assert_int_equal(fabctl("volume", "--help", NULL), 0);
	HAS(res.out, "fabctl volume delete NAME");
	/* No command at all: the usage, as an error. */
	{
		const char *bare[] = { FABCTL, NULL };

		assert_int_equal(run_argv(bare), 2);
		HAS(res.err, "usage: fabctl");
	}
}

static void test_usage_errors(void **state)
{
	static const struct {
		const char *args[12];
		const char *msg;
	} cases[] = {
		{ { "frob" }, "unknown command 'frob'" },
		{ { "--frob", "node", "list" }, "unknown option '--frob'" },
		{ { "--timeout", "0", "node", "list" }, "--timeout wants seconds" },
		{ { "--timeout", "soon", "node", "list" }, "--timeout wants seconds" },
		{ { "--wait-timeout", "-1", "node", "list" }, "--wait-timeout wants seconds" },
		{ { "--timeout" }, "option '--timeout' wants a value" },
		{ { "cluster" }, "usage:" },
		{ { "node", "frob" },
		  "unknown node command 'frob' (one of: list, show, drain, undrain)" },
		{ { "node", "list", "extra" }, "node list: unexpected argument 'extra'" },
		{ { "node", "list", "--all" }, "node list: unknown option '--all'" },
		{ { "node", "show" }, "node show: which node? NAME is missing" },
		{ { "node", "show", "a", "b" }, "node show: unexpected argument 'b'" },
		{ { "node", "show", "Node_A" }, "invalid node name 'Node_A'" },
		{ { "node", "drain" }, "node drain: which node? NAME is missing" },
		{ { "node", "undrain", "-q", "a" }, "node undrain: unknown option '-q'" },
		{ { "volume", "create", "v1" }, "volume create: --size is required" },
		{ { "volume", "create", "--size", "1G" }, "which volume? NAME is missing" },
		{ { "volume", "create", "v1", "--size", "lots" },
		  "--size wants a size like 10G or 512M, not 'lots'" },
		{ { "volume", "create", "v1", "--size", "0" }, "--size wants a size" },
		{ { "volume", "create", "v1", "--size", "1Q" }, "--size wants a size" },
		{ { "volume", "create", "v1", "--size" }, "option '--size' wants a value" },
		{ { "volume", "create", "v1", "--size", "1G", "--node", "B!" },
		  "invalid --node 'B!'" },
		{ { "volume", "create", "../v", "--size", "1G" }, "invalid volume name '../v'" },
		{ { "volume", "show" }, "volume show: which volume? NAME is missing" },
		{ { "volume", "delete" }, "volume delete: which volume? NAME is missing" },
		{ { "volume", "delete", "v 1" }, "invalid volume name 'v 1'" },
		{ { "volume", "list", "--bogus" }, "volume list: unknown option '--bogus'" },
		{ { "volume", "resize", "v1" }, "unknown volume command 'resize'" },
		{ { "partition", "create", "web1" }, "partition create: --image is required" },
		{ { "partition", "create", "--image", "hello" },
		  "which partition? NAME is missing" },
		{ { "partition", "create", "Web1", "--image", "hello" },
		  "invalid partition name 'Web1'" },
		{ { "partition", "create", "web1", "web2", "--image", "hello" },
		  "unexpected argument 'web2'" },
		{ { "partition", "create", "web1", "--image", "hello", "--vcpus", "x" },
		  "--vcpus wants 1..64, not 'x'" },
		{ { "partition", "create", "web1", "--image", "hello", "--vcpus", "0" },
		  "--vcpus wants 1..64, not '0'" },
		{ { "partition", "create", "web1", "--image", "hello", "--vcpus", "65" },
		  "--vcpus wants 1..64, not '65'" },
		{ { "partition", "create", "web1", "--image", "hello", "--memory", "12Q" },
		  "--memory wants a size of at least 1M like 256M or 2G, not '12Q'" },
		{ { "partition", "create", "web1", "--image", "hello", "--memory", "4K" },
		  "--memory wants a size of at least 1M" },
		{ { "partition", "create", "web1", "--image", "hello", "--restart", "sometimes" },
		  "--restart wants never, on-failure or always, not 'sometimes'" },
		{ { "partition", "create", "web1", "--image", "hello", "--volume", "V1" },
		  "invalid volume name 'V1'" },
		{ { "partition", "create", "web1", "--image", "hello", "--volume", "v1", "--volume",
		    "v1" },
		  "--volume 'v1' given twice" },
		{ { "partition", "create", "web1", "--image", "hello", "--group", "g/1" },
		  "invalid --group 'g/1'" },
		{ { "partition", "create", "web1", "--image", "../../etc/passwd" },
		  "--image wants the name of an image" },
		{ { "partition", "create", "web1", "--image", "" }, "--image wants the name" },
		{ { "partition", "create", "web1", "--image", "hello", "--nope" },
		  "partition create: unknown option '--nope'" },
		{ { "partition", "start" }, "partition start: which partition? NAME is missing" },
		{ { "partition", "stop" }, "partition stop: which partition? NAME is missing" },
		{ { "partition", "stop", "web1", "--timeout", "soon" },
		  "--timeout wants seconds 1..3600, not 'soon'" },
		{ { "partition", "delete" }, "partition delete: which partition? NAME is missing" },
		{ { "partition", "show" }, "partition show: which partition? NAME is missing" },
		{ { "partition", "show", "a.b", "c" }, "unexpected argument 'c'" },
		{ { "partition", "explain" },
		  "partition explain: which partition? NAME is missing" },
		{ { "partition", "console" },
		  "partition console: which partition? NAME is missing" },
		{ { "partition", "console", "-web1" }, "unknown option '-w'" },
		{ { "partition", "list", "web1" }, "partition list: unexpected argument 'web1'" },
		{ { "partition", "migrate" },
		  "partition migrate: which partition? NAME is missing" },
		{ { "partition", "migrate", "web1", "--downtime", "0" },
		  "--downtime wants milliseconds 1..60000, not '0'" },
		{ { "partition", "migrate", "web1", "--downtime", "fast" },
		  "--downtime wants milliseconds 1..60000, not 'fast'" },
		{ { "partition", "migrate", "web1", "--max-rounds", "1001" },
		  "--max-rounds wants 1..1000, not '1001'" },
		{ { "partition", "migrate", "web1", "--to", "Node B" }, "invalid --to node name" },
		{ { "partition", "migrate", "web1", "--to" }, "option '--to' wants a value" },
		{ { "partition", "migrate", "web1", "web2" }, "unexpected argument 'web2'" },
		{ { "partition", "migrate", "web1", "--live" }, "unknown option '--live'" },
		{ { "migration", "show" }, "migration show: which partition? NAME is missing" },
		{ { "migration", "show", "web1", "--id", "x" }, "--id wants a migration id" },
		{ { "migration", "show", "--id", "0" }, "--id wants a migration id" },
		{ { "migration", "list", "web1" }, "migration list: unexpected argument 'web1'" },
		{ { "migration", "cancel" }, "migration cancel: which partition? NAME is missing" },
		{ { "migration", "pause", "web1" }, "unknown migration command 'pause'" },
		{ { "node", "drain", "a", "--now" }, "node drain: unknown option '--now'" },
		{ { "node", "show", "a", "--wait" }, "node show: unknown option '--wait'" },
		{ { "cluster", "graph", "now" }, "cluster graph: unexpected argument 'now'" },
		{ { "cluster", "graph", "--svg" }, "option '--svg' wants a value" },
		{ { "cluster", "graph", "--output", "x.dot", "--svg", "x.dot" },
		  "--output and --svg name the same file" },
		{ { "cluster", "draw" }, "unknown cluster command 'draw'" },
		{ { "--controller", "nocolon", "node", "list" },
		  "--controller wants HOST:PORT, not 'nocolon'" },
		{ { "--admin", "Root User", "node", "list" }, "invalid --admin name 'Root User'" },
	};
	char why[200];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* 127.0.0.1:1: nothing listens, so an argument error missed
		 * here would show as exit 7, not 2 */
		const char *argv[20] = { FABCTL, "--controller", "127.0.0.1:1", "--pki", pki };
		int n = 5, rc;

		for (int k = 0; cases[i].args[k]; k++)
			argv[n++] = cases[i].args[k];
		/* a later --controller wins over the one above */
		argv[n] = NULL;
		rc = run_argv(argv);
		snprintf(why, sizeof(why), "case %zu (%s %s): rc %d, stderr: %s", i,
			 cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "", rc, res.err);
		if (rc != 2)
			fail_msg("%s", why);
		HAS(res.err, cases[i].msg);
		if (strcmp(cases[i].msg, "usage:"))
			one_line(res.err);
		assert_string_equal(res.out, "");
	}
}

/* ---- the controller out of reach ------------------------------------------------ */

static void test_unreachable(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	char addr[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A port nothing listens on. */
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	{
		const char *argv[] = { FABCTL, "--controller", addr,   "--pki",
				       pki,    "node",	       "list", NULL };

		assert_int_equal(run_argv(argv), 7);
		HAS(res.err, "fabctl: cannot reach the controller at 127.0.0.1:");
		HAS(res.err, "refused");
		one_line(res.err);
	}
	{
		const char *argv[] = { FABCTL,	    "--controller", addr,   "--pki", pki,
				       "partition", "show",	    "web1", NULL };

		assert_int_equal(run_argv(argv), 7);
		HAS(res.err, "cannot reach the controller");
	}
	/* Something that accepts TCP and never speaks: the handshake runs
	 * out of --timeout. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = 0;
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	{
		const char *argv[] = { FABCTL, "--controller", addr,   "--pki", pki, "--timeout",
				       "1",    "volume",       "list", NULL };

		assert_int_equal(run_argv(argv), 7);
		HAS(res.err, "fabctl: no answer from the controller at 127.0.0.1:");
		one_line(res.err);
	}
	close(fd);
	/* A controller that takes the request and never answers. */
	fake_start();
	assert_int_equal(fabctl("--timeout", "1", "partition", "show", "silent", NULL), 7);
	HAS(res.err, "fabctl: no answer from the controller at 127.0.0.1:");
	HAS(res.err, "within 1 s");
	one_line(res.err);
	/* No admin credentials where --pki says. */
	{
		const char *argv[] = { FABCTL,	       "--controller", fk.addr, "--pki",
				       "/nonexistent", "node",	       "list",	NULL };

		assert_int_equal(run_argv(argv), 2);
		HAS(res.err, "cannot read the admin credentials: /nonexistent/ca.crt");
		one_line(res.err);
	}
}

/* ---- controller refusals -------------------------------------------------------- */

static void test_refusals(void **state)
{
	static const struct {
		const char *name;
		int rc;
		const char *msg;
	} cases[] = {
		{ "enoent", 3, "fabctl: partition 'enoent' not found\n" },
		{ "eexist", 4, "fabctl: partition 'eexist' already exists\n" },
		{ "ebusy", 4, "fabctl: partition 'ebusy' is in use\n" },
		{ "enospc", 5, "fabctl: partition 'enospc': no node fits\n" },
		{ "eacces", 6, "fabctl: partition 'eacces': permission denied" },
		{ "eperm", 6, "permission denied" },
		{ "einval", 2, "fabctl: partition 'einval': refused by the controller: Invalid" },
		{ "eio", 1,
		  "fabctl: partition 'eio': refused by the controller: Input/output error" },
		{ "terse", 3, "fabctl: partition 'terse': no such thing\n" },
		{ "named", 3, "fabctl: partition 'named' is not in the store\n" },
		{ "vol9", 3, "fabctl: partition 'vol9': volume 'v9' not found\n" },
	};

	fake_start();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = fabctl("partition", "show", cases[i].name, NULL);

		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d (%s)", cases[i].name, rc, cases[i].rc,
				 res.err);
		HAS(res.err, cases[i].msg);
		one_line(res.err);
	}
	/* The same mapping for other requests and kinds. */
	assert_int_equal(fabctl("volume", "delete", "ebusy", NULL), 4);
	HAS(res.err, "fabctl: volume 'ebusy' is in use");
	assert_int_equal(fabctl("node", "drain", "enoent", NULL), 3);
	HAS(res.err, "fabctl: node 'enoent' not found");
	assert_int_equal(fabctl("partition", "create", "enospc", "--image", "hello", NULL), 5);
	assert_int_equal(fabctl("volume", "create", "eexist", "--size", "1G", NULL), 4);
	HAS(res.err, "fabctl: volume 'eexist' already exists");
	/* Replies the CLI cannot use. */
	assert_int_equal(fabctl("partition", "show", "nospec", NULL), 1);
	HAS(res.err,
	    "fabctl: the controller sent a partition reply without a partition or its spec");
	assert_int_equal(fabctl("partition", "show", "wrongkind", NULL), 1);
	HAS(res.err, "fabctl: the controller sent a reply of another kind");
}

/* ---- nodes ------------------------------------------------------------------------- */

static void test_nodes(void **state)
{
	Fab__Envelope *e;

	fake_start();
	assert_int_equal(fabctl("node", "list", NULL), 0);
	HAS(res.out,
	    "NAME  STATE  DRAINED  CPU        MEM  PARTITIONS  TRANSPORTS  VSPS     ADDRESS  "
	    "      LAST SEEN\n");
	HAS(res.out, "\na     up     no       2/8  1GiB/4GiB           2  tcp,rdma    storage  "
		     "10.0.0.1:7800  ");
	HAS(res.out, " ago\nb     down   yes      0/4    0B/2GiB           0  tcp,rdma    storage  "
		     "-              never\n");

	assert_int_equal(fabctl("node", "list", "--json", NULL), 0);
	HAS(res.out, "[\n  {\"name\": \"a\", \"state\": \"up\", \"vcpus\": 8, "
		     "\"memory_bytes\": 4294967296, \"transports\": [\"tcp\", \"rdma\"]");
	HAS(res.out, "\"drained\": false, \"vcpus_used\": 2, \"memory_used\": 1073741824, "
		     "\"partitions\": [\"web1\", \"web3\"], \"volumes\": [\"v2\", \"v\\\"3\\\\\"], "
		     "\"draining\": false, \"drain_status\": \"\", \"unmovable\": []}");
	/* Quotes, backslashes and control characters escaped. */
	HAS(res.out, "\"version\": \"v\\\"1\\\\2\\n\\u0001\"");
	HAS(res.out, "\"drained\": true");
	HAS(res.out, "}\n]\n");
	/* --json before the command works the same. */
	{
		char *before = strdup(res.out);

		assert_int_equal(fabctl("--json", "node", "list", NULL), 0);
		assert_string_equal(res.out, before);
		free(before);
	}

	assert_int_equal(fabctl("node", "show", "b", NULL), 0);
	HAS(res.out, "name:          b\n");
	HAS(res.out, "state:         down\n");
	HAS(res.out, "drained:       yes (no new placements)\n");
	HAS(res.out, "vcpus:         0 used of 4\n");
	HAS(res.out, "memory:        0B used of 2GiB\n");
	HAS(res.out, "version:       v\"1\\2??\n"); /* control characters made visible */
	HAS(res.out, "partitions:    -\n");
	HAS(res.out, "volumes:       v1\n");

	assert_int_equal(fabctl("node", "drain", "a", NULL), 0);
	assert_string_equal(res.out, "a: drained, no new placements (2 partitions placed on it)\n");
	e = fake_last(FAB__ENVELOPE__BODY_NODE_DRAIN);
	assert_string_equal(e->node_drain->name, "a");
	fab__envelope__free_unpacked(e, NULL);
	assert_int_equal(fabctl("node", "undrain", "a", "--json", NULL), 0);
	HAS(res.out, "{\"name\": \"a\", \"state\": \"up\"");
	HAS(res.out, "\"drained\": false");
	assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_NODE_UNDRAIN), 1);
}

/* ---- volumes ----------------------------------------------------------------------- */

static void test_volumes(void **state)
{
	Fab__Envelope *e;

	fake_start();
	/* create waits: creating, creating, creating, ready */
	assert_int_equal(fabctl("volume", "create", "v1", "--size", "1G", "--node", "b", NULL), 0);
	assert_string_equal(res.err, "v1: creating on b\n");
	assert_string_equal(res.out, "v1: ready on b (1GiB)\n");
	assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_VOLUME_SHOW), 3);
	/* every poll on the one connection */
	assert_int_equal(fake_accepted(), 1);
	e = fake_last(FAB__ENVELOPE__BODY_VOLUME_CREATE);
	assert_string_equal(e->volume_create->name, "v1");
	assert_string_equal(e->volume_create->node, "b");
	assert_int_equal(e->volume_create->size_bytes, 1ull << 30);
	fab__envelope__free_unpacked(e, NULL);

	/* a volume that fails: exit 1 with its error; --json still shows it */
	assert_int_equal(fabctl("volume", "create", "bad", "--size", "512M", "--json", NULL), 1);
	HAS(res.err, "fabctl: volume 'bad' failed: disk full on b\n");
	HAS(res.out, "{\"name\": \"bad\", \"node\": \"b\", \"size_bytes\": 1073741824, "
		     "\"state\": \"failed\"");
	e = fake_last(FAB__ENVELOPE__BODY_VOLUME_CREATE);
	assert_string_equal(e->volume_create->node, ""); /* the controller chooses */
	assert_int_equal(e->volume_create->size_bytes, 512ull << 20);
	fab__envelope__free_unpacked(e, NULL);

	/* the controller closes the connection after each reply: polls go
	 * on over new ones */
	assert_int_equal(fabctl("volume", "create", "flaky", "--size", "1G", NULL), 0);
	HAS(res.out, "flaky: ready on a");
	/* --no-wait: the reply, no polls */
	{
		unsigned shows = fake_requests(FAB__ENVELOPE__BODY_VOLUME_SHOW);

		assert_int_equal(
			fabctl("volume", "create", "slowvol", "--size", "1G", "--no-wait", NULL),
			0);
		assert_string_equal(res.out, "slowvol: creating on a (1GiB)\n");
		assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_VOLUME_SHOW), shows);
	}
	/* a wait that runs out */
	assert_int_equal(fabctl("--wait-timeout", "0.3", "volume", "create", "slowvol", "--size",
				"1G", NULL),
			 1);
	HAS(res.err, "fabctl: volume 'slowvol' still creating after 0.3 s");

	assert_int_equal(fabctl("volume", "list", NULL), 0);
	HAS(res.out, "NAME    STATE   SIZE  NODE  ATTACHED TO  AGE            ERROR\n");
	HAS(res.out, "\nv1      ready   1GiB  b     web1         ");
	HAS(res.out, "\nv\"3\\    ready   1GiB  a     -            ");
	/* a tab and an escape sequence from the controller shown as '?' */
	HAS(res.out, "node?gone?[31m\n");
	assert_int_equal(fabctl("volume", "list", "--json", NULL), 0);
	HAS(res.out, "{\"name\": \"v\\\"3\\\\\"");
	HAS(res.out, "\"error\": \"node\\tgone\\u001b[31m\"");
	HAS(res.out, "\"attached_to\": \"web1\"");

	assert_int_equal(fabctl("volume", "show", "v2", NULL), 0);
	HAS(res.out, "name:          v2\n");
	HAS(res.out, "size:          1GiB (1073741824 bytes)\n");
	HAS(res.out, "path:          /var/lib/fabric/volumes/x.img\n");
	HAS(res.out, "attached to:   -\n");

	assert_int_equal(fabctl("volume", "delete", "v2", NULL), 0);
	assert_string_equal(res.out, "v2: ready\n");
	e = fake_last(FAB__ENVELOPE__BODY_VOLUME_DELETE);
	assert_string_equal(e->volume_delete->name, "v2");
	fab__envelope__free_unpacked(e, NULL);
}

/* ---- partitions ------------------------------------------------------------------- */

static void test_partition_create(void **state)
{
	Fab__Envelope *e;
	const Fab__PartitionSpec *s;

	fake_start();
	/* pending, pending, scheduled on a, running on a */
	assert_int_equal(fabctl("partition", "create", "web1", "--image", "hello", "--vcpus", "2",
				"--memory", "256M", "--volume", "v1", "--volume", "v2", "--group",
				"front", "--restart", "on-failure", "--", "-n", "3", "--verbose",
				NULL),
			 0);
	assert_string_equal(res.err, "web1: pending\nweb1: scheduled on a (epoch 2)\n");
	assert_string_equal(res.out, "web1: running on a\n");
	assert_int_equal(fake_accepted(), 1);
	e = fake_last(FAB__ENVELOPE__BODY_PARTITION_CREATE);
	s = e->partition_create->spec;
	assert_string_equal(s->name, "web1");
	assert_string_equal(s->image, "hello");
	assert_int_equal(s->vcpus, 2);
	assert_int_equal(s->memory_bytes, 256ull << 20);
	assert_int_equal(s->n_volumes, 2);
	assert_string_equal(s->volumes[0], "v1");
	assert_string_equal(s->volumes[1], "v2");
	assert_string_equal(s->group, "front");
	assert_int_equal(s->restart, FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE);
	assert_int_equal(s->n_args, 3);
	assert_string_equal(s->args[0], "-n");
	assert_string_equal(s->args[1], "3");
	assert_string_equal(s->args[2], "--verbose"); /* after --: the guest's */
	assert_false(s->no_start);
	fab__envelope__free_unpacked(e, NULL);

	/* outcomes */
	assert_int_equal(fabctl("partition", "create", "crash1", "--image", "hello", NULL), 1);
	HAS(res.err, "fabctl: partition 'crash1' crashed on a: triple fault\n");
	assert_int_equal(fabctl("partition", "create", "exit0", "--image", "hello", NULL), 0);
	assert_string_equal(res.out, "exit0: exited with status 0\n");
	assert_int_equal(fabctl("partition", "create", "exit3", "--image", "hello", NULL), 1);
	HAS(res.err, "fabctl: partition 'exit3' exited with status 3 on a\n");
	assert_int_equal(fabctl("partition", "create", "failed1", "--image", "nope", NULL), 1);
	HAS(res.err, "fabctl: partition 'failed1' failed on a: image 'nope' not found\n");
	assert_int_equal(
		fabctl("partition", "create", "nofit", "--image", "hello", "--vcpus", "16", NULL),
		5);
	assert_string_equal(res.err, "fabctl: no node can run nofit: a: 8 vCPUs free, 16 wanted\n");
	/* pending with a reason of other words: the placement decides */
	assert_int_equal(fabctl("partition", "create", "nofit2", "--image", "hello", NULL), 5);
	assert_string_equal(res.err,
			    "fabctl: partition 'nofit2' cannot be placed: waiting for capacity\n");
	assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_PARTITION_EXPLAIN), 1);

	/* --json: the final partition */
	assert_int_equal(fabctl("partition", "create", "exit0", "--image", "hello", "--json", NULL),
			 0);
	HAS(res.out, "{\"spec\": {\"name\": \"exit0\", \"image\": \"hello\", \"vcpus\": 1, "
		     "\"memory_bytes\": 67108864, \"volumes\": [], \"group\": \"\", "
		     "\"restart\": \"on-failure\", \"args\": [], \"no_start\": false}, "
		     "\"state\": \"exited\", \"desired_running\": true, \"node\": \"a\"");
	/* no wait, no start */
	{
		unsigned shows = fake_requests(FAB__ENVELOPE__BODY_PARTITION_SHOW);

		assert_int_equal(fabctl("partition", "create", "slow", "--image", "hello",
					"--no-wait", NULL),
				 0);
		assert_string_equal(res.out, "slow: scheduled\n");
		assert_int_equal(fabctl("partition", "create", "slow", "--image", "hello",
					"--no-start", NULL),
				 0);
		assert_string_equal(res.out, "slow: created, not started\n");
		assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_PARTITION_SHOW), shows);
		e = fake_last(FAB__ENVELOPE__BODY_PARTITION_CREATE);
		assert_true(e->partition_create->spec->no_start);
		assert_int_equal(e->partition_create->spec->vcpus, 1);
		assert_int_equal(e->partition_create->spec->memory_bytes, 64ull << 20);
		fab__envelope__free_unpacked(e, NULL);
	}
	/* a wait that runs out */
	assert_int_equal(fabctl("--wait-timeout", "0.5", "partition", "create", "slow", "--image",
				"hello", NULL),
			 1);
	HAS(res.err, "slow: scheduled on a (epoch 2)\n");
	HAS(res.err, "fabctl: partition 'slow' still scheduled after 0.5 s");
}

static void test_partition_start_stop_delete(void **state)
{
	Fab__Envelope *e;

	fake_start();
	/* The start reply still shows the previous run (exited 1): not this
	 * start's outcome. */
	assert_int_equal(fabctl("partition", "start", "rerun", NULL), 0);
	assert_string_equal(res.out, "rerun: running on b\n");
	assert_int_equal(fake_requests(FAB__ENVELOPE__BODY_PARTITION_START), 1);

	assert_int_equal(fabctl("partition", "stop", "stopme", "--timeout", "20", "--force", NULL),
			 0);
	assert_string_equal(res.err, "stopme: stopping on a\n");
	assert_string_equal(res.out, "stopme: stopped\n");
	e = fake_last(FAB__ENVELOPE__BODY_PARTITION_STOP);
	assert_string_equal(e->partition_stop->name, "stopme");
	assert_int_equal(e->partition_stop->timeout_ms, 20000);
	assert_true(e->partition_stop->force);
	fab__envelope__free_unpacked(e, NULL);
	/* stop of a crashed partition: nothing to wait for */
	assert_int_equal(fabctl("partition", "stop", "crash1", "--no-wait", NULL), 0);
	assert_string_equal(res.out, "crash1: scheduled\n");

	assert_int_equal(fabctl("partition", "delete", "web1", NULL), 0);
	assert_string_equal(res.out, "web1: deleted\n");
	e = fake_last(FAB__ENVELOPE__BODY_PARTITION_DELETE);
	assert_string_equal(e->partition_delete->name, "web1");
	fab__envelope__free_unpacked(e, NULL);
	assert_int_equal(fabctl("partition", "delete", "enoent", NULL), 3);
	assert_string_equal(res.err, "fabctl: partition 'enoent' not found\n");
}

static void test_partition_show_list(void **state)
{
	fake_start();
	assert_int_equal(fabctl("partition", "show", "chan", NULL), 0);
	HAS(res.out, "name:          chan\n");
	HAS(res.out, "image:         hello\n");
	HAS(res.out, "memory:        64MiB\n");
	HAS(res.out, "volumes:       v1, v2\n");
	HAS(res.out, "restart:       on-failure\n");
	HAS(res.out, "state:         running (since ");
	HAS(res.out, "desired:       running\n");
	HAS(res.out, "node:          a\n");
	HAS(res.out, "epoch:         2\n");
	HAS(res.out, "exit status:   -\n");
	HAS(res.out, "\nDEVICE  VOLUME  KIND    TRANSPORT  VSP-NODE  HEALTH   IO-ERRORS\n"
		     "disk0   v1      remote  rdma       b         failing          3\n"
		     "disk1   v2      local   local      a         ok               0\n");
	assert_int_equal(fabctl("partition", "show", "chan", "--json", NULL), 0);
	HAS(res.out, "\"channels\": [{\"device\": \"disk0\", \"volume\": \"v1\", \"remote\": true, "
		     "\"transport\": \"rdma\", \"vsp_node\": \"b\", \"health\": \"failing\", "
		     "\"io_errors\": 3}, {\"device\": \"disk1\"");
	HAS(res.out, "\"restarts\": 0, \"created_unix_ms\": 0, \"state_unix_ms\": 1}\n");

	assert_int_equal(fabctl("partition", "list", NULL), 0);
	HAS(res.out, "NAME  STATE    NODE  VCPUS  MEMORY  VOLUMES  IMAGE  RESTARTS  SINCE");
	HAS(res.out, "web1  running  a         1   64MiB  v1,v2    hello         0  ");
	HAS(res.out, "web2  pending  -         1   64MiB  v2       hello         0  ");
	HAS(res.out, "no node fits\n");
	HAS(res.out, "web3  crashed  a ");
	assert_int_equal(fabctl("partition", "list", "--json", NULL), 0);
	HAS(res.out, "[\n  {\"spec\": {\"name\": \"web1\"");
	HAS(res.out, ",\n  {\"spec\": {\"name\": \"web2\"");
	HAS(res.out, "\"state\": \"crashed\"");
}

static void test_partition_explain(void **state)
{
	fake_start();
	assert_int_equal(fabctl("partition", "explain", "web1", NULL), 0);
	HAS(res.out, "web1 placed on n-high (epoch 4, policy spread, trigger create, at 20");
	/* feasible first by score, then the others by name */
	HAS(res.out, "NODE       FEASIBLE  SCORE  REASON\n"
		     "n-high     yes       0.750  free share 0.75\n"
		     "n-low      yes       0.250  free share 0.25\n"
		     "a-drained  no            -  drained\n"
		     "n-down     no            -  down\n");
	assert_int_equal(fabctl("partition", "explain", "nothing", NULL), 0);
	HAS(res.out, "nothing: no node fits (epoch 4, policy spread, trigger create, at ");
	assert_int_equal(fabctl("partition", "explain", "web1", "--json", NULL), 0);
	HAS(res.out, "{\"partition\": \"web1\", \"node\": \"n-high\", \"policy\": \"spread\", "
		     "\"epoch\": 4, \"trigger\": \"create\", \"decided_unix_ms\": 1700000000000, "
		     "\"verdicts\": [{\"node\": \"n-high\", \"feasible\": true, \"reason\": "
		     "\"free share 0.75\", \"score\": 0.75}, {\"node\": \"n-low\"");
	assert_int_equal(fabctl("partition", "explain", "enoent", NULL), 3);
}

static void test_partition_console(void **state)
{
	static const char text[] = "boot\x01ok\n\xff\xfe done\n";

	fake_start();
	assert_int_equal(fabctl("partition", "console", "web1", NULL), 0);
	/* raw bytes, as the guest wrote them */
	assert_int_equal(strlen(res.out), sizeof(text) - 1);
	assert_memory_equal(res.out, text, sizeof(text) - 1);
	assert_string_equal(res.err, "");
	assert_int_equal(fabctl("partition", "console", "long", NULL), 0);
	assert_string_equal(res.err, "[earlier output dropped]\n");
	assert_int_equal(fabctl("partition", "console", "long", "--json", NULL), 0);
	assert_string_equal(res.out, "{\"data\": \"boot\\u0001ok\\n\\ufffd\\ufffd done\\n\", "
				     "\"truncated\": true}\n");
}

/* ---- cluster graph ------------------------------------------------------------------ */

static void test_partition_migrate(void **state)
{
	Fab__Envelope *e;

	fake_start();
	/* done: plain progress lines (stdout is a file), then the table */
	assert_int_equal(fabctl("partition", "migrate", "mig1", "--to", "b", "--downtime", "20",
				"--max-rounds", "5", "--throttle", NULL),
			 0);
	e = fake_last(FAB__ENVELOPE__BODY_PARTITION_MIGRATE);
	assert_string_equal(e->partition_migrate->name, "mig1");
	assert_string_equal(e->partition_migrate->to, "b");
	assert_int_equal(e->partition_migrate->downtime_ms, 20);
	assert_int_equal(e->partition_migrate->max_rounds, 5);
	assert_true(e->partition_migrate->throttle);
	fab__envelope__free_unpacked(e, NULL);
	HAS(res.err, "mig1: migrating from a to b (migration 7)");
	HAS(res.err, "mig1: copy, round 1, sent 32MiB of 64MiB RAM");
	HAS(res.err, "round 2, sent 70MiB of 64MiB RAM, dirty 8MiB/s, link 100MiB/s, "
		     "est. downtime 4.20 ms");
	HAS(res.err, "round 3");
	HAS(res.err, "mig1: committed");
	HAS_NOT(res.err, "\r");
	HAS(res.out, "result:");
	HAS(res.out, "done");
	HAS(res.out, "total time:");
	HAS(res.out, "1.50 s");
	HAS(res.out, "bytes sent:");
	HAS(res.out, "76MiB (RAM 64MiB)");
	HAS(res.out, "rounds:");
	HAS(res.out, "3 (at most 30)");
	HAS(res.out, "downtime:");
	HAS(res.out, "12.3 ms (budget 50 ms)");
	assert_true(fake_requests(FAB__ENVELOPE__BODY_MIGRATION_SHOW) >= 6);

	/* on a terminal: a bar redrawn in place, then the same table */
	if (access("/usr/bin/script", X_OK) == 0) {
		char cmd[600];
		const char *argv[] = { "/usr/bin/script", "-qec", cmd, "/dev/null", NULL };

		snprintf(cmd, sizeof(cmd),
			 "%s --controller %s --pki %s partition migrate mig2 --to b", FABCTL,
			 fk.addr, pki);
		assert_int_equal(run_argv(argv), 0);
		HAS(res.out, "\r\033[K[");
		HAS(res.out, "%");
		HAS(res.out, "#");
		HAS(res.out, "rounds:");
	} else {
		printf("NOTE: no /usr/bin/script: the progress bar on a terminal is not tested\n");
	}

	/* aborted: exit 1 with the reason */
	assert_int_equal(fabctl("partition", "migrate", "migfail", NULL), 1);
	HAS(res.out, "aborted: source b: guest dirties 900 MiB/s, link copies 100 MiB/s");
	HAS(res.err, "migration 7 of 'migfail' to b aborted: source b: guest dirties 900 MiB/s");

	/* --no-wait and --json */
	assert_int_equal(fabctl("partition", "migrate", "mig1", "--no-wait", NULL), 0);
	HAS(res.out, "mig1: migrating from a to b (migration 7)\n");
	assert_int_equal(fabctl("partition", "migrate", "migfail", "--json", NULL), 1);
	HAS(res.out, "{\"id\": 7, \"partition\": \"migfail\", \"source\": \"a\", "
		     "\"target\": \"b\", \"phase\": \"aborted\"");

	/* refusals map to their exit codes */
	assert_int_equal(fabctl("partition", "migrate", "enospc", NULL), 5);
	assert_int_equal(fabctl("partition", "migrate", "ebusy", NULL), 4);
	assert_int_equal(fabctl("partition", "migrate", "enoent", NULL), 3);

	/* the wait is bounded */
	assert_int_equal(fabctl("--wait-timeout", "1", "partition", "migrate", "migslow", NULL), 1);
	HAS(res.err, "still in phase copy after 1 s");

	/* show, list, cancel */
	assert_int_equal(fabctl("migration", "show", "migfail", NULL), 0);
	HAS(res.out, "migration:");
	assert_int_equal(fabctl("migration", "show", "--id", "7", "--json", NULL), 0);
	e = fake_last(FAB__ENVELOPE__BODY_MIGRATION_SHOW);
	assert_int_equal(e->migration_show->id, 7);
	fab__envelope__free_unpacked(e, NULL);
	assert_int_equal(fabctl("migration", "list", NULL), 0);
	HAS(res.out, "web1");
	HAS(res.out, "drain a");
	HAS(res.out, "target node c lost (lease expired)");
	assert_int_equal(fabctl("migration", "list", "--active", "--json", NULL), 0);
	e = fake_last(FAB__ENVELOPE__BODY_MIGRATION_LIST);
	assert_true(e->migration_list->active_only);
	fab__envelope__free_unpacked(e, NULL);
	HAS(res.out, "\"phase\": \"done\"");
	assert_int_equal(fabctl("migration", "cancel", "web1", NULL), 0);
	HAS(res.out, "web1: migration 7 to b cancelled; it stays where it was\n");
	assert_int_equal(fabctl("migration", "cancel", "ebusy", NULL), 4);
}

static void test_cluster_graph(void **state)
{
	char dot[160], svg[160], cmd[400];
	char *text;

	fake_start();
	assert_int_equal(fabctl("cluster", "graph", NULL), 0);
	HAS(res.out, "digraph fabric {\n");
	/* a cluster per node: name, state, transports, drained */
	HAS(res.out, "\tsubgraph \"cluster_a\" {\n\t\tlabel=\"a\\nup, tcp, rdma\";\n");
	HAS(res.out, "\tsubgraph \"cluster_b\" {\n\t\tlabel=\"b\\ndown, tcp, rdma, drained\";\n");
	/* partitions inside their node, coloured by state */
	HAS(res.out, "\t\t\"p:web1\" [shape=box, style=\"rounded,filled\", "
		     "fillcolor=\"palegreen\", label=\"web1\\nrunning\"];\n");
	HAS(res.out, "\t\t\"p:web3\" [shape=box, style=\"rounded,filled\", fillcolor=\"salmon\"");
	/* the unplaced one outside every cluster */
	HAS(res.out,
	    "\n\t\"p:web2\" [shape=box, style=\"rounded,filled\", fillcolor=\"lightgrey\"");
	/* volumes inside their storage node, names escaped */
	HAS(res.out, "\t\t\"v:v1\" [shape=cylinder");
	HAS(res.out, "\t\t\"v:v\\\"3\\\\\" [shape=cylinder, style=filled, fillcolor=\"lightcyan\", "
		     "label=\"v\\\"3\\\\\\n1GiB ready\"];\n");
	/* the volume on a node the controller does not list: outside */
	HAS(res.out, "\n\t\"v:orphan\" [shape=cylinder");
	/* edges: from the channels, else from where things are */
	HAS(res.out, "\t\"p:web1\" -> \"v:v1\" [style=bold, label=\"remote rdma\"];\n");
	HAS(res.out, "\t\"p:web1\" -> \"v:v2\" [style=solid, label=\"local\"];\n");
	HAS(res.out, "\t\"p:web3\" -> \"v:v1\" [style=bold, label=\"remote rdma\"];\n");
	HAS(res.out, "\t\"p:web2\" -> \"v:v2\" [style=dotted];\n");
	HAS(res.out, "}\n");
	text = strdup(res.out);

	/* --output: the same text in the file */
	snprintf(dot, sizeof(dot), "%s/c.dot", dir);
	snprintf(svg, sizeof(svg), "%s/c.svg", dir);
	assert_int_equal(fabctl("cluster", "graph", "--output", dot, NULL), 0);
	assert_string_equal(res.out, "");
	{
		char *f = th_slurp(dot);

		assert_non_null(f);
		assert_string_equal(f, text);
		free(f);
	}
	/* --svg without dot in PATH: the DOT, a note, exit 0 */
	{
		const char *argv[] = { "/usr/bin/env",
				       "PATH=/nonexistent",
				       FABCTL,
				       "--controller",
				       fk.addr,
				       "--pki",
				       pki,
				       "cluster",
				       "graph",
				       "--svg",
				       svg,
				       NULL };

		assert_int_equal(run_argv(argv), 0);
		assert_string_equal(res.err,
				    "fabctl: dot (graphviz) is not installed: wrote only DOT\n");
		assert_string_equal(res.out, text);
		assert_int_equal(access(svg, F_OK), -1);
	}
	/* With graphviz here, the DOT must also be valid to dot. */
	if (system("command -v dot >/dev/null 2>&1") == 0) {
		assert_int_equal(fabctl("cluster", "graph", "--output", dot, "--svg", svg, NULL),
				 0);
		assert_string_equal(res.err, "");
		assert_true(th_file_has(svg, "<svg"));
		assert_true(th_file_has(svg, "web1"));
		snprintf(cmd, sizeof(cmd), "dot -Tcanon %s >/dev/null", dot);
		assert_int_equal(system(cmd), 0);
	} else {
		fprintf(stderr, "note: graphviz not installed; DOT not checked by dot\n");
	}
	/* --json: the inputs, not DOT */
	assert_int_equal(fabctl("cluster", "graph", "--json", NULL), 0);
	HAS(res.out, "{\"nodes\": [{\"name\": \"a\"");
	HAS(res.out, "\"volumes\": [{\"name\": \"v1\"");
	HAS(res.out, "\"partitions\": [{\"spec\": {\"name\": \"web1\"");
	HAS_NOT(res.out, "digraph");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_start_stop_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_show_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_explain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_console, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_graph, setup, teardown),
	};

	fab_log_init("test_cli", FAB_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
