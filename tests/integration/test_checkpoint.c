// SPDX-License-Identifier: MIT
/*
 * Checkpoint and restore of live partitions in one process (the core of
 * live migration): a guest running blockbench on a local disk is
 * quiesced, saved, destroyed and restored from a RAM copy and the state
 * blob, again and again, and must finish with every read verified; RAM
 * must come back bit for bit; pre-copy with dirty logging must miss no
 * page (guest or host written); bad blobs must be refused; a quiesce that
 * times out must leave the partition running.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fab/log.h"
#include "fab/nodehv.h"
#include "harness.h"

#define RAM_BYTES (64ull << 20)

static char tmp[64];
static int64_t t0;

/* Progress on stderr, so a stall in the VM shows where it is. */
static void step(const char *fmt, ...)
{
	struct timespec now;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &now);
	fprintf(stderr, "[%7.2f s] ",
		(double)((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - t0) / 1000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct run {
	struct nhv_partition *p;
	struct th_text con;
	uint8_t *img;
	char disk[128];
};

/* The run of the test in progress: its teardown destroys the partition
 * that a failed check left behind. */
static struct run *live;

static void capture(struct nhv_partition *p, const char *b, size_t n, void *arg)
{
	th_text_append(&((struct run *)arg)->con, b, n);
}

static void base_cfg(struct run *r, struct nhv_partition_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->console_cb = capture;
	cfg->cb_arg = r;
}

static void make_disk(char *path, size_t len, const char *name)
{
	int fd;

	snprintf(path, len, "%s/%s", tmp, name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
}

/* blockbench, random writes for ms then every block read back. */
static void start_bench(struct run *r, uint64_t id, const char *ms)
{
	const char *argv[] = { "blockbench", "--mode", "write-then-verify",
			       "--qd",	     "32",     "--blocks",
			       "256",	     "--ms",   ms };
	struct nhv_partition_cfg cfg;
	char err[256];
	size_t len;

	memset(r, 0, sizeof(*r));
	live = r;
	th_text_init(&r->con);
	make_disk(r->disk, sizeof(r->disk), "disk.img");
	r->img = th_load(GUEST_BLOCKBENCH, &len);
	base_cfg(r, &cfg);
	cfg.id = id;
	cfg.ram_bytes = RAM_BYTES;
	cfg.vcpus = 1;
	cfg.image = r->img;
	cfg.image_len = len;
	cfg.argc = 9;
	cfg.argv = argv;
	if (nhv_partition_create(&cfg, &r->p, err, sizeof(err)))
		fail_msg("create: %s", err);
	if (nhv_partition_attach_disk(r->p, r->disk, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(nhv_partition_attach_ic(r->p), 0);
	assert_int_equal(nhv_partition_start(r->p), 0);
	step("partition %llu: blockbench started for %s ms", (unsigned long long)id, ms);
}

static void finish(struct run *r, const char *want)
{
	int st;

	step("waiting for the guest to finish");
	st = nhv_partition_wait(r->p, 300000);

	if (st != NHV_PART_EXITED || nhv_partition_exit_status(r->p) != 0 ||
	    !th_text_has(&r->con, want)) {
		char why[256];

		nhv_partition_reason(r->p, why, sizeof(why));
		fail_msg("partition ended %s (%s), console:\n%s",
			 st >= 0 ? nhv_part_state_name((enum nhv_part_state)st) : "(timeout)", why,
			 r->con.buf);
	}
	step("guest finished: %s", want);
	nhv_partition_destroy(r->p);
	r->p = NULL;
	free(r->img);
	r->img = NULL;
	th_text_fini(&r->con);
	live = NULL;
}

/* The source is quiesced and its state saved; replaces it by a partition
 * restored from ram and the blob, checks RAM came back bit for bit, starts
 * it. */
static void move(struct run *r, const uint8_t *ram, const uint8_t *blob, size_t len)
{
	const struct nhv_dev_binding devs[] = {
		{ .kind = NHV_BIND_DISK, .path = r->disk },
		{ .kind = NHV_BIND_IC },
	};
	struct nhv_partition_cfg cfg;
	struct nhv_partition *np;
	uint64_t bytes;
	uint8_t *nram;
	char err[256];

	step("destroying the source");
	nhv_partition_destroy(r->p);
	r->p = NULL;
	step("restoring (%zu byte blob)", len);
	base_cfg(r, &cfg);
	if (nhv_partition_restore(&cfg, ram, RAM_BYTES, blob, len, devs, 2, &np, err, sizeof(err)))
		fail_msg("restore: %s", err);
	nram = nhv_partition_ram(np, &bytes);
	assert_int_equal(bytes, RAM_BYTES);
	assert_int_equal(memcmp(nram, ram, RAM_BYTES), 0);
	assert_int_equal(nhv_partition_state(np), NHV_PART_CREATED);
	r->p = np;
	assert_int_equal(nhv_partition_start(np), 0);
	step("restored partition started");
}

/* A quiesce that failed: with the partition's state, so a guest that
 * ended early shows as such. */
static void quiesce_failed(struct run *r, const char *err)
{
	char why[256];
	int st = (int)nhv_partition_state(r->p);

	nhv_partition_reason(r->p, why, sizeof(why));
	fail_msg("quiesce: %s (partition %s: %s), console:\n%s", err,
		 nhv_part_state_name((enum nhv_part_state)st), why, r->con.buf);
}

static void checkpoint(struct run *r, uint8_t *ram, uint8_t **blob, size_t *len)
{
	char err[256];

	step("quiescing");
	if (nhv_partition_quiesce(r->p, 10000, err, sizeof(err)))
		quiesce_failed(r, err);
	step("saving");
	assert_int_equal(nhv_partition_save_state(r->p, blob, len), 0);
	memcpy(ram, nhv_partition_ram(r->p, NULL), RAM_BYTES);
}

/* Fails with the partition's state and console unless it runs. */
static void assert_running(struct run *r, const char *when)
{
	char why[256];
	int st = (int)nhv_partition_state(r->p);

	if (st == NHV_PART_RUNNING)
		return;
	nhv_partition_reason(r->p, why, sizeof(why));
	fail_msg("%s: partition %s (%s), console:\n%s", when,
		 nhv_part_state_name((enum nhv_part_state)st), why, r->con.buf);
}

/* Where the saved vCPU 0 stood: RIP and RSP of its registers, which
 * follow the header (32), the config record (8 + 32), the vCPU record's
 * header and index (8 + 4) and the vtx state's header (16). */
static void saved_rip(const uint8_t *blob, size_t len, uint64_t *rip, uint64_t *rsp)
{
	size_t regs = 32 + 40 + 12 + 16;

	*rip = *rsp = 0;
	if (len >= regs + 18 * 8) {
		memcpy(rip, blob + regs + 16 * 8, 8);
		memcpy(rsp, blob + regs + 6 * 8, 8);
	}
}

/* After a restored guest died: restores the same RAM and blob again a few
 * times, to tell a bad saved state (dies every time) from a race. */
static void replay(struct run *r, const uint8_t *ram, const uint8_t *blob, size_t len)
{
	const struct nhv_dev_binding devs[] = {
		{ .kind = NHV_BIND_DISK, .path = r->disk },
		{ .kind = NHV_BIND_IC },
	};
	struct nhv_partition_cfg cfg;
	uint64_t rip, rsp;

	saved_rip(blob, len, &rip, &rsp);
	step("replaying the last move (saved at rip %#llx rsp %#llx)", (unsigned long long)rip,
	     (unsigned long long)rsp);
	for (int k = 0; k < 3; k++) {
		struct nhv_partition *np;
		char err[256], why[256];
		int st;

		base_cfg(r, &cfg);
		if (nhv_partition_restore(&cfg, ram, RAM_BYTES, blob, len, devs, 2, &np, err,
					  sizeof(err))) {
			step("replay %d: restore: %s", k, err);
			continue;
		}
		nhv_partition_start(np);
		usleep(2000 * 1000);
		st = (int)nhv_partition_state(np);
		nhv_partition_reason(np, why, sizeof(why));
		step("replay %d: %s (%s)", k, nhv_part_state_name((enum nhv_part_state)st), why);
		nhv_partition_destroy(np);
	}
}

/* (1) and (2): five moves during one blockbench run (CKPT_MOVES others,
 * to look for rare failures). */
static void test_five_moves(void **state)
{
	uint8_t *ram = malloc(RAM_BYTES);
	static struct run r; /* static: the teardown reads it after a failed check */
	const char *env = getenv("CKPT_MOVES");
	int moves = env ? atoi(env) : 5;
	char ms[16];
	uint64_t beats;
	int64_t age;
	uint8_t *last = NULL;
	size_t last_len = 0;

	assert_non_null(ram);
	assert_true(moves > 0 && moves < 1000);
	/* The guest's clock stands still while it is moved. */
	snprintf(ms, sizeof(ms), "%d", 1000 * moves);
	start_bench(&r, 41, ms);
	for (int i = 0; i < moves; i++) {
		uint64_t rip, rsp;

		usleep(400 * 1000);
		step("move %d of %d", i + 1, moves);
		if (last && nhv_partition_state(r.p) != NHV_PART_RUNNING) {
			char why[256];

			nhv_partition_reason(r.p, why, sizeof(why));
			step("the guest restored by the last move died: %s", why);
			fprintf(stderr, "console:\n%s\n", r.con.buf);
			nhv_partition_destroy(r.p);
			r.p = NULL;
			replay(&r, ram, last, last_len);
			fail_msg("restored guest died: %s", why);
		}
		assert_running(&r, "before the move");
		free(last);
		checkpoint(&r, ram, &last, &last_len);
		saved_rip(last, last_len, &rip, &rsp);
		step("saved at rip %#llx rsp %#llx", (unsigned long long)rip,
		     (unsigned long long)rsp);
		move(&r, ram, last, last_len);
	}
	/* Heartbeats go on answering on the restored channel. */
	step("heartbeat");
	for (int i = 0; i < 50; i++) {
		if (!nhv_partition_heartbeat(r.p, &beats, &age) && beats > 0 && age < 3000)
			break;
		usleep(100 * 1000);
	}
	if (nhv_partition_state(r.p) != NHV_PART_RUNNING) {
		char why[256];

		nhv_partition_reason(r.p, why, sizeof(why));
		step("the guest restored by the last move died: %s", why);
		fprintf(stderr, "console:\n%s\n", r.con.buf);
		nhv_partition_destroy(r.p);
		r.p = NULL;
		replay(&r, ram, last, last_len);
		fail_msg("restored guest died: %s", why);
	}
	assert_int_equal(nhv_partition_heartbeat(r.p, &beats, &age), 0);
	assert_true(beats > 0);
	finish(&r, "blockbench: OK");
	free(last);
	free(ram);
}

/* (3): pre-copy rounds, then stop-and-copy; the copy must equal RAM. */
static void test_precopy(void **state)
{
	size_t bmbytes;
	uint64_t *bm;
	uint8_t *dst = malloc(RAM_BYTES), *ram, *blob;
	size_t len, pages = 0;
	static struct run r; /* static: the teardown reads it after a failed check */
	char err[256];

	assert_non_null(dst);
	/* Long enough that the guest still runs at the switch on a slow
	 * (emulated) host: pre-copy takes a second or two there. */
	start_bench(&r, 42, "6000");
	usleep(300 * 1000);
	ram = nhv_partition_ram(r.p, NULL);
	bmbytes = nhv_partition_dirty_bytes(r.p);
	bm = malloc(bmbytes);
	assert_non_null(bm);
	assert_int_equal(nhv_partition_dirty_begin(r.p), 0);
	memcpy(dst, ram, RAM_BYTES);
	for (int round = 0; round <= 3; round++) {
		step("pre-copy round %d", round);
		if (round == 3) {
			if (nhv_partition_quiesce(r.p, 10000, err, sizeof(err)))
				quiesce_failed(&r, err);
		} else {
			usleep(200 * 1000);
		}
		assert_int_equal(nhv_partition_dirty_fetch(r.p, bm, bmbytes), 0);
		for (size_t pg = 0; pg < RAM_BYTES / 4096; pg++) {
			if (bm[pg / 64] & (1ull << (pg % 64))) {
				memcpy(dst + pg * 4096, ram + pg * 4096, 4096);
				pages++;
			}
		}
	}
	assert_true(pages > 0);
	/* Nothing written since the last fetch was missed. */
	for (size_t pg = 0; pg < RAM_BYTES / 4096; pg++)
		if (memcmp(dst + pg * 4096, ram + pg * 4096, 4096))
			fail_msg("page %zu changed without being reported dirty", pg);
	nhv_partition_dirty_end(r.p);
	assert_int_equal(nhv_partition_save_state(r.p, &blob, &len), 0);
	move(&r, dst, blob, len);
	free(blob);
	finish(&r, "blockbench: OK");
	free(bm);
	free(dst);
}

/* FNV-1a 64 of the blob with its checksum field (bytes 24..31) zero. */
static void reseal(uint8_t *b, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	memset(b + 24, 0, 8);
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	memcpy(b + 24, &h, 8);
}

/* (4): truncated and corrupted blobs are refused, never crash. */
static void test_bad_blobs(void **state)
{
	const struct nhv_dev_binding devs[] = {
		{ .kind = NHV_BIND_DISK },
		{ .kind = NHV_BIND_IC },
	};
	struct nhv_dev_binding d[2];
	struct nhv_partition_cfg cfg;
	struct nhv_partition *np;
	uint8_t *blob, *bad, *ram = malloc(RAM_BYTES);
	size_t len;
	static struct run r; /* static: the teardown reads it after a failed check */
	char err[256];
	unsigned seed = 12345, accepted = 0;

	start_bench(&r, 43, "3000");
	usleep(300 * 1000);
	checkpoint(&r, ram, &blob, &len);
	assert_int_equal(nhv_partition_state_check(blob, len, err, sizeof(err)), 0);
	memcpy(d, devs, sizeof(d));
	d[0].path = r.disk;
	base_cfg(&r, &cfg);
	bad = malloc(len);
	step("truncations");
	/* Every truncation. */
	for (size_t n = 0; n < len; n += n < 256 ? 1 : 97) {
		int rc = nhv_partition_state_check(blob, n, err, sizeof(err));

		assert_int_equal(rc, -EBADMSG);
	}
	assert_int_equal(
		nhv_partition_restore(&cfg, NULL, 0, blob, len - 1, d, 2, &np, err, sizeof(err)),
		-EBADMSG);
	assert_non_null(strstr(err, "truncated"));
	step("bit flips");
	/* Bit flips: caught by the checksum... */
	for (int i = 0; i < 2000; i++) {
		memcpy(bad, blob, len);
		bad[rand_r(&seed) % len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		assert_int_equal(nhv_partition_state_check(bad, len, err, sizeof(err)), -EBADMSG);
	}
	/* ...and, resealed, by the parser or the restore (no crash either
	 * way). Flips go where the structure is: outside the register
	 * images, whose bits are mostly free. */
	step("resealed bit flips");
	for (int i = 0; i < 60; i++) {
		size_t pos = len > 20000 ? 32 + rand_r(&seed) % 64 : 0;
		int rc;

		if (i % 2 && len > 20000)
			pos = len - 1 - rand_r(&seed) % (len - 20000 < 3000 ? len - 20000 : 3000);
		memcpy(bad, blob, len);
		bad[pos] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		reseal(bad, len);
		rc = nhv_partition_restore(&cfg, NULL, 0, bad, len, d, 2, &np, err, sizeof(err));
		if (rc == 0) {
			accepted++;
			nhv_partition_destroy(np);
		} else {
			assert_true(err[0] != '\0');
		}
	}
	fprintf(stderr, "resealed flips accepted: %u of 60\n", accepted);
	/* The intact blob still restores after all that. */
	move(&r, ram, blob, len);
	finish(&r, "blockbench: OK");
	free(bad);
	free(blob);
	free(ram);
}

/* (5): a quiesce that cannot finish in time leaves the guest running; a
 * restored guest still obeys the shutdown IC. */
static void test_quiesce_timeout(void **state)
{
	uint8_t *ram = malloc(RAM_BYTES), *blob;
	size_t len;
	static struct run r; /* static: the teardown reads it after a failed check */
	char err[256];
	int timeouts = 0;

	start_bench(&r, 44, "600000");
	usleep(300 * 1000);
	for (int i = 0; i < 5; i++) {
		int rc;

		step("quiesce with no time, %d of 5", i + 1);
		rc = nhv_partition_quiesce(r.p, 0, err, sizeof(err));

		if (rc == -ETIMEDOUT) {
			timeouts++;
			assert_non_null(strstr(err, "in flight"));
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(nhv_partition_thaw(r.p), 0);
		}
		assert_int_equal(nhv_partition_state(r.p), NHV_PART_RUNNING);
		usleep(100 * 1000);
	}
	assert_true(timeouts > 0);
	checkpoint(&r, ram, &blob, &len);
	move(&r, ram, blob, len);
	free(blob);
	usleep(500 * 1000);
	step("shutdown request");
	for (int i = 0; i < 100 && nhv_partition_request_shutdown(r.p); i++)
		usleep(50 * 1000);
	finish(&r, "blockbench: shutdown requested");
	free(ram);
}

static int group_setup(void **state)
{
	struct timespec now;

	if (access("/dev/kvm", R_OK | W_OK)) {
		fprintf(stderr, "no /dev/kvm: skipped\n");
		exit(77);
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	t0 = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	th_tmpdir(tmp, sizeof(tmp));
	fab_log_init("test_checkpoint", FAB_LOG_WARN);
	return 0;
}

/* After a failed check: the partition must not run on into the next test. */
static int test_teardown(void **state)
{
	if (live) {
		step("cleaning up after a failure");
		if (live->p)
			nhv_partition_destroy(live->p);
		free(live->img);
		th_text_fini(&live->con);
		live = NULL;
	}
	return 0;
}

static int group_teardown(void **state)
{
	th_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_five_moves, test_teardown),
		cmocka_unit_test_teardown(test_precopy, test_teardown),
		cmocka_unit_test_teardown(test_bad_blobs, test_teardown),
		cmocka_unit_test_teardown(test_quiesce_timeout, test_teardown),
	};

	/* CKPT_ONLY=test_five_moves runs one test (cmocka's pattern). */
	if (getenv("CKPT_ONLY"))
		cmocka_set_test_filter(getenv("CKPT_ONLY"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
