// SPDX-License-Identifier: MIT
/*
 * A partition's VMBus host: the rvmbus host channel manager wired to the
 * SynIC (control messages in slot VMBUS_MESSAGE_SINT, posted by the guest
 * with HvPostMessage), to the channels (chan.c) and their VSPs.
 *
 * Threads: guest messages arrive on vCPU threads; offers come from control
 * threads; bus->lock serializes the manager. Lock order: bus->lock, then a
 * channel's send_lock / the SynIC lock, then p->lock. Channel workers never
 * take bus->lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_int.h"
#include "ckpt_int.h"
#include "fab/util.h"
#include "fab/log.h"
#include "fab/vmbus_chan.h"
#include "partition_int.h"

#define HVMSG_VMBUS 1 /* message type of VMBus messages in the SynIC slot */

struct gpadl {
	struct gpadl *next;
	uint32_t id;
	uint32_t relid;
	uint32_t npfns;
	bool whole_pages; /* one range starting at offset 0: usable as a ring */
	uint64_t pfns[];
};

struct nhv_vmbus {
	struct nhv_partition *p;
	pthread_mutex_t lock;
	struct vmbus_host *h;
	struct nhv_chan *chans;
	struct gpadl *gpadls;
	uint32_t target_vp;
	uint8_t sint;
	uint32_t ndev;
	atomic_uint_fast64_t n_bad_msgs;
};

static struct nhv_chan *chan_by_relid(struct nhv_vmbus *bus, uint32_t relid)
{
	for (struct nhv_chan *ch = bus->chans; ch; ch = ch->next)
		if (ch->relid == relid)
			return ch;
	return NULL;
}

/* ---- manager callbacks (bus->lock held) -------------------------------- */

static int cb_send(void *ctx, const void *msg, size_t len)
{
	struct nhv_vmbus *bus = ctx;

	return nhv_synic_post(bus->p, bus->target_vp, bus->sint, HVMSG_VMBUS, msg, (uint32_t)len);
}

static int cb_contact(void *ctx, const struct vmbus_host_contact *c)
{
	struct nhv_vmbus *bus = ctx;

	if (c->target_vcpu >= bus->p->nvcpus || c->msg_sint >= HV_SYNIC_SINT_COUNT)
		return -EINVAL;
	bus->target_vp = c->target_vcpu;
	bus->sint = c->msg_sint;
	fab_info("partition %llu: VMBus connected, version %u.%u", (unsigned long long)bus->p->id,
		 c->version >> 16, c->version & 0xffff);
	return 0;
}

static int cb_gpadl_create(void *ctx, const struct vmbus_host_gpadl *g)
{
	struct nhv_vmbus *bus = ctx;
	uint64_t ram_pages = bus->p->ram_bytes / FAB_PAGE_SIZE;
	struct gpadl *gp;

	/* Every page must be guest RAM: checked once here, again when mapped. */
	for (uint32_t i = 0; i < g->npfns; i++)
		if (g->pfns[i] >= ram_pages)
			return -EFAULT;
	gp = malloc(sizeof(*gp) + (size_t)g->npfns * sizeof(uint64_t));
	if (!gp)
		return -ENOMEM;
	gp->id = g->gpadl_id;
	gp->relid = g->relid;
	gp->npfns = g->npfns;
	gp->whole_pages = g->nranges == 1 && g->ranges[0].byte_offset == 0 &&
			  g->ranges[0].byte_count == (uint64_t)g->npfns * FAB_PAGE_SIZE;
	memcpy(gp->pfns, g->pfns, (size_t)g->npfns * sizeof(uint64_t));
	gp->next = bus->gpadls;
	bus->gpadls = gp;
	return 0;
}

static void cb_gpadl_teardown(void *ctx, uint32_t gpadl_id, uint32_t relid)
{
	struct nhv_vmbus *bus = ctx;

	for (struct gpadl **pp = &bus->gpadls; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == gpadl_id) {
			struct gpadl *gp = *pp;

			*pp = gp->next;
			free(gp);
			return;
		}
	}
}

