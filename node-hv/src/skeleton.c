// SPDX-License-Identifier: MIT
/*
 * The rvmbus skeleton (REMOTE.md): this node's exports served to guests on
 * other nodes. Each BIND becomes a shadow channel (shadow.h) running the
 * unmodified storage VSP; its sends go back as PKT messages, its copies of
 * guest buffers become remote reads and writes of the guest's RAM through
 * the link's connection.
 *
 * Threads: everything here runs on the data plane's loop thread except the
 * shadow ops (sk_send, sk_copy, sk_done, sk_failed), which run on a
 * channel's worker. A worker hands messages to the loop through its
 * channel's queue. A copy that finds the link down waits for it to come
 * back: a link cut stalls the request, it does not fail it (the stub on the
 * guest's node decides when a request has waited too long).
 *
 * Teardown: a channel's worker may be waiting for this very loop (a remote
 * read in flight), so a channel is stopped on a thread of its own and freed
 * on the loop once that thread is done.
 *
 * Exports: those of the config file may be bound by any node of the
 * cluster (its certificate authenticates it). Those added at run time (the
 * controller's volumes) are fenced: only the node the controller last
 * granted access may bind them, nobody until it has, and granting another
 * node closes the channels of everyone else. That keeps a partition on a
 * node the controller declared lost from writing a volume its replacement
 * now uses. The agent changes exports from the main thread through
 * nhv_dp_call(); the list itself is only touched on the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <ev.h>

#include "fab/log.h"
#include "fab/remote.h"
#include "fab/rvmbus_link.h"
#include "fab/rvmbus_rmem.h"
#include "fab/xport.h"
#include "migrate.h"
#include "remote_int.h"
#include "shadow.h"
#include "echo.h"
#include "storage.h"
#include "vsp.h"

struct out_msg {
	struct out_msg *next;
	uint16_t type;
	uint32_t len;
	uint8_t body[];
};

struct skel_export {
	struct skel_export *next;
	struct nhv_cfg_export e;
	bool fenced;		   /* added at run time: access below applies */
	char access[FAB_NAME_MAX]; /* fenced: the only node that may bind; "" nobody */
};

struct skel_chan {
	struct skel_chan *next; /* in sess->chans (loop thread) */
	struct skel_sess *ss;	/* NULL once the session is gone */
	struct nhv_skel *sk;
	uint32_t id;
	struct skel_export *exp; /* valid while the channel is on its session */
	char label[300];
	struct nhv_chan *ch;
	struct rmem *m;
	struct xport_key key;
	atomic_bool closing;
	atomic_uint_fast64_t n_pkts, n_rread, n_rwritten; /* this channel's */

	/* Link generations, for copies waiting on a reconnect. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t gen;

	/* Worker -> loop. */
	pthread_mutex_t qlock;
	struct out_msg *qhead, *qtail;
	uint32_t credits_due;
	bool flush_posted;
	bool pkt_credited; /* worker: this packet's credit went with a completion */
};

struct skel_sess {
	struct skel_sess *next;
	struct nhv_skel *sk;
	struct rvl *l;
	char peer[FAB_NAME_MAX];
	struct skel_chan *chans;
	bool up;
	ev_timer retry; /* the link's window was full: flush again */
};

struct nhv_skel {
	struct nhv_dp *dp;
	struct rvl_server *srv;
	struct skel_export *exports;
	struct skel_sess *sessions;
	unsigned reaping; /* channels stopping on their own threads */
	bool shutting_down;
	atomic_uint_fast64_t n_sessions, n_channels, n_packets, n_read, n_written;
};

static void flush_chan(struct skel_chan *c);

/* ---- worker side ------------------------------------------------------------ */

static void flush_job(void *arg)
{
	struct skel_chan *c = arg;

	pthread_mutex_lock(&c->qlock);
	c->flush_posted = false;
	pthread_mutex_unlock(&c->qlock);
	flush_chan(c);
}

/* Caller holds qlock. */
static void want_flush(struct skel_chan *c)
{
	if (!c->flush_posted && nhv_dp_post(c->sk->dp, flush_job, c) == 0)
		c->flush_posted = true;
}

