/* SPDX-License-Identifier: MIT */
/*
 * The extended verbs newer programs use, reached through struct verbs_context (device.c puts
 * create_cq_ex and create_qp_ex there; the header's inline ibv_create_cq_ex / ibv_create_qp_ex
 * find them with verbs_get_ctx_op):
 *
 *  - ibv_create_cq_ex: a CQ polled one completion at a time with ibv_start_poll / next_poll /
 *    end_poll and read through the ibv_wc_read_* accessors (function pointers of the
 *    ibv_cq_ex). It stays an ordinary CQ for ibv_poll_cq, channels and ibv_destroy_cq.
 *  - ibv_create_qp_ex with IBV_QP_INIT_ATTR_SEND_OPS_FLAGS: the ibv_wr_* API. ibv_wr_start
 *    opens a batch (under a per-QP lock, as providers hold their SQ lock), each ibv_wr_<op>
 *    adds a work request taking wr_id / wr_flags from the ibv_qp_ex, the ibv_wr_set_* calls
 *    give it data, ibv_wr_complete posts the batch to the engine in one call and ibv_wr_abort
 *    drops it. The first mistake made while building is remembered and returned by
 *    ibv_wr_complete, which then posts nothing; nor does it post any when the engine refuses
 *    one of them (eng_post_send_all checks them all, and the room, first).
 *
 * The batch's storage (work requests, SGEs, inline bytes) is allocated once at QP creation for
 * max_send_wr requests: nothing is allocated per message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vrb.h"

/* ---- extended CQs ---------------------------------------------------------------------- */

static int vrb_cqx_start_poll(struct ibv_cq_ex *ibcq, struct ibv_poll_cq_attr *attr)
{
	struct vrb_cq *cq = vrb_cqx(ibcq);
	struct vrb_cq_poll *x = cq->ex;

	if (attr && attr->comp_mask)
		return EINVAL;
	if (!x->single_threaded)
		pthread_mutex_lock(&x->lock);
	if (eng_cq_poll(cq->ecq, 1, &x->cur) != 1) {
		/* Nothing to poll: the poll is over (end_poll must not be called). */
		if (!x->single_threaded)
			pthread_mutex_unlock(&x->lock);
		return ENOENT;
	}
	ibcq->wr_id = x->cur.wr_id;
	ibcq->status = (enum ibv_wc_status)x->cur.status;
	return 0;
}

static int vrb_cqx_next_poll(struct ibv_cq_ex *ibcq)
{
	struct vrb_cq *cq = vrb_cqx(ibcq);
	struct vrb_cq_poll *x = cq->ex;

	if (eng_cq_poll(cq->ecq, 1, &x->cur) != 1)
		return ENOENT;
	ibcq->wr_id = x->cur.wr_id;
	ibcq->status = (enum ibv_wc_status)x->cur.status;
	return 0;
}

static void vrb_cqx_end_poll(struct ibv_cq_ex *ibcq)
{
	struct vrb_cq_poll *x = vrb_cqx(ibcq)->ex;

	if (!x->single_threaded)
		pthread_mutex_unlock(&x->lock);
}

static enum ibv_wc_opcode vrb_cqx_read_opcode(struct ibv_cq_ex *ibcq)
{
	return (enum ibv_wc_opcode)vrb_cqx(ibcq)->ex->cur.opcode;
}

static uint32_t vrb_cqx_read_vendor_err(struct ibv_cq_ex *ibcq)
{
	(void)ibcq;
	return 0;
}

static uint32_t vrb_cqx_read_byte_len(struct ibv_cq_ex *ibcq)
{
	return vrb_cqx(ibcq)->ex->cur.byte_len;
}

/* Immediate data (network order) or, with IBV_WC_WITH_INV, the invalidated rkey. */
static __be32 vrb_cqx_read_imm_data(struct ibv_cq_ex *ibcq)
{
	return (__be32)vrb_cqx(ibcq)->ex->cur.imm_or_inv;
}

static uint32_t vrb_cqx_read_qp_num(struct ibv_cq_ex *ibcq)
{
	return vrb_cqx(ibcq)->ex->cur.qp_num;
}

/* As ibv_poll_cq's src_qp: meaningful for UD only, 0 on a connected iWARP QP. */
static uint32_t vrb_cqx_read_src_qp(struct ibv_cq_ex *ibcq)
{
	(void)ibcq;
	return 0;
}

static unsigned int vrb_cqx_read_wc_flags(struct ibv_cq_ex *ibcq)
{
	return vrb_cqx(ibcq)->ex->cur.flags;
}

