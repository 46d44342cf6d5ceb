// SPDX-License-Identifier: MIT
/*
 * bench_vmbus: VMBus costs on this host, each beside a floor measured in the
 * same run.
 *   - in-band request/response round trip (512 bytes) between the guest and
 *     a local VSP (the echo device), beside the signalling floor: doorbell
 *     write + eventfd wake-up of the VSP thread + event back to the guest
 *     (the ping device), with no ring traffic;
 *   - storage 4 KiB random reads at queue depth 1 and 32 from the guest
 *     (blockbench, every read verified), beside pread() of the same file
 *     from the host at the same block size.
 *
 *   bench_vmbus --images DIR [--ops N] [--disk-mib N] [--reps N]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fab/blockpattern.h"
#include "benchlib.h"
#include "fab/log.h"
#include "fab/nodehv.h"

static const char *images = ".";
static int reps = 5;

static unsigned long ops = 20000;
static unsigned disk_mib = 64;

struct out {
	pthread_mutex_t lock;
	char buf[8192];
	size_t len;
};

static void on_console(struct nhv_partition *p, const char *b, size_t n, void *arg)
{
	struct out *o = arg;

	pthread_mutex_lock(&o->lock);
	if (n > sizeof(o->buf) - 1 - o->len)
		n = sizeof(o->buf) - 1 - o->len;
	memcpy(o->buf + o->len, b, n);
	o->len += n;
	o->buf[o->len] = '\0';
	pthread_mutex_unlock(&o->lock);
}

/* Runs image with argv (and a disk, and the echo devices), returns its
 * console output (static buffer). Exits on any failure. */
static const char *run(const char *image, int argc, const char **argv, const char *disk)
{
	static struct out o;
	struct nhv_partition_cfg cfg = {
		.id = 1,
		.ram_bytes = 64u << 20,
		.vcpus = 1,
		.argc = argc,
		.argv = argv,
		.console_cb = on_console,
		.cb_arg = &o,
	};
	struct nhv_partition *p;
	char err[256];
	size_t len;
	int st;

	memset(&o, 0, sizeof(o));
	pthread_mutex_init(&o.lock, NULL);
	cfg.image = bench_load("bench_vmbus", images, image, &len);
	cfg.image_len = len;
	if (nhv_partition_create(&cfg, &p, err, sizeof(err)) ||
	    (disk && nhv_partition_attach_disk(p, disk, false, err, sizeof(err))) ||
	    nhv_partition_attach_echo(p) || nhv_partition_start(p)) {
		fprintf(stderr, "bench_vmbus: %s\n", err);
		exit(1);
	}
	st = nhv_partition_wait(p, 600000);
	nhv_partition_destroy(p);
	free((void *)cfg.image);
	if (st != NHV_PART_EXITED) {
		fprintf(stderr, "bench_vmbus: %s did not finish cleanly:\n%s\n", image, o.buf);
		exit(1);
	}
	return o.buf;
}

static double field(const char *out, const char *key)
{
	const char *s = strstr(out, key);

	if (!s) {
		fprintf(stderr, "bench_vmbus: no '%s' in:\n%s\n", key, out);
		exit(1);
	}
	return strtod(s + strlen(key), NULL);
}

