// SPDX-License-Identifier: MIT
/*
 * fuzz_term: TERMINATE messages (term.c). A peer's control word and body through
 * siw_term_decode(); siw_term_build() on arbitrary error values and offending headers, whose
 * output must decode back to the same triple and header copy; and that built TERMINATE sent
 * through siw_tx and received by siw_rx, whose terminate callback must see the same.
 *
 * Input (see fuzz/README.md):
 *	bytes 0-3  control word for the decoder (be32)
 *	byte 4	   body length for the decoder (the body is the start of the rest)
 *	byte 5	   build: bits 0-3 layer, bits 4-7 etype of the error (bit 7 of byte 6 set: use
 *		   bytes 8-11 as a raw error value instead)
 *	byte 6	   build: bits 0-6 length of the offending header (the start of the rest, at most
 *		   SIW_MAX_HDR_LEN)
 *	byte 7	   build: error code
 *	bytes 8-11 raw error value (be32, used as a negative int)
 *	byte 12	   bit 0: the header holds an RDMAP header too; bit 1: CRC on the wire;
 *		   bits 2-7: output buffer size for the builder
 *	rest	   body / header bytes
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "helper_peer.h"
#include "term.h"
#include "tx.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

#define HDR 13
#define E_BAD_TERM                                                                                 \
	SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNSPECIFIED)

static void check_describe(const struct siw_term_info *t)
{
	char buf[160];

	/* Bounded and terminated for every buffer size. */
	for (size_t sz = 1; sz <= sizeof(buf); sz += 13) {
		memset(buf, 'x', sizeof(buf));
		CHECK(siw_term_describe(t, buf, sz) == buf);
		CHECK(memchr(buf, '\0', sz) != NULL);
	}
	CHECK(siw_term_describe(t, buf, 0) == buf);
}

