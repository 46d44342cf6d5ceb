// SPDX-License-Identifier: MIT
/* rvmbus link: a session kept alive over xport (fab/rvmbus_link.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>

#include <ev.h>

#include "fab/log.h"
#include "fab/rvmbus_link.h"
#include "fab/rvmbus_session.h"
#include "fab/xport.h"

struct hello {
	uint16_t type;
	uint16_t version;
	uint32_t flags; /* RVL_HELLO_* */
	uint64_t session;
	uint64_t delivered;
} __attribute__((packed));

struct rvl {
	struct ev_loop *loop;
	struct xport *x;
	struct rvl_server *srv; /* server side: owner; NULL on the client */
	struct rvl *next;	/* in srv->sessions */
	const struct rvl_ops *ops;
	void *arg;
	struct rvs *s;
	struct xport_conn *conn; /* current connection, or NULL */
	bool up;		 /* hello exchanged on conn */
	bool congested;		 /* a send was refused: resend on writable */
	uint64_t session;
	char peer[64];
	char addr[128];
	struct rvl_cfg cfg;
	uint32_t backoff;
	ev_timer retry, ack, ka;
	ev_tstamp last_rx; /* when the peer was last heard from */
	uint64_t connects;
	uint64_t resent_before, dups_before; /* of sessions a reset replaced */
	int last_err; /* client: why the last connection ended (logged once) */
};

struct rvl_server {
	struct ev_loop *loop;
	struct xport *x;
	struct rvl_cfg cfg;
	rvl_session_cb cb;
	void *arg;
	struct rvl *sessions;
	struct pending *pending; /* accepted, no hello yet */
	rvl_other_cb other;	 /* first message of another protocol */
	void *other_arg;
};

/* Incoming connections are anonymous until their hello names the session. */
struct pending {
	struct rvl_server *srv;
	struct xport_conn *conn;
	struct pending *next, **pprev;
};

static const struct xport_conn_cbs conn_cbs;

static void silent_closed(struct xport_conn *c, int err, void *arg)
{
}

/* For connections whose owner is gone. */
static const struct xport_conn_cbs silent_cbs = { .closed_cb = silent_closed };

/* ---- session glue --------------------------------------------------------- */

static int l_xmit(void *ctx, const void *msg, size_t len)
{
	struct rvl *l = ctx;
	struct iovec iov = { (void *)msg, len };
	int rc;

	if (!l->conn || !l->up)
		return -ENOTCONN;
	rc = xport_sendv(l->conn, &iov, 1);
	if (rc == -EAGAIN)
		l->congested = true; /* resent from the last ack on writable */
	return rc;
}

static void l_deliver(void *ctx, uint16_t type, const void *body, size_t len)
{
	struct rvl *l = ctx;

	l->ops->deliver_cb(l, type, body, len, l->arg);
}

static const struct rvs_ops sess_ops = { .xmit_cb = l_xmit, .deliver_cb = l_deliver };

static void ack_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rvl *l = w->data;

	if (l->up)
		rvs_ack(l->s);
}

/* Keepalive: a ping when up; a connection silent for dead_ms is dropped. */
static void ka_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	static const uint8_t ping[8] = { RVL_T_PING & 0xff, RVL_T_PING >> 8 };
	struct rvl *l = w->data;
	struct iovec iov = { (void *)ping, sizeof(ping) };

	if (!l->up || !l->conn)
		return;
	if (ev_now(loop) - l->last_rx > l->cfg.dead_ms / 1000.0) {
		fab_warn("rvmbus link to %s: nothing heard for %u ms; dropping the connection",
			 l->peer, l->cfg.dead_ms);
		xport_close(l->conn);
		return;
	}
	xport_sendv(l->conn, &iov, 1); /* -EAGAIN: traffic is flowing anyway */
}

static void set_up(struct rvl *l, bool up)
{
	if (l->up == up)
		return;
	l->up = up;
	if (!up) {
		rvs_link_down(l->s);
		ev_timer_stop(l->loop, &l->ka);
	}
	if (l->ops->state_cb)
		l->ops->state_cb(l, up, l->arg);
}

