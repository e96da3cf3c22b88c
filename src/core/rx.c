// SPDX-License-Identifier: MIT
/*
 * The streaming receive parser (see rx.h). One FPDU at a time:
 *
 *	HDR      the first 4 bytes give length, T bit and opcode; then the rest of the
 *	         opcode's header is collected. The header is checked as a whole and the
 *	         destination of the payload is resolved (STag lookup, receive buffer).
 *	PAYLOAD  bytes go to ops->place (or straight from the socket: siw_rx_direct_iov).
 *	TRAILER  pad and CRC; then the FPDU (and, with L set, the message) is complete.
 *	DEAD     after the first error; input is ignored.
 *
 * With markers negotiated, every MPA_MARKER_PERIOD bytes of the stream a 4-byte marker is
 * taken out before the state machine sees the bytes (see rx_marker()).
 */
#include "rx.h"

#include "crc32c.h"
#include "error.h"
#include "term.h"

/* The errors this parser can find, named once (RFC 5040 §7, RFC 5041 §7, RFC 5044 §8). */
#define E_DDP_T_VERSION	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_VERSION)
#define E_DDP_U_VERSION	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_VERSION)
#define E_DDP_T_STAG	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_STAG)
#define E_DDP_T_BOUNDS	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_BASE_BOUNDS)
#define E_DDP_U_QN	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_QN)
#define E_DDP_U_NOBUF	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MSN_NOBUF)
#define E_DDP_U_MSN	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MSN_RANGE)
#define E_DDP_U_MO	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MO)
#define E_DDP_U_TOO_LONG SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_MSG_TOO_LONG)
#define E_DDP_CATA	 SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_CATASTROPHIC, TERM_ECODE_DDP_CATASTROPHIC)
#define E_RDMAP_VERSION	 SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_INV_VERSION)
#define E_RDMAP_OPCODE	 SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP)
#define E_RDMAP_OP_UNSPEC SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNSPECIFIED)
#define E_RDMAP_LOCAL	 SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC, TERM_ECODE_RDMAP_UNSPECIFIED)
#define E_RDMAP_INVAL	 SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_CANNOT_INVALIDATE)
#define E_LLP_CRC	 SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_CRC)
#define E_LLP_MARKER	 SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_MARKER)
#define E_LLP_RTR	 SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_NO_MATCHING_RTR)

/* Completion status hints for the receive buffer taken by a failing SEND (rx->u_status). */
#define U_STATUS_FLUSH	  0
#define U_STATUS_LOC_LEN  1
#define U_STATUS_LOC_PROT 2

/* Bytes needed before the opcode (and so the header length) is known. */
#define HDR_MIN 4

struct opinfo {
	uint8_t hdr_len;  /* FPDU header incl. MPA length */
	uint8_t tagged;	  /* must have T set (1) or clear (0) */
	uint8_t qn;	  /* untagged queue */
	uint8_t payload;  /* may carry payload */
	uint8_t rfc7306;  /* only with RFC 7306 negotiated */
};

/* One row per RDMAP opcode; a new opcode is one new row (kernel siw's iwarp_pktinfo idea). */
static const struct opinfo opinfo[RDMAP_NUM_OPCODES] = {
	[RDMAP_WRITE] = {DDP_TAGGED_HDR_LEN, 1, 0, 1, 0},
	[RDMAP_READ_REQ] = {RREQ_HDR_LEN, 0, RDMAP_QN_READ_REQ, 0, 0},
	[RDMAP_READ_RESP] = {DDP_TAGGED_HDR_LEN, 1, 0, 1, 0},
	[RDMAP_SEND] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1, 0},
	[RDMAP_SEND_INV] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1, 0},
	[RDMAP_SEND_SE] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1, 0},
	[RDMAP_SEND_SE_INV] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1, 0},
	/* The Terminate's body (copied headers) is read as part of its header. */
	[RDMAP_TERMINATE] = {TERM_HDR_LEN, 0, RDMAP_QN_TERM, 1, 0},
	/* RFC 7306: single-FPDU messages without payload; their data is in the header. */
	[RDMAP_IMM_DATA] = {IMM_HDR_LEN, 0, RDMAP_QN_SEND, 0, 1},
	[RDMAP_IMM_DATA_SE] = {IMM_HDR_LEN, 0, RDMAP_QN_SEND, 0, 1},
	[RDMAP_ATOMIC_REQ] = {AREQ_HDR_LEN, 0, RDMAP_QN_READ_REQ, 0, 1},
	[RDMAP_ATOMIC_RESP] = {ARESP_HDR_LEN, 0, RDMAP_QN_ATOMIC_RESP, 0, 1},
};

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Keeps the first error; the stream is dead from here on. */
static int rx_die(struct siw_rx *rx, int err)
{
	if (!rx->err)
		rx->err = err;
	rx->state = SIW_RX_DEAD;
	return rx->err;
}

