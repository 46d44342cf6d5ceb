/* SPDX-License-Identifier: MIT */
/*
 * VMBus channel-management wire format (Hyper-V compatible) and its one
 * validating parser.
 *
 * Layouts, sizes and constants follow Linux include/linux/hyperv.h and
 * drivers/hv/hyperv_vmbus.h as tabulated in shared/vmbus-facts.md (sections
 * 1-3 and 7.4); every struct below carries static assertions on its size and
 * on the offsets a mistake would move. All multi-byte fields are little
 * endian and this code assumes a little-endian CPU (x86-64, arm64), which is
 * asserted below.
 *
 * This header and proto.c are also built into freestanding guest images:
 * they may include only <stdint.h>, <stddef.h>, <stdbool.h>, <string.h>
 * (memcpy/memset/memcmp) and <errno.h>; no allocation, no floating point.
 *
 * Nothing here keeps state; every function is safe to call from any thread.
 */
#ifndef FAB_VMBUS_PROTO_H
#define FAB_VMBUS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "VMBus wire structs are declared in CPU byte order: little-endian only");

/* ---- message types (enum vmbus_channel_message_type) -------------------- */

#define VMBUS_MSG_INVALID		 0
#define VMBUS_MSG_OFFERCHANNEL		 1  /* H->G */
#define VMBUS_MSG_RESCIND_CHANNELOFFER	 2  /* H->G */
#define VMBUS_MSG_REQUESTOFFERS		 3  /* G->H, header only */
#define VMBUS_MSG_ALLOFFERS_DELIVERED	 4  /* H->G, header only */
#define VMBUS_MSG_OPENCHANNEL		 5  /* G->H */
#define VMBUS_MSG_OPENCHANNEL_RESULT	 6  /* H->G */
#define VMBUS_MSG_CLOSECHANNEL		 7  /* G->H */
#define VMBUS_MSG_GPADL_HEADER		 8  /* G->H */
#define VMBUS_MSG_GPADL_BODY		 9  /* G->H */
#define VMBUS_MSG_GPADL_CREATED		 10 /* H->G */
#define VMBUS_MSG_GPADL_TEARDOWN	 11 /* G->H */
#define VMBUS_MSG_GPADL_TORNDOWN	 12 /* H->G */
#define VMBUS_MSG_RELID_RELEASED	 13 /* G->H */
#define VMBUS_MSG_INITIATE_CONTACT	 14 /* G->H */
#define VMBUS_MSG_VERSION_RESPONSE	 15 /* H->G */
#define VMBUS_MSG_UNLOAD		 16 /* G->H, header only */
#define VMBUS_MSG_UNLOAD_RESPONSE	 17 /* H->G, header only */
#define VMBUS_MSG_TL_CONNECT_REQUEST	 21 /* G->H, hv_sock: not supported here */
#define VMBUS_MSG_MODIFYCHANNEL		 22 /* G->H, version >= 4.1 */
#define VMBUS_MSG_TL_CONNECT_RESULT	 23 /* H->G, not supported here */
#define VMBUS_MSG_MODIFYCHANNEL_RESPONSE 24 /* H->G, version >= 5.3 */
#define VMBUS_MSG_COUNT			 25

/* Largest SynIC message payload, hence largest channel message. */
#define VMBUS_MSG_MAX 240

/* Direction of travel, for vmbus_msg_parse() (the receiver passes its side). */
#define VMBUS_DIR_H2G 1 /* host to guest: the guest client parses these */
#define VMBUS_DIR_G2H 2 /* guest to host: the host manager parses these */

/* ---- protocol versions: (major << 16) | minor ---------------------------- */

#define VMBUS_MAKE_VERSION(major, minor) ((uint32_t)(((major) << 16) | (minor)))
#define VMBUS_VERSION_MAJOR(v)		 ((uint32_t)(v) >> 16)
#define VMBUS_VERSION_MINOR(v)		 ((uint32_t)(v)&0xffffu)

