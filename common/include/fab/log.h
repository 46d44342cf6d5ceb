/* SPDX-License-Identifier: MIT */
/*
 * Logging for daemons and tools: one line per event on stderr,
 * "<time> <prog>[<pid>] <level>: <message>". Thread safe (one write(2) per
 * line). Log an error once, where it is decided what to do about it.
 */
#ifndef FAB_LOG_H
#define FAB_LOG_H

enum fab_log_level {
	FAB_LOG_ERR = 0,
	FAB_LOG_WARN = 1,
	FAB_LOG_INFO = 2,
	FAB_LOG_DEBUG = 3,
};

/* Sets the program name and the most verbose level printed. Not thread safe:
 * call once from main() before other threads exist. */
void fab_log_init(const char *prog, enum fab_log_level max_level);

/* Parses "err", "warn", "info", "debug". Returns 0 or -EINVAL. */
int fab_log_level_parse(const char *s, enum fab_log_level *out);

void fab_log(enum fab_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fab_err(...)   fab_log(FAB_LOG_ERR, __VA_ARGS__)
#define fab_warn(...)  fab_log(FAB_LOG_WARN, __VA_ARGS__)
#define fab_info(...)  fab_log(FAB_LOG_INFO, __VA_ARGS__)
#define fab_debug(...) fab_log(FAB_LOG_DEBUG, __VA_ARGS__)

#endif
