/* SPDX-License-Identifier: MIT */
/* Storage VSP internals shared by storvsp.c (VSTOR protocol) and
 * storvsp_scsi.c (SCSI disk). */
#ifndef NHV_STORVSP_INT_H
#define NHV_STORVSP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/vstor.h"
#include "storvsp.h"

/* Data moves between the image and the guest through a bounce buffer of
 * this size, one chunk at a time. */
#define STORVSP_BOUNCE_BYTES (256u << 10)

#define STORVSP_VENDOR_LEN  8
#define STORVSP_PRODUCT_LEN 16
#define STORVSP_SERIAL_MAX  64

/* Handshake, in the order a guest must go through it. */
enum storvsp_state {
	STORVSP_WAIT_BEGIN,	 /* BEGIN_INITIALIZATION */
	STORVSP_WAIT_VERSION,	 /* QUERY_PROTOCOL_VERSION, until one is accepted */
	STORVSP_WAIT_PROPERTIES, /* QUERY_PROPERTIES */
	STORVSP_WAIT_END,	 /* END_INITIALIZATION */
	STORVSP_READY,		 /* SRBs and resets */
};

/* The raw image. */
struct storvsp_backend {
	int fd;
	bool read_only;
	uint64_t nblocks; /* of STORVSP_BLOCK_SIZE */
};

/* At most one log line per interval; the rest are counted and reported
 * with the next line, so a guest cannot flood the log. */
struct storvsp_ratelimit {
	int64_t next_ms;
	uint64_t suppressed;
};

struct storvsp {
	struct storvsp_backend be;
	const struct storvsp_dev_ops *ops;
	uint32_t max_transfer;
	char vendor[STORVSP_VENDOR_LEN + 1];   /* space padded */
	char product[STORVSP_PRODUCT_LEN + 1]; /* space padded */
	char serial[STORVSP_SERIAL_MAX + 1];
	uint64_t naa; /* NAA 3 (locally assigned) designator, for VPD 0x83 */

	enum storvsp_state state;
	uint16_t version; /* 0 until negotiated */

	uint8_t *bounce; /* STORVSP_BOUNCE_BYTES */

	/* Sense that autosense could not deliver (the guest offered no sense
	 * buffer), kept for the next REQUEST SENSE as SPC asks. */
	uint8_t pending_sense[SCSI_SENSE_FIXED_SIZE];
	bool has_pending_sense;

	struct storvsp_stats stats; /* updated with storvsp_count() */
	struct storvsp_ratelimit rl_guest, rl_io;
};

/* One SRB on its way through the SCSI engine. */
struct storvsp_io {
	/* in */
	const struct vmscsi_request *req; /* validated; extension zeroed if absent */
	const struct storvsp_sgl *sgl;	  /* NULL when dtl is 0 */
	void *ctx;
	uint32_t dtl;	    /* guest buffer bytes (<= sgl->byte_count) */
	uint32_t sense_cap; /* sense bytes the guest can take */
	/* out */
	uint8_t srb_status;
	uint8_t scsi_status;
	uint32_t moved; /* bytes transferred */
	uint8_t sense[VMSCSI_UNION_SIZE];
	uint8_t sense_len; /* bytes of sense to return (AUTOSENSE_VALID set) */
};

/* Runs io->req's CDB and fills io's results. Never fails: every outcome is
 * a status in io. */
void storvsp_scsi_execute(struct storvsp *s, struct storvsp_io *io);

/* Counters are read by other threads. */
static inline void storvsp_count(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* True if a line may be logged now; then note holds "" or, if lines were
 * dropped since the last one, " (N similar suppressed)" to append. */
bool storvsp_ratelimit(struct storvsp_ratelimit *rl, char *note, size_t len);

#endif
