// SPDX-License-Identifier: MIT
/*
 * Guest VMBus client: connects, records offers, creates GPADLs, opens and
 * closes channels, as a pure state machine over caller storage.
 *
 * Built into freestanding guest images: no allocation, no libc beyond
 * mem*(), no floating point. The guest cannot block on a reply here; it
 * feeds host messages to vmbus_client_rx() and polls the status getters.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/vmbus_chan.h"
#include "fab/vmbus_proto.h"

/* vmbus_client_chan.open_state */
#define OPEN_CLOSED  0
#define OPEN_PENDING 1
#define OPEN_OPEN    2
#define OPEN_REFUSED 3

/* vmbus_client_chan.modify_state */
#define MODIFY_IDLE    0
#define MODIFY_PENDING 1
#define MODIFY_REFUSED 2

/* vmbus_client_gpadl.state */
#define GPADL_FREE     0
#define GPADL_CREATING 1
#define GPADL_CREATED  2
#define GPADL_REFUSED  3
#define GPADL_TEARDOWN 4

/* Linux starts its handles here too; any non-zero id would do. */
#define FIRST_GPADL_ID 0xe1e10u

static bool connected(const struct vmbus_client *c)
{
	return c->state == VMBUS_CLIENT_CONNECTED || c->state == VMBUS_CLIENT_OFFERS ||
	       c->state == VMBUS_CLIENT_READY;
}

static struct vmbus_client_chan *find_chan(const struct vmbus_client *c, uint32_t relid)
{
	if (relid == 0)
		return NULL;
	for (size_t i = 0; i < c->nchans; i++)
		if (c->chans[i].relid == relid)
			return &c->chans[i];
	return NULL;
}

static struct vmbus_client_gpadl *find_gpadl(const struct vmbus_client *c, uint32_t id)
{
	if (id == 0)
		return NULL;
	for (size_t i = 0; i < c->ngpadls; i++)
		if (c->gpadls[i].state != GPADL_FREE && c->gpadls[i].id == id)
			return &c->gpadls[i];
	return NULL;
}

static void forget_all(struct vmbus_client *c)
{
	memset(c->chans, 0, c->nchans * sizeof(*c->chans));
	memset(c->gpadls, 0, c->ngpadls * sizeof(*c->gpadls));
}

static int post(struct vmbus_client *c, const void *buf, size_t len)
{
	return c->ops.send(c->ctx, c->post_conn_id, buf, len);
}

/* ---- connection ---------------------------------------------------------- */

/*
 * Sends INITIATE_CONTACT for the first configured version at or after index
 * i of vmbus_version_list[]. A post the hypervisor refuses (no such
 * connection id: a host without 5.0 has no id 4) moves on at once.
 */
static int contact_from(struct vmbus_client *c, size_t i)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	for (; i < VMBUS_VERSION_COUNT; i++) {
		uint32_t v = vmbus_version_list[i];

		if (v > c->cfg.max_version || v < c->cfg.min_version)
			continue;
		rc = vmbus_build_initiate_contact(buf, sizeof(buf), v, c->cfg.target_vcpu,
						  c->cfg.interrupt_page, c->cfg.msg_sint,
						  c->cfg.msg_vtl, c->cfg.monitor_page1,
						  c->cfg.monitor_page2, &len);
		if (rc < 0)
			return rc;
		c->version = v;
		c->state = VMBUS_CLIENT_CONTACTING;
		c->post_conn_id = v >= VMBUS_VERSION_WIN10_V5 ? VMBUS_MESSAGE_CONNECTION_ID_4
							      : VMBUS_MESSAGE_CONNECTION_ID;
		rc = post(c, buf, len);
		if (rc == -ECONNREFUSED)
			continue;
		if (rc < 0) {
			c->state = VMBUS_CLIENT_IDLE;
			c->version = 0;
		}
		return rc;
	}
	c->state = VMBUS_CLIENT_REFUSED;
	c->version = 0;
	return -ECONNREFUSED;
}

