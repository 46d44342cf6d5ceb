// SPDX-License-Identifier: MIT
/* VMBus host of a partition: SynIC messages and events <-> channel manager. */
#include "partition_int.h"

uint16_t nhv_vmbus_post_message(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint32_t type, const void *payload, uint32_t len)
{
	if (!p->vmbus)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return HV_STATUS_INVALID_CONNECTION_ID;
}

uint16_t nhv_vmbus_signal_event(struct nhv_partition *p, uint32_t vp, uint32_t conn_id,
				uint16_t flag)
{
	return HV_STATUS_INVALID_CONNECTION_ID;
}
