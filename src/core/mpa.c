// SPDX-License-Identifier: MIT
/*
 * MPA connection setup: request/reply/reject frames (RFC 5044 §7.1) and the RFC 6581 enhanced
 * setup (revision 2: IRD/ORD words, peer-to-peer mode and the ready-to-receive message).
 *
 * Everything here is a pure function of its arguments; the connection manager owns the socket
 * and the timers and decides what to do with the verdicts.
 *
 * Decisions that go beyond the RFC text (see docs/PROTOCOL.md §1.1, §2 for the tagged facts):
 *
 * Revision 0. Kernel siw accepts rev 0 (the RDMA Consortium draft MPA that predates RFC 5044;
 *   RFC 5044 App. C covers interop with it). Its frames are laid out like rev 1, so a request
 *   with rev 0 is accepted and run with rev 1 rules; the reply then carries rev 0 too
 *   (min(peer, ours), which is also what kernel siw sends since it echoes the request's
 *   flag/revision word). The risk is small: the rev 1 startup rule (the initiator sends the
 *   first FPDU) is the stricter one anyway. A *reply* with rev 0 is refused: we never ask for
 *   rev 0, so a responder answering with it is broken.
 *
 * Rev 2 without the enhanced bit. Only rev 2 *with* MPA_FLAG_ENHANCED carries the IRD/ORD words.
 *   A rev 2 request without the bit exchanges nothing extra, so we answer it as a rev 1
 *   responder would (rev 1, no words); siw_mpa_result.rev == 2 always means "words exchanged".
 *
 * Rev 1 reply to a rev 2 request. Kernel siw fails the connection; we go on without the IRD/ORD
 *   exchange (our own IRD/ORD are used) and without P2P, i.e. with RFC 5044 startup rules. A
 *   responder that only knows RFC 5044 is allowed to answer that way, and cxgb4 would simply
 *   reconnect with rev 1 to get the same result.
 *
 * Kernel siw's early rejects (bad request, markers asked for) echo the request's flag word, so
 *   they carry the enhanced bit and rev 2 with no private data at all. A reject frame is
 *   therefore parsed even when the enhanced bit promises words that are not there.
 */
#include "mpa.h"

#include "error.h"

#define E_BAD_REQREP SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_BAD_REQREP)
#define E_IRD        SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_INSUFFICIENT_IRD)
#define E_NO_RTR     SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_NO_MATCHING_RTR)

#define RTR_BIT(t) (1u << (t))
#define RTR_ALL    (RTR_BIT(SIW_RTR_SEND) | RTR_BIT(SIW_RTR_WRITE) | RTR_BIT(SIW_RTR_READ))

static uint16_t clamp_ird_ord(uint16_t v)
{
	return v > MPA_V2_IRD_ORD_MASK ? MPA_V2_IRD_ORD_MASK : v;
}

static uint16_t min_u16(uint16_t a, uint16_t b)
{
	return a < b ? a : b;
}

/* ---- frames --------------------------------------------------------------------------------- */

/*
 * Checks the fixed 20-byte header (RFC 5044 §7.1.1): key, revision, private data length.
 * Everything that can be judged before the private data arrives is judged here, so a reader
 * never waits for up to 512 bytes of a frame that is already known to be bad.
 */
static int check_hdr(const uint8_t *h, bool want_reply)
{
	uint8_t rev = h[MPA_RR_OFF_REV];

	if (memcmp(h, want_reply ? MPA_KEY_REP : MPA_KEY_REQ, MPA_KEY_LEN) != 0)
		return E_BAD_REQREP;
	/* Rev 0 is tolerated in requests only (see the top of this file). */
	if (rev > MPA_REV_2 || (rev == 0 && want_reply))
		return E_BAD_REQREP;
	/* RFC 5044 §7.1.1: more than 512 bytes of private data closes the connection. */
	if (get_be16(h + MPA_RR_OFF_PDLEN) > MPA_MAX_PRIVDATA)
		return E_BAD_REQREP;
	return 0;
}

