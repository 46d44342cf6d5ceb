// SPDX-License-Identifier: MIT
/* fabctl node: list, show, drain, undrain. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "fab/util.h"
#include "cli.h"

static void print_nodes_table(const Fab__NodeListReply *r)
{
	static const char *const heads[] = { "NAME",	"STATE",       "DRAINED",    ">CPU",
					     ">MEM",	">PARTITIONS", "TRANSPORTS", "VSPS",
					     "ADDRESS", "LAST SEEN" };
	struct cli_table t;

	cli_table_init(&t, FAB_ARRAY_SIZE(heads), heads);
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Fab__NodeInfo *n = r->nodes[i];
		char used[16], total[16], tr[64], vs[128], age[40];

		cli_table_cell(&t, "%s", n->name);
		cli_table_cell(&t, "%s", cli_node_state_name(n->state));
		cli_table_cell(&t, "%s", n->drained ? "yes" : "no");
		cli_table_cell(&t, "%u/%u", n->vcpus_used, n->vcpus);
		cli_table_cell(&t, "%s/%s", cli_fmt_size(n->memory_used, used, sizeof(used)),
			       cli_fmt_size(n->memory_bytes, total, sizeof(total)));
		cli_table_cell(&t, "%zu", n->n_partitions);
		cli_table_cell(&t, "%s",
			       cli_join(n->transports, n->n_transports, ",", tr, sizeof(tr)));
		cli_table_cell(&t, "%s", cli_join(n->vsps, n->n_vsps, ",", vs, sizeof(vs)));
		cli_table_cell(&t, "%s", n->data_addr[0] ? n->data_addr : n->peer_addr);
		cli_table_cell(&t, "%s",
			       n->last_seen_unix_ms > 0
				       ? cli_fmt_ago(n->last_seen_unix_ms, age, sizeof(age))
				       : "never");
	}
	cli_table_print(&t, stdout);
	cli_table_fini(&t);
}

static void print_node(const Fab__NodeInfo *n)
{
	char a[24], b[24], list[1024], t[80], ago[40];

	cli_kv("name", "%s", n->name);
	cli_kv("state", "%s", cli_node_state_name(n->state));
	cli_kv("drained", "%s", n->drained ? "yes (no new placements)" : "no");
	cli_kv("vcpus", "%u used of %u", n->vcpus_used, n->vcpus);
	cli_kv("memory", "%s used of %s", cli_fmt_size(n->memory_used, a, sizeof(a)),
	       cli_fmt_size(n->memory_bytes, b, sizeof(b)));
	cli_kv("transports", "%s",
	       cli_join(n->transports, n->n_transports, ", ", list, sizeof(list)));
	cli_kv("vsps", "%s", cli_join(n->vsps, n->n_vsps, ", ", list, sizeof(list)));
	cli_kv("data address", "%s", n->data_addr);
	cli_kv("peer address", "%s", n->peer_addr);
	cli_kv("version", "%s", n->version);
	cli_kv("generation", "%llu", (unsigned long long)n->generation);
	cli_kv("registered", "%s", cli_fmt_when(n->registered_unix_ms, t, sizeof(t)));
	cli_kv("last seen", "%s",
	       n->last_seen_unix_ms > 0 ? cli_fmt_ago(n->last_seen_unix_ms, ago, sizeof(ago))
					: "never (since the controller started)");
	cli_kv("partitions", "%s",
	       cli_join(n->partitions, n->n_partitions, ", ", list, sizeof(list)));
	cli_kv("volumes", "%s", cli_join(n->volumes, n->n_volumes, ", ", list, sizeof(list)));
	if (n->drain_status[0])
		cli_kv("drain", "%s%s", n->drain_status, n->draining ? " (in progress)" : "");
	for (size_t i = 0; i < n->n_unmovable; i++)
		cli_kv("could not move", "%s", n->unmovable[i]);
}

static int node_list(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__NodeListRequest nl = FAB__NODE_LIST_REQUEST__INIT;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	req.body_case = FAB__ENVELOPE__BODY_NODE_LIST;
	req.node_list = &nl;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_NODE_LIST_REPLY, NULL, NULL, 0, &reply, NULL);
	if (rc)
		return rc;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_arr_begin(&j, NULL);
		for (size_t i = 0; i < reply->node_list_reply->n_nodes; i++)
			cli_json_node(&j, NULL, reply->node_list_reply->nodes[i]);
		cli_json_arr_end(&j);
		cli_json_finish(&j);
	} else {
		print_nodes_table(reply->node_list_reply);
	}
	fab__envelope__free_unpacked(reply, NULL);
	return 0;
}

static void print_unmovable(const Fab__NodeInfo *n)
{
	for (size_t i = 0; i < n->n_unmovable; i++) {
		char safe[512];

		printf("  could not move %s\n", cli_safe(n->unmovable[i], safe, sizeof(safe)));
	}
}

/*
 * drain --wait: polls node show until the drain has moved (or failed to
 * move) every partition, a line on stderr whenever its status changes.
 * Exit 0 when everything moved, 5 when some partition could not move.
 */
