/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of the guest VMBus library. */
#ifndef FAB_VMBUS_GUEST_INT_H
#define FAB_VMBUS_GUEST_INT_H

/* ic_guest.c: the IC channels are gone (vmbus_guest_unload freed every
 * channel); forget them so that vmbus_guest_ic_open can open them again. */
void vmbus_guest__ic_forget(void);

#endif
