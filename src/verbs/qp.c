/* SPDX-License-Identifier: MIT */
/*
 * Queue pairs: create/modify/query/destroy with kernel siw's argument rules, and the post_send
 * / post_recv ops that translate rdma-core's work-request lists for the engine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "siw_verbs.h"
#include "vrb.h"

/* Work requests translated per engine call; bounded so the arrays live on the stack. */
#define VRB_POST_BATCH 32

/* ---- create / destroy -------------------------------------------------------------------- */

/* Checks ibv_create_qp's arguments; returns 0 or the errno kernel siw + uverbs give. */
static int vrb_qp_check(struct ibv_pd *pd, const struct ibv_qp_init_attr *a)
{
	const struct eng_device_attr *lim;

	switch (a->qp_type) {
	case IBV_QPT_RC:
		break;
	case IBV_QPT_UC:
	case IBV_QPT_UD:
	case IBV_QPT_RAW_PACKET:
	case IBV_QPT_XRC_SEND:
	case IBV_QPT_XRC_RECV:
	case IBV_QPT_DRIVER:
		return EOPNOTSUPP; /* iWARP is reliable-connected only */
	default:
		return EINVAL;
	}
	if (!a->send_cq || !a->recv_cq || a->send_cq->context != pd->context ||
	    a->recv_cq->context != pd->context || (a->srq && a->srq->context != pd->context))
		return EINVAL;
	lim = &vrb_ctx(pd->context)->attr;
	/*
	 * kernel siw: a QP must be able to hold at least one send WR, and every size is within
	 * the device limits, the receive sizes too when an SRQ makes them meaningless.
	 */
	if (!a->cap.max_send_wr || a->cap.max_send_wr > (uint32_t)lim->max_qp_wr ||
	    a->cap.max_recv_wr > (uint32_t)lim->max_qp_wr ||
	    a->cap.max_send_sge > (uint32_t)lim->max_sge ||
	    a->cap.max_recv_sge > (uint32_t)lim->max_sge ||
	    a->cap.max_inline_data > (uint32_t)lim->max_inline_data)
		return EINVAL;
	return 0;
}

VRB_EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	struct eng_qp_init init;
	struct ibv_qp *ibqp;
	struct vrb_qp *qp;
	int err;

	if (!pd || !attr) {
		err = EINVAL;
		goto fail;
	}
	err = vrb_qp_check(pd, attr);
	if (err)
		goto fail;
	qp = calloc(1, sizeof(*qp));
	if (!qp) {
		err = ENOMEM;
		goto fail;
	}
	memset(&init, 0, sizeof(init));
	init.send_cq = vrb_cq(attr->send_cq)->ecq;
	init.recv_cq = vrb_cq(attr->recv_cq)->ecq;
	init.srq = attr->srq ? vrb_srq(attr->srq)->esrq : NULL;
	init.cap.max_send_wr = attr->cap.max_send_wr;
	init.cap.max_recv_wr = attr->srq ? 0 : attr->cap.max_recv_wr;
	init.cap.max_send_sge = attr->cap.max_send_sge;
	init.cap.max_recv_sge = attr->srq ? 0 : attr->cap.max_recv_sge;
	init.cap.max_inline_data = attr->cap.max_inline_data;
	init.sq_sig_all = attr->sq_sig_all != 0;
	qp->obj.user = vrb_obj_new_id();
	init.user = (void *)qp->obj.user;
	errno = 0;
	qp->eqp = eng_qp_create(vrb_pd(pd)->epd, &init);
	if (!qp->eqp) {
		err = errno ? errno : ENOMEM;
		free(qp);
		goto fail;
	}
	/* Applications read the granted sizes back from the attributes they passed. */
	attr->cap.max_send_wr = init.cap.max_send_wr;
	attr->cap.max_recv_wr = init.cap.max_recv_wr;
	attr->cap.max_send_sge = init.cap.max_send_sge;
	attr->cap.max_recv_sge = init.cap.max_recv_sge;
	attr->cap.max_inline_data = init.cap.max_inline_data;
	qp->sq_sig_all = init.sq_sig_all;

	ibqp = &qp->qpx.qp_base;
	ibqp->context = pd->context;
	ibqp->qp_context = attr->qp_context;
	ibqp->pd = pd;
	ibqp->send_cq = attr->send_cq;
	ibqp->recv_cq = attr->recv_cq;
	ibqp->srq = attr->srq;
	ibqp->qp_num = eng_qp_num(qp->eqp);
	ibqp->handle = ibqp->qp_num;
	ibqp->state = IBV_QPS_RESET;
	ibqp->qp_type = IBV_QPT_RC;
	pthread_mutex_init(&ibqp->mutex, NULL);
	pthread_cond_init(&ibqp->cond, NULL);
	vrb_obj_add(&qp->obj, qp->eqp, qp->obj.user, VRB_OBJ_QP);
	return ibqp;

