// SPDX-License-Identifier: MIT
/*
 * fuzz_mpa: MPA connection setup (mpa.c). Arbitrary bytes go through siw_mpa_reader as a
 * request, the bytes after it as a reply; each frame is parsed and judged by siw_mpa_respond()
 * and siw_mpa_check_reply() under configurations taken from the input. Then a full negotiation
 * between two of our own ends (build_req -> respond -> build_reply -> check_reply) must agree
 * with itself whenever both ends accept.
 *
 * Input (see fuzz/README.md):
 *	byte 0, 2   initiator / responder configuration: bit 0 rev 2 (else 1), bits 1-2 CRC mode
 *		    (mod 3), bit 3 markers, bit 4 accept markers, bit 5 P2P, bit 6 relaxed IRD,
 *		    bit 7 GSO
 *	byte 1, 3   bits 0-2: RTR types offered / accepted (SEND, WRITE, READ); bits 3-7 of byte 1:
 *		    the seed of the reader's chunk sizes; bit 3 of byte 3: the responder rejects
 *	bytes 4-11  initiator IRD, ORD, responder IRD, ORD (be16 each)
 *	byte 12     private data length for our builders (x3); the bytes are taken from the stream
 *	rest	    the stream: request frame, then reply frame, then anything
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mpa.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

#define HDR        13
#define RTR_BIT(t) (1u << (t))
#define RTR_ALL    (RTR_BIT(SIW_RTR_SEND) | RTR_BIT(SIW_RTR_WRITE) | RTR_BIT(SIW_RTR_READ))

static void cfg_from(uint8_t b, uint8_t rtr, struct siw_mpa_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->rev = b & 1 ? MPA_REV_2 : MPA_REV_1;
	c->crc = (enum siw_crc_mode)(((b >> 1) & 3) % 3);
	c->markers = b & 0x08;
	c->accept_markers = b & 0x10;
	c->p2p = b & 0x20;
	c->relaxed_ird = b & 0x40;
	c->gso = b & 0x80;
	c->rtr_types = (uint16_t)((rtr & 7) << 1); /* 1 << SIW_RTR_SEND .. 1 << SIW_RTR_READ */
}

static bool is_llp_err(int e, unsigned code)
{
	return e == SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, code);
}

/* A parsed frame's pointers stay inside the bytes it was parsed from and agree with its header. */
static void check_frame(const struct siw_mpa_frame *f, const uint8_t *buf, size_t len, int n)
{
	CHECK(n >= MPA_RR_HDR_LEN && (size_t)n <= len);
	CHECK((size_t)n == MPA_RR_HDR_LEN + (size_t)f->pd_len);
	CHECK(f->pd_len <= MPA_MAX_PRIVDATA);
	CHECK(f->pd == buf + MPA_RR_HDR_LEN);
	CHECK(f->user_pd >= f->pd && f->user_pd + f->user_pd_len <= buf + n);
	CHECK(f->flags == buf[MPA_RR_OFF_FLAGS] && f->rev == buf[MPA_RR_OFF_REV]);
	CHECK(f->rev <= MPA_REV_2);
	if (f->v2) {
		CHECK(f->rev == MPA_REV_2 && (f->flags & MPA_FLAG_ENHANCED));
		CHECK(f->pd_len >= MPA_V2_IRD_ORD_LEN && f->user_pd == f->pd + MPA_V2_IRD_ORD_LEN);
		CHECK(f->ird_word == get_be16(f->pd) && f->ord_word == get_be16(f->pd + 2));
	} else {
		CHECK(f->user_pd == f->pd && f->user_pd_len == f->pd_len);
	}
	if (f->flags & MPA_FLAG_ENHANCED)
		CHECK(f->rev == MPA_REV_2);
}

/*
 * Reads one frame with the reader in chunks. Returns the bytes it took (the frame length) or its
 * error; the reader never asks for or takes a byte past the frame.
 */
static int read_frame(struct siw_mpa_reader *r, bool reply, const uint8_t *in, size_t len,
		      unsigned *seed)
{
	size_t off = 0;

	siw_mpa_reader_init(r, reply);
	for (;;) {
		int want = siw_mpa_reader_want(r), k;
		size_t n;

		if (want <= 0) {
			/* complete or bad: nothing more is taken */
			if (off < len)
				CHECK(siw_mpa_reader_feed(r, in + off, len - off) ==
				      (want ? want : 0));
			return want ? want : (int)off;
		}
		CHECK((size_t)want + r->have <= sizeof(r->buf));
		if (off == len)
			return SIW_ERR_AGAIN;
		n = 1 + (size_t)rand_r(seed) % 40;
		if (n > len - off)
			n = len - off;
		k = siw_mpa_reader_feed(r, in + off, n);
		CHECK(k >= 0 && (size_t)k <= n && k <= want);
		CHECK(k == (int)((size_t)want < n ? (size_t)want : n));
		off += (size_t)k;
		CHECK(r->have == off);
	}
}

