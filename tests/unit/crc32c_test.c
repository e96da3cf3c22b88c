/* SPDX-License-Identifier: MIT */
/*
 * CRC32c (RFC 5044 §6.1, RFC 3720 §12.1): known answers, the wire byte order as kernel siw
 * sends it, and agreement of all implementations (table, SSE4.2 with and without PCLMULQDQ,
 * the dispatcher) over random data, lengths, alignments and chunkings.
 */
#include "test.h"

#include "crc32c.h"

#include <pthread.h>
#include <stdlib.h>

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static const struct {
	const char *name;
	crc_fn fn;
} impls[] = {
    {"sw", siw_crc32c_sw},
    {"hw", siw_crc32c_hw},
    {"hw_nopclmul", siw_crc32c_hw_nopclmul},
    {"dispatch", siw_crc32c},
};
#define N_IMPLS (sizeof(impls) / sizeof(impls[0]))

/* Deterministic xorshift64* with a fixed seed: a failure reproduces on every run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(rng() >> 56);
}

/* Bit-at-a-time reference straight from the definition; shares nothing with the tables. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return crc;
}

static uint32_t crc_once(crc_fn fn, const void *p, size_t len)
{
	return siw_crc32c_final(fn(SIW_CRC32C_INIT, p, len));
}

/*
 * RFC 3720 appendix B.4 "CRC Examples". The RFC lists the data and the CRC as bytes in
 * transmission order ("CRC: aa 36 91 8a" for 32 zero bytes). Read as a little-endian uint32
 * those bytes are the final value (0x8A9136AA = siw_crc32c_final() of the register), which is
 * why want[] below is compared with the bytes siw_crc32c_put() writes, and the value with
 * siw_crc32c_get() of them: byte 0 on the wire = bits 0..7 of the final value.
 * (The vectors were taken from the RFC's appendix as quoted, e.g., by the RFC 3720 B.4 comment
 * in googleapis/python-crc32c's tests and the IPS WG list message that fixed the examples;
 * all agree, and a bitwise reference reproduces them.)
 */
static const uint8_t rfc3720_read10_pdu[48] = {
    0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void test_crc32c_rfc3720_b4_vectors(void)
{
	static const struct {
		const char *what;
		uint8_t want[4]; /* "CRC:" line of the RFC, wire order */
		uint32_t value;  /* the same as siw_crc32c_final() returns it */
	} v[] = {
	    {"32 bytes of zeroes", {0xaa, 0x36, 0x91, 0x8a}, 0x8A9136AAu},
	    {"32 bytes of ones", {0x43, 0xab, 0xa8, 0x62}, 0x62A8AB43u},
	    {"32 bytes of incrementing 00..1f", {0x4e, 0x79, 0xdd, 0x46}, 0x46DD794Eu},
	    {"32 bytes of decrementing 1f..00", {0x5c, 0xdb, 0x3f, 0x11}, 0x113FDB5Cu},
	    {"iSCSI SCSI Read (10) Command PDU", {0x56, 0x3a, 0x96, 0xd9}, 0xD9963A56u},
	};
	uint8_t data[48];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len = 32;

		for (size_t j = 0; j < 32; j++)
			data[j] = i == 0   ? 0x00
				  : i == 1 ? 0xff
				  : i == 2 ? (uint8_t)j
					   : (uint8_t)(31 - j);
		if (i == 4) {
			memcpy(data, rfc3720_read10_pdu, sizeof(rfc3720_read10_pdu));
			len = sizeof(rfc3720_read10_pdu);
		}
		CHECK_UINT(siw_crc32c_get(v[i].want), v[i].value);
		CHECK_UINT(siw_crc32c_final(crc_bitwise(SIW_CRC32C_INIT, data, len)), v[i].value);
		for (size_t k = 0; k < N_IMPLS; k++) {
			uint32_t got = crc_once(impls[k].fn, data, len);
			uint8_t wire[4];

			siw_crc32c_put(wire, got);
			if (got != v[i].value)
				t_fail(__FILE__, __LINE__, "%s, %s: 0x%08x != 0x%08x", v[i].what,
				       impls[k].name, got, v[i].value);
			CHECK_MEM(wire, v[i].want, 4);
		}
	}
}

