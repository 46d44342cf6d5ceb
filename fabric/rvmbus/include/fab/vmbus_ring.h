/* SPDX-License-Identifier: MIT */
/*
 * VMBus ring buffers and packets (Hyper-V compatible, see
 * shared/vmbus-facts.md section 4).
 *
 * A ring is a 4 KiB control page followed by a data area of a multiple of
 * 4 KiB. The writer owns write_index and pending_send_sz, the reader owns
 * read_index and interrupt_mask. Each packet in the data area is a 16-byte
 * descriptor, whatever the packet type puts after it, padding to 8 bytes,
 * and an 8-byte trailer; indices are byte offsets into the data area and
 * always multiples of 8. A ring is never filled exactly, so r == w means
 * empty.
 *
 * This code is shared by the host library, the guest images and the tests.
 * It is freestanding: no allocation, no locks, no logging, no floating point.
 *
 * Trust: the peer can rewrite any byte of the shared pages at any time. Each
 * side keeps a private copy of the index it owns, reads the peer's index once
 * per operation and validates it, and the reader copies a packet out of the
 * ring before anything parses it. A hostile peer can therefore make calls
 * fail (-EPROTO, after which the caller should close the channel) or deliver
 * garbage packets, but it cannot make this code access memory outside the
 * ring or the caller's buffers.
 *
 * Threads: a struct vmbus_ring is not locked. At most one thread may write
 * and at most one thread may read through views of the same ring at a time
 * (the writer and the reader may run concurrently, on either side of the
 * partition boundary). Serialising several writers is the caller's job.
 *
 * Errors: functions return 0 or a negative errno:
 *   -EINVAL   bad arguments (a programmer error on this side);
 *   -EAGAIN   ring empty (read) or not enough space (write): try later;
 *   -EMSGSIZE the packet can never fit (write) or the buffer is too small
 *             (read; the packet stays in the ring);
 *   -EPROTO   the shared state or a packet is corrupt: fail the channel.
 */
#ifndef FAB_VMBUS_RING_H
#define FAB_VMBUS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every multi-byte wire field is little-endian; the structs below are read
 * and written in host byte order, so only little-endian hosts are supported. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "VMBus wire format is little-endian");

#define VMBUS_RING_PAGE_SIZE		4096u
#define VMBUS_RING_TRAILER_LEN		8u /* u64 after every packet, not counted in len8 */
#define VMBUS_RING_FEAT_PENDING_SEND_SZ 1u /* feature_bits bit 0 */

/* ---- wire formats ------------------------------------------------------- */

/* The control page at the start of each ring (facts 4.1). */
struct vmbus_ring_ctl {
	uint32_t write_index;	  /* next byte the writer fills */
	uint32_t read_index;	  /* next byte the reader consumes */
	uint32_t interrupt_mask;  /* reader: non-zero = don't signal me */
	uint32_t pending_send_sz; /* writer: ring bytes it waits for, 0 = none */
	uint32_t reserved1[12];
	uint32_t feature_bits; /* VMBUS_RING_FEAT_* */
	uint8_t reserved2[VMBUS_RING_PAGE_SIZE - 68];
};

_Static_assert(offsetof(struct vmbus_ring_ctl, write_index) == 0, "write_index @0");
_Static_assert(offsetof(struct vmbus_ring_ctl, read_index) == 4, "read_index @4");
_Static_assert(offsetof(struct vmbus_ring_ctl, interrupt_mask) == 8, "interrupt_mask @8");
_Static_assert(offsetof(struct vmbus_ring_ctl, pending_send_sz) == 12, "pending_send_sz @12");
_Static_assert(offsetof(struct vmbus_ring_ctl, reserved1) == 16, "reserved1 @16");
_Static_assert(offsetof(struct vmbus_ring_ctl, feature_bits) == 64, "feature_bits @64");
_Static_assert(sizeof(struct vmbus_ring_ctl) == VMBUS_RING_PAGE_SIZE, "control page is 4 KiB");

