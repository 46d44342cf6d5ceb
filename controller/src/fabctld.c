// SPDX-License-Identifier: MIT
/* fabctld: the cluster controller daemon. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fab/log.h"
#include "fab/util.h"
#include "ctl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fabctld [options]\n"
		"  --listen HOST:PORT   address for nodes and fabctl (default 0.0.0.0:%s)\n"
		"  --db PATH            SQLite database (default /var/lib/fabric/fabctld.db)\n"
		"  --pki DIR            cluster PKI directory (default /etc/fabric/pki)\n"
		"  --lease-ms N         a node is down after N ms without heartbeat (default %d)\n"
		"  --heartbeat-ms N     heartbeat interval given to nodes (default lease/5)\n"
		"  --addr-file PATH     write the bound address there once listening\n"
		"  --policy P           placement policy: spread (default) or pack\n"
		"  --stop-timeout-ms N  graceful stop time before a forced stop (default 10000)\n"
		"  --log-level LEVEL    err, warn, info (default) or debug\n",
		CTL_DEFAULT_PORT, CTL_DEFAULT_LEASE_MS);
}

static int write_addr_file(const char *path, const char *addr)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%s\n", addr);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -errno;
	return 0;
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	fab_info("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "db", required_argument, NULL, 'd' },
		{ "pki", required_argument, NULL, 'p' },
		{ "lease-ms", required_argument, NULL, 'L' },
		{ "heartbeat-ms", required_argument, NULL, 'H' },
		{ "addr-file", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "policy", required_argument, NULL, 'P' },
		{ "stop-timeout-ms", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_server_cfg cfg = {
		.listen = "0.0.0.0:" CTL_DEFAULT_PORT,
		.db_path = "/var/lib/fabric/fabctld.db",
		.pki_dir = "/etc/fabric/pki",
		.lease_ms = CTL_DEFAULT_LEASE_MS,
	};
	enum fab_log_level level = FAB_LOG_INFO;
	const char *addr_file = NULL;
	struct ctl_server *srv;
	struct ev_loop *loop;
	ev_signal sigint, sigterm;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			cfg.listen = optarg;
			break;
		case 'd':
			cfg.db_path = optarg;
			break;
		case 'p':
			cfg.pki_dir = optarg;
			break;
		case 'L':
			if (fab_parse_u32(optarg, 100, 3600000, &cfg.lease_ms)) {
				fprintf(stderr,
					"fabctld: --lease-ms wants 100..3600000, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'H':
			if (fab_parse_u32(optarg, 10, 3600000, &cfg.heartbeat_ms)) {
				fprintf(stderr,
					"fabctld: --heartbeat-ms wants 10..3600000, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'a':
			addr_file = optarg;
			break;
		case 'P':
			if (strcmp(optarg, "spread") && strcmp(optarg, "pack")) {
				fprintf(stderr, "fabctld: --policy wants spread or pack, not '%s'\n",
					optarg);
				return 2;
			}
			cfg.policy = optarg;
			break;
		case 'S':
			if (fab_parse_u32(optarg, 1, 3600000, &cfg.stop_timeout_ms)) {
				fprintf(stderr,
					"fabctld: --stop-timeout-ms wants 1..3600000, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'v':
			if (fab_log_level_parse(optarg, &level)) {
				fprintf(stderr, "fabctld: unknown log level '%s'\n", optarg);
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
		fprintf(stderr, "fabctld: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	fab_log_init("fabctld", level);
	/* A peer that vanishes mid-write must cost an error, not the process. */
	signal(SIGPIPE, SIG_IGN);

	loop = ev_default_loop(EVFLAG_AUTO);
	rc = ctl_server_new(loop, &cfg, &srv);
	if (rc) {
		fab_err("cannot start: %s", strerror(-rc));
		return 1;
	}
	fab_info("listening on %s (lease %u ms), database %s", ctl_server_addr(srv), cfg.lease_ms,
		 cfg.db_path);
	if (addr_file) {
		rc = write_addr_file(addr_file, ctl_server_addr(srv));
		if (rc) {
			fab_err("writing %s: %s", addr_file, strerror(-rc));
			ctl_server_free(srv);
			return 1;
		}
	}
	ev_signal_init(&sigint, stop_cb, SIGINT);
	ev_signal_init(&sigterm, stop_cb, SIGTERM);
	ev_signal_start(loop, &sigint);
	ev_signal_start(loop, &sigterm);
	ev_run(loop, 0);
	ctl_server_free(srv);
	fab_info("stopped");
	return 0;
}
