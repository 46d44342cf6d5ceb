/* SPDX-License-Identifier: MIT */
/*
 * Transport interface for everything that crosses hosts (module xport).
 *
 * A transport instance (struct xport) belongs to one node and one libev
 * loop. It listens for and opens connections to other nodes, carries
 * messages on them, and lets a peer read and write memory this node has
 * registered (RDMA semantics: the node that owns the memory gets no callback
 * for a remote read or write; its transport serves the request against its
 * registrations, bounds- and access-checked).
 *
 * Threading: every function here must be called on the loop's thread, and
 * every callback runs on it, always from the loop, never from inside a call
 * the user made (so a callback may call any function here, except
 * xport_destroy()). The process must ignore SIGPIPE (the daemons do in
 * main()): a write to a vanished peer is then an error return.
 *
 * Security: peers authenticate with the cluster's TLS certificates before any
 * data flows; the peer must hold role node; an outgoing connection also
 * checks the peer's name. Everything a peer sends is validated; a peer that
 * breaks the protocol has its connection closed (reason logged) and nothing
 * else is affected.
 *
 * Backends implement struct xport_ops and embed struct xport, struct
 * xport_conn and struct xport_mr first in their own structs (recovered with
 * container_of), as SPDK's nvmf transports do. Users treat those structs as
 * opaque. Backends are registered explicitly, e.g. xport_tcp_register() from
 * main(), never by constructor attributes.
 */
#ifndef FAB_XPORT_H
#define FAB_XPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ev.h>

#define XPORT_DEFAULT_MAX_MSG (1u << 20) /* 1 MiB */
#define XPORT_MIN_MAX_MSG     4096u
#define XPORT_IOV_MAX	      16 /* iovecs per xport_sendv() */

struct xport;
struct xport_conn;
struct xport_mr;

struct xport_cfg {
	const char *pki_dir;   /* cluster PKI (fab/pki.h layout) */
	const char *node_name; /* this node: uses node-<name>.crt/.key */
	/* Largest message and largest chunk of a remote read/write; 0:
	 * XPORT_DEFAULT_MAX_MSG. A connection uses the smaller of both ends'. */
	uint32_t max_msg;
	/* Send queue high- and low-water marks in bytes; 0: 4 MiB and half of
	 * it. hwm must be at least lwm + max_msg so a refused message always
	 * fits once writable_cb has fired. */
	size_t send_hwm;
	size_t send_lwm;
	double connect_timeout_s; /* connect + authentication; 0: 10 s */
};

/* Access to a registration (values as in verbs so RDMA maps them 1:1).
 * Local reads are always allowed. */
enum xport_access {
	XPORT_ACCESS_LOCAL_WRITE = 1u << 0,  /* target of a remote read's data */
	XPORT_ACCESS_REMOTE_WRITE = 1u << 1, /* peers may write it */
	XPORT_ACCESS_REMOTE_READ = 1u << 2,  /* peers may read it */
};

/* What a peer needs to address a registration. Sent over the caller's own
 * channel (e.g. inside a message), all three fields. id is unguessable on
 * TCP (random 64 bit), the rkey on RDMA; length is the registration's size;
 * addr is backend data (RDMA: the region's virtual address; TCP: 0).
 * Users address registrations by offset only. */
struct xport_key {
	uint64_t id;
	uint64_t length;
	uint64_t addr;
};

/* Counters of one connection, since it was created. Remote operations count
 * as the requester (completed successfully) and as the target (served). */
struct xport_stats {
	uint64_t msgs_tx, bytes_tx; /* user messages and their payload bytes */
	uint64_t msgs_rx, bytes_rx;
	uint64_t reads, read_bytes;		  /* remote reads completed with 0 */
	uint64_t writes, write_bytes;		  /* remote writes completed with 0 */
	uint64_t served_reads, served_read_bytes; /* read chunks served */
	uint64_t served_writes, served_write_bytes;
	uint64_t refused;     /* remote requests refused (bad key, range, access) */
	uint64_t send_queued; /* bytes waiting in the send queue now */
};

/* Connection callbacks; arg is the one given to xport_connect() or chosen by
 * the accept callback. All optional except closed_cb. */
