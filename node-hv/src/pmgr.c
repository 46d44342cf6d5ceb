// SPDX-License-Identifier: MIT
/*
 * The partition manager of fabnode serve: partitions the controller asks
 * for (RunPartition, StopPartition, DeletePartition) and what it is told
 * about them (PartitionStatus, ConsoleOutput, NodeReport entries).
 *
 * A partition is known by name and placement epoch. The controller resends
 * commands after restarts, so they are idempotent: RunPartition of the
 * epoch the node holds only repeats its status, one of a newer epoch
 * replaces the partition, one of an older epoch is stale and ignored;
 * StopPartition and DeletePartition act only on the epoch they name (0:
 * whichever the node holds). Once a partition
 * has ended its KVM resources are freed at once; a small record (state,
 * exit status, reason, channels) stays until DeletePartition or a newer
 * RunPartition, so a resent command or a NodeReport still tells the truth.
 *
 * Threads. Everything here runs on the main loop, except two partition
 * callbacks that run on vCPU threads (or the partition's monitor thread):
 *  - the state callback only wakes the loop (ev_async_send is safe from any
 *    thread); the loop then looks at every partition it holds and handles
 *    those that ended. No state travels with the wake-up, so coalesced
 *    wake-ups lose nothing. (It is called with the partition's own lock
 *    held: it must not call into the partition, and does not.)
 *  - the console callback appends to the record's console ring under its
 *    con_lock; a loop timer sends what is new every PM_TICK_MS.
 * A record is freed only after nhv_partition_destroy() has joined those
 * threads, so neither callback can outlive it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "fab/conn.h"
#include "fab/hvabi.h"
#include "fab/log.h"
#include "fab/nodecfg.h"
#include "fab/nodehv.h"
#include "fab/remote.h"
#include "fab/util.h"
#include "pmgr.h"
#include "pmgr_int.h"



static bool ended(enum nhv_part_state st)
{
	return st == NHV_PART_STOPPED || st == NHV_PART_EXITED || st == NHV_PART_CRASHED;
}

int pm_send_env(struct nhv_pmgr *pm, Fab__Envelope *env)
{
	return pm->report ? pm->report(env, pm->report_arg) : -ENOTCONN;
}

/* ---- status ------------------------------------------------------------------ */

/* A PartitionStatus and the storage its channels point into; the status
 * comes first, so a pointer to it is a pointer to the whole. Its strings
 * borrow the record's. */
struct status_msg {
	Fab__PartitionStatus st;
	Fab__ChannelInfo ch[PM_MAX_DEVICES];
	Fab__ChannelInfo *chp[PM_MAX_DEVICES];
};

/* Refreshes the channels' counters from their stubs. Returns true if a
 * channel's health or error count changed since last time. */
static bool channels_refresh(struct pm_part *r)
{
	bool changed = false;

	for (unsigned i = 0; i < r->ndevs; i++) {
		struct pm_dev *d = &r->devs[i];
		struct nhv_stub_stats st;

		if (!d->remote || !d->stub)
			continue;
		nhv_stub_stats(d->stub, &st);
		if (st.failed != d->io_errors || st.failing != d->failing)
			changed = true;
		d->io_errors = st.failed;
		d->failing = st.failing;
	}
	return changed;
}

static void status_build(struct pm_part *r, struct status_msg *m)
{
	struct nhv_pmgr *pm = r->pm;

	fab__partition_status__init(&m->st);
	m->st.name = r->name;
	m->st.epoch = r->epoch;
	m->st.state = r->state;
	m->st.exit_status = r->exit_status;
	m->st.reason = r->reason;
	if (r->state == ST(FAILED))
		return; /* it never had channels */
	for (unsigned i = 0; i < r->ndevs; i++) {
		struct pm_dev *d = &r->devs[i];
		Fab__ChannelInfo *c = &m->ch[i];

		fab__channel_info__init(c);
		c->device = d->device;
		c->volume = d->volume;
		c->remote = d->remote;
		c->transport = d->remote && pm->cfg.dp ? (char *)nhv_dp_transport(pm->cfg.dp)
			       : d->remote	       ? "none"
						       : "local";
		c->vsp_node = d->node;
		c->health = d->failing ? "failing" : "ok";
		c->io_errors = d->io_errors;
		m->chp[i] = c;
	}
	m->st.n_channels = r->ndevs;
	m->st.channels = m->chp;
}

