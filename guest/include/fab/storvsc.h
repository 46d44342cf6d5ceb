/* SPDX-License-Identifier: MIT */
/*
 * Storage VSC: a block device over a VMBus synthetic SCSI channel (VSTOR,
 * fab/vstor.h), for guest images.
 *
 * Protocol (Linux storvsc_drv.c; vmbus-facts section 6): every request is a
 * packet with VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED and the host
 * answers each with exactly one VM_PKT_COMP carrying a vstor_packet. The
 * handshake (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION from WIN10 down to
 * WIN6, QUERY_PROPERTIES, END_INITIALIZATION) goes in-band; I/O is
 * EXECUTE_SRB on LUN 0, with its data buffer described by one GPA-direct
 * range (the guest is identity mapped, so a buffer is physically
 * contiguous). Packets are 64 bytes from the start and the size the agreed
 * version requires after it (48 before WIN8).
 *
 * Requests live in STORVSC_MAX_QUEUE slots; the transaction id of a request
 * is its slot index + 1. Completions are collected by the channel callback
 * that vmbus_guest_poll runs, so any poll or wait of the VMBus library
 * (and storvsc_poll / storvsc_wait) advances them.
 *
 * Threads: vCPU 0 only, like fab/vmbus_guest.h. Buffers must stay untouched
 * until their request completed; a request given up on (synchronous call
 * timed out) keeps its buffer in use by the host until the host answers.
 *
 * Errors: 0 or a negative errno: -EIO (the request failed: SRB/SCSI status
 * or vstor status, sense printed), -ETIMEDOUT, -EBUSY (all slots in use),
 * -EINVAL (bad arguments, transfer above max_transfer), -EPROTO (the
 * channel failed: close it), -ENOENT (no storage offer), or the VMBus
 * library's errors.
 */
#ifndef FAB_STORVSC_H
#define FAB_STORVSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/vmbus_guest.h"
#include "fab/vstor.h"

#define STORVSC_MAX_QUEUE	32
#define STORVSC_DEFAULT_TIMEOUT VMBUS_GUEST_MS(30000) /* per synchronous request */

struct storvsc;

struct storvsc_cfg {
	uint32_t send_pages; /* 0 = 32 (128 KiB) */
	uint32_t recv_pages; /* 0 = 16 (64 KiB) */
	uint64_t timeout;    /* control operations and synchronous I/O; 0 = default */
};

struct storvsc_info {
	uint32_t relid;
	uint16_t protocol;     /* VMSTOR_PROTO_VERSION_* agreed */
	uint32_t packet_size;  /* vstor_packet bytes on the wire: 64 or 48 */
	uint32_t max_transfer; /* bytes per request (QUERY_PROPERTIES, 4 KiB multiple) */
	uint32_t block_size;   /* READ CAPACITY */
	uint64_t nblocks;      /* logical blocks */
};

/* Request kinds for storvsc_submit. */
#define STORVSC_READ  0
#define STORVSC_WRITE 1
#define STORVSC_FLUSH 2 /* SYNCHRONIZE CACHE(10) of everything; lba, n, buf ignored */

/* The outcome of one request. */
struct storvsc_completion {
	void *cookie;	       /* as submitted */
	int status;	       /* 0, -EIO (see below) or -EPROTO (channel failed) */
	uint32_t vstor_status; /* vstor_packet.status (NTSTATUS) */
	uint8_t srb_status;    /* vmscsi_request.srb_status, flag bits included */
	uint8_t scsi_status;
	uint8_t sense_key; /* from autosense, when srb_status has AUTOSENSE_VALID */
	uint8_t asc;
	uint8_t ascq;
	uint32_t bytes; /* data_transfer_length of the reply: bytes moved */
};

/*
 * Opens the storage channel relid (0: the first storage offer), does the
 * VSTOR handshake and READ CAPACITY. vmbus_guest_init must have succeeded.
 * cfg may be NULL. Prints one line on failure. Returns 0 or an error.
 */
int storvsc_open(uint32_t relid, const struct storvsc_cfg *cfg, struct storvsc **out);

/*
 * Waits (up to the configured timeout) for requests in flight, then closes
 * the channel and frees s. Returns 0 or the channel close error.
 */
int storvsc_close(struct storvsc *s);

void storvsc_get_info(const struct storvsc *s, struct storvsc_info *out);

/* The channel underneath, for tests that misbehave on purpose. */
struct vmbus_guest_chan *storvsc_chan(struct storvsc *s);

/* ---- synchronous block API ------------------------------------------------------- */

/* nblocks blocks of block_size at lba into / from buf. */
int storvsc_read(struct storvsc *s, uint64_t lba, uint32_t nblocks, void *buf);
int storvsc_write(struct storvsc *s, uint64_t lba, uint32_t nblocks, const void *buf);
int storvsc_flush(struct storvsc *s);

/* ---- asynchronous API ---------------------------------------------------------------- */

/*
 * Starts a request (STORVSC_READ/WRITE/FLUSH) and returns at once. Up to
 * STORVSC_MAX_QUEUE requests may be in flight; the completion, carrying
 * cookie, comes out of storvsc_poll / storvsc_wait. Returns 0, -EBUSY (all
 * slots in flight), -EINVAL, -EPROTO or a send error (-ETIMEDOUT: the ring
 * stayed full).
 */
int storvsc_submit(struct storvsc *s, int kind, uint64_t lba, uint32_t nblocks, void *buf,
		   void *cookie);

/*
 * Starts an arbitrary SCSI command on LUN 0: cdb (1..16 bytes), data_in
 * VMSCSI_READ_TYPE / VMSCSI_WRITE_TYPE / VMSCSI_UNKNOWN_TYPE, and the data
 * buffer as one GPA range (NULL: no data, sent in-band) of which the
 * request claims dtl bytes. The range is sent as given, unchecked: tests use
 * it to hand the host bad PFNs. Completes like storvsc_submit.
 */
int storvsc_submit_scsi(struct storvsc *s, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in,
			const struct vmbus_gpa_range_desc *range, uint32_t dtl, void *cookie);

/* Requests in flight (submitted, completion not yet collected). */
unsigned int storvsc_inflight(const struct storvsc *s);

/*
 * Collects up to max finished requests into out, oldest completion first,
 * without blocking (it polls the VMBus library). Returns the number
 * collected.
 */
int storvsc_poll(struct storvsc *s, struct storvsc_completion *out, unsigned int max);

/*
 * As storvsc_poll, but blocks until at least one request finished or
 * timeout passed. Returns the number collected (> 0), -ETIMEDOUT, or
 * -ENOENT if nothing is in flight.
 */
int storvsc_wait(struct storvsc *s, struct storvsc_completion *out, unsigned int max,
		 uint64_t timeout);

#endif
