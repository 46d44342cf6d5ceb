/* SPDX-License-Identifier: MIT */
/*
 * The controller's durable state in SQLite (WAL, synchronous=FULL): a call
 * that returns 0 after a change has that change on disk. Single-threaded:
 * all calls from the controller's loop thread.
 */
#ifndef CTL_STORE_H
#define CTL_STORE_H

#include <stdint.h>

#include "fab/pki.h"

struct ctl_store;

struct ctl_node_rec {
	char name[FAB_NAME_MAX];
	uint32_t vcpus;
	uint64_t memory_bytes;
	char transports[128]; /* comma-separated */
	char vsps[256];	      /* comma-separated */
	char data_addr[128];
	char peer_addr[128];
	char version[64];
	int64_t registered_unix_ms; /* first registration */
	int64_t last_seen_unix_ms;
	uint64_t generation; /* 1 on first registration, +1 on each */
	char instance[40];   /* fabnode process instance (not stored) */
};

/* Opens (creating if needed) the database at path and migrates its schema.
 * Returns 0 or a negative errno (-EIO for SQLite errors, logged). */
int ctl_store_open(const char *path, struct ctl_store **out);
void ctl_store_close(struct ctl_store *s);

/*
 * Records a registration: inserts the node or updates its description, keeps
 * registered_unix_ms of an existing node, increments generation. On return
 * rec->generation and rec->registered_unix_ms hold the stored values.
 */
int ctl_store_node_register(struct ctl_store *s, struct ctl_node_rec *rec);

/* Updates last_seen_unix_ms. Durable like every change (one fsync), so
 * call it on state transitions, not per heartbeat: liveness itself lives in
 * the controller's memory. -ENOENT if unknown. */
int ctl_store_node_seen(struct ctl_store *s, const char *name, int64_t unix_ms);

/* Groups the changes until ctl_store_commit into one transaction (one
 * fsync). Returns 0 or -EIO. */
int ctl_store_begin(struct ctl_store *s);
int ctl_store_commit(struct ctl_store *s);

/* The durability settings in force: journal mode ("wal") and synchronous
 * level (2 = FULL). For tests and status. */
int ctl_store_durability(struct ctl_store *s, char *journal, size_t len, int *synchronous);

/* Removes a node. -ENOENT if unknown. */
int ctl_store_node_delete(struct ctl_store *s, const char *name);

/* Calls cb for every node in name order; stops early if cb returns
 * non-zero and returns that value. */
typedef int (*ctl_store_node_cb)(const struct ctl_node_rec *rec, void *arg);
int ctl_store_node_foreach(struct ctl_store *s, ctl_store_node_cb cb, void *arg);

#endif
