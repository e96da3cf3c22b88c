/* SPDX-License-Identifier: MIT */
/*
 * TERMINATE messages (RFC 5040 §4.8, §7; RFC 6580): the control word's bit layout, which header
 * parts get copied for each error class, decoding (round trips with the builder, kernel siw's
 * bit-field layout, malformed bodies), the registry of valid triples and the log text.
 */
#include "test.h"

#include "error.h"
#include "term.h"

#define E_BAD_TERM                                                                                 \
	SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNSPECIFIED)

/* An RDMA WRITE FPDU header (tagged, 16 bytes incl. the MPA length) plus some payload. */
static const uint8_t hdr_write[40] = {
    0x04, 0x06,                                     /* ULPDU_Length 1030 */
    0xC1, 0x40,                                     /* T L DV=1 | RV=1 op WRITE */
    0x00, 0x00, 0x12, 0x34,                         /* STag */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* TO */
    0xAA, 0xAA, 0xAA, 0xAA,                         /* payload ... */
};

/* A SEND with Invalidate header (untagged, 20 bytes). */
static const uint8_t hdr_send_inv[20] = {
    0x00, 0x1A,             /* ULPDU_Length 26: 18 + 8 payload */
    0x41, 0x44,             /* L DV=1 | RV=1 op SEND_INV */
    0x00, 0x00, 0x56, 0x78, /* STag to invalidate */
    0x00, 0x00, 0x00, 0x00, /* QN 0 */
    0x00, 0x00, 0x00, 0x05, /* MSN 5 */
    0x00, 0x00, 0x00, 0x00, /* MO 0 */
};

/* An RDMA READ REQUEST (48 bytes). */
static const uint8_t hdr_rreq[48] = {
    0x00, 0x2E,                                     /* ULPDU_Length 46 */
    0x41, 0x41,                                     /* L DV=1 | RV=1 op READ_REQ */
    0x00, 0x00, 0x00, 0x00,                         /* reserved */
    0x00, 0x00, 0x00, 0x01,                         /* QN 1 */
    0x00, 0x00, 0x00, 0x01,                         /* MSN 1 */
    0x00, 0x00, 0x00, 0x00,                         /* MO 0 */
    0x00, 0x00, 0x0A, 0x01,                         /* sink STag */
    0x00, 0x00, 0x7F, 0x00, 0x00, 0x00, 0x20, 0x00, /* sink TO */
    0x00, 0x01, 0x00, 0x00,                         /* size 64 KiB */
    0x00, 0x00, 0x0B, 0x02,                         /* source STag */
    0x00, 0x00, 0x7F, 0x11, 0x00, 0x00, 0x00, 0x00, /* source TO */
};

static void test_ctrl_layout(void)
{
	uint8_t b[4];

	/* Layer bits 31-28, EType 27-24, code 23-16, M 15, D 14, R 13 (RFC 5040 §4.8). */
	put_be32(b, siw_term_ctrl(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_STAG,
				  true, true, false));
	CHECK_MEM(b, "\x11\x00\xC0\x00", 4);
	put_be32(b, siw_term_ctrl(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
				  TERM_ECODE_RDMAP_ACCESS, true, true, true));
	CHECK_MEM(b, "\x01\x02\xE0\x00", 4);
	put_be32(b, siw_term_ctrl(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_NO_MATCHING_RTR,
				  false, false, false));
	CHECK_MEM(b, "\x20\x07\x00\x00", 4);
	put_be32(b, siw_term_ctrl(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
				  TERM_ECODE_DDP_U_INV_MSN_NOBUF, true, false, false));
	CHECK_MEM(b, "\x12\x02\x80\x00", 4);
	put_be32(b, siw_term_ctrl(0, 0, 0, false, true, false));
	CHECK_MEM(b, "\x00\x00\x40\x00", 4);
	put_be32(b, siw_term_ctrl(0, 0, 0, false, false, true));
	CHECK_MEM(b, "\x00\x00\x20\x00", 4);
	CHECK_UINT(siw_term_ctrl(TERM_LAYER_RDMAP, 0, TERM_ECODE_RDMAP_UNSPECIFIED, 0, 0, 0),
		   0x00FF0000u);
	/* Out-of-range arguments are cut to their fields; reserved bits stay 0. */
	CHECK_UINT(siw_term_ctrl(0x1F, 0x1F, 0x1FF, true, true, true), 0xFFFFE000u);
	CHECK_UINT(siw_term_ctrl(15, 15, 255, true, true, true) & TERM_CTRL_RSVD, 0);
}

