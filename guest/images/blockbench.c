// SPDX-License-Identifier: MIT
/*
 * blockbench: block I/O benchmark and data checker over the storage VSC.
 *
 *   blockbench [--mode M] [--bs BYTES] [--qd 1..32] [--ops N] [--blocks N]
 *              [--seed S] [--gen G] [--ms D] [--flush] [--ring-pages N]
 *
 * Opens the first storage channel and works on the first N I/O blocks of
 * bs bytes (--blocks, the working set; default: the whole disk, at most
 * 4096 blocks). Modes:
 *   randwrite, seqwrite    write --ops blocks (random / in order, wrapping)
 *   randread, seqread      read --ops blocks and verify them
 *   verify                 read every block of the working set and verify it
 *   write-then-verify      (default) randwrite, then read back and verify
 *                          every distinct block written
 *   persist                data that outlives the partition (below)
 * --ops defaults to the working set size. Every block written holds the
 * fab/blockpattern.h pattern of generation --gen (default 1) and seed --seed
 * (default 1); every block read is checked against it, so reads need a disk
 * written with the same gen, seed and bs (e.g. seqwrite, then verify).
 * --ms D keeps a random or sequential phase going (wrapping) until it has run
 * for D ms as well as --ops I/Os, e.g. to outlast a fault injected on the
 * host. --flush sends SYNCHRONIZE CACHE after the writes. --ring-pages sizes each
 * ring of the storage channel (control page included, >= 2; default
 * storvsc's), e.g. to see a full send ring.
 *
 * Output, per phase:
 *   blockbench: mode=... bs=... qd=... ops=... errors=0 iops=... lat_us
 *   p50=... p90=... p99=... max=...
 * then "blockbench: OK" (exit 0) or "blockbench: FAILED <reason>" (exit 1;
 * 2 for bad arguments). Latency is from submit to completion, taken from the
 * reference clock once per batch, in a log-linear histogram (no floating
 * point in guests).
 *
 * Heartbeats are answered throughout (every wait polls the VMBus library);
 * a shutdown request stops the run: "blockbench: shutdown requested", exit
 * 0 unless an error was seen before it.
 *
 * --mode persist [--blocks N] [--seed S] [--bs B] [--qd Q] [--ms D] is for a
 * partition that the controller restarts, maybe on another node, after a
 * failure. I/O block 0 holds a header (see persist_hdr_parse), data block
 * d = 0..N-1 is I/O block d + 1. With block 0 all zeros (a fresh disk) it
 * writes every data block in generation 1, flushes, writes the header and
 * flushes again: "blockbench: persist: wrote N blocks (generation 1)". With
 * a header for the same seed, N and bs it reads and verifies every data
 * block in the header's generation: "blockbench: persist: verified N blocks
 * written by an earlier run (generation G)", or "blockbench: persist:
 * MISMATCH at block d" for each bad block (the first 10) and exit 1. Any
 * other block 0 (a corrupt header, another run's parameters, foreign data)
 * is left alone: "blockbench: FAILED persist: <reason>", exit 1. Then it
 * reads random data blocks, each verified, until a shutdown request (exit
 * 0) or, with --ms, for D ms (exit 0, "blockbench: OK"), printing
 * "blockbench: persist: R reads verified, E errors" about every 5 s and
 * once at the end; a bad block again ends it with MISMATCH and exit 1. An
 * I/O that fails (the node serving a remote disk died: CHECK CONDITION) is
 * counted in E and tried again every 250 ms, in any step, for as long as it
 * takes: the disk may come back, and the host may restart the partition
 * elsewhere anyway. --gen, --ops and --flush do not go with persist.
 */
#include <errno.h>
#include <stdbool.h>

#include "fab/blockpattern.h"
#include "fab/storvsc.h"

#define IO_TIMEOUT	  VMBUS_GUEST_MS(30000)
#define DEFAULT_WS_BLOCKS 4096
#define MAX_ERROR_PRINTS  10
#define POISON		  0xa5
#define HIST_EXACT	  32 /* values below are counted exactly */
#define HIST_SUB_BITS	  4  /* 16 sub-buckets per power of two above */
#define HIST_BUCKETS	  (HIST_EXACT + (64 - 5) * (1 << HIST_SUB_BITS))
#define TICKS_PER_US	  10 /* reference clock: 100 ns */
#define TICKS_PER_SECOND  10000000ull

enum mode { RANDWRITE, RANDREAD, SEQWRITE, SEQREAD, VERIFY, WRITE_THEN_VERIFY, PERSIST };

static const char *const mode_names[] = {
	[RANDWRITE] = "randwrite", [RANDREAD] = "randread",
	[SEQWRITE] = "seqwrite",   [SEQREAD] = "seqread",
	[VERIFY] = "verify",	   [WRITE_THEN_VERIFY] = "write-then-verify",
	[PERSIST] = "persist",
};

/* How a phase picks its blocks. */
enum order { ORDER_RANDOM, ORDER_SEQ, ORDER_BITMAP };

struct req {
	uint64_t idx;	/* I/O block index in the working set */
	uint64_t t_sub; /* reference time at submit */
	uint8_t *buf;	/* bs bytes */
	bool write;
	bool busy;
	bool retry;	  /* persist: failed, idx to be tried again at t_retry */
	uint64_t t_retry; /* reference time */
};

