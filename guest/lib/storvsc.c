// SPDX-License-Identifier: MIT
/*
 * Storage VSC: VSTOR handshake, SCSI requests in STORVSC_MAX_QUEUE slots and
 * their completions. See fab/storvsc.h.
 *
 * Slot life cycle: FREE -> INFLIGHT (submitted) -> DONE (completion in, not
 * yet collected) -> FREE. A synchronous request that timed out becomes
 * ABANDONED and is freed when its completion finally arrives, so that a
 * late answer is never taken for a newer request in the same slot.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/storvsc.h"

#define SLOT_FREE      0
#define SLOT_INFLIGHT  1
#define SLOT_DONE      2
#define SLOT_ABANDONED 3

#define PAGE_SHIFT	     12
#define PAGE_SIZE	     4096u
#define DEFAULT_SEND_PAGES   32
#define DEFAULT_RECV_PAGES   16
#define DEFAULT_MAX_TRANSFER (64u << 10) /* if the host names none */
#define SEND_TIMEOUT	     VMBUS_GUEST_MS(5000)
#define SRB_TIMEOUT_SECONDS  60	 /* vm_srb.time_out_value, as Linux */
#define RX_BUF_BYTES	     256 /* a completion: descriptor + 64-byte vstor_packet */
#define MAX_ERROR_PRINTS     20

/* Newest first, as Linux tries them. */
static const uint16_t vstor_versions[] = {
	VMSTOR_PROTO_VERSION_WIN10, VMSTOR_PROTO_VERSION_WIN8_1, VMSTOR_PROTO_VERSION_WIN8,
	VMSTOR_PROTO_VERSION_WIN7,  VMSTOR_PROTO_VERSION_WIN6,
};

struct slot {
	uint8_t state;
	bool sync;	/* completion goes to a waiting caller, not the queue */
	bool srb;	/* EXECUTE_SRB (else a handshake packet) */
	uint8_t opcode; /* cdb[0], for error messages */
	uint64_t lba;
	void *cookie;
	struct storvsc_completion comp;
	struct vstor_packet reply;
};

struct storvsc {
	struct vmbus_guest_chan *ch;
	struct storvsc_info info;
	uint64_t timeout;
	uint32_t pkt_size; /* vstor_packet bytes we send */
	bool failed;	   /* in-flight requests were failed after a channel failure */
	unsigned int inflight;
	unsigned int errors_printed;
	uint64_t bad_packets;
	uint64_t *pfns; /* scratch for one request's PFN list */
	uint32_t max_pfns;
	struct slot slots[STORVSC_MAX_QUEUE];
	/* Finished asynchronous requests, in completion order. */
	uint8_t done[STORVSC_MAX_QUEUE];
	unsigned int done_head, done_count;
	_Alignas(8) uint8_t rx[RX_BUF_BYTES];
};

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ---- completions ------------------------------------------------------------- */

static void print_error(struct storvsc *s, const struct slot *sl, const uint8_t *sense,
			uint32_t sense_len)
{
	const struct storvsc_completion *c = &sl->comp;

	if (s->errors_printed >= MAX_ERROR_PRINTS)
		return;
	if (++s->errors_printed == MAX_ERROR_PRINTS)
		printf("storvsc: further errors not printed\n");
	if (!sl->srb) {
		printf("storvsc: control request failed: vstor status 0x%x\n", c->vstor_status);
		return;
	}
	printf("storvsc: scsi op 0x%02x lba %llu failed: srb_status 0x%02x scsi_status 0x%02x "
	       "vstor 0x%x",
	       sl->opcode, (unsigned long long)sl->lba, c->srb_status, c->scsi_status,
	       c->vstor_status);
	if (sense_len) {
		printf(" sense key 0x%x asc 0x%02x ascq 0x%02x [", c->sense_key, c->asc, c->ascq);
		for (uint32_t i = 0; i < sense_len; i++)
			printf("%s%02x", i ? " " : "", sense[i]);
		printf("]");
	}
	printf("\n");
}

