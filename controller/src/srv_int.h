/* SPDX-License-Identifier: MIT */
/*
 * fabctld's in-memory model, shared by server.c (connections, leases),
 * cluster.c (placement, reconciliation, node reports) and api.c (the admin
 * API). Everything runs on the controller's one loop thread.
 *
 * The store holds the desired state and every decision; this model mirrors
 * it (loaded at start) plus what only lives while the controller runs:
 * node liveness, channel health and console output reported by nodes.
 */
#ifndef CTL_SRV_INT_H
#define CTL_SRV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "ctl.h"
#include "sched.h"
#include "store.h"

/* A chained hash of names; entries are embedded in their owners. */
struct ctl_hent {
	struct ctl_hent *next;
	const char *key;
};

struct ctl_hmap {
	struct ctl_hent **b;
	size_t nb, n;
};

int ctl_hmap_init(struct ctl_hmap *m, size_t nb);
void ctl_hmap_free(struct ctl_hmap *m);
/* key must stay valid while the entry is in the map. -ENOMEM on growth
 * failure (the entry is still added). */
void ctl_hmap_add(struct ctl_hmap *m, struct ctl_hent *e, const char *key);
void ctl_hmap_del(struct ctl_hmap *m, struct ctl_hent *e);
struct ctl_hent *ctl_hmap_get(const struct ctl_hmap *m, const char *key);

#define ctl_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum node_state { NODE_DOWN, NODE_UP };

struct ctl_client;

/* Anti-affinity groups of the partitions placed on a node, with counts. */
struct ctl_group_count {
	char name[FAB_NAME_MAX];
	unsigned count;
};

struct ctl_node {
	struct ctl_hent h;
	struct ctl_node_rec rec;
	enum node_state state;
	int64_t lease_until; /* monotonic ms; meaningful while up */
	struct ctl_client *client;
	struct ctl_node *next; /* sorted by name */
	/* placed partitions */
	uint32_t vcpus_used;
	uint64_t memory_used;
	unsigned nparts;
	struct ctl_group_count *groups;
	unsigned ngroups, groups_cap;
	bool reported; /* a NodeReport arrived since it registered */
	bool lost;     /* its partitions were handled as lost */
	/* drain: migrating its partitions off, one at a time (migrate.c) */
	bool draining;
	unsigned drain_total, drain_moved, drain_next;
	char **drain_names; /* the partitions to move, in order */
	char **unmovable;   /* "name: why", the ones that could not move */
	unsigned nunmovable;
	char drain_status[CTL_REASON_MAX];
};

#define CTL_CONSOLE_MAX (64u << 10)
#define CTL_MAX_REPLY	(16u << 20) /* admin replies (lists) may be large */
#define CTL_MAX_ARGS	31 /* guest arguments after the image name */

struct ctl_chan {
	char device[16];
	char volume[FAB_NAME_MAX];
	bool remote;
	char transport[8];
	char vsp_node[FAB_NAME_MAX];
	char health[12];
	uint64_t io_errors;
};

struct ctl_mig;

struct ctl_part {
	struct ctl_hent h;
	struct ctl_part_rec rec;
	struct ctl_node *node; /* placed on; holds its vCPUs and memory */
	/* channels as last reported by the node (not stored) */
	struct ctl_chan chans[CTL_MAX_VOLUMES];
	unsigned nchans;
	/* the newest console bytes (ring) */
	char *con;
	size_t con_len, con_head;
	bool con_dropped;
	int64_t retry_at; /* monotonic ms: next placement attempt while pending */
	unsigned attempts;
	uint64_t seen;	       /* report mark (reconciliation) */
	struct ctl_mig *mig;   /* its migration until DONE or ABORTED */
	struct ctl_part *next; /* in the server's list, name order not kept */
	struct ctl_part *prev;
};

struct ctl_volume {
	struct ctl_hent h;
	struct ctl_volume_rec rec;
	bool seen; /* reconciliation */
	struct ctl_volume *next, *prev;
};

/*
 * A live migration the controller is driving (migrate.c). The row in the
 * store holds the decisions; this holds what only matters while it runs.
 * Lives from the request until DONE or ABORTED.
 */
struct ctl_mig {
	struct ctl_migration_rec rec;
	struct ctl_part *p;
	struct ctl_node *src, *dst;
	bool out_sent;	  /* MigrateOut went to the source */
	bool src_stopped; /* the source sent its last pages and state */
	bool dst_ready;	  /* the target holds the restored partition paused */
	bool reserved;	  /* the target's resources are held for it */
	/* progress, as last reported (not stored) */
	uint64_t dirty_bytes, dirty_rate, link_rate, est_downtime_us;
	uint32_t throttle_pct;
	int64_t heard_ms;   /* monotonic: last status from either side */
	int64_t decided_ms; /* monotonic: decisions last sent (committed) */
	int64_t running_ms; /* monotonic: the target reported it running */
	struct ctl_mig *next;
};

struct ctl_client {
	struct ctl_server *srv;
	struct fab_conn *conn;
	struct ctl_node *node; /* set once registered */
	struct ctl_client *prev, *next;
};

