/* SPDX-License-Identifier: MIT */
/*
 * A framed, mutually authenticated TLS connection driven by a libev loop.
 * Non-blocking throughout; every callback runs on the loop's thread and all
 * functions here must be called from it.
 *
 * Lifetime: a connection handed out by fab_conn_accept()/fab_conn_connect()
 * lives until its close_cb has run, which happens exactly once, whatever
 * ended it (peer, error, timeout, fab_conn_close()). close_cb always runs from
 * the loop, never from inside a call the user made, so a user may call
 * fab_conn_close() anywhere, including from its own callbacks. After close_cb
 * returns the connection is freed.
 */
#ifndef FAB_CONN_H
#define FAB_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ev.h>
#include <openssl/ssl.h>
#include <protobuf-c/protobuf-c.h>

#include "fab/pki.h"

struct fab_conn;

struct fab_conn_ops {
	/* Handshake done and the peer's identity accepted by the policy. */
	void (*open_cb)(struct fab_conn *c, void *arg);
	/* One frame's payload, valid only during the call. */
	void (*frame_cb)(struct fab_conn *c, const uint8_t *payload, size_t len, void *arg);
	/* The connection ended: err is 0 for an orderly close, else a negative
	 * errno (-ETIMEDOUT, -ECONNREFUSED, -EACCES for a refused identity,
	 * -EPROTO for a bad frame or TLS failure, -EMSGSIZE, -EPIPE for a
	 * truncated frame, ...). fab_conn_reason() tells the details. */
	void (*close_cb)(struct fab_conn *c, int err, void *arg);
};

struct fab_conn_opts {
	unsigned peer_roles;	    /* FAB_ROLE_BIT()s the peer may hold */
	const char *peer_name;	    /* if set, the peer's name must be this */
	uint32_t max_frame;	    /* received; 0: FAB_FRAME_DEFAULT_MAX */
	uint32_t max_send_frame;    /* sent; 0: max_frame (e.g. large replies to small requests) */
	size_t max_queued;	    /* bytes queued for sending; 0: 8 MiB */
	double handshake_timeout_s; /* connect + handshake; 0: 10 s */
};

/* Takes ownership of the connected socket fd (made non-blocking here) and
 * starts the server side of the handshake. peer is a printable address for
 * logs. Returns 0 or a negative errno (fd closed then too). */
int fab_conn_accept(struct ev_loop *loop, SSL_CTX *ctx, int fd, const char *peer,
		    const struct fab_conn_opts *opts, const struct fab_conn_ops *ops, void *arg,
		    struct fab_conn **out);

/* Starts connecting to "host:port" ("[v6]:port" for IPv6). Name resolution
 * is synchronous. Returns 0 (the outcome arrives through open_cb or close_cb)
 * or a negative errno (-EINVAL bad address, -EHOSTUNREACH unresolvable). */
int fab_conn_connect(struct ev_loop *loop, SSL_CTX *ctx, const char *hostport,
		     const struct fab_conn_opts *opts, const struct fab_conn_ops *ops, void *arg,
		     struct fab_conn **out);

/* Queues one frame. Returns 0, -EMSGSIZE (over max_frame), -ENOBUFS (the
 * peer is not keeping up: queue over max_queued; nothing queued), -ENOTCONN
 * (closing or closed). Frames queued before open_cb are sent after it. */
int fab_conn_send(struct fab_conn *c, const void *payload, size_t len);

/* Packs a protobuf message into one frame; same returns as fab_conn_send. */
int fab_conn_send_pb(struct fab_conn *c, const ProtobufCMessage *msg);

/* Queues one frame whose payload is the concatenation of iov[0..iovcnt),
 * copied once straight into the send queue (no assembly buffer). Same
 * returns as fab_conn_send; -EINVAL for iovcnt < 0. */
int fab_conn_sendv(struct fab_conn *c, const struct iovec *iov, int iovcnt);

/* Called from the loop when the send queue has drained to low bytes or
 * fewer after it held more than low; see fab_conn_set_drain_cb(). */
typedef void (*fab_conn_drain_cb)(struct fab_conn *c, void *arg);

/* Installs (cb) or removes (NULL) the drain callback. It fires once per
 * crossing from above low to low or below, always from the loop after a
 * write, never from inside a send; it may send and close. Lets a user keep
 * its own high-water mark well below max_queued and learn when to resume. */
void fab_conn_set_drain_cb(struct fab_conn *c, size_t low, fab_conn_drain_cb cb);

/* Ends the connection now (close_cb follows from the loop with err). */
void fab_conn_close(struct fab_conn *c, int err, const char *reason);

/* Stops reading, sends what is queued, then closes with err 0 (bounded by
 * the handshake timeout, after which the close happens anyway). */
void fab_conn_close_after_flush(struct fab_conn *c);

/* The peer's identity; valid from open_cb on. */
const struct fab_ident *fab_conn_peer(const struct fab_conn *c);
/* Printable peer address ("10.0.0.2:41234"). */
const char *fab_conn_peer_addr(const struct fab_conn *c);
/* Why the connection ended ("" while open). */
const char *fab_conn_reason(const struct fab_conn *c);
/* Bytes waiting to be sent. */
size_t fab_conn_queued(const struct fab_conn *c);

/* Parses "host:port" / "[v6]:port" into host and port strings.
 * Returns 0 or -EINVAL. */
int fab_hostport_split(const char *hostport, char *host, size_t hostlen, char *port,
		       size_t portlen);

/* Creates a non-blocking listening TCP socket bound to "host:port" (port 0
 * picks a free one). Writes the bound address to bound (if not NULL).
 * Returns the fd or a negative errno. */
int fab_listen(const char *hostport, char *bound, size_t boundlen);

/* Formats a socket address as "ip:port" / "[ip6]:port". */
void fab_sockaddr_str(const void *sa, char *buf, size_t len);

#endif
