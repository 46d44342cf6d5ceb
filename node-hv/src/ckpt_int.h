/* SPDX-License-Identifier: MIT */
/*
 * Bounded little-endian writer and reader for checkpoint blobs (see
 * checkpoint.c), shared by the parts of node-hv that save their own state.
 * The writer counts what did not fit (a NULL buffer only measures); the
 * reader turns bad at the first overrun and then reads zeros, so a parser
 * can read a record field by field and check r->bad once.
 */
#ifndef NHV_CKPT_INT_H
#define NHV_CKPT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct nhv_ckw {
	uint8_t *buf;
	size_t cap, len;
};

struct nhv_ckr {
	const uint8_t *buf;
	size_t len, pos;
	bool bad;
};

static inline void nhv_ckw_put(struct nhv_ckw *w, const void *src, size_t n)
{
	if (w->buf && n <= w->cap && w->len <= w->cap - n)
		memcpy(w->buf + w->len, src, n);
	w->len += n;
}

static inline void nhv_ckw_u32(struct nhv_ckw *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	nhv_ckw_put(w, b, 4);
}

static inline void nhv_ckw_u64(struct nhv_ckw *w, uint64_t v)
{
	nhv_ckw_u32(w, (uint32_t)v);
	nhv_ckw_u32(w, (uint32_t)(v >> 32));
}

static inline bool nhv_ckw_overflow(const struct nhv_ckw *w)
{
	return w->buf && w->len > w->cap;
}

/* n bytes from the reader in place, or NULL (and bad) if fewer are left. */
static inline const uint8_t *nhv_ckr_take(struct nhv_ckr *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return NULL;
	}
	p = r->buf + r->pos;
	r->pos += n;
	return p;
}

static inline void nhv_ckr_get(struct nhv_ckr *r, void *dst, size_t n)
{
	const uint8_t *p = nhv_ckr_take(r, n);

	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

static inline uint32_t nhv_ckr_u32(struct nhv_ckr *r)
{
	uint8_t b[4];

	nhv_ckr_get(r, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t nhv_ckr_u64(struct nhv_ckr *r)
{
	uint64_t lo = nhv_ckr_u32(r);

	return lo | (uint64_t)nhv_ckr_u32(r) << 32;
}

/* VMBus host side of a checkpoint (vmbus_host.c). Save: the bus, its
 * manager, GPADLs and channels, each channel's VSP state; every channel
 * must be held and quiet. Restore: into a partition with the same devices
 * attached in the same order; validates everything, opens the open
 * channels held (released by start). Return 0 or a negative errno with
 * a reason in err. */
struct nhv_partition;
int nhv_vmbus_save(struct nhv_partition *p, struct nhv_ckw *w);
int nhv_vmbus_restore(struct nhv_partition *p, struct nhv_ckr *r, char *err, size_t errlen);
/* Holds (or releases) every channel; waits for quiet until deadline_ms
 * (fab_mono_ms). Returns 0 or -ETIMEDOUT with the channel named in err. */
int nhv_vmbus_hold(struct nhv_partition *p, bool hold, int64_t deadline_ms, char *err,
		   size_t errlen);
/* Marks the pages host code writes without nhv_dirty_mark: every open
 * channel's ring pages. bitmap has one bit per page of RAM. */
void nhv_vmbus_dirty_rings(struct nhv_partition *p, uint64_t *bitmap);

#endif
