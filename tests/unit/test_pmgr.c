// SPDX-License-Identifier: MIT
/*
 * The partition manager (node-hv/src/pmgr.c) against fake partitions: the
 * nhv_partition_* and nhv_stub_* calls it makes are implemented here by
 * threads that play a guest from a tiny script (the "image"), calling the
 * state and console callbacks from their own thread as vCPUs do. So the
 * manager's hand-off to the loop, its stop/timeout logic, console ring and
 * channel health are exercised without KVM; test_node_cmds runs the real
 * thing where /dev/kvm exists.
 *
 * Scripts (the whole image file):
 *   exit N      print "hello from the fake guest\n", exit with status N
 *   crash       crash ("triple fault")
 *   icwait      open the shutdown IC, print "ready", exit 0 when asked
 *   deaf        open the shutdown IC, print "ready", never exit
 *   wait        no IC, wait until stopped
 *   flood N     print N bytes (a counting pattern), then wait until stopped
 *   nokvm       creation fails as without /dev/kvm
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "fab/nodehv.h"
#include "fab/remote.h"
#include "fab/util.h"
#include "pmgr.h"

#define ST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x
#define MIB   (1ull << 20)

/* ---- fake partitions ------------------------------------------------------------ */

struct nhv_stub {
	struct nhv_stub_stats st;
};

struct nhv_partition {
	struct nhv_partition_cfg cfg;
	char script[64];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum nhv_part_state state;
	int exit_status;
	char reason[128];
	bool ic, shutdown, stop, started;
	pthread_t thread;
	struct nhv_stub *stubs[4];
	int nstubs;
	char disks[4][256];
	int ndisks;
};

static int n_created, n_destroyed;
static struct nhv_stub *last_stub;

/* Caller holds p->lock, as the real partition does when it calls back. */
static void set_state(struct nhv_partition *p, enum nhv_part_state st)
{
	if (p->state == st)
		return;
	p->state = st;
	pthread_cond_broadcast(&p->cond);
	if (p->cfg.state_cb)
		p->cfg.state_cb(p, st, p->cfg.cb_arg);
}

static bool final(enum nhv_part_state st)
{
	return st == NHV_PART_STOPPED || st == NHV_PART_EXITED || st == NHV_PART_CRASHED;
}

static void say(struct nhv_partition *p, const char *s, size_t n)
{
	p->cfg.console_cb(p, s, n, p->cfg.cb_arg);
}