static int cb_open(void *ctx, const struct vmbus_host_open_req *req)
{
	struct nhv_vmbus *bus = ctx;
	struct nhv_chan *ch = chan_by_relid(bus, req->relid);
	struct gpadl *gp;
	int rc;

	for (gp = bus->gpadls; gp && gp->id != req->ring_gpadl; gp = gp->next)
		;
	if (!ch || !gp || !gp->whole_pages)
		return -EINVAL;
	rc = nhv_chan_open(ch, gp->pfns, gp->npfns, req->downstream_offset, req->target_vp);
	if (!rc)
		ch->ring_gpadl = gp->id;
	if (rc) {
		fab_warn("partition %llu: cannot open %s channel %u: %s",
			 (unsigned long long)bus->p->id, ch->ops->name, ch->relid, strerror(-rc));
		return rc;
	}
	return vmbus_host_open_complete(bus->h, req->relid, 0);
}

/* MODIFYCHANNEL: signal another vCPU from now on. */
static uint32_t cb_modify(void *ctx, uint32_t relid, uint32_t target_vp)
{
	struct nhv_vmbus *bus = ctx;
	struct nhv_chan *ch = chan_by_relid(bus, relid);

	if (!ch || target_vp >= bus->p->nvcpus)
		return 0xC000000D; /* STATUS_INVALID_PARAMETER */
	pthread_mutex_lock(&ch->send_lock);
	ch->target_vp = target_vp;
	pthread_mutex_unlock(&ch->send_lock);
	return 0;
}

static void cb_close(void *ctx, uint32_t relid)
{
	struct nhv_vmbus *bus = ctx;
	struct nhv_chan *ch = chan_by_relid(bus, relid);

	if (ch)
		nhv_chan_close(ch);
}

static const struct vmbus_host_ops host_ops = {
	.send = cb_send,
	.contact = cb_contact,
	.gpadl_create = cb_gpadl_create,
	.gpadl_teardown = cb_gpadl_teardown,
	.open = cb_open,
	.close = cb_close,
	.modify = cb_modify,
};

/* ---- hypercalls --------------------------------------------------------- */

uint16_t nhv_vmbus_post_message(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint32_t type, const void *payload, uint32_t len)
{
	struct nhv_vmbus *bus = __atomic_load_n(&p->vmbus, __ATOMIC_ACQUIRE);
	uint16_t st = HV_STATUS_SUCCESS;
	int rc;

	if (!bus)
		return HV_STATUS_INVALID_CONNECTION_ID;
	pthread_mutex_lock(&bus->lock);
	if (!vmbus_host_conn_id_valid(bus->h, conn_id)) {
		st = HV_STATUS_INVALID_CONNECTION_ID;
	} else if (nhv_synic_congested(p, bus->target_vp, bus->ndev + 8)) {
		/* The guest is not consuming our replies: refuse before
		 * handling, so a retry repeats nothing (Hyper-V semantics). */
		st = HV_STATUS_INSUFFICIENT_BUFFERS;
	} else {
		rc = vmbus_host_rx_conn(bus->h, conn_id, payload, len);
		/* A malformed or out-of-order message is the guest's problem:
		 * the post itself succeeded (as on Hyper-V); the manager has
		 * already answered whatever needed an answer. */
		if (rc && atomic_fetch_add(&bus->n_bad_msgs, 1) < 10)
			fab_info("partition %llu: VMBus message refused: %s",
				 (unsigned long long)p->id, strerror(-rc));
	}
	pthread_mutex_unlock(&bus->lock);
	return st;
}