/* The CRC catalogue's check value for CRC-32/ISCSI. */
static void test_crc32c_check_value(void)
{
	for (size_t k = 0; k < N_IMPLS; k++)
		CHECK_UINT(crc_once(impls[k].fn, "123456789", 9), 0xE3069283u);
}

static void test_crc32c_empty_and_null(void)
{
	for (size_t k = 0; k < N_IMPLS; k++) {
		CHECK_UINT(impls[k].fn(SIW_CRC32C_INIT, NULL, 0), SIW_CRC32C_INIT);
		CHECK_UINT(impls[k].fn(0x12345678u, NULL, 0), 0x12345678u);
		CHECK_UINT(crc_once(impls[k].fn, NULL, 0), 0);
	}
}

/*
 * Appending the trailer in wire order to the covered bytes gives a constant register, the
 * CRC-32/ISCSI "residue" 0xB798B438, whatever the data. It holds only if the trailer is stored
 * with siw_crc32c_put()'s byte order: an independent check of that order. (A receiver may use it
 * to check an FPDU in one pass, trailer included.)
 */
static void test_crc32c_residue_with_trailer(void)
{
	uint8_t buf[300];

	for (size_t len = 0; len + 4 <= sizeof(buf); len += 7) {
		fill_random(buf, len);
		siw_crc32c_put(buf + len, crc_once(siw_crc32c, buf, len));
		CHECK_UINT(siw_crc32c(SIW_CRC32C_INIT, buf, len + 4), 0xB798B438u);
		/* The other order must not have this property (or the check would prove nothing).
		 */
		{
			uint32_t v = crc_once(siw_crc32c, buf, len);

			buf[len] = (uint8_t)(v >> 24);
			buf[len + 1] = (uint8_t)(v >> 16);
			buf[len + 2] = (uint8_t)(v >> 8);
			buf[len + 3] = (uint8_t)v;
			if (((v >> 24) & 0xff) != (v & 0xff) ||
			    ((v >> 16) & 0xff) != ((v >> 8) & 0xff))
				CHECK(siw_crc32c(SIW_CRC32C_INIT, buf, len + 4) != 0xB798B438u);
		}
	}
}

/*
 * Real FPDUs from Linux 6.1 kernel siw with mpa_crc_required=1 (/work/shared/pcaps, README
 * there), copied byte for byte from the TCP payload (frame offset 66 = 14 Ethernet + 20 IP + 32
 * TCP with timestamps). Each is [ULPDU length (2, big-endian) | ULPDU | pad to 4 | CRC (4)], one
 * FPDU per segment. The CRC covers everything before it, and the trailer is the final value
 * least significant byte first (what siw_crc32c_put() writes); read big-endian, as tshark
 * displays it ("CRC check: 0x5b81657a"), it is NOT the CRC value. All 70 FPDUs of
 * crc-rping.pcap and all FPDUs of the other crc-*.pcap / 2g-crc-*.pcap follow this order.
 */
static const uint8_t fpdu_rping_frame8[] = {
    /* single-guest-lo-crc/crc-rping.pcap frame 8: 42318 > 18601, untagged Send, ULPDU 34 (18
     * bytes DDP/RDMAP header + 16 bytes rping buffer info), no pad; value 0x7A65815B */
    0x00, 0x22, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x55, 0xf3, 0x48, 0xdc, 0x03, 0x70,
    0x49, 0x4d, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x40, 0x5b, 0x81, 0x65, 0x7a,
};

static const uint8_t fpdu_rping_frame10[] = {
    /* single-guest-lo-crc/crc-rping.pcap frame 10: 42318 > 18601, tagged RDMA Read Response,
     * ULPDU 78 (14 header + 64 data "rdma-ping-0: ABC..."), no pad; value 0x30A8A28B */
    0x00, 0x4e, 0xc1, 0x42, 0xe1, 0x87, 0x53, 0x00, 0x00, 0x00, 0x55, 0xfc, 0x48, 0xba,
    0x85, 0x50, 0x72, 0x64, 0x6d, 0x61, 0x2d, 0x70, 0x69, 0x6e, 0x67, 0x2d, 0x30, 0x3a,
    0x20, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d,
    0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b,
    0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x00, 0x8b, 0xa2, 0xa8, 0x30,
};