struct xport_conn_cbs {
	/* Outgoing connections only: both ends have authenticated each other
	 * (our check of the peer and the peer's check of us both passed). */
	void (*connected_cb)(struct xport_conn *c, void *arg);
	/* One whole message, valid only during the call. */
	void (*recv_cb)(struct xport_conn *c, const void *msg, size_t len, void *arg);
	/* xport_sendv() returned -EAGAIN earlier and the send queue has now
	 * drained below the low-water mark. */
	void (*writable_cb)(struct xport_conn *c, void *arg);
	/* The connection ended, exactly once per connection the user got
	 * (from xport_connect(), or accepted). err: 0 orderly (either side
	 * closed), -EACCES peer identity refused, -ETIMEDOUT, -ECONNREFUSED,
	 * -EPROTO peer broke the protocol, -ECONNRESET, ... Every remote
	 * operation still pending has completed (with -ECONNRESET) before this
	 * runs. The connection is freed when it returns. */
	void (*closed_cb)(struct xport_conn *c, int err, void *arg);
};

/*
 * An authenticated incoming connection. Return 0 and set *cbs (which must
 * outlive the connection) and *conn_arg to take it; closed_cb then follows
 * once. Return a negative errno to refuse it (closed without callbacks).
 */
typedef int (*xport_accept_cb)(struct xport_conn *c, void *arg, const struct xport_conn_cbs **cbs,
			       void **conn_arg);

/* Completion of a remote read or write: 0, or a negative errno:
 * -ENOKEY (the peer has no such registration), -ERANGE (outside it),
 * -EACCES (it lacks the access), -ECONNRESET (the connection ended first).
 * RDMA cannot tell the first three apart: treat all as "remote access
 * error". On TCP the connection stays usable after them; on RDMA a remote
 * access error ends the connection, so portable users must not rely on
 * either. */
typedef void (*xport_rma_cb)(int err, void *arg);

/* ---- the backend contract ------------------------------------------------ */

struct xport {
	const struct xport_ops *ops;
	struct ev_loop *loop;
};

struct xport_conn {
	struct xport *x;
	const struct xport_conn_cbs *cbs;
	void *arg;
};

struct xport_mr {
	struct xport *x;
	void *addr;
	size_t len;
	unsigned access;
	struct xport_key key;
};

/* One per backend; the functions mirror the wrappers below (see there for
 * the contract). create fills in the embedded struct xport. */
/* xport_ops.flags */
#define XPORT_F_NATIVE_RMA 1u /* remote read/write done by the hardware, without
				 the target's CPU: move bulk data that way rather
				 than inside messages */

struct xport_ops {
	const char *name;
	unsigned flags; /* XPORT_F_* */
	int (*create)(struct ev_loop *loop, const struct xport_cfg *cfg, struct xport **out);
	void (*destroy)(struct xport *x);
	int (*listen)(struct xport *x, const char *hostport, xport_accept_cb cb, void *arg,
		      char *bound, size_t boundlen);
	int (*connect)(struct xport *x, const char *hostport, const char *peer_name,
		       const struct xport_conn_cbs *cbs, void *arg, struct xport_conn **out);
	int (*sendv)(struct xport_conn *c, const struct iovec *iov, int iovcnt);
	void (*close)(struct xport_conn *c);
	int (*reg_mr)(struct xport *x, void *addr, size_t len, unsigned access,
		      struct xport_mr **out);
	void (*dereg_mr)(struct xport_mr *mr);
	int (*read)(struct xport_conn *c, struct xport_mr *local, void *buf, size_t len,
		    const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg);
	int (*write)(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		     const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg);
	const char *(*peer_name)(const struct xport_conn *c);
	const char *(*peer_addr)(const struct xport_conn *c);
	void (*stats)(const struct xport_conn *c, struct xport_stats *out);
};

/* ---- registry ------------------------------------------------------------ */

/* Adds a backend. ops must stay valid for the process lifetime. Returns 0
 * (also when this very ops is already registered), -EEXIST (another backend
 * has that name), -ENOSPC, -EINVAL. Not thread safe: call from main() or a
 * test's setup before other threads exist. */
int xport_register(const struct xport_ops *ops);

/* The backend called name, or NULL. */
const struct xport_ops *xport_lookup(const char *name);

/* The instance's backend flags (XPORT_F_*). Any thread. */
unsigned xport_flags(const struct xport *x);

/* Backends of this tree, each in its own library (link xport_tcp,
 * xport_rdma). Returns what xport_register() returns. */
int xport_tcp_register(void);
int xport_rdma_register(void);

/* ---- instances ----------------------------------------------------------- */

