// SPDX-License-Identifier: MIT
/*
 * vmbus_hostile: a guest that attacks its host through VMBus and checks that
 * the host refuses each attack and stays usable. One line per case:
 *   vmbus_hostile: <case>: <what happened> ok|UNEXPECTED
 * then "vmbus_hostile: <n> cases, <m> unexpected" and "vmbus_hostile: done".
 * Exit status 0 only if nothing unexpected happened. A host that crashes
 * or ends the partition fails the test that runs this image; every wait
 * here has a timeout, so a host that stops answering shows as UNEXPECTED
 * rather than as a hang.
 *
 * Cases where either of two host reactions is right (an error completion
 * or failing the channel) accept both; what must hold afterwards is that
 * the control path still answers (a GPADL round trip) and that a channel
 * closed after an attack can be opened again and used.
 *
 * Needs a disk (fabnode run --disk) for the storage cases; without one
 * they are skipped.
 */
#include <errno.h>
#include <stdbool.h>

#include "fab/storvsc.h"
#include "fab/vmbus_ic.h"

#define SHORT_TIMEOUT VMBUS_GUEST_MS(1000)
#define IO_TIMEOUT    VMBUS_GUEST_MS(3000)
#define TAP_SLOTS     64

static unsigned int ncases, nunexpected;
static uint64_t ram_pages;
static uint32_t storage_relid, hb_relid;

static void report(const char *name, bool ok, const char *fmt, ...) FAB_PRINTF(3, 4);

static void report(const char *name, bool ok, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	ncases++;
	if (!ok)
		nunexpected++;
	printf("vmbus_hostile: %s: %s %s\n", name, what, ok ? "ok" : "UNEXPECTED");
}

/* ---- a tap on host messages ---------------------------------------------------- */

/*
 * Raw requests posted behind the client's back get answers the client
 * rejects as unexpected; the tap keeps the last TAP_SLOTS host messages so
 * that the cases can still see them.
 */
struct tap_msg {
	uint32_t len;
	_Alignas(8) uint8_t b[VMBUS_MSG_MAX];
};

static struct {
	struct tap_msg m[TAP_SLOTS];
	uint64_t count;
} tap;

static void tap_cb(void *ctx, const void *msg, size_t len)
{
	struct tap_msg *t = &tap.m[tap.count % TAP_SLOTS];

	(void)ctx;
	memset(t->b, 0, sizeof(t->b));
	memcpy(t->b, msg, len);
	t->len = (uint32_t)len;
	tap.count++;
}

static uint32_t rd32(const uint8_t *p, uint32_t off)
{
	uint32_t v;

	memcpy(&v, p + off, sizeof(v));
	return v;
}

/* A host message of type with the u32 at key_off equal to key, received
 * after mark. */
struct tap_query {
	uint64_t mark;
	uint32_t type;
	uint32_t key_off;
	uint32_t key;
	const struct tap_msg *found;
};

static bool tap_match(void *ctx)
{
	struct tap_query *q = ctx;
	uint64_t first = tap.count > TAP_SLOTS ? tap.count - TAP_SLOTS : 0;

	for (uint64_t i = q->mark > first ? q->mark : first; i < tap.count; i++) {
		const struct tap_msg *t = &tap.m[i % TAP_SLOTS];

		if (t->len >= q->key_off + 4 && rd32(t->b, 0) == q->type &&
		    rd32(t->b, q->key_off) == q->key) {
			q->found = t;
			return true;
		}
	}
	return false;
}

static const struct tap_msg *tap_wait(uint64_t mark, uint32_t type, uint32_t key_off, uint32_t key,
				      uint64_t timeout)
{
	struct tap_query q = { mark, type, key_off, key, NULL };

	return vmbus_guest_wait(tap_match, &q, timeout) ? NULL : q.found;
}

/* ---- helpers ------------------------------------------------------------------------ */

static int post_raw(const void *msg, size_t len)
{
	return fab_post_message(vmbus_client_msg_conn_id(vmbus_guest_client()),
				VMBUS_HV_MESSAGE_TYPE, msg, len);
}