/* Fills sl->comp from the reply packet in sl->reply. */
static void decode_reply(struct storvsc *s, struct slot *sl)
{
	const struct vstor_packet *p = &sl->reply;
	struct storvsc_completion *c = &sl->comp;
	const uint8_t *sense = p->vm_srb.sense_data;
	uint32_t sense_len = 0;

	memset(c, 0, sizeof(*c));
	c->cookie = sl->cookie;
	c->vstor_status = p->status;
	if (p->operation != VSTOR_OPERATION_COMPLETE_IO) {
		c->status = -EPROTO;
		return;
	}
	if (!sl->srb) {
		c->status = p->status == VSTOR_STATUS_SUCCESS ? 0 : -EIO;
		/* Version refusals are part of the negotiation: not printed. */
		return;
	}
	c->srb_status = p->vm_srb.srb_status;
	c->scsi_status = p->vm_srb.scsi_status;
	c->bytes = p->vm_srb.data_transfer_length;
	if (c->srb_status & SRB_STATUS_AUTOSENSE_VALID) {
		sense_len = p->vm_srb.sense_info_length;
		if (sense_len > VMSCSI_SENSE_BUFFER_SIZE)
			sense_len = VMSCSI_SENSE_BUFFER_SIZE;
		if ((sense[0] & 0x7e) == SCSI_SENSE_DESC_CURRENT && sense_len >= 4) {
			c->sense_key = sense[1] & 0xf;
			c->asc = sense[2];
			c->ascq = sense[3];
		} else if ((sense[0] & 0x7e) == SCSI_SENSE_FIXED_CURRENT && sense_len >= 14) {
			c->sense_key = sense[2] & 0xf;
			c->asc = sense[12];
			c->ascq = sense[13];
		}
	}
	if (SRB_STATUS(c->srb_status) == SRB_STATUS_SUCCESS && c->scsi_status == SCSI_STATUS_GOOD) {
		c->status = 0;
		return;
	}
	c->status = -EIO;
	print_error(s, sl, sense, sense_len);
}

/* The slot's request is over: hand it to its waiter or the queue. */
static void finish(struct storvsc *s, unsigned int idx)
{
	struct slot *sl = &s->slots[idx];

	if (sl->state == SLOT_ABANDONED) {
		sl->state = SLOT_FREE;
		s->inflight--;
		return;
	}
	sl->state = SLOT_DONE;
	if (!sl->sync) {
		s->done[(s->done_head + s->done_count) % STORVSC_MAX_QUEUE] = (uint8_t)idx;
		s->done_count++;
	}
}

static void on_packet(struct storvsc *s, const uint8_t *pkt, size_t len)
{
	struct vmbus_pkt_view v;
	struct slot *sl;
	uint64_t idx;

	if (vmbus_pkt_parse(pkt, len, &v)) {
		s->bad_packets++;
		return;
	}
	if (v.type != VM_PKT_COMP) {
		/* Unsolicited host packets (ENUMERATE_BUS, REMOVE_DEVICE; trans
		 * id 0) ask for a rescan: nothing to rescan with one LUN. */
		s->bad_packets++;
		return;
	}
	idx = v.trans_id - 1;
	if (v.trans_id == 0 || idx >= STORVSC_MAX_QUEUE) {
		s->bad_packets++;
		return;
	}
	sl = &s->slots[idx];
	if (sl->state != SLOT_INFLIGHT && sl->state != SLOT_ABANDONED) {
		s->bad_packets++; /* a completion nobody waits for */
		return;
	}
	/* Replies are as long as our packets; a short one reads as zeros. */
	memset(&sl->reply, 0, sizeof(sl->reply));
	memcpy(&sl->reply, v.payload,
	       v.payload_len < sizeof(sl->reply) ? v.payload_len : sizeof(sl->reply));
	if (sl->state == SLOT_INFLIGHT)
		decode_reply(s, sl);
	finish(s, (unsigned int)idx);
}

/* The channel failed: nothing will complete any more, so fail everything. */
static void fail_all(struct storvsc *s)
{
	if (s->failed)
		return;
	s->failed = true;
	printf("storvsc: channel failed, %u request(s) in flight failed\n", s->inflight);
	for (unsigned int i = 0; i < STORVSC_MAX_QUEUE; i++) {
		struct slot *sl = &s->slots[i];

		if (sl->state != SLOT_INFLIGHT && sl->state != SLOT_ABANDONED)
			continue;
		memset(&sl->comp, 0, sizeof(sl->comp));
		sl->comp.cookie = sl->cookie;
		sl->comp.status = -EPROTO;
		finish(s, i);
	}
}

