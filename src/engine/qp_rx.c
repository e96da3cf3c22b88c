// SPDX-License-Identifier: MIT
/*
 * The receive side of a QP (progress thread, qp->rx_lock held). Two ways to read, chosen per
 * read: when the parser is inside a large payload, readv() goes straight into the destination
 * (the registered region or the posted receive buffer) with the staging buffer as the last iovec
 * to catch what follows; otherwise one recv() fills the staging buffer with as many small FPDUs
 * as the socket holds and the parser places them with one copy each. Either way payload is
 * copied once after the kernel, and never twice.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "error.h"
#include "priv.h"
#include "term.h"

/* Payload left in an FPDU from which reading straight into place beats a copy. */
#define DIRECT_MIN 8192
/* Staging read while the stream carries large FPDUs (see rx_read). */
#define SMALL_STAGE 4096
/* Reads per readiness event before other QPs get their turn. */
#define RX_BUDGET 32
/* Reads an application thread does per empty poll of a CQ. */
#define POLL_BUDGET 4
/* rx_run: the peer closed the connection in an orderly way. */
#define ENG_CLOSED_GRACEFULLY 1
/* An RDMAP message that may not come now (RFC 5040 "unexpected opcode"). */
#define E_RDMAP_UNEXPECTED                                                                         \
	SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP)

/* ---- callbacks from the core ------------------------------------------------------------------ */

static int rx_mem_lookup(void *user, uint32_t stag, struct siw_mem_ref *ref)
{
	(void)user;
	return eng_mr_lookup(stag, ref);
}

static int rx_rq_begin(void *user, const struct siw_sge **sge, unsigned *n)
{
	struct eng_qp *qp = user;
	struct eng_rq *rq = qp->srq ? &qp->srq->rq : &qp->rq;
	struct eng_rqe *e;
	uint32_t h, avail = 0;

	if (qp->srq)
		pthread_mutex_lock(&qp->srq->lock);
	h = atomic_load_explicit(&rq->head, memory_order_relaxed);
	if (h == atomic_load_explicit(&rq->tail, memory_order_acquire)) {
		if (qp->srq)
			pthread_mutex_unlock(&qp->srq->lock);
		eng_err("QP %u: a SEND arrived with no receive posted (iWARP has no RNR retry: "
			"the connection is terminated; post receives before the peer sends)",
			qp->qpn);
		return SIW_ERR_QFULL;
	}
	e = rq_entry(rq, h);
	qp->rx_wr_id = e->wr_id;
	*n = e->num_sge;
	memcpy(qp->rx_sge, e->sge, e->num_sge * sizeof(struct siw_sge));
	atomic_store_explicit(&rq->head, h + 1, memory_order_release);
	if (qp->srq) {
		avail = atomic_load(&rq->tail) - (h + 1);
		if (qp->srq->limit && avail < qp->srq->limit) {
			/* One-shot, as verbs: the application re-arms with ibv_modify_srq. */
			qp->srq->limit = 0;
			eng_ctx_async_event(qp->ctx, ENG_EVENT_SRQ_LIMIT_REACHED, qp->srq->user);
		}
		pthread_mutex_unlock(&qp->srq->lock);
	}
	qp->rq_active = rq;
	*sge = qp->rx_sge;
	return 0;
}

static int rx_orq_head(void *user, struct siw_orq_view *v)
{
	struct eng_qp *qp = user;
	unsigned h = atomic_load_explicit(&qp->orq_head, memory_order_relaxed);
	const struct eng_orq *o;

	if (h == atomic_load_explicit(&qp->orq_tail, memory_order_acquire))
		return SIW_ERR_STATE;
	o = &qp->orq[h % ENG_MAX_ORD];
	memset(v, 0, sizeof(*v));
	v->sink_stag = o->sink_stag;
	v->sink_to = o->sink_to;
	v->len = o->len;
	v->atomic = o->atomic != 0;
	v->req_id = o->req_id;
	return 0;
}

