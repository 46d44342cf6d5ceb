// SPDX-License-Identifier: MIT
/*
 * RDMA backend of xport (librdmacm, libibverbs): instances, connection set-up
 * and teardown, authentication, registrations. The data path is datapath.c,
 * the wire formats and credit rules xrdma_proto.h.
 *
 * Authentication. RDMA CM has no TLS, and the cluster's rule is that peers
 * authenticate with the cluster certificates before any data flows. So every
 * RDMA connection is paired with a TLS connection of an inner xport "tcp"
 * instance (same PKI and node name), which does the mutual authentication
 * and the peer-name check, and carries the set-up:
 *
 *   client                                   server
 *   xport_connect(tcp) ---- TLS, both ends authenticated ----> accept
 *   HELLO {depth, max} ----------------------------------------->
 *   <-------------- WELCOME {depth, max, RDMA port, token (128 bit random)}
 *   rdma_resolve_addr/route(TLS peer's IP, RDMA port)
 *   rdma_connect(private data = token) ------------------------->  token must
 *                                                  name a connection waiting
 *   <-------------------------------------------- rdma_accept()    on this
 *   ESTABLISHED: connected_cb              ESTABLISHED: accept_cb  listener,
 *                                                  else rdma_reject()
 *
 * The token is single use and lives only until the connection is up or its
 * set-up timer fires; only the authenticated TLS peer ever saw it. The TLS
 * connection stays open for the life of the RDMA connection: whichever of
 * the two ends first, both are closed, and closed_cb runs once, from the
 * inner connection's closed_cb (which always comes, from the loop). Peer
 * name and address are the TLS connection's.
 *
 * Listening: the RDMA CM listener binds the same IP and, where it can, the
 * same port number as the TLS listener (RDMA_PS_TCP is a port space of its
 * own on IB and RoCE, not the kernel's TCP ports); where that port is taken
 * (iWARP devices share the kernel's ports) it takes another one. WELCOME
 * says which, so the two never need to match.
 *
 * Device: at create the first device with an active port is opened (through
 * librdmacm, whose contexts the cm_ids use) and one PD is allocated there;
 * registrations and all connections use it. A connection that routes
 * through another device is refused with a log line. No device at all:
 * create fails with -ENODEV, so "auto" selection can fall back to TCP.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "fab/conn.h"
#include "fab/log.h"

#include "xrdma_int.h"

static const char *state_name(enum xrdma_state s)
{
	static const char *const names[] = {
		[XRDMA_TLS] = "TLS handshake",
		[XRDMA_HELLO_WAIT] = "waiting for hello",
		[XRDMA_WELCOME_WAIT] = "waiting for welcome",
		[XRDMA_RESOLVING] = "resolving the RDMA address",
		[XRDMA_CONNECTING] = "RDMA connect",
		[XRDMA_TOKEN_WAIT] = "waiting for the RDMA connect request",
		[XRDMA_ACCEPTING] = "RDMA accept",
		[XRDMA_UP] = "up",
		[XRDMA_DOWN] = "closing",
	};

	return names[s];
}

static const char *who(const struct xrdma_conn *c)
{
	return c->peer_name[0] ? c->peer_name : "?";
}

/* ---- connection lifetime ------------------------------------------------- */

void xrdma_conn_fail(struct xrdma_conn *c, int err, const char *why)
{
	if (c->state == XRDMA_DOWN)
		return;
	if (err && why && !c->logged)
		fab_warn("xport rdma: connection with %s (%s) %s: %s", who(c), c->peer_addr,
			 c->state == XRDMA_UP ? "ends" : "failed", why);
	else if (why)
		fab_debug("xport rdma: connection with %s (%s) ends: %s", who(c), c->peer_addr,
			  why);
	c->logged = 1;
	c->state = XRDMA_DOWN;
	c->err = err;
	ev_timer_stop(c->loop, &c->timer);
	xrdma_dp_stop(c);
	/* Moves the QP to the error state and tells the peer at once. */
	if (c->established)
		rdma_disconnect(c->id);
	c->established = 0;
	if (c->tls)
		xport_close(c->tls);
}

void xrdma_proto_fail(struct xrdma_conn *c, const char *why)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "peer broke the protocol: %s", why);
	xrdma_conn_fail(c, -EPROTO, buf);
}

/* The end: the TLS connection is gone. Releases the verbs objects, then
 * completes the operations, then tells the user. */
