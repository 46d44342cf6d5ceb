// SPDX-License-Identifier: MIT
/*
 * Guest VMBus library: SynIC pages, the control-message pump in front of the
 * client state machine, channels with their rings, and waiting. See
 * fab/vmbus_guest.h for the contract; single vCPU (0), no locks.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fab/vmbus_guest.h"
#include "vmbus_guest_int.h"

/* struct hv_message in a SIMP slot (vmbus-facts 5.1/5.2). */
#define SYNIC_SLOT_BYTES 256u
#define MSG_OFF_TYPE	 0
#define MSG_OFF_SIZE	 4
#define MSG_OFF_FLAGS	 5
#define MSG_OFF_PAYLOAD	 16
#define HVMSG_NONE	 0u
#define MSG_FLAG_PENDING 0x1u
#define EVENT_WORDS	 (SYNIC_SLOT_BYTES / 8)
/* At most this many messages per poll, so a flooding host cannot keep the
 * guest inside vmbus_guest_poll forever. */
#define MSGS_PER_POLL 64
/* Longest single block in fab_wait: the host wakes the vCPU for every
 * message and event, the slice only bounds the cost of a lost wake-up. */
#define WAIT_SLICE VMBUS_GUEST_MS(10)
#define PAGE_SHIFT 12

struct vmbus_guest_chan {
	struct vmbus_guest_chan *next;
	uint32_t relid;
	uint32_t conn_id;
	uint32_t gpadl;
	uint8_t *mem;
	uint32_t send_pages;
	uint32_t recv_pages;
	struct vmbus_ring out; /* guest -> host */
	struct vmbus_ring in;  /* host -> guest */
	vmbus_guest_chan_cb *cb;
	void *cb_ctx;
	bool failed;
	bool in_cb;
};

static struct {
	bool synic;
	bool ready;
	uint8_t *simp;
	uint8_t *siefp;
	struct vmbus_client client;
	struct vmbus_client_chan offers[VMBUS_GUEST_MAX_OFFERS];
	struct vmbus_client_gpadl gpadls[VMBUS_GUEST_MAX_GPADLS];
	struct vmbus_guest_chan *chans;
	vmbus_guest_msg_cb *tap;
	void *tap_ctx;
	struct vmbus_guest_stats stats;
} vg;

/* ---- time ------------------------------------------------------------------- */

/*
 * A deadline on the reference clock. Should the host refuse to read the
 * clock (fab_ref_time 0), the time slept in fab_wait is counted instead so
 * that no wait can last forever.
 */
struct deadline {
	uint64_t start;
	uint64_t timeout;
	uint64_t slept;
};

static void deadline_start(struct deadline *d, uint64_t timeout)
{
	d->start = fab_ref_time();
	d->timeout = timeout;
	d->slept = 0;
}

static uint64_t deadline_left(const struct deadline *d)
{
	uint64_t now = fab_ref_time();
	uint64_t spent = now && d->start ? now - d->start : d->slept;

	return spent >= d->timeout ? 0 : d->timeout - spent;
}

/* Blocks for at most one slice of what is left. */
static void deadline_sleep(struct deadline *d, uint64_t left)
{
	uint64_t t = left < WAIT_SLICE ? left : WAIT_SLICE;

	if (fab_wait(t) != HV_STATUS_SUCCESS)
		d->slept += t;
}

/* ---- SynIC ------------------------------------------------------------------ */

static int set_reg(uint32_t name, uint64_t value, const char *what)
{
	unsigned int st = fab_set_vp_register(name, value);

	if (st != HV_STATUS_SUCCESS) {
		printf("vmbus: SetVpRegisters(%s) failed: status 0x%x\n", what, st);
		return -EIO;
	}
	return 0;
}

