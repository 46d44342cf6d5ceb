// SPDX-License-Identifier: MIT
/*
 * Unit tests of node-hv/vtx against the real /dev/kvm. Guests are a few
 * bytes of 16-bit real-mode code at GPA 0x1000: under nested KVM such code
 * is emulated and slow, so every guest here is tiny. Without /dev/kvm every
 * test says so loudly on stderr and is skipped, never passed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fab/log.h"
#include "fab/vtx.h"

#define MIB	      (1024ull * 1024)
#define RAM_SIZE      (2 * MIB)
#define CODE_GPA      0x1000
#define WAIT_MS	      30000 /* generous: real-mode code is emulated under nested KVM */
#define STOP_HLT      100
#define STOP_IO	      101
#define STOP_SHUTDOWN 102
#define STOP_INTERNAL 103

static bool have_kvm;
static char no_kvm_why[128];

#define REQUIRE_KVM()                                                                         \
	do {                                                                                  \
		if (!have_kvm) {                                                              \
			fprintf(stderr,                                                       \
				"*** SKIPPING %s: /dev/kvm cannot be opened (%s); this test " \
				"needs KVM and was NOT run ***\n",                            \
				__func__, no_kvm_why);                                        \
			skip();                                                               \
		}                                                                             \
	} while (0)

/* ---- a tiny guest and what its exits recorded --------------------------- */

struct io_rec {
	uint16_t port;
	uint8_t size;
	bool is_write;
	uint32_t val;
};

struct mmio_rec {
	uint64_t addr;
	uint32_t len;
	bool is_write;
	uint64_t val;
};

struct guest {
	struct vtx_vm *vm;
	struct vtx_vcpu *vcpu;
	/* Written by the vCPU thread, read after it is joined. */
	struct io_rec io[16];
	int nio;
	struct mmio_rec mmio[8];
	int nmmio;
	int nhlt, nshutdown, nstopped;
	int stop_port;	  /* an OUT to this port stops the vCPU; -1: none */
	uint8_t in_val;	  /* what IN reads */
	uint8_t mmio_val; /* what MMIO reads return */
	bool probe;	  /* on the first I/O exit, try calls from the vCPU thread */
	int probe_regs_rc, probe_pause_rc, probe_stop_rc;
	uint64_t probe_rax;
	/* An I/O exit to port 0x10 blocks while block_io is set; in_io says
	 * the vCPU thread got there. */
	bool block_io, in_io;
};

static int io_cb(struct vtx_vcpu *vcpu, struct vtx_io_exit *io, void *opaque)
{
	struct guest *g = opaque;
	struct io_rec *rec = &g->io[g->nio < 16 ? g->nio : 15];
	struct vtx_regs regs;

	if (io->port == 0x10 && __atomic_load_n(&g->block_io, __ATOMIC_SEQ_CST)) {
		__atomic_store_n(&g->in_io, true, __ATOMIC_SEQ_CST);
		while (__atomic_load_n(&g->block_io, __ATOMIC_SEQ_CST))
			usleep(1000);
	}
	if (g->probe) {
		g->probe = false;
		g->probe_regs_rc = vtx_vcpu_get_regs(vcpu, &regs);
		g->probe_rax = regs.rax;
		g->probe_pause_rc = vtx_vm_pause(vtx_vcpu_vm(vcpu));
		g->probe_stop_rc = vtx_vcpu_stop(vcpu, NULL);
	}
	if (!io->is_write)
		memset(io->data, g->in_val, (size_t)io->size * io->count);
	rec->port = io->port;
	rec->size = io->size;
	rec->is_write = io->is_write;
	rec->val = 0;
	memcpy(&rec->val, io->data, io->size);
	g->nio++;
	if (io->is_write && io->port == g->stop_port)
		return STOP_IO;
	return VTX_RUN_CONTINUE;
}

static int mmio_cb(struct vtx_vcpu *vcpu, struct vtx_mmio_exit *mmio, void *opaque)
{
	struct guest *g = opaque;
	struct mmio_rec *rec = &g->mmio[g->nmmio < 8 ? g->nmmio : 7];

	if (!mmio->is_write)
		memset(mmio->data, g->mmio_val, mmio->len);
	rec->addr = mmio->addr;
	rec->len = mmio->len;
	rec->is_write = mmio->is_write;
	rec->val = 0;
	memcpy(&rec->val, mmio->data, mmio->len);
	g->nmmio++;
	return VTX_RUN_CONTINUE;
}

static int hlt_cb(struct vtx_vcpu *vcpu, void *opaque)
{
	struct guest *g = opaque;

	g->nhlt++;
	return STOP_HLT;
}

static int shutdown_cb(struct vtx_vcpu *vcpu, void *opaque)
{
	struct guest *g = opaque;

	g->nshutdown++;
	return STOP_SHUTDOWN;
}

static void stopped_cb(struct vtx_vcpu *vcpu, const struct vtx_stop_info *info, void *opaque)
{
	struct guest *g = opaque;

	/* atomic: the vCPUs of one guest share it */
	__atomic_fetch_add(&g->nstopped, 1, __ATOMIC_SEQ_CST);
}

/* Says what went wrong when a test guest does something KVM cannot run. */
static int internal_cb(struct vtx_vcpu *vcpu, const struct vtx_internal_error_exit *e, void *opaque)
{
	fprintf(stderr, "test_vtx: internal error, suberror %u ndata %u:", e->suberror, e->ndata);
	for (uint32_t i = 0; i < e->ndata; i++)
		fprintf(stderr, " %#llx", (unsigned long long)e->data[i]);
	fprintf(stderr, "\n");
	return STOP_INTERNAL;
}

static const struct vtx_vcpu_ops guest_ops = {
	.internal_error = internal_cb,
	.io = io_cb,
	.mmio = mmio_cb,
	.hlt = hlt_cb,
	.shutdown = shutdown_cb,
	.stopped = stopped_cb,
};

