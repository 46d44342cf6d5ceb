// SPDX-License-Identifier: MIT
/*
 * vCPUs: creation, the per-vCPU run thread, exit decoding and dispatch, and
 * the pause/resume/stop hand-off between control threads and vCPU threads.
 *
 * Kicking a vCPU out of the guest: the control thread sets want_pause or
 * want_stop under vcpu->lock, stores 1 to kvm_run.immediate_exit, and sends
 * the kick signal. Whatever the vCPU thread is doing, it leaves KVM_RUN with
 * EINTR: if it is in the guest the signal makes KVM exit; if it is about to
 * enter, or in a callback, immediate_exit makes the next KVM_RUN return at
 * once. That next KVM_RUN also completes an I/O or MMIO access the thread
 * had exited for, so a vCPU always parks with a consistent state. The thread
 * clears immediate_exit only under vcpu->lock and only when no request is
 * pending, so a request can never be lost.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fab/log.h"
#include "vtx_int.h"

/* The vCPU whose thread this is, or NULL on other threads. */
static __thread struct vtx_vcpu *vtx_cur;

bool vtx_on_vcpu_thread_of(const struct vtx_vm *vm)
{
	return vtx_cur && vtx_cur->vm == vm;
}

bool vtx_on_own_thread(const struct vtx_vcpu *vcpu)
{
	return vtx_cur == vcpu;
}

/* ---- creation ----------------------------------------------------------- */

static int vcpu_set_cpuid(struct vtx_vcpu *vcpu)
{
	const struct kvm_cpuid2 *sup = vcpu->vm->cpuid;
	size_t bytes = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c;
	int r = 0;

	c = malloc(bytes);
	if (!c)
		return -ENOMEM;
	memcpy(c, sup, bytes);
	/* KVM reports the host's APIC IDs; each vCPU must see its own or a
	 * guest that enumerates CPUs sees them all as one. */
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffffu) | (vcpu->id << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = vcpu->id;
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
		r = vtx_sys_err("KVM_SET_CPUID2");
	free(c);
	return r;
}

void vtx_vcpu_free(struct vtx_vcpu *vcpu)
{
	if (!vcpu)
		return;
	assert(vcpu->state == VTX_IDLE);
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	if (vcpu->cond_ok)
		pthread_cond_destroy(&vcpu->cond);
	pthread_mutex_destroy(&vcpu->lock);
	free(vcpu);
}

static int vcpu_init_cond(struct vtx_vcpu *vcpu)
{
	pthread_condattr_t attr;
	int r;

	r = pthread_condattr_init(&attr);
	if (r)
		return -r;
	/* Timed waits must not jump with the wall clock. */
	r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!r)
		r = pthread_cond_init(&vcpu->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (r)
		return -r;
	vcpu->cond_ok = true;
	return 0;
}

int vtx_vcpu_create(struct vtx_vm *vm, uint32_t id, const struct vtx_vcpu_ops *ops, void *opaque,
		    struct vtx_vcpu **out)
{
	struct vtx_vcpu *vcpu;
	void *run;
	int r;

	if (!ops || !out || id >= VTX_MAX_VCPUS)
		return -EINVAL;
	*out = NULL;
	if (vtx_on_vcpu_thread_of(vm))
		return -EDEADLK;
	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = -1;
	vcpu->ops = *ops;
	vcpu->opaque = opaque;
	vcpu->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	vcpu->run_size = vm->run_size;

	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->vcpus[id]) {
		r = -EEXIST;
		goto fail;
	}
	r = vcpu_init_cond(vcpu);
	if (r)
		goto fail;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		r = vtx_sys_err("KVM_CREATE_VCPU");
		goto fail;
	}
	run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (run == MAP_FAILED) {
		r = vtx_sys_err("mmap(kvm_run)");
		goto fail;
	}
	vcpu->run = run;
	/* Registers in kvm_run save two ioctls per hypercall (see state.c). */
	if ((ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) & KVM_SYNC_X86_REGS) != 0) {
		vcpu->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
		vcpu->sync_regs = true;
	}
	r = vcpu_set_cpuid(vcpu);
	if (r)
		goto fail;
	vcpu->want_pause = vm->paused;
	vm->vcpus[id] = vcpu;
	pthread_mutex_unlock(&vm->ctl_lock);
	*out = vcpu;
	return 0;

