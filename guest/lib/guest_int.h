/* SPDX-License-Identifier: MIT */
/* Runtime internals shared between the files of lib/. */
#ifndef FAB_GUEST_INT_H
#define FAB_GUEST_INT_H

#include "fab/guest.h"

/* Where fab_hypercall() calls: the boot info's hypercall_gpa once vCPU 0 has
 * checked it, FAB_HYPERCALL_GPA before (so that an early panic can still
 * reach the host). Lives in .data, never in .bss. */
extern uint64_t fab__hypercall_entry;

/* C half of _start (start.S). */
FAB_NORETURN void fab__start(struct fab_bootinfo *bi, uint64_t vcpu);

/* Heap over [lo, hi); called once by vCPU 0 before main(). */
void fab__heap_init(uintptr_t lo, uintptr_t hi);

/* Linker script symbols. */
extern char __image_start[], __bss_start[], __bss_end[], _end[];

static inline void fab__cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

#endif
