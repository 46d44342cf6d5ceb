// SPDX-License-Identifier: MIT
/*
 * Live migration through fabctl, as an operator would run it: a
 * controller and three nodes in network namespaces (node-a and node-b
 * compute, node-s storage only; every node serves the data plane, which
 * is where a migration's copy stream arrives). The guests check
 * themselves: blockbench --mode persist verifies every block it reads on
 * a disk served remotely by node-s, and memtest verifies every page of
 * its RAM against what it wrote and measures the gaps in its own run.
 *
 *   moves        both partitions migrated back and forth five times while
 *                they run: each move lands on the other compute node under
 *                a new epoch, and the guests never see an I/O error, a
 *                stale or foreign page, or a read that does not verify
 *   target dies  the target node killed mid-copy: the migration ends
 *                aborted, the partition runs on at the source under its
 *                epoch, and a later migration succeeds
 *   link cut     the target's link down mid-copy: the same
 *   restart      the controller killed mid-copy and restarted: the
 *                migration is resolved (aborted), the partition runs on
 *                exactly one node, and migrates afterwards
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
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tcluster.h"

static int skip_all;

static char *ok(const char *first, ...) __attribute__((sentinel));
static char *ok(const char *first, ...)
{
	char *out;
	va_list ap;
	int rc;

	va_start(ap, first);
	rc = tc_fabctl_expectv(&out, 600, first, ap);
	va_end(ap);
	assert_int_equal(rc, 0);
	return out;
}

static void wait_part(const char *name, const char *state, const char *console, int ms)
{
	if (!tc_wait_part(name, state, console, NULL, ms))
		fail_msg("partition %s: not %s", name, state);
}

static uint64_t part_epoch(const char *name)
{
	char *out = ok("--json", "partition", "show", name, NULL);
	char v[32];

	assert_int_equal(tc_json_get(out, "epoch", v, sizeof(v)), 0);
	free(out);
	return strtoull(v, NULL, 10);
}

static void part_where(const char *name, char *node, size_t len)
{
	assert_int_equal(tc_part_node(name, node, len), 0);
}

/* The partition's console (heap). */
static char *console(const char *name)
{
	return ok("partition", "console", name, NULL);
}

/* How many times needle occurs in text. */
static int count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/*
 * The guests' own verdicts so far: no MISMATCH or FAILED anywhere, and
 * every blockbench progress line "persist: R reads verified, E errors"
 * with E = 0.
 */
static void guest_clean(const char *name)
{
	char *con = console(name);

	if (strstr(con, "MISMATCH") || strstr(con, "FAILED")) {
		fprintf(stderr, "console of %s:\n%s", name, con);
		fail_msg("%s: the guest found bad data", name);
	}
	for (const char *p = con; (p = strstr(p, " reads verified, ")); p++) {
		long e = strtol(p + strlen(" reads verified, "), NULL, 10);

		if (e != 0) {
			fprintf(stderr, "console of %s:\n%s", name, con);
			fail_msg("%s: the guest saw %ld I/O errors", name, e);
		}
	}
	free(con);
}

struct mig_wait {
	const char *name, *phase;
};

static int mig_in(void *arg)
{
	struct mig_wait *w = arg;
	char *out = NULL, ph[32];
	int yes;

	yes = tc_fabctl(&out, NULL, "--json", "migration", "show", w->name, NULL) == 0 &&
	      tc_json_get(out, "phase", ph, sizeof(ph)) == 0 && !strcmp(ph, w->phase);
	free(out);
	return yes;
}

static void wait_mig(const char *name, const char *phase, int ms)
{
	struct mig_wait w = { name, phase };

	if (!th_wait(mig_in, &w, ms)) {
		char *out = NULL;

		tc_fabctl(&out, NULL, "migration", "show", name, NULL);
		fprintf(stderr, "%s", out ? out : "");
		free(out);
		tc_dump_all();
		fail_msg("migration of %s: not %s within %d ms", name, phase, ms);
	}
}

