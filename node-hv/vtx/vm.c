// SPDX-License-Identifier: MIT
/* VM: /dev/kvm, guest RAM memfd, memory slots, dirty logging, ioeventfds. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fab/log.h"
#include "vtx_int.h"

#define KVM_API_VERSION_REQUIRED 12
#define KICK_SIGNAL_OFFSET	 4

/* MSRs a vCPU state blob carries; see vtx_vcpu_state.nr_msrs. */
static const uint32_t state_msrs[] = {
	0xc0000080, /* EFER */
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000100, /* FS_BASE */
	0xc0000101, /* GS_BASE */
	0x00000010, /* TSC */
	0x00000174, /* SYSENTER_CS */
	0x00000175, /* SYSENTER_ESP */
	0x00000176, /* SYSENTER_EIP */
	0x00000277, /* PAT */
};
_Static_assert(sizeof(state_msrs) / sizeof(state_msrs[0]) <= VTX_STATE_MAX_MSRS, "msrs");

int vtx_sys_err(const char *what)
{
	int err = errno ? errno : EIO;
	char buf[128];

	fab_err("vtx: %s: %s", what, strerror_r(err, buf, sizeof(buf)));
	return -err;
}

/* ---- kick signal -------------------------------------------------------- */

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static int kick_err;

static void kick_handler(int sig)
{
	/* Nothing to do: the signal's only job is to make KVM_RUN return. */
	(void)sig;
}

