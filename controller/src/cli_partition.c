// SPDX-License-Identifier: MIT
/*
 * fabctl partition: create, start, stop, delete, list, show, explain,
 * console. create, start and stop wait (unless --no-wait) by polling
 * partition_show every 100 ms over the kept connection, printing a line on
 * stderr whenever the state, node or placement epoch changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/util.h"
#include "cli.h"
#include "store.h" /* CTL_MAX_VOLUMES, CTL_IMAGE_MAX: the controller's limits */

#define POLL_MS 100
/* A partition has at most 64 vCPUs (NHV_MAX_VCPUS in node-hv). */
#define MAX_VCPUS 64

#define ST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x

/* ---- requests --------------------------------------------------------------- */

/* show, start, delete, explain, console: a PartitionNameRequest. */
static int name_req(struct cli *cli, Fab__Envelope__BodyCase body, const char *name,
		    Fab__Envelope__BodyCase want, unsigned flags, Fab__Envelope **reply)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT;
	Fab__PartitionNameRequest nr = FAB__PARTITION_NAME_REQUEST__INIT;

	nr.name = (char *)name;
	req.body_case = body;
	switch (body) {
	case FAB__ENVELOPE__BODY_PARTITION_START:
		req.partition_start = &nr;
		break;
	case FAB__ENVELOPE__BODY_PARTITION_DELETE:
		req.partition_delete = &nr;
		break;
	case FAB__ENVELOPE__BODY_PARTITION_SHOW:
		req.partition_show = &nr;
		break;
	case FAB__ENVELOPE__BODY_PARTITION_EXPLAIN:
		req.partition_explain = &nr;
		break;
	case FAB__ENVELOPE__BODY_PARTITION_CONSOLE:
		req.partition_console = &nr;
		break;
	default:
		return cli_err(CLI_FAILED, "internal error: request %d", (int)body);
	}
	return cli_call(cli, &req, want, "partition", name, flags, reply, NULL);
}

static void print_json(const Fab__PartitionInfo *p)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_partition(&j, NULL, p);
	cli_json_finish(&j);
}

/* ---- waiting ------------------------------------------------------------------ */

enum wait_for { WAIT_RUNNING, WAIT_STOPPED };

struct waiter {
	struct cli *cli;
	const char *name;
	enum wait_for want;
	bool start; /* waiting after partition start */
	/* last shown, to print changes only */
	Fab__PartitionState state;
	uint64_t epoch;
	uint32_t restarts;
	char node[FAB_NAME_MAX];
	char reason[CTL_REASON_MAX]; /* of the last explain asked for */
	/* A start answered with a state of the previous run (EXITED, ...):
	 * not this start's outcome, until the state moves on or, should the
	 * controller leave it as it was, until stale_until. */
	bool stale;
	Fab__PartitionState stale_state;
	uint64_t stale_epoch;
	int64_t stale_ms, stale_until;
};

#define STALE_MS 3000

static bool terminal(Fab__PartitionState s)
{
	return s == ST(STOPPED) || s == ST(EXITED) || s == ST(CRASHED) || s == ST(LOST) ||
	       s == ST(FAILED);
}

static void show_change(struct waiter *w, const Fab__PartitionInfo *p, bool force)
{
	bool changed = p->state != w->state || p->epoch != w->epoch || strcmp(p->node, w->node);

	if (p->restarts > w->restarts && w->state != ST(UNKNOWN))
		cli_progress("%s: restarted (%u restart%s so far)", w->name, p->restarts,
			     p->restarts == 1 ? "" : "s");
	w->restarts = p->restarts;
	if (!changed && !force)
		return;
	w->state = p->state;
	w->epoch = p->epoch;
	snprintf(w->node, sizeof(w->node), "%s", p->node);
	switch (p->state) {
	case ST(PENDING):
		if (p->reason[0])
			cli_progress("%s: pending (%s)", w->name, p->reason);
		else
			cli_progress("%s: pending", w->name);
		break;
	case ST(SCHEDULED):
		cli_progress("%s: scheduled on %s (epoch %llu)", w->name,
			     p->node[0] ? p->node : "?", (unsigned long long)p->epoch);
		break;
	case ST(RUNNING):
	case ST(STOPPING):
		cli_progress("%s: %s on %s", w->name, cli_part_state_name(p->state),
			     p->node[0] ? p->node : "?");
		break;
	default:
		/* outcomes are reported by the caller */
		break;
	}
}

