/* SPDX-License-Identifier: MIT */
/*
 * The controller's durable state in SQLite (WAL, synchronous=FULL): a call
 * that returns 0 after a change has that change on disk. Single-threaded:
 * all calls from the controller's loop thread.
 */
#ifndef CTL_STORE_H
#define CTL_STORE_H

#include <stdbool.h>
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
	bool drained;	     /* no new placements (stored) */
};

/* Opens (creating if needed) the database at path and migrates its schema.
 * Returns 0 or a negative errno (-EIO for SQLite errors, logged). */
int ctl_store_open(const char *path, struct ctl_store **out);
void ctl_store_close(struct ctl_store *s);

/*
 * Records a registration: inserts the node or updates its description, keeps
 * registered_unix_ms of an existing node, increments generation. On return
 * rec->generation and rec->registered_unix_ms hold the stored values, and
 * rec->drained the stored flag (a registration never changes it; false for
 * a new node).
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
/* Abandons the changes since ctl_store_begin (after a failed call in the
 * group, or a failed commit). Returns 0 or -EIO. */
int ctl_store_rollback(struct ctl_store *s);
/* Whether a transaction is open (begun, not yet committed). */
bool ctl_store_in_tx(struct ctl_store *s);

/* The durability settings in force: journal mode ("wal") and synchronous
 * level (2 = FULL). For tests and status. */
int ctl_store_durability(struct ctl_store *s, char *journal, size_t len, int *synchronous);

/* Removes a node. -ENOENT if unknown. */
int ctl_store_node_delete(struct ctl_store *s, const char *name);

/* Calls cb for every node in name order; stops early if cb returns
 * non-zero and returns that value. In this and the other foreach calls, cb
 * may call other store functions; whether changes it makes show up in the
 * rest of the listing is unspecified. */
typedef int (*ctl_store_node_cb)(const struct ctl_node_rec *rec, void *arg);
int ctl_store_node_foreach(struct ctl_store *s, ctl_store_node_cb cb, void *arg);

/* Sets or clears the node's drained flag. -ENOENT if unknown. */
int ctl_store_node_set_drained(struct ctl_store *s, const char *name, bool drained);

/* ---- volumes -------------------------------------------------------------- */

#define CTL_PATH_MAX	512
#define CTL_REASON_MAX	256
#define CTL_MAX_VOLUMES 8    /* per partition (disk0..disk7) */
#define CTL_ARGS_MAX	1024 /* guest arguments, packed */
#define CTL_IMAGE_MAX	128

struct ctl_volume_rec {
	char name[FAB_NAME_MAX];
	char node[FAB_NAME_MAX]; /* serving (storage) node */
	uint64_t size_bytes;
	char state[16]; /* "creating", "ready", "deleting", "failed" */
	char path[CTL_PATH_MAX];
	char error[CTL_REASON_MAX];
	int64_t created_unix_ms;
	/* Derived from the attachments (filled by get/foreach, ignored by
	 * insert/update): the partition it is attached to, "" if free. */
	char attached_to[FAB_NAME_MAX];
};

/* -EEXIST if a volume of that name exists. */
int ctl_store_volume_insert(struct ctl_store *s, const struct ctl_volume_rec *v);
/* Updates node, size, state, path, error. -ENOENT if unknown. */
int ctl_store_volume_update(struct ctl_store *s, const struct ctl_volume_rec *v);
/* -ENOENT if unknown, -EBUSY if attached to a partition. */
int ctl_store_volume_delete(struct ctl_store *s, const char *name);
/* -ENOENT if unknown. */
int ctl_store_volume_get(struct ctl_store *s, const char *name, struct ctl_volume_rec *out);
typedef int (*ctl_store_volume_cb)(const struct ctl_volume_rec *v, void *arg);
/* In name order; stops early on a non-zero return of cb and returns it. */
int ctl_store_volume_foreach(struct ctl_store *s, ctl_store_volume_cb cb, void *arg);

/* ---- partitions ----------------------------------------------------------- */

/* Values of the protobuf enums PartitionState and RestartPolicy. */
struct ctl_part_rec {
	/* spec (fixed after insert) */
	char name[FAB_NAME_MAX];
	char image[CTL_IMAGE_MAX];
	uint32_t vcpus;
	uint64_t memory_bytes;
	char group[FAB_NAME_MAX]; /* anti-affinity group, "" none */
	int restart;		  /* RestartPolicy */
	/* guest arguments: nargs strings packed one after another, each
	 * NUL-terminated, in args[0..args_len) */
	unsigned nargs;
	size_t args_len;
	char args[CTL_ARGS_MAX];
	unsigned nvolumes; /* attached as disk0..disk{n-1} */
	char volumes[CTL_MAX_VOLUMES][FAB_NAME_MAX];
	int64_t created_unix_ms;
	/* status (ctl_store_part_update) */
	bool desired_running;
	int state;		 /* PartitionState */
	char node[FAB_NAME_MAX]; /* placed on, "" none */
	uint64_t epoch;		 /* placement generation */
	int32_t exit_status;
	char reason[CTL_REASON_MAX];
	uint32_t restarts;
	int64_t state_unix_ms;
};

/*
 * Inserts a partition and its attachments (volume i as device "disk<i>")
 * atomically. -EEXIST if the name exists, -ENOENT if a volume is unknown,
 * -EBUSY if a volume is attached to another partition (or listed twice),
 * -EINVAL if nvolumes or args_len exceed their arrays. On error nothing is
 * stored.
 */