#define VMBUS_VERSION_WS2008	 VMBUS_MAKE_VERSION(0, 13)
#define VMBUS_VERSION_WIN7	 VMBUS_MAKE_VERSION(1, 1)
#define VMBUS_VERSION_WIN8	 VMBUS_MAKE_VERSION(2, 4)
#define VMBUS_VERSION_WIN8_1	 VMBUS_MAKE_VERSION(3, 0)
#define VMBUS_VERSION_WIN10	 VMBUS_MAKE_VERSION(4, 0)
#define VMBUS_VERSION_WIN10_V4_1 VMBUS_MAKE_VERSION(4, 1)
#define VMBUS_VERSION_WIN10_V5	 VMBUS_MAKE_VERSION(5, 0)
#define VMBUS_VERSION_WIN10_V5_1 VMBUS_MAKE_VERSION(5, 1)
#define VMBUS_VERSION_WIN10_V5_2 VMBUS_MAKE_VERSION(5, 2)
#define VMBUS_VERSION_WIN10_V5_3 VMBUS_MAKE_VERSION(5, 3)

/*
 * The versions both halves implement, newest first: exactly the list current
 * Linux tries (5.3 down to WIN8). WIN7 and WS2008 are left out, as Linux has
 * dropped them; their messages lack fields (target_vp) this code relies on.
 */
#define VMBUS_VERSION_COUNT 8
extern const uint32_t vmbus_version_list[VMBUS_VERSION_COUNT];

/* ---- connection ids and SINT (drivers/hv/hyperv_vmbus.h) ---------------- */

/*
 * Channel messages are posted (HvPostMessage, SynIC message type 1) to a
 * connection id: for versions >= 5.0 INITIATE_CONTACT goes to id 4 and
 * everything after it to the id the VERSION_RESPONSE names; below 5.0 all
 * messages go to id 1.
 */
#define VMBUS_MESSAGE_CONNECTION_ID   1
#define VMBUS_MESSAGE_CONNECTION_ID_4 4
#define VMBUS_MESSAGE_PORT_ID	      1
#define VMBUS_EVENT_CONNECTION_ID     2
#define VMBUS_MONITOR_CONNECTION_ID   3
#define VMBUS_MESSAGE_SINT	      2
#define VMBUS_HV_MESSAGE_TYPE	      1 /* SynIC message type of every channel message */

/* Highest relid a channel may have (MAX_CHANNEL_RELIDS - 1 in Linux). */
#define VMBUS_MAX_RELID	    2047
#define VMBUS_INVALID_RELID 0xffffffffu

/* ---- offer flags (vmbus_channel_offer.chn_flags) ------------------------ */

#define VMBUS_OFFER_ENUMERATE_DEVICE_INTERFACE	   0x0001
#define VMBUS_OFFER_SERVER_SUPPORTS_TRANSFER_PAGES 0x0002
#define VMBUS_OFFER_SERVER_SUPPORTS_GPADLS	   0x0004
#define VMBUS_OFFER_NAMED_PIPE_MODE		   0x0010
#define VMBUS_OFFER_LOOPBACK			   0x0100
#define VMBUS_OFFER_PARENT			   0x0200
#define VMBUS_OFFER_REQUEST_MONITORED_NOTIFICATION 0x0400
#define VMBUS_OFFER_TLNPI_PROVIDER		   0x2000

#define VMBUS_PIPE_TYPE_BYTE	0x0
#define VMBUS_PIPE_TYPE_MESSAGE 0x4

#define VMBUS_MAX_USER_DEFINED_BYTES	  120
#define VMBUS_MAX_PIPE_USER_DEFINED_BYTES 116
#define VMBUS_OPEN_USER_DATA_BYTES	  120

/* VERSION_RESPONSE.connection_state (OpenVMM names; Linux ignores it). */
#define VMBUS_CONNECTION_SUCCESSFUL		0
#define VMBUS_CONNECTION_FAILED_LOW_RESOURCES	1
#define VMBUS_CONNECTION_FAILED_UNKNOWN_FAILURE 2

/* A non-zero NT status for OPENCHANNEL_RESULT / GPADL_CREATED / modify
 * responses; the guest only tests for non-zero. */
#define VMBUS_STATUS_SUCCESS	  0u
#define VMBUS_STATUS_UNSUCCESSFUL 0xc0000001u

/* ---- GPADL geometry ----------------------------------------------------- */

#define VMBUS_PAGE_SHIFT 12
#define VMBUS_PAGE_SIZE	 4096u
/* PFNs that fit after the first range descriptor in a GPADL_HEADER, and in
 * one GPADL_BODY: (240 - 20 - 8) / 8 and (240 - 16) / 8. */