/* Starts `fabctl partition migrate NAME` in the background and waits for
 * it to be copying. */
static void migrate_until_copy(const char *name)
{
	free(ok("partition", "migrate", name, "--no-wait", NULL));
	wait_mig(name, "copy", 60000);
}

static int group_setup(void **state)
{
	static const struct tc_node nodes[] = {
		{ "node-a", 2, true },
		{ "node-b", 2, true },
		{ "node-s", 0, true },
	};
	const struct tc_cfg cfg = {
		.tag = "mig",
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

	if (th_kvm_missing("migration tests run partitions on the compute nodes"))
		return (skip_all = 1), 0;
	rc = tc_start(&cfg, why, sizeof(why));
	if (rc == 77) {
		printf("SKIP: migration tests need network namespaces: %s\n", why);
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

static void test_moves(void **state)
{
	static const char *const parts[] = { "disk1", "ram1" };
	char node[64], before[64], *con;
	int lines_before;

	if (skip_all)
		skip();
	free(ok("volume", "create", "mv1", "--size", "8M", "--node", "node-s", NULL));
	free(ok("partition", "create", "disk1", "--image", "blockbench", "--memory", "64M",
		"--volume", "mv1", "--", "--mode", "persist", "--blocks", "512", NULL));
	free(ok("partition", "create", "ram1", "--image", "memtest", "--memory", "64M", "--",
		"--mib", "24", "--rate", "4", NULL));
	wait_part("disk1", "running", "persist: wrote 512 blocks", 120000);
	wait_part("ram1", "running", "memtest: t=", 120000);

	for (int move = 1; move <= 5; move++) {
		for (size_t k = 0; k < 2; k++) {
			const char *name = parts[k];
			uint64_t epoch = part_epoch(name);
			char *out;

			part_where(name, before, sizeof(before));
			out = ok("partition", "migrate", name, NULL);
			fprintf(stderr, "move %d of %s from %s:\n%s", move, name, before, out);
			free(out);
			wait_part(name, "running", NULL, 30000);
			part_where(name, node, sizeof(node));
			assert_string_not_equal(node, before);
			assert_string_not_equal(node, "node-s");
			assert_true(part_epoch(name) > epoch);
			guest_clean(name);
		}
	}
	/* The guests went on after the last move: a new progress line each. */
	con = console("disk1");
	lines_before = count(con, " reads verified, ");
	free(con);
	{
		int n = 0;

		for (int i = 0; i < 100 && n <= lines_before; i++) {
			usleep(200000);
			con = console("disk1");
			n = count(con, " reads verified, ");
			free(con);
		}
		assert_true(n > lines_before);
	}
	guest_clean("disk1");
	guest_clean("ram1");
	/* Stopped through the shutdown IC: both end clean. */
	free(ok("partition", "stop", "disk1", NULL));
	free(ok("partition", "stop", "ram1", NULL));
	wait_part("disk1", "stopped", NULL, 30000);
	wait_part("ram1", "stopped", NULL, 30000);
	guest_clean("disk1");
	guest_clean("ram1");
	con = console("ram1");
	if (!strstr(con, "memtest: OK"))
		fprintf(stderr, "console of ram1:\n%s", con);
	assert_non_null(strstr(con, "memtest: OK"));
	free(con);
	{
		char *out = ok("migration", "list", NULL);

		assert_true(count(out, "done") >= 10);
		free(out);
	}
	free(ok("partition", "delete", "disk1", NULL));
	free(ok("partition", "delete", "ram1", NULL));
	free(ok("volume", "delete", "mv1", NULL));
}

/* A partition big enough that its copy takes a while, even here. */
static void big_partition(const char *name)
{
	free(ok("partition", "create", name, "--image", "memtest", "--memory", "256M", "--",
		"--mib", "160", "--rate", "8", NULL));
	wait_part(name, "running", "memtest: t=", 120000);
}

/* After an aborted migration: still on `node` under `epoch`, running,
 * its guest still making progress and clean. */
static void still_home(const char *name, const char *node, uint64_t epoch)
{
	char where[64], *con;
	int n0, n = 0;

	wait_mig(name, "aborted", 60000);
	wait_part(name, "running", NULL, 30000);
	part_where(name, where, sizeof(where));
	assert_string_equal(where, node);
	assert_int_equal(part_epoch(name), epoch);
	con = console(name);
	n0 = count(con, "memtest: t=");
	free(con);
	for (int i = 0; i < 100 && n <= n0; i++) {
		usleep(200000);
		con = console(name);
		n = count(con, "memtest: t=");
		free(con);
	}
	assert_true(n > n0);
	guest_clean(name);
}

static void test_target_dies(void **state)
{
	char src[64], *out;
	uint64_t epoch;
	int target;

	if (skip_all)
		skip();
	big_partition("big1");
	part_where("big1", src, sizeof(src));
	epoch = part_epoch("big1");
	target = !strcmp(src, "node-a") ? 1 : 0;
	migrate_until_copy("big1");
	th_signal(tc.node_pid[target], SIGKILL);
	th_wait_exit(tc.node_pid[target], 10);
	still_home("big1", src, epoch);
	out = ok("migration", "show", "big1", NULL);
	fprintf(stderr, "%s", out);
	free(out);
	/* The target comes back; now it works. */
	tc_start_node(target);
	assert_true(tc_wait_nodes_up(3, 30000));
	free(ok("partition", "migrate", "big1", NULL));
	wait_part("big1", "running", NULL, 30000);
	guest_clean("big1");
	free(ok("partition", "delete", "big1", NULL));
}

static void test_link_cut(void **state)
{
	char src[64], cmd[512];
	uint64_t epoch;
	int target;

	if (skip_all)
		skip();
	big_partition("big2");
	part_where("big2", src, sizeof(src));
	epoch = part_epoch("big2");
	target = !strcmp(src, "node-a") ? 1 : 0;
	migrate_until_copy("big2");
	snprintf(cmd, sizeof(cmd), "ip -n %s link set eth0 down", tc.ns_node[target]);
	assert_int_equal(system(cmd), 0);
	sleep(8);
	snprintf(cmd, sizeof(cmd), "ip -n %s link set eth0 up", tc.ns_node[target]);
	assert_int_equal(system(cmd), 0);
	still_home("big2", src, epoch);
	assert_true(tc_wait_nodes_up(3, 30000));
	free(ok("partition", "migrate", "big2", NULL));
	wait_part("big2", "running", NULL, 30000);
	guest_clean("big2");
	free(ok("partition", "delete", "big2", NULL));
}

static void test_controller_restart(void **state)
{
	char src[64], *out;
	uint64_t epoch;
	int on = 0;

	if (skip_all)
		skip();
	big_partition("big3");
	part_where("big3", src, sizeof(src));
	epoch = part_epoch("big3");
	migrate_until_copy("big3");
	th_signal(tc.ctld_pid, SIGKILL);
	th_wait_exit(tc.ctld_pid, 10);
	tc_start_ctld(NULL);
	assert_true(tc_wait_nodes_up(3, 30000));
	still_home("big3", src, epoch);
	/* On one node only, as every node tells the controller. */
	for (int i = 0; i < 3; i++) {
		out = ok("--json", "node", "show", tc.cfg.nodes[i].name, NULL);
		on += strstr(out, "\"big3\"") != NULL;
		free(out);
	}
	assert_int_equal(on, 1);
	free(ok("partition", "migrate", "big3", NULL));
	wait_part("big3", "running", NULL, 30000);
	guest_clean("big3");
	free(ok("partition", "delete", "big3", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_moves),
		cmocka_unit_test(test_target_dies),
		cmocka_unit_test(test_link_cut),
		cmocka_unit_test(test_controller_restart),
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	return skip_all ? 77 : rc;
}