static const uint8_t fpdu_send_bw_frame14[] = {
    /* single-guest-lo-crc/crc-send_bw.pcap frame 14: 56451 > 18607, untagged Send, ULPDU 20
     * (18 header + 2 data bytes 33 00) and 2 pad bytes that are NOT zero (00 40): kernel siw
     * sends stale pad bytes and covers them by the CRC as sent; value 0x94ACE0BF */
    0x00, 0x14, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x40, 0xbf, 0xe0, 0xac, 0x94,
};

static void test_crc32c_mpa_fpdu_from_kernel_siw(void)
{
	static const struct {
		const uint8_t *p;
		size_t len;
		uint32_t value;
	} f[] = {
	    {fpdu_rping_frame8, sizeof(fpdu_rping_frame8), 0x7A65815Bu},
	    {fpdu_rping_frame10, sizeof(fpdu_rping_frame10), 0x30A8A28Bu},
	    {fpdu_send_bw_frame14, sizeof(fpdu_send_bw_frame14), 0x94ACE0BFu},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		size_t ulpdu = (size_t)f[i].p[0] << 8 | f[i].p[1];
		size_t covered = (2 + ulpdu + 3) & ~(size_t)3;
		const uint8_t *trailer = f[i].p + covered;

		REQUIRE(covered + 4 == f[i].len);
		CHECK_UINT(siw_crc32c_get(trailer), f[i].value);
		for (size_t k = 0; k < N_IMPLS; k++) {
			uint32_t got = crc_once(impls[k].fn, f[i].p, covered);
			uint8_t wire[4];

			if (got != f[i].value)
				t_fail(__FILE__, __LINE__, "FPDU %zu, %s: 0x%08x != 0x%08x", i,
				       impls[k].name, got, f[i].value);
			siw_crc32c_put(wire, got);
			CHECK_MEM(wire, trailer, 4);
		}
		/* Big-endian (network order, like the other header fields) would be wrong. */
		CHECK(((uint32_t)trailer[0] << 24 | (uint32_t)trailer[1] << 16 |
		       (uint32_t)trailer[2] << 8 | trailer[3]) != f[i].value);
		/* A zeroed pad would give another CRC: the pad is covered as sent. */
		if (covered != 2 + ulpdu) {
			uint8_t copy[64];

			memcpy(copy, f[i].p, covered);
			memset(copy + 2 + ulpdu, 0, covered - 2 - ulpdu);
			CHECK(crc_once(siw_crc32c, copy, covered) != f[i].value);
		}
	}
}

/* Bytes are placed at `off` inside a bigger buffer so that every start alignment is seen. */
static int check_all_impls(const uint8_t *p, size_t len, size_t off)
{
	uint32_t init = (uint32_t)rng(), want = siw_crc32c_sw(init, p, len);

	for (size_t k = 1; k < N_IMPLS; k++) {
		uint32_t got = impls[k].fn(init, p, len);

		if (got != want) {
			t_fail(__FILE__, __LINE__,
			       "%s: len %zu off %zu init 0x%08x: 0x%08x != sw 0x%08x",
			       impls[k].name, len, off, init, got, want);
			return 0;
		}
	}
	return 1;
}

static void test_crc32c_sw_matches_bitwise(void)
{
	uint8_t *buf = malloc(2048 + 64);

	REQUIRE(buf);
	fill_random(buf, 2048 + 64);
	for (size_t len = 0; len <= 2048; len++) {
		size_t off = rng() % 64;
		uint32_t init = (uint32_t)rng();

		if (siw_crc32c_sw(init, buf + off, len) != crc_bitwise(init, buf + off, len)) {
			t_fail(__FILE__, __LINE__, "sw != bitwise at len %zu off %zu", len, off);
			break;
		}
	}
	free(buf);
}

