// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "fab/conn.h"
#include "fab/frame.h"
#include "fab/log.h"
#include "fab/tls.h"

#define DEFAULT_MAX_QUEUED (8u << 20)
#define DEFAULT_TIMEOUT_S  10.0

enum conn_state {
	CONN_CONNECTING, /* TCP connect in progress (client) */
	CONN_HANDSHAKE,	 /* TLS handshake */
	CONN_OPEN,
	CONN_FLUSHING, /* close_after_flush: writing out, reading stopped */
	CONN_DEAD,     /* close_cb pending */
};

struct fab_conn {
	struct ev_loop *loop;
	ev_io io;
	ev_timer timer; /* handshake / flush deadline */
	ev_timer reap;	/* zero-delay: runs close_cb from the loop */
	int fd;
	SSL *ssl;
	enum conn_state state;
	int want_write; /* TLS needs the socket writable to progress */
	int close_err;
	struct fab_conn_opts opts;
	const struct fab_conn_ops *ops;
	void *arg;
	struct fab_frame_dec dec;
	uint8_t *outq; /* bytes [out_head, out_len) wait to be written */
	size_t out_head, out_len, out_cap;
	struct fab_ident peer;
	char expect_name[FAB_NAME_MAX]; /* "" when any name is accepted */
	struct addrinfo *addrs;		/* client: resolved addresses, owned */
	struct addrinfo *next_addr;	/* client: next one to try */
	char peer_addr[64];
	char reason[256];
	fab_conn_drain_cb drain_cb;
	size_t drain_low;
	int drain_armed; /* queue went above drain_low since the last call */
};

