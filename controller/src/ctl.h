/* SPDX-License-Identifier: MIT */
/* fabctld internals shared by its source files (not a public header). */
#ifndef CTL_INT_H
#define CTL_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "proto/fabric.pb-c.h"
#include "store.h"

#define CTL_DEFAULT_LEASE_MS 5000
#define CTL_DEFAULT_PORT     "7700"

struct ctl_server;

struct ctl_server_cfg {
	const char *listen; /* "host:port" */
	const char *db_path;
	const char *pki_dir;
	uint32_t lease_ms;     /* a node without heartbeat this long is down */
	uint32_t heartbeat_ms; /* 0: lease_ms / 5 */
	size_t max_clients;    /* 0: 1024 */
	const char *policy;    /* placement policy "spread" (default) or "pack" */
	uint32_t stop_timeout_ms; /* graceful stop before forced (0: 10 s) */
};

/* Opens the store, loads nodes (all shown down until they are heard from),
 * and starts listening. Returns 0 or a negative errno (logged). */
int ctl_server_new(struct ev_loop *loop, const struct ctl_server_cfg *cfg, struct ctl_server **out);
/* Address actually bound ("127.0.0.1:41234"). */
const char *ctl_server_addr(const struct ctl_server *s);
/* Closes every connection and the store. */
void ctl_server_free(struct ctl_server *s);

/*
 * Validates a registration against the registering certificate's name and
 * fills rec (peer_addr and times are left to the caller). The one place a
 * node's description is checked. Returns 0 or -EINVAL with a reason in err.
 */
int ctl_register_validate(const Fab__RegisterNode *m, const char *cert_name,
			  struct ctl_node_rec *rec, char *err, size_t errlen);

/* Splits a comma-separated list into out (pointers into buf, which is
 * modified). Returns the count (at most max). */
size_t ctl_split_list(char *buf, char **out, size_t max);

#endif