static int on_version_response(struct vmbus_client *c, const struct vmbus_msg *m)
{
	const struct vmbus_msg_version_response *vr = &m->u.version;
	size_t i;
	int rc;

	if (c->state != VMBUS_CLIENT_CONTACTING)
		return -EPROTO;
	if (vr->version_supported) {
		c->state = VMBUS_CLIENT_CONNECTED;
		if (c->version >= VMBUS_VERSION_WIN10_V5) {
			/* The host names where the rest goes; zero would be
			 * nonsense, so stay on the contact id then. */
			if (vr->msg_conn_id)
				c->post_conn_id = vr->msg_conn_id;
		} else {
			c->post_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
		}
		return 0;
	}
	if (vr->connection_state != VMBUS_CONNECTION_SUCCESSFUL) {
		/* The host understood the version and still said no. */
		c->refused_state = vr->connection_state;
		c->state = VMBUS_CLIENT_REFUSED;
		c->version = 0;
		return 0;
	}
	for (i = 0; i < VMBUS_VERSION_COUNT; i++)
		if (vmbus_version_list[i] == c->version)
			break;
	rc = contact_from(c, i + 1);
	/* Running out of versions is an outcome, reported by the getters. */
	return rc == -ECONNREFUSED ? 0 : rc;
}

/* ---- offers --------------------------------------------------------------- */

static int on_offer(struct vmbus_client *c, const struct vmbus_msg *m)
{
	const struct vmbus_msg_offer_channel *o = &m->u.offer;
	struct vmbus_client_chan *ch = NULL;

	if (c->state != VMBUS_CLIENT_OFFERS && c->state != VMBUS_CLIENT_READY)
		return -EPROTO;
	if (o->child_relid == 0 || o->child_relid > VMBUS_MAX_RELID)
		return -EINVAL;
	if (find_chan(c, o->child_relid))
		return -EEXIST;
	for (size_t i = 0; i < c->nchans; i++) {
		if (c->chans[i].relid == 0) {
			ch = &c->chans[i];
			break;
		}
	}
	if (!ch)
		return -ENOSPC;
	memset(ch, 0, sizeof(*ch));
	ch->if_type = o->offer.if_type;
	ch->if_instance = o->offer.if_instance;
	ch->relid = o->child_relid;
	ch->conn_id = o->connection_id;
	ch->flags = o->offer.chn_flags;
	ch->mmio_megabytes = o->offer.mmio_megabytes;
	ch->sub_channel_index = o->offer.sub_channel_index;
	ch->monitor_id = o->monitorid;
	ch->monitor_allocated = (o->monitor_allocated & VMBUS_OFFER_MONITOR_ALLOCATED) != 0;
	ch->dedicated_interrupt =
		(o->is_dedicated_interrupt & VMBUS_OFFER_DEDICATED_INTERRUPT) != 0;
	memcpy(ch->user_def, o->offer.u.std.user_def, sizeof(ch->user_def));
	ch->open_state = OPEN_CLOSED;
	return 0;
}

static int on_rescind(struct vmbus_client *c, const struct vmbus_msg *m)
{
	struct vmbus_client_chan *ch = find_chan(c, m->u.rescind.child_relid);

	if (!ch)
		return -ENOENT;
	if (ch->rescinded)
		return -EPROTO;
	/* The driver notices, closes and releases; nothing else changes. */
	ch->rescinded = true;
	return 0;
}

static int on_alloffers(struct vmbus_client *c, const struct vmbus_msg *m)
{
	(void)m;
	if (c->state != VMBUS_CLIENT_OFFERS)
		return -EPROTO;
	c->state = VMBUS_CLIENT_READY;
	return 0;
}

/* ---- results ------------------------------------------------------------- */

static int on_open_result(struct vmbus_client *c, const struct vmbus_msg *m)
{
	const struct vmbus_msg_open_result *r = &m->u.open_result;
	struct vmbus_client_chan *ch = find_chan(c, r->child_relid);

	if (!ch)
		return -ENOENT;
	if (ch->open_state != OPEN_PENDING || ch->open_id != r->openid)
		return -EPROTO;
	ch->open_status = r->status;
	ch->open_state = r->status == VMBUS_STATUS_SUCCESS ? OPEN_OPEN : OPEN_REFUSED;
	return 0;
}

