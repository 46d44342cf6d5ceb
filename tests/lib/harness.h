/* SPDX-License-Identifier: MIT */
/*
 * Integration-test harness: temporary directories, child processes with
 * their output in log files, waiting for conditions, and network namespaces
 * (scripts/fabnet.sh). Everything a test starts is torn down by
 * th_cleanup(), which also runs at exit and on SIGINT/SIGTERM.
 */
#ifndef FAB_TEST_HARNESS_H
#define FAB_TEST_HARNESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Text collected from several threads (e.g. a partition's console),
 * always NUL-terminated, truncated at the buffer's size. */
struct th_text {
	pthread_mutex_t lock;
	char buf[32768];
	size_t len;
};
void th_text_init(struct th_text *t);
void th_text_fini(struct th_text *t);
void th_text_append(struct th_text *t, const char *b, size_t n);
int th_text_has(struct th_text *t, const char *needle);

/* Creates a fresh directory under /tmp; removed by th_cleanup(). */
void th_tmpdir(char *out, size_t len);

/* Starts argv (NULL-terminated) with stdout and stderr appended to log,
 * inside network namespace netns if not NULL. Returns the pid. */
pid_t th_spawn(const char *log, const char *netns, const char *const argv[]);

/* Runs argv to completion (killed after timeout_s), stdout to out and
 * stderr to err (either may be NULL: discarded). Returns the exit status,
 * or 128+signal. */
int th_run(const char *out, const char *err, const char *netns, const char *const argv[],
	   int timeout_s);

/* Sends sig to pid; th_stop() sends SIGTERM and waits (SIGKILL after 5 s). */
void th_signal(pid_t pid, int sig);
int th_stop(pid_t pid);
/* Waits for a th_spawn()ed process to exit by itself (SIGKILL after
 * timeout_s). Returns its exit status, or 128+signal. */
int th_wait_exit(pid_t pid, int timeout_s);

/* Reads a whole file into a NUL-terminated heap buffer (NULL if missing). */
char *th_slurp(const char *path);

/* Reads a whole binary file; *len gets its size. Exits the test program
 * with a message if it cannot (an input a test needs is missing). */
uint8_t *th_load(const char *path, size_t *len);

/* 1 (after a loud "SKIP: ..." line naming what) if /dev/kvm cannot be
 * opened, else 0. */
int th_kvm_missing(const char *what);

/* Polls every 50 ms until pred(arg) is true or timeout_ms pass.
 * Returns 1 if it became true. */
int th_wait(int (*pred)(void *arg), void *arg, int timeout_ms);

/* 1 if the file contains needle. */
int th_file_has(const char *path, const char *needle);

/* Network namespaces: returns 0, or -1 with a reason in why when they
 * cannot be made here (not root, no iproute2). Names: "<prefix>-hub",
 * "<prefix>-n1".."<prefix>-nN"; hub address 10.77.0.1, node i 10.77.0.(10+i). */
int th_netns_create(const char *tag, int nodes, char *prefix, size_t len, char *why, size_t whylen);

/* Stops every process started here (SIGTERM, SIGKILL after 5 s). */
void th_cleanup_processes(void);
/* th_cleanup_processes(), then removes namespaces and temp dirs. */
void th_cleanup(void);

/* Path of a script in the source tree's scripts/ directory. */
const char *th_script(const char *name);

#endif
