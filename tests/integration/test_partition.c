// SPDX-License-Identifier: MIT
/*
 * Partitions on real KVM: guest images from guest/ run through the nodehv
 * API in this process (so crashes next to healthy partitions, 100 at once and
 * 1,000 create/destroy cycles are observed from inside the "node") and
 * through `fabnode run` for the command line's contract.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fab/log.h"
#include "fab/nodehv.h"
#include "harness.h"

static char tmp[64];

/* ---- helpers ------------------------------------------------------------ */

static void capture(struct nhv_partition *p, const char *b, size_t n, void *arg)
{
	th_text_append(arg, b, n);
}

struct run {
	struct nhv_partition *p;
	struct th_text con;
	uint8_t *img;
};

/* Creates (and starts, if start) a partition running image with args. */
static void part_new(struct run *r, uint64_t id, const char *image, uint64_t mib, int start,
		     int argc, const char *const *argv)
{
	struct nhv_partition_cfg cfg = { 0 };
	char err[256];
	size_t len;
	int rc;

	th_text_init(&r->con);
	r->img = th_load(image, &len);
	cfg.id = id;
	cfg.ram_bytes = mib << 20;
	cfg.vcpus = 1;
	cfg.image = r->img;
	cfg.image_len = len;
	cfg.argc = argc;
	cfg.argv = argv;
	cfg.console_cb = capture;
	cfg.cb_arg = &r->con;
	rc = nhv_partition_create(&cfg, &r->p, err, sizeof(err));
	if (rc)
		fail_msg("create: %s", err);
	if (start)
		assert_int_equal(nhv_partition_start(r->p), 0);
}

static void part_free(struct run *r)
{
	nhv_partition_destroy(r->p);
	free(r->img);
	th_text_fini(&r->con);
}

static int group_setup(void **state)
{
	th_tmpdir(tmp, sizeof(tmp));
	fab_log_init("test_partition", FAB_LOG_ERR);
	return 0;
}

static int group_teardown(void **state)
{
	th_cleanup();
	return 0;
}

#define NEED_KVM()                                     \
	do {                                           \
		if (th_kvm_missing("partition tests")) \
			skip();                        \
	} while (0)

/* ---- fabnode run -------------------------------------------------------- */

static void test_run_hello(void **state)
{
	char out[128], err[128], log[128];
	const char *argv[] = { FABNODE, "run", GUEST_HELLO, "--console-log", log, "--",
			       "alpha", "b c", NULL };
	char *o;

	NEED_KVM();
	snprintf(log, sizeof(log), "%s/hello.console", tmp);
	snprintf(out, sizeof(out), "%s/hello.out", tmp);
	snprintf(err, sizeof(err), "%s/hello.err", tmp);
	assert_int_equal(th_run(out, err, NULL, argv, 60), 0);
	o = th_slurp(out);
	assert_non_null(strstr(o, "hello from partition 1"));
	assert_non_null(strstr(o, "arg[1]=alpha"));
	assert_non_null(strstr(o, "arg[2]=b c"));
	free(o);
	/* The per-partition console log holds the same text. */
	assert_true(th_file_has(log, "hello from partition 1"));
	assert_true(th_file_has(log, "arg[2]=b c"));
}

/* Writes a copy of the hello image with a patch applied, runs it through
 * fabnode run, and checks the exit code and message. */
static void run_patched(const char *name, void (*patch)(uint8_t *img, size_t *len), int want_rc,
			const char *want_msg)
{
	char path[128], err[128];
	const char *argv[] = { FABNODE, "run", path, NULL };
	size_t len;
	uint8_t *img = th_load(GUEST_HELLO, &len);
	FILE *f;
	char *e;

	patch(img, &len);
	snprintf(path, sizeof(path), "%s/%s.elf", tmp, name);
	snprintf(err, sizeof(err), "%s/%s.err", tmp, name);
	f = fopen(path, "wb");
	fwrite(img, 1, len, f);
	fclose(f);
	free(img);
	assert_int_equal(th_run(NULL, err, NULL, argv, 60), want_rc);
	e = th_slurp(err);
	if (!strstr(e, want_msg))
		fail_msg("%s: stderr '%s' lacks '%s'", name, e, want_msg);
	free(e);
}

static void patch_truncate(uint8_t *img, size_t *len)
{
	*len = 200;
}

static void patch_machine(uint8_t *img, size_t *len)
{
	((Elf64_Ehdr *)img)->e_machine = EM_AARCH64;
}

static void patch_far_segment(uint8_t *img, size_t *len)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff);

	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !(ph[i].p_flags & PF_X)) {
			ph[i].p_vaddr = ph[i].p_paddr = 0x7ff00000; /* far above 64 MiB */
			return;
		}
	}
	fail_msg("hello has no data segment to move");
}