/*
 * process_vm_writev/readv failed with err: if the system forbids them (a seccomp profile, in
 * containers), says so and places with memcpy from now on (SIW_PLACE=copy).
 */
static bool place_safe_unavailable(int err)
{
	if (err != EPERM && err != ENOSYS)
		return false;
	eng_warn("process_vm_readv/writev: %s; placing with memcpy from now on (SIW_PLACE=copy)",
		 strerror(err));
	eng_place_mode = ENG_PLACE_COPY;
	return true;
}

/*
 * Moves the first n staged copies into place. With SIW_PLACE=safe (the default) this is one
 * process_vm_writev() for up to ENG_PLACE_BATCH pieces: memory the application unmapped while
 * it was registered gives EFAULT, a local catastrophic error, instead of a crash of the process.
 * Returns 0 or that error.
 */
static int place_pieces(struct eng_qp *qp, unsigned n, size_t bytes)
{
	struct eng_reader *rd = qp->rd;
	ssize_t r;

	if (!n)
		return 0;
	if (eng_place_mode == ENG_PLACE_SAFE) {
		r = process_vm_writev(qp->ctx->pid, rd->pl_src, n, rd->pl_dst, n, 0);
		if (r < 0 && place_safe_unavailable(errno)) {
			/* copy below */
		} else if (r != (ssize_t)bytes) {
			return eng_qp_unmapped(qp, "placing into");
		}
	}
	if (eng_place_mode == ENG_PLACE_COPY)
		for (unsigned i = 0; i < n; i++)
			memcpy(rd->pl_dst[i].iov_base, rd->pl_src[i].iov_base,
			       rd->pl_src[i].iov_len);
	return 0;
}

/* Reports the completions that waited for their data; with failed set, as local errors. */
static void push_pending(struct eng_reader *rd, bool failed)
{
	for (unsigned i = 0; i < rd->npend; i++) {
		if (failed)
			rd->pend[i].cqe.status = ENG_WC_LOC_PROT_ERR;
		eng_cq_push(rd->pend[i].cq, &rd->pend[i].cqe);
	}
	rd->npend = 0;
}

static void place_reset(struct eng_reader *rd)
{
	rd->pl_n = 0;
	rd->pl_bytes = 0;
	rd->pl_commit = 0;
	rd->pl_sealed = false;
}

/* Everything staged goes into place, then the completions that waited for it. */
static int place_flush(struct eng_qp *qp)
{
	struct eng_reader *rd = qp->rd;
	int err = place_pieces(qp, rd->pl_n, rd->pl_bytes);

	place_reset(rd);
	push_pending(rd, err != 0);
	return err;
}

/*
 * The stream failed: what completed messages staged is placed and reported; the pieces of the
 * failing FPDU are dropped (they may be the ones that failed the CRC).
 */
static void place_abort(struct eng_qp *qp)
{
	struct eng_reader *rd = qp->rd;
	size_t bytes = 0;
	int err;

	for (unsigned i = 0; i < rd->pl_commit; i++)
		bytes += rd->pl_src[i].iov_len;
	err = place_pieces(qp, rd->pl_commit, bytes);
	place_reset(rd);
	push_pending(rd, err != 0);
}

static int rx_place(void *user, void *dst, const void *src, size_t len)
{
	struct eng_qp *qp = user;
	struct eng_reader *rd = qp->rd;
	unsigned n = rd->pl_n;

	/* Pieces that continue the previous one on both sides are merged. */
	if (n && !rd->pl_sealed &&
	    (uint8_t *)rd->pl_src[n - 1].iov_base + rd->pl_src[n - 1].iov_len == src &&
	    (uint8_t *)rd->pl_dst[n - 1].iov_base + rd->pl_dst[n - 1].iov_len == dst) {
		rd->pl_src[n - 1].iov_len += len;
		rd->pl_dst[n - 1].iov_len += len;
		rd->pl_bytes += len;
		return 0;
	}
	if (n == ENG_PLACE_BATCH) {
		int err = place_flush(qp);

		if (err)
			return err;
		n = 0;
	}
	rd->pl_src[n].iov_base = (void *)(uintptr_t)src;
	rd->pl_src[n].iov_len = len;
	rd->pl_dst[n].iov_base = dst;
	rd->pl_dst[n].iov_len = len;
	rd->pl_n = n + 1;
	rd->pl_bytes += len;
	rd->pl_sealed = false;
	return 0;
}

