// SPDX-License-Identifier: MIT
/*
 * VMBus ring: wrap-around at every alignment, full/empty, signalling rules,
 * corrupt indices and descriptors, GPA-direct packets, -EMSGSIZE, and
 * randomized single-threaded and two-thread stress runs.
 *
 * Every test uses two views over the same memory, as the two partitions do:
 * p.w is only written through and p.r only read through.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fab/vmbus_ring.h"

#define PAGE 4096u

struct pair {
	uint8_t *mem;
	size_t total;
	uint32_t size; /* data bytes */
	struct vmbus_ring_ctl *ctl;
	uint8_t *data;
	struct vmbus_ring w; /* writer's view */
	struct vmbus_ring r; /* reader's view */
};

static void pair_open(struct pair *p, uint32_t data_pages)
{
	p->total = (size_t)(data_pages + 1) * PAGE;
	p->mem = aligned_alloc(PAGE, p->total);
	assert_non_null(p->mem);
	memset(p->mem, 0xa5, p->total); /* garbage, so padding checks mean something */
	p->size = data_pages * PAGE;
	p->ctl = (struct vmbus_ring_ctl *)p->mem;
	p->data = p->mem + PAGE;
	assert_int_equal(vmbus_ring_init(&p->w, p->mem, p->total), 0);
	vmbus_ring_reset(&p->w);
	assert_int_equal(vmbus_ring_init(&p->r, p->mem, p->total), 0);
}

static void pair_close(struct pair *p)
{
	free(p->mem);
}

/* Empty ring whose indices both sit at off; both views re-initialised. */
static void pair_at(struct pair *p, uint32_t off)
{
	p->ctl->write_index = off;
	p->ctl->read_index = off;
	p->ctl->interrupt_mask = 0;
	p->ctl->pending_send_sz = 0;
	assert_int_equal(vmbus_ring_init(&p->w, p->mem, p->total), 0);
	assert_int_equal(vmbus_ring_init(&p->r, p->mem, p->total), 0);
}

/* Raw access to ring bytes with wrap, as a hostile peer would do it. */
static void ring_poke(struct pair *p, uint32_t off, const void *src, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		p->data[(off + i) % p->size] = ((const uint8_t *)src)[i];
}

static void ring_peek(struct pair *p, uint32_t off, void *dst, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		((uint8_t *)dst)[i] = p->data[(off + i) % p->size];
}

static uint32_t align8(uint32_t n)
{
	return (n + 7) & ~7u;
}

/* ---- init / reset ------------------------------------------------------- */

static void test_init(void **state)
{
	struct vmbus_ring v;
	struct pair p;

	pair_open(&p, 1);
	assert_int_equal(vmbus_ring_init(&v, p.mem + 8, p.total - PAGE), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, p.mem, PAGE), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, p.mem, 0), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, p.mem, p.total - 8), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, p.mem, p.total + 100), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, NULL, p.total), -EINVAL);
	assert_int_equal(vmbus_ring_init(&v, p.mem, p.total), 0);

	memset(p.mem, 0xff, PAGE);
	vmbus_ring_reset(&v);
	assert_int_equal(p.ctl->write_index, 0);
	assert_int_equal(p.ctl->read_index, 0);
	assert_int_equal(p.ctl->interrupt_mask, 0);
	assert_int_equal(p.ctl->pending_send_sz, 0);
	assert_int_equal(p.ctl->feature_bits, VMBUS_RING_FEAT_PENDING_SEND_SZ);
	for (size_t i = 68; i < PAGE; i++)
		assert_int_equal(p.mem[i], 0);
	assert_true(vmbus_ring_empty(&v));
	assert_int_equal(vmbus_ring_bytes_to_write(&v), PAGE);
	assert_int_equal(vmbus_ring_bytes_to_read(&v), 0);
	pair_close(&p);
}

/* ---- wrap-around -------------------------------------------------------- */

static void check_inband(struct pair *p, uint32_t off, uint32_t n, uint16_t type)
{
	uint8_t data[300], buf[400];
	uint32_t plen = align8(16 + n);
	struct vmbus_pkt_view v;
	uint64_t trailer;
	size_t got;
	bool sig;

	for (uint32_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7 + n + off);
	if (type == VM_PKT_COMP)
		assert_int_equal(
			vmbus_ring_send_completion(&p->w, off * 1000ull + n, data, n, &sig), 0);
	else
		assert_int_equal(vmbus_ring_send_inband(&p->w, off * 1000ull + n, (uint16_t)(n & 1),
							data, n, &sig),
				 0);
	assert_true(sig);
	assert_int_equal(p->ctl->write_index, (off + plen + 8) % p->size);
	assert_int_equal(vmbus_ring_bytes_to_read(&p->r), plen + 8);
	ring_peek(p, off + plen, &trailer, 8);
	assert_true(trailer == (uint64_t)off << 32);

	assert_int_equal(vmbus_ring_read(&p->r, buf, sizeof(buf), &got), 0);
	assert_int_equal(got, plen);
	assert_int_equal(p->ctl->read_index, (off + plen + 8) % p->size);
	assert_true(vmbus_ring_empty(&p->r));

	assert_int_equal(vmbus_pkt_parse(buf, got, &v), 0);
	assert_int_equal(v.type, type);
	assert_int_equal(v.flags, type == VM_PKT_COMP ? 0 : (n & 1));
	assert_true(v.trans_id == off * 1000ull + n);
	assert_int_equal(v.pkt_len, plen);
	assert_ptr_equal(v.payload, buf + 16);
	assert_int_equal(v.payload_len, plen - 16);
	assert_memory_equal(v.payload, data, n);
	for (uint32_t i = n; i < v.payload_len; i++)
		assert_int_equal(v.payload[i], 0);
	assert_int_equal(v.range_count, 0);
}

static void test_wrap_every_alignment(void **state)
{
	struct pair p;

	pair_open(&p, 1);
	for (uint32_t off = 0; off < PAGE; off += 8) {
		memset(p.data, 0xa5, p.size);
		for (uint32_t n = 1; n <= 300; n++) {
			pair_at(&p, off);
			check_inband(&p, off, n, n % 5 ? VM_PKT_DATA_INBAND : VM_PKT_COMP);
		}
	}
	/* An empty in-band packet is a bare descriptor. */
	pair_at(&p, PAGE - 8);
	check_inband(&p, PAGE - 8, 0, VM_PKT_DATA_INBAND);
	pair_close(&p);
}

