// SPDX-License-Identifier: MIT
/*
 * The admin API of fabctld: nodes, volumes and partitions.
 *
 * Every request is validated here before anything else sees it. A change
 * is durable before its reply (one transaction: the record, the placement
 * decision and the event); commands to nodes leave after the commit, so a
 * reply never describes something the store could lose. Roles: only the
 * admin certificate reaches these handlers (a node certificate gets
 * -EACCES and is disconnected, like any client misusing the protocol).
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

#define RAM_ALIGN	 (2ull << 20)
#define RAM_MIN		 (4ull << 20)
#define RAM_MAX		 (3ull << 30)
#define RAM_DEFAULT	 (64ull << 20)
#define VCPUS_MAX	 64
#define VOLUME_MIN	 (1ull << 20)
#define VOLUME_MAX	 (64ull << 40)
#define GUEST_ARGS_BYTES 2048

/* ---- a bump list of allocations freed after the reply ---------------------- */

struct arena {
	void **v;
	size_t n, cap;
	bool failed;
};

static void *ar_alloc(struct arena *a, size_t size)
{
	void *p;

	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void **nv = realloc(a->v, cap * sizeof(*nv));

		if (!nv) {
			a->failed = true;
			return NULL;
		}
		a->v = nv;
		a->cap = cap;
	}
	p = calloc(1, size);
	if (!p) {
		a->failed = true;
		return NULL;
	}
	a->v[a->n++] = p;
	return p;
}

static void ar_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

static char *ar_strdup(struct arena *a, const char *s)
{
	size_t len = strlen(s);
	char *d = ar_alloc(a, len + 1);

	if (d)
		memcpy(d, s, len);
	return d;
}

/* ---- filling replies ----------------------------------------------------------- */

static char **split(struct arena *a, const char *list, size_t *n)
{
	char *buf = ar_strdup(a, list);
	char **v = ar_alloc(a, 32 * sizeof(*v));

	*n = 0;
	if (!buf || !v)
		return NULL;
	*n = ctl_split_list(buf, v, 32);
	return v;
}

static Fab__NodeInfo *node_info(struct ctl_server *s, struct arena *a, struct ctl_node *n,
				bool detail)
{
	Fab__NodeInfo *ni = ar_alloc(a, sizeof(*ni));

	if (!ni)
		return NULL;
	fab__node_info__init(ni);
	ni->name = n->rec.name;
	ni->state = n->state == NODE_UP ? FAB__NODE_STATE__NODE_STATE_UP
					: FAB__NODE_STATE__NODE_STATE_DOWN;
	ni->vcpus = n->rec.vcpus;
	ni->memory_bytes = n->rec.memory_bytes;
	ni->transports = split(a, n->rec.transports, &ni->n_transports);
	ni->vsps = split(a, n->rec.vsps, &ni->n_vsps);
	ni->data_addr = n->rec.data_addr;
	ni->peer_addr = n->rec.peer_addr;
	ni->registered_unix_ms = n->rec.registered_unix_ms;
	ni->last_seen_unix_ms = n->rec.last_seen_unix_ms;
	ni->generation = n->rec.generation;
	ni->version = n->rec.version;
	ni->drained = n->rec.drained;
	ni->vcpus_used = n->vcpus_used;
	ni->memory_used = n->memory_used;
	ni->draining = n->draining;
	ni->drain_status = n->drain_status;
	ni->unmovable = n->unmovable;
	ni->n_unmovable = n->nunmovable;
	if (detail) {
		size_t np = 0, nv = 0;

		ni->partitions = ar_alloc(a, (n->nparts + 1) * sizeof(char *));
		for (struct ctl_part *p = s->parts; p && ni->partitions && np < n->nparts;
		     p = p->next)
			if (p->node == n)
				ni->partitions[np++] = p->rec.name;
		ni->n_partitions = ni->partitions ? np : 0;
		for (struct ctl_volume *v = s->vols; v; v = v->next)
			nv += !strcmp(v->rec.node, n->rec.name);
		ni->volumes = ar_alloc(a, (nv + 1) * sizeof(char *));
		nv = 0;
		for (struct ctl_volume *v = s->vols; v && ni->volumes; v = v->next)
			if (!strcmp(v->rec.node, n->rec.name))
				ni->volumes[nv++] = v->rec.name;
		ni->n_volumes = ni->volumes ? nv : 0;
	}
	return ni;
}

static Fab__VolumeInfo *volume_info(struct arena *a, struct ctl_volume *v)
{
	Fab__VolumeInfo *vi = ar_alloc(a, sizeof(*vi));

	if (!vi)
		return NULL;
	fab__volume_info__init(vi);
	vi->name = v->rec.name;
	vi->node = v->rec.node;
	vi->size_bytes = v->rec.size_bytes;
	vi->state = v->rec.state;
	vi->attached_to = v->rec.attached_to;
	vi->path = v->rec.path;
	vi->error = v->rec.error;
	vi->created_unix_ms = v->rec.created_unix_ms;
	return vi;
}

/* The transport two nodes share ("rdma" preferred), or "" if none. */
static const char *common_transport(const struct ctl_node *a, const struct ctl_node *b)
{
	if (strstr(a->rec.transports, "rdma") && strstr(b->rec.transports, "rdma"))
		return "rdma";
	if (strstr(a->rec.transports, "tcp") && strstr(b->rec.transports, "tcp"))
		return "tcp";
	return "";
}

/* A migration as the API shows it: the stored record, with the progress
 * only memory holds when m (the one in progress) is given. */
static Fab__MigrationInfo *mig_info(struct arena *a, const struct ctl_migration_rec *r,
				    const struct ctl_mig *m)
{
	Fab__MigrationInfo *mi = ar_alloc(a, sizeof(*mi));
	struct ctl_migration_rec *copy = ar_alloc(a, sizeof(*copy));

	if (!mi || !copy)
		return NULL;
	*copy = *r;
	fab__migration_info__init(mi);
	mi->id = copy->id;
	mi->partition = copy->partition;
	mi->source = copy->source;
	mi->target = copy->target;
	mi->phase = (Fab__MigrationPhase)copy->phase;
	mi->epoch_from = copy->epoch_from;
	mi->epoch_to = copy->epoch_to;
	mi->trigger = copy->trigger;
	mi->downtime_budget_ms = copy->downtime_ms;
	mi->max_rounds = copy->max_rounds;
	mi->throttle = copy->throttle;
	mi->round = copy->rounds;
	mi->ram_bytes = copy->ram_bytes;
	mi->bytes_sent = copy->bytes_sent;
	mi->downtime_us = copy->downtime_us;
	mi->error = copy->error;
	mi->started_unix_ms = copy->started_unix_ms;
	mi->ended_unix_ms = copy->ended_unix_ms;
	if (m) {
		mi->dirty_bytes = m->dirty_bytes;
		mi->dirty_bytes_per_s = m->dirty_rate;
		mi->link_bytes_per_s = m->link_rate;
		mi->est_downtime_us = m->est_downtime_us;
		mi->throttle_pct = m->throttle_pct;
	}
	return mi;
}

