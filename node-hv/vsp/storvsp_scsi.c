// SPDX-License-Identifier: MIT
/*
 * Storage VSP, SCSI half: a direct-access block device (SPC-4 / SBC-3
 * subset) on a raw image, with the commands a Linux or Windows guest issues
 * to a disk. Commands are looked up in a table by opcode that also gives
 * the CDB length each needs; everything a command does not like ends in
 * CHECK CONDITION with fixed-format sense (autosense), never in a dropped
 * request.
 *
 * Data moves between the image and the guest buffer in chunks through the
 * bounce buffer; a guest buffer that turns out to be outside guest RAM
 * fails the request with SRB_STATUS_ERROR (no SCSI status: the "HBA"
 * could not do its DMA). The direction of a transfer comes from the
 * opcode; the SRB's data_in is advisory and not trusted.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fab/log.h"
#include "storvsp_int.h"

#define INQUIRY_STD_LEN	  36
#define VPD_LEN_LIMITS	  64 /* Block Limits and Block Device Characteristics: 0x3c + 4 */
#define SCSI_VERSION_SPC4 0x06
#define FIELD_NONE	  (-1)

/* SCSI fields are big-endian. */
static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* ---- outcomes -------------------------------------------------------------- */

static void scsi_good(struct storvsp_io *io)
{
	io->srb_status = SRB_STATUS_SUCCESS;
	io->scsi_status = SCSI_STATUS_GOOD;
}

/*
 * CHECK CONDITION with fixed-format sense. field, when not FIELD_NONE, is
 * the CDB byte at fault, reported in the sense-key specific bytes (SKSV,
 * C/D = command) so a guest or an admin can see which field was refused.
 */
static void scsi_check(struct storvsp *s, struct storvsp_io *io, uint8_t key, uint16_t asc,
		       int field)
{
	uint8_t sense[SCSI_SENSE_FIXED_SIZE] = { 0 };

	sense[0] = SCSI_SENSE_FIXED_CURRENT;
	sense[2] = key;
	sense[7] = SCSI_SENSE_FIXED_SIZE - 8; /* additional sense length */
	sense[12] = (uint8_t)(asc >> 8);
	sense[13] = (uint8_t)asc;
	if (field != FIELD_NONE) {
		sense[15] = 0x80 | 0x40; /* SKSV, C/D */
		put_be16(&sense[16], (uint16_t)field);
	}

	io->scsi_status = SCSI_STATUS_CHECK_CONDITION;
	io->srb_status = SRB_STATUS_ERROR;
	if (io->sense_cap) {
		io->sense_len = (uint8_t)min_u32(sizeof(sense), io->sense_cap);
		memcpy(io->sense, sense, io->sense_len);
		io->srb_status |= SRB_STATUS_AUTOSENSE_VALID;
	} else {
		/* No autosense buffer: SPC keeps the sense for REQUEST SENSE. */
		memcpy(s->pending_sense, sense, sizeof(sense));
		s->has_pending_sense = true;
	}
}

static void scsi_invalid_field(struct storvsp *s, struct storvsp_io *io, int field)
{
	scsi_check(s, io, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB, field);
}

static void scsi_guest_fault(struct storvsp *s, struct storvsp_io *io, int err)
{
	char note[48];

	storvsp_count(&s->stats.guest_faults, 1);
	if (storvsp_ratelimit(&s->rl_guest, note, sizeof(note)))
		fab_warn("storvsp: guest buffer of SRB opcode 0x%02x not accessible: %s%s",
			 io->req->cdb[0], strerror(-err), note);
	io->srb_status = SRB_STATUS_ERROR;
	io->scsi_status = SCSI_STATUS_GOOD;
}

static void scsi_io_error(struct storvsp *s, struct storvsp_io *io, const char *what, int err,
			  uint8_t key, uint16_t asc)
{
	char note[48];

	storvsp_count(&s->stats.io_errors, 1);
	if (storvsp_ratelimit(&s->rl_io, note, sizeof(note)))
		fab_err("storvsp: image %s failed: %s%s", what, strerror(-err), note);
	scsi_check(s, io, key, asc, FIELD_NONE);
}

