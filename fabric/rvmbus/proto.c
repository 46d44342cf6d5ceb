// SPDX-License-Identifier: MIT
/*
 * VMBus channel-message validation and construction. Shared by the host
 * channel manager and the freestanding guest client, hence the short include
 * list: no allocation, no libc beyond mem*().
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/vmbus_proto.h"

const uint32_t vmbus_version_list[VMBUS_VERSION_COUNT] = {
	VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
	VMBUS_VERSION_WIN10_V5,	  VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,
	VMBUS_VERSION_WIN8_1,	  VMBUS_VERSION_WIN8,
};

/* ---- GUIDs --------------------------------------------------------------- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Wire position of the n-th byte of the textual form: the first three
 * fields are printed most significant byte first but stored little endian.
 */
static const uint8_t guid_text_to_wire[16] = {
	3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
};

int vmbus_guid_parse(const char *s, struct vmbus_guid *out)
{
	struct vmbus_guid g;
	bool braced = false;
	unsigned int n = 0;
	size_t i = 0;

	if (!s || !out)
		return -EINVAL;
	if (s[0] == '{') {
		braced = true;
		s++;
	}
	/* 36 characters: dashes after 8, 13, 18 and 23; hex pairs elsewhere. */
	while (i < 36) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		hi = hexval(s[i]);
		if (hi < 0)
			return -EINVAL;
		lo = hexval(s[i + 1]); /* s[i] was a hex digit, so s[i + 1] exists */
		if (lo < 0)
			return -EINVAL;
		g.b[guid_text_to_wire[n++]] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	if (braced) {
		if (s[36] != '}')
			return -EINVAL;
		i++;
	}
	if (s[i] != '\0')
		return -EINVAL;
	*out = g;
	return 0;
}

void vmbus_guid_format(const struct vmbus_guid *g, char out[VMBUS_GUID_STR_LEN])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (unsigned int n = 0; n < 16; n++) {
		uint8_t b = g->b[guid_text_to_wire[n]];

		if (n == 4 || n == 6 || n == 8 || n == 10)
			out[o++] = '-';
		out[o++] = hex[b >> 4];
		out[o++] = hex[b & 0xf];
	}
	out[o] = '\0';
}

