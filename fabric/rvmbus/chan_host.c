// SPDX-License-Identifier: MIT
/*
 * Host VMBus channel manager: offers, version negotiation, GPADL assembly,
 * open/close, rescind/release and unload, as a pure state machine.
 *
 * Everything a guest sends is hostile until vmbus_msg_parse() and the
 * handler's own checks have passed; a handler checks everything before it
 * changes anything, so a rejected message leaves no trace. Effects leave
 * through the callbacks in struct vmbus_host_ops only.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fab/vmbus_chan.h"
#include "fab/vmbus_proto.h"

struct host_chan {
	struct vmbus_host_offer offer;
	uint32_t relid;
	uint32_t conn_id;
	bool offered;	/* OFFERCHANNEL sent on the current connection */
	bool rescinded; /* RESCIND sent, RELID_RELEASED not yet seen */
	int state;	/* VMBUS_HOST_CHAN_* */
	uint32_t open_id;
	uint32_t ring_gpadl;
	uint32_t target_vp;
};

#define GPADL_FREE	  0
#define GPADL_ASSEMBLING  1 /* header seen, bodies outstanding */
#define GPADL_ESTABLISHED 2 /* gpadl_create accepted, CREATED sent */

struct host_gpadl {
	int state;
	uint32_t id;
	uint32_t relid;
	uint16_t rangecount;
	bool ring_ok;	       /* one range of whole pages: usable as a ring */
	bool teardown_pending; /* TEARDOWN arrived while it backs an open ring */
	uint32_t total_words;  /* range buffer size in words */
	uint32_t have_words;
	uint32_t npfns;
	uint64_t *words; /* the range buffer while assembling */
};

struct vmbus_host {
	struct vmbus_host_config cfg;
	struct vmbus_host_ops ops;
	void *ctx;
	bool connected;
	bool offers_requested;
	uint32_t version;
	struct host_chan **chans; /* indexed by relid, [0] unused */
	struct host_gpadl *gpadls;
	uint32_t ngpadls; /* slots not GPADL_FREE */
};

/* ---- helpers ------------------------------------------------------------- */

static bool version_known(uint32_t v)
{
	for (size_t i = 0; i < VMBUS_VERSION_COUNT; i++)
		if (vmbus_version_list[i] == v)
			return true;
	return false;
}

static uint32_t msg_conn_id(const struct vmbus_host *h)
{
	return h->version >= VMBUS_VERSION_WIN10_V5 ? h->cfg.msg_conn_id
						    : VMBUS_MESSAGE_CONNECTION_ID;
}

static struct host_chan *find_chan(const struct vmbus_host *h, uint32_t relid)
{
	if (relid == 0 || relid > h->cfg.max_relid)
		return NULL;
	return h->chans[relid];
}

/* A channel the guest can name: offered on this connection. */
static struct host_chan *guest_chan(const struct vmbus_host *h, uint32_t relid)
{
	struct host_chan *ch = find_chan(h, relid);

	return ch && ch->offered ? ch : NULL;
}

static struct host_gpadl *find_gpadl(const struct vmbus_host *h, uint32_t id)
{
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++)
		if (h->gpadls[i].state != GPADL_FREE && h->gpadls[i].id == id)
			return &h->gpadls[i];
	return NULL;
}

static struct host_gpadl *alloc_gpadl(struct vmbus_host *h)
{
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++)
		if (h->gpadls[i].state == GPADL_FREE)
			return &h->gpadls[i];
	return NULL;
}

static void free_gpadl(struct vmbus_host *h, struct host_gpadl *g)
{
	free(g->words);
	memset(g, 0, sizeof(*g));
	h->ngpadls--;
}

static int send_msg(struct vmbus_host *h, const void *buf, size_t len)
{
	return h->ops.send(h->ctx, buf, len);
}

static int send_gpadl_created(struct vmbus_host *h, uint32_t relid, uint32_t id, uint32_t status)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc = vmbus_build_gpadl_created(buf, sizeof(buf), relid, id, status, &len);

	return rc ? rc : send_msg(h, buf, len);
}

static int send_open_result(struct vmbus_host *h, uint32_t relid, uint32_t openid, uint32_t status)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc = vmbus_build_open_result(buf, sizeof(buf), relid, openid, status, &len);

	return rc ? rc : send_msg(h, buf, len);
}

static int send_torndown(struct vmbus_host *h, uint32_t id)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc = vmbus_build_gpadl_torndown(buf, sizeof(buf), id, &len);

	return rc ? rc : send_msg(h, buf, len);
}

static int send_offer(struct vmbus_host *h, struct host_chan *ch)
{
	struct vmbus_channel_offer o;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	memset(&o, 0, sizeof(o));
	o.if_type = ch->offer.if_type;
	o.if_instance = ch->offer.if_instance;
	o.chn_flags = ch->offer.flags;
	o.mmio_megabytes = ch->offer.mmio_megabytes;
	memcpy(o.u.std.user_def, ch->offer.user_def, sizeof(o.u.std.user_def));
	o.sub_channel_index = ch->offer.sub_channel_index;
	/* Every channel gets its own signalling connection id, so the guest
	 * never needs the shared interrupt page to name the channel. */
	rc = vmbus_build_offer(buf, sizeof(buf), &o, ch->relid, ch->conn_id, true, &len);
	if (rc)
		return rc;
	ch->offered = true;
	return send_msg(h, buf, len);
}