/* Host floor: random 4 KiB pread of the same file, n reads. */
static double host_pread_iops(const char *path, unsigned long n, uint64_t blocks4k)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t x = 88172645463325252ull;
	double t0;

	if (fd < 0 || !buf)
		exit(1);
	t0 = bench_now_us();
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (pread(fd, buf, 4096, (off_t)((x % blocks4k) * 4096)) != 4096)
			exit(1);
	}
	t0 = bench_now_us() - t0;
	close(fd);
	free(buf);
	return (double)n / (t0 / 1e6);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "images", required_argument, NULL, 'i' },
		{ "ops", required_argument, NULL, 'n' },
		{ "disk-mib", required_argument, NULL, 'd' },
		{ "reps", required_argument, NULL, 'r' },
		{ 0 },
	};
	char disk[] = "/tmp/bench_vmbus-XXXXXX", nops[32];
	double echo_us, ping_us, qd1, qd32, host1;
	const char *out;
	uint8_t block[BLOCKPATTERN_BLOCK_SIZE];
	int o, fd;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'i')
			images = optarg;
		else if (o == 'n')
			ops = strtoul(optarg, NULL, 10);
		else if (o == 'd')
			disk_mib = (unsigned)strtoul(optarg, NULL, 10);
		else if (o == 'r')
			reps = atoi(optarg);
		else
			return 2;
	}
	if (reps < 1 || reps > 16 || ops < 100) {
		fprintf(stderr, "bench_vmbus: --reps 1..16, --ops >= 100\n");
		return 2;
	}
	fab_log_init("bench_vmbus", FAB_LOG_ERR);
	snprintf(nops, sizeof(nops), "%lu", ops);

	/* The disk holds generation 1 of the pattern, written from the host,
	 * so the guest's random reads can verify every block. */
	fd = mkstemp(disk);
	if (fd < 0)
		return 1;
	for (uint64_t lba = 0; lba < ((uint64_t)disk_mib << 20) / BLOCKPATTERN_BLOCK_SIZE; lba++) {
		blockpattern_fill_block(block, lba, 1, 7);
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
			return 1;
	}
	fsync(fd);
	close(fd);

	{
		const char *a[] = { "vmbus_bench", "echo", nops, "512", NULL };
		const char *b[] = { "vmbus_bench", "ping", nops, NULL };
		double e[16], f[16];

		/* Alternate the two so drift on this shared machine hits both. */
		for (int i = 0; i < reps; i++) {
			out = run("vmbus_bench.elf", 4, a, NULL);
			e[i] = field(out, "ref_100ns=") / 10.0 / (double)ops;
			out = run("vmbus_bench.elf", 3, b, NULL);
			f[i] = field(out, "ref_100ns=") / 10.0 / (double)ops;
		}
		echo_us = bench_median(e, reps);
		ping_us = bench_median(f, reps);
	}
	{
		const char *a1[] = { "blockbench", "--mode", "randread", "--bs", "4096",
				     "--qd",	   "1",	     "--ops",	 nops,	 "--gen",
				     "1",	   "--seed", "7",	 NULL };
		const char *a32[] = { "blockbench", "--mode", "randread", "--bs", "4096",
				      "--qd",	    "32",     "--ops",	  nops,	  "--gen",
				      "1",	    "--seed", "7",	  NULL };

		double q1[16], q32[16], h[16];

		for (int i = 0; i < reps; i++) {
			out = run("blockbench.elf", 13, a1, disk);
			if (!strstr(out, "blockbench: OK"))
				return 1;
			q1[i] = field(out, "iops=");
			out = run("blockbench.elf", 13, a32, disk);
			if (!strstr(out, "blockbench: OK"))
				return 1;
			q32[i] = field(out, "iops=");
			h[i] = host_pread_iops(disk, ops, ((uint64_t)disk_mib << 20) / 4096);
		}
		qd1 = bench_median(q1, reps);
		qd32 = bench_median(q32, reps);
		host1 = bench_median(h, reps);
	}
	unlink(disk);

	printf("bench_vmbus: median of %d runs, %lu operations each, %u MiB disk (page cache)\n",
	       reps, ops, disk_mib);
	printf("%-46s %12s   %-36s %12s   %6s\n", "measure", "value", "floor (same run)", "value",
	       "ratio");
	printf("%-46s %9.2f us   %-36s %9.2f us   %5.1fx\n",
	       "in-band 512 B round trip, guest <-> echo VSP", echo_us,
	       "doorbell + eventfd wake + event back", ping_us, echo_us / ping_us);
	printf("%-46s %8.0f IOPS   %-36s %8.0f IOPS   %5.2fx\n",
	       "4 KiB random read, QD1 (verified)", qd1, "host pread, same file, 4 KiB random",
	       host1, qd1 / host1);
	printf("%-46s %8.0f IOPS   %-36s %8.0f IOPS   %5.2fx\n",
	       "4 KiB random read, QD32 (verified)", qd32, "host pread, same file, 4 KiB random",
	       host1, qd32 / host1);
	return 0;
}