int siw_mpa_parse(const uint8_t *buf, size_t len, bool want_reply, struct siw_mpa_frame *f)
{
	uint16_t pd_len;
	uint8_t flags, rev;
	int err;

	if (!f || (!buf && len))
		return SIW_ERR_INVAL;
	if (len < MPA_RR_HDR_LEN)
		return SIW_ERR_AGAIN;
	err = check_hdr(buf, want_reply);
	if (err)
		return err;
	pd_len = get_be16(buf + MPA_RR_OFF_PDLEN);
	if (len < (size_t)MPA_RR_HDR_LEN + pd_len)
		return SIW_ERR_AGAIN;

	flags = buf[MPA_RR_OFF_FLAGS];
	rev = buf[MPA_RR_OFF_REV];
	memset(f, 0, sizeof(*f));
	f->is_reply = want_reply;
	/* Reserved bits (incl. siw's GSO bit) are kept as received and otherwise ignored. */
	f->flags = flags;
	f->rev = rev;
	f->pd_len = pd_len;
	f->pd = buf + MPA_RR_HDR_LEN;
	f->user_pd = f->pd;
	f->user_pd_len = pd_len;

	if (flags & MPA_FLAG_ENHANCED) {
		/* RFC 6581 §5: the enhanced frame is a rev 2 frame; earlier revisions lack it. */
		if (rev != MPA_REV_2)
			return E_BAD_REQREP;
		if (pd_len < MPA_V2_IRD_ORD_LEN) {
			/* A reject is still a reject (kernel siw sends these; see the top). */
			if (want_reply && (flags & MPA_FLAG_REJECT))
				return MPA_RR_HDR_LEN + pd_len;
			return E_BAD_REQREP;
		}
		f->v2 = true;
		f->ird_word = get_be16(f->pd);
		f->ord_word = get_be16(f->pd + 2);
		f->user_pd += MPA_V2_IRD_ORD_LEN;
		f->user_pd_len -= MPA_V2_IRD_ORD_LEN;
	}
	return MPA_RR_HDR_LEN + pd_len;
}

/* Writes header + optional IRD/ORD words + private data; the caller checked the sizes. */
static int put_frame(uint8_t *out, const char *key, uint8_t flags, uint8_t rev, bool words,
		     uint16_t ird_word, uint16_t ord_word, const void *pd, size_t pd_len)
{
	size_t wlen = words ? MPA_V2_IRD_ORD_LEN : 0;

	memcpy(out, key, MPA_KEY_LEN);
	out[MPA_RR_OFF_FLAGS] = flags;
	out[MPA_RR_OFF_REV] = rev;
	put_be16(out + MPA_RR_OFF_PDLEN, (uint16_t)(wlen + pd_len));
	if (words) {
		put_be16(out + MPA_RR_HDR_LEN, ird_word);
		put_be16(out + MPA_RR_HDR_LEN + 2, ord_word);
	}
	if (pd_len)
		memcpy(out + MPA_RR_HDR_LEN + wlen, pd, pd_len);
	return (int)(MPA_RR_HDR_LEN + wlen + pd_len);
}

/* Checks the private data fits (RFC 5044 §7.1: 512 bytes, RFC 6581 words included). */
static int check_sizes(bool words, const void *pd, size_t pd_len, const uint8_t *out, size_t outsz)
{
	size_t wlen = words ? MPA_V2_IRD_ORD_LEN : 0;

	if ((!pd && pd_len) || pd_len > MPA_MAX_PRIVDATA - wlen)
		return SIW_ERR_INVAL;
	if (!out || outsz < MPA_RR_HDR_LEN + wlen + pd_len)
		return SIW_ERR_NOBUFS;
	return 0;
}