/* Real mode with every segment based at 0, so GPA == offset. */
static void set_real_mode(struct vtx_vcpu *vcpu, uint64_t rip)
{
	struct vtx_sregs s;
	struct vtx_regs r = { .rip = rip, .rflags = 0x2, .rsp = 0x8000 };
	struct vtx_segment *segs[] = { &s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss };

	assert_int_equal(vtx_vcpu_get_sregs(vcpu, &s), 0);
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		segs[i]->base = 0;
		segs[i]->selector = 0;
	}
	assert_int_equal(vtx_vcpu_set_sregs(vcpu, &s), 0);
	assert_int_equal(vtx_vcpu_set_regs(vcpu, &r), 0);
}

static void guest_init(struct guest *g, uint32_t vm_flags, const struct vtx_vcpu_ops *ops,
		       const uint8_t *code, size_t len)
{
	struct vtx_vm_config cfg = { .ram_size = RAM_SIZE, .flags = vm_flags, .name = "test-vtx" };

	memset(g, 0, sizeof(*g));
	g->stop_port = -1;
	assert_int_equal(vtx_vm_create(&cfg, &g->vm), 0);
	memcpy((uint8_t *)vtx_vm_ram(g->vm) + CODE_GPA, code, len);
	assert_int_equal(vtx_vcpu_create(g->vm, 0, ops ? ops : &guest_ops, g, &g->vcpu), 0);
	set_real_mode(g->vcpu, CODE_GPA);
}

static void guest_run(struct guest *g, struct vtx_stop_info *info)
{
	assert_int_equal(vtx_vcpu_start(g->vcpu), 0);
	assert_int_equal(vtx_vcpu_wait(g->vcpu, WAIT_MS, info), 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- tests -------------------------------------------------------------- */

static void test_create_destroy(void **state)
{
	struct vtx_vm_config cfg = { .ram_size = RAM_SIZE };
	struct vtx_vm *vm;
	struct stat st;
	uint8_t *ram;
	int fd, seals;

	REQUIRE_KVM();
	assert_int_equal(vtx_vm_create(&cfg, &vm), 0);
	assert_int_equal(vtx_vm_ram_size(vm), RAM_SIZE);
	assert_false(vtx_vm_has_irqchip(vm));
	fd = vtx_vm_ram_fd(vm);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, RAM_SIZE);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals & F_SEAL_SHRINK);
	assert_true(seals & F_SEAL_GROW);
	assert_int_equal(ftruncate(fd, 4096), -1); /* a receiver cannot shrink it */
	ram = vtx_vm_ram(vm);
	assert_non_null(ram);
	assert_int_equal(ram[0], 0);
	assert_int_equal(ram[RAM_SIZE - 1], 0);
	ram[RAM_SIZE - 1] = 0x5a;
	assert_int_equal(pread(fd, &ram[0], 1, RAM_SIZE - 1), 1); /* same memory via the fd */
	assert_int_equal(ram[0], 0x5a);
	vtx_vm_destroy(vm);
	vtx_vm_destroy(NULL);

	cfg.ram_size = 0;
	assert_int_equal(vtx_vm_create(&cfg, &vm), -EINVAL);
	assert_null(vm);
	cfg.ram_size = RAM_SIZE + 1;
	assert_int_equal(vtx_vm_create(&cfg, &vm), -EINVAL);
	cfg.ram_size = 4096 * MIB; /* slot 0 would cover the reserved TSS pages */
	assert_int_equal(vtx_vm_create(&cfg, &vm), -EINVAL);
	cfg.ram_size = RAM_SIZE;
	cfg.reserved_gpa = 0x1234;
	assert_int_equal(vtx_vm_create(&cfg, &vm), -EINVAL);
}

