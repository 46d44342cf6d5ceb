// SPDX-License-Identifier: MIT
/*
 * fabctl: the operator's command line. This file holds main, the global
 * options, the request channel to fabctld and `pki`; the command groups
 * live in cli_*.c (see cli.h).
 *
 * Exit codes (the contract with scripts; fabctl --help lists them too):
 *   0  success
 *   1  the operation failed: the controller refused it for a reason not
 *      listed below, a partition failed, crashed or exited non-zero while
 *      fabctl waited for it, a volume failed to be created, the awaited
 *      state did not come within --wait-timeout, a local file could not be
 *      written
 *   2  usage error: bad arguments, unknown command or option, invalid name
 *      or size; also the controller's -EINVAL
 *   3  not found (-ENOENT)
 *   4  conflict: already exists or in use (-EEXIST, -EBUSY)
 *   5  no node fits (-ENOSPC, or a partition left pending for want of one)
 *   6  permission denied (-EACCES, -EPERM)
 *   7  cannot reach the controller, or it did not answer in time
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fab/conn.h"
#include "fab/log.h"
#include "fab/pki.h"
#include "fab/tls.h"
#include "fab/util.h"
#include "cli.h"
#include "ctl.h"

static const struct cli_group *const groups[] = {
	&cli_node_group,    &cli_volume_group,	  &cli_partition_group,
	&cli_cluster_group, &cli_migration_group,
};

/* ---- messages --------------------------------------------------------------- */

