// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the storage VSP engine: the input is cut into
 * packets (each with an optional fake guest buffer) fed to storvsp_handle,
 * usually after a proper handshake. The image is a small memfd, guest RAM
 * a static buffer addressed by fake PFNs. Besides ASan/UBSan findings, it
 * traps when a packet does not get exactly one completion, when a
 * completion has a bad length, or when the engine copies past the buffer
 * it was given.
 *
 * Input: byte 0 = setup (bit 0: skip the handshake, bits 1-3: protocol
 * version, bit 4: read-only image); then per packet: len (mod 81), mode
 * (bits 0-1: buffer, 3 = one whose pages cover it; bit 2: force
 * EXECUTE_SRB; bit 3: make the SRB well-formed; bit 4: pick a supported
 * opcode; bit 5: and a served VPD page), buffer description if any, then
 * len payload bytes. The steering bits only help the fuzzer reach deep
 * states without a corpus; every byte still comes from the input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fab/log.h"
#include "fab/vstor.h"
#include "storvsp.h"

#define PAGE	    4096u
#define RAM_PAGES   64u
#define IMAGE_BYTES (256u << 10)
#define MAX_PFNS    300u
#define MAX_PKT	    80u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t ram[RAM_PAGES * PAGE];
static char image_path[64];
static unsigned completions;

static int fz_copy(const struct storvsp_sgl *sgl, uint64_t off, uint8_t *buf, size_t len,
		   bool to_guest)
{
	uint64_t pos;

	/* The engine's promise: never beyond the buffer it was handed. */
	if (off > sgl->byte_count || len > sgl->byte_count - off)
		__builtin_trap();
	pos = sgl->byte_offset + off;
	while (len) {
		uint64_t idx = pos / PAGE, in = pos % PAGE, pfn;
		size_t n = len < PAGE - in ? len : PAGE - in;

		if (idx >= sgl->npfns)
			__builtin_trap(); /* the engine accepted a range its pages do not cover */
		pfn = sgl->pfns[idx];
		if (pfn >= RAM_PAGES)
			return -EFAULT;
		if (to_guest)
			memcpy(ram + pfn * PAGE + in, buf, n);
		else
			memcpy(buf, ram + pfn * PAGE + in, n);
		buf += n;
		pos += n;
		len -= n;
	}
	return 0;
}

static int fz_complete(void *ctx, uint64_t trans_id, const void *pkt, uint32_t len)
{
	struct vstor_packet copy;

	if (len < VSTOR_PACKET_HEADER_SIZE || len > sizeof(copy))
		__builtin_trap();
	memcpy(&copy, pkt, len); /* ASan checks every byte is readable */
	if (copy.operation != VSTOR_OPERATION_COMPLETE_IO)
		__builtin_trap();
	if (len >= VSTOR_PACKET_HEADER_SIZE + 10 &&
	    copy.vm_srb.sense_info_length > VMSCSI_UNION_SIZE)
		__builtin_trap();
	completions++;
	return 0;
}

static int fz_to_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset, const void *src,
		       size_t len)
{
	return fz_copy(sgl, offset, (uint8_t *)src, len, true);
}

static int fz_from_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset, void *dst,
			 size_t len)
{
	return fz_copy(sgl, offset, dst, len, false);
}

static const struct storvsp_dev_ops fz_ops = {
	.complete = fz_complete,
	.copy_to_guest = fz_to_guest,
	.copy_from_guest = fz_from_guest,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd = memfd_create("fuzz_storvsp", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, IMAGE_BYTES) < 0) {
		perror("fuzz_storvsp: memfd");
		exit(1);
	}
	/* The engine opens a path; the memfd stays open for the whole run. */
	snprintf(image_path, sizeof(image_path), "/proc/self/fd/%d", fd);
	fab_log_init("fuzz_storvsp", FAB_LOG_ERR);
	return 0;
}

struct cursor {
	const uint8_t *p;
	size_t left;
};

static uint32_t take(struct cursor *c, unsigned nbytes)
{
	uint32_t v = 0;

	while (nbytes--) {
		v <<= 8;
		if (c->left) {
			v |= *c->p++;
			c->left--;
		}
	}
	return v;
}