/*
 * Whether a pending partition waits for want of a node. The scheduler's
 * reason says so ("no node can run ..."); failing that, the latest
 * placement decision chose no node.
 */
static bool unplaceable(struct waiter *w, const Fab__PartitionInfo *p)
{
	Fab__Envelope *e = NULL;
	bool none;

	if (p->state != ST(PENDING) || !p->reason[0])
		return false;
	if (strstr(p->reason, "no node"))
		return true;
	if (!strcmp(p->reason, w->reason))
		return false; /* asked already for this reason */
	snprintf(w->reason, sizeof(w->reason), "%s", p->reason);
	if (name_req(w->cli, FAB__ENVELOPE__BODY_PARTITION_EXPLAIN, w->name,
		     FAB__ENVELOPE__BODY_PLACEMENT, CLI_CALL_QUIET, &e))
		return false;
	none = !e->placement->node[0] && e->placement->n_verdicts > 0;
	fab__envelope__free_unpacked(e, NULL);
	return none;
}

enum verdict { GO_ON, DONE, FAILED, NO_FIT };

static enum verdict judge(struct waiter *w, const Fab__PartitionInfo *p)
{
	if (w->stale) {
		if (p->state == w->stale_state && p->epoch == w->stale_epoch &&
		    p->state_unix_ms == w->stale_ms && fab_mono_ms() < w->stale_until)
			return GO_ON;
		w->stale = false;
	}
	if (w->want == WAIT_STOPPED) {
		switch (p->state) {
		case ST(SCHEDULED):
		case ST(RUNNING):
		case ST(STOPPING):
		case ST(UNKNOWN):
			return GO_ON;
		default:
			return DONE;
		}
	}
	switch (p->state) {
	case ST(RUNNING):
		return DONE;
	case ST(EXITED):
		return p->exit_status == 0 ? DONE : FAILED;
	case ST(STOPPED):
	case ST(CRASHED):
	case ST(LOST):
	case ST(FAILED):
		return FAILED;
	case ST(PENDING):
		return unplaceable(w, p) ? NO_FIT : GO_ON;
	default:
		return GO_ON;
	}
}

/* The one line on stdout for a partition that got where it was going. */
static void print_outcome(const struct cli *cli, const Fab__PartitionInfo *p)
{
	char name[80], node[80], reason[300];

	if (cli->json) {
		print_json(p);
		return;
	}
	cli_safe(p->spec->name, name, sizeof(name));
	cli_safe(p->node, node, sizeof(node));
	cli_safe(p->reason, reason, sizeof(reason));
	switch (p->state) {
	case ST(RUNNING):
		printf("%s: running on %s\n", name, node[0] ? node : "?");
		break;
	case ST(EXITED):
		printf("%s: exited with status %d%s%s\n", name, p->exit_status,
		       reason[0] ? ": " : "", reason);
		break;
	default:
		printf("%s: %s%s%s\n", name, cli_part_state_name(p->state), reason[0] ? ": " : "",
		       reason);
		break;
	}
}

/* The one line on stderr for a partition that did not. */
static int report_failure(const struct waiter *w, const Fab__PartitionInfo *p, enum verdict v)
{
	const char *why = p->reason[0] ? p->reason : "no reason given";
	const char *on = p->node[0] ? " on " : "";

	if (v == NO_FIT) {
		if (strstr(p->reason, w->name))
			return cli_err(CLI_NO_FIT, "%s", p->reason);
		return cli_err(CLI_NO_FIT, "partition '%s' cannot be placed: %s", w->name, why);
	}
	switch (p->state) {
	case ST(EXITED):
		return cli_err(CLI_FAILED, "partition '%s' exited with status %d%s%s%s%s", w->name,
			       p->exit_status, on, p->node, p->reason[0] ? ": " : "", p->reason);
	case ST(STOPPED):
		return cli_err(CLI_FAILED, "partition '%s' was stopped before it ran%s%s", w->name,
			       p->reason[0] ? ": " : "", p->reason);
	case ST(LOST):
		return cli_err(CLI_FAILED, "partition '%s' was lost with its node %s: %s", w->name,
			       p->node[0] ? p->node : "?", why);
	default:
		return cli_err(CLI_FAILED, "partition '%s' %s%s%s: %s", w->name,
			       cli_part_state_name(p->state), on, p->node, why);
	}
}