/* Returns data (len bytes) to the guest, cut to the allocation length and
 * to the guest buffer, and completes the command. */
static void scsi_data_in(struct storvsp *s, struct storvsp_io *io, const void *data, uint32_t len,
			 uint32_t alloc)
{
	uint32_t n = min_u32(min_u32(len, alloc), io->dtl);
	int err;

	if (n) {
		err = s->ops->copy_to_guest(io->ctx, io->sgl, 0, data, n);
		if (err) {
			scsi_guest_fault(s, io, err);
			return;
		}
	}
	io->moved = n;
	scsi_good(io);
}

/* ---- INQUIRY --------------------------------------------------------------- */

static uint32_t inquiry_std(const struct storvsp *s, uint8_t *b, bool present)
{
	memset(b, 0, INQUIRY_STD_LEN);
	/* Peripheral qualifier 3, type 0x1f: no logical unit here. */
	b[0] = present ? 0x00 : 0x7f;
	b[2] = SCSI_VERSION_SPC4;
	b[3] = 0x10 | 0x02; /* HISUP, response data format 2 */
	b[4] = INQUIRY_STD_LEN - 5;
	b[7] = 0x02; /* CMDQUE: commands complete in order anyway */
	if (present) {
		memcpy(&b[8], s->vendor, STORVSP_VENDOR_LEN);
		memcpy(&b[16], s->product, STORVSP_PRODUCT_LEN);
		memcpy(&b[32], "0001", 4);
	}
	return INQUIRY_STD_LEN;
}

static uint32_t vpd_header(uint8_t *b, uint8_t page, uint16_t len)
{
	b[0] = 0x00; /* connected direct-access device */
	b[1] = page;
	put_be16(&b[2], len);
	return 4u + len;
}

static uint32_t vpd_supported(uint8_t *b)
{
	static const uint8_t pages[] = {
		SCSI_VPD_SUPPORTED_PAGES, SCSI_VPD_UNIT_SERIAL,	    SCSI_VPD_DEVICE_ID,
		SCSI_VPD_BLOCK_LIMITS,	  SCSI_VPD_BLOCK_DEV_CHARS, SCSI_VPD_LB_PROVISIONING,
	};

	memcpy(&b[4], pages, sizeof(pages));
	return vpd_header(b, SCSI_VPD_SUPPORTED_PAGES, sizeof(pages));
}

static uint32_t vpd_serial(const struct storvsp *s, uint8_t *b)
{
	size_t n = strlen(s->serial);

	memcpy(&b[4], s->serial, n);
	return vpd_header(b, SCSI_VPD_UNIT_SERIAL, (uint16_t)n);
}

/* Two logical-unit designators: NAA 3 (locally assigned, 8 bytes, what
 * Linux prefers for its wwid) and T10 vendor id (vendor, product, serial). */
static uint32_t vpd_device_id(const struct storvsp *s, uint8_t *b)
{
	size_t sn = strlen(s->serial);
	uint8_t *d = &b[4];

	d[0] = 0x01; /* code set binary */
	d[1] = 0x03; /* association LU, type NAA */
	d[2] = 0;
	d[3] = 8;
	put_be64(&d[4], s->naa);
	d += 12;

	d[0] = 0x02; /* code set ASCII */
	d[1] = 0x01; /* association LU, type T10 vendor id */
	d[2] = 0;
	d[3] = (uint8_t)(STORVSP_VENDOR_LEN + STORVSP_PRODUCT_LEN + sn);
	memcpy(&d[4], s->vendor, STORVSP_VENDOR_LEN);
	memcpy(&d[4 + STORVSP_VENDOR_LEN], s->product, STORVSP_PRODUCT_LEN);
	memcpy(&d[4 + STORVSP_VENDOR_LEN + STORVSP_PRODUCT_LEN], s->serial, sn);
	d += 4 + d[3];

	return vpd_header(b, SCSI_VPD_DEVICE_ID, (uint16_t)(d - &b[4]));
}