uint16_t nhv_vmbus_signal_event(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint16_t flag)
{
	struct nhv_vmbus *bus = __atomic_load_n(&p->vmbus, __ATOMIC_ACQUIRE);
	struct nhv_chan *ch;

	if (!bus)
		return HV_STATUS_INVALID_CONNECTION_ID;
	/* The channel list only grows while the partition lives, and
	 * channels are freed only at destroy, after the vCPUs stopped. */
	for (ch = __atomic_load_n(&bus->chans, __ATOMIC_ACQUIRE); ch; ch = ch->next) {
		if (ch->conn_id == conn_id) {
			nhv_chan_kick(ch);
			return HV_STATUS_SUCCESS;
		}
	}
	return HV_STATUS_INVALID_CONNECTION_ID;
}

/* ---- attaching devices --------------------------------------------------- */

static int bus_get(struct nhv_partition *p, struct nhv_vmbus **out)
{
	struct nhv_vmbus *bus;
	int rc;

	if (p->vmbus) {
		*out = p->vmbus;
		return 0;
	}
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->p = p;
	bus->sint = VMBUS_MESSAGE_SINT;
	pthread_mutex_init(&bus->lock, NULL);
	rc = vmbus_host_create(NULL, &host_ops, bus, &bus->h);
	if (rc) {
		pthread_mutex_destroy(&bus->lock);
		free(bus);
		return rc;
	}
	__atomic_store_n(&p->vmbus, bus, __ATOMIC_RELEASE);
	*out = bus;
	return 0;
}

/* A stable instance GUID per device: partition id and device index, as a
 * version 4 layout so tools that parse GUIDs accept it. */
static void instance_guid(struct nhv_vmbus *bus, uint32_t index, struct vmbus_guid *g)
{
	uint64_t id = bus->p->id;

	memset(g, 0, sizeof(*g));
	memcpy(g->b, "fab\0", 4);
	memcpy(g->b + 4, &index, 4);
	memcpy(g->b + 8, &id, 8);
	g->b[7] = (uint8_t)((g->b[7] & 0x0f) | 0x40);
	g->b[8] = (uint8_t)((g->b[8] & 0x3f) | 0x80);
}

int nhv_vsp_attach(struct nhv_partition *p, const struct nhv_vsp_ops *ops, void *dev,
		   struct nhv_chan **out)
{
	struct vmbus_host_offer offer;
	struct nhv_vmbus *bus;
	struct nhv_chan *ch;
	uint32_t relid, conn_id;
	int rc;

	/* Attaches may race each other (before or after start): one bus. */
	pthread_mutex_lock(&p->ctl_lock);
	if (p->frozen) {
		/* Quiesced for a checkpoint: the device list is being saved. */
		pthread_mutex_unlock(&p->ctl_lock);
		return -EBUSY;
	}
	rc = bus_get(p, &bus);
	pthread_mutex_unlock(&p->ctl_lock);
	if (rc)
		return rc;
	memset(&offer, 0, sizeof(offer));
	memcpy(offer.if_type.b, ops->type_guid, 16);
	pthread_mutex_lock(&bus->lock);
	instance_guid(bus, bus->ndev, &offer.if_instance);
	rc = vmbus_host_offer_add(bus->h, &offer, &relid, &conn_id);
	/* A send error still registers the offer (it goes out with the
	 * guest's next REQUESTOFFERS): only these mean there is none. */
	if (rc == -EINVAL || rc == -ENOSPC || rc == -ENOMEM) {
		pthread_mutex_unlock(&bus->lock);
		return rc;
	}
	rc = nhv_chan_new(p, ops, dev, relid, conn_id, &ch);
	if (rc) {
		vmbus_host_rescind(bus->h, relid);
		pthread_mutex_unlock(&bus->lock);
		return rc;
	}
	bus->ndev++;
	ch->next = bus->chans;
	__atomic_store_n(&bus->chans, ch, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&bus->lock);
	fab_debug("partition %llu: offered %s as relid %u (connection %#x)",
		  (unsigned long long)p->id, ops->name, relid, conn_id);
	*out = ch;
	return 0;
}

