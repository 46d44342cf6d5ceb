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

#define CTL_ADDR "10.77.0.1:7700"

static const char *prog = "bench_migrate";
static const char *fabctld, *fabctl, *fabnode, *floor_bin, *images;
static char dir[64], prefix[64], pki[128], ns_hub[96], ns_node[2][96];
static const char *const node_names[2] = { "node-a", "node-b" };
static const char *const node_addrs[2] = { "10.77.0.11", "10.77.0.12" };

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fprintf(stderr, "%s: logs in %s (kept)\n", prog, dir);
	th_cleanup_processes();
	exit(1);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f))
		die("cannot write %s", path);
}

/* Runs fabctl with the admin certificate; *out gets its stdout (malloc'd). */
static int ctl(char **out, const char *first, ...)
{
	const char *argv[40] = { fabctl, "--controller", CTL_ADDR, "--pki", pki };
	char o[160], e[160];
	int n = 5, rc;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a && n < 39; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(o, sizeof(o), "%s/fabctl.out", dir);
	snprintf(e, sizeof(e), "%s/fabctl.err", dir);
	rc = th_run(o, e, ns_hub, argv, 600);
	if (out)
		*out = th_slurp(o);
	if (rc) {
		char *err = th_slurp(e);

		fprintf(stderr, "%s: fabctl %s ... exit %d: %s", prog, first, rc, err ? err : "");
		free(err);
	}
	return rc;
}

/* "key": value (string or number) in JSON text, the first occurrence. */
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

