// SPDX-License-Identifier: MIT
/*
 * The send side of a QP (qp->lock held throughout). It picks the next message — a TERMINATE,
 * the RFC 6581 RTR, a READ RESPONSE owed to the peer, or the next send work request — lets the
 * core lay out as many FPDUs as one batch holds (payload referenced in registered memory, never
 * copied), and hands the batch to sendmsg(). A short write keeps the rest of the batch for when
 * the socket drains (EPOLLOUT on the progress thread). A message completes when its last byte is
 * in TCP's hands, the iWARP meaning of a send completion.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "error.h"
#include "priv.h"

/* READ RESPONSEs served in a row before one SQ message gets its turn (kernel siw uses 4). */
#define IRQ_BURST 4

/* Resolves a WQE's SGEs to local addresses the application may read. */
static int resolve_sges(struct eng_qp *qp, const struct eng_wqe *w, struct siw_iov *iov)
{
	for (unsigned i = 0; i < w->num_sge; i++) {
		struct siw_mem_ref m;
		uint8_t *p = NULL;
		int err;

		if (!w->sge[i].length) {
			iov[i].base = NULL;
			iov[i].len = 0;
			continue;
		}
		err = eng_mr_lookup_local(w->sge[i].lkey, &m);
		if (!err)
			err = siw_mem_check(&m, qp->pd->id, 0, SIW_MEM_LOCAL_READ, w->sge[i].addr,
					    w->sge[i].length, &p);
		if (err)
			return err;
		iov[i].base = p;
		iov[i].len = w->sge[i].length;
	}
	return 0;
}

static void orq_push(struct eng_qp *qp, const struct eng_orq *o)
{
	unsigned t = atomic_load_explicit(&qp->orq_tail, memory_order_relaxed);

	qp->orq[t % ENG_MAX_ORD] = *o;
	atomic_store_explicit(&qp->orq_tail, t + 1, memory_order_release);
}

static unsigned orq_count(struct eng_qp *qp)
{
	return atomic_load_explicit(&qp->orq_tail, memory_order_relaxed) -
	       atomic_load_explicit(&qp->orq_head, memory_order_acquire);
}

/* RFC 7306 work requests (PROTOCOL.md §6.5). */
static bool wr_is_atomic(uint8_t op)
{
	return op == ENG_WR_ATOMIC_CMP_AND_SWP || op == ENG_WR_ATOMIC_FETCH_AND_ADD;
}

static bool wr_is_rfc7306(uint8_t op)
{
	return wr_is_atomic(op) || op == ENG_WR_SEND_WITH_IMM || op == ENG_WR_RDMA_WRITE_WITH_IMM;
}

/* Moves sq_done past the WRs at the front of the SQ that are done (their slots free again). */
static void sq_done_advance(struct eng_qp *qp)
{
	while (qp->sq_done != qp->sq_head && sq_entry(qp, qp->sq_done)->done)
		qp->sq_done++;
}

/* A send WR the local side got wrong: complete it in error and fail the QP (verbs semantics). */
static int wqe_local_error(struct eng_qp *qp, struct eng_wqe *w, uint8_t status)
{
	struct eng_cqe c = {.wr_id = w->wr_id,
			    .status = status,
			    .opcode = w->opcode == ENG_WR_RDMA_READ	  ? ENG_WC_RDMA_READ
				      : w->opcode == ENG_WR_RDMA_WRITE ? ENG_WC_RDMA_WRITE
								       : ENG_WC_SEND,
			    .qp_num = qp->qpn};

	if (w->opcode == ENG_WR_RDMA_WRITE_WITH_IMM)
		c.opcode = ENG_WC_RDMA_WRITE;
	else if (w->opcode == ENG_WR_ATOMIC_CMP_AND_SWP)
		c.opcode = ENG_WC_COMP_SWAP;
	else if (w->opcode == ENG_WR_ATOMIC_FETCH_AND_ADD)
		c.opcode = ENG_WC_FETCH_ADD;
	eng_err("QP %u: send work request %llu: local protection error (bad lkey or address "
		"range); the QP goes to error",
		qp->qpn, (unsigned long long)w->wr_id);
	eng_cq_push(qp->scq, &c);
	w->done = 1;
	qp->sq_head++;
	return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
			    TERM_ECODE_RDMAP_UNSPECIFIED);
}