fail:
	pthread_mutex_unlock(&vm->ctl_lock);
	vtx_vcpu_free(vcpu);
	return r;
}

uint32_t vtx_vcpu_id(const struct vtx_vcpu *vcpu)
{
	return vcpu->id;
}

struct vtx_vm *vtx_vcpu_vm(const struct vtx_vcpu *vcpu)
{
	return vcpu->vm;
}

/* ---- exits -------------------------------------------------------------- */

struct vtx_exit {
	enum vtx_exit_type type;
	uint32_t reason; /* KVM_EXIT_* */
	union {
		struct vtx_io_exit io;
		struct vtx_mmio_exit mmio;
		struct vtx_internal_error_exit internal;
		struct vtx_fail_entry_exit fail;
	} u;
};

/*
 * The one place that reads an exit out of kvm_run. The values describe what
 * the guest did, and data offsets index into the shared page, so they are
 * checked before any callback sees a pointer.
 */
static int exit_decode(const struct vtx_vcpu *vcpu, struct vtx_exit *ex)
{
	struct kvm_run *run = vcpu->run;

	memset(ex, 0, sizeof(*ex));
	ex->reason = run->exit_reason;
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint64_t off = run->io.data_offset;
		uint64_t bytes = (uint64_t)run->io.size * run->io.count;

		if ((run->io.size != 1 && run->io.size != 2 && run->io.size != 4) ||
		    !run->io.count || off > vcpu->run_size || bytes > vcpu->run_size - off)
			return -EPROTO;
		ex->type = VTX_EXIT_IO;
		ex->u.io.is_write = run->io.direction == KVM_EXIT_IO_OUT;
		ex->u.io.port = run->io.port;
		ex->u.io.size = run->io.size;
		ex->u.io.count = run->io.count;
		ex->u.io.data = (uint8_t *)run + off;
		return 0;
	}
	case KVM_EXIT_MMIO:
		if (!run->mmio.len || run->mmio.len > sizeof(run->mmio.data))
			return -EPROTO;
		ex->type = VTX_EXIT_MMIO;
		ex->u.mmio.addr = run->mmio.phys_addr;
		ex->u.mmio.data = run->mmio.data;
		ex->u.mmio.len = run->mmio.len;
		ex->u.mmio.is_write = run->mmio.is_write;
		return 0;
	case KVM_EXIT_HLT:
		ex->type = VTX_EXIT_HLT;
		return 0;
	case KVM_EXIT_SHUTDOWN:
		ex->type = VTX_EXIT_SHUTDOWN;
		return 0;
	case KVM_EXIT_INTERNAL_ERROR: {
		uint32_t n = run->internal.ndata;
		uint32_t max = sizeof(run->internal.data) / sizeof(run->internal.data[0]);

		ex->type = VTX_EXIT_INTERNAL_ERROR;
		ex->u.internal.suberror = run->internal.suberror;
		ex->u.internal.ndata = n < max ? n : max;
		memcpy(ex->u.internal.data, run->internal.data,
		       ex->u.internal.ndata * sizeof(ex->u.internal.data[0]));
		return 0;
	}
	case KVM_EXIT_FAIL_ENTRY:
		ex->type = VTX_EXIT_FAIL_ENTRY;
		ex->u.fail.hw_reason = run->fail_entry.hardware_entry_failure_reason;
		ex->u.fail.cpu = run->fail_entry.cpu;
		return 0;
	default:
		ex->type = VTX_EXIT_OTHER;
		return 0;
	}
}

/* Returns VTX_RUN_CONTINUE or the callback's stop code; sets *unhandled
 * when there is no callback for the exit. */
