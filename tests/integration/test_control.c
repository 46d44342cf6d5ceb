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
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CTL_ADDR "10.77.0.1:7700"
#define LEASE_MS "2000"

static char dir[64], pki[128], prefix[64], ns_hub[96], ns_node[3][96];
static char images[512];
static pid_t ctld_pid, node_pid[3];
static int skip_all;
static const char *const node_names[3] = { "node-a", "node-b", "node-s" };
static const char *const node_addrs[3] = { "10.77.0.11", "10.77.0.12", "10.77.0.13" };

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void dump(const char *path)
{
	char *s = th_slurp(path);

	if (!s)
		return;
	fprintf(stderr, "----- %s -----\n%s", path, s);
	free(s);
}

static void dump_all(void)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/fabctld.log", dir);
	dump(path);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s.log", dir, node_names[i]);
		dump(path);
	}
}

/* Runs fabctl in the hub namespace; its stdout (and stderr) are returned
 * in heap buffers (may be NULL). Returns the exit status. */
static int fabctl(char **out, char **err, const char *first, ...)
{
	const char *argv[64] = { FABCTL, "--controller", CTL_ADDR, "--pki", pki };
	char o[256], e[256];
	int n = 5, rc;
	va_list ap;

	argv[n++] = first;
	va_start(ap, first);
	for (const char *a; n < 63 && (a = va_arg(ap, const char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(o, sizeof(o), "%s/fabctl.out", dir);
	snprintf(e, sizeof(e), "%s/fabctl.err", dir);
	rc = th_run(o, e, ns_hub, argv, 120);
	if (out)
		*out = th_slurp(o);
	if (err)
		*err = th_slurp(e);
	return rc;
}

/* fabctl that must succeed; returns its stdout. */
static char *ok(const char *first, ...)
{
	const char *argv[64] = { FABCTL, "--controller", CTL_ADDR, "--pki", pki };
	char o[256], e[256];
	int n = 5, rc;
	va_list ap;

	argv[n++] = first;
	va_start(ap, first);
	for (const char *a; n < 63 && (a = va_arg(ap, const char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(o, sizeof(o), "%s/fabctl.out", dir);
	snprintf(e, sizeof(e), "%s/fabctl.err", dir);
	rc = th_run(o, e, ns_hub, argv, 120);
	if (rc) {
		fprintf(stderr, "fabctl");
		for (int i = 5; argv[i]; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, ": exit %d\n", rc);
		dump(o);
		dump(e);
		dump_all();
	}
	assert_int_equal(rc, 0);
	return th_slurp(o);
}

static pid_t start_ctld(const char *crash_at)
{
	char db[160], log[160];
	const char *argv[] = { FABCTLD,	    "--listen",	  CTL_ADDR,    "--db", db,
			       "--pki",	    pki,	  "--lease-ms", LEASE_MS,
			       "--stop-timeout-ms", "3000", NULL };
	pid_t pid;

	snprintf(db, sizeof(db), "%s/fabctld.db", dir);
	snprintf(log, sizeof(log), "%s/fabctld.log", dir);
	if (crash_at)
		setenv("FABCTLD_TEST_CRASH_AT", crash_at, 1);
	pid = th_spawn(log, ns_hub, argv);
	unsetenv("FABCTLD_TEST_CRASH_AT");
	return pid;
}

static pid_t start_node(int i)
{
	char conf[160], log[160], vol[160], state[160], text[2048];
	const char *argv[] = { FABNODE, "serve", "--config", conf, NULL };

	snprintf(conf, sizeof(conf), "%s/%s.conf", dir, node_names[i]);
	snprintf(log, sizeof(log), "%s/%s.log", dir, node_names[i]);
	snprintf(vol, sizeof(vol), "%s/%s-volumes", dir, node_names[i]);
	snprintf(state, sizeof(state), "%s/%s-state", dir, node_names[i]);
	mkdir(vol, 0700);
	mkdir(state, 0700);
	snprintf(text, sizeof(text),
		 "name = %s\ncontroller = " CTL_ADDR "\npki = %s\n"
		 "transport = tcp\n"
		 "vcpus = %s\nmemory = 1G\n"
		 "volume_dir = %s\nimage_dir = %s\nstate_dir = %s\n"
		 "%s%s%s",
		 node_names[i], pki, i == 2 ? "0" : "2", vol, images, state,
		 i == 2 ? "data_listen = " : "", i == 2 ? node_addrs[i] : "",
		 i == 2 ? ":7800\n" : "");
	write_file(conf, text);
	return th_spawn(log, ns_node[i], argv);
}

struct up_arg {
	int want;
};

static int nodes_up(void *arg)
{
	struct up_arg *u = arg;
	char *out = NULL;
	int n = 0;

	if (fabctl(&out, NULL, "--json", "node", "list", NULL) == 0 && out)
		for (char *p = out; (p = strstr(p, "\"state\": \"up\"")); p++)
			n++;
	free(out);
	return n >= u->want;
}

static void wait_nodes_up(int want)
{
	struct up_arg u = { want };

	if (!th_wait(nodes_up, &u, 20000)) {
		dump_all();
		fail_msg("expected %d nodes up", want);
	}
}

static int group_setup(void **state)
{
	char why[256];

	if (th_kvm_missing("controller tests run partitions on the compute nodes"))
		return (skip_all = 1), 0;
	if (th_netns_create("ctl", 3, prefix, sizeof(prefix), why, sizeof(why))) {
		printf("SKIP: controller tests need network namespaces: %s\n", why);
		skip_all = 1;
		return 0;
	}
	snprintf(ns_hub, sizeof(ns_hub), "%s-hub", prefix);
	for (int i = 0; i < 3; i++)
		snprintf(ns_node[i], sizeof(ns_node[i]), "%s-n%d", prefix, i + 1);
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	snprintf(images, sizeof(images), "%s", GUEST_IMAGES);
	{
		const char *a1[] = { FABCTL, "pki", "init", "--dir", pki, "--nodes",
				     "node-a,node-b,node-s", NULL };

		if (th_run(NULL, NULL, NULL, a1, 30))
			return -1;
	}
	ctld_pid = start_ctld(NULL);
	for (int i = 0; i < 3; i++)
		node_pid[i] = start_node(i);
	wait_nodes_up(3);
	return 0;
}

static int logs_clean(void)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:" };
	struct dirent *de;
	int clean = 1;
	DIR *d;

	if (!dir[0] || !(d = opendir(dir)))
		return 1;
	while ((de = readdir(d))) {
		char path[400];
		size_t n = strlen(de->d_name);

		if (n < 4 || strcmp(de->d_name + n - 4, ".log"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			if (th_file_has(path, marks[i])) {
				dump(path);
				clean = 0;
				break;
			}
	}
	closedir(d);
	return clean;
}

static int group_teardown(void **state)
{
	int clean;

	th_cleanup_processes();
	clean = logs_clean();
	th_cleanup();
	if (!clean) {
		fprintf(stderr, "sanitizer reports in process logs (above)\n");
		return -1;
	}
	return 0;
}

/* The value of "key": "..." at the first occurrence after from (copied). */
static int json_get(const char *json, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *p, *q;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '"') {
		p++;
		q = strchr(p, '"');
	} else {
		q = p + strcspn(p, ",}\n ");
	}
	if (!q || (size_t)(q - p) >= len)
		return -1;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return 0;
}

struct part_wait {
	const char *name;
	const char *state;	 /* wanted "state" */
	const char *console;	 /* wanted text in the console, or NULL */
	const char *not_node;	 /* node it must not be on, or NULL */
};

static int part_is(void *arg)
{
	struct part_wait *w = arg;
	char *out = NULL, st[32], node[64];
	int yes = 0;

	if (fabctl(&out, NULL, "--json", "partition", "show", w->name, NULL) == 0 &&
	    json_get(out, "state", st, sizeof(st)) == 0 && !strcmp(st, w->state)) {
		yes = 1;
		if (w->not_node && json_get(out, "node", node, sizeof(node)) == 0 &&
		    !strcmp(node, w->not_node))
			yes = 0;
	}
	free(out);
	if (yes && w->console) {
		out = NULL;
		yes = fabctl(&out, NULL, "partition", "console", w->name, NULL) == 0 && out &&
		      strstr(out, w->console);
		free(out);
	}
	return yes;
}

static void wait_part(const char *name, const char *state, const char *console, int ms)
{
	struct part_wait w = { name, state, console, NULL };

	if (!th_wait(part_is, &w, ms)) {
		char *out = NULL;

		fabctl(&out, NULL, "partition", "show", name, NULL);
		fprintf(stderr, "%s", out ? out : "");
		free(out);
		out = NULL;
		fabctl(&out, NULL, "partition", "console", name, NULL);
		fprintf(stderr, "console:\n%s", out ? out : "");
		free(out);
		dump_all();
		fail_msg("partition %s: not %s%s%s within %d ms", name, state,
			 console ? " with console " : "", console ? console : "", ms);
	}
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
	assert_int_equal(json_get(out, "node", node, sizeof(node)), 0);
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

		assert_int_equal(fabctl(NULL, &err, "volume", "delete", "vol2", NULL), 4);
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
	assert_int_equal(json_get(out, "node", node, sizeof(node)), 0);
	free(out);
	victim = !strcmp(node, "node-a") ? 0 : 1;
	assert_string_equal(node, node_names[victim]);
	th_signal(node_pid[victim], SIGKILL);
	th_wait_exit(node_pid[victim], 10);
	{
		struct part_wait w = { "db1", "running", "verified 512 blocks", node };

		if (!th_wait(part_is, &w, 60000)) {
			dump_all();
			fail_msg("db1 did not come back on the other node");
		}
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
	node_pid[victim] = start_node(victim);
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
	assert_int_equal(fabctl(NULL, &err, "partition", "create", "huge", "--image", "waiter.elf",
				"--vcpus", "8", NULL),
			 5);
	assert_non_null(strstr(err, "node-a"));
	assert_non_null(strstr(err, "node-b"));
	assert_non_null(strstr(err, "node-s"));
	assert_non_null(strstr(err, "vCPU"));
	free(err);
	err = NULL;
	/* nothing was stored */
	assert_int_equal(fabctl(NULL, NULL, "partition", "show", "huge", NULL), 3);

	free(ok("partition", "create", "g1", "--image", "waiter.elf", "--group", "ha", NULL));
	free(ok("partition", "create", "g2", "--image", "waiter.elf", "--group", "ha", NULL));
	out = ok("--json", "partition", "show", "g1", NULL);
	json_get(out, "node", node1, sizeof(node1));
	free(out);
	out = ok("--json", "partition", "show", "g2", NULL);
	json_get(out, "node", node2, sizeof(node2));
	free(out);
	assert_string_not_equal(node1, node2);
	assert_int_equal(fabctl(NULL, &err, "partition", "create", "g3", "--image", "waiter.elf",
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
		 pki, pki, pki, pki);
	assert_int_equal(system(cmd), 0);
	snprintf(e, sizeof(e), "%s/roles.err", dir);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		const char *argv[16] = { FABCTL, "--controller", CTL_ADDR, "--pki", pki,
					 "--admin", "fake" };
		int n = 7;

		for (int k = 0; reqs[i][k]; k++)
			argv[n++] = reqs[i][k];
		argv[n] = NULL;
		assert_int_equal(th_run(NULL, e, ns_hub, argv, 30), 6);
		err = th_slurp(e);
		assert_non_null(err);
		assert_non_null(strstr(err, "permission denied"));
		free(err);
	}
	/* nothing happened */
	assert_int_equal(fabctl(NULL, NULL, "volume", "show", "evil", NULL), 3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "show", "evil", NULL), 3);
}

/* Unknown names and bad arguments: clear errors, documented exit codes. */
static void test_cli_errors(void **state)
{
	char *err = NULL;

	if (skip_all)
		skip();
	assert_int_equal(fabctl(NULL, &err, "partition", "show", "nope", NULL), 3);
	assert_non_null(strstr(err, "nope"));
	free(err);
	assert_int_equal(fabctl(NULL, NULL, "volume", "delete", "nope", NULL), 3);
	assert_int_equal(fabctl(NULL, NULL, "node", "drain", "nope", NULL), 3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "create", "x1", "--image", "waiter.elf",
				"--volume", "nope", NULL),
			 3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "create", "x2", "--image", "../etc",
				NULL),
			 2);
	assert_int_equal(fabctl(NULL, NULL, "volume", "create", "v9", "--size", "1000", NULL),
			 2);
	assert_int_equal(fabctl(NULL, NULL, "partition", "frobnicate", NULL), 2);
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
	th_signal(ctld_pid, SIGTERM);
	th_wait_exit(ctld_pid, 10);
	ctld_pid = start_ctld("partition-create-before-commit");
	wait_nodes_up(3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "create", "c1", "--image", "waiter.elf",
				NULL),
			 7);
	th_wait_exit(ctld_pid, 10);
	ctld_pid = start_ctld("partition-create-after-commit");
	wait_nodes_up(3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "show", "c1", NULL), 3);
	assert_int_equal(fabctl(NULL, NULL, "partition", "create", "c1", "--image", "waiter.elf",
				NULL),
			 7);
	th_wait_exit(ctld_pid, 10);
	ctld_pid = start_ctld(NULL);
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
