/* SPDX-License-Identifier: MIT */
/*
 * Integration components (heartbeat, shutdown): wire format shared by the
 * host VSPs and the guest clients. Freestanding (stdint only). Layouts from
 * Linux include/linux/hyperv.h and drivers/hv/hv_util.c (see
 * shared/vmbus-facts.md section 7).
 *
 * Every IC message is one in-band VMBus packet whose payload is
 * vmbuspipe_hdr (8) + icmsg_hdr (20) + the message body at byte 28. The host
 * sends requests; the guest answers each with the same packet length and
 * transaction id, icflags TRANSACTION | RESPONSE. The first exchange is a
 * version negotiation (ICMSGTYPE_NEGOTIATE).
 */
#ifndef FAB_VMBUS_IC_H
#define FAB_VMBUS_IC_H

#include <stdint.h>

struct ic_pipe_hdr {
	uint32_t flags;
	uint32_t msgsize;
} __attribute__((packed));

struct ic_version {
	uint16_t major;
	uint16_t minor;
} __attribute__((packed));

struct icmsg_hdr {
	struct ic_version icverframe;
	uint16_t icmsgtype;
	struct ic_version icvermsg;
	uint16_t icmsgsize;
	uint32_t status;
	uint8_t ictransaction_id;
	uint8_t icflags;
	uint8_t reserved[2];
} __attribute__((packed));

struct icmsg_negotiate {
	uint16_t icframe_vercnt;
	uint16_t icmsg_vercnt;
	uint32_t reserved;
	struct ic_version icversion_data[]; /* framework versions, then message versions */
} __attribute__((packed));

struct ic_heartbeat_msg {
	uint64_t seq_num;
	uint32_t reserved[8];
} __attribute__((packed));

struct ic_shutdown_msg {
	uint32_t reason_code;
	uint32_t timeout_seconds;
	uint32_t flags;
	uint8_t display_message[2048];
} __attribute__((packed));

_Static_assert(sizeof(struct ic_pipe_hdr) == 8, "vmbuspipe_hdr");
_Static_assert(sizeof(struct icmsg_hdr) == 20, "icmsg_hdr");
_Static_assert(sizeof(struct icmsg_negotiate) == 8, "icmsg_negotiate");
_Static_assert(sizeof(struct ic_heartbeat_msg) == 40, "heartbeat_msg_data");
_Static_assert(sizeof(struct ic_shutdown_msg) == 2060, "shutdown_msg_data");

#define IC_HDR_LEN (sizeof(struct ic_pipe_hdr) + sizeof(struct icmsg_hdr)) /* 28 */

#define ICMSGTYPE_NEGOTIATE 0
#define ICMSGTYPE_HEARTBEAT 1
#define ICMSGTYPE_SHUTDOWN  3

#define ICMSGHDRFLAG_TRANSACTION 1
#define ICMSGHDRFLAG_REQUEST	 2
#define ICMSGHDRFLAG_RESPONSE	 4

#define IC_HV_S_OK   0x00000000u
#define IC_HV_E_FAIL 0x80004005u

/* Versions: framework 3.0 and 1.0; heartbeat 3.0, 1.0; shutdown 3.2..1.0. */
#define IC_FW_VERSION_3 ((struct ic_version){ 3, 0 })
#define IC_FW_VERSION_1 ((struct ic_version){ 1, 0 })

/* Interface type GUIDs, wire byte order (vmbus-facts 7.4). */
#define IC_HEARTBEAT_GUID_BYTES                                                               \
	{                                                                                     \
		0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e, 0xab, 0x55, 0x38, 0x2f, 0x3b, \
			0xd5, 0x42, 0x2d                                                      \
	}
#define IC_SHUTDOWN_GUID_BYTES                                                                \
	{                                                                                     \
		0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49, 0x81, 0x8b, 0x38, 0xd9, 0x0c, \
			0xed, 0x39, 0xdb                                                      \
	}

/*
 * The fabric's own test devices (not Hyper-V's): echo returns each in-band
 * packet as a completion with the same payload; ping answers every doorbell
 * with an event. {f4b1c0de-0001-4000-8000-0000ec400001} / ...-0002.
 */
#define FAB_ECHO_GUID_BYTES                                                                        \
	{ 0xde, 0xc0, 0xb1, 0xf4, 0x01, 0x00, 0x00, 0x40,                                          \
	  0x80, 0x00, 0x00, 0x00, 0xec, 0x40, 0x00, 0x01 }
#define FAB_PING_GUID_BYTES                                                                        \
	{ 0xde, 0xc0, 0xb1, 0xf4, 0x02, 0x00, 0x00, 0x40,                                          \
	  0x80, 0x00, 0x00, 0x00, 0xec, 0x40, 0x00, 0x02 }

#endif
