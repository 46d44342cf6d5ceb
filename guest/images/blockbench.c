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

enum mode { RANDWRITE, RANDREAD, SEQWRITE, SEQREAD, VERIFY, WRITE_THEN_VERIFY };

static const char *const mode_names[] = {
	[RANDWRITE] = "randwrite", [RANDREAD] = "randread",
	[SEQWRITE] = "seqwrite",   [SEQREAD] = "seqread",
	[VERIFY] = "verify",	   [WRITE_THEN_VERIFY] = "write-then-verify",
};

/* How a phase picks its blocks. */
enum order { ORDER_RANDOM, ORDER_SEQ, ORDER_BITMAP };

struct req {
	uint64_t idx;	/* I/O block index in the working set */
	uint64_t t_sub; /* reference time at submit */
	uint8_t *buf;	/* bs bytes */
	bool write;
	bool busy;
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
	bool ops_set, ws_set;
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

/* ---- main --------------------------------------------------------------------- */

static int usage(void)
{
	printf("usage: blockbench [--mode randwrite|randread|seqwrite|seqread|verify|"
	       "write-then-verify] [--bs BYTES] [--qd 1..%u] [--ops N] [--blocks N] [--seed S] "
	       "[--gen G] [--ms D] [--flush] [--ring-pages N]\n",
	       STORVSC_MAX_QUEUE);
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
	if (!disk_ios) {
		printf("blockbench: FAILED disk smaller than one block of %u bytes\n", b->bs);
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