/* The control path still works: a one-page GPADL is created and torn down. */
static bool bus_alive(const char *after)
{
	static uint8_t *page;
	uint32_t id, st = 0;
	uint64_t pfn;
	int rc;

	if (!page)
		page = fab_alloc_pages(1);
	pfn = (uintptr_t)page >> 12;
	rc = vmbus_guest_gpadl_create(hb_relid, &pfn, 1, VMBUS_GUEST_TIMEOUT, &id, &st);
	if (!rc)
		rc = vmbus_guest_gpadl_teardown(id, VMBUS_GUEST_TIMEOUT);
	if (rc) {
		report("bus_alive", false, "after %s: GPADL round trip failed: %d (status 0x%x)",
		       after, rc, st);
		return false;
	}
	return true;
}

/* ---- GPADL cases -------------------------------------------------------------------- */

static void gpadl_case(const char *name, const uint64_t *pfns, uint32_t n)
{
	uint32_t id = 0, st = 0;
	int rc = vmbus_guest_gpadl_create(hb_relid, pfns, n, VMBUS_GUEST_TIMEOUT, &id, &st);

	if (rc == 0) {
		report(name, false, "GPADL accepted");
		vmbus_guest_gpadl_teardown(id, VMBUS_GUEST_TIMEOUT);
		return;
	}
	report(name, rc == -EIO && st != 0, "GPADL_CREATED status 0x%x (%d)", st, rc);
}

static void gpadl_cases(void)
{
	uint64_t pfns[40];
	uint64_t good = (uintptr_t)fab_alloc_pages(1) >> 12;

	pfns[0] = ram_pages;
	pfns[1] = ram_pages + 1;
	gpadl_case("gpadl_pfn_beyond_ram", pfns, 2);
	pfns[0] = 1ull << 40;
	gpadl_case("gpadl_pfn_huge", pfns, 1);
	pfns[0] = ~0ull >> 12; /* pfn << 12 wraps around */
	gpadl_case("gpadl_pfn_wraps", pfns, 1);
	/* Beyond RAM only in a GPADL_BODY, after 26 good PFNs. */
	for (int i = 0; i < 40; i++)
		pfns[i] = good;
	pfns[39] = ram_pages + 100;
	gpadl_case("gpadl_pfn_beyond_ram_in_body", pfns, 40);
}

/* A GPADL_HEADER announcing 30 PFNs followed by bodies carrying more. */
static void gpadl_overflow_case(void)
{
	uint8_t buf[VMBUS_MSG_MAX];
	uint64_t pfns[VMBUS_GPADL_BODY_MAX_PFNS];
	uint64_t good = (uintptr_t)fab_alloc_pages(1) >> 12;
	const uint32_t id = 0x7e570001;
	const struct tap_msg *t;
	uint64_t mark = tap.count;
	uint32_t used;
	size_t len;

	for (int i = 0; i < VMBUS_GPADL_BODY_MAX_PFNS; i++)
		pfns[i] = good;
	vmbus_build_gpadl_header(buf, sizeof(buf), hb_relid, id, pfns, 30, &used, &len);
	post_raw(buf, len);
	vmbus_build_gpadl_body(buf, sizeof(buf), id, pfns, VMBUS_GPADL_BODY_MAX_PFNS, &used, &len);
	post_raw(buf, len);
	t = tap_wait(mark, VMBUS_MSG_GPADL_CREATED, 12, id, SHORT_TIMEOUT);
	if (!t)
		report("gpadl_body_overflow", false, "no GPADL_CREATED");
	else
		report("gpadl_body_overflow", rd32(t->b, 16) != 0, "GPADL_CREATED status 0x%x",
		       rd32(t->b, 16));
	if (t && rd32(t->b, 16) == 0) {
		vmbus_build_gpadl_teardown(buf, sizeof(buf), hb_relid, id, &len);
		post_raw(buf, len);
	}

	/* A body for an id that has no header: dropped. */
	vmbus_build_gpadl_body(buf, sizeof(buf), 0x7e570002, pfns, 4, &used, &len);
	report("gpadl_body_without_header", true, "post status 0x%x", post_raw(buf, len));
	bus_alive("GPADL body attacks");
}

