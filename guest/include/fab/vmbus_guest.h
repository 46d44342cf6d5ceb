/* SPDX-License-Identifier: MIT */
/*
 * Guest VMBus library: the guest half of the Hyper-V compatible VMBus on
 * top of the client state machine of fab/vmbus_chan.h and the rings of
 * fab/vmbus_ring.h.
 *
 * What it does with the host (node-hv):
 *  - SynIC: two zeroed pages of its own become vCPU 0's message page (SIMP)
 *    and event flags page (SIEFP); SINT2 gets vector 0x30, SCONTROL is
 *    enabled. There are no interrupts: the guest polls both pages.
 *  - Control messages from the host arrive in SIMP slot 2; vmbus_guest_poll
 *    consumes them (free the slot, full barrier, EOM if msg_pending) and
 *    feeds them to the client. Messages to the host go out with
 *    HvPostMessage (fab_post_message).
 *  - Channels: one contiguous, zeroed ring buffer per channel (send ring
 *    first, receive ring after it), described to the host by one GPADL.
 *    The guest rings a channel's doorbell (fab_signal_doorbell with the
 *    offer's connection id); the host sets the channel's relid bit in SIEFP
 *    slot 2 and wakes the vCPU. After every wake the library clears the
 *    event flags and looks at the receive ring of every open channel.
 *  - Integration components (heartbeat, shutdown; ic_guest.c) are answered
 *    from vmbus_guest_poll once vmbus_guest_ic_open opened them.
 *
 * Threads: single vCPU. Every function here must be called on vCPU 0 (the
 * SynIC pages are vCPU 0's, contact and channels name VP 0 as their target)
 * and none is reentrant; there are no locks. Channel callbacks run inside
 * vmbus_guest_poll and the functions that wait (which poll), never inside
 * another callback of the same channel.
 *
 * Time: all timeouts are in 100 ns units (fab_ref_time), see
 * VMBUS_GUEST_MS. A wait polls, then blocks in fab_wait until the host
 * wakes the vCPU or a short slice passes, and checks again.
 *
 * Errors: 0 or a negative errno (fab's shim <errno.h>, Linux values):
 *   -ETIMEDOUT    the host did not answer in time
 *   -EIO          the host answered with a failure status (see host_status)
 *   -ECONNREFUSED no VMBus version was accepted
 *   -ENOTCONN     vmbus_guest_init has not succeeded
 *   -EPROTO       a channel's ring is corrupt: the channel is failed
 *   -EAGAIN       ring full and no time to wait for space
 *   others        passed up from vmbus_client_* / vmbus_ring_*
 */
#ifndef FAB_VMBUS_GUEST_H
#define FAB_VMBUS_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/guest.h"
#include "fab/vmbus_chan.h"
#include "fab/vmbus_proto.h"
#include "fab/vmbus_ring.h"

#define VMBUS_GUEST_MS(ms)	   ((uint64_t)(ms)*10000u)
#define VMBUS_GUEST_TIMEOUT	   VMBUS_GUEST_MS(5000) /* default for control operations */
#define VMBUS_GUEST_MAX_OFFERS	   64
#define VMBUS_GUEST_MAX_GPADLS	   64
#define VMBUS_GUEST_SINT_VECTOR	   0x30
#define VMBUS_GUEST_DEFAULT_PAGES  16 /* per ring: 64 KiB, 60 KiB of data */
#define VMBUS_GUEST_MIN_RING_PAGES 2  /* control page + one data page */

/* ---- connection ------------------------------------------------------------ */

/*
 * Sets up the SynIC (once), connects (newest version first, as the client
 * does), requests the offers and waits until all were delivered, for at
 * most timeout in all. Returns 0 (also when already connected),
 * -ETIMEDOUT, -ECONNREFUSED, -ENOMEM, -EIO (a SynIC register was refused:
 * the status is printed) or a client error.
 */
int vmbus_guest_init(uint64_t timeout);

/* Whether vmbus_guest_init succeeded (and no unload happened since). */
bool vmbus_guest_ready(void);

/* Agreed VMBus version; 0 when not connected. */
uint32_t vmbus_guest_version(void);

/* The client, for callers that drive the protocol themselves (tests). Its
 * storage is the library's; do not re-init it. */
struct vmbus_client *vmbus_guest_client(void);

/* First non-rescinded offer of device class if_type with a relid above
 * after_relid (0: the first). 0 or -ENOENT. */
int vmbus_guest_find_offer(const struct vmbus_guid *if_type, uint32_t after_relid,
			   const struct vmbus_client_chan **out);

/* Prints one line per offer: "vmbus: offer relid=... type=... conn=...". */
void vmbus_guest_print_offers(void);