static uint32_t vpd_block_limits(const struct storvsp *s, uint8_t *b)
{
	uint32_t max_blocks = s->max_transfer / STORVSP_BLOCK_SIZE;

	memset(b, 0, VPD_LEN_LIMITS);
	/* Optimal granularity 4 KiB: guests align to it and the host page
	 * cache does not have to read-modify-write. No UNMAP, no WRITE SAME. */
	put_be16(&b[6], 4096 / STORVSP_BLOCK_SIZE);
	put_be32(&b[8], max_blocks);
	put_be32(&b[12], max_blocks);
	return vpd_header(b, SCSI_VPD_BLOCK_LIMITS, VPD_LEN_LIMITS - 4);
}

static uint32_t vpd_block_chars(uint8_t *b)
{
	memset(b, 0, VPD_LEN_LIMITS);
	/* Medium rotation rate 1: non-rotating, so guests skip seek
	 * optimisations that mean nothing for an image file. */
	put_be16(&b[4], 0x0001);
	return vpd_header(b, SCSI_VPD_BLOCK_DEV_CHARS, VPD_LEN_LIMITS - 4);
}

static uint32_t vpd_provisioning(uint8_t *b)
{
	/* No UNMAP/WRITE SAME unmapping, provisioning type 0 (full); LBPME
	 * stays clear in READ CAPACITY(16), so guests do not ask anyway. */
	memset(b, 0, 8);
	return vpd_header(b, SCSI_VPD_LB_PROVISIONING, 4);
}

static void scsi_inquiry(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint8_t buf[256];
	uint32_t alloc = get_be16(&cdb[3]);
	bool evpd = cdb[1] & 0x01;
	uint32_t len;

	if (cdb[1] & 0xfe) { /* CMDDT (obsolete) and reserved bits */
		scsi_invalid_field(s, io, 1);
		return;
	}
	if (!evpd) {
		if (cdb[2]) {
			scsi_invalid_field(s, io, 2);
			return;
		}
		len = inquiry_std(s, buf, true);
	} else {
		switch (cdb[2]) {
		case SCSI_VPD_SUPPORTED_PAGES:
			len = vpd_supported(buf);
			break;
		case SCSI_VPD_UNIT_SERIAL:
			len = vpd_serial(s, buf);
			break;
		case SCSI_VPD_DEVICE_ID:
			len = vpd_device_id(s, buf);
			break;
		case SCSI_VPD_BLOCK_LIMITS:
			len = vpd_block_limits(s, buf);
			break;
		case SCSI_VPD_BLOCK_DEV_CHARS:
			len = vpd_block_chars(buf);
			break;
		case SCSI_VPD_LB_PROVISIONING:
			len = vpd_provisioning(buf);
			break;
		default:
			scsi_invalid_field(s, io, 2);
			return;
		}
	}
	scsi_data_in(s, io, buf, len, alloc);
}

/* INQUIRY to an address with no disk: standard data saying so (how a
 * guest scanning the bus learns there is nothing), VPD refused. */
static void scsi_inquiry_absent(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint8_t buf[INQUIRY_STD_LEN];

	if ((cdb[1] & 0x01) || cdb[2]) {
		scsi_invalid_field(s, io, cdb[2] ? 2 : 1);
		return;
	}
	scsi_data_in(s, io, buf, inquiry_std(s, buf, false), get_be16(&cdb[3]));
}

/* ---- capacity, LUNs, sense, mode pages ------------------------------------- */

static void scsi_read_capacity10(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint64_t last = s->be.nblocks - 1;
	uint8_t buf[8];

	/* With PMI clear the LBA field must be zero (SBC-3 5.15). */
	if (!(cdb[8] & 0x01) && get_be32(&cdb[2])) {
		scsi_invalid_field(s, io, 2);
		return;
	}
	/* All ones tells the guest to ask READ CAPACITY(16). */
	put_be32(&buf[0], last > 0xfffffffeull ? 0xffffffffu : (uint32_t)last);
	put_be32(&buf[4], STORVSP_BLOCK_SIZE);
	scsi_data_in(s, io, buf, sizeof(buf), sizeof(buf));
}

