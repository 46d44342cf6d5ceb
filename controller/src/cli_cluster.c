// SPDX-License-Identifier: MIT
/*
 * fabctl cluster graph: the cluster as Graphviz DOT. One cluster box per
 * node, partitions (boxes coloured by state) and volumes (cylinders) inside
 * the node that runs or serves them, an edge from each partition to each
 * of its volumes saying whether the channel is local or remote and over
 * which transport. Everything the controller names is quoted and escaped:
 * a name is data, never DOT.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fab/util.h"
#include "cli.h"

#define ST(x) FAB__PARTITION_STATE__PARTITION_STATE_##x

struct graph {
	const Fab__NodeListReply *nodes;
	const Fab__VolumeListReply *volumes;
	const Fab__PartitionListReply *partitions;
};

/* ---- DOT ---------------------------------------------------------------------- */

/*
 * A DOT quoted string: quote and backslash escaped (a backslash would start
 * an escString such as \N), a newline as DOT's line break, other control
 * characters made visible.
 */
static void dot_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20 || ch == 0x7f)
			fputc('?', f);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* An id: a prefix ("p:" partition, "v:" volume, "h:" host) and a name. */
static void dot_id(FILE *f, const char *prefix, const char *name)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s%s", prefix, name);
	dot_str(f, buf);
}

static const Fab__NodeInfo *find_node(const struct graph *g, const char *name)
{
	for (size_t i = 0; name[0] && i < g->nodes->n_nodes; i++)
		if (!strcmp(g->nodes->nodes[i]->name, name))
			return g->nodes->nodes[i];
	return NULL;
}

static const Fab__VolumeInfo *find_volume(const struct graph *g, const char *name)
{
	for (size_t i = 0; i < g->volumes->n_volumes; i++)
		if (!strcmp(g->volumes->volumes[i]->name, name))
			return g->volumes->volumes[i];
	return NULL;
}

static const char *state_colour(Fab__PartitionState s)
{
	switch (s) {
	case ST(PENDING):
		return "lightgrey";
	case ST(SCHEDULED):
		return "lightyellow";
	case ST(RUNNING):
		return "palegreen";
	case ST(STOPPING):
		return "khaki";
	case ST(STOPPED):
		return "gray85";
	case ST(EXITED):
		return "lightblue";
	case ST(CRASHED):
		return "salmon";
	case ST(LOST):
		return "orange";
	case ST(FAILED):
		return "tomato";
	default:
		return "white";
	}
}

static void dot_partition(FILE *f, const char *indent, const Fab__PartitionInfo *p)
{
	char label[256];

	if (p->state == ST(EXITED))
		snprintf(label, sizeof(label), "%s\nexited (%d)", p->spec->name, p->exit_status);
	else
		snprintf(label, sizeof(label), "%s\n%s", p->spec->name,
			 cli_part_state_name(p->state));
	fputs(indent, f);
	dot_id(f, "p:", p->spec->name);
	fputs(" [shape=box, style=\"rounded,filled\", fillcolor=", f);
	dot_str(f, state_colour(p->state));
	fputs(", label=", f);
	dot_str(f, label);
	fputs("];\n", f);
}

static void dot_volume(FILE *f, const char *indent, const char *name, const Fab__VolumeInfo *v)
{
	char label[256], size[24];

	if (v)
		snprintf(label, sizeof(label), "%s\n%s %s", name,
			 cli_fmt_size(v->size_bytes, size, sizeof(size)), v->state);
	else
		snprintf(label, sizeof(label), "%s\n(not listed)", name);
	fputs(indent, f);
	dot_id(f, "v:", name);
	fprintf(f, " [shape=cylinder, style=%s, label=",
		v ? "filled, fillcolor=\"lightcyan\"" : "dashed");
	dot_str(f, label);
	fputs("];\n", f);
}

