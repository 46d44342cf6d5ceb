/* SPDX-License-Identifier: MIT */
/* Echo and ping devices (benchmarks, tests). */
#ifndef NHV_ECHO_H
#define NHV_ECHO_H

struct nhv_partition;

/* Offers one echo and one ping channel. */
int nhv_echo_attach(struct nhv_partition *p);

#endif
