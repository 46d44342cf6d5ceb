// SPDX-License-Identifier: MIT
/*
 * waiter: blocks in the WAIT hypercall N times (default 3), printing each
 * wake-up; the host signals it. Tests pause/resume/stop of a vCPU that is
 * blocked in the host, and wake-ups.
 */
#include "fab/guest.h"

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 3;

	printf("waiter: waiting for %lu events\n", n);
	for (unsigned long i = 0; i < n; i++) {
		int st = fab_wait(FAB_WAIT_FOREVER);

		printf("waiter: wake %lu status %#x\n", i, st);
		if (st != HV_STATUS_SUCCESS)
			return 1;
	}
	/* A short timeout with no event must time out. */
	if (fab_wait(10000) != HV_STATUS_TIME_OUT) /* 1 ms */
		return 3;
	printf("waiter: done\n");
	return 0;
}
