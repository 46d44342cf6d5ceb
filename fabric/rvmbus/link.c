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
	uint32_t zero;
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
	ev_timer retry, ack;
	uint64_t connects;
};

struct rvl_server {
	struct ev_loop *loop;
	struct xport *x;
	struct rvl_cfg cfg;
	rvl_session_cb cb;
	void *arg;
	struct rvl *sessions;
};

static const struct xport_conn_cbs conn_cbs;

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

static void set_up(struct rvl *l, bool up)
{
	if (l->up == up)
		return;
	l->up = up;
	if (!up)
		rvs_link_down(l->s);
	if (l->ops->state_cb)
		l->ops->state_cb(l, up, l->arg);
}

static int send_hello(struct rvl *l)
{
	struct hello h = { .type = RVL_T_HELLO,
			   .version = 1,
			   .session = l->session,
			   .delivered = rvs_delivered(l->s) };
	struct iovec iov = { &h, sizeof(h) };

	return xport_sendv(l->conn, &iov, 1);
}

/* Validates a hello; returns 0 or -EPROTO. */
static int parse_hello(const void *msg, size_t len, struct hello *h)
{
	if (len != sizeof(*h))
		return -EPROTO;
	memcpy(h, msg, sizeof(*h));
	if (h->type != RVL_T_HELLO || h->version != 1 || h->zero)
		return -EPROTO;
	return 0;
}

static void link_resume(struct rvl *l, uint64_t peer_delivered)
{
	int rc;

	/* Up before the resend: the transmit callback sends only when up. */
	l->up = true;
	rc = rvs_link_up(l->s, peer_delivered);
	if (rc == -EPROTO) {
		fab_warn("rvmbus link to %s: peer claims messages we never sent; dropping",
			 l->peer);
		l->up = false;
		xport_close(l->conn);
		return;
	}
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
	if (send_hello(l))
		xport_close(c);
}

static void c_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct rvl *l = arg;
	struct hello h;
	uint16_t type;
	int rc;

	if (len < 2) {
		xport_close(c);
		return;
	}
	memcpy(&type, msg, 2);
	if (type == RVL_T_HELLO) {
		if (l->up || parse_hello(msg, len, &h) || (!l->srv && h.session != l->session)) {
			fab_warn("rvmbus link to %s: bad hello; dropping", l->peer);
			xport_close(c);
			return;
		}
		if (l->srv && send_hello(l)) {
			xport_close(c);
			return;
		}
		link_resume(l, h.delivered);
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
		return; /* an older connection the server replaced */
	l->conn = NULL;
	set_up(l, false);
	if (!l->srv) {
		uint32_t d = l->backoff;

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

/* Incoming connections are anonymous until their hello names the session. */
struct pending {
	struct rvl_server *srv;
	struct xport_conn *conn;
};

static void p_recv(struct xport_conn *c, const void *msg, size_t len, void *arg);
static void p_closed(struct xport_conn *c, int err, void *arg)
{
	free(arg);
}

static const struct xport_conn_cbs pending_cbs = { .recv_cb = p_recv, .closed_cb = p_closed };

static void p_recv(struct xport_conn *c, const void *msg, size_t len, void *arg)
{
	struct pending *p = arg;
	struct rvl_server *srv = p->srv;
	const char *peer = xport_peer_name(c);
	struct hello h;
	struct rvl *l;

	if (parse_hello(msg, len, &h)) {
		fab_warn("rvmbus link from %s: no hello; dropping", peer);
		xport_close(c);
		return;
	}
	for (l = srv->sessions; l; l = l->next)
		if (l->session == h.session && !strcmp(l->peer, peer))
			break;
	if (!l) {
		const struct rvl_ops *ops = NULL;
		void *larg = NULL;

		if (rvl_new(srv->loop, srv->x, &srv->cfg, &l)) {
			xport_close(c);
			return;
		}
		l->srv = srv;
		l->session = h.session;
		snprintf(l->peer, sizeof(l->peer), "%s", peer);
		if (srv->cb(l, peer, srv->arg, &ops, &larg) || !ops || !ops->deliver_cb) {
			rvs_destroy(l->s);
			free(l);
			xport_close(c);
			return;
		}
		l->ops = ops;
		l->arg = larg;
		l->next = srv->sessions;
		srv->sessions = l;
	}
	/* The session moves to this connection; an old one is stale. */
	if (l->conn) {
		struct xport_conn *old = l->conn;

		l->conn = NULL;
		set_up(l, false);
		xport_close(old);
	}
	/* Hand the connection over: later callbacks go to the session. */
	p->conn = NULL;
	xport_set_cbs(c, &conn_cbs, l);
	free(p);
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

/* ---- common ------------------------------------------------------------------ */

int rvl_send(struct rvl *l, uint16_t type, const void *body, size_t len)
{
	return rvs_send(l->s, type, body, len);
}

bool rvl_is_up(const struct rvl *l)
{
	return l->up;
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
	*resent = st.resent;
	*dups = st.duplicates;
}

static void rvl_free(struct rvl *l)
{
	ev_timer_stop(l->loop, &l->retry);
	ev_timer_stop(l->loop, &l->ack);
	rvs_destroy(l->s);
	free(l);
}

static void silent_closed(struct xport_conn *c, int err, void *arg)
{
}

/* For connections whose owner is gone. */
static const struct xport_conn_cbs silent_cbs = { .closed_cb = silent_closed };

void rvl_stop(struct rvl *l)
{
	if (!l)
		return;
	if (l->conn) {
		xport_set_cbs(l->conn, &silent_cbs, NULL);
		xport_close(l->conn);
	}
	rvl_free(l);
}

void rvl_server_stop(struct rvl_server *srv)
{
	if (!srv)
		return;
	while (srv->sessions) {
		struct rvl *l = srv->sessions;

		srv->sessions = l->next;
		rvl_stop(l);
	}
	free(srv);
}
