// SPDX-License-Identifier: MIT
/* fabctl volume: create (and wait until ready), list, show, delete. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fab/util.h"
#include "cli.h"

#define POLL_MS 100

static void print_volume(const Fab__VolumeInfo *v)
{
	char size[24], t[80];

	cli_kv("name", "%s", v->name);
	cli_kv("state", "%s", v->state);
	cli_kv("size", "%s (%llu bytes)", cli_fmt_size(v->size_bytes, size, sizeof(size)),
	       (unsigned long long)v->size_bytes);
	cli_kv("node", "%s", v->node);
	cli_kv("path", "%s", v->path);
	cli_kv("attached to", "%s", v->attached_to);
	cli_kv("error", "%s", v->error);
	cli_kv("created", "%s", cli_fmt_when(v->created_unix_ms, t, sizeof(t)));
}

static void print_one(const struct cli *cli, const Fab__VolumeInfo *v)
{
	struct cli_json j;

	if (!cli->json) {
		print_volume(v);
		return;
	}
	cli_json_init(&j, stdout);
	cli_json_volume(&j, NULL, v);
	cli_json_finish(&j);
}

/* "v1: creating on node-b" */
static void volume_progress(const Fab__VolumeInfo *v)
{
	if (v->node[0])
		cli_progress("%s: %s on %s", v->name, v->state, v->node);
	else
		cli_progress("%s: %s", v->name, v->state);
}

static int volume_show_req(struct cli *cli, const char *name, unsigned flags, Fab__Envelope **reply)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT;
	Fab__VolumeNameRequest nr = FAB__VOLUME_NAME_REQUEST__INIT;

	nr.name = (char *)name;
	req.body_case = FAB__ENVELOPE__BODY_VOLUME_SHOW;
	req.volume_show = &nr;
	return cli_call(cli, &req, FAB__ENVELOPE__BODY_VOLUME_REPLY, "volume", name, flags, reply,
			NULL);
}

/*
 * Polls until the volume is "ready" (0) or "failed" (CLI_FAILED), printing
 * each change of state. *cur is the latest reply (replaced as polls come
 * in; the caller frees it).
 */
static int volume_wait(struct cli *cli, const char *name, Fab__Envelope **cur)
{
	int64_t deadline = fab_mono_ms() + (int64_t)(cli->wait_s * 1000);
	char seen[64];
	int rc;

	snprintf(seen, sizeof(seen), "%s", (*cur)->volume_reply->volume->state);
	for (;;) {
		const Fab__VolumeInfo *v = (*cur)->volume_reply->volume;
		Fab__Envelope *next = NULL;

		if (!strcmp(v->state, "ready"))
			return 0;
		if (!strcmp(v->state, "failed"))
			return cli_err(CLI_FAILED, "volume '%s' failed: %s", name,
				       v->error[0] ? v->error : "no reason given");
		/* Someone deleted it meanwhile: it will never be ready. */
		if (!strcmp(v->state, "deleting") || !strcmp(v->state, "deleted"))
			return cli_err(CLI_FAILED, "volume '%s' is %s", name, v->state);
		if (fab_mono_ms() >= deadline)
			return cli_err(CLI_FAILED,
				       "volume '%s' still %s after %g s (not waiting longer; see "
				       "fabctl volume show %s)",
				       name, v->state, cli->wait_s, name);
		cli_sleep_ms(POLL_MS);
		rc = volume_show_req(cli, name, 0, &next);
		if (rc)
			return rc;
		fab__envelope__free_unpacked(*cur, NULL);
		*cur = next;
		v = next->volume_reply->volume;
		if (strcmp(v->state, seen)) {
			snprintf(seen, sizeof(seen), "%s", v->state);
			if (strcmp(v->state, "ready") && strcmp(v->state, "failed"))
				volume_progress(v);
		}
	}
}

static int volume_create(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "node", required_argument, NULL, 'n' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ 0 },
	};
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__VolumeCreateRequest cr = FAB__VOLUME_CREATE_REQUEST__INIT;
	const Fab__VolumeInfo *vol;
	const char *name, *node = NULL, *size_arg = NULL;
	bool wait = true;
	uint64_t size = 0;
	int c, rc;

	while ((c = cli_opt_next(cli, v, argc, argv, opts, &rc)) != -1) {
		switch (c) {
		case 's':
			size_arg = optarg;
			if (fab_parse_size(optarg, &size) || !size)
				return cli_err(CLI_USAGE,
					       "--size wants a size like 10G or 512M, not '%s'",
					       optarg);
			break;
		case 'n':
			if (cli_check_name("--node", optarg))
				return CLI_USAGE;
			node = optarg;
			break;
		case 'W':
			wait = false;
			break;
		default:
			return rc;
		}
	}
	rc = cli_one_name(v, argc, argv, "volume", &name);
	if (rc)
		return rc;
	if (!size_arg)
		return cli_usage_err(v, "--size is required");
	cr.name = (char *)name;
	cr.node = (char *)(node ? node : "");
	cr.size_bytes = size;
	req.body_case = FAB__ENVELOPE__BODY_VOLUME_CREATE;
	req.volume_create = &cr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_VOLUME_REPLY, "volume", name, 0, &reply, NULL);
	if (rc)
		return rc;
	if (wait) {
		vol = reply->volume_reply->volume;
		if (strcmp(vol->state, "ready") && strcmp(vol->state, "failed"))
			volume_progress(vol);
		rc = volume_wait(cli, name, &reply);
	}
	vol = reply->volume_reply->volume;
	if (cli->json) {
		print_one(cli, vol);
	} else if (rc == 0) {
		char sz[24], vname[80], state[40], where[80];

		printf("%s: %s%s%s (%s)\n", cli_safe(vol->name, vname, sizeof(vname)),
		       cli_safe(vol->state, state, sizeof(state)), vol->node[0] ? " on " : "",
		       cli_safe(vol->node, where, sizeof(where)),
		       cli_fmt_size(vol->size_bytes, sz, sizeof(sz)));
	}
	fab__envelope__free_unpacked(reply, NULL);
	return rc;
}

