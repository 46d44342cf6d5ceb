// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fab/frame.h"

#define MAGIC0 'F'
#define MAGIC1 'B'

void fab_frame_hdr_encode(uint8_t hdr[FAB_FRAME_HDR_LEN], uint32_t len)
{
	hdr[0] = MAGIC0;
	hdr[1] = MAGIC1;
	hdr[2] = FAB_FRAME_VERSION;
	hdr[3] = 0;
	hdr[4] = (uint8_t)(len >> 24);
	hdr[5] = (uint8_t)(len >> 16);
	hdr[6] = (uint8_t)(len >> 8);
	hdr[7] = (uint8_t)len;
}

void fab_frame_dec_init(struct fab_frame_dec *d, uint32_t max_payload)
{
	memset(d, 0, sizeof(*d));
	d->max = max_payload ? max_payload : FAB_FRAME_DEFAULT_MAX;
}

void fab_frame_dec_free(struct fab_frame_dec *d)
{
	free(d->buf);
	d->buf = NULL;
}

/* Validates a complete header; on success sets d->len. */
static int frame_hdr_check(struct fab_frame_dec *d)
{
	const uint8_t *h = d->hdr;
	uint32_t len;

	if (h[0] != MAGIC0 || h[1] != MAGIC1 || h[2] != FAB_FRAME_VERSION || h[3] != 0)
		return -EPROTO;
	len = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
	if (len == 0)
		return -EBADMSG;
	if (len > d->max)
		return -EMSGSIZE;
	d->len = len;
	return 0;
}

int fab_frame_dec_feed(struct fab_frame_dec *d, const uint8_t *in, size_t n, size_t *used,
		       const uint8_t **frame, size_t *frame_len)
{
	size_t off = 0, take;
	int rc;

	*used = 0;
	if (d->error)
		return d->error;

	/* The previous call handed out a complete frame: start the next one. */
	if (d->hdr_have == FAB_FRAME_HDR_LEN && d->have == d->len) {
		d->hdr_have = 0;
		d->have = 0;
		d->len = 0;
	}

	if (d->hdr_have < FAB_FRAME_HDR_LEN) {
		take = FAB_FRAME_HDR_LEN - d->hdr_have;
		if (take > n)
			take = n;
		memcpy(d->hdr + d->hdr_have, in, take);
		d->hdr_have += take;
		off += take;
		/* Check the magic as soon as it arrives so garbage fails fast. */
		if ((d->hdr_have >= 1 && d->hdr[0] != MAGIC0) ||
		    (d->hdr_have >= 2 && d->hdr[1] != MAGIC1)) {
			d->error = -EPROTO;
			*used = off;
			return d->error;
		}
		if (d->hdr_have < FAB_FRAME_HDR_LEN) {
			*used = off;
			return 0;
		}
		rc = frame_hdr_check(d);
		if (rc) {
			d->error = rc;
			*used = off;
			return rc;
		}
		/* Grow to the size announced; max bounds it. */
		if (d->len > d->cap) {
			uint8_t *nb = realloc(d->buf, d->len);

			if (!nb) {
				d->error = -ENOMEM;
				*used = off;
				return d->error;
			}
			d->buf = nb;
			d->cap = d->len;
		}
	}

	take = d->len - d->have;
	if (take > n - off)
		take = n - off;
	memcpy(d->buf + d->have, in + off, take);
	d->have += take;
	off += take;
	*used = off;
	if (d->have < d->len)
		return 0;
	*frame = d->buf;
	*frame_len = d->len;
	return 1;
}

int fab_frame_dec_partial(const struct fab_frame_dec *d)
{
	if (d->hdr_have == 0)
		return 0;
	return !(d->hdr_have == FAB_FRAME_HDR_LEN && d->have == d->len);
}