static void vprint_safe(FILE *f, const char *fmt, va_list ap)
{
	char line[1024], safe[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	fputs(cli_safe(line, safe, sizeof(safe)), f);
}

int cli_err(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("fabctl: ", stderr);
	va_start(ap, fmt);
	vprint_safe(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cli_usage_err(const struct cli_verb *v, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fabctl: %s %s: ", v->group, v->name);
	va_start(ap, fmt);
	vprint_safe(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (usage: fabctl %s %s %s)\n", v->group, v->name, v->synopsis);
	return CLI_USAGE;
}

void cli_progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint_safe(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- options of a verb ------------------------------------------------------ */

enum { OPT_JSON = 0x1000, OPT_HELP = 'h' };

void cli_opt_begin(void)
{
	optind = 0; /* glibc: start over, on a new argv */
	opterr = 0; /* we say what is wrong, on one line */
}

static void verb_usage(FILE *f, const struct cli_verb *v)
{
	fprintf(f, "usage: fabctl %s %s %s\n  %s\n", v->group, v->name, v->synopsis, v->summary);
}

int cli_opt_next(struct cli *cli, const struct cli_verb *v, int argc, char **argv,
		 const struct option *opts, int *rc)
{
	struct option all[24];
	size_t n = 0;

	for (; opts && opts[n].name; n++) {
		assert(n < FAB_ARRAY_SIZE(all) - 3);
		all[n] = opts[n];
	}
	all[n++] = (struct option){ "json", no_argument, NULL, OPT_JSON };
	all[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	all[n] = (struct option){ 0 };

	for (;;) {
		int c = getopt_long(argc, argv, ":h", all, NULL);
		const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
		char shortopt[3] = { '-', (char)optopt, 0 };

		/* optopt names a short option only when one was given. */
		if (strncmp(arg, "--", 2) && optopt > ' ' && optopt < 0x7f)
			arg = shortopt;

		switch (c) {
		case OPT_JSON:
			cli->json = true;
			continue;
		case OPT_HELP:
			verb_usage(stdout, v);
			*rc = CLI_OK;
			return -2;
		case '?':
			*rc = cli_usage_err(v, "unknown option '%s'", arg);
			return -2;
		case ':':
			*rc = cli_usage_err(v, "option '%s' wants a value", arg);
			return -2;
		default:
			return c;
		}
	}
}

int cli_check_name(const char *what, const char *name)
{
	if (!fab_name_valid(name))
		return 0;
	return cli_err(CLI_USAGE,
		       "invalid %s '%s': names are 1 to 63 of a-z, 0-9, '.', '_', '-', "
		       "starting with a letter or digit",
		       what, name);
}

int cli_one_name(const struct cli_verb *v, int argc, char **argv, const char *kind,
		 const char **name)
{
	char what[64];

	if (optind >= argc)
		return cli_usage_err(v, "which %s? NAME is missing", kind);
	if (argc - optind > 1)
		return cli_usage_err(v, "unexpected argument '%s'", argv[optind + 1]);
	snprintf(what, sizeof(what), "%s name", kind);
	if (cli_check_name(what, argv[optind]))
		return CLI_USAGE;
	*name = argv[optind];
	return 0;
}

int cli_no_args(const struct cli_verb *v, int argc, char **argv)
{
	if (optind < argc)
		return cli_usage_err(v, "unexpected argument '%s'", argv[optind]);
	return 0;
}

/* ---- the request channel ---------------------------------------------------- */

/*
 * One connection to the controller, kept open across the calls of a
 * command (a wait polls every 100 ms: one TLS handshake, not one per
 * poll). The loop runs only inside cli_call and cli_disconnect.
 */
static struct {
	struct ev_loop *loop;
	SSL_CTX *ctx;
	struct fab_conn *conn;
	unsigned replies; /* received on conn: it has been used before */
	uint64_t next_id; /* request ids: 1, 2, ... */
	uint64_t want_id; /* the request in flight */
	Fab__Envelope *reply;
	ev_timer timer; /* bounds one call */
	int err;	/* how the last connection ended */
	char why[300];
} rpc;

static void rpc_frame(struct fab_conn *c, const uint8_t *p, size_t len, void *arg)
{
	Fab__Envelope *e = fab__envelope__unpack(NULL, len, p);

	if (!e) {
		fab_conn_close(c, -EPROTO, "undecodable reply from the controller");
		return;
	}
	/* Late replies to an abandoned request are dropped; an Error with id
	 * 0 is about the connection and answers whatever is in flight. */
	if (rpc.reply ||
	    (e->id != rpc.want_id && !(e->id == 0 && e->body_case == FAB__ENVELOPE__BODY_ERROR))) {
		fab__envelope__free_unpacked(e, NULL);
		return;
	}
	rpc.reply = e;
	ev_break(rpc.loop, EVBREAK_ALL);
}

static void rpc_close(struct fab_conn *c, int err, void *arg)
{
	rpc.err = err;
	snprintf(rpc.why, sizeof(rpc.why), "%s", fab_conn_reason(c));
	rpc.conn = NULL;
	rpc.replies = 0;
	ev_break(rpc.loop, EVBREAK_ALL);
}

/* Requests queued before the handshake go out once it is done. */
static void rpc_open(struct fab_conn *c, void *arg)
{
}

static const struct fab_conn_ops rpc_ops = {
	.open_cb = rpc_open,
	.frame_cb = rpc_frame,
	.close_cb = rpc_close,
};

static void rpc_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (rpc.conn)
		fab_conn_close(rpc.conn, -ETIMEDOUT, "no reply from the controller in time");
}

/* The admin credentials, checked here so a missing file is one clear line. */
static int rpc_load_ctx(const struct cli *cli)
{
	char crt[4096], key[4096], ca[4096];
	const char *files[3] = { ca, crt, key };
	int rc;

	if (cli_check_name("--admin name", cli->admin))
		return CLI_USAGE;
	if (fab_pki_paths(cli->pki, FAB_ROLE_ADMIN, cli->admin, crt, key, sizeof(crt)))
		return cli_err(CLI_USAGE, "--pki '%s' is too long", cli->pki);
	snprintf(ca, sizeof(ca), "%s/ca.crt", cli->pki);
	for (size_t i = 0; i < FAB_ARRAY_SIZE(files); i++) {
		if (access(files[i], R_OK) == 0)
			continue;
		rc = errno;
		return cli_err(rc == EACCES   ? CLI_DENIED
			       : rc == ENOENT ? CLI_USAGE
					      : CLI_FAILED,
			       "cannot read the admin credentials: %s: %s (see --pki and --admin)",
			       files[i], strerror(rc));
	}
	rc = fab_tls_ctx_new(cli->pki, FAB_ROLE_ADMIN, cli->admin, 0, &rpc.ctx);
	if (rc)
		return cli_err(CLI_FAILED, "cannot use the admin credentials '%s' in %s: %s",
			       cli->admin, cli->pki, strerror(-rc));
	return 0;
}

static int rpc_connect(const struct cli *cli)
{
	struct fab_conn_opts opts = {
		.peer_roles = FAB_ROLE_BIT(FAB_ROLE_CONTROLLER),
		.handshake_timeout_s = cli->timeout_s,
		/* lists of a large cluster come in one reply (fabctld sends up
		 * to 16 MiB) */
		.max_frame = 16u << 20,
	};
	char host[256], port[16];
	int rc;

	if (fab_hostport_split(cli->controller, host, sizeof(host), port, sizeof(port)))
		return cli_err(CLI_USAGE, "--controller wants HOST:PORT, not '%s'",
			       cli->controller);
	if (!rpc.loop) {
		/* Not the default loop: that one reaps children on SIGCHLD,
		 * and cluster graph waits for its own (dot). */
		rpc.loop = ev_loop_new(EVFLAG_AUTO);
		if (!rpc.loop)
			return cli_err(CLI_FAILED, "cannot create an event loop");
		ev_init(&rpc.timer, rpc_timeout);
	}
	if (!rpc.ctx) {
		rc = rpc_load_ctx(cli);
		if (rc)
			return rc;
	}
	rpc.err = 0;
	rpc.why[0] = '\0';
	rpc.replies = 0;
	rc = fab_conn_connect(rpc.loop, rpc.ctx, cli->controller, &opts, &rpc_ops, NULL, &rpc.conn);
	if (rc)
		return cli_err(CLI_UNREACHABLE, "cannot reach the controller at %s: %s",
			       cli->controller, strerror(-rc));
	return 0;
}

void cli_disconnect(void)
{
	if (rpc.conn) {
		fab_conn_close_after_flush(rpc.conn);
		while (rpc.conn)
			ev_run(rpc.loop, EVRUN_ONCE);
	}
}

static void rpc_end(void)
{
	cli_disconnect();
	if (rpc.ctx)
		SSL_CTX_free(rpc.ctx);
	rpc.ctx = NULL;
	if (rpc.loop)
		ev_loop_destroy(rpc.loop);
	rpc.loop = NULL;
}

/* Requests that change nothing: safe to send again on a new connection. */
static bool is_read(Fab__Envelope__BodyCase b)
{
	switch (b) {
	case FAB__ENVELOPE__BODY_NODE_LIST:
	case FAB__ENVELOPE__BODY_NODE_SHOW:
	case FAB__ENVELOPE__BODY_VOLUME_SHOW:
	case FAB__ENVELOPE__BODY_VOLUME_LIST:
	case FAB__ENVELOPE__BODY_PARTITION_SHOW:
	case FAB__ENVELOPE__BODY_PARTITION_LIST:
	case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
	case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
	case FAB__ENVELOPE__BODY_EVENT_LIST:
	case FAB__ENVELOPE__BODY_MIGRATION_SHOW:
	case FAB__ENVELOPE__BODY_MIGRATION_LIST:
		return true;
	default:
		return false;
	}
}

static bool spec_ok(const Fab__PartitionInfo *p)
{
	return p && p->spec;
}

/*
 * The one place a reply is checked before any command looks at it: the
 * body the request calls for, with the submessages the commands rely on.
 * Strings need no check (protobuf-c gives "" for absent ones); they are
 * escaped or made visible wherever they are printed. Returns NULL or what
 * is wrong.
 */
static const char *reply_invalid(const Fab__Envelope *e, Fab__Envelope__BodyCase want)
{
	if (e->body_case != want)
		return "a reply of another kind";
	switch (e->body_case) {
	case FAB__ENVELOPE__BODY_NODE_LIST_REPLY:
		return e->node_list_reply ? NULL : "an empty node list reply";
	case FAB__ENVELOPE__BODY_NODE_REPLY:
		return e->node_reply && e->node_reply->node ? NULL : "a node reply without a node";
	case FAB__ENVELOPE__BODY_VOLUME_REPLY:
		return e->volume_reply && e->volume_reply->volume
			       ? NULL
			       : "a volume reply without a volume";
	case FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY:
		return e->volume_list_reply ? NULL : "an empty volume list reply";
	case FAB__ENVELOPE__BODY_PARTITION_REPLY:
		return e->partition_reply && spec_ok(e->partition_reply->partition)
			       ? NULL
			       : "a partition reply without a partition or its spec";
	case FAB__ENVELOPE__BODY_PARTITION_LIST_REPLY:
		if (!e->partition_list_reply)
			return "an empty partition list reply";
		for (size_t i = 0; i < e->partition_list_reply->n_partitions; i++)
			if (!spec_ok(e->partition_list_reply->partitions[i]))
				return "a partition without its spec";
		return NULL;
	case FAB__ENVELOPE__BODY_PLACEMENT:
		return e->placement ? NULL : "an empty placement";
	case FAB__ENVELOPE__BODY_CONSOLE_REPLY:
		return e->console_reply ? NULL : "an empty console reply";
	case FAB__ENVELOPE__BODY_MIGRATION_REPLY:
		if (!e->migration_reply || !e->migration_reply->migration)
			return "a migration reply without a migration";
		if (e->migration_reply->placement)
			for (size_t i = 0; i < e->migration_reply->placement->n_verdicts; i++)
				if (!e->migration_reply->placement->verdicts[i])
					return "an empty verdict";
		return NULL;
	case FAB__ENVELOPE__BODY_MIGRATION_LIST_REPLY:
		if (!e->migration_list_reply)
			return "an empty migration list reply";
		for (size_t i = 0; i < e->migration_list_reply->n_migrations; i++)
			if (!e->migration_list_reply->migrations[i])
				return "an empty migration";
		return NULL;
	case FAB__ENVELOPE__BODY_EVENT_LIST_REPLY:
		if (!e->event_list_reply)
			return "an empty event list reply";
		for (size_t i = 0; i < e->event_list_reply->n_events; i++)
			if (!e->event_list_reply->events[i])
				return "an empty event";
		return NULL;
	default:
		return NULL;
	}
}

int cli_exit_for_errno(int code)
{
	switch (code) {
	case -EINVAL:
		return CLI_USAGE;
	case -ENOENT:
		return CLI_NOT_FOUND;
	case -EEXIST:
	case -EBUSY:
		return CLI_CONFLICT;
	case -ENOSPC:
		return CLI_NO_FIT;
	case -EACCES:
	case -EPERM:
		return CLI_DENIED;
	default:
		return CLI_FAILED;
	}
}

/* One line for the controller's Error, naming what the request was about
 * when the controller's message does not. */
static void print_refusal(const struct cli *cli, const Fab__Error *e, const char *kind,
			  const char *name)
{
	char subject[160] = "";
	const char *msg = e->message;
	int code = e->code;

	if (kind && name)
		snprintf(subject, sizeof(subject), "%s '%s'", kind, name);
	else if (kind)
		snprintf(subject, sizeof(subject), "%s", kind);
	if (code == -EPROTO && !strcmp(msg, "unexpected message")) {
		cli_err(0,
			"the controller at %s does not know this request (%s); is fabctld older "
			"than fabctl?",
			cli->controller, msg);
		return;
	}
	if (msg[0]) {
		if (subject[0] && !(name && strstr(msg, name)))
			cli_err(0, "%s: %s", subject, msg);
		else
			cli_err(0, "%s", msg);
		return;
	}
	if (!subject[0])
		snprintf(subject, sizeof(subject), "request");
	switch (code) {
	case -ENOENT:
		cli_err(0, "%s not found", subject);
		break;
	case -EEXIST:
		cli_err(0, "%s already exists", subject);
		break;
	case -EBUSY:
		cli_err(0, "%s is in use", subject);
		break;
	case -ENOSPC:
		cli_err(0, "%s: no node fits", subject);
		break;
	case -EACCES:
	case -EPERM:
		cli_err(0, "%s: permission denied (this needs an admin certificate)", subject);
		break;
	default:
		cli_err(0, "%s: refused by the controller: %s", subject,
			code < 0 ? strerror(-code) : "no reason given");
		break;
	}
}

int cli_call(struct cli *cli, Fab__Envelope *req, Fab__Envelope__BodyCase want, const char *kind,
	     const char *name, unsigned flags, Fab__Envelope **reply, int *errcode)
{
	Fab__Envelope *e;
	const char *bad;
	int rc;

	if (errcode)
		*errcode = 0;
	for (int attempt = 0;; attempt++) {
		bool reused = rpc.conn && rpc.replies > 0;

		if (!rpc.conn) {
			rc = rpc_connect(cli);
			if (rc)
				return rc;
		}
		req->id = ++rpc.next_id;
		rpc.want_id = req->id;
		rpc.reply = NULL;
		rc = fab_conn_send_pb(rpc.conn, &req->base);
		if (rc && rc != -ENOTCONN)
			return cli_err(CLI_FAILED, "cannot send the request: %s", strerror(-rc));
		/* -ENOTCONN: it is closing; the loop runs its close. */
		ev_timer_set(&rpc.timer, cli->timeout_s, 0.);
		ev_timer_start(rpc.loop, &rpc.timer);
		while (!rpc.reply && rpc.conn)
			ev_run(rpc.loop, EVRUN_ONCE);
		ev_timer_stop(rpc.loop, &rpc.timer);
		if (rpc.reply)
			break;
		/* The kept connection was closed by the controller while
		 * idle: a read goes again on a new one. */
		if (reused && attempt == 0 && rpc.err != -ETIMEDOUT && is_read(req->body_case))
			continue;
		if (rpc.err == -ETIMEDOUT)
			return cli_err(CLI_UNREACHABLE,
				       "no answer from the controller at %s within %g s (%s)",
				       cli->controller, cli->timeout_s, rpc.why);
		return cli_err(CLI_UNREACHABLE, "cannot reach the controller at %s: %s",
			       cli->controller, rpc.why[0] ? rpc.why : "connection closed");
	}
	e = rpc.reply;
	rpc.reply = NULL;
	rpc.replies++;
	if (e->body_case == FAB__ENVELOPE__BODY_ERROR && e->error) {
		rc = cli_exit_for_errno(e->error->code);
		if (errcode)
			*errcode = e->error->code;
		if (!(flags & CLI_CALL_QUIET))
			print_refusal(cli, e->error, kind, name);
		fab__envelope__free_unpacked(e, NULL);
		/* The controller may close after an Error: start afresh. */
		cli_disconnect();
		return rc;
	}
	bad = reply_invalid(e, want);
	if (bad) {
		rc = cli_err(CLI_FAILED, "the controller sent %s (body %d, wanted %d)", bad,
			     (int)e->body_case, (int)want);
		fab__envelope__free_unpacked(e, NULL);
		cli_disconnect();
		return rc;
	}
	*reply = e;
	return 0;
}

/* ---- pki ----------------------------------------------------------------- */

static int pki_issue_one(const char *dir, enum fab_role role, const char *name, int days)
{
	char crt[4096], key[4096];
	int rc = fab_pki_issue(dir, role, name, days);

	if (rc) {
		fprintf(stderr, "fabctl: issuing %s certificate for '%s': %s\n",
			fab_role_name(role), name,
			rc == -EEXIST ? "it already exists (never overwritten)" : strerror(-rc));
		return rc == -EINVAL ? CLI_USAGE : rc == -EEXIST ? CLI_CONFLICT : CLI_FAILED;
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
	char *nodes = NULL, **list = NULL;
	enum fab_role role = FAB_ROLE_NONE;
	uint32_t days = 825;
	int c, rc, init;
	size_t n = 0;

	if (argc < 2 || (strcmp(argv[1], "init") && strcmp(argv[1], "issue"))) {
		fprintf(stderr,
			"usage: fabctl pki init --dir DIR [--cluster NAME] [--nodes A,B,...] "
			"[--admin NAME] [--days N]\n"
			"       fabctl pki issue --dir DIR --role node|admin|controller --name "
			"NAME "
			"[--days N]\n");
		return CLI_USAGE;
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
				return CLI_USAGE;
			}
			break;
		case 'r':
			if (fab_role_parse(optarg, &role) || role == FAB_ROLE_NONE) {
				fprintf(stderr, "fabctl pki: unknown role '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		default:
			return CLI_USAGE;
		}
	}
	if (!dir || optind != argc) {
		fprintf(stderr, "fabctl pki %s: --dir is required%s\n", argv[1],
			optind != argc ? " and takes no positional arguments" : "");
		return CLI_USAGE;
	}
	if (!init) {
		if (role == FAB_ROLE_NONE || !name) {
			fprintf(stderr, "fabctl pki issue: --role and --name are required\n");
			return CLI_USAGE;
		}
		return pki_issue_one(dir, role, name, (int)days);
	}

	if (nodes) {
		size_t max = 1;

		for (const char *q = nodes; *q; q++)
			max += *q == ',';
		list = calloc(max, sizeof(*list));
		if (!list) {
			fprintf(stderr, "fabctl pki init: out of memory\n");
			return CLI_FAILED;
		}
		n = ctl_split_list(nodes, list, max);
	}
	for (size_t i = 0; i < n; i++) {
		if (fab_name_valid(list[i])) {
			fprintf(stderr,
				"fabctl pki init: invalid node name '%s' (a-z, 0-9, '.', "
				"'_', '-'; up to 63)\n",
				list[i]);
			free(list);
			return CLI_USAGE;
		}
	}
	if (fab_name_valid(admin)) {
		fprintf(stderr, "fabctl pki init: invalid admin name '%s'\n", admin);
		free(list);
		return CLI_USAGE;
	}
	rc = fab_pki_init_ca(dir, cluster, 3650);
	if (rc) {
		fprintf(stderr, "fabctl pki init: %s: %s\n", dir,
			rc == -EEXIST ? "already holds a cluster CA (never overwritten)"
				      : strerror(-rc));
		free(list);
		return rc == -EEXIST ? CLI_CONFLICT : CLI_FAILED;
	}
	printf("created cluster CA '%s' in %s\n", cluster, dir);
	rc = pki_issue_one(dir, FAB_ROLE_CONTROLLER, "controller", (int)days);
	if (!rc)
		rc = pki_issue_one(dir, FAB_ROLE_ADMIN, admin, (int)days);
	for (size_t i = 0; !rc && i < n; i++)
		rc = pki_issue_one(dir, FAB_ROLE_NODE, list[i], (int)days);
	free(list);
	return rc;
}

/* ---- help and dispatch ------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: fabctl [--controller HOST:PORT] [--pki DIR] [--admin NAME] [--json]\n"
		   "              [--timeout SECONDS] [--wait-timeout SECONDS] COMMAND ...\n"
		   "\ncommands:\n");
	for (size_t g = 0; g < FAB_ARRAY_SIZE(groups); g++) {
		for (size_t i = 0; i < groups[g]->nverbs; i++) {
			const struct cli_verb *v = &groups[g]->verbs[i];

			fprintf(f, "  %s %s %s\n      %s\n", v->group, v->name, v->synopsis,
				v->summary);
		}
	}
	fprintf(f,
		"  pki init --dir DIR [--cluster NAME] [--nodes A,B,...] [--admin NAME] "
		"[--days N]\n"
		"      create a cluster CA with certificates for the controller, an admin and "
		"nodes\n"
		"  pki issue --dir DIR --role node|admin|controller --name NAME [--days N]\n"
		"      issue one more certificate\n"
		"\noptions:\n"
		"  --controller HOST:PORT  the controller (default 127.0.0.1:" CTL_DEFAULT_PORT
		"; env FABCTL_CONTROLLER)\n"
		"  --pki DIR               ca.crt and the admin certificate (default "
		"/etc/fabric/pki; env FABCTL_PKI)\n"
		"  --admin NAME            which admin certificate (default admin; env "
		"FABCTL_ADMIN)\n"
		"  --json                  JSON output: snake_case keys as in proto/fabric.proto\n"
		"                          (also accepted after a command)\n"
		"  --timeout SECONDS       for each request to the controller (default 10)\n"
		"  --wait-timeout SECONDS  for a volume or partition to reach a state "
		"(default 300)\n"
		"\nexit codes:\n"
		"  0  success\n"
		"  1  the operation failed: refused by the controller, a partition failed or "
		"crashed\n"
		"     (or exited non-zero) while waited for, volume creation failed, the wait "
		"timed out\n"
		"  2  usage error: bad arguments, unknown command or option, invalid name or "
		"size\n"
		"     (also the controller's EINVAL)\n"
		"  3  not found\n"
		"  4  conflict: already exists, or in use\n"
		"  5  no node fits\n"
		"  6  permission denied\n"
		"  7  cannot reach the controller, or it did not answer in time\n");
}

static void group_usage(FILE *f, const struct cli_group *g)
{
	fprintf(f, "usage:\n");
	for (size_t i = 0; i < g->nverbs; i++)
		fprintf(f, "  fabctl %s %s %s\n      %s\n", g->name, g->verbs[i].name,
			g->verbs[i].synopsis, g->verbs[i].summary);
}

static int run_group(struct cli *cli, const struct cli_group *g, int argc, char **argv)
{
	char names[256];
	size_t off = 0;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		group_usage(argc < 2 ? stderr : stdout, g);
		return argc < 2 ? CLI_USAGE : CLI_OK;
	}
	for (size_t i = 0; i < g->nverbs; i++) {
		if (!strcmp(argv[1], g->verbs[i].name)) {
			cli_opt_begin();
			return g->verbs[i].run(cli, &g->verbs[i], argc - 1, argv + 1);
		}
		off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
					g->verbs[i].name);
	}
	return cli_err(CLI_USAGE, "unknown %s command '%s' (one of: %s)", g->name, argv[1], names);
}

int main(int argc, char **argv)
{
	enum { OPT_WAIT = 0x100, OPT_GJSON };
	static const struct option opts[] = {
		{ "controller", required_argument, NULL, 'c' },
		{ "pki", required_argument, NULL, 'p' },
		{ "admin", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "wait-timeout", required_argument, NULL, OPT_WAIT },
		{ "json", no_argument, NULL, OPT_GJSON },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cli cli = {
		.controller = getenv("FABCTL_CONTROLLER"),
		.pki = getenv("FABCTL_PKI"),
		.admin = getenv("FABCTL_ADMIN"),
		.timeout_s = 10,
		.wait_s = 300,
	};
	char *end;
	int c, rc;

	if (!cli.controller)
		cli.controller = "127.0.0.1:" CTL_DEFAULT_PORT;
	if (!cli.pki)
		cli.pki = "/etc/fabric/pki";
	if (!cli.admin)
		cli.admin = "admin";
	fab_log_init("fabctl", FAB_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	/* Global options stop at the first command word. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
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
		case OPT_WAIT: {
			double v = strtod(optarg, &end);

			if (end == optarg || *end || !(v > 0 && v <= 86400))
				return cli_err(CLI_USAGE,
					       "--%s wants seconds in (0, 86400], not '%s'",
					       c == 't' ? "timeout" : "wait-timeout", optarg);
			*(c == 't' ? &cli.timeout_s : &cli.wait_s) = v;
			break;
		}
		case OPT_GJSON:
			cli.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return cli_err(CLI_USAGE, "option '%s' wants a value", argv[optind - 1]);
		default:
			return cli_err(CLI_USAGE, "unknown option '%s' (see fabctl --help)",
				       argv[optind - 1]);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[0], "pki"))
		return cmd_pki(argc, argv);
	if (!strcmp(argv[0], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t g = 0; g < FAB_ARRAY_SIZE(groups); g++) {
		if (strcmp(argv[0], groups[g]->name))
			continue;
		rc = run_group(&cli, groups[g], argc, argv);
		rpc_end();
		if (fflush(stdout) && rc == CLI_OK)
			rc = cli_err(CLI_FAILED, "writing the output: %s", strerror(errno));
		return rc;
	}
	return cli_err(
		CLI_USAGE,
		"unknown command '%s' (one of: node, volume, partition, migration, cluster, pki; "
		"see "
		"fabctl --help)",
		argv[0]);
}
