// SPDX-License-Identifier: MIT
/*
 * Remote VMBus disks between real fabnode processes in network namespaces:
 * node-a (10.77.0.11) runs a partition whose disk is served by node-b
 * (10.77.0.12) through the rvmbus stub and skeleton over TLS. The guest is
 * blockbench, which verifies every block it reads.
 *
 * Needs /dev/kvm, root and iproute2; skips loudly without them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "fab/blockpattern.h"
#include "harness.h"

#define ADDR_A "10.77.0.11"
#define ADDR_B "10.77.0.12"
#define ADDR_C "10.77.0.13"
#define DISK_MIB 16

static char dir[64], pki[128], evil_pki[128], prefix[64], ns_a[96], ns_b[96], ns_c[96];
static char disk[160], conf_b[160], conf_c[160];
static pid_t node_b;
static int skip_all;

static void wait_io(const char *log);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* node-a's config: web1's disk0 served by node at addr. */
static void conf_a(char *path, size_t len, const char *name, const char *pki_dir,
		   const char *node, const char *addr, unsigned timeout_ms)
{
	char text[1024];

	snprintf(path, len, "%s/%s.conf", dir, name);
	snprintf(text, sizeof(text),
		 "name = node-a\n"
		 "controller = 10.77.0.1:7700\n"
		 "pki = %s\n"
		 "transport = tcp\n"
		 "[remote web1/disk0]\n"
		 "node = %s\n"
		 "address = %s:7800\n"
		 "export = disk0\n"
		 "timeout_ms = %u\n",
		 pki_dir, node, addr, timeout_ms);
	write_file(path, text);
}

/* Fills the image with blockpattern generation gen, seed seed. */
static void fill_disk(uint64_t gen, uint64_t seed)
{
	size_t len = (size_t)DISK_MIB << 20;
	uint8_t *img = malloc(len);
	int fd;

	assert_non_null(img);
	blockpattern_fill(img, 0, len / BLOCKPATTERN_BLOCK_SIZE, gen, seed);
	fd = open(disk, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, len), (ssize_t)len);
	close(fd);
	free(img);
}

static pid_t start_b(const char *log)
{
	const char *argv[] = { FABNODE, "serve", "--config", conf_b, NULL };

	return th_spawn(log, ns_b, argv);
}

static int b_serving(void *arg)
{
	return th_file_has(arg, "serving 1 export(s)");
}

static int group_setup(void **state)
{
	char why[256];

	if (th_kvm_missing("remote VMBus tests need a partition on node-a"))
		return (skip_all = 1), 0;
	if (th_netns_create("rmt", 3, prefix, sizeof(prefix), why, sizeof(why))) {
		printf("SKIP: remote VMBus tests need network namespaces: %s\n", why);
		skip_all = 1;
		return 0;
	}
	snprintf(ns_a, sizeof(ns_a), "%s-n1", prefix);
	snprintf(ns_b, sizeof(ns_b), "%s-n2", prefix);
	snprintf(ns_c, sizeof(ns_c), "%s-n3", prefix);
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	snprintf(evil_pki, sizeof(evil_pki), "%s/evil-pki", dir);
	snprintf(disk, sizeof(disk), "%s/disk0.img", dir);
	{
		const char *a1[] = { FABCTL, "pki",	"init", "--dir", pki, "--nodes",
				     "node-a,node-b,node-c", NULL };
		const char *a2[] = { FABCTL,   "pki",	  "init", "--dir",
				     evil_pki, "--nodes", "node-a", NULL };

		if (th_run(NULL, NULL, NULL, a1, 30) || th_run(NULL, NULL, NULL, a2, 30))
			return -1;
	}
	snprintf(conf_b, sizeof(conf_b), "%s/node-b.conf", dir);
	{
		char text[1024];

		snprintf(text, sizeof(text),
			 "name = node-b\ncontroller = 10.77.0.1:7700\npki = %s\ntransport = tcp\n"
			 "data_listen = " ADDR_B ":7800\n"
			 "[export disk0]\npath = %s\n",
			 pki, disk);
		write_file(conf_b, text);
		/* An impostor: node-c's own certificate, serving at its own
		 * address, where node-a is told node-b lives. */
		snprintf(conf_c, sizeof(conf_c), "%s/node-c.conf", dir);
		snprintf(text, sizeof(text),
			 "name = node-c\ncontroller = 10.77.0.1:7700\npki = %s\ntransport = tcp\n"
			 "data_listen = " ADDR_C ":7800\n"
			 "[export disk0]\npath = %s\n",
			 pki, disk);
		write_file(conf_c, text);
	}
	fill_disk(1, 1);
	return 0;
}

