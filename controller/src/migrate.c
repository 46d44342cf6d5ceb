// SPDX-License-Identifier: MIT
/*
 * Live migration driven by the controller, and drain (controller/MIGRATION.md).
 *
 * The controller is the one arbiter of the switch. A migration row is
 * stored (PREPARE) before the target hears MigrateIn; the row reaches
 * COMMITTED in the same transaction that moves the partition's placement
 * (node, epoch) to the target, and that transaction is on disk (the store
 * runs synchronous=FULL) before either node hears a MigrationDecision.
 * Everything before it can be aborted (DROP to the target, RESUME to the
 * source); everything after it is completed (RESUME to the target, DROP
 * to the source).
 *
 * Which decision a node gets follows from the placement: RESUME when the
 * copy it holds is the partition's placement (its node and that side's
 * epoch) on the side the row's phase chose, DROP otherwise. That one rule answers the live path,
 * the stale statuses of a migration already decided, the undecided migrations a node lists in its
 * NodeReport after a reconnection, and the rows found after a controller restart (unfinished ones
 * are aborted at load, committed ones completed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/log.h"
#include "fab/util.h"
#include "srv_int.h"

#define MIG_SILENCE_MS	     30000 /* no status from either side: abort */
#define MIG_RESEND_MS	     3000  /* committed: decisions again until the target answers */
#define MIG_DONE_WAIT_MS     2000  /* target runs it: its DONE status, or done anyway */
#define MIG_DEFAULT_DOWNTIME 50
#define MIG_DEFAULT_ROUNDS   30
#define MIG_MAX_DOWNTIME     60000
#define MIG_MAX_ROUNDS	     1000

#define PST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x

static const char *phase_name(int ph)
{
	static const char *const names[] = { "unknown",	  "prepare", "copy",   "stopped",
					     "committed", "done",    "aborted" };

	return ph >= 0 && ph <= CTL_MIG_ABORTED ? names[ph] : "unknown";
}

struct ctl_mig *ctl_mig_find(struct ctl_server *s, uint64_t id)
{
	for (struct ctl_mig *m = s->migs; m; m = m->next)
		if (m->rec.id == id)
			return m;
	return NULL;
}

static void mig_unlink(struct ctl_server *s, struct ctl_mig *m)
{
	for (struct ctl_mig **pp = &s->migs; *pp; pp = &(*pp)->next) {
		if (*pp == m) {
			*pp = m->next;
			return;
		}
	}
}

/* Ends m's life in memory: its hold on the target's resources goes. */
static void mig_free(struct ctl_server *s, struct ctl_mig *m)
{
	mig_unlink(s, m);
	if (m->reserved && m->p && m->dst)
		ctl_node_release(m->dst, m->p);
	if (m->p && m->p->mig == m)
		m->p->mig = NULL;
	free(m);
}

void ctl_mig_free_all(struct ctl_server *s)
{
	while (s->migs)
		mig_free(s, s->migs);
}

/* Joins the transaction the caller has open (a lease expiry, a node's
 * report), else opens one: true if it is ours to commit. */
static bool mig_tx_begin(struct ctl_server *s)
{
	if (ctl_store_in_tx(s->store))
		return false;
	return ctl_tx_begin(s) == 0;
}

static void mig_tx_end(struct ctl_server *s, bool own)
{
	if (own && ctl_store_commit(s->store)) {
		fab_err("migration: a phase change was not stored");
		ctl_store_rollback(s->store);
	}
}

static int mig_save(struct ctl_server *s, struct ctl_mig *m)
{
	int rc = ctl_store_migration_update(s->store, &m->rec);

	if (rc)
		fab_err("migration %llu: could not store it: %s", (unsigned long long)m->rec.id,
			strerror(-rc));
	return rc;
}

static void send_decision(struct ctl_server *s, struct ctl_node *n, uint64_t id, const char *name,
			  Fab__MigrationAction action, uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationDecision d = FAB__MIGRATION_DECISION__INIT;

	d.migration_id = id;
	d.name = (char *)name;
	d.action = action;
	d.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATION_DECISION;
	env.migration_decision = &d;
	fab_debug("migration %llu: %s to %s (%s epoch %llu)", (unsigned long long)id,
		  action == FAB__MIGRATION_ACTION__MIGRATION_ACTION_RESUME ? "RESUME" : "DROP",
		  n ? n->rec.name : "?", name, (unsigned long long)epoch);
	ctl_node_send(s, n, &env);
}

