// SPDX-License-Identifier: MIT
/*
 * vmbus_bench: the guest half of bench/vmbus. Both modes spin (no WAIT
 * hypercall), so they time the channel path itself:
 *   echo N SIZE   N in-band requests of SIZE bytes to the echo device, each
 *                 waiting for its completion (request/response round trip)
 *   ping N        N doorbells to the ping device, each waiting for the event
 *                 it answers with (the signalling floor)
 * Output: "vmbus_bench: <mode> n=<N> ref_100ns=<T>".
 */
#include <errno.h>

#include "fab/guest.h"
#include "fab/vmbus_guest.h"
#include "fab/vmbus_ic.h"

static const struct vmbus_client_chan *find(const uint8_t guid[16])
{
	const struct vmbus_client_chan *off = NULL;
	struct vmbus_guid g;

	memcpy(g.b, guid, 16);
	if (vmbus_guest_find_offer(&g, 0, &off))
		return NULL;
	return off;
}

static int echo(unsigned long n, uint32_t size)
{
	static const uint8_t guid[16] = FAB_ECHO_GUID_BYTES;
	static uint8_t req[4096], pkt[4096 + 64];
	const struct vmbus_client_chan *off = find(guid);
	struct vmbus_guest_chan *ch;
	uint64_t t0, t1;
	size_t len;

	if (!off || size > sizeof(req) || vmbus_guest_chan_open(off->relid, NULL, &ch)) {
		printf("vmbus_bench: no echo channel\n");
		return 2;
	}
	for (uint32_t i = 0; i < size; i++)
		req[i] = (uint8_t)i;
	t0 = fab_ref_time();
	for (unsigned long i = 0; i < n; i++) {
		int rc;

		if (vmbus_guest_send_inband(ch, i + 1, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
					    req, size, VMBUS_GUEST_TIMEOUT)) {
			printf("vmbus_bench: send failed at %lu\n", i);
			return 1;
		}
		while ((rc = vmbus_guest_recv(ch, pkt, sizeof(pkt), &len)) == -EAGAIN)
			;
		if (rc) {
			printf("vmbus_bench: receive failed at %lu (%d)\n", i, rc);
			return 1;
		}
	}
	t1 = fab_ref_time();
	printf("vmbus_bench: echo n=%lu size=%u ref_100ns=%llu\n", n, size,
	       (unsigned long long)(t1 - t0));
	return 0;
}

static int ping(unsigned long n)
{
	static const uint8_t guid[16] = FAB_PING_GUID_BYTES;
	const struct vmbus_client_chan *off = find(guid);
	struct vmbus_guest_chan *ch;
	volatile uint64_t *word;
	uint64_t t0, t1, siefp, bit;

	if (!off || vmbus_guest_chan_open(off->relid, NULL, &ch) ||
	    fab_get_vp_register(HV_REGISTER_SIEFP, &siefp)) {
		printf("vmbus_bench: no ping channel\n");
		return 2;
	}
	/* Spin on the channel's own event bit (SIEFP slot 2), as the echo
	 * mode spins on its ring: both time the path, not the library. */
	word = (volatile uint64_t *)(uintptr_t)((siefp & ~0xfffull) + 2 * 256 +
						(off->relid / 64) * 8);
	bit = 1ull << (off->relid % 64);
	vmbus_guest_poll();
	__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST);
	t0 = fab_ref_time();
	for (unsigned long i = 0; i < n; i++) {
		vmbus_guest_chan_signal(ch);
		while (!(__atomic_load_n(word, __ATOMIC_ACQUIRE) & bit))
			;
		__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST);
	}
	t1 = fab_ref_time();
	printf("vmbus_bench: ping n=%lu ref_100ns=%llu\n", n, (unsigned long long)(t1 - t0));
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "echo";
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 0) : 1000;

	if (vmbus_guest_init(VMBUS_GUEST_TIMEOUT)) {
		printf("vmbus_bench: VMBus did not come up\n");
		return 2;
	}
	if (!strcmp(mode, "echo"))
		return echo(n, argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 0) : 512);
	if (!strcmp(mode, "ping"))
		return ping(n);
	printf("vmbus_bench: unknown mode '%s'\n", mode);
	return 2;
}
