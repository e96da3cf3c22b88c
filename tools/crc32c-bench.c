/* SPDX-License-Identifier: MIT */
/*
 * siw-crc32c-bench: throughput of the CRC32c implementations (src/core/crc32c.c) against
 * memcpy and, when it was found at configure time, ISA-L's crc32_iscsi().
 *
 *   siw-crc32c-bench [seconds per measurement, default 0.2]
 *
 * Each size is run over one buffer of that size, over and over: 1 KiB to 1 MiB stay in cache
 * (what the CRC of an FPDU being built or received sees), 16 MiB streams from memory. The best
 * of five runs is reported, in GB/s (10^9 bytes per second).
 */
#include "crc32c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef SIW_HAVE_ISAL
#include <isa-l/crc.h>
#endif

static volatile uint32_t sink;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum kind { K_SW, K_HW, K_HW_NOPCLMUL, K_MEMCPY, K_ISAL };

static const char *const kind_name[] = {"sw", "hw", "hw-nopclmul", "memcpy", "isa-l"};

static void run(enum kind k, uint8_t *src, uint8_t *dst, size_t len, long iters)
{
	uint32_t crc = SIW_CRC32C_INIT;

	for (long i = 0; i < iters; i++) {
		switch (k) {
		case K_SW:
			crc = siw_crc32c_sw(crc, src, len);
			break;
		case K_HW:
			crc = siw_crc32c_hw(crc, src, len);
			break;
		case K_HW_NOPCLMUL:
			crc = siw_crc32c_hw_nopclmul(crc, src, len);
			break;
		case K_MEMCPY:
			memcpy(dst, src, len);
			/* Keep the copy alive; the read is one byte. */
			crc += dst[i % len];
			break;
		case K_ISAL:
#ifdef SIW_HAVE_ISAL
			crc = crc32_iscsi(src, (int)len, crc);
#endif
			break;
		}
	}
	sink = crc;
}

static double measure(enum kind k, uint8_t *src, uint8_t *dst, size_t len, double secs)
{
	long iters = 1;
	double best = 0, t;

	/* Calibrate: grow the count until one run takes a measurable time, then scale it. */
	for (;;) {
		double t0 = now();

		run(k, src, dst, len, iters);
		t = now() - t0;
		if (t > secs / 20 || iters > (1L << 40))
			break;
		iters *= 2;
	}
	if (t < secs)
		iters = (long)((double)iters * secs / t) + 1;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now(), gbs;

		run(k, src, dst, len, iters);
		t = now() - t0;
		gbs = (double)len * (double)iters / t / 1e9;
		if (gbs > best)
			best = gbs;
	}
	return best;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {1 << 10, 4 << 10, 64 << 10, 1 << 20, 16 << 20};
	size_t maxlen = 16 << 20;
	double secs = argc > 1 ? atof(argv[1]) : 0.2;
	uint8_t *src = malloc(maxlen), *dst = malloc(maxlen);
	int nkinds = 4;

	if (!src || !dst || secs <= 0) {
		fprintf(stderr, "usage: %s [seconds per measurement]\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < maxlen; i++)
		src[i] = (uint8_t)(i * 2654435761u >> 13);
	memset(dst, 0, maxlen);
#ifdef SIW_HAVE_ISAL
	nkinds = 5;
	/* Same register convention (no inversion inside), so the values must match. */
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint32_t a = siw_crc32c(SIW_CRC32C_INIT, src + 3, sizes[i] - 3);
		uint32_t b = crc32_iscsi(src + 3, (int)sizes[i] - 3, SIW_CRC32C_INIT);

		if (a != b) {
			fprintf(stderr, "ISA-L disagrees at %zu bytes: 0x%08x != 0x%08x\n",
				sizes[i], b, a);
			return 1;
		}
	}
#endif
	printf("siw_crc32c_impl() = %s; GB/s (1e9 bytes/s), best of 5\n", siw_crc32c_impl());
	printf("%-10s", "size");
	for (int k = 0; k < nkinds; k++)
		printf(" %12s", kind_name[k]);
	printf("\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];

		if (len >= 1 << 20)
			printf("%4zu MiB  ", len >> 20);
		else
			printf("%4zu KiB  ", len >> 10);
		for (int k = 0; k < nkinds; k++) {
			printf(" %12.2f", measure((enum kind)k, src, dst, len, secs));
			fflush(stdout);
		}
		printf("\n");
	}
	free(src);
	free(dst);
	return 0;
}