static void conn_finish(struct xrdma_conn *c)
{
	LIST_REMOVE(c, link);
	ev_timer_stop(c->loop, &c->timer);
	xrdma_dp_teardown(c);
	if (c->id)
		rdma_destroy_id(c->id);
	c->id = NULL;
	xrdma_dp_fail_ops(c, -ECONNRESET, 1);
	xrdma_dp_free_sendq(c);
	if (c->user)
		c->base.cbs->closed_cb(&c->base, c->err, c->base.arg);
	free(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct xrdma_conn *c = w->data;
	char why[96];

	if (c->state == XRDMA_UP) {
		/* Flushed work without a CM event telling why. */
		xrdma_conn_fail(c, -ECONNRESET, "queue pair flushed");
		return;
	}
	snprintf(why, sizeof(why), "set-up timed out (%s)", state_name(c->state));
	xrdma_conn_fail(c, -ETIMEDOUT, why);
}

static uint32_t depth_for(const struct xrdma *r)
{
	uint32_t d = XRDMA_RECV_BUDGET / r->max_msg;

	if (d > XRDMA_DEPTH)
		d = XRDMA_DEPTH;
	if (d < 8)
		d = 8;
	/* Keep room in the CQ for the send queue. */
	if (d > r->max_wr / 2)
		d = r->max_wr / 2;
	return d < XRDMA_MIN_DEPTH ? XRDMA_MIN_DEPTH : d;
}

static struct xrdma_conn *conn_new(struct xrdma *r)
{
	struct xrdma_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base.x = &r->base;
	c->kind = XRDMA_CM_CONN;
	c->r = r;
	c->loop = r->base.loop;
	c->depth = depth_for(r);
	xrdma_dp_init(c);
	ev_timer_init(&c->timer, timer_cb, r->tmo, 0.);
	c->timer.data = c;
	return c;
}

static void conn_up(struct xrdma_conn *c)
{
	ev_timer_stop(c->loop, &c->timer);
	c->state = XRDMA_UP;
	if (c->l) {
		const struct xport_conn_cbs *cbs = NULL;
		void *arg = NULL;
		int rc = c->l->cb(&c->base, c->l->arg, &cbs, &arg);

		if (rc || !cbs || !cbs->closed_cb) {
			c->logged = 1; /* the user decided: no warning */
			xrdma_conn_fail(c, rc ? rc : -ECONNREFUSED,
					"refused by the accept callback");
			return;
		}
		c->base.cbs = cbs;
		c->base.arg = arg;
		c->user = 1;
	} else if (c->base.cbs->connected_cb) {
		c->base.cbs->connected_cb(&c->base, c->base.arg);
	}
	fab_debug("xport rdma: connection with %s (%s) up: max message %u, depth %u/%u, "
		  "inline %u, read depth %u",
		  who(c), c->peer_addr, c->max, c->depth, c->peer_depth, c->max_inline, c->ord);
	/* Messages that arrived before now are delivered here. */
	xrdma_dp_poll(c);
}

/* ---- the paired TLS connection ------------------------------------------- */

static void tls_send_ctl(struct xrdma_conn *c, const struct xrdma_ctl *ctl)
{
	uint8_t buf[XRDMA_WELCOME_LEN];
	struct iovec v = { buf, xrdma_ctl_build(ctl, buf) };
	int rc = xport_sendv(c->tls, &v, 1);

	if (rc) {
		char why[96];

		snprintf(why, sizeof(why), "cannot send on the TLS connection: %s", strerror(-rc));
		xrdma_conn_fail(c, rc, why);
	}
}

static void tls_connected(struct xport_conn *tc, void *arg)
{
	struct xrdma_conn *c = arg;
	struct xrdma_ctl h = { .type = XRDMA_CTL_HELLO };

	snprintf(c->peer_name, sizeof(c->peer_name), "%s", xport_peer_name(tc));
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", xport_peer_addr(tc));
	h.depth = c->depth;
	h.max_msg = c->r->max_msg;
	c->state = XRDMA_WELCOME_WAIT;
	tls_send_ctl(c, &h);
}

static int start_resolve(struct xrdma_conn *c)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	char host[80], port[16];
	int rc;

	/* The TLS peer's own address: the RDMA connection goes where the
	 * authenticated one went. */
	if (fab_hostport_split(c->peer_addr, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	snprintf(port, sizeof(port), "%u", c->rport);
	if (getaddrinfo(host, port, &hints, &ai))
		return -EHOSTUNREACH;
	rc = rdma_create_id(c->r->ech, &c->id, &c->kind, RDMA_PS_TCP);
	if (rc == 0)
		rc = rdma_resolve_addr(c->id, NULL, ai->ai_addr, XRDMA_RESOLVE_MS);
	rc = rc ? -errno : 0;
	freeaddrinfo(ai);
	return rc;
}

static void tls_recv(struct xport_conn *tc, const void *msg, size_t len, void *arg)
{
	struct xrdma_conn *c = arg;
	struct xrdma *r = c->r;
	struct xrdma_ctl m;
	const char *why = "";
	int rc;

	if (c->state == XRDMA_HELLO_WAIT) {
		struct xrdma_ctl w = { .type = XRDMA_CTL_WELCOME };

		if (xrdma_ctl_parse(msg, len, XRDMA_CTL_HELLO, &m, &why)) {
			xrdma_proto_fail(c, why);
			return;
		}
		c->max = m.max_msg < r->max_msg ? m.max_msg : r->max_msg;
		c->peer_depth = m.depth;
		if (RAND_bytes(c->token, sizeof(c->token)) != 1) {
			xrdma_conn_fail(c, -EIO, "no random bytes for the token");
			return;
		}
		w.depth = c->depth;
		w.max_msg = r->max_msg;
		w.port = c->l->port;
		memcpy(w.token, c->token, sizeof(w.token));
		c->state = XRDMA_TOKEN_WAIT;
		tls_send_ctl(c, &w);
		return;
	}
	if (c->state == XRDMA_WELCOME_WAIT) {
		if (xrdma_ctl_parse(msg, len, XRDMA_CTL_WELCOME, &m, &why)) {
			xrdma_proto_fail(c, why);
			return;
		}
		c->max = m.max_msg < r->max_msg ? m.max_msg : r->max_msg;
		c->peer_depth = m.depth;
		c->rport = m.port;
		memcpy(c->token, m.token, sizeof(c->token));
		c->state = XRDMA_RESOLVING;
		rc = start_resolve(c);
		if (rc) {
			char buf[128];

			snprintf(buf, sizeof(buf),
				 "cannot resolve the RDMA address of %s port %u: %s", c->peer_addr,
				 c->rport, strerror(-rc));
			xrdma_conn_fail(c, -EHOSTUNREACH, buf);
		}
		return;
	}
	if (c->state != XRDMA_DOWN)
		xrdma_proto_fail(c, "control message after set-up");
}

static void tls_closed(struct xport_conn *tc, int err, void *arg)
{
	struct xrdma_conn *c = arg;

	c->tls = NULL;
	if (c->state != XRDMA_DOWN) {
		/* The TLS connection ended first. What already arrived on
		 * the RDMA side is delivered, as on an orderly close. */
		int was_up = c->state == XRDMA_UP;

		if (was_up)
			xrdma_dp_poll(c);
		if (!err && !was_up)
			err = -ECONNRESET;
		/* The inner transport logged its reason already. */
		c->logged = 1;
		xrdma_conn_fail(c, err, "the TLS connection ended");
	}
	conn_finish(c);
}

static const struct xport_conn_cbs tls_cbs = {
	.connected_cb = tls_connected,
	.recv_cb = tls_recv,
	.closed_cb = tls_closed,
};

static int tls_accept(struct xport_conn *tc, void *arg, const struct xport_conn_cbs **cbs,
		      void **conn_arg)
{
	struct xrdma_listener *l = arg;
	struct xrdma_conn *c = conn_new(l->r);

	if (!c)
		return -ENOMEM;
	c->l = l;
	c->tls = tc;
	c->state = XRDMA_HELLO_WAIT;
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", xport_peer_name(tc));
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", xport_peer_addr(tc));
	LIST_INSERT_HEAD(&l->r->conns, c, link);
	ev_timer_start(c->loop, &c->timer);
	*cbs = &tls_cbs;
	*conn_arg = c;
	return 0;
}

/* ---- RDMA CM events ------------------------------------------------------ */

/* What we keep of an event: it is acknowledged before it is handled, so
 * that handling may destroy its cm_id. */
struct cm_ev {
	enum rdma_cm_event_type type;
	int status;
	struct rdma_cm_id *id, *listen_id;
	uint8_t priv[XRDMA_PRIV_MAX];
	size_t priv_len; /* > XRDMA_PRIV_MAX: too long, not copied */
	uint8_t responder_resources, initiator_depth;
};

static void conn_params(struct xrdma *r, struct rdma_conn_param *p, uint8_t resp, uint8_t init)
{
	memset(p, 0, sizeof(*p));
	p->responder_resources = resp;
	p->initiator_depth = init;
	p->flow_control = 1;
	p->retry_count = XRDMA_RETRY_CNT;
	p->rnr_retry_count = XRDMA_RNR_RETRY;
}

static void refuse_request(struct xrdma_listener *l, struct rdma_cm_id *id, const char *why)
{
	char addr[80];

	fab_sockaddr_str(rdma_get_peer_addr(id), addr, sizeof(addr));
	fab_warn("xport rdma: refused an RDMA connect request from %s: %s", addr, why);
	rdma_reject(id, NULL, 0);
	rdma_destroy_id(id);
}

static void on_connect_request(struct xrdma_listener *l, const struct cm_ev *e)
{
	struct xrdma *r = l->r;
	struct rdma_conn_param p;
	struct xrdma_conn *c;
	struct xrdma_ctl m;
	const char *why = "";
	uint8_t resp, init;
	int rc;

	if (e->priv_len > XRDMA_PRIV_MAX ||
	    xrdma_ctl_parse(e->priv, e->priv_len, XRDMA_CTL_CONNECT, &m, &why)) {
		refuse_request(l, e->id, why[0] ? why : "private data too long");
		return;
	}
	LIST_FOREACH(c, &r->conns, link)
	if (c->state == XRDMA_TOKEN_WAIT && c->l == l &&
	    CRYPTO_memcmp(c->token, m.token, sizeof(m.token)) == 0)
		break;
	if (!c) {
		refuse_request(l, e->id, "unknown or expired token");
		return;
	}
	memset(c->token, 0, sizeof(c->token)); /* single use */
	e->id->context = &c->kind;
	c->state = XRDMA_ACCEPTING;
	rc = xrdma_dp_setup(c, e->id);
	if (rc) {
		rdma_reject(e->id, NULL, 0);
		c->id = e->id; /* destroyed with the connection */
		xrdma_conn_fail(c, rc, NULL);
		return;
	}
	/* Reads the peer may have in flight to us: what it asks, within our
	 * device; reads we may have in flight: within what it grants. */
	resp = e->responder_resources < r->rd_atom ? e->responder_resources : r->rd_atom;
	if (!resp)
		resp = r->rd_atom;
	init = e->initiator_depth < r->init_depth ? e->initiator_depth : r->init_depth;
	c->ord = init ? init : 1;
	conn_params(r, &p, resp, init);
	if (rdma_accept(e->id, &p)) {
		char buf[96];

		snprintf(buf, sizeof(buf), "rdma_accept: %s", strerror(errno));
		xrdma_conn_fail(c, -ECONNRESET, buf);
	}
}

static void on_conn_event(struct xrdma_conn *c, const struct cm_ev *e)
{
	struct xrdma *r = c->r;
	struct rdma_conn_param p;
	char why[160];
	int rc;

	if (c->state == XRDMA_DOWN)
		return;
	switch (e->type) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (c->state != XRDMA_RESOLVING)
			break;
		rc = xrdma_dp_setup(c, c->id);
		if (rc) {
			xrdma_conn_fail(c, rc, NULL);
			return;
		}
		if (rdma_resolve_route(c->id, XRDMA_RESOLVE_MS)) {
			snprintf(why, sizeof(why), "rdma_resolve_route: %s", strerror(errno));
			xrdma_conn_fail(c, -EHOSTUNREACH, why);
		}
		return;
	case RDMA_CM_EVENT_ROUTE_RESOLVED: {
		struct xrdma_ctl m = { .type = XRDMA_CTL_CONNECT };
		uint8_t priv[XRDMA_CONNECT_LEN];

		if (c->state != XRDMA_RESOLVING)
			break;
		memcpy(m.token, c->token, sizeof(m.token));
		xrdma_ctl_build(&m, priv);
		conn_params(r, &p, r->rd_atom, r->init_depth);
		p.private_data = priv;
		p.private_data_len = sizeof(priv);
		c->state = XRDMA_CONNECTING;
		if (rdma_connect(c->id, &p)) {
			snprintf(why, sizeof(why), "rdma_connect: %s", strerror(errno));
			xrdma_conn_fail(c, -ECONNREFUSED, why);
		}
		return;
	}
	case RDMA_CM_EVENT_ESTABLISHED:
		if (c->state != XRDMA_CONNECTING && c->state != XRDMA_ACCEPTING)
			break;
		if (c->state == XRDMA_CONNECTING) {
			/* The server's responder resources, as it accepted. */
			uint8_t ord = e->initiator_depth < r->init_depth ? e->initiator_depth
									 : r->init_depth;

			c->ord = ord ? ord : 1;
		}
		c->established = 1;
		conn_up(c);
		return;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		snprintf(why, sizeof(why), "%s (status %d)", rdma_event_str(e->type), e->status);
		xrdma_conn_fail(c, -EHOSTUNREACH, why);
		return;
	case RDMA_CM_EVENT_REJECTED:
		snprintf(why, sizeof(why), "RDMA connect request rejected (status %d)", e->status);
		xrdma_conn_fail(c, -ECONNREFUSED, why);
		return;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		snprintf(why, sizeof(why), "RDMA connection error (status %d)", e->status);
		xrdma_conn_fail(c, -ECONNRESET, why);
		return;
	case RDMA_CM_EVENT_DISCONNECTED:
		c->established = 0;
		if (c->state == XRDMA_UP) {
			/* Deliver what arrived before the peer left. */
			xrdma_dp_poll(c);
			xrdma_conn_fail(c, 0, "peer disconnected");
		} else {
			xrdma_conn_fail(c, -ECONNRESET, "peer disconnected during set-up");
		}
		return;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		xrdma_conn_fail(c, -ENODEV, "RDMA device removed");
		return;
	default:
		return; /* TIMEWAIT_EXIT, ADDR_CHANGE, ...: nothing to do */
	}
	fab_debug("xport rdma: %s ignored in state %s", rdma_event_str(e->type),
		  state_name(c->state));
}

static void cm_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct xrdma *r = w->data;
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(r->ech, &ev) == 0) {
		struct cm_ev e = {
			.type = ev->event,
			.status = ev->status,
			.id = ev->id,
			.listen_id = ev->listen_id,
			.priv_len = ev->param.conn.private_data_len,
			.responder_resources = ev->param.conn.responder_resources,
			.initiator_depth = ev->param.conn.initiator_depth,
		};
		enum xrdma_cm_kind *kind;

		if (ev->param.conn.private_data && e.priv_len <= sizeof(e.priv))
			memcpy(e.priv, ev->param.conn.private_data, e.priv_len);
		else if (!ev->param.conn.private_data)
			e.priv_len = 0;
		rdma_ack_cm_event(ev);
		if (e.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			kind = e.listen_id->context;
			on_connect_request(container_of(kind, struct xrdma_listener, kind), &e);
			continue;
		}
		kind = e.id->context;
		if (*kind == XRDMA_CM_CONN)
			on_conn_event(container_of(kind, struct xrdma_conn, kind), &e);
		else if (e.type == RDMA_CM_EVENT_DEVICE_REMOVAL)
			fab_err("xport rdma: RDMA device %s removed under a listener", r->devname);
	}
}

