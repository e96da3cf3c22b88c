/* SPDX-License-Identifier: MIT */
/*
 * A small reader for classic libpcap files (no libpcap needed): walks the packets, takes the
 * link layer (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback, raw IP), IPv4/IPv6 and
 * TCP apart, and rebuilds the byte stream of every TCP direction in sequence order (duplicates,
 * retransmissions and reordering resolved by sequence number). Tests use it to replay real
 * captures through the protocol core.
 *
 * The input is untrusted (a capture file, or a fuzzer's bytes): every length is checked against
 * what is really there, and the totals are bounded (PC_MAX_*). A stream stops at its first hole;
 * the flow says so (gap) instead of inventing bytes.
 */
#ifndef SIW_TEST_PCAP_H
#define SIW_TEST_PCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds: a capture with more is cut there (pc_capture.truncated says so). */
#define PC_MAX_FLOWS   64
#define PC_MAX_PACKETS (1u << 20)
#define PC_MAX_SEGS    (1u << 18)  /* TCP segments with payload, all flows together */
#define PC_MAX_STREAM  (64u << 20) /* bytes rebuilt per direction */

/* Link types seen in pcap headers (the LINKTYPE_* registry). */
#define PC_LINK_NULL       0 /* BSD loopback, host-order address family */
#define PC_LINK_ETHERNET   1
#define PC_LINK_RAW_BSD    12 /* raw IP on some BSDs */
#define PC_LINK_RAW_BSD2   14
#define PC_LINK_RAW        101
#define PC_LINK_LOOP       108 /* OpenBSD loopback, network-order address family */
#define PC_LINK_LINUX_SLL  113
#define PC_LINK_IPV4       228
#define PC_LINK_IPV6       229
#define PC_LINK_LINUX_SLL2 276

/* One TCP segment's payload, pointing into the capture buffer. */
struct pc_seg {
	uint32_t seq; /* sequence number of the first payload byte */
	uint32_t len;
	uint32_t pkt; /* packet index, to keep arrival order among equal sequence numbers */
	const uint8_t *data;
};

/* One direction of one TCP connection. */
struct pc_flow {
	uint8_t af;               /* 4 or 6 */
	uint8_t src[16], dst[16]; /* IPv4 addresses use the first 4 bytes */
	uint16_t sport, dport;
	unsigned first_pkt; /* index of the first packet of this direction */
	bool syn;           /* the SYN was seen: the stream starts at its sequence number + 1 */
	uint32_t isn;       /* sequence number of the SYN */
	bool fin;           /* a FIN or RST was seen */

	/* Segments while reading; the rebuilt stream after pc_reassemble(). */
	struct pc_seg *segs;
	unsigned nsegs, segs_cap;

	uint8_t *data; /* rebuilt stream (malloc'ed), len bytes from the first one */
	size_t len;
	bool gap;           /* a hole in the sequence space: data stops before it */
	unsigned dup_bytes; /* payload bytes seen more than once (retransmissions) */
};

struct pc_capture {
	uint32_t linktype;
	bool nanosec;         /* timestamps in nanoseconds (magic a1b23c4d) */
	bool swapped;         /* file written on a machine of the other byte order */
	unsigned packets;     /* records read */
	unsigned tcp_packets; /* records with a TCP header we could parse */
	unsigned skipped;     /* records that were not TCP, or malformed, or fragments */
	unsigned short_caps;  /* records cut by the snap length (caplen < wire length) */
	bool truncated;       /* the file ends inside a record, or a bound was hit */
	struct pc_flow flows[PC_MAX_FLOWS];
	unsigned nflows;
	unsigned nsegs; /* segments held, all flows together */
};

/*
 * Parses a whole pcap file image buf[0..len) and rebuilds every flow's stream. The capture keeps
 * pointers into buf until pc_reassemble() has run (done here), so buf must outlive only this
 * call. Returns 0, or -1 if buf is not a classic pcap file (bad magic, unknown link type, or a
 * pcapng file); a file that is merely cut short or has malformed records returns 0 with
 * truncated/skipped set.
 */
int pc_parse(struct pc_capture *c, const uint8_t *buf, size_t len);

/* Reads a file and pc_parse()s it. Returns 0 or -1 (and says why on stderr). */
int pc_load(struct pc_capture *c, const char *path);

/* Releases the flows' memory. The capture may be parsed into again afterwards. */
void pc_free(struct pc_capture *c);

/* The other direction of f's connection, or NULL if it carried nothing. */
struct pc_flow *pc_reverse(struct pc_capture *c, const struct pc_flow *f);

/* "10.0.2.15:42130 -> 10.0.2.2:17001" into out (at most sz bytes); returns out. */
char *pc_flow_name(const struct pc_flow *f, char *out, size_t sz);

#endif
