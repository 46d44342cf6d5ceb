// SPDX-License-Identifier: MIT
/*
 * Storage VSP engine, driven directly: a temp-file image, guest memory as a
 * local buffer addressed by fake PFNs, completions captured.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fab/log.h"
#include "fab/vstor.h"
#include "storvsp.h"

#define PAGE	   4096u
#define NPAGES	   1024u /* 4 MiB of "guest RAM" */
#define IMG_BLOCKS 8192u /* 4 MiB image */
#define TID	   0x1234abcdull

/* ---- fake glue ------------------------------------------------------------- */

struct glue {
	uint8_t *ram;
	int64_t fault_pfn; /* this PFN is "outside guest RAM"; -1: none */
	int complete_err;  /* what complete() returns */
	unsigned ncompletions;
	uint64_t trans_id;
	uint32_t len;
	union {
		struct vstor_packet pkt;
		uint8_t raw[128];
	};
};

static struct glue G;

/* The test's view of the guest buffer, page by page as the glue does it. */
static int guest_copy(const struct storvsp_sgl *sgl, uint64_t off, void *buf, size_t len,
		      bool to_guest)
{
	uint64_t pos = sgl->byte_offset + off;
	uint8_t *p = buf;

	while (len) {
		uint64_t idx = pos / PAGE, in = pos % PAGE, pfn;
		size_t n = len < PAGE - in ? len : PAGE - in;

		assert_true(idx < sgl->npfns);
		pfn = sgl->pfns[idx];
		if (pfn >= NPAGES || (int64_t)pfn == G.fault_pfn)
			return -EFAULT;
		if (to_guest)
			memcpy(G.ram + pfn * PAGE + in, p, n);
		else
			memcpy(p, G.ram + pfn * PAGE + in, n);
		p += n;
		pos += n;
		len -= n;
	}
	return 0;
}

static int fake_complete(void *ctx, uint64_t trans_id, const void *pkt, uint32_t len)
{
	struct glue *g = ctx;

	assert_ptr_equal(g, &G);
	assert_true(len >= VSTOR_PACKET_HEADER_SIZE && len <= VSTOR_PACKET_SIZE);
	g->ncompletions++;
	g->trans_id = trans_id;
	g->len = len;
	memset(g->raw, 0xee, sizeof(g->raw));
	memcpy(g->raw, pkt, len);
	return g->complete_err;
}

static int fake_to_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset, const void *src,
			 size_t len)
{
	/* The engine promised never to go past the buffer. */
	assert_true(offset + len <= sgl->byte_count);
	return guest_copy(sgl, offset, (void *)src, len, true);
}

static int fake_from_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset, void *dst,
			   size_t len)
{
	assert_true(offset + len <= sgl->byte_count);
	return guest_copy(sgl, offset, dst, len, false);
}

static const struct storvsp_dev_ops ops = {
	.complete = fake_complete,
	.copy_to_guest = fake_to_guest,
	.copy_from_guest = fake_from_guest,
};

/* A guest buffer over scattered pages: page i is first + i * stride. */
struct gbuf {
	struct storvsp_sgl sgl;
	uint64_t pfns[NPAGES];
};

static void gbuf_init(struct gbuf *b, uint32_t offset, uint32_t count, uint64_t first,
		      uint64_t stride)
{
	b->sgl.byte_offset = offset;
	b->sgl.byte_count = count;
	b->sgl.npfns = (offset + count + PAGE - 1) / PAGE;
	if (!b->sgl.npfns)
		b->sgl.npfns = 1;
	for (uint32_t i = 0; i < b->sgl.npfns; i++)
		b->pfns[i] = (first + i * stride) % NPAGES;
	b->sgl.pfns = b->pfns;
}

static void gbuf_fill(struct gbuf *b, const void *src, size_t len)
{
	assert_int_equal(guest_copy(&b->sgl, 0, (void *)src, len, true), 0);
}

static void gbuf_get(struct gbuf *b, void *dst, size_t len)
{
	assert_int_equal(guest_copy(&b->sgl, 0, dst, len, false), 0);
}

/* ---- fixture --------------------------------------------------------------- */

struct fx {
	char path[64];
	struct storvsp *s;
};

