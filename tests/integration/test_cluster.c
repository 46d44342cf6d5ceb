// SPDX-License-Identifier: MIT
/*
 * Controller and nodes as real processes: durability across SIGKILL, leases
 * across SIGSTOP/SIGCONT, identity checks, bad frames against the live
 * daemon, and a cluster spread over network namespaces.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "fab/frame.h"
#include "fab/pki.h"
#include "harness.h"

#define LEASE_MS "1000"

struct cluster {
	char dir[64];
	char pki[128];
	char db[128];
	char addr_file[128];
	char addr[64];
	char ctl_log[128];
	pid_t ctl;
	const char *netns; /* controller's namespace, or NULL */
	int ok;		   /* set at the end of a test; teardown dumps logs if not */
};

static struct cluster cl;

static void dump(const char *path)
{
	char *s = th_slurp(path);

	if (!s)
		return;
	fprintf(stderr, "----- %s -----\n%s", path, s);
	free(s);
}

static int setup(void **state)
{
	memset(&cl, 0, sizeof(cl));
	th_tmpdir(cl.dir, sizeof(cl.dir));
	snprintf(cl.pki, sizeof(cl.pki), "%s/pki", cl.dir);
	snprintf(cl.db, sizeof(cl.db), "%s/ctl.db", cl.dir);
	snprintf(cl.addr_file, sizeof(cl.addr_file), "%s/ctl.addr", cl.dir);
	snprintf(cl.ctl_log, sizeof(cl.ctl_log), "%s/fabctld.log", cl.dir);
	{
		const char *argv[] = { FABCTL, "pki",	  "init", "--dir",
				       cl.pki, "--nodes", "a,b",  NULL };

		if (th_run(NULL, NULL, NULL, argv, 30) != 0)
			return -1;
	}
	return 0;
}

/* Sanitizer reports in any process log make the test fail. */
static int sanitizer_clean(void)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer",
					     "runtime error:" };
	const char *names[] = { "fabctld.log", "node-a.log", "node-b.log" };
	char path[160];
	int clean = 1;

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", cl.dir, names[i]);
		for (size_t k = 0; k < 3; k++) {
			if (th_file_has(path, marks[k])) {
				fprintf(stderr, "sanitizer report in %s\n", path);
				dump(path);
				clean = 0;
				break;
			}
		}
	}
	return clean;
}

static int teardown(void **state)
{
	int rc = 0;

	/* Stop the daemons gracefully first so their exit paths run. */
	th_cleanup_processes();
	if (!sanitizer_clean())
		rc = -1;
	if (!cl.ok) {
		char path[160];

		dump(cl.ctl_log);
		snprintf(path, sizeof(path), "%s/node-a.log", cl.dir);
		dump(path);
		snprintf(path, sizeof(path), "%s/node-b.log", cl.dir);
		dump(path);
	}
	th_cleanup();
	return rc;
}

struct grep {
	const char *path;
	const char *needle;
};

static int grep_pred(void *arg)
{
	const struct grep *g = arg;

	return th_file_has(g->path, g->needle);
}

/* Waits up to ms for a log line: daemons write asynchronously. */
static int log_has(const char *path, const char *needle, int ms)
{
	struct grep g = { path, needle };

	return th_wait(grep_pred, &g, ms);
}

static int have_addr(void *arg)
{
	char *s = th_slurp(cl.addr_file);
	int ok = s && strchr(s, ':');

	if (ok) {
		s[strcspn(s, "\n")] = '\0';
		snprintf(cl.addr, sizeof(cl.addr), "%s", s);
	}
	free(s);
	return ok;
}

static void start_controller(const char *listen)
{
	const char *argv[] = { FABCTLD,	 "--listen",	listen,	      "--db",
			       cl.db,	 "--pki",	cl.pki,	      "--lease-ms",
			       LEASE_MS, "--addr-file", cl.addr_file, NULL };

	unlink(cl.addr_file);
	cl.ctl = th_spawn(cl.ctl_log, cl.netns, argv);
	assert_true(th_wait(have_addr, NULL, 10000));
}

static pid_t start_node(const char *name, const char *netns, const char *controller)
{
	char log[128];
	const char *argv[] = { FABNODE,	       "serve",	   "--name", name,
			       "--controller", controller, "--pki",  cl.pki,
			       "--memory",     "1G",	   NULL };

	snprintf(log, sizeof(log), "%s/node-%s.log", cl.dir, name);
	return th_spawn(log, netns, argv);
}