int ctl_store_part_insert(struct ctl_store *s, const struct ctl_part_rec *p);
/* Updates the status fields. -ENOENT if unknown. */
int ctl_store_part_update(struct ctl_store *s, const struct ctl_part_rec *p);
/* Deletes it, its attachments and placements. -ENOENT if unknown. */
int ctl_store_part_delete(struct ctl_store *s, const char *name);
/* -ENOENT if unknown. */
int ctl_store_part_get(struct ctl_store *s, const char *name, struct ctl_part_rec *out);
typedef int (*ctl_store_part_cb)(const struct ctl_part_rec *p, void *arg);
/* In name order; stops early on a non-zero return of cb and returns it. One
 * query for all partitions and their volumes. */
int ctl_store_part_foreach(struct ctl_store *s, ctl_store_part_cb cb, void *arg);

/* ---- placement decisions -------------------------------------------------- */

struct ctl_placement_rec {
	char partition[FAB_NAME_MAX];
	uint64_t epoch;
	char node[FAB_NAME_MAX]; /* "" when nothing fitted */
	char policy[16];
	char trigger[128];
	int64_t decided_unix_ms;
	/* one line per node considered: "NODE\tFEASIBLE(0|1)\tSCORE\tREASON\n" */
	char *verdicts; /* owned: freed by ctl_placement_rec_free */
};

/* Appends a decision. Only the latest 8 per partition are kept. -ENOENT if
 * the partition is unknown. */
int ctl_store_placement_add(struct ctl_store *s, const struct ctl_placement_rec *r);
/* The latest decision for partition; -ENOENT if none. Free with
 * ctl_placement_rec_free. */
int ctl_store_placement_last(struct ctl_store *s, const char *partition,
			     struct ctl_placement_rec *out);
void ctl_placement_rec_free(struct ctl_placement_rec *r);

/* ---- event log ------------------------------------------------------------ */

/* Appends an event (kind: "node", "volume", "partition"; subject: its name),
 * stamped with the current time. The log keeps the latest 10,000 events
 * (trimmed every 100 appends, so up to 99 more between trims). Ids grow and
 * are never reused, so a reader can resume after the last id it saw. */
int ctl_store_event_add(struct ctl_store *s, const char *kind, const char *subject,
			const char *message);
struct ctl_event_rec {
	int64_t id;
	int64_t unix_ms;
	char kind[16];
	char subject[FAB_NAME_MAX];
	char message[CTL_REASON_MAX];
};
typedef int (*ctl_store_event_cb)(const struct ctl_event_rec *e, void *arg);
/* The id of the newest event (0: none). */
int ctl_store_event_last_id(struct ctl_store *s, int64_t *id);
/* Events with id > after_id, oldest first, at most limit; stops early on a
 * non-zero return of cb and returns it. */
int ctl_store_event_foreach(struct ctl_store *s, int64_t after_id, unsigned limit,
			    ctl_store_event_cb cb, void *arg);

/* ---- live migrations ------------------------------------------------------ */

/* Phases: the values of the protobuf enum MigrationPhase. */
enum {
	CTL_MIG_PREPARE = 1,
	CTL_MIG_COPY = 2,
	CTL_MIG_STOPPED = 3,
	CTL_MIG_COMMITTED = 4,
	CTL_MIG_DONE = 5,
	CTL_MIG_ABORTED = 6,
};

struct ctl_migration_rec {
	uint64_t id; /* assigned by insert, never reused */
	/* fixed at insert */
	char partition[FAB_NAME_MAX];
	char source[FAB_NAME_MAX];
	char target[FAB_NAME_MAX];
	uint64_t epoch_from; /* the partition's epoch on the source */
	char trigger[128];   /* "operator admin", "drain node-a" */
	uint32_t downtime_ms, max_rounds;
	bool throttle;
	int64_t started_unix_ms;
	/* changed by update */
	int phase;	   /* CTL_MIG_* */
	uint64_t epoch_to; /* its epoch on the target */
	uint32_t rounds;
	uint64_t ram_bytes, bytes_sent, downtime_us;
	char error[CTL_REASON_MAX]; /* why it was aborted */
	int64_t ended_unix_ms;
};

/* Inserts a migration and sets m->id. Ended migrations beyond the newest
 * 1000 are trimmed. -EINVAL for a phase out of range. */
int ctl_store_migration_insert(struct ctl_store *s, struct ctl_migration_rec *m);
/* Updates phase, epoch_to, rounds, ram_bytes, bytes_sent, downtime_us,
 * error and ended time. -ENOENT if unknown, -EINVAL for a bad phase. */
int ctl_store_migration_update(struct ctl_store *s, const struct ctl_migration_rec *m);
/* -ENOENT if unknown. */
int ctl_store_migration_get(struct ctl_store *s, uint64_t id, struct ctl_migration_rec *out);
/* The partition's newest migration; -ENOENT if none. */
int ctl_store_migration_last(struct ctl_store *s, const char *partition,
			     struct ctl_migration_rec *out);
typedef int (*ctl_store_migration_cb)(const struct ctl_migration_rec *m, void *arg);
/* In id order, of one partition (NULL: all), only those not ended if
 * active_only; stops early on a non-zero return of cb and returns it. */
int ctl_store_migration_foreach(struct ctl_store *s, const char *partition, bool active_only,
				ctl_store_migration_cb cb, void *arg);

/* Schema version in the database (PRAGMA user_version) and the number of
 * migrations this build knows. */
int ctl_store_schema_version(struct ctl_store *s, int *version, int *known);

#endif