static int make_image(char *path, size_t size)
{
	int fd;

	strcpy(path, "/tmp/test_storvsp.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static struct storvsp_cfg base_cfg(const char *path)
{
	return (struct storvsp_cfg){ .path = path, .ops = &ops, .serial = "SN-0042" };
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct storvsp_cfg cfg;

	if (!f || make_image(f->path, (size_t)IMG_BLOCKS * 512))
		return -1;
	cfg = base_cfg(f->path);
	if (storvsp_create(&cfg, &f->s))
		return -1;
	memset(&G, 0, sizeof(G));
	G.ram = calloc(NPAGES, PAGE);
	G.fault_pfn = -1;
	*state = f;
	return G.ram ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	storvsp_destroy(f->s);
	unlink(f->path);
	free(f);
	free(G.ram);
	return 0;
}

/* ---- packet helpers -------------------------------------------------------- */

static int send_op(struct storvsp *s, uint32_t op, uint32_t len, uint16_t version)
{
	struct vstor_packet p;

	memset(&p, 0, sizeof(p));
	p.operation = op;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	if (op == VSTOR_OPERATION_QUERY_PROTOCOL_VERSION)
		p.version.major_minor = version;
	return storvsp_handle(s, &p, len, TID, NULL, &G);
}

/* Sends op and checks it got one completion of len bytes with status. */
static void expect_op(struct storvsp *s, uint32_t op, uint32_t len, uint16_t version, int ret,
		      uint32_t status, uint32_t reply_len)
{
	unsigned before = G.ncompletions;

	assert_int_equal(send_op(s, op, len, version), ret);
	assert_int_equal(G.ncompletions, before + 1);
	assert_int_equal(G.trans_id, TID);
	assert_int_equal(G.pkt.operation, VSTOR_OPERATION_COMPLETE_IO);
	assert_int_equal(G.pkt.status, status);
	assert_int_equal(G.len, reply_len);
}

static void handshake(struct storvsp *s, uint16_t version)
{
	uint32_t len = vstor_packet_size(version);

	expect_op(s, VSTOR_OPERATION_BEGIN_INITIALIZATION, len, 0, 0, 0, len);
	expect_op(s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, len, version, 0, 0, len);
	expect_op(s, VSTOR_OPERATION_QUERY_PROPERTIES, len, 0, 0, 0, len);
	expect_op(s, VSTOR_OPERATION_END_INITIALIZATION, len, 0, 0, 0, len);
}

struct srb_args {
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint8_t path, target, lun;
	uint32_t dtl;
	uint8_t data_in;
	uint8_t sense_len; /* 0 means the default 0x14 */
	bool no_sense;	   /* offer no sense buffer */
	uint32_t pkt_len;  /* 0: 64 */
	const struct storvsp_sgl *sgl;
};

/* Sends an SRB; returns storvsp_handle's result, the reply is in G.pkt. */
static int srb(struct storvsp *s, const struct srb_args *a)
{
	struct vstor_packet p;
	unsigned before = G.ncompletions;
	int ret;

	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OPERATION_EXECUTE_SRB;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	p.vm_srb.length = VMSCSI_REQUEST_SIZE;
	p.vm_srb.path_id = a->path;
	p.vm_srb.target_id = a->target;
	p.vm_srb.lun = a->lun;
	p.vm_srb.cdb_length = a->cdb_len ? a->cdb_len : 16;
	p.vm_srb.sense_info_length = a->no_sense ? 0 : a->sense_len ? a->sense_len : 0x14;
	p.vm_srb.data_in = a->data_in;
	p.vm_srb.data_transfer_length = a->dtl;
	memcpy(p.vm_srb.cdb, a->cdb, 16);
	p.vm_srb.queue_tag = 0xff;
	p.vm_srb.queue_action = 0x20;
	p.vm_srb.time_out_value = 60;
	ret = storvsp_handle(s, &p, a->pkt_len ? a->pkt_len : 64, TID, a->sgl, &G);
	/* Exactly one completion per SRB, whatever happened. */
	assert_int_equal(G.ncompletions, before + 1);
	assert_int_equal(G.pkt.operation, VSTOR_OPERATION_COMPLETE_IO);
	assert_int_equal(G.trans_id, TID);
	return ret;
}

static void expect_good(uint32_t moved)
{
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(G.pkt.vm_srb.scsi_status, SCSI_STATUS_GOOD);
	assert_int_equal(G.pkt.status, VSTOR_STATUS_SUCCESS);
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, moved);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, 0);
}

/* CHECK CONDITION with fixed sense key/asc; field -1: no field pointer. */
static void expect_sense(uint8_t key, uint16_t asc, int field)
{
	const uint8_t *sn = G.pkt.vm_srb.sense_data;

	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(G.pkt.vm_srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_not_equal(G.pkt.status, VSTOR_STATUS_SUCCESS);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, SCSI_SENSE_FIXED_SIZE);
	assert_int_equal(sn[0], 0x70);
	assert_int_equal(sn[2], key);
	assert_int_equal(sn[7], 10);
	assert_int_equal(sn[12], asc >> 8);
	assert_int_equal(sn[13], asc & 0xff);
	if (field >= 0) {
		assert_int_equal(sn[15], 0xc0);
		assert_int_equal(sn[16] << 8 | sn[17], field);
	} else {
		assert_int_equal(sn[15], 0);
	}
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, 0);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Runs a data-in command into a fresh buffer; data lands in out. */
static int data_in_cmd(struct storvsp *s, const uint8_t *cdb, uint32_t dtl, uint8_t *out)
{
	struct gbuf b;
	struct srb_args a = { .dtl = dtl, .data_in = VMSCSI_READ_TYPE, .sgl = &b.sgl };
	int ret;

	memcpy(a.cdb, cdb, 16);
	gbuf_init(&b, 100, dtl, 5, 1);
	memset(out, 0, dtl);
	gbuf_fill(&b, out, dtl);
	ret = srb(s, &a);
	gbuf_get(&b, out, dtl);
	return ret;
}

static void rw_cdb(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t nblocks)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op) {
	case SCSI_OP_READ_10:
	case SCSI_OP_WRITE_10:
		put32(&cdb[2], (uint32_t)lba);
		cdb[7] = nblocks >> 8;
		cdb[8] = nblocks;
		break;
	case SCSI_OP_READ_12:
	case SCSI_OP_WRITE_12:
		put32(&cdb[2], (uint32_t)lba);
		put32(&cdb[6], nblocks);
		break;
	default:
		put64(&cdb[2], lba);
		put32(&cdb[10], nblocks);
		break;
	}
}

/* ---- handshake ------------------------------------------------------------- */

static void test_handshake_in_order(void **state)
{
	struct fx *f = *state;
	struct storvsp_stats st;

	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN10, 0,
		  0, 64);
	assert_int_equal(G.pkt.version.major_minor, VMSTOR_PROTO_VERSION_WIN10);
	assert_int_equal(storvsp_protocol_version(f->s), VMSTOR_PROTO_VERSION_WIN10);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, 0, 0, 64);
	assert_int_equal(G.pkt.storage_channel_properties.max_transfer_bytes,
			 STORVSP_MAX_TRANSFER_DEFAULT);
	assert_int_equal(G.pkt.storage_channel_properties.max_channel_cnt, 0);
	assert_int_equal(
		G.pkt.storage_channel_properties.flags & STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL, 0);
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 64, 0, 0, 0, 64);

	/* Ready: SRBs and resets work. */
	struct srb_args a = { .cdb = { SCSI_OP_TEST_UNIT_READY },
			      .cdb_len = 6,
			      .data_in = VMSCSI_UNKNOWN_TYPE };
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(0);
	expect_op(f->s, VSTOR_OPERATION_RESET_BUS, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_RESET_LUN, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_RESET_ADAPTER, 64, 0, 0, 0, 64);
	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.protocol_errors, 0);
	assert_int_equal(st.requests, 1);
}