static void chan_cb(struct vmbus_guest_chan *ch, void *ctx)
{
	struct storvsc *s = ctx;
	size_t len;
	int rc;

	for (;;) {
		rc = vmbus_guest_recv(ch, s->rx, sizeof(s->rx), &len);
		if (rc == -EMSGSIZE) {
			/* No completion is this large: take it out and drop it. */
			uint8_t *big = malloc(len);

			if (!big)
				return;
			rc = vmbus_guest_recv(ch, big, len, &len);
			free(big);
			s->bad_packets++;
			if (rc)
				break;
			continue;
		}
		if (rc)
			break;
		on_packet(s, s->rx, len);
	}
	if (rc == -EPROTO)
		fail_all(s);
}

/* Polls the bus and notices a failed channel. */
static void storvsc_pump(struct storvsc *s)
{
	vmbus_guest_poll();
	if (vmbus_guest_chan_failed(s->ch))
		fail_all(s);
}

/* ---- submission -------------------------------------------------------------- */

static int slot_alloc(struct storvsc *s)
{
	for (unsigned int i = 0; i < STORVSC_MAX_QUEUE; i++)
		if (s->slots[i].state == SLOT_FREE)
			return (int)i;
	return -EBUSY;
}

/*
 * Sends pkt (s->pkt_size bytes) for a fresh slot; with a range as a
 * GPA-direct packet. Returns the slot index or an error.
 */
static int send_request(struct storvsc *s, const struct vstor_packet *pkt,
			const struct vmbus_gpa_range_desc *range, bool sync, void *cookie)
{
	struct slot *sl;
	int idx, rc;

	if (s->failed || vmbus_guest_chan_failed(s->ch))
		return -EPROTO;
	idx = slot_alloc(s);
	if (idx < 0)
		return idx;
	sl = &s->slots[idx];
	memset(sl, 0, sizeof(*sl));
	sl->state = SLOT_INFLIGHT;
	sl->sync = sync;
	sl->srb = pkt->operation == VSTOR_OPERATION_EXECUTE_SRB;
	sl->opcode = pkt->vm_srb.cdb[0];
	sl->cookie = cookie;
	if (sl->srb && (sl->opcode == SCSI_OP_READ_16 || sl->opcode == SCSI_OP_WRITE_16))
		sl->lba = get_be64(&pkt->vm_srb.cdb[2]);
	/* Counted before sending: the send may poll, and a completion
	 * (possible once the host has the packet) decrements. */
	s->inflight++;
	if (range)
		rc = vmbus_guest_send_gpa_direct(s->ch, (uint64_t)idx + 1,
						 VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, range,
						 1, pkt, s->pkt_size, SEND_TIMEOUT);
	else
		rc = vmbus_guest_send_inband(s->ch, (uint64_t)idx + 1,
					     VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, pkt,
					     s->pkt_size, SEND_TIMEOUT);
	if (rc) {
		sl->state = SLOT_FREE;
		s->inflight--;
		return rc;
	}
	return idx;
}