struct bench {
	/* arguments */
	enum mode mode;
	uint32_t bs;
	uint32_t qd;
	uint64_t ops;
	uint64_t ws; /* working set, in I/O blocks */
	uint64_t seed;
	uint64_t gen;
	bool flush;
	bool ops_set, ws_set, gen_set;
	uint32_t ring_pages; /* 0: storvsc's default */
	/* device */
	struct storvsc *disk;
	struct storvsc_info info;
	uint32_t dev_per_io; /* device blocks per I/O block */
	uint32_t pat_per_io; /* 512-byte pattern blocks per I/O block */
	/* state */
	struct req reqs[STORVSC_MAX_QUEUE];
	uint8_t *written; /* bitmap of blocks written (write-then-verify) */
	uint64_t rng;
	uint64_t errors; /* over the whole run */
	uint64_t min_ms; /* --ms */
	uint64_t error_prints;
	bool shutdown;
	/* per phase */
	uint32_t hist[HIST_BUCKETS];
	uint64_t lat_max;
	/* persist */
	uint8_t *blk0;	      /* I/O block 0 as read, or as to be written */
	uint64_t err_lines;   /* I/O error lines printed */
	uint64_t err_line_at; /* reference time of the last one */
	uint64_t err_quiet;   /* errors since then not printed */
	uint64_t err_streak;  /* failed tries since the last good completion */
	uint64_t mismatches;  /* data blocks that failed to verify */
};

/* ---- histogram ---------------------------------------------------------------- */

