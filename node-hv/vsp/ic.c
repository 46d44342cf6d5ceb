// SPDX-License-Identifier: MIT
/*
 * Integration components, host side: heartbeat (is the guest alive?) and
 * shutdown (ask the guest to stop). Both follow the IC framework: on open
 * the host offers its framework and message versions (ICMSGTYPE_NEGOTIATE),
 * the guest answers with its choice, then requests flow host -> guest and
 * the guest answers each with icflags TRANSACTION | RESPONSE.
 *
 * State is touched by the channel worker (packets, ticks) and by control
 * threads (status, shutdown requests): ic->lock guards it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fab/log.h"
#include "fab/util.h"
#include "fab/vmbus_ic.h"
#include "ic.h"
#include "vsp.h"

enum ic_kind { IC_HEARTBEAT, IC_SHUTDOWN };

struct ic_dev {
	enum ic_kind kind;
	pthread_mutex_t lock;
	struct nhv_chan *ch; /* while open */
	bool negotiated;
	struct ic_version fw, msg; /* negotiated */
	uint8_t txn;
	uint64_t trans_id;
	/* heartbeat */
	uint64_t seq;	      /* last sequence number sent */
	uint64_t beats;	      /* answers received */
	int64_t last_beat_ms; /* monotonic ms of the last answer */
	/* shutdown */
	bool shutdown_sent, shutdown_acked;
	uint32_t shutdown_status;
};

/* Versions the host offers, newest first (vmbus-facts 7.2). */
static const struct ic_version fw_versions[] = { { 3, 0 }, { 1, 0 } };
static const struct ic_version hb_versions[] = { { 3, 0 }, { 1, 0 } };
static const struct ic_version sd_versions[] = { { 3, 2 }, { 3, 1 }, { 3, 0 }, { 1, 0 } };

/* Sends one IC request: header + body. ic->lock held. */
static int ic_send(struct ic_dev *ic, uint16_t type, const void *body, uint16_t body_len)
{
	uint8_t buf[IC_HDR_LEN + 64 + sizeof(struct ic_shutdown_msg)];
	struct ic_pipe_hdr pipe = { 0 };
	struct icmsg_hdr hdr = { 0 };

	if (!ic->ch || IC_HDR_LEN + body_len > sizeof(buf))
		return -ENOTCONN;
	pipe.msgsize = (uint32_t)(sizeof(hdr) + body_len);
	hdr.icverframe = ic->negotiated ? ic->fw : fw_versions[0];
	hdr.icvermsg = ic->negotiated ? ic->msg : (struct ic_version){ 1, 0 };
	hdr.icmsgtype = type;
	hdr.icmsgsize = body_len;
	hdr.ictransaction_id = ++ic->txn;
	hdr.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_REQUEST;
	memcpy(buf, &pipe, sizeof(pipe));
	memcpy(buf + sizeof(pipe), &hdr, sizeof(hdr));
	memcpy(buf + IC_HDR_LEN, body, body_len);
	return nhv_chan_send_inband(ic->ch, ++ic->trans_id, 0, buf, IC_HDR_LEN + body_len);
}

static int ic_send_negotiate(struct ic_dev *ic)
{
	const struct ic_version *mv = ic->kind == IC_HEARTBEAT ? hb_versions : sd_versions;
	size_t nmv = ic->kind == IC_HEARTBEAT ? FAB_ARRAY_SIZE(hb_versions)
					      : FAB_ARRAY_SIZE(sd_versions);
	uint8_t body[sizeof(struct icmsg_negotiate) + 8 * sizeof(struct ic_version)];
	struct icmsg_negotiate neg = { 0 };
	size_t off = sizeof(neg);

	neg.icframe_vercnt = FAB_ARRAY_SIZE(fw_versions);
	neg.icmsg_vercnt = (uint16_t)nmv;
	memcpy(body, &neg, sizeof(neg));
	memcpy(body + off, fw_versions, sizeof(fw_versions));
	off += sizeof(fw_versions);
	memcpy(body + off, mv, nmv * sizeof(*mv));
	off += nmv * sizeof(*mv);
	return ic_send(ic, ICMSGTYPE_NEGOTIATE, body, (uint16_t)off);
}

static bool version_in(struct ic_version v, const struct ic_version *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].major == v.major && list[i].minor == v.minor)
			return true;
	return false;
}

static int ic_open(struct nhv_chan *ch)
{
	struct ic_dev *ic = nhv_chan_dev(ch);
	int rc;

	pthread_mutex_lock(&ic->lock);
	ic->ch = ch;
	ic->negotiated = false;
	ic->shutdown_sent = ic->shutdown_acked = false;
	rc = ic_send_negotiate(ic);
	pthread_mutex_unlock(&ic->lock);
	return rc;
}

