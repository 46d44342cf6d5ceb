/* SPDX-License-Identifier: MIT */
/* node-hv internals shared by its source files (not a public header). */
#ifndef NHV_INT_H
#define NHV_INT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Validates an ELF64 x86-64 executable image (the whole file in img/len)
 * and copies its PT_LOAD segments into guest RAM (ram, identity mapped from
 * GPA 0), zero-filling each segment's bss. Every segment must lie inside
 * [min_gpa, max_gpa); segments must not overlap; the entry point must be
 * inside an executable segment. On success *entry is the entry point and
 * *end the first byte after the highest segment. Nothing is written to RAM
 * unless the whole image is valid. Returns 0 or -ENOEXEC with a reason in
 * err (e.g. "segment 2 [0x3ff000, 0x500000) is outside partition RAM").
 */
int nhv_elf_load(const uint8_t *img, size_t len, uint8_t *ram, uint64_t min_gpa, uint64_t max_gpa,
		 uint64_t *entry, uint64_t *end, char *err, size_t errlen);

/*
 * Writes identity-mapping page tables for [0, ram_bytes) at table_gpa in
 * ram: 2 MiB pages, except the first 2 MiB which use 4 KiB pages with page 0
 * left unmapped. All pages user-accessible and writable. Returns the CR3
 * value, or 0 if the tables would not fit below limit_gpa.
 */
uint64_t nhv_build_page_tables(uint8_t *ram, uint64_t ram_bytes, uint64_t table_gpa,
			       uint64_t limit_gpa);

#endif
