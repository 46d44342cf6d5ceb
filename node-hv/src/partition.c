// SPDX-License-Identifier: MIT
/*
 * Child partitions: a KVM VM (vtx) running an ELF image at CPL3 in 64-bit
 * mode, the hypercall interface of fab/hvabi.h, and the lifecycle
 *   created -> running <-> paused -> stopped | exited | crashed.
 *
 * Threads: every vCPU has its own thread (vtx) on which its exits and
 * hypercalls are handled; a monitor thread per partition stops the other
 * vCPUs once one of them ends the partition (exit, panic, crash), since a
 * vCPU thread cannot join its siblings. Control calls (start, pause, stop,
 * destroy) come from any other thread. p->lock guards state, reason and the
 * per-vCPU wait flags.
 *
 * The guest is untrusted: every GPA, length and count from a hypercall is
 * checked against guest RAM through one function (nhv_guest_range) first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fab/hvabi.h"
#include "fab/log.h"
#include "fab/nodehv.h"
#include "fab/vtx.h"
#include "ckpt_int.h"
#include "nhv_int.h"
#include "partition_int.h"

/* What a vCPU exit callback returns to stop its vCPU (non-zero). */
#define VP_STOP 1

/* GDT and TSS pages below the page tables, see write_gdt(). */
#define GDT_GPA		      0x3000ull
#define TSS_GPA		      0x4000ull
#define SEL_UCODE	      (3 << 3 | 3)
#define SEL_UDATA	      (4 << 3 | 3)
#define SEL_TSS		      (5 << 3)
#define DEFAULT_CONSOLE_LIMIT (16ull << 20)
#define HYPERCALL_RETRY_OFF   3 /* offset of the retry jump in the hypercall page */

const char *nhv_part_state_name(enum nhv_part_state st)
{
	static const char *const names[] = {
		[NHV_PART_CREATED] = "created", [NHV_PART_RUNNING] = "running",
		[NHV_PART_PAUSED] = "paused",	[NHV_PART_STOPPED] = "stopped",
		[NHV_PART_EXITED] = "exited",	[NHV_PART_CRASHED] = "crashed",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static bool state_final(enum nhv_part_state st)
{
	return st == NHV_PART_STOPPED || st == NHV_PART_EXITED || st == NHV_PART_CRASHED;
}

/* Sets the state (p->lock held) and tells the owner (without the lock would
 * be nicer, but the callback must not call back into the partition). */
static void set_state_locked(struct nhv_partition *p, enum nhv_part_state st)
{
	if (p->state == st)
		return;
	p->state = st;
	pthread_cond_broadcast(&p->cond);
	if (p->cfg.state_cb)
		p->cfg.state_cb(p, st, p->cfg.cb_arg);
}

/* ---- guest memory ------------------------------------------------------- */

/* The one check of guest-supplied ranges: [gpa, gpa + len) inside RAM. */
void *nhv_guest_range(struct nhv_partition *p, uint64_t gpa, uint64_t len)
{
	void *hva;

	if (vtx_gpa_to_hva(p->vm, gpa, len, &hva))
		return NULL;
	return hva;
}

/* A hypercall parameter block: 8-byte aligned, inside RAM, within a page. */
static int param_block(struct nhv_partition *p, uint64_t gpa, uint64_t len, void **out)
{
	if (gpa & 7)
		return HV_STATUS_INVALID_ALIGNMENT;
	if (len > FAB_PAGE_SIZE || (gpa & (FAB_PAGE_SIZE - 1)) + len > FAB_PAGE_SIZE)
		return HV_STATUS_INVALID_ALIGNMENT;
	*out = nhv_guest_range(p, gpa, len);
	return *out ? HV_STATUS_SUCCESS : HV_STATUS_INVALID_PARAMETER;
}

/* ---- console ------------------------------------------------------------ */

/* Appends to the console log within its limit; p->console_lock held. */
static void console_log(struct nhv_partition *p, const char *buf, size_t len, uint64_t limit)
{
	/* A chatty guest must not fill the node's disk. */
	if (p->console_written >= limit)
		return;
	if (p->console_written + len > limit) {
		static const char note[] =
			"\n[console log limit reached; further output dropped]\n";

		len = (size_t)(limit - p->console_written);
		if (write(p->console_fd, buf, len) < 0 ||
		    write(p->console_fd, note, sizeof(note) - 1) < 0)
			fab_warn("partition %llu: console log write: %s", (unsigned long long)p->id,
				 strerror(errno));
		p->console_written = limit;
		return;
	}
	if (write(p->console_fd, buf, len) < 0)
		fab_warn("partition %llu: console log write: %s", (unsigned long long)p->id,
			 strerror(errno));
	p->console_written += len;
}

static void console_out(struct nhv_partition *p, const char *buf, size_t len)
{
	uint64_t limit = p->cfg.console_limit ? p->cfg.console_limit : DEFAULT_CONSOLE_LIMIT;

	atomic_fetch_add(&p->n_console, len);
	if (p->cfg.console_cb)
		p->cfg.console_cb(p, buf, len, p->cfg.cb_arg);
	if (p->console_fd < 0)
		return;
	pthread_mutex_lock(&p->console_lock);
	console_log(p, buf, len, limit);
	pthread_mutex_unlock(&p->console_lock);
}

/* ---- ending the partition from a vCPU ----------------------------------- */

/* Records how the partition ended and wakes the monitor; returns VP_STOP
 * for the calling vCPU's exit callback. First reason wins. */
static int end_partition(struct nhv_partition *p, enum nhv_part_state st, int status,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int end_partition(struct nhv_partition *p, enum nhv_part_state st, int status,
			 const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&p->lock);
	if (!p->ending && !state_final(p->state)) {
		p->ending = true;
		p->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
		va_end(ap);
		set_state_locked(p, st);
		if (st == NHV_PART_CRASHED)
			fab_warn("partition %llu crashed: %s", (unsigned long long)p->id,
				 p->reason);
		else
			fab_info("partition %llu exited with status %d", (unsigned long long)p->id,
				 status);
	}
	p->interrupt = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return VP_STOP;
}

/* ---- hypercalls --------------------------------------------------------- */

static int64_t ref_time_100ns(struct nhv_partition *p)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - p->born.tv_sec) * 10000000 +
	       (now.tv_nsec - p->born.tv_nsec) / 100;
}

