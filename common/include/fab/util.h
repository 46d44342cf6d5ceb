/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the daemons and tools. */
#ifndef FAB_UTIL_H
#define FAB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define FAB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Milliseconds of CLOCK_MONOTONIC / CLOCK_REALTIME. */
int64_t fab_mono_ms(void);
int64_t fab_unix_ms(void);

/* Parses a size with an optional binary suffix: "4096", "64K", "64M", "2G",
 * "1T" (also "64MiB"). Returns 0 or -EINVAL (empty, junk, overflow). */
int fab_parse_size(const char *s, uint64_t *out);

/* Parses a decimal unsigned integer in [min, max]. Returns 0 or -EINVAL. */
int fab_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);

/* Formats bytes as "512B", "64.0MiB", "23.4GiB". Returns buf. */
char *fab_fmt_size(uint64_t bytes, char *buf, size_t len);

/* Formats a duration in ms as "0.4s", "12s", "5m03s", "2h10m", "3d4h". */
char *fab_fmt_age(int64_t ms, char *buf, size_t len);

#endif
