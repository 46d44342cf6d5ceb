// SPDX-License-Identifier: MIT
/*
 * The controller's model of the cluster and the loop that keeps what runs
 * equal to what was asked for.
 *
 * Ownership of a partition is its placement: (node, epoch). The epoch grows
 * on every placement, and every command and report carries it, so a report
 * from an earlier placement (a node that was declared lost and came back)
 * is answered with DeletePartition instead of being believed. Volumes are
 * fenced the same way: after every placement the volume's serving node is
 * told which node alone may open it (VolumeAccess), so the stale copy of a
 * re-placed partition can no longer write its disk.
 *
 * Order of effects: a decision is stored first (in the caller's
 * transaction), commands to nodes go out after the commit. A controller
 * that dies in between has stored a placement the node never heard of; the
 * node's next NodeReport lacks it and the command is sent again. Commands
 * are idempotent on the node for the same (name, epoch).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/util.h"
#include "srv_int.h"

/* ---- hash of names ------------------------------------------------------ */

static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)h;
}

int ctl_hmap_init(struct ctl_hmap *m, size_t nb)
{
	m->b = calloc(nb, sizeof(*m->b));
	m->nb = m->b ? nb : 0;
	m->n = 0;
	return m->b ? 0 : -ENOMEM;
}

void ctl_hmap_free(struct ctl_hmap *m)
{
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

static void hmap_grow(struct ctl_hmap *m)
{
	size_t nb = m->nb * 4;
	struct ctl_hent **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < m->nb; i++) {
		struct ctl_hent *e = m->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[name_hash(e->key) % nb];
			b[name_hash(e->key) % nb] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

void ctl_hmap_add(struct ctl_hmap *m, struct ctl_hent *e, const char *key)
{
	size_t i;

	if (m->n + 1 > m->nb * 2)
		hmap_grow(m);
	i = name_hash(key) % m->nb;
	e->key = key;
	e->next = m->b[i];
	m->b[i] = e;
	m->n++;
}

void ctl_hmap_del(struct ctl_hmap *m, struct ctl_hent *e)
{
	struct ctl_hent **pp = &m->b[name_hash(e->key) % m->nb];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			m->n--;
			return;
		}
	}
}

struct ctl_hent *ctl_hmap_get(const struct ctl_hmap *m, const char *key)
{
	if (!m->nb)
		return NULL;
	for (struct ctl_hent *e = m->b[name_hash(key) % m->nb]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e;
	return NULL;
}

/* ---- model ---------------------------------------------------------------- */

struct ctl_part *ctl_part_find(struct ctl_server *s, const char *name)
{
	struct ctl_hent *e = name ? ctl_hmap_get(&s->part_map, name) : NULL;

	return e ? ctl_container_of(e, struct ctl_part, h) : NULL;
}

struct ctl_volume *ctl_volume_find(struct ctl_server *s, const char *name)
{
	struct ctl_hent *e = name ? ctl_hmap_get(&s->vol_map, name) : NULL;