/*
 * Polls from *cur (the reply to the request, replaced by each poll; the
 * caller frees it) until the partition is where w->want says, fails, or
 * limit_s passes. Returns the exit code, its line printed.
 */
static int wait_partition(struct waiter *w, Fab__Envelope **cur, double limit_s)
{
	int64_t deadline = fab_mono_ms() + (int64_t)(limit_s * 1000);
	const Fab__PartitionInfo *p = (*cur)->partition_reply->partition;
	int rc;

	w->state = ST(UNKNOWN);
	w->restarts = p->restarts;
	if (w->start && terminal(p->state)) {
		w->stale = true;
		w->stale_state = p->state;
		w->stale_epoch = p->epoch;
		w->stale_ms = p->state_unix_ms;
		w->stale_until = fab_mono_ms() + STALE_MS;
	}
	for (;;) {
		enum verdict v;
		Fab__Envelope *next = NULL;

		p = (*cur)->partition_reply->partition;
		v = judge(w, p);
		if (v == DONE)
			return CLI_OK;
		if (v != GO_ON)
			return report_failure(w, p, v);
		show_change(w, p, false);
		if (fab_mono_ms() >= deadline)
			return cli_err(
				CLI_FAILED,
				"partition '%s' still %s after %g s (not waiting longer; see "
				"fabctl partition show %s)",
				w->name, cli_part_state_name(p->state), limit_s, w->name);
		cli_sleep_ms(POLL_MS);
		rc = name_req(w->cli, FAB__ENVELOPE__BODY_PARTITION_SHOW, w->name,
			      FAB__ENVELOPE__BODY_PARTITION_REPLY, 0, &next);
		if (rc)
			return rc;
		fab__envelope__free_unpacked(*cur, NULL);
		*cur = next;
	}
}

/* Waits (if asked), then prints the outcome or the reply. */
static int finish(struct cli *cli, const char *name, Fab__Envelope *reply, bool wait,
		  enum wait_for want, bool start, double limit_s)
{
	struct waiter w = { .cli = cli, .name = name, .want = want, .start = start };
	int rc = CLI_OK;

	if (wait)
		rc = wait_partition(&w, &reply, limit_s);
	if (rc == CLI_OK || cli->json) {
		const Fab__PartitionInfo *p = reply->partition_reply->partition;

		if (wait || cli->json) {
			print_outcome(cli, p);
		} else {
			char safe[80];

			printf("%s: %s\n", cli_safe(p->spec->name, safe, sizeof(safe)),
			       cli_part_state_name(p->state));
		}
	}
	fab__envelope__free_unpacked(reply, NULL);
	return rc;
}

/* ---- create, start, stop, delete ------------------------------------------- */

static int check_image(const char *s)
{
	if (!s[0] || strlen(s) >= CTL_IMAGE_MAX || strchr(s, '/') || !strcmp(s, ".") ||
	    !strcmp(s, ".."))
		return cli_err(CLI_USAGE,
			       "--image wants the name of an image in the nodes' image "
			       "directory (no '/', under %d characters), not '%s'",
			       CTL_IMAGE_MAX, s);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return cli_err(CLI_USAGE, "--image '%s' has a blank or control character",
				       s);
	return 0;
}