/* enum vmbus_packet_type (facts 4.3). */
#define VM_PKT_INVALID			 0x0
#define VM_PKT_SYNCH			 0x1
#define VM_PKT_ADD_XFER_PAGESET		 0x2
#define VM_PKT_RM_XFER_PAGESET		 0x3
#define VM_PKT_ESTABLISH_GPADL		 0x4
#define VM_PKT_TEARDOWN_GPADL		 0x5
#define VM_PKT_DATA_INBAND		 0x6
#define VM_PKT_DATA_USING_XFER_PAGES	 0x7
#define VM_PKT_DATA_USING_GPADL		 0x8
#define VM_PKT_DATA_USING_GPA_DIRECT	 0x9
#define VM_PKT_CANCEL_REQUEST		 0xa
#define VM_PKT_COMP			 0xb
#define VM_PKT_DATA_USING_ADDITIONAL_PKT 0xc
#define VM_PKT_ADDITIONAL_DATA		 0xd

#define VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED 1u

/* struct vmpacket_descriptor (facts 4.2): starts every packet. */
struct vmbus_pkt_desc {
	uint16_t type;	   /* VM_PKT_* */
	uint16_t offset8;  /* payload offset from the packet start, in 8-byte units */
	uint16_t len8;	   /* packet length without the trailer, in 8-byte units */
	uint16_t flags;	   /* VMBUS_DATA_PACKET_FLAG_* */
	uint64_t trans_id; /* echoed in the completion */
} __attribute__((packed));

_Static_assert(sizeof(struct vmbus_pkt_desc) == 16, "descriptor is 16 bytes");
_Static_assert(offsetof(struct vmbus_pkt_desc, offset8) == 2, "offset8 @2");
_Static_assert(offsetof(struct vmbus_pkt_desc, len8) == 4, "len8 @4");
_Static_assert(offsetof(struct vmbus_pkt_desc, flags) == 6, "flags @6");
_Static_assert(offsetof(struct vmbus_pkt_desc, trans_id) == 8, "trans_id @8");

/* Head of a VM_PKT_DATA_USING_GPA_DIRECT packet (struct vmdata_gpa_direct
 * without its range array, facts 4.6). range_count ranges follow, each a
 * struct vmbus_gpa_range_hdr and its PFNs; the in-band data starts at
 * offset8 * 8. */
struct vmbus_gpa_direct_hdr {
	struct vmbus_pkt_desc d;
	uint32_t reserved; /* 0 */
	uint32_t range_count;
} __attribute__((packed));

_Static_assert(sizeof(struct vmbus_gpa_direct_hdr) == 24, "GPA-direct head is 24 bytes");
_Static_assert(offsetof(struct vmbus_gpa_direct_hdr, reserved) == 16, "reserved @16");
_Static_assert(offsetof(struct vmbus_gpa_direct_hdr, range_count) == 20, "range_count @20");

/* struct gpa_range without its flexible pfn_array (facts 2.10). It is
 * followed by ceil((byte_offset + byte_count) / 4096) u64 PFNs of 4 KiB
 * pages; byte_offset is into the first page. */
struct vmbus_gpa_range_hdr {
	uint32_t byte_count;
	uint32_t byte_offset;
} __attribute__((packed));

_Static_assert(sizeof(struct vmbus_gpa_range_hdr) == 8, "range head is 8 bytes");
_Static_assert(offsetof(struct vmbus_gpa_range_hdr, byte_offset) == 4, "byte_offset @4");

/* Largest packet a descriptor can describe (len8 is 16 bits). */
#define VMBUS_PKT_MAX_LEN (0xffffu * 8u)
/* Range count accepted in a GPA-direct packet, on both send and receive. */
#define VMBUS_GPA_MAX_RANGES 64u

/* Ring bytes (descriptor, payload, padding and trailer) an in-band or
 * completion packet with len payload bytes takes; for vmbus_ring_want_space. */