/* No LIDs or service levels on iWARP: 0, as ibv_poll_cq reports. */
static uint32_t vrb_cqx_read_slid(struct ibv_cq_ex *ibcq)
{
	(void)ibcq;
	return 0;
}

static uint8_t vrb_cqx_read_u8_zero(struct ibv_cq_ex *ibcq)
{
	(void)ibcq;
	return 0;
}

/* Fields a completion can carry here: the standard ones (no timestamps, VLANs, tags). */
#define VRB_CQX_WC_FLAGS ((uint64_t)IBV_WC_STANDARD_FLAGS)

struct ibv_cq_ex *vrb_create_cq_ex_op(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr)
{
	struct vrb_cq_poll *x;
	struct ibv_cq *ibcq;
	struct vrb_cq *cq;
	int err;

	if (!context || !attr) {
		errno = EINVAL;
		return NULL;
	}
	if (attr->comp_mask & ~(uint32_t)(IBV_CQ_INIT_ATTR_MASK_FLAGS | IBV_CQ_INIT_ATTR_MASK_PD)) {
		errno = EINVAL;
		return NULL;
	}
	/* There are no parent domains to give (ibv_alloc_parent_domain is not offered). */
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_PD) && attr->parent_domain) {
		errno = EINVAL;
		return NULL;
	}
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
	    (attr->flags &
	     ~(uint32_t)(IBV_CREATE_CQ_ATTR_SINGLE_THREADED | IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN))) {
		errno = EINVAL;
		return NULL;
	}
	/* An overrun is reported (CQ error event), never ignored. */
	if (((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
	     (attr->flags & IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN)) ||
	    (attr->wc_flags & ~VRB_CQX_WC_FLAGS)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	if (attr->cqe > (uint32_t)INT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		errno = ENOMEM;
		return NULL;
	}
	ibcq = ibv_create_cq(context, (int)attr->cqe, attr->cq_context, attr->channel,
			     (int)attr->comp_vector);
	if (!ibcq) {
		err = errno;
		free(x);
		errno = err;
		return NULL;
	}
	cq = vrb_cq(ibcq);
	x->single_threaded = (attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
			     (attr->flags & IBV_CREATE_CQ_ATTR_SINGLE_THREADED);
	pthread_mutex_init(&x->lock, NULL);
	cq->ex = x;
	cq->cqx.comp_mask = 0;
	cq->cqx.start_poll = vrb_cqx_start_poll;
	cq->cqx.next_poll = vrb_cqx_next_poll;
	cq->cqx.end_poll = vrb_cqx_end_poll;
	cq->cqx.read_opcode = vrb_cqx_read_opcode;
	cq->cqx.read_vendor_err = vrb_cqx_read_vendor_err;
	cq->cqx.read_byte_len = vrb_cqx_read_byte_len;
	cq->cqx.read_imm_data = vrb_cqx_read_imm_data;
	cq->cqx.read_qp_num = vrb_cqx_read_qp_num;
	cq->cqx.read_src_qp = vrb_cqx_read_src_qp;
	cq->cqx.read_wc_flags = vrb_cqx_read_wc_flags;
	cq->cqx.read_slid = vrb_cqx_read_slid;
	cq->cqx.read_sl = vrb_cqx_read_u8_zero;
	cq->cqx.read_dlid_path_bits = vrb_cqx_read_u8_zero;
	return &cq->cqx;
}

void vrb_cq_ex_free(struct vrb_cq *cq)
{
	if (!cq->ex)
		return;
	pthread_mutex_destroy(&cq->ex->lock);
	free(cq->ex);
	cq->ex = NULL;
}

/* ---- extended QPs: the ibv_wr_* API ---------------------------------------------------- */

struct vrb_wr_batch {
	pthread_mutex_t lock;   /* ibv_wr_start .. ibv_wr_complete / ibv_wr_abort */
	uint32_t cap;           /* work requests per batch: the SQ's size */
	uint32_t n;             /* built so far */
	uint32_t max_sge;       /* SGEs per work request */
	uint32_t max_inline;    /* inline bytes per work request */
	int err;                /* the first mistake while building (0: none) */
	struct eng_send_wr *wr; /* cap */
	struct eng_sge *sge;    /* cap * max_sge */
	uint8_t *inl;           /* cap * max_inline */
};

/* Starts the next work request; NULL (and the batch's error set) if it does not fit. */
static struct eng_send_wr *wrb_add(struct ibv_qp_ex *qpx, enum eng_wr_opcode op)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;
	struct eng_send_wr *e;

	if (b->n == b->cap) {
		if (!b->err)
			b->err = ENOMEM; /* more than the send queue holds */
		return NULL;
	}
	e = &b->wr[b->n];
	memset(e, 0, sizeof(*e));
	e->wr_id = qpx->wr_id;
	e->opcode = op;
	e->flags = qpx->wr_flags;
	e->sg_list = &b->sge[(size_t)b->n * b->max_sge];
	b->n++;
	return e;
}

/* The work request the ibv_wr_set_* calls apply to; NULL (error set) if there is none. */
static struct eng_send_wr *wrb_cur(struct vrb_wr_batch *b)
{
	if (!b->n || b->wr[b->n - 1].opcode == ENG_WR_BIND_MW ||
	    b->wr[b->n - 1].opcode == ENG_WR_LOCAL_INV) {
		if (!b->err)
			b->err = EINVAL;
		return NULL;
	}
	return &b->wr[b->n - 1];
}

static void vrb_wr_rdma_write(struct ibv_qp_ex *qpx, uint32_t rkey, uint64_t remote_addr)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_RDMA_WRITE);

	if (e) {
		e->rkey = rkey;
		e->remote_addr = remote_addr;
	}
}