static void test_handshake_versions(void **state)
{
	struct fx *f = *state;

	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, 0, 0, 64);
	/* Unknown versions are refused but the negotiation goes on. */
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, 0x0700, 0,
		  VSTOR_STATUS_REVISION_MISMATCH, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, 0x0601, 0,
		  VSTOR_STATUS_REVISION_MISMATCH, 64);
	assert_int_equal(storvsp_protocol_version(f->s), 0);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN8_1, 0,
		  0, 64);
	assert_int_equal(storvsp_protocol_version(f->s), VMSTOR_PROTO_VERSION_WIN8_1);

	/* Every version Linux has tried is accepted. */
	static const uint16_t versions[] = { VMSTOR_PROTO_VERSION_WIN6, VMSTOR_PROTO_VERSION_WIN7,
					     VMSTOR_PROTO_VERSION_WIN8, VMSTOR_PROTO_VERSION_WIN8_1,
					     VMSTOR_PROTO_VERSION_WIN10 };
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		storvsp_reset(f->s);
		handshake(f->s, versions[i]);
		assert_int_equal(storvsp_protocol_version(f->s), versions[i]);
	}
}

static void test_handshake_out_of_order(void **state)
{
	struct fx *f = *state;
	struct storvsp_stats st;
	struct srb_args a = { .cdb = { SCSI_OP_TEST_UNIT_READY }, .cdb_len = 6 };

	/* An SRB before anything: failed, not dropped. */
	assert_int_equal(srb(f->s, &a), -EPROTO);
	assert_int_equal(G.pkt.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	assert_int_equal(G.pkt.vm_srb.cdb_length, 6); /* the SRB came back */

	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN10,
		  -EPROTO, VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN10, 0,
		  0, 64);
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_RESET_BUS, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	assert_int_equal(srb(f->s, &a), -EPROTO);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 64, 0, 0, 0, 64);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, -EPROTO,
		  VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN8,
		  -EPROTO, VSTOR_STATUS_INVALID_DEVICE_STATE, 64);
	assert_int_equal(storvsp_protocol_version(f->s), VMSTOR_PROTO_VERSION_WIN10);

	/* Still usable after all that. */
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(0);
	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.protocol_errors, 11);

	/* A reopened channel starts over. */
	storvsp_reset(f->s);
	assert_int_equal(srb(f->s, &a), -EPROTO);
	handshake(f->s, VMSTOR_PROTO_VERSION_WIN8);
}

/* Linux 4.x-5.x: 48-byte packets until the version is agreed, then the
 * negotiated size. */
static void test_pre_win8_packet_size(void **state)
{
	struct fx *f = *state;

	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 48, 0, 0, 0, 48);
	/* The reply to the version query still has the old size. */
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 48, VMSTOR_PROTO_VERSION_WIN10, 0,
		  0, 48);
	/* From now on 64 bytes are required. */
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 48, 0, -EBADMSG,
		  VSTOR_STATUS_INVALID_PARAMETER, 64);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, 0, 0, 64);
	/* Longer packets (ring padding) are fine; the reply is 64. */
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 72, 0, 0, 0, 64);

	/* An old host protocol: everything stays at 48 bytes. */
	storvsp_reset(f->s);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 48, 0, 0, 0, 48);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 48, VMSTOR_PROTO_VERSION_WIN7, 0, 0,
		  48);
	expect_op(f->s, VSTOR_OPERATION_QUERY_PROPERTIES, 48, 0, 0, 0, 48);
	expect_op(f->s, VSTOR_OPERATION_END_INITIALIZATION, 64, 0, 0, 0, 48);

	struct srb_args a = { .cdb = { 0xc5 }, .cdb_len = 6, .pkt_len = 48, .sense_len = 0x12 };
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.len, 48);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE, 0);
	/* Nothing past the 36-byte SRB was sent. */
	assert_int_equal(G.raw[48], 0xee);

	/* A guest offering a bigger sense buffer gets at most 0x12 here. */
	a.sense_len = 0x14;
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, 0x12);
}

static void test_short_and_garbage_packets(void **state)
{
	struct fx *f = *state;
	struct storvsp_stats st;
	uint8_t junk[64];
	uint32_t x = 12345;

	/* Too short before negotiation: answered at 48 bytes. */
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0, 0, -EBADMSG,
		  VSTOR_STATUS_INVALID_PARAMETER, 48);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 5, 0, -EBADMSG,
		  VSTOR_STATUS_INVALID_PARAMETER, 48);
	expect_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 47, 0, -EBADMSG,
		  VSTOR_STATUS_INVALID_PARAMETER, 48);
	/* Operations a guest may not send. */
	expect_op(f->s, 99, 64, 0, -EOPNOTSUPP, VSTOR_STATUS_INVALID_DEVICE_REQUEST, 64);
	expect_op(f->s, VSTOR_OPERATION_COMPLETE_IO, 64, 0, -EOPNOTSUPP,
		  VSTOR_STATUS_INVALID_DEVICE_REQUEST, 64);
	expect_op(f->s, VSTOR_OPERATION_ENUMERATE_BUS, 64, 0, -EOPNOTSUPP,
		  VSTOR_STATUS_INVALID_DEVICE_REQUEST, 64);

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	expect_op(f->s, VSTOR_OPERATION_CREATE_SUB_CHANNELS, 64, 0, -EOPNOTSUPP,
		  VSTOR_STATUS_INVALID_PARAMETER, 64);
	expect_op(f->s, VSTOR_OPERATION_RESET_BUS, 63, 0, -EBADMSG, VSTOR_STATUS_INVALID_PARAMETER,
		  64);

	/* Malformed SRBs come back failed. */
	struct srb_args a = { .cdb = { SCSI_OP_TEST_UNIT_READY } };
	a.cdb_len = 17;
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	assert_int_equal(G.pkt.status, VSTOR_STATUS_INVALID_PARAMETER);
	a.cdb_len = 0xff;
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	a.cdb_len = 6;
	a.pkt_len = 52; /* a pre-Win8 SRB after WIN10 was agreed */
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	a.pkt_len = 0;
	a.dtl = 512; /* data but no buffer */
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, 0);

	struct gbuf b;
	gbuf_init(&b, 0, 256, 1, 1);
	a.sgl = &b.sgl;
	assert_int_equal(srb(f->s, &a), -EBADMSG); /* buffer smaller than dtl */
	gbuf_init(&b, 0, 512, 1, 1);
	b.sgl.npfns = 0; /* buffer with no pages */
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	gbuf_init(&b, 4000, 512, 1, 1);
	b.sgl.npfns = 1; /* pages do not cover the range */
	assert_int_equal(srb(f->s, &a), -EBADMSG);
	gbuf_init(&b, 4096, 512, 1, 1); /* offset outside the first page */
	assert_int_equal(srb(f->s, &a), -EBADMSG);

	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.protocol_errors, 16);
	assert_int_equal(st.requests, 0);

	/* Random junk: one completion each, never a crash. */
	for (int i = 0; i < 2000; i++) {
		unsigned before = G.ncompletions;
		size_t len;

		for (size_t j = 0; j < sizeof(junk); j++) {
			x = x * 1103515245u + 12345u;
			junk[j] = (uint8_t)(x >> 16);
		}
		len = junk[0] % 65;
		if (junk[1] & 1)
			junk[0] = junk[0] % 14;
		(void)storvsp_handle(f->s, junk, len, TID, NULL, &G);
		assert_int_equal(G.ncompletions, before + 1);
	}
}

