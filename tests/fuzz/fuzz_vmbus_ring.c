// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the VMBus ring reader and packet parser: the input is
 * everything a hostile peer controls.
 *
 * Input layout:
 *   off 0  u32  write_index
 *   off 4  u32  read_index
 *   off 8  u32  pending_send_sz; byte_offset of the GPA range (mod 4096)
 *   off 12 u8   bit 0: feature_bits, bit 1: interrupt_mask, bit 2: two data pages
 *   off 13 u16  size of the reader's buffer; byte_count - 1 of the GPA range
 *   off 15 u8   payload length for the writer phase
 *   off 16 ...  data area (truncated or zero-padded to the data size)
 *
 * Every buffer is allocated at its exact size so that ASan reports any
 * access past it. Properties checked besides memory safety:
 *  - the read loop ends (each successful read consumes >= 24 bytes);
 *  - -EMSGSIZE reports the size that then succeeds;
 *  - a returned packet parses at the descriptor level with len8 * 8 == len;
 *  - the reader's and writer's published indices stay valid;
 *  - packets this side writes into a drained ring (in-band, and GPA direct
 *    with a range taken from the input) are read back intact.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fab/vmbus_ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n);

#define HDR 16u

#define CHECK(c)                          \
	do {                              \
		if (!(c))                 \
			__builtin_trap(); \
	} while (0)

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Everything a consumer would do with a packet. */
static void consume(const uint8_t *pkt, size_t len)
{
	struct vmbus_pkt_view v;
	volatile uint64_t sink = 0;

	if (vmbus_pkt_parse(pkt, len, &v))
		return;
	CHECK(v.pkt_len <= len && v.payload + v.payload_len == pkt + v.pkt_len);
	for (uint32_t i = 0; i < v.payload_len; i++)
		sink += v.payload[i];
	for (uint32_t i = 0; i < v.range_count; i++) {
		struct vmbus_gpa_range_view rv;

		CHECK(vmbus_pkt_range(&v, i, &rv) == 0);
		CHECK(rv.byte_offset < 4096 && rv.byte_count > 0 && rv.pfn_count > 0);
		CHECK((const uint8_t *)rv.pfns + (size_t)rv.pfn_count * 8 <= v.payload);
		for (uint32_t j = 0; j < rv.pfn_count; j++)
			sink += vmbus_gpa_range_pfn(&rv, j);
	}
	(void)sink;
}

/* Reads until the ring is empty or found corrupt; returns why it stopped
 * (-EAGAIN or -EPROTO). */
