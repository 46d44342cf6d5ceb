// SPDX-License-Identifier: MIT
/*
 * remote_floor: the raw TCP round-trip floor between two hosts, the figure
 * no remote protocol built on the same sockets can beat. Standalone (libc
 * only) so it runs anywhere the fabric might, before anything is built.
 *
 *   remote_floor server HOST:PORT
 *   remote_floor client HOST:PORT [--size B] [--count N] [--warmup W]
 *   remote_floor client HOST:PORT --stream MIB
 *
 * The client sends `size` bytes, the server echoes them, the client times
 * that exchange; warmup exchanges are done first and not counted. Both ends
 * set TCP_NODELAY, so each message leaves at once as the fabric's would.
 * The client prints one line to stdout:
 *
 *   floor size=512 n=10000 min_us=... p50_us=... p99_us=... mean_us=...
 *         max_us=... ops_s=...
 *
 * --stream MIB measures bulk bandwidth instead (the floor of copying a
 * partition's RAM between two nodes): the client sends MIB MiB in 1 MiB
 * writes, the server reads them all and answers with the hello again; the
 * client times its first write to that answer and prints
 *
 *   floor stream mib=256 secs=... mib_s=...
 *
 * Wire: a hello (magic, size — or the stream magic and MiB), echoed by the
 * server as its acceptance, then the ping-pong (or the stream). The server serves one client and exits 0 when that client
 * hangs up between two messages; any other end is an error (exit 1).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_MAGIC	0x52464c52u /* "RFLR" */
#define FLOOR_STREAM	0x52464c53u /* "RFLS" */
#define FLOOR_MAX_MIB	65536u
#define FLOOR_MAX_SIZE	(16u << 20)
#define CONNECT_WAIT_MS 5000 /* the server may still be starting */

static const char *prog = "remote_floor";

/* ---- socket helpers ------------------------------------------------------- */

/* Splits "host:port", "[v6]:port" or ":port" (any address) into its parts.
 * host is set to NULL for an empty host. Returns 0 or -EINVAL. */
static int floor_split_addr(char *s, char **host, char **port)
{
	char *colon;

	if (s[0] == '[') {
		char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		*end = '\0';
		*host = s + 1;
		*port = end + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		*colon = '\0';
		*host = s;
		*port = colon + 1;
	}
	if (!**port)
		return -EINVAL;
	if (!**host)
		*host = NULL;
	return 0;
}

static int floor_resolve(const char *spec, int passive, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	char buf[512], *host, *port;
	int rc;

	if (strlen(spec) >= sizeof(buf)) {
		fprintf(stderr, "%s: address too long\n", prog);
		return -EINVAL;
	}
	strcpy(buf, spec);
	if (floor_split_addr(buf, &host, &port) < 0) {
		fprintf(stderr, "%s: %s: expected HOST:PORT\n", prog, spec);
		return -EINVAL;
	}
	rc = getaddrinfo(host, port, &hints, res);
	if (rc) {
		fprintf(stderr, "%s: %s: %s\n", prog, spec, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

static int floor_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

/* Reads exactly len bytes. Returns 0, -EPIPE if the peer hung up before the
 * first byte, -ECONNRESET if it hung up in the middle, or -errno. */
static int floor_read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = recv(fd, p + done, len - done, 0);

		if (n > 0) {
			done += (size_t)n;
		} else if (n == 0) {
			return done ? -ECONNRESET : -EPIPE;
		} else if (errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

static int floor_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);

		if (n >= 0)
			done += (size_t)n;
		else if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static void floor_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t floor_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The only parser of what arrives from the network before the ping-pong:
 * a hello must carry the magic and a size we are willing to echo. */
static int floor_parse_hello(const uint8_t hello[8], uint32_t *size, int *stream)
{
	uint32_t s = floor_get_be32(hello + 4), m = floor_get_be32(hello);

	*stream = m == FLOOR_STREAM;
	if ((m != FLOOR_MAGIC && m != FLOOR_STREAM) || s == 0 ||
	    s > (*stream ? FLOOR_MAX_MIB : FLOOR_MAX_SIZE))
		return -EPROTO;
	*size = s;
	return 0;
}

/* Stream mode: read mib MiB, then answer with the hello. */
static int floor_sink(int cfd, const uint8_t hello[8], uint32_t mib)
{
	uint8_t *buf = malloc(1u << 20);
	int err;

	if (!buf) {
		fprintf(stderr, "%s: no memory\n", prog);
		return -ENOMEM;
	}
	err = floor_write_full(cfd, hello, 8);
	for (uint32_t i = 0; !err && i < mib; i++)
		err = floor_read_full(cfd, buf, 1u << 20);
	if (!err)
		err = floor_write_full(cfd, hello, 8);
	free(buf);
	if (err)
		fprintf(stderr, "%s: stream: %s\n", prog,
			err == -EPIPE || err == -ECONNRESET ? "client hung up" : strerror(-err));
	else
		fprintf(stderr, "%s: received %u MiB\n", prog, mib);
	return err;
}

/* ---- server ----------------------------------------------------------------- */

static int floor_listen(const char *spec)
{
	struct addrinfo *res, *ai;
	int fd = -1, err = -EADDRNOTAVAIL, one = 1;

	if (floor_resolve(spec, 1, &res) < 0)
		return -EINVAL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		/* A rerun right after the last one must not wait out TIME_WAIT. */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0)
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "%s: listen on %s: %s\n", prog, spec, strerror(-err));
		return err;
	}
	return fd;
}

