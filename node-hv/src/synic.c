// SPDX-License-Identifier: MIT
/*
 * Synthetic interrupt controller, as much of it as VMBus needs: per vCPU a
 * message page (SIMP, 16 slots of 256 bytes) and an event flags page
 * (SIEFP, 16 x 2048 bits), both guest pages the guest chooses, plus SCONTROL
 * and the SINT registers. The guest polls its pages (it runs with interrupts
 * off) and blocks in WAIT, so "raising" a SINT means waking the vCPU.
 *
 * Slot protocol (TLFS; Linux vmbus_signal_eom): a slot is free when its
 * message_type is HVMSG_NONE. The host fills the payload, then publishes the
 * type with release order. The guest consumes, stores HVMSG_NONE, full
 * barrier, and writes EOM if message_flags.msg_pending was set. The host,
 * finding the slot busy, sets msg_pending and re-checks the type: if the
 * guest freed the slot in between, the host delivers at once; otherwise the
 * guest is bound to see msg_pending after its own barrier and send EOM.
 * Either way no message waits forever.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fab/log.h"
#include "partition_int.h"

#define HVMSG_NONE	 0u
#define MSG_FLAG_PENDING 1u
#define SLOT_SIZE	 256u
#define MSG_PAYLOAD_MAX	 240u

/* struct hv_message header layout (vmbus-facts §5.1) */
#define OFF_TYPE  0
#define OFF_SIZE  4
#define OFF_FLAGS 5
#define OFF_PORT  8
#define OFF_DATA  16

static uint8_t *slot_of(struct nhv_vp *vp, uint32_t sint)
{
	uint8_t *page;

	if (!(vp->scontrol & HV_SYNIC_ENABLE) || !(vp->simp & HV_SYNIC_ENABLE))
		return NULL;
	page = nhv_guest_range(vp->p, vp->simp & HV_SYNIC_PAGE_MASK, FAB_PAGE_SIZE);
	return page ? page + (size_t)sint * SLOT_SIZE : NULL;
}

/* Tries to put m in its slot. synic_lock held. Returns true if delivered. */
static bool try_deliver(struct nhv_vp *vp, const struct nhv_synic_msg *m)
{
	uint8_t *slot = slot_of(vp, m->sint);
	uint32_t *type;

	if (!slot)
		return false;
	type = (uint32_t *)(slot + OFF_TYPE);
	if (__atomic_load_n(type, __ATOMIC_ACQUIRE) != HVMSG_NONE) {
		__atomic_fetch_or(slot + OFF_FLAGS, MSG_FLAG_PENDING, __ATOMIC_SEQ_CST);
		/* Pairs with the guest's barrier between freeing and reading
		 * msg_pending: one of us sees the other's store. */
		if (__atomic_load_n(type, __ATOMIC_SEQ_CST) != HVMSG_NONE)
			return false;
	}
	memcpy(slot + OFF_DATA, m->payload, m->len);
	slot[OFF_SIZE] = (uint8_t)m->len;
	slot[OFF_FLAGS] = 0;
	memset(slot + OFF_PORT, 0, 8);
	/* The guest may read the payload once it sees the type. */
	__atomic_store_n(type, m->type, __ATOMIC_RELEASE);
	atomic_fetch_add(&vp->p->n_synic_posted, 1);
	return true;
}

/* Delivers queued messages in order while slots are free. synic_lock held.
 * Returns true if anything was delivered. */
static bool flush(struct nhv_vp *vp)
{
	bool any = false;

	while (vp->queue_head && try_deliver(vp, vp->queue_head)) {
		struct nhv_synic_msg *m = vp->queue_head;

		vp->queue_head = m->next;
		if (!vp->queue_head)
			vp->queue_tail = &vp->queue_head;
		vp->queued--;
		free(m);
		any = true;
	}
	return any;
}

int nhv_synic_post(struct nhv_partition *p, uint32_t vpi, uint32_t sint, uint32_t type,
		   const void *payload, uint32_t len)
{
	struct nhv_vp *vp;
	struct nhv_synic_msg *m;
	bool delivered = false;

	if (vpi >= p->nvcpus || sint >= HV_SYNIC_SINT_COUNT || len > MSG_PAYLOAD_MAX ||
	    type == HVMSG_NONE)
		return -EINVAL;
	vp = &p->vps[vpi];
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->sint = sint;
	m->type = type;
	m->len = len;
	memcpy(m->payload, payload, len);

	pthread_mutex_lock(&p->synic_lock);
	if (!vp->queue_tail)
		vp->queue_tail = &vp->queue_head;
	/* Order matters: nothing overtakes what is already queued. */
	if (!vp->queue_head && try_deliver(vp, m)) {
		free(m);
		delivered = true;
	} else if (vp->queued >= NHV_SYNIC_QUEUE_MAX) {
		pthread_mutex_unlock(&p->synic_lock);
		free(m);
		atomic_fetch_add(&p->n_synic_dropped, 1);
		return -ENOBUFS;
	} else {
		*vp->queue_tail = m;
		vp->queue_tail = &m->next;
		vp->queued++;
		atomic_fetch_add(&p->n_synic_queued, 1);
	}
	pthread_mutex_unlock(&p->synic_lock);
	if (delivered)
		nhv_partition_signal(p, (int)vpi);
	return 0;
}

