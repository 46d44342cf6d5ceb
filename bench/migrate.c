// SPDX-License-Identifier: MIT
/*
 * bench_migrate: live migration of a partition between two nodes, against
 * the floor of the same link, in one run (issue 8's benchmark).
 *
 * A controller and two compute nodes in network namespaces joined by veth
 * through a bridge (scripts/fabnet.sh; the fabric transport is TCP with
 * TLS). A partition of --memory (default 256 MiB) runs the memtest guest,
 * which fills most of its RAM with a pattern, rewrites pages at a given
 * rate and verifies them all the time, and records the largest gap in its
 * own progress by the reference clock. For each load (idle, 10 MiB/s,
 * 100 MiB/s) the partition is migrated with `fabctl partition migrate`
 * and the table shows what the controller measured (total time, rounds,
 * bytes sent, downtime) next to what the guest saw (its largest gap),
 * then whether the guest's RAM still verified. A load that the link cannot
 * keep up with is shown with its reason and then migrated again with
 * --throttle.
 *
 * The floor: the RAM size divided by the raw bandwidth of the same link
 * (remote_floor --stream: plain TCP between the two namespaces, no TLS),
 * measured in the same run.
 *
 *   bench_migrate --fabctld BIN --fabctl BIN --fabnode BIN --floor BIN
 *                 --images DIR [--memory MIB] [--quick]
 *
 * Needs root, /dev/kvm (run it through tests/vm/kvm_run.sh on a host
 * without), iproute2.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchlib.h"
#include "harness.h"
#include "tcluster.h"

static const char *prog = "bench_migrate";
static const char *fabctld, *fabctl, *fabnode, *floor_bin, *images;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	tc_dump_all();
	tc_stop();
	exit(1);
}

/* fabctl; on failure its stderr is printed. */
static int ctl(char **out, const char *first, ...) __attribute__((sentinel));
static int ctl(char **out, const char *first, ...)
{
	const char *args[40];
	char *err = NULL;
	int n = 0, rc;
	va_list ap;

	args[n++] = first;
	va_start(ap, first);
	for (const char *a; n < 39 && (a = va_arg(ap, const char *));)
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	rc = tc_fabctlv(out, &err, args, 900);
	if (rc)
		fprintf(stderr, "%s: fabctl %s ... exit %d: %s", prog, first, rc, err ? err : "");
	free(err);
	return rc;
}

static double json_num(const char *json, const char *key)
{
	char v[64];

	return tc_json_get(json, key, v, sizeof(v)) ? -1 : strtod(v, NULL);
}

/* The last "name=<number>" in text, or -1. */
static double last_field(const char *text, const char *name)
{
	const char *p = text, *hit = NULL;
	size_t n = strlen(name);

	while (p && (p = strstr(p, name))) {
		if (p[n] == '=')
			hit = p + n + 1;
		p += n;
	}
	return hit ? strtod(hit, NULL) : -1;
}

/* The raw bandwidth of the link between the two node namespaces. */
static double floor_mib_s(unsigned mib)
{
	char out[160], m[16], addr[64];
	const char *srv[] = { floor_bin, "server", addr, NULL };
	const char *cli[] = { floor_bin, "client", addr, "--stream", m, NULL };
	double best = 0;
	char *text;

	snprintf(addr, sizeof(addr), "%s:7990", tc.addr[1]);
	snprintf(m, sizeof(m), "%u", mib);
	snprintf(out, sizeof(out), "%s/floor.out", tc.dir);
	/* Best of three: the floor is what the link can do. */
	for (int i = 0; i < 3; i++) {
		char log[160];
		pid_t s;
		double v;

		snprintf(log, sizeof(log), "%s/floor-server.log", tc.dir);
		s = th_spawn(log, tc.ns_node[1], srv);
		if (th_run(out, NULL, tc.ns_node[0], cli, 300))
			die("remote_floor --stream failed (see %s)", log);
		th_wait_exit(s, 10);
		text = th_slurp(out);
		v = last_field(text, "mib_s");
		free(text);
		if (v <= 0)
			die("remote_floor printed no mib_s");
		if (v > best)
			best = v;
	}
	return best;
}