void fab_sockaddr_str(const void *sap, char *buf, size_t len)
{
	const struct sockaddr *sa = sap;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = sap;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sap;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

int fab_hostport_split(const char *hp, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = hp;
	size_t hl;

	if (!hp || !*hp)
		return -EINVAL;
	if (*hp == '[') {
		const char *end = strchr(hp, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		h = hp + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || strchr(hp, ':') != colon)
			return -EINVAL;
		hl = (size_t)(colon - hp);
	}
	if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	if (atol(colon + 1) > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int resolve(const char *hostport, int passive, struct addrinfo **res)
{
	char host[256], port[8];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };

	if (fab_hostport_split(hostport, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	if (getaddrinfo(host, port, &hints, res) != 0)
		return -EHOSTUNREACH;
	return 0;
}

int fab_listen(const char *hostport, char *bound, size_t boundlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *res;
	int fd, rc, one = 1;

	rc = resolve(hostport, 1, &res);
	if (rc)
		return rc;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		rc = -errno;
		close(fd);
		goto out;
	}
	if (bound) {
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		fab_sockaddr_str(&ss, bound, boundlen);
	}
	rc = fd;
out:
	freeaddrinfo(res);
	return rc;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_reap_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Every end of a connection goes through here; close_cb runs from the loop. */
static void conn_fail(struct fab_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_fail(struct fab_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	c->close_err = err;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
		va_end(ap);
	} else if (!c->reason[0]) {
		snprintf(c->reason, sizeof(c->reason), "%s", err ? strerror(-err) : "closed");
	}
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->reap, 0., 0.);
	ev_timer_start(c->loop, &c->reap);
}

static void conn_free(struct fab_conn *c)
{
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_stop(c->loop, &c->reap);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	if (c->addrs)
		freeaddrinfo(c->addrs);
	fab_frame_dec_free(&c->dec);
	free(c->outq);
	free(c);
}

static void conn_reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fab_conn *c = w->data;

	/* Best effort close_notify on an orderly close; never waits. */
	if (c->ssl && c->close_err == 0 && SSL_is_init_finished(c->ssl))
		SSL_shutdown(c->ssl);
	ERR_clear_error();
	c->ops->close_cb(c, c->close_err, c->arg);
	conn_free(c);
}

static void conn_watch(struct fab_conn *c)
{
	int ev = 0;

	if (c->state == CONN_DEAD)
		return;
	if (c->state == CONN_CONNECTING)
		ev = EV_WRITE;
	else if (c->state == CONN_HANDSHAKE)
		ev = c->want_write ? EV_WRITE : EV_READ;
	else {
		if (c->state == CONN_OPEN)
			ev |= EV_READ;
		if (c->out_len > c->out_head || c->want_write)
			ev |= EV_WRITE;
	}
	if (ev == (c->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&c->io))
		return;
	ev_io_stop(c->loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	if (ev)
		ev_io_start(c->loop, &c->io);
}

static struct fab_conn *conn_new(struct ev_loop *loop, int fd, const struct fab_conn_opts *opts,
				 const struct fab_conn_ops *ops, void *arg)
{
	struct fab_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->loop = loop;
	c->fd = fd;
	c->ops = ops;
	c->arg = arg;
	c->opts = *opts;
	if (!c->opts.max_queued)
		c->opts.max_queued = DEFAULT_MAX_QUEUED;
	if (c->opts.handshake_timeout_s <= 0)
		c->opts.handshake_timeout_s = DEFAULT_TIMEOUT_S;
	fab_frame_dec_init(&c->dec, c->opts.max_frame);
	if (!c->opts.max_frame)
		c->opts.max_frame = c->dec.max;
	if (!c->opts.max_send_frame)
		c->opts.max_send_frame = c->opts.max_frame;
	c->opts.peer_name = NULL; /* copied into c->expect_name */
	ev_io_init(&c->io, conn_io_cb, fd, 0);
	c->io.data = c;
	ev_timer_init(&c->timer, conn_timer_cb, c->opts.handshake_timeout_s, 0.);
	c->timer.data = c;
	ev_timer_init(&c->reap, conn_reap_cb, 0., 0.);
	c->reap.data = c;
	return c;
}

static int conn_setup_ssl(struct fab_conn *c, SSL_CTX *ctx, int server)
{
	char errs[256];

	c->ssl = SSL_new(ctx);
	/* A client gets its socket per address tried (conn_next_addr). */
	if (!c->ssl || (c->fd >= 0 && !SSL_set_fd(c->ssl, c->fd))) {
		fab_err("tls: SSL_new: %s", fab_tls_errors(errs, sizeof(errs)));
		return -EIO;
	}
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	return 0;
}

static void tune_socket(int fd)
{
	int one = 1;

	/* Control messages are small and latency matters more than packing. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static int conn_init_common(struct fab_conn *c, SSL_CTX *ctx, int server, const char *peer_name)
{
	int rc;

	if (peer_name) {
		if (strlen(peer_name) >= sizeof(c->expect_name))
			return -EINVAL;
		strcpy(c->expect_name, peer_name);
	}
	rc = conn_setup_ssl(c, ctx, server);
	if (rc)
		return rc;
	ev_timer_start(c->loop, &c->timer);
	return 0;
}

int fab_conn_accept(struct ev_loop *loop, SSL_CTX *ctx, int fd, const char *peer,
		    const struct fab_conn_opts *opts, const struct fab_conn_ops *ops, void *arg,
		    struct fab_conn **out)
{
	struct fab_conn *c;
	int rc;

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	tune_socket(fd);
	c = conn_new(loop, fd, opts, ops, arg);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", peer ? peer : "?");
	rc = conn_init_common(c, ctx, 1, opts->peer_name);
	if (rc) {
		conn_free(c);
		return rc;
	}
	c->state = CONN_HANDSHAKE;
	conn_watch(c);
	*out = c;
	return 0;
}

/*
 * Connects to the next address of the name (a name can resolve to several,
 * e.g. "localhost" to ::1 and 127.0.0.1, and the server may listen on only
 * one). Returns 0 when a connect is under way or done, or the error of the
 * last address tried when none is left.
 */
static int conn_next_addr(struct fab_conn *c)
{
	int err = -EHOSTUNREACH;

	while (c->next_addr) {
		struct addrinfo *ai = c->next_addr;
		int fd;

		c->next_addr = ai->ai_next;
		fab_sockaddr_str(ai->ai_addr, c->peer_addr, sizeof(c->peer_addr));
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		tune_socket(fd);
		ev_io_stop(c->loop, &c->io);
		if (c->fd >= 0)
			close(c->fd);
		c->fd = fd;
		ev_io_set(&c->io, fd, 0);
		if (!SSL_set_fd(c->ssl, fd))
			return -EIO;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->state = CONN_HANDSHAKE;
			c->want_write = 1; /* the ClientHello goes first */
			return 0;
		}
		if (errno == EINPROGRESS) {
			c->state = CONN_CONNECTING;
			return 0;
		}
		err = -errno;
	}
	return err;
}

int fab_conn_connect(struct ev_loop *loop, SSL_CTX *ctx, const char *hostport,
		     const struct fab_conn_opts *opts, const struct fab_conn_ops *ops, void *arg,
		     struct fab_conn **out)
{
	struct fab_conn *c;
	int rc;

	c = conn_new(loop, -1, opts, ops, arg);
	if (!c)
		return -ENOMEM;
	rc = resolve(hostport, 0, &c->addrs);
	if (rc) {
		c->addrs = NULL;
		conn_free(c);
		return rc;
	}
	c->next_addr = c->addrs;
	rc = conn_init_common(c, ctx, 0, opts->peer_name);
	if (rc) {
		conn_free(c);
		return rc;
	}
	c->state = CONN_CONNECTING;
	rc = conn_next_addr(c);
	if (rc == -EIO) {
		conn_free(c);
		return rc;
	}
	/* Every address refused at once: reported through close_cb like any
	 * other failure to connect. */
	if (rc)
		conn_fail(c, rc, "connect %s: %s", c->peer_addr, strerror(-rc));
	conn_watch(c);
	*out = c;
	return 0;
}

/* Makes room for n more bytes in the send queue. */
static int outq_reserve(struct fab_conn *c, size_t n)
{
	size_t used = c->out_len - c->out_head;

	if (used + n > c->opts.max_queued + FAB_FRAME_HDR_LEN)
		return -ENOBUFS;
	if (c->out_head && c->out_len + n > c->out_cap) {
		memmove(c->outq, c->outq + c->out_head, used);
		c->out_len = used;
		c->out_head = 0;
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		uint8_t *nq;

		while (cap < c->out_len + n)
			cap *= 2;
		nq = realloc(c->outq, cap);
		if (!nq)
			return -ENOMEM;
		c->outq = nq;
		c->out_cap = cap;
	}
	return 0;
}

static int conn_queue_check(struct fab_conn *c, size_t len)
{
	if (c->state == CONN_DEAD || c->state == CONN_FLUSHING)
		return -ENOTCONN;
	if (len == 0 || len > c->opts.max_send_frame)
		return -EMSGSIZE;
	return outq_reserve(c, FAB_FRAME_HDR_LEN + len);
}

static void conn_pump(struct fab_conn *c);

static void conn_queued(struct fab_conn *c)
{
	/* Writing happens from the loop so a send inside a callback never
	 * re-enters the connection. */
	if (c->drain_cb && c->out_len - c->out_head > c->drain_low)
		c->drain_armed = 1;
	conn_watch(c);
}

int fab_conn_sendv(struct fab_conn *c, const struct iovec *iov, int iovcnt)
{
	size_t len = 0;
	uint8_t *p;
	int rc;

	if (iovcnt < 0)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT32_MAX - len)
			return -EMSGSIZE;
		len += iov[i].iov_len;
	}
	rc = conn_queue_check(c, len);
	if (rc)
		return rc;
	p = c->outq + c->out_len;
	fab_frame_hdr_encode(p, (uint32_t)len);
	p += FAB_FRAME_HDR_LEN;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	c->out_len += FAB_FRAME_HDR_LEN + len;
	conn_queued(c);
	return 0;
}

void fab_conn_set_drain_cb(struct fab_conn *c, size_t low, fab_conn_drain_cb cb)
{
	c->drain_cb = cb;
	c->drain_low = low;
	c->drain_armed = cb && c->out_len - c->out_head > low;
}

int fab_conn_send(struct fab_conn *c, const void *payload, size_t len)
{
	int rc = conn_queue_check(c, len);

	if (rc)
		return rc;
	fab_frame_hdr_encode(c->outq + c->out_len, (uint32_t)len);
	memcpy(c->outq + c->out_len + FAB_FRAME_HDR_LEN, payload, len);
	c->out_len += FAB_FRAME_HDR_LEN + len;
	conn_queued(c);
	return 0;
}

int fab_conn_send_pb(struct fab_conn *c, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	int rc = conn_queue_check(c, len);

	if (rc)
		return rc;
	fab_frame_hdr_encode(c->outq + c->out_len, (uint32_t)len);
	protobuf_c_message_pack(msg, c->outq + c->out_len + FAB_FRAME_HDR_LEN);
	c->out_len += FAB_FRAME_HDR_LEN + len;
	conn_queued(c);
	return 0;
}

void fab_conn_close(struct fab_conn *c, int err, const char *reason)
{
	conn_fail(c, err, "%s", reason ? reason : (err ? strerror(-err) : "closed locally"));
}

void fab_conn_close_after_flush(struct fab_conn *c)
{
	if (c->state == CONN_DEAD || c->state == CONN_FLUSHING)
		return;
	if (c->state != CONN_OPEN) {
		conn_fail(c, 0, "closed locally");
		return;
	}
	c->state = CONN_FLUSHING;
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, c->opts.handshake_timeout_s, 0.);
	ev_timer_start(c->loop, &c->timer);
	if (c->out_len == c->out_head)
		conn_fail(c, 0, "closed locally");
	else
		conn_watch(c);
}