/*
 * A message is complete: its completion waits until its data is in place, which happens once
 * per read from the socket (not once per message: small SENDs would each cost a system call).
 */
static int complete_after_placement(struct eng_qp *qp, struct eng_cq *cq,
				    const struct eng_cqe *c)
{
	struct eng_reader *rd = qp->rd;

	if (rd->npend == ENG_PEND_CQE) {
		int err = place_flush(qp);

		if (err)
			return err;
	}
	rd->pend[rd->npend].cq = cq;
	rd->pend[rd->npend].cqe = *c;
	rd->npend++;
	rd->pl_commit = rd->pl_n;
	rd->pl_sealed = true;
	return 0;
}

static int rx_recv_done(void *user, const struct siw_rx_recv *r)
{
	struct eng_qp *qp = user;
	struct eng_cqe c = {.wr_id = qp->rx_wr_id,
			    .status = ENG_WC_SUCCESS,
			    .opcode = ENG_WC_RECV,
			    .byte_len = r->len,
			    .qp_num = qp->qpn,
			    .solicited = r->solicited};

	if (r->invalidate) {
		c.flags = ENG_WC_WITH_INV;
		c.imm_or_inv = r->inv_stag;
	}
	if (qp->rx_imm_pending) {
		/* SEND_WITH_IMM: the Immediate Data that came first (PROTOCOL.md §6.5). */
		if (r->invalidate)
			return E_RDMAP_UNEXPECTED;
		c.flags = ENG_WC_WITH_IMM;
		c.imm_or_inv = qp->rx_imm;
		qp->rx_imm_pending = false;
	}
	qp->rq_active = NULL;
	return complete_after_placement(qp, qp->rcq, &c);
}

static int rx_read_req(void *user, const struct siw_read_req *r)
{
	struct eng_qp *qp = user;
	unsigned t = atomic_load_explicit(&qp->irq_tail, memory_order_relaxed);
	unsigned depth = qp->ird ? qp->ird : 1;
	int err;

	/* The RFC 6581 READ RTR needs no IRD credit of its own but still gets a response. */
	if (t - atomic_load_explicit(&qp->irq_head, memory_order_acquire) >= depth &&
	    !(r->rtr && t - atomic_load(&qp->irq_head) < ENG_MAX_ORD)) {
		eng_err("QP %u: the peer has more RDMA READs outstanding than the negotiated IRD "
			"(%u)",
			qp->qpn, qp->ird);
		/* A READ beyond IRD finds no "buffer" on queue 1 (RFC 5040 §5.3). */
		return SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
				    TERM_ECODE_DDP_U_INV_MSN_NOBUF);
	}
	/*
	 * What came before it on the stream is in memory before the response can read it: once
	 * the entry is published another thread (the progress thread, or one posting or busy
	 * polling) may send the response at once, while staged WRITE data would otherwise wait
	 * for the end of this read (RDMAP ordering; hostile.scenarios read back stale bytes).
	 */
	err = place_flush(qp);
	if (err)
		return err;
	qp->irq[t % ENG_MAX_ORD].req = *r;
	qp->irq[t % ENG_MAX_ORD].atomic = false;
	atomic_store_explicit(&qp->irq_tail, t + 1, memory_order_release);
	qp->tx_kick = true;
	return 0;
}

