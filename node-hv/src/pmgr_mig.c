// SPDX-License-Identifier: MIT
/*
 * Live migration in the partition manager (controller/MIGRATION.md): the
 * controller's MigrateOut, MigrateIn and MigrationDecision, carried out by
 * the engines of migrate.h, and the MigrationStatus reports.
 *
 * Source: the partition stays this node's until the controller says DROP
 * (then it is destroyed here) or RESUME (thawed, runs on). A failed copy
 * reports its error; the engine has already thawed the partition.
 * Target: MigrateIn builds a shell record (not listed as a partition)
 * and expects the stream; when the state arrives the partition is
 * restored, paused, and reported STOPPED (READY). RESUME starts it under
 * the decision's epoch and it becomes an ordinary partition of this node;
 * DROP destroys it. Decisions are idempotent: decided migrations are kept
 * (until a newer one of the same partition) and answered again.
 *
 * Downtime, as the target reports it on DONE: the source's pause (from
 * the start of quiesce until the target's READY reached it, which covers
 * the last pages, the state and the restore here) plus the time from READY
 * to the partition running here (the controller's decision included).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/remote.h"
#include "migrate.h"
#include "pmgr_int.h"

static void mig_out_stop(struct pm_mig *m, const char *why);

/* ---- live migration (migrate.h; controller/MIGRATION.md) ------------------------------- */

#define MP(x) FAB__MIGRATION_PHASE__MIGRATION_PHASE_##x

static struct pm_mig *mig_find(struct nhv_pmgr *pm, uint64_t id)
{
	for (struct pm_mig *m = pm->migs; m; m = m->next)
		if (m->id == id)
			return m;
	return NULL;
}

static void mig_status_fill(struct pm_mig *m, Fab__MigrationStatus *s)
{
	fab__migration_status__init(s);
	s->migration_id = m->id;
	s->name = m->name;
	s->role = m->source ? "source" : "target";
	s->phase = m->final ? m->final : m->phase;
	s->round = m->pr.round;
	s->ram_bytes = m->pr.ram_bytes;
	s->bytes_sent = m->pr.bytes_sent;
	s->dirty_bytes = m->pr.dirty_bytes;
	s->dirty_bytes_per_s = m->pr.dirty_bytes_per_s;
	s->link_bytes_per_s = m->pr.link_bytes_per_s;
	s->est_downtime_us = m->pr.est_downtime_us;
	/* Target: the downtime (see the top); source: its part of it, from
	 * quiesce until the target's READY reached it. */
	s->downtime_us = m->source ? m->pr.pause_us : m->downtime_us;
	s->throttle_pct = m->pr.throttle_pct;
	s->error = m->error;
}

static void mig_report(struct pm_mig *m)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationStatus s;

	mig_status_fill(m, &s);
	env.body_case = FAB__ENVELOPE__BODY_MIGRATION_STATUS;
	env.migration_status = &s;
	pm_send_env(m->pm, &env);
}

/* An answer without a record (an unknown migration id): changes nothing. */
static void mig_report_bare(struct nhv_pmgr *pm, uint64_t id, const char *name,
			    Fab__MigrationPhase phase, const char *error)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationStatus s = FAB__MIGRATION_STATUS__INIT;

	s.migration_id = id;
	s.name = (char *)name;
	s.phase = phase;
	s.error = (char *)error;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATION_STATUS;
	env.migration_status = &s;
	pm_send_env(pm, &env);
}

static void mig_notify(void *arg)
{
	struct nhv_pmgr *pm = arg;

	ev_async_send(pm->cfg.loop, &pm->mig_wake);
}

static struct pm_mig *mig_new(struct nhv_pmgr *pm, uint64_t id, const char *name, bool source,
			      uint64_t epoch)
{
	struct pm_mig *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->pm = pm;
	m->id = id;
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->source = source;
	m->epoch = epoch;
	m->phase = MP(PREPARE);
	m->next = pm->migs;
	pm->migs = m;
	return m;
}

