// SPDX-License-Identifier: MIT
/*
 * Partition image loader. The image comes from the operator or a remote
 * controller, so every field is checked before use and every sum is checked
 * for overflow.
 */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nhv_int.h"

#define MAX_PHDRS 64

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -ENOEXEC;
}

int nhv_elf_load(const uint8_t *img, size_t len, uint8_t *ram, uint64_t min_gpa, uint64_t max_gpa,
		 uint64_t *entry, uint64_t *end, char *err, size_t errlen)
{
	Elf64_Phdr ph[MAX_PHDRS];
	Elf64_Ehdr eh;
	uint64_t hi = 0;
	int nload = 0, entry_ok = 0;

	if (len < sizeof(eh))
		return bad(err, errlen, "truncated: %zu bytes is smaller than an ELF header", len);
	memcpy(&eh, img, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return bad(err, errlen, "not an ELF file");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64)
		return bad(err, errlen, "not a 64-bit ELF file");
	if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return bad(err, errlen, "not little-endian");
	if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
		return bad(err, errlen, "unknown ELF version");
	if (eh.e_machine != EM_X86_64)
		return bad(err, errlen, "machine %u is not x86-64 (%u)", eh.e_machine, EM_X86_64);
	if (eh.e_type != ET_EXEC)
		return bad(err, errlen, "not a static executable (type %u)", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return bad(err, errlen, "program header size %u, expected %zu", eh.e_phentsize,
			   sizeof(Elf64_Phdr));
	if (eh.e_phnum == 0 || eh.e_phnum > MAX_PHDRS)
		return bad(err, errlen, "%u program headers (1..%d allowed)", eh.e_phnum,
			   MAX_PHDRS);
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return bad(err, errlen,
			   "truncated: program headers lie beyond the file's %zu bytes", len);
	memcpy(ph, img + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));

	/* Validate everything first, so a bad image leaves RAM untouched. */
	for (int i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		uint64_t seg_end;

		if (p->p_type == PT_INTERP || p->p_type == PT_DYNAMIC)
			return bad(err, errlen,
				   "dynamically linked (segment %d); static images only", i);
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		if (p->p_filesz > p->p_memsz)
			return bad(err, errlen, "segment %d: file size above memory size", i);
		if (p->p_offset > len || p->p_filesz > len - p->p_offset)
			return bad(err, errlen,
				   "truncated: segment %d needs bytes [%#llx, %#llx) of a %zu-byte "
				   "file",
				   i, (unsigned long long)p->p_offset,
				   (unsigned long long)(p->p_offset + p->p_filesz), len);
		if (p->p_vaddr != p->p_paddr)
			return bad(err, errlen, "segment %d: virtual %#llx != physical %#llx", i,
				   (unsigned long long)p->p_vaddr, (unsigned long long)p->p_paddr);
		if (__builtin_add_overflow(p->p_vaddr, p->p_memsz, &seg_end) ||
		    p->p_vaddr < min_gpa || seg_end > max_gpa)
			return bad(
				err, errlen,
				"segment %d [%#llx, +%#llx) is outside the partition's image area "
				"[%#llx, %#llx)",
				i, (unsigned long long)p->p_vaddr, (unsigned long long)p->p_memsz,
				(unsigned long long)min_gpa, (unsigned long long)max_gpa);
		for (int k = 0; k < i; k++) {
			const Elf64_Phdr *q = &ph[k];

			if (q->p_type != PT_LOAD || q->p_memsz == 0)
				continue;
			if (p->p_vaddr < q->p_vaddr + q->p_memsz && q->p_vaddr < seg_end)
				return bad(err, errlen, "segments %d and %d overlap", k, i);
		}
		if ((p->p_flags & PF_X) && eh.e_entry >= p->p_vaddr && eh.e_entry < seg_end)
			entry_ok = 1;
		if (seg_end > hi)
			hi = seg_end;
		nload++;
	}
	if (!nload)
		return bad(err, errlen, "no loadable segment");
	if (!entry_ok)
		return bad(err, errlen, "entry point %#llx is not inside an executable segment",
			   (unsigned long long)eh.e_entry);

	for (int i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];

		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		memcpy(ram + p->p_vaddr, img + p->p_offset, p->p_filesz);
		memset(ram + p->p_vaddr + p->p_filesz, 0, p->p_memsz - p->p_filesz);
	}
	*entry = eh.e_entry;
	*end = hi;
	return 0;
}

/* Page-table entry bits */
#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

uint64_t nhv_build_page_tables(uint8_t *ram, uint64_t ram_bytes, uint64_t table_gpa,
			       uint64_t limit_gpa)
{
	const uint64_t flags = PTE_P | PTE_RW | PTE_US;
	uint64_t gib = (ram_bytes + (1ull << 30) - 1) >> 30;
	uint64_t pml4 = table_gpa, pdpt = pml4 + 4096, pt0 = pdpt + 4096, pd0 = pt0 + 4096;
	uint64_t *e;

	if (gib == 0 || gib > 512 || pd0 + gib * 4096 > limit_gpa)
		return 0;
	memset(ram + pml4, 0, (size_t)(3 + gib) * 4096);
	e = (uint64_t *)(ram + pml4);
	e[0] = pdpt | flags;
	e = (uint64_t *)(ram + pdpt);
	for (uint64_t g = 0; g < gib; g++)
		e[g] = (pd0 + g * 4096) | flags;
	for (uint64_t a = 0; a < ram_bytes; a += 2ull << 20) {
		uint64_t *pd = (uint64_t *)(ram + pd0 + (a >> 30) * 4096);

		pd[(a >> 21) & 511] = a == 0 ? (pt0 | flags) : (a | flags | PTE_PS);
	}
	/* First 2 MiB in 4 KiB pages so that page 0 can stay unmapped. */
	e = (uint64_t *)(ram + pt0);
	for (uint64_t i = 1; i < 512 && i * 4096 < ram_bytes; i++)
		e[i] = (i * 4096) | flags;
	return pml4;
}
