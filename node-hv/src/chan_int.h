/* SPDX-License-Identifier: MIT */
/* Channel internals shared by chan.c and vmbus_host.c. */
#ifndef NHV_CHAN_INT_H
#define NHV_CHAN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fab/vmbus_ring.h"
#include "shadow.h"
#include "vsp.h"

/* A packet waiting for a shadow channel's worker. */
struct shadow_pkt {
	struct shadow_pkt *next;
	size_t len;	/* packet bytes */
	size_t inl_len; /* inline data after them */
	uint8_t bytes[];
};

struct nhv_chan {
	struct nhv_partition *p;
	const struct nhv_vsp_ops *ops;
	void *dev;
	struct nhv_chan *next; /* in the partition's VMBus channel list */
	uint32_t relid;
	uint32_t conn_id;
	int doorbell_fd; /* ioeventfd for conn_id (owned by vtx) */
	int wake_fd;	 /* eventfd: HvSignalEvent, stop */

	/* While open: */
	pthread_mutex_t send_lock; /* serializes writers of the inbound ring */
	bool open;
	atomic_bool failed;
	atomic_bool stop;
	uint32_t target_vp;
	uint8_t *map; /* the ring GPADL's pages, contiguous in our address space */
	size_t map_len;
	struct vmbus_ring out; /* guest -> host: we read */
	struct vmbus_ring in;  /* host -> guest: we write */
	pthread_t worker;
	uint8_t *rxbuf;

	atomic_uint_fast64_t n_rx, n_tx, n_signals_in, n_signals_out;

	/* Checkpoints: while hold is set the worker takes no packet from the
	 * guest and runs no tick; it sets quiet (under q_lock, q_cond
	 * broadcast) once nothing is in flight, and clears it when released.
	 * restored: the worker skips the VSP's open (restore did its work).
	 * The ring GPADL and layout, for saving. */
	atomic_bool hold;
	bool quiet;
	bool restored;
	uint32_t ring_gpadl;
	uint32_t downstream_pages;

	/* Shadow channels only (p is NULL): see shadow.h. */
	const struct nhv_shadow_ops *shadow;
	void *shadow_ctx;
	char label[96];
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct shadow_pkt *q_head, *q_tail;
	unsigned q_len;
	/* The packet the worker is handling: its first GPA range and the
	 * inline data for it, both ways (worker thread only). */
	bool cur_range;
	uint32_t cur_offset, cur_count;
	uint64_t cur_pfn0;
	const uint8_t *in_inl;
	size_t in_inl_len;
	uint8_t *out_inl; /* NHV_SHADOW_MAX_INLINE bytes, allocated on first use */
	uint32_t out_inl_len;
	bool out_inl_on;
	bool no_inline; /* NHV_SHADOW_NO_INLINE */
};

/* Creates a channel for a device (not yet offered) and its doorbell. */
int nhv_chan_new(struct nhv_partition *p, const struct nhv_vsp_ops *ops, void *dev, uint32_t relid,
		 uint32_t conn_id, struct nhv_chan **out);
/*
 * Opens the channel on a ring GPADL: maps its npfns pages (checked against
 * guest RAM) contiguously, the outbound ring in the first downstream pages
 * and the inbound ring in the rest, and starts the worker, which calls the
 * VSP's open. Returns 0 or a negative errno (nothing left behind).
 */
int nhv_chan_open(struct nhv_chan *ch, const uint64_t *pfns, uint32_t npfns,
		  uint32_t downstream_pages, uint32_t target_vp);
/* Holds the channel's worker (see hold above) or releases it. Hold
 * returns at once; nhv_chan_wait_quiet waits until the worker is quiet
 * (true) or the deadline (fab_mono_ms) passed (false). Control threads. */
void nhv_chan_hold(struct nhv_chan *ch, bool hold);
bool nhv_chan_wait_quiet(struct nhv_chan *ch, int64_t deadline_ms);
/* Stops the worker, calls the VSP's close, unmaps. Idempotent. */
void nhv_chan_close(struct nhv_chan *ch);
/* Closes if open, frees the device (ops->free) and the channel. */
void nhv_chan_free(struct nhv_chan *ch);

#endif
