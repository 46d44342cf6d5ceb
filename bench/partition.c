// SPDX-License-Identifier: MIT
/*
 * bench_partition: what partitions cost on this host, each figure beside
 * the floor measured in the same run.
 *
 * Floors: an empty exit round trip (a guest port write nobody claims,
 * handled by a callback that only counts), on a bare vtx VM in real mode and
 * in a CPL3 partition; and a bare vtx VM's create+destroy for the creation
 * figures. Each figure is the median of several runs.
 *
 *   bench_partition --images DIR [--reps N] [--exits N]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "fab/log.h"
#include "fab/nodehv.h"
#include "fab/vtx.h"

static const char *images = ".";
static int reps = 7;
static unsigned long nexits = 20000;

static uint8_t *image;
static size_t image_len;

/* ---- bare vtx VM: real-mode `out 0x10, al; jmp $-2` ----------------------- */

struct bare {
	unsigned long left;
	double t_first;
};

static int bare_io(struct vtx_vcpu *vcpu, struct vtx_io_exit *io, void *opaque)
{
	struct bare *b = opaque;

	if (b->t_first == 0)
		b->t_first = bench_now_us();
	return --b->left ? VTX_RUN_CONTINUE : 1;
}

static const struct vtx_vcpu_ops bare_ops = { .io = bare_io };

/* One bare VM (2 MiB, one vCPU): sets *create_us (VM + vCPU ready) and
 * returns create+destroy time; with n > 0 it also runs n exits in between
 * (not counted) and sets *per_exit_us. */
static double bare_vm(unsigned long n, double *per_exit_us, double *create_us)
{
	static const uint8_t code[] = { 0xe6, 0x10, 0xeb, 0xfc };
	struct vtx_vm_config cfg = { .ram_size = 2u << 20 };
	struct bare b = { .left = n + 1 };
	struct vtx_sregs sr;
	struct vtx_regs r = { .rip = 0x1000, .rflags = 2 };
	struct vtx_vcpu *vcpu;
	struct vtx_vm *vm;
	double t0 = bench_now_us(), t1;

	if (vtx_vm_create(&cfg, &vm) || vtx_vcpu_create(vm, 0, &bare_ops, &b, &vcpu)) {
		fprintf(stderr, "bench_partition: cannot create a bare VM\n");
		exit(1);
	}
	memcpy((uint8_t *)vtx_vm_ram(vm) + 0x1000, code, sizeof(code));
	vtx_vcpu_get_sregs(vcpu, &sr);
	sr.cs.base = 0;
	sr.cs.selector = 0;
	vtx_vcpu_set_sregs(vcpu, &sr);
	vtx_vcpu_set_regs(vcpu, &r);
	t1 = bench_now_us();
	*create_us = t1 - t0;
	if (n) {
		vtx_vcpu_start(vcpu);
		vtx_vcpu_wait(vcpu, -1, NULL);
		/* From the first exit on, so entry costs are not counted. */
		*per_exit_us = (bench_now_us() - b.t_first) / (double)n;
	}
	t0 = bench_now_us();
	vtx_vm_destroy(vm);
	return *create_us + (bench_now_us() - t0);
}

/* ---- partitions running the bench image ---------------------------------- */

struct prun {
	double t_console; /* first console byte */
	char out[256];
	size_t len;
	pthread_mutex_t lock;
};

static void on_console(struct nhv_partition *p, const char *buf, size_t len, void *arg)
{
	struct prun *r = arg;

	pthread_mutex_lock(&r->lock);
	if (r->t_console == 0)
		r->t_console = bench_now_us();
	if (len > sizeof(r->out) - 1 - r->len)
		len = sizeof(r->out) - 1 - r->len;
	memcpy(r->out + r->len, buf, len);
	r->len += len;
	r->out[r->len] = '\0';
	pthread_mutex_unlock(&r->lock);
}

/* Runs the image with argv; returns the guest's ref_100ns figure per
 * operation in µs (or, for "first", create -> first console byte). */
static double run_guest(int argc, const char **argv, int doorbell, double *cycle_us)
{
	struct nhv_partition_cfg cfg = {
		.id = 1,
		.ram_bytes = 8u << 20,
		.vcpus = 1,
		.image = image,
		.image_len = image_len,
		.argc = argc,
		.argv = argv,
		.console_cb = on_console,
	};
	struct prun r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct nhv_partition *p;
	char err[256];
	double t0, result = 0;
	const char *s;
	int fd;

	cfg.cb_arg = &r;
	t0 = bench_now_us();
	if (nhv_partition_create(&cfg, &p, err, sizeof(err))) {
		fprintf(stderr, "bench_partition: %s\n", err);
		exit(1);
	}
	if (doorbell && nhv_partition_doorbell_add(p, 1, &fd)) {
		fprintf(stderr, "bench_partition: cannot register the doorbell\n");
		exit(1);
	}
	nhv_partition_start(p);
	if (nhv_partition_wait(p, 600000) != NHV_PART_EXITED) {
		fprintf(stderr, "bench_partition: guest did not exit cleanly: %s\n", r.out);
		exit(1);
	}
	nhv_partition_destroy(p);
	if (cycle_us)
		*cycle_us = bench_now_us() - t0;
	if (!strcmp(argv[1], "first"))
		return r.t_console - t0;
	s = strstr(r.out, "ref_100ns=");
	if (!s) {
		fprintf(stderr, "bench_partition: no result from the guest: %s\n", r.out);
		exit(1);
	}
	result = strtod(s + 10, NULL) / 10.0 / (double)strtoul(argv[2], NULL, 10);
	return result;
}