/* Same on a ring with several data pages: the wrap point moves. */
static void test_wrap_multi_page(void **state)
{
	struct pair p;

	pair_open(&p, 3);
	for (uint32_t off = 3 * PAGE - 400; off < 3 * PAGE; off += 8)
		for (uint32_t n = 1; n <= 300; n += 13) {
			pair_at(&p, off);
			check_inband(&p, off, n, VM_PKT_DATA_INBAND);
		}
	pair_close(&p);
}

/* ---- full / empty ------------------------------------------------------- */

static void test_full_empty(void **state)
{
	static const uint32_t starts[] = { 0, 8, 2048, PAGE - 16, PAGE - 8 };
	uint8_t data[4096] = { 0 }, buf[4096];
	struct pair p;
	size_t got;
	bool sig;

	pair_open(&p, 1);
	for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
		unsigned wrote = 0, readn = 0;
		int rc;

		pair_at(&p, starts[s]);
		/* 40-byte payload: 56-byte packet, 64 ring bytes. */
		while ((rc = vmbus_ring_send_inband(&p.w, wrote, 0, data, 40, &sig)) == 0)
			wrote++;
		assert_int_equal(rc, -EAGAIN);
		assert_false(sig);
		assert_int_equal(wrote, PAGE / 64 - 1); /* never exactly full */
		assert_int_equal(vmbus_ring_bytes_to_write(&p.w), 64);
		assert_int_equal(vmbus_ring_bytes_to_read(&p.r), (PAGE / 64 - 1) * 64);
		assert_false(vmbus_ring_empty(&p.r));
		assert_true(p.ctl->write_index != p.ctl->read_index);

		while ((rc = vmbus_ring_read(&p.r, buf, sizeof(buf), &got)) == 0) {
			struct vmbus_pkt_view v;

			assert_int_equal(vmbus_pkt_parse(buf, got, &v), 0);
			assert_true(v.trans_id == readn);
			readn++;
		}
		assert_int_equal(rc, -EAGAIN);
		assert_int_equal(readn, wrote);
		assert_true(vmbus_ring_empty(&p.r));
		assert_int_equal(vmbus_ring_bytes_to_write(&p.w), PAGE);
	}

	/* Space exactly equal to the need is refused; 8 bytes less fits. */
	pair_at(&p, 0);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, data, 1000, &sig), 0); /* 1024 */
	assert_int_equal(vmbus_ring_bytes_to_write(&p.w), 3072);
	assert_int_equal(VMBUS_RING_INBAND_BYTES(3048), 3072);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 2, 0, data, 3048, &sig), -EAGAIN);
	assert_int_equal(p.ctl->write_index, 1024);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 2, 0, data, 3041, &sig), -EAGAIN);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 2, 0, data, 3040, &sig), 0);
	assert_int_equal(vmbus_ring_bytes_to_write(&p.w), 8);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 3, 0, NULL, 0, &sig), -EAGAIN);
	assert_true(p.ctl->write_index != p.ctl->read_index);

	/* A packet that can never fit is -EMSGSIZE, not -EAGAIN. */
	pair_at(&p, 0);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, data, 4072, &sig), -EMSGSIZE);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, data, 4064, &sig), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(got, 4080);
	assert_true(vmbus_ring_empty(&p.r));
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EAGAIN);
	assert_int_equal(got, 0);
	pair_close(&p);
}

/* ---- signalling --------------------------------------------------------- */

static void test_write_signal(void **state)
{
	uint8_t buf[256];
	struct pair p;
	size_t got;
	bool sig;

	pair_open(&p, 1);
	pair_at(&p, 0);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, "a", 1, &sig), 0);
	assert_true(sig); /* empty -> non-empty */
	assert_int_equal(vmbus_ring_send_inband(&p.w, 2, 0, "b", 1, &sig), 0);
	assert_false(sig); /* already non-empty */
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 3, 0, "c", 1, &sig), 0);
	assert_false(sig); /* reader has not caught up */
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EAGAIN);

	/* Reader draining with the mask set: no signal even on empty. */
	vmbus_ring_set_interrupt_mask(&p.r, true);
	assert_int_equal(p.ctl->interrupt_mask, 1);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 4, 0, "d", 1, &sig), 0);
	assert_false(sig);
	/* ...which is why unmasking is followed by an emptiness check. */
	vmbus_ring_set_interrupt_mask(&p.r, false);
	assert_int_equal(p.ctl->interrupt_mask, 0);
	assert_false(vmbus_ring_empty(&p.r));
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_empty(&p.r));
	assert_int_equal(vmbus_ring_send_inband(&p.w, 5, 0, "e", 1, &sig), 0);
	assert_true(sig);

	/* Signal is false on errors. */
	sig = true;
	assert_int_equal(vmbus_ring_send_inband(&p.w, 6, 0, buf, 5000, &sig), -EMSGSIZE);
	assert_false(sig);
	pair_close(&p);
}

/* Fills the ring with 64-byte (ring bytes) packets until -EAGAIN. */
static unsigned fill64(struct pair *p)
{
	uint8_t data[40] = { 0 };
	unsigned n = 0;
	bool sig;

	while (vmbus_ring_send_inband(&p->w, n, 0, data, sizeof(data), &sig) == 0)
		n++;
	return n;
}