/* ---- SCSI ------------------------------------------------------------------ */

static void test_inquiry_standard(void **state)
{
	struct fx *f = *state;
	uint8_t cdb[16] = { SCSI_OP_INQUIRY, 0, 0, 0, 96 };
	uint8_t d[96];

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	assert_int_equal(data_in_cmd(f->s, cdb, 96, d), 0);
	expect_good(36);
	assert_int_equal(d[0], 0x00); /* direct access, connected */
	assert_int_equal(d[1], 0x00); /* not removable */
	assert_int_equal(d[2], 0x06); /* SPC-4 */
	assert_int_equal(d[3] & 0x0f, 2);
	assert_int_equal(d[4], 31);
	assert_memory_equal(&d[8], "FABRIC  ", 8);
	assert_memory_equal(&d[16], "VIRTUAL DISK    ", 16);
	assert_int_equal(d[36], 0); /* nothing past 36 bytes */

	/* The allocation length and the buffer both cut the data. */
	cdb[4] = 5;
	assert_int_equal(data_in_cmd(f->s, cdb, 96, d), 0);
	expect_good(5);
	cdb[4] = 96;
	assert_int_equal(data_in_cmd(f->s, cdb, 8, d), 0);
	expect_good(8);

	/* Page code without EVPD, CMDDT. */
	cdb[2] = 0x80;
	assert_int_equal(data_in_cmd(f->s, cdb, 96, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 2);
	cdb[2] = 0;
	cdb[1] = 0x02;
	assert_int_equal(data_in_cmd(f->s, cdb, 96, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 1);
}

static void inquiry_vpd(struct storvsp *s, uint8_t page, uint8_t *d, uint32_t *len)
{
	uint8_t cdb[16] = { SCSI_OP_INQUIRY, 1, page, 0, 255 };

	assert_int_equal(data_in_cmd(s, cdb, 255, d), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(d[0], 0);
	assert_int_equal(d[1], page);
	*len = (uint32_t)(d[2] << 8 | d[3]) + 4;
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, *len);
}

static void test_inquiry_vpd(void **state)
{
	struct fx *f = *state;
	uint8_t d[255];
	uint32_t len;

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);

	inquiry_vpd(f->s, 0x00, d, &len);
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
	assert_int_equal(len, 4 + sizeof(pages));
	assert_memory_equal(&d[4], pages, sizeof(pages));

	inquiry_vpd(f->s, 0x80, d, &len);
	assert_int_equal(len, 4 + 7);
	assert_memory_equal(&d[4], "SN-0042", 7);

	inquiry_vpd(f->s, 0x83, d, &len);
	/* NAA designator: binary, LU, type 3, 8 bytes, NAA 3 (locally assigned). */
	assert_int_equal(d[4], 0x01);
	assert_int_equal(d[5], 0x03);
	assert_int_equal(d[7], 8);
	assert_int_equal(d[8] >> 4, 3);
	/* T10 vendor id: ASCII, LU, type 1, vendor + product + serial. */
	assert_int_equal(d[16], 0x02);
	assert_int_equal(d[17], 0x01);
	assert_int_equal(d[19], 8 + 16 + 7);
	assert_memory_equal(&d[20], "FABRIC  VIRTUAL DISK    SN-0042", 31);
	assert_int_equal(len, 4 + 12 + 4 + 31);

	inquiry_vpd(f->s, 0xb0, d, &len);
	assert_int_equal(len, 64);
	assert_int_equal(get32(&d[8]), STORVSP_MAX_TRANSFER_DEFAULT / 512);  /* max */
	assert_int_equal(get32(&d[12]), STORVSP_MAX_TRANSFER_DEFAULT / 512); /* optimal */
	assert_int_equal(get32(&d[20]), 0);				     /* no UNMAP */

	inquiry_vpd(f->s, 0xb1, d, &len);
	assert_int_equal(len, 64);
	assert_int_equal(d[4] << 8 | d[5], 1); /* non-rotating */

	inquiry_vpd(f->s, 0xb2, d, &len);
	assert_int_equal(len, 8);
	assert_int_equal(d[5], 0); /* no LBPU / LBPWS */

	/* A page we do not have. */
	uint8_t cdb[16] = { SCSI_OP_INQUIRY, 1, 0x89, 0, 255 };
	assert_int_equal(data_in_cmd(f->s, cdb, 255, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 2);
}

static void test_read_capacity(void **state)
{
	struct fx *f = *state;
	uint8_t cdb[16] = { SCSI_OP_READ_CAPACITY_10 };
	uint8_t d[32];

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	assert_int_equal(storvsp_nblocks(f->s), IMG_BLOCKS);

	assert_int_equal(data_in_cmd(f->s, cdb, 8, d), 0);
	expect_good(8);
	assert_int_equal(get32(&d[0]), IMG_BLOCKS - 1);
	assert_int_equal(get32(&d[4]), 512);

	/* LBA without PMI is invalid. */
	cdb[5] = 1;
	assert_int_equal(data_in_cmd(f->s, cdb, 8, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 2);
	cdb[8] = 1;
	assert_int_equal(data_in_cmd(f->s, cdb, 8, d), 0);
	expect_good(8);

	uint8_t c16[16] = { SCSI_OP_SERVICE_ACTION_IN_16, SCSI_SAI_READ_CAPACITY_16 };
	c16[13] = 32;
	assert_int_equal(data_in_cmd(f->s, c16, 32, d), 0);
	expect_good(32);
	assert_int_equal(get64(&d[0]), IMG_BLOCKS - 1);
	assert_int_equal(get32(&d[8]), 512);
	assert_int_equal(d[12], 0);	   /* no protection */
	assert_int_equal(d[14] & 0x80, 0); /* LBPME clear */

	c16[13] = 12; /* allocation length cuts */
	assert_int_equal(data_in_cmd(f->s, c16, 32, d), 0);
	expect_good(12);

	c16[1] = 0x11; /* other service action */
	assert_int_equal(data_in_cmd(f->s, c16, 32, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 1);
}

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (uint8_t)(seed >> 24);
	}
}

static void test_write_read_back(void **state)
{
	struct fx *f = *state;
	const uint32_t nblocks = 1536; /* 768 KiB: three bounce chunks */
	const uint32_t bytes = nblocks * 512;
	uint8_t *src = malloc(bytes), *dst = malloc(bytes), *file = malloc(bytes);
	struct gbuf wb, rb;
	struct storvsp_stats st;
	struct srb_args a = { .data_in = VMSCSI_WRITE_TYPE };
	int fd;

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	fill_pattern(src, bytes, 7);

	/* WRITE(10) from an odd offset over pages scattered backwards. */
	gbuf_init(&wb, 123, bytes, 900, NPAGES - 3);
	gbuf_fill(&wb, src, bytes);
	rw_cdb(a.cdb, SCSI_OP_WRITE_10, 1000, nblocks);
	a.dtl = bytes;
	a.sgl = &wb.sgl;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(bytes);

	/* It is in the image. */
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, file, bytes, 1000 * 512), (ssize_t)bytes);
	close(fd);
	assert_memory_equal(file, src, bytes);

	/* READ(16) back into another odd offset and other pages. */
	gbuf_init(&rb, 4001, bytes, 3, 5);
	memset(dst, 0, bytes);
	gbuf_fill(&rb, dst, bytes);
	rw_cdb(a.cdb, SCSI_OP_READ_16, 1000, nblocks);
	a.data_in = VMSCSI_READ_TYPE;
	a.sgl = &rb.sgl;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(bytes);
	gbuf_get(&rb, dst, bytes);
	assert_memory_equal(dst, src, bytes);

	/* READ(12) and READ(6) of a piece of it; a bigger buffer than
	 * needed is fine and only the command's bytes move. */
	gbuf_init(&rb, 7, 8192, 40, 1);
	rw_cdb(a.cdb, SCSI_OP_READ_12, 1001, 2);
	a.dtl = 8192;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(1024);
	gbuf_get(&rb, dst, 1024);
	assert_memory_equal(dst, src + 512, 1024);

	memset(a.cdb, 0, 16);
	a.cdb[0] = SCSI_OP_READ_6;
	a.cdb[2] = 1002 >> 8;
	a.cdb[3] = 1002 & 0xff;
	a.cdb[4] = 1;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(512);
	gbuf_get(&rb, dst, 512);
	assert_memory_equal(dst, src + 1024, 512);

	/* WRITE(16) and WRITE(6), FUA honoured. */
	fill_pattern(src, 1024, 99);
	gbuf_init(&wb, 511, 1024, 77, 2);
	gbuf_fill(&wb, src, 1024);
	rw_cdb(a.cdb, SCSI_OP_WRITE_16, IMG_BLOCKS - 2, 2);
	a.cdb[1] = 0x08;
	a.dtl = 1024;
	a.sgl = &wb.sgl;
	a.data_in = VMSCSI_WRITE_TYPE;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(1024);
	memset(a.cdb, 0, 16);
	a.cdb[0] = SCSI_OP_WRITE_6;
	a.cdb[3] = 5;
	a.cdb[4] = 2;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(1024);
	fd = open(f->path, O_RDONLY);
	assert_int_equal(pread(fd, file, 1024, (IMG_BLOCKS - 2) * 512ull), 1024);
	assert_memory_equal(file, src, 1024);
	assert_int_equal(pread(fd, file, 1024, 5 * 512), 1024);
	assert_memory_equal(file, src, 1024);
	close(fd);

	/* A zero-length transfer moves nothing and succeeds. */
	rw_cdb(a.cdb, SCSI_OP_READ_10, 5, 0);
	a.dtl = 0;
	a.sgl = NULL;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(0);

	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.bytes_written, bytes + 2048);
	assert_int_equal(st.bytes_read, bytes + 1024 + 512);
	assert_int_equal(st.flushes, 1);
	assert_int_equal(st.scsi_errors, 0);
	free(src);
	free(dst);
	free(file);
}