fail:
	vrb_debug("create_qp: %s\n", strerror(err));
	errno = err;
	return NULL;
}

VRB_EXPORT int ibv_destroy_qp(struct ibv_qp *ibqp)
{
	struct vrb_qp *qp;
	int err;

	if (!ibqp)
		return EINVAL;
	qp = vrb_qp(ibqp);
	vrb_obj_del(&qp->obj);
	err = eng_qp_destroy(qp->eqp);
	if (err) {
		vrb_obj_add(&qp->obj, qp->eqp, qp->obj.user, VRB_OBJ_QP);
		return err;
	}
	vrb_wait_events(&ibqp->mutex, &ibqp->cond, &ibqp->events_completed, &qp->events_reported);
	pthread_cond_destroy(&ibqp->cond);
	pthread_mutex_destroy(&ibqp->mutex);
	vrb_qp_ex_free(qp);
	free(qp);
	return 0;
}

/* ---- modify / query ---------------------------------------------------------------------- */

/* Attribute bits ibv_modify_qp knows (the 21 standard ones and the rate limit). */
#define VRB_QP_ATTR_KNOWN (((IBV_QP_DEST_QPN << 1) - 1) | IBV_QP_RATE_LIMIT)

/*
 * Only the state and the remote access flags mean anything to an iWARP QP. The IB path,
 * timer, retry, PSN, P_Key and RD-atomic bits are accepted and ignored, as kernel siw does
 * (rdma_cm and perftest set them); ORD/IRD are negotiated by the CM during MPA.
 */
VRB_EXPORT int ibv_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int attr_mask)
{
	struct vrb_qp *qp;
	int err;

	if (!ibqp || !attr)
		return EINVAL;
	qp = vrb_qp(ibqp);
	/* Bits outside the standard set never reach the kernel driver (uverbs: EOPNOTSUPP). */
	if ((attr_mask & ~VRB_QP_ATTR_KNOWN) || (attr_mask & IBV_QP_RATE_LIMIT))
		return EOPNOTSUPP;
	if (((attr_mask & IBV_QP_STATE) && attr->qp_state > IBV_QPS_ERR) ||
	    ((attr_mask & IBV_QP_CUR_STATE) && attr->cur_qp_state > IBV_QPS_ERR) ||
	    ((attr_mask & IBV_QP_PORT) && attr->port_num != 1))
		return EINVAL;
	if (attr_mask & IBV_QP_ACCESS_FLAGS) {
		err = eng_qp_set_access(qp->eqp, (int)(attr->qp_access_flags & ENG_ACCESS_ALL));
		if (err)
			return err;
	}
	if (attr_mask & IBV_QP_STATE) {
		err = eng_qp_modify_state(qp->eqp, (enum eng_qp_state)attr->qp_state);
		if (err)
			return err;
		ibqp->state = attr->qp_state;
	}
	return 0;
}

static uint8_t vrb_u8(unsigned int v)
{
	return v > 255 ? 255 : (uint8_t)v;
}

VRB_EXPORT int ibv_query_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int attr_mask,
			    struct ibv_qp_init_attr *init_attr)
{
	struct eng_qp_info info;
	struct vrb_qp *qp;
	int err;

	if (!ibqp || !attr || !init_attr)
		return EINVAL;
	qp = vrb_qp(ibqp);
	err = eng_qp_query(qp->eqp, &info);
	if (err)
		return err;
	/* Every attribute is filled, whatever the mask, as the kernel's answer is. */
	memset(attr, 0, sizeof(*attr));
	attr->qp_state = (enum ibv_qp_state)info.state;
	attr->cur_qp_state = attr->qp_state;
	attr->path_mtu = vrb_port_mtu(vrb_ctx(ibqp->context));
	attr->qp_access_flags = (unsigned int)info.access;
	attr->cap.max_send_wr = info.cap.max_send_wr;
	attr->cap.max_recv_wr = info.cap.max_recv_wr;
	attr->cap.max_send_sge = info.cap.max_send_sge;
	attr->cap.max_recv_sge = info.cap.max_recv_sge;
	attr->cap.max_inline_data = info.cap.max_inline_data;
	attr->max_rd_atomic = vrb_u8(info.ord);
	attr->max_dest_rd_atomic = vrb_u8(info.ird);
	attr->port_num = 1;