static int synic_init(void)
{
	int rc;

	vg.simp = fab_alloc_pages(1);
	vg.siefp = fab_alloc_pages(1);
	if (!vg.simp || !vg.siefp) {
		free(vg.simp);
		free(vg.siefp);
		vg.simp = vg.siefp = NULL;
		return -ENOMEM;
	}
	rc = set_reg(HV_REGISTER_SIMP, (uintptr_t)vg.simp | HV_SYNIC_ENABLE, "SIMP");
	if (!rc)
		rc = set_reg(HV_REGISTER_SIEFP, (uintptr_t)vg.siefp | HV_SYNIC_ENABLE, "SIEFP");
	if (!rc)
		rc = set_reg(HV_REGISTER_SINT0 + VMBUS_MESSAGE_SINT,
			     HV_SINT_VECTOR(VMBUS_GUEST_SINT_VECTOR), "SINT2");
	if (!rc)
		rc = set_reg(HV_REGISTER_SCONTROL, HV_SYNIC_ENABLE, "SCONTROL");
	if (rc) {
		/* The host may hold on to the pages it was given: keep them. */
		return rc;
	}
	vg.synic = true;
	return 0;
}

/*
 * Takes the message in SIMP slot 2, if any, and hands it to the client.
 * Slot protocol (TLFS; Linux vmbus_signal_eom): the type is read with
 * acquire, so the payload the host wrote before publishing it is visible;
 * the payload is copied out before the slot is freed; after freeing, a full
 * barrier orders the free before the read of msg_pending. The host, finding
 * the slot busy, sets msg_pending and then re-checks the type, so either it
 * sees the slot free or this side sees msg_pending and sends EOM, which
 * makes the host deliver its next queued message. Returns 1 if a message
 * was taken.
 */
static int take_message(void)
{
	uint8_t *slot = vg.simp + VMBUS_MESSAGE_SINT * SYNIC_SLOT_BYTES;
	uint32_t *typep = (uint32_t *)(slot + MSG_OFF_TYPE);
	_Alignas(8) uint8_t buf[VMBUS_MSG_MAX];
	uint32_t type, size;
	int rc;

	type = __atomic_load_n(typep, __ATOMIC_ACQUIRE);
	if (type == HVMSG_NONE)
		return 0;
	size = __atomic_load_n(slot + MSG_OFF_SIZE, __ATOMIC_RELAXED);
	if (size > VMBUS_MSG_MAX)
		size = VMBUS_MSG_MAX;
	memcpy(buf, slot + MSG_OFF_PAYLOAD, size);

	__atomic_store_n(typep, HVMSG_NONE, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(slot + MSG_OFF_FLAGS, __ATOMIC_RELAXED) & MSG_FLAG_PENDING) {
		vg.stats.eoms++;
		fab_set_vp_register(HV_REGISTER_EOM, 0);
	}

	vg.stats.msgs++;
	if (type != VMBUS_HV_MESSAGE_TYPE) {
		vg.stats.msgs_foreign++;
		return 1;
	}
	if (vg.tap)
		vg.tap(vg.tap_ctx, buf, size);
	rc = vmbus_client_rx(&vg.client, buf, size);
	if (rc) {
		vg.stats.msgs_refused++;
		vg.stats.last_rx_error = rc;
	}
	return 1;
}

/*
 * Clears the VMBus event flags. Every open channel's ring is looked at after
 * each poll anyway, so the bits only tell that something happened; whole
 * words are cleared, bits of unknown relids included, so that nothing stays
 * set forever.
 */
static int take_events(void)
{
	uint64_t *w = (uint64_t *)(vg.siefp + VMBUS_MESSAGE_SINT * SYNIC_SLOT_BYTES);
	int n = 0;

	for (unsigned i = 0; i < EVENT_WORDS; i++) {
		if (__atomic_load_n(&w[i], __ATOMIC_RELAXED) &&
		    __atomic_exchange_n(&w[i], 0, __ATOMIC_ACQ_REL))
			n++;
	}
	vg.stats.event_words += (uint64_t)n;
	return n;
}

