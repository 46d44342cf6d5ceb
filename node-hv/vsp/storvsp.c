// SPDX-License-Identifier: MIT
/*
 * Storage VSP, protocol half: the VSTOR handshake and the framing of SRBs
 * (the SCSI commands themselves are in storvsp_scsi.c).
 *
 * Packet sizes. Until a protocol version is agreed, a guest may send the
 * pre-Win8 packet (48 bytes) or the full one (64); Linux 4.x-5.x start
 * short and switch once QUERY_PROTOCOL_VERSION succeeds, and read replies
 * into a buffer of the size they currently use, so a longer reply would
 * stall their ring. Like Hyper-V, each reply before the agreement has the
 * length of its request. After it, every packet must be at least the
 * agreed size (48 for WIN6/WIN7, 64 from WIN8) and every reply has that
 * size: Windows guests check that.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fab/log.h"
#include "storvsp_int.h"

#define STORVSP_RATELIMIT_MS 10000
#define GUEST_PAGE_SIZE	     4096u

/* A guest packet that passed vstor_parse. */
struct vstor_msg {
	uint32_t op;
	uint32_t reply_len;	       /* length of our completion */
	uint16_t version;	       /* QUERY_PROTOCOL_VERSION */
	struct vmscsi_request srb;     /* EXECUTE_SRB; the extension is zero if not sent */
	const struct storvsp_sgl *sgl; /* EXECUTE_SRB with data_transfer_length > 0 */
};

bool storvsp_ratelimit(struct storvsp_ratelimit *rl, char *note, size_t len)
{
	struct timespec ts;
	int64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now < rl->next_ms) {
		rl->suppressed++;
		return false;
	}
	rl->next_ms = now + STORVSP_RATELIMIT_MS;
	if (rl->suppressed)
		snprintf(note, len, " (%llu similar suppressed)",
			 (unsigned long long)rl->suppressed);
	else
		note[0] = '\0';
	rl->suppressed = 0;
	return true;
}

static const char *vstor_op_name(uint32_t op)
{
	static const char *const names[] = {
		[VSTOR_OPERATION_COMPLETE_IO] = "COMPLETE_IO",
		[VSTOR_OPERATION_REMOVE_DEVICE] = "REMOVE_DEVICE",
		[VSTOR_OPERATION_EXECUTE_SRB] = "EXECUTE_SRB",
		[VSTOR_OPERATION_RESET_LUN] = "RESET_LUN",
		[VSTOR_OPERATION_RESET_ADAPTER] = "RESET_ADAPTER",
		[VSTOR_OPERATION_RESET_BUS] = "RESET_BUS",
		[VSTOR_OPERATION_BEGIN_INITIALIZATION] = "BEGIN_INITIALIZATION",
		[VSTOR_OPERATION_END_INITIALIZATION] = "END_INITIALIZATION",
		[VSTOR_OPERATION_QUERY_PROTOCOL_VERSION] = "QUERY_PROTOCOL_VERSION",
		[VSTOR_OPERATION_QUERY_PROPERTIES] = "QUERY_PROPERTIES",
		[VSTOR_OPERATION_ENUMERATE_BUS] = "ENUMERATE_BUS",
		[VSTOR_OPERATION_FCHBA_DATA] = "FCHBA_DATA",
		[VSTOR_OPERATION_CREATE_SUB_CHANNELS] = "CREATE_SUB_CHANNELS",
	};

	if (op < sizeof(names) / sizeof(names[0]) && names[op])
		return names[op];
	return "unknown";
}

static bool vstor_version_supported(uint16_t v)
{
	switch (v) {
	case VMSTOR_PROTO_VERSION_WIN6:
	case VMSTOR_PROTO_VERSION_WIN7:
	case VMSTOR_PROTO_VERSION_WIN8:
	case VMSTOR_PROTO_VERSION_WIN8_1:
	case VMSTOR_PROTO_VERSION_WIN10:
		return true;
	default:
		return false;
	}
}

static bool sgl_valid(const struct storvsp_sgl *g)
{
	if (!g->npfns || !g->pfns || g->byte_offset >= GUEST_PAGE_SIZE)
		return false;
	return (uint64_t)g->byte_offset + g->byte_count <= (uint64_t)g->npfns * GUEST_PAGE_SIZE;
}

/*
 * The one place guest packets are checked. Fills m, including reply_len
 * and op (as far as the packet had one) even when it fails, so that the
 * rejection can still be answered. Returns 0, -EBADMSG or -EOPNOTSUPP.
 * Ordering (which operation is allowed now) is the state machine's job.
 */