static void scsi_service_action_in(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint8_t buf[32] = { 0 };

	if ((cdb[1] & 0x1f) != SCSI_SAI_READ_CAPACITY_16) {
		scsi_invalid_field(s, io, 1);
		return;
	}
	put_be64(&buf[0], s->be.nblocks - 1);
	put_be32(&buf[8], STORVSP_BLOCK_SIZE);
	/* No protection information, one logical block per physical block,
	 * LBPME clear: fully provisioned. */
	scsi_data_in(s, io, buf, sizeof(buf), get_be32(&cdb[10]));
}

static void scsi_report_luns(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint8_t buf[16] = { 0 };
	uint32_t alloc = get_be32(&cdb[6]);
	uint32_t nluns;

	if (cdb[2] > 0x02) { /* SELECT REPORT: 0 all, 1 well known, 2 all */
		scsi_invalid_field(s, io, 2);
		return;
	}
	if (alloc < 16) { /* SPC-4 6.33 */
		scsi_invalid_field(s, io, 6);
		return;
	}
	/* The one disk is LUN 0 of path 0, target 0; well-known LUNs: none. */
	nluns = (cdb[2] != 0x01 && !io->req->path_id && !io->req->target_id) ? 1 : 0;
	put_be32(&buf[0], nluns * 8);
	/* LUN 0 is eight zero bytes. */
	scsi_data_in(s, io, buf, 8 + nluns * 8, alloc);
}

static void scsi_request_sense(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	uint8_t buf[SCSI_SENSE_FIXED_SIZE] = { 0 };
	uint32_t len;

	if (cdb[1] & 0xfe) {
		scsi_invalid_field(s, io, 1);
		return;
	}
	if (s->has_pending_sense) {
		memcpy(buf, s->pending_sense, sizeof(buf));
	} else {
		buf[0] = SCSI_SENSE_FIXED_CURRENT;
		buf[7] = SCSI_SENSE_FIXED_SIZE - 8;
	}
	s->has_pending_sense = false;

	if (cdb[1] & 0x01) {
		/* DESC: the same key and code in descriptor format, no
		 * descriptors. */
		uint8_t key = buf[2] & 0x0f, asc = buf[12], ascq = buf[13];

		memset(buf, 0, sizeof(buf));
		buf[0] = SCSI_SENSE_DESC_CURRENT;
		buf[1] = key;
		buf[2] = asc;
		buf[3] = ascq;
		len = 8;
	} else {
		len = SCSI_SENSE_FIXED_SIZE;
	}
	scsi_data_in(s, io, buf, len, cdb[4]);
}

/* Appends mode page `page` (current or changeable values) at b. */
static uint32_t mode_page(uint8_t *b, uint8_t page, bool changeable)
{
	switch (page) {
	case SCSI_MODE_PAGE_CACHING:
		memset(b, 0, 20);
		b[0] = SCSI_MODE_PAGE_CACHING;
		b[1] = 18;
		/* WCE: writes land in the host page cache and are durable
		 * only after SYNCHRONIZE CACHE, which guests then send. */
		if (!changeable)
			b[2] = 0x04;
		return 20;
	case SCSI_MODE_PAGE_CONTROL:
		memset(b, 0, 12);
		b[0] = SCSI_MODE_PAGE_CONTROL;
		b[1] = 10;
		/* D_SENSE clear: we report fixed-format sense. */
		return 12;
	default:
		return 0;
	}
}

