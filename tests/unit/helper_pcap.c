// SPDX-License-Identifier: MIT
/*
 * Classic pcap reader and TCP stream rebuilder (see helper_pcap.h). Written for untrusted input:
 * every header is read through bounds-checked helpers, nothing is trusted to be aligned, and all
 * growth is bounded.
 */
#include "helper_pcap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCAP_HDR_LEN 24
#define PCAP_REC_LEN 16
/* No link layer we know has a record this large; larger ones are treated as garbage. */
#define PCAP_MAX_REC (16u << 20)

#define ETH_P_IPV4     0x0800
#define ETH_P_IPV6     0x86DD
#define ETH_P_VLAN     0x8100
#define ETH_P_QINQ     0x88A8
#define ETH_P_QINQ_OLD 0x9100

#define IPPROTO_TCP_ 6
#define TCP_FIN      0x01
#define TCP_SYN      0x02
#define TCP_RST      0x04

static uint16_t rd16be(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t rd32le(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t rd32(const struct pc_capture *c, const uint8_t *p)
{
	/* The file header says which byte order the writer had; "swapped" means big-endian. */
	return c->swapped ? rd32be(p) : rd32le(p);
}

/* ---- flows ------------------------------------------------------------------------------- */

struct pc_tuple {
	uint8_t af;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
};

static struct pc_flow *flow_get(struct pc_capture *c, const struct pc_tuple *t, unsigned pkt)
{
	struct pc_flow *f;

	for (unsigned i = 0; i < c->nflows; i++) {
		f = &c->flows[i];
		if (f->af == t->af && f->sport == t->sport && f->dport == t->dport &&
		    !memcmp(f->src, t->src, 16) && !memcmp(f->dst, t->dst, 16))
			return f;
	}
	if (c->nflows == PC_MAX_FLOWS) {
		c->truncated = true;
		return NULL;
	}
	f = &c->flows[c->nflows++];
	memset(f, 0, sizeof(*f));
	f->af = t->af;
	memcpy(f->src, t->src, 16);
	memcpy(f->dst, t->dst, 16);
	f->sport = t->sport;
	f->dport = t->dport;
	f->first_pkt = pkt;
	return f;
}

static void flow_add_seg(struct pc_capture *c, struct pc_flow *f, uint32_t seq, const uint8_t *data,
			 uint32_t len, unsigned pkt)
{
	if (!len)
		return;
	if (c->nsegs >= PC_MAX_SEGS) {
		c->truncated = true;
		return;
	}
	if (f->nsegs == f->segs_cap) {
		unsigned cap = f->segs_cap ? f->segs_cap * 2 : 64;
		struct pc_seg *s = realloc(f->segs, cap * sizeof(*s));

		if (!s) {
			c->truncated = true;
			return;
		}
		f->segs = s;
		f->segs_cap = cap;
	}
	f->segs[f->nsegs].seq = seq;
	f->segs[f->nsegs].len = len;
	f->segs[f->nsegs].pkt = pkt;
	f->segs[f->nsegs].data = data;
	f->nsegs++;
	c->nsegs++;
}

/* ---- layers ------------------------------------------------------------------------------ */

static void parse_tcp(struct pc_capture *c, struct pc_tuple *t, const uint8_t *p, size_t len,
		      unsigned pkt)
{
	struct pc_flow *f;
	unsigned doff;
	uint32_t seq;
	uint8_t flags;

	if (len < 20) {
		c->skipped++;
		return;
	}
	doff = (unsigned)(p[12] >> 4) * 4;
	if (doff < 20 || doff > len) {
		c->skipped++;
		return;
	}
	t->sport = rd16be(p);
	t->dport = rd16be(p + 2);
	seq = rd32be(p + 4);
	flags = p[13];
	c->tcp_packets++;
	f = flow_get(c, t, pkt);
	if (!f)
		return;
	if (flags & TCP_SYN) {
		f->syn = true;
		f->isn = seq;
		seq++; /* the SYN takes one sequence number; data (TFO) follows it */
	}
	if (flags & (TCP_FIN | TCP_RST))
		f->fin = true;
	if (flags & TCP_RST)
		return; /* RFC 5961 allows data on a RST, but it is never part of the stream */
	flow_add_seg(c, f, seq, p + doff, (uint32_t)(len - doff), pkt);
}

static void parse_ipv4(struct pc_capture *c, const uint8_t *p, size_t len, unsigned pkt)
{
	struct pc_tuple t = {.af = 4};
	unsigned ihl;
	size_t tot;

	if (len < 20 || p[0] >> 4 != 4) {
		c->skipped++;
		return;
	}
	ihl = (unsigned)(p[0] & 0x0F) * 4;
	tot = rd16be(p + 2);
	/*
	 * A total length of 0 is what a capture of a TSO/GSO super-packet can show; use what was
	 * captured. A total length shorter than the capture means link-layer padding to cut off.
	 */
	if (tot == 0 || tot > len)
		tot = len;
	if (ihl < 20 || ihl > tot) {
		c->skipped++;
		return;
	}
	/* Fragments (MF set, or an offset): TCP over iWARP never fragments; skip them. */
	if ((rd16be(p + 6) & 0x3FFF) != 0 || p[9] != IPPROTO_TCP_) {
		c->skipped++;
		return;
	}
	memcpy(t.src, p + 12, 4);
	memcpy(t.dst, p + 16, 4);
	parse_tcp(c, &t, p + ihl, tot - ihl, pkt);
}

static void parse_ipv6(struct pc_capture *c, const uint8_t *p, size_t len, unsigned pkt)
{
	struct pc_tuple t = {.af = 6};
	size_t plen, off = 40;
	uint8_t nh;

	if (len < 40 || p[0] >> 4 != 6) {
		c->skipped++;
		return;
	}
	plen = rd16be(p + 4);
	/* 0: a jumbogram or a GSO super-packet; take what was captured. */
	if (plen == 0 || plen > len - 40)
		plen = len - 40;
	len = 40 + plen;
	nh = p[6];
	memcpy(t.src, p + 8, 16);
	memcpy(t.dst, p + 24, 16);
	/* Skip the extension headers a TCP packet may carry; give up on fragments. */
	for (unsigned hops = 0; nh != IPPROTO_TCP_; hops++) {
		size_t ext;

		if (hops == 8 || (nh != 0 && nh != 43 && nh != 60) || len - off < 8) {
			c->skipped++;
			return;
		}
		ext = ((size_t)p[off + 1] + 1) * 8;
		if (ext > len - off) {
			c->skipped++;
			return;
		}
		nh = p[off];
		off += ext;
	}
	parse_tcp(c, &t, p + off, len - off, pkt);
}

static void parse_ip(struct pc_capture *c, const uint8_t *p, size_t len, unsigned pkt)
{
	if (len && p[0] >> 4 == 4)
		parse_ipv4(c, p, len, pkt);
	else if (len && p[0] >> 4 == 6)
		parse_ipv6(c, p, len, pkt);
	else
		c->skipped++;
}

static void parse_ethertype(struct pc_capture *c, uint16_t type, const uint8_t *p, size_t len,
			    unsigned pkt)
{
	if (type == ETH_P_IPV4)
		parse_ipv4(c, p, len, pkt);
	else if (type == ETH_P_IPV6)
		parse_ipv6(c, p, len, pkt);
	else
		c->skipped++;
}

static void parse_link(struct pc_capture *c, const uint8_t *p, size_t len, unsigned pkt)
{
	switch (c->linktype) {
	case PC_LINK_ETHERNET: {
		size_t off = 12;
		uint16_t type;

		if (len < 14) {
			c->skipped++;
			return;
		}
		type = rd16be(p + off);
		/* Up to two VLAN tags (802.1Q, 802.1ad QinQ). */
		for (int i = 0;
		     i < 2 && (type == ETH_P_VLAN || type == ETH_P_QINQ || type == ETH_P_QINQ_OLD);
		     i++) {
			if (len - off < 6) {
				c->skipped++;
				return;
			}
			off += 4;
			type = rd16be(p + off);
		}
		off += 2;
		parse_ethertype(c, type, p + off, len - off, pkt);
		return;
	}
	case PC_LINK_LINUX_SLL:
		/* packet type, ARPHRD, address length, address[8], protocol */
		if (len < 16) {
			c->skipped++;
			return;
		}
		parse_ethertype(c, rd16be(p + 14), p + 16, len - 16, pkt);
		return;
	case PC_LINK_LINUX_SLL2:
		/* protocol, reserved, ifindex, ARPHRD, packet type, address length, address[8] */
		if (len < 20) {
			c->skipped++;
			return;
		}
		parse_ethertype(c, rd16be(p), p + 20, len - 20, pkt);
		return;
	case PC_LINK_NULL:
	case PC_LINK_LOOP: {
		uint32_t fam;

		if (len < 4) {
			c->skipped++;
			return;
		}
		/* The family is a host-order word of the capturing machine; its value decides. */
		fam = c->linktype == PC_LINK_LOOP ? rd32be(p) : rd32(c, p);
		if (fam == 2)
			parse_ipv4(c, p + 4, len - 4, pkt);
		else if (fam == 10 || fam == 24 || fam == 28 || fam == 30)
			parse_ipv6(c, p + 4, len - 4, pkt);
		else
			c->skipped++;
		return;
	}
	case PC_LINK_RAW:
	case PC_LINK_RAW_BSD:
	case PC_LINK_RAW_BSD2:
		parse_ip(c, p, len, pkt);
		return;
	case PC_LINK_IPV4:
		parse_ipv4(c, p, len, pkt);
		return;
	case PC_LINK_IPV6:
		parse_ipv6(c, p, len, pkt);
		return;
	default:
		c->skipped++;
		return;
	}
}

/* ---- reassembly -------------------------------------------------------------------------- */

/* Segments sorted by position in the stream; arrival order among equals (first copy wins). */
static int seg_cmp(const void *a, const void *b)
{
	const struct pc_seg *x = a, *y = b;

	/* The seq fields hold stream offsets here (see reassemble()). */
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	if (x->pkt != y->pkt)
		return x->pkt < y->pkt ? -1 : 1;
	return 0;
}

static void reassemble(struct pc_capture *c, struct pc_flow *f)
{
	uint32_t base;
	uint64_t end = 0;
	unsigned n = 0;

	if (!f->nsegs)
		return;
	if (f->syn) {
		base = f->isn + 1;
	} else {
		/*
		 * No SYN in the capture: the stream starts at the lowest sequence number seen,
		 * judged by serial-number arithmetic against the first segment (RFC 1982).
		 */
		base = f->segs[0].seq;
		for (unsigned i = 1; i < f->nsegs; i++)
			if ((int32_t)(f->segs[i].seq - base) < 0)
				base = f->segs[i].seq;
	}
	/* Rewrite seq as the offset in the stream; drop what lies before the start or too far. */
	for (unsigned i = 0; i < f->nsegs; i++) {
		struct pc_seg s = f->segs[i];

		s.seq -= base;
		if (s.seq >= PC_MAX_STREAM)
			continue;
		f->segs[n++] = s;
	}
	f->nsegs = n;
	qsort(f->segs, n, sizeof(*f->segs), seg_cmp);

	/* First pass: how far the stream goes without a hole. */
	for (unsigned i = 0; i < n; i++) {
		const struct pc_seg *s = &f->segs[i];

		if (s->seq > end) {
			f->gap = true;
			break;
		}
		if (s->seq + (uint64_t)s->len > end)
			end = s->seq + (uint64_t)s->len;
	}
	if (end > PC_MAX_STREAM) {
		end = PC_MAX_STREAM;
		c->truncated = true;
	}
	f->data = malloc(end ? (size_t)end : 1);
	if (!f->data) {
		c->truncated = true;
		return;
	}
	f->len = (size_t)end;
	/* Second pass: copy each byte from the first segment (in arrival order) that has it. */
	end = 0;
	for (unsigned i = 0; i < n && end < f->len; i++) {
		const struct pc_seg *s = &f->segs[i];
		uint64_t s_end = s->seq + (uint64_t)s->len;

		if (s->seq > end)
			break;
		if (s_end > f->len)
			s_end = f->len;
		if (s_end <= end) {
			f->dup_bytes += s->len;
			continue;
		}
		f->dup_bytes += (unsigned)(end - s->seq);
		memcpy(f->data + end, s->data + (end - s->seq), (size_t)(s_end - end));
		end = s_end;
	}
}

/* ---- file -------------------------------------------------------------------------------- */

int pc_parse(struct pc_capture *c, const uint8_t *buf, size_t len)
{
	uint32_t magic;
	size_t off = PCAP_HDR_LEN;

	memset(c, 0, sizeof(*c));
	if (len < PCAP_HDR_LEN)
		return -1;
	magic = rd32le(buf);
	switch (magic) {
	case 0xA1B2C3D4:
		break;
	case 0xA1B23C4D:
		c->nanosec = true;
		break;
	case 0xD4C3B2A1:
		c->swapped = true;
		break;
	case 0x4D3CB2A1:
		c->swapped = true;
		c->nanosec = true;
		break;
	default:
		return -1; /* pcapng (0x0A0D0D0A) and anything else */
	}
	/* The link type's upper bits hold an FCS length on some writers; only the low 16 count. */
	c->linktype = rd32(c, buf + 20) & 0xFFFF;
	switch (c->linktype) {
	case PC_LINK_NULL:
	case PC_LINK_ETHERNET:
	case PC_LINK_RAW_BSD:
	case PC_LINK_RAW_BSD2:
	case PC_LINK_RAW:
	case PC_LINK_LOOP:
	case PC_LINK_LINUX_SLL:
	case PC_LINK_IPV4:
	case PC_LINK_IPV6:
	case PC_LINK_LINUX_SLL2:
		break;
	default:
		return -1;
	}

	while (off < len) {
		uint32_t caplen, wirelen;

		if (len - off < PCAP_REC_LEN || c->packets >= PC_MAX_PACKETS) {
			c->truncated = true;
			break;
		}
		caplen = rd32(c, buf + off + 8);
		wirelen = rd32(c, buf + off + 12);
		off += PCAP_REC_LEN;
		if (caplen > PCAP_MAX_REC || caplen > len - off) {
			c->truncated = true;
			break;
		}
		if (caplen < wirelen)
			c->short_caps++;
		parse_link(c, buf + off, caplen, c->packets);
		c->packets++;
		off += caplen;
	}
	for (unsigned i = 0; i < c->nflows; i++)
		reassemble(c, &c->flows[i]);
	/* The segments point into buf; the caller may free it now. */
	for (unsigned i = 0; i < c->nflows; i++) {
		free(c->flows[i].segs);
		c->flows[i].segs = NULL;
		c->flows[i].segs_cap = 0;
	}
	return 0;
}

int pc_load(struct pc_capture *c, const char *path)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int ret;

	memset(c, 0, sizeof(*c));
	if (!fp) {
		fprintf(stderr, "pcap: cannot open %s\n", path);
		return -1;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			uint8_t *nb;

			cap = cap ? cap * 2 : 1 << 16;
			if (cap > (256u << 20)) {
				fprintf(stderr, "pcap: %s is too large\n", path);
				free(buf);
				fclose(fp);
				return -1;
			}
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(fp);
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
		if (n == 0)
			break;
	}
	fclose(fp);
	ret = pc_parse(c, buf, len);
	if (ret)
		fprintf(stderr, "pcap: %s is not a classic pcap file with a known link type\n",
			path);
	free(buf);
	return ret;
}

void pc_free(struct pc_capture *c)
{
	for (unsigned i = 0; i < c->nflows; i++) {
		free(c->flows[i].segs);
		free(c->flows[i].data);
	}
	memset(c, 0, sizeof(*c));
}

struct pc_flow *pc_reverse(struct pc_capture *c, const struct pc_flow *f)
{
	for (unsigned i = 0; i < c->nflows; i++) {
		struct pc_flow *r = &c->flows[i];

		if (r->af == f->af && r->sport == f->dport && r->dport == f->sport &&
		    !memcmp(r->src, f->dst, 16) && !memcmp(r->dst, f->src, 16))
			return r;
	}
	return NULL;
}

static void addr_str(uint8_t af, const uint8_t *a, char *out, size_t sz)
{
	if (af == 4) {
		snprintf(out, sz, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		return;
	}
	/* Plain groups without "::" compression: good enough for a test log. */
	snprintf(out, sz, "[%x:%x:%x:%x:%x:%x:%x:%x]", rd16be(a), rd16be(a + 2), rd16be(a + 4),
		 rd16be(a + 6), rd16be(a + 8), rd16be(a + 10), rd16be(a + 12), rd16be(a + 14));
}

char *pc_flow_name(const struct pc_flow *f, char *out, size_t sz)
{
	char s[48], d[48];

	addr_str(f->af, f->src, s, sizeof(s));
	addr_str(f->af, f->dst, d, sizeof(d));
	snprintf(out, sz, "%s:%u -> %s:%u", s, f->sport, d, f->dport);
	return out;
}