static int exit_dispatch(struct vtx_vcpu *vcpu, struct vtx_exit *ex, bool *unhandled)
{
	const struct vtx_vcpu_ops *ops = &vcpu->ops;
	void *op = vcpu->opaque;

	*unhandled = false;
	switch (ex->type) {
	case VTX_EXIT_IO:
		if (ops->io)
			return ops->io(vcpu, &ex->u.io, op);
		break;
	case VTX_EXIT_MMIO:
		if (ops->mmio)
			return ops->mmio(vcpu, &ex->u.mmio, op);
		break;
	case VTX_EXIT_HLT:
		if (ops->hlt)
			return ops->hlt(vcpu, op);
		break;
	case VTX_EXIT_SHUTDOWN:
		if (ops->shutdown)
			return ops->shutdown(vcpu, op);
		break;
	case VTX_EXIT_INTERNAL_ERROR:
		if (ops->internal_error)
			return ops->internal_error(vcpu, &ex->u.internal, op);
		break;
	case VTX_EXIT_FAIL_ENTRY:
		if (ops->fail_entry)
			return ops->fail_entry(vcpu, &ex->u.fail, op);
		break;
	case VTX_EXIT_OTHER:
		if (ops->other)
			return ops->other(vcpu, ex->reason, op);
		break;
	case VTX_EXIT_NONE:
		break;
	}
	*unhandled = true;
	return 1;
}

/* ---- run thread --------------------------------------------------------- */

static void set_immediate_exit(struct vtx_vcpu *vcpu, uint8_t v)
{
	/* KVM reads the byte once at KVM_RUN entry (READ_ONCE). */
	__atomic_store_n(&vcpu->run->immediate_exit, v, __ATOMIC_SEQ_CST);
}

/*
 * Called with the vCPU out of KVM_RUN and its last access completed. Parks
 * while a pause is requested; returns true when the thread must stop.
 */
static bool vcpu_checkpoint(struct vtx_vcpu *vcpu)
{
	bool stop;

	pthread_mutex_lock(&vcpu->lock);
	while (vcpu->want_pause && !vcpu->want_stop) {
		if (vcpu->state != VTX_PARKED) {
			vcpu->state = VTX_PARKED;
			pthread_cond_broadcast(&vcpu->cond);
		}
		pthread_cond_wait(&vcpu->cond, &vcpu->lock);
	}
	vcpu->state = VTX_RUNNING;
	stop = vcpu->want_stop;
	if (!stop)
		set_immediate_exit(vcpu, 0);
	pthread_mutex_unlock(&vcpu->lock);
	return stop;
}

/*
 * Re-enters KVM with immediate_exit set so KVM finishes the I/O or MMIO
 * access the vCPU exited for (advancing RIP, storing IN data) without
 * running the guest. Without it a stopped vCPU's saved registers would point
 * at an instruction that already took effect on the device side.
 */
static void vcpu_settle(struct vtx_vcpu *vcpu)
{
	set_immediate_exit(vcpu, 1);
	if (ioctl(vcpu->fd, KVM_RUN, 0) == 0 || errno != EINTR)
		fab_warn("vtx: vcpu %u: completing the last access did not return EINTR", vcpu->id);
}

