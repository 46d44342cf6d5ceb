// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fab/log.h"

static const char *log_prog = "fab";
static enum fab_log_level log_max = FAB_LOG_INFO;

static const char *const level_names[] = {
	[FAB_LOG_ERR] = "error",
	[FAB_LOG_WARN] = "warn",
	[FAB_LOG_INFO] = "info",
	[FAB_LOG_DEBUG] = "debug",
};

void fab_log_init(const char *prog, enum fab_log_level max_level)
{
	if (prog)
		log_prog = prog;
	log_max = max_level;
}

int fab_log_level_parse(const char *s, enum fab_log_level *out)
{
	static const char *const alias[] = { "err", "warn", "info", "debug" };

	for (int i = 0; i <= FAB_LOG_DEBUG; i++) {
		if (!strcmp(s, alias[i]) || !strcmp(s, level_names[i])) {
			*out = (enum fab_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void fab_log(enum fab_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, saved = errno;

	if (level > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s[%d] %s: ", tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, log_prog, (int)getpid(), level_names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines of concurrent threads never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nothing sensible to do when stderr is gone */
	}
	errno = saved;
}