static void test_lba_out_of_range(void **state)
{
	struct fx *f = *state;
	struct gbuf b;
	struct srb_args a = { .dtl = 8192, .data_in = VMSCSI_READ_TYPE, .sgl = &b.sgl };
	struct storvsp_stats st;

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	gbuf_init(&b, 0, 8192, 10, 1);

	rw_cdb(a.cdb, SCSI_OP_READ_10, IMG_BLOCKS - 1, 2); /* runs one past the end */
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, -1);
	rw_cdb(a.cdb, SCSI_OP_READ_10, IMG_BLOCKS - 1, 1); /* the last block is fine */
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(512);
	rw_cdb(a.cdb, SCSI_OP_READ_16, ~0ull - 1, 4); /* lba + n overflows */
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, -1);
	rw_cdb(a.cdb, SCSI_OP_WRITE_16, IMG_BLOCKS, 0);
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, -1);
	rw_cdb(a.cdb, SCSI_OP_WRITE_12, 0x10000000, 1);
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, -1);

	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.scsi_errors, 4);
	assert_int_equal(st.bytes_written, 0);
}

static void test_unknown_opcode(void **state)
{
	struct fx *f = *state;
	static const uint8_t ops_[] = { 0xc0, 0x85, 0xa1, 0x42, 0x93, 0x15, 0xff };
	struct srb_args a = { .cdb_len = 16 };

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	for (size_t i = 0; i < sizeof(ops_); i++) {
		a.cdb[0] = ops_[i];
		assert_int_equal(srb(f->s, &a), 0);
		expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE, 0);
		assert_int_equal(G.pkt.status, VSTOR_STATUS_UNSUCCESSFUL);
	}
}