static int vstor_parse(const struct storvsp *s, const void *payload, size_t len,
		       const struct storvsp_sgl *sgl, struct vstor_msg *m)
{
	struct vstor_packet pkt;
	uint32_t need, take;

	memset(m, 0, sizeof(*m));
	if (s->version) {
		need = vstor_packet_size(s->version);
		take = need;
		m->reply_len = need;
	} else {
		need = VSTOR_PACKET_SIZE_PRE_WIN8;
		take = len < VSTOR_PACKET_SIZE ? (uint32_t)len : VSTOR_PACKET_SIZE;
		m->reply_len = take < need ? need : take;
	}
	if (len < take)
		take = (uint32_t)len;

	memset(&pkt, 0, sizeof(pkt));
	if (payload && take)
		memcpy(&pkt, payload, take);
	m->op = pkt.operation;
	if (take < need)
		return -EBADMSG;

	switch (m->op) {
	case VSTOR_OPERATION_BEGIN_INITIALIZATION:
	case VSTOR_OPERATION_END_INITIALIZATION:
	case VSTOR_OPERATION_QUERY_PROPERTIES:
	case VSTOR_OPERATION_RESET_LUN:
	case VSTOR_OPERATION_RESET_ADAPTER:
	case VSTOR_OPERATION_RESET_BUS:
	case VSTOR_OPERATION_CREATE_SUB_CHANNELS:
		return 0;
	case VSTOR_OPERATION_QUERY_PROTOCOL_VERSION:
		m->version = pkt.version.major_minor;
		return 0;
	case VSTOR_OPERATION_EXECUTE_SRB:
		/* Bytes past take are zero: a pre-Win8 SRB has no extension.
		 * vm_srb.length is only echoed: guests disagree on it and
		 * the packet length already says what was sent. */
		m->srb = pkt.vm_srb;
		if (m->srb.cdb_length == 0 || m->srb.cdb_length > VMSCSI_CDB_SIZE)
			return -EBADMSG;
		if (m->srb.data_transfer_length) {
			/* The buffer must hold what the SRB claims; a larger
			 * one is fine, the SRB's length bounds every copy. */
			if (!sgl || !sgl_valid(sgl) ||
			    sgl->byte_count < m->srb.data_transfer_length)
				return -EBADMSG;
			m->sgl = sgl;
		}
		return 0;
	default:
		/* COMPLETE_IO, REMOVE_DEVICE, ENUMERATE_BUS and FCHBA_DATA go
		 * from host to guest only. */
		return -EOPNOTSUPP;
	}
}

static int vstor_send(struct storvsp *s, uint64_t trans_id, void *ctx,
		      const struct vstor_packet *pkt, uint32_t len)
{
	int err = s->ops->complete(ctx, trans_id, pkt, len);

	if (err)
		storvsp_count(&s->stats.send_errors, 1);
	return err;
}

static void vstor_reply_init(struct vstor_packet *pkt, uint32_t status)
{
	memset(pkt, 0, sizeof(*pkt));
	pkt->operation = VSTOR_OPERATION_COMPLETE_IO;
	pkt->status = status;
}

/*
 * Answers a packet the protocol does not allow with a failure status,
 * counts and (rate-limited) logs it, and returns err. An SRB still gets
 * its SRB back, marked SRB_STATUS_INVALID_REQUEST with nothing moved, so a
 * guest waiting for that I/O sees it fail rather than hang.
 */
static int vstor_reject(struct storvsp *s, const struct vstor_msg *m, uint64_t trans_id, void *ctx,
			int err, uint32_t status, const char *why)
{
	struct vstor_packet pkt;
	char note[48];
	int serr;

	storvsp_count(&s->stats.protocol_errors, 1);
	if (storvsp_ratelimit(&s->rl_guest, note, sizeof(note)))
		fab_warn("storvsp: guest %s packet rejected: %s%s", vstor_op_name(m->op), why,
			 note);

	vstor_reply_init(&pkt, status);
	if (m->op == VSTOR_OPERATION_EXECUTE_SRB) {
		pkt.vm_srb = m->srb;
		pkt.vm_srb.srb_status = SRB_STATUS_INVALID_REQUEST;
		pkt.vm_srb.scsi_status = SCSI_STATUS_GOOD;
		pkt.vm_srb.sense_info_length = 0;
		pkt.vm_srb.data_transfer_length = 0;
	}
	serr = vstor_send(s, trans_id, ctx, &pkt, m->reply_len);
	return serr ? serr : err;
}