static void end(struct nhv_partition *p, enum nhv_part_state st, int status, const char *why)
{
	pthread_mutex_lock(&p->lock);
	if (!final(p->state)) {
		p->exit_status = status;
		snprintf(p->reason, sizeof(p->reason), "%s", why);
		set_state(p, st);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Blocks until the host stops it, or (until_shutdown) asks it to. */
static bool wait_for(struct nhv_partition *p, bool until_shutdown)
{
	bool asked;

	pthread_mutex_lock(&p->lock);
	while (!p->stop && !(until_shutdown && p->shutdown))
		pthread_cond_wait(&p->cond, &p->lock);
	asked = p->shutdown && !p->stop;
	pthread_mutex_unlock(&p->lock);
	return asked;
}

static void *guest_main(void *arg)
{
	struct nhv_partition *p = arg;
	static const char hello[] = "hello from the fake guest\n";
	unsigned n;

	if (sscanf(p->script, "exit %u", &n) == 1) {
		say(p, hello, sizeof(hello) - 1);
		end(p, NHV_PART_EXITED, (int)n, "");
	} else if (!strncmp(p->script, "crash", 5)) {
		end(p, NHV_PART_CRASHED, 0, "triple fault on vCPU 0");
	} else if (!strncmp(p->script, "icwait", 6) || !strncmp(p->script, "deaf", 4)) {
		bool deaf = p->script[0] == 'd';

		say(p, "ready\n", 6);
		if (wait_for(p, !deaf)) {
			say(p, "bye\n", 4);
			end(p, NHV_PART_EXITED, 0, "");
		}
	} else if (sscanf(p->script, "flood %u", &n) == 1) {
		char buf[1000];

		for (unsigned done = 0; done < n;) {
			unsigned k = n - done < sizeof(buf) ? n - done : sizeof(buf);

			for (unsigned i = 0; i < k; i++)
				buf[i] = (char)('a' + (done + i) % 26);
			say(p, buf, k);
			done += k;
		}
		wait_for(p, false);
	} else {
		wait_for(p, false);
	}
	return NULL;
}

int nhv_partition_cfg_check(const struct nhv_partition_cfg *cfg, char *err, size_t errlen)
{
	if (cfg->ram_bytes < (4u << 20) || cfg->ram_bytes > (3ull << 30) ||
	    cfg->ram_bytes % (2u << 20)) {
		snprintf(err, errlen, "memory must be a multiple of 2 MiB between 4 MiB and 3 GiB");
		return -EINVAL;
	}
	if (cfg->vcpus < 1 || cfg->vcpus > NHV_MAX_VCPUS) {
		snprintf(err, errlen, "vCPUs must be 1..%d", NHV_MAX_VCPUS);
		return -EINVAL;
	}
	return 0;
}

int nhv_partition_create(const struct nhv_partition_cfg *cfg, struct nhv_partition **out, char *err,
			 size_t errlen)
{
	struct nhv_partition *p;

	if (cfg->image_len >= 5 && !memcmp(cfg->image, "nokvm", 5)) {
		snprintf(err, errlen, "cannot create the VM: No such file or directory");
		return -ENOENT;
	}
	p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->cfg = *cfg;
	p->cfg.image = NULL;
	p->cfg.argv = NULL;
	p->cfg.console_path = NULL;
	memcpy(p->script, cfg->image,
	       cfg->image_len < sizeof(p->script) - 1 ? cfg->image_len : sizeof(p->script) - 1);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->state = NHV_PART_CREATED;
	n_created++;
	*out = p;
	return 0;
}

int nhv_partition_attach_disk(struct nhv_partition *p, const char *path, bool read_only, char *err,
			      size_t errlen)
{
	assert_true(p->ndisks < 4);
	snprintf(p->disks[p->ndisks++], 256, "%s", path);
	return 0;
}

int nhv_partition_attach_ic(struct nhv_partition *p)
{
	p->ic = true;
	return 0;
}

int nhv_partition_start(struct nhv_partition *p)
{
	pthread_mutex_lock(&p->lock);
	set_state(p, NHV_PART_RUNNING);
	pthread_mutex_unlock(&p->lock);
	p->started = pthread_create(&p->thread, NULL, guest_main, p) == 0;
	return p->started ? 0 : -EAGAIN;
}

int nhv_partition_stop(struct nhv_partition *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	if (!final(p->state)) {
		snprintf(p->reason, sizeof(p->reason), "stopped by the host");
		set_state(p, NHV_PART_STOPPED);
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int nhv_partition_request_shutdown(struct nhv_partition *p)
{
	if (!p->ic)
		return -ENODEV;
	if (strncmp(p->script, "icwait", 6) && strncmp(p->script, "deaf", 4))
		return -ENOTCONN;
	pthread_mutex_lock(&p->lock);
	p->shutdown = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

enum nhv_part_state nhv_partition_state(struct nhv_partition *p)
{
	enum nhv_part_state st;

	pthread_mutex_lock(&p->lock);
	st = p->state;
	pthread_mutex_unlock(&p->lock);
	return st;
}

int nhv_partition_exit_status(struct nhv_partition *p)
{
	return p->exit_status;
}

void nhv_partition_reason(struct nhv_partition *p, char *buf, size_t len)
{
	pthread_mutex_lock(&p->lock);
	snprintf(buf, len, "%s", p->reason);
	pthread_mutex_unlock(&p->lock);
}

void nhv_partition_destroy(struct nhv_partition *p)
{
	nhv_partition_stop(p);
	if (p->started)
		pthread_join(p->thread, NULL);
	for (int i = 0; i < p->nstubs; i++) {
		if (last_stub == p->stubs[i])
			last_stub = NULL;
		free(p->stubs[i]);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	n_destroyed++;
	free(p);
}

int nhv_stub_attach(struct nhv_dp *dp, struct nhv_partition *p, const char *partition,
		    const struct nhv_cfg_remote *r, struct nhv_stub **out)
{
	struct nhv_stub *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	assert_string_equal(r->node, "node-b");
	assert_int_equal(r->timeout_ms, 2000);
	p->stubs[p->nstubs++] = s;
	last_stub = s;
	*out = s;
	return 0;
}

void nhv_stub_stats(struct nhv_stub *s, struct nhv_stub_stats *out)
{
	*out = s->st;
}

const char *nhv_dp_transport(struct nhv_dp *dp)
{
	return "tcp";
}

/* ---- the controller's side ----------------------------------------------------------- */

static struct ev_loop *loop;
static struct nhv_pmgr *pm;
static char dir[64], images[128], volumes[128];
static Fab__Envelope *got[4096];
static size_t ngot;
static bool offline; /* the report callback says: not registered */

static int report(Fab__Envelope *env, void *arg)
{
	size_t len = fab__envelope__get_packed_size(env);
	uint8_t *buf = malloc(len);

	if (offline) {
		free(buf);
		return -ENOTCONN;
	}
	/* Through the wire format, as the controller would see it. */
	fab__envelope__pack(env, buf);
	assert_true(ngot < FAB_ARRAY_SIZE(got));
	got[ngot] = fab__envelope__unpack(NULL, len, buf);
	assert_non_null(got[ngot]);
	ngot++;
	free(buf);
	return 0;
}

/* Drops what was received so far. */
static void forget(void)
{
	for (size_t i = 0; i < ngot; i++)
		fab__envelope__free_unpacked(got[i], NULL);
	ngot = 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void image(const char *name, const char *script)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", images, name);
	write_file(path, script);
}

static int setup(void **state)
{
	struct nhv_pmgr_cfg cfg = {
		.node = "node-a",
		.image_dir = images,
		.volume_dir = volumes,
		.state_dir = dir,
		.vcpus = 4,
		.memory_bytes = 1ull << 30,
		.dp = (struct nhv_dp *)&cfg, /* never dereferenced by the fakes */
	};
	char path[256];

	snprintf(dir, sizeof(dir), "/tmp/fabpmgr-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(images, sizeof(images), "%s/images", dir);
	snprintf(volumes, sizeof(volumes), "%s/volumes", dir);
	assert_int_equal(mkdir(images, 0755), 0);
	assert_int_equal(mkdir(volumes, 0755), 0);
	image("exit3", "exit 3");
	image("exit0.elf", "exit 0");
	image("crash", "crash");
	image("icwait", "icwait");
	image("deaf", "deaf");
	image("wait", "wait");
	image("flood", "flood 200000");
	image("nokvm", "nokvm");
	snprintf(path, sizeof(path), "%s/data.img", volumes);
	write_file(path, "");
	assert_int_equal(truncate(path, (off_t)MIB), 0);
	loop = ev_loop_new(EVFLAG_AUTO);
	cfg.loop = loop;
	assert_int_equal(nhv_pmgr_new(&cfg, &pm), 0);
	nhv_pmgr_set_report(pm, report, NULL);
	n_created = n_destroyed = 0;
	offline = false;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	nhv_pmgr_free(pm);
	ev_loop_destroy(loop);
	forget();
	/* Every partition made was destroyed. */
	assert_int_equal(n_created, n_destroyed);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* Runs the loop until a PartitionStatus of name in state shows up at index
 * *from or later (5 s at most); *from moves past it. */
static const Fab__PartitionStatus *wait_status(const char *name, int state, size_t *from)
{
	int64_t until = fab_mono_ms() + 5000;

	for (;;) {
		for (size_t i = *from; i < ngot; i++) {
			const Fab__PartitionStatus *st = got[i]->partition_status;

			if (got[i]->body_case == FAB__ENVELOPE__BODY_PARTITION_STATUS &&
			    !strcmp(st->name, name) && (!state || (int)st->state == state)) {
				*from = i + 1;
				return st;
			}
		}
		if (fab_mono_ms() > until)
			break;
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
		usleep(1000);
	}
	for (size_t i = 0; i < ngot; i++)
		if (got[i]->body_case == FAB__ENVELOPE__BODY_PARTITION_STATUS)
			fprintf(stderr, "  %s: state %d '%s'\n", got[i]->partition_status->name,
				got[i]->partition_status->state, got[i]->partition_status->reason);
	fail_msg("no status %d for %s", state, name);
	return NULL;
}

/* Runs the loop for ms. */
static void spin(int ms)
{
	int64_t until = fab_mono_ms() + ms;

	while (fab_mono_ms() < until) {
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
		usleep(1000);
	}
}

/* The console output of name received so far (from index from on). */
static size_t console(const char *name, size_t from, char *buf, size_t cap, size_t *largest)
{
	size_t n = 0;

	*largest = 0;
	for (size_t i = from; i < ngot; i++) {
		const Fab__ConsoleOutput *co = got[i]->console_output;

		if (got[i]->body_case != FAB__ENVELOPE__BODY_CONSOLE_OUTPUT ||
		    strcmp(co->name, name))
			continue;
		if (co->data.len > *largest)
			*largest = co->data.len;
		assert_true(n + co->data.len < cap);
		memcpy(buf + n, co->data.data, co->data.len);
		n += co->data.len;
	}
	buf[n] = '\0';
	return n;
}

static void run(const char *name, uint64_t epoch, const char *img, Fab__DeviceBinding *dev)
{
	Fab__RunPartition m = FAB__RUN_PARTITION__INIT;
	char *args[] = { "one", "two" };

	m.name = (char *)name;
	m.epoch = epoch;
	m.image = (char *)img;
	m.vcpus = 1;
	m.memory_bytes = 64 * MIB;
	m.n_args = 2;
	m.args = args;
	m.n_devices = dev ? 1 : 0;
	m.devices = dev ? &dev : NULL;
	nhv_pmgr_run(pm, &m);
}

static void stop(const char *name, uint64_t epoch, uint32_t ms)
{
	Fab__StopPartition m = FAB__STOP_PARTITION__INIT;

	m.name = (char *)name;
	m.epoch = epoch;
	m.timeout_ms = ms;
	nhv_pmgr_stop(pm, &m);
}

/* RUNNING (reported before anything else), console, EXITED with its
 * status, from a vCPU-like thread through the loop; resends are answered
 * from the record. */
static void test_run_exit(void **state)
{
	Fab__DeviceBinding d = FAB__DEVICE_BINDING__INIT;
	const Fab__PartitionStatus *st;
	char path[256], buf[4096], who[64];
	size_t from = 0, largest;

	snprintf(path, sizeof(path), "%s/data.img", volumes);
	d.device = "disk0";
	d.volume = "data";
	d.path = path;
	run("p", 1, "exit3", &d);
	/* RUNNING went out synchronously, before the loop ran at all. */
	st = wait_status("p", 0, &from);
	assert_int_equal(st->state, ST(RUNNING));
	assert_int_equal(st->n_channels, 1);
	assert_string_equal(st->channels[0]->device, "disk0");
	assert_string_equal(st->channels[0]->volume, "data");
	assert_string_equal(st->channels[0]->transport, "local");
	assert_string_equal(st->channels[0]->vsp_node, "node-a");
	assert_string_equal(st->channels[0]->health, "ok");
	st = wait_status("p", ST(EXITED), &from);
	assert_int_equal(st->exit_status, 3);
	assert_non_null(strstr(st->reason, "status 3"));
	/* The KVM side is gone at once; the record stays. */
	assert_int_equal(n_destroyed, 1);
	assert_int_equal(nhv_pmgr_volume_user(pm, path, who, sizeof(who)), 0);
	console("p", 0, buf, sizeof(buf), &largest);
	assert_string_equal(buf, "hello from the fake guest\n");

	/* Resent: the same status, nothing created. */
	run("p", 1, "exit3", &d);
	st = wait_status("p", 0, &from);
	assert_int_equal(st->state, ST(EXITED));
	assert_int_equal(n_created, 1);
	/* Stale: ignored, no answer. */
	run("p", 0, "exit3", &d);
	spin(50);
	assert_int_equal(ngot, from);
	/* An image is also found as NAME.elf; a newer epoch replaces. */
	run("p", 2, "exit0", NULL);
	st = wait_status("p", ST(EXITED), &from);
	assert_int_equal(st->epoch, 2);
	assert_int_equal(st->exit_status, 0);
	assert_int_equal(n_created, 2);
}

static void test_failures(void **state)
{
	Fab__DeviceBinding d = FAB__DEVICE_BINDING__INIT;
	size_t from = 0;

	run("a", 1, "nokvm", NULL);
	assert_non_null(
		strstr(wait_status("a", ST(FAILED), &from)->reason, "cannot create the VM"));
	run("b", 1, "crash", NULL);
	wait_status("b", ST(RUNNING), &from);
	assert_non_null(strstr(wait_status("b", ST(CRASHED), &from)->reason, "triple fault"));
	/* Remote and local at once in one binding. */
	d.device = "disk0";
	d.path = "/x";
	d.node = "node-b";
	run("c", 1, "exit0", &d);
	assert_non_null(strstr(wait_status("c", ST(FAILED), &from)->reason, "either"));
	/* Bad remote address. */
	d.path = "";
	d.address = "nowhere";
	d.export = "v";
	run("c", 2, "exit0", &d);
	assert_non_null(strstr(wait_status("c", ST(FAILED), &from)->reason, "HOST:PORT"));
	d.address = "127.0.0.1:1";
	d.timeout_ms = 5;
	run("c", 3, "exit0", &d);
	assert_non_null(strstr(wait_status("c", ST(FAILED), &from)->reason, "timeout_ms"));
	/* A volume a running partition writes is nobody else's. */
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/data.img", volumes);
		d.node = "";
		d.address = "";
		d.export = "";
		d.timeout_ms = 0;
		d.path = path;
		run("u1", 1, "wait", &d);
		wait_status("u1", ST(RUNNING), &from);
		run("u2", 1, "wait", &d);
		assert_non_null(strstr(wait_status("u2", ST(FAILED), &from)->reason,
				       "in use by partition u1"));
		stop("u1", 1, 0);
		wait_status("u1", ST(STOPPED), &from);
		run("u2", 2, "wait", &d);
		wait_status("u2", ST(RUNNING), &from);
		stop("u2", 2, 0);
		wait_status("u2", ST(STOPPED), &from);
	}
	/* More memory than the node offers, counting running partitions. */
	{
		Fab__RunPartition m = FAB__RUN_PARTITION__INIT;

		run("w1", 1, "wait", NULL);
		wait_status("w1", ST(RUNNING), &from);
		m.name = "big";
		m.epoch = 1;
		m.image = "exit0";
		m.vcpus = 1;
		m.memory_bytes = 1ull << 30;
		nhv_pmgr_run(pm, &m);
		assert_non_null(
			strstr(wait_status("big", ST(FAILED), &from)->reason, "not enough memory"));
	}
}

/* StopPartition: graceful through the IC, forced after the timeout, forced
 * at once without an IC or with timeout 0; wrong epochs are ignored. */
static void test_stops(void **state)
{
	const Fab__PartitionStatus *st;
	size_t from = 0;
	int64_t t0;

	run("g", 5, "icwait", NULL);
	wait_status("g", ST(RUNNING), &from);
	stop("g", 4, 1000);
	spin(50);
	assert_int_equal(ngot, from); /* wrong epoch: nothing */
	stop("g", 5, 5000);
	assert_non_null(strstr(wait_status("g", ST(STOPPING), &from)->reason, "5000 ms"));
	st = wait_status("g", ST(STOPPED), &from);
	assert_non_null(strstr(st->reason, "gracefully"));
	assert_int_equal(st->exit_status, 0);
	/* Stopped already: asked again, it says so. */
	stop("g", 5, 5000);
	assert_int_equal(wait_status("g", 0, &from)->state, ST(STOPPED));

	run("d", 1, "deaf", NULL);
	wait_status("d", ST(RUNNING), &from);
	t0 = fab_mono_ms();
	stop("d", 0, 300);
	wait_status("d", ST(STOPPING), &from);
	st = wait_status("d", ST(STOPPED), &from);
	assert_true(fab_mono_ms() - t0 >= 290);
	assert_non_null(strstr(st->reason, "forced after 300 ms"));

	run("n", 1, "wait", NULL);
	wait_status("n", ST(RUNNING), &from);
	stop("n", 1, 10000);
	assert_non_null(strstr(wait_status("n", 0, &from)->reason, "shutdown channel"));

	run("z", 1, "icwait", NULL);
	wait_status("z", ST(RUNNING), &from);
	stop("z", 1, 0);
	st = wait_status("z", 0, &from);
	assert_int_equal(st->state, ST(STOPPED));
	assert_non_null(strstr(st->reason, "forced stop"));
	assert_int_equal(n_created, n_destroyed);
}

/* The console keeps the newest 64 KiB; messages are at most 16 KiB; what
 * arrives while the controller is away is sent when it is back. */
static void test_console(void **state)
{
	static char buf[256 << 10];
	size_t from = 0, n, largest;

	offline = true;
	run("f", 1, "flood", NULL);
	spin(600);
	offline = false;
	forget();
	spin(700);
	n = console("f", 0, buf, sizeof(buf), &largest);
	assert_int_equal(n, 64u << 10);
	assert_true(largest <= 16u << 10);
	/* The newest bytes: the pattern's tail of 200000. */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(buf[i], (char)('a' + (200000 - n + i) % 26));
	/* And the partition is reported by a NodeReport, then forgotten. */
	{
		Fab__NodeReport r = FAB__NODE_REPORT__INIT;
		Fab__DeletePartition m = FAB__DELETE_PARTITION__INIT;

		assert_int_equal(nhv_pmgr_report_fill(pm, &r), 0);
		assert_int_equal(r.n_partitions, 1);
		assert_string_equal(r.partitions[0]->name, "f");
		assert_int_equal(r.partitions[0]->state, ST(RUNNING));
		nhv_pmgr_report_free(&r);
		m.name = "f";
		m.epoch = 1;
		nhv_pmgr_delete(pm, &m);
		nhv_pmgr_delete(pm, &m);
		assert_int_equal(nhv_pmgr_report_fill(pm, &r), 0);
		assert_int_equal(r.n_partitions, 0);
		nhv_pmgr_report_free(&r);
	}
	(void)from;
}

/* A remote channel's health: a status whenever it changes. */
static void test_health(void **state)
{
	Fab__DeviceBinding d = FAB__DEVICE_BINDING__INIT;
	const Fab__PartitionStatus *st;
	size_t from = 0;

	d.device = "disk0";
	d.volume = "rv";
	d.node = "node-b";
	d.address = "127.0.0.1:7800";
	d.export = "rv";
	d.timeout_ms = 2000;
	run("r", 1, "wait", &d);
	st = wait_status("r", ST(RUNNING), &from);
	assert_true(st->channels[0]->remote);
	assert_string_equal(st->channels[0]->transport, "tcp");
	assert_string_equal(st->channels[0]->vsp_node, "node-b");
	assert_non_null(last_stub);
	last_stub->st.failed = 7;
	last_stub->st.failing = true;
	st = wait_status("r", ST(RUNNING), &from);
	assert_string_equal(st->channels[0]->health, "failing");
	assert_int_equal(st->channels[0]->io_errors, 7);
	last_stub->st.failing = false;
	st = wait_status("r", ST(RUNNING), &from);
	assert_string_equal(st->channels[0]->health, "ok");
	/* Unchanged: quiet. */
	spin(1200);
	assert_int_equal(ngot, from);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_console, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