#define VMBUS_GPADL_HEADER_MAX_PFNS 26
#define VMBUS_GPADL_BODY_MAX_PFNS   28
/* range_buflen is 16 bits and counts the descriptor word too: the largest
 * single-range GPADL the wire can describe. */
#define VMBUS_GPADL_MAX_WIRE_PFNS ((0xffffu - 8u) / 8u)

/* ---- GUIDs --------------------------------------------------------------- */

/*
 * A GUID as it appears on the wire: Data1 (u32), Data2 (u16) and Data3 (u16)
 * little endian, then the eight Data4 bytes in order. The textual form
 * "0e0b6031-5213-4934-818b-38d90ced39db" shows Data1..3 as big-endian hex.
 */
struct vmbus_guid {
	uint8_t b[16];
};

/* A constant from the textual fields, like Linux GUID_INIT(). */
#define VMBUS_GUID_INIT(a, b_, c, d0, d1, d2, d3, d4, d5, d6, d7)                              \
	{                                                                                      \
		{                                                                              \
			(uint8_t)((a)&0xff), (uint8_t)(((a) >> 8) & 0xff),                     \
				(uint8_t)(((a) >> 16) & 0xff), (uint8_t)(((a) >> 24) & 0xff),  \
				(uint8_t)((b_)&0xff), (uint8_t)(((b_) >> 8) & 0xff),           \
				(uint8_t)((c)&0xff), (uint8_t)(((c) >> 8) & 0xff), (d0), (d1), \
				(d2), (d3), (d4), (d5), (d6), (d7)                             \
		}                                                                              \
	}

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus the NUL. */
#define VMBUS_GUID_STR_LEN 37

/*
 * Parses the 36-character textual form, optionally in braces, either case,
 * into wire byte order. Returns 0, or -EINVAL if s is not exactly that form
 * (nothing may follow it).
 */
int vmbus_guid_parse(const char *s, struct vmbus_guid *out);

/* Writes the lower-case textual form (36 characters and a NUL) into out. */
void vmbus_guid_format(const struct vmbus_guid *g, char out[VMBUS_GUID_STR_LEN]);

/* True if both GUIDs have the same 16 bytes. */
bool vmbus_guid_equal(const struct vmbus_guid *a, const struct vmbus_guid *b);

/* ---- wire structs -------------------------------------------------------- */

#define VMBUS_PACKED __attribute__((packed))

struct vmbus_msg_hdr {
	uint32_t msgtype;
	uint32_t padding; /* zero on send, ignored on receive (as in Linux) */
} VMBUS_PACKED;

/* Nested in OFFERCHANNEL. */
struct vmbus_channel_offer {
	struct vmbus_guid if_type;
	struct vmbus_guid if_instance;
	uint64_t reserved1;
	uint64_t reserved2;
	uint16_t chn_flags;
	uint16_t mmio_megabytes;
	union {
		struct {
			uint8_t user_def[VMBUS_MAX_USER_DEFINED_BYTES];
		} VMBUS_PACKED std;
		struct {
			uint32_t pipe_mode;
			uint8_t user_def[VMBUS_MAX_PIPE_USER_DEFINED_BYTES];
		} VMBUS_PACKED pipe;
	} u;
	uint16_t sub_channel_index;
	uint16_t reserved3;
} VMBUS_PACKED;

/* Bit 0 of offer_channel.monitor_allocated / .is_dedicated_interrupt; Linux
 * declares both as bitfields, the other bits are reserved. */
#define VMBUS_OFFER_MONITOR_ALLOCATED	0x01
#define VMBUS_OFFER_DEDICATED_INTERRUPT 0x0001

struct vmbus_msg_offer_channel {
	struct vmbus_msg_hdr hdr;
	struct vmbus_channel_offer offer;
	uint32_t child_relid;
	uint8_t monitorid;
	uint8_t monitor_allocated;
	uint16_t is_dedicated_interrupt;
	uint32_t connection_id; /* the guest signals the channel with this (HvSignalEvent) */
} VMBUS_PACKED;

struct vmbus_msg_rescind_offer {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
} VMBUS_PACKED;

