// SPDX-License-Identifier: MIT
/* rvmbus session state machine: sequence numbers, acks, resend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fab/rvmbus_session.h"

struct rvs_msg {
	struct rvs_msg *next;
	uint64_t seq;
	size_t len; /* whole wire message */
	uint8_t wire[];
};

struct rvs {
	struct rvs_ops ops;
	void *ctx;
	unsigned window;
	bool up;
	uint64_t next_seq;	      /* to assign to the next rvs_send */
	uint64_t delivered;	      /* from the peer */
	uint64_t acked_sent;	      /* last ack value we transmitted */
	uint64_t peer_acked;	      /* what the peer acked of ours */
	struct rvs_msg *head, **tail; /* unacked, in seq order */
	unsigned queued;
	struct rvs_stats st;
};

int rvs_create(const struct rvs_ops *ops, void *ctx, unsigned window, struct rvs **out)
{
	struct rvs *s;

	if (!ops || !ops->xmit_cb || !ops->deliver_cb || window == 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ops = *ops;
	s->ctx = ctx;
	s->window = window;
	s->next_seq = 1;
	s->tail = &s->head;
	*out = s;
	return 0;
}

void rvs_destroy(struct rvs *s)
{
	if (!s)
		return;
	while (s->head) {
		struct rvs_msg *m = s->head;

		s->head = m->next;
		free(m);
	}
	free(s);
}

/* Stamps the current ack into a queued message and transmits it. */
static int xmit(struct rvs *s, struct rvs_msg *m)
{
	struct rvs_hdr h;

	memcpy(&h, m->wire, sizeof(h));
	h.ack = s->delivered;
	memcpy(m->wire, &h, sizeof(h));
	s->acked_sent = s->delivered;
	return s->ops.xmit_cb(s->ctx, m->wire, m->len);
}

int rvs_send(struct rvs *s, uint16_t type, const void *body, size_t len)
{
	struct rvs_hdr h = { .type = type, .len = (uint32_t)len };
	struct rvs_msg *m;

	if (type < RVS_T_USER_MIN || len > RVS_MAX_BODY || (len && !body))
		return -EINVAL;
	if (s->queued >= s->window)
		return -ENOBUFS;
	m = malloc(sizeof(*m) + sizeof(h) + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->seq = h.seq = s->next_seq++;
	m->len = sizeof(h) + len;
	memcpy(m->wire, &h, sizeof(h));
	if (len)
		memcpy(m->wire + sizeof(h), body, len);
	*s->tail = m;
	s->tail = &m->next;
	s->queued++;
	s->st.sent++;
	s->st.queued = s->queued;
	/* A transmit error leaves it queued: the next link_up resends it. */
	if (s->up && xmit(s, m))
		s->up = false;
	return 0;
}

/* Frees everything up to and including seq. */
static void release(struct rvs *s, uint64_t seq)
{
	while (s->head && s->head->seq <= seq) {
		struct rvs_msg *m = s->head;

		s->head = m->next;
		free(m);
		s->queued--;
	}
	if (!s->head)
		s->tail = &s->head;
	if (seq > s->peer_acked)
		s->peer_acked = seq;
	s->st.queued = s->queued;
}

int rvs_rx(struct rvs *s, const void *msg, size_t len)
{
	struct rvs_hdr h;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, msg, sizeof(h));
	if (h.len != len - sizeof(h) || h.len > RVS_MAX_BODY || h.flags)
		return -EBADMSG;
	/* An ack of a message never sent means a confused or foreign peer. */
	if (h.ack >= s->next_seq)
		return -EBADMSG;
	if (h.ack < s->peer_acked) {
		/* Acks are cumulative and in order: never backwards. */
		return -EBADMSG;
	}
	release(s, h.ack);
	if (h.seq == 0) {
		if (h.type != RVS_T_ACK || h.len)
			return -EBADMSG;
		return 0;
	}
	if (h.type < RVS_T_USER_MIN)
		return -EBADMSG;
	if (h.seq <= s->delivered) {
		s->st.duplicates++; /* resent after a reconnect: already had it */
		return 0;
	}
	if (h.seq != s->delivered + 1)
		return -EPROTO;
	s->delivered = h.seq;
	s->st.delivered++;
	s->ops.deliver_cb(s->ctx, h.type, (const uint8_t *)msg + sizeof(h), h.len);
	return 0;
}

void rvs_link_down(struct rvs *s)
{
	s->up = false;
}

int rvs_link_up(struct rvs *s, uint64_t peer_delivered)
{
	if (peer_delivered >= s->next_seq || peer_delivered < s->peer_acked)
		return -EPROTO;
	release(s, peer_delivered);
	s->up = true;
	for (struct rvs_msg *m = s->head; m; m = m->next) {
		int rc = xmit(s, m);

		if (rc) {
			s->up = false;
			return rc;
		}
		s->st.resent++;
	}
	return 0;
}

uint64_t rvs_peer_acked(const struct rvs *s)
{
	return s->peer_acked;
}

uint64_t rvs_delivered(const struct rvs *s)
{
	return s->delivered;
}

int rvs_ack(struct rvs *s)
{
	struct rvs_hdr h = { .type = RVS_T_ACK };
	int rc;

	if (!s->up || s->acked_sent == s->delivered)
		return 0;
	h.ack = s->delivered;
	rc = s->ops.xmit_cb(s->ctx, &h, sizeof(h));
	if (!rc)
		s->acked_sent = s->delivered;
	return rc;
}

void rvs_get_stats(const struct rvs *s, struct rvs_stats *out)
{
	*out = s->st;
}
