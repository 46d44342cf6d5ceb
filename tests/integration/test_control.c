// SPDX-License-Identifier: MIT
/*
 * The controller driving a cluster, through fabctl as an operator would:
 * a controller in the hub namespace and three nodes in their own (node-a
 * and node-b compute, node-s storage only). Volumes are created on node-s,
 * partitions are placed by the scheduler on the compute nodes, so their
 * disks are remote channels over TCP; the guests are blockbench, which
 * verifies every block it reads.
 *
 * Needs /dev/kvm, root and iproute2; skips loudly without them.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tcluster.h"

static int skip_all;

/* fabctl that must succeed; returns its stdout. */
static char *ok(const char *first, ...) __attribute__((sentinel));
static char *ok(const char *first, ...)
{
	char *out;
	va_list ap;
	int rc;

	va_start(ap, first);
	rc = tc_fabctl_expectv(&out, 120, first, ap);
	va_end(ap);
	assert_int_equal(rc, 0);
	return out;
}

static void wait_part(const char *name, const char *state, const char *console, int ms)
{
	if (!tc_wait_part(name, state, console, NULL, ms))
		fail_msg("partition %s: not %s", name, state);
}

static void wait_nodes_up(int want)
{
	if (!tc_wait_nodes_up(want, 20000)) {
		tc_dump_all();
		fail_msg("expected %d nodes up", want);
	}
}

static int group_setup(void **state)
{
	static const struct tc_node nodes[] = {
		{ "node-a", 2, false },
		{ "node-b", 2, false },
		{ "node-s", 0, true },
	};
	const struct tc_cfg cfg = {
		.tag = "ctl",
		.fabctld = FABCTLD,
		.fabctl = FABCTL,
		.fabnode = FABNODE,
		.images = GUEST_IMAGES,
		.lease_ms = "2000",
		.nodes = nodes,
		.nnodes = 3,
	};
	char why[256];
	int rc;

	if (th_kvm_missing("controller tests run partitions on the compute nodes"))
		return (skip_all = 1), 0;
	rc = tc_start(&cfg, why, sizeof(why));
	if (rc == 77) {
		printf("SKIP: controller tests need network namespaces: %s\n", why);
		skip_all = 1;
		return 0;
	}
	if (rc)
		fprintf(stderr, "cluster: %s\n", why);
	return rc ? -1 : 0;
}

static int group_teardown(void **state)
{
	return tc_teardown();
}

/* ---- tests ------------------------------------------------------------- */

/*
 * The main path: a volume on the storage node, a partition the scheduler
 * puts on a compute node, its disk remote over TCP; blockbench writes and
 * verifies; explain names why node-s was not chosen.
 */
static void test_place_remote(void **state)
{
	char *out, node[64];

	if (skip_all)
		skip();
	free(ok("volume", "create", "vol1", "--size", "16M", NULL));
	out = ok("--json", "volume", "show", "vol1", NULL);
	assert_non_null(strstr(out, "\"state\": \"ready\""));
	assert_non_null(strstr(out, "\"node\": \"node-s\""));
	free(out);
	free(ok("partition", "create", "web1", "--image", "blockbench.elf", "--memory", "64M",
		"--volume", "vol1", "--", "--mode", "write-then-verify", "--blocks", "2048",
		NULL));
	wait_part("web1", "exited", "blockbench: OK", 60000);
	out = ok("--json", "partition", "show", "web1", NULL);
	assert_int_equal(tc_json_get(out, "node", node, sizeof(node)), 0);
	/* web1 ended: no node holds it, but its channel report stays */
	assert_non_null(strstr(out, "\"exit_status\": 0"));
	free(out);
	out = ok("partition", "explain", "web1", NULL);
	assert_non_null(strstr(out, "node-s"));
	assert_non_null(strstr(out, "no vCPUs"));
	assert_true(strstr(out, "placed on node-a") || strstr(out, "placed on node-b"));
	free(out);
	free(ok("partition", "delete", "web1", NULL));
	free(ok("volume", "delete", "vol1", NULL));
}

/* A running partition shows a remote channel over tcp served by node-s. */
static void test_channel_info(void **state)
{
	char *out;

	if (skip_all)
		skip();
	free(ok("volume", "create", "vol2", "--size", "8M", NULL));
	free(ok("partition", "create", "app2", "--image", "blockbench.elf", "--volume", "vol2",
		"--", "--mode", "persist", "--blocks", "256", NULL));
	wait_part("app2", "running", "persist: wrote 256 blocks", 60000);
	out = ok("--json", "partition", "show", "app2", NULL);
	assert_non_null(strstr(out, "\"remote\": true"));
	assert_non_null(strstr(out, "\"transport\": \"tcp\""));
	assert_non_null(strstr(out, "\"vsp_node\": \"node-s\""));
	free(out);
	/* attached: the volume cannot go */
	{
		char *err = NULL;

		assert_int_equal(tc_fabctl(NULL, &err, "volume", "delete", "vol2", NULL), 4);
		assert_non_null(strstr(err, "app2"));
		free(err);
	}
	/* graceful stop through the shutdown IC */
	free(ok("partition", "stop", "app2", NULL));
	wait_part("app2", "stopped", NULL, 20000);
	free(ok("partition", "delete", "app2", NULL));
	free(ok("volume", "delete", "vol2", NULL));
}

