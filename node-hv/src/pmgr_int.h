/* SPDX-License-Identifier: MIT */
/*
 * The partition manager's records, shared by pmgr.c (partitions) and
 * pmgr_mig.c (live migration of them). Loop thread only, as pmgr.h says.
 */
#ifndef NHV_PMGR_INT_H
#define NHV_PMGR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "fab/nodecfg.h"
#include "fab/nodehv.h"
#include "fab/util.h"
#include "migrate.h"
#include "pmgr.h"

struct nhv_stub;
struct nhv_mig_out;
struct nhv_mig_in;

#define PM_MAX_DEVICES	  16
#define PM_MAX_IMAGE	  (256u << 20)
#define PM_IMAGE_NAME_MAX 255
#define PM_CONSOLE_KEEP	  (64u << 10) /* newest console bytes held for the controller */
#define PM_CONSOLE_MSG	  (16u << 10) /* at most this much per ConsoleOutput */
#define PM_TICK_MS	  250	      /* console pace */
#define PM_HEALTH_TICKS	  4	      /* channel health every 4 ticks (1 s) */
#define PM_REASON	  256
#define PM_MAX_STOP_MS	  3600000u /* longest graceful stop asked for */
#define PM_REMOTE_MIN_MS  100u	   /* DeviceBinding.timeout_ms bounds (as nodecfg's) */
#define PM_REMOTE_MAX_MS  3600000u
#define ST(x)		  FAB__PARTITION_STATE__PARTITION_STATE_##x

struct pm_dev {
	char device[FAB_NAME_MAX];
	char volume[FAB_NAME_MAX];
	char path[NHV_CFG_PATH_MAX]; /* local: the volume file, resolved */
	char node[FAB_NAME_MAX];     /* whose VSP serves it (ours when local) */
	bool remote;
	struct nhv_stub *stub; /* remote, while the partition exists */
	uint64_t io_errors;    /* as last reported */
	bool failing;
};

struct pm_part {
	struct pm_part *next;
	struct nhv_pmgr *pm;
	char name[FAB_NAME_MAX];
	uint64_t epoch;
	struct nhv_partition *p; /* NULL once ended (or never created) */
	Fab__PartitionState state;
	int32_t exit_status;
	char reason[PM_REASON];
	uint32_t vcpus;
	uint64_t memory_bytes;
	unsigned ndevs;
	struct pm_dev devs[PM_MAX_DEVICES];

	/* StopPartition: asked the guest; forced if it has not gone by then. */
	bool stopping;
	uint32_t stop_ms;	/* the graceful time asked for */
	char forced[PM_REASON]; /* why a stop was forced ("" graceful) */
	ev_timer stop_timer;

	/* Console: vCPU threads append under con_lock; absolute offsets, so
	 * the ring simply keeps the newest PM_CONSOLE_KEEP bytes. */
	pthread_mutex_t con_lock;
	uint64_t con_total; /* bytes the guest wrote (con_lock) */
	uint64_t con_sent;  /* loop: up to here sent (or overwritten) */
	char con[PM_CONSOLE_KEEP];

	struct pm_mig *mig; /* an outgoing migration of this partition */
};

/*
 * A migration of one partition, either role (migrate.h does the work).
 * Kept after the controller's decision (final set) so a resent decision
 * gets the same answer; a newer migration of the name replaces it.
 */
struct pm_mig {
	struct pm_mig *next;
	struct nhv_pmgr *pm;
	uint64_t id;
	char name[FAB_NAME_MAX];
	bool source;
	uint64_t epoch;
	Fab__MigrationPhase final; /* DONE or ABORTED once decided; 0 before */
	Fab__MigrationPhase phase; /* last reported before a decision */
	struct nhv_mig_out *out;
	struct nhv_mig_in *in;
	enum nhv_mig_step step; /* last handled */
	struct nhv_mig_progress pr;
	char error[256];
	uint64_t downtime_us;
	struct pm_part *part;	    /* source: the partition; target: the shell */
	struct nhv_cfg_remote *rem; /* target: remote devices */
};

struct nhv_pmgr {
	struct nhv_pmgr_cfg cfg;
	char console_dir[NHV_CFG_PATH_MAX];
	struct pm_part *parts;
	uint64_t next_id;
	unsigned ticks;
	ev_async wake; /* a partition changed state (any thread) */
	ev_timer tick;
	nhv_report_cb report;
	void *report_arg;
	/* Live migration (pmgr_mig.c), when nhv_pmgr_mig_enable() ran. */
	const struct pm_mig_hooks *mig;
	struct pm_mig *migs;
	ev_async mig_wake; /* a migration engine changed step (any thread) */
};

/* What pmgr.c asks of pmgr_mig.c (NULL: no migration in this build of the
 * manager, e.g. its unit test). */
struct pm_mig_hooks {
	void (*part_gone)(struct pm_part *r); /* r is being destroyed: stop its copy */
	void (*tick)(struct nhv_pmgr *pm);
	int (*report)(struct nhv_pmgr *pm, Fab__NodeReport *rep);
	void (*free)(struct nhv_pmgr *pm);
};

/* pmgr.c's helpers for pmgr_mig.c. */
int pm_send_env(struct nhv_pmgr *pm, Fab__Envelope *env);
void pm_status_send(struct pm_part *r);
struct pm_part *pm_part_find(struct nhv_pmgr *pm, const char *name);
void pm_part_free(struct pm_part *r);
int pm_run_parse(struct pm_part *r, const Fab__RunPartition *m, struct nhv_cfg_remote *rem,
		 char *why, size_t len);
void pm_on_console(struct nhv_partition *p, const char *buf, size_t len, void *arg);
void pm_on_state(struct nhv_partition *p, enum nhv_part_state st, void *arg);
void pm_stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

#endif