static void vcpu_loop(struct vtx_vcpu *vcpu, struct vtx_stop_info *info)
{
	struct vtx_exit ex;
	bool unhandled;
	int r;

	if (vcpu_checkpoint(vcpu)) {
		info->kind = VTX_STOP_REQUESTED;
		return;
	}
	for (;;) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				if (vcpu_checkpoint(vcpu)) {
					info->kind = VTX_STOP_REQUESTED;
					return;
				}
				continue;
			}
			info->kind = VTX_STOP_ERROR;
			info->code = vtx_sys_err("KVM_RUN");
			return;
		}
		r = exit_decode(vcpu, &ex);
		if (r) {
			fab_err("vtx: vcpu %u: malformed exit %u from KVM", vcpu->id,
				vcpu->run->exit_reason);
			info->kind = VTX_STOP_ERROR;
			info->code = r;
			return;
		}
		r = exit_dispatch(vcpu, &ex, &unhandled);
		if (r == VTX_RUN_CONTINUE)
			continue;
		info->exit = ex.type;
		if (unhandled) {
			info->kind = VTX_STOP_UNHANDLED;
			fab_warn("vtx: vcpu %u: no callback for exit %u, stopping", vcpu->id,
				 ex.reason);
		} else {
			info->kind = VTX_STOP_CALLBACK;
			info->code = r;
		}
		if (ex.type == VTX_EXIT_IO || ex.type == VTX_EXIT_MMIO)
			vcpu_settle(vcpu);
		return;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vtx_vcpu *vcpu = arg;
	struct vtx_stop_info info = { .kind = VTX_STOP_NONE };
	sigset_t kick;

	vtx_cur = vcpu;
	/* Created with every signal blocked; take only our kicks. */
	sigemptyset(&kick);
	sigaddset(&kick, vtx_kick_signal());
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	vcpu_loop(vcpu, &info);
	/* Registers a last callback wrote without a KVM_RUN to load them. */
	if (vcpu->sync_regs && (vcpu->run->kvm_dirty_regs & KVM_SYNC_X86_REGS)) {
		if (ioctl(vcpu->fd, KVM_SET_REGS, &vcpu->run->s.regs.regs) < 0)
			vtx_sys_err("KVM_SET_REGS");
		vcpu->run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_REGS;
	}

	if (vcpu->ops.stopped)
		vcpu->ops.stopped(vcpu, &info, vcpu->opaque);
	pthread_mutex_lock(&vcpu->lock);
	vcpu->stop = info;
	vcpu->state = VTX_EXITED;
	pthread_cond_broadcast(&vcpu->cond);
	pthread_mutex_unlock(&vcpu->lock);
	return NULL;
}

/* ---- lifecycle (control threads) ---------------------------------------- */

/* Joins a thread that has left its loop. Called with vm->ctl_lock held,
 * which keeps two control threads from joining the same thread. */
static void vcpu_reap(struct vtx_vcpu *vcpu)
{
	bool exited;

	pthread_mutex_lock(&vcpu->lock);
	exited = vcpu->state == VTX_EXITED;
	pthread_mutex_unlock(&vcpu->lock);
	if (!exited)
		return;
	pthread_join(vcpu->thread, NULL);
	pthread_mutex_lock(&vcpu->lock);
	vcpu->state = VTX_IDLE;
	vcpu->want_stop = false;
	pthread_mutex_unlock(&vcpu->lock);
}

static int vcpu_start_locked(struct vtx_vcpu *vcpu)
{
	sigset_t all, old;
	int r;

	vcpu_reap(vcpu);
	pthread_mutex_lock(&vcpu->lock);
	if (vcpu->state != VTX_IDLE) {
		pthread_mutex_unlock(&vcpu->lock);
		return -EBUSY;
	}
	vcpu->state = VTX_RUNNING;
	vcpu->want_stop = false;
	memset(&vcpu->stop, 0, sizeof(vcpu->stop));
	pthread_mutex_unlock(&vcpu->lock);

	/* The thread inherits our mask: start it with everything blocked so
	 * no process-directed signal lands there before it sets its own. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		errno = r;
		r = vtx_sys_err("pthread_create(vcpu)");
		pthread_mutex_lock(&vcpu->lock);
		vcpu->state = VTX_IDLE;
		pthread_mutex_unlock(&vcpu->lock);
	}
	return r;
}

/* Asks a running thread to come out of KVM_RUN. vcpu->lock held. */
static void vcpu_kick_locked(struct vtx_vcpu *vcpu)
{
	int r;

	if (vcpu->state != VTX_RUNNING)
		return;
	set_immediate_exit(vcpu, 1);
	/* Safe under the lock: a RUNNING thread has not been joined. */
	r = pthread_kill(vcpu->thread, vtx_kick_signal());
	assert(r == 0);
	(void)r;
}

static void vcpu_request_pause(struct vtx_vcpu *vcpu)
{
	pthread_mutex_lock(&vcpu->lock);
	vcpu->want_pause = true;
	vcpu_kick_locked(vcpu);
	pthread_mutex_unlock(&vcpu->lock);
}

/* Waits until the vCPU is parked (or not running), or until deadline
 * (CLOCK_MONOTONIC; NULL: no limit). Returns 0 or -ETIMEDOUT. */
static int vcpu_wait_parked(struct vtx_vcpu *vcpu, const struct timespec *deadline)
{
	int r = 0;

	pthread_mutex_lock(&vcpu->lock);
	while (vcpu->state == VTX_RUNNING && vcpu->want_pause && r != ETIMEDOUT) {
		if (deadline)
			r = pthread_cond_timedwait(&vcpu->cond, &vcpu->lock, deadline);
		else
			pthread_cond_wait(&vcpu->cond, &vcpu->lock);
	}
	r = vcpu->state == VTX_RUNNING && vcpu->want_pause ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&vcpu->lock);
	return r;
}

