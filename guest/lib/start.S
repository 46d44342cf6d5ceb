/* SPDX-License-Identifier: MIT */
/*
 * Entry point of every vCPU (fab/hvabi.h): RDI = boot info GPA, RSI = vCPU
 * index, RSP = top of this vCPU's stack, CPL3, interrupts off. Those are
 * already the first two arguments of the C half, which never returns.
 */
	.section .text.start, "ax", @progbits
	.globl _start
	.type _start, @function
_start:
	cld			/* the C ABI wants DF clear */
	xorl	%ebp, %ebp	/* outermost frame, for backtraces */
	andq	$-16, %rsp	/* SysV: RSP 16-aligned before the call */
	call	fab__start
1:	ud2			/* not reached: fault and let the host report it */
	jmp	1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
