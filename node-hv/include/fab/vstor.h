/* SPDX-License-Identifier: MIT */
/*
 * VSTOR: the synthetic SCSI protocol spoken over a VMBus storage channel,
 * shared by the host VSP (node-hv/vsp/storvsp.c) and the guest VSC. Wire
 * layouts from Linux drivers/scsi/storvsc_drv.c (shared/vmbus-facts.md
 * section 6); SCSI values from SPC-4 / SBC-3. Freestanding: only <stdint.h>,
 * <stddef.h> and <stdbool.h>, no host types. All fields little-endian, all
 * structs packed.
 *
 * Every message is one vstor_packet: a 12-byte header and a 52-byte union.
 * Its length on the wire depends on the storage protocol version:
 *   WIN6 (2.0), WIN7 (4.2):             48 bytes (vm_srb without the Win8
 *                                        extension, sense buffer 0x12)
 *   WIN8 (5.1), WIN8_1 (6.0), WIN10 (6.2): 64 bytes (sense buffer 0x14)
 * The difference, VMSCSI_SIZE_DELTA = 16, is the Win8 extension at the end
 * of vmscsi_request. Until a version is agreed a guest may use either form:
 * Linux 4.x-5.x start in the short one and switch after
 * QUERY_PROTOCOL_VERSION succeeds; newer Linux sends 64 bytes from the
 * start. A host answers each packet in the length the guest sent it.
 */
#ifndef FAB_VSTOR_H
#define FAB_VSTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- protocol versions (vmstorage_protocol_version.major_minor) ---------- */

#define VMSTOR_PROTO_VERSION(major, minor) ((uint16_t)(((major) << 8) | (minor)))
#define VMSTOR_PROTO_VERSION_WIN6	   VMSTOR_PROTO_VERSION(2, 0)
#define VMSTOR_PROTO_VERSION_WIN7	   VMSTOR_PROTO_VERSION(4, 2)
#define VMSTOR_PROTO_VERSION_WIN8	   VMSTOR_PROTO_VERSION(5, 1)
#define VMSTOR_PROTO_VERSION_WIN8_1	   VMSTOR_PROTO_VERSION(6, 0)
#define VMSTOR_PROTO_VERSION_WIN10	   VMSTOR_PROTO_VERSION(6, 2)

/* ---- operations (vstor_packet.operation) --------------------------------- */

#define VSTOR_OPERATION_COMPLETE_IO	       1
#define VSTOR_OPERATION_REMOVE_DEVICE	       2
#define VSTOR_OPERATION_EXECUTE_SRB	       3
#define VSTOR_OPERATION_RESET_LUN	       4
#define VSTOR_OPERATION_RESET_ADAPTER	       5
#define VSTOR_OPERATION_RESET_BUS	       6
#define VSTOR_OPERATION_BEGIN_INITIALIZATION   7
#define VSTOR_OPERATION_END_INITIALIZATION     8
#define VSTOR_OPERATION_QUERY_PROTOCOL_VERSION 9
#define VSTOR_OPERATION_QUERY_PROPERTIES       10
#define VSTOR_OPERATION_ENUMERATE_BUS	       11
#define VSTOR_OPERATION_FCHBA_DATA	       12
#define VSTOR_OPERATION_CREATE_SUB_CHANNELS    13

/* vstor_packet.flags */
#define VSTOR_FLAG_REQUEST_COMPLETION 0x1

/*
 * vstor_packet.status of host replies: an NTSTATUS. Linux only tests it for
 * zero during the handshake; Windows guests map it to an I/O status.
 */
#define VSTOR_STATUS_SUCCESS		    0x00000000u
#define VSTOR_STATUS_UNSUCCESSFUL	    0xC0000001u
#define VSTOR_STATUS_INVALID_PARAMETER	    0xC000000Du
#define VSTOR_STATUS_INVALID_DEVICE_REQUEST 0xC0000010u
#define VSTOR_STATUS_REVISION_MISMATCH	    0xC0000059u
#define VSTOR_STATUS_DEVICE_DOES_NOT_EXIST  0xC00000C0u
#define VSTOR_STATUS_INVALID_DEVICE_STATE   0xC0000184u
#define VSTOR_STATUS_IO_DEVICE_ERROR	    0xC0000185u