/* Creates an instance of the backend called name on loop. cfg is copied
 * (strings too). Returns 0 with *out owned by the caller, -ENOENT (no such
 * backend), -EINVAL (bad cfg), or a negative errno (PKI files missing:
 * -ENOENT/-EINVAL, logged). */
int xport_create(const char *name, struct ev_loop *loop, const struct xport_cfg *cfg,
		 struct xport **out);

/* Stops listening, closes every connection and frees the instance and its
 * registrations. Pending remote operations complete with -ECANCELED from
 * inside this call; closed_cb is NOT called for connections still open (the
 * owner is going away). Not from a callback of this instance. Run the loop
 * once more afterwards to release the sockets. */
void xport_destroy(struct xport *x);

/* Listens on "host:port" ("[v6]:port"; port 0 picks one, written to bound as
 * "ip:port" if bound is not NULL). cb runs for each authenticated peer.
 * Returns 0 or a negative errno (-EINVAL, -EADDRINUSE, ...). */
int xport_listen(struct xport *x, const char *hostport, xport_accept_cb cb, void *arg, char *bound,
		 size_t boundlen);

/* Connects to the node peer_name at "host:port". Returns 0 with *out (valid
 * until closed_cb has returned; the outcome arrives as connected_cb or
 * closed_cb) or -EINVAL (bad address or name), -EHOSTUNREACH, -ENOMEM.
 * Name resolution is synchronous. */
int xport_connect(struct xport *x, const char *hostport, const char *peer_name,
		  const struct xport_conn_cbs *cbs, void *arg, struct xport_conn **out);

/* Sends ONE message: the concatenation of iov[0..iovcnt), 1..max_msg bytes,
 * iovcnt <= XPORT_IOV_MAX. The data is copied before return. Returns 0,
 * -EAGAIN (the send queue would pass the high-water mark: nothing was
 * queued; writable_cb follows once it drained below the low-water mark),
 * -EMSGSIZE, -EINVAL, -ENOTCONN (not connected yet, or closing). Messages
 * arrive in order, each exactly once, unless the connection ends. */
int xport_sendv(struct xport_conn *c, const struct iovec *iov, int iovcnt);

/* Replaces the connection's callbacks and argument, for example once its
 * first message says what it belongs to. cbs must have a closed_cb and
 * outlive the connection. From the loop thread; takes effect for the next
 * callback. */
void xport_set_cbs(struct xport_conn *c, const struct xport_conn_cbs *cbs, void *arg);

/* Closes the connection; closed_cb follows from the loop with err 0 and
 * pending operations complete with -ECONNRESET before it. Queued messages may
 * be dropped. Idempotent. */
void xport_close(struct xport_conn *c);

/* Registers [addr, addr + len) for access (enum xport_access bits). The
 * memory must stay valid until xport_dereg_mr(). Returns 0 with *out, or
 * -EINVAL, -ENOMEM. */
int xport_reg_mr(struct xport *x, void *addr, size_t len, unsigned access, struct xport_mr **out);

/* Ends a registration: peers' later requests on its key fail with -ENOKEY.
 * Requests already served are not undone. NULL is a no-op. */
void xport_dereg_mr(struct xport_mr *mr);

/* The key to hand to peers. */
const struct xport_key *xport_mr_key(const struct xport_mr *mr);

/*
 * Remote read: len bytes at offset of the peer's registration key into buf,
 * which lies inside local (a registration of this instance with
 * XPORT_ACCESS_LOCAL_WRITE). buf must stay valid until cb. Remote write:
 * len bytes from buf (inside local) into the peer's registration at offset;
 * buf must stay unchanged until cb.
 * Returns 0 and cb follows exactly once from the loop, or (cb never runs)
 * -EINVAL (len 0, buf outside local), -EACCES (local lacks access), -ERANGE
 * (outside key->length), -ENOTCONN. Large operations are split by the
 * backend; a failed one may have transferred part of its data.
 */
int xport_read(struct xport_conn *c, struct xport_mr *local, void *buf, size_t len,
	       const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg);
int xport_write(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg);

/* The peer's node name ("" until authenticated). */
const char *xport_peer_name(const struct xport_conn *c);
/* Printable peer address ("10.0.0.2:41234"). */
const char *xport_peer_addr(const struct xport_conn *c);
/* Copies the connection's counters. */
void xport_stats(const struct xport_conn *c, struct xport_stats *out);

#endif
