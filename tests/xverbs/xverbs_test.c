/* SPDX-License-Identifier: MIT */
/*
 * Verbs beyond kernel siw, through the public API (our libibverbs.so.1 and librdmacm.so.1)
 * between two endpoints connected over loopback with rdma_cm: the extended API, multi-SGE
 * RDMA READ, many send SGEs and large inline data, memory windows. Every wait is bounded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_util.h"
#include "test.h"

#define EV_MS   5000 /* CM events */
#define WAIT_MS 5000 /* completions, state changes */

#define ALL_SEND_OPS                                                                               \
	(IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | IBV_QP_EX_WITH_SEND |    \
	 IBV_QP_EX_WITH_SEND_WITH_IMM | IBV_QP_EX_WITH_RDMA_READ |                                 \
	 IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD |                 \
	 IBV_QP_EX_WITH_LOCAL_INV | IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_SEND_WITH_INV)

struct ep {
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_cq_ex *cqx; /* ex endpoints */
	struct ibv_qp *qp;
	struct ibv_qp_ex *qpx; /* ex endpoints */
	uint32_t max_inline;   /* granted */
	bool shared_pd;        /* pd belongs to another endpoint */
};

struct pair {
	struct rdma_event_channel *sch, *cch;
	struct rdma_cm_id *listen;
	struct ep c, s; /* client, server */
};

struct opts {
	bool ex;
	uint32_t send_sge, recv_sge, inl;
	uint8_t depth; /* ORD and IRD of both sides */
};

static const struct opts def_opts = {.send_sge = 4, .recv_sge = 4, .inl = 64, .depth = 8};

static int ep_setup_pd(struct ep *e, struct rdma_cm_id *id, const struct opts *o, struct ibv_pd *pd)
{
	struct ibv_qp_init_attr_ex a;

	memset(e, 0, sizeof(*e));
	e->id = id;
	e->shared_pd = pd != NULL;
	e->pd = pd ? pd : ibv_alloc_pd(id->verbs);
	if (!e->pd)
		return -1;
	if (o->ex) {
		struct ibv_cq_init_attr_ex ca = {.cqe = 128, .wc_flags = IBV_WC_STANDARD_FLAGS};

		e->cqx = ibv_create_cq_ex(id->verbs, &ca);
		if (!e->cqx)
			return -1;
		e->cq = ibv_cq_ex_to_cq(e->cqx);
	} else {
		e->cq = ibv_create_cq(id->verbs, 128, NULL, NULL, 0);
		if (!e->cq)
			return -1;
	}
	memset(&a, 0, sizeof(a));
	a.send_cq = e->cq;
	a.recv_cq = e->cq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = 32;
	a.cap.max_recv_wr = 32;
	a.cap.max_send_sge = o->send_sge;
	a.cap.max_recv_sge = o->recv_sge;
	a.cap.max_inline_data = o->inl;
	a.comp_mask = IBV_QP_INIT_ATTR_PD;
	a.pd = e->pd;
	if (o->ex) {
		a.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
		a.send_ops_flags = ALL_SEND_OPS;
	}
	if (rdma_create_qp_ex(id, &a)) {
		fprintf(stderr, "  rdma_create_qp_ex: %s\n", strerror(errno));
		return -1;
	}
	e->qp = id->qp;
	e->max_inline = a.cap.max_inline_data;
	if (o->ex) {
		e->qpx = ibv_qp_to_qp_ex(e->qp);
		if (!e->qpx)
			return -1;
	}
	return 0;
}

static int ep_setup(struct ep *e, struct rdma_cm_id *id, const struct opts *o)
{
	return ep_setup_pd(e, id, o, NULL);
}

static void ep_free(struct ep *e)
{
	if (e->id && e->id->qp)
		rdma_destroy_qp(e->id);
	if (e->cq)
		CHECK_INT(ibv_destroy_cq(e->cq), 0);
	if (e->pd && !e->shared_pd)
		CHECK_INT(ibv_dealloc_pd(e->pd), 0);
	if (e->id)
		rdma_destroy_id(e->id);
	memset(e, 0, sizeof(*e));
}

static int pair_open(struct pair *p, const struct opts *o)
{
	struct rdma_conn_param param = {.initiator_depth = o->depth,
					.responder_resources = o->depth};
	struct sockaddr_storage dst;
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	uint16_t port;

	memset(p, 0, sizeof(*p));
	p->sch = rdma_create_event_channel();
	p->cch = rdma_create_event_channel();
	if (!p->sch || !p->cch)
		return -1;
	p->listen = cmt_listen(p->sch, "127.0.0.1", &port);
	if (!p->listen)
		return -1;
	if (cmt_addr("127.0.0.1", port, &dst) || rdma_create_id(p->cch, &id, NULL, RDMA_PS_TCP))
		return -1;
	p->c.id = id;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) ||
	    !cmt_expect_ack(p->cch, RDMA_CM_EVENT_ADDR_RESOLVED, EV_MS) ||
	    rdma_resolve_route(id, 2000) ||
	    !cmt_expect_ack(p->cch, RDMA_CM_EVENT_ROUTE_RESOLVED, EV_MS))
		return -1;
	if (ep_setup(&p->c, id, o) || rdma_connect(id, &param))
		return -1;
	ev = cmt_expect(p->sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	if (!ev)
		return -1;
	id = ev->id;
	if (ep_setup(&p->s, id, o)) {
		rdma_ack_cm_event(ev);
		return -1;
	}
	rdma_ack_cm_event(ev);
	if (rdma_accept(id, &param))
		return -1;
	if (!cmt_expect_ack(p->cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS) ||
	    !cmt_expect_ack(p->sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS))
		return -1;
	return 0;
}

/* Waits (bounded) for a DISCONNECTED event on ch, acking whatever else comes. */
static void drain_disconnect(struct rdma_event_channel *ch)
{
	uint64_t end = cmt_now_ms() + 3000;
	struct pollfd pf = {.fd = ch->fd, .events = POLLIN};

	while (cmt_now_ms() < end) {
		struct rdma_cm_event *e;
		enum rdma_cm_event_type t;

		if (poll(&pf, 1, 100) != 1)
			continue;
		if (rdma_get_cm_event(ch, &e))
			return;
		t = e->event;
		rdma_ack_cm_event(e);
		if (t == RDMA_CM_EVENT_DISCONNECTED)
			return;
	}
}

static void pair_close(struct pair *p)
{
	if (p->c.id && p->s.id) {
		rdma_disconnect(p->c.id);
		drain_disconnect(p->cch);
		drain_disconnect(p->sch);
	}
	ep_free(&p->c);
	ep_free(&p->s);
	if (p->listen)
		rdma_destroy_id(p->listen);
	if (p->sch)
		rdma_destroy_event_channel(p->sch);
	if (p->cch)
		rdma_destroy_event_channel(p->cch);
	memset(p, 0, sizeof(*p));
}

/*
 * A second connection to p's listener: client c2 on channel p->cch, server s2 on p->sch with the
 * PD of p's server (so windows and regions of that PD are reachable through both).
 */
static int second_conn(struct pair *p, const struct opts *o, struct ep *c2, struct ep *s2)
{
	struct rdma_conn_param param = {.initiator_depth = o->depth,
					.responder_resources = o->depth};
	struct sockaddr_storage dst;
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;

	memset(c2, 0, sizeof(*c2));
	memset(s2, 0, sizeof(*s2));
	if (cmt_addr("127.0.0.1", ntohs(rdma_get_src_port(p->listen)), &dst) ||
	    rdma_create_id(p->cch, &id, NULL, RDMA_PS_TCP))
		return -1;
	c2->id = id;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) ||
	    !cmt_expect_ack(p->cch, RDMA_CM_EVENT_ADDR_RESOLVED, EV_MS) ||
	    rdma_resolve_route(id, 2000) ||
	    !cmt_expect_ack(p->cch, RDMA_CM_EVENT_ROUTE_RESOLVED, EV_MS) || ep_setup(c2, id, o) ||
	    rdma_connect(id, &param))
		return -1;
	ev = cmt_expect(p->sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	if (!ev)
		return -1;
	id = ev->id;
	if (ep_setup_pd(s2, id, o, p->s.pd)) {
		rdma_ack_cm_event(ev);
		return -1;
	}
	rdma_ack_cm_event(ev);
	if (rdma_accept(id, &param) || !cmt_expect_ack(p->cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS) ||
	    !cmt_expect_ack(p->sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS))
		return -1;
	return 0;
}

/* One completion from a CQ within WAIT_MS; returns whether one came. */
static bool poll_wc(struct ibv_cq *cq, struct ibv_wc *wc)
{
	uint64_t end = cmt_now_ms() + WAIT_MS;

	do {
		int n = ibv_poll_cq(cq, 1, wc);

		if (n == 1)
			return true;
		if (n < 0)
			return false;
		usleep(100);
	} while (cmt_now_ms() < end);
	fprintf(stderr, "  no completion within %d ms\n", WAIT_MS);
	return false;
}