#define VMBUS_RING_INBAND_BYTES(len)                                                \
	((((uint32_t)sizeof(struct vmbus_pkt_desc) + (uint32_t)(len) + 7u) & ~7u) + \
	 VMBUS_RING_TRAILER_LEN)

/* ---- the ring view ------------------------------------------------------ */

/*
 * One side's view of one ring. A channel has two rings (outbound =
 * guest->host at page 0 of the channel's ring buffer, inbound at
 * downstream_ringbuffer_pageoffset) and so two views per side. The view
 * holds no resources; the memory belongs to the caller and must outlive it.
 * Fields are private to ring.c.
 */
struct vmbus_ring {
	struct vmbus_ring_ctl *ctl;
	uint8_t *data; /* data area, right after the control page */
	uint32_t size; /* data area bytes, a multiple of 4096 */
	uint32_t wr;   /* writer: private copy of write_index, never read back */
	uint32_t rd;   /* reader: private copy of read_index, never read back */
};

/* A piece of a packet for vmbus_ring_write. */
struct vmbus_iov {
	const void *base;
	size_t len;
};

/* One range of a GPA-direct packet being sent. */
struct vmbus_gpa_range_desc {
	uint32_t byte_count;  /* > 0 */
	uint32_t byte_offset; /* into the first page, < 4096 */
	const uint64_t *pfns; /* ceil((byte_offset + byte_count) / 4096) PFNs */
};

/*
 * Sets up a view of the ring at base (4 KiB aligned; total_bytes a multiple
 * of 4096 with at least one data page and at most 4 GiB - 4 KiB of data) and
 * snapshots the indices currently in the control page as this side's
 * private copies. Touches nothing in the ring. Call it after the ring has
 * been reset (by whoever created it), before the first read or write.
 * A corrupt snapshot is not reported here but by the first read or write.
 * Returns 0 or -EINVAL.
 */
int vmbus_ring_init(struct vmbus_ring *r, void *base, size_t total_bytes);

/*
 * For the side that creates the ring, before the peer can see it: zeroes the
 * control page, advertises VMBUS_RING_FEAT_PENDING_SEND_SZ, and resets r's
 * private indices to 0. Views other than r made before the reset are stale:
 * init them again.
 */
void vmbus_ring_reset(struct vmbus_ring *r);

/* ---- writer side -------------------------------------------------------- */

/*
 * Appends one complete packet, the concatenation of the niov pieces: a valid
 * descriptor whose len8 * 8 equals the total length (a multiple of 8), and
 * everything after it including padding. Then writes the trailer
 * ((u64)start_write_index << 32) and publishes the new write_index.
 *
 * *signal (required) is set to true only when the reader must be
 * interrupted: the ring was empty before this packet and the reader's
 * interrupt_mask is 0. It is false on every error.
 *
 * Returns 0; -EINVAL if the pieces do not form a valid packet; -EMSGSIZE if
 * the packet and trailer could never fit (>= data size); -EAGAIN if there is
 * not enough space now (nothing written; see vmbus_ring_want_space);
 * -EPROTO if the reader's read_index is corrupt.
 */
int vmbus_ring_write(struct vmbus_ring *r, const struct vmbus_iov *iov, unsigned niov,
		     bool *signal);

/*
 * Sends a VM_PKT_DATA_INBAND packet: descriptor (offset8 = 2, len8 =
 * ALIGN(16 + len, 8) / 8), len bytes of data (may be NULL if len is 0), zero
 * padding. flags: VMBUS_DATA_PACKET_FLAG_*. Errors as vmbus_ring_write;
 * -EMSGSIZE also if the packet exceeds VMBUS_PKT_MAX_LEN.
 */
int vmbus_ring_send_inband(struct vmbus_ring *r, uint64_t trans_id, uint16_t flags,
			   const void *data, uint32_t len, bool *signal);

/*
 * Sends a VM_PKT_COMP packet answering trans_id; layout as in-band, flags 0.
 * Errors as vmbus_ring_send_inband.
 */
