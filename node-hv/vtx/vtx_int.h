/* SPDX-License-Identifier: MIT */
/* Private to node-hv/vtx: the only place <linux/kvm.h> is included. */
#ifndef VTX_INT_H
#define VTX_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/vtx.h"

/* The public blob carries KVM ABI images by size; keep them in step. */
_Static_assert(sizeof(((struct vtx_vcpu_state *)0)->xcrs) == sizeof(struct kvm_xcrs), "xcrs");
_Static_assert(sizeof(((struct vtx_vcpu_state *)0)->events) == sizeof(struct kvm_vcpu_events),
	       "events");
_Static_assert(sizeof(((struct vtx_vcpu_state *)0)->debugregs) == sizeof(struct kvm_debugregs),
	       "debugregs");
_Static_assert(sizeof(((struct vtx_vcpu_state *)0)->fpu) == sizeof(struct kvm_fpu), "fpu");
_Static_assert(sizeof(((struct vtx_vcpu_state *)0)->lapic) == sizeof(struct kvm_lapic_state),
	       "lapic");
_Static_assert(VTX_XSAVE_MAX >= sizeof(struct kvm_xsave), "xsave");
_Static_assert(sizeof(((struct vtx_sregs *)0)->interrupt_bitmap) ==
		       sizeof(((struct kvm_sregs *)0)->interrupt_bitmap),
	       "interrupt_bitmap");

struct vtx_slot {
	bool used;
	uint32_t kvm_flags; /* KVM_MEM_* as currently set in KVM */
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct vtx_ioevent {
	struct vtx_ioevent *next;
	struct vtx_ioevent_spec spec; /* spec.fd is the eventfd in use */
	bool own_fd;
};

/*
 * Run state of a vCPU thread, under vcpu->lock. RUNNING means "inside the
 * run loop" (in KVM_RUN or in a callback); only then can the thread be in
 * KVM_RUN, so only then is it kicked and only then are register ioctls from
 * other threads refused (they would block on KVM's vCPU mutex until the
 * guest exits, which for a spinning guest is never).
 */
enum vtx_run_state {
	VTX_IDLE = 0, /* no thread (never started, or joined) */
	VTX_RUNNING,
	VTX_PARKED, /* paused: waiting on cond, out of KVM_RUN, accesses completed */
	VTX_EXITED, /* thread has left its loop; needs a join */
};

struct vtx_vcpu {
	struct vtx_vm *vm;
	uint32_t id;
	int fd;
	struct kvm_run *run; /* shared with KVM, run_size bytes */
	size_t run_size;
	struct vtx_vcpu_ops ops;
	void *opaque;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; any change of state or want_* */
	bool cond_ok;
	/* KVM_CAP_SYNC_REGS: general registers travel in kvm_run, so exit
	 * callbacks read and write them without an ioctl each way. */
	bool sync_regs;
	pthread_t thread;
	enum vtx_run_state state;
	bool want_pause; /* sticky until resume */
	bool want_stop;	 /* until the thread is joined */
	struct vtx_stop_info stop;
};

struct vtx_vm {
	int kvm_fd;
	int vm_fd;
	int ram_fd;
	uint8_t *ram; /* NULL when not mapped */
	uint64_t ram_size;
	uint64_t reserved_gpa;
	bool irqchip;
	size_t run_size;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, copied per vCPU */
	uint32_t msrs[VTX_STATE_MAX_MSRS];
	uint32_t nr_msrs;

	/* Leaf lock over slots and ioevents, taken from vCPU threads too. A
	 * rwlock so that vCPU threads translating GPAs do not wait for each
	 * other; a dirty-log fetch holds it for reading so the slot cannot be
	 * resized under the caller's bitmap. */
	pthread_rwlock_t mem_lock;
	struct vtx_slot slots[VTX_MAX_SLOTS];
	struct vtx_ioevent *ioevents;

	/* Lifecycle: serializes start/pause/resume/stop/joins and the vCPU
	 * table. Taken before a vcpu->lock, never by vCPU threads. */
	pthread_mutex_t ctl_lock;
	struct vtx_vcpu *vcpus[VTX_MAX_VCPUS];
	bool paused;
};

/* vm.c */
int vtx_kick_setup(void);
/* Logs "vtx: <what>: <errno text>" once and returns -errno. */
int vtx_sys_err(const char *what);

/* vcpu.c */
bool vtx_on_vcpu_thread_of(const struct vtx_vm *vm);
bool vtx_on_own_thread(const struct vtx_vcpu *vcpu);
void vtx_vcpu_free(struct vtx_vcpu *vcpu);

#endif
