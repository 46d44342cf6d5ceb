// SPDX-License-Identifier: MIT
/*
 * memtest: a memory workload for live-migration tests and benchmarks. It
 * dirties RAM at a known rate, checks that RAM keeps what it wrote, and
 * measures from inside the guest how long it was stopped.
 *
 *   memtest [--mib N] [--rate MIB_PER_S|max] [--verify MIB_PER_S|max]
 *           [--ms D] [--seed S] [--report-ms P] [--gap-ms G]
 *
 * Takes a region of N MiB (default 16) from the heap and fills every page
 * in generation 1. Then, until D ms have passed on the reference clock
 * (--ms; default 0: until the host asks for a shutdown), it loops:
 *  - rewrites pages in order (wrapping) at --rate MiB/s (default 0: no
 *    writes; max: as fast as it can), each with its generation bumped;
 *  - verifies pages in order (wrapping) against the generation it last
 *    wrote, at --verify MiB/s (default max);
 *  - reads the reference clock once per turn and keeps the largest gap
 *    between two turns and the number of gaps above G ms (--gap-ms,
 *    default 5). A turn does a bounded amount of work (well under a
 *    millisecond natively), so a gap is time the guest did not run: a
 *    migration's stop, a pause, a host that did not schedule the vCPU.
 * Both rates are paced by the reference clock (a budget of pages that
 * grows with time, capped at 100 ms' worth so a stop is not followed by a
 * burst); with nothing due, the turn waits up to 1 ms for the host. The
 * writes the cap gives up are counted (dropped=): written + dropped is
 * the rate times the time, whatever stopped the guest.
 *
 * Page p in generation g holds 64-bit words: w[0] = p << 32 | g, w[1] =
 * seed, w[i] = mix(seed, p, g) ^ (i * 0x9e3779b97f4a7c15) for i >= 2, so a
 * page that came back stale (an older generation), from another page or
 * corrupt is told apart in the report. The generation of every page is
 * kept in a table (4 bytes per page) outside the region.
 *
 * Output:
 *   memtest: region gpa=0x... bytes=... pages=... seed=... rate=... verify=... ms=...
 *   memtest: filled N MiB in M ms
 *   memtest: t=S.mmm s written=X.xx MiB verified=Y.yy MiB rate=R.rr MiB/s
 *            max_gap_us=U gaps>Gms=K passes=V dropped=Z.zz MiB
 *   (about every P ms, default 1000; rate over the last interval; V: full
 *   verify passes over the region; Z: writes given up, see above)
 * and at the end a last pass verifies every page, then
 *   memtest: OK t=... written=... verified=... rate=... max_gap_us=...
 *            gaps>Gms=... passes=... dropped=... (rate over the whole run)
 *   memtest: checksum gpa=0x... bytes=... fnv1a64w=<16 hex digits>
 * The checksum is FNV-1a 64 over the region's little-endian 64-bit words
 * (h = 0xcbf29ce484222325; per word: h ^= w; h *= 0x100000001b3), taken
 * after the last pass, so a host can compare guest RAM with it once the
 * guest has exited. A page that does not hold what was written:
 *   memtest: MISMATCH page P (gpa 0x...) word W: found ... want ...; the
 *            page says page P' gen G' seed S', want gen G
 * then "memtest: FAILED ..." and exit 1. Exit 2: bad arguments, no memory
 * for the region, no reference clock.
 *
 * Heartbeats are answered (every turn polls the VMBus library); a shutdown
 * request ends the run: "memtest: shutdown requested", the last pass and
 * the lines above, exit 0 unless a page failed. Without VMBus or the
 * integration components it runs anyway (and says so); with --ms 0 it
 * then runs until the host stops the partition.
 *
 * One vCPU does all the work; the others stay parked.
 */
#include <errno.h>
#include <stdbool.h>

#include "fab/vmbus_guest.h"