/*
 * Executes a local-only work request at the head of the SQ (IBV_WR_LOCAL_INV, IBV_WR_BIND_MW):
 * in order with the messages before it, nothing on the wire. Returns 0, or a fatal error after
 * completing it in error (verbs: the QP goes to error).
 */
static int sq_local_op(struct eng_qp *qp, struct eng_wqe *w)
{
	struct eng_cqe c = {.wr_id = w->wr_id, .status = ENG_WC_SUCCESS, .qp_num = qp->qpn};
	int err;

	if (w->opcode == ENG_WR_LOCAL_INV) {
		c.opcode = ENG_WC_LOCAL_INV;
		err = eng_stag_invalidate(w->imm_or_inv, qp->pd->id, qp->qpn, false);
		if (err)
			c.status = ENG_WC_LOC_PROT_ERR;
	} else {
		struct eng_mw_bind b = {.mw_stag = w->rkey,
					.new_stag = w->imm_or_inv,
					.bind = w->num_sge > 0,
					.access = (uint32_t)w->compare_add};

		if (b.bind) {
			b.mr_stag = w->sge[0].lkey;
			b.addr = w->sge[0].addr;
			b.len = w->sge[0].length;
		}
		c.opcode = ENG_WC_BIND_MW;
		err = eng_mw_bind(qp->pd->id, qp->qpn, &b);
		if (err)
			c.status = ENG_WC_MW_BIND_ERR;
	}
	w->done = 1;
	qp->sq_head++;
	sq_done_advance(qp);
	if (err) {
		eng_err("QP %u: %s of STag 0x%x failed (error %d); the QP goes to error", qp->qpn,
			w->opcode == ENG_WR_LOCAL_INV ? "local invalidate" : "memory window bind",
			w->opcode == ENG_WR_LOCAL_INV ? w->imm_or_inv : w->rkey, err);
		eng_cq_push(qp->scq, &c);
		return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
				    TERM_ECODE_RDMAP_UNSPECIFIED);
	}
	if (w->signaled)
		eng_cq_push(qp->scq, &c);
	return 0;
}

/*
 * The second message of a WR with immediate data (the first went out just before, and tx_iov
 * still describes the WR's payload): the SEND after its Immediate Data, or the Immediate Data
 * after its RDMA WRITE.
 */
static int tx_part2(struct eng_qp *qp)
{
	struct eng_wqe *w = sq_entry(qp, qp->sq_head);
	struct siw_tx_msg m = {0};
	bool se = w->flags & ENG_SEND_SOLICITED;
	int err;

	qp->tx_part = 0;
	qp->tx_sq_idx = qp->sq_head;
	if (w->opcode == ENG_WR_SEND_WITH_IMM) {
		m.opcode = se ? RDMAP_SEND_SE : RDMAP_SEND;
		m.iov = qp->tx_iov;
		m.niov = (w->flags & ENG_SEND_INLINE) ? (w->len ? 1 : 0) : w->num_sge;
		m.len = w->len;
	} else {
		m.opcode = se ? RDMAP_IMM_DATA_SE : RDMAP_IMM_DATA;
		memcpy(m.imm, &w->imm_or_inv, 4);
	}
	err = siw_tx_begin(&qp->tx, &m);
	if (err)
		return err;
	qp->sq_head++;
	return TXK_SQ;
}

/*
 * Starts the next message in the core's builder. Returns the kind started, TXK_NONE when there is
 * nothing to send now, or a negative error (the QP must fail).
 */
