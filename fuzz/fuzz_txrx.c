// SPDX-License-Identifier: MIT
/*
 * fuzz_txrx: a differential round trip. The input describes a sequence of RDMAP messages
 * (opcode, length, where the payload comes from and goes to, how it is gathered) and the
 * connection's framing (MULPDU, CRC, markers, batch sizes); siw_tx turns them into a byte stream
 * through real batches, and siw_rx, configured the same way, must take every byte without an
 * error, complete every message, and leave the destination memory exactly as the messages say
 * (and nothing outside it).
 *
 * Input (see fuzz/README.md):
 *	byte 0	   flags: 0x01 CRC, 0x02 markers, 0x04 direct path on receive, 0x08 small batches,
 *		   0x10 RFC 7306 (immediate data and atomics)
 *	bytes 1-2  MULPDU (be16; below 47 or 0: 65535)
 *	byte 3	   receive chunks: 0 all at once, 1 byte by byte (the first 8 KiB), else the seed
 *		   of random chunk sizes
 *	then 8 bytes per message:
 *	  byte 0     bits 0-6: opcode selector, mod 7 (mod 11 with RFC 7306): WRITE, SEND,
 *	             SEND_SE, SEND_INV, SEND_SE_INV, READ REQUEST, READ RESPONSE, IMMEDIATE DATA,
 *	             IMMEDIATE DATA with SE, ATOMIC REQUEST, ATOMIC RESPONSE; bit 7: a large
 *	             message
 *	  bytes 1-3  length (be24) mod 2 KiB + 1, or mod 64 KiB + 1 for a large message
 *	  bytes 4-5  destination offset (be16)
 *	  byte 6     bits 0-2: gather pieces (1..8); bits 4-5: receive SGEs (1..4)
 *	  byte 7     seed for where the pieces are cut (atomics: bit 0 CmpSwap)
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "helper_peer.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

#define PD      7
#define QPN     3
#define GUARD   64
#define GBYTE   0xC3
#define MAXMSG  48
#define DST_LEN (64 * 1024 + 512)
#define RCV_LEN (64 * 1024 + 512)
#define SRC_LEN (128 * 1024)
#define NINV    8 /* regions a SEND with Invalidate may name, one each */
#define STREAM  (8u << 20)
#define MAXEV   (MAXMSG + NINV)
/* Enough for the long cases (many FPDUs, many markers) and still fast per input. */
#define STREAM_SOFT (1u << 20)

static uint8_t *src, *dst, *rcv, *inv_mem, *stream;
static uint8_t *want_dst, *want_rcv;
static struct tp_peer peer;

static void init_once(void)
{
	if (src)
		return;
	src = malloc(SRC_LEN);
	for (size_t i = 0; i < SRC_LEN; i++)
		src[i] = (uint8_t)(i * 131 + (i >> 9));
	dst = malloc(DST_LEN + 2 * GUARD);
	rcv = malloc(RCV_LEN + 2 * GUARD);
	inv_mem = malloc(64);
	stream = malloc(STREAM);
	want_dst = malloc(DST_LEN);
	want_rcv = malloc(RCV_LEN);
}

static unsigned next_rand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Cuts len bytes into n pieces at points chosen by the seed (some pieces may be empty). */
static void cut(uint32_t len, unsigned n, unsigned *seed, uint32_t *piece)
{
	uint32_t left = len;

	for (unsigned k = 0; k < n; k++) {
		piece[k] = k == n - 1 ? left : next_rand(seed) % (left + 1);
		left -= piece[k];
	}
}

static bool guards_ok(const uint8_t *m, size_t len)
{
	for (unsigned k = 0; k < GUARD; k++)
		if (m[k] != GBYTE || m[GUARD + len + k] != GBYTE)
			return false;
	return true;
}

