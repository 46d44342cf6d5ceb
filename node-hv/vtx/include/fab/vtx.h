/* SPDX-License-Identifier: MIT */
/*
 * vtx: the only code in the project that talks to KVM (/dev/kvm ioctls).
 *
 * It gives node-hv x86-64 VMs whose guest RAM is a memfd, memory slots,
 * vCPUs that each run on their own thread and hand guest exits to callbacks,
 * register access, in-kernel doorbells (KVM_IOEVENTFD), dirty-page logging,
 * and a copyable vCPU state blob for migration. No KVM type appears here, so
 * callers never include <linux/kvm.h>.
 *
 * Thread rules (the "control thread" is any thread that is not one of this
 * VM's vCPU threads; several control threads may call at once):
 *
 *   - Lifecycle (vtx_vm_create/destroy, vtx_vcpu_create, start, pause, resume,
 *     stop, wait): control threads only. From a vCPU thread of the same VM
 *     they return -EDEADLK, because they wait for vCPU threads; a vCPU that
 *     wants to stop itself returns non-zero from its exit callback instead.
 *   - Memory (slots, vtx_gpa_to_hva, dirty log) and ioeventfds: any thread,
 *     vCPU callbacks included. They are internally locked.
 *   - Registers and state (vtx_vcpu_get/set_*, save/restore): the vCPU's own
 *     thread (inside its callbacks), or any thread while that vCPU is not
 *     inside its run loop (never started, paused or stopped); otherwise
 *     -EBUSY. For a state that migration can rely on, pause first: a paused
 *     vCPU has completed every I/O or MMIO access it exited for.
 *
 * Signals: vtx claims one real-time signal (vtx_kick_signal()) for the whole
 * process to kick vCPU threads out of KVM_RUN; it installs a no-op handler
 * on the first vtx_vm_create and fails with -EBUSY if someone else already
 * handles that signal. vCPU threads block every other signal, so
 * process-directed signals (SIGTERM, SIGCHLD...) go to other threads.
 *
 * Errors: functions return 0 or a negative errno; results go through
 * out-parameters. A failing KVM ioctl is logged once here (with its name)
 * and returned as -errno, so callers need not log it again. Argument errors
 * are returned without a log line, except a state blob that does not fit
 * the VM or host, whose reason would otherwise be lost.
 */
#ifndef FAB_VTX_H
#define FAB_VTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vtx_vm;
struct vtx_vcpu;
struct vtx_ioevent;

#define VTX_PAGE_SIZE 4096u
#define VTX_MAX_SLOTS 32 /* memory slots per VM (ids 0..31) */
#define VTX_MAX_VCPUS 64 /* vCPUs per VM */

/*
 * Intel VT-x needs four guest-physical pages outside guest RAM for KVM's own
 * use: the identity-mapped page table for unpaged guest modes, then three
 * pages of real-mode TSS. They are reserved on AMD too, so a memory layout
 * that works on one vendor works on the other.
 */
#define VTX_RESERVED_DEFAULT_GPA 0xfeffc000ull
#define VTX_RESERVED_SIZE	 (4ull * VTX_PAGE_SIZE)

/* vtx_vm_config.flags */
#define VTX_VM_NO_RAM_SLOT (1u << 0) /* do not map all of RAM at GPA 0; see vtx_slot_add_ram */
#define VTX_VM_IRQCHIP	   (1u << 1) /* create the in-kernel PIC/IOAPIC/LAPICs (off by default) */

struct vtx_vm_config {
	uint64_t ram_size;     /* bytes of guest RAM (the memfd), a multiple of VTX_PAGE_SIZE */
	uint32_t flags;	       /* VTX_VM_* */
	uint64_t reserved_gpa; /* VTX_RESERVED_SIZE bytes for KVM; 0 = VTX_RESERVED_DEFAULT_GPA */
	const char *name;      /* memfd name, shown in /proc/<pid>/fd; NULL = "vtx-ram" */
};