static int tx_pick(struct eng_qp *qp)
{
	struct siw_tx_msg m = {0};
	struct eng_wqe *w;
	bool irq, sq;
	int err;

	if (qp->term_pending) {
		m.opcode = RDMAP_TERMINATE;
		m.term_ctrl = qp->term_ctrl;
		qp->term_iov.base = qp->term_body;
		qp->term_iov.len = qp->term_len;
		m.iov = &qp->term_iov;
		m.niov = qp->term_len ? 1 : 0;
		m.len = qp->term_len;
		qp->term_pending = false;
		err = siw_tx_begin(&qp->tx, &m);
		return err ? err : TXK_TERM;
	}
	if (qp->tx_hold || qp->state != SIW_QP_RTS)
		return TXK_NONE;

	if (qp->rtr_tx_pending) {
		/*
		 * RFC 6581 RTR: a zero-length message of the negotiated type opens the stream.
		 * STag 1, never 0: Chelsio hardware rejects tagged messages with STag 0.
		 */
		qp->rtr_tx_pending = false;
		switch (qp->mpa.rtr) {
		case SIW_RTR_READ: {
			struct eng_orq o = {.internal = true, .sink_stag = 1};

			m.opcode = RDMAP_READ_REQ;
			m.rd_sink_stag = 1;
			m.rd_src_stag = 1;
			orq_push(qp, &o);
			break;
		}
		case SIW_RTR_SEND:
			m.opcode = RDMAP_SEND;
			break;
		default:
			m.opcode = RDMAP_WRITE;
			m.stag = 1;
			break;
		}
		err = siw_tx_begin(&qp->tx, &m);
		return err ? err : TXK_RTR;
	}

	/* The second message of a WR with immediate follows its first at once (§6.5). */
	if (qp->tx_part)
		return tx_part2(qp);
	irq = atomic_load_explicit(&qp->irq_tail, memory_order_acquire) !=
	      atomic_load_explicit(&qp->irq_head, memory_order_relaxed);
	sq = qp->sq_head != qp->sq_tail;
	if (irq && (!sq || qp->irq_burst < IRQ_BURST)) {
		unsigned h = atomic_load_explicit(&qp->irq_head, memory_order_relaxed);
		const struct eng_irq ie = qp->irq[h % ENG_MAX_ORD];
		const struct siw_read_req *r = &ie.req;
		struct siw_mem_ref mr;
		uint8_t *src = NULL;

		atomic_store_explicit(&qp->irq_head, h + 1, memory_order_release);
		qp->irq_burst++;
		if (ie.atomic) {
			/* RFC 7306: executed on arrival; the response carries the old value. */
			m.opcode = RDMAP_ATOMIC_RESP;
			m.req_id = ie.req_id;
			m.orig = ie.orig;
			err = siw_tx_begin(&qp->tx, &m);
			return err ? err : TXK_IRQ;
		}
		if (r->len) {
			/* Checked on arrival; checked again now: the region may be gone since. */
			err = eng_mr_lookup(r->src_stag, &mr);
			if (!err)
				err = siw_mem_check(&mr, qp->pd->id, qp->qpn, SIW_MEM_REMOTE_READ,
						    r->src_to, r->len, &src);
			if (err)
				return siw_mem_err_to_term(err, false);
		}
		qp->tx_iov[0].base = src;
		qp->tx_iov[0].len = r->len;
		m.opcode = RDMAP_READ_RESP;
		m.stag = r->sink_stag;
		m.to = r->sink_to;
		m.iov = qp->tx_iov;
		m.niov = r->len ? 1 : 0;
		m.len = r->len;
		err = siw_tx_begin(&qp->tx, &m);
		return err ? err : TXK_IRQ;
	}
	if (!sq)
		return TXK_NONE;

	w = sq_entry(qp, qp->sq_head);
	/* A fenced WR waits until every earlier READ has its response (verbs IBV_SEND_FENCE). */
	if ((w->flags & ENG_SEND_FENCE) && !w->rd_part && orq_count(qp))
		return TXK_NONE;
	if (w->opcode == ENG_WR_LOCAL_INV || w->opcode == ENG_WR_BIND_MW) {
		/*
		 * Not while a WR before it is still being sent (in this batch, completed by
		 * tx_complete once TCP has it): send queue completions come in posting order. The
		 * batch ends here, and the next one starts with it. (READs and atomics count as
		 * done when their request is picked: they complete when their response arrives,
		 * after local operations posted behind them, as with the kernel's siw.)
		 */
		sq_done_advance(qp);
		if (qp->sq_done != qp->sq_head && qp->ntxc)
			return TXK_NONE;
		do {
			err = sq_local_op(qp, w);
			if (err)
				return err;
			if (qp->sq_head == qp->sq_tail)
				break;
			w = sq_entry(qp, qp->sq_head);
		} while ((w->opcode == ENG_WR_LOCAL_INV || w->opcode == ENG_WR_BIND_MW) &&
			 !((w->flags & ENG_SEND_FENCE) && orq_count(qp)));
		return tx_pick(qp); /* what follows them (at most one level deep) */
	}
	if (w->opcode == ENG_WR_RDMA_READ && orq_count(qp) >= qp->ord) {
		if (!qp->ord) {
			eng_err("QP %u: RDMA READ posted but the connection negotiated ORD 0 "
				"(set initiator_depth / responder_resources when connecting)",
				qp->qpn);
			return wqe_local_error(qp, w, ENG_WC_LOC_QP_OP_ERR);
		}
		return TXK_NONE; /* ORD reached: resumes when a READ RESPONSE frees a slot */
	}
	if (wr_is_rfc7306(w->opcode)) {
		if (!qp->rfc7306) {
			/* Posted before the connection came up, to a peer without RFC 7306. */
			eng_err("QP %u: work request %llu needs RFC 7306 (immediate data or "
				"atomics), which the peer did not agree to (SIW_RFC7306)",
				qp->qpn, (unsigned long long)w->wr_id);
			return wqe_local_error(qp, w, ENG_WC_LOC_QP_OP_ERR);
		}
		/* Atomic Requests take ORD slots as READs do (RFC 7306). */
		if (wr_is_atomic(w->opcode) && orq_count(qp) >= qp->ord) {
			if (!qp->ord) {
				eng_err("QP %u: atomic posted but the connection negotiated ORD 0",
					qp->qpn);
				return wqe_local_error(qp, w, ENG_WC_LOC_QP_OP_ERR);
			}
			return TXK_NONE;
		}
	}
	qp->irq_burst = 0;
	qp->tx_sq_idx = qp->sq_head;
	if (w->flags & ENG_SEND_INLINE) {
		qp->tx_iov[0].base = w->sge;
		qp->tx_iov[0].len = w->len;
		m.iov = qp->tx_iov;
		m.niov = w->len ? 1 : 0;
	} else {
		err = resolve_sges(qp, w, qp->tx_iov);
		if (err)
			return wqe_local_error(qp, w, ENG_WC_LOC_PROT_ERR);
		m.iov = qp->tx_iov;
		m.niov = w->num_sge;
	}
	m.len = w->len;

	switch (w->opcode) {
	case ENG_WR_SEND:
		m.opcode = (w->flags & ENG_SEND_SOLICITED) ? RDMAP_SEND_SE : RDMAP_SEND;
		break;
	case ENG_WR_SEND_WITH_INV:
		m.opcode = (w->flags & ENG_SEND_SOLICITED) ? RDMAP_SEND_SE_INV : RDMAP_SEND_INV;
		m.stag = w->imm_or_inv;
		break;
	case ENG_WR_RDMA_WRITE:
		m.opcode = RDMAP_WRITE;
		m.stag = w->rkey;
		m.to = w->raddr;
		break;
	case ENG_WR_RDMA_READ: {
		struct eng_orq o = {
		    .wr_id = w->wr_id, .signaled = w->signaled, .len = w->len, .wr_len = w->len};
		uint64_t src_off = 0;

		/* The sink is our SGE's region: its STag and offset go on the wire. */
		o.sink_stag = w->num_sge ? w->sge[0].lkey : 1;
		o.sink_to = w->num_sge ? w->sge[0].addr : 0;
		if (w->num_sge > 1) {
			/*
			 * A request names one sink STag: several sink SGEs take one READ REQUEST
			 * each, for consecutive source ranges, each holding an ORD slot. Only the
			 * last one's response completes the work request (responses come in order).
			 */
			unsigned p = w->rd_part;

			for (unsigned i = 0; i < p; i++)
				src_off += w->sge[i].length;
			o.sink_stag = w->sge[p].lkey;
			o.sink_to = w->sge[p].addr;
			o.len = w->sge[p].length;
			o.internal = p + 1 < w->num_sge;
		}
		m.opcode = RDMAP_READ_REQ;
		m.rd_sink_stag = o.sink_stag;
		m.rd_sink_to = o.sink_to;
		m.rd_len = o.len;
		m.rd_src_stag = w->rkey;
		m.rd_src_to = w->raddr + src_off;
		m.iov = NULL;
		m.niov = 0;
		m.len = 0;
		/*
		 * Into the ORQ before the request leaves: on loopback the response can be parsed
		 * by the progress thread before sendmsg() returns here.
		 */
		orq_push(qp, &o);
		if (o.internal) {
			w->rd_part++;
			err = siw_tx_begin(&qp->tx, &m);
			return err ? err : TXK_RD_PART; /* the WQE stays at the head */
		}
		w->done = 1; /* its completion comes from the ORQ */
		break;
	}
	case ENG_WR_SEND_WITH_IMM:
		/* Immediate Data marked for the SEND that follows it, then the SEND (§6.5). */
		m.opcode = RDMAP_IMM_DATA;
		memcpy(m.imm, &w->imm_or_inv, 4);
		m.imm[IMM_SIW_FLAGS] = IMM_SIW_FOR_SEND;
		m.iov = NULL;
		m.niov = 0;
		m.len = 0;
		goto first_part;
	case ENG_WR_RDMA_WRITE_WITH_IMM:
		/* The RDMA WRITE, then a standalone Immediate Data (tx_part2). */
		m.opcode = RDMAP_WRITE;
		m.stag = w->rkey;
		m.to = w->raddr;
		goto first_part;
	case ENG_WR_ATOMIC_CMP_AND_SWP:
	case ENG_WR_ATOMIC_FETCH_AND_ADD: {
		bool fadd = w->opcode == ENG_WR_ATOMIC_FETCH_AND_ADD;
		struct eng_orq o = {.wr_id = w->wr_id,
				    .signaled = w->signaled,
				    .atomic = fadd ? ENG_WC_FETCH_ADD : ENG_WC_COMP_SWAP,
				    .req_id = qp->atomic_req_id++,
				    .sink_stag = w->sge[0].lkey,
				    .sink_to = w->sge[0].addr,
				    .len = 8,
				    .wr_len = 8};
		struct siw_mem_ref mr;

		/* The old value comes back into the 8-byte local SGE: it must be writable. */
		err = eng_mr_lookup_local(o.sink_stag, &mr);
		if (!err)
			err = siw_mem_check(&mr, qp->pd->id, 0, SIW_MEM_LOCAL_WRITE, o.sink_to, 8,
					    NULL);
		if (err)
			return wqe_local_error(qp, w, ENG_WC_LOC_PROT_ERR);
		m.opcode = RDMAP_ATOMIC_REQ;
		m.aop = fadd ? AOP_FETCH_ADD : AOP_CMP_SWAP;
		m.req_id = o.req_id;
		m.stag = w->rkey;
		m.to = w->raddr;
		/* Verbs atomics are unmasked: FetchAdd with mask 0, CmpSwap with all-ones masks. */
		if (fadd) {
			m.add_swap = w->compare_add;
		} else {
			m.add_swap = w->swap;
			m.add_swap_mask = ~0ull;
			m.cmp = w->compare_add;
			m.cmp_mask = ~0ull;
		}
		m.iov = NULL;
		m.niov = 0;
		m.len = 0;
		orq_push(qp, &o); /* before it leaves, as for READs */
		w->done = 1;	  /* its completion comes from the ORQ */
		break;
	}
	default:
		return wqe_local_error(qp, w, ENG_WC_LOC_QP_OP_ERR);
	}
	err = siw_tx_begin(&qp->tx, &m);
	if (err)
		return err;
	qp->sq_head++;
	return TXK_SQ;

first_part:
	err = siw_tx_begin(&qp->tx, &m);
	if (err)
		return err;
	qp->tx_part = 1; /* the WQE stays at the head for its second message */
	return TXK_SQ_PART;
}

