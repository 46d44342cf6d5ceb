// SPDX-License-Identifier: MIT
/* A controller and its nodes in network namespaces, driven through fabctl
 * (tcluster.h). */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tcluster.h"

struct tcluster tc;

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (!f)
		return -1;
	rc = fputs(text, f) < 0;
	rc |= fclose(f) != 0;
	return rc ? -1 : 0;
}

int tc_node_index(const char *name)
{
	for (int i = 0; i < tc.cfg.nnodes; i++)
		if (!strcmp(tc.cfg.nodes[i].name, name))
			return i;
	return -1;
}

pid_t tc_start_ctld(const char *crash_at)
{
	char db[160], log[160];
	const char *argv[16] = { tc.cfg.fabctld, "--listen", TC_CTL_ADDR, "--db", db,
				 "--pki", tc.pki, "--stop-timeout-ms", "3000" };
	int n = 9;
	pid_t pid;

	if (tc.cfg.lease_ms) {
		argv[n++] = "--lease-ms";
		argv[n++] = tc.cfg.lease_ms;
	}
	argv[n] = NULL;
	snprintf(db, sizeof(db), "%s/fabctld.db", tc.dir);
	snprintf(log, sizeof(log), "%s/fabctld.log", tc.dir);
	if (crash_at)
		setenv("FABCTLD_TEST_CRASH_AT", crash_at, 1);
	pid = th_spawn(log, tc.ns_hub, argv);
	unsetenv("FABCTLD_TEST_CRASH_AT");
	tc.ctld_pid = pid;
	return pid;
}

pid_t tc_start_node(int i)
{
	const struct tc_node *nd = &tc.cfg.nodes[i];
	char conf[160], log[160], vol[160], state[160], text[2048], listen[64] = "";
	const char *argv[] = { tc.cfg.fabnode, "serve", "--config", conf, NULL };

	snprintf(conf, sizeof(conf), "%s/%s.conf", tc.dir, nd->name);
	snprintf(log, sizeof(log), "%s/%s.log", tc.dir, nd->name);
	snprintf(vol, sizeof(vol), "%s/%s-volumes", tc.dir, nd->name);
	snprintf(state, sizeof(state), "%s/%s-state", tc.dir, nd->name);
	mkdir(vol, 0700);
	mkdir(state, 0700);
	if (nd->data_listen)
		snprintf(listen, sizeof(listen), "data_listen = %s:7800\n", tc.addr[i]);
	snprintf(text, sizeof(text),
		 "name = %s\ncontroller = " TC_CTL_ADDR "\npki = %s\ntransport = tcp\n"
		 "vcpus = %d\nmemory = 1G\n"
		 "volume_dir = %s\nimage_dir = %s\nstate_dir = %s\n%s",
		 nd->name, tc.pki, nd->vcpus, vol, tc.cfg.images, state, listen);
	if (write_file(conf, text))
		return -1;
	tc.node_pid[i] = th_spawn(log, tc.ns_node[i], argv);
	return tc.node_pid[i];
}

int tc_start(const struct tc_cfg *cfg, char *why, size_t whylen)
{
	char names[256] = "";

	memset(&tc, 0, sizeof(tc));
	tc.cfg = *cfg;
	if (cfg->nnodes < 1 || cfg->nnodes > TC_MAX_NODES) {
		snprintf(why, whylen, "1..%d nodes", TC_MAX_NODES);
		return -1;
	}
	if (geteuid() != 0) {
		snprintf(why, whylen, "network namespaces need root");
		return 77;
	}
	if (th_netns_create(cfg->tag, cfg->nnodes, tc.prefix, sizeof(tc.prefix), why, whylen))
		return -1;
	snprintf(tc.ns_hub, sizeof(tc.ns_hub), "%s-hub", tc.prefix);
	for (int i = 0; i < cfg->nnodes; i++) {
		snprintf(tc.ns_node[i], sizeof(tc.ns_node[i]), "%s-n%d", tc.prefix, i + 1);
		snprintf(tc.addr[i], sizeof(tc.addr[i]), "10.77.0.%d", 11 + i);
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
			 i ? "," : "", cfg->nodes[i].name);
	}
	th_tmpdir(tc.dir, sizeof(tc.dir));
	snprintf(tc.pki, sizeof(tc.pki), "%s/pki", tc.dir);
	{
		const char *a[] = { cfg->fabctl, "pki", "init", "--dir", tc.pki, "--nodes", names,
				    NULL };

		if (th_run(NULL, NULL, NULL, a, 60)) {
			snprintf(why, whylen, "fabctl pki init failed");
			return -1;
		}
	}
	tc_start_ctld(NULL);
	for (int i = 0; i < cfg->nnodes; i++)
		if (tc_start_node(i) < 0) {
			snprintf(why, whylen, "cannot write %s's configuration", cfg->nodes[i].name);
			return -1;
		}
	if (!tc_wait_nodes_up(cfg->nnodes, 30000)) {
		tc_dump_all();
		snprintf(why, whylen, "the nodes did not come up in 30 s");
		return -1;
	}
	return 0;
}

int tc_fabctlv(char **out, char **err, const char *const *args, int timeout_s)
{
	const char *argv[64] = { tc.cfg.fabctl, "--controller", TC_CTL_ADDR, "--pki", tc.pki };
	char o[160], e[160];
	int n = 5, rc;

	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(o, sizeof(o), "%s/fabctl.out", tc.dir);
	snprintf(e, sizeof(e), "%s/fabctl.err", tc.dir);
	rc = th_run(o, e, tc.ns_hub, argv, timeout_s);
	if (out)
		*out = th_slurp(o);
	if (err)
		*err = th_slurp(e);
	return rc;
}

