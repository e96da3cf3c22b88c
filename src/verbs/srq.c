/* SPDX-License-Identifier: MIT */
/* Shared receive queues; post_srq_recv is an ops slot the ibv_post_srq_recv inline calls. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vrb.h"

static uint32_t vrb_srq_handles;

VRB_EXPORT struct ibv_srq *ibv_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *init)
{
	const struct eng_device_attr *lim;
	struct eng_srq_attr a;
	struct vrb_srq *srq;
	int err;

	if (!pd || !init) {
		err = EINVAL;
		goto fail;
	}
	lim = &vrb_ctx(pd->context)->attr;
	/* As kernel siw: a non-empty queue within the device limits, the limit within it. */
	if (!init->attr.max_wr || init->attr.max_wr > (uint32_t)lim->max_srq_wr ||
	    init->attr.max_sge > (uint32_t)lim->max_srq_sge ||
	    init->attr.srq_limit > init->attr.max_wr) {
		err = EINVAL;
		goto fail;
	}
	srq = calloc(1, sizeof(*srq));
	if (!srq) {
		err = ENOMEM;
		goto fail;
	}
	a.max_wr = init->attr.max_wr;
	a.max_sge = init->attr.max_sge;
	a.srq_limit = init->attr.srq_limit;
	srq->obj.user = vrb_obj_new_id();
	errno = 0;
	srq->esrq = eng_srq_create(vrb_pd(pd)->epd, &a, (void *)srq->obj.user);
	if (!srq->esrq) {
		err = errno ? errno : ENOMEM;
		free(srq);
		goto fail;
	}
	/* Report what was granted (at least what was asked). */
	init->attr.max_wr = a.max_wr;
	init->attr.max_sge = a.max_sge;
	srq->ibsrq.context = pd->context;
	srq->ibsrq.srq_context = init->srq_context;
	srq->ibsrq.pd = pd;
	srq->ibsrq.handle = __atomic_add_fetch(&vrb_srq_handles, 1, __ATOMIC_RELAXED);
	pthread_mutex_init(&srq->ibsrq.mutex, NULL);
	pthread_cond_init(&srq->ibsrq.cond, NULL);
	vrb_obj_add(&srq->obj, srq->esrq, srq->obj.user, VRB_OBJ_SRQ);
	return &srq->ibsrq;

fail:
	errno = err;
	return NULL;
}

VRB_EXPORT int ibv_modify_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr, int mask)
{
	struct eng_srq_attr a;

	if (!srq || !attr || (mask & ~(IBV_SRQ_MAX_WR | IBV_SRQ_LIMIT)))
		return EINVAL;
	if (!mask)
		return 0;
	a.max_wr = attr->max_wr;
	a.max_sge = attr->max_sge;
	a.srq_limit = attr->srq_limit;
	return eng_srq_modify(vrb_srq(srq)->esrq, &a, mask & IBV_SRQ_LIMIT, mask & IBV_SRQ_MAX_WR);
}

VRB_EXPORT int ibv_query_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr)
{
	struct eng_srq_attr a;
	int err;

	if (!srq || !attr)
		return EINVAL;
	err = eng_srq_query(vrb_srq(srq)->esrq, &a);
	if (err)
		return err;
	attr->max_wr = a.max_wr;
	attr->max_sge = a.max_sge;
	attr->srq_limit = a.srq_limit;
	return 0;
}

VRB_EXPORT int ibv_destroy_srq(struct ibv_srq *srq)
{
	struct vrb_srq *s;
	int err;

	if (!srq)
		return EINVAL;
	s = vrb_srq(srq);
	vrb_obj_del(&s->obj);
	err = eng_srq_destroy(s->esrq); /* EBUSY while QPs use it */
	if (err) {
		vrb_obj_add(&s->obj, s->esrq, s->obj.user, VRB_OBJ_SRQ);
		return err;
	}
	vrb_wait_events(&srq->mutex, &srq->cond, &srq->events_completed, &s->events_reported);
	pthread_cond_destroy(&srq->cond);
	pthread_mutex_destroy(&srq->mutex);
	free(s);
	return 0;
}

int vrb_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	if (!srq) {
		if (bad_wr)
			*bad_wr = wr;
		return EINVAL;
	}
	return vrb_post_recv_list(NULL, vrb_srq(srq)->esrq, wr, bad_wr);
}