int siw_mpa_build_req(const struct siw_mpa_cfg *cfg, uint16_t ird, uint16_t ord, const void *pd,
		      size_t pd_len, uint8_t *out, size_t outsz)
{
	uint16_t ird_word = 0, ord_word = 0;
	uint8_t flags = 0;
	bool v2;
	int err;

	if (!cfg || (cfg->rev != MPA_REV_1 && cfg->rev != MPA_REV_2))
		return SIW_ERR_INVAL;
	v2 = cfg->rev == MPA_REV_2;
	err = check_sizes(v2, pd, pd_len, out, outsz);
	if (err)
		return err;

	if (cfg->crc != SIW_CRC_OFF)
		flags |= MPA_FLAG_CRC;
	if (cfg->markers)
		flags |= MPA_FLAG_MARKERS;
	if (cfg->gso)
		flags |= MPA_FLAG_SIW_GSO;
	if (cfg->rfc7306)
		flags |= MPA_FLAG_RFC7306_OFFER;
	/* Rev 1 has no room for IRD/ORD or P2P: cfg->p2p is then ignored (RFC 5044 startup). */
	if (v2) {
		unsigned rtr = cfg->rtr_types & RTR_ALL;

		if (ird > MPA_V2_IRD_ORD_MASK || ord > MPA_V2_IRD_ORD_MASK)
			return SIW_ERR_INVAL;
		flags |= MPA_FLAG_ENHANCED;
		ird_word = ird;
		ord_word = ord;
		if (cfg->p2p) {
			/* P2P with nothing to offer would only be refused (RFC 6581 §9†). */
			if (!rtr)
				return SIW_ERR_INVAL;
			ird_word |= MPA_V2_PEER_TO_PEER;
			if (rtr & RTR_BIT(SIW_RTR_SEND))
				ird_word |= MPA_V2_RTR_SEND;
			if (rtr & RTR_BIT(SIW_RTR_WRITE))
				ord_word |= MPA_V2_RTR_WRITE;
			if (rtr & RTR_BIT(SIW_RTR_READ)) {
				ord_word |= MPA_V2_RTR_READ;
				/*
				 * A zero-length READ RTR is a real READ REQUEST: it takes an ORD
				 * slot here and an IRD slot at the responder. Announce at least one
				 * so the responder can pick READ (kernel siw does the same).
				 */
				if (ord == 0)
					ord_word |= 1;
			}
		}
	}
	return put_frame(out, MPA_KEY_REQ, flags, cfg->rev, v2, ird_word, ord_word, pd, pd_len);
}

/* ---- responder ------------------------------------------------------------------------------ */

/* Offered RTR types of a frame's IRD/ORD words, as 1 << SIW_RTR_*. */
static unsigned rtr_offered(uint16_t ird_word, uint16_t ord_word)
{
	unsigned t = 0;

	if (ird_word & MPA_V2_RTR_SEND)
		t |= RTR_BIT(SIW_RTR_SEND);
	if (ord_word & MPA_V2_RTR_WRITE)
		t |= RTR_BIT(SIW_RTR_WRITE);
	if (ord_word & MPA_V2_RTR_READ)
		t |= RTR_BIT(SIW_RTR_READ);
	return t;
}

/*
 * The responder picks exactly one RTR type (RFC 6581 §9.2†). WRITE first: it costs nothing at
 * either end. READ next: it takes one IRD slot until answered. SEND last: it consumes a posted
 * receive on our side that the application did not plan for (kernel siw never picks it).
 */
static enum siw_rtr rtr_pick(unsigned common)
{
	if (common & RTR_BIT(SIW_RTR_WRITE))
		return SIW_RTR_WRITE;
	if (common & RTR_BIT(SIW_RTR_READ))
		return SIW_RTR_READ;
	if (common & RTR_BIT(SIW_RTR_SEND))
		return SIW_RTR_SEND;
	return SIW_RTR_NONE;
}