static int partition_create(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "volume", required_argument, NULL, 'v' },
		{ "group", required_argument, NULL, 'g' },
		{ "restart", required_argument, NULL, 'r' },
		{ "no-start", no_argument, NULL, 'S' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__PartitionCreateRequest cr = FAB__PARTITION_CREATE_REQUEST__INIT;
	Fab__PartitionSpec spec = FAB__PARTITION_SPEC__INIT;
	char *volumes[CTL_MAX_VOLUMES];
	const char *name;
	bool wait = true;
	int c, rc, nopt = argc;

	/* Guest arguments follow "--": options stop there. */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			nopt = i;
			break;
		}
	}
	spec.vcpus = 1;
	spec.memory_bytes = 64ull << 20;
	spec.volumes = volumes;
	while ((c = cli_opt_next(cli, v, nopt, argv, opts, &rc)) != -1) {
		switch (c) {
		case 'i':
			if (check_image(optarg))
				return CLI_USAGE;
			spec.image = optarg;
			break;
		case 'c':
			if (fab_parse_u32(optarg, 1, MAX_VCPUS, &spec.vcpus))
				return cli_err(CLI_USAGE, "--vcpus wants 1..%d, not '%s'",
					       MAX_VCPUS, optarg);
			break;
		case 'm':
			if (fab_parse_size(optarg, &spec.memory_bytes) ||
			    spec.memory_bytes < (1u << 20))
				return cli_err(CLI_USAGE,
					       "--memory wants a size of at least 1M like 256M or "
					       "2G, not '%s'",
					       optarg);
			break;
		case 'v':
			if (cli_check_name("volume name", optarg))
				return CLI_USAGE;
			if (spec.n_volumes == CTL_MAX_VOLUMES)
				return cli_err(CLI_USAGE, "at most %d --volume (disk0..disk%d)",
					       CTL_MAX_VOLUMES, CTL_MAX_VOLUMES - 1);
			for (size_t i = 0; i < spec.n_volumes; i++)
				if (!strcmp(volumes[i], optarg))
					return cli_err(CLI_USAGE, "--volume '%s' given twice",
						       optarg);
			volumes[spec.n_volumes++] = optarg;
			break;
		case 'g':
			if (cli_check_name("--group", optarg))
				return CLI_USAGE;
			spec.group = optarg;
			break;
		case 'r':
			if (cli_restart_parse(optarg, &spec.restart))
				return cli_err(CLI_USAGE,
					       "--restart wants never, on-failure or always, not "
					       "'%s'",
					       optarg);
			break;
		case 'S':
			spec.no_start = true;
			break;
		case 'W':
			wait = false;
			break;
		default:
			return rc;
		}
	}
	rc = cli_one_name(v, nopt, argv, "partition", &name);
	if (rc)
		return rc;
	if (!spec.image[0])
		return cli_usage_err(v, "--image is required");
	spec.name = (char *)name;
	if (nopt < argc) {
		spec.args = argv + nopt + 1;
		spec.n_args = (size_t)(argc - nopt - 1);
	}
	cr.spec = &spec;
	req.body_case = FAB__ENVELOPE__BODY_PARTITION_CREATE;
	req.partition_create = &cr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_PARTITION_REPLY, "partition", name, 0, &reply,
		      NULL);
	if (rc)
		return rc;
	if (spec.no_start && !cli->json) {
		printf("%s: created, not started\n", name);
		fab__envelope__free_unpacked(reply, NULL);
		return CLI_OK;
	}
	return finish(cli, name, reply, wait && !spec.no_start, WAIT_RUNNING, false, cli->wait_s);
}

static int partition_start(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-wait", no_argument, NULL, 'W' },
		{ 0 },
	};
	Fab__Envelope *reply = NULL;
	const char *name;
	bool wait = true;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		if (c != 'W')
			return rc;
		wait = false;
	}
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	rc = name_req(cli, FAB__ENVELOPE__BODY_PARTITION_START, name,
		      FAB__ENVELOPE__BODY_PARTITION_REPLY, 0, &reply);
	if (rc)
		return rc;
	return finish(cli, name, reply, wait, WAIT_RUNNING, true, cli->wait_s);
}

static int partition_stop(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__PartitionStopRequest sr = FAB__PARTITION_STOP_REQUEST__INIT;
	uint32_t grace_s = 0;
	const char *name;
	bool wait = true;
	double limit;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		switch (c) {
		case 't':
			if (fab_parse_u32(optarg, 1, 3600, &grace_s))
				return cli_err(CLI_USAGE,
					       "--timeout wants seconds 1..3600, not '%s'", optarg);
			break;
		case 'f':
			sr.force = true;
			break;
		case 'W':
			wait = false;
			break;
		default:
			return rc;
		}
	}
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	sr.name = (char *)name;
	sr.timeout_ms = grace_s * 1000;
	req.body_case = FAB__ENVELOPE__BODY_PARTITION_STOP;
	req.partition_stop = &sr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_PARTITION_REPLY, "partition", name, 0, &reply,
		      NULL);
	if (rc)
		return rc;
	/* A graceful stop may take its whole grace time, then the forced
	 * stop and the node's report. */
	limit = cli->wait_s;
	if (limit < grace_s + 30.)
		limit = grace_s + 30.;
	return finish(cli, name, reply, wait, WAIT_STOPPED, false, limit);
}