/* Remembers the header of the FPDU that caused an error (for the Terminate's copy). */
static int rx_die_hdr(struct siw_rx *rx, int err, bool with_rdmap)
{
	if (!rx->err) {
		unsigned n = rx->hdr_have;

		memcpy(rx->err_hdr, rx->hdr, n);
		rx->err_hdr_len = n;
		rx->err_hdr_rdmap = with_rdmap;
	}
	return rx_die(rx, err);
}

/* A callback's error: a TERMINATE triple passes as is, anything else is a local catastrophe. */
static int cb_err(int err)
{
	return siw_err_is_term(err) ? err : E_RDMAP_LOCAL;
}

void siw_rx_init(struct siw_rx *rx, const struct siw_rx_ops *ops, void *user,
		 const struct siw_rx_params *p)
{
	memset(rx, 0, sizeof(*rx));
	rx->ops = ops;
	rx->user = user;
	rx->p = *p;
	if (!rx->p.max_ulpdu || rx->p.max_ulpdu > MPA_MAX_ULPDU)
		rx->p.max_ulpdu = MPA_MAX_ULPDU;
	rx->state = SIW_RX_HDR;
	rx->hdr_need = HDR_MIN;
	/* RFC 5040 §5.1: the first message on each untagged queue carries MSN 1. */
	for (unsigned i = 0; i < RDMAP_NUM_QN; i++)
		rx->msn[i] = 1;
	rx->rtr_pending = p->rtr != SIW_RTR_NONE;
}

int siw_rx_fail(struct siw_rx *rx, int err)
{
	return rx_die(rx, err);
}

/* ---- header ---------------------------------------------------------------------------- */

/* Does the engine handle this RFC 7306 opcode? */
static bool rfc7306_handler(const struct siw_rx *rx, uint8_t op)
{
	switch (op) {
	case RDMAP_IMM_DATA:
	case RDMAP_IMM_DATA_SE:
		return rx->ops->imm_data != NULL;
	case RDMAP_ATOMIC_REQ:
		return rx->ops->atomic_req != NULL;
	case RDMAP_ATOMIC_RESP:
		return rx->ops->atomic_resp != NULL;
	}
	return false;
}

/* The first 4 bytes: length, DDP control, RDMAP control. Sets hdr_need. */
static int hdr_first(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	uint8_t ddp = h[DDP_OFF_CTRL], rdmap = h[RDMAP_OFF_CTRL];
	const struct opinfo *oi;

	rx->ulpdu_len = get_be16(h);
	rx->tagged = ddp & DDP_FLAG_TAGGED;
	rx->last = ddp & DDP_FLAG_LAST;
	rx->opcode = rdmap & RDMAP_OPCODE_MASK;

	/* Version errors: the rest of the header has an unknown layout, so nothing is copied. */
	if ((ddp & DDP_VERSION_MASK) != DDP_VERSION)
		return rx_die(rx, rx->tagged ? E_DDP_T_VERSION : E_DDP_U_VERSION);
	if (rdmap >> RDMAP_VERSION_SHIFT != RDMAP_VERSION)
		return rx_die(rx, E_RDMAP_VERSION);
	if (rx->opcode >= RDMAP_NUM_OPCODES)
		return rx_die(rx, E_RDMAP_OPCODE);
	oi = &opinfo[rx->opcode];
	if (oi->rfc7306 && (!rx->p.rfc7306 || !rfc7306_handler(rx, rx->opcode)))
		return rx_die(rx, E_RDMAP_OPCODE);
	if (oi->tagged != rx->tagged)
		return rx_die(rx, E_RDMAP_OPCODE);

	/* The ULPDU must hold the whole header, and no more than we accept. */
	if (rx->ulpdu_len + MPA_HDR_LEN < oi->hdr_len || rx->ulpdu_len > rx->p.max_ulpdu)
		return rx_die(rx, E_DDP_CATA);
	rx->hdr_need = oi->hdr_len;
	if (rx->opcode == RDMAP_TERMINATE) {
		/*
		 * Read the Terminate's copied headers with it; they are short. A longer one
		 * (malformed) is cut to what fits and acted on at once: never answer a TERMINATE.
		 */
		rx->hdr_need = rx->ulpdu_len + MPA_HDR_LEN;
		if (rx->hdr_need > SIW_MAX_HDR_LEN)
			rx->hdr_need = SIW_MAX_HDR_LEN;
	}
	return 0;
}

