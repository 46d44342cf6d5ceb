// SPDX-License-Identifier: MIT
/*
 * The rvmbus stub (REMOTE.md): a disk of a local partition served by
 * another node. To the guest it is an ordinary SCSI controller channel; its
 * VSP forwards each packet the guest writes into its ring to the serving
 * node and writes what comes back into the guest's inbound ring.
 *
 * Requests (packets that ask for a completion) travel under a wire id of
 * the stub's, never reused, and stay in the outstanding list until their
 * completion comes back. That gives:
 *  - a late answer (to a request already failed here) matches nothing and
 *    is dropped, even if the guest reused its transaction id meanwhile;
 *  - a serving node that restarted (the link reports a reset) gets the
 *    binding again, the guest's storage handshake replayed (so the new VSP
 *    is in the state the guest left the old one in), and every outstanding
 *    request resent in order;
 *  - when the serving node has been unreachable (link down, or binding
 *    lost) for timeout_ms, every outstanding request and every new one
 *    completes here with CHECK CONDITION, NOT READY / LOGICAL UNIT
 *    COMMUNICATION FAILURE, which storage drivers report as an I/O error.
 *
 * Flow control: the serving node grants credits (packets it will queue);
 * the worker leaves packets in the guest's ring while it has none, so a
 * slow or absent server backs up into the guest's ring, not into memory.
 *
 * Threads: the VSP callbacks run on the channel's worker; link callbacks on
 * the data plane's loop. They share the stub's state under its lock; the
 * worker hands messages to the loop through the stub's queue.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "fab/log.h"
#include "fab/nodehv.h"
#include "fab/remote.h"
#include "fab/rvmbus_link.h"
#include "fab/util.h"
#include "fab/vmbus_ic.h"
#include "fab/vstor.h"
#include "fab/xport.h"
#include "partition_int.h"
#include "remote_int.h"
#include "storvsp.h"
#include "vsp.h"

#define REPLAY_BIT   (1ull << 63) /* wire ids of replayed handshake packets */
#define STUB_TICK_MS 50
#define N_INIT_OPS   4

/* A message for the link; wire is the request's wire id (0: untracked). */
struct out_msg {
	struct out_msg *next;
	uint16_t type;
	uint64_t wire;
	uint32_t len;
	uint8_t body[];
};

/* An outstanding request: the PKT body as sent (wire id inside). */
struct stub_req {
	struct stub_req *next;
	uint64_t wire, guest_tid;
	uint32_t len;
	uint8_t body[]; /* struct rch_pkt + VMBus packet */
};

/* Something the serving node sent, for the worker. */
struct in_msg {
	struct in_msg *next;
	struct rch_pkt_out h;
	uint8_t data[];
};

struct stub_link {
	struct stub_link *next;
	struct nhv_dp *dp;
	char node[FAB_NAME_MAX];
	char addr[NHV_CFG_ADDR_MAX];
	struct rvl *l;
	struct nhv_stub *stubs;
	uint32_t next_chan;
	bool up;
	ev_timer retry; /* the link's window was full */
};

struct stub_links {
	struct stub_link *head;
};

struct nhv_stub {
	struct nhv_stub *next; /* in link->stubs (loop thread) */
	struct nhv_dp *dp;
	struct stub_link *link;
	struct nhv_chan *ch;
	struct nhv_partition *p;
	char partition[FAB_NAME_MAX], device[FAB_NAME_MAX], export_name[FAB_NAME_MAX];
	enum nhv_dev_type type;
	bool native_rma; /* the transport moves bulk data itself: no inline data */
	uint32_t timeout_ms;
	uint32_t chan_id;
	struct xport_mr *mr;
	void *ram;
	uint64_t ram_len;

	pthread_mutex_t lock;
	bool open, bound, link_up;
	int64_t down_since; /* ms; 0 while bound and linked */
	int64_t credits;
	uint64_t next_wire;
	struct stub_req *reqs, *reqs_tail;
	unsigned nreqs;
	struct in_msg *in_head, *in_tail;
	struct stub_req *init_log[N_INIT_OPS]; /* the guest's successful handshake */
	uint16_t version;		       /* negotiated VSTOR version */
	bool outage_logged;
	/* Restored (migrated here): the binding waits until the partition
	 * runs, so the target does not touch the volume before the switch. */
	bool bind_deferred;
	struct out_msg *qhead, *qtail;
	bool flush_posted;
	ev_timer rebind;       /* loop thread: a refused bind is tried again */
	unsigned rebind_tries; /* loop thread */

	atomic_uint_fast64_t n_fwd, n_done, n_failed, n_late, n_rebinds;
	atomic_bool last_failed; /* the newest request outcome was a local failure */
	atomic_uint_fast64_t n_inline_out, n_inline_in; /* data bytes inside messages */
};

static void stub_flush(struct nhv_stub *s);
static void stub_rebind(struct nhv_stub *s);
static void rebind_cb(struct ev_loop *loop, ev_timer *w, int revents);

static const char *const init_names[N_INIT_OPS] = { "BEGIN_INITIALIZATION",
						    "QUERY_PROTOCOL_VERSION", "QUERY_PROPERTIES",
						    "END_INITIALIZATION" };

/* The handshake slot of a storage request, or -1. */
static int init_slot(const struct nhv_stub *s, const uint8_t *payload, uint32_t len)
{
	uint32_t op;

	if (s->type != NHV_DEV_STORAGE || len < 4)
		return -1;
	memcpy(&op, payload, 4);
	switch (op) {
	case VSTOR_OPERATION_BEGIN_INITIALIZATION:
		return 0;
	case VSTOR_OPERATION_QUERY_PROTOCOL_VERSION:
		return 1;
	case VSTOR_OPERATION_QUERY_PROPERTIES:
		return 2;
	case VSTOR_OPERATION_END_INITIALIZATION:
		return 3;
	default:
		return -1;
	}
}