static void vrb_wr_rdma_write_imm(struct ibv_qp_ex *qpx, uint32_t rkey, uint64_t remote_addr,
				  __be32 imm)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_RDMA_WRITE_WITH_IMM);

	if (e) {
		e->rkey = rkey;
		e->remote_addr = remote_addr;
		e->imm_or_inv = (uint32_t)imm;
	}
}

static void vrb_wr_rdma_read(struct ibv_qp_ex *qpx, uint32_t rkey, uint64_t remote_addr)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_RDMA_READ);

	if (e) {
		e->rkey = rkey;
		e->remote_addr = remote_addr;
	}
}

static void vrb_wr_send(struct ibv_qp_ex *qpx)
{
	wrb_add(qpx, ENG_WR_SEND);
}

static void vrb_wr_send_imm(struct ibv_qp_ex *qpx, __be32 imm)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_SEND_WITH_IMM);

	if (e)
		e->imm_or_inv = (uint32_t)imm;
}

static void vrb_wr_send_inv(struct ibv_qp_ex *qpx, uint32_t invalidate_rkey)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_SEND_WITH_INV);

	if (e)
		e->imm_or_inv = invalidate_rkey;
}

static void vrb_wr_atomic_cmp_swp(struct ibv_qp_ex *qpx, uint32_t rkey, uint64_t remote_addr,
				  uint64_t compare, uint64_t swap)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_ATOMIC_CMP_AND_SWP);

	if (e) {
		e->rkey = rkey;
		e->remote_addr = remote_addr;
		e->compare_add = compare;
		e->swap = swap;
	}
}

static void vrb_wr_atomic_fetch_add(struct ibv_qp_ex *qpx, uint32_t rkey, uint64_t remote_addr,
				    uint64_t add)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_ATOMIC_FETCH_AND_ADD);

	if (e) {
		e->rkey = rkey;
		e->remote_addr = remote_addr;
		e->compare_add = add;
	}
}

static void vrb_wr_local_inv(struct ibv_qp_ex *qpx, uint32_t invalidate_rkey)
{
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_LOCAL_INV);

	if (e) {
		e->imm_or_inv = invalidate_rkey;
		e->sg_list = NULL;
	}
}

static void vrb_wr_bind_mw(struct ibv_qp_ex *qpx, struct ibv_mw *mw, uint32_t rkey,
			   const struct ibv_mw_bind_info *bind_info)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;
	struct eng_send_wr *e = wrb_add(qpx, ENG_WR_BIND_MW);
	struct eng_sge *sge;
	int err;

	if (!e)
		return;
	/* The range goes into this request's first SGE slot (max_sge >= 1). */
	sge = (struct eng_sge *)e->sg_list;
	err = vrb_bind_wr(&qpx->qp_base, mw, rkey, bind_info, e, sge);
	if (!err && mw && mw->pd != qpx->qp_base.pd)
		err = EINVAL;
	if (err && !b->err)
		b->err = err;
}

static void vrb_wr_set_sge(struct ibv_qp_ex *qpx, uint32_t lkey, uint64_t addr, uint32_t length)
{
	struct eng_send_wr *e = wrb_cur(vrb_qpx(qpx)->wrb);
	struct eng_sge *s;

	if (!e)
		return;
	s = (struct eng_sge *)e->sg_list;
	s->addr = addr;
	s->length = length;
	s->lkey = lkey;
	e->num_sge = 1;
	e->flags &= ~(unsigned int)ENG_SEND_INLINE;
}