static int on_gpadl_created(struct vmbus_client *c, const struct vmbus_msg *m)
{
	const struct vmbus_msg_gpadl_created *r = &m->u.gpadl_created;
	struct vmbus_client_gpadl *g = find_gpadl(c, r->gpadl);

	if (!g || g->relid != r->child_relid)
		return -ENOENT;
	if (g->state != GPADL_CREATING)
		return -EPROTO;
	g->status = r->creation_status;
	g->state = r->creation_status == VMBUS_STATUS_SUCCESS ? GPADL_CREATED : GPADL_REFUSED;
	return 0;
}

static int on_gpadl_torndown(struct vmbus_client *c, const struct vmbus_msg *m)
{
	struct vmbus_client_gpadl *g = find_gpadl(c, m->u.gpadl_torndown.gpadl);

	if (!g)
		return -ENOENT;
	if (g->state != GPADL_TEARDOWN)
		return -EPROTO;
	memset(g, 0, sizeof(*g));
	return 0;
}

static int on_modify_response(struct vmbus_client *c, const struct vmbus_msg *m)
{
	const struct vmbus_msg_modifychannel_response *r = &m->u.modify_response;
	struct vmbus_client_chan *ch = find_chan(c, r->child_relid);

	if (!ch)
		return -ENOENT;
	if (ch->modify_state != MODIFY_PENDING)
		return -EPROTO;
	ch->modify_status = r->status;
	ch->modify_state = r->status == VMBUS_STATUS_SUCCESS ? MODIFY_IDLE : MODIFY_REFUSED;
	return 0;
}

static int on_unload_response(struct vmbus_client *c, const struct vmbus_msg *m)
{
	(void)m;
	if (c->state != VMBUS_CLIENT_UNLOADING)
		return -EPROTO;
	forget_all(c);
	c->state = VMBUS_CLIENT_IDLE;
	c->version = 0;
	c->post_conn_id = 0;
	return 0;
}

/* Second-level dispatch after vmbus_msg_parse(); host-to-guest types only. */
struct client_handler {
	int (*fn)(struct vmbus_client *c, const struct vmbus_msg *m);
	bool needs_connection;
};

static const struct client_handler client_handlers[VMBUS_MSG_COUNT] = {
	[VMBUS_MSG_VERSION_RESPONSE] = { on_version_response, false },
	[VMBUS_MSG_OFFERCHANNEL] = { on_offer, true },
	[VMBUS_MSG_RESCIND_CHANNELOFFER] = { on_rescind, true },
	[VMBUS_MSG_ALLOFFERS_DELIVERED] = { on_alloffers, true },
	[VMBUS_MSG_OPENCHANNEL_RESULT] = { on_open_result, true },
	[VMBUS_MSG_GPADL_CREATED] = { on_gpadl_created, true },
	[VMBUS_MSG_GPADL_TORNDOWN] = { on_gpadl_torndown, true },
	[VMBUS_MSG_MODIFYCHANNEL_RESPONSE] = { on_modify_response, true },
	[VMBUS_MSG_UNLOAD_RESPONSE] = { on_unload_response, false },
};

int vmbus_client_rx(struct vmbus_client *c, const void *msg, size_t len)
{
	const struct client_handler *hd;
	struct vmbus_msg m;
	int rc;

	if (!c)
		return -EINVAL;
	rc = vmbus_msg_parse(msg, len, VMBUS_DIR_H2G, &m);
	if (rc < 0)
		return rc;
	hd = &client_handlers[m.type];
	if (!hd->fn)
		return -ENOMSG;
	if (c->state == VMBUS_CLIENT_UNLOADING && m.type != VMBUS_MSG_UNLOAD_RESPONSE)
		return 0;
	if (hd->needs_connection && !connected(c))
		return -ENOTCONN;
	return hd->fn(c, &m);
}

/* ---- API ------------------------------------------------------------------ */

int vmbus_client_init(struct vmbus_client *c, const struct vmbus_client_config *cfg,
		      const struct vmbus_client_ops *ops, void *ctx,
		      struct vmbus_client_chan *chans, size_t nchans,
		      struct vmbus_client_gpadl *gpadls, size_t ngpadls)
{
	if (!c || !ops || !ops->send || (nchans && !chans) || (ngpadls && !gpadls))
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	if (cfg)
		c->cfg = *cfg;
	if (!c->cfg.max_version)
		c->cfg.max_version = VMBUS_VERSION_WIN10_V5_3;
	if (!c->cfg.min_version)
		c->cfg.min_version = VMBUS_VERSION_WIN8;
	if (!c->cfg.msg_sint)
		c->cfg.msg_sint = VMBUS_MESSAGE_SINT;
	if (c->cfg.min_version > c->cfg.max_version)
		return -EINVAL;
	c->ops = *ops;
	c->ctx = ctx;
	c->chans = chans;
	c->nchans = nchans;
	c->gpadls = gpadls;
	c->ngpadls = ngpadls;
	c->next_gpadl_id = FIRST_GPADL_ID;
	c->state = VMBUS_CLIENT_IDLE;
	forget_all(c);
	return 0;
}