/* No completion arrives within ms. */
static bool no_wc(struct ibv_cq *cq, int ms)
{
	uint64_t end = cmt_now_ms() + (uint64_t)ms;
	struct ibv_wc wc;

	do {
		if (ibv_poll_cq(cq, 1, &wc) != 0)
			return false;
		usleep(1000);
	} while (cmt_now_ms() < end);
	return true;
}

/* A completion read through the extended CQ API. */
struct xwc {
	uint64_t wr_id;
	enum ibv_wc_status status;
	enum ibv_wc_opcode opcode;
	uint32_t byte_len, qp_num, src_qp, slid;
	unsigned int wc_flags;
	uint32_t imm;
	uint8_t sl, dlid_path_bits;
	uint32_t vendor_err;
};

static void xwc_read(struct ibv_cq_ex *cq, struct xwc *w)
{
	w->wr_id = cq->wr_id;
	w->status = cq->status;
	w->opcode = ibv_wc_read_opcode(cq);
	w->byte_len = ibv_wc_read_byte_len(cq);
	w->qp_num = ibv_wc_read_qp_num(cq);
	w->src_qp = ibv_wc_read_src_qp(cq);
	w->wc_flags = ibv_wc_read_wc_flags(cq);
	w->imm = ibv_wc_read_invalidated_rkey(cq);
	w->slid = ibv_wc_read_slid(cq);
	w->sl = ibv_wc_read_sl(cq);
	w->dlid_path_bits = ibv_wc_read_dlid_path_bits(cq);
	w->vendor_err = ibv_wc_read_vendor_err(cq);
}

/* Reads exactly n completions with start_poll / next_poll / end_poll within WAIT_MS. */
static int poll_xwc(struct ibv_cq_ex *cq, struct xwc *out, int n)
{
	uint64_t end = cmt_now_ms() + WAIT_MS;
	struct ibv_poll_cq_attr attr = {.comp_mask = 0};
	int got = 0;

	while (got < n && cmt_now_ms() < end) {
		int r = ibv_start_poll(cq, &attr);

		if (r == ENOENT) {
			usleep(100);
			continue;
		}
		if (r) {
			fprintf(stderr, "  ibv_start_poll: %d\n", r);
			return got;
		}
		do {
			xwc_read(cq, &out[got++]);
			r = got < n ? ibv_next_poll(cq) : ENOENT;
		} while (r == 0);
		CHECK(r == ENOENT);
		ibv_end_poll(cq);
	}
	return got;
}

static enum ibv_qp_state qp_state(struct ibv_qp *qp)
{
	struct ibv_qp_init_attr init;
	struct ibv_qp_attr a;

	if (ibv_query_qp(qp, &a, IBV_QP_STATE, &init))
		return (enum ibv_qp_state) - 1;
	return a.qp_state;
}