/* ---- sizes ---------------------------------------------------------------- */

#define VMSCSI_CDB_SIZE		      16   /* STORVSC_MAX_CMD_LEN */
#define VMSCSI_SENSE_BUFFER_SIZE      0x14 /* WIN8 and later */
#define VMSCSI_SENSE_BUFFER_SIZE_WIN7 0x12 /* WIN6, WIN7 */
#define VMSCSI_UNION_SIZE	      20
#define VMSCSI_SIZE_DELTA	      16 /* the Win8 extension */
#define VMSCSI_REQUEST_SIZE	      52
#define VMSCSI_REQUEST_SIZE_PRE_WIN8  (VMSCSI_REQUEST_SIZE - VMSCSI_SIZE_DELTA) /* 36 */
#define VSTOR_PACKET_HEADER_SIZE      12
#define VSTOR_PACKET_SIZE	      64
#define VSTOR_PACKET_SIZE_PRE_WIN8    (VSTOR_PACKET_SIZE - VMSCSI_SIZE_DELTA) /* 48 */

/* vmscsi_request.data_in */
#define VMSCSI_WRITE_TYPE   0
#define VMSCSI_READ_TYPE    1
#define VMSCSI_UNKNOWN_TYPE 2

/* ---- SRB status (vmscsi_request.srb_status) and flags -------------------- */

#define SRB_STATUS_PENDING	   0x00
#define SRB_STATUS_SUCCESS	   0x01
#define SRB_STATUS_ABORTED	   0x02
#define SRB_STATUS_ERROR	   0x04
#define SRB_STATUS_INVALID_REQUEST 0x06
#define SRB_STATUS_DATA_OVERRUN	   0x12
#define SRB_STATUS_INVALID_LUN	   0x20
#define SRB_STATUS_INTERNAL_ERROR  0x30
#define SRB_STATUS_QUEUE_FROZEN	   0x40 /* flag bit */
#define SRB_STATUS_AUTOSENSE_VALID 0x80 /* flag bit: sense_data holds sense */
#define SRB_STATUS(x)		   ((uint8_t)((x) & ~(SRB_STATUS_QUEUE_FROZEN | SRB_STATUS_AUTOSENSE_VALID)))

/* vmscsi_request.srb_flags (Win8 extension) */
#define SRB_FLAGS_NO_DATA_TRANSFER	 0x00000000u
#define SRB_FLAGS_QUEUE_ACTION_ENABLE	 0x00000002u
#define SRB_FLAGS_DISABLE_SYNCH_TRANSFER 0x00000008u
#define SRB_FLAGS_DATA_IN		 0x00000040u
#define SRB_FLAGS_DATA_OUT		 0x00000080u
#define SRB_FLAGS_NO_QUEUE_FREEZE	 0x00000100u

/* vmstorage_channel_properties.flags */
#define STORAGE_CHANNEL_SUPPORTS_MULTI_CHANNEL 0x1

/* ---- wire structs ----------------------------------------------------------- */

/*
 * One SCSI request (SRB). The guest fills the request fields and the host
 * echoes the struct in its COMPLETE_IO with srb_status, scsi_status,
 * data_transfer_length (bytes actually moved) and, when srb_status has
 * SRB_STATUS_AUTOSENSE_VALID, sense_data / sense_info_length filled in.
 * Pre-Win8 protocols send only the first 36 bytes.
 */
struct vmscsi_request {
	uint16_t length; /* sizeof this struct as the sender uses it: 52 or 36 */
	uint8_t srb_status;
	uint8_t scsi_status;
	uint8_t port_number;
	uint8_t path_id;
	uint8_t target_id;
	uint8_t lun;
	uint8_t cdb_length;
	uint8_t sense_info_length; /* request: sense buffer size; reply: bytes of sense */
	uint8_t data_in;	   /* VMSCSI_*_TYPE */
	uint8_t reserved;
	uint32_t data_transfer_length; /* request: buffer bytes; reply: bytes moved */
	union {
		uint8_t cdb[VMSCSI_CDB_SIZE];
		uint8_t sense_data[VMSCSI_SENSE_BUFFER_SIZE];
		uint8_t reserved_array[VMSCSI_UNION_SIZE];
	};
	/* Win8 extension (absent before VMSTOR_PROTO_VERSION_WIN8) */
	uint16_t reserve;
	uint8_t queue_tag;
	uint8_t queue_action;
	uint32_t srb_flags;
	uint32_t time_out_value;
	uint32_t queue_sort_key;
} __attribute__((packed));