static void dot_node_cluster(FILE *f, const struct graph *g, const Fab__NodeInfo *n)
{
	char label[512], tr[128], used[24], total[24];

	cli_join(n->transports, n->n_transports, ", ", tr, sizeof(tr));
	snprintf(label, sizeof(label), "%s\n%s, %s%s", n->name, cli_node_state_name(n->state), tr,
		 n->drained ? ", drained" : "");
	fputs("\tsubgraph ", f);
	dot_id(f, "cluster_", n->name);
	fputs(" {\n\t\tlabel=", f);
	dot_str(f, label);
	fprintf(f, ";\n\t\tstyle=%s;\n\t\tcolor=%s;\n",
		n->state == FAB__NODE_STATE__NODE_STATE_UP ? "solid" : "dashed",
		n->state != FAB__NODE_STATE__NODE_STATE_UP ? "gray50"
		: n->drained				   ? "orange"
							   : "black");
	/* The node's capacity: also keeps a node without guests visible
	 * (Graphviz draws no empty cluster). */
	snprintf(label, sizeof(label), "%u/%u vCPUs\n%s/%s", n->vcpus_used, n->vcpus,
		 cli_fmt_size(n->memory_used, used, sizeof(used)),
		 cli_fmt_size(n->memory_bytes, total, sizeof(total)));
	fputs("\t\t", f);
	dot_id(f, "h:", n->name);
	fputs(" [shape=plaintext, fontsize=9, label=", f);
	dot_str(f, label);
	fputs("];\n", f);
	for (size_t i = 0; i < g->partitions->n_partitions; i++) {
		const Fab__PartitionInfo *p = g->partitions->partitions[i];

		if (p->node[0] && !strcmp(p->node, n->name))
			dot_partition(f, "\t\t", p);
	}
	for (size_t i = 0; i < g->volumes->n_volumes; i++) {
		const Fab__VolumeInfo *v = g->volumes->volumes[i];

		if (v->node[0] && !strcmp(v->node, n->name))
			dot_volume(f, "\t\t", v->name, v);
	}
	fputs("\t}\n", f);
}

/* The transport two nodes would use: rdma if both have it, else one both
 * have, else "". */
static const char *common_transport(const Fab__NodeInfo *a, const Fab__NodeInfo *b)
{
	const char *found = "";

	if (!a || !b)
		return "";
	for (size_t i = 0; i < a->n_transports; i++) {
		for (size_t k = 0; k < b->n_transports; k++) {
			if (strcmp(a->transports[i], b->transports[k]))
				continue;
			if (!strcmp(a->transports[i], "rdma"))
				return "rdma";
			if (!found[0])
				found = a->transports[i];
		}
	}
	return found;
}

static void dot_edge(FILE *f, const struct graph *g, const Fab__PartitionInfo *p, const char *vol)
{
	const Fab__VolumeInfo *v = find_volume(g, vol);
	const char *style = "dotted";
	char label[128] = "";

	/* What the node reported about the channel, if it did. */
	for (size_t i = 0; i < p->n_channels; i++) {
		const Fab__ChannelInfo *c = p->channels[i];

		if (strcmp(c->volume, vol))
			continue;
		if (c->remote)
			snprintf(label, sizeof(label), "remote%s%s", c->transport[0] ? " " : "",
				 c->transport);
		else
			snprintf(label, sizeof(label), "local");
		break;
	}
	/* Otherwise where the partition and the volume are. */
	if (!label[0] && p->node[0] && v && v->node[0]) {
		if (!strcmp(p->node, v->node)) {
			snprintf(label, sizeof(label), "local");
		} else {
			const char *t =
				common_transport(find_node(g, p->node), find_node(g, v->node));

			snprintf(label, sizeof(label), "remote%s%s", t[0] ? " " : "", t);
		}
	}
	if (!strcmp(label, "local"))
		style = "solid";
	else if (label[0])
		style = "bold";
	fputs("\t", f);
	dot_id(f, "p:", p->spec->name);
	fputs(" -> ", f);
	dot_id(f, "v:", vol);
	fprintf(f, " [style=%s", style);
	if (label[0]) {
		fputs(", label=", f);
		dot_str(f, label);
	}
	fputs("];\n", f);
}