static uint32_t srb_ntstatus(uint8_t srb_status)
{
	switch (SRB_STATUS(srb_status)) {
	case SRB_STATUS_SUCCESS:
		return VSTOR_STATUS_SUCCESS;
	case SRB_STATUS_INVALID_LUN:
		return VSTOR_STATUS_DEVICE_DOES_NOT_EXIST;
	default:
		/* What Hyper-V answers for a failed command (check
		 * condition) according to Linux guest logs. */
		return VSTOR_STATUS_UNSUCCESSFUL;
	}
}

static int vstor_execute_srb(struct storvsp *s, const struct vstor_msg *m, uint64_t trans_id,
			     void *ctx)
{
	uint32_t sense_max = s->version >= VMSTOR_PROTO_VERSION_WIN8
				     ? VMSCSI_SENSE_BUFFER_SIZE
				     : VMSCSI_SENSE_BUFFER_SIZE_WIN7;
	struct storvsp_io io = {
		.req = &m->srb,
		.sgl = m->sgl,
		.ctx = ctx,
		.dtl = m->sgl ? m->srb.data_transfer_length : 0,
		.sense_cap =
			m->srb.sense_info_length < sense_max ? m->srb.sense_info_length : sense_max,
	};
	struct vstor_packet pkt;

	storvsp_count(&s->stats.requests, 1);
	storvsp_scsi_execute(s, &io);
	if (SRB_STATUS(io.srb_status) != SRB_STATUS_SUCCESS)
		storvsp_count(&s->stats.scsi_errors, 1);

	vstor_reply_init(&pkt, srb_ntstatus(io.srb_status));
	pkt.vm_srb = m->srb;
	pkt.vm_srb.srb_status = io.srb_status;
	pkt.vm_srb.scsi_status = io.scsi_status;
	pkt.vm_srb.data_transfer_length = io.moved;
	pkt.vm_srb.sense_info_length = io.sense_len;
	if (io.sense_len) {
		/* The sense replaces the CDB in the union. */
		memset(pkt.vm_srb.reserved_array, 0, sizeof(pkt.vm_srb.reserved_array));
		memcpy(pkt.vm_srb.sense_data, io.sense, io.sense_len);
	}
	return vstor_send(s, trans_id, ctx, &pkt, m->reply_len);
}

static int vstor_reply_status(struct storvsp *s, const struct vstor_msg *m, uint64_t trans_id,
			      void *ctx, uint32_t status)
{
	struct vstor_packet pkt;

	vstor_reply_init(&pkt, status);
	return vstor_send(s, trans_id, ctx, &pkt, m->reply_len);
}

static int vstor_query_version(struct storvsp *s, const struct vstor_msg *m, uint64_t trans_id,
			       void *ctx)
{
	struct vstor_packet pkt;
	bool ok = vstor_version_supported(m->version);

	/* A refused version is part of the negotiation, not an error: the
	 * guest goes on down its list. */
	vstor_reply_init(&pkt, ok ? VSTOR_STATUS_SUCCESS : VSTOR_STATUS_REVISION_MISMATCH);
	pkt.version.major_minor = m->version;
	if (ok) {
		s->version = m->version;
		s->state = STORVSP_WAIT_PROPERTIES;
	}
	/* m->reply_len was fixed before the version changed: the guest reads
	 * this reply with the packet size it used to ask. */
	return vstor_send(s, trans_id, ctx, &pkt, m->reply_len);
}

static int vstor_query_properties(struct storvsp *s, const struct vstor_msg *m, uint64_t trans_id,
				  void *ctx)
{
	struct vstor_packet pkt;

	vstor_reply_init(&pkt, VSTOR_STATUS_SUCCESS);
	/* No sub-channels: max_channel_cnt 0 and no MULTI_CHANNEL flag, so
	 * guests keep all I/O on this channel. */
	pkt.storage_channel_properties.max_channel_cnt = 0;
	pkt.storage_channel_properties.flags = 0;
	pkt.storage_channel_properties.max_transfer_bytes = s->max_transfer;
	s->state = STORVSP_WAIT_END;
	return vstor_send(s, trans_id, ctx, &pkt, m->reply_len);
}