/* Keeps the first error of a series of sends. */
static void first_err(int *acc, int rc)
{
	if (*acc == 0 && rc < 0)
		*acc = rc;
}

/* An established GPADL goes away: host unmaps; TORNDOWN if the guest asked. */
static int destroy_gpadl(struct vmbus_host *h, struct host_gpadl *g, bool reply)
{
	uint32_t id = g->id, relid = g->relid;
	bool established = g->state == GPADL_ESTABLISHED;

	free_gpadl(h, g);
	if (established && h->ops.gpadl_teardown)
		h->ops.gpadl_teardown(h->ctx, id, relid);
	return reply ? send_torndown(h, id) : 0;
}

/*
 * The channel is closed. A ring GPADL whose teardown was deferred goes now,
 * answered with TORNDOWN if the guest is still there to hear it.
 */
static int close_chan(struct vmbus_host *h, struct host_chan *ch, bool reply)
{
	struct host_gpadl *ring = find_gpadl(h, ch->ring_gpadl);

	ch->state = VMBUS_HOST_CHAN_CLOSED;
	if (h->ops.close)
		h->ops.close(h->ctx, ch->relid);
	if (ring && ring->relid == ch->relid && ring->teardown_pending)
		return destroy_gpadl(h, ring, reply);
	return 0;
}

/* Drops every GPADL of relid (all of them if relid is 0), silently. */
static void drop_gpadls(struct vmbus_host *h, uint32_t relid)
{
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++) {
		struct host_gpadl *g = &h->gpadls[i];

		if (g->state != GPADL_FREE && (relid == 0 || g->relid == relid))
			destroy_gpadl(h, g, false);
	}
}

/* Forgets the guest: what UNLOAD and a reset have in common. */
static void drop_connection(struct vmbus_host *h)
{
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++) {
		struct host_chan *ch = h->chans[relid];

		if (ch && ch->state != VMBUS_HOST_CHAN_CLOSED)
			close_chan(h, ch, false);
	}
	drop_gpadls(h, 0);
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++) {
		struct host_chan *ch = h->chans[relid];

		if (!ch)
			continue;
		if (ch->rescinded) {
			/* Withdrawn already; the guest that had to release it is gone. */
			free(ch);
			h->chans[relid] = NULL;
			continue;
		}
		ch->offered = false;
	}
	h->connected = false;
	h->offers_requested = false;
	h->version = 0;
}

/* ---- handlers ------------------------------------------------------------ */

static int on_initiate_contact(struct vmbus_host *h, const struct vmbus_msg *m)
{
	const struct vmbus_msg_initiate_contact *ic = &m->u.contact;
	uint32_t v = ic->vmbus_version_requested;
	struct vmbus_host_contact c;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (h->connected)
		return -EISCONN;
	if (!version_known(v) || v > h->cfg.max_version || v < h->cfg.min_version) {
		/* Not an error: the guest goes on to an older version. */
		rc = vmbus_build_version_response(buf, sizeof(buf), false,
						  VMBUS_CONNECTION_SUCCESSFUL, 0, &len);
		return rc ? rc : send_msg(h, buf, len);
	}

	memset(&c, 0, sizeof(c));
	c.version = v;
	c.target_vcpu = ic->target_vcpu;
	c.monitor_page1 = ic->monitor_page1;
	c.monitor_page2 = ic->monitor_page2;
	if (v >= VMBUS_VERSION_WIN10_V5) {
		c.msg_sint = ic->msg_sint;
		c.msg_vtl = ic->msg_vtl;
	} else {
		c.interrupt_page = ic->interrupt_page;
		c.msg_sint = VMBUS_MESSAGE_SINT;
	}
	if (h->ops.contact) {
		rc = h->ops.contact(h->ctx, &c);
		if (rc < 0) {
			int src = vmbus_build_version_response(
				buf, sizeof(buf), false, VMBUS_CONNECTION_FAILED_UNKNOWN_FAILURE, 0,
				&len);

			if (src == 0)
				send_msg(h, buf, len);
			return rc;
		}
	}

	h->connected = true;
	h->offers_requested = false;
	h->version = v;
	/*
	 * From 5.0 the field names the connection id for everything the guest
	 * posts from now on (it reached us on id 4). Below 5.0 Linux ignores it;
	 * like OpenVMM we echo the version there.
	 */
	rc = vmbus_build_version_response(buf, sizeof(buf), true, VMBUS_CONNECTION_SUCCESSFUL,
					  v >= VMBUS_VERSION_WIN10_V5 ? h->cfg.msg_conn_id : v,
					  &len);
	return rc ? rc : send_msg(h, buf, len);
}

static int on_request_offers(struct vmbus_host *h, const struct vmbus_msg *m)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int err = 0;

	(void)m;
	if (h->offers_requested)
		return -EPROTO;
	h->offers_requested = true;
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++) {
		struct host_chan *ch = h->chans[relid];

		if (ch && !ch->rescinded)
			first_err(&err, send_offer(h, ch));
	}
	first_err(&err, vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_ALLOFFERS_DELIVERED, &len));
	if (err == 0)
		err = send_msg(h, buf, len);
	return err;
}