static void test_read_done_signal(void **state)
{
	uint8_t buf[256];
	struct pair p;
	size_t got;

	pair_open(&p, 1);

	/* Writer blocked for 64 bytes with 64 free: one read crosses it. */
	pair_at(&p, 96);
	fill64(&p);
	assert_int_equal(vmbus_ring_bytes_to_write(&p.w), 64);
	assert_int_equal(vmbus_ring_want_space(&p.w, 64), 0);
	assert_int_equal(p.ctl->pending_send_sz, 64);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_done_signal(&p.r, (uint32_t)got + VMBUS_RING_TRAILER_LEN));
	/* Already above the threshold before the next read: no signal. */
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_false(vmbus_ring_read_done_signal(&p.r, (uint32_t)got + VMBUS_RING_TRAILER_LEN));
	/* The writer withdraws its request: no signal. */
	assert_int_equal(vmbus_ring_want_space(&p.w, 0), 0);
	assert_int_equal(p.ctl->pending_send_sz, 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_false(vmbus_ring_read_done_signal(&p.r, 64));

	/* Threshold not reached by this read: no signal until it is. */
	pair_at(&p, 0);
	fill64(&p);
	assert_int_equal(vmbus_ring_want_space(&p.w, 200), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
		assert_false(vmbus_ring_read_done_signal(&p.r, 64)); /* 128, 192 free */
	}
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_done_signal(&p.r, 64)); /* 256 > 200 */

	/* Exactly at the threshold is not enough (never fill exactly). */
	pair_at(&p, 0);
	fill64(&p);
	assert_int_equal(vmbus_ring_want_space(&p.w, 128), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_false(vmbus_ring_read_done_signal(&p.r, 64)); /* 128 free */
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_done_signal(&p.r, 64)); /* 192 free */

	/* Batched: two reads reported at once still cross once. */
	pair_at(&p, 0);
	fill64(&p);
	assert_int_equal(vmbus_ring_want_space(&p.w, 100), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_done_signal(&p.r, 128));

	/* Without the feature bit the writer polls: never signal. */
	pair_at(&p, 0);
	fill64(&p);
	p.ctl->feature_bits = 0;
	assert_int_equal(vmbus_ring_want_space(&p.w, 64), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_false(vmbus_ring_read_done_signal(&p.r, 64));
	p.ctl->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;

	/* interrupt_mask does not matter for this direction. */
	pair_at(&p, 0);
	fill64(&p);
	vmbus_ring_set_interrupt_mask(&p.r, true);
	assert_int_equal(vmbus_ring_want_space(&p.w, 64), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_true(vmbus_ring_read_done_signal(&p.r, 64));
	vmbus_ring_set_interrupt_mask(&p.r, false);

	/* bytes_read larger than the free space (writer raced): signal. */
	assert_true(vmbus_ring_read_done_signal(&p.r, 100000));

	/* A request that can never be met is refused. */
	assert_int_equal(vmbus_ring_want_space(&p.w, PAGE), -EMSGSIZE);
	assert_int_equal(vmbus_ring_want_space(&p.w, PAGE - 1), 0);
	pair_close(&p);
}

/* ---- corruption --------------------------------------------------------- */

static void test_corrupt_indices(void **state)
{
	static const uint32_t bad[] = { 4, 1, 7, 4095, PAGE, PAGE + 8, 0x80000000u, 0xfffffff8u };
	uint8_t buf[256];
	struct pair p;
	size_t got;
	bool sig;

	pair_open(&p, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Reader: corrupt write_index. */
		pair_at(&p, 64);
		assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, "x", 1, &sig), 0);
		p.ctl->write_index = bad[i];
		got = 99;
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EPROTO);
		assert_int_equal(got, 0);
		assert_int_equal(p.ctl->read_index, 64);
		assert_int_equal(vmbus_ring_bytes_to_read(&p.r), 0);
		assert_false(vmbus_ring_empty(&p.r)); /* so that a read reports it */
		p.ctl->pending_send_sz = 8;
		assert_false(vmbus_ring_read_done_signal(&p.r, 24));

		/* Writer: corrupt read_index. */
		pair_at(&p, 64);
		p.ctl->read_index = bad[i];
		assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, "x", 1, &sig), -EPROTO);
		assert_false(sig);
		assert_int_equal(p.ctl->write_index, 64);
		assert_int_equal(vmbus_ring_bytes_to_write(&p.w), 0);

		/* A view initialised over corrupt indices fails on first use. */
		pair_at(&p, 64);
		p.ctl->write_index = bad[i];
		p.ctl->read_index = bad[i];
		assert_int_equal(vmbus_ring_init(&p.w, p.mem, p.total), 0);
		assert_int_equal(vmbus_ring_init(&p.r, p.mem, p.total), 0);
		assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, "x", 1, &sig), -EPROTO);
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EPROTO);
	}

	/* Published bytes fewer than any packet can be: corrupt, not empty. */
	for (uint32_t d = 8; d < 24; d += 8) {
		pair_at(&p, PAGE - 8);
		p.ctl->write_index = (PAGE - 8 + d) % PAGE;
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EPROTO);
	}

	/* The peer rewriting read_index does not move where the reader reads:
	 * the reader owns that index and keeps its own copy. */
	pair_at(&p, 0);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 7, 0, "y", 1, &sig), 0);
	p.ctl->read_index = 2048;
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(got, 24);
	assert_int_equal(p.ctl->read_index, 32);
	pair_close(&p);
}

/* Writes a valid 48-byte packet at off, applies the corruption, expects
 * -EPROTO without consumption, then restores it and reads it. */
static void corrupt_desc(struct pair *p, uint32_t off, size_t field, uint16_t value, int expect)
{
	uint8_t data[32], buf[256];
	uint16_t orig;
	size_t got;
	bool sig;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	pair_at(p, off);
	assert_int_equal(vmbus_ring_send_inband(&p->w, 42, 0, data, sizeof(data), &sig), 0);
	ring_peek(p, off + (uint32_t)field, &orig, 2);
	ring_poke(p, off + (uint32_t)field, &value, 2);
	assert_int_equal(vmbus_ring_read(&p->r, buf, sizeof(buf), &got), expect);
	if (expect) {
		assert_int_equal(p->ctl->read_index, off);
		assert_int_equal(vmbus_ring_bytes_to_read(&p->r), 56);
		ring_poke(p, off + (uint32_t)field, &orig, 2);
		assert_int_equal(vmbus_ring_read(&p->r, buf, sizeof(buf), &got), 0);
	}
	assert_int_equal(got, 48);
	assert_memory_equal(buf + 16, data, sizeof(data));
	assert_true(vmbus_ring_empty(&p->r));
}

static void test_corrupt_descriptors(void **state)
{
	/* 4088 and 4080 make the descriptor itself straddle the wrap. */
	static const uint32_t offs[] = { 0, 256, PAGE - 56, PAGE - 16, PAGE - 8 };
	const size_t type = offsetof(struct vmbus_pkt_desc, type);
	const size_t off8 = offsetof(struct vmbus_pkt_desc, offset8);
	const size_t len8 = offsetof(struct vmbus_pkt_desc, len8);
	struct pair p;

	pair_open(&p, 1);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		uint32_t o = offs[i];

		corrupt_desc(&p, o, len8, 0, -EPROTO);
		corrupt_desc(&p, o, len8, 1, -EPROTO);
		corrupt_desc(&p, o, len8, 7, -EPROTO); /* beyond what was published */
		corrupt_desc(&p, o, len8, 0xffff, -EPROTO);
		corrupt_desc(&p, o, off8, 0, -EPROTO);
		corrupt_desc(&p, o, off8, 1, -EPROTO);
		corrupt_desc(&p, o, off8, 7, -EPROTO); /* offset8 > len8 */
		corrupt_desc(&p, o, off8, 0xffff, -EPROTO);
		corrupt_desc(&p, o, type, VM_PKT_INVALID, -EPROTO);
		corrupt_desc(&p, o, type, 0xe, -EPROTO);
		corrupt_desc(&p, o, type, 0xffff, -EPROTO);
		/* Still valid: offset8 == len8 (empty payload), other known type. */
		corrupt_desc(&p, o, off8, 6, 0);
		corrupt_desc(&p, o, type, VM_PKT_CANCEL_REQUEST, 0);
	}

	/* A shorter len8 is not corruption the reader can see: the rest of
	 * the published bytes then look like the next packet, and that one
	 * gets checked in turn. */
	pair_at(&p, 0);
	{
		uint8_t data[32] = { 0 }, buf[256];
		uint16_t v = 4;
		size_t got;
		bool sig;

		assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, data, sizeof(data), &sig), 0);
		ring_poke(&p, (uint32_t)len8, &v, 2);
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
		assert_int_equal(got, 32);
		/* Only 16 published bytes remain: less than any packet. */
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EPROTO);
	}
	pair_close(&p);
}