static void vcpu_resume(struct vtx_vcpu *vcpu)
{
	pthread_mutex_lock(&vcpu->lock);
	vcpu->want_pause = false;
	pthread_cond_broadcast(&vcpu->cond);
	pthread_mutex_unlock(&vcpu->lock);
}

static void vcpu_request_stop(struct vtx_vcpu *vcpu)
{
	pthread_mutex_lock(&vcpu->lock);
	if (vcpu->state == VTX_RUNNING || vcpu->state == VTX_PARKED) {
		vcpu->want_stop = true;
		vcpu_kick_locked(vcpu);
		pthread_cond_broadcast(&vcpu->cond);
	}
	pthread_mutex_unlock(&vcpu->lock);
}

/* Waits for the thread to leave its loop. Returns -ETIMEDOUT if it has not
 * by the deadline (NULL: no deadline). */
static int vcpu_wait_exit(struct vtx_vcpu *vcpu, const struct timespec *deadline)
{
	int r = 0;

	pthread_mutex_lock(&vcpu->lock);
	while ((vcpu->state == VTX_RUNNING || vcpu->state == VTX_PARKED) && !r) {
		if (deadline)
			r = pthread_cond_timedwait(&vcpu->cond, &vcpu->lock, deadline);
		else
			pthread_cond_wait(&vcpu->cond, &vcpu->lock);
	}
	if (vcpu->state == VTX_EXITED || vcpu->state == VTX_IDLE)
		r = 0;
	pthread_mutex_unlock(&vcpu->lock);
	return r ? -ETIMEDOUT : 0;
}

static void vcpu_stop_info(struct vtx_vcpu *vcpu, struct vtx_stop_info *info)
{
	if (!info)
		return;
	pthread_mutex_lock(&vcpu->lock);
	*info = vcpu->stop;
	pthread_mutex_unlock(&vcpu->lock);
}

int vtx_vcpu_start(struct vtx_vcpu *vcpu)
{
	int r;

	if (vtx_on_vcpu_thread_of(vcpu->vm))
		return -EDEADLK;
	pthread_mutex_lock(&vcpu->vm->ctl_lock);
	r = vcpu_start_locked(vcpu);
	pthread_mutex_unlock(&vcpu->vm->ctl_lock);
	return r;
}

int vtx_vcpu_pause(struct vtx_vcpu *vcpu)
{
	if (vtx_on_vcpu_thread_of(vcpu->vm))
		return -EDEADLK;
	pthread_mutex_lock(&vcpu->vm->ctl_lock);
	vcpu_request_pause(vcpu);
	vcpu_wait_parked(vcpu, NULL);
	pthread_mutex_unlock(&vcpu->vm->ctl_lock);
	return 0;
}

int vtx_vcpu_resume(struct vtx_vcpu *vcpu)
{
	if (vtx_on_vcpu_thread_of(vcpu->vm))
		return -EDEADLK;
	pthread_mutex_lock(&vcpu->vm->ctl_lock);
	vcpu_resume(vcpu);
	pthread_mutex_unlock(&vcpu->vm->ctl_lock);
	return 0;
}