/*
 * Closes every channel the library opened (without GPADL teardowns: the
 * host drops them with the connection), sends UNLOAD and waits for
 * UNLOAD_RESPONSE. Every channel handle (struct vmbus_guest_chan, storvsc
 * instances, the IC channels) is invalid afterwards; ring memory is freed
 * only once the response came. vmbus_guest_init connects again.
 * Returns 0, -ENOTCONN or -ETIMEDOUT.
 */
int vmbus_guest_unload(uint64_t timeout);

/* ---- polling and waiting ----------------------------------------------------- */

/*
 * Consumes the host's control messages, clears the event flags and calls
 * the callback of every open channel whose receive ring holds packets.
 * Never blocks. Returns how many messages, event words and callbacks it
 * handled (0: nothing happened).
 */
int vmbus_guest_poll(void);

/* Returns true once the condition the caller waits for holds. */
typedef bool vmbus_guest_cond_cb(void *ctx);

/*
 * Polls until cond(ctx) is true (0) or timeout has passed (-ETIMEDOUT);
 * blocks in fab_wait in between. cond is checked after every poll, at least
 * once.
 */
int vmbus_guest_wait(vmbus_guest_cond_cb *cond, void *ctx, uint64_t timeout);

/* Polls; if nothing happened blocks until the host wakes the vCPU or
 * timeout passes, then polls again. For main loops. */
void vmbus_guest_idle(uint64_t timeout);

/* Sees every host control message (SynIC type 1) before the client does;
 * NULL removes it. For tests and diagnostics. */
typedef void vmbus_guest_msg_cb(void *ctx, const void *msg, size_t len);
void vmbus_guest_set_msg_tap(vmbus_guest_msg_cb *cb, void *ctx);

struct vmbus_guest_stats {
	uint64_t msgs;	       /* SIMP messages consumed */
	uint64_t msgs_refused; /* ... that the client refused (last error below) */
	uint64_t msgs_foreign; /* ... of a SynIC type other than 1 (ignored) */
	uint64_t eoms;	       /* EOM writes */
	uint64_t event_words;  /* non-zero event flag words cleared */
	uint64_t posts;	       /* HvPostMessage calls */
	uint64_t post_errors;  /* ... that failed */
	int last_rx_error;
	unsigned int last_post_status; /* HV_STATUS of the last failed post */
};
void vmbus_guest_get_stats(struct vmbus_guest_stats *out);

/* ---- GPADLs and opens, one step at a time ------------------------------------- */

/*
 * Creates a GPADL of npfns whole pages for channel relid and waits for
 * GPADL_CREATED. Returns 0 (*gpadl_id set), -EIO (refused: *host_status,
 * if not NULL, gets the creation status; the id is freed), -ETIMEDOUT
 * (*gpadl_id is set: the host may still answer) or a client error.
 */
int vmbus_guest_gpadl_create(uint32_t relid, const uint64_t *pfns, uint32_t npfns, uint64_t timeout,
			     uint32_t *gpadl_id, uint32_t *host_status);

/* Sends GPADL_TEARDOWN and waits for GPADL_TORNDOWN: 0, -ETIMEDOUT or a
 * client error (-ENOENT unknown id). Until it returns 0 the host may still
 * access the pages. */
int vmbus_guest_gpadl_teardown(uint32_t gpadl_id, uint64_t timeout);

/*
 * Sends OPENCHANNEL (target VP 0) and waits for the result: 0 open, -EIO
 * refused (*host_status gets the status), -ETIMEDOUT (the open is still
 * pending: cancel it with vmbus_client_close) or a client error.
 */
int vmbus_guest_open_raw(uint32_t relid, uint32_t gpadl_id, uint32_t downstream_offset,
			 const void *user_data, size_t user_len, uint64_t timeout,
			 uint32_t *host_status);

/* ---- channels ------------------------------------------------------------------ */

struct vmbus_guest_chan;

struct vmbus_guest_chan_cfg {
	uint32_t send_pages;   /* guest->host ring incl. control page; 0 = default, >= 2 */
	uint32_t recv_pages;   /* host->guest ring; 0 = default, >= 2 */
	const void *user_data; /* OPENCHANNEL user data, <= 120 bytes */
	size_t user_len;
	uint64_t timeout; /* for the GPADL and the open each; 0 = VMBUS_GUEST_TIMEOUT */
};

/*
 * Opens channel relid: allocates and resets both rings (contiguous, send
 * ring first), creates the GPADL over all pages, opens with the receive
 * ring at page offset send_pages. cfg may be NULL for defaults. Returns 0
 * and the channel in *out, or -EINVAL, -ENOMEM, -ENOENT (no such offer),
 * or the error of vmbus_guest_gpadl_create / vmbus_guest_open_raw (the
 * GPADL is torn down again; memory the host may still map is leaked).
 */
