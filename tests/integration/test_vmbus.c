// SPDX-License-Identifier: MIT
/*
 * VMBus end to end on KVM: guest images from guest/ drive the storage VSP,
 * the integration components and hostile traffic against the host in this
 * process; disk images are checked from the host afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#include "fab/blockpattern.h"
#include "fab/log.h"
#include "fab/nodehv.h"
#include "harness.h"

static char tmp[64];

struct run {
	struct nhv_partition *p;
	struct th_text con;
	uint8_t *img;
};

static void capture(struct nhv_partition *p, const char *b, size_t n, void *arg)
{
	th_text_append(&((struct run *)arg)->con, b, n);
}

static int console_has(struct run *r, const char *s)
{
	return th_text_has(&r->con, s);
}

/* Creates a partition running image with argv, a disk (may be NULL) and
 * the integration components, and starts it. */
static void part_new(struct run *r, uint64_t id, const char *image, const char *disk, int argc,
		     const char *const *argv)
{
	struct nhv_partition_cfg cfg = { 0 };
	char err[256];
	size_t len;

	memset(r, 0, sizeof(*r));
	th_text_init(&r->con);
	r->img = th_load(image, &len);
	cfg.id = id;
	cfg.ram_bytes = 64u << 20;
	cfg.vcpus = 1;
	cfg.image = r->img;
	cfg.image_len = len;
	cfg.argc = argc;
	cfg.argv = argv;
	cfg.console_cb = capture;
	cfg.cb_arg = r;
	if (nhv_partition_create(&cfg, &r->p, err, sizeof(err)))
		fail_msg("create: %s", err);
	if (disk && nhv_partition_attach_disk(r->p, disk, false, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(nhv_partition_attach_ic(r->p), 0);
	assert_int_equal(nhv_partition_start(r->p), 0);
}

static void part_done(struct run *r, int want_status)
{
	int st = nhv_partition_wait(r->p, 120000);

	if (st != NHV_PART_EXITED || nhv_partition_exit_status(r->p) != want_status) {
		char why[256];

		nhv_partition_reason(r->p, why, sizeof(why));
		fail_msg("partition ended %s (%s, status %d), console:\n%s",
			 st >= 0 ? nhv_part_state_name((enum nhv_part_state)st) : "(timeout)", why,
			 nhv_partition_exit_status(r->p), r->con.buf);
	}
}

static void part_free(struct run *r)
{
	nhv_partition_destroy(r->p);
	free(r->img);
	th_text_fini(&r->con);
}

static void make_disk(char *path, size_t len, const char *name, unsigned mib)
{
	int fd;

	snprintf(path, len, "%s/%s", tmp, name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)mib << 20), 0);
	close(fd);
}

static int group_setup(void **state)
{
	th_tmpdir(tmp, sizeof(tmp));
	fab_log_init("test_vmbus", FAB_LOG_WARN);
	return 0;
}

static int group_teardown(void **state)
{
	th_cleanup();
	return 0;
}

#define DISK_BLOCKS 8192	      /* 4 MiB working set, in 512-byte LBAs */
#define BB_BLOCKS   (DISK_BLOCKS / 8) /* the same in blockbench's 4 KiB blocks */

/* blockbench writes the whole working set, the host checks the image file
 * block by block, and a second partition reads and verifies it all. */
static void test_blockbench_disk_verified(void **state)
{
	char disk[128], nops[16], nblk[16];
	const char *wargv[] = { "blockbench", "--mode", "seqwrite", "--bs",	"4096", "--qd",
				"8",	      "--ops",	nops,	    "--blocks", nblk,	"--gen",
				"3",	      "--seed", "11",	    "--flush",	NULL };
	const char *vargv[] = { "blockbench", "--mode", "verify", "--bs", "4096",   "--qd", "16",
				"--blocks",   nblk,	"--gen",  "3",	  "--seed", "11",   NULL };
	struct run r;
	uint8_t *img;
	size_t len;

	make_disk(disk, sizeof(disk), "bb.img", 16);
	snprintf(nops, sizeof(nops), "%d", BB_BLOCKS);
	snprintf(nblk, sizeof(nblk), "%d", BB_BLOCKS);
	part_new(&r, 21, GUEST_BLOCKBENCH, disk, 16, wargv);
	part_done(&r, 0);
	if (!strstr(r.con.buf, "blockbench: OK") || !strstr(r.con.buf, "errors=0"))
		fail_msg("blockbench write:\n%s", r.con.buf);
	part_free(&r);

	/* What the guest wrote is in the file, block for block. */
	img = th_load(disk, &len);
	assert_int_equal(len, 16u << 20);
	assert_int_equal(blockpattern_verify(img, 0, DISK_BLOCKS, 3, 11, NULL), 0);
	/* And nothing past the working set was touched. */
	for (size_t i = (size_t)DISK_BLOCKS * 512; i < len; i++)
		if (img[i])
			fail_msg("byte %zu beyond the working set was written", i);
	free(img);

	part_new(&r, 22, GUEST_BLOCKBENCH, disk, 13, vargv);
	part_done(&r, 0);
	if (!strstr(r.con.buf, "blockbench: OK"))
		fail_msg("blockbench verify:\n%s", r.con.buf);
	part_free(&r);
}