static Fab__PartitionInfo *part_info(struct ctl_server *s, struct arena *a, struct ctl_part *p)
{
	Fab__PartitionInfo *pi = ar_alloc(a, sizeof(*pi));
	Fab__PartitionSpec *sp = ar_alloc(a, sizeof(*sp));
	size_t off = 0;

	if (!pi || !sp)
		return NULL;
	fab__partition_info__init(pi);
	fab__partition_spec__init(sp);
	sp->name = p->rec.name;
	sp->image = p->rec.image;
	sp->vcpus = p->rec.vcpus;
	sp->memory_bytes = p->rec.memory_bytes;
	sp->group = p->rec.group;
	sp->restart = (Fab__RestartPolicy)p->rec.restart;
	sp->no_start = false;
	sp->volumes = ar_alloc(a, (p->rec.nvolumes + 1) * sizeof(char *));
	for (unsigned i = 0; sp->volumes && i < p->rec.nvolumes; i++)
		sp->volumes[i] = p->rec.volumes[i];
	sp->n_volumes = sp->volumes ? p->rec.nvolumes : 0;
	sp->args = ar_alloc(a, (p->rec.nargs + 1) * sizeof(char *));
	for (unsigned i = 0; sp->args && i < p->rec.nargs && off < p->rec.args_len; i++) {
		sp->args[i] = p->rec.args + off;
		off += strlen(p->rec.args + off) + 1;
		sp->n_args = i + 1;
	}
	pi->spec = sp;
	if (p->mig)
		pi->migration = mig_info(a, &p->mig->rec, p->mig);
	pi->state = (Fab__PartitionState)p->rec.state;
	pi->desired_running = p->rec.desired_running;
	pi->node = p->rec.node;
	pi->epoch = p->rec.epoch;
	pi->exit_status = p->rec.exit_status;
	pi->reason = p->rec.reason;
	pi->restarts = p->rec.restarts;
	pi->created_unix_ms = p->rec.created_unix_ms;
	pi->state_unix_ms = p->rec.state_unix_ms;
	pi->channels = ar_alloc(a, (p->rec.nvolumes + 1) * sizeof(*pi->channels));
	for (unsigned i = 0; pi->channels && i < p->rec.nvolumes; i++) {
		Fab__ChannelInfo *ci = ar_alloc(a, sizeof(*ci));
		char *dev = ar_alloc(a, 16);

		if (!ci || !dev)
			break;
		fab__channel_info__init(ci);
		if (i < p->nchans) {
			/* as the node reported it */
			const struct ctl_chan *c = &p->chans[i];

			ci->device = (char *)c->device;
			ci->volume = (char *)c->volume;
			ci->remote = c->remote;
			ci->transport = (char *)c->transport;
			ci->vsp_node = (char *)c->vsp_node;
			ci->health = (char *)c->health;
			ci->io_errors = c->io_errors;
		} else {
			/* as placed, before the node reported */
			struct ctl_volume *v = ctl_volume_find(s, p->rec.volumes[i]);
			struct ctl_node *vn = v ? ctl_node_find(s, v->rec.node) : NULL;
			struct ctl_node *pn =
				p->node ? p->node : p->rec.node[0] ? ctl_node_find(s, p->rec.node)
								   : NULL;

			snprintf(dev, 16, "disk%u", i);
			ci->device = dev;
			ci->volume = p->rec.volumes[i];
			ci->vsp_node = v ? v->rec.node : (char *)"";
			ci->remote = pn && vn != pn;
			ci->transport = !pn	     ? (char *)""
					: !ci->remote ? (char *)"local"
					: vn	     ? (char *)common_transport(pn, vn)
						     : (char *)"";
			ci->health = (char *)"";
		}
		pi->channels[pi->n_channels++] = ci;
	}
	return pi;
}

