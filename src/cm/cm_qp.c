// SPDX-License-Identifier: MIT
/*
 * QPs, SRQs and endpoints created through the CM (rdma_create_qp, rdma_create_ep,
 * rdma_get_request...). These follow rdma-core's librdmacm closely because applications rely
 * on the details: the QP is moved to INIT with the attributes rdma_init_qp_attr gives, missing
 * CQs are created with completion channels and cq_context == id (rdma_verbs.h's
 * rdma_get_send_comp/recv_comp assert that), id->pd follows the QP's PD.
 *
 * iWARP differences: rdma_init_qp_attr(RTS) has nothing to set (mask 0): the QP reaches RTS
 * when the MPA exchange hands its socket to the engine, not through modify_qp. So the CM does
 * not issue the RTR/RTS modifies rdma-core issues for IB in accept/connect.
 */
#include <stdlib.h>
#include <string.h>

#include "cm.h"

CM_API int rdma_init_qp_attr(struct rdma_cm_id *id, struct ibv_qp_attr *qp_attr, int *qp_attr_mask)
{
	enum ibv_qp_state st;

	if (!id || !qp_attr || !qp_attr_mask)
		return cm_seterr(EINVAL);
	st = qp_attr->qp_state;
	switch (st) {
	case IBV_QPS_INIT:
	case IBV_QPS_RTR:
		if (!id->verbs)
			return cm_seterr(EINVAL);
		memset(qp_attr, 0, sizeof(*qp_attr));
		qp_attr->qp_state = st;
		/* What the kernel's iw_cm sets (plus LOCAL_WRITE, which some kernels add). */
		qp_attr->qp_access_flags =
		    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
		qp_attr->port_num = id->port_num ? id->port_num : 1;
		*qp_attr_mask = IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PORT;
		return 0;
	case IBV_QPS_RTS:
		memset(qp_attr, 0, sizeof(*qp_attr));
		qp_attr->qp_state = st;
		*qp_attr_mask = 0;
		return 0;
	default:
		return cm_seterr(EINVAL);
	}
}

static void destroy_cqs(struct rdma_cm_id *id)
{
	if (id->recv_cq) {
		ibv_destroy_cq(id->recv_cq);
		if (id->send_cq && id->send_cq != id->recv_cq)
			ibv_destroy_cq(id->send_cq);
		id->recv_cq = NULL;
		id->send_cq = NULL;
	} else if (id->send_cq) {
		ibv_destroy_cq(id->send_cq);
		id->send_cq = NULL;
	}
	if (id->recv_cq_channel) {
		ibv_destroy_comp_channel(id->recv_cq_channel);
		if (id->send_cq_channel && id->send_cq_channel != id->recv_cq_channel)
			ibv_destroy_comp_channel(id->send_cq_channel);
		id->recv_cq_channel = NULL;
		id->send_cq_channel = NULL;
	} else if (id->send_cq_channel) {
		ibv_destroy_comp_channel(id->send_cq_channel);
		id->send_cq_channel = NULL;
	}
}

/* CQs (with completion channels, cq_context = id) for the queues that have none. */
static int create_cqs(struct rdma_cm_id *id, uint32_t send_size, uint32_t recv_size)
{
	if (recv_size) {
		id->recv_cq_channel = ibv_create_comp_channel(id->verbs);
		if (!id->recv_cq_channel)
			goto err;
		id->recv_cq = ibv_create_cq(id->verbs, (int)recv_size, id, id->recv_cq_channel, 0);
		if (!id->recv_cq)
			goto err;
	}
	if (send_size) {
		id->send_cq_channel = ibv_create_comp_channel(id->verbs);
		if (!id->send_cq_channel)
			goto err;
		id->send_cq = ibv_create_cq(id->verbs, (int)send_size, id, id->send_cq_channel, 0);
		if (!id->send_cq)
			goto err;
	}
	return 0;
err:
	destroy_cqs(id);
	return cm_seterr(ENOMEM);
}

