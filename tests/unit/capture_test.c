// SPDX-License-Identifier: MIT
/*
 * Real kernel siw traffic through the protocol core: every capture in tests/data/pcaps (Linux 6.1
 * and 6.12 siw, rping and perftest, CRC on/off, MTU-sized and GSO-sized FPDUs, loopback and a
 * real L2 link) is taken apart with helper_pcap, the MPA request and reply of every connection go
 * through siw_mpa_parse() (and are rebuilt byte for byte with the builders), and each direction's
 * FPDU stream is replayed through a siw_rx split in every way the engine can see it (all at once,
 * byte by byte, random chunks, the direct path).
 *
 * STags and tagged offsets in a capture belong to the machines that made it, so the stream is
 * first walked by a small decoder of our own that shares nothing with rx.c but the byte-access
 * helpers. It finds which STag ranges are touched and with which rights, the Sends and their
 * sizes, the READ REQUESTs, and every message's payload. The fake engine then registers exactly
 * those ranges (with guard bytes around them), posts exactly fitting receives, and loads its ORQ
 * with the READ REQUESTs of the other direction, so the real parser has to validate and place
 * every byte itself; each completion it reports is compared with the decoder's message.
 *
 * The per-file counts below were taken from tshark 4.0 (tools: decode-pcap.sh; FPDUs and
 * messages per RDMAP opcode, per connection and direction) and are hard-coded so that the test
 * does not need tshark; the decoder and the parser must both arrive at them.
 */
#include <dirent.h>
#include <stdlib.h>

#include "crc32c.h"
#include "error.h"
#include "helper_pcap.h"
#include "iwarp.h"
#include "mpa.h"
#include "rx.h"
#include "test.h"

#ifndef SIW_TEST_DATA_DIR
#error "SIW_TEST_DATA_DIR must name tests/data (set by tests/CMakeLists.txt)"
#endif
#define PCAP_DIR SIW_TEST_DATA_DIR "/pcaps"

/* ---- expectations (tshark) --------------------------------------------------------------- */

#define NOPS 8 /* RDMAP opcodes 0..7 (RFC 5040); the captures hold no RFC 7306 ones */

enum { F_CRC = 1, F_GSO = 2, F_MSS = 4 /* two guests without GSO: FPDUs fit a 1448-byte MSS */ };

struct dir_counts {
	uint16_t fpdus[NOPS];
	uint16_t msgs[NOPS];
};

struct conn_expect {
	uint16_t ird, ord; /* IRD/ORD words of both request and reply */
	struct dir_counts i2r, r2i;
};

struct cap_expect {
	const char *path; /* under PCAP_DIR */
	unsigned flags;
	unsigned nconn;
	struct conn_expect conn[2];
	bool rping;
};

/* clang-format off */
/* Opcode columns: Write, Read Request, Read Response, Send. */
#define OPS(w, rq, rr, s)  {w, rq, rr, s}
#define DIR(f, m)          {.fpdus = f, .msgs = m}
#define SAME(w, rq, rr, s) DIR(OPS(w, rq, rr, s), OPS(w, rq, rr, s))
#define NONE               SAME(0, 0, 0, 0)
/* perftest's first connection: its parameter exchange, n Sends each way, IRD/ORD 0 */
#define PARAMS(n)          {0, 0, SAME(0, 0, 0, n), SAME(0, 0, 0, n)}

/*
 * One folder's seven tests. The arguments are the tshark FPDU counts that vary with how the
 * sender cut the messages: 4 KiB and 64 KiB Read Responses, 4 KiB Sends, 4 KiB and 64 KiB
 * Writes (the message counts are the same everywhere: 20, 5, 20, 20, 5).
 */
#define FOLDER(dir, pfx, fl, rr4k, rr64k, s4k, w4k, w64k)                                        \
	{dir "/" pfx "-rping.pcap", fl, 1,                                                       \
	 {{1, 1, SAME(0, 0, 10, 20), SAME(10, 10, 0, 20)}}, true},                               \
	{dir "/" pfx "-read_bw.pcap", fl, 2,                                                     \
	 {PARAMS(16), {128, 128, SAME(0, 20, 0, 0), DIR(OPS(0, 0, rr4k, 0), OPS(0, 0, 20, 0))}}, \
	 false},                                                                                 \
	{dir "/" pfx "-read_bw_64k.pcap", fl, 2,                                                 \
	 {PARAMS(16), {128, 128, SAME(0, 5, 0, 0), DIR(OPS(0, 0, rr64k, 0), OPS(0, 0, 5, 0))}}, \
	 false},                                                                                 \
	{dir "/" pfx "-send_bw.pcap", fl, 2,                                                     \
	 {PARAMS(11), {0, 0, DIR(OPS(0, 0, 0, s4k), OPS(0, 0, 0, 20)), SAME(4, 0, 0, 0)}},       \
	 false},                                                                                 \
	{dir "/" pfx "-send_lat.pcap", fl, 2,                                                    \
	 {PARAMS(11), {0, 0, SAME(0, 0, 0, 20), SAME(0, 0, 0, 20)}}, false},                     \
	{dir "/" pfx "-write_bw.pcap", fl, 2,                                                    \
	 {PARAMS(16), {0, 0, DIR(OPS(w4k, 0, 0, 0), OPS(20, 0, 0, 0)), NONE}}, false},           \
	{dir "/" pfx "-write_bw_64k.pcap", fl, 2,                                                \
	 {PARAMS(16), {0, 0, DIR(OPS(w64k, 0, 0, 0), OPS(5, 0, 0, 0)), NONE}}, false}

static const struct cap_expect captures[] = {
	/*      folder                         prefix     flags          rr4k rr64k s4k w4k w64k */
	FOLDER("single-guest-lo",             "default", 0,             20,  12,   20, 20, 11),
	FOLDER("single-guest-lo-crc",         "crc",     F_CRC,         20,  12,   20, 20, 11),
	FOLDER("single-guest-lo-kernel-6.12", "k612",    0,             20,  10,   20, 20, 10),
	FOLDER("two-guests-eth1",             "2g",      F_MSS,         60,  230,  60, 60, 230),
	FOLDER("two-guests-eth1-crc",         "2g-crc",  F_CRC | F_MSS, 60,  230,  60, 60, 230),
	FOLDER("two-guests-eth1-gso",         "2g-gso",  F_GSO,         20,  13,   20, 20, 13),
};
/* clang-format on */
#define NCAPTURES (sizeof(captures) / sizeof(captures[0]))

static const char *const folders[] = {
    "single-guest-lo", "single-guest-lo-crc", "single-guest-lo-kernel-6.12",
    "two-guests-eth1", "two-guests-eth1-crc", "two-guests-eth1-gso",
};

/* ---- the independent decoder ------------------------------------------------------------ */

#define MAX_RANGES 32

struct dec_msg {
	uint8_t opcode;
	uint32_t stag; /* tagged: STag; SEND_INV: STag to invalidate */
	uint64_t to;   /* tagged: offset of the first byte */
	uint32_t qn, msn;
	uint32_t len; /* payload bytes */
	uint8_t *data;
	unsigned nfpdus;
	/* READ REQUEST */
	uint32_t sink_stag, rd_len, src_stag;
	uint64_t sink_to, src_to;
};

struct dec_range {
	uint32_t stag;
	uint64_t lo, hi;
	uint32_t access;
};

struct dec_stream {
	const uint8_t *buf;
	size_t len;
	bool crc;
	unsigned fpdus[16], msgs[16];
	unsigned nfpdus, nmsgs_total;
	uint64_t payload;
	unsigned max_ulpdu;
	unsigned crc_good, crc_bad, crc_zero, nonzero_pad;
	struct dec_msg *msg; /* in completion (L segment) order */
	unsigned nmsg;
	struct dec_range range[MAX_RANGES];
	unsigned nrange;
	size_t *fpdu_end; /* stream offset after each FPDU */
	const char *bad;  /* why the walk stopped early (NULL: clean) */
	size_t bad_off;
};