/* One validating parse of a guest IC response. */
static int ic_parse(const struct vmbus_pkt_view *pkt, struct icmsg_hdr *hdr, const uint8_t **body,
		    uint32_t *body_len)
{
	if (pkt->type != VM_PKT_DATA_INBAND || pkt->payload_len < IC_HDR_LEN)
		return -EINVAL;
	memcpy(hdr, pkt->payload + sizeof(struct ic_pipe_hdr), sizeof(*hdr));
	if (!(hdr->icflags & ICMSGHDRFLAG_RESPONSE))
		return -EINVAL;
	if (hdr->icmsgsize > pkt->payload_len - IC_HDR_LEN)
		return -EINVAL;
	*body = pkt->payload + IC_HDR_LEN;
	*body_len = hdr->icmsgsize;
	return 0;
}

static void ic_packet(struct nhv_chan *ch, const struct vmbus_pkt_view *pkt)
{
	struct ic_dev *ic = nhv_chan_dev(ch);
	struct icmsg_hdr hdr;
	const uint8_t *body;
	uint32_t len;

	if (ic_parse(pkt, &hdr, &body, &len)) {
		nhv_chan_fail(ch, "malformed IC message");
		return;
	}
	pthread_mutex_lock(&ic->lock);
	switch (hdr.icmsgtype) {
	case ICMSGTYPE_NEGOTIATE: {
		struct icmsg_negotiate neg;
		struct ic_version v[2];

		if (len < sizeof(neg) + sizeof(v)) {
			pthread_mutex_unlock(&ic->lock);
			nhv_chan_fail(ch, "short IC negotiate response");
			return;
		}
		memcpy(&neg, body, sizeof(neg));
		memcpy(v, body + sizeof(neg), sizeof(v));
		if (neg.icframe_vercnt != 1 || neg.icmsg_vercnt != 1 ||
		    !version_in(v[0], fw_versions, FAB_ARRAY_SIZE(fw_versions)) ||
		    !version_in(v[1], ic->kind == IC_HEARTBEAT ? hb_versions : sd_versions,
				ic->kind == IC_HEARTBEAT ? FAB_ARRAY_SIZE(hb_versions)
							 : FAB_ARRAY_SIZE(sd_versions))) {
			pthread_mutex_unlock(&ic->lock);
			nhv_chan_fail(ch, "IC version negotiation failed");
			return;
		}
		ic->fw = v[0];
		ic->msg = v[1];
		ic->negotiated = true;
		break;
	}
	case ICMSGTYPE_HEARTBEAT: {
		struct ic_heartbeat_msg hb;

		if (len < sizeof(hb.seq_num))
			break;
		memcpy(&hb.seq_num, body, sizeof(hb.seq_num));
		/* The guest answers seq + 1 (hv_util.c). */
		if (hb.seq_num == ic->seq + 1) {
			ic->beats++;
			ic->last_beat_ms = fab_mono_ms();
		}
		break;
	}
	case ICMSGTYPE_SHUTDOWN:
		ic->shutdown_acked = true;
		ic->shutdown_status = hdr.status;
		break;
	default:
		break; /* an answer to nothing we asked: ignored */
	}
	pthread_mutex_unlock(&ic->lock);
}

static void ic_tick(struct nhv_chan *ch)
{
	struct ic_dev *ic = nhv_chan_dev(ch);
	struct ic_heartbeat_msg hb = { 0 };

	pthread_mutex_lock(&ic->lock);
	if (ic->kind == IC_HEARTBEAT && ic->negotiated) {
		hb.seq_num = ++ic->seq;
		ic_send(ic, ICMSGTYPE_HEARTBEAT, &hb, sizeof(hb));
	}
	pthread_mutex_unlock(&ic->lock);
}

static void ic_close(struct nhv_chan *ch)
{
	struct ic_dev *ic = nhv_chan_dev(ch);

	pthread_mutex_lock(&ic->lock);
	ic->ch = NULL;
	ic->negotiated = false;
	pthread_mutex_unlock(&ic->lock);
}

static void ic_free(void *dev)
{
	struct ic_dev *ic = dev;

	pthread_mutex_destroy(&ic->lock);
	free(ic);
}

/* Saved IC state: the negotiation and the counters the guest's answers
 * are matched against (a heartbeat in flight is answered with seq + 1). */
struct ic_saved {
	uint32_t magic, kind, negotiated;
	struct ic_version fw, msg;
	uint32_t txn;
	uint64_t trans_id, seq, beats;
	uint32_t shutdown_sent, shutdown_acked, shutdown_status, pad;
};

#define IC_STATE_MAGIC 0x53544349u /* "ICTS" */

static int ic_save(struct nhv_chan *ch, uint8_t *buf, size_t cap, size_t *len)
{
	struct ic_dev *ic = nhv_chan_dev(ch);
	struct ic_saved sv;

	if (cap < sizeof(sv))
		return -ENOSPC;
	memset(&sv, 0, sizeof(sv));
	pthread_mutex_lock(&ic->lock);
	sv.magic = IC_STATE_MAGIC;
	sv.kind = ic->kind;
	sv.negotiated = ic->negotiated;
	sv.fw = ic->fw;
	sv.msg = ic->msg;
	sv.txn = ic->txn;
	sv.trans_id = ic->trans_id;
	sv.seq = ic->seq;
	sv.beats = ic->beats;
	sv.shutdown_sent = ic->shutdown_sent;
	sv.shutdown_acked = ic->shutdown_acked;
	sv.shutdown_status = ic->shutdown_status;
	pthread_mutex_unlock(&ic->lock);
	memcpy(buf, &sv, sizeof(sv));
	*len = sizeof(sv);
	return 0;
}