static void vrb_wr_set_sge_list(struct ibv_qp_ex *qpx, size_t num_sge,
				const struct ibv_sge *sg_list)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;
	struct eng_send_wr *e = wrb_cur(b);

	if (!e)
		return;
	if (num_sge > b->max_sge || (num_sge && !sg_list)) {
		if (!b->err)
			b->err = EINVAL;
		return;
	}
	if (num_sge)
		memcpy((struct eng_sge *)e->sg_list, sg_list, num_sge * sizeof(*sg_list));
	e->num_sge = (int)num_sge;
	e->flags &= ~(unsigned int)ENG_SEND_INLINE;
}

/* Inline data is copied now: the caller may reuse its buffers when the call returns. */
static void vrb_wr_set_inline_data_list(struct ibv_qp_ex *qpx, size_t num_buf,
					const struct ibv_data_buf *buf_list)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;
	struct eng_send_wr *e = wrb_cur(b);
	size_t total = 0;
	struct eng_sge *s;
	uint8_t *dst;

	if (!e)
		return;
	if (num_buf && !buf_list) {
		if (!b->err)
			b->err = EINVAL;
		return;
	}
	for (size_t i = 0; i < num_buf; i++) {
		total += buf_list[i].length;
		if (buf_list[i].length > b->max_inline || total > b->max_inline) {
			if (!b->err)
				b->err = EINVAL; /* more than max_inline_data */
			return;
		}
	}
	dst = b->inl + (size_t)(e - b->wr) * b->max_inline;
	total = 0;
	for (size_t i = 0; i < num_buf; i++) {
		if (buf_list[i].length)
			memcpy(dst + total, buf_list[i].addr, buf_list[i].length);
		total += buf_list[i].length;
	}
	s = (struct eng_sge *)e->sg_list;
	s->addr = (uintptr_t)dst;
	s->length = (uint32_t)total;
	s->lkey = 0;
	e->num_sge = 1;
	e->flags |= ENG_SEND_INLINE;
}

static void vrb_wr_set_inline_data(struct ibv_qp_ex *qpx, void *addr, size_t length)
{
	struct ibv_data_buf buf = {.addr = addr, .length = length};

	vrb_wr_set_inline_data_list(qpx, 1, &buf);
}

static void vrb_wr_start(struct ibv_qp_ex *qpx)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;

	pthread_mutex_lock(&b->lock);
	b->n = 0;
	b->err = 0;
}

static int vrb_wr_complete(struct ibv_qp_ex *qpx)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;
	int bad = 0, err = b->err;

	/* Inline data only where there is a payload to send: checked before anything is posted. */
	for (uint32_t i = 0; i < b->n && !err; i++)
		if ((b->wr[i].flags & ENG_SEND_INLINE) && b->wr[i].opcode != ENG_WR_SEND &&
		    b->wr[i].opcode != ENG_WR_SEND_WITH_IMM &&
		    b->wr[i].opcode != ENG_WR_SEND_WITH_INV &&
		    b->wr[i].opcode != ENG_WR_RDMA_WRITE &&
		    b->wr[i].opcode != ENG_WR_RDMA_WRITE_WITH_IMM)
			err = EINVAL;
	if (!err && b->n)
		err = eng_post_send_all(vrb_qpx(qpx)->eqp, b->wr, (int)b->n, &bad);
	b->n = 0;
	b->err = 0;
	pthread_mutex_unlock(&b->lock);
	return err;
}

static void vrb_wr_abort(struct ibv_qp_ex *qpx)
{
	struct vrb_wr_batch *b = vrb_qpx(qpx)->wrb;

	b->n = 0;
	b->err = 0;
	pthread_mutex_unlock(&b->lock);
}

/* The ibv_wr_* operations there is engine code for (TSO and atomic write: none). */
#define VRB_SEND_OPS                                                                               \
	((uint64_t)(IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |               \
		    IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM |                           \
		    IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |                 \
		    IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD | IBV_QP_EX_WITH_LOCAL_INV |               \
		    IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_SEND_WITH_INV))