static void test_run_bad_images(void **state)
{
	NEED_KVM();
	run_patched("truncated", patch_truncate, 126, "truncated");
	run_patched("machine", patch_machine, 126, "not x86-64");
	run_patched("far", patch_far_segment, 126, "outside");
}

static void test_run_exit_codes(void **state)
{
	char err[128];
	const char *crash[] = { FABNODE, "run", GUEST_CRASH, "--", "ud2", NULL };
	const char *seven[] = { FABNODE, "run", GUEST_CRASH, "--", "exit", NULL };
	const char *nomem[] = { FABNODE, "run", GUEST_HELLO, "--memory", "3M", NULL };
	char *e;

	NEED_KVM();
	snprintf(err, sizeof(err), "%s/crash.err", tmp);
	assert_int_equal(th_run(NULL, err, NULL, crash, 60), 125);
	e = th_slurp(err);
	assert_non_null(strstr(e, "triple fault"));
	free(e);
	assert_int_equal(th_run(NULL, NULL, NULL, seven, 60), 7);
	assert_int_equal(th_run(NULL, err, NULL, nomem, 60), 2);
	assert_true(th_file_has(err, "multiple of 2 MiB"));
}

/* ---- in-process ---------------------------------------------------------- */

static uint64_t fnv_of_xorshift(uint64_t mib, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull, h = 0xcbf29ce484222325ull;

	for (uint64_t i = 0; i < (mib << 20) / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		for (int b = 0; b < 8; b++) {
			h ^= (x >> (8 * b)) & 0xff;
			h *= 0x100000001b3ull;
		}
	}
	return h;
}

static uint64_t parse_fnv(const char *con)
{
	const char *s = strstr(con, "fnv1a64=");

	if (!s)
		fail_msg("no checksum in console output '%s'", con);
	return strtoull(s + 8, NULL, 16);
}

static void test_compute_matches_host(void **state)
{
	const char *argv[] = { "compute", "8", "42", NULL };
	struct run r;

	NEED_KVM();
	part_new(&r, 7, GUEST_COMPUTE, 64, 1, 3, argv);
	assert_int_equal(nhv_partition_wait(r.p, 60000), NHV_PART_EXITED);
	assert_int_equal(nhv_partition_exit_status(r.p), 0);
	assert_int_equal(parse_fnv(r.con.buf), fnv_of_xorshift(8, 42));
	assert_non_null(strstr(r.con.buf, "mib=8 seed=42"));
	part_free(&r);
}

/* A guest cannot grow its console log past the limit. */
static void test_console_log_limit(void **state)
{
	const char *argv[] = { "hello", "0123456789012345678901234567890123456789", NULL };
	struct nhv_partition_cfg cfg = { .id = 3,
					 .ram_bytes = 8u << 20,
					 .vcpus = 1,
					 .argc = 2,
					 .argv = argv,
					 .console_limit = 30 };
	struct nhv_partition *p;
	char path[128], err[256], *log;
	size_t len;

	NEED_KVM();
	snprintf(path, sizeof(path), "%s/limited.console", tmp);
	cfg.console_path = path;
	cfg.image = th_load(GUEST_HELLO, &len);
	cfg.image_len = len;
	assert_int_equal(nhv_partition_create(&cfg, &p, err, sizeof(err)), 0);
	assert_int_equal(nhv_partition_start(p), 0);
	assert_int_equal(nhv_partition_wait(p, 30000), NHV_PART_EXITED);
	nhv_partition_destroy(p);
	free((void *)cfg.image);
	log = th_slurp(path);
	assert_non_null(strstr(log, "console log limit reached"));
	assert_null(strstr(log, "0123456789")); /* the argument line was dropped */
	assert_true(strlen(log) < 30 + 80);
	free(log);
}

static void test_crash_is_contained(void **state)
{
	static const char *const modes[][2] = {
		{ "ud2", "triple fault" },
		{ "null", "triple fault" },
		{ "gp", "triple fault" },
		{ "panic", "deliberate panic 42" },
	};
	const char *cargv[] = { "compute", "32", "3", NULL };
	struct run healthy, bad;
	char reason[256];

	NEED_KVM();
	/* A healthy partition keeps computing while the others crash. */
	part_new(&healthy, 1, GUEST_COMPUTE, 64, 1, 3, cargv);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const char *argv[] = { "crash", modes[i][0], NULL };

		part_new(&bad, 100 + i, GUEST_CRASH, 8, 1, 2, argv);
		assert_int_equal(nhv_partition_wait(bad.p, 30000), NHV_PART_CRASHED);
		nhv_partition_reason(bad.p, reason, sizeof(reason));
		if (!strstr(reason, modes[i][1]))
			fail_msg("crash %s: reason '%s'", modes[i][0], reason);
		part_free(&bad);
	}
	assert_int_equal(nhv_partition_wait(healthy.p, 60000), NHV_PART_EXITED);
	assert_int_equal(nhv_partition_exit_status(healthy.p), 0);
	assert_int_equal(parse_fnv(healthy.con.buf), fnv_of_xorshift(32, 3));
	part_free(&healthy);
}