/* Runs fabctl node list --json; returns its exit status, output in *out. */
static int node_list(const char *admin, char **out, char **err)
{
	char o[128], e[128];
	const char *argv[] = { FABCTL, "--controller", cl.addr, "--pki",  cl.pki, "--admin",
			       admin,  "node",	       "list",	"--json", NULL };
	int rc;

	snprintf(o, sizeof(o), "%s/fabctl.out", cl.dir);
	snprintf(e, sizeof(e), "%s/fabctl.err", cl.dir);
	rc = th_run(o, e, cl.netns, argv, 30);
	*out = th_slurp(o);
	if (err)
		*err = th_slurp(e);
	return rc;
}

struct want {
	const char *name;
	const char *state;
};

/* True when node list shows name in state. */
static int node_is(void *arg)
{
	const struct want *w = arg;
	char needle[128], *out = NULL;
	int found;

	snprintf(needle, sizeof(needle), "{\"name\": \"%s\", \"state\": \"%s\"", w->name, w->state);
	found = node_list("admin", &out, NULL) == 0 && out && strstr(out, needle);
	free(out);
	return found;
}

static int wait_node(const char *name, const char *state, int ms)
{
	struct want w = { name, state };

	return th_wait(node_is, &w, ms);
}

static void test_registration_survives_sigkill(void **state)
{
	pid_t a;

	start_controller("127.0.0.1:0");
	a = start_node("a", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	/* The node goes away for good, then the controller dies hard: the
	 * registration must come back from disk, not from the node. */
	th_stop(a);
	th_signal(cl.ctl, SIGKILL);
	th_stop(cl.ctl);
	start_controller(cl.addr);
	assert_true(wait_node("a", "down", 5000));
	{
		char *out = NULL;

		assert_int_equal(node_list("admin", &out, NULL), 0);
		assert_non_null(strstr(out, "\"memory_bytes\": 1073741824"));
		assert_non_null(strstr(out, "\"transports\": [\"tcp\"]"));
		assert_non_null(
			strstr(out, "\"vsps\": [\"storage\", \"heartbeat\", \"shutdown\"]"));
		free(out);
	}
	/* And it comes back up when the node returns. */
	a = start_node("a", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	assert_true(th_file_has(cl.ctl_log, "generation 2"));
	cl.ok = 1;
}

static void test_lease_sigstop_sigcont(void **state)
{
	pid_t a, b;

	start_controller("127.0.0.1:0");
	a = start_node("a", NULL, cl.addr);
	b = start_node("b", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	assert_true(wait_node("b", "up", 10000));
	th_signal(a, SIGSTOP);
	assert_true(wait_node("a", "down", 5000));
	assert_true(log_has(cl.ctl_log, "node a: down (lease expired", 5000));
	assert_true(wait_node("b", "up", 1000)); /* the other node is untouched */
	th_signal(a, SIGCONT);
	assert_true(wait_node("a", "up", 5000));
	(void)b;
	cl.ok = 1;
}

/* Node or controller keeps reconnecting while the controller is away. */
static void test_node_reconnects(void **state)
{
	start_controller("127.0.0.1:0");
	start_node("a", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	th_stop(cl.ctl);
	sleep(1); /* the node backs off a few times */
	start_controller(cl.addr);
	assert_true(wait_node("a", "up", 10000));
	cl.ok = 1;
}

static void test_identity_enforced(void **state)
{
	char *out = NULL, *err = NULL, crt[256], key[256], ncrt[256], nkey[256], cmd[1200];

	start_controller("127.0.0.1:0");
	/* A node certificate renamed to look like an admin's. */
	fab_pki_paths(cl.pki, FAB_ROLE_NODE, "a", ncrt, nkey, sizeof(ncrt));
	fab_pki_paths(cl.pki, FAB_ROLE_ADMIN, "fake", crt, key, sizeof(crt));
	snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", ncrt, crt, nkey, key);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(node_list("fake", &out, &err), 6); /* permission denied */
	assert_non_null(strstr(err, "permission denied"));
	free(out);
	free(err);
	assert_true(log_has(cl.ctl_log, "node 'a' called an admin request", 5000));

	/* An admin of another cluster does not get past TLS. */
	{
		char other[160];
		const char *argv[] = { FABCTL, "pki", "init", "--dir", other, NULL };

		snprintf(other, sizeof(other), "%s/other", cl.dir);
		assert_int_equal(th_run(NULL, NULL, NULL, argv, 30), 0);
		fab_pki_paths(other, FAB_ROLE_ADMIN, "admin", ncrt, nkey, sizeof(ncrt));
		fab_pki_paths(cl.pki, FAB_ROLE_ADMIN, "stranger", crt, key, sizeof(crt));
		snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", ncrt, crt, nkey, key);
		assert_int_equal(system(cmd), 0);
		assert_int_equal(node_list("stranger", &out, &err), 7); /* no controller */
		free(out);
		free(err);
		assert_true(log_has(cl.ctl_log, "TLS handshake", 5000));
	}
	/* A node cannot register under another node's name. */
	{
		char log[128];
		const char *argv[] = { FABNODE, "serve", "--name", "b", "--controller",
				       cl.addr, "--pki", cl.pki,   NULL };

		fab_pki_paths(cl.pki, FAB_ROLE_NODE, "a", ncrt, nkey, sizeof(ncrt));
		fab_pki_paths(cl.pki, FAB_ROLE_NODE, "b", crt, key, sizeof(crt));
		snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", ncrt, crt, nkey, key);
		assert_int_equal(system(cmd), 0);
		snprintf(log, sizeof(log), "%s/node-b.log", cl.dir);
		th_spawn(log, NULL, argv);
		assert_true(log_has(log, "differs from its certificate", 10000));
		assert_true(log_has(cl.ctl_log, "registration refused", 5000));
		assert_false(wait_node("b", "up", 0));
	}
	cl.ok = 1;
}

/* Sends raw bytes over an authenticated node connection, then waits for the
 * controller to close it. Returns 1 if it closed. */
static int send_raw(const void *bytes, size_t len)
{
	char crt[256], key[256], ca[256], buf[64], *colon;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int fd = socket(AF_INET, SOCK_STREAM, 0), closed = 0;
	SSL *ssl;

	snprintf(ca, sizeof(ca), "%s/ca.crt", cl.pki);
	fab_pki_paths(cl.pki, FAB_ROLE_NODE, "a", crt, key, sizeof(crt));
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	assert_int_equal(SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
	snprintf(buf, sizeof(buf), "%s", cl.addr);
	colon = strrchr(buf, ':');
	*colon = '\0';
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	inet_pton(AF_INET, buf, &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	assert_int_equal(SSL_write(ssl, bytes, (int)len), (int)len);
	{
		struct timeval tv = { .tv_sec = 5 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		/* The controller closes: read returns 0 or an error, not a
		 * timeout. */
		closed = SSL_read(ssl, buf, sizeof(buf)) <= 0 && errno != EAGAIN;
	}
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return closed;
}

static void test_bad_frames_live(void **state)
{
	uint8_t hdr[FAB_FRAME_HDR_LEN + 4];

	start_controller("127.0.0.1:0");
	start_node("a", NULL, cl.addr);
	start_node("b", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	assert_true(wait_node("b", "up", 10000));

	assert_true(send_raw("\x00\x01garbage garbage", 16));
	fab_frame_hdr_encode(hdr, FAB_FRAME_DEFAULT_MAX + 1);
	assert_true(send_raw(hdr, FAB_FRAME_HDR_LEN));
	/* A well-formed frame holding bytes that are not a message. */
	fab_frame_hdr_encode(hdr, 4);
	memcpy(hdr + FAB_FRAME_HDR_LEN, "\xff\xff\xff\xff", 4);
	assert_true(send_raw(hdr, sizeof(hdr)));

	assert_true(log_has(cl.ctl_log, "garbage (bad frame header)", 5000));
	assert_true(log_has(cl.ctl_log, "oversized", 5000));
	assert_true(log_has(cl.ctl_log, "undecodable message", 5000));
	/* Nothing else noticed: both nodes stay up on their connections. */
	sleep(2);
	assert_true(wait_node("a", "up", 0));
	assert_true(wait_node("b", "up", 0));
	assert_false(th_file_has(cl.ctl_log, "generation 2"));
	cl.ok = 1;
}

/* Two fabnode processes under one name: the live one keeps it, the other
 * is refused with a reason, and they do not evict each other. */
static void test_duplicate_node_refused(void **state)
{
	char log2[128];
	const char *argv[] = { FABNODE, "serve", "--name", "a", "--controller",
			       cl.addr, "--pki", cl.pki,   NULL };

	start_controller("127.0.0.1:0");
	start_node("a", NULL, cl.addr);
	assert_true(wait_node("a", "up", 10000));
	snprintf(log2, sizeof(log2), "%s/node-a2.log", cl.dir);
	th_spawn(log2, NULL, argv);
	assert_true(log_has(log2, "is in use by a live fabnode", 10000));
	sleep(2);
	assert_true(wait_node("a", "up", 0));
	/* Still the first registration: nobody was evicted. */
	assert_false(th_file_has(cl.ctl_log, "generation 2"));
	assert_false(th_file_has(cl.ctl_log, "replaces"));
	cl.ok = 1;
}

/* A controller out of file descriptors keeps serving and does not spin. */
static void test_fd_exhaustion(void **state)
{
	char lim[600];
	const char *argv[] = { "/bin/sh", "-c", lim, NULL };
	int fds[64], nfd = 0, lines = 0;
	char *log, *p;

	snprintf(lim, sizeof(lim),
		 "ulimit -n 40 && exec %s --listen 127.0.0.1:0 --db %s --pki %s --lease-ms %s "
		 "--addr-file %s",
		 FABCTLD, cl.db, cl.pki, LEASE_MS, cl.addr_file);
	cl.ctl = th_spawn(cl.ctl_log, NULL, argv);
	assert_true(th_wait(have_addr, NULL, 10000));
	/* Plain TCP connections that never handshake, past the fd limit. */
	for (nfd = 0; nfd < 64; nfd++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		char host[64], *colon;

		snprintf(host, sizeof(host), "%s", cl.addr);
		colon = strrchr(host, ':');
		*colon = '\0';
		sin.sin_port = htons((uint16_t)atoi(colon + 1));
		inet_pton(AF_INET, host, &sin.sin_addr);
		fds[nfd] = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fds[nfd], (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	sleep(1);
	/* Past its connection budget (derived from the fd limit) it refuses
	 * connections one log line each; it never spins on the listener. */
	log = th_slurp(cl.ctl_log);
	for (p = log; (p = strchr(p, '\n')); p++)
		lines++;
	assert_non_null(strstr(log, "connections already"));
	free(log);
	assert_true(lines < 100);
	for (int i = 0; i < nfd; i++)
		close(fds[i]);
	/* Once the sockets are gone it serves again. */
	start_node("a", NULL, cl.addr);
	assert_true(wait_node("a", "up", 15000));
	cl.ok = 1;
}

/* fabnode serve --config: the file names the node and its controller; a
 * file with a mistake stops it with the file and line. */
static void test_node_config_file(void **state)
{
	char conf[160], bad[160], log[160], text[600];
	const char *argv[] = { FABNODE, "serve", "--config", conf, NULL };
	const char *bargv[] = { FABNODE, "serve", "--config", bad, NULL };
	FILE *f;

	start_controller("127.0.0.1:0");
	snprintf(conf, sizeof(conf), "%s/b.conf", cl.dir);
	snprintf(text, sizeof(text),
		 "# node b\nname = b\ncontroller = %s\npki = %s\nmemory = 2G\n"
		 "data_listen = 127.0.0.1:0\n"
		 "[export disk0]\npath = /tmp/disk0.img\n",
		 cl.addr, cl.pki);
	f = fopen(conf, "w");
	fputs(text, f);
	fclose(f);
	snprintf(log, sizeof(log), "%s/node-b.log", cl.dir);
	th_spawn(log, NULL, argv);
	assert_true(wait_node("b", "up", 10000));
	{
		char *out = NULL;

		assert_int_equal(node_list("admin", &out, NULL), 0);
		assert_non_null(strstr(out, "\"memory_bytes\": 2147483648"));
		free(out);
	}
	snprintf(bad, sizeof(bad), "%s/bad.conf", cl.dir);
	f = fopen(bad, "w");
	fputs("name = c\n[export d]\npath = /x\nread_only = perhaps\n", f);
	fclose(f);
	snprintf(log, sizeof(log), "%s/bad.err", cl.dir);
	assert_int_equal(th_run(NULL, log, NULL, bargv, 30), 2);
	assert_true(th_file_has(log, "bad.conf:4: read_only"));
	cl.ok = 1;
}

static void test_netns_cluster(void **state)
{
	char prefix[64], why[256], hub[80], n1[80], n2[80];

	if (th_netns_create("it", 2, prefix, sizeof(prefix), why, sizeof(why))) {
		fprintf(stderr, "SKIP test_netns_cluster: %s\n", why);
		skip();
	}
	snprintf(hub, sizeof(hub), "%s-hub", prefix);
	snprintf(n1, sizeof(n1), "%s-n1", prefix);
	snprintf(n2, sizeof(n2), "%s-n2", prefix);
	cl.netns = hub;
	start_controller("10.77.0.1:7700");
	assert_string_equal(cl.addr, "10.77.0.1:7700");
	start_node("a", n1, "10.77.0.1:7700");
	start_node("b", n2, "10.77.0.1:7700");
	assert_true(wait_node("a", "up", 15000));
	assert_true(wait_node("b", "up", 15000));
	{
		char *out = NULL;

		assert_int_equal(node_list("admin", &out, NULL), 0);
		/* Each node reached the controller from its own namespace. */
		assert_non_null(strstr(out, "\"peer_addr\": \"10.77.0.11:"));
		assert_non_null(strstr(out, "\"peer_addr\": \"10.77.0.12:"));
		free(out);
	}
	cl.ok = 1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registration_survives_sigkill, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lease_sigstop_sigcont, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_reconnects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_enforced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_frames_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_node_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_exhaustion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_config_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_netns_cluster, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