/* Lays out the next batch. Returns its byte count (0: nothing to send) or a negative error. */
static long tx_build(struct eng_qp *qp)
{
	struct siw_tx_batch *b = qp->batch;

	siw_tx_batch_reset(b);
	qp->ntxc = qp->txc_done = 0;
	qp->batch_sent = 0;
	while (qp->ntxc < SIW_TX_BATCH_FPDUS) {
		int r;

		if (!siw_tx_busy(&qp->tx)) {
			int k = tx_pick(qp);

			if (k < 0)
				return k;
			if (k == TXK_NONE)
				break;
			qp->tx_kind = (enum eng_tx_kind)k;
		}
		r = siw_tx_fill(&qp->tx, b);
		if (r < 0)
			return r;
		if (r == 0)
			break; /* batch full; the message goes on in the next one */
		qp->txc[qp->ntxc].end = b->bytes;
		qp->txc[qp->ntxc].kind = qp->tx_kind;
		qp->txc[qp->ntxc].sq_idx = qp->tx_sq_idx;
		qp->ntxc++;
	}
	qp->out = b->iov;
	qp->out_cnt = b->niov;
	return (long)b->bytes;
}

/* Completes the messages whose last byte TCP has taken. */
static void tx_complete(struct eng_qp *qp)
{
	while (qp->txc_done < qp->ntxc && qp->txc[qp->txc_done].end <= qp->batch_sent) {
		struct eng_txc *t = &qp->txc[qp->txc_done++];

		if (t->kind == TXK_TERM) {
			qp->term_sent = true;
		} else if (t->kind == TXK_SQ) {
			struct eng_wqe *w = sq_entry(qp, t->sq_idx);

			if (w->opcode != ENG_WR_RDMA_READ && !wr_is_atomic(w->opcode) &&
			    w->signaled) {
				struct eng_cqe c = {.wr_id = w->wr_id,
						    .status = ENG_WC_SUCCESS,
						    .opcode = w->opcode == ENG_WR_RDMA_WRITE ||
								      w->opcode ==
									      ENG_WR_RDMA_WRITE_WITH_IMM
								      ? ENG_WC_RDMA_WRITE
								      : ENG_WC_SEND,
						    .byte_len = w->len,
						    .qp_num = qp->qpn};
				eng_cq_push(qp->scq, &c);
			}
			w->done = 1;
		}
	}
	sq_done_advance(qp);
}

