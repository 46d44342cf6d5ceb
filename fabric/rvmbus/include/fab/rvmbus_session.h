/* SPDX-License-Identifier: MIT */
/*
 * rvmbus session: the reliable, ordered message stream between two nodes
 * that carries remote VMBus channels (stub on the guest's node, skeleton on
 * the VSP's node). A pure state machine: no I/O, no clock, no threads; the
 * caller feeds it what the transport received and gives it a function to
 * transmit with.
 *
 * Reliability across reconnects: every sequenced message carries a sequence
 * number (per direction, from 1) and every message a cumulative ack of what
 * its sender has delivered. A sent message stays in the resend queue until
 * acked. When the link comes back the two sides exchange how far they have
 * delivered (in their hello, outside this module) and rvs_link_up resends
 * everything after that point; a message that arrives twice is dropped by
 * its sequence number. So nothing is lost and nothing is delivered twice —
 * a completion never reaches a guest twice.
 *
 * Wire header (little endian, 24 bytes), then len bytes of body:
 *   u16 type   (RVS_T_* below; 0x100 and up are the channel layer's)
 *   u16 flags  (0)
 *   u32 len    body bytes
 *   u64 seq    0 for unsequenced messages (acks), else 1, 2, ...
 *   u64 ack    highest sequence number the sender has delivered
 */
#ifndef FAB_RVMBUS_SESSION_H
#define FAB_RVMBUS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rvs_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t len;
	uint64_t seq;
	uint64_t ack;
} __attribute__((packed));

_Static_assert(sizeof(struct rvs_hdr) == 24, "rvs_hdr");

#define RVS_T_ACK      0x0001 /* unsequenced, empty body: carries only ack */
#define RVS_T_USER_MIN 0x0100 /* channel-layer types start here */
#define RVS_MAX_BODY   (1u << 20)

struct rvs;

struct rvs_ops {
	/* Transmits one complete wire message (header + body). Returns 0, or
	 * a negative errno if the link cannot take it now (the message stays
	 * queued and goes out on the next rvs_link_up). Required. */
	int (*xmit_cb)(void *ctx, const void *msg, size_t len);
	/* One message from the peer, in order, exactly once. Required. */
	void (*deliver_cb)(void *ctx, uint16_t type, const void *body, size_t len);
};

/*
 * Creates a session whose resend queue holds at most window messages
 * (rvs_send refuses more with -ENOBUFS until acks free room). The link
 * starts down. Returns 0, -EINVAL or -ENOMEM.
 */
int rvs_create(const struct rvs_ops *ops, void *ctx, unsigned window, struct rvs **out);
void rvs_destroy(struct rvs *s);

/*
 * Sends a sequenced message of type (>= RVS_T_USER_MIN): queued for resend
 * until acked, transmitted now if the link is up. Returns 0, -EINVAL (type
 * or length), -ENOBUFS (window full: wait for acks), -ENOMEM.
 */
int rvs_send(struct rvs *s, uint16_t type, const void *body, size_t len);

/*
 * A wire message from the transport. Validates the header first; delivers
 * the body if it is the next in sequence, drops an old duplicate, frees
 * acked messages. Returns 0 (including a dropped duplicate), -EBADMSG
 * (malformed: length, type, or an ack of something never sent) or -EPROTO
 * (a sequence gap: the transport lost or reordered a message). On an error
 * the caller drops the link (rvs_link_down) and reconnects.
 */
int rvs_rx(struct rvs *s, const void *msg, size_t len);

/* The transport is gone: nothing is transmitted until rvs_link_up. */
void rvs_link_down(struct rvs *s);

/*
 * The transport is back and the peer said it has delivered up to
 * peer_delivered: messages up to it are freed, the rest transmitted again
 * in order. Returns 0, -EPROTO (peer_delivered beyond what was sent: a
 * different session), or the first transmit error.
 */
int rvs_link_up(struct rvs *s, uint64_t peer_delivered);

/* Highest sequence number of ours the peer has acknowledged. After a
 * transmit refused for congestion, rvs_link_up(s, rvs_peer_acked(s))
 * sends the unacknowledged rest again (duplicates are dropped). */
uint64_t rvs_peer_acked(const struct rvs *s);

/* Highest sequence number delivered from the peer (for the hello). */
uint64_t rvs_delivered(const struct rvs *s);

/* Sends a standalone ack if messages were delivered since the last ack
 * went out (piggybacked or standalone). Returns 0 or the transmit error. */
int rvs_ack(struct rvs *s);

struct rvs_stats {
	uint64_t sent, resent, delivered, duplicates, queued;
};
void rvs_get_stats(const struct rvs *s, struct rvs_stats *out);

#endif
