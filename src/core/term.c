// SPDX-License-Identifier: MIT
/*
 * TERMINATE control word, header copies and decoding (RFC 5040 §4.8, §7; RFC 6580 registry;
 * docs/PROTOCOL.md §4.3, §4.4).
 *
 * Kernel siw declares the control word as C bit-fields of a __be32. On little-endian machines
 * the compiler fills the first byte from its low bits, so what goes on the wire is
 *
 *	byte 0: EType << 4 | Layer   (RFC: Layer << 4 | EType)
 *	byte 1: Error Code           (as in the RFC)
 *	byte 2: M = 0x01, D = 0x02, R = 0x04   (RFC: M = 0x80, D = 0x40, R = 0x20)
 *
 * i.e. both nibbles of the first byte are exchanged *and* the three header-copy bits land in
 * the reserved bits (read as a big-endian word: 0x0100, 0x0200, 0x0400). We always send the RFC
 * layout. When decoding, both nibble readings are checked against the registry, and the
 * header-copy bits are taken from siw's positions when the RFC ones are clear and the reserved
 * bits hold exactly siw's pattern (an RFC sender must send the reserved bits as 0, so this can
 * not misread a compliant peer).
 */
#include "term.h"

#include "error.h"

#define E_BAD_TERM                                                                                 \
	SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNSPECIFIED)

/* Where kernel siw's bit-fields put M, D and R (see above). */
#define SIW_LE_CTRL_M   0x00000100u
#define SIW_LE_CTRL_D   0x00000200u
#define SIW_LE_CTRL_R   0x00000400u
#define SIW_LE_CTRL_MDR (SIW_LE_CTRL_M | SIW_LE_CTRL_D | SIW_LE_CTRL_R)

/* Bytes of the copied RDMAP header: the READ REQUEST header after the DDP header (§4.8). */
#define TERM_RDMAP_HDR_LEN (RREQ_HDR_LEN - DDP_UNTAGGED_HDR_LEN)

bool siw_term_valid(unsigned layer, unsigned etype, unsigned ecode)
{
	if (ecode > 0xFF)
		return false;
	switch (layer) {
	case TERM_LAYER_RDMAP:
		switch (etype) {
		case TERM_ETYPE_RDMAP_CATASTROPHIC:
			/* RFC 6580: the registry lists this error type with "ALL" codes. */
			return true;
		case TERM_ETYPE_RDMAP_REMOTE_PROT:
			return ecode <= TERM_ECODE_RDMAP_TO_WRAP ||
			       ecode == TERM_ECODE_RDMAP_CANNOT_INVALIDATE ||
			       ecode == TERM_ECODE_RDMAP_UNSPECIFIED;
		case TERM_ETYPE_RDMAP_REMOTE_OP:
			return (ecode >= TERM_ECODE_RDMAP_INV_VERSION &&
				ecode <= TERM_ECODE_RDMAP_CATASTROPHIC_GLOBAL) ||
			       ecode == TERM_ECODE_RDMAP_UNSPECIFIED;
		}
		return false;
	case TERM_LAYER_DDP:
		switch (etype) {
		case TERM_ETYPE_DDP_CATASTROPHIC:
			return ecode == TERM_ECODE_DDP_CATASTROPHIC;
		case TERM_ETYPE_DDP_TAGGED:
			return ecode <= TERM_ECODE_DDP_T_INV_VERSION;
		case TERM_ETYPE_DDP_UNTAGGED:
			return ecode >= TERM_ECODE_DDP_U_INV_QN &&
			       ecode <= TERM_ECODE_DDP_U_INV_VERSION;
		}
		return false;
	case TERM_LAYER_LLP:
		return etype == TERM_ETYPE_LLP && ecode >= TERM_ECODE_LLP_CONN_LOST &&
		       ecode <= TERM_ECODE_LLP_NO_MATCHING_RTR;
	}
	return false;
}

uint32_t siw_term_ctrl(unsigned layer, unsigned etype, unsigned ecode, bool m, bool d, bool r)
{
	return ((uint32_t)layer & 0xF) << 28 | ((uint32_t)etype & 0xF) << 24 |
	       ((uint32_t)ecode & 0xFF) << 16 | (m ? TERM_CTRL_M : 0) | (d ? TERM_CTRL_D : 0) |
	       (r ? TERM_CTRL_R : 0);
}

/* DDP header length, including the 2-byte MPA length in front, from the T bit of `h`. */
static unsigned ddp_copy_len(const uint8_t *h)
{
	return h[DDP_OFF_CTRL] & DDP_FLAG_TAGGED ? DDP_TAGGED_HDR_LEN : DDP_UNTAGGED_HDR_LEN;
}

/* ---- decode -------------------------------------------------------------------------------- */

