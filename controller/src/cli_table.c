// SPDX-License-Identifier: MIT
/*
 * fabctl's human output: aligned tables, "key: value" blocks, sizes and
 * times. Text from the controller is shown with its control characters
 * replaced, so a name or a reason cannot move the cursor or recolour the
 * operator's terminal.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fab/util.h"
#include "cli.h"

char *cli_safe(const char *s, char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (!len)
		return buf;
	for (; *p && o + 1 < len; p++) {
		/* C0 controls and DEL; C1 controls as UTF-8 (C2 80..9F),
		 * which some terminals obey like ESC sequences. */
		if (*p < 0x20 || *p == 0x7f) {
			buf[o++] = '?';
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			buf[o++] = '?';
			p++;
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* ---- tables ---------------------------------------------------------------- */

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *heads)
{
	memset(t, 0, sizeof(*t));
	if (ncols > CLI_TABLE_COLS)
		ncols = CLI_TABLE_COLS;
	t->ncols = ncols;
	for (size_t i = 0; i < ncols; i++) {
		if (heads[i][0] == '>') {
			t->right |= 1u << i;
			t->head[i] = heads[i] + 1;
		} else {
			t->head[i] = heads[i];
		}
	}
}

void cli_table_cell(struct cli_table *t, const char *fmt, ...)
{
	char raw[512], safe[512];
	va_list ap;

	if (t->ncells == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **cells = realloc(t->cells, cap * sizeof(*cells));

		if (!cells)
			return; /* the cell goes missing; the row prints short */
		t->cells = cells;
		t->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	cli_safe(raw, safe, sizeof(safe));
	t->cells[t->ncells++] = strdup(safe[0] ? safe : "-");
}

static void print_cell(FILE *f, const char *s, size_t width, int right, int last)
{
	size_t len = strlen(s);
	size_t pad = width > len ? width - len : 0;

	if (right)
		fprintf(f, "%*s%s", (int)pad, "", s);
	else if (last)
		fputs(s, f); /* no trailing blanks */
	else
		fprintf(f, "%s%*s", s, (int)pad, "");
}

void cli_table_print(const struct cli_table *t, FILE *f)
{
	size_t width[CLI_TABLE_COLS] = { 0 };

	for (size_t c = 0; c < t->ncols; c++)
		width[c] = strlen(t->head[c]);
	for (size_t i = 0; i < t->ncells; i++) {
		size_t c = i % t->ncols;
		size_t len = t->cells[i] ? strlen(t->cells[i]) : 1;

		if (len > width[c])
			width[c] = len;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		print_cell(f, t->head[c], width[c], t->right >> c & 1, c + 1 == t->ncols);
		fputs(c + 1 == t->ncols ? "\n" : "  ", f);
	}
	for (size_t i = 0; i < t->ncells; i++) {
		size_t c = i % t->ncols;
		int last = c + 1 == t->ncols || i + 1 == t->ncells;

		print_cell(f, t->cells[i] ? t->cells[i] : "?", width[c], t->right >> c & 1, last);
		fputs(last ? "\n" : "  ", f);
	}
}

void cli_table_fini(struct cli_table *t)
{
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

void cli_kv(const char *key, const char *fmt, ...)
{
	char raw[1024], safe[1024], k[40];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	snprintf(k, sizeof(k), "%s:", key);
	printf("%-14s %s\n", k, cli_safe(raw[0] ? raw : "-", safe, sizeof(safe)));
}

/* ---- formatting ---------------------------------------------------------------- */

char *cli_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	char *dot;

	fab_fmt_size(bytes, buf, len);
	/* "64.0MiB" reads better as "64MiB" */
	dot = strstr(buf, ".0");
	if (dot && dot[2] >= 'A' && dot[2] <= 'Z')
		memmove(dot, dot + 2, strlen(dot + 2) + 1);
	return buf;
}

char *cli_fmt_ago(int64_t unix_ms, char *buf, size_t len)
{
	char age[32];

	if (unix_ms <= 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	fab_fmt_age(fab_unix_ms() - unix_ms, age, sizeof(age));
	snprintf(buf, len, "%s ago", age);
	return buf;
}

char *cli_fmt_time(int64_t unix_ms, char *buf, size_t len)
{
	time_t t = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (unix_ms <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
	return buf;
}

char *cli_fmt_when(int64_t unix_ms, char *buf, size_t len)
{
	char t[40], ago[40];

	if (unix_ms <= 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%s (%s)", cli_fmt_time(unix_ms, t, sizeof(t)),
			 cli_fmt_ago(unix_ms, ago, sizeof(ago)));
	return buf;
}

char *cli_join(char *const *v, size_t n, const char *sep, char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	if (!n) {
		snprintf(buf, len, "-");
		return buf;
	}
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + off, len - off, "%s%s", i ? sep : "", v[i]);

		if (w < 0 || (size_t)w >= len - off) {
			/* Mark the cut where it shows. */
			if (len > 4)
				memcpy(buf + len - 4, "...", 4);
			break;
		}
		off += (size_t)w;
	}
	return buf;
}
