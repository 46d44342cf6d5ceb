/* SPDX-License-Identifier: MIT */
/*
 * VMBus channel management: the host's channel manager and the guest's
 * client, both pure state machines.
 *
 * Neither does I/O, blocks, logs or reads a clock. Each is driven by the
 * caller feeding it the messages the other side posted (vmbus_host_rx(),
 * vmbus_client_rx()) and by API calls; each acts only through the callbacks
 * it was given, synchronously, before the feeding call returns. Each
 * instance is single-threaded: the caller serializes every call on it.
 * Messages go through vmbus_msg_parse() before anything else looks at them.
 *
 * Errors are negative errno values. The same codes mean the same thing on
 * both sides:
 *   -EBADMSG -EMSGSIZE -ENOMSG -EPERM   rejected by vmbus_msg_parse()
 *   -ENOTCONN   no successful INITIATE_CONTACT / VERSION_RESPONSE yet
 *   -EISCONN    INITIATE_CONTACT while connected
 *   -EXDEV      posted on the wrong connection id (host, rx_conn only)
 *   -ENOENT     unknown relid or GPADL id
 *   -EEXIST     GPADL id or relid already in use
 *   -ENOSPC     a configured bound (GPADLs, PFNs, relids, slots) is full
 *   -EINVAL     argument or field value out of range
 *   -EPROTO     valid message at the wrong time (e.g. open of an open
 *               channel, body for a GPADL that is complete, release of a
 *               relid that was never rescinded)
 * A rejected message leaves the state exactly as it was, apart from the
 * failure replies documented per message below.
 */
#ifndef FAB_VMBUS_CHAN_H
#define FAB_VMBUS_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/vmbus_proto.h"

/* ======================================================================== */
/* Host channel manager (host only: chan_host.c uses malloc)                */
/* ======================================================================== */

struct vmbus_host;

/* Defaults for zero fields of struct vmbus_host_config. */
#define VMBUS_HOST_DEFAULT_MAX_GPADLS	  64
#define VMBUS_HOST_DEFAULT_MAX_GPADL_PFNS 8192
#define VMBUS_HOST_DEFAULT_EVENT_CONN_ID  0x10000

struct vmbus_host_config {
	/* Versions accepted: a subset of vmbus_version_list[] between these.
	 * 0 = VMBUS_VERSION_WIN10_V5_3 / VMBUS_VERSION_WIN8. */
	uint32_t max_version;
	uint32_t min_version;
	/*
	 * The connection id a >= 5.0 guest must post to after contact, named
	 * in VERSION_RESPONSE.msg_conn_id. 0 = VMBUS_MESSAGE_CONNECTION_ID (1):
	 * contact arrives on id 4, everything after on id 1, as with Hyper-V
	 * and OpenVMM's server without a redirecting paravisor.
	 */
	uint32_t msg_conn_id;
	/* Offer i's signalling connection id is base + relid; 0 = 0x10000,
	 * clear of the message/event/monitor ids 1-4. */
	uint32_t event_conn_id_base;
	/* Highest relid handed out (1..VMBUS_MAX_RELID); 0 = 2047. */
	uint32_t max_relid;
	/* GPADLs per connection, pending and established together; 0 = 64. */
	uint32_t max_gpadls;
	/* PFNs per GPADL over all its ranges; 0 = 8192. The 16-bit
	 * range_buflen caps a single range at 8190 pages anyway. */
	uint32_t max_gpadl_pfns;
};

/* What the guest's accepted INITIATE_CONTACT said. */
struct vmbus_host_contact {
	uint32_t version;
	uint32_t target_vcpu;	 /* VP to deliver host messages to */
	uint64_t interrupt_page; /* version < 5.0 only, else 0 */
	uint8_t msg_sint;	 /* >= 5.0: from the message; below: VMBUS_MESSAGE_SINT */
	uint8_t msg_vtl;	 /* >= 5.0 only */
	uint64_t monitor_page1;	 /* parent -> child */
	uint64_t monitor_page2;	 /* child -> parent */
};

/* A channel the host offers. */
struct vmbus_host_offer {
	struct vmbus_guid if_type;     /* device class */
	struct vmbus_guid if_instance; /* this device */
	uint16_t flags;		       /* VMBUS_OFFER_* */
	uint16_t mmio_megabytes;
	uint16_t sub_channel_index;
	uint8_t user_def[VMBUS_MAX_USER_DEFINED_BYTES];
};

