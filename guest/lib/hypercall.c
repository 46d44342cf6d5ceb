// SPDX-License-Identifier: MIT
/*
 * Hypercalls (fab/hvabi.h): the register convention of Hyper-V, entered by
 * calling the hypercall page, whose code is `out FAB_HYPERCALL_PORT, al; ret`.
 *
 * Parameter blocks of memory-based calls must be 8-byte aligned and must not
 * cross a page. They live on the caller's stack, aligned to a power of two at
 * least as large as the block, which guarantees both and keeps every vCPU on
 * its own buffers.
 */
#include "guest_int.h"

uint64_t fab_hypercall(uint64_t control, uint64_t input, uint64_t output)
{
	register uint64_t r8 __asm__("r8") = output;
	uint64_t rax;

	/*
	 * The page only touches RAX, but RCX/RDX/R8 are declared as clobbered
	 * too: a host that rewrites them (e.g. on a rep-call continuation)
	 * costs us nothing. The call pushes a return address below RSP, which
	 * is fine since the guest is built with -mno-red-zone. "memory": the
	 * host reads and writes parameter blocks behind the compiler's back.
	 */
	__asm__ volatile("call *%[entry]"
			 : "=a"(rax), "+c"(control), "+d"(input), "+r"(r8)
			 : [entry] "r"(fab__hypercall_entry)
			 : "memory", "cc");
	return rax;
}

unsigned int fab_console_write(const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		size_t n = len < FAB_CONSOLE_MAX ? len : FAB_CONSOLE_MAX;
		uint64_t rax = fab_hypercall(FAB_HVCALL_CONSOLE_WRITE | HV_HYPERCALL_FAST,
					     (uintptr_t)p, n);

		if (HV_RESULT_STATUS(rax) != HV_STATUS_SUCCESS)
			return HV_RESULT_STATUS(rax);
		p += n;
		len -= n;
	}
	return HV_STATUS_SUCCESS;
}

unsigned int fab_wait(uint64_t timeout_100ns)
{
	return HV_RESULT_STATUS(
		fab_hypercall(FAB_HVCALL_WAIT | HV_HYPERCALL_FAST, timeout_100ns, 0));
}

void fab_exit(int status)
{
	fab_hypercall(FAB_HVCALL_EXIT | HV_HYPERCALL_FAST, (uint64_t)(uint32_t)status, 0);
	/* A host that lets EXIT return gets a fault instead. */
	for (;;)
		__builtin_trap();
}

void fab_panic(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	fab_hypercall(FAB_HVCALL_PANIC | HV_HYPERCALL_FAST, (uintptr_t)msg, (uint64_t)n);
	for (;;)
		__builtin_trap();
}

/* GetVpRegisters input with one name: 20 bytes. */
struct get_vp_input {
	struct hv_vp_registers_hdr hdr;
	uint32_t name;
	uint32_t pad;
};

/* SetVpRegisters input with one element: 48 bytes. */
struct set_vp_input {
	struct hv_vp_registers_hdr hdr;
	struct hv_register_assoc assoc;
};

_Static_assert(sizeof(struct hv_vp_registers_hdr) == 16, "hv_vp_registers_hdr is 16 bytes");
_Static_assert(sizeof(struct hv_register_assoc) == 32, "hv_register_assoc is 32 bytes");
_Static_assert(sizeof(struct get_vp_input) <= 32, "get_vp_input fits its alignment");
_Static_assert(sizeof(struct set_vp_input) <= 64, "set_vp_input fits its alignment");

static const struct hv_vp_registers_hdr self_hdr = {
	.partition_id = HV_PARTITION_ID_SELF,
	.vp_index = HV_VP_INDEX_SELF,
};

unsigned int fab_get_vp_register(uint32_t name, uint64_t *value)
{
	_Alignas(32) struct get_vp_input in = { .hdr = self_hdr, .name = name };
	_Alignas(16) uint64_t out[2] = { 0, 0 };
	uint64_t rax;

	rax = fab_hypercall(HVCALL_GET_VP_REGISTERS | HV_HYPERCALL_REP_COUNT(1), (uintptr_t)&in,
			    (uintptr_t)out);
	if (HV_RESULT_STATUS(rax) != HV_STATUS_SUCCESS)
		return HV_RESULT_STATUS(rax);
	if (HV_RESULT_REPS_DONE(rax) != 1)
		return HV_STATUS_INVALID_HYPERCALL_INPUT; /* host bug: success, nothing done */
	*value = out[0];
	return HV_STATUS_SUCCESS;
}