static double json_num(const char *json, const char *key)
{
	char v[64];

	return json_get(json, key, v, sizeof(v)) ? -1 : strtod(v, NULL);
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

static pid_t start_node(int i)
{
	char conf[160], log[160], vol[160], state[160], text[2048];
	const char *argv[] = { fabnode, "serve", "--config", conf, NULL };

	snprintf(conf, sizeof(conf), "%s/%s.conf", dir, node_names[i]);
	snprintf(log, sizeof(log), "%s/%s.log", dir, node_names[i]);
	snprintf(vol, sizeof(vol), "%s/%s-volumes", dir, node_names[i]);
	snprintf(state, sizeof(state), "%s/%s-state", dir, node_names[i]);
	mkdir(vol, 0700);
	mkdir(state, 0700);
	snprintf(text, sizeof(text),
		 "name = %s\ncontroller = " CTL_ADDR "\npki = %s\ntransport = tcp\n"
		 "vcpus = 2\nmemory = 2G\ndata_listen = %s:7800\n"
		 "volume_dir = %s\nimage_dir = %s\nstate_dir = %s\n",
		 node_names[i], pki, node_addrs[i], vol, images, state);
	write_text(conf, text);
	return th_spawn(log, ns_node[i], argv);
}

static int nodes_up(void *arg)
{
	char *out = NULL;
	int n = 0;

	(void)arg;
	if (ctl(&out, "--json", "node", "list", NULL) == 0 && out)
		for (char *p = out; (p = strstr(p, "\"state\": \"up\"")); p++)
			n++;
	free(out);
	return n >= 2;
}

struct part_wait {
	const char *name, *state, *console;
};

static int part_is(void *arg)
{
	struct part_wait *w = arg;
	char *out = NULL, st[32];
	int ok;

	ok = ctl(&out, "--json", "partition", "show", w->name, NULL) == 0 &&
	     json_get(out, "state", st, sizeof(st)) == 0 && !strcmp(st, w->state);
	free(out);
	if (ok && w->console) {
		ok = ctl(&out, "partition", "console", w->name, NULL) == 0 && out &&
		     strstr(out, w->console);
		free(out);
	}
	return ok;
}

static void wait_part(const char *name, const char *state, const char *console, int ms)
{
	struct part_wait w = { name, state, console };

	if (!th_wait(part_is, &w, ms))
		die("partition %s did not reach %s%s%s in %d ms", name, state,
		    console ? " with console " : "", console ? console : "", ms);
}

/* The raw bandwidth of the link between the two node namespaces. */
static double floor_mib_s(unsigned mib)
{
	char out[160], m[16], addr[64];
	const char *srv[] = { floor_bin, "server", addr, NULL };
	const char *cli[] = { floor_bin, "client", addr, "--stream", m, NULL };
	double best = 0;
	char *text;

	snprintf(addr, sizeof(addr), "%s:7990", node_addrs[1]);
	snprintf(m, sizeof(m), "%u", mib);
	snprintf(out, sizeof(out), "%s/floor.out", dir);
	/* Best of three: the floor is what the link can do. */
	for (int i = 0; i < 3; i++) {
		char log[160];
		pid_t s;
		double v;

		snprintf(log, sizeof(log), "%s/floor-server.log", dir);
		s = th_spawn(log, ns_node[1], srv);
		if (th_run(out, NULL, ns_node[0], cli, 300))
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

	rc = ctl(&out, "--json", "partition", "migrate", name, "--to", node_names[to],
		 throttle ? "--throttle" : NULL, NULL);
	r->total_ms = json_num(out, "total_ms");
	if (r->total_ms < 0) {
		double s = json_num(out, "started_unix_ms"), e = json_num(out, "ended_unix_ms");

		r->total_ms = s > 0 && e >= s ? e - s : (bench_now_us() - t0) / 1e3;
	}
	r->rounds = (int)json_num(out, "round");
	r->sent_mib = json_num(out, "bytes_sent") / 1048576.0;
	r->downtime_ms = json_num(out, "downtime_us") / 1e3;
	if (json_get(out, "phase", phase, sizeof(phase)))
		snprintf(phase, sizeof(phase), "?");
	if (json_get(out, "error", err, sizeof(err)))
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
	char why[256], log[160], memarg[32], fill[32];
	double floor_bw, floor_ms;
	const char *dargv[] = { NULL, "--listen", CTL_ADDR, "--db", NULL, "--pki", pki, NULL };
	char db[160];

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
	if (th_netns_create("bmg", 2, prefix, sizeof(prefix), why, sizeof(why)))
		die("network namespaces: %s", why);
	signal(SIGPIPE, SIG_IGN);
	snprintf(ns_hub, sizeof(ns_hub), "%s-hub", prefix);
	for (int i = 0; i < 2; i++)
		snprintf(ns_node[i], sizeof(ns_node[i]), "%s-n%d", prefix, i + 1);
	th_tmpdir(dir, sizeof(dir));
	snprintf(pki, sizeof(pki), "%s/pki", dir);
	{
		const char *a[] = { fabctl, "pki", "init", "--dir", pki, "--nodes", "node-a,node-b",
				    NULL };

		if (th_run(NULL, NULL, NULL, a, 60))
			die("fabctl pki init failed");
	}

	printf("bench_migrate: measuring the link's raw bandwidth ...\n");
	fflush(stdout);
	floor_bw = floor_mib_s(mem_mib);
	floor_ms = (double)mem_mib / floor_bw * 1e3;

	snprintf(db, sizeof(db), "%s/fabctld.db", dir);
	snprintf(log, sizeof(log), "%s/fabctld.log", dir);
	dargv[0] = fabctld;
	dargv[4] = db;
	th_spawn(log, ns_hub, dargv);
	for (int i = 0; i < 2; i++)
		start_node(i);
	if (!th_wait(nodes_up, NULL, 30000))
		die("the nodes did not come up");

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
		wait_part(name, "running", "memtest: t=", 120000);
		/* The partition was placed by the scheduler: find where. */
		{
			char *out = NULL, node[32];

			if (ctl(&out, "--json", "partition", "show", name, NULL) ||
			    json_get(out, "node", node, sizeof(node)))
				die("partition show %s", name);
			on = strcmp(node, node_names[0]) ? 1 : 0;
			free(out);
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
	th_cleanup();
	for (int i = 0; i < nrows; i++)
		if (!rows[i].verified)
			return 1;
	return 0;
}