	return e ? ctl_container_of(e, struct ctl_volume, h) : NULL;
}

void ctl_event(struct ctl_server *s, const char *kind, const char *subject, const char *fmt, ...)
{
	char msg[CTL_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fab_info("%s %s: %s", kind, subject, msg);
	ctl_store_event_add(s->store, kind, subject, msg);
}

static void group_add(struct ctl_node *n, const char *g)
{
	for (unsigned i = 0; i < n->ngroups; i++) {
		if (!strcmp(n->groups[i].name, g)) {
			n->groups[i].count++;
			return;
		}
	}
	if (n->ngroups == n->groups_cap) {
		unsigned cap = n->groups_cap ? n->groups_cap * 2 : 4;
		struct ctl_group_count *ng = realloc(n->groups, cap * sizeof(*ng));

		if (!ng)
			return; /* anti-affinity then errs towards allowing; logged */
		n->groups = ng;
		n->groups_cap = cap;
	}
	snprintf(n->groups[n->ngroups].name, sizeof(n->groups[0].name), "%s", g);
	n->groups[n->ngroups++].count = 1;
}

static void group_del(struct ctl_node *n, const char *g)
{
	for (unsigned i = 0; i < n->ngroups; i++) {
		if (!strcmp(n->groups[i].name, g)) {
			if (--n->groups[i].count == 0)
				n->groups[i] = n->groups[--n->ngroups];
			return;
		}
	}
}

static bool node_has_group(const struct ctl_node *n, const char *g)
{
	for (unsigned i = 0; i < n->ngroups; i++)
		if (!strcmp(n->groups[i].name, g))
			return true;
	return false;
}

void ctl_node_claim(struct ctl_node *n, const struct ctl_part *p)
{
	n->vcpus_used += p->rec.vcpus;
	n->memory_used += p->rec.memory_bytes;
	if (p->rec.group[0])
		group_add(n, p->rec.group);
}

void ctl_node_release(struct ctl_node *n, const struct ctl_part *p)
{
	n->vcpus_used -= p->rec.vcpus;
	n->memory_used -= p->rec.memory_bytes;
	if (p->rec.group[0])
		group_del(n, p->rec.group);
}

void ctl_part_bind(struct ctl_server *s, struct ctl_part *p, struct ctl_node *n)
{
	if (p->node)
		ctl_part_unbind(s, p);
	p->node = n;
	p->nchans = 0;
	snprintf(p->rec.node, sizeof(p->rec.node), "%s", n->rec.name);
	ctl_node_claim(n, p);
	n->nparts++;
}

void ctl_part_unbind(struct ctl_server *s, struct ctl_part *p)
{
	struct ctl_node *n = p->node;

	if (!n)
		return;
	ctl_node_release(n, p);
	n->nparts--;
	/* rec.node and the channels stay: where it ran last, for show. */
	p->node = NULL;
}

void ctl_part_set_state(struct ctl_part *p, int state, const char *reason)
{
	size_t len = reason ? strnlen(reason, sizeof(p->rec.reason) - 1) : 0;

	p->rec.state = state;
	/* Longer reasons (a scheduler explanation) are cut to what is stored. */
	memcpy(p->rec.reason, reason ? reason : "", len);
	p->rec.reason[len] = '\0';
	p->rec.state_unix_ms = fab_unix_ms();
}

int ctl_part_save(struct ctl_server *s, struct ctl_part *p)
{
	int rc = ctl_store_part_update(s->store, &p->rec);

	if (rc)
		fab_err("partition %s: could not store its state: %s", p->rec.name, strerror(-rc));
	return rc;
}

void ctl_volume_link(struct ctl_server *s, struct ctl_volume *v)
{
	ctl_hmap_add(&s->vol_map, &v->h, v->rec.name);
	v->prev = NULL;
	v->next = s->vols;
	if (s->vols)
		s->vols->prev = v;
	s->vols = v;
	s->nvols++;
}

void ctl_volume_unlink(struct ctl_server *s, struct ctl_volume *v)
{
	ctl_hmap_del(&s->vol_map, &v->h);
	if (v->prev)
		v->prev->next = v->next;
	else
		s->vols = v->next;
	if (v->next)
		v->next->prev = v->prev;
	s->nvols--;
}

static int load_volume(const struct ctl_volume_rec *rec, void *arg)
{
	struct ctl_server *s = arg;
	struct ctl_volume *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->rec = *rec;
	ctl_volume_link(s, v);
	return 0;
}

void ctl_part_unlink(struct ctl_server *s, struct ctl_part *p)
{
	ctl_hmap_del(&s->part_map, &p->h);
	if (p->prev)
		p->prev->next = p->next;
	else
		s->parts = p->next;
	if (p->next)
		p->next->prev = p->prev;
	s->nparts--;
}

void ctl_part_link(struct ctl_server *s, struct ctl_part *p)
{
	ctl_hmap_add(&s->part_map, &p->h, p->rec.name);
	p->prev = NULL;
	p->next = s->parts;
	if (s->parts)
		s->parts->prev = p;
	s->parts = p;
	s->nparts++;
}

static int load_part(const struct ctl_part_rec *rec, void *arg)
{
	struct ctl_server *s = arg;
	struct ctl_part *p = calloc(1, sizeof(*p));
	struct ctl_node *n;

	if (!p)
		return -ENOMEM;
	p->rec = *rec;
	ctl_part_link(s, p);
	/* Placed partitions hold their node's resources; ended ones only
	 * remember where they ran. */
	switch (p->rec.state) {
	case FAB__PARTITION_STATE__PARTITION_STATE_SCHEDULED:
	case FAB__PARTITION_STATE__PARTITION_STATE_RUNNING:
	case FAB__PARTITION_STATE__PARTITION_STATE_STOPPING:
	case FAB__PARTITION_STATE__PARTITION_STATE_LOST:
		n = p->rec.node[0] ? ctl_node_find(s, p->rec.node) : NULL;
		if (n)
			ctl_part_bind(s, p, n);
		else
			p->rec.node[0] = '\0';
		break;
	default:
		break;
	}
	return 0;
}

int ctl_cluster_load(struct ctl_server *s)
{
	int rc = ctl_store_volume_foreach(s->store, load_volume, s);

	if (!rc)
		rc = ctl_store_part_foreach(s->store, load_part, s);
	/* Unfinished migrations are decided now, before any node reports. */
	if (!rc)
		rc = ctl_mig_load(s);
	if (!rc)
		fab_info("loaded %zu node(s), %zu volume(s), %zu partition(s)", s->nnodes, s->nvols,
			 s->nparts);
	s->started_ms = fab_mono_ms();
	return rc;
}

void ctl_cluster_free(struct ctl_server *s)
{
	struct ctl_part *p, *pn;
	struct ctl_volume *v, *vn;

	ctl_mig_free_all(s);
	for (p = s->parts; p; p = pn) {
		pn = p->next;
		free(p->con);
		free(p);
	}
	s->parts = NULL;
	for (v = s->vols; v; v = vn) {
		vn = v->next;
		free(v);
	}
	s->vols = NULL;
}

/* ---- placement -------------------------------------------------------------- */

static int grow_scratch(struct ctl_server *s)
{
	size_t cap = s->nnodes + 16;

	if (cap <= s->scap)
		return 0;
	free(s->sn);
	free(s->sv);
	free(s->snp);
	s->sn = calloc(cap, sizeof(*s->sn));
	s->sv = calloc(cap, sizeof(*s->sv));
	s->snp = calloc(cap, sizeof(*s->snp));
	if (!s->sn || !s->sv || !s->snp) {
		s->scap = 0;
		return -ENOMEM;
	}
	s->scap = cap;
	return 0;
}

/* Verdicts kept with a decision: every node of a small cluster; for a large
 * one the chosen node, the best others and the first filtered ones, so
 * the store does not grow by a line per node per placement. */
#define VERDICTS_FEASIBLE 8
#define VERDICTS_FILTERED 8

static int by_score(const void *a, const void *b, void *arg)
{
	const struct ctl_sched_verdict *v = arg;
	double x = v[*(const size_t *)a].score, y = v[*(const size_t *)b].score;

	return x < y ? 1 : x > y ? -1 : 0;
}

static char *verdict_text(struct ctl_server *s, size_t n, size_t chosen, bool placed)
{
	size_t cap = 256, len = 0, nfeas = 0, nfilt = 0, shown_f = 0, shown_x = 0;
	size_t *idx = NULL;
	char *buf = malloc(cap);
	bool all = n <= VERDICTS_FEASIBLE + VERDICTS_FILTERED;

	if (!buf)
		return NULL;
	buf[0] = '\0';
	idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!idx) {
		free(buf);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (s->sv[i].feasible)
			idx[nfeas++] = i;
	qsort_r(idx, nfeas, sizeof(*idx), by_score, s->sv);
	for (size_t i = 0; i < n; i++)
		if (!s->sv[i].feasible)
			idx[nfeas + nfilt++] = i;
	for (size_t k = 0; k < n; k++) {
		size_t i = idx[k];
		const struct ctl_sched_verdict *v = &s->sv[i];
		size_t need = strlen(s->sn[i].name) + strlen(v->reason) + 48;

		if (!all && !(placed && i == chosen)) {
			if (v->feasible && shown_f >= VERDICTS_FEASIBLE)
				continue;
			if (!v->feasible && shown_x >= VERDICTS_FILTERED)
				continue;
		}
		if (v->feasible)
			shown_f++;
		else
			shown_x++;
		if (len + need >= cap) {
			char *nb;

			while (len + need >= cap)
				cap *= 2;
			nb = realloc(buf, cap);
			if (!nb)
				break;
			buf = nb;
		}
		len += (size_t)snprintf(buf + len, cap - len, "%s\t%d\t%.4f\t%s\n", s->sn[i].name,
					v->feasible ? 1 : 0, v->feasible ? v->score : 0.0,
					v->reason);
	}
	if (shown_f + shown_x < n) {
		char more[160];
		int w = snprintf(more, sizeof(more),
				 "(%zu more)\t0\t0\t%zu more feasible with lower scores, %zu more "
				 "filtered out\n",
				 n - shown_f - shown_x, nfeas - shown_f, nfilt - shown_x);

		if (w > 0 && len + (size_t)w < cap) {
			memcpy(buf + len, more, (size_t)w + 1);
		} else if (w > 0) {
			char *nb = realloc(buf, len + (size_t)w + 1);

			if (nb) {
				buf = nb;
				memcpy(buf + len, more, (size_t)w + 1);
			}
		}
	}
	free(idx);
	return buf;
}

/* Fills the scheduler's snapshot of the nodes and runs it for p. */
static int sched_run(struct ctl_server *s, struct ctl_part *p, const struct ctl_node *avoid,
		     bool migrating, struct ctl_sched_req *req, const char **vsp, size_t *n,
		     size_t *chosen)
{
	const char *group = p->rec.group[0] ? p->rec.group : NULL;

	memset(req, 0, sizeof(*req));
	req->partition = p->rec.name;
	req->vcpus = p->rec.vcpus;
	req->memory_bytes = p->rec.memory_bytes;
	req->group = group;
	req->vsp_nodes = vsp;
	req->nvsp = p->rec.nvolumes;
	req->avoid = avoid ? avoid->rec.name : NULL;
	if (migrating) {
		req->avoid_why = "the migration's source";
		req->need_data_addr = true;
	}
	*n = 0;
	if (grow_scratch(s))
		return -ENOMEM;
	for (struct ctl_node *nd = s->nodes; nd; nd = nd->next, (*n)++) {
		struct ctl_sched_node *sn = &s->sn[*n];

		s->snp[*n] = nd;
		sn->name = nd->rec.name;
		sn->up = nd->state == NODE_UP;
		sn->drained = nd->rec.drained;
		sn->vcpus = nd->rec.vcpus;
		sn->vcpus_used = nd->vcpus_used;
		sn->memory_bytes = nd->rec.memory_bytes;
		sn->memory_used = nd->memory_used;
		sn->transports = nd->rec.transports;
		sn->has_data_addr = nd->rec.data_addr[0] != '\0';
		sn->groups = group && node_has_group(nd, group) ? &req->group : NULL;
		sn->ngroups = sn->groups ? 1 : 0;
	}
	s->slast = *n;
	for (unsigned i = 0; i < p->rec.nvolumes; i++) {
		struct ctl_volume *v = ctl_volume_find(s, p->rec.volumes[i]);

		vsp[i] = v ? v->rec.node : NULL;
	}
	return ctl_sched_place(s->sn, *n, req, s->policy, s->sv, chosen);
}

int ctl_sched_for(struct ctl_server *s, struct ctl_part *p, const struct ctl_node *avoid,
		  const char *trigger, struct ctl_placement_rec *pr, struct ctl_node **chosen,
		  char *err, size_t errlen)
{
	const char *vsp[CTL_MAX_VOLUMES];
	struct ctl_sched_req req;
	size_t n = 0, ci = 0;
	int rc;

	memset(pr, 0, sizeof(*pr));
	*chosen = NULL;
	rc = sched_run(s, p, avoid, true, &req, vsp, &n, &ci);
	if (rc && rc != -ENOSPC)
		return rc;
	snprintf(pr->partition, sizeof(pr->partition), "%s", p->rec.name);
	snprintf(pr->policy, sizeof(pr->policy), "%s", ctl_sched_policy_name(s->policy));
	snprintf(pr->trigger, sizeof(pr->trigger), "%s", trigger);
	pr->decided_unix_ms = fab_unix_ms();
	pr->verdicts = verdict_text(s, n, ci, rc == 0);
	if (rc == 0) {
		*chosen = s->snp[ci];
		snprintf(pr->node, sizeof(pr->node), "%s", s->snp[ci]->rec.name);
	} else {
		ctl_sched_explain_none(s->sn, n, &req, s->sv, err, errlen);
	}
	return rc;
}

const char *ctl_sched_verdict_of(struct ctl_server *s, const struct ctl_node *n)
{
	for (size_t i = 0; i < s->slast && i < s->scap; i++)
		if (s->snp[i] == n)
			return s->sv[i].feasible ? "" : s->sv[i].reason;
	return "";
}

int ctl_place(struct ctl_server *s, struct ctl_part *p, const char *trigger,
	      const struct ctl_node *avoid, char *err, size_t errlen)
{
	const char *vsp[CTL_MAX_VOLUMES];
	struct ctl_sched_req req;
	struct ctl_placement_rec pr = { 0 };
	size_t n = 0, chosen = 0;
	int rc;

	ctl_part_unbind(s, p);
	rc = sched_run(s, p, avoid, false, &req, vsp, &n, &chosen);
	if (rc && rc != -ENOSPC)
		return rc;
	snprintf(pr.partition, sizeof(pr.partition), "%s", p->rec.name);
	snprintf(pr.policy, sizeof(pr.policy), "%s", ctl_sched_policy_name(s->policy));
	snprintf(pr.trigger, sizeof(pr.trigger), "%s", trigger);
	pr.decided_unix_ms = fab_unix_ms();
	pr.verdicts = verdict_text(s, n, chosen, rc == 0);
	if (rc == 0) {
		struct ctl_node *nd = s->snp[chosen];
		char why[CTL_REASON_MAX];

		ctl_part_bind(s, p, nd);
		p->rec.epoch++;
		p->attempts = 0;
		snprintf(why, sizeof(why), "placed on %s (%s)", nd->rec.name, trigger);
		ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_SCHEDULED, why);
		pr.epoch = p->rec.epoch;
		snprintf(pr.node, sizeof(pr.node), "%s", nd->rec.name);
	} else {
		ctl_sched_explain_none(s->sn, n, &req, s->sv, err, errlen);
		pr.epoch = p->rec.epoch;
	}
	if (ctl_store_placement_add(s->store, &pr))
		fab_warn("partition %s: could not store the placement decision", p->rec.name);
	ctl_placement_rec_free(&pr);
	return rc;
}

/* ---- commands to nodes ---------------------------------------------------- */

#define REMOTE_TIMEOUT_MS 30000

unsigned ctl_part_bindings(struct ctl_server *s, const struct ctl_part *p, const struct ctl_node *n,
			   Fab__DeviceBinding *db, Fab__DeviceBinding **dbp, char (*dev)[16])
{
	for (unsigned i = 0; i < p->rec.nvolumes; i++) {
		struct ctl_volume *v = ctl_volume_find(s, p->rec.volumes[i]);
		struct ctl_node *vn = v ? ctl_node_find(s, v->rec.node) : NULL;

		fab__device_binding__init(&db[i]);
		snprintf(dev[i], sizeof(dev[i]), "disk%u", i);
		db[i].device = dev[i];
		db[i].volume = (char *)p->rec.volumes[i];
		db[i].timeout_ms = REMOTE_TIMEOUT_MS;
		if (vn && vn == n) {
			db[i].path = v->rec.path;
		} else {
			db[i].node = v ? v->rec.node : (char *)"";
			db[i].address = vn ? vn->rec.data_addr : (char *)"";
			db[i].export = (char *)p->rec.volumes[i];
		}
		dbp[i] = &db[i];
	}
	return p->rec.nvolumes;
}

size_t ctl_part_args(const struct ctl_part *p, char **args)
{
	size_t off = 0, n = 0;

	for (unsigned i = 0; i < p->rec.nargs && i < CTL_MAX_ARGS && off < p->rec.args_len; i++) {
		args[i] = (char *)p->rec.args + off;
		off += strlen(p->rec.args + off) + 1;
		n = i + 1;
	}
	return n;
}

void ctl_part_dispatch(struct ctl_server *s, struct ctl_part *p)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__RunPartition run = FAB__RUN_PARTITION__INIT;
	Fab__DeviceBinding db[CTL_MAX_VOLUMES], *dbp[CTL_MAX_VOLUMES];
	char dev[CTL_MAX_VOLUMES][16];
	char *args[CTL_MAX_ARGS];

