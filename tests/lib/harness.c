// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef FAB_SOURCE_DIR
#error FAB_SOURCE_DIR must be defined by the build
#endif

#define MAX_TRACKED 64

static pid_t pids[MAX_TRACKED];
static char *dirs[MAX_TRACKED];
static char *nets[MAX_TRACKED];
static int npids, ndirs, nnets, installed;

static void on_signal(int sig)
{
	th_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install(void)
{
	if (installed)
		return;
	installed = 1;
	atexit(th_cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
}

void th_text_init(struct th_text *t)
{
	pthread_mutex_init(&t->lock, NULL);
	t->len = 0;
	t->buf[0] = '\0';
}

void th_text_fini(struct th_text *t)
{
	pthread_mutex_destroy(&t->lock);
}

void th_text_append(struct th_text *t, const char *b, size_t n)
{
	pthread_mutex_lock(&t->lock);
	if (n > sizeof(t->buf) - 1 - t->len)
		n = sizeof(t->buf) - 1 - t->len;
	memcpy(t->buf + t->len, b, n);
	t->len += n;
	t->buf[t->len] = '\0';
	pthread_mutex_unlock(&t->lock);
}

int th_text_has(struct th_text *t, const char *needle)
{
	int found;

	pthread_mutex_lock(&t->lock);
	found = strstr(t->buf, needle) != NULL;
	pthread_mutex_unlock(&t->lock);
	return found;
}

const char *th_script(const char *name)
{
	static char path[4][512];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, 512, "%s/scripts/%s", FAB_SOURCE_DIR, name);
	return p;
}

void th_tmpdir(char *out, size_t len)
{
	install();
	snprintf(out, len, "/tmp/fabtest-XXXXXX");
	if (!mkdtemp(out)) {
		perror("mkdtemp");
		exit(1);
	}
	if (ndirs < MAX_TRACKED)
		dirs[ndirs++] = strdup(out);
}

static pid_t spawn(const char *out, const char *err, const char *netns, const char *const argv[])
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		int o = out ? open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
			    : open("/dev/null", O_WRONLY);
		int e = err ? open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
			    : open("/dev/null", O_WRONLY);

		/* Own process group so a stuck child can be killed with its
		 * descendants; no stdin. */
		setpgid(0, 0);
		dup2(o, 1);
		dup2(e, 2);
		close(0);
		open("/dev/null", O_RDONLY);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (netns) {
			const char *nargv[64] = { "ip", "netns", "exec", netns };
			int i;

			for (i = 0; argv[i] && i < 59; i++)
				nargv[4 + i] = argv[i];
			nargv[4 + i] = NULL;
			execvp("ip", (char *const *)nargv);
		} else {
			execv(argv[0], (char *const *)argv);
		}
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

pid_t th_spawn(const char *log, const char *netns, const char *const argv[])
{
	pid_t pid;

	install();
	pid = spawn(log, log, netns, argv);
	if (npids < MAX_TRACKED)
		pids[npids++] = pid;
	return pid;
}

static int wait_status(pid_t pid, int timeout_ms)
{
	int st;

	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -1;
		if (waited >= timeout_ms)
			return -2;
		usleep(10000);
	}
}

int th_run(const char *out, const char *err, const char *netns, const char *const argv[],
	   int timeout_s)
{
	pid_t pid;
	int rc;

	install();
	if (out)
		unlink(out);
	if (err)
		unlink(err);
	pid = spawn(out, err, netns, argv);
	rc = wait_status(pid, timeout_s * 1000);
	if (rc == -2) {
		fprintf(stderr, "harness: %s did not finish in %d s; killed\n", argv[0], timeout_s);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		rc = wait_status(pid, 5000);
	}
	return rc;
}

void th_signal(pid_t pid, int sig)
{
	kill(pid, sig);
}

int th_stop(pid_t pid)
{
	int rc;

	kill(pid, SIGCONT);
	kill(pid, SIGTERM);
	rc = wait_status(pid, 5000);
	if (rc == -2) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		rc = wait_status(pid, 5000);
	}
	for (int i = 0; i < npids; i++)
		if (pids[i] == pid)
			pids[i] = 0;
	return rc;
}