static int rx_read_resp_done(void *user)
{
	struct eng_qp *qp = user;
	unsigned h = atomic_load_explicit(&qp->orq_head, memory_order_relaxed);
	struct eng_orq *o = &qp->orq[h % ENG_MAX_ORD];

	if (!o->internal && o->signaled) {
		struct eng_cqe c = {.wr_id = o->wr_id,
				    .status = ENG_WC_SUCCESS,
				    .opcode = ENG_WC_RDMA_READ,
				    .byte_len = o->wr_len,
				    .qp_num = qp->qpn};
		int err;

		/*
		 * Send completions come in posting order. On loopback the response can be here
		 * before the thread that sent the request (holding qp->lock from sendmsg() to
		 * tx_complete()) reported the messages sent before it in the same batch: wait for
		 * it to let go (rx_lock before lock is the lock order).
		 */
		pthread_mutex_lock(&qp->lock);
		pthread_mutex_unlock(&qp->lock);
		err = complete_after_placement(qp, qp->scq, &c);

		if (err)
			return err;
	}
	atomic_store_explicit(&qp->orq_head, h + 1, memory_order_release);
	qp->tx_kick = true; /* a fenced or ORD-limited WR may go now */
	return 0;
}

/* ---- RFC 7306 (PROTOCOL.md §6.5) ------------------------------------------------------------ */

static int rx_write_done(void *user, uint32_t stag, uint64_t to, uint32_t len)
{
	struct eng_qp *qp = user;

	(void)stag;
	(void)to;
	/* Remembered for an Immediate Data that follows at once (RDMA WRITE with immediate). */
	qp->rx_write_msg = qp->rx.stats.messages;
	qp->rx_write_len = len;
	return 0;
}

static int rx_imm_data(void *user, const uint8_t imm[8], bool solicited)
{
	struct eng_qp *qp = user;
	const struct siw_sge *sge;
	unsigned n;
	uint32_t v;
	int err;

	memcpy(&v, imm, sizeof(v)); /* verbs imm_data: network order, as on the wire */
	if (imm[IMM_SIW_FLAGS] & IMM_SIW_FOR_SEND) {
		/* SEND_WITH_IMM: the value goes into the completion of the SEND that follows. */
		if (qp->rx_imm_pending)
			return E_RDMAP_UNEXPECTED;
		qp->rx_imm_pending = true;
		qp->rx_imm = v;
		return 0;
	}
	if (qp->rx_imm_pending)
		return E_RDMAP_UNEXPECTED; /* the SEND it announced did not come */
	/* RDMA WRITE with immediate: the Immediate Data takes a receive of its own. */
	err = rx_rq_begin(qp, &sge, &n);
	if (err)
		return err == SIW_ERR_QFULL ? SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
							   TERM_ECODE_DDP_U_INV_MSN_NOBUF)
					    : err;
	{
		struct eng_cqe c = {.wr_id = qp->rx_wr_id,
				    .status = ENG_WC_SUCCESS,
				    .opcode = ENG_WC_RECV_RDMA_WITH_IMM,
				    .flags = ENG_WC_WITH_IMM,
				    .imm_or_inv = v,
				    .qp_num = qp->qpn,
				    .solicited = solicited};

		/* byte_len: what the RDMA WRITE right before it wrote (verbs semantics). */
		if (qp->rx.stats.messages - 1 == qp->rx_write_msg)
			c.byte_len = qp->rx_write_len;
		qp->rq_active = NULL;
		return complete_after_placement(qp, qp->rcq, &c);
	}
}

/* The masked FetchAdd of RFC 7306: a 1 in mask ends a field (no carry out of that bit). */
static uint64_t masked_add(uint64_t a, uint64_t b, uint64_t mask)
{
	uint64_t sum = 0, carry = 0;

	if (!mask)
		return a + b;
	for (unsigned i = 0; i < 64; i++) {
		uint64_t x = a >> i & 1, y = b >> i & 1;

		sum |= (x ^ y ^ carry) << i;
		carry = (x & y) | (x & carry) | (y & carry);
		if (mask >> i & 1)
			carry = 0;
	}
	return sum;
}

/* The value an Atomic Request leaves in a word that held old (old: nothing is written). */
static uint64_t atomic_result(const struct siw_atomic_req *a, uint64_t old)
{
	if (a->aop == AOP_FETCH_ADD)
		return masked_add(old, a->add_swap, a->add_swap_mask);
	if ((old & a->cmp_mask) == (a->cmp & a->cmp_mask))
		return (old & ~a->add_swap_mask) | (a->add_swap & a->add_swap_mask);
	return old;
}