static int partition_delete(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope *reply = NULL;
	const char *name;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	rc = name_req(cli, FAB__ENVELOPE__BODY_PARTITION_DELETE, name,
		      FAB__ENVELOPE__BODY_PARTITION_REPLY, 0, &reply);
	if (rc)
		return rc;
	if (cli->json)
		print_json(reply->partition_reply->partition);
	else
		printf("%s: deleted\n", name);
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

/* ---- list, show ----------------------------------------------------------------- */

static int partition_list(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const char *const heads[] = { "NAME",	"STATE", "NODE",      ">VCPUS", ">MEMORY",
					     "VOLUMES", "IMAGE", ">RESTARTS", "SINCE",	"REASON" };
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__PartitionListRequest lr = FAB__PARTITION_LIST_REQUEST__INIT;
	const Fab__PartitionListReply *r;
	struct cli_table t;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	req.body_case = FAB__ENVELOPE__BODY_PARTITION_LIST;
	req.partition_list = &lr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_PARTITION_LIST_REPLY, "partition list", NULL,
		      0, &reply, NULL);
	if (rc)
		return rc;
	r = reply->partition_list_reply;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_arr_begin(&j, NULL);
		for (size_t i = 0; i < r->n_partitions; i++)
			cli_json_partition(&j, NULL, r->partitions[i]);
		cli_json_arr_end(&j);
		cli_json_finish(&j);
		fab__envelope__free_unpacked(reply, NULL);
		return CLI_OK;
	}
	cli_table_init(&t, FAB_ARRAY_SIZE(heads), heads);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Fab__PartitionInfo *p = r->partitions[i];
		char mem[24], vols[256], ago[40];

		cli_table_cell(&t, "%s", p->spec->name);
		cli_table_cell(&t, "%s", cli_part_state_name(p->state));
		cli_table_cell(&t, "%s", p->node);
		cli_table_cell(&t, "%u", p->spec->vcpus);
		cli_table_cell(&t, "%s", cli_fmt_size(p->spec->memory_bytes, mem, sizeof(mem)));
		cli_table_cell(
			&t, "%s",
			cli_join(p->spec->volumes, p->spec->n_volumes, ",", vols, sizeof(vols)));
		cli_table_cell(&t, "%s", p->spec->image);
		cli_table_cell(&t, "%u", p->restarts);
		cli_table_cell(&t, "%s", cli_fmt_ago(p->state_unix_ms, ago, sizeof(ago)));
		if (p->state == ST(EXITED) && !p->reason[0])
			cli_table_cell(&t, "status %d", p->exit_status);
		else
			cli_table_cell(&t, "%s", p->reason);
	}
	cli_table_print(&t, stdout);
	cli_table_fini(&t);
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