int storvsp_handle(struct storvsp *s, const void *payload, size_t len, uint64_t trans_id,
		   const struct storvsp_sgl *sgl, void *ctx)
{
	struct vstor_msg m;
	int err;

	err = vstor_parse(s, payload, len, sgl, &m);
	if (err == -EOPNOTSUPP)
		return vstor_reject(s, &m, trans_id, ctx, err, VSTOR_STATUS_INVALID_DEVICE_REQUEST,
				    "operation not accepted from a guest");
	if (err)
		return vstor_reject(s, &m, trans_id, ctx, err, VSTOR_STATUS_INVALID_PARAMETER,
				    "malformed (length, cdb_length or data buffer)");

	switch (m.op) {
	case VSTOR_OPERATION_BEGIN_INITIALIZATION:
		if (s->state != STORVSP_WAIT_BEGIN)
			break;
		s->state = STORVSP_WAIT_VERSION;
		return vstor_reply_status(s, &m, trans_id, ctx, VSTOR_STATUS_SUCCESS);
	case VSTOR_OPERATION_QUERY_PROTOCOL_VERSION:
		if (s->state != STORVSP_WAIT_VERSION)
			break;
		return vstor_query_version(s, &m, trans_id, ctx);
	case VSTOR_OPERATION_QUERY_PROPERTIES:
		if (s->state != STORVSP_WAIT_PROPERTIES)
			break;
		return vstor_query_properties(s, &m, trans_id, ctx);
	case VSTOR_OPERATION_END_INITIALIZATION:
		if (s->state != STORVSP_WAIT_END)
			break;
		s->state = STORVSP_READY;
		return vstor_reply_status(s, &m, trans_id, ctx, VSTOR_STATUS_SUCCESS);
	case VSTOR_OPERATION_EXECUTE_SRB:
		if (s->state != STORVSP_READY)
			break;
		return vstor_execute_srb(s, &m, trans_id, ctx);
	case VSTOR_OPERATION_RESET_LUN:
	case VSTOR_OPERATION_RESET_ADAPTER:
	case VSTOR_OPERATION_RESET_BUS:
		/* Every SRB completes before the next packet is read, so
		 * there is never anything to abort. */
		if (s->state != STORVSP_READY)
			break;
		return vstor_reply_status(s, &m, trans_id, ctx, VSTOR_STATUS_SUCCESS);
	case VSTOR_OPERATION_CREATE_SUB_CHANNELS:
		return vstor_reject(s, &m, trans_id, ctx, -EOPNOTSUPP,
				    VSTOR_STATUS_INVALID_PARAMETER,
				    "sub-channels were not offered");
	}
	return vstor_reject(s, &m, trans_id, ctx, -EPROTO, VSTOR_STATUS_INVALID_DEVICE_STATE,
			    "out of order in the handshake");
}

void storvsp_reset(struct storvsp *s)
{
	s->state = STORVSP_WAIT_BEGIN;
	s->version = 0;
	s->has_pending_sense = false;
}

#define STATE_MAGIC 0x56534f54u /* "TOSV" */

int storvsp_save_state(const struct storvsp *s, uint8_t *buf, size_t cap, size_t *len)
{
	uint32_t hdr[4] = { STATE_MAGIC, (uint32_t)s->state, s->version, s->has_pending_sense };
	size_t n = sizeof(hdr) + sizeof(s->pending_sense);

	_Static_assert(sizeof(hdr) + SCSI_SENSE_FIXED_SIZE <= STORVSP_STATE_BYTES, "state fits");
	if (cap < n)
		return -ENOSPC;
	memcpy(buf, hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), s->pending_sense, sizeof(s->pending_sense));
	*len = n;
	return 0;
}

int storvsp_restore_state(struct storvsp *s, const uint8_t *buf, size_t len)
{
	uint32_t hdr[4];

	if (len != sizeof(hdr) + sizeof(s->pending_sense))
		return -EBADMSG;
	memcpy(hdr, buf, sizeof(hdr));
	if (hdr[0] != STATE_MAGIC || hdr[1] > STORVSP_READY || hdr[3] > 1)
		return -EBADMSG;
	/* A version exists exactly from the properties step on. */
	if (hdr[1] >= STORVSP_WAIT_PROPERTIES
		    ? hdr[2] > UINT16_MAX || !vstor_version_supported((uint16_t)hdr[2])
		    : hdr[2] != 0)
		return -EBADMSG;
	s->state = (enum storvsp_state)hdr[1];
	s->version = (uint16_t)hdr[2];
	s->has_pending_sense = hdr[3];
	memcpy(s->pending_sense, buf + sizeof(hdr), sizeof(s->pending_sense));
	return 0;
}

uint16_t storvsp_protocol_version(const struct storvsp *s)
{
	return s->version;
}