/*
 * Creates a VM: opens /dev/kvm (API version must be 12), creates the VM,
 * reserves the TSS/identity-map pages, creates guest RAM as a sealed memfd
 * (it can neither shrink nor grow, so a process that receives the fd cannot
 * make our mapping fault) mapped shared into this process, and unless
 * VTX_VM_NO_RAM_SLOT maps all of it as slot 0 at GPA 0. Guest RAM reads as
 * zero. The new VM has no vCPUs.
 *
 * Errors: -EINVAL (bad config: size 0 or unaligned, RAM at GPA 0 would cover
 * the reserved pages, reserved_gpa unaligned), -ENOENT/-EACCES (/dev/kvm),
 * -EPROTO (KVM API version is not 12), -EOPNOTSUPP (KVM lacks a capability
 * vtx needs), -EBUSY (vtx_kick_signal() is handled by someone else),
 * -ENOMEM, or a failed ioctl's -errno. Thread: control.
 */
int vtx_vm_create(const struct vtx_vm_config *cfg, struct vtx_vm **out);

/*
 * Stops and joins every vCPU thread, then frees every fd, mapping and
 * allocation of the VM, its vCPUs, and the eventfds vtx created. Safe on a
 * VM that is only partly set up and on NULL. Caller-owned slot memory and
 * caller-owned eventfds are left alone. Copies of the RAM fd held by other
 * code (dup, another process) keep the RAM alive. Thread: control; calling
 * it from a vCPU thread of this VM is a programmer error (assert).
 */
void vtx_vm_destroy(struct vtx_vm *vm);

/*
 * The guest RAM memfd. Borrowed: valid until vtx_vm_destroy; never close
 * it; dup() it to keep or pass it on (it is O_CLOEXEC). Thread: any.
 */
int vtx_vm_ram_fd(const struct vtx_vm *vm);

/* Host address of the whole guest RAM mapping, valid until destroy. Thread: any. */
void *vtx_vm_ram(const struct vtx_vm *vm);

/* Size of guest RAM in bytes. Thread: any. */
uint64_t vtx_vm_ram_size(const struct vtx_vm *vm);

/* True when the VM was created with VTX_VM_IRQCHIP. Thread: any. */
bool vtx_vm_has_irqchip(const struct vtx_vm *vm);

/* The real-time signal vtx uses to kick vCPU threads (SIGRTMIN + 4). */
int vtx_kick_signal(void);

/* ---- memory slots ------------------------------------------------------ */

/* Flags of vtx_slot_add_*: guest writes to a read-only slot exit as MMIO. */
#define VTX_SLOT_READONLY (1u << 0)

/*
 * Maps [ram_off, ram_off + size) of guest RAM at guest-physical gpa as a new
 * slot and returns its id in *slot. Use it with VTX_VM_NO_RAM_SLOT to leave
 * a hole in the guest-physical map (e.g. below 4 GiB), or to alias RAM.
 * gpa, ram_off and size must be page aligned, size > 0.
 *
 * Errors: -EINVAL (alignment, range outside RAM, overflow, unknown flags),
 * -EEXIST (overlaps another slot or the reserved pages), -ENOSPC (all
 * VTX_MAX_SLOTS in use), or the ioctl's -errno. Thread: any.
 */
int vtx_slot_add_ram(struct vtx_vm *vm, uint64_t gpa, uint64_t ram_off, uint64_t size,
		     uint32_t flags, uint32_t *slot);

/*
 * Like vtx_slot_add_ram, but backed by caller memory at hva (page aligned).
 * The caller owns that memory and must keep it mapped until the slot is
 * removed or the VM destroyed. Thread: any.
 */
int vtx_slot_add_host(struct vtx_vm *vm, uint64_t gpa, void *hva, uint64_t size, uint32_t flags,
		      uint32_t *slot);

/*
 * Removes a slot (slot 0 included). The guest faults on later accesses to
 * its range (they exit as MMIO). Pointers vtx_gpa_to_hva returned for it
 * stay valid only as long as the backing memory does (for RAM slots, until
 * destroy). Errors: -ENOENT (no such slot), or the ioctl's -errno.
 * Thread: any.
 */
int vtx_slot_remove(struct vtx_vm *vm, uint32_t slot);

/*
 * Translates the guest-physical range [gpa, gpa + len) to a host pointer.
 * The whole range must lie inside one slot (ranges spanning two adjacent
 * slots are refused: their host memory need not be contiguous); len 0 needs
 * gpa inside a slot. This is the check every guest-supplied GPA and length
 * goes through. Errors: -EFAULT (not entirely inside one slot, including
 * when gpa + len overflows). Thread: any.
 */
int vtx_gpa_to_hva(struct vtx_vm *vm, uint64_t gpa, uint64_t len, void **out);