/* The guest's VMBus packet inside a request (our own copy: trusted). */
static void req_pkt(const struct stub_req *r, struct vmbus_pkt_view *v)
{
	struct rch_pkt h;

	memcpy(&h, r->body, sizeof(h));
	if (vmbus_pkt_parse(r->body + sizeof(h), h.len, v))
		memset(v, 0, sizeof(*v));
}

/* Caller holds the lock. */
static bool timed_out(struct nhv_stub *s, int64_t now)
{
	return !(s->bound && s->link_up) && s->down_since &&
	       now - s->down_since >= (int64_t)s->timeout_ms;
}

/* ---- messages to the link ------------------------------------------------------ */

static void flush_job(void *arg)
{
	struct nhv_stub *s = arg;

	pthread_mutex_lock(&s->lock);
	s->flush_posted = false;
	pthread_mutex_unlock(&s->lock);
	stub_flush(s);
}

static struct out_msg *msg_new(uint16_t type, uint64_t wire, const void *a, size_t alen,
			       const void *b, size_t blen)
{
	struct out_msg *m = malloc(sizeof(*m) + alen + blen);

	if (!m)
		return NULL;
	m->next = NULL;
	m->type = type;
	m->wire = wire;
	m->len = (uint32_t)(alen + blen);
	memcpy(m->body, a, alen);
	if (blen)
		memcpy(m->body + alen, b, blen);
	return m;
}

/* Caller holds the lock. */
static void queue_msg(struct nhv_stub *s, struct out_msg *m)
{
	if (s->qtail)
		s->qtail->next = m;
	else
		s->qhead = m;
	s->qtail = m;
	if (!s->flush_posted && nhv_dp_post(s->dp, flush_job, s) == 0)
		s->flush_posted = true;
}

/* Caller holds the lock. */
static void queue_bind(struct nhv_stub *s)
{
	struct rch_bind b = { .chan = s->chan_id,
			      .type = s->type,
			      .ram_key_id = xport_mr_key(s->mr)->id,
			      .ram_len = xport_mr_key(s->mr)->length,
			      .ram_key_addr = xport_mr_key(s->mr)->addr };
	struct out_msg *m;

	snprintf(b.partition, sizeof(b.partition), "%s", s->partition);
	snprintf(b.device, sizeof(b.device), "%s", s->device);
	snprintf(b.export_name, sizeof(b.export_name), "%s", s->export_name);
	m = msg_new(RCH_T_BIND, 0, &b, sizeof(b), NULL, 0);
	if (m)
		queue_msg(s, m);
}