static int drain(struct vmbus_ring *r, uint32_t size, size_t buflen)
{
	uint32_t iters = 0;

	for (;;) {
		uint8_t *buf = malloc(buflen ? buflen : 1);
		size_t got = 0;
		int rc;

		CHECK(buf);
		rc = vmbus_ring_read(r, buf, buflen, &got);
		if (rc == -EMSGSIZE) {
			CHECK(got > buflen && got % 8 == 0);
			free(buf);
			buf = malloc(got);
			CHECK(buf);
			/* Nothing changed in between: the reported size must do. */
			CHECK(vmbus_ring_read(r, buf, got, &got) == 0);
			rc = 0;
		}
		if (rc) {
			CHECK(rc == -EAGAIN || rc == -EPROTO);
			CHECK(got == 0);
			free(buf);
			return rc;
		}
		CHECK(got >= 16 && got % 8 == 0);
		CHECK(((const struct vmbus_pkt_desc *)buf)->len8 * 8u == got);
		/* Parse from an exact-size copy so overreads past len are caught. */
		{
			uint8_t *copy = malloc(got);

			CHECK(copy);
			memcpy(copy, buf, got);
			/* The reader checked the descriptor as the parser does;
			 * only a GPA-direct range list can still be refused. */
			if (((const struct vmbus_pkt_desc *)copy)->type !=
			    VM_PKT_DATA_USING_GPA_DIRECT) {
				struct vmbus_pkt_view v;

				CHECK(vmbus_pkt_parse(copy, got, &v) == 0);
			}
			consume(copy, got);
			free(copy);
		}
		free(buf);
		(void)vmbus_ring_read_done_signal(r, (uint32_t)got + VMBUS_RING_TRAILER_LEN);
		/* Each read consumes at least 24 of the published bytes. */
		CHECK(++iters <= size / 24);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	struct vmbus_gpa_range_desc range;
	struct vmbus_ring r, w;
	uint8_t payload[256];
	uint64_t pfns[17];
	struct vmbus_ring_ctl *ctl;
	size_t buflen, total;
	uint32_t size, plen;
	uint8_t *mem;
	bool sig, was_empty;
	int rc, rc2;

	/* The parser alone, on the raw input. */
	if (n) {
		uint8_t *copy = malloc(n);

		CHECK(copy);
		memcpy(copy, in, n);
		consume(copy, n);
		free(copy);
	}
	if (n < HDR)
		return 0;

	size = (in[12] & 4) ? 2 * 4096 : 4096;
	total = 4096 + size;
	mem = aligned_alloc(4096, total);
	CHECK(mem);
	memset(mem, 0, total);
	ctl = (struct vmbus_ring_ctl *)mem;
	ctl->write_index = get32(in);
	ctl->read_index = get32(in + 4);
	ctl->pending_send_sz = get32(in + 8);
	ctl->feature_bits = in[12] & 1;
	ctl->interrupt_mask = (in[12] >> 1) & 1;
	memcpy(mem + 4096, in + HDR, n - HDR < size ? n - HDR : size);
	buflen = (size_t)in[13] | (size_t)in[14] << 8;
	plen = in[15];

	/* Phase 1: read whatever the peer published. */
	CHECK(vmbus_ring_init(&r, mem, total) == 0);
	(void)vmbus_ring_bytes_to_read(&r);
	(void)vmbus_ring_empty(&r);
	rc = drain(&r, size, buflen);
	CHECK(ctl->read_index == get32(in + 4) ||
	      (ctl->read_index < size && ctl->read_index % 8 == 0));

	/* Phase 2: write with the peer's read_index: an in-band packet and a
	 * GPA-direct one whose range comes from the input. */
	CHECK(vmbus_ring_init(&w, mem, total) == 0);
	(void)vmbus_ring_bytes_to_write(&w);
	for (uint32_t i = 0; i < plen; i++)
		payload[i] = (uint8_t)(i ^ 0x5a);
	for (uint32_t i = 0; i < 17; i++)
		pfns[i] = 0x1000 + i;
	range.byte_offset = get32(in + 8) % 4096;
	range.byte_count = (uint32_t)buflen + 1; /* <= 17 pages */
	range.pfns = pfns;
	was_empty = rc == -EAGAIN;
	rc = vmbus_ring_send_inband(&w, 0x1234, 1, payload, plen, &sig);
	CHECK(rc == 0 || rc == -EAGAIN || rc == -EPROTO);
	CHECK(rc || (ctl->write_index < size && ctl->write_index % 8 == 0));
	rc2 = vmbus_ring_send_gpa_direct(&w, 0x5678, 0, &range, 1, payload, plen / 2, &sig);
	CHECK(rc2 == 0 || rc2 == -EAGAIN || rc2 == -EPROTO);
	(void)vmbus_ring_want_space(&w, get32(in + 8));

	if (!was_empty) {
		/* Garbage ahead of our packets: the more bytes now published can
		 * make it parse differently, so only safety can be checked. */
		drain(&r, size, 1024);
		goto out;
	}
	/* Phase 1 drained the ring: ours are the only packets and must come
	 * back intact (both fit an empty ring). */
	CHECK(rc == 0 && rc2 == 0);
	{
		uint8_t buf[1024];
		struct vmbus_gpa_range_view rv;
		struct vmbus_pkt_view v;
		size_t got;

		CHECK(vmbus_ring_read(&r, buf, sizeof(buf), &got) == 0);
		CHECK(vmbus_pkt_parse(buf, got, &v) == 0);
		CHECK(v.type == VM_PKT_DATA_INBAND && v.trans_id == 0x1234 && v.flags == 1);
		CHECK(v.payload_len >= plen && memcmp(v.payload, payload, plen) == 0);

		CHECK(vmbus_ring_read(&r, buf, sizeof(buf), &got) == 0);
		CHECK(vmbus_pkt_parse(buf, got, &v) == 0);
		CHECK(v.type == VM_PKT_DATA_USING_GPA_DIRECT && v.trans_id == 0x5678);
		CHECK(v.range_count == 1 && vmbus_pkt_range(&v, 0, &rv) == 0);
		CHECK(rv.byte_offset == range.byte_offset && rv.byte_count == range.byte_count);
		CHECK(rv.pfn_count == (range.byte_offset + range.byte_count + 4095) / 4096);
		for (uint32_t j = 0; j < rv.pfn_count; j++)
			CHECK(vmbus_gpa_range_pfn(&rv, j) == pfns[j]);
		CHECK(v.payload_len >= plen / 2 && memcmp(v.payload, payload, plen / 2) == 0);

		CHECK(vmbus_ring_read(&r, buf, sizeof(buf), &got) == -EAGAIN);
	}
out:
	free(mem);
	return 0;
}