static unsigned int hist_index(uint64_t v)
{
	unsigned int e;

	if (v < HIST_EXACT)
		return (unsigned int)v;
	e = 63 - (unsigned int)__builtin_clzll(v); /* >= 5 */
	return HIST_EXACT + (e - 5) * (1u << HIST_SUB_BITS) +
	       (unsigned int)((v >> (e - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1));
}

/* Largest value that lands in bucket i. */
static uint64_t hist_upper(unsigned int i)
{
	unsigned int e, sub;

	if (i < HIST_EXACT)
		return i;
	e = (i - HIST_EXACT) / (1u << HIST_SUB_BITS) + 5;
	sub = (i - HIST_EXACT) % (1u << HIST_SUB_BITS);
	return ((uint64_t)((1u << HIST_SUB_BITS) + sub + 1) << (e - HIST_SUB_BITS)) - 1;
}

static void hist_add(struct bench *b, uint64_t ticks)
{
	b->hist[hist_index(ticks)]++;
	if (ticks > b->lat_max)
		b->lat_max = ticks;
}

/* The value at or below which pct percent of the samples lie (bucket upper
 * bound, at most the maximum seen), in microseconds. */
static uint64_t hist_pct_us(const struct bench *b, uint64_t total, unsigned int pct)
{
	uint64_t want = (total * pct + 99) / 100, seen = 0;

	if (!want)
		want = 1;
	for (unsigned int i = 0; i < HIST_BUCKETS; i++) {
		seen += b->hist[i];
		if (seen >= want) {
			uint64_t v = hist_upper(i);

			return (v < b->lat_max ? v : b->lat_max) / TICKS_PER_US;
		}
	}
	return b->lat_max / TICKS_PER_US;
}

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng_next(struct bench *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return b->rng;
}

static uint64_t pattern_lba(const struct bench *b, uint64_t idx)
{
	return idx * b->pat_per_io;
}

static void bitmap_set(uint8_t *map, uint64_t i)
{
	map[i / 8] |= (uint8_t)(1u << (i % 8));
}

static bool bitmap_test(const uint8_t *map, uint64_t i)
{
	return map[i / 8] & (1u << (i % 8));
}

static void error_print(struct bench *b, const char *fmt, ...) FAB_PRINTF(2, 3);

static void error_print(struct bench *b, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (b->error_prints++ >= MAX_ERROR_PRINTS)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("blockbench: error: %s\n", line);
	if (b->error_prints == MAX_ERROR_PRINTS)
		printf("blockbench: further errors not printed\n");
}

/* ---- one phase ------------------------------------------------------------------ */

struct phase {
	const char *label;
	bool write;
	enum order order;
	uint64_t ops;
	/* progress */
	uint64_t next_seq;
	uint64_t bitmap_pos;
	uint64_t submitted;
	uint64_t completed;
	uint64_t errors;
	uint64_t io_errors;    /* completed with an error status */
	uint64_t bad;	       /* completed fine, data wrong */
	uint64_t ok_after_err; /* fine completions since the last I/O error */
	uint64_t t0;
};

/* Whether the phase wants another I/O submitted. */
static bool phase_more(const struct bench *b, const struct phase *ph, uint64_t now)
{
	if (ph->submitted < ph->ops)
		return true;
	return b->min_ms && ph->order != ORDER_BITMAP &&
	       now - ph->t0 < b->min_ms * (TICKS_PER_SECOND / 1000);
}

/* The next block the phase touches; false when a bitmap walk is done. */
static bool next_block(struct bench *b, struct phase *ph, uint64_t *idx)
{
	switch (ph->order) {
	case ORDER_RANDOM:
		*idx = rng_next(b) % b->ws;
		return true;
	case ORDER_SEQ:
		*idx = ph->next_seq++ % b->ws;
		return true;
	case ORDER_BITMAP:
		while (ph->bitmap_pos < b->ws && !bitmap_test(b->written, ph->bitmap_pos))
			ph->bitmap_pos++;
		if (ph->bitmap_pos >= b->ws)
			return false;
		*idx = ph->bitmap_pos++;
		return true;
	}
	return false;
}

static struct req *free_req(struct bench *b)
{
	for (uint32_t i = 0; i < b->qd; i++)
		if (!b->reqs[i].busy)
			return &b->reqs[i];
	return NULL;
}

/* Submits until qd requests are in flight or the phase has them all.
 * Returns 0 or a fatal error. */
static int submit_batch(struct bench *b, struct phase *ph)
{
	uint64_t now = fab_clock_100ns();
	struct req *r;
	uint64_t idx;
	int rc;

	while (phase_more(b, ph, now) && (r = free_req(b))) {
		if (!next_block(b, ph, &idx)) {
			ph->ops = ph->submitted; /* bitmap exhausted */
			break;
		}
		r->idx = idx;
		r->write = ph->write;
		if (r->write) {
			blockpattern_fill(r->buf, pattern_lba(b, idx), b->pat_per_io, b->gen,
					  b->seed);
			if (b->written)
				bitmap_set(b->written, idx);
		} else {
			/* So that a read that moved nothing cannot pass on
			 * what the buffer held before. */
			memset(r->buf, POISON, b->bs);
		}
		r->t_sub = now;
		rc = storvsc_submit(b->disk, r->write ? STORVSC_WRITE : STORVSC_READ,
				    idx * b->dev_per_io, b->dev_per_io, r->buf, r);
		if (rc) {
			printf("blockbench: submit failed: %d\n", rc);
			return rc;
		}
		r->busy = true;
		ph->submitted++;
	}
	return 0;
}

static void complete_one(struct bench *b, struct phase *ph, const struct storvsc_completion *c,
			 uint64_t now)
{
	struct req *r = c->cookie;
	uint64_t lba = pattern_lba(b, r->idx);
	struct blockpattern_mismatch m = { 0 };
	uint64_t bad;

	r->busy = false;
	ph->completed++;
	hist_add(b, now - r->t_sub);
	if (c->status) {
		ph->errors++;
		ph->io_errors++;
		ph->ok_after_err = 0;
		error_print(b,
			    "%s of block %llu (lba %llu) failed: %d srb 0x%02x scsi 0x%02x "
			    "sense %x/%02x/%02x",
			    r->write ? "write" : "read", (unsigned long long)r->idx,
			    (unsigned long long)(r->idx * b->dev_per_io), c->status, c->srb_status,
			    c->scsi_status, c->sense_key, c->asc, c->ascq);
		return;
	}
	if (c->bytes != b->bs) {
		ph->errors++;
		ph->bad++;
		error_print(b, "%s of block %llu moved %u of %u bytes", r->write ? "write" : "read",
			    (unsigned long long)r->idx, c->bytes, b->bs);
		return;
	}
	if (r->write) {
		ph->ok_after_err++;
		return;
	}
	bad = blockpattern_verify(r->buf, lba, b->pat_per_io, b->gen, b->seed, &m);
	if (!bad)
		ph->ok_after_err++;
	if (bad) {
		ph->errors++;
		ph->bad++;
		error_print(b,
			    "verify of block %llu: %llu bad 512-byte block(s), first at lba %llu "
			    "offset %u: holds lba %llu gen %llu (want gen %llu)",
			    (unsigned long long)r->idx, (unsigned long long)bad,
			    (unsigned long long)m.lba, m.offset, (unsigned long long)m.found_lba,
			    (unsigned long long)m.found_gen, (unsigned long long)b->gen);
	}
}

static void phase_report(struct bench *b, const struct phase *ph, uint64_t ticks)
{
	uint64_t n = ph->completed;
	uint64_t iops = ticks ? n * TICKS_PER_SECOND / ticks : 0;
	uint64_t kib_s = ticks ? n * b->bs / 1024 * TICKS_PER_SECOND / ticks : 0;

	printf("blockbench: mode=%s bs=%u qd=%u ops=%llu errors=%llu iops=%llu lat_us p50=%llu "
	       "p90=%llu p99=%llu max=%llu\n",
	       ph->label, b->bs, b->qd, (unsigned long long)n, (unsigned long long)ph->errors,
	       (unsigned long long)iops, (unsigned long long)hist_pct_us(b, n, 50),
	       (unsigned long long)hist_pct_us(b, n, 90), (unsigned long long)hist_pct_us(b, n, 99),
	       (unsigned long long)(b->lat_max / TICKS_PER_US));
	printf("blockbench: %s: elapsed_ms=%llu kib_s=%llu submitted=%llu completed=%llu "
	       "io_errors=%llu bad=%llu ok_after_last_error=%llu\n",
	       ph->label, (unsigned long long)(ticks / (TICKS_PER_SECOND / 1000)),
	       (unsigned long long)kib_s, (unsigned long long)ph->submitted,
	       (unsigned long long)ph->completed, (unsigned long long)ph->io_errors,
	       (unsigned long long)ph->bad, (unsigned long long)ph->ok_after_err);
}

/*
 * Runs one phase at queue depth qd. Returns 0 when it ran to the end (its
 * errors are counted, not returned), -ESHUTDOWN if a shutdown request
 * stopped it, or a fatal error (timeout, failed channel, submit error).
 */
static int run_phase(struct bench *b, struct phase *ph)
{
	struct storvsc_completion comps[STORVSC_MAX_QUEUE];
	uint64_t t0, now;
	int rc = 0, n;

	memset(b->hist, 0, sizeof(b->hist));
	b->lat_max = 0;
	t0 = fab_clock_100ns();
	now = t0;
	ph->t0 = t0;
	for (;;) {
		if (!b->shutdown && vmbus_shutdown_requested())
			b->shutdown = true;
		if (!b->shutdown && !rc)
			rc = submit_batch(b, ph);
		if (storvsc_inflight(b->disk) == 0)
			break;
		n = storvsc_wait(b->disk, comps, STORVSC_MAX_QUEUE, IO_TIMEOUT);
		if (n < 0) {
			printf("blockbench: no completion within %llu s (%u in flight): %d\n",
			       (unsigned long long)(IO_TIMEOUT / TICKS_PER_SECOND),
			       storvsc_inflight(b->disk), n);
			rc = n;
			break;
		}
		now = fab_clock_100ns();
		for (int i = 0; i < n; i++) {
			if (comps[i].status == -EPROTO && !rc)
				rc = -EPROTO;
			complete_one(b, ph, &comps[i], now);
		}
		if (!b->shutdown && !rc && !phase_more(b, ph, now) &&
		    storvsc_inflight(b->disk) == 0)
			break;
	}
	phase_report(b, ph, now - t0);
	b->errors += ph->errors;
	if (rc)
		return rc;
	return b->shutdown ? -ESHUTDOWN : 0;
}

/* ---- persist -------------------------------------------------------------------- */

/*
 * The header is the first 512 bytes of I/O block 0, little-endian; the rest
 * of block 0 is written as zeros:
 *   0   magic "BBPERSIS"
 *   8   version (low 32 bits), bs (high 32 bits)
 *   16  seed
 *   24  data blocks
 *   32  generation of the data
 *   40  checksum: blockpattern_mix64 chained over the 64 words of the
 *       512 bytes, this word left out
 *   48  zeros
 * It goes to the disk only after the data of its generation and a flush, and
 * is flushed itself: a header on the disk means that every data block it
 * describes reached stable storage, so a restarted partition may insist on
 * finding all of them.
 */
#define PERSIST_MAGIC	 0x5349535245504242ull /* "BBPERSIS" */
#define PERSIST_VERSION	 1u
#define PERSIST_CSUM_OFF 40u
#define PERSIST_RETRY	 VMBUS_GUEST_MS(250) /* between tries of a failed I/O */
#define PERSIST_SLICE	 VMBUS_GUEST_MS(100) /* longest wait between looks at the clock */
#define PERSIST_PROGRESS (5 * TICKS_PER_SECOND)
#define PERSIST_ERR_GAP	 TICKS_PER_SECOND /* at most one I/O error line a second */

struct persist_hdr {
	uint32_t version;
	uint32_t bs;
	uint64_t seed;
	uint64_t blocks;
	uint64_t gen;
};

static uint64_t persist_hdr_sum(const uint8_t *hdr)
{
	uint64_t h = 0x7065727369737421ull; /* "persist!" */

	for (uint32_t off = 0; off < BLOCKPATTERN_BLOCK_SIZE; off += 8)
		if (off != PERSIST_CSUM_OFF)
			h = blockpattern_mix64(h ^ blockpattern_get_le64(hdr + off));
	return h;
}

/* Block 0 for this run's parameters and generation, into b->blk0. */
static void persist_hdr_build(struct bench *b)
{
	uint8_t *p = b->blk0;

	memset(p, 0, b->bs);
	blockpattern_put_le64(p, PERSIST_MAGIC);
	blockpattern_put_le64(p + 8, PERSIST_VERSION | (uint64_t)b->bs << 32);
	blockpattern_put_le64(p + 16, b->seed);
	blockpattern_put_le64(p + 24, b->ws);
	blockpattern_put_le64(p + 32, b->gen);
	blockpattern_put_le64(p + PERSIST_CSUM_OFF, persist_hdr_sum(p));
}

/*
 * The one reader of block 0 as it came from the disk (len >= 512 bytes).
 * Returns 0 with *h filled in for a sound header, -ENOENT if the block is
 * all zeros (nothing committed: a fresh disk, or a first run that stopped
 * before its header), or -EINVAL with the reason in why.
 */
static int persist_hdr_parse(const uint8_t *blk, uint32_t len, struct persist_hdr *h, char *why,
			     size_t whylen)
{
	uint64_t magic, word, stored, sum;
	uint32_t i;

	for (i = 0; i < len && !blk[i]; i++)
		;
	if (i == len)
		return -ENOENT;
	magic = blockpattern_get_le64(blk);
	if (magic != PERSIST_MAGIC) {
		snprintf(why, whylen,
			 "block 0 holds no blockbench-persist header (magic 0x%016llx, want "
			 "0x%016llx)",
			 (unsigned long long)magic, (unsigned long long)PERSIST_MAGIC);
		return -EINVAL;
	}
	word = blockpattern_get_le64(blk + 8);
	h->version = (uint32_t)word;
	h->bs = (uint32_t)(word >> 32);
	if (h->version != PERSIST_VERSION) {
		snprintf(why, whylen, "header version %u, this blockbench knows version %u",
			 h->version, PERSIST_VERSION);
		return -EINVAL;
	}
	stored = blockpattern_get_le64(blk + PERSIST_CSUM_OFF);
	sum = persist_hdr_sum(blk);
	if (stored != sum) {
		snprintf(why, whylen,
			 "header checksum 0x%016llx does not match its contents (0x%016llx): "
			 "corrupt header",
			 (unsigned long long)stored, (unsigned long long)sum);
		return -EINVAL;
	}
	h->seed = blockpattern_get_le64(blk + 16);
	h->blocks = blockpattern_get_le64(blk + 24);
	h->gen = blockpattern_get_le64(blk + 32);
	if (!h->gen || !h->blocks || h->bs < BLOCKPATTERN_BLOCK_SIZE ||
	    h->bs % BLOCKPATTERN_BLOCK_SIZE) {
		snprintf(why, whylen,
			 "header fields out of range (generation %llu, blocks %llu, bs %u)",
			 (unsigned long long)h->gen, (unsigned long long)h->blocks, h->bs);
		return -EINVAL;
	}
	return 0;
}

/*
 * One batch of persist I/O: I/O blocks first..first+count-1 in order, done
 * when each of them completed fine once (a flush: count 1), or random data
 * blocks, each read and verified, until the deadline or a shutdown request.
 */
struct pjob {
	int kind; /* STORVSC_READ, STORVSC_WRITE or STORVSC_FLUSH */
	bool random;
	uint64_t first, count;
	uint64_t deadline; /* random: reference time to stop at; 0: none */
	/* progress */
	uint64_t next; /* in order: blocks submitted a first time */
	uint64_t done; /* completed fine (and, data read, verified) */
};

static const char *persist_what(int kind, uint64_t idx, char *buf, size_t len)
{
	if (kind == STORVSC_FLUSH)
		return "flush";
	if (idx == 0)
		snprintf(buf, len, "%s of the header block",
			 kind == STORVSC_READ ? "read" : "write");
	else
		snprintf(buf, len, "%s of data block %llu", kind == STORVSC_READ ? "read" : "write",
			 (unsigned long long)(idx - 1));
	return buf;
}

/* A failed try, to be made again: counted, and printed at most once a
 * second (with how many went unprinted since the line before). */
static void persist_error(struct bench *b, uint64_t now, const char *fmt, ...) FAB_PRINTF(3, 4);

static void persist_error(struct bench *b, uint64_t now, const char *fmt, ...)
{
	char line[256], more[64] = "";
	va_list ap;

	b->errors++;
	b->err_streak++;
	if (b->err_lines && now - b->err_line_at < PERSIST_ERR_GAP) {
		b->err_quiet++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (b->err_quiet)
		snprintf(more, sizeof(more), " (%llu more since the last line)",
			 (unsigned long long)b->err_quiet);
	printf("blockbench: persist: I/O error: %s; trying again%s\n", line, more);
	b->err_lines++;
	b->err_line_at = now;
	b->err_quiet = 0;
}

static void persist_retry_later(struct req *r, uint64_t now)
{
	r->retry = true;
	r->t_retry = now + PERSIST_RETRY;
}

/* Starts I/O on every idle slot that has some: its retry, once due, or the
 * job's next block. Returns 0 or a submit error that will not go away. */
static int persist_fill(struct bench *b, struct pjob *j, uint64_t now)
{
	char what[48];

	for (uint32_t i = 0; i < b->qd; i++) {
		struct req *r = &b->reqs[i];
		int rc;

		if (r->busy || (r->retry && now < r->t_retry))
			continue;
		if (!r->retry) {
			if (j->random)
				r->idx = 1 + rng_next(b) % b->ws;
			else if (j->next < j->count)
				r->idx = j->first + j->next++;
			else
				continue;
		}
		r->retry = false;
		if (j->kind == STORVSC_WRITE && r->idx == 0)
			memcpy(r->buf, b->blk0, b->bs);
		else if (j->kind == STORVSC_WRITE)
			blockpattern_fill(r->buf, pattern_lba(b, r->idx), b->pat_per_io, b->gen,
					  b->seed);
		else if (j->kind == STORVSC_READ)
			memset(r->buf, POISON, b->bs); /* a read that moved nothing fails */
		rc = storvsc_submit(b->disk, j->kind, r->idx * b->dev_per_io, b->dev_per_io, r->buf,
				    r);
		if (rc == -ETIMEDOUT || rc == -EBUSY) {
			/* The send ring stayed full: the host is stuck for now. */
			persist_error(b, now, "%s not submitted: %d",
				      persist_what(j->kind, r->idx, what, sizeof(what)), rc);
			persist_retry_later(r, now);
			continue;
		}
		if (rc) {
			printf("blockbench: persist: submit of %s failed: %d\n",
			       persist_what(j->kind, r->idx, what, sizeof(what)), rc);
			return rc;
		}
		r->busy = true;
		r->t_sub = now;
	}
	return 0;
}

static void persist_complete(struct bench *b, struct pjob *j, const struct storvsc_completion *c,
			     uint64_t now)
{
	struct req *r = c->cookie;
	struct blockpattern_mismatch m = { 0 };
	char what[48];
	uint64_t bad;

	r->busy = false;
	if (c->status == -EPROTO)
		return; /* the channel failed: persist_run stops */
	if (c->status) {
		persist_error(b, now,
			      "%s (lba %llu) failed: %d srb 0x%02x scsi 0x%02x sense %x/%02x/%02x",
			      persist_what(j->kind, r->idx, what, sizeof(what)),
			      (unsigned long long)(r->idx * b->dev_per_io), c->status,
			      c->srb_status, c->scsi_status, c->sense_key, c->asc, c->ascq);
		persist_retry_later(r, now);
		return;
	}
	if (j->kind != STORVSC_FLUSH && c->bytes != b->bs) {
		persist_error(b, now, "%s moved %u of %u bytes",
			      persist_what(j->kind, r->idx, what, sizeof(what)), c->bytes, b->bs);
		persist_retry_later(r, now);
		return;
	}
	if (b->err_streak) {
		printf("blockbench: persist: I/O works again after %llu failed tries\n",
		       (unsigned long long)b->err_streak);
		b->err_streak = 0;
	}
	if (j->kind == STORVSC_READ && r->idx == 0) {
		memcpy(b->blk0, r->buf, b->bs);
	} else if (j->kind == STORVSC_READ) {
		bad = blockpattern_verify(r->buf, pattern_lba(b, r->idx), b->pat_per_io, b->gen,
					  b->seed, &m);
		if (bad) {
			if (b->mismatches++ < MAX_ERROR_PRINTS) {
				printf("blockbench: persist: MISMATCH at block %llu\n",
				       (unsigned long long)(r->idx - 1));
				printf("blockbench: persist: data block %llu: %llu bad 512-byte "
				       "block(s), first at lba %llu offset %u: holds lba %llu gen "
				       "%llu (want gen %llu, seed %llu)\n",
				       (unsigned long long)(r->idx - 1), (unsigned long long)bad,
				       (unsigned long long)m.lba, m.offset,
				       (unsigned long long)m.found_lba,
				       (unsigned long long)m.found_gen, (unsigned long long)b->gen,
				       (unsigned long long)b->seed);
			}
			return;
		}
	}
	j->done++;
}

static void persist_progress(const struct bench *b, const struct pjob *loop)
{
	printf("blockbench: persist: %llu reads verified, %llu errors\n",
	       (unsigned long long)(loop ? loop->done : 0), (unsigned long long)b->errors);
}

/*
 * Runs job j at queue depth qd until it is done, a data block failed to
 * verify, the deadline passed or the host asked for a shutdown. Failed I/O
 * is tried again for as long as it takes. Returns 0 (done, or deadline),
 * -EBADMSG (mismatch), -ESHUTDOWN (stopped before it was done), or an
 * error that ends the run (the channel failed, a submit error).
 */
static int persist_run(struct bench *b, struct pjob *j)
{
	struct storvsc_completion comps[STORVSC_MAX_QUEUE];
	uint64_t now = fab_clock_100ns();
	uint64_t last_done = now, stall_line = now, stop_at = 0;
	uint64_t next_progress = now + PERSIST_PROGRESS;
	bool finished = false, stopping = false;
	int rc = 0, n;

	for (uint32_t i = 0; i < b->qd; i++)
		b->reqs[i].retry = false;
	for (;;) {
		if (!b->shutdown && vmbus_shutdown_requested())
			b->shutdown = true;
		finished = j->random ? j->deadline && now >= j->deadline : j->done == j->count;
		if (!rc && !b->shutdown && !b->mismatches && !finished) {
			rc = persist_fill(b, j, now);
		} else {
			if (!stopping) {
				stopping = true;
				stop_at = now;
			}
			/* Nothing more is submitted; what is in flight is waited
			 * for, but not for ever if its disk is gone. */
			if (!storvsc_inflight(b->disk) || now - stop_at >= IO_TIMEOUT)
				break;
		}
		n = storvsc_wait(b->disk, comps, STORVSC_MAX_QUEUE, PERSIST_SLICE);
		if (n == -ENOENT) {
			/* Nothing in flight: only retries, waiting for their time. */
			vmbus_guest_idle(PERSIST_SLICE);
			n = 0;
		} else if (n == -ETIMEDOUT) {
			n = 0;
		} else if (n < 0) {
			printf("blockbench: persist: waiting for completions failed: %d\n", n);
			if (!rc)
				rc = n;
			n = 0;
		}
		now = fab_clock_100ns();
		for (int i = 0; i < n; i++) {
			if (comps[i].status == -EPROTO && !rc)
				rc = -EPROTO;
			persist_complete(b, j, &comps[i], now);
		}
		if (n > 0 || !storvsc_inflight(b->disk)) {
			last_done = now;
		} else if (now - last_done >= IO_TIMEOUT && now - stall_line >= IO_TIMEOUT) {
			printf("blockbench: persist: nothing completed for %llu s (%u in "
			       "flight); waiting on\n",
			       (unsigned long long)((now - last_done) / TICKS_PER_SECOND),
			       storvsc_inflight(b->disk));
			stall_line = now;
		}
		if (j->random && now >= next_progress) {
			persist_progress(b, j);
			next_progress = now + PERSIST_PROGRESS;
		}
	}
	if (storvsc_inflight(b->disk))
		printf("blockbench: persist: giving up on %u request(s) in flight\n",
		       storvsc_inflight(b->disk));
	if (rc)
		return rc;
	if (b->mismatches)
		return -EBADMSG;
	if (b->shutdown && !finished)
		return -ESHUTDOWN;
	return 0;
}

/* A fresh disk: the data in generation 1, a flush, the header, a flush. */
static int persist_create(struct bench *b)
{
	struct pjob data = { .kind = STORVSC_WRITE, .first = 1, .count = b->ws };
	struct pjob head = { .kind = STORVSC_WRITE, .first = 0, .count = 1 };
	struct pjob flush1 = { .kind = STORVSC_FLUSH, .count = 1 };
	struct pjob flush2 = flush1;
	int rc;

	b->gen = 1;
	rc = persist_run(b, &data);
	if (!rc)
		rc = persist_run(b, &flush1);
	if (!rc) {
		persist_hdr_build(b);
		rc = persist_run(b, &head);
	}
	if (!rc)
		rc = persist_run(b, &flush2);
	if (!rc)
		printf("blockbench: persist: wrote %llu blocks (generation %llu)\n",
		       (unsigned long long)b->ws, (unsigned long long)b->gen);
	return rc;
}

/* A disk an earlier run committed: every data block of its generation. */
static int persist_check(struct bench *b, const struct persist_hdr *h)
{
	struct pjob data = { .kind = STORVSC_READ, .first = 1, .count = b->ws };
	int rc;

	b->gen = h->gen;
	rc = persist_run(b, &data);
	if (!rc)
		printf("blockbench: persist: verified %llu blocks written by an earlier run "
		       "(generation %llu)\n",
		       (unsigned long long)data.done, (unsigned long long)b->gen);
	return rc;
}

/* The exit status, for how the last step ended (rc of persist_run). */
static int persist_end(struct bench *b, int rc, const struct pjob *loop)
{
	struct vmbus_guest_ic_stats ic;

	persist_progress(b, loop);
	vmbus_guest_ic_get_stats(&ic);
	printf("blockbench: heartbeats answered=%llu\n", (unsigned long long)ic.heartbeats);
	if (rc == -EBADMSG) {
		printf("blockbench: FAILED persist: %llu data block(s) do not hold what was "
		       "written\n",
		       (unsigned long long)b->mismatches);
		return 1;
	}
	if (rc == -ESHUTDOWN) {
		printf("blockbench: shutdown requested\n");
		return 0;
	}
	if (rc) {
		printf("blockbench: FAILED %s (%d)\n",
		       rc == -EPROTO ? "storage channel failed" : "I/O could not be submitted", rc);
		return 1;
	}
	rc = storvsc_close(b->disk);
	if (rc)
		printf("blockbench: storage close: %d\n", rc);
	printf("blockbench: OK\n");
	return 0;
}

/* --mode persist; returns the exit status. */
static int persist(struct bench *b)
{
	struct pjob head = { .kind = STORVSC_READ, .first = 0, .count = 1 };
	struct pjob loop = { .kind = STORVSC_READ, .random = true };
	struct persist_hdr h;
	char why[160];
	int rc;

	rc = persist_run(b, &head);
	if (rc)
		return persist_end(b, rc, NULL);
	rc = persist_hdr_parse(b->blk0, b->bs, &h, why, sizeof(why));
	if (rc == -ENOENT) {
		rc = persist_create(b);
	} else if (rc) {
		printf("blockbench: FAILED persist: %s; the disk is left as it is\n", why);
		return 1;
	} else if (h.seed != b->seed || h.blocks != b->ws || h.bs != b->bs) {
		printf("blockbench: FAILED persist: the disk holds a run with seed %llu, %llu "
		       "blocks of %u bytes, this one has seed %llu, %llu blocks of %u bytes; the "
		       "disk is left as it is\n",
		       (unsigned long long)h.seed, (unsigned long long)h.blocks, h.bs,
		       (unsigned long long)b->seed, (unsigned long long)b->ws, b->bs);
		return 1;
	} else {
		rc = persist_check(b, &h);
	}
	if (rc)
		return persist_end(b, rc, NULL);
	if (b->min_ms)
		loop.deadline = fab_clock_100ns() + b->min_ms * (TICKS_PER_SECOND / 1000);
	rc = persist_run(b, &loop);
	return persist_end(b, rc, &loop);
}

/* ---- main --------------------------------------------------------------------- */

static int usage(void)
{
	printf("usage: blockbench [--mode randwrite|randread|seqwrite|seqread|verify|"
	       "write-then-verify] [--bs BYTES] [--qd 1..%u] [--ops N] [--blocks N] [--seed S] "
	       "[--gen G] [--ms D] [--flush] [--ring-pages N]\n"
	       "       blockbench --mode persist [--bs BYTES] [--qd 1..%u] [--blocks N] "
	       "[--seed S] [--ms D] [--ring-pages N]\n",
	       STORVSC_MAX_QUEUE, STORVSC_MAX_QUEUE);
	return 2;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s)
		return false;
	v = strtoul(s, &end, 0);
	if (*end || v == (unsigned long)-1)
		return false;
	*out = v;
	return true;
}

static int parse_args(struct bench *b, int argc, char **argv)
{
	uint64_t v;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--flush")) {
			b->flush = true;
			continue;
		}
		if (!val)
			return -EINVAL;
		i++;
		if (!strcmp(a, "--mode")) {
			unsigned int m;

			for (m = 0; m < sizeof(mode_names) / sizeof(mode_names[0]); m++)
				if (!strcmp(val, mode_names[m]))
					break;
			if (m == sizeof(mode_names) / sizeof(mode_names[0]))
				return -EINVAL;
			b->mode = (enum mode)m;
			continue;
		}
		if (!parse_u64(val, &v))
			return -EINVAL;
		if (!strcmp(a, "--bs")) {
			if (v < BLOCKPATTERN_BLOCK_SIZE || v % BLOCKPATTERN_BLOCK_SIZE ||
			    v > (64u << 20))
				return -EINVAL;
			b->bs = (uint32_t)v;
		} else if (!strcmp(a, "--qd")) {
			if (v < 1 || v > STORVSC_MAX_QUEUE)
				return -EINVAL;
			b->qd = (uint32_t)v;
		} else if (!strcmp(a, "--ops")) {
			b->ops = v;
			b->ops_set = true;
		} else if (!strcmp(a, "--blocks")) {
			if (!v)
				return -EINVAL;
			b->ws = v;
			b->ws_set = true;
		} else if (!strcmp(a, "--seed")) {
			b->seed = v;
		} else if (!strcmp(a, "--gen")) {
			b->gen = v;
			b->gen_set = true;
		} else if (!strcmp(a, "--ms")) {
			b->min_ms = v;
		} else if (!strcmp(a, "--ring-pages")) {
			if (v < VMBUS_GUEST_MIN_RING_PAGES || v > 1024)
				return -EINVAL;
			b->ring_pages = (uint32_t)v;
		} else {
			return -EINVAL;
		}
	}
	/* persist picks its own generation, covers the working set and
	 * flushes where its ordering needs it. */
	if (b->mode == PERSIST && (b->gen_set || b->ops_set || b->flush))
		return -EINVAL;
	return 0;
}