void pm_status_send(struct pm_part *r)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	struct status_msg *m = malloc(sizeof(*m)); /* ~2 KiB: not on the loop's stack */

	if (!m) {
		fab_err("partition %s: out of memory for its status report", r->name);
		return;
	}
	if (r->p)
		channels_refresh(r);
	status_build(r, m);
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_STATUS;
	env.partition_status = &m->st;
	pm_send_env(r->pm, &env);
	free(m);
}

/* A status for a command that has no record (its name is not valid). */
static void status_send_bare(struct nhv_pmgr *pm, const char *name, uint64_t epoch,
			     const char *reason)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionStatus st = FAB__PARTITION_STATUS__INIT;

	st.name = (char *)name;
	st.epoch = epoch;
	st.state = ST(FAILED);
	st.reason = (char *)reason;
	env.body_case = FAB__ENVELOPE__BODY_PARTITION_STATUS;
	env.partition_status = &st;
	pm_send_env(pm, &env);
}

static void part_fail(struct pm_part *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Records that the partition could not be created, logs and reports it. */
static void part_fail(struct pm_part *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
	r->state = ST(FAILED);
	fab_warn("partition %s (epoch %llu): cannot run: %s", r->name, (unsigned long long)r->epoch,
		 r->reason);
	pm_status_send(r);
}

/* ---- console ----------------------------------------------------------------- */

/* vCPU thread. */
void pm_on_console(struct nhv_partition *p, const char *buf, size_t len, void *arg)
{
	struct pm_part *r = arg;

	pthread_mutex_lock(&r->con_lock);
	/* Only the newest PM_CONSOLE_KEEP bytes of a large write matter. */
	if (len > PM_CONSOLE_KEEP) {
		r->con_total += len - PM_CONSOLE_KEEP;
		buf += len - PM_CONSOLE_KEEP;
		len = PM_CONSOLE_KEEP;
	}
	while (len) {
		size_t at = (size_t)(r->con_total % PM_CONSOLE_KEEP);
		size_t n = PM_CONSOLE_KEEP - at < len ? PM_CONSOLE_KEEP - at : len;

		memcpy(r->con + at, buf, n);
		r->con_total += n;
		buf += n;
		len -= n;
	}
	pthread_mutex_unlock(&r->con_lock);
}

/* Sends up to one message of new console output. Returns 1 if it sent
 * one and more may be waiting, else 0. */
static int console_send_one(struct pm_part *r)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__ConsoleOutput co = FAB__CONSOLE_OUTPUT__INIT;
	static uint8_t buf[PM_CONSOLE_MSG]; /* loop thread only */
	uint64_t total, from;
	size_t n = 0;

	pthread_mutex_lock(&r->con_lock);
	total = r->con_total;
	from = r->con_sent;
	/* What was overwritten before it could be sent is gone. */
	if (total > PM_CONSOLE_KEEP && from < total - PM_CONSOLE_KEEP)
		from = total - PM_CONSOLE_KEEP;
	while (from + n < total && n < sizeof(buf)) {
		size_t at = (size_t)((from + n) % PM_CONSOLE_KEEP);
		size_t k = PM_CONSOLE_KEEP - at;

		if (k > total - from - n)
			k = (size_t)(total - from - n);
		if (k > sizeof(buf) - n)
			k = sizeof(buf) - n;
		memcpy(buf + n, r->con + at, k);
		n += k;
	}
	pthread_mutex_unlock(&r->con_lock);
	if (!n)
		return 0;
	if (from > r->con_sent)
		fab_debug("partition %s: %llu console bytes dropped (the controller was away)",
			  r->name, (unsigned long long)(from - r->con_sent));
	co.name = r->name;
	co.epoch = r->epoch;
	co.data.data = buf;
	co.data.len = n;
	env.body_case = FAB__ENVELOPE__BODY_CONSOLE_OUTPUT;
	env.console_output = &co;
	/* Not connected: keep it; the ring goes on holding the newest. */
	if (pm_send_env(r->pm, &env))
		return 0;
	r->con_sent = from + n;
	return from + n < total;
}

static void console_flush(struct pm_part *r)
{
	/* Bounded: the ring holds PM_CONSOLE_KEEP / PM_CONSOLE_MSG messages,
	 * plus what a running guest adds meanwhile. */
	for (int i = 0; i < (int)(PM_CONSOLE_KEEP / PM_CONSOLE_MSG) + 1; i++)
		if (!console_send_one(r))
			break;
}