struct vmbus_gpadl_range_info {
	uint32_t byte_count;
	uint32_t byte_offset;
	uint32_t first_pfn; /* index into vmbus_host_gpadl.pfns */
	uint32_t npfns;
};

/* A GPADL the guest completed. Valid only during the callback. */
struct vmbus_host_gpadl {
	uint32_t gpadl_id;
	uint32_t relid;
	uint32_t nranges;
	const struct vmbus_gpadl_range_info *ranges;
	uint32_t npfns; /* all ranges' PFNs, in order */
	const uint64_t *pfns;
};

/* A guest OPENCHANNEL that passed validation. */
struct vmbus_host_open_req {
	uint32_t relid;
	uint32_t open_id;
	uint32_t ring_gpadl;	    /* established, on this channel, whole pages */
	uint32_t ring_pages;	    /* pages in the ring GPADL */
	uint32_t downstream_offset; /* host->guest ring starts here: 0 < off < ring_pages */
	uint32_t target_vp;
	uint8_t user_data[VMBUS_OPEN_USER_DATA_BYTES];
};

/*
 * Posts msg (len <= 240) to the guest's message SINT. Must queue, not drop:
 * the state change that produced the message has already been made, and an
 * error is only passed back to the caller of the feeding function.
 * Required.
 */
typedef int vmbus_host_send_cb(void *ctx, const void *msg, size_t len);
/* The guest asks to connect. Return 0 to accept, negative to refuse (the
 * guest gets version_supported 0 with connection_state FAILED). Optional. */
typedef int vmbus_host_contact_cb(void *ctx, const struct vmbus_host_contact *c);
/*
 * A GPADL is complete: validate the PFNs against guest RAM and map them.
 * Return 0 to establish it (GPADL_CREATED status 0), negative to refuse it
 * (non-zero status, the GPADL id is forgotten). Required.
 */
typedef int vmbus_host_gpadl_create_cb(void *ctx, const struct vmbus_host_gpadl *g);
/* An established GPADL is gone (teardown, release, unload or reset): unmap
 * it. Optional. */
typedef void vmbus_host_gpadl_teardown_cb(void *ctx, uint32_t gpadl_id, uint32_t relid);
/*
 * The guest opens a channel. Return 0 and later call
 * vmbus_host_open_complete() (it may be called from inside this callback),
 * or negative to fail the open at once (OPENCHANNEL_RESULT with a non-zero
 * status). Required.
 */
typedef int vmbus_host_open_cb(void *ctx, const struct vmbus_host_open_req *req);
/* The channel is closed (guest CLOSECHANNEL, release, unload or reset). Also
 * called for a channel whose open is still pending: the host then drops that
 * open and must not complete it. Optional. */
typedef void vmbus_host_close_cb(void *ctx, uint32_t relid);
/* MODIFYCHANNEL on an open channel: retarget its interrupts. Return the
 * status for MODIFYCHANNEL_RESPONSE (sent for version >= 5.3). Optional:
 * without it requests are accepted with status 0. */
typedef uint32_t vmbus_host_modify_cb(void *ctx, uint32_t relid, uint32_t target_vp);
/* The guest unloaded: every channel was closed and every GPADL torn down
 * (callbacks already made) just before this, UNLOAD_RESPONSE follows.
 * Optional. */
typedef void vmbus_host_unload_cb(void *ctx);

struct vmbus_host_ops {
	vmbus_host_send_cb *send;
	vmbus_host_contact_cb *contact;
	vmbus_host_gpadl_create_cb *gpadl_create;
	vmbus_host_gpadl_teardown_cb *gpadl_teardown;
	vmbus_host_open_cb *open;
	vmbus_host_close_cb *close;
	vmbus_host_modify_cb *modify;
	vmbus_host_unload_cb *unload;
};

/*
 * Creates a disconnected manager. cfg may be NULL for all defaults; ops is
 * copied; ctx is passed to every callback. Returns 0, -EINVAL (missing
 * required callback, version bounds outside vmbus_version_list[], max_relid
 * > 2047) or -ENOMEM.
 */
int vmbus_host_create(const struct vmbus_host_config *cfg, const struct vmbus_host_ops *ops,
		      void *ctx, struct vmbus_host **out);

/* Frees everything without calling any callback; call vmbus_host_reset()
 * first if the host still holds mappings. NULL is ignored. */