static int volume_list(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	static const char *const heads[] = { "NAME",	    "STATE", ">SIZE", "NODE",
					     "ATTACHED TO", "AGE",   "ERROR" };
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__VolumeListRequest lr = FAB__VOLUME_LIST_REQUEST__INIT;
	const Fab__VolumeListReply *r;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_no_args(v, argc, argv);
	if (rc)
		return rc;
	req.body_case = FAB__ENVELOPE__BODY_VOLUME_LIST;
	req.volume_list = &lr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_VOLUME_LIST_REPLY, "volume list", NULL, 0,
		      &reply, NULL);
	if (rc)
		return rc;
	r = reply->volume_list_reply;
	if (cli->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_arr_begin(&j, NULL);
		for (size_t i = 0; i < r->n_volumes; i++)
			cli_json_volume(&j, NULL, r->volumes[i]);
		cli_json_arr_end(&j);
		cli_json_finish(&j);
	} else {
		struct cli_table t;

		cli_table_init(&t, FAB_ARRAY_SIZE(heads), heads);
		for (size_t i = 0; i < r->n_volumes; i++) {
			const Fab__VolumeInfo *vol = r->volumes[i];
			char size[24], ago[40];

			cli_table_cell(&t, "%s", vol->name);
			cli_table_cell(&t, "%s", vol->state);
			cli_table_cell(&t, "%s", cli_fmt_size(vol->size_bytes, size, sizeof(size)));
			cli_table_cell(&t, "%s", vol->node);
			cli_table_cell(&t, "%s", vol->attached_to);
			cli_table_cell(&t, "%s",
				       cli_fmt_ago(vol->created_unix_ms, ago, sizeof(ago)));
			cli_table_cell(&t, "%s", vol->error);
		}
		cli_table_print(&t, stdout);
		cli_table_fini(&t);
	}
	fab__envelope__free_unpacked(reply, NULL);
	return 0;
}

static int volume_show(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope *reply = NULL;
	const char *name;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "volume", &name);
	if (rc)
		return rc;
	rc = volume_show_req(cli, name, 0, &reply);
	if (rc)
		return rc;
	print_one(cli, reply->volume_reply->volume);
	fab__envelope__free_unpacked(reply, NULL);
	return 0;
}

static int volume_delete(struct cli *cli, const struct cli_verb *v, int argc, char **argv)
{
	Fab__Envelope req = FAB__ENVELOPE__INIT, *reply = NULL;
	Fab__VolumeNameRequest nr = FAB__VOLUME_NAME_REQUEST__INIT;
	const Fab__VolumeInfo *vol;
	const char *name;
	int rc;

	if (cli_opt_next(cli, v, argc, argv, NULL, &rc) != -1)
		return rc;
	rc = cli_one_name(v, argc, argv, "volume", &name);
	if (rc)
		return rc;
	nr.name = (char *)name;
	req.body_case = FAB__ENVELOPE__BODY_VOLUME_DELETE;
	req.volume_delete = &nr;
	rc = cli_call(cli, &req, FAB__ENVELOPE__BODY_VOLUME_REPLY, "volume", name, 0, &reply, NULL);
	if (rc)
		return rc;
	vol = reply->volume_reply->volume;
	if (cli->json) {
		print_one(cli, vol);
	} else {
		char safe[80];

		/* The node removes the file after the reply: "deleting". */
		printf("%s: %s\n", name,
		       vol->state[0] ? cli_safe(vol->state, safe, sizeof(safe)) : "deleted");
	}
	fab__envelope__free_unpacked(reply, NULL);
	return 0;
}

static const struct cli_verb verbs[] = {
	{ "volume", "create", volume_create, "NAME --size SIZE [--node NODE] [--no-wait] [--json]",
	  "create a volume and wait until it is ready (without --node the controller picks one)" },
	{ "volume", "list", volume_list, "[--json]", "volumes: state, size, node, partition" },
	{ "volume", "show", volume_show, "NAME [--json]", "one volume in full" },
	{ "volume", "delete", volume_delete, "NAME [--json]",
	  "delete a volume (refused while a partition has it)" },
};

const struct cli_group cli_volume_group = { "volume", verbs, FAB_ARRAY_SIZE(verbs) };