static void test_valid_registry(void)
{
	static const struct {
		unsigned l, e, c;
	} reg[] = {
	    /* RDMAP remote protection */
	    {0, 1, 0x00},
	    {0, 1, 0x01},
	    {0, 1, 0x02},
	    {0, 1, 0x03},
	    {0, 1, 0x04},
	    {0, 1, 0x09},
	    {0, 1, 0xFF},
	    /* RDMAP remote operation */
	    {0, 2, 0x05},
	    {0, 2, 0x06},
	    {0, 2, 0x07},
	    {0, 2, 0x08},
	    {0, 2, 0xFF},
	    /* DDP */
	    {1, 0, 0x00},
	    {1, 1, 0x00},
	    {1, 1, 0x01},
	    {1, 1, 0x02},
	    {1, 1, 0x03},
	    {1, 1, 0x04},
	    {1, 2, 0x01},
	    {1, 2, 0x02},
	    {1, 2, 0x03},
	    {1, 2, 0x04},
	    {1, 2, 0x05},
	    {1, 2, 0x06},
	    /* MPA (RFC 5044 + RFC 6581) */
	    {2, 0, 0x01},
	    {2, 0, 0x02},
	    {2, 0, 0x03},
	    {2, 0, 0x04},
	    {2, 0, 0x05},
	    {2, 0, 0x06},
	    {2, 0, 0x07},
	};
	static const struct {
		unsigned l, e, c;
	} bad[] = {
	    {0, 1, 0x05}, {0, 1, 0x06}, {0, 1, 0x08},   {0, 1, 0xFE},  {0, 2, 0x00}, {0, 2, 0x04},
	    {0, 2, 0x09}, {0, 3, 0x00}, {1, 0, 0x01},   {1, 0, 0xFF},  {1, 1, 0x05}, {1, 1, 0xFF},
	    {1, 2, 0x00}, {1, 2, 0x07}, {1, 3, 0x00},   {2, 0, 0x00},  {2, 0, 0x08}, {2, 0, 0xFF},
	    {2, 1, 0x01}, {3, 0, 0x00}, {15, 15, 0xFF}, {0, 0, 0x100}, {16, 0, 0},
	};
	unsigned n = 0;

	for (size_t i = 0; i < sizeof(reg) / sizeof(reg[0]); i++) {
		if (!siw_term_valid(reg[i].l, reg[i].e, reg[i].c))
			t_fail(__FILE__, __LINE__, "%u/%u/0x%02x should be valid", reg[i].l,
			       reg[i].e, reg[i].c);
		/* and every valid triple has a name */
		CHECK(siw_term_name(reg[i].l, reg[i].e, reg[i].c) != NULL);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (siw_term_valid(bad[i].l, bad[i].e, bad[i].c))
			t_fail(__FILE__, __LINE__, "%u/%u/0x%02x should be invalid", bad[i].l,
			       bad[i].e, bad[i].c);
	}
	/* RDMAP local catastrophic: any code ("ALL" in the IANA registry) */
	for (unsigned c = 0; c < 256; c++)
		CHECK(siw_term_valid(0, 0, c));
	/* Exactly these: 256 catastrophic codes + the 31 listed above. */
	for (unsigned l = 0; l < 16; l++)
		for (unsigned e = 0; e < 16; e++)
			for (unsigned c = 0; c < 256; c++)
				n += siw_term_valid(l, e, c);
	CHECK_UINT(n, 256 + sizeof(reg) / sizeof(reg[0]));
}

