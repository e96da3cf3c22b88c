/* SPDX-License-Identifier: MIT */
/*
 * Completion channels and completion queues, including the two fast-path ops the header's
 * inlines call through ctx->ops: poll_cq and req_notify_cq.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vrb.h"

/* CQ handles: applications may print them, nothing looks them up. */
static uint32_t vrb_cq_handles;

/* ---- completion channels ----------------------------------------------------------------- */

VRB_EXPORT struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *context)
{
	struct vrb_channel *ch;

	if (!context) {
		errno = EINVAL;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	errno = 0;
	ch->ech = eng_channel_create(vrb_ctx(context)->ectx);
	if (!ch->ech) {
		int err = errno ? errno : ENOMEM;

		free(ch);
		errno = err;
		return NULL;
	}
	ch->ch.context = context;
	ch->ch.fd = eng_channel_fd(ch->ech);
	ch->ch.refcnt = 0;
	return &ch->ch;
}

VRB_EXPORT int ibv_destroy_comp_channel(struct ibv_comp_channel *channel)
{
	struct ibv_context *ctx;
	int err;

	if (!channel)
		return EINVAL;
	ctx = channel->context;
	/* refcnt counts the CQs using the channel; ctx->mutex guards it, as in rdma-core. */
	pthread_mutex_lock(&ctx->mutex);
	err = channel->refcnt ? EBUSY : eng_channel_destroy(vrb_channel(channel)->ech);
	pthread_mutex_unlock(&ctx->mutex);
	if (err)
		return err;
	free(vrb_channel(channel));
	return 0;
}

/*
 * Returns 0 with the CQ that has an event and its cq_context, or -1 with errno (EAGAIN when
 * the channel fd was made non-blocking and no event is pending). An event of a CQ destroyed
 * since it was queued is skipped: the engine does not take it back out of the channel.
 */
VRB_EXPORT int ibv_get_cq_event(struct ibv_comp_channel *channel, struct ibv_cq **cq,
				void **cq_context)
{
	struct vrb_cq *vcq;
	void *user;
	int err;

	if (!channel || !cq || !cq_context) {
		errno = EINVAL;
		return -1;
	}
	do {
		user = NULL;
		err = eng_channel_get_event(vrb_channel(channel)->ech, &user);
		if (err) {
			errno = err;
			return -1;
		}
		vcq = vrb_cq_claim_event(user); /* the id given to eng_cq_create */
	} while (!vcq);
	*cq = &vcq->ibcq;
	*cq_context = vcq->ibcq.cq_context;
	return 0;
}

VRB_EXPORT void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int nevents)
{
	if (!cq)
		return;
	pthread_mutex_lock(&cq->mutex);
	cq->comp_events_completed += nevents;
	pthread_cond_signal(&cq->cond);
	pthread_mutex_unlock(&cq->mutex);
}

/* ---- completion queues ------------------------------------------------------------------- */

VRB_EXPORT struct ibv_cq *ibv_create_cq(struct ibv_context *context, int cqe, void *cq_context,
					struct ibv_comp_channel *channel, int comp_vector)
{
	struct vrb_cq *cq;
	int err;

	if (!context || (channel && channel->context != context) || comp_vector < 0 ||
	    comp_vector >= context->num_comp_vectors) {
		err = EINVAL;
		goto fail;
	}
	if (cqe < 1 || cqe > vrb_ctx(context)->attr.max_cqe) {
		err = EINVAL;
		goto fail;
	}
	cq = calloc(1, sizeof(*cq));
	if (!cq) {
		err = ENOMEM;
		goto fail;
	}
	cq->obj.user = vrb_obj_new_id();
	errno = 0;
	cq->ecq = eng_cq_create(vrb_ctx(context)->ectx, cqe,
				channel ? vrb_channel(channel)->ech : NULL, (void *)cq->obj.user);
	if (!cq->ecq) {
		err = errno ? errno : ENOMEM;
		free(cq);
		goto fail;
	}
	cq->ibcq.context = context;
	cq->ibcq.channel = channel;
	cq->ibcq.cq_context = cq_context;
	cq->ibcq.handle = __atomic_add_fetch(&vrb_cq_handles, 1, __ATOMIC_RELAXED);
	cq->ibcq.cqe = eng_cq_size(cq->ecq);
	pthread_mutex_init(&cq->ibcq.mutex, NULL);
	pthread_cond_init(&cq->ibcq.cond, NULL);
	vrb_obj_add(&cq->obj, cq->ecq, cq->obj.user, VRB_OBJ_CQ);
	if (channel) {
		pthread_mutex_lock(&context->mutex);
		channel->refcnt++;
		pthread_mutex_unlock(&context->mutex);
	}
	return &cq->ibcq;

fail:
	vrb_debug("create_cq(%d): %s\n", cqe, strerror(err));
	errno = err;
	return NULL;
}