/* SIW_PLACE=safe: 0, -1 (the word is not mapped) or 1 (the system forbids it: copy mode now). */
static int atomic_vm(const struct eng_qp *qp, const struct siw_atomic_req *a, uint64_t *orig)
{
	uint64_t old, new;
	struct iovec local = {.iov_base = &old, .iov_len = 8};
	struct iovec remote = {.iov_base = a->target, .iov_len = 8};
	ssize_t r = process_vm_readv(qp->ctx->pid, &local, 1, &remote, 1, 0);

	if (r == 8) {
		new = atomic_result(a, old);
		local.iov_base = &new;
		if (new != old)
			r = process_vm_writev(qp->ctx->pid, &local, 1, &remote, 1, 0);
	}
	if (r == 8) {
		*orig = old;
		return 0;
	}
	return r < 0 && place_safe_unavailable(errno) ? 1 : -1;
}

/*
 * Executes an Atomic Request on its (checked, 8-aligned) target and returns the value before it
 * in *orig; returns -1 if the word is not mapped. Atomic against every other remote atomic of
 * this process, whichever QP or thread (IBV_ATOMIC_HCA): all of them hold eng_atomic_lock. The
 * word is in host byte order.
 *
 * With SIW_PLACE=safe (the default) the word is read and written with process_vm_readv/writev,
 * so that an atomic on a registered buffer the application freed is an error like any other
 * placement into it, not a crash (2 system calls per atomic). With SIW_PLACE=copy, or where
 * the system forbids those calls, __atomic operations on the word itself.
 */
static int atomic_execute(const struct eng_qp *qp, const struct siw_atomic_req *a, uint64_t *orig)
{
	uint64_t *p = (uint64_t *)(void *)a->target;
	uint64_t old, new;
	int ret = 1;

	pthread_mutex_lock(&eng_atomic_lock);
	if (eng_place_mode == ENG_PLACE_SAFE)
		ret = atomic_vm(qp, a, orig);
	if (ret == 1) {
		/* Copy mode (nothing was written above). __atomic: atomic for the CPU too. */
		old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
		do {
			new = atomic_result(a, old);
			if (new == old)
				break;
		} while (!__atomic_compare_exchange_n(p, &old, new, false, __ATOMIC_SEQ_CST,
						      __ATOMIC_SEQ_CST));
		*orig = old;
		ret = 0;
	}
	pthread_mutex_unlock(&eng_atomic_lock);
	return ret;
}

static int rx_atomic_req(void *user, const struct siw_atomic_req *a)
{
	struct eng_qp *qp = user;
	unsigned t = atomic_load_explicit(&qp->irq_tail, memory_order_relaxed);
	unsigned depth = qp->ird ? qp->ird : 1;
	struct eng_irq *e;
	int err;

	/* RFC 7306: Atomic Requests use the READ request queue and count against IRD with them. */
	if (t - atomic_load_explicit(&qp->irq_head, memory_order_acquire) >= depth) {
		eng_err("QP %u: the peer has more RDMA READs and atomics outstanding than the "
			"negotiated IRD (%u)",
			qp->qpn, qp->ird);
		return SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
				    TERM_ECODE_DDP_U_INV_MSN_NOBUF);
	}
	/* The registered address is 8-aligned in tagged-offset space; the word must be too. */
	if ((uintptr_t)a->target & 7)
		return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
				    TERM_ECODE_RDMAP_BASE_BOUNDS);
	/* Everything that came before it on the stream is in memory first (RDMAP ordering). */
	err = place_flush(qp);
	if (err)
		return err;
	e = &qp->irq[t % ENG_MAX_ORD];
	memset(&e->req, 0, sizeof(e->req));
	e->req.msn = a->msn;
	e->atomic = true;
	e->req_id = a->req_id;
	if (atomic_execute(qp, a, &e->orig))
		return eng_qp_unmapped(qp, "an atomic on");
	atomic_store_explicit(&qp->irq_tail, t + 1, memory_order_release);
	qp->tx_kick = true;
	return 0;
}