int64_t nhv_ref_time(struct nhv_partition *p)
{
	return ref_time_100ns(p);
}

/* The guest's clock goes on from ref: time zero moves back by it. */
void nhv_ref_time_set(struct nhv_partition *p, int64_t ref)
{
	struct timespec now;
	int64_t ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - ref * 100;
	p->born.tv_sec = (time_t)(ns / 1000000000);
	p->born.tv_nsec = (long)(ns % 1000000000);
	if (p->born.tv_nsec < 0) {
		p->born.tv_sec--;
		p->born.tv_nsec += 1000000000;
	}
}

static uint16_t reg_get(struct nhv_vp *vp, uint32_t name, uint64_t *val)
{
	switch (name) {
	case HV_REGISTER_VP_INDEX:
		*val = vp->index;
		return HV_STATUS_SUCCESS;
	case HV_REGISTER_TIME_REF_COUNT:
		*val = (uint64_t)ref_time_100ns(vp->p);
		return HV_STATUS_SUCCESS;
	default:
		return nhv_synic_get_reg(vp, name, val);
	}
}

static uint16_t reg_set(struct nhv_vp *vp, uint32_t name, uint64_t val)
{
	/* VP_INDEX and TIME_REF_COUNT are read-only: the SynIC refuses them. */
	return nhv_synic_set_reg(vp, name, val);
}

/* Get/SetVpRegisters: rep hypercalls on a parameter block. */
static uint64_t hc_vp_registers(struct nhv_vp *vp, uint64_t ctl, uint64_t in_gpa, uint64_t out_gpa,
				bool set)
{
	uint32_t reps = HV_HYPERCALL_REPS(ctl), start = HV_HYPERCALL_START(ctl), done;
	size_t elem_in = set ? sizeof(struct hv_register_assoc) : sizeof(uint32_t);
	struct hv_vp_registers_hdr hdr;
	uint8_t *in, *out = NULL;
	uint16_t st;

	if (ctl & HV_HYPERCALL_FAST)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	if (reps == 0 || start >= reps)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	st = (uint16_t)param_block(vp->p, in_gpa, sizeof(hdr) + (uint64_t)reps * elem_in,
				   (void **)&in);
	if (st)
		return st;
	if (!set) {
		st = (uint16_t)param_block(vp->p, out_gpa, (uint64_t)reps * 16, (void **)&out);
		if (st)
			return st;
	}
	memcpy(&hdr, in, sizeof(hdr));
	if (hdr.partition_id != HV_PARTITION_ID_SELF && hdr.partition_id != vp->p->id)
		return HV_STATUS_INVALID_PARTITION_ID;
	if (hdr.vp_index != HV_VP_INDEX_SELF && hdr.vp_index != vp->index)
		return HV_STATUS_INVALID_VP_INDEX;
	if (hdr.input_vtl != 0)
		return HV_STATUS_INVALID_PARAMETER;

	for (done = start; done < reps; done++) {
		if (set) {
			struct hv_register_assoc a;

			memcpy(&a, in + sizeof(hdr) + done * elem_in, sizeof(a));
			st = reg_set(vp, a.name, a.value_low);
		} else {
			uint32_t name;
			uint64_t v[2] = { 0, 0 };

			memcpy(&name, in + sizeof(hdr) + done * elem_in, sizeof(name));
			st = reg_get(vp, name, &v[0]);
			if (!st) {
				memcpy(out + done * 16, v, sizeof(v));
				nhv_dirty_mark(vp->p, out_gpa + done * 16, sizeof(v));
			}
		}
		if (st)
			break;
	}
	return st | ((uint64_t)done << 32);
}

