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

/* ---- checkpoint and restore (live migration) ------------------------------
 *
 * A partition is moved as its guest RAM plus a state blob. Pre-copy: turn
 * dirty logging on, copy all RAM while the guest runs, then fetch and copy
 * the dirty pages in rounds. Switch: quiesce, fetch and copy the last dirty
 * pages, save the state; restore on the target, start it there. Abort at
 * any point before the target starts: nhv_partition_thaw the source.
 *
 * Dirty pages are those the guest wrote (KVM's log) and those host code
 * wrote: GPA-direct data copied into guest buffers and hypercall output
 * blocks (marked as written), plus every page the host writes without
 * marking, reported dirty in every fetch: the ring pages of open channels
 * and the SynIC message and event pages. A fetch after quiesce therefore
 * holds everything that changed since the previous fetch.
 */

/* Turns dirty logging on (what was logged before is forgotten). Then
 * nhv_partition_dirty_fetch fills bitmap (bit i: page i of RAM, 4 KiB;
 * nhv_partition_dirty_bytes() bytes, 8-byte aligned) with the pages
 * written since the previous fetch or begin, and re-arms. end turns it
 * off. Return 0 or a negative errno (-EINVAL: not on, buffer too small).
 * Thread: control; the guest may run. */
int nhv_partition_dirty_begin(struct nhv_partition *p);
size_t nhv_partition_dirty_bytes(struct nhv_partition *p);
int nhv_partition_dirty_fetch(struct nhv_partition *p, uint64_t *bitmap, size_t bytes);
void nhv_partition_dirty_end(struct nhv_partition *p);

/*
 * Brings a running partition to rest: every channel stops taking packets
 * from the guest's rings and finishes what it has in flight (completions
 * written to the guest), the vCPUs are paused, and no device may be
 * attached. Returns 0 (now quiesced), -EINVAL (not running), or
 * -ETIMEDOUT when requests were still in flight after timeout_ms (err
 * names the channel) or a vCPU did not park (held up in the VMM; it gets
 * at least 2 s whatever timeout_ms is); on any error the partition runs
 * on as before. Every wait is bounded. Thread: control.
 */
int nhv_partition_quiesce(struct nhv_partition *p, int timeout_ms, char *err, size_t errlen);
/* Undoes quiesce: channels take packets again, vCPUs resume. */
int nhv_partition_thaw(struct nhv_partition *p);

/*
 * The state of a quiesced partition that is not in its RAM, as a
 * versioned, checksummed blob (format in checkpoint.c): configuration,
 * reference clock, per vCPU the registers (vtx), SynIC registers, wake
 * flag and queued messages, then the VMBus host (connection, offers,
 * GPADLs with their pages, channels with ring layout and indices, each
 * VSP's protocol state). *out is malloc'd, the caller frees it. Returns 0,
 * -EINVAL (not quiesced) or a negative errno.
 */
int nhv_partition_save_state(struct nhv_partition *p, uint8_t **out, size_t *len);

/* Checks a blob without creating anything: header, checksum, every record
 * and length. Returns 0 or -EBADMSG with a reason in err. */
int nhv_partition_state_check(const void *blob, size_t len, char *err, size_t errlen);

/* Devices of a restored partition, in the order the source attached them. */
enum nhv_bind_kind {
	NHV_BIND_DISK, /* nhv_partition_attach_disk(path, read_only) */
	NHV_BIND_IC,   /* nhv_partition_attach_ic */
	NHV_BIND_ECHO, /* nhv_partition_attach_echo */
	/* nhv_stub_attach (fab/remote.h): a device served by another node.
	 * Its saved state is the guest's handshake, which the restored stub
	 * replays to the serving node's new shadow channel (REMOTE.md). */
	NHV_BIND_REMOTE,
};

struct nhv_dp;
struct nhv_cfg_remote;
struct nhv_stub;

struct nhv_dev_binding {
	enum nhv_bind_kind kind;
	const char *path;
	bool read_only;
	/* NHV_BIND_REMOTE: the data plane, the partition's name, the device
	 * served elsewhere; *stub (if not NULL) gets the stub. */
	struct nhv_dp *dp;
	const char *partition;
	const struct nhv_cfg_remote *remote;
	struct nhv_stub **stub;
};

/*
 * Creates a partition from a blob (untrusted: everything is checked) and
 * guest RAM: ram (ram_len bytes, the saved RAM size) is copied in, or with
 * ram NULL the caller writes RAM through nhv_partition_ram before start.
 * cfg supplies the console and callbacks; its id, ram_bytes and vcpus must
 * be 0 or equal the saved ones; image and argv are ignored. The devices are
 * attached in order and must give the channels the guest knows (same
 * relids, connection ids, GUIDs, VSPs). The partition is left created, not
 * running: nhv_partition_start resumes the guest where it was saved.
 * Returns 0, -EBADMSG (bad blob), -EINVAL (does not fit cfg or devices)
 * or another negative errno, with a reason in err.
 */
int nhv_partition_restore(const struct nhv_partition_cfg *cfg, const void *ram, uint64_t ram_len,
			  const void *blob, size_t len, const struct nhv_dev_binding *devs,
			  size_t ndevs, struct nhv_partition **out, char *err, size_t errlen);

/*
 * The same in two steps, so a migration target can build the partition
 * before the state arrives and keep that out of the guest's pause: a shell
 * (cfg's ram_bytes and vcpus required; image and argv ignored) whose RAM
 * the caller fills through nhv_partition_ram, then the state loaded into
 * it (the blob's RAM size and vCPUs must match; devices as for restore).
 * After a failed restore_state the shell is unusable: destroy it. Return
 * 0 or a negative errno with a reason in err.
 */
int nhv_partition_restore_shell(const struct nhv_partition_cfg *cfg, struct nhv_partition **out,
				char *err, size_t errlen);
int nhv_partition_restore_state(struct nhv_partition *p, const void *blob, size_t len,
				const struct nhv_dev_binding *devs, size_t ndevs, char *err,
				size_t errlen);

#endif
