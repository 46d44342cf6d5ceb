/* SPDX-License-Identifier: MIT */
/*
 * <string.h> for guest code: the subset the guest runtime (lib/string.c)
 * implements, with the declarations of fab/guest.h. It exists so that
 * freestanding code shared with the host (fabric/rvmbus) can include
 * <string.h> without reaching glibc's header. Nothing else is provided.
 */
#ifndef FAB_SHIM_STRING_H
#define FAB_SHIM_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

#endif
