// SPDX-License-Identifier: MIT
/*
 * The scheduler (contract in sched.h).
 *
 * Score of a node that passes every filter, in [0, 1.5]:
 *
 *   vshare = (vcpus - vcpus_used - req.vcpus) / vcpus
 *   mshare = (memory_bytes - memory_used - req.memory_bytes) / memory_bytes
 *   share  = (vshare + mshare) / 2          free share left after placement
 *   policy = share        (spread)
 *          = 1 - share    (pack)
 *   N      = volumes whose VSP node is named (NULL or "" entries do not count;
 *            a name repeated for several volumes counts once per volume)
 *   local  = volumes served by this node itself (a local channel)
 *   rdma   = volumes served by another node, both nodes listing rdma
 *   score  = policy + 0.5 * local / N + 0.1 * rdma / N   (last terms 0 if N = 0)
 *
 * The rdma term is taken over all N volumes rather than over the remote ones
 * only, so that bringing any one volume closer (tcp -> rdma -> local) never
 * lowers the score; over the remote ones alone, moving the only rdma volume
 * local could. The policy term spans [0, 1], the nearness terms together at
 * most 0.5 (every volume local): nearness decides between nodes of similar
 * load, not against a much emptier node.
 *
 * Ties: scores are compared at a resolution of 1e-6 (so two shares equal on
 * paper but a rounding apart still tie), then the lower name by strcmp
 * wins. That is a total order, so the choice does not depend on the order of
 * the nodes.
 *
 * Speed: one call judges every node, and the feasible ones all get a reason.
 * Reasons are assembled by hand rather than with snprintf (which would
 * dominate the call at 1,000 nodes), and the request's VSP nodes are looked
 * up once per call, not once per candidate.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sched.h"

int ctl_sched_policy_parse(const char *s, enum ctl_sched_policy *out)
{
	if (!s || !out)
		return -EINVAL;
	if (!strcmp(s, "spread"))
		*out = CTL_SCHED_SPREAD;
	else if (!strcmp(s, "pack"))
		*out = CTL_SCHED_PACK;
	else
		return -EINVAL;
	return 0;
}

const char *ctl_sched_policy_name(enum ctl_sched_policy p)
{
	switch (p) {
	case CTL_SCHED_SPREAD:
		return "spread";
	case CTL_SCHED_PACK:
		return "pack";
	}
	return "?";
}

/* ---- bounded string building (no snprintf on the hot path) -------------- */

struct sbuf {
	char *buf;
	size_t cap; /* >= 1, room for the NUL included */
	size_t len;
	bool over; /* something did not fit */
};

static void sb_init(struct sbuf *b, char *buf, size_t cap)
{
	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->over = false;
	buf[0] = '\0';
}

static void sb_mem(struct sbuf *b, const char *s, size_t n)
{
	size_t room = b->cap - 1 - b->len;

	if (n > room) {
		n = room;
		b->over = true;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_mem(b, s, strlen(s));
}

/* For a string literal: its length is known at compile time. */
#define sb_lit(b, s) sb_mem((b), "" s, sizeof(s) - 1)

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);

	/* Most numbers here are counts and percentages: one or two digits. */
	if (v < 10) {
		tmp[0] = (char)('0' + v);
		sb_mem(b, tmp, 1);
		return;
	}
	if (v < 100) {
		tmp[0] = (char)('0' + v / 10);
		tmp[1] = (char)('0' + v % 10);
		sb_mem(b, tmp, 2);
		return;
	}
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_mem(b, tmp + i, sizeof(tmp) - i);
}

/* Marks a truncated text: its last characters become "...". */
static void sb_dots(struct sbuf *b)
{
	if (!b->over)
		return;
	for (size_t k = 0; k < 3 && k < b->len; k++)
		b->buf[b->len - 1 - k] = '.';
}

static const char *nm(const char *s)
{
	return s ? s : "";
}

/* ---- human sizes ---------------------------------------------------------- */

static const char *const unit_names[] = { "B", "KiB", "MiB", "GiB", "TiB" };

/* v in unit u as shown: whole part and tenths (truncated, never rounded up,
 * so a free size is never shown larger than it is). */
struct shown {
	uint64_t whole;
	unsigned tenths;
	bool exact;
};

static struct shown shown_in(uint64_t v, unsigned u)
{
	unsigned shift = 10 * u;
	uint64_t rest = v & ((UINT64_C(1) << shift) - 1);
	struct shown s = { v >> shift, (unsigned)((rest * 10) >> shift), rest == 0 };

	return s;
}

static void sb_size(struct sbuf *b, uint64_t v, unsigned u)
{
	struct shown s = shown_in(v, u);

	sb_u64(b, s.whole);
	if (!s.exact) {
		char frac[2] = { '.', (char)('0' + s.tenths) };

		sb_mem(b, frac, 2);
	}
	sb_lit(b, " ");
	sb_str(b, unit_names[u]);
}