static bool wait_qp_err(struct ibv_qp *qp)
{
	uint64_t end = cmt_now_ms() + WAIT_MS;

	do {
		if (qp_state(qp) == IBV_QPS_ERR)
			return true;
		usleep(1000);
	} while (cmt_now_ms() < end);
	return false;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static int post_recv1(struct ep *e, uint64_t wr_id, void *buf, uint32_t len, uint32_t lkey)
{
	struct ibv_sge sge = {.addr = (uintptr_t)buf, .length = len, .lkey = lkey};
	struct ibv_recv_wr wr = {.wr_id = wr_id, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_recv(e->qp, &wr, &bad);
}

/* ---- device attributes and argument checks ------------------------------------------------- */

static void test_xv_device_attrs(void)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_device_attr_ex ex;
	struct ibv_device_attr a;
	struct ibv_query_device_ex_input in = {.comp_mask = 1};
	struct ibv_context *ctx;

	REQUIRE(list && list[0]);
	ctx = ibv_open_device(list[0]);
	ibv_free_device_list(list);
	REQUIRE(ctx);
	memset(&ex, 0xa5, sizeof(ex));
	CHECK_INT(ibv_query_device_ex(ctx, NULL, &ex), 0);
	CHECK_INT(ibv_query_device(ctx, &a), 0);
	CHECK_MEM(&ex.orig_attr, &a, sizeof(a));
	/* What kernel siw stops short of, discoverable. */
	CHECK(ex.orig_attr.max_sge_rd > 1);
	CHECK_INT(ex.orig_attr.max_sge_rd, 32);
	CHECK(ex.orig_attr.max_sge > 6);
	CHECK(ex.orig_attr.max_mw > 0);
	CHECK(ex.orig_attr.device_cap_flags & IBV_DEVICE_MEM_WINDOW);
	CHECK(ex.orig_attr.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B);
	CHECK(ex.orig_attr.device_cap_flags & IBV_DEVICE_MEM_MGT_EXTENSIONS);
	CHECK_UINT(ex.device_cap_flags_ex & 0xffffffffu, ex.orig_attr.device_cap_flags);
	CHECK_INT(ex.phys_port_cnt_ex, 1);
	/* Nothing claimed that is not there: no ODP, timestamps, TSO, RSS, DM. */
	CHECK_INT(ex.odp_caps.general_caps, 0);
	CHECK_INT(ex.completion_timestamp_mask, 0);
	CHECK_INT(ex.hca_core_clock, 0);
	CHECK_INT(ex.tso_caps.max_tso, 0);
	CHECK_INT(ex.rss_caps.max_rwq_indirection_tables, 0);
	CHECK_INT(ex.max_dm_size, 0);
	CHECK_INT(ex.comp_mask, 0);
	CHECK_INT(ibv_query_device_ex(ctx, &in, &ex), EINVAL);
	CHECK_INT(ibv_close_device(ctx), 0);
}

static void test_xv_ex_bad_args(void)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_cq_init_attr_ex ca;
	struct ibv_qp_init_attr_ex qa;
	struct ibv_qp_init_attr ia;
	struct ibv_poll_cq_attr pa = {.comp_mask = 0};
	struct ibv_context *ctx;
	struct ibv_cq_ex *cqx;
	struct ibv_qp *qp;
	struct ibv_pd *pd;

	REQUIRE(list && list[0]);
	ctx = ibv_open_device(list[0]);
	ibv_free_device_list(list);
	REQUIRE(ctx);
	pd = ibv_alloc_pd(ctx);
	REQUIRE(pd);

	/* CQ: unsupported completion fields / flags, unknown mask bits. */
	memset(&ca, 0, sizeof(ca));
	ca.cqe = 16;
	ca.wc_flags = IBV_WC_EX_WITH_COMPLETION_TIMESTAMP;
	errno = 0;
	CHECK(ibv_create_cq_ex(ctx, &ca) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	ca.wc_flags = IBV_WC_STANDARD_FLAGS;
	ca.comp_mask = 1u << 7;
	errno = 0;
	CHECK(ibv_create_cq_ex(ctx, &ca) == NULL);
	CHECK_INT(errno, EINVAL);
	ca.comp_mask = IBV_CQ_INIT_ATTR_MASK_FLAGS;
	ca.flags = IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN;
	errno = 0;
	CHECK(ibv_create_cq_ex(ctx, &ca) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	ca.flags = IBV_CREATE_CQ_ATTR_SINGLE_THREADED;
	ca.cqe = 0;
	errno = 0;
	CHECK(ibv_create_cq_ex(ctx, &ca) == NULL);
	CHECK_INT(errno, EINVAL);
	ca.cqe = 16;
	cqx = ibv_create_cq_ex(ctx, &ca);
	REQUIRE(cqx);
	CHECK(ibv_cq_ex_to_cq(cqx)->cqe >= 16);
	CHECK_INT(ibv_start_poll(cqx, &pa), ENOENT); /* empty: no end_poll */
	{
		struct ibv_wc wc;

		CHECK_INT(ibv_poll_cq(ibv_cq_ex_to_cq(cqx), 1, &wc), 0); /* still an ibv_cq */
	}

	/* QP: no PD, unsupported operations, creation flags, features of other transports. */
	memset(&qa, 0, sizeof(qa));
	qa.send_cq = qa.recv_cq = ibv_cq_ex_to_cq(cqx);
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.comp_mask = IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
	qa.send_ops_flags = IBV_QP_EX_WITH_SEND;
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EINVAL);
	qa.comp_mask |= IBV_QP_INIT_ATTR_PD;
	qa.pd = pd;
	qa.send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_TSO;
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	qa.send_ops_flags = IBV_QP_EX_WITH_ATOMIC_WRITE;
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	qa.send_ops_flags = IBV_QP_EX_WITH_SEND;
	qa.comp_mask |= IBV_QP_INIT_ATTR_CREATE_FLAGS;
	qa.create_flags = IBV_QP_CREATE_SCATTER_FCS;
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	qa.create_flags = 0;
	qa.qp_type = IBV_QPT_UD;
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EOPNOTSUPP);
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_inline_data = 4096; /* over the device's limit */
	errno = 0;
	CHECK(ibv_create_qp_ex(ctx, &qa) == NULL);
	CHECK_INT(errno, EINVAL);
	qa.cap.max_inline_data = 512;
	qp = ibv_create_qp_ex(ctx, &qa);
	REQUIRE(qp);
	CHECK_INT(qa.cap.max_inline_data, 512); /* granted, far beyond kernel siw's 80 */
	CHECK(ibv_qp_to_qp_ex(qp) != NULL);
	CHECK(ibv_qp_to_qp_ex(qp)->wr_send != NULL);
	CHECK(ibv_qp_to_qp_ex(qp)->wr_rdma_write == NULL); /* only what was asked for */
	CHECK_INT(ibv_destroy_qp(qp), 0);

	/* A QP from ibv_create_qp (or without SEND_OPS_FLAGS) has no ibv_wr_* API. */
	memset(&ia, 0, sizeof(ia));
	ia.send_cq = ia.recv_cq = ibv_cq_ex_to_cq(cqx);
	ia.qp_type = IBV_QPT_RC;
	ia.cap.max_send_wr = ia.cap.max_recv_wr = 4;
	ia.cap.max_send_sge = ia.cap.max_recv_sge = 1;
	qp = ibv_create_qp(pd, &ia);
	REQUIRE(qp);
	CHECK(ibv_qp_to_qp_ex(qp) == NULL);
	CHECK_INT(ibv_destroy_qp(qp), 0);
	qa.comp_mask = IBV_QP_INIT_ATTR_PD;
	qp = ibv_create_qp_ex(ctx, &qa);
	REQUIRE(qp);
	CHECK(ibv_qp_to_qp_ex(qp) == NULL);
	CHECK_INT(ibv_destroy_qp(qp), 0);

	CHECK_INT(ibv_destroy_cq(ibv_cq_ex_to_cq(cqx)), 0);
	CHECK_INT(ibv_dealloc_pd(pd), 0);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* ---- the ibv_wr_* API and extended CQ polling ----------------------------------------------- */

static void test_xv_wr_api(void)
{
	struct opts o = def_opts;
	uint8_t *cbuf, *sbuf, inl[400], want[400];
	struct ibv_mr *cmr, *smr;
	struct xwc w[8];
	struct pair p;

	o.ex = true;
	o.inl = 512;
	REQUIRE(pair_open(&p, &o) == 0);
	REQUIRE(p.c.max_inline >= 400);
	cbuf = calloc(1, 65536);
	sbuf = calloc(1, 65536);
	REQUIRE(cbuf && sbuf);
	cmr = ibv_reg_mr(p.c.pd, cbuf, 65536, IBV_ACCESS_LOCAL_WRITE);
	smr = ibv_reg_mr(p.s.pd, sbuf, 65536,
			 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(cmr && smr);
	fill(cbuf, 4096, 1);
	fill(sbuf + 32768, 4096, 99);
	CHECK_INT(post_recv1(&p.s, 501, sbuf, 4096, smr->lkey), 0);
	CHECK_INT(post_recv1(&p.s, 502, sbuf + 4096, 4096, smr->lkey), 0);

	/* One batch: SEND with an SGE, SEND with inline data, WRITE from 3 SGEs, READ into 3. */
	fill(inl, sizeof(inl), 55);
	memcpy(want, inl, sizeof(inl));
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 1;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_send(p.c.qpx);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 1000);
	p.c.qpx->wr_id = 2;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED | IBV_SEND_INLINE;
	ibv_wr_send(p.c.qpx);
	ibv_wr_set_inline_data(p.c.qpx, inl, sizeof(inl));
	memset(inl, 0, sizeof(inl)); /* copied at the call: the buffer is free again */
	p.c.qpx->wr_id = 3;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 16384);
	{
		struct ibv_sge sg[3] = {{(uintptr_t)cbuf + 100, 10, cmr->lkey},
					{(uintptr_t)cbuf + 2000, 1500, cmr->lkey},
					{(uintptr_t)cbuf + 50, 7, cmr->lkey}};

		ibv_wr_set_sge_list(p.c.qpx, 3, sg);
	}
	p.c.qpx->wr_id = 4;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_read(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 32768);
	{
		struct ibv_sge sg[3] = {{(uintptr_t)cbuf + 8192, 100, cmr->lkey},
					{(uintptr_t)cbuf + 12288, 3000, cmr->lkey},
					{(uintptr_t)cbuf + 20000, 996, cmr->lkey}};

		ibv_wr_set_sge_list(p.c.qpx, 3, sg);
	}
	CHECK_INT(ibv_wr_complete(p.c.qpx), 0);

	REQUIRE(poll_xwc(p.c.cqx, w, 4) == 4);
	for (int i = 0; i < 4; i++) {
		static const enum ibv_wc_opcode op[4] = {IBV_WC_SEND, IBV_WC_SEND,
							 IBV_WC_RDMA_WRITE, IBV_WC_RDMA_READ};
		static const uint32_t len[4] = {1000, 400, 1517, 4096};

		CHECK_UINT(w[i].wr_id, (uint64_t)i + 1);
		CHECK_INT(w[i].status, IBV_WC_SUCCESS);
		CHECK_INT(w[i].opcode, op[i]);
		CHECK_UINT(w[i].byte_len, len[i]);
		CHECK_UINT(w[i].qp_num, p.c.qp->qp_num);
		CHECK_INT(w[i].wc_flags, 0);
		CHECK_INT(w[i].src_qp, 0);
		CHECK_INT(w[i].slid, 0);
		CHECK_INT(w[i].sl, 0);
		CHECK_INT(w[i].dlid_path_bits, 0);
		CHECK_INT(w[i].vendor_err, 0);
	}
	REQUIRE(poll_xwc(p.s.cqx, w, 2) == 2);
	CHECK_UINT(w[0].wr_id, 501);
	CHECK_UINT(w[1].wr_id, 502);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(w[i].status, IBV_WC_SUCCESS);
		CHECK_INT(w[i].opcode, IBV_WC_RECV);
		CHECK_UINT(w[i].qp_num, p.s.qp->qp_num);
		CHECK_INT(w[i].wc_flags, 0);
	}
	CHECK_UINT(w[0].byte_len, 1000);
	CHECK_UINT(w[1].byte_len, 400);
	CHECK_MEM(sbuf, cbuf, 1000);
	CHECK_MEM(sbuf + 4096, want, 400);
	/* The WRITE gathered 3 SGEs in order; the READ scattered into 3. */
	CHECK_MEM(sbuf + 16384, cbuf + 100, 10);
	CHECK_MEM(sbuf + 16384 + 10, cbuf + 2000, 1500);
	CHECK_MEM(sbuf + 16384 + 1510, cbuf + 50, 7);
	CHECK_MEM(cbuf + 8192, sbuf + 32768, 100);
	CHECK_MEM(cbuf + 12288, sbuf + 32768 + 100, 3000);
	CHECK_MEM(cbuf + 20000, sbuf + 32768 + 3100, 996);

	/* An unsignaled request gives no completion; a later signaled one does. */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 7;
	p.c.qpx->wr_flags = 0;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 40000);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 64);
	p.c.qpx->wr_id = 8;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 40064);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf + 64, 64);
	/* A READ after them completes when they are in place (ordering on the connection). */
	p.c.qpx->wr_id = 9;
	ibv_wr_rdma_read(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 40000);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf + 60000, 128);
	CHECK_INT(ibv_wr_complete(p.c.qpx), 0);
	REQUIRE(poll_xwc(p.c.cqx, w, 2) == 2);
	CHECK_UINT(w[0].wr_id, 8);
	CHECK_INT(w[0].status, IBV_WC_SUCCESS);
	CHECK_INT(w[0].opcode, IBV_WC_RDMA_WRITE);
	CHECK_UINT(w[1].wr_id, 9);
	CHECK_INT(w[1].status, IBV_WC_SUCCESS);
	CHECK_INT(w[1].opcode, IBV_WC_RDMA_READ);
	CHECK_MEM(sbuf + 40000, cbuf, 128);
	CHECK_MEM(cbuf + 60000, cbuf, 128);

	CHECK_INT(ibv_dereg_mr(cmr), 0);
	CHECK_INT(ibv_dereg_mr(smr), 0);
	pair_close(&p);
	free(cbuf);
	free(sbuf);
}