	if (!p->node)
		return;
	run.name = p->rec.name;
	run.epoch = p->rec.epoch;
	run.image = p->rec.image;
	run.vcpus = p->rec.vcpus;
	run.memory_bytes = p->rec.memory_bytes;
	run.n_args = ctl_part_args(p, args);
	run.args = args;
	run.n_devices = ctl_part_bindings(s, p, p->node, db, dbp, dev);
	run.devices = dbp;
	env.body_case = FAB__ENVELOPE__BODY_RUN_PARTITION;
	env.run_partition = &run;
	ctl_node_send(s, p->node, &env);
	ctl_part_fence(s, p);
}

static void send_access(struct ctl_server *s, struct ctl_volume *v, const char *node,
			uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeAccess va = FAB__VOLUME_ACCESS__INIT;

	va.name = v->rec.name;
	va.node = (char *)node;
	va.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_VOLUME_ACCESS;
	env.volume_access = &va;
	ctl_node_send(s, ctl_node_find(s, v->rec.node), &env);
}

void ctl_part_fence(struct ctl_server *s, struct ctl_part *p)
{
	for (unsigned i = 0; i < p->rec.nvolumes; i++) {
		struct ctl_volume *v = ctl_volume_find(s, p->rec.volumes[i]);

		if (v)
			send_access(s, v, p->node ? p->node->rec.name : "", p->rec.epoch);
	}
}