static void scsi_mode_sense(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	bool ten = cdb[0] == SCSI_OP_MODE_SENSE_10;
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f, subpage = cdb[3];
	uint32_t alloc = ten ? get_be16(&cdb[7]) : cdb[4];
	uint32_t hdr = ten ? 8 : 4, bd = 0, len, pages = 0;
	uint8_t buf[128] = { 0 };
	uint8_t *p;

	if (pc == 3) { /* saved values */
		scsi_check(s, io, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_SAVING_PARAMS_UNSUPPORTED, 2);
		return;
	}
	if (page == SCSI_MODE_PAGE_ALL) {
		if (subpage != 0x00 && subpage != 0xff) {
			scsi_invalid_field(s, io, 3);
			return;
		}
	} else if (subpage) {
		scsi_invalid_field(s, io, 3);
		return;
	} else if (page != SCSI_MODE_PAGE_CACHING && page != SCSI_MODE_PAGE_CONTROL) {
		scsi_invalid_field(s, io, 2);
		return;
	}

	if (!dbd) {
		bd = llbaa ? 16 : 8;
		p = &buf[hdr];
		if (llbaa) {
			put_be64(&p[0], s->be.nblocks);
			put_be32(&p[12], STORVSP_BLOCK_SIZE);
		} else {
			/* Short descriptor: 24-bit block count, all ones if
			 * bigger (SBC-3 6.4.2). */
			put_be32(&p[0],
				 s->be.nblocks > 0xffffff ? 0xffffff : (uint32_t)s->be.nblocks);
			put_be32(&p[4], STORVSP_BLOCK_SIZE);
		}
	}
	p = &buf[hdr + bd];
	if (page == SCSI_MODE_PAGE_ALL) {
		pages = mode_page(p, SCSI_MODE_PAGE_CACHING, pc == 1);
		pages += mode_page(p + pages, SCSI_MODE_PAGE_CONTROL, pc == 1);
	} else {
		pages = mode_page(p, page, pc == 1);
	}
	len = hdr + bd + pages;

	/* Device-specific parameter: WP for a read-only image. DPOFUA stays
	 * clear: guests flush with SYNCHRONIZE CACHE instead of FUA. */
	if (ten) {
		put_be16(&buf[0], (uint16_t)(len - 2));
		buf[3] = s->be.read_only ? 0x80 : 0x00;
		buf[4] = llbaa && bd ? 0x01 : 0x00; /* LONGLBA */
		put_be16(&buf[6], (uint16_t)bd);
	} else {
		buf[0] = (uint8_t)(len - 1);
		buf[2] = s->be.read_only ? 0x80 : 0x00;
		buf[3] = (uint8_t)bd;
	}
	scsi_data_in(s, io, buf, len, alloc);
}

static void scsi_test_unit_ready(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	scsi_good(io);
}

/* Power conditions and medium loading mean nothing for an image. */
static void scsi_start_stop(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	scsi_good(io);
}

/* ---- READ, WRITE, SYNCHRONIZE CACHE ---------------------------------------- */

static bool lba_range_ok(const struct storvsp *s, uint64_t lba, uint64_t nblocks)
{
	return lba < s->be.nblocks && nblocks <= s->be.nblocks - lba;
}

