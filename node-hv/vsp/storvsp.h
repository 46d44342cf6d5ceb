/* SPDX-License-Identifier: MIT */
/*
 * Storage VSP engine: the VSTOR protocol (handshake, SRBs) and a SCSI disk
 * (SPC-4 / SBC-3 subset) backed by a raw image file, with 512-byte blocks.
 * It knows nothing of rings or channels: the VMBus glue feeds it each
 * packet the guest sent and supplies callbacks to answer and to move data
 * to and from the guest buffer the packet described.
 *
 * Threads: all calls on one struct storvsp (storvsp_handle, storvsp_reset,
 * storvsp_destroy) come from one thread at a time, in practice the
 * device's VSP worker thread; the engine has no locks of its own.
 * storvsp_handle blocks on file I/O (pread/pwrite/fdatasync) and calls the
 * callbacks synchronously before it returns, so it must never run on an
 * event loop or a vCPU thread. storvsp_get_stats may run on any thread.
 *
 * The device the guest sees: one disk at path 0, target 0, LUN 0. INQUIRY
 * elsewhere answers "no logical unit" (peripheral qualifier 3), REPORT
 * LUNS lists LUN 0 for target 0 and nothing elsewhere, any other command
 * to another address completes with SRB_STATUS_INVALID_LUN.
 */
#ifndef NHV_STORVSP_H
#define NHV_STORVSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storvsp;

/*
 * The guest buffer of one request (a GPA-direct range): byte_count bytes
 * starting byte_offset into the first of npfns 4 KiB guest pages.
 */
struct storvsp_sgl {
	uint32_t byte_offset;
	uint32_t byte_count;
	uint32_t npfns;
	const uint64_t *pfns;
};

/* Callbacks supplied by the glue; ctx is what storvsp_handle was given. */
struct storvsp_dev_ops {
	/* Sends pkt (a vstor_packet of len bytes, 12..64) to the guest as the
	 * completion of trans_id. Returns 0 or a negative errno, which
	 * storvsp_handle passes back to its caller. */
	int (*complete)(void *ctx, uint64_t trans_id, const void *pkt, uint32_t len);
	/* Copy len bytes at offset within sgl's buffer. The engine never
	 * asks beyond sgl->byte_count. Return 0, or -EFAULT when a page is
	 * outside guest RAM (any negative value fails the request). */
	int (*copy_to_guest)(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset,
			     const void *src, size_t len);
	int (*copy_from_guest)(void *ctx, const struct storvsp_sgl *sgl, uint64_t offset, void *dst,
			       size_t len);
};

#define STORVSP_BLOCK_SIZE	     512u
#define STORVSP_MAX_TRANSFER_DEFAULT (1u << 20)
#define STORVSP_MAX_TRANSFER_MAX     (8u << 20)

struct storvsp_cfg {
	const char *path; /* raw image: a regular file or block device */
	bool read_only;	  /* opened O_RDONLY; writes fail with DATA PROTECT */
	/* Largest transfer offered to the guest (QUERY_PROPERTIES, Block
	 * Limits VPD). 0: STORVSP_MAX_TRANSFER_DEFAULT; rounded down to
	 * 4 KiB; at most STORVSP_MAX_TRANSFER_MAX. */
	uint32_t max_transfer_bytes;
	/* INQUIRY strings, printable ASCII; NULL for defaults. vendor <= 8,
	 * product <= 16, serial <= 64 characters (default: derived from
	 * path, so it stays the same across restarts). */
	const char *vendor;
	const char *product;
	const char *serial;
	const struct storvsp_dev_ops *ops; /* must outlive the engine */
};

/*
 * Opens cfg->path and creates an engine waiting for BEGIN_INITIALIZATION.
 * cfg's strings are copied. Returns 0 and *out, -EINVAL (bad cfg, image
 * size zero or not a multiple of 512), -ENOMEM, or the errno of
 * open/lseek (all logged once).
 */
int storvsp_create(const struct storvsp_cfg *cfg, struct storvsp **out);