static void srb_init(const struct storvsc *s, struct vstor_packet *pkt, const uint8_t *cdb,
		     uint8_t cdb_len, uint8_t data_in, uint32_t dtl)
{
	struct vmscsi_request *r = &pkt->vm_srb;

	memset(pkt, 0, sizeof(*pkt));
	pkt->operation = VSTOR_OPERATION_EXECUTE_SRB;
	pkt->flags = VSTOR_FLAG_REQUEST_COMPLETION;
	r->length = s->pkt_size == VSTOR_PACKET_SIZE ? VMSCSI_REQUEST_SIZE
						     : VMSCSI_REQUEST_SIZE_PRE_WIN8;
	r->lun = 0;
	r->cdb_length = cdb_len;
	r->sense_info_length = s->info.protocol >= VMSTOR_PROTO_VERSION_WIN8
				       ? VMSCSI_SENSE_BUFFER_SIZE
				       : VMSCSI_SENSE_BUFFER_SIZE_WIN7;
	r->data_in = data_in;
	r->data_transfer_length = dtl;
	memcpy(r->cdb, cdb, cdb_len);
	/* Win8 extension (cut off with 48-byte packets). */
	r->srb_flags = SRB_FLAGS_DISABLE_SYNCH_TRANSFER;
	if (dtl && data_in == VMSCSI_READ_TYPE)
		r->srb_flags |= SRB_FLAGS_DATA_IN;
	else if (dtl && data_in == VMSCSI_WRITE_TYPE)
		r->srb_flags |= SRB_FLAGS_DATA_OUT;
	r->time_out_value = SRB_TIMEOUT_SECONDS;
}

static int submit_scsi(struct storvsc *s, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in,
		       const struct vmbus_gpa_range_desc *range, uint32_t dtl, bool sync,
		       void *cookie)
{
	struct vstor_packet pkt;

	if (!cdb || cdb_len == 0 || cdb_len > VMSCSI_CDB_SIZE)
		return -EINVAL;
	srb_init(s, &pkt, cdb, cdb_len, data_in, range ? dtl : 0);
	return send_request(s, &pkt, range, sync, cookie);
}

int storvsc_submit_scsi(struct storvsc *s, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in,
			const struct vmbus_gpa_range_desc *range, uint32_t dtl, void *cookie)
{
	int rc = submit_scsi(s, cdb, cdb_len, data_in, range, dtl, false, cookie);

	return rc < 0 ? rc : 0;
}

/* Describes [buf, buf + bytes) as one range with the scratch PFN list. */
static int buf_range(struct storvsc *s, const void *buf, uint32_t bytes,
		     struct vmbus_gpa_range_desc *r)
{
	uintptr_t a = (uintptr_t)buf;
	uint32_t off = (uint32_t)(a & (PAGE_SIZE - 1));
	uint32_t n = (uint32_t)(((uint64_t)off + bytes + PAGE_SIZE - 1) >> PAGE_SHIFT);

	if (!buf || !bytes || n > s->max_pfns)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		s->pfns[i] = (a >> PAGE_SHIFT) + i;
	r->byte_offset = off;
	r->byte_count = bytes;
	r->pfns = s->pfns;
	return 0;
}

/* Builds and sends a block request; returns the slot index or an error. */
static int submit_block(struct storvsc *s, int kind, uint64_t lba, uint32_t nblocks,
			const void *buf, bool sync, void *cookie)
{
	struct vmbus_gpa_range_desc range;
	uint8_t cdb[16] = { 0 };
	uint64_t bytes = (uint64_t)nblocks * s->info.block_size;
	int rc;

	if (kind == STORVSC_FLUSH) {
		cdb[0] = SCSI_OP_SYNCHRONIZE_CACHE_10; /* LBA 0, 0 blocks: all */
		return submit_scsi(s, cdb, 10, VMSCSI_UNKNOWN_TYPE, NULL, 0, sync, cookie);
	}
	if (kind != STORVSC_READ && kind != STORVSC_WRITE)
		return -EINVAL;
	if (!nblocks || bytes > s->info.max_transfer || lba >= s->info.nblocks ||
	    nblocks > s->info.nblocks - lba)
		return -EINVAL;
	rc = buf_range(s, buf, (uint32_t)bytes, &range);
	if (rc)
		return rc;
	cdb[0] = kind == STORVSC_READ ? SCSI_OP_READ_16 : SCSI_OP_WRITE_16;
	put_be64(&cdb[2], lba);
	put_be32(&cdb[10], nblocks);
	return submit_scsi(s, cdb, 16, kind == STORVSC_READ ? VMSCSI_READ_TYPE : VMSCSI_WRITE_TYPE,
			   &range, (uint32_t)bytes, sync, cookie);
}

int storvsc_submit(struct storvsc *s, int kind, uint64_t lba, uint32_t nblocks, void *buf,
		   void *cookie)
{
	int rc = submit_block(s, kind, lba, nblocks, buf, false, cookie);

	return rc < 0 ? rc : 0;
}

