/* SPDX-License-Identifier: MIT */
/*
 * Remote channels, internals shared by dataplane.c, stub.c and skeleton.c:
 * the channel-layer messages carried by an rvmbus link (REMOTE.md) and the
 * data plane's loop-thread services.
 *
 * Messages (little endian, packed; the link adds sequencing):
 *   BIND     A->B  struct rch_bind
 *   BIND_OK  B->A  struct rch_bind_ok
 *   PKT      A->B  struct rch_pkt, then one VMBus packet exactly as read
 *                  from the guest's ring, trans_id replaced by the stub's
 *                  wire id (unique per stub, never reused), then inline_len
 *                  bytes: the guest buffer of its first GPA range (a SCSI
 *                  write's data, so the VSP needs no remote read)
 *   PKT      B->A  struct rch_pkt_out, then len bytes: what the VSP sent,
 *                  then inline_len bytes for the first GPA range of the
 *                  request it completes (a read's data, so the VSP needs
 *                  no remote write)
 *   CREDIT   B->A  struct rch_credit: B took n more packets off its queue
 *                  (usually the count rides in a PKT's credits field)
 *   UNBIND   A->B  struct rch_unbind
 */
#ifndef NHV_REMOTE_INT_H
#define NHV_REMOTE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "fab/pki.h"

#define RCH_T_BIND    0x0100
#define RCH_T_BIND_OK 0x0101
#define RCH_T_PKT     0x0102
#define RCH_T_CREDIT  0x0103
#define RCH_T_UNBIND  0x0104

#define RCH_NAME 64 /* NUL-terminated names, fab_name_valid() */

struct rch_bind {
	uint32_t chan; /* the stub's id for this binding, unique on the link */
	uint32_t type;	     /* enum nhv_dev_type: must match the export's */
	uint64_t ram_key_id; /* the guest RAM registration on A (struct xport_key) */
	uint64_t ram_len;
	uint64_t ram_key_addr;
	char partition[RCH_NAME];
	char device[RCH_NAME];
	char export_name[RCH_NAME];
} __attribute__((packed));

struct rch_bind_ok {
	uint32_t chan;
	int32_t status;	  /* 0 or a negative errno */
	uint32_t credits; /* packets B can queue for this channel */
	uint32_t reserved;
} __attribute__((packed));

struct rch_pkt {
	uint32_t chan;
	uint32_t len;	     /* VMBus packet bytes that follow */
	uint32_t inline_len; /* then this many bytes of inline data */
	uint32_t reserved;
} __attribute__((packed));

#define RCH_OUT_INBAND	   1
#define RCH_OUT_COMPLETION 2

struct rch_pkt_out {
	uint32_t chan;
	uint16_t kind; /* RCH_OUT_* */
	uint16_t flags;
	uint64_t trans_id;
	uint32_t len;
	uint32_t inline_len;
	uint32_t credits; /* as a CREDIT message would return, riding along */
	uint32_t reserved;
} __attribute__((packed));

struct rch_credit {
	uint32_t chan;
	uint32_t n;
} __attribute__((packed));

struct rch_unbind {
	uint32_t chan;
	uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct rch_bind) == 32 + 3 * RCH_NAME, "bind");
_Static_assert(sizeof(struct rch_pkt_out) == 32, "pkt out");

/* Largest VMBus packet forwarded either way, and largest inline data
 * (larger buffers move by remote read/write). */
#define RCH_MAX_PKT    (64u << 10)
#define RCH_MAX_INLINE (256u << 10)

/* Packets a skeleton channel queues (its credit grant). */
#define RCH_CREDITS 64

struct nhv_dp;
struct ev_loop;
struct xport;

struct ev_loop *nhv_dp_loop(struct nhv_dp *dp);
struct xport *nhv_dp_xport(struct nhv_dp *dp);
const char *nhv_dp_node(struct nhv_dp *dp);

/* Runs fn(arg) on the loop thread, soon, in the order posted. Any thread.
 * Returns 0 or -ENOMEM. */
int nhv_dp_post(struct nhv_dp *dp, void (*fn)(void *arg), void *arg);
/* Runs fn(arg) on the loop thread and returns its result. Any thread but
 * the loop's. */
int nhv_dp_call(struct nhv_dp *dp, int (*fn)(void *arg), void *arg);

/* Skeleton state of a data plane (skeleton.c). On the loop thread, at
 * stop: shutdown starts closing every channel, drained says all have
 * closed, free releases the rest. */
struct nhv_skel;
void nhv_skel_shutdown(struct nhv_skel *sk);
bool nhv_skel_drained(struct nhv_skel *sk);
void nhv_skel_free(struct nhv_skel *sk);
void nhv_skel_log_status(struct nhv_skel *sk);
struct stub_links;
void nhv_stub_links_log_status(struct stub_links *sl);
struct xport_conn;

/* Loop thread: the transport registration of a guest's RAM, made once per
 * partition and shared by its remote devices (counted). Returns 0 or the
 * registration's error. */
struct xport_mr;
int nhv_dp_ram_get(struct nhv_dp *dp, void *ram, size_t len, struct xport_mr **out);
void nhv_dp_ram_put(struct nhv_dp *dp, struct xport_mr *mr);

/* "msgs tx/rx ..., rdma/remote read ..." for a connection (NULL: down). */
void nhv_conn_stats_str(struct xport_conn *c, char *buf, size_t len);
/* Stub links of a data plane (stub.c), freed on the loop thread. */
struct stub_links;
void nhv_stub_links_free(struct stub_links *sl);

/* The data plane's per-module state slots (set on the loop thread). */
struct nhv_skel **nhv_dp_skel_slot(struct nhv_dp *dp);
struct stub_links **nhv_dp_links_slot(struct nhv_dp *dp);

#endif