/* Sanitizer reports in any process's log fail the run (the processes
 * are built with the tests' sanitizers in the asan preset). */
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

/* Each test: a fresh node-b serving the disk. */
static char log_b[160];
static int test_setup(void **state)
{
	static int n;

	if (skip_all)
		return 0;
	snprintf(log_b, sizeof(log_b), "%s/node-b-%d.log", dir, ++n);
	node_b = start_b(log_b);
	if (!th_wait(b_serving, log_b, 10000)) {
		dump(log_b);
		return -1;
	}
	return 0;
}

static int test_teardown(void **state)
{
	if (!skip_all && node_b > 0)
		th_stop(node_b);
	node_b = 0;
	return 0;
}

/* Runs blockbench in web1 on node-a (stdout to out, stderr to err). */
static pid_t spawn_a(const char *conf, const char *log, const char *const *bargs)
{
	const char *argv[64] = { FABNODE, "run", GUEST_BLOCKBENCH, "--config", conf, "--name",
				 "web1", "--log-level", "info", "--" };
	int n = 10;

	for (int i = 0; bargs[i]; i++)
		argv[n++] = bargs[i];
	argv[n] = NULL;
	return th_spawn(log, ns_a, argv);
}

static int run_a(const char *conf, const char *log, const char *const *bargs, int timeout_s)
{
	const char *argv[64] = { FABNODE, "run", GUEST_BLOCKBENCH, "--config", conf, "--name",
				 "web1", "--log-level", "info", "--" };
	int n = 10;

	for (int i = 0; bargs[i]; i++)
		argv[n++] = bargs[i];
	argv[n] = NULL;
	return th_run(log, log, ns_a, argv, timeout_s);
}

/* Every phase line of blockbench in text: submitted == completed. Returns
 * the number of phases seen. */
static int phases_complete(const char *text)
{
	const char *p = text;
	int n = 0;

	while ((p = strstr(p, "submitted="))) {
		unsigned long long s = 0, c = 0;

		if (sscanf(p, "submitted=%llu completed=%llu", &s, &c) != 2 || s != c)
			fail_msg("a phase did not complete every request it submitted:\n%s", text);
		n++;
		p++;
	}
	return n;
}

static unsigned long long field(const char *text, const char *name)
{
	const char *p = strstr(text, name);
	unsigned long long v = 0;

	if (!p || sscanf(p + strlen(name), "%llu", &v) != 1)
		fail_msg("no %s in:\n%s", name, text);
	return v;
}

/* The largest value of name=N in a file (0 if none). */
static unsigned long long max_field(const char *path, const char *name)
{
	unsigned long long best = 0, v;
	char *text = th_slurp(path);

	for (const char *p = text; p && (p = strstr(p, name)); p++)
		if (sscanf(p + strlen(name), "%llu", &v) == 1 && v > best)
			best = v;
	free(text);
	return best;
}

/* The guest writes the disk through node-b, reads every block back; the
 * image on node-b holds exactly what it wrote. */