/* Resolves a tagged segment of `len` bytes at stag/to needing `access`. */
static int tagged_dst(struct siw_rx *rx, uint32_t stag, uint64_t to, uint32_t len,
		      uint32_t access, bool remote, uint8_t **dst)
{
	struct siw_mem_ref m;
	int err;

	/*
	 * A zero-length tagged segment touches no memory: no lookup. This is what lets the
	 * RFC 6581 zero-length WRITE/READ RTR carry an STag that names nothing (kernel siw
	 * sends STag 1).
	 */
	if (len == 0) {
		*dst = NULL;
		return 0;
	}
	err = rx->ops->mem_lookup(rx->user, stag, &m);
	if (!err)
		err = siw_mem_check(&m, remote ? rx->p.pd : m.pd, remote ? rx->p.qpn : 0, access,
				    to, len, dst);
	if (err)
		return siw_err_is_term(err) ? err : siw_mem_err_to_term(err, true);
	return 0;
}

static int hdr_tagged(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	uint32_t stag = get_be32(h + DDP_OFF_STAG);
	uint64_t to = get_be64(h + DDP_OFF_TO);
	int err;

	if (rx->t_active && rx->t_opcode != rx->opcode)
		return rx_die_hdr(rx, E_RDMAP_OPCODE, false); /* tagged messages interleaved */

	if (rx->opcode == RDMAP_WRITE) {
		if (rx->rtr_pending) {
			/* RFC 6581 §6: the responder's first FPDU must be the negotiated RTR. */
			if (rx->p.rtr != SIW_RTR_WRITE || rx->payload_len || !rx->last)
				return rx_die_hdr(rx, E_LLP_RTR, false);
			rx->t_dst = NULL;
			return 0;
		}
		/*
		 * Every WRITE segment names its own STag and offset, so each is checked on its
		 * own (RFC 5041 §5: tagged segments are self-describing).
		 */
		/* The segments of one WRITE message continue it: same STag, the next offset. */
		if (rx->t_active && stag != rx->t_stag)
			return rx_die_hdr(rx, E_DDP_T_STAG, false);
		if (rx->t_active && to != rx->t_to)
			return rx_die_hdr(rx, E_DDP_T_BOUNDS, false);
		err = tagged_dst(rx, stag, to, rx->payload_len, SIW_MEM_REMOTE_WRITE, true,
				 &rx->t_dst);
		if (err)
			return rx_die_hdr(rx, err, false);
		if (!rx->t_active) {
			rx->t_active = true;
			rx->t_opcode = RDMAP_WRITE;
			rx->t_stag = stag;
			rx->t_to = to;
			rx->t_len = 0;
		}
		return 0;
	}

	/* READ RESPONSE: must answer our oldest READ, at the next byte of its sink. */
	{
		struct siw_orq_view o;

		err = rx->ops->orq_head(rx->user, &o);
		if (err || o.atomic)
			return rx_die_hdr(rx, E_RDMAP_OPCODE, false); /* answers no READ */
		if (!rx->t_active) {
			rx->t_active = true;
			rx->t_opcode = RDMAP_READ_RESP;
			rx->t_stag = o.sink_stag;
			rx->t_to = o.sink_to;
			rx->t_len = 0;
		}
		if (stag != o.sink_stag)
			return rx_die_hdr(rx, E_DDP_T_STAG, false);
		if (to != rx->t_to || (uint64_t)rx->t_len + rx->payload_len > o.len ||
		    (rx->last && rx->t_len + rx->payload_len != o.len))
			return rx_die_hdr(rx, E_DDP_T_BOUNDS, false);
		/* Our own sink: the local application granted write access to it. */
		err = tagged_dst(rx, stag, to, rx->payload_len, SIW_MEM_LOCAL_WRITE, false,
				 &rx->t_dst);
		if (err)
			return rx_die_hdr(rx, err, false);
		return 0;
	}
}

/* Takes the next receive buffer and resolves its SGEs for local writing. */
static int recv_begin(struct siw_rx *rx)
{
	const struct siw_sge *sge;
	unsigned n;
	uint64_t cap = 0;
	int err;

	err = rx->ops->rq_begin(rx->user, &sge, &n);
	if (err)
		return err == SIW_ERR_QFULL ? E_DDP_U_NOBUF : cb_err(err);
	rx->u_active = true;
	if (n > SIW_MAX_SGE) {
		rx->u_status = U_STATUS_LOC_PROT;
		return E_RDMAP_LOCAL;
	}
	rx->u_nseg = 0;
	for (unsigned i = 0; i < n; i++) {
		struct siw_mem_ref m;
		uint8_t *p;

		if (!sge[i].length)
			continue;
		err = rx->ops->mem_lookup(rx->user, sge[i].lkey, &m);
		if (!err)
			err = siw_mem_check(&m, rx->p.pd, 0, SIW_MEM_LOCAL_WRITE, sge[i].addr,
					    sge[i].length, &p);
		if (err) {
			/* A bad local SGE is the local consumer's fault: local protection error. */
			rx->u_status = U_STATUS_LOC_PROT;
			return E_RDMAP_LOCAL;
		}
		rx->u_segs[rx->u_nseg].addr = p;
		rx->u_segs[rx->u_nseg].len = sge[i].length;
		rx->u_nseg++;
		cap += sge[i].length;
	}
	rx->u_cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
	rx->u_seg = 0;
	rx->u_seg_off = 0;
	rx->u_mo = 0;
	return 0;
}

