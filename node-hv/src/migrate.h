/* SPDX-License-Identifier: MIT */
/*
 * Live migration between nodes, the node side (controller/MIGRATION.md):
 * the copy stream over the data plane's transport and the engines at both
 * ends. pmgr.c drives them from the controller's MigrateOut, MigrateIn and
 * MigrationDecision and reports what they do; they never decide the
 * switch themselves.
 *
 * Stream (one transport connection from the source's data plane to the
 * target's data_listen, which it shares with rvmbus links: the first
 * message's u16 type tells them apart; little endian, packed):
 *   HELLO   S->T  struct mig_hello: migration id, partition, RAM, vCPUs
 *   ACCEPT  T->S  struct mig_status: 0, or why the target refuses
 *   PAGES   S->T  struct mig_pages, u64 GPA[count], count x 4 KiB pages;
 *                 crc = CRC32C over the GPAs and the pages, checked on
 *                 arrival: a mismatch fails the migration
 *   STATE   S->T  struct mig_state, then the state blob (its own checksum;
 *                 the target also runs nhv_partition_state_check), and the
 *                 number of PAGES messages sent, which must match
 *   READY   T->S  struct mig_status: restored and paused (0), or why not
 *   PAUSED  S->T  struct mig_paused: µs from the source's quiesce to READY
 *   ERROR   T->S  struct mig_status: the target gave up (then closes)
 * The target accepts the stream only from the node its MigrateIn names
 * (the peer's certificate name, checked by the transport's TLS).
 *
 * Threads: the source copies on a thread of its own (blocking work:
 * dirty bitmaps, quiesce, copies), talking to the transport through the
 * data plane's loop. The target's receive path runs on the data plane's
 * loop; its restore on the caller's thread (pmgr's loop). Progress is
 * read under each engine's lock from any thread; notify callbacks run on
 * the engine's threads and must only wake their owner.
 */
#ifndef NHV_MIGRATE_H
#define NHV_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/nodehv.h"

struct nhv_dp;
struct xport_conn;
struct nhv_mig_out;
struct nhv_mig_in;

enum nhv_mig_step {
	NHV_MIG_PREPARE = 1, /* target: waiting for the stream */
	NHV_MIG_COPY,	     /* pages flowing */
	NHV_MIG_BLOB,	     /* target: the state arrived; restore it */
	NHV_MIG_STOPPED,     /* source: state sent and READY heard;
				target: restored, paused, READY sent */
	NHV_MIG_FAILED,	     /* error says why */
};

struct nhv_mig_progress {
	enum nhv_mig_step step;
	uint32_t round; /* 1: the full pass */
	uint64_t ram_bytes;
	uint64_t bytes_sent; /* source: sent; target: received */
	uint64_t pages_sent;
	uint64_t dirty_bytes; /* left after the last round */
	uint64_t dirty_bytes_per_s, link_bytes_per_s;
	uint64_t est_downtime_us;
	uint64_t pause_us; /* source: quiesce -> READY heard */
	uint32_t throttle_pct;
	char error[256];
};

/* Data plane's loop: the rvl server's hook for connections that are not
 * rvmbus links (rvl_server_set_other; arg is the struct nhv_dp). */
int nhv_mig_accept(struct xport_conn *c, const void *msg, size_t len, void *arg);

/* ---- source -------------------------------------------------------------- */

struct nhv_mig_out_cfg {
	uint64_t id;
	const char *name;    /* the partition, for the target's checks and logs */
	const char *target;  /* node name (its certificate's) */
	const char *address; /* its data address */
	uint32_t budget_ms;  /* 0: 50 */
	uint32_t max_rounds; /* 0: 30 */
	bool throttle;
	struct nhv_partition *p;   /* running; borrowed until nhv_mig_out_free */
	void (*notify)(void *arg); /* step changed (the engine's thread) */
	void *arg;
};

/* Starts copying p to the target on a thread of its own. Returns 0 or a
 * negative errno. */
int nhv_mig_out_start(struct nhv_dp *dp, const struct nhv_mig_out_cfg *cfg,
		      struct nhv_mig_out **out);
void nhv_mig_out_progress(struct nhv_mig_out *m, struct nhv_mig_progress *pr);
/* Stops copying if it still does (the partition runs on: dirty logging
 * off, thawed), joins the thread and frees. A STOPPED source's partition
 * stays quiesced: the caller thaws (RESUME) or destroys it (DROP). */
void nhv_mig_out_free(struct nhv_mig_out *m);

/* ---- target -------------------------------------------------------------- */

struct nhv_mig_in_cfg {
	uint64_t id;
	const char *name;
	const char *source; /* the only node whose stream is accepted */
	uint64_t ram_bytes;
	uint32_t vcpus;
	/* nhv_partition_restore_shell's, made before the stream so the
	 * pause does not pay for it; the pages land in its RAM. Borrowed:
	 * destroy it only after nhv_mig_in_free. */
	struct nhv_partition *shell;
	void (*notify)(void *arg); /* step changed (data plane's thread) */
	void *arg;
};

/* Waits for the source's stream, its pages going into the shell's RAM.
 * Returns 0 or a negative errno (-EEXIST: that migration id is expected
 * already). */
int nhv_mig_in_start(struct nhv_dp *dp, const struct nhv_mig_in_cfg *cfg, struct nhv_mig_in **out);
void nhv_mig_in_progress(struct nhv_mig_in *m, struct nhv_mig_progress *pr);
/*
 * In step BLOB: loads the state into the shell (nhv_partition_restore_state
 * with devs), left paused, and answers the source READY (or, on failure,
 * ERROR with err, and the step becomes FAILED; the shell is then unusable).
 * Returns 0 or a negative errno with err.
 */
int nhv_mig_in_restore(struct nhv_mig_in *m, const struct nhv_dev_binding *devs, size_t ndevs,
		       char *err, size_t errlen);
/* The source's quiesce -> READY time (0: not heard), and when READY
 * left here (µs, CLOCK_MONOTONIC; 0: not yet). */
void nhv_mig_in_times(struct nhv_mig_in *m, uint64_t *src_pause_us, int64_t *ready_at_us);
/* Closes the stream and frees the RAM copy. */
void nhv_mig_in_free(struct nhv_mig_in *m);

int64_t nhv_mono_us(void);

#endif