static int image_pread(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the image shrank under us */
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int image_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int image_flush(struct storvsp *s)
{
	int err = 0;

	storvsp_count(&s->stats.flushes, 1);
	while (fdatasync(s->be.fd) < 0) {
		if (errno != EINTR) {
			err = -errno;
			break;
		}
	}
	return err;
}

static void scsi_rw(struct storvsp *s, struct storvsp_io *io, uint64_t lba, uint32_t nblocks,
		    bool write, bool fua, int len_field)
{
	uint64_t base = lba * STORVSP_BLOCK_SIZE;
	uint64_t nbytes = (uint64_t)nblocks * STORVSP_BLOCK_SIZE;
	uint64_t done = 0;
	int err;

	if (!lba_range_ok(s, lba, nblocks)) {
		scsi_check(s, io, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, FIELD_NONE);
		return;
	}
	/* Larger than the Block Limits page promised (SBC-3 6.5.3), or than
	 * the buffer the guest gave for it. */
	if (nbytes > s->max_transfer || nbytes > io->dtl) {
		scsi_invalid_field(s, io, len_field);
		return;
	}
	if (write && s->be.read_only) {
		scsi_check(s, io, SCSI_SK_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED, FIELD_NONE);
		return;
	}

	while (done < nbytes) {
		size_t n = nbytes - done < STORVSP_BOUNCE_BYTES ? (size_t)(nbytes - done)
								: STORVSP_BOUNCE_BYTES;

		if (write) {
			err = s->ops->copy_from_guest(io->ctx, io->sgl, done, s->bounce, n);
			if (err) {
				scsi_guest_fault(s, io, err);
				break;
			}
			err = image_pwrite(s->be.fd, s->bounce, n, base + done);
			if (err) {
				scsi_io_error(s, io, "write", err, SCSI_SK_MEDIUM_ERROR,
					      SCSI_ASC_WRITE_ERROR);
				break;
			}
			storvsp_count(&s->stats.bytes_written, n);
		} else {
			err = image_pread(s->be.fd, s->bounce, n, base + done);
			if (err) {
				scsi_io_error(s, io, "read", err, SCSI_SK_MEDIUM_ERROR,
					      SCSI_ASC_UNRECOVERED_READ_ERROR);
				break;
			}
			err = s->ops->copy_to_guest(io->ctx, io->sgl, done, s->bounce, n);
			if (err) {
				scsi_guest_fault(s, io, err);
				break;
			}
			storvsp_count(&s->stats.bytes_read, n);
		}
		done += n;
	}
	io->moved = (uint32_t)done;
	if (done < nbytes)
		return;

	/* FUA is not advertised, but a guest may still set it: honour it. */
	if (write && fua && nbytes) {
		err = image_flush(s);
		if (err) {
			scsi_io_error(s, io, "flush", err, SCSI_SK_MEDIUM_ERROR,
				      SCSI_ASC_WRITE_ERROR);
			return;
		}
	}
	scsi_good(io);
}

/* READ/WRITE(6, 10, 12, 16). Without protection information RDPROTECT and
 * WRPROTECT must be zero (SBC-3 5.8). */
static void scsi_read_write(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	bool write = false, fua = false;
	uint64_t lba;
	uint32_t nblocks;
	int len_field;

	switch (cdb[0]) {
	case SCSI_OP_WRITE_6:
		write = true;
		/* fall through */
	case SCSI_OP_READ_6:
		lba = get_be24(&cdb[1]) & 0x1fffff;
		nblocks = cdb[4] ? cdb[4] : 256; /* 0 means 256 here */
		len_field = 4;
		break;
	case SCSI_OP_WRITE_10:
	case SCSI_OP_WRITE_12:
	case SCSI_OP_WRITE_16:
		write = true;
		/* fall through */
	default:
		if (cdb[1] & 0xe0) {
			scsi_invalid_field(s, io, 1);
			return;
		}
		fua = cdb[1] & 0x08;
		if (cdb[0] == SCSI_OP_READ_10 || cdb[0] == SCSI_OP_WRITE_10) {
			lba = get_be32(&cdb[2]);
			nblocks = get_be16(&cdb[7]);
			len_field = 7;
		} else if (cdb[0] == SCSI_OP_READ_12 || cdb[0] == SCSI_OP_WRITE_12) {
			lba = get_be32(&cdb[2]);
			nblocks = get_be32(&cdb[6]);
			len_field = 6;
		} else {
			lba = get_be64(&cdb[2]);
			nblocks = get_be32(&cdb[10]);
			len_field = 10;
		}
		break;
	}
	scsi_rw(s, io, lba, nblocks, write, fua, len_field);
}

static void scsi_sync_cache(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb)
{
	bool sixteen = cdb[0] == SCSI_OP_SYNCHRONIZE_CACHE_16;
	uint64_t lba = sixteen ? get_be64(&cdb[2]) : get_be32(&cdb[2]);
	uint32_t nblocks = sixteen ? get_be32(&cdb[10]) : get_be16(&cdb[7]);
	int err;

	/* Zero blocks means "to the end"; the range must still exist. */
	if (!lba_range_ok(s, lba, nblocks)) {
		scsi_check(s, io, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, FIELD_NONE);
		return;
	}
	/* The whole file is flushed whatever the range: fdatasync has no
	 * finer grain worth the trouble. IMMED is ignored: we answer when
	 * the data is durable, which is always allowed. */
	if (!s->be.read_only) {
		err = image_flush(s);
		if (err) {
			scsi_io_error(s, io, "flush", err, SCSI_SK_MEDIUM_ERROR,
				      SCSI_ASC_WRITE_ERROR);
			return;
		}
	}
	scsi_good(io);
}

/* ---- dispatch -------------------------------------------------------------- */

struct scsi_cmd {
	uint8_t cdb_len; /* 0: not supported */
	void (*run)(struct storvsp *s, struct storvsp_io *io, const uint8_t *cdb);
};

static const struct scsi_cmd scsi_cmds[256] = {
	[SCSI_OP_TEST_UNIT_READY] = { 6, scsi_test_unit_ready },
	[SCSI_OP_REQUEST_SENSE] = { 6, scsi_request_sense },
	[SCSI_OP_READ_6] = { 6, scsi_read_write },
	[SCSI_OP_WRITE_6] = { 6, scsi_read_write },
	[SCSI_OP_INQUIRY] = { 6, scsi_inquiry },
	[SCSI_OP_MODE_SENSE_6] = { 6, scsi_mode_sense },
	[SCSI_OP_START_STOP_UNIT] = { 6, scsi_start_stop },
	[SCSI_OP_READ_CAPACITY_10] = { 10, scsi_read_capacity10 },
	[SCSI_OP_READ_10] = { 10, scsi_read_write },
	[SCSI_OP_WRITE_10] = { 10, scsi_read_write },
	[SCSI_OP_SYNCHRONIZE_CACHE_10] = { 10, scsi_sync_cache },
	[SCSI_OP_MODE_SENSE_10] = { 10, scsi_mode_sense },
	[SCSI_OP_READ_16] = { 16, scsi_read_write },
	[SCSI_OP_WRITE_16] = { 16, scsi_read_write },
	[SCSI_OP_SYNCHRONIZE_CACHE_16] = { 16, scsi_sync_cache },
	[SCSI_OP_SERVICE_ACTION_IN_16] = { 16, scsi_service_action_in },
	[SCSI_OP_REPORT_LUNS] = { 12, scsi_report_luns },
	[SCSI_OP_READ_12] = { 12, scsi_read_write },
	[SCSI_OP_WRITE_12] = { 12, scsi_read_write },
};

void storvsp_scsi_execute(struct storvsp *s, struct storvsp_io *io)
{
	const struct vmscsi_request *r = io->req;
	const uint8_t *cdb = r->cdb;
	const struct scsi_cmd *cmd = &scsi_cmds[cdb[0]];
	bool present = !r->path_id && !r->target_id && !r->lun;

	io->moved = 0;
	io->sense_len = 0;

	if (!present && cdb[0] != SCSI_OP_REPORT_LUNS) {
		if (cdb[0] == SCSI_OP_INQUIRY && r->cdb_length >= 6) {
			scsi_inquiry_absent(s, io, cdb);
			return;
		}
		/* What Hyper-V answers for a LUN it does not have. */
		io->srb_status = SRB_STATUS_INVALID_LUN;
		io->scsi_status = SCSI_STATUS_CHECK_CONDITION;
		return;
	}
	if (!cmd->run) {
		scsi_check(s, io, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE, 0);
		return;
	}
	if (r->cdb_length < cmd->cdb_len) {
		/* The guest sent fewer CDB bytes than the command has. */
		scsi_invalid_field(s, io, r->cdb_length);
		return;
	}
	/* Sense describes the last command only: a new one clears what an
	 * earlier one left for REQUEST SENSE (unless it is REQUEST SENSE). */
	if (cdb[0] != SCSI_OP_REQUEST_SENSE)
		s->has_pending_sense = false;
	cmd->run(s, io, cdb);
}