/* Mistakes while building: ibv_wr_complete reports the first one and posts nothing. */
static void test_xv_wr_errors(void)
{
	struct opts o = def_opts;
	struct ibv_sge sg[8];
	uint8_t *cbuf, *sbuf, big[600];
	struct ibv_mr *cmr, *smr;
	struct ibv_data_buf db[2];
	struct xwc w[2];
	struct pair p;

	o.ex = true;
	o.inl = 256;
	REQUIRE(pair_open(&p, &o) == 0);
	cbuf = calloc(1, 8192);
	sbuf = calloc(1, 8192);
	REQUIRE(cbuf && sbuf);
	cmr = ibv_reg_mr(p.c.pd, cbuf, 8192, IBV_ACCESS_LOCAL_WRITE);
	smr = ibv_reg_mr(p.s.pd, sbuf, 8192,
			 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(cmr && smr);
	fill(cbuf, 8192, 3);
	memset(big, 0x77, sizeof(big));
	for (int i = 0; i < 8; i++)
		sg[i] = (struct ibv_sge){(uintptr_t)cbuf + i * 8, 8, cmr->lkey};

	/* Aborted: nothing happens. */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 1;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 100);
	ibv_wr_abort(p.c.qpx);
	/* More SGEs than max_send_sge (4): EINVAL, the good request before it not posted. */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 2;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 100);
	p.c.qpx->wr_id = 3;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 200);
	ibv_wr_set_sge_list(p.c.qpx, 8, sg);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	/* Inline data beyond max_inline_data (256), also as a list. */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 4;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_inline_data(p.c.qpx, big, 257);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	db[0] = (struct ibv_data_buf){big, 200};
	db[1] = (struct ibv_data_buf){big, 100};
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 5;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_inline_data_list(p.c.qpx, 2, db);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	/* Inline data for a READ (a good WRITE before it is not posted either). */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 6;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 100);
	ibv_wr_rdma_read(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_inline_data(p.c.qpx, big, 16);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	/* Data for no request. */
	ibv_wr_start(p.c.qpx);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 8);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	/* More requests than the send queue holds (32): ENOMEM, none posted. */
	ibv_wr_start(p.c.qpx);
	for (int i = 0; i < 40; i++) {
		p.c.qpx->wr_id = 100 + (uint64_t)i;
		ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
		ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 8);
	}
	CHECK_INT(ibv_wr_complete(p.c.qpx), ENOMEM);
	/*
	 * A mistake only the engine sees (an atomic's result SGE shorter than 8 bytes) after a
	 * good WRITE: EINVAL, and the WRITE is not posted either.
	 */
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 7;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf, 100);
	p.c.qpx->wr_id = 8;
	ibv_wr_atomic_fetch_add(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 64, 1);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf + 4096, 4);
	CHECK_INT(ibv_wr_complete(p.c.qpx), EINVAL);
	CHECK(no_wc(p.c.cq, 200));
	CHECK(all_bytes(sbuf, 8192, 0));

	/* The QP is fine: an inline list within the limit goes through. */
	db[0] = (struct ibv_data_buf){big, 200};
	db[1] = (struct ibv_data_buf){cbuf, 56};
	ibv_wr_start(p.c.qpx);
	p.c.qpx->wr_id = 9;
	p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 1000);
	ibv_wr_set_inline_data_list(p.c.qpx, 2, db);
	p.c.qpx->wr_id = 10; /* completes once the WRITE is in place */
	ibv_wr_rdma_read(p.c.qpx, smr->rkey, (uintptr_t)sbuf + 1000);
	ibv_wr_set_sge(p.c.qpx, cmr->lkey, (uintptr_t)cbuf + 4096, 256);
	CHECK_INT(ibv_wr_complete(p.c.qpx), 0);
	REQUIRE(poll_xwc(p.c.cqx, w, 2) == 2);
	CHECK_UINT(w[0].wr_id, 9);
	CHECK_INT(w[0].status, IBV_WC_SUCCESS);
	CHECK_INT(w[0].opcode, IBV_WC_RDMA_WRITE);
	CHECK_UINT(w[0].byte_len, 256);
	CHECK_UINT(w[1].wr_id, 10);
	CHECK_INT(w[1].status, IBV_WC_SUCCESS);
	CHECK_MEM(cbuf + 4096, sbuf + 1000, 256);
	CHECK(all_bytes(sbuf + 1000, 200, 0x77));
	CHECK_MEM(sbuf + 1200, cbuf, 56);
	CHECK(all_bytes(sbuf, 1000, 0));
	CHECK(all_bytes(sbuf + 1256, 8192 - 1256, 0));

	CHECK_INT(ibv_dereg_mr(cmr), 0);
	CHECK_INT(ibv_dereg_mr(smr), 0);
	pair_close(&p);
	free(cbuf);
	free(sbuf);
}

/* ---- multi-SGE READ, many SGEs, large inline (classic ibv_post_send) ------------------------ */