static void dec_range_add(struct dec_stream *d, uint32_t stag, uint64_t to, uint64_t len,
			  uint32_t access)
{
	struct dec_range *r = NULL;

	if (!len)
		return;
	for (unsigned i = 0; i < d->nrange; i++)
		if (d->range[i].stag == stag)
			r = &d->range[i];
	if (!r) {
		if (d->nrange == MAX_RANGES) {
			d->bad = "too many STags";
			return;
		}
		r = &d->range[d->nrange++];
		r->stag = stag;
		r->lo = to;
		r->hi = to + len;
		r->access = 0;
	}
	if (to < r->lo)
		r->lo = to;
	if (to + len > r->hi)
		r->hi = to + len;
	r->access |= access;
}

/* Appends a complete message (its data buffer moves with it). */
static void dec_push(struct dec_stream *d, const struct dec_msg *m)
{
	d->msg = realloc(d->msg, (d->nmsg + 1) * sizeof(*d->msg));
	d->msg[d->nmsg++] = *m;
}

/* Starts a message that may collect up to cap payload bytes (never more than the stream). */
static void dec_start(struct dec_msg *m, uint8_t op, size_t cap)
{
	memset(m, 0, sizeof(*m));
	m->opcode = op;
	m->data = malloc(cap ? cap : 1);
}

static void dec_free(struct dec_stream *d)
{
	for (unsigned i = 0; i < d->nmsg; i++)
		free(d->msg[i].data);
	free(d->msg);
	free(d->fpdu_end);
	memset(d, 0, sizeof(*d));
}

/*
 * Walks the FPDUs of one direction by their MPA length field (RFC 5044 §4: length, ULPDU, pad to
 * 4, CRC) and reads the DDP/RDMAP headers (RFC 5041 §4, RFC 5040 §4). Messages are collected in
 * the order their last segment arrives, which is the order the parser completes them.
 */
static void dec_walk(struct dec_stream *d, const uint8_t *buf, size_t len, bool crc)
{
	/* Messages in progress: at most one tagged and one untagged at a time. */
	struct dec_msg tagged = {0}, untagged = {0}, single;
	bool t_open = false, u_open = false;
	uint32_t next_msn[4] = {1, 1, 1, 1};
	size_t off = 0;

	memset(d, 0, sizeof(*d));
	d->buf = buf;
	d->len = len;
	d->crc = crc;
	d->fpdu_end = malloc((len / 8 + 1) * sizeof(size_t));
	while (off < len && !d->bad) {
		const uint8_t *h = buf + off;
		unsigned ulpdu, pad, hdr, plen;
		size_t total;
		uint8_t ddp, op;
		bool t, last;
		struct dec_msg *m;

		if (len - off < MPA_HDR_LEN + 2) {
			d->bad = "stream ends inside an FPDU header";
			break;
		}
		ulpdu = get_be16(h);
		pad = (4 - (ulpdu + 2) % 4) % 4;
		total = 2 + (size_t)ulpdu + pad + 4;
		if (total > len - off) {
			d->bad = "stream ends inside an FPDU";
			break;
		}
		ddp = h[2];
		op = h[3] & 0x0F;
		t = ddp & 0x80;
		last = ddp & 0x40;
		if ((ddp & 3) != 1 || h[3] >> 6 != 1 || op > RDMAP_TERMINATE) {
			d->bad = "not a DDP/RDMAP header";
			break;
		}
		hdr = t ? 16 : op == RDMAP_READ_REQ ? 48 : op == RDMAP_TERMINATE ? 24 : 20;
		if (ulpdu + 2 < hdr) {
			d->bad = "ULPDU shorter than its header";
			break;
		}
		plen = op == RDMAP_TERMINATE ? 0 : ulpdu + 2 - hdr;
		if (ulpdu > d->max_ulpdu)
			d->max_ulpdu = ulpdu;
		for (unsigned i = 0; i < pad; i++)
			if (h[2 + ulpdu + i])
				d->nonzero_pad++;
		if (crc) {
			uint32_t c =
			    siw_crc32c_final(siw_crc32c(SIW_CRC32C_INIT, h, 2 + ulpdu + pad));

			if (c == siw_crc32c_get(h + 2 + ulpdu + pad))
				d->crc_good++;
			else
				d->crc_bad++;
		} else if (get_be32(h + 2 + ulpdu + pad) == 0) {
			d->crc_zero++;
		}
		d->fpdus[op]++;
		d->fpdu_end[d->nfpdus++] = off + total;
		d->payload += plen;

		if (t) {
			uint32_t stag = get_be32(h + 4);
			uint64_t to = get_be64(h + 8);

			if (!t_open) {
				dec_start(&tagged, op, len);
				tagged.stag = stag;
				tagged.to = to;
				t_open = true;
			} else if (tagged.opcode != op || tagged.stag != stag ||
				   tagged.to + tagged.len != to) {
				d->bad = "tagged segment does not continue its message";
				break;
			}
			m = &tagged;
			dec_range_add(d, stag, to, plen,
				      op == RDMAP_WRITE ? SIW_MEM_REMOTE_WRITE
							: SIW_MEM_LOCAL_WRITE);
		} else {
			uint32_t qn = get_be32(h + 8), msn = get_be32(h + 12),
				 mo = get_be32(h + 16);

			if (qn > 3) {
				d->bad = "queue number";
				break;
			}
			if (op == RDMAP_SEND || op == RDMAP_SEND_INV || op == RDMAP_SEND_SE ||
			    op == RDMAP_SEND_SE_INV) {
				if (!u_open) {
					dec_start(&untagged, op, len);
					untagged.qn = qn;
					untagged.msn = msn;
					untagged.stag = get_be32(h + 4);
					u_open = true;
				} else if (untagged.opcode != op || untagged.msn != msn) {
					d->bad = "untagged segment does not continue its message";
					break;
				}
				m = &untagged;
				if (mo != m->len) {
					d->bad = "MO";
					break;
				}
			} else {
				if (plen) {
					d->bad = "READ REQUEST with payload";
					break;
				}
				m = &single;
				dec_start(m, op, 0);
				m->qn = qn;
				m->msn = msn;
				if (op == RDMAP_READ_REQ) {
					m->sink_stag = get_be32(h + 20);
					m->sink_to = get_be64(h + 24);
					m->rd_len = get_be32(h + 32);
					m->src_stag = get_be32(h + 36);
					m->src_to = get_be64(h + 40);
					dec_range_add(d, m->src_stag, m->src_to, m->rd_len,
						      SIW_MEM_REMOTE_READ);
				}
				if (!last) {
					free(m->data);
					d->bad = "multi-segment READ REQUEST or TERMINATE";
					break;
				}
			}
			/* RFC 5040 §5.1: MSN 1 first on every queue, then one up per message. */
			if (m->nfpdus == 0) {
				if (msn != next_msn[qn]) {
					d->bad = "MSN out of sequence";
					break;
				}
				next_msn[qn]++;
			}
		}
		memcpy(m->data + m->len, h + hdr, plen);
		m->len += plen;
		m->nfpdus++;
		if (last) {
			/* complete: it joins the list in the order the parser completes messages */
			d->msgs[op]++;
			d->nmsgs_total++;
			dec_push(d, m);
			if (m == &tagged)
				t_open = false;
			if (m == &untagged)
				u_open = false;
		}
		off += total;
	}
	if (!d->bad && (t_open || u_open))
		d->bad = "stream ends inside a message";
	if (t_open)
		free(tagged.data);
	if (u_open)
		free(untagged.data);
	if (d->bad)
		d->bad_off = off;
}

