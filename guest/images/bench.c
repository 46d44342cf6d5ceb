// SPDX-License-Identifier: MIT
/*
 * bench: the guest half of bench/partition. Each mode repeats one kind of
 * guest-to-host transition n times and prints the reference time it took:
 *   first                 one console write, then exit (time to first hypercall)
 *   exit N                writes to an unclaimed port: an empty exit to the host
 *   hypercall N           HvCallGetVpRegisters(VP_INDEX): a full hypercall
 *   nullcall N            an unknown call code: the hypercall path alone
 *   doorbell N CONN       doorbell writes matched by an ioeventfd (no exit)
 * Output: "bench: <mode> n=<N> ref_100ns=<T>".
 */
#include "fab/guest.h"

#define UNCLAIMED_PORT 0xe0

static void out8(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "first";
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 0) : 1;
	uint32_t conn = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 1;
	uint64_t t0, t1, v;

	if (!strcmp(mode, "first")) {
		fab_console_write("F", 1);
		return 0;
	}
	t0 = fab_ref_time();
	if (!strcmp(mode, "exit")) {
		for (unsigned long i = 0; i < n; i++)
			out8(UNCLAIMED_PORT, 0);
	} else if (!strcmp(mode, "hypercall")) {
		for (unsigned long i = 0; i < n; i++)
			if (fab_get_vp_register(HV_REGISTER_VP_INDEX, &v))
				fab_panic("GetVpRegisters failed");
	} else if (!strcmp(mode, "nullcall")) {
		for (unsigned long i = 0; i < n; i++)
			fab_hypercall(0x7777, 0, 0);
	} else if (!strcmp(mode, "doorbell")) {
		for (unsigned long i = 0; i < n; i++)
			fab_signal_doorbell(conn);
	} else {
		printf("bench: unknown mode '%s'\n", mode);
		return 2;
	}
	t1 = fab_ref_time();
	printf("bench: %s n=%lu ref_100ns=%llu\n", mode, n, (unsigned long long)(t1 - t0));
	return 0;
}