void nhv_vmbus_free(struct nhv_partition *p)
{
	struct nhv_vmbus *bus = p->vmbus;

	if (!bus)
		return;
	/* vCPUs are stopped: nothing feeds the manager any more. */
	while (bus->chans) {
		struct nhv_chan *ch = bus->chans;

		bus->chans = ch->next;
		nhv_chan_free(ch);
	}
	while (bus->gpadls) {
		struct gpadl *gp = bus->gpadls;

		bus->gpadls = gp->next;
		free(gp);
	}
	vmbus_host_destroy(bus->h);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
	p->vmbus = NULL;
}

/* ---- checkpoints (see checkpoint.c) --------------------------------------- */

#define NAME_LEN      32     /* VSP name field of a saved channel */
#define VSP_STATE_MAX 4096   /* bytes of one VSP's saved state */
#define RING_PFNS_MAX 65536u /* as nhv_chan_open */

int nhv_vmbus_hold(struct nhv_partition *p, bool hold, int64_t deadline_ms, char *err,
		   size_t errlen)
{
	struct nhv_vmbus *bus = p->vmbus;
	struct nhv_chan *ch;

	if (!bus)
		return 0;
	for (ch = __atomic_load_n(&bus->chans, __ATOMIC_ACQUIRE); ch; ch = ch->next)
		nhv_chan_hold(ch, hold);
	if (!hold)
		return 0;
	for (ch = bus->chans; ch; ch = ch->next) {
		if (!nhv_chan_wait_quiet(ch, deadline_ms)) {
			snprintf(err, errlen, "%s channel %u still has requests in flight",
				 ch->ops->name, ch->relid);
			return -ETIMEDOUT;
		}
	}
	return 0;
}

void nhv_vmbus_dirty_rings(struct nhv_partition *p, uint64_t *bitmap)
{
	struct nhv_vmbus *bus = p->vmbus;

	if (!bus)
		return;
	/* The manager's lock keeps the GPADL list still; an open ring's
	 * GPADL stays until its channel closes. */
	pthread_mutex_lock(&bus->lock);
	for (struct nhv_chan *ch = bus->chans; ch; ch = ch->next) {
		if (!ch->open)
			continue;
		for (struct gpadl *gp = bus->gpadls; gp; gp = gp->next) {
			if (gp->id != ch->ring_gpadl)
				continue;
			for (uint32_t i = 0; i < gp->npfns; i++)
				__atomic_fetch_or(&bitmap[gp->pfns[i] / 64],
						  1ull << (gp->pfns[i] % 64), __ATOMIC_RELAXED);
		}
	}
	pthread_mutex_unlock(&bus->lock);
}