/* ---- posting ------------------------------------------------------------------- */

static int post_cb(void *ctx, uint32_t conn_id, const void *msg, size_t len)
{
	unsigned int st;

	(void)ctx;
	vg.stats.posts++;
	st = fab_post_message(conn_id, VMBUS_HV_MESSAGE_TYPE, msg, len);
	if (st == HV_STATUS_SUCCESS)
		return 0;
	vg.stats.post_errors++;
	vg.stats.last_post_status = st;
	if (st == HV_STATUS_INVALID_CONNECTION_ID)
		return -ECONNREFUSED; /* the client falls back to an older version */
	/*
	 * INSUFFICIENT_BUFFERS is not retried: node-hv reports it after it
	 * handled the message (its reply could not be queued), so a retry
	 * would repeat the request.
	 */
	if (st == HV_STATUS_INSUFFICIENT_BUFFERS)
		return -ENOBUFS;
	return -EIO;
}

/* ---- polling and waiting ------------------------------------------------------- */

int vmbus_guest_poll(void)
{
	struct vmbus_guest_chan *ch, *next;
	int n = 0;

	if (!vg.synic)
		return 0;
	while (n < MSGS_PER_POLL && take_message())
		n++;
	n += take_events();
	for (ch = vg.chans; ch; ch = next) {
		next = ch->next;
		if (!ch->cb || ch->in_cb || ch->failed || vmbus_ring_empty(&ch->in))
			continue;
		ch->in_cb = true;
		ch->cb(ch, ch->cb_ctx);
		ch->in_cb = false;
		n++;
	}
	return n;
}

/*
 * Polls a little before blocking: a WAIT costs an exit (~25 us on nested
 * hosts) plus a wake-up, while a host answer is often a few microseconds
 * away. Guest code at CPL3 runs natively, so the spin is cheap.
 */
#define SPIN_POLLS 512

int vmbus_guest_wait(vmbus_guest_cond_cb *cond, void *ctx, uint64_t timeout)
{
	struct deadline d;
	uint64_t left;

	for (int i = 0; i < SPIN_POLLS; i++) {
		vmbus_guest_poll();
		if (cond(ctx))
			return 0;
	}
	deadline_start(&d, timeout);
	for (;;) {
		vmbus_guest_poll();
		if (cond(ctx))
			return 0;
		left = deadline_left(&d);
		if (!left)
			return -ETIMEDOUT;
		deadline_sleep(&d, left);
	}
}

void vmbus_guest_idle(uint64_t timeout)
{
	for (int i = 0; i < SPIN_POLLS; i++)
		if (vmbus_guest_poll())
			return;
	fab_wait(timeout);
	vmbus_guest_poll();
}

void vmbus_guest_set_msg_tap(vmbus_guest_msg_cb *cb, void *ctx)
{
	vg.tap = cb;
	vg.tap_ctx = ctx;
}

void vmbus_guest_get_stats(struct vmbus_guest_stats *out)
{
	*out = vg.stats;
}

/* ---- connection ---------------------------------------------------------------- */

static bool contact_done(void *ctx)
{
	(void)ctx;
	return vmbus_client_connect_status(&vg.client) != -EINPROGRESS;
}

static bool offers_done(void *ctx)
{
	(void)ctx;
	return vmbus_client_offers_status(&vg.client) != -EINPROGRESS;
}