int siw_mpa_respond(const struct siw_mpa_cfg *cfg, const struct siw_mpa_frame *req,
		    uint16_t local_ird, uint16_t local_ord, struct siw_mpa_result *res)
{
	uint16_t lird = clamp_ird_ord(local_ird), lord = clamp_ird_ord(local_ord);
	uint16_t peer_ird, peer_ord;

	if (!cfg || !req || !res || req->is_reply ||
	    (cfg->rev != MPA_REV_1 && cfg->rev != MPA_REV_2))
		return SIW_ERR_INVAL;

	/*
	 * res is filled before any verdict, so that a reject can be built from it with
	 * siw_mpa_build_reply(..., reject = true, ...) in the same revision.
	 */
	memset(res, 0, sizeof(*res));
	res->user_pd = req->user_pd;
	res->user_pd_len = req->user_pd_len;
	if (req->rev == 0)
		res->rev = 0;
	else if (req->v2 && cfg->rev == MPA_REV_2)
		res->rev = MPA_REV_2;
	else
		res->rev = MPA_REV_1;
	res->ird = lird;
	res->ord = lord;

	/*
	 * RFC 5044 §7.1.1 (C): CRC runs in both directions as soon as either side asks. Asking
	 * ourselves (REQUEST or REQUIRE) is done by setting C in the reply, so the responder
	 * never has to refuse over CRC.
	 */
	res->crc = (req->flags & MPA_FLAG_CRC) || cfg->crc != SIW_CRC_OFF;
	/* siw's private bit: large FPDUs only when both ends said so. */
	res->gso = cfg->gso && (req->flags & MPA_FLAG_SIW_GSO);
	/* RFC 7306 only with an initiator that offered it (PROTOCOL.md §6.5). */
	res->rfc7306 = cfg->rfc7306 && (req->flags & MPA_FLAG_RFC7306_OFFER);
	/*
	 * RFC 5044 §7.1.1 (M): a frame's M asks the *other* side to insert markers. The request's
	 * M is about what we send; our own wish goes into the reply's M.
	 */
	res->markers_rx = cfg->markers;
	res->markers_tx = req->flags & MPA_FLAG_MARKERS;
	if (res->markers_tx && !cfg->accept_markers)
		return E_BAD_REQREP;

	if (res->rev != MPA_REV_2)
		return 0;

	/* RFC 6581 §9.2†: P2P is answered by echoing it with exactly one RTR type. */
	if (req->ird_word & MPA_V2_PEER_TO_PEER) {
		unsigned common = rtr_offered(req->ird_word, req->ord_word) & cfg->rtr_types;

		res->rtr = rtr_pick(common);
		if (res->rtr == SIW_RTR_NONE)
			return E_NO_RTR;
		res->p2p = true;
	}

	/*
	 * RFC 6581 §5/§9†: the initiator's ORD must fit our IRD, and our ORD must not exceed the
	 * initiator's IRD. As kernel siw does, the peer's ORD becomes our IRD and the peer's IRD
	 * our ORD, each clamped to what the application offered. 0x3FFF means "no value given"
	 * (Intel): from the peer it leaves ours unchanged, as ours it takes the peer's value
	 * without complaint. The IRQ is sized to what the peer can actually use.
	 *
	 * When a value does not fit: strict mode refuses with "insufficient IRD". Relaxed mode
	 * (cxgb4's and siw's relaxed_ird_negotiation) lowers instead of failing: our ORD simply
	 * drops to the peer's IRD (always allowed: a side may lower its own ORD), and our IRD is
	 * announced as what we really have, so a relaxed initiator lowers its ORD to it (a strict
	 * one will answer with an insufficient-IRD TERMINATE, which is then its choice).
	 */
	peer_ird = req->ird_word & MPA_V2_IRD_ORD_MASK;
	peer_ord = req->ord_word & MPA_V2_IRD_ORD_MASK;
	if (peer_ord != MPA_V2_IRD_ORD_NONE) {
		if (peer_ord > lird && !cfg->relaxed_ird)
			return E_IRD;
		res->ird = min_u16(lird, peer_ord);
	}
	if (peer_ird != MPA_V2_IRD_ORD_NONE) {
		if (lord > peer_ird && lord != MPA_V2_IRD_ORD_NONE && !cfg->relaxed_ird)
			return E_IRD;
		res->ord = min_u16(lord, peer_ird);
	}
	/* The READ RTR occupies one IRD slot until we answer it (PROTOCOL.md §2.3). */
	if (res->rtr == SIW_RTR_READ && res->ird == 0)
		res->ird = 1;
	return 0;
}