/*
 * The rule of the file's comment: RESUME iff (n, epoch) is p's placement,
 * and only on the side the decision chose (the target once committed, the
 * source once aborted). The second condition matters when an epoch comes
 * round again: an aborted migration's epoch_to is the next one's too.
 */
static Fab__MigrationAction decision_for(struct ctl_part *p, const struct ctl_node *n,
					 uint64_t epoch, int phase, bool source)
{
	bool chosen = source ? phase == CTL_MIG_ABORTED
			     : phase == CTL_MIG_COMMITTED || phase == CTL_MIG_DONE;

	return chosen && p && p->node == n && p->rec.epoch == epoch
		       ? FAB__MIGRATION_ACTION__MIGRATION_ACTION_RESUME
		       : FAB__MIGRATION_ACTION__MIGRATION_ACTION_DROP;
}

/* Both sides' decisions, by the rule (commit, abort, resends). */
static void send_decisions(struct ctl_server *s, struct ctl_mig *m)
{
	struct ctl_part *p = m->p;

	/* The target first after a commit: its RESUME is the downtime. */
	send_decision(s, m->dst, m->rec.id, m->rec.partition,
		      decision_for(p, m->dst, m->rec.epoch_to, m->rec.phase, false),
		      m->rec.epoch_to);
	send_decision(s, m->src, m->rec.id, m->rec.partition,
		      decision_for(p, m->src, m->rec.epoch_from, m->rec.phase, true),
		      m->rec.epoch_from);
	m->decided_ms = fab_mono_ms();
}

static void send_migrate_in(struct ctl_server *s, struct ctl_mig *m)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrateIn in = FAB__MIGRATE_IN__INIT;
	Fab__DeviceBinding db[CTL_MAX_VOLUMES], *dbp[CTL_MAX_VOLUMES];
	char dev[CTL_MAX_VOLUMES][16];
	char *args[CTL_MAX_ARGS];
	struct ctl_part *p = m->p;

	in.migration_id = m->rec.id;
	in.name = p->rec.name;
	in.epoch = m->rec.epoch_to;
	in.vcpus = p->rec.vcpus;
	in.memory_bytes = p->rec.memory_bytes;
	in.n_devices = ctl_part_bindings(s, p, m->dst, db, dbp, dev);
	in.devices = dbp;
	in.source = m->src->rec.name;
	in.image = p->rec.image;
	in.n_args = ctl_part_args(p, args);
	in.args = args;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATE_IN;
	env.migrate_in = &in;
	ctl_node_send(s, m->dst, &env);
}

static void send_migrate_out(struct ctl_server *s, struct ctl_mig *m)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrateOut out = FAB__MIGRATE_OUT__INIT;
	Fab__DeviceBinding db[CTL_MAX_VOLUMES], *dbp[CTL_MAX_VOLUMES];
	char dev[CTL_MAX_VOLUMES][16];

	out.migration_id = m->rec.id;
	out.name = m->p->rec.name;
	out.epoch = m->rec.epoch_from;
	out.target = m->dst->rec.name;
	out.target_address = m->dst->rec.data_addr;
	out.downtime_ms = m->rec.downtime_ms;
	out.max_rounds = m->rec.max_rounds;
	out.throttle = m->rec.throttle;
	out.n_devices = ctl_part_bindings(s, m->p, m->dst, db, dbp, dev);
	out.devices = dbp;
	env.body_case = FAB__ENVELOPE__BODY_MIGRATE_OUT;
	env.migrate_out = &out;
	ctl_node_send(s, m->src, &env);
	m->out_sent = true;
}

/* ---- drain ------------------------------------------------------------------ */

static void drain_advance(struct ctl_server *s, struct ctl_node *n);

static void drain_unmovable(struct ctl_server *s, struct ctl_node *n, const char *name,
			    const char *why)
{
	char line[CTL_REASON_MAX + FAB_NAME_MAX + 4], **nv;

	snprintf(line, sizeof(line), "%s: %s", name, why);
	nv = realloc(n->unmovable, (n->nunmovable + 1) * sizeof(*nv));
	if (nv) {
		n->unmovable = nv;
		n->unmovable[n->nunmovable] = strdup(line);
		if (n->unmovable[n->nunmovable])
			n->nunmovable++;
	}
	ctl_event(s, "partition", name, "drain of %s: cannot move it: %s", n->rec.name, why);
}