/* Loop thread: hands the queue to the link until its window is full. */
static void stub_flush(struct nhv_stub *s)
{
	struct stub_link *lk = s->link;

	for (;;) {
		struct out_msg *m;
		int rc;

		pthread_mutex_lock(&s->lock);
		m = s->qhead;
		pthread_mutex_unlock(&s->lock);
		if (!m || !lk)
			return;
		rc = rvl_send(lk->l, m->type, m->body, m->len);
		if (rc == -ENOBUFS) {
			if (!ev_is_active(&lk->retry)) {
				ev_timer_set(&lk->retry, 0.001, 0.);
				ev_timer_start(nhv_dp_loop(s->dp), &lk->retry);
			}
			return;
		}
		if (rc)
			fab_warn("remote %s/%s: cannot send to node %s: %s", s->partition,
				 s->device, lk->node, strerror(-rc));
		pthread_mutex_lock(&s->lock);
		if (s->qhead == m) {
			s->qhead = m->next;
			if (!s->qhead)
				s->qtail = NULL;
			free(m);
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* ---- the VSP (worker thread) ------------------------------------------------------ */

/* Completes a request here with the failure a storage driver understands. */
static void fail_request(struct nhv_stub *s, uint64_t guest_tid, const uint8_t *payload,
			 uint32_t len, uint16_t version)
{
	uint8_t out[sizeof(struct vstor_packet)];
	uint32_t out_len = 0;

	/* The echo device has no error reply: an empty completion. */
	if (s->type == NHV_DEV_STORAGE)
		storvsp_fail_request(version, payload, len, out, &out_len);
	atomic_fetch_add(&s->n_failed, 1);
	atomic_store(&s->last_failed, true);
	nhv_chan_send_completion(s->ch, guest_tid, out, out_len);
}

static void log_outage(struct nhv_stub *s, unsigned n)
{
	fab_warn("remote %s/%s: node %s unreachable for %u ms: failing %u outstanding "
		 "request(s) and new ones until it is back",
		 s->partition, s->device, s->link->node, s->timeout_ms, n);
}

#define MAX_INLINE_PFNS (RCH_MAX_INLINE / 4096 + 1)

/* The first GPA range of a packet whose buffer may travel inline (at most
 * RCH_MAX_INLINE bytes), its PFNs in pfns. */
static bool inline_range(const struct vmbus_pkt_view *v, struct vmbus_gpa_range_view *rv,
			 uint64_t *pfns)
{
	if (v->type != VM_PKT_DATA_USING_GPA_DIRECT || vmbus_pkt_range(v, 0, rv) ||
	    rv->byte_count > RCH_MAX_INLINE || rv->pfn_count > MAX_INLINE_PFNS)
		return false;
	for (uint32_t i = 0; i < rv->pfn_count; i++)
		pfns[i] = vmbus_gpa_range_pfn(rv, i);
	return true;
}

/* Bytes of the guest's buffer a storage request sends along: a SCSI
 * write's data (the serving node then needs no remote read of it). */
static uint32_t inline_out(const struct nhv_stub *s, const struct vmbus_pkt_view *v,
			   struct vmbus_gpa_range_view *rv, uint64_t *pfns)
{
	uint32_t op;

	if (s->type != NHV_DEV_STORAGE || s->native_rma || v->payload_len < 23 ||
	    !inline_range(v, rv, pfns))
		return 0;
	memcpy(&op, v->payload, 4);
	/* vstor_packet: operation at 0, the SRB at 12, its data_in at 10. */
	if (op != VSTOR_OPERATION_EXECUTE_SRB || v->payload[12 + 10] != VMSCSI_WRITE_TYPE)
		return 0;
	return rv->byte_count;
}

static void st_packet(struct nhv_chan *ch, const struct vmbus_pkt_view *v)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	bool want =
		v->type != VM_PKT_COMP && (v->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED);
	struct rch_pkt h = { .chan = s->chan_id, .len = v->pkt_len };
	struct vmbus_gpa_range_view rv;
	uint64_t pfns[MAX_INLINE_PFNS];
	struct stub_req *r = NULL;
	struct out_msg *m;
	uint64_t wire = 0;
	uint16_t version;

	if (v->pkt_len > RCH_MAX_PKT) {
		nhv_chan_fail(ch, "packet of %u bytes (limit %u)", v->pkt_len, RCH_MAX_PKT);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (timed_out(s, fab_mono_ms())) {
		bool log = !s->outage_logged;

		s->outage_logged = true;
		version = s->version;
		pthread_mutex_unlock(&s->lock);
		if (log)
			log_outage(s, 0);
		if (want)
			fail_request(s, v->trans_id, v->payload, v->payload_len, version);
		return;
	}
	if (want)
		wire = ++s->next_wire;
	h.inline_len = inline_out(s, v, &rv, pfns);
	m = msg_new(RCH_T_PKT, wire, &h, sizeof(h), v->pkt, v->pkt_len + h.inline_len);
	/* The guest's buffer goes right behind its packet; a buffer outside
	 * guest RAM stays behind (the serving node's remote read fails the
	 * same way and answers with an error). */
	if (m && h.inline_len &&
	    nhv_chan_copy_from_guest(ch, rv.byte_offset, rv.byte_count, pfns, 0,
				     m->body + sizeof(h) + v->pkt_len, h.inline_len)) {
		h.inline_len = 0;
		m->len = (uint32_t)(sizeof(h) + v->pkt_len);
		memcpy(m->body, &h, sizeof(h));
	}
	/* The outstanding copy keeps the packet, not the inline data: a
	 * resend (to a restarted node) lets that node read the guest's
	 * buffer, which stays put until the request completes. */
	if (h.inline_len)
		atomic_fetch_add(&s->n_inline_out, h.inline_len);
	if (want && m)
		r = malloc(sizeof(*r) + sizeof(h) + v->pkt_len);
	if (!m || (want && !r)) {
		pthread_mutex_unlock(&s->lock);
		free(m);
		nhv_chan_fail(ch, "out of memory");
		return;
	}
	if (want) {
		/* The wire id replaces the guest's transaction id. */
		struct vmbus_pkt_desc d;

		memcpy(&d, m->body + sizeof(h), sizeof(d));
		d.trans_id = wire;
		memcpy(m->body + sizeof(h), &d, sizeof(d));
		r->next = NULL;
		r->wire = wire;
		r->guest_tid = v->trans_id;
		r->len = (uint32_t)(sizeof(h) + v->pkt_len);
		memcpy(r->body, m->body, r->len);
		((struct rch_pkt *)r->body)->inline_len = 0;
		if (s->reqs_tail)
			s->reqs_tail->next = r;
		else
			s->reqs = r;
		s->reqs_tail = r;
		s->nreqs++;
	}
	s->credits--;
	queue_msg(s, m);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->n_fwd, 1);
}

static void deferred_bind_job(void *arg)
{
	struct nhv_stub *s = arg;

	if (s->link) {
		stub_rebind(s);
		stub_flush(s);
	}
}

/* A restored stub binds once its partition runs (the worker's first
 * wake-up) or when told to (nhv_stub_bind_now), whichever is first. */
static void bind_deferred(struct nhv_stub *s)
{
	bool go;

	pthread_mutex_lock(&s->lock);
	go = s->bind_deferred;
	s->bind_deferred = false;
	if (go)
		s->down_since = fab_mono_ms();
	pthread_mutex_unlock(&s->lock);
	if (go)
		nhv_dp_post(s->dp, deferred_bind_job, s);
}

static bool st_can_take(struct nhv_chan *ch)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	bool ok;

	/* Here, not in wake: a held channel's worker runs wake too. */
	bind_deferred(s);
	pthread_mutex_lock(&s->lock);
	ok = s->open && ((s->bound && s->link_up && s->credits > 0) || timed_out(s, fab_mono_ms()));
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* Takes the outstanding request with this wire id off the list. Caller
 * holds the lock. */
static struct stub_req *take_req(struct nhv_stub *s, uint64_t wire)
{
	struct stub_req *prev = NULL;

	for (struct stub_req *r = s->reqs; r; prev = r, r = r->next) {
		if (r->wire != wire)
			continue;
		if (prev)
			prev->next = r->next;
		else
			s->reqs = r->next;
		if (s->reqs_tail == r)
			s->reqs_tail = prev;
		s->nreqs--;
		return r;
	}
	return NULL;
}

/* A completion from the serving node (worker thread). */
static void on_completion(struct nhv_stub *s, const struct in_msg *im)
{
	uint64_t wire = im->h.trans_id;
	struct vmbus_pkt_view v;
	struct stub_req *r;
	uint32_t status = 1;
	uint64_t tid;
	int slot;

	if (im->h.len >= 12)
		memcpy(&status, im->data + 8, 4);
	if (wire & REPLAY_BIT) {
		if (status)
			fab_warn("remote %s/%s: node %s refused the replayed %s (status %#x)",
				 s->partition, s->device, s->link->node, init_names[(wire & 3)],
				 status);
		return;
	}
	pthread_mutex_lock(&s->lock);
	r = take_req(s, wire);
	if (!r) {
		pthread_mutex_unlock(&s->lock);
		atomic_fetch_add(&s->n_late, 1); /* failed here already */
		return;
	}
	tid = r->guest_tid;
	req_pkt(r, &v);
	if (im->h.inline_len) {
		/* The read's data, into the request's buffer before the
		 * completion that tells the guest it is there. */
		struct vmbus_gpa_range_view rv;
		uint64_t pfns[MAX_INLINE_PFNS];

		if (!v.payload || !inline_range(&v, &rv, pfns) ||
		    im->h.inline_len > rv.byte_count ||
		    nhv_chan_copy_to_guest(s->ch, rv.byte_offset, rv.byte_count, pfns, 0,
					   im->data + im->h.len, im->h.inline_len))
			fab_warn("remote %s/%s: node %s sent %u bytes of data the request "
				 "has no buffer for; dropped",
				 s->partition, s->device, s->link->node, im->h.inline_len);
		else
			atomic_fetch_add(&s->n_inline_in, im->h.inline_len);
	}
	/* The serving node may have written the request's buffers with RDMA,
	 * which neither KVM nor our copies see: mark them for migration. */
	if (v.type == VM_PKT_DATA_USING_GPA_DIRECT) {
		struct vmbus_gpa_range_view rv;

		for (uint32_t i = 0; i < v.range_count && !vmbus_pkt_range(&v, i, &rv); i++)
			for (uint32_t k = 0; k < rv.pfn_count; k++)
				nhv_dirty_mark(s->p, vmbus_gpa_range_pfn(&rv, k) * 4096, 4096);
	}
	slot = v.payload ? init_slot(s, v.payload, v.payload_len) : -1;
	if (slot >= 0 && status == 0) {
		/* Keep the guest's successful handshake for a new VSP. */
		if (slot == 0)
			for (int i = 0; i < N_INIT_OPS; i++) {
				free(s->init_log[i]);
				s->init_log[i] = NULL;
			}
		if (slot == 1 && v.payload_len >= 14)
			memcpy(&s->version, v.payload + 12, 2);
		free(s->init_log[slot]);
		s->init_log[slot] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->n_done, 1);
	atomic_store(&s->last_failed, false);
	nhv_chan_send_completion(s->ch, tid, im->data, im->h.len);
	free(r);
}

/* Delivers what the serving node sent, then fails what waited too long. */
static void st_wake(struct nhv_chan *ch)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	struct stub_req *failed = NULL;
	struct in_msg *im;
	uint16_t version;
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	im = s->in_head;
	s->in_head = s->in_tail = NULL;
	pthread_mutex_unlock(&s->lock);
	while (im) {
		struct in_msg *next = im->next;

		if (im->h.kind == RCH_OUT_COMPLETION)
			on_completion(s, im);
		else
			nhv_chan_send_inband(ch, im->h.trans_id, im->h.flags, im->data, im->h.len);
		free(im);
		im = next;
	}

	pthread_mutex_lock(&s->lock);
	if (s->reqs && timed_out(s, fab_mono_ms())) {
		failed = s->reqs;
		n = s->nreqs;
		s->reqs = s->reqs_tail = NULL;
		s->nreqs = 0;
		s->outage_logged = true;
	}
	version = s->version;
	pthread_mutex_unlock(&s->lock);
	if (n)
		log_outage(s, n);
	while (failed) {
		struct stub_req *next = failed->next;
		struct vmbus_pkt_view v;

		req_pkt(failed, &v);
		fail_request(s, failed->guest_tid, v.payload, v.payload ? v.payload_len : 0,
			     version);
		free(failed);
		failed = next;
	}
}

static void st_tick(struct nhv_chan *ch)
{
	st_wake(ch);
}

/* Quiet for a checkpoint: no request waits for the serving node and no
 * answer waits for the worker. */
static bool st_idle(struct nhv_chan *ch)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	bool idle;

	pthread_mutex_lock(&s->lock);
	idle = !s->reqs && !s->in_head;
	pthread_mutex_unlock(&s->lock);
	return idle;
}

