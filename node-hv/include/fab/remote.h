/* SPDX-License-Identifier: MIT */
/*
 * Remote VMBus devices on a node (fabric/rvmbus/REMOTE.md): the data plane
 * (a libev loop on its own thread with the fabric transport), the skeleton
 * that serves this node's exports to guests elsewhere, and the stub that
 * offers a device served elsewhere to a local partition.
 */
#ifndef FAB_REMOTE_H
#define FAB_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/nodecfg.h"

struct nhv_dp;
struct nhv_partition;
struct nhv_stub;

/* Starts the data plane thread with a transport of the named backend
 * ("tcp", "rdma", or "auto": rdma if this build has it and a device with an
 * active port exists, else tcp; the choice is logged) for node node_name,
 * certificates in pki_dir. Returns 0 or a negative errno (logged). */
int nhv_dp_start(const char *xport_name, const char *pki_dir, const char *node_name,
		 struct nhv_dp **out);

/* The transport the data plane runs ("tcp" or "rdma"). */
const char *nhv_dp_transport(struct nhv_dp *dp);

/* Logs one line per session, link and remote channel with its counters
 * (messages and bytes each way, bytes moved by remote read/write, inline
 * bytes, reconnects, resent messages, requests failed locally). Any thread
 * (fabnode does it on SIGUSR1). */
void nhv_dp_log_status(struct nhv_dp *dp);

/* Stops the thread and frees everything on it (sessions, stubs' links,
 * skeleton channels). Stubs must have been freed with their partitions
 * first. */
void nhv_dp_stop(struct nhv_dp *dp);

/* Serves the config's exports (cfg may be NULL: none; they are copied) on
 * hostport (the node's data_listen); bound receives the address actually
 * bound. Any node of the cluster may bind these. Returns 0 or a negative
 * errno. Thread: any but the data plane's (as for every nhv_skel_ call). */
int nhv_skel_serve(struct nhv_dp *dp, const char *hostport, const struct nhv_config *cfg,
		   char *bound, size_t boundlen);

/*
 * Exports added at run time (the controller's volumes). Such an export is
 * fenced: no node may bind it until nhv_skel_export_access() names one, and
 * then only that node. Each call waits for the data plane's thread (a few
 * microseconds unless it is busy); thread: any but the data plane's.
 *
 * add: *e is copied. Returns 0 (also when the same export exists already),
 * -EEXIST (the name is taken by a different one), -ENODEV (the skeleton is
 * not serving: no nhv_skel_serve()), -EINVAL.
 */
int nhv_skel_export_add(struct nhv_dp *dp, const struct nhv_cfg_export *e);
/* remove: 0, -ENOENT, -EPERM (a config-file export), -ENODEV, or -EBUSY
 * while a channel is bound to it (busy, if not NULL, then names the node,
 * partition and device). */
int nhv_skel_export_remove(struct nhv_dp *dp, const char *name, char *busy, size_t busylen);
/* access: from now on only node (a valid name; "" for nobody) may bind the
 * export; channels of every other node bound to it are closed at once, their
 * stubs told the binding is lost (-EACCES). *closed (if not NULL) gets how
 * many. Returns 0, -ENOENT, -EPERM (a config-file export), -ENODEV, -EINVAL. */
int nhv_skel_export_access(struct nhv_dp *dp, const char *name, const char *node, unsigned *closed);

struct nhv_skel_stats {
	uint64_t sessions, channels, packets, bytes_read, bytes_written;
};
void nhv_skel_stats(struct nhv_dp *dp, struct nhv_skel_stats *out);

/*
 * Offers the remote disk r to partition p (named partition, for the
 * serving node's logs and checks) as a local SCSI controller whose VSP is
 * a stub forwarding to r->node. The device belongs to the partition
 * afterwards; *out (if not NULL) gets the stub, valid until the partition
 * is destroyed, for nhv_stub_stats(). Returns 0 or a negative errno.
 */
int nhv_stub_attach(struct nhv_dp *dp, struct nhv_partition *p, const char *partition,
		    const struct nhv_cfg_remote *r, struct nhv_stub **out);

/* A bind the serving node refused is tried again now rather than at the
 * end of its backoff (a migrated partition resumes right after the
 * controller moved the volume's access to this node). Any thread. */
void nhv_stub_bind_now(struct nhv_stub *s);

struct nhv_stub_stats {
	uint64_t forwarded; /* packets sent to the serving node */
	uint64_t completed; /* requests it answered */
	uint64_t failed;    /* requests failed here (node unreachable, binding lost) */
	uint64_t rebinds;   /* the serving node restarted */
	bool bound;	    /* the serving node holds our binding */
	bool link_up;
	/* Requests fail here (the node has been unreachable or our binding
	 * gone for timeout_ms), or the last request ended in a local failure
	 * and none has been answered since. */
	bool failing;
};
/* A stub's counters. Thread: any. */
void nhv_stub_stats(struct nhv_stub *s, struct nhv_stub_stats *out);

#endif
