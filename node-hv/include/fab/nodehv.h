/* SPDX-License-Identifier: MIT */
/*
 * nodehv: what runs on a node: child partitions on KVM (through vtx) and the
 * controller agent (registration with fabctld, heartbeats, reconnection).
 */
#ifndef FAB_NODEHV_H
#define FAB_NODEHV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct nhv_agent;
struct nhv_pmgr;
struct nhv_vols;

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
	/* What carries out the controller's commands (fabnode serve's, see
	 * node-hv/src/pmgr.h); NULL: the agent registers and heartbeats only
	 * and closes a connection that sends commands. Borrowed: they must
	 * outlive the agent; their reports go out on its connection. */
	struct nhv_pmgr *pmgr;
	struct nhv_vols *vols;
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
 * controller goes away or stops answering. After every registration it
 * sends a NodeReport (every partition and volume the node holds); then it
 * hands the controller's commands to cfg->pmgr and cfg->vols. cfg's strings
 * must outlive the agent. Returns 0, or a negative errno if the node's
 * credentials cannot be loaded (logged).
 */
int nhv_agent_start(struct ev_loop *loop, const struct nhv_agent_cfg *cfg, struct nhv_agent **out);
enum nhv_agent_state nhv_agent_state(const struct nhv_agent *a);
/* Stops and frees the agent (the connection closes). Loop thread only. */
void nhv_agent_stop(struct nhv_agent *a);

/* ---- partitions --------------------------------------------------------- */

struct nhv_partition;

enum nhv_part_state {
	NHV_PART_CREATED,
	NHV_PART_RUNNING,
	NHV_PART_PAUSED,
	NHV_PART_STOPPED, /* stopped by the host */
	NHV_PART_EXITED,  /* the guest exited (see exit status) */
	NHV_PART_CRASHED, /* triple fault, failed entry, internal error, panic */
};

/* Console output of a partition, called on a vCPU thread. */
typedef void (*nhv_console_cb)(struct nhv_partition *p, const char *buf, size_t len, void *arg);
/* A state change, called on the thread that made it (vCPU or monitor). */
typedef void (*nhv_state_cb)(struct nhv_partition *p, enum nhv_part_state st, void *arg);

struct nhv_partition_cfg {
	uint64_t id;	      /* partition id, shown to the guest */
	uint64_t ram_bytes;   /* FAB_RAM_MIN..FAB_RAM_MAX, multiple of FAB_RAM_ALIGN */
	uint32_t vcpus;	      /* 1..NHV_MAX_VCPUS */
	const uint8_t *image; /* ELF64 image bytes (copied into guest RAM) */
	size_t image_len;
	int argc; /* arguments for the guest: argv[0] is the image name */
	const char *const *argv;
	const char *console_path;  /* append the console here if not NULL */
	uint64_t console_limit;	   /* bytes kept in console_path; 0: 16 MiB */
	nhv_console_cb console_cb; /* optional */
	nhv_state_cb state_cb;	   /* optional */
	void *cb_arg;
};

#define NHV_MAX_VCPUS 64

/*
 * Creates a partition: a KVM VM with ram_bytes of memfd-backed RAM, the
 * image loaded and validated, page tables, boot info and hypercall page
 * written, and vCPUs ready at the entry point in 64-bit mode at CPL3. It
 * does not run until nhv_partition_start. Returns 0, -EINVAL (bad config),
 * -ENOEXEC (bad image; err says why), -E2BIG (arguments too long), or vtx's
 * errors. err (may be NULL) receives a one-line reason on failure.
 */
int nhv_partition_create(const struct nhv_partition_cfg *cfg, struct nhv_partition **out, char *err,
			 size_t errlen);
/* Checks a configuration without creating anything (the first thing create
 * does). Returns 0, -EINVAL or -E2BIG with a reason in err. */
int nhv_partition_cfg_check(const struct nhv_partition_cfg *cfg, char *err, size_t errlen);
/* Lifecycle; each returns 0 or -EINVAL when not allowed in the current state. */
int nhv_partition_start(struct nhv_partition *p);
int nhv_partition_pause(struct nhv_partition *p);
int nhv_partition_resume(struct nhv_partition *p);
int nhv_partition_stop(struct nhv_partition *p);
/*
 * Waits until the partition has stopped, exited or crashed and all its
 * vCPUs are halted (timeout_ms < 0: forever). Returns the state, or
 * -ETIMEDOUT.
 */
int nhv_partition_wait(struct nhv_partition *p, int timeout_ms);
enum nhv_part_state nhv_partition_state(struct nhv_partition *p);
const char *nhv_part_state_name(enum nhv_part_state st);
/* Exit status given by the guest (valid in NHV_PART_EXITED). */
int nhv_partition_exit_status(struct nhv_partition *p);
/* Why it crashed or stopped ("" otherwise). Copied into buf. */
void nhv_partition_reason(struct nhv_partition *p, char *buf, size_t len);
/* Wakes vCPU vp (or all with -1) from a WAIT hypercall. Thread: any. */
void nhv_partition_signal(struct nhv_partition *p, int vp);
/*
 * Registers a doorbell: a 32-bit guest write of conn_id to FAB_DOORBELL_PORT
 * increments the returned eventfd inside KVM, without an exit to this
 * process. *fd is borrowed (closed by destroy). Returns 0, -EEXIST, or vtx's
 * errors. Thread: any.
 */
int nhv_partition_doorbell_add(struct nhv_partition *p, uint32_t conn_id, int *fd);
/* ---- devices (VMBus channels; attach before or after start) -------------- */

/* A SCSI disk on the raw image at path (size a multiple of 512). Returns 0
 * or a negative errno with a reason in err. */
int nhv_partition_attach_disk(struct nhv_partition *p, const char *path, bool read_only, char *err,
			      size_t errlen);
/* The fabric's echo and ping test devices (benchmarks of the channel path). */
int nhv_partition_attach_echo(struct nhv_partition *p);
/* The heartbeat and shutdown integration components. */
int nhv_partition_attach_ic(struct nhv_partition *p);
/* Heartbeat answers received and ms since the last (-1: none yet).
 * -ENODEV without ICs. Thread: any. */
int nhv_partition_heartbeat(struct nhv_partition *p, uint64_t *beats, int64_t *age_ms);
/* Asks the guest to shut down through the shutdown IC. -ENODEV without
 * ICs, -ENOTCONN if the guest has not opened the channel. Thread: any. */
int nhv_partition_request_shutdown(struct nhv_partition *p);

/* Guest RAM and its memfd (borrowed, valid until destroy). */
void *nhv_partition_ram(struct nhv_partition *p, uint64_t *bytes);
int nhv_partition_ram_fd(struct nhv_partition *p);
/* Counters. */
struct nhv_partition_stats {
	uint64_t hypercalls;
	uint64_t waits;
	uint64_t console_bytes;
	uint64_t unhandled_io;
};
void nhv_partition_stats(struct nhv_partition *p, struct nhv_partition_stats *out);
/* Stops it if needed and frees everything (threads, fds, memory). */
void nhv_partition_destroy(struct nhv_partition *p);

#endif