struct ctl_server {
	struct ev_loop *loop;
	SSL_CTX *ctx;
	struct ctl_store *store;
	int lfd;
	ev_io lio;
	ev_timer accept_retry; /* out of fds: accepting pauses briefly */
	ev_timer lease_timer;
	ev_timer reconcile_timer;
	ev_prepare batch_watcher; /* commits the shared transaction */
	bool batch_open;
	struct ctl_node *nodes;
	size_t nnodes;
	struct ctl_hmap node_map;
	struct ctl_part *parts;
	size_t nparts;
	struct ctl_hmap part_map;
	struct ctl_volume *vols;
	size_t nvols;
	struct ctl_hmap vol_map;
	struct ctl_client *clients;
	size_t nclients, max_clients;
	struct ctl_mig *migs; /* in progress */
	uint32_t lease_ms, heartbeat_ms;
	uint32_t stop_timeout_ms;
	enum ctl_sched_policy policy;
	char addr[64];
	int64_t started_ms;
	bool startup_judged;
	uint64_t report_seq;
	/* scratch for the scheduler, sized to the node count */
	struct ctl_sched_node *sn;
	struct ctl_sched_verdict *sv;
	struct ctl_node **snp;
	size_t scap, slast; /* slast: nodes judged in the last run */
};

/* ---- server.c ---- */
/*
 * Transactions. Node reports (a partition's new state) need no reply, so
 * those that arrive in one turn of the loop share one transaction, committed
 * before the loop waits again: one fsync for many reports. Everything that
 * replies or acknowledges opens its own with ctl_tx_begin, which commits
 * the shared one first, so its own commit (before its reply) covers it.
 */
int ctl_tx_begin(struct ctl_server *s);
/* Joins (opening if needed) the shared transaction of this loop turn.
 * false if it could not be opened (the changes then autocommit). */
bool ctl_batch_join(struct ctl_server *s);
void ctl_batch_flush(struct ctl_server *s);
struct ctl_node *ctl_node_find(struct ctl_server *s, const char *name);
/* Queues env to the node if it is connected (one-way command). */
void ctl_node_send(struct ctl_server *s, struct ctl_node *n, Fab__Envelope *env);
void ctl_send_env(struct ctl_client *c, Fab__Envelope *env);
void ctl_reply_error(struct ctl_client *c, uint64_t id, int code, const char *msg, int fatal);
/* Test hook: dies with SIGKILL at the named point when FABCTLD_TEST_CRASH_AT
 * names it (crash-consistency tests). */
void ctl_crash_point(const char *name);

/* ---- cluster.c ---- */
int ctl_cluster_load(struct ctl_server *s);
void ctl_cluster_free(struct ctl_server *s);
/* Adds a new partition to the model (list and name map). */
void ctl_part_link(struct ctl_server *s, struct ctl_part *p);
void ctl_part_unlink(struct ctl_server *s, struct ctl_part *p);
void ctl_volume_link(struct ctl_server *s, struct ctl_volume *v);
void ctl_volume_unlink(struct ctl_server *s, struct ctl_volume *v);
/* Commands to nodes (one-way). */
void ctl_send_stop(struct ctl_server *s, struct ctl_part *p, uint32_t timeout_ms);
void ctl_send_delete(struct ctl_server *s, struct ctl_node *n, const char *name, uint64_t epoch);
void ctl_send_create_volume(struct ctl_server *s, struct ctl_volume *v);
void ctl_send_delete_volume(struct ctl_server *s, struct ctl_volume *v);
struct ctl_part *ctl_part_find(struct ctl_server *s, const char *name);
struct ctl_volume *ctl_volume_find(struct ctl_server *s, const char *name);
/* Adds/removes a partition's claim on its node (vCPUs, memory, group). */
void ctl_part_bind(struct ctl_server *s, struct ctl_part *p, struct ctl_node *n);
void ctl_part_unbind(struct ctl_server *s, struct ctl_part *p);
/*
 * Places p (its status fields are updated and stored with the decision, in
 * the caller's transaction if one is open). Returns 0 (placed: p->node set,
 * state SCHEDULED, epoch bumped), -ENOSPC with the explanation in err, or
 * -EIO. The caller sends the commands (ctl_part_dispatch) after commit.
 */
int ctl_place(struct ctl_server *s, struct ctl_part *p, const char *trigger,
	      const struct ctl_node *avoid, char *err, size_t errlen);
/* p's devices bound as seen from node n: local where n serves the volume,
 * else remote to its serving node. db, dbp and dev hold CTL_MAX_VOLUMES;
 * returns the count. Strings point into p and the model. */
unsigned ctl_part_bindings(struct ctl_server *s, const struct ctl_part *p, const struct ctl_node *n,
			   Fab__DeviceBinding *db, Fab__DeviceBinding **dbp, char (*dev)[16]);