static int send_hello(struct rvl *l, uint32_t flags)
{
	struct hello h = { .type = RVL_T_HELLO,
			   .version = 1,
			   .flags = flags,
			   .session = l->session,
			   .delivered = rvs_delivered(l->s) };
	struct iovec iov = { &h, sizeof(h) };

	return xport_sendv(l->conn, &iov, 1);
}

/* Validates a hello whose flags may only have bits of allowed; returns 0 or
 * -EPROTO. A server without state has delivered nothing: FRESH with a
 * count is a broken peer, not something to resume from. */
static int parse_hello(const void *msg, size_t len, uint32_t allowed, struct hello *h)
{
	if (len != sizeof(*h))
		return -EPROTO;
	memcpy(h, msg, sizeof(*h));
	if (h->type != RVL_T_HELLO || h->version != 1 || (h->flags & ~allowed))
		return -EPROTO;
	if ((h->flags & RVL_HELLO_FRESH) && h->delivered)
		return -EPROTO;
	return 0;
}

/*
 * Whether this side has anything of the peer's stream: a message delivered
 * or one of ours acknowledged. Without either, resuming from 0 is exact:
 * our queue still holds everything from sequence 1 and we expect the
 * peer's first message next.
 */
static bool has_peer_state(const struct rvl *l)
{
	return rvs_delivered(l->s) || rvs_peer_acked(l->s);
}

/* Client: the server lost the session. Replace ours with an empty one so
 * both streams restart at sequence 1. Returns 0 or -ENOMEM (the old
 * session is kept; the caller drops the connection and tries again). */
static int client_reset(struct rvl *l)
{
	struct rvs_stats st;
	struct rvs *s;
	int rc;

	rc = rvs_create(&sess_ops, l, l->cfg.window, &s);
	if (rc)
		return rc;
	rvs_get_stats(l->s, &st);
	fab_warn("rvmbus link to %s: the peer lost session %016llx; restarting it (%llu "
		 "unacknowledged messages dropped)",
		 l->peer, (unsigned long long)l->session, (unsigned long long)st.queued);
	l->resent_before += st.resent;
	l->dups_before += st.duplicates;
	rvs_destroy(l->s);
	l->s = s;
	/* A pending ack belonged to the old stream. */
	ev_timer_stop(l->loop, &l->ack);
	l->congested = false;
	return 0;
}

static void link_resume(struct rvl *l, uint64_t peer_delivered)
{
	int rc;

	/* Up before the resend: the transmit callback sends only when up. */
	l->up = true;
	l->last_rx = ev_now(l->loop);
	ev_timer_again(l->loop, &l->ka);
	rc = rvs_link_up(l->s, peer_delivered);
	if (rc == -EPROTO) {
		fab_warn("rvmbus link to %s: peer claims messages we never sent; dropping",
			 l->peer);
		l->up = false;
		xport_close(l->conn);
		return;
	}
	/* Any other error is a refused transmit: congestion (resent on
	 * writable) or a connection already closing (closed_cb follows). */
	l->backoff = l->cfg.backoff_min_ms;
	if (l->ops->state_cb)
		l->ops->state_cb(l, true, l->arg);
}

/* ---- connections ------------------------------------------------------------ */

static void client_connect(struct rvl *l);

static void c_connected(struct xport_conn *c, void *arg)
{
	struct rvl *l = arg;

	l->connects++;
	l->last_err = 0;
	if (send_hello(l, 0))
		xport_close(c);
}

static void on_hello(struct rvl *l, struct xport_conn *c, const void *msg, size_t len)
{
	uint32_t allowed = l->srv ? 0 : RVL_HELLO_FRESH;
	struct hello h;

	if (l->up || parse_hello(msg, len, allowed, &h) || (!l->srv && h.session != l->session)) {
		fab_warn("rvmbus link to %s: bad hello; dropping", l->peer);
		xport_close(c);
		return;
	}
	if (l->srv) {
		/* Nothing received from the client means we may be a new
		 * process, or our FRESH hello was lost with its connection:
		 * say FRESH again until the client has answered one. */
		bool fresh = !has_peer_state(l);

		if (send_hello(l, fresh ? RVL_HELLO_FRESH : 0)) {
			xport_close(c);
			return;
		}
		/* A FRESH server has had nothing acknowledged: resend all. */
		link_resume(l, fresh ? 0 : h.delivered);
		return;
	}
	if ((h.flags & RVL_HELLO_FRESH) && has_peer_state(l)) {
		if (client_reset(l)) {
			xport_close(c);
			return;
		}
		/* Before anything is resent: what it queues goes out first. */
		if (l->ops->reset_cb)
			l->ops->reset_cb(l, l->arg);
	}
	link_resume(l, h.delivered);
}