static void test_hostile_rejected(void **state)
{
	const char *argv[] = { "hostile", NULL };
	struct run r;

	NEED_KVM();
	part_new(&r, 9, GUEST_HOSTILE, 16, 1, 1, argv);
	assert_int_equal(nhv_partition_wait(r.p, 30000), NHV_PART_EXITED);
	if (nhv_partition_exit_status(r.p) != 0 || !strstr(r.con.buf, " 0 unexpected"))
		fail_msg("hostile guest got through:\n%s", r.con.buf);
	assert_null(strstr(r.con.buf, "UNEXPECTED"));
	part_free(&r);
}

static void test_pause_resume_stop(void **state)
{
	const char *argv[] = { "compute", "256", "5", NULL };
	struct run r;

	NEED_KVM();
	part_new(&r, 11, GUEST_COMPUTE, 300, 1, 3, argv);
	assert_int_equal(nhv_partition_pause(r.p), 0);
	assert_int_equal(nhv_partition_state(r.p), NHV_PART_PAUSED);
	assert_int_equal(nhv_partition_pause(r.p), -EINVAL);
	assert_int_equal(nhv_partition_resume(r.p), 0);
	assert_int_equal(nhv_partition_state(r.p), NHV_PART_RUNNING);
	assert_int_equal(nhv_partition_stop(r.p), 0);
	assert_int_equal(nhv_partition_wait(r.p, 10000), NHV_PART_STOPPED);
	assert_int_equal(nhv_partition_resume(r.p), -EINVAL);
	part_free(&r);
}

static uint64_t io_count(struct run *r)
{
	struct nhv_partition_stats st;

	nhv_partition_stats(r->p, &st);
	return st.unhandled_io;
}

/* True when the guest (bench "exit" loop) makes progress over 100 ms. */
static int progressing(struct run *r)
{
	uint64_t a = io_count(r);

	usleep(100000);
	return io_count(r) != a;
}

static void *toggler(void *arg)
{
	struct run *r = arg;

	for (int i = 0; i < 100; i++) {
		nhv_partition_pause(r->p);
		nhv_partition_resume(r->p);
	}
	return NULL;
}

/* Paused means the vCPUs do not run, also when control calls race. */
static void test_pause_really_stops(void **state)
{
	const char *argv[] = { "bench", "exit", "100000000", NULL };
	pthread_t t1, t2;
	struct run r;

	NEED_KVM();
	part_new(&r, 14, GUEST_BENCH, 8, 1, 3, argv);
	assert_true(progressing(&r));
	assert_int_equal(nhv_partition_pause(r.p), 0);
	assert_false(progressing(&r));
	assert_int_equal(nhv_partition_resume(r.p), 0);
	assert_true(progressing(&r));
	/* Two threads toggling at once: the final state tells the truth. */
	pthread_create(&t1, NULL, toggler, &r);
	pthread_create(&t2, NULL, toggler, &r);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	if (nhv_partition_state(r.p) == NHV_PART_PAUSED)
		assert_false(progressing(&r));
	else
		assert_true(progressing(&r));
	assert_int_equal(nhv_partition_stop(r.p), 0);
	part_free(&r);
}

static int waiter_woke(struct run *r, int n)
{
	char want[64];

	snprintf(want, sizeof(want), "wake %d status 0\n", n);
	return th_text_has(&r->con, want);
}