/* p's guest arguments into args (CTL_MAX_ARGS); returns the count. */
size_t ctl_part_args(const struct ctl_part *p, char **args);
/* Sends RunPartition to p's node and VolumeAccess for its volumes. */
void ctl_part_dispatch(struct ctl_server *s, struct ctl_part *p);
/* Tells volumes' nodes who may use them now (after placement or release). */
void ctl_part_fence(struct ctl_server *s, struct ctl_part *p);
/* Stores p's status fields, logging a failure. */
int ctl_part_save(struct ctl_server *s, struct ctl_part *p);
void ctl_part_set_state(struct ctl_part *p, int state, const char *reason);
void ctl_event(struct ctl_server *s, const char *kind, const char *subject, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A node's lease expired. */
void ctl_node_lost(struct ctl_server *s, struct ctl_node *n);
/* A node (re)registered: its NodeReport will follow. */
void ctl_node_registered(struct ctl_server *s, struct ctl_node *n);
/* Node -> controller messages; c->node is set. */
void ctl_on_node_report(struct ctl_server *s, struct ctl_node *n, const Fab__NodeReport *r);
void ctl_on_partition_status(struct ctl_server *s, struct ctl_node *n,
			     const Fab__PartitionStatus *st);
void ctl_on_volume_status(struct ctl_server *s, struct ctl_node *n, const Fab__VolumeStatus *vs);
void ctl_on_console(struct ctl_server *s, struct ctl_node *n, const Fab__ConsoleOutput *co);
void ctl_reconcile_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Holds (or gives back) n's vCPUs, memory and group count for p without
 * placing p there (a migration's target). */
void ctl_node_claim(struct ctl_node *n, const struct ctl_part *p);
void ctl_node_release(struct ctl_node *n, const struct ctl_part *p);
/*
 * Runs the scheduler for p as if it were unplaced, excluding avoid; fills
 * a Placement-like record (pr->verdicts owned, free with
 * ctl_placement_rec_free). Returns 0 with *chosen, -ENOSPC with err, or
 * another negative errno. Changes nothing.
 */
int ctl_sched_for(struct ctl_server *s, struct ctl_part *p, const struct ctl_node *avoid,
		  const char *trigger, struct ctl_placement_rec *pr, struct ctl_node **chosen,
		  char *err, size_t errlen);
/* Why a node is not feasible in the last ctl_sched_for run ("" if it is
 * or was not judged). */
const char *ctl_sched_verdict_of(struct ctl_server *s, const struct ctl_node *n);

/* ---- migrate.c: live migration and drain ---- */
struct ctl_migrate_args {
	const char *to; /* "" or NULL: the scheduler chooses */
	uint32_t downtime_ms, max_rounds;
	bool throttle;
	const char *trigger;
};
/*
 * Starts migrating p (stored PREPARE, MigrateIn sent). Returns 0 with *out
 * (and the placement decision in pr, owned by the caller), or a negative
 * errno with the reason in err: -ENOENT (no such node), -EBUSY (not
 * running, already migrating), -ENOSPC (no node fits), -EINVAL, -EIO.
 */
int ctl_mig_start(struct ctl_server *s, struct ctl_part *p, const struct ctl_migrate_args *a,
		  struct ctl_placement_rec *pr, struct ctl_mig **out, char *err, size_t errlen);
/* Aborts m (before COMMITTED; otherwise -EBUSY): stored ABORTED with why,
 * DROP to the target, RESUME to the source. m is freed. */
int ctl_mig_abort(struct ctl_server *s, struct ctl_mig *m, const char *why);
struct ctl_mig *ctl_mig_find(struct ctl_server *s, uint64_t id);
/* After the store is loaded: rows in PREPARE/COPY/STOPPED are aborted,
 * rows in COMMITTED are completed once the nodes report. */
int ctl_mig_load(struct ctl_server *s);
void ctl_mig_free_all(struct ctl_server *s);
void ctl_on_migration_status(struct ctl_server *s, struct ctl_node *n,
			     const Fab__MigrationStatus *st);
/* A node's report lists migrations not yet decided for it: answer them. */
void ctl_mig_report(struct ctl_server *s, struct ctl_node *n, const Fab__NodeReport *r);
/* Whether (n, epoch) of p is a copy that belongs to p's migration and
 * waits for its decision (reconciliation must leave it alone). */
bool ctl_mig_owns(struct ctl_server *s, struct ctl_part *p, struct ctl_node *n, uint64_t epoch);
/* p's node (the committed target) reports it running under its new
 * epoch: the migration is done. */
void ctl_mig_target_running(struct ctl_server *s, struct ctl_part *p);
/* Hooks: a node lost its lease; p ended on its node (before its state
 * changes). */
void ctl_mig_node_lost(struct ctl_server *s, struct ctl_node *n);
void ctl_mig_part_ended(struct ctl_server *s, struct ctl_part *p, const char *why);
/* Timeouts, resent decisions and the drains' next steps (every second). */
void ctl_mig_tick(struct ctl_server *s);
/* Starts (or, with on false, stops) draining n. */
void ctl_drain_set(struct ctl_server *s, struct ctl_node *n, bool on);
/* Frees n's drain lists (the node is going). */
void ctl_drain_free(struct ctl_node *n);

/* ---- api.c: admin requests; returns 1 if it handled env's body ---- */
int ctl_api_dispatch(struct ctl_client *c, const Fab__Envelope *env);

#endif