static int floor_serve(int cfd)
{
	uint8_t hello[8], *buf;
	unsigned long echoed = 0;
	uint32_t size;
	int err, stream;

	err = floor_nodelay(cfd);
	if (err) {
		fprintf(stderr, "%s: TCP_NODELAY: %s\n", prog, strerror(-err));
		return err;
	}
	err = floor_read_full(cfd, hello, sizeof(hello));
	if (err) {
		fprintf(stderr, "%s: reading hello: %s\n", prog, strerror(-err));
		return err;
	}
	err = floor_parse_hello(hello, &size, &stream);
	if (err) {
		fprintf(stderr, "%s: bad hello (not a remote_floor client, or size over %u)\n",
			prog, FLOOR_MAX_SIZE);
		return err;
	}
	if (stream)
		return floor_sink(cfd, hello, size);
	buf = malloc(size);
	if (!buf) {
		fprintf(stderr, "%s: no memory for %u bytes\n", prog, size);
		return -ENOMEM;
	}
	err = floor_write_full(cfd, hello, sizeof(hello));
	while (!err) {
		err = floor_read_full(cfd, buf, size);
		if (err)
			break;
		err = floor_write_full(cfd, buf, size);
		echoed++;
	}
	free(buf);
	if (err == -EPIPE) {
		fprintf(stderr, "%s: client done after %lu messages of %u bytes\n", prog, echoed,
			size);
		return 0;
	}
	fprintf(stderr, "%s: after %lu messages: %s\n", prog, echoed,
		err == -ECONNRESET ? "client hung up mid-message" : strerror(-err));
	return err;
}

static int floor_server(const char *spec)
{
	int lfd, cfd, err;

	lfd = floor_listen(spec);
	if (lfd < 0)
		return lfd;
	/* Scripts may wait for this line instead of polling the port. */
	printf("floor listening %s\n", spec);
	fflush(stdout);
	do {
		cfd = accept(lfd, NULL, NULL);
	} while (cfd < 0 && errno == EINTR);
	if (cfd < 0) {
		err = -errno;
		fprintf(stderr, "%s: accept: %s\n", prog, strerror(-err));
		close(lfd);
		return err;
	}
	close(lfd);
	err = floor_serve(cfd);
	close(cfd);
	return err;
}

/* ---- client ----------------------------------------------------------------- */

static double floor_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void floor_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Connects, retrying refused connections for CONNECT_WAIT_MS so a client
 * started right after its server does not race the server's listen(). */