struct row {
	char load[48];
	char result[320];
	double total_ms, sent_mib, downtime_ms, gap_ms;
	int rounds;
	int verified;
};

/* One migration of name to node `to` (0 or 1); fills r. Returns 1 when it
 * completed. */
static int migrate(const char *name, int to, int throttle, struct row *r)
{
	char *out = NULL, phase[32], err[256];
	int rc;
	double t0 = bench_now_us();

	rc = ctl(&out, "--json", "partition", "migrate", name, "--to", tc.cfg.nodes[to].name,
		 throttle ? "--throttle" : NULL, NULL);
	r->total_ms = json_num(out, "total_ms");
	if (r->total_ms < 0) {
		double s = json_num(out, "started_unix_ms"), e = json_num(out, "ended_unix_ms");

		r->total_ms = s > 0 && e >= s ? e - s : (bench_now_us() - t0) / 1e3;
	}
	r->rounds = (int)json_num(out, "round");
	r->sent_mib = json_num(out, "bytes_sent") / 1048576.0;
	r->downtime_ms = json_num(out, "downtime_us") / 1e3;
	if (tc_json_get(out, "phase", phase, sizeof(phase)))
		snprintf(phase, sizeof(phase), "?");
	if (tc_json_get(out, "error", err, sizeof(err)))
		err[0] = '\0';
	snprintf(r->result, sizeof(r->result), "%s%s%s", rc == 0 ? "done" : phase,
		 err[0] ? ": " : "", err);
	free(out);
	return rc == 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fabctld", required_argument, NULL, 'd' },
		{ "fabctl", required_argument, NULL, 'c' },
		{ "fabnode", required_argument, NULL, 'n' },
		{ "floor", required_argument, NULL, 'f' },
		{ "images", required_argument, NULL, 'i' },
		{ "memory", required_argument, NULL, 'm' },
		{ "quick", no_argument, NULL, 'q' },
		{ 0 },
	};
	static const unsigned rates[] = { 0, 10, 100 };
	unsigned mem_mib = 256, nrates = 3;
	struct row rows[6];
	int nrows = 0, on = 0, first, c;
	char why[256], memarg[32], fill[32];
	double floor_bw, floor_ms;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			fabctld = optarg;
			break;
		case 'c':
			fabctl = optarg;
			break;
		case 'n':
			fabnode = optarg;
			break;
		case 'f':
			floor_bin = optarg;
			break;
		case 'i':
			images = optarg;
			break;
		case 'm':
			mem_mib = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'q':
			nrates = 1;
			break;
		default:
			fprintf(stderr,
				"usage: %s --fabctld BIN --fabctl BIN --fabnode BIN --floor BIN "
				"--images DIR [--memory MIB] [--quick]\n",
				prog);
			return 2;
		}
	}
	if (!fabctld || !fabctl || !fabnode || !floor_bin || !images || mem_mib < 32 ||
	    mem_mib > 2048)
		die("--fabctld, --fabctl, --fabnode, --floor and --images are required; "
		    "--memory 32..2048 (MiB)");
	if (th_kvm_missing("bench_migrate runs partitions"))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	{
		static const struct tc_node nodes[] = { { "node-a", 2, true },
							{ "node-b", 2, true } };
		const struct tc_cfg cfg = { .tag = "bmg",
					    .fabctld = fabctld,
					    .fabctl = fabctl,
					    .fabnode = fabnode,
					    .images = images,
					    .nodes = nodes,
					    .nnodes = 2 };

		if (tc_start(&cfg, why, sizeof(why)))
			die("cluster: %s", why);
	}
	printf("bench_migrate: measuring the link's raw bandwidth ...\n");
	fflush(stdout);
	floor_bw = floor_mib_s(mem_mib);
	floor_ms = (double)mem_mib / floor_bw * 1e3;

	snprintf(memarg, sizeof(memarg), "%uM", mem_mib);
	/* memtest works on three quarters of RAM: the rest holds the guest's
	 * own code, stacks and tables. */
	snprintf(fill, sizeof(fill), "%u", mem_mib * 3 / 4);
	for (unsigned k = 0; k < nrates; k++) {
		char name[32], rate[16], load[24], *con = NULL;
		struct row *r;

		snprintf(name, sizeof(name), "mem%u", rates[k]);
		snprintf(rate, sizeof(rate), "%u", rates[k]);
		if (ctl(NULL, "partition", "create", name, "--image", "memtest", "--memory", memarg,
			"--vcpus", "1", "--", "--mib", fill, "--rate", rate, NULL))
			die("cannot create %s", name);
		if (!tc_wait_part(name, "running", "memtest: t=", NULL, 120000))
			die("%s did not start", name);
		/* The partition was placed by the scheduler: find where. */
		{
			char node[32];

			if (tc_part_node(name, node, sizeof(node)))
				die("partition show %s", name);
			on = tc_node_index(node) == 1;
		}
		first = nrows;
		r = &rows[nrows++];
		snprintf(load, sizeof(load), rates[k] ? "%u MiB/s" : "idle", rates[k]);
		snprintf(r->load, sizeof(r->load), "%s", load);
		if (migrate(name, !on, 0, r)) {
			on = !on;
		} else {
			/* Did not converge: say so, then again with throttling. */
			r->gap_ms = -1;
			r = &rows[nrows++];
			snprintf(r->load, sizeof(r->load), "%s, throttled", load);
			if (migrate(name, !on, 1, r))
				on = !on;
		}
		/* Let memtest print a line after the move; its largest gap is
		 * over its whole run, so it belongs to the completed move. */
		sleep(3);
		if (ctl(&con, "partition", "console", name, NULL))
			die("console of %s", name);
		r->gap_ms = last_field(con, "max_gap_us") / 1e3;
		for (int i = first; i < nrows; i++)
			rows[i].verified = con && !strstr(con, "MISMATCH") && !strstr(con, "FAILED");
		free(con);
		if (ctl(NULL, "partition", "stop", name, NULL) ||
		    ctl(NULL, "partition", "delete", name, NULL))
			die("cannot stop and delete %s", name);
	}

	printf("\nbench_migrate: a %u MiB partition running memtest between two nodes "
	       "(TCP+TLS, namespaces)\n\n",
	       mem_mib);
	printf("%-22s %9s %7s %9s %12s %12s %9s  %s\n", "load", "total_ms", "rounds", "sent_MiB",
	       "downtime_ms", "guest_gap_ms", "RAM_ok", "result");
	for (int i = 0; i < nrows; i++) {
		char gap[32];

		if (rows[i].gap_ms < 0)
			snprintf(gap, sizeof(gap), "-");
		else
			snprintf(gap, sizeof(gap), "%.2f", rows[i].gap_ms);
		printf("%-22s %9.1f %7d %9.1f %12.2f %12s %9s  %s\n", rows[i].load,
		       rows[i].total_ms, rows[i].rounds, rows[i].sent_mib, rows[i].downtime_ms, gap,
		       rows[i].verified ? "yes" : "NO", rows[i].result);
	}
	printf("%-22s %9.1f %7s %9u %12s %12s %9s  %s\n", "floor", floor_ms, "-", mem_mib, "-", "-",
	       "-", "RAM / raw TCP bandwidth of the same link");
	printf("\nlink: %.1f MiB/s raw TCP (remote_floor --stream %u, best of 3)\n", floor_bw,
	       mem_mib);
	tc_stop();
	for (int i = 0; i < nrows; i++)
		if (!rows[i].verified)
			return 1;
	return 0;
}
