/* SPDX-License-Identifier: MIT */
/*
 * rvmbus link: an rvmbus session (fab/rvmbus_session.h) kept alive over the
 * fabric transport (fab/xport.h). The guest's node is the client: it
 * connects to the serving node and reconnects with exponential backoff
 * whenever the connection ends; the serving node's listener finds the
 * session again by (peer node, session id), so the stream resumes where it
 * stopped: nothing lost, nothing delivered twice.
 *
 * Hello (unsequenced, first message each way on every connection; the
 * client sends first, the server answers):
 *   u16 type = RVL_T_HELLO, u16 version = 1, u32 flags,
 *   u64 session id (chosen by the client once), u64 delivered
 * The client's flags are 0. The server's are 0 or RVL_HELLO_FRESH; any other
 * bit, or FRESH with delivered != 0, is a bad hello (connection dropped).
 *
 * Restarts. A server process that restarts has lost its sessions while
 * its clients keep theirs and come back with their old ids. It announces
 * that with RVL_HELLO_FRESH: it sets the flag while it has received nothing
 * at all from the session's client (no message, no acknowledgement), which
 * covers the session it created for this very hello and one whose FRESH
 * hello was lost with its connection. Both sides then resume from 0. A
 * client that has delivered nothing and had nothing acknowledged simply
 * continues: its queue, from sequence 1, is the whole stream (the normal
 * first connection, or an idle link). A client that has cannot continue
 * the old stream with a peer that has no state: it discards its session
 * (sequence numbers restart at 1 both ways, unacknowledged messages are
 * dropped) and calls reset_cb before state_cb(up) so its user rebuilds what
 * the peer lost. (If a server's acknowledgement was lost with the
 * connection, a client may also restart a session the server still has;
 * that is consistent, both streams restart at 1, only redundant.)
 * A client process that restarts picks a new session id; when a server
 * creates a session for a new id from a peer node, it ends every other
 * session of that node (end_cb). So a node keeps at most one link to a given
 * server: two live clients of one node would keep ending each other's
 * session.
 *
 * Threading: every function here must be called on the loop's thread, and
 * every callback runs on it, always from the loop, never from inside a call
 * the user made. A callback may call any function here except rvl_stop()
 * and rvl_server_stop() of its own link or server.
 */
#ifndef FAB_RVMBUS_LINK_H
#define FAB_RVMBUS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct xport;
struct xport_conn;
struct rvl;
struct rvl_server;

#define RVL_T_HELLO	0x0002
/* Keepalive (unsequenced, 8 bytes: u16 type, u16 0, u32 0): each side sends
 * one every keepalive_ms while up; a side that hears nothing from its peer
 * for dead_ms drops the connection (a peer that vanished without closing
 * it, e.g. a machine gone, would otherwise be noticed only by the
 * transport's own timeouts, if ever: an idle receiver sends nothing). */
#define RVL_T_PING	0x0003
#define RVL_HELLO_FRESH 0x1u /* server's hello: it has no state of the session */

struct rvl_ops {
	/* A message of the peer's, in order, exactly once (per session: see
	 * reset_cb). Required. */
	void (*deliver_cb)(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg);
	/* The link went up (hello exchanged) or down. Optional. */
	void (*state_cb)(struct rvl *l, bool up, void *arg);
	/* Client only, optional: the server lost the session (it restarted).
	 * The session has been replaced by a new one: what was queued and not
	 * acknowledged is gone, the peer's messages start again from the
	 * first. Runs once per loss, before state_cb(up) of the connection
	 * that found it, with the link still down; messages rvl_send() queues
	 * here go out first. Rebuild the channel state on the peer here. */
	void (*reset_cb)(struct rvl *l, void *arg);
	/* Server only, optional: the session's client node came back with a
	 * new session id (its process restarted), so this session ends. Its
	 * connection is already closed (rvl_conn() is NULL; remote operations
	 * still pending on it complete with -ECONNRESET later, from the loop)
	 * and state_cb does not run again. l may be read during the call
	 * (rvl_session_id(), rvl_counts()); it is freed when end_cb returns.
	 * A server user that keeps l anywhere must set this. */
	void (*end_cb)(struct rvl *l, void *arg);
};

