/* SPDX-License-Identifier: MIT */
/*
 * The partition ABI: what a child partition sees of its host. Shared by
 * node-hv (host half) and guest/ (guest SDK), so it must stay freestanding:
 * <stdint.h> only, no host types.
 *
 * Hypercalls use the Hyper-V x64 register convention (TLFS; Linux
 * arch/x86/include/asm/mshyperv.h): RCX = control word (call code bits 0-15,
 * FAST bit 16, rep count bits 32-43, rep start bits 48-59), RDX = input GPA
 * (fast: first input value), R8 = output GPA (fast: second input value);
 * the result comes back in RAX (status bits 0-15, reps completed bits
 * 32-43). The guest enters through the hypercall page, whose code the host
 * writes and which traps to the host with a port write.
 *
 * Memory layout of every partition (guest physical = guest virtual, identity
 * mapped, all pages user-accessible since the guest runs at CPL3):
 *   0x0000             not mapped (NULL dereferences fault)
 *   0x1000             boot-info page (struct fab_bootinfo)
 *   0x2000             hypercall page
 *   0x10000 - 0x100000 reserved for host-built page tables
 *   0x100000 -         the partition image (ELF segments), then free RAM
 *   ... top of RAM     vCPU stacks (FAB_STACK_BYTES each, vCPU 0 highest)
 */
#ifndef FAB_HVABI_H
#define FAB_HVABI_H

#include <stdint.h>

/* ---- layout ------------------------------------------------------------- */

#define FAB_PAGE_SIZE	   4096ull
#define FAB_BOOTINFO_GPA   0x1000ull
#define FAB_HYPERCALL_GPA  0x2000ull
#define FAB_PAGETABLE_GPA  0x10000ull
#define FAB_IMAGE_MIN_GPA  0x100000ull	/* segments must load at or above */
#define FAB_STACK_BYTES	   0x10000ull	/* per vCPU */
#define FAB_RAM_ALIGN	   0x200000ull	/* RAM size: multiple of 2 MiB */
#define FAB_RAM_MIN	   0x400000ull	/* 4 MiB */
#define FAB_RAM_MAX	   (3ull << 30) /* KVM needs pages below 4 GiB (VT-x TSS) */
#define FAB_HYPERCALL_PORT 0xC5		/* the hypercall page's trapping port */
#define FAB_DOORBELL_PORT  0xC6		/* 32-bit write of a connection id: signal */

/* ---- boot info (at FAB_BOOTINFO_GPA, written by the host) ---------------- */

#define FAB_BOOTINFO_MAGIC   0x31544f4f42424146ull /* "FABBOOT1" */
#define FAB_BOOTINFO_VERSION 1
#define FAB_ARGS_MAX	     32
#define FAB_ARGS_BYTES	     2048

struct fab_bootinfo {
	uint64_t magic;
	uint32_t version;
	uint32_t nvcpus;
	uint64_t partition_id;
	uint64_t ram_bytes;
	uint64_t hypercall_gpa; /* call this address to make a hypercall */
	uint64_t free_start;	/* first free byte after the image (page aligned) */
	uint64_t free_end;	/* end of free RAM: below the vCPU stacks */
	uint32_t argc;
	uint32_t reserved;
	uint64_t argv[FAB_ARGS_MAX]; /* GPAs of NUL-terminated strings in args[] */
	char args[FAB_ARGS_BYTES];
};

/*
 * Entry: every vCPU starts at the ELF entry point at CPL3 in 64-bit mode with
 * RDI = FAB_BOOTINFO_GPA, RSI = vCPU index, RSP = the top of its own stack
 * (16-byte aligned), RFLAGS.IOPL = 3, interrupts off.
 */

/* ---- hypercall control word --------------------------------------------- */

#define HV_HYPERCALL_FAST	  (1ull << 16)
#define HV_HYPERCALL_REP_COUNT(n) ((uint64_t)(n) << 32)
#define HV_HYPERCALL_REP_START(n) ((uint64_t)(n) << 48)
#define HV_HYPERCALL_CODE(ctl)	  ((uint16_t)((ctl)&0xffff))
#define HV_HYPERCALL_REPS(ctl)	  ((uint32_t)(((ctl) >> 32) & 0xfff))
#define HV_HYPERCALL_START(ctl)	  ((uint32_t)(((ctl) >> 48) & 0xfff))
#define HV_RESULT_STATUS(rax)	  ((uint16_t)((rax)&0xffff))
#define HV_RESULT_REPS_DONE(rax)  ((uint32_t)(((rax) >> 32) & 0xfff))