static void test_malformed_cdb(void **state)
{
	struct fx *f = *state;
	struct gbuf b;
	struct srb_args a = { .dtl = 4096, .data_in = VMSCSI_READ_TYPE, .sgl = &b.sgl };
	uint8_t d[64];

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	gbuf_init(&b, 0, 4096, 10, 1);

	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, 1);
	a.cdb[1] = 0x20; /* RDPROTECT without protection information */
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 1);

	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, 1);
	a.cdb_len = 6; /* a 10-byte command in 6 bytes */
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 6);
	a.cdb_len = 10;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(512);

	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, 9); /* 4.5 KiB into a 4 KiB buffer */
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 7);

	rw_cdb(a.cdb, SCSI_OP_READ_16, 0, STORVSP_MAX_TRANSFER_DEFAULT / 512 + 1);
	a.cdb_len = 16;
	assert_int_equal(srb(f->s, &a), 0); /* beyond the advertised maximum */
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 10);

	uint8_t rl[16] = { SCSI_OP_REPORT_LUNS };
	rl[9] = 8; /* allocation length under 16 */
	assert_int_equal(data_in_cmd(f->s, rl, 64, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 6);
	rl[9] = 64;
	rl[2] = 0x05; /* SELECT REPORT */
	assert_int_equal(data_in_cmd(f->s, rl, 64, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 2);

	uint8_t ms[16] = { SCSI_OP_MODE_SENSE_6, 0, 0x1c, 0, 64 }; /* page we lack */
	assert_int_equal(data_in_cmd(f->s, ms, 64, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 2);
	ms[2] = 0xc8; /* saved values */
	assert_int_equal(data_in_cmd(f->s, ms, 64, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_SAVING_PARAMS_UNSUPPORTED, 2);
	ms[2] = 0x08;
	ms[3] = 0x01; /* subpage */
	assert_int_equal(data_in_cmd(f->s, ms, 64, d), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, 3);
}

static void test_synchronize_cache(void **state)
{
	struct fx *f = *state;
	struct storvsp_stats st;
	struct srb_args a = { .data_in = VMSCSI_UNKNOWN_TYPE };

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	a.cdb[0] = SCSI_OP_SYNCHRONIZE_CACHE_10;
	a.cdb_len = 10;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(0);

	rw_cdb(a.cdb, SCSI_OP_SYNCHRONIZE_CACHE_16, 100, 50);
	a.cdb[0] = SCSI_OP_SYNCHRONIZE_CACHE_16;
	a.cdb[1] = 0x02; /* IMMED */
	a.cdb_len = 16;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(0);

	rw_cdb(a.cdb, SCSI_OP_SYNCHRONIZE_CACHE_16, IMG_BLOCKS, 0);
	a.cdb[0] = SCSI_OP_SYNCHRONIZE_CACHE_16;
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, -1);

	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.flushes, 2);
}

static void test_report_luns_and_addressing(void **state)
{
	struct fx *f = *state;
	uint8_t rl[16] = { SCSI_OP_REPORT_LUNS };
	uint8_t d[64];
	struct gbuf b;
	struct srb_args a = { .dtl = 64, .data_in = VMSCSI_READ_TYPE, .sgl = &b.sgl };

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	rl[9] = 64;
	assert_int_equal(data_in_cmd(f->s, rl, 64, d), 0);
	expect_good(16);
	assert_int_equal(get32(&d[0]), 8); /* one LUN */
	assert_int_equal(get64(&d[8]), 0); /* LUN 0 */

	/* Another target: no LUNs. */
	gbuf_init(&b, 0, 64, 10, 1);
	memcpy(a.cdb, rl, 16);
	a.target = 1;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(8);
	gbuf_get(&b, d, 8);
	assert_int_equal(get32(&d[0]), 0);

	/* INQUIRY of LUN 1: "no logical unit here". */
	memset(a.cdb, 0, 16);
	a.cdb[0] = SCSI_OP_INQUIRY;
	a.cdb[4] = 36;
	a.target = 0;
	a.lun = 1;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(36);
	gbuf_get(&b, d, 36);
	assert_int_equal(d[0], 0x7f);

	/* Anything else there: invalid LUN, as Hyper-V answers. */
	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, 1);
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(SRB_STATUS(G.pkt.vm_srb.srb_status), SRB_STATUS_INVALID_LUN);
	assert_int_equal(G.pkt.status, VSTOR_STATUS_DEVICE_DOES_NOT_EXIST);
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, 0);
	a.lun = 0;
	a.path = 2;
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(SRB_STATUS(G.pkt.vm_srb.srb_status), SRB_STATUS_INVALID_LUN);
	a.path = 0;
	gbuf_init(&b, 0, 512, 10, 1);
	a.dtl = 512;
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(512);
}

static void test_mode_sense(void **state)
{
	struct fx *f = *state;
	uint8_t d[255];

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);

	/* MODE SENSE(6), all pages, with the block descriptor. */
	uint8_t c6[16] = { SCSI_OP_MODE_SENSE_6, 0, 0x3f, 0, 255 };
	assert_int_equal(data_in_cmd(f->s, c6, 255, d), 0);
	expect_good(4 + 8 + 20 + 12);
	assert_int_equal(d[0], 4 + 8 + 20 + 12 - 1);
	assert_int_equal(d[2] & 0x80, 0); /* not write protected */
	assert_int_equal(d[3], 8);
	assert_int_equal(get32(&d[4]) & 0xffffff, IMG_BLOCKS);
	assert_int_equal(get32(&d[8]) & 0xffffff, 512);
	assert_int_equal(d[12], 0x08); /* caching page */
	assert_int_equal(d[13], 18);
	assert_int_equal(d[14] & 0x04, 0x04); /* WCE */
	assert_int_equal(d[14] & 0x01, 0);    /* RCD clear */
	assert_int_equal(d[32], 0x0a);	      /* control page */

	/* Linux's write-protect probe: 4 bytes only. */
	c6[4] = 4;
	assert_int_equal(data_in_cmd(f->s, c6, 255, d), 0);
	expect_good(4);

	/* Caching page alone, no block descriptors. */
	uint8_t c6b[16] = { SCSI_OP_MODE_SENSE_6, 0x08, 0x08, 0, 255 };
	assert_int_equal(data_in_cmd(f->s, c6b, 255, d), 0);
	expect_good(4 + 20);
	assert_int_equal(d[3], 0);
	assert_int_equal(d[4], 0x08);
	assert_int_equal(d[6] & 0x04, 0x04);

	/* Changeable values: nothing is. */
	c6b[2] = 0x48;
	assert_int_equal(data_in_cmd(f->s, c6b, 255, d), 0);
	expect_good(4 + 20);
	assert_int_equal(d[6], 0);

	/* MODE SENSE(10) with long LBA descriptors. */
	uint8_t c10[16] = { SCSI_OP_MODE_SENSE_10, 0x10, 0x08, 0, 0, 0, 0, 0, 255 };
	assert_int_equal(data_in_cmd(f->s, c10, 255, d), 0);
	expect_good(8 + 16 + 20);
	assert_int_equal(d[0] << 8 | d[1], 8 + 16 + 20 - 2);
	assert_int_equal(d[3] & 0x80, 0);
	assert_int_equal(d[4] & 1, 1);
	assert_int_equal(d[6] << 8 | d[7], 16);
	assert_int_equal(get64(&d[8]), IMG_BLOCKS);
	assert_int_equal(get32(&d[20]), 512);
	assert_int_equal(d[24], 0x08);

	/* All pages and subpages. */
	c10[1] = 0x08;
	c10[2] = 0x3f;
	c10[3] = 0xff;
	assert_int_equal(data_in_cmd(f->s, c10, 255, d), 0);
	expect_good(8 + 20 + 12);
}

