/* SPDX-License-Identifier: MIT */
/*
 * rvmbus link: an rvmbus session (fab/rvmbus_session.h) kept alive over the
 * fabric transport (fab/xport.h). The guest's node is the client: it
 * connects to the serving node and reconnects with exponential backoff
 * whenever the connection ends; the serving node's listener finds the
 * session again by (peer node, session id), so the stream resumes where it
 * stopped: nothing lost, nothing delivered twice.
 *
 * Hello (unsequenced, first message each way on every connection):
 *   u16 type = RVL_T_HELLO, u16 version = 1, u32 zero,
 *   u64 session id (chosen by the client once), u64 delivered
 * All callbacks run on the loop thread; all functions must be called from
 * it.
 */
#ifndef FAB_RVMBUS_LINK_H
#define FAB_RVMBUS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct xport;
struct rvl;
struct rvl_server;

#define RVL_T_HELLO 0x0002

struct rvl_ops {
	/* A message of the peer's, in order, exactly once. */
	void (*deliver_cb)(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg);
	/* The link went up (hello exchanged) or down. Optional. */
	void (*state_cb)(struct rvl *l, bool up, void *arg);
};

struct rvl_cfg {
	unsigned window;	 /* unacknowledged messages; 0: 256 */
	uint32_t backoff_min_ms; /* client reconnects: 0: 50 */
	uint32_t backoff_max_ms; /* 0: 2000 */
};

/* Client: starts connecting to node peer at addr. Returns 0 or a negative
 * errno (bad arguments, memory). */
int rvl_client_start(struct ev_loop *loop, struct xport *x, const char *addr, const char *peer,
		     const struct rvl_cfg *cfg, const struct rvl_ops *ops, void *arg,
		     struct rvl **out);

/* Server: a new session from node peer. Return 0 with *ops and *arg for it,
 * or a negative errno to refuse the peer. */
typedef int (*rvl_session_cb)(struct rvl *l, const char *peer, void *arg,
			      const struct rvl_ops **ops, void **larg);

/* Server: listens on hostport (bound address written to bound). */
int rvl_server_start(struct ev_loop *loop, struct xport *x, const char *hostport,
		     const struct rvl_cfg *cfg, rvl_session_cb cb, void *arg, char *bound,
		     size_t boundlen, struct rvl_server **out);

/* Sends a sequenced message (type >= 0x100). Queued while the link is down.
 * Returns 0, -ENOBUFS (window full), -EINVAL, -ENOMEM. */
int rvl_send(struct rvl *l, uint16_t type, const void *body, size_t len);

bool rvl_is_up(const struct rvl *l);
/* Closes the current connection (the client reconnects; tests). */
void rvl_drop(struct rvl *l);
/* Connections made and resends forced, for tests and status. */
void rvl_counts(const struct rvl *l, uint64_t *connects, uint64_t *resent, uint64_t *dups);

/* Stop and free (no callbacks afterwards). */
void rvl_stop(struct rvl *l);
void rvl_server_stop(struct rvl_server *srv);

#endif
