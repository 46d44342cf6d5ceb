// SPDX-License-Identifier: MIT
/*
 * fabctl: the operator's command line.
 *
 * Exit codes: 0 success, 1 the controller refused or failed the request,
 * 2 usage error, 3 cannot reach or authenticate with the controller,
 * 4 local failure (files, PKI).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "ctl.h"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_LOCAL = 4 };

struct cli {
	const char *controller;
	const char *pki;
	const char *admin;
	double timeout_s;
};

/* ---- one request, one reply --------------------------------------------- */

struct rpc {
	Fab__Envelope *req;
	Fab__Envelope *reply;
	struct fab_conn *conn;
	ev_timer timeout; /* stopped when the connection closes: it points at it */
	int err;
	char why[300];
};

static void rpc_open(struct fab_conn *c, void *arg)
{
	struct rpc *r = arg;
	int rc = fab_conn_send_pb(c, &r->req->base);

	if (rc)
		fab_conn_close(c, rc, "cannot send request");
}

static void rpc_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	struct rpc *r = arg;

	r->reply = fab__envelope__unpack(NULL, len, p);
	if (!r->reply)
		fab_conn_close(c, -EPROTO, "undecodable reply from the controller");
	else
		fab_conn_close_after_flush(c);
}

static void rpc_close(struct fab_conn *c, int err, void *arg)
{
	struct rpc *r = arg;

	r->err = err;
	snprintf(r->why, sizeof(r->why), "%s", fab_conn_reason(c));
	ev_timer_stop(EV_DEFAULT, &r->timeout);
	r->conn = NULL;
	ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static const struct fab_conn_ops rpc_ops = {
	.open_cb = rpc_open,
	.frame_cb = rpc_frame,
	.close_cb = rpc_close,
};

static void rpc_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rpc *r = w->data;

	if (r->conn)
		fab_conn_close(r->conn, -ETIMEDOUT, "no reply from the controller in time");
}

/* Returns 0 with *reply set (caller frees), or an exit code. Errors are
 * printed here. */
static int rpc_call(const struct cli *cli, Fab__Envelope *req, Fab__Envelope **reply)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.handshake_timeout_s = cli->timeout_s,
	};
	struct rpc r = { .req = req };
	struct ev_loop *loop = EV_DEFAULT;
	SSL_CTX *ctx;
	int rc;

	rc = fab_tls_ctx_new(cli->pki, FAB_ROLE_ADMIN, cli->admin, 0, &ctx);
	if (rc) {
		fprintf(stderr, "fabctl: cannot load admin credentials '%s' from %s: %s\n",
			cli->admin, cli->pki, strerror(-rc));
		return EXIT_LOCAL;
	}
	rc = fab_conn_connect(loop, ctx, cli->controller, &opts, &rpc_ops, &r, &r.conn);
	if (rc) {
		fprintf(stderr, "fabctl: controller address '%s': %s\n", cli->controller,
			strerror(-rc));
		SSL_CTX_free(ctx);
		return EXIT_CONNECT;
	}
	ev_timer_init(&r.timeout, rpc_timeout, cli->timeout_s, 0.);
	r.timeout.data = &r;
	ev_timer_start(loop, &r.timeout);
	ev_run(loop, 0);
	ev_timer_stop(loop, &r.timeout);
	SSL_CTX_free(ctx);

	if (!r.reply) {
		fprintf(stderr, "fabctl: controller %s: %s\n", cli->controller, r.why);
		return EXIT_CONNECT;
	}
	if (r.reply->body_case == FAB__ENVELOPE__BODY_ERROR) {
		fprintf(stderr, "fabctl: controller refused: %s\n", r.reply->error->message);
		fab__envelope__free_unpacked(r.reply, NULL);
		return EXIT_REFUSED;
	}
	*reply = r.reply;
	return 0;
}