/* The responder's verdict on a request, and the reply it builds from it. */
static void respond_and_reply(const struct siw_mpa_cfg *cfg, const struct siw_mpa_frame *req,
			      uint16_t ird, uint16_t ord, bool reject, const uint8_t *pd,
			      size_t pd_len, struct siw_mpa_result *res, int *verdict, uint8_t *out,
			      int *out_len)
{
	unsigned offered = 0;
	struct siw_mpa_frame rep;
	int r = siw_mpa_respond(cfg, req, ird, ord, res), n;

	*verdict = r;
	*out_len = -1;
	if (req->v2) {
		if (req->ird_word & MPA_V2_RTR_SEND)
			offered |= RTR_BIT(SIW_RTR_SEND);
		if (req->ord_word & MPA_V2_RTR_WRITE)
			offered |= RTR_BIT(SIW_RTR_WRITE);
		if (req->ord_word & MPA_V2_RTR_READ)
			offered |= RTR_BIT(SIW_RTR_READ);
	}
	CHECK(r == 0 || is_llp_err(r, TERM_ECODE_LLP_BAD_REQREP) ||
	      is_llp_err(r, TERM_ECODE_LLP_INSUFFICIENT_IRD) ||
	      is_llp_err(r, TERM_ECODE_LLP_NO_MATCHING_RTR));
	/* res is filled before any verdict */
	CHECK(res->rev <= MPA_REV_2 && res->rev <= req->rev);
	CHECK(res->rev != MPA_REV_2 || (req->v2 && cfg->rev == MPA_REV_2));
	CHECK(res->ird <= MPA_V2_IRD_ORD_MASK && res->ord <= MPA_V2_IRD_ORD_MASK);
	CHECK(res->user_pd == req->user_pd && res->user_pd_len == req->user_pd_len);
	if (r == 0) {
		CHECK(res->crc == ((req->flags & MPA_FLAG_CRC) || cfg->crc != SIW_CRC_OFF));
		CHECK(res->markers_tx == !!(req->flags & MPA_FLAG_MARKERS));
		CHECK(!res->markers_tx || cfg->accept_markers);
		CHECK(res->markers_rx == cfg->markers);
		CHECK(res->gso == (cfg->gso && (req->flags & MPA_FLAG_SIW_GSO)));
		if (res->p2p) {
			/* exactly one type, offered by the peer and acceptable to us */
			CHECK(res->rev == MPA_REV_2 && (req->ird_word & MPA_V2_PEER_TO_PEER));
			CHECK(res->rtr >= SIW_RTR_SEND && res->rtr <= SIW_RTR_READ);
			CHECK(RTR_BIT(res->rtr) & offered & cfg->rtr_types);
		} else {
			CHECK(res->rtr == SIW_RTR_NONE);
			CHECK(res->rev != MPA_REV_2 || !(req->ird_word & MPA_V2_PEER_TO_PEER));
		}
		if (res->rev == MPA_REV_2 && !cfg->relaxed_ird) {
			uint16_t pord = req->ord_word & MPA_V2_IRD_ORD_MASK;
			uint16_t pird = req->ird_word & MPA_V2_IRD_ORD_MASK;

			/* what the peer may send fits, what we may send is covered */
			if (pord != MPA_V2_IRD_ORD_NONE)
				CHECK(pord <= res->ird);
			if (pird != MPA_V2_IRD_ORD_NONE)
				CHECK(res->ord <= pird);
		}
	}
	if (r != 0)
		reject = true; /* a refused request is answered with a reject in its revision */

	n = siw_mpa_build_reply(cfg, res, reject, pd, pd_len, out,
				MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA);
	if (n == SIW_ERR_INVAL) {
		CHECK(pd_len > MPA_MAX_PRIVDATA - (res->rev == MPA_REV_2 ? MPA_V2_IRD_ORD_LEN : 0));
		return;
	}
	CHECK(n > 0);
	*out_len = n;
	if (res->rev == 0)
		return; /* our initiator never asks for rev 0, so it refuses such replies */
	CHECK(siw_mpa_parse(out, (size_t)n, true, &rep) == n);
	check_frame(&rep, out, (size_t)n, n);
	CHECK(rep.rev == res->rev && rep.v2 == (res->rev == MPA_REV_2));
	CHECK(!!(rep.flags & MPA_FLAG_CRC) == res->crc);
	CHECK(!!(rep.flags & MPA_FLAG_REJECT) == reject);
	CHECK(!!(rep.flags & MPA_FLAG_MARKERS) == (!reject && res->markers_rx));
	CHECK(rep.user_pd_len == pd_len && (!pd_len || !memcmp(rep.user_pd, pd, pd_len)));
	if (rep.v2) {
		CHECK((rep.ird_word & MPA_V2_IRD_ORD_MASK) == res->ird);
		CHECK((rep.ord_word & MPA_V2_IRD_ORD_MASK) == res->ord);
		CHECK(!!(rep.ird_word & MPA_V2_PEER_TO_PEER) == (!reject && res->p2p));
	}
}