/*
 * "512 MiB free, 1024 MiB wanted": one unit for both, so they compare at a
 * glance, the largest in which the smaller nonzero one is at least 1; a finer
 * one while both would read the same (avail is below want here).
 */
static void sb_memory(struct sbuf *b, uint64_t avail, uint64_t want)
{
	uint64_t small = avail && avail < want ? avail : want;
	unsigned u = 0;

	while (u + 1 < sizeof(unit_names) / sizeof(unit_names[0]) && small >> (10 * (u + 1)) != 0)
		u++;
	while (u > 0) {
		struct shown f = shown_in(avail, u), w = shown_in(want, u);

		if (f.whole != w.whole || f.tenths != w.tenths)
			break;
		u--;
	}
	sb_size(b, avail, u);
	sb_lit(b, " free, ");
	sb_size(b, want, u);
	sb_lit(b, " wanted");
}

/* ---- transports ----------------------------------------------------------- */

enum {
	TR_TCP = 1u << 0,
	TR_RDMA = 1u << 1,
};

/* The registration validator admits only tcp and rdma; anything else
 * is ignored here. */
static unsigned transports_mask(const char *s)
{
	unsigned m = 0;

	if (!s)
		return 0;
	while (*s) {
		const char *e;

		while (*s == ' ' || *s == ',')
			s++;
		e = s;
		while (*e && *e != ',' && *e != ' ')
			e++;
		if (e - s == 3 && !memcmp(s, "tcp", 3))
			m |= TR_TCP;
		else if (e - s == 4 && !memcmp(s, "rdma", 4))
			m |= TR_RDMA;
		s = e;
	}
	return m;
}

static const char *transports_shown(const char *s)
{
	return s && *s ? s : "none";
}

/* ---- the request's VSP nodes, resolved once per call ---------------------- */

/* Distinct VSP nodes cached per call; a request naming more (rare) has the
 * rest looked up per candidate, which is correct, only slower. */
#define VSP_CACHE 32

struct vsp_ref {
	const char *name;
	size_t nvol;			   /* volumes it serves */
	const struct ctl_sched_node *node; /* NULL: not among the nodes */
	unsigned tr;
};

struct vsp_set {
	struct vsp_ref ref[VSP_CACHE];
	size_t nref;
	size_t nvol;  /* volumes with a named VSP node */
	size_t spill; /* first req->vsp_nodes entry not cached, or nvsp */
};

static bool vsp_named(const char *s)
{
	return s && *s;
}

static struct vsp_ref *vsp_find(struct vsp_set *vs, const char *name)
{
	for (size_t k = 0; k < vs->nref; k++)
		if (vs->ref[k].name == name || !strcmp(vs->ref[k].name, name))
			return &vs->ref[k];
	return NULL;
}

static const struct ctl_sched_node *node_find(const struct ctl_sched_node *nodes, size_t n,
					      const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(nm(nodes[i].name), name))
			return &nodes[i];
	return NULL;
}

static void vsp_resolve(struct vsp_set *vs, const struct ctl_sched_node *nodes, size_t n,
			const struct ctl_sched_req *req)
{
	size_t left;

	vs->nref = 0;
	vs->nvol = 0;
	vs->spill = req->nvsp;
	for (size_t j = 0; j < req->nvsp; j++) {
		const char *name = req->vsp_nodes[j];
		struct vsp_ref *r;

		if (!vsp_named(name))
			continue;
		vs->nvol++;
		r = vsp_find(vs, name);
		if (r) {
			r->nvol++;
			continue;
		}
		if (vs->nref == VSP_CACHE) {
			if (vs->spill == req->nvsp)
				vs->spill = j;
			continue;
		}
		r = &vs->ref[vs->nref++];
		r->name = name;
		r->nvol = 1;
		r->node = NULL;
		r->tr = 0;
	}

	/* One pass over the nodes for all cached names. */
	left = vs->nref;
	for (size_t i = 0; i < n && left; i++) {
		const char *name = nm(nodes[i].name);

		for (size_t k = 0; k < vs->nref; k++) {
			struct vsp_ref *r = &vs->ref[k];

			if (!r->node && !strcmp(r->name, name)) {
				r->node = &nodes[i];
				r->tr = transports_mask(nodes[i].transports);
				left--;
			}
		}
	}
}

/* ---- judging one node ------------------------------------------------------ */

struct near {
	size_t local, remote, rdma;
};

/*
 * Whether cand reaches the VSP node of r->nvol volumes; counts them into nr.
 * *cand_tr is the candidate's transport mask, parsed on first need (~0u: not
 * yet).
 */