const struct fab_ident *fab_conn_peer(const struct fab_conn *c)
{
	return &c->peer;
}

const char *fab_conn_peer_addr(const struct fab_conn *c)
{
	return c->peer_addr;
}

const char *fab_conn_reason(const struct fab_conn *c)
{
	return c->reason;
}

size_t fab_conn_queued(const struct fab_conn *c)
{
	return c->out_len - c->out_head;
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fab_conn *c = w->data;

	if (c->state == CONN_FLUSHING)
		conn_fail(c, 0, "flush timed out");
	else
		conn_fail(c, -ETIMEDOUT, "%s with %s timed out",
			  c->state == CONN_CONNECTING ? "connect" : "TLS handshake", c->peer_addr);
}

/* Classifies a failed SSL call: 0 to wait (want_write set accordingly),
 * 1 for an orderly close by the peer, else a negative errno. */
static int ssl_result(struct fab_conn *c, int ret, char *why, size_t whylen)
{
	int e = SSL_get_error(c->ssl, ret);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		c->want_write = 0;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->want_write = 1;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return 1;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error()) {
			fab_tls_errors(why, whylen);
			return -EPROTO;
		}
		snprintf(why, whylen, "%s", errno ? strerror(errno) : "connection closed");
		return errno ? -errno : -ECONNRESET;
	default:
		fab_tls_errors(why, whylen);
		if (!why[0])
			snprintf(why, whylen, "TLS error %d", e);
		return -EPROTO;
	}
}

