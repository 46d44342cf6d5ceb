/* SPDX-License-Identifier: MIT */
/*
 * Private state of the RDMA backend, shared by rdma.c (instances, connection
 * set-up and teardown, authentication, registrations) and datapath.c (queue
 * pair resources, completions, messages with credits, RDMA READ/WRITE).
 * Everything runs on the instance's loop thread.
 */
#ifndef FAB_XRDMA_INT_H
#define FAB_XRDMA_INT_H

#include <limits.h>
#include <stdint.h>
#include <sys/queue.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "fab/pki.h"
#include "fab/xport.h"

#include "xrdma_proto.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define XRDMA_DEFAULT_MAX_MSG (128u << 10)
#define XRDMA_DEPTH	      64	 /* receive buffers per connection, at most */
#define XRDMA_RECV_BUDGET     (8u << 20) /* bytes of receive buffers per connection */
#define XRDMA_SQ_DEPTH	      128	 /* send work requests outstanding */
#define XRDMA_SIGNAL_EVERY    16	 /* a signalled SEND at least this often */
#define XRDMA_INLINE_WANT     256	 /* inline data we ask the QP for */
#define XRDMA_CHUNK	      (1u << 20) /* largest RDMA READ/WRITE work request */
#define XRDMA_WRITE_WINDOW    16	 /* RDMA WRITEs in flight per connection */
#define XRDMA_RD_ATOM	      16	 /* RDMA READs in flight we ask for */
#define XRDMA_POLL_BUDGET     256	 /* completions per loop callback */
#define XRDMA_CQ_ACK_BATCH    16
/* Local ACK timeout 4.096 us * 2^16 = 268 ms; with retry_cnt 7 a dead peer
 * is noticed within about 2 s even under software emulation. */
#define XRDMA_ACK_TIMEOUT 16
#define XRDMA_RETRY_CNT	  7
/* rnr_retry 7 means "retry forever" in IB; credits keep RNR from
 * happening at all, so a few tries (655 ms apart) are plenty. */
#define XRDMA_RNR_RETRY	    3
#define XRDMA_RESOLVE_MS    5000
#define XRDMA_DEFAULT_HWM   (4u << 20)
#define XRDMA_DEFAULT_TMO_S 10.0
#define XRDMA_FLUSH_GRACE_S 1.0
#define XRDMA_WRID_RECV	    (1ull << 63)

/* What an rdma_cm_id's context points at. */
enum xrdma_cm_kind {
	XRDMA_CM_LISTENER = 1,
	XRDMA_CM_CONN = 2,
};

struct xrdma {
	struct xport base;
	struct xport *tls; /* inner "tcp" instance: authentication */
	/* librdmacm's device contexts (rdma_get_devices()): cm_ids use these
	 * very contexts, so our PD must come from one of them. */
	struct ibv_context **devs;
	struct ibv_context *ctx; /* the device we use */
	struct ibv_pd *pd;
	char devname[IBV_SYSFS_NAME_MAX];
	uint8_t port_num;
	uint32_t max_wr, max_cqe;
	uint8_t rd_atom, init_depth; /* responder resources, initiator depth */
	uint32_t chunk;
	uint32_t max_msg;
	size_t hwm, lwm;
	double tmo;
	struct rdma_event_channel *ech;
	ev_io ech_io;
	LIST_HEAD(, xrdma_listener) listeners;
	LIST_HEAD(, xrdma_conn) conns;
	LIST_HEAD(, xrdma_mr) mrs;
};

struct xrdma_listener {
	enum xrdma_cm_kind kind;
	struct xrdma *r;
	struct rdma_cm_id *id;
	uint16_t port; /* RDMA CM port announced in WELCOME */
	xport_accept_cb cb;
	void *arg;
	LIST_ENTRY(xrdma_listener) link;
};

struct xrdma_mr {
	struct xport_mr base;
	struct ibv_mr *mr;
	LIST_ENTRY(xrdma_mr) link;
};

enum xrdma_state {
	XRDMA_TLS,	    /* client: TLS handshake of the inner connection */
	XRDMA_HELLO_WAIT,   /* server: peer authenticated, waiting for HELLO */
	XRDMA_WELCOME_WAIT, /* client: HELLO sent */
	XRDMA_RESOLVING,    /* client: RDMA address and route resolution */
	XRDMA_CONNECTING,   /* client: rdma_connect() sent */
	XRDMA_TOKEN_WAIT,   /* server: WELCOME sent, waiting for the connect request */
	XRDMA_ACCEPTING,    /* server: rdma_accept() sent */
	XRDMA_UP,
	XRDMA_DOWN, /* ending: waiting for the inner connection's closed_cb */
};

