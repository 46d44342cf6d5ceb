// SPDX-License-Identifier: MIT
/*
 * compute MiB [seed]: a deterministic memory workload whose result the host
 * can check. Fills MiB MiB with xorshift64 output (each 64-bit state stored
 * as 8 little-endian bytes) and prints the FNV-1a 64-bit hash of the buffer.
 * The same inputs give the same hash on any host, so tests and migration
 * checks compare it with a value computed outside the partition.
 */
#include "fab/guest.h"

#define DEFAULT_MIB	16ul
#define DEFAULT_SEED	1ul
#define ZERO_SEED_STATE 0x9E3779B97F4A7C15ull /* xorshift must not start at 0 */
#define FNV_OFFSET	0xcbf29ce484222325ull
#define FNV_PRIME	0x100000001b3ull

/* A whole-string unsigned number (decimal, 0x hex, 0 octal) or -1 on junk. */
static int parse(const char *s, unsigned long *out)
{
	char *end;

	if (*s == '-' || *s == '+')
		return -1;
	*out = strtoul(s, &end, 0);
	return end == s || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long mib = DEFAULT_MIB, seed = DEFAULT_SEED;
	uint64_t x, h = FNV_OFFSET, t0, t1;
	const unsigned char *bytes;
	uint64_t *words;
	size_t len, n;

	if (argc > 3 || (argc > 1 && (parse(argv[1], &mib) || mib == 0)) ||
	    (argc > 2 && parse(argv[2], &seed))) {
		printf("compute: usage: compute [MiB (>0) [seed]]\n");
		return 2;
	}
	if (mib > SIZE_MAX >> 20 || !(words = malloc(len = (size_t)mib << 20))) {
		printf("compute: cannot allocate %lu MiB\n", mib);
		return 2;
	}

	t0 = fab_ref_time();
	x = seed ? seed : ZERO_SEED_STATE;
	n = len / sizeof(*words);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		words[i] = x; /* x86 is little-endian: the bytes are in FNV order */
	}
	bytes = (const unsigned char *)words;
	for (size_t i = 0; i < len; i++) {
		h ^= bytes[i];
		h *= FNV_PRIME;
	}
	t1 = fab_ref_time();

	printf("compute: mib=%lu seed=%lu fnv1a64=%016llx\n", mib, seed, (unsigned long long)h);
	printf("compute: ref_time_us=%llu\n", (unsigned long long)((t1 - t0) / 10));
	free(words);
	return 0;
}