static int drain_wait(struct cli *cli, const char *name, Fab__Envelope **cur)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT;
	Fab__NodeNameRequest nr = FAB__NODE_NAME_REQUEST__INIT;
	int64_t deadline = fab_mono_ms() + (int64_t)(cli->wait_s * 1000);
	char last[256] = "";
	int rc;

	nr.name = (char *)name;
	req.body_case = FAB__ENVELOPE__BODY_NODE_SHOW;
	req.node_show = &nr;
	for (;;) {
		const Fab__NodeInfo *n = (*cur)->node_reply->node;
		Fab__Envelope *next = NULL;

		if (strcmp(last, n->drain_status)) {
			snprintf(last, sizeof(last), "%s", n->drain_status);
			if (last[0])
				cli_progress("%s: drain: %s", name, last);
		}
		if (!n->draining)
			return n->n_unmovable ? CLI_NO_FIT : CLI_OK;
		if (fab_mono_ms() >= deadline)
			return cli_err(CLI_FAILED, "node '%s' still draining after %g s (%s)", name,
				       cli->wait_s, n->drain_status);
		cli_sleep_ms(200);
		rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_NODE_REPLY, "node", name, 0, &next,
			      NULL);
		if (rc)
			return rc;
		fab__envelope__free_unpacked(*cur, NULL);
		*cur = next;
	}
}

/* show, drain and undrain: a name in, a NodeReply out. */
static int node_named(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option drain_opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__NodeNameRequest nr = FAB__NODE_NAME_REQUEST__INIT;
	bool drain = !strcmp(v->name, "drain"), wait = false;
	const Fab__NodeInfo *n;
	const char *name;
	int c, rc, code = CLI_OK;

	while ((c = cli_opt_next(cli, v, argc, argv, drain ? drain_opts : NULL, &rc)) != -1) {
		if (c != 'w')
			return rc;
		wait = true;
	}
	rc = cli_one_name(v, argc, argv, "node", &name);
	if (rc)
		return rc;
	nr.name = (char *)name;
	if (!strcmp(v->name, "show")) {
		req.body_case = FAB__ENVELOPE__BODY_NODE_SHOW;
		req.node_show = &nr;
	} else if (!strcmp(v->name, "drain")) {
		req.body_case = FAB__ENVELOPE__BODY_NODE_DRAIN;
		req.node_drain = &nr;
	} else {
		req.body_case = FAB__ENVELOPE__BODY_NODE_UNDRAIN;
		req.node_undrain = &nr;
	}
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_NODE_REPLY, "node", name, 0, &reply, NULL);
	if (rc)
		return rc;
	if (drain && wait) {
		code = drain_wait(cli, name, &reply);
		if (code != CLI_OK && code != CLI_NO_FIT) {
			fab__envelope__free_unpacked(reply, NULL);
			return code;
		}
	}
	n = reply->node_reply->node;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_node(&j, NULL, n);
		cli_json_finish(&j);
	} else if (!strcmp(v->name, "show")) {
		print_node(n);
	} else {
		char safe[80];

		printf("%s: %s (%zu partition%s placed on it)\n",
		       cli_safe(n->name, safe, sizeof(safe)),
		       n->drained ? "drained, no new placements" : "takes new placements",
		       n->n_partitions, n->n_partitions == 1 ? "" : "s");
		if (drain && n->drain_status[0]) {
			char st[300];

			printf("  drain: %s%s\n", cli_safe(n->drain_status, st, sizeof(st)),
			       n->draining && !wait
				       ? " (follow with: fabctl node drain NAME --wait)"
				       : "");
		}
		if (drain)
			print_unmovable(n);
	}
	if (code == CLI_NO_FIT)
		cli_err(0, "node '%s': %zu partition%s could not move off it", name, n->n_unmovable,
			n->n_unmovable == 1 ? "" : "s");
	fab__envelope__free_unpacked(reply, NULL);
	return code;
}

static const struct cli_verb verbs[] = {
	{ "node", "list", node_list, "[--json]",
	  "nodes: state, drained, vCPUs and memory in use, partitions, transports" },
	{ "node", "show", node_named, "NAME [--json]",
	  "one node in full, with its partitions and volumes" },
	{ "node", "drain", node_named, "NAME [--wait] [--json]",
	  "no new placements on the node, and live-migrate its partitions off one at a time "
	  "(--wait: until done; exit 5 if some could not move)" },
	{ "node", "undrain", node_named, "NAME [--json]", "the node takes new placements again" },
};

const struct cli_group cli_node_group = { "node", verbs, FAB_ARRAY_SIZE(verbs) };
