// SPDX-License-Identifier: MIT
/*
 * VMBus ring buffers: writer, reader, packet builders and the packet parser.
 * See fab/vmbus_ring.h for the contract and the trust model.
 *
 * Freestanding: only memcpy/memset from <string.h>, E* from <errno.h>, and
 * the compiler's __atomic builtins for shared-memory accesses and barriers.
 *
 * Shared-memory rules followed throughout:
 *  - every control-page field is accessed with an __atomic builtin, so the
 *    compiler neither tears nor re-fetches it (READ_ONCE/WRITE_ONCE);
 *  - a value the peer controls is loaded once into a local, validated, and
 *    only the local is used afterwards;
 *  - the index a side owns is kept privately in the view and only ever
 *    stored to the control page, never read back, so the peer cannot move
 *    where we write or read from.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/vmbus_ring.h"

#define DESC_LEN      ((uint32_t)sizeof(struct vmbus_pkt_desc))
#define GPA_HDR_LEN   ((uint32_t)sizeof(struct vmbus_gpa_direct_hdr))
#define RANGE_HDR_LEN ((uint32_t)sizeof(struct vmbus_gpa_range_hdr))
#define TRAILER_LEN   VMBUS_RING_TRAILER_LEN
#define PAGE_SIZE     VMBUS_RING_PAGE_SIZE
/* Indices are u32 byte offsets, so the data area must stay below 4 GiB. */
#define MAX_DATA_SIZE 0xfffff000u

/* The descriptor is read from the ring with two 8-byte loads; the data area
 * may hold anything the peer wrote, so tell the compiler it aliases. */
typedef uint64_t __attribute__((may_alias)) u64_alias;

static uint64_t align8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* PFNs a range touches: its first page plus every page its bytes reach. */
static uint64_t range_pfn_count(uint32_t byte_offset, uint32_t byte_count)
{
	return ((uint64_t)byte_offset + byte_count + PAGE_SIZE - 1) / PAGE_SIZE;
}

/* An index the peer could have written: inside the data area and on a
 * packet boundary, which keeps descriptors and trailers from straddling
 * the end of the area in the middle of a u64. */
static bool index_ok(const struct vmbus_ring *r, uint32_t idx)
{
	return idx < r->size && (idx & 7) == 0;
}

/* off + n modulo the data size, for off < size and n <= size, without
 * overflowing 32 bits even for a data area close to 4 GiB. */
static uint32_t ring_add(const struct vmbus_ring *r, uint32_t off, uint32_t n)
{
	uint32_t to_end = r->size - off;

	return n < to_end ? off + n : n - to_end;
}

/* facts 4.1; both indices valid. */
static uint32_t space_to_read(const struct vmbus_ring *r, uint32_t wr, uint32_t rd)
{
	return wr >= rd ? wr - rd : r->size - rd + wr;
}

static uint32_t space_to_write(const struct vmbus_ring *r, uint32_t wr, uint32_t rd)
{
	return wr >= rd ? r->size - (wr - rd) : rd - wr;
}

/* Copies n <= size bytes into the ring at off, wrapping at the end. */
static void ring_copy_to(struct vmbus_ring *r, uint32_t off, const void *src, uint32_t n)
{
	uint32_t to_end = r->size - off;

	if (n <= to_end) {
		memcpy(r->data + off, src, n);
	} else {
		memcpy(r->data + off, src, to_end);
		memcpy(r->data, (const uint8_t *)src + to_end, n - to_end);
	}
}

static void ring_copy_from(const struct vmbus_ring *r, uint32_t off, void *dst, uint32_t n)
{
	uint32_t to_end = r->size - off;

	if (n <= to_end) {
		memcpy(dst, r->data + off, n);
	} else {
		memcpy(dst, r->data + off, to_end);
		memcpy((uint8_t *)dst + to_end, r->data, n - to_end);
	}
}

/*
 * Loads the descriptor at off (a valid index) exactly once. Each half is an
 * aligned u64 that cannot straddle the wrap point (the size is a multiple of
 * 8), and the atomic loads keep the compiler from re-reading shared memory
 * where the code uses the local copy: what is validated is what is used.
 */
