/* SPDX-License-Identifier: MIT */
/* The storage VSP on VMBus (host side). */
#ifndef NHV_STORAGE_H
#define NHV_STORAGE_H

#include <stdbool.h>

#include "storvsp.h"

struct nhv_partition;
struct nhv_vsp_ops;
struct storage_dev;

/* The storage VSP's callbacks (a device is a struct storage_dev). */
extern const struct nhv_vsp_ops nhv_storage_ops;

/* A disk device on the raw image at path, not yet on any channel: for
 * nhv_vsp_attach or a shadow channel, which then own it. Returns 0 or a
 * negative errno. */
int nhv_storage_new(const char *path, bool read_only, struct storage_dev **out);

/* Offers a SCSI disk backed by the raw image at path (its size a multiple
 * of 512 bytes). The device belongs to the partition afterwards. Returns 0
 * or a negative errno (the image cannot be opened, ...). */
int nhv_storage_attach(struct nhv_partition *p, const char *path, bool read_only,
		       struct storage_dev **out);
void nhv_storage_stats(struct storage_dev *d, struct storvsp_stats *out);

#endif
