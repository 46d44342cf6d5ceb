/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: where a partition runs. A pure function over a snapshot of
 * the nodes (no I/O, no globals), so it is tested and benchmarked alone.
 *
 * Filters, in this order (the first that fails is the node's reason):
 *   down            the node's lease expired
 *   drained         the operator drained it
 *   no vCPUs        the node offers none (a storage-only node)
 *   vCPUs           free vCPUs < wanted
 *   memory          free memory < wanted
 *   anti-affinity   a partition of the same group is on it
 *   avoid           the caller excluded it (e.g. the node just lost, or a
 *                   migration's source)
 *   data address    when asked (a migration target): the node has one
 *   reachability    for each volume served by another node: that node is
 *                   up, has a data address, and shares a transport with
 *                   this node
 * Then weights (higher wins; ties go to the lower name):
 *   policy spread   favours the node left with the largest free share
 *   policy pack     favours the node left with the smallest free share
 *   nearness        favours nodes that serve the partition's volumes
 *                   themselves (a local channel), then nodes reaching the
 *                   VSP nodes over rdma rather than tcp
 */
#ifndef CTL_SCHED_H
#define CTL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ctl_sched_policy {
	CTL_SCHED_SPREAD,
	CTL_SCHED_PACK,
};

/* "spread" or "pack": 0 or -EINVAL. */
int ctl_sched_policy_parse(const char *s, enum ctl_sched_policy *out);
const char *ctl_sched_policy_name(enum ctl_sched_policy p);

struct ctl_sched_node {
	const char *name;
	bool up;
	bool drained;
	uint32_t vcpus, vcpus_used;
	uint64_t memory_bytes, memory_used;
	const char *transports; /* comma-separated: "tcp", "rdma" */
	bool has_data_addr;	/* other nodes can reach its VSPs */
	/* anti-affinity groups of the partitions placed on it */
	const char *const *groups;
	size_t ngroups;
};

struct ctl_sched_req {
	const char *partition;
	uint32_t vcpus;
	uint64_t memory_bytes;
	const char *group; /* NULL or "": none */
	/* the nodes serving each volume of the partition (names; NULL for a
	 * volume without a node), nvsp entries */
	const char *const *vsp_nodes;
	size_t nvsp;
	const char *avoid;     /* NULL or a node never to choose */
	const char *avoid_why; /* its verdict (NULL: "excluded (node being replaced)") */
	bool need_data_addr;   /* only nodes with a data address (migration targets) */
};

#define CTL_SCHED_REASON_MAX 160

struct ctl_sched_verdict {
	bool feasible;
	double score; /* meaningful when feasible */
	/* filtered: why ("down", "drained", "1 vCPU free, 2 wanted", ...);
	 * feasible: what the score is made of */
	char reason[CTL_SCHED_REASON_MAX];
};

/*
 * Judges every node for req: verdicts[i] for nodes[i] (n entries). Returns
 * 0 with *chosen the index of the best node, or -ENOSPC when none is
 * feasible (every verdict says why), or -EINVAL for a bad request (n == 0
 * gives -ENOSPC). Thread: any; no allocation.
 */
int ctl_sched_place(const struct ctl_sched_node *nodes, size_t n, const struct ctl_sched_req *req,
		    enum ctl_sched_policy policy, struct ctl_sched_verdict *verdicts,
		    size_t *chosen);

/*
 * The one-line error for -ENOSPC: "no node can run P: node-a: down; node-b:
 * 1 vCPU free, 2 wanted; ..." (truncated with "..." to fit). Returns buf.
 */
char *ctl_sched_explain_none(const struct ctl_sched_node *nodes, size_t n,
			     const struct ctl_sched_req *req,
			     const struct ctl_sched_verdict *verdicts, char *buf, size_t len);

#endif