void ctl_send_delete(struct ctl_server *s, struct ctl_node *n, const char *name, uint64_t epoch)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__DeletePartition del = FAB__DELETE_PARTITION__INIT;

	del.name = (char *)name;
	del.epoch = epoch;
	env.body_case = FAB__ENVELOPE__BODY_DELETE_PARTITION;
	env.delete_partition = &del;
	ctl_node_send(s, n, &env);
}

void ctl_send_create_volume(struct ctl_server *s, struct ctl_volume *v)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__CreateVolume cv = FAB__CREATE_VOLUME__INIT;

	cv.name = v->rec.name;
	cv.size_bytes = v->rec.size_bytes;
	env.body_case = FAB__ENVELOPE__BODY_CREATE_VOLUME;
	env.create_volume = &cv;
	ctl_node_send(s, ctl_node_find(s, v->rec.node), &env);
}

void ctl_send_delete_volume(struct ctl_server *s, struct ctl_volume *v)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__DeleteVolume dv = FAB__DELETE_VOLUME__INIT;

	dv.name = v->rec.name;
	env.body_case = FAB__ENVELOPE__BODY_DELETE_VOLUME;
	env.delete_volume = &dv;
	ctl_node_send(s, ctl_node_find(s, v->rec.node), &env);
}

void ctl_send_stop(struct ctl_server *s, struct ctl_part *p, uint32_t timeout_ms)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__StopPartition sp = FAB__STOP_PARTITION__INIT;

	if (!p->node)
		return;
	sp.name = p->rec.name;
	sp.epoch = p->rec.epoch;
	sp.timeout_ms = timeout_ms;
	env.body_case = FAB__ENVELOPE__BODY_STOP_PARTITION;
	env.stop_partition = &sp;
	ctl_node_send(s, p->node, &env);
}