/* Copies a batch out as sendmsg() would, checking its accounting. */
static size_t flush(const struct siw_tx_batch *b, size_t used)
{
	size_t sum = 0;

	CHECK(b->niov <= SIW_TX_BATCH_IOV && b->nfpdus <= SIW_TX_BATCH_FPDUS);
	CHECK(b->arena_used <= SIW_TX_ARENA);
	for (unsigned i = 0; i < b->niov; i++) {
		CHECK(used + sum + b->iov[i].len <= STREAM);
		memcpy(stream + used + sum, b->iov[i].base, b->iov[i].len);
		sum += b->iov[i].len;
	}
	CHECK(sum == b->bytes);
	return sum;
}

/* What the receiver must report, in order. */
static struct tp_event want_ev[MAXEV];
static unsigned nwant;

static struct tp_event *expect(enum tp_ev_type t)
{
	struct tp_event *e = &want_ev[nwant++];

	memset(e, 0, sizeof(*e));
	e->type = t;
	return e;
}

/* The receiver's event log against what was sent. */
static void check_events(void)
{
	CHECK(peer.nev == nwant);
	for (unsigned i = 0; i < nwant; i++) {
		const struct tp_event *g = &peer.ev[i], *w = &want_ev[i];

		CHECK(g->type == w->type);
		switch (w->type) {
		case TP_EV_RECV:
			CHECK(g->recv.len == w->recv.len && g->recv.opcode == w->recv.opcode);
			CHECK(g->recv.solicited == w->recv.solicited);
			CHECK(g->recv.invalidate == w->recv.invalidate);
			CHECK(!w->recv.invalidate || g->recv.inv_stag == w->recv.inv_stag);
			break;
		case TP_EV_WRITE:
		case TP_EV_INVALIDATE:
			CHECK(g->stag == w->stag && g->to == w->to && g->len == w->len);
			break;
		case TP_EV_READ_REQ:
			CHECK(g->rreq.sink_stag == w->rreq.sink_stag &&
			      g->rreq.sink_to == w->rreq.sink_to && g->rreq.len == w->rreq.len &&
			      g->rreq.src_stag == w->rreq.src_stag &&
			      g->rreq.src_to == w->rreq.src_to && g->rreq.msn == w->rreq.msn);
			break;
		case TP_EV_IMM:
			CHECK(!memcmp(g->imm, w->imm, 8) && g->solicited == w->solicited);
			break;
		case TP_EV_ATOMIC_REQ:
			CHECK(g->areq.aop == w->areq.aop && g->areq.req_id == w->areq.req_id);
			CHECK(g->areq.stag == w->areq.stag && g->areq.to == w->areq.to);
			CHECK(g->areq.add_swap == w->areq.add_swap &&
			      g->areq.add_swap_mask == w->areq.add_swap_mask);
			CHECK(g->areq.cmp == w->areq.cmp && g->areq.cmp_mask == w->areq.cmp_mask);
			CHECK(g->areq.msn == w->areq.msn && g->areq.target == w->areq.target);
			break;
		case TP_EV_ATOMIC_RESP:
			CHECK(g->aresp.req_id == w->aresp.req_id && g->aresp.orig == w->aresp.orig);
			break;
		default:
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct siw_tx_batch batch;
	struct siw_tx tx;
	struct siw_tx_params tp;
	struct siw_rx_params rp = {.pd = PD, .qpn = QPN};
	uint32_t dst_stag, rcv_stag, inv_stag[NINV];
	unsigned nmsg, ninv = 0, seed, split, nkinds;
	uint32_t msn[RDMAP_NUM_QN] = {0, 0, 0, 0};
	uint64_t payload = 0;
	size_t used = 0, off = 0;
	uint16_t mulpdu;
	bool direct, small;

	if (size < 4)
		return 0;
	init_once();
	tp.crc = data[0] & 1;
	tp.markers = data[0] & 2;
	direct = data[0] & 4;
	small = data[0] & 8;
	rp.rfc7306 = data[0] & 0x10;
	nkinds = rp.rfc7306 ? 11 : 7;
	mulpdu = get_be16(data + 1);
	tp.max_ulpdu = mulpdu < 47 ? 0 : mulpdu;
	rp.crc = tp.crc;
	rp.markers = tp.markers;
	rp.max_ulpdu = tp.max_ulpdu;
	split = data[3];
	seed = split;
	nmsg = (unsigned)((size - 4) / 8);
	if (nmsg > MAXMSG)
		nmsg = MAXMSG;

	tp_init(&peer, &rp);
	siw_tx_init(&tx, &tp);
	nwant = 0;
	memset(dst, GBYTE, DST_LEN + 2 * GUARD);
	memset(rcv, GBYTE, RCV_LEN + 2 * GUARD);
	memcpy(want_dst, dst + GUARD, DST_LEN);
	memcpy(want_rcv, rcv + GUARD, RCV_LEN);
	dst_stag = tp_add_mr_ex(&peer, dst + GUARD, DST_LEN, 0x100000,
				SIW_MEM_REMOTE_WRITE | SIW_MEM_REMOTE_READ | SIW_MEM_LOCAL_WRITE |
				    SIW_MEM_REMOTE_ATOMIC,
				PD, 0);
	rcv_stag = tp_add_mr_ex(&peer, rcv + GUARD, RCV_LEN, 0x200000, SIW_MEM_LOCAL_WRITE, PD, 0);
	for (unsigned i = 0; i < NINV; i++)
		inv_stag[i] =
		    tp_add_mr_ex(&peer, inv_mem, 64, 0x300000, SIW_MEM_REMOTE_WRITE, PD, 0);

	siw_tx_batch_reset(&batch);
	for (unsigned i = 0; i < nmsg; i++) {
		const uint8_t *d = data + 4 + 8 * i;
		struct siw_iov v[8];
		uint32_t piece[8];
		struct siw_tx_msg m = {0};
		struct tp_event *e;
		unsigned kind = (d[0] & 0x7F) % nkinds, npiece = 1 + (d[6] & 7) % 8, cseed = d[7];
		/* mostly short messages: the edges (0, 1, around MULPDU) are there, and it is fast
		 */
		uint32_t len = ((uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]) %
			       (d[0] & 0x80 ? 64 * 1024 + 1 : 2 * 1024 + 1);
		uint32_t doff = get_be16(d + 4), soff;
		int r;

		/* SEND with Invalidate needs an STag nobody invalidated yet */
		if ((kind == 3 || kind == 4) && ninv == NINV)
			kind = 1;
		/* an Atomic Request (72 header bytes) needs a MULPDU of at least 71 */
		if (kind == 9 && tp.max_ulpdu && tp.max_ulpdu < AREQ_HDR_LEN - MPA_HDR_LEN + 1)
			kind = 0;
		if (kind >= 7)
			len = 0; /* the RFC 7306 messages carry no payload */
		if (doff > DST_LEN - len)
			doff = DST_LEN - len;
		soff = (doff * 7u + len) % (SRC_LEN - len - 64 + 1);
		cut(len, npiece, &cseed, piece);
		for (unsigned k = 0, pos = soff; k < npiece; k++) {
			v[k].base = src + pos;
			v[k].len = piece[k];
			pos += piece[k];
		}
		m.iov = v;
		m.niov = npiece;
		m.len = len;
		switch (kind) {
		case 0:
			m.opcode = RDMAP_WRITE;
			m.stag = dst_stag;
			m.to = 0x100000 + doff;
			memcpy(want_dst + doff, src + soff, len);
			e = expect(TP_EV_WRITE);
			e->stag = m.stag;
			e->to = m.to;
			e->len = len;
			break;
		case 1:
		case 2:
		case 3:
		case 4: {
			static const uint8_t ops[] = {RDMAP_SEND, RDMAP_SEND_SE, RDMAP_SEND_INV,
						      RDMAP_SEND_SE_INV};
			struct siw_sge sge[4];
			unsigned ns = 1 + ((d[6] >> 4) & 3), o = doff;
			uint32_t sp[4];

			m.opcode = ops[kind - 1];
			if (kind >= 3) {
				m.stag = inv_stag[ninv++];
				expect(TP_EV_INVALIDATE)->stag = m.stag;
			}
			cut(len, ns, &cseed, sp);
			for (unsigned k = 0; k < ns; k++) {
				sge[k].addr = 0x200000 + o;
				sge[k].length = sp[k];
				sge[k].lkey = rcv_stag;
				o += sp[k];
			}
			tp_post_recv(&peer, sge, ns);
			memcpy(want_rcv + doff, src + soff, len);
			e = expect(TP_EV_RECV);
			e->recv.len = len;
			e->recv.opcode = m.opcode;
			e->recv.solicited = kind == 2 || kind == 4;
			e->recv.invalidate = kind >= 3;
			e->recv.inv_stag = m.stag;
			msn[RDMAP_QN_SEND]++;
			break;
		}
		case 5:
			m.opcode = RDMAP_READ_REQ;
			m.iov = NULL;
			m.niov = 0;
			m.len = 0;
			m.rd_sink_stag = 0x4242;
			m.rd_sink_to = doff;
			m.rd_len = len;
			m.rd_src_stag = dst_stag;
			m.rd_src_to = 0x100000 + doff;
			e = expect(TP_EV_READ_REQ);
			e->rreq.sink_stag = m.rd_sink_stag;
			e->rreq.sink_to = m.rd_sink_to;
			e->rreq.len = len;
			e->rreq.src_stag = m.rd_src_stag;
			e->rreq.src_to = m.rd_src_to;
			e->rreq.msn = ++msn[RDMAP_QN_READ_REQ];
			break;
		case 6:
			m.opcode = RDMAP_READ_RESP;
			m.stag = dst_stag;
			m.to = 0x100000 + doff;
			tp_push_orq(&peer, dst_stag, m.to, len);
			memcpy(want_dst + doff, src + soff, len);
			expect(TP_EV_READ_RESP);
			break;
		case 7:
		case 8:
			m.opcode = kind == 7 ? RDMAP_IMM_DATA : RDMAP_IMM_DATA_SE;
			m.niov = 0;
			memcpy(m.imm, src + soff, 8);
			e = expect(TP_EV_IMM);
			memcpy(e->imm, m.imm, 8);
			e->solicited = kind == 8;
			msn[RDMAP_QN_SEND]++;
			break;
		case 9:
			m.opcode = RDMAP_ATOMIC_REQ;
			m.niov = 0;
			m.aop = d[7] & 1 ? AOP_CMP_SWAP : AOP_FETCH_ADD;
			m.req_id = i * 0x01010101u;
			m.stag = dst_stag;
			m.to = 0x100000 + (doff & ~7u);
			memcpy(&m.add_swap, src + soff, 8);
			memcpy(&m.add_swap_mask, src + soff + 8, 8);
			memcpy(&m.cmp, src + soff + 16, 8);
			memcpy(&m.cmp_mask, src + soff + 24, 8);
			e = expect(TP_EV_ATOMIC_REQ);
			e->areq.aop = m.aop;
			e->areq.req_id = m.req_id;
			e->areq.stag = m.stag;
			e->areq.to = m.to;
			e->areq.add_swap = m.add_swap;
			e->areq.add_swap_mask = m.add_swap_mask;
			e->areq.cmp = m.cmp;
			e->areq.cmp_mask = m.cmp_mask;
			e->areq.msn = ++msn[RDMAP_QN_READ_REQ];
			e->areq.target = dst + GUARD + (doff & ~7u);
			break;
		default: {
			struct siw_orq_view *o;

			m.opcode = RDMAP_ATOMIC_RESP;
			m.niov = 0;
			m.req_id = ~i;
			memcpy(&m.orig, src + soff, 8);
			tp_push_orq(&peer, 0, 0, 8);
			o = &peer.orq[(peer.orq_tail - 1) % TP_MAX_ORQ];
			o->atomic = true;
			o->req_id = m.req_id;
			e = expect(TP_EV_ATOMIC_RESP);
			e->aresp.req_id = m.req_id;
			e->aresp.orig = m.orig;
			break;
		}
		}
		if (m.opcode != RDMAP_READ_REQ)
			payload += len;
		r = siw_tx_begin(&tx, &m);
		CHECK(r == 0);
		CHECK(siw_tx_busy(&tx));
		for (;;) {
			r = siw_tx_fill(&tx, &batch);
			CHECK(r == 0 || r == 1);
			/* small batches: sent after every message, as a slow socket would */
			if (r == 0 || small) {
				CHECK(batch.niov > 0);
				used += flush(&batch, used);
				siw_tx_batch_reset(&batch);
			}
			if (r == 1)
				break;
		}
		CHECK(!siw_tx_busy(&tx));
		/* helper_peer queues hold 64; longer streams bring little more than time */
		if (peer.rq_tail - peer.rq_head >= TP_MAX_RQ - 1 ||
		    peer.orq_tail - peer.orq_head >= TP_MAX_ORQ - 1 || used > STREAM_SOFT)
			nmsg = i + 1;
	}
	used += flush(&batch, used);
	CHECK(tx.stats.bytes == used && tx.stream_pos == used);
	CHECK(tx.stats.messages == nmsg && tx.stats.payload == payload);

	/* ---- receive it all ---- */
	while (off < used) {
		size_t n = used - off;

		if (direct) {
			struct siw_iov iov[SIW_MAX_SGE];
			size_t avail, want, done = 0;
			int cnt = siw_rx_direct_iov(&peer.rx, iov, SIW_MAX_SGE, &avail);

			if (cnt > 0 && avail) {
				want = 1 + next_rand(&seed) % avail;
				if (want > n)
					want = n;
				for (int k = 0; k < cnt && done < want; k++) {
					size_t c =
					    iov[k].len < want - done ? iov[k].len : want - done;
					uint8_t *b = iov[k].base;

					CHECK(
					    (b >= dst + GUARD && b + c <= dst + GUARD + DST_LEN) ||
					    (b >= rcv + GUARD && b + c <= rcv + GUARD + RCV_LEN));
					memcpy(b, stream + off + done, c);
					done += c;
				}
				CHECK(siw_rx_direct_done(&peer.rx, done) == 0);
				off += done;
				continue;
			}
		}
		/* byte by byte only at the start: a 3 MB stream one byte per call is just slow */
		if (split == 1 && off < 8192)
			n = 1;
		else if (split)
			n = 1 + next_rand(&seed) % 3000;
		if (n > used - off)
			n = used - off;
		CHECK(siw_rx_feed(&peer.rx, stream + off, n) == (ssize_t)n);
		off += n;
	}
	CHECK(peer.rx.err == 0 && peer.rx.state == SIW_RX_HDR && peer.rx.hdr_have == 0);
	CHECK(peer.rx.stats.bytes == used);
	CHECK(peer.rx.stats.fpdus == tx.stats.fpdus);
	CHECK(peer.rx.stats.messages == tx.stats.messages);
	CHECK(peer.rx.stats.payload == tx.stats.payload);
	check_events();
	CHECK(peer.rq_head == peer.rq_tail && peer.orq_head == peer.orq_tail);
	CHECK(!memcmp(dst + GUARD, want_dst, DST_LEN));
	CHECK(!memcmp(rcv + GUARD, want_rcv, RCV_LEN));
	CHECK(guards_ok(dst, DST_LEN) && guards_ok(rcv, RCV_LEN));
	return 0;
}
