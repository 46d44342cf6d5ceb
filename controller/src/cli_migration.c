// SPDX-License-Identifier: MIT
/*
 * fabctl partition migrate, and fabctl migration show/list/cancel.
 *
 * migrate asks the controller to start a live migration, then (unless
 * --no-wait) polls migration show every 200 ms over the kept connection:
 * a progress bar on a terminal (redrawn in place on stderr), plain lines
 * on stderr when stdout is not a terminal (one per phase change and per
 * round), and a final table on stdout. Exit 0 when the migration is done,
 * 1 when it was aborted (its reason on stderr), the usual codes for a
 * refusal (3 not found, 4 not running or already migrating, 5 no node
 * fits).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fab/util.h"
#include "cli.h"

#define POLL_MS 200
#define PH(x)	FAB__MIGRATION_PHASE__MIGRATION_PHASE_##x

static int show_req(struct cli *cli, const char *partition, uint64_t id, unsigned flags,
		    Fab__Envelope **reply)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT;
	Fab__MigrationRequest mr = FAB__MIGRATION_REQUEST__INIT;

	mr.partition = (char *)(partition ? partition : "");
	mr.id = id;
	req.body_case = FAB__ENVELOPE__BODY_MIGRATION_SHOW;
	req.migration_show = &mr;
	return cli_call(cli, &req, FAB__ENVELOPE__BODY_MIGRATION_REPLY, "partition", partition,
			flags, reply, NULL);
}

static bool ended(Fab__MigrationPhase ph)
{
	return ph == PH(DONE) || ph == PH(ABORTED);
}

static char *fmt_rate(uint64_t bps, char *buf, size_t len)
{
	char sz[24];

	if (!bps)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%s/s", cli_fmt_size(bps, sz, sizeof(sz)));
	return buf;
}

static char *fmt_ms(uint64_t us, char *buf, size_t len)
{
	if (us < 10000)
		snprintf(buf, len, "%.2f ms", (double)us / 1000.0);
	else if (us < 100000)
		snprintf(buf, len, "%.1f ms", (double)us / 1000.0);
	else
		snprintf(buf, len, "%.0f ms", (double)us / 1000.0);
	return buf;
}

/* ---- progress ---------------------------------------------------------------- */

struct progress {
	bool tty;   /* a bar redrawn in place */
	bool drawn; /* the bar is on the screen (a newline ends it) */
	Fab__MigrationPhase phase;
	uint32_t round;
};

/* Share of the first pass sent, 0..100 (later rounds: 100). */
static unsigned pct(const Fab__MigrationInfo *m)
{
	if (m->round > 1 || m->phase >= PH(STOPPED))
		return 100;
	if (!m->ram_bytes)
		return 0;
	return m->bytes_sent >= m->ram_bytes ? 100 : (unsigned)(m->bytes_sent * 100 / m->ram_bytes);
}

static void progress_line(char *buf, size_t len, const Fab__MigrationInfo *m)
{
	char sent[24], ram[24], dirty[32], link[32], est[32];

	snprintf(buf, len,
		 "%s: %s, round %u, sent %s of %s RAM, dirty %s, link %s, est. downtime %s",
		 m->partition, cli_mig_phase_name(m->phase), m->round,
		 cli_fmt_size(m->bytes_sent, sent, sizeof(sent)),
		 cli_fmt_size(m->ram_bytes, ram, sizeof(ram)),
		 fmt_rate(m->dirty_bytes_per_s, dirty, sizeof(dirty)),
		 fmt_rate(m->link_bytes_per_s, link, sizeof(link)),
		 m->est_downtime_us ? fmt_ms(m->est_downtime_us, est, sizeof(est)) : "-");
}