void vmbus_host_destroy(struct vmbus_host *h);

/*
 * Registers an offer and returns its relid (the lowest free one) and
 * signalling connection id. If the guest has already asked for offers,
 * OFFERCHANNEL is sent now; otherwise it goes out with the next
 * REQUESTOFFERS. Offers outlive guest connections (unload, reset).
 * Returns 0, -EINVAL, -ENOSPC (no free relid), -ENOMEM, or the send error
 * (the offer is then registered all the same: *relid is valid).
 */
int vmbus_host_offer_add(struct vmbus_host *h, const struct vmbus_host_offer *offer,
			 uint32_t *relid, uint32_t *conn_id);

/*
 * Withdraws an offer. If the guest saw it, RESCIND_CHANNELOFFER is sent and
 * the relid stays taken until the guest's RELID_RELEASED (which also closes
 * the channel and tears down its GPADLs if the guest did not); otherwise it
 * is freed at once. Returns 0, -ENOENT, -EALREADY (already rescinded) or the
 * send error.
 */
int vmbus_host_rescind(struct vmbus_host *h, uint32_t relid);

/*
 * Feeds one message the guest posted. Returns 0 if it was handled, else the
 * error (see the top of this file). Failure replies that keep a correct
 * guest from waiting forever:
 *  - INITIATE_CONTACT with a version outside the configured set is answered
 *    version_supported 0 and returns 0 (negotiation, not an error).
 *  - Every GPADL_HEADER that parses is answered by exactly one GPADL_CREATED:
 *    status 0 once its PFNs are complete and gpadl_create accepted them, or
 *    VMBUS_STATUS_UNSUCCESSFUL (returning -ENOENT unknown/rescinded relid,
 *    -EEXIST id in use, -ENOSPC too many GPADLs or PFNs, -EBADMSG ranges
 *    inconsistent, or gpadl_create's error). A GPADL_BODY that overflows the
 *    PFN count its header announced discards that GPADL with a failure
 *    status (-EBADMSG). Bodies for ids with no pending header are dropped
 *    with -ENOENT (no reply: there is no request to answer); the connection
 *    is never failed as a whole.
 *  - OPENCHANNEL on a closed channel with an unknown/unsuitable ring GPADL
 *    or page offset (-EINVAL), an unknown relid (-ENOENT) or a rescinded
 *    channel (-EPROTO) is answered OPENCHANNEL_RESULT non-zero. An open of a
 *    channel already open or opening returns -EPROTO without a reply (a
 *    reply would be taken for the pending open's result).
 * GPADL_TEARDOWN of the ring GPADL of an open channel is deferred: TORNDOWN
 * goes out when the channel closes.
 */
int vmbus_host_rx(struct vmbus_host *h, const void *msg, size_t len);

/*
 * As vmbus_host_rx(), also checking the connection id the guest posted to:
 * INITIATE_CONTACT for >= 5.0 on VMBUS_MESSAGE_CONNECTION_ID_4, below 5.0 on
 * VMBUS_MESSAGE_CONNECTION_ID; later messages on the id negotiated.
 * Returns -EXDEV (nothing done) on a mismatch.
 */
int vmbus_host_rx_conn(struct vmbus_host *h, uint32_t conn_id, const void *msg, size_t len);

/*
 * Whether a post to conn_id would reach the manager now, for the SynIC
 * emulation to answer HV_STATUS_INVALID_CONNECTION_ID otherwise (on which
 * a Linux guest retries contact with the next older version at once).
 * Disconnected: id 1, and id 4 if max_version >= 5.0. Connected: the
 * negotiated id.
 */
bool vmbus_host_conn_id_valid(const struct vmbus_host *h, uint32_t conn_id);

/*
 * Answers a pending open with OPENCHANNEL_RESULT: status 0 opens the
 * channel, anything else leaves it closed. Returns 0, -ENOENT (no such
 * relid), -EPROTO (no open pending: never asked, or cancelled by a close,
 * release, unload or reset) or the send error.
 */
int vmbus_host_open_complete(struct vmbus_host *h, uint32_t relid, uint32_t status);

/*
 * Forgets the guest connection as UNLOAD does but sends nothing (partition
 * reset): close and gpadl_teardown callbacks for what was open/established,
 * pending opens and GPADLs dropped, rescinded relids freed. Offers stay.
 */
void vmbus_host_reset(struct vmbus_host *h);