/* Opens the disk and sizes everything; prints why not. */
static int setup(struct bench *b)
{
	struct storvsc_cfg cfg = { .send_pages = b->ring_pages, .recv_pages = b->ring_pages };
	uint64_t disk_ios;
	int rc;

	rc = vmbus_guest_init(VMBUS_GUEST_TIMEOUT);
	if (rc) {
		printf("blockbench: FAILED VMBus connect: %d\n", rc);
		return rc;
	}
	rc = vmbus_guest_ic_open(VMBUS_GUEST_TIMEOUT);
	if (rc < 0)
		printf("blockbench: no integration components (%d): heartbeat/shutdown not "
		       "answered\n",
		       rc);
	rc = storvsc_open(0, &cfg, &b->disk);
	if (rc) {
		printf("blockbench: FAILED storage open: %d\n", rc);
		return rc;
	}
	storvsc_get_info(b->disk, &b->info);
	if (b->bs % b->info.block_size || b->bs > b->info.max_transfer) {
		printf("blockbench: FAILED bs %u does not suit the disk (block size %u, max "
		       "transfer "
		       "%u)\n",
		       b->bs, b->info.block_size, b->info.max_transfer);
		return -EINVAL;
	}
	b->dev_per_io = b->bs / b->info.block_size;
	b->pat_per_io = b->bs / BLOCKPATTERN_BLOCK_SIZE;
	disk_ios = b->info.nblocks / b->dev_per_io;
	if (b->mode == PERSIST && disk_ios)
		disk_ios--; /* block 0 holds the header */
	if (!disk_ios) {
		printf("blockbench: FAILED disk smaller than %s block of %u bytes\n",
		       b->mode == PERSIST ? "a header and one data" : "one", b->bs);
		return -EINVAL;
	}
	if (!b->ws_set)
		b->ws = disk_ios < DEFAULT_WS_BLOCKS ? disk_ios : DEFAULT_WS_BLOCKS;
	if (b->ws > disk_ios) {
		printf("blockbench: FAILED --blocks %llu exceeds the disk (%llu blocks of %u)\n",
		       (unsigned long long)b->ws, (unsigned long long)disk_ios, b->bs);
		return -EINVAL;
	}
	if (!b->ops_set || b->mode == VERIFY)
		b->ops = b->ws;
	for (uint32_t i = 0; i < b->qd; i++) {
		b->reqs[i].buf = fab_alloc_pages((b->bs + FAB_PAGE_SIZE - 1) / FAB_PAGE_SIZE);
		if (!b->reqs[i].buf) {
			printf("blockbench: FAILED out of memory for %u buffers of %u bytes\n",
			       b->qd, b->bs);
			return -ENOMEM;
		}
	}
	if (b->mode == WRITE_THEN_VERIFY) {
		b->written = calloc(1, (b->ws + 7) / 8);
		if (!b->written) {
			printf("blockbench: FAILED out of memory for the block bitmap\n");
			return -ENOMEM;
		}
	}
	if (b->mode == PERSIST) {
		b->blk0 = calloc(1, b->bs);
		if (!b->blk0) {
			printf("blockbench: FAILED out of memory for the header block\n");
			return -ENOMEM;
		}
	}
	printf("blockbench: disk relid=%u blocks=%llu block_size=%u max_transfer=%u protocol=%u.%u "
	       "working_set=%llu ops=%llu gen=%llu seed=%llu\n",
	       b->info.relid, (unsigned long long)b->info.nblocks, b->info.block_size,
	       b->info.max_transfer, b->info.protocol >> 8, b->info.protocol & 0xff,
	       (unsigned long long)b->ws, (unsigned long long)b->ops, (unsigned long long)b->gen,
	       (unsigned long long)b->seed);
	return 0;
}

