// SPDX-License-Identifier: MIT
/*
 * Queue pairs: creation, the state machine as verbs and the CM drive it, posting, connection
 * hand-over, and teardown with flush. The send side lives in qp_tx.c, the receive side in
 * qp_rx.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "priv.h"
#include "term.h"

static atomic_uint qp_numbers = 1;

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* ---- creation ------------------------------------------------------------------------------ */

struct eng_qp *eng_qp_create(struct eng_pd *pd, struct eng_qp_init *init)
{
	struct eng_qp_cap *cap;
	struct eng_qp *qp;
	uint32_t sge_bytes;

	if (!pd || !init || !init->send_cq || !init->recv_cq) {
		errno = EINVAL;
		return NULL;
	}
	cap = &init->cap;
	if (init->send_cq->ctx != pd->ctx || init->recv_cq->ctx != pd->ctx ||
	    (init->srq && init->srq->ctx != pd->ctx) || cap->max_send_wr > ENG_MAX_QP_WR ||
	    cap->max_recv_wr > ENG_MAX_QP_WR || cap->max_send_sge > ENG_MAX_SGE ||
	    cap->max_recv_sge > ENG_MAX_SGE || cap->max_inline_data > ENG_MAX_INLINE) {
		errno = EINVAL;
		return NULL;
	}
	qp = calloc(1, sizeof(*qp));
	if (!qp) {
		errno = ENOMEM;
		return NULL;
	}
	qp->batch = malloc(sizeof(*qp->batch));
	/* A zero-size SQ still needs room for what the engine sends by itself (RTR, TERMINATE). */
	qp->sq_size = pow2_at_least(cap->max_send_wr ? cap->max_send_wr : 1);
	if (!cap->max_send_sge)
		cap->max_send_sge = 1;
	sge_bytes = cap->max_send_sge * (uint32_t)sizeof(struct siw_sge);
	if (sge_bytes < cap->max_inline_data)
		sge_bytes = cap->max_inline_data;
	qp->sq_slot = ((uint32_t)sizeof(struct eng_wqe) + sge_bytes + 7) & ~7u;
	qp->sq_mem = calloc(qp->sq_size, qp->sq_slot);
	if (!qp->batch || !qp->sq_mem ||
	    (!init->srq && eng_rq_init(&qp->rq, cap->max_recv_wr, cap->max_recv_sge))) {
		free(qp->batch);
		free(qp->sq_mem);
		free(qp);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&qp->lock, NULL);
	pthread_mutex_init(&qp->rx_lock, NULL);
	qp->ctx = pd->ctx;
	qp->pd = pd;
	qp->scq = init->send_cq;
	qp->rcq = init->recv_cq;
	qp->srq = init->srq;
	qp->user = init->user;
	qp->sq_sig_all = init->sq_sig_all;
	qp->qpn = atomic_fetch_add(&qp_numbers, 1);
	qp->fd = -1;
	qp->state = SIW_QP_IDLE;
	qp->user_state = ENG_QPS_RESET;
	/* Report what we really grant: the rounded-up queue sizes. */
	cap->max_send_wr = qp->sq_size;
	if (!init->srq) {
		cap->max_recv_wr = qp->rq.size;
		cap->max_recv_sge = qp->rq.max_sge;
	} else {
		cap->max_recv_wr = 0;
		cap->max_recv_sge = 0;
	}
	if (!cap->max_inline_data)
		cap->max_inline_data = 0;
	qp->cap = *cap;

	if (eng_cq_attach(qp->scq, qp) || (qp->rcq != qp->scq && eng_cq_attach(qp->rcq, qp))) {
		eng_cq_detach(qp->scq, qp);
		pthread_mutex_destroy(&qp->lock);
		pthread_mutex_destroy(&qp->rx_lock);
		if (!init->srq)
			eng_rq_fini(&qp->rq);
		free(qp->batch);
		free(qp->sq_mem);
		free(qp);
		errno = ENOMEM;
		return NULL;
	}
	atomic_fetch_add(&pd->refs, 1);
	atomic_fetch_add(&qp->scq->refs, 1);
	atomic_fetch_add(&qp->rcq->refs, 1);
	if (qp->srq)
		atomic_fetch_add(&qp->srq->refs, 1);
	pthread_mutex_lock(&qp->ctx->lock);
	link_add(&qp->ctx->qps, &qp->link);
	qp->ctx->nobjs++;
	pthread_mutex_unlock(&qp->ctx->lock);
	return qp;
}

uint32_t eng_qp_num(const struct eng_qp *qp)
{
	return qp->qpn;
}

void *eng_qp_user(const struct eng_qp *qp)
{
	return qp->user;
}

struct eng_qp *eng_qp_by_num(struct eng_ctx *ctx, uint32_t qpn)
{
	struct eng_qp *found = NULL;