/* ---- output ------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_list(FILE *f, char **v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputs(", ", f);
		json_str(f, v[i]);
	}
	fputc(']', f);
}

static const char *state_name(Fab__NodeState st)
{
	switch (st) {
	case FAB__NODE_STATE__NODE_STATE_UP:
		return "up";
	case FAB__NODE_STATE__NODE_STATE_DOWN:
		return "down";
	default:
		return "unknown";
	}
}

static void join(char *dst, size_t len, char **v, size_t n)
{
	size_t off = 0;

	dst[0] = '\0';
	if (!n)
		snprintf(dst, len, "-");
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(dst + off, len - off, "%s%s", i ? "," : "", v[i]);
}

static void print_nodes_json(const Fab__NodeListReply *r)
{
	printf("[");
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Fab__NodeInfo *n = r->nodes[i];

		printf("%s\n  {\"name\": ", i ? "," : "");
		json_str(stdout, n->name);
		printf(", \"state\": \"%s\", \"vcpus\": %u, \"memory_bytes\": %" PRIu64
		       ", \"transports\": ",
		       state_name(n->state), n->vcpus, n->memory_bytes);
		json_list(stdout, n->transports, n->n_transports);
		printf(", \"vsps\": ");
		json_list(stdout, n->vsps, n->n_vsps);
		printf(", \"data_addr\": ");
		json_str(stdout, n->data_addr);
		printf(", \"peer_addr\": ");
		json_str(stdout, n->peer_addr);
		printf(", \"version\": ");
		json_str(stdout, n->version);
		printf(", \"generation\": %" PRIu64 ", \"registered_unix_ms\": %" PRId64
		       ", \"last_seen_unix_ms\": %" PRId64 "}",
		       n->generation, n->registered_unix_ms, n->last_seen_unix_ms);
	}
	printf("%s]\n", r->n_nodes ? "\n" : "");
}

static void print_nodes_table(const Fab__NodeListReply *r)
{
	int64_t now = fab_unix_ms();

	printf("%-20s %-5s %5s %9s %-10s %-16s %-22s %s\n", "NAME", "STATE", "VCPUS", "MEMORY",
	       "TRANSPORTS", "VSPS", "ADDRESS", "LAST SEEN");
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Fab__NodeInfo *n = r->nodes[i];
		char mem[16], tr[64], vs[128], age[32];

		fab_fmt_size(n->memory_bytes, mem, sizeof(mem));
		join(tr, sizeof(tr), n->transports, n->n_transports);
		join(vs, sizeof(vs), n->vsps, n->n_vsps);
		if (n->last_seen_unix_ms > 0) {
			fab_fmt_age(now - n->last_seen_unix_ms, age, sizeof(age));
			strncat(age, " ago", sizeof(age) - strlen(age) - 1);
		} else {
			snprintf(age, sizeof(age), "never");
		}
		printf("%-20s %-5s %5u %9s %-10s %-16s %-22s %s\n", n->name, state_name(n->state),
		       n->vcpus, mem, tr, vs, n->data_addr[0] ? n->data_addr : n->peer_addr, age);
	}
}

/* ---- commands ----------------------------------------------------------- */