static int hdr_send(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	uint32_t qn = get_be32(h + DDP_OFF_QN), msn = get_be32(h + DDP_OFF_MSN);
	uint32_t mo = get_be32(h + DDP_OFF_MO);
	int err;

	if (qn != RDMAP_QN_SEND)
		return rx_die_hdr(rx, E_DDP_U_QN, false);
	if (msn != rx->msn[RDMAP_QN_SEND])
		return rx_die_hdr(rx, E_DDP_U_MSN, false);

	if (rx->rtr_pending) {
		/* RFC 6581: a zero-length SEND as RTR; it consumes no receive buffer. */
		if (rx->p.rtr != SIW_RTR_SEND || rx->payload_len || !rx->last || mo)
			return rx_die_hdr(rx, E_LLP_RTR, false);
		return 0;
	}
	if (!rx->u_active) {
		if (mo != 0)
			return rx_die_hdr(rx, E_DDP_U_MO, false);
		err = recv_begin(rx);
		if (err)
			return rx_die_hdr(rx, err, false);
		rx->u_opcode = rx->opcode;
		rx->u_msn = msn;
		rx->u_inv_stag = get_be32(h + DDP_OFF_RSVDULP);
	} else {
		if (rx->opcode != rx->u_opcode)
			return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
		if (mo != rx->u_mo)
			return rx_die_hdr(rx, E_DDP_U_MO, false);
	}
	if ((uint64_t)rx->u_mo + rx->payload_len > rx->u_cap) {
		rx->u_status = U_STATUS_LOC_LEN;
		return rx_die_hdr(rx, E_DDP_U_TOO_LONG, false);
	}
	return 0;
}

static int hdr_read_req(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	struct siw_read_req r;
	int err;

	if (get_be32(h + DDP_OFF_QN) != RDMAP_QN_READ_REQ)
		return rx_die_hdr(rx, E_DDP_U_QN, true);
	r.msn = get_be32(h + DDP_OFF_MSN);
	if (r.msn != rx->msn[RDMAP_QN_READ_REQ])
		return rx_die_hdr(rx, E_DDP_U_MSN, true);
	if (get_be32(h + DDP_OFF_MO) != 0)
		return rx_die_hdr(rx, E_DDP_U_MO, true);
	/* A READ REQUEST is one FPDU and carries no payload. */
	if (!rx->last || rx->payload_len)
		return rx_die_hdr(rx, E_RDMAP_OPCODE, true);

	r.sink_stag = get_be32(h + RREQ_OFF_SINK_STAG);
	r.sink_to = get_be64(h + RREQ_OFF_SINK_TO);
	r.len = get_be32(h + RREQ_OFF_SIZE);
	r.src_stag = get_be32(h + RREQ_OFF_SRC_STAG);
	r.src_to = get_be64(h + RREQ_OFF_SRC_TO);
	r.rtr = false;
	if (rx->rtr_pending) {
		if (rx->p.rtr != SIW_RTR_READ || r.len)
			return rx_die_hdr(rx, E_LLP_RTR, true);
		r.rtr = true;
	} else if (r.len) {
		struct siw_mem_ref m;

		/* The source is named by an RDMAP header: errors are RDMAP remote protection. */
		err = rx->ops->mem_lookup(rx->user, r.src_stag, &m);
		if (!err)
			err = siw_mem_check(&m, rx->p.pd, rx->p.qpn, SIW_MEM_REMOTE_READ, r.src_to,
					    r.len, NULL);
		if (err)
			return rx_die_hdr(rx, siw_err_is_term(err) ? err
								  : siw_mem_err_to_term(err, false),
					  true);
	}
	/* Handed over now: the request is queued when its trailer (CRC) checks out. */
	return 0;
}