static void test_xv_read_multi_sge(void)
{
	struct opts o = def_opts;
	enum { NSGE = 32, SRC = 1 << 20 };
	struct ibv_sge sg[NSGE];
	struct ibv_send_wr wr, *bad;
	struct ibv_mr *cmr, *smr;
	uint8_t *cbuf, *sbuf;
	struct ibv_wc wc;
	uint32_t total = 0, off;
	struct pair p;

	o.send_sge = NSGE;
	o.depth = 4; /* fewer READ credits than sink SGEs: the requests wait for them */
	REQUIRE(pair_open(&p, &o) == 0);
	cbuf = calloc(1, 5 * SRC);
	sbuf = malloc(SRC);
	REQUIRE(cbuf && sbuf);
	fill(sbuf, SRC, 17);
	cmr = ibv_reg_mr(p.c.pd, cbuf, 5 * SRC, IBV_ACCESS_LOCAL_WRITE);
	smr = ibv_reg_mr(p.s.pd, sbuf, SRC, IBV_ACCESS_REMOTE_READ);
	REQUIRE(cmr && smr);
	/* Sinks of varied sizes (1 byte .. 64 KiB, one empty) scattered with gaps between them. */
	for (int i = 0; i < NSGE; i++) {
		uint32_t len = i == 5 ? 0 : (uint32_t)(1u << (i % 17));

		sg[i].addr = (uintptr_t)cbuf + (uint64_t)i * 131072 + 3;
		sg[i].length = len;
		sg[i].lkey = cmr->lkey;
		total += len;
	}
	REQUIRE(total <= SRC - 100);
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x5eed;
	wr.opcode = IBV_WR_RDMA_READ;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.sg_list = sg;
	wr.num_sge = NSGE;
	wr.wr.rdma.remote_addr = (uintptr_t)sbuf + 100;
	wr.wr.rdma.rkey = smr->rkey;
	CHECK_INT(ibv_post_send(p.c.qp, &wr, &bad), 0);
	/* A second one behind it, single SGE, completes after it. */
	{
		struct ibv_sge s1 = {(uintptr_t)cbuf + 32 * 131072 + 8, 5000, cmr->lkey};
		struct ibv_send_wr w1 = wr;

		w1.wr_id = 0x5eee;
		w1.sg_list = &s1;
		w1.num_sge = 1;
		w1.wr.rdma.remote_addr = (uintptr_t)sbuf;
		CHECK_INT(ibv_post_send(p.c.qp, &w1, &bad), 0);
	}
	REQUIRE(poll_wc(p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 0x5eed);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RDMA_READ);
	CHECK_UINT(wc.byte_len, total);
	CHECK_UINT(wc.qp_num, p.c.qp->qp_num);
	CHECK_INT(wc.wc_flags, 0);
	REQUIRE(poll_wc(p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 0x5eee);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_UINT(wc.byte_len, 5000);
	off = 100;
	for (int i = 0; i < NSGE; i++) {
		uint8_t *d = (uint8_t *)(uintptr_t)sg[i].addr;

		CHECK_MEM(d, sbuf + off, sg[i].length);
		/* Nothing outside the sinks. */
		CHECK(all_bytes(d - 3, 3, 0));
		CHECK(all_bytes(d + sg[i].length, 16, 0));
		off += sg[i].length;
	}
	CHECK_MEM(cbuf + 32 * 131072 + 8, sbuf, 5000);
	/* Over the device's max_sge_rd: refused at post. */
	{
		struct ibv_sge many[33];

		for (int i = 0; i < 33; i++)
			many[i] = (struct ibv_sge){(uintptr_t)cbuf, 1, cmr->lkey};
		wr.sg_list = many;
		wr.num_sge = 33;
		CHECK_INT(ibv_post_send(p.c.qp, &wr, &bad), EINVAL);
		CHECK(bad == &wr);
	}
	CHECK_INT(ibv_dereg_mr(cmr), 0);
	CHECK_INT(ibv_dereg_mr(smr), 0);
	pair_close(&p);
	free(cbuf);
	free(sbuf);
}

static void test_xv_many_sges_inline(void)
{
	struct opts o = def_opts;
	enum { NSGE = 32 };
	struct ibv_sge sg[NSGE];
	struct ibv_send_wr wr, *bad;
	struct ibv_mr *cmr, *smr;
	uint8_t *cbuf, *sbuf, want[8192];
	struct ibv_wc wc;
	uint32_t total = 0;
	struct pair p;

	o.send_sge = NSGE;
	o.recv_sge = NSGE;
	o.inl = 512;
	REQUIRE(pair_open(&p, &o) == 0);
	REQUIRE(p.c.max_inline == 512);
	cbuf = malloc(65536);
	sbuf = calloc(1, 65536);
	REQUIRE(cbuf && sbuf);
	fill(cbuf, 65536, 9);
	cmr = ibv_reg_mr(p.c.pd, cbuf, 65536, IBV_ACCESS_LOCAL_WRITE);
	smr = ibv_reg_mr(p.s.pd, sbuf, 65536, IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(cmr && smr);

	/* A SEND gathered from 32 SGEs (kernel siw: 6) into a receive of 32 SGEs. */
	for (int i = 0; i < NSGE; i++) {
		sg[i] = (struct ibv_sge){(uintptr_t)cbuf + (uint64_t)i * 2000 + (uint64_t)i,
					 (uint32_t)(i * 7 + 1), cmr->lkey};
		memcpy(want + total, (void *)(uintptr_t)sg[i].addr, sg[i].length);
		total += sg[i].length;
	}
	{
		struct ibv_sge rs[NSGE];
		struct ibv_recv_wr rw = {.wr_id = 77, .sg_list = rs, .num_sge = NSGE}, *rbad;

		for (int i = 0; i < NSGE; i++)
			rs[i] =
			    (struct ibv_sge){(uintptr_t)sbuf + (uint64_t)i * 256, 128, smr->lkey};
		CHECK_INT(ibv_post_recv(p.s.qp, &rw, &rbad), 0);
		CHECK_INT(post_recv1(&p.s, 78, sbuf + 16384, 1024, smr->lkey), 0);
	}
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 1;
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.sg_list = sg;
	wr.num_sge = NSGE;
	CHECK_INT(ibv_post_send(p.c.qp, &wr, &bad), 0);
	/* A 512-byte inline SEND (kernel siw: 80) from 2 SGEs, buffer changed right after. */
	{
		struct ibv_sge is[2] = {{(uintptr_t)cbuf + 40000, 300, 0},
					{(uintptr_t)cbuf + 50000, 212, 0}};
		uint8_t wantin[512];

		memcpy(wantin, cbuf + 40000, 300);
		memcpy(wantin + 300, cbuf + 50000, 212);
		wr.wr_id = 2;
		wr.send_flags = IBV_SEND_SIGNALED | IBV_SEND_INLINE;
		wr.sg_list = is;
		wr.num_sge = 2;
		CHECK_INT(ibv_post_send(p.c.qp, &wr, &bad), 0);
		memset(cbuf + 40000, 0xee, 300);
		REQUIRE(poll_wc(p.c.cq, &wc));
		CHECK_UINT(wc.wr_id, 1);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_UINT(wc.byte_len, total);
		REQUIRE(poll_wc(p.c.cq, &wc));
		CHECK_UINT(wc.wr_id, 2);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_INT(wc.opcode, IBV_WC_SEND);
		CHECK_UINT(wc.byte_len, 512);
		REQUIRE(poll_wc(p.s.cq, &wc));
		CHECK_UINT(wc.wr_id, 77);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_UINT(wc.byte_len, total);
		REQUIRE(poll_wc(p.s.cq, &wc));
		CHECK_UINT(wc.wr_id, 78);
		CHECK_UINT(wc.byte_len, 512);
		CHECK_MEM(sbuf + 16384, wantin, 512);
	}
	{
		uint32_t got = 0;

		for (int i = 0; i < NSGE && got < total; i++) {
			uint32_t n = total - got < 128 ? total - got : 128;

			CHECK_MEM(sbuf + i * 256, want + got, n);
			got += n;
		}
	}
	/* Inline beyond the QP's 512: EINVAL. */
	{
		struct ibv_sge is = {(uintptr_t)cbuf, 513, 0};

		wr.sg_list = &is;
		wr.num_sge = 1;
		CHECK_INT(ibv_post_send(p.c.qp, &wr, &bad), EINVAL);
	}
	CHECK_INT(ibv_dereg_mr(cmr), 0);
	CHECK_INT(ibv_dereg_mr(smr), 0);
	pair_close(&p);
	free(cbuf);
	free(sbuf);
}

/* ---- memory windows ------------------------------------------------------------------------- */

#define MWBUF   65536
#define WIN_AT  4096 /* the window: [WIN_AT, WIN_AT + WIN_LEN) of the server's buffer */
#define WIN_LEN 8192

struct mwt {
	struct pair p;
	uint8_t *cbuf, *sbuf;
	struct ibv_mr *cmr, *smr;
};

/* A pair; the server's buffer is registered with no remote rights, only MW_BIND. */
static int mwt_open(struct mwt *t, bool ex)
{
	struct opts o = def_opts;

	o.ex = ex;
	memset(t, 0, sizeof(*t));
	if (pair_open(&t->p, &o))
		return -1;
	t->cbuf = calloc(1, MWBUF);
	t->sbuf = calloc(1, MWBUF);
	if (!t->cbuf || !t->sbuf)
		return -1;
	fill(t->cbuf, MWBUF, 5);
	memset(t->sbuf, 0x5a, MWBUF); /* guard bytes everywhere */
	t->cmr = ibv_reg_mr(t->p.c.pd, t->cbuf, MWBUF, IBV_ACCESS_LOCAL_WRITE);
	t->smr = ibv_reg_mr(t->p.s.pd, t->sbuf, MWBUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
	return t->cmr && t->smr ? 0 : -1;
}

static void mwt_close(struct mwt *t)
{
	if (t->cmr)
		CHECK_INT(ibv_dereg_mr(t->cmr), 0);
	if (t->smr)
		CHECK_INT(ibv_dereg_mr(t->smr), 0);
	pair_close(&t->p);
	free(t->cbuf);
	free(t->sbuf);
}

static int rdma(struct ep *e, enum ibv_wr_opcode op, uint64_t wr_id, void *local, uint32_t len,
		uint32_t lkey, uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge sge = {(uintptr_t)local, len, lkey};
	struct ibv_send_wr wr, *bad;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.opcode = op;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return ibv_post_send(e->qp, &wr, &bad);
}

/* Binds a type-2 window with IBV_WR_BIND_MW on the server's QP; returns the new rkey or 0. */
static uint32_t bind2(struct mwt *t, struct ibv_mw *mw, uint64_t addr, uint64_t len,
		      unsigned int access)
{
	struct ibv_send_wr wr, *bad;
	struct ibv_wc wc;
	uint32_t rkey = ibv_inc_rkey(mw->rkey);

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0xb1d;
	wr.opcode = IBV_WR_BIND_MW;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = rkey;
	wr.bind_mw.bind_info.mr = t->smr;
	wr.bind_mw.bind_info.addr = addr;
	wr.bind_mw.bind_info.length = len;
	wr.bind_mw.bind_info.mw_access_flags = access;
	if (ibv_post_send(t->p.s.qp, &wr, &bad) || !poll_wc(t->p.s.cq, &wc))
		return 0;
	CHECK_UINT(wc.wr_id, 0xb1d);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_BIND_MW);
	CHECK_UINT(wc.qp_num, t->p.s.qp->qp_num);
	if (wc.status != IBV_WC_SUCCESS)
		return 0;
	mw->rkey = rkey;
	return rkey;
}

/* The client's access through rkey was refused: both QPs in error, guard bytes unchanged. */
static void expect_denied(struct mwt *t)
{
	uint64_t quiet, end;
	struct ibv_wc wc;
	bool err = false;

	CHECK(wait_qp_err(t->p.c.qp));
	CHECK(wait_qp_err(t->p.s.qp));
	quiet = cmt_now_ms() + 300;
	end = cmt_now_ms() + WAIT_MS;
	/*
	 * Whatever the client had outstanding completes; the READ posted after the refused access
	 * does not succeed (flushed, or failed itself). Collected until 300 ms without any.
	 */
	while (cmt_now_ms() < quiet && cmt_now_ms() < end) {
		if (ibv_poll_cq(t->p.c.cq, 1, &wc) == 1) {
			if (wc.status != IBV_WC_SUCCESS)
				err = true;
			quiet = cmt_now_ms() + 300;
			continue;
		}
		usleep(1000);
	}
	CHECK(err);
}

static void test_xv_mw_args(void)
{
	struct mwt t;
	struct ibv_mw *mw1, *mw2;
	struct ibv_mw_bind b;
	struct ibv_pd *pd2;
	struct ibv_mr *mr2, *nobind;

	REQUIRE(mwt_open(&t, false) == 0);
	errno = 0;
	CHECK(ibv_alloc_mw(t.p.s.pd, (enum ibv_mw_type)3) == NULL);
	CHECK_INT(errno, EINVAL);
	mw1 = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_1);
	mw2 = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_2);
	REQUIRE(mw1 && mw2);
	CHECK(mw1->pd == t.p.s.pd && mw1->context == t.p.s.id->verbs);
	CHECK_INT(mw1->type, IBV_MW_TYPE_1);
	CHECK_INT(mw2->type, IBV_MW_TYPE_2);
	CHECK(mw1->rkey != mw2->rkey && mw1->rkey != t.smr->rkey);
	/* The PD is in use. */
	CHECK_INT(ibv_dealloc_pd(t.p.s.pd), EBUSY);

	memset(&b, 0, sizeof(b));
	b.wr_id = 1;
	b.send_flags = IBV_SEND_SIGNALED;
	b.bind_info.mr = t.smr;
	b.bind_info.addr = (uintptr_t)t.sbuf;
	b.bind_info.length = 64;
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	/* ibv_bind_mw is for type 1 (the header's check). */
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw2, &b), EINVAL);
	/* A range without a region. */
	b.bind_info.mr = NULL;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), EINVAL);
	/* A region of another PD: EPERM. */
	pd2 = ibv_alloc_pd(t.p.s.id->verbs);
	REQUIRE(pd2);
	mr2 = ibv_reg_mr(pd2, t.sbuf, 4096, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
	REQUIRE(mr2);
	b.bind_info.mr = mr2;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), EPERM);
	/* Rights a window cannot have. */
	b.bind_info.mr = t.smr;
	b.bind_info.mw_access_flags = IBV_ACCESS_MW_BIND;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), EINVAL);
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	{
		/* IBV_WR_BIND_MW with an rkey of another index. */
		struct ibv_send_wr wr, *bad;

		memset(&wr, 0, sizeof(wr));
		wr.opcode = IBV_WR_BIND_MW;
		wr.bind_mw.mw = mw2;
		wr.bind_mw.rkey = mw1->rkey;
		wr.bind_mw.bind_info = b.bind_info;
		CHECK_INT(ibv_post_send(t.p.s.qp, &wr, &bad), EINVAL);
		CHECK(bad == &wr);
	}
	CHECK(no_wc(t.p.s.cq, 50));

	/* Bound, the region cannot go; unbound (zero-length bind) it can. */
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), 0);
	{
		struct ibv_wc wc;

		REQUIRE(poll_wc(t.p.s.cq, &wc));
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_INT(wc.opcode, IBV_WC_BIND_MW);
		CHECK_UINT(wc.wr_id, 1);
	}
	CHECK_INT(ibv_dereg_mr(t.smr), EBUSY);
	memset(&b.bind_info, 0, sizeof(b.bind_info));
	b.send_flags = 0; /* unsignaled: no completion */
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), 0);
	CHECK(no_wc(t.p.s.cq, 100));

	/* A region without MW_BIND: the bind completes in error, the QP goes to error. */
	nobind = ibv_reg_mr(t.p.s.pd, t.sbuf, 4096, IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(nobind);
	b.send_flags = IBV_SEND_SIGNALED;
	b.wr_id = 2;
	b.bind_info.mr = nobind;
	b.bind_info.addr = (uintptr_t)t.sbuf;
	b.bind_info.length = 64;
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), 0);
	{
		struct ibv_wc wc;

		REQUIRE(poll_wc(t.p.s.cq, &wc));
		CHECK_UINT(wc.wr_id, 2);
		CHECK_INT(wc.status, IBV_WC_MW_BIND_ERR);
		CHECK_INT(wc.opcode, IBV_WC_BIND_MW);
	}
	CHECK(wait_qp_err(t.p.s.qp));
	CHECK_INT(ibv_dereg_mr(nobind), 0);
	CHECK_INT(ibv_dereg_mr(mr2), 0);
	CHECK_INT(ibv_dealloc_pd(pd2), 0);
	CHECK_INT(ibv_dealloc_mw(mw1), 0);
	CHECK_INT(ibv_dealloc_mw(mw2), 0);
	mwt_close(&t);
}