/* Builds a TERMINATE for err from hdr, checks the copy, then decodes it back. */
static void roundtrip(int line, int err, const uint8_t *hdr, unsigned hdr_len, bool has_rdmap,
		      unsigned want_copy, bool want_r)
{
	uint8_t body[SIW_MAX_HDR_LEN];
	struct siw_term_info t;
	uint32_t ctrl = 0xDEADBEEF;
	int n;

	n = siw_term_build(err, hdr, hdr_len, has_rdmap, body, sizeof(body), &ctrl);
	if (n != (int)want_copy) {
		t_fail(__FILE__, line, "build copied %d, want %u", n, want_copy);
		return;
	}
	CHECK_UINT(ctrl & TERM_CTRL_RSVD, 0);
	CHECK(!!(ctrl & TERM_CTRL_M) == (want_copy != 0));
	CHECK(!!(ctrl & TERM_CTRL_D) == (want_copy != 0));
	CHECK(!!(ctrl & TERM_CTRL_R) == want_r);
	if (want_copy)
		CHECK_MEM(body, hdr, want_copy); /* incl. the ULPDU_Length, unchanged */

	CHECK_INT(siw_term_decode(ctrl, body, (size_t)n, &t), 0);
	if (siw_err_is_term(err)) {
		CHECK_UINT(t.layer, siw_err_term_layer(err));
		CHECK_UINT(t.etype, siw_err_term_etype(err));
		CHECK_UINT(t.ecode, siw_err_term_ecode(err));
	}
	CHECK(t.rfc_valid);
	CHECK(t.m == (want_copy != 0));
	CHECK(t.d == (want_copy != 0));
	CHECK(t.r == want_r);
	CHECK_UINT(t.hdr_len, want_copy);
	if (want_copy) {
		CHECK_MEM(t.hdr, hdr, want_copy);
		CHECK_UINT(t.ddp_seg_len, get_be16(hdr));
	}
}

#define RT(err, hdr, len, rdmap, copy, r) roundtrip(__LINE__, err, hdr, len, rdmap, copy, r)
#define T(l, e, c)                        SIW_ERR_TERM(l, e, c)