int vmbus_client_connect(struct vmbus_client *c)
{
	if (!c)
		return -EINVAL;
	if (c->state != VMBUS_CLIENT_IDLE && c->state != VMBUS_CLIENT_REFUSED)
		return -EISCONN;
	c->refused_state = 0;
	forget_all(c);
	return contact_from(c, 0);
}

int vmbus_client_connect_status(const struct vmbus_client *c)
{
	switch (c->state) {
	case VMBUS_CLIENT_CONTACTING:
		return -EINPROGRESS;
	case VMBUS_CLIENT_REFUSED:
		return -ECONNREFUSED;
	case VMBUS_CLIENT_IDLE:
	case VMBUS_CLIENT_UNLOADING:
		return -ENOTCONN;
	default:
		return 0;
	}
}

int vmbus_client_state(const struct vmbus_client *c)
{
	return c->state;
}

uint32_t vmbus_client_version(const struct vmbus_client *c)
{
	return connected(c) ? c->version : 0;
}

uint32_t vmbus_client_msg_conn_id(const struct vmbus_client *c)
{
	return c->post_conn_id;
}

int vmbus_client_request_offers(struct vmbus_client *c)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!connected(c))
		return -ENOTCONN;
	if (c->state != VMBUS_CLIENT_CONNECTED)
		return -EPROTO;
	rc = vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_REQUESTOFFERS, &len);
	if (rc < 0)
		return rc;
	/* Offers may arrive while the send is still returning. */
	c->state = VMBUS_CLIENT_OFFERS;
	rc = post(c, buf, len);
	if (rc < 0)
		c->state = VMBUS_CLIENT_CONNECTED;
	return rc;
}

int vmbus_client_offers_status(const struct vmbus_client *c)
{
	if (c->state == VMBUS_CLIENT_READY)
		return 0;
	if (c->state == VMBUS_CLIENT_OFFERS || c->state == VMBUS_CLIENT_CONNECTED)
		return -EINPROGRESS;
	return -ENOTCONN;
}

int vmbus_client_offer(const struct vmbus_client *c, uint32_t relid,
		       const struct vmbus_client_chan **out)
{
	const struct vmbus_client_chan *ch = find_chan(c, relid);

	if (!ch)
		return -ENOENT;
	*out = ch;
	return 0;
}

int vmbus_client_find_offer(const struct vmbus_client *c, const struct vmbus_guid *if_type,
			    uint32_t after_relid, const struct vmbus_client_chan **out)
{
	const struct vmbus_client_chan *best = NULL;

	/* By relid, so the order does not depend on slot reuse. */
	for (size_t i = 0; i < c->nchans; i++) {
		const struct vmbus_client_chan *ch = &c->chans[i];

		if (ch->relid == 0 || ch->relid <= after_relid || ch->rescinded ||
		    !vmbus_guid_equal(&ch->if_type, if_type))
			continue;
		if (!best || ch->relid < best->relid)
			best = ch;
	}
	if (!best)
		return -ENOENT;
	*out = best;
	return 0;
}

