// SPDX-License-Identifier: MIT
/* Register access and the vCPU state blob (save/restore for migration). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "fab/log.h"
#include "vtx_int.h"

#define STATE_PARTS                                                            \
	(VTX_STATE_XSAVE | VTX_STATE_FPU | VTX_STATE_XCRS | VTX_STATE_EVENTS | \
	 VTX_STATE_DEBUGREGS | VTX_STATE_LAPIC)

/*
 * vCPU ioctls take KVM's per-vCPU mutex, which KVM_RUN holds for as long as
 * the guest runs, so from another thread they would block until the guest
 * exits (never, for a guest that spins): refuse them while the vCPU's
 * thread is in its run loop. Holding vcpu->lock for the duration keeps a
 * parked thread parked (resume and the thread's wake-up both need it). The
 * vCPU's own thread can only call us between KVM_RUN calls.
 */
static int access_begin(struct vtx_vcpu *vcpu, bool *locked)
{
	*locked = false;
	if (vtx_on_own_thread(vcpu))
		return 0;
	pthread_mutex_lock(&vcpu->lock);
	if (vcpu->state == VTX_RUNNING) {
		pthread_mutex_unlock(&vcpu->lock);
		return -EBUSY;
	}
	*locked = true;
	return 0;
}

static void access_end(struct vtx_vcpu *vcpu, bool locked)
{
	if (locked)
		pthread_mutex_unlock(&vcpu->lock);
}

static int vcpu_ioctl(struct vtx_vcpu *vcpu, unsigned long req, void *arg, const char *name)
{
	if (ioctl(vcpu->fd, req, arg) < 0)
		return vtx_sys_err(name);
	return 0;
}