/* ---- open cases ---------------------------------------------------------------------- */

/* A GPADL of npages good pages on relid, opened with downstream offset off. */
static void open_case(const char *name, uint32_t relid, uint32_t npages, uint32_t off)
{
	uint8_t *mem = fab_alloc_pages(npages);
	uint64_t pfns[16];
	uint32_t id = 0, st = 0;
	int rc;

	if (!mem || npages > 16) {
		report(name, false, "no memory");
		return;
	}
	for (uint32_t i = 0; i < npages; i++)
		pfns[i] = ((uintptr_t)mem >> 12) + i;
	rc = vmbus_guest_gpadl_create(relid, pfns, npages, VMBUS_GUEST_TIMEOUT, &id, &st);
	if (rc) {
		report(name, false, "setup GPADL failed: %d", rc);
		return;
	}
	rc = vmbus_guest_open_raw(relid, id, off, NULL, 0, VMBUS_GUEST_TIMEOUT, &st);
	if (rc == 0) {
		report(name, false, "open of %u pages at offset %u accepted", npages, off);
		vmbus_client_close(vmbus_guest_client(), relid);
	} else {
		report(name, rc == -EIO && st != 0,
		       "open of %u pages at offset %u: OPENCHANNEL_RESULT 0x%x (%d)", npages, off,
		       st, rc);
	}
	if (vmbus_guest_gpadl_teardown(id, VMBUS_GUEST_TIMEOUT))
		report(name, false, "GPADL teardown afterwards failed");
	else
		free(mem);
}

/* OPENCHANNEL posted raw (the client would refuse to send it); the answer is
 * taken from the tap. want_answer: a refusal must come. */
static void open_raw_case(const char *name, uint32_t relid, uint32_t gpadl, uint32_t off,
			  bool want_answer)
{
	uint8_t buf[VMBUS_MSG_MAX];
	const struct tap_msg *t;
	uint64_t mark = tap.count;
	size_t len;

	vmbus_build_open_channel(buf, sizeof(buf), relid, relid, gpadl, 0, off, NULL, 0, &len);
	post_raw(buf, len);
	t = tap_wait(mark, VMBUS_MSG_OPENCHANNEL_RESULT, 8, relid, SHORT_TIMEOUT);
	if (!t) {
		report(name, !want_answer, "no OPENCHANNEL_RESULT");
		return;
	}
	report(name, rd32(t->b, 16) != 0, "OPENCHANNEL_RESULT status 0x%x", rd32(t->b, 16));
	if (rd32(t->b, 16) == 0) {
		vmbus_build_close_channel(buf, sizeof(buf), relid, &len);
		post_raw(buf, len);
	}
}

static void open_cases(void)
{
	uint8_t *mem = fab_alloc_pages(8);
	uint64_t pfns[8];
	uint32_t id = 0, st = 0;

	open_case("open_ring_2_pages", storage_relid, 2, 1);
	open_case("open_recv_ring_control_only", storage_relid, 8, 7);
	open_case("open_send_ring_control_only", storage_relid, 8, 1);
	open_case("open_offset_past_gpadl", storage_relid, 8, 8);
	open_case("open_offset_far_past_gpadl", storage_relid, 8, 0x7fffffff);

	/* Offset 0 (no send ring): the client refuses to send it. */
	for (int i = 0; i < 8; i++)
		pfns[i] = ((uintptr_t)mem >> 12) + i;
	if (vmbus_guest_gpadl_create(storage_relid, pfns, 8, VMBUS_GUEST_TIMEOUT, &id, &st)) {
		report("open_offset_zero", false, "setup GPADL failed");
		return;
	}
	open_raw_case("open_offset_zero", storage_relid, id, 0, true);
	vmbus_guest_gpadl_teardown(id, VMBUS_GUEST_TIMEOUT);

	/* A ring GPADL that belongs to another channel. */
	if (vmbus_guest_gpadl_create(hb_relid, pfns, 8, VMBUS_GUEST_TIMEOUT, &id, &st)) {
		report("open_foreign_gpadl", false, "setup GPADL failed");
		return;
	}
	open_raw_case("open_foreign_gpadl", storage_relid, id, 4, true);
	vmbus_guest_gpadl_teardown(id, VMBUS_GUEST_TIMEOUT);
	open_raw_case("open_unknown_gpadl", storage_relid, 0x7e57dead, 4, true);
	open_raw_case("open_unknown_relid", 1999, 0x7e57dead, 4, false);
	bus_alive("open attacks");
}