int vmbus_ring_send_completion(struct vmbus_ring *r, uint64_t trans_id, const void *data,
			       uint32_t len, bool *signal);

/*
 * Sends a VM_PKT_DATA_USING_GPA_DIRECT packet: struct vmbus_gpa_direct_hdr,
 * then for each range its struct vmbus_gpa_range_hdr and PFNs, then len bytes
 * of in-band data (offset8 points at it) and zero padding.
 * -EINVAL if nranges is 0 or above VMBUS_GPA_MAX_RANGES, a range has
 * byte_count 0 or byte_offset >= 4096; otherwise errors as
 * vmbus_ring_send_inband.
 */
int vmbus_ring_send_gpa_direct(struct vmbus_ring *r, uint64_t trans_id, uint16_t flags,
			       const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
			       const void *data, uint32_t len, bool *signal);

/*
 * Ring bytes (packet and trailer) the GPA-direct packet with these
 * arguments takes, into *bytes; for vmbus_ring_want_space. Errors as
 * vmbus_ring_send_gpa_direct's argument checks (-EINVAL, -EMSGSIZE).
 */
int vmbus_ring_gpa_direct_bytes(const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
				uint32_t len, uint32_t *bytes);

/*
 * Asks the reader to signal when more than bytes ring bytes are free
 * (bytes = what the refused write needs including the trailer, e.g.
 * VMBUS_RING_INBAND_BYTES(len)); 0 withdraws the request. Protocol for a
 * writer that got -EAGAIN:
 *
 *	vmbus_ring_want_space(r, need);
 *	while ((rc = send(...)) == -EAGAIN)   // the first retry is required:
 *		wait for the reader's signal;  // space may have been freed before
 *	vmbus_ring_want_space(r, 0);          // the reader saw pending_send_sz
 *
 * The reader only signals if the ring's feature_bits advertise
 * VMBUS_RING_FEAT_PENDING_SEND_SZ (vmbus_ring_reset sets it); a writer on a
 * ring without it has to poll. Returns 0, or -EMSGSIZE if bytes >= the data
 * size (such a write can never succeed, so no signal would ever come).
 */
int vmbus_ring_want_space(struct vmbus_ring *r, uint32_t bytes);

/*
 * Writer side: free bytes as the ring reports them. A write needing n ring
 * bytes (packet + trailer) succeeds only if n < this value. 0 if either
 * index is corrupt.
 */
uint32_t vmbus_ring_bytes_to_write(struct vmbus_ring *r);

/* ---- reader side -------------------------------------------------------- */

/*
 * Takes the next packet out of the ring: copies it (descriptor, payload and
 * padding; not the trailer) into buf, sets *pkt_len to its length (len8 * 8)
 * and frees its space for the writer. The descriptor in buf is the one that
 * was validated: type VM_PKT_SYNCH..VM_PKT_ADDITIONAL_DATA, 16 <= offset8 * 8
 * <= len8 * 8, and the packet plus trailer lies within the bytes the writer
 * published. Nothing after the descriptor is validated: pass buf to
 * vmbus_pkt_parse.
 *
 * Returns 0; -EAGAIN if the ring is empty; -EMSGSIZE if buflen < the packet
 * (*pkt_len = the length needed, the packet stays in the ring); -EPROTO if
 * an index or the descriptor is corrupt (nothing consumed; fail the
 * channel). *pkt_len is 0 unless 0 or -EMSGSIZE is returned.
 *
 * Follow each successful read (or batch of reads) with
 * vmbus_ring_read_done_signal.
 */
int vmbus_ring_read(struct vmbus_ring *r, void *buf, size_t buflen, size_t *pkt_len);

/*
 * After reads that freed bytes_read ring bytes (the sum of pkt_len +
 * VMBUS_RING_TRAILER_LEN over them): whether the writer is waiting for
 * space that it now has, so it must be signalled. True only when the ring
 * advertises VMBUS_RING_FEAT_PENDING_SEND_SZ, pending_send_sz is non-zero,
 * the free space before these reads was not above it and now is.
 * interrupt_mask is not consulted (Linux's current rule, facts 4.5).
 */
