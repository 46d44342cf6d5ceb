// SPDX-License-Identifier: MIT
/*
 * One VMBus channel of a partition, host side: the ring GPADL mapped into
 * our address space, a worker thread that drains the guest's ring and hands
 * packets to the VSP, and the send path into the guest's inbound ring.
 *
 * The ring pages are mapped from the guest-RAM memfd page by page at
 * consecutive addresses, so rings that wrap and GPADLs whose pages are not
 * contiguous in guest memory both read as one flat buffer. The guest can
 * write the rings at any time: the ring code copies every packet out before
 * validating it.
 *
 * Signals: the guest rings the channel's doorbell (an ioeventfd matched on
 * the connection id, no exit to us) or makes HvSignalEvent (wake_fd); we
 * signal the guest by setting the channel's relid bit in its SINT2 event
 * flags and waking the vCPU.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "chan_int.h"
#include "fab/log.h"
#include "fab/util.h"
#include "partition_int.h"

#define RX_MAX		(64u << 10) /* largest packet we take from a guest */
#define SEND_TIMEOUT_MS 5000

int nhv_chan_new(struct nhv_partition *p, const struct nhv_vsp_ops *ops, void *dev, uint32_t relid,
		 uint32_t conn_id, struct nhv_chan **out)
{
	struct nhv_chan *ch = calloc(1, sizeof(*ch));
	int rc;

	if (!ch)
		return -ENOMEM;
	ch->p = p;
	ch->ops = ops;
	ch->dev = dev;
	ch->relid = relid;
	ch->conn_id = conn_id;
	ch->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->wake_fd < 0) {
		rc = -errno;
		free(ch);
		return rc;
	}
	rc = nhv_partition_doorbell_add(p, conn_id, &ch->doorbell_fd);
	if (rc) {
		close(ch->wake_fd);
		free(ch);
		return rc;
	}
	pthread_mutex_init(&ch->send_lock, NULL);
	pthread_mutex_init(&ch->q_lock, NULL);
	pthread_cond_init(&ch->q_cond, NULL);
	*out = ch;
	return 0;
}

void *nhv_chan_dev(struct nhv_chan *ch)
{
	return ch->dev;
}

struct nhv_partition *nhv_chan_partition(struct nhv_chan *ch)
{
	return ch->p;
}

uint32_t nhv_chan_relid(struct nhv_chan *ch)
{
	return ch->relid;
}

void nhv_chan_fail(struct nhv_chan *ch, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	if (atomic_exchange(&ch->failed, true))
		return; /* logged once */
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (ch->shadow) {
		fab_warn("%s: %s channel failed: %s", ch->label, ch->ops->name, why);
		if (ch->shadow->failed)
			ch->shadow->failed(ch->shadow_ctx, why);
		pthread_mutex_lock(&ch->q_lock);
		pthread_cond_broadcast(&ch->q_cond);
		pthread_mutex_unlock(&ch->q_lock);
		return;
	}
	fab_warn("partition %llu: %s channel %u failed: %s", (unsigned long long)ch->p->id,
		 ch->ops->name, ch->relid, why);
	nhv_chan_kick(ch);
}