int th_wait_exit(pid_t pid, int timeout_s)
{
	int rc = wait_status(pid, timeout_s * 1000);

	if (rc == -2) {
		fprintf(stderr, "harness: pid %d did not finish in %d s; killed\n", (int)pid,
			timeout_s);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		rc = wait_status(pid, 5000);
	}
	for (int i = 0; i < npids; i++)
		if (pids[i] == pid)
			pids[i] = 0;
	return rc;
}

char *th_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf) {
		n = (long)fread(buf, 1, (size_t)n, f);
		buf[n] = '\0';
	}
	fclose(f);
	return buf;
}

uint8_t *th_load(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f) {
		fprintf(stderr, "harness: cannot open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc(n ? (size_t)n : 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	if (!buf) {
		/* A test cannot go on without its input: say which, loudly. */
		fprintf(stderr, "harness: cannot read %s\n", path);
		exit(1);
	}
	return buf;
}

int th_kvm_missing(const char *what)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "SKIP: /dev/kvm cannot be opened (%s): %s need KVM\n",
			strerror(errno), what);
		return 1;
	}
	close(fd);
	return 0;
}

int th_wait(int (*pred)(void *arg), void *arg, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		if (pred(arg))
			return 1;
		usleep(50000);
	}
	return pred(arg);
}

int th_file_has(const char *path, const char *needle)
{
	char *s = th_slurp(path);
	int found = s && strstr(s, needle);

	free(s);
	return found;
}

int th_netns_create(const char *tag, int nodes, char *prefix, size_t len, char *why, size_t whylen)
{
	const char *sweep[] = { "/bin/sh", th_script("fabnet.sh"), "sweep", NULL };
	char n[8], errf[64];
	int rc;

	install();
	if (geteuid() != 0) {
		snprintf(why, whylen, "network namespaces need root (euid %d)", (int)geteuid());
		return -1;
	}
	/* Remove what a killed earlier run left behind. */
	th_run(NULL, NULL, NULL, sweep, 30);
	snprintf(prefix, len, "fab-%s-%d-%ld", tag, (int)getpid(), (long)time(NULL) % 100000);
	snprintf(n, sizeof(n), "%d", nodes);
	snprintf(errf, sizeof(errf), "/tmp/fabnet-%d.err", (int)getpid());
	{
		const char *argv[] = {
			"/bin/sh", th_script("fabnet.sh"), "create", prefix, n, NULL
		};

		rc = th_run(NULL, errf, NULL, argv, 60);
	}
	if (rc != 0) {
		char *e = th_slurp(errf);

		snprintf(why, whylen, "cannot create network namespaces: %s",
			 e && *e ? e : "fabnet.sh failed");
		free(e);
		unlink(errf);
		return -1;
	}
	unlink(errf);
	if (nnets < MAX_TRACKED)
		nets[nnets++] = strdup(prefix);
	return 0;
}

void th_cleanup_processes(void)
{
	/* SIGTERM first so daemons exit through their own shutdown path (and
	 * sanitizers get to report leaks); SIGKILL what is left. */
	for (int i = 0; i < npids; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGCONT);
			kill(pids[i], SIGTERM);
		}
	}
	for (int i = 0; i < npids; i++) {
		if (pids[i] > 0 && wait_status(pids[i], 5000) == -2) {
			kill(pids[i], SIGKILL);
			kill(-pids[i], SIGKILL);
			wait_status(pids[i], 2000);
		}
		pids[i] = 0;
	}
	npids = 0;
}

void th_cleanup(void)
{
	th_cleanup_processes();
	for (int i = 0; i < nnets; i++) {
		const char *argv[] = { "/bin/sh", th_script("fabnet.sh"), "destroy", nets[i],
				       NULL };

		th_run(NULL, NULL, NULL, argv, 30);
		free(nets[i]);
	}
	nnets = 0;
	for (int i = 0; i < ndirs; i++) {
		const char *argv[] = { "/bin/rm", "-rf", dirs[i], NULL };

		if (!getenv("FAB_KEEP_TMP"))
			th_run(NULL, NULL, NULL, argv, 30);
		else
			fprintf(stderr, "harness: kept %s\n", dirs[i]);
		free(dirs[i]);
	}
	ndirs = 0;
}