static bool reach_one(const struct ctl_sched_node *cand, unsigned *cand_tr, const char *name,
		      const struct ctl_sched_node *vsp, unsigned vsp_tr, size_t nvol,
		      struct near *nr, struct sbuf *why)
{
	const char *fail;

	if (vsp == cand) {
		nr->local += nvol;
		return true;
	}
	if (*cand_tr == ~0u)
		*cand_tr = transports_mask(cand->transports);
	if (!vsp)
		fail = "unknown";
	else if (!vsp->up)
		fail = "down";
	else if (!vsp->has_data_addr)
		fail = "no data address";
	else if (!(*cand_tr & vsp_tr))
		fail = NULL;
	else {
		nr->remote += nvol;
		if (*cand_tr & vsp_tr & TR_RDMA)
			nr->rdma += nvol;
		return true;
	}
	sb_lit(why, "cannot reach VSP node ");
	sb_str(why, name);
	sb_lit(why, ": ");
	if (fail) {
		sb_str(why, fail);
	} else {
		sb_lit(why, "no common transport (");
		sb_str(why, transports_shown(cand->transports));
		sb_lit(why, " vs ");
		sb_str(why, transports_shown(vsp->transports));
		sb_lit(why, ")");
	}
	return false;
}

static bool reachable(const struct ctl_sched_node *nodes, size_t n, size_t i,
		      const struct ctl_sched_req *req, const struct vsp_set *vs, struct near *nr,
		      struct sbuf *why)
{
	const struct ctl_sched_node *cand = &nodes[i];
	unsigned cand_tr = ~0u;

	for (size_t k = 0; k < vs->nref; k++) {
		const struct vsp_ref *r = &vs->ref[k];

		if (!reach_one(cand, &cand_tr, r->name, r->node, r->tr, r->nvol, nr, why))
			return false;
	}
	for (size_t j = vs->spill; j < req->nvsp; j++) {
		const char *name = req->vsp_nodes[j];
		const struct ctl_sched_node *vsp;
		bool cached = false;

		if (!vsp_named(name))
			continue;
		for (size_t k = 0; k < vs->nref && !cached; k++)
			cached = !strcmp(vs->ref[k].name, name);
		if (cached)
			continue;
		vsp = node_find(nodes, n, name);
		if (!reach_one(cand, &cand_tr, name, vsp,
			       vsp ? transports_mask(vsp->transports) : 0, 1, nr, why))
			return false;
	}
	return true;
}

static bool in_group(const struct ctl_sched_node *node, const char *group)
{
	for (size_t g = 0; g < node->ngroups; g++)
		if (node->groups[g] && !strcmp(node->groups[g], group))
			return true;
	return false;
}

/* The filters of sched.h in order; false with the reason in why. */
static bool passes(const struct ctl_sched_node *nodes, size_t n, size_t i,
		   const struct ctl_sched_req *req, const struct vsp_set *vs, struct near *nr,
		   struct sbuf *why)
{
	const struct ctl_sched_node *node = &nodes[i];
	uint32_t vfree;
	uint64_t mfree;

	if (!node->up) {
		sb_lit(why, "down (lease expired)");
		return false;
	}
	if (node->drained) {
		sb_lit(why, "drained");
		return false;
	}
	if (node->vcpus == 0) {
		sb_lit(why, "no vCPUs offered (storage-only node)");
		return false;
	}
	vfree = node->vcpus_used < node->vcpus ? node->vcpus - node->vcpus_used : 0;
	if (vfree < req->vcpus) {
		sb_u64(why, vfree);
		sb_str(why, vfree == 1 ? " vCPU free, " : " vCPUs free, ");
		sb_u64(why, req->vcpus);
		sb_lit(why, " wanted");
		return false;
	}
	mfree = node->memory_used < node->memory_bytes ? node->memory_bytes - node->memory_used : 0;
	if (mfree < req->memory_bytes) {
		sb_memory(why, mfree, req->memory_bytes);
		return false;
	}
	if (req->group && *req->group && in_group(node, req->group)) {
		sb_lit(why, "anti-affinity: group '");
		sb_str(why, req->group);
		sb_lit(why, "' already has a partition here");
		return false;
	}
	if (req->avoid && *req->avoid && !strcmp(nm(node->name), req->avoid)) {
		if (req->avoid_why && *req->avoid_why)
			sb_str(why, req->avoid_why);
		else
			sb_lit(why, "excluded (node being replaced)");
		return false;
	}
	if (req->need_data_addr && !node->has_data_addr) {
		sb_lit(why, "no data address (a migration's copy stream could not reach it)");
		return false;
	}
	return reachable(nodes, n, i, req, vs, nr, why);
}