/* HvPostMessage: a 256-byte input block (hv_input_post_message). The
 * payload is copied out of guest memory before anything looks at it. */
static uint64_t hc_post_message(struct nhv_vp *vp, uint64_t ctl, uint64_t in_gpa)
{
	uint8_t msg[256];
	uint32_t conn, type, size;
	void *in;
	uint16_t st;

	if (ctl & HV_HYPERCALL_FAST)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	st = (uint16_t)param_block(vp->p, in_gpa, sizeof(msg), &in);
	if (st)
		return st;
	memcpy(msg, in, sizeof(msg));
	memcpy(&conn, msg, 4);
	memcpy(&type, msg + 8, 4);
	memcpy(&size, msg + 12, 4);
	/* Types with the top bit are the hypervisor's own (HVMSG_*). */
	if (size > 240 || type == 0 || (type & 0x80000000u) || (conn >> 24))
		return HV_STATUS_INVALID_PARAMETER;
	return nhv_vmbus_post_message(vp->p, vp->index, conn, type, msg + 16, size);
}

/*
 * WAIT: blocks the vCPU thread until nhv_partition_signal, the timeout, or
 * a pause/stop. A pause or stop must not wait for the guest's timeout, yet
 * the guest should not see it either: the vCPU is sent to the hypercall
 * page's retry jump, which makes the same call again after resume. During
 * the exit RIP is past the OUT on this host's KVM (older KVMs leave it on
 * the OUT and advance it on re-entry unless userspace changed it); an
 * explicit retry address is right for both. A WAIT made from outside the
 * hypercall page just returns early (TIME_OUT), which the ABI allows.
 */
