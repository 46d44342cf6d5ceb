// SPDX-License-Identifier: MIT
/* The controller's scheduler: filters, weights, ties and explanations. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sched.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

/* An up, undrained node with a data address, on tcp, nothing placed. */
static struct ctl_sched_node mk(const char *name, uint32_t vcpus, uint64_t memory)
{
	struct ctl_sched_node n = {
		.name = name,
		.up = true,
		.vcpus = vcpus,
		.memory_bytes = memory,
		.transports = "tcp",
		.has_data_addr = true,
	};

	return n;
}

static struct ctl_sched_req rq(uint32_t vcpus, uint64_t memory)
{
	struct ctl_sched_req r = {
		.partition = "p1",
		.vcpus = vcpus,
		.memory_bytes = memory,
	};

	return r;
}

/* One node judged alone: its verdict, and the return code. */
static int judge1(const struct ctl_sched_node *node, const struct ctl_sched_req *req,
		  struct ctl_sched_verdict *v)
{
	size_t chosen = 99;
	int rc;

	memset(v, 0x5a, sizeof(*v));
	rc = ctl_sched_place(node, 1, req, CTL_SCHED_SPREAD, v, &chosen);
	if (rc == 0)
		assert_int_equal(chosen, 0);
	else
		assert_int_equal(chosen, 99);
	assert_non_null(memchr(v->reason, '\0', sizeof(v->reason)));
	return rc;
}

static void expect_filtered(const struct ctl_sched_node *node, const struct ctl_sched_req *req,
			    const char *reason)
{
	struct ctl_sched_verdict v;

	assert_int_equal(judge1(node, req, &v), -ENOSPC);
	assert_false(v.feasible);
	assert_string_equal(v.reason, reason);
}

static void expect_feasible(const struct ctl_sched_node *node, const struct ctl_sched_req *req)
{
	struct ctl_sched_verdict v;

	assert_int_equal(judge1(node, req, &v), 0);
	assert_true(v.feasible);
	assert_true(!strncmp(v.reason, "score ", 6));
}

static void test_capacity_vcpus(void **state)
{
	struct ctl_sched_node n = mk("a", 4, 8 * GiB);
	struct ctl_sched_req r = rq(2, 1 * GiB);

	n.vcpus_used = 2;
	expect_feasible(&n, &r); /* exactly the free vCPUs */
	r.vcpus = 3;
	expect_filtered(&n, &r, "2 vCPUs free, 3 wanted");
	n.vcpus_used = 3;
	r.vcpus = 2;
	expect_filtered(&n, &r, "1 vCPU free, 2 wanted");
	n.vcpus_used = 4;
	r.vcpus = 1;
	expect_filtered(&n, &r, "0 vCPUs free, 1 wanted");
	/* More used than offered (the node shrank): nothing free, no wrap. */
	n.vcpus_used = 6;
	expect_filtered(&n, &r, "0 vCPUs free, 1 wanted");
}

static void test_capacity_memory(void **state)
{
	struct ctl_sched_node n = mk("a", 8, 4 * GiB);
	struct ctl_sched_req r = rq(1, 1 * GiB);

	n.memory_used = 3 * GiB;
	expect_feasible(&n, &r); /* exactly the free memory */
	n.memory_used = 3 * GiB + 1;
	expect_filtered(&n, &r, "1023.9 MiB free, 1024 MiB wanted");
	n.memory_used = 4 * GiB - 512 * MiB;
	expect_filtered(&n, &r, "512 MiB free, 1024 MiB wanted");
	n.memory_used = 4 * GiB - 1536 * MiB;
	r.memory_bytes = 2 * GiB;
	expect_filtered(&n, &r, "1.5 GiB free, 2 GiB wanted");
	n.memory_used = 4 * GiB;
	expect_filtered(&n, &r, "0 GiB free, 2 GiB wanted");
	n.memory_used = 5 * GiB;
	expect_filtered(&n, &r, "0 GiB free, 2 GiB wanted");
	/* Both read the same in MiB: a finer unit shows the difference. */
	n.memory_used = 4 * GiB - (1024 * MiB + 1024);
	r.memory_bytes = 1024 * MiB + 2048;
	expect_filtered(&n, &r, "1048577 KiB free, 1048578 KiB wanted");
	/* Memory is judged after vCPUs: the first failing filter speaks. */
	n.vcpus_used = 8;
	expect_filtered(&n, &r, "0 vCPUs free, 1 wanted");
}