/* RFC 7306 §5: the single-FPDU messages of the extensions, checked as a whole. */
static int hdr_rfc7306(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	uint32_t qn = get_be32(h + DDP_OFF_QN), msn = get_be32(h + DDP_OFF_MSN);
	unsigned want_qn = opinfo[rx->opcode].qn;
	bool areq = rx->opcode == RDMAP_ATOMIC_REQ;

	if (qn != want_qn)
		return rx_die_hdr(rx, E_DDP_U_QN, false);
	if (msn != rx->msn[want_qn])
		return rx_die_hdr(rx, E_DDP_U_MSN, false);
	if (get_be32(h + DDP_OFF_MO) != 0)
		return rx_die_hdr(rx, E_DDP_U_MO, false);
	if (!rx->last || rx->payload_len)
		return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
	/* An Immediate Data message may not cut into a SEND in progress. */
	if (!areq && want_qn == RDMAP_QN_SEND && rx->u_active)
		return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
	if (areq) {
		uint8_t aop = h[AREQ_OFF_AOPCODE + 3] & AOP_MASK;
		uint64_t to = get_be64(h + AREQ_OFF_TO);
		struct siw_mem_ref m;
		int err;

		if (aop != AOP_FETCH_ADD && aop != AOP_CMP_SWAP)
			return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
		/* The operand is 64 bits, naturally aligned (RFC 7306 §5.2.1). */
		if (to & 7)
			return rx_die_hdr(rx, siw_mem_err_to_term(SIW_ERR_MEM_BOUNDS, false), false);
		err = rx->ops->mem_lookup(rx->user, get_be32(h + AREQ_OFF_STAG), &m);
		if (!err)
			err = siw_mem_check(&m, rx->p.pd, rx->p.qpn, SIW_MEM_REMOTE_ATOMIC, to, 8,
					    &rx->t_dst);
		if (err)
			return rx_die_hdr(rx, siw_err_is_term(err) ? err : siw_mem_err_to_term(err, false),
					  false);
	}
	if (rx->opcode == RDMAP_ATOMIC_RESP) {
		struct siw_orq_view o;

		if (rx->ops->orq_head(rx->user, &o) || !o.atomic ||
		    o.req_id != get_be32(h + ARESP_OFF_REQ_ID))
			return rx_die_hdr(rx, E_RDMAP_OPCODE, false); /* answers no request */
	}
	return 0;
}

/*
 * A TERMINATE arrived: report it and end the stream. A malformed one still ends it and is still
 * reported (its triple and whatever header bytes it carried are filled in). No TERMINATE goes
 * back for a TERMINATE (RFC 5040 §5.4), so the error kept is SIW_ERR_TERMINATED.
 */
static int terminate_received(struct siw_rx *rx)
{
	struct siw_term_info t;
	int err;

	siw_term_decode(get_be32(rx->hdr + TERM_OFF_CTRL), rx->hdr + TERM_HDR_LEN,
			rx->hdr_need - TERM_HDR_LEN, &t);
	err = rx->ops->terminate(rx->user, &t);
	if (err && siw_err_is_term(err))
		err = SIW_ERR_TERMINATED; /* still never answered */
	return rx_die(rx, err ? err : SIW_ERR_TERMINATED);
}

/* The whole header is in rx->hdr: check it and resolve where the payload goes. */
static int hdr_done(struct siw_rx *rx)
{
	rx->payload_len = rx->ulpdu_len + MPA_HDR_LEN - rx->hdr_need;
	rx->payload_left = rx->payload_len;

	/*
	 * RFC 6581 §6: while the responder waits for the RTR, the only acceptable FPDUs are the
	 * negotiated RTR message and a TERMINATE (an initiator that cannot go on sends one).
	 */
	if (rx->rtr_pending && rx->opcode != RDMAP_TERMINATE &&
	    !(rx->opcode == RDMAP_WRITE && rx->p.rtr == SIW_RTR_WRITE) &&
	    !(rx->opcode == RDMAP_READ_REQ && rx->p.rtr == SIW_RTR_READ) &&
	    !(rx->opcode == RDMAP_SEND && rx->p.rtr == SIW_RTR_SEND))
		return rx_die_hdr(rx, E_LLP_RTR, rx->opcode == RDMAP_READ_REQ);

	switch (rx->opcode) {
	case RDMAP_WRITE:
	case RDMAP_READ_RESP:
		return hdr_tagged(rx);
	case RDMAP_SEND:
	case RDMAP_SEND_INV:
	case RDMAP_SEND_SE:
	case RDMAP_SEND_SE_INV:
		return hdr_send(rx);
	case RDMAP_READ_REQ:
		return hdr_read_req(rx);
	case RDMAP_IMM_DATA:
	case RDMAP_IMM_DATA_SE:
	case RDMAP_ATOMIC_REQ:
	case RDMAP_ATOMIC_RESP:
		return hdr_rfc7306(rx);
	case RDMAP_TERMINATE:
		if (get_be32(rx->hdr + DDP_OFF_QN) != RDMAP_QN_TERM)
			return rx_die_hdr(rx, E_DDP_U_QN, false);
		if (!rx->last)
			return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
		if (rx->payload_len)
			return terminate_received(rx); /* oversized: no CRC check, stop now */
		return 0;
	default:
		return rx_die_hdr(rx, E_RDMAP_OPCODE, false);
	}
}

/* ---- payload ----------------------------------------------------------------------------- */

