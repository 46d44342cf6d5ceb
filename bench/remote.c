// SPDX-License-Identifier: MIT
/*
 * bench_remote: the remote VMBus path against what the same link gives
 * without us, in one run. Two network namespaces joined by veth through a
 * bridge (scripts/fabnet.sh): node-a (10.77.0.11) runs the guest, node-b
 * (10.77.0.12) serves its devices over rvmbus on the TCP transport (TLS).
 *
 *   1. 512-byte request/response round trip: vmbus_bench's echo requests
 *      to an echo device exported by node-b, against a raw TCP ping-pong of
 *      the same size between the same namespaces (remote_floor, no TLS).
 *   2. 4 KiB random reads at queue depth 32 and 64 KiB sequential writes
 *      at queue depth 32 from blockbench (every read verified) on a disk
 *      exported by node-b, against fio's nbd engine driving qemu-nbd
 *      serving the same image from node-b (scripts/bench-remote-baseline.sh).
 *
 * Needs root, /dev/kvm, iproute2, fio, qemu-utils (scripts/install-deps.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fab/blockpattern.h"
#include "harness.h"

#define IMAGE_MIB 256

static const char *prog = "bench_remote";
static char dir[64], prefix[64], ns_a[96], ns_b[96];
static const char *fabnode, *fabctl, *floor_bin, *images, *baseline;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	th_cleanup();
	exit(1);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f))
		die("cannot write %s", path);
}

/* value of "name=<number>" in text (the first occurrence), or die. */
static double field(const char *text, const char *name, const char *what)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "%s=", name);
	p = strstr(text, key);
	if (!p)
		die("no %s in the output of %s:\n%s", key, what, text);
	return strtod(p + strlen(key), NULL);
}

/* Runs a guest image on node-a with the config's remote devices. */
static char *run_guest(const char *conf, const char *image, const char *const *gargs,
		       const char *what)
{
	const char *argv[40] = { fabnode, "run", NULL, "--memory", "256M", "--config", conf,
				 "--name", "bench", "--" };
	char img[512], out[256];
	int n = 10, rc;
	char *text;

	snprintf(img, sizeof(img), "%s/%s", images, image);
	argv[2] = img;
	for (int i = 0; gargs[i]; i++)
		argv[n++] = gargs[i];
	argv[n] = NULL;
	snprintf(out, sizeof(out), "%s/%s.out", dir, what);
	rc = th_run(out, out, ns_a, argv, 300);
	text = th_slurp(out);
	if (rc != 0 || !text)
		die("%s exited %d:\n%s", what, rc, text ? text : "");
	return text;
}

