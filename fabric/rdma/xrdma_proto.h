/* SPDX-License-Identifier: MIT */
/*
 * Wire formats and pure bookkeeping of the RDMA backend (module xrdma,
 * private). Nothing here touches verbs, sockets or the loop, so all of it is
 * tested on machines without an RDMA device (tests/unit/test_xport_rdma.c).
 *
 * All integers are big endian, as in the TCP backend.
 *
 * Control messages travel inside the paired TLS connection (an inner xport
 * "tcp" connection), each one xport message:
 *
 *   common header (8 bytes)
 *     off 0  u32  magic "XRDM"
 *     off 4  u8   type: 1 HELLO, 2 WELCOME (3 CONNECT is private data only)
 *     off 5  u8   version (1)
 *     off 6  u16  reserved, 0
 *   HELLO, client -> server (16 bytes)
 *     off 8  u32  receive depth: buffers the client posts, i.e. the
 *                 server's initial send credits (4..4096)
 *     off 12 u32  largest message the client accepts (4096..64 MiB)
 *   WELCOME, server -> client (40 bytes)
 *     off 8  u32  the server's receive depth
 *     off 12 u32  largest message the server accepts
 *     off 16 u16  RDMA CM port (RDMA_PS_TCP) to connect to, not 0
 *     off 18 u16  reserved, 0
 *     off 20 u32  reserved, 0
 *     off 24 16B  token: random, single use, valid until the connection
 *                 is up or its set-up timer fires
 *
 * CONNECT is the private data of rdma_connect() (24 bytes; the CM may pad it
 * with zeros up to 56, and the padding must be zero):
 *     common header, then off 8 16B token from WELCOME.
 *
 * Every SEND on the queue pair starts with a message header (8 bytes):
 *     off 0  u8   type: 1 MSG (the user's message follows), 2 CREDIT
 *     off 1  u8   flags, 0
 *     off 2  u16  credits returned to the receiver of this message
 *     off 4  u32  length of what follows (MSG: 1..max; CREDIT: 0, and a
 *                 CREDIT returns at least one credit)
 */
#ifndef FAB_XRDMA_PROTO_H
#define FAB_XRDMA_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define XRDMA_MAGIC	    0x5852444du /* "XRDM" */
#define XRDMA_VERSION	    1
#define XRDMA_TOKEN_LEN	    16
#define XRDMA_CTL_HDR_LEN   8
#define XRDMA_HELLO_LEN	    16
#define XRDMA_WELCOME_LEN   40
#define XRDMA_CONNECT_LEN   24
#define XRDMA_PRIV_MAX	    56 /* RDMA_PS_TCP private data of a connect request */
#define XRDMA_MSG_HDR_LEN   8
#define XRDMA_MIN_DEPTH	    4
#define XRDMA_MAX_DEPTH	    4096
#define XRDMA_MIN_MAX_MSG   4096u
#define XRDMA_MAX_MSG_LIMIT (64u << 20)

enum xrdma_ctl_type {
	XRDMA_CTL_HELLO = 1,
	XRDMA_CTL_WELCOME = 2,
	XRDMA_CTL_CONNECT = 3,
};

/* A control message after xrdma_ctl_parse(): every field within its limits. */
struct xrdma_ctl {
	uint8_t type;
	uint32_t depth;			/* HELLO, WELCOME */
	uint32_t max_msg;		/* HELLO, WELCOME */
	uint16_t port;			/* WELCOME */
	uint8_t token[XRDMA_TOKEN_LEN]; /* WELCOME, CONNECT */
};

/* Writes a control message of c->type into buf (room for
 * XRDMA_WELCOME_LEN bytes); returns its length. */
size_t xrdma_ctl_build(const struct xrdma_ctl *c, uint8_t *buf);

/*
 * The one place control bytes from the peer are interpreted: a HELLO or
 * WELCOME from the TLS connection, or CONNECT private data (len may exceed
 * XRDMA_CONNECT_LEN by zero padding up to XRDMA_PRIV_MAX). want is the type
 * expected in the current state. Returns 0, or -EPROTO with *why.
 */
int xrdma_ctl_parse(const uint8_t *p, size_t len, uint8_t want, struct xrdma_ctl *out,
		    const char **why);

enum xrdma_msg_type {
	XRDMA_MSG = 1,
	XRDMA_CREDIT = 2,
};

struct xrdma_msg_hdr {
	uint8_t type;
	uint16_t credits;
	uint32_t len; /* bytes after the header */
};

void xrdma_msg_hdr_put(uint8_t *p, uint8_t type, uint16_t credits, uint32_t len);

/*
 * Parses one received SEND of n bytes (n as the completion reports it)
 * against the connection's largest message max. Returns 0, or -EPROTO with
 * *why. Credit accounting is checked by xrdma_credit_rx().
 */
