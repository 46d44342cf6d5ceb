// SPDX-License-Identifier: MIT
/*
 * Checkpoint and restore of a live partition, the core of live migration:
 * dirty-page tracking for pre-copy, quiescing, the state blob and the one
 * parser that reads it back.
 *
 * Blob format (little-endian), version 2:
 *   header   "FABCKPT\0", u32 version, u32 reserved, u64 total length,
 *            u64 FNV-1a 64 of the whole blob with this field zero
 *   records  u32 tag, u32 length, payload; in this order:
 *     CONFIG  u64 id, u64 ram_bytes, u32 vcpus, u32 0, i64 reference time,
 *             i64 wall clock (CLOCK_REALTIME, ns) at the save
 *     VCPU    (one per vCPU, in order) u32 index, struct vtx_vcpu_state,
 *             u64 SCONTROL, SIMP, SIEFP, SINT0..15, u32 wake flag,
 *             u32 n, n x {u32 sint, u32 type, u32 len, 240 bytes}
 *             (SynIC messages waiting for a free slot)
 *     VMBUS   see nhv_vmbus_save (vmbus_host.c)
 *     END     empty
 * Guest RAM is not in the blob; the hypercall page, page tables, boot
 * information and the guest's arguments are in RAM. Doorbells are not
 * saved: they follow from the channels' connection ids.
 *
 * Quiesce order: channels are held first, while the vCPUs still run, so a
 * VSP finishing a request can still wait for the guest to make room in
 * its ring; then the vCPUs are paused (WAIT is interrupted at its retry
 * point); then channels opened meanwhile are held as well.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan_int.h"
#include "ckpt_int.h"
#include "fab/log.h"
#include "fab/remote.h"
#include "fab/util.h"
#include "partition_int.h"

#define BLOB_MAGIC   "FABCKPT"
#define BLOB_VERSION 2u
#define HDR_LEN	     32u
#define CKSUM_OFF    24u

enum { TAG_CONFIG = 1, TAG_VCPU = 2, TAG_VMBUS = 3, TAG_END = 4 };

/* The least time quiesce gives the vCPUs to park, whatever its timeout. */
#define PAUSE_MIN_MS 2000

#define VCPU_REC_FIXED (4 + sizeof(struct vtx_vcpu_state) + 8 * (3 + HV_SYNIC_SINT_COUNT) + 4 + 4)
#define MSG_REC	       (12 + 240)

/* ---- dirty pages ----------------------------------------------------------- */

void nhv_dirty_mark(struct nhv_partition *p, uint64_t gpa, uint64_t len)
{
	uint64_t *bm = __atomic_load_n(&p->host_dirty, __ATOMIC_ACQUIRE);

	if (!bm || !len || gpa >= p->ram_bytes)
		return;
	if (len > p->ram_bytes - gpa)
		len = p->ram_bytes - gpa;
	for (uint64_t pg = gpa / FAB_PAGE_SIZE; pg <= (gpa + len - 1) / FAB_PAGE_SIZE; pg++)
		__atomic_fetch_or(&bm[pg / 64], 1ull << (pg % 64), __ATOMIC_RELEASE);
}

size_t nhv_partition_dirty_bytes(struct nhv_partition *p)
{
	return (size_t)((p->ram_bytes / FAB_PAGE_SIZE + 63) / 64 * 8);
}

int nhv_partition_dirty_begin(struct nhv_partition *p)
{
	size_t bytes = nhv_partition_dirty_bytes(p);
	int rc;

	pthread_mutex_lock(&p->ctl_lock);
	if (!p->host_dirty_mem) {
		p->host_dirty_mem = calloc(1, bytes);
		if (!p->host_dirty_mem) {
			pthread_mutex_unlock(&p->ctl_lock);
			return -ENOMEM;
		}
		p->dirty_bytes = bytes;
	}
	rc = vtx_dirty_log_enable(p->vm, 0, true);
	if (!rc)
		rc = vtx_dirty_log_clear(p->vm, 0);
	if (!rc) {
		memset(p->host_dirty_mem, 0, bytes);
		__atomic_store_n(&p->host_dirty, p->host_dirty_mem, __ATOMIC_RELEASE);
		p->dirty_on = true;
	}
	pthread_mutex_unlock(&p->ctl_lock);
	return rc;
}