/* A vCPU blocked in WAIT survives pause/resume unseen and wakes on signal. */
static void test_wait_pause_signal(void **state)
{
	const char *argv[] = { "waiter", "3", NULL };
	struct run r;

	NEED_KVM();
	part_new(&r, 12, GUEST_WAITER, 8, 1, 2, argv);
	for (int i = 0; i < 3; i++) {
		usleep(50000);
		assert_false(waiter_woke(&r, i));
		assert_int_equal(nhv_partition_pause(r.p), 0);
		assert_int_equal(nhv_partition_resume(r.p), 0);
		usleep(20000);
		assert_false(waiter_woke(&r, i)); /* the pause did not wake it */
		nhv_partition_signal(r.p, 0);
		for (int t = 0; t < 200 && !waiter_woke(&r, i); t++)
			usleep(10000);
		if (!waiter_woke(&r, i)) {
			char why[256];

			nhv_partition_reason(r.p, why, sizeof(why));
			fail_msg("no wake %d: state %s (%s), console:\n%s", i,
				 nhv_part_state_name(nhv_partition_state(r.p)), why, r.con.buf);
		}
	}
	assert_int_equal(nhv_partition_wait(r.p, 10000), NHV_PART_EXITED);
	assert_int_equal(nhv_partition_exit_status(r.p), 0);
	assert_non_null(strstr(r.con.buf, "waiter: done"));
	part_free(&r);

	/* Stopping a partition whose vCPU is blocked in WAIT is prompt. */
	part_new(&r, 13, GUEST_WAITER, 8, 1, 2, argv);
	usleep(50000);
	assert_int_equal(nhv_partition_stop(r.p), 0);
	assert_int_equal(nhv_partition_wait(r.p, 2000), NHV_PART_STOPPED);
	part_free(&r);
}

static void test_hundred_at_once(void **state)
{
	enum { N = 100 };
	static struct run r[N];
	const char *argv[] = { "hello", NULL };

	NEED_KVM();
	for (int i = 0; i < N; i++)
		part_new(&r[i], 1000 + i, GUEST_HELLO, 16, 0, 1, argv);
	for (int i = 0; i < N; i++)
		assert_int_equal(nhv_partition_start(r[i].p), 0);
	for (int i = 0; i < N; i++) {
		char want[64];

		assert_int_equal(nhv_partition_wait(r[i].p, 120000), NHV_PART_EXITED);
		assert_int_equal(nhv_partition_exit_status(r[i].p), 0);
		snprintf(want, sizeof(want), "hello from partition %d", 1000 + i);
		assert_non_null(strstr(r[i].con.buf, want));
	}
	for (int i = 0; i < N; i++)
		part_free(&r[i]);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static long status_field(const char *field)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	long v = -1;

	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = atol(line + strlen(field) + 1);
	fclose(f);
	return v;
}

static void test_no_leaks_over_1000_cycles(void **state)
{
	const char *argv[] = { "hello", NULL };
	size_t len;
	uint8_t *img;
	int fds0 = 0, threads0 = 0;
	long rss0 = 0, rss1 = 0;

	NEED_KVM();
	img = th_load(GUEST_HELLO, &len);
	for (int i = 0; i < 1050; i++) {
		struct nhv_partition_cfg cfg = {
			.id = (uint64_t)i,
			.ram_bytes = 4u << 20,
			.vcpus = 1,
			.image = img,
			.image_len = len,
			.argc = 1,
			.argv = argv,
		};
		struct nhv_partition *p;
		char err[256];

		if (i == 50) { /* after warm-up: allocator pools, KVM caches */
			fds0 = count_fds();
			threads0 = (int)status_field("Threads:");
			rss0 = status_field("VmRSS:");
		}
		if (nhv_partition_create(&cfg, &p, err, sizeof(err)))
			fail_msg("cycle %d: %s", i, err);
		/* Half the cycles run the guest, half never start it. */
		if (i & 1) {
			assert_int_equal(nhv_partition_start(p), 0);
			assert_int_equal(nhv_partition_wait(p, 30000), NHV_PART_EXITED);
		}
		nhv_partition_destroy(p);
	}
	rss1 = status_field("VmRSS:");
	assert_int_equal(count_fds(), fds0);
	assert_int_equal(status_field("Threads:"), threads0);
	fprintf(stderr, "leak check: 1000 cycles, fds %d, threads %d, RSS %ld -> %ld KiB\n", fds0,
		threads0, rss0, rss1);
	free(img);
#ifdef __SANITIZE_ADDRESS__
	/* ASan's quarantine holds freed memory, so RSS says nothing here;
	 * LeakSanitizer checks the heap at exit instead. */
	(void)rss0;
#else
	assert_true(rss1 - rss0 < 4096);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_hello),
		cmocka_unit_test(test_run_bad_images),
		cmocka_unit_test(test_run_exit_codes),
		cmocka_unit_test(test_compute_matches_host),
		cmocka_unit_test(test_console_log_limit),
		cmocka_unit_test(test_crash_is_contained),
		cmocka_unit_test(test_hostile_rejected),
		cmocka_unit_test(test_pause_resume_stop),
		cmocka_unit_test(test_wait_pause_signal),
		cmocka_unit_test(test_pause_really_stops),
		cmocka_unit_test(test_hundred_at_once),
		cmocka_unit_test(test_no_leaks_over_1000_cycles),
	};

	/* Without KVM nothing here can be verified: say so and let ctest
	 * report the test as skipped, never as passed. */
	if (th_kvm_missing("partition tests"))
		return 77;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