static void drain_clear(struct ctl_node *n)
{
	for (unsigned i = 0; i < n->drain_total; i++)
		free(n->drain_names[i]);
	free(n->drain_names);
	for (unsigned i = 0; i < n->nunmovable; i++)
		free(n->unmovable[i]);
	free(n->unmovable);
	n->drain_names = NULL;
	n->unmovable = NULL;
	n->drain_total = n->drain_next = n->drain_moved = n->nunmovable = 0;
}

/* A migration off a draining node ended (moved or not). */
static void drain_note(struct ctl_server *s, struct ctl_mig *m, bool moved, const char *why)
{
	struct ctl_node *n = m->src;

	if (!n || !n->draining || strncmp(m->rec.trigger, "drain ", 6))
		return;
	if (moved)
		n->drain_moved++;
	else
		drain_unmovable(s, n, m->rec.partition, why);
}

/* ---- phase changes ------------------------------------------------------------ */

/* Ends m as DONE (completed after the switch); downtime as measured. */
static void mig_done(struct ctl_server *s, struct ctl_mig *m, uint64_t downtime_us,
		     const char *note)
{
	bool own;

	m->rec.phase = CTL_MIG_DONE;
	m->rec.ended_unix_ms = fab_unix_ms();
	if (downtime_us)
		m->rec.downtime_us = downtime_us;
	if (note)
		snprintf(m->rec.error, sizeof(m->rec.error), "%s", note);
	own = mig_tx_begin(s);
	mig_save(s, m);
	ctl_event(s, "partition", m->rec.partition,
		  "migration %llu done: %s -> %s (epoch %llu), %u round(s), %llu bytes sent, "
		  "downtime %.1f ms%s%s",
		  (unsigned long long)m->rec.id, m->rec.source, m->rec.target,
		  (unsigned long long)m->rec.epoch_to, m->rec.rounds,
		  (unsigned long long)m->rec.bytes_sent, (double)m->rec.downtime_us / 1000.0,
		  note ? ": " : "", note ? note : "");
	mig_tx_end(s, own);
	drain_note(s, m, true, NULL);
	mig_free(s, m);
	/* A drain's next move starts from the tick: this may run inside a
	 * transaction of the caller's, and a start needs its own. */
}

int ctl_mig_abort(struct ctl_server *s, struct ctl_mig *m, const char *why)
{
	bool own;

	if (m->rec.phase >= CTL_MIG_COMMITTED)
		return -EBUSY;
	m->rec.phase = CTL_MIG_ABORTED;
	m->rec.ended_unix_ms = fab_unix_ms();
	snprintf(m->rec.error, sizeof(m->rec.error), "%s", why);
	/* Stored first where it can be; an abort needs no durability to be
	 * safe (a restarted controller aborts an unfinished row anyway). */
	own = mig_tx_begin(s);
	mig_save(s, m);
	ctl_event(s, "partition", m->rec.partition, "migration %llu to %s aborted: %s",
		  (unsigned long long)m->rec.id, m->rec.target, why);
	mig_tx_end(s, own);
	send_decisions(s, m);
	drain_note(s, m, false, why);
	mig_free(s, m);
	return 0;
}

/* Both sides are ready: the switch. */
static void mig_commit(struct ctl_server *s, struct ctl_mig *m)
{
	struct ctl_part *p = m->p;
	struct ctl_part_rec saved = p->rec;
	char why[CTL_REASON_MAX];
	int rc;

	/* Its own transaction, committed before anything is sent. */
	if (ctl_store_in_tx(s->store) && !s->batch_open) {
		ctl_mig_abort(s, m, "internal error: the switch inside another transaction");
		return;
	}
	rc = ctl_tx_begin(s);
	if (rc) {
		ctl_mig_abort(s, m, "controller could not store the switch");
		return;
	}
	m->rec.phase = CTL_MIG_COMMITTED;
	rc = mig_save(s, m);
	/* The target's hold becomes the placement's. */
	if (m->reserved) {
		ctl_node_release(m->dst, p);
		m->reserved = false;
	}
	ctl_part_bind(s, p, m->dst);
	p->rec.epoch = m->rec.epoch_to;
	snprintf(why, sizeof(why), "migrated from %s (migration %llu)", m->rec.source,
		 (unsigned long long)m->rec.id);
	ctl_part_set_state(p, PST(RUNNING), why);
	if (!rc)
		rc = ctl_part_save(s, p);
	if (!rc)
		ctl_event(s, "partition", p->rec.name,
			  "migration %llu committed: %s now runs on %s (epoch %llu)",
			  (unsigned long long)m->rec.id, p->rec.name, m->rec.target,
			  (unsigned long long)m->rec.epoch_to);
	ctl_crash_point("migration-before-commit");
	if (!rc)
		rc = ctl_store_commit(s->store);
	if (rc) {
		ctl_store_rollback(s->store);
		ctl_part_bind(s, p, m->src);
		p->rec = saved;
		ctl_node_claim(m->dst, p);
		m->reserved = true;
		m->rec.phase = CTL_MIG_STOPPED;
		ctl_mig_abort(s, m, "controller could not store the switch");
		return;
	}
	/* On disk: from here on the migration completes, whatever fails. */
	ctl_crash_point("migration-after-commit");
	/* Fencing first: only the target may open the volumes now. */
	ctl_part_fence(s, p);
	send_decisions(s, m);
}

