// SPDX-License-Identifier: MIT
/*
 * Receive queues: a QP's own RQ and shared receive queues. Both are rings of receive WRs with
 * their SGEs copied at post time; the receive side takes one when a SEND starts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "priv.h"

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

int eng_rq_init(struct eng_rq *rq, uint32_t wr, uint32_t max_sge)
{
	memset(rq, 0, sizeof(*rq));
	rq->size = pow2_at_least(wr ? wr : 1);
	rq->max_sge = max_sge ? max_sge : 1;
	rq->slot = (uint32_t)(sizeof(struct eng_rqe) + rq->max_sge * sizeof(struct siw_sge));
	rq->slot = (rq->slot + 7) & ~7u;
	rq->mem = calloc(rq->size, rq->slot);
	if (!rq->mem)
		return ENOMEM;
	pthread_mutex_init(&rq->plock, NULL);
	return 0;
}

void eng_rq_fini(struct eng_rq *rq)
{
	if (!rq->mem)
		return;
	pthread_mutex_destroy(&rq->plock);
	free(rq->mem);
	rq->mem = NULL;
}

/*
 * Appends receive WRs (plock held). With cq set (the queue is flushed) they complete at once.
 */
static int rq_post(struct eng_rq *rq, const struct eng_recv_wr *wr, int n, int *bad,
		   struct eng_cq *flush_cq, uint32_t qpn)
{
	for (int i = 0; i < n; i++) {
		const struct eng_recv_wr *w = &wr[i];
		uint32_t tail = atomic_load_explicit(&rq->tail, memory_order_relaxed);
		struct eng_rqe *e;

		if (w->num_sge < 0 || (uint32_t)w->num_sge > rq->max_sge || (w->num_sge && !w->sg_list)) {
			*bad = i;
			return EINVAL;
		}
		if (flush_cq) {
			struct eng_cqe c = {.wr_id = w->wr_id,
					    .status = ENG_WC_WR_FLUSH_ERR,
					    .opcode = ENG_WC_RECV,
					    .qp_num = qpn};

			eng_cq_push(flush_cq, &c);
			continue;
		}
		if (tail - atomic_load_explicit(&rq->head, memory_order_acquire) >= rq->size) {
			*bad = i;
			return ENOMEM;
		}
		e = rq_entry(rq, tail);
		e->wr_id = w->wr_id;
		e->num_sge = (uint32_t)w->num_sge;
		memcpy(e->sge, w->sg_list, (size_t)w->num_sge * sizeof(struct siw_sge));
		atomic_store_explicit(&rq->tail, tail + 1, memory_order_release);
	}
	return 0;
}

int eng_post_recv(struct eng_qp *qp, const struct eng_recv_wr *wr, int n, int *bad)
{
	struct eng_cq *flush;
	int err;

	*bad = 0;
	if (!qp || (n && !wr))
		return EINVAL;
	if (qp->srq) {
		/* A QP attached to an SRQ takes no receives of its own (verbs: EINVAL). */
		return EINVAL;
	}
	pthread_mutex_lock(&qp->rq.plock);
	flush = qp->rq.flushed ? qp->rcq : NULL;
	err = rq_post(&qp->rq, wr, n, bad, flush, qp->qpn);
	pthread_mutex_unlock(&qp->rq.plock);
	return err;
}

/* ---- shared receive queues ----------------------------------------------------------------- */

struct eng_srq *eng_srq_create(struct eng_pd *pd, struct eng_srq_attr *attr, void *user)
{
	struct eng_srq *srq;

	if (!pd || !attr || !attr->max_wr || attr->max_wr > ENG_MAX_SRQ_WR ||
	    attr->max_sge > ENG_MAX_SGE || attr->srq_limit > attr->max_wr) {
		errno = EINVAL;
		return NULL;
	}
	srq = calloc(1, sizeof(*srq));
	if (!srq) {
		errno = ENOMEM;
		return NULL;
	}
	if (eng_rq_init(&srq->rq, attr->max_wr, attr->max_sge)) {
		free(srq);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&srq->lock, NULL);
	srq->ctx = pd->ctx;
	srq->pd = pd;
	srq->limit = attr->srq_limit;
	srq->user = user;
	attr->max_wr = srq->rq.size;
	attr->max_sge = srq->rq.max_sge;
	atomic_fetch_add(&pd->refs, 1);
	pthread_mutex_lock(&pd->ctx->lock);
	pd->ctx->nobjs++;
	pthread_mutex_unlock(&pd->ctx->lock);
	return srq;
}

int eng_srq_destroy(struct eng_srq *srq)
{
	if (!srq)
		return EINVAL;
	if (atomic_load(&srq->refs))
		return EBUSY;
	atomic_fetch_sub(&srq->pd->refs, 1);
	pthread_mutex_lock(&srq->ctx->lock);
	srq->ctx->nobjs--;
	pthread_mutex_unlock(&srq->ctx->lock);
	eng_rq_fini(&srq->rq);
	pthread_mutex_destroy(&srq->lock);
	free(srq);
	return 0;
}

void *eng_srq_user(const struct eng_srq *srq)
{
	return srq->user;
}

int eng_srq_modify(struct eng_srq *srq, const struct eng_srq_attr *attr, bool set_limit,
		   bool resize)
{
	if (!srq || !attr)
		return EINVAL;
	if (resize)
		return EOPNOTSUPP; /* as kernel siw: an SRQ keeps its size */
	if (set_limit) {
		if (attr->srq_limit > srq->rq.size)
			return EINVAL;
		pthread_mutex_lock(&srq->lock);
		srq->limit = attr->srq_limit;
		pthread_mutex_unlock(&srq->lock);
	}
	return 0;
}

int eng_srq_query(struct eng_srq *srq, struct eng_srq_attr *attr)
{
	if (!srq || !attr)
		return EINVAL;
	attr->max_wr = srq->rq.size;
	attr->max_sge = srq->rq.max_sge;
	attr->srq_limit = srq->limit;
	return 0;
}

int eng_post_srq_recv(struct eng_srq *srq, const struct eng_recv_wr *wr, int n, int *bad)
{
	int err;

	*bad = 0;
	if (!srq || (n && !wr))
		return EINVAL;
	pthread_mutex_lock(&srq->rq.plock);
	err = rq_post(&srq->rq, wr, n, bad, NULL, 0);
	pthread_mutex_unlock(&srq->rq.plock);
	return err;
}