struct vmstorage_channel_properties {
	uint32_t reserved;
	uint16_t max_channel_cnt; /* sub-channels the host can create */
	uint16_t reserved1;
	uint32_t flags; /* STORAGE_CHANNEL_* */
	uint32_t max_transfer_bytes;
	uint64_t reserved2;
} __attribute__((packed));

struct vmstorage_protocol_version {
	uint16_t major_minor; /* VMSTOR_PROTO_VERSION_* */
	uint16_t revision;    /* 0 (only Windows looks at it) */
} __attribute__((packed));

struct vstor_fc_wwn_packet {
	uint8_t primary_active;
	uint8_t reserved1[3];
	uint8_t primary_port_wwn[8];
	uint8_t primary_node_wwn[8];
	uint8_t secondary_port_wwn[8];
	uint8_t secondary_node_wwn[8];
} __attribute__((packed));

struct vstor_packet {
	uint32_t operation; /* VSTOR_OPERATION_* */
	uint32_t flags;	    /* VSTOR_FLAG_* */
	uint32_t status;    /* VSTOR_STATUS_* in host replies */
	union {
		struct vmscsi_request vm_srb;
		struct vmstorage_channel_properties storage_channel_properties;
		struct vmstorage_protocol_version version;
		struct vstor_fc_wwn_packet wwn_packet;
		uint16_t sub_channel_count;
		uint8_t buffer[VMSCSI_REQUEST_SIZE];
	};
} __attribute__((packed));

_Static_assert(sizeof(struct vmscsi_request) == VMSCSI_REQUEST_SIZE, "vmscsi_request");
_Static_assert(offsetof(struct vmscsi_request, srb_status) == 2, "srb_status");
_Static_assert(offsetof(struct vmscsi_request, lun) == 7, "lun");
_Static_assert(offsetof(struct vmscsi_request, cdb_length) == 8, "cdb_length");
_Static_assert(offsetof(struct vmscsi_request, data_in) == 10, "data_in");
_Static_assert(offsetof(struct vmscsi_request, data_transfer_length) == 12, "dtl");
_Static_assert(offsetof(struct vmscsi_request, cdb) == 16, "cdb");
_Static_assert(offsetof(struct vmscsi_request, reserve) == VMSCSI_REQUEST_SIZE_PRE_WIN8,
	       "win8 extension");
_Static_assert(offsetof(struct vmscsi_request, srb_flags) == 40, "srb_flags");
_Static_assert(offsetof(struct vmscsi_request, queue_sort_key) == 48, "queue_sort_key");
_Static_assert(sizeof(struct vmstorage_channel_properties) == 24, "channel properties");
_Static_assert(offsetof(struct vmstorage_channel_properties, max_channel_cnt) == 4, "max_chan");
_Static_assert(offsetof(struct vmstorage_channel_properties, max_transfer_bytes) == 12, "max_xfer");
_Static_assert(sizeof(struct vmstorage_protocol_version) == 4, "protocol version");
_Static_assert(sizeof(struct vstor_fc_wwn_packet) == 36, "wwn packet");
_Static_assert(sizeof(struct vstor_packet) == VSTOR_PACKET_SIZE, "vstor_packet");
_Static_assert(offsetof(struct vstor_packet, vm_srb) == VSTOR_PACKET_HEADER_SIZE, "union");
_Static_assert(VSTOR_PACKET_SIZE_PRE_WIN8 == 48, "pre-win8 packet");

/* Packet length for a negotiated version: 48 before WIN8, 64 from WIN8 on. */
static inline uint32_t vstor_packet_size(uint16_t major_minor)
{
	return major_minor >= VMSTOR_PROTO_VERSION_WIN8 ? VSTOR_PACKET_SIZE
							: VSTOR_PACKET_SIZE_PRE_WIN8;
}