/* Volumes a partition names: its spec's, then any channel's not in it. */
static bool names_volume(const Fab__PartitionInfo *p, size_t upto_channel, const char *vol)
{
	for (size_t i = 0; i < p->spec->n_volumes; i++)
		if (!strcmp(p->spec->volumes[i], vol))
			return true;
	for (size_t i = 0; i < upto_channel; i++)
		if (!strcmp(p->channels[i]->volume, vol))
			return true;
	return false;
}

static void dot_write(FILE *f, const struct graph *g)
{
	fputs("digraph fabric {\n"
	      "\tgraph [rankdir=LR, fontname=\"Helvetica\", fontsize=11];\n"
	      "\tnode [fontname=\"Helvetica\", fontsize=10];\n"
	      "\tedge [fontname=\"Helvetica\", fontsize=9];\n",
	      f);
	for (size_t i = 0; i < g->nodes->n_nodes; i++)
		dot_node_cluster(f, g, g->nodes->nodes[i]);
	/* Partitions on no (known) node, volumes on no (known) node. */
	for (size_t i = 0; i < g->partitions->n_partitions; i++) {
		const Fab__PartitionInfo *p = g->partitions->partitions[i];

		if (!find_node(g, p->node))
			dot_partition(f, "\t", p);
	}
	for (size_t i = 0; i < g->volumes->n_volumes; i++) {
		const Fab__VolumeInfo *v = g->volumes->volumes[i];

		if (!find_node(g, v->node))
			dot_volume(f, "\t", v->name, v);
	}
	/* Volumes partitions name that the volume list does not have. */
	for (size_t i = 0; i < g->partitions->n_partitions; i++) {
		const Fab__PartitionInfo *p = g->partitions->partitions[i];

		for (size_t k = 0; k < p->spec->n_volumes; k++)
			if (!find_volume(g, p->spec->volumes[k]))
				dot_volume(f, "\t", p->spec->volumes[k], NULL);
		for (size_t k = 0; k < p->n_channels; k++)
			if (!names_volume(p, k, p->channels[k]->volume) &&
			    !find_volume(g, p->channels[k]->volume))
				dot_volume(f, "\t", p->channels[k]->volume, NULL);
	}
	for (size_t i = 0; i < g->partitions->n_partitions; i++) {
		const Fab__PartitionInfo *p = g->partitions->partitions[i];

		for (size_t k = 0; k < p->spec->n_volumes; k++)
			dot_edge(f, g, p, p->spec->volumes[k]);
		for (size_t k = 0; k < p->n_channels; k++)
			if (!names_volume(p, k, p->channels[k]->volume))
				dot_edge(f, g, p, p->channels[k]->volume);
	}
	fputs("}\n", f);
}

/* ---- output ------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* dot's path in $PATH, or -ENOENT. */
static int find_dot(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;
	int rc = -ENOENT;

	if (!path || !path[0])
		return -ENOENT;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/dot", dir[0] ? dir : ".");
		if (access(out, X_OK) == 0) {
			rc = 0;
			break;
		}
	}
	free(copy);
	return rc;
}

/* Runs dot -Tsvg -o svg with the DOT text on its stdin; no shell. */
static int run_dot(const char *dot, const char *svg, const char *text, size_t len)
{
	int fds[2], status, rc;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC))
		return cli_err(CLI_FAILED, "cannot run dot: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		rc = errno;
		close(fds[0]);
		close(fds[1]);
		return cli_err(CLI_FAILED, "cannot run dot: %s", strerror(rc));
	}
	if (pid == 0) {
		char *const argv[] = { "dot", "-Tsvg", "-o", (char *)svg, NULL };

		if (dup2(fds[0], STDIN_FILENO) < 0)
			_exit(127);
		execv(dot, argv);
		_exit(127);
	}
	close(fds[0]);
	rc = write_all(fds[1], text, len);
	close(fds[1]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return cli_err(CLI_FAILED, "waiting for dot: %s", strerror(errno));
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return cli_err(CLI_FAILED, "dot -Tsvg -o %s failed (%s %d)", svg,
			       WIFEXITED(status) ? "exit status" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	if (rc)
		return cli_err(CLI_FAILED, "writing to dot: %s", strerror(-rc));
	return CLI_OK;
}

static int write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (!f)
		return cli_err(CLI_FAILED, "cannot write %s: %s", path, strerror(errno));
	if (fwrite(text, 1, len, f) != len)
		rc = errno ? errno : EIO;
	if (fclose(f) && !rc)
		rc = errno ? errno : EIO;
	if (rc)
		return cli_err(CLI_FAILED, "cannot write %s: %s", path, strerror(rc));
	return 0;
}