static int hc_wait(struct nhv_vp *vp, struct vtx_regs *r, uint64_t timeout)
{
	struct nhv_partition *p = vp->p;
	struct timespec until;
	int rc = 0;

	atomic_fetch_add(&p->n_waits, 1);
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout != FAB_WAIT_FOREVER) {
		uint64_t ns = timeout > (1ull << 62) / 100 ? (1ull << 62) : timeout * 100;

		until.tv_sec += (time_t)(ns / 1000000000);
		until.tv_nsec += (long)(ns % 1000000000);
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&p->lock);
	while (!vp->event && !p->interrupt && rc != ETIMEDOUT) {
		if (timeout == FAB_WAIT_FOREVER)
			pthread_cond_wait(&p->cond, &p->lock);
		else
			rc = pthread_cond_timedwait(&p->cond, &p->lock, &until);
	}
	if (vp->event) {
		vp->event = false;
		r->rax = HV_STATUS_SUCCESS;
	} else if (p->interrupt &&
		   (r->rip == FAB_HYPERCALL_GPA || r->rip == FAB_HYPERCALL_GPA + 2)) {
		r->rip = FAB_HYPERCALL_GPA + HYPERCALL_RETRY_OFF;
	} else {
		r->rax = HV_STATUS_TIME_OUT;
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static int hypercall(struct nhv_vp *vp)
{
	struct nhv_partition *p = vp->p;
	struct vtx_regs r;
	uint64_t ctl, status = HV_STATUS_SUCCESS;
	int rc, stop = 0;

	rc = vtx_vcpu_get_regs(vp->vcpu, &r);
	if (rc)
		return end_partition(p, NHV_PART_CRASHED, 0, "cannot read vCPU %u registers: %s",
				     vp->index, strerror(-rc));
	atomic_fetch_add(&p->n_hypercalls, 1);
	ctl = r.rcx;
	switch (HV_HYPERCALL_CODE(ctl)) {
	case FAB_HVCALL_CONSOLE_WRITE: {
		const char *buf;

		if (r.r8 > FAB_CONSOLE_MAX || !(buf = nhv_guest_range(p, r.rdx, r.r8)))
			status = HV_STATUS_INVALID_PARAMETER;
		else
			console_out(p, buf, (size_t)r.r8);
		break;
	}
	case FAB_HVCALL_WAIT:
		hc_wait(vp, &r, r.rdx);
		status = r.rax;
		break;
	case FAB_HVCALL_EXIT:
		stop = end_partition(p, NHV_PART_EXITED, (int)(r.rdx & 0xff), "exit status %d",
				     (int)(r.rdx & 0xff));
		break;
	case FAB_HVCALL_PANIC: {
		char msg[200];
		const char *src = r.r8 <= FAB_CONSOLE_MAX ? nhv_guest_range(p, r.rdx, r.r8) : NULL;
		size_t n = r.r8 < sizeof(msg) - 1 ? (size_t)r.r8 : sizeof(msg) - 1;

		if (src) {
			memcpy(msg, src, n);
			msg[n] = '\0';
			for (size_t i = 0; i < n; i++)
				if (msg[i] < 0x20 || msg[i] > 0x7e)
					msg[i] = '?';
		} else {
			snprintf(msg, sizeof(msg), "(message at an invalid address)");
		}
		stop = end_partition(p, NHV_PART_CRASHED, 0, "guest panic on vCPU %u: %s",
				     vp->index, msg);
		break;
	}
	case HVCALL_GET_VP_REGISTERS:
		status = hc_vp_registers(vp, ctl, r.rdx, r.r8, false);
		break;
	case HVCALL_SET_VP_REGISTERS:
		status = hc_vp_registers(vp, ctl, r.rdx, r.r8, true);
		break;
	case HVCALL_POST_MESSAGE:
		status = hc_post_message(vp, ctl, r.rdx);
		break;
	case HVCALL_SIGNAL_EVENT:
		/* Fast: RDX = connection id (bits 0-23) | flag number << 32. */
		if (!(ctl & HV_HYPERCALL_FAST) || (r.rdx >> 48) != 0 || ((r.rdx >> 24) & 0xff))
			status = HV_STATUS_INVALID_HYPERCALL_INPUT;
		else
			status = nhv_vmbus_signal_event(p, vp->index, (uint32_t)(r.rdx & 0xffffff),
							(uint16_t)(r.rdx >> 32));
		break;
	default:
		status = HV_STATUS_INVALID_HYPERCALL_CODE;
		break;
	}
	if (stop)
		return stop;
	r.rax = status;
	rc = vtx_vcpu_set_regs(vp->vcpu, &r);
	if (rc)
		return end_partition(p, NHV_PART_CRASHED, 0, "cannot write vCPU %u registers: %s",
				     vp->index, strerror(-rc));
	return VTX_RUN_CONTINUE;
}

/* ---- exits -------------------------------------------------------------- */

static int on_io(struct vtx_vcpu *vcpu, struct vtx_io_exit *io, void *opaque)
{
	struct nhv_vp *vp = opaque;

	if (io->is_write && io->port == FAB_HYPERCALL_PORT && io->size == 1 && io->count == 1)
		return hypercall(vp);
	/* Anything else behaves like an empty bus: writes vanish, reads
	 * return all ones. Counted, logged once per partition. */
	if (atomic_fetch_add(&vp->p->n_unhandled_io, 1) == 0)
		fab_info("partition %llu: unclaimed port %#x %s (ignored; counted from now on)",
			 (unsigned long long)vp->p->id, io->port, io->is_write ? "write" : "read");
	if (!io->is_write)
		memset(io->data, 0xff, (size_t)io->size * io->count);
	return VTX_RUN_CONTINUE;
}

static int on_mmio(struct vtx_vcpu *vcpu, struct vtx_mmio_exit *mmio, void *opaque)
{
	struct nhv_vp *vp = opaque;

	/* Only reachable by a guest that mapped non-RAM addresses itself. */
	atomic_fetch_add(&vp->p->n_unhandled_io, 1);
	if (!mmio->is_write)
		memset(mmio->data, 0xff, mmio->len);
	return VTX_RUN_CONTINUE;
}

static int on_hlt(struct vtx_vcpu *vcpu, void *opaque)
{
	struct nhv_vp *vp = opaque;

	return end_partition(vp->p, NHV_PART_CRASHED, 0, "vCPU %u executed HLT", vp->index);
}

static int on_shutdown(struct vtx_vcpu *vcpu, void *opaque)
{
	struct nhv_vp *vp = opaque;

	return end_partition(vp->p, NHV_PART_CRASHED, 0, "triple fault on vCPU %u", vp->index);
}

static int on_internal_error(struct vtx_vcpu *vcpu, const struct vtx_internal_error_exit *e,
			     void *opaque)
{
	struct nhv_vp *vp = opaque;

	return end_partition(vp->p, NHV_PART_CRASHED, 0, "KVM internal error %u on vCPU %u",
			     e->suberror, vp->index);
}

static int on_fail_entry(struct vtx_vcpu *vcpu, const struct vtx_fail_entry_exit *f, void *opaque)
{
	struct nhv_vp *vp = opaque;

	return end_partition(vp->p, NHV_PART_CRASHED, 0,
			     "failed entry on vCPU %u (hardware reason %#llx)", vp->index,
			     (unsigned long long)f->hw_reason);
}

static int on_other(struct vtx_vcpu *vcpu, uint32_t reason, void *opaque)
{
	struct nhv_vp *vp = opaque;

	return end_partition(vp->p, NHV_PART_CRASHED, 0, "unexpected KVM exit %u on vCPU %u",
			     reason, vp->index);
}

static void on_stopped(struct vtx_vcpu *vcpu, const struct vtx_stop_info *info, void *opaque)
{
	struct nhv_vp *vp = opaque;

	/* A vCPU that died for a reason of vtx's own (KVM_RUN error) ends the
	 * partition like a crash. */
	if (info->kind == VTX_STOP_ERROR || info->kind == VTX_STOP_UNHANDLED)
		end_partition(vp->p, NHV_PART_CRASHED, 0, "vCPU %u stopped: %s", vp->index,
			      info->kind == VTX_STOP_ERROR ? strerror(-info->code)
							   : "unhandled exit");
}

static const struct vtx_vcpu_ops vp_ops = {
	.io = on_io,
	.mmio = on_mmio,
	.hlt = on_hlt,
	.shutdown = on_shutdown,
	.internal_error = on_internal_error,
	.fail_entry = on_fail_entry,
	.other = on_other,
	.stopped = on_stopped,
};

/* ---- monitor ------------------------------------------------------------ */

static void *monitor_main(void *arg)
{
	struct nhv_partition *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->ending && !p->monitor_quit)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->monitor_quit)
			break;
		pthread_mutex_unlock(&p->lock);
		vtx_vm_stop(p->vm);
		pthread_mutex_lock(&p->lock);
		p->ending = false;
		p->halted = true;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- creation ----------------------------------------------------------- */