static void test_crc32c_impls_agree_every_length(void)
{
	enum { MAXLEN = 4096, SLACK = 64, BUFLEN = 2 * MAXLEN + SLACK };
	/* 192 = 3 x 64, the smallest three-way split; 4096, a chain's block in a large buffer. */
	static const size_t edge[] = {1,    7,    8,    9,    63,   64,   65,  191,
				      192,  193,  383,  384,  385,  767,  768, 769,
				      4095, 4096, 4097, 4160, 4223, 4224, 4225};
	uint8_t *buf = malloc(BUFLEN);

	REQUIRE(buf);
	fill_random(buf, BUFLEN);
	for (size_t len = 0; len <= MAXLEN; len++) {
		size_t off = rng() % SLACK;

		if (!check_all_impls(buf + off, len, off))
			break;
	}
	/* Every alignment for the lengths around the chain thresholds and block sizes. */
	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
		for (size_t off = 0; off < 16; off++)
			check_all_impls(buf + off, edge[i], off);
	free(buf);
}

static void test_crc32c_impls_agree_large(void)
{
	enum { MAXLEN = 8 << 20, SLACK = 64 };
	static const size_t lens[] = {
	    3 * 4096 - 1,   3 * 4096,      3 * 4096 + 1,  6 * 4096 + 191, 6 * 4096 + 192, 1 << 20,
	    (1 << 20) + 13, (3 << 20) + 5, (5 << 20) - 7, (8 << 20) - 1,  8 << 20,
	};
	uint8_t *buf = malloc(MAXLEN + SLACK);

	REQUIRE(buf);
	fill_random(buf, MAXLEN + SLACK);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t off = lens[i] == MAXLEN ? 0 : rng() % SLACK;

		if (lens[i] + off > MAXLEN + SLACK)
			off = 0;
		check_all_impls(buf + off, lens[i], off);
	}
	/* A few random sizes in 1..8 MiB too. */
	for (int i = 0; i < 4; i++) {
		size_t len = (1 << 20) + rng() % (7 << 20), off = rng() % SLACK;

		check_all_impls(buf + off, len, off);
	}
	free(buf);
}

/* Streaming: any split into chunks (including empty ones) equals the one-shot CRC. */
static void test_crc32c_streaming_equals_oneshot(void)
{
	enum { MAXLEN = 3 << 16 };
	uint8_t *buf = malloc(MAXLEN);

	REQUIRE(buf);
	fill_random(buf, MAXLEN);
	for (int round = 0; round < 200; round++) {
		size_t len = round < 100 ? rng() % 2048 : rng() % MAXLEN;
		uint32_t want = crc_once(siw_crc32c_sw, buf, len);

		for (size_t k = 0; k < N_IMPLS; k++) {
			uint32_t crc = SIW_CRC32C_INIT;
			size_t pos = 0;

			while (pos < len) {
				/* Mostly small chunks, sometimes big ones, sometimes empty. */
				uint64_t r = rng();
				size_t n =
				    r % 4 == 0 ? (size_t)(r >> 8) % 20000 : (size_t)(r >> 8) % 70;

				if (n > len - pos)
					n = len - pos;
				crc = impls[k].fn(crc, buf + pos, n);
				pos += n;
			}
			if (siw_crc32c_final(crc) != want) {
				t_fail(__FILE__, __LINE__, "%s: chunked len %zu: 0x%08x != 0x%08x",
				       impls[k].name, len, siw_crc32c_final(crc), want);
				break;
			}
		}
	}
	free(buf);
}