/* ---- dirty-page logging -------------------------------------------------
 *
 * One bit per 4 KiB page of a slot, bit i of the bitmap (bit i % 64 of
 * 64-bit word i / 64) for the page at slot GPA + i * 4096. Only guest writes
 * are logged: writes by host code through the RAM mapping or the memfd
 * (device emulation, RDMA) are not, so migration must track those itself.
 * vtx does not enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: each fetch returns
 * the pages written since the previous fetch (or since logging was enabled)
 * and atomically re-arms tracking for them.
 */

/* Turns logging on or off for a slot (read-only slots cannot be logged).
 * Errors: -ENOENT, -EINVAL (read-only slot), the ioctl's -errno. Thread: any. */
int vtx_dirty_log_enable(struct vtx_vm *vm, uint32_t slot, bool enable);

/* Bytes a bitmap of this slot needs (pages rounded up to 64, over 8).
 * Errors: -ENOENT. Thread: any. */
int vtx_dirty_log_bitmap_size(struct vtx_vm *vm, uint32_t slot, size_t *bytes);

/*
 * Fetches the dirty bitmap of a slot into the caller's buffer of at least
 * vtx_dirty_log_bitmap_size() bytes (8-byte aligned) and clears it in KVM.
 * Errors: -ENOENT, -EINVAL (logging not enabled, buffer too small), the
 * ioctl's -errno. Thread: any; vCPUs may keep running.
 */
int vtx_dirty_log_fetch(struct vtx_vm *vm, uint32_t slot, uint64_t *bitmap, size_t bytes);

/* Clears the dirty bitmap of a slot (a fetch whose result is discarded).
 * Errors: as vtx_dirty_log_fetch, plus -ENOMEM. Thread: any. */
int vtx_dirty_log_clear(struct vtx_vm *vm, uint32_t slot);

/* ---- ioeventfd: guest writes that signal an eventfd in the kernel ------- */

enum vtx_io_space {
	VTX_SPACE_PIO = 0,
	VTX_SPACE_MMIO = 1,
};

struct vtx_ioevent_spec {
	enum vtx_io_space space;
	uint64_t addr;	/* port or guest-physical address */
	uint32_t len;	/* access width 1, 2, 4 or 8; MMIO may use 0 (any width, no datamatch) */
	bool datamatch; /* signal only when the written value equals data */
	uint64_t data;
	int fd; /* the caller's eventfd (stays the caller's), or -1 for vtx to create one */
};

/*
 * Makes guest writes matching spec increment an eventfd inside KVM, with no
 * exit to userspace; non-matching writes to the same address still exit as
 * usual. If spec->fd is -1 vtx creates an eventfd (EFD_CLOEXEC |
 * EFD_NONBLOCK) that it owns and closes in vtx_ioevent_del or destroy.
 * *out is owned by the VM. Errors: -EINVAL (bad length/space, datamatch
 * with length 0), -EEXIST (the same registration exists), -ENOMEM, the
 * eventfd()'s or ioctl's -errno. Thread: any.
 */
int vtx_ioevent_add(struct vtx_vm *vm, const struct vtx_ioevent_spec *spec,
		    struct vtx_ioevent **out);

/* The eventfd of a registration. Borrowed: do not close it. Thread: any. */
int vtx_ioevent_fd(const struct vtx_ioevent *ev);

/*
 * Removes a registration and frees ev (closing the eventfd if vtx created
 * it). Errors: -ENOENT (ev is not registered with vm), the ioctl's -errno
 * (ev stays registered). Thread: any.
 */
int vtx_ioevent_del(struct vtx_vm *vm, struct vtx_ioevent *ev);

/* ---- registers --------------------------------------------------------- */

struct vtx_regs {
	uint64_t rax, rbx, rcx, rdx;
	uint64_t rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11;
	uint64_t r12, r13, r14, r15;
	uint64_t rip, rflags; /* rflags bit 1 must be set */
};

struct vtx_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type; /* descriptor type field (4 bits) */
	uint8_t present, dpl, db, s, l, g, avl;
	uint8_t unusable;
};

struct vtx_dtable {
	uint64_t base;
	uint16_t limit;
};

/*
 * Everything KVM_GET_SREGS returns, so a get, modify, set round trip loses
 * nothing. interrupt_bitmap holds external interrupts queued for injection
 * (only without an in-kernel irqchip); carry it over unchanged.
 */