/* Caller holds the lock. Frees requests, deliveries and the handshake. */
static void drop_state(struct nhv_stub *s)
{
	while (s->reqs) {
		struct stub_req *r = s->reqs;

		s->reqs = r->next;
		free(r);
	}
	s->reqs_tail = NULL;
	s->nreqs = 0;
	while (s->in_head) {
		struct in_msg *im = s->in_head;

		s->in_head = im->next;
		free(im);
	}
	s->in_tail = NULL;
	for (int i = 0; i < N_INIT_OPS; i++) {
		free(s->init_log[i]);
		s->init_log[i] = NULL;
	}
	s->version = 0;
}

static int st_open(struct nhv_chan *ch)
{
	struct nhv_stub *s = nhv_chan_dev(ch);

	pthread_mutex_lock(&s->lock);
	drop_state(s);
	s->open = true;
	s->bound = false;
	s->credits = 0;
	s->outage_logged = false;
	s->down_since = fab_mono_ms();
	queue_bind(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void st_close(struct nhv_chan *ch)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	struct rch_unbind u = { .chan = s->chan_id };
	struct out_msg *m = msg_new(RCH_T_UNBIND, 0, &u, sizeof(u), NULL, 0);

	pthread_mutex_lock(&s->lock);
	s->open = false;
	s->bound = false;
	drop_state(s);
	if (m)
		queue_msg(s, m);
	pthread_mutex_unlock(&s->lock);
}


/* ---- checkpoints (live migration) ------------------------------------------------ */

/*
 * What the guest negotiated with the VSP behind the stub is not here but
 * on the serving node; what the stub keeps of it is the guest's own
 * successful handshake (init_log). That is its saved state:
 *   u32 STUB_STATE_MAGIC, u32 n, then n x { u32 slot, u32 len, len bytes:
 *   struct rch_pkt + the guest's VMBus packet, as kept in init_log }.
 * A restored stub (on the target node) binds the export anew and replays
 * those packets to the fresh shadow channel there before any of the
 * guest's requests, so the new VSP is in the state the guest left the old
 * one in: "resume the negotiated storage protocol" is the replay (see
 * REMOTE.md, Migration). Quiesce left no request outstanding, so nothing
 * else is owed to the guest.
 */
#define STUB_STATE_MAGIC 0x53545542u /* "STUB" */
#define STUB_INIT_MAX	 512u	     /* bytes of one kept handshake packet */

static int st_save(struct nhv_chan *ch, uint8_t *buf, size_t cap, size_t *len)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	uint32_t n = 0;
	size_t at = 8;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if (s->reqs || s->in_head) {
		rc = -EBUSY; /* not quiet: quiesce should have seen to it */
		goto out;
	}
	for (int i = 0; i < N_INIT_OPS; i++) {
		struct stub_req *r = s->init_log[i];
		uint32_t slot = (uint32_t)i;

		if (!r)
			continue;
		if (at + 8 + r->len > cap) {
			rc = -ENOSPC;
			goto out;
		}
		memcpy(buf + at, &slot, 4);
		memcpy(buf + at + 4, &r->len, 4);
		memcpy(buf + at + 8, r->body, r->len);
		at += 8 + r->len;
		n++;
	}
	{
		uint32_t magic = STUB_STATE_MAGIC;

		memcpy(buf, &magic, 4);
		memcpy(buf + 4, &n, 4);
	}
	*len = at;
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Untrusted bytes (they crossed the network): every packet is parsed as
 * the worker would parse the guest's. */
static int st_restore(struct nhv_chan *ch, const uint8_t *buf, size_t len)
{
	struct nhv_stub *s = nhv_chan_dev(ch);
	struct stub_req *log[N_INIT_OPS] = { 0 };
	uint32_t magic, n;
	uint16_t version = 0;
	size_t at = 8;
	int rc = -EBADMSG;

	if (len < 8)
		return -EBADMSG;
	memcpy(&magic, buf, 4);
	memcpy(&n, buf + 4, 4);
	if (magic != STUB_STATE_MAGIC || n > N_INIT_OPS)
		return -EBADMSG;
	for (uint32_t k = 0; k < n; k++) {
		struct vmbus_pkt_view v;
		struct rch_pkt h;
		uint32_t slot, plen;
		struct stub_req *r;

		if (len - at < 8)
			goto out;
		memcpy(&slot, buf + at, 4);
		memcpy(&plen, buf + at + 4, 4);
		at += 8;
		if (slot >= N_INIT_OPS || log[slot] || plen < sizeof(h) || plen > STUB_INIT_MAX ||
		    plen > len - at)
			goto out;
		memcpy(&h, buf + at, sizeof(h));
		if (h.len != plen - sizeof(h) || h.inline_len ||
		    vmbus_pkt_parse(buf + at + sizeof(h), h.len, &v) || !v.payload ||
		    init_slot(s, v.payload, v.payload_len) != (int)slot)
			goto out;
		if (slot == 1) {
			if (v.payload_len < 14)
				goto out;
			memcpy(&version, v.payload + 12, 2);
		}
		r = malloc(sizeof(*r) + plen);
		if (!r) {
			rc = -ENOMEM;
			goto out;
		}
		r->next = NULL;
		r->wire = 0;
		r->guest_tid = v.trans_id;
		r->len = plen;
		memcpy(r->body, buf + at, plen);
		/* Our channel id on our link, not the source's. */
		h.chan = s->chan_id;
		memcpy(r->body, &h, sizeof(h));
		log[slot] = r;
		at += plen;
	}
	if (at != len)
		goto out;
	pthread_mutex_lock(&s->lock);
	drop_state(s);
	memcpy(s->init_log, log, sizeof(log));
	s->version = version;
	s->open = true;
	s->bound = false;
	s->credits = 0;
	s->outage_logged = false;
	s->down_since = 0; /* no outage while the guest does not run */
	s->bind_deferred = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
out:
	for (int i = 0; i < N_INIT_OPS; i++)
		free(log[i]);
	return rc;
}

struct free_args {
	struct nhv_stub *s;
};

static int free_job(void *arg)
{
	struct nhv_stub *s = arg;
	struct stub_link *lk = s->link;

	if (lk)
		for (struct nhv_stub **pp = &lk->stubs; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				break;
			}
	ev_timer_stop(nhv_dp_loop(s->dp), &s->rebind);
	/* The queue's last messages (an UNBIND) go out before we forget it. */
	stub_flush(s);
	nhv_dp_ram_put(s->dp, s->mr);
	return 0;
}

static void st_free(void *dev)
{
	struct nhv_stub *s = dev;

	fab_info("remote %s/%s (node %s): %llu packets forwarded, %llu completed, "
		 "%llu failed here, %llu late answers dropped, %llu rebinds",
		 s->partition, s->device, s->link ? s->link->node : "?",
		 (unsigned long long)atomic_load(&s->n_fwd),
		 (unsigned long long)atomic_load(&s->n_done),
		 (unsigned long long)atomic_load(&s->n_failed),
		 (unsigned long long)atomic_load(&s->n_late),
		 (unsigned long long)atomic_load(&s->n_rebinds));
	nhv_dp_call(s->dp, free_job, s);
	pthread_mutex_lock(&s->lock);
	drop_state(s);
	while (s->qhead) {
		struct out_msg *m = s->qhead;

		s->qhead = m->next;
		free(m);
	}
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct nhv_vsp_ops stub_echo_ops = {
	.name = "echo (remote)",
	.type_guid = FAB_ECHO_GUID_BYTES,
	.tick_ms = STUB_TICK_MS,
	.open = st_open,
	.packet = st_packet,
	.can_take = st_can_take,
	.idle = st_idle,
	.wake = st_wake,
	.tick = st_tick,
	.close = st_close,
	.free = st_free,
	.save = st_save,
	.restore = st_restore,
};

static const struct nhv_vsp_ops stub_ops = {
	.name = "storage (remote)",
	.type_guid = VSTOR_SCSI_GUID_BYTES,
	.tick_ms = STUB_TICK_MS,
	.open = st_open,
	.packet = st_packet,
	.can_take = st_can_take,
	.idle = st_idle,
	.wake = st_wake,
	.tick = st_tick,
	.close = st_close,
	.free = st_free,
	.save = st_save,
	.restore = st_restore,
};

/* ---- the link (loop thread) ------------------------------------------------------ */

static struct nhv_stub *find_stub(struct stub_link *lk, uint32_t chan)
{
	for (struct nhv_stub *s = lk->stubs; s; s = s->next)
		if (s->chan_id == chan)
			return s;
	return NULL;
}

static void l_deliver(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg)
{
	struct stub_link *lk = arg;
	struct nhv_stub *s;
	uint32_t chan;

	if (len < 4) {
		fab_warn("rvmbus link to %s: short message of type %#x", lk->node, type);
		return;
	}
	memcpy(&chan, body, 4);
	s = find_stub(lk, chan);
	if (!s)
		return; /* a channel closed meanwhile */
	switch (type) {
	case RCH_T_BIND_OK: {
		struct rch_bind_ok ok;
		bool was_bound;

		if (len != sizeof(ok))
			break;
		memcpy(&ok, body, sizeof(ok));
		pthread_mutex_lock(&s->lock);
		if (!s->open) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		was_bound = s->bound;
		if (ok.status == 0) {
			s->bound = true;
			s->credits += ok.credits;
			if (s->link_up)
				s->down_since = 0;
			s->outage_logged = false;
		} else {
			s->bound = false;
			if (!s->down_since)
				s->down_since = fab_mono_ms();
		}
		pthread_mutex_unlock(&s->lock);
		if (ok.status == 0)
			fab_info("remote %s/%s: bound to export %s on node %s", s->partition,
				 s->device, s->export_name, lk->node);
		else if (s->rebind_tries == 0) /* once per outage, not per retry */
			fab_err("remote %s/%s: node %s %s export %s: %s; I/O fails after "
				"%u ms",
				s->partition, s->device, lk->node, was_bound ? "lost" : "refused",
				s->export_name,
				ok.status == -EACCES ? "access denied (the controller gave the "
						       "volume to another node, or to none yet)"
						     : strerror(-ok.status),
				s->timeout_ms);
		if (ok.status == 0) {
			s->rebind_tries = 0;
		} else if (!ev_is_active(&s->rebind)) {
			/* 0.25 s doubling to 4 s */
			double d =
				0.25 * (double)(1u << (s->rebind_tries < 4 ? s->rebind_tries : 4));

			s->rebind_tries++;
			ev_timer_set(&s->rebind, d, 0.);
			ev_timer_start(nhv_dp_loop(s->dp), &s->rebind);
		}
		nhv_chan_kick(s->ch);
		break;
	}
	case RCH_T_CREDIT: {
		struct rch_credit cr;

		if (len != sizeof(cr))
			break;
		memcpy(&cr, body, sizeof(cr));
		pthread_mutex_lock(&s->lock);
		s->credits += cr.n;
		pthread_mutex_unlock(&s->lock);
		nhv_chan_kick(s->ch);
		break;
	}
	case RCH_T_PKT: {
		struct in_msg *im;
		struct rch_pkt_out h;

		if (len < sizeof(h))
			break;
		memcpy(&h, body, sizeof(h));
		if ((uint64_t)h.len + h.inline_len != len - sizeof(h) || h.len > RCH_MAX_PKT ||
		    h.inline_len > RCH_MAX_INLINE || h.credits > RCH_CREDITS || h.reserved ||
		    (h.inline_len && h.kind != RCH_OUT_COMPLETION) ||
		    (h.kind != RCH_OUT_INBAND && h.kind != RCH_OUT_COMPLETION)) {
			fab_warn("rvmbus link to %s: malformed PKT for %s/%s dropped", lk->node,
				 s->partition, s->device);
			break;
		}
		im = malloc(sizeof(*im) + h.len + h.inline_len);
		if (!im)
			break;
		im->next = NULL;
		im->h = h;
		memcpy(im->data, (const uint8_t *)body + sizeof(h), h.len + h.inline_len);
		pthread_mutex_lock(&s->lock);
		if (!s->open) {
			pthread_mutex_unlock(&s->lock);
			free(im);
			break;
		}
		if (s->in_tail)
			s->in_tail->next = im;
		else
			s->in_head = im;
		s->in_tail = im;
		s->credits += h.credits;
		pthread_mutex_unlock(&s->lock);
		nhv_chan_kick(s->ch);
		break;
	}
	default:
		fab_warn("rvmbus link to %s: unknown message type %#x", lk->node, type);
	}
}

static void l_state(struct rvl *l, bool up, void *arg)
{
	struct stub_link *lk = arg;
	int64_t now = fab_mono_ms();

	if (up != lk->up)
		fab_info("rvmbus link to node %s (%s) %s", lk->node, lk->addr, up ? "up" : "down");
	lk->up = up;
	for (struct nhv_stub *s = lk->stubs; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		s->link_up = up;
		if (!up && !s->down_since)
			s->down_since = now;
		if (up && s->bound)
			s->down_since = 0;
		pthread_mutex_unlock(&s->lock);
		nhv_chan_kick(s->ch);
		if (up)
			stub_flush(s);
	}
}

/* Bind again, replay the guest's handshake, resend every outstanding
 * request (loop thread). */
static void stub_rebind(struct nhv_stub *s)
{
	struct out_msg *keep = NULL, **kt = &keep, *m, *next;
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	s->bound = false;
	s->credits = 0;
	if (!s->down_since)
		s->down_since = fab_mono_ms();
	/* Unsent requests are resent below from the outstanding list. */
	for (m = s->qhead; m; m = next) {
		next = m->next;
		m->next = NULL;
		if (m->wire || m->type == RCH_T_BIND || m->type == RCH_T_UNBIND) {
			free(m);
		} else {
			*kt = m;
			kt = &m->next;
		}
	}
	s->qhead = s->qtail = NULL;
	if (s->open) {
		queue_bind(s);
		for (int i = 0; i < N_INIT_OPS; i++) {
			struct stub_req *r = s->init_log[i];
			struct vmbus_pkt_desc d;

			if (!r)
				continue;
			m = msg_new(RCH_T_PKT, 0, r->body, r->len, NULL, 0);
			if (!m)
				continue;
			memcpy(&d, m->body + sizeof(struct rch_pkt), sizeof(d));
			d.trans_id = REPLAY_BIT | (uint64_t)i;
			memcpy(m->body + sizeof(struct rch_pkt), &d, sizeof(d));
			queue_msg(s, m);
			n++;
		}
		for (struct stub_req *r = s->reqs; r; r = r->next) {
			m = msg_new(RCH_T_PKT, r->wire, r->body, r->len, NULL, 0);
			if (m) {
				queue_msg(s, m);
				n++;
			}
		}
		while (keep) {
			m = keep;
			keep = m->next;
			m->next = NULL;
			queue_msg(s, m);
			n++;
		}
		s->credits = -(int64_t)n;
	} else {
		while (keep) {
			m = keep;
			keep = m->next;
			free(m);
		}
	}
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->n_rebinds, 1);
}

/* The serving node lost our session (it restarted). */
static void l_reset(struct rvl *l, void *arg)
{
	struct stub_link *lk = arg;

	fab_warn("rvmbus link to node %s: the node restarted; binding its devices again", lk->node);
	for (struct nhv_stub *s = lk->stubs; s; s = s->next)
		stub_rebind(s);
}

/* A refused bind is tried again while the guest keeps the channel open:
 * the controller's VolumeAccess to the serving node and our BIND travel on
 * different connections, and access may be granted a moment later. */
static void rebind_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct nhv_stub *s = w->data;
	bool again;

	pthread_mutex_lock(&s->lock);
	again = s->open && !s->bound;
	pthread_mutex_unlock(&s->lock);
	if (again && s->link) {
		stub_rebind(s);
		stub_flush(s);
	}
}