static void progress_show(struct progress *pg, const Fab__MigrationInfo *m)
{
	char line[512], safe[512];

	progress_line(line, sizeof(line), m);
	cli_safe(line, safe, sizeof(safe));
	if (pg->tty) {
		char bar[21];
		unsigned p = pct(m), fill = p / 5;

		for (unsigned i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[20] = '\0';
		/* \r and clear to the end of the line: one line, redrawn. */
		fprintf(stderr, "\r\033[K[%s] %3u%% %s", bar, p, safe);
		fflush(stderr);
		pg->drawn = true;
		return;
	}
	if (m->phase != pg->phase || m->round != pg->round)
		fprintf(stderr, "%s\n", safe);
	pg->phase = m->phase;
	pg->round = m->round;
}

static void progress_end(struct progress *pg)
{
	if (pg->tty && pg->drawn)
		fputc('\n', stderr);
	pg->drawn = false;
}

/* ---- output ------------------------------------------------------------------- */

static void print_table(const Fab__MigrationInfo *m)
{
	char a[32], b[32], c[64];
	int64_t total =
		m->ended_unix_ms && m->started_unix_ms ? m->ended_unix_ms - m->started_unix_ms : 0;

	cli_kv("migration", "%llu", (unsigned long long)m->id);
	cli_kv("partition", "%s", m->partition);
	cli_kv("from", "%s (epoch %llu)", m->source, (unsigned long long)m->epoch_from);
	cli_kv("to", "%s (epoch %llu)", m->target, (unsigned long long)m->epoch_to);
	cli_kv("trigger", "%s", m->trigger);
	if (m->phase == PH(ABORTED))
		cli_kv("result", "aborted: %s", m->error[0] ? m->error : "no reason given");
	else if (m->error[0])
		cli_kv("result", "%s (%s)", cli_mig_phase_name(m->phase), m->error);
	else
		cli_kv("result", "%s", cli_mig_phase_name(m->phase));
	if (total > 0)
		cli_kv("total time", "%.2f s", (double)total / 1000.0);
	else
		cli_kv("total time", "-");
	cli_kv("bytes sent", "%s (RAM %s)", cli_fmt_size(m->bytes_sent, a, sizeof(a)),
	       cli_fmt_size(m->ram_bytes, b, sizeof(b)));
	cli_kv("rounds", "%u (at most %u)", m->round, m->max_rounds);
	if (m->downtime_us)
		cli_kv("downtime", "%s (budget %u ms)", fmt_ms(m->downtime_us, c, sizeof(c)),
		       m->downtime_budget_ms);
	else
		cli_kv("downtime", "- (budget %u ms)", m->downtime_budget_ms);
	if (m->throttle_pct)
		cli_kv("throttled", "%u%%", m->throttle_pct);
	cli_kv("started", "%s", cli_fmt_when(m->started_unix_ms, c, sizeof(c)));
}

static void print_json(const Fab__MigrationInfo *m)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_migration(&j, NULL, m);
	cli_json_finish(&j);
}

/* The exit code of an ended migration, its line on stderr if aborted. */
static int outcome(const Fab__MigrationInfo *m)
{
	if (m->phase == PH(DONE))
		return CLI_OK;
	return cli_err(CLI_FAILED, "migration %llu of '%s' to %s aborted: %s",
		       (unsigned long long)m->id, m->partition, m->target,
		       m->error[0] ? m->error : "no reason given");
}

/* ---- partition migrate ---------------------------------------------------------- */