/* Random writes and reads at queue depth 32, every read verified. */
static void test_blockbench_random_qd32(void **state)
{
	char disk[128];
	const char *argv[] = {
		"blockbench", "--mode", "write-then-verify", "--bs", "4096",   "--qd", "32",
		"--ops",      "3000",	"--blocks",	     "2048", "--seed", "5",    NULL
	};
	struct run r;

	make_disk(disk, sizeof(disk), "rand.img", 8);
	part_new(&r, 23, GUEST_BLOCKBENCH, disk, 13, argv);
	part_done(&r, 0);
	if (!strstr(r.con.buf, "blockbench: OK"))
		fail_msg("blockbench:\n%s", r.con.buf);
	part_free(&r);
}

/*
 * --mode persist across restarts of its partition: the first run writes and
 * commits the disk; the next verifies all of it, then reads until the host
 * asks for a shutdown; a data block gone stale on the host is reported
 * (exit 1); a run with other parameters refuses and leaves the disk alone.
 */
static void test_blockbench_persist(void **state)
{
	char disk[128];
	const char *timed[] = { "blockbench", "--mode", "persist", "--blocks", "512", "--seed",
				"7",	      "--qd",	"8",	   "--ms",     "500", NULL };
	const char *open_ended[] = { "blockbench", "--mode", "persist", "--blocks", "512",
				     "--seed",	   "7",	     "--qd",	"8",	    NULL };
	const char *other[] = { "blockbench", "--mode", "persist", "--blocks", "256", "--seed",
				"7",	      "--qd",	"8",	   "--ms",     "500", NULL };
	uint8_t blk[4096], *img, *img2;
	struct run r;
	size_t len, len2;
	int fd, rc = -1;

	make_disk(disk, sizeof(disk), "persist.img", 4);
	part_new(&r, 27, GUEST_BLOCKBENCH, disk, 11, timed);
	part_done(&r, 0);
	if (!strstr(r.con.buf, "blockbench: persist: wrote 512 blocks (generation 1)\n") ||
	    !strstr(r.con.buf, "blockbench: OK"))
		fail_msg("first run:\n%s", r.con.buf);
	part_free(&r);
	/* Block 0 is the header, data block d is block d + 1, in generation 1. */
	img = th_load(disk, &len);
	assert_memory_equal(img, "BBPERSIS", 8);
	assert_int_equal(blockpattern_verify(img + 4096, 8, 512 * 8, 1, 7, NULL), 0);
	free(img);

	part_new(&r, 28, GUEST_BLOCKBENCH, disk, 9, open_ended);
	for (int i = 0; i < 600 && !console_has(&r, "blockbench: persist: verified"); i++)
		usleep(100000);
	for (int i = 0; i < 100 && rc; i++) {
		rc = nhv_partition_request_shutdown(r.p);
		if (rc)
			usleep(50000);
	}
	part_done(&r, 0);
	if (!strstr(r.con.buf, "blockbench: persist: verified 512 blocks written by an earlier "
			       "run (generation 1)\n") ||
	    !strstr(r.con.buf, " reads verified, 0 errors\n") ||
	    !strstr(r.con.buf, "blockbench: shutdown requested"))
		fail_msg("restart:\n%s", r.con.buf);
	part_free(&r);

	/* Data block 100 goes stale: it holds generation 2. */
	blockpattern_fill(blk, 101 * 8, 8, 2, 7);
	fd = open(disk, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, blk, sizeof(blk), 101 * 4096), sizeof(blk));
	close(fd);
	part_new(&r, 29, GUEST_BLOCKBENCH, disk, 11, timed);
	part_done(&r, 1);
	if (!strstr(r.con.buf, "blockbench: persist: MISMATCH at block 100\n") ||
	    strstr(r.con.buf, "blockbench: persist: verified"))
		fail_msg("stale block:\n%s", r.con.buf);
	part_free(&r);

	img = th_load(disk, &len);
	part_new(&r, 30, GUEST_BLOCKBENCH, disk, 11, other);
	part_done(&r, 1);
	if (!strstr(r.con.buf, "blockbench: FAILED persist: the disk holds a run with seed 7, "
			       "512 blocks"))
		fail_msg("other parameters:\n%s", r.con.buf);
	part_free(&r);
	img2 = th_load(disk, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(img, img2, len);
	free(img2);
	free(img);
}