/* Forgets decided migrations of name (a newer one replaces them). */
static void mig_forget_decided(struct nhv_pmgr *pm, const char *name)
{
	for (struct pm_mig **pp = &pm->migs; *pp;) {
		struct pm_mig *m = *pp;

		if (m->final && !strcmp(m->name, name)) {
			*pp = m->next;
			free(m->rem);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

static void mig_fail(struct pm_mig *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This side gave up: say why (the controller aborts). */
static void mig_fail(struct pm_mig *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	fab_warn("migration %llu of %s (%s): %s", (unsigned long long)m->id, m->name,
		 m->source ? "source" : "target", m->error);
	mig_report(m);
}

/* Source: the copy ends (an error, or the partition is going away). A
 * source that had not stopped runs on (the engine thawed it). */
static void mig_out_stop(struct pm_mig *m, const char *why)
{
	bool was_stopped = m->step == NHV_MIG_STOPPED;

	if (m->out) {
		nhv_mig_out_progress(m->out, &m->pr);
		nhv_mig_out_free(m->out);
		m->out = NULL;
		if (!m->final && !m->error[0] && why)
			mig_fail(m, "%s", why);
	}
	if (m->part && m->part->mig == m)
		m->part->mig = NULL;
	if (was_stopped && m->part && m->part->p && why) {
		/* The partition is being destroyed anyway. */
		nhv_partition_dirty_end(m->part->p);
	}
	m->part = NULL;
}

void nhv_pmgr_migrate_out(struct nhv_pmgr *pm, const Fab__MigrateOut *mo)
{
	struct nhv_mig_out_cfg oc = { 0 };
	struct pm_part *r;
	struct pm_mig *m;
	char host[256], port[8];
	int rc;

	m = mig_find(pm, mo->migration_id);
	if (m) {
		mig_report(m); /* a resend */
		return;
	}
	if (fab_name_valid(mo->name)) {
		mig_report_bare(pm, mo->migration_id, mo->name, MP(PREPARE),
				"invalid partition name");
		return;
	}
	mig_forget_decided(pm, mo->name);
	r = pm_part_find(pm, mo->name);
	m = mig_new(pm, mo->migration_id, mo->name, true, mo->epoch);
	if (!m) {
		mig_report_bare(pm, mo->migration_id, mo->name, MP(PREPARE), "out of memory");
		return;
	}
	if (!r || !r->p || (mo->epoch && r->epoch != mo->epoch)) {
		mig_fail(m, "partition %s epoch %llu does not run here", mo->name,
			 (unsigned long long)mo->epoch);
		return;
	}
	if (r->mig) {
		mig_fail(m, "partition %s is already migrating (migration %llu)", mo->name,
			 (unsigned long long)r->mig->id);
		return;
	}
	if (nhv_partition_state(r->p) != NHV_PART_RUNNING || r->stopping) {
		mig_fail(m, "partition %s is not running (%s)", mo->name,
			 nhv_part_state_name(nhv_partition_state(r->p)));
		return;
	}
	if (fab_name_valid(mo->target) || !strcmp(mo->target, pm->cfg.node) ||
	    strlen(mo->target_address) >= NHV_CFG_ADDR_MAX ||
	    fab_hostport_split(mo->target_address, host, sizeof(host), port, sizeof(port))) {
		mig_fail(m, "bad target node '%.64s' or address '%.64s'", mo->target,
			 mo->target_address);
		return;
	}
	if (!pm->cfg.dp) {
		mig_fail(m, "this node has no data plane");
		return;
	}
	oc.id = mo->migration_id;
	oc.name = mo->name;
	oc.target = mo->target;
	oc.address = mo->target_address;
	oc.budget_ms = mo->downtime_ms;
	oc.max_rounds = mo->max_rounds;
	oc.throttle = mo->throttle;
	oc.p = r->p;
	oc.notify = mig_notify;
	oc.arg = pm;
	rc = nhv_mig_out_start(pm->cfg.dp, &oc, &m->out);
	if (rc) {
		m->out = NULL;
		mig_fail(m, "cannot start copying: %s", strerror(-rc));
		return;
	}
	m->part = r;
	r->mig = m;
	m->step = NHV_MIG_PREPARE;
	nhv_mig_out_progress(m->out, &m->pr);
	fab_info("migration %llu: partition %s (epoch %llu) to node %s at %s, budget %u ms, "
		 "%u rounds at most%s",
		 (unsigned long long)m->id, m->name, (unsigned long long)r->epoch, mo->target,
		 mo->target_address, mo->downtime_ms ? mo->downtime_ms : 50,
		 mo->max_rounds ? mo->max_rounds : 30, mo->throttle ? ", throttle" : "");
	mig_report(m);
}

void nhv_pmgr_migrate_in(struct nhv_pmgr *pm, const Fab__MigrateIn *mi)
{
	struct nhv_mig_in_cfg ic = { 0 };
	Fab__RunPartition run = FAB__RUN_PARTITION__INIT;
	struct pm_part *r, *old;
	struct pm_mig *m;
	char why[PM_REASON];
	int rc;

	m = mig_find(pm, mi->migration_id);
	if (m) {
		mig_report(m);
		return;
	}
	if (fab_name_valid(mi->name)) {
		mig_report_bare(pm, mi->migration_id, mi->name, MP(PREPARE),
				"invalid partition name");
		return;
	}
	mig_forget_decided(pm, mi->name);
	m = mig_new(pm, mi->migration_id, mi->name, false, mi->epoch);
	r = calloc(1, sizeof(*r));
	if (m)
		m->rem = calloc(PM_MAX_DEVICES, sizeof(*m->rem));
	if (!m || !r || !m->rem) {
		free(r);
		if (m)
			mig_fail(m, "out of memory");
		else
			mig_report_bare(pm, mi->migration_id, mi->name, MP(PREPARE),
					"out of memory");
		return;
	}
	/* The shell's record: not in the list (nor the NodeReport's
	 * partitions) until RESUME makes it the partition. */
	r->pm = pm;
	snprintf(r->name, sizeof(r->name), "%s", mi->name);
	r->epoch = mi->epoch;
	pthread_mutex_init(&r->con_lock, NULL);
	ev_timer_init(&r->stop_timer, pm_stop_timer_cb, 0., 0.);
	r->stop_timer.data = r;
	m->part = r;
	old = pm_part_find(pm, mi->name);
	if (old && old->p) {
		mig_fail(m, "partition %s runs on this node already (epoch %llu)", mi->name,
			 (unsigned long long)old->epoch);
		return;
	}
	if (fab_name_valid(mi->source) || !strcmp(mi->source, pm->cfg.node)) {
		mig_fail(m, "bad source node '%.64s'", mi->source);
		return;
	}
	/* The same checks as a RunPartition of it (image name aside). */
	run.name = mi->name;
	run.epoch = mi->epoch;
	run.image = mi->image[0] ? mi->image : "migrated";
	run.vcpus = mi->vcpus;
	run.memory_bytes = mi->memory_bytes;
	run.n_args = mi->n_args;
	run.args = mi->args;
	run.n_devices = mi->n_devices;
	run.devices = mi->devices;
	if (pm_run_parse(r, &run, m->rem, why, sizeof(why))) {
		mig_fail(m, "%s", why);
		return;
	}
	r->vcpus = mi->vcpus;
	r->memory_bytes = mi->memory_bytes;
	if (!pm->cfg.dp) {
		mig_fail(m, "this node has no data plane");
		return;
	}
	{
		/* The partition's shell now (KVM VM, RAM, vCPUs), not inside
		 * the guest's pause; the copy lands in its RAM. */
		char console[NHV_CFG_PATH_MAX + FAB_NAME_MAX + 8], err[2 * PM_REASON];
		struct nhv_partition_cfg pc = { 0 };

		rc = nhv_mkdirs(pm->console_dir, 0750);
		snprintf(console, sizeof(console), "%s/%s.log", pm->console_dir, r->name);
		pc.ram_bytes = r->memory_bytes;
		pc.vcpus = r->vcpus;
		pc.console_path = rc ? NULL : console;
		pc.console_limit = pm->cfg.console_limit;
		pc.console_cb = pm_on_console;
		pc.state_cb = pm_on_state;
		pc.cb_arg = r;
		rc = nhv_partition_restore_shell(&pc, &r->p, err, sizeof(err));
		if (rc) {
			r->p = NULL;
			mig_fail(m, "cannot build the partition's shell: %s", err);
			return;
		}
	}
	ic.id = mi->migration_id;
	ic.name = mi->name;
	ic.source = mi->source;
	ic.ram_bytes = mi->memory_bytes;
	ic.vcpus = mi->vcpus;
	ic.shell = r->p;
	ic.notify = mig_notify;
	ic.arg = pm;
	rc = nhv_mig_in_start(pm->cfg.dp, &ic, &m->in);
	if (rc) {
		m->in = NULL;
		nhv_partition_destroy(r->p);
		r->p = NULL;
		mig_fail(m, "cannot expect the stream: %s", strerror(-rc));
		return;
	}
	m->step = NHV_MIG_PREPARE;
	nhv_mig_in_progress(m->in, &m->pr);
	fab_info("migration %llu: expecting partition %s (epoch %llu, %u vCPU(s), %llu MiB, %u "
		 "device(s)) from node %s",
		 (unsigned long long)m->id, m->name, (unsigned long long)mi->epoch, mi->vcpus,
		 (unsigned long long)(mi->memory_bytes >> 20), r->ndevs, mi->source);
	mig_report(m);
}

/* Target: the state arrived: build the partition, paused, and say READY. */
static void mig_in_restore(struct pm_mig *m)
{
	struct nhv_pmgr *pm = m->pm;
	struct pm_part *r = m->part;
	struct nhv_dev_binding devs[PM_MAX_DEVICES + 1];
	char err[2 * PM_REASON];
	int64_t t0 = nhv_mono_us();
	unsigned n = 0;
	int rc;

	memset(devs, 0, sizeof(devs));
	for (unsigned i = 0; i < r->ndevs; i++, n++) {
		struct pm_dev *d = &r->devs[i];

		if (d->remote) {
			devs[n].kind = NHV_BIND_REMOTE;
			devs[n].dp = pm->cfg.dp;
			devs[n].partition = r->name;
			devs[n].remote = &m->rem[i];
			devs[n].stub = &d->stub;
		} else {
			devs[n].kind = NHV_BIND_DISK;
			devs[n].path = d->path;
		}
	}
	devs[n++].kind = NHV_BIND_IC;
	rc = nhv_mig_in_restore(m->in, devs, n, err, sizeof(err));
	if (rc) {
		/* The stream is done with the shell: free it, then the shell. */
		nhv_mig_in_free(m->in);
		m->in = NULL;
		nhv_partition_destroy(r->p);
		r->p = NULL;
		for (unsigned i = 0; i < r->ndevs; i++)
			r->devs[i].stub = NULL;
		mig_fail(m, "cannot restore: %s", err);
		return;
	}
	nhv_mig_in_progress(m->in, &m->pr);
	m->step = NHV_MIG_STOPPED;
	m->phase = MP(STOPPED);
	fab_info("migration %llu of %s: restored in %.1f ms, paused; READY (waiting for the "
		 "controller's decision)",
		 (unsigned long long)m->id, m->name, (double)(nhv_mono_us() - t0) / 1e3);
	mig_report(m);
}

/* The engines' news, on the loop. */
static void mig_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct nhv_pmgr *pm = w->data;

	for (struct pm_mig *m = pm->migs; m; m = m->next) {
		struct nhv_mig_progress pr;

		if (m->final || (!m->out && !m->in))
			continue;
		if (m->out)
			nhv_mig_out_progress(m->out, &pr);
		else
			nhv_mig_in_progress(m->in, &pr);
		if (pr.step == m->step)
			continue;
		m->pr = pr;
		m->step = pr.step;
		switch (pr.step) {
		case NHV_MIG_COPY:
			m->phase = MP(COPY);
			mig_report(m);
			break;
		case NHV_MIG_BLOB:
			mig_in_restore(m);
			break;
		case NHV_MIG_STOPPED:
			if (m->source) {
				m->phase = MP(STOPPED);
				mig_report(m);
			}
			break;
		case NHV_MIG_FAILED:
			if (m->out) {
				/* The engine has thawed the partition: it runs on. */
				nhv_mig_out_free(m->out);
				m->out = NULL;
				if (m->part && m->part->mig == m)
					m->part->mig = NULL;
				m->part = NULL;
			} else {
				nhv_mig_in_free(m->in);
				m->in = NULL;
			}
			mig_fail(m, "%s", pr.error);
			break;
		default:
			break;
		}
	}
}

/* Progress while copying, every PM_TICK_MS. */
static void mig_tick(struct nhv_pmgr *pm)
{
	for (struct pm_mig *m = pm->migs; m; m = m->next) {
		if (m->final || m->step != NHV_MIG_COPY)
			continue;
		if (m->out)
			nhv_mig_out_progress(m->out, &m->pr);
		else if (m->in)
			nhv_mig_in_progress(m->in, &m->pr);
		else
			continue;
		if (m->pr.step == NHV_MIG_COPY)
			mig_report(m);
	}
}

static void mig_decided(struct pm_mig *m, Fab__MigrationPhase final)
{
	m->final = final;
	fab_info("migration %llu of %s (%s): %s", (unsigned long long)m->id, m->name,
		 m->source ? "source" : "target", final == MP(DONE) ? "done" : "aborted");
	mig_report(m);
}

/* Target's RESUME: the shell becomes the partition, running. */
static void mig_in_resume(struct pm_mig *m, uint64_t epoch)
{
	struct nhv_pmgr *pm = m->pm;
	struct pm_part *r = m->part, *old = pm_part_find(pm, m->name);
	uint64_t src_us = 0;
	int64_t ready_at = 0, now;
	int rc;

	if (old && old->p) {
		mig_fail(m, "partition %s runs here already; RESUME refused", m->name);
		return;
	}
	if (old)
		pm_part_free(old); /* an ended record of an earlier run */
	/* Before the guest runs: its disks' outage clocks start now. */
	for (unsigned i = 0; i < r->ndevs; i++)
		if (r->devs[i].remote && r->devs[i].stub)
			nhv_stub_bind_now(r->devs[i].stub);
	rc = nhv_partition_start(r->p);
	now = nhv_mono_us();
	nhv_mig_in_times(m->in, &src_us, &ready_at);
	if (rc) {
		mig_fail(m, "cannot start the restored partition: %s", strerror(-rc));
		return;
	}
	/* Source paused -> READY heard there, plus READY sent here ->
	 * running (the decision's round trip included). */
	m->downtime_us = src_us + (uint64_t)(ready_at ? now - ready_at : 0);
	r->epoch = epoch ? epoch : m->epoch;
	r->state = ST(RUNNING);
	r->reason[0] = '\0';
	r->next = pm->parts;
	pm->parts = r;
	m->part = NULL;
	nhv_mig_in_free(m->in);
	m->in = NULL;
	fab_info("partition %s (epoch %llu): running here after migration %llu; downtime %.1f "
		 "ms (source %.1f ms to READY, then %.1f ms here)",
		 r->name, (unsigned long long)r->epoch, (unsigned long long)m->id,
		 (double)m->downtime_us / 1e3, (double)src_us / 1e3,
		 (double)(m->downtime_us - src_us) / 1e3);
	pm_status_send(r);
	mig_decided(m, MP(DONE));
}

static void shell_free(struct pm_part *r)
{
	if (!r)
		return;
	if (r->p) {
		nhv_partition_destroy(r->p);
		r->p = NULL;
	}
	pthread_mutex_destroy(&r->con_lock);
	free(r);
}

void nhv_pmgr_decide(struct nhv_pmgr *pm, const Fab__MigrationDecision *d)
{
	struct pm_mig *m = mig_find(pm, d->migration_id);
	bool resume = d->action == FAB__MIGRATION_ACTION__MIGRATION_ACTION_RESUME;
	bool drop = d->action == FAB__MIGRATION_ACTION__MIGRATION_ACTION_DROP;

	if (!m) {
		/* Nothing to undo or finish: say so, change nothing. A
		 * RESUME of what runs here under that epoch is done. */
		struct pm_part *r = pm_part_find(pm, d->name);
		bool runs = resume && r && r->p && (!d->epoch || r->epoch == d->epoch);

		fab_info("decision for unknown migration %llu (%.64s): answered %s",
			 (unsigned long long)d->migration_id, d->name, runs ? "DONE" : "ABORTED");
		mig_report_bare(pm, d->migration_id, d->name, runs ? MP(DONE) : MP(ABORTED),
				"unknown migration id");
		return;
	}
	if (m->final) {
		mig_report(m); /* idempotent */
		return;
	}
	if (!resume && !drop) {
		fab_warn("migration %llu: decision with no action; ignored",
			 (unsigned long long)m->id);
		mig_report(m);
		return;
	}
	if (m->source) {
		struct pm_part *r = m->part;
		bool stopped = m->step == NHV_MIG_STOPPED;

		if (drop && !stopped) {
			/* The state never left: dropping would lose the partition. */
			fab_warn("migration %llu of %s: DROP before the partition was stopped "
				 "and sent; ignored",
				 (unsigned long long)m->id, m->name);
			mig_report(m);
			return;
		}
		if (drop) {
			mig_out_stop(m, NULL);
			if (r) {
				fab_info("partition %s (epoch %llu): moved away by migration "
					 "%llu; destroyed here",
					 r->name, (unsigned long long)r->epoch,
					 (unsigned long long)m->id);
				pm_part_free(r);
			}
			mig_decided(m, MP(DONE));
			return;
		}
		/* RESUME: run on here. */
		if (m->out) {
			nhv_mig_out_progress(m->out, &m->pr);
			nhv_mig_out_free(m->out); /* stops a copy still going */
			m->out = NULL;
		}
		if (r && r->p && stopped) {
			nhv_partition_dirty_end(r->p);
			nhv_partition_thaw(r->p);
		}
		if (r && r->mig == m)
			r->mig = NULL;
		m->part = NULL;
		mig_decided(m, MP(ABORTED));
		/* A copy that failed earlier let go of the record: find it. */
		if (!r)
			r = pm_part_find(pm, m->name);
		if (r && r->p && r->epoch == m->epoch)
			pm_status_send(r);
		return;
	}
	/* target */
	if (resume) {
		if (m->step != NHV_MIG_STOPPED || !m->part || !m->part->p) {
			fab_warn("migration %llu of %s: RESUME before the partition was restored "
				 "here; ignored",
				 (unsigned long long)m->id, m->name);
			mig_report(m);
			return;
		}
		mig_in_resume(m, d->epoch);
		return;
	}
	nhv_mig_in_free(m->in);
	m->in = NULL;
	shell_free(m->part);
	m->part = NULL;
	mig_decided(m, MP(ABORTED));
}

/* Undecided migrations of both roles. */
static int report_migs(struct nhv_pmgr *pm, Fab__NodeReport *rep)
{
	size_t n = 0, i = 0;

	for (struct pm_mig *m = pm->migs; m; m = m->next)
		n += !m->final;
	if (!n)
		return 0;
	rep->migrations = calloc(n, sizeof(*rep->migrations));
	if (!rep->migrations)
		return -ENOMEM;
	for (struct pm_mig *m = pm->migs; m; m = m->next) {
		if (m->final)
			continue;
		rep->migrations[i] = malloc(sizeof(Fab__MigrationStatus));
		if (!rep->migrations[i])
			break;
		mig_status_fill(m, rep->migrations[i]);
		i++;
	}
	rep->n_migrations = i;
	return i == n ? 0 : -ENOMEM;
}

static void mig_part_gone(struct pm_part *r)
{
	mig_out_stop(r->mig, "the partition ended during the migration");
}

static void mig_free_all(struct nhv_pmgr *pm)
{
	while (pm->migs) {
		struct pm_mig *m = pm->migs;

		pm->migs = m->next;
		if (m->out)
			mig_out_stop(m, NULL);
		if (m->in)
			nhv_mig_in_free(m->in);
		if (!m->source)
			shell_free(m->part);
		free(m->rem);
		free(m);
	}
	ev_async_stop(pm->cfg.loop, &pm->mig_wake);
}

static const struct pm_mig_hooks hooks = {
	.part_gone = mig_part_gone,
	.tick = mig_tick,
	.report = report_migs,
	.free = mig_free_all,
};

void nhv_pmgr_mig_enable(struct nhv_pmgr *pm)
{
	ev_async_init(&pm->mig_wake, mig_wake_cb);
	pm->mig_wake.data = pm;
	ev_async_start(pm->cfg.loop, &pm->mig_wake);
	pm->mig = &hooks;
}