/* ---- -EMSGSIZE ---------------------------------------------------------- */

static void test_emsgsize(void **state)
{
	uint8_t data[100], buf[256];
	struct pair p;
	size_t got;
	bool sig;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i + 1);
	pair_open(&p, 1);
	pair_at(&p, PAGE - 40);
	assert_int_equal(vmbus_ring_send_inband(&p.w, 9, 0, data, sizeof(data), &sig), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, 119, &got), -EMSGSIZE);
	assert_int_equal(got, 120);
	assert_int_equal(vmbus_ring_read(&p.r, NULL, 0, &got), -EMSGSIZE);
	assert_int_equal(got, 120);
	assert_int_equal(p.ctl->read_index, PAGE - 40);
	assert_int_equal(vmbus_ring_bytes_to_read(&p.r), 128);
	assert_int_equal(vmbus_ring_read(&p.r, buf, 120, &got), 0);
	assert_int_equal(got, 120);
	assert_memory_equal(buf + 16, data, sizeof(data));
	assert_true(vmbus_ring_empty(&p.r));
	pair_close(&p);
}

/* ---- raw write ---------------------------------------------------------- */

static void test_raw_write(void **state)
{
	struct vmbus_pkt_desc d = {
		.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = 5, .flags = 1, .trans_id = 77
	};
	uint8_t payload[24], buf[256];
	struct vmbus_pkt_view v;
	struct pair p;
	size_t got;
	bool sig;

	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(0x40 + i);
	pair_open(&p, 1);
	pair_at(&p, PAGE - 24);

	/* Descriptor split over three pieces, payload over two. */
	{
		const struct vmbus_iov iov[] = {
			{ &d, 5 },	 { (uint8_t *)&d + 5, 7 },
			{ NULL, 0 },	 { (uint8_t *)&d + 12, 4 },
			{ payload, 10 }, { payload + 10, 14 },
		};

		assert_int_equal(vmbus_ring_write(&p.w, iov, 6, &sig), 0);
		assert_true(sig);
	}
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	assert_int_equal(got, 40);
	assert_int_equal(vmbus_pkt_parse(buf, got, &v), 0);
	assert_true(v.trans_id == 77);
	assert_int_equal(v.flags, 1);
	assert_memory_equal(v.payload, payload, sizeof(payload));

	/* Pieces that are not one valid packet are refused. */
	{
		struct vmbus_iov iov[2] = { { &d, 16 }, { payload, 24 } };

		iov[1].len = 20; /* not a multiple of 8 */
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		iov[1].len = 16; /* len8 says 40 bytes */
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		iov[1].len = 24;
		d.len8 = 4; /* len8 says 32 bytes */
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		d.len8 = 5;
		iov[1].len = 24;
		d.type = 0;
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		d.type = VM_PKT_DATA_INBAND;
		d.offset8 = 6;
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		d.offset8 = 2;
		iov[0].len = 8; /* descriptor cut short */
		assert_int_equal(vmbus_ring_write(&p.w, iov, 1, &sig), -EINVAL);
		assert_int_equal(vmbus_ring_write(&p.w, iov, 0, &sig), -EINVAL);
		iov[0].base = NULL;
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EINVAL);
		iov[0].base = &d;
		iov[1].len = (size_t)1 << 40;
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EMSGSIZE);
		iov[0].len = VMBUS_PKT_MAX_LEN; /* each piece fits, the sum does not */
		iov[1].len = VMBUS_PKT_MAX_LEN;
		iov[1].base = (void *)iov; /* never read */
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EMSGSIZE);
		assert_int_equal(vmbus_ring_write(&p.w, NULL, 2, &sig), -EINVAL);
	}
	/* A valid packet that does not fit now: -EAGAIN, nothing written. */
	{
		static uint8_t big[4000];
		struct vmbus_pkt_desc bd = { VM_PKT_DATA_INBAND, 2, 500, 0, 1 };
		const struct vmbus_iov iov[2] = { { &bd, 16 }, { big, 3984 } };

		uint32_t wi;

		assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, big, 1000, &sig), 0);
		wi = p.ctl->write_index;
		assert_int_equal(vmbus_ring_write(&p.w, iov, 2, &sig), -EAGAIN);
		assert_false(sig);
		assert_int_equal(p.ctl->write_index, wi);
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), -EMSGSIZE);
		assert_int_equal(got, 1016);
	}
	assert_int_equal(vmbus_ring_send_inband(&p.w, 1, 0, NULL, 5, &sig), -EINVAL);
	pair_close(&p);
}

/* ---- GPA direct --------------------------------------------------------- */

static const uint64_t pfns_a[] = { 0x1000 };
static const uint64_t pfns_b[] = { 0x2000, 0x2001, 0x2abc };
static const uint64_t pfns_c[] = { 0xfffffffffffffull };
static const uint64_t pfns_d[] = { 0x44 };
static const uint64_t pfns_e[] = { 0x51, 0x52, 0x53 };
static const struct vmbus_gpa_range_desc ranges5[] = {
	{ 100, 0, pfns_a },	/* 1 page */
	{ 8192, 4000, pfns_b }, /* 3 pages */
	{ 4096, 0, pfns_c },	/* exactly 1 page */
	{ 1, 4095, pfns_d },	/* last byte of a page */
	{ 4097, 4095, pfns_e }, /* 3 pages */
};