/* REQUESTOFFERS, ALLOFFERS_DELIVERED, UNLOAD and UNLOAD_RESPONSE carry
 * nothing but the header. */
struct vmbus_msg_request_offers {
	struct vmbus_msg_hdr hdr;
} VMBUS_PACKED;

struct vmbus_msg_alloffers_delivered {
	struct vmbus_msg_hdr hdr;
} VMBUS_PACKED;

struct vmbus_msg_unload {
	struct vmbus_msg_hdr hdr;
} VMBUS_PACKED;

struct vmbus_msg_unload_response {
	struct vmbus_msg_hdr hdr;
} VMBUS_PACKED;

struct vmbus_msg_initiate_contact {
	struct vmbus_msg_hdr hdr;
	uint32_t vmbus_version_requested;
	uint32_t target_vcpu; /* VP the host sends its messages to */
	union {
		uint64_t interrupt_page; /* version < 5.0: GPA of the interrupt page */
		struct {
			uint8_t msg_sint; /* version >= 5.0: SINT for host messages */
			uint8_t msg_vtl;
			uint8_t reserved[6];
		} VMBUS_PACKED;
	};
	uint64_t monitor_page1; /* parent -> child monitor page GPA */
	uint64_t monitor_page2; /* child -> parent monitor page GPA */
} VMBUS_PACKED;

struct vmbus_msg_version_response {
	struct vmbus_msg_hdr hdr;
	uint8_t version_supported;
	uint8_t connection_state;
	uint16_t padding;
	/* >= 5.0: the connection id for every later guest message. */
	uint32_t msg_conn_id;
} VMBUS_PACKED;

struct vmbus_msg_open_channel {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t ringbuffer_gpadlhandle;
	uint32_t target_vp;
	/* Page offset of the host->guest ring inside the ring GPADL. */
	uint32_t downstream_ringbuffer_pageoffset;
	uint8_t userdata[VMBUS_OPEN_USER_DATA_BYTES];
} VMBUS_PACKED;

struct vmbus_msg_open_result {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t status;
} VMBUS_PACKED;

struct vmbus_msg_close_channel {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
} VMBUS_PACKED;

/*
 * One range of a GPADL: a descriptor word followed by
 * ceil((byte_offset + byte_count) / 4096) PFNs (u64 each). Linux declares it
 * unpacked with a flexible PFN array; here the PFNs are read by offset so
 * the struct is just the descriptor.
 */
struct vmbus_gpa_range {
	uint32_t byte_count;
	uint32_t byte_offset; /* into the first page: < 4096 */
};

/*
 * Followed by the start of the range buffer: range_buflen bytes in all
 * (descriptor words and PFNs of every range), of which whatever does not fit
 * in this message follows in GPADL_BODY messages.
 */
struct vmbus_msg_gpadl_header {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
	uint16_t range_buflen;
	uint16_t rangecount;
} VMBUS_PACKED;

/* Followed by continuation PFNs (u64 each) of the range buffer. */
struct vmbus_msg_gpadl_body {
	struct vmbus_msg_hdr hdr;
	uint32_t msgnumber; /* Linux sends 0; ignored */
	uint32_t gpadl;
} VMBUS_PACKED;

struct vmbus_msg_gpadl_created {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
	uint32_t creation_status;
} VMBUS_PACKED;

struct vmbus_msg_gpadl_teardown {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
} VMBUS_PACKED;

struct vmbus_msg_gpadl_torndown {
	struct vmbus_msg_hdr hdr;
	uint32_t gpadl;
} VMBUS_PACKED;

struct vmbus_msg_relid_released {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
} VMBUS_PACKED;

struct vmbus_msg_modifychannel {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t target_vp;
} VMBUS_PACKED;

struct vmbus_msg_modifychannel_response {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t status;
} VMBUS_PACKED;