static void write_gdt(uint8_t *ram)
{
	uint64_t *gdt = (uint64_t *)(ram + GDT_GPA);
	uint64_t tss_lo, tss = TSS_GPA, lim = 0x67;

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull; /* kernel code 64 (unused) */
	gdt[2] = 0x00cf93000000ffffull; /* kernel data (unused) */
	gdt[3] = 0x00affb000000ffffull; /* user code 64, DPL 3 */
	gdt[4] = 0x00cff3000000ffffull; /* user data, DPL 3 */
	/* 64-bit TSS descriptor (busy), two slots */
	tss_lo = (lim & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bull << 40) |
		 (((lim >> 16) & 0xf) << 48) | (((tss >> 24) & 0xff) << 56);
	gdt[5] = tss_lo;
	gdt[6] = tss >> 32;
}

static void seg(struct vtx_segment *s, uint16_t sel, uint8_t type, uint8_t code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 3;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int setup_vcpu(struct nhv_partition *p, struct nhv_vp *vp, uint64_t entry, uint64_t cr3)
{
	struct vtx_sregs sr;
	struct vtx_regs r;
	int rc;

	rc = vtx_vcpu_get_sregs(vp->vcpu, &sr);
	if (rc)
		return rc;
	seg(&sr.cs, SEL_UCODE, 0xb, 1);
	seg(&sr.ds, SEL_UDATA, 0x3, 0);
	sr.es = sr.ds;
	sr.fs = sr.ds;
	sr.gs = sr.ds;
	sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.base = TSS_GPA;
	sr.tr.limit = 0x67;
	sr.tr.selector = SEL_TSS;
	sr.tr.type = 0xb; /* busy 64-bit TSS */
	sr.tr.present = 1;
	memset(&sr.ldt, 0, sizeof(sr.ldt));
	sr.ldt.unusable = 1;
	sr.gdt.base = GDT_GPA;
	sr.gdt.limit = 7 * 8 - 1;
	/* No IDT: any exception escalates to a triple fault, which the host
	 * reports as a crash. */
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr0 = 0x80050033; /* PG WP NE ET MP PE */
	sr.cr3 = cr3;
	sr.cr4 = 0x620;	 /* OSXMMEXCPT OSFXSR PAE */
	sr.efer = 0x500; /* LMA LME */
	rc = vtx_vcpu_set_sregs(vp->vcpu, &sr);
	if (rc)
		return rc;
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rsp = p->ram_bytes - (uint64_t)vp->index * FAB_STACK_BYTES - 16;
	r.rdi = FAB_BOOTINFO_GPA;
	r.rsi = vp->index;
	r.rflags = 0x3002; /* IOPL 3, reserved bit 1 */
	return vtx_vcpu_set_regs(vp->vcpu, &r);
}

static int write_bootinfo(struct nhv_partition *p, const struct nhv_partition_cfg *cfg,
			  uint64_t image_end)
{
	struct fab_bootinfo *bi = (struct fab_bootinfo *)(p->ram + FAB_BOOTINFO_GPA);
	size_t off = 0;

	_Static_assert(sizeof(struct fab_bootinfo) <= FAB_PAGE_SIZE, "boot info fits a page");
	if (cfg->argc < 0 || cfg->argc > FAB_ARGS_MAX)
		return -E2BIG;
	memset(bi, 0, sizeof(*bi));
	bi->magic = FAB_BOOTINFO_MAGIC;
	bi->version = FAB_BOOTINFO_VERSION;
	bi->nvcpus = p->nvcpus;
	bi->partition_id = p->id;
	bi->ram_bytes = p->ram_bytes;
	bi->hypercall_gpa = FAB_HYPERCALL_GPA;
	bi->free_start = (image_end + FAB_PAGE_SIZE - 1) & ~(FAB_PAGE_SIZE - 1);
	bi->free_end = p->ram_bytes - (uint64_t)p->nvcpus * FAB_STACK_BYTES;
	bi->argc = (uint32_t)cfg->argc;
	for (int i = 0; i < cfg->argc; i++) {
		size_t n = strlen(cfg->argv[i]) + 1;

		if (off + n > FAB_ARGS_BYTES)
			return -E2BIG;
		memcpy(bi->args + off, cfg->argv[i], n);
		bi->argv[i] = FAB_BOOTINFO_GPA + offsetof(struct fab_bootinfo, args) + off;
		off += n;
	}
	return 0;
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int nhv_partition_cfg_check(const struct nhv_partition_cfg *cfg, char *err, size_t errlen)
{
	uint64_t stacks;

	if (cfg->ram_bytes < FAB_RAM_MIN || cfg->ram_bytes > FAB_RAM_MAX ||
	    cfg->ram_bytes % FAB_RAM_ALIGN)
		return fail(err, errlen, -EINVAL,
			    "memory must be a multiple of 2 MiB between 4 MiB and 3 GiB");
	if (cfg->vcpus < 1 || cfg->vcpus > NHV_MAX_VCPUS)
		return fail(err, errlen, -EINVAL, "vCPUs must be 1..%d", NHV_MAX_VCPUS);
	stacks = (uint64_t)cfg->vcpus * FAB_STACK_BYTES;
	if (stacks + FAB_IMAGE_MIN_GPA >= cfg->ram_bytes)
		return fail(err, errlen, -EINVAL, "too little memory for %u vCPU stacks",
			    cfg->vcpus);
	if (cfg->argc < 0 || cfg->argc > FAB_ARGS_MAX)
		return fail(err, errlen, -E2BIG, "at most %d guest arguments", FAB_ARGS_MAX);
	return 0;
}

int nhv_partition_alloc(const struct nhv_partition_cfg *cfg, struct nhv_partition **out, char *err,
			size_t errlen)
{
	struct vtx_vm_config vc = { 0 };
	pthread_condattr_t ca;
	struct nhv_partition *p;
	int rc;

	rc = nhv_partition_cfg_check(cfg, err, errlen);
	if (rc)
		return rc;

	p = calloc(1, sizeof(*p));
	if (!p)
		return fail(err, errlen, -ENOMEM, "out of memory");
	p->cfg = *cfg;
	p->id = cfg->id;
	p->ram_bytes = cfg->ram_bytes;
	p->nvcpus = cfg->vcpus;
	p->console_fd = -1;
	p->state = NHV_PART_CREATED;
	clock_gettime(CLOCK_MONOTONIC, &p->born);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->synic_lock, NULL);
	pthread_mutex_init(&p->ctl_lock, NULL);
	pthread_mutex_init(&p->console_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);

	/* KVM's private pages stay at vtx's default just below 4 GiB, above
	 * any RAM a partition can have (FAB_RAM_MAX). */
	vc.ram_size = cfg->ram_bytes;
	vc.name = "fab-partition";
	rc = vtx_vm_create(&vc, &p->vm);
	if (rc) {
		fail(err, errlen, rc, "cannot create the VM: %s", strerror(-rc));
		goto out_free;
	}
	p->ram = vtx_vm_ram(p->vm);

	for (uint32_t i = 0; i < p->nvcpus; i++) {
		struct nhv_vp *vp = &p->vps[i];

		vp->p = p;
		vp->index = i;
		vp->queue_tail = &vp->queue_head;
		for (int s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			vp->sint[s] = HV_SINT_MASKED;
		rc = vtx_vcpu_create(p->vm, i, &vp_ops, vp, &vp->vcpu);
		if (rc) {
			fail(err, errlen, rc, "cannot set up vCPU %u: %s", i, strerror(-rc));
			goto out_vm;
		}
	}
	if (cfg->console_path) {
		p->console_fd =
			open(cfg->console_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (p->console_fd < 0) {
			rc = -errno;
			fail(err, errlen, rc, "console log %s: %s", cfg->console_path,
			     strerror(errno));
			goto out_vm;
		}
	}
	rc = -pthread_create(&p->monitor, NULL, monitor_main, p);
	if (rc) {
		fail(err, errlen, rc, "cannot start the monitor thread: %s", strerror(-rc));
		goto out_console;
	}
	p->monitor_started = true;
	*out = p;
	return 0;

out_console:
	if (p->console_fd >= 0)
		close(p->console_fd);
out_vm:
	vtx_vm_destroy(p->vm);
out_free:
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->synic_lock);
	pthread_mutex_destroy(&p->ctl_lock);
	pthread_mutex_destroy(&p->console_lock);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return rc;
}

int nhv_partition_create(const struct nhv_partition_cfg *cfg, struct nhv_partition **out, char *err,
			 size_t errlen)
{
	/* out FAB_HYPERCALL_PORT, al; ret; retry: jmp back to the out */
	static const uint8_t hypercall_page[] = { 0xe6, FAB_HYPERCALL_PORT, 0xc3, 0xeb, 0xfb };
	struct nhv_partition *p;
	uint64_t entry, image_end, cr3, stacks;
	char why[256];
	int rc;

	rc = nhv_partition_alloc(cfg, &p, err, errlen);
	if (rc)
		return rc;
	stacks = (uint64_t)cfg->vcpus * FAB_STACK_BYTES;
	rc = nhv_elf_load(cfg->image, cfg->image_len, p->ram, FAB_IMAGE_MIN_GPA,
			  cfg->ram_bytes - stacks, &entry, &image_end, why, sizeof(why));
	if (rc) {
		fail(err, errlen, rc, "bad partition image: %s", why);
		goto out;
	}
	cr3 = nhv_build_page_tables(p->ram, p->ram_bytes, FAB_PAGETABLE_GPA, FAB_IMAGE_MIN_GPA);
	if (!cr3) {
		rc = fail(err, errlen, -EINVAL, "page tables do not fit");
		goto out;
	}
	write_gdt(p->ram);
	memcpy(p->ram + FAB_HYPERCALL_GPA, hypercall_page, sizeof(hypercall_page));
	rc = write_bootinfo(p, cfg, image_end);
	if (rc) {
		fail(err, errlen, rc, "arguments too long (at most %d, %d bytes)", FAB_ARGS_MAX,
		     FAB_ARGS_BYTES);
		goto out;
	}
	for (uint32_t i = 0; i < p->nvcpus; i++) {
		rc = setup_vcpu(p, &p->vps[i], entry, cr3);
		if (rc) {
			fail(err, errlen, rc, "cannot set up vCPU %u: %s", i, strerror(-rc));
			goto out;
		}
	}
	*out = p;
	return 0;

out:
	nhv_partition_destroy(p);
	return rc;
}

/* ---- control ------------------------------------------------------------ */

static int partition_start(struct nhv_partition *p)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	if (p->state != NHV_PART_CREATED) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	set_state_locked(p, NHV_PART_RUNNING);
	pthread_mutex_unlock(&p->lock);
	rc = vtx_vm_start(p->vm);
	if (rc)
		end_partition(p, NHV_PART_CRASHED, 0, "cannot start vCPUs: %s", strerror(-rc));
	if (p->frozen) {
		/* A restored partition: its channels were held until now. */
		nhv_vmbus_hold(p, false, 0, NULL, 0);
		p->frozen = false;
	}
	return rc;
}

/* Takes the vCPUs out of the guest (and out of WAIT) with op; timeout_ms
 * (< 0: none) for a pause. */
static int interrupt_vcpus(struct nhv_partition *p, int (*op)(struct vtx_vm *), int timeout_ms)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	p->interrupt = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	rc = timeout_ms >= 0 ? vtx_vm_pause_timed(p->vm, timeout_ms) : op(p->vm);
	pthread_mutex_lock(&p->lock);
	p->interrupt = false;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int partition_pause_timed(struct nhv_partition *p, int timeout_ms)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	if (p->state != NHV_PART_RUNNING || p->ending) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	pthread_mutex_unlock(&p->lock);
	rc = interrupt_vcpus(p, vtx_vm_pause, timeout_ms);
	pthread_mutex_lock(&p->lock);
	if (!rc && p->state == NHV_PART_RUNNING)
		set_state_locked(p, NHV_PART_PAUSED);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int partition_pause(struct nhv_partition *p)
{
	return partition_pause_timed(p, -1);
}

int nhv_partition_pause_timed(struct nhv_partition *p, int timeout_ms)
{
	int rc;

	pthread_mutex_lock(&p->ctl_lock);
	rc = partition_pause_timed(p, timeout_ms < 0 ? 0 : timeout_ms);
	pthread_mutex_unlock(&p->ctl_lock);
	return rc;
}

static int partition_resume(struct nhv_partition *p)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	if (p->state != NHV_PART_PAUSED) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	set_state_locked(p, NHV_PART_RUNNING);
	pthread_mutex_unlock(&p->lock);
	rc = vtx_vm_resume(p->vm);
	return rc;
}