/* ---- partitions that end ------------------------------------------------- */

static const char *state_word(int st)
{
	switch (st) {
	case FAB__PARTITION_STATE__PARTITION_STATE_STOPPED:
		return "stopped";
	case FAB__PARTITION_STATE__PARTITION_STATE_EXITED:
		return "exited";
	case FAB__PARTITION_STATE__PARTITION_STATE_CRASHED:
		return "crashed";
	case FAB__PARTITION_STATE__PARTITION_STATE_LOST:
		return "lost";
	case FAB__PARTITION_STATE__PARTITION_STATE_FAILED:
		return "failed";
	default:
		return "ended";
	}
}

/* Backoff between restarts of a partition that keeps failing on its own:
 * 0.5 s doubling to 30 s. A lost node's partitions restart at once. */
static int64_t restart_delay(unsigned attempts)
{
	int64_t d = 500;

	for (unsigned i = 0; i < attempts && d < 30000; i++)
		d *= 2;
	return d > 30000 ? 30000 : d;
}

/*
 * p ended on its node (state: STOPPED, EXITED, CRASHED, FAILED or LOST).
 * Either it is over (unplaced, volumes fenced off) or the restart policy
 * sends it back to the scheduler.
 */
static void part_ended(struct ctl_server *s, struct ctl_part *p, int state, int32_t exit_status,
		       const char *reason)
{
	bool restart = false;
	char why[CTL_REASON_MAX];

	/* Before its state changes: a migration of it ends first. */
	ctl_mig_part_ended(s, p, reason);
	if (p->rec.desired_running) {
		if (p->rec.restart == FAB__RESTART_POLICY__RESTART_POLICY_ALWAYS)
			restart = true;
		else if (p->rec.restart == FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE)
			restart = state != FAB__PARTITION_STATE__PARTITION_STATE_EXITED ||
				  exit_status != 0;
	}
	p->rec.exit_status = exit_status;
	if (restart) {
		const char *from = p->node ? p->node->rec.name : "?";

		p->rec.restarts++;
		snprintf(why, sizeof(why), "%s on %s (%s); restart %u", state_word(state), from,
			 reason && reason[0] ? reason : "no reason given", p->rec.restarts);
		ctl_event(s, "partition", p->rec.name, "%s", why);
		ctl_part_unbind(s, p);
		p->rec.node[0] = '\0';
		/* Nobody may use its disks until the next placement. */
		ctl_part_fence(s, p);
		ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_PENDING, why);
		p->retry_at = fab_mono_ms() + (state == FAB__PARTITION_STATE__PARTITION_STATE_LOST
						       ? 0
						       : restart_delay(p->attempts++));
	} else {
		if (state != FAB__PARTITION_STATE__PARTITION_STATE_STOPPED || p->rec.desired_running)
			ctl_event(s, "partition", p->rec.name, "%s%s%s", state_word(state),
				  reason && reason[0] ? ": " : "", reason ? reason : "");
		p->rec.desired_running = false;
		ctl_part_unbind(s, p);
		ctl_part_set_state(p, state, reason);
		ctl_part_fence(s, p);
	}
	ctl_part_save(s, p);
}

void ctl_node_lost(struct ctl_server *s, struct ctl_node *n)
{
	char why[CTL_REASON_MAX];

	/* Migrations first: one not yet committed is aborted, so the normal
	 * path below sees the partition where the store has it. */
	ctl_mig_node_lost(s, n);
	n->lost = true;
	snprintf(why, sizeof(why), "node %s lost (lease expired)", n->rec.name);
	for (struct ctl_part *p = s->parts; p; p = p->next) {
		if (p->node != n)
			continue;
		if (p->rec.desired_running &&
		    p->rec.restart != FAB__RESTART_POLICY__RESTART_POLICY_NEVER) {
			part_ended(s, p, FAB__PARTITION_STATE__PARTITION_STATE_LOST, 0, why);
		} else if (p->rec.state != FAB__PARTITION_STATE__PARTITION_STATE_LOST) {
			/* Kept on the node: it may come back with it running. */
			ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_LOST, why);
			ctl_event(s, "partition", p->rec.name, "%s", why);
			ctl_part_save(s, p);
		}
	}
}

void ctl_node_registered(struct ctl_server *s, struct ctl_node *n)
{
	n->lost = false;
	n->reported = false;
}

/* ---- node reports ------------------------------------------------------------ */

static bool str_ok(const char *x, size_t max)
{
	return x && strlen(x) < max;
}