static void test_xv_mw_type1(void)
{
	struct mwt t;
	struct ibv_mw_bind b;
	struct ibv_mw *mw;
	struct ibv_wc wc;
	uint32_t old;
	uint64_t win;

	REQUIRE(mwt_open(&t, false) == 0);
	mw = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_1);
	REQUIRE(mw);
	old = mw->rkey;
	win = (uintptr_t)t.sbuf + WIN_AT;
	memset(&b, 0, sizeof(b));
	b.wr_id = 11;
	b.send_flags = IBV_SEND_SIGNALED;
	b.bind_info.mr = t.smr;
	b.bind_info.addr = win;
	b.bind_info.length = WIN_LEN;
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw, &b), 0);
	CHECK(mw->rkey != old);
	CHECK_UINT(mw->rkey >> 8, old >> 8);
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_UINT(wc.wr_id, 11);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_BIND_MW);

	/* WRITE and READ through the window, at both of its ends. */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 100, t.cmr->lkey, win, mw->rkey), 0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 2, t.cbuf + 200, 50, t.cmr->lkey,
		       win + WIN_LEN - 50, mw->rkey),
		  0);
	CHECK_INT(
	    rdma(&t.p.c, IBV_WR_RDMA_READ, 3, t.cbuf + 30000, WIN_LEN, t.cmr->lkey, win, mw->rkey),
	    0);
	for (int i = 1; i <= 3; i++) {
		REQUIRE(poll_wc(t.p.c.cq, &wc));
		CHECK_UINT(wc.wr_id, (uint64_t)i);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
	}
	CHECK_MEM(t.sbuf + WIN_AT, t.cbuf, 100);
	CHECK_MEM(t.sbuf + WIN_AT + WIN_LEN - 50, t.cbuf + 200, 50);
	CHECK_MEM(t.cbuf + 30000, t.sbuf + WIN_AT, WIN_LEN);
	CHECK(all_bytes(t.sbuf, WIN_AT, 0x5a));
	CHECK(all_bytes(t.sbuf + WIN_AT + WIN_LEN, MWBUF - WIN_AT - WIN_LEN, 0x5a));

	/* Rebinding a type-1 window moves it: the old rkey is dead, the new one works. */
	old = mw->rkey;
	b.wr_id = 12;
	b.bind_info.addr = (uintptr_t)t.sbuf + 32768;
	b.bind_info.length = 1024;
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw, &b), 0);
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK(mw->rkey != old);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 4, t.cbuf + 50000, 1024, t.cmr->lkey,
		       (uintptr_t)t.sbuf + 32768, mw->rkey),
		  0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 4);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_UINT(wc.byte_len, 1024);
	CHECK_MEM(t.cbuf + 50000, t.sbuf + 32768, 1024);

	/* The old rkey now names nothing: the WRITE is refused (TERMINATE), nothing changes. */
	memset(t.cbuf, 0xcc, 64); /* unlike what the window holds, so a landed WRITE shows */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 5, t.cbuf, 64, t.cmr->lkey, win, old), 0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 6, t.cbuf, 64, t.cmr->lkey, win, old), 0);
	expect_denied(&t);
	CHECK_MEM(t.sbuf + WIN_AT, t.cbuf + 30000, 64); /* as read before */
	CHECK(all_bytes(t.sbuf, WIN_AT, 0x5a));

	/* Deallocating a bound window unbinds it: the region can go. */
	CHECK_INT(ibv_dealloc_mw(mw), 0);
	mwt_close(&t);
}

/* Type 2: bound with IBV_WR_BIND_MW, freed by IBV_WR_LOCAL_INV, then dead for the peer. */
static void test_xv_mw_type2_local_inv(void)
{
	struct ibv_send_wr wr, *bad;
	struct ibv_mw *mw;
	struct ibv_wc wc;
	struct mwt t;
	uint32_t rkey, rkey2;
	uint8_t keep[256];
	uint64_t win;

	REQUIRE(mwt_open(&t, false) == 0);
	mw = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_2);
	REQUIRE(mw);
	win = (uintptr_t)t.sbuf + WIN_AT;
	rkey = bind2(&t, mw, win, WIN_LEN, IBV_ACCESS_REMOTE_WRITE);
	REQUIRE(rkey);
	/* Bound type-2 windows are not rebound before they are invalidated. */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 256, t.cmr->lkey, win + 1000, rkey),
		  0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	/* The WRITE is in place once a later SEND has arrived (ordering on the connection). */
	CHECK_INT(post_recv1(&t.p.s, 40, t.sbuf + 60000, 64, t.smr->lkey), 0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_SEND, 2, t.cbuf, 8, t.cmr->lkey, 0, 0), 0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_UINT(wc.wr_id, 40);
	CHECK_MEM(t.sbuf + WIN_AT + 1000, t.cbuf, 256);

	/* The local invalidation completes as LOCAL_INV; the window is free again. */
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x11;
	wr.opcode = IBV_WR_LOCAL_INV;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.invalidate_rkey = rkey;
	CHECK_INT(ibv_post_send(t.p.s.qp, &wr, &bad), 0);
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_UINT(wc.wr_id, 0x11);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_LOCAL_INV);
	CHECK_UINT(wc.qp_num, t.p.s.qp->qp_num);
	/* ... and can be bound again, with a new key. */
	rkey2 = bind2(&t, mw, win, 512, IBV_ACCESS_REMOTE_READ);
	CHECK(rkey2 && rkey2 != rkey);

	/* The invalidated rkey: the WRITE is refused, the window's bytes unchanged. */
	memcpy(keep, t.sbuf + WIN_AT + 1000, 256);
	memset(t.cbuf, 0xcc, 256);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 3, t.cbuf, 256, t.cmr->lkey, win + 1000, rkey),
		  0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 4, t.cbuf + 1024, 16, t.cmr->lkey, win, rkey2), 0);
	expect_denied(&t);
	CHECK_MEM(t.sbuf + WIN_AT + 1000, keep, 256);
	CHECK(all_bytes(t.sbuf, WIN_AT + 1000, 0x5a));
	CHECK(all_bytes(t.sbuf + WIN_AT + 1256, 60000 - WIN_AT - 1256, 0x5a));
	CHECK(all_bytes(t.sbuf + 60008, MWBUF - 60008, 0x5a));
	CHECK_INT(ibv_dealloc_mw(mw), 0);
	mwt_close(&t);
}