struct vtx_sregs {
	struct vtx_segment cs, ds, es, fs, gs, ss, tr, ldt;
	struct vtx_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t apic_base;
	uint64_t interrupt_bitmap[4];
};

/* Register access. Thread and -EBUSY: see the thread rules at the top.
 * Errors otherwise: the ioctl's -errno (e.g. -EINVAL for a state the CPU
 * refuses). set_sregs replaces all of them: get, modify, set. */
int vtx_vcpu_get_regs(struct vtx_vcpu *vcpu, struct vtx_regs *out);
int vtx_vcpu_set_regs(struct vtx_vcpu *vcpu, const struct vtx_regs *regs);
int vtx_vcpu_get_sregs(struct vtx_vcpu *vcpu, struct vtx_sregs *out);
int vtx_vcpu_set_sregs(struct vtx_vcpu *vcpu, const struct vtx_sregs *sregs);

/* ---- vCPU state blob ---------------------------------------------------- */

#define VTX_STATE_MAGIC	   0x53585456u /* "VTXS" */
#define VTX_STATE_VERSION  1u
#define VTX_XSAVE_MAX	   16384u /* covers AVX-512 and AMX (about 11 KiB) */
#define VTX_STATE_MAX_MSRS 16u

/* vtx_vcpu_state.parts: which optional parts the blob holds */
#define VTX_STATE_XSAVE	    (1u << 0) /* xsave/xsave_len (else fpu) */
#define VTX_STATE_FPU	    (1u << 1) /* fpu, when the host has no XSAVE */
#define VTX_STATE_XCRS	    (1u << 2)
#define VTX_STATE_EVENTS    (1u << 3)
#define VTX_STATE_DEBUGREGS (1u << 4)
#define VTX_STATE_LAPIC	    (1u << 5) /* lapic and mp_state: VMs with VTX_VM_IRQCHIP */

struct vtx_msr {
	uint32_t index;
	uint32_t reserved;
	uint64_t value;
};

/*
 * Complete architectural state of one vCPU as a plain, self-contained blob
 * (no pointers) that can be written out and restored on another host with
 * a compatible CPU. The byte arrays are KVM's own x86 ABI images (stable
 * kernel ABI), copied as is. About 18 KiB: allocate it, do not put it on a
 * small stack. Not saved: CPUID (each VM sets its host's own), guest RAM,
 * and device state outside KVM.
 */
struct vtx_vcpu_state {
	uint32_t magic;	  /* VTX_STATE_MAGIC */
	uint32_t version; /* VTX_STATE_VERSION */
	uint32_t size;	  /* sizeof(struct vtx_vcpu_state) */
	uint32_t parts;	  /* VTX_STATE_* */
	struct vtx_regs regs;
	struct vtx_sregs sregs;
	/* STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC, SYSENTER_CS/ESP/EIP,
	 * PAT: those this host's KVM lists as saveable. EFER, FS_BASE and
	 * GS_BASE are not listed by KVM; sregs carries them (efer, fs.base,
	 * gs.base). */
	uint32_t nr_msrs;
	uint32_t mp_state;
	struct vtx_msr msrs[VTX_STATE_MAX_MSRS];
	uint32_t xsave_len; /* bytes of xsave in use (KVM_CAP_XSAVE2 size or 4096) */
	uint32_t reserved;
	/* KVM ABI images: struct kvm_xcrs, kvm_vcpu_events, kvm_debugregs,
	 * kvm_fpu, kvm_lapic_state, and kvm_xsave with its extra bytes. */
	uint8_t xcrs[392];
	uint8_t events[64];
	uint8_t debugregs[128];
	uint8_t fpu[416];
	uint8_t lapic[1024];
	uint8_t xsave[VTX_XSAVE_MAX] __attribute__((aligned(64)));
};

/*
 * Saves the state of a vCPU into *out (all bytes written, unused ones zero).
 * Thread: see the rules at the top; from the vCPU's own thread inside an
 * I/O or MMIO callback the access being handled is not yet complete.
 * Errors: -EBUSY, -E2BIG (this host's XSAVE area exceeds VTX_XSAVE_MAX),
 * -ENOMEM, the ioctl's -errno.
 */
int vtx_vcpu_save_state(struct vtx_vcpu *vcpu, struct vtx_vcpu_state *out);