static void check_gpa(const uint8_t *buf, size_t got, const struct vmbus_gpa_range_desc *ranges,
		      unsigned n, const uint8_t *data, uint32_t len, uint64_t trans_id)
{
	struct vmbus_gpa_range_view rv;
	struct vmbus_pkt_view v;
	uint32_t hdr = 24;

	for (unsigned i = 0; i < n; i++)
		hdr += 8 + 8 * ((ranges[i].byte_offset + ranges[i].byte_count + 4095) / 4096);
	assert_int_equal(got, align8(hdr + len));
	assert_int_equal(vmbus_pkt_parse(buf, got, &v), 0);
	assert_int_equal(v.type, VM_PKT_DATA_USING_GPA_DIRECT);
	assert_int_equal(v.flags, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED);
	assert_true(v.trans_id == trans_id);
	assert_int_equal(v.range_count, n);
	assert_ptr_equal(v.payload, buf + hdr);
	assert_int_equal(v.payload_len, align8(hdr + len) - hdr);
	if (len)
		assert_memory_equal(v.payload, data, len);
	for (uint32_t i = len; i < v.payload_len; i++)
		assert_int_equal(v.payload[i], 0);
	assert_int_equal(((const struct vmbus_pkt_desc *)buf)->offset8, hdr / 8);
	assert_int_equal(((const struct vmbus_gpa_direct_hdr *)buf)->reserved, 0);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(vmbus_pkt_range(&v, i, &rv), 0);
		assert_int_equal(rv.byte_count, ranges[i].byte_count);
		assert_int_equal(rv.byte_offset, ranges[i].byte_offset);
		assert_int_equal(rv.pfn_count,
				 (ranges[i].byte_offset + ranges[i].byte_count + 4095) / 4096);
		for (uint32_t j = 0; j < rv.pfn_count; j++)
			assert_true(vmbus_gpa_range_pfn(&rv, j) == ranges[i].pfns[j]);
	}
	assert_int_equal(vmbus_pkt_range(&v, n, &rv), -EINVAL);
}

static void test_gpa_direct_roundtrip(void **state)
{
	uint8_t data[37], buf[2048];
	uint64_t many_pfns[64];
	struct vmbus_gpa_range_desc many[64];
	struct pair p;
	uint32_t bytes;
	size_t got;
	bool sig;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(0x80 + i);
	pair_open(&p, 1);
	assert_int_equal(vmbus_ring_gpa_direct_bytes(ranges5, 5, sizeof(data), &bytes), 0);
	for (uint32_t off = 0; off < PAGE; off += 8) {
		pair_at(&p, off);
		assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, off, 1, ranges5, 5, data,
							    sizeof(data), &sig),
				 0);
		assert_true(sig);
		assert_int_equal(vmbus_ring_bytes_to_read(&p.r), bytes);
		assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
		assert_int_equal(got + 8, bytes);
		check_gpa(buf, got, ranges5, 5, data, sizeof(data), off);
	}

	/* No in-band data at all; one range. */
	pair_at(&p, PAGE - 16);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 5, 1, ranges5, 1, NULL, 0, &sig), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	check_gpa(buf, got, ranges5, 1, NULL, 0, 5);

	/* The maximum range count. */
	for (unsigned i = 0; i < 64; i++) {
		many_pfns[i] = 0x100000 + i;
		many[i].byte_count = 512 + i;
		many[i].byte_offset = i * 8;
		many[i].pfns = &many_pfns[i];
	}
	pair_at(&p, 1000);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 6, 1, many, 64, data, 3, &sig), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &got), 0);
	check_gpa(buf, got, many, 64, data, 3, 6);
	pair_close(&p);
}

static void test_gpa_direct_send_rejects(void **state)
{
	struct vmbus_gpa_range_desc r[65];
	uint64_t pfn = 1;
	struct pair p;
	uint32_t bytes;
	bool sig;

	for (unsigned i = 0; i < 65; i++)
		r[i] = (struct vmbus_gpa_range_desc){ 1, 0, &pfn };
	pair_open(&p, 1);
	pair_at(&p, 0);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 0, NULL, 0, &sig), -EINVAL);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 65, NULL, 0, &sig), -EINVAL);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, NULL, 1, NULL, 0, &sig), -EINVAL);
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 1, NULL, 4, &sig), -EINVAL);
	r[3].byte_offset = 4096;
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 5, NULL, 0, &sig), -EINVAL);
	r[3].byte_offset = 4095;
	r[3].byte_count = 0;
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 5, NULL, 0, &sig), -EINVAL);
	r[3].byte_count = 1;
	r[3].pfns = NULL;
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 5, NULL, 0, &sig), -EINVAL);
	r[3].pfns = &pfn;
	/* 2^20 + 1 PFNs: larger than any packet. */
	r[3].byte_count = 0xffffffffu;
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 5, NULL, 0, &sig), -EMSGSIZE);
	assert_int_equal(vmbus_ring_gpa_direct_bytes(r, 5, 0, &bytes), -EMSGSIZE);
	/* Fits a packet but not this ring. */
	r[3].byte_count = 600 * 4096;
	assert_int_equal(vmbus_ring_send_gpa_direct(&p.w, 1, 0, r, 5, NULL, 0, &sig), -EMSGSIZE);
	assert_int_equal(vmbus_ring_gpa_direct_bytes(r, 1, 0, &bytes), 0);
	assert_int_equal(bytes, 24 + 16 + 8);
	assert_true(vmbus_ring_empty(&p.r));
	assert_int_equal(p.ctl->write_index, 0);
	pair_close(&p);
}

/* Builds a GPA-direct packet by hand: nr range headers each followed by
 * npfn[i] PFNs, then `extra` bytes of descriptor area and 8 payload bytes. */
static size_t mk_gpa(uint8_t *buf, uint32_t range_count, unsigned nr,
		     const struct vmbus_gpa_range_hdr *rh, const unsigned *npfn, unsigned extra)
{
	struct vmbus_gpa_direct_hdr h = { .d = { .type = VM_PKT_DATA_USING_GPA_DIRECT } };
	size_t pos = 24;

	memset(buf, 0, 2048);
	for (unsigned i = 0; i < nr; i++) {
		memcpy(buf + pos, &rh[i], 8);
		pos += 8;
		for (unsigned j = 0; j < npfn[i]; j++, pos += 8)
			buf[pos] = (uint8_t)(i * 16 + j);
	}
	pos += extra;
	h.d.offset8 = (uint16_t)(pos / 8);
	h.d.len8 = (uint16_t)(pos / 8 + 1);
	h.range_count = range_count;
	memcpy(buf, &h, 24);
	return pos + 8;
}