static void test_anti_affinity(void **state)
{
	const char *const groups[] = { "web", "db" };
	struct ctl_sched_node n[2] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB) };
	struct ctl_sched_req r = rq(1, 1 * GiB);
	struct ctl_sched_verdict v[2];
	size_t chosen;

	n[0].groups = groups;
	n[0].ngroups = 2;
	r.group = "db";
	expect_filtered(&n[0], &r, "anti-affinity: group 'db' already has a partition here");
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
	r.group = "cache";
	expect_feasible(&n[0], &r);
	r.group = "";
	expect_feasible(&n[0], &r);
	r.group = NULL;
	expect_feasible(&n[0], &r);
}

static void test_down_and_drained(void **state)
{
	struct ctl_sched_node n = mk("a", 8, 8 * GiB);
	struct ctl_sched_req r = rq(1, 1 * GiB);

	n.drained = true;
	expect_filtered(&n, &r, "drained");
	n.up = false;
	expect_filtered(&n, &r, "down (lease expired)"); /* down comes first */
	n.drained = false;
	expect_filtered(&n, &r, "down (lease expired)");
	/* Drained before capacity. */
	n.up = true;
	n.drained = true;
	n.vcpus_used = 8;
	expect_filtered(&n, &r, "drained");
}

static void test_storage_only(void **state)
{
	struct ctl_sched_node n = mk("s", 0, 8 * GiB);
	struct ctl_sched_req r = rq(1, 1 * GiB);

	expect_filtered(&n, &r, "no vCPUs offered (storage-only node)");
	n.memory_bytes = 0;
	expect_filtered(&n, &r, "no vCPUs offered (storage-only node)");
}

static void test_avoid(void **state)
{
	struct ctl_sched_node n[2] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB) };
	struct ctl_sched_req r = rq(1, 1 * GiB);
	struct ctl_sched_verdict v[2];
	size_t chosen;

	r.avoid = "a";
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
	assert_false(v[0].feasible);
	assert_string_equal(v[0].reason, "excluded (node being replaced)");
	r.avoid = "";
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 0);
	assert_true(v[0].feasible);
}

/* A migration's target search: the source excluded with its own reason,
 * and only nodes with a data address (the copy stream's destination). */
static void test_migration_target(void **state)
{
	struct ctl_sched_node n[3] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB),
				       mk("c", 8, 8 * GiB) };
	struct ctl_sched_req r = rq(1, 1 * GiB);
	struct ctl_sched_verdict v[3];
	size_t chosen;

	r.avoid = "a";
	r.avoid_why = "the migration's source";
	r.need_data_addr = true;
	n[1].has_data_addr = false;
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 2);
	assert_string_equal(v[0].reason, "the migration's source");
	assert_false(v[1].feasible);
	assert_string_equal(v[1].reason,
			    "no data address (a migration's copy stream could not reach it)");
	/* capacity and drained come first, as for any placement */
	n[2].drained = true;
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[2].reason, "drained");
	/* without the flag a node without a data address is fine */
	r.need_data_addr = false;
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
}

/* Node 0 ("a") is the candidate; node 1 ("vsp") serves the volume. */
static void test_unreachable_vsp(void **state)
{
	const char *const vol[] = { "vsp" };
	const char *const vol_unknown[] = { NULL, "", "ghost" };
	struct ctl_sched_node n[2] = { mk("a", 8, 8 * GiB), mk("vsp", 0, 8 * GiB) };
	struct ctl_sched_req r = rq(1, 1 * GiB);
	struct ctl_sched_verdict v[2];
	size_t chosen;

	r.vsp_nodes = vol;
	r.nvsp = 1;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 0);
	assert_string_equal(v[0].reason, "score 0.88: 88% free after placement (spread), "
					 "0/1 volumes local, 0/1 remote over rdma");

	n[1].up = false;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node vsp: down");

	n[1].up = true;
	n[1].has_data_addr = false;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node vsp: no data address");

	n[1].has_data_addr = true;
	n[1].transports = "rdma";
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason,
			    "cannot reach VSP node vsp: no common transport (tcp vs rdma)");
	n[0].transports = "";
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason,
			    "cannot reach VSP node vsp: no common transport (none vs rdma)");
	n[0].transports = "tcp, rdma";
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);

	/* Volumes without a node are skipped; an unknown name is not. */
	r.vsp_nodes = vol_unknown;
	r.nvsp = 3;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node ghost: unknown");
	r.nvsp = 2;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_string_equal(v[0].reason, "score 0.88: 88% free after placement (spread)");
}