/* ---- the fake engine ---------------------------------------------------------------------- */

#define GUARD      64
#define GUARD_BYTE 0xA5
#define FILL_BYTE  0x5A
#define PD         1
#define QPN        5

struct fk_region {
	uint32_t stag;
	uint64_t iova, len;
	uint32_t access;
	uint8_t *mem; /* GUARD + len + GUARD */
};

struct fk_recv {
	struct siw_sge sge[3];
	unsigned nsge;
	uint8_t *buf; /* where its bytes lie in the receive region */
	uint32_t len;
};

struct fake {
	struct siw_rx rx;
	const struct dec_stream *d;
	bool check; /* compare every completion with the decoder (off for corrupted streams) */
	struct fk_region reg[MAX_RANGES + 1];
	unsigned nreg;
	struct fk_recv *rq;
	unsigned rq_n, rq_head;
	struct siw_orq_view *orq;
	unsigned orq_n, orq_head;
	unsigned next_msg;
	unsigned done[16]; /* completions per opcode */
	unsigned terms, rtrs, invalidates;
	unsigned bad_place; /* place() outside every region */
	unsigned fails;     /* mismatches found in callbacks */
	char why[256];
};

static void fk_fail(struct fake *f, const char *fmt, unsigned a, unsigned b)
{
	if (!f->fails++)
		snprintf(f->why, sizeof(f->why), fmt, a, b);
}

static struct fk_region *fk_find(struct fake *f, uint32_t stag)
{
	for (unsigned i = 0; i < f->nreg; i++)
		if (f->reg[i].stag == stag)
			return &f->reg[i];
	return NULL;
}

static int fk_mem_lookup(void *user, uint32_t stag, struct siw_mem_ref *ref)
{
	struct fake *f = user;
	struct fk_region *r = fk_find(f, stag);

	if (!r)
		return SIW_ERR_MEM_STAG;
	ref->addr = r->mem + GUARD;
	ref->iova = r->iova;
	ref->len = r->len;
	ref->access = r->access;
	ref->pd = PD;
	ref->qpn = 0;
	return 0;
}

static int fk_rq_begin(void *user, const struct siw_sge **sge, unsigned *n)
{
	struct fake *f = user;

	if (f->rq_head == f->rq_n)
		return SIW_ERR_QFULL;
	*sge = f->rq[f->rq_head].sge;
	*n = f->rq[f->rq_head].nsge;
	f->rq_head++;
	return 0;
}

static int fk_orq_head(void *user, struct siw_orq_view *e)
{
	struct fake *f = user;

	if (f->orq_head == f->orq_n)
		return SIW_ERR_STATE;
	*e = f->orq[f->orq_head];
	return 0;
}

/* Is [p, p + len) inside the data part of a registered region? */
static bool fk_inside(const struct fake *f, const uint8_t *p, size_t len)
{
	for (unsigned i = 0; i < f->nreg; i++) {
		const uint8_t *lo = f->reg[i].mem + GUARD;

		if (p >= lo && len <= f->reg[i].len && (size_t)(p - lo) <= f->reg[i].len - len)
			return true;
	}
	return false;
}

static int fk_place(void *user, void *dst, const void *src, size_t len)
{
	struct fake *f = user;

	if (!fk_inside(f, dst, len)) {
		f->bad_place++;
		fk_fail(f, "place of %u bytes outside every region (message %u)", (unsigned)len,
			f->next_msg);
		return SIW_ERR_FAULT;
	}
	memcpy(dst, src, len);
	return 0;
}

/* The next message the decoder saw complete; NULL (and a failure) if it differs in kind. */
static const struct dec_msg *fk_next(struct fake *f, uint8_t opcode)
{
	const struct dec_msg *m;

	f->done[opcode]++;
	if (!f->check)
		return NULL;
	if (f->next_msg >= f->d->nmsg) {
		fk_fail(f, "completion %u (opcode %u) the decoder did not see", f->next_msg,
			opcode);
		return NULL;
	}
	m = &f->d->msg[f->next_msg++];
	if (m->opcode != opcode &&
	    !(opcode == RDMAP_SEND && m->opcode >= RDMAP_SEND && m->opcode <= RDMAP_SEND_SE_INV)) {
		fk_fail(f, "completion %u: opcode %u, decoder says otherwise", f->next_msg - 1,
			opcode);
		return NULL;
	}
	return m;
}

static void fk_compare(struct fake *f, const struct dec_msg *m, const uint8_t *placed)
{
	if (m->len && memcmp(placed, m->data, m->len))
		fk_fail(f, "message %u (opcode %u): placed bytes differ from the capture",
			f->next_msg - 1, m->opcode);
}

static int fk_write_done(void *user, uint32_t stag, uint64_t to, uint32_t len)
{
	struct fake *f = user;
	const struct dec_msg *m = fk_next(f, RDMAP_WRITE);
	struct fk_region *r = fk_find(f, stag);

	if (!m)
		return 0;
	if (m->stag != stag || m->to != to || m->len != len) {
		fk_fail(f, "WRITE %u: STag/TO/len %u differ", f->next_msg - 1, len);
		return 0;
	}
	if (!len)
		return 0;
	if (!r || to < r->iova || to - r->iova + len > r->len) {
		fk_fail(f, "WRITE %u: outside its region (%u bytes)", f->next_msg - 1, len);
		return 0;
	}
	fk_compare(f, m, r->mem + GUARD + (to - r->iova));
	return 0;
}

static int fk_read_resp_done(void *user)
{
	struct fake *f = user;
	const struct dec_msg *m = fk_next(f, RDMAP_READ_RESP);
	const struct siw_orq_view *o;
	struct fk_region *r;

	if (f->orq_head == f->orq_n) {
		fk_fail(f, "READ RESPONSE %u without a READ (%u)", f->next_msg, 0);
		return 0;
	}
	o = &f->orq[f->orq_head++];
	if (!m)
		return 0;
	if (m->stag != o->sink_stag || m->to != o->sink_to || m->len != o->len) {
		fk_fail(f, "READ RESPONSE %u does not answer its READ (len %u)", f->next_msg - 1,
			m->len);
		return 0;
	}
	r = fk_find(f, o->sink_stag);
	if (o->len && r)
		fk_compare(f, m, r->mem + GUARD + (o->sink_to - r->iova));
	return 0;
}

static int fk_recv_done(void *user, const struct siw_rx_recv *rv)
{
	struct fake *f = user;
	const struct dec_msg *m = fk_next(f, RDMAP_SEND);
	const struct fk_recv *b = &f->rq[f->rq_head - 1];

	if (!m)
		return 0;
	if (rv->opcode != m->opcode || rv->len != m->len) {
		fk_fail(f, "SEND %u: opcode or length %u differs", f->next_msg - 1, rv->len);
		return 0;
	}
	fk_compare(f, m, b->buf);
	return 0;
}

static int fk_read_req(void *user, const struct siw_read_req *r)
{
	struct fake *f = user;
	const struct dec_msg *m = fk_next(f, RDMAP_READ_REQ);

	if (!m)
		return 0;
	if (r->sink_stag != m->sink_stag || r->sink_to != m->sink_to || r->len != m->rd_len ||
	    r->src_stag != m->src_stag || r->src_to != m->src_to || r->msn != m->msn || r->rtr)
		fk_fail(f, "READ REQUEST %u (MSN %u): fields differ", f->next_msg - 1, r->msn);
	return 0;
}

static int fk_invalidate(void *user, uint32_t stag)
{
	struct fake *f = user;

	(void)stag;
	f->invalidates++;
	return 0;
}