static void test_gpa_to_hva(void **state)
{
	struct vtx_vm_config cfg = { .ram_size = RAM_SIZE };
	const size_t host_len = 64 * 1024;
	const uint64_t host_gpa = 0x100000000ull; /* 4 GiB */
	struct vtx_vm *vm;
	uint8_t *ram, *host;
	uint32_t s_host, s_next, s;
	void *p;

	REQUIRE_KVM();
	assert_int_equal(vtx_vm_create(&cfg, &vm), 0);
	ram = vtx_vm_ram(vm);

	assert_int_equal(vtx_gpa_to_hva(vm, 0x1000, 16, &p), 0);
	assert_ptr_equal(p, ram + 0x1000);
	assert_int_equal(vtx_gpa_to_hva(vm, 0, RAM_SIZE, &p), 0);
	assert_ptr_equal(p, ram);
	assert_int_equal(vtx_gpa_to_hva(vm, RAM_SIZE - 16, 16, &p),
			 0); /* ends exactly at the end */
	assert_ptr_equal(p, ram + RAM_SIZE - 16);
	assert_int_equal(vtx_gpa_to_hva(vm, 0x2000, 0, &p), 0);
	/* straddling the end of RAM */
	assert_int_equal(vtx_gpa_to_hva(vm, RAM_SIZE - 8, 16, &p), -EFAULT);
	assert_null(p);
	assert_int_equal(vtx_gpa_to_hva(vm, RAM_SIZE, 0, &p), -EFAULT);
	assert_int_equal(vtx_gpa_to_hva(vm, RAM_SIZE, 1, &p), -EFAULT);
	/* lengths and addresses that overflow gpa + len */
	assert_int_equal(vtx_gpa_to_hva(vm, 0x1000, UINT64_MAX, &p), -EFAULT);
	assert_int_equal(vtx_gpa_to_hva(vm, 0x1000, UINT64_MAX - 0xfff, &p), -EFAULT);
	assert_int_equal(vtx_gpa_to_hva(vm, UINT64_MAX - 1, 4, &p), -EFAULT);
	assert_int_equal(vtx_gpa_to_hva(vm, UINT64_MAX, 1, &p), -EFAULT);

	/* a second slot backed by caller memory, and one adjacent to it */
	host = mmap(NULL, 2 * host_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(host != MAP_FAILED);
	assert_int_equal(vtx_slot_add_host(vm, host_gpa, host, host_len, 0, &s_host), 0);
	assert_int_not_equal(s_host, 0);
	assert_int_equal(vtx_slot_add_host(vm, host_gpa + host_len, host + host_len, host_len,
					   VTX_SLOT_READONLY, &s_next),
			 0);
	assert_int_equal(vtx_gpa_to_hva(vm, host_gpa + 8, 8, &p), 0);
	assert_ptr_equal(p, host + 8);
	assert_int_equal(vtx_gpa_to_hva(vm, host_gpa + host_len + 8, 8, &p), 0);
	assert_ptr_equal(p, host + host_len + 8);
	/* contiguous in GPA but two slots: refused */
	assert_int_equal(vtx_gpa_to_hva(vm, host_gpa + host_len - 8, 16, &p), -EFAULT);

	/* overlaps and bad arguments */
	assert_int_equal(vtx_slot_add_host(vm, host_gpa, host, 4096, 0, &s), -EEXIST);
	assert_int_equal(vtx_slot_add_ram(vm, 0x1000, 0, 4096, 0, &s), -EEXIST);
	assert_int_equal(vtx_slot_add_ram(vm, VTX_RESERVED_DEFAULT_GPA, 0, 4096, 0, &s), -EEXIST);
	assert_int_equal(vtx_slot_add_ram(vm, 8 * MIB, 0, RAM_SIZE + 4096, 0, &s), -EINVAL);
	assert_int_equal(vtx_slot_add_ram(vm, 8 * MIB, RAM_SIZE, 4096, 0, &s), -EINVAL);
	assert_int_equal(vtx_slot_add_ram(vm, 8 * MIB + 1, 0, 4096, 0, &s), -EINVAL);
	assert_int_equal(vtx_slot_add_host(vm, UINT64_MAX - 4095, host, 8192, 0, &s), -EINVAL);
	/* the same RAM aliased at a second GPA */
	assert_int_equal(vtx_slot_add_ram(vm, 8 * MIB, 4096, 4096, 0, &s), 0);
	assert_int_equal(vtx_gpa_to_hva(vm, 8 * MIB + 4, 4, &p), 0);
	assert_ptr_equal(p, ram + 4096 + 4);
	assert_int_equal(vtx_slot_remove(vm, s), 0);
	assert_int_equal(vtx_gpa_to_hva(vm, 8 * MIB + 4, 4, &p), -EFAULT);

	assert_int_equal(vtx_slot_remove(vm, s_host), 0);
	assert_int_equal(vtx_slot_remove(vm, s_host), -ENOENT);
	assert_int_equal(vtx_gpa_to_hva(vm, host_gpa + 8, 8, &p), -EFAULT);
	assert_int_equal(vtx_slot_remove(vm, VTX_MAX_SLOTS), -ENOENT);
	vtx_vm_destroy(vm); /* removes s_next */
	munmap(host, 2 * host_len);
}

static void test_real_mode_io_hlt(void **state)
{
	static const uint8_t code[] = {
		0xb0, 0x42, /* mov al, 0x42 */
		0xe6, 0x10, /* out 0x10, al */
		0xe4, 0x11, /* in al, 0x11 */
		0xe6, 0x12, /* out 0x12, al */
		0xf4,	    /* hlt */
	};
	struct vtx_stop_info info;
	struct vtx_regs regs;
	struct guest g;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	g.in_val = 0x5a;
	g.probe = true;
	guest_run(&g, &info);

	assert_int_equal(g.nio, 3);
	assert_int_equal(g.io[0].port, 0x10);
	assert_int_equal(g.io[0].size, 1);
	assert_true(g.io[0].is_write);
	assert_int_equal(g.io[0].val, 0x42);
	assert_int_equal(g.io[1].port, 0x11);
	assert_false(g.io[1].is_write);
	assert_int_equal(g.io[2].port, 0x12);
	assert_int_equal(g.io[2].val, 0x5a); /* the IN saw what the callback filled in */
	assert_int_equal(g.nhlt, 1);
	assert_int_equal(g.nstopped, 1);
	assert_int_equal(info.kind, VTX_STOP_CALLBACK);
	assert_int_equal(info.exit, VTX_EXIT_HLT);
	assert_int_equal(info.code, STOP_HLT);

	/* From its own thread a vCPU reads its registers, and lifecycle
	 * calls that would wait for vCPU threads are refused. */
	assert_int_equal(g.probe_regs_rc, 0);
	assert_int_equal(g.probe_rax & 0xff, 0x42);
	assert_int_equal(g.probe_pause_rc, -EDEADLK);
	assert_int_equal(g.probe_stop_rc, -EDEADLK);

	assert_int_equal(vtx_vcpu_get_regs(g.vcpu, &regs), 0);
	assert_int_equal(regs.rip, CODE_GPA + sizeof(code));
	assert_int_equal(regs.rax & 0xff, 0x5a);
	vtx_vm_destroy(g.vm);
}

static void test_cpuid_apic_id(void **state)
{
	static const uint8_t code[] = {
		0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, /* mov eax, 1 */
		0x0f, 0xa2,			    /* cpuid */
		0x66, 0xc1, 0xeb, 0x18,		    /* shr ebx, 24: initial APIC ID */
		0x88, 0xd8,			    /* mov al, bl */
		0xe6, 0x10,			    /* out 0x10, al */
		0xf4,				    /* hlt */
	};
	struct vtx_stop_info info;
	struct vtx_vcpu *v3;
	struct guest g;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_create(g.vm, 3, &guest_ops, &g, &v3), 0);
	assert_int_equal(vtx_vcpu_id(v3), 3);
	assert_ptr_equal(vtx_vcpu_vm(v3), g.vm);
	set_real_mode(v3, CODE_GPA);
	assert_int_equal(vtx_vcpu_start(v3), 0);
	assert_int_equal(vtx_vcpu_wait(v3, WAIT_MS, &info), 0);
	assert_int_equal(info.code, STOP_HLT);
	assert_int_equal(g.nio, 1);
	assert_int_equal(g.io[0].val, 3);
	vtx_vm_destroy(g.vm);
}

static void test_exit_without_callback(void **state)
{
	static const uint8_t code[] = { 0xf4 }; /* hlt */
	static const struct vtx_vcpu_ops no_hlt = { .io = io_cb, .stopped = stopped_cb };
	struct vtx_stop_info info;
	struct guest g;

	REQUIRE_KVM();
	guest_init(&g, 0, &no_hlt, code, sizeof(code));
	guest_run(&g, &info);
	assert_int_equal(info.kind, VTX_STOP_UNHANDLED);
	assert_int_equal(info.exit, VTX_EXIT_HLT);
	assert_int_equal(g.nstopped, 1);
	vtx_vm_destroy(g.vm);
}