/* ---- control messages ------------------------------------------------------------ */

static void message_cases(void)
{
	uint8_t buf[VMBUS_MSG_MAX];
	uint32_t conn = vmbus_client_msg_conn_id(vmbus_guest_client());
	unsigned int st;

	memset(buf, 0, sizeof(buf));
	buf[0] = 99; /* msgtype 99: unknown */
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, 8);
	report("msg_unknown_type", true, "post status 0x%x", st);
	memset(buf, 0xff, sizeof(buf));
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, sizeof(buf));
	report("msg_garbage_240_bytes", true, "post status 0x%x", st);
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, 0);
	report("msg_empty", true, "post status 0x%x", st);
	memset(buf, 0, sizeof(buf));
	buf[0] = VMBUS_MSG_OPENCHANNEL; /* far shorter than an OPENCHANNEL */
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, 12);
	report("msg_truncated_open", true, "post status 0x%x", st);
	buf[0] = VMBUS_MSG_VERSION_RESPONSE; /* host-to-guest type sent to the host */
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, 16);
	report("msg_wrong_direction", true, "post status 0x%x", st);
	buf[0] = VMBUS_MSG_INITIATE_CONTACT; /* while connected */
	st = fab_post_message(conn, VMBUS_HV_MESSAGE_TYPE, buf, 40);
	report("msg_contact_while_connected", true, "post status 0x%x", st);

	st = fab_post_message(conn, 0, buf, 8);
	report("msg_synic_type_0", st != HV_STATUS_SUCCESS, "post status 0x%x", st);
	st = fab_post_message(conn, 0x80000001u, buf, 8);
	report("msg_synic_type_hypervisor", st != HV_STATUS_SUCCESS, "post status 0x%x", st);
	st = fab_post_message(0x123456, VMBUS_HV_MESSAGE_TYPE, buf, 8);
	report("msg_unknown_connection", st == HV_STATUS_INVALID_CONNECTION_ID, "post status 0x%x",
	       st);
	st = fab_signal_event(0x123456, 0);
	report("signal_unknown_connection", st == HV_STATUS_INVALID_CONNECTION_ID,
	       "signal status 0x%x", st);
	fab_signal_doorbell(0x123456); /* nothing listens: no status, must not hurt */
	bus_alive("control message attacks");
}

/* ---- storage channel attacks ------------------------------------------------------ */

/* Keeps polling for a while. */
static void settle(uint64_t t)
{
	uint64_t end = fab_ref_time() + t;

	while (fab_ref_time() < end)
		vmbus_guest_idle(VMBUS_GUEST_MS(10));
}

static struct storvsc *disk_open(const char *name)
{
	/* Short timeouts: after an attack the host may never answer. */
	struct storvsc_cfg cfg = { .timeout = IO_TIMEOUT };
	struct storvsc *d;
	int rc = storvsc_open(storage_relid, &cfg, &d);

	if (rc) {
		report(name, false, "storage open failed: %d", rc);
		return NULL;
	}
	return d;
}

/* One synchronous-looking read through the async API with a short timeout:
 * 0, the completion's status, or -ETIMEDOUT. */
static int read_once(struct storvsc *d, uint64_t lba, void *buf)
{
	struct storvsc_completion c;
	int rc = storvsc_submit(d, STORVSC_READ, lba, 8, buf, NULL);

	if (rc)
		return rc;
	rc = storvsc_wait(d, &c, 1, IO_TIMEOUT);
	return rc < 0 ? rc : c.status;
}