/* Answers a GPADL_HEADER (or the GPADL it started) with failure. */
static int gpadl_fail(struct vmbus_host *h, uint32_t relid, uint32_t id, int err)
{
	send_gpadl_created(h, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
	return err;
}

/* All words are in: check the ranges, let the host map it, answer. */
static int gpadl_complete(struct vmbus_host *h, struct host_gpadl *g)
{
	struct vmbus_gpadl_range_info *ranges = NULL;
	struct vmbus_host_gpadl desc;
	uint32_t relid = g->relid, id = g->id, npfns = 0, w = 0;
	uint64_t *pfns = NULL;
	int rc;

	rc = vmbus_gpa_ranges_check(g->words, g->total_words, g->rangecount, &npfns);
	if (rc < 0)
		goto fail;
	if (npfns > h->cfg.max_gpadl_pfns) {
		rc = -ENOSPC;
		goto fail;
	}
	ranges = calloc(g->rangecount, sizeof(*ranges));
	pfns = calloc(npfns, sizeof(*pfns));
	if (!ranges || !pfns) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Split the buffer into descriptors and one flat PFN list. */
	for (uint32_t r = 0, p = 0; r < g->rangecount; r++) {
		uint64_t d = g->words[w++];

		ranges[r].byte_count = (uint32_t)d;
		ranges[r].byte_offset = (uint32_t)(d >> 32);
		ranges[r].first_pfn = p;
		ranges[r].npfns =
			(uint32_t)vmbus_range_pages(ranges[r].byte_offset, ranges[r].byte_count);
		memcpy(&pfns[p], &g->words[w], (size_t)ranges[r].npfns * sizeof(*pfns));
		p += ranges[r].npfns;
		w += ranges[r].npfns;
	}
	g->ring_ok = g->rangecount == 1 && ranges[0].byte_offset == 0 &&
		     (uint64_t)ranges[0].byte_count == (uint64_t)npfns << VMBUS_PAGE_SHIFT;

	desc.gpadl_id = id;
	desc.relid = relid;
	desc.nranges = g->rangecount;
	desc.ranges = ranges;
	desc.npfns = npfns;
	desc.pfns = pfns;
	rc = h->ops.gpadl_create(h->ctx, &desc);
	free(ranges);
	free(pfns);
	ranges = NULL;
	pfns = NULL;
	if (rc < 0)
		goto fail;

	free(g->words);
	g->words = NULL;
	g->npfns = npfns;
	g->state = GPADL_ESTABLISHED;
	return send_gpadl_created(h, relid, id, VMBUS_STATUS_SUCCESS);

fail:
	free(ranges);
	free(pfns);
	free_gpadl(h, g);
	return gpadl_fail(h, relid, id, rc);
}

static int on_gpadl_header(struct vmbus_host *h, const struct vmbus_msg *m)
{
	const struct vmbus_msg_gpadl_header *hd = &m->u.gpadl_header;
	uint32_t relid = hd->child_relid, id = hd->gpadl;
	struct host_chan *ch = guest_chan(h, relid);
	struct host_gpadl *g;

	if (!ch || ch->rescinded)
		return gpadl_fail(h, relid, id, -ENOENT);
	if (find_gpadl(h, id))
		return gpadl_fail(h, relid, id, -EEXIST);
	/* Valid ranges use one descriptor word each and a word per PFN. */
	if (m->total_words - hd->rangecount > h->cfg.max_gpadl_pfns)
		return gpadl_fail(h, relid, id, -ENOSPC);
	g = alloc_gpadl(h);
	if (!g)
		return gpadl_fail(h, relid, id, -ENOSPC);
	g->words = calloc(m->total_words, sizeof(*g->words));
	if (!g->words)
		return gpadl_fail(h, relid, id, -ENOMEM);
	g->state = GPADL_ASSEMBLING;
	g->id = id;
	g->relid = relid;
	g->rangecount = hd->rangecount;
	g->total_words = m->total_words;
	for (uint32_t i = 0; i < m->nwords; i++)
		g->words[i] = vmbus_msg_word(m, i);
	g->have_words = m->nwords;
	h->ngpadls++;
	if (g->have_words == g->total_words)
		return gpadl_complete(h, g);
	return 0;
}

static int on_gpadl_body(struct vmbus_host *h, const struct vmbus_msg *m)
{
	struct host_gpadl *g = find_gpadl(h, m->u.gpadl_body.gpadl);

	if (!g)
		return -ENOENT;
	if (g->state != GPADL_ASSEMBLING)
		return -EPROTO;
	if (m->nwords > g->total_words - g->have_words) {
		uint32_t relid = g->relid, id = g->id;

		/* More PFNs than announced: the whole GPADL is suspect. */
		free_gpadl(h, g);
		return gpadl_fail(h, relid, id, -EBADMSG);
	}
	for (uint32_t i = 0; i < m->nwords; i++)
		g->words[g->have_words + i] = vmbus_msg_word(m, i);
	g->have_words += m->nwords;
	if (g->have_words == g->total_words)
		return gpadl_complete(h, g);
	return 0;
}

static bool gpadl_backs_ring(const struct vmbus_host *h, const struct host_gpadl *g)
{
	const struct host_chan *ch = find_chan(h, g->relid);

	return ch && ch->state != VMBUS_HOST_CHAN_CLOSED && ch->ring_gpadl == g->id;
}

static int on_gpadl_teardown(struct vmbus_host *h, const struct vmbus_msg *m)
{
	const struct vmbus_msg_gpadl_teardown *t = &m->u.gpadl_teardown;
	struct host_gpadl *g = find_gpadl(h, t->gpadl);

	if (!g || g->relid != t->child_relid)
		return -ENOENT;
	if (g->state != GPADL_ESTABLISHED || g->teardown_pending)
		return -EPROTO;
	if (gpadl_backs_ring(h, g)) {
		/* The host may be using the ring right now: unmap at close. */
		g->teardown_pending = true;
		return 0;
	}
	return destroy_gpadl(h, g, true);
}

static int on_open(struct vmbus_host *h, const struct vmbus_msg *m)
{
	const struct vmbus_msg_open_channel *o = &m->u.open;
	struct host_chan *ch = guest_chan(h, o->child_relid);
	struct vmbus_host_open_req req;
	struct host_gpadl *g;
	int rc;

	if (!ch) {
		send_open_result(h, o->child_relid, o->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return -ENOENT;
	}
	if (ch->state != VMBUS_HOST_CHAN_CLOSED)
		return -EPROTO;
	if (ch->rescinded) {
		send_open_result(h, o->child_relid, o->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return -EPROTO;
	}
	g = find_gpadl(h, o->ringbuffer_gpadlhandle);
	/* Both rings need at least their control page. */
	if (!g || g->state != GPADL_ESTABLISHED || g->relid != ch->relid || !g->ring_ok ||
	    g->teardown_pending || o->downstream_ringbuffer_pageoffset == 0 ||
	    o->downstream_ringbuffer_pageoffset >= g->npfns) {
		send_open_result(h, o->child_relid, o->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return -EINVAL;
	}

	memset(&req, 0, sizeof(req));
	req.relid = ch->relid;
	req.open_id = o->openid;
	req.ring_gpadl = g->id;
	req.ring_pages = g->npfns;
	req.downstream_offset = o->downstream_ringbuffer_pageoffset;
	req.target_vp = o->target_vp;
	memcpy(req.user_data, o->userdata, sizeof(req.user_data));

	ch->state = VMBUS_HOST_CHAN_OPENING;
	ch->open_id = o->openid;
	ch->ring_gpadl = g->id;
	ch->target_vp = o->target_vp;
	rc = h->ops.open(h->ctx, &req);
	/* The callback may already have completed the open itself. */
	if (rc < 0 && ch->state == VMBUS_HOST_CHAN_OPENING) {
		ch->state = VMBUS_HOST_CHAN_CLOSED;
		send_open_result(h, ch->relid, ch->open_id, VMBUS_STATUS_UNSUCCESSFUL);
	}
	return rc < 0 ? rc : 0;
}

static int on_close(struct vmbus_host *h, const struct vmbus_msg *m)
{
	struct host_chan *ch = guest_chan(h, m->u.close.child_relid);

	if (!ch)
		return -ENOENT;
	if (ch->state == VMBUS_HOST_CHAN_CLOSED)
		return -EPROTO;
	return close_chan(h, ch, true);
}

static int on_relid_released(struct vmbus_host *h, const struct vmbus_msg *m)
{
	uint32_t relid = m->u.relid_released.child_relid;
	struct host_chan *ch = guest_chan(h, relid);

	if (!ch)
		return -ENOENT;
	if (!ch->rescinded)
		return -EPROTO;
	/* Linux skips close and teardown for rescinded channels; clean up. */
	if (ch->state != VMBUS_HOST_CHAN_CLOSED)
		close_chan(h, ch, false);
	drop_gpadls(h, relid);
	free(ch);
	h->chans[relid] = NULL;
	return 0;
}

static int on_unload(struct vmbus_host *h, const struct vmbus_msg *m)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	(void)m;
	drop_connection(h);
	if (h->ops.unload)
		h->ops.unload(h->ctx);
	rc = vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_UNLOAD_RESPONSE, &len);
	return rc ? rc : send_msg(h, buf, len);
}

static int on_modify(struct vmbus_host *h, const struct vmbus_msg *m)
{
	const struct vmbus_msg_modifychannel *mc = &m->u.modify;
	struct host_chan *ch = guest_chan(h, mc->child_relid);
	bool answer = h->version >= VMBUS_VERSION_WIN10_V5_3;
	uint32_t status = VMBUS_STATUS_SUCCESS;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int err = 0;

	if (h->version < VMBUS_VERSION_WIN10_V4_1)
		return -EPROTO;
	if (!ch || ch->state != VMBUS_HOST_CHAN_OPEN) {
		err = ch ? -EPROTO : -ENOENT;
		status = VMBUS_STATUS_UNSUCCESSFUL;
	} else {
		if (h->ops.modify)
			status = h->ops.modify(h->ctx, ch->relid, mc->target_vp);
		if (status == VMBUS_STATUS_SUCCESS)
			ch->target_vp = mc->target_vp;
	}
	if (answer) {
		int rc = vmbus_build_modify_response(buf, sizeof(buf), mc->child_relid, status,
						     &len);

		first_err(&err, rc ? rc : send_msg(h, buf, len));
	}
	return err;
}

/*
 * Second-level dispatch, by type, after vmbus_msg_parse() has checked length
 * and direction. Only guest-to-host types have handlers.
 */
struct host_handler {
	int (*fn)(struct vmbus_host *h, const struct vmbus_msg *m);
	bool needs_contact;
};

static const struct host_handler host_handlers[VMBUS_MSG_COUNT] = {
	[VMBUS_MSG_INITIATE_CONTACT] = { on_initiate_contact, false },
	[VMBUS_MSG_REQUESTOFFERS] = { on_request_offers, true },
	[VMBUS_MSG_OPENCHANNEL] = { on_open, true },
	[VMBUS_MSG_CLOSECHANNEL] = { on_close, true },
	[VMBUS_MSG_GPADL_HEADER] = { on_gpadl_header, true },
	[VMBUS_MSG_GPADL_BODY] = { on_gpadl_body, true },
	[VMBUS_MSG_GPADL_TEARDOWN] = { on_gpadl_teardown, true },
	[VMBUS_MSG_RELID_RELEASED] = { on_relid_released, true },
	[VMBUS_MSG_UNLOAD] = { on_unload, true },
	[VMBUS_MSG_MODIFYCHANNEL] = { on_modify, true },
};

static int host_rx(struct vmbus_host *h, bool check_conn, uint32_t conn_id, const void *msg,
		   size_t len)
{
	const struct host_handler *hd;
	struct vmbus_msg m;
	int rc;

	if (!h)
		return -EINVAL;
	rc = vmbus_msg_parse(msg, len, VMBUS_DIR_G2H, &m);
	if (rc < 0)
		return rc;
	hd = &host_handlers[m.type];
	if (!hd->fn)
		return -ENOMSG;
	if (check_conn) {
		uint32_t want;

		if (h->connected)
			want = msg_conn_id(h);
		else if (m.type == VMBUS_MSG_INITIATE_CONTACT)
			want = m.u.contact.vmbus_version_requested >= VMBUS_VERSION_WIN10_V5
				       ? VMBUS_MESSAGE_CONNECTION_ID_4
				       : VMBUS_MESSAGE_CONNECTION_ID;
		else
			return -ENOTCONN;
		if (conn_id != want)
			return -EXDEV;
	}
	if (hd->needs_contact && !h->connected)
		return -ENOTCONN;
	return hd->fn(h, &m);
}

/* ---- public API ---------------------------------------------------------- */

int vmbus_host_rx(struct vmbus_host *h, const void *msg, size_t len)
{
	return host_rx(h, false, 0, msg, len);
}

int vmbus_host_rx_conn(struct vmbus_host *h, uint32_t conn_id, const void *msg, size_t len)
{
	return host_rx(h, true, conn_id, msg, len);
}

bool vmbus_host_conn_id_valid(const struct vmbus_host *h, uint32_t conn_id)
{
	if (h->connected)
		return conn_id == msg_conn_id(h);
	if (conn_id == VMBUS_MESSAGE_CONNECTION_ID)
		return true;
	return conn_id == VMBUS_MESSAGE_CONNECTION_ID_4 &&
	       h->cfg.max_version >= VMBUS_VERSION_WIN10_V5;
}

int vmbus_host_create(const struct vmbus_host_config *cfg, const struct vmbus_host_ops *ops,
		      void *ctx, struct vmbus_host **out)
{
	struct vmbus_host *h;
	struct vmbus_host_config c;

	if (!ops || !out || !ops->send || !ops->gpadl_create || !ops->open)
		return -EINVAL;
	if (cfg)
		c = *cfg;
	else
		memset(&c, 0, sizeof(c));
	if (!c.max_version)
		c.max_version = VMBUS_VERSION_WIN10_V5_3;
	if (!c.min_version)
		c.min_version = VMBUS_VERSION_WIN8;
	if (!c.msg_conn_id)
		c.msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
	if (!c.event_conn_id_base)
		c.event_conn_id_base = VMBUS_HOST_DEFAULT_EVENT_CONN_ID;
	if (!c.max_relid)
		c.max_relid = VMBUS_MAX_RELID;
	if (!c.max_gpadls)
		c.max_gpadls = VMBUS_HOST_DEFAULT_MAX_GPADLS;
	if (!c.max_gpadl_pfns)
		c.max_gpadl_pfns = VMBUS_HOST_DEFAULT_MAX_GPADL_PFNS;
	if (!version_known(c.max_version) || !version_known(c.min_version) ||
	    c.min_version > c.max_version || c.max_relid > VMBUS_MAX_RELID ||
	    c.event_conn_id_base > UINT32_MAX - VMBUS_MAX_RELID)
		return -EINVAL;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->chans = calloc((size_t)c.max_relid + 1, sizeof(*h->chans));
	h->gpadls = calloc(c.max_gpadls, sizeof(*h->gpadls));
	if (!h->chans || !h->gpadls) {
		free(h->chans);
		free(h->gpadls);
		free(h);
		return -ENOMEM;
	}
	h->cfg = c;
	h->ops = *ops;
	h->ctx = ctx;
	*out = h;
	return 0;
}

void vmbus_host_destroy(struct vmbus_host *h)
{
	if (!h)
		return;
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++)
		free(h->gpadls[i].words);
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++)
		free(h->chans[relid]);
	free(h->gpadls);
	free(h->chans);
	free(h);
}