struct rvl_cfg {
	unsigned window;	 /* unacknowledged messages; 0: 256 */
	uint32_t backoff_min_ms; /* client reconnects: 0: 50 */
	uint32_t backoff_max_ms; /* 0: 2000 */
	uint32_t keepalive_ms;	 /* 0: 1000 */
	uint32_t dead_ms;	 /* silence that ends a connection; 0: 5000 */
};

/* Client: starts connecting to node peer at addr. ops must outlive the link.
 * Returns 0 or a negative errno (bad arguments, memory). */
int rvl_client_start(struct ev_loop *loop, struct xport *x, const char *addr, const char *peer,
		     const struct rvl_cfg *cfg, const struct rvl_ops *ops, void *arg,
		     struct rvl **out);

/* Server: a new session from node peer. Return 0 with *ops (which must
 * outlive the session) and *arg for it, or a negative errno to refuse the
 * peer. Other sessions of peer have already ended (end_cb) when this runs.
 * The link is not up yet; rvl_send() queues. */
typedef int (*rvl_session_cb)(struct rvl *l, const char *peer, void *arg,
			      const struct rvl_ops **ops, void **larg);

/* Server: listens on hostport (bound address written to bound). */
int rvl_server_start(struct ev_loop *loop, struct xport *x, const char *hostport,
		     const struct rvl_cfg *cfg, rvl_session_cb cb, void *arg, char *bound,
		     size_t boundlen, struct rvl_server **out);

/*
 * Server: another protocol on the same listener. A connection whose first
 * message does not start with the u16 RVL_T_HELLO is handed to cb with
 * that message: cb returns 0 once it has taken the connection (it must
 * xport_set_cbs() its own callbacks, closed_cb included, before
 * returning), or a negative errno to have it closed. NULL: such
 * connections are dropped as before. Loop thread.
 */
typedef int (*rvl_other_cb)(struct xport_conn *c, const void *msg, size_t len, void *arg);
void rvl_server_set_other(struct rvl_server *srv, rvl_other_cb cb, void *arg);

/* Sends a sequenced message (type >= 0x100). Queued while the link is down.
 * Returns 0, -ENOBUFS (window full), -EINVAL, -ENOMEM. */
int rvl_send(struct rvl *l, uint16_t type, const void *body, size_t len);

bool rvl_is_up(const struct rvl *l);
/* The current connection while the link is up, else NULL: for the
 * transport's remote reads and writes (e.g. rmem_bind()) on the connection
 * that carries the session. Valid from state_cb(up) until state_cb(down) or
 * end_cb; a new connection comes with a new state_cb(up). Not owned by the
 * caller: do not close it (rvl_drop()) or replace its callbacks. */
struct xport_conn *rvl_conn(const struct rvl *l);
/* The session id (the client's random choice; never 0), for logs. */
uint64_t rvl_session_id(const struct rvl *l);
/* Closes the current connection (the client reconnects; tests). */
void rvl_drop(struct rvl *l);
/* Connections made, messages resent and duplicates dropped since the link
 * started (across resets), for tests and status. */
void rvl_counts(const struct rvl *l, uint64_t *connects, uint64_t *resent, uint64_t *dups);

/* Stop and free a client link or one server session (no callbacks
 * afterwards; its connection is closed). NULL is a no-op. */
void rvl_stop(struct rvl *l);
/* Stops and frees every session of srv, and srv. The transport cannot stop
 * listening by itself, so destroy x (xport_destroy()) before the loop runs
 * again: a connection accepted afterwards would reach the freed srv. */
void rvl_server_stop(struct rvl_server *srv);

#endif