static void test_parse_rejects(void **state)
{
	struct vmbus_gpa_range_hdr rh[3] = { { 10, 0 }, { 5000, 100 }, { 1, 4095 } };
	unsigned np[3] = { 1, 2, 1 };
	struct vmbus_gpa_range_view rv;
	struct vmbus_pkt_view v;
	uint8_t buf[2048] __attribute__((aligned(8)));
	size_t n;

	/* Valid, then exact variations of it. */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), 0);
	assert_int_equal(v.range_count, 3);
	assert_int_equal(vmbus_pkt_range(&v, 1, &rv), 0);
	assert_int_equal(rv.pfn_count, 2);
	assert_true(vmbus_gpa_range_pfn(&rv, 1) == 0x11);
	/* Unaligned copy: PFN access must still work (UBSan checks this). */
	memmove(buf + 1, buf, n);
	assert_int_equal(vmbus_pkt_parse(buf + 1, n, &v), 0);
	assert_int_equal(vmbus_pkt_range(&v, 2, &rv), 0);
	assert_true(vmbus_gpa_range_pfn(&rv, 0) == 0x20);

	/* The accessor re-checks: a copy changed after parsing is refused. */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), 0);
	memset(buf + 24 + 16, 0, 8); /* range 1 header: byte_count 0 */
	assert_int_equal(vmbus_pkt_range(&v, 0, &rv), 0);
	assert_int_equal(vmbus_pkt_range(&v, 1, &rv), -EPROTO);
	assert_int_equal(vmbus_pkt_range(&v, 2, &rv), -EPROTO);

	/* Slack after the ranges inside the descriptor area is tolerated. */
	n = mk_gpa(buf, 3, 3, rh, np, 16);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), 0);

	n = mk_gpa(buf, 0, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	{
		struct vmbus_gpa_range_hdr r65[65];
		unsigned n65[65];

		for (unsigned i = 0; i < 65; i++) {
			r65[i] = (struct vmbus_gpa_range_hdr){ 8, 0 };
			n65[i] = 1;
		}
		n = mk_gpa(buf, 64, 64, r65, n65, 0);
		assert_int_equal(vmbus_pkt_parse(buf, n, &v), 0);
		n = mk_gpa(buf, 65, 65, r65, n65, 0); /* well-formed, but too many */
		assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	}
	n = mk_gpa(buf, 65, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	n = mk_gpa(buf, 0xffffffffu, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	n = mk_gpa(buf, 4, 3, rh, np, 0); /* more ranges than there are */
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	n = mk_gpa(buf, 4, 3, rh, np, 8); /* room for a header, not its PFN */
	memcpy(buf + n - 16, &(struct vmbus_gpa_range_hdr){ 1, 0 }, 8);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	n = mk_gpa(buf, 4, 3, rh, np, 16); /* ...and with room for its PFN */
	memcpy(buf + n - 24, &(struct vmbus_gpa_range_hdr){ 1, 0 }, 8);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), 0);

	rh[1].byte_offset = 4096;
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	rh[1].byte_count = 1; /* 2 PFNs would even be present */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	rh[1].byte_count = 5000;
	rh[1].byte_offset = 100;
	rh[1].byte_count = 0;
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	rh[1].byte_count = 9000; /* needs 3 PFNs, 2 present, so overflows */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	rh[1].byte_count = 0xffffffffu;
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	/* The last range's PFNs running into the payload. */
	rh[1].byte_count = 5000;
	rh[2].byte_count = 2;
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);
	rh[2].byte_count = 1;

	/* GPA direct with offset8 too small for its header. */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	((struct vmbus_pkt_desc *)buf)->offset8 = 2;
	assert_int_equal(vmbus_pkt_parse(buf, n, &v), -EPROTO);

	/* Descriptor-level checks. */
	n = mk_gpa(buf, 3, 3, rh, np, 0);
	assert_int_equal(vmbus_pkt_parse(buf, 15, &v), -EPROTO);
	assert_int_equal(vmbus_pkt_parse(buf, n - 8, &v), -EPROTO); /* len8 beyond len */
	assert_int_equal(vmbus_pkt_parse(buf, n + 100, &v), 0);	    /* larger buffer is fine */
	{
		struct vmbus_pkt_desc d = { VM_PKT_DATA_INBAND, 2, 2, 0, 5 };

		memcpy(buf, &d, 16);
		assert_int_equal(vmbus_pkt_parse(buf, 16, &v), 0);
		assert_int_equal(v.payload_len, 0);
		assert_int_equal(vmbus_pkt_range(&v, 0, &rv), -EINVAL);
		d.offset8 = 3;
		memcpy(buf, &d, 16);
		assert_int_equal(vmbus_pkt_parse(buf, 16, &v), -EPROTO);
		d.offset8 = 1;
		d.len8 = 1;
		memcpy(buf, &d, 16);
		assert_int_equal(vmbus_pkt_parse(buf, 16, &v), -EPROTO);
		d.offset8 = 2;
		d.len8 = 2;
		d.type = 0x20;
		memcpy(buf, &d, 16);
		assert_int_equal(vmbus_pkt_parse(buf, 16, &v), -EPROTO);
	}
}

/* ---- stress ------------------------------------------------------------- */

#define STRESS_PACKETS 100000u

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Everything about packet seq, derived from seq alone so that the reader
 * can regenerate what the writer sent. */
struct spec {
	unsigned kind; /* 0 in-band, 1 completion, 2 GPA direct */
	uint32_t len;
	uint16_t flags;
	unsigned nranges;
	struct vmbus_gpa_range_desc ranges[4];
	uint64_t pfns[4][4];
	uint8_t data[512];
};

static void gen_spec(uint64_t seq, struct spec *s)
{
	uint64_t st = seq * 0x2545f4914f6cdd1dull + 17;
	uint64_t x = splitmix(&st);

	s->kind = (unsigned)(x % 5) < 3 ? 0 : (unsigned)(x % 5) - 2; /* 60/20/20 */
	s->len = (uint32_t)(splitmix(&st) % 501);
	s->flags = s->kind == 1 ? 0 : (uint16_t)(x >> 40 & 1);
	s->nranges = s->kind == 2 ? 1 + (unsigned)(splitmix(&st) % 4) : 0;
	for (unsigned i = 0; i < s->nranges; i++) {
		uint32_t bo = (uint32_t)(splitmix(&st) % 4096);
		uint32_t max = 4 * 4096 - bo; /* at most 4 PFNs */

		s->ranges[i].byte_offset = bo;
		s->ranges[i].byte_count = 1 + (uint32_t)(splitmix(&st) % max);
		s->ranges[i].pfns = s->pfns[i];
		for (unsigned j = 0; j < 4; j++)
			s->pfns[i][j] = splitmix(&st) >> 12;
	}
	for (uint32_t i = 0; i < s->len; i += 8) {
		uint64_t v = splitmix(&st);

		memcpy(s->data + i, &v, 8); /* data has room for the last chunk */
	}
}

