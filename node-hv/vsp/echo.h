/* SPDX-License-Identifier: MIT */
/* Echo and ping devices (benchmarks, tests). */
#ifndef NHV_ECHO_H
#define NHV_ECHO_H

struct nhv_partition;

struct nhv_vsp_ops;

/* The echo device's callbacks (no device data). */
extern const struct nhv_vsp_ops nhv_echo_ops;

/* Offers one echo and one ping channel. */
int nhv_echo_attach(struct nhv_partition *p);

#endif