/* The initiator's verdict on a reply. */
static void check_reply(const struct siw_mpa_cfg *cfg, uint16_t ird, uint16_t ord,
			const struct siw_mpa_frame *rep, struct siw_mpa_result *res, int *verdict)
{
	int r = siw_mpa_check_reply(cfg, ird, ord, rep, res);

	*verdict = r;
	CHECK(r == 0 || r == SIW_ERR_REJECTED || is_llp_err(r, TERM_ECODE_LLP_BAD_REQREP) ||
	      is_llp_err(r, TERM_ECODE_LLP_INSUFFICIENT_IRD) ||
	      is_llp_err(r, TERM_ECODE_LLP_NO_MATCHING_RTR));
	CHECK(res->user_pd == rep->user_pd && res->user_pd_len == rep->user_pd_len);
	if (rep->flags & MPA_FLAG_REJECT)
		CHECK(r == SIW_ERR_REJECTED);
	if (r)
		return;
	CHECK(rep->rev <= cfg->rev);
	CHECK(res->crc == (cfg->crc != SIW_CRC_OFF || (rep->flags & MPA_FLAG_CRC)));
	CHECK(cfg->crc != SIW_CRC_REQUIRE || (rep->flags & MPA_FLAG_CRC));
	CHECK(res->markers_tx == !!(rep->flags & MPA_FLAG_MARKERS));
	CHECK(!res->markers_tx || cfg->accept_markers);
	CHECK(res->gso == (cfg->gso && (rep->flags & MPA_FLAG_SIW_GSO)));
	CHECK(res->ird <= MPA_V2_IRD_ORD_MASK && res->ord <= MPA_V2_IRD_ORD_MASK);
	if (res->p2p) {
		CHECK(cfg->p2p && cfg->rev == MPA_REV_2 && rep->v2);
		CHECK(res->rtr >= SIW_RTR_SEND && res->rtr <= SIW_RTR_READ);
		CHECK(RTR_BIT(res->rtr) & cfg->rtr_types);
	} else {
		CHECK(res->rtr == SIW_RTR_NONE);
	}
	if (rep->v2) {
		uint16_t rird = rep->ird_word & MPA_V2_IRD_ORD_MASK;
		uint16_t rord = rep->ord_word & MPA_V2_IRD_ORD_MASK;

		/* the responder's ORD fits our IRD; we send no more than its IRD */
		if (rord != MPA_V2_IRD_ORD_NONE)
			CHECK(rord <= res->ird);
		if (rird != MPA_V2_IRD_ORD_NONE && !(res->rtr == SIW_RTR_READ && rird == 0))
			CHECK(res->ord <= rird);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t req_out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	static uint8_t rep_out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	struct siw_mpa_cfg ci, cr;
	struct siw_mpa_reader rd;
	struct siw_mpa_frame req, rep;
	struct siw_mpa_result res_r, res_i;
	uint16_t i_ird, i_ord, r_ird, r_ord;
	const uint8_t *s, *pd;
	size_t len, pd_len;
	unsigned seed;
	bool reject;
	int n_req = -1, n_rep, v_r, v_i, n;

	if (size < HDR)
		return 0;
	cfg_from(data[0], data[1], &ci);
	cfg_from(data[2], data[3], &cr);
	seed = data[1] >> 3;
	reject = data[3] & 0x08;
	i_ird = get_be16(data + 4);
	i_ord = get_be16(data + 6);
	r_ird = get_be16(data + 8);
	r_ord = get_be16(data + 10);
	s = data + HDR;
	len = size - HDR;
	pd = s;
	pd_len = (size_t)data[12] * 3;
	if (pd_len > len)
		pd_len = len;

	/* ---- the peer's frames as they come off the wire ---- */
	n = read_frame(&rd, false, s, len, &seed);
	if (n > 0) {
		/*
		 * The reader takes exactly the frame; the parser may still refuse what is in it
		 * (e.g. H without rev 2), and then refuses it straight from the stream as well.
		 */
		int p = siw_mpa_parse(rd.buf, rd.have, false, &req);

		CHECK(siw_mpa_parse(s, len, false, &req) == p);
		if (p == n) {
			n_req = n;
			check_frame(&req, s, len, n);
			CHECK(siw_mpa_parse(rd.buf, rd.have, false, &req) == n);
			check_frame(&req, rd.buf, rd.have, n);
			respond_and_reply(&cr, &req, r_ird, r_ord, reject, pd, pd_len, &res_r, &v_r,
					  rep_out, &n);
		} else {
			CHECK(is_llp_err(p, TERM_ECODE_LLP_BAD_REQREP));
		}
	} else if (n != SIW_ERR_AGAIN) {
		CHECK(is_llp_err(n, TERM_ECODE_LLP_BAD_REQREP));
		CHECK(siw_mpa_parse(s, len, false, &req) == n);
	} else {
		CHECK(siw_mpa_parse(s, len, false, &req) == SIW_ERR_AGAIN);
	}
	if (n_req > 0) {
		n_rep = read_frame(&rd, true, s + n_req, len - (size_t)n_req, &seed);
		if (n_rep > 0) {
			int p = siw_mpa_parse(rd.buf, rd.have, true, &rep);

			if (p == n_rep) {
				check_frame(&rep, rd.buf, rd.have, n_rep);
				check_reply(&ci, i_ird, i_ord, &rep, &res_i, &v_i);
			} else {
				CHECK(is_llp_err(p, TERM_ECODE_LLP_BAD_REQREP));
			}
		} else if (n_rep != SIW_ERR_AGAIN) {
			CHECK(is_llp_err(n_rep, TERM_ECODE_LLP_BAD_REQREP));
		}
	}

	/* ---- two of our own ends negotiating ---- */
	n = siw_mpa_build_req(&ci, i_ird, i_ord, pd, pd_len, req_out, sizeof(req_out));
	if (n < 0) {
		bool v2 = ci.rev == MPA_REV_2;

		CHECK(n == SIW_ERR_INVAL);
		CHECK(pd_len > MPA_MAX_PRIVDATA - (v2 ? MPA_V2_IRD_ORD_LEN : 0) ||
		      (v2 && (i_ird > MPA_V2_IRD_ORD_MASK || i_ord > MPA_V2_IRD_ORD_MASK)) ||
		      (v2 && ci.p2p && !(ci.rtr_types & RTR_ALL)));
		return 0;
	}
	CHECK(siw_mpa_parse(req_out, (size_t)n, false, &req) == n);
	check_frame(&req, req_out, (size_t)n, n);
	CHECK(!!(req.flags & MPA_FLAG_CRC) == (ci.crc != SIW_CRC_OFF));
	CHECK(!!(req.flags & MPA_FLAG_MARKERS) == ci.markers);
	CHECK(!!(req.flags & MPA_FLAG_SIW_GSO) == ci.gso);
	CHECK(req.v2 == (ci.rev == MPA_REV_2));
	CHECK(req.user_pd_len == pd_len && (!pd_len || !memcmp(req.user_pd, pd, pd_len)));
	if (req.v2)
		CHECK(!!(req.ird_word & MPA_V2_PEER_TO_PEER) == ci.p2p);

	respond_and_reply(&cr, &req, r_ird, r_ord, reject, NULL, 0, &res_r, &v_r, rep_out, &n);
	if (n < 0 || res_r.rev == 0)
		return 0;
	CHECK(siw_mpa_parse(rep_out, (size_t)n, true, &rep) == n);
	check_reply(&ci, i_ird, i_ord, &rep, &res_i, &v_i);
	if (v_r != 0 || reject) {
		CHECK(v_i == SIW_ERR_REJECTED);
		return 0;
	}
	if (v_i != 0)
		return 0;
	/* both ends accepted: they must agree on how the connection runs */
	CHECK(res_i.rev == res_r.rev);
	CHECK(res_i.crc == res_r.crc);
	CHECK(res_i.markers_tx == res_r.markers_rx && res_i.markers_rx == res_r.markers_tx);
	CHECK(res_i.gso == res_r.gso);
	CHECK(res_i.p2p == res_r.p2p && res_i.rtr == res_r.rtr);
	if (res_i.rev == MPA_REV_2) {
		/* the READs either side may have outstanding fit the other's IRD */
		CHECK(res_i.ord <= res_r.ird);
		CHECK(res_r.ord <= res_i.ird);
	}
	return 0;
}