int nhv_partition_dirty_fetch(struct nhv_partition *p, uint64_t *bitmap, size_t bytes)
{
	size_t need = nhv_partition_dirty_bytes(p), kvm_bytes = 0;
	int rc;

	if (!p->dirty_on || bytes < need)
		return -EINVAL;
	rc = vtx_dirty_log_bitmap_size(p->vm, 0, &kvm_bytes);
	if (rc)
		return rc;
	if (kvm_bytes > bytes)
		return -EINVAL;
	memset(bitmap, 0, bytes);
	/* Host marks first, then KVM's log: a page written by the host
	 * between the two is in one of them or in the next fetch. */
	for (size_t i = 0; i < need / 8; i++)
		bitmap[i] = __atomic_exchange_n(&p->host_dirty_mem[i], 0, __ATOMIC_ACQ_REL);
	{
		uint64_t *kvm = calloc(1, kvm_bytes);

		if (!kvm)
			return -ENOMEM;
		rc = vtx_dirty_log_fetch(p->vm, 0, kvm, kvm_bytes);
		for (size_t i = 0; !rc && i < kvm_bytes / 8 && i < need / 8; i++)
			bitmap[i] |= kvm[i];
		free(kvm);
		if (rc)
			return rc;
	}
	/* Pages the host writes without marking: the SynIC pages and the
	 * rings of open channels, always sent again. */
	pthread_mutex_lock(&p->synic_lock);
	for (uint32_t i = 0; i < p->nvcpus; i++) {
		uint64_t pages[2] = { p->vps[i].simp, p->vps[i].siefp };

		for (int k = 0; k < 2; k++) {
			uint64_t pg = (pages[k] & HV_SYNIC_PAGE_MASK) / FAB_PAGE_SIZE;

			if ((pages[k] & HV_SYNIC_ENABLE) && pg < p->ram_bytes / FAB_PAGE_SIZE)
				bitmap[pg / 64] |= 1ull << (pg % 64);
		}
	}
	pthread_mutex_unlock(&p->synic_lock);
	nhv_vmbus_dirty_rings(p, bitmap);
	return 0;
}

void nhv_partition_dirty_end(struct nhv_partition *p)
{
	pthread_mutex_lock(&p->ctl_lock);
	if (p->dirty_on) {
		__atomic_store_n(&p->host_dirty, NULL, __ATOMIC_RELEASE);
		vtx_dirty_log_enable(p->vm, 0, false);
		p->dirty_on = false;
	}
	pthread_mutex_unlock(&p->ctl_lock);
}

/* ---- quiesce ---------------------------------------------------------------- */

static void set_frozen(struct nhv_partition *p, bool frozen)
{
	pthread_mutex_lock(&p->ctl_lock);
	p->frozen = frozen;
	pthread_mutex_unlock(&p->ctl_lock);
}

int nhv_partition_quiesce(struct nhv_partition *p, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = fab_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	char why[160] = "";
	bool paused = false;
	int rc;

	pthread_mutex_lock(&p->ctl_lock);
	if (p->frozen || nhv_partition_state(p) != NHV_PART_RUNNING) {
		pthread_mutex_unlock(&p->ctl_lock);
		snprintf(err, errlen, "partition is not running");
		return -EINVAL;
	}
	p->frozen = true;
	pthread_mutex_unlock(&p->ctl_lock);

	rc = nhv_vmbus_hold(p, true, deadline, why, sizeof(why));
	if (!rc) {
		int64_t left = deadline - fab_mono_ms();

		/* Parking is no request in flight: it gets its own floor, so a
		 * short timeout still measures only the channels. */
		if (left < PAUSE_MIN_MS)
			left = PAUSE_MIN_MS;
		rc = nhv_partition_pause_timed(p, (int)left);
		paused = rc == 0;
		if (rc == -ETIMEDOUT)
			snprintf(why, sizeof(why),
				 "a vCPU did not park in %lld ms (held up in a callback)",
				 (long long)left);
		else if (rc)
			snprintf(why, sizeof(why), "cannot pause the vCPUs: %s", strerror(-rc));
	}
	/* Channels the guest opened before its vCPUs stopped. */
	if (!rc)
		rc = nhv_vmbus_hold(p, true, deadline, why, sizeof(why));
	if (!rc)
		return 0;
	nhv_vmbus_hold(p, false, 0, NULL, 0);
	if (paused)
		nhv_partition_resume(p);
	set_frozen(p, false);
	snprintf(err, errlen, "cannot quiesce in %d ms: %s", timeout_ms, why);
	return rc;
}