static void take_channels(struct ctl_part *p, const Fab__PartitionStatus *st)
{
	unsigned n = 0;

	for (size_t i = 0; i < st->n_channels && n < CTL_MAX_VOLUMES; i++) {
		const Fab__ChannelInfo *ci = st->channels[i];
		struct ctl_chan *c = &p->chans[n];

		if (!str_ok(ci->device, sizeof(c->device)) ||
		    !str_ok(ci->volume, sizeof(c->volume)) ||
		    !str_ok(ci->transport, sizeof(c->transport)) ||
		    !str_ok(ci->vsp_node, sizeof(c->vsp_node)) ||
		    !str_ok(ci->health, sizeof(c->health)))
			continue;
		snprintf(c->device, sizeof(c->device), "%s", ci->device);
		snprintf(c->volume, sizeof(c->volume), "%s", ci->volume);
		c->remote = ci->remote;
		snprintf(c->transport, sizeof(c->transport), "%s", ci->transport);
		snprintf(c->vsp_node, sizeof(c->vsp_node), "%s", ci->vsp_node);
		snprintf(c->health, sizeof(c->health), "%s", ci->health);
		c->io_errors = ci->io_errors;
		n++;
	}
	if (n || !st->n_channels)
		p->nchans = n;
}

/* Applies a status of p's current placement. */
static void apply_status(struct ctl_server *s, struct ctl_part *p, const Fab__PartitionStatus *st)
{
	const char *reason = str_ok(st->reason, CTL_REASON_MAX) ? st->reason : "";

	take_channels(p, st);
	switch (st->state) {
	case FAB__PARTITION_STATE__PARTITION_STATE_RUNNING:
		if (p->mig)
			ctl_mig_target_running(s, p);
		if (p->rec.state != FAB__PARTITION_STATE__PARTITION_STATE_RUNNING &&
		    p->rec.state != FAB__PARTITION_STATE__PARTITION_STATE_STOPPING) {
			ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_RUNNING, "");
			ctl_event(s, "partition", p->rec.name, "running on %s (epoch %llu)",
				  p->node->rec.name, (unsigned long long)p->rec.epoch);
			p->attempts = 0;
			ctl_part_save(s, p);
		}
		break;
	case FAB__PARTITION_STATE__PARTITION_STATE_STOPPING:
		if (p->rec.state != FAB__PARTITION_STATE__PARTITION_STATE_STOPPING) {
			ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_STOPPING,
					   reason);
			ctl_part_save(s, p);
		}
		break;
	case FAB__PARTITION_STATE__PARTITION_STATE_STOPPED:
	case FAB__PARTITION_STATE__PARTITION_STATE_EXITED:
	case FAB__PARTITION_STATE__PARTITION_STATE_CRASHED:
	case FAB__PARTITION_STATE__PARTITION_STATE_FAILED:
		part_ended(s, p, st->state, st->exit_status, reason);
		break;
	default:
		fab_warn("node %s: partition %s: unexpected state %d in a report; ignored",
			 p->node->rec.name, p->rec.name, (int)st->state);
		break;
	}
}

void ctl_on_partition_status(struct ctl_server *s, struct ctl_node *n,
			     const Fab__PartitionStatus *st)
{
	struct ctl_part *p;

	if (!st->name || fab_name_valid(st->name)) {
		fab_warn("node %s: status of a partition with an invalid name; ignored",
			 n->rec.name);
		return;
	}
	p = ctl_part_find(s, st->name);
	if (ctl_mig_owns(s, p, n, st->epoch))
		return; /* a migration's copy: its decision settles it */
	if (!p || p->node != n || st->epoch != p->rec.epoch) {
		/* Not (or no longer) this node's: a placement the controller
		 * moved elsewhere or deleted while the node was away. */
		if (st->state == FAB__PARTITION_STATE__PARTITION_STATE_RUNNING ||
		    st->state == FAB__PARTITION_STATE__PARTITION_STATE_STOPPING ||
		    st->state == FAB__PARTITION_STATE__PARTITION_STATE_STOPPED ||
		    st->state == FAB__PARTITION_STATE__PARTITION_STATE_EXITED ||
		    st->state == FAB__PARTITION_STATE__PARTITION_STATE_CRASHED ||
		    st->state == FAB__PARTITION_STATE__PARTITION_STATE_FAILED) {
			fab_info("node %s holds partition %s epoch %llu, which is not its "
				 "placement: deleting it there",
				 n->rec.name, st->name, (unsigned long long)st->epoch);
			ctl_send_delete(s, n, st->name, st->epoch);
		}
		return;
	}
	ctl_batch_join(s);
	apply_status(s, p, st);
}

/* Tells v's node who may open it: the node of the partition it is
 * attached to while that is placed, else nobody. */
static void fence_volume(struct ctl_server *s, struct ctl_volume *v)
{
	struct ctl_part *p = v->rec.attached_to[0] ? ctl_part_find(s, v->rec.attached_to) : NULL;

	send_access(s, v, p && p->node ? p->node->rec.name : "", p ? p->rec.epoch : 0);
}

/* Tells n who may open each volume it serves (after it registered). */
static void fence_volumes_of(struct ctl_server *s, struct ctl_node *n)
{
	for (struct ctl_volume *v = s->vols; v; v = v->next)
		if (!strcmp(v->rec.node, n->rec.name) && !strcmp(v->rec.state, "ready"))
			fence_volume(s, v);
}

static void volume_free(struct ctl_server *s, struct ctl_volume *v)
{
	ctl_volume_unlink(s, v);
	free(v);
}

static void volume_save(struct ctl_server *s, struct ctl_volume *v)
{
	if (ctl_store_volume_update(s->store, &v->rec))
		fab_err("volume %s: could not store its state", v->rec.name);
}

