/* SPDX-License-Identifier: MIT */
/*
 * Guest SDK runtime: the one header a partition image includes.
 *
 * An image is a freestanding program with a normal `int main(int argc,
 * char **argv)`. The runtime (libfabguest) provides the entry point, the
 * hypercall wrappers of fab/hvabi.h, a small libc subset and a heap.
 *
 * Start-up: every vCPU enters _start with the registers of fab/hvabi.h.
 * vCPU 0 checks the boot info, zeroes .bss, sets up argv and the heap, then
 * releases the other vCPUs and calls main(); main's return value becomes the
 * partition's exit status (FAB_HVCALL_EXIT). The other vCPUs then call
 * fab_secondary_main(), whose default parks them in FAB_HVCALL_WAIT forever.
 * A bad boot info page ends the partition with a panic.
 *
 * Threads: there are no threads, only vCPUs, which run with interrupts off
 * and never preempt one another. Every function here may be called from any
 * vCPU once main() or fab_secondary_main() has been entered, unless it says
 * otherwise. The console has no lock: output of different vCPUs can
 * interleave at FAB_CONSOLE_MAX boundaries and between printf() calls.
 *
 * Addresses: guest physical = guest virtual (identity mapped), so a pointer
 * to guest memory is its GPA.
 *
 * No floating point: images are built with -mgeneral-regs-only.
 */
#ifndef FAB_GUEST_H
#define FAB_GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/hvabi.h"

#define FAB_NORETURN	 __attribute__((noreturn))
#define FAB_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- program entry (provided by the image) ------------------------------- */

/* Runs on vCPU 0. argv[argc] is NULL; the strings live in the boot info page
 * and must not be written. The return value is the exit status (low 8 bits
 * reach the host). */
int main(int argc, char **argv);

/* Runs on every vCPU but 0 once vCPU 0 has started main(). The default (a
 * weak symbol; define your own to replace it) waits forever. If it returns,
 * the vCPU waits forever. */
void fab_secondary_main(unsigned int vcpu);

/* ---- boot info ----------------------------------------------------------- */

/* The boot info page written by the host; valid from main() on. */
const struct fab_bootinfo *fab_bootinfo(void);

/* ---- hypercalls ---------------------------------------------------------- */

/*
 * Hypercall status: the helpers below return HV_RESULT_STATUS of the call, an
 * HV_STATUS_* value; HV_STATUS_SUCCESS is 0. They return the host's answer
 * unchanged (no errno mapping) so callers can tell the cases apart.
 */

/* Raw hypercall: RCX = control, RDX = input (GPA or fast value), R8 = output
 * (GPA or fast value); returns RAX (status and reps completed, see
 * HV_RESULT_STATUS / HV_RESULT_REPS_DONE). Memory-based calls need their
 * parameter blocks 8-byte aligned and within one page. */
uint64_t fab_hypercall(uint64_t control, uint64_t input, uint64_t output);

/* Writes len bytes to the partition console, in FAB_CONSOLE_MAX chunks.
 * Stops at the first failing chunk and returns its status. */
unsigned int fab_console_write(const void *buf, size_t len);

/* Blocks the vCPU until an event is signalled to it (HV_STATUS_SUCCESS) or
 * timeout_100ns has passed (HV_STATUS_TIME_OUT). 0 polls; FAB_WAIT_FOREVER
 * waits without a timeout. */
unsigned int fab_wait(uint64_t timeout_100ns);

/* Ends the partition with status (low 8 bits reported). Never returns. */
FAB_NORETURN void fab_exit(int status);

/* Ends the partition as crashed with the formatted message (up to 511
 * bytes; the host may keep less). Never returns. Usable before main(). */
FAB_NORETURN void fab_panic(const char *fmt, ...) FAB_PRINTF(1, 2);

/* HV_REGISTER_TIME_REF_COUNT: 100 ns units since the partition started;
 * 0 if the host refused the call. */
uint64_t fab_ref_time(void);

/*
 * The same time base (100 ns units) read from the TSC, without an exit:
 * the first call calibrates against fab_ref_time for 10 ms. For timing
 * many short events (latency histograms) where a hypercall per reading
 * would cost more than what is measured.
 */
uint64_t fab_clock_100ns(void);

/* Reads / writes one register of the calling vCPU (HV_REGISTER_*: VP index,
 * reference time, SynIC) with Get/SetVpRegisters. Only the low 64 bits of the
 * 128-bit register value are used. *value is written on success only. */
unsigned int fab_get_vp_register(uint32_t name, uint64_t *value);
unsigned int fab_set_vp_register(uint32_t name, uint64_t value);

/* HvPostMessage to connection_id: message_type (non-zero) and up to
 * FAB_POST_MESSAGE_MAX payload bytes. */
#define FAB_POST_MESSAGE_MAX 240
unsigned int fab_post_message(uint32_t connection_id, uint32_t message_type, const void *payload,
			      size_t len);

/* HvSignalEvent (fast call): sets event flag flag_number of connection_id. */
unsigned int fab_signal_event(uint32_t connection_id, uint16_t flag_number);

/* The doorbell fast path: a 32-bit port write of connection_id to
 * FAB_DOORBELL_PORT. No status comes back. Acts as a compiler barrier, so
 * ring writes before it are visible to the host when it fires. */
void fab_signal_doorbell(uint32_t connection_id);

/* ---- console output ------------------------------------------------------ */

/*
 * Formatting supports %d %i %u %x %X %p %s %c %% with the length modifiers
 * hh h l ll z, the flags '-' '0' '+' ' ' '#', a field width and a precision
 * (both may be '*'). printf formats into a buffer on the stack and writes it
 * to the console; it returns the number of characters produced.
 */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) FAB_PRINTF(3, 0);
int snprintf(char *buf, size_t size, const char *fmt, ...) FAB_PRINTF(3, 4);
int vprintf(const char *fmt, va_list ap) FAB_PRINTF(1, 0);
int printf(const char *fmt, ...) FAB_PRINTF(1, 2);
/* s and a newline, like puts(3). */
int puts(const char *s);

/* ---- libc subset ----------------------------------------------------------- */

/* Standard semantics; gcc may emit calls to the mem* functions by itself. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
/* Bases 2..36 and 0 (0x prefix: 16, leading 0: 8, else 10); leading space
 * and a sign are accepted; ULONG_MAX on overflow (there is no errno). */
unsigned long strtoul(const char *s, char **end, int base);

/* ---- memory ---------------------------------------------------------------- */

/*
 * Heap over [free_start, free_end) of the boot info: first fit over an
 * address-ordered free list, coalescing on free, 16-byte aligned blocks.
 * A spin lock makes it safe on every vCPU, though it is meant for vCPU 0.
 * free() of a pointer that is not a live allocation panics.
 */
void *malloc(size_t size);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t size);
void free(void *p);

/* npages zeroed pages, page aligned (SynIC pages, ring buffers). Release
 * them with free(). NULL if npages is 0 or the heap is exhausted. */
void *fab_alloc_pages(size_t npages);

#endif