static void kick_install(void)
{
	int sig = vtx_kick_signal();
	struct sigaction sa, old;

	if (sigaction(sig, NULL, &old) < 0) {
		kick_err = vtx_sys_err("sigaction(kick signal)");
		return;
	}
	/* SIG_IGN would make the kernel drop our kicks, so take it over; a
	 * real handler belongs to someone else and we must not steal it. */
	if ((old.sa_flags & SA_SIGINFO) ||
	    (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
		fab_err("vtx: signal %d (SIGRTMIN+%d) already has a handler", sig,
			KICK_SIGNAL_OFFSET);
		kick_err = -EBUSY;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/*
	 * SA_RESTART is safe and wanted: KVM_RUN returns a plain -EINTR when a
	 * signal is pending (never -ERESTARTSYS), so it is not restarted and
	 * the run loop sees the kick; meanwhile a blocking syscall inside an
	 * exit callback that a kick interrupts is restarted instead of failing
	 * with EINTR.
	 */
	sa.sa_flags = SA_RESTART;
	if (sigaction(sig, &sa, NULL) < 0)
		kick_err = vtx_sys_err("sigaction(kick signal)");
}

int vtx_kick_signal(void)
{
	return SIGRTMIN + KICK_SIGNAL_OFFSET;
}

int vtx_kick_setup(void)
{
	pthread_once(&kick_once, kick_install);
	return kick_err;
}

/* ---- VM ----------------------------------------------------------------- */

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	/* Callers guarantee a + alen and b + blen do not overflow. */
	return a < b + blen && b < a + alen;
}

static int vm_check_cap(struct vtx_vm *vm, int cap, const char *name)
{
	int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);

	if (r <= 0) {
		fab_err("vtx: KVM lacks %s", name);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int vm_get_cpuid(struct vtx_vm *vm)
{
	/* KVM reports the number of entries it needs only by failing with
	 * E2BIG, so grow until it fits. */
	for (uint32_t n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c;

		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return vtx_sys_err("KVM_GET_SUPPORTED_CPUID");
	}
	fab_err("vtx: KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
	return -E2BIG;
}

/* Keeps the state MSRs this KVM can save and restore. */
static int vm_get_msrs(struct vtx_vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	int r = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return vtx_sys_err("KVM_GET_MSR_INDEX_LIST");
	list = calloc(1, sizeof(*list) + (probe.nmsrs + 1) * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs + 1;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		r = vtx_sys_err("KVM_GET_MSR_INDEX_LIST");
		goto out;
	}
	for (size_t i = 0; i < sizeof(state_msrs) / sizeof(state_msrs[0]); i++) {
		bool found = false;

		for (uint32_t j = 0; j < list->nmsrs && !found; j++)
			found = list->indices[j] == state_msrs[i];
		if (found)
			vm->msrs[vm->nr_msrs++] = state_msrs[i];
		else
			fab_debug("vtx: MSR %#x not saved by this KVM", state_msrs[i]);
	}
out:
	free(list);
	return r;
}

static int vm_open(struct vtx_vm *vm, const struct vtx_vm_config *cfg)
{
	uint64_t ident = vm->reserved_gpa;
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return vtx_sys_err("open /dev/kvm");
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION_REQUIRED) {
		fab_err("vtx: KVM API version %d, need %d", r, KVM_API_VERSION_REQUIRED);
		return -EPROTO;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vtx_sys_err("KVM_CREATE_VM");

	/* immediate_exit closes the race between checking for a pause and
	 * entering KVM_RUN; without it pausing would need signal masks. */
	r = vm_check_cap(vm, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT");
	if (!r)
		r = vm_check_cap(vm, KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD");
	if (!r)
		r = vm_check_cap(vm, KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR");
	if (r)
		return r;

	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0)
		return vtx_sys_err("KVM_GET_VCPU_MMAP_SIZE");
	if ((size_t)r < sizeof(struct kvm_run)) {
		fab_err("vtx: KVM_GET_VCPU_MMAP_SIZE %d is below sizeof(struct kvm_run)", r);
		return -EPROTO;
	}
	vm->run_size = (size_t)r;

	/* Both must precede vCPU creation; VT-x uses them for unpaged guest
	 * modes, AMD ignores them. */
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return vtx_sys_err("KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)(vm->reserved_gpa + VTX_PAGE_SIZE)) <
	    0)
		return vtx_sys_err("KVM_SET_TSS_ADDR");

	if ((cfg->flags & VTX_VM_IRQCHIP)) {
		if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
			return vtx_sys_err("KVM_CREATE_IRQCHIP");
		vm->irqchip = true;
	}

	r = vm_get_cpuid(vm);
	if (!r)
		r = vm_get_msrs(vm);
	return r;
}

static int vm_make_ram(struct vtx_vm *vm, const char *name)
{
	void *p;

	vm->ram_fd = memfd_create(name ? name : "vtx-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (vm->ram_fd < 0)
		return vtx_sys_err("memfd_create");
	if (ftruncate(vm->ram_fd, (off_t)vm->ram_size) < 0)
		return vtx_sys_err("ftruncate(guest RAM)");
	/* The fd goes to other processes (VSPs, migration): forbid shrinking,
	 * which would turn our accesses and KVM's into SIGBUS/EFAULT, and
	 * further seals, such as one that would refuse their writable maps. */
	if (fcntl(vm->ram_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return vtx_sys_err("F_ADD_SEALS(guest RAM)");
	p = mmap(NULL, vm->ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->ram_fd, 0);
	if (p == MAP_FAILED)
		return vtx_sys_err("mmap(guest RAM)");
	vm->ram = p;
	return 0;
}

int vtx_vm_create(const struct vtx_vm_config *cfg, struct vtx_vm **out)
{
	const uint32_t known = VTX_VM_NO_RAM_SLOT | VTX_VM_IRQCHIP;
	struct vtx_vm *vm;
	uint64_t rsv;
	uint32_t slot;
	int r;

	if (!cfg || !out)
		return -EINVAL;
	*out = NULL;
	rsv = cfg->reserved_gpa ? cfg->reserved_gpa : VTX_RESERVED_DEFAULT_GPA;
	/* KVM_SET_TSS_ADDR takes a 32-bit address on VT-x. */
	if (!cfg->ram_size || cfg->ram_size % VTX_PAGE_SIZE || (cfg->flags & ~known) ||
	    rsv % VTX_PAGE_SIZE || rsv > (1ull << 32) - VTX_RESERVED_SIZE)
		return -EINVAL;
	if (!(cfg->flags & VTX_VM_NO_RAM_SLOT) &&
	    (cfg->ram_size > UINT64_MAX - VTX_PAGE_SIZE ||
	     ranges_overlap(0, cfg->ram_size, rsv, VTX_RESERVED_SIZE)))
		return -EINVAL;
	r = vtx_kick_setup();
	if (r)
		return r;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	/* From here on every failure goes through vtx_vm_destroy, which
	 * copes with any prefix of this set-up. */
	vm->kvm_fd = vm->vm_fd = vm->ram_fd = -1;
	vm->mem_lock = (pthread_rwlock_t)PTHREAD_RWLOCK_INITIALIZER;
	vm->ctl_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	vm->ram_size = cfg->ram_size;
	vm->reserved_gpa = rsv;

	r = vm_open(vm, cfg);
	if (!r)
		r = vm_make_ram(vm, cfg->name);
	if (!r && !(cfg->flags & VTX_VM_NO_RAM_SLOT))
		r = vtx_slot_add_ram(vm, 0, 0, vm->ram_size, 0, &slot);
	if (r) {
		vtx_vm_destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}

void vtx_vm_destroy(struct vtx_vm *vm)
{
	struct vtx_ioevent *ev, *next;

	if (!vm)
		return;
	assert(!vtx_on_vcpu_thread_of(vm));
	vtx_vm_stop(vm);
	for (int i = 0; i < VTX_MAX_VCPUS; i++)
		vtx_vcpu_free(vm->vcpus[i]);
	/* Closing the VM fd drops KVM's registrations; only the eventfds we
	 * created are ours to close. */
	for (ev = vm->ioevents; ev; ev = next) {
		next = ev->next;
		if (ev->own_fd)
			close(ev->spec.fd);
		free(ev);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	if (vm->ram_fd >= 0)
		close(vm->ram_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	pthread_rwlock_destroy(&vm->mem_lock);
	pthread_mutex_destroy(&vm->ctl_lock);
	free(vm);
}

int vtx_vm_ram_fd(const struct vtx_vm *vm)
{
	return vm->ram_fd;
}

void *vtx_vm_ram(const struct vtx_vm *vm)
{
	return vm->ram;
}

uint64_t vtx_vm_ram_size(const struct vtx_vm *vm)
{
	return vm->ram_size;
}

bool vtx_vm_has_irqchip(const struct vtx_vm *vm)
{
	return vm->irqchip;
}

/* ---- slots -------------------------------------------------------------- */

static int slot_set(struct vtx_vm *vm, uint32_t id, const struct vtx_slot *s)
{
	struct kvm_userspace_memory_region region = {
		.slot = id,
		.flags = s->kvm_flags,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uintptr_t)s->hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return vtx_sys_err("KVM_SET_USER_MEMORY_REGION");
	return 0;
}

static int slot_add(struct vtx_vm *vm, uint64_t gpa, uint8_t *hva, uint64_t size, uint32_t flags,
		    uint32_t *slot)
{
	struct vtx_slot s = { .used = true, .gpa = gpa, .size = size, .hva = hva };
	uint32_t id = VTX_MAX_SLOTS;
	int r = 0;

	if (!slot || !size || (flags & ~VTX_SLOT_READONLY) || gpa % VTX_PAGE_SIZE ||
	    size % VTX_PAGE_SIZE || (uintptr_t)hva % VTX_PAGE_SIZE || size > UINT64_MAX - gpa)
		return -EINVAL;
	if (flags & VTX_SLOT_READONLY)
		s.kvm_flags |= KVM_MEM_READONLY;

	pthread_rwlock_wrlock(&vm->mem_lock);
	/* Refuse overlaps here rather than rely on KVM: AMD's KVM does not
	 * own the reserved pages, so it would accept a layout VT-x refuses. */
	if (ranges_overlap(gpa, size, vm->reserved_gpa, VTX_RESERVED_SIZE))
		r = -EEXIST;
	for (uint32_t i = 0; i < VTX_MAX_SLOTS && !r; i++) {
		if (!vm->slots[i].used) {
			if (id == VTX_MAX_SLOTS)
				id = i;
		} else if (ranges_overlap(gpa, size, vm->slots[i].gpa, vm->slots[i].size)) {
			r = -EEXIST;
		}
	}
	if (!r && id == VTX_MAX_SLOTS)
		r = -ENOSPC;
	if (!r)
		r = slot_set(vm, id, &s);
	if (!r) {
		vm->slots[id] = s;
		*slot = id;
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

int vtx_slot_add_ram(struct vtx_vm *vm, uint64_t gpa, uint64_t ram_off, uint64_t size,
		     uint32_t flags, uint32_t *slot)
{
	if (ram_off > vm->ram_size || size > vm->ram_size - ram_off)
		return -EINVAL;
	return slot_add(vm, gpa, vm->ram + ram_off, size, flags, slot);
}

int vtx_slot_add_host(struct vtx_vm *vm, uint64_t gpa, void *hva, uint64_t size, uint32_t flags,
		      uint32_t *slot)
{
	if (!hva)
		return -EINVAL;
	return slot_add(vm, gpa, hva, size, flags, slot);
}

int vtx_slot_remove(struct vtx_vm *vm, uint32_t slot)
{
	struct vtx_slot gone;
	int r = -ENOENT;

	pthread_rwlock_wrlock(&vm->mem_lock);
	if (slot < VTX_MAX_SLOTS && vm->slots[slot].used) {
		/* Size 0 deletes the slot in KVM. */
		gone = vm->slots[slot];
		gone.size = 0;
		gone.kvm_flags = 0;
		r = slot_set(vm, slot, &gone);
		if (!r)
			memset(&vm->slots[slot], 0, sizeof(vm->slots[slot]));
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

int vtx_gpa_to_hva(struct vtx_vm *vm, uint64_t gpa, uint64_t len, void **out)
{
	int r = -EFAULT;

	*out = NULL;
	pthread_rwlock_rdlock(&vm->mem_lock);
	for (uint32_t i = 0; i < VTX_MAX_SLOTS; i++) {
		const struct vtx_slot *s = &vm->slots[i];
		uint64_t off = gpa - s->gpa; /* huge when gpa < s->gpa */

		if (!s->used || off >= s->size)
			continue;
		/* Compare against the room left instead of computing gpa + len,
		 * which a guest can make overflow. */
		if (len <= s->size - off) {
			*out = s->hva + off;
			r = 0;
		}
		break; /* slots do not overlap: no other slot holds gpa */
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

/* ---- dirty logging ------------------------------------------------------ */

static size_t bitmap_bytes(uint64_t size)
{
	uint64_t pages = size / VTX_PAGE_SIZE;

	/* KVM copies whole longs. */
	return (size_t)((pages + 63) / 64 * 8);
}

int vtx_dirty_log_enable(struct vtx_vm *vm, uint32_t slot, bool enable)
{
	struct vtx_slot s;
	int r = 0;

	pthread_rwlock_wrlock(&vm->mem_lock);
	if (slot >= VTX_MAX_SLOTS || !vm->slots[slot].used) {
		r = -ENOENT;
		goto out;
	}
	s = vm->slots[slot];
	if (s.kvm_flags & KVM_MEM_READONLY) {
		r = -EINVAL;
		goto out;
	}
	if (enable)
		s.kvm_flags |= KVM_MEM_LOG_DIRTY_PAGES;
	else
		s.kvm_flags &= ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES;
	if (s.kvm_flags == vm->slots[slot].kvm_flags)
		goto out;
	/* Re-setting a slot with only its flags changed keeps its memory
	 * mapped in the guest; KVM just (un)write-protects it. */
	r = slot_set(vm, slot, &s);
	if (!r)
		vm->slots[slot] = s;
out:
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

int vtx_dirty_log_bitmap_size(struct vtx_vm *vm, uint32_t slot, size_t *bytes)
{
	int r = -ENOENT;

	pthread_rwlock_rdlock(&vm->mem_lock);
	if (slot < VTX_MAX_SLOTS && vm->slots[slot].used) {
		*bytes = bitmap_bytes(vm->slots[slot].size);
		r = 0;
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

int vtx_dirty_log_fetch(struct vtx_vm *vm, uint32_t slot, uint64_t *bitmap, size_t bytes)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };
	int r = 0;

	if (!bitmap)
		return -EINVAL;
	pthread_rwlock_rdlock(&vm->mem_lock);
	if (slot >= VTX_MAX_SLOTS || !vm->slots[slot].used)
		r = -ENOENT;
	else if (!(vm->slots[slot].kvm_flags & KVM_MEM_LOG_DIRTY_PAGES) ||
		 bytes < bitmap_bytes(vm->slots[slot].size))
		r = -EINVAL;
	else if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		r = vtx_sys_err("KVM_GET_DIRTY_LOG");
	pthread_rwlock_unlock(&vm->mem_lock);
	return r;
}

int vtx_dirty_log_clear(struct vtx_vm *vm, uint32_t slot)
{
	uint64_t *scratch;
	size_t bytes;
	int r;

	r = vtx_dirty_log_bitmap_size(vm, slot, &bytes);
	if (r)
		return r;
	scratch = malloc(bytes);
	if (!scratch)
		return -ENOMEM;
	/* Fetching clears; a slot resized in between makes the fetch fail
	 * with -EINVAL rather than overrun the buffer. */
	r = vtx_dirty_log_fetch(vm, slot, scratch, bytes);
	free(scratch);
	return r;
}

/* ---- ioeventfd ---------------------------------------------------------- */

static int ioevent_ioctl(struct vtx_vm *vm, const struct vtx_ioevent_spec *spec, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = spec->datamatch ? spec->data : 0,
		.addr = spec->addr,
		.len = spec->len,
		.fd = spec->fd,
	};

	if (spec->space == VTX_SPACE_PIO)
		io.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (spec->datamatch)
		io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (!assign)
		io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return vtx_sys_err(assign ? "KVM_IOEVENTFD" : "KVM_IOEVENTFD(deassign)");
	return 0;
}

int vtx_ioevent_add(struct vtx_vm *vm, const struct vtx_ioevent_spec *spec,
		    struct vtx_ioevent **out)
{
	struct vtx_ioevent *ev;
	uint32_t len;
	int r;

	if (!spec || !out)
		return -EINVAL;
	*out = NULL;
	len = spec->len;
	if (spec->space != VTX_SPACE_PIO && spec->space != VTX_SPACE_MMIO)
		return -EINVAL;
	if (len != 1 && len != 2 && len != 4 && len != 8 &&
	    !(len == 0 && spec->space == VTX_SPACE_MMIO && !spec->datamatch))
		return -EINVAL;
	if (spec->fd < -1)
		return -EINVAL;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->spec = *spec;
	if (spec->fd == -1) {
		ev->spec.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ev->spec.fd < 0) {
			r = vtx_sys_err("eventfd");
			free(ev);
			return r;
		}
		ev->own_fd = true;
	}
	pthread_rwlock_wrlock(&vm->mem_lock);
	r = ioevent_ioctl(vm, &ev->spec, true);
	if (!r) {
		ev->next = vm->ioevents;
		vm->ioevents = ev;
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	if (r) {
		if (ev->own_fd)
			close(ev->spec.fd);
		free(ev);
		return r;
	}
	*out = ev;
	return 0;
}

int vtx_ioevent_fd(const struct vtx_ioevent *ev)
{
	return ev->spec.fd;
}

int vtx_ioevent_del(struct vtx_vm *vm, struct vtx_ioevent *ev)
{
	struct vtx_ioevent **pp;
	int r = -ENOENT;

	pthread_rwlock_wrlock(&vm->mem_lock);
	for (pp = &vm->ioevents; *pp; pp = &(*pp)->next) {
		if (*pp != ev)
			continue;
		r = ioevent_ioctl(vm, &ev->spec, false);
		if (!r)
			*pp = ev->next;
		break;
	}
	pthread_rwlock_unlock(&vm->mem_lock);
	if (r)
		return r;
	if (ev->own_fd)
		close(ev->spec.fd);
	free(ev);
	return 0;
}