static const struct rvl_ops link_ops = {
	.deliver_cb = l_deliver,
	.state_cb = l_state,
	.reset_cb = l_reset,
};

static void link_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stub_link *lk = w->data;

	for (struct nhv_stub *s = lk->stubs; s; s = s->next)
		stub_flush(s);
}

void nhv_stub_links_log_status(struct stub_links *sl)
{
	for (struct stub_link *lk = sl->head; lk; lk = lk->next) {
		uint64_t connects, resent, dups;
		char st[400];

		rvl_counts(lk->l, &connects, &resent, &dups);
		nhv_conn_stats_str(rvl_conn(lk->l), st, sizeof(st));
		fab_info("link to node %s at %s: %s, %llu connections, %llu messages resent, "
			 "%llu duplicates dropped; %s",
			 lk->node, lk->addr, lk->up ? "up" : "down", (unsigned long long)connects,
			 (unsigned long long)resent, (unsigned long long)dups, st);
		for (struct nhv_stub *s = lk->stubs; s; s = s->next) {
			unsigned nreqs;
			int64_t credits;

			pthread_mutex_lock(&s->lock);
			nreqs = s->nreqs;
			credits = s->credits;
			pthread_mutex_unlock(&s->lock);
			fab_info("  remote %s/%s (export %s): %llu forwarded, %llu completed, %u "
				 "outstanding, %lld credits, %llu failed here, %llu late answers "
				 "dropped, %llu rebinds, inline bytes out %llu in %llu",
				 s->partition, s->device, s->export_name,
				 (unsigned long long)atomic_load(&s->n_fwd),
				 (unsigned long long)atomic_load(&s->n_done), nreqs,
				 (long long)credits, (unsigned long long)atomic_load(&s->n_failed),
				 (unsigned long long)atomic_load(&s->n_late),
				 (unsigned long long)atomic_load(&s->n_rebinds),
				 (unsigned long long)atomic_load(&s->n_inline_out),
				 (unsigned long long)atomic_load(&s->n_inline_in));
		}
	}
}