bool vmbus_guid_equal(const struct vmbus_guid *a, const struct vmbus_guid *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

/* ---- GPADL range buffers ------------------------------------------------- */

static uint64_t load_word(const uint8_t *p, uint32_t i)
{
	uint64_t w;

	memcpy(&w, p + (size_t)i * 8, sizeof(w));
	return w;
}

/*
 * Walks the range descriptors found among the first `present` of `total`
 * words. A descriptor beyond `present` travels in a later GPADL_BODY: then
 * only a lower bound can be checked (each remaining range needs a descriptor
 * and at least one PFN) and *npfns is left unset (*complete false).
 */
static int ranges_walk(const uint8_t *words, uint32_t present, uint32_t total, uint32_t rangecount,
		       uint32_t *npfns, bool *complete)
{
	uint64_t idx = 0, pfns = 0;

	if (rangecount == 0 || present > total)
		return -EBADMSG;
	for (uint32_t r = 0; r < rangecount; r++) {
		uint64_t w, pages;
		uint32_t count, offset;

		if (idx >= present) {
			if (idx + 2ull * (rangecount - r) > total)
				return -EBADMSG;
			*complete = false;
			return 0;
		}
		w = load_word(words, (uint32_t)idx);
		count = (uint32_t)w;
		offset = (uint32_t)(w >> 32);
		if (offset >= VMBUS_PAGE_SIZE || count == 0)
			return -EBADMSG;
		pages = vmbus_range_pages(offset, count);
		idx += 1 + pages;
		pfns += pages;
		if (idx > total)
			return -EBADMSG;
	}
	/* Every descriptor seen: the ranges must account for every word. */
	if (idx != total)
		return -EBADMSG;
	*npfns = (uint32_t)pfns;
	*complete = true;
	return 0;
}

int vmbus_gpa_ranges_check(const uint64_t *words, uint32_t nwords, uint32_t rangecount,
			   uint32_t *npfns)
{
	bool complete = false;
	uint32_t n = 0;
	int rc;

	if (!words || !npfns)
		return -EBADMSG;
	rc = ranges_walk((const uint8_t *)words, nwords, nwords, rangecount, &n, &complete);
	if (rc < 0)
		return rc;
	if (!complete)
		return -EBADMSG;
	*npfns = n;
	return 0;
}

/* ---- the message table --------------------------------------------------- */

#define DIR_H2G VMBUS_DIR_H2G
#define DIR_G2H VMBUS_DIR_G2H

static int check_gpadl_header(const uint8_t *buf, size_t len, struct vmbus_msg *m);
static int check_gpadl_body(const uint8_t *buf, size_t len, struct vmbus_msg *m);

struct msg_desc {
	const char *name; /* NULL: not a message this code accepts */
	uint16_t min_len;
	uint8_t dir;
	/* Structural checks of a variable part, run after the length check. */
	int (*check)(const uint8_t *buf, size_t len, struct vmbus_msg *m);
};

/*
 * Indexed by message type. min_len is the full fixed struct: unlike Linux,
 * whose table tolerates short host messages, a partner that sends fewer
 * bytes than the layout is broken or hostile. Types 18-21 and 23 exist on
 * the wire but nothing here implements them.
 */
static const struct msg_desc msg_table[VMBUS_MSG_COUNT] = {
	[VMBUS_MSG_OFFERCHANNEL] = { "OFFERCHANNEL", sizeof(struct vmbus_msg_offer_channel),
				     DIR_H2G, NULL },
	[VMBUS_MSG_RESCIND_CHANNELOFFER] = { "RESCIND_CHANNELOFFER",
					     sizeof(struct vmbus_msg_rescind_offer), DIR_H2G,
					     NULL },
	[VMBUS_MSG_REQUESTOFFERS] = { "REQUESTOFFERS", sizeof(struct vmbus_msg_request_offers),
				      DIR_G2H, NULL },
	[VMBUS_MSG_ALLOFFERS_DELIVERED] = { "ALLOFFERS_DELIVERED",
					    sizeof(struct vmbus_msg_alloffers_delivered), DIR_H2G,
					    NULL },
	[VMBUS_MSG_OPENCHANNEL] = { "OPENCHANNEL", sizeof(struct vmbus_msg_open_channel), DIR_G2H,
				    NULL },
	[VMBUS_MSG_OPENCHANNEL_RESULT] = { "OPENCHANNEL_RESULT",
					   sizeof(struct vmbus_msg_open_result), DIR_H2G, NULL },
	[VMBUS_MSG_CLOSECHANNEL] = { "CLOSECHANNEL", sizeof(struct vmbus_msg_close_channel),
				     DIR_G2H, NULL },
	/* At least the first range descriptor must be in the header. */
	[VMBUS_MSG_GPADL_HEADER] = { "GPADL_HEADER",
				     sizeof(struct vmbus_msg_gpadl_header) +
					     sizeof(struct vmbus_gpa_range),
				     DIR_G2H, check_gpadl_header },
	/* A body without a PFN carries nothing. */
	[VMBUS_MSG_GPADL_BODY] = { "GPADL_BODY", sizeof(struct vmbus_msg_gpadl_body) + 8, DIR_G2H,
				   check_gpadl_body },
	[VMBUS_MSG_GPADL_CREATED] = { "GPADL_CREATED", sizeof(struct vmbus_msg_gpadl_created),
				      DIR_H2G, NULL },
	[VMBUS_MSG_GPADL_TEARDOWN] = { "GPADL_TEARDOWN", sizeof(struct vmbus_msg_gpadl_teardown),
				       DIR_G2H, NULL },
	[VMBUS_MSG_GPADL_TORNDOWN] = { "GPADL_TORNDOWN", sizeof(struct vmbus_msg_gpadl_torndown),
				       DIR_H2G, NULL },
	[VMBUS_MSG_RELID_RELEASED] = { "RELID_RELEASED", sizeof(struct vmbus_msg_relid_released),
				       DIR_G2H, NULL },
	[VMBUS_MSG_INITIATE_CONTACT] = { "INITIATE_CONTACT",
					 sizeof(struct vmbus_msg_initiate_contact), DIR_G2H, NULL },
	[VMBUS_MSG_VERSION_RESPONSE] = { "VERSION_RESPONSE",
					 sizeof(struct vmbus_msg_version_response), DIR_H2G, NULL },
	[VMBUS_MSG_UNLOAD] = { "UNLOAD", sizeof(struct vmbus_msg_unload), DIR_G2H, NULL },
	[VMBUS_MSG_UNLOAD_RESPONSE] = { "UNLOAD_RESPONSE", sizeof(struct vmbus_msg_unload_response),
					DIR_H2G, NULL },
	[VMBUS_MSG_MODIFYCHANNEL] = { "MODIFYCHANNEL", sizeof(struct vmbus_msg_modifychannel),
				      DIR_G2H, NULL },
	[VMBUS_MSG_MODIFYCHANNEL_RESPONSE] = { "MODIFYCHANNEL_RESPONSE",
					       sizeof(struct vmbus_msg_modifychannel_response),
					       DIR_H2G, NULL },
};

static int check_gpadl_header(const uint8_t *buf, size_t len, struct vmbus_msg *m)
{
	const size_t fixed = sizeof(struct vmbus_msg_gpadl_header);
	const struct vmbus_msg_gpadl_header *h = &m->u.gpadl_header;
	uint32_t present, total, npfns = 0;
	bool complete = false;

	if ((len - fixed) % 8 != 0 || h->range_buflen % 8 != 0)
		return -EBADMSG;
	present = (uint32_t)((len - fixed) / 8);
	total = h->range_buflen / 8u;
	if (ranges_walk(buf + fixed, present, total, h->rangecount, &npfns, &complete) < 0)
		return -EBADMSG;
	m->nwords = present;
	m->total_words = total;
	return 0;
}

static int check_gpadl_body(const uint8_t *buf, size_t len, struct vmbus_msg *m)
{
	const size_t fixed = sizeof(struct vmbus_msg_gpadl_body);

	(void)buf;
	if ((len - fixed) % 8 != 0)
		return -EBADMSG;
	m->nwords = (uint32_t)((len - fixed) / 8);
	return 0;
}

int vmbus_msg_parse(const void *buf, size_t len, int direction, struct vmbus_msg *out)
{
	const struct msg_desc *d;
	struct vmbus_msg_hdr hdr;
	struct vmbus_msg m;
	int rc;

	if (!buf || !out || len < sizeof(hdr))
		return -EBADMSG;
	if (len > VMBUS_MSG_MAX)
		return -EMSGSIZE;
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.msgtype >= VMBUS_MSG_COUNT || !msg_table[hdr.msgtype].name)
		return -ENOMSG;
	d = &msg_table[hdr.msgtype];
	if (d->dir != direction)
		return -EPERM;
	if (len < d->min_len)
		return -EBADMSG;

	/* Copy once; every later check and handler reads only the copy. */
	memset(&m, 0, sizeof(m));
	memcpy(m.u.raw, buf, len);
	m.type = hdr.msgtype;
	m.len = (uint32_t)len;
	if (d->check) {
		rc = d->check(m.u.raw, len, &m);
		if (rc < 0)
			return rc;
	}
	*out = m;
	return 0;
}

