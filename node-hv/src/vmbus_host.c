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
#include <stdlib.h>
#include <string.h>

#include "chan_int.h"
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