/* Sizes and offsets from vmbus-facts.md section 2. */
_Static_assert(sizeof(struct vmbus_guid) == 16, "guid");
_Static_assert(sizeof(struct vmbus_msg_hdr) == 8, "header");
_Static_assert(sizeof(struct vmbus_channel_offer) == 176, "offer");
_Static_assert(offsetof(struct vmbus_channel_offer, chn_flags) == 48, "offer.chn_flags");
_Static_assert(offsetof(struct vmbus_channel_offer, mmio_megabytes) == 50, "offer.mmio");
_Static_assert(offsetof(struct vmbus_channel_offer, u.std.user_def) == 52, "offer.user_def");
_Static_assert(offsetof(struct vmbus_channel_offer, u.pipe.user_def) == 56, "offer.pipe");
_Static_assert(offsetof(struct vmbus_channel_offer, sub_channel_index) == 172, "offer.subch");
_Static_assert(sizeof(struct vmbus_msg_offer_channel) == 196, "offer_channel");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, offer) == 8, "offer_channel.offer");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, child_relid) == 184, "offer.relid");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, monitorid) == 188, "offer.monitorid");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, monitor_allocated) == 189, "offer.mon");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, is_dedicated_interrupt) == 190,
	       "offer.dedicated");
_Static_assert(offsetof(struct vmbus_msg_offer_channel, connection_id) == 192, "offer.connid");
_Static_assert(sizeof(struct vmbus_msg_rescind_offer) == 12, "rescind");
_Static_assert(sizeof(struct vmbus_msg_request_offers) == 8, "request_offers");
_Static_assert(sizeof(struct vmbus_msg_alloffers_delivered) == 8, "alloffers");
_Static_assert(sizeof(struct vmbus_msg_unload) == 8, "unload");
_Static_assert(sizeof(struct vmbus_msg_unload_response) == 8, "unload_response");
_Static_assert(sizeof(struct vmbus_msg_initiate_contact) == 40, "initiate_contact");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, target_vcpu) == 12, "ic.vcpu");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, interrupt_page) == 16, "ic.intpage");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, msg_sint) == 16, "ic.sint");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, msg_vtl) == 17, "ic.vtl");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, monitor_page1) == 24, "ic.mon1");
_Static_assert(offsetof(struct vmbus_msg_initiate_contact, monitor_page2) == 32, "ic.mon2");
_Static_assert(sizeof(struct vmbus_msg_version_response) == 16, "version_response");
_Static_assert(offsetof(struct vmbus_msg_version_response, connection_state) == 9, "vr.state");
_Static_assert(offsetof(struct vmbus_msg_version_response, msg_conn_id) == 12, "vr.connid");
_Static_assert(sizeof(struct vmbus_msg_open_channel) == 148, "open_channel");
_Static_assert(offsetof(struct vmbus_msg_open_channel, ringbuffer_gpadlhandle) == 16, "oc.gpadl");
_Static_assert(offsetof(struct vmbus_msg_open_channel, target_vp) == 20, "oc.vp");
_Static_assert(offsetof(struct vmbus_msg_open_channel, downstream_ringbuffer_pageoffset) == 24,
	       "oc.downstream");
_Static_assert(offsetof(struct vmbus_msg_open_channel, userdata) == 28, "oc.userdata");
_Static_assert(sizeof(struct vmbus_msg_open_result) == 20, "open_result");
_Static_assert(offsetof(struct vmbus_msg_open_result, status) == 16, "or.status");
_Static_assert(sizeof(struct vmbus_msg_close_channel) == 12, "close_channel");
_Static_assert(sizeof(struct vmbus_gpa_range) == 8, "gpa_range");
_Static_assert(sizeof(struct vmbus_msg_gpadl_header) == 20, "gpadl_header");
_Static_assert(offsetof(struct vmbus_msg_gpadl_header, range_buflen) == 16, "gh.buflen");
_Static_assert(offsetof(struct vmbus_msg_gpadl_header, rangecount) == 18, "gh.rangecount");
_Static_assert(sizeof(struct vmbus_msg_gpadl_body) == 16, "gpadl_body");
_Static_assert(offsetof(struct vmbus_msg_gpadl_body, gpadl) == 12, "gb.gpadl");
_Static_assert(sizeof(struct vmbus_msg_gpadl_created) == 20, "gpadl_created");
_Static_assert(offsetof(struct vmbus_msg_gpadl_created, creation_status) == 16, "gc.status");
_Static_assert(sizeof(struct vmbus_msg_gpadl_teardown) == 16, "gpadl_teardown");
_Static_assert(sizeof(struct vmbus_msg_gpadl_torndown) == 12, "gpadl_torndown");
_Static_assert(sizeof(struct vmbus_msg_relid_released) == 12, "relid_released");
_Static_assert(sizeof(struct vmbus_msg_modifychannel) == 16, "modifychannel");
_Static_assert(sizeof(struct vmbus_msg_modifychannel_response) == 16, "modify_response");
_Static_assert(VMBUS_GPADL_HEADER_MAX_PFNS ==
		       (VMBUS_MSG_MAX - sizeof(struct vmbus_msg_gpadl_header) -
			sizeof(struct vmbus_gpa_range)) /
			       8,
	       "header pfns");