static int fk_terminate(void *user, const struct siw_term_info *t)
{
	struct fake *f = user;

	(void)t;
	f->terms++;
	f->done[RDMAP_TERMINATE]++;
	return 0;
}

static int fk_rtr_done(void *user)
{
	struct fake *f = user;

	f->rtrs++;
	return 0;
}

static const struct siw_rx_ops fk_ops = {
    .mem_lookup = fk_mem_lookup,
    .rq_begin = fk_rq_begin,
    .orq_head = fk_orq_head,
    .place = fk_place,
    .recv_done = fk_recv_done,
    .read_req = fk_read_req,
    .read_resp_done = fk_read_resp_done,
    .invalidate = fk_invalidate,
    .terminate = fk_terminate,
    .rtr_done = fk_rtr_done,
    .write_done = fk_write_done,
};

/* An STag no range of the capture uses, for our receive buffers. */
static uint32_t fk_free_stag(const struct dec_stream *d)
{
	for (uint32_t s = 0xFFFFF07Bu;; s -= 0x100) {
		bool used = false;

		for (unsigned i = 0; i < d->nrange; i++)
			used |= d->range[i].stag == s;
		if (!used)
			return s;
	}
}

static void fk_region_alloc(struct fk_region *r)
{
	r->mem = malloc(GUARD + r->len + GUARD);
	memset(r->mem, GUARD_BYTE, GUARD);
	memset(r->mem + GUARD, FILL_BYTE, r->len);
	memset(r->mem + GUARD + r->len, GUARD_BYTE, GUARD);
}

/*
 * Sets up the receiving side of stream d: one region per STag range the decoder found, one
 * posted receive per Send (split into up to three SGEs, exactly as long as the message), and
 * the ORQ loaded from the READ REQUESTs the other direction (`peer`) carried.
 */
static void fk_setup(struct fake *f, const struct dec_stream *d, const struct dec_stream *peer,
		     bool crc, bool check, unsigned *seed)
{
	struct siw_rx_params p = {.crc = crc, .pd = PD, .qpn = QPN};
	struct fk_region *rcv;
	size_t rcv_len = 0, pos = 0;
	unsigned nsend = 0, nread = 0;

	memset(f, 0, sizeof(*f));
	f->d = d;
	f->check = check;
	for (unsigned i = 0; i < d->nrange; i++) {
		struct fk_region *r = &f->reg[f->nreg++];

		r->stag = d->range[i].stag;
		r->iova = d->range[i].lo;
		r->len = d->range[i].hi - d->range[i].lo;
		r->access = d->range[i].access;
		fk_region_alloc(r);
	}
	for (unsigned i = 0; i < d->nmsg; i++) {
		const struct dec_msg *m = &d->msg[i];

		if (m->opcode >= RDMAP_SEND && m->opcode <= RDMAP_SEND_SE_INV) {
			nsend++;
			rcv_len += m->len + 16; /* a gap between buffers: overruns show */
		}
	}
	rcv = &f->reg[f->nreg++];
	rcv->stag = fk_free_stag(d);
	rcv->len = rcv_len;
	rcv->access = SIW_MEM_LOCAL_WRITE;
	fk_region_alloc(rcv);
	rcv->iova = (uintptr_t)(rcv->mem + GUARD);
	f->rq = calloc(nsend + 1, sizeof(*f->rq));
	for (unsigned i = 0; i < d->nmsg; i++) {
		const struct dec_msg *m = &d->msg[i];
		struct fk_recv *b;
		uint32_t left, o;

		if (m->opcode < RDMAP_SEND || m->opcode > RDMAP_SEND_SE_INV)
			continue;
		b = &f->rq[f->rq_n++];
		b->buf = rcv->mem + GUARD + pos;
		b->len = m->len;
		b->nsge = 1 + (unsigned)rand_r(seed) % 3;
		left = m->len;
		o = 0;
		for (unsigned k = 0; k < b->nsge; k++) {
			uint32_t piece =
			    k == b->nsge - 1 ? left : (uint32_t)rand_r(seed) % (left + 1);

			b->sge[k].addr = (uintptr_t)(b->buf + o);
			b->sge[k].length = piece;
			b->sge[k].lkey = rcv->stag;
			o += piece;
			left -= piece;
		}
		pos += m->len + 16;
	}
	if (peer) {
		for (unsigned i = 0; i < peer->nmsg; i++)
			nread += peer->msg[i].opcode == RDMAP_READ_REQ;
		f->orq = calloc(nread + 1, sizeof(*f->orq));
		for (unsigned i = 0; i < peer->nmsg; i++) {
			const struct dec_msg *m = &peer->msg[i];

			if (m->opcode != RDMAP_READ_REQ)
				continue;
			f->orq[f->orq_n].sink_stag = m->sink_stag;
			f->orq[f->orq_n].sink_to = m->sink_to;
			f->orq[f->orq_n].len = m->rd_len;
			f->orq_n++;
		}
	}
	siw_rx_init(&f->rx, &fk_ops, f, &p);
}

/* Guard bytes of every region untouched? */
static bool fk_guards_ok(const struct fake *f)
{
	for (unsigned i = 0; i < f->nreg; i++) {
		const struct fk_region *r = &f->reg[i];

		for (unsigned k = 0; k < GUARD; k++)
			if (r->mem[k] != GUARD_BYTE || r->mem[GUARD + r->len + k] != GUARD_BYTE)
				return false;
	}
	return true;
}

static void fk_free(struct fake *f)
{
	for (unsigned i = 0; i < f->nreg; i++)
		free(f->reg[i].mem);
	free(f->rq);
	free(f->orq);
}

/* ---- feeding ------------------------------------------------------------------------------ */

enum feed_mode { FEED_ALL, FEED_BYTES, FEED_RANDOM, FEED_DIRECT, FEED_MODES };
static const char *const feed_name[] = {"whole", "byte by byte", "random chunks", "direct"};

/* Returns the stream bytes accepted (len when all went in) or the parser's error. */
static long feed(struct fake *f, const uint8_t *in, size_t len, enum feed_mode mode, unsigned *seed)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off;
		ssize_t r;

		if (mode == FEED_DIRECT) {
			struct siw_iov iov[SIW_MAX_SGE];
			size_t avail, done = 0, want;
			int cnt = siw_rx_direct_iov(&f->rx, iov, SIW_MAX_SGE, &avail);

			if (cnt > 0 && avail) {
				/* as readv() into place would: a random part of what is offered */
				want = 1 + (size_t)rand_r(seed) % avail;
				if (want > len - off)
					want = len - off;
				for (int i = 0; i < cnt && done < want; i++) {
					size_t k =
					    iov[i].len < want - done ? iov[i].len : want - done;

					if (!fk_inside(f, iov[i].base, k)) {
						f->bad_place++;
						return SIW_ERR_FAULT;
					}
					memcpy(iov[i].base, in + off + done, k);
					done += k;
				}
				if (siw_rx_direct_done(&f->rx, done))
					return f->rx.err;
				off += done;
				continue;
			}
			n = 1 + (size_t)rand_r(seed) % 64;
		} else if (mode == FEED_BYTES) {
			n = 1;
		} else if (mode == FEED_RANDOM) {
			/* mostly small pieces, sometimes large ones */
			n = 1 + (size_t)rand_r(seed) % (rand_r(seed) % 4 ? 100 : 9000);
		}
		if (n > len - off)
			n = len - off;
		r = siw_rx_feed(&f->rx, in + off, n);
		if (r < 0)
			return r;
		if ((size_t)r != n)
			return SIW_ERR_STATE;
		off += n;
	}
	return (long)off;
}