/* The first unreachable VSP node in volume order is the reason, and repeats
 * count once per volume. */
static void test_vsp_order_and_repeats(void **state)
{
	const char *const vol[] = { "b", "b", "c", "b", "d" };
	struct ctl_sched_node n[4] = { mk("a", 8, 8 * GiB), mk("b", 0, GiB), mk("c", 0, GiB),
				       mk("d", 0, GiB) };
	struct ctl_sched_req r = rq(2, 2 * GiB);
	struct ctl_sched_verdict v[4];
	size_t chosen;

	r.vsp_nodes = vol;
	r.nvsp = 5;
	n[2].up = false;
	n[3].has_data_addr = false;
	assert_int_equal(ctl_sched_place(n, 4, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node c: down");
	n[2].up = true;
	assert_int_equal(ctl_sched_place(n, 4, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node d: no data address");
	n[3].has_data_addr = true;
	n[0].transports = n[1].transports = "tcp,rdma";
	assert_int_equal(ctl_sched_place(n, 4, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	/* 75% free + 0.1 * 3/5 over rdma */
	assert_string_equal(v[0].reason, "score 0.81: 75% free after placement (spread), "
					 "0/5 volumes local, 3/5 remote over rdma");
	assert_float_equal(v[0].score, 0.75 + 0.1 * 3 / 5, 1e-9);
}

/* More distinct VSP nodes than the per-call cache holds: the rest are still
 * judged, in order. */
static void test_many_vsp_nodes(void **state)
{
	enum { NV = 40 };
	static char names[NV][8];
	const char *vol[NV + 1];
	struct ctl_sched_node n[NV + 1];
	struct ctl_sched_verdict v[NV + 1];
	struct ctl_sched_req r = rq(1, GiB);
	size_t chosen;

	n[0] = mk("a", 4, 4 * GiB);
	for (int i = 0; i < NV; i++) {
		snprintf(names[i], sizeof(names[i]), "s%02d", i);
		n[i + 1] = mk(names[i], 0, GiB);
		vol[i] = names[i];
	}
	vol[NV] = names[NV - 1]; /* a repeat of a spilled one */
	r.vsp_nodes = vol;
	r.nvsp = NV + 1;
	assert_int_equal(ctl_sched_place(n, NV + 1, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_string_equal(v[0].reason, "score 0.75: 75% free after placement (spread), "
					 "0/41 volumes local, 0/41 remote over rdma");
	n[NV].up = false; /* s39, beyond the cache */
	assert_int_equal(ctl_sched_place(n, NV + 1, &r, CTL_SCHED_SPREAD, v, &chosen), -ENOSPC);
	assert_string_equal(v[0].reason, "cannot reach VSP node s39: down");
	n[NV].up = true;
	/* The candidate serves one itself, among those beyond the cache. */
	n[0] = mk("s35", 4, 4 * GiB);
	n[36].name = "s35-old";
	assert_int_equal(ctl_sched_place(n, NV + 1, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_string_equal(v[0].reason, "score 0.76: 75% free after placement (spread), "
					 "1/41 volumes local, 0/40 remote over rdma");
}

/* A volume served by the candidate is reached over a local channel, whatever
 * the candidate's data address or transports. */
static void test_local_volume(void **state)
{
	const char *const vol[] = { "b" };
	struct ctl_sched_node n[2] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB) };
	struct ctl_sched_req r = rq(2, 2 * GiB);
	struct ctl_sched_verdict v[2];
	size_t chosen;

	n[1].has_data_addr = false;
	n[1].transports = "";
	r.vsp_nodes = vol;
	r.nvsp = 1;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
	assert_false(v[0].feasible);
	assert_string_equal(v[0].reason, "cannot reach VSP node b: no data address");
	assert_true(v[1].feasible);
	assert_string_equal(v[1].reason,
			    "score 1.25: 75% free after placement (spread), 1/1 volumes local");
}

static void test_none_feasible(void **state)
{
	struct ctl_sched_node n[4] = { mk("node-a", 8, 8 * GiB), mk("node-b", 8, 8 * GiB),
				       mk("node-c", 1, 8 * GiB), mk("node-d", 0, 8 * GiB) };
	struct ctl_sched_req r = rq(2, 1 * GiB);
	struct ctl_sched_verdict v[4];
	const char *want = "no node can run p1: node-a: down (lease expired); node-b: drained; "
			   "node-c: 1 vCPU free, 2 wanted; node-d: no vCPUs offered "
			   "(storage-only node)";
	char buf[512], small[40];
	size_t chosen = 7;

	n[0].up = false;
	n[1].drained = true;
	assert_int_equal(ctl_sched_place(n, 4, &r, CTL_SCHED_PACK, v, &chosen), -ENOSPC);
	assert_int_equal(chosen, 7);
	for (int i = 0; i < 4; i++) {
		assert_false(v[i].feasible);
		assert_true(strlen(v[i].reason) > 0);
	}
	assert_ptr_equal(ctl_sched_explain_none(n, 4, &r, v, buf, sizeof(buf)), buf);
	assert_string_equal(buf, want);

	/* Truncated: as much as fits, ending in "...", never past len. */
	memset(small, 'x', sizeof(small));
	ctl_sched_explain_none(n, 4, &r, v, small, 30);
	assert_int_equal(strlen(small), 29);
	assert_memory_equal(small, want, 26);
	assert_string_equal(small + 26, "...");
	assert_int_equal(small[30], 'x');
	ctl_sched_explain_none(n, 4, &r, v, small, 3);
	assert_string_equal(small, "..");
	ctl_sched_explain_none(n, 4, &r, v, small, 1);
	assert_string_equal(small, "");
	small[0] = 'x';
	ctl_sched_explain_none(n, 4, &r, v, small, 0);
	assert_int_equal(small[0], 'x');
	/* Exactly fits: no dots. */
	ctl_sched_explain_none(n, 4, &r, v, buf, strlen(want) + 1);
	assert_string_equal(buf, want);
	ctl_sched_explain_none(n, 4, &r, v, buf, strlen(want));
	assert_int_equal(strlen(buf), strlen(want) - 1);
	assert_string_equal(buf + strlen(want) - 4, "...");

	/* No nodes at all. */
	assert_int_equal(ctl_sched_place(NULL, 0, &r, CTL_SCHED_SPREAD, NULL, &chosen), -ENOSPC);
	ctl_sched_explain_none(NULL, 0, &r, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "no node can run p1: no nodes are registered");
}

/* A name too long for a verdict's reason is cut, with "...". */
static void test_long_reason(void **state)
{
	char longname[300];
	const char *vol[1] = { longname };
	struct ctl_sched_node n = mk("a", 8, 8 * GiB);
	struct ctl_sched_req r = rq(1, GiB);
	struct ctl_sched_verdict v;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	r.vsp_nodes = vol;
	r.nvsp = 1;
	assert_int_equal(judge1(&n, &r, &v), -ENOSPC);
	assert_int_equal(strlen(v.reason), CTL_SCHED_REASON_MAX - 1);
	assert_true(!strncmp(v.reason, "cannot reach VSP node nnn", 25));
	assert_string_equal(v.reason + CTL_SCHED_REASON_MAX - 4, "...");
}

static void test_spread_vs_pack(void **state)
{
	/* a is busy, b is empty: spread fills b, pack fills a. */
	struct ctl_sched_node n[2] = { mk("a", 8, 16 * GiB), mk("b", 8, 16 * GiB) };
	struct ctl_sched_req r = rq(2, 4 * GiB);
	struct ctl_sched_verdict v[2];
	size_t chosen;

	n[0].vcpus_used = 4;
	n[0].memory_used = 8 * GiB;
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
	assert_string_equal(v[0].reason, "score 0.25: 25% free after placement (spread)");
	assert_string_equal(v[1].reason, "score 0.75: 75% free after placement (spread)");
	assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_PACK, v, &chosen), 0);
	assert_int_equal(chosen, 0);
	assert_string_equal(v[0].reason, "score 0.75: 25% free after placement (pack)");
	assert_string_equal(v[1].reason, "score 0.25: 75% free after placement (pack)");
	assert_float_equal(v[0].score, 0.75, 1e-9);
}

/* With equal load, the node serving the volume wins over the lower name. */
static void test_nearness_local(void **state)
{
	const char *const vol[] = { "b", "b" };
	struct ctl_sched_node n[3] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB),
				       mk("c", 8, 8 * GiB) };
	struct ctl_sched_req r = rq(2, 2 * GiB);
	struct ctl_sched_verdict v[3];
	size_t chosen;

	r.vsp_nodes = vol;
	r.nvsp = 2;
	for (int p = CTL_SCHED_SPREAD; p <= CTL_SCHED_PACK; p++) {
		assert_int_equal(ctl_sched_place(n, 3, &r, p, v, &chosen), 0);
		assert_int_equal(chosen, 1);
		assert_float_equal(v[1].score - v[0].score, 0.5, 1e-9);
	}
	/* Nearness does not beat a much emptier node. */
	n[1].vcpus_used = 6;
	n[1].memory_used = 6 * GiB;
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 0);
}

/* With equal load, the node reaching the VSP node over rdma wins. */
static void test_nearness_rdma(void **state)
{
	const char *const vol[] = { "s" };
	struct ctl_sched_node n[3] = { mk("a", 8, 8 * GiB), mk("b", 8, 8 * GiB),
				       mk("s", 0, 8 * GiB) };
	struct ctl_sched_req r = rq(2, 2 * GiB);
	struct ctl_sched_verdict v[3];
	size_t chosen;

	n[1].transports = "tcp,rdma";
	n[2].transports = "rdma,tcp";
	r.vsp_nodes = vol;
	r.nvsp = 1;
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 1);
	assert_string_equal(v[0].reason, "score 0.75: 75% free after placement (spread), "
					 "0/1 volumes local, 0/1 remote over rdma");
	assert_string_equal(v[1].reason, "score 0.85: 75% free after placement (spread), "
					 "0/1 volumes local, 1/1 remote over rdma");
	assert_string_equal(v[2].reason, "no vCPUs offered (storage-only node)");
	/* rdma on one side only is tcp. */
	n[2].transports = "tcp";
	assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
	assert_int_equal(chosen, 0);
}

static void test_tie_by_name(void **state)
{
	const char *orders[][3] = {
		{ "n2", "n1", "n3" },
		{ "n3", "n2", "n1" },
		{ "n1", "n3", "n2" },
	};
	struct ctl_sched_req r = rq(1, GiB);

	for (size_t o = 0; o < 3; o++) {
		struct ctl_sched_node n[3];
		struct ctl_sched_verdict v[3];
		size_t chosen;

		for (int i = 0; i < 3; i++)
			n[i] = mk(orders[o][i], 4, 4 * GiB);
		assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
		assert_string_equal(n[chosen].name, "n1");
		assert_int_equal(ctl_sched_place(n, 3, &r, CTL_SCHED_PACK, v, &chosen), 0);
		assert_string_equal(n[chosen].name, "n1");
	}
	{
		/* Shares equal on paper but a rounding apart still tie:
		 * (0.1 + 0.2) / 2 against (0.15 + 0.15) / 2. */
		struct ctl_sched_node n[2] = { mk("y", 10, 10 * GiB), mk("x", 20, 20 * GiB) };
		struct ctl_sched_verdict v[2];
		size_t chosen;

		n[0].vcpus_used = 8;
		n[0].memory_used = 7 * GiB;
		n[1].vcpus_used = 16;
		n[1].memory_used = 16 * GiB;
		assert_int_equal(ctl_sched_place(n, 2, &r, CTL_SCHED_SPREAD, v, &chosen), 0);
		assert_true(v[0].score > v[1].score); /* the premise */
		assert_float_equal(v[0].score, v[1].score, 1e-12);
		assert_int_equal(chosen, 1);
	}
}

static void test_bad_requests(void **state)
{
	struct ctl_sched_node n = mk("a", 8, 8 * GiB);
	struct ctl_sched_req r = rq(1, GiB);
	struct ctl_sched_verdict v;
	size_t chosen;

	assert_int_equal(ctl_sched_place(&n, 1, NULL, CTL_SCHED_SPREAD, &v, &chosen), -EINVAL);
	r.partition = NULL;
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, &chosen), -EINVAL);
	r = rq(0, GiB);
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, &chosen), -EINVAL);
	/* A bad request is bad even with no nodes. */
	assert_int_equal(ctl_sched_place(NULL, 0, &r, CTL_SCHED_SPREAD, NULL, &chosen), -EINVAL);
	r = rq(1, 0);
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, &chosen), -EINVAL);
	r = rq(1, GiB);
	r.nvsp = 1;
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, &chosen), -EINVAL);
	r.nvsp = 0;
	assert_int_equal(ctl_sched_place(&n, 1, &r, (enum ctl_sched_policy)7, &v, &chosen),
			 -EINVAL);
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, NULL), -EINVAL);
	assert_int_equal(ctl_sched_place(&n, 1, &r, CTL_SCHED_SPREAD, &v, &chosen), 0);
}

