/* SPDX-License-Identifier: MIT */
/* Heartbeat and shutdown integration components (host side). */
#ifndef NHV_IC_H
#define NHV_IC_H

#include <stdbool.h>
#include <stdint.h>

struct nhv_partition;
struct ic_dev;

/* Offers the heartbeat and shutdown channels; the devices belong to the
 * partition afterwards (freed with it). */
int nhv_ic_attach(struct nhv_partition *p, struct ic_dev **hb, struct ic_dev **sd);
/* Answers received and ms since the last one (-1: none yet). Thread: any. */
void nhv_ic_heartbeat_status(struct ic_dev *hb, uint64_t *beats, int64_t *age_ms);
/* Sends a shutdown request. -ENOTCONN if the guest has not opened and
 * negotiated the channel. Thread: any. */
int nhv_ic_request_shutdown(struct ic_dev *sd, bool force);

#endif