static bool has_cap(const struct vtx_vcpu *vcpu, int cap)
{
	return ioctl(vcpu->vm->vm_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

/* ---- conversions between KVM's structs and ours --------------------------- */

/* Field lists for the copies below (clang-format never settles on a layout
 * for them, hence the guard). */
/* clang-format off */
#define REG_FIELDS(X)                                                           \
	X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp)                 \
	X(r8) X(r9) X(r10) X(r11) X(r12) X(r13) X(r14) X(r15) X(rip) X(rflags)
#define SEG_FIELDS(X)                                                           \
	X(base) X(limit) X(selector) X(type) X(present) X(dpl) X(db) X(s) X(l)  \
	X(g) X(avl) X(unusable)
#define SREG_SEGS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define SREG_CTRL(X) X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer) X(apic_base)
/* clang-format on */

static void regs_from_kvm(struct vtx_regs *o, const struct kvm_regs *k)
{
#define X(f) o->f = k->f;
	REG_FIELDS(X)
#undef X
}

static void regs_to_kvm(struct kvm_regs *k, const struct vtx_regs *o)
{
	memset(k, 0, sizeof(*k));
#define X(f) k->f = o->f;
	REG_FIELDS(X)
#undef X
}

static void seg_from_kvm(struct vtx_segment *o, const struct kvm_segment *k)
{
#define X(f) o->f = k->f;
	SEG_FIELDS(X)
#undef X
}

static void seg_to_kvm(struct kvm_segment *k, const struct vtx_segment *o)
{
#define X(f) k->f = o->f;
	SEG_FIELDS(X)
#undef X
}

static void sregs_from_kvm(struct vtx_sregs *o, const struct kvm_sregs *k)
{
	memset(o, 0, sizeof(*o));
#define X(s) seg_from_kvm(&o->s, &k->s);
	SREG_SEGS(X)
#undef X
#define X(f) o->f = k->f;
	SREG_CTRL(X)
#undef X
	o->gdt.base = k->gdt.base;
	o->gdt.limit = k->gdt.limit;
	o->idt.base = k->idt.base;
	o->idt.limit = k->idt.limit;
	memcpy(o->interrupt_bitmap, k->interrupt_bitmap, sizeof(o->interrupt_bitmap));
}

static void sregs_to_kvm(struct kvm_sregs *k, const struct vtx_sregs *o)
{
	memset(k, 0, sizeof(*k));
#define X(s) seg_to_kvm(&k->s, &o->s);
	SREG_SEGS(X)
#undef X
#define X(f) k->f = o->f;
	SREG_CTRL(X)
#undef X
	k->gdt.base = o->gdt.base;
	k->gdt.limit = o->gdt.limit;
	k->idt.base = o->idt.base;
	k->idt.limit = o->idt.limit;
	memcpy(k->interrupt_bitmap, o->interrupt_bitmap, sizeof(k->interrupt_bitmap));
}

/* ---- registers ---------------------------------------------------------- */

/*
 * Sync registers (KVM_SYNC_X86_REGS): after every KVM_RUN, KVM stores the
 * general registers in kvm_run->s.regs; a callback reads them there and
 * writes them back by marking them dirty, which the next KVM_RUN loads
 * before it completes the pending I/O (so an unchanged RIP is still advanced
 * past the OUT, a changed one is kept). Only the vCPU's own thread uses
 * them. Before any register ioctl on that thread a pending dirty copy is
 * written first, and an ioctl write refreshes the copy, so both paths see
 * one state.
 */
static bool sync_usable(struct vtx_vcpu *vcpu)
{
	return vcpu->sync_regs && vtx_on_own_thread(vcpu);
}

static int sync_flush(struct vtx_vcpu *vcpu)
{
	int r;

	if (!sync_usable(vcpu) || !(vcpu->run->kvm_dirty_regs & KVM_SYNC_X86_REGS))
		return 0;
	r = vcpu_ioctl(vcpu, KVM_SET_REGS, &vcpu->run->s.regs.regs, "KVM_SET_REGS");
	if (!r)
		vcpu->run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_REGS;
	return r;
}

static void sync_mirror(struct vtx_vcpu *vcpu, const struct kvm_regs *k)
{
	if (sync_usable(vcpu))
		vcpu->run->s.regs.regs = *k;
}

int vtx_vcpu_get_regs(struct vtx_vcpu *vcpu, struct vtx_regs *out)
{
	struct kvm_regs k;
	bool locked;
	int r;

	if (sync_usable(vcpu)) {
		regs_from_kvm(out, &vcpu->run->s.regs.regs);
		return 0;
	}
	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = vcpu_ioctl(vcpu, KVM_GET_REGS, &k, "KVM_GET_REGS");
	access_end(vcpu, locked);
	if (!r)
		regs_from_kvm(out, &k);
	return r;
}

int vtx_vcpu_set_regs(struct vtx_vcpu *vcpu, const struct vtx_regs *regs)
{
	struct kvm_regs k;
	bool locked;
	int r;

	regs_to_kvm(&k, regs);
	if (sync_usable(vcpu)) {
		vcpu->run->s.regs.regs = k;
		vcpu->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
		return 0;
	}
	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = vcpu_ioctl(vcpu, KVM_SET_REGS, &k, "KVM_SET_REGS");
	access_end(vcpu, locked);
	return r;
}

int vtx_vcpu_get_sregs(struct vtx_vcpu *vcpu, struct vtx_sregs *out)
{
	struct kvm_sregs k;
	bool locked;
	int r;

	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = vcpu_ioctl(vcpu, KVM_GET_SREGS, &k, "KVM_GET_SREGS");
	access_end(vcpu, locked);
	if (!r)
		sregs_from_kvm(out, &k);
	return r;
}

int vtx_vcpu_set_sregs(struct vtx_vcpu *vcpu, const struct vtx_sregs *sregs)
{
	struct kvm_sregs k;
	bool locked;
	int r;

	sregs_to_kvm(&k, sregs);
	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = vcpu_ioctl(vcpu, KVM_SET_SREGS, &k, "KVM_SET_SREGS");
	access_end(vcpu, locked);
	return r;
}

/* ---- state blob --------------------------------------------------------- */

/* Bytes KVM_GET/SET_XSAVE(2) move on this VM: 0 without XSAVE. */
static uint32_t xsave_size(const struct vtx_vcpu *vcpu)
{
	/* Asked each time: the size grows when the process is granted a
	 * dynamic feature (AMX) after the VM was created. */
	int r = ioctl(vcpu->vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	if (r > 0)
		return (uint32_t)r;
	return has_cap(vcpu, KVM_CAP_XSAVE) ? sizeof(struct kvm_xsave) : 0;
}

static struct kvm_msrs *msrs_alloc(uint32_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));

	if (m)
		m->nmsrs = n;
	return m;
}

static int save_msrs(struct vtx_vcpu *vcpu, struct vtx_vcpu_state *st)
{
	const struct vtx_vm *vm = vcpu->vm;
	struct kvm_msrs *m = msrs_alloc(vm->nr_msrs);
	int r;

	if (!m)
		return -ENOMEM;
	for (uint32_t i = 0; i < vm->nr_msrs; i++)
		m->entries[i].index = vm->msrs[i];
	r = ioctl(vcpu->fd, KVM_GET_MSRS, m);
	if (r < 0) {
		r = vtx_sys_err("KVM_GET_MSRS");
	} else if ((uint32_t)r != vm->nr_msrs) {
		/* KVM stops at the first MSR it cannot read. */
		fab_err("vtx: KVM_GET_MSRS: cannot read MSR %#x", vm->msrs[r]);
		r = -EIO;
	} else {
		st->nr_msrs = vm->nr_msrs;
		for (uint32_t i = 0; i < vm->nr_msrs; i++) {
			st->msrs[i].index = m->entries[i].index;
			st->msrs[i].value = m->entries[i].data;
		}
		r = 0;
	}
	free(m);
	return r;
}