int cli_partition_migrate(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "downtime", required_argument, NULL, 'd' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "throttle", no_argument, NULL, 'T' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__PartitionMigrateRequest mr = FAB__PARTITION_MIGRATE_REQUEST__INIT;
	struct progress pg = { .phase = PH(UNKNOWN) };
	const Fab__MigrationInfo *m;
	int64_t deadline;
	const char *name;
	bool wait = true;
	uint64_t id;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		switch (c) {
		case 't':
			if (cli_check_name("--to node name", optarg))
				return CLI_USAGE;
			mr.to = optarg;
			break;
		case 'd':
			if (fab_parse_u32(optarg, 1, 60000, &mr.downtime_ms))
				return cli_usage_err(
					v, "--downtime wants milliseconds 1..60000, not '%s'",
					optarg);
			break;
		case 'r':
			if (fab_parse_u32(optarg, 1, 1000, &mr.max_rounds))
				return cli_usage_err(v, "--max-rounds wants 1..1000, not '%s'",
						     optarg);
			break;
		case 'T':
			mr.throttle = true;
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
	mr.name = (char *)name;
	req.body_case = FAB__ENVELOPE__BODY_PARTITION_MIGRATE;
	req.partition_migrate = &mr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_MIGRATION_REPLY, "partition", name, 0, &reply,
		      NULL);
	if (rc)
		return rc;
	m = reply->migration_reply->migration;
	id = m->id;
	if (!wait) {
		if (cli->json) {
			print_json(m);
		} else {
			char safe[256];

			snprintf(safe, sizeof(safe), "%s: migrating from %s to %s (migration %llu)",
				 m->partition, m->source, m->target, (unsigned long long)id);
			printf("%s\n", cli_safe(safe, safe, sizeof(safe)));
		}
		fab__envelope__free_unpacked(reply, NULL);
		return CLI_OK;
	}
	cli_progress("%s: migrating from %s to %s (migration %llu)", m->partition, m->source,
		     m->target, (unsigned long long)id);
	/* How the scheduler chose, when it did (see partition explain). */
	if ((!mr.to || !mr.to[0]) && reply->migration_reply->placement) {
		const Fab__Placement *pl = reply->migration_reply->placement;

		for (size_t i = 0; i < pl->n_verdicts; i++)
			if (pl->verdicts[i]->feasible && !strcmp(pl->verdicts[i]->node, pl->node))
				cli_progress("%s: %s chosen by the scheduler (%s)", m->partition,
					     pl->node, pl->verdicts[i]->reason);
	}
	pg.tty = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
	deadline = fab_mono_ms() + (int64_t)(cli->wait_s * 1000);
	for (;;) {
		Fab__Envelope *next = NULL;

		m = reply->migration_reply->migration;
		if (ended(m->phase))
			break;
		progress_show(&pg, m);
		if (fab_mono_ms() >= deadline) {
			progress_end(&pg);
			rc = cli_err(CLI_FAILED,
				     "migration %llu of '%s' still in phase %s after %g s (not "
				     "waiting longer; see fabctl migration show %s)",
				     (unsigned long long)id, name, cli_mig_phase_name(m->phase),
				     cli->wait_s, name);
			fab__envelope__free_unpacked(reply, NULL);
			return rc;
		}
		cli_sleep_ms(POLL_MS);
		rc = show_req(cli, name, id, 0, &next);
		if (rc) {
			progress_end(&pg);
			fab__envelope__free_unpacked(reply, NULL);
			return rc;
		}
		fab__envelope__free_unpacked(reply, NULL);
		reply = next;
	}
	progress_end(&pg);
	if (cli->json)
		print_json(m);
	else
		print_table(m);
	rc = outcome(m);
	fab__envelope__free_unpacked(reply, NULL);
	return rc;
}

/* ---- migration show, list, cancel ------------------------------------------------ */

static int parse_id(const struct cli_verb *v, const char *arg, uint64_t *id)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || !x || arg[0] == '-')
		return cli_usage_err(v, "--id wants a migration id (1, 2, ...), not '%s'", arg);
	*id = x;
	return 0;
}

