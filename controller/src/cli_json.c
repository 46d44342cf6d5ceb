// SPDX-License-Identifier: MIT
/*
 * fabctl's JSON: a small streaming writer and the JSON form of every reply.
 * Keys are the proto field names (snake_case) so that a script reading
 * --json output and one reading the proto see the same names; enums are
 * lowercase strings, which stay stable if the enums are renumbered.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "fab/util.h"
#include "cli.h"

/* ---- the writer ------------------------------------------------------------- */

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

/* Before a value: the separator from the previous one, then the key. */
static void value_begin(struct cli_json *j, const char *key)
{
	unsigned n = j->count[j->depth]++;

	if (j->depth == 1 && !key) /* an element of a top-level array */
		fputs(n ? ",\n  " : "\n  ", j->f);
	else if (n)
		fputs(", ", j->f);
	if (key) {
		cli_json_escape(j->f, key, strlen(key));
		fputs(": ", j->f);
	}
}

static void open_(struct cli_json *j, const char *key, char ch)
{
	value_begin(j, key);
	fputc(ch, j->f);
	assert(j->depth + 1 < CLI_JSON_DEPTH);
	j->count[++j->depth] = 0;
}

static void close_(struct cli_json *j, char ch)
{
	assert(j->depth > 0);
	if (j->depth == 1 && ch == ']' && j->count[1])
		fputc('\n', j->f);
	j->depth--;
	fputc(ch, j->f);
}

void cli_json_obj_begin(struct cli_json *j, const char *key)
{
	open_(j, key, '{');
}

void cli_json_obj_end(struct cli_json *j)
{
	close_(j, '}');
}

void cli_json_arr_begin(struct cli_json *j, const char *key)
{
	open_(j, key, '[');
}

void cli_json_arr_end(struct cli_json *j)
{
	close_(j, ']');
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	uint32_t cp;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates, past U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

void cli_json_escape(FILE *f, const void *data, size_t len)
{
	const unsigned char *p = data;

	fputc('"', f);
	for (size_t i = 0; i < len;) {
		unsigned char ch = p[i];
		size_t n;

		switch (ch) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\b':
			fputs("\\b", f);
			break;
		case '\f':
			fputs("\\f", f);
			break;
		default:
			if (ch < 0x20 || ch == 0x7f) {
				fprintf(f, "\\u%04x", ch);
				break;
			}
			n = utf8_len(p + i, len - i);
			if (!n) {
				fputs("\\ufffd", f);
				break;
			}
			fwrite(p + i, 1, n, f);
			i += n;
			continue;
		}
		i++;
	}
	fputc('"', f);
}

void cli_json_str(struct cli_json *j, const char *key, const char *s)
{
	value_begin(j, key);
	cli_json_escape(j->f, s ? s : "", s ? strlen(s) : 0);
}

void cli_json_bytes(struct cli_json *j, const char *key, const void *p, size_t len)
{
	value_begin(j, key);
	cli_json_escape(j->f, p ? p : "", p ? len : 0);
}

void cli_json_strv(struct cli_json *j, const char *key, char *const *v, size_t n)
{
	cli_json_arr_begin(j, key);
	for (size_t i = 0; i < n; i++)
		cli_json_str(j, NULL, v[i]);
	cli_json_arr_end(j);
}