	memset(init_attr, 0, sizeof(*init_attr));
	init_attr->qp_context = ibqp->qp_context;
	init_attr->send_cq = ibqp->send_cq;
	init_attr->recv_cq = ibqp->recv_cq;
	init_attr->srq = ibqp->srq;
	init_attr->cap = attr->cap;
	init_attr->qp_type = IBV_QPT_RC;
	init_attr->sq_sig_all = qp->sq_sig_all;
	if (attr_mask & IBV_QP_STATE)
		ibqp->state = attr->qp_state;
	return 0;
}

VRB_EXPORT int ibv_query_qp_data_in_order(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags)
{
	(void)qp, (void)op, (void)flags;
	return 0; /* no ordering promise beyond the verbs semantics */
}

/* The ibv_wr_* API of a QP made by ibv_create_qp_ex with SEND_OPS_FLAGS (ex.c); else NULL. */
VRB_EXPORT struct ibv_qp_ex *ibv_qp_to_qp_ex(struct ibv_qp *qp)
{
	if (!qp || !vrb_qp(qp)->wrb) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	return &vrb_qp(qp)->qpx;
}

/* Enhanced connection establishment is an IB CM feature. */
VRB_EXPORT int ibv_set_ece(struct ibv_qp *qp, struct ibv_ece *ece)
{
	if (!qp || !ece)
		return EINVAL;
	return EOPNOTSUPP;
}

VRB_EXPORT int ibv_query_ece(struct ibv_qp *qp, struct ibv_ece *ece)
{
	if (!qp || !ece)
		return EINVAL;
	return EOPNOTSUPP;
}

/* Multicast needs UD QPs. */
VRB_EXPORT int ibv_attach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid)
{
	(void)lid;
	if (!qp || !gid)
		return EINVAL;
	return EOPNOTSUPP;
}

VRB_EXPORT int ibv_detach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid)
{
	(void)lid;
	if (!qp || !gid)
		return EINVAL;
	return EOPNOTSUPP;
}

/* ---- the CM's view (SOFTIWARP_PRIVATE_1) ------------------------------------------------- */

VRB_EXPORT struct eng_qp *siw_verbs_qp(struct ibv_qp *qp)
{
	return qp ? vrb_qp(qp)->eqp : NULL;
}

/* ---- posting ----------------------------------------------------------------------------- */

_Static_assert(sizeof(struct eng_sge) == sizeof(struct ibv_sge) &&
		   offsetof(struct eng_sge, addr) == offsetof(struct ibv_sge, addr) &&
		   offsetof(struct eng_sge, length) == offsetof(struct ibv_sge, length) &&
		   offsetof(struct eng_sge, lkey) == offsetof(struct ibv_sge, lkey),
	       "SGE lists are handed to the engine without copying");

/* A list element the engine cannot even be asked about. */
static bool vrb_sges_bad(const struct ibv_sge *sg_list, int num_sge)
{
	return num_sge < 0 || (num_sge > 0 && !sg_list);
}

static int vrb_send_flush(struct eng_qp *eqp, const struct eng_send_wr *b,
			  struct ibv_send_wr *const *src, int n, struct ibv_send_wr **bad_wr)
{
	int bad = 0, err;

	if (!n)
		return 0;
	err = eng_post_send(eqp, b, n, &bad);
	if (err)
		*bad_wr = src[bad >= 0 && bad < n ? bad : 0];
	return err;
}