/* Score and its explanation for a node that passed (formula at the top). */
static double score(const struct ctl_sched_node *node, const struct ctl_sched_req *req,
		    enum ctl_sched_policy policy, size_t nvol, const struct near *nr,
		    struct sbuf *why)
{
	double vshare = (double)(node->vcpus - node->vcpus_used - req->vcpus) / node->vcpus;
	double mshare = (double)(node->memory_bytes - node->memory_used - req->memory_bytes) /
			(double)node->memory_bytes;
	double share = (vshare + mshare) / 2;
	double s = policy == CTL_SCHED_PACK ? 1 - share : share;
	uint64_t centi;

	if (nvol)
		s += (0.5 * (double)nr->local + 0.1 * (double)nr->rdma) / (double)nvol;

	centi = (uint64_t)(s * 100 + 0.5);
	sb_lit(why, "score ");
	sb_u64(why, centi / 100);
	{
		char frac[3] = { '.', (char)('0' + centi % 100 / 10), (char)('0' + centi % 10) };

		sb_mem(why, frac, sizeof(frac));
	}
	sb_lit(why, ": ");
	sb_u64(why, (uint64_t)(share * 100 + 0.5));
	if (policy == CTL_SCHED_PACK)
		sb_lit(why, "% free after placement (pack)");
	else
		sb_lit(why, "% free after placement (spread)");
	if (nvol) {
		sb_lit(why, ", ");
		sb_u64(why, nr->local);
		sb_lit(why, "/");
		sb_u64(why, nvol);
		sb_lit(why, " volumes local");
	}
	if (nr->remote) {
		sb_lit(why, ", ");
		sb_u64(why, nr->rdma);
		sb_lit(why, "/");
		sb_u64(why, nr->remote);
		sb_lit(why, " remote over rdma");
	}
	return s;
}

static int64_t score_key(double s)
{
	return (int64_t)(s * 1e6 + 0.5);
}

int ctl_sched_place(const struct ctl_sched_node *nodes, size_t n, const struct ctl_sched_req *req,
		    enum ctl_sched_policy policy, struct ctl_sched_verdict *verdicts,
		    size_t *chosen)
{
	struct vsp_set vs;
	size_t best = SIZE_MAX;
	int64_t best_key = 0;

	if (!req || !req->partition || req->vcpus == 0 || req->memory_bytes == 0 ||
	    (req->nvsp && !req->vsp_nodes) || (n && (!nodes || !verdicts)) || !chosen ||
	    (policy != CTL_SCHED_SPREAD && policy != CTL_SCHED_PACK))
		return -EINVAL;
	if (n == 0)
		return -ENOSPC;

	vsp_resolve(&vs, nodes, n, req);
	for (size_t i = 0; i < n; i++) {
		struct ctl_sched_verdict *v = &verdicts[i];
		struct near nr = { 0, 0, 0 };
		struct sbuf why;
		int64_t key;

		sb_init(&why, v->reason, sizeof(v->reason));
		v->feasible = passes(nodes, n, i, req, &vs, &nr, &why);
		if (!v->feasible) {
			v->score = 0;
			sb_dots(&why);
			continue;
		}
		sb_init(&why, v->reason, sizeof(v->reason));
		v->score = score(&nodes[i], req, policy, vs.nvol, &nr, &why);
		sb_dots(&why);
		key = score_key(v->score);
		if (best == SIZE_MAX || key > best_key ||
		    (key == best_key && strcmp(nm(nodes[i].name), nm(nodes[best].name)) < 0)) {
			best = i;
			best_key = key;
		}
	}
	if (best == SIZE_MAX)
		return -ENOSPC;
	*chosen = best;
	return 0;
}

char *ctl_sched_explain_none(const struct ctl_sched_node *nodes, size_t n,
			     const struct ctl_sched_req *req,
			     const struct ctl_sched_verdict *verdicts, char *buf, size_t len)
{
	struct sbuf b;
	size_t listed = 0;

	if (!buf || len == 0)
		return buf;
	sb_init(&b, buf, len);
	sb_lit(&b, "no node can run ");
	sb_str(&b, req && req->partition ? req->partition : "the partition");
	sb_lit(&b, ": ");
	if (n == 0) {
		sb_lit(&b, "no nodes are registered");
	} else if (!nodes || !verdicts) {
		sb_lit(&b, "no verdicts");
	} else {
		for (size_t i = 0; i < n && !b.over; i++) {
			if (verdicts[i].feasible)
				continue;
			if (listed++)
				sb_lit(&b, "; ");
			sb_str(&b, nm(nodes[i].name));
			sb_lit(&b, ": ");
			sb_mem(&b, verdicts[i].reason,
			       strnlen(verdicts[i].reason, sizeof(verdicts[i].reason)));
		}
		if (!listed)
			sb_lit(&b, "every node is feasible");
	}
	sb_dots(&b);
	return buf;
}