static int send_spec(struct vmbus_ring *w, uint64_t seq, const struct spec *s, bool *sig)
{
	switch (s->kind) {
	case 0:
		return vmbus_ring_send_inband(w, seq, s->flags, s->data, s->len, sig);
	case 1:
		return vmbus_ring_send_completion(w, seq, s->data, s->len, sig);
	default:
		return vmbus_ring_send_gpa_direct(w, seq, s->flags, s->ranges, s->nranges, s->data,
						  s->len, sig);
	}
}

static uint32_t spec_bytes(const struct spec *s)
{
	uint32_t b = 0;

	if (s->kind != 2)
		return VMBUS_RING_INBAND_BYTES(s->len);
	if (vmbus_ring_gpa_direct_bytes(s->ranges, s->nranges, s->len, &b))
		return 0;
	return b;
}

/* Checks a received packet against what seq should have been; returns
 * false (rather than asserting) so that it can run on a thread. */
static bool verify_spec(const uint8_t *buf, size_t got, uint64_t seq)
{
	struct vmbus_gpa_range_view rv;
	struct vmbus_pkt_view v;
	struct spec s;
	static const uint16_t types[] = { VM_PKT_DATA_INBAND, VM_PKT_COMP,
					  VM_PKT_DATA_USING_GPA_DIRECT };

	gen_spec(seq, &s);
	if (vmbus_pkt_parse(buf, got, &v) || v.pkt_len != got || v.type != types[s.kind] ||
	    v.trans_id != seq || v.flags != s.flags || v.range_count != s.nranges)
		return false;
	if (spec_bytes(&s) != got + 8 || v.payload_len < s.len || v.payload_len - s.len > 7)
		return false;
	if (memcmp(v.payload, s.data, s.len))
		return false;
	for (uint32_t i = s.len; i < v.payload_len; i++)
		if (v.payload[i])
			return false;
	for (unsigned i = 0; i < s.nranges; i++) {
		if (vmbus_pkt_range(&v, i, &rv) || rv.byte_count != s.ranges[i].byte_count ||
		    rv.byte_offset != s.ranges[i].byte_offset)
			return false;
		for (uint32_t j = 0; j < rv.pfn_count; j++)
			if (vmbus_gpa_range_pfn(&rv, j) != s.pfns[i][j])
				return false;
	}
	return true;
}

/*
 * One thread plays both sides in random interleavings, checking content, the
 * write-side signal (exactly "was empty and not masked") and that the
 * read-side signal fires exactly when a blocked writer's need is met.
 */
static void test_stress_interleaved(void **state)
{
	uint64_t wseq = 0, rseq = 0, rng = 12345;
	uint32_t need = 0;
	bool waiting = false, masked = false;
	uint8_t buf[1024];
	struct spec s;
	struct pair p;

	pair_open(&p, 1);
	pair_at(&p, 0);
	while (rseq < STRESS_PACKETS) {
		unsigned nw = 1 + (unsigned)(splitmix(&rng) % 8);
		unsigned nr = 1 + (unsigned)(splitmix(&rng) % 8);

		if (!waiting) {
			for (unsigned k = 0; k < nw && wseq < STRESS_PACKETS; k++) {
				bool sig, was_empty = p.ctl->write_index == p.ctl->read_index;
				int rc;

				gen_spec(wseq, &s);
				rc = send_spec(&p.w, wseq, &s, &sig);
				if (rc == -EAGAIN) {
					need = spec_bytes(&s);
					assert_true(vmbus_ring_bytes_to_write(&p.w) <= need);
					assert_int_equal(vmbus_ring_want_space(&p.w, need), 0);
					waiting = true;
					break;
				}
				assert_int_equal(rc, 0);
				assert_int_equal(sig, was_empty && !masked);
				wseq++;
			}
		}
		if (splitmix(&rng) % 4 == 0) {
			masked = !masked;
			vmbus_ring_set_interrupt_mask(&p.r, masked);
		}
		for (unsigned k = 0; k < nr; k++) {
			size_t got;
			bool sig;
			int rc = vmbus_ring_read(&p.r, buf, sizeof(buf), &got);

			if (rc == -EAGAIN)
				break;
			assert_int_equal(rc, 0);
			assert_true(verify_spec(buf, got, rseq));
			rseq++;
			sig = vmbus_ring_read_done_signal(&p.r, (uint32_t)got + 8);
			/* Exactly at the crossing, and only for a waiting writer. */
			assert_int_equal(sig,
					 waiting && vmbus_ring_bytes_to_write(&p.w) > need &&
						 vmbus_ring_bytes_to_write(&p.w) - got - 8 <= need);
			if (sig) {
				assert_int_equal(vmbus_ring_want_space(&p.w, 0), 0);
				waiting = false;
			}
		}
	}
	assert_int_equal(wseq, STRESS_PACKETS);
	assert_true(vmbus_ring_empty(&p.r));
	pair_close(&p);
}

/* A level-collapsing event: what a VMBus interrupt looks like to a driver. */
struct event {
	pthread_mutex_t m;
	pthread_cond_t c;
	unsigned count;
};

static void event_init(struct event *e)
{
	pthread_mutex_init(&e->m, NULL);
	pthread_cond_init(&e->c, NULL);
	e->count = 0;
}

static void event_signal(struct event *e)
{
	pthread_mutex_lock(&e->m);
	e->count++;
	pthread_cond_signal(&e->c);
	pthread_mutex_unlock(&e->m);
}

/* false on timeout: a lost wakeup. */
static bool event_wait(struct event *e)
{
	struct timespec ts;
	bool ok = true;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&e->m);
	while (!e->count && ok)
		ok = pthread_cond_timedwait(&e->c, &e->m, &ts) == 0 || e->count;
	e->count = 0;
	pthread_mutex_unlock(&e->m);
	return ok;
}

struct threads {
	struct pair p;
	struct event data_ev;  /* writer -> reader */
	struct event space_ev; /* reader -> writer */
	atomic_int fail;       /* first failure: 1 writer, 2 reader, 3 timeout */
	atomic_bool stop;
	unsigned writer_waits, reader_waits;
};

static void set_fail(struct threads *t, int why)
{
	int zero = 0;

	atomic_compare_exchange_strong(&t->fail, &zero, why);
	atomic_store(&t->stop, true);
	event_signal(&t->data_ev);
	event_signal(&t->space_ev);
}