const char *vmbus_msg_name(uint32_t type)
{
	if (type < VMBUS_MSG_COUNT && msg_table[type].name)
		return msg_table[type].name;
	return "UNKNOWN";
}

uint64_t vmbus_msg_word(const struct vmbus_msg *m, uint32_t i)
{
	size_t off;

	if (m->type == VMBUS_MSG_GPADL_HEADER)
		off = sizeof(struct vmbus_msg_gpadl_header);
	else if (m->type == VMBUS_MSG_GPADL_BODY)
		off = sizeof(struct vmbus_msg_gpadl_body);
	else
		return 0;
	if (i >= m->nwords)
		return 0;
	return load_word(m->u.raw + off, i);
}

/* ---- builders ------------------------------------------------------------ */

/* Copies a fully built local message out; buf may be unaligned. */
static int emit(void *buf, size_t cap, const void *msg, size_t n, size_t *len)
{
	if (!buf || !len)
		return -EINVAL;
	if (cap < n)
		return -ENOSPC;
	memcpy(buf, msg, n);
	*len = n;
	return 0;
}

#define HDR(t)                               \
	{                                    \
		.msgtype = (t), .padding = 0 \
	}

int vmbus_build_simple(void *buf, size_t cap, uint32_t type, size_t *len)
{
	struct vmbus_msg_hdr h = HDR(type);

	if (type != VMBUS_MSG_REQUESTOFFERS && type != VMBUS_MSG_ALLOFFERS_DELIVERED &&
	    type != VMBUS_MSG_UNLOAD && type != VMBUS_MSG_UNLOAD_RESPONSE)
		return -EINVAL;
	return emit(buf, cap, &h, sizeof(h), len);
}

