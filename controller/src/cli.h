/* SPDX-License-Identifier: MIT */
/*
 * fabctl internals shared by its source files (not a public header).
 *
 * fabctl.c       main, global options, the request/reply channel to fabctld
 * cli_node.c     node list/show/drain/undrain
 * cli_volume.c   volume create/list/show/delete
 * cli_partition.c partition create/start/stop/delete/list/show/explain/console
 * cli_cluster.c  cluster graph (Graphviz)
 * cli_migration.c partition migrate, migration show/list/cancel
 * cli_json.c     the JSON writer and the JSON form of every reply
 * cli_table.c    aligned tables and human formatting
 *
 * Everything runs on one thread; the only event loop is the one the
 * request channel runs while it waits for a reply.
 */
#ifndef CLI_H
#define CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/fabric.pb-c.h"

/* Exit codes: the contract with scripts (also in fabctl --help). */
enum {
	CLI_OK = 0,
	CLI_FAILED = 1,	     /* the operation failed (refused, failed, crashed) */
	CLI_USAGE = 2,	     /* bad arguments; also -EINVAL from the controller */
	CLI_NOT_FOUND = 3,   /* -ENOENT */
	CLI_CONFLICT = 4,    /* -EEXIST, -EBUSY */
	CLI_NO_FIT = 5,	     /* -ENOSPC: no node fits */
	CLI_DENIED = 6,	     /* -EACCES, -EPERM */
	CLI_UNREACHABLE = 7, /* cannot reach the controller, or it timed out */
};

struct cli {
	const char *controller; /* "host:port" */
	const char *pki;	/* directory with ca.crt and admin-<name>.crt/key */
	const char *admin;	/* admin certificate name */
	double timeout_s;	/* one request: connect, handshake, reply */
	double wait_s;		/* --wait-timeout: waiting for a state */
	bool json;
};

/* ---- subcommands (fabctl GROUP VERB ...) ---------------------------------- */

struct cli_verb;

/* argv[0] is the verb; returns an exit code. */
typedef int (*cli_verb_cb)(struct cli *cli, const struct cli_verb *v, int argc, char **argv);

struct cli_verb {
	const char *group; /* "volume" */
	const char *name;  /* "create" */
	cli_verb_cb run;
	const char *synopsis; /* what follows "fabctl volume create " */
	const char *summary;  /* one line for --help */
};

struct cli_group {
	const char *name;
	const struct cli_verb *verbs;
	size_t nverbs;
};

extern const struct cli_group cli_node_group;
extern const struct cli_group cli_volume_group;
extern const struct cli_group cli_partition_group;
extern const struct cli_group cli_cluster_group;
extern const struct cli_group cli_migration_group;

/* fabctl partition migrate (cli_migration.c). */
int cli_partition_migrate(struct cli *cli, const struct cli_verb *v, int argc, char **argv);

/*
 * Option parsing for a verb: getopt_long over argv with opts (may be NULL)
 * plus --json and --help, which it handles itself. Returns the next option's
 * val, or -1 when options are done (positional arguments then start at
 * optind, in their order), or -2 with *rc set: --help printed (0) or a bad
 * option reported (CLI_USAGE). Reset with optind = 0 before the first call
 * (cli_opt_begin does).
 */
void cli_opt_begin(void);
int cli_opt_next(struct cli *cli, const struct cli_verb *v, int argc, char **argv,
		 const struct option *opts, int *rc);

/* After the options: exactly one positional argument, a valid name of kind
 * ("partition"). Returns 0 with *name set, or CLI_USAGE after a message. */
int cli_one_name(const struct cli_verb *v, int argc, char **argv, const char *kind,
		 const char **name);
/* After the options: no positional argument. 0 or CLI_USAGE. */
int cli_no_args(const struct cli_verb *v, int argc, char **argv);

/* Checks a name given on the command line (what: "partition name",
 * "--node"). 0 or CLI_USAGE after a message. */
int cli_check_name(const char *what, const char *name);

/* "fabctl: " + the formatted message + "\n" on stderr, control characters
 * made visible. Returns code, so callers can `return cli_err(2, ...)`. */