int vmbus_client_gpadl_create(struct vmbus_client *c, uint32_t relid, const uint64_t *pfns,
			      uint32_t npfns, uint32_t *gpadl_id)
{
	struct vmbus_client_gpadl *g = NULL;
	struct vmbus_client_chan *ch;
	uint8_t buf[VMBUS_MSG_MAX];
	uint32_t id, used, off;
	size_t len;
	int rc;

	if (!c || !gpadl_id)
		return -EINVAL;
	if (!connected(c))
		return -ENOTCONN;
	ch = find_chan(c, relid);
	if (!ch)
		return -ENOENT;
	if (ch->rescinded)
		return -EPROTO;
	if (!pfns || npfns == 0 || npfns > VMBUS_GPADL_MAX_WIRE_PFNS)
		return -EINVAL;
	for (size_t i = 0; i < c->ngpadls; i++) {
		if (c->gpadls[i].state == GPADL_FREE) {
			g = &c->gpadls[i];
			break;
		}
	}
	if (!g)
		return -ENOSPC;
	/* Fewer slots than ids, so this ends; 0 is never handed out. */
	do {
		id = c->next_gpadl_id++;
	} while (id == 0 || find_gpadl(c, id));

	rc = vmbus_build_gpadl_header(buf, sizeof(buf), relid, id, pfns, npfns, &used, &len);
	if (rc < 0)
		return rc;
	g->id = id;
	g->relid = relid;
	g->status = 0;
	g->state = GPADL_CREATING;
	rc = post(c, buf, len);
	/* Then as many bodies as the rest needs, before any reply is expected. */
	for (off = used; rc == 0 && off < npfns; off += used) {
		rc = vmbus_build_gpadl_body(buf, sizeof(buf), id, pfns + off, npfns - off, &used,
					    &len);
		if (rc == 0)
			rc = post(c, buf, len);
	}
	if (rc < 0) {
		memset(g, 0, sizeof(*g));
		return rc;
	}
	*gpadl_id = id;
	return 0;
}

int vmbus_client_gpadl_status(const struct vmbus_client *c, uint32_t gpadl_id,
			      uint32_t *host_status)
{
	const struct vmbus_client_gpadl *g = find_gpadl(c, gpadl_id);

	if (!g)
		return -ENOENT;
	switch (g->state) {
	case GPADL_CREATED:
		return 0;
	case GPADL_REFUSED:
		if (host_status)
			*host_status = g->status;
		return -EIO;
	default:
		return -EINPROGRESS;
	}
}

int vmbus_client_gpadl_teardown(struct vmbus_client *c, uint32_t gpadl_id)
{
	struct vmbus_client_gpadl *g;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!c)
		return -EINVAL;
	g = find_gpadl(c, gpadl_id);
	if (!g)
		return -ENOENT;
	if (g->state == GPADL_REFUSED) {
		/* The host holds nothing for it. */
		memset(g, 0, sizeof(*g));
		return 0;
	}
	if (g->state != GPADL_CREATED)
		return -EINPROGRESS;
	if (!connected(c))
		return -ENOTCONN;
	rc = vmbus_build_gpadl_teardown(buf, sizeof(buf), g->relid, g->id, &len);
	if (rc < 0)
		return rc;
	g->state = GPADL_TEARDOWN;
	rc = post(c, buf, len);
	if (rc < 0)
		g->state = GPADL_CREATED;
	return rc;
}

int vmbus_client_open(struct vmbus_client *c, uint32_t relid, uint32_t ring_gpadl,
		      uint32_t downstream_offset, uint32_t target_vp, const void *user_data,
		      size_t user_len)
{
	struct vmbus_client_chan *ch;
	struct vmbus_client_gpadl *g;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!c)
		return -EINVAL;
	if (!connected(c))
		return -ENOTCONN;
	ch = find_chan(c, relid);
	if (!ch)
		return -ENOENT;
	if (ch->rescinded || ch->open_state == OPEN_PENDING || ch->open_state == OPEN_OPEN)
		return -EPROTO;
	g = find_gpadl(c, ring_gpadl);
	if (!g || g->state != GPADL_CREATED || g->relid != relid || downstream_offset == 0)
		return -EINVAL;
	rc = vmbus_build_open_channel(buf, sizeof(buf), relid, relid, ring_gpadl, target_vp,
				      downstream_offset, user_data, user_len, &len);
	if (rc < 0)
		return rc;
	ch->open_id = relid;
	ch->open_status = 0;
	ch->open_state = OPEN_PENDING;
	ch->modify_state = MODIFY_IDLE;
	rc = post(c, buf, len);
	if (rc < 0)
		ch->open_state = OPEN_CLOSED;
	return rc;
}

