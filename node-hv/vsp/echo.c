// SPDX-License-Identifier: MIT
/*
 * Echo devices, for benchmarks and tests of the channel machinery itself:
 *  - echo: every in-band packet comes back as a completion with the same
 *    payload (a request/response round trip through both rings);
 *  - ping: every doorbell is answered by an event, with no ring traffic
 *    (the signalling floor under the echo round trip).
 * Interface type GUIDs are the fabric's own (not Hyper-V devices).
 */
#include <errno.h>
#include <stdlib.h>

#include "echo.h"
#include "fab/vmbus_ic.h"
#include "vsp.h"

static void echo_packet(struct nhv_chan *ch, const struct vmbus_pkt_view *pkt)
{
	if (pkt->type != VM_PKT_DATA_INBAND) {
		nhv_chan_fail(ch, "echo takes in-band packets only");
		return;
	}
	nhv_chan_send_completion(ch, pkt->trans_id, pkt->payload, pkt->payload_len);
}

static void ping_wake(struct nhv_chan *ch)
{
	nhv_chan_signal_guest(ch);
}

static void ping_packet(struct nhv_chan *ch, const struct vmbus_pkt_view *pkt)
{
	nhv_chan_fail(ch, "ping takes no packets");
}

const struct nhv_vsp_ops nhv_echo_ops = {
	.name = "echo",
	.type_guid = FAB_ECHO_GUID_BYTES,
	.packet = echo_packet,
};

static const struct nhv_vsp_ops ping_ops = {
	.name = "ping",
	.type_guid = FAB_PING_GUID_BYTES,
	.wake = ping_wake,
	.packet = ping_packet,
};

int nhv_echo_attach(struct nhv_partition *p)
{
	struct nhv_chan *ch;
	int rc = nhv_vsp_attach(p, &nhv_echo_ops, NULL, &ch);

	return rc ? rc : nhv_vsp_attach(p, &ping_ops, NULL, &ch);
}
