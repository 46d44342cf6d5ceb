/* SPDX-License-Identifier: MIT */
/*
 * What the controller asks of a node (proto/fabric.proto, "controller ->
 * node commands"), private to fabnode serve: the partition manager
 * (pmgr.c) runs, stops and forgets partitions and reports what becomes of
 * them; the volume store (volumes.c) creates, exports, fences and deletes
 * the raw images in volume_dir. agent.c decodes the messages and calls in
 * here; what goes back to the controller leaves through a report callback
 * the agent installs.
 *
 * Threads: every function here runs on the main loop's thread (the one the
 * agent runs on). Partitions call back on their vCPU threads; the manager
 * hands that to the loop (see pmgr.c), so nothing here is re-entered from
 * another thread.
 *
 * Every command is validated here before anything acts on it; a bad one is
 * logged and answered with a FAILED PartitionStatus or a "failed"
 * VolumeStatus that says why. None of them blocks the loop for long:
 * creating a partition (reading its image, setting up KVM) takes
 * milliseconds; nothing waits for a guest.
 */
#ifndef NHV_PMGR_H
#define NHV_PMGR_H

#include <stddef.h>
#include <stdint.h>

#include "proto/fabric.pb-c.h"

struct ev_loop;
struct nhv_dp;
struct nhv_pmgr;
struct nhv_vols;

/*
 * Sends one node -> controller message (env is packed before the call
 * returns; it stays the caller's). Returns 0, or -ENOTCONN while the node
 * is not registered: the message is dropped (the NodeReport after the next
 * registration tells the controller the state), or another negative errno.
 */
typedef int (*nhv_report_cb)(Fab__Envelope *env, void *arg);

/* ---- partitions ----------------------------------------------------------- */

struct nhv_pmgr_cfg {
	struct ev_loop *loop;
	const char *node;	/* this node's name (vsp_node of local disks) */
	const char *image_dir;	/* RunPartition.image is a file name in here */
	const char *volume_dir; /* local disks must be files in here */
	const char *state_dir;	/* consoles go to <state_dir>/console/<name>.log */
	uint32_t vcpus;		/* offered; 0: a storage-only node, runs nothing */
	uint64_t memory_bytes;	/* offered: the sum over running partitions */
	uint64_t console_limit; /* bytes kept per console log; 0: 16 MiB */
	struct nhv_dp *dp;	/* data plane for remote disks; NULL: none */
};

/* Creates the manager; <state_dir>/console is made when a partition first
 * runs. The strings must outlive it. Returns 0 or a negative errno. */
int nhv_pmgr_new(const struct nhv_pmgr_cfg *cfg, struct nhv_pmgr **out);
/* Where reports go (NULL: nowhere). */
void nhv_pmgr_set_report(struct nhv_pmgr *pm, nhv_report_cb cb, void *arg);

/* The commands; each reports its outcome (see pmgr.c for the rules). */
void nhv_pmgr_run(struct nhv_pmgr *pm, const Fab__RunPartition *m);
void nhv_pmgr_stop(struct nhv_pmgr *pm, const Fab__StopPartition *m);
void nhv_pmgr_delete(struct nhv_pmgr *pm, const Fab__DeletePartition *m);

/* Live migration (controller/MIGRATION.md): this node as the source
 * (MigrateOut), the target (MigrateIn), and the controller's decision.
 * Each reports MigrationStatus; decisions are idempotent, and one for an
 * unknown migration is answered (DONE or ABORTED) without changing
 * anything. */
void nhv_pmgr_mig_enable(struct nhv_pmgr *pm); /* once, after nhv_pmgr_new */
void nhv_pmgr_migrate_out(struct nhv_pmgr *pm, const Fab__MigrateOut *m);
void nhv_pmgr_migrate_in(struct nhv_pmgr *pm, const Fab__MigrateIn *m);
void nhv_pmgr_decide(struct nhv_pmgr *pm, const Fab__MigrationDecision *m);

/* Adds a PartitionStatus for every partition the node holds to r (whose
 * partitions must be empty), and a MigrationStatus for every migration not yet
 * decided. Free with nhv_pmgr_report_free(). Returns 0
 * or -ENOMEM (r left empty). */
int nhv_pmgr_report_fill(struct nhv_pmgr *pm, Fab__NodeReport *r);
void nhv_pmgr_report_free(Fab__NodeReport *r);

/* 1 if a partition that exists (not only its record) has the volume file
 * path (resolved, as realpath() gives it) as a local disk; its name goes to
 * who. Else 0. */
int nhv_pmgr_volume_user(struct nhv_pmgr *pm, const char *path, char *who, size_t len);

/* Stops (forced) and destroys every partition, then frees the manager. */
void nhv_pmgr_free(struct nhv_pmgr *pm);

/* ---- volumes -------------------------------------------------------------- */

struct nhv_vols_cfg {
	const char *node;	/* this node's name */
	const char *volume_dir; /* created if missing */
	struct nhv_dp *dp;	/* its skeleton serves the volumes; NULL: local only */
	struct nhv_pmgr *pm;	/* asked whether a local partition uses a volume */
};

/* Creates the store and exports every <volume_dir>/NAME.img as NAME (fenced
 * until the controller grants access), so volumes outlive a restart.
 * volume_dir is made by the first CreateVolume; one that cannot be read is
 * logged, and the commands that need it fail with the reason. The strings
 * must outlive it. Returns 0 or -ENOMEM. */
int nhv_vols_new(const struct nhv_vols_cfg *cfg, struct nhv_vols **out);
void nhv_vols_set_report(struct nhv_vols *vs, nhv_report_cb cb, void *arg);

void nhv_vols_create(struct nhv_vols *vs, const Fab__CreateVolume *m);
void nhv_vols_delete(struct nhv_vols *vs, const Fab__DeleteVolume *m);
void nhv_vols_access(struct nhv_vols *vs, const Fab__VolumeAccess *m);

/* Adds a VolumeStatus ("ready") for every volume in volume_dir to r (whose
 * volumes must be empty). Free with nhv_vols_report_free(). Returns 0 or
 * -ENOMEM (r left empty). */
int nhv_vols_report_fill(struct nhv_vols *vs, Fab__NodeReport *r);
void nhv_vols_report_free(Fab__NodeReport *r);

void nhv_vols_free(struct nhv_vols *vs);

/* mkdir -p (each missing component with mode). Returns 0 or a negative
 * errno. */
int nhv_mkdirs(const char *path, unsigned mode);

#endif