static int save_locked(struct vtx_vcpu *vcpu, struct vtx_vcpu_state *st)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_mp_state mp;
	uint32_t xs = xsave_size(vcpu);
	int r;

	r = sync_flush(vcpu);
	if (r)
		return r;
	r = vcpu_ioctl(vcpu, KVM_GET_REGS, &regs, "KVM_GET_REGS");
	if (r)
		return r;
	regs_from_kvm(&st->regs, &regs);
	r = vcpu_ioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	if (r)
		return r;
	sregs_from_kvm(&st->sregs, &sregs);

	if (xs > VTX_XSAVE_MAX) {
		fab_err("vtx: XSAVE area of %u bytes exceeds VTX_XSAVE_MAX", xs);
		return -E2BIG;
	}
	if (xs > sizeof(struct kvm_xsave)) {
		/* KVM_GET_XSAVE would truncate to 4 KiB; XSAVE2 writes xs. */
		r = vcpu_ioctl(vcpu, KVM_GET_XSAVE2, st->xsave, "KVM_GET_XSAVE2");
	} else if (xs) {
		r = vcpu_ioctl(vcpu, KVM_GET_XSAVE, st->xsave, "KVM_GET_XSAVE");
	} else {
		r = vcpu_ioctl(vcpu, KVM_GET_FPU, st->fpu, "KVM_GET_FPU");
		st->parts |= VTX_STATE_FPU;
	}
	if (r)
		return r;
	if (xs) {
		st->xsave_len = xs;
		st->parts |= VTX_STATE_XSAVE;
	}

	if (has_cap(vcpu, KVM_CAP_XCRS)) {
		r = vcpu_ioctl(vcpu, KVM_GET_XCRS, st->xcrs, "KVM_GET_XCRS");
		if (r)
			return r;
		st->parts |= VTX_STATE_XCRS;
	}
	r = save_msrs(vcpu, st);
	if (r)
		return r;
	if (has_cap(vcpu, KVM_CAP_VCPU_EVENTS)) {
		r = vcpu_ioctl(vcpu, KVM_GET_VCPU_EVENTS, st->events, "KVM_GET_VCPU_EVENTS");
		if (r)
			return r;
		st->parts |= VTX_STATE_EVENTS;
	}
	if (has_cap(vcpu, KVM_CAP_DEBUGREGS)) {
		r = vcpu_ioctl(vcpu, KVM_GET_DEBUGREGS, st->debugregs, "KVM_GET_DEBUGREGS");
		if (r)
			return r;
		st->parts |= VTX_STATE_DEBUGREGS;
	}
	/* Without an in-kernel irqchip there is no LAPIC and the MP state is
	 * always RUNNABLE: nothing to carry. */
	if (vcpu->vm->irqchip) {
		r = vcpu_ioctl(vcpu, KVM_GET_LAPIC, st->lapic, "KVM_GET_LAPIC");
		if (!r)
			r = vcpu_ioctl(vcpu, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
		if (r)
			return r;
		st->mp_state = mp.mp_state;
		st->parts |= VTX_STATE_LAPIC;
	}
	return 0;
}

int vtx_vcpu_save_state(struct vtx_vcpu *vcpu, struct vtx_vcpu_state *out)
{
	bool locked;
	int r;

	memset(out, 0, sizeof(*out));
	out->magic = VTX_STATE_MAGIC;
	out->version = VTX_STATE_VERSION;
	out->size = sizeof(*out);
	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = save_locked(vcpu, out);
	access_end(vcpu, locked);
	return r;
}

static int restore_msrs(struct vtx_vcpu *vcpu, const struct vtx_vcpu_state *st)
{
	struct kvm_msrs *m;
	int r;

	if (!st->nr_msrs)
		return 0;
	m = msrs_alloc(st->nr_msrs);
	if (!m)
		return -ENOMEM;
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		m->entries[i].index = st->msrs[i].index;
		m->entries[i].data = st->msrs[i].value;
	}
	r = ioctl(vcpu->fd, KVM_SET_MSRS, m);
	if (r < 0) {
		r = vtx_sys_err("KVM_SET_MSRS");
	} else if ((uint32_t)r != st->nr_msrs) {
		fab_err("vtx: KVM_SET_MSRS: MSR %#x refused", st->msrs[r].index);
		r = -EINVAL;
	} else {
		r = 0;
	}
	free(m);
	return r;
}