static int rx_atomic_resp(void *user, const struct siw_atomic_resp *a)
{
	struct eng_qp *qp = user;
	struct eng_reader *rd = qp->rd;
	unsigned h = atomic_load_explicit(&qp->orq_head, memory_order_relaxed);
	struct eng_orq *o = &qp->orq[h % ENG_MAX_ORD];
	struct siw_mem_ref m;
	uint8_t *dst = NULL;
	int err;

	/* The result buffer was checked when the request left; checked again now. */
	err = eng_mr_lookup(o->sink_stag, &m);
	if (!err)
		err = siw_mem_check(&m, qp->pd->id, 0, SIW_MEM_LOCAL_WRITE, o->sink_to, 8, &dst);
	if (err) {
		eng_err("QP %u: the result buffer of atomic %llu is no longer registered",
			qp->qpn, (unsigned long long)o->wr_id);
		return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
				    TERM_ECODE_RDMAP_UNSPECIFIED);
	}
	/* Placed with the stream's other data (the slot is stable until the next read). */
	qp->atomic_res[h % ENG_MAX_ORD] = a->orig;
	err = rx_place(qp, dst, &qp->atomic_res[h % ENG_MAX_ORD], 8);
	if (err)
		return err;
	if (o->signaled) {
		struct eng_cqe c = {.wr_id = o->wr_id,
				    .status = ENG_WC_SUCCESS,
				    .opcode = o->atomic,
				    .byte_len = 8,
				    .qp_num = qp->qpn};

		/* After the sends posted before it (see rx_read_resp_done). */
		pthread_mutex_lock(&qp->lock);
		pthread_mutex_unlock(&qp->lock);
		err = complete_after_placement(qp, qp->scq, &c);
		if (err)
			return err;
	} else {
		rd->pl_commit = rd->pl_n;
		rd->pl_sealed = true;
	}
	atomic_store_explicit(&qp->orq_head, h + 1, memory_order_release);
	qp->tx_kick = true;
	return 0;
}

static int rx_invalidate(void *user, uint32_t stag)
{
	struct eng_qp *qp = user;

	return eng_stag_invalidate(stag, qp->pd->id, qp->qpn, true);
}

static int rx_terminate(void *user, const struct siw_term_info *t)
{
	struct eng_qp *qp = user;
	char what[400];

	qp->stats.terms_recv++;
	eng_obs_term(qp, false, t); /* observability hook: last TERMINATE (obs.h) */
	eng_err("QP %u: the peer terminated the connection: %s (it found an error in what we "
		"sent, or its application failed; the peer's log says which)",
		qp->qpn, eng_obs_term_text(t, what, sizeof(what)));
	return 0;
}

static int rx_rtr_done(void *user)
{
	struct eng_qp *qp = user;

	/* Responder of a P2P connection: the stream is open now (RFC 6581 §6). */
	if (qp->cm_ops && qp->cm_ops->established)
		qp->cm_ops->established(qp->cm_user, qp);
	qp->tx_kick = true;
	return 0;
}

const struct siw_rx_ops eng_rx_ops = {
	.mem_lookup = rx_mem_lookup,
	.rq_begin = rx_rq_begin,
	.orq_head = rx_orq_head,
	.place = rx_place,
	.recv_done = rx_recv_done,
	.read_req = rx_read_req,
	.read_resp_done = rx_read_resp_done,
	.invalidate = rx_invalidate,
	.terminate = rx_terminate,
	.rtr_done = rx_rtr_done,
	.write_done = rx_write_done,
	.imm_data = rx_imm_data,
	.atomic_req = rx_atomic_req,
	.atomic_resp = rx_atomic_resp,
};

/* ---- reading ---------------------------------------------------------------------------------- */