_Static_assert(VMBUS_GPADL_BODY_MAX_PFNS ==
		       (VMBUS_MSG_MAX - sizeof(struct vmbus_msg_gpadl_body)) / 8,
	       "body pfns");

/* ---- the validating parser ---------------------------------------------- */

/*
 * A parsed message: a private copy of the bytes (so nothing is read twice
 * from memory the other side can still write, such as a SynIC message page)
 * viewed through the struct of its type. Bytes past the received length
 * read as zero.
 */
struct vmbus_msg {
	uint32_t type;
	uint32_t len; /* bytes received */
	/*
	 * Variable part, in 64-bit words read with vmbus_msg_word():
	 * GPADL_HEADER: words of the range buffer present in this message
	 * (descriptors and PFNs); GPADL_BODY: PFNs. Zero for other types.
	 */
	uint32_t nwords;
	/* GPADL_HEADER only: range_buflen / 8, the range buffer's total words. */
	uint32_t total_words;
	union {
		uint8_t raw[VMBUS_MSG_MAX];
		struct vmbus_msg_hdr hdr;
		struct vmbus_msg_offer_channel offer;
		struct vmbus_msg_rescind_offer rescind;
		struct vmbus_msg_initiate_contact contact;
		struct vmbus_msg_version_response version;
		struct vmbus_msg_open_channel open;
		struct vmbus_msg_open_result open_result;
		struct vmbus_msg_close_channel close;
		struct vmbus_msg_gpadl_header gpadl_header;
		struct vmbus_msg_gpadl_body gpadl_body;
		struct vmbus_msg_gpadl_created gpadl_created;
		struct vmbus_msg_gpadl_teardown gpadl_teardown;
		struct vmbus_msg_gpadl_torndown gpadl_torndown;
		struct vmbus_msg_relid_released relid_released;
		struct vmbus_msg_modifychannel modify;
		struct vmbus_msg_modifychannel_response modify_response;
	} u;
};

/*
 * The one entry point for channel messages from the other side. Checks, in
 * this order, and touches *out only on success:
 *   -EBADMSG   buf is NULL or len < 8 (no header)
 *   -EMSGSIZE  len > 240
 *   -ENOMSG    the type is unknown or not implemented (0, 18-21, 23, >= 25)
 *   -EPERM     the type does not travel in `direction` (VMBUS_DIR_*)
 *   -EBADMSG   len is below the type's fixed size, or the variable part of a
 *              GPADL_HEADER/GPADL_BODY is inconsistent (partial words,
 *              rangecount 0, range_buflen not a multiple of 8, more bytes
 *              than range_buflen, byte_offset >= 4096, byte_count 0, or a
 *              PFN count implied by the descriptors that disagrees with
 *              range_buflen)
 * Fixed-size messages longer than their struct are accepted and the excess
 * ignored, as Linux does (newer peers append fields).
 */
int vmbus_msg_parse(const void *buf, size_t len, int direction, struct vmbus_msg *out);

/* Name of a message type ("OFFERCHANNEL"), or "UNKNOWN"; for logs. */
const char *vmbus_msg_name(uint32_t type);

/* Word i (< m->nwords) of the variable part of a parsed GPADL message. */
uint64_t vmbus_msg_word(const struct vmbus_msg *m, uint32_t i);

/*
 * Checks a complete GPADL range buffer of nwords 64-bit words holding
 * rangecount ranges (descriptor word: byte_count low 32 bits, byte_offset
 * high 32 bits; then that range's PFNs) and that the ranges use exactly all
 * words. On success stores the total PFN count in *npfns. Returns 0 or
 * -EBADMSG.
 */
int vmbus_gpa_ranges_check(const uint64_t *words, uint32_t nwords, uint32_t rangecount,
			   uint32_t *npfns);