static int partition_stop(struct nhv_partition *p)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	if (state_final(p->state)) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	pthread_mutex_unlock(&p->lock);
	rc = interrupt_vcpus(p, vtx_vm_stop, -1);
	pthread_mutex_lock(&p->lock);
	if (!state_final(p->state)) {
		snprintf(p->reason, sizeof(p->reason), "stopped by the host");
		set_state_locked(p, NHV_PART_STOPPED);
	}
	p->halted = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Control calls hold ctl_lock throughout, so a pause cannot interleave with
 * a resume, nor a stop with a start, between their state check and their
 * vtx call. */
#define CONTROL_CALL(fn)                                \
	int nhv_partition_##fn(struct nhv_partition *p) \
	{                                               \
		int rc_;                                \
                                                        \
		pthread_mutex_lock(&p->ctl_lock);       \
		rc_ = partition_##fn(p);                \
		pthread_mutex_unlock(&p->ctl_lock);     \
		return rc_;                             \
	}
CONTROL_CALL(start)
CONTROL_CALL(pause)
CONTROL_CALL(resume)
CONTROL_CALL(stop)

int nhv_partition_wait(struct nhv_partition *p, int timeout_ms)
{
	struct timespec until;
	int rc = 0, st;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->lock);
	while (!(state_final(p->state) && p->halted) && rc != ETIMEDOUT) {
		if (timeout_ms < 0)
			pthread_cond_wait(&p->cond, &p->lock);
		else
			rc = pthread_cond_timedwait(&p->cond, &p->lock, &until);
	}
	st = state_final(p->state) && p->halted ? (int)p->state : -ETIMEDOUT;
	pthread_mutex_unlock(&p->lock);
	return st;
}

