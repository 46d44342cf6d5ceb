/* SPDX-License-Identifier: MIT */
/*
 * Shadow channels: an unmodified VSP serving a guest that runs on another
 * node (the rvmbus skeleton, fabric/rvmbus/REMOTE.md).
 *
 * A shadow channel is a struct nhv_chan without a partition or rings. The
 * skeleton pushes the guest's packets (exactly as read from its ring on the
 * guest's node); a worker thread hands them to the VSP's packet callback one
 * at a time, as a local channel's worker does. What the VSP does through
 * the channel functions of vsp.h goes to the shadow ops instead: sends
 * become messages back to the guest's node, copies between the VSP and
 * guest buffers become remote reads and writes of the guest's RAM, and
 * nhv_chan_signal_guest is a no-op (the stub signals the guest).
 *
 * Inline data (a round trip saved each way): a packet may be pushed with
 * the bytes of its first GPA range (the guest's buffer, read by the stub);
 * the VSP's copies from that range are then served from them. For a
 * GPA-direct packet whose first range is at most NHV_SHADOW_MAX_INLINE
 * bytes, the VSP's copies into that range that extend what it wrote from
 * offset 0 are collected and handed to the next send (the stub writes
 * them into the guest before it delivers that send); other copies go
 * through the copy op.
 *
 * Shadow channels have no tick (ops->tick_ms is ignored) and
 * nhv_chan_partition() returns NULL for them.
 */
#ifndef NHV_SHADOW_H
#define NHV_SHADOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nhv_chan;
struct nhv_vsp_ops;

#define NHV_SHADOW_MAX_INLINE (256u << 10)

struct nhv_shadow_ops {
	/* The VSP sends to the guest: in-band data (flags as in
	 * nhv_chan_send_inband) or, if completion, a completion for trans_id;
	 * inl/inl_len: bytes [0, inl_len) of the current packet's first GPA
	 * range the VSP wrote (inline data, above), or NULL/0. Worker thread.
	 * Returns 0 or a negative errno (handed to the VSP). */
	int (*send)(void *ctx, bool completion, uint64_t trans_id, uint16_t flags,
		    const void *data, uint32_t len, const void *inl, uint32_t inl_len);
	/* Copies len bytes at guest physical address gpa (one contiguous
	 * run) to or from buf. Worker thread; may block. Returns 0, -EFAULT
	 * (outside the guest's RAM) or another negative errno. */
	int (*copy)(void *ctx, bool to_guest, uint64_t gpa, void *buf, size_t len);
	/* The VSP gave up on the channel (nhv_chan_fail): why. Optional. */
	void (*failed)(void *ctx, const char *why);
	/* The VSP returned from one pushed packet (flow control). Optional. */
	void (*done)(void *ctx);
};

/* nhv_shadow_new flags */
#define NHV_SHADOW_NO_INLINE 1u /* never collect copies into the guest for a send
				   (the transport moves bulk data natively) */

/* Creates a shadow channel for a device of this VSP (dev is freed with
 * ops->free by nhv_shadow_free). label names it in logs. The worker starts
 * at once and calls ops->open. Returns 0 or a negative errno (dev is then
 * still the caller's). */
int nhv_shadow_new(const struct nhv_vsp_ops *ops, void *dev, const struct nhv_shadow_ops *sops,
		   void *ctx, const char *label, unsigned flags, struct nhv_chan **out);

/* Queues a copy of one raw VMBus packet for the VSP, with inline data of
 * its first GPA range (inl may be NULL). Any thread. Returns 0, -ENOMEM,
 * or -EPIPE (the channel failed or is closing). A packet that is not a
 * valid VMBus packet fails the channel when the worker reaches it. */
int nhv_shadow_push(struct nhv_chan *ch, const void *pkt, size_t len, const void *inl,
		    size_t inl_len);

/* Packets queued and not yet handled. Any thread. */
unsigned nhv_shadow_queued(struct nhv_chan *ch);

/* Stops the worker (after the packet it is handling), drops what is still
 * queued, calls ops->close and ops->free. Any thread but the worker. */
void nhv_shadow_free(struct nhv_chan *ch);

#endif