/* Applies a volume's state as its node reports it. */
static void apply_volume(struct ctl_server *s, struct ctl_node *n, struct ctl_volume *v,
			 const Fab__VolumeStatus *vs)
{
	const char *state = vs->state ? vs->state : "";
	const char *error = str_ok(vs->error, CTL_REASON_MAX) ? vs->error : "";

	if (!strcmp(state, "ready")) {
		if (!strcmp(v->rec.state, "deleting")) {
			ctl_send_delete_volume(s, v); /* the delete was not heard */
			return;
		}
		if (str_ok(vs->path, CTL_PATH_MAX))
			snprintf(v->rec.path, sizeof(v->rec.path), "%s", vs->path);
		if (vs->size_bytes)
			v->rec.size_bytes = vs->size_bytes;
		if (strcmp(v->rec.state, "ready")) {
			snprintf(v->rec.state, sizeof(v->rec.state), "ready");
			v->rec.error[0] = '\0';
			ctl_event(s, "volume", v->rec.name, "ready on %s (%s)", n->rec.name,
				  v->rec.path);
		}
		volume_save(s, v);
	} else if (!strcmp(state, "failed")) {
		if (!strcmp(v->rec.state, "creating")) {
			snprintf(v->rec.state, sizeof(v->rec.state), "failed");
			ctl_event(s, "volume", v->rec.name, "creation failed on %s: %s",
				  n->rec.name, error);
		} else if (!strcmp(v->rec.state, "deleting")) {
			snprintf(v->rec.state, sizeof(v->rec.state), "ready");
			ctl_event(s, "volume", v->rec.name, "delete refused by %s: %s",
				  n->rec.name, error);
		}
		snprintf(v->rec.error, sizeof(v->rec.error), "%s", error);
		volume_save(s, v);
	} else if (!strcmp(state, "deleted")) {
		if (strcmp(v->rec.state, "deleting") && strcmp(v->rec.state, "failed")) {
			fab_warn("node %s reports volume %s deleted, which nobody asked for",
				 n->rec.name, v->rec.name);
			snprintf(v->rec.state, sizeof(v->rec.state), "failed");
			snprintf(v->rec.error, sizeof(v->rec.error), "gone from node %s",
				 n->rec.name);
			volume_save(s, v);
			return;
		}
		if (ctl_store_volume_delete(s->store, v->rec.name) == 0) {
			ctl_event(s, "volume", v->rec.name, "deleted from %s", n->rec.name);
			volume_free(s, v);
		}
	}
}

void ctl_on_volume_status(struct ctl_server *s, struct ctl_node *n, const Fab__VolumeStatus *vs)
{
	struct ctl_volume *v = vs->name ? ctl_volume_find(s, vs->name) : NULL;

	if (!v || strcmp(v->rec.node, n->rec.name)) {
		fab_warn("node %s: status of volume '%.64s', which is not one of its volumes; "
			 "ignored",
			 n->rec.name, vs->name ? vs->name : "?");
		return;
	}
	if (ctl_tx_begin(s) == 0) {
		apply_volume(s, n, v, vs);
		ctl_store_commit(s->store);
	} else {
		apply_volume(s, n, v, vs);
	}
	v = ctl_volume_find(s, vs->name); /* it may be gone (deleted) */
	if (v && !strcmp(v->rec.state, "ready"))
		fence_volume(s, v);
}

/* Whether the report lists an undecided migration of name: its copy there
 * goes by the decision (ctl_mig_report), not by a DeletePartition. */
static bool report_migrates(const Fab__NodeReport *r, const char *name)
{
	for (size_t i = 0; i < r->n_migrations; i++)
		if (r->migrations[i] && r->migrations[i]->name &&
		    !strcmp(r->migrations[i]->name, name))
			return true;
	return false;
}