void nhv_stub_links_free(struct stub_links *sl)
{
	if (!sl)
		return;
	while (sl->head) {
		struct stub_link *lk = sl->head;

		sl->head = lk->next;
		for (struct nhv_stub *s = lk->stubs; s; s = s->next)
			s->link = NULL;
		ev_timer_stop(nhv_dp_loop(lk->dp), &lk->retry);
		rvl_stop(lk->l);
		free(lk);
	}
	free(sl);
}

/* The link to (node, address), started on first use. */
static int get_link(struct nhv_dp *dp, const struct nhv_cfg_remote *r, struct stub_link **out)
{
	struct stub_links **slot = nhv_dp_links_slot(dp);
	struct stub_link *lk;
	int rc;

	if (!*slot) {
		*slot = calloc(1, sizeof(**slot));
		if (!*slot)
			return -ENOMEM;
	}
	for (lk = (*slot)->head; lk; lk = lk->next)
		if (!strcmp(lk->node, r->node) && !strcmp(lk->addr, r->address)) {
			*out = lk;
			return 0;
		}
	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return -ENOMEM;
	lk->dp = dp;
	snprintf(lk->node, sizeof(lk->node), "%s", r->node);
	snprintf(lk->addr, sizeof(lk->addr), "%s", r->address);
	ev_timer_init(&lk->retry, link_retry_cb, 0., 0.);
	lk->retry.data = lk;
	rc = rvl_client_start(nhv_dp_loop(dp), nhv_dp_xport(dp), r->address, r->node, NULL,
			      &link_ops, lk, &lk->l);
	if (rc) {
		free(lk);
		return rc;
	}
	lk->next = (*slot)->head;
	(*slot)->head = lk;
	*out = lk;
	return 0;
}

