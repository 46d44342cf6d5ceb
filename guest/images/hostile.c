// SPDX-License-Identifier: MIT
/*
 * hostile: a guest that attacks its host through every hypercall with bad
 * GPAs, lengths, alignments, counts and names, and checks that each attempt
 * is refused. One line per case:
 *   hostile: <case>: status=0x<hex> ok|UNEXPECTED
 * then "hostile: <n> cases, <m> unexpected"; the exit status is 0 only if
 * nothing unexpected happened. A host that crashes, hangs or ends the
 * partition instead fails the test that runs this image.
 *
 * Buffers a misbehaving host might write past come from fab_alloc_pages with
 * room to spare, so a host bug shows up as UNEXPECTED, not as a guest that
 * corrupted itself. FAB_HVCALL_PANIC and EXIT are not attacked: they never
 * return.
 */
#include <stdbool.h>

#include "fab/guest.h"

#define FAST		 HV_HYPERCALL_FAST
#define REPS(n)		 HV_HYPERCALL_REP_COUNT(n)
#define ONE_SECOND_100NS 10000000ull

static unsigned int ncases, nunexpected;

static void report(const char *name, uint64_t rax, bool ok)
{
	ncases++;
	if (!ok)
		nunexpected++;
	printf("hostile: %s: status=0x%x %s\n", name, HV_RESULT_STATUS(rax),
	       ok ? "ok" : "UNEXPECTED");
}

/* The host must answer exactly want. */
static void expect(const char *name, uint64_t rax, uint16_t want)
{
	report(name, rax, HV_RESULT_STATUS(rax) == want);
}

/* Any refusal will do. */
static void expect_error(const char *name, uint64_t rax)
{
	report(name, rax, HV_RESULT_STATUS(rax) != HV_STATUS_SUCCESS);
}

/* A control case: the valid call must work, or the refusals prove nothing. */
static void expect_success(const char *name, uint64_t rax)
{
	report(name, rax, HV_RESULT_STATUS(rax) == HV_STATUS_SUCCESS);
}

/* A GetVpRegisters input block for name, addressed to vp of partition. */
static void get_input(void *buf, uint64_t partition, uint32_t vp, uint32_t name)
{
	struct hv_vp_registers_hdr hdr = { .partition_id = partition, .vp_index = vp };

	memcpy(buf, &hdr, sizeof(hdr));
	memcpy((char *)buf + sizeof(hdr), &name, sizeof(name));
}

/* A SetVpRegisters input block setting name to value on this vCPU. */
static void set_input(void *buf, uint32_t name, uint64_t value)
{
	struct hv_vp_registers_hdr hdr = {
		.partition_id = HV_PARTITION_ID_SELF,
		.vp_index = HV_VP_INDEX_SELF,
	};
	struct hv_register_assoc a = { .name = name, .value_low = value };

	memcpy(buf, &hdr, sizeof(hdr));
	memcpy((char *)buf + sizeof(hdr), &a, sizeof(a));
}

/* HvPostMessage input: connection, type, size, then the payload. */
static void post_input(void *buf, uint32_t connection, uint32_t size)
{
	uint32_t head[4] = { connection, 0, 1, size };

	memset(buf, 0, 256);
	memcpy(buf, head, sizeof(head));
}

static void console_cases(const struct fab_bootinfo *bi, char *text)
{
	uint64_t beyond = bi->ram_bytes + 0x1000;
	const uint64_t call = FAB_HVCALL_CONSOLE_WRITE | FAST;

	expect_error("console_gpa_beyond_ram", fab_hypercall(call, beyond, 16));
	expect_error("console_straddles_ram_end", fab_hypercall(call, bi->ram_bytes - 8, 16));
	/* gpa + len wraps to 0, which a naive "end <= ram" check accepts. */
	expect_error("console_gpa_len_wraps", fab_hypercall(call, ~0ull - 0xfff, 0x1000));
	expect_error("console_len_huge", fab_hypercall(call, (uintptr_t)text, 1ull << 40));
	expect_error("console_len_above_max",
		     fab_hypercall(call, (uintptr_t)text, (uint64_t)FAB_CONSOLE_MAX + 1));

	/* GPA 0 is unmapped for the guest but inside RAM for the host, so
	 * either answer is fine: reported, never counted as unexpected. Length
	 * 0, because a host that accepts would copy page 0 (zeros) into the
	 * console, and one NUL byte makes the whole log "binary" to grep. */
	report("console_gpa_zero_info", fab_hypercall(call, 0, 0), true);
}