/* Storage (SCSI controller) interface type {ba6163d9-04a1-4d29-b605-72e2ffb1dc7f},
 * wire byte order. */
#define VSTOR_SCSI_GUID_BYTES                                                                 \
	{                                                                                     \
		0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, \
			0xb1, 0xdc, 0x7f                                                      \
	}

/* ---- SCSI (SPC-4, SBC-3) values the VSP and VSC use ----------------------- */

#define SCSI_OP_TEST_UNIT_READY	     0x00
#define SCSI_OP_REQUEST_SENSE	     0x03
#define SCSI_OP_READ_6		     0x08
#define SCSI_OP_WRITE_6		     0x0a
#define SCSI_OP_INQUIRY		     0x12
#define SCSI_OP_MODE_SENSE_6	     0x1a
#define SCSI_OP_START_STOP_UNIT	     0x1b
#define SCSI_OP_READ_CAPACITY_10     0x25
#define SCSI_OP_READ_10		     0x28
#define SCSI_OP_WRITE_10	     0x2a
#define SCSI_OP_SYNCHRONIZE_CACHE_10 0x35
#define SCSI_OP_MODE_SENSE_10	     0x5a
#define SCSI_OP_READ_16		     0x88
#define SCSI_OP_WRITE_16	     0x8a
#define SCSI_OP_SYNCHRONIZE_CACHE_16 0x91
#define SCSI_OP_SERVICE_ACTION_IN_16 0x9e
#define SCSI_SAI_READ_CAPACITY_16    0x10 /* service action of 0x9e */
#define SCSI_OP_REPORT_LUNS	     0xa0
#define SCSI_OP_READ_12		     0xa8
#define SCSI_OP_WRITE_12	     0xaa

#define SCSI_STATUS_GOOD	    0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02

#define SCSI_SENSE_FIXED_CURRENT 0x70 /* response code, fixed format */
#define SCSI_SENSE_DESC_CURRENT	 0x72 /* response code, descriptor format */
#define SCSI_SENSE_FIXED_SIZE	 18

#define SCSI_SK_NO_SENSE	0x0
#define SCSI_SK_NOT_READY	0x2
#define SCSI_SK_MEDIUM_ERROR	0x3
#define SCSI_SK_HARDWARE_ERROR	0x4
#define SCSI_SK_ILLEGAL_REQUEST 0x5
#define SCSI_SK_UNIT_ATTENTION	0x6
#define SCSI_SK_DATA_PROTECT	0x7

/* Additional sense code and qualifier, as (asc << 8) | ascq. */
#define SCSI_ASC_NONE			   0x0000
#define SCSI_ASC_LUN_COMM_FAILURE	   0x0800 /* logical unit communication failure */
#define SCSI_ASC_WRITE_ERROR		   0x0c00
#define SCSI_ASC_UNRECOVERED_READ_ERROR	   0x1100
#define SCSI_ASC_INVALID_OPCODE		   0x2000
#define SCSI_ASC_LBA_OUT_OF_RANGE	   0x2100
#define SCSI_ASC_INVALID_FIELD_IN_CDB	   0x2400
#define SCSI_ASC_WRITE_PROTECTED	   0x2700
#define SCSI_ASC_SAVING_PARAMS_UNSUPPORTED 0x3900

/* INQUIRY vital product data pages the VSP serves */
#define SCSI_VPD_SUPPORTED_PAGES 0x00
#define SCSI_VPD_UNIT_SERIAL	 0x80
#define SCSI_VPD_DEVICE_ID	 0x83
#define SCSI_VPD_BLOCK_LIMITS	 0xb0
#define SCSI_VPD_BLOCK_DEV_CHARS 0xb1
#define SCSI_VPD_LB_PROVISIONING 0xb2

/* MODE SENSE pages */
#define SCSI_MODE_PAGE_CACHING 0x08
#define SCSI_MODE_PAGE_CONTROL 0x0a
#define SCSI_MODE_PAGE_ALL     0x3f

#endif