int vmbus_host_offer_add(struct vmbus_host *h, const struct vmbus_host_offer *offer,
			 uint32_t *relid, uint32_t *conn_id)
{
	struct host_chan *ch;
	uint32_t r;

	if (!h || !offer || !relid)
		return -EINVAL;
	for (r = 1; r <= h->cfg.max_relid; r++)
		if (!h->chans[r])
			break;
	if (r > h->cfg.max_relid)
		return -ENOSPC;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->offer = *offer;
	ch->relid = r;
	ch->conn_id = h->cfg.event_conn_id_base + r;
	ch->state = VMBUS_HOST_CHAN_CLOSED;
	h->chans[r] = ch;
	*relid = r;
	if (conn_id)
		*conn_id = ch->conn_id;
	/* After REQUESTOFFERS a new offer goes out at once. */
	if (h->connected && h->offers_requested)
		return send_offer(h, ch);
	return 0;
}

int vmbus_host_rescind(struct vmbus_host *h, uint32_t relid)
{
	struct host_chan *ch;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!h)
		return -EINVAL;
	ch = find_chan(h, relid);
	if (!ch)
		return -ENOENT;
	if (ch->rescinded)
		return -EALREADY;
	if (!ch->offered) {
		/* The guest never heard of it: nothing to wait for. */
		free(ch);
		h->chans[relid] = NULL;
		return 0;
	}
	ch->rescinded = true;
	rc = vmbus_build_rescind(buf, sizeof(buf), relid, &len);
	return rc ? rc : send_msg(h, buf, len);
}