int nhv_partition_thaw(struct nhv_partition *p)
{
	int rc;

	if (!p->frozen)
		return -EINVAL;
	nhv_vmbus_hold(p, false, 0, NULL, 0);
	rc = nhv_partition_state(p) == NHV_PART_PAUSED ? nhv_partition_resume(p) : 0;
	set_frozen(p, false);
	return rc;
}

/* ---- saving ----------------------------------------------------------------- */

/* The checksum with its own field taken as zero. */
static uint64_t blob_sum(const uint8_t *b, size_t len)
{
	static const uint8_t zero[8];
	uint64_t h = 0xcbf29ce484222325ull;
	const uint8_t *parts[3] = { b, zero, b + CKSUM_OFF + 8 };
	size_t lens[3] = { CKSUM_OFF, 8, len - CKSUM_OFF - 8 };

	for (int k = 0; k < 3; k++)
		for (size_t i = 0; i < lens[k]; i++) {
			h ^= parts[k][i];
			h *= 0x100000001b3ull;
		}
	return h;
}

/* Starts a record; returns where its length goes. */
static size_t rec_begin(struct nhv_ckw *w, uint32_t tag)
{
	nhv_ckw_u32(w, tag);
	nhv_ckw_u32(w, 0);
	return w->len;
}

static void rec_end(struct nhv_ckw *w, size_t start)
{
	uint32_t n = (uint32_t)(w->len - start);

	if (w->buf && w->len <= w->cap) {
		uint8_t b[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16),
				 (uint8_t)(n >> 24) };

		memcpy(w->buf + start - 4, b, 4);
	}
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The reference clock goes on across a move: the guest's clock advances by
 * the wall-clock time between the save and the restore (on another node,
 * with the clocks of a cluster kept in step by NTP), as it would have had
 * the partition stayed paused where it was. Without it the guest would
 * fall behind real time by every move's transfer, and a guest measuring
 * its own stop would not see it. A skewed clock cannot move the guest's
 * clock back (negative: 0) nor far forward (capped at 10 minutes, which no
 * move takes).
 */
static int64_t moved_100ns(int64_t saved_wall)
{
	int64_t d = wall_ns() - saved_wall;

	if (d < 0)
		return 0;
	if (d > 600ll * 1000000000) {
		fab_warn("checkpoint: %lld s between save and restore by the wall clock; the "
			 "guest's clock moves on 600 s",
			 (long long)(d / 1000000000));
		d = 600ll * 1000000000;
	}
	return d / 100;
}