static void test_remote_disk_verified(void **state)
{
	char conf[160], log[160], *out;
	const char *wargs[] = { "--mode", "seqwrite", "--bs", "4096", "--qd", "16", "--gen",
				"5",	  "--seed",   "9",    "--flush", NULL };
	const char *vargs[] = { "--mode", "verify", "--bs", "4096", "--qd",
				"32",	  "--gen",  "5",    "--seed", "9", NULL };
	const char *largs[] = { "--mode", "write-then-verify", "--bs", "1048576", "--qd", "4",
				"--blocks", "12", "--ops", "24", "--gen", "7", "--seed", "3", NULL };
	uint8_t *img;
	size_t len;
	int rc;

	if (skip_all)
		skip();
	conf_a(conf, sizeof(conf), "a-ok", pki, "node-b", ADDR_B, 10000);
	snprintf(log, sizeof(log), "%s/a-write.log", dir);
	rc = run_a(conf, log, wargs, 120);
	out = th_slurp(log);
	if (rc != 0 || !strstr(out, "blockbench: OK") || !strstr(out, "bound to export disk0"))
		fail_msg("exit %d:\n%s\n(node-b: %s)", rc, out, log_b);
	assert_true(phases_complete(out) >= 1);
	free(out);

	/* The whole working set (blockbench's default, the first 4096 blocks
	 * of 4 KiB) has generation 5 on node-b's disk, the rest is as filled. */
	img = th_load(disk, &len);
	assert_int_equal(len, (size_t)DISK_MIB << 20);
	assert_int_equal(blockpattern_verify(img, 0, 4096 * 8, 5, 9, NULL), 0);
	assert_int_equal(
		blockpattern_verify(img + 4096 * 4096, 4096 * 8, len / 512 - 4096 * 8, 1, 1, NULL),
		0);
	free(img);

	snprintf(log, sizeof(log), "%s/a-verify.log", dir);
	rc = run_a(conf, log, vargs, 120);
	out = th_slurp(log);
	if (rc != 0 || !strstr(out, "blockbench: OK") || !strstr(out, "errors=0"))
		fail_msg("exit %d:\n%s", rc, out);
	free(out);

	/* Buffers larger than the inline limit (256 KiB) move by remote read
	 * and write of the guest's RAM instead. */
	snprintf(log, sizeof(log), "%s/a-large.log", dir);
	rc = run_a(conf, log, largs, 120);
	out = th_slurp(log);
	if (rc != 0 || !strstr(out, "blockbench: OK") || !strstr(out, "errors=0"))
		fail_msg("exit %d:\n%s", rc, out);
	free(out);
	assert_true(max_field(log_b, "remote_read_bytes=") >= 12u << 20);
	assert_true(max_field(log_b, "remote_write_bytes=") >= 12u << 20);
	fill_disk(1, 1);
}

/* node-a's link is down for 3 s in the middle of a run at queue depth 32:
 * the run completes, every read verifies, every request completes once. */
static void test_link_cut(void **state)
{
	char conf[160], log[160], *out;
	const char *args[] = { "--mode", "write-then-verify", "--bs", "4096", "--qd", "32",
			       "--ms",	 "7000",	      "--seed", "21", "--gen", "2", NULL };
	const char *down[] = { "ip", "link", "set", "eth0", "down", NULL };
	const char *up[] = { "ip", "link", "set", "eth0", "up", NULL };
	pid_t a;
	int st;

	if (skip_all)
		skip();
	conf_a(conf, sizeof(conf), "a-cut", pki, "node-b", ADDR_B, 30000);
	snprintf(log, sizeof(log), "%s/a-cut.log", dir);
	a = spawn_a(conf, log, args);
	wait_io(log);
	assert_int_equal(th_run(NULL, NULL, ns_a, down, 10), 0);
	sleep(3);
	assert_int_equal(th_run(NULL, NULL, ns_a, up, 10), 0);
	/* Both nodes log their counters on SIGUSR1. */
	sleep(1);
	th_signal(a, SIGUSR1);
	th_signal(node_b, SIGUSR1);
	st = th_wait_exit(a, 120);
	out = th_slurp(log);
	if (st != 0 || !strstr(out, "blockbench: OK")) {
		fprintf(stderr, "----- partition log -----\n%s", out);
		fail_msg("exit %d (log above)", st);
	}
	assert_int_equal(phases_complete(out), 2);
	assert_int_equal(field(out, "io_errors="), 0);
	if (!strstr(out, "link to node node-b at " ADDR_B ":7800: up") ||
	    !strstr(out, "remote web1/disk0 (export disk0): "))
		fail_msg("no counters from node-a on SIGUSR1:\n%s", out);
	free(out);
	assert_true(th_file_has(log_b, "session from node node-a: up"));
	assert_true(th_file_has(log_b, "export disk0 for web1/disk0 on node node-a: "));
	fill_disk(1, 1);
}

