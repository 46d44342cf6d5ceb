// SPDX-License-Identifier: MIT
/*
 * The storage VSP on a VMBus channel: the storvsp engine (VSTOR + SCSI on
 * a raw image) fed with the channel's packets. In-band packets carry the
 * VSTOR handshake; EXECUTE_SRB with data arrives GPA-direct, whose single
 * range is the guest buffer the engine copies to or from, page by page,
 * each page checked against guest RAM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fab/vstor.h"
#include "storage.h"
#include "storvsp.h"
#include "vsp.h"

#define MAX_PFNS ((STORVSP_MAX_TRANSFER_MAX >> 12) + 1)

struct storage_dev {
	struct storvsp *engine;
	uint64_t pfns[MAX_PFNS]; /* the current request's range, aligned */
};

static int st_complete(void *ctx, uint64_t trans_id, const void *pkt, uint32_t len)
{
	return nhv_chan_send_completion(ctx, trans_id, pkt, len);
}

static int st_to_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t off, const void *src,
		       size_t len)
{
	return nhv_chan_copy_to_guest(ctx, sgl->byte_offset, sgl->byte_count, sgl->pfns, off, src,
				      len);
}

static int st_from_guest(void *ctx, const struct storvsp_sgl *sgl, uint64_t off, void *dst,
			 size_t len)
{
	return nhv_chan_copy_from_guest(ctx, sgl->byte_offset, sgl->byte_count, sgl->pfns, off, dst,
					len);
}

static const struct storvsp_dev_ops engine_ops = {
	.complete = st_complete,
	.copy_to_guest = st_to_guest,
	.copy_from_guest = st_from_guest,
};

static void st_packet(struct nhv_chan *ch, const struct vmbus_pkt_view *pkt)
{
	struct storage_dev *d = nhv_chan_dev(ch);
	struct vmbus_gpa_range_view rv;
	struct storvsp_sgl sgl;
	int rc;

	switch (pkt->type) {
	case VM_PKT_DATA_INBAND:
		rc = storvsp_handle(d->engine, pkt->payload, pkt->payload_len, pkt->trans_id, NULL,
				    ch);
		break;
	case VM_PKT_DATA_USING_GPA_DIRECT:
		/* storvsc sends one range per request (a multi-page buffer). */
		if (pkt->range_count != 1 || vmbus_pkt_range(pkt, 0, &rv) ||
		    rv.pfn_count > MAX_PFNS) {
			nhv_chan_fail(ch, "GPA-direct request with %u ranges", pkt->range_count);
			return;
		}
		for (uint32_t i = 0; i < rv.pfn_count; i++)
			d->pfns[i] = vmbus_gpa_range_pfn(&rv, i);
		sgl.byte_offset = rv.byte_offset;
		sgl.byte_count = rv.byte_count;
		sgl.npfns = rv.pfn_count;
		sgl.pfns = d->pfns;
		rc = storvsp_handle(d->engine, pkt->payload, pkt->payload_len, pkt->trans_id, &sgl,
				    ch);
		break;
	default:
		nhv_chan_fail(ch, "unexpected packet type %u", pkt->type);
		return;
	}
	/* Bad requests were answered with an error completion by the engine;
	 * only a completion that could not be sent breaks the channel. */
	if (rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -EPROTO)
		nhv_chan_fail(ch, "cannot complete requests (%s)", strerror(-rc));
}

static void st_close(struct nhv_chan *ch)
{
	struct storage_dev *d = nhv_chan_dev(ch);

	/* The next open starts with BEGIN_INITIALIZATION again. */
	storvsp_reset(d->engine);
}

static void st_free(void *dev)
{
	struct storage_dev *d = dev;

	storvsp_destroy(d->engine);
	free(d);
}

static int st_save(struct nhv_chan *ch, uint8_t *buf, size_t cap, size_t *len)
{
	struct storage_dev *d = nhv_chan_dev(ch);

	return storvsp_save_state(d->engine, buf, cap, len);
}

static int st_restore(struct nhv_chan *ch, const uint8_t *buf, size_t len)
{
	struct storage_dev *d = nhv_chan_dev(ch);

	return storvsp_restore_state(d->engine, buf, len);
}

/* Every request completes inside st_packet: no idle op needed. */
const struct nhv_vsp_ops nhv_storage_ops = {
	.name = "storage",
	.type_guid = VSTOR_SCSI_GUID_BYTES,
	.packet = st_packet,
	.close = st_close,
	.free = st_free,
	.save = st_save,
	.restore = st_restore,
};

int nhv_storage_new(const char *path, bool read_only, struct storage_dev **out)
{
	struct storvsp_cfg cfg = { .path = path, .read_only = read_only, .ops = &engine_ops };
	struct storage_dev *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	rc = storvsp_create(&cfg, &d->engine);
	if (rc) {
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

int nhv_storage_attach(struct nhv_partition *p, const char *path, bool read_only,
		       struct storage_dev **out)
{
	struct storage_dev *d;
	struct nhv_chan *ch;
	int rc;

	rc = nhv_storage_new(path, read_only, &d);
	if (rc)
		return rc;
	rc = nhv_vsp_attach(p, &nhv_storage_ops, d, &ch);
	if (rc) {
		st_free(d);
		return rc;
	}
	if (out)
		*out = d;
	return 0;
}

void nhv_storage_stats(struct storage_dev *d, struct storvsp_stats *out)
{
	storvsp_get_stats(d->engine, out);
}