static void c_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct rvl *l = arg;
	uint16_t type;
	int rc;

	if (len < 2) {
		xport_close(c);
		return;
	}
	memcpy(&type, msg, 2);
	l->last_rx = ev_now(l->loop);
	if (type == RVL_T_HELLO) {
		on_hello(l, c, msg, len);
		return;
	}
	if (type == RVL_T_PING) {
		if (len != 8)
			xport_close(c);
		return;
	}
	if (!l->up) {
		xport_close(c);
		return;
	}
	rc = rvs_rx(l->s, msg, len);
	if (rc) {
		fab_warn("rvmbus link to %s: %s; dropping the connection", l->peer,
			 rc == -EPROTO ? "sequence gap" : "malformed message");
		xport_close(c);
		return;
	}
	if (!ev_is_active(&l->ack))
		ev_timer_start(l->loop, &l->ack);
}

static void c_writable(struct xport_conn *c, void *arg)
{
	struct rvl *l = arg;

	if (l->congested && l->up) {
		l->congested = false;
		rvs_link_up(l->s, rvs_peer_acked(l->s));
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	client_connect(w->data);
}

static void c_closed(struct xport_conn *c, int err, void *arg)
{
	struct rvl *l = arg;

	if (l->conn != c)
		return; /* not ours any more (replaced ones close silently) */
	l->conn = NULL;
	set_up(l, false);
	if (!l->srv) {
		uint32_t d = l->backoff;

		/* A reason repeated on every retry is logged once. */
		if (err && err != l->last_err)
			fab_warn("rvmbus link to node %s at %s: %s; retrying", l->peer, l->addr,
				 err == -EACCES ? "peer identity refused (wrong CA or node name)"
						: strerror(-err));
		l->last_err = err;

		ev_timer_set(&l->retry, d / 1000.0, 0.);
		ev_timer_start(l->loop, &l->retry);
		l->backoff = l->backoff * 2 > l->cfg.backoff_max_ms ? l->cfg.backoff_max_ms
								    : l->backoff * 2;
	}
}

static const struct xport_conn_cbs conn_cbs = {
	.connected_cb = c_connected,
	.recv_cb = c_recv,
	.writable_cb = c_writable,
	.closed_cb = c_closed,
};

static void client_connect(struct rvl *l)
{
	if (xport_connect(l->x, l->addr, l->peer, &conn_cbs, l, &l->conn)) {
		l->conn = NULL;
		ev_timer_set(&l->retry, l->backoff / 1000.0, 0.);
		ev_timer_start(l->loop, &l->retry);
	}
}

static int rvl_new(struct ev_loop *loop, struct xport *x, const struct rvl_cfg *cfg,
		   struct rvl **out)
{
	struct rvl *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	l->loop = loop;
	l->x = x;
	if (cfg)
		l->cfg = *cfg;
	if (!l->cfg.window)
		l->cfg.window = 256;
	if (!l->cfg.backoff_min_ms)
		l->cfg.backoff_min_ms = 50;
	if (!l->cfg.backoff_max_ms)
		l->cfg.backoff_max_ms = 2000;
	if (!l->cfg.keepalive_ms)
		l->cfg.keepalive_ms = 1000;
	if (!l->cfg.dead_ms)
		l->cfg.dead_ms = 5000;
	l->backoff = l->cfg.backoff_min_ms;
	rc = rvs_create(&sess_ops, l, l->cfg.window, &l->s);
	if (rc) {
		free(l);
		return rc;
	}
	ev_timer_init(&l->retry, retry_cb, 0., 0.);
	l->retry.data = l;
	/* Acks ride on traffic; a lone ack goes out after 1 ms of silence. */
	ev_timer_init(&l->ack, ack_cb, 0.001, 0.);
	l->ack.data = l;
	ev_init(&l->ka, ka_cb);
	l->ka.repeat = l->cfg.keepalive_ms / 1000.0;
	l->ka.data = l;
	*out = l;
	return 0;
}

int rvl_client_start(struct ev_loop *loop, struct xport *x, const char *addr, const char *peer,
		     const struct rvl_cfg *cfg, const struct rvl_ops *ops, void *arg,
		     struct rvl **out)
{
	struct rvl *l;
	int rc;

	if (!addr || !peer || !ops || !ops->deliver_cb || strlen(addr) >= sizeof(l->addr) ||
	    strlen(peer) >= sizeof(l->peer))
		return -EINVAL;
	rc = rvl_new(loop, x, cfg, &l);
	if (rc)
		return rc;
	l->ops = ops;
	l->arg = arg;
	strcpy(l->addr, addr);
	strcpy(l->peer, peer);
	while (!l->session && getrandom(&l->session, sizeof(l->session), 0) != sizeof(l->session))
		;
	client_connect(l);
	*out = l;
	return 0;
}

/* ---- server ------------------------------------------------------------------ */

static void rvl_free(struct rvl *l)
{
	ev_timer_stop(l->loop, &l->retry);
	ev_timer_stop(l->loop, &l->ack);
	ev_timer_stop(l->loop, &l->ka);
	rvs_destroy(l->s);
	free(l);
}

/* Closes l's connection without callbacks and frees l. */
static void rvl_close_free(struct rvl *l)
{
	if (l->conn) {
		xport_set_cbs(l->conn, &silent_cbs, NULL);
		xport_close(l->conn);
	}
	rvl_free(l);
}

static void unlink_session(struct rvl *l)
{
	struct rvl **pp;

	for (pp = &l->srv->sessions; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
}

static void pending_free(struct pending *p)
{
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
	free(p);
}

/*
 * A new session id from peer means its client process restarted: the
 * sessions it had are dead and nobody will resume them. Their connections
 * may still look alive (the old socket not timed out yet); close them
 * quietly, as end_cb replaces state_cb(down).
 */
static void end_peer_sessions(struct rvl_server *srv, const char *peer)
{
	struct rvl *l;

again:
	for (l = srv->sessions; l; l = l->next) {
		if (strcmp(l->peer, peer))
			continue;
		unlink_session(l);
		fab_info("rvmbus link from %s: new session; ending session %016llx", peer,
			 (unsigned long long)l->session);
		if (l->conn) {
			xport_set_cbs(l->conn, &silent_cbs, NULL);
			xport_close(l->conn);
			l->conn = NULL;
		}
		if (l->up) {
			l->up = false;
			rvs_link_down(l->s);
		}
		if (l->ops->end_cb)
			l->ops->end_cb(l, l->arg);
		rvl_free(l);
		/* end_cb may have stopped other sessions: rescan. */
		goto again;
	}
}

static void p_recv(struct xport_conn *c, const void *msg, size_t len, void *arg);
static void p_closed(struct xport_conn *c, int err, void *arg)
{
	pending_free(arg);
}

static const struct xport_conn_cbs pending_cbs = { .recv_cb = p_recv, .closed_cb = p_closed };

static void p_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct pending *p = arg;
	struct rvl_server *srv = p->srv;
	const char *peer = xport_peer_name(c);
	struct hello h;
	struct rvl *l;
	uint16_t type = 0;

	if (len >= 2)
		memcpy(&type, msg, 2);
	if (srv->other && len >= 2 && type != RVL_T_HELLO) {
		/* Another protocol shares the listener (live migration's
		 * stream): its owner takes the connection or refuses it. */
		pending_free(p);
		if (srv->other(c, msg, len, srv->other_arg)) {
			xport_set_cbs(c, &silent_cbs, NULL);
			xport_close(c);
		}
		return;
	}
	if (parse_hello(msg, len, 0, &h)) {
		fab_warn("rvmbus link from %s: no hello; dropping", peer);
		xport_close(c);
		return;
	}
	/* Sessions are found by name: a truncated one would match none. */
	if (strlen(peer) >= sizeof(l->peer)) {
		fab_warn("rvmbus link from %s: node name too long; dropping", peer);
		xport_close(c);
		return;
	}
	for (l = srv->sessions; l; l = l->next)
		if (l->session == h.session && !strcmp(l->peer, peer))
			break;
	if (!l) {
		const struct rvl_ops *ops = NULL;
		void *larg = NULL;

		end_peer_sessions(srv, peer);
		if (rvl_new(srv->loop, srv->x, &srv->cfg, &l)) {
			xport_close(c);
			return;
		}
		l->srv = srv;
		l->session = h.session;
		strcpy(l->peer, peer);
		if (srv->cb(l, peer, srv->arg, &ops, &larg) || !ops || !ops->deliver_cb) {
			rvl_free(l);
			xport_close(c);
			return;
		}
		l->ops = ops;
		l->arg = larg;
		l->next = srv->sessions;
		srv->sessions = l;
	}
	/* The session moves to this connection; an old one is stale. It
	 * closes without callbacks: they would find l gone if the session
	 * ended first. */
	if (l->conn) {
		struct xport_conn *old = l->conn;

		l->conn = NULL;
		set_up(l, false);
		xport_set_cbs(old, &silent_cbs, NULL);
		xport_close(old);
	}
	/* Hand the connection over: later callbacks go to the session. */
	xport_set_cbs(c, &conn_cbs, l);
	pending_free(p);
	l->conn = c;
	l->connects++;
	c_recv(c, msg, len, l);
}

static int s_accept(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
		    void **conn_arg)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->srv = arg;
	p->conn = c;
	p->next = p->srv->pending;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &p->srv->pending;
	p->srv->pending = p;
	*cbs = &pending_cbs;
	*conn_arg = p;
	return 0;
}