static void ring_load_desc(const struct vmbus_ring *r, uint32_t off, struct vmbus_pkt_desc *d)
{
	uint64_t w[2];

	w[0] = __atomic_load_n((const u64_alias *)(r->data + off), __ATOMIC_RELAXED);
	w[1] = __atomic_load_n((const u64_alias *)(r->data + ring_add(r, off, 8)),
			       __ATOMIC_RELAXED);
	memcpy(d, w, sizeof(*d));
}

/*
 * The one descriptor check, used on both sides: a writer never sends what a
 * reader would reject. avail is the most bytes the packet (without trailer)
 * may occupy. offset8 >= 2 with offset8 <= len8 implies len8 * 8 >= 16.
 */
static int desc_check(const struct vmbus_pkt_desc *d, uint32_t avail)
{
	if (d->type < VM_PKT_SYNCH || d->type > VM_PKT_ADDITIONAL_DATA)
		return -EPROTO;
	if (d->offset8 < DESC_LEN / 8 || d->offset8 > d->len8)
		return -EPROTO;
	if ((uint32_t)d->len8 * 8 > avail)
		return -EPROTO;
	return 0;
}

int vmbus_ring_init(struct vmbus_ring *r, void *base, size_t total_bytes)
{
	if (!r || !base)
		return -EINVAL;
	if ((uintptr_t)base % PAGE_SIZE || total_bytes % PAGE_SIZE || total_bytes < 2 * PAGE_SIZE ||
	    total_bytes - PAGE_SIZE > MAX_DATA_SIZE)
		return -EINVAL;

	r->ctl = base;
	r->data = (uint8_t *)base + PAGE_SIZE;
	r->size = (uint32_t)(total_bytes - PAGE_SIZE);
	/*
	 * Relaxed: the ring reached this side through a hand-off (the channel
	 * open) that orders the creator's reset before us. The snapshot is not
	 * validated here: every read and write checks it.
	 */
	r->wr = __atomic_load_n(&r->ctl->write_index, __ATOMIC_RELAXED);
	r->rd = __atomic_load_n(&r->ctl->read_index, __ATOMIC_RELAXED);
	return 0;
}

