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
		err = eng_mr_lookup(w->sge[i].lkey, &m);
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

/* A send WR the local side got wrong: complete it in error and fail the QP (verbs semantics). */
static int wqe_local_error(struct eng_qp *qp, struct eng_wqe *w, uint8_t status)
{
	struct eng_cqe c = {.wr_id = w->wr_id,
			    .status = status,
			    .opcode = w->opcode == ENG_WR_RDMA_READ	  ? ENG_WC_RDMA_READ
				      : w->opcode == ENG_WR_RDMA_WRITE ? ENG_WC_RDMA_WRITE
								       : ENG_WC_SEND,
			    .qp_num = qp->qpn};

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

	irq = atomic_load_explicit(&qp->irq_tail, memory_order_acquire) !=
	      atomic_load_explicit(&qp->irq_head, memory_order_relaxed);
	sq = qp->sq_head != qp->sq_tail;
	if (irq && (!sq || qp->irq_burst < IRQ_BURST)) {
		unsigned h = atomic_load_explicit(&qp->irq_head, memory_order_relaxed);
		struct siw_read_req r = qp->irq[h % ENG_MAX_ORD].req;
		struct siw_mem_ref mr;
		uint8_t *src = NULL;

		atomic_store_explicit(&qp->irq_head, h + 1, memory_order_release);
		qp->irq_burst++;
		if (r.len) {
			/* Checked on arrival; checked again now: the region may be gone since. */
			err = eng_mr_lookup(r.src_stag, &mr);
			if (!err)
				err = siw_mem_check(&mr, qp->pd->id, qp->qpn, SIW_MEM_REMOTE_READ,
						    r.src_to, r.len, &src);
			if (err)
				return siw_mem_err_to_term(err, false);
		}
		qp->tx_iov[0].base = src;
		qp->tx_iov[0].len = r.len;
		m.opcode = RDMAP_READ_RESP;
		m.stag = r.sink_stag;
		m.to = r.sink_to;
		m.iov = qp->tx_iov;
		m.niov = r.len ? 1 : 0;
		m.len = r.len;
		err = siw_tx_begin(&qp->tx, &m);
		return err ? err : TXK_IRQ;
	}
	if (!sq)
		return TXK_NONE;

	w = sq_entry(qp, qp->sq_head);
	/* A fenced WR waits until every earlier READ has its response (verbs IBV_SEND_FENCE). */
	if ((w->flags & ENG_SEND_FENCE) && orq_count(qp))
		return TXK_NONE;
	if (w->opcode == ENG_WR_RDMA_READ && orq_count(qp) >= qp->ord) {
		if (!qp->ord) {
			eng_err("QP %u: RDMA READ posted but the connection negotiated ORD 0 "
				"(set initiator_depth / responder_resources when connecting)",
				qp->qpn);
			return wqe_local_error(qp, w, ENG_WC_LOC_QP_OP_ERR);
		}
		return TXK_NONE; /* ORD reached: resumes when a READ RESPONSE frees a slot */
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
		struct eng_orq o = {.wr_id = w->wr_id, .signaled = w->signaled, .len = w->len};

		/* The sink is our SGE's region: its STag and offset go on the wire. */
		o.sink_stag = w->num_sge ? w->sge[0].lkey : 1;
		o.sink_to = w->num_sge ? w->sge[0].addr : 0;
		m.opcode = RDMAP_READ_REQ;
		m.rd_sink_stag = o.sink_stag;
		m.rd_sink_to = o.sink_to;
		m.rd_len = w->len;
		m.rd_src_stag = w->rkey;
		m.rd_src_to = w->raddr;
		m.iov = NULL;
		m.niov = 0;
		m.len = 0;
		/*
		 * Into the ORQ before the request leaves: on loopback the response can be parsed
		 * by the progress thread before sendmsg() returns here.
		 */
		orq_push(qp, &o);
		w->done = 1; /* its completion comes from the ORQ */
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

			if (w->opcode != ENG_WR_RDMA_READ && w->signaled) {
				struct eng_cqe c = {.wr_id = w->wr_id,
						    .status = ENG_WC_SUCCESS,
						    .opcode = w->opcode == ENG_WR_RDMA_WRITE
								      ? ENG_WC_RDMA_WRITE
								      : ENG_WC_SEND,
						    .byte_len = w->len,
						    .qp_num = qp->qpn};
				eng_cq_push(qp->scq, &c);
			}
			w->done = 1;
		}
	}
	while (qp->sq_done != qp->sq_head && sq_entry(qp, qp->sq_done)->done)
		qp->sq_done++;
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
				if (errno == EFAULT) {
					eng_err("QP %u: sending from unmapped memory (a registered "
						"buffer was freed?)",
						qp->qpn);
					return SIW_ERR_TERM(TERM_LAYER_RDMAP,
							    TERM_ETYPE_RDMAP_CATASTROPHIC,
							    TERM_ECODE_RDMAP_UNSPECIFIED);
				}
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