void nhv_chan_kick(struct nhv_chan *ch)
{
	uint64_t one = 1;

	atomic_fetch_add(&ch->n_signals_in, 1);
	if (write(ch->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd overflow cannot happen at 1 per kick; nothing to do */
	}
}

void nhv_chan_signal_guest(struct nhv_chan *ch)
{
	if (ch->shadow)
		return; /* the guest's node signals its guest */
	atomic_fetch_add(&ch->n_signals_out, 1);
	nhv_synic_signal_event(ch->p, ch->target_vp, VMBUS_MESSAGE_SINT, ch->relid);
}

/* ---- sending ------------------------------------------------------------- */

enum send_kind { SEND_INBAND, SEND_COMPLETION };

static int chan_send(struct nhv_chan *ch, enum send_kind kind, uint64_t trans_id, uint16_t flags,
		     const void *data, uint32_t len)
{
	int64_t deadline = fab_mono_ms() + SEND_TIMEOUT_MS;
	bool signal = false, waiting = false;
	int rc;

	if (ch->shadow) {
		if (atomic_load(&ch->failed) || atomic_load(&ch->stop))
			return -ENOTCONN;
		rc = ch->shadow->send(ch->shadow_ctx, kind == SEND_COMPLETION, trans_id, flags,
				      data, len, ch->out_inl_len ? ch->out_inl : NULL,
				      ch->out_inl_len);
		/* The collected data travels with this send only. */
		ch->out_inl_on = false;
		ch->out_inl_len = 0;
		if (!rc)
			atomic_fetch_add(&ch->n_tx, 1);
		return rc;
	}
	pthread_mutex_lock(&ch->send_lock);
	if (!ch->open || atomic_load(&ch->failed)) {
		pthread_mutex_unlock(&ch->send_lock);
		return -ENOTCONN;
	}
	/* A held channel is being checkpointed: only its worker may still
	 * finish what it has in hand; anyone else tries again later. */
	if (atomic_load(&ch->hold) && !pthread_equal(pthread_self(), ch->worker)) {
		pthread_mutex_unlock(&ch->send_lock);
		return -EAGAIN;
	}
	for (;;) {
		if (kind == SEND_INBAND)
			rc = vmbus_ring_send_inband(&ch->in, trans_id, flags, data, len, &signal);
		else
			rc = vmbus_ring_send_completion(&ch->in, trans_id, data, len, &signal);
		if (rc != -EAGAIN)
			break;
		/* Full: ask the guest to tell us about space, and look again
		 * now and then (the doorbell wakes the worker, which may be
		 * this very thread). */
		if (!waiting) {
			vmbus_ring_want_space(&ch->in, VMBUS_RING_INBAND_BYTES(len));
			waiting = true;
		}
		if (atomic_load(&ch->stop) || atomic_load(&ch->failed)) {
			rc = -ENOTCONN; /* closing: not the guest's fault */
			break;
		}
		if (fab_mono_ms() > deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		usleep(200);
	}
	if (waiting)
		vmbus_ring_want_space(&ch->in, 0);
	pthread_mutex_unlock(&ch->send_lock);
	if (rc == -EPROTO)
		nhv_chan_fail(ch, "guest corrupted its inbound ring's read index");
	else if (rc == -ETIMEDOUT)
		nhv_chan_fail(ch, "guest did not make room in its inbound ring for %d s",
			      SEND_TIMEOUT_MS / 1000);
	if (rc)
		return rc;
	atomic_fetch_add(&ch->n_tx, 1);
	if (signal)
		nhv_chan_signal_guest(ch);
	return 0;
}

int nhv_chan_send_inband(struct nhv_chan *ch, uint64_t trans_id, uint16_t flags, const void *data,
			 uint32_t len)
{
	return chan_send(ch, SEND_INBAND, trans_id, flags, data, len);
}

int nhv_chan_send_completion(struct nhv_chan *ch, uint64_t trans_id, const void *data, uint32_t len)
{
	return chan_send(ch, SEND_COMPLETION, trans_id, 0, data, len);
}

/* Seconds between complaints about a worker that does not stop. */
#define JOIN_WARN_S 10

/* ---- guest buffers ------------------------------------------------------- */

/* A shadow channel's copy: one remote operation per run of consecutive
 * pages (a guest buffer is usually contiguous in guest memory, and each
 * remote operation costs a round trip). */
static int shadow_copy(struct nhv_chan *ch, const uint64_t *pfns, uint64_t pos, uint8_t *buf,
		       size_t len, bool to_guest)
{
	while (len) {
		uint64_t pfn = pfns[pos / FAB_PAGE_SIZE], in = pos % FAB_PAGE_SIZE;
		size_t n = FAB_PAGE_SIZE - in < len ? (size_t)(FAB_PAGE_SIZE - in) : len;
		int rc;

		if (pfn > (UINT64_MAX >> 12))
			return -EFAULT;
		/* Extend over the following pages while they follow in RAM. */
		while (n < len && pfns[(pos + n) / FAB_PAGE_SIZE] == pfn + (in + n) / FAB_PAGE_SIZE)
			n += len - n < FAB_PAGE_SIZE ? len - n : FAB_PAGE_SIZE;
		rc = ch->shadow->copy(ch->shadow_ctx, to_guest, pfn * FAB_PAGE_SIZE + in, buf, n);
		if (rc)
			return rc;
		buf += n;
		len -= n;
		pos += n;
	}
	return 0;
}

/* Walks [off, off + len) of a GPA range page by page. */
static int range_copy(struct nhv_chan *ch, uint32_t byte_offset, uint32_t byte_count,
		      const uint64_t *pfns, uint64_t off, uint8_t *buf, size_t len, bool to_guest)
{
	uint64_t pos;

	if (off > byte_count || len > byte_count - off)
		return -EINVAL;
	pos = (uint64_t)byte_offset + off; /* from the start of the first page */
	if (ch->shadow) {
		bool first = ch->cur_range && byte_offset == ch->cur_offset &&
			     byte_count == ch->cur_count && pfns[0] == ch->cur_pfn0;

		if (first && !to_guest && ch->in_inl && off + len <= ch->in_inl_len) {
			memcpy(buf, ch->in_inl + off, len);
			return 0;
		}
		if (first && to_guest && ch->out_inl_on && off == ch->out_inl_len &&
		    off + len <= NHV_SHADOW_MAX_INLINE) {
			memcpy(ch->out_inl + off, buf, len);
			ch->out_inl_len = (uint32_t)(off + len);
			return 0;
		}
		return shadow_copy(ch, pfns, pos, buf, len, to_guest);
	}
	while (len) {
		uint64_t pfn = pfns[pos / FAB_PAGE_SIZE], in = pos % FAB_PAGE_SIZE;
		size_t n = FAB_PAGE_SIZE - in < len ? (size_t)(FAB_PAGE_SIZE - in) : len;
		uint8_t *g;

		if (pfn > (UINT64_MAX >> 12))
			return -EFAULT;
		g = nhv_guest_range(ch->p, pfn * FAB_PAGE_SIZE + in, n);
		if (!g)
			return -EFAULT;
		if (to_guest) {
			memcpy(g, buf, n);
			/* After the write: a round that fetched the mark
			 * before it sees the page again in the next one. */
			nhv_dirty_mark(ch->p, pfn * FAB_PAGE_SIZE + in, n);
		} else {
			memcpy(buf, g, n);
		}
		buf += n;
		len -= n;
		pos += n;
	}
	return 0;
}

int nhv_chan_copy_to_guest(struct nhv_chan *ch, uint32_t byte_offset, uint32_t byte_count,
			   const uint64_t *pfns, uint64_t off, const void *src, size_t len)
{
	return range_copy(ch, byte_offset, byte_count, pfns, off, (uint8_t *)src, len, true);
}

int nhv_chan_copy_from_guest(struct nhv_chan *ch, uint32_t byte_offset, uint32_t byte_count,
			     const uint64_t *pfns, uint64_t off, void *dst, size_t len)
{
	return range_copy(ch, byte_offset, byte_count, pfns, off, dst, len, false);
}

/* ---- worker -------------------------------------------------------------- */

static void drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

/* Takes every packet out of the guest's ring. Returns false once failed. */
static bool drain(struct nhv_chan *ch)
{
	for (;;) {
		struct vmbus_pkt_view v;
		size_t len;
		int rc;

		if (atomic_load(&ch->hold))
			break; /* checkpoint: leave packets in the guest's ring */
		if (ch->ops->can_take && !ch->ops->can_take(ch))
			break; /* the VSP kicks us when it can take more */
		vmbus_ring_set_interrupt_mask(&ch->out, true);
		rc = vmbus_ring_read(&ch->out, ch->rxbuf, RX_MAX, &len);
		if (rc == -EAGAIN) {
			/* A packet written while masked was not signalled. */
			vmbus_ring_set_interrupt_mask(&ch->out, false);
			if (!vmbus_ring_empty(&ch->out))
				continue;
			break;
		}
		if (rc == -EMSGSIZE) {
			nhv_chan_fail(ch, "packet of %zu bytes (limit %u)", len, RX_MAX);
			return false;
		}
		if (rc) {
			nhv_chan_fail(ch, "corrupt outbound ring (%s)", strerror(-rc));
			return false;
		}
		/* Tell a guest waiting for space at once, not after the drain:
		 * the handler below may block sending to that same guest. */
		if (vmbus_ring_read_done_signal(&ch->out, (uint32_t)len + VMBUS_RING_TRAILER_LEN))
			nhv_chan_signal_guest(ch);
		if (vmbus_pkt_parse(ch->rxbuf, len, &v)) {
			nhv_chan_fail(ch, "malformed packet");
			return false;
		}
		atomic_fetch_add(&ch->n_rx, 1);
		ch->ops->packet(ch, &v);
		if (atomic_load(&ch->failed) || atomic_load(&ch->stop))
			return false;
	}
	return true;
}

/* Held: tells the checkpoint whether this channel is quiet. A VSP with an
 * idle op keeps finishing its work in flight (wake) until it is idle. */
static bool held(struct nhv_chan *ch, bool ok)
{
	bool quiet;

	if (!atomic_load(&ch->hold)) {
		if (ch->quiet) {
			pthread_mutex_lock(&ch->q_lock);
			ch->quiet = false;
			pthread_mutex_unlock(&ch->q_lock);
		}
		return false;
	}
	if (ok && ch->ops->idle && ch->ops->wake && !atomic_load(&ch->failed))
		ch->ops->wake(ch);
	quiet = !ok || atomic_load(&ch->failed) || !ch->ops->idle || ch->ops->idle(ch);
	pthread_mutex_lock(&ch->q_lock);
	ch->quiet = quiet;
	pthread_cond_broadcast(&ch->q_cond);
	pthread_mutex_unlock(&ch->q_lock);
	return true;
}

static void *worker_main(void *arg)
{
	struct nhv_chan *ch = arg;
	struct pollfd fds[2] = { { .fd = ch->doorbell_fd, .events = POLLIN },
				 { .fd = ch->wake_fd, .events = POLLIN } };
	int64_t next_tick = ch->ops->tick_ms ? fab_mono_ms() + ch->ops->tick_ms : 0;
	bool ok = true;

	if (!ch->restored && ch->ops->open && ch->ops->open(ch)) {
		nhv_chan_fail(ch, "device refused to open");
		ok = false;
	}
	while (!atomic_load(&ch->stop)) {
		int timeout = -1;

		if (held(ch, ok)) {
			/* Woken by a kick (release, stop, work coming back);
			 * look again now and then all the same. */
			if (poll(fds, 2, 20) < 0 && errno != EINTR)
				break;
			/* Doorbells need not be kept: after release the loop
			 * drains the ring before it polls again. */
			drain_fd(ch->doorbell_fd);
			drain_fd(ch->wake_fd);
			continue;
		}
		if (ok && ch->ops->wake && !atomic_load(&ch->failed))
			ch->ops->wake(ch);
		if (ok && !atomic_load(&ch->failed))
			ok = drain(ch);
		if (next_tick) {
			int64_t now = fab_mono_ms();

			if (now >= next_tick) {
				if (ok && !atomic_load(&ch->failed))
					ch->ops->tick(ch);
				next_tick = now + ch->ops->tick_ms;
			}
			timeout = (int)(next_tick - now);
			if (timeout < 0)
				timeout = 0;
		}
		if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
			nhv_chan_fail(ch, "poll: %s", strerror(errno));
			break;
		}
		drain_fd(ch->doorbell_fd);
		drain_fd(ch->wake_fd);
	}
	return NULL;
}

int nhv_chan_open(struct nhv_chan *ch, const uint64_t *pfns, uint32_t npfns,
		  uint32_t downstream_pages, uint32_t target_vp)
{
	int ram_fd = nhv_partition_ram_fd(ch->p);
	uint64_t ram_pages = ch->p->ram_bytes / FAB_PAGE_SIZE;
	uint8_t *map;
	int rc;

	if (ch->open)
		return -EBUSY;
	/* Each ring needs its control page and at least one data page. */
	if (downstream_pages < 2 || npfns < downstream_pages + 2 || npfns > 65536 ||
	    target_vp >= ch->p->nvcpus)
		return -EINVAL;
	for (uint32_t i = 0; i < npfns; i++)
		if (pfns[i] >= ram_pages)
			return -EFAULT;
	map = mmap(NULL, (size_t)npfns * FAB_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	if (map == MAP_FAILED)
		return -errno;
	for (uint32_t i = 0; i < npfns; i++) {
		if (mmap(map + (size_t)i * FAB_PAGE_SIZE, FAB_PAGE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, ram_fd,
			 (off_t)(pfns[i] * FAB_PAGE_SIZE)) == MAP_FAILED) {
			rc = -errno;
			munmap(map, (size_t)npfns * FAB_PAGE_SIZE);
			return rc;
		}
	}
	/* The guest initialised both control pages; we only look. */
	if (vmbus_ring_init(&ch->out, map, (size_t)downstream_pages * FAB_PAGE_SIZE) ||
	    vmbus_ring_init(&ch->in, map + (size_t)downstream_pages * FAB_PAGE_SIZE,
			    (size_t)(npfns - downstream_pages) * FAB_PAGE_SIZE)) {
		munmap(map, (size_t)npfns * FAB_PAGE_SIZE);
		return -EINVAL;
	}
	ch->rxbuf = malloc(RX_MAX);
	if (!ch->rxbuf) {
		munmap(map, (size_t)npfns * FAB_PAGE_SIZE);
		return -ENOMEM;
	}
	ch->map = map;
	ch->map_len = (size_t)npfns * FAB_PAGE_SIZE;
	ch->target_vp = target_vp;
	ch->downstream_pages = downstream_pages;
	atomic_store(&ch->failed, false);
	atomic_store(&ch->stop, false);
	pthread_mutex_lock(&ch->send_lock);
	ch->open = true;
	pthread_mutex_unlock(&ch->send_lock);
	rc = -pthread_create(&ch->worker, NULL, worker_main, ch);
	if (rc) {
		pthread_mutex_lock(&ch->send_lock);
		ch->open = false;
		pthread_mutex_unlock(&ch->send_lock);
		free(ch->rxbuf);
		ch->rxbuf = NULL;
		munmap(map, ch->map_len);
		ch->map = NULL;
		return rc;
	}
	return 0;
}

/*
 * The worker sees stop within 20 ms when held and within one packet or one
 * full-ring wait (SEND_TIMEOUT_MS) otherwise. Anything longer is a bug in
 * a VSP: say so, with what the channel was doing, rather than hang
 * silently. The join itself cannot be given up: the worker still uses the
 * ring mapping and the VSP's state, which are freed after it.
 */
static void join_worker(struct nhv_chan *ch)
{
	struct timespec until;
	int waited = 0, rc;

	for (;;) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += JOIN_WARN_S;
		rc = pthread_timedjoin_np(ch->worker, NULL, &until);
		if (rc != ETIMEDOUT)
			break;
		waited += JOIN_WARN_S;
		fab_err("%s channel %u: worker has not stopped after %d s (held %d, failed %d)",
			ch->ops->name, ch->relid, waited, (int)atomic_load(&ch->hold),
			(int)atomic_load(&ch->failed));
	}
}

void nhv_chan_close(struct nhv_chan *ch)
{
	if (!ch->open)
		return;
	atomic_store(&ch->stop, true);
	nhv_chan_kick(ch);
	join_worker(ch);
	if (ch->ops->close)
		ch->ops->close(ch);
	pthread_mutex_lock(&ch->send_lock);
	ch->open = false;
	pthread_mutex_unlock(&ch->send_lock);
	munmap(ch->map, ch->map_len);
	ch->map = NULL;
	free(ch->rxbuf);
	ch->rxbuf = NULL;
}

void nhv_chan_free(struct nhv_chan *ch)
{
	if (!ch)
		return;
	nhv_chan_close(ch);
	if (ch->ops->free)
		ch->ops->free(ch->dev);
	close(ch->wake_fd);
	pthread_cond_destroy(&ch->q_cond);
	pthread_mutex_destroy(&ch->q_lock);
	pthread_mutex_destroy(&ch->send_lock);
	free(ch);
}

void nhv_chan_hold(struct nhv_chan *ch, bool hold)
{
	if (hold && !atomic_load(&ch->hold)) {
		/* Whatever an earlier hold found is stale now. A channel
		 * held already stays quiet: it takes nothing new. */
		pthread_mutex_lock(&ch->q_lock);
		ch->quiet = false;
		pthread_mutex_unlock(&ch->q_lock);
	}
	atomic_store(&ch->hold, hold);
	nhv_chan_kick(ch);
}

bool nhv_chan_wait_quiet(struct nhv_chan *ch, int64_t deadline_ms)
{
	bool quiet;

	pthread_mutex_lock(&ch->q_lock);
	for (;;) {
		struct timespec ts;
		int64_t left = deadline_ms - fab_mono_ms();

		quiet = ch->quiet || !ch->open || atomic_load(&ch->failed);
		if (quiet || left <= 0)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&ch->q_cond, &ch->q_lock, &ts);
	}
	pthread_mutex_unlock(&ch->q_lock);
	return quiet;
}

