// SPDX-License-Identifier: MIT
/*
 * printf family. One formatter writes into a sink: a caller's buffer
 * (snprintf: excess is counted, not stored) or a stack buffer that is flushed
 * to the console whenever it fills (printf). No global state, so every vCPU
 * can print at once.
 */
#include <limits.h>
#include <stdbool.h>

#include "guest_int.h"

struct sink {
	char *buf;
	size_t cap;   /* characters buf can hold (a NUL is extra for snprintf) */
	size_t len;   /* characters in buf */
	size_t total; /* characters produced so far */
	bool console; /* flush to the console when full, instead of dropping */
};

static void sink_flush(struct sink *s)
{
	if (s->console && s->len) {
		fab_console_write(s->buf, s->len);
		s->len = 0;
	}
}

static void sink_put(struct sink *s, char c)
{
	s->total++;
	if (s->len == s->cap) {
		if (!s->console)
			return;
		sink_flush(s);
	}
	s->buf[s->len++] = c;
}

static void sink_repeat(struct sink *s, char c, size_t n)
{
	while (n--)
		sink_put(s, c);
}

static void sink_write(struct sink *s, const char *p, size_t n)
{
	while (n--)
		sink_put(s, *p++);
}

#define F_MINUS 0x01
#define F_ZERO	0x02
#define F_PLUS	0x04
#define F_SPACE 0x08
#define F_ALT	0x10

struct spec {
	unsigned int flags;
	size_t width;
	long prec; /* -1: none */
};

/* [spaces] [sign] [0x] [zeros] digits [spaces] */
static void put_int(struct sink *s, const struct spec *sp, uint64_t v, bool neg, unsigned int base,
		    bool upper, bool ptr)
{
	const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char digits[24], prefix[3];
	size_t nd = 0, np = 0, zeros = 0, body, pad;
	bool alt = ptr || ((sp->flags & F_ALT) && base == 16 && v != 0);

	for (uint64_t x = v; x; x /= base)
		digits[nd++] = set[x % base];
	if (nd == 0 && sp->prec != 0)
		digits[nd++] = '0'; /* a precision of 0 prints nothing for 0 */

	if (neg)
		prefix[np++] = '-';
	else if (sp->flags & F_PLUS)
		prefix[np++] = '+';
	else if (sp->flags & F_SPACE)
		prefix[np++] = ' ';
	if (alt) {
		prefix[np++] = '0';
		prefix[np++] = upper ? 'X' : 'x';
	}

	if (sp->prec > 0 && (size_t)sp->prec > nd)
		zeros = (size_t)sp->prec - nd;
	body = np + zeros + nd;
	pad = sp->width > body ? sp->width - body : 0;
	if (!(sp->flags & F_MINUS)) {
		if ((sp->flags & F_ZERO) && sp->prec < 0)
			zeros += pad;
		else
			sink_repeat(s, ' ', pad);
		pad = 0;
	}
	sink_write(s, prefix, np);
	sink_repeat(s, '0', zeros);
	while (nd)
		sink_put(s, digits[--nd]);
	sink_repeat(s, ' ', pad);
}

static void put_str(struct sink *s, const struct spec *sp, const char *str)
{
	size_t n = 0, pad;

	if (!str)
		str = "(null)";
	while (str[n] && (sp->prec < 0 || n < (size_t)sp->prec))
		n++;
	pad = sp->width > n ? sp->width - n : 0;
	if (!(sp->flags & F_MINUS))
		sink_repeat(s, ' ', pad);
	sink_write(s, str, n);
	if (sp->flags & F_MINUS)
		sink_repeat(s, ' ', pad);
}

/* Length modifiers, folded to the width of the argument that va_arg reads. */
enum len_mod { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE };

static void format(struct sink *s, const char *fmt, va_list ap)
{
	while (*fmt) {
		struct spec sp = { .flags = 0, .width = 0, .prec = -1 };
		enum len_mod len = LEN_INT;
		const char *start = fmt;
		uint64_t u;
		int64_t d;
		char c;

		if (*fmt != '%') {
			sink_put(s, *fmt++);
			continue;
		}
		fmt++;

		for (;; fmt++) {
			if (*fmt == '-')
				sp.flags |= F_MINUS;
			else if (*fmt == '0')
				sp.flags |= F_ZERO;
			else if (*fmt == '+')
				sp.flags |= F_PLUS;
			else if (*fmt == ' ')
				sp.flags |= F_SPACE;
			else if (*fmt == '#')
				sp.flags |= F_ALT;
			else
				break;
		}
		if (*fmt == '*') {
			int w = va_arg(ap, int);

			fmt++;
			if (w < 0) {
				sp.flags |= F_MINUS;
				w = w == INT_MIN ? INT_MAX : -w;
			}
			sp.width = (size_t)w;
		} else {
			for (; *fmt >= '0' && *fmt <= '9'; fmt++)
				if (sp.width < INT_MAX / 10)
					sp.width = sp.width * 10 + (size_t)(*fmt - '0');
		}
		if (*fmt == '.') {
			fmt++;
			sp.prec = 0;
			if (*fmt == '*') {
				int p = va_arg(ap, int);

				fmt++;
				sp.prec = p < 0 ? -1 : p;
			} else {
				for (; *fmt >= '0' && *fmt <= '9'; fmt++)
					if (sp.prec < INT_MAX / 10)
						sp.prec = sp.prec * 10 + (*fmt - '0');
			}
		}
		switch (*fmt) {
		case 'h':
			len = fmt[1] == 'h' ? LEN_CHAR : LEN_SHORT;
			fmt += len == LEN_CHAR ? 2 : 1;
			break;
		case 'l':
			len = fmt[1] == 'l' ? LEN_LLONG : LEN_LONG;
			fmt += len == LEN_LLONG ? 2 : 1;
			break;
		case 'z':
			len = LEN_SIZE;
			fmt++;
			break;
		default:
			break;
		}

		switch (c = *fmt) {
		case 'd':
		case 'i':
			switch (len) {
			case LEN_LONG:
			case LEN_SIZE: /* ssize_t is long here */
				d = va_arg(ap, long);
				break;
			case LEN_LLONG:
				d = va_arg(ap, long long);
				break;
			case LEN_CHAR:
				d = (signed char)va_arg(ap, int);
				break;
			case LEN_SHORT:
				d = (short)va_arg(ap, int);
				break;
			default:
				d = va_arg(ap, int);
				break;
			}
			/* -INT64_MIN overflows; its magnitude is the same bits. */
			u = d < 0 ? 0 - (uint64_t)d : (uint64_t)d;
			put_int(s, &sp, u, d < 0, 10, false, false);
			break;
		case 'u':
		case 'x':
		case 'X':
			switch (len) {
			case LEN_LONG:
				u = va_arg(ap, unsigned long);
				break;
			case LEN_LLONG:
				u = va_arg(ap, unsigned long long);
				break;
			case LEN_SIZE:
				u = va_arg(ap, size_t);
				break;
			case LEN_CHAR:
				u = (unsigned char)va_arg(ap, unsigned int);
				break;
			case LEN_SHORT:
				u = (unsigned short)va_arg(ap, unsigned int);
				break;
			default:
				u = va_arg(ap, unsigned int);
				break;
			}
			put_int(s, &sp, u, false, c == 'u' ? 10 : 16, c == 'X', false);
			break;
		case 'p':
			put_int(s, &sp, (uintptr_t)va_arg(ap, void *), false, 16, false, true);
			break;
		case 's':
			put_str(s, &sp, va_arg(ap, const char *));
			break;
		case 'c': {
			size_t pad = sp.width > 1 ? sp.width - 1 : 0;

			if (!(sp.flags & F_MINUS))
				sink_repeat(s, ' ', pad);
			sink_put(s, (char)va_arg(ap, int));
			if (sp.flags & F_MINUS)
				sink_repeat(s, ' ', pad);
			break;
		}
		case '%':
			sink_put(s, '%');
			break;
		default:
			/* Unknown or truncated: print the directive as written. */
			sink_write(s, start, (size_t)(fmt - start));
			if (!c)
				return;
			sink_put(s, c);
			break;
		}
		fmt++;
	}
}

static int result(size_t total)
{
	return total > INT_MAX ? INT_MAX : (int)total;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = { .buf = buf, .cap = size ? size - 1 : 0 };

	format(&s, fmt, ap);
	if (size)
		buf[s.len] = '\0';
	return result(s.total);
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[256];
	struct sink s = { .buf = buf, .cap = sizeof(buf), .console = true };

	format(&s, fmt, ap);
	sink_flush(&s);
	return result(s.total);
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int puts(const char *str)
{
	return printf("%s\n", str);
}