/* Takes the progress fields of a status (bounded by what is sane). */
static void take_progress(struct ctl_mig *m, const Fab__MigrationStatus *st, bool source)
{
	if (!source) {
		if (st->downtime_us)
			m->rec.downtime_us = st->downtime_us;
		return;
	}
	if (st->round > m->rec.rounds)
		m->rec.rounds = st->round;
	if (st->ram_bytes)
		m->rec.ram_bytes = st->ram_bytes;
	if (st->bytes_sent > m->rec.bytes_sent)
		m->rec.bytes_sent = st->bytes_sent;
	m->dirty_bytes = st->dirty_bytes;
	m->dirty_rate = st->dirty_bytes_per_s;
	m->link_rate = st->link_bytes_per_s;
	m->est_downtime_us = st->est_downtime_us;
	m->throttle_pct = st->throttle_pct > 100 ? 100 : st->throttle_pct;
}

/* A status about a migration that is not in progress: the decision again
 * (by the rule) unless the status is itself the acknowledgement. */
static void answer_stale(struct ctl_server *s, struct ctl_node *n, const Fab__MigrationStatus *st,
			 bool source)
{
	struct ctl_migration_rec rec;
	struct ctl_part *p = ctl_part_find(s, st->name);
	uint64_t epoch;
	int phase;

	if (st->phase == FAB__MIGRATION_PHASE__MIGRATION_PHASE_DONE ||
	    st->phase == FAB__MIGRATION_PHASE__MIGRATION_PHASE_ABORTED)
		return;
	if (ctl_store_migration_get(s->store, st->migration_id, &rec) == 0 &&
	    !strcmp(rec.partition, st->name)) {
		epoch = source ? rec.epoch_from : rec.epoch_to;
		phase = rec.phase;
	} else {
		/* No such row: nothing was ever decided for it. A source
		 * keeps what is its placement; a target's copy goes. */
		fab_warn("node %s: migration %llu of %s is unknown here", n->rec.name,
			 (unsigned long long)st->migration_id, st->name);
		epoch = source && p && p->node == n ? p->rec.epoch : 0;
		phase = CTL_MIG_ABORTED;
	}
	send_decision(s, n, st->migration_id, st->name, decision_for(p, n, epoch, phase, source),
		      epoch);
}

/* Checks a status from n. *role: 1 source, 0 target, -1 not said (a
 * node's bare answer about a migration it has no record of). */
static bool status_valid(struct ctl_node *n, const Fab__MigrationStatus *st, int *role)
{
	if (!st->name || fab_name_valid(st->name) ||
	    (st->role && st->role[0] && strcmp(st->role, "source") && strcmp(st->role, "target")) ||
	    st->phase < FAB__MIGRATION_PHASE__MIGRATION_PHASE_PREPARE ||
	    st->phase > FAB__MIGRATION_PHASE__MIGRATION_PHASE_ABORTED || !st->migration_id ||
	    (st->error && strlen(st->error) >= 1024)) {
		fab_warn("node %s: malformed migration status (id %llu, role '%.16s', phase %d); "
			 "ignored",
			 n->rec.name, (unsigned long long)st->migration_id,
			 st->role ? st->role : "", (int)st->phase);
		return false;
	}
	*role = !st->role || !st->role[0] ? -1 : !strcmp(st->role, "source");
	return true;
}