static int sk_send(void *ctx, bool completion, uint64_t trans_id, uint16_t flags, const void *data,
		   uint32_t len, const void *inl, uint32_t inl_len)
{
	struct skel_chan *c = ctx;
	struct rch_pkt_out h = { .chan = c->id,
				 .kind = completion ? RCH_OUT_COMPLETION : RCH_OUT_INBAND,
				 .flags = flags,
				 .trans_id = trans_id,
				 .len = len,
				 .inline_len = inl ? inl_len : 0 };
	struct out_msg *m;

	if (len > RCH_MAX_PKT || h.inline_len > RCH_MAX_INLINE)
		return -EMSGSIZE;
	if (atomic_load(&c->closing))
		return -ENOTCONN;
	m = malloc(sizeof(*m) + sizeof(h) + len + h.inline_len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->type = RCH_T_PKT;
	m->len = (uint32_t)sizeof(h) + len + h.inline_len;
	memcpy(m->body, &h, sizeof(h));
	memcpy(m->body + sizeof(h), data, len);
	if (h.inline_len)
		memcpy(m->body + sizeof(h) + len, inl, h.inline_len);
	pthread_mutex_lock(&c->qlock);
	/* Credits ride along: what is owed, plus this packet's own if this
	 * completes it (a request is off the queue once it is answered). */
	h.credits = c->credits_due;
	c->credits_due = 0;
	if (completion && !c->pkt_credited) {
		h.credits++;
		c->pkt_credited = true;
	}
	memcpy(m->body, &h, sizeof(h));
	if (c->qtail)
		c->qtail->next = m;
	else
		c->qhead = m;
	c->qtail = m;
	want_flush(c);
	pthread_mutex_unlock(&c->qlock);
	return 0;
}

static int sk_copy(void *ctx, bool to_guest, uint64_t gpa, void *buf, size_t len)
{
	struct skel_chan *c = ctx;

	for (;;) {
		uint64_t gen;
		int rc;

		if (atomic_load(&c->closing))
			return -ENOTCONN;
		pthread_mutex_lock(&c->lock);
		gen = c->gen;
		pthread_mutex_unlock(&c->lock);
		rc = to_guest ? rmem_write(c->m, gpa, buf, len) : rmem_read(c->m, gpa, buf, len);
		if (rc == 0) {
			atomic_fetch_add(to_guest ? &c->sk->n_read : &c->sk->n_written, len);
			atomic_fetch_add(to_guest ? &c->n_rwritten : &c->n_rread, len);
			return 0;
		}
		if (rc != -ENOTCONN)
			return rc == -EIO ? -EFAULT : rc;
		/* The link is down: wait until it is back (a new generation)
		 * or the channel goes away. */
		pthread_mutex_lock(&c->lock);
		while (c->gen == gen && !atomic_load(&c->closing)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
		pthread_mutex_unlock(&c->lock);
	}
}

static void sk_done(void *ctx)
{
	struct skel_chan *c = ctx;

	atomic_fetch_add(&c->sk->n_packets, 1);
	atomic_fetch_add(&c->n_pkts, 1);
	pthread_mutex_lock(&c->qlock);
	if (!c->pkt_credited) {
		c->credits_due++;
		want_flush(c);
	}
	c->pkt_credited = false;
	pthread_mutex_unlock(&c->qlock);
}

/* The VSP gave up on the channel: tell the stub, whose requests then fail
 * after its timeout instead of waiting for answers that will not come. */
static void sk_failed(void *ctx, const char *why)
{
	struct skel_chan *c = ctx;
	struct rch_bind_ok lost = { .chan = c->id, .status = -EIO };
	struct out_msg *m = malloc(sizeof(*m) + sizeof(lost));

	if (!m)
		return;
	m->next = NULL;
	m->type = RCH_T_BIND_OK;
	m->len = sizeof(lost);
	memcpy(m->body, &lost, sizeof(lost));
	pthread_mutex_lock(&c->qlock);
	if (c->qtail)
		c->qtail->next = m;
	else
		c->qhead = m;
	c->qtail = m;
	want_flush(c);
	pthread_mutex_unlock(&c->qlock);
}

static const struct nhv_shadow_ops shadow_ops = {
	.send = sk_send,
	.copy = sk_copy,
	.failed = sk_failed,
	.done = sk_done,
};

/* ---- loop side -------------------------------------------------------------- */

static int sess_send(struct skel_sess *ss, uint16_t type, const void *body, size_t len)
{
	int rc = rvl_send(ss->l, type, body, len);

	if (rc == -ENOBUFS && !ev_is_active(&ss->retry)) {
		ev_timer_set(&ss->retry, 0.001, 0.);
		ev_timer_start(nhv_dp_loop(ss->sk->dp), &ss->retry);
	}
	return rc;
}

/* Sends what the channel's worker queued, then its credits (after the
 * completions they follow). Stops at a full window; the retry timer goes
 * on from there. */
static void flush_chan(struct skel_chan *c)
{
	struct skel_sess *ss = c->ss;
	struct rch_credit cr = { .chan = c->id };

	for (;;) {
		struct out_msg *m;

		pthread_mutex_lock(&c->qlock);
		m = c->qhead;
		if (!m) {
			cr.n = c->credits_due;
			c->credits_due = 0;
		}
		pthread_mutex_unlock(&c->qlock);
		if (!m)
			break;
		if (ss && sess_send(ss, m->type, m->body, m->len) == -ENOBUFS)
			return;
		pthread_mutex_lock(&c->qlock);
		c->qhead = m->next;
		if (!c->qhead)
			c->qtail = NULL;
		pthread_mutex_unlock(&c->qlock);
		free(m); /* sent, or its session is gone */
	}
	if (cr.n && ss && !atomic_load(&c->closing) &&
	    sess_send(ss, RCH_T_CREDIT, &cr, sizeof(cr)) == -ENOBUFS) {
		pthread_mutex_lock(&c->qlock);
		c->credits_due += cr.n;
		pthread_mutex_unlock(&c->qlock);
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct skel_sess *ss = w->data;

	for (struct skel_chan *c = ss->chans; c; c = c->next)
		flush_chan(c);
}

static void chan_bind_mem(struct skel_chan *c)
{
	struct skel_sess *ss = c->ss;
	struct xport_conn *conn = ss && ss->up ? rvl_conn(ss->l) : NULL;

	if (conn)
		rmem_bind(c->m, conn, &c->key);
	else
		rmem_unbind(c->m);
	pthread_mutex_lock(&c->lock);
	c->gen++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void chan_destroy(struct skel_chan *c)
{
	while (c->qhead) {
		struct out_msg *m = c->qhead;

		c->qhead = m->next;
		free(m);
	}
	rmem_destroy(c->m);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->qlock);
	free(c);
}

static void reaped_job(void *arg)
{
	struct skel_chan *c = arg;
	struct nhv_skel *sk = c->sk;

	fab_info("%s: closed after %llu packets; guest RAM moved by remote access: "
		 "remote_read_bytes=%llu remote_write_bytes=%llu",
		 c->label, (unsigned long long)atomic_load(&c->n_pkts),
		 (unsigned long long)atomic_load(&c->n_rread),
		 (unsigned long long)atomic_load(&c->n_rwritten));
	chan_destroy(c);
	sk->reaping--;
}

static void *reaper_main(void *arg)
{
	struct skel_chan *c = arg;

	nhv_shadow_free(c->ch); /* waits for the worker */
	c->ch = NULL;
	while (nhv_dp_post(c->sk->dp, reaped_job, c))
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	return NULL;
}

/* Takes the channel off its session and stops it (loop thread). */
static void chan_close(struct skel_chan *c)
{
	struct skel_sess *ss = c->ss;
	pthread_attr_t attr;
	pthread_t t;

	if (ss) {
		for (struct skel_chan **pp = &ss->chans; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		c->ss = NULL;
	}
	atomic_store(&c->closing, true);
	chan_bind_mem(c); /* unbinds (no session) and wakes waiting copies */
	c->sk->reaping++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, reaper_main, c)) {
		/* No thread: stop it here. The worker's remote operation (if
		 * any) already failed with the unbind above. */
		reaper_main(c);
	}
	pthread_attr_destroy(&attr);
}

static struct skel_chan *find_chan(struct skel_sess *ss, uint32_t id)
{
	for (struct skel_chan *c = ss->chans; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* The first channel bound to e, or NULL. */
static struct skel_chan *export_user(struct nhv_skel *sk, const struct skel_export *e)
{
	for (struct skel_sess *ss = sk->sessions; ss; ss = ss->next)
		for (struct skel_chan *c = ss->chans; c; c = c->next)
			if (c->exp == e)
				return c;
	return NULL;
}

static struct skel_export *find_export(struct nhv_skel *sk, const char *name)
{
	for (struct skel_export *e = sk->exports; e; e = e->next)
		if (!strcmp(e->e.name, name))
			return e;
	return NULL;
}

static bool name_field_ok(const char *f)
{
	return memchr(f, '\0', RCH_NAME) && !fab_name_valid(f);
}

static int do_bind(struct skel_sess *ss, const struct rch_bind *b)
{
	struct nhv_skel *sk = ss->sk;
	struct skel_export *x;
	const struct nhv_cfg_export *e;
	const struct nhv_vsp_ops *ops = &nhv_storage_ops;
	struct storage_dev *dev = NULL;
	struct skel_chan *c;
	int rc;

	if (!name_field_ok(b->partition) || !name_field_ok(b->device) ||
	    !name_field_ok(b->export_name) || !b->ram_len)
		return -EINVAL;
	if (find_chan(ss, b->chan))
		return -EEXIST;
	x = find_export(sk, b->export_name);
	if (!x)
		return -ENOENT;
	e = &x->e;
	if (x->fenced && (!x->access[0] || strcmp(x->access, ss->peer))) {
		fab_warn("node %s may not bind export %s: %s%s%s", ss->peer, e->name,
			 x->access[0] ? "the controller granted it to node " : "",
			 x->access[0] ? x->access : "no node has been granted access yet",
			 x->access[0] ? " only" : " (fenced)");
		return -EACCES;
	}
	if (b->type != (uint32_t)e->type)
		return -EPROTOTYPE; /* e.g. a disk bound as an echo device */
	/* One writer per image: two guests writing one disk corrupt it. */
	if (e->type == NHV_DEV_STORAGE && !e->read_only && export_user(sk, x))
		return -EBUSY;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ss = ss;
	c->sk = sk;
	c->id = b->chan;
	c->exp = x;
	c->key.id = b->ram_key_id;
	c->key.length = b->ram_len;
	c->key.addr = b->ram_key_addr;
	snprintf(c->label, sizeof(c->label), "export %s for %s/%s on node %s", e->name,
		 b->partition, b->device, ss->peer);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_mutex_init(&c->qlock, NULL);
	rc = rmem_create(nhv_dp_loop(sk->dp), nhv_dp_xport(sk->dp), &c->m);
	if (rc) {
		c->m = NULL;
		goto fail;
	}
	if (e->type == NHV_DEV_ECHO) {
		ops = &nhv_echo_ops;
	} else {
		rc = nhv_storage_new(e->path, e->read_only, &dev);
		if (rc) {
			fab_err("%s: cannot open %s: %s", c->label, e->path, strerror(-rc));
			goto fail;
		}
	}
	c->next = ss->chans;
	ss->chans = c;
	chan_bind_mem(c);
	/* Over a transport with native remote access, bulk data moves that
	 * way (no copy through the messages). */
	rc = nhv_shadow_new(
		ops, dev, &shadow_ops, c, c->label,
		xport_flags(nhv_dp_xport(sk->dp)) & XPORT_F_NATIVE_RMA ? NHV_SHADOW_NO_INLINE : 0,
		&c->ch);
	if (rc) {
		if (dev)
			ops->free(dev);
		ss->chans = c->next;
		goto fail;
	}
	atomic_fetch_add(&sk->n_channels, 1);
	fab_info("%s: serving %s %s%s", c->label, nhv_dev_type_name(e->type), e->path,
		 e->read_only ? " read-only" : "");
	return 0;
fail:
	if (c->m)
		rmem_destroy(c->m);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->qlock);
	free(c);
	return rc;
}

static void s_deliver(struct rvl *l, uint16_t type, const void *body, size_t len, void *arg)
{
	struct skel_sess *ss = arg;
	struct skel_chan *c;
	uint32_t id;

	if (len < 4) {
		fab_warn("rvmbus session from %s: short message of type %#x", ss->peer, type);
		return;
	}
	memcpy(&id, body, 4);
	switch (type) {
	case RCH_T_BIND: {
		struct rch_bind b;
		struct rch_bind_ok ok = { .chan = id };

		if (len != sizeof(b)) {
			ok.status = -EINVAL;
		} else {
			memcpy(&b, body, sizeof(b));
			ok.status = do_bind(ss, &b);
			if (ok.status && ok.status != -EACCES) /* do_bind said why */
				fab_warn("node %s: cannot bind export '%.*s' (channel %u): %s",
					 ss->peer, RCH_NAME - 1, b.export_name, id,
					 strerror(-ok.status));
		}
		ok.credits = ok.status ? 0 : RCH_CREDITS;
		sess_send(ss, RCH_T_BIND_OK, &ok, sizeof(ok));
		break;
	}
	case RCH_T_PKT: {
		struct rch_pkt h;

		c = find_chan(ss, id);
		if (len < sizeof(h)) {
			fab_warn("rvmbus session from %s: short PKT", ss->peer);
			return;
		}
		memcpy(&h, body, sizeof(h));
		if (!c)
			return; /* unbound (a refused BIND): the stub times out */
		if ((uint64_t)h.len + h.inline_len != len - sizeof(h) || h.len > RCH_MAX_PKT ||
		    h.inline_len > RCH_MAX_INLINE || h.reserved) {
			nhv_chan_fail(c->ch, "PKT of %zu bytes says %u + %u", len - sizeof(h),
				      h.len, h.inline_len);
			return;
		}
		/* The stub sends only while it has credits; beyond them (and
		 * the few packets a rebind replays) it is broken. */
		if (nhv_shadow_queued(c->ch) > RCH_CREDITS + 16) {
			nhv_chan_fail(c->ch, "node %s sent beyond its credits", ss->peer);
			return;
		}
		if (nhv_shadow_push(c->ch, (const uint8_t *)body + sizeof(h), h.len,
				    (const uint8_t *)body + sizeof(h) + h.len,
				    h.inline_len) == -ENOMEM)
			nhv_chan_fail(c->ch, "out of memory");
		break;
	}
	case RCH_T_UNBIND:
		c = find_chan(ss, id);
		if (c)
			chan_close(c);
		break;
	default:
		fab_warn("rvmbus session from %s: unknown message type %#x", ss->peer, type);
		break;
	}
}

static void s_state(struct rvl *l, bool up, void *arg)
{
	struct skel_sess *ss = arg;

	ss->up = up;
	for (struct skel_chan *c = ss->chans; c; c = c->next)
		chan_bind_mem(c);
	if (up)
		for (struct skel_chan *c = ss->chans; c; c = c->next)
			flush_chan(c);
}

static void sess_free(struct skel_sess *ss)
{
	struct nhv_skel *sk = ss->sk;

	while (ss->chans)
		chan_close(ss->chans);
	ev_timer_stop(nhv_dp_loop(sk->dp), &ss->retry);
	for (struct skel_sess **pp = &sk->sessions; *pp; pp = &(*pp)->next)
		if (*pp == ss) {
			*pp = ss->next;
			break;
		}
	free(ss);
}

/* The peer restarted (a new session replaced this one). */
static void s_end(struct rvl *l, void *arg)
{
	struct skel_sess *ss = arg;

	fab_info("node %s started a new session: dropping the old one's channels", ss->peer);
	sess_free(ss);
}

static const struct rvl_ops sess_ops = {
	.deliver_cb = s_deliver,
	.state_cb = s_state,
	.end_cb = s_end,
};

static int s_session(struct rvl *l, const char *peer, void *arg, const struct rvl_ops **ops,
		     void **larg)
{
	struct nhv_skel *sk = arg;
	struct skel_sess *ss;

	if (sk->shutting_down)
		return -ESHUTDOWN;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ss->sk = sk;
	ss->l = l;
	snprintf(ss->peer, sizeof(ss->peer), "%s", peer);
	ev_timer_init(&ss->retry, retry_cb, 0., 0.);
	ss->retry.data = ss;
	ss->next = sk->sessions;
	sk->sessions = ss;
	atomic_fetch_add(&sk->n_sessions, 1);
	fab_info("rvmbus session from node %s", peer);
	*ops = &sess_ops;
	*larg = ss;
	return 0;
}

struct serve_args {
	struct nhv_dp *dp;
	const char *hostport;
	const struct nhv_config *cfg;
	char *bound;
	size_t boundlen;
};

static void exports_free(struct nhv_skel *sk)
{
	while (sk->exports) {
		struct skel_export *x = sk->exports;

		sk->exports = x->next;
		free(x);
	}
}

/* Appends an export to the list (the config's keep their order). */
static int export_new(struct nhv_skel *sk, const struct nhv_cfg_export *e, bool fenced)
{
	struct skel_export *x = calloc(1, sizeof(*x)), **pp;

	if (!x)
		return -ENOMEM;
	x->e = *e;
	x->fenced = fenced;
	for (pp = &sk->exports; *pp; pp = &(*pp)->next)
		;
	*pp = x;
	return 0;
}

static int serve_job(void *arg)
{
	struct serve_args *a = arg;
	struct nhv_skel **slot = nhv_dp_skel_slot(a->dp);
	unsigned nexports = a->cfg ? a->cfg->nexports : 0;
	struct nhv_skel *sk;
	int rc = 0;

	if (*slot)
		return -EALREADY;
	sk = calloc(1, sizeof(*sk));
	if (!sk)
		return -ENOMEM;
	sk->dp = a->dp;
	/* A copy: the caller's config need not outlive the skeleton. */
	for (unsigned i = 0; i < nexports && !rc; i++)
		rc = export_new(sk, &a->cfg->exports[i], false);
	if (!rc)
		rc = rvl_server_start(nhv_dp_loop(a->dp), nhv_dp_xport(a->dp), a->hostport, NULL,
				      s_session, sk, a->bound, a->boundlen, &sk->srv);
	if (rc) {
		exports_free(sk);
		free(sk);
		return rc;
	}
	*slot = sk;
	/* Live migration streams arrive on the same address (migrate.c). */
	rvl_server_set_other(sk->srv, nhv_mig_accept, a->dp);
	/* Say now, not at the first bind, which images cannot be served. */
	for (unsigned i = 0; i < nexports; i++) {
		const struct nhv_cfg_export *e = &a->cfg->exports[i];
		struct stat st;

		if (e->type != NHV_DEV_STORAGE)
			continue;
		if (stat(e->path, &st))
			fab_err("export %s: %s: %s (binds are refused until it exists)", e->name,
				e->path, strerror(errno));
		else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			fab_err("export %s: %s is not a file or block device", e->name, e->path);
	}
	return 0;
}

int nhv_skel_serve(struct nhv_dp *dp, const char *hostport, const struct nhv_config *cfg,
		   char *bound, size_t boundlen)
{
	struct serve_args a = { dp, hostport, cfg, bound, boundlen };

	return nhv_dp_call(dp, serve_job, &a);
}

/* ---- exports changed at run time (agent -> loop, through nhv_dp_call) ------------ */

struct export_args {
	struct nhv_dp *dp;
	const struct nhv_cfg_export *e;
	const char *name, *node;
	char *busy;
	size_t busylen;
	unsigned closed;
};

static int add_job(void *arg)
{
	struct export_args *a = arg;
	struct nhv_skel *sk = *nhv_dp_skel_slot(a->dp);
	struct skel_export *x;

	if (!sk)
		return -ENODEV;
	x = find_export(sk, a->e->name);
	if (x)
		return x->fenced && !strcmp(x->e.path, a->e->path) && x->e.type == a->e->type &&
				       x->e.read_only == a->e->read_only
			       ? 0
			       : -EEXIST;
	return export_new(sk, a->e, true);
}

int nhv_skel_export_add(struct nhv_dp *dp, const struct nhv_cfg_export *e)
{
	struct export_args a = { .dp = dp, .e = e };

	if (fab_name_valid(e->name) || (e->type == NHV_DEV_STORAGE && !e->path[0]))
		return -EINVAL;
	return nhv_dp_call(dp, add_job, &a);
}

static int remove_job(void *arg)
{
	struct export_args *a = arg;
	struct nhv_skel *sk = *nhv_dp_skel_slot(a->dp);
	struct skel_export *x, **pp;
	struct skel_chan *c;

	if (!sk)
		return -ENODEV;
	x = find_export(sk, a->name);
	if (!x)
		return -ENOENT;
	if (!x->fenced)
		return -EPERM;
	c = export_user(sk, x);
	if (c) {
		if (a->busy)
			snprintf(a->busy, a->busylen, "%s", c->label);
		return -EBUSY;
	}
	for (pp = &sk->exports; *pp != x; pp = &(*pp)->next)
		;
	*pp = x->next;
	free(x);
	return 0;
}

int nhv_skel_export_remove(struct nhv_dp *dp, const char *name, char *busy, size_t busylen)
{
	struct export_args a = { .dp = dp, .name = name, .busy = busy, .busylen = busylen };

	if (busy && busylen)
		busy[0] = '\0';
	return nhv_dp_call(dp, remove_job, &a);
}

static int access_job(void *arg)
{
	struct export_args *a = arg;
	struct nhv_skel *sk = *nhv_dp_skel_slot(a->dp);
	struct skel_export *x;

	if (!sk)
		return -ENODEV;
	x = find_export(sk, a->name);
	if (!x)
		return -ENOENT;
	if (!x->fenced)
		return -EPERM;
	snprintf(x->access, sizeof(x->access), "%s", a->node);
	/* Everyone else's channels go now. The stub hears it (a lost
	 * binding) and fails its guest's I/O after its timeout; its later
	 * packets find no channel. */
	for (struct skel_sess *ss = sk->sessions; ss; ss = ss->next) {
		struct skel_chan *c = ss->chans, *next;

		if (x->access[0] && !strcmp(ss->peer, x->access))
			continue;
		for (; c; c = next) {
			struct rch_bind_ok lost = { .chan = c->id, .status = -EACCES };

			next = c->next;
			if (c->exp != x)
				continue;
			fab_warn("%s: closed: access to export %s now belongs to %s", c->label,
				 x->e.name, x->access[0] ? x->access : "nobody");
			sess_send(ss, RCH_T_BIND_OK, &lost, sizeof(lost));
			chan_close(c);
			a->closed++;
		}
	}
	return 0;
}

int nhv_skel_export_access(struct nhv_dp *dp, const char *name, const char *node, unsigned *closed)
{
	struct export_args a = { .dp = dp, .name = name, .node = node };
	int rc;

	if (node[0] && fab_name_valid(node))
		return -EINVAL;
	rc = nhv_dp_call(dp, access_job, &a);
	if (closed)
		*closed = a.closed;
	return rc;
}

void nhv_skel_shutdown(struct nhv_skel *sk)
{
	sk->shutting_down = true;
	for (struct skel_sess *ss = sk->sessions; ss; ss = ss->next)
		while (ss->chans)
			chan_close(ss->chans);
}

void nhv_skel_log_status(struct nhv_skel *sk)
{
	for (struct skel_sess *ss = sk->sessions; ss; ss = ss->next) {
		uint64_t connects, resent, dups;
		char st[400];

		rvl_counts(ss->l, &connects, &resent, &dups);
		nhv_conn_stats_str(rvl_conn(ss->l), st, sizeof(st));
		fab_info("session from node %s: %s, %llu connections, %llu messages resent, "
			 "%llu duplicates dropped; %s",
			 ss->peer, ss->up ? "up" : "down", (unsigned long long)connects,
			 (unsigned long long)resent, (unsigned long long)dups, st);
		for (struct skel_chan *c = ss->chans; c; c = c->next)
			fab_info("  %s: %llu packets, remote_read_bytes=%llu "
				 "remote_write_bytes=%llu, %u queued",
				 c->label, (unsigned long long)atomic_load(&c->n_pkts),
				 (unsigned long long)atomic_load(&c->n_rread),
				 (unsigned long long)atomic_load(&c->n_rwritten),
				 nhv_shadow_queued(c->ch));
	}
}

bool nhv_skel_drained(struct nhv_skel *sk)
{
	return sk->reaping == 0;
}

void nhv_skel_free(struct nhv_skel *sk)
{
	if (!sk)
		return;
	/* Sessions end with the server (their links are stopped there). */
	while (sk->sessions) {
		struct skel_sess *ss = sk->sessions;

		sk->sessions = ss->next;
		ev_timer_stop(nhv_dp_loop(sk->dp), &ss->retry);
		free(ss);
	}
	rvl_server_stop(sk->srv);
	exports_free(sk);
	free(sk);
}

struct stats_args {
	struct nhv_dp *dp;
	struct nhv_skel_stats *out;
};

static int stats_job(void *arg)
{
	struct stats_args *a = arg;
	struct nhv_skel *sk = *nhv_dp_skel_slot(a->dp);

	memset(a->out, 0, sizeof(*a->out));
	if (!sk)
		return 0;
	a->out->sessions = atomic_load(&sk->n_sessions);
	a->out->channels = atomic_load(&sk->n_channels);
	a->out->packets = atomic_load(&sk->n_packets);
	a->out->bytes_read = atomic_load(&sk->n_read);
	a->out->bytes_written = atomic_load(&sk->n_written);
	return 0;
}

void nhv_skel_stats(struct nhv_dp *dp, struct nhv_skel_stats *out)
{
	struct stats_args a = { dp, out };

	nhv_dp_call(dp, stats_job, &a);
}
