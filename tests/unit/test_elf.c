// SPDX-License-Identifier: MIT
/* Partition image loader and page-table builder (no KVM needed). */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nhv_int.h"

#define RAM  (8u << 20)
#define BASE 0x100000u

struct img {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[3];
	uint8_t code[64];
	uint8_t data[32];
};

/* A valid two-segment image: code (R+X) at BASE, data (RW, with bss) after. */
static void make(struct img *m)
{
	memset(m, 0, sizeof(*m));
	memcpy(m->eh.e_ident, ELFMAG, SELFMAG);
	m->eh.e_ident[EI_CLASS] = ELFCLASS64;
	m->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	m->eh.e_ident[EI_VERSION] = EV_CURRENT;
	m->eh.e_type = ET_EXEC;
	m->eh.e_machine = EM_X86_64;
	m->eh.e_version = EV_CURRENT;
	m->eh.e_entry = BASE + 4;
	m->eh.e_phoff = offsetof(struct img, ph);
	m->eh.e_ehsize = sizeof(Elf64_Ehdr);
	m->eh.e_phentsize = sizeof(Elf64_Phdr);
	m->eh.e_phnum = 2;
	m->ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
				 .p_flags = PF_R | PF_X,
				 .p_offset = offsetof(struct img, code),
				 .p_vaddr = BASE,
				 .p_paddr = BASE,
				 .p_filesz = 64,
				 .p_memsz = 64 };
	m->ph[1] = (Elf64_Phdr){ .p_type = PT_LOAD,
				 .p_flags = PF_R | PF_W,
				 .p_offset = offsetof(struct img, data),
				 .p_vaddr = BASE + 0x1000,
				 .p_paddr = BASE + 0x1000,
				 .p_filesz = 32,
				 .p_memsz = 0x3000 };
	memset(m->code, 0xc3, sizeof(m->code));
	memset(m->data, 0x5a, sizeof(m->data));
}

static uint8_t *ram;

static int setup(void **state)
{
	ram = calloc(1, RAM);
	return ram ? 0 : -1;
}

static int teardown(void **state)
{
	free(ram);
	return 0;
}

static int load(const void *img, size_t len, char *err)
{
	uint64_t entry, end;

	return nhv_elf_load(img, len, ram, BASE, RAM - 0x10000, &entry, &end, err, 200);
}

static void test_valid(void **state)
{
	struct img m;
	uint64_t entry, end;
	char err[200];

	make(&m);
	memset(ram + BASE + 0x1000 + 32, 0x77, 64); /* bss must be zeroed */
	assert_int_equal(nhv_elf_load((uint8_t *)&m, sizeof(m), ram, BASE, RAM, &entry, &end, err,
				      sizeof(err)),
			 0);
	assert_int_equal(entry, BASE + 4);
	assert_int_equal(end, BASE + 0x4000);
	assert_int_equal(ram[BASE], 0xc3);
	assert_int_equal(ram[BASE + 0x1000 + 31], 0x5a);
	assert_int_equal(ram[BASE + 0x1000 + 32], 0);
}

static void expect_refused(const struct img *m, size_t len, const char *why)
{
	char err[200] = "";

	memset(ram, 0xee, 2 * BASE);
	assert_int_equal(load(m, len, err), -ENOEXEC);
	if (!strstr(err, why))
		fail_msg("error '%s' does not mention '%s'", err, why);
	/* Nothing was written for a refused image. */
	assert_int_equal(ram[BASE], 0xee);
	assert_int_equal(ram[BASE + 0x1000], 0xee);
}

static void test_truncated(void **state)
{
	struct img m;

	make(&m);
	expect_refused(&m, 10, "truncated");
	expect_refused(&m, sizeof(Elf64_Ehdr) + 8, "truncated");	  /* headers cut */
	expect_refused(&m, offsetof(struct img, code) + 10, "truncated"); /* segment cut */
	m.ph[0].p_offset = ~0ull - 4; /* offset + size overflows */
	expect_refused(&m, sizeof(m), "truncated");
}