static int conn_handshake(struct fab_conn *c)
{
	char why[512] = "";
	int ret, rc;

	ERR_clear_error();
	ret = SSL_do_handshake(c->ssl);
	if (ret != 1) {
		rc = ssl_result(c, ret, why, sizeof(why));
		if (rc == 0)
			return 0;
		if (SSL_get_verify_result(c->ssl) != X509_V_OK)
			snprintf(why + strlen(why), sizeof(why) - strlen(why), " (verify: %s)",
				 X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		conn_fail(c, rc == 1 ? -ECONNRESET : rc, "TLS handshake with %s failed: %s",
			  c->peer_addr, why[0] ? why : "peer closed the connection");
		return -1;
	}
	c->want_write = 0;
	{
		struct fab_ident id = { 0 };

		rc = fab_tls_peer_ident(c->ssl, &id);
		if (rc == 0)
			rc = fab_ident_check(&id, c->opts.peer_roles,
					     c->expect_name[0] ? c->expect_name : NULL);
		if (rc) {
			conn_fail(c, -EACCES,
				  "peer %s refused: certificate of %s '%s' is not allowed here",
				  c->peer_addr, rc == -EACCES ? fab_role_name(id.role) : "invalid",
				  rc == -EACCES ? id.name : "?");
			return -1;
		}
		c->peer = id;
	}
	ev_timer_stop(c->loop, &c->timer);
	c->state = CONN_OPEN;
	c->ops->open_cb(c, c->arg);
	return c->state == CONN_DEAD ? -1 : 0;
}

/* Writes as much of the queue as TLS takes. Returns 0 or -1 if the
 * connection died. */
static int conn_flush(struct fab_conn *c)
{
	char why[256] = "";

	while (c->out_len > c->out_head) {
		size_t n = c->out_len - c->out_head;
		int ret, rc;

		if (n > (1u << 30))
			n = 1u << 30;
		ERR_clear_error();
		ret = SSL_write(c->ssl, c->outq + c->out_head, (int)n);
		if (ret > 0) {
			c->out_head += (size_t)ret;
			continue;
		}
		rc = ssl_result(c, ret, why, sizeof(why));
		if (rc == 0)
			return 0;
		conn_fail(c, rc == 1 ? 0 : rc, "write to %s: %s", c->peer_addr,
			  why[0] ? why : "peer closed");
		return -1;
	}
	c->out_head = c->out_len = 0;
	if (c->state == CONN_FLUSHING) {
		conn_fail(c, 0, "closed locally");
		return -1;
	}
	return 0;
}

static int conn_read(struct fab_conn *c)
{
	uint8_t buf[16384];
	char why[256] = "";

	for (;;) {
		int ret, rc;
		size_t off = 0;

		ERR_clear_error();
		ret = SSL_read(c->ssl, buf, sizeof(buf));
		if (ret <= 0) {
			rc = ssl_result(c, ret, why, sizeof(why));
			if (rc == 0)
				return 0;
			if (rc == 1 || rc == -ECONNRESET) {
				if (fab_frame_dec_partial(&c->dec)) {
					conn_fail(c, -EPIPE,
						  "%s closed the connection in the middle of a "
						  "frame (truncated)",
						  c->peer_addr);
				} else {
					conn_fail(c, rc == 1 ? 0 : rc, "%s closed the connection",
						  c->peer_addr);
				}
			} else {
				conn_fail(c, rc, "read from %s: %s", c->peer_addr, why);
			}
			return -1;
		}
		while (off < (size_t)ret) {
			const uint8_t *frame = NULL;
			size_t used = 0, flen = 0;

			rc = fab_frame_dec_feed(&c->dec, buf + off, (size_t)ret - off, &used,
						&frame, &flen);
			off += used;
			if (rc < 0) {
				conn_fail(c, rc, "bad frame from %s: %s", c->peer_addr,
					  rc == -EMSGSIZE  ? "oversized"
					  : rc == -EBADMSG ? "zero length"
					  : rc == -EPROTO  ? "garbage (bad frame header)"
							   : strerror(-rc));
				return -1;
			}
			if (rc == 1) {
				c->ops->frame_cb(c, frame, flen, c->arg);
				if (c->state != CONN_OPEN)
					return c->state == CONN_DEAD ? -1 : 0;
			}
		}
	}
}

static void conn_pump(struct fab_conn *c)
{
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			int rc = c->next_addr ? conn_next_addr(c) : -err;

			if (rc) {
				conn_fail(c, -err, "connect %s: %s", c->peer_addr, strerror(err));
				return;
			}
			conn_watch(c);
			return;
		}
		c->state = CONN_HANDSHAKE;
		c->want_write = 1;
	}
	if (c->state == CONN_HANDSHAKE) {
		if (conn_handshake(c) < 0 || c->state == CONN_HANDSHAKE) {
			conn_watch(c);
			return;
		}
	}
	if (c->state == CONN_OPEN || c->state == CONN_FLUSHING) {
		if (conn_flush(c) < 0)
			return;
	}
	if (c->state == CONN_OPEN) {
		if (conn_read(c) < 0)
			return;
		/* Frames handled above may have queued replies. */
		if (c->state != CONN_DEAD && conn_flush(c) < 0)
			return;
	}
	if (c->drain_armed && c->state == CONN_OPEN && c->out_len - c->out_head <= c->drain_low) {
		c->drain_armed = 0;
		c->drain_cb(c, c->arg);
		if (c->state == CONN_DEAD)
			return;
	}
	conn_watch(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	conn_pump(w->data);
}