static int io_started(void *arg)
{
	return th_file_has(arg, "blockbench: disk relid");
}

/* Until the guest has its disk and is doing I/O: booting and binding take
 * a moment natively and many under TCG (the tests' VM without /dev/kvm). */
static void wait_io(const char *log)
{
	if (!th_wait(io_started, (void *)log, 60000))
		fail_msg("the guest did not open its disk within 60 s:\n%s", th_slurp(log));
	usleep(500000);
}

static int a_failing(void *arg)
{
	return th_file_has(arg, "unreachable for");
}

static int a_rebound(void *arg)
{
	return th_file_has(arg, "the node restarted");
}

/*
 * node-b is killed in the middle of a run: within the timeout the guest
 * gets I/O errors (SCSI NOT READY), a second partition on node-a carries
 * on; node-b comes back, the stub binds again and the same guest's reads
 * succeed (and verify) again.
 */
static void test_vsp_node_killed(void **state)
{
	char conf[160], log[160], log2[160], log_b2[160], local[160], *out;
	const char *args[] = { "--mode", "randread", "--bs", "4096", "--qd", "32",
			       "--ms",	 "14000",    "--seed", "1", "--gen", "1", NULL };
	const char *other[] = { FABNODE,       "run",	       GUEST_BLOCKBENCH, "--disk",
				local,	       "--",	       "--mode",	 "write-then-verify",
				"--ms",	       "12000",	       "--qd",		 "8",
				NULL };
	int64_t killed, failed_at;
	pid_t a, a2;
	int st;

	if (skip_all)
		skip();
	snprintf(local, sizeof(local), "%s/local.img", dir);
	{
		int fd = open(local, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 8 << 20), 0);
		close(fd);
	}
	conf_a(conf, sizeof(conf), "a-kill", pki, "node-b", ADDR_B, 2000);
	snprintf(log, sizeof(log), "%s/a-kill.log", dir);
	snprintf(log2, sizeof(log2), "%s/a-other.log", dir);
	a2 = th_spawn(log2, ns_a, other);
	a = spawn_a(conf, log, args);
	wait_io(log);
	th_signal(node_b, SIGKILL);
	th_stop(node_b);
	killed = now_ms();
	node_b = 0;
	if (!th_wait(a_failing, log, 8000))
		fail_msg("no I/O errors after node-b died:\n%s", th_slurp(log));
	failed_at = now_ms();
	/* Timeout 2000 ms, checked every 50 ms by the stub. */
	printf("guest I/O failing %lld ms after node-b was killed (timeout 2000 ms)\n",
	       (long long)(failed_at - killed));
	assert_true(failed_at - killed <= 2000 + 1000);
	sleep(1);
	snprintf(log_b2, sizeof(log_b2), "%s/node-b-restarted.log", dir);
	node_b = start_b(log_b2);
	if (!th_wait(a_rebound, log, 10000))
		fail_msg("node-a did not bind again:\n%s", th_slurp(log));
	st = th_wait_exit(a, 120);
	out = th_slurp(log);
	/* Errors make blockbench fail (exit 1): a clean exit, not a crash. */
	if (st != 1 || !strstr(out, "blockbench: FAILED")) {
		fprintf(stderr, "----- partition log -----\n%s", out);
		fail_msg("exit %d (log above)", st);
	}
	assert_int_equal(phases_complete(out), 1);
	assert_true(field(out, "io_errors=") > 0);
	assert_int_equal(field(out, "bad="), 0);
	/* After node-b came back, reads succeeded and verified again. */
	assert_true(field(out, "ok_after_last_error=") > 100);
	assert_non_null(strstr(out, "sense 2/08/00"));
	free(out);

	st = th_wait_exit(a2, 120);
	out = th_slurp(log2);
	if (st != 0 || !strstr(out, "blockbench: OK"))
		fail_msg("the other partition on node-a: exit %d:\n%s", st, out);
	free(out);
}