int vmbus_build_offer(void *buf, size_t cap, const struct vmbus_channel_offer *offer,
		      uint32_t relid, uint32_t conn_id, bool dedicated_interrupt, size_t *len)
{
	struct vmbus_msg_offer_channel m;

	if (!offer)
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_OFFERCHANNEL;
	m.offer = *offer;
	m.child_relid = relid;
	m.is_dedicated_interrupt = dedicated_interrupt ? VMBUS_OFFER_DEDICATED_INTERRUPT : 0;
	m.connection_id = conn_id;
	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_rescind(void *buf, size_t cap, uint32_t relid, size_t *len)
{
	struct vmbus_msg_rescind_offer m = { .hdr = HDR(VMBUS_MSG_RESCIND_CHANNELOFFER),
					     .child_relid = relid };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_version_response(void *buf, size_t cap, bool supported, uint8_t conn_state,
				 uint32_t msg_conn_id, size_t *len)
{
	struct vmbus_msg_version_response m = { .hdr = HDR(VMBUS_MSG_VERSION_RESPONSE),
						.version_supported = supported ? 1 : 0,
						.connection_state = conn_state,
						.msg_conn_id = msg_conn_id };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_open_result(void *buf, size_t cap, uint32_t relid, uint32_t openid, uint32_t status,
			    size_t *len)
{
	struct vmbus_msg_open_result m = { .hdr = HDR(VMBUS_MSG_OPENCHANNEL_RESULT),
					   .child_relid = relid,
					   .openid = openid,
					   .status = status };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_gpadl_created(void *buf, size_t cap, uint32_t relid, uint32_t gpadl,
			      uint32_t status, size_t *len)
{
	struct vmbus_msg_gpadl_created m = { .hdr = HDR(VMBUS_MSG_GPADL_CREATED),
					     .child_relid = relid,
					     .gpadl = gpadl,
					     .creation_status = status };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_gpadl_torndown(void *buf, size_t cap, uint32_t gpadl, size_t *len)
{
	struct vmbus_msg_gpadl_torndown m = { .hdr = HDR(VMBUS_MSG_GPADL_TORNDOWN),
					      .gpadl = gpadl };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_modify_response(void *buf, size_t cap, uint32_t relid, uint32_t status, size_t *len)
{
	struct vmbus_msg_modifychannel_response m = { .hdr = HDR(VMBUS_MSG_MODIFYCHANNEL_RESPONSE),
						      .child_relid = relid,
						      .status = status };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_initiate_contact(void *buf, size_t cap, uint32_t version, uint32_t target_vcpu,
				 uint64_t interrupt_page, uint8_t msg_sint, uint8_t msg_vtl,
				 uint64_t monitor_page1, uint64_t monitor_page2, size_t *len)
{
	struct vmbus_msg_initiate_contact m;

	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT;
	m.vmbus_version_requested = version;
	m.target_vcpu = target_vcpu;
	/* The same 8 bytes changed meaning with 5.0 (facts 2.5). */
	if (version >= VMBUS_VERSION_WIN10_V5) {
		m.msg_sint = msg_sint;
		m.msg_vtl = msg_vtl;
	} else {
		m.interrupt_page = interrupt_page;
	}
	m.monitor_page1 = monitor_page1;
	m.monitor_page2 = monitor_page2;
	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_open_channel(void *buf, size_t cap, uint32_t relid, uint32_t openid,
			     uint32_t ring_gpadl, uint32_t target_vp, uint32_t downstream_pages,
			     const void *user_data, size_t user_len, size_t *len)
{
	struct vmbus_msg_open_channel m;

	if (user_len > VMBUS_OPEN_USER_DATA_BYTES || (user_len && !user_data))
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_OPENCHANNEL;
	m.child_relid = relid;
	m.openid = openid;
	m.ringbuffer_gpadlhandle = ring_gpadl;
	m.target_vp = target_vp;
	m.downstream_ringbuffer_pageoffset = downstream_pages;
	if (user_len)
		memcpy(m.userdata, user_data, user_len);
	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_close_channel(void *buf, size_t cap, uint32_t relid, size_t *len)
{
	struct vmbus_msg_close_channel m = { .hdr = HDR(VMBUS_MSG_CLOSECHANNEL),
					     .child_relid = relid };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_gpadl_header(void *buf, size_t cap, uint32_t relid, uint32_t gpadl,
			     const uint64_t *pfns, uint32_t total_pfns, uint32_t *used, size_t *len)
{
	uint8_t m[VMBUS_MSG_MAX];
	struct vmbus_msg_gpadl_header h;
	struct vmbus_gpa_range r;
	uint32_t n;
	size_t off = sizeof(h);
	int rc;

	if (!pfns || !used || total_pfns == 0 || total_pfns > VMBUS_GPADL_MAX_WIRE_PFNS)
		return -EINVAL;
	n = total_pfns < VMBUS_GPADL_HEADER_MAX_PFNS ? total_pfns : VMBUS_GPADL_HEADER_MAX_PFNS;
	memset(&h, 0, sizeof(h));
	h.hdr.msgtype = VMBUS_MSG_GPADL_HEADER;
	h.child_relid = relid;
	h.gpadl = gpadl;
	/* range_buflen covers the whole range, PFNs sent in bodies included. */
	h.range_buflen = (uint16_t)(sizeof(r) + (size_t)total_pfns * 8);
	h.rangecount = 1;
	r.byte_count = total_pfns << VMBUS_PAGE_SHIFT;
	r.byte_offset = 0;
	memcpy(m, &h, sizeof(h));
	memcpy(m + off, &r, sizeof(r));
	off += sizeof(r);
	memcpy(m + off, pfns, (size_t)n * 8);
	off += (size_t)n * 8;
	rc = emit(buf, cap, m, off, len);
	if (rc == 0)
		*used = n;
	return rc;
}

int vmbus_build_gpadl_body(void *buf, size_t cap, uint32_t gpadl, const uint64_t *pfns,
			   uint32_t npfns, uint32_t *used, size_t *len)
{
	uint8_t m[VMBUS_MSG_MAX];
	struct vmbus_msg_gpadl_body b;
	uint32_t n;
	int rc;

	if (!pfns || !used || npfns == 0)
		return -EINVAL;
	n = npfns < VMBUS_GPADL_BODY_MAX_PFNS ? npfns : VMBUS_GPADL_BODY_MAX_PFNS;
	memset(&b, 0, sizeof(b));
	b.hdr.msgtype = VMBUS_MSG_GPADL_BODY;
	b.msgnumber = 0; /* as Linux; hosts do not read it */
	b.gpadl = gpadl;
	memcpy(m, &b, sizeof(b));
	memcpy(m + sizeof(b), pfns, (size_t)n * 8);
	rc = emit(buf, cap, m, sizeof(b) + (size_t)n * 8, len);
	if (rc == 0)
		*used = n;
	return rc;
}

int vmbus_build_gpadl_teardown(void *buf, size_t cap, uint32_t relid, uint32_t gpadl, size_t *len)
{
	struct vmbus_msg_gpadl_teardown m = { .hdr = HDR(VMBUS_MSG_GPADL_TEARDOWN),
					      .child_relid = relid,
					      .gpadl = gpadl };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_relid_released(void *buf, size_t cap, uint32_t relid, size_t *len)
{
	struct vmbus_msg_relid_released m = { .hdr = HDR(VMBUS_MSG_RELID_RELEASED),
					      .child_relid = relid };

	return emit(buf, cap, &m, sizeof(m), len);
}

int vmbus_build_modifychannel(void *buf, size_t cap, uint32_t relid, uint32_t target_vp,
			      size_t *len)
{
	struct vmbus_msg_modifychannel m = { .hdr = HDR(VMBUS_MSG_MODIFYCHANNEL),
					     .child_relid = relid,
					     .target_vp = target_vp };

	return emit(buf, cap, &m, sizeof(m), len);
}