static void feed(struct storvsp *s, uint32_t op, uint16_t version)
{
	struct vstor_packet p;

	memset(&p, 0, sizeof(p));
	p.operation = op;
	p.version.major_minor = version;
	storvsp_handle(s, &p, sizeof(p), 1, NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t versions[] = {
		VMSTOR_PROTO_VERSION_WIN10, VMSTOR_PROTO_VERSION_WIN8_1, VMSTOR_PROTO_VERSION_WIN8,
		VMSTOR_PROTO_VERSION_WIN7,  VMSTOR_PROTO_VERSION_WIN6,
	};
	static const uint8_t opcodes[] = {
		SCSI_OP_TEST_UNIT_READY,
		SCSI_OP_REQUEST_SENSE,
		SCSI_OP_READ_6,
		SCSI_OP_WRITE_6,
		SCSI_OP_INQUIRY,
		SCSI_OP_MODE_SENSE_6,
		SCSI_OP_START_STOP_UNIT,
		SCSI_OP_READ_CAPACITY_10,
		SCSI_OP_READ_10,
		SCSI_OP_WRITE_10,
		SCSI_OP_SYNCHRONIZE_CACHE_10,
		SCSI_OP_MODE_SENSE_10,
		SCSI_OP_READ_16,
		SCSI_OP_WRITE_16,
		SCSI_OP_SYNCHRONIZE_CACHE_16,
		SCSI_OP_SERVICE_ACTION_IN_16,
		SCSI_OP_REPORT_LUNS,
		SCSI_OP_READ_12,
		SCSI_OP_WRITE_12,
	};
	static const uint8_t vpd_pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2, 0x89 };
	struct cursor c = { data, size };
	struct storvsp_cfg cfg = { .path = image_path, .ops = &fz_ops };
	static uint64_t pfns[MAX_PFNS];
	struct storvsp *s;
	uint32_t setup = take(&c, 1);
	uint64_t tid = 100;

	cfg.read_only = setup & 0x10;
	if (storvsp_create(&cfg, &s))
		__builtin_trap();
	if (!(setup & 1)) {
		feed(s, VSTOR_OPERATION_BEGIN_INITIALIZATION, 0);
		feed(s, VSTOR_OPERATION_QUERY_PROTOCOL_VERSION, versions[((setup >> 1) & 7) % 5]);
		feed(s, VSTOR_OPERATION_QUERY_PROPERTIES, 0);
		feed(s, VSTOR_OPERATION_END_INITIALIZATION, 0);
	}

	while (c.left) {
		uint8_t pkt[MAX_PKT] = { 0 };
		struct storvsp_sgl sgl = { 0 }, *sglp = NULL;
		uint32_t len = take(&c, 1) % (MAX_PKT + 1);
		uint32_t mode = take(&c, 1);
		unsigned before = completions;

		if (mode & 3) {
			uint32_t first = take(&c, 1), stride = take(&c, 1);

			sgl.byte_offset = take(&c, 2) % (PAGE + 64);
			sgl.byte_count = take(&c, 3) % ((MAX_PFNS - 1) * PAGE);
			sgl.npfns = take(&c, 2) % (MAX_PFNS + 1);
			if ((mode & 3) == 3) {
				sgl.byte_offset %= PAGE;
				sgl.npfns = (sgl.byte_offset + sgl.byte_count + PAGE - 1) / PAGE;
			}
			for (uint32_t i = 0; i < sgl.npfns; i++)
				pfns[i] = (first + i * stride) %
					  (RAM_PAGES + 2); /* a few outside RAM */
			sgl.pfns = pfns;
			sglp = &sgl;
		}
		for (uint32_t i = 0; i < len && c.left; i++)
			pkt[i] = (uint8_t)take(&c, 1);
		if (mode & 4) {
			struct vstor_packet *vp = (struct vstor_packet *)pkt;

			vp->operation = VSTOR_OPERATION_EXECUTE_SRB;
			if (mode & 8) {
				vp->vm_srb.cdb_length = 1 + vp->vm_srb.cdb_length % 16;
				if (!sglp)
					vp->vm_srb.data_transfer_length = 0;
				else if (vp->vm_srb.data_transfer_length > sgl.byte_count)
					vp->vm_srb.data_transfer_length = sgl.byte_count;
			}
			if (mode & 16)
				vp->vm_srb.cdb[0] = opcodes[vp->vm_srb.cdb[0] % sizeof(opcodes)];
			if ((mode & 32) && vp->vm_srb.cdb[0] == SCSI_OP_SERVICE_ACTION_IN_16) {
				vp->vm_srb.cdb[1] = SCSI_SAI_READ_CAPACITY_16;
			} else if (mode & 32) {
				vp->vm_srb.cdb[1] = 1; /* EVPD */
				vp->vm_srb.cdb[2] =
					vpd_pages[vp->vm_srb.cdb[2] % sizeof(vpd_pages)];
			}
		}
		storvsp_handle(s, pkt, len, tid++, sglp, NULL);
		/* One packet, one completion. */
		if (completions != before + 1)
			__builtin_trap();
	}
	storvsp_destroy(s);
	return 0;
}