static void print_partition(const Fab__PartitionInfo *p)
{
	static const char *const heads[] = { "DEVICE",	 "VOLUME", "KIND",	"TRANSPORT",
					     "VSP-NODE", "HEALTH", ">IO-ERRORS" };
	const Fab__PartitionSpec *s = p->spec;
	char a[1024], t[80], ago[40];

	cli_kv("name", "%s", s->name);
	cli_kv("image", "%s", s->image);
	cli_kv("vcpus", "%u", s->vcpus);
	cli_kv("memory", "%s", cli_fmt_size(s->memory_bytes, a, sizeof(a)));
	cli_kv("volumes", "%s", cli_join(s->volumes, s->n_volumes, ", ", a, sizeof(a)));
	cli_kv("group", "%s", s->group);
	cli_kv("restart", "%s", cli_restart_name(s->restart));
	cli_kv("args", "%s", cli_join(s->args, s->n_args, " ", a, sizeof(a)));
	cli_kv("state", "%s (since %s)", cli_part_state_name(p->state),
	       cli_fmt_ago(p->state_unix_ms, ago, sizeof(ago)));
	cli_kv("desired", "%s", p->desired_running ? "running" : "stopped");
	cli_kv("node", "%s", p->node);
	cli_kv("epoch", "%llu", (unsigned long long)p->epoch);
	cli_kv("restarts", "%u", p->restarts);
	if (p->state == ST(EXITED))
		cli_kv("exit status", "%d", p->exit_status);
	else
		cli_kv("exit status", "-");
	cli_kv("reason", "%s", p->reason);
	cli_kv("created", "%s", cli_fmt_when(p->created_unix_ms, t, sizeof(t)));
	if (p->migration)
		cli_kv("migration", "%llu: %s -> %s, %s, round %u",
		       (unsigned long long)p->migration->id, p->migration->source,
		       p->migration->target, cli_mig_phase_name(p->migration->phase),
		       p->migration->round);
	if (!p->n_channels) {
		cli_kv("channels", "none");
		return;
	}
	printf("\n");
	{
		struct cli_table tb;

		cli_table_init(&tb, FAB_ARRAY_SIZE(heads), heads);
		for (size_t i = 0; i < p->n_channels; i++) {
			const Fab__ChannelInfo *c = p->channels[i];

			cli_table_cell(&tb, "%s", c->device);
			cli_table_cell(&tb, "%s", c->volume);
			cli_table_cell(&tb, "%s", c->remote ? "remote" : "local");
			cli_table_cell(&tb, "%s", c->transport);
			cli_table_cell(&tb, "%s", c->vsp_node);
			cli_table_cell(&tb, "%s", c->health[0] ? c->health : "unknown");
			cli_table_cell(&tb, "%llu", (unsigned long long)c->io_errors);
		}
		cli_table_print(&tb, stdout);
		cli_table_fini(&tb);
	}
}

