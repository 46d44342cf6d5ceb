// SPDX-License-Identifier: MIT
/*
 * crash [ud2|null|gp|hlt|panic|exit]: ends the partition the bad way, for
 * tests of the host's crash handling. There is no IDT, so every fault
 * escalates to a triple fault that the host reports; "panic" goes through
 * FAB_HVCALL_PANIC and "exit" (status 7) is the well-behaved control case.
 */
#include "fab/guest.h"

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "ud2";

	printf("crash: %s\n", kind);
	if (!strcmp(kind, "ud2")) {
		__asm__ volatile("ud2");
	} else if (!strcmp(kind, "null")) {
		/* Through asm so that gcc cannot see (and trap on) the NULL store. */
		volatile int *p = NULL;

		__asm__ volatile("" : "+r"(p));
		*p = 1; /* page 0 is not mapped: #PF */
	} else if (!strcmp(kind, "gp")) {
		uint64_t cr3;

		__asm__ volatile("mov %%cr3, %0" : "=r"(cr3)); /* privileged at CPL3: #GP */
		(void)cr3;
	} else if (!strcmp(kind, "hlt")) {
		__asm__ volatile("hlt"); /* privileged at CPL3: #GP */
	} else if (!strcmp(kind, "panic")) {
		fab_panic("deliberate panic %d", 42);
	} else if (!strcmp(kind, "exit")) {
		return 7;
	} else {
		printf("crash: usage: crash [ud2|null|gp|hlt|panic|exit]\n");
		return 2;
	}
	printf("crash: %s did not fault\n", kind);
	return 3;
}