static void reply_part(struct ctl_client *c, uint64_t id, struct ctl_part *p)
{
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionReply r = FAB__PARTITION_REPLY__INIT;

	r.partition = part_info(c->srv, &a, p);
	if (!r.partition || a.failed) {
		ctl_reply_error(c, id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = id;
		env.body_case = FAB__ENVELOPE__BODY_PARTITION_REPLY;
		env.partition_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

static void reply_volume(struct ctl_client *c, uint64_t id, struct ctl_volume *v)
{
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeReply r = FAB__VOLUME_REPLY__INIT;

	r.volume = volume_info(&a, v);
	if (!r.volume) {
		ctl_reply_error(c, id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = id;
		env.body_case = FAB__ENVELOPE__BODY_VOLUME_REPLY;
		env.volume_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

static void reply_node(struct ctl_client *c, uint64_t id, struct ctl_node *n)
{
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__NodeReply r = FAB__NODE_REPLY__INIT;

	r.node = node_info(c->srv, &a, n, true);
	if (!r.node || a.failed) {
		ctl_reply_error(c, id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = id;
		env.body_case = FAB__ENVELOPE__BODY_NODE_REPLY;
		env.node_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

static void fail(struct ctl_client *c, uint64_t id, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct ctl_client *c, uint64_t id, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl_reply_error(c, id, code, msg, 0);
}

/* Names arrive from the network: checked before any lookup. */
static bool name_arg(struct ctl_client *c, uint64_t id, const char *what, const char *name)
{
	if (!name || fab_name_valid(name)) {
		fail(c, id, -EINVAL, "invalid %s name: 1-63 of a-z 0-9 . _ - expected", what);
		return false;
	}
	return true;
}

/* ---- nodes ------------------------------------------------------------------- */

static void node_list(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__NodeListReply r = FAB__NODE_LIST_REPLY__INIT;
	size_t i = 0;

	r.nodes = ar_alloc(&a, (s->nnodes + 1) * sizeof(*r.nodes));
	for (struct ctl_node *n = s->nodes; n && r.nodes; n = n->next)
		if ((r.nodes[i] = node_info(s, &a, n, false)))
			i++;
	r.n_nodes = i;
	if (a.failed) {
		ctl_reply_error(c, req->id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = req->id;
		env.body_case = FAB__ENVELOPE__BODY_NODE_LIST_REPLY;
		env.node_list_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

static void node_cmd(struct ctl_client *c, const Fab__Envelope *req, const char *name, int drain)
{
	struct ctl_server *s = c->srv;
	struct ctl_node *n;
	int rc;

	if (!name_arg(c, req->id, "node", name))
		return;
	n = ctl_node_find(s, name);
	if (!n) {
		fail(c, req->id, -ENOENT, "node '%s' not found", name);
		return;
	}
	if (drain >= 0 && n->rec.drained != (drain == 1)) {
		rc = ctl_tx_begin(s);
		if (!rc)
			rc = ctl_store_node_set_drained(s->store, name, drain == 1);
		if (!rc) {
			ctl_event(s, "node", name, "%s by %s", drain ? "drained" : "undrained",
				  fab_conn_peer(c->conn)->name);
			rc = ctl_store_commit(s->store);
		}
		if (rc) {
			ctl_store_rollback(s->store);
			fail(c, req->id, -EIO, "controller could not store the change");
			return;
		}
		n->rec.drained = drain == 1;
	}
	/* A drain moves what runs there off it, one migration at a time;
	 * the reply comes at once (fabctl node drain --wait follows it). */
	if (drain >= 0)
		ctl_drain_set(s, n, drain == 1);
	reply_node(c, req->id, n);
}

/* ---- volumes ----------------------------------------------------------------- */

static bool offers(const struct ctl_node *n, const char *vsp)
{
	char buf[sizeof(n->rec.vsps)], *v[32];
	size_t k;

	memcpy(buf, n->rec.vsps, sizeof(buf));
	k = ctl_split_list(buf, v, 32);
	for (size_t i = 0; i < k; i++)
		if (!strcmp(v[i], vsp))
			return true;
	return false;
}

static unsigned volumes_on(struct ctl_server *s, const struct ctl_node *n)
{
	unsigned k = 0;

	for (struct ctl_volume *v = s->vols; v; v = v->next)
		k += !strcmp(v->rec.node, n->rec.name);
	return k;
}

static void volume_create(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const Fab__VolumeCreateRequest *m = req->volume_create;
	struct ctl_node *n = NULL;
	struct ctl_volume *v;
	char sz[32];
	int rc;

	if (!name_arg(c, req->id, "volume", m->name))
		return;
	if (m->size_bytes < VOLUME_MIN || m->size_bytes > VOLUME_MAX || m->size_bytes % 512) {
		fail(c, req->id, -EINVAL,
		     "volume size %llu bytes: must be 1 MiB..64 TiB and a multiple of 512",
		     (unsigned long long)m->size_bytes);
		return;
	}
	v = ctl_volume_find(s, m->name);
	if (v) {
		/* A retried create (the reply was lost) is answered, not refused. */
		if (v->rec.size_bytes == m->size_bytes &&
		    (!m->node || !m->node[0] || !strcmp(m->node, v->rec.node))) {
			reply_volume(c, req->id, v);
			return;
		}
		fail(c, req->id, -EEXIST, "volume '%s' exists (%s on %s)", m->name,
		     fab_fmt_size(v->rec.size_bytes, sz, sizeof(sz)), v->rec.node);
		return;
	}
	if (m->node && m->node[0]) {
		if (!name_arg(c, req->id, "node", m->node))
			return;
		n = ctl_node_find(s, m->node);
		if (!n) {
			fail(c, req->id, -ENOENT, "node '%s' not found", m->node);
			return;
		}
		if (n->state != NODE_UP) {
			fail(c, req->id, -EHOSTDOWN, "node '%s' is down", m->node);
			return;
		}
		if (!offers(n, "storage")) {
			fail(c, req->id, -EINVAL, "node '%s' offers no storage VSP", m->node);
			return;
		}
		if (!n->rec.data_addr[0]) {
			fail(c, req->id, -EINVAL,
			     "node '%s' has no data address: other nodes could not reach its "
			     "volumes (set data_listen)",
			     m->node);
			return;
		}
	} else {
		/* The up, undrained storage node serving the fewest volumes. */
		unsigned best = 0;

		for (struct ctl_node *k = s->nodes; k; k = k->next) {
			unsigned nv;

			if (k->state != NODE_UP || k->rec.drained || !offers(k, "storage") ||
			    !k->rec.data_addr[0])
				continue;
			nv = volumes_on(s, k);
			if (!n || nv < best) {
				n = k;
				best = nv;
			}
		}
		if (!n) {
			fail(c, req->id, -ENOSPC,
			     "no storage node is up (one that offers storage, has a data "
			     "address and is not drained)");
			return;
		}
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		fail(c, req->id, -ENOMEM, "out of memory");
		return;
	}
	snprintf(v->rec.name, sizeof(v->rec.name), "%s", m->name);
	snprintf(v->rec.node, sizeof(v->rec.node), "%s", n->rec.name);
	v->rec.size_bytes = m->size_bytes;
	snprintf(v->rec.state, sizeof(v->rec.state), "creating");
	v->rec.created_unix_ms = fab_unix_ms();
	rc = ctl_tx_begin(s);
	if (!rc)
		rc = ctl_store_volume_insert(s->store, &v->rec);
	if (!rc) {
		ctl_event(s, "volume", v->rec.name, "created on %s (%s) by %s", n->rec.name,
			  fab_fmt_size(v->rec.size_bytes, sz, sizeof(sz)),
			  fab_conn_peer(c->conn)->name);
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_store_rollback(s->store);
		free(v);
		fail(c, req->id, rc == -EEXIST ? -EEXIST : -EIO,
		     "controller could not store the volume");
		return;
	}
	ctl_volume_link(s, v);
	ctl_send_create_volume(s, v);
	reply_volume(c, req->id, v);
}

static void volume_delete(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const char *name = req->volume_delete->name;
	struct ctl_volume *v;
	struct ctl_node *n;
	int rc;

	if (!name_arg(c, req->id, "volume", name))
		return;
	v = ctl_volume_find(s, name);
	if (!v) {
		fail(c, req->id, -ENOENT, "volume '%s' not found", name);
		return;
	}
	if (v->rec.attached_to[0]) {
		fail(c, req->id, -EBUSY, "volume '%s' is attached to partition '%s'", name,
		     v->rec.attached_to);
		return;
	}
	n = ctl_node_find(s, v->rec.node);
	rc = ctl_tx_begin(s);
	if (!rc && !n) {
		/* Its node is gone from the cluster: nothing to delete there. */
		rc = ctl_store_volume_delete(s->store, name);
		if (!rc)
			ctl_event(s, "volume", name, "deleted (its node %s is unknown)",
				  v->rec.node);
	} else if (!rc) {
		snprintf(v->rec.state, sizeof(v->rec.state), "deleting");
		rc = ctl_store_volume_update(s->store, &v->rec);
		if (!rc)
			ctl_event(s, "volume", name, "delete requested by %s",
				  fab_conn_peer(c->conn)->name);
	}
	if (!rc)
		rc = ctl_store_commit(s->store);
	if (rc) {
		ctl_store_rollback(s->store);
		fail(c, req->id, rc == -EBUSY ? -EBUSY : -EIO,
		     "controller could not store the change");
		return;
	}
	reply_volume(c, req->id, v);
	if (!n) {
		ctl_volume_unlink(s, v);
		free(v);
	} else {
		ctl_send_delete_volume(s, v);
	}
}

static void volume_show(struct ctl_client *c, const Fab__Envelope *req)
{
	const char *name = req->volume_show->name;
	struct ctl_volume *v;

	if (!name_arg(c, req->id, "volume", name))
		return;
	v = ctl_volume_find(c->srv, name);
	if (!v)
		fail(c, req->id, -ENOENT, "volume '%s' not found", name);
	else
		reply_volume(c, req->id, v);
}

static int vol_cmp(const void *a, const void *b)
{
	return strcmp((*(Fab__VolumeInfo *const *)a)->name, (*(Fab__VolumeInfo *const *)b)->name);
}

static void volume_list(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeListReply r = FAB__VOLUME_LIST_REPLY__INIT;
	size_t i = 0;

	r.volumes = ar_alloc(&a, (s->nvols + 1) * sizeof(*r.volumes));
	for (struct ctl_volume *v = s->vols; v && r.volumes; v = v->next)
		if ((r.volumes[i] = volume_info(&a, v)))
			i++;
	r.n_volumes = i;
	if (i)
		qsort(r.volumes, i, sizeof(*r.volumes), vol_cmp);
	if (a.failed) {
		ctl_reply_error(c, req->id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = req->id;
		env.body_case = FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY;
		env.volume_list_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

/* ---- partitions ----------------------------------------------------------------- */

static bool image_name_ok(const char *s)
{
	size_t n = 0;

	if (!s || !*s || *s == '.')
		return false;
	for (; *s; s++, n++) {
		if (n >= CTL_IMAGE_MAX - 1)
			return false;
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	}
	return true;
}

/* Checks a spec and turns it into a record. Returns 0 or a negative errno
 * with the reason in err. */
static int spec_to_rec(struct ctl_server *s, const Fab__PartitionSpec *sp, struct ctl_part_rec *r,
		       char *err, size_t errlen)
{
	size_t total = 0;

	memset(r, 0, sizeof(*r));
	if (!sp) {
		snprintf(err, errlen, "no partition spec");
		return -EINVAL;
	}
	if (!sp->name || fab_name_valid(sp->name)) {
		snprintf(err, errlen, "invalid partition name: 1-63 of a-z 0-9 . _ - expected");
		return -EINVAL;
	}
	snprintf(r->name, sizeof(r->name), "%s", sp->name);
	if (!image_name_ok(sp->image)) {
		snprintf(err, errlen,
			 "invalid image name: 1-127 of A-Z a-z 0-9 . _ -, not starting with '.'");
		return -EINVAL;
	}
	snprintf(r->image, sizeof(r->image), "%s", sp->image);
	r->vcpus = sp->vcpus ? sp->vcpus : 1;
	if (r->vcpus > VCPUS_MAX) {
		snprintf(err, errlen, "vcpus %u: 1..%d", r->vcpus, VCPUS_MAX);
		return -EINVAL;
	}
	r->memory_bytes = sp->memory_bytes ? sp->memory_bytes : RAM_DEFAULT;
	if (r->memory_bytes < RAM_MIN || r->memory_bytes > RAM_MAX ||
	    r->memory_bytes % RAM_ALIGN) {
		snprintf(err, errlen, "memory %llu bytes: 4 MiB..3 GiB in steps of 2 MiB",
			 (unsigned long long)r->memory_bytes);
		return -EINVAL;
	}
	if (sp->group && sp->group[0]) {
		if (fab_name_valid(sp->group)) {
			snprintf(err, errlen, "invalid group name");
			return -EINVAL;
		}
		snprintf(r->group, sizeof(r->group), "%s", sp->group);
	}
	if (sp->restart != FAB__RESTART_POLICY__RESTART_POLICY_NEVER &&
	    sp->restart != FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE &&
	    sp->restart != FAB__RESTART_POLICY__RESTART_POLICY_ALWAYS) {
		snprintf(err, errlen, "unknown restart policy %d", (int)sp->restart);
		return -EINVAL;
	}
	r->restart = sp->restart;
	if (sp->n_args > CTL_MAX_ARGS) {
		snprintf(err, errlen, "at most %d guest arguments", CTL_MAX_ARGS);
		return -EINVAL;
	}
	for (size_t i = 0; i < sp->n_args; i++) {
		size_t len = sp->args[i] ? strlen(sp->args[i]) : 0;

		total += len + 1;
		if (total > sizeof(r->args) || total + strlen(sp->image) + 1 > GUEST_ARGS_BYTES) {
			snprintf(err, errlen, "guest arguments too long");
			return -EINVAL;
		}
		memcpy(r->args + r->args_len, sp->args[i] ? sp->args[i] : "", len + 1);
		r->args_len += len + 1;
		r->nargs++;
	}
	if (sp->n_volumes > CTL_MAX_VOLUMES) {
		snprintf(err, errlen, "at most %d volumes", CTL_MAX_VOLUMES);
		return -EINVAL;
	}
	for (size_t i = 0; i < sp->n_volumes; i++) {
		const char *vn = sp->volumes[i];
		struct ctl_volume *v;

		if (!vn || fab_name_valid(vn)) {
			snprintf(err, errlen, "invalid volume name");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(vn, sp->volumes[j])) {
				snprintf(err, errlen, "volume '%s' listed twice", vn);
				return -EINVAL;
			}
		}
		v = ctl_volume_find(s, vn);
		if (!v) {
			snprintf(err, errlen, "volume '%s' not found", vn);
			return -ENOENT;
		}
		if (strcmp(v->rec.state, "ready")) {
			snprintf(err, errlen, "volume '%s' is %s, not ready", vn, v->rec.state);
			return -EBUSY;
		}
		if (v->rec.attached_to[0] && strcmp(v->rec.attached_to, r->name)) {
			snprintf(err, errlen, "volume '%s' is attached to partition '%s'", vn,
				 v->rec.attached_to);
			return -EBUSY;
		}
		snprintf(r->volumes[i], sizeof(r->volumes[i]), "%s", vn);
		r->nvolumes++;
	}
	return 0;
}

static bool same_spec(const struct ctl_part_rec *a, const struct ctl_part_rec *b)
{
	if (strcmp(a->image, b->image) || a->vcpus != b->vcpus ||
	    a->memory_bytes != b->memory_bytes || strcmp(a->group, b->group) ||
	    a->restart != b->restart || a->nargs != b->nargs || a->args_len != b->args_len ||
	    memcmp(a->args, b->args, a->args_len) || a->nvolumes != b->nvolumes)
		return false;
	for (unsigned i = 0; i < a->nvolumes; i++)
		if (strcmp(a->volumes[i], b->volumes[i]))
			return false;
	return true;
}

static void attach_volumes(struct ctl_server *s, struct ctl_part *p, bool on)
{
	for (unsigned i = 0; i < p->rec.nvolumes; i++) {
		struct ctl_volume *v = ctl_volume_find(s, p->rec.volumes[i]);

		if (v)
			snprintf(v->rec.attached_to, sizeof(v->rec.attached_to), "%s",
				 on ? p->rec.name : "");
	}
}

static void partition_create(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const Fab__PartitionSpec *sp = req->partition_create->spec;
	struct ctl_part *p, *old;
	char err[1024];
	int rc;

	p = calloc(1, sizeof(*p));
	if (!p) {
		fail(c, req->id, -ENOMEM, "out of memory");
		return;
	}
	rc = spec_to_rec(s, sp, &p->rec, err, sizeof(err));
	old = ctl_part_find(s, p->rec.name[0] ? p->rec.name : NULL);
	if (old) {
		/* A retried create (its reply was lost, e.g. the controller
		 * restarted) gets the partition it made. */
		if ((rc == 0 || rc == -EBUSY) && same_spec(&old->rec, &p->rec))
			reply_part(c, req->id, old);
		else
			fail(c, req->id, -EEXIST, "partition '%s' exists", p->rec.name);
		free(p);
		return;
	}
	if (rc) {
		fail(c, req->id, rc, "%s", err);
		free(p);
		return;
	}
	p->rec.created_unix_ms = fab_unix_ms();
	p->rec.desired_running = !sp->no_start;
	ctl_part_set_state(p, sp->no_start ? FAB__PARTITION_STATE__PARTITION_STATE_STOPPED
					   : FAB__PARTITION_STATE__PARTITION_STATE_PENDING,
			   sp->no_start ? "created stopped" : "");
	rc = ctl_tx_begin(s);
	if (rc) {
		free(p);
		fail(c, req->id, -EIO, "controller could not store the partition");
		return;
	}
	rc = ctl_store_part_insert(s->store, &p->rec);
	if (rc) {
		ctl_store_rollback(s->store);
		free(p);
		fail(c, req->id, rc == -EEXIST || rc == -EBUSY || rc == -ENOENT ? rc : -EIO,
		     "controller could not store the partition (%s)", strerror(-rc));
		return;
	}
	if (p->rec.desired_running) {
		rc = ctl_place(s, p, "create", NULL, err, sizeof(err));
		if (rc) {
			ctl_part_unbind(s, p);
			ctl_store_rollback(s->store);
			free(p);
			if (rc == -ENOSPC)
				fail(c, req->id, -ENOSPC, "%s", err);
			else
				fail(c, req->id, rc, "placement failed: %s", strerror(-rc));
			return;
		}
		rc = ctl_part_save(s, p);
	}
	if (!rc) {
		ctl_event(s, "partition", p->rec.name, "created by %s%s%s",
			  fab_conn_peer(c->conn)->name, p->node ? ", placed on " : "",
			  p->node ? p->node->rec.name : "");
		ctl_crash_point("partition-create-before-commit");
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_part_unbind(s, p);
		ctl_store_rollback(s->store);
		free(p);
		fail(c, req->id, -EIO, "controller could not store the partition");
		return;
	}
	ctl_crash_point("partition-create-after-commit");
	ctl_part_link(s, p);
	attach_volumes(s, p, true);
	ctl_part_dispatch(s, p);
	reply_part(c, req->id, p);
}

static struct ctl_part *part_arg(struct ctl_client *c, uint64_t id, const char *name)
{
	struct ctl_part *p;

	if (!name_arg(c, id, "partition", name))
		return NULL;
	p = ctl_part_find(c->srv, name);
	if (!p)
		fail(c, id, -ENOENT, "partition '%s' not found", name);
	return p;
}

/* Before a stop or delete: a migration not yet committed is aborted (the
 * source keeps the partition, then stops it); a committed one is refused
 * for the moment it takes to complete. false after a reply. */
static bool end_migration(struct ctl_client *c, uint64_t id, struct ctl_part *p, const char *what)
{
	char why[CTL_REASON_MAX];

	if (!p->mig)
		return true;
	if (p->mig->rec.phase >= CTL_MIG_COMMITTED) {
		fail(c, id, -EBUSY,
		     "partition '%s' is completing its migration %llu to %s; %s it once that "
		     "is done",
		     p->rec.name, (unsigned long long)p->mig->rec.id, p->mig->rec.target, what);
		return false;
	}
	snprintf(why, sizeof(why), "%s requested by %s", what, fab_conn_peer(c->conn)->name);
	ctl_mig_abort(c->srv, p->mig, why);
	return true;
}

static void partition_start(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct ctl_part *p = part_arg(c, req->id, req->partition_start->name);
	struct ctl_part_rec saved;
	char err[1024];
	int rc;

	if (!p)
		return;
	if (p->rec.desired_running) {
		reply_part(c, req->id, p); /* already running or being placed */
		return;
	}
	if (p->node) {
		fail(c, req->id, -EBUSY, "partition '%s' is still stopping on %s", p->rec.name,
		     p->node->rec.name);
		return;
	}
	saved = p->rec;
	p->rec.desired_running = true;
	p->attempts = 0;
	rc = ctl_tx_begin(s);
	if (!rc)
		rc = ctl_place(s, p, "start", NULL, err, sizeof(err));
	if (!rc)
		rc = ctl_part_save(s, p);
	if (!rc) {
		ctl_event(s, "partition", p->rec.name, "started by %s, placed on %s",
			  fab_conn_peer(c->conn)->name, p->node->rec.name);
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_part_unbind(s, p);
		ctl_store_rollback(s->store);
		p->rec = saved;
		if (rc == -ENOSPC)
			fail(c, req->id, rc, "%s", err);
		else
			fail(c, req->id, -EIO, "controller could not store the change");
		return;
	}
	ctl_part_dispatch(s, p);
	reply_part(c, req->id, p);
}

static void partition_stop(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const Fab__PartitionStopRequest *m = req->partition_stop;
	struct ctl_part *p = part_arg(c, req->id, m->name);
	uint32_t timeout;
	int rc;

	if (!p)
		return;
	if (!end_migration(c, req->id, p, "stop"))
		return;
	timeout = m->force ? 0 : m->timeout_ms ? m->timeout_ms : s->stop_timeout_ms;
	p->rec.desired_running = false;
	rc = ctl_tx_begin(s);
	if (p->node) {
		char why[64];

		snprintf(why, sizeof(why), m->force ? "forced stop requested"
						    : "stop requested (graceful for %u ms)",
			 timeout);
		ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_STOPPING, why);
	} else if (p->rec.state == FAB__PARTITION_STATE__PARTITION_STATE_PENDING) {
		ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_STOPPED,
				   "stopped before it was placed");
	}
	if (!rc)
		rc = ctl_part_save(s, p);
	if (!rc) {
		ctl_event(s, "partition", p->rec.name, "%s by %s",
			  m->force ? "forced stop" : "stop", fab_conn_peer(c->conn)->name);
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_store_rollback(s->store);
		fail(c, req->id, -EIO, "controller could not store the change");
		return;
	}
	ctl_send_stop(s, p, timeout);
	reply_part(c, req->id, p);
}

static void partition_delete(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct ctl_part *p = part_arg(c, req->id, req->partition_delete->name);
	struct ctl_node *n;
	uint64_t epoch;
	int rc;

	if (!p)
		return;
	if (!end_migration(c, req->id, p, "delete"))
		return;
	rc = ctl_tx_begin(s);
	if (!rc)
		rc = ctl_store_part_delete(s->store, p->rec.name);
	if (!rc) {
		ctl_event(s, "partition", p->rec.name, "deleted by %s%s%s",
			  fab_conn_peer(c->conn)->name, p->node ? " from " : "",
			  p->node ? p->node->rec.name : "");
		rc = ctl_store_commit(s->store);
	}
	if (rc) {
		ctl_store_rollback(s->store);
		fail(c, req->id, -EIO, "controller could not store the change");
		return;
	}
	n = p->node;
	epoch = p->rec.epoch;
	ctl_part_unbind(s, p);
	ctl_part_set_state(p, FAB__PARTITION_STATE__PARTITION_STATE_STOPPED, "deleted");
	p->rec.desired_running = false;
	reply_part(c, req->id, p);
	if (n)
		ctl_send_delete(s, n, p->rec.name, epoch);
	ctl_part_fence(s, p);
	attach_volumes(s, p, false);
	ctl_part_unlink(s, p);
	free(p->con);
	free(p);
}

static void partition_show(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_part *p = part_arg(c, req->id, req->partition_show->name);

	if (p)
		reply_part(c, req->id, p);
}

static int part_cmp(const void *a, const void *b)
{
	return strcmp((*(Fab__PartitionInfo *const *)a)->spec->name,
		      (*(Fab__PartitionInfo *const *)b)->spec->name);
}

static void partition_list(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__PartitionListReply r = FAB__PARTITION_LIST_REPLY__INIT;
	size_t i = 0;

	r.partitions = ar_alloc(&a, (s->nparts + 1) * sizeof(*r.partitions));
	for (struct ctl_part *p = s->parts; p && r.partitions; p = p->next)
		if ((r.partitions[i] = part_info(s, &a, p)))
			i++;
	r.n_partitions = i;
	if (i)
		qsort(r.partitions, i, sizeof(*r.partitions), part_cmp);
	if (a.failed) {
		ctl_reply_error(c, req->id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = req->id;
		env.body_case = FAB__ENVELOPE__BODY_PARTITION_LIST_REPLY;
		env.partition_list_reply = &r;
		if (fab__envelope__get_packed_size(&env) > CTL_MAX_REPLY)
			ctl_reply_error(c, req->id, -EMSGSIZE,
					"too many partitions for one reply", 0);
		else
			ctl_send_env(c, &env);
	}
	ar_free(&a);
}

/* Splits stored verdict lines (modified in place) into pl->verdicts,
 * which has room for one per line. */
static void parse_verdicts(struct arena *a, char *verdicts, Fab__Placement *pl)
{
	for (char *line = verdicts, *nl; line && *line && pl->verdicts; line = nl + 1) {
		Fab__NodeVerdict *v;
		char *f[4];
		int k = 0;

		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		f[k++] = line;
		for (char *t = line; *t && k < 4; t++) {
			if (*t == '\t') {
				*t = '\0';
				f[k++] = t + 1;
			}
		}
		if (k < 4 || !(v = ar_alloc(a, sizeof(*v))))
			continue;
		fab__node_verdict__init(v);
		v->node = f[0];
		v->feasible = f[1][0] == '1';
		v->score = strtod(f[2], NULL);
		v->reason = f[3];
		pl->verdicts[pl->n_verdicts++] = v;
	}
}

static void partition_explain(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	struct ctl_part *p = part_arg(c, req->id, req->partition_explain->name);
	struct ctl_placement_rec pr;
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__Placement pl = FAB__PLACEMENT__INIT;
	size_t nv = 0;
	int rc;

	if (!p)
		return;
	rc = ctl_store_placement_last(s->store, p->rec.name, &pr);
	if (rc) {
		fail(c, req->id, rc == -ENOENT ? -ENOENT : -EIO,
		     rc == -ENOENT ? "partition '%s' has not been placed yet"
				   : "cannot read the placement of '%s'",
		     p->rec.name);
		return;
	}
	pl.partition = pr.partition;
	pl.node = pr.node;
	pl.policy = pr.policy;
	pl.epoch = pr.epoch;
	pl.trigger = pr.trigger;
	pl.decided_unix_ms = pr.decided_unix_ms;
	/* lines of "NODE\tFEASIBLE\tSCORE\tREASON" */
	for (const char *q = pr.verdicts; q && *q; q++)
		nv += *q == '\n';
	pl.verdicts = ar_alloc(&a, (nv + 1) * sizeof(*pl.verdicts));
	parse_verdicts(&a, pr.verdicts, &pl);
	env.id = req->id;
	env.body_case = FAB__ENVELOPE__BODY_PLACEMENT;
	env.placement = &pl;
	if (a.failed)
		ctl_reply_error(c, req->id, -ENOMEM, "out of memory", 0);
	else
		ctl_send_env(c, &env);
	ar_free(&a);
	ctl_placement_rec_free(&pr);
}

static void partition_console(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_part *p = part_arg(c, req->id, req->partition_console->name);
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__ConsoleReply r = FAB__CONSOLE_REPLY__INIT;
	uint8_t *buf;

	if (!p)
		return;
	buf = malloc(p->con_len ? p->con_len : 1);
	if (!buf) {
		fail(c, req->id, -ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < p->con_len; i++)
		buf[i] = (uint8_t)p->con[(p->con_head + i) % CTL_CONSOLE_MAX];
	r.data.data = buf;
	r.data.len = p->con_len;
	r.truncated = p->con_dropped;
	env.id = req->id;
	env.body_case = FAB__ENVELOPE__BODY_CONSOLE_REPLY;
	env.console_reply = &r;
	ctl_send_env(c, &env);
	free(buf);
}

/* ---- migrations ------------------------------------------------------------------ */

static void reply_migration(struct ctl_client *c, uint64_t id, const struct ctl_migration_rec *r,
			    const struct ctl_mig *m, const struct ctl_placement_rec *pr)
{
	struct arena a = { 0 };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationReply rep = FAB__MIGRATION_REPLY__INIT;
	Fab__Placement pl = FAB__PLACEMENT__INIT;

	rep.migration = mig_info(&a, r, m);
	if (pr) {
		char *verdicts = ar_strdup(&a, pr->verdicts ? pr->verdicts : "");
		size_t nv = 0;

		pl.partition = (char *)pr->partition;
		pl.node = (char *)pr->node;
		pl.policy = (char *)pr->policy;
		pl.epoch = pr->epoch;
		pl.trigger = (char *)pr->trigger;
		pl.decided_unix_ms = pr->decided_unix_ms;
		for (const char *q = verdicts; q && *q; q++)
			nv += *q == '\n';
		pl.verdicts = ar_alloc(&a, (nv + 1) * sizeof(*pl.verdicts));
		parse_verdicts(&a, verdicts, &pl);
		rep.placement = &pl;
	}
	if (!rep.migration || a.failed) {
		ctl_reply_error(c, id, -ENOMEM, "out of memory", 0);
	} else {
		env.id = id;
		env.body_case = FAB__ENVELOPE__BODY_MIGRATION_REPLY;
		env.migration_reply = &rep;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

static void partition_migrate(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_server *s = c->srv;
	const Fab__PartitionMigrateRequest *m = req->partition_migrate;
	struct ctl_part *p = part_arg(c, req->id, m->name);
	struct ctl_placement_rec pr;
	struct ctl_mig *mig = NULL;
	char trigger[96], err[1024];
	struct ctl_migrate_args a = {
		.to = m->to,
		.downtime_ms = m->downtime_ms,
		.max_rounds = m->max_rounds,
		.throttle = m->throttle,
		.trigger = trigger,
	};
	int rc;

	if (!p)
		return;
	if (m->to && m->to[0] && !name_arg(c, req->id, "node", m->to))
		return;
	snprintf(trigger, sizeof(trigger), "operator %s", fab_conn_peer(c->conn)->name);
	rc = ctl_mig_start(s, p, &a, &pr, &mig, err, sizeof(err));
	if (rc) {
		ctl_placement_rec_free(&pr);
		fail(c, req->id, rc, "%s", err);
		return;
	}
	reply_migration(c, req->id, &mig->rec, mig, &pr);
	ctl_placement_rec_free(&pr);
}

/* The migration a request names: by id, else the partition's newest.
 * Returns 0 with *rec (and *m when it is in progress), or an error sent. */
static int mig_arg(struct ctl_client *c, uint64_t id, const Fab__MigrationRequest *r,
		   struct ctl_migration_rec *rec, struct ctl_mig **m)
{
	struct ctl_server *s = c->srv;
	bool named = r->partition && r->partition[0];
	int rc;

	*m = NULL;
	if (named && !name_arg(c, id, "partition", r->partition))
		return -EINVAL;
	if (!named && !r->id) {
		fail(c, id, -EINVAL, "which migration? a partition name or an id");
		return -EINVAL;
	}
	if (r->id) {
		*m = ctl_mig_find(s, r->id);
		rc = *m ? 0 : ctl_store_migration_get(s->store, r->id, rec);
		if (*m)
			*rec = (*m)->rec;
		if (!rc && named && strcmp(rec->partition, r->partition))
			rc = -ENOENT;
		if (rc) {
			fail(c, id, rc == -ENOENT ? -ENOENT : -EIO, "migration %llu%s%s not found",
			     (unsigned long long)r->id, named ? " of partition " : "",
			     named ? r->partition : "");
			return rc;
		}
		return 0;
	}
	{
		struct ctl_part *p = ctl_part_find(s, r->partition);

		if (p && p->mig) {
			*m = p->mig;
			*rec = p->mig->rec;
			return 0;
		}
	}
	rc = ctl_store_migration_last(s->store, r->partition, rec);
	if (rc) {
		fail(c, id, rc == -ENOENT ? -ENOENT : -EIO,
		     rc == -ENOENT ? "partition '%s' has no migration"
				   : "cannot read the migrations of '%s'",
		     r->partition);
		return rc;
	}
	return 0;
}

static void migration_show(struct ctl_client *c, const Fab__Envelope *req)
{
	struct ctl_migration_rec rec;
	struct ctl_mig *m;

	if (mig_arg(c, req->id, req->migration_show, &rec, &m))
		return;
	reply_migration(c, req->id, &rec, m, NULL);
}

static void migration_cancel(struct ctl_client *c, const Fab__Envelope *req)
{
	const Fab__MigrationRequest *r = req->migration_cancel;
	struct ctl_migration_rec rec;
	struct ctl_mig *m;
	char why[CTL_REASON_MAX];

	if (mig_arg(c, req->id, r, &rec, &m))
		return;
	if (!m) {
		fail(c, req->id, -ENOENT, "migration %llu of '%s' is not in progress (it is %s)",
		     (unsigned long long)rec.id, rec.partition,
		     rec.phase == CTL_MIG_DONE ? "done" : "aborted");
		return;
	}
	if (m->rec.phase >= CTL_MIG_COMMITTED) {
		fail(c, req->id, -EBUSY,
		     "migration %llu of '%s' is committed: the partition runs on %s now and "
		     "the migration completes",
		     (unsigned long long)rec.id, rec.partition, rec.target);
		return;
	}
	snprintf(why, sizeof(why), "cancelled by %s", fab_conn_peer(c->conn)->name);
	ctl_mig_abort(c->srv, m, why);
	if (ctl_store_migration_get(c->srv->store, rec.id, &rec)) {
		rec.phase = CTL_MIG_ABORTED;
		snprintf(rec.error, sizeof(rec.error), "%s", why);
	}
	reply_migration(c, req->id, &rec, NULL, NULL);
}

struct mig_collect {
	struct arena *a;
	struct ctl_server *s;
	Fab__MigrationInfo **v;
	size_t n, cap;
};

static int collect_mig(const struct ctl_migration_rec *r, void *arg)
{
	struct mig_collect *col = arg;
	struct ctl_mig *m = ctl_mig_find(col->s, r->id);
	Fab__MigrationInfo *mi;

	if (col->n == col->cap) {
		size_t cap = col->cap ? col->cap * 2 : 64;
		Fab__MigrationInfo **nv = ar_alloc(col->a, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		if (col->n)
			memcpy(nv, col->v, col->n * sizeof(*nv));
		col->v = nv;
		col->cap = cap;
	}
	mi = mig_info(col->a, m ? &m->rec : r, m);
	if (!mi)
		return -ENOMEM;
	col->v[col->n++] = mi;
	return 0;
}

static void migration_list(struct ctl_client *c, const Fab__Envelope *req)
{
	struct arena a = { 0 };
	struct mig_collect col = { .a = &a, .s = c->srv };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__MigrationListReply r = FAB__MIGRATION_LIST_REPLY__INIT;
	int rc;

	rc = ctl_store_migration_foreach(c->srv->store, NULL, req->migration_list->active_only,
					 collect_mig, &col);
	if (rc || a.failed) {
		fail(c, req->id, rc == -ENOMEM || a.failed ? -ENOMEM : -EIO,
		     "cannot read the migrations");
	} else {
		r.migrations = col.v;
		r.n_migrations = col.n;
		env.id = req->id;
		env.body_case = FAB__ENVELOPE__BODY_MIGRATION_LIST_REPLY;
		env.migration_list_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

/* ---- events --------------------------------------------------------------------- */

struct ev_collect {
	struct arena *a;
	Fab__EventInfo **v;
	size_t n, cap;
};

static int collect_event(const struct ctl_event_rec *e, void *arg)
{
	struct ev_collect *c = arg;
	Fab__EventInfo *ei;

	if (c->n == c->cap)
		return 1;
	ei = ar_alloc(c->a, sizeof(*ei));
	if (!ei)
		return -ENOMEM;
	fab__event_info__init(ei);
	ei->id = e->id;
	ei->unix_ms = e->unix_ms;
	ei->kind = ar_strdup(c->a, e->kind);
	ei->subject = ar_strdup(c->a, e->subject);
	ei->message = ar_strdup(c->a, e->message);
	if (!ei->kind || !ei->subject || !ei->message)
		return -ENOMEM;
	c->v[c->n++] = ei;
	return 0;
}

static void event_list(struct ctl_client *c, const Fab__Envelope *req)
{
	const Fab__EventListRequest *m = req->event_list;
	struct arena a = { 0 };
	struct ev_collect col = { .a = &a };
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__EventListReply r = FAB__EVENT_LIST_REPLY__INIT;
	unsigned limit = m->limit ? m->limit : 50;
	int64_t after = m->after_id;
	int rc = 0;

	if (limit > 1000 || after < 0) {
		fail(c, req->id, -EINVAL, "events: limit 1..1000 and a non-negative id");
		return;
	}
	if (!after) {
		int64_t last = 0;

		rc = ctl_store_event_last_id(c->srv->store, &last);
		after = last > (int64_t)limit ? last - (int64_t)limit : 0;
	}
	col.cap = limit;
	col.v = ar_alloc(&a, limit * sizeof(*col.v));
	if (!rc && col.v)
		rc = ctl_store_event_foreach(c->srv->store, after, limit, collect_event, &col);
	if (rc < 0 || a.failed) {
		fail(c, req->id, rc == -ENOMEM || a.failed ? -ENOMEM : -EIO,
		     "cannot read the event log");
	} else {
		r.events = col.v;
		r.n_events = col.n;
		env.id = req->id;
		env.body_case = FAB__ENVELOPE__BODY_EVENT_LIST_REPLY;
		env.event_list_reply = &r;
		ctl_send_env(c, &env);
	}
	ar_free(&a);
}

/* ---- dispatch ----------------------------------------------------------------- */

int ctl_api_dispatch(struct ctl_client *c, const Fab__Envelope *env)
{
	const struct fab_ident *peer = fab_conn_peer(c->conn);

	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_NODE_LIST:
	case FAB__ENVELOPE__BODY_NODE_SHOW:
	case FAB__ENVELOPE__BODY_NODE_DRAIN:
	case FAB__ENVELOPE__BODY_NODE_UNDRAIN:
	case FAB__ENVELOPE__BODY_VOLUME_CREATE:
	case FAB__ENVELOPE__BODY_VOLUME_DELETE:
	case FAB__ENVELOPE__BODY_VOLUME_SHOW:
	case FAB__ENVELOPE__BODY_VOLUME_LIST:
	case FAB__ENVELOPE__BODY_PARTITION_CREATE:
	case FAB__ENVELOPE__BODY_PARTITION_START:
	case FAB__ENVELOPE__BODY_PARTITION_STOP:
	case FAB__ENVELOPE__BODY_PARTITION_DELETE:
	case FAB__ENVELOPE__BODY_PARTITION_SHOW:
	case FAB__ENVELOPE__BODY_PARTITION_LIST:
	case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
	case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
	case FAB__ENVELOPE__BODY_EVENT_LIST:
	case FAB__ENVELOPE__BODY_PARTITION_MIGRATE:
	case FAB__ENVELOPE__BODY_MIGRATION_SHOW:
	case FAB__ENVELOPE__BODY_MIGRATION_CANCEL:
	case FAB__ENVELOPE__BODY_MIGRATION_LIST:
		break;
	default:
		return 0;
	}
	if (peer->role != FAB_ROLE_ADMIN) {
		fab_warn("client %s: %s '%s' called an admin request (body %d); refused",
			 fab_conn_peer_addr(c->conn), fab_role_name(peer->role), peer->name,
			 (int)env->body_case);
		ctl_reply_error(c, env->id, -EACCES,
				"permission denied: this request needs an admin certificate", 1);
		return 1;
	}
	switch (env->body_case) {
	case FAB__ENVELOPE__BODY_NODE_LIST:
		node_list(c, env);
		break;
	case FAB__ENVELOPE__BODY_NODE_SHOW:
		node_cmd(c, env, env->node_show->name, -1);
		break;
	case FAB__ENVELOPE__BODY_NODE_DRAIN:
		node_cmd(c, env, env->node_drain->name, 1);
		break;
	case FAB__ENVELOPE__BODY_NODE_UNDRAIN:
		node_cmd(c, env, env->node_undrain->name, 0);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_CREATE:
		volume_create(c, env);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_DELETE:
		volume_delete(c, env);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_SHOW:
		volume_show(c, env);
		break;
	case FAB__ENVELOPE__BODY_VOLUME_LIST:
		volume_list(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_CREATE:
		partition_create(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_START:
		partition_start(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_STOP:
		partition_stop(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_DELETE:
		partition_delete(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_SHOW:
		partition_show(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_LIST:
		partition_list(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
		partition_explain(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
		partition_console(c, env);
		break;
	case FAB__ENVELOPE__BODY_EVENT_LIST:
		event_list(c, env);
		break;
	case FAB__ENVELOPE__BODY_PARTITION_MIGRATE:
		partition_migrate(c, env);
		break;
	case FAB__ENVELOPE__BODY_MIGRATION_SHOW:
		migration_show(c, env);
		break;
	case FAB__ENVELOPE__BODY_MIGRATION_CANCEL:
		migration_cancel(c, env);
		break;
	case FAB__ENVELOPE__BODY_MIGRATION_LIST:
		migration_list(c, env);
		break;
	default:
		return 0;
	}
	return 1;
}
