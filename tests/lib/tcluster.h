/* SPDX-License-Identifier: MIT */
/*
 * A whole cluster for tests and benchmarks that drive it as an operator
 * would: fabctld in the hub namespace and fabnode processes in one
 * namespace each (scripts/fabnet.sh: hub 10.77.0.1, node i at
 * 10.77.0.(11+i)), a fresh PKI, and fabctl run in the hub namespace.
 * One cluster per process; everything is torn down by tc_stop() (or by
 * th_cleanup() at exit). Nothing here asserts: callers check the results,
 * so cmocka tests and benchmarks both use it.
 */
#ifndef FAB_TEST_TCLUSTER_H
#define FAB_TEST_TCLUSTER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TC_MAX_NODES 4
#define TC_CTL_ADDR  "10.77.0.1:7700"

struct tc_node {
	const char *name;
	int vcpus;	  /* 0: a storage-only node */
	bool data_listen; /* serve the data plane on <address>:7800 */
};

struct tc_cfg {
	const char *tag;     /* namespace prefix tag ("ctl") */
	const char *fabctld; /* binaries */
	const char *fabctl;
	const char *fabnode;
	const char *images;  /* the nodes' image_dir */
	const char *lease_ms; /* NULL: fabctld's default */
	const struct tc_node *nodes;
	int nnodes;
};

struct tcluster {
	struct tc_cfg cfg;
	char dir[64], pki[128], prefix[64], ns_hub[96];
	char ns_node[TC_MAX_NODES][96];
	char addr[TC_MAX_NODES][24];
	pid_t ctld_pid, node_pid[TC_MAX_NODES];
};

extern struct tcluster tc;

/*
 * Namespaces, PKI, the controller and every node; waits until all nodes
 * are up. Returns 0; 77 when this machine cannot run it (not root, no
 * iproute2: why says so); -1 on a failure (why says what; logs are in
 * tc.dir).
 */
int tc_start(const struct tc_cfg *cfg, char *why, size_t whylen);

/* (Re)starts the controller; crash_at sets FABCTLD_TEST_CRASH_AT for it. */
pid_t tc_start_ctld(const char *crash_at);
/* (Re)starts node i with its configuration. */
pid_t tc_start_node(int i);
/* Index of a node by name, or -1. */
int tc_node_index(const char *name);

/* Runs fabctl (arguments NULL-terminated) in the hub namespace with the
 * admin certificate; *out and *err (if not NULL) get its stdout and
 * stderr (heap, may be NULL). Returns its exit status. */
int tc_fabctl(char **out, char **err, const char *first, ...) __attribute__((sentinel));
int tc_fabctlv(char **out, char **err, const char *const *args, int timeout_s);

/* fabctl that is expected to succeed, arguments NULL-terminated after
 * first: on a failure it prints the command, its output and every process
 * log. Returns the exit status; *out gets its stdout. */
int tc_fabctl_expectv(char **out, int timeout_s, const char *first, va_list ap);

/* The value of "key": (string or number) at its first occurrence in
 * JSON text, copied into out. Returns 0 or -1. */
int tc_json_get(const char *json, const char *key, char *out, size_t len);

/* Waits until want nodes are up. Returns 1, or 0 after ms. */
int tc_wait_nodes_up(int want, int ms);

/* Waits until partition name is in state (and its console holds console,
 * and it is not on node not_node, when those are not NULL). Returns 1, or
 * 0 after ms having printed the partition, its console and every log. */
int tc_wait_part(const char *name, const char *state, const char *console, const char *not_node,
		 int ms);

/* The node partition name is placed on (into node), or -1. */
int tc_part_node(const char *name, char *node, size_t len);

/* Prints a file, and every process log of the cluster, on stderr. */
void tc_dump(const char *path);
void tc_dump_all(void);

/* 1 when no process log holds a sanitizer report (those that do are
 * printed). */
int tc_logs_clean(void);

/* Stops every process, removes the namespaces and the directory. */
void tc_stop(void);

/* A test group's end: stops every process, checks the logs for sanitizer
 * reports (tc_logs_clean), then tc_stop(). Returns 0, or -1 when a log had
 * one. */
int tc_teardown(void);

#endif