static void json_write(FILE *f, const struct graph *g)
{
	struct cli_json j;

	cli_json_init(&j, f);
	cli_json_obj_begin(&j, NULL);
	cli_json_arr_begin(&j, "nodes");
	for (size_t i = 0; i < g->nodes->n_nodes; i++)
		cli_json_node(&j, NULL, g->nodes->nodes[i]);
	cli_json_arr_end(&j);
	cli_json_arr_begin(&j, "volumes");
	for (size_t i = 0; i < g->volumes->n_volumes; i++)
		cli_json_volume(&j, NULL, g->volumes->volumes[i]);
	cli_json_arr_end(&j);
	cli_json_arr_begin(&j, "partitions");
	for (size_t i = 0; i < g->partitions->n_partitions; i++)
		cli_json_partition(&j, NULL, g->partitions->partitions[i]);
	cli_json_arr_end(&j);
	cli_json_obj_end(&j);
	cli_json_finish(&j);
}

static int cluster_graph(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "svg", required_argument, NULL, 's' },
		{ 0 },
	};
	Fab__Envelope nreq = FAB__ENVELOPE__INIT, vreq = FAB__ENVELOPE__INIT,
		      preq = FAB__ENVELOPE__INIT;
	Fab__NodeListRequest nl = FAB__NODE_LIST_REQUEST__INIT;
	Fab__VolumeListRequest vl = FAB__VOLUME_LIST_REQUEST__INIT;
	Fab__PartitionListRequest pl = FAB__PARTITION_LIST_REQUEST__INIT;
	Fab__Envelope *nodes = NULL, *vols = NULL, *parts = NULL;
	const char *output = NULL, *svg = NULL;
	struct graph g;
	char *text = NULL, dot[4096];
	size_t len = 0;
	FILE *mem;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case 's':
			svg = optarg;
			break;
		default:
			return rc;
		}
	}
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	if (output && svg && !strcmp(output, svg))
		return cli_usage_err(v, "--output and --svg name the same file '%s'", output);

	nreq.body_case = FAB__ENVELOPE__BODY_NODE_LIST;
	nreq.node_list = &nl;
	vreq.body_case = FAB__ENVELOPE__BODY_VOLUME_LIST;
	vreq.volume_list = &vl;
	preq.body_case = FAB__ENVELOPE__BODY_PARTITION_LIST;
	preq.partition_list = &pl;
	rc = cli_call(cli, &nreq, FAB__ENVELOPE__BODY_NODE_LIST_REPLY, "node list", NULL, 0, &nodes,
		      NULL);
	if (!rc)
		rc = cli_call(cli, &vreq, FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY, "volume list",
			      NULL, 0, &vols, NULL);
	if (!rc)
		rc = cli_call(cli, &preq, FAB__ENVELOPE__BODY_PARTITION_LIST_REPLY,
			      "partition list", NULL, 0, &parts, NULL);
	if (rc)
		goto out;
	g.nodes = nodes->node_list_reply;
	g.volumes = vols->volume_list_reply;
	g.partitions = parts->partition_list_reply;

	if (cli->json)
		json_write(stdout, &g);
	mem = open_memstream(&text, &len);
	if (!mem) {
		rc = cli_err(CLI_FAILED, "out of memory");
		goto out;
	}
	dot_write(mem, &g);
	if (fclose(mem)) {
		rc = cli_err(CLI_FAILED, "out of memory");
		goto out;
	}
	if (output)
		rc = write_file(output, text, len);
	else if (!cli->json)
		fwrite(text, 1, len, stdout);
	if (rc || !svg)
		goto out;
	if (find_dot(dot, sizeof(dot))) {
		cli_err(0, "dot (graphviz) is not installed: wrote only DOT");
		goto out;
	}
	fflush(stdout); /* before dot shares the terminal */
	rc = run_dot(dot, svg, text, len);