/* Negotiated version; -ENOTCONN when not connected. */
int vmbus_host_version(const struct vmbus_host *h, uint32_t *version);

#define VMBUS_HOST_CHAN_CLOSED	0
#define VMBUS_HOST_CHAN_OPENING 1
#define VMBUS_HOST_CHAN_OPEN	2

struct vmbus_host_chan_info {
	uint32_t conn_id;
	bool offered;	/* OFFERCHANNEL sent on this connection */
	bool rescinded; /* waiting for RELID_RELEASED */
	int state;	/* VMBUS_HOST_CHAN_* */
	uint32_t ring_gpadl;
	uint32_t target_vp;
};

/* State of channel relid; -ENOENT if no offer holds it. */
int vmbus_host_chan_info(const struct vmbus_host *h, uint32_t relid,
			 struct vmbus_host_chan_info *info);

/*
 * Checkpoint of the manager's guest-facing state (connection, version,
 * per-offer flags and open state, GPADLs with the words of those still
 * assembling), for live migration. The format is this module's own:
 * little-endian, versioned, meant to be carried inside a larger blob.
 * vmbus_host_save() writes at most cap bytes; with buf NULL it only
 * computes *len. Returns 0 or -ENOSPC (cap too small; *len says how much).
 */
int vmbus_host_save(const struct vmbus_host *h, void *buf, size_t cap, size_t *len);

/*
 * Loads a checkpoint into a fresh manager (never connected, no GPADLs) that
 * already holds the same offers (same relids, connection ids and GUIDs:
 * attach the same devices in the same order first). The input is untrusted:
 * everything is checked before anything changes; no callback is made (the
 * caller maps the rings and GPADLs itself). Returns 0, -EBADMSG (malformed,
 * truncated, inconsistent) or -EINVAL (does not match the offers or the
 * configuration, or the manager is not fresh).
 */
int vmbus_host_restore(struct vmbus_host *h, const void *buf, size_t len);

/* Established and pending GPADLs of the current connection. */
int vmbus_host_gpadl_count(const struct vmbus_host *h, uint32_t *established, uint32_t *pending);

/* ======================================================================== */
/* Guest client (freestanding: caller-provided storage, no allocation)       */
/* ======================================================================== */

/*
 * Posts msg to the host on connection id conn_id (HvPostMessage, message
 * type 1). Return 0, or -ECONNREFUSED if the hypervisor answered
 * HV_STATUS_INVALID_CONNECTION_ID: for INITIATE_CONTACT the client then tries
 * the next older version at once, as Linux does. Any other error is
 * returned to the caller of the client function. Required.
 */
typedef int vmbus_client_send_cb(void *ctx, uint32_t conn_id, const void *msg, size_t len);

struct vmbus_client_ops {
	vmbus_client_send_cb *send;
};

struct vmbus_client_config {
	/* Versions tried, newest first, from vmbus_version_list[] between
	 * these. 0 = VMBUS_VERSION_WIN10_V5_3 / VMBUS_VERSION_WIN8. */
	uint32_t max_version;
	uint32_t min_version;
	uint32_t target_vcpu;	 /* VP the host should send messages to */
	uint64_t interrupt_page; /* sent to hosts below 5.0 */
	uint64_t monitor_page1;
	uint64_t monitor_page2;
	uint8_t msg_sint; /* 0 = VMBUS_MESSAGE_SINT */
	uint8_t msg_vtl;
};

/* Client states (vmbus_client_state()). */
#define VMBUS_CLIENT_IDLE	0 /* not connected (initial, after unload) */
#define VMBUS_CLIENT_CONTACTING 1 /* INITIATE_CONTACT sent */
#define VMBUS_CLIENT_CONNECTED	2 /* version agreed */
#define VMBUS_CLIENT_OFFERS	3 /* REQUESTOFFERS sent, offers arriving */
#define VMBUS_CLIENT_READY	4 /* ALLOFFERS_DELIVERED seen */
#define VMBUS_CLIENT_UNLOADING	5 /* UNLOAD sent */
#define VMBUS_CLIENT_REFUSED	6 /* no version accepted; connect again to retry */

/*
 * One offered channel, in caller storage. The offer fields are read-only to
 * the caller; relid == 0 marks a free slot.
 */