int rvl_server_start(struct ev_loop *loop, struct xport *x, const char *hostport,
		     const struct rvl_cfg *cfg, rvl_session_cb cb, void *arg, char *bound,
		     size_t boundlen, struct rvl_server **out)
{
	struct rvl_server *srv = calloc(1, sizeof(*srv));
	int rc;

	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->x = x;
	if (cfg)
		srv->cfg = *cfg;
	srv->cb = cb;
	srv->arg = arg;
	rc = xport_listen(x, hostport, s_accept, srv, bound, boundlen);
	if (rc) {
		free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

void rvl_server_set_other(struct rvl_server *srv, rvl_other_cb cb, void *arg)
{
	srv->other = cb;
	srv->other_arg = arg;
}

/* ---- common ------------------------------------------------------------------ */

int rvl_send(struct rvl *l, uint16_t type, const void *body, size_t len)
{
	return rvs_send(l->s, type, body, len);
}

bool rvl_is_up(const struct rvl *l)
{
	return l->up;
}

struct xport_conn *rvl_conn(const struct rvl *l)
{
	return l->up ? l->conn : NULL;
}

uint64_t rvl_session_id(const struct rvl *l)
{
	return l->session;
}

void rvl_drop(struct rvl *l)
{
	if (l->conn)
		xport_close(l->conn);
}

void rvl_counts(const struct rvl *l, uint64_t *connects, uint64_t *resent, uint64_t *dups)
{
	struct rvs_stats st;

	rvs_get_stats(l->s, &st);
	*connects = l->connects;
	*resent = l->resent_before + st.resent;
	*dups = l->dups_before + st.duplicates;
}

void rvl_stop(struct rvl *l)
{
	if (!l)
		return;
	if (l->srv)
		unlink_session(l);
	rvl_close_free(l);
}

void rvl_server_stop(struct rvl_server *srv)
{
	if (!srv)
		return;
	while (srv->sessions) {
		struct rvl *l = srv->sessions;

		srv->sessions = l->next;
		rvl_close_free(l);
	}
	while (srv->pending) {
		struct pending *p = srv->pending;

		xport_set_cbs(p->conn, &silent_cbs, NULL);
		xport_close(p->conn);
		pending_free(p);
	}
	free(srv);
}