static int floor_connect(const char *spec)
{
	struct addrinfo *res, *ai;
	int fd = -1, err = -ECONNREFUSED;
	long waited = 0;

	if (floor_resolve(spec, 0, &res) < 0)
		return -EINVAL;
	for (;;) {
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				err = -errno;
				continue;
			}
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
				goto out;
			err = -errno;
			close(fd);
			fd = -1;
		}
		if (err != -ECONNREFUSED || waited >= CONNECT_WAIT_MS)
			break;
		floor_sleep_ms(50);
		waited += 50;
	}
out:
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "%s: connect to %s: %s\n", prog, spec, strerror(-err));
		return err;
	}
	return fd;
}

static int floor_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted v[0..n), q in (0, 1]. */
static double floor_pct(const double *v, unsigned long n, double q)
{
	unsigned long rank = (unsigned long)(q * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* One exchange: stamps seq into the message so an echo from the wrong
 * exchange (a desynchronised stream) is caught rather than timed. */
static int floor_exchange(int fd, uint8_t *out, uint8_t *in, uint32_t size, uint32_t seq)
{
	int err;

	if (size >= 4)
		floor_put_be32(out, seq);
	else
		out[0] = (uint8_t)seq;
	err = floor_write_full(fd, out, size);
	if (!err)
		err = floor_read_full(fd, in, size);
	if (err)
		return err;
	if (size >= 4 ? floor_get_be32(in) != seq : in[0] != (uint8_t)seq)
		return -EBADMSG;
	return 0;
}

static const char *floor_xfer_error(int err)
{
	if (err == -EPIPE || err == -ECONNRESET)
		return "server hung up";
	if (err == -EBADMSG)
		return "echo out of step";
	return strerror(-err);
}

static int floor_client(const char *spec, uint32_t size, unsigned long count, unsigned long warmup)
{
	uint8_t hello[8], ack[8], *out = NULL, *in = NULL;
	double *lat = NULL, t0, t_start, total, sum = 0;
	unsigned long i;
	int fd, err;

	fd = floor_connect(spec);
	if (fd < 0)
		return fd;
	err = floor_nodelay(fd);
	if (err) {
		fprintf(stderr, "%s: TCP_NODELAY: %s\n", prog, strerror(-err));
		goto out_close;
	}
	out = malloc(size);
	in = malloc(size);
	lat = malloc(count * sizeof(*lat));
	if (!out || !in || !lat) {
		fprintf(stderr, "%s: no memory\n", prog);
		err = -ENOMEM;
		goto out_free;
	}
	memset(out, 0xa5, size);

	floor_put_be32(hello, FLOOR_MAGIC);
	floor_put_be32(hello + 4, size);
	err = floor_write_full(fd, hello, sizeof(hello));
	if (!err)
		err = floor_read_full(fd, ack, sizeof(ack));
	if (err || memcmp(hello, ack, sizeof(hello)) != 0) {
		fprintf(stderr, "%s: handshake with %s failed: %s\n", prog, spec,
			err ? strerror(-err) : "unexpected reply");
		err = err ? err : -EPROTO;
		goto out_free;
	}

	for (i = 0; i < warmup; i++) {
		err = floor_exchange(fd, out, in, size, (uint32_t)i);
		if (err)
			goto out_xfer;
	}
	t_start = floor_now_us();
	for (i = 0; i < count; i++) {
		t0 = floor_now_us();
		err = floor_exchange(fd, out, in, size, (uint32_t)(warmup + i));
		if (err)
			goto out_xfer;
		lat[i] = floor_now_us() - t0;
		sum += lat[i];
	}
	total = floor_now_us() - t_start;

	qsort(lat, count, sizeof(*lat), floor_cmp_double);
	printf("floor size=%u n=%lu min_us=%.2f p50_us=%.2f p99_us=%.2f mean_us=%.2f "
	       "max_us=%.2f ops_s=%.0f\n",
	       size, count, lat[0], floor_pct(lat, count, 0.50), floor_pct(lat, count, 0.99),
	       sum / (double)count, lat[count - 1], (double)count * 1e6 / total);
	fflush(stdout);
	goto out_free;

out_xfer:
	fprintf(stderr, "%s: exchange %lu: %s\n", prog, i, floor_xfer_error(err));
out_free:
	free(lat);
	free(in);
	free(out);
out_close:
	close(fd);
	return err;
}

/* Bulk bandwidth: mib MiB in 1 MiB writes, timed to the server's answer
 * after the last byte. */
static int floor_stream(const char *spec, uint32_t mib)
{
	uint8_t hello[8], ack[8], *buf;
	double t0, secs;
	int fd, err;

	fd = floor_connect(spec);
	if (fd < 0)
		return fd;
	buf = malloc(1u << 20);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0x5a, 1u << 20);
	floor_put_be32(hello, FLOOR_STREAM);
	floor_put_be32(hello + 4, mib);
	err = floor_write_full(fd, hello, sizeof(hello));
	if (!err)
		err = floor_read_full(fd, ack, sizeof(ack));
	if (err || memcmp(hello, ack, sizeof(hello)) != 0) {
		fprintf(stderr, "%s: handshake with %s failed: %s\n", prog, spec,
			err ? strerror(-err) : "unexpected reply");
		err = err ? err : -EPROTO;
		goto out;
	}
	t0 = floor_now_us();
	for (uint32_t i = 0; !err && i < mib; i++)
		err = floor_write_full(fd, buf, 1u << 20);
	if (!err)
		err = floor_read_full(fd, ack, sizeof(ack));
	if (err) {
		fprintf(stderr, "%s: stream: %s\n", prog, floor_xfer_error(err));
		goto out;
	}
	secs = (floor_now_us() - t0) / 1e6;
	printf("floor stream mib=%u secs=%.3f mib_s=%.1f\n", mib, secs, (double)mib / secs);
	fflush(stdout);
out:
	free(buf);
	close(fd);
	return err;
}

/* ---- main --------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: %s server HOST:PORT\n"
		"       %s client HOST:PORT [--size BYTES] [--count N] [--warmup W]\n"
		"       %s client HOST:PORT --stream MIB\n"
		"  defaults: --size 512 --count 10000 --warmup 1000; size 1..%u; MIB 1..%u\n",
		prog, prog, prog, FLOOR_MAX_SIZE, FLOOR_MAX_MIB);
}

static int parse_ulong(const char *opt, const char *s, unsigned long min, unsigned long max,
		       unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || *v < min || *v > max) {
		fprintf(stderr, "%s: %s: want an integer in %lu..%lu, got '%s'\n", prog, opt, min,
			max, s);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long size = 512, count = 10000, warmup = 1000, stream = 0;
	int i;

	if (argc < 3) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "server") == 0) {
		if (argc != 3) {
			usage();
			return 2;
		}
		return floor_server(argv[2]) ? 1 : 0;
	}
	if (strcmp(argv[1], "client") != 0) {
		usage();
		return 2;
	}
	for (i = 3; i < argc; i += 2) {
		unsigned long *v, min = 0, max = 100000000ul;

		if (strcmp(argv[i], "--size") == 0) {
			v = &size;
			min = 1;
			max = FLOOR_MAX_SIZE;
		} else if (strcmp(argv[i], "--count") == 0) {
			v = &count;
			min = 1;
		} else if (strcmp(argv[i], "--warmup") == 0) {
			v = &warmup;
		} else if (strcmp(argv[i], "--stream") == 0) {
			v = &stream;
			min = 1;
			max = FLOOR_MAX_MIB;
		} else {
			fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[i]);
			usage();
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
			return 2;
		}
		if (parse_ulong(argv[i], argv[i + 1], min, max, v) < 0)
			return 2;
	}
	if (stream)
		return floor_stream(argv[2], (uint32_t)stream) ? 1 : 0;
	return floor_client(argv[2], (uint32_t)size, count, warmup) ? 1 : 0;
}