int siw_mpa_build_reply(const struct siw_mpa_cfg *cfg, const struct siw_mpa_result *res,
			bool reject, const void *pd, size_t pd_len, uint8_t *out, size_t outsz)
{
	uint16_t ird_word = 0, ord_word = 0;
	uint8_t flags = 0;
	bool v2;
	int err;

	/* Everything the reply says was decided in res; cfg is only for symmetry. */
	(void)cfg;
	if (!res || res->rev > MPA_REV_2)
		return SIW_ERR_INVAL;
	v2 = res->rev == MPA_REV_2;
	err = check_sizes(v2, pd, pd_len, out, outsz);
	if (err)
		return err;

	if (res->crc)
		flags |= MPA_FLAG_CRC;
	if (reject) {
		/* RFC 5044 §7.1.1 (R): no marker or GSO wish in a frame that ends the connection.
		 */
		flags |= MPA_FLAG_REJECT;
	} else {
		if (res->markers_rx)
			flags |= MPA_FLAG_MARKERS;
		if (res->gso)
			flags |= MPA_FLAG_SIW_GSO;
		if (res->rfc7306)
			flags |= MPA_FLAG_RFC7306_ACCEPT;
	}
	if (v2) {
		/*
		 * A rev 2 reject keeps the IRD/ORD block in front of the private data, as cxgb4
		 * and kernel siw send it; the initiator's parser strips it either way.
		 */
		flags |= MPA_FLAG_ENHANCED;
		ird_word = clamp_ird_ord(res->ird);
		ord_word = clamp_ird_ord(res->ord);
		if (!reject && res->p2p) {
			ird_word |= MPA_V2_PEER_TO_PEER;
			if (res->rtr == SIW_RTR_SEND)
				ird_word |= MPA_V2_RTR_SEND;
			else if (res->rtr == SIW_RTR_WRITE)
				ord_word |= MPA_V2_RTR_WRITE;
			else if (res->rtr == SIW_RTR_READ)
				ord_word |= MPA_V2_RTR_READ;
			else
				return SIW_ERR_INVAL;
		}
	}
	return put_frame(out, MPA_KEY_REP, flags, res->rev, v2, ird_word, ord_word, pd, pd_len);
}

/* ---- initiator ------------------------------------------------------------------------------ */