/* SEND with Invalidate frees a type-2 window remotely; a type-1 window is refused. */
static void test_xv_mw_send_inv(void)
{
	struct ibv_send_wr wr, *bad;
	struct ibv_sge sge;
	struct ibv_mw *mw, *mw1;
	struct ibv_wc wc;
	struct mwt t;
	uint32_t rkey, k;
	uint64_t win;

	REQUIRE(mwt_open(&t, true) == 0);
	mw = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_2);
	REQUIRE(mw);
	win = (uintptr_t)t.sbuf + WIN_AT;
	rkey = bind2(&t, mw, win, WIN_LEN, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(rkey);
	CHECK_INT(post_recv1(&t.p.s, 50, t.sbuf + 60000, 64, t.smr->lkey), 0);
	CHECK_INT(post_recv1(&t.p.s, 51, t.sbuf + 61000, 64, t.smr->lkey), 0);

	/* Through the ibv_wr_* API: WRITE via the window, then SEND with Invalidate of it. */
	ibv_wr_start(t.p.c.qpx);
	t.p.c.qpx->wr_id = 1;
	t.p.c.qpx->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_rdma_write(t.p.c.qpx, rkey, win);
	ibv_wr_set_sge(t.p.c.qpx, t.cmr->lkey, (uintptr_t)t.cbuf, 128);
	t.p.c.qpx->wr_id = 2;
	ibv_wr_send_inv(t.p.c.qpx, rkey);
	ibv_wr_set_sge(t.p.c.qpx, t.cmr->lkey, (uintptr_t)t.cbuf + 500, 32);
	CHECK_INT(ibv_wr_complete(t.p.c.qpx), 0);
	{
		struct xwc w[2];

		REQUIRE(poll_xwc(t.p.c.cqx, w, 2) == 2);
		CHECK_INT(w[0].status, IBV_WC_SUCCESS);
		CHECK_INT(w[0].opcode, IBV_WC_RDMA_WRITE);
		CHECK_INT(w[1].status, IBV_WC_SUCCESS);
		CHECK_INT(w[1].opcode, IBV_WC_SEND);
		CHECK_UINT(w[1].byte_len, 32);
		REQUIRE(poll_xwc(t.p.s.cqx, w, 1) == 1);
		CHECK_UINT(w[0].wr_id, 50);
		CHECK_INT(w[0].status, IBV_WC_SUCCESS);
		CHECK_INT(w[0].opcode, IBV_WC_RECV);
		CHECK_UINT(w[0].byte_len, 32);
		CHECK_INT(w[0].wc_flags, IBV_WC_WITH_INV);
		CHECK_UINT(w[0].imm, rkey); /* ibv_wc_read_invalidated_rkey */
	}
	CHECK_MEM(t.sbuf + WIN_AT, t.cbuf, 128);
	CHECK_MEM(t.sbuf + 60000, t.cbuf + 500, 32);
	/* Freed: the server binds it again (it could not while it was bound). */
	{
		uint32_t again = bind2(&t, mw, win, 64, IBV_ACCESS_REMOTE_READ);

		CHECK(again != 0 && again != rkey);
		/* Now invalidate it locally through the ibv_wr_* API of the server. */
		ibv_wr_start(t.p.s.qpx);
		t.p.s.qpx->wr_id = 0x1;
		t.p.s.qpx->wr_flags = IBV_SEND_SIGNALED;
		ibv_wr_local_inv(t.p.s.qpx, again);
		CHECK_INT(ibv_wr_complete(t.p.s.qpx), 0);
		REQUIRE(poll_wc(t.p.s.cq, &wc));
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_INT(wc.opcode, IBV_WC_LOCAL_INV);
	}
	/* Bind through ibv_wr_bind_mw, then the old rkey (remotely invalidated) is refused. */
	{
		struct ibv_mw_bind_info bi = {.mr = t.smr,
					      .addr = win,
					      .length = WIN_LEN,
					      .mw_access_flags = IBV_ACCESS_REMOTE_READ};
		k = ibv_inc_rkey(ibv_inc_rkey(rkey));
		ibv_wr_start(t.p.s.qpx);
		t.p.s.qpx->wr_id = 0x2;
		t.p.s.qpx->wr_flags = IBV_SEND_SIGNALED;
		ibv_wr_bind_mw(t.p.s.qpx, mw, k, &bi);
		CHECK_INT(ibv_wr_complete(t.p.s.qpx), 0);
		REQUIRE(poll_wc(t.p.s.cq, &wc));
		CHECK_UINT(wc.wr_id, 0x2);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_INT(wc.opcode, IBV_WC_BIND_MW);
		CHECK_INT(
		    rdma(&t.p.c, IBV_WR_RDMA_READ, 9, t.cbuf + 40000, 128, t.cmr->lkey, win, k), 0);
		REQUIRE(poll_wc(t.p.c.cq, &wc));
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_MEM(t.cbuf + 40000, t.sbuf + WIN_AT, 128);
	}
	/* A type-1 window cannot be invalidated by the peer: TERMINATE. */
	mw1 = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_1);
	REQUIRE(mw1);
	memset(&wr, 0, sizeof(wr));
	sge = (struct ibv_sge){(uintptr_t)t.cbuf, 8, t.cmr->lkey};
	wr.wr_id = 3;
	wr.opcode = IBV_WR_SEND_WITH_INV;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.invalidate_rkey = mw1->rkey;
	CHECK_INT(ibv_post_send(t.p.c.qp, &wr, &bad), 0);
	/* The live key: this READ would succeed if the invalidation had been taken. */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 4, t.cbuf, 8, t.cmr->lkey, win, k), 0);
	expect_denied(&t);
	CHECK_INT(ibv_dealloc_mw(mw1), 0);
	CHECK_INT(ibv_dealloc_mw(mw), 0);
	mwt_close(&t);
}

/* Accesses past the window's ends or beyond its rights are refused; guard bytes stay. */
static void test_xv_mw_outside_window(void)
{
	for (int round = 0; round < 4; round++) {
		struct ibv_mw *mw;
		struct mwt t;
		uint32_t rkey;
		uint64_t win;

		REQUIRE(mwt_open(&t, false) == 0);
		mw = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_2);
		REQUIRE(mw);
		win = (uintptr_t)t.sbuf + WIN_AT;
		rkey = bind2(&t, mw, win, WIN_LEN, IBV_ACCESS_REMOTE_WRITE);
		REQUIRE(rkey);
		memset(t.cbuf, 0xcc, 4096);
		switch (round) {
		case 0: /* one byte past the end */
			CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 101, t.cmr->lkey,
				       win + WIN_LEN - 100, rkey),
				  0);
			break;
		case 1: /* one byte before the start */
			CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 100, t.cmr->lkey,
				       win - 1, rkey),
				  0);
			break;
		case 2: /* READ without the right */
			CHECK_INT(
			    rdma(&t.p.c, IBV_WR_RDMA_READ, 1, t.cbuf, 100, t.cmr->lkey, win, rkey),
			    0);
			break;
		default: /* the region's own rkey: it has no remote rights */
			CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 100, t.cmr->lkey, win,
				       t.smr->rkey),
				  0);
			break;
		}
		CHECK_INT(
		    rdma(&t.p.c, IBV_WR_RDMA_READ, 2, t.cbuf + 8192, 8, t.cmr->lkey, win, rkey), 0);
		expect_denied(&t);
		CHECK(all_bytes(t.sbuf, MWBUF, 0x5a));
		CHECK(all_bytes(t.cbuf, 100, 0xcc)); /* round 2: the refused READ placed nothing */
		CHECK_INT(ibv_dealloc_mw(mw), 0);
		mwt_close(&t);
	}
}