static void test_crc32c_impl_and_force_sw(void)
{
	const char *impl = siw_crc32c_impl();
	uint8_t buf[1000];
	uint32_t want;

	printf("  siw_crc32c_impl() = %s\n", impl);
	CHECK(strcmp(impl, "sse4.2+pclmul") == 0 || strcmp(impl, "sse4.2") == 0 ||
	      strcmp(impl, "table") == 0);
#if defined(__x86_64__) || defined(__i386__)
	if (__builtin_cpu_supports("sse4.2"))
		CHECK(strcmp(impl, __builtin_cpu_supports("pclmul") ? "sse4.2+pclmul" : "sse4.2") ==
		      0);
#else
	CHECK(strcmp(impl, "table") == 0);
#endif
	fill_random(buf, sizeof(buf));
	want = crc_once(siw_crc32c_sw, buf, sizeof(buf));
	siw_crc32c_force_sw(1);
	CHECK(strcmp(siw_crc32c_impl(), "table") == 0);
	CHECK_UINT(crc_once(siw_crc32c, buf, sizeof(buf)), want);
	siw_crc32c_force_sw(0);
	CHECK(strcmp(siw_crc32c_impl(), impl) == 0);
	CHECK_UINT(crc_once(siw_crc32c, buf, sizeof(buf)), want);
}

/*
 * Several threads making the very first calls (this runs first, before any other case has
 * called in): the lazy CPU probe must be race-free (meant for the SIW_TSAN build) and give all
 * of them the same answer.
 */
struct thread_arg {
	const uint8_t *buf;
	size_t len;
	uint32_t crc;
	const char *impl;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;

	a->crc = crc_once(siw_crc32c, a->buf, a->len);
	a->impl = siw_crc32c_impl();
	return NULL;
}

static void test_crc32c_first_calls_from_threads(void)
{
	enum { N = 4 };
	static uint8_t buf[20000];
	struct thread_arg a[N];
	pthread_t th[N];
	int started = 0;

	fill_random(buf, sizeof(buf));
	for (int i = 0; i < N; i++) {
		a[i] = (struct thread_arg){buf, sizeof(buf), 0, NULL};
		if (pthread_create(&th[i], NULL, thread_main, &a[i]) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	REQUIRE(started > 0);
	for (int i = 0; i < started; i++) {
		CHECK_UINT(a[i].crc, crc_once(siw_crc32c_sw, buf, sizeof(buf)));
		CHECK(a[i].impl && strcmp(a[i].impl, siw_crc32c_impl()) == 0);
	}
}

/* An external implementation: one that gives a wrong answer is refused, a right one is used. */
static unsigned ext_calls;

static uint32_t ext_good(uint32_t crc, const void *buf, size_t len)
{
	ext_calls++;
	return siw_crc32c_sw(crc, buf, len);
}

static uint32_t ext_bad(uint32_t crc, const void *buf, size_t len)
{
	return siw_crc32c_sw(crc, buf, len) ^ (len > 100 ? 1u : 0u);
}

static void test_crc32c_external(void)
{
	static const uint8_t zeros[32];
	const char *before = siw_crc32c_impl();

	CHECK_INT(siw_crc32c_use(ext_bad, "bad"), -1);
	CHECK(strcmp(siw_crc32c_impl(), before) == 0);
	CHECK_INT(siw_crc32c_use(ext_good, "good"), 0);
	CHECK(strcmp(siw_crc32c_impl(), "good") == 0);
	ext_calls = 0;
	CHECK_UINT(siw_crc32c_final(siw_crc32c(SIW_CRC32C_INIT, zeros, sizeof(zeros))), 0x8A9136AAu);
	CHECK_UINT(ext_calls, 1);
	CHECK_INT(siw_crc32c_use(NULL, NULL), 0);
	CHECK(strcmp(siw_crc32c_impl(), before) == 0);
}

T_MAIN(T_CASE(test_crc32c_external), T_CASE(test_crc32c_first_calls_from_threads), T_CASE(test_crc32c_rfc3720_b4_vectors),
       T_CASE(test_crc32c_check_value), T_CASE(test_crc32c_empty_and_null),
       T_CASE(test_crc32c_residue_with_trailer), T_CASE(test_crc32c_mpa_fpdu_from_kernel_siw),
       T_CASE(test_crc32c_sw_matches_bitwise), T_CASE(test_crc32c_impls_agree_every_length),
       T_CASE(test_crc32c_impls_agree_large), T_CASE(test_crc32c_streaming_equals_oneshot),
       T_CASE(test_crc32c_impl_and_force_sw))
