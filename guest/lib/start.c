// SPDX-License-Identifier: MIT
/*
 * Start-up, the C half of _start: boot info check, .bss, argv, heap, then
 * main() on vCPU 0 and fab_secondary_main() on the others.
 *
 * The boot info comes from the host, which the guest trusts; it is still
 * checked once here, so a host bug shows up as a clear panic instead of a
 * guest scribbling over its own image.
 */
#include "guest_int.h"

/*
 * 0 until vCPU 0 has zeroed .bss and set up everything below; the other
 * vCPUs spin on it. It lives in .data so that zeroing .bss does not race
 * with their reads.
 */
static unsigned int start_ready __attribute__((section(".data")));

uint64_t fab__hypercall_entry = FAB_HYPERCALL_GPA;

static const struct fab_bootinfo *boot_info;
static char *boot_argv[FAB_ARGS_MAX + 1];

const struct fab_bootinfo *fab_bootinfo(void)
{
	return boot_info;
}

/* A vCPU with nothing to do: WAIT returns on every event, so loop. */
static FAB_NORETURN void park(void)
{
	for (;;)
		fab_wait(FAB_WAIT_FOREVER);
}

__attribute__((weak)) void fab_secondary_main(unsigned int vcpu)
{
	park();
}

/* NULL if bi is usable by vCPU vcpu, else what is wrong with it. */
static const char *check_bootinfo(const struct fab_bootinfo *bi, uint64_t vcpu)
{
	uintptr_t args = (uintptr_t)bi->args, args_end = args + FAB_ARGS_BYTES;

	if (bi->magic != FAB_BOOTINFO_MAGIC)
		return "bad magic";
	if (bi->version != FAB_BOOTINFO_VERSION)
		return "unknown version";
	if (bi->nvcpus == 0 || vcpu >= bi->nvcpus)
		return "vCPU index beyond nvcpus";
	if (bi->hypercall_gpa == 0 || bi->hypercall_gpa >= bi->ram_bytes)
		return "hypercall page outside RAM";
	if (bi->free_start < (uintptr_t)_end || bi->free_start > bi->free_end ||
	    bi->free_end > bi->ram_bytes)
		return "free RAM overlaps the image or leaves RAM";
	if (bi->argc > FAB_ARGS_MAX)
		return "too many arguments";
	for (uint32_t i = 0; i < bi->argc; i++) {
		uintptr_t a = bi->argv[i];

		if (a < args || a >= args_end)
			return "argument outside the argument area";
		while (a < args_end && *(const char *)a)
			a++;
		if (a == args_end)
			return "argument not NUL-terminated";
	}
	return NULL;
}

static void zero_bss(void)
{
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	/* The compiler does not know that .bss holds this file's statics:
	 * keep every store to them after the memset. */
	__asm__ volatile("" ::: "memory");
}

void fab__start(struct fab_bootinfo *bi, uint64_t vcpu)
{
	const char *why;

	if (vcpu != 0) {
		while (!__atomic_load_n(&start_ready, __ATOMIC_ACQUIRE))
			fab__cpu_relax();
		if (vcpu >= boot_info->nvcpus)
			fab_panic("vCPU %llu started, boot info has %u", (unsigned long long)vcpu,
				  boot_info->nvcpus);
		fab_secondary_main((unsigned int)vcpu);
		park();
	}

	/* Until this passes, hypercalls (the panic) go to FAB_HYPERCALL_GPA. */
	why = check_bootinfo(bi, vcpu);
	if (why)
		fab_panic("bad boot info: %s", why);
	fab__hypercall_entry = bi->hypercall_gpa;

	zero_bss();
	boot_info = bi;
	for (uint32_t i = 0; i < bi->argc; i++)
		boot_argv[i] = (char *)(uintptr_t)bi->argv[i];
	boot_argv[bi->argc] = NULL;
	fab__heap_init(bi->free_start, bi->free_end);

	__atomic_store_n(&start_ready, 1, __ATOMIC_RELEASE);
	fab_exit(main((int)bi->argc, boot_argv));
}