int cli_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error of verb v: the message, then its synopsis, one line. */
int cli_usage_err(const struct cli_verb *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A progress line on stderr (state changes while waiting). */
void cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the request channel (fabctl.c) --------------------------------------- */

enum {
	CLI_CALL_QUIET = 1, /* do not print the controller's Error: just map it */
};

/*
 * Sends req (its id is set here) and waits for the reply, at most
 * cli->timeout_s, over one TLS connection kept open between calls (a read
 * request is retried once on a fresh connection if the kept one was closed
 * by the controller meanwhile). The reply must have body `want` and pass
 * the checks of the one validating function for replies.
 *
 * Returns 0 with *reply (free with fab__envelope__free_unpacked), or an exit
 * code after one line on stderr: the controller's Error mapped by its code
 * (kind/name say what the request was about, e.g. "partition"/"web1", and
 * complete a terse message; both may be NULL), a malformed or unexpected
 * reply (CLI_FAILED), or no controller (CLI_UNREACHABLE). *errcode gets the
 * Error's code (0 otherwise) if errcode is not NULL.
 */
int cli_call(struct cli *cli, Fab__Envelope *req, Fab__Envelope__BodyCase want, const char *kind,
	     const char *name, unsigned flags, Fab__Envelope **reply, int *errcode);
/* Closes the kept connection (orderly). */
void cli_disconnect(void);
/* Exit code for a controller Error code (negative errno). */
int cli_exit_for_errno(int code);

/* Sleeps ms milliseconds (between polls). */
void cli_sleep_ms(unsigned ms);

/* ---- JSON (cli_json.c) ----------------------------------------------------- */

#define CLI_JSON_DEPTH 16

/*
 * A streaming writer. Objects are written on one line ("{"a": 1, "b": "x"}");
 * the elements of a top-level array get a line each. key is the member name
 * inside an object and NULL inside an array or at the top.
 */
struct cli_json {
	FILE *f;
	int depth;
	unsigned count[CLI_JSON_DEPTH];
};

void cli_json_init(struct cli_json *j, FILE *f);
void cli_json_obj_begin(struct cli_json *j, const char *key);
void cli_json_obj_end(struct cli_json *j);
void cli_json_arr_begin(struct cli_json *j, const char *key);
void cli_json_arr_end(struct cli_json *j);
void cli_json_str(struct cli_json *j, const char *key, const char *s);
/* Bytes as a JSON string: valid UTF-8 is kept, other bytes become U+FFFD. */
void cli_json_bytes(struct cli_json *j, const char *key, const void *p, size_t len);
void cli_json_strv(struct cli_json *j, const char *key, char *const *v, size_t n);
void cli_json_u64(struct cli_json *j, const char *key, uint64_t v);
void cli_json_i64(struct cli_json *j, const char *key, int64_t v);
void cli_json_bool(struct cli_json *j, const char *key, bool v);
/* Non-finite values are written as null (JSON has no NaN). */
void cli_json_double(struct cli_json *j, const char *key, double v);
/* Ends the document (a newline). */
void cli_json_finish(struct cli_json *j);

/* Writes p[0..len) as a quoted JSON string. */
void cli_json_escape(FILE *f, const void *p, size_t len);

/* The JSON form of the replies: snake_case keys as in proto/fabric.proto,
 * enums as lowercase strings. */
void cli_json_node(struct cli_json *j, const char *key, const Fab__NodeInfo *n);
void cli_json_volume(struct cli_json *j, const char *key, const Fab__VolumeInfo *v);
void cli_json_partition(struct cli_json *j, const char *key, const Fab__PartitionInfo *p);
void cli_json_migration(struct cli_json *j, const char *key, const Fab__MigrationInfo *m);
/* verdicts in the order of order[0..n) (indexes into p->verdicts). */
void cli_json_placement(struct cli_json *j, const char *key, const Fab__Placement *p,
			const size_t *order);

/* Stable names: "up"; "pending", "running", ...; "never", "on-failure",
 * "always". Unknown values give "unknown". */
const char *cli_node_state_name(Fab__NodeState s);
const char *cli_part_state_name(Fab__PartitionState s);
const char *cli_restart_name(Fab__RestartPolicy r);
/* "prepare", "copy", "stopped", "committed", "done", "aborted". */
const char *cli_mig_phase_name(Fab__MigrationPhase ph);
/* 0 or -EINVAL. */
int cli_restart_parse(const char *s, Fab__RestartPolicy *out);

/* ---- human output (cli_table.c) -------------------------------------------- */

#define CLI_TABLE_COLS 12

/*
 * Rows of cells, printed with every column as wide as its widest cell and
 * two spaces between columns. Cells are copied; control characters in them
 * are made visible; an empty cell prints as "-".
 */
struct cli_table {
	size_t ncols;
	const char *head[CLI_TABLE_COLS];
	unsigned right; /* bit i: column i is right-aligned */
	char **cells;
	size_t ncells, cap;
};

/* heads: ncols column titles (a title starting with '>' is right-aligned,
 * the '>' is not printed). */
void cli_table_init(struct cli_table *t, size_t ncols, const char *const *heads);
/* Appends one cell to the current row (rows fill left to right). */
void cli_table_cell(struct cli_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cli_table_print(const struct cli_table *t, FILE *f);
void cli_table_fini(struct cli_table *t);

/* "key:" padded to a column, then the value; control characters made
 * visible. */
void cli_kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies s into buf (len) with control characters replaced by '?'. */
char *cli_safe(const char *s, char *buf, size_t len);

/* "512B", "64MiB", "1.5GiB". */
char *cli_fmt_size(uint64_t bytes, char *buf, size_t len);
/* "5m03s ago"; "-" for 0 (never). */
char *cli_fmt_ago(int64_t unix_ms, char *buf, size_t len);
/* Local time "2024-05-01 12:00:03"; "-" for 0. */
char *cli_fmt_time(int64_t unix_ms, char *buf, size_t len);
/* "2024-05-01 12:00:03 (5m03s ago)"; "-" for 0. */
char *cli_fmt_when(int64_t unix_ms, char *buf, size_t len);
/* v joined with sep; "-" when n is 0. Truncated with "..." to fit. */
char *cli_join(char *const *v, size_t n, const char *sep, char *buf, size_t len);

#endif