/* Node failure: a partition with restart policy always comes back on the
 * other compute node and verifies what it wrote before. */
static void test_node_killed(void **state)
{
	char *out, node[64];
	int victim;

	if (skip_all)
		skip();
	free(ok("volume", "create", "vol3", "--size", "8M", NULL));
	free(ok("partition", "create", "db1", "--image", "blockbench.elf", "--volume", "vol3",
		"--restart", "always", "--", "--mode", "persist", "--blocks", "512", NULL));
	wait_part("db1", "running", "persist: wrote 512 blocks", 60000);
	out = ok("--json", "partition", "show", "db1", NULL);
	assert_int_equal(tc_json_get(out, "node", node, sizeof(node)), 0);
	free(out);
	victim = !strcmp(node, "node-a") ? 0 : 1;
	assert_string_equal(node, tc.cfg.nodes[victim].name);
	th_signal(tc.node_pid[victim], SIGKILL);
	th_wait_exit(tc.node_pid[victim], 10);
	{
		if (!tc_wait_part("db1", "running", "verified 512 blocks", node, 60000))
			fail_msg("db1 did not come back on the other node");
	}
	out = ok("--json", "partition", "show", "db1", NULL);
	assert_non_null(strstr(out, "\"restarts\": 1"));
	free(out);
	out = ok("partition", "explain", "db1", NULL);
	assert_non_null(strstr(out, "down"));
	free(out);
	/* the event log tells the story */
	out = ok("cluster", "events", "--limit", "200", NULL);
	assert_non_null(strstr(out, "lease expired"));
	assert_non_null(strstr(out, "restart 1"));
	free(out);
	/* the node returns; nothing of db1 runs there any more */
	tc_start_node(victim);
	wait_nodes_up(3);
	free(ok("partition", "stop", "db1", "--force", NULL));
	wait_part("db1", "stopped", NULL, 20000);
	free(ok("partition", "delete", "db1", NULL));
	free(ok("volume", "delete", "vol3", NULL));
}

/* Scheduler decisions visible to the operator: no fit, anti-affinity,
 * drained nodes. */
static void test_scheduling(void **state)
{
	char *out = NULL, *err = NULL, node1[64], node2[64];

	if (skip_all)
		skip();
	assert_int_equal(tc_fabctl(NULL, &err, "partition", "create", "huge", "--image", "waiter.elf",
				"--vcpus", "8", NULL),
			 5);
	assert_non_null(strstr(err, "node-a"));
	assert_non_null(strstr(err, "node-b"));
	assert_non_null(strstr(err, "node-s"));
	assert_non_null(strstr(err, "vCPU"));
	free(err);
	err = NULL;
	/* nothing was stored */
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "show", "huge", NULL), 3);

	free(ok("partition", "create", "g1", "--image", "waiter.elf", "--group", "ha", NULL));
	free(ok("partition", "create", "g2", "--image", "waiter.elf", "--group", "ha", NULL));
	out = ok("--json", "partition", "show", "g1", NULL);
	tc_json_get(out, "node", node1, sizeof(node1));
	free(out);
	out = ok("--json", "partition", "show", "g2", NULL);
	tc_json_get(out, "node", node2, sizeof(node2));
	free(out);
	assert_string_not_equal(node1, node2);
	assert_int_equal(tc_fabctl(NULL, &err, "partition", "create", "g3", "--image", "waiter.elf",
				"--group", "ha", NULL),
			 5);
	assert_non_null(strstr(err, "anti-affinity"));
	free(err);
	err = NULL;
	free(ok("partition", "delete", "g1", NULL));
	free(ok("partition", "delete", "g2", NULL));

	free(ok("node", "drain", "node-a", NULL));
	free(ok("partition", "create", "d1", "--image", "waiter.elf", NULL));
	out = ok("--json", "partition", "show", "d1", NULL);
	assert_non_null(strstr(out, "\"node\": \"node-b\""));
	free(out);
	out = ok("partition", "explain", "d1", NULL);
	assert_non_null(strstr(out, "drained"));
	free(out);
	free(ok("node", "undrain", "node-a", NULL));
	free(ok("partition", "delete", "d1", NULL));
}

