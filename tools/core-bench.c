// SPDX-License-Identifier: MIT
/*
 * siw-core-bench: what the protocol core costs next to the copy the data path cannot avoid.
 *
 * For FPDU sizes seen in practice (1442-byte ULPDUs: one FPDU per 1500-MTU segment, as kernel
 * siw and iWARP NICs send; 65474: loopback MSS) it measures, in one run:
 *   memcpy    copying the same payload (the one copy after the kernel's),
 *   build     the transmit builder laying out FPDUs (headers, trailers, iovecs; no payload copy),
 *   parse     the receive parser walking the same stream with placement as a no-op,
 *   place     the parser with placement by memcpy (what the engine really does),
 * with CRC off and on, and prints GB/s of payload and parse/memcpy and build/memcpy ratios.
 *
 *   siw-core-bench [seconds-per-row, default 0.3]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32c.h"
#include "error.h"
#include "rx.h"
#include "tx.h"

#define MSG_LEN	   (1u << 20)
#define NMSG	   8
#define STREAM_CAP (NMSG * (MSG_LEN + MSG_LEN / 1000 * 40 + 4096))

static uint8_t *src, *dst, *stream;
static size_t stream_len;
static double row_seconds = 0.3;
static volatile uint64_t sink;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- a minimal engine for the parser: one region, no-op or memcpy placement ------------------ */

static struct siw_mem_ref region;
static int copy_payload;

static int b_lookup(void *u, uint32_t stag, struct siw_mem_ref *r)
{
	(void)u;
	(void)stag;
	*r = region;
	return 0;
}

static int b_place(void *u, void *d, const void *s, size_t n)
{
	(void)u;
	if (copy_payload)
		memcpy(d, s, n);
	else
		sink += n;
	return 0;
}

static int b_write_done(void *u, uint32_t stag, uint64_t to, uint32_t len)
{
	(void)u;
	(void)stag;
	(void)to;
	sink += len;
	return 0;
}

static const struct siw_rx_ops bench_ops = {
	.mem_lookup = b_lookup,
	.place = b_place,
	.write_done = b_write_done,
};

/* Builds NMSG RDMA WRITEs of MSG_LEN into the stream; returns FPDUs built. */
static unsigned long build_stream(uint32_t mulpdu, bool crc, bool keep)
{
	static struct siw_tx_batch b;
	struct siw_tx tx;
	struct siw_tx_params p = {.crc = crc, .max_ulpdu = mulpdu};
	struct siw_iov v = {src, MSG_LEN};
	unsigned long fpdus = 0;

	siw_tx_init(&tx, &p);
	if (keep)
		stream_len = 0;
	for (unsigned i = 0; i < NMSG; i++) {
		struct siw_tx_msg m = {.opcode = RDMAP_WRITE,
				       .stag = 0x100,
				       .to = 0,
				       .iov = &v,
				       .niov = 1,
				       .len = MSG_LEN};
		int r;

		siw_tx_begin(&tx, &m);
		do {
			siw_tx_batch_reset(&b);
			r = siw_tx_fill(&tx, &b);
			fpdus += b.nfpdus;
			if (keep)
				for (unsigned k = 0; k < b.niov; k++) {
					memcpy(stream + stream_len, b.iov[k].base, b.iov[k].len);
					stream_len += b.iov[k].len;
				}
			else
				sink += b.bytes;
		} while (r == 0);
	}
	return fpdus;
}

static double rate(double bytes, double secs)
{
	return bytes / secs / 1e9;
}

static double bench_memcpy(void)
{
	double t0 = now(), t;
	unsigned long n = 0;

	do {
		for (unsigned i = 0; i < NMSG; i++)
			memcpy(dst, src, MSG_LEN);
		n++;
		t = now();
	} while (t - t0 < row_seconds);
	return rate((double)n * NMSG * MSG_LEN, t - t0);
}

static double bench_build(uint32_t mulpdu, bool crc)
{
	double t0 = now(), t;
	unsigned long n = 0;

	do {
		build_stream(mulpdu, crc, false);
		n++;
		t = now();
	} while (t - t0 < row_seconds);
	return rate((double)n * NMSG * MSG_LEN, t - t0);
}

static double bench_parse(bool crc, int copy)
{
	static struct siw_rx rx;
	struct siw_rx_params p = {.crc = crc, .pd = 1};
	double t0 = now(), t;
	unsigned long n = 0;

	copy_payload = copy;
	do {
		siw_rx_init(&rx, &bench_ops, NULL, &p);
		/* Feed in 256 KiB slices, as the engine's staging reads do. */
		for (size_t off = 0; off < stream_len; off += 256 * 1024) {
			size_t k = stream_len - off < 256 * 1024 ? stream_len - off : 256 * 1024;

			if (siw_rx_feed(&rx, stream + off, k) < 0) {
				fprintf(stderr, "parse error: %s\n", siw_strerror(rx.err));
				exit(1);
			}
		}
		n++;
		t = now();
	} while (t - t0 < row_seconds);
	return rate((double)n * NMSG * MSG_LEN, t - t0);
}

int main(int argc, char **argv)
{
	static const uint32_t sizes[] = {1442, 8192, 65474};

	if (argc > 1)
		row_seconds = atof(argv[1]);
	src = malloc(MSG_LEN);
	dst = malloc(MSG_LEN);
	stream = malloc(STREAM_CAP);
	if (!src || !dst || !stream)
		return 1;
	for (size_t i = 0; i < MSG_LEN; i++)
		src[i] = (uint8_t)(i * 131);
	memset(dst, 0, MSG_LEN);
	region.addr = dst;
	region.iova = 0;
	region.len = MSG_LEN;
	region.access = SIW_MEM_REMOTE_WRITE | SIW_MEM_LOCAL_WRITE;
	region.pd = 1;

	printf("softiwarp protocol core vs memcpy (payload GB/s; %u x %u KiB RDMA WRITEs; CRC32c "
	       "%s)\n",
	       NMSG, MSG_LEN >> 10, siw_crc32c_impl());
	printf("%-7s %-4s %8s %8s %8s %8s %10s %10s %12s\n", "ULPDU", "crc", "memcpy", "build",
	       "parse", "place", "parse/cpy", "build/cpy", "hdr ns/FPDU");
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (int crc = 0; crc < 2; crc++) {
			unsigned long fpdus = build_stream(sizes[s], crc, true);
			double mc = bench_memcpy();
			double bu = bench_build(sizes[s], crc);
			double pa = bench_parse(crc, 0);
			double pl = bench_parse(crc, 1);
			/* Header work per FPDU: parse time per FPDU with CRC off. */
			double ns = (double)NMSG * MSG_LEN / (pa * 1e9) / (double)fpdus * 1e9;

			printf("%-7u %-4s %8.2f %8.2f %8.2f %8.2f %9.1fx %9.1fx ", sizes[s],
			       crc ? "on" : "off", mc, bu, pa, pl, pa / mc, bu / mc);
			if (crc)
				printf("%12s\n", "(crc)");
			else
				printf("%12.1f\n", ns);
		}
	printf("parse/cpy and build/cpy > 1 mean the core processes a byte faster than memcpy "
	       "copies it; with CRC on the CRC pass dominates.\n");
	free(src);
	free(dst);
	free(stream);
	return (int)(sink & 0);
}