/* The node sees heartbeats, and a shutdown request ends the guest cleanly. */
static void test_heartbeat_and_shutdown(void **state)
{
	const char *argv[] = { "icwait", NULL };
	uint64_t beats = 0;
	int64_t age = -1;
	struct run r;
	int rc = -1;

	part_new(&r, 24, GUEST_ICWAIT, NULL, 1, argv);
	for (int i = 0; i < 150 && beats < 2; i++) {
		usleep(100000);
		assert_int_equal(nhv_partition_heartbeat(r.p, &beats, &age), 0);
	}
	if (beats < 2)
		fail_msg("no heartbeats after 15 s (beats %llu), console:\n%s",
			 (unsigned long long)beats, r.con.buf);
	assert_true(age >= 0 && age < 5000);
	for (int i = 0; i < 100 && rc; i++) {
		rc = nhv_partition_request_shutdown(r.p);
		if (rc)
			usleep(50000);
	}
	assert_int_equal(rc, 0);
	part_done(&r, 0);
	assert_true(console_has(&r, "icwait: shutdown"));
	part_free(&r);
}

/* fabnode run: SIGTERM asks the guest to shut down; it exits 0. */
static void test_fabnode_run_sigterm(void **state)
{
	char log[128];
	const char *argv[] = { FABNODE, "run", GUEST_ICWAIT, NULL };
	pid_t pid;
	int ready = 0;

	snprintf(log, sizeof(log), "%s/icwait.log", tmp);
	pid = th_spawn(log, NULL, argv);
	for (int i = 0; i < 200 && !ready; i++) {
		usleep(50000);
		ready = th_file_has(log, "icwait: ready");
	}
	assert_true(ready);
	usleep(200000); /* the shutdown channel is negotiated right after */
	assert_int_equal(th_stop(pid), 0);
	assert_true(th_file_has(log, "icwait: shutdown"));
}

/* A guest attacking VMBus fails alone: a partition beside it finishes its
 * verified I/O, and this process (the node) is unharmed. */
static void test_hostile_vmbus_contained(void **state)
{
	char disk[128], disk2[128];
	const char *bargv[] = { "blockbench", "--mode", "write-then-verify",
				"--bs",	      "4096",	"--qd",
				"4",	      "--ops",	"2000",
				"--blocks",   "2048",	NULL };
	const char *hargv[] = { "vmbus_hostile", NULL };
	struct run good, bad;

	make_disk(disk, sizeof(disk), "good.img", 8);
	make_disk(disk2, sizeof(disk2), "hostile.img", 8);
	part_new(&good, 25, GUEST_BLOCKBENCH, disk, 11, bargv);
	part_new(&bad, 26, GUEST_VMBUS_HOSTILE, disk2, 1, hargv);
	/* Every attack was refused or failed only its own channel, and the
	 * guest saw an answer (not a hang) each time: it finishes, 0 unexpected. */
	part_done(&bad, 0);
	assert_true(console_has(&bad, " 0 unexpected"));
	assert_true(console_has(&bad, "vmbus_hostile: done"));
	part_done(&good, 0);
	assert_non_null(strstr(good.con.buf, "blockbench: OK"));
	part_free(&bad);
	part_free(&good);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blockbench_disk_verified),
		cmocka_unit_test(test_blockbench_random_qd32),
		cmocka_unit_test(test_blockbench_persist),
		cmocka_unit_test(test_heartbeat_and_shutdown),
		cmocka_unit_test(test_fabnode_run_sigterm),
		cmocka_unit_test(test_hostile_vmbus_contained),
	};

	if (th_kvm_missing("VMBus tests"))
		return 77;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