static void test_triple_fault(void **state)
{
	static const uint8_t code[] = { 0x0f, 0x0b }; /* ud2 */
	struct vtx_segment code32 = { .limit = 0xffffffff,
				      .selector = 0x8,
				      .type = 0xb,
				      .present = 1,
				      .db = 1,
				      .s = 1,
				      .g = 1 };
	struct vtx_segment data32 = code32;
	struct vtx_stop_info info;
	struct vtx_sregs s;
	struct guest g;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	/* Flat 32-bit protected mode with an empty IDT: #UD cannot be
	 * delivered (#GP), nor can that (#DF): shutdown. Real mode would not
	 * do: KVM's real-mode interrupt emulation ignores the IDT limit. */
	assert_int_equal(vtx_vcpu_get_sregs(g.vcpu, &s), 0);
	data32.selector = 0x10;
	data32.type = 0x3;
	s.cs = code32;
	s.ds = s.es = s.fs = s.gs = s.ss = data32;
	s.cr0 |= 1; /* PE */
	s.idt.base = 0;
	s.idt.limit = 0;
	assert_int_equal(vtx_vcpu_set_sregs(g.vcpu, &s), 0);
	guest_run(&g, &info);
	assert_int_equal(g.nshutdown, 1);
	assert_int_equal(info.kind, VTX_STOP_CALLBACK);
	assert_int_equal(info.exit, VTX_EXIT_SHUTDOWN);
	assert_int_equal(info.code, STOP_SHUTDOWN);
	vtx_vm_destroy(g.vm);
}

static void test_ioeventfd_datamatch(void **state)
{
	static const uint8_t code[] = {
		0xba, 0x20, 0x00, /* mov dx, 0x20 */
		0xb0, 0x07,	  /* mov al, 7 */
		0xee,		  /* out dx, al: matches, eventfd only */
		0xb0, 0x08,	  /* mov al, 8 */
		0xee,		  /* out dx, al: no match, exits */
		0xf4,		  /* hlt */
	};
	struct vtx_ioevent_spec spec = { .space = VTX_SPACE_PIO,
					 .addr = 0x20,
					 .len = 1,
					 .datamatch = true,
					 .data = 7,
					 .fd = -1 };
	struct vtx_ioevent *ev, *bad;
	struct vtx_stop_info info;
	struct guest g;
	struct pollfd pfd = { .events = POLLIN };
	uint64_t count = 0;
	int efd;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_ioevent_add(g.vm, &spec, &ev), 0);
	efd = vtx_ioevent_fd(ev);
	assert_true(efd >= 0);
	pfd.fd = efd;
	assert_int_equal(read(efd, &count, sizeof(count)), -1); /* non-blocking, nothing yet */
	assert_int_equal(errno, EAGAIN);

	spec.len = 3;
	assert_int_equal(vtx_ioevent_add(g.vm, &spec, &bad), -EINVAL);
	spec.len = 0; /* any-length is MMIO only */
	assert_int_equal(vtx_ioevent_add(g.vm, &spec, &bad), -EINVAL);

	guest_run(&g, &info);
	assert_int_equal(info.kind, VTX_STOP_CALLBACK);
	assert_int_equal(info.code, STOP_HLT);
	assert_int_equal(poll(&pfd, 1, 0), 1);
	assert_true(pfd.revents & POLLIN);
	assert_int_equal(read(efd, &count, sizeof(count)), sizeof(count));
	assert_int_equal(count, 1);
	/* only the non-matching write reached userspace */
	assert_int_equal(g.nio, 1);
	assert_int_equal(g.io[0].port, 0x20);
	assert_int_equal(g.io[0].val, 8);

	assert_int_equal(vtx_ioevent_del(g.vm, ev), 0);
	vtx_vm_destroy(g.vm);
}

static void test_mmio_and_mmio_ioeventfd(void **state)
{
	static const uint8_t code[] = {
		0xb8, 0x00, 0x20,	      /* mov ax, 0x2000 */
		0x8e, 0xd8,		      /* mov ds, ax: ds base 0x20000, no slot */
		0xc6, 0x06, 0x00, 0x00, 0x99, /* mov byte [0], 0x99: eventfd only */
		0xc6, 0x06, 0x00, 0x00, 0x98, /* mov byte [0], 0x98: MMIO exit */
		0xa0, 0x01, 0x00,	      /* mov al, [1]: MMIO read exit */
		0xe6, 0x10,		      /* out 0x10, al */
		0xf4,			      /* hlt */
	};
	struct vtx_ioevent_spec spec = {
		.space = VTX_SPACE_MMIO, .addr = 0x20000, .len = 1, .datamatch = true, .data = 0x99
	};
	struct vtx_ioevent *ev;
	struct vtx_stop_info info;
	struct guest g;
	uint32_t slot;
	uint64_t count = 0;

	REQUIRE_KVM();
	guest_init(&g, VTX_VM_NO_RAM_SLOT, NULL, code, sizeof(code));
	/* only the first 64 KiB of RAM is guest-visible */
	assert_int_equal(vtx_slot_add_ram(g.vm, 0, 0, 64 * 1024, 0, &slot), 0);
	spec.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* the caller's own eventfd */
	assert_true(spec.fd >= 0);
	assert_int_equal(vtx_ioevent_add(g.vm, &spec, &ev), 0);
	assert_int_equal(vtx_ioevent_fd(ev), spec.fd);
	g.mmio_val = 0x5a;
	guest_run(&g, &info);

	assert_int_equal(info.kind, VTX_STOP_CALLBACK);
	assert_int_equal(info.code, STOP_HLT);
	assert_int_equal(read(spec.fd, &count, sizeof(count)), sizeof(count));
	assert_int_equal(count, 1);
	assert_int_equal(g.nmmio, 2);
	assert_int_equal(g.mmio[0].addr, 0x20000);
	assert_true(g.mmio[0].is_write);
	assert_int_equal(g.mmio[0].len, 1);
	assert_int_equal(g.mmio[0].val, 0x98);
	assert_int_equal(g.mmio[1].addr, 0x20001);
	assert_false(g.mmio[1].is_write);
	assert_int_equal(g.nio, 1);
	assert_int_equal(g.io[0].val, 0x5a);

	assert_int_equal(vtx_ioevent_del(g.vm, ev), 0);
	vtx_vm_destroy(g.vm);
	/* vtx must have left the caller's eventfd open */
	assert_int_equal(fcntl(spec.fd, F_GETFD) >= 0, 1);
	close(spec.fd);
}