/* Pages spanned by a range: ceil((byte_offset + byte_count) / 4096). */
static inline uint64_t vmbus_range_pages(uint32_t byte_offset, uint32_t byte_count)
{
	return ((uint64_t)byte_offset + byte_count + VMBUS_PAGE_SIZE - 1) >> VMBUS_PAGE_SHIFT;
}

/* ---- builders ------------------------------------------------------------ */

/*
 * Each builder writes one complete message (header and padding zeroed) into
 * buf of cap bytes and stores its length in *len. They return 0, or
 * -ENOSPC if cap is too small, or -EINVAL for arguments the wire cannot
 * carry. buf need not be aligned. No allocation.
 */

/* REQUESTOFFERS, ALLOFFERS_DELIVERED, UNLOAD, UNLOAD_RESPONSE. */
int vmbus_build_simple(void *buf, size_t cap, uint32_t type, size_t *len);

/* Host: OFFERCHANNEL. offer is copied as is; monitor is not allocated. */
int vmbus_build_offer(void *buf, size_t cap, const struct vmbus_channel_offer *offer,
		      uint32_t relid, uint32_t conn_id, bool dedicated_interrupt, size_t *len);
int vmbus_build_rescind(void *buf, size_t cap, uint32_t relid, size_t *len);
/* msg_conn_id: see struct vmbus_msg_version_response. */
int vmbus_build_version_response(void *buf, size_t cap, bool supported, uint8_t conn_state,
				 uint32_t msg_conn_id, size_t *len);
int vmbus_build_open_result(void *buf, size_t cap, uint32_t relid, uint32_t openid, uint32_t status,
			    size_t *len);
int vmbus_build_gpadl_created(void *buf, size_t cap, uint32_t relid, uint32_t gpadl,
			      uint32_t status, size_t *len);
int vmbus_build_gpadl_torndown(void *buf, size_t cap, uint32_t gpadl, size_t *len);
int vmbus_build_modify_response(void *buf, size_t cap, uint32_t relid, uint32_t status,
				size_t *len);

/*
 * Guest: INITIATE_CONTACT. For version >= 5.0 the union carries msg_sint and
 * msg_vtl and interrupt_page is ignored; below 5.0 it carries interrupt_page.
 */
int vmbus_build_initiate_contact(void *buf, size_t cap, uint32_t version, uint32_t target_vcpu,
				 uint64_t interrupt_page, uint8_t msg_sint, uint8_t msg_vtl,
				 uint64_t monitor_page1, uint64_t monitor_page2, size_t *len);
/* user_len <= 120 bytes of user_data; the rest of the field is zeroed. */
int vmbus_build_open_channel(void *buf, size_t cap, uint32_t relid, uint32_t openid,
			     uint32_t ring_gpadl, uint32_t target_vp, uint32_t downstream_pages,
			     const void *user_data, size_t user_len, size_t *len);
int vmbus_build_close_channel(void *buf, size_t cap, uint32_t relid, size_t *len);
/*
 * GPADL_HEADER for one range of total_pfns whole pages (byte_offset 0),
 * carrying the first min(total_pfns, 26) of pfns; *used gets that count and
 * the caller sends the rest with vmbus_build_gpadl_body(). total_pfns must be
 * 1..VMBUS_GPADL_MAX_WIRE_PFNS.
 */
int vmbus_build_gpadl_header(void *buf, size_t cap, uint32_t relid, uint32_t gpadl,
			     const uint64_t *pfns, uint32_t total_pfns, uint32_t *used,
			     size_t *len);
/* GPADL_BODY carrying the first min(npfns, 28) of pfns; *used gets that count. */
int vmbus_build_gpadl_body(void *buf, size_t cap, uint32_t gpadl, const uint64_t *pfns,
			   uint32_t npfns, uint32_t *used, size_t *len);
int vmbus_build_gpadl_teardown(void *buf, size_t cap, uint32_t relid, uint32_t gpadl, size_t *len);
int vmbus_build_relid_released(void *buf, size_t cap, uint32_t relid, size_t *len);
int vmbus_build_modifychannel(void *buf, size_t cap, uint32_t relid, uint32_t target_vp,
			      size_t *len);

#endif /* FAB_VMBUS_PROTO_H */