static int cmd_node_list(const struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__NodeListRequest nl = FAB__NODE_LIST_REQUEST__INIT;
	int json = 0, c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			fprintf(stderr, "usage: fabctl node list [--json]\n");
			return EXIT_USAGE;
		}
		json = 1;
	}
	if (optind != argc) {
		fprintf(stderr, "fabctl node list: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	req.id = 1;
	req.body_case = FAB__ENVELOPE__BODY_NODE_LIST;
	req.node_list = &nl;
	rc = rpc_call(cli, &req, &reply);
	if (rc)
		return rc;
	if (reply->body_case != FAB__ENVELOPE__BODY_NODE_LIST_REPLY) {
		fprintf(stderr, "fabctl: unexpected reply from the controller\n");
		fab__envelope__free_unpacked(reply, NULL);
		return EXIT_REFUSED;
	}
	if (json)
		print_nodes_json(reply->node_list_reply);
	else
		print_nodes_table(reply->node_list_reply);
	fab__envelope__free_unpacked(reply, NULL);
	return 0;
}

static int pki_issue_one(const char *dir, enum fab_role role, const char *name, int days)
{
	char crt[4096], key[4096];
	int rc = fab_pki_issue(dir, role, name, days);

	if (rc) {
		fprintf(stderr, "fabctl: issuing %s certificate for '%s': %s\n",
			fab_role_name(role), name,
			rc == -EEXIST ? "it already exists (never overwritten)" : strerror(-rc));
		return rc == -EINVAL ? EXIT_USAGE : EXIT_LOCAL;
	}
	fab_pki_paths(dir, role, name, crt, key, sizeof(crt));
	printf("issued %-10s %-20s %s\n", fab_role_name(role), name, crt);
	return 0;
}

static int cmd_pki(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "admin", required_argument, NULL, 'a' },
		{ "days", required_argument, NULL, 'D' },
		{ "role", required_argument, NULL, 'r' },
		{ "name", required_argument, NULL, 'N' },
		{ 0 },
	};
	const char *dir = NULL, *cluster = "fabric", *admin = "admin", *name = NULL;
	char *nodes = NULL, *list[256];
	enum fab_role role = FAB_ROLE_NONE;
	uint32_t days = 825;
	int c, rc, init;
	size_t n;

	if (argc < 2 || (strcmp(argv[1], "init") && strcmp(argv[1], "issue"))) {
		fprintf(stderr,
			"usage: fabctl pki init --dir DIR [--cluster NAME] [--nodes A,B,...] "
			"[--admin NAME] [--days N]\n"
			"       fabctl pki issue --dir DIR --role node|admin|controller --name "
			"NAME "
			"[--days N]\n");
		return EXIT_USAGE;
	}
	init = !strcmp(argv[1], "init");
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'c':
			cluster = optarg;
			break;
		case 'n':
			nodes = optarg;
			break;
		case 'a':
			admin = optarg;
			break;
		case 'N':
			name = optarg;
			break;
		case 'D':
			if (fab_parse_u32(optarg, 1, 36500, &days)) {
				fprintf(stderr, "fabctl pki: --days wants 1..36500\n");
				return EXIT_USAGE;
			}
			break;
		case 'r':
			if (fab_role_parse(optarg, &role) || role == FAB_ROLE_NONE) {
				fprintf(stderr, "fabctl pki: unknown role '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (!dir || optind != argc) {
		fprintf(stderr, "fabctl pki %s: --dir is required%s\n", argv[1],
			optind != argc ? " and takes no positional arguments" : "");
		return EXIT_USAGE;
	}
	if (!init) {
		if (role == FAB_ROLE_NONE || !name) {
			fprintf(stderr, "fabctl pki issue: --role and --name are required\n");
			return EXIT_USAGE;
		}
		return pki_issue_one(dir, role, name, (int)days);
	}

	n = nodes ? ctl_split_list(nodes, list, FAB_ARRAY_SIZE(list)) : 0;
	for (size_t i = 0; i < n; i++) {
		if (fab_name_valid(list[i])) {
			fprintf(stderr,
				"fabctl pki init: invalid node name '%s' (a-z, 0-9, '.', "
				"'_', '-'; up to 63)\n",
				list[i]);
			return EXIT_USAGE;
		}
	}
	if (fab_name_valid(admin)) {
		fprintf(stderr, "fabctl pki init: invalid admin name '%s'\n", admin);
		return EXIT_USAGE;
	}
	rc = fab_pki_init_ca(dir, cluster, 3650);
	if (rc) {
		fprintf(stderr, "fabctl pki init: %s: %s\n", dir,
			rc == -EEXIST ? "already holds a cluster CA (never overwritten)"
				      : strerror(-rc));
		return EXIT_LOCAL;
	}
	printf("created cluster CA '%s' in %s\n", cluster, dir);
	rc = pki_issue_one(dir, FAB_ROLE_CONTROLLER, "controller", (int)days);
	if (!rc)
		rc = pki_issue_one(dir, FAB_ROLE_ADMIN, admin, (int)days);
	for (size_t i = 0; !rc && i < n; i++)
		rc = pki_issue_one(dir, FAB_ROLE_NODE, list[i], (int)days);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: fabctl [--controller HOST:PORT] [--pki DIR] [--admin NAME] "
		   "[--timeout S] COMMAND\n"
		   "commands:\n"
		   "  node list [--json]            nodes, their state and capacity\n"
		   "  pki init --dir DIR ...        create a cluster CA and certificates\n"
		   "  pki issue --dir DIR ...       issue one more certificate\n"
		   "environment: FABCTL_CONTROLLER, FABCTL_PKI, FABCTL_ADMIN\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "controller", required_argument, NULL, 'c' },
		{ "pki", required_argument, NULL, 'p' },
		{ "admin", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cli cli = {
		.controller = getenv("FABCTL_CONTROLLER"),
		.pki = getenv("FABCTL_PKI"),
		.admin = getenv("FABCTL_ADMIN"),
		.timeout_s = 10,
	};
	int c;

	if (!cli.controller)
		cli.controller = "127.0.0.1:" CTL_DEFAULT_PORT;
	if (!cli.pki)
		cli.pki = "/etc/fabric/pki";
	if (!cli.admin)
		cli.admin = "admin";
	fab_log_init("fabctl", FAB_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	/* Global options stop at the first command word. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cli.controller = optarg;
			break;
		case 'p':
			cli.pki = optarg;
			break;
		case 'a':
			cli.admin = optarg;
			break;
		case 't':
			cli.timeout_s = atof(optarg);
			if (cli.timeout_s <= 0 || cli.timeout_s > 3600) {
				fprintf(stderr, "fabctl: --timeout wants seconds in (0, 3600]\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc >= 2 && !strcmp(argv[0], "node") && !strcmp(argv[1], "list"))
		return cmd_node_list(&cli, argc - 1, argv + 1);
	if (argc >= 1 && !strcmp(argv[0], "pki"))
		return cmd_pki(argc, argv);
	usage(stderr);
	return EXIT_USAGE;
}