/*
 * The parser waits inside a large payload: have epoll report the
 * socket readable only once the rest of this FPDU is there (SO_RCVLOWAT), so the next readv()
 * takes it whole instead of one wake-up and one system call per TCP segment that arrives
 * (measured ~33 KB per readv for 64 KiB FPDUs before). The rest of an FPDU always comes (or
 * FIN/RST, which wake epoll regardless), so this never waits for bytes that are not sent.
 * Markers make the stream's byte count differ from the payload's: left at 1 then.
 */
static void rx_lowat_update(struct eng_qp *qp)
{
	const struct siw_rx *rx = &qp->rx;
	int want = 1;

	if (rx->state == SIW_RX_PAYLOAD && rx->payload_left >= DIRECT_MIN && !rx->p.markers)
		want = (int)(rx->payload_left + rx->trailer_need);
	if (want == qp->rx_lowat || (want == 1 && !qp->rx_lowat))
		return;
	if (setsockopt(qp->fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)) == 0)
		qp->rx_lowat = want;
}

/* Reads and parses what the socket holds. Returns 0, 1 (peer closed) or a stream error. */
static int rx_read(struct eng_qp *qp, unsigned budget)
{
	uint8_t *stage = qp->rd->staging;

	for (unsigned it = 0; it < budget; it++) {
		struct iovec iov[SIW_MAX_SGE + 1];
		size_t dlen = 0, want;
		int cnt = siw_rx_direct_iov(&qp->rx, (struct siw_iov *)iov, SIW_MAX_SGE, &dlen);
		/*
		 * With large FPDUs, read little into staging: the parser then stops inside the
		 * next payload and the following readv() puts it straight into place. A big
		 * staging read would end on an FPDU boundary and copy every payload once more.
		 * With markers nothing is read straight into place (a marker every 512 bytes cuts
		 * each payload short of DIRECT_MIN), so read big: siw-bench 64 KiB - 1 MiB with
		 * SIW_MPA_MARKERS=1 went from 0.62-0.73 to 1.66-2.61 GB/s.
		 */
		size_t stage_len = qp->rx.ulpdu_len >= 2 * DIRECT_MIN && !qp->rx.p.markers
					   ? SMALL_STAGE
					   : qp->rd->staging_size;
		ssize_t n;

		if (cnt > 0 && dlen >= DIRECT_MIN) {
			/*
			 * Payload straight into place; the end of this FPDU and the next FPDU's
			 * header (if it is like this one) land in staging, but no payload of the
			 * next one: that stays in the socket for the next readv() into place.
			 */
			if (!qp->rx.p.markers)
				stage_len = qp->rx.trailer_need + qp->rx.hdr_need;
			iov[cnt].iov_base = stage;
			iov[cnt].iov_len = stage_len;
			want = dlen + stage_len;
			n = readv(qp->fd, iov, cnt + 1);
		} else {
			dlen = 0;
			want = stage_len;
			n = recv(qp->fd, stage, stage_len, MSG_DONTWAIT);
		}
		if (ENG_CAP_ON()) /* observability hook: SIW_CAPTURE, before parsing (obs.h) */
			eng_cap_rx(qp, dlen ? iov : NULL, cnt + 1, stage, n);
		if (n == 0)
			return 1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EFAULT)
				return siw_rx_fail(&qp->rx, eng_qp_unmapped(qp, "placing into"));
			eng_info("QP %u: connection lost: %s", qp->qpn, strerror(errno));
			return SIW_ERR_CLOSED;
		}
		if (dlen) {
			size_t d = (size_t)n < dlen ? (size_t)n : dlen;
			int err = siw_rx_direct_done(&qp->rx, d);

			if (err)
				return err;
			if ((size_t)n > d && siw_rx_feed(&qp->rx, stage, (size_t)n - d) < 0)
				return qp->rx.err;
		} else if (siw_rx_feed(&qp->rx, stage, (size_t)n) < 0) {
			return qp->rx.err;
		}
		/* Staging is reused by the next read: everything in it goes into place now. */
		if (place_flush(qp))
			return siw_rx_fail(&qp->rx, SIW_ERR_TERM(TERM_LAYER_RDMAP,
								 TERM_ETYPE_RDMAP_CATASTROPHIC,
								 TERM_ECODE_RDMAP_UNSPECIFIED));
		if ((size_t)n < want)
			return 0; /* drained: epoll tells us when more comes */
	}
	return 0;
}