	if (!ctx)
		return NULL;
	pthread_mutex_lock(&ctx->lock);
	for (struct eng_link *l = ctx->qps.next; l != &ctx->qps; l = l->next) {
		struct eng_qp *qp = container_of(l, struct eng_qp, link);

		if (qp->qpn == qpn) {
			found = qp;
			break;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
	return found;
}

/* ---- teardown ------------------------------------------------------------------------------ */

static uint8_t wc_opcode_of(uint8_t wr_opcode)
{
	switch (wr_opcode) {
	case ENG_WR_RDMA_WRITE:
	case ENG_WR_RDMA_WRITE_WITH_IMM:
		return ENG_WC_RDMA_WRITE;
	case ENG_WR_RDMA_READ:
		return ENG_WC_RDMA_READ;
	case ENG_WR_ATOMIC_CMP_AND_SWP:
		return ENG_WC_COMP_SWAP;
	case ENG_WR_ATOMIC_FETCH_AND_ADD:
		return ENG_WC_FETCH_ADD;
	case ENG_WR_LOCAL_INV:
		return ENG_WC_LOCAL_INV;
	case ENG_WR_BIND_MW:
		return ENG_WC_BIND_MW;
	default:
		return ENG_WC_SEND;
	}
}

static void sq_flush(struct eng_qp *qp)
{
	/* Outstanding READs first, then what was never completed, in order (as kernel siw). */
	for (unsigned h = atomic_load(&qp->orq_head); h != atomic_load(&qp->orq_tail); h++) {
		struct eng_orq *o = &qp->orq[h % ENG_MAX_ORD];

		if (!o->internal) {
			struct eng_cqe c = {.wr_id = o->wr_id,
					    .status = ENG_WC_WR_FLUSH_ERR,
					    .opcode = o->atomic ? o->atomic : ENG_WC_RDMA_READ,
					    .qp_num = qp->qpn};
			eng_cq_push(qp->scq, &c);
		}
	}
	atomic_store(&qp->orq_head, atomic_load(&qp->orq_tail));
	for (uint32_t i = qp->sq_done; i != qp->sq_tail; i++) {
		struct eng_wqe *w = sq_entry(qp, i);

		if (!w->done) {
			struct eng_cqe c = {.wr_id = w->wr_id,
					    .status = ENG_WC_WR_FLUSH_ERR,
					    .opcode = wc_opcode_of(w->opcode),
					    .qp_num = qp->qpn};
			eng_cq_push(qp->scq, &c);
		}
	}
	qp->sq_done = qp->sq_head = qp->sq_tail;
	atomic_store(&qp->irq_head, atomic_load(&qp->irq_tail));
	siw_tx_batch_reset(qp->batch);
	qp->out_cnt = 0;
	qp->ntxc = qp->txc_done = 0;
	qp->tx.active = false;
	qp->tx_part = 0;
}

/* Receive side flush (rx_lock held). */
static void rq_flush(struct eng_qp *qp, int err)
{
	if (qp->rx.u_active || qp->rq_active) {
		/* The receive a failing SEND had taken reports why, if it was its fault. */
		struct eng_cqe c = {.wr_id = qp->rx_wr_id,
				    .status = ENG_WC_WR_FLUSH_ERR,
				    .opcode = ENG_WC_RECV,
				    .qp_num = qp->qpn};

		if (err && qp->rx.u_status == 1)
			c.status = ENG_WC_LOC_LEN_ERR;
		else if (err && qp->rx.u_status == 2)
			c.status = ENG_WC_LOC_PROT_ERR;
		eng_cq_push(qp->rcq, &c);
		qp->rx.u_active = false;
		qp->rq_active = NULL;
	}
	if (qp->srq)
		return; /* the SRQ's receives belong to the other QPs too */
	pthread_mutex_lock(&qp->rq.plock);
	qp->rq.flushed = true;
	for (uint32_t h = atomic_load(&qp->rq.head); h != atomic_load(&qp->rq.tail); h++) {
		struct eng_cqe c = {.wr_id = rq_entry(&qp->rq, h)->wr_id,
				    .status = ENG_WC_WR_FLUSH_ERR,
				    .opcode = ENG_WC_RECV,
				    .qp_num = qp->qpn};
		eng_cq_push(qp->rcq, &c);
	}
	atomic_store(&qp->rq.head, atomic_load(&qp->rq.tail));
	pthread_mutex_unlock(&qp->rq.plock);
}

/* Is this error one we tell the peer about with a TERMINATE? */
static bool wants_terminate(int err)
{
	return err && err != SIW_ERR_TERMINATED && err != SIW_ERR_CLOSED && err != SIW_ERR_STATE;
}

int eng_qp_unmapped(const struct eng_qp *qp, const char *what)
{
	eng_err("QP %u: %s unmapped memory (a registered buffer was freed while in use?)", qp->qpn,
		what);
	return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
			    TERM_ECODE_RDMAP_UNSPECIFIED);
}

void eng_qp_fail(struct eng_qp *qp, int err)
{
	const struct eng_cm_ops *ops = NULL;
	void *cm_user = NULL;
	bool had_conn;

	pthread_mutex_lock(&qp->rx_lock);
	pthread_mutex_lock(&qp->lock);
	qp->fail_posted = false;
	if (qp->state == SIW_QP_ERROR) {
		pthread_mutex_unlock(&qp->lock);
		pthread_mutex_unlock(&qp->rx_lock);
		return;
	}
	qp->err = err;
	had_conn = qp->fd >= 0;
	/*
	 * CLOSING too: the application's rdma_disconnect may have come between the error and
	 * this call (the FIN goes out only below), and the peer is still owed its TERMINATE.
	 */
	if (had_conn && wants_terminate(err) &&
	    (qp->state == SIW_QP_RTS || qp->state == SIW_QP_CLOSING)) {
		/* Best effort, as kernel siw: a TERMINATE only if it can start on an FPDU boundary. */
		uint32_t ctrl;
		int blen = siw_term_build(err, qp->rx.err_hdr_len ? qp->rx.err_hdr : NULL,
					  qp->rx.err_hdr_len, qp->rx.err_hdr_rdmap, qp->term_body,
					  sizeof(qp->term_body), &ctrl);

		if (blen >= 0 && !siw_tx_busy(&qp->tx)) {
			char what[160];
			struct siw_term_info ti = {0};

			ti.layer = (uint8_t)siw_err_term_layer(err);
			ti.etype = (uint8_t)siw_err_term_etype(err);
			ti.ecode = (uint8_t)siw_err_term_ecode(err);
			ti.rfc_valid = true;
			qp->term_ctrl = ctrl;
			qp->term_len = (unsigned)blen;
			qp->term_pending = true;
			qp->tx_hold = true;
			qp->state = SIW_QP_TERMINATE;
			eng_qp_tx_run(qp, 2);
			qp->stats.terms_sent += qp->term_sent;
			/* observability hook: the last TERMINATE for siw-stat (obs.h) */
			eng_obs_term(qp, true, &ti);
			eng_err("QP %u: connection terminated: %s; %s TERMINATE to the peer%s",
				qp->qpn, siw_term_describe(&ti, what, sizeof(what)),
				qp->term_sent ? "sent" : "could not send", eng_obs_err_hint(err));
		}
	}
	eng_dbg("QP %u: %s => ERROR (%s)", qp->qpn, siw_qp_state_name[qp->state],
		err ? siw_strerror(err) : "closed");
	qp->state = SIW_QP_ERROR;
	qp->tx_hold = true;
	if (qp->fd >= 0) {
		if (qp->in_epoll)
			epoll_ctl(qp->ctx->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
		qp->in_epoll = false;
		if (qp->parked) {
			link_del(&qp->park_link); /* progress thread: eng_qp_fail runs there */
			qp->parked = false;
		}
		/*
		 * FIN after whatever is queued (the TERMINATE), and read what the peer already
		 * sent: closing with unread data would reset the connection and could destroy
		 * the TERMINATE in flight.
		 */
		if (ENG_CAP_ON()) /* observability hook: our FIN into the capture (obs.h) */
			eng_cap_close(qp);
		shutdown(qp->fd, SHUT_WR);
		for (int i = 0; i < 16; i++) {
			uint8_t *b = qp->ctx->rd.staging;

			if (!eng_in_progress_thread(qp->ctx) ||
			    recv(qp->fd, b, qp->ctx->rd.staging_size, MSG_DONTWAIT) <= 0)
				break;
		}
		close(qp->fd);
		qp->fd = -1;
	}
	sq_flush(qp);
	rq_flush(qp, err);
	if (err)
		qp->stats.errors++;
	if (qp->connected && !qp->cm_closed_sent) {
		qp->cm_closed_sent = true;
		ops = qp->cm_ops;
		cm_user = qp->cm_user;
	}
	pthread_mutex_unlock(&qp->lock);
	pthread_mutex_unlock(&qp->rx_lock);

	if (err && err != SIW_ERR_CLOSED && err != SIW_ERR_STATE)
		eng_ctx_async_event(qp->ctx, ENG_EVENT_QP_FATAL, qp->user);
	if (ops && ops->closed)
		ops->closed(cm_user, qp, err);
}

void eng_qp_request_fail(struct eng_qp *qp, int err)
{
	if (eng_in_progress_thread(qp->ctx)) {
		eng_qp_fail(qp, err);
		return;
	}
	pthread_mutex_lock(&qp->lock);
	if (qp->fail_posted || qp->state == SIW_QP_ERROR) {
		pthread_mutex_unlock(&qp->lock);
		return;
	}
	qp->fail_posted = true;
	pthread_mutex_unlock(&qp->lock);
	if (eng_ctx_post_async(qp->ctx, ENG_CMD_QP_FAIL, qp, err)) {
		/*
		 * No memory for a command: one on our stack, and wait for it. Not eng_qp_fail here:
		 * the QP may be on the progress thread's parked list, which only that thread touches.
		 */
		struct eng_cmd c = {.type = ENG_CMD_QP_FAIL, .qp = qp, .err = err};

		eng_ctx_post(qp->ctx, &c, true);
	}
}

/* Runs a command on the progress thread and waits for it (or runs it here if we are it). */
static void run_sync(struct eng_qp *qp, enum eng_cmd_type type, int err)
{
	struct eng_cmd c = {.type = type, .qp = qp, .err = err};

	if (eng_in_progress_thread(qp->ctx)) {
		if (type == ENG_CMD_QP_FAIL || type == ENG_CMD_QP_CLOSE)
			eng_qp_fail(qp, err);
		return;
	}
	eng_ctx_post(qp->ctx, &c, true);
}

int eng_qp_destroy(struct eng_qp *qp)
{
	if (!qp)
		return EINVAL;
	if (!eng_forked(qp->ctx)) {
		pthread_mutex_lock(&qp->lock);
		qp->destroying = true;
		pthread_mutex_unlock(&qp->lock);
		/* Close and flush on the progress thread, then make sure it holds no reference. */
		run_sync(qp, ENG_CMD_QP_FAIL, 0);
		run_sync(qp, ENG_CMD_SYNC, 0);
	}
	pthread_mutex_lock(&qp->ctx->lock);
	link_del(&qp->link);
	qp->ctx->nobjs--;
	pthread_mutex_unlock(&qp->ctx->lock);
	eng_stat_qp_unlink(qp); /* observability hook: no siw-stat reader holds it (obs.h) */
	/* No busy poller may reach it any more. */
	eng_cq_detach(qp->scq, qp);
	eng_cq_detach(qp->rcq, qp);
	atomic_fetch_sub(&qp->pd->refs, 1);
	atomic_fetch_sub(&qp->scq->refs, 1);
	atomic_fetch_sub(&qp->rcq->refs, 1);
	if (qp->srq)
		atomic_fetch_sub(&qp->srq->refs, 1);
	if (qp->fd >= 0)
		close(qp->fd);
	if (!qp->srq)
		eng_rq_fini(&qp->rq);
	pthread_mutex_destroy(&qp->lock);
	pthread_mutex_destroy(&qp->rx_lock);
	free(qp->sq_mem);
	free(qp->batch);
	free(qp);
	return 0;
}

/* ---- state ----------------------------------------------------------------------------------- */

static enum eng_qp_state verbs_state(const struct eng_qp *qp)
{
	switch (qp->state) {
	case SIW_QP_IDLE:
	case SIW_QP_RTR:
		return qp->user_state;
	case SIW_QP_RTS:
		return ENG_QPS_RTS;
	case SIW_QP_CLOSING:
		return ENG_QPS_SQD;
	case SIW_QP_TERMINATE:
		return ENG_QPS_SQE;
	default:
		return ENG_QPS_ERR;
	}
}

int eng_qp_query(struct eng_qp *qp, struct eng_qp_info *info)
{
	if (!qp || !info)
		return EINVAL;
	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&qp->lock);
	info->state = verbs_state(qp);
	info->cap = qp->cap;
	info->access = qp->access;
	info->ord = qp->ord;
	info->ird = qp->ird;
	info->connected = qp->connected && qp->state != SIW_QP_ERROR;
	info->local = qp->local;
	info->peer = qp->peer;
	info->mpa = qp->mpa;
	info->mpa.user_pd = NULL;
	info->mpa.user_pd_len = 0;
	pthread_mutex_unlock(&qp->lock);
	return 0;
}

int eng_qp_set_access(struct eng_qp *qp, int access)
{
	if (!qp || (access & ~ENG_ACCESS_ALL))
		return EINVAL;
	pthread_mutex_lock(&qp->lock);
	qp->access = access;
	pthread_mutex_unlock(&qp->lock);
	return 0;
}

/* Resets an ERROR QP for reuse (verbs: ERR -> RESET). qp->lock and rx_lock held. */
static void qp_reset(struct eng_qp *qp)
{
	qp->state = SIW_QP_IDLE;
	qp->user_state = ENG_QPS_RESET;
	qp->connected = false;
	qp->cm_closed_sent = false;
	qp->term_pending = qp->term_sent = qp->tx_hold = false;
	qp->rtr_tx_pending = false;
	qp->err = 0;
	qp->sq_head = qp->sq_tail = qp->sq_done = 0;
	atomic_store(&qp->orq_head, 0);
	atomic_store(&qp->orq_tail, 0);
	atomic_store(&qp->irq_head, 0);
	atomic_store(&qp->irq_tail, 0);
	if (!qp->srq) {
		pthread_mutex_lock(&qp->rq.plock);
		qp->rq.flushed = false;
		atomic_store(&qp->rq.head, 0);
		atomic_store(&qp->rq.tail, 0);
		pthread_mutex_unlock(&qp->rq.plock);
	}
}

int eng_qp_modify_state(struct eng_qp *qp, enum eng_qp_state to)
{
	int err = 0;

	if (!qp || (unsigned)to > ENG_QPS_ERR)
		return EINVAL;
	switch (to) {
	case ENG_QPS_ERR:
		run_sync(qp, ENG_CMD_QP_FAIL, 0);
		return 0;
	case ENG_QPS_SQD:
		return eng_qp_disconnect(qp);
	case ENG_QPS_SQE:
		return EINVAL; /* only the engine moves a QP to TERMINATE */
	default:
		break;
	}
	pthread_mutex_lock(&qp->rx_lock);
	pthread_mutex_lock(&qp->lock);
	if (to == ENG_QPS_RESET) {
		if (qp->state == SIW_QP_ERROR || !qp->connected)
			qp_reset(qp);
		else
			err = EINVAL; /* a connected QP goes to ERR first */
	} else if (qp->connected) {
		/* rdma_accept/rdma_connect re-apply RTR/RTS to a live QP: a no-op for iWARP. */
		if (qp->state == SIW_QP_ERROR || (to != ENG_QPS_RTS && to != ENG_QPS_RTR &&
						 to != ENG_QPS_INIT))
			err = EINVAL;
	} else if (qp->state == SIW_QP_ERROR) {
		err = EINVAL;
	} else {
		/* Not connected: verbs moves RESET -> INIT -> RTR -> RTS; RTS waits for the CM. */
		enum eng_qp_state from = qp->user_state;

		if (to == ENG_QPS_INIT && from != ENG_QPS_RESET && from != ENG_QPS_INIT)
			err = EINVAL;
		else if (to == ENG_QPS_RTR && from != ENG_QPS_INIT && from != ENG_QPS_RTR)
			err = EINVAL;
		else if (to == ENG_QPS_RTS)
			err = EINVAL; /* only the CM's hand-over makes an iWARP QP RTS */
		else
			qp->user_state = to;
	}
	pthread_mutex_unlock(&qp->lock);
	pthread_mutex_unlock(&qp->rx_lock);
	return err;
}

/* ---- posting --------------------------------------------------------------------------------- */

static int check_send_wr(const struct eng_qp *qp, const struct eng_send_wr *w)
{
	uint64_t len = 0;

	if (w->num_sge < 0 || (w->num_sge && !w->sg_list))
		return EINVAL;
	switch (w->opcode) {
	case ENG_WR_SEND:
	case ENG_WR_SEND_WITH_INV:
	case ENG_WR_RDMA_WRITE:
		break;
	case ENG_WR_SEND_WITH_IMM:
	case ENG_WR_RDMA_WRITE_WITH_IMM:
	case ENG_WR_ATOMIC_CMP_AND_SWP:
	case ENG_WR_ATOMIC_FETCH_AND_ADD:
		/*
		 * RFC 7306 (PROTOCOL.md §6.5): refused at once (EINVAL, as rdma-core providers
		 * answer for an opcode the device cannot do) on a connection whose peer did not
		 * agree to it, and anywhere with SIW_RFC7306=off. Before the connection is up
		 * they are queued; if the peer then turns out not to agree, the WR completes
		 * with IBV_WC_LOC_QP_OP_ERR (qp_tx.c).
		 */
		if (qp->connected ? !qp->rfc7306 : eng_rfc7306_env() == ENG_RFC7306_OFF)
			return EINVAL;
		/* The old value of an atomic comes back into one local SGE of 8 bytes. */
		if ((w->opcode == ENG_WR_ATOMIC_CMP_AND_SWP ||
		     w->opcode == ENG_WR_ATOMIC_FETCH_AND_ADD) &&
		    (w->num_sge != 1 || w->sg_list[0].length < 8 || (w->flags & ENG_SEND_INLINE)))
			return EINVAL;
		break;
	case ENG_WR_RDMA_READ:
		/* Several sink SGEs: one READ REQUEST each (qp_tx.c). */
		if (w->num_sge > ENG_MAX_SGE_RD || (w->flags & ENG_SEND_INLINE))
			return EINVAL;
		break;
	case ENG_WR_LOCAL_INV:
	case ENG_WR_BIND_MW:
		/* Executed by the SQ in order, locally (qp_tx.c); nothing goes on the wire. */
		if ((w->opcode == ENG_WR_BIND_MW && w->num_sge > 1) || (w->flags & ENG_SEND_INLINE))
			return EINVAL;
		break;
	default:
		return EINVAL;
	}
	/* Before reading sg_list: it may hold only as many entries as the QP allows. */
	if (!(w->flags & ENG_SEND_INLINE) && (uint32_t)w->num_sge > qp->cap.max_send_sge)
		return EINVAL;
	for (int i = 0; i < w->num_sge; i++)
		len += w->sg_list[i].length;
	if (len > UINT32_MAX)
		return EINVAL;
	if ((w->flags & ENG_SEND_INLINE) && len > qp->cap.max_inline_data)
		return EINVAL;
	return 0;
}

static void complete_now(struct eng_qp *qp, const struct eng_send_wr *w, uint8_t status)
{
	struct eng_cqe c = {.wr_id = w->wr_id,
			    .status = status,
			    .opcode = wc_opcode_of((uint8_t)w->opcode),
			    .qp_num = qp->qpn};

	eng_cq_push(qp->scq, &c);
}

/*
 * all_or_none (ibv_wr_complete: "no work is executed until it returns success"): every WR is
 * checked, and the room for all of them, before the first is queued.
 */
static int post_send(struct eng_qp *qp, const struct eng_send_wr *wr, int n, int *bad,
		     bool all_or_none)
{
	int err = 0, txerr = 0;
	bool kick = false;

	*bad = 0;
	if (!qp || (n && !wr))
		return EINVAL;
	if (eng_forked(qp->ctx)) {
		/* The parent's connection is not the child's to write on (verbs fork semantics). */
		eng_err("post_send in a forked child on a QP of the parent: refused");
		return EIO;
	}
	pthread_mutex_lock(&qp->lock);
	if (all_or_none) {
		uint32_t room = qp->sq_size - (qp->sq_tail - qp->sq_done);

		for (int i = 0; i < n && !err; i++) {
			err = check_send_wr(qp, &wr[i]);
			if (!err && qp->state != SIW_QP_ERROR && (uint32_t)i >= room)
				err = ENOMEM;
			if (err)
				*bad = i;
		}
		if (err) {
			pthread_mutex_unlock(&qp->lock);
			return err;
		}
	}
	for (int i = 0; i < n; i++) {
		const struct eng_send_wr *w = &wr[i];
		struct eng_wqe *q;
		uint32_t len = 0;

		err = check_send_wr(qp, w);
		if (err) {
			*bad = i;
			break;
		}
		if (qp->state == SIW_QP_ERROR) {
			complete_now(qp, w, ENG_WC_WR_FLUSH_ERR);
			continue;
		}
		if (qp->sq_tail - qp->sq_done >= qp->sq_size) {
			*bad = i;
			err = ENOMEM;
			break;
		}
		q = sq_entry(qp, qp->sq_tail);
		q->wr_id = w->wr_id;
		q->opcode = (uint8_t)w->opcode;
		q->flags = (uint8_t)w->flags;
		q->done = 0;
		q->signaled = qp->sq_sig_all || (w->flags & ENG_SEND_SIGNALED);
		q->imm_or_inv = w->imm_or_inv;
		q->rkey = w->rkey;
		q->raddr = w->remote_addr;
		q->compare_add = w->compare_add;
		q->swap = w->swap;
		q->rd_part = 0;
		if (w->flags & ENG_SEND_INLINE) {
			/* Inline data is copied now: the application may reuse its buffer at once. */
			uint8_t *p = (uint8_t *)q->sge;

			for (int s = 0; s < w->num_sge; s++) {
				memcpy(p + len, (const void *)(uintptr_t)w->sg_list[s].addr,
				       w->sg_list[s].length);
				len += w->sg_list[s].length;
			}
			q->num_sge = 0;
		} else {
			if (w->num_sge) /* sg_list may be NULL (LOCAL_INV, unbind) */
				memcpy(q->sge, w->sg_list,
				       (size_t)w->num_sge * sizeof(struct siw_sge));
			q->num_sge = (uint16_t)w->num_sge;
			for (int s = 0; s < w->num_sge; s++)
				len += w->sg_list[s].length;
		}
		q->len = len;
		qp->sq_tail++;
		kick = true;
	}
	/*
	 * Transmit from the caller's thread when the socket takes it (lowest latency); what does
	 * not fit is left to the progress thread, which waits for EPOLLOUT.
	 */
	if (kick && qp->state == SIW_QP_RTS && qp->fd >= 0 && !qp->epollout)
		txerr = eng_qp_tx_run(qp, 2);
	pthread_mutex_unlock(&qp->lock);
	if (txerr)
		eng_qp_request_fail(qp, txerr);
	return err;
}

int eng_post_send(struct eng_qp *qp, const struct eng_send_wr *wr, int n, int *bad)
{
	return post_send(qp, wr, n, bad, false);
}

int eng_post_send_all(struct eng_qp *qp, const struct eng_send_wr *wr, int n, int *bad)
{
	return post_send(qp, wr, n, bad, true);
}

/* ---- connection ------------------------------------------------------------------------------ */

/* Makes epoll watch what the QP needs now (qp->lock held). */
static void qp_epoll_update(struct eng_qp *qp)
{
	struct epoll_event ev = {.data.ptr = qp};

	if (!qp->in_epoll)
		return;
	ev.events = qp->parked ? 0 : EPOLLIN | EPOLLRDHUP | (qp->epollout ? EPOLLOUT : 0);
	if (ev.events != qp->ep_events && epoll_ctl(qp->ctx->epfd, EPOLL_CTL_MOD, qp->fd, &ev) == 0)
		qp->ep_events = ev.events;
}

void eng_qp_want_write(struct eng_qp *qp, bool on)
{
	if (qp->epollout == on || !qp->in_epoll)
		return;
	__atomic_store_n(&qp->epollout, on, __ATOMIC_RELAXED); /* busy pollers peek */
	qp_epoll_update(qp);
}

/*
 * Busy polling hand-off. An application thread that spins on an empty CQ (SIW_POLL_PROGRESS,
 * on by default) reads and writes the sockets of that CQ's QPs itself (eng_qp_poll_progress).
 * If the progress thread also woke for every byte that arrives, the two would take turns
 * with the QP's locks and, on a machine with few cores, with the CPU: a wake-up and a context
 * switch per message, which is what made ping-pong latency several times TCP's. So while a
 * poller is active, the progress thread parks the QP (epoll stops watching it) and looks again
 * every PARK_MS; a poller that stops (or arms the CQ to sleep on its channel) gets the progress
 * thread back within that time. CQs armed for events do not count as polled, so programs that
 * poll after each completion event (rping) keep the progress thread.
 */
#define POLL_ACTIVE_NS 1000000 /* a poll this recent means the poller is still spinning */

long long eng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool cq_polled(const struct eng_cq *cq, long long now)
{
	long long t = atomic_load_explicit(&cq->poll_ns, memory_order_relaxed);

	return t && now - t < POLL_ACTIVE_NS;
}

bool eng_qp_polled(const struct eng_qp *qp, long long now)
{
	return cq_polled(qp->scq, now) || cq_polled(qp->rcq, now);
}

void eng_qp_park(struct eng_qp *qp)
{
	pthread_mutex_lock(&qp->lock);
	if (qp->parked || !qp->in_epoll || qp->state == SIW_QP_ERROR) {
		pthread_mutex_unlock(&qp->lock);
		return;
	}
	qp->parked = true;
	qp_epoll_update(qp);
	pthread_mutex_unlock(&qp->lock);
	link_add(&qp->ctx->parked, &qp->park_link);
}

static void qp_unpark(struct eng_qp *qp)
{
	link_del(&qp->park_link);
	pthread_mutex_lock(&qp->lock);
	qp->parked = false;
	qp_epoll_update(qp); /* level-triggered: what waited is reported at once */
	pthread_mutex_unlock(&qp->lock);
}

void eng_qp_unpark_idle(struct eng_ctx *ctx)
{
	long long now = eng_now_ns();
	struct eng_link *l, *next;

	for (l = ctx->parked.next; l != &ctx->parked; l = next) {
		struct eng_qp *qp = container_of(l, struct eng_qp, park_link);

		next = l->next;
		if (!eng_qp_polled(qp, now))
			qp_unpark(qp);
	}
}

void eng_qp_kick_tx(struct eng_qp *qp)
{
	int err;

	pthread_mutex_lock(&qp->lock);
	err = qp->state == SIW_QP_ERROR ? 0 : eng_qp_tx_run(qp, 64);
	pthread_mutex_unlock(&qp->lock);
	if (err)
		eng_qp_fail(qp, err);
}

void eng_qp_start(struct eng_qp *qp)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = qp};
	const struct eng_cm_ops *ops;
	bool established;
	void *cm_user;

	pthread_mutex_lock(&qp->lock);
	if (qp->state == SIW_QP_ERROR || qp->fd < 0) {
		pthread_mutex_unlock(&qp->lock);
		return;
	}
	if (epoll_ctl(qp->ctx->epfd, EPOLL_CTL_ADD, qp->fd, &ev) < 0) {
		int e = errno;

		pthread_mutex_unlock(&qp->lock);
		eng_err("QP %u: epoll_ctl: %s", qp->qpn, strerror(e));
		eng_qp_fail(qp, SIW_ERR_CLOSED);
		return;
	}
	qp->in_epoll = true;
	qp->ep_events = ev.events;
	established = !qp->rx.rtr_pending;
	ops = qp->cm_ops;
	cm_user = qp->cm_user;
	pthread_mutex_unlock(&qp->lock);

	if (established && ops && ops->established)
		ops->established(cm_user, qp);
	/* Send the RTR and whatever was posted before the connection came up. */
	eng_qp_kick_tx(qp);
	/* Data may have arrived with the MPA exchange still in flight. */
	eng_qp_rx_ready(qp);
	/*
	 * Only now may application threads polling a CQ read and write this QP: until here the
	 * progress thread alone decides whether the connection is established (the RTR), and a
	 * poller that read the stream first would race it (TSan, hostile.scenarios).
	 */
	atomic_store_explicit(&qp->live, true, memory_order_release);
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && *v ? atoi(v) : def;
}