enum nhv_part_state nhv_partition_state(struct nhv_partition *p)
{
	enum nhv_part_state st;

	pthread_mutex_lock(&p->lock);
	st = p->state;
	pthread_mutex_unlock(&p->lock);
	return st;
}

int nhv_partition_exit_status(struct nhv_partition *p)
{
	int s;

	pthread_mutex_lock(&p->lock);
	s = p->exit_status;
	pthread_mutex_unlock(&p->lock);
	return s;
}

void nhv_partition_reason(struct nhv_partition *p, char *buf, size_t len)
{
	pthread_mutex_lock(&p->lock);
	snprintf(buf, len, "%s", p->reason);
	pthread_mutex_unlock(&p->lock);
}

void nhv_partition_signal(struct nhv_partition *p, int vp)
{
	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < p->nvcpus; i++)
		if (vp < 0 || (uint32_t)vp == i)
			p->vps[i].event = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void *nhv_partition_ram(struct nhv_partition *p, uint64_t *bytes)
{
	if (bytes)
		*bytes = p->ram_bytes;
	return p->ram;
}

int nhv_partition_doorbell_add(struct nhv_partition *p, uint32_t conn_id, int *fd)
{
	struct vtx_ioevent_spec spec = {
		.space = VTX_SPACE_PIO,
		.addr = FAB_DOORBELL_PORT,
		.len = 4,
		.datamatch = true,
		.data = conn_id,
		.fd = -1,
	};
	struct vtx_ioevent *ev;
	int rc = vtx_ioevent_add(p->vm, &spec, &ev);

	if (!rc)
		*fd = vtx_ioevent_fd(ev);
	return rc;
}