/* ---- listen and connect -------------------------------------------------- */

/* Binds and listens an RDMA CM id on sa (port in it; 0 picks one). */
static int cm_listen(struct xrdma_listener *l, struct sockaddr *sa)
{
	struct xrdma *r = l->r;
	int rc;

	if (rdma_create_id(r->ech, &l->id, &l->kind, RDMA_PS_TCP))
		return -errno;
	rc = rdma_bind_addr(l->id, sa) ? -errno : 0;
	if (rc == 0 && l->id->verbs && l->id->verbs != r->ctx) {
		fab_err("xport rdma: that address belongs to RDMA device %s, but this transport "
			"uses %s",
			ibv_get_device_name(l->id->verbs->device), r->devname);
		rc = -ENODEV;
	}
	if (rc == 0)
		rc = rdma_listen(l->id, 64) ? -errno : 0;
	if (rc) {
		rdma_destroy_id(l->id);
		l->id = NULL;
		return rc;
	}
	l->port = be16toh(rdma_get_src_port(l->id));
	return 0;
}

static void set_port(struct sockaddr *sa, uint16_t port)
{
	if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htobe16(port);
	else
		((struct sockaddr_in *)sa)->sin_port = htobe16(port);
}

static void fmt_hostport(char *buf, size_t len, const char *host, unsigned port)
{
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static int xrdma_listen(struct xport *x, const char *hostport, xport_accept_cb cb, void *arg,
			char *bound, size_t boundlen)
{
	struct xrdma *r = to_xrdma(x);
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct sockaddr_storage ss;
	struct xrdma_listener *l;
	char host[256], port[16], hp[300];
	struct addrinfo *ai;
	unsigned p;
	int rc;

	if (fab_hostport_split(hostport, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	if (getaddrinfo(host, port, &hints, &ai))
		return -EINVAL;
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	p = (unsigned)atoi(port);
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->kind = XRDMA_CM_LISTENER;
	l->r = r;
	l->cb = cb;
	l->arg = arg;
	rc = cm_listen(l, (struct sockaddr *)&ss);
	if (rc == -EADDRINUSE && p) {
		set_port((struct sockaddr *)&ss, 0);
		rc = cm_listen(l, (struct sockaddr *)&ss);
	}
	if (rc) {
		fab_err("xport rdma: cannot listen for RDMA connections on %s (is it an address "
			"of an RDMA device?): %s",
			hostport, strerror(-rc));
		free(l);
		return rc;
	}
	/* The TLS listener: the port asked for, else the RDMA one if free. */
	fmt_hostport(hp, sizeof(hp), host, p ? p : l->port);
	rc = xport_listen(r->tls, hp, tls_accept, l, bound, boundlen);
	if (rc && !p) {
		fmt_hostport(hp, sizeof(hp), host, 0);
		rc = xport_listen(r->tls, hp, tls_accept, l, bound, boundlen);
	}
	if (rc) {
		rdma_destroy_id(l->id);
		free(l);
		return rc;
	}
	if (p && l->port != p)
		fab_info("xport rdma: RDMA CM port %u is taken; RDMA connections for %s use port "
			 "%u",
			 p, hostport, l->port);
	LIST_INSERT_HEAD(&r->listeners, l, link);
	return 0;
}

static int xrdma_connect(struct xport *x, const char *hostport, const char *peer_name,
			 const struct xport_conn_cbs *cbs, void *arg, struct xport_conn **out)
{
	struct xrdma *r = to_xrdma(x);
	struct xrdma_conn *c;
	int rc;

	if (fab_name_valid(peer_name))
		return -EINVAL;
	c = conn_new(r);
	if (!c)
		return -ENOMEM;
	c->base.cbs = cbs;
	c->base.arg = arg;
	c->user = 1;
	c->state = XRDMA_TLS;
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", hostport);
	rc = xport_connect(r->tls, hostport, peer_name, &tls_cbs, c, &c->tls);
	if (rc) {
		free(c);
		return rc;
	}
	LIST_INSERT_HEAD(&r->conns, c, link);
	ev_timer_start(c->loop, &c->timer);
	*out = &c->base;
	return 0;
}

static int xrdma_sendv(struct xport_conn *xc, const struct iovec *iov, int iovcnt)
{
	return xrdma_dp_sendv(to_xconn(xc), iov, iovcnt);
}

static void xrdma_close(struct xport_conn *xc)
{
	xrdma_conn_fail(to_xconn(xc), 0, "closed locally");
}

static int xrdma_read(struct xport_conn *c, struct xport_mr *local, void *buf, size_t len,
		      const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	return xrdma_dp_rma(to_xconn(c), 0, local, buf, len, key, offset, cb, arg);
}

static int xrdma_write(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		       const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	/* The buffer is only read: the cast keeps one op type for both. */
	return xrdma_dp_rma(to_xconn(c), 1, local, (void *)buf, len, key, offset, cb, arg);
}

static const char *xrdma_peer_name(const struct xport_conn *xc)
{
	return container_of(xc, const struct xrdma_conn, base)->peer_name;
}

static const char *xrdma_peer_addr(const struct xport_conn *xc)
{
	return container_of(xc, const struct xrdma_conn, base)->peer_addr;
}

static void xrdma_stats(const struct xport_conn *xc, struct xport_stats *out)
{
	const struct xrdma_conn *c = container_of(xc, const struct xrdma_conn, base);

	/* served_* and refused stay 0: the hardware serves the peer's reads
	 * and writes without us. */
	*out = c->st;
	out->send_queued = c->queued;
}

/* ---- registrations ------------------------------------------------------- */

static int xrdma_reg_mr(struct xport *x, void *addr, size_t len, unsigned access,
			struct xport_mr **out)
{
	struct xrdma *r = to_xrdma(x);
	struct xrdma_mr *m = calloc(1, sizeof(*m));
	int flags = 0;

	if (!m)
		return -ENOMEM;
	if (access & XPORT_ACCESS_LOCAL_WRITE)
		flags |= IBV_ACCESS_LOCAL_WRITE;
	if (access & XPORT_ACCESS_REMOTE_READ)
		flags |= IBV_ACCESS_REMOTE_READ;
	/* Verbs require local write with remote write. */
	if (access & XPORT_ACCESS_REMOTE_WRITE)
		flags |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
	m->mr = ibv_reg_mr(r->pd, addr, len, flags);
	if (!m->mr) {
		int rc = errno ? -errno : -ENOMEM;

		fab_warn("xport rdma: cannot register %zu bytes at %p on %s: %s", len, addr,
			 r->devname, strerror(-rc));
		free(m);
		return rc == -EFAULT ? -EINVAL : rc;
	}
	m->base.x = x;
	m->base.addr = addr;
	m->base.len = len;
	m->base.access = access;
	m->base.key.id = m->mr->rkey;
	m->base.key.length = len;
	m->base.key.addr = (uintptr_t)addr;
	LIST_INSERT_HEAD(&r->mrs, m, link);
	*out = &m->base;
	return 0;
}

static void xrdma_dereg_mr(struct xport_mr *mr)
{
	struct xrdma_mr *m = container_of(mr, struct xrdma_mr, base);

	LIST_REMOVE(m, link);
	if (ibv_dereg_mr(m->mr))
		fab_warn("xport rdma: deregistering %zu bytes at %p: %s", mr->len, mr->addr,
			 strerror(errno));
	free(m);
}

/* ---- instances ----------------------------------------------------------- */

/* Picks the first device with an active port, among librdmacm's. */
static int open_device(struct xrdma *r)
{
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	int n = 0;

	r->devs = rdma_get_devices(&n);
	if (!r->devs || n == 0) {
		fab_warn("xport rdma: no RDMA device%s%s", r->devs ? "" : ": ",
			 r->devs ? "" : strerror(errno ? errno : ENODEV));
		return -ENODEV;
	}
	for (int i = 0; i < n && !r->ctx; i++) {
		if (ibv_query_device(r->devs[i], &da))
			continue;
		for (uint8_t port = 1; port <= da.phys_port_cnt; port++) {
			if (ibv_query_port(r->devs[i], port, &pa) || pa.state != IBV_PORT_ACTIVE)
				continue;
			r->ctx = r->devs[i];
			r->port_num = port;
			r->max_wr = (uint32_t)da.max_qp_wr;
			r->max_cqe = (uint32_t)da.max_cqe;
			r->rd_atom = da.max_qp_rd_atom < XRDMA_RD_ATOM ? (uint8_t)da.max_qp_rd_atom
								       : XRDMA_RD_ATOM;
			r->init_depth = da.max_qp_init_rd_atom < XRDMA_RD_ATOM
						? (uint8_t)da.max_qp_init_rd_atom
						: XRDMA_RD_ATOM;
			r->chunk = pa.max_msg_sz < XRDMA_CHUNK ? pa.max_msg_sz : XRDMA_CHUNK;
			break;
		}
	}
	if (!r->ctx) {
		fab_warn("xport rdma: none of the %d RDMA devices has an active port", n);
		return -ENODEV;
	}
	snprintf(r->devname, sizeof(r->devname), "%s", ibv_get_device_name(r->ctx->device));
	/* Far below any real device; the clamps elsewhere rely on it. */
	if (r->max_wr < 64 || r->max_cqe < 256 || r->chunk < 4096) {
		fab_warn("xport rdma: device %s is too small (%u work requests, %u CQ entries)",
			 r->devname, r->max_wr, r->max_cqe);
		return -ENODEV;
	}
	r->pd = ibv_alloc_pd(r->ctx);
	if (!r->pd) {
		fab_err("xport rdma: cannot allocate a protection domain on %s: %s", r->devname,
			strerror(errno));
		return -ENOMEM;
	}
	fab_info("xport rdma: using %s port %u", r->devname, r->port_num);
	return 0;
}

static void xrdma_destroy(struct xport *x);

static int xrdma_create(struct ev_loop *loop, const struct xport_cfg *cfg, struct xport **out)
{
	struct xport_cfg tcfg;
	struct xrdma *r;
	int rc;

	if (!cfg->pki_dir || !cfg->node_name || fab_name_valid(cfg->node_name) ||
	    strlen(cfg->pki_dir) >= PATH_MAX)
		return -EINVAL;
	if (cfg->max_msg &&
	    (cfg->max_msg < XRDMA_MIN_MAX_MSG || cfg->max_msg > XRDMA_MAX_MSG_LIMIT))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->base.loop = loop;
	LIST_INIT(&r->listeners);
	LIST_INIT(&r->conns);
	LIST_INIT(&r->mrs);
	r->max_msg = cfg->max_msg ? cfg->max_msg : XRDMA_DEFAULT_MAX_MSG;
	r->hwm = cfg->send_hwm ? cfg->send_hwm : XRDMA_DEFAULT_HWM;
	r->lwm = cfg->send_lwm ? cfg->send_lwm : r->hwm / 2;
	r->tmo = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : XRDMA_DEFAULT_TMO_S;
	if (r->hwm < r->lwm + r->max_msg) {
		free(r);
		return -EINVAL;
	}
	ev_init(&r->ech_io, cm_cb);
	r->ech_io.data = r;
	rc = open_device(r);
	if (rc)
		goto err;
	r->ech = rdma_create_event_channel();
	if (!r->ech) {
		rc = errno ? -errno : -ENODEV;
		fab_err("xport rdma: cannot create an RDMA CM event channel: %s", strerror(-rc));
		goto err;
	}
	if (fcntl(r->ech->fd, F_SETFL, fcntl(r->ech->fd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		goto err;
	}
	ev_io_set(&r->ech_io, r->ech->fd, EV_READ);
	ev_io_start(loop, &r->ech_io);
	/* The inner TLS instance only carries the small set-up messages. */
	tcfg = (struct xport_cfg){
		.pki_dir = cfg->pki_dir,
		.node_name = cfg->node_name,
		.max_msg = XPORT_MIN_MAX_MSG,
		.connect_timeout_s = r->tmo,
	};
	rc = xport_tcp_register();
	if (rc == 0)
		rc = xport_create("tcp", loop, &tcfg, &r->tls);
	if (rc)
		goto err;
	*out = &r->base;
	return 0;
err:
	xrdma_destroy(&r->base);
	return rc;
}

static void xrdma_destroy(struct xport *x)
{
	struct xrdma *r = to_xrdma(x);
	struct xrdma_listener *l;
	struct xrdma_conn *c;
	struct xrdma_mr *m;

	/* Connections first, without callbacks; their TLS halves go with the
	 * inner instance below. */
	while ((c = LIST_FIRST(&r->conns))) {
		LIST_REMOVE(c, link);
		ev_timer_stop(c->loop, &c->timer);
		if (c->established)
			rdma_disconnect(c->id);
		xrdma_dp_teardown(c);
		if (c->id)
			rdma_destroy_id(c->id);
		xrdma_dp_fail_ops(c, -ECANCELED, 0);
		xrdma_dp_free_sendq(c);
		free(c);
	}
	if (r->tls)
		xport_destroy(r->tls);
	while ((l = LIST_FIRST(&r->listeners))) {
		LIST_REMOVE(l, link);
		rdma_destroy_id(l->id);
		free(l);
	}
	while ((m = LIST_FIRST(&r->mrs))) {
		LIST_REMOVE(m, link);
		ibv_dereg_mr(m->mr);
		free(m);
	}
	ev_io_stop(x->loop, &r->ech_io);
	if (r->ech)
		rdma_destroy_event_channel(r->ech);
	if (r->pd)
		ibv_dealloc_pd(r->pd);
	if (r->devs)
		rdma_free_devices(r->devs);
	free(r);
}

static const struct xport_ops xrdma_ops = {
	.name = "rdma",
	.flags = XPORT_F_NATIVE_RMA,
	.create = xrdma_create,
	.destroy = xrdma_destroy,
	.listen = xrdma_listen,
	.connect = xrdma_connect,
	.sendv = xrdma_sendv,
	.close = xrdma_close,
	.reg_mr = xrdma_reg_mr,
	.dereg_mr = xrdma_dereg_mr,
	.read = xrdma_read,
	.write = xrdma_write,
	.peer_name = xrdma_peer_name,
	.peer_addr = xrdma_peer_addr,
	.stats = xrdma_stats,
};

int xport_rdma_register(void)
{
	return xport_register(&xrdma_ops);
}