int vmbus_guest_init(uint64_t timeout)
{
	static const struct vmbus_client_ops ops = { .send = post_cb };
	struct vmbus_client_config cfg = {
		.target_vcpu = 0,
		.msg_sint = VMBUS_MESSAGE_SINT,
	};
	struct deadline d;
	int rc;

	if (vg.ready)
		return 0;
	if (!vg.synic) {
		rc = synic_init();
		if (rc)
			return rc;
	}
	rc = vmbus_client_init(&vg.client, &cfg, &ops, NULL, vg.offers, VMBUS_GUEST_MAX_OFFERS,
			       vg.gpadls, VMBUS_GUEST_MAX_GPADLS);
	if (rc)
		return rc;

	deadline_start(&d, timeout);
	rc = vmbus_client_connect(&vg.client);
	if (rc)
		return rc;
	rc = vmbus_guest_wait(contact_done, NULL, deadline_left(&d));
	if (rc)
		return rc;
	rc = vmbus_client_connect_status(&vg.client);
	if (rc)
		return rc;

	rc = vmbus_client_request_offers(&vg.client);
	if (rc)
		return rc;
	rc = vmbus_guest_wait(offers_done, NULL, deadline_left(&d));
	if (rc)
		return rc;
	rc = vmbus_client_offers_status(&vg.client);
	if (rc)
		return rc;
	vg.ready = true;
	return 0;
}

bool vmbus_guest_ready(void)
{
	return vg.ready;
}

uint32_t vmbus_guest_version(void)
{
	return vg.ready ? vmbus_client_version(&vg.client) : 0;
}

struct vmbus_client *vmbus_guest_client(void)
{
	return &vg.client;
}

int vmbus_guest_find_offer(const struct vmbus_guid *if_type, uint32_t after_relid,
			   const struct vmbus_client_chan **out)
{
	if (!vg.ready)
		return -ENOTCONN;
	return vmbus_client_find_offer(&vg.client, if_type, after_relid, out);
}

void vmbus_guest_print_offers(void)
{
	char type[VMBUS_GUID_STR_LEN];

	for (size_t i = 0; i < VMBUS_GUEST_MAX_OFFERS; i++) {
		const struct vmbus_client_chan *o = &vg.offers[i];

		if (!o->relid)
			continue;
		vmbus_guid_format(&o->if_type, type);
		printf("vmbus: offer relid=%u type=%s conn=0x%x%s\n", o->relid, type, o->conn_id,
		       o->rescinded ? " (rescinded)" : "");
	}
}

static bool unload_done(void *ctx)
{
	(void)ctx;
	return vmbus_client_state(&vg.client) == VMBUS_CLIENT_IDLE;
}

int vmbus_guest_unload(uint64_t timeout)
{
	struct vmbus_guest_chan *ch, *next;
	int rc;

	if (!vg.ready)
		return -ENOTCONN;
	for (ch = vg.chans; ch; ch = ch->next)
		vmbus_client_close(&vg.client, ch->relid);
	rc = vmbus_client_unload(&vg.client);
	if (!rc)
		rc = vmbus_guest_wait(unload_done, NULL, timeout);
	/* Unusable either way; the memory is only safe to reuse once the
	 * host confirmed that it let go of every GPADL. */
	for (ch = vg.chans; ch; ch = next) {
		next = ch->next;
		if (!rc)
			free(ch->mem);
		free(ch);
	}
	vg.chans = NULL;
	vg.ready = false;
	vmbus_guest__ic_forget();
	return rc;
}

/* ---- GPADLs and opens ---------------------------------------------------------- */

static bool gpadl_settled(void *ctx)
{
	return vmbus_client_gpadl_status(&vg.client, *(uint32_t *)ctx, NULL) != -EINPROGRESS;
}

int vmbus_guest_gpadl_create(uint32_t relid, const uint64_t *pfns, uint32_t npfns, uint64_t timeout,
			     uint32_t *gpadl_id, uint32_t *host_status)
{
	uint32_t id, st = 0;
	int rc;

	if (!vg.ready)
		return -ENOTCONN;
	rc = vmbus_client_gpadl_create(&vg.client, relid, pfns, npfns, &id);
	if (rc)
		return rc;
	*gpadl_id = id;
	rc = vmbus_guest_wait(gpadl_settled, &id, timeout);
	if (rc)
		return rc;
	rc = vmbus_client_gpadl_status(&vg.client, id, &st);
	if (rc == -EIO) {
		if (host_status)
			*host_status = st;
		vmbus_client_gpadl_teardown(&vg.client, id); /* frees a refused id */
	}
	return rc;
}