static void test_policy_names(void **state)
{
	enum ctl_sched_policy p = CTL_SCHED_PACK;

	for (int i = CTL_SCHED_SPREAD; i <= CTL_SCHED_PACK; i++) {
		assert_int_equal(ctl_sched_policy_parse(ctl_sched_policy_name(i), &p), 0);
		assert_int_equal(p, i);
	}
	assert_string_equal(ctl_sched_policy_name(CTL_SCHED_SPREAD), "spread");
	assert_string_equal(ctl_sched_policy_name(CTL_SCHED_PACK), "pack");
	p = CTL_SCHED_PACK;
	assert_int_equal(ctl_sched_policy_parse("Spread", &p), -EINVAL);
	assert_int_equal(ctl_sched_policy_parse("", &p), -EINVAL);
	assert_int_equal(ctl_sched_policy_parse("packed", &p), -EINVAL);
	assert_int_equal(ctl_sched_policy_parse(NULL, &p), -EINVAL);
	assert_int_equal(p, CTL_SCHED_PACK);
}

/*
 * Timing, printed not asserted (machines differ): 1,000 nodes, most feasible
 * and so each given a score and its explanation, a group, two volumes.
 */
static void test_timing(void **state)
{
	enum { N = 1000, CALLS = 2000 };
	static struct ctl_sched_node n[N];
	static struct ctl_sched_verdict v[N];
	static char names[N][16];
	const char *const groups[] = { "db" };
	const char *const vol[] = { "node-0007", "node-0501" };
	struct ctl_sched_req r = rq(2, 4 * GiB);
	struct timespec t0, t1;
	size_t chosen = 0, feasible = 0;
	double us;

	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "node-%04d", i);
		n[i] = mk(names[i], 64, 256 * GiB);
		n[i].vcpus_used = (uint32_t)(i * 7 % 64);
		n[i].memory_used = (uint64_t)(i * 13 % 256) * GiB;
		n[i].transports = i % 2 ? "tcp,rdma" : "tcp";
		if (i % 10 == 0) {
			n[i].groups = groups;
			n[i].ngroups = 1;
		}
		n[i].up = i % 50 != 0;
	}
	r.group = "db";
	r.vsp_nodes = vol;
	r.nvsp = 2;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int c = 0; c < CALLS; c++)
		assert_int_equal(ctl_sched_place(n, N, &r, c % 2, v, &chosen), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < N; i++)
		feasible += v[i].feasible;
	us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
	     CALLS;
	printf("ctl_sched_place: %d nodes (%zu feasible): %.1f us/call\n", N, feasible, us);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capacity_vcpus),
		cmocka_unit_test(test_capacity_memory),
		cmocka_unit_test(test_anti_affinity),
		cmocka_unit_test(test_down_and_drained),
		cmocka_unit_test(test_storage_only),
		cmocka_unit_test(test_avoid),
		cmocka_unit_test(test_migration_target),
		cmocka_unit_test(test_unreachable_vsp),
		cmocka_unit_test(test_vsp_order_and_repeats),
		cmocka_unit_test(test_many_vsp_nodes),
		cmocka_unit_test(test_local_volume),
		cmocka_unit_test(test_none_feasible),
		cmocka_unit_test(test_long_reason),
		cmocka_unit_test(test_spread_vs_pack),
		cmocka_unit_test(test_nearness_local),
		cmocka_unit_test(test_nearness_rdma),
		cmocka_unit_test(test_tie_by_name),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_timing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