static void test_build_ddp_errors(void)
{
	/* DDP errors: M + D with the DDP header, 14 (tagged) or 18 (untagged) + the length. */
	RT(T(1, 1, 0x00), hdr_write, sizeof(hdr_write), false, 16, false);
	RT(T(1, 1, 0x01), hdr_write, 16, false, 16, false);
	RT(T(1, 1, 0x02), hdr_write, sizeof(hdr_write), true, 16, false); /* no R for DDP */
	RT(T(1, 1, 0x03), hdr_write, sizeof(hdr_write), false, 16, false);
	RT(T(1, 2, 0x01), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	RT(T(1, 2, 0x02), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	RT(T(1, 2, 0x03), hdr_rreq, sizeof(hdr_rreq), true, 20, false);
	RT(T(1, 2, 0x04), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	RT(T(1, 2, 0x05), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	/* version errors: the layout is not known, nothing copied */
	RT(T(1, 1, 0x04), hdr_write, sizeof(hdr_write), false, 0, false);
	RT(T(1, 2, 0x06), hdr_send_inv, sizeof(hdr_send_inv), false, 0, false);
	/* DDP local catastrophic: nothing */
	RT(T(1, 0, 0x00), hdr_write, sizeof(hdr_write), false, 0, false);
	/* the header is shorter than the rule wants: nothing (and M/D clear) */
	RT(T(1, 1, 0x00), hdr_write, 15, false, 0, false);
	RT(T(1, 2, 0x01), hdr_send_inv, 19, false, 0, false);
	RT(T(1, 2, 0x01), hdr_send_inv, 2, false, 0, false);
	RT(T(1, 2, 0x01), NULL, 0, false, 0, false);
}

static void test_build_rdmap_errors(void)
{
	/* Remote protection on a READ REQUEST: M + D + R, DDP header + 28-byte RDMAP header. */
	RT(T(0, 1, 0x00), hdr_rreq, sizeof(hdr_rreq), true, 48, true);
	RT(T(0, 1, 0x01), hdr_rreq, sizeof(hdr_rreq), true, 48, true);
	RT(T(0, 1, 0x02), hdr_rreq, sizeof(hdr_rreq), true, 48, true);
	RT(T(0, 1, 0xFF), hdr_rreq, sizeof(hdr_rreq), true, 48, true);
	/* ... the caller did not say the RDMAP header is there: DDP header only */
	RT(T(0, 1, 0x00), hdr_rreq, sizeof(hdr_rreq), false, 20, false);
	/* ... truncated READ REQUEST: nothing */
	RT(T(0, 1, 0x00), hdr_rreq, 47, true, 0, false);
	/* R is only for a READ REQUEST: other headers get M + D even if the caller says R */
	RT(T(0, 1, 0x09), hdr_send_inv, sizeof(hdr_send_inv), true, 20, false);
	RT(T(0, 1, 0x09), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	RT(T(0, 1, 0x03), hdr_write, sizeof(hdr_write), true, 16, false);
	/* other remote operation errors: M + D */
	RT(T(0, 2, 0x07), hdr_write, sizeof(hdr_write), false, 16, false);
	RT(T(0, 2, 0x08), hdr_send_inv, sizeof(hdr_send_inv), false, 20, false);
	RT(T(0, 2, 0xFF), hdr_rreq, sizeof(hdr_rreq), true, 20, false);
	/* version / unexpected opcode: nothing, even with a whole header */
	RT(T(0, 2, 0x05), hdr_write, sizeof(hdr_write), false, 0, false);
	RT(T(0, 2, 0x06), hdr_send_inv, sizeof(hdr_send_inv), false, 0, false);
	/* local catastrophic: nothing */
	RT(T(0, 0, 0x00), hdr_write, sizeof(hdr_write), false, 0, false);
	RT(T(0, 0, 0x42), hdr_rreq, sizeof(hdr_rreq), true, 0, false);
}

static void test_build_llp_and_local(void)
{
	uint8_t body[64];
	uint32_t ctrl;

	/* MPA errors: nothing copied (the FPDU cannot be trusted). */
	for (unsigned c = 1; c <= 7; c++)
		RT(T(2, 0, c), hdr_write, sizeof(hdr_write), false, 0, false);
	/* A local failure becomes RDMAP local catastrophic, code "unspecified". */
	CHECK_INT(siw_term_build(SIW_ERR_FAULT, hdr_write, sizeof(hdr_write), false, body,
				 sizeof(body), &ctrl),
		  0);
	CHECK_UINT(ctrl, 0x00FF0000u);
	CHECK_INT(siw_term_build(SIW_ERR_MEM_STAG, NULL, 0, false, NULL, 0, &ctrl), 0);
	CHECK_UINT(ctrl, 0x00FF0000u);
	/* So does a triple that is not in the registry: never put one on the wire. */
	CHECK_INT(siw_term_build(T(2, 0, 9), hdr_write, sizeof(hdr_write), false, body,
				 sizeof(body), &ctrl),
		  0);
	CHECK_UINT(ctrl, 0x00FF0000u);
	CHECK_INT(siw_term_build(T(1, 2, 0), hdr_write, sizeof(hdr_write), false, body,
				 sizeof(body), &ctrl),
		  0);
	CHECK_UINT(ctrl, 0x00FF0000u);
	/* argument checks */
	CHECK_INT(siw_term_build(0, NULL, 0, false, body, sizeof(body), &ctrl), SIW_ERR_INVAL);
	CHECK_INT(siw_term_build(5, NULL, 0, false, body, sizeof(body), &ctrl), SIW_ERR_INVAL);
	CHECK_INT(siw_term_build(T(1, 1, 0), hdr_write, 16, false, body, sizeof(body), NULL),
		  SIW_ERR_INVAL);
	CHECK_INT(siw_term_build(T(1, 1, 0), hdr_write, 16, false, body, 15, &ctrl),
		  SIW_ERR_NOBUFS);
	CHECK_INT(siw_term_build(T(1, 1, 0), hdr_write, 16, false, NULL, 0, &ctrl), SIW_ERR_NOBUFS);
	CHECK_INT(siw_term_build(T(1, 1, 0), hdr_write, 16, false, body, 16, &ctrl), 16);
}

/* ---- decoding what kernel siw sends ------------------------------------------------------------
 */

static void test_decode_siw_swapped(void)
{
	struct siw_term_info t;
	char s[200];

	/*
	 * Kernel siw's CRC error (layer 2, etype 0, code 2): its little-endian bit-fields put
	 * the etype nibble first, so the wire says 0x02 0x02 0x00 0x00. Read per RFC that is
	 * RDMAP remote operation code 0x02, which does not exist.
	 */
	CHECK_INT(siw_term_decode(0x02020000u, NULL, 0, &t), 0);
	CHECK_UINT(t.layer, 0);
	CHECK_UINT(t.etype, 2);
	CHECK_UINT(t.ecode, 2);
	CHECK(!t.rfc_valid);
	CHECK(t.swapped_valid);
	CHECK_UINT(t.swapped_layer, TERM_LAYER_LLP);
	CHECK_UINT(t.swapped_etype, TERM_ETYPE_LLP);
	CHECK(!t.m && !t.d && !t.r);
	CHECK_UINT(t.hdr_len, 0);
	siw_term_describe(&t, s, sizeof(s));
	CHECK(strcmp(s, "unregistered TERMINATE (layer 0 etype 2 code 0x02); as kernel siw lays "
			"it out: MPA: CRC error (layer 2 etype 0 code 0x02)") == 0);
	if (strcmp(s, "unregistered TERMINATE (layer 0 etype 2 code 0x02); as kernel siw lays it "
		      "out: MPA: CRC error (layer 2 etype 0 code 0x02)") != 0)
		fprintf(stderr, "  got: %s\n", s);

	/* siw's DDP untagged "no buffer" (1/2/2): first byte 0x21, RFC reading LLP etype 1 */
	CHECK_INT(siw_term_decode(0x21020000u, NULL, 0, &t), 0);
	CHECK(!t.rfc_valid);
	CHECK(t.swapped_valid);
	CHECK_UINT(t.swapped_layer, 1);
	CHECK_UINT(t.swapped_etype, 2);

	/*
	 * Symmetric triples read the same both ways: siw's DDP tagged invalid STag with M and D
	 * (siw's M = 0x0100, D = 0x0200 in the reserved bits) and the 16-byte tagged header.
	 */
	CHECK_INT(siw_term_decode(0x11000300u, hdr_write, 16, &t), 0);
	CHECK(t.rfc_valid && t.swapped_valid);
	CHECK_UINT(t.layer, 1);
	CHECK_UINT(t.etype, 1);
	CHECK(t.m && t.d && !t.r);
	CHECK_UINT(t.hdr_len, 16);
	CHECK_MEM(t.hdr, hdr_write, 16);
	CHECK_UINT(t.ddp_seg_len, 0x0406);
	siw_term_describe(&t, s, sizeof(s));
	CHECK(strcmp(s, "DDP tagged: invalid STag (layer 1 etype 1 code 0x00)") == 0);
}

static void test_decode_siw_flags(void)
{
	struct siw_term_info t;

	/*
	 * siw's "STag cannot be invalidated" (RDMAP 0/1/9) for a Send with Invalidate: first
	 * byte 0x10, and M, D, R in siw's positions (0x0700) with only the 20-byte Send header
	 * behind it. Accepted: siw sets R for every remote-protection error.
	 */
	CHECK_INT(siw_term_decode(0x10090700u, hdr_send_inv, sizeof(hdr_send_inv), &t), 0);
	CHECK(!t.rfc_valid);
	CHECK(t.swapped_valid);
	CHECK_UINT(t.swapped_layer, TERM_LAYER_RDMAP);
	CHECK_UINT(t.swapped_etype, TERM_ETYPE_RDMAP_REMOTE_PROT);
	CHECK_UINT(t.ecode, TERM_ECODE_RDMAP_CANNOT_INVALIDATE);
	CHECK(t.m && t.d && t.r);
	CHECK_UINT(t.hdr_len, 20);
	CHECK_MEM(t.hdr, hdr_send_inv, 20);
	/* The same from an RFC-layout peer is malformed: R promises 28 more bytes. */
	CHECK_INT(siw_term_decode(0x0109E000u, hdr_send_inv, sizeof(hdr_send_inv), &t), E_BAD_TERM);
	CHECK(t.rfc_valid);
	CHECK(t.m && t.d && t.r);

	/*
	 * siw's remote protection error on a READ REQUEST (0/1/0): 0x10 0x00 0x07 0x00 + 48
	 * bytes. Ambiguous: the RFC reading 1/0/0 (DDP local catastrophic) is registered too.
	 */
	CHECK_INT(siw_term_decode(0x10000700u, hdr_rreq, sizeof(hdr_rreq), &t), 0);
	CHECK(t.rfc_valid && t.swapped_valid);
	CHECK(t.m && t.d && t.r);
	CHECK_UINT(t.hdr_len, 48);
	CHECK_MEM(t.hdr, hdr_rreq, 48);

	/* Reserved bits outside siw's pattern are not read as flags. */
	CHECK_INT(siw_term_decode(0x11000301u, hdr_write, 16, &t), 0);
	CHECK(!t.m && !t.d && !t.r);
	CHECK_UINT(t.hdr_len, 0);
	/* RFC flags win when both are set. */
	CHECK_INT(siw_term_decode(0x11008300u, hdr_write, 16, &t), 0);
	CHECK(t.m && !t.d && !t.r);
	CHECK_UINT(t.hdr_len, 2);
}

static void test_decode_bodies(void)
{
	struct siw_term_info t;
	uint8_t body[SIW_MAX_HDR_LEN + 10];

	memset(body, 0x5A, sizeof(body));
	/* no bits: the body is ignored */
	CHECK_INT(siw_term_decode(siw_term_ctrl(0, 0, 0, 0, 0, 0), body, sizeof(body), &t), 0);
	CHECK_UINT(t.hdr_len, 0);
	/* M alone: just the length slot */
	put_be16(body, 0x1234);
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 2, 1, 1, 0, 0), body, 2, &t), 0);
	CHECK_UINT(t.hdr_len, 2);
	CHECK_UINT(t.ddp_seg_len, 0x1234);
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 2, 1, 1, 0, 0), body, 1, &t), E_BAD_TERM);
	CHECK_UINT(t.layer, 1); /* the triple is still reported */
	CHECK_UINT(t.etype, 2);
	CHECK_UINT(t.ecode, 1);
	/* D alone: the slot is there, the length is not valid */
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 1, 0, 0, 1, 0), hdr_write, 16, &t), 0);
	CHECK(!t.m && t.d);
	CHECK_UINT(t.hdr_len, 16);
	CHECK_UINT(t.ddp_seg_len, 0);
	/* D with a body too short for the header its T bit announces */
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 1, 0, 1, 1, 0), hdr_write, 15, &t), E_BAD_TERM);
	CHECK_UINT(t.hdr_len, 15);
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 2, 1, 1, 1, 0), hdr_send_inv, 19, &t),
		  E_BAD_TERM);
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 2, 1, 1, 1, 0), hdr_send_inv, 2, &t),
		  E_BAD_TERM);
	CHECK_INT(siw_term_decode(siw_term_ctrl(1, 2, 1, 1, 1, 0), NULL, 0, &t), E_BAD_TERM);
	/* R without D has no defined place */
	CHECK_INT(siw_term_decode(siw_term_ctrl(0, 1, 0, 1, 0, 1), hdr_rreq, 48, &t), E_BAD_TERM);
	/* R with D and a whole READ REQUEST; trailing bytes are ignored */
	memcpy(body, hdr_rreq, sizeof(hdr_rreq));
	CHECK_INT(siw_term_decode(siw_term_ctrl(0, 1, 0, 1, 1, 1), body, sizeof(body), &t), 0);
	CHECK_UINT(t.hdr_len, 48);
	CHECK_MEM(t.hdr, hdr_rreq, 48);
	/* a malformed body longer than hdr[] is cut for the log */
	CHECK_INT(siw_term_decode(siw_term_ctrl(0, 1, 0, 0, 0, 1), body, sizeof(body), &t),
		  E_BAD_TERM);
	CHECK_UINT(t.hdr_len, SIW_MAX_HDR_LEN);
	/* argument checks */
	CHECK_INT(siw_term_decode(0, NULL, 4, &t), SIW_ERR_INVAL);
	CHECK_INT(siw_term_decode(0, body, 4, NULL), SIW_ERR_INVAL);
}