int eng_qp_tx_run(struct eng_qp *qp, unsigned budget)
{
	if (qp->fd < 0)
		return 0;
	for (;;) {
		if (qp->out_cnt) {
			struct msghdr mh = {.msg_iov = (struct iovec *)qp->out,
					    .msg_iovlen = qp->out_cnt};
			ssize_t n = sendmsg(qp->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					eng_qp_want_write(qp, true);
					return 0;
				}
				if (errno == EFAULT)
					return eng_qp_unmapped(qp, "sending from");
				return SIW_ERR_CLOSED;
			}
			if (ENG_CAP_ON()) /* observability hook: SIW_CAPTURE (obs.h) */
				eng_cap_tx(qp, (const struct iovec *)qp->out, qp->out_cnt,
					   (size_t)n);
			qp->batch_sent += (size_t)n;
			qp->out_cnt = siw_iov_advance(&qp->out, qp->out_cnt, (size_t)n);
			tx_complete(qp);
			if (qp->out_cnt)
				continue; /* the next call most likely says EAGAIN */
			if (--budget == 0) {
				/* Enough for this caller: the progress thread takes over. */
				eng_qp_want_write(qp, true);
				return 0;
			}
		}
		{
			long r = tx_build(qp);

			if (r < 0)
				return (int)r;
			if (r == 0) {
				eng_qp_want_write(qp, false);
				return 0;
			}
		}
	}
}