static bool gpadl_gone(void *ctx)
{
	return vmbus_client_gpadl_status(&vg.client, *(uint32_t *)ctx, NULL) == -ENOENT;
}

int vmbus_guest_gpadl_teardown(uint32_t gpadl_id, uint64_t timeout)
{
	int rc;

	if (!vg.ready)
		return -ENOTCONN;
	rc = vmbus_client_gpadl_teardown(&vg.client, gpadl_id);
	if (rc)
		return rc;
	return vmbus_guest_wait(gpadl_gone, &gpadl_id, timeout);
}

static bool open_settled(void *ctx)
{
	return vmbus_client_open_status(&vg.client, *(uint32_t *)ctx, NULL) != -EINPROGRESS;
}

int vmbus_guest_open_raw(uint32_t relid, uint32_t gpadl_id, uint32_t downstream_offset,
			 const void *user_data, size_t user_len, uint64_t timeout,
			 uint32_t *host_status)
{
	uint32_t st = 0;
	int rc;

	if (!vg.ready)
		return -ENOTCONN;
	rc = vmbus_client_open(&vg.client, relid, gpadl_id, downstream_offset, 0, user_data,
			       user_len);
	if (rc)
		return rc;
	rc = vmbus_guest_wait(open_settled, &relid, timeout);
	if (rc)
		return rc;
	rc = vmbus_client_open_status(&vg.client, relid, &st);
	if (rc == -EIO && host_status)
		*host_status = st;
	return rc;
}

/* ---- channels ------------------------------------------------------------------ */

int vmbus_guest_chan_open(uint32_t relid, const struct vmbus_guest_chan_cfg *cfg,
			  struct vmbus_guest_chan **out)
{
	const struct vmbus_client_chan *offer;
	struct vmbus_guest_chan *ch;
	uint32_t send_pages = cfg && cfg->send_pages ? cfg->send_pages : VMBUS_GUEST_DEFAULT_PAGES;
	uint32_t recv_pages = cfg && cfg->recv_pages ? cfg->recv_pages : VMBUS_GUEST_DEFAULT_PAGES;
	uint64_t timeout = cfg && cfg->timeout ? cfg->timeout : VMBUS_GUEST_TIMEOUT;
	uint32_t npages, st = 0;
	uint64_t *pfns;
	int rc;

	if (!vg.ready)
		return -ENOTCONN;
	if (send_pages < VMBUS_GUEST_MIN_RING_PAGES || recv_pages < VMBUS_GUEST_MIN_RING_PAGES ||
	    send_pages > VMBUS_GPADL_MAX_WIRE_PFNS ||
	    recv_pages > VMBUS_GPADL_MAX_WIRE_PFNS - send_pages)
		return -EINVAL;
	if (vmbus_client_offer(&vg.client, relid, &offer))
		return -ENOENT;
	npages = send_pages + recv_pages;

	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->relid = relid;
	ch->conn_id = offer->conn_id;
	ch->send_pages = send_pages;
	ch->recv_pages = recv_pages;
	ch->mem = fab_alloc_pages(npages);
	pfns = malloc(npages * sizeof(*pfns));
	if (!ch->mem || !pfns) {
		rc = -ENOMEM;
		goto err_mem;
	}
	/* The guest creates both rings, so it resets both, before the host
	 * can see them. */
	rc = vmbus_ring_init(&ch->out, ch->mem, (size_t)send_pages * VMBUS_PAGE_SIZE);
	if (!rc)
		rc = vmbus_ring_init(&ch->in, ch->mem + (size_t)send_pages * VMBUS_PAGE_SIZE,
				     (size_t)recv_pages * VMBUS_PAGE_SIZE);
	if (rc)
		goto err_mem;
	vmbus_ring_reset(&ch->out);
	vmbus_ring_reset(&ch->in);
	for (uint32_t i = 0; i < npages; i++)
		pfns[i] = ((uintptr_t)ch->mem >> PAGE_SHIFT) + i;