static void get_regs_cases(const struct fab_bootinfo *bi, char *in, char *out)
{
	const uint64_t get = HVCALL_GET_VP_REGISTERS;
	uint64_t beyond = bi->ram_bytes + 0x1000;

	get_input(in, HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, HV_REGISTER_TIME_REF_COUNT);
	expect_success("get_regs_valid (control)",
		       fab_hypercall(get | REPS(1), (uintptr_t)in, (uintptr_t)out));
	expect_error("get_regs_input_beyond_ram",
		     fab_hypercall(get | REPS(1), beyond, (uintptr_t)out));
	expect_error("get_regs_output_beyond_ram",
		     fab_hypercall(get | REPS(1), (uintptr_t)in, beyond));
	/* The top page: aligned and within a page, but no RAM. */
	expect_error("get_regs_input_top_page",
		     fab_hypercall(get | REPS(1), ~0ull - 0xfff, (uintptr_t)out));

	/* The input block 4 bytes further on, so that it is still valid. */
	get_input(in + 4, HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, HV_REGISTER_TIME_REF_COUNT);
	expect("get_regs_input_misaligned",
	       fab_hypercall(get | REPS(1), (uintptr_t)in + 4, (uintptr_t)out),
	       HV_STATUS_INVALID_ALIGNMENT);
	get_input(in, HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, HV_REGISTER_TIME_REF_COUNT);
	expect("get_regs_output_misaligned",
	       fab_hypercall(get | REPS(1), (uintptr_t)in, (uintptr_t)out + 4),
	       HV_STATUS_INVALID_ALIGNMENT);

	expect_error("get_regs_rep_count_0",
		     fab_hypercall(get | REPS(0), (uintptr_t)in, (uintptr_t)out));
	/* 16 + 4095 * 4 bytes of input and 4095 * 16 of output: both cross
	 * their page, and both buffers have room for them if the host errs. */
	expect_error("get_regs_rep_count_4095",
		     fab_hypercall(get | REPS(4095), (uintptr_t)in, (uintptr_t)out));
	expect_error("get_regs_rep_start_past_count",
		     fab_hypercall(get | REPS(1) | HV_HYPERCALL_REP_START(5), (uintptr_t)in,
				   (uintptr_t)out));

	get_input(in, HV_PARTITION_ID_SELF, HV_VP_INDEX_SELF, 0xdead0001);
	expect_error("get_regs_unknown_name",
		     fab_hypercall(get | REPS(1), (uintptr_t)in, (uintptr_t)out));
	/* Someone else's partition: ids are small integers, so id + 1 may well
	 * be a neighbour on this node. */
	get_input(in, bi->partition_id + 1, HV_VP_INDEX_SELF, HV_REGISTER_TIME_REF_COUNT);
	expect_error("get_regs_other_partition",
		     fab_hypercall(get | REPS(1), (uintptr_t)in, (uintptr_t)out));
	get_input(in, HV_PARTITION_ID_SELF, bi->nvcpus, HV_REGISTER_TIME_REF_COUNT);
	expect_error("get_regs_vp_index_out_of_range",
		     fab_hypercall(get | REPS(1), (uintptr_t)in, (uintptr_t)out));
}

static void set_regs_cases(const struct fab_bootinfo *bi, char *in)
{
	const uint64_t set = HVCALL_SET_VP_REGISTERS | REPS(1);
	uint64_t beyond = bi->ram_bytes + 0x1000;

	set_input(in, HV_REGISTER_SIMP, (beyond & HV_SYNIC_PAGE_MASK) | HV_SYNIC_ENABLE);
	expect_error("set_simp_beyond_ram", fab_hypercall(set, (uintptr_t)in, 0));
	set_input(in, HV_REGISTER_SIMP, HV_SYNIC_PAGE_MASK | HV_SYNIC_ENABLE);
	expect_error("set_simp_top_page", fab_hypercall(set, (uintptr_t)in, 0));
	set_input(in, HV_REGISTER_SIEFP, (beyond & HV_SYNIC_PAGE_MASK) | HV_SYNIC_ENABLE);
	expect_error("set_siefp_beyond_ram", fab_hypercall(set, (uintptr_t)in, 0));
	expect_error("set_regs_input_beyond_ram", fab_hypercall(set, beyond, 0));
}

static void wait_case(void)
{
	uint64_t t0 = fab_ref_time(), rax = fab_wait(0), t1 = fab_ref_time();

	/* Nothing signals this partition, so polling must time out, at once. */
	report("wait_timeout_0", rax, rax == HV_STATUS_TIME_OUT && t1 - t0 < ONE_SECOND_100NS);
}

/* Before VMBus exists the host may not know these calls at all
 * (INVALID_HYPERCALL_CODE); later it must reject the connection id. */
static void vmbus_cases(const struct fab_bootinfo *bi, char *in)
{
	uint64_t beyond = bi->ram_bytes + 0x1000;

	post_input(in, 0xffffff, 8);
	expect_error("post_message_bad_connection",
		     fab_hypercall(HVCALL_POST_MESSAGE, (uintptr_t)in, 0));
	expect_error("post_message_input_beyond_ram",
		     fab_hypercall(HVCALL_POST_MESSAGE, beyond, 0));
	/* Connection 4 is where VMBus >= 5.0 takes INITIATE_CONTACT. */
	post_input(in, 4, FAB_POST_MESSAGE_MAX + 1);
	expect_error("post_message_payload_too_big",
		     fab_hypercall(HVCALL_POST_MESSAGE, (uintptr_t)in, 0));
	expect_error("signal_event_bad_connection",
		     fab_hypercall(HVCALL_SIGNAL_EVENT | FAST, 0xffffff, 0));
}

int main(int argc, char **argv)
{
	const struct fab_bootinfo *bi = fab_bootinfo();
	/* in: 5 pages (4095 rep input is 16 KiB); out: 16 pages (4095 reps
	 * of output); text: a console buffer larger than FAB_CONSOLE_MAX. */
	char *in = fab_alloc_pages(5), *out = fab_alloc_pages(16), *text = fab_alloc_pages(2);

	if (!in || !out || !text) {
		printf("hostile: out of memory\n");
		return 1;
	}
	memset(text, '#', 2 * FAB_PAGE_SIZE);
	text[2 * FAB_PAGE_SIZE - 1] = '\n';

	expect("unknown_call_code_0x7777", fab_hypercall(0x7777, 0, 0),
	       HV_STATUS_INVALID_HYPERCALL_CODE);
	expect_error("unknown_fabric_code_0x8fff", fab_hypercall(0x8fff | FAST, 0, 0));
	console_cases(bi, text);
	get_regs_cases(bi, in, out);
	set_regs_cases(bi, in);
	wait_case();
	vmbus_cases(bi, in);

	printf("hostile: %u cases, %u unexpected\n", ncases, nunexpected);
	return nunexpected ? 1 : 0;
}