/* show and cancel: PARTITION [--id N], or --id N alone. */
static int mig_named(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__MigrationRequest mr = FAB__MIGRATION_REQUEST__INIT;
	const Fab__MigrationInfo *m;
	const char *name = NULL;
	bool cancel = !strcmp(v->name, "cancel");
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		if (c != 'i')
			return rc;
		if (parse_id(v, optarg, &mr.id))
			return CLI_USAGE;
	}
	if (optind < argc || !mr.id) {
		rc = cli_one_name(v, argc, argv, "partition", &name);
		if (rc)
			return rc;
	}
	mr.partition = (char *)(name ? name : "");
	req.body_case =
		cancel ? FAB__ENVELOPE__BODY_MIGRATION_CANCEL : FAB__ENVELOPE__BODY_MIGRATION_SHOW;
	if (cancel)
		req.migration_cancel = &mr;
	else
		req.migration_show = &mr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_MIGRATION_REPLY,
		      name ? "partition" : "migration", name, 0, &reply, NULL);
	if (rc)
		return rc;
	m = reply->migration_reply->migration;
	if (cli->json) {
		print_json(m);
	} else if (cancel) {
		char safe[400];

		snprintf(safe, sizeof(safe), "%s: migration %llu to %s %s", m->partition,
			 (unsigned long long)m->id, m->target,
			 m->phase == PH(ABORTED) ? "cancelled; it stays where it was"
						 : cli_mig_phase_name(m->phase));
		printf("%s\n", cli_safe(safe, safe, sizeof(safe)));
	} else {
		print_table(m);
		if (!ended(m->phase)) {
			char line[512];

			progress_line(line, sizeof(line), m);
			cli_kv("progress", "%s", line);
		}
	}
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

static int mig_list(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "active", no_argument, NULL, 'a' },
		{ 0 },
	};
	static const char *const heads[] = { ">ID",	"PARTITION", "FROM",  "TO",
					     "PHASE",	">ROUNDS",   ">SENT", ">DOWNTIME",
					     "STARTED", "TRIGGER",   "ERROR" };
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__MigrationListRequest lr = FAB__MIGRATION_LIST_REQUEST__INIT;
	const Fab__MigrationListReply *r;
	struct cli_table t;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		if (c != 'a')
			return rc;
		lr.active_only = true;
	}
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	req.body_case = FAB__ENVELOPE__BODY_MIGRATION_LIST;
	req.migration_list = &lr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_MIGRATION_LIST_REPLY, "migration list", NULL,
		      0, &reply, NULL);
	if (rc)
		return rc;
	r = reply->migration_list_reply;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_arr_begin(&j, NULL);
		for (size_t i = 0; i < r->n_migrations; i++)
			cli_json_migration(&j, NULL, r->migrations[i]);
		cli_json_arr_end(&j);
		cli_json_finish(&j);
		fab__envelope__free_unpacked(reply, NULL);
		return CLI_OK;
	}
	cli_table_init(&t, FAB_ARRAY_SIZE(heads), heads);
	for (size_t i = 0; i < r->n_migrations; i++) {
		const Fab__MigrationInfo *m = r->migrations[i];
		char sent[24], dt[32], when[40];

		cli_table_cell(&t, "%llu", (unsigned long long)m->id);
		cli_table_cell(&t, "%s", m->partition);
		cli_table_cell(&t, "%s", m->source);
		cli_table_cell(&t, "%s", m->target);
		cli_table_cell(&t, "%s", cli_mig_phase_name(m->phase));
		cli_table_cell(&t, "%u", m->round);
		cli_table_cell(&t, "%s", cli_fmt_size(m->bytes_sent, sent, sizeof(sent)));
		cli_table_cell(&t, "%s",
			       m->downtime_us ? fmt_ms(m->downtime_us, dt, sizeof(dt)) : "");
		cli_table_cell(&t, "%s", cli_fmt_ago(m->started_unix_ms, when, sizeof(when)));
		cli_table_cell(&t, "%s", m->trigger);
		cli_table_cell(&t, "%s", m->error);
	}
	cli_table_print(&t, stdout);
	cli_table_fini(&t);
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

static const struct cli_verb verbs[] = {
	{ "migration", "show", mig_named, "PARTITION [--id N] [--json]",
	  "a partition's latest migration (or the one with --id): phase, progress, result" },
	{ "migration", "list", mig_list, "[--active] [--json]",
	  "migrations, newest last (--active: those in progress)" },
	{ "migration", "cancel", mig_named, "PARTITION [--json]",
	  "abort the partition's migration in progress (it stays on its node); refused once "
	  "committed" },
};

const struct cli_group cli_migration_group = { "migration", verbs, FAB_ARRAY_SIZE(verbs) };