/* A type-2 window is reachable only through the QP that bound it; a type-1 one via its PD. */
static void test_xv_mw_type2_bound_to_qp(void)
{
	struct opts o = def_opts;
	struct ibv_mw *mw1, *mw2;
	struct ibv_mw_bind b;
	struct ibv_mr *c2mr;
	struct ibv_wc wc;
	struct ep c2, s2;
	struct mwt t;
	uint32_t rkey;
	uint64_t win;

	REQUIRE(mwt_open(&t, false) == 0);
	REQUIRE(second_conn(&t.p, &o, &c2, &s2) == 0);
	c2mr = ibv_reg_mr(c2.pd, t.cbuf, MWBUF, IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(c2mr);
	win = (uintptr_t)t.sbuf + WIN_AT;
	mw2 = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_2);
	mw1 = ibv_alloc_mw(t.p.s.pd, IBV_MW_TYPE_1);
	REQUIRE(mw1 && mw2);
	rkey = bind2(&t, mw2, win, WIN_LEN, IBV_ACCESS_REMOTE_READ);
	REQUIRE(rkey);
	/* Type 1, bound through the first QP, serves the second connection (same PD). */
	memset(&b, 0, sizeof(b));
	b.wr_id = 5;
	b.send_flags = IBV_SEND_SIGNALED;
	b.bind_info.mr = t.smr;
	b.bind_info.addr = win;
	b.bind_info.length = WIN_LEN;
	b.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	CHECK_INT(ibv_bind_mw(t.p.s.qp, mw1, &b), 0);
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(rdma(&c2, IBV_WR_RDMA_READ, 1, t.cbuf + 100, 64, c2mr->lkey, win, mw1->rkey), 0);
	REQUIRE(poll_wc(c2.cq, &wc));
	CHECK_UINT(wc.wr_id, 1);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	/* Type 2 through the QP that bound it. */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 2, t.cbuf + 200, 64, t.cmr->lkey, win, rkey), 0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 2);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_MEM(t.cbuf + 200, t.sbuf + WIN_AT, 64);
	/* ... but not through the other one: refused, that connection fails, not the first. */
	memset(t.cbuf + 300, 0, 64);
	CHECK_INT(rdma(&c2, IBV_WR_RDMA_READ, 3, t.cbuf + 300, 64, c2mr->lkey, win, rkey), 0);
	REQUIRE(poll_wc(c2.cq, &wc));
	CHECK_UINT(wc.wr_id, 3);
	CHECK(wc.status != IBV_WC_SUCCESS);
	CHECK(all_bytes(t.cbuf + 300, 64, 0));
	CHECK(wait_qp_err(c2.qp));
	CHECK(wait_qp_err(s2.qp));
	CHECK_INT(qp_state(t.p.c.qp), IBV_QPS_RTS);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 4, t.cbuf + 400, 64, t.cmr->lkey, win, rkey), 0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 4);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK(all_bytes(t.sbuf, MWBUF, 0x5a));

	CHECK_INT(ibv_dealloc_mw(mw1), 0);
	CHECK_INT(ibv_dealloc_mw(mw2), 0);
	CHECK_INT(ibv_dereg_mr(c2mr), 0);
	rdma_disconnect(c2.id);
	ep_free(&c2);
	ep_free(&s2);
	mwt_close(&t);
}

/* IBV_WR_LOCAL_INV of a region's rkey: the peer's next access is refused. */
static void test_xv_local_inv_mr(void)
{
	struct ibv_send_wr wr, *bad;
	uint8_t keep[128];
	struct ibv_mr *mr;
	struct ibv_wc wc;
	struct mwt t;

	REQUIRE(mwt_open(&t, false) == 0);
	mr = ibv_reg_mr(t.p.s.pd, t.sbuf + 32768, 4096,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(mr);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 1, t.cbuf, 128, t.cmr->lkey,
		       (uintptr_t)t.sbuf + 32768, mr->rkey),
		  0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 2, t.cbuf + 1024, 128, t.cmr->lkey,
		       (uintptr_t)t.sbuf + 32768, mr->rkey),
		  0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_MEM(t.sbuf + 32768, t.cbuf, 128);
	memcpy(keep, t.cbuf, 128);
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x77;
	wr.opcode = IBV_WR_LOCAL_INV;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.invalidate_rkey = mr->rkey;
	CHECK_INT(ibv_post_send(t.p.s.qp, &wr, &bad), 0);
	REQUIRE(poll_wc(t.p.s.cq, &wc));
	CHECK_UINT(wc.wr_id, 0x77);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_LOCAL_INV);
	memset(t.cbuf, 0xcc, 128);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_WRITE, 3, t.cbuf, 128, t.cmr->lkey,
		       (uintptr_t)t.sbuf + 32768, mr->rkey),
		  0);
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 4, t.cbuf + 2048, 8, t.cmr->lkey,
		       (uintptr_t)t.sbuf + 32768, mr->rkey),
		  0);
	expect_denied(&t);
	CHECK_MEM(t.sbuf + 32768, keep, 128);
	CHECK(all_bytes(t.sbuf + 32768 + 128, 4096 - 128, 0x5a));
	CHECK_INT(ibv_dereg_mr(mr), 0);
	mwt_close(&t);
}

/*
 * Send queue completions come in posting order: a LOCAL_INV posted behind RDMA WRITEs in one
 * chain completes after them, not when it is picked while they are still being sent (as the
 * kernel's siw, which finishes one WQE before it starts the next).
 */
static void test_xv_local_inv_in_order(void)
{
	struct ibv_send_wr w[5], *bad;
	struct ibv_sge sge[4];
	struct ibv_mr *tgt, *mr;
	struct ibv_wc wc;
	struct mwt t;

	REQUIRE(mwt_open(&t, false) == 0);
	tgt = ibv_reg_mr(t.p.s.pd, t.sbuf, MWBUF,
			 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	mr = ibv_reg_mr(t.p.c.pd, t.cbuf, 4096, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(tgt && mr);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 4; i++) {
		sge[i] = (struct ibv_sge){(uintptr_t)t.cbuf, MWBUF, t.cmr->lkey};
		w[i].wr_id = (uint64_t)i + 1;
		w[i].opcode = IBV_WR_RDMA_WRITE;
		w[i].send_flags = IBV_SEND_SIGNALED;
		w[i].sg_list = &sge[i];
		w[i].num_sge = 1;
		w[i].wr.rdma.remote_addr = (uintptr_t)t.sbuf;
		w[i].wr.rdma.rkey = tgt->rkey;
		w[i].next = &w[i + 1];
	}
	w[4].wr_id = 5;
	w[4].opcode = IBV_WR_LOCAL_INV;
	w[4].send_flags = IBV_SEND_SIGNALED;
	w[4].invalidate_rkey = mr->rkey;
	CHECK_INT(ibv_post_send(t.p.c.qp, w, &bad), 0);
	for (uint64_t i = 1; i <= 5; i++) {
		REQUIRE(poll_wc(t.p.c.cq, &wc));
		CHECK_UINT(wc.wr_id, i);
		CHECK_INT(wc.status, IBV_WC_SUCCESS);
		CHECK_INT(wc.opcode, i == 5 ? IBV_WC_LOCAL_INV : IBV_WC_RDMA_WRITE);
	}
	/*
	 * A WRITE completes when it is sent; a READ behind them answers after they are placed.
	 * It reads the last bytes back onto themselves: cbuf stays as it was if they landed.
	 */
	CHECK_INT(rdma(&t.p.c, IBV_WR_RDMA_READ, 6, t.cbuf + MWBUF - 64, 64, t.cmr->lkey,
		       (uintptr_t)t.sbuf + MWBUF - 64, tgt->rkey),
		  0);
	REQUIRE(poll_wc(t.p.c.cq, &wc));
	CHECK_UINT(wc.wr_id, 6);
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_MEM(t.sbuf, t.cbuf, MWBUF);
	CHECK_INT(ibv_dereg_mr(mr), 0);
	CHECK_INT(ibv_dereg_mr(tgt), 0);
	mwt_close(&t);
}

T_MAIN(T_CASE(test_xv_device_attrs), T_CASE(test_xv_ex_bad_args), T_CASE(test_xv_wr_api),
       T_CASE(test_xv_wr_errors), T_CASE(test_xv_read_multi_sge), T_CASE(test_xv_many_sges_inline),
       T_CASE(test_xv_mw_args), T_CASE(test_xv_mw_type1), T_CASE(test_xv_mw_type2_local_inv),
       T_CASE(test_xv_mw_send_inv), T_CASE(test_xv_mw_outside_window),
       T_CASE(test_xv_mw_type2_bound_to_qp), T_CASE(test_xv_local_inv_mr),
       T_CASE(test_xv_local_inv_in_order))