struct vmbus_client_chan {
	struct vmbus_guid if_type;
	struct vmbus_guid if_instance;
	uint32_t relid;
	uint32_t conn_id; /* HvSignalEvent input for this channel */
	uint16_t flags;
	uint16_t mmio_megabytes;
	uint16_t sub_channel_index;
	uint8_t monitor_id;
	bool monitor_allocated;
	bool dedicated_interrupt;
	bool rescinded;
	uint8_t user_def[VMBUS_MAX_USER_DEFINED_BYTES];
	/* private */
	uint8_t open_state;
	uint8_t modify_state;
	uint32_t open_id;
	uint32_t open_status;
	uint32_t modify_status;
};

/* One GPADL, in caller storage; private. */
struct vmbus_client_gpadl {
	uint32_t id; /* 0: free slot */
	uint32_t relid;
	uint8_t state;
	uint32_t status;
};

/* The client; embed or allocate it anywhere. Fields are private. */
struct vmbus_client {
	struct vmbus_client_config cfg;
	struct vmbus_client_ops ops;
	void *ctx;
	int state;
	uint32_t version;	/* tried or agreed */
	uint32_t post_conn_id;	/* where messages go now */
	uint32_t refused_state; /* connection_state of a refusal */
	struct vmbus_client_chan *chans;
	size_t nchans;
	struct vmbus_client_gpadl *gpadls;
	size_t ngpadls;
	uint32_t next_gpadl_id;
};

/*
 * Initializes c (idle) with caller storage for nchans offers and ngpadls
 * GPADLs, both zeroed here. cfg may be NULL for defaults. Returns 0 or
 * -EINVAL.
 */
int vmbus_client_init(struct vmbus_client *c, const struct vmbus_client_config *cfg,
		      const struct vmbus_client_ops *ops, void *ctx,
		      struct vmbus_client_chan *chans, size_t nchans,
		      struct vmbus_client_gpadl *gpadls, size_t ngpadls);

/*
 * Sends INITIATE_CONTACT with the newest configured version, on connection
 * id 4 for >= 5.0 and 1 below. A VERSION_RESPONSE with version_supported 0
 * (and connection_state SUCCESSFUL) makes vmbus_client_rx() try the next
 * older version; a refusal with a failed connection_state stops. Once a
 * version is accepted every later message goes to the connection id the
 * response names (>= 5.0; a zero there keeps id 4) or to id 1 (below 5.0).
 * Returns 0, -EISCONN unless idle or refused, -ECONNREFUSED if every
 * version's post was refused, or the send error.
 */
int vmbus_client_connect(struct vmbus_client *c);

/* 0 connected, -EINPROGRESS contacting, -ECONNREFUSED refused, -ENOTCONN
 * idle or unloading. */
int vmbus_client_connect_status(const struct vmbus_client *c);

/* VMBUS_CLIENT_* */
int vmbus_client_state(const struct vmbus_client *c);

/* Agreed version (0 if none) and the connection id messages are posted to. */
uint32_t vmbus_client_version(const struct vmbus_client *c);
uint32_t vmbus_client_msg_conn_id(const struct vmbus_client *c);

/*
 * Sends REQUESTOFFERS (once per connection). Offers are recorded as they
 * arrive, also after ALLOFFERS_DELIVERED. Returns 0, -ENOTCONN, -EPROTO
 * (already requested) or the send error.
 */
int vmbus_client_request_offers(struct vmbus_client *c);

/* 0 once ALLOFFERS_DELIVERED arrived, -EINPROGRESS before, -ENOTCONN. */
int vmbus_client_offers_status(const struct vmbus_client *c);

/*
 * Feeds one message from the host. Returns 0 or an error (top of file); in
 * particular -ENOSPC when an offer does not fit the caller's array (it is
 * dropped), -ENOENT for results naming unknown relids/GPADLs and -EPROTO
 * for results nobody waits for. While unloading, everything but
 * UNLOAD_RESPONSE is ignored (returns 0): the host may still have had
 * messages in flight.
 */
int vmbus_client_rx(struct vmbus_client *c, const void *msg, size_t len);

/* The offer with this relid; -ENOENT if none. */
int vmbus_client_offer(const struct vmbus_client *c, uint32_t relid,
		       const struct vmbus_client_chan **out);

/* The first non-rescinded offer of device class if_type after *relid (0
 * to start); -ENOENT when there is none. */
int vmbus_client_find_offer(const struct vmbus_client *c, const struct vmbus_guid *if_type,
			    uint32_t after_relid, const struct vmbus_client_chan **out);