/* ---- partition lifecycle ------------------------------------------------------- */

/* vCPU or monitor thread, with the partition's lock held: only wakes the
 * loop (see the comment at the top). */
void pm_on_state(struct nhv_partition *p, enum nhv_part_state st, void *arg)
{
	struct pm_part *r = arg;

	ev_async_send(r->pm->cfg.loop, &r->pm->wake);
}

/* Frees the KVM side of a partition (forced stop if it still runs). The
 * record's channel counters keep their last values. */
static void part_destroy(struct pm_part *r)
{
	if (r->mig && r->pm->mig)
		r->pm->mig->part_gone(r);
	if (!r->p)
		return;
	channels_refresh(r);
	nhv_partition_stop(r->p);
	nhv_partition_destroy(r->p);
	r->p = NULL;
	for (unsigned i = 0; i < r->ndevs; i++)
		r->devs[i].stub = NULL;
}

/* The partition has ended: free it, keep the record, report. */
static void part_ended(struct pm_part *r)
{
	struct nhv_pmgr *pm = r->pm;
	enum nhv_part_state st = nhv_partition_state(r->p);
	int status = nhv_partition_exit_status(r->p);
	char why[PM_REASON];

	nhv_partition_reason(r->p, why, sizeof(why));
	ev_timer_stop(pm->cfg.loop, &r->stop_timer);
	part_destroy(r);
	/* The last words first, then how it ended. */
	console_flush(r);
	r->exit_status = 0;
	switch (st) {
	case NHV_PART_EXITED:
		r->exit_status = status;
		if (r->stopping) {
			r->state = ST(STOPPED);
			snprintf(r->reason, sizeof(r->reason),
				 "shut down gracefully on request (exit status %d)", status);
		} else {
			r->state = ST(EXITED);
			snprintf(r->reason, sizeof(r->reason), "exited with status %d", status);
		}
		break;
	case NHV_PART_CRASHED:
		r->state = ST(CRASHED);
		snprintf(r->reason, sizeof(r->reason), "%s", why[0] ? why : "crashed");
		break;
	default: /* stopped by the host */
		r->state = ST(STOPPED);
		snprintf(r->reason, sizeof(r->reason), "%s",
			 r->forced[0] ? r->forced : "stopped by the host");
		break;
	}
	r->stopping = false;
	fab_info("partition %s (epoch %llu): %s", r->name, (unsigned long long)r->epoch, r->reason);
	pm_status_send(r);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct nhv_pmgr *pm = w->data;

	for (struct pm_part *r = pm->parts; r; r = r->next)
		if (r->p && ended(nhv_partition_state(r->p)))
			part_ended(r);
}

/* Stops the partition now; part_ended() reports STOPPED with reason. */
static void part_force(struct pm_part *r, const char *reason)
{
	snprintf(r->forced, sizeof(r->forced), "%s", reason);
	nhv_partition_stop(r->p);
	/* The guest may have exited on its own just before: either way it
	 * has ended now. */
	part_ended(r);
}

void pm_stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pm_part *r = w->data;
	char why[PM_REASON];

	if (!r->p)
		return;
	snprintf(why, sizeof(why), "forced after %u ms: the guest did not shut down", r->stop_ms);
	fab_warn("partition %s: %s", r->name, why);
	part_force(r, why);
}

struct pm_part *pm_part_find(struct nhv_pmgr *pm, const char *name)
{
	for (struct pm_part *r = pm->parts; r; r = r->next)
		if (!strcmp(r->name, name))
			return r;
	return NULL;
}

static struct pm_part *part_new(struct nhv_pmgr *pm, const char *name, uint64_t epoch)
{
	struct pm_part *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->pm = pm;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->epoch = epoch;
	pthread_mutex_init(&r->con_lock, NULL);
	ev_timer_init(&r->stop_timer, pm_stop_timer_cb, 0., 0.);
	r->stop_timer.data = r;
	r->next = pm->parts;
	pm->parts = r;
	return r;
}

