/* SPDX-License-Identifier: MIT */
/* Partition internals shared by partition.c, synic.c and the VMBus host. */
#ifndef NHV_PARTITION_INT_H
#define NHV_PARTITION_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "fab/hvabi.h"
#include "fab/nodehv.h"
#include "fab/vtx.h"

struct nhv_vmbus;

/* A SynIC message waiting for its slot (the guest has not consumed the
 * previous one yet). */
struct nhv_synic_msg {
	struct nhv_synic_msg *next;
	uint32_t sint;
	uint32_t type;
	uint32_t len;
	uint8_t payload[240];
};

#define NHV_SYNIC_QUEUE_MAX 1024 /* per vCPU; beyond it the poster is told no */

struct nhv_vp {
	struct nhv_partition *p;
	struct vtx_vcpu *vcpu;
	uint32_t index;
	bool event; /* signalled and not yet consumed by WAIT (under p->lock) */
	/* SynIC registers as the guest set them and the messages waiting for
	 * a free slot; under p->synic_lock (posted from any thread). */
	uint64_t scontrol, simp, siefp, sint[HV_SYNIC_SINT_COUNT];
	struct nhv_synic_msg *queue_head, **queue_tail;
	uint32_t queued;
};

struct nhv_partition {
	struct nhv_partition_cfg cfg;
	uint64_t id;
	struct vtx_vm *vm;
	uint8_t *ram;
	uint64_t ram_bytes;
	uint32_t nvcpus;
	struct nhv_vp vps[NHV_MAX_VCPUS];
	struct timespec born; /* reference time zero */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: state, events, interrupt */
	enum nhv_part_state state;
	bool interrupt; /* pause/stop in progress: WAIT must give up the vCPU */
	bool ending;	/* a vCPU ended the partition; monitor must stop the rest */
	bool halted;	/* all vCPU threads are stopped */
	bool monitor_quit;
	pthread_t monitor;
	bool monitor_started;
	int exit_status;
	char reason[256];

	pthread_mutex_t synic_lock; /* after p->lock if both are held */
	/* Serializes control calls (start, pause, resume, stop, destroy) over
	 * their whole run, vtx calls included; taken before p->lock, never by
	 * vCPU threads or the monitor. */
	pthread_mutex_t ctl_lock;
	pthread_mutex_t console_lock;

	struct nhv_vmbus *vmbus;      /* NULL until VMBus devices are attached */
	struct ic_dev *ic_hb, *ic_sd; /* integration components, if attached */

	int console_fd;
	uint64_t console_written;

	/* Checkpoints (checkpoint.c). host_dirty: one bit per page that host
	 * code wrote into guest RAM since the last fetch, while dirty logging
	 * is on (NULL otherwise; once allocated it stays until destroy, so a
	 * marker never sees it freed). frozen: quiesced, no attach allowed. */
	_Atomic(uint64_t *) host_dirty;
	uint64_t *host_dirty_mem;
	size_t dirty_bytes;
	bool dirty_on;
	bool frozen;

	atomic_uint_fast64_t n_hypercalls, n_waits, n_console, n_unhandled_io;
	atomic_uint_fast64_t n_synic_posted, n_synic_queued, n_synic_dropped;
};

/* The one check of guest-supplied ranges: [gpa, gpa + len) inside RAM.
 * Returns the host address or NULL. */
void *nhv_guest_range(struct nhv_partition *p, uint64_t gpa, uint64_t len);

/* Notes that host code wrote [gpa, gpa + len) of guest RAM, for the
 * pre-copy rounds of a migration (KVM logs guest writes only). Call it
 * after the write. Cheap when logging is off. Thread: any. */
void nhv_dirty_mark(struct nhv_partition *p, uint64_t gpa, uint64_t len);

/* nhv_partition_pause that gives up after timeout_ms when a vCPU does not
 * park (held up in a callback): the vCPUs run on and -ETIMEDOUT is
 * returned. Thread: control. */
int nhv_partition_pause_timed(struct nhv_partition *p, int timeout_ms);

/* The reference clock (100 ns units since the partition's time zero) and
 * setting it, for restore. */
int64_t nhv_ref_time(struct nhv_partition *p);
void nhv_ref_time_set(struct nhv_partition *p, int64_t ref);

/* A partition with its VM, RAM (all zero), vCPUs (reset state) and
 * monitor, but nothing loaded: create loads an image, restore a
 * checkpoint. Undo with nhv_partition_destroy. */
int nhv_partition_alloc(const struct nhv_partition_cfg *cfg, struct nhv_partition **out, char *err,
			size_t errlen);

/* ---- SynIC (synic.c) ----------------------------------------------------- */

/*
 * Posts a message to vCPU vp's message slot sint. Delivered at once when the
 * slot is free and the guest has enabled SCONTROL and SIMP; otherwise queued
 * and delivered on the guest's end-of-message or when it enables the page.
 * The vCPU is woken from WAIT. Thread: any. Returns 0, -EINVAL (bad vp,
 * sint or length), -ENOBUFS (the guest is not consuming: queue full).
 */
int nhv_synic_post(struct nhv_partition *p, uint32_t vp, uint32_t sint, uint32_t type,
		   const void *payload, uint32_t len);

/* True when vp's message queue lacks room for margin more messages (the
 * most replies one guest message can cause, e.g. one offer per device): a
 * post should then be refused (HV_STATUS_INSUFFICIENT_BUFFERS) before it is
 * handled, so the guest can retry it. Thread: any. */
bool nhv_synic_congested(struct nhv_partition *p, uint32_t vp, uint32_t margin);

/* Sets event flag bit `flag` of slot sint in vp's event flags page (if the
 * guest enabled it) and wakes the vCPU. Thread: any. */
void nhv_synic_signal_event(struct nhv_partition *p, uint32_t vp, uint32_t sint, uint32_t flag);

/* Register writes from the guest (vCPU thread, SetVpRegisters); they may
 * deliver queued messages. Return an HV_STATUS. */
uint16_t nhv_synic_set_reg(struct nhv_vp *vp, uint32_t name, uint64_t val);
uint16_t nhv_synic_get_reg(struct nhv_vp *vp, uint32_t name, uint64_t *val);

/* Frees queued messages (destroy). */
void nhv_synic_free(struct nhv_partition *p);

/* ---- VMBus host hooks (vmbus_host.c) -------------------------------------- */

/* HvPostMessage from vCPU vp; returns an HV_STATUS. */
uint16_t nhv_vmbus_post_message(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint32_t type, const void *payload, uint32_t len);
/* Closes every channel and frees the bus; after the vCPUs stopped. */
void nhv_vmbus_free(struct nhv_partition *p);
/* HvSignalEvent from vCPU vp; returns an HV_STATUS. */
uint16_t nhv_vmbus_signal_event(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint16_t flag);

#endif