/* Hyper-V call codes (TLFS) */
#define HVCALL_GET_VP_REGISTERS 0x0050
#define HVCALL_SET_VP_REGISTERS 0x0051
#define HVCALL_POST_MESSAGE	0x005c
#define HVCALL_SIGNAL_EVENT	0x005d

/*
 * Fabric calls, in a range Hyper-V does not use. Their inputs are registers
 * (fast-call style); the FAST bit is ignored.
 *   CONSOLE_WRITE  RDX = GPA of text, R8 = length (<= FAB_CONSOLE_MAX)
 *   WAIT           RDX = timeout in 100 ns units (0: poll, ~0: forever);
 *                  SUCCESS when an event was signalled to this vCPU,
 *                  HV_STATUS_TIME_OUT otherwise. It may return early with
 *                  TIME_OUT; callers re-check their condition.
 *   EXIT           RDX = exit status (low 8 bits reported); ends the whole
 *                  partition, from any vCPU; no return
 *   PANIC          RDX = GPA of message, R8 = length (the host keeps 199
 *                  bytes); ends the partition as crashed; no return
 * The guest may use SSE: the host sets CR4.OSFXSR and OSXMMEXCPT.
 */
#define FAB_HVCALL_CONSOLE_WRITE 0x8001
#define FAB_HVCALL_WAIT		 0x8002
#define FAB_HVCALL_EXIT		 0x8003
#define FAB_HVCALL_PANIC	 0x8004
#define FAB_CONSOLE_MAX		 4096
#define FAB_WAIT_FOREVER	 (~0ull)

/* HV_STATUS values (TLFS; Linux include/hyperv/hvgdk_mini.h) */
#define HV_STATUS_SUCCESS		  0x00
#define HV_STATUS_INVALID_HYPERCALL_CODE  0x02
#define HV_STATUS_INVALID_HYPERCALL_INPUT 0x03
#define HV_STATUS_INVALID_ALIGNMENT	  0x04
#define HV_STATUS_INVALID_PARAMETER	  0x05
#define HV_STATUS_ACCESS_DENIED		  0x06
#define HV_STATUS_INSUFFICIENT_MEMORY	  0x0b
#define HV_STATUS_INVALID_PARTITION_ID	  0x0d
#define HV_STATUS_INVALID_VP_INDEX	  0x0e
#define HV_STATUS_INVALID_CONNECTION_ID	  0x12
#define HV_STATUS_INSUFFICIENT_BUFFERS	  0x13
#define HV_STATUS_INVALID_REGISTER_VALUE  0x50
#define HV_STATUS_TIME_OUT		  0x78

/* ---- Get/SetVpRegisters ------------------------------------------------- */

/* Register names (TLFS; Linux hvgdk_mini.h enum hv_register_name) */
#define HV_REGISTER_VP_INDEX	   0x00090003
#define HV_REGISTER_TIME_REF_COUNT 0x00090004 /* 100 ns units since boot */
#define HV_REGISTER_SINT0	   0x000A0000 /* SINTn = SINT0 + n */
#define HV_REGISTER_SCONTROL	   0x000A0010
#define HV_REGISTER_SVERSION	   0x000A0011
#define HV_REGISTER_SIEFP	   0x000A0012
#define HV_REGISTER_SIMP	   0x000A0013
#define HV_REGISTER_EOM		   0x000A0014

#define HV_PARTITION_ID_SELF ((uint64_t)-1)
#define HV_VP_INDEX_SELF     ((uint32_t)-2)

/* Input header of both calls (16 bytes), followed by the rep elements. */
struct hv_vp_registers_hdr {
	uint64_t partition_id;
	uint32_t vp_index;
	uint8_t input_vtl;
	uint8_t reserved[3];
};

/* GetVpRegisters rep element (input): a u32 name; output: 16-byte values. */
/* SetVpRegisters rep element (32 bytes). */
struct hv_register_assoc {
	uint32_t name;
	uint32_t reserved1;
	uint64_t reserved2;
	uint64_t value_low;
	uint64_t value_high;
};

/* SCONTROL / SIMP / SIEFP / SINT bits */
#define HV_SYNIC_ENABLE	    1ull	/* bit 0 of SCONTROL, SIMP, SIEFP */
#define HV_SYNIC_PAGE_MASK  (~0xfffull) /* SIMP/SIEFP page GPA */
#define HV_SINT_MASKED	    (1ull << 16)
#define HV_SINT_VECTOR(v)   ((uint64_t)(v)&0xff)
#define HV_SYNIC_SINT_COUNT 16
#define HV_SYNIC_VERSION_1  1
#define VMBUS_MESSAGE_SINT  2 /* VMBus messages and events use SINT2 */

#endif