/* Closing must work whatever state the attack left: the host must still
 * answer the GPADL teardown. */
static void disk_close(const char *name, struct storvsc *d)
{
	int rc = storvsc_close(d);

	if (rc)
		report(name, false, "close/GPADL teardown afterwards failed: %d", rc);
}

enum ring_attack { RING_WRITE_INDEX, RING_GARBAGE_PACKET, RING_RECV_READ_INDEX };

static void ring_case(const char *name, enum ring_attack how, uint8_t *io)
{
	struct storvsc *d = disk_open(name);
	struct vmbus_ring_ctl *out, *in;
	uint32_t sp, wi;
	uint8_t *mem;
	int rc;

	if (!d)
		return;
	mem = vmbus_guest_chan_ring_mem(storvsc_chan(d), &sp, NULL);
	out = (struct vmbus_ring_ctl *)mem;
	in = (struct vmbus_ring_ctl *)(mem + (size_t)sp * 4096);
	switch (how) {
	case RING_WRITE_INDEX:
		/* Past the end and unaligned. */
		__atomic_store_n(&out->write_index, 0xfffffff3u, __ATOMIC_RELEASE);
		break;
	case RING_GARBAGE_PACKET:
		/* A descriptor claiming 512 KiB, published as an 64-byte packet. */
		wi = __atomic_load_n(&out->write_index, __ATOMIC_RELAXED);
		memset(mem + 4096 + wi, 0, 64);
		mem[4096 + wi] = VM_PKT_DATA_INBAND;
		mem[4096 + wi + 2] = 2;	   /* offset8 */
		mem[4096 + wi + 4] = 0xff; /* len8 = 0xffff */
		mem[4096 + wi + 5] = 0xff;
		__atomic_store_n(&out->write_index, wi + 64, __ATOMIC_RELEASE);
		break;
	case RING_RECV_READ_INDEX:
		/* The host writes this ring: lie about how far we read. */
		__atomic_store_n(&in->read_index, 0x7ffffff8u, __ATOMIC_RELEASE);
		break;
	}
	vmbus_guest_chan_signal(storvsc_chan(d));
	/* Give the host time to look before our next packet overwrites the
	 * damage, then provoke traffic in both directions. */
	settle(VMBUS_GUEST_MS(200));
	rc = read_once(d, 0, io);
	report(name, true, "host reaction: read %s (%d)",
	       rc == 0		  ? "succeeded (attack tolerated)"
	       : rc == -ETIMEDOUT ? "never completed (channel failed by host)"
	       : rc == -EPROTO	  ? "failed: channel failed"
				  : "completed with an error",
	       rc);
	disk_close(name, d);
}

static void oversize_case(void)
{
	struct vmbus_guest_chan_cfg cfg = { .send_pages = 32, .recv_pages = 32 };
	struct vmbus_guest_chan *ch;
	uint32_t len = 80u << 10; /* above the host's 64 KiB limit */
	uint8_t *big = calloc(1, len);
	struct vstor_packet *pkt = (struct vstor_packet *)big;
	int rc;

	if (!big) {
		report("packet_oversized", false, "no memory");
		return;
	}
	rc = vmbus_guest_chan_open(storage_relid, &cfg, &ch);
	if (rc) {
		report("packet_oversized", false, "open of 32+32 pages failed: %d", rc);
		free(big);
		return;
	}
	pkt->operation = VSTOR_OPERATION_BEGIN_INITIALIZATION;
	pkt->flags = VSTOR_FLAG_REQUEST_COMPLETION;
	rc = vmbus_guest_send_inband(ch, 1, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, big, len,
				     0);
	if (rc) {
		report("packet_oversized", false, "could not even send it: %d", rc);
	} else {
		/* The host may fail the channel (no answer) or reject the
		 * packet; either way it must not take it. */
		uint8_t reply[256];
		size_t n = 0;

		for (int i = 0; i < 50; i++) {
			vmbus_guest_poll();
			if (vmbus_guest_recv(ch, reply, sizeof(reply), &n) == 0)
				break;
			n = 0;
			fab_wait(VMBUS_GUEST_MS(20));
		}
		report("packet_oversized", true, "%u-byte packet: %s", len,
		       n ? "answered" : "no answer (channel failed by host)");
	}
	rc = vmbus_guest_chan_close(ch);
	if (rc)
		report("packet_oversized", false, "close afterwards failed: %d", rc);
	free(big);
}