/*
 * Describes npfns pages (one range, whole pages) to the host for channel
 * relid: GPADL_HEADER and as many GPADL_BODY messages as the PFNs need, each
 * at most 240 bytes, all sent now. *gpadl_id gets the id chosen; poll
 * vmbus_client_gpadl_status(). The pfns array is not kept. Returns 0,
 * -ENOTCONN, -ENOENT (unknown relid), -EPROTO (rescinded), -EINVAL (npfns 0
 * or above VMBUS_GPADL_MAX_WIRE_PFNS), -ENOSPC (no free GPADL slot) or the
 * send error (the slot is then freed, but messages already sent stay sent:
 * reconnect).
 */
int vmbus_client_gpadl_create(struct vmbus_client *c, uint32_t relid, const uint64_t *pfns,
			      uint32_t npfns, uint32_t *gpadl_id);

/*
 * 0 established, -EINPROGRESS waiting for GPADL_CREATED or GPADL_TORNDOWN,
 * -EIO refused by the host (*host_status, if not NULL, gets the creation
 * status), -ENOENT unknown or torn down.
 */
int vmbus_client_gpadl_status(const struct vmbus_client *c, uint32_t gpadl_id,
			      uint32_t *host_status);

/*
 * Sends GPADL_TEARDOWN for an established GPADL (its id is freed when
 * GPADL_TORNDOWN arrives); for a refused one frees the id without a message.
 * Returns 0, -ENOENT, -EINPROGRESS (creation or teardown still pending) or
 * the send error.
 */
int vmbus_client_gpadl_teardown(struct vmbus_client *c, uint32_t gpadl_id);

/*
 * Sends OPENCHANNEL for relid with its ring in GPADL ring_gpadl (guest->host
 * ring at page 0, host->guest ring at downstream_offset pages) and
 * user_len <= 120 bytes of user data; the open id is the relid, as in Linux.
 * Poll vmbus_client_open_status(). Returns 0, -ENOTCONN, -ENOENT (unknown
 * relid), -EPROTO (rescinded, or open/opening already), -EINVAL or the send
 * error.
 */
int vmbus_client_open(struct vmbus_client *c, uint32_t relid, uint32_t ring_gpadl,
		      uint32_t downstream_offset, uint32_t target_vp, const void *user_data,
		      size_t user_len);

/*
 * 0 open, -EINPROGRESS waiting for OPENCHANNEL_RESULT, -EIO refused
 * (*host_status gets the status), -ENOTCONN closed, -ENOENT unknown relid.
 */
int vmbus_client_open_status(const struct vmbus_client *c, uint32_t relid, uint32_t *host_status);

/*
 * Sends CLOSECHANNEL; the channel counts as closed at once (the protocol
 * has no reply). Also allowed while the open is pending (it cancels it) and
 * on rescinded channels. Returns 0, -ENOENT, -ENOTCONN (not open or
 * opening) or the send error.
 */
int vmbus_client_close(struct vmbus_client *c, uint32_t relid);

/*
 * Sends MODIFYCHANNEL (version >= 4.1) to retarget an open channel's
 * interrupts. Hosts >= 5.3 answer; poll vmbus_client_modify_status().
 * Returns 0, -ENOENT, -ENOTCONN (not open), -EOPNOTSUPP (version below
 * 4.1), -EINPROGRESS (one pending) or the send error.
 */
int vmbus_client_modify_channel(struct vmbus_client *c, uint32_t relid, uint32_t target_vp);

/* 0 done (or no answer expected below 5.3), -EINPROGRESS, -EIO refused
 * (*host_status gets it), -ENOENT. */
int vmbus_client_modify_status(const struct vmbus_client *c, uint32_t relid, uint32_t *host_status);

/*
 * After the host rescinded relid and the driver closed the channel and tore
 * down its GPADLs: sends RELID_RELEASED and frees the slot (and any GPADL
 * slots still naming the relid). Returns 0, -ENOENT, -EPROTO (not rescinded)
 * or the send error.
 */
int vmbus_client_release(struct vmbus_client *c, uint32_t relid);

/*
 * Sends UNLOAD; on UNLOAD_RESPONSE every offer and GPADL is forgotten and
 * the client is idle (vmbus_client_connect() may be called again).
 * Returns 0, -ENOTCONN or the send error.
 */
int vmbus_client_unload(struct vmbus_client *c);

#endif /* FAB_VMBUS_CHAN_H */
