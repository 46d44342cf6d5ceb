/* SPDX-License-Identifier: MIT */
/*
 * Remote VMBus devices on a node (fabric/rvmbus/REMOTE.md): the data plane
 * (a libev loop on its own thread with the fabric transport), the skeleton
 * that serves this node's exports to guests elsewhere, and the stub that
 * offers a device served elsewhere to a local partition.
 */
#ifndef FAB_REMOTE_H
#define FAB_REMOTE_H

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

/* Serves the config's exports on hostport (the node's data_listen); bound
 * receives the address actually bound. Returns 0 or a negative errno. */
int nhv_skel_serve(struct nhv_dp *dp, const char *hostport, const struct nhv_config *cfg,
		   char *bound, size_t boundlen);

struct nhv_skel_stats {
	uint64_t sessions, channels, packets, bytes_read, bytes_written;
};
void nhv_skel_stats(struct nhv_dp *dp, struct nhv_skel_stats *out);

/*
 * Offers the remote disk r to partition p (named partition, for the
 * serving node's logs and checks) as a local SCSI controller whose VSP is
 * a stub forwarding to r->node. The device belongs to the partition
 * afterwards. Returns 0 or a negative errno.
 */
int nhv_stub_attach(struct nhv_dp *dp, struct nhv_partition *p, const char *partition,
		    const struct nhv_cfg_remote *r);

#endif