/* A node certificate is refused at the admin API, whatever the request. */
static void test_roles(void **state)
{
	char cmd[1200], e[200], *err;
	const char *const reqs[][8] = {
		{ "node", "list", NULL },
		{ "volume", "create", "evil", "--size", "8M", NULL },
		{ "partition", "create", "evil", "--image", "waiter.elf", "--no-wait", NULL },
		{ "node", "drain", "node-a", NULL },
	};

	if (skip_all)
		skip();
	/* node-a's certificate and key, renamed to look like an admin's */
	snprintf(cmd, sizeof(cmd),
		 "cp %s/node-node-a.crt %s/admin-fake.crt && cp %s/node-node-a.key "
		 "%s/admin-fake.key",
		 tc.pki, tc.pki, tc.pki, tc.pki);
	assert_int_equal(system(cmd), 0);
	snprintf(e, sizeof(e), "%s/roles.err", tc.dir);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		const char *argv[16] = { FABCTL, "--controller", TC_CTL_ADDR, "--pki", tc.pki,
					 "--admin", "fake" };
		int n = 7;

		for (int k = 0; reqs[i][k]; k++)
			argv[n++] = reqs[i][k];
		argv[n] = NULL;
		assert_int_equal(th_run(NULL, e, tc.ns_hub, argv, 30), 6);
		err = th_slurp(e);
		assert_non_null(err);
		assert_non_null(strstr(err, "permission denied"));
		free(err);
	}
	/* nothing happened */
	assert_int_equal(tc_fabctl(NULL, NULL, "volume", "show", "evil", NULL), 3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "show", "evil", NULL), 3);
}

/* Unknown names and bad arguments: clear errors, documented exit codes. */
static void test_cli_errors(void **state)
{
	char *err = NULL;

	if (skip_all)
		skip();
	assert_int_equal(tc_fabctl(NULL, &err, "partition", "show", "nope", NULL), 3);
	assert_non_null(strstr(err, "nope"));
	free(err);
	assert_int_equal(tc_fabctl(NULL, NULL, "volume", "delete", "nope", NULL), 3);
	assert_int_equal(tc_fabctl(NULL, NULL, "node", "drain", "nope", NULL), 3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "create", "x1", "--image", "waiter.elf",
				"--volume", "nope", NULL),
			 3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "create", "x2", "--image", "../etc",
				NULL),
			 2);
	assert_int_equal(tc_fabctl(NULL, NULL, "volume", "create", "v9", "--size", "1000", NULL),
			 2);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "frobnicate", NULL), 2);
	/* a partition whose image the node lacks fails with the node's reason */
	free(ok("partition", "create", "noimg", "--image", "no-such-image", "--no-wait", NULL));
	wait_part("noimg", "failed", NULL, 20000);
	free(ok("partition", "delete", "noimg", NULL));
}

/*
 * The controller dies in the middle of creating a partition: before its
 * transaction commits (the partition must not exist afterwards) and after
 * (it must exist exactly once and end up running).
 */
static void test_controller_crash(void **state)
{
	char *out;
	int n = 0;

	if (skip_all)
		skip();
	th_signal(tc.ctld_pid, SIGTERM);
	th_wait_exit(tc.ctld_pid, 10);
	tc_start_ctld("partition-create-before-commit");
	wait_nodes_up(3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "create", "c1", "--image", "waiter.elf",
				NULL),
			 7);
	th_wait_exit(tc.ctld_pid, 10);
	tc_start_ctld("partition-create-after-commit");
	wait_nodes_up(3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "show", "c1", NULL), 3);
	assert_int_equal(tc_fabctl(NULL, NULL, "partition", "create", "c1", "--image", "waiter.elf",
				NULL),
			 7);
	th_wait_exit(tc.ctld_pid, 10);
	tc_start_ctld(NULL);
	wait_nodes_up(3);
	/* stored before the crash: it exists, and the nodes are told */
	wait_part("c1", "running", NULL, 20000);
	/* a retried create gets the same partition, not a second one */
	free(ok("partition", "create", "c1", "--image", "waiter.elf", NULL));
	out = ok("--json", "partition", "list", NULL);
	for (char *p = out; (p = strstr(p, "\"name\": \"c1\"")); p++)
		n++;
	free(out);
	assert_int_equal(n, 1);
	free(ok("partition", "delete", "c1", NULL));
}

/* The cluster picture. */
static void test_graph(void **state)
{
	char *out;

	if (skip_all)
		skip();
	out = ok("cluster", "graph", NULL);
	assert_non_null(strstr(out, "digraph"));
	assert_non_null(strstr(out, "node-s"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_remote),   cmocka_unit_test(test_channel_info),
		cmocka_unit_test(test_scheduling),     cmocka_unit_test(test_roles),
		cmocka_unit_test(test_cli_errors),     cmocka_unit_test(test_graph),
		cmocka_unit_test(test_node_killed),    cmocka_unit_test(test_controller_crash),
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	return skip_all ? 77 : rc;
}