void cli_json_u64(struct cli_json *j, const char *key, uint64_t v)
{
	value_begin(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void cli_json_i64(struct cli_json *j, const char *key, int64_t v)
{
	value_begin(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void cli_json_bool(struct cli_json *j, const char *key, bool v)
{
	value_begin(j, key);
	fputs(v ? "true" : "false", j->f);
}

void cli_json_double(struct cli_json *j, const char *key, double v)
{
	value_begin(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.17g", v);
	else
		fputs("null", j->f);
}

void cli_json_finish(struct cli_json *j)
{
	assert(j->depth == 0);
	fputc('\n', j->f);
}

/* ---- names -------------------------------------------------------------------- */

const char *cli_node_state_name(Fab__NodeState s)
{
	switch (s) {
	case FAB__NODE_STATE__NODE_STATE_UP:
		return "up";
	case FAB__NODE_STATE__NODE_STATE_DOWN:
		return "down";
	default:
		return "unknown";
	}
}

static const char *const part_states[] = {
	[FAB__PARTITION_STATE__PARTITION_STATE_UNKNOWN] = "unknown",
	[FAB__PARTITION_STATE__PARTITION_STATE_PENDING] = "pending",
	[FAB__PARTITION_STATE__PARTITION_STATE_SCHEDULED] = "scheduled",
	[FAB__PARTITION_STATE__PARTITION_STATE_RUNNING] = "running",
	[FAB__PARTITION_STATE__PARTITION_STATE_STOPPING] = "stopping",
	[FAB__PARTITION_STATE__PARTITION_STATE_STOPPED] = "stopped",
	[FAB__PARTITION_STATE__PARTITION_STATE_EXITED] = "exited",
	[FAB__PARTITION_STATE__PARTITION_STATE_CRASHED] = "crashed",
	[FAB__PARTITION_STATE__PARTITION_STATE_LOST] = "lost",
	[FAB__PARTITION_STATE__PARTITION_STATE_FAILED] = "failed",
};

const char *cli_part_state_name(Fab__PartitionState s)
{
	if ((unsigned)s < FAB_ARRAY_SIZE(part_states) && part_states[s])
		return part_states[s];
	return "unknown";
}

static const char *const restart_names[] = {
	[FAB__RESTART_POLICY__RESTART_POLICY_NEVER] = "never",
	[FAB__RESTART_POLICY__RESTART_POLICY_ON_FAILURE] = "on-failure",
	[FAB__RESTART_POLICY__RESTART_POLICY_ALWAYS] = "always",
};

const char *cli_restart_name(Fab__RestartPolicy r)
{
	if ((unsigned)r < FAB_ARRAY_SIZE(restart_names))
		return restart_names[r];
	return "unknown";
}

int cli_restart_parse(const char *s, Fab__RestartPolicy *out)
{
	for (size_t i = 0; i < FAB_ARRAY_SIZE(restart_names); i++) {
		if (!strcmp(s, restart_names[i])) {
			*out = (Fab__RestartPolicy)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- replies ---------------------------------------------------------------- */

void cli_json_node(struct cli_json *j, const char *key, const Fab__NodeInfo *n)
{
	cli_json_obj_begin(j, key);
	/* The first keys keep the order fabctl always printed them in. */
	cli_json_str(j, "name", n->name);
	cli_json_str(j, "state", cli_node_state_name(n->state));
	cli_json_u64(j, "vcpus", n->vcpus);
	cli_json_u64(j, "memory_bytes", n->memory_bytes);
	cli_json_strv(j, "transports", n->transports, n->n_transports);
	cli_json_strv(j, "vsps", n->vsps, n->n_vsps);
	cli_json_str(j, "data_addr", n->data_addr);
	cli_json_str(j, "peer_addr", n->peer_addr);
	cli_json_str(j, "version", n->version);
	cli_json_u64(j, "generation", n->generation);
	cli_json_i64(j, "registered_unix_ms", n->registered_unix_ms);
	cli_json_i64(j, "last_seen_unix_ms", n->last_seen_unix_ms);
	cli_json_bool(j, "drained", n->drained);
	cli_json_u64(j, "vcpus_used", n->vcpus_used);
	cli_json_u64(j, "memory_used", n->memory_used);
	cli_json_strv(j, "partitions", n->partitions, n->n_partitions);
	cli_json_strv(j, "volumes", n->volumes, n->n_volumes);
	cli_json_bool(j, "draining", n->draining);
	cli_json_str(j, "drain_status", n->drain_status);
	cli_json_strv(j, "unmovable", n->unmovable, n->n_unmovable);
	cli_json_obj_end(j);
}

void cli_json_volume(struct cli_json *j, const char *key, const Fab__VolumeInfo *v)
{
	cli_json_obj_begin(j, key);
	cli_json_str(j, "name", v->name);
	cli_json_str(j, "node", v->node);
	cli_json_u64(j, "size_bytes", v->size_bytes);
	cli_json_str(j, "state", v->state);
	cli_json_str(j, "attached_to", v->attached_to);
	cli_json_str(j, "path", v->path);
	cli_json_str(j, "error", v->error);
	cli_json_i64(j, "created_unix_ms", v->created_unix_ms);
	cli_json_obj_end(j);
}

static void json_spec(struct cli_json *j, const char *key, const Fab__PartitionSpec *s)
{
	cli_json_obj_begin(j, key);
	cli_json_str(j, "name", s->name);
	cli_json_str(j, "image", s->image);
	cli_json_u64(j, "vcpus", s->vcpus);
	cli_json_u64(j, "memory_bytes", s->memory_bytes);
	cli_json_strv(j, "volumes", s->volumes, s->n_volumes);
	cli_json_str(j, "group", s->group);
	cli_json_str(j, "restart", cli_restart_name(s->restart));
	cli_json_strv(j, "args", s->args, s->n_args);
	cli_json_bool(j, "no_start", s->no_start);
	cli_json_obj_end(j);
}

static void json_channel(struct cli_json *j, const Fab__ChannelInfo *c)
{
	cli_json_obj_begin(j, NULL);
	cli_json_str(j, "device", c->device);
	cli_json_str(j, "volume", c->volume);
	cli_json_bool(j, "remote", c->remote);
	cli_json_str(j, "transport", c->transport);
	cli_json_str(j, "vsp_node", c->vsp_node);
	cli_json_str(j, "health", c->health);
	cli_json_u64(j, "io_errors", c->io_errors);
	cli_json_obj_end(j);
}

void cli_json_partition(struct cli_json *j, const char *key, const Fab__PartitionInfo *p)
{
	cli_json_obj_begin(j, key);
	json_spec(j, "spec", p->spec);
	cli_json_str(j, "state", cli_part_state_name(p->state));
	cli_json_bool(j, "desired_running", p->desired_running);
	cli_json_str(j, "node", p->node);
	cli_json_u64(j, "epoch", p->epoch);
	cli_json_i64(j, "exit_status", p->exit_status);
	cli_json_str(j, "reason", p->reason);
	cli_json_arr_begin(j, "channels");
	for (size_t i = 0; i < p->n_channels; i++)
		json_channel(j, p->channels[i]);
	cli_json_arr_end(j);
	cli_json_u64(j, "restarts", p->restarts);
	cli_json_i64(j, "created_unix_ms", p->created_unix_ms);
	cli_json_i64(j, "state_unix_ms", p->state_unix_ms);
	if (p->migration)
		cli_json_migration(j, "migration", p->migration);
	cli_json_obj_end(j);
}

static const char *const mig_phases[] = {
	"unknown", "prepare", "copy", "stopped", "committed", "done", "aborted",
};

const char *cli_mig_phase_name(Fab__MigrationPhase ph)
{
	return (unsigned)ph < FAB_ARRAY_SIZE(mig_phases) ? mig_phases[ph] : "unknown";
}

void cli_json_migration(struct cli_json *j, const char *key, const Fab__MigrationInfo *m)
{
	cli_json_obj_begin(j, key);
	cli_json_u64(j, "id", m->id);
	cli_json_str(j, "partition", m->partition);
	cli_json_str(j, "source", m->source);
	cli_json_str(j, "target", m->target);
	cli_json_str(j, "phase", cli_mig_phase_name(m->phase));
	cli_json_u64(j, "epoch_from", m->epoch_from);
	cli_json_u64(j, "epoch_to", m->epoch_to);
	cli_json_str(j, "trigger", m->trigger);
	cli_json_u64(j, "downtime_budget_ms", m->downtime_budget_ms);
	cli_json_u64(j, "max_rounds", m->max_rounds);
	cli_json_bool(j, "throttle", m->throttle);
	cli_json_u64(j, "round", m->round);
	cli_json_u64(j, "ram_bytes", m->ram_bytes);
	cli_json_u64(j, "bytes_sent", m->bytes_sent);
	cli_json_u64(j, "dirty_bytes", m->dirty_bytes);
	cli_json_u64(j, "dirty_bytes_per_s", m->dirty_bytes_per_s);
	cli_json_u64(j, "link_bytes_per_s", m->link_bytes_per_s);
	cli_json_u64(j, "est_downtime_us", m->est_downtime_us);
	cli_json_u64(j, "downtime_us", m->downtime_us);
	cli_json_u64(j, "throttle_pct", m->throttle_pct);
	cli_json_str(j, "error", m->error);
	cli_json_i64(j, "started_unix_ms", m->started_unix_ms);
	cli_json_i64(j, "ended_unix_ms", m->ended_unix_ms);
	cli_json_obj_end(j);
}

void cli_json_placement(struct cli_json *j, const char *key, const Fab__Placement *p,
			const size_t *order)
{
	cli_json_obj_begin(j, key);
	cli_json_str(j, "partition", p->partition);
	cli_json_str(j, "node", p->node);
	cli_json_str(j, "policy", p->policy);
	cli_json_u64(j, "epoch", p->epoch);
	cli_json_str(j, "trigger", p->trigger);
	cli_json_i64(j, "decided_unix_ms", p->decided_unix_ms);
	cli_json_arr_begin(j, "verdicts");
	for (size_t i = 0; i < p->n_verdicts; i++) {
		const Fab__NodeVerdict *v = p->verdicts[order ? order[i] : i];

		cli_json_obj_begin(j, NULL);
		cli_json_str(j, "node", v->node);
		cli_json_bool(j, "feasible", v->feasible);
		cli_json_str(j, "reason", v->reason);
		cli_json_double(j, "score", v->score);
		cli_json_obj_end(j);
	}
	cli_json_arr_end(j);
	cli_json_obj_end(j);
}
