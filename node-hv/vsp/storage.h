/* SPDX-License-Identifier: MIT */
/* The storage VSP on VMBus (host side). */
#ifndef NHV_STORAGE_H
#define NHV_STORAGE_H

#include <stdbool.h>

#include "storvsp.h"

struct nhv_partition;
struct storage_dev;

/* Offers a SCSI disk backed by the raw image at path (its size a multiple
 * of 512 bytes). The device belongs to the partition afterwards. Returns 0
 * or a negative errno (the image cannot be opened, ...). */
int nhv_storage_attach(struct nhv_partition *p, const char *path, bool read_only,
		       struct storage_dev **out);
void nhv_storage_stats(struct storage_dev *d, struct storvsp_stats *out);

#endif