/* A READ/WRITE(16) of 8 blocks whose data range is given raw. */
static void gpa_case(const char *name, struct storvsc *d, bool write, uint32_t byte_offset,
		     const uint64_t *pfns, uint32_t dtl, uint32_t range_bytes)
{
	struct vmbus_gpa_range_desc r = {
		.byte_count = range_bytes,
		.byte_offset = byte_offset,
		.pfns = pfns,
	};
	uint8_t cdb[16] = { write ? SCSI_OP_WRITE_16 : SCSI_OP_READ_16 };
	struct storvsc_completion c;
	int rc;

	cdb[13] = (uint8_t)(dtl / 512); /* blocks, LBA 0 */
	rc = storvsc_submit_scsi(d, cdb, 16, write ? VMSCSI_WRITE_TYPE : VMSCSI_READ_TYPE, &r, dtl,
				 NULL);
	if (rc) {
		report(name, rc == -EPROTO, "submit failed: %d", rc);
		return;
	}
	rc = storvsc_wait(d, &c, 1, IO_TIMEOUT);
	if (rc < 0) {
		report(name, true, "no completion (%d): host failed the channel", rc);
		return;
	}
	if (c.status == -EPROTO) {
		report(name, true, "channel failed");
		return;
	}
	report(name, c.status != 0,
	       "srb_status 0x%02x scsi_status 0x%02x sense %x/%02x/%02x moved %u", c.srb_status,
	       c.scsi_status, c.sense_key, c.asc, c.ascq, c.bytes);
}

static void gpa_cases(uint8_t *io)
{
	struct storvsc *d = disk_open("gpa_direct");
	uint64_t pfns[3];
	int rc;

	if (!d)
		return;
	pfns[0] = ram_pages + 16;
	pfns[1] = ram_pages + 17;
	gpa_case("gpa_read_beyond_ram", d, false, 0, pfns, 4096, 4096);
	if (storvsc_inflight(d) || vmbus_guest_chan_failed(storvsc_chan(d)))
		goto reopen;
	gpa_case("gpa_write_beyond_ram", d, true, 0, pfns, 4096, 4096);
	if (storvsc_inflight(d) || vmbus_guest_chan_failed(storvsc_chan(d)))
		goto reopen;
	/* The last page of RAM, then beyond. A write: the host may well copy
	 * the first half before it notices, and the last page of RAM is
	 * vCPU 0's stack, which a read would overwrite. */
	pfns[0] = ram_pages - 1;
	pfns[1] = ram_pages;
	gpa_case("gpa_write_straddles_ram_end", d, true, 2048, pfns, 4096, 4096);
	if (storvsc_inflight(d) || vmbus_guest_chan_failed(storvsc_chan(d)))
		goto reopen;
	pfns[0] = 1ull << 52;
	pfns[1] = ~0ull >> 12;
	gpa_case("gpa_read_huge_pfns", d, false, 0, pfns, 4096, 4096);
	if (storvsc_inflight(d) || vmbus_guest_chan_failed(storvsc_chan(d)))
		goto reopen;
	pfns[0] = (uintptr_t)io >> 12;
	gpa_case("gpa_dtl_exceeds_range", d, false, 0, pfns, 8192, 512);
	goto control;

reopen:
	disk_close("gpa_direct", d);
	d = disk_open("gpa_direct_reopen");
	if (!d)
		return;
control:
	rc = storvsc_read(d, 0, 8, io);
	report("gpa_control_read", rc == 0, "ordinary read afterwards: %d", rc);
	disk_close("gpa_direct", d);
}