int vmbus_host_open_complete(struct vmbus_host *h, uint32_t relid, uint32_t status)
{
	struct host_chan *ch;

	if (!h)
		return -EINVAL;
	ch = find_chan(h, relid);
	if (!ch)
		return -ENOENT;
	if (ch->state != VMBUS_HOST_CHAN_OPENING)
		return -EPROTO;
	ch->state = status == VMBUS_STATUS_SUCCESS ? VMBUS_HOST_CHAN_OPEN : VMBUS_HOST_CHAN_CLOSED;
	return send_open_result(h, relid, ch->open_id, status);
}

void vmbus_host_reset(struct vmbus_host *h)
{
	if (h)
		drop_connection(h);
}

int vmbus_host_version(const struct vmbus_host *h, uint32_t *version)
{
	if (!h || !version)
		return -EINVAL;
	if (!h->connected)
		return -ENOTCONN;
	*version = h->version;
	return 0;
}

int vmbus_host_chan_info(const struct vmbus_host *h, uint32_t relid,
			 struct vmbus_host_chan_info *info)
{
	const struct host_chan *ch;

	if (!h || !info)
		return -EINVAL;
	ch = find_chan(h, relid);
	if (!ch)
		return -ENOENT;
	memset(info, 0, sizeof(*info));
	info->conn_id = ch->conn_id;
	info->offered = ch->offered;
	info->rescinded = ch->rescinded;
	info->state = ch->state;
	info->ring_gpadl = ch->ring_gpadl;
	info->target_vp = ch->target_vp;
	return 0;
}