static int save_into(struct nhv_partition *p, struct nhv_ckw *w, struct vtx_vcpu_state *vs)
{
	size_t r;
	int rc;

	nhv_ckw_put(w, BLOB_MAGIC, 8);
	nhv_ckw_u32(w, BLOB_VERSION);
	nhv_ckw_u32(w, 0);
	nhv_ckw_u64(w, 0); /* total, filled in at the end */
	nhv_ckw_u64(w, 0); /* checksum */

	r = rec_begin(w, TAG_CONFIG);
	nhv_ckw_u64(w, p->id);
	nhv_ckw_u64(w, p->ram_bytes);
	nhv_ckw_u32(w, p->nvcpus);
	nhv_ckw_u32(w, 0);
	nhv_ckw_u64(w, (uint64_t)nhv_ref_time(p));
	nhv_ckw_u64(w, (uint64_t)wall_ns());
	rec_end(w, r);

	for (uint32_t i = 0; i < p->nvcpus; i++) {
		struct nhv_vp *vp = &p->vps[i];

		rc = vtx_vcpu_save_state(vp->vcpu, vs);
		if (rc)
			return rc;
		r = rec_begin(w, TAG_VCPU);
		nhv_ckw_u32(w, i);
		nhv_ckw_put(w, vs, sizeof(*vs));
		pthread_mutex_lock(&p->synic_lock);
		nhv_ckw_u64(w, vp->scontrol);
		nhv_ckw_u64(w, vp->simp);
		nhv_ckw_u64(w, vp->siefp);
		for (int s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			nhv_ckw_u64(w, vp->sint[s]);
		pthread_mutex_lock(&p->lock);
		nhv_ckw_u32(w, vp->event);
		pthread_mutex_unlock(&p->lock);
		nhv_ckw_u32(w, vp->queued);
		for (struct nhv_synic_msg *m = vp->queue_head; m; m = m->next) {
			nhv_ckw_u32(w, m->sint);
			nhv_ckw_u32(w, m->type);
			nhv_ckw_u32(w, m->len);
			nhv_ckw_put(w, m->payload, sizeof(m->payload));
		}
		pthread_mutex_unlock(&p->synic_lock);
		rec_end(w, r);
	}

	r = rec_begin(w, TAG_VMBUS);
	rc = nhv_vmbus_save(p, w);
	if (rc)
		return rc;
	rec_end(w, r);
	r = rec_begin(w, TAG_END);
	rec_end(w, r);
	return 0;
}

int nhv_partition_save_state(struct nhv_partition *p, uint8_t **out, size_t *len)
{
	struct vtx_vcpu_state *vs;
	struct nhv_ckw w = { 0 };
	int rc;

	if (!p->frozen || nhv_partition_state(p) != NHV_PART_PAUSED)
		return -EINVAL;
	vs = aligned_alloc(64, (sizeof(*vs) + 63) & ~(size_t)63);
	if (!vs)
		return -ENOMEM;
	/* Measure, then write: nothing changes in between (quiesced). */
	rc = save_into(p, &w, vs);
	if (!rc) {
		w.cap = w.len;
		w.len = 0;
		w.buf = malloc(w.cap);
		rc = w.buf ? save_into(p, &w, vs) : -ENOMEM;
	}
	free(vs);
	if (!rc && w.len != w.cap)
		rc = -EAGAIN;
	if (rc) {
		free(w.buf);
		return rc;
	}
	for (int k = 0; k < 8; k++)
		w.buf[16 + k] = (uint8_t)((uint64_t)w.len >> (8 * k));
	{
		uint64_t sum = blob_sum(w.buf, w.len);

		for (int k = 0; k < 8; k++)
			w.buf[CKSUM_OFF + k] = (uint8_t)(sum >> (8 * k));
	}
	*out = w.buf;
	*len = w.len;
	return 0;
}

/* ---- the parser ------------------------------------------------------------- */

struct parsed_vcpu {
	const uint8_t *state; /* struct vtx_vcpu_state bytes, unaligned */
	uint64_t scontrol, simp, siefp, sint[HV_SYNIC_SINT_COUNT];
	uint32_t event, nmsgs;
	const uint8_t *msgs; /* nmsgs x MSG_REC */
};

struct parsed {
	uint64_t id, ram_bytes;
	uint32_t vcpus;
	int64_t ref;
	int64_t wall; /* CLOCK_REALTIME at the save, ns */
	struct parsed_vcpu vp[NHV_MAX_VCPUS];
	const uint8_t *vmbus;
	size_t vmbus_len;
};

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		int n = snprintf(err, errlen, "bad partition state: ");

		va_start(ap, fmt);
		if (n > 0 && (size_t)n < errlen)
			vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static bool page_reg_ok(uint64_t v, uint64_t ram_bytes)
{
	if (v & ~(HV_SYNIC_PAGE_MASK | HV_SYNIC_ENABLE))
		return false;
	return !(v & HV_SYNIC_ENABLE) || (v & HV_SYNIC_PAGE_MASK) + FAB_PAGE_SIZE <= ram_bytes;
}

static int parse_vcpu(struct parsed *ps, uint32_t want, const uint8_t *b, size_t len, char *err,
		      size_t errlen)
{
	struct nhv_ckr r = { .buf = b, .len = len };
	struct parsed_vcpu *v = &ps->vp[want];
	struct vtx_vcpu_state hdr;
	uint32_t index;

	if (len < VCPU_REC_FIXED)
		return bad(err, errlen, "vCPU %u record too short", want);
	index = nhv_ckr_u32(&r);
	if (index != want)
		return bad(err, errlen, "vCPU record %u names vCPU %u", want, index);
	v->state = nhv_ckr_take(&r, sizeof(struct vtx_vcpu_state));
	memcpy(&hdr, v->state, offsetof(struct vtx_vcpu_state, regs));
	if (hdr.magic != VTX_STATE_MAGIC || hdr.version != VTX_STATE_VERSION ||
	    hdr.size != sizeof(struct vtx_vcpu_state))
		return bad(err, errlen, "vCPU %u register state has a bad header", index);
	{
		uint32_t nr_msrs, xsave_len;

		memcpy(&nr_msrs, v->state + offsetof(struct vtx_vcpu_state, nr_msrs), 4);
		memcpy(&xsave_len, v->state + offsetof(struct vtx_vcpu_state, xsave_len), 4);
		if (nr_msrs > VTX_STATE_MAX_MSRS || xsave_len > VTX_XSAVE_MAX)
			return bad(err, errlen, "vCPU %u register state out of bounds", index);
	}
	v->scontrol = nhv_ckr_u64(&r);
	v->simp = nhv_ckr_u64(&r);
	v->siefp = nhv_ckr_u64(&r);
	for (int s = 0; s < HV_SYNIC_SINT_COUNT; s++) {
		v->sint[s] = nhv_ckr_u64(&r);
		if (!(v->sint[s] & HV_SINT_MASKED) && HV_SINT_VECTOR(v->sint[s]) < 16)
			return bad(err, errlen, "vCPU %u SINT%d has a reserved vector", index, s);
	}
	v->event = nhv_ckr_u32(&r);
	v->nmsgs = nhv_ckr_u32(&r);
	if (v->scontrol & ~(uint64_t)HV_SYNIC_ENABLE || !page_reg_ok(v->simp, ps->ram_bytes) ||
	    !page_reg_ok(v->siefp, ps->ram_bytes) || v->event > 1)
		return bad(err, errlen, "vCPU %u SynIC registers out of range", index);
	if (v->nmsgs > NHV_SYNIC_QUEUE_MAX || (size_t)v->nmsgs * MSG_REC != len - r.pos)
		return bad(err, errlen, "vCPU %u message queue length", index);
	v->msgs = nhv_ckr_take(&r, (size_t)v->nmsgs * MSG_REC);
	for (uint32_t i = 0; i < v->nmsgs; i++) {
		uint32_t f[3];

		memcpy(f, v->msgs + (size_t)i * MSG_REC, sizeof(f));
		if (f[0] >= HV_SYNIC_SINT_COUNT || f[1] == 0 || f[2] > 240)
			return bad(err, errlen, "vCPU %u queued message %u", index, i);
	}
	return r.bad ? bad(err, errlen, "vCPU %u record", index) : 0;
}

static int parse(const void *blob, size_t len, struct parsed *ps, char *err, size_t errlen)
{
	struct nhv_ckr r = { .buf = blob, .len = len };
	uint64_t total, sum;
	uint32_t version, reserved, nvcpu = 0;
	int expect = TAG_CONFIG, rc;
	uint8_t magic[8];

	memset(ps, 0, sizeof(*ps));
	if (!blob || len < HDR_LEN)
		return bad(err, errlen, "%zu bytes, shorter than the header", len);
	nhv_ckr_get(&r, magic, 8);
	version = nhv_ckr_u32(&r);
	reserved = nhv_ckr_u32(&r);
	total = nhv_ckr_u64(&r);
	sum = nhv_ckr_u64(&r);
	if (memcmp(magic, BLOB_MAGIC, 8))
		return bad(err, errlen, "not a partition state (magic)");
	if (version != BLOB_VERSION || reserved)
		return bad(err, errlen, "version %u, this node reads %u", version, BLOB_VERSION);
	if (total != len)
		return bad(err, errlen, "length %zu, header says %llu (truncated?)", len,
			   (unsigned long long)total);
	if (sum != blob_sum(blob, len))
		return bad(err, errlen, "checksum mismatch (corrupted)");

	while (expect != 0) {
		uint32_t tag = nhv_ckr_u32(&r), rlen = nhv_ckr_u32(&r);
		const uint8_t *body = nhv_ckr_take(&r, rlen);

		if (r.bad)
			return bad(err, errlen, "record runs past the end");
		if ((int)tag != expect)
			return bad(err, errlen, "record %u where %d was expected", tag, expect);
		switch (tag) {
		case TAG_CONFIG: {
			struct nhv_ckr c = { .buf = body, .len = rlen };

			ps->id = nhv_ckr_u64(&c);
			ps->ram_bytes = nhv_ckr_u64(&c);
			ps->vcpus = nhv_ckr_u32(&c);
			reserved = nhv_ckr_u32(&c);
			ps->ref = (int64_t)nhv_ckr_u64(&c);
			ps->wall = (int64_t)nhv_ckr_u64(&c);
			if (c.bad || c.pos != rlen || reserved)
				return bad(err, errlen, "configuration record");
			if (ps->ram_bytes < FAB_RAM_MIN || ps->ram_bytes > FAB_RAM_MAX ||
			    ps->ram_bytes % FAB_RAM_ALIGN || ps->vcpus < 1 ||
			    ps->vcpus > NHV_MAX_VCPUS || ps->ref < 0)
				return bad(err, errlen, "configuration out of range");
			expect = TAG_VCPU;
			break;
		}
		case TAG_VCPU:
			if (nvcpu >= ps->vcpus)
				return bad(err, errlen, "more vCPU records than vCPUs");
			rc = parse_vcpu(ps, nvcpu, body, rlen, err, errlen);
			if (rc)
				return rc;
			nvcpu++;
			expect = nvcpu < ps->vcpus ? TAG_VCPU : TAG_VMBUS;
			break;
		case TAG_VMBUS:
			ps->vmbus = body;
			ps->vmbus_len = rlen;
			expect = TAG_END;
			break;
		case TAG_END:
			if (rlen)
				return bad(err, errlen, "end record not empty");
			expect = 0;
			break;
		default:
			return bad(err, errlen, "unknown record %u", tag);
		}
	}
	if (r.pos != len)
		return bad(err, errlen, "%zu bytes after the end record", len - r.pos);
	return 0;
}

int nhv_partition_state_check(const void *blob, size_t len, char *err, size_t errlen)
{
	struct parsed *ps = malloc(sizeof(*ps));
	int rc;

	if (!ps)
		return -ENOMEM;
	rc = parse(blob, len, ps, err, errlen);
	free(ps);
	return rc;
}

/* ---- restoring -------------------------------------------------------------- */

static int restore_vcpu(struct nhv_partition *p, const struct parsed_vcpu *v, struct nhv_vp *vp,
			struct vtx_vcpu_state *vs)
{
	int rc;

	memcpy(vs, v->state, sizeof(*vs));
	rc = vtx_vcpu_restore_state(vp->vcpu, vs);
	if (rc)
		return rc;
	vp->scontrol = v->scontrol;
	vp->simp = v->simp;
	vp->siefp = v->siefp;
	memcpy(vp->sint, v->sint, sizeof(vp->sint));
	/* A restored vCPU is woken once: WAIT returning early is allowed,
	 * a wake-up lost in the move would not be. */
	vp->event = true;
	for (uint32_t i = 0; i < v->nmsgs; i++) {
		struct nhv_synic_msg *m = calloc(1, sizeof(*m));
		const uint8_t *src = v->msgs + (size_t)i * MSG_REC;

		if (!m)
			return -ENOMEM;
		memcpy(&m->sint, src, 4);
		memcpy(&m->type, src + 4, 4);
		memcpy(&m->len, src + 8, 4);
		memcpy(m->payload, src + 12, sizeof(m->payload));
		*vp->queue_tail = m;
		vp->queue_tail = &m->next;
		vp->queued++;
	}
	return 0;
}

static int attach(struct nhv_partition *p, const struct nhv_dev_binding *d, char *err,
		  size_t errlen)
{
	int rc;

	switch (d->kind) {
	case NHV_BIND_DISK:
		return nhv_partition_attach_disk(p, d->path, d->read_only, err, errlen);
	case NHV_BIND_IC:
		rc = nhv_partition_attach_ic(p);
		break;
	case NHV_BIND_ECHO:
		rc = nhv_partition_attach_echo(p);
		break;
	case NHV_BIND_REMOTE:
		rc = d->dp && d->partition && d->remote
			     ? nhv_stub_attach(d->dp, p, d->partition, d->remote, d->stub)
			     : -EINVAL;
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc)
		snprintf(err, errlen, "cannot attach device %d: %s", (int)d->kind, strerror(-rc));
	return rc;
}

int nhv_partition_restore_shell(const struct nhv_partition_cfg *cfg, struct nhv_partition **out,
				char *err, size_t errlen)
{
	struct nhv_partition_cfg c = *cfg;

	if (!cfg->ram_bytes || !cfg->vcpus) {
		snprintf(err, errlen, "a shell needs its RAM size and vCPU count");
		return -EINVAL;
	}
	c.image = NULL;
	c.image_len = 0;
	c.argc = 0;
	c.argv = NULL;
	return nhv_partition_alloc(&c, out, err, errlen);
}

/* Loads a parsed blob into a shell whose RAM holds the guest's. */
static int restore_into(struct nhv_partition *p, const struct parsed *ps,
			const struct nhv_dev_binding *devs, size_t ndevs, char *err, size_t errlen)
{
	struct vtx_vcpu_state *vs;
	int rc = 0;

	vs = aligned_alloc(64, (sizeof(*vs) + 63) & ~(size_t)63);
	if (!vs)
		return -ENOMEM;
	for (uint32_t i = 0; i < ps->vcpus; i++) {
		rc = restore_vcpu(p, &ps->vp[i], &p->vps[i], vs);
		if (rc) {
			snprintf(err, errlen, "cannot restore vCPU %u: %s", i, strerror(-rc));
			goto out;
		}
	}
	nhv_ref_time_set(p, ps->ref + moved_100ns(ps->wall));
	for (size_t i = 0; i < ndevs; i++) {
		rc = attach(p, &devs[i], err, errlen);
		if (rc)
			goto out;
	}
	{
		struct nhv_ckr r = { .buf = ps->vmbus, .len = ps->vmbus_len };

		rc = nhv_vmbus_restore(p, &r, err, errlen);
		if (!rc && r.pos != r.len)
			rc = bad(err, errlen, "VMBus record has %zu extra bytes", r.len - r.pos);
		if (rc)
			goto out;
	}
	/* Channels are held until start; nothing may be attached before. */
	p->frozen = true;
out:
	free(vs);
	return rc;
}

int nhv_partition_restore_state(struct nhv_partition *p, const void *blob, size_t len,
				const struct nhv_dev_binding *devs, size_t ndevs, char *err,
				size_t errlen)
{
	struct parsed *ps = malloc(sizeof(*ps));
	int rc;

	if (!ps)
		return -ENOMEM;
	rc = parse(blob, len, ps, err, errlen);
	if (!rc && (ps->ram_bytes != p->ram_bytes || ps->vcpus != p->nvcpus)) {
		snprintf(err, errlen,
			 "saved partition (%u vCPUs, %llu bytes) does not match the shell (%u "
			 "vCPUs, %llu bytes)",
			 ps->vcpus, (unsigned long long)ps->ram_bytes, p->nvcpus,
			 (unsigned long long)p->ram_bytes);
		rc = -EINVAL;
	}
	if (!rc) {
		p->id = ps->id;
		rc = restore_into(p, ps, devs, ndevs, err, errlen);
	}
	free(ps);
	return rc;
}

int nhv_partition_restore(const struct nhv_partition_cfg *cfg, const void *ram, uint64_t ram_len,
			  const void *blob, size_t len, const struct nhv_dev_binding *devs,
			  size_t ndevs, struct nhv_partition **out, char *err, size_t errlen)
{
	struct nhv_partition_cfg c = *cfg;
	struct nhv_partition *p = NULL;
	struct parsed *ps;
	int rc;

	ps = malloc(sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	rc = parse(blob, len, ps, err, errlen);
	if (rc)
		goto out;
	if ((cfg->id && cfg->id != ps->id) || (cfg->ram_bytes && cfg->ram_bytes != ps->ram_bytes) ||
	    (cfg->vcpus && cfg->vcpus != ps->vcpus) || (ram && ram_len != ps->ram_bytes)) {
		snprintf(err, errlen,
			 "saved partition (id %llu, %u vCPUs, %llu bytes) does not "
			 "match the configuration or RAM given",
			 (unsigned long long)ps->id, ps->vcpus, (unsigned long long)ps->ram_bytes);
		rc = -EINVAL;
		goto out;
	}
	c.id = ps->id;
	c.ram_bytes = ps->ram_bytes;
	c.vcpus = ps->vcpus;
	c.image = NULL;
	c.image_len = 0;
	c.argc = 0;
	c.argv = NULL;
	rc = nhv_partition_alloc(&c, &p, err, errlen);
	if (rc)
		goto out;
	if (ram)
		memcpy(p->ram, ram, ps->ram_bytes);
	rc = restore_into(p, ps, devs, ndevs, err, errlen);
	if (rc)
		goto out;
	*out = p;
	p = NULL;
out:
	if (p)
		nhv_partition_destroy(p);
	free(ps);
	return rc;
}