unsigned int storvsc_inflight(const struct storvsc *s)
{
	return s->inflight;
}

int storvsc_poll(struct storvsc *s, struct storvsc_completion *out, unsigned int max)
{
	unsigned int n = 0;

	storvsc_pump(s);
	while (n < max && s->done_count) {
		struct slot *sl = &s->slots[s->done[s->done_head]];

		out[n++] = sl->comp;
		sl->state = SLOT_FREE;
		s->inflight--;
		s->done_head = (s->done_head + 1) % STORVSC_MAX_QUEUE;
		s->done_count--;
	}
	return (int)n;
}

static bool have_done(void *ctx)
{
	struct storvsc *s = ctx;

	if (vmbus_guest_chan_failed(s->ch))
		fail_all(s);
	return s->done_count > 0;
}

int storvsc_wait(struct storvsc *s, struct storvsc_completion *out, unsigned int max,
		 uint64_t timeout)
{
	int rc;

	if (!max)
		return -EINVAL;
	if (!s->done_count && s->inflight == 0)
		return -ENOENT;
	rc = vmbus_guest_wait(have_done, s, timeout);
	if (rc)
		return rc;
	return storvsc_poll(s, out, max);
}

/* ---- synchronous requests ------------------------------------------------------- */

struct slot_wait {
	struct storvsc *s;
	unsigned int idx;
};

static bool slot_done(void *ctx)
{
	struct slot_wait *w = ctx;

	if (vmbus_guest_chan_failed(w->s->ch))
		fail_all(w->s);
	return w->s->slots[w->idx].state == SLOT_DONE;
}

/* Waits for the synchronous request in slot idx; frees the slot unless it
 * timed out. Returns the request's status or -ETIMEDOUT. */
static int wait_slot(struct storvsc *s, int idx, struct storvsc_completion *comp,
		     struct vstor_packet *reply)
{
	struct slot_wait w = { s, (unsigned int)idx };
	struct slot *sl;
	int rc;

	if (idx < 0)
		return idx;
	sl = &s->slots[idx];
	rc = vmbus_guest_wait(slot_done, &w, s->timeout);
	if (rc) {
		sl->state = SLOT_ABANDONED;
		return rc;
	}
	if (comp)
		*comp = sl->comp;
	if (reply)
		*reply = sl->reply;
	rc = sl->comp.status;
	sl->state = SLOT_FREE;
	s->inflight--;
	return rc;
}

int storvsc_read(struct storvsc *s, uint64_t lba, uint32_t nblocks, void *buf)
{
	return wait_slot(s, submit_block(s, STORVSC_READ, lba, nblocks, buf, true, NULL), NULL,
			 NULL);
}

int storvsc_write(struct storvsc *s, uint64_t lba, uint32_t nblocks, const void *buf)
{
	return wait_slot(s, submit_block(s, STORVSC_WRITE, lba, nblocks, buf, true, NULL), NULL,
			 NULL);
}

int storvsc_flush(struct storvsc *s)
{
	return wait_slot(s, submit_block(s, STORVSC_FLUSH, 0, 0, NULL, true, NULL), NULL, NULL);
}

/* ---- handshake -------------------------------------------------------------------- */

/* One in-band handshake request; the reply lands in *reply. */
static int control(struct storvsc *s, uint32_t op, uint16_t version, struct vstor_packet *reply)
{
	struct vstor_packet pkt;

	memset(&pkt, 0, sizeof(pkt));
	pkt.operation = op;
	pkt.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	if (op == VSTOR_OPERATION_QUERY_PROTOCOL_VERSION)
		pkt.version.major_minor = version;
	return wait_slot(s, send_request(s, &pkt, NULL, true, NULL), NULL, reply);
}

static const char *op_name(uint32_t op)
{
	switch (op) {
	case VSTOR_OPERATION_BEGIN_INITIALIZATION:
		return "BEGIN_INITIALIZATION";
	case VSTOR_OPERATION_QUERY_PROTOCOL_VERSION:
		return "QUERY_PROTOCOL_VERSION";
	case VSTOR_OPERATION_QUERY_PROPERTIES:
		return "QUERY_PROPERTIES";
	case VSTOR_OPERATION_END_INITIALIZATION:
		return "END_INITIALIZATION";
	default:
		return "?";
	}
}