int nhv_partition_ram_fd(struct nhv_partition *p)
{
	return vtx_vm_ram_fd(p->vm);
}

void nhv_partition_stats(struct nhv_partition *p, struct nhv_partition_stats *out)
{
	out->hypercalls = atomic_load(&p->n_hypercalls);
	out->waits = atomic_load(&p->n_waits);
	out->console_bytes = atomic_load(&p->n_console);
	out->unhandled_io = atomic_load(&p->n_unhandled_io);
}

void nhv_partition_destroy(struct nhv_partition *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->ctl_lock);
	partition_stop(p);
	pthread_mutex_unlock(&p->ctl_lock);
	if (p->monitor_started) {
		pthread_mutex_lock(&p->lock);
		p->monitor_quit = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->monitor, NULL);
	}
	/* No vCPU may be inside the VMBus host while it is freed: a partition
	 * ended by its guest can still have running vCPUs if the monitor has
	 * not stopped them yet. vtx_vm_stop is idempotent. Channel workers go
	 * before the doorbells and RAM they use. */
	vtx_vm_stop(p->vm);
	nhv_vmbus_free(p);
	vtx_vm_destroy(p->vm);
	nhv_synic_free(p);
	free(p->host_dirty_mem);
	if (p->console_fd >= 0)
		close(p->console_fd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->synic_lock);
	pthread_mutex_destroy(&p->ctl_lock);
	pthread_mutex_destroy(&p->console_lock);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