/*
 * Walks the destinations of the next n payload bytes. With src (feed mode) the bytes are handed
 * to ops->place and the CRC is taken over src; without (direct mode) the caller already wrote
 * them and the CRC is taken where they lie.
 */
static int payload_advance(struct siw_rx *rx, const uint8_t *src, size_t n)
{
	if (rx->p.crc)
		rx->crc = siw_crc32c(rx->crc, src, n); /* src == NULL: done per chunk below */
	rx->payload_left -= (uint32_t)n;
	rx->stats.payload += n;

	if (rx->opcode == RDMAP_WRITE || rx->opcode == RDMAP_READ_RESP) {
		if (src) {
			int err = rx->ops->place(rx->user, rx->t_dst, src, n);

			if (err)
				return rx_die_hdr(rx, cb_err(err), false);
		}
		rx->t_dst += n;
		rx->t_to += n;
		rx->t_len += (uint32_t)n;
		return 0;
	}
	/* SEND family: across the receive buffer's segments. */
	rx->u_mo += (uint32_t)n;
	while (n) {
		struct siw_rx_seg *s = &rx->u_segs[rx->u_seg];
		size_t k = min_sz(n, s->len - rx->u_seg_off);

		if (src) {
			int err = rx->ops->place(rx->user, s->addr + rx->u_seg_off, src, k);

			if (err)
				return rx_die_hdr(rx, cb_err(err), false);
			src += k;
		}
		rx->u_seg_off += (uint32_t)k;
		n -= k;
		if (rx->u_seg_off == s->len) {
			rx->u_seg++;
			rx->u_seg_off = 0;
		}
	}
	return 0;
}

/* ---- end of FPDU / message --------------------------------------------------------------- */

static int fpdu_done(struct siw_rx *rx)
{
	const uint8_t *h = rx->hdr;
	unsigned pad = rx->trailer_need - MPA_CRC_LEN;
	int err = 0;

	if (rx->p.crc) {
		if (siw_crc32c_final(rx->crc) != siw_crc32c_get(rx->trailer + pad))
			return rx_die_hdr(rx, E_LLP_CRC, false);
	}
	rx->stats.fpdus++;

	if (rx->rtr_pending && rx->opcode != RDMAP_TERMINATE) {
		/* hdr_* accepted this FPDU as the RTR. */
		rx->rtr_pending = false;
		if (rx->opcode == RDMAP_READ_REQ) {
			struct siw_read_req r = {
				.sink_stag = get_be32(h + RREQ_OFF_SINK_STAG),
				.sink_to = get_be64(h + RREQ_OFF_SINK_TO),
				.src_stag = get_be32(h + RREQ_OFF_SRC_STAG),
				.src_to = get_be64(h + RREQ_OFF_SRC_TO),
				.msn = get_be32(h + DDP_OFF_MSN),
				.rtr = true,
			};
			rx->msn[RDMAP_QN_READ_REQ]++;
			err = rx->ops->read_req(rx->user, &r);
		} else if (rx->opcode == RDMAP_SEND) {
			rx->msn[RDMAP_QN_SEND]++;
		}
		if (!err)
			err = rx->ops->rtr_done(rx->user);
		goto out;
	}
	if (!rx->last)
		goto out;

	rx->stats.messages++;
	switch (rx->opcode) {
	case RDMAP_WRITE:
		rx->t_active = false;
		if (rx->ops->write_done)
			err = rx->ops->write_done(rx->user, rx->t_stag, rx->t_to - rx->t_len,
						  rx->t_len);
		break;
	case RDMAP_READ_RESP:
		rx->t_active = false;
		err = rx->ops->read_resp_done(rx->user);
		break;
	case RDMAP_SEND:
	case RDMAP_SEND_INV:
	case RDMAP_SEND_SE:
	case RDMAP_SEND_SE_INV: {
		struct siw_rx_recv r = {
			.len = rx->u_mo,
			.opcode = rx->u_opcode,
			.solicited = rx->u_opcode == RDMAP_SEND_SE || rx->u_opcode == RDMAP_SEND_SE_INV,
			.invalidate = rx->u_opcode == RDMAP_SEND_INV ||
				      rx->u_opcode == RDMAP_SEND_SE_INV,
			.inv_stag = rx->u_inv_stag,
		};
		rx->msn[RDMAP_QN_SEND]++;
		if (r.invalidate) {
			err = rx->ops->invalidate(rx->user, r.inv_stag);
			if (err && !siw_err_is_term(err))
				err = E_RDMAP_INVAL;
			if (err)
				break;
		}
		rx->u_active = false;
		err = rx->ops->recv_done(rx->user, &r);
		break;
	}
	case RDMAP_READ_REQ: {
		struct siw_read_req r = {
			.sink_stag = get_be32(h + RREQ_OFF_SINK_STAG),
			.sink_to = get_be64(h + RREQ_OFF_SINK_TO),
			.len = get_be32(h + RREQ_OFF_SIZE),
			.src_stag = get_be32(h + RREQ_OFF_SRC_STAG),
			.src_to = get_be64(h + RREQ_OFF_SRC_TO),
			.msn = get_be32(h + DDP_OFF_MSN),
		};
		rx->msn[RDMAP_QN_READ_REQ]++;
		err = rx->ops->read_req(rx->user, &r);
		if (err)
			return rx_die_hdr(rx, cb_err(err), true);
		break;
	}
	case RDMAP_IMM_DATA:
	case RDMAP_IMM_DATA_SE:
		rx->msn[RDMAP_QN_SEND]++;
		err = rx->ops->imm_data(rx->user, h + IMM_OFF_DATA, rx->opcode == RDMAP_IMM_DATA_SE);
		break;
	case RDMAP_ATOMIC_REQ: {
		struct siw_atomic_req a = {
			.aop = h[AREQ_OFF_AOPCODE + 3] & AOP_MASK,
			.req_id = get_be32(h + AREQ_OFF_REQ_ID),
			.stag = get_be32(h + AREQ_OFF_STAG),
			.to = get_be64(h + AREQ_OFF_TO),
			.add_swap = get_be64(h + AREQ_OFF_ADD_SWAP),
			.add_swap_mask = get_be64(h + AREQ_OFF_ADD_SWAP_MASK),
			.cmp = get_be64(h + AREQ_OFF_CMP),
			.cmp_mask = get_be64(h + AREQ_OFF_CMP_MASK),
			.msn = get_be32(h + DDP_OFF_MSN),
			.target = rx->t_dst,
		};
		rx->msn[RDMAP_QN_READ_REQ]++;
		err = rx->ops->atomic_req(rx->user, &a);
		break;
	}
	case RDMAP_ATOMIC_RESP: {
		struct siw_atomic_resp a = {
			.req_id = get_be32(h + ARESP_OFF_REQ_ID),
			.orig = get_be64(h + ARESP_OFF_ORIG),
		};
		rx->msn[RDMAP_QN_ATOMIC_RESP]++;
		err = rx->ops->atomic_resp(rx->user, &a);
		break;
	}
	case RDMAP_TERMINATE:
		return terminate_received(rx);
	default:
		break;
	}
out:
	if (err)
		return rx_die_hdr(rx, cb_err(err), false);
	return 0;
}