static void check_decoded(uint32_t ctrl, const uint8_t *body, size_t len,
			  const struct siw_term_info *t, int r)
{
	CHECK(r == 0 || r == E_BAD_TERM);
	CHECK(t->layer == ctrl >> 28 && t->etype == (ctrl >> 24 & 0xF) &&
	      t->ecode == (uint8_t)(ctrl >> 16));
	CHECK(t->rfc_valid == siw_term_valid(t->layer, t->etype, t->ecode));
	CHECK(t->swapped_layer == t->etype && t->swapped_etype == t->layer);
	CHECK(t->swapped_valid == siw_term_valid(t->swapped_layer, t->swapped_etype, t->ecode));
	CHECK(t->hdr_len <= len && t->hdr_len <= SIW_MAX_HDR_LEN);
	CHECK(!t->hdr_len || !memcmp(t->hdr, body, t->hdr_len));
	if (r)
		return;
	/* a well-formed body holds exactly what the bits promise, in the RFC 5040 order */
	if (t->d) {
		bool tagged = body[DDP_OFF_CTRL] & DDP_FLAG_TAGGED;
		unsigned ddp = tagged ? DDP_TAGGED_HDR_LEN : DDP_UNTAGGED_HDR_LEN;

		CHECK(t->hdr_len == ddp ||
		      (t->r && t->hdr_len == ddp + RREQ_HDR_LEN - DDP_UNTAGGED_HDR_LEN));
	} else {
		CHECK(!t->r);
		CHECK(t->hdr_len == (t->m ? MPA_HDR_LEN : 0u));
	}
	if (t->m)
		CHECK(t->ddp_seg_len == get_be16(body));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tp_peer peer;
	static uint8_t stream[4096];
	struct siw_term_info t, t2;
	const uint8_t *rest;
	size_t len, blen, hlen, outsz;
	uint8_t out[SIW_MAX_HDR_LEN];
	uint32_t ctrl, bctrl;
	unsigned layer, etype, ecode;
	bool rdmap, crc, valid;
	int err, r, n;

	if (size < HDR)
		return 0;
	rest = data + HDR;
	len = size - HDR;

	/* ---- a peer's TERMINATE ---- */
	ctrl = get_be32(data);
	blen = data[4] < len ? data[4] : len;
	r = siw_term_decode(ctrl, blen ? rest : NULL, blen, &t);
	check_decoded(ctrl, rest, blen, &t, r);
	check_describe(&t);

	/* ---- ours ---- */
	layer = data[5] & 0xF;
	etype = data[5] >> 4;
	ecode = data[7];
	if (data[6] & 0x80)
		err = -(int)(get_be32(data + 8) & 0x7FFFFFFF);
	else
		err = SIW_ERR_TERM(layer, etype, ecode);
	hlen = data[6] & 0x7F;
	if (hlen > SIW_MAX_HDR_LEN)
		hlen = SIW_MAX_HDR_LEN;
	if (hlen > len)
		hlen = len;
	rdmap = data[12] & 1;
	crc = data[12] & 2;
	outsz = (size_t)(data[12] >> 2) * 2;
	if (outsz > sizeof(out))
		outsz = sizeof(out);

	n = siw_term_build(err, hlen ? rest : NULL, (unsigned)hlen, rdmap, out, outsz, &bctrl);
	if (err >= 0) {
		CHECK(n == SIW_ERR_INVAL);
		return 0;
	}
	if (n < 0) {
		CHECK(n == SIW_ERR_NOBUFS);
		/* only a copy that does not fit fails: with room for all, it must work */
		n = siw_term_build(err, hlen ? rest : NULL, (unsigned)hlen, rdmap, out, sizeof(out),
				   &bctrl);
		CHECK(n > (int)outsz);
	}
	CHECK(n >= 0 && (size_t)n <= hlen);
	CHECK(n == 0 || n == DDP_TAGGED_HDR_LEN || n == DDP_UNTAGGED_HDR_LEN || n == RREQ_HDR_LEN);
	CHECK(!n || !memcmp(out, rest, (size_t)n));
	CHECK(!(bctrl & TERM_CTRL_RSVD));
	valid =
	    siw_err_is_term(err) && siw_term_valid(siw_err_term_layer(err), siw_err_term_etype(err),
						   siw_err_term_ecode(err));

	/* decode(build(x)): the same triple and header copy */
	r = siw_term_decode(bctrl, out, (size_t)n, &t);
	check_decoded(bctrl, out, (size_t)n, &t, r);
	CHECK(r == 0 && t.rfc_valid);
	if (valid)
		CHECK(t.layer == siw_err_term_layer(err) && t.etype == siw_err_term_etype(err) &&
		      t.ecode == siw_err_term_ecode(err));
	else
		CHECK(t.layer == TERM_LAYER_RDMAP && t.etype == TERM_ETYPE_RDMAP_CATASTROPHIC);
	CHECK(t.hdr_len == (unsigned)n && t.d == (n != 0) && t.m == (n != 0));
	CHECK(t.r == (n == RREQ_HDR_LEN));
	if (n)
		CHECK(t.ddp_seg_len == get_be16(rest));

	/* ---- the same TERMINATE over the wire: siw_tx -> siw_rx ---- */
	{
		struct siw_tx tx;
		struct siw_tx_params tp = {.crc = crc};
		struct siw_rx_params rp = {.crc = crc, .pd = 1};
		struct siw_iov v = {out, (size_t)n};
		struct siw_tx_msg m = {.opcode = RDMAP_TERMINATE,
				       .term_ctrl = bctrl,
				       .iov = &v,
				       .niov = 1,
				       .len = (uint32_t)n};
		long w;

		siw_tx_init(&tx, &tp);
		w = tp_build(&tx, &m, stream, sizeof(stream));
		CHECK(w > 0);
		tp_init(&peer, &rp);
		CHECK(siw_rx_feed(&peer.rx, stream, (size_t)w) == SIW_ERR_TERMINATED);
		CHECK(peer.rx.err == SIW_ERR_TERMINATED && peer.rx.state == SIW_RX_DEAD);
		CHECK(tp_count(&peer, TP_EV_TERM) == 1);
		t2 = peer.term;
		CHECK(t2.layer == t.layer && t2.etype == t.etype && t2.ecode == t.ecode);
		CHECK(t2.m == t.m && t2.d == t.d && t2.r == t.r && t2.hdr_len == t.hdr_len);
		CHECK(!t2.hdr_len || !memcmp(t2.hdr, t.hdr, t2.hdr_len));
	}
	return 0;
}
