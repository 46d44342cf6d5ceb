// SPDX-License-Identifier: MIT
/* Wire formats, credit rules and the send ring of the RDMA backend: pure
 * functions, see xrdma_proto.h for the formats and the invariants. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "xrdma_proto.h"

static void put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

/* ---- control messages ---------------------------------------------------- */

size_t xrdma_ctl_build(const struct xrdma_ctl *c, uint8_t *buf)
{
	size_t len = c->type == XRDMA_CTL_HELLO	    ? XRDMA_HELLO_LEN
		     : c->type == XRDMA_CTL_WELCOME ? XRDMA_WELCOME_LEN
						    : XRDMA_CONNECT_LEN;

	memset(buf, 0, len);
	put32(buf, XRDMA_MAGIC);
	buf[4] = c->type;
	buf[5] = XRDMA_VERSION;
	switch (c->type) {
	case XRDMA_CTL_HELLO:
		put32(buf + 8, c->depth);
		put32(buf + 12, c->max_msg);
		break;
	case XRDMA_CTL_WELCOME:
		put32(buf + 8, c->depth);
		put32(buf + 12, c->max_msg);
		put16(buf + 16, c->port);
		memcpy(buf + 24, c->token, XRDMA_TOKEN_LEN);
		break;
	default:
		memcpy(buf + 8, c->token, XRDMA_TOKEN_LEN);
		break;
	}
	return len;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int xrdma_ctl_parse(const uint8_t *p, size_t len, uint8_t want, struct xrdma_ctl *out,
		    const char **why)
{
	memset(out, 0, sizeof(*out));
	if (len < XRDMA_CTL_HDR_LEN) {
		*why = "control message shorter than its header";
		return -EPROTO;
	}
	if (get32(p) != XRDMA_MAGIC) {
		*why = "control message with a bad magic";
		return -EPROTO;
	}
	if (p[5] != XRDMA_VERSION) {
		*why = "unsupported protocol version";
		return -EPROTO;
	}
	if (get16(p + 6)) {
		*why = "reserved control header bits set";
		return -EPROTO;
	}
	out->type = p[4];
	if (out->type != want) {
		*why = "unexpected control message";
		return -EPROTO;
	}
	switch (out->type) {
	case XRDMA_CTL_HELLO:
		if (len != XRDMA_HELLO_LEN) {
			*why = "hello of the wrong size";
			return -EPROTO;
		}
		break;
	case XRDMA_CTL_WELCOME:
		if (len != XRDMA_WELCOME_LEN) {
			*why = "welcome of the wrong size";
			return -EPROTO;
		}
		out->port = get16(p + 16);
		if (!out->port || get16(p + 18) || get32(p + 20)) {
			*why = "welcome with port 0 or reserved bits set";
			return -EPROTO;
		}
		memcpy(out->token, p + 24, XRDMA_TOKEN_LEN);
		break;
	case XRDMA_CTL_CONNECT:
		/* The CM delivers the whole private data area of the request,
		 * zero padded beyond what the client gave. */
		if (len < XRDMA_CONNECT_LEN || len > XRDMA_PRIV_MAX ||
		    !all_zero(p + XRDMA_CONNECT_LEN, len - XRDMA_CONNECT_LEN)) {
			*why = "connect request private data of the wrong size";
			return -EPROTO;
		}
		memcpy(out->token, p + 8, XRDMA_TOKEN_LEN);
		return 0;
	default:
		*why = "unknown control message";
		return -EPROTO;
	}
	out->depth = get32(p + 8);
	out->max_msg = get32(p + 12);
	if (out->depth < XRDMA_MIN_DEPTH || out->depth > XRDMA_MAX_DEPTH) {
		*why = "receive depth out of range";
		return -EPROTO;
	}
	if (out->max_msg < XRDMA_MIN_MAX_MSG || out->max_msg > XRDMA_MAX_MSG_LIMIT) {
		*why = "message size limit out of range";
		return -EPROTO;
	}
	return 0;
}

/* ---- message header ------------------------------------------------------ */

void xrdma_msg_hdr_put(uint8_t *p, uint8_t type, uint16_t credits, uint32_t len)
{
	p[0] = type;
	p[1] = 0;
	put16(p + 2, credits);
	put32(p + 4, len);
}

int xrdma_msg_parse(const uint8_t *p, size_t n, uint32_t max, struct xrdma_msg_hdr *out,
		    const char **why)
{
	memset(out, 0, sizeof(*out));
	if (n < XRDMA_MSG_HDR_LEN) {
		*why = "message shorter than its header";
		return -EPROTO;
	}
	out->type = p[0];
	out->credits = get16(p + 2);
	out->len = get32(p + 4);
	if (p[1]) {
		*why = "reserved message header bits set";
		return -EPROTO;
	}
	if (out->len != n - XRDMA_MSG_HDR_LEN) {
		*why = "message length disagrees with what arrived";
		return -EPROTO;
	}
	switch (out->type) {
	case XRDMA_MSG:
		if (out->len == 0 || out->len > max) {
			*why = out->len ? "message above the maximum size" : "empty message";
			return -EPROTO;
		}
		return 0;
	case XRDMA_CREDIT:
		if (out->len || !out->credits) {
			*why = "credit message with data or without credits";
			return -EPROTO;
		}
		return 0;
	default:
		*why = "unknown message type";
		return -EPROTO;
	}
}

/* ---- credits ------------------------------------------------------------- */

void xrdma_credits_init(struct xrdma_credits *cr, uint32_t depth, uint32_t peer_depth)
{
	cr->depth = depth;
	cr->peer_depth = peer_depth;
	cr->avail = peer_depth;
	cr->owed = 0;
	cr->peer_view = depth;
}

int xrdma_credit_can_send_msg(const struct xrdma_credits *cr)
{
	return cr->avail >= 2;
}

int xrdma_credit_should_send_credit(const struct xrdma_credits *cr)
{
	uint32_t threshold = cr->depth / 4 < 2 ? 2 : cr->depth / 4;

	if (!cr->avail || !cr->owed)
		return 0;
	return cr->owed >= threshold || cr->peer_view < 2;
}

uint16_t xrdma_credit_tx(struct xrdma_credits *cr)
{
	/* depth <= XRDMA_MAX_DEPTH, so owed always fits. */
	uint16_t n = (uint16_t)cr->owed;

	cr->avail--;
	cr->owed = 0;
	cr->peer_view += n;
	return n;
}

int xrdma_credit_rx(struct xrdma_credits *cr, uint8_t type, uint16_t credits, const char **why)
{
	if (cr->peer_view < (type == XRDMA_MSG ? 2u : 1u)) {
		*why = type == XRDMA_MSG ? "message sent on the reserved credit"
					 : "message sent without a credit";
		return -EPROTO;
	}
	if (credits > cr->peer_depth - cr->avail) {
		*why = "more credits returned than buffers lent";
		return -EPROTO;
	}
	cr->peer_view--;
	cr->avail += credits;
	return 0;
}

void xrdma_credit_reposted(struct xrdma_credits *cr)
{
	cr->owed++;
}

/* ---- send ring ----------------------------------------------------------- */

int xrdma_ring_alloc(struct xrdma_ring *r, size_t n, size_t *off, size_t *consumed)
{
	if (n == 0 || n > r->size)
		return -ENOBUFS;
	if (r->used == 0)
		r->head = r->tail = 0;
	if (r->used && r->head <= r->tail) {
		/* Free space is [head, tail) only (head == tail: full). */
		if (r->tail - r->head < n)
			return -ENOBUFS;
		*off = r->head;
		*consumed = n;
	} else if (r->size - r->head >= n) {
		/* Free space is [head, size) and [0, tail). */
		*off = r->head;
		*consumed = n;
	} else if (r->tail >= n) {
		*off = 0;
		*consumed = r->size - r->head + n;
	} else {
		return -ENOBUFS;
	}
	r->head = *off + n;
	if (r->head == r->size)
		r->head = 0;
	r->used += *consumed;
	return 0;
}

int xrdma_ring_fits(const struct xrdma_ring *r, size_t n)
{
	struct xrdma_ring copy = *r;
	size_t off, consumed;

	return xrdma_ring_alloc(&copy, n, &off, &consumed) == 0;
}

void xrdma_ring_free(struct xrdma_ring *r, size_t end, size_t consumed)
{
	r->tail = end == r->size ? 0 : end;
	r->used -= consumed;
}
