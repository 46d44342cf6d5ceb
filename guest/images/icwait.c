// SPDX-License-Identifier: MIT
/*
 * icwait: connects to VMBus, opens the heartbeat and shutdown integration
 * components, prints "icwait: ready" and then only answers them, until the
 * host asks for a shutdown: "icwait: shutdown", exit 0. Lets the host test
 * heartbeat and shutdown without a disk.
 *
 * Exit status: 0 after a shutdown request, 1 if VMBus or the ICs cannot be
 * set up.
 */
#include "fab/vmbus_guest.h"

#define IDLE_SLICE VMBUS_GUEST_MS(1000)

int main(int argc, char **argv)
{
	struct vmbus_guest_ic_stats st;
	int rc;

	rc = vmbus_guest_init(VMBUS_GUEST_TIMEOUT);
	if (rc) {
		printf("icwait: VMBus connect failed: %d\n", rc);
		return 1;
	}
	printf("icwait: VMBus version %u.%u\n", VMBUS_VERSION_MAJOR(vmbus_guest_version()),
	       VMBUS_VERSION_MINOR(vmbus_guest_version()));
	rc = vmbus_guest_ic_open(VMBUS_GUEST_TIMEOUT);
	if (rc < 0) {
		printf("icwait: cannot open the integration components: %d\n", rc);
		return 1;
	}
	printf("icwait: %d IC channel%s open\n", rc, rc == 1 ? "" : "s");
	printf("icwait: ready\n");
	while (!vmbus_shutdown_requested())
		vmbus_guest_idle(IDLE_SLICE);
	vmbus_guest_ic_get_stats(&st);
	printf("icwait: shutdown flags=%u heartbeats_answered=%llu\n", st.shutdown_flags,
	       (unsigned long long)st.heartbeats);
	printf("icwait: shutdown\n");
	return 0;
}