void ctl_on_node_report(struct ctl_server *s, struct ctl_node *n, const Fab__NodeReport *r)
{
	uint64_t mark = ++s->report_seq;
	struct ctl_part **resend = NULL;
	size_t nresend = 0;

	n->reported = true;
	if (ctl_tx_begin(s))
		return;
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Fab__PartitionStatus *st = r->partitions[i];
		struct ctl_part *p = st->name ? ctl_part_find(s, st->name) : NULL;

		if (p && p->node == n && st->epoch == p->rec.epoch) {
			p->seen = mark;
			apply_status(s, p, st);
			/* A stop it did not hear while away. */
			if (p->node && !p->rec.desired_running &&
			    st->state == FAB__PARTITION_STATE__PARTITION_STATE_RUNNING)
				ctl_send_stop(s, p, s->stop_timeout_ms);
		} else if (st->name && !fab_name_valid(st->name) &&
			   !ctl_mig_owns(s, p, n, st->epoch) && !report_migrates(r, st->name)) {
			fab_info("node %s holds partition %s epoch %llu, which is not its "
				 "placement: deleting it there",
				 n->rec.name, st->name, (unsigned long long)st->epoch);
			ctl_send_delete(s, n, st->name, st->epoch);
		}
	}
	/* A committed migration's target may hold the partition as a
	 * migration (paused until RESUME), not among its partitions. */
	for (size_t i = 0; i < r->n_migrations; i++) {
		const Fab__MigrationStatus *ms = r->migrations[i];
		struct ctl_mig *m = ms ? ctl_mig_find(s, ms->migration_id) : NULL;

		if (m && m->p && m->p->node == n && m->dst == n && ms->role &&
		    !strcmp(ms->role, "target"))
			m->p->seen = mark;
	}
	for (struct ctl_part *p = s->parts; p; p = p->next) {
		if (p->node != n || p->seen == mark)
			continue;
		if (p->rec.state == FAB__PARTITION_STATE__PARTITION_STATE_SCHEDULED &&
		    p->rec.desired_running) {
			struct ctl_part **nr = realloc(resend, (nresend + 1) * sizeof(*nr));

			if (nr) {
				resend = nr;
				resend[nresend++] = p;
			}
		} else if (!p->rec.desired_running) {
			part_ended(s, p, FAB__PARTITION_STATE__PARTITION_STATE_STOPPED, 0,
				   "not running on its node");
		} else {
			char why[CTL_REASON_MAX];

			snprintf(why, sizeof(why), "node %s came back without it", n->rec.name);
			part_ended(s, p, FAB__PARTITION_STATE__PARTITION_STATE_LOST, 0, why);
		}
	}
	for (struct ctl_volume *v = s->vols; v; v = v->next)
		if (!strcmp(v->rec.node, n->rec.name))
			v->seen = 0;
	for (size_t i = 0; i < r->n_volumes; i++) {
		const Fab__VolumeStatus *vs = r->volumes[i];
		struct ctl_volume *v = vs->name ? ctl_volume_find(s, vs->name) : NULL;

		if (!v || strcmp(v->rec.node, n->rec.name)) {
			fab_warn("node %s serves volume '%.64s', which the controller does not know; "
				 "left alone",
				 n->rec.name, vs->name ? vs->name : "?");
			continue;
		}
		v->seen = 1;
		apply_volume(s, n, v, vs);
	}
	for (struct ctl_volume *v = s->vols, *vn; v; v = vn) {
		vn = v->next;
		if (strcmp(v->rec.node, n->rec.name) || v->seen)
			continue;
		if (!strcmp(v->rec.state, "creating")) {
			ctl_send_create_volume(s, v);
		} else if (!strcmp(v->rec.state, "deleting")) {
			if (ctl_store_volume_delete(s->store, v->rec.name) == 0) {
				ctl_event(s, "volume", v->rec.name, "deleted (gone from %s)",
					  n->rec.name);
				volume_free(s, v);
			}
		} else if (!strcmp(v->rec.state, "ready")) {
			snprintf(v->rec.state, sizeof(v->rec.state), "failed");
			snprintf(v->rec.error, sizeof(v->rec.error), "missing on node %s",
				 n->rec.name);
			ctl_event(s, "volume", v->rec.name, "missing on node %s", n->rec.name);
			volume_save(s, v);
		}
	}
	if (ctl_store_commit(s->store))
		fab_err("node %s: reconciliation not stored", n->rec.name);
	fence_volumes_of(s, n);
	for (size_t i = 0; i < nresend; i++)
		ctl_part_dispatch(s, resend[i]);
	free(resend);
	/* After the commit: decisions for what the node holds undecided. */
	ctl_mig_report(s, n, r);
	fab_info("node %s reported %zu partition(s), %zu volume(s); %zu command(s) resent",
		 n->rec.name, r->n_partitions, r->n_volumes, nresend);
}

void ctl_on_console(struct ctl_server *s, struct ctl_node *n, const Fab__ConsoleOutput *co)
{
	struct ctl_part *p = co->name ? ctl_part_find(s, co->name) : NULL;
	const uint8_t *d = co->data.data;
	size_t len = co->data.len;

	if (!p || p->node != n || co->epoch != p->rec.epoch)
		return;
	if (!p->con) {
		p->con = malloc(CTL_CONSOLE_MAX);
		if (!p->con)
			return;
	}
	if (len > CTL_CONSOLE_MAX) {
		d += len - CTL_CONSOLE_MAX;
		len = CTL_CONSOLE_MAX;
		p->con_dropped = true;
	}
	for (size_t i = 0; i < len; i++) {
		p->con[(p->con_head + p->con_len) % CTL_CONSOLE_MAX] = (char)d[i];
		if (p->con_len < CTL_CONSOLE_MAX) {
			p->con_len++;
		} else {
			p->con_head = (p->con_head + 1) % CTL_CONSOLE_MAX;
			p->con_dropped = true;
		}
	}
}

/* ---- the reconciliation tick ----------------------------------------------- */

void ctl_reconcile_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_server *s = w->data;
	int64_t now = fab_mono_ms();
	struct ctl_part **placed = NULL;
	size_t nplaced = 0, cap = 0;
	bool open = false;

	/* Nodes that never came back after a controller restart count as
	 * lost once a lease has passed. */
	if (!s->startup_judged && now - s->started_ms >= (int64_t)s->lease_ms) {
		s->startup_judged = true;
		for (struct ctl_node *n = s->nodes; n; n = n->next) {
			if (n->state == NODE_DOWN && !n->lost && n->nparts) {
				if (!open)
					open = ctl_tx_begin(s) == 0;
				fab_info("node %s has not registered since the controller started",
					 n->rec.name);
				ctl_node_lost(s, n);
			}
		}
	}
	for (struct ctl_part *p = s->parts; p; p = p->next) {
		char err[1024];
		int rc;

		if (p->node || !p->rec.desired_running || now < p->retry_at)
			continue;
		if (!open)
			open = ctl_tx_begin(s) == 0;
		rc = ctl_place(s, p, p->rec.restarts ? "restart" : "retry", NULL, err, sizeof(err));
		if (rc == 0) {
			if (nplaced == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct ctl_part **np = realloc(placed, nc * sizeof(*np));

				if (!np) {
					ctl_part_unbind(s, p);
					continue;
				}
				placed = np;
				cap = nc;
			}
			placed[nplaced++] = p;
			ctl_event(s, "partition", p->rec.name, "placed on %s (epoch %llu)",
				  p->node->rec.name, (unsigned long long)p->rec.epoch);
			ctl_part_save(s, p);
		} else {
			/* Stays pending; the reason is stored when it changes. */
			p->retry_at = now + 2000;
			if (strncmp(p->rec.reason, err, sizeof(p->rec.reason) - 1)) {
				ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_PENDING,
						   err);
				ctl_part_save(s, p);
			}
		}
	}
	if (open && ctl_store_commit(s->store))
		fab_err("reconciliation: decisions not stored");
	for (size_t i = 0; i < nplaced; i++)
		ctl_part_dispatch(s, placed[i]);
	free(placed);
	ctl_mig_tick(s);
}