/*
 * Loads a saved state into a vCPU that is not running (typically a fresh
 * one of another VM with the same guest RAM contents). Errors: -EINVAL (bad
 * magic, version, size, or irqchip presence differs from the saving VM),
 * -EOPNOTSUPP (the blob holds a part this host's KVM cannot load), -EBUSY,
 * -E2BIG, -ENOMEM, the ioctl's -errno (the vCPU may then be partly loaded).
 */
int vtx_vcpu_restore_state(struct vtx_vcpu *vcpu, const struct vtx_vcpu_state *st);

/* ---- vCPUs and exits --------------------------------------------------- */

enum vtx_exit_type {
	VTX_EXIT_NONE = 0,
	VTX_EXIT_IO,	   /* port I/O */
	VTX_EXIT_MMIO,	   /* access to a GPA no slot backs (or a write to a read-only slot) */
	VTX_EXIT_HLT,	   /* HLT without an in-kernel irqchip */
	VTX_EXIT_SHUTDOWN, /* triple fault; the vCPU state is undefined */
	VTX_EXIT_INTERNAL_ERROR, /* KVM could not emulate or deliver something */
	VTX_EXIT_FAIL_ENTRY,	 /* hardware refused to enter the guest (bad state) */
	VTX_EXIT_OTHER,		 /* any other KVM exit reason */
};

struct vtx_io_exit {
	bool is_write; /* true: OUT/OUTS (guest to host); false: IN/INS */
	uint16_t port;
	uint8_t size;	/* 1, 2 or 4 bytes per access */
	uint32_t count; /* accesses (more than 1 for REP INS/OUTS) */
	void *data;	/* size * count bytes: the written values, or to fill for IN */
};

struct vtx_mmio_exit {
	uint64_t addr;
	uint8_t *data; /* len bytes: the written value, or to fill for a read */
	uint32_t len;  /* 1..8 */
	bool is_write;
};

struct vtx_internal_error_exit {
	uint32_t suberror; /* KVM_INTERNAL_ERROR_* */
	uint32_t ndata;	   /* valid entries of data, at most 16 */
	uint64_t data[16];
};

struct vtx_fail_entry_exit {
	uint64_t hw_reason; /* hardware entry failure reason (VMX/SVM exit code) */
	uint32_t cpu;	    /* host CPU it happened on */
};

/*
 * Exit callbacks run on the vCPU's thread, one at a time per vCPU. They
 * return VTX_RUN_CONTINUE to re-enter the guest, or any other value to stop
 * the vCPU; that value is reported as vtx_stop_info.code. A NULL callback
 * stops the vCPU with VTX_STOP_UNHANDLED. For an IN or MMIO read, fill the
 * data before returning; the access completes when the guest is re-entered.
 * Callbacks may block, but a pause or stop waits for them.
 */
#define VTX_RUN_CONTINUE 0

enum vtx_stop_kind {
	VTX_STOP_NONE = 0,  /* has not stopped (never ran, or still running) */
	VTX_STOP_REQUESTED, /* vtx_vcpu_stop, vtx_vm_stop or destroy */
	VTX_STOP_CALLBACK,  /* an exit callback returned code (non-zero) */
	VTX_STOP_UNHANDLED, /* an exit with no callback; exit says which */
	VTX_STOP_ERROR,	    /* KVM_RUN failed or KVM reported a malformed exit: code = -errno */
};

struct vtx_stop_info {
	enum vtx_stop_kind kind;
	enum vtx_exit_type exit; /* the exit being handled when it stopped, or VTX_EXIT_NONE */
	int code;
};

typedef int (*vtx_io_cb)(struct vtx_vcpu *vcpu, struct vtx_io_exit *io, void *opaque);
typedef int (*vtx_mmio_cb)(struct vtx_vcpu *vcpu, struct vtx_mmio_exit *mmio, void *opaque);
/* HLT and SHUTDOWN carry no data. */
typedef int (*vtx_event_cb)(struct vtx_vcpu *vcpu, void *opaque);
typedef int (*vtx_internal_error_cb)(struct vtx_vcpu *vcpu,
				     const struct vtx_internal_error_exit *err, void *opaque);
typedef int (*vtx_fail_entry_cb)(struct vtx_vcpu *vcpu, const struct vtx_fail_entry_exit *fail,
				 void *opaque);
/* kvm_exit_reason is KVM's raw KVM_EXIT_* number. */
typedef int (*vtx_other_cb)(struct vtx_vcpu *vcpu, uint32_t kvm_exit_reason, void *opaque);
/* Last call on the vCPU thread before it ends, for any reason. */
typedef void (*vtx_stopped_cb)(struct vtx_vcpu *vcpu, const struct vtx_stop_info *info,
			       void *opaque);

