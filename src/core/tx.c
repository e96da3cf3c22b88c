// SPDX-License-Identifier: MIT
/*
 * The transmit builder (see tx.h). Each FPDU is laid out in stream order through emit(), which
 * is the one place that knows about markers: before any byte that falls on a marker position it
 * inserts the marker, pointing back to the start of the FPDU being built. Header, pad, CRC and
 * markers are written into the batch arena; payload is referenced where it lies. Adjacent arena
 * pieces (one FPDU's trailer and the next one's header) share one iovec.
 */
#include "tx.h"

#include "crc32c.h"
#include "error.h"
#include "term.h"

struct tx_opinfo {
	uint8_t hdr_len; /* FPDU header incl. MPA length; 0: not sendable */
	uint8_t tagged;
	uint8_t qn;
	uint8_t payload; /* may carry payload */
};

static const struct tx_opinfo tx_opinfo[RDMAP_NUM_OPCODES] = {
	[RDMAP_WRITE] = {DDP_TAGGED_HDR_LEN, 1, 0, 1},
	[RDMAP_READ_REQ] = {RREQ_HDR_LEN, 0, RDMAP_QN_READ_REQ, 0},
	[RDMAP_READ_RESP] = {DDP_TAGGED_HDR_LEN, 1, 0, 1},
	[RDMAP_SEND] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1},
	[RDMAP_SEND_INV] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1},
	[RDMAP_SEND_SE] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1},
	[RDMAP_SEND_SE_INV] = {DDP_UNTAGGED_HDR_LEN, 0, RDMAP_QN_SEND, 1},
	[RDMAP_TERMINATE] = {TERM_HDR_LEN, 0, RDMAP_QN_TERM, 1},
	[RDMAP_IMM_DATA] = {IMM_HDR_LEN, 0, RDMAP_QN_SEND, 0},
	[RDMAP_IMM_DATA_SE] = {IMM_HDR_LEN, 0, RDMAP_QN_SEND, 0},
	[RDMAP_ATOMIC_REQ] = {AREQ_HDR_LEN, 0, RDMAP_QN_READ_REQ, 0},
	[RDMAP_ATOMIC_RESP] = {ARESP_HDR_LEN, 0, RDMAP_QN_ATOMIC_RESP, 0},
};

void siw_tx_init(struct siw_tx *tx, const struct siw_tx_params *p)
{
	memset(tx, 0, sizeof(*tx));
	tx->p = *p;
	if (!tx->p.max_ulpdu || tx->p.max_ulpdu > MPA_MAX_ULPDU)
		tx->p.max_ulpdu = MPA_MAX_ULPDU;
	/* Every marker costs two iovecs: keep one FPDU well inside a batch. */
	if (tx->p.markers && tx->p.max_ulpdu > SIW_TX_MAX_ULPDU_MARKERS)
		tx->p.max_ulpdu = SIW_TX_MAX_ULPDU_MARKERS;
}

int siw_tx_begin(struct siw_tx *tx, const struct siw_tx_msg *m)
{
	const struct tx_opinfo *oi;
	uint64_t sum = 0;

	if (tx->active)
		return SIW_ERR_STATE;
	if (m->opcode >= RDMAP_NUM_OPCODES || !tx_opinfo[m->opcode].hdr_len)
		return SIW_ERR_INVAL;
	oi = &tx_opinfo[m->opcode];
	if (m->niov > SIW_MAX_SGE || (m->niov && !m->iov))
		return SIW_ERR_INVAL;
	for (unsigned i = 0; i < m->niov; i++)
		sum += m->iov[i].len;
	if (sum != m->len || (!oi->payload && m->len))
		return SIW_ERR_INVAL;
	/* The header must fit an FPDU, with room for payload if there is any. */
	if (tx->p.max_ulpdu + MPA_HDR_LEN < oi->hdr_len ||
	    (m->len && tx->p.max_ulpdu + MPA_HDR_LEN == oi->hdr_len))
		return SIW_ERR_INVAL;
	/* A Terminate is one FPDU; its body (copied headers) is short. */
	if (m->opcode == RDMAP_TERMINATE && m->len > SIW_MAX_HDR_LEN - TERM_HDR_LEN)
		return SIW_ERR_INVAL;

	tx->msg = *m;
	tx->active = true;
	tx->off = 0;
	tx->iov_idx = 0;
	tx->iov_off = 0;
	if (!oi->tagged)
		tx->msg_msn = ++tx->msn[oi->qn]; /* RFC 5040 §5.1: MSNs start at 1 */
	return 0;
}

/* ---- batch assembly ---------------------------------------------------------------------- */

struct fpdu_ctx {
	struct siw_tx *tx;
	struct siw_tx_batch *b;
	uint64_t start; /* stream position of the FPDU's first byte (possibly a marker) */
	uint32_t crc;
};