int vmbus_host_gpadl_count(const struct vmbus_host *h, uint32_t *established, uint32_t *pending)
{
	uint32_t e = 0, p = 0;

	if (!h)
		return -EINVAL;
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++) {
		if (h->gpadls[i].state == GPADL_ESTABLISHED)
			e++;
		else if (h->gpadls[i].state == GPADL_ASSEMBLING)
			p++;
	}
	if (established)
		*established = e;
	if (pending)
		*pending = p;
	return 0;
}

/* ---- checkpoint ---------------------------------------------------------- */

#define HOST_CKPT_MAGIC	  0x54534f48u /* "HOST" */
#define HOST_CKPT_VERSION 1u

/* A bounded little-endian writer/reader; both stop at the first overrun. */
struct ckw {
	uint8_t *buf;
	size_t cap, len;
};

static void ckw_put(struct ckw *w, const void *src, size_t n)
{
	if (w->buf && w->len + n <= w->cap)
		memcpy(w->buf + w->len, src, n);
	w->len += n;
}

static void ckw_u32(struct ckw *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	ckw_put(w, b, 4);
}

static void ckw_u64(struct ckw *w, uint64_t v)
{
	ckw_u32(w, (uint32_t)v);
	ckw_u32(w, (uint32_t)(v >> 32));
}

struct ckr {
	const uint8_t *buf;
	size_t len, pos;
	bool bad;
};

static void ckr_get(struct ckr *r, void *dst, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		memset(dst, 0, n);
		return;
	}
	memcpy(dst, r->buf + r->pos, n);
	r->pos += n;
}