static bool bit_set(const uint64_t *bm, size_t page)
{
	return (bm[page / 64] >> (page % 64)) & 1;
}

static void test_dirty_log(void **state)
{
	static const uint8_t code[] = {
		0xc6, 0x06, 0x00, 0x50, 0x55, /* mov byte [0x5000], 0x55 */
		0xf4,			      /* hlt */
	};
	struct vtx_stop_info info;
	struct guest g;
	uint64_t *bm;
	size_t bytes;
	uint8_t *ram;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	ram = vtx_vm_ram(g.vm);
	assert_int_equal(vtx_dirty_log_bitmap_size(g.vm, 0, &bytes), 0);
	assert_int_equal(bytes, RAM_SIZE / 4096 / 8);
	bm = calloc(1, bytes);
	assert_non_null(bm);
	assert_int_equal(vtx_dirty_log_fetch(g.vm, 0, bm, bytes), -EINVAL); /* not enabled */
	assert_int_equal(vtx_dirty_log_enable(g.vm, 0, true), 0);
	assert_int_equal(vtx_dirty_log_clear(g.vm, 0), 0);
	assert_int_equal(vtx_dirty_log_fetch(g.vm, 0, bm, bytes - 8), -EINVAL); /* too small */
	assert_int_equal(vtx_dirty_log_enable(g.vm, 7, true), -ENOENT);

	ram[0x7000] = 1; /* host writes are not logged */
	guest_run(&g, &info);
	assert_int_equal(info.code, STOP_HLT);
	assert_int_equal(ram[0x5000], 0x55);
	assert_int_equal(vtx_dirty_log_fetch(g.vm, 0, bm, bytes), 0);
	assert_true(bit_set(bm, 5));
	assert_false(bit_set(bm, 7));
	assert_false(bit_set(bm, 0x100));
	/* the fetch cleared it */
	assert_int_equal(vtx_dirty_log_fetch(g.vm, 0, bm, bytes), 0);
	assert_false(bit_set(bm, 5));

	assert_int_equal(vtx_dirty_log_enable(g.vm, 0, false), 0);
	assert_int_equal(vtx_dirty_log_fetch(g.vm, 0, bm, bytes), -EINVAL);
	free(bm);
	vtx_vm_destroy(g.vm);
}

static uint32_t read_counter(struct guest *g)
{
	return __atomic_load_n((uint32_t *)((uint8_t *)vtx_vm_ram(g->vm) + 0x2000),
			       __ATOMIC_SEQ_CST);
}

/* Polls until the guest's counter passes old; false after 10 s. */
static bool counter_moves(struct guest *g, uint32_t old)
{
	for (int i = 0; i < 1000; i++) {
		if (read_counter(g) != old)
			return true;
		usleep(10000);
	}
	return false;
}

static void test_pause_resume(void **state)
{
	static const uint8_t code[] = {
		0x66, 0xff, 0x06, 0x00, 0x20, /* inc dword [0x2000] */
		0xeb, 0xf9,		      /* jmp back to the inc */
	};
	struct vtx_stop_info info;
	struct vtx_regs regs;
	struct guest g;
	uint64_t t0, dt;
	uint32_t c1;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_start(g.vcpu), 0);
	assert_int_equal(vtx_vcpu_start(g.vcpu), -EBUSY);
	assert_true(counter_moves(&g, 0));
	/* a running vCPU's registers are not reachable from here */
	assert_int_equal(vtx_vcpu_get_regs(g.vcpu, &regs), -EBUSY);

	t0 = now_ns();
	assert_int_equal(vtx_vm_pause(g.vm), 0);
	dt = now_ns() - t0;
	fprintf(stderr, "test_vtx: pause of a spinning vCPU took %.3f ms\n", dt / 1e6);
	assert_true(dt < 2000000000ull);
	assert_int_equal(vtx_vm_pause(g.vm), 0); /* already paused */
	c1 = read_counter(&g);
	usleep(100000);
	assert_int_equal(read_counter(&g), c1); /* really parked */
	assert_int_equal(vtx_vcpu_get_regs(g.vcpu, &regs), 0);
	assert_true(regs.rip == CODE_GPA || regs.rip == CODE_GPA + 5);

	assert_int_equal(vtx_vm_resume(g.vm), 0);
	assert_true(counter_moves(&g, c1));

	/* per-vCPU pause, then a stop of a running vCPU */
	assert_int_equal(vtx_vcpu_pause(g.vcpu), 0);
	c1 = read_counter(&g);
	assert_int_equal(vtx_vcpu_resume(g.vcpu), 0);
	assert_true(counter_moves(&g, c1));
	t0 = now_ns();
	assert_int_equal(vtx_vcpu_stop(g.vcpu, &info), 0);
	assert_true(now_ns() - t0 < 2000000000ull);
	assert_int_equal(info.kind, VTX_STOP_REQUESTED);
	assert_int_equal(g.nstopped, 1);

	/* a stopped vCPU starts again where it was */
	c1 = read_counter(&g);
	assert_int_equal(vtx_vm_start(g.vm), 0);
	assert_true(counter_moves(&g, c1));
	/* a stop of a paused vCPU works too */
	assert_int_equal(vtx_vm_pause(g.vm), 0);
	assert_int_equal(vtx_vm_stop(g.vm), 0);
	assert_int_equal(vtx_vcpu_wait(g.vcpu, 0, &info), 0);
	assert_int_equal(info.kind, VTX_STOP_REQUESTED);
	assert_int_equal(g.nstopped, 2);
	vtx_vm_destroy(g.vm);
}