/* Forgets a partition: forced stop and destroy if it exists, no report. */
void pm_part_free(struct pm_part *r)
{
	struct nhv_pmgr *pm = r->pm;

	for (struct pm_part **pp = &pm->parts; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	ev_timer_stop(pm->cfg.loop, &r->stop_timer);
	part_destroy(r);
	pthread_mutex_destroy(&r->con_lock);
	free(r);
}

/* ---- RunPartition ---------------------------------------------------------------- */

/* Checks one DeviceBinding into d (and rem for a remote one). Returns 0 or
 * -EINVAL with a reason in why. */
static int device_parse(struct nhv_pmgr *pm, const Fab__DeviceBinding *b, struct pm_dev *d,
			struct nhv_cfg_remote *rem, char *why, size_t len)
{
	char host[256], port[8];

	if (fab_name_valid(b->device)) {
		snprintf(why, len, "device name '%.64s' is not valid", b->device);
		return -EINVAL;
	}
	snprintf(d->device, sizeof(d->device), "%s", b->device);
	if (b->volume[0] && fab_name_valid(b->volume)) {
		snprintf(why, len, "%s: volume name '%.64s' is not valid", b->device, b->volume);
		return -EINVAL;
	}
	snprintf(d->volume, sizeof(d->volume), "%s", b->volume);
	if (!b->path[0] == !b->node[0]) {
		snprintf(why, len, "%s: give either a local path or a serving node", b->device);
		return -EINVAL;
	}
	if (b->path[0]) {
		char real[PATH_MAX], vdir[PATH_MAX];
		struct stat st;
		size_t vl;

		/* The controller names files of our volume_dir only: a path
		 * that resolves anywhere else (.., a symlink) is refused. */
		if (!realpath(b->path, real)) {
			snprintf(why, len, "%s: %.200s: %s", b->device, b->path, strerror(errno));
			return -EINVAL;
		}
		/* Resolved now: volume_dir may have been created (or
		 * replaced by a link) since the node started. */
		if (!realpath(pm->cfg.volume_dir, vdir))
			vdir[0] = '\0';
		vl = strlen(vdir);
		if (!vl || strncmp(real, vdir, vl) || real[vl] != '/' ||
		    strchr(real + vl + 1, '/')) {
			snprintf(why, len, "%s: %.200s is not a volume of this node (%s)",
				 b->device, b->path, pm->cfg.volume_dir);
			return -EINVAL;
		}
		if (stat(real, &st) || !S_ISREG(st.st_mode)) {
			snprintf(why, len, "%s: %.200s is not a file", b->device, b->path);
			return -EINVAL;
		}
		if (strlen(real) >= sizeof(d->path)) {
			snprintf(why, len, "%s: path too long", b->device);
			return -EINVAL;
		}
		memcpy(d->path, real, strlen(real) + 1);
		snprintf(d->node, sizeof(d->node), "%s", pm->cfg.node);
		return 0;
	}
	if (fab_name_valid(b->node) || fab_name_valid(b->export) ||
	    strlen(b->address) >= sizeof(rem->address) ||
	    fab_hostport_split(b->address, host, sizeof(host), port, sizeof(port))) {
		snprintf(why, len,
			 "%s: a remote disk needs a valid node, address (HOST:PORT) and export",
			 b->device);
		return -EINVAL;
	}
	if (b->timeout_ms &&
	    (b->timeout_ms < PM_REMOTE_MIN_MS || b->timeout_ms > PM_REMOTE_MAX_MS)) {
		snprintf(why, len, "%s: timeout_ms must be %u..%u (0: %u)", b->device,
			 PM_REMOTE_MIN_MS, PM_REMOTE_MAX_MS, NHV_CFG_DEFAULT_TIMEOUT_MS);
		return -EINVAL;
	}
	if (!pm->cfg.dp) {
		snprintf(why, len, "%s: this node has no data plane for remote disks", b->device);
		return -EINVAL;
	}
	d->remote = true;
	snprintf(d->node, sizeof(d->node), "%s", b->node);
	memset(rem, 0, sizeof(*rem));
	snprintf(rem->device, sizeof(rem->device), "%s", b->device);
	snprintf(rem->node, sizeof(rem->node), "%s", b->node);
	snprintf(rem->address, sizeof(rem->address), "%s", b->address);
	snprintf(rem->export_name, sizeof(rem->export_name), "%s", b->export);
	rem->type = NHV_DEV_STORAGE;
	rem->timeout_ms = b->timeout_ms ? b->timeout_ms : NHV_CFG_DEFAULT_TIMEOUT_MS;
	return 0;
}

/* Checks everything about a RunPartition that can be checked without
 * creating it, filling the record's devices. */
int pm_run_parse(struct pm_part *r, const Fab__RunPartition *m, struct nhv_cfg_remote *rem,
		     char *why, size_t len)
{
	struct nhv_pmgr *pm = r->pm;
	size_t ilen = strlen(m->image);
	uint64_t used = 0;

	if (!pm->cfg.vcpus) {
		snprintf(why, len, "node offers no vCPUs (a storage-only node)");
		return -EINVAL;
	}
	if (!ilen || ilen > PM_IMAGE_NAME_MAX || strchr(m->image, '/') || m->image[0] == '.') {
		snprintf(why, len, "image name '%.64s' is not a file name of the image directory",
			 m->image);
		return -EINVAL;
	}
	if (m->vcpus < 1 || m->vcpus > NHV_MAX_VCPUS) {
		snprintf(why, len, "vcpus must be 1..%d, not %u", NHV_MAX_VCPUS, m->vcpus);
		return -EINVAL;
	}
	if (m->n_args > FAB_ARGS_MAX - 1) {
		snprintf(why, len, "at most %d guest arguments", FAB_ARGS_MAX - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_args; i++)
		if (strlen(m->args[i]) >= FAB_ARGS_BYTES) {
			snprintf(why, len, "guest argument %zu is too long", i + 1);
			return -EINVAL;
		}
	{
		struct nhv_partition_cfg pc = { .ram_bytes = m->memory_bytes,
						.vcpus = m->vcpus,
						.argc = (int)m->n_args + 1 };

		if (nhv_partition_cfg_check(&pc, why, len))
			return -EINVAL;
	}
	for (struct pm_part *o = pm->parts; o; o = o->next)
		if (o != r && o->p)
			used += o->memory_bytes;
	/* Shells of incoming migrations hold their RAM too. */
	for (struct pm_mig *mg = pm->migs; mg; mg = mg->next)
		if (!mg->source && !mg->final && mg->part && mg->part != r && mg->part->p)
			used += mg->part->memory_bytes;
	if (used + m->memory_bytes > pm->cfg.memory_bytes) {
		snprintf(why, len, "not enough memory: %llu MiB asked, %llu of %llu MiB in use",
			 (unsigned long long)(m->memory_bytes >> 20),
			 (unsigned long long)(used >> 20),
			 (unsigned long long)(pm->cfg.memory_bytes >> 20));
		return -EINVAL;
	}
	if (m->n_devices > PM_MAX_DEVICES) {
		snprintf(why, len, "at most %d devices", PM_MAX_DEVICES);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_devices; i++) {
		int rc = device_parse(pm, m->devices[i], &r->devs[i], &rem[i], why, len);
		char who[FAB_NAME_MAX];

		if (rc)
			return rc;
		/* One writer per image, as the skeleton keeps it for remote
		 * ones: two guests writing one file system corrupt it. */
		if (!r->devs[i].remote &&
		    nhv_pmgr_volume_user(pm, r->devs[i].path, who, sizeof(who))) {
			snprintf(why, len, "%s: volume %s is in use by partition %s",
				 r->devs[i].device, r->devs[i].volume, who);
			return -EBUSY;
		}
		for (size_t k = 0; k < i; k++)
			if (!strcmp(r->devs[k].device, r->devs[i].device)) {
				snprintf(why, len, "device %s given twice", r->devs[i].device);
				return -EINVAL;
			}
		r->ndevs = (unsigned)i + 1;
	}
	return 0;
}

/* Reads <image_dir>/<name>, or <name>.elf (how the build names images).
 * Returns 0 or a negative errno with a reason in why. */
static int image_load(struct nhv_pmgr *pm, const char *name, uint8_t **out, size_t *len, char *why,
		      size_t whylen)
{
	char path[NHV_CFG_PATH_MAX + PM_IMAGE_NAME_MAX + 8];
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", pm->cfg.image_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		snprintf(path, sizeof(path), "%s/%s.elf", pm->cfg.image_dir, name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			snprintf(path, sizeof(path), "%s/%s", pm->cfg.image_dir, name);
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(why, whylen, "image %.300s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > PM_MAX_IMAGE) {
		close(fd);
		snprintf(why, whylen, "image %.300s: not a file of at most %u MiB", path,
			 PM_MAX_IMAGE >> 20);
		return -EFBIG;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		snprintf(why, whylen, "image %.300s: out of memory", path);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			snprintf(why, whylen, "image %.300s: read: %s", path, strerror(-rc));
			return rc;
		}
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = got;
	return 0;
}

/* Creates, equips and starts the partition of record r. */
static void part_start(struct pm_part *r, const Fab__RunPartition *m,
		       const struct nhv_cfg_remote *rem)
{
	struct nhv_pmgr *pm = r->pm;
	const char *gargv[FAB_ARGS_MAX];
	char console[NHV_CFG_PATH_MAX + FAB_NAME_MAX + 8], err[2 * PM_REASON + 128];
	struct nhv_partition_cfg pc = { 0 };
	uint8_t *img = NULL;
	size_t len = 0;
	int rc;

	if (image_load(pm, m->image, &img, &len, err, sizeof(err))) {
		part_fail(r, "%s", err);
		return;
	}
	gargv[0] = m->image;
	for (size_t i = 0; i < m->n_args; i++)
		gargv[i + 1] = m->args[i];
	/* One log per partition name, holding its newest run. Made when
	 * first needed: a node that runs nothing leaves no trace. */
	rc = nhv_mkdirs(pm->console_dir, 0750);
	snprintf(console, sizeof(console), "%s/%s.log", pm->console_dir, r->name);
	if (rc)
		fab_warn("partition %s: cannot create %s: %s; no console log", r->name,
			 pm->console_dir, strerror(-rc));
	else if (truncate(console, 0) && errno != ENOENT)
		fab_warn("partition %s: cannot truncate %s: %s", r->name, console, strerror(errno));
	pc.id = ++pm->next_id;
	pc.ram_bytes = m->memory_bytes;
	pc.vcpus = m->vcpus;
	pc.image = img;
	pc.image_len = len;
	pc.argc = (int)m->n_args + 1;
	pc.argv = gargv;
	pc.console_path = rc ? NULL : console;
	pc.console_limit = pm->cfg.console_limit;
	pc.console_cb = pm_on_console;
	pc.state_cb = pm_on_state;
	pc.cb_arg = r;
	rc = nhv_partition_create(&pc, &r->p, err, sizeof(err));
	free(img);
	if (rc) {
		r->p = NULL;
		part_fail(r, "%s", err);
		return;
	}
	r->vcpus = m->vcpus;
	r->memory_bytes = m->memory_bytes;
	/* Devices in order: the guest finds them as disk0, disk1, ... */
	for (unsigned i = 0; i < r->ndevs; i++) {
		struct pm_dev *d = &r->devs[i];

		if (!d->remote) {
			rc = nhv_partition_attach_disk(r->p, d->path, false, err, sizeof(err));
			if (rc)
				goto fail;
			continue;
		}
		rc = nhv_stub_attach(pm->cfg.dp, r->p, r->name, &rem[i], &d->stub);
		if (rc) {
			d->stub = NULL;
			snprintf(err, sizeof(err),
				 "%s: remote disk (export %s on node %s at %s): %s", d->device,
				 rem[i].export_name, rem[i].node, rem[i].address, strerror(-rc));
			goto fail;
		}
	}
	rc = nhv_partition_attach_ic(r->p);
	if (rc) {
		snprintf(err, sizeof(err), "integration components: %s", strerror(-rc));
		goto fail;
	}
	r->state = ST(RUNNING);
	r->reason[0] = '\0';
	rc = nhv_partition_start(r->p);
	if (rc) {
		snprintf(err, sizeof(err), "cannot start: %s", strerror(-rc));
		goto fail;
	}
	fab_info("partition %s (epoch %llu): running %s, %u vCPU(s), %llu MiB, %u device(s)",
		 r->name, (unsigned long long)r->epoch, m->image, m->vcpus,
		 (unsigned long long)(m->memory_bytes >> 20), r->ndevs);
	/* RUNNING goes out before any state change the loop handles next. */
	pm_status_send(r);
	return;
fail:
	part_destroy(r);
	part_fail(r, "%s", err);
}

void nhv_pmgr_run(struct nhv_pmgr *pm, const Fab__RunPartition *m)
{
	struct nhv_cfg_remote *rem;
	char why[PM_REASON];
	struct pm_part *r;

	if (fab_name_valid(m->name)) {
		fab_warn("RunPartition for '%.64s': not a valid partition name; refused", m->name);
		status_send_bare(pm, m->name, m->epoch, "invalid partition name");
		return;
	}
	r = pm_part_find(pm, m->name);
	if (r && r->epoch == m->epoch) {
		/* A resend (the controller restarted or reconnected). */
		pm_status_send(r);
		return;
	}
	if (r && r->epoch > m->epoch) {
		fab_warn("RunPartition %s epoch %llu: stale (this node holds epoch %llu); "
			 "ignored",
			 m->name, (unsigned long long)m->epoch, (unsigned long long)r->epoch);
		return;
	}
	if (r) {
		fab_info("partition %s: epoch %llu replaces epoch %llu", m->name,
			 (unsigned long long)m->epoch, (unsigned long long)r->epoch);
		pm_part_free(r);
	}
	r = part_new(pm, m->name, m->epoch);
	rem = calloc(PM_MAX_DEVICES, sizeof(*rem));
	if (!r || !rem) {
		free(rem);
		if (r)
			part_fail(r, "out of memory");
		else
			status_send_bare(pm, m->name, m->epoch, "out of memory");
		return;
	}
	if (pm_run_parse(r, m, rem, why, sizeof(why)))
		part_fail(r, "%s", why);
	else
		part_start(r, m, rem);
	free(rem);
}

/* ---- StopPartition, DeletePartition ------------------------------------------------ */

void nhv_pmgr_stop(struct nhv_pmgr *pm, const Fab__StopPartition *m)
{
	struct pm_part *r = pm_part_find(pm, m->name);
	uint32_t ms = m->timeout_ms > PM_MAX_STOP_MS ? PM_MAX_STOP_MS : m->timeout_ms;
	int rc;

	if (!r) {
		fab_info("StopPartition %.64s: no such partition here; nothing to do", m->name);
		return;
	}
	/* epoch 0 means whichever the node holds, as for DeletePartition. */
	if (m->epoch && m->epoch != r->epoch) {
		fab_warn("StopPartition %s epoch %llu: this node holds epoch %llu; ignored",
			 r->name, (unsigned long long)m->epoch, (unsigned long long)r->epoch);
		return;
	}
	if (!r->p) {
		pm_status_send(r); /* it has ended already: say how */
		return;
	}
	if (!ms) {
		fab_info("partition %s: forced stop", r->name);
		part_force(r, "forced stop (no graceful time asked)");
		return;
	}
	if (r->stopping) {
		/* Asked again: keep the earlier deadline unless this one is
		 * sooner. */
		ev_tstamp left = ev_timer_remaining(pm->cfg.loop, &r->stop_timer);

		if (ms / 1000.0 < left) {
			ev_timer_stop(pm->cfg.loop, &r->stop_timer);
			ev_timer_set(&r->stop_timer, ms / 1000.0, 0.);
			ev_timer_start(pm->cfg.loop, &r->stop_timer);
			r->stop_ms = ms;
		}
		pm_status_send(r);
		return;
	}
	rc = nhv_partition_request_shutdown(r->p);
	if (rc == -ENOTCONN || rc == -ENODEV) {
		fab_info("partition %s: the guest has no shutdown channel open; forced stop",
			 r->name);
		part_force(r, "forced at once: the guest had not opened its shutdown channel");
		return;
	}
	if (rc) {
		char why[PM_REASON];

		snprintf(why, sizeof(why), "forced at once: shutdown request failed: %s",
			 strerror(-rc));
		part_force(r, why);
		return;
	}
	r->stopping = true;
	r->stop_ms = ms;
	r->state = ST(STOPPING);
	snprintf(r->reason, sizeof(r->reason), "asked to shut down within %u ms", ms);
	ev_timer_set(&r->stop_timer, ms / 1000.0, 0.);
	ev_timer_start(pm->cfg.loop, &r->stop_timer);
	fab_info("partition %s: asked the guest to shut down (forced after %u ms)", r->name, ms);
	pm_status_send(r);
}

void nhv_pmgr_delete(struct nhv_pmgr *pm, const Fab__DeletePartition *m)
{
	struct pm_part *r = pm_part_find(pm, m->name);

	if (!r)
		return; /* deleted already */
	if (m->epoch && m->epoch != r->epoch) {
		fab_warn("DeletePartition %s epoch %llu: this node holds epoch %llu; ignored",
			 r->name, (unsigned long long)m->epoch, (unsigned long long)r->epoch);
		return;
	}
	fab_info("partition %s (epoch %llu): deleted%s", r->name, (unsigned long long)r->epoch,
		 r->p ? " (forced stop)" : "");
	pm_part_free(r);
}

/* ---- ticks: console and channel health ---------------------------------------------- */

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct nhv_pmgr *pm = w->data;
	bool health = ++pm->ticks % PM_HEALTH_TICKS == 0;

	if (pm->mig)
		pm->mig->tick(pm);

	for (struct pm_part *r = pm->parts; r; r = r->next) {
		console_flush(r);
		if (health && r->p && channels_refresh(r)) {
			for (unsigned i = 0; i < r->ndevs; i++)
				if (r->devs[i].remote)
					fab_info("partition %s: %s (volume %s on node %s): %s, "
						 "%llu request(s) failed here",
						 r->name, r->devs[i].device, r->devs[i].volume,
						 r->devs[i].node,
						 r->devs[i].failing ? "failing" : "ok",
						 (unsigned long long)r->devs[i].io_errors);
			pm_status_send(r);
		}
	}
}

/* ---- reports, queries --------------------------------------------------------------- */

int nhv_pmgr_report_fill(struct nhv_pmgr *pm, Fab__NodeReport *rep)
{
	size_t n = 0, i = 0;

	if (pm->mig && pm->mig->report(pm, rep))
		return -ENOMEM;

	for (struct pm_part *r = pm->parts; r; r = r->next)
		n++;
	if (!n)
		return 0;
	rep->partitions = calloc(n, sizeof(*rep->partitions));
	if (!rep->partitions)
		return -ENOMEM;
	for (struct pm_part *r = pm->parts; r; r = r->next, i++) {
		struct status_msg *m = malloc(sizeof(*m));

		if (!m) {
			rep->n_partitions = i;
			nhv_pmgr_report_free(rep);
			return -ENOMEM;
		}
		if (r->p)
			channels_refresh(r);
		status_build(r, m);
		rep->partitions[i] = &m->st;
	}
	rep->n_partitions = n;
	return 0;
}

void nhv_pmgr_report_free(Fab__NodeReport *rep)
{
	/* Each entry is the first member of its struct status_msg. */
	for (size_t i = 0; i < rep->n_partitions; i++)
		free(rep->partitions[i]);
	free(rep->partitions);
	rep->partitions = NULL;
	rep->n_partitions = 0;
	for (size_t i = 0; i < rep->n_migrations; i++)
		free(rep->migrations[i]);
	free(rep->migrations);
	rep->migrations = NULL;
	rep->n_migrations = 0;
}

int nhv_pmgr_volume_user(struct nhv_pmgr *pm, const char *path, char *who, size_t len)
{
	for (struct pm_part *r = pm->parts; r; r = r->next) {
		if (!r->p)
			continue;
		for (unsigned i = 0; i < r->ndevs; i++)
			if (!r->devs[i].remote && !strcmp(r->devs[i].path, path)) {
				snprintf(who, len, "%s", r->name);
				return 1;
			}
	}
	return 0;
}

/* ---- set-up --------------------------------------------------------------------------- */

int nhv_mkdirs(const char *path, unsigned mode)
{
	char buf[NHV_CFG_PATH_MAX];

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int nhv_pmgr_new(const struct nhv_pmgr_cfg *cfg, struct nhv_pmgr **out)
{
	struct nhv_pmgr *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return -ENOMEM;
	pm->cfg = *cfg;
	snprintf(pm->console_dir, sizeof(pm->console_dir), "%s/console", cfg->state_dir);
	ev_async_init(&pm->wake, wake_cb);
	pm->wake.data = pm;
	ev_async_start(cfg->loop, &pm->wake);
	ev_timer_init(&pm->tick, tick_cb, PM_TICK_MS / 1000.0, PM_TICK_MS / 1000.0);
	pm->tick.data = pm;
	ev_timer_start(cfg->loop, &pm->tick);
	*out = pm;
	return 0;
}

void nhv_pmgr_set_report(struct nhv_pmgr *pm, nhv_report_cb cb, void *arg)
{
	pm->report = cb;
	pm->report_arg = arg;
}

void nhv_pmgr_free(struct nhv_pmgr *pm)
{
	if (!pm)
		return;
	if (pm->mig)
		pm->mig->free(pm);
	while (pm->parts)
		pm_part_free(pm->parts);
	ev_timer_stop(pm->cfg.loop, &pm->tick);
	ev_async_stop(pm->cfg.loop, &pm->wake);
	free(pm);
}