void ctl_on_migration_status(struct ctl_server *s, struct ctl_node *n,
			     const Fab__MigrationStatus *st)
{
	struct ctl_mig *m;
	char why[CTL_REASON_MAX + 128];
	bool source;
	int role;

	if (!status_valid(n, st, &role))
		return;
	m = ctl_mig_find(s, st->migration_id);
	if (!m) {
		/* Without a role only an acknowledgement makes sense. */
		if (role >= 0)
			answer_stale(s, n, st, role == 1);
		else if (st->phase != FAB__MIGRATION_PHASE__MIGRATION_PHASE_DONE &&
			 st->phase != FAB__MIGRATION_PHASE__MIGRATION_PHASE_ABORTED)
			fab_info("node %s: migration %llu (%s): %s; it is not in progress",
				 n->rec.name, (unsigned long long)st->migration_id, st->name,
				 st->error && st->error[0] ? st->error : "no role given");
		return;
	}
	source = role >= 0 ? role == 1 : n == m->src;
	if (strcmp(st->name, m->rec.partition) || n != (source ? m->src : m->dst)) {
		fab_warn("node %s reports migration %llu (%s) as its %s, which it is not; ignored",
			 n->rec.name, (unsigned long long)m->rec.id, st->name,
			 source ? "source" : "target");
		return;
	}
	m->heard_ms = fab_mono_ms();
	if ((st->error && st->error[0]) ||
	    st->phase == FAB__MIGRATION_PHASE__MIGRATION_PHASE_ABORTED) {
		snprintf(why, sizeof(why), "%s %s: %.200s", source ? "source" : "target",
			 n->rec.name, st->error && st->error[0] ? st->error : "gave up");
		if (m->rec.phase < CTL_MIG_COMMITTED)
			ctl_mig_abort(s, m, why);
		else
			fab_warn("migration %llu is committed; %s ignored",
				 (unsigned long long)m->rec.id, why);
		return;
	}
	take_progress(m, st, source);
	switch (st->phase) {
	case FAB__MIGRATION_PHASE__MIGRATION_PHASE_PREPARE:
		/* The target listens for the stream: the source may start. */
		if (!source && m->rec.phase == CTL_MIG_PREPARE && !m->out_sent) {
			m->rec.phase = CTL_MIG_COPY;
			if (ctl_store_in_tx(s->store) || ctl_batch_join(s))
				mig_save(s, m);
			ctl_event(s, "partition", m->rec.partition,
				  "migration %llu: %s ready to receive, copying from %s",
				  (unsigned long long)m->rec.id, m->rec.target, m->rec.source);
			send_migrate_out(s, m);
		}
		break;
	case FAB__MIGRATION_PHASE__MIGRATION_PHASE_COPY:
		break;
	case FAB__MIGRATION_PHASE__MIGRATION_PHASE_STOPPED:
		if (m->rec.phase >= CTL_MIG_COMMITTED)
			break;
		if (source && !m->src_stopped) {
			m->src_stopped = true;
			m->rec.phase = CTL_MIG_STOPPED;
			if (ctl_store_in_tx(s->store) || ctl_batch_join(s))
				mig_save(s, m);
			ctl_event(s, "partition", m->rec.partition,
				  "migration %llu: %s stopped after %u round(s), %llu bytes sent",
				  (unsigned long long)m->rec.id, m->rec.source, m->rec.rounds,
				  (unsigned long long)m->rec.bytes_sent);
		} else if (!source) {
			m->dst_ready = true;
		}
		if (m->src_stopped && m->dst_ready)
			mig_commit(s, m);
		break;
	case FAB__MIGRATION_PHASE__MIGRATION_PHASE_COMMITTED:
	case FAB__MIGRATION_PHASE__MIGRATION_PHASE_DONE:
		/* The target runs (RESUME done); a source's DONE is its drop. */
		if (!source && m->rec.phase == CTL_MIG_COMMITTED)
			mig_done(s, m, st->downtime_us, NULL);
		break;
	default:
		break;
	}
}

void ctl_mig_report(struct ctl_server *s, struct ctl_node *n, const Fab__NodeReport *r)
{
	for (size_t i = 0; i < r->n_migrations; i++) {
		const Fab__MigrationStatus *st = r->migrations[i];
		struct ctl_mig *m;
		bool source;
		int role;

		if (!st || !status_valid(n, st, &role))
			continue;
		m = ctl_mig_find(s, st->migration_id);
		source = role >= 0 ? role == 1 : m && n == m->src;
		if (m && m->rec.phase == CTL_MIG_COMMITTED && n == (source ? m->src : m->dst))
			send_decision(s, n, m->rec.id, m->rec.partition,
				      decision_for(m->p, n,
						   source ? m->rec.epoch_from : m->rec.epoch_to,
						   m->rec.phase, source),
				      source ? m->rec.epoch_from : m->rec.epoch_to);
		else
			ctl_on_migration_status(s, n, st);
	}
}