int xrdma_msg_parse(const uint8_t *p, size_t n, uint32_t max, struct xrdma_msg_hdr *out,
		    const char **why);

/*
 * Credit-based flow control of one connection direction pair. Each side
 * posts `depth` receive buffers and the peer may SEND only while it holds a
 * credit for one. The rules (DESIGN: never an RNR in normal operation, never
 * a deadlock):
 *
 *  1. A user message needs 2 credits in hand and uses 1: the last credit is
 *     reserved for a CREDIT message, so credits can always be returned.
 *  2. Every SEND carries all owed credits (buffers we reposted after
 *     consuming them and have not yet returned), so a CREDIT message always
 *     returns at least 1.
 *  3. A CREDIT message is sent when owed >= max(2, depth/4) (keeps the pipe
 *     full), or when owed > 0 and the peer, as far as we know, holds fewer
 *     than 2 credits (it may be blocked: return what we can now).
 *
 * Why no deadlock: take a quiescent moment (nothing in flight). Then each
 * side's view of the other's credits is exact and credits_A + owed_B =
 * depth_B. Say A is blocked (credits_A < 2). Then owed_B >= depth_B - 1 >= 3
 * and B sees A below 2, so rule 3 makes B send a CREDIT if B holds a
 * credit. If B holds none, A owes all of depth_A >= 4, so A sends a CREDIT
 * with its last credit (A holds one: both at 0 cannot happen), and B's
 * CREDIT follows. Both at 0 is impossible: only a CREDIT takes a side's last
 * credit (rule 1) and it carries >= 1 credit (rule 2); of the two sides'
 * last messages, the one that arrived last (both, if they crossed) handed
 * its receiver a credit after that receiver's own last send.
 * No endless CREDIT ping-pong: receiving a CREDIT makes one owed credit, and
 * the threshold is at least 2, so a CREDIT is answered by a CREDIT only
 * when its sender looked starved; the answer returns everything owed, and
 * the first side then holds depth - 1 >= 3 credits and owes 1: it stops.
 *
 * The receiving side also polices the peer. peer_view = depth + credits we
 * returned - messages we received is an upper bound of what the peer held
 * when it sent the message now arriving (it sent everything before it and
 * cannot have more credits than we returned). An honest peer sends a user
 * message only with >= 2 credits and anything only with >= 1, so a user
 * message arriving while peer_view < 2, or any with peer_view < 1, breaks
 * the protocol; so do credits that would give us more than peer_depth.
 */
struct xrdma_credits {
	uint32_t depth;	     /* receive buffers we post */
	uint32_t peer_depth; /* receive buffers the peer posts */
	uint32_t avail;	     /* send credits we hold */
	uint32_t owed;	     /* reposted buffers not yet returned to the peer */
	uint32_t peer_view;  /* upper bound of the peer's credits */
};

void xrdma_credits_init(struct xrdma_credits *cr, uint32_t depth, uint32_t peer_depth);
/* Whether a user message / a CREDIT message may be sent now (rules 1, 3). */
int xrdma_credit_can_send_msg(const struct xrdma_credits *cr);
int xrdma_credit_should_send_credit(const struct xrdma_credits *cr);
/* Takes a credit for one SEND and returns the credits it carries (rule 2). */
uint16_t xrdma_credit_tx(struct xrdma_credits *cr);
/* Accounts one received SEND of type carrying credits. Returns 0 or -EPROTO
 * with *why (credits beyond the peer's depth, peer sent without credit). */
int xrdma_credit_rx(struct xrdma_credits *cr, uint8_t type, uint16_t credits, const char **why);
/* One received buffer was consumed and posted again. */
void xrdma_credit_reposted(struct xrdma_credits *cr);

/*
 * Send ring: one registered buffer that SENDs are copied into, allocated in
 * order and freed in the same order (completions of one queue pair arrive
 * in order). An allocation never wraps: what is left at the end is skipped
 * and accounted to the allocation that skipped it.
 */
struct xrdma_ring {
	size_t size, head, tail, used;
};

/* Reserves n bytes (1..size). Returns 0 with *off and *consumed (n plus any
 * skipped tail, to give back to xrdma_ring_free()), or -ENOBUFS. */
int xrdma_ring_alloc(struct xrdma_ring *r, size_t n, size_t *off, size_t *consumed);
/* Whether xrdma_ring_alloc(r, n) would succeed now. */
int xrdma_ring_fits(const struct xrdma_ring *r, size_t n);
/* Frees the oldest allocation, which ended at end and consumed consumed. */
void xrdma_ring_free(struct xrdma_ring *r, size_t end, size_t consumed);

#endif