static void next_fpdu(struct siw_rx *rx)
{
	rx->state = SIW_RX_HDR;
	rx->hdr_have = 0;
	rx->hdr_need = HDR_MIN;
	rx->trailer_have = 0;
	rx->in_fpdu = false;
}

/* ---- markers ----------------------------------------------------------------------------- */

/* Stream bytes until the next marker (0: a marker starts here). */
static inline uint64_t to_marker(const struct siw_rx *rx)
{
	return (MPA_MARKER_PERIOD - rx->stream_pos % MPA_MARKER_PERIOD) % MPA_MARKER_PERIOD;
}

/*
 * A complete marker was read (RFC 5044 §5): 16 reserved bits, then the distance from the first
 * byte of the FPDU it falls into back to the marker. A marker where an FPDU would begin is that
 * FPDU's first 4 bytes (pointer 0) and, like every marker inside an FPDU, is covered by its CRC
 * (the reading Wireshark's dissector and Intel's drivers share; see docs/PROTOCOL.md).
 */
static int marker_done(struct siw_rx *rx, uint64_t marker_pos)
{
	if (get_be16(rx->marker + 2) != marker_pos - rx->fpdu_start)
		return rx_die(rx, E_LLP_MARKER);
	return 0;
}

/* The first byte of an FPDU (a marker or its length field) is about to be consumed. */
static inline void fpdu_begin(struct siw_rx *rx)
{
	if (!rx->in_fpdu) {
		rx->in_fpdu = true;
		rx->fpdu_start = rx->stream_pos;
		rx->crc = SIW_CRC32C_INIT;
	}
}

/* ---- the feed loop ----------------------------------------------------------------------- */