struct attach_args {
	struct nhv_stub *s;
	const struct nhv_cfg_remote *r;
};

static int attach_job(void *arg)
{
	struct attach_args *a = arg;
	struct nhv_stub *s = a->s;
	struct stub_link *lk;
	int rc;

	/* The guest's RAM is registered once for all its remote devices. */
	rc = nhv_dp_ram_get(s->dp, s->ram, s->ram_len, &s->mr);
	if (rc)
		return rc;
	rc = get_link(s->dp, a->r, &lk);
	if (rc) {
		nhv_dp_ram_put(s->dp, s->mr);
		return rc;
	}
	s->link = lk;
	s->chan_id = ++lk->next_chan;
	ev_timer_init(&s->rebind, rebind_cb, 0., 0.);
	s->rebind.data = s;
	return 0;
}

/* Once the channel exists: link callbacks may now reach the stub. */
static int insert_job(void *arg)
{
	struct nhv_stub *s = arg;

	pthread_mutex_lock(&s->lock);
	s->link_up = s->link->up;
	pthread_mutex_unlock(&s->lock);
	s->next = s->link->stubs;
	s->link->stubs = s;
	return 0;
}

static int detach_job(void *arg)
{
	return free_job(arg);
}

static void bind_now_job(void *arg)
{
	struct nhv_stub *s = arg;

	/* Only a refused bind waiting for its retry: one in flight is left
	 * to finish (a second BIND would race it). */
	if (!ev_is_active(&s->rebind) || !s->link)
		return;
	ev_timer_stop(nhv_dp_loop(s->dp), &s->rebind);
	s->rebind_tries = 0;
	rebind_cb(nhv_dp_loop(s->dp), &s->rebind, 0);
}