#define PAGE		 4096u
#define WORDS		 (PAGE / 8)
#define PAGES_PER_MIB	 256u
#define TICKS_PER_SECOND 10000000ull /* reference clock: 100 ns */
#define TICKS_PER_MS	 10000ull
#define WRITE_SLICE	 64 /* pages written per turn at most (256 KiB) */
#define VERIFY_SLICE	 64 /* pages verified per turn at most (256 KiB) */
#define IDLE_WAIT	 TICKS_PER_MS
#define MAX_RATE_MIB	 100000u
#define GOLDEN		 0x9e3779b97f4a7c15ull
#define FNV_OFFSET	 0xcbf29ce484222325ull
#define FNV_PRIME	 0x100000001b3ull

/* Pages per turn, paced by the reference clock. */
struct bucket {
	bool max;	  /* no pacing: a full slice every turn */
	uint64_t per_s;	  /* pages per second; 0: none */
	uint64_t credit;  /* pages due now */
	uint64_t acc;	  /* page-ticks not yet a whole page */
	uint64_t cap;	  /* credit never exceeds this */
	uint64_t dropped; /* pages given up by the cap */
	uint64_t last;	  /* reference time of the last refill */
};

struct memtest {
	/* arguments */
	uint64_t mib;
	uint64_t rate_mib, verify_mib; /* UINT64_MAX: max */
	uint64_t ms;
	uint64_t seed;
	uint64_t report_ms;
	uint64_t gap_ms;
	/* region */
	uint64_t *mem;
	uint64_t npages;
	uint32_t *gen;
	uint64_t seedmix;
	uint64_t wcur, vcur; /* next page to write / verify */
	/* pacing */
	struct bucket wb, vb;
	/* figures */
	uint64_t t_start;
	uint64_t written, verified; /* pages */
	uint64_t max_gap;	    /* ticks */
	uint64_t gaps;		    /* above gap_ms */
	uint64_t passes;	    /* full verify passes over the region */
	bool vmbus;
	bool shutdown;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t *page_ptr(const struct memtest *m, uint64_t p)
{
	return m->mem + p * WORDS;
}

static uint64_t page_base(const struct memtest *m, uint64_t p, uint32_t g)
{
	return mix64(m->seedmix ^ mix64(p * GOLDEN + g));
}

static void page_fill(struct memtest *m, uint64_t p, uint32_t g)
{
	uint64_t *w = page_ptr(m, p), base = page_base(m, p, g), k = 2 * GOLDEN;

	w[0] = p << 32 | g;
	w[1] = m->seed;
	for (unsigned int i = 2; i < WORDS; i++, k += GOLDEN)
		w[i] = base ^ k;
	m->gen[p] = g;
}

/* The index of the first word of page p that does not hold what its
 * generation says (*want: what it should), or WORDS when all do. */
static unsigned int page_check(const struct memtest *m, uint64_t p, uint64_t *want)
{
	const uint64_t *w = page_ptr(m, p);
	uint32_t g = m->gen[p];
	uint64_t base = page_base(m, p, g), k = 2 * GOLDEN;

	if (w[0] != (p << 32 | g)) {
		*want = p << 32 | g;
		return 0;
	}
	if (w[1] != m->seed) {
		*want = m->seed;
		return 1;
	}
	for (unsigned int i = 2; i < WORDS; i++, k += GOLDEN) {
		if (w[i] != (base ^ k)) {
			*want = base ^ k;
			return i;
		}
	}
	return WORDS;
}

/* Verifies page p; prints the mismatch and returns false if it is bad. */
static bool page_verify(struct memtest *m, uint64_t p)
{
	const uint64_t *w = page_ptr(m, p);
	uint64_t want = 0;
	unsigned int i = page_check(m, p, &want);

	if (i == WORDS)
		return true;
	printf("memtest: MISMATCH page %llu (gpa 0x%llx) word %u: found %016llx want %016llx; "
	       "the page says page %llu gen %llu seed %llu, want gen %llu\n",
	       (unsigned long long)p, (unsigned long long)(uintptr_t)w, i, (unsigned long long)w[i],
	       (unsigned long long)want, (unsigned long long)(w[0] >> 32),
	       (unsigned long long)(w[0] & 0xffffffffu), (unsigned long long)w[1],
	       (unsigned long long)m->gen[p]);
	return false;
}

/* ---- pacing ---------------------------------------------------------------- */

static void bucket_init(struct bucket *b, uint64_t mib_s, uint64_t now)
{
	b->max = mib_s == UINT64_MAX;
	b->per_s = b->max ? 0 : mib_s * PAGES_PER_MIB;
	b->cap = b->per_s / 10 > WRITE_SLICE ? b->per_s / 10 : WRITE_SLICE;
	b->credit = b->acc = b->dropped = 0;
	b->last = now;
}

/* Pages that may be done this turn, at most slice. */
static uint64_t bucket_take(struct bucket *b, uint64_t now, uint64_t slice)
{
	uint64_t n;

	if (b->max)
		return slice;
	if (now > b->last) {
		b->acc += (now - b->last) * b->per_s;
		b->credit += b->acc / TICKS_PER_SECOND;
		b->acc %= TICKS_PER_SECOND;
		if (b->credit > b->cap) {
			b->dropped += b->credit - b->cap;
			b->credit = b->cap;
		}
	}
	b->last = now;
	n = b->credit < slice ? b->credit : slice;
	b->credit -= n;
	return n;
}

/* ---- output ---------------------------------------------------------------- */

/* bytes as MiB with two decimals. */
static const char *fmt_mib(char *buf, size_t len, uint64_t bytes)
{
	uint64_t centi = bytes * 100 / (1024 * 1024);

	snprintf(buf, len, "%llu.%02llu", (unsigned long long)(centi / 100),
		 (unsigned long long)(centi % 100));
	return buf;
}

/* pages over ticks as MiB/s with two decimals. */
static const char *fmt_rate(char *buf, size_t len, uint64_t pages, uint64_t ticks)
{
	uint64_t kib_s = ticks ? pages * (PAGE / 1024) * TICKS_PER_SECOND / ticks : 0;
	uint64_t centi = kib_s * 100 / 1024;

	snprintf(buf, len, "%llu.%02llu", (unsigned long long)(centi / 100),
		 (unsigned long long)(centi % 100));
	return buf;
}

/* One figures line: "memtest: <tag>t=... gaps>Gms=..."; rate over
 * rate_pages written in rate_ticks. */
static void figures(const struct memtest *m, const char *tag, uint64_t now, uint64_t rate_pages,
		    uint64_t rate_ticks)
{
	char wr[32], vf[32], rt[32], dr[32];
	uint64_t t = now - m->t_start;

	printf("memtest: %st=%llu.%03llu s written=%s MiB verified=%s MiB rate=%s MiB/s "
	       "max_gap_us=%llu gaps>%llums=%llu passes=%llu dropped=%s MiB\n",
	       tag, (unsigned long long)(t / TICKS_PER_SECOND),
	       (unsigned long long)(t % TICKS_PER_SECOND / TICKS_PER_MS),
	       fmt_mib(wr, sizeof(wr), m->written * PAGE),
	       fmt_mib(vf, sizeof(vf), m->verified * PAGE),
	       fmt_rate(rt, sizeof(rt), rate_pages, rate_ticks),
	       (unsigned long long)(m->max_gap / (TICKS_PER_SECOND / 1000000)),
	       (unsigned long long)m->gap_ms, (unsigned long long)m->gaps,
	       (unsigned long long)m->passes, fmt_mib(dr, sizeof(dr), m->wb.dropped * PAGE));
}

static uint64_t region_checksum(const struct memtest *m)
{
	uint64_t h = FNV_OFFSET;

	for (uint64_t i = 0; i < m->npages * WORDS; i++) {
		h ^= m->mem[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* ---- the run ------------------------------------------------------------- */

/* Returns 0 when the run ended (deadline or shutdown), -EBADMSG on a
 * mismatch. */
static int run(struct memtest *m)
{
	uint64_t now = fab_ref_time(), prev = now, deadline = 0;
	uint64_t next_report, last_report = now, written_at_report = 0;

	m->t_start = now;
	if (m->ms)
		deadline = now + m->ms * TICKS_PER_MS;
	next_report = now + m->report_ms * TICKS_PER_MS;
	bucket_init(&m->wb, m->rate_mib, now);
	bucket_init(&m->vb, m->verify_mib, now);
	for (;;) {
		uint64_t gap, nw, nv;

		now = fab_ref_time();
		gap = now - prev;
		prev = now;
		if (gap > m->max_gap)
			m->max_gap = gap;
		if (gap > m->gap_ms * TICKS_PER_MS)
			m->gaps++;
		if (m->vmbus) {
			vmbus_guest_poll();
			if (vmbus_shutdown_requested()) {
				m->shutdown = true;
				return 0;
			}
		}
		if (deadline && now >= deadline)
			return 0;

		nw = bucket_take(&m->wb, now, WRITE_SLICE);
		for (uint64_t i = 0; i < nw; i++) {
			uint64_t p = m->wcur;

			page_fill(m, p, m->gen[p] + 1);
			m->wcur = p + 1 == m->npages ? 0 : p + 1;
		}
		m->written += nw;

		nv = bucket_take(&m->vb, now, VERIFY_SLICE);
		for (uint64_t i = 0; i < nv; i++) {
			if (!page_verify(m, m->vcur))
				return -EBADMSG;
			if (++m->vcur == m->npages) {
				m->vcur = 0;
				m->passes++;
			}
		}
		m->verified += nv;

		if (now >= next_report) {
			figures(m, "", now, m->written - written_at_report, now - last_report);
			written_at_report = m->written;
			last_report = now;
			next_report = now + m->report_ms * TICKS_PER_MS;
		}
		if (!nw && !nv) {
			if (m->vmbus)
				vmbus_guest_idle(IDLE_WAIT);
			else
				fab_wait(IDLE_WAIT);
		}
	}
}

/* The last pass: every page against its generation. */
static bool verify_all(struct memtest *m)
{
	for (uint64_t p = 0; p < m->npages; p++) {
		if (!page_verify(m, p))
			return false;
		m->verified++;
	}
	return true;
}

/* ---- main ------------------------------------------------------------------ */

static int usage(void)
{
	printf("usage: memtest [--mib N] [--rate MIB_PER_S|max] [--verify MIB_PER_S|max] "
	       "[--ms D] [--seed S] [--report-ms P] [--gap-ms G]\n");
	return 2;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-')
		return false;
	v = strtoul(s, &end, 0);
	if (*end || v == (unsigned long)-1)
		return false;
	*out = v;
	return true;
}

/* MiB/s or "max" (UINT64_MAX). */
static bool parse_rate(const char *s, uint64_t *out)
{
	if (s && !strcmp(s, "max")) {
		*out = UINT64_MAX;
		return true;
	}
	return parse_u64(s, out) && *out <= MAX_RATE_MIB;
}

static int parse_args(struct memtest *m, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok;

		if (!val)
			return -EINVAL;
		i++;
		if (!strcmp(a, "--mib"))
			ok = parse_u64(val, &m->mib) && m->mib >= 1 && m->mib <= 2048;
		else if (!strcmp(a, "--rate"))
			ok = parse_rate(val, &m->rate_mib);
		else if (!strcmp(a, "--verify"))
			ok = parse_rate(val, &m->verify_mib);
		else if (!strcmp(a, "--ms"))
			ok = parse_u64(val, &m->ms) && m->ms <= 1000ull * 86400 * 365;
		else if (!strcmp(a, "--seed"))
			ok = parse_u64(val, &m->seed);
		else if (!strcmp(a, "--report-ms"))
			ok = parse_u64(val, &m->report_ms) && m->report_ms >= 10 &&
			     m->report_ms <= 3600000;
		else if (!strcmp(a, "--gap-ms"))
			ok = parse_u64(val, &m->gap_ms) && m->gap_ms <= 3600000;
		else
			ok = false;
		if (!ok)
			return -EINVAL;
	}
	return 0;
}

static const char *rate_name(char *buf, size_t len, uint64_t mib_s)
{
	if (mib_s == UINT64_MAX)
		return "max";
	snprintf(buf, len, "%llu", (unsigned long long)mib_s);
	return buf;
}

static void setup_vmbus(struct memtest *m)
{
	int rc = vmbus_guest_init(VMBUS_GUEST_TIMEOUT);

	if (rc) {
		printf("memtest: no VMBus (%d): heartbeat/shutdown not answered\n", rc);
		return;
	}
	rc = vmbus_guest_ic_open(VMBUS_GUEST_TIMEOUT);
	if (rc < 0)
		printf("memtest: no integration components (%d): heartbeat/shutdown not "
		       "answered\n",
		       rc);
	m->vmbus = true;
}

int main(int argc, char **argv)
{
	static struct memtest mt;
	struct memtest *m = &mt;
	struct vmbus_guest_ic_stats ic;
	char r1[24], r2[24];
	uint64_t t0, now;
	int rc;

	m->mib = 16;
	m->rate_mib = 0;
	m->verify_mib = UINT64_MAX;
	m->seed = 1;
	m->report_ms = 1000;
	m->gap_ms = 5;
	if (parse_args(m, argc, argv))
		return usage();
	if (!fab_ref_time()) {
		printf("memtest: FAILED no reference clock\n");
		return 2;
	}
	m->npages = m->mib * PAGES_PER_MIB;
	m->seedmix = mix64(m->seed ^ 0x6d656d74657374ull);
	m->mem = fab_alloc_pages(m->npages);
	m->gen = calloc(m->npages, sizeof(*m->gen));
	if (!m->mem || !m->gen) {
		printf("memtest: FAILED no memory for %llu MiB (and its table): the partition has "
		       "%llu MiB\n",
		       (unsigned long long)m->mib,
		       (unsigned long long)(fab_bootinfo()->ram_bytes >> 20));
		return 2;
	}
	setup_vmbus(m);
	printf("memtest: region gpa=0x%llx bytes=%llu pages=%llu seed=%llu rate=%s verify=%s "
	       "ms=%llu\n",
	       (unsigned long long)(uintptr_t)m->mem, (unsigned long long)(m->npages * PAGE),
	       (unsigned long long)m->npages, (unsigned long long)m->seed,
	       rate_name(r1, sizeof(r1), m->rate_mib), rate_name(r2, sizeof(r2), m->verify_mib),
	       (unsigned long long)m->ms);
	t0 = fab_ref_time();
	for (uint64_t p = 0; p < m->npages; p++)
		page_fill(m, p, 1);
	printf("memtest: filled %llu MiB in %llu ms\n", (unsigned long long)m->mib,
	       (unsigned long long)((fab_ref_time() - t0) / TICKS_PER_MS));

	rc = run(m);
	now = fab_ref_time();
	if (m->vmbus) {
		vmbus_guest_ic_get_stats(&ic);
		printf("memtest: heartbeats answered=%llu\n", (unsigned long long)ic.heartbeats);
	}
	if (m->shutdown)
		printf("memtest: shutdown requested\n");
	if (rc || !verify_all(m)) {
		figures(m, "FAILED a page does not hold what was written; ", now, m->written,
			now - m->t_start);
		return 1;
	}
	figures(m, "OK ", now, m->written, now - m->t_start);
	printf("memtest: checksum gpa=0x%llx bytes=%llu fnv1a64w=%016llx\n",
	       (unsigned long long)(uintptr_t)m->mem, (unsigned long long)(m->npages * PAGE),
	       (unsigned long long)region_checksum(m));
	return 0;
}