static void push_iov(struct siw_tx_batch *b, const void *p, size_t len)
{
	struct siw_iov *last = b->niov ? &b->iov[b->niov - 1] : NULL;

	if (!len)
		return;
	if (last && (const uint8_t *)last->base + last->len == (const uint8_t *)p) {
		last->len += len;
	} else {
		b->iov[b->niov].base = (void *)(uintptr_t)p;
		b->iov[b->niov].len = len;
		b->niov++;
	}
	b->bytes += len;
}

static uint8_t *arena_alloc(struct siw_tx_batch *b, size_t len)
{
	uint8_t *p = b->arena + b->arena_used;

	b->arena_used += len;
	return p;
}

static void put_marker_if_due(struct fpdu_ctx *c)
{
	struct siw_tx *tx = c->tx;
	uint8_t *m;

	if (!tx->p.markers || tx->stream_pos % MPA_MARKER_PERIOD)
		return;
	/* RFC 5044 §5: reserved 16 bits, then the distance back to the FPDU's first byte. */
	m = arena_alloc(c->b, MPA_MARKER_LEN);
	put_be16(m, 0);
	put_be16(m + 2, (uint16_t)(tx->stream_pos - c->start));
	if (tx->p.crc)
		c->crc = siw_crc32c(c->crc, m, MPA_MARKER_LEN);
	push_iov(c->b, m, MPA_MARKER_LEN);
	tx->stream_pos += MPA_MARKER_LEN;
}

/* Appends len bytes at p in stream order, inserting markers where they fall. */
static void emit(struct fpdu_ctx *c, const uint8_t *p, size_t len)
{
	struct siw_tx *tx = c->tx;

	while (len) {
		size_t k = len;

		if (tx->p.markers) {
			put_marker_if_due(c);
			k = MPA_MARKER_PERIOD - tx->stream_pos % MPA_MARKER_PERIOD;
			if (k > len)
				k = len;
		}
		if (tx->p.crc)
			c->crc = siw_crc32c(c->crc, p, k);
		push_iov(c->b, p, k);
		tx->stream_pos += k;
		p += k;
		len -= k;
	}
}

static inline uint32_t min_u32(uint64_t a, uint64_t b)
{
	return (uint32_t)(a < b ? a : b);
}

static void build_header(struct siw_tx *tx, uint8_t *h, unsigned hdr_len, uint32_t ulpdu, bool last)
{
	const struct siw_tx_msg *m = &tx->msg;
	const struct tx_opinfo *oi = &tx_opinfo[m->opcode];

	memset(h, 0, hdr_len);
	put_be16(h, (uint16_t)ulpdu);
	h[DDP_OFF_CTRL] = (uint8_t)((oi->tagged ? DDP_FLAG_TAGGED : 0) | (last ? DDP_FLAG_LAST : 0) |
				    DDP_VERSION);
	h[RDMAP_OFF_CTRL] = (uint8_t)(RDMAP_VERSION << RDMAP_VERSION_SHIFT | m->opcode);
	if (oi->tagged) {
		put_be32(h + DDP_OFF_STAG, m->stag);
		put_be64(h + DDP_OFF_TO, m->to + tx->off);
		return;
	}
	if (m->opcode == RDMAP_SEND_INV || m->opcode == RDMAP_SEND_SE_INV)
		put_be32(h + DDP_OFF_RSVDULP, m->stag);
	put_be32(h + DDP_OFF_QN, oi->qn);
	put_be32(h + DDP_OFF_MSN, tx->msg_msn);
	put_be32(h + DDP_OFF_MO, tx->off);
	if (m->opcode == RDMAP_READ_REQ) {
		put_be32(h + RREQ_OFF_SINK_STAG, m->rd_sink_stag);
		put_be64(h + RREQ_OFF_SINK_TO, m->rd_sink_to);
		put_be32(h + RREQ_OFF_SIZE, m->rd_len);
		put_be32(h + RREQ_OFF_SRC_STAG, m->rd_src_stag);
		put_be64(h + RREQ_OFF_SRC_TO, m->rd_src_to);
	} else if (m->opcode == RDMAP_TERMINATE) {
		put_be32(h + TERM_OFF_CTRL, m->term_ctrl);
	} else if (m->opcode == RDMAP_IMM_DATA || m->opcode == RDMAP_IMM_DATA_SE) {
		memcpy(h + IMM_OFF_DATA, m->imm, sizeof(m->imm));
	} else if (m->opcode == RDMAP_ATOMIC_REQ) {
		put_be32(h + AREQ_OFF_AOPCODE, m->aop & AOP_MASK);
		put_be32(h + AREQ_OFF_REQ_ID, m->req_id);
		put_be32(h + AREQ_OFF_STAG, m->stag);
		put_be64(h + AREQ_OFF_TO, m->to);
		put_be64(h + AREQ_OFF_ADD_SWAP, m->add_swap);
		put_be64(h + AREQ_OFF_ADD_SWAP_MASK, m->add_swap_mask);
		put_be64(h + AREQ_OFF_CMP, m->cmp);
		put_be64(h + AREQ_OFF_CMP_MASK, m->cmp_mask);
	} else if (m->opcode == RDMAP_ATOMIC_RESP) {
		put_be32(h + ARESP_OFF_REQ_ID, m->req_id);
		put_be64(h + ARESP_OFF_ORIG, m->orig);
	}
}