/* Blob checks that need no ioctl: everything a damaged or foreign blob
 * could get wrong before it touches the vCPU. */
static int restore_check(const struct vtx_vcpu *vcpu, const struct vtx_vcpu_state *st)
{
	bool lapic = st->parts & VTX_STATE_LAPIC;

	if (st->magic != VTX_STATE_MAGIC || st->version != VTX_STATE_VERSION ||
	    st->size != sizeof(*st) || (st->parts & ~STATE_PARTS) ||
	    st->nr_msrs > VTX_STATE_MAX_MSRS || st->xsave_len > VTX_XSAVE_MAX)
		return -EINVAL;
	if (!(st->parts & VTX_STATE_XSAVE) == !(st->parts & VTX_STATE_FPU))
		return -EINVAL; /* exactly one form of FPU state */
	if (lapic != vcpu->vm->irqchip) {
		fab_err("vtx: vcpu state %s a LAPIC but the VM %s an irqchip",
			lapic ? "has" : "lacks", vcpu->vm->irqchip ? "has" : "lacks");
		return -EINVAL;
	}
	return 0;
}

static int restore_locked(struct vtx_vcpu *vcpu, const struct vtx_vcpu_state *st)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp = { .mp_state = st->mp_state };
	uint32_t xs = xsave_size(vcpu);
	int r;

	/* KVM reads blob parts but takes non-const pointers. */
	void *xsave = (void *)st->xsave, *fpu = (void *)st->fpu, *xcrs = (void *)st->xcrs;
	void *lapic = (void *)st->lapic, *dbg = (void *)st->debugregs;

	if (((st->parts & VTX_STATE_XSAVE) && !xs) ||
	    ((st->parts & VTX_STATE_XCRS) && !has_cap(vcpu, KVM_CAP_XCRS)) ||
	    ((st->parts & VTX_STATE_EVENTS) && !has_cap(vcpu, KVM_CAP_VCPU_EVENTS)) ||
	    ((st->parts & VTX_STATE_DEBUGREGS) && !has_cap(vcpu, KVM_CAP_DEBUGREGS))) {
		fab_err("vtx: vcpu state holds parts (%#x) this KVM cannot load", st->parts);
		return -EOPNOTSUPP;
	}
	if (xs > VTX_XSAVE_MAX) {
		fab_err("vtx: XSAVE area of %u bytes exceeds VTX_XSAVE_MAX", xs);
		return -E2BIG;
	}

	/* QEMU's order: sregs before MSRs (EFER) and before the LAPIC
	 * (APIC base), events last so nothing after them drops an event. */
	regs_to_kvm(&regs, &st->regs);
	r = sync_flush(vcpu);
	if (!r)
		r = vcpu_ioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
	if (r)
		return r;
	sync_mirror(vcpu, &regs);
	/* KVM_SET_XSAVE reads this host's XSAVE size from the blob; bytes past
	 * the saving host's size are zero, i.e. components in init state. */
	if (st->parts & VTX_STATE_XSAVE)
		r = vcpu_ioctl(vcpu, KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE");
	else
		r = vcpu_ioctl(vcpu, KVM_SET_FPU, fpu, "KVM_SET_FPU");
	if (!r && (st->parts & VTX_STATE_XCRS))
		r = vcpu_ioctl(vcpu, KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
	if (r)
		return r;
	sregs_to_kvm(&sregs, &st->sregs);
	r = vcpu_ioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	if (!r)
		r = restore_msrs(vcpu, st);
	if (!r && (st->parts & VTX_STATE_LAPIC)) {
		r = vcpu_ioctl(vcpu, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
		if (!r)
			r = vcpu_ioctl(vcpu, KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC");
	}
	if (!r && (st->parts & VTX_STATE_EVENTS)) {
		memcpy(&ev, st->events, sizeof(ev));
		/* GET leaves these validity flags clear; without them SET
		 * ignores the pending NMI and the SIPI vector. */
		ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
		r = vcpu_ioctl(vcpu, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");
	}
	if (!r && (st->parts & VTX_STATE_DEBUGREGS))
		r = vcpu_ioctl(vcpu, KVM_SET_DEBUGREGS, dbg, "KVM_SET_DEBUGREGS");
	return r;
}

int vtx_vcpu_restore_state(struct vtx_vcpu *vcpu, const struct vtx_vcpu_state *st)
{
	bool locked;
	int r;

	r = restore_check(vcpu, st);
	if (r)
		return r;
	r = access_begin(vcpu, &locked);
	if (r)
		return r;
	r = restore_locked(vcpu, st);
	access_end(vcpu, locked);
	return r;
}
