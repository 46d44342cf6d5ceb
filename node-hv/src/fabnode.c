// SPDX-License-Identifier: MIT
/* fabnode: the per-host daemon (hypervisor core, VMBus host, VSPs, agent). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/nodehv.h"
#include "fab/pki.h"
#include "fab/util.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: fabnode serve --name NAME [options]\n"
		   "  --name NAME            node name (its certificate is node-NAME.crt)\n"
		   "  --controller HOST:PORT controller address (default 127.0.0.1:7700)\n"
		   "  --pki DIR              cluster PKI directory (default /etc/fabric/pki)\n"
		   "  --vcpus N              vCPUs offered to partitions (default: online CPUs)\n"
		   "  --memory SIZE          memory offered, e.g. 16G (default: physical RAM)\n"
		   "  --data-addr HOST:PORT  address other nodes reach this node's fabric on\n"
		   "  --log-level LEVEL      err, warn, info (default) or debug\n");
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	fab_info("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "controller", required_argument, NULL, 'c' },
		{ "pki", required_argument, NULL, 'p' },
		{ "vcpus", required_argument, NULL, 'V' },
		{ "memory", required_argument, NULL, 'm' },
		{ "data-addr", required_argument, NULL, 'd' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *const transports[] = { "tcp" };
	struct nhv_agent_cfg cfg = {
		.controller = "127.0.0.1:7700",
		.pki_dir = "/etc/fabric/pki",
		.transports = transports,
		.n_transports = 1,
		.data_addr = "",
	};
	enum fab_log_level level = FAB_LOG_INFO;
	struct sysinfo si;
	struct nhv_agent *agent;
	struct ev_loop *loop;
	ev_signal sigint, sigterm;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char host[256], port[8];
	int c, rc;

	cfg.vcpus = ncpu > 0 ? (uint32_t)ncpu : 1;
	if (sysinfo(&si) == 0)
		cfg.memory_bytes = (uint64_t)si.totalram * si.mem_unit;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			cfg.name = optarg;
			break;
		case 'c':
			cfg.controller = optarg;
			break;
		case 'p':
			cfg.pki_dir = optarg;
			break;
		case 'V':
			if (fab_parse_u32(optarg, 1, 65536, &cfg.vcpus)) {
				fprintf(stderr, "fabnode: --vcpus wants 1..65536, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'm':
			if (fab_parse_size(optarg, &cfg.memory_bytes) ||
			    cfg.memory_bytes < (1u << 20)) {
				fprintf(stderr,
					"fabnode: --memory wants a size of at least 1M "
					"(e.g. 512M, 16G), not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'd':
			if (fab_hostport_split(optarg, host, sizeof(host), port, sizeof(port))) {
				fprintf(stderr, "fabnode: --data-addr wants HOST:PORT, not '%s'\n",
					optarg);
				return 2;
			}
			cfg.data_addr = optarg;
			break;
		case 'v':
			if (fab_log_level_parse(optarg, &level)) {
				fprintf(stderr, "fabnode: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "fabnode serve: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!cfg.name || fab_name_valid(cfg.name)) {
		fprintf(stderr, "fabnode serve: --name is required: 1-63 of a-z 0-9 . _ -\n");
		return 2;
	}
	if (fab_hostport_split(cfg.controller, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, "fabnode: --controller wants HOST:PORT, not '%s'\n",
			cfg.controller);
		return 2;
	}
	fab_log_init("fabnode", level);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	loop = ev_default_loop(EVFLAG_AUTO);
	rc = nhv_agent_start(loop, &cfg, &agent);
	if (rc) {
		fab_err("cannot start the controller agent: %s", strerror(-rc));
		return 1;
	}
	fab_info("node %s: %u vCPUs, %llu MiB, controller %s", cfg.name, cfg.vcpus,
		 (unsigned long long)(cfg.memory_bytes >> 20), cfg.controller);
	ev_signal_init(&sigint, stop_cb, SIGINT);
	ev_signal_init(&sigterm, stop_cb, SIGTERM);
	ev_signal_start(loop, &sigint);
	ev_signal_start(loop, &sigterm);
	ev_run(loop, 0);
	nhv_agent_stop(agent);
	fab_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