/*
 * Reads what the socket holds with the buffers of reader rd (rx_lock held). Returns 0, or the
 * error to fail the QP with (0 also for nothing to read); *kick says the send side has work.
 */
static int rx_run(struct eng_qp *qp, struct eng_reader *rd, unsigned budget, bool *kick)
{
	bool midway;
	int r;

	if (qp->fd < 0 || qp->state == SIW_QP_ERROR)
		return 0;
	qp->tx_kick = false;
	qp->rd = rd;
	r = rx_read(qp, budget);
	/*
	 * Whoever read last (progress thread or busy poller, drained or out of budget) leaves
	 * SO_RCVLOWAT right for where the parser stands now: a stale value from an earlier FPDU
	 * could exceed what will ever arrive and leave the socket unreported.
	 */
	if (r == 0)
		rx_lowat_update(qp);
	/*
	 * Nothing staged may outlive this call: the staging buffer and the batch belong to the
	 * reader, and its next QP reuses them. On an error the staged pieces are dropped, not
	 * placed: they may belong to the FPDU that failed its CRC. Every message that completed
	 * before the error was placed before its completion was reported.
	 */
	if (r < 0) {
		place_abort(qp);
	} else if (place_flush(qp)) {
		r = siw_rx_fail(&qp->rx, SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
						      TERM_ECODE_RDMAP_UNSPECIFIED));
	}
	*kick = qp->tx_kick && r == 0;
	if (r == 1) {
		/* The peer closed: a graceful disconnect unless a message was cut short. */
		midway = qp->rx.state != SIW_RX_HDR || qp->rx.hdr_have;
		return midway ? SIW_ERR_CLOSED : ENG_CLOSED_GRACEFULLY;
	}
	return r;
}

void eng_qp_rx_ready(struct eng_qp *qp)
{
	bool kick = false;
	int r;

	pthread_mutex_lock(&qp->rx_lock);
	r = rx_run(qp, &qp->ctx->rd, RX_BUDGET, &kick);
	pthread_mutex_unlock(&qp->rx_lock);
	if (kick)
		eng_qp_kick_tx(qp);
	if (r)
		eng_qp_fail(qp, r == ENG_CLOSED_GRACEFULLY ? 0 : r);
}

/*
 * An application thread polls an empty CQ of this QP: instead of waiting for the progress
 * thread to wake up, read the socket and finish pending sends right here (busy polling). Never
 * blocks: a QP another thread is working on is skipped.
 */
void eng_qp_poll_progress(struct eng_qp *qp, struct eng_reader *rd)
{
	bool kick = false;
	int r = 0;

	if (!atomic_load_explicit(&qp->live, memory_order_acquire))
		return;
	if (!pthread_mutex_trylock(&qp->rx_lock)) {
		r = rx_run(qp, rd, POLL_BUDGET, &kick);
		pthread_mutex_unlock(&qp->rx_lock);
	}
	/*
	 * Send work this read made (a READ to answer, ORD credit back) must not be dropped: the
	 * progress thread may have parked the QP and would not look. The lock is held only
	 * briefly by others, so wait for it then; a socket that merely became writable again
	 * is worth a try only.
	 */
	if (!r && (kick ? !pthread_mutex_lock(&qp->lock)
			: __atomic_load_n(&qp->epollout, __ATOMIC_RELAXED) &&
				  !pthread_mutex_trylock(&qp->lock))) {
		if (qp->state != SIW_QP_ERROR)
			r = eng_qp_tx_run(qp, 1);
		pthread_mutex_unlock(&qp->lock);
	}
	if (r)
		eng_qp_request_fail(qp, r == ENG_CLOSED_GRACEFULLY ? 0 : r);
}