int vrb_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	struct eng_send_wr b[VRB_POST_BATCH];
	struct ibv_send_wr *src[VRB_POST_BATCH];
	struct eng_sge bind_sge[VRB_POST_BATCH]; /* IBV_WR_BIND_MW ranges */
	struct ibv_send_wr *unused;
	struct eng_qp *eqp;
	int n = 0, err;

	if (!bad_wr)
		bad_wr = &unused;
	if (!ibqp) {
		*bad_wr = wr;
		return EINVAL;
	}
	eqp = vrb_qp(ibqp)->eqp;
	for (; wr; wr = wr->next) {
		struct eng_send_wr *e = &b[n];

		/* Opcodes past SEND_WITH_INV (TSO, driver, atomic write) have no engine code. */
		if (vrb_sges_bad(wr->sg_list, wr->num_sge) ||
		    (unsigned int)wr->opcode > IBV_WR_SEND_WITH_INV) {
			err = vrb_send_flush(eqp, b, src, n, bad_wr);
			if (!err) {
				*bad_wr = wr;
				err = EINVAL;
			}
			return err;
		}
		e->wr_id = wr->wr_id;
		e->opcode = (enum eng_wr_opcode)wr->opcode;
		e->flags = wr->send_flags;
		e->imm_or_inv = wr->invalidate_rkey; /* shares the slot with imm_data */
		e->sg_list = (const struct eng_sge *)wr->sg_list;
		e->num_sge = wr->num_sge;
		switch (wr->opcode) {
		case IBV_WR_RDMA_WRITE:
		case IBV_WR_RDMA_WRITE_WITH_IMM:
		case IBV_WR_RDMA_READ:
			e->remote_addr = wr->wr.rdma.remote_addr;
			e->rkey = wr->wr.rdma.rkey;
			e->compare_add = 0;
			e->swap = 0;
			break;
		case IBV_WR_BIND_MW:
			err = vrb_bind_wr(ibqp, wr->bind_mw.mw, wr->bind_mw.rkey,
					  &wr->bind_mw.bind_info, e, &bind_sge[n]);
			if (err) {
				int ferr = vrb_send_flush(eqp, b, src, n, bad_wr);

				if (!ferr)
					*bad_wr = wr;
				return ferr ? ferr : err;
			}
			break;
		case IBV_WR_ATOMIC_CMP_AND_SWP:
		case IBV_WR_ATOMIC_FETCH_AND_ADD:
			e->remote_addr = wr->wr.atomic.remote_addr;
			e->rkey = wr->wr.atomic.rkey;
			e->compare_add = wr->wr.atomic.compare_add;
			e->swap = wr->wr.atomic.swap;
			break;
		default:
			e->remote_addr = 0;
			e->rkey = 0;
			e->compare_add = 0;
			e->swap = 0;
			break;
		}
		src[n++] = wr;
		if (n == VRB_POST_BATCH) {
			err = vrb_send_flush(eqp, b, src, n, bad_wr);
			if (err)
				return err;
			n = 0;
		}
	}
	return vrb_send_flush(eqp, b, src, n, bad_wr);
}

static int vrb_recv_flush(struct eng_qp *qp, struct eng_srq *srq, const struct eng_recv_wr *b,
			  struct ibv_recv_wr *const *src, int n, struct ibv_recv_wr **bad_wr)
{
	int bad = 0, err;

	if (!n)
		return 0;
	err = qp ? eng_post_recv(qp, b, n, &bad) : eng_post_srq_recv(srq, b, n, &bad);
	if (err)
		*bad_wr = src[bad >= 0 && bad < n ? bad : 0];
	return err;
}

int vrb_post_recv_list(struct eng_qp *qp, struct eng_srq *srq, struct ibv_recv_wr *wr,
		       struct ibv_recv_wr **bad_wr)
{
	struct eng_recv_wr b[VRB_POST_BATCH];
	struct ibv_recv_wr *src[VRB_POST_BATCH];
	struct ibv_recv_wr *unused;
	int n = 0, err;

	if (!bad_wr)
		bad_wr = &unused;
	for (; wr; wr = wr->next) {
		if (vrb_sges_bad(wr->sg_list, wr->num_sge)) {
			/* The WRs before it are posted, as a provider would have. */
			err = vrb_recv_flush(qp, srq, b, src, n, bad_wr);
			if (!err) {
				*bad_wr = wr;
				err = EINVAL;
			}
			return err;
		}
		b[n].wr_id = wr->wr_id;
		b[n].sg_list = (const struct eng_sge *)wr->sg_list;
		b[n].num_sge = wr->num_sge;
		src[n++] = wr;
		if (n == VRB_POST_BATCH) {
			err = vrb_recv_flush(qp, srq, b, src, n, bad_wr);
			if (err)
				return err;
			n = 0;
		}
	}
	return vrb_recv_flush(qp, srq, b, src, n, bad_wr);
}

int vrb_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	if (!ibqp) {
		if (bad_wr)
			*bad_wr = wr;
		return EINVAL;
	}
	/* A QP attached to an SRQ has no receive queue of its own (kernel siw: EINVAL). */
	if (ibqp->srq) {
		if (bad_wr)
			*bad_wr = wr;
		return EINVAL;
	}
	return vrb_post_recv_list(vrb_qp(ibqp)->eqp, NULL, wr, bad_wr);
}
