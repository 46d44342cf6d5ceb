// SPDX-License-Identifier: MIT
/*
 * Integration components, guest side: heartbeat and shutdown (wire format in
 * fab/vmbus_ic.h, vmbus-facts section 7).
 *
 * The host sends requests; the guest answers every one in place: the
 * request's own bytes, modified, go back as an in-band packet of the same
 * length with the same transaction id, icflags TRANSACTION | RESPONSE and
 * packet flags 0, as Linux's hv_util does.
 *
 * Runs inside vmbus_guest_poll (channel callbacks), so on vCPU 0 only.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/vmbus_guest.h"
#include "fab/vmbus_ic.h"
#include "vmbus_guest_int.h"

#define IC_RING_PAGES	 4 /* per direction, as Linux's util channels */
#define IC_BUF_BYTES	 8192
#define IC_NEGOTIATE_MAX 100  /* IC_VERSION_NEGOTIATION_MAX_VER_COUNT */
#define IC_NEG_RESP_SIZE 0x10 /* icmsgsize of a negotiate response (hv: 8 + 2 versions) */
#define IC_SEND_TIMEOUT	 VMBUS_GUEST_MS(1000)
/* shutdown_msg.flags: 0 = shut down, 1 = forced; others ask for a reboot
 * or hibernation, which a partition image cannot do. */
#define IC_SHUTDOWN_FORCE 0x1u

enum ic_kind { IC_HEARTBEAT, IC_SHUTDOWN };

struct ic_service {
	enum ic_kind kind;
	const char *name;
	struct vmbus_guid type;
	const struct ic_version *versions; /* message versions, newest first */
	size_t nversions;
	struct vmbus_guest_chan *ch;
};

/* Newest first: the first of ours the host also lists wins. */
static const struct ic_version fw_versions[] = { { 3, 0 }, { 1, 0 } };
static const struct ic_version hb_versions[] = { { 3, 0 }, { 1, 0 } };
static const struct ic_version sd_versions[] = { { 3, 2 }, { 3, 1 }, { 3, 0 }, { 1, 0 } };

static struct {
	struct ic_service svc[2];
	bool shutdown;
	struct vmbus_guest_ic_stats stats;
	_Alignas(8) uint8_t buf[IC_BUF_BYTES];
} ic = {
	.svc = {
		{ IC_HEARTBEAT, "heartbeat", { IC_HEARTBEAT_GUID_BYTES }, hb_versions,
		  sizeof(hb_versions) / sizeof(hb_versions[0]), NULL },
		{ IC_SHUTDOWN, "shutdown", { IC_SHUTDOWN_GUID_BYTES }, sd_versions,
		  sizeof(sd_versions) / sizeof(sd_versions[0]), NULL },
	},
};

static bool ic_version_eq(struct ic_version a, struct ic_version b)
{
	return a.major == b.major && a.minor == b.minor;
}

/* The first of ours (newest first) that the host's list holds. */
static bool ic_pick(const struct ic_version *ours, size_t nours, const uint8_t *theirs,
		    uint32_t ntheirs, struct ic_version *out)
{
	for (size_t i = 0; i < nours; i++) {
		for (uint32_t j = 0; j < ntheirs; j++) {
			struct ic_version v;

			memcpy(&v, theirs + (size_t)j * sizeof(v), sizeof(v));
			if (ic_version_eq(v, ours[i])) {
				*out = v;
				return true;
			}
		}
	}
	return false;
}

/*
 * NEGOTIATE: the host lists icframe_vercnt framework versions, then
 * icmsg_vercnt message versions. The answer names one of each (counts 1),
 * or none (counts 0, HV_E_FAIL) when there is no common version.
 */
static uint32_t ic_negotiate(const struct ic_service *s, struct icmsg_hdr *hdr, uint8_t *body,
			     uint32_t body_len)
{
	struct icmsg_negotiate neg;
	struct ic_version fw, msg;
	uint32_t nfw, nmsg;
	bool ok;

	if (body_len < sizeof(neg))
		return IC_HV_E_FAIL;
	memcpy(&neg, body, sizeof(neg));
	nfw = neg.icframe_vercnt;
	nmsg = neg.icmsg_vercnt;
	if (nfw > IC_NEGOTIATE_MAX || nmsg > IC_NEGOTIATE_MAX ||
	    sizeof(neg) + (nfw + nmsg) * sizeof(struct ic_version) > body_len ||
	    sizeof(neg) + 2 * sizeof(struct ic_version) > body_len)
		return IC_HV_E_FAIL;
	ok = ic_pick(fw_versions, sizeof(fw_versions) / sizeof(fw_versions[0]), body + sizeof(neg),
		     nfw, &fw) &&
	     ic_pick(s->versions, s->nversions, body + sizeof(neg) + nfw * sizeof(fw), nmsg, &msg);
	neg.icframe_vercnt = ok ? 1 : 0;
	neg.icmsg_vercnt = ok ? 1 : 0;
	memcpy(body, &neg, sizeof(neg));
	if (ok) {
		memcpy(body + sizeof(neg), &fw, sizeof(fw));
		memcpy(body + sizeof(neg) + sizeof(fw), &msg, sizeof(msg));
	}
	hdr->icmsgsize = IC_NEG_RESP_SIZE;
	ic.stats.negotiations++;
	return ok ? IC_HV_S_OK : IC_HV_E_FAIL;
}

static uint32_t ic_heartbeat(uint8_t *body, uint32_t body_len)
{
	uint64_t seq;

	if (body_len < sizeof(seq))
		return IC_HV_E_FAIL;
	memcpy(&seq, body, sizeof(seq));
	seq++;
	memcpy(body, &seq, sizeof(seq));
	ic.stats.heartbeats++;
	return IC_HV_S_OK;
}