static void test_request_sense(void **state)
{
	struct fx *f = *state;
	uint8_t rs[16] = { SCSI_OP_REQUEST_SENSE, 0, 0, 0, 252 };
	uint8_t d[252];
	struct srb_args a = { .cdb = { 0xc1 }, .cdb_len = 6, .no_sense = true };

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	assert_int_equal(data_in_cmd(f->s, rs, 252, d), 0);
	expect_good(18);
	assert_int_equal(d[0], 0x70);
	assert_int_equal(d[2], SCSI_SK_NO_SENSE);

	/* No sense buffer offered: the error has no autosense, and the
	 * sense waits for REQUEST SENSE. */
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR);
	assert_int_equal(G.pkt.vm_srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, 0);
	assert_int_equal(data_in_cmd(f->s, rs, 252, d), 0);
	expect_good(18);
	assert_int_equal(d[2], SCSI_SK_ILLEGAL_REQUEST);
	assert_int_equal(d[12], 0x20);
	/* Delivered once. */
	assert_int_equal(data_in_cmd(f->s, rs, 252, d), 0);
	assert_int_equal(d[2], SCSI_SK_NO_SENSE);

	/* Descriptor format on request. */
	assert_int_equal(srb(f->s, &a), 0);
	rs[1] = 1;
	assert_int_equal(data_in_cmd(f->s, rs, 252, d), 0);
	expect_good(8);
	assert_int_equal(d[0], 0x72);
	assert_int_equal(d[1], SCSI_SK_ILLEGAL_REQUEST);
	assert_int_equal(d[2], 0x20);

	/* A small sense buffer gets what fits. */
	a.no_sense = false;
	a.sense_len = 8;
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, 8);
	assert_int_equal(G.pkt.vm_srb.sense_data[2], SCSI_SK_ILLEGAL_REQUEST);
}

static void test_read_only(void **state)
{
	struct fx *f = *state;
	struct storvsp_cfg cfg = base_cfg(f->path);
	struct storvsp *ro;
	struct gbuf b;
	struct srb_args a = { .dtl = 4096, .data_in = VMSCSI_WRITE_TYPE, .sgl = &b.sgl };
	struct storvsp_stats st;
	uint8_t d[64];

	cfg.read_only = true;
	assert_int_equal(storvsp_create(&cfg, &ro), 0);
	handshake(ro, VMSTOR_PROTO_VERSION_WIN10);
	gbuf_init(&b, 0, 4096, 10, 1);

	rw_cdb(a.cdb, SCSI_OP_WRITE_10, 0, 8);
	assert_int_equal(srb(ro, &a), 0);
	expect_sense(SCSI_SK_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED, -1);
	rw_cdb(a.cdb, SCSI_OP_WRITE_16, 8, 1);
	assert_int_equal(srb(ro, &a), 0);
	expect_sense(SCSI_SK_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED, -1);

	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, 8);
	a.data_in = VMSCSI_READ_TYPE;
	assert_int_equal(srb(ro, &a), 0);
	expect_good(4096);

	/* MODE SENSE says so (WP). */
	uint8_t c6[16] = { SCSI_OP_MODE_SENSE_6, 0, 0x3f, 0, 64 };
	assert_int_equal(data_in_cmd(ro, c6, 64, d), 0);
	expect_good(44);
	assert_int_equal(d[2] & 0x80, 0x80);

	storvsp_get_stats(ro, &st);
	assert_int_equal(st.bytes_written, 0);
	assert_int_equal(st.scsi_errors, 2);
	storvsp_destroy(ro);
}

static void test_guest_fault(void **state)
{
	struct fx *f = *state;
	const uint32_t bytes = 512 * 1024; /* two bounce chunks */
	struct gbuf b;
	struct srb_args a = { .dtl = bytes, .data_in = VMSCSI_WRITE_TYPE, .sgl = &b.sgl };
	struct storvsp_stats st;

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);

	/* A page outside guest RAM in the first chunk of a write. */
	gbuf_init(&b, 0, bytes, 10, 1);
	b.pfns[3] = NPAGES + 100;
	rw_cdb(a.cdb, SCSI_OP_WRITE_10, 0, bytes / 512);
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR);
	assert_int_not_equal(G.pkt.status, VSTOR_STATUS_SUCCESS);
	assert_int_equal(G.pkt.vm_srb.sense_info_length, 0);
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, 0);

	/* In the second chunk of a read: the first chunk was delivered. */
	gbuf_init(&b, 0, bytes, 10, 1);
	G.fault_pfn = b.pfns[100];
	rw_cdb(a.cdb, SCSI_OP_READ_10, 0, bytes / 512);
	a.data_in = VMSCSI_READ_TYPE;
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR);
	assert_int_equal(G.pkt.vm_srb.data_transfer_length, 256 * 1024);

	/* And for a small data-in command. */
	uint8_t cdb[16] = { SCSI_OP_INQUIRY, 0, 0, 0, 36 };
	memcpy(a.cdb, cdb, 16);
	gbuf_init(&b, 0, 36, (uint64_t)G.fault_pfn, 1);
	a.dtl = 36;
	assert_int_equal(srb(f->s, &a), 0);
	assert_int_equal(G.pkt.vm_srb.srb_status, SRB_STATUS_ERROR);
	G.fault_pfn = -1;

	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.guest_faults, 3);
	assert_int_equal(st.bytes_written, 0);
	assert_int_equal(st.bytes_read, 256 * 1024);
	assert_int_equal(st.protocol_errors, 0);
}