struct vtx_vcpu_ops {
	vtx_io_cb io;
	vtx_mmio_cb mmio;
	vtx_event_cb hlt;
	vtx_event_cb shutdown;
	vtx_internal_error_cb internal_error;
	vtx_fail_entry_cb fail_entry;
	vtx_other_cb other;
	vtx_stopped_cb stopped; /* optional */
};

/*
 * Creates vCPU id (0 <= id < VTX_MAX_VCPUS, unused in this VM) with the
 * host's supported CPUID (APIC ID = id) and KVM's reset state (real mode at
 * f000:fff0). ops is copied; opaque is passed to every callback. The vCPU
 * belongs to the VM and is freed by vtx_vm_destroy (KVM cannot remove one
 * vCPU). It does not run until vtx_vcpu_start. Errors: -EINVAL (id),
 * -EEXIST (id in use), -EDEADLK, -ENOMEM, the ioctl's -errno.
 * Thread: control.
 */
int vtx_vcpu_create(struct vtx_vm *vm, uint32_t id, const struct vtx_vcpu_ops *ops, void *opaque,
		    struct vtx_vcpu **out);

/* Accessors. Thread: any. */
uint32_t vtx_vcpu_id(const struct vtx_vcpu *vcpu);
struct vtx_vm *vtx_vcpu_vm(const struct vtx_vcpu *vcpu);

/*
 * Starts the vCPU's thread, which loops on KVM_RUN and dispatches exits. If
 * the vCPU (or its VM) is paused, the thread starts parked. A vCPU that has
 * stopped can be started again (its thread is joined first). Errors:
 * -EBUSY (already running), -EDEADLK, pthread_create's -errno.
 * Thread: control.
 */
int vtx_vcpu_start(struct vtx_vcpu *vcpu);

/*
 * Pauses the vCPU and returns once its thread is out of KVM_RUN, has
 * completed any pending I/O or MMIO access, and is parked (or has stopped).
 * Pausing is a flag, not a count: pausing twice needs one resume. A vCPU
 * paused before it starts starts parked. Errors: -EDEADLK. Thread: control.
 */
int vtx_vcpu_pause(struct vtx_vcpu *vcpu);

/* Lets a paused vCPU run again; returns without waiting for it to enter
 * the guest. No-op when not paused. Errors: -EDEADLK. Thread: control. */
int vtx_vcpu_resume(struct vtx_vcpu *vcpu);

/*
 * Stops the vCPU (a paused one too) and joins its thread. *info (may be
 * NULL) gets why it stopped: VTX_STOP_REQUESTED, or the reason it had
 * already stopped for by itself. Returns 0 also when it was not running.
 * Errors: -EDEADLK. Thread: control.
 */
int vtx_vcpu_stop(struct vtx_vcpu *vcpu, struct vtx_stop_info *info);

/*
 * Waits until the vCPU stops by itself (a callback returned non-zero, an
 * unhandled exit, an error) or is stopped, joins its thread, and fills
 * *info (may be NULL). timeout_ms < 0 waits forever. Returns at once if it
 * is not running. Errors: -ETIMEDOUT (it still runs), -EDEADLK.
 * Thread: control.
 */
int vtx_vcpu_wait(struct vtx_vcpu *vcpu, int timeout_ms, struct vtx_stop_info *info);

/* The same for every vCPU of the VM. vtx_vm_pause returns when all of them
 * are parked, and vCPUs created while the VM is paused start paused;
 * vtx_vm_start starts the vCPUs that are not running; vtx_vm_stop joins
 * all threads. Errors: -EDEADLK; vtx_vm_start: the first start error (the
 * others are still attempted). Thread: control. */
int vtx_vm_start(struct vtx_vm *vm);
int vtx_vm_pause(struct vtx_vm *vm);
/* vtx_vm_pause with a limit: when a vCPU has not parked after timeout_ms
 * (its thread is held up in a callback), every vCPU is let run again, as
 * after vtx_vm_resume, and -ETIMEDOUT is returned. Thread: control. */
int vtx_vm_pause_timed(struct vtx_vm *vm, int timeout_ms);
int vtx_vm_resume(struct vtx_vm *vm);
int vtx_vm_stop(struct vtx_vm *vm);

#endif