/* ---- per capture ------------------------------------------------------------------------ */

struct conn {
	struct pc_flow *req_flow, *rep_flow;
	struct siw_mpa_frame req, rep;
	int req_len, rep_len;
	struct dec_stream i2r, r2i;
};

#define MAX_CONN 8

static bool verbose(void)
{
	return getenv("CAPTURE_TEST_VERBOSE") != NULL;
}

static void print_counts(const char *file, unsigned c, const char *dir, const struct dec_stream *d)
{
	printf("  %s conn %u %s: %zu bytes, %u FPDUs, max ULPDU %u, fpdus", file, c, dir, d->len,
	       d->nfpdus, d->max_ulpdu);
	for (unsigned i = 0; i < NOPS; i++)
		printf(" %u", d->fpdus[i]);
	printf(" msgs");
	for (unsigned i = 0; i < NOPS; i++)
		printf(" %u", d->msgs[i]);
	printf(" crc good %u bad %u zero %u, nonzero pad %u%s%s\n", d->crc_good, d->crc_bad,
	       d->crc_zero, d->nonzero_pad, d->bad ? ", stopped: " : "", d->bad ? d->bad : "");
}

/*
 * Finds the connections of a capture: a direction whose stream starts with the MPA request key
 * is the initiator's; the reverse direction must start with the reply. In order of appearance.
 */
static unsigned find_conns(struct pc_capture *pc, struct conn *conns)
{
	unsigned n = 0;
	bool taken[PC_MAX_FLOWS] = {false};

	for (;;) {
		struct pc_flow *best = NULL;
		unsigned bi = 0;

		for (unsigned i = 0; i < pc->nflows; i++) {
			struct pc_flow *fl = &pc->flows[i];

			if (taken[i] || fl->len < MPA_KEY_LEN ||
			    memcmp(fl->data, MPA_KEY_REQ, MPA_KEY_LEN))
				continue;
			if (!best || fl->first_pkt < best->first_pkt) {
				best = fl;
				bi = i;
			}
		}
		if (!best || n == MAX_CONN)
			return n;
		taken[bi] = true;
		memset(&conns[n], 0, sizeof(conns[n]));
		conns[n].req_flow = best;
		conns[n].rep_flow = pc_reverse(pc, best);
		n++;
	}
}

/* Reads one frame with siw_mpa_reader in pieces: it must stop exactly at the frame's end. */
static int read_frame(const uint8_t *buf, size_t len, bool reply, unsigned *seed)
{
	struct siw_mpa_reader r;
	size_t off = 0;

	siw_mpa_reader_init(&r, reply);
	while (siw_mpa_reader_want(&r) > 0 && off < len) {
		size_t n = 1 + (size_t)rand_r(seed) % 8;
		int k;

		if (n > len - off)
			n = len - off;
		k = siw_mpa_reader_feed(&r, buf + off, n);
		if (k < 0)
			return k;
		off += (size_t)k;
	}
	return siw_mpa_reader_want(&r) == 0 ? (int)off : SIW_ERR_AGAIN;
}

/*
 * The MPA frames of one connection: parsed, checked against the folder's siw settings, read with
 * the reader, and rebuilt byte for byte by our builders with the same settings (kernel siw and
 * softiwarp must produce identical frames for identical choices).
 */
static void check_mpa(const struct cap_expect *e, unsigned ci, struct conn *c, unsigned *seed)
{
	const struct conn_expect *ce = &e->conn[ci];
	struct siw_mpa_cfg cfg = {
	    .rev = MPA_REV_2,
	    .crc = e->flags & F_CRC ? SIW_CRC_REQUIRE : SIW_CRC_OFF,
	    .gso = e->flags & F_GSO,
	};
	uint8_t want_flags = MPA_FLAG_ENHANCED | (e->flags & F_CRC ? MPA_FLAG_CRC : 0) |
			     (e->flags & F_GSO ? MPA_FLAG_SIW_GSO : 0);
	struct siw_mpa_result res;
	uint8_t out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	const uint8_t *rq = c->req_flow->data, *rp;

	c->req_len = siw_mpa_parse(rq, c->req_flow->len, false, &c->req);
	REQUIRE(c->req_len == MPA_RR_HDR_LEN + MPA_V2_IRD_ORD_LEN);
	CHECK_INT(c->req.rev, MPA_REV_2);
	CHECK_UINT(c->req.flags, want_flags);
	CHECK(c->req.v2);
	CHECK_UINT(c->req.ird_word, ce->ird);
	CHECK_UINT(c->req.ord_word, ce->ord);
	CHECK_INT(c->req.user_pd_len, 0);
	CHECK_INT(read_frame(rq, c->req_flow->len, false, seed), c->req_len);
	CHECK_INT(siw_mpa_build_req(&cfg, ce->ird, ce->ord, NULL, 0, out, sizeof(out)), c->req_len);
	CHECK_MEM(out, rq, (size_t)c->req_len);

	REQUIRE(c->rep_flow);
	rp = c->rep_flow->data;
	c->rep_len = siw_mpa_parse(rp, c->rep_flow->len, true, &c->rep);
	REQUIRE(c->rep_len == MPA_RR_HDR_LEN + MPA_V2_IRD_ORD_LEN);
	CHECK_INT(c->rep.rev, MPA_REV_2);
	CHECK_UINT(c->rep.flags, want_flags);
	CHECK(c->rep.v2);
	CHECK_UINT(c->rep.ird_word, ce->ird);
	CHECK_UINT(c->rep.ord_word, ce->ord);
	CHECK_INT(read_frame(rp, c->rep_flow->len, true, seed), c->rep_len);
	/* A reply is not a request and vice versa. */
	{
		struct siw_mpa_frame tmp;

		CHECK(siw_mpa_parse(rp, c->rep_flow->len, false, &tmp) < 0);
		CHECK(siw_mpa_parse(rq, c->req_flow->len, true, &tmp) < 0);
	}

	/* Our responder, offered what the kernel offered, answers with the kernel's bytes. */
	CHECK_INT(siw_mpa_respond(&cfg, &c->req, ce->ird, ce->ord, &res), 0);
	CHECK(res.crc == !!(e->flags & F_CRC));
	CHECK(res.gso == !!(e->flags & F_GSO));
	CHECK(!res.markers_rx && !res.markers_tx && !res.p2p);
	CHECK_INT(res.rtr, SIW_RTR_NONE);
	CHECK_INT(siw_mpa_build_reply(&cfg, &res, false, NULL, 0, out, sizeof(out)), c->rep_len);
	CHECK_MEM(out, rp, (size_t)c->rep_len);

	/* Our initiator accepts the kernel's reply with the same outcome. */
	CHECK_INT(siw_mpa_check_reply(&cfg, ce->ird, ce->ord, &c->rep, &res), 0);
	CHECK(res.crc == !!(e->flags & F_CRC));
	CHECK(res.gso == !!(e->flags & F_GSO));
	CHECK_INT(res.ird, ce->ird);
	CHECK_INT(res.ord, ce->ord);
	CHECK(!res.p2p);
}

static void check_counts(const struct cap_expect *e, unsigned ci, const char *dir,
			 const struct dec_stream *d, const struct dir_counts *want)
{
	for (unsigned op = 0; op < NOPS; op++) {
		if (d->fpdus[op] != want->fpdus[op] || d->msgs[op] != want->msgs[op])
			t_fail(__FILE__, __LINE__,
			       "%s conn %u %s opcode %u: decoder %u FPDUs / %u messages, tshark %u "
			       "/ %u",
			       e->path, ci, dir, op, d->fpdus[op], d->msgs[op], want->fpdus[op],
			       want->msgs[op]);
	}
	for (unsigned op = NOPS; op < 16; op++)
		CHECK_INT(d->fpdus[op], 0);
}