static int serving(void *arg)
{
	return th_file_has(arg, "serving 2 export(s)");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fabnode", required_argument, NULL, 'n' },
		{ "fabctl", required_argument, NULL, 'c' },
		{ "floor", required_argument, NULL, 'f' },
		{ "images", required_argument, NULL, 'i' },
		{ "baseline", required_argument, NULL, 'b' },
		{ "runtime", required_argument, NULL, 'r' },
		{ "echo-n", required_argument, NULL, 'e' },
		{ 0 },
	};
	unsigned runtime = 10, echo_n = 20000;
	char why[256], pki[128], img[128], conf_a[128], conf_b[128], log_b[128], text[2048];
	char ms[16], en[16], rt[16], cmd[1024];
	double rtt_ours, rtt_floor, iops_ours, iops_peer, mbs_ours, mbs_peer;
	char *out, *base;
	pid_t b;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			fabnode = optarg;
			break;
		case 'c':
			fabctl = optarg;
			break;
		case 'f':
			floor_bin = optarg;
			break;
		case 'i':
			images = optarg;
			break;
		case 'b':
			baseline = optarg;
			break;
		case 'r':
			runtime = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'e':
			echo_n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr,
				"usage: %s --fabnode BIN --fabctl BIN --floor BIN --images DIR "
				"--baseline SCRIPT [--runtime S] [--echo-n N]\n",
				prog);
			return 2;
		}
	}
	if (!fabnode || !fabctl || !floor_bin || !images || !baseline || runtime < 2 ||
	    runtime > 600 || echo_n < 100)
		die("--fabnode, --fabctl, --floor, --images, --baseline are required; "
		    "--runtime 2..600, --echo-n >= 100");
	if (th_kvm_missing("bench_remote runs a partition"))
		return 1;
	if (th_netns_create("brm", 2, prefix, sizeof(prefix), why, sizeof(why)))
		die("network namespaces: %s", why);
	signal(SIGPIPE, SIG_IGN);
	snprintf(ns_a, sizeof(ns_a), "%s-n1", prefix);
	snprintf(ns_b, sizeof(ns_b), "%s-n2", prefix);
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	{
		const char *a[] = { fabctl, "pki", "init", "--dir", pki, "--nodes", "node-a,node-b",
				    NULL };

		if (th_run(NULL, NULL, NULL, a, 60))
			die("fabctl pki init failed");
	}
	/* A full image (a sparse one reads holes, which cost a server
	 * nothing): blockpattern generation 1, seed 1, which blockbench's
	 * randread verifies. */
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	{
		size_t chunk = 1u << 20;
		uint8_t *buf = malloc(chunk);
		int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);

		if (!buf || fd < 0)
			die("cannot create %s", img);
		for (uint64_t mib = 0; mib < IMAGE_MIB; mib++) {
			blockpattern_fill(buf, mib * (chunk / 512), chunk / 512, 1, 1);
			if (write(fd, buf, chunk) != (ssize_t)chunk)
				die("cannot write %s", img);
		}
		close(fd);
		free(buf);
	}
	snprintf(conf_b, sizeof(conf_b), "%s/node-b.conf", dir);
	snprintf(text, sizeof(text),
		 "name = node-b\ncontroller = 10.77.0.1:7700\npki = %s\n"
		 "data_listen = 10.77.0.12:7800\n"
		 "[export disk0]\npath = %s\n[export echo0]\ntype = echo\n",
		 pki, img);
	write_text(conf_b, text);
	snprintf(conf_a, sizeof(conf_a), "%s/node-a.conf", dir);
	snprintf(text, sizeof(text),
		 "name = node-a\ncontroller = 10.77.0.1:7700\npki = %s\n"
		 "[remote bench/disk0]\nnode = node-b\naddress = 10.77.0.12:7800\nexport = disk0\n"
		 "[remote bench/echo0]\nnode = node-b\naddress = 10.77.0.12:7800\nexport = echo0\n"
		 "type = echo\n",
		 pki);
	write_text(conf_a, text);
	snprintf(log_b, sizeof(log_b), "%s/node-b.log", dir);
	{
		const char *a[] = { fabnode, "serve", "--config", conf_b, NULL };

		b = th_spawn(log_b, ns_b, a);
		if (!th_wait(serving, log_b, 10000))
			die("node-b did not start:\n%s", th_slurp(log_b));
	}

	/* 1. Round trip. */
	snprintf(en, sizeof(en), "%u", echo_n);
	{
		const char *g[] = { "echo", en, "512", NULL };

		out = run_guest(conf_a, "vmbus_bench.elf", g, "echo");
		rtt_ours = field(out, "ref_100ns", "vmbus_bench") / 10.0 / echo_n;
		free(out);
	}

	/* 2. Disk: the whole image, for runtime seconds each. */
	snprintf(ms, sizeof(ms), "%u", runtime * 1000);
	{
		const char *g[] = { "--mode", "randread", "--bs", "4096", "--qd", "32",
				    "--blocks", "65536", "--ops", "1", "--ms", ms, NULL };

		out = run_guest(conf_a, "blockbench.elf", g, "randread");
		if (!strstr(out, "blockbench: OK"))
			die("blockbench randread:\n%s", out);
		iops_ours = field(out, "iops", "blockbench randread");
		free(out);
	}
	{
		const char *g[] = { "--mode", "seqwrite", "--bs", "65536", "--qd", "32",
				    "--blocks", "4096", "--ops", "1", "--ms", ms, NULL };

		out = run_guest(conf_a, "blockbench.elf", g, "seqwrite");
		if (!strstr(out, "blockbench: OK"))
			die("blockbench seqwrite:\n%s", out);
		mbs_ours = field(out, "kib_s", "blockbench seqwrite") * 1024 / 1e6;
		free(out);
	}
	th_stop(b);

	/* The peer and the floor, on the same link and image. */
	snprintf(rt, sizeof(rt), "%u", runtime);
	snprintf(cmd, sizeof(cmd), "%s/baseline.out", dir);
	{
		const char *a[] = { baseline, "--floor", floor_bin, "--sizes", "512", "--count", en,
				    "--qd", "32", "--runtime", rt, prefix, img, NULL };

		if (th_run(cmd, cmd, NULL, a, 600))
			die("baseline failed:\n%s", th_slurp(cmd));
	}
	base = th_slurp(cmd);
	{
		const char *fl = strstr(base, "baseline floor size=512");
		const char *rr = strstr(base, "baseline randread4k");
		const char *sw = strstr(base, "baseline seqwrite64k");

		if (!fl || !rr || !sw)
			die("baseline output incomplete:\n%s", base);
		rtt_floor = field(fl, "mean_us", "remote_floor");
		iops_peer = field(rr, "iops", "fio randread");
		mbs_peer = field(sw, "mbps", "fio seqwrite");
	}
	free(base);

	printf("bench_remote: node-a -> node-b over veth + bridge (network namespaces), "
	       "rvmbus on the TCP transport with TLS 1.3; %u s per disk run, %u MiB image\n",
	       runtime, IMAGE_MIB);
	printf("%-34s %14s   %-34s %14s   %6s\n", "measure", "fabric", "peer / floor (same run)",
	       "value", "ratio");
	printf("%-34s %11.1f us   %-34s %11.1f us   %5.2fx\n", "512 B round trip (mean)",
	       rtt_ours, "raw TCP ping-pong, no TLS", rtt_floor, rtt_ours / rtt_floor);
	printf("%-34s %9.0f IOPS   %-34s %9.0f IOPS   %5.2fx\n", "4 KiB random read, QD32",
	       iops_ours, "fio nbd -> qemu-nbd", iops_peer, iops_ours / iops_peer);
	printf("%-34s %9.1f MB/s   %-34s %9.1f MB/s   %5.2fx\n", "64 KiB sequential write, QD32",
	       mbs_ours, "fio nbd -> qemu-nbd", mbs_peer, mbs_ours / mbs_peer);
	printf("(ratio: fabric / peer; round trip lower is better, the others higher)\n");
	th_cleanup();
	return 0;
}