void nhv_stub_bind_now(struct nhv_stub *s)
{
	bool deferred;

	pthread_mutex_lock(&s->lock);
	deferred = s->bind_deferred;
	/* The guest was paused until now: its outage clock starts here. */
	if (!deferred && !s->bound && s->down_since)
		s->down_since = fab_mono_ms();
	pthread_mutex_unlock(&s->lock);
	if (deferred)
		bind_deferred(s);
	else
		nhv_dp_post(s->dp, bind_now_job, s);
}

void nhv_stub_stats(struct nhv_stub *s, struct nhv_stub_stats *out)
{
	bool timed;

	pthread_mutex_lock(&s->lock);
	out->bound = s->bound;
	out->link_up = s->link_up;
	timed = s->open && timed_out(s, fab_mono_ms());
	pthread_mutex_unlock(&s->lock);
	out->forwarded = atomic_load(&s->n_fwd);
	out->completed = atomic_load(&s->n_done);
	out->failed = atomic_load(&s->n_failed);
	out->rebinds = atomic_load(&s->n_rebinds);
	out->failing = timed || atomic_load(&s->last_failed);
}

int nhv_stub_attach(struct nhv_dp *dp, struct nhv_partition *p, const char *partition,
		    const struct nhv_cfg_remote *r, struct nhv_stub **out)
{
	struct nhv_stub *s;
	struct attach_args a;
	int rc;

	if (fab_name_valid(partition) || fab_name_valid(r->device) || fab_name_valid(r->node) ||
	    fab_name_valid(r->export_name) || !r->timeout_ms)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dp = dp;
	s->p = p;
	snprintf(s->partition, sizeof(s->partition), "%s", partition);
	snprintf(s->device, sizeof(s->device), "%s", r->device);
	snprintf(s->export_name, sizeof(s->export_name), "%s", r->export_name);
	s->timeout_ms = r->timeout_ms;
	s->type = r->type;
	s->native_rma = xport_flags(nhv_dp_xport(dp)) & XPORT_F_NATIVE_RMA;
	s->ram = nhv_partition_ram(p, &s->ram_len);
	pthread_mutex_init(&s->lock, NULL);
	a.s = s;
	a.r = r;
	rc = nhv_dp_call(dp, attach_job, &a);
	if (rc) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	rc = nhv_vsp_attach(p, s->type == NHV_DEV_ECHO ? &stub_echo_ops : &stub_ops, s, &s->ch);
	if (rc) {
		nhv_dp_call(dp, detach_job, s);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	/* From here on the partition owns the stub (st_free). */
	if (out)
		*out = s;
	return nhv_dp_call(dp, insert_job, s);
}