static int run(struct bench *b)
{
	char label[48];
	struct phase ph;
	int rc;

	memset(&ph, 0, sizeof(ph));
	ph.label = mode_names[b->mode];
	ph.ops = b->ops;
	switch (b->mode) {
	case RANDWRITE:
	case WRITE_THEN_VERIFY:
		ph.write = true;
		ph.order = ORDER_RANDOM;
		break;
	case SEQWRITE:
		ph.write = true;
		ph.order = ORDER_SEQ;
		break;
	case RANDREAD:
		ph.order = ORDER_RANDOM;
		break;
	case SEQREAD:
	case VERIFY:
		ph.order = ORDER_SEQ;
		break;
	case PERSIST: /* not phases: persist() */
		return -EINVAL;
	}
	if (b->mode == WRITE_THEN_VERIFY) {
		snprintf(label, sizeof(label), "%s:write", mode_names[b->mode]);
		ph.label = label;
	}
	rc = run_phase(b, &ph);
	if (rc)
		return rc;

	if (ph.write && b->flush) {
		rc = storvsc_flush(b->disk);
		printf("blockbench: flush %s (%d)\n", rc ? "failed" : "ok", rc);
		if (rc) {
			b->errors++;
			return 0;
		}
	}
	if (b->mode != WRITE_THEN_VERIFY)
		return 0;

	memset(&ph, 0, sizeof(ph));
	snprintf(label, sizeof(label), "%s:verify", mode_names[b->mode]);
	ph.label = label;
	ph.order = ORDER_BITMAP;
	ph.ops = b->ws; /* cut to the blocks written */
	return run_phase(b, &ph);
}

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	struct vmbus_guest_ic_stats ic;
	int rc;

	b->mode = WRITE_THEN_VERIFY;
	b->bs = 4096;
	b->qd = 1;
	b->seed = 1;
	b->gen = 1;
	if (parse_args(b, argc, argv))
		return usage();
	b->rng = blockpattern_mix64(b->seed ^ 0x62656e6368ull) | 1;

	rc = setup(b);
	if (rc)
		return 1;
	if (b->mode == PERSIST)
		return persist(b);
	rc = run(b);
	vmbus_guest_ic_get_stats(&ic);
	if (rc == -ESHUTDOWN || vmbus_shutdown_requested()) {
		printf("blockbench: heartbeats answered=%llu\n", (unsigned long long)ic.heartbeats);
		printf("blockbench: shutdown requested\n");
		if (b->errors) {
			printf("blockbench: FAILED %llu errors before the shutdown\n",
			       (unsigned long long)b->errors);
			return 1;
		}
		return 0;
	}
	if (rc) {
		printf("blockbench: FAILED %s (%d)\n",
		       rc == -ETIMEDOUT ? "I/O timeout"
		       : rc == -EPROTO	? "storage channel failed"
					: "I/O could not be submitted",
		       rc);
		return 1;
	}
	rc = storvsc_close(b->disk);
	if (rc)
		printf("blockbench: storage close: %d\n", rc);
	printf("blockbench: heartbeats answered=%llu\n", (unsigned long long)ic.heartbeats);
	if (b->errors) {
		printf("blockbench: FAILED %llu errors\n", (unsigned long long)b->errors);
		return 1;
	}
	printf("blockbench: OK\n");
	return 0;
}