/* Closes the image and frees s. NULL is ignored. */
void storvsp_destroy(struct storvsp *s);

/*
 * Forgets the handshake (the channel was closed; a reopened channel starts
 * with BEGIN_INITIALIZATION again). Counters are kept.
 */
void storvsp_reset(struct storvsp *s);

/*
 * Handles one packet from the guest: payload/len are the in-band bytes
 * (trailing ring padding allowed), trans_id the VMBus transaction id to
 * complete, sgl the request's guest buffer (NULL when the packet was
 * in-band; only used by EXECUTE_SRB, for the duration of the call). ctx is
 * handed to the callbacks.
 *
 * Every packet is answered with exactly one completion (operation
 * COMPLETE_IO) before this returns. Returns:
 *   0          handled; this includes SCSI errors (reported in the SRB)
 *              and a refused protocol version (the guest tries another)
 *   -EBADMSG   malformed: shorter than the negotiated packet size,
 *              bad cdb_length, buffer missing or smaller than
 *              data_transfer_length
 *   -EPROTO    operation out of order (e.g. an SRB before
 *              END_INITIALIZATION)
 *   -EOPNOTSUPP an operation a guest may not send or that is not offered
 *              (sub-channels)
 *   other      the error of ops->complete
 * The first four were answered with a failure status and counted; the glue
 * may fail the channel on them.
 */
int storvsp_handle(struct storvsp *s, const void *payload, size_t len, uint64_t trans_id,
		   const struct storvsp_sgl *sgl, void *ctx);

struct storvsp_stats {
	uint64_t requests;	  /* EXECUTE_SRB packets */
	uint64_t bytes_read;	  /* from the image to the guest */
	uint64_t bytes_written;	  /* from the guest to the image */
	uint64_t flushes;	  /* fdatasync calls */
	uint64_t scsi_errors;	  /* SRBs completed with a status other than success */
	uint64_t io_errors;	  /* image read/write/flush failures */
	uint64_t guest_faults;	  /* copy_to/from_guest failures */
	uint64_t protocol_errors; /* packets storvsp_handle rejected */
	uint64_t send_errors;	  /* ops->complete failures */
};

/* Snapshot of the counters (each read atomically). Thread: any. */
void storvsp_get_stats(const struct storvsp *s, struct storvsp_stats *out);

/* Negotiated storage protocol version, 0 before QUERY_PROTOCOL_VERSION
 * succeeded. Thread: the worker. */
uint16_t storvsp_protocol_version(const struct storvsp *s);

/*
 * The protocol state a migrated channel must keep (handshake state,
 * negotiated version, sense held for REQUEST SENSE): at most
 * STORVSP_STATE_BYTES into buf, *len set. Restore checks every field
 * (untrusted: it comes from another node) and returns 0 or -EBADMSG,
 * changing nothing on error. Thread: the worker, or any while it is held.
 */
#define STORVSP_STATE_BYTES 64
int storvsp_save_state(const struct storvsp *s, uint8_t *buf, size_t cap, size_t *len);
int storvsp_restore_state(struct storvsp *s, const uint8_t *buf, size_t len);

/* Capacity in 512-byte blocks. */
uint64_t storvsp_nblocks(const struct storvsp *s);

/*
 * The completion a guest gets for a request that can no longer be served
 * (the serving node is gone past its timeout): for EXECUTE_SRB its SRB back
 * with CHECK CONDITION, NOT READY / LOGICAL UNIT COMMUNICATION FAILURE and
 * nothing moved; for any other operation a failure status. version is the
 * negotiated VSTOR protocol (0 if unknown). out must hold a vstor_packet
 * (64 bytes); *out_len is the reply size the guest expects. Returns 0, or
 * -EBADMSG/-EOPNOTSUPP when the request itself was malformed (out still
 * holds a failure reply). Thread: any; uses no engine state.
 */
int storvsp_fail_request(uint16_t version, const void *payload, size_t len, void *out,
			 uint32_t *out_len);

#endif
