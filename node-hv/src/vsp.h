/* SPDX-License-Identifier: MIT */
/*
 * VSP framework: how a device provider plugs into a partition's VMBus.
 *
 * A VSP is a table of callbacks for one interface type GUID. Attaching a
 * device to a partition offers one channel; when the guest opens it, the
 * channel's rings are mapped and a worker thread (never a vCPU thread)
 * waits on the channel's doorbell, drains the guest's ring and hands each
 * packet to the VSP. Replies go out with nhv_chan_send_*(), from the worker
 * thread or any other thread (sends are serialized per channel).
 */
#ifndef NHV_VSP_H
#define NHV_VSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/vmbus_ring.h"

struct nhv_chan;
struct nhv_partition;

struct nhv_vsp_ops {
	const char *name;      /* "storage", "heartbeat", "shutdown" */
	uint8_t type_guid[16]; /* wire byte order */
	uint32_t tick_ms;      /* if non-zero, tick() runs this often while open */
	/* Channel opened by the guest (worker thread). Non-zero refuses it. */
	int (*open)(struct nhv_chan *ch);
	/* A packet from the guest, copied out of the ring and validated by
	 * vmbus_pkt_parse (worker thread). */
	void (*packet)(struct nhv_chan *ch, const struct vmbus_pkt_view *pkt);
	void (*tick)(struct nhv_chan *ch);
	/* Optional: false leaves further packets in the guest's ring for now
	 * (the VSP cannot take more; it kicks the channel when it can). */
	bool (*can_take)(struct nhv_chan *ch);
	/* Optional: the worker woke up (doorbell or kick), before draining. */
	void (*wake)(struct nhv_chan *ch);
	/* Channel closed or partition going away (worker thread, or the
	 * destroying thread after the worker stopped). */
	void (*close)(struct nhv_chan *ch);
	/* Frees dev (attach's private data) when the partition is destroyed. */
	void (*free)(void *dev);
	/*
	 * Checkpoints (checkpoint.c), all optional. idle: nothing of this
	 * channel is in flight (worker thread, while the channel is held);
	 * without it a VSP is idle whenever its worker is between packets,
	 * which is true of VSPs that complete each packet before the next.
	 * save: the VSP's protocol state of an open, quiet channel into buf
	 * (at most cap bytes; *len is what it wrote); returns 0 or -ENOSPC.
	 * restore: loads what save wrote into the freshly opened channel of
	 * a restored partition, instead of open; the bytes are untrusted
	 * (validate everything); returns 0 or -EBADMSG. Both run on a
	 * control thread while the worker is held or not yet started.
	 */
	bool (*idle)(struct nhv_chan *ch);
	int (*save)(struct nhv_chan *ch, uint8_t *buf, size_t cap, size_t *len);
	int (*restore)(struct nhv_chan *ch, const uint8_t *buf, size_t len);
};

/* Offers a channel for a device of this VSP to the partition's guest; dev
 * is the VSP's per-device data. Before or after start. Returns 0 or a
 * negative errno. */
int nhv_vsp_attach(struct nhv_partition *p, const struct nhv_vsp_ops *ops, void *dev,
		   struct nhv_chan **out);

void *nhv_chan_dev(struct nhv_chan *ch);
struct nhv_partition *nhv_chan_partition(struct nhv_chan *ch);
uint32_t nhv_chan_relid(struct nhv_chan *ch);

/*
 * Sends to the guest's inbound ring: in-band data (flags may request a
 * completion) or a completion for trans_id. Waits up to timeout for ring
 * space if the guest is slow. Returns 0, -ENOTCONN (channel not open),
 * -ETIMEDOUT (guest did not make room), -EMSGSIZE.
 */
int nhv_chan_send_inband(struct nhv_chan *ch, uint64_t trans_id, uint16_t flags, const void *data,
			 uint32_t len);
int nhv_chan_send_completion(struct nhv_chan *ch, uint64_t trans_id, const void *data,
			     uint32_t len);

/* Wakes the channel's worker (HvSignalEvent does; so does a VSP whose
 * can_take became true). Thread: any. */
void nhv_chan_kick(struct nhv_chan *ch);

/* Sets the channel's event flag in the guest and wakes its vCPU. */
void nhv_chan_signal_guest(struct nhv_chan *ch);

/* Copies between host memory and a guest buffer given as a GPA range
 * (byte_offset into the first of the pfns, byte_count long), at offset
 * within it; every page is checked against guest RAM. Returns 0, -EFAULT
 * (a page outside RAM) or -EINVAL (offset/len beyond the range). */
int nhv_chan_copy_to_guest(struct nhv_chan *ch, uint32_t byte_offset, uint32_t byte_count,
			   const uint64_t *pfns, uint64_t off, const void *src, size_t len);
int nhv_chan_copy_from_guest(struct nhv_chan *ch, uint32_t byte_offset, uint32_t byte_count,
			     const uint64_t *pfns, uint64_t off, void *dst, size_t len);

/* The guest broke the channel's protocol: log once, close the channel's
 * rings for good (further packets are ignored). */
void nhv_chan_fail(struct nhv_chan *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