static void test_describe(void)
{
	struct siw_term_info t;
	char s[128];

	CHECK_INT(siw_term_decode(siw_term_ctrl(2, 0, 6, 0, 0, 0), NULL, 0, &t), 0);
	CHECK(siw_term_describe(&t, s, sizeof(s)) == s);
	CHECK(strcmp(s, "MPA: insufficient IRD resources (layer 2 etype 0 code 0x06)") == 0);

	CHECK_INT(siw_term_decode(siw_term_ctrl(0, 0, 0xAB, 0, 0, 0), NULL, 0, &t), 0);
	siw_term_describe(&t, s, sizeof(s));
	CHECK(strcmp(s, "RDMAP: local catastrophic error (layer 0 etype 0 code 0xab)") == 0);

	/* neither reading registered */
	CHECK_INT(siw_term_decode(0xFF120000u, NULL, 0, &t), 0);
	siw_term_describe(&t, s, sizeof(s));
	CHECK(strcmp(s, "unregistered TERMINATE (layer 15 etype 15 code 0x12)") == 0);
	CHECK_INT(siw_term_decode(0x30000000u, NULL, 0, &t), 0);
	siw_term_describe(&t, s, sizeof(s));
	CHECK(strcmp(s, "unregistered TERMINATE (layer 3 etype 0 code 0x00)") == 0);

	/* bounded output, always terminated */
	memset(s, 'x', sizeof(s));
	siw_term_describe(&t, s, 10);
	CHECK(strcmp(s, "unregiste") == 0);
	CHECK(s[10] == 'x');
	siw_term_describe(&t, s, 1);
	CHECK(s[0] == '\0');
	s[0] = 'x';
	siw_term_describe(&t, s, 0);
	CHECK(s[0] == 'x');
	siw_term_describe(NULL, s, sizeof(s));
	CHECK(s[0] == '\0');
}

T_MAIN(T_CASE(test_ctrl_layout), T_CASE(test_valid_registry), T_CASE(test_build_ddp_errors),
       T_CASE(test_build_rdmap_errors), T_CASE(test_build_llp_and_local),
       T_CASE(test_decode_siw_swapped), T_CASE(test_decode_siw_flags), T_CASE(test_decode_bodies),
       T_CASE(test_describe))