static void *writer_thread(void *arg)
{
	struct threads *t = arg;
	struct spec s;

	for (uint64_t seq = 0; seq < STRESS_PACKETS && !atomic_load(&t->stop); seq++) {
		bool sig;
		int rc;

		gen_spec(seq, &s);
		rc = send_spec(&t->p.w, seq, &s, &sig);
		if (rc == -EAGAIN) {
			vmbus_ring_want_space(&t->p.w, spec_bytes(&s));
			while ((rc = send_spec(&t->p.w, seq, &s, &sig)) == -EAGAIN) {
				t->writer_waits++;
				if (!event_wait(&t->space_ev)) {
					set_fail(t, 3);
					return NULL;
				}
				if (atomic_load(&t->stop))
					return NULL;
			}
			vmbus_ring_want_space(&t->p.w, 0);
		}
		if (rc) {
			set_fail(t, 1);
			return NULL;
		}
		if (sig)
			event_signal(&t->data_ev);
	}
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct threads *t = arg;
	struct vmbus_ring *r = &t->p.r;
	uint8_t buf[1024];
	uint64_t seq = 0;

	vmbus_ring_set_interrupt_mask(r, true);
	while (seq < STRESS_PACKETS && !atomic_load(&t->stop)) {
		size_t got;
		int rc = vmbus_ring_read(r, buf, sizeof(buf), &got);

		if (rc == 0) {
			if (!verify_spec(buf, got, seq)) {
				set_fail(t, 2);
				return NULL;
			}
			seq++;
			if (vmbus_ring_read_done_signal(r, (uint32_t)got + 8))
				event_signal(&t->space_ev);
			continue;
		}
		if (rc != -EAGAIN) {
			set_fail(t, 2);
			return NULL;
		}
		vmbus_ring_set_interrupt_mask(r, false);
		if (vmbus_ring_empty(r)) {
			t->reader_waits++;
			if (!event_wait(&t->data_ev)) {
				set_fail(t, 3);
				return NULL;
			}
		}
		vmbus_ring_set_interrupt_mask(r, true);
	}
	return NULL;
}

/*
 * A hostile peer flips the descriptor of a published packet between valid
 * and invalid values while the reader reads it again and again. Whatever
 * the timing, a packet that is returned must carry in buf exactly the
 * descriptor that was validated (no time-of-check/time-of-use gap), and
 * nothing may be accessed out of bounds (run under ASan).
 */
struct hostile {
	struct pair p;
	atomic_bool stop;
};

static void *hostile_thread(void *arg)
{
	struct hostile *h = arg;
	uint16_t *len8 = (uint16_t *)(h->p.data + offsetof(struct vmbus_pkt_desc, len8));
	uint16_t *type = (uint16_t *)(h->p.data + offsetof(struct vmbus_pkt_desc, type));
	uint16_t *off8 = (uint16_t *)(h->p.data + offsetof(struct vmbus_pkt_desc, offset8));
	unsigned i = 0;

	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		i++;
		__atomic_store_n(len8, (uint16_t)(i & 1 ? 6 : 0xffff), __ATOMIC_RELAXED);
		__atomic_store_n(type, (uint16_t)(i & 2 ? VM_PKT_DATA_INBAND : 0x7777),
				 __ATOMIC_RELAXED);
		__atomic_store_n(off8, (uint16_t)(i & 4 ? 2 : 40), __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_hostile_peer(void **state)
{
	struct hostile *h = calloc(1, sizeof(*h));
	unsigned ok = 0, bad = 0;
	uint8_t buf[PAGE];
	pthread_t t;
	bool sig;

	assert_non_null(h);
	pair_open(&h->p, 1);
	pair_at(&h->p, 0);
	assert_int_equal(vmbus_ring_send_inband(&h->p.w, 1, 0, buf, 32, &sig), 0); /* 48 + 8 */
	assert_int_equal(pthread_create(&t, NULL, hostile_thread, h), 0);
	for (unsigned i = 0; i < 300000; i++) {
		struct vmbus_pkt_desc d;
		size_t got;
		int rc;

		h->p.ctl->read_index = 0;
		assert_int_equal(vmbus_ring_init(&h->p.r, h->p.mem, h->p.total), 0);
		rc = vmbus_ring_read(&h->p.r, buf, sizeof(buf), &got);
		if (rc) {
			assert_int_equal(rc, -EPROTO);
			bad++;
			continue;
		}
		memcpy(&d, buf, sizeof(d));
		assert_int_equal(got, 48);
		assert_int_equal(d.len8, 6);
		assert_int_equal(d.offset8, 2);
		assert_int_equal(d.type, VM_PKT_DATA_INBAND);
		ok++;
	}
	atomic_store(&h->stop, true);
	pthread_join(t, NULL);
	print_message("hostile: %u packets accepted, %u rejected\n", ok, bad);
	pair_close(&h->p);
	free(h);
}

/* The real thing: concurrent writer and reader sleeping on signals only.
 * A wrong barrier or signal rule shows up as corrupt content or as a
 * lost wakeup (timeout). */
static void test_stress_threads(void **state)
{
	struct threads *t = calloc(1, sizeof(*t));
	pthread_t wt, rt;

	assert_non_null(t);
	pair_open(&t->p, 1);
	pair_at(&t->p, 0);
	event_init(&t->data_ev);
	event_init(&t->space_ev);
	assert_int_equal(pthread_create(&rt, NULL, reader_thread, t), 0);
	assert_int_equal(pthread_create(&wt, NULL, writer_thread, t), 0);
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	assert_int_equal(atomic_load(&t->fail), 0);
	assert_true(vmbus_ring_empty(&t->p.r));
	print_message("threads: writer slept %u times, reader %u times\n", t->writer_waits,
		      t->reader_waits);
	pair_close(&t->p);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_wrap_every_alignment),
		cmocka_unit_test(test_wrap_multi_page),
		cmocka_unit_test(test_full_empty),
		cmocka_unit_test(test_write_signal),
		cmocka_unit_test(test_read_done_signal),
		cmocka_unit_test(test_corrupt_indices),
		cmocka_unit_test(test_corrupt_descriptors),
		cmocka_unit_test(test_emsgsize),
		cmocka_unit_test(test_raw_write),
		cmocka_unit_test(test_gpa_direct_roundtrip),
		cmocka_unit_test(test_gpa_direct_send_rejects),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_stress_interleaved),
		cmocka_unit_test(test_stress_threads),
		cmocka_unit_test(test_hostile_peer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