/* ---- shadow channels (shadow.h) ------------------------------------------- */

/* Notes the packet's first GPA range and its inline data, both ways. */
static void shadow_begin(struct nhv_chan *ch, const struct vmbus_pkt_view *v,
			 const struct shadow_pkt *q)
{
	struct vmbus_gpa_range_view rv;

	if (v->type != VM_PKT_DATA_USING_GPA_DIRECT || vmbus_pkt_range(v, 0, &rv))
		return;
	ch->cur_range = true;
	ch->cur_offset = rv.byte_offset;
	ch->cur_count = rv.byte_count;
	ch->cur_pfn0 = vmbus_gpa_range_pfn(&rv, 0);
	if (q->inl_len) {
		ch->in_inl = q->bytes + q->len;
		ch->in_inl_len = q->inl_len;
	}
	if (rv.byte_count <= NHV_SHADOW_MAX_INLINE && !ch->no_inline) {
		if (!ch->out_inl)
			ch->out_inl = malloc(NHV_SHADOW_MAX_INLINE);
		ch->out_inl_on = ch->out_inl != NULL;
		ch->out_inl_len = 0;
	}
}

static void *shadow_main(void *arg)
{
	struct nhv_chan *ch = arg;
	bool ok = true;

	if (ch->ops->open && ch->ops->open(ch)) {
		nhv_chan_fail(ch, "device refused to open");
		ok = false;
	}
	for (;;) {
		struct shadow_pkt *q;
		struct vmbus_pkt_view v;

		pthread_mutex_lock(&ch->q_lock);
		while (!ch->q_head && !atomic_load(&ch->stop))
			pthread_cond_wait(&ch->q_cond, &ch->q_lock);
		if (atomic_load(&ch->stop)) {
			pthread_mutex_unlock(&ch->q_lock);
			break;
		}
		q = ch->q_head;
		ch->q_head = q->next;
		if (!ch->q_head)
			ch->q_tail = NULL;
		pthread_mutex_unlock(&ch->q_lock);
		if (ok && !atomic_load(&ch->failed)) {
			if (vmbus_pkt_parse(q->bytes, q->len, &v) || v.pkt_len != q->len) {
				nhv_chan_fail(ch, "malformed packet");
			} else {
				shadow_begin(ch, &v, q);
				atomic_fetch_add(&ch->n_rx, 1);
				ch->ops->packet(ch, &v);
				ch->cur_range = false;
				ch->in_inl = NULL;
				ch->in_inl_len = 0;
				ch->out_inl_on = false;
				ch->out_inl_len = 0;
			}
		}
		free(q);
		pthread_mutex_lock(&ch->q_lock);
		ch->q_len--;
		pthread_mutex_unlock(&ch->q_lock);
		if (ch->shadow->done)
			ch->shadow->done(ch->shadow_ctx);
	}
	return NULL;
}