	rc = vmbus_guest_gpadl_create(relid, pfns, npages, timeout, &ch->gpadl, &st);
	free(pfns);
	pfns = NULL;
	if (rc == -EIO) {
		printf("vmbus: relid %u: ring GPADL refused, status 0x%x\n", relid, st);
		goto err_mem;
	}
	if (rc == -ETIMEDOUT)
		goto err_leak; /* the host may still map the pages */
	if (rc)
		goto err_mem;

	rc = vmbus_guest_open_raw(relid, ch->gpadl, send_pages, cfg ? cfg->user_data : NULL,
				  cfg ? cfg->user_len : 0, timeout, &st);
	if (rc == -EIO)
		printf("vmbus: relid %u: open refused, status 0x%x\n", relid, st);
	if (rc == -ETIMEDOUT)
		vmbus_client_close(&vg.client, relid); /* cancel the pending open */
	if (rc)
		goto err_gpadl;

	ch->next = vg.chans;
	vg.chans = ch;
	*out = ch;
	return 0;

err_gpadl:
	if (vmbus_guest_gpadl_teardown(ch->gpadl, timeout))
		goto err_leak;
err_mem:
	free(pfns);
	free(ch->mem);
	free(ch);
	return rc;
err_leak:
	free(ch);
	return rc;
}