/*
 * Engine settings from the environment, read once: getenv() may race with an application's
 * setenv() between connections. A peer that vanishes without a FIN or RST (power loss, cable
 * cut, a stalled relay) must not hang a QP forever: TCP keepalive finds an idle dead peer,
 * TCP_USER_TIMEOUT one that stops acknowledging data. Kernel siw leaves both at the system
 * defaults (2 hours / ~15 minutes).
 */
static struct {
	pthread_once_t once;
	int keepidle, keepintvl, keepcnt, user_timeout_ms, fpdu_max, notsent_lowat;
} tcp_env = {.once = PTHREAD_ONCE_INIT};

static void tcp_env_read(void)
{
	tcp_env.keepidle = env_int("SIW_TCP_KEEPIDLE", 30);
	tcp_env.keepintvl = env_int("SIW_TCP_KEEPINTVL", 5);
	tcp_env.keepcnt = env_int("SIW_TCP_KEEPCNT", 6);
	tcp_env.user_timeout_ms = env_int("SIW_TCP_USER_TIMEOUT_MS", 60000);
	tcp_env.fpdu_max = env_int("SIW_FPDU_MAX", 0);
	tcp_env.notsent_lowat = env_int("SIW_TCP_NOTSENT_LOWAT", 65536);
}

/* Largest ULPDU for a TCP MSS (RFC 5044 §5: MULPDU = EMSS - (6 + EMSS mod 4), no markers). */
static uint32_t mulpdu_for(int fd, const struct siw_mpa_result *mpa)
{
	int mss = 0;
	socklen_t l = sizeof(mss);
	uint32_t m;

	/* SIW_FPDU_MAX: the largest ULPDU (DDP/RDMAP header + payload) of an FPDU we send. */
	pthread_once(&tcp_env.once, tcp_env_read);
	if (tcp_env.fpdu_max >= 64)
		return tcp_env.fpdu_max > MPA_MAX_ULPDU ? MPA_MAX_ULPDU : (uint32_t)tcp_env.fpdu_max;
	if (mpa->gso)
		return MPA_MAX_ULPDU - 3; /* both sides agreed to FPDUs beyond one segment */
	if (getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &l) < 0 || mss < 128)
		mss = 1460;
	m = (uint32_t)mss - (6 + (uint32_t)mss % 4);
	if (mpa->markers_tx)
		m -= 4 * (((uint32_t)mss + 511) / 512);
	return m > MPA_MAX_ULPDU ? MPA_MAX_ULPDU : m;
}