CM_API int rdma_create_qp_ex(struct rdma_cm_id *id, struct ibv_qp_init_attr_ex *attr)
{
	struct ibv_qp_attr qa;
	struct ibv_qp *qp;
	int mask, ret;

	if (!id || !attr || id->qp || !id->verbs)
		return cm_seterr(EINVAL);
	if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd) {
		attr->comp_mask |= IBV_QP_INIT_ATTR_PD;
		attr->pd = id->pd;
	} else if (attr->pd->context != id->verbs) {
		return cm_seterr(EINVAL); /* a PD of another device (or another context) */
	}
	if (!attr->pd)
		return cm_seterr(EINVAL);
	if ((id->recv_cq && attr->recv_cq && id->recv_cq != attr->recv_cq) ||
	    (id->send_cq && attr->send_cq && id->send_cq != attr->send_cq))
		return cm_seterr(EINVAL);
	if (attr->qp_type != IBV_QPT_RC) {
		cm_info("rdma_create_qp: QP type %d is not supported by iWARP (RC only)",
			attr->qp_type);
		return cm_seterr(EOPNOTSUPP);
	}

	ret = create_cqs(id, attr->send_cq || id->send_cq ? 0 : attr->cap.max_send_wr,
			 attr->recv_cq || id->recv_cq ? 0 : attr->cap.max_recv_wr);
	if (ret)
		return ret;
	if (!attr->send_cq)
		attr->send_cq = id->send_cq;
	if (!attr->recv_cq)
		attr->recv_cq = id->recv_cq;
	if (id->srq && !attr->srq)
		attr->srq = id->srq;

	qp = ibv_create_qp_ex(id->verbs, attr);
	if (!qp) {
		ret = errno ? errno : ENOMEM;
		goto err_cqs;
	}
	qa.qp_state = IBV_QPS_INIT;
	if (rdma_init_qp_attr(id, &qa, &mask)) {
		ret = errno;
		goto err_qp;
	}
	ret = ibv_modify_qp(qp, &qa, mask);
	if (ret)
		goto err_qp;
	id->pd = qp->pd;
	id->qp = qp;
	return 0;

err_qp:
	ibv_destroy_qp(qp);
err_cqs:
	destroy_cqs(id);
	return cm_seterr(ret);
}

CM_API int rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd,
			  struct ibv_qp_init_attr *qp_init_attr)
{
	struct ibv_qp_init_attr_ex ex;
	int ret;

	if (!id || !qp_init_attr)
		return cm_seterr(EINVAL);
	memset(&ex, 0, sizeof(ex));
	memcpy(&ex, qp_init_attr, sizeof(*qp_init_attr));
	ex.comp_mask = IBV_QP_INIT_ATTR_PD;
	ex.pd = pd ? pd : id->pd;
	ret = rdma_create_qp_ex(id, &ex);
	/* The caller learns the granted capabilities (and CQs), as with ibv_create_qp. */
	memcpy(qp_init_attr, &ex, sizeof(*qp_init_attr));
	return ret;
}

CM_API void rdma_destroy_qp(struct rdma_cm_id *id)
{
	if (!id)
		return;
	if (id->qp)
		ibv_destroy_qp(id->qp);
	id->qp = NULL;
	destroy_cqs(id);
}

CM_API int rdma_create_srq_ex(struct rdma_cm_id *id, struct ibv_srq_init_attr_ex *attr)
{
	struct ibv_srq *srq;

	if (!id || !attr || !id->verbs || !(attr->comp_mask & IBV_SRQ_INIT_ATTR_TYPE))
		return cm_seterr(EINVAL);
	if (attr->srq_type != IBV_SRQT_BASIC)
		return cm_seterr(EOPNOTSUPP); /* XRC and tag matching are IB features */
	if (!(attr->comp_mask & IBV_SRQ_INIT_ATTR_PD) || !attr->pd) {
		attr->pd = id->pd;
		attr->comp_mask |= IBV_SRQ_INIT_ATTR_PD;
	}
	srq = ibv_create_srq_ex(id->verbs, attr);
	if (!srq)
		return -1;
	if (!id->pd)
		id->pd = attr->pd;
	id->srq = srq;
	return 0;
}

