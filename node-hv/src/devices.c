// SPDX-License-Identifier: MIT
/* Attaching VMBus devices to partitions (public nodehv API). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "echo.h"
#include "ic.h"
#include "partition_int.h"
#include "storage.h"

int nhv_partition_attach_disk(struct nhv_partition *p, const char *path, bool read_only, char *err,
			      size_t errlen)
{
	int rc = nhv_storage_attach(p, path, read_only, NULL);

	if (rc && err)
		snprintf(err, errlen, "disk %s: %s", path, strerror(-rc));
	return rc;
}

int nhv_partition_attach_ic(struct nhv_partition *p)
{
	if (p->ic_hb)
		return -EEXIST;
	return nhv_ic_attach(p, &p->ic_hb, &p->ic_sd);
}

int nhv_partition_heartbeat(struct nhv_partition *p, uint64_t *beats, int64_t *age_ms)
{
	if (!p->ic_hb)
		return -ENODEV;
	nhv_ic_heartbeat_status(p->ic_hb, beats, age_ms);
	return 0;
}

int nhv_partition_request_shutdown(struct nhv_partition *p)
{
	if (!p->ic_sd)
		return -ENODEV;
	return nhv_ic_request_shutdown(p->ic_sd, false);
}

int nhv_partition_attach_echo(struct nhv_partition *p)
{
	return nhv_echo_attach(p);
}