int vmbus_guest_chan_open(uint32_t relid, const struct vmbus_guest_chan_cfg *cfg,
			  struct vmbus_guest_chan **out);

/*
 * Closes the channel, tears its GPADL down and frees it (the ring memory
 * only if the teardown was confirmed). Not from inside its own callback.
 * Returns 0 or the teardown's error; ch is gone either way.
 */
int vmbus_guest_chan_close(struct vmbus_guest_chan *ch);

/*
 * Called from vmbus_guest_poll while the receive ring holds packets: it
 * should read them (vmbus_guest_recv). It may send, and wait, but not
 * close any channel.
 */
typedef void vmbus_guest_chan_cb(struct vmbus_guest_chan *ch, void *ctx);
void vmbus_guest_chan_set_cb(struct vmbus_guest_chan *ch, vmbus_guest_chan_cb *cb, void *ctx);

uint32_t vmbus_guest_chan_relid(const struct vmbus_guest_chan *ch);
uint32_t vmbus_guest_chan_conn_id(const struct vmbus_guest_chan *ch);
uint32_t vmbus_guest_chan_gpadl(const struct vmbus_guest_chan *ch);

/* True once a ring of the channel was found corrupt: it is unusable, close
 * it. */
bool vmbus_guest_chan_failed(const struct vmbus_guest_chan *ch);

/* The ring buffer memory (send ring at 0, receive ring at send_pages
 * pages), for tests that misbehave on purpose. */
void *vmbus_guest_chan_ring_mem(const struct vmbus_guest_chan *ch, uint32_t *send_pages,
				uint32_t *recv_pages);

/* Rings the channel's doorbell. */
void vmbus_guest_chan_signal(const struct vmbus_guest_chan *ch);

/*
 * Sends one packet, ringing the doorbell if the ring code says so. If the
 * ring is full, asks the host for space and waits for at most timeout
 * (polling meanwhile, so inbound rings keep draining); timeout 0 returns
 * -EAGAIN at once. Returns 0, -EAGAIN/-ETIMEDOUT (no space), -EPROTO
 * (channel failed), -EMSGSIZE or -EINVAL (see vmbus_ring.h).
 */
int vmbus_guest_send_inband(struct vmbus_guest_chan *ch, uint64_t trans_id, uint16_t flags,
			    const void *data, uint32_t len, uint64_t timeout);
int vmbus_guest_send_gpa_direct(struct vmbus_guest_chan *ch, uint64_t trans_id, uint16_t flags,
				const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
				const void *data, uint32_t len, uint64_t timeout);

/*
 * Reads one packet (descriptor and payload, see vmbus_ring_read) and rings
 * the doorbell if the host waits for the space. Returns 0, -EAGAIN (empty),
 * -EMSGSIZE (*pkt_len = size needed) or -EPROTO (channel failed).
 */
int vmbus_guest_recv(struct vmbus_guest_chan *ch, void *buf, size_t buflen, size_t *pkt_len);

/* Waits until the host has consumed everything sent on the channel:
 * 0, -ETIMEDOUT or -EPROTO. */
int vmbus_guest_chan_drain(struct vmbus_guest_chan *ch, uint64_t timeout);

/* ---- integration components (ic_guest.c) -------------------------------------- */

/*
 * Opens the heartbeat and shutdown channels, whichever are offered, and
 * answers them from vmbus_guest_poll from then on: version negotiation,
 * heartbeats (seq_num + 1), shutdown requests (HV_S_OK for power-off,
 * then vmbus_shutdown_requested() turns true). Returns the number of
 * channels opened (1 or 2), -ENOENT if neither is offered, or the first
 * open error.
 */
int vmbus_guest_ic_open(uint64_t timeout);

/* Whether the host asked the partition to shut down (and was told yes).
 * The image should then finish up and return from main. */
bool vmbus_shutdown_requested(void);

struct vmbus_guest_ic_stats {
	uint64_t heartbeats;	  /* heartbeat requests answered */
	uint64_t negotiations;	  /* NEGOTIATE requests answered */
	uint64_t shutdowns;	  /* shutdown requests seen */
	uint64_t bad_packets;	  /* requests dropped as malformed */
	uint32_t shutdown_flags;  /* flags of the last shutdown request */
	uint32_t shutdown_reason; /* reason_code of it */
};
void vmbus_guest_ic_get_stats(struct vmbus_guest_ic_stats *out);

#endif
