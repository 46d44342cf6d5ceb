// SPDX-License-Identifier: MIT
/*
 * Heap over the boot info's free RAM: a first-fit allocator over a free list
 * kept in address order, so that free() can merge a block with both of its
 * neighbours. Every block, free or allocated, starts with a 16-byte header;
 * sizes include it and are multiples of 16, so payloads are 16-byte aligned.
 * Larger alignments (fab_alloc_pages) move the header up inside a free block
 * and leave the space before it as a free block of its own.
 *
 * A spin lock guards the list. The guest has no interrupts and no preemption,
 * so a holder always runs to the unlock; the lock only matters when vCPUs
 * other than 0 allocate.
 */
#include <stdbool.h>

#include "guest_int.h"

#define HDR_BYTES      16u
#define MIN_BLOCK      32u		     /* a header and the smallest payload */
#define ALLOC_TAG      0x6b6f6c4261626166ull /* marks the header of a live allocation */
#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~(uintptr_t)((a)-1))

struct block {
	size_t size; /* bytes, header included */
	union {
		struct block *next; /* free: next free block, higher address */
		uint64_t tag;	    /* allocated: ALLOC_TAG */
	};
};

_Static_assert(sizeof(struct block) == HDR_BYTES, "block header is 16 bytes");

static struct block *free_list;
static uintptr_t heap_lo, heap_hi;
static unsigned int heap_lock;

static void lock(void)
{
	while (__atomic_exchange_n(&heap_lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&heap_lock, __ATOMIC_RELAXED))
			fab__cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&heap_lock, 0, __ATOMIC_RELEASE);
}

void fab__heap_init(uintptr_t lo, uintptr_t hi)
{
	heap_lo = ALIGN_UP(lo, HDR_BYTES);
	heap_hi = hi & ~(uintptr_t)(HDR_BYTES - 1);
	free_list = NULL;
	if (heap_hi > heap_lo && heap_hi - heap_lo >= MIN_BLOCK) {
		free_list = (struct block *)heap_lo;
		free_list->size = heap_hi - heap_lo;
		free_list->next = NULL;
	} else {
		heap_hi = heap_lo;
	}
}

/* First fit for size payload bytes at align (a power of two >= 16). */
static void *alloc_locked(size_t size, size_t align)
{
	struct block **link = &free_list, *b;
	size_t need;

	if (size > heap_hi - heap_lo)
		return NULL;
	need = ALIGN_UP(size ? size : 1, HDR_BYTES) + HDR_BYTES;

	for (; (b = *link) != NULL; link = &b->next) {
		uintptr_t start = (uintptr_t)b, end = start + b->size;
		uintptr_t payload = ALIGN_UP(start + HDR_BYTES, align), hdr, tail;
		struct block *next = b->next, *a;
		size_t got = need;

		/* A gap before the header must be able to hold a free block. */
		if (payload - HDR_BYTES != start && payload - HDR_BYTES - start < MIN_BLOCK)
			payload += align;
		hdr = payload - HDR_BYTES;
		if (hdr >= end || end - hdr < need)
			continue;

		tail = end - (hdr + need);
		if (tail < MIN_BLOCK) {
			got += tail; /* too small to stand alone: hand it out too */
		} else {
			struct block *t = (struct block *)(hdr + need);

			t->size = tail;
			t->next = next;
			next = t;
		}
		if (hdr != start) {
			b->size = hdr - start; /* b stays on the list, before next */
			b->next = next;
		} else {
			*link = next;
		}
		a = (struct block *)hdr;
		a->size = got;
		a->tag = ALLOC_TAG;
		return (void *)payload;
	}
	return NULL;
}

static void *alloc(size_t size, size_t align)
{
	void *p;

	lock();
	p = alloc_locked(size, align);
	unlock();
	return p;
}

/* The header of p, or NULL if p is not a live allocation. */
static struct block *live_block(void *p)
{
	uintptr_t a = (uintptr_t)p;
	struct block *b;

	if ((a & (HDR_BYTES - 1)) || a < heap_lo + HDR_BYTES || a >= heap_hi)
		return NULL;
	b = (struct block *)(a - HDR_BYTES);
	if (b->tag != ALLOC_TAG || b->size < MIN_BLOCK || b->size > heap_hi - (uintptr_t)b)
		return NULL;
	return b;
}

void *malloc(size_t size)
{
	return alloc(size, HDR_BYTES);
}

void *calloc(size_t n, size_t size)
{
	size_t bytes;
	void *p;

	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	p = malloc(bytes);
	if (p)
		memset(p, 0, bytes);
	return p;
}

void free(void *p)
{
	struct block *b, *prev = NULL, *next;

	if (!p)
		return;
	lock();
	b = live_block(p);
	if (!b) {
		unlock();
		fab_panic("free(%p): not a live heap allocation", p);
	}
	b->tag = 0;

	for (next = free_list; next && (uintptr_t)next < (uintptr_t)b; next = next->next)
		prev = next;
	if (next && (uintptr_t)b + b->size == (uintptr_t)next) {
		b->size += next->size;
		next = next->next;
	}
	b->next = next;
	if (prev && (uintptr_t)prev + prev->size == (uintptr_t)b) {
		prev->size += b->size;
		prev->next = b->next;
	} else if (prev) {
		prev->next = b;
	} else {
		free_list = b;
	}
	unlock();
}

void *realloc(void *p, size_t size)
{
	struct block *b;
	size_t have;
	void *q;

	if (!p)
		return malloc(size);
	if (!size) {
		free(p);
		return NULL;
	}
	lock();
	b = live_block(p);
	unlock();
	if (!b)
		fab_panic("realloc(%p): not a live heap allocation", p);
	have = b->size - HDR_BYTES;
	if (size <= have)
		return p; /* shrinking keeps the block; the slack is small or temporary */
	q = malloc(size);
	if (!q)
		return NULL;
	memcpy(q, p, have);
	free(p);
	return q;
}

void *fab_alloc_pages(size_t npages)
{
	size_t bytes;
	void *p;

	if (!npages || __builtin_mul_overflow(npages, (size_t)FAB_PAGE_SIZE, &bytes))
		return NULL;
	p = alloc(bytes, FAB_PAGE_SIZE);
	if (p)
		memset(p, 0, bytes);
	return p;
}