int vtx_vcpu_stop(struct vtx_vcpu *vcpu, struct vtx_stop_info *info)
{
	if (vtx_on_vcpu_thread_of(vcpu->vm))
		return -EDEADLK;
	pthread_mutex_lock(&vcpu->vm->ctl_lock);
	vcpu_request_stop(vcpu);
	vcpu_wait_exit(vcpu, NULL);
	vcpu_reap(vcpu);
	pthread_mutex_unlock(&vcpu->vm->ctl_lock);
	vcpu_stop_info(vcpu, info);
	return 0;
}

int vtx_vcpu_wait(struct vtx_vcpu *vcpu, int timeout_ms, struct vtx_stop_info *info)
{
	struct timespec deadline;
	int r;

	if (vtx_on_vcpu_thread_of(vcpu->vm))
		return -EDEADLK;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	/* Not under ctl_lock: the wait may be long and must not hold up
	 * pause or stop from other control threads. */
	r = vcpu_wait_exit(vcpu, timeout_ms >= 0 ? &deadline : NULL);
	if (r)
		return r;
	pthread_mutex_lock(&vcpu->vm->ctl_lock);
	vcpu_reap(vcpu);
	pthread_mutex_unlock(&vcpu->vm->ctl_lock);
	vcpu_stop_info(vcpu, info);
	return 0;
}

int vtx_vm_start(struct vtx_vm *vm)
{
	int r, first = 0;

	if (vtx_on_vcpu_thread_of(vm))
		return -EDEADLK;
	pthread_mutex_lock(&vm->ctl_lock);
	for (int i = 0; i < VTX_MAX_VCPUS; i++) {
		struct vtx_vcpu *vcpu = vm->vcpus[i];
		bool idle;

		if (!vcpu)
			continue;
		vcpu_reap(vcpu);
		pthread_mutex_lock(&vcpu->lock);
		idle = vcpu->state == VTX_IDLE;
		pthread_mutex_unlock(&vcpu->lock);
		if (!idle)
			continue;
		r = vcpu_start_locked(vcpu);
		if (r && !first)
			first = r;
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return first;
}

static int vm_pause(struct vtx_vm *vm, const struct timespec *deadline)
{
	int r = 0;

	if (vtx_on_vcpu_thread_of(vm))
		return -EDEADLK;
	pthread_mutex_lock(&vm->ctl_lock);
	vm->paused = true;
	/* Kick them all before waiting for any, so they park in parallel. */
	for (int i = 0; i < VTX_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			vcpu_request_pause(vm->vcpus[i]);
	for (int i = 0; i < VTX_MAX_VCPUS && !r; i++)
		if (vm->vcpus[i])
			r = vcpu_wait_parked(vm->vcpus[i], deadline);
	if (r) {
		/* One is stuck in a callback: let them all run on, as if the
		 * pause had never been asked for. */
		vm->paused = false;
		for (int i = 0; i < VTX_MAX_VCPUS; i++)
			if (vm->vcpus[i])
				vcpu_resume(vm->vcpus[i]);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return r;
}

int vtx_vm_pause(struct vtx_vm *vm)
{
	return vm_pause(vm, NULL);
}

int vtx_vm_pause_timed(struct vtx_vm *vm, int timeout_ms)
{
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms < 0)
		timeout_ms = 0;
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	return vm_pause(vm, &deadline);
}

int vtx_vm_resume(struct vtx_vm *vm)
{
	if (vtx_on_vcpu_thread_of(vm))
		return -EDEADLK;
	pthread_mutex_lock(&vm->ctl_lock);
	vm->paused = false;
	for (int i = 0; i < VTX_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			vcpu_resume(vm->vcpus[i]);
	pthread_mutex_unlock(&vm->ctl_lock);
	return 0;
}

int vtx_vm_stop(struct vtx_vm *vm)
{
	if (vtx_on_vcpu_thread_of(vm))
		return -EDEADLK;
	pthread_mutex_lock(&vm->ctl_lock);
	for (int i = 0; i < VTX_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			vcpu_request_stop(vm->vcpus[i]);
	for (int i = 0; i < VTX_MAX_VCPUS; i++) {
		if (vm->vcpus[i]) {
			vcpu_wait_exit(vm->vcpus[i], NULL);
			vcpu_reap(vm->vcpus[i]);
		}
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return 0;
}