int tc_fabctl(char **out, char **err, const char *first, ...)
{
	const char *args[60];
	int n = 0;
	va_list ap;

	args[n++] = first;
	va_start(ap, first);
	for (const char *a; n < 59 && (a = va_arg(ap, const char *));)
		args[n++] = a;
	va_end(ap);
	args[n] = NULL;
	return tc_fabctlv(out, err, args, 120);
}

int tc_fabctl_expectv(char **out, int timeout_s, const char *first, va_list ap)
{
	const char *args[60];
	char *err = NULL;
	int n = 0, rc;

	args[n++] = first;
	for (const char *a; n < 59 && (a = va_arg(ap, const char *));)
		args[n++] = a;
	args[n] = NULL;
	*out = NULL;
	rc = tc_fabctlv(out, &err, args, timeout_s);
	if (rc) {
		fprintf(stderr, "fabctl");
		for (int i = 0; args[i]; i++)
			fprintf(stderr, " %s", args[i]);
		fprintf(stderr, ": exit %d\n%s%s", rc, *out ? *out : "", err ? err : "");
		tc_dump_all();
	}
	free(err);
	return rc;
}

int tc_json_get(const char *json, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *p, *q;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '"') {
		p++;
		q = strchr(p, '"');
	} else {
		q = p + strcspn(p, ",}\n ");
	}
	if (!q || (size_t)(q - p) >= len)
		return -1;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return 0;
}

static int nodes_up(void *arg)
{
	int want = *(int *)arg, n = 0;
	char *out = NULL;

	if (tc_fabctl(&out, NULL, "--json", "node", "list", NULL) == 0 && out)
		for (char *p = out; (p = strstr(p, "\"state\": \"up\"")); p++)
			n++;
	free(out);
	return n >= want;
}

int tc_wait_nodes_up(int want, int ms)
{
	return th_wait(nodes_up, &want, ms);
}

struct part_wait {
	const char *name, *state, *console, *not_node;
};

static int part_is(void *arg)
{
	struct part_wait *w = arg;
	char *out = NULL, st[32], node[64];
	int yes = 0;

	if (tc_fabctl(&out, NULL, "--json", "partition", "show", w->name, NULL) == 0 &&
	    tc_json_get(out, "state", st, sizeof(st)) == 0 && !strcmp(st, w->state)) {
		yes = 1;
		if (w->not_node && tc_json_get(out, "node", node, sizeof(node)) == 0 &&
		    !strcmp(node, w->not_node))
			yes = 0;
	}
	free(out);
	if (yes && w->console) {
		out = NULL;
		yes = tc_fabctl(&out, NULL, "partition", "console", w->name, NULL) == 0 && out &&
		      strstr(out, w->console);
		free(out);
	}
	return yes;
}

int tc_wait_part(const char *name, const char *state, const char *console, const char *not_node,
		 int ms)
{
	struct part_wait w = { name, state, console, not_node };
	char *out = NULL;

	if (th_wait(part_is, &w, ms))
		return 1;
	tc_fabctl(&out, NULL, "partition", "show", name, NULL);
	fprintf(stderr, "%s", out ? out : "");
	free(out);
	out = NULL;
	tc_fabctl(&out, NULL, "partition", "console", name, NULL);
	fprintf(stderr, "console:\n%s", out ? out : "");
	free(out);
	tc_dump_all();
	fprintf(stderr, "partition %s: not %s%s%s%s%s within %d ms\n", name, state,
		console ? " with console " : "", console ? console : "",
		not_node ? " away from " : "", not_node ? not_node : "", ms);
	return 0;
}

int tc_part_node(const char *name, char *node, size_t len)
{
	char *out = NULL;
	int rc;

	rc = tc_fabctl(&out, NULL, "--json", "partition", "show", name, NULL) == 0 &&
			     tc_json_get(out, "node", node, len) == 0 ?
		     0 :
		     -1;
	free(out);
	return rc;
}

void tc_dump(const char *path)
{
	char *s = th_slurp(path);

	if (!s)
		return;
	fprintf(stderr, "----- %s -----\n%s", path, s);
	free(s);
}

void tc_dump_all(void)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/fabctld.log", tc.dir);
	tc_dump(path);
	for (int i = 0; i < tc.cfg.nnodes; i++) {
		snprintf(path, sizeof(path), "%s/%s.log", tc.dir, tc.cfg.nodes[i].name);
		tc_dump(path);
	}
}

int tc_logs_clean(void)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:" };
	struct dirent *de;
	int clean = 1;
	DIR *d;

	if (!tc.dir[0] || !(d = opendir(tc.dir)))
		return 1;
	while ((de = readdir(d))) {
		char path[400];
		size_t n = strlen(de->d_name);

		if (n < 4 || strcmp(de->d_name + n - 4, ".log"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tc.dir, de->d_name);
		for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			if (th_file_has(path, marks[i])) {
				tc_dump(path);
				clean = 0;
				break;
			}
	}
	closedir(d);
	return clean;
}

void tc_stop(void)
{
	th_cleanup();
}

int tc_teardown(void)
{
	int clean;

	th_cleanup_processes();
	clean = tc_logs_clean();
	tc_stop();
	if (!clean) {
		fprintf(stderr, "sanitizer reports in process logs (above)\n");
		return -1;
	}
	return 0;
}
