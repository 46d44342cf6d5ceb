// SPDX-License-Identifier: MIT
/* hello: the smallest useful image. Prints who it is and its arguments. */
#include "fab/guest.h"

int main(int argc, char **argv)
{
	const struct fab_bootinfo *bi = fab_bootinfo();

	printf("hello from partition %llu (%u vCPUs, %llu MiB)\n",
	       (unsigned long long)bi->partition_id, bi->nvcpus,
	       (unsigned long long)(bi->ram_bytes >> 20));
	for (int i = 0; i < argc; i++)
		printf("arg[%d]=%s\n", i, argv[i]);
	return 0;
}