/* Things the decoder can tell about the stream by itself, before the parser sees it. */
static void check_stream_facts(const struct cap_expect *e, const struct dec_stream *d)
{
	if (d->bad)
		t_fail(__FILE__, __LINE__, "%s: decoder stopped at %zu: %s", e->path, d->bad_off,
		       d->bad);
	if (e->flags & F_CRC) {
		/* every FPDU carries a good CRC32c, stored least significant byte first */
		CHECK_INT(d->crc_bad, 0);
		CHECK_INT(d->crc_good, d->nfpdus);
	} else {
		/* kernel siw sends a zero CRC field when CRC is off */
		CHECK_INT(d->crc_zero, d->nfpdus);
	}
	/* Two guests on a 1500-byte link: ULPDU <= MULPDU of EMSS 1448 (RFC 5044 §4.5†). */
	if (e->flags & F_MSS)
		CHECK(d->max_ulpdu <= 1442);
}

/* rping's conversation (librdmacm examples/rping.c), which the capture must show. */
static void check_rping(const struct conn *c)
{
	const struct dec_stream *cli = &c->i2r, *srv = &c->r2i;
	unsigned sends = 0, reads = 0, writes = 0, resps = 0;
	const struct dec_msg *rreq[10] = {0}, *wr[10] = {0}, *rresp[10] = {0};

	for (unsigned i = 0; i < srv->nmsg; i++) {
		const struct dec_msg *m = &srv->msg[i];

		if (m->opcode == RDMAP_READ_REQ && reads < 10)
			rreq[reads++] = m;
		if (m->opcode == RDMAP_WRITE && writes < 10)
			wr[writes++] = m;
		/* the server's Sends only say "go on": 16 zero bytes */
		if (m->opcode == RDMAP_SEND) {
			static const uint8_t zero[16];

			CHECK_INT(m->len, 16);
			if (m->len == 16)
				CHECK_MEM(m->data, zero, 16);
		}
	}
	for (unsigned i = 0; i < cli->nmsg; i++)
		if (cli->msg[i].opcode == RDMAP_READ_RESP && resps < 10)
			rresp[resps++] = &cli->msg[i];
	REQUIRE(reads == 10 && writes == 10 && resps == 10);

	for (unsigned i = 0; i < cli->nmsg; i++) {
		const struct dec_msg *m = &cli->msg[i];
		unsigned round = sends / 2;
		uint64_t buf;
		uint32_t rkey, size;

		if (m->opcode != RDMAP_SEND)
			continue;
		sends++;
		/* struct rping_rdma_info: buf (be64), rkey (be32), size (be32) */
		CHECK_INT(m->len, 16);
		if (m->len != 16 || round >= 10)
			continue;
		buf = get_be64(m->data);
		rkey = get_be32(m->data + 8);
		size = get_be32(m->data + 12);
		if (sends % 2) {
			/* the client's source buffer: what the server then READs */
			CHECK_UINT(rreq[round]->src_stag, rkey);
			CHECK_UINT(rreq[round]->src_to, buf);
			CHECK_UINT(rreq[round]->rd_len, size);
		} else {
			/* the client's sink buffer: where the server WRITEs it back */
			CHECK_UINT(wr[round]->stag, rkey);
			CHECK_UINT(wr[round]->to, buf);
			CHECK_UINT(wr[round]->len, size);
		}
	}
	CHECK_INT(sends, 20);
	for (unsigned k = 0; k < 10; k++) {
		char prefix[32];
		int n = snprintf(prefix, sizeof(prefix), "rdma-ping-%u: ", k);

		REQUIRE(rresp[k]->len == 64 && wr[k]->len == 64);
		CHECK_MEM(rresp[k]->data, prefix, (size_t)n);
		/* the server echoes what it read */
		CHECK_MEM(wr[k]->data, rresp[k]->data, 64);
		CHECK_UINT(rresp[k]->stag, rreq[k]->sink_stag);
		CHECK_UINT(rresp[k]->to, rreq[k]->sink_to);
	}
}

/* One direction through the parser in one feeding mode; everything must be placed and match. */
static void replay(const struct cap_expect *e, unsigned ci, const char *dir,
		   const struct dec_stream *d, const struct dec_stream *peer, enum feed_mode mode,
		   unsigned *seed)
{
	static struct fake f;
	long r;
	unsigned msgs = 0;

	fk_setup(&f, d, peer, e->flags & F_CRC, true, seed);
	r = feed(&f, d->buf, d->len, mode, seed);
	if (r != (long)d->len || f.fails || f.rx.err)
		t_fail(__FILE__, __LINE__, "%s conn %u %s (%s): fed %ld of %zu: %s; %s", e->path,
		       ci, dir, feed_name[mode], r, d->len, siw_strerror(f.rx.err),
		       f.fails ? f.why : "callbacks ok");
	CHECK_INT(f.rx.state, SIW_RX_HDR);
	CHECK_INT(f.rx.hdr_have, 0);
	CHECK_UINT(f.rx.stats.bytes, d->len);
	CHECK_UINT(f.rx.stats.fpdus, d->nfpdus);
	CHECK_UINT(f.rx.stats.messages, d->nmsgs_total);
	CHECK_UINT(f.rx.stats.payload, d->payload);
	if (mode != FEED_DIRECT)
		CHECK_UINT(f.rx.stats.direct, 0);
	CHECK_INT(f.next_msg, d->nmsg);
	CHECK_INT(f.done[RDMAP_WRITE], d->msgs[RDMAP_WRITE]);
	CHECK_INT(f.done[RDMAP_READ_REQ], d->msgs[RDMAP_READ_REQ]);
	CHECK_INT(f.done[RDMAP_READ_RESP], d->msgs[RDMAP_READ_RESP]);
	for (unsigned op = RDMAP_SEND; op <= RDMAP_SEND_SE_INV; op++)
		msgs += d->msgs[op];
	CHECK_INT(f.done[RDMAP_SEND], msgs);
	CHECK_INT(f.rq_head, f.rq_n);   /* every posted receive used */
	CHECK_INT(f.orq_head, f.orq_n); /* every READ answered */
	CHECK_INT(f.terms + f.rtrs + f.invalidates, 0);
	CHECK_INT(f.bad_place, 0);
	CHECK(fk_guards_ok(&f));
	fk_free(&f);
}

struct loaded {
	struct pc_capture pc;
	struct conn conn[MAX_CONN];
	unsigned nconn;
};

/* Loads a capture, finds its connections and decodes both directions of each. */
static bool load(const struct cap_expect *e, struct loaded *L, unsigned *seed)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", PCAP_DIR, e->path);
	if (pc_load(&L->pc, path)) {
		t_fail(__FILE__, __LINE__, "cannot read %s", path);
		return false;
	}
	CHECK(!L->pc.truncated);
	CHECK_INT(L->pc.short_caps, 0);
	L->nconn = find_conns(&L->pc, L->conn);
	if (L->nconn != e->nconn) {
		t_fail(__FILE__, __LINE__, "%s: %u connections, want %u", e->path, L->nconn,
		       e->nconn);
		return false;
	}
	for (unsigned i = 0; i < L->nconn; i++) {
		struct conn *c = &L->conn[i];
		size_t rq_len, rp_len;

		CHECK(!c->req_flow->gap);
		check_mpa(e, i, c, seed);
		if (c->req_len <= 0 || c->rep_len <= 0 || !c->rep_flow)
			return false;
		CHECK(!c->rep_flow->gap);
		rq_len = (size_t)c->req_len;
		rp_len = (size_t)c->rep_len;
		dec_walk(&c->i2r, c->req_flow->data + rq_len, c->req_flow->len - rq_len,
			 e->flags & F_CRC);
		dec_walk(&c->r2i, c->rep_flow->data + rp_len, c->rep_flow->len - rp_len,
			 e->flags & F_CRC);
		if (verbose()) {
			print_counts(e->path, i, "i2r", &c->i2r);
			print_counts(e->path, i, "r2i", &c->r2i);
		}
	}
	return true;
}