/* Appends the next plen payload bytes of the message, following the gather list. */
static void emit_payload(struct fpdu_ctx *c, uint32_t plen)
{
	struct siw_tx *tx = c->tx;

	while (plen) {
		const struct siw_iov *v = &tx->msg.iov[tx->iov_idx];
		size_t k = v->len - tx->iov_off;

		if (k == 0) {
			tx->iov_idx++;
			tx->iov_off = 0;
			continue;
		}
		if (k > plen)
			k = plen;
		emit(c, (const uint8_t *)v->base + tx->iov_off, k);
		tx->iov_off += k;
		plen -= (uint32_t)k;
	}
}

/* Gather pieces the next payload span of plen bytes needs (a bound). */
static unsigned payload_pieces(const struct siw_tx *tx, uint32_t plen)
{
	unsigned n = 0, i = tx->iov_idx;
	size_t off = tx->iov_off;

	while (plen && i < tx->msg.niov) {
		size_t k = tx->msg.iov[i].len - off;

		if (k) {
			n++;
			if (k >= plen)
				break;
			plen -= (uint32_t)k;
		}
		i++;
		off = 0;
	}
	return n;
}

int siw_tx_fill(struct siw_tx *tx, struct siw_tx_batch *b)
{
	const struct tx_opinfo *oi;

	if (!tx->active)
		return SIW_ERR_STATE;
	oi = &tx_opinfo[tx->msg.opcode];

	for (;;) {
		uint32_t room = tx->p.max_ulpdu - (oi->hdr_len - MPA_HDR_LEN);
		uint32_t plen = min_u32(tx->msg.len - tx->off, room);
		uint32_t ulpdu = oi->hdr_len - MPA_HDR_LEN + plen;
		unsigned pad = mpa_pad(ulpdu);
		size_t fpdu_len = MPA_HDR_LEN + ulpdu + pad + MPA_CRC_LEN;
		/* Markers this FPDU can hold, one more for a leading one, rounded up. */
		unsigned nmark = tx->p.markers ? (unsigned)(fpdu_len / (MPA_MARKER_PERIOD - 4)) + 2 : 0;
		size_t arena = oi->hdr_len + pad + MPA_CRC_LEN + nmark * MPA_MARKER_LEN;
		unsigned iovs = 2 + payload_pieces(tx, plen) + 2 * nmark;
		bool last = tx->off + plen == tx->msg.len;
		struct fpdu_ctx c = {.tx = tx, .b = b, .start = tx->stream_pos, .crc = SIW_CRC32C_INIT};
		uint8_t *h, *t;

		if (b->nfpdus >= SIW_TX_BATCH_FPDUS || b->arena_used + arena > SIW_TX_ARENA ||
		    b->niov + iovs > SIW_TX_BATCH_IOV)
			return b->niov ? 0 : SIW_ERR_NOBUFS; /* an empty batch must take one FPDU */

		/* A marker due right here is this FPDU's first 4 bytes (pointer 0). */
		h = arena_alloc(b, oi->hdr_len);
		build_header(tx, h, oi->hdr_len, ulpdu, last);
		emit(&c, h, oi->hdr_len);
		emit_payload(&c, plen);
		t = arena_alloc(b, pad + MPA_CRC_LEN);
		memset(t, 0, pad);
		emit(&c, t, pad);
		/* A marker between pad and CRC is inside the FPDU: it goes in before the CRC. */
		put_marker_if_due(&c);
		if (tx->p.crc)
			siw_crc32c_put(t + pad, siw_crc32c_final(c.crc));
		else
			memset(t + pad, 0, MPA_CRC_LEN); /* kernel siw sends zero when CRC is off */
		push_iov(b, t + pad, MPA_CRC_LEN);
		tx->stream_pos += MPA_CRC_LEN;

		b->nfpdus++;
		tx->off += plen;
		tx->stats.fpdus++;
		tx->stats.bytes += tx->stream_pos - c.start;
		tx->stats.payload += plen;
		if (last) {
			tx->active = false;
			tx->stats.messages++;
			return 1;
		}
	}
}

unsigned siw_iov_advance(struct siw_iov **iov, unsigned cnt, size_t n)
{
	struct siw_iov *v = *iov;

	while (cnt && n >= v->len) {
		n -= v->len;
		v++;
		cnt--;
	}
	if (cnt && n) {
		v->base = (uint8_t *)v->base + n;
		v->len -= n;
	}
	*iov = v;
	return cnt;
}