static int handshake(struct storvsc *s)
{
	struct vstor_packet reply;
	uint32_t max;
	int rc;

	rc = control(s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0, &reply);
	if (rc) {
		printf("storvsc: %s failed: %d\n", op_name(VSTOR_OPERATION_BEGIN_INITIALIZATION),
		       rc);
		return rc;
	}

	rc = -EIO;
	for (size_t i = 0; i < sizeof(vstor_versions) / sizeof(vstor_versions[0]); i++) {
		rc = control(s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, vstor_versions[i], &reply);
		if (rc == 0) {
			s->info.protocol = vstor_versions[i];
			break;
		}
		if (rc != -EIO)
			break; /* timeout or channel failure: no point going on */
	}
	if (rc) {
		printf("storvsc: no storage protocol version accepted (%d)\n", rc);
		return rc;
	}
	/* From now on every packet has the size the version requires. */
	s->pkt_size = vstor_packet_size(s->info.protocol);
	s->info.packet_size = s->pkt_size;

	rc = control(s, VSTOR_OPERATION_QUERY_PROPERTIES, 0, &reply);
	if (rc) {
		printf("storvsc: %s failed: %d (vstor status 0x%x)\n",
		       op_name(VSTOR_OPERATION_QUERY_PROPERTIES), rc, reply.status);
		return rc;
	}
	max = reply.storage_channel_properties.max_transfer_bytes & ~(PAGE_SIZE - 1);
	s->info.max_transfer = max ? max : DEFAULT_MAX_TRANSFER;

	rc = control(s, VSTOR_OPERATION_END_INITIALIZATION, 0, &reply);
	if (rc) {
		printf("storvsc: %s failed: %d (vstor status 0x%x)\n",
		       op_name(VSTOR_OPERATION_END_INITIALIZATION), rc, reply.status);
		return rc;
	}
	return 0;
}

/* A synchronous SCSI command reading up to len bytes into a bounce page. */
static int scsi_in(struct storvsc *s, const uint8_t *cdb, uint8_t cdb_len, uint8_t *page,
		   uint32_t len, struct storvsc_completion *comp)
{
	struct vmbus_gpa_range_desc range;
	int rc;

	rc = buf_range(s, page, len, &range);
	if (rc)
		return rc;
	return wait_slot(s, submit_scsi(s, cdb, cdb_len, VMSCSI_READ_TYPE, &range, len, true, NULL),
			 comp, NULL);
}

static int read_capacity(struct storvsc *s)
{
	struct storvsc_completion comp;
	uint8_t cdb[16] = { 0 };
	uint8_t *page = fab_alloc_pages(1);
	int rc;

	if (!page)
		return -ENOMEM;
	/* TEST UNIT READY first; one UNIT ATTENTION (reset) is normal. */
	for (int i = 0; i < 2; i++) {
		rc = wait_slot(s, submit_scsi(s, cdb, 6, VMSCSI_UNKNOWN_TYPE, NULL, 0, true, NULL),
			       &comp, NULL);
		if (rc != -EIO || comp.sense_key != SCSI_SK_UNIT_ATTENTION)
			break;
	}
	if (rc) {
		printf("storvsc: TEST UNIT READY failed: %d\n", rc);
		goto out;
	}

	cdb[0] = SCSI_OP_SERVICE_ACTION_IN_16;
	cdb[1] = SCSI_SAI_READ_CAPACITY_16;
	put_be32(&cdb[10], 32);
	rc = scsi_in(s, cdb, 16, page, 32, &comp);
	if (rc == 0) {
		s->info.nblocks = get_be64(page) + 1;
		s->info.block_size = get_be32(page + 8);
	} else if (rc == -EIO) {
		/* A device without the 16-byte form. */
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = SCSI_OP_READ_CAPACITY_10;
		rc = scsi_in(s, cdb, 10, page, 8, &comp);
		if (rc == 0) {
			s->info.nblocks = (uint64_t)get_be32(page) + 1;
			s->info.block_size = get_be32(page + 4);
		}
	}
	if (rc) {
		printf("storvsc: READ CAPACITY failed: %d\n", rc);
		goto out;
	}
	if (s->info.block_size < 512 || s->info.block_size > PAGE_SIZE ||
	    (s->info.block_size & (s->info.block_size - 1)) ||
	    s->info.max_transfer < s->info.block_size) {
		printf("storvsc: unusable geometry: block size %u, max transfer %u\n",
		       s->info.block_size, s->info.max_transfer);
		rc = -EIO;
	}
out:
	/* After a timeout the host may still write the page: keep it. */
	if (rc != -ETIMEDOUT)
		free(page);
	return rc;
}