CM_API int rdma_create_srq(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	struct ibv_srq_init_attr_ex ex;
	int ret;

	if (!id || !attr)
		return cm_seterr(EINVAL);
	memset(&ex, 0, sizeof(ex));
	memcpy(&ex, attr, sizeof(*attr));
	ex.comp_mask = IBV_SRQ_INIT_ATTR_TYPE | IBV_SRQ_INIT_ATTR_PD;
	ex.srq_type = IBV_SRQT_BASIC;
	ex.pd = pd;
	ret = rdma_create_srq_ex(id, &ex);
	memcpy(attr, &ex, sizeof(*attr));
	return ret;
}

CM_API void rdma_destroy_srq(struct rdma_cm_id *id)
{
	if (!id)
		return;
	if (id->srq)
		ibv_destroy_srq(id->srq);
	id->srq = NULL;
}

/* ---- endpoints (synchronous API) ------------------------------------------------------------ */

CM_API int rdma_create_ep(struct rdma_cm_id **id, struct rdma_addrinfo *res, struct ibv_pd *pd,
			  struct ibv_qp_init_attr *qp_init_attr)
{
	struct rdma_cm_id *nid;
	enum rdma_port_space ps;
	int ret;

	if (!id || !res)
		return cm_seterr(EINVAL);
	ps = res->ai_port_space ? (enum rdma_port_space)res->ai_port_space : RDMA_PS_TCP;
	ret = rdma_create_id(NULL, &nid, NULL, ps);
	if (ret)
		return ret;

	if (res->ai_flags & RAI_PASSIVE) {
		struct cm_id *cid = cm_id(nid);

		if (!res->ai_src_addr) {
			errno = EINVAL;
			goto err;
		}
		ret = rdma_bind_addr(nid, res->ai_src_addr);
		if (ret)
			goto err;
		if (pd)
			nid->pd = pd;
		if (qp_init_attr) {
			cid->qp_init_attr = malloc(sizeof(*cid->qp_init_attr));
			if (!cid->qp_init_attr) {
				errno = ENOMEM;
				goto err;
			}
			*cid->qp_init_attr = *qp_init_attr;
			if (res->ai_qp_type)
				cid->qp_init_attr->qp_type = (enum ibv_qp_type)res->ai_qp_type;
		}
		*id = nid;
		return 0;
	}

	ret = rdma_resolve_addr(nid, res->ai_src_len ? res->ai_src_addr : NULL, res->ai_dst_addr,
				2000);
	if (ret)
		goto err;
	ret = rdma_resolve_route(nid, 2000);
	if (ret)
		goto err;
	if (qp_init_attr) {
		if (res->ai_qp_type)
			qp_init_attr->qp_type = (enum ibv_qp_type)res->ai_qp_type;
		ret = rdma_create_qp(nid, pd, qp_init_attr);
		if (ret)
			goto err;
	}
	*id = nid;
	return 0;

err:
	ret = errno;
	rdma_destroy_ep(nid);
	return cm_seterr(ret);
}

CM_API void rdma_destroy_ep(struct rdma_cm_id *id)
{
	if (!id)
		return;
	if (id->qp)
		rdma_destroy_qp(id);
	if (id->srq)
		rdma_destroy_srq(id);
	rdma_destroy_id(id); /* frees the stored qp_init_attr too */
}

CM_API int rdma_get_request(struct rdma_cm_id *listen, struct rdma_cm_id **id)
{
	struct cm_id *lid = cm_id(listen);
	struct rdma_cm_event *event;
	int ret;

	if (!listen || !id || !lid->sync)
		return cm_seterr(EINVAL);
	if (listen->event) {
		rdma_ack_cm_event(listen->event);
		listen->event = NULL;
	}
	ret = rdma_get_cm_event(listen->channel, &event);
	if (ret)
		return ret;
	if (event->status) {
		ret = cm_seterr(event->status < 0 ? -event->status : event->status);
		goto err;
	}
	if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
		ret = cm_seterr(EINVAL);
		goto err;
	}
	if (lid->qp_init_attr) {
		struct ibv_qp_init_attr attr = *lid->qp_init_attr;

		ret = rdma_create_qp(event->id, listen->pd, &attr);
		if (ret)
			goto err;
	}
	*id = event->id;
	(*id)->event = event;
	return 0;
err:
	listen->event = event;
	return ret;
}