static struct vrb_wr_batch *wrb_new(const struct ibv_qp_cap *cap)
{
	struct vrb_wr_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->cap = cap->max_send_wr ? cap->max_send_wr : 1;
	b->max_sge = cap->max_send_sge ? cap->max_send_sge : 1;
	b->max_inline = cap->max_inline_data;
	b->wr = calloc(b->cap, sizeof(*b->wr));
	b->sge = calloc((size_t)b->cap * b->max_sge, sizeof(*b->sge));
	b->inl = b->max_inline ? malloc((size_t)b->cap * b->max_inline) : NULL;
	if (!b->wr || !b->sge || (b->max_inline && !b->inl)) {
		free(b->wr);
		free(b->sge);
		free(b->inl);
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	return b;
}

void vrb_qp_ex_free(struct vrb_qp *qp)
{
	struct vrb_wr_batch *b = qp->wrb;

	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b->wr);
	free(b->sge);
	free(b->inl);
	free(b);
	qp->wrb = NULL;
}

struct ibv_qp *vrb_create_qp_ex_op(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr)
{
	struct ibv_qp_ex *qpx;
	struct vrb_wr_batch *b;
	struct ibv_qp *ibqp;
	uint64_t ops;

	if (!context || !attr) {
		errno = EINVAL;
		return NULL;
	}
	if (attr->comp_mask &
	    ~(uint32_t)(IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_XRCD |
			IBV_QP_INIT_ATTR_CREATE_FLAGS | IBV_QP_INIT_ATTR_MAX_TSO_HEADER |
			IBV_QP_INIT_ATTR_IND_TABLE | IBV_QP_INIT_ATTR_RX_HASH |
			IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)) {
		errno = EINVAL;
		return NULL;
	}
	if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd || attr->pd->context != context) {
		errno = EINVAL;
		return NULL;
	}
	/* XRC, TSO, RSS and creation flags (IB / Ethernet NIC features) have no iWARP meaning. */
	if ((attr->comp_mask & (IBV_QP_INIT_ATTR_XRCD | IBV_QP_INIT_ATTR_MAX_TSO_HEADER |
				IBV_QP_INIT_ATTR_IND_TABLE | IBV_QP_INIT_ATTR_RX_HASH)) ||
	    ((attr->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) && attr->create_flags)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	ops = attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS ? attr->send_ops_flags : 0;
	if (ops & ~VRB_SEND_OPS) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	ibqp = ibv_create_qp(attr->pd, (struct ibv_qp_init_attr *)attr);
	if (!ibqp || !(attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS))
		return ibqp;

	b = wrb_new(&attr->cap); /* the granted sizes */
	if (!b) {
		ibv_destroy_qp(ibqp);
		errno = ENOMEM;
		return NULL;
	}
	qpx = &vrb_qp(ibqp)->qpx;
	qpx->comp_mask = 0;
	/* Only the operations asked for, as providers do. */
	if (ops & IBV_QP_EX_WITH_RDMA_WRITE)
		qpx->wr_rdma_write = vrb_wr_rdma_write;
	if (ops & IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM)
		qpx->wr_rdma_write_imm = vrb_wr_rdma_write_imm;
	if (ops & IBV_QP_EX_WITH_SEND)
		qpx->wr_send = vrb_wr_send;
	if (ops & IBV_QP_EX_WITH_SEND_WITH_IMM)
		qpx->wr_send_imm = vrb_wr_send_imm;
	if (ops & IBV_QP_EX_WITH_RDMA_READ)
		qpx->wr_rdma_read = vrb_wr_rdma_read;
	if (ops & IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP)
		qpx->wr_atomic_cmp_swp = vrb_wr_atomic_cmp_swp;
	if (ops & IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD)
		qpx->wr_atomic_fetch_add = vrb_wr_atomic_fetch_add;
	if (ops & IBV_QP_EX_WITH_LOCAL_INV)
		qpx->wr_local_inv = vrb_wr_local_inv;
	if (ops & IBV_QP_EX_WITH_BIND_MW)
		qpx->wr_bind_mw = vrb_wr_bind_mw;
	if (ops & IBV_QP_EX_WITH_SEND_WITH_INV)
		qpx->wr_send_inv = vrb_wr_send_inv;
	qpx->wr_set_sge = vrb_wr_set_sge;
	qpx->wr_set_sge_list = vrb_wr_set_sge_list;
	qpx->wr_set_inline_data = vrb_wr_set_inline_data;
	qpx->wr_set_inline_data_list = vrb_wr_set_inline_data_list;
	qpx->wr_start = vrb_wr_start;
	qpx->wr_complete = vrb_wr_complete;
	qpx->wr_abort = vrb_wr_abort;
	vrb_qp(ibqp)->wrb = b;
	return ibqp;
}