int vmbus_guest_chan_close(struct vmbus_guest_chan *ch)
{
	struct vmbus_guest_chan **pp;
	int rc;

	for (pp = &vg.chans; *pp; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	/* -ENOTCONN: the open was never completed or was closed already. */
	vmbus_client_close(&vg.client, ch->relid);
	rc = vmbus_guest_gpadl_teardown(ch->gpadl, VMBUS_GUEST_TIMEOUT);
	if (!rc)
		free(ch->mem);
	free(ch);
	return rc;
}

void vmbus_guest_chan_set_cb(struct vmbus_guest_chan *ch, vmbus_guest_chan_cb *cb, void *ctx)
{
	ch->cb = cb;
	ch->cb_ctx = ctx;
}

uint32_t vmbus_guest_chan_relid(const struct vmbus_guest_chan *ch)
{
	return ch->relid;
}

uint32_t vmbus_guest_chan_conn_id(const struct vmbus_guest_chan *ch)
{
	return ch->conn_id;
}

uint32_t vmbus_guest_chan_gpadl(const struct vmbus_guest_chan *ch)
{
	return ch->gpadl;
}

bool vmbus_guest_chan_failed(const struct vmbus_guest_chan *ch)
{
	return ch->failed;
}

void *vmbus_guest_chan_ring_mem(const struct vmbus_guest_chan *ch, uint32_t *send_pages,
				uint32_t *recv_pages)
{
	if (send_pages)
		*send_pages = ch->send_pages;
	if (recv_pages)
		*recv_pages = ch->recv_pages;
	return ch->mem;
}

void vmbus_guest_chan_signal(const struct vmbus_guest_chan *ch)
{
	fab_signal_doorbell(ch->conn_id);
}

/* One packet to send; ranges == NULL means in-band. */
struct send_args {
	uint64_t trans_id;
	uint16_t flags;
	const struct vmbus_gpa_range_desc *ranges;
	unsigned nranges;
	const void *data;
	uint32_t len;
};

static int send_once(struct vmbus_guest_chan *ch, const struct send_args *a, bool *signal)
{
	if (a->ranges)
		return vmbus_ring_send_gpa_direct(&ch->out, a->trans_id, a->flags, a->ranges,
						  a->nranges, a->data, a->len, signal);
	return vmbus_ring_send_inband(&ch->out, a->trans_id, a->flags, a->data, a->len, signal);
}

/*
 * Sends, waiting for space if needed (the protocol of vmbus_ring_want_space:
 * announce the need, then retry before the first wait). While waiting the
 * library polls, so the host never waits on a full inbound ring of ours
 * while we wait on our outbound one.
 */
static int chan_send(struct vmbus_guest_chan *ch, const struct send_args *a, uint64_t timeout)
{
	struct deadline d;
	bool signal = false;
	uint32_t need;
	uint64_t left;
	int rc;

	if (ch->failed)
		return -EPROTO;
	rc = send_once(ch, a, &signal);
	if (rc == -EAGAIN && timeout) {
		need = VMBUS_RING_INBAND_BYTES(a->len);
		rc = a->ranges ? vmbus_ring_gpa_direct_bytes(a->ranges, a->nranges, a->len, &need)
			       : 0;
		if (!rc)
			rc = vmbus_ring_want_space(&ch->out, need);
		if (!rc) {
			deadline_start(&d, timeout);
			while ((rc = send_once(ch, a, &signal)) == -EAGAIN) {
				vmbus_guest_poll();
				left = deadline_left(&d);
				if (!left) {
					rc = -ETIMEDOUT;
					break;
				}
				deadline_sleep(&d, left);
			}
			vmbus_ring_want_space(&ch->out, 0);
		}
	}
	if (rc == -EPROTO)
		ch->failed = true;
	if (!rc && signal)
		fab_signal_doorbell(ch->conn_id);
	return rc;
}

int vmbus_guest_send_inband(struct vmbus_guest_chan *ch, uint64_t trans_id, uint16_t flags,
			    const void *data, uint32_t len, uint64_t timeout)
{
	struct send_args a = { .trans_id = trans_id, .flags = flags, .data = data, .len = len };

	return chan_send(ch, &a, timeout);
}

int vmbus_guest_send_gpa_direct(struct vmbus_guest_chan *ch, uint64_t trans_id, uint16_t flags,
				const struct vmbus_gpa_range_desc *ranges, unsigned nranges,
				const void *data, uint32_t len, uint64_t timeout)
{
	struct send_args a = {
		.trans_id = trans_id,
		.flags = flags,
		.ranges = ranges,
		.nranges = nranges,
		.data = data,
		.len = len,
	};

	if (!ranges)
		return -EINVAL;
	return chan_send(ch, &a, timeout);
}

int vmbus_guest_recv(struct vmbus_guest_chan *ch, void *buf, size_t buflen, size_t *pkt_len)
{
	int rc;

	if (ch->failed)
		return -EPROTO;
	rc = vmbus_ring_read(&ch->in, buf, buflen, pkt_len);
	if (rc == 0) {
		if (vmbus_ring_read_done_signal(&ch->in,
						(uint32_t)*pkt_len + VMBUS_RING_TRAILER_LEN))
			fab_signal_doorbell(ch->conn_id);
	} else if (rc == -EPROTO) {
		ch->failed = true;
	}
	return rc;
}

static bool drained(void *ctx)
{
	struct vmbus_guest_chan *ch = ctx;

	/* bytes_to_write is 0 for a corrupt index: counts as done, and the
	 * caller sees the failure on its next send. */
	uint32_t free_bytes = vmbus_ring_bytes_to_write(&ch->out);

	return free_bytes == 0 || free_bytes == (ch->send_pages - 1) * VMBUS_PAGE_SIZE;
}

int vmbus_guest_chan_drain(struct vmbus_guest_chan *ch, uint64_t timeout)
{
	int rc;

	if (ch->failed)
		return -EPROTO;
	rc = vmbus_guest_wait(drained, ch, timeout);
	if (!rc && vmbus_ring_bytes_to_write(&ch->out) == 0) {
		ch->failed = true;
		return -EPROTO;
	}
	return rc;
}