void ctl_mig_target_running(struct ctl_server *s, struct ctl_part *p)
{
	struct ctl_mig *m = p->mig;

	/* The target runs it under the new epoch: RESUME was carried out.
	 * Its MigrationStatus (with the measured downtime) follows on the
	 * same connection; the tick completes the migration without it if
	 * it does not come. */
	if (m && m->rec.phase == CTL_MIG_COMMITTED && p->node == m->dst &&
	    p->rec.epoch == m->rec.epoch_to && !m->running_ms)
		m->running_ms = fab_mono_ms();
}

bool ctl_mig_owns(struct ctl_server *s, struct ctl_part *p, struct ctl_node *n, uint64_t epoch)
{
	struct ctl_mig *m = p ? p->mig : NULL;

	return m && ((n == m->dst && epoch == m->rec.epoch_to) ||
		     (n == m->src && epoch == m->rec.epoch_from));
}

/* ---- start ------------------------------------------------------------------------ */

int ctl_mig_start(struct ctl_server *s, struct ctl_part *p, const struct ctl_migrate_args *a,
		  struct ctl_placement_rec *pr, struct ctl_mig **out, char *err, size_t errlen)
{
	struct ctl_node *src = p->node, *dst = NULL, *to = NULL;
	uint32_t downtime = a->downtime_ms ? a->downtime_ms : MIG_DEFAULT_DOWNTIME;
	uint32_t rounds = a->max_rounds ? a->max_rounds : MIG_DEFAULT_ROUNDS;
	char trig[128];
	struct ctl_mig *m;
	int rc;