int siw_term_decode(uint32_t ctrl, const uint8_t *body, size_t len, struct siw_term_info *t)
{
	bool siw_flags = false;
	size_t need = 0, have;

	if (!t || (!body && len))
		return SIW_ERR_INVAL;
	memset(t, 0, sizeof(*t));
	t->layer = (uint8_t)(ctrl >> 28);
	t->etype = (uint8_t)(ctrl >> 24 & 0xF);
	t->ecode = (uint8_t)(ctrl >> 16);
	t->rfc_valid = siw_term_valid(t->layer, t->etype, t->ecode);
	t->swapped_layer = t->etype;
	t->swapped_etype = t->layer;
	t->swapped_valid = siw_term_valid(t->swapped_layer, t->swapped_etype, t->ecode);

	t->m = ctrl & TERM_CTRL_M;
	t->d = ctrl & TERM_CTRL_D;
	t->r = ctrl & TERM_CTRL_R;
	if (!t->m && !t->d && !t->r && (ctrl & TERM_CTRL_RSVD) &&
	    !(ctrl & TERM_CTRL_RSVD & ~SIW_LE_CTRL_MDR)) {
		/* kernel siw's little-endian bit-field layout (top of this file) */
		siw_flags = true;
		t->m = ctrl & SIW_LE_CTRL_M;
		t->d = ctrl & SIW_LE_CTRL_D;
		t->r = ctrl & SIW_LE_CTRL_R;
	}

	/*
	 * Body (RFC 5040 §4.8): the 2-byte DDP Segment Length slot whenever a header follows or
	 * M says it is valid, then the DDP header (14/18 bytes, by the T bit of its first byte),
	 * then for R the 28-byte READ REQUEST header. R without D has no defined position.
	 */
	if (t->r && !t->d)
		goto bad;
	if (t->m || t->d)
		need = MPA_HDR_LEN;
	if (t->d) {
		if (len <= DDP_OFF_CTRL)
			goto bad;
		need = ddp_copy_len(body);
	}
	if (t->r)
		need += TERM_RDMAP_HDR_LEN;
	if (need > len) {
		/*
		 * Kernel siw sets R for every remote-protection error, also when all it attaches
		 * is a 20-byte Send header (e.g. Send with Invalidate): accept what is there.
		 */
		if (!(siw_flags && t->r && len >= need - TERM_RDMAP_HDR_LEN))
			goto bad;
		need -= TERM_RDMAP_HDR_LEN;
	}
	/* Anything after the promised headers is ignored. */
	if (need)
		memcpy(t->hdr, body, need);
	t->hdr_len = (unsigned)need;
	if (t->m)
		t->ddp_seg_len = get_be16(body);
	return 0;

bad:
	/* Keep what came, for the log; the caller learns the message was malformed. */
	have = len < SIW_MAX_HDR_LEN ? len : SIW_MAX_HDR_LEN;
	if (have)
		memcpy(t->hdr, body, have);
	t->hdr_len = (unsigned)have;
	if (t->m && len >= MPA_HDR_LEN)
		t->ddp_seg_len = get_be16(body);
	return E_BAD_TERM;
}

/* ---- build --------------------------------------------------------------------------------- */

/*
 * How many bytes of the offending header to copy and which bits say so (PROTOCOL.md §4.3, the
 * rules kernel siw and Intel agree on; RFC 5040 §7†):
 *  - DDP errors on a received segment: M + D, the DDP header (14 tagged / 18 untagged).
 *  - DDP version errors (tagged 0x04, untagged 0x06) and RDMAP version / unexpected opcode:
 *    nothing, the header layout is not known to be what we think it is.
 *  - RDMAP remote protection on a READ REQUEST: M + D + R, DDP header plus the 28-byte READ
 *    REQUEST header. Other remote protection / remote operation errors: M + D, DDP header.
 *  - Local catastrophic errors (RDMAP or DDP etype 0) and LLP (MPA) errors: nothing; there is
 *    no offending segment, or it cannot be trusted (CRC, marker).
 * The 2-byte DDP Segment Length slot gets the offending FPDU's ULPDU_Length unchanged (i.e.
 * the DDP segment's length, as Intel sends it; kernel siw writes the payload length instead).
 */