void vmbus_ring_reset(struct vmbus_ring *r)
{
	memset(r->ctl, 0, sizeof(*r->ctl));
	__atomic_store_n(&r->ctl->feature_bits, VMBUS_RING_FEAT_PENDING_SEND_SZ, __ATOMIC_RELAXED);
	r->wr = 0;
	r->rd = 0;
	/*
	 * Release: whatever store later publishes the ring to the peer (a
	 * message, a doorbell) must not become visible before the reset page,
	 * even if that transport does not order memory itself.
	 */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

/* ---- writer ------------------------------------------------------------- */

/* A packet being written: where it starts and the next byte to fill. */
struct ring_txn {
	uint32_t start;
	uint32_t off;
};

/* Reserves pkt_len bytes (a multiple of 8) plus the trailer, or says why
 * not. Nothing in the ring is touched. */
static int ring_begin(struct vmbus_ring *r, uint64_t pkt_len, struct ring_txn *t)
{
	uint32_t rd, need;

	if (pkt_len > VMBUS_PKT_MAX_LEN || pkt_len + TRAILER_LEN >= r->size)
		return -EMSGSIZE;
	need = (uint32_t)pkt_len + TRAILER_LEN;
	if (!index_ok(r, r->wr))
		return -EPROTO;
	/*
	 * Acquire pairs with the reader's release store of read_index: the
	 * reader's copies out of the space it freed are complete before we
	 * overwrite that space below.
	 */
	rd = __atomic_load_n(&r->ctl->read_index, __ATOMIC_ACQUIRE);
	if (!index_ok(r, rd))
		return -EPROTO;
	/* Never fill the ring exactly: w == r must keep meaning empty. */
	if (space_to_write(r, r->wr, rd) <= need)
		return -EAGAIN;
	t->start = r->wr;
	t->off = r->wr;
	return 0;
}

static void ring_put(struct vmbus_ring *r, struct ring_txn *t, const void *p, uint32_t n)
{
	if (!n)
		return;
	ring_copy_to(r, t->off, p, n);
	t->off = ring_add(r, t->off, n);
}

/* Padding: n < 8, up to the next 8-byte boundary. */
static void ring_put_pad(struct vmbus_ring *r, struct ring_txn *t, uint32_t n)
{
	static const uint8_t zeros[8];

	ring_put(r, t, zeros, n);
}

/* Writes the trailer, publishes the packet and decides about the signal. */
static void ring_commit(struct vmbus_ring *r, struct ring_txn *t, bool *signal)
{
	uint64_t trailer = (uint64_t)t->start << 32;
	uint32_t mask, rd;

	ring_put(r, t, &trailer, sizeof(trailer));
	/*
	 * Release: the packet and trailer are visible before the index that
	 * makes the reader look at them (pairs with the acquire load in
	 * vmbus_ring_read). Linux uses a full barrier here; only the ordering
	 * of earlier stores before this store is needed, which release gives.
	 */
	__atomic_store_n(&r->ctl->write_index, t->off, __ATOMIC_RELEASE);
	r->wr = t->off;

	/*
	 * Full barrier: the write_index store must be visible before we load
	 * interrupt_mask (store->load order, which only a full barrier gives).
	 * The reader does the mirror image (store interrupt_mask = 0, full
	 * barrier, load write_index), so either we see its unmask and signal,
	 * or it sees our packet on its final emptiness check.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Acquire: read_index below is loaded after the mask (as Linux's
	 * virt_rmb); a reader that unmasked has finished moving read_index. */
	mask = __atomic_load_n(&r->ctl->interrupt_mask, __ATOMIC_ACQUIRE);
	if (mask) {
		*signal = false;
		return;
	}
	/*
	 * Re-read read_index rather than using the one from ring_begin: if the
	 * reader drained up to our packet in the meantime it may now be asleep,
	 * and only a signal wakes it. A spurious signal costs little; a missed
	 * one hangs the channel.
	 */
	rd = __atomic_load_n(&r->ctl->read_index, __ATOMIC_RELAXED);
	*signal = rd == t->start;
}

int vmbus_ring_write(struct vmbus_ring *r, const struct vmbus_iov *iov, unsigned niov, bool *signal)
{
	struct vmbus_pkt_desc d;
	struct ring_txn t;
	uint64_t total = 0;
	size_t got = 0;
	unsigned i;
	int rc;

	*signal = false;
	if (niov && !iov)
		return -EINVAL;
	for (i = 0; i < niov; i++) {
		if (iov[i].len && !iov[i].base)
			return -EINVAL;
		/* Bounding each piece keeps the 64-bit sum from overflowing. */
		if (iov[i].len > VMBUS_PKT_MAX_LEN)
			return -EMSGSIZE;
		total += iov[i].len;
		/* Gather the descriptor, which may be split over pieces. */
		if (got < DESC_LEN) {
			size_t n = DESC_LEN - got < iov[i].len ? DESC_LEN - got : iov[i].len;

			if (n)
				memcpy((uint8_t *)&d + got, iov[i].base, n);
			got += n;
		}
	}
	if (total > VMBUS_PKT_MAX_LEN)
		return -EMSGSIZE;
	if (got < DESC_LEN || total % 8 || desc_check(&d, (uint32_t)total) ||
	    (uint32_t)d.len8 * 8 != total)
		return -EINVAL;

	rc = ring_begin(r, total, &t);
	if (rc)
		return rc;
	for (i = 0; i < niov; i++)
		ring_put(r, &t, iov[i].base, (uint32_t)iov[i].len);
	ring_commit(r, &t, signal);
	return 0;
}

/* In-band and completion packets: descriptor, data, padding. */
static int send_simple(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		       const void *data, uint32_t len, bool *signal)
{
	uint64_t pkt_len = align8((uint64_t)DESC_LEN + len);
	struct vmbus_pkt_desc d;
	struct ring_txn t;
	int rc;

	*signal = false;
	if (len && !data)
		return -EINVAL;
	rc = ring_begin(r, pkt_len, &t);
	if (rc)
		return rc;

	d.type = type;
	d.offset8 = DESC_LEN / 8;
	d.len8 = (uint16_t)(pkt_len / 8);
	d.flags = flags;
	d.trans_id = trans_id;
	ring_put(r, &t, &d, DESC_LEN);
	ring_put(r, &t, data, len);
	/* Zero, not stale ring bytes: padding must not leak older packets. */
	ring_put_pad(r, &t, (uint32_t)(pkt_len - DESC_LEN - len));
	ring_commit(r, &t, signal);
	return 0;
}

int vmbus_ring_send_inband(struct vmbus_ring *r, uint64_t trans_id, uint16_t flags,
			   const void *data, uint32_t len, bool *signal)
{
	return send_simple(r, VM_PKT_DATA_INBAND, flags, trans_id, data, len, signal);
}

int vmbus_ring_send_completion(struct vmbus_ring *r, uint64_t trans_id, const void *data,
			       uint32_t len, bool *signal)
{
	return send_simple(r, VM_PKT_COMP, 0, trans_id, data, len, signal);
}

/* Validates a GPA-direct request and computes its header (descriptor up to
 * the in-band data) and packet lengths. */
static int gpa_direct_layout(const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
			     uint32_t len, uint32_t *hdr_len, uint32_t *pkt_len)
{
	uint64_t hdr = GPA_HDR_LEN, pkt;
	unsigned i;

	if (!ranges || nranges == 0 || nranges > VMBUS_GPA_MAX_RANGES)
		return -EINVAL;
	for (i = 0; i < nranges; i++) {
		const struct vmbus_gpa_range_desc *g = &ranges[i];

		if (g->byte_count == 0 || g->byte_offset >= PAGE_SIZE || !g->pfns)
			return -EINVAL;
		/* At most 64 * (8 + 8 * 2^20) bytes: no overflow in 64 bits. */
		hdr += RANGE_HDR_LEN + 8 * range_pfn_count(g->byte_offset, g->byte_count);
	}
	pkt = align8(hdr + len);
	if (pkt > VMBUS_PKT_MAX_LEN)
		return -EMSGSIZE;
	*hdr_len = (uint32_t)hdr;
	*pkt_len = (uint32_t)pkt;
	return 0;
}

int vmbus_ring_gpa_direct_bytes(const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
				uint32_t len, uint32_t *bytes)
{
	uint32_t hdr_len, pkt_len;
	int rc;

	rc = gpa_direct_layout(ranges, nranges, len, &hdr_len, &pkt_len);
	if (rc)
		return rc;
	*bytes = pkt_len + TRAILER_LEN;
	return 0;
}

int vmbus_ring_send_gpa_direct(struct vmbus_ring *r, uint64_t trans_id, uint16_t flags,
			       const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
			       const void *data, uint32_t len, bool *signal)
{
	struct vmbus_gpa_direct_hdr h;
	uint32_t hdr_len, pkt_len;
	struct ring_txn t;
	unsigned i;
	int rc;

	*signal = false;
	if (len && !data)
		return -EINVAL;
	rc = gpa_direct_layout(ranges, nranges, len, &hdr_len, &pkt_len);
	if (rc)
		return rc;
	rc = ring_begin(r, pkt_len, &t);
	if (rc)
		return rc;

	h.d.type = VM_PKT_DATA_USING_GPA_DIRECT;
	h.d.offset8 = (uint16_t)(hdr_len / 8);
	h.d.len8 = (uint16_t)(pkt_len / 8);
	h.d.flags = flags;
	h.d.trans_id = trans_id;
	h.reserved = 0;
	h.range_count = nranges;
	ring_put(r, &t, &h, GPA_HDR_LEN);
	for (i = 0; i < nranges; i++) {
		struct vmbus_gpa_range_hdr rh = {
			.byte_count = ranges[i].byte_count,
			.byte_offset = ranges[i].byte_offset,
		};
		uint32_t npfn = (uint32_t)range_pfn_count(rh.byte_offset, rh.byte_count);

		ring_put(r, &t, &rh, RANGE_HDR_LEN);
		ring_put(r, &t, ranges[i].pfns, npfn * 8);
	}
	ring_put(r, &t, data, len);
	ring_put_pad(r, &t, pkt_len - hdr_len - len);
	ring_commit(r, &t, signal);
	return 0;
}

int vmbus_ring_want_space(struct vmbus_ring *r, uint32_t bytes)
{
	if (bytes >= r->size)
		return -EMSGSIZE;
	__atomic_store_n(&r->ctl->pending_send_sz, bytes, __ATOMIC_RELAXED);
	/*
	 * Full barrier: pending_send_sz must be visible before the retry loads
	 * read_index (store->load). The reader mirrors it in
	 * vmbus_ring_read_done_signal (store read_index, full barrier, load
	 * pending_send_sz): either our retry sees the freed space or the reader
	 * sees our request and signals. Harmless when withdrawing (bytes 0).
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

uint32_t vmbus_ring_bytes_to_write(struct vmbus_ring *r)
{
	uint32_t rd = __atomic_load_n(&r->ctl->read_index, __ATOMIC_RELAXED);

	if (!index_ok(r, rd) || !index_ok(r, r->wr))
		return 0;
	return space_to_write(r, r->wr, rd);
}

/* ---- reader ------------------------------------------------------------- */

int vmbus_ring_read(struct vmbus_ring *r, void *buf, size_t buflen, size_t *pkt_len)
{
	struct vmbus_pkt_desc d;
	uint32_t rd = r->rd, wr, avail, len;

	*pkt_len = 0;
	if (!index_ok(r, rd))
		return -EPROTO;
	/*
	 * Acquire pairs with the writer's release store of write_index: the
	 * packet bytes it published are loaded only after the index that
	 * covers them. Loaded once; every check below uses this copy.
	 */
	wr = __atomic_load_n(&r->ctl->write_index, __ATOMIC_ACQUIRE);
	if (!index_ok(r, wr))
		return -EPROTO;
	if (wr == rd)
		return -EAGAIN;
	/* Writers publish whole packets only, so less than the smallest
	 * packet (bare descriptor + trailer) means the index is corrupt. */
	avail = space_to_read(r, wr, rd);
	if (avail < DESC_LEN + TRAILER_LEN)
		return -EPROTO;

	ring_load_desc(r, rd, &d);
	if (desc_check(&d, avail - TRAILER_LEN))
		return -EPROTO;
	len = (uint32_t)d.len8 * 8;
	*pkt_len = len;
	if (buflen < len)
		return -EMSGSIZE;

	/*
	 * The descriptor comes from the validated local copy, not from the
	 * ring a second time, which the peer may have changed since.
	 */
	memcpy(buf, &d, DESC_LEN);
	ring_copy_from(r, ring_add(r, rd, DESC_LEN), (uint8_t *)buf + DESC_LEN, len - DESC_LEN);

	rd = ring_add(r, rd, len + TRAILER_LEN);
	/*
	 * Release: our copies out of the packet's space complete before the
	 * writer can see the space as free and overwrite it (pairs with the
	 * acquire load of read_index in ring_begin).
	 */
	__atomic_store_n(&r->ctl->read_index, rd, __ATOMIC_RELEASE);
	r->rd = rd;
	return 0;
}

bool vmbus_ring_read_done_signal(struct vmbus_ring *r, uint32_t bytes_read)
{
	uint32_t pending, wr, space, before;

	/* A writer that does not know the protocol polls instead. */
	if (!(__atomic_load_n(&r->ctl->feature_bits, __ATOMIC_RELAXED) &
	      VMBUS_RING_FEAT_PENDING_SEND_SZ))
		return false;
	/*
	 * Full barrier: the read_index stores done by vmbus_ring_read must be
	 * visible before we load pending_send_sz (store->load). Mirror of
	 * vmbus_ring_want_space: a writer that set pending_send_sz after this
	 * load sees the new read_index on its retry.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Acquire: write_index below is loaded after pending_send_sz, or an
	 * older write_index (more free space) could make us skip the signal
	 * for a request the writer made after writing more. */
	pending = __atomic_load_n(&r->ctl->pending_send_sz, __ATOMIC_ACQUIRE);
	if (!pending)
		return false;
	wr = __atomic_load_n(&r->ctl->write_index, __ATOMIC_RELAXED);
	if (!index_ok(r, wr) || !index_ok(r, r->rd))
		return false; /* the next read reports the corruption */

	space = space_to_write(r, wr, r->rd);
	/*
	 * Signal only on the transition from "not enough" to "enough" (free
	 * space strictly above pending, since a ring is never filled exactly).
	 * If the writer wrote concurrently, space - bytes_read can go below
	 * zero; Linux's unsigned arithmetic then skips the signal, we clamp
	 * and signal instead: a spurious signal is cheap, a lost one a hang.
	 */
	before = space > bytes_read ? space - bytes_read : 0;
	if (before > pending)
		return false;
	return space > pending;
}

void vmbus_ring_set_interrupt_mask(struct vmbus_ring *r, bool masked)
{
	__atomic_store_n(&r->ctl->interrupt_mask, masked ? 1u : 0u, __ATOMIC_RELAXED);
	/*
	 * Full barrier: after unmasking, the caller's emptiness check must load
	 * write_index only after the unmask is visible (store->load). Mirror of
	 * ring_commit (store write_index, full barrier, load interrupt_mask), so
	 * a packet is either seen by that check or signalled. Masking does not
	 * need it (a signal too many is harmless), but one rule for both is
	 * simpler and matches Linux's hv_begin_read.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool vmbus_ring_empty(struct vmbus_ring *r)
{
	return __atomic_load_n(&r->ctl->write_index, __ATOMIC_RELAXED) == r->rd;
}

uint32_t vmbus_ring_bytes_to_read(struct vmbus_ring *r)
{
	uint32_t wr = __atomic_load_n(&r->ctl->write_index, __ATOMIC_RELAXED);

	if (!index_ok(r, wr) || !index_ok(r, r->rd))
		return 0;
	return space_to_read(r, wr, r->rd);
}

/* ---- parser (works on a private copy) ----------------------------------- */

/*
 * Decodes the GPA range at *pos of the range area [0, area) and advances
 * *pos past its PFNs. The single check of a range, used by the parser and
 * again by the accessor.
 */
static int range_at(const uint8_t *ranges, uint32_t area, uint32_t *pos,
		    struct vmbus_gpa_range_view *out)
{
	struct vmbus_gpa_range_hdr rh;
	uint64_t npfn;
	uint32_t p = *pos;

	if (p > area || area - p < RANGE_HDR_LEN)
		return -EPROTO;
	memcpy(&rh, ranges + p, RANGE_HDR_LEN);
	p += RANGE_HDR_LEN;
	if (rh.byte_count == 0 || rh.byte_offset >= PAGE_SIZE)
		return -EPROTO;
	npfn = range_pfn_count(rh.byte_offset, rh.byte_count);
	if (npfn > (area - p) / 8)
		return -EPROTO;
	out->byte_count = rh.byte_count;
	out->byte_offset = rh.byte_offset;
	out->pfn_count = (uint32_t)npfn;
	out->pfns = ranges + p;
	*pos = p + (uint32_t)npfn * 8;
	return 0;
}

int vmbus_pkt_parse(const void *pkt, size_t len, struct vmbus_pkt_view *v)
{
	const uint8_t *p = pkt;
	struct vmbus_pkt_desc d;
	uint32_t off, plen;

	if (len < DESC_LEN)
		return -EPROTO;
	memcpy(&d, p, DESC_LEN);
	if (desc_check(&d, len > VMBUS_PKT_MAX_LEN ? VMBUS_PKT_MAX_LEN : (uint32_t)len))
		return -EPROTO;
	off = (uint32_t)d.offset8 * 8;
	plen = (uint32_t)d.len8 * 8;

	v->type = d.type;
	v->flags = d.flags;
	v->trans_id = d.trans_id;
	v->pkt_len = plen;
	v->pkt = p;
	v->payload = p + off;
	v->payload_len = plen - off;
	v->range_count = 0;
	v->ranges = NULL;
	v->ranges_len = 0;

	if (d.type == VM_PKT_DATA_USING_GPA_DIRECT) {
		struct vmbus_gpa_direct_hdr h;
		struct vmbus_gpa_range_view rv;
		uint32_t i, pos = 0;

		if (off < GPA_HDR_LEN)
			return -EPROTO;
		memcpy(&h, p, GPA_HDR_LEN);
		if (h.range_count == 0 || h.range_count > VMBUS_GPA_MAX_RANGES)
			return -EPROTO;
		/* The ranges live in the descriptor area, before the payload. */
		for (i = 0; i < h.range_count; i++)
			if (range_at(p + GPA_HDR_LEN, off - GPA_HDR_LEN, &pos, &rv))
				return -EPROTO;
		v->range_count = h.range_count;
		v->ranges = p + GPA_HDR_LEN;
		v->ranges_len = off - GPA_HDR_LEN;
	}
	return 0;
}

int vmbus_pkt_range(const struct vmbus_pkt_view *v, uint32_t i, struct vmbus_gpa_range_view *out)
{
	uint32_t k, pos = 0;
	int rc;

	if (v->type != VM_PKT_DATA_USING_GPA_DIRECT || i >= v->range_count)
		return -EINVAL;
	/* Re-checked while walking: cheap, and safe even if the caller's copy
	 * changed after parsing. */
	for (k = 0; k <= i; k++) {
		rc = range_at(v->ranges, v->ranges_len, &pos, out);
		if (rc)
			return rc;
	}
	return 0;
}