/* The image shrank under the engine: reads past its new end are medium
 * errors, counted, and the request still completes. */
static void test_image_read_error(void **state)
{
	struct fx *f = *state;
	struct gbuf b;
	struct srb_args a = { .dtl = 4096, .data_in = VMSCSI_READ_TYPE, .sgl = &b.sgl };
	struct storvsp_stats st;

	handshake(f->s, VMSTOR_PROTO_VERSION_WIN10);
	gbuf_init(&b, 0, 4096, 10, 1);
	assert_int_equal(truncate(f->path, 1 << 20), 0);
	rw_cdb(a.cdb, SCSI_OP_READ_10, 4000, 8);
	assert_int_equal(srb(f->s, &a), 0);
	expect_sense(SCSI_SK_MEDIUM_ERROR, SCSI_ASC_UNRECOVERED_READ_ERROR, -1);
	rw_cdb(a.cdb, SCSI_OP_READ_10, 100, 8); /* still there */
	assert_int_equal(srb(f->s, &a), 0);
	expect_good(4096);
	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.io_errors, 1);
}

static void test_complete_error_passed_back(void **state)
{
	struct fx *f = *state;
	struct storvsp_stats st;

	G.complete_err = -ENOTCONN;
	assert_int_equal(send_op(f->s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0), -ENOTCONN);
	assert_int_equal(send_op(f->s, 77, 64, 0), -ENOTCONN);
	G.complete_err = 0;
	storvsp_get_stats(f->s, &st);
	assert_int_equal(st.send_errors, 2);
	assert_int_equal(st.protocol_errors, 1);
}

static void test_create_errors(void **state)
{
	char path[64];
	struct storvsp_cfg cfg = base_cfg("/nonexistent/disk.img");
	struct storvsp *s = (void *)1;
	int fd;

	assert_int_equal(storvsp_create(&cfg, &s), -ENOENT);
	assert_null(s);

	assert_int_equal(make_image(path, 1000), 0); /* not a multiple of 512 */
	cfg.path = path;
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	fd = open(path, O_WRONLY | O_TRUNC);
	close(fd);
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL); /* empty */
	assert_int_equal(truncate(path, 1 << 20), 0);

	cfg.vendor = "TOO-LONG-VENDOR";
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.vendor = "bad\n";
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.vendor = NULL;
	cfg.serial = "";
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.serial = NULL;
	cfg.max_transfer_bytes = 100;
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.max_transfer_bytes = 64 << 20;
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.max_transfer_bytes = 0;
	cfg.ops = NULL;
	assert_int_equal(storvsp_create(&cfg, &s), -EINVAL);
	cfg.ops = &ops;

	/* Defaults: derived serial, rounded max transfer. */
	cfg.max_transfer_bytes = 65536 + 100;
	assert_int_equal(storvsp_create(&cfg, &s), 0);
	assert_int_equal(storvsp_nblocks(s), 2048);
	expect_op(s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 64, 0, 0, 0, 64);
	expect_op(s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, 64, VMSTOR_PROTO_VERSION_WIN8, 0, 0,
		  64);
	expect_op(s, VSTOR_OPERATION_QUERY_PROPERTIES, 64, 0, 0, 0, 64);
	assert_int_equal(G.pkt.storage_channel_properties.max_transfer_bytes, 65536);
	storvsp_destroy(s);
	storvsp_destroy(NULL);
	unlink(path);
}

/* The completion a stub synthesizes when the serving node is gone. */
static void test_fail_request(void **state)
{
	struct vstor_packet req, out;
	uint32_t len = 0;

	memset(&req, 0, sizeof(req));
	req.operation = VSTOR_OPERATION_EXECUTE_SRB;
	req.vm_srb.cdb_length = 16;
	req.vm_srb.cdb[0] = 0x88; /* READ(16) */
	req.vm_srb.data_in = 1;
	req.vm_srb.data_transfer_length = 8192;
	req.vm_srb.sense_info_length = VMSCSI_SENSE_BUFFER_SIZE;
	assert_int_equal(
		storvsp_fail_request(VMSTOR_PROTO_VERSION_WIN8, &req, sizeof(req), &out, &len), 0);
	assert_int_equal(len, sizeof(req));
	assert_int_equal(out.operation, VSTOR_OPERATION_COMPLETE_IO);
	assert_int_not_equal(out.status, 0);
	assert_int_equal(out.vm_srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(out.vm_srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(out.vm_srb.data_transfer_length, 0);
	assert_int_equal(out.vm_srb.sense_data[2], SCSI_SK_NOT_READY);
	assert_int_equal(out.vm_srb.sense_data[12], 0x08); /* LUN communication failure */
	assert_int_equal(out.vm_srb.sense_data[13], 0x00);

	/* Garbage is still answered (with a failure), and reported. */
	memset(&req, 0xee, sizeof(req));
	assert_int_equal(storvsp_fail_request(VMSTOR_PROTO_VERSION_WIN8, &req, 10, &out, &len),
			 -EBADMSG);
	assert_int_equal(out.operation, VSTOR_OPERATION_COMPLETE_IO);
	assert_int_not_equal(out.status, 0);
	assert_true(len >= 48 && len <= sizeof(out));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_out_of_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pre_win8_packet_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_and_garbage_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry_standard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry_vpd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lba_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_opcode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_cdb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_synchronize_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_luns_and_addressing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_fault, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_read_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_error_passed_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
		cmocka_unit_test(test_fail_request),
	};

	/* The engine logs rejected guest packets as warnings; keep the test
	 * output to errors. */
	fab_log_init("test_storvsp", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