bool nhv_synic_congested(struct nhv_partition *p, uint32_t vpi, uint32_t margin)
{
	bool full;

	if (vpi >= p->nvcpus)
		return true;
	pthread_mutex_lock(&p->synic_lock);
	full = p->vps[vpi].queued + margin >= NHV_SYNIC_QUEUE_MAX;
	pthread_mutex_unlock(&p->synic_lock);
	return full;
}

void nhv_synic_signal_event(struct nhv_partition *p, uint32_t vpi, uint32_t sint, uint32_t flag)
{
	struct nhv_vp *vp;
	uint64_t *page;

	if (vpi >= p->nvcpus || sint >= HV_SYNIC_SINT_COUNT || flag >= SLOT_SIZE * 8)
		return;
	vp = &p->vps[vpi];
	pthread_mutex_lock(&p->synic_lock);
	if ((vp->scontrol & HV_SYNIC_ENABLE) && (vp->siefp & HV_SYNIC_ENABLE)) {
		page = nhv_guest_range(p, vp->siefp & HV_SYNIC_PAGE_MASK, FAB_PAGE_SIZE);
		if (page)
			__atomic_fetch_or(&page[(sint * SLOT_SIZE) / 8 + flag / 64],
					  1ull << (flag % 64), __ATOMIC_SEQ_CST);
	}
	pthread_mutex_unlock(&p->synic_lock);
	nhv_partition_signal(p, (int)vpi);
}

uint16_t nhv_synic_get_reg(struct nhv_vp *vp, uint32_t name, uint64_t *val)
{
	uint16_t st = HV_STATUS_SUCCESS;

	pthread_mutex_lock(&vp->p->synic_lock);
	if (name >= HV_REGISTER_SINT0 && name < HV_REGISTER_SINT0 + HV_SYNIC_SINT_COUNT)
		*val = vp->sint[name - HV_REGISTER_SINT0];
	else if (name == HV_REGISTER_SCONTROL)
		*val = vp->scontrol;
	else if (name == HV_REGISTER_SVERSION)
		*val = HV_SYNIC_VERSION_1;
	else if (name == HV_REGISTER_SIMP)
		*val = vp->simp;
	else if (name == HV_REGISTER_SIEFP)
		*val = vp->siefp;
	else if (name == HV_REGISTER_EOM)
		*val = 0;
	else
		st = HV_STATUS_INVALID_PARAMETER;
	pthread_mutex_unlock(&vp->p->synic_lock);
	return st;
}

uint16_t nhv_synic_set_reg(struct nhv_vp *vp, uint32_t name, uint64_t val)
{
	struct nhv_partition *p = vp->p;
	uint16_t st = HV_STATUS_SUCCESS;
	bool woke = false;

	pthread_mutex_lock(&p->synic_lock);
	if (name >= HV_REGISTER_SINT0 && name < HV_REGISTER_SINT0 + HV_SYNIC_SINT_COUNT) {
		/* Vectors below 16 are reserved (TLFS). */
		if (!(val & HV_SINT_MASKED) && HV_SINT_VECTOR(val) < 16)
			st = HV_STATUS_INVALID_PARAMETER;
		else
			vp->sint[name - HV_REGISTER_SINT0] = val;
	} else if (name == HV_REGISTER_SCONTROL) {
		vp->scontrol = val & HV_SYNIC_ENABLE;
	} else if (name == HV_REGISTER_SIMP || name == HV_REGISTER_SIEFP) {
		/* An enabled overlay page must be guest RAM we can write. */
		if ((val & HV_SYNIC_ENABLE) &&
		    !nhv_guest_range(p, val & HV_SYNIC_PAGE_MASK, FAB_PAGE_SIZE))
			st = HV_STATUS_INVALID_PARAMETER;
		else if (name == HV_REGISTER_SIMP)
			vp->simp = val & (HV_SYNIC_PAGE_MASK | HV_SYNIC_ENABLE);
		else
			vp->siefp = val & (HV_SYNIC_PAGE_MASK | HV_SYNIC_ENABLE);
	} else if (name != HV_REGISTER_EOM) {
		st = HV_STATUS_INVALID_PARAMETER; /* unknown or read-only */
	}
	/* EOM, or a page just enabled: queued messages may fit now. */
	if (st == HV_STATUS_SUCCESS)
		woke = flush(vp);
	pthread_mutex_unlock(&p->synic_lock);
	if (woke)
		nhv_partition_signal(p, (int)vp->index);
	return st;
}

void nhv_synic_free(struct nhv_partition *p)
{
	for (uint32_t i = 0; i < p->nvcpus; i++) {
		struct nhv_vp *vp = &p->vps[i];

		while (vp->queue_head) {
			struct nhv_synic_msg *m = vp->queue_head;

			vp->queue_head = m->next;
			free(m);
		}
		vp->queue_tail = &vp->queue_head;
		vp->queued = 0;
	}
}