static void set_tcp_options(int fd)
{
	int one = 1;

	pthread_once(&tcp_env.once, tcp_env_read);
	if (tcp_env.keepidle > 0) {
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &tcp_env.keepidle, sizeof(int));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &tcp_env.keepintvl, sizeof(int));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &tcp_env.keepcnt, sizeof(int));
	}
	/* Independent of keepalive: bounds how long sent data may stay unacknowledged. */
	if (tcp_env.user_timeout_ms > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &tcp_env.user_timeout_ms,
			   sizeof(int));
	/*
	 * Keep at most about one large FPDU unsent in the kernel. On loopback and veth the side
	 * whose ACK opens the window transmits what waits in the peer's socket in its own
	 * context, so with megabytes queued the receiving thread ended up doing the sender's
	 * TCP work too and fell behind (siw-bench, 8 and 64 QPs of 1 MiB WRITE/READ/SEND:
	 * 0.3-0.7x TCP without, 1.2-1.5x with; docs/PERFORMANCE.md). Data in flight is not
	 * limited, only what has not been sent yet.
	 */
	if (tcp_env.notsent_lowat > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &tcp_env.notsent_lowat,
			   sizeof(int));
}

int eng_qp_connect(struct eng_qp *qp, const struct eng_conn *conn)
{
	struct siw_rx_params rp = {0};
	struct siw_tx_params tp = {0};
	int one = 1;
	socklen_t l;

	if (!qp || !conn || conn->fd < 0)
		return EINVAL;
	pthread_mutex_lock(&qp->rx_lock);
	pthread_mutex_lock(&qp->lock);
	if (qp->connected || qp->fd >= 0) {
		pthread_mutex_unlock(&qp->lock);
		pthread_mutex_unlock(&qp->rx_lock);
		return EBUSY;
	}
	if (qp->state != SIW_QP_IDLE && qp->state != SIW_QP_RTR) {
		pthread_mutex_unlock(&qp->lock);
		pthread_mutex_unlock(&qp->rx_lock);
		return EINVAL;
	}
	qp->fd = conn->fd;
	fcntl(qp->fd, F_SETFL, fcntl(qp->fd, F_GETFL) | O_NONBLOCK);
	fcntl(qp->fd, F_SETFD, FD_CLOEXEC);
	/* Small FPDUs must not wait for Nagle (kernel siw sets TCP_NODELAY too). */
	setsockopt(qp->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_tcp_options(qp->fd);
	l = sizeof(qp->local);
	getsockname(qp->fd, (struct sockaddr *)&qp->local, &l);
	l = sizeof(qp->peer);
	getpeername(qp->fd, (struct sockaddr *)&qp->peer, &l);

	qp->initiator = conn->initiator;
	qp->mpa = conn->mpa;
	qp->mpa.user_pd = NULL;
	qp->mpa.user_pd_len = 0;
	qp->cm_ops = conn->ops;
	qp->cm_user = conn->cm_user;
	qp->ord = conn->mpa.ord > ENG_MAX_ORD ? ENG_MAX_ORD : conn->mpa.ord;
	qp->ird = conn->mpa.ird > ENG_MAX_ORD ? ENG_MAX_ORD : conn->mpa.ird;

	rp.crc = conn->mpa.crc;
	rp.markers = conn->mpa.markers_rx;
	rp.pd = qp->pd->id;
	rp.qpn = qp->qpn;
	/* The responder of a peer-to-peer connection waits for the initiator's RTR. */
	rp.rtr = (!conn->initiator && conn->mpa.p2p) ? (uint8_t)conn->mpa.rtr : SIW_RTR_NONE;
	rp.rfc7306 = conn->mpa.rfc7306;
	siw_rx_init(&qp->rx, &eng_rx_ops, qp, &rp);
	tp.crc = conn->mpa.crc;
	tp.markers = conn->mpa.markers_tx;
	tp.max_ulpdu = mulpdu_for(qp->fd, &conn->mpa);
	siw_tx_init(&qp->tx, &tp);
	siw_tx_batch_reset(qp->batch);
	qp->out_cnt = 0;
	qp->rtr_tx_pending = conn->initiator && conn->mpa.p2p && conn->mpa.rtr != SIW_RTR_NONE;
	/* RFC 7306: both ends agreed in the MPA exchange (or SIW_RFC7306=on said so). */
	qp->rfc7306 = conn->mpa.rfc7306;
	qp->tx_part = 0;
	qp->atomic_req_id = 0;
	qp->rx_imm_pending = false;
	qp->rx_write_msg = 0;
	qp->rx_write_len = 0;
	qp->connected = true;
	qp->state = SIW_QP_RTS;
	eng_dbg("QP %u: IDLE => RTS (%s, rev %u, crc %d, markers %d/%d, ird %u, ord %u, rtr %d, "
		"mulpdu %u)",
		qp->qpn, conn->initiator ? "initiator" : "responder", conn->mpa.rev, conn->mpa.crc,
		conn->mpa.markers_rx, conn->mpa.markers_tx, qp->ird, qp->ord, conn->mpa.rtr,
		tp.max_ulpdu);
	eng_obs_connect(qp, conn); /* observability hook: siw-stat, SIW_CAPTURE start (obs.h) */
	pthread_mutex_unlock(&qp->lock);
	pthread_mutex_unlock(&qp->rx_lock);
	if (eng_ctx_post_async(qp->ctx, ENG_CMD_QP_START, qp, 0)) {
		/* Undo the hand-over: the caller keeps the socket on an error. */
		pthread_mutex_lock(&qp->rx_lock);
		pthread_mutex_lock(&qp->lock);
		qp->fd = -1;
		qp->connected = false;
		qp->state = SIW_QP_IDLE;
		pthread_mutex_unlock(&qp->lock);
		pthread_mutex_unlock(&qp->rx_lock);
		return ENOMEM;
	}
	return 0;
}

int eng_qp_disconnect(struct eng_qp *qp)
{
	if (!qp)
		return EINVAL;
	/* The state is written with both locks held, so either side may read it. */
	pthread_mutex_lock(&qp->rx_lock);
	pthread_mutex_lock(&qp->lock);
	if (!qp->connected || qp->state == SIW_QP_ERROR) {
		pthread_mutex_unlock(&qp->lock);
		pthread_mutex_unlock(&qp->rx_lock);
		return 0;
	}
	if (qp->state == SIW_QP_RTS)
		qp->state = SIW_QP_CLOSING;
	pthread_mutex_unlock(&qp->lock);
	pthread_mutex_unlock(&qp->rx_lock);
	if (eng_in_progress_thread(qp->ctx)) {
		eng_qp_fail(qp, 0);
		return 0;
	}
	return eng_ctx_post_async(qp->ctx, ENG_CMD_QP_CLOSE, qp, 0);
}

int eng_qp_stats(struct eng_qp *qp, struct eng_qp_stats *st)
{
	if (!qp || !st)
		return EINVAL;
	pthread_mutex_lock(&qp->lock);
	*st = qp->stats;
	st->tx_bytes = qp->tx.stats.bytes;
	st->tx_msgs = qp->tx.stats.messages;
	st->tx_fpdus = qp->tx.stats.fpdus;
	pthread_mutex_unlock(&qp->lock);
	/* Receive counters are the progress thread's; a torn read is harmless for diagnostics. */
	st->rx_bytes = __atomic_load_n(&qp->rx.stats.bytes, __ATOMIC_RELAXED);
	st->rx_msgs = __atomic_load_n(&qp->rx.stats.messages, __ATOMIC_RELAXED);
	st->rx_fpdus = __atomic_load_n(&qp->rx.stats.fpdus, __ATOMIC_RELAXED);
	return 0;
}