static void unload(struct loaded *L)
{
	for (unsigned i = 0; i < L->nconn; i++) {
		dec_free(&L->conn[i].i2r);
		dec_free(&L->conn[i].r2i);
	}
	pc_free(&L->pc);
}

static void test_capture_replay(void)
{
	static struct loaded L;
	unsigned seed = 4242;

	for (unsigned k = 0; k < NCAPTURES; k++) {
		const struct cap_expect *e = &captures[k];
		int before = t_failures;

		if (!load(e, &L, &seed)) {
			unload(&L);
			continue;
		}
		for (unsigned i = 0; i < L.nconn; i++) {
			struct conn *c = &L.conn[i];

			check_counts(e, i, "initiator->responder", &c->i2r, &e->conn[i].i2r);
			check_counts(e, i, "responder->initiator", &c->r2i, &e->conn[i].r2i);
			check_stream_facts(e, &c->i2r);
			check_stream_facts(e, &c->r2i);
			if (c->i2r.bad || c->r2i.bad)
				continue;
			for (int m = 0; m < FEED_MODES; m++) {
				replay(e, i, "i2r", &c->i2r, &c->r2i, (enum feed_mode)m, &seed);
				replay(e, i, "r2i", &c->r2i, &c->i2r, (enum feed_mode)m, &seed);
			}
		}
		if (e->rping && L.nconn == 1)
			check_rping(&L.conn[0]);
		if (t_failures != before)
			fprintf(stderr, "  ^ in %s\n", e->path);
		unload(&L);
	}
}

/* Folders hold exactly the captures listed above (a new capture must get its numbers). */
static void test_capture_inventory(void)
{
	for (unsigned i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
		char path[512];
		DIR *dir;
		struct dirent *de;
		unsigned n = 0;

		snprintf(path, sizeof(path), "%s/%s", PCAP_DIR, folders[i]);
		dir = opendir(path);
		if (!dir) {
			t_fail(__FILE__, __LINE__, "cannot open %s", path);
			continue;
		}
		while ((de = readdir(dir))) {
			size_t l = strlen(de->d_name);
			bool listed = false;

			if (l < 5 || strcmp(de->d_name + l - 5, ".pcap"))
				continue;
			n++;
			for (unsigned k = 0; k < NCAPTURES; k++) {
				const char *p = captures[k].path;
				size_t fl = strlen(folders[i]);

				listed |= !strncmp(p, folders[i], fl) && p[fl] == '/' &&
					  !strcmp(p + fl + 1, de->d_name);
			}
			if (!listed)
				t_fail(__FILE__, __LINE__, "%s/%s has no expectations here", path,
				       de->d_name);
		}
		closedir(dir);
		CHECK_INT(n, 7);
	}
}

/* ---- corrupted streams -------------------------------------------------------------------- */

#define E_LLP_CRC SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_CRC)

/*
 * A few bytes of a real stream flipped. With CRC the parser must not complete the FPDU that
 * holds the first flipped byte: it stops there with a CRC error, or earlier with a header error,
 * or (a flipped length that reaches past the end) is still waiting for that FPDU's bytes. Without
 * CRC anything may be accepted. Either way nothing is written outside the regions, and the
 * parser stays dead after its first error.
 */
static void flip_one(const struct cap_expect *e, const struct dec_stream *d,
		     const struct dec_stream *peer, unsigned *seed)
{
	static struct fake f;
	uint8_t *buf;
	size_t first = SIZE_MAX;
	unsigned nflip = 1 + (unsigned)rand_r(seed) % 3, before_fpdus = 0;
	enum feed_mode mode;
	long r;

	if (!d->len)
		return;
	buf = malloc(d->len);
	memcpy(buf, d->buf, d->len);
	for (unsigned i = 0; i < nflip; i++) {
		size_t pos = (size_t)rand_r(seed) % d->len;

		buf[pos] ^= (uint8_t)(1 + rand_r(seed) % 255);
		if (pos < first)
			first = pos;
	}
	/* FPDUs that end before the first flipped byte are intact */
	while (before_fpdus < d->nfpdus && d->fpdu_end[before_fpdus] <= first)
		before_fpdus++;

	fk_setup(&f, d, peer, e->flags & F_CRC, false, seed);
	mode = (enum feed_mode)(rand_r(seed) % FEED_MODES);
	if (mode == FEED_BYTES && d->len > 16384)
		mode = FEED_RANDOM; /* the replay test already goes byte by byte through it all */
	r = feed(&f, buf, d->len, mode, seed);
	CHECK_INT(f.bad_place, 0);
	CHECK(fk_guards_ok(&f));
	CHECK(f.rx.stats.bytes <= d->len);
	if (r < 0) {
		uint8_t more[4] = {0};

		CHECK_INT(f.rx.state, SIW_RX_DEAD);
		CHECK_INT(r, f.rx.err);
		CHECK_INT(siw_rx_feed(&f.rx, more, sizeof(more)), f.rx.err);
		CHECK(siw_err_is_term(f.rx.err) || f.rx.err == SIW_ERR_TERMINATED);
	}
	if (e->flags & F_CRC) {
		if (f.rx.stats.fpdus > before_fpdus)
			t_fail(
			    __FILE__, __LINE__,
			    "%s: %llu FPDUs completed, but byte %zu (in FPDU %u) was flipped; %s",
			    e->path, (unsigned long long)f.rx.stats.fpdus, first, before_fpdus,
			    siw_strerror(f.rx.err));
		/* no error only if the damaged FPDU is still incomplete (its length was hit) */
		if (!f.rx.err)
			CHECK(f.rx.state != SIW_RX_HDR || f.rx.hdr_have > 0);
		/* Nothing with a flipped byte was delivered; a TERMINATE needs a good CRC too. */
		CHECK_INT(f.terms + f.rtrs, 0);
		if (f.rx.err && f.rx.err != E_LLP_CRC && siw_err_term_layer(f.rx.err) == 2)
			t_fail(__FILE__, __LINE__, "%s: unexpected MPA error %s", e->path,
			       siw_strerror(f.rx.err));
	}
	fk_free(&f);
	free(buf);
}

static void test_capture_corrupted(void)
{
	static struct loaded L;
	unsigned seed = 777;

	for (unsigned k = 0; k < NCAPTURES; k++) {
		const struct cap_expect *e = &captures[k];

		if (!load(e, &L, &seed)) {
			unload(&L);
			continue;
		}
		for (unsigned i = 0; i < L.nconn; i++) {
			for (unsigned n = 0; n < 16; n++) {
				flip_one(e, &L.conn[i].i2r, &L.conn[i].r2i, &seed);
				flip_one(e, &L.conn[i].r2i, &L.conn[i].i2r, &seed);
			}
		}
		unload(&L);
	}
}

/* ---- guest-to-host: MPA requests of every siw module parameter variant ------------------- */

struct g2h_expect {
	const char *bin; /* raw request the host received */
	uint8_t flags, rev;
	uint16_t pd_len, ird, ord;
	struct siw_mpa_cfg cfg; /* how softiwarp would ask for the same */
};