bool vmbus_ring_read_done_signal(struct vmbus_ring *r, uint32_t bytes_read);

/*
 * Reader: masked = true asks the writer not to signal (while draining).
 * Unmasking must be followed by a last vmbus_ring_empty check, since a
 * packet written while masked was not signalled:
 *
 *	vmbus_ring_set_interrupt_mask(r, false);
 *	if (!vmbus_ring_empty(r))
 *		mask again and keep draining;
 *	else
 *		wait for a signal;
 */
void vmbus_ring_set_interrupt_mask(struct vmbus_ring *r, bool masked);

/* Reader side: true if no packet is published. A corrupt write_index
 * counts as not empty, so that the next read reports it. */
bool vmbus_ring_empty(struct vmbus_ring *r);

/* Reader side: bytes published and not yet read; 0 if an index is corrupt. */
uint32_t vmbus_ring_bytes_to_read(struct vmbus_ring *r);

/* ---- packet parsing ----------------------------------------------------- */

/*
 * A validated packet, pointing into the caller's private copy (which must
 * stay unchanged while the view is used).
 */
struct vmbus_pkt_view {
	uint16_t type;
	uint16_t flags;
	uint64_t trans_id;
	uint32_t pkt_len;	/* len8 * 8 */
	const uint8_t *pkt;	/* the whole packet (descriptor first), pkt_len bytes */
	const uint8_t *payload; /* bytes [offset8 * 8, len8 * 8) of the packet */
	/* VMBus has no payload length: this includes the sender's 0..7 bytes
	 * of padding. Protocols above carry their own length if they need it. */
	uint32_t payload_len;
	uint32_t range_count;  /* GPA direct: number of ranges; else 0 */
	const uint8_t *ranges; /* GPA direct: first struct vmbus_gpa_range_hdr */
	uint32_t ranges_len;   /* bytes from ranges to the payload */
};

/* One range of a parsed GPA-direct packet. */
struct vmbus_gpa_range_view {
	uint32_t byte_count;
	uint32_t byte_offset;
	uint32_t pfn_count;
	const void *pfns; /* pfn_count u64s, maybe unaligned: use vmbus_gpa_range_pfn */
};

/*
 * Validates the packet at pkt (len bytes available, at least len8 * 8) and
 * describes it in *v. Checks the descriptor as vmbus_ring_read does and, for
 * VM_PKT_DATA_USING_GPA_DIRECT, that offset8 * 8 >= 24, 1 <= range_count <=
 * VMBUS_GPA_MAX_RANGES, and every range has byte_count > 0, byte_offset <
 * 4096 and its PFNs inside the descriptor area [24, offset8 * 8). Other
 * types' headers are left to their consumers.
 * Returns 0 or -EPROTO (v is then unspecified).
 */
int vmbus_pkt_parse(const void *pkt, size_t len, struct vmbus_pkt_view *v);

/*
 * Range i (< v->range_count) of a parsed GPA-direct packet. Walks from the
 * first range, so visiting all n ranges this way costs O(n^2) with n <= 64.
 * Returns 0; -EINVAL if i is out of range or v is not a GPA-direct packet;
 * -EPROTO if the packet bytes changed since vmbus_pkt_parse (re-checked,
 * never trusted).
 */
int vmbus_pkt_range(const struct vmbus_pkt_view *v, uint32_t i, struct vmbus_gpa_range_view *out);

/* PFN j (< rv->pfn_count) of a range. */
static inline uint64_t vmbus_gpa_range_pfn(const struct vmbus_gpa_range_view *rv, uint32_t j)
{
	uint64_t pfn;

	__builtin_memcpy(&pfn, (const uint8_t *)rv->pfns + (size_t)j * sizeof(pfn), sizeof(pfn));
	return pfn;
}

#endif