static uint32_t ic_shutdown(const uint8_t *body, uint32_t body_len)
{
	uint32_t reason, flags;

	/* reason_code @0, timeout_seconds @4, flags @8 */
	if (body_len < 12)
		return IC_HV_E_FAIL;
	memcpy(&reason, body, sizeof(reason));
	memcpy(&flags, body + 8, sizeof(flags));
	ic.stats.shutdowns++;
	ic.stats.shutdown_flags = flags;
	ic.stats.shutdown_reason = reason;
	if (flags & ~IC_SHUTDOWN_FORCE)
		return IC_HV_E_FAIL; /* reboot / hibernate: not possible here */
	ic.shutdown = true;
	return IC_HV_S_OK;
}

/* Answers one request; pkt is the private copy vmbus_guest_recv made. */
static void ic_request(struct ic_service *s, struct vmbus_guest_chan *ch, uint8_t *pkt, size_t len)
{
	struct vmbus_pkt_view v;
	struct icmsg_hdr hdr;
	uint8_t *payload, *body;
	uint32_t body_len, status;
	int rc;

	if (vmbus_pkt_parse(pkt, len, &v) || v.type != VM_PKT_DATA_INBAND ||
	    v.payload_len < IC_HDR_LEN) {
		ic.stats.bad_packets++;
		return;
	}
	payload = pkt + (v.payload - pkt);
	body = payload + IC_HDR_LEN;
	body_len = v.payload_len - IC_HDR_LEN;
	memcpy(&hdr, payload + sizeof(struct ic_pipe_hdr), sizeof(hdr));

	switch (hdr.icmsgtype) {
	case ICMSGTYPE_NEGOTIATE:
		status = ic_negotiate(s, &hdr, body, body_len);
		break;
	case ICMSGTYPE_HEARTBEAT:
		status = s->kind == IC_HEARTBEAT ? ic_heartbeat(body, body_len) : IC_HV_E_FAIL;
		break;
	case ICMSGTYPE_SHUTDOWN:
		status = s->kind == IC_SHUTDOWN ? ic_shutdown(body, body_len) : IC_HV_E_FAIL;
		break;
	default:
		status = IC_HV_E_FAIL;
		break;
	}
	hdr.status = status;
	hdr.icflags = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE;
	memcpy(payload + sizeof(struct ic_pipe_hdr), &hdr, sizeof(hdr));
	rc = vmbus_guest_send_inband(ch, v.trans_id, 0, payload, v.payload_len, IC_SEND_TIMEOUT);
	if (rc)
		printf("vmbus: %s: cannot answer request type %u: %d\n", s->name, hdr.icmsgtype,
		       rc);
	else if (hdr.icmsgtype == ICMSGTYPE_SHUTDOWN && status == IC_HV_S_OK)
		/* Let the host see the answer before the image exits. */
		vmbus_guest_chan_drain(ch, IC_SEND_TIMEOUT);
}

static void ic_chan_cb(struct vmbus_guest_chan *ch, void *ctx)
{
	struct ic_service *s = ctx;
	size_t len;
	int rc;

	for (;;) {
		rc = vmbus_guest_recv(ch, ic.buf, sizeof(ic.buf), &len);
		if (rc == -EMSGSIZE) {
			/* Larger than any IC message: take it out of the ring
			 * so that it does not block the channel, and drop it. */
			uint8_t *big = malloc(len);

			if (!big) {
				printf("vmbus: %s: %zu-byte packet stuck\n", s->name, len);
				return;
			}
			rc = vmbus_guest_recv(ch, big, len, &len);
			free(big);
			ic.stats.bad_packets++;
			if (rc)
				return;
			continue;
		}
		if (rc == -EPROTO)
			printf("vmbus: %s: ring corrupt, channel failed\n", s->name);
		if (rc)
			return;
		ic_request(s, ch, ic.buf, len);
	}
}

int vmbus_guest_ic_open(uint64_t timeout)
{
	struct vmbus_guest_chan_cfg cfg = {
		.send_pages = IC_RING_PAGES,
		.recv_pages = IC_RING_PAGES,
		.timeout = timeout,
	};
	int opened = 0, first_err = 0;

	for (size_t i = 0; i < sizeof(ic.svc) / sizeof(ic.svc[0]); i++) {
		struct ic_service *s = &ic.svc[i];
		const struct vmbus_client_chan *offer;
		int rc;

		if (s->ch) {
			opened++;
			continue;
		}
		if (vmbus_guest_find_offer(&s->type, 0, &offer))
			continue;
		rc = vmbus_guest_chan_open(offer->relid, &cfg, &s->ch);
		if (rc) {
			printf("vmbus: %s: open of relid %u failed: %d\n", s->name, offer->relid,
			       rc);
			s->ch = NULL;
			if (!first_err)
				first_err = rc;
			continue;
		}
		vmbus_guest_chan_set_cb(s->ch, ic_chan_cb, s);
		opened++;
	}
	if (first_err)
		return first_err;
	return opened ? opened : -ENOENT;
}

bool vmbus_shutdown_requested(void)
{
	return ic.shutdown;
}

void vmbus_guest_ic_get_stats(struct vmbus_guest_ic_stats *out)
{
	*out = ic.stats;
}

void vmbus_guest__ic_forget(void)
{
	for (size_t i = 0; i < sizeof(ic.svc) / sizeof(ic.svc[0]); i++)
		ic.svc[i].ch = NULL;
}