static void test_outside_ram(void **state)
{
	struct img m;

	make(&m);
	m.ph[1].p_vaddr = m.ph[1].p_paddr = RAM - 0x1000; /* runs past the end */
	expect_refused(&m, sizeof(m), "outside");
	make(&m);
	m.ph[1].p_vaddr = m.ph[1].p_paddr = 0x1000; /* over the reserved low memory */
	expect_refused(&m, sizeof(m), "outside");
	make(&m);
	m.ph[1].p_memsz = ~0ull - 0x800; /* vaddr + memsz overflows */
	expect_refused(&m, sizeof(m), "outside");
}

static void test_wrong_machine_and_kind(void **state)
{
	struct img m;

	make(&m);
	m.eh.e_machine = EM_AARCH64;
	expect_refused(&m, sizeof(m), "not x86-64");
	make(&m);
	m.eh.e_ident[EI_CLASS] = ELFCLASS32;
	expect_refused(&m, sizeof(m), "64-bit");
	make(&m);
	m.eh.e_type = ET_DYN;
	expect_refused(&m, sizeof(m), "static");
	make(&m);
	m.ph[2] = (Elf64_Phdr){ .p_type = PT_INTERP };
	m.eh.e_phnum = 3;
	expect_refused(&m, sizeof(m), "dynamically linked");
	make(&m);
	memcpy(m.eh.e_ident,
	       "\x7f"
	       "ELG",
	       4);
	expect_refused(&m, sizeof(m), "not an ELF");
}

static void test_entry_and_overlap(void **state)
{
	struct img m;

	make(&m);
	m.eh.e_entry = BASE + 0x1004; /* data segment: not executable */
	expect_refused(&m, sizeof(m), "entry point");
	make(&m);
	m.eh.e_entry = 0xdead0000;
	expect_refused(&m, sizeof(m), "entry point");
	make(&m);
	m.ph[1].p_vaddr = m.ph[1].p_paddr = BASE + 32;
	expect_refused(&m, sizeof(m), "overlap");
	make(&m);
	m.ph[1].p_filesz = m.ph[1].p_memsz + 1;
	expect_refused(&m, sizeof(m), "file size");
	make(&m);
	m.eh.e_phnum = 0;
	expect_refused(&m, sizeof(m), "program headers");
}

static void test_page_tables(void **state)
{
	uint64_t cr3 = nhv_build_page_tables(ram, RAM, 0x10000, BASE);
	uint64_t *pml4, *pdpt, *pd, *pt;

	assert_int_equal(cr3, 0x10000);
	pml4 = (uint64_t *)(ram + cr3);
	assert_int_equal(pml4[0] & 7, 7); /* present, writable, user */
	assert_int_equal(pml4[1], 0);
	pdpt = (uint64_t *)(ram + (pml4[0] & ~0xfffull));
	assert_int_equal(pdpt[1], 0); /* only the first GiB for 8 MiB */
	pd = (uint64_t *)(ram + (pdpt[0] & ~0xfffull));
	assert_int_equal(pd[0] & 0x80, 0); /* 4 KiB pages for the first 2 MiB */
	assert_int_equal(pd[1], (2u << 20) | 0x87);
	assert_int_equal(pd[3], (6u << 20) | 0x87);
	assert_int_equal(pd[4], 0); /* nothing beyond RAM */
	pt = (uint64_t *)(ram + (pd[0] & ~0xfffull));
	assert_int_equal(pt[0], 0); /* NULL page unmapped */
	assert_int_equal(pt[1], 0x1000 | 7);
	assert_int_equal(pt[511], 0x1ff000 | 7);
	/* 64 GiB needs 64 page directories: they must fit below the limit. */
	assert_int_equal(nhv_build_page_tables(ram, 64ull << 30, 0x10000, 0x20000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_outside_ram),
		cmocka_unit_test(test_wrong_machine_and_kind),
		cmocka_unit_test(test_entry_and_overlap),
		cmocka_unit_test(test_page_tables),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