uint64_t storvsp_nblocks(const struct storvsp *s)
{
	return s->be.nblocks;
}

void storvsp_get_stats(const struct storvsp *s, struct storvsp_stats *out)
{
	out->requests = __atomic_load_n(&s->stats.requests, __ATOMIC_RELAXED);
	out->bytes_read = __atomic_load_n(&s->stats.bytes_read, __ATOMIC_RELAXED);
	out->bytes_written = __atomic_load_n(&s->stats.bytes_written, __ATOMIC_RELAXED);
	out->flushes = __atomic_load_n(&s->stats.flushes, __ATOMIC_RELAXED);
	out->scsi_errors = __atomic_load_n(&s->stats.scsi_errors, __ATOMIC_RELAXED);
	out->io_errors = __atomic_load_n(&s->stats.io_errors, __ATOMIC_RELAXED);
	out->guest_faults = __atomic_load_n(&s->stats.guest_faults, __ATOMIC_RELAXED);
	out->protocol_errors = __atomic_load_n(&s->stats.protocol_errors, __ATOMIC_RELAXED);
	out->send_errors = __atomic_load_n(&s->stats.send_errors, __ATOMIC_RELAXED);
}

/* ---- creation ------------------------------------------------------------ */

static uint64_t fnv1a64(uint64_t h, const char *str)
{
	for (; *str; str++) {
		h ^= (uint8_t)*str;
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV1A64_INIT 0xcbf29ce484222325ull

/* Copies a printable-ASCII string of at most max characters into dst,
 * padded with spaces to max when pad (INQUIRY fields). */
static int copy_ident(char *dst, const char *src, size_t max, bool pad)
{
	size_t n = strlen(src);

	if (n > max)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (src[i] < 0x20 || src[i] > 0x7e)
			return -EINVAL;
	}
	memcpy(dst, src, n);
	if (pad) {
		memset(dst + n, ' ', max - n);
		n = max;
	}
	dst[n] = '\0';
	return 0;
}

static int storvsp_idents(struct storvsp *s, const struct storvsp_cfg *cfg)
{
	char serial[17];
	int err;

	err = copy_ident(s->vendor, cfg->vendor ? cfg->vendor : "FABRIC", STORVSP_VENDOR_LEN, true);
	if (!err)
		err = copy_ident(s->product, cfg->product ? cfg->product : "VIRTUAL DISK",
				 STORVSP_PRODUCT_LEN, true);
	if (err)
		return err;
	if (cfg->serial) {
		err = copy_ident(s->serial, cfg->serial, STORVSP_SERIAL_MAX, false);
		if (err)
			return err;
	} else {
		/* Stable across restarts of the same image path, which is
		 * what guests key /dev/disk/by-id on. */
		char *real = realpath(cfg->path, NULL);

		snprintf(serial, sizeof(serial), "%016llx",
			 (unsigned long long)fnv1a64(FNV1A64_INIT, real ? real : cfg->path));
		free(real);
		memcpy(s->serial, serial, sizeof(serial));
	}
	if (!s->serial[0])
		return -EINVAL; /* VPD 0x80 needs something to say */
	s->naa = fnv1a64(fnv1a64(fnv1a64(FNV1A64_INIT, s->vendor), s->product), s->serial);
	s->naa = (3ull << 60) | (s->naa & ((1ull << 60) - 1));
	return 0;
}

static int storvsp_open_backend(struct storvsp_backend *be, const char *path, bool read_only)
{
	struct stat st;
	off_t size;
	int err;

	be->read_only = read_only;
	be->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (be->fd < 0) {
		err = -errno;
		fab_err("storvsp: cannot open %s: %s", path, strerror(-err));
		return err;
	}
	if (fstat(be->fd, &st) < 0) {
		err = -errno;
		fab_err("storvsp: cannot stat %s: %s", path, strerror(-err));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		err = -EINVAL;
		fab_err("storvsp: %s is neither a file nor a block device", path);
		goto err_close;
	}
	/* SEEK_END gives the size of block devices too, unlike st_size. */
	size = lseek(be->fd, 0, SEEK_END);
	if (size < 0) {
		err = -errno;
		fab_err("storvsp: cannot size %s: %s", path, strerror(-err));
		goto err_close;
	}
	if (size == 0 || size % STORVSP_BLOCK_SIZE) {
		err = -EINVAL;
		fab_err("storvsp: %s: size %lld is not a positive multiple of %u", path,
			(long long)size, STORVSP_BLOCK_SIZE);
		goto err_close;
	}
	be->nblocks = (uint64_t)size / STORVSP_BLOCK_SIZE;
	return 0;

err_close:
	close(be->fd);
	be->fd = -1;
	return err;
}

int storvsp_create(const struct storvsp_cfg *cfg, struct storvsp **out)
{
	struct storvsp *s;
	int err;

	*out = NULL;
	if (!cfg || !cfg->path || !cfg->ops || !cfg->ops->complete || !cfg->ops->copy_to_guest ||
	    !cfg->ops->copy_from_guest)
		return -EINVAL;
	if (cfg->max_transfer_bytes && (cfg->max_transfer_bytes < GUEST_PAGE_SIZE ||
					cfg->max_transfer_bytes > STORVSP_MAX_TRANSFER_MAX)) {
		fab_err("storvsp: max transfer %u out of [%u, %u]", cfg->max_transfer_bytes,
			GUEST_PAGE_SIZE, STORVSP_MAX_TRANSFER_MAX);
		return -EINVAL;
	}

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->be.fd = -1;
	s->ops = cfg->ops;
	s->max_transfer =
		cfg->max_transfer_bytes ? cfg->max_transfer_bytes : STORVSP_MAX_TRANSFER_DEFAULT;
	/* Linux rounds it down to a page anyway; keep both sides equal. */
	s->max_transfer &= ~(GUEST_PAGE_SIZE - 1);

	err = storvsp_idents(s, cfg);
	if (err) {
		fab_err("storvsp: %s: vendor, product or serial is too long or not printable",
			cfg->path);
		goto err_free;
	}
	s->bounce = malloc(STORVSP_BOUNCE_BYTES);
	if (!s->bounce) {
		err = -ENOMEM;
		goto err_free;
	}
	err = storvsp_open_backend(&s->be, cfg->path, cfg->read_only);
	if (err)
		goto err_bounce;

	storvsp_reset(s);
	*out = s;
	return 0;

err_bounce:
	free(s->bounce);
err_free:
	free(s);
	return err;
}

void storvsp_destroy(struct storvsp *s)
{
	if (!s)
		return;
	close(s->be.fd);
	free(s->bounce);
	free(s);
}

int storvsp_fail_request(uint16_t version, const void *payload, size_t len, void *out,
			 uint32_t *out_len)
{
	/* Parsed like any guest packet, by the one validating function; only
	 * the negotiated version matters to it. */
	struct storvsp tmp = { .version = version };
	struct vstor_packet pkt;
	struct vstor_msg m;
	int rc = vstor_parse(&tmp, payload, len, NULL, &m);

	vstor_reply_init(&pkt, VSTOR_STATUS_UNSUCCESSFUL);
	if (m.op == VSTOR_OPERATION_EXECUTE_SRB && m.srb.cdb_length &&
	    m.srb.cdb_length <= VMSCSI_CDB_SIZE) {
		uint32_t cap = version >= VMSTOR_PROTO_VERSION_WIN8 ? VMSCSI_SENSE_BUFFER_SIZE
								    : VMSCSI_SENSE_BUFFER_SIZE_WIN7;
		uint8_t sense[SCSI_SENSE_FIXED_SIZE] = { 0 };
		uint32_t n = m.srb.sense_info_length < cap ? m.srb.sense_info_length : cap;

		if (n > sizeof(sense))
			n = sizeof(sense);
		sense[0] = SCSI_SENSE_FIXED_CURRENT;
		sense[2] = SCSI_SK_NOT_READY;
		sense[7] = SCSI_SENSE_FIXED_SIZE - 8;
		sense[12] = SCSI_ASC_LUN_COMM_FAILURE >> 8;
		sense[13] = SCSI_ASC_LUN_COMM_FAILURE & 0xff;
		pkt.vm_srb = m.srb;
		pkt.vm_srb.scsi_status = SCSI_STATUS_CHECK_CONDITION;
		pkt.vm_srb.srb_status = SRB_STATUS_ERROR | (n ? SRB_STATUS_AUTOSENSE_VALID : 0);
		pkt.vm_srb.data_transfer_length = 0;
		pkt.vm_srb.sense_info_length = (uint8_t)n;
		if (n) {
			memset(pkt.vm_srb.reserved_array, 0, sizeof(pkt.vm_srb.reserved_array));
			memcpy(pkt.vm_srb.sense_data, sense, n);
		}
		rc = 0;
	}
	memcpy(out, &pkt, m.reply_len);
	*out_len = m.reply_len;
	return rc;
}