static void storage_cases(void)
{
	uint8_t *io = fab_alloc_pages(2);
	struct storvsc *d;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	ring_case("ring_write_index_past_end", RING_WRITE_INDEX, io);
	ring_case("ring_garbage_descriptor", RING_GARBAGE_PACKET, io);
	ring_case("ring_recv_read_index_garbage", RING_RECV_READ_INDEX, io);
	oversize_case();
	gpa_cases(io);

	/* Opening an open channel again, behind the client's back: the host
	 * must not answer (it would look like the result of the first open)
	 * and the channel must keep working. */
	d = disk_open("open_twice");
	if (d) {
		uint64_t mark = tap.count;

		vmbus_build_open_channel(buf, sizeof(buf), storage_relid, storage_relid,
					 vmbus_guest_chan_gpadl(storvsc_chan(d)), 0, 8, NULL, 0,
					 &len);
		post_raw(buf, len);
		rc = tap_wait(mark, VMBUS_MSG_OPENCHANNEL_RESULT, 8, storage_relid,
			      VMBUS_GUEST_MS(300)) != NULL;
		report("open_twice", !rc, "%s", rc ? "answered" : "ignored");
		rc = storvsc_read(d, 0, 8, io);
		report("open_twice_still_works", rc == 0, "read afterwards: %d", rc);
		disk_close("open_twice", d);
	}

	/* And after all that, a clean open, write, read, flush. */
	d = disk_open("final_storage");
	if (d) {
		memset(io, 0x5a, 4096);
		rc = storvsc_write(d, 8, 8, io);
		if (!rc) {
			memset(io, 0, 4096);
			rc = storvsc_read(d, 8, 8, io);
		}
		if (!rc && (io[0] != 0x5a || io[4095] != 0x5a))
			rc = -EILSEQ;
		if (!rc)
			rc = storvsc_flush(d);
		report("final_storage", rc == 0, "write/read/flush: %d", rc);
		disk_close("final_storage", d);
	}
}

int main(int argc, char **argv)
{
	static const struct vmbus_guid scsi_type = { VSTOR_SCSI_GUID_BYTES };
	static const struct vmbus_guid hb_type = { IC_HEARTBEAT_GUID_BYTES };
	const struct vmbus_client_chan *offer;
	struct vmbus_guest_stats st;
	int rc;

	ram_pages = fab_bootinfo()->ram_bytes >> 12;
	rc = vmbus_guest_init(VMBUS_GUEST_TIMEOUT);
	if (rc) {
		printf("vmbus_hostile: VMBus connect failed: %d\n", rc);
		return 1;
	}
	vmbus_guest_set_msg_tap(tap_cb, NULL);
	if (vmbus_guest_find_offer(&hb_type, 0, &offer)) {
		printf("vmbus_hostile: no heartbeat offer to attach GPADLs to\n");
		return 1;
	}
	hb_relid = offer->relid;
	if (!vmbus_guest_find_offer(&scsi_type, 0, &offer))
		storage_relid = offer->relid;

	gpadl_cases();
	gpadl_overflow_case();
	message_cases();
	if (storage_relid) {
		open_cases();
		storage_cases();
	} else {
		printf("vmbus_hostile: no storage offer (run with --disk): storage cases "
		       "skipped\n");
	}

	rc = vmbus_guest_unload(VMBUS_GUEST_TIMEOUT);
	report("unload", rc == 0, "UNLOAD_RESPONSE: %d", rc);
	vmbus_guest_get_stats(&st);
	printf("vmbus_hostile: %llu host messages (%llu refused by the client, last %d), %llu "
	       "posts "
	       "(%llu failed)\n",
	       (unsigned long long)st.msgs, (unsigned long long)st.msgs_refused, st.last_rx_error,
	       (unsigned long long)st.posts, (unsigned long long)st.post_errors);
	printf("vmbus_hostile: %u cases, %u unexpected\n", ncases, nunexpected);
	printf("vmbus_hostile: done\n");
	return nunexpected ? 1 : 0;
}