/* A vCPU held up in a callback cannot park: the timed pause gives up and
 * leaves it running; once it is free, the pause works. */
static void test_pause_timed(void **state)
{
	static const uint8_t code[] = {
		0xe6, 0x10,		      /* out 0x10, al (blocks in the callback) */
		0x66, 0xff, 0x06, 0x00, 0x20, /* inc dword [0x2000] */
		0xeb, 0xf9,		      /* jmp back to the inc */
	};
	struct guest g;
	uint64_t t0, dt;
	uint32_t c1;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	g.block_io = true;
	assert_int_equal(vtx_vcpu_start(g.vcpu), 0);
	for (int i = 0; i < 3000 && !__atomic_load_n(&g.in_io, __ATOMIC_SEQ_CST); i++)
		usleep(10000);
	assert_true(g.in_io);
	t0 = now_ns();
	assert_int_equal(vtx_vm_pause_timed(g.vm, 200), -ETIMEDOUT);
	dt = now_ns() - t0;
	assert_true(dt >= 150000000ull && dt < 5000000000ull);
	/* Not left half paused: freed, it runs on by itself. */
	__atomic_store_n(&g.block_io, false, __ATOMIC_SEQ_CST);
	assert_true(counter_moves(&g, 0));
	assert_int_equal(vtx_vm_pause_timed(g.vm, 5000), 0);
	c1 = read_counter(&g);
	usleep(100000);
	assert_int_equal(read_counter(&g), c1);
	assert_int_equal(vtx_vm_resume(g.vm), 0);
	assert_true(counter_moves(&g, c1));
	vtx_vm_destroy(g.vm);
}

static void test_pause_jmp_self(void **state)
{
	static const uint8_t code[] = { 0xeb, 0xfe }; /* jmp $ */
	struct vtx_stop_info info;
	struct vtx_regs regs;
	struct guest g;
	uint64_t t0;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_start(g.vcpu), 0);
	assert_int_equal(vtx_vcpu_wait(g.vcpu, 50, &info), -ETIMEDOUT); /* it spins */
	for (int i = 0; i < 3; i++) {
		t0 = now_ns();
		assert_int_equal(vtx_vm_pause(g.vm), 0);
		assert_true(now_ns() - t0 < 2000000000ull);
		assert_int_equal(vtx_vcpu_get_regs(g.vcpu, &regs), 0);
		assert_int_equal(regs.rip, CODE_GPA);
		assert_int_equal(vtx_vm_resume(g.vm), 0);
		usleep(10000);
	}
	assert_int_equal(vtx_vm_pause(g.vm), 0);
	vtx_vm_destroy(g.vm); /* stops and joins the paused vCPU */
}

static uint32_t counter_at(struct vtx_vm *vm, uint64_t gpa)
{
	return __atomic_load_n((uint32_t *)((uint8_t *)vtx_vm_ram(vm) + gpa), __ATOMIC_SEQ_CST);
}

static void test_pause_two_vcpus(void **state)
{
	static const uint8_t code[] = {
		0x66, 0xff, 0x06, 0x00, 0x20, /* vCPU 0 at 0x1000: inc dword [0x2000] */
		0xeb, 0xf9,		      /* jmp back */
	};
	static const uint8_t code1[] = {
		0x66, 0xff, 0x06, 0x04, 0x20, /* vCPU 1 at 0x1100: inc dword [0x2004] */
		0xeb, 0xf9,		      /* jmp back */
	};
	struct vtx_vcpu *v1, *dup;
	uint32_t c0, c1;
	struct guest g;

	REQUIRE_KVM();
	guest_init(&g, 0, NULL, code, sizeof(code));
	memcpy((uint8_t *)vtx_vm_ram(g.vm) + 0x1100, code1, sizeof(code1));
	assert_int_equal(vtx_vcpu_create(g.vm, 1, &guest_ops, &g, &v1), 0);
	assert_int_equal(vtx_vcpu_create(g.vm, 1, &guest_ops, &g, &dup), -EEXIST);
	assert_null(dup);
	set_real_mode(v1, 0x1100);
	assert_int_equal(vtx_vm_start(g.vm), 0);

	/* rapid pause/resume: nothing may be lost or hang */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(vtx_vm_pause(g.vm), 0);
		assert_int_equal(vtx_vm_resume(g.vm), 0);
	}
	for (int i = 0; i < 5; i++) {
		assert_int_equal(vtx_vm_pause(g.vm), 0);
		c0 = counter_at(g.vm, 0x2000);
		c1 = counter_at(g.vm, 0x2004);
		usleep(20000);
		assert_int_equal(counter_at(g.vm, 0x2000), c0);
		assert_int_equal(counter_at(g.vm, 0x2004), c1);
		assert_int_equal(vtx_vm_resume(g.vm), 0);
		assert_true(counter_moves(&g, c0));
		for (int j = 0; j < 1000 && counter_at(g.vm, 0x2004) == c1; j++)
			usleep(10000);
		assert_int_not_equal(counter_at(g.vm, 0x2004), c1);
	}
	assert_int_equal(vtx_vm_stop(g.vm), 0);
	assert_int_equal(g.nstopped, 2);
	vtx_vm_destroy(g.vm);
}

static void expect_same_regs(const struct vtx_regs *a, const struct vtx_regs *b)
{
	assert_memory_equal(a, b, sizeof(*a));
}