int nhv_shadow_new(const struct nhv_vsp_ops *ops, void *dev, const struct nhv_shadow_ops *sops,
		   void *ctx, const char *label, unsigned flags, struct nhv_chan **out)
{
	struct nhv_chan *ch;
	int rc;

	if (!ops || !ops->packet || !sops || !sops->send || !sops->copy)
		return -EINVAL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->ops = ops;
	ch->dev = dev;
	ch->shadow = sops;
	ch->shadow_ctx = ctx;
	ch->no_inline = flags & NHV_SHADOW_NO_INLINE;
	ch->doorbell_fd = -1;
	ch->wake_fd = -1;
	snprintf(ch->label, sizeof(ch->label), "%s", label ? label : "shadow");
	pthread_mutex_init(&ch->send_lock, NULL);
	pthread_mutex_init(&ch->q_lock, NULL);
	pthread_cond_init(&ch->q_cond, NULL);
	ch->open = true;
	rc = -pthread_create(&ch->worker, NULL, shadow_main, ch);
	if (rc) {
		pthread_cond_destroy(&ch->q_cond);
		pthread_mutex_destroy(&ch->q_lock);
		pthread_mutex_destroy(&ch->send_lock);
		free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

int nhv_shadow_push(struct nhv_chan *ch, const void *pkt, size_t len, const void *inl,
		    size_t inl_len)
{
	struct shadow_pkt *q;

	if (atomic_load(&ch->failed) || atomic_load(&ch->stop))
		return -EPIPE;
	if (!inl)
		inl_len = 0;
	q = malloc(sizeof(*q) + len + inl_len);
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->len = len;
	q->inl_len = inl_len;
	memcpy(q->bytes, pkt, len);
	if (inl_len)
		memcpy(q->bytes + len, inl, inl_len);
	pthread_mutex_lock(&ch->q_lock);
	if (ch->q_tail)
		ch->q_tail->next = q;
	else
		ch->q_head = q;
	ch->q_tail = q;
	ch->q_len++;
	pthread_cond_signal(&ch->q_cond);
	pthread_mutex_unlock(&ch->q_lock);
	return 0;
}

unsigned nhv_shadow_queued(struct nhv_chan *ch)
{
	unsigned n;

	pthread_mutex_lock(&ch->q_lock);
	n = ch->q_len;
	pthread_mutex_unlock(&ch->q_lock);
	return n;
}

void nhv_shadow_free(struct nhv_chan *ch)
{
	if (!ch)
		return;
	pthread_mutex_lock(&ch->q_lock);
	atomic_store(&ch->stop, true);
	pthread_cond_broadcast(&ch->q_cond);
	pthread_mutex_unlock(&ch->q_lock);
	pthread_join(ch->worker, NULL);
	while (ch->q_head) {
		struct shadow_pkt *q = ch->q_head;

		ch->q_head = q->next;
		free(q);
	}
	if (ch->ops->close)
		ch->ops->close(ch);
	if (ch->ops->free)
		ch->ops->free(ch->dev);
	free(ch->out_inl);
	pthread_cond_destroy(&ch->q_cond);
	pthread_mutex_destroy(&ch->q_lock);
	pthread_mutex_destroy(&ch->send_lock);
	free(ch);
}