/*
 * node-b frozen (SIGSTOP): its connection stays open but silent. node-a's
 * link hears nothing for 5 s (the keepalive's dead time) and drops it, the
 * guest's I/O fails after the timeout; after SIGCONT the link comes back
 * and the same guest's I/O verifies again.
 */
static void test_vsp_node_frozen(void **state)
{
	char conf[160], log[160], *out;
	const char *args[] = { "--mode", "randread", "--bs", "4096", "--qd", "8",
			       "--ms",	 "16000",    "--seed", "1", "--gen", "1", NULL };
	int64_t frozen, failed_at;
	pid_t a;
	int st;

	if (skip_all)
		skip();
	conf_a(conf, sizeof(conf), "a-freeze", pki, "node-b", ADDR_B, 1000);
	snprintf(log, sizeof(log), "%s/a-freeze.log", dir);
	a = spawn_a(conf, log, args);
	wait_io(log);
	th_signal(node_b, SIGSTOP);
	frozen = now_ms();
	if (!th_wait(a_failing, log, 12000)) {
		th_signal(node_b, SIGCONT);
		fail_msg("no I/O errors while node-b was frozen:\n%s", th_slurp(log));
	}
	failed_at = now_ms();
	printf("guest I/O failing %lld ms after node-b froze (dead time 5000 ms + timeout "
	       "1000 ms)\n",
	       (long long)(failed_at - frozen));
	assert_true(th_file_has(log, "nothing heard for 5000 ms"));
	th_signal(node_b, SIGCONT);
	st = th_wait_exit(a, 120);
	out = th_slurp(log);
	if (st != 1 || !strstr(out, "blockbench: FAILED")) {
		fprintf(stderr, "----- partition log -----\n%s", out);
		fail_msg("exit %d (log above)", st);
	}
	assert_true(field(out, "io_errors=") > 0);
	assert_int_equal(field(out, "bad="), 0);
	assert_true(field(out, "ok_after_last_error=") > 100);
	free(out);
}

/* A node-a with a certificate from another CA gets nowhere; so does one
 * sent to an impostor holding a valid certificate for another name. The
 * guest's I/O fails after the timeout instead of hanging. */
static void test_identity_refused(void **state)
{
	char conf[160], log[160], log_c[160], *out;
	const char *args[] = { "--mode", "randread", "--ops", "10", NULL };
	const char *c_argv[] = { FABNODE, "serve", "--config", conf_c, NULL };
	pid_t c;
	int rc;

	if (skip_all)
		skip();
	conf_a(conf, sizeof(conf), "a-evil", evil_pki, "node-b", ADDR_B, 1500);
	snprintf(log, sizeof(log), "%s/a-evil.log", dir);
	rc = run_a(conf, log, args, 60);
	out = th_slurp(log);
	/* storvsc's first request (BEGIN_INITIALIZATION) fails: no disk. */
	if (rc != 1 || !strstr(out, "storage open: -5") || strstr(out, "bound to export"))
		fail_msg("exit %d:\n%s", rc, out);
	free(out);
	assert_false(th_file_has(log_b, "rvmbus session from"));
	assert_true(th_file_has(log_b, "ended before it was accepted"));

	snprintf(log_c, sizeof(log_c), "%s/node-c.log", dir);
	c = th_spawn(log_c, ns_c, c_argv);
	assert_true(th_wait(b_serving, log_c, 10000));
	conf_a(conf, sizeof(conf), "a-impostor", pki, "node-b", ADDR_C, 1500);
	snprintf(log, sizeof(log), "%s/a-impostor.log", dir);
	rc = run_a(conf, log, args, 60);
	out = th_slurp(log);
	if (rc != 1 || !strstr(out, "storage open: -5") || strstr(out, "bound to export"))
		fail_msg("exit %d:\n%s", rc, out);
	free(out);
	assert_false(th_file_has(log_c, "rvmbus session from"));
	th_stop(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_remote_disk_verified, test_setup,
						test_teardown),
		cmocka_unit_test_setup_teardown(test_link_cut, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_vsp_node_killed, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_vsp_node_frozen, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_identity_refused, test_setup, test_teardown),
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
	if (skip_all)
		return 77;
	return rc;
}