/* A remote read or write of the user's, split into chunks. */
struct xrdma_op {
	TAILQ_ENTRY(xrdma_op) link;
	int write;
	uint8_t *buf;
	size_t len;
	uint32_t lkey, rkey;
	uint64_t raddr;
	size_t issued;	   /* bytes posted so far */
	unsigned inflight; /* chunks posted and not completed */
	int err;	   /* first error; completed at teardown then */
	xport_rma_cb cb;
	void *arg;
};

/* One posted send work request, in posting order (sq[seq % sqd]). */
struct xrdma_slot {
	struct xrdma_op *op; /* RDMA READ/WRITE chunk; NULL for a SEND */
	size_t end;	     /* SEND through the ring: where it ended */
	size_t consumed;     /* ... and ring bytes it holds (0: none) */
};

/* A user message waiting for credits or send resources. */
struct xrdma_msg {
	TAILQ_ENTRY(xrdma_msg) link;
	size_t len;
	uint8_t data[];
};

struct xrdma_conn {
	struct xport_conn base;
	enum xrdma_cm_kind kind; /* the cm_id's context points here */
	struct xrdma *r;
	struct ev_loop *loop;
	LIST_ENTRY(xrdma_conn) link;
	struct xrdma_listener *l; /* incoming: its listener */
	enum xrdma_state state;
	int user;		/* the user holds it: closed_cb is owed */
	int blocked;		/* sendv said -EAGAIN: writable_cb owed */
	int logged;		/* why it ends was logged already */
	int flushed;		/* the queue pair reported flushed work: it is dead */
	int err;		/* for closed_cb */
	struct xport_conn *tls; /* the paired TLS connection; NULL once closed */
	ev_timer timer;		/* set-up deadline; later the flush grace */
	char peer_name[FAB_NAME_MAX];
	char peer_addr[80];
	uint8_t token[XRDMA_TOKEN_LEN];
	uint16_t rport; /* client: the server's RDMA CM port */
	uint32_t max;	/* largest user message both ends accept */
	uint32_t depth, peer_depth;

	/* queue pair and its resources (datapath.c) */
	struct rdma_cm_id *id;
	int established;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	unsigned cq_unacked;
	ev_io cq_io;
	ev_timer kick; /* poll budget spent: continue next iteration */
	uint32_t max_inline;
	uint8_t *rbuf; /* depth receive buffers of rbuf_sz bytes */
	size_t rbuf_sz, rbuf_len;
	struct ibv_mr *rmr;
	uint8_t *sbuf; /* the send ring */
	struct ibv_mr *smr;
	struct xrdma_ring ring;
	struct xrdma_slot *sq;
	uint32_t sqd;
	uint64_t sq_head, sq_tail; /* oldest outstanding, next to post */
	unsigned unsignaled;
	struct xrdma_credits cr;
	TAILQ_HEAD(, xrdma_msg) sendq;
	size_t queued;
	TAILQ_HEAD(, xrdma_op) ops;
	unsigned rd_inflight, wr_inflight;
	uint8_t ord; /* RDMA READs the peer lets us have in flight */
	struct xport_stats st;
};

static inline struct xrdma *to_xrdma(struct xport *x)
{
	return container_of(x, struct xrdma, base);
}

static inline struct xrdma_conn *to_xconn(struct xport_conn *c)
{
	return container_of(c, struct xrdma_conn, base);
}

/* rdma.c */
/* Ends the connection: err for closed_cb (first one wins), why logged once
 * when err is not 0. Never calls a user callback; closed_cb follows from the
 * loop. */
void xrdma_conn_fail(struct xrdma_conn *c, int err, const char *why);
void xrdma_proto_fail(struct xrdma_conn *c, const char *why);

/* datapath.c */
/* Initializes the data path's lists and watchers of a new connection. */
void xrdma_dp_init(struct xrdma_conn *c);
/* Creates the completion channel, CQ, QP (on id, with the instance's PD),
 * buffers, posts the receives. Returns 0 or a negative errno (logged);
 * xrdma_dp_teardown() releases whatever was made. */
int xrdma_dp_setup(struct xrdma_conn *c, struct rdma_cm_id *id);
/* Releases the QP, CQ, channel, buffers (not the cm_id). */
void xrdma_dp_teardown(struct xrdma_conn *c);
/* Stops completion processing (the connection is going down). */
void xrdma_dp_stop(struct xrdma_conn *c);
/* Processes completions: arms the CQ at the start, delivers messages that
 * arrived before the end. May call user callbacks: only from the loop. */
void xrdma_dp_poll(struct xrdma_conn *c);
/* Completes every pending remote operation: with its own error if it has
 * one and keep_own, else with err. */
void xrdma_dp_fail_ops(struct xrdma_conn *c, int err, int keep_own);
void xrdma_dp_free_sendq(struct xrdma_conn *c);
int xrdma_dp_sendv(struct xrdma_conn *c, const struct iovec *iov, int iovcnt);
int xrdma_dp_rma(struct xrdma_conn *c, int write, struct xport_mr *local, void *buf, size_t len,
		 const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg);

#endif