static unsigned copy_rule(unsigned layer, unsigned etype, unsigned ecode, const uint8_t *hdr,
			  unsigned hdr_len, bool hdr_has_rdmap, bool *r)
{
	unsigned need;

	*r = false;
	if (!hdr || hdr_len <= DDP_OFF_CTRL)
		return 0;
	switch (layer) {
	case TERM_LAYER_DDP:
		if (etype == TERM_ETYPE_DDP_CATASTROPHIC ||
		    (etype == TERM_ETYPE_DDP_TAGGED && ecode == TERM_ECODE_DDP_T_INV_VERSION) ||
		    (etype == TERM_ETYPE_DDP_UNTAGGED && ecode == TERM_ECODE_DDP_U_INV_VERSION))
			return 0;
		break;
	case TERM_LAYER_RDMAP:
		if (etype == TERM_ETYPE_RDMAP_CATASTROPHIC)
			return 0;
		if (etype == TERM_ETYPE_RDMAP_REMOTE_OP &&
		    (ecode == TERM_ECODE_RDMAP_INV_VERSION ||
		     ecode == TERM_ECODE_RDMAP_UNEXPECTED_OP))
			return 0;
		/* R only for what it was made for: an untagged READ REQUEST header. */
		if (etype == TERM_ETYPE_RDMAP_REMOTE_PROT && hdr_has_rdmap &&
		    !(hdr[DDP_OFF_CTRL] & DDP_FLAG_TAGGED) && hdr_len > RDMAP_OFF_CTRL &&
		    (hdr[RDMAP_OFF_CTRL] & RDMAP_OPCODE_MASK) == RDMAP_READ_REQ) {
			if (hdr_len < RREQ_HDR_LEN)
				return 0;
			*r = true;
			return RREQ_HDR_LEN;
		}
		break;
	default:
		return 0;
	}
	need = ddp_copy_len(hdr);
	return hdr_len < need ? 0 : need;
}

int siw_term_build(int err, const uint8_t *hdr, unsigned hdr_len, bool hdr_has_rdmap, uint8_t *out,
		   size_t outsz, uint32_t *ctrl)
{
	unsigned layer, etype, ecode, n;
	bool r;

	if (err >= 0 || !ctrl)
		return SIW_ERR_INVAL;
	if (siw_err_is_term(err) && siw_term_valid(siw_err_term_layer(err), siw_err_term_etype(err),
						   siw_err_term_ecode(err))) {
		layer = siw_err_term_layer(err);
		etype = siw_err_term_etype(err);
		ecode = siw_err_term_ecode(err);
	} else {
		/*
		 * A local failure (or a triple outside the registry, which we never put on the
		 * wire): RDMAP local catastrophic, code "unspecified" as kernel siw uses it. Layer
		 * and etype are both 0 here, so even kernel siw's swapped reading of our control
		 * word shows the same triple.
		 */
		layer = TERM_LAYER_RDMAP;
		etype = TERM_ETYPE_RDMAP_CATASTROPHIC;
		ecode = TERM_ECODE_RDMAP_UNSPECIFIED;
	}
	n = copy_rule(layer, etype, ecode, hdr, hdr_len, hdr_has_rdmap, &r);
	if (n > outsz || (n && !out))
		return SIW_ERR_NOBUFS;
	if (n)
		memcpy(out, hdr, n);
	*ctrl = siw_term_ctrl(layer, etype, ecode, n != 0, n != 0, r);
	return (int)n;
}

/* ---- describe ------------------------------------------------------------------------------ */

/* A tiny bounded string builder: the core has no stdio. */
struct sbuf {
	char *p;
	size_t sz, len;
};

static void sb_str(struct sbuf *b, const char *s)
{
	if (!s)
		s = "?";
	while (*s && b->len + 1 < b->sz)
		b->p[b->len++] = *s++;
	b->p[b->len] = '\0';
}

static void sb_dec(struct sbuf *b, unsigned v)
{
	char tmp[12];
	int i = (int)sizeof(tmp) - 1;

	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	sb_str(b, tmp + i);
}

static void sb_hex8(struct sbuf *b, unsigned v)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[5] = {'0', 'x', hex[v >> 4 & 0xF], hex[v & 0xF], '\0'};

	sb_str(b, tmp);
}

static void sb_triple(struct sbuf *b, unsigned layer, unsigned etype, unsigned ecode)
{
	sb_str(b, "(layer ");
	sb_dec(b, layer);
	sb_str(b, " etype ");
	sb_dec(b, etype);
	sb_str(b, " code ");
	sb_hex8(b, ecode);
	sb_str(b, ")");
}

char *siw_term_describe(const struct siw_term_info *t, char *out, size_t sz)
{
	struct sbuf b = {out, sz, 0};

	if (!out || !sz)
		return out;
	out[0] = '\0';
	if (!t)
		return out;
	if (t->rfc_valid) {
		sb_str(&b, siw_term_name(t->layer, t->etype, t->ecode));
		sb_str(&b, " ");
		sb_triple(&b, t->layer, t->etype, t->ecode);
		return out;
	}
	sb_str(&b, "unregistered TERMINATE ");
	sb_triple(&b, t->layer, t->etype, t->ecode);
	if (t->swapped_valid) {
		sb_str(&b, "; as kernel siw lays it out: ");
		sb_str(&b, siw_term_name(t->swapped_layer, t->swapped_etype, t->ecode));
		sb_str(&b, " ");
		sb_triple(&b, t->swapped_layer, t->swapped_etype, t->ecode);
	}
	return out;
}
