/* SPDX-License-Identifier: MIT */
/*
 * Control-plane framing. A frame is an 8-byte header followed by the payload
 * (one protobuf-encoded fab.Envelope):
 *
 *   off 0  u8   magic 'F'
 *   off 1  u8   magic 'B'
 *   off 2  u8   version (1)
 *   off 3  u8   flags (0; non-zero is a protocol error in version 1)
 *   off 4  u32  payload length, big endian, 1..max
 *
 * The decoder is a pure state machine (no I/O) fed with whatever a read
 * returned, so split reads and several frames per read are both normal.
 */
#ifndef FAB_FRAME_H
#define FAB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FAB_FRAME_HDR_LEN     8
#define FAB_FRAME_VERSION     1
#define FAB_FRAME_DEFAULT_MAX (1u << 20) /* 1 MiB */

/* Writes the header of a frame with payload_len bytes into hdr. */
void fab_frame_hdr_encode(uint8_t hdr[FAB_FRAME_HDR_LEN], uint32_t payload_len);

struct fab_frame_dec {
	uint8_t hdr[FAB_FRAME_HDR_LEN];
	size_t hdr_have;
	uint8_t *buf; /* payload being assembled, owned */
	uint32_t cap; /* allocated size of buf */
	uint32_t len; /* payload length from the header */
	size_t have;  /* payload bytes received */
	uint32_t max; /* largest payload accepted */
	int error;    /* sticky: once a stream is bad it stays bad */
};

/* max_payload: largest payload accepted (0 means FAB_FRAME_DEFAULT_MAX). */
void fab_frame_dec_init(struct fab_frame_dec *d, uint32_t max_payload);
void fab_frame_dec_free(struct fab_frame_dec *d);

/*
 * Feeds up to n bytes. Sets *used to the bytes consumed. Returns:
 *   1   a frame is complete: *frame and *frame_len give its payload, valid
 *       until the next call; call again with the rest of the input;
 *   0   all input consumed, frame incomplete;
 *   -EPROTO   bad magic, version or flags (garbage);
 *   -EMSGSIZE the header announces a payload above max;
 *   -EBADMSG  zero-length payload (every frame carries a message);
 *   -ENOMEM.
 * After an error every later call returns the same error.
 */
int fab_frame_dec_feed(struct fab_frame_dec *d, const uint8_t *in, size_t n, size_t *used,
		       const uint8_t **frame, size_t *frame_len);

/* True when a frame has begun but is not complete (a close now truncates it). */
int fab_frame_dec_partial(const struct fab_frame_dec *d);

#endif