static void expect_same_sregs(const struct vtx_sregs *a, const struct vtx_sregs *b)
{
	const struct vtx_segment *sa[] = { &a->cs, &a->ds, &a->es, &a->fs,
					   &a->gs, &a->ss, &a->tr, &a->ldt };
	const struct vtx_segment *sb[] = { &b->cs, &b->ds, &b->es, &b->fs,
					   &b->gs, &b->ss, &b->tr, &b->ldt };

	for (int i = 0; i < 8; i++) {
		assert_int_equal(sa[i]->base, sb[i]->base);
		assert_int_equal(sa[i]->limit, sb[i]->limit);
		assert_int_equal(sa[i]->selector, sb[i]->selector);
		assert_int_equal(sa[i]->type, sb[i]->type);
		assert_int_equal(sa[i]->present, sb[i]->present);
		assert_int_equal(sa[i]->dpl, sb[i]->dpl);
		assert_int_equal(sa[i]->db, sb[i]->db);
		assert_int_equal(sa[i]->s, sb[i]->s);
		assert_int_equal(sa[i]->l, sb[i]->l);
		assert_int_equal(sa[i]->g, sb[i]->g);
	}
	assert_int_equal(a->gdt.base, b->gdt.base);
	assert_int_equal(a->gdt.limit, b->gdt.limit);
	assert_int_equal(a->idt.base, b->idt.base);
	assert_int_equal(a->idt.limit, b->idt.limit);
	assert_int_equal(a->cr0, b->cr0);
	assert_int_equal(a->cr2, b->cr2);
	assert_int_equal(a->cr3, b->cr3);
	assert_int_equal(a->cr4, b->cr4);
	assert_int_equal(a->cr8, b->cr8);
	assert_int_equal(a->efer, b->efer);
	assert_int_equal(a->apic_base, b->apic_base);
	assert_memory_equal(a->interrupt_bitmap, b->interrupt_bitmap, sizeof(a->interrupt_bitmap));
}

static const struct vtx_msr *find_msr(const struct vtx_vcpu_state *st, uint32_t index)
{
	for (uint32_t i = 0; i < st->nr_msrs; i++)
		if (st->msrs[i].index == index)
			return &st->msrs[i];
	return NULL;
}

static void test_state_save_restore(void **state)
{
	static const uint8_t code[] = {
		0xb8, 0x34, 0x12, /* mov ax, 0x1234 */
		0xbb, 0x78, 0x56, /* mov bx, 0x5678 */
		0xe6, 0x10,	  /* out 0x10, al: the callback stops the vCPU here */
		0xe6, 0x11,	  /* out 0x11, al (runs on the second VM) */
		0x88, 0xd8,	  /* mov al, bl */
		0xe6, 0x12,	  /* out 0x12, al */
		0xf4,		  /* hlt */
	};
	struct vtx_vcpu_state *sa, *sb;
	struct vtx_stop_info info;
	struct vtx_regs regs;
	struct vtx_sregs sregs;
	struct guest a, b;

	REQUIRE_KVM();
	sa = malloc(sizeof(*sa));
	sb = malloc(sizeof(*sb));
	assert_non_null(sa);
	assert_non_null(sb);

	guest_init(&a, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_get_regs(a.vcpu, &regs), 0);
	regs.rcx = 0xdeadbeefcafef00dull;
	regs.r15 = 0x1122334455667788ull;
	assert_int_equal(vtx_vcpu_set_regs(a.vcpu, &regs), 0);
	a.stop_port = 0x10;
	guest_run(&a, &info);
	assert_int_equal(info.kind, VTX_STOP_CALLBACK);
	assert_int_equal(info.code, STOP_IO);
	assert_int_equal(vtx_vcpu_save_state(a.vcpu, sa), 0);
	/* stopping settled the OUT: RIP is past it */
	assert_int_equal(sa->regs.rip, CODE_GPA + 8);
	assert_int_equal(sa->regs.rax & 0xffff, 0x1234);
	assert_int_equal(sa->regs.rcx, 0xdeadbeefcafef00dull);
	assert_int_equal(sa->magic, VTX_STATE_MAGIC);
	assert_int_equal(sa->size, sizeof(*sa));
	assert_true(sa->parts & (VTX_STATE_XSAVE | VTX_STATE_FPU));
	assert_false(sa->parts & VTX_STATE_LAPIC);
	assert_non_null(find_msr(sa, 0x10)); /* TSC */
	fprintf(stderr, "test_vtx: state parts %#x, xsave %u bytes, %u MSRs\n", sa->parts,
		sa->xsave_len, sa->nr_msrs);

	/* a fresh vCPU of another VM with a copy of the RAM */
	guest_init(&b, 0, NULL, code, sizeof(code));
	memcpy(vtx_vm_ram(b.vm), vtx_vm_ram(a.vm), RAM_SIZE);
	assert_int_equal(vtx_vcpu_restore_state(b.vcpu, sa), 0);
	assert_int_equal(vtx_vcpu_get_regs(b.vcpu, &regs), 0);
	expect_same_regs(&regs, &sa->regs);
	assert_int_equal(vtx_vcpu_get_sregs(b.vcpu, &sregs), 0);
	expect_same_sregs(&sregs, &sa->sregs);
	assert_int_equal(vtx_vcpu_save_state(b.vcpu, sb), 0);
	assert_int_equal(sb->parts, sa->parts);
	assert_int_equal(sb->nr_msrs, sa->nr_msrs);
	for (uint32_t i = 0; i < sa->nr_msrs; i++) {
		assert_int_equal(sb->msrs[i].index, sa->msrs[i].index);
		if (sa->msrs[i].index == 0x10) /* the TSC keeps counting */
			assert_true(sb->msrs[i].value >= sa->msrs[i].value);
		else
			assert_int_equal(sb->msrs[i].value, sa->msrs[i].value);
	}
	assert_memory_equal(sb->xcrs, sa->xcrs, sizeof(sa->xcrs));
	assert_memory_equal(sb->events, sa->events, sizeof(sa->events));
	assert_memory_equal(sb->debugregs, sa->debugregs, sizeof(sa->debugregs));

	/* the second VM carries on from the next instruction */
	guest_run(&b, &info);
	assert_int_equal(info.code, STOP_HLT);
	assert_int_equal(b.nio, 2);
	assert_int_equal(b.io[0].port, 0x11);
	assert_int_equal(b.io[0].val, 0x34);
	assert_int_equal(b.io[1].port, 0x12);
	assert_int_equal(b.io[1].val, 0x78);
	assert_int_equal(vtx_vcpu_get_regs(b.vcpu, &regs), 0);
	assert_int_equal(regs.r15, 0x1122334455667788ull);

	/* damaged blobs are refused before they touch the vCPU */
	memcpy(sb, sa, sizeof(*sa));
	sb->magic ^= 1;
	assert_int_equal(vtx_vcpu_restore_state(b.vcpu, sb), -EINVAL);
	memcpy(sb, sa, sizeof(*sa));
	sb->nr_msrs = VTX_STATE_MAX_MSRS + 1;
	assert_int_equal(vtx_vcpu_restore_state(b.vcpu, sb), -EINVAL);
	memcpy(sb, sa, sizeof(*sa));
	sb->parts |= VTX_STATE_LAPIC; /* b has no irqchip */
	assert_int_equal(vtx_vcpu_restore_state(b.vcpu, sb), -EINVAL);

	vtx_vm_destroy(a.vm);
	vtx_vm_destroy(b.vm);
	free(sa);
	free(sb);
}