static const struct g2h_expect g2h[] = {
    {"mpa-req-pristine-default.bin", 0x10, 2, 4, 0x0001, 0x0001, {.rev = 2}},
    {"mpa-req-crc_required.bin", 0x50, 2, 4, 0x0001, 0x0001, {.rev = 2, .crc = SIW_CRC_REQUIRE}},
    {"mpa-req-peer_to_peer.bin",
     0x10,
     2,
     4,
     0x8001,
     0xC001,
     {.rev = 2, .p2p = true, .rtr_types = 1 << SIW_RTR_WRITE | 1 << SIW_RTR_READ}},
    {"mpa-req-mpa_version1.bin", 0x00, 1, 0, 0, 0, {.rev = 1}},
    {"mpa-req-try_gso.bin", 0x18, 2, 4, 0x0001, 0x0001, {.rev = 2, .gso = true}},
};

static void test_capture_guest_to_host(void)
{
	static struct loaded L;
	unsigned seed = 99, n;
	char path[512];
	struct siw_mpa_frame f;
	uint8_t out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	size_t len;
	uint8_t *bin;

	snprintf(path, sizeof(path), "%s/guest-to-host/guest-eth0.pcap", PCAP_DIR);
	REQUIRE(pc_load(&L.pc, path) == 0);
	CHECK(!L.pc.truncated);
	n = find_conns(&L.pc, L.conn);
	/* five requests the host only recorded, then one it replayed to the guest's rping -s */
	CHECK_INT(n, 6);
	for (unsigned i = 0; i < n && i < 6; i++) {
		struct conn *c = &L.conn[i];
		const struct g2h_expect *x = &g2h[i < 5 ? i : 0];
		int r = siw_mpa_parse(c->req_flow->data, c->req_flow->len, false, &f);
		uint16_t ird = x->ird & MPA_V2_IRD_ORD_MASK, ord = x->ord & MPA_V2_IRD_ORD_MASK;

		CHECK_INT(r, MPA_RR_HDR_LEN + x->pd_len);
		CHECK_UINT(f.flags, x->flags);
		CHECK_INT(f.rev, x->rev);
		CHECK_INT(f.pd_len, x->pd_len);
		CHECK_UINT(f.ird_word, x->ird);
		CHECK_UINT(f.ord_word, x->ord);
		CHECK(f.v2 == (x->rev == 2));
		CHECK_INT(read_frame(c->req_flow->data, c->req_flow->len, false, &seed), r);
		/* nothing follows a request the host never answered */
		if (i < 5) {
			CHECK_UINT(c->req_flow->len, (size_t)r);
			CHECK(!c->rep_flow || c->rep_flow->len == 0);
		}
		/* the same request from our builder */
		CHECK_INT(siw_mpa_build_req(&x->cfg, ird, ord, NULL, 0, out, sizeof(out)), r);
		if (r > 0)
			CHECK_MEM(out, c->req_flow->data, (size_t)r);
		/* and the raw bytes the host recorded are the same frame */
		snprintf(path, sizeof(path), "%s/guest-to-host/%s", PCAP_DIR, x->bin);
		bin = t_read_file(path, &len);
		if (bin && r > 0) {
			CHECK_UINT(len, (size_t)r);
			if (len == (size_t)r)
				CHECK_MEM(bin, c->req_flow->data, len);
		}
		free(bin);
	}
	/* the replay: guest siw (rping -s) answered with its reply */
	if (n == 6) {
		struct conn *c = &L.conn[5];

		REQUIRE(c->rep_flow && c->rep_flow->len >= 24);
		snprintf(path, sizeof(path), "%s/guest-to-host/mpa-reply-from-guest.bin", PCAP_DIR);
		bin = t_read_file(path, &len);
		REQUIRE(bin);
		CHECK_INT(siw_mpa_parse(bin, len, true, &f), 24);
		CHECK_UINT(f.flags, 0x10);
		CHECK_UINT(f.ird_word, 1);
		CHECK_UINT(f.ord_word, 1);
		CHECK_MEM(c->rep_flow->data, bin, 24);
		free(bin);
	}
	unload(&L);
}

/* ---- the pcap reader on its own ---------------------------------------------------------------
 */

/* Reordered, duplicated and overlapping segments give the same stream as clean ones. */
static void test_pcap_reassembly(void)
{
	static uint8_t file[1 << 16];
	static struct pc_capture pc;
	uint8_t payload[300];
	size_t off = 24;
	/* (offset, length) of each segment in the order they are written to the file */
	static const unsigned segs[][2] = {
	    {100, 50}, {0, 60}, {60, 40}, {0, 60}, {140, 100}, {230, 70}, {10, 20}, {150, 150},
	};
	struct pc_flow *f;

	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 13 + 1);
	/* file header: little-endian, microseconds, Linux cooked v1 */
	memset(file, 0, 24);
	file[0] = 0xD4, file[1] = 0xC3, file[2] = 0xB2, file[3] = 0xA1;
	file[4] = 2, file[6] = 4;
	file[16] = 0xFF, file[17] = 0xFF;
	file[20] = PC_LINK_LINUX_SLL;
	for (unsigned i = 0; i <= sizeof(segs) / sizeof(segs[0]); i++) {
		/* the last record is the SYN, written after the data: order must not matter */
		bool syn = i == sizeof(segs) / sizeof(segs[0]);
		unsigned so = syn ? 0 : segs[i][0], sl = syn ? 0 : segs[i][1];
		unsigned iplen = 20 + 20 + sl, caplen = 16 + iplen;
		uint8_t *r = file + off, *ip = r + 16 + 16, *tcp = ip + 20;
		uint32_t seq = 1000 + 1 + so - (syn ? 1 : 0);

		memset(r, 0, 16 + caplen);
		r[8] = (uint8_t)caplen, r[9] = (uint8_t)(caplen >> 8);
		r[12] = (uint8_t)caplen, r[13] = (uint8_t)(caplen >> 8);
		r[16 + 14] = 0x08; /* protocol IPv4 */
		ip[0] = 0x45;
		put_be16(ip + 2, (uint16_t)iplen);
		ip[9] = 6;
		ip[12] = 10, ip[15] = 1;
		ip[16] = 10, ip[19] = 2;
		put_be16(tcp, 4000);
		put_be16(tcp + 2, 5000);
		put_be32(tcp + 4, seq);
		tcp[12] = 5 << 4;
		tcp[13] = syn ? 0x02 : 0x18;
		memcpy(tcp + 20, payload + so, sl);
		off += 16 + caplen;
	}
	REQUIRE(pc_parse(&pc, file, off) == 0);
	CHECK_INT(pc.nflows, 1);
	CHECK_INT(pc.packets, 9);
	f = &pc.flows[0];
	CHECK(f->syn);
	CHECK(!f->gap);
	CHECK_UINT(f->len, sizeof(payload));
	if (f->len == sizeof(payload))
		CHECK_MEM(f->data, payload, sizeof(payload));
	CHECK(pc_reverse(&pc, f) == NULL);
	pc_free(&pc);

	/* a hole: the stream stops before it */
	REQUIRE(pc_parse(&pc, file, 24 + (16 + 16 + 40 + 50) + (16 + 16 + 40 + 60)) == 0);
	CHECK_INT(pc.nflows, 1);
	CHECK_UINT(pc.flows[0].len, 60);
	CHECK(pc.flows[0].gap);
	pc_free(&pc);

	/* garbage is refused or cut, never read past */
	CHECK_INT(pc_parse(&pc, file, 23), -1);
	pc_free(&pc);
	REQUIRE(pc_parse(&pc, file, 24 + 20) == 0);
	CHECK(pc.truncated);
	pc_free(&pc);
}

T_MAIN(T_CASE(test_pcap_reassembly), T_CASE(test_capture_inventory),
       T_CASE(test_capture_guest_to_host), T_CASE(test_capture_replay),
       T_CASE(test_capture_corrupted))
