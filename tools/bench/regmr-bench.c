// SPDX-License-Identifier: MIT
/*
 * siw-regmr-bench: memory registrations per second on softiwarp. For each buffer size, a loop
 * of ibv_reg_mr + ibv_dereg_mr on one PD (the buffer allocated and touched once, outside the
 * timed loop), for --time seconds; prints registrations per second (one reg + one dereg each)
 * and the mean cost of each call. Also the steady state with many live registrations: --live N
 * registrations stay registered while the loop runs (a key table with N entries).
 *
 *   siw-regmr-bench [--sizes 4K,64K,1M] [--time SEC] [--live N] [--csv FILE]
 *
 * Exit 0 when every size was measured, 1 on any verbs failure, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <infiniband/verbs.h>

#define MAX_SIZES 32
#define MAX_LIVE  1000000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (*end || !v || v > (1ull << 30)) {
		fprintf(stderr, "siw-regmr-bench: bad size '%s'\n", s);
		exit(2);
	}
	return (size_t)v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"sizes", required_argument, NULL, 's'},
					   {"time", required_argument, NULL, 't'},
					   {"live", required_argument, NULL, 'l'},
					   {"csv", required_argument, NULL, 'c'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	size_t sizes[MAX_SIZES] = {4096, 65536, 1048576};
	int nsizes = 3, c, n = 0, status = 0;
	long live = 0;
	double secs = 0.5;
	const char *csv_path = NULL;
	struct ibv_device **list;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_mr **keep = NULL;
	FILE *csv = NULL;
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

	while ((c = getopt_long(argc, argv, "s:t:l:c:h", lo, NULL)) != -1) {
		switch (c) {
		case 's': {
			char *copy = strdup(optarg), *save = NULL;

			nsizes = 0;
			for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				if (nsizes == MAX_SIZES)
					return 2;
				sizes[nsizes++] = parse_size(t);
			}
			free(copy);
			break;
		}
		case 't': secs = atof(optarg); break;
		case 'l': live = atol(optarg); break;
		case 'c': csv_path = optarg; break;
		case 'h':
			printf("usage: siw-regmr-bench [--sizes LIST] [--time SEC] [--live N] [--csv F]\n");
			return 0;
		default: return 2;
		}
	}
	if (secs <= 0 || secs > 600 || live < 0 || live > MAX_LIVE || !nsizes)
		return 2;

	list = ibv_get_device_list(&n);
	if (!list || n < 1) {
		fprintf(stderr, "siw-regmr-bench: no verbs device\n");
		return 1;
	}
	ctx = ibv_open_device(list[0]);
	pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	if (!pd) {
		fprintf(stderr, "siw-regmr-bench: open %s / alloc_pd: %s\n",
			ibv_get_device_name(list[0]), strerror(errno));
		return 1;
	}
	if (live) { /* N live registrations of one page each, registered before the loop */
		static char page[4096];

		keep = calloc((size_t)live, sizeof *keep);
		for (long i = 0; keep && i < live; i++)
			if (!(keep[i] = ibv_reg_mr(pd, page, sizeof page, access))) {
				fprintf(stderr, "siw-regmr-bench: live registration %ld: %s\n", i,
					strerror(errno));
				return 1;
			}
	}
	if (csv_path && !(csv = fopen(csv_path, "w"))) {
		perror(csv_path);
		return 1;
	}
	if (csv)
		fprintf(csv, "size,live,regs,secs,regs_per_s,ns_per_reg_dereg\n");
	printf("# siw-regmr-bench: device %s, ibv_reg_mr + ibv_dereg_mr, %.2f s per size, %ld live "
	       "registrations\n",
	       ibv_get_device_name(list[0]), secs, live);
	printf("%10s %12s %14s %10s\n", "size", "regs", "regs/s", "ns/pair");
	for (int i = 0; i < nsizes; i++) {
		size_t size = sizes[i];
		char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		unsigned long long regs = 0;
		double t0, t1;

		if (buf == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		memset(buf, 1, size);
		t0 = now_s();
		t1 = t0;
		while (t1 - t0 < secs) {
			for (int k = 0; k < 1024; k++) { /* the clock is read every 1024 pairs */
				struct ibv_mr *mr = ibv_reg_mr(pd, buf, size, access);

				if (!mr || ibv_dereg_mr(mr)) {
					fprintf(stderr, "siw-regmr-bench: size %zu: %s\n", size,
						strerror(errno));
					status = 1;
					break;
				}
				regs++;
			}
			if (status)
				break;
			t1 = now_s();
		}
		munmap(buf, size);
		if (status)
			break;
		printf("%10zu %12llu %14.0f %10.1f\n", size, regs, (double)regs / (t1 - t0),
		       (t1 - t0) * 1e9 / (double)regs);
		if (csv)
			fprintf(csv, "%zu,%ld,%llu,%.4f,%.0f,%.1f\n", size, live, regs, t1 - t0,
				(double)regs / (t1 - t0), (t1 - t0) * 1e9 / (double)regs);
	}
	if (csv)
		fclose(csv);
	for (long i = 0; keep && i < live; i++)
		ibv_dereg_mr(keep[i]);
	free(keep);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return status;
}