static void test_state_with_irqchip(void **state)
{
	static const uint8_t code[] = { 0xf4 };
	struct vtx_vcpu_state *sa, *sb;
	struct vtx_regs regs;
	struct guest a, b, c;

	REQUIRE_KVM();
	sa = malloc(sizeof(*sa));
	sb = malloc(sizeof(*sb));
	assert_non_null(sa);
	assert_non_null(sb);
	guest_init(&a, VTX_VM_IRQCHIP, NULL, code, sizeof(code));
	assert_true(vtx_vm_has_irqchip(a.vm));
	assert_int_equal(vtx_vcpu_get_regs(a.vcpu, &regs), 0);
	regs.rdx = 0xabcdef;
	assert_int_equal(vtx_vcpu_set_regs(a.vcpu, &regs), 0);
	assert_int_equal(vtx_vcpu_save_state(a.vcpu, sa), 0);
	assert_true(sa->parts & VTX_STATE_LAPIC);

	guest_init(&b, VTX_VM_IRQCHIP, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_restore_state(b.vcpu, sa), 0);
	assert_int_equal(vtx_vcpu_save_state(b.vcpu, sb), 0);
	assert_int_equal(sb->regs.rdx, 0xabcdef);
	assert_int_equal(sb->mp_state, sa->mp_state);
	/* APIC ID and base survive; the rest of the page includes live timer
	 * counts, so compare the ID register only (offset 0x20). */
	assert_memory_equal(sb->lapic + 0x20, sa->lapic + 0x20, 4);

	guest_init(&c, 0, NULL, code, sizeof(code));
	assert_int_equal(vtx_vcpu_restore_state(c.vcpu, sa), -EINVAL);
	vtx_vm_destroy(a.vm);
	vtx_vm_destroy(b.vm);
	vtx_vm_destroy(c.vm);
	free(sa);
	free(sb);
}

static int count_entries(const char *dir)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Everything a VM can own: RAM, a second slot, a vCPU with its thread, an
 * ioeventfd with a vtx-created eventfd. */
static void one_cycle(void)
{
	static const struct vtx_vcpu_ops no_ops = { 0 };
	struct vtx_vm_config cfg = { .ram_size = RAM_SIZE };
	struct vtx_ioevent_spec spec = { .space = VTX_SPACE_PIO, .addr = 0x30, .len = 2, .fd = -1 };
	struct vtx_ioevent *ev;
	struct vtx_vcpu *vcpu;
	struct vtx_vm *vm;
	uint32_t slot;

	assert_int_equal(vtx_vm_create(&cfg, &vm), 0);
	assert_int_equal(vtx_slot_add_ram(vm, 16 * MIB, 0, 4096, 0, &slot), 0);
	assert_int_equal(vtx_ioevent_add(vm, &spec, &ev), 0);
	assert_int_equal(vtx_vm_pause(vm), 0); /* the vCPU thread starts parked */
	assert_int_equal(vtx_vcpu_create(vm, 0, &no_ops, NULL, &vcpu), 0);
	assert_int_equal(vtx_vcpu_start(vcpu), 0);
	vtx_vm_destroy(vm);
}

static void test_no_leaks(void **state)
{
	int fds, maps, tasks;

	REQUIRE_KVM();
	one_cycle(); /* let libc cache a thread stack and the like */
	fds = count_entries("/proc/self/fd");
	maps = count_lines("/proc/self/maps");
	tasks = count_entries("/proc/self/task");
	for (int i = 0; i < 200; i++)
		one_cycle();
	assert_int_equal(count_entries("/proc/self/fd"), fds);
	/* Not exact: sanitizer and malloc arenas map memory as they please.
	 * A leak would add at least one mapping per cycle (RAM or kvm_run). */
	assert_true(count_lines("/proc/self/maps") < maps + 200 / 2);
	assert_int_equal(count_entries("/proc/self/task"), tasks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_destroy),
		cmocka_unit_test(test_gpa_to_hva),
		cmocka_unit_test(test_real_mode_io_hlt),
		cmocka_unit_test(test_cpuid_apic_id),
		cmocka_unit_test(test_exit_without_callback),
		cmocka_unit_test(test_triple_fault),
		cmocka_unit_test(test_ioeventfd_datamatch),
		cmocka_unit_test(test_mmio_and_mmio_ioeventfd),
		cmocka_unit_test(test_dirty_log),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_pause_jmp_self),
		cmocka_unit_test(test_pause_timed),
		cmocka_unit_test(test_pause_two_vcpus),
		cmocka_unit_test(test_state_save_restore),
		cmocka_unit_test(test_state_with_irqchip),
		cmocka_unit_test(test_no_leaks),
	};
	int fd;

	fab_log_init("test_vtx", FAB_LOG_WARN);
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		have_kvm = true;
		close(fd);
	} else {
		snprintf(no_kvm_why, sizeof(no_kvm_why), "%s", strerror(errno));
		fprintf(stderr,
			"*** test_vtx: /dev/kvm cannot be opened (%s): EVERY TEST IS "
			"SKIPPED, nothing about vtx was verified ***\n",
			no_kvm_why);
		return 77; /* ctest: SKIP_RETURN_CODE */
	}
	/* VTX_ONLY=test_pause_timed runs one test (cmocka's pattern): under
	 * TCG the whole file is too slow. */
	if (getenv("VTX_ONLY"))
		cmocka_set_test_filter(getenv("VTX_ONLY"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