VRB_EXPORT int ibv_resize_cq(struct ibv_cq *cq, int cqe)
{
	int err;

	if (!cq)
		return EINVAL;
	if (cqe < 1 || cqe > vrb_ctx(cq->context)->attr.max_cqe)
		return EINVAL;
	err = eng_cq_resize(vrb_cq(cq)->ecq, cqe);
	if (!err)
		cq->cqe = eng_cq_size(vrb_cq(cq)->ecq);
	return err;
}

VRB_EXPORT int ibv_destroy_cq(struct ibv_cq *cq)
{
	struct ibv_comp_channel *channel;
	struct vrb_cq *vcq;
	int err;

	if (!cq)
		return EINVAL;
	vcq = vrb_cq(cq);
	channel = cq->channel;
	vrb_obj_del(&vcq->obj);         /* no async event names it from now on */
	err = eng_cq_destroy(vcq->ecq); /* EBUSY while QPs use it */
	if (err) {
		vrb_obj_add(&vcq->obj, vcq->ecq, vcq->obj.user, VRB_OBJ_CQ);
		return err;
	}
	if (channel) {
		pthread_mutex_lock(&channel->context->mutex);
		channel->refcnt--;
		pthread_mutex_unlock(&channel->context->mutex);
	}
	/* Wait until every event handed out was acknowledged, as rdma-core does. */
	pthread_mutex_lock(&cq->mutex);
	while (cq->comp_events_completed != vcq->comp_events_reported ||
	       cq->async_events_completed != vcq->async_events_reported)
		pthread_cond_wait(&cq->cond, &cq->mutex);
	pthread_mutex_unlock(&cq->mutex);
	pthread_cond_destroy(&cq->cond);
	pthread_mutex_destroy(&cq->mutex);
	vrb_cq_ex_free(vcq);
	free(vcq);
	return 0;
}

/* ---- fast path --------------------------------------------------------------------------- */

/* Completions taken from the engine per round; bounded so the buffer lives on the stack. */
#define VRB_POLL_BATCH 16

static inline void vrb_wc_from_cqe(struct ibv_wc *wc, const struct eng_cqe *e)
{
	wc->wr_id = e->wr_id;
	wc->status = (enum ibv_wc_status)e->status;
	wc->opcode = (enum ibv_wc_opcode)e->opcode;
	wc->vendor_err = 0;
	wc->byte_len = e->byte_len;
	wc->invalidated_rkey = e->imm_or_inv; /* shares the slot with imm_data */
	wc->qp_num = e->qp_num;
	wc->src_qp = 0;
	wc->wc_flags = e->flags;
	wc->pkey_index = 0;
	wc->slid = 0;
	wc->sl = 0;
	wc->dlid_path_bits = 0;
}

/* Returns the number of completions (>= 0) or a negative errno for bad arguments. */
int vrb_poll_cq(struct ibv_cq *cq, int num_entries, struct ibv_wc *wc)
{
	struct eng_cqe cqe[VRB_POLL_BATCH];
	struct eng_cq *ecq;
	int total = 0;

	if (!cq || num_entries < 0 || (num_entries && !wc))
		return -EINVAL;
	ecq = vrb_cq(cq)->ecq;
	while (total < num_entries) {
		int want =
		    num_entries - total < VRB_POLL_BATCH ? num_entries - total : VRB_POLL_BATCH;
		int got = eng_cq_poll(ecq, want, cqe);

		if (got <= 0)
			break;
		for (int i = 0; i < got; i++)
			vrb_wc_from_cqe(&wc[total + i], &cqe[i]);
		total += got;
		if (got < want)
			break; /* the CQ is empty */
	}
	return total;
}

int vrb_req_notify_cq(struct ibv_cq *cq, int solicited_only)
{
	if (!cq)
		return EINVAL;
	return eng_cq_arm(vrb_cq(cq)->ecq, solicited_only != 0);
}