/* ---- open / close ------------------------------------------------------------------ */

int storvsc_open(uint32_t relid, const struct storvsc_cfg *cfg, struct storvsc **out)
{
	static const struct vmbus_guid scsi_type = { VSTOR_SCSI_GUID_BYTES };
	/* Linux opens with a zeroed vmstorage_channel_properties as user data. */
	static const struct vmstorage_channel_properties props;
	struct vmbus_guest_chan_cfg ccfg = {
		.send_pages = cfg && cfg->send_pages ? cfg->send_pages : DEFAULT_SEND_PAGES,
		.recv_pages = cfg && cfg->recv_pages ? cfg->recv_pages : DEFAULT_RECV_PAGES,
		.user_data = &props,
		.user_len = sizeof(props),
		.timeout = cfg && cfg->timeout ? cfg->timeout : VMBUS_GUEST_TIMEOUT,
	};
	const struct vmbus_client_chan *offer;
	struct storvsc *s;
	int rc;

	if (relid == 0) {
		rc = vmbus_guest_find_offer(&scsi_type, 0, &offer);
		if (rc) {
			printf("storvsc: no storage channel offered\n");
			return -ENOENT;
		}
		relid = offer->relid;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->info.relid = relid;
	s->timeout = cfg && cfg->timeout ? cfg->timeout : STORVSC_DEFAULT_TIMEOUT;
	s->pkt_size = VSTOR_PACKET_SIZE; /* newer Linux: full size from the start */
	s->info.packet_size = s->pkt_size;
	/* Enough PFNs for the largest transfer any host may allow, plus one
	 * for a buffer that does not start on a page. */
	s->max_pfns = (8u << 20) / PAGE_SIZE + 1;
	s->pfns = malloc(s->max_pfns * sizeof(*s->pfns));
	if (!s->pfns) {
		rc = -ENOMEM;
		goto err_free;
	}

	rc = vmbus_guest_chan_open(relid, &ccfg, &s->ch);
	if (rc) {
		printf("storvsc: cannot open channel relid %u: %d\n", relid, rc);
		goto err_free;
	}
	vmbus_guest_chan_set_cb(s->ch, chan_cb, s);

	rc = handshake(s);
	if (!rc)
		rc = read_capacity(s);
	if (rc)
		goto err_close;
	*out = s;
	return 0;

err_close:
	vmbus_guest_chan_close(s->ch);
err_free:
	free(s->pfns);
	free(s);
	return rc;
}

static bool all_done(void *ctx)
{
	struct storvsc *s = ctx;

	if (vmbus_guest_chan_failed(s->ch))
		fail_all(s);
	for (unsigned int i = 0; i < STORVSC_MAX_QUEUE; i++)
		if (s->slots[i].state == SLOT_INFLIGHT || s->slots[i].state == SLOT_ABANDONED)
			return false;
	return true;
}

int storvsc_close(struct storvsc *s)
{
	int rc;

	if (!all_done(s) && vmbus_guest_wait(all_done, s, s->timeout))
		printf("storvsc: closing with requests in flight\n");
	rc = vmbus_guest_chan_close(s->ch);
	free(s->pfns);
	free(s);
	return rc;
}

void storvsc_get_info(const struct storvsc *s, struct storvsc_info *out)
{
	*out = s->info;
}

struct vmbus_guest_chan *storvsc_chan(struct storvsc *s)
{
	return s->ch;
}
