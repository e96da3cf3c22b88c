/* SPDX-License-Identifier: MIT */
/*
 * CRC32c (Castagnoli, reflected polynomial 0x82F63B78) as MPA uses it (RFC 5044 §6.1, the same
 * CRC as iSCSI, RFC 3720 §12.1). The running value starts at SIW_CRC32C_INIT; the value that goes
 * on the wire is siw_crc32c_final() of it.
 *
 * Two implementations: the SSE4.2 CRC32 instruction (several interleaved chains, folded with
 * PCLMULQDQ where available) and a portable table-driven one. siw_crc32c() dispatches to the best
 * one this CPU has, chosen once at run time; the others are exported so tests can compare them.
 */
#ifndef SIW_CRC32C_H
#define SIW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#define SIW_CRC32C_INIT 0xFFFFFFFFu

/* Continues a CRC over buf[0..len). Safe for len == 0 and buf == NULL with len == 0. */
uint32_t siw_crc32c(uint32_t crc, const void *buf, size_t len);

/* The value to put on the wire (before byte-order conversion; see siw_crc32c_put()). */
static inline uint32_t siw_crc32c_final(uint32_t crc)
{
	return crc ^ 0xFFFFFFFFu;
}

/* Implementations, for tests and benchmarks. _hw returns the _sw result on CPUs without SSE4.2. */
uint32_t siw_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t siw_crc32c_hw(uint32_t crc, const void *buf, size_t len);
/* The SSE4.2 path that combines its chains without PCLMULQDQ (what CPUs or VMs lacking PCLMULQDQ
 * run); exported so tests can cover it on machines that have PCLMULQDQ. _sw without SSE4.2. */
uint32_t siw_crc32c_hw_nopclmul(uint32_t crc, const void *buf, size_t len);

/* Which implementation siw_crc32c() uses: "sse4.2+pclmul", "sse4.2" or "table". */
const char *siw_crc32c_impl(void);

/*
 * Lets the program embedding the core supply a faster implementation (the engine offers
 * ISA-L's crc32_iscsi when libisal is installed). fn continues a CRC like siw_crc32c; it is
 * checked against known answers first. Returns 0, or -1 (and changes nothing) if fn gives a
 * wrong answer. NULL goes back to the built-in ones. Call before any CRC is computed.
 */
typedef uint32_t (*siw_crc32c_fn)(uint32_t crc, const void *buf, size_t len);
int siw_crc32c_use(siw_crc32c_fn fn, const char *name);

/* Forces the portable implementation (tests; SIW_CRC32C=sw in the engine). */
void siw_crc32c_force_sw(int on);

/*
 * Byte order of the CRC on the wire: the final value's LEAST significant byte goes first, i.e.
 * the 32-bit value is stored little-endian, unlike every other MPA/DDP/RDMAP field (which are
 * big-endian). This is the convention of the RFC 3720 appendix B.4 examples, which RFC 5044 §6.1
 * adopts with the iSCSI CRC: 32 zero bytes give the value 0x8A9136AA, listed as "CRC: aa 36 91 8a"
 * in transmission order. A reflected CRC sends its x^31 coefficient first, and that is bit 0
 * of the register, so the byte holding bits 0..7 leads.
 *
 * Checked against real traffic: in /work/shared/pcaps/single-guest-lo-crc/crc-rping.pcap (Linux
 * 6.1 siw, mpa_crc_required=1) all 70 FPDUs carry exactly these bytes, e.g. frame 8 (a 34-byte
 * Send ULPDU) has the value 0x7A65815B and the trailer bytes 5b 81 65 7a. The same holds for every
 * FPDU of the other crc-* and 2g-crc-* captures. Careful: tshark shows that trailer as
 * "CRC check: 0x5b81657a", which is the wire bytes read big-endian, not the CRC value. The unit
 * test test_crc32c_mpa_fpdu_from_kernel_siw pins this down with frames copied from the captures.
 *
 * The MPA CRC covers the FPDU from the 2-byte ULPDU length through the pad (RFC 5044 §6.1), pad
 * bytes as sent: kernel siw does not always send zero pad (see the test).
 */
static inline void siw_crc32c_put(uint8_t *p, uint32_t final_crc)
{
	p[0] = (uint8_t)final_crc;
	p[1] = (uint8_t)(final_crc >> 8);
	p[2] = (uint8_t)(final_crc >> 16);
	p[3] = (uint8_t)(final_crc >> 24);
}

/* Reads a CRC trailer written by siw_crc32c_put() (or a peer), for comparison with
 * siw_crc32c_final(). */
static inline uint32_t siw_crc32c_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