static double create_destroy_only(void)
{
	const char *argv[] = { "bench", "first", NULL };
	struct nhv_partition_cfg cfg = {
		.id = 1,
		.ram_bytes = 8u << 20,
		.vcpus = 1,
		.image = image,
		.image_len = image_len,
		.argc = 2,
		.argv = argv,
	};
	struct nhv_partition *p;
	char err[256];
	double t0 = bench_now_us();

	if (nhv_partition_create(&cfg, &p, err, sizeof(err)))
		exit(1);
	nhv_partition_destroy(p);
	return bench_now_us() - t0;
}

static void row(const char *what, double v, const char *floor_what, double floor)
{
	printf("%-44s %10.2f   %-34s %9.2f   %6.1fx\n", what, v, floor_what, floor, v / floor);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "images", required_argument, NULL, 'i' },
		{ "reps", required_argument, NULL, 'r' },
		{ "exits", required_argument, NULL, 'n' },
		{ 0 },
	};
	double v[64], f[64], c[64], w;
	double bare_exit, bare_cd, bare_create, part_exit, first, cycle, created, hc, nc, db;
	char n[32];
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			images = optarg;
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 'n':
			nexits = strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr,
				"usage: bench_partition --images DIR [--reps N] [--exits N]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 64 || nexits < 100) {
		fprintf(stderr, "bench_partition: --reps 1..64, --exits >= 100\n");
		return 2;
	}
	fab_log_init("bench_partition", FAB_LOG_ERR);
	image = bench_load("bench_partition", images, "bench.elf", &image_len);
	snprintf(n, sizeof(n), "%lu", nexits);

	/* Warm up KVM and the allocator so the first figure is not penalised. */
	bare_vm(nexits / 10, &w, &w);
	for (int i = 0; i < reps; i++) {
		v[i] = bare_vm(0, NULL, &c[i]);
		bare_vm(nexits, &f[i], &w);
	}
	bare_cd = bench_median(v, reps);
	bare_create = bench_median(c, reps);
	bare_exit = bench_median(f, reps);

#define MEDIAN_OF(expr)                           \
	({                                        \
		for (int i_ = 0; i_ < reps; i_++) \
			v[i_] = (expr);           \
		bench_median(v, reps);            \
	})
	{
		const char *a_exit[] = { "bench", "exit", n, NULL };
		const char *a_hc[] = { "bench", "hypercall", n, NULL };
		const char *a_nc[] = { "bench", "nullcall", n, NULL };
		const char *a_db[] = { "bench", "doorbell", n, "1", NULL };
		const char *a_first[] = { "bench", "first", NULL };

		part_exit = MEDIAN_OF(run_guest(3, a_exit, 0, NULL));
		hc = MEDIAN_OF(run_guest(3, a_hc, 0, NULL));
		nc = MEDIAN_OF(run_guest(3, a_nc, 0, NULL));
		db = MEDIAN_OF(run_guest(4, a_db, 1, NULL));
		for (int i = 0; i < reps; i++)
			f[i] = run_guest(2, a_first, 0, &c[i]);
		first = bench_median(f, reps);
		cycle = bench_median(c, reps);
		created = MEDIAN_OF(create_destroy_only());
	}

	printf("bench_partition: %d runs per figure (median), %lu transitions per run\n", reps,
	       nexits);
	printf("%-44s %10s   %-34s %9s   %7s\n", "measure", "us", "floor", "us", "ratio");
	row("create -> first guest hypercall", first, "bare VM + vCPU create", bare_create);
	row("create + run + destroy cycle", cycle, "bare VM create+destroy", bare_cd);
	row("create + destroy (never run)", created, "bare VM create+destroy", bare_cd);
	row("hypercall round trip (GetVpRegisters)", hc, "empty exit, bare VM (real mode)",
	    bare_exit);
	row("hypercall round trip (unknown code)", nc, "empty exit, bare VM (real mode)",
	    bare_exit);
	row("empty exit in a partition (CPL3)", part_exit, "empty exit, bare VM (real mode)",
	    bare_exit);
	row("doorbell (ioeventfd datamatch, no exit)", db, "empty exit, bare VM (real mode)",
	    bare_exit);
	return 0;
}