static uint32_t ckr_u32(struct ckr *r)
{
	uint8_t b[4];

	ckr_get(r, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t ckr_u64(struct ckr *r)
{
	uint64_t lo = ckr_u32(r);

	return lo | (uint64_t)ckr_u32(r) << 32;
}

int vmbus_host_save(const struct vmbus_host *h, void *buf, size_t cap, size_t *len)
{
	struct ckw w = { .buf = buf, .cap = cap };
	uint32_t nchans = 0;

	if (!h || !len)
		return -EINVAL;
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++)
		nchans += h->chans[relid] != NULL;
	ckw_u32(&w, HOST_CKPT_MAGIC);
	ckw_u32(&w, HOST_CKPT_VERSION);
	ckw_u32(&w, h->connected);
	ckw_u32(&w, h->offers_requested);
	ckw_u32(&w, h->version);
	ckw_u32(&w, nchans);
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++) {
		const struct host_chan *ch = h->chans[relid];

		if (!ch)
			continue;
		ckw_u32(&w, ch->relid);
		ckw_u32(&w, ch->conn_id);
		ckw_put(&w, ch->offer.if_type.b, 16);
		ckw_put(&w, ch->offer.if_instance.b, 16);
		ckw_u32(&w, (uint32_t)ch->offered | (uint32_t)ch->rescinded << 1);
		ckw_u32(&w, (uint32_t)ch->state);
		ckw_u32(&w, ch->open_id);
		ckw_u32(&w, ch->ring_gpadl);
		ckw_u32(&w, ch->target_vp);
	}
	ckw_u32(&w, h->ngpadls);
	for (uint32_t i = 0; i < h->cfg.max_gpadls; i++) {
		const struct host_gpadl *g = &h->gpadls[i];

		if (g->state == GPADL_FREE)
			continue;
		ckw_u32(&w, (uint32_t)g->state);
		ckw_u32(&w, g->id);
		ckw_u32(&w, g->relid);
		ckw_u32(&w, g->rangecount);
		ckw_u32(&w, (uint32_t)g->ring_ok | (uint32_t)g->teardown_pending << 1);
		/* The word counts describe assembly only; an established
		 * GPADL keeps its header's counts, which mean nothing once
		 * the words are gone, so they are written as zero. */
		if (g->state == GPADL_ASSEMBLING) {
			ckw_u32(&w, g->total_words);
			ckw_u32(&w, g->have_words);
		} else {
			ckw_u32(&w, 0);
			ckw_u32(&w, 0);
		}
		ckw_u32(&w, g->npfns);
		if (g->state == GPADL_ASSEMBLING)
			for (uint32_t k = 0; k < g->have_words; k++)
				ckw_u64(&w, g->words[k]);
	}
	*len = w.len;
	return buf && w.len > cap ? -ENOSPC : 0;
}

/* One GPADL of a checkpoint, checked against the configuration; words
 * (assembling only) are read into a new allocation. */
static int restore_gpadl(const struct vmbus_host *h, struct ckr *r, struct host_gpadl *g)
{
	uint32_t flags;

	memset(g, 0, sizeof(*g));
	g->state = (int)ckr_u32(r);
	g->id = ckr_u32(r);
	g->relid = ckr_u32(r);
	g->rangecount = (uint16_t)ckr_u32(r);
	flags = ckr_u32(r);
	g->ring_ok = flags & 1;
	g->teardown_pending = flags & 2;
	g->total_words = ckr_u32(r);
	g->have_words = ckr_u32(r);
	g->npfns = ckr_u32(r);
	if (r->bad || flags > 3)
		return -EBADMSG;
	if (!guest_chan(h, g->relid) || g->rangecount == 0)
		return -EINVAL;
	if (g->state == GPADL_ESTABLISHED) {
		if (g->npfns == 0 || g->npfns > h->cfg.max_gpadl_pfns || g->total_words ||
		    g->have_words)
			return -EBADMSG;
		return 0;
	}
	if (g->state != GPADL_ASSEMBLING || g->npfns || g->ring_ok || g->teardown_pending ||
	    g->total_words <= g->rangecount ||
	    g->total_words - g->rangecount > h->cfg.max_gpadl_pfns ||
	    g->have_words >= g->total_words || g->have_words == 0)
		return -EBADMSG;
	if ((size_t)g->have_words * 8 > r->len - r->pos)
		return -EBADMSG;
	g->words = calloc(g->total_words, sizeof(*g->words));
	if (!g->words)
		return -ENOMEM;
	for (uint32_t k = 0; k < g->have_words; k++)
		g->words[k] = ckr_u64(r);
	return r->bad ? -EBADMSG : 0;
}