static int partition_show(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope *reply = NULL;
	const char *name;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	rc = name_req(cli, FAB__ENVELOPE__BODY_PARTITION_SHOW, name,
		      FAB__ENVELOPE__BODY_PARTITION_REPLY, 0, &reply);
	if (rc)
		return rc;
	if (cli->json)
		print_json(reply->partition_reply->partition);
	else
		print_partition(reply->partition_reply->partition);
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

/* ---- explain, console ------------------------------------------------------ */

static const Fab__Placement *sort_placement;

/* Feasible first, higher score first, then by name. */
static int verdict_cmp(const void *a, const void *b)
{
	const Fab__NodeVerdict *x = sort_placement->verdicts[*(const size_t *)a];
	const Fab__NodeVerdict *y = sort_placement->verdicts[*(const size_t *)b];

	if (x->feasible != y->feasible)
		return x->feasible ? -1 : 1;
	if (x->feasible && x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return strcmp(x->node, y->node);
}

static int partition_explain(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const char *const heads[] = { "NODE", "FEASIBLE", ">SCORE", "REASON" };
	Fab__Envelope *reply = NULL;
	const Fab__Placement *pl;
	const char *name;
	size_t *order;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	rc = name_req(cli, FAB__ENVELOPE__BODY_PARTITION_EXPLAIN, name,
		      FAB__ENVELOPE__BODY_PLACEMENT, 0, &reply);
	if (rc)
		return rc;
	pl = reply->placement;
	order = calloc(pl->n_verdicts + 1, sizeof(*order));
	if (!order) {
		fab__envelope__free_unpacked(reply, NULL);
		return cli_err(CLI_FAILED, "out of memory");
	}
	for (size_t i = 0; i < pl->n_verdicts; i++)
		order[i] = i;
	sort_placement = pl;
	qsort(order, pl->n_verdicts, sizeof(*order), verdict_cmp);
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_placement(&j, NULL, pl, order);
		cli_json_finish(&j);
	} else {
		const char *who = pl->partition[0] ? pl->partition : name;
		char when[40], who_s[80], node[80], policy[40], trigger[200];
		struct cli_table t;

		cli_fmt_time(pl->decided_unix_ms, when, sizeof(when));
		cli_safe(who, who_s, sizeof(who_s));
		cli_safe(pl->node, node, sizeof(node));
		cli_safe(pl->policy[0] ? pl->policy : "-", policy, sizeof(policy));
		cli_safe(pl->trigger[0] ? pl->trigger : "-", trigger, sizeof(trigger));
		if (pl->node[0])
			printf("%s placed on %s (epoch %llu, policy %s, trigger %s, at %s)\n",
			       who_s, node, (unsigned long long)pl->epoch, policy, trigger, when);
		else
			printf("%s: no node fits (epoch %llu, policy %s, trigger %s, at %s)\n",
			       who_s, (unsigned long long)pl->epoch, policy, trigger, when);
		cli_table_init(&t, FAB_ARRAY_SIZE(heads), heads);
		for (size_t i = 0; i < pl->n_verdicts; i++) {
			const Fab__NodeVerdict *nv = pl->verdicts[order[i]];

			cli_table_cell(&t, "%s", nv->node);
			cli_table_cell(&t, "%s", nv->feasible ? "yes" : "no");
			if (nv->feasible)
				cli_table_cell(&t, "%.3f", nv->score);
			else
				cli_table_cell(&t, "-");
			cli_table_cell(&t, "%s", nv->reason);
		}
		cli_table_print(&t, stdout);
		cli_table_fini(&t);
	}
	free(order);
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

static int partition_console(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope *reply = NULL;
	const Fab__ConsoleReply *c;
	const char *name;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "partition", &name);
	if (rc)
		return rc;
	rc = name_req(cli, FAB__ENVELOPE__BODY_PARTITION_CONSOLE, name,
		      FAB__ENVELOPE__BODY_CONSOLE_REPLY, 0, &reply);
	if (rc)
		return rc;
	c = reply->console_reply;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_obj_begin(&j, NULL);
		cli_json_bytes(&j, "data", c->data.data, c->data.len);
		cli_json_bool(&j, "truncated", c->truncated);
		cli_json_obj_end(&j);
		cli_json_finish(&j);
	} else {
		/* The guest's bytes as they are: this is what `console` is for. */
		if (c->truncated)
			fputs("[earlier output dropped]\n", stderr);
		if (c->data.len && fwrite(c->data.data, 1, c->data.len, stdout) != c->data.len)
			rc = cli_err(CLI_FAILED, "writing the console output failed");
	}
	fab__envelope__free_unpacked(reply, NULL);
	return rc;
}

static const struct cli_verb verbs[] = {
	{ "partition", "create", partition_create,
	  "NAME --image IMAGE [--vcpus N] [--memory SIZE] [--volume VOL]... [--group G] "
	  "[--restart never|on-failure|always] [--no-start] [--no-wait] [--json] [-- GUEST "
	  "ARGS...]",
	  "create a partition and wait until it runs (exit 5 when no node fits)" },
	{ "partition", "start", partition_start, "NAME [--no-wait] [--json]",
	  "start a stopped partition and wait until it runs" },
	{ "partition", "stop", partition_stop,
	  "NAME [--timeout SECONDS] [--force] [--no-wait] [--json]",
	  "stop a partition (graceful for --timeout, then forced) and wait until it has stopped" },
	{ "partition", "delete", partition_delete, "NAME [--json]",
	  "stop if needed and delete a partition (its volumes stay)" },
	{ "partition", "migrate", cli_partition_migrate,
	  "NAME [--to NODE] [--downtime MS] [--max-rounds N] [--throttle] [--no-wait] [--json]",
	  "live-migrate a running partition (the scheduler picks the node unless --to) and "
	  "show its progress; exit 0 when done, 1 when aborted" },
	{ "partition", "list", partition_list, "[--json]", "partitions: state, node, resources" },
	{ "partition", "show", partition_show, "NAME [--json]",
	  "one partition in full, with its device channels" },
	{ "partition", "explain", partition_explain, "NAME [--json]",
	  "the latest placement decision: every node, feasible or why not, and its score" },
	{ "partition", "console", partition_console, "NAME [--json]",
	  "the latest console output the controller holds" },
};

const struct cli_group cli_partition_group = { "partition", verbs, FAB_ARRAY_SIZE(verbs) };