int siw_mpa_check_reply(const struct siw_mpa_cfg *cfg, uint16_t our_ird, uint16_t our_ord,
			const struct siw_mpa_frame *rep, struct siw_mpa_result *res)
{
	uint16_t lird = clamp_ird_ord(our_ird), lord = clamp_ird_ord(our_ord);
	uint16_t rep_ird, rep_ord;
	unsigned offered;

	if (!cfg || !rep || !res || !rep->is_reply ||
	    (cfg->rev != MPA_REV_1 && cfg->rev != MPA_REV_2))
		return SIW_ERR_INVAL;

	memset(res, 0, sizeof(*res));
	res->user_pd = rep->user_pd;
	res->user_pd_len = rep->user_pd_len;
	res->rev = rep->v2 ? MPA_REV_2 : MPA_REV_1;
	res->ird = lird;
	res->ord = lord;

	/* RFC 5044 §7.1.1 (R): the responder's ULP said no; its private data says why. */
	if (rep->flags & MPA_FLAG_REJECT)
		return SIW_ERR_REJECTED;

	/* A responder may answer with an older revision, never a newer one (§7.1.1 Rev). */
	if (rep->rev > cfg->rev)
		return E_BAD_REQREP;

	/*
	 * CRC: on if either frame has C (RFC 5044 §7.1.1). REQUIRE additionally wants to see C
	 * in the reply: a responder that clears it probably does not do CRC at all, and REQUIRE
	 * means not betting the connection on it.
	 */
	if (cfg->crc == SIW_CRC_REQUIRE && !(rep->flags & MPA_FLAG_CRC))
		return E_BAD_REQREP;
	res->crc = cfg->crc != SIW_CRC_OFF || (rep->flags & MPA_FLAG_CRC);
	res->gso = cfg->gso && (rep->flags & MPA_FLAG_SIW_GSO);
	/*
	 * RFC 7306: ACCEPT without OFFER. A reply that has OFFER is an echo of our request
	 * (kernel siw answers with the request's flag byte), not an answer to it.
	 */
	res->rfc7306 = cfg->rfc7306 && (rep->flags & MPA_FLAG_RFC7306_ACCEPT) &&
		       !(rep->flags & MPA_FLAG_RFC7306_OFFER);
	/* Our M asked for markers in what we receive; the reply's M is about what we send. */
	res->markers_rx = cfg->markers;
	res->markers_tx = rep->flags & MPA_FLAG_MARKERS;
	if (res->markers_tx && !cfg->accept_markers)
		return E_BAD_REQREP;

	/* No words (rev 1 reply, see the top of this file): our values, no P2P. */
	if (!rep->v2)
		return 0;

	/*
	 * RFC 6581 §9†: after the reply, our IRD must cover the responder's ORD; if not, the
	 * initiator sends "insufficient IRD". our_ird is all the IRQ we have, so relaxed mode
	 * cannot help here (kernel siw may grow its IRD up to the device limit; our caller has
	 * already passed that limit as our_ird). Our ORD, though, may always be lowered to the
	 * responder's IRD in relaxed mode; strict mode refuses.
	 */
	rep_ird = rep->ird_word & MPA_V2_IRD_ORD_MASK;
	rep_ord = rep->ord_word & MPA_V2_IRD_ORD_MASK;
	if (rep_ord != MPA_V2_IRD_ORD_NONE) {
		if (rep_ord > lird)
			return E_IRD;
		res->ird = rep_ord;
	}
	if (rep_ird != MPA_V2_IRD_ORD_NONE) {
		if (lord > rep_ird && lord != MPA_V2_IRD_ORD_NONE && !cfg->relaxed_ird)
			return E_IRD;
		res->ord = min_u16(lord, rep_ird);
	}

	/*
	 * P2P (RFC 6581 §9.2†): if we asked, the reply either declines (no P2P bit: RFC 5044
	 * startup, we send first) or echoes it with exactly one of the types we offered. Anything
	 * else, including P2P that we never asked for (the responder would wait for an RTR that
	 * never comes), is "no matching RTR" (cxgb4 sends that TERMINATE in the same case).
	 */
	offered = cfg->p2p && cfg->rev == MPA_REV_2 ? cfg->rtr_types & RTR_ALL : 0;
	if (rep->ird_word & MPA_V2_PEER_TO_PEER) {
		unsigned chosen = rtr_offered(rep->ird_word, rep->ord_word);

		/* exactly one bit, and one we offered */
		if (!chosen || (chosen & (chosen - 1)) || !(chosen & offered))
			return E_NO_RTR;
		res->rtr = rtr_pick(chosen);
		res->p2p = true;
		/* Our READ RTR takes an ORD slot (build_req announced it). */
		if (res->rtr == SIW_RTR_READ && res->ord == 0)
			res->ord = 1;
	}
	return 0;
}

/* ---- reader --------------------------------------------------------------------------------- */

void siw_mpa_reader_init(struct siw_mpa_reader *r, bool want_reply)
{
	memset(r, 0, sizeof(*r));
	r->want_reply = want_reply;
}

int siw_mpa_reader_want(const struct siw_mpa_reader *r)
{
	int err;

	/* Only the fixed header first: its length field says how much follows. */
	if (r->have < MPA_RR_HDR_LEN)
		return (int)(MPA_RR_HDR_LEN - r->have);
	err = check_hdr(r->buf, r->want_reply);
	if (err)
		return err;
	return (int)(MPA_RR_HDR_LEN + get_be16(r->buf + MPA_RR_OFF_PDLEN) - r->have);
}

int siw_mpa_reader_feed(struct siw_mpa_reader *r, const uint8_t *in, size_t len)
{
	int want = siw_mpa_reader_want(r);
	size_t n;

	if (want < 0)
		return want;
	/*
	 * Never more than the frame still needs: the bytes after it are the first FPDU (or, on
	 * the initiator, possibly a TERMINATE) and belong to the receive path.
	 */
	n = len < (size_t)want ? len : (size_t)want;
	if (n) {
		if (!in)
			return SIW_ERR_INVAL;
		memcpy(r->buf + r->have, in, n);
		r->have += n;
	}
	return (int)n;
}