int vmbus_host_restore(struct vmbus_host *h, const void *buf, size_t len)
{
	struct ckr r = { .buf = buf, .len = len };
	struct host_chan *saved = NULL;
	struct host_gpadl *gpadls = NULL;
	uint32_t connected, requested, version, nchans, noffers = 0, ngpadls;
	int rc = -EBADMSG;

	if (!h || !buf)
		return -EINVAL;
	if (h->connected || h->ngpadls)
		return -EINVAL;
	if (ckr_u32(&r) != HOST_CKPT_MAGIC || ckr_u32(&r) != HOST_CKPT_VERSION)
		return -EBADMSG;
	connected = ckr_u32(&r);
	requested = ckr_u32(&r);
	version = ckr_u32(&r);
	nchans = ckr_u32(&r);
	if (r.bad || connected > 1 || requested > 1)
		return -EBADMSG;
	if (connected ? !version_known(version) || version > h->cfg.max_version ||
				version < h->cfg.min_version
		      : version || requested)
		return -EBADMSG;
	for (uint32_t relid = 1; relid <= h->cfg.max_relid; relid++)
		noffers += h->chans[relid] != NULL;
	/* Every offer exactly once, same identity: the devices are the same. */
	if (nchans != noffers)
		return -EINVAL;
	saved = calloc(nchans ? nchans : 1, sizeof(*saved));
	if (!saved)
		return -ENOMEM;
	for (uint32_t i = 0; i < nchans; i++) {
		struct host_chan *s = &saved[i], *cur;
		uint32_t flags;

		s->relid = ckr_u32(&r);
		s->conn_id = ckr_u32(&r);
		ckr_get(&r, s->offer.if_type.b, 16);
		ckr_get(&r, s->offer.if_instance.b, 16);
		flags = ckr_u32(&r);
		s->state = (int)ckr_u32(&r);
		s->open_id = ckr_u32(&r);
		s->ring_gpadl = ckr_u32(&r);
		s->target_vp = ckr_u32(&r);
		s->offered = flags & 1;
		s->rescinded = flags & 2;
		if (r.bad || flags > 3)
			goto out;
		cur = find_chan(h, s->relid);
		if (!cur || cur->conn_id != s->conn_id ||
		    memcmp(&cur->offer.if_type, &s->offer.if_type, 16) ||
		    memcmp(&cur->offer.if_instance, &s->offer.if_instance, 16)) {
			rc = -EINVAL;
			goto out;
		}
		for (uint32_t k = 0; k < i; k++)
			if (saved[k].relid == s->relid)
				goto out;
		/* Opens complete inside the open callback: never pending at
		 * rest. Only an offered channel of a connection can be open. */
		if ((s->state != VMBUS_HOST_CHAN_CLOSED && s->state != VMBUS_HOST_CHAN_OPEN) ||
		    (s->offered && !connected) ||
		    (s->state != VMBUS_HOST_CHAN_CLOSED && !s->offered) ||
		    (s->rescinded && !s->offered))
			goto out;
	}
	ngpadls = ckr_u32(&r);
	if (r.bad || ngpadls > h->cfg.max_gpadls || (ngpadls && !connected))
		goto out;
	gpadls = calloc(ngpadls ? ngpadls : 1, sizeof(*gpadls));
	if (!gpadls) {
		rc = -ENOMEM;
		goto out;
	}
	/* Offered flags first: GPADLs may only name offered channels. */
	for (uint32_t i = 0; i < nchans; i++)
		h->chans[saved[i].relid]->offered = saved[i].offered;
	for (uint32_t i = 0; i < ngpadls; i++) {
		rc = restore_gpadl(h, &r, &gpadls[i]);
		if (rc)
			goto out_offers;
		rc = -EBADMSG;
		for (uint32_t k = 0; k < i; k++)
			if (gpadls[k].id == gpadls[i].id)
				goto out_offers;
	}
	if (r.pos != r.len)
		goto out_offers;
	/* An open channel's ring is one of its own established ring GPADLs. */
	for (uint32_t i = 0; i < nchans; i++) {
		const struct host_chan *s = &saved[i];
		bool found = false;

		for (uint32_t k = 0; k < ngpadls; k++) {
			const struct host_gpadl *g = &gpadls[k];

			if (g->id == s->ring_gpadl && g->relid == s->relid &&
			    g->state == GPADL_ESTABLISHED && g->ring_ok && g->npfns > 1)
				found = true;
		}
		if (s->state == VMBUS_HOST_CHAN_OPEN && !found)
			goto out_offers;
	}
	for (uint32_t i = 0; i < ngpadls; i++)
		if (gpadls[i].teardown_pending && !gpadl_backs_ring(h, &gpadls[i])) {
			bool backs = false;

			for (uint32_t k = 0; k < nchans; k++)
				if (saved[k].state == VMBUS_HOST_CHAN_OPEN &&
				    saved[k].ring_gpadl == gpadls[i].id &&
				    saved[k].relid == gpadls[i].relid)
					backs = true;
			if (!backs)
				goto out_offers;
		}

	/* All checked: apply. */
	for (uint32_t i = 0; i < nchans; i++) {
		struct host_chan *cur = h->chans[saved[i].relid];

		cur->offered = saved[i].offered;
		cur->rescinded = saved[i].rescinded;
		cur->state = saved[i].state;
		cur->open_id = saved[i].open_id;
		cur->ring_gpadl = saved[i].ring_gpadl;
		cur->target_vp = saved[i].target_vp;
	}
	for (uint32_t i = 0; i < ngpadls; i++)
		h->gpadls[i] = gpadls[i];
	h->ngpadls = ngpadls;
	h->connected = connected;
	h->offers_requested = requested;
	h->version = version;
	free(gpadls);
	free(saved);
	return 0;

out_offers:
	for (uint32_t i = 0; i < nchans; i++)
		h->chans[saved[i].relid]->offered = false;
	for (uint32_t i = 0; gpadls && i < ngpadls; i++)
		free(gpadls[i].words);
out:
	free(gpadls);
	free(saved);
	return rc;
}