unsigned int fab_set_vp_register(uint32_t name, uint64_t value)
{
	_Alignas(64) struct set_vp_input in = {
		.hdr = self_hdr,
		.assoc = { .name = name, .value_low = value },
	};
	uint64_t rax;

	rax = fab_hypercall(HVCALL_SET_VP_REGISTERS | HV_HYPERCALL_REP_COUNT(1), (uintptr_t)&in, 0);
	if (HV_RESULT_STATUS(rax) != HV_STATUS_SUCCESS)
		return HV_RESULT_STATUS(rax);
	if (HV_RESULT_REPS_DONE(rax) != 1)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	return HV_STATUS_SUCCESS;
}

uint64_t fab_ref_time(void)
{
	uint64_t t;

	return fab_get_vp_register(HV_REGISTER_TIME_REF_COUNT, &t) ? 0 : t;
}

/*
 * HvPostMessage input (TLFS; Linux struct hv_input_post_message): 256 bytes.
 * Not in fab/hvabi.h yet, so the layout is spelled out here.
 */
struct post_message_input {
	uint32_t connection_id;
	uint32_t reserved;
	uint32_t message_type;
	uint32_t payload_size;
	uint64_t payload[FAB_POST_MESSAGE_MAX / 8];
};

_Static_assert(sizeof(struct post_message_input) == 256, "post_message_input is 256 bytes");

unsigned int fab_post_message(uint32_t connection_id, uint32_t message_type, const void *payload,
			      size_t len)
{
	_Alignas(256) struct post_message_input in;

	if (len > FAB_POST_MESSAGE_MAX)
		return HV_STATUS_INVALID_PARAMETER;
	memset(&in, 0, sizeof(in));
	in.connection_id = connection_id;
	in.message_type = message_type;
	in.payload_size = (uint32_t)len;
	if (len)
		memcpy(in.payload, payload, len);
	return HV_RESULT_STATUS(fab_hypercall(HVCALL_POST_MESSAGE, (uintptr_t)&in, 0));
}

unsigned int fab_signal_event(uint32_t connection_id, uint16_t flag_number)
{
	/* Fast: RDX = connection id (bits 0-31) | flag number (bits 32-47). */
	return HV_RESULT_STATUS(fab_hypercall(HVCALL_SIGNAL_EVENT | HV_HYPERCALL_FAST,
					      connection_id | (uint64_t)flag_number << 32, 0));
}

void fab_signal_doorbell(uint32_t connection_id)
{
	/* `out %eax, $imm8` (E7 ib): the host matches the value in-kernel. */
	__asm__ volatile("outl %0, %1" : : "a"(connection_id), "N"(FAB_DOORBELL_PORT) : "memory");
}

/* ---- a clock without exits ------------------------------------------------- */

static uint64_t clk_tsc0, clk_ref0, clk_mult; /* 100 ns per TSC tick, 32.32 */

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

uint64_t fab_clock_100ns(void)
{
	uint64_t d;

	if (!clk_mult) {
		/* Calibrate the TSC against the host's reference time over
		 * 10 ms: two hypercalls once, none afterwards. */
		uint64_t r0 = fab_ref_time(), t0 = rdtsc(), r1, t1;

		do {
			r1 = fab_ref_time();
		} while (r1 - r0 < 100000);
		t1 = rdtsc();
		clk_tsc0 = t0;
		clk_ref0 = r0;
		clk_mult = ((r1 - r0) << 32) / (t1 - t0 ? t1 - t0 : 1);
		if (!clk_mult)
			clk_mult = 1;
	}
	d = rdtsc() - clk_tsc0;
	/* (d * mult) >> 32 without a 128-bit multiply overflowing */
	return clk_ref0 + (d >> 32) * clk_mult + (((d & 0xffffffffull) * clk_mult) >> 32);
}