static int ic_restore(struct nhv_chan *ch, const uint8_t *buf, size_t len)
{
	struct ic_dev *ic = nhv_chan_dev(ch);
	const struct ic_version *mv = ic->kind == IC_HEARTBEAT ? hb_versions : sd_versions;
	size_t nmv = ic->kind == IC_HEARTBEAT ? FAB_ARRAY_SIZE(hb_versions)
					      : FAB_ARRAY_SIZE(sd_versions);
	struct ic_saved sv;

	if (len != sizeof(sv))
		return -EBADMSG;
	memcpy(&sv, buf, sizeof(sv));
	if (sv.magic != IC_STATE_MAGIC || sv.kind != ic->kind || sv.negotiated > 1 ||
	    sv.txn > UINT8_MAX || sv.shutdown_sent > 1 || sv.shutdown_acked > 1 ||
	    (sv.negotiated && (!version_in(sv.fw, fw_versions, FAB_ARRAY_SIZE(fw_versions)) ||
			       !version_in(sv.msg, mv, nmv))))
		return -EBADMSG;
	pthread_mutex_lock(&ic->lock);
	ic->ch = ch;
	ic->negotiated = sv.negotiated;
	ic->fw = sv.fw;
	ic->msg = sv.msg;
	ic->txn = (uint8_t)sv.txn;
	ic->trans_id = sv.trans_id;
	ic->seq = sv.seq;
	ic->beats = sv.beats;
	ic->last_beat_ms = fab_mono_ms();
	ic->shutdown_sent = sv.shutdown_sent;
	ic->shutdown_acked = sv.shutdown_acked;
	ic->shutdown_status = sv.shutdown_status;
	pthread_mutex_unlock(&ic->lock);
	return 0;
}

static const struct nhv_vsp_ops heartbeat_ops = {
	.name = "heartbeat",
	.type_guid = IC_HEARTBEAT_GUID_BYTES,
	.tick_ms = 1000,
	.open = ic_open,
	.packet = ic_packet,
	.tick = ic_tick,
	.close = ic_close,
	.free = ic_free,
	.save = ic_save,
	.restore = ic_restore,
};

static const struct nhv_vsp_ops shutdown_ops = {
	.name = "shutdown",
	.type_guid = IC_SHUTDOWN_GUID_BYTES,
	.open = ic_open,
	.packet = ic_packet,
	.close = ic_close,
	.free = ic_free,
	.save = ic_save,
	.restore = ic_restore,
};

static struct ic_dev *ic_new(enum ic_kind kind)
{
	struct ic_dev *ic = calloc(1, sizeof(*ic));

	if (ic) {
		ic->kind = kind;
		pthread_mutex_init(&ic->lock, NULL);
	}
	return ic;
}

int nhv_ic_attach(struct nhv_partition *p, struct ic_dev **hb, struct ic_dev **sd)
{
	struct nhv_chan *ch;
	int rc;

	*hb = ic_new(IC_HEARTBEAT);
	*sd = ic_new(IC_SHUTDOWN);
	if (!*hb || !*sd) {
		free(*hb);
		free(*sd);
		*hb = *sd = NULL;
		return -ENOMEM;
	}
	rc = nhv_vsp_attach(p, &heartbeat_ops, *hb, &ch);
	if (rc) {
		ic_free(*hb);
		ic_free(*sd);
		*hb = *sd = NULL;
		return rc;
	}
	rc = nhv_vsp_attach(p, &shutdown_ops, *sd, &ch);
	if (rc) {
		ic_free(*sd); /* the heartbeat device now belongs to the partition */
		*sd = NULL;
	}
	return rc;
}

void nhv_ic_heartbeat_status(struct ic_dev *hb, uint64_t *beats, int64_t *age_ms)
{
	pthread_mutex_lock(&hb->lock);
	*beats = hb->beats;
	*age_ms = hb->beats ? fab_mono_ms() - hb->last_beat_ms : -1;
	pthread_mutex_unlock(&hb->lock);
}

int nhv_ic_request_shutdown(struct ic_dev *sd, bool force)
{
	struct ic_shutdown_msg msg;
	int rc;

	memset(&msg, 0, sizeof(msg));
	msg.flags = force ? 1 : 0;
	pthread_mutex_lock(&sd->lock);
	if (!sd->ch || !sd->negotiated) {
		pthread_mutex_unlock(&sd->lock);
		return -ENOTCONN;
	}
	rc = ic_send(sd, ICMSGTYPE_SHUTDOWN, &msg, sizeof(msg));
	if (!rc)
		sd->shutdown_sent = true;
	pthread_mutex_unlock(&sd->lock);
	return rc;
}
