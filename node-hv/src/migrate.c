// SPDX-License-Identifier: MIT
/*
 * Live migration between nodes: the copy stream and the engines at its two
 * ends (wire format and threads in migrate.h).
 *
 * Source. Dirty logging on, one full pass (pages that are all zero are
 * skipped: the target's copy starts zeroed), then rounds of the pages
 * dirtied during the previous one. After each round it knows the link
 * rate (bytes it pushed per second of the round, which includes the
 * transport's backpressure) and the dirty rate (bytes the guest dirtied
 * per second of the round) and estimates the final pause as dirty bytes ÷
 * link rate. It stops when that is within the budget, or after max_rounds
 * (then the pause is simply longer than the budget). When the guest
 * dirties faster than the link copies, rounds cannot converge: without
 * throttle the migration fails saying so; with throttle the vCPUs are
 * held back for a growing share of every 100 ms (25 %, 50 %, 75 %, 95 %)
 * until it converges. Then: quiesce, the last dirty pages, the state blob,
 * and the target's READY. Any failure before READY stops copying, turns
 * dirty logging off and thaws: the partition runs on unharmed.
 *
 * Target. The partition's shell (KVM VM, RAM, vCPUs) is built when the
 * controller's MigrateIn arrives, so the pause does not pay for it; pages
 * are written straight into its RAM as batches arrive (after the CRC
 * check), and the state is loaded into it at the end.
 *
 * Pages travel inside messages on every transport: one code path, and the
 * batch CRC covers exactly what arrives. Over RDMA, RDMA WRITE into the
 * shell's registered RAM with the CRC in a following message would save
 * the receiving copy; not done yet.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "fab/log.h"
#include "fab/remote.h"
#include "fab/util.h"
#include "fab/xport.h"
#include "migrate.h"
#include "remote_int.h"

#define MIG_T_HELLO  0x4d01
#define MIG_T_ACCEPT 0x4d02
#define MIG_T_PAGES  0x4d03
#define MIG_T_STATE  0x4d04
#define MIG_T_READY  0x4d05
#define MIG_T_PAUSED 0x4d06
#define MIG_T_ERROR  0x4d07

#define MIG_VERSION    1
#define PAGE	       4096u
#define BATCH_PAGES    248u /* a batch stays under the transport's 1 MiB message */
#define MIG_WHY	       200
#define STALL_MS       15000 /* no progress on the stream for this long: link lost */
#define CONNECT_MS     15000
#define READY_MS       120000 /* the target restores (KVM set-up, RAM copy) */
#define QUIESCE_MS     5000
#define THROTTLE_CYCLE 100 /* ms */
#define MIN_ROUND_MS   100
#define DEFAULT_BUDGET 50
#define DEFAULT_ROUNDS 30
#define MAX_BLOB       (XPORT_DEFAULT_MAX_MSG - 64)

struct mig_hdr {
	uint16_t type;
	uint16_t version;
	uint32_t reserved;
} __attribute__((packed));

struct mig_hello {
	struct mig_hdr h;
	uint64_t id;
	uint64_t ram_bytes;
	uint32_t vcpus;
	uint32_t reserved;
	char name[RCH_NAME];
} __attribute__((packed));

struct mig_status {
	struct mig_hdr h;
	int32_t status;
	char why[MIG_WHY];
} __attribute__((packed));

struct mig_pages {
	struct mig_hdr h;
	uint32_t count;
	uint32_t crc;
} __attribute__((packed));

struct mig_state {
	struct mig_hdr h;
	uint32_t len;
	uint32_t crc; /* of the blob, on top of its own checksum */
	uint64_t batches;
} __attribute__((packed));

struct mig_paused {
	struct mig_hdr h;
	uint64_t pause_us;
} __attribute__((packed));

int64_t nhv_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- CRC32C (Castagnoli) ------------------------------------------------------ */

#define CRC_CHECK 0xe3069283u

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

__attribute__((target("sse4.2"))) static uint32_t crc_hw_update(uint32_t c, const uint8_t *p,
								size_t n)
{
	uint64_t c64 = c;

	for (; n >= 8; p += 8, n -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	for (; n; p++, n--)
		c = __builtin_ia32_crc32qi(c, *p);
	return c;
}

static uint32_t crc_sw_update(uint32_t c, const uint8_t *p, size_t n)
{
	for (; n >= 8; p += 8, n -= 8) {
		uint32_t lo, hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= c;
		c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		    crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		    crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
	}
	for (; n; p++, n--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p) & 0xff];
	return c;
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
	/* The check value of CRC-32C ("123456789"); both ends must agree on
	 * the function, whichever path each takes. */
	if (crc_hw && ~crc_hw_update(~0u, (const uint8_t *)"123456789", 9) != CRC_CHECK) {
		fab_err("migration: the SSE4.2 CRC32C gives a wrong check value; using tables");
		crc_hw = false;
	}
	if (~crc_sw_update(~0u, (const uint8_t *)"123456789", 9) != CRC_CHECK)
		fab_err("migration: CRC32C tables give a wrong check value");
}

static uint32_t crc32c(const void *p, size_t n)
{
	pthread_once(&crc_once, crc_init);
	return ~(crc_hw ? crc_hw_update(~0u, p, n) : crc_sw_update(~0u, p, n));
}

static void hdr_init(struct mig_hdr *h, uint16_t type)
{
	h->type = type;
	h->version = MIG_VERSION;
	h->reserved = 0;
}

static struct ev_loop *xport_loop_of(struct xport_conn *c)
{
	return c->x->loop;
}

static void silent_closed(struct xport_conn *c, int err, void *arg)
{
}

static const struct xport_conn_cbs silent_cbs = { .closed_cb = silent_closed };

/* ---- the source -------------------------------------------------------------- */