int vmbus_client_open_status(const struct vmbus_client *c, uint32_t relid, uint32_t *host_status)
{
	const struct vmbus_client_chan *ch = find_chan(c, relid);

	if (!ch)
		return -ENOENT;
	switch (ch->open_state) {
	case OPEN_OPEN:
		return 0;
	case OPEN_PENDING:
		return -EINPROGRESS;
	case OPEN_REFUSED:
		if (host_status)
			*host_status = ch->open_status;
		return -EIO;
	default:
		return -ENOTCONN;
	}
}

int vmbus_client_close(struct vmbus_client *c, uint32_t relid)
{
	struct vmbus_client_chan *ch;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!c)
		return -EINVAL;
	ch = find_chan(c, relid);
	if (!ch)
		return -ENOENT;
	if (!connected(c) || (ch->open_state != OPEN_OPEN && ch->open_state != OPEN_PENDING))
		return -ENOTCONN;
	rc = vmbus_build_close_channel(buf, sizeof(buf), relid, &len);
	if (rc < 0)
		return rc;
	rc = post(c, buf, len);
	if (rc < 0)
		return rc;
	ch->open_state = OPEN_CLOSED;
	ch->modify_state = MODIFY_IDLE;
	return 0;
}

int vmbus_client_modify_channel(struct vmbus_client *c, uint32_t relid, uint32_t target_vp)
{
	struct vmbus_client_chan *ch;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!c)
		return -EINVAL;
	ch = find_chan(c, relid);
	if (!ch)
		return -ENOENT;
	if (!connected(c) || ch->open_state != OPEN_OPEN)
		return -ENOTCONN;
	if (c->version < VMBUS_VERSION_WIN10_V4_1)
		return -EOPNOTSUPP;
	if (ch->modify_state == MODIFY_PENDING)
		return -EINPROGRESS;
	rc = vmbus_build_modifychannel(buf, sizeof(buf), relid, target_vp, &len);
	if (rc < 0)
		return rc;
	/*
	 * Only 5.3 hosts answer; below that the request is fire-and-forget.
	 * State changes before the post, here and elsewhere, in case the send
	 * callback delivers the reply before it returns.
	 */
	ch->modify_state = c->version >= VMBUS_VERSION_WIN10_V5_3 ? MODIFY_PENDING : MODIFY_IDLE;
	rc = post(c, buf, len);
	if (rc < 0)
		ch->modify_state = MODIFY_IDLE;
	return rc;
}

int vmbus_client_modify_status(const struct vmbus_client *c, uint32_t relid, uint32_t *host_status)
{
	const struct vmbus_client_chan *ch = find_chan(c, relid);

	if (!ch)
		return -ENOENT;
	if (ch->modify_state == MODIFY_PENDING)
		return -EINPROGRESS;
	if (ch->modify_state == MODIFY_REFUSED) {
		if (host_status)
			*host_status = ch->modify_status;
		return -EIO;
	}
	return 0;
}

int vmbus_client_release(struct vmbus_client *c, uint32_t relid)
{
	struct vmbus_client_chan *ch;
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc;

	if (!c)
		return -EINVAL;
	ch = find_chan(c, relid);
	if (!ch)
		return -ENOENT;
	if (!ch->rescinded)
		return -EPROTO;
	if (!connected(c))
		return -ENOTCONN;
	rc = vmbus_build_relid_released(buf, sizeof(buf), relid, &len);
	if (rc < 0)
		return rc;
	rc = post(c, buf, len);
	if (rc < 0)
		return rc;
	/* The host drops whatever GPADLs the channel still had. */
	for (size_t i = 0; i < c->ngpadls; i++)
		if (c->gpadls[i].state != GPADL_FREE && c->gpadls[i].relid == relid)
			memset(&c->gpadls[i], 0, sizeof(c->gpadls[i]));
	memset(ch, 0, sizeof(*ch));
	return 0;
}

int vmbus_client_unload(struct vmbus_client *c)
{
	uint8_t buf[VMBUS_MSG_MAX];
	size_t len;
	int rc, prev;

	if (!c)
		return -EINVAL;
	if (!connected(c))
		return -ENOTCONN;
	rc = vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_UNLOAD, &len);
	if (rc < 0)
		return rc;
	prev = c->state;
	c->state = VMBUS_CLIENT_UNLOADING;
	rc = post(c, buf, len);
	if (rc < 0)
		c->state = prev;
	return rc;
}
