// SPDX-License-Identifier: MIT
/* fabnode: the per-host daemon (hypervisor core, VMBus host, VSPs, agent). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "fab/conn.h"
#include "fab/hvabi.h"
#include "fab/log.h"
#include "fab/nodecfg.h"
#include "fab/nodehv.h"
#include "fab/pki.h"
#include "fab/remote.h"
#include "fab/util.h"
#include "pmgr.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fabnode run IMAGE [--memory SIZE] [--vcpus N] [--console-log PATH] "
		"[--disk PATH[,ro]]... [--config FILE --name PARTITION [--transport T]]\n"
		"        [-- ARGS...]\n"
		"  runs one partition standalone, streams its console to stdout and exits\n"
		"  with the guest's exit status (125: crashed, 126: image refused,\n"
		"  127: host error, 130: interrupted); with --config, the file's\n"
		"  [remote PARTITION/DEVICE] sections add disks served by other nodes\n"
		"usage: fabnode serve --name NAME [options]\n"
		"  --name NAME            node name (its certificate is node-NAME.crt)\n"
		"  --controller HOST:PORT controller address (default 127.0.0.1:7700)\n"
		"  --pki DIR              cluster PKI directory (default /etc/fabric/pki)\n"
		"  --vcpus N              vCPUs offered to partitions (default: online CPUs;\n"
		"                         0: a storage-only node)\n"
		"  --memory SIZE          memory offered, e.g. 16G (default: physical RAM)\n"
		"  --data-addr HOST:PORT  address other nodes reach this node's fabric on; it\n"
		"                         serves its volumes there (port 0: any free port)\n"
		"  --volume-dir DIR       the controller's volumes "
		"(default " NHV_CFG_DEFAULT_VOLUME_DIR ")\n"
		"  --image-dir DIR        partition images (default " NHV_CFG_DEFAULT_IMAGE_DIR
		")\n"
		"  --state-dir DIR        console logs and state "
		"(default " NHV_CFG_DEFAULT_STATE_DIR ")\n"
		"  --transport T          tcp, rdma or auto (default: rdma if a device is up)\n"
		"  --config FILE          settings file (format: node-hv/include/fab/nodecfg.h);\n"
		"                         flags override it\n"
		"  --log-level LEVEL      err, warn, info (default) or debug\n");
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	fab_info("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

/* SIGUSR1: the data plane's counters into the log. */
static void status_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	nhv_dp_log_status(w->data);
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
		{ "transport", required_argument, NULL, 't' },
		{ "config", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "volume-dir", required_argument, NULL, 'D' },
		{ "image-dir", required_argument, NULL, 'I' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct nhv_config fcfg; /* large: not on the stack */
	static char data_bound[NHV_CFG_ADDR_MAX];
	static const char *transports[] = { "tcp" };
	const char *transport = "auto";
	/* The device providers this build of node-hv implements. */
	static const char *const vsps[] = { "storage", "heartbeat", "shutdown" };
	struct nhv_agent_cfg cfg = {
		.controller = "127.0.0.1:7700",
		.pki_dir = "/etc/fabric/pki",
		.transports = transports,
		.n_transports = 1,
		.vsps = vsps,
		.n_vsps = FAB_ARRAY_SIZE(vsps),
		.data_addr = "",
	};
	struct nhv_pmgr_cfg pcfg = {
		.image_dir = NHV_CFG_DEFAULT_IMAGE_DIR,
		.volume_dir = NHV_CFG_DEFAULT_VOLUME_DIR,
		.state_dir = NHV_CFG_DEFAULT_STATE_DIR,
	};
	enum fab_log_level level = FAB_LOG_INFO;
	struct sysinfo si;
	struct nhv_agent *agent;
	struct nhv_pmgr *pm = NULL;
	struct nhv_vols *vols = NULL;
	struct nhv_dp *dp = NULL;
	struct ev_loop *loop;
	ev_signal sigint, sigterm, sigusr1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char host[256], port[8];
	int c, rc;

	cfg.vcpus = ncpu > 0 ? (uint32_t)ncpu : 1;
	if (sysinfo(&si) == 0)
		cfg.memory_bytes = (uint64_t)si.totalram * si.mem_unit;
	/* A --config file first, so flags given on the command line win. */
	for (int i = 1; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--config")) {
			char err[400];

			if (nhv_config_load(argv[i + 1], &fcfg, err, sizeof(err))) {
				fprintf(stderr, "fabnode: %s\n", err);
				return 2;
			}
			cfg.name = fcfg.name;
			if (fcfg.controller[0])
				cfg.controller = fcfg.controller;
			if (fcfg.pki[0])
				cfg.pki_dir = fcfg.pki;
			if (fcfg.data_listen[0])
				cfg.data_addr = fcfg.data_listen;
			if (fcfg.transport[0])
				transport = fcfg.transport;
			if (fcfg.vcpus_set)
				cfg.vcpus = fcfg.vcpus;
			if (fcfg.memory_bytes)
				cfg.memory_bytes = fcfg.memory_bytes;
			if (fcfg.volume_dir[0])
				pcfg.volume_dir = fcfg.volume_dir;
			if (fcfg.image_dir[0])
				pcfg.image_dir = fcfg.image_dir;
			if (fcfg.state_dir[0])
				pcfg.state_dir = fcfg.state_dir;
		}
	}
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
			if (fab_parse_u32(optarg, 0, 65536, &cfg.vcpus)) {
				fprintf(stderr, "fabnode: --vcpus wants 0..65536, not '%s'\n",
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
		case 't':
			if (strcmp(optarg, "tcp") && strcmp(optarg, "rdma") &&
			    strcmp(optarg, "auto")) {
				fprintf(stderr, "fabnode: --transport wants tcp, rdma or auto\n");
				return 2;
			}
			transport = optarg;
			break;
		case 'f':
			break; /* read above */
		case 'D':
		case 'I':
		case 'S':
			/* Paths are checked against these: absolute, as in the file. */
			if (optarg[0] != '/' || strlen(optarg) >= NHV_CFG_PATH_MAX) {
				fprintf(stderr, "fabnode: --%s wants an absolute path\n",
					c == 'D'   ? "volume-dir"
					: c == 'I' ? "image-dir"
						   : "state-dir");
				return 2;
			}
			*(c == 'D'   ? &pcfg.volume_dir
			  : c == 'I' ? &pcfg.image_dir
				     : &pcfg.state_dir) = optarg;
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
	/* The data plane decides the transport the node advertises, and
	 * serves this node's exports to partitions on other nodes. */
	rc = nhv_dp_start(transport, cfg.pki_dir, cfg.name, &dp);
	if (rc) {
		fab_err("cannot start the data plane (%s transport): %s", transport, strerror(-rc));
		return 1;
	}
	transports[0] = nhv_dp_transport(dp);
	/* The skeleton serves the config's exports and the volumes the
	 * controller creates, wherever other nodes are told to reach us. */
	if (cfg.data_addr[0] || fcfg.nexports) {
		if (!cfg.data_addr[0]) {
			fab_err("the config has exports but no data_listen to serve them on");
			nhv_dp_stop(dp);
			return 2;
		}
		rc = nhv_skel_serve(dp, cfg.data_addr, &fcfg, data_bound, sizeof(data_bound));
		if (rc) {
			fab_err("cannot serve exports on %s: %s", cfg.data_addr, strerror(-rc));
			nhv_dp_stop(dp);
			return 1;
		}
		fab_info("serving %u export(s) on %s over %s", fcfg.nexports, data_bound,
			 transports[0]);
		/* Port 0 asked for any port: tell the controller which. */
		fab_hostport_split(cfg.data_addr, host, sizeof(host), port, sizeof(port));
		if (!strcmp(port, "0"))
			cfg.data_addr = data_bound;
	}
	pcfg.loop = loop;
	pcfg.node = cfg.name;
	pcfg.vcpus = cfg.vcpus;
	pcfg.memory_bytes = cfg.memory_bytes;
	pcfg.dp = dp;
	rc = nhv_pmgr_new(&pcfg, &pm);
	if (!rc)
		nhv_pmgr_mig_enable(pm);
	if (!rc) {
		/* Without a listener the volumes are for local partitions. */
		struct nhv_vols_cfg vcfg = { .node = cfg.name,
					     .volume_dir = pcfg.volume_dir,
					     .dp = data_bound[0] ? dp : NULL,
					     .pm = pm };

		rc = nhv_vols_new(&vcfg, &vols);
	}
	if (rc) {
		fab_err("cannot start the partition manager and volume store: %s", strerror(-rc));
		nhv_pmgr_free(pm);
		nhv_dp_stop(dp);
		return 1;
	}
	cfg.pmgr = pm;
	cfg.vols = vols;
	rc = nhv_agent_start(loop, &cfg, &agent);
	if (rc) {
		fab_err("cannot start the controller agent: %s", strerror(-rc));
		nhv_vols_free(vols);
		nhv_pmgr_free(pm);
		nhv_dp_stop(dp);
		return 1;
	}
	fab_info("node %s: %u vCPUs, %llu MiB, controller %s; images in %s, volumes in %s",
		 cfg.name, cfg.vcpus, (unsigned long long)(cfg.memory_bytes >> 20), cfg.controller,
		 pcfg.image_dir, pcfg.volume_dir);
	ev_signal_init(&sigint, stop_cb, SIGINT);
	ev_signal_init(&sigterm, stop_cb, SIGTERM);
	ev_signal_start(loop, &sigint);
	ev_signal_start(loop, &sigterm);
	ev_signal_init(&sigusr1, status_cb, SIGUSR1);
	sigusr1.data = dp;
	ev_signal_start(loop, &sigusr1);
	ev_run(loop, 0);
	/* The agent lets go of pmgr and vols; partitions go before the data
	 * plane, which their remote disks' stubs need until they are freed. */
	nhv_agent_stop(agent);
	nhv_pmgr_free(pm);
	nhv_vols_free(vols);
	nhv_dp_stop(dp);
	fab_info("stopped");
	return 0;
}

/* ---- fabnode run -------------------------------------------------------- */

#define RUN_CRASHED	125
#define RUN_BAD_IMAGE	126
#define RUN_HOST_ERROR	127
#define RUN_INTERRUPTED 130
#define RUN_MAX_IMAGE	(256u << 20)

static void run_console(struct nhv_partition *p, const char *buf, size_t len, void *arg)
{
	fwrite(buf, 1, len, stdout);
	fflush(stdout);
}

/* Reads a whole file (at most max bytes). Returns 0 or a negative errno. */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return -EIO;
	}
	if ((size_t)n > max) {
		fclose(f);
		return -EFBIG;
	}
	buf = malloc(n ? (size_t)n : 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return buf ? -EIO : -ENOMEM;
	}
	fclose(f);
	*out = buf;
	*len = (size_t)n;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'V' },
		{ "console-log", required_argument, NULL, 'c' },
		{ "disk", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'f' },
		{ "name", required_argument, NULL, 'n' },
		{ "transport", required_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct nhv_config fcfg; /* large: not on the stack */
	const char *config_path = NULL, *pname = NULL, *transport = NULL;
	struct nhv_dp *dp = NULL;
	char *disks[8];
	int ndisks = 0;
	struct nhv_partition_cfg cfg = {
		.id = 1,
		.ram_bytes = 64ull << 20,
		.vcpus = 1,
		.console_cb = run_console,
	};
	enum fab_log_level level = FAB_LOG_WARN;
	const char *gargv[64];
	struct timespec zero = { 0 };
	struct nhv_partition *p;
	sigset_t set;
	char err[300];
	uint8_t *img = NULL;
	size_t len = 0;
	int c, rc, st;

	/* Options may come before or after IMAGE; guest arguments follow
	 * "--" (getopt moves non-options to the end, keeping their order). */
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (fab_parse_size(optarg, &cfg.ram_bytes)) {
				fprintf(stderr,
					"fabnode run: --memory wants a size like 64M, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'V':
			if (fab_parse_u32(optarg, 1, NHV_MAX_VCPUS, &cfg.vcpus)) {
				fprintf(stderr, "fabnode run: --vcpus wants 1..%d, not '%s'\n",
					NHV_MAX_VCPUS, optarg);
				return 2;
			}
			break;
		case 'c':
			cfg.console_path = optarg;
			break;
		case 'd':
			if (ndisks == (int)FAB_ARRAY_SIZE(disks)) {
				fprintf(stderr, "fabnode run: at most %zu disks\n",
					FAB_ARRAY_SIZE(disks));
				return 2;
			}
			disks[ndisks++] = optarg;
			break;
		case 'f':
			config_path = optarg;
			break;
		case 'n':
			if (fab_name_valid(optarg)) {
				fprintf(stderr,
					"fabnode run: --name wants 1-63 of a-z 0-9 . _ -, not "
					"'%s'\n",
					optarg);
				return 2;
			}
			pname = optarg;
			break;
		case 't':
			if (strcmp(optarg, "tcp") && strcmp(optarg, "rdma") &&
			    strcmp(optarg, "auto")) {
				fprintf(stderr,
					"fabnode run: --transport wants tcp, rdma or auto\n");
				return 2;
			}
			transport = optarg;
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
	if (!config_path != !pname) {
		fprintf(stderr, "fabnode run: --config and --name go together (the partition's "
				"name selects its [remote NAME/DEVICE] sections)\n");
		return 2;
	}
	if (config_path && nhv_config_load(config_path, &fcfg, err, sizeof(err))) {
		fprintf(stderr, "fabnode run: %s\n", err);
		return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "fabnode run: which image? (fabnode run IMAGE [-- ARGS])\n");
		return 2;
	}
	fab_log_init("fabnode", level);
	rc = read_file(argv[optind], RUN_MAX_IMAGE, &img, &len);
	if (rc) {
		fprintf(stderr, "fabnode run: %s: %s\n", argv[optind],
			rc == -EFBIG ? "larger than 256 MiB" : strerror(-rc));
		return RUN_BAD_IMAGE;
	}
	/* Guest argv: the image name, then what follows (after an optional --). */
	gargv[0] = argv[optind];
	cfg.argc = 1;
	for (int i = optind + 1; i < argc; i++) {
		if (cfg.argc >= (int)FAB_ARRAY_SIZE(gargv)) {
			fprintf(stderr, "fabnode run: too many guest arguments\n");
			free(img);
			return 2;
		}
		gargv[cfg.argc++] = argv[i];
	}
	cfg.argv = gargv;
	cfg.image = img;
	cfg.image_len = len;

	/* SIGINT/SIGTERM are collected here, never delivered to vCPU threads. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	rc = nhv_partition_create(&cfg, &p, err, sizeof(err));
	free(img);
	if (rc) {
		fprintf(stderr, "fabnode run: %s\n", err);
		return rc == -ENOEXEC		       ? RUN_BAD_IMAGE
		       : rc == -EINVAL || rc == -E2BIG ? 2
						       : RUN_HOST_ERROR;
	}
	/* Devices: each --disk PATH[,ro], and the integration components
	 * (heartbeat, shutdown) so a signal can ask the guest to stop. */
	for (int i = 0; i < ndisks; i++) {
		char *ro = strrchr(disks[i], ',');
		bool read_only = ro && !strcmp(ro, ",ro");

		if (read_only)
			*ro = '\0';
		rc = nhv_partition_attach_disk(p, disks[i], read_only, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "fabnode run: %s\n", err);
			nhv_partition_destroy(p);
			return 2;
		}
	}
	/* Disks served by other nodes: stubs on a data plane of this node. */
	for (unsigned i = 0; config_path && i < fcfg.nremotes; i++) {
		const struct nhv_cfg_remote *r = &fcfg.remotes[i];

		if (strcmp(r->partition, pname))
			continue;
		if (!dp) {
			signal(SIGPIPE, SIG_IGN);
			if (!transport)
				transport = fcfg.transport[0] ? fcfg.transport : "auto";
			rc = nhv_dp_start(transport, fcfg.pki[0] ? fcfg.pki : "/etc/fabric/pki",
					  fcfg.name, &dp);
			if (rc) {
				fprintf(stderr, "fabnode run: cannot start the data plane: %s\n",
					strerror(-rc));
				nhv_partition_destroy(p);
				return RUN_HOST_ERROR;
			}
		}
		rc = nhv_stub_attach(dp, p, pname, r, NULL);
		if (rc) {
			fprintf(stderr, "fabnode run: remote disk %s/%s: %s\n", r->partition,
				r->device, strerror(-rc));
			nhv_partition_destroy(p);
			nhv_dp_stop(dp);
			return RUN_HOST_ERROR;
		}
	}
	rc = nhv_partition_attach_ic(p);
	if (!rc)
		rc = nhv_partition_start(p);
	if (rc) {
		fprintf(stderr, "fabnode run: cannot start: %s\n", strerror(-rc));
		nhv_partition_destroy(p);
		nhv_dp_stop(dp);
		return RUN_HOST_ERROR;
	}
	{
		int64_t hard_stop = 0; /* monotonic ms; 0: no shutdown asked yet */

		for (;;) {
			st = nhv_partition_wait(p, 100);
			if (st >= 0)
				break;
			int sig = sigtimedwait(&set, NULL, &zero);

			if (sig == SIGUSR1) {
				nhv_dp_log_status(dp);
				continue;
			}
			if (sig > 0) {
				/* First signal: ask the guest; a second one, or a
				 * guest that does not answer, stops it hard. */
				if (!hard_stop && nhv_partition_request_shutdown(p) == 0) {
					fprintf(stderr, "fabnode run: asked the guest to shut "
							"down (signal again to stop it now)\n");
					hard_stop = fab_mono_ms() + 10000;
					continue;
				}
				hard_stop = 1;
			}
			if (hard_stop && fab_mono_ms() >= hard_stop) {
				fprintf(stderr, "fabnode run: stopping the partition\n");
				nhv_partition_stop(p);
				nhv_partition_destroy(p);
				nhv_dp_stop(dp);
				return RUN_INTERRUPTED;
			}
		}
	}
	if (st == NHV_PART_EXITED) {
		rc = nhv_partition_exit_status(p);
	} else {
		nhv_partition_reason(p, err, sizeof(err));
		fprintf(stderr, "fabnode run: partition %s: %s\n",
			nhv_part_state_name((enum nhv_part_state)st), err);
		rc = RUN_CRASHED;
	}
	nhv_partition_destroy(p);
	nhv_dp_stop(dp);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