struct nhv_mig_out {
	struct nhv_dp *dp;
	struct nhv_partition *p;
	uint64_t id;
	char name[FAB_NAME_MAX], target[FAB_NAME_MAX], address[NHV_CFG_ADDR_MAX];
	uint32_t budget_ms, max_rounds;
	bool throttle;
	void (*notify)(void *arg);
	void *arg;
	pthread_t thread;
	bool thread_started;
	atomic_bool cancel;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond;
	struct xport_conn *conn; /* data plane thread */
	bool connected, closed, writable;
	int close_err;
	bool got_accept, got_ready, got_error;
	int32_t reply_status;
	char reply_why[MIG_WHY];
	struct nhv_mig_progress pr;

	/* the copying thread's own */
	uint8_t *batch;
	uint32_t nbatch;
	uint64_t batches;
	uint64_t *bitmap;
	uint64_t *last; /* the final fetch, after quiesce */
	size_t bitmap_bytes;
	bool held;		   /* throttle: vCPUs paused now */
	int64_t cycle_at, held_us; /* µs */
	int64_t copy_started;
	int64_t send_us; /* µs spent handing batches to the transport (waits included) */
};

static void out_fail(struct nhv_mig_out *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void out_fail(struct nhv_mig_out *m, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	if (!m->pr.error[0]) {
		va_start(ap, fmt);
		vsnprintf(m->pr.error, sizeof(m->pr.error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&m->lock);
}

static void o_connected(struct xport_conn *c, void *arg)
{
	struct nhv_mig_out *m = arg;

	pthread_mutex_lock(&m->lock);
	m->connected = true;
	m->writable = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void o_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct nhv_mig_out *m = arg;
	struct mig_status st;

	if (len != sizeof(st)) {
		fab_warn("migration %llu: message of %zu bytes from node %s ignored",
			 (unsigned long long)m->id, len, m->target);
		return;
	}
	memcpy(&st, msg, sizeof(st));
	st.why[MIG_WHY - 1] = '\0';
	pthread_mutex_lock(&m->lock);
	switch (st.h.type) {
	case MIG_T_ACCEPT:
		m->got_accept = true;
		break;
	case MIG_T_READY:
		m->got_ready = true;
		break;
	case MIG_T_ERROR:
		m->got_error = true;
		break;
	default:
		pthread_mutex_unlock(&m->lock);
		return;
	}
	if (st.status && !m->reply_status) {
		m->reply_status = st.status;
		snprintf(m->reply_why, sizeof(m->reply_why), "%s", st.why);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void o_writable(struct xport_conn *c, void *arg)
{
	struct nhv_mig_out *m = arg;

	pthread_mutex_lock(&m->lock);
	m->writable = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void o_closed(struct xport_conn *c, int err, void *arg)
{
	struct nhv_mig_out *m = arg;

	pthread_mutex_lock(&m->lock);
	m->closed = true;
	m->close_err = err;
	m->conn = NULL;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static const struct xport_conn_cbs out_cbs = {
	.connected_cb = o_connected,
	.recv_cb = o_recv,
	.writable_cb = o_writable,
	.closed_cb = o_closed,
};

static int connect_job(void *arg)
{
	struct nhv_mig_out *m = arg;
	struct xport_conn *c;
	int rc = xport_connect(nhv_dp_xport(m->dp), m->address, m->target, &out_cbs, m, &c);

	if (!rc)
		m->conn = c;
	return rc;
}

struct send_args {
	struct nhv_mig_out *m;
	struct iovec iov[2];
	int n;
};

static int send_job(void *arg)
{
	struct send_args *a = arg;
	struct nhv_mig_out *m = a->m;
	int rc;

	if (!m->conn)
		return -ENOTCONN;
	rc = xport_sendv(m->conn, a->iov, a->n);
	if (rc == -EAGAIN) {
		pthread_mutex_lock(&m->lock);
		m->writable = false;
		pthread_mutex_unlock(&m->lock);
	}
	return rc;
}

static int close_job(void *arg)
{
	struct nhv_mig_out *m = arg;

	if (m->conn) {
		xport_set_cbs(m->conn, &silent_cbs, NULL);
		xport_close(m->conn);
		m->conn = NULL;
	}
	return 0;
}

/* Why the stream is unusable ("" if it is fine). Caller holds the lock. */
static void stream_why(struct nhv_mig_out *m, char *buf, size_t len)
{
	if (m->reply_status)
		snprintf(buf, len, "target node %s: %s", m->target, m->reply_why);
	else if (m->closed)
		snprintf(buf, len, "stream to node %s lost: %s", m->target,
			 m->close_err ? strerror(-m->close_err) : "closed by the target");
	else
		buf[0] = '\0';
}

/* Sends one message, waiting (bounded) for room. */
static int out_send(struct nhv_mig_out *m, const void *a, size_t alen, const void *b, size_t blen)
{
	struct send_args sa = { .m = m, .n = blen ? 2 : 1 };
	int64_t until = fab_mono_ms() + STALL_MS;
	char why[300];
	int rc;

	sa.iov[0].iov_base = (void *)a;
	sa.iov[0].iov_len = alen;
	sa.iov[1].iov_base = (void *)b;
	sa.iov[1].iov_len = blen;
	for (;;) {
		if (atomic_load(&m->cancel)) {
			out_fail(m, "cancelled");
			return -ECANCELED;
		}
		pthread_mutex_lock(&m->lock);
		stream_why(m, why, sizeof(why));
		pthread_mutex_unlock(&m->lock);
		if (why[0]) {
			out_fail(m, "%s", why);
			return -ECONNRESET;
		}
		rc = nhv_dp_call(m->dp, send_job, &sa);
		if (rc != -EAGAIN)
			break;
		pthread_mutex_lock(&m->lock);
		while (!m->writable && !m->closed && !m->reply_status && fab_mono_ms() < until &&
		       !atomic_load(&m->cancel)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&m->cond, &m->lock, &ts);
		}
		pthread_mutex_unlock(&m->lock);
		if (fab_mono_ms() >= until) {
			out_fail(m, "stream to node %s stalled for %d ms", m->target, STALL_MS);
			return -ETIMEDOUT;
		}
	}
	if (rc) {
		pthread_mutex_lock(&m->lock);
		stream_why(m, why, sizeof(why));
		pthread_mutex_unlock(&m->lock);
		out_fail(m, "%s", why[0] ? why : strerror(-rc));
	}
	return rc;
}

/* Waits (bounded) until *flag or the stream fails. */
static int out_wait(struct nhv_mig_out *m, bool *flag, int ms, const char *what)
{
	int64_t until = fab_mono_ms() + ms;
	char why[300] = "";
	bool got;

	pthread_mutex_lock(&m->lock);
	while (!*flag && !m->closed && !m->reply_status && fab_mono_ms() < until &&
	       !atomic_load(&m->cancel)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	got = *flag && !m->reply_status;
	if (!got)
		stream_why(m, why, sizeof(why));
	pthread_mutex_unlock(&m->lock);
	if (got)
		return 0;
	if (why[0])
		out_fail(m, "%s", why);
	else if (atomic_load(&m->cancel))
		out_fail(m, "cancelled");
	else
		out_fail(m, "no %s from node %s in %d ms", what, m->target, ms);
	return -ETIMEDOUT;
}

static void throttle_release(struct nhv_mig_out *m)
{
	if (m->held) {
		nhv_partition_resume(m->p);
		m->held_us += nhv_mono_us() - m->cycle_at;
		m->held = false;
		m->cycle_at = nhv_mono_us();
	}
}

/* Holds the vCPUs for pct % of every THROTTLE_CYCLE ms (checked between
 * batches). */
static void throttle_step(struct nhv_mig_out *m, uint32_t pct)
{
	int64_t now = nhv_mono_us(), hold = (int64_t)pct * THROTTLE_CYCLE * 10,
		run = (int64_t)(100 - pct) * THROTTLE_CYCLE * 10;

	if (!pct)
		return;
	if (!m->held && now - m->cycle_at >= run) {
		if (nhv_partition_pause(m->p) == 0) {
			m->held = true;
			m->cycle_at = now;
		}
	} else if (m->held && now - m->cycle_at >= hold) {
		throttle_release(m);
	}
}

static int flush_batch(struct nhv_mig_out *m)
{
	struct mig_pages *h = (struct mig_pages *)m->batch;
	size_t body = (size_t)m->nbatch * 8 + (size_t)m->nbatch * PAGE;
	uint8_t *gpas = m->batch + sizeof(*h);
	int rc;

	if (!m->nbatch)
		return 0;
	/* GPAs first, then the pages: move the pages down behind them. */
	if (m->nbatch < BATCH_PAGES)
		memmove(gpas + (size_t)m->nbatch * 8, gpas + (size_t)BATCH_PAGES * 8,
			(size_t)m->nbatch * PAGE);
	hdr_init(&h->h, MIG_T_PAGES);
	h->count = m->nbatch;
	h->crc = crc32c(gpas, body);
	{
		int64_t t = nhv_mono_us();

		rc = out_send(m, m->batch, sizeof(*h) + body, NULL, 0);
		m->send_us += nhv_mono_us() - t;
	}
	if (!rc) {
		m->batches++;
		pthread_mutex_lock(&m->lock);
		m->pr.bytes_sent += sizeof(*h) + body;
		m->pr.pages_sent += m->nbatch;
		pthread_mutex_unlock(&m->lock);
	}
	m->nbatch = 0;
	return rc;
}

static bool page_zero(const uint8_t *pg)
{
	static const uint8_t zero[256];

	for (unsigned i = 0; i < PAGE; i += sizeof(zero))
		if (memcmp(pg + i, zero, sizeof(zero)))
			return false;
	return true;
}

/* Sends the pages set in bm (NULL: all, skipping zero pages). */
static int send_pages(struct nhv_mig_out *m, const uint64_t *bm, uint32_t throttle_pct)
{
	uint64_t ram_bytes;
	const uint8_t *ram = nhv_partition_ram(m->p, &ram_bytes);
	uint64_t npages = ram_bytes / PAGE;
	uint8_t *gpas = m->batch + sizeof(struct mig_pages);
	uint8_t *pages = gpas + (size_t)BATCH_PAGES * 8;
	int rc;

	for (uint64_t pg = 0; pg < npages; pg++) {
		uint64_t gpa = pg * PAGE;

		if (bm) {
			if (!bm[pg / 64]) {
				pg |= 63;
				continue;
			}
			if (!(bm[pg / 64] & (1ull << (pg % 64))))
				continue;
		} else if (page_zero(ram + gpa)) {
			continue;
		}
		memcpy(gpas + (size_t)m->nbatch * 8, &gpa, 8);
		memcpy(pages + (size_t)m->nbatch * PAGE, ram + gpa, PAGE);
		if (++m->nbatch == BATCH_PAGES) {
			rc = flush_batch(m);
			if (rc)
				return rc;
			throttle_step(m, throttle_pct);
		}
	}
	return flush_batch(m);
}

static uint64_t bitmap_pages(const uint64_t *bm, size_t bytes)
{
	uint64_t n = 0;

	for (size_t i = 0; i < bytes / 8; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	return n;
}

static void set_step(struct nhv_mig_out *m, enum nhv_mig_step st)
{
	pthread_mutex_lock(&m->lock);
	m->pr.step = st;
	pthread_mutex_unlock(&m->lock);
	if (m->notify)
		m->notify(m->arg);
}

static double mib(double bytes)
{
	return bytes / (1024.0 * 1024.0);
}

static int precopy(struct nhv_mig_out *m)
{
	uint32_t pct = 0;
	int64_t t0, t1, send0;
	uint64_t sent0, dirty_pages, prev_dirty = UINT64_MAX;
	int rc;

	rc = nhv_partition_dirty_begin(m->p);
	if (rc) {
		out_fail(m, "cannot log dirty pages: %s", strerror(-rc));
		return rc;
	}
	m->cycle_at = nhv_mono_us();
	for (uint32_t round = 1;; round++) {
		uint64_t link, dirty, est_us, dirty_bytes;
		double secs;

		pthread_mutex_lock(&m->lock);
		m->pr.round = round;
		m->pr.throttle_pct = pct;
		sent0 = m->pr.bytes_sent;
		pthread_mutex_unlock(&m->lock);
		t0 = nhv_mono_us();
		send0 = m->send_us;
		rc = send_pages(m, round == 1 ? NULL : m->bitmap, pct);
		throttle_release(m);
		if (rc)
			return rc;
		/* A round shorter than MIN_ROUND_MS would measure mostly the
		 * pages reported dirty in every fetch (rings, SynIC pages) as
		 * a huge dirty rate: let the guest run for that long. */
		{
			int64_t left = MIN_ROUND_MS * 1000 - (nhv_mono_us() - t0);

			if (left > 0) {
				struct timespec ts = { 0, (long)left * 1000 };

				nanosleep(&ts, NULL);
			}
		}
		rc = nhv_partition_dirty_fetch(m->p, m->bitmap, m->bitmap_bytes);
		t1 = nhv_mono_us();
		if (rc) {
			out_fail(m, "cannot fetch dirty pages: %s", strerror(-rc));
			return rc;
		}
		dirty_pages = bitmap_pages(m->bitmap, m->bitmap_bytes);
		dirty_bytes = dirty_pages * PAGE;
		secs = (double)(t1 - t0 > 1 ? t1 - t0 : 1) / 1e6;
		pthread_mutex_lock(&m->lock);
		/* The link rate is what the transport took per second of
		 * handing it batches (scanning and copying pages aside),
		 * over the whole copy: small rounds are mostly latency. */
		(void)sent0;
		(void)send0;
		link = (uint64_t)((double)m->pr.bytes_sent * 1e6 /
				  (double)(m->send_us > 1 ? m->send_us : 1));
		if (!link)
			link = 1;
		dirty = (uint64_t)((double)dirty_bytes / secs);
		est_us = (uint64_t)((double)dirty_bytes * 1e6 / (double)link);
		m->pr.link_bytes_per_s = link;
		m->pr.dirty_bytes_per_s = dirty;
		m->pr.dirty_bytes = dirty_bytes;
		m->pr.est_downtime_us = est_us;
		{
			int64_t el = t1 - m->copy_started;

			m->pr.throttle_pct = el > 0 ? (uint32_t)(m->held_us * 100 / el) : 0;
		}
		pthread_mutex_unlock(&m->lock);
		fab_info("migration %llu of %s: round %u: %.1f MiB in %.0f ms (link %.1f MiB/s), "
			 "%llu pages dirtied (%.1f MiB/s), estimated pause %.1f ms%s",
			 (unsigned long long)m->id, m->name, round,
			 mib((double)(m->pr.bytes_sent - sent0)), secs * 1e3, mib((double)link),
			 (unsigned long long)dirty_pages, mib((double)dirty), (double)est_us / 1e3,
			 pct ? " (throttled)" : "");
		if (est_us <= (uint64_t)m->budget_ms * 1000)
			return 0;
		if (atomic_load(&m->cancel)) {
			out_fail(m, "cancelled");
			return -ECANCELED;
		}
		/* Not converging: the guest outruns the link (and what is
		 * left did not shrink: the pages reported dirty in every fetch,
		 * rings and SynIC pages, make tiny rounds look fast). */
		if (round >= 2 && dirty >= link && dirty_bytes >= prev_dirty) {
			if (!m->throttle) {
				out_fail(m,
					 "guest dirties %.1f MiB/s, link copies %.1f MiB/s: cannot "
					 "converge (ask for throttle to slow the guest)",
					 mib((double)dirty), mib((double)link));
				return -EAGAIN;
			}
			pct = pct >= 75 ? 95 : pct + 25;
		}
		prev_dirty = dirty_bytes;
		if (round >= m->max_rounds) {
			if (dirty >= link && !m->throttle) {
				out_fail(m,
					 "no convergence in %u rounds: guest dirties %.1f MiB/s, "
					 "link copies %.1f MiB/s",
					 round, mib((double)dirty), mib((double)link));
				return -EAGAIN;
			}
			fab_info("migration %llu of %s: %u rounds done; stopping with an "
				 "estimated pause of %.1f ms (budget %u ms)",
				 (unsigned long long)m->id, m->name, round, (double)est_us / 1e3,
				 m->budget_ms);
			return 0;
		}
	}
}

static void *out_main(void *arg)
{
	struct nhv_mig_out *m = arg;
	struct mig_hello hello = { 0 };
	struct mig_state st = { 0 };
	struct mig_paused pz = { 0 };
	bool quiesced = false, dirty_on = false;
	char err[256];
	uint8_t *blob = NULL;
	size_t blen = 0;
	int64_t t_pause = 0, t_q = 0, t_pages = 0, t_saved = 0, t_sent = 0;
	int rc;

	fab_info("migration %llu: copying partition %s to node %s at %s", (unsigned long long)m->id,
		 m->name, m->target, m->address);
	rc = nhv_dp_call(m->dp, connect_job, m);
	if (rc) {
		out_fail(m, "cannot connect to node %s at %s: %s", m->target, m->address,
			 strerror(-rc));
		goto fail;
	}
	if (out_wait(m, &m->connected, CONNECT_MS, "connection"))
		goto fail;
	hdr_init(&hello.h, MIG_T_HELLO);
	hello.id = m->id;
	hello.ram_bytes = m->pr.ram_bytes;
	hello.vcpus = 0;
	snprintf(hello.name, sizeof(hello.name), "%s", m->name);
	if (out_send(m, &hello, sizeof(hello), NULL, 0) ||
	    out_wait(m, &m->got_accept, CONNECT_MS, "answer to the stream's hello"))
		goto fail;
	set_step(m, NHV_MIG_COPY);
	m->copy_started = nhv_mono_us();
	dirty_on = true;
	rc = precopy(m);
	if (rc)
		goto fail;

	/* Stop and copy: the pause starts here. */
	t_pause = nhv_mono_us();
	rc = nhv_partition_quiesce(m->p, QUIESCE_MS, err, sizeof(err));
	if (rc) {
		out_fail(m, "%s", err);
		goto fail;
	}
	quiesced = true;
	t_q = nhv_mono_us();
	/* The last round's fetch (pages dirtied while it was sent) has not
	 * been sent yet: it goes now together with what changed since. */
	rc = nhv_partition_dirty_fetch(m->p, m->last, m->bitmap_bytes);
	if (rc) {
		out_fail(m, "cannot fetch dirty pages: %s", strerror(-rc));
		goto fail;
	}
	for (size_t i = 0; i < m->bitmap_bytes / 8; i++)
		m->bitmap[i] |= m->last[i];
	pthread_mutex_lock(&m->lock);
	m->pr.round++;
	pthread_mutex_unlock(&m->lock);
	rc = send_pages(m, m->bitmap, 0);
	if (rc)
		goto fail;
	t_pages = nhv_mono_us();
	rc = nhv_partition_save_state(m->p, &blob, &blen);
	t_saved = nhv_mono_us();
	if (rc || blen > MAX_BLOB) {
		out_fail(m, "cannot save the partition's state: %s",
			 rc ? strerror(-rc) : "larger than a message");
		goto fail;
	}
	hdr_init(&st.h, MIG_T_STATE);
	st.len = (uint32_t)blen;
	st.crc = crc32c(blob, blen);
	st.batches = m->batches;
	if (out_send(m, &st, sizeof(st), blob, blen))
		goto fail;
	t_sent = nhv_mono_us();
	pthread_mutex_lock(&m->lock);
	m->pr.bytes_sent += sizeof(st) + blen;
	pthread_mutex_unlock(&m->lock);
	if (out_wait(m, &m->got_ready, READY_MS, "READY"))
		goto fail;
	hdr_init(&pz.h, MIG_T_PAUSED);
	pz.pause_us = (uint64_t)(nhv_mono_us() - t_pause);
	out_send(m, &pz, sizeof(pz), NULL, 0); /* informative: the target adds its part */
	pthread_mutex_lock(&m->lock);
	m->pr.pause_us = pz.pause_us;
	pthread_mutex_unlock(&m->lock);
	free(blob);
	fab_info("migration %llu of %s: stopped and sent: %u rounds, %llu pages, %.1f MiB, "
		 "paused %.1f ms until the target's READY (quiesce %.1f, last pages %.1f, "
		 "state %zu bytes saved in %.1f and sent in %.1f, READY after %.1f more)",
		 (unsigned long long)m->id, m->name, m->pr.round,
		 (unsigned long long)m->pr.pages_sent, mib((double)m->pr.bytes_sent),
		 (double)pz.pause_us / 1e3, (double)(t_q - t_pause) / 1e3,
		 (double)(t_pages - t_q) / 1e3, blen, (double)(t_saved - t_pages) / 1e3,
		 (double)(t_sent - t_saved) / 1e3,
		 (double)(t_pause + (int64_t)pz.pause_us - t_sent) / 1e3);
	/* Now the controller decides; the partition stays quiesced. */
	set_step(m, NHV_MIG_STOPPED);
	return NULL;

fail:
	free(blob);
	throttle_release(m);
	if (dirty_on)
		nhv_partition_dirty_end(m->p);
	if (quiesced)
		nhv_partition_thaw(m->p);
	nhv_dp_call(m->dp, close_job, m);
	fab_warn("migration %llu of %s to node %s failed (the partition runs on here): %s",
		 (unsigned long long)m->id, m->name, m->target, m->pr.error);
	set_step(m, NHV_MIG_FAILED);
	return NULL;
}

int nhv_mig_out_start(struct nhv_dp *dp, const struct nhv_mig_out_cfg *cfg,
		      struct nhv_mig_out **out)
{
	struct nhv_mig_out *m;
	uint64_t ram_bytes;
	int rc;

	if (!dp || !cfg->p || fab_name_valid(cfg->name) || fab_name_valid(cfg->target) ||
	    strlen(cfg->address) >= NHV_CFG_ADDR_MAX)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->dp = dp;
	m->p = cfg->p;
	m->id = cfg->id;
	snprintf(m->name, sizeof(m->name), "%s", cfg->name);
	snprintf(m->target, sizeof(m->target), "%s", cfg->target);
	snprintf(m->address, sizeof(m->address), "%s", cfg->address);
	m->budget_ms = cfg->budget_ms ? cfg->budget_ms : DEFAULT_BUDGET;
	m->max_rounds = cfg->max_rounds ? cfg->max_rounds : DEFAULT_ROUNDS;
	m->throttle = cfg->throttle;
	m->notify = cfg->notify;
	m->arg = cfg->arg;
	nhv_partition_ram(cfg->p, &ram_bytes);
	m->pr.ram_bytes = ram_bytes;
	m->pr.step = NHV_MIG_PREPARE;
	m->bitmap_bytes = nhv_partition_dirty_bytes(cfg->p);
	m->bitmap = calloc(1, m->bitmap_bytes);
	m->last = calloc(1, m->bitmap_bytes);
	m->batch = malloc(sizeof(struct mig_pages) + (size_t)BATCH_PAGES * (8 + PAGE));
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	if (!m->bitmap || !m->last || !m->batch) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = -pthread_create(&m->thread, NULL, out_main, m);
	if (rc)
		goto fail;
	m->thread_started = true;
	*out = m;
	return 0;
fail:
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m->last);
	free(m->bitmap);
	free(m->batch);
	free(m);
	return rc;
}

void nhv_mig_out_progress(struct nhv_mig_out *m, struct nhv_mig_progress *pr)
{
	pthread_mutex_lock(&m->lock);
	*pr = m->pr;
	pthread_mutex_unlock(&m->lock);
}

void nhv_mig_out_free(struct nhv_mig_out *m)
{
	if (!m)
		return;
	atomic_store(&m->cancel, true);
	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	nhv_dp_call(m->dp, close_job, m);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m->bitmap);
	free(m->last);
	free(m->batch);
	free(m);
}

/* ---- the target -------------------------------------------------------------- */

struct nhv_mig_in {
	struct nhv_mig_in *next; /* the data plane's list (its thread) */
	struct nhv_dp *dp;
	uint64_t id;
	char name[FAB_NAME_MAX], source[FAB_NAME_MAX];
	uint64_t ram_bytes;
	uint32_t vcpus;
	void (*notify)(void *arg);
	void *arg;

	/* data plane thread */
	struct xport_conn *conn;
	struct nhv_partition *shell; /* the caller's; pages land in its RAM */
	uint8_t *ram;
	uint64_t batches;
	uint8_t *blob;
	size_t blob_len;

	pthread_mutex_t lock; /* below */
	struct nhv_mig_progress pr;
	uint64_t src_pause_us;
	int64_t ready_at;
};

/* Every target-side migration of the process, touched on data plane
 * threads only (one per process in practice). */
static struct nhv_mig_in *ins;

static void in_set(struct nhv_mig_in *m, enum nhv_mig_step st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void in_set(struct nhv_mig_in *m, enum nhv_mig_step st, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	if (m->pr.step == NHV_MIG_FAILED) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->pr.step = st;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(m->pr.error, sizeof(m->pr.error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&m->lock);
	if (m->notify)
		m->notify(m->arg);
}

static void in_send_status(struct xport_conn *c, uint16_t type, int status, const char *why)
{
	struct mig_status st = { 0 };
	struct iovec iov = { &st, sizeof(st) };

	hdr_init(&st.h, type);
	st.status = status;
	snprintf(st.why, sizeof(st.why), "%s", why ? why : "");
	xport_sendv(c, &iov, 1);
}

/*
 * A connection that is told why it is refused: closing at once could drop
 * the message still queued (xport_close), so the peer gets LINGER_S to
 * read it and close; then we close. The peer's messages are ignored.
 */
#define LINGER_S 2.0

struct linger {
	struct xport_conn *c;
	ev_timer t;
};

static void l_closed(struct xport_conn *c, int err, void *arg)
{
	struct linger *lg = arg;

	ev_timer_stop(xport_loop_of(c), &lg->t);
	free(lg);
}

static void l_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
}

static const struct xport_conn_cbs linger_cbs = { .recv_cb = l_recv, .closed_cb = l_closed };

static void l_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct linger *lg = w->data;

	xport_close(lg->c); /* l_closed follows and frees */
}

/* Sends ERROR with why on c and closes it a little later. Loop thread. */
static void refuse_conn(struct xport_conn *c, int status, const char *why)
{
	struct linger *lg = calloc(1, sizeof(*lg));

	in_send_status(c, MIG_T_ERROR, status, why);
	if (!lg) {
		xport_set_cbs(c, &silent_cbs, NULL);
		xport_close(c);
		return;
	}
	lg->c = c;
	ev_timer_init(&lg->t, l_timer, LINGER_S, 0.);
	lg->t.data = lg;
	ev_timer_start(xport_loop_of(c), &lg->t);
	xport_set_cbs(c, &linger_cbs, lg);
}

/* Gives up on the stream: tells the source why, closes, reports. */
static void in_abort(struct nhv_mig_in *m, int status, const char *why)
{
	fab_warn("migration %llu of %s from node %s: %s", (unsigned long long)m->id, m->name,
		 m->source, why);
	if (m->conn) {
		refuse_conn(m->conn, status, why);
		m->conn = NULL;
	}
	in_set(m, NHV_MIG_FAILED, "%s", why);
}

static void in_pages(struct nhv_mig_in *m, const uint8_t *msg, size_t len)
{
	struct mig_pages h;
	const uint8_t *gpas = msg + sizeof(h), *pages;
	char why[MIG_WHY];
	uint32_t crc;

	memcpy(&h, msg, sizeof(h));
	if (h.count == 0 || h.count > BATCH_PAGES ||
	    len != sizeof(h) + (size_t)h.count * (8 + PAGE)) {
		snprintf(why, sizeof(why), "page batch %llu: bad length %zu for %u pages",
			 (unsigned long long)m->batches + 1, len, h.count);
		in_abort(m, -EPROTO, why);
		return;
	}
	crc = crc32c(gpas, len - sizeof(h));
	if (crc != h.crc) {
		snprintf(why, sizeof(why),
			 "page batch %llu: checksum mismatch (CRC32C %08x, sent %08x): "
			 "corrupted in transit",
			 (unsigned long long)m->batches + 1, crc, h.crc);
		in_abort(m, -EBADMSG, why);
		return;
	}
	pages = gpas + (size_t)h.count * 8;
	for (uint32_t i = 0; i < h.count; i++) {
		uint64_t gpa;

		memcpy(&gpa, gpas + (size_t)i * 8, 8);
		if (gpa % PAGE || gpa >= m->ram_bytes) {
			snprintf(why, sizeof(why), "page batch %llu: GPA %#llx outside RAM",
				 (unsigned long long)m->batches + 1, (unsigned long long)gpa);
			in_abort(m, -EPROTO, why);
			return;
		}
		memcpy(m->ram + gpa, pages + (size_t)i * PAGE, PAGE);
	}
	m->batches++;
	pthread_mutex_lock(&m->lock);
	m->pr.bytes_sent += len;
	m->pr.pages_sent += h.count;
	pthread_mutex_unlock(&m->lock);
}

static void in_state(struct nhv_mig_in *m, const uint8_t *msg, size_t len)
{
	struct mig_state h;
	char why[MIG_WHY], err[160];

	memcpy(&h, msg, sizeof(h));
	if (len != sizeof(h) + h.len || !h.len) {
		in_abort(m, -EPROTO, "state: bad length");
		return;
	}
	if (h.batches != m->batches) {
		snprintf(why, sizeof(why), "state: %llu page batches sent, %llu arrived",
			 (unsigned long long)h.batches, (unsigned long long)m->batches);
		in_abort(m, -EPROTO, why);
		return;
	}
	if (crc32c(msg + sizeof(h), h.len) != h.crc) {
		in_abort(m, -EBADMSG, "state blob: checksum mismatch: corrupted in transit");
		return;
	}
	if (nhv_partition_state_check(msg + sizeof(h), h.len, err, sizeof(err))) {
		snprintf(why, sizeof(why), "state blob refused: %s", err);
		in_abort(m, -EBADMSG, why);
		return;
	}
	m->blob = malloc(h.len);
	if (!m->blob) {
		in_abort(m, -ENOMEM, "out of memory for the state");
		return;
	}
	memcpy(m->blob, msg + sizeof(h), h.len);
	m->blob_len = h.len;
	pthread_mutex_lock(&m->lock);
	m->pr.bytes_sent += len;
	pthread_mutex_unlock(&m->lock);
	in_set(m, NHV_MIG_BLOB, NULL);
}

static void i_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct nhv_mig_in *m = arg;
	struct mig_hdr h;
	enum nhv_mig_step step;

	pthread_mutex_lock(&m->lock);
	step = m->pr.step;
	pthread_mutex_unlock(&m->lock);
	if (len < sizeof(h)) {
		in_abort(m, -EPROTO, "short message on the stream");
		return;
	}
	memcpy(&h, msg, sizeof(h));
	if (h.type == MIG_T_PAGES && len >= sizeof(struct mig_pages) && step == NHV_MIG_COPY)
		in_pages(m, msg, len);
	else if (h.type == MIG_T_STATE && len >= sizeof(struct mig_state) && step == NHV_MIG_COPY)
		in_state(m, msg, len);
	else if (h.type == MIG_T_PAUSED && len == sizeof(struct mig_paused)) {
		struct mig_paused pz;

		memcpy(&pz, msg, sizeof(pz));
		pthread_mutex_lock(&m->lock);
		m->src_pause_us = pz.pause_us;
		pthread_mutex_unlock(&m->lock);
		/* The stream has done its work. */
		xport_set_cbs(c, &silent_cbs, NULL);
		xport_close(c);
		m->conn = NULL;
	} else {
		char why[MIG_WHY];

		snprintf(why, sizeof(why), "unexpected message type %#x (%zu bytes) in step %d",
			 h.type, len, (int)step);
		in_abort(m, -EPROTO, why);
	}
}

static void i_closed(struct xport_conn *c, int err, void *arg)
{
	struct nhv_mig_in *m = arg;
	enum nhv_mig_step step;

	m->conn = NULL;
	pthread_mutex_lock(&m->lock);
	step = m->pr.step;
	pthread_mutex_unlock(&m->lock);
	if (step == NHV_MIG_COPY) {
		fab_warn("migration %llu of %s: the stream from node %s ended before the state "
			 "arrived: %s",
			 (unsigned long long)m->id, m->name, m->source,
			 err ? strerror(-err) : "closed");
		in_set(m, NHV_MIG_FAILED, "stream from node %s lost before the state: %s",
		       m->source, err ? strerror(-err) : "closed");
	}
}

static const struct xport_conn_cbs in_cbs = { .recv_cb = i_recv, .closed_cb = i_closed };

int nhv_mig_accept(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	const char *peer = xport_peer_name(c);
	struct mig_hello h;
	struct nhv_mig_in *m;

	(void)arg;
	if (len != sizeof(h)) {
		fab_warn("data plane: connection from %s is neither an rvmbus link nor a "
			 "migration stream; dropped",
			 peer);
		return -EPROTO;
	}
	memcpy(&h, msg, sizeof(h));
	h.name[RCH_NAME - 1] = '\0';
	if (h.h.type != MIG_T_HELLO || h.h.version != MIG_VERSION) {
		fab_warn("data plane: unknown stream (type %#x version %u) from %s; dropped",
			 h.h.type, h.h.version, peer);
		return -EPROTO;
	}
	for (m = ins; m; m = m->next)
		if (m->id == h.id)
			break;
	if (!m || strcmp(m->source, peer) || strcmp(m->name, h.name) || m->conn ||
	    m->pr.step != NHV_MIG_PREPARE || h.ram_bytes != m->ram_bytes) {
		char why[MIG_WHY];

		if (!m)
			snprintf(why, sizeof(why), "no migration %llu is expected here",
				 (unsigned long long)h.id);
		else if (strcmp(m->source, peer))
			snprintf(why, sizeof(why),
				 "migration %llu comes from node %s, not from node %s",
				 (unsigned long long)h.id, m->source, peer);
		else if (strcmp(m->name, h.name))
			snprintf(why, sizeof(why), "migration %llu is of %s, not %s",
				 (unsigned long long)h.id, m->name, h.name);
		else if (h.ram_bytes != m->ram_bytes)
			snprintf(why, sizeof(why), "RAM %llu bytes, expected %llu",
				 (unsigned long long)h.ram_bytes, (unsigned long long)m->ram_bytes);
		else
			snprintf(why, sizeof(why), "migration %llu has a stream already",
				 (unsigned long long)h.id);
		fab_warn("migration stream from %s refused: %s", peer, why);
		refuse_conn(c, -EACCES, why);
		return 0; /* taken: it closes once the source had time to read why */
	}
	m->conn = c;
	xport_set_cbs(c, &in_cbs, m);
	in_send_status(c, MIG_T_ACCEPT, 0, NULL);
	fab_info("migration %llu of %s: stream from node %s accepted", (unsigned long long)m->id,
		 m->name, peer);
	in_set(m, NHV_MIG_COPY, NULL);
	return 0;
}

static int in_add_job(void *arg)
{
	struct nhv_mig_in *m = arg;

	for (struct nhv_mig_in *o = ins; o; o = o->next)
		if (o->id == m->id)
			return -EEXIST;
	m->next = ins;
	ins = m;
	return 0;
}

static int in_del_job(void *arg)
{
	struct nhv_mig_in *m = arg;

	for (struct nhv_mig_in **pp = &ins; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	if (m->conn) {
		xport_set_cbs(m->conn, &silent_cbs, NULL);
		xport_close(m->conn);
		m->conn = NULL;
	}
	return 0;
}

int nhv_mig_in_start(struct nhv_dp *dp, const struct nhv_mig_in_cfg *cfg, struct nhv_mig_in **out)
{
	struct nhv_mig_in *m;
	int rc;

	if (!dp || !cfg->shell || fab_name_valid(cfg->name) || fab_name_valid(cfg->source) ||
	    !cfg->ram_bytes || cfg->ram_bytes % PAGE)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->dp = dp;
	m->id = cfg->id;
	snprintf(m->name, sizeof(m->name), "%s", cfg->name);
	snprintf(m->source, sizeof(m->source), "%s", cfg->source);
	m->ram_bytes = cfg->ram_bytes;
	m->vcpus = cfg->vcpus;
	m->notify = cfg->notify;
	m->arg = cfg->arg;
	m->pr.step = NHV_MIG_PREPARE;
	m->pr.ram_bytes = cfg->ram_bytes;
	m->shell = cfg->shell;
	{
		uint64_t bytes;

		m->ram = nhv_partition_ram(cfg->shell, &bytes);
		if (bytes != cfg->ram_bytes) {
			free(m);
			return -EINVAL;
		}
	}
	pthread_mutex_init(&m->lock, NULL);
	rc = nhv_dp_call(dp, in_add_job, m);
	if (rc) {
		pthread_mutex_destroy(&m->lock);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void nhv_mig_in_progress(struct nhv_mig_in *m, struct nhv_mig_progress *pr)
{
	pthread_mutex_lock(&m->lock);
	*pr = m->pr;
	pthread_mutex_unlock(&m->lock);
}

struct ready_args {
	struct nhv_mig_in *m;
	int status;
	const char *why;
};

static int ready_job(void *arg)
{
	struct ready_args *a = arg;
	struct nhv_mig_in *m = a->m;

	if (!m->conn)
		return -ENOTCONN;
	if (a->status) {
		in_abort(m, a->status, a->why);
		return 0;
	}
	in_send_status(m->conn, MIG_T_READY, 0, NULL);
	return 0;
}

int nhv_mig_in_restore(struct nhv_mig_in *m, const struct nhv_dev_binding *devs, size_t ndevs,
		       char *err, size_t errlen)
{
	struct ready_args ra = { .m = m };
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = m->pr.step == NHV_MIG_BLOB ? 0 : -EINVAL;
	pthread_mutex_unlock(&m->lock);
	if (rc) {
		snprintf(err, errlen, "the partition's state has not arrived");
		return rc;
	}
	/* The stream is quiet now (the source waits for READY): the data
	 * plane no longer writes the shell's RAM or m->blob. */
	rc = nhv_partition_restore_state(m->shell, m->blob, m->blob_len, devs, ndevs, err, errlen);
	ra.status = rc;
	ra.why = rc ? err : NULL;
	if (nhv_dp_call(m->dp, ready_job, &ra) && !rc) {
		snprintf(err, errlen, "the stream from node %s is gone", m->source);
		rc = -ECONNRESET;
		in_set(m, NHV_MIG_FAILED, "%s", err);
	}
	if (rc)
		return rc;
	pthread_mutex_lock(&m->lock);
	m->ready_at = nhv_mono_us();
	pthread_mutex_unlock(&m->lock);
	in_set(m, NHV_MIG_STOPPED, NULL);
	return 0;
}

void nhv_mig_in_times(struct nhv_mig_in *m, uint64_t *src_pause_us, int64_t *ready_at_us)
{
	pthread_mutex_lock(&m->lock);
	*src_pause_us = m->src_pause_us;
	*ready_at_us = m->ready_at;
	pthread_mutex_unlock(&m->lock);
}

void nhv_mig_in_free(struct nhv_mig_in *m)
{
	if (!m)
		return;
	nhv_dp_call(m->dp, in_del_job, m);
	free(m->blob);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