ssize_t siw_rx_feed(struct siw_rx *rx, const uint8_t *in, size_t len)
{
	size_t off = 0;

	if (rx->state == SIW_RX_DEAD)
		return rx->err;

	while (off < len) {
		size_t n = len - off, k;
		int err = 0;

		if (rx->p.markers) {
			uint64_t gap = to_marker(rx);

			if (rx->marker_have || gap == 0) {
				if (rx->marker_have == 0)
					fpdu_begin(rx);
				k = min_sz(n, MPA_MARKER_LEN - rx->marker_have);
				memcpy(rx->marker + rx->marker_have, in + off, k);
				rx->marker_have += (unsigned)k;
				off += k;
				rx->stream_pos += k;
				rx->stats.bytes += k;
				if (rx->p.crc)
					rx->crc = siw_crc32c(rx->crc, in + off - k, k);
				if (rx->marker_have == MPA_MARKER_LEN) {
					rx->marker_have = 0;
					if (marker_done(rx, rx->stream_pos - MPA_MARKER_LEN))
						return rx->err;
				}
				continue;
			}
			n = min_sz(n, gap);
		}

		switch (rx->state) {
		case SIW_RX_HDR:
			fpdu_begin(rx);
			k = min_sz(n, rx->hdr_need - rx->hdr_have);
			memcpy(rx->hdr + rx->hdr_have, in + off, k);
			if (rx->p.crc)
				rx->crc = siw_crc32c(rx->crc, in + off, k);
			rx->hdr_have += (unsigned)k;
			if (rx->hdr_have == HDR_MIN && rx->hdr_need == HDR_MIN)
				err = hdr_first(rx);
			if (!err && rx->hdr_have == rx->hdr_need && rx->hdr_need > HDR_MIN) {
				err = hdr_done(rx);
				if (!err) {
					rx->trailer_need = mpa_pad(rx->ulpdu_len) + MPA_CRC_LEN;
					rx->state = rx->payload_left ? SIW_RX_PAYLOAD
								     : SIW_RX_TRAILER;
				}
			}
			break;
		case SIW_RX_PAYLOAD:
			k = min_sz(n, rx->payload_left);
			err = payload_advance(rx, in + off, k);
			if (!err && rx->payload_left == 0)
				rx->state = SIW_RX_TRAILER;
			break;
		case SIW_RX_TRAILER: {
			unsigned pad = rx->trailer_need - MPA_CRC_LEN;

			k = min_sz(n, rx->trailer_need - rx->trailer_have);
			memcpy(rx->trailer + rx->trailer_have, in + off, k);
			/* Pad bytes go into the CRC as they come (a marker may follow them). */
			if (rx->p.crc && rx->trailer_have < pad)
				rx->crc = siw_crc32c(rx->crc, in + off,
						     min_sz(k, pad - rx->trailer_have));
			rx->trailer_have += (unsigned)k;
			if (rx->trailer_have == rx->trailer_need) {
				err = fpdu_done(rx);
				if (!err)
					next_fpdu(rx);
			}
			break;
		}
		default:
			return rx->err;
		}
		off += k;
		rx->stream_pos += k;
		rx->stats.bytes += k;
		if (err)
			return rx->err;
	}
	return (ssize_t)len;
}

int siw_rx_direct_iov(struct siw_rx *rx, struct siw_iov *iov, int maxiov, size_t *len)
{
	size_t left;
	int cnt = 0;

	*len = 0;
	if (rx->state != SIW_RX_PAYLOAD || maxiov <= 0)
		return 0;
	left = rx->payload_left;
	if (rx->p.markers) {
		uint64_t gap = to_marker(rx);

		if (rx->marker_have || gap == 0)
			return 0;
		left = min_sz(left, gap);
	}
	if (rx->opcode == RDMAP_WRITE || rx->opcode == RDMAP_READ_RESP) {
		iov[0].base = rx->t_dst;
		iov[0].len = left;
		*len = left;
		return 1;
	}
	for (unsigned s = rx->u_seg, off = rx->u_seg_off; left && s < rx->u_nseg && cnt < maxiov;
	     s++, off = 0) {
		size_t k = min_sz(left, rx->u_segs[s].len - off);

		iov[cnt].base = rx->u_segs[s].addr + off;
		iov[cnt].len = k;
		cnt++;
		*len += k;
		left -= k;
	}
	return cnt;
}

int siw_rx_direct_done(struct siw_rx *rx, size_t n)
{
	struct siw_iov iov[SIW_MAX_SGE];
	size_t avail;
	int cnt, err;

	if (rx->state != SIW_RX_PAYLOAD)
		return rx->err ? rx->err : SIW_ERR_STATE;
	cnt = siw_rx_direct_iov(rx, iov, SIW_MAX_SGE, &avail);
	if (n > avail)
		return rx_die(rx, SIW_ERR_INVAL);
	if (rx->p.crc) {
		size_t left = n;

		for (int i = 0; i < cnt && left; i++) {
			size_t k = min_sz(left, iov[i].len);

			rx->crc = siw_crc32c(rx->crc, iov[i].base, k);
			left -= k;
		}
	}
	/* payload_advance() with no source: the CRC is already taken above. */
	{
		bool crc = rx->p.crc;

		rx->p.crc = false;
		err = payload_advance(rx, NULL, n);
		rx->p.crc = crc;
	}
	if (err)
		return err;
	rx->stream_pos += n;
	rx->stats.bytes += n;
	rx->stats.direct += n;
	if (rx->payload_left == 0)
		rx->state = SIW_RX_TRAILER;
	return 0;
}