	memset(pr, 0, sizeof(*pr));
	if (p->mig) {
		snprintf(err, errlen,
			 "partition '%s' is already migrating (migration %llu, %s to %s, %s)",
			 p->rec.name, (unsigned long long)p->mig->rec.id, p->mig->rec.source,
			 p->mig->rec.target, phase_name(p->mig->rec.phase));
		return -EBUSY;
	}
	if (!src || p->rec.state != PST(RUNNING)) {
		snprintf(err, errlen,
			 "partition '%s' is not running (only a running partition migrates)",
			 p->rec.name);
		return -EBUSY;
	}
	if (src->state != NODE_UP) {
		snprintf(err, errlen, "partition '%s': its node %s is down", p->rec.name,
			 src->rec.name);
		return -EBUSY;
	}
	if (downtime > MIG_MAX_DOWNTIME || rounds > MIG_MAX_ROUNDS) {
		snprintf(err, errlen, "downtime 1..%d ms and max rounds 1..%d", MIG_MAX_DOWNTIME,
			 MIG_MAX_ROUNDS);
		return -EINVAL;
	}
	if (a->to && a->to[0]) {
		to = ctl_node_find(s, a->to);
		if (!to) {
			snprintf(err, errlen, "node '%s' not found", a->to);
			return -ENOENT;
		}
		if (to == src) {
			snprintf(err, errlen, "partition '%s' already runs on %s", p->rec.name,
				 src->rec.name);
			return -EINVAL;
		}
	}
	snprintf(trig, sizeof(trig), "migrate from %s (%s)", src->rec.name, a->trigger);
	rc = ctl_sched_for(s, p, src, trig, pr, &dst, err, errlen);
	if (rc && rc != -ENOSPC)
		return rc;
	if (to) {
		const char *why = ctl_sched_verdict_of(s, to);

		if (why[0]) {
			snprintf(err, errlen, "node %s cannot take partition %s: %s", to->rec.name,
				 p->rec.name, why);
			return -ENOSPC;
		}
		dst = to;
		snprintf(pr->node, sizeof(pr->node), "%s", to->rec.name);
	} else if (rc) {
		return rc;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(m->rec.partition, sizeof(m->rec.partition), "%s", p->rec.name);
	snprintf(m->rec.source, sizeof(m->rec.source), "%s", src->rec.name);
	snprintf(m->rec.target, sizeof(m->rec.target), "%s", dst->rec.name);
	snprintf(m->rec.trigger, sizeof(m->rec.trigger), "%s", a->trigger);
	m->rec.epoch_from = p->rec.epoch;
	m->rec.epoch_to = p->rec.epoch + 1;
	m->rec.downtime_ms = downtime;
	m->rec.max_rounds = rounds;
	m->rec.throttle = a->throttle;
	m->rec.ram_bytes = p->rec.memory_bytes;
	m->rec.started_unix_ms = fab_unix_ms();
	m->rec.phase = CTL_MIG_PREPARE;
	pr->epoch = m->rec.epoch_to;

	rc = ctl_tx_begin(s);
	if (!rc)
		rc = ctl_store_migration_insert(s->store, &m->rec);
	if (!rc) {
		if (ctl_store_placement_add(s->store, pr))
			fab_warn("partition %s: could not store the placement decision",
				 p->rec.name);
		ctl_event(s, "partition", p->rec.name,
			  "migration %llu: %s -> %s (%s), downtime budget %u ms, %u rounds%s",
			  (unsigned long long)m->rec.id, src->rec.name, dst->rec.name, a->trigger,
			  downtime, rounds, a->throttle ? ", throttling allowed" : "");
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_store_rollback(s->store);
		free(m);
		snprintf(err, errlen, "controller could not store the migration");
		return -EIO;
	}
	m->p = p;
	m->src = src;
	m->dst = dst;
	m->heard_ms = fab_mono_ms();
	ctl_node_claim(dst, p);
	m->reserved = true;
	p->mig = m;
	m->next = s->migs;
	s->migs = m;
	send_migrate_in(s, m);
	*out = m;
	return 0;
}

/* ---- hooks ---------------------------------------------------------------------- */

void ctl_mig_node_lost(struct ctl_server *s, struct ctl_node *n)
{
	char why[CTL_REASON_MAX];
	struct ctl_mig *m, *next;

	for (m = s->migs; m; m = next) {
		next = m->next;
		if (m->src != n && m->dst != n)
			continue;
		if (m->rec.phase < CTL_MIG_COMMITTED) {
			snprintf(why, sizeof(why), "%s node %s lost (lease expired)",
				 m->src == n ? "source" : "target", n->rec.name);
			ctl_mig_abort(s, m, why);
			next = s->migs;
		} else if (m->dst == n) {
			/* After the switch the partition is the target's: its
			 * loss is the partition's, handled as any other. */
			mig_done(s, m, 0, "the target node was lost after the switch");
			next = s->migs;
		}
		/* A lost source after the switch: the target runs on. */
	}
}

void ctl_mig_part_ended(struct ctl_server *s, struct ctl_part *p, const char *why)
{
	struct ctl_mig *m = p->mig;
	char msg[CTL_REASON_MAX];

	if (!m)
		return;
	snprintf(msg, sizeof(msg), "the partition ended: %.200s", why ? why : "");
	if (m->rec.phase < CTL_MIG_COMMITTED)
		ctl_mig_abort(s, m, msg);
	else
		mig_done(s, m, 0, msg);
}

/* ---- restart ---------------------------------------------------------------------- */

static int load_row(const struct ctl_migration_rec *rec, void *arg)
{
	struct ctl_server *s = arg;
	struct ctl_part *p = ctl_part_find(s, rec->partition);
	struct ctl_migration_rec r = *rec;
	struct ctl_mig *m;

	if (r.phase < CTL_MIG_COMMITTED) {
		/* Nothing was decided: the source keeps the partition. */
		r.phase = CTL_MIG_ABORTED;
		r.ended_unix_ms = fab_unix_ms();
		snprintf(r.error, sizeof(r.error),
			 "controller restarted during the migration (phase %s)",
			 phase_name(rec->phase));
		ctl_store_migration_update(s->store, &r);
		ctl_event(s, "partition", r.partition, "migration %llu to %s aborted: %s",
			  (unsigned long long)r.id, r.target, r.error);
		return 0;
	}
	/* COMMITTED: the placement already is the target's; the decisions
	 * go out as the nodes report. */
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->rec = r;
	m->p = p;
	m->src = ctl_node_find(s, r.source);
	m->dst = ctl_node_find(s, r.target);
	m->heard_ms = fab_mono_ms();
	m->src_stopped = m->dst_ready = m->out_sent = true;
	m->next = s->migs;
	s->migs = m;
	if (!p || p->mig) {
		mig_done(s, m, 0, "its partition is gone");
		return 0;
	}
	p->mig = m;
	fab_info("migration %llu of %s was committed before the restart: completing it",
		 (unsigned long long)r.id, r.partition);
	return 0;
}

int ctl_mig_load(struct ctl_server *s)
{
	int rc = ctl_tx_begin(s);

	if (rc)
		return rc;
	rc = ctl_store_migration_foreach(s->store, NULL, true, load_row, s);
	if (rc) {
		ctl_store_rollback(s->store);
		return rc;
	}
	return ctl_store_commit(s->store);
}

/* ---- the tick ------------------------------------------------------------------------ */

void ctl_mig_tick(struct ctl_server *s)
{
	int64_t now = fab_mono_ms();
	struct ctl_mig *m, *next;

	for (m = s->migs; m; m = next) {
		next = m->next;
		if (m->rec.phase < CTL_MIG_COMMITTED && now - m->heard_ms >= MIG_SILENCE_MS) {
			ctl_mig_abort(s, m, "no report from either node for 30 s");
			next = s->migs;
		} else if (m->rec.phase == CTL_MIG_COMMITTED && m->running_ms &&
			   now - m->running_ms >= MIG_DONE_WAIT_MS) {
			mig_done(s, m, 0, NULL);
			next = s->migs;
		} else if (m->rec.phase == CTL_MIG_COMMITTED && m->decided_ms &&
			   now - m->decided_ms >= MIG_RESEND_MS) {
			/* Idempotent on the nodes; a node away hears them
			 * when it reports again. */
			send_decisions(s, m);
		}
	}
	for (struct ctl_node *n = s->nodes; n; n = n->next)
		if (n->draining)
			drain_advance(s, n);
}

/* ---- drain ------------------------------------------------------------------------- */

static bool migrating_off(struct ctl_server *s, struct ctl_node *n)
{
	for (struct ctl_mig *m = s->migs; m; m = m->next)
		if (m->src == n && m->rec.phase < CTL_MIG_DONE)
			return true;
	return false;
}

static void drain_advance(struct ctl_server *s, struct ctl_node *n)
{
	char trig[96], err[1024];

	if (!n->draining || migrating_off(s, n))
		return;
	snprintf(trig, sizeof(trig), "drain %s", n->rec.name);
	while (n->drain_next < n->drain_total) {
		const char *name = n->drain_names[n->drain_next++];
		struct ctl_part *p = ctl_part_find(s, name);
		struct ctl_migrate_args a = { .trigger = trig };
		struct ctl_placement_rec pr;
		struct ctl_mig *m;
		int rc;

		if (!p || p->node != n)
			continue; /* gone, or moved meanwhile */
		if (p->rec.state != PST(RUNNING)) {
			drain_unmovable(s, n, name, "not running");
			continue;
		}
		rc = ctl_mig_start(s, p, &a, &pr, &m, err, sizeof(err));
		ctl_placement_rec_free(&pr);
		if (rc == 0) {
			snprintf(n->drain_status, sizeof(n->drain_status),
				 "moving %s to %s (%u of %u)", name, m->rec.target, n->drain_next,
				 n->drain_total);
			return;
		}
		drain_unmovable(s, n, name, err);
	}
	n->draining = false;
	snprintf(n->drain_status, sizeof(n->drain_status), "done: %u moved, %u could not move",
		 n->drain_moved, n->nunmovable);
	ctl_event(s, "node", n->rec.name, "drain %s", n->drain_status);
}

void ctl_drain_set(struct ctl_server *s, struct ctl_node *n, bool on)
{
	unsigned k = 0;

	if (!on) {
		if (n->draining) {
			n->draining = false;
			snprintf(n->drain_status, sizeof(n->drain_status),
				 "stopped (undrained): %u moved, %u could not move", n->drain_moved,
				 n->nunmovable);
		}
		return;
	}
	if (n->draining)
		return;
	drain_clear(n);
	n->drain_names = calloc(n->nparts + 1, sizeof(*n->drain_names));
	for (struct ctl_part *p = s->parts; p && n->drain_names; p = p->next) {
		if (p->node != n || k >= n->nparts)
			continue;
		n->drain_names[k] = strdup(p->rec.name);
		if (n->drain_names[k])
			k++;
	}
	n->drain_total = k;
	n->draining = true;
	snprintf(n->drain_status, sizeof(n->drain_status), "moving %u partition(s) off", k);
	ctl_event(s, "node", n->rec.name, "drain: moving %u partition(s) off, one at a time", k);
	drain_advance(s, n);
}

void ctl_drain_free(struct ctl_node *n)
{
	drain_clear(n);
}
