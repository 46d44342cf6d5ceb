/* SPDX-License-Identifier: MIT */
/*
 * nodehv: what runs on a node. For now the controller agent: registration
 * with fabctld, heartbeats, and reconnection with backoff.
 */
#ifndef FAB_NODEHV_H
#define FAB_NODEHV_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

struct nhv_agent;

struct nhv_agent_cfg {
	const char *controller; /* "host:port" */
	const char *pki_dir;	/* holds ca.crt and node-<name>.{crt,key} */
	const char *name;	/* node name, equal to its certificate's CN */
	uint32_t vcpus;
	uint64_t memory_bytes;
	const char *const *transports;
	size_t n_transports;
	const char *const *vsps;
	size_t n_vsps;
	const char *data_addr;	 /* "" or "host:port" */
	uint32_t backoff_min_ms; /* 0: 100 */
	uint32_t backoff_max_ms; /* 0: 5000 */
};

/* Agent states, for status and tests. */
enum nhv_agent_state {
	NHV_AGENT_CONNECTING,
	NHV_AGENT_REGISTERED,
	NHV_AGENT_BACKOFF,
};

/*
 * Starts the agent on loop: it connects, registers, heartbeats at the pace
 * the controller asks, and reconnects with exponential backoff whenever the
 * controller goes away or stops answering. cfg's strings must outlive the
 * agent. Returns 0, or a negative errno if the node's credentials cannot be
 * loaded (logged).
 */
int nhv_agent_start(struct ev_loop *loop, const struct nhv_agent_cfg *cfg, struct nhv_agent **out);
enum nhv_agent_state nhv_agent_state(const struct nhv_agent *a);
/* Stops and frees the agent (the connection closes). Loop thread only. */
void nhv_agent_stop(struct nhv_agent *a);

#endif
