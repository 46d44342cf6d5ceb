/* SPDX-License-Identifier: MIT */
/*
 * Verifiable disk contents, shared by the guest benchmark (blockbench) and
 * host tests that check a disk image after a guest wrote it.
 *
 * The 512-byte block at LBA lba written in generation gen with seed seed
 * holds:
 *   bytes 0..7    lba, little-endian
 *   bytes 8..15   gen, little-endian
 *   bytes 16..511 62 words of an xorshift64 stream (little-endian), seeded
 *                 from (lba, gen, seed) through the splitmix64 finalizer
 * so every block of every generation differs, a block written to the wrong
 * place names the place it was meant for, and a stale block names its
 * generation.
 *
 * Freestanding and header-only: <stdint.h> and <stddef.h> only, every
 * function static inline, no allocation, no floating point; it compiles in
 * guest images and in host programs alike. Byte order is explicit, so the
 * content does not depend on the CPU's.
 */
#ifndef FAB_BLOCKPATTERN_H
#define FAB_BLOCKPATTERN_H

#include <stddef.h>
#include <stdint.h>

#define BLOCKPATTERN_BLOCK_SIZE 512u
#define BLOCKPATTERN_HDR_BYTES	16u

/* Where a block differs from what was expected (blockpattern_verify). */
struct blockpattern_mismatch {
	uint64_t block;	    /* index of the bad block within the buffer */
	uint64_t lba;	    /* its LBA */
	uint64_t found_lba; /* what its header says (garbage if not a pattern block) */
	uint64_t found_gen;
	uint32_t offset; /* first differing byte within the block */
};

static inline void blockpattern_put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t blockpattern_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The splitmix64 finalizer: a bijection that spreads every input bit. */
static inline uint64_t blockpattern_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* First xorshift64 state of a block; never 0 (xorshift64 would stay 0). */
static inline uint64_t blockpattern_state(uint64_t lba, uint64_t gen, uint64_t seed)
{
	uint64_t x = blockpattern_mix64(seed ^ 0x626c6f636b706174ull); /* "blockpat" */

	x = blockpattern_mix64(x ^ lba);
	x = blockpattern_mix64(x ^ (gen * 0x9e3779b97f4a7c15ull));
	return x ? x : 0x2545f4914f6cdd1dull;
}

static inline uint64_t blockpattern_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Writes the content of one block (BLOCKPATTERN_BLOCK_SIZE bytes at buf). */
static inline void blockpattern_fill_block(void *buf, uint64_t lba, uint64_t gen, uint64_t seed)
{
	uint8_t *p = (uint8_t *)buf;
	uint64_t st = blockpattern_state(lba, gen, seed);

	blockpattern_put_le64(p, lba);
	blockpattern_put_le64(p + 8, gen);
	for (uint32_t off = BLOCKPATTERN_HDR_BYTES; off < BLOCKPATTERN_BLOCK_SIZE; off += 8)
		blockpattern_put_le64(p + off, blockpattern_next(&st));
}

/* Fills nblocks consecutive blocks starting at LBA lba. */
static inline void blockpattern_fill(void *buf, uint64_t lba, uint64_t nblocks, uint64_t gen,
				     uint64_t seed)
{
	for (uint64_t i = 0; i < nblocks; i++)
		blockpattern_fill_block((uint8_t *)buf + i * BLOCKPATTERN_BLOCK_SIZE, lba + i, gen,
					seed);
}

/*
 * Checks one block. Returns 0 if it is exactly the block (lba, gen, seed),
 * else -1 with the first differing byte offset in *offset (if not NULL).
 */
static inline int blockpattern_check_block(const void *buf, uint64_t lba, uint64_t gen,
					   uint64_t seed, uint32_t *offset)
{
	const uint8_t *p = (const uint8_t *)buf;
	uint8_t want[8];
	uint64_t st = blockpattern_state(lba, gen, seed);
	uint32_t off;

	for (off = 0; off < BLOCKPATTERN_BLOCK_SIZE; off += 8) {
		uint64_t w = off == 0 ? lba : off == 8 ? gen : blockpattern_next(&st);

		blockpattern_put_le64(want, w);
		for (uint32_t i = 0; i < 8; i++) {
			if (p[off + i] != want[i]) {
				if (offset)
					*offset = off + i;
				return -1;
			}
		}
	}
	return 0;
}

/*
 * Checks nblocks consecutive blocks starting at LBA lba. Returns the number
 * of bad blocks (0: all good); the first one is described in *m if m is not
 * NULL.
 */
static inline uint64_t blockpattern_verify(const void *buf, uint64_t lba, uint64_t nblocks,
					   uint64_t gen, uint64_t seed,
					   struct blockpattern_mismatch *m)
{
	const uint8_t *p = (const uint8_t *)buf;
	uint64_t bad = 0;

	for (uint64_t i = 0; i < nblocks; i++) {
		const uint8_t *blk = p + i * BLOCKPATTERN_BLOCK_SIZE;
		uint32_t off = 0;

		if (blockpattern_check_block(blk, lba + i, gen, seed, &off) == 0)
			continue;
		if (bad++ == 0 && m) {
			m->block = i;
			m->lba = lba + i;
			m->found_lba = blockpattern_get_le64(blk);
			m->found_gen = blockpattern_get_le64(blk + 8);
			m->offset = off;
		}
	}
	return bad;
}

#endif