int nhv_vmbus_save(struct nhv_partition *p, struct nhv_ckw *w)
{
	struct nhv_vmbus *bus = p->vmbus;
	uint32_t ngpadls = 0, nchans = 0;
	size_t hlen;
	uint8_t *hbuf;
	int rc;

	if (!bus) {
		nhv_ckw_u32(w, 0); /* no bus */
		return 0;
	}
	nhv_ckw_u32(w, 1);
	pthread_mutex_lock(&bus->lock);
	rc = vmbus_host_save(bus->h, NULL, 0, &hlen);
	hbuf = rc ? NULL : malloc(hlen ? hlen : 1);
	if (!hbuf || vmbus_host_save(bus->h, hbuf, hlen, &hlen)) {
		pthread_mutex_unlock(&bus->lock);
		free(hbuf);
		return -ENOMEM;
	}
	nhv_ckw_u32(w, bus->target_vp);
	nhv_ckw_u32(w, bus->sint);
	nhv_ckw_u32(w, bus->ndev);
	nhv_ckw_u32(w, (uint32_t)hlen);
	nhv_ckw_put(w, hbuf, hlen);
	free(hbuf);
	for (struct gpadl *gp = bus->gpadls; gp; gp = gp->next)
		ngpadls++;
	nhv_ckw_u32(w, ngpadls);
	for (struct gpadl *gp = bus->gpadls; gp; gp = gp->next) {
		nhv_ckw_u32(w, gp->id);
		nhv_ckw_u32(w, gp->relid);
		nhv_ckw_u32(w, gp->npfns);
		nhv_ckw_u32(w, gp->whole_pages);
		for (uint32_t i = 0; i < gp->npfns; i++)
			nhv_ckw_u64(w, gp->pfns[i]);
	}
	for (struct nhv_chan *ch = bus->chans; ch; ch = ch->next)
		nchans++;
	nhv_ckw_u32(w, nchans);
	/* In relid order, which is attach order. */
	for (uint32_t relid = 1, done = 0; done < nchans && relid <= VMBUS_MAX_RELID; relid++) {
		struct nhv_chan *ch = chan_by_relid(bus, relid);
		char name[NAME_LEN] = { 0 };
		uint8_t *vsp = NULL;
		size_t vlen = 0;

		if (!ch)
			continue;
		done++;
		snprintf(name, sizeof(name), "%s", ch->ops->name);
		nhv_ckw_u32(w, ch->relid);
		nhv_ckw_u32(w, ch->conn_id);
		nhv_ckw_put(w, name, sizeof(name));
		nhv_ckw_u32(w, ch->open);
		if (ch->open && ch->ops->save) {
			vsp = malloc(VSP_STATE_MAX);
			rc = vsp ? ch->ops->save(ch, vsp, VSP_STATE_MAX, &vlen) : -ENOMEM;
			if (rc) {
				free(vsp);
				pthread_mutex_unlock(&bus->lock);
				return rc;
			}
		}
		nhv_ckw_u32(w, ch->target_vp);
		nhv_ckw_u32(w, ch->ring_gpadl);
		nhv_ckw_u32(w, ch->downstream_pages);
		nhv_ckw_u32(w, ch->open ? ch->out.rd : 0);
		nhv_ckw_u32(w, ch->open ? ch->in.wr : 0);
		nhv_ckw_u32(w, (uint32_t)vlen);
		nhv_ckw_put(w, vsp, vlen);
		free(vsp);
	}
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

struct saved_chan {
	uint32_t relid, conn_id, open, target_vp, ring_gpadl, downstream, out_rd, in_wr, vlen;
	char name[NAME_LEN];
	const uint8_t *vsp;
};

static int fail_why(char *err, size_t errlen, int rc, const char *why)
{
	snprintf(err, errlen, "VMBus state: %s", why);
	return rc;
}

/* An index a ring side keeps: inside the data area, 8-byte aligned. */
static bool ring_index_ok(uint32_t idx, uint64_t data_bytes)
{
	return idx < data_bytes && idx % 8 == 0;
}

int nhv_vmbus_restore(struct nhv_partition *p, struct nhv_ckr *r, char *err, size_t errlen)
{
	struct nhv_vmbus *bus = p->vmbus;
	uint64_t ram_pages = p->ram_bytes / FAB_PAGE_SIZE;
	uint32_t has_bus, target_vp, sint, ndev, hlen, ngpadls, nchans, have = 0, est = 0;
	const uint8_t *hbuf;
	struct gpadl **gps = NULL;
	struct saved_chan *sc = NULL;
	int rc = -EBADMSG;

	has_bus = nhv_ckr_u32(r);
	if (r->bad || has_bus > 1)
		return fail_why(err, errlen, -EBADMSG, "truncated or bad bus flag");
	if (!has_bus)
		return bus ? fail_why(err, errlen, -EINVAL, "devices attached, none saved") : 0;
	if (!bus)
		return fail_why(err, errlen, -EINVAL, "devices saved, none attached");
	target_vp = nhv_ckr_u32(r);
	sint = nhv_ckr_u32(r);
	ndev = nhv_ckr_u32(r);
	hlen = nhv_ckr_u32(r);
	hbuf = nhv_ckr_take(r, hlen);
	if (r->bad || target_vp >= p->nvcpus || sint >= HV_SYNIC_SINT_COUNT)
		return fail_why(err, errlen, -EBADMSG, "bad bus header");
	if (ndev != bus->ndev)
		return fail_why(err, errlen, -EINVAL, "device count differs from the saved one");
	ngpadls = nhv_ckr_u32(r);
	if (r->bad || ngpadls > VMBUS_HOST_DEFAULT_MAX_GPADLS)
		return fail_why(err, errlen, -EBADMSG, "bad GPADL count");
	gps = calloc(ngpadls + 1, sizeof(*gps));
	if (!gps)
		return -ENOMEM;
	for (uint32_t i = 0; i < ngpadls; i++) {
		uint32_t id = nhv_ckr_u32(r), relid = nhv_ckr_u32(r), npfns = nhv_ckr_u32(r);
		uint32_t whole = nhv_ckr_u32(r);

		if (r->bad || npfns == 0 || npfns > VMBUS_HOST_DEFAULT_MAX_GPADL_PFNS ||
		    whole > 1 || (size_t)npfns * 8 > r->len - r->pos) {
			rc = fail_why(err, errlen, -EBADMSG, "bad GPADL");
			goto out;
		}
		for (uint32_t k = 0; k < i; k++)
			if (gps[k]->id == id) {
				rc = fail_why(err, errlen, -EBADMSG, "GPADL id twice");
				goto out;
			}
		gps[i] = malloc(sizeof(**gps) + (size_t)npfns * sizeof(uint64_t));
		if (!gps[i]) {
			rc = -ENOMEM;
			goto out;
		}
		gps[i]->id = id;
		gps[i]->relid = relid;
		gps[i]->npfns = npfns;
		gps[i]->whole_pages = whole;
		gps[i]->next = NULL;
		for (uint32_t k = 0; k < npfns; k++) {
			gps[i]->pfns[k] = nhv_ckr_u64(r);
			if (gps[i]->pfns[k] >= ram_pages) {
				rc = fail_why(err, errlen, -EBADMSG, "GPADL page outside RAM");
				goto out;
			}
		}
	}
	nchans = nhv_ckr_u32(r);
	for (struct nhv_chan *ch = bus->chans; ch; ch = ch->next)
		have++;
	if (r->bad || nchans != have) {
		rc = fail_why(err, errlen, -EINVAL, "channel count differs from the devices");
		goto out;
	}
	sc = calloc(nchans + 1, sizeof(*sc));
	if (!sc) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nchans; i++) {
		struct saved_chan *c = &sc[i];
		struct nhv_chan *ch;
		struct gpadl *ring = NULL;

		c->relid = nhv_ckr_u32(r);
		c->conn_id = nhv_ckr_u32(r);
		nhv_ckr_get(r, c->name, NAME_LEN);
		c->open = nhv_ckr_u32(r);
		c->target_vp = nhv_ckr_u32(r);
		c->ring_gpadl = nhv_ckr_u32(r);
		c->downstream = nhv_ckr_u32(r);
		c->out_rd = nhv_ckr_u32(r);
		c->in_wr = nhv_ckr_u32(r);
		c->vlen = nhv_ckr_u32(r);
		c->vsp = c->vlen <= VSP_STATE_MAX ? nhv_ckr_take(r, c->vlen) : NULL;
		if (r->bad || c->open > 1 || c->vlen > VSP_STATE_MAX ||
		    c->name[NAME_LEN - 1] != '\0') {
			rc = fail_why(err, errlen, -EBADMSG, "bad channel record");
			goto out;
		}
		ch = chan_by_relid(bus, c->relid);
		if (!ch || ch->conn_id != c->conn_id || strcmp(ch->ops->name, c->name)) {
			snprintf(err, errlen,
				 "VMBus state: channel %u (%.31s) is not the device attached there",
				 c->relid, c->name);
			rc = -EINVAL;
			goto out;
		}
		if (!c->open)
			continue;
		for (uint32_t k = 0; k < ngpadls; k++)
			if (gps[k]->id == c->ring_gpadl && gps[k]->relid == c->relid)
				ring = gps[k];
		if (c->target_vp >= p->nvcpus || !ring || !ring->whole_pages || c->downstream < 2 ||
		    ring->npfns < c->downstream + 2 || ring->npfns > RING_PFNS_MAX ||
		    !ring_index_ok(c->out_rd, (uint64_t)(c->downstream - 1) * FAB_PAGE_SIZE) ||
		    !ring_index_ok(c->in_wr,
				   (uint64_t)(ring->npfns - c->downstream - 1) * FAB_PAGE_SIZE) ||
		    (c->vlen && !ch->ops->restore)) {
			rc = fail_why(err, errlen, -EBADMSG, "bad open channel (ring or indices)");
			goto out;
		}
	}
	if (r->bad) {
		rc = fail_why(err, errlen, -EBADMSG, "truncated");
		goto out;
	}

	/* The manager: it checks its own part against the offers. */
	rc = vmbus_host_restore(bus->h, hbuf, hlen);
	if (rc) {
		rc = fail_why(err, errlen, rc, "channel manager state refused");
		goto out;
	}
	vmbus_host_gpadl_count(bus->h, &est, NULL);
	if (est != ngpadls) {
		rc = fail_why(err, errlen, -EBADMSG, "GPADLs disagree with the manager");
		goto out;
	}
	for (uint32_t i = 0; i < nchans; i++) {
		struct vmbus_host_chan_info info;

		if (vmbus_host_chan_info(bus->h, sc[i].relid, &info) ||
		    (info.state == VMBUS_HOST_CHAN_OPEN) != (sc[i].open == 1) ||
		    (sc[i].open && (info.ring_gpadl != sc[i].ring_gpadl))) {
			rc = fail_why(err, errlen, -EBADMSG, "channels disagree with the manager");
			goto out;
		}
	}
	bus->target_vp = target_vp;
	bus->sint = (uint8_t)sint;
	for (uint32_t i = ngpadls; i-- > 0;) {
		gps[i]->next = bus->gpadls;
		bus->gpadls = gps[i];
		gps[i] = NULL;
	}
	/* Open the open channels, held: their workers start only on start. */
	for (uint32_t i = 0; i < nchans; i++) {
		struct saved_chan *c = &sc[i];
		struct nhv_chan *ch = chan_by_relid(bus, c->relid);
		struct gpadl *gp;

		if (!c->open)
			continue;
		for (gp = bus->gpadls; gp->id != c->ring_gpadl; gp = gp->next)
			;
		atomic_store(&ch->hold, true);
		ch->restored = true;
		rc = nhv_chan_open(ch, gp->pfns, gp->npfns, c->downstream, c->target_vp);
		if (rc) {
			snprintf(err, errlen, "VMBus state: cannot open %s channel %u: %s",
				 ch->ops->name, ch->relid, strerror(-rc));
			goto out;
		}
		ch->ring_gpadl = c->ring_gpadl;
		/* The worker is held and touches neither ring until start. */
		ch->out.rd = c->out_rd;
		ch->in.wr = c->in_wr;
		if (c->vlen || ch->ops->restore) {
			rc = ch->ops->restore ? ch->ops->restore(ch, c->vsp, c->vlen) : 0;
			if (rc) {
				snprintf(err, errlen,
					 "VMBus state: %s channel %u: VSP state refused",
					 ch->ops->name, ch->relid);
				goto out;
			}
		}
	}
	rc = 0;
out:
	for (uint32_t i = 0; i < ngpadls; i++)
		free(gps[i]);
	free(gps);
	free(sc);
	return rc;
}