out:
	free(text);
	if (nodes)
		fab__envelope__free_unpacked(nodes, NULL);
	if (vols)
		fab__envelope__free_unpacked(vols, NULL);
	if (parts)
		fab__envelope__free_unpacked(parts, NULL);
	return rc;
}

static int cluster_events(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "after", required_argument, NULL, 'a' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__EventListRequest el = FAB__EVENT_LIST_REQUEST__INIT;
	const Fab__EventListReply *r;
	uint64_t after = 0;
	uint32_t limit = 50;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		switch (c) {
		case 'l':
			if (fab_parse_u32(optarg, 1, 1000, &limit))
				return cli_usage_err(v, "--limit wants 1..1000, not '%s'", optarg);
			break;
		case 'a':
		{
			char *end;

			errno = 0;
			after = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' ||
			    after > INT64_MAX)
				return cli_usage_err(v, "--after wants an event id, not '%s'",
						     optarg);
			break;
		}
		default:
			return rc;
		}
	}
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	el.after_id = (int64_t)after;
	el.limit = limit;
	req.body_case = FAB__ENVELOPE__BODY_EVENT_LIST;
	req.event_list = &el;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_EVENT_LIST_REPLY, NULL, NULL, 0, &reply, NULL);
	if (rc)
		return rc;
	r = reply->event_list_reply;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_arr_begin(&j, NULL);
		for (size_t i = 0; i < r->n_events; i++) {
			const Fab__EventInfo *e = r->events[i];

			cli_json_obj_begin(&j, NULL);
			cli_json_i64(&j, "id", e->id);
			cli_json_i64(&j, "unix_ms", e->unix_ms);
			cli_json_str(&j, "kind", e->kind);
			cli_json_str(&j, "subject", e->subject);
			cli_json_str(&j, "message", e->message);
			cli_json_obj_end(&j);
		}
		cli_json_arr_end(&j);
		cli_json_finish(&j);
	} else {
		static const char *const heads[] = { ">ID", "TIME", "KIND", "SUBJECT", "EVENT" };
		struct cli_table t;
		char when[64];

		cli_table_init(&t, 5, heads);
		for (size_t i = 0; i < r->n_events; i++) {
			const Fab__EventInfo *e = r->events[i];

			cli_table_cell(&t, "%lld", (long long)e->id);
			cli_table_cell(&t, "%s", cli_fmt_time(e->unix_ms, when, sizeof(when)));
			cli_table_cell(&t, "%s", e->kind);
			cli_table_cell(&t, "%s", e->subject);
			cli_table_cell(&t, "%s", e->message);
		}
		cli_table_print(&t, stdout);
		cli_table_fini(&t);
	}
	fab__envelope__free_unpacked(reply, NULL);
	return CLI_OK;
}

static const struct cli_verb verbs[] = {
	{ "cluster", "graph", cluster_graph, "[--output FILE.dot] [--svg FILE.svg] [--json]",
	  "nodes, partitions and volumes as Graphviz DOT (--svg renders it; --json: the data)" },
	{ "cluster", "events", cluster_events, "[--limit N] [--after ID] [--json]",
	  "the controller's event log: placements, restarts, failures (latest N, default 50)" },
};

const struct cli_group cli_cluster_group = { "cluster", verbs, FAB_ARRAY_SIZE(verbs) };
