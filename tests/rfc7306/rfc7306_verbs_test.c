// SPDX-License-Identifier: MIT
/*
 * RFC 7306 through the public verbs and rdma_cm API (docs/PROTOCOL.md §6.5): SEND and RDMA
 * WRITE with immediate data and both atomics between two endpoints over loopback, completions
 * checked field by field; SIW_RFC7306=off on either end (ibv_post_send refuses with EINVAL,
 * the connection goes on); SIW_RFC7306=on toward a peer that does not do it (the peer
 * terminates, the work request is flushed); a responder that answers with the request's flag
 * byte, as kernel siw does, is not taken for an RFC 7306 peer and never sees those opcodes.
 */
#include <endian.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_util.h"
#include "test.h"

#define EV_MS 5000

struct conn {
	struct rdma_event_channel *sch, *cch;
	struct rdma_cm_id *listen;
	struct cmt_node cli, srv;
	uint8_t *cbuf, *sbuf; /* 4 KiB each */
	struct ibv_mr *cmr, *smr;
};

static void set_env(const char *v)
{
	if (v)
		setenv("SIW_RFC7306", v, 1);
	else
		unsetenv("SIW_RFC7306");
}

#define ACC                                                                                        \
	(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |               \
	 IBV_ACCESS_REMOTE_ATOMIC)

typedef void (*hook_fn)(struct conn *c);

/*
 * Client and server QPs connected; srv_env / cli_env: SIW_RFC7306 of each end (NULL: unset).
 * cli_pre runs after the client's QP and MR exist, before rdma_connect; srv_pre before
 * rdma_accept.
 */
static bool conn_up_hooks(struct conn *c, const char *srv_env, const char *cli_env,
			  hook_fn cli_pre, hook_fn srv_pre)
{
	struct rdma_conn_param p = {.responder_resources = 4, .initiator_depth = 4};
	struct sockaddr_storage dst;
	struct rdma_cm_event *e;
	struct rdma_cm_id *id;
	uint16_t port = 0;

	memset(c, 0, sizeof(*c));
	c->cbuf = aligned_alloc(4096, 4096);
	c->sbuf = aligned_alloc(4096, 4096);
	c->sch = rdma_create_event_channel();
	c->cch = rdma_create_event_channel();
	if (!c->sch || !c->cch || !c->cbuf || !c->sbuf)
		return false;
	memset(c->cbuf, 0xc1, 4096);
	memset(c->sbuf, 0x5e, 4096);
	set_env(srv_env); /* the listener's snapshot; its connections inherit it */
	c->listen = cmt_listen(c->sch, "127.0.0.1", &port);
	set_env(cli_env); /* the client id's snapshot */
	if (!c->listen || cmt_addr("127.0.0.1", port, &dst) ||
	    rdma_create_id(c->cch, &id, NULL, RDMA_PS_TCP))
		return false;
	set_env(NULL);
	c->cli.id = id;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) ||
	    !cmt_expect_ack(c->cch, RDMA_CM_EVENT_ADDR_RESOLVED, 2000) ||
	    rdma_resolve_route(id, 2000) ||
	    !cmt_expect_ack(c->cch, RDMA_CM_EVENT_ROUTE_RESOLVED, 2000) || cmt_node_qp(&c->cli, id))
		return false;
	c->cmr = ibv_reg_mr(c->cli.pd, c->cbuf, 4096, ACC);
	if (!c->cmr)
		return false;
	if (cli_pre)
		cli_pre(c);
	if (rdma_connect(id, &p))
		return false;
	e = cmt_expect(c->sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	if (!e)
		return false;
	if (cmt_node_qp(&c->srv, e->id)) {
		rdma_ack_cm_event(e);
		return false;
	}
	rdma_ack_cm_event(e);
	c->smr = ibv_reg_mr(c->srv.pd, c->sbuf, 4096, ACC);
	if (!c->smr)
		return false;
	if (srv_pre)
		srv_pre(c);
	return !rdma_accept(c->srv.id, &p) &&
	       cmt_expect_ack(c->cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS) &&
	       cmt_expect_ack(c->sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
}

static bool conn_up(struct conn *c, const char *srv_env, const char *cli_env)
{
	return conn_up_hooks(c, srv_env, cli_env, NULL, NULL);
}

static void conn_down(struct conn *c)
{
	if (c->cmr)
		ibv_dereg_mr(c->cmr);
	if (c->smr)
		ibv_dereg_mr(c->smr);
	cmt_node_free(&c->cli);
	cmt_node_free(&c->srv);
	if (c->listen)
		rdma_destroy_id(c->listen);
	if (c->sch)
		rdma_destroy_event_channel(c->sch);
	if (c->cch)
		rdma_destroy_event_channel(c->cch);
	free(c->cbuf);
	free(c->sbuf);
	set_env(NULL);
}

/* One completion within EV_MS, or false. */
static bool poll1(struct ibv_cq *cq, struct ibv_wc *wc)
{
	uint64_t end = cmt_now_ms() + EV_MS;

	while (cmt_now_ms() < end) {
		int n = ibv_poll_cq(cq, 1, wc);

		if (n == 1)
			return true;
		if (n < 0)
			return false;
		usleep(100);
	}
	fprintf(stderr, "  no completion within %d ms\n", EV_MS);
	return false;
}

static int post_recv(struct conn *c, uint64_t id, size_t off, uint32_t len)
{
	struct ibv_sge sge = {(uintptr_t)c->sbuf + off, len, c->smr->lkey};
	struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_recv(c->srv.id->qp, &wr, &bad);
}

/* A send WR from qp; returns ibv_post_send's value and checks bad_wr on failure. */
static int post_wr(struct ibv_qp *qp, struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad = NULL;
	int r = ibv_post_send(qp, wr, &bad);

	if (r)
		CHECK(bad == wr);
	return r;
}

static void wr_imm(struct ibv_send_wr *wr, struct ibv_sge *sge, enum ibv_wr_opcode op, uint64_t id,
		   uint32_t imm)
{
	memset(wr, 0, sizeof(*wr));
	wr->wr_id = id;
	wr->opcode = op;
	wr->send_flags = IBV_SEND_SIGNALED;
	wr->sg_list = sge;
	wr->num_sge = 1;
	wr->imm_data = htobe32(imm);
}

static void wr_atomic(struct ibv_send_wr *wr, struct ibv_sge *sge, enum ibv_wr_opcode op,
		      uint64_t id, uint64_t raddr, uint32_t rkey, uint64_t cmp_add, uint64_t swap)
{
	memset(wr, 0, sizeof(*wr));
	wr->wr_id = id;
	wr->opcode = op;
	wr->send_flags = IBV_SEND_SIGNALED;
	wr->sg_list = sge;
	wr->num_sge = 1;
	wr->wr.atomic.remote_addr = raddr;
	wr->wr.atomic.rkey = rkey;
	wr->wr.atomic.compare_add = cmp_add;
	wr->wr.atomic.swap = swap;
}

/* Everything through verbs between two softiwarp ends with the default SIW_RFC7306 (auto). */
static void test_r7_verbs_end_to_end(void)
{
	struct conn c;
	struct ibv_device_attr da;
	struct ibv_send_wr wr;
	struct ibv_sge sge;
	struct ibv_wc wc;
	uint64_t *word;

	REQUIRE(conn_up(&c, NULL, NULL));
	CHECK_INT(ibv_query_device(c.cli.id->verbs, &da), 0);
	CHECK_INT(da.atomic_cap, IBV_ATOMIC_HCA);

	/* SEND_WITH_IMM: one receive, IBV_WC_RECV with the immediate. */
	memcpy(c.cbuf, "sixteen bytes!!", 16);
	CHECK_INT(post_recv(&c, 11, 0, 64), 0);
	sge = (struct ibv_sge){(uintptr_t)c.cbuf, 16, c.cmr->lkey};
	wr_imm(&wr, &sge, IBV_WR_SEND_WITH_IMM, 1, 0xdeadbeef);
	CHECK_INT(post_wr(c.cli.id->qp, &wr), 0);
	REQUIRE(poll1(c.srv.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RECV);
	CHECK_UINT(wc.wr_id, 11);
	CHECK_UINT(wc.byte_len, 16);
	CHECK(wc.wc_flags & IBV_WC_WITH_IMM);
	CHECK_UINT(be32toh(wc.imm_data), 0xdeadbeef);
	CHECK_UINT(wc.qp_num, c.srv.id->qp->qp_num);
	CHECK_MEM(c.sbuf, "sixteen bytes!!", 16);
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_SEND);
	CHECK_UINT(wc.wr_id, 1);

	/* RDMA_WRITE_WITH_IMM: data in the region, IBV_WC_RECV_RDMA_WITH_IMM, byte_len = 32. */
	for (int i = 0; i < 32; i++)
		c.cbuf[i] = (uint8_t)(i + 1);
	CHECK_INT(post_recv(&c, 12, 1024, 64), 0);
	sge = (struct ibv_sge){(uintptr_t)c.cbuf, 32, c.cmr->lkey};
	wr_imm(&wr, &sge, IBV_WR_RDMA_WRITE_WITH_IMM, 2, 0x01020304);
	wr.wr.rdma.remote_addr = (uintptr_t)c.sbuf + 256;
	wr.wr.rdma.rkey = c.smr->rkey;
	CHECK_INT(post_wr(c.cli.id->qp, &wr), 0);
	REQUIRE(poll1(c.srv.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RECV_RDMA_WITH_IMM);
	CHECK_UINT(wc.wr_id, 12);
	CHECK_UINT(wc.byte_len, 32);
	CHECK(wc.wc_flags & IBV_WC_WITH_IMM);
	CHECK_UINT(be32toh(wc.imm_data), 0x01020304);
	CHECK_MEM(c.sbuf + 256, c.cbuf, 32);
	CHECK_UINT(c.sbuf[1024], 0x5e); /* the receive buffer is not written */
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RDMA_WRITE);
	CHECK_UINT(wc.wr_id, 2);

	/* FETCH_AND_ADD, then CMP_AND_SWP: old values into the local 8 bytes. */
	word = (uint64_t *)(void *)(c.sbuf + 512);
	*word = 40;
	sge = (struct ibv_sge){(uintptr_t)c.cbuf + 64, 8, c.cmr->lkey};
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_FETCH_AND_ADD, 3, (uintptr_t)word, c.smr->rkey, 2, 0);
	CHECK_INT(post_wr(c.cli.id->qp, &wr), 0);
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_FETCH_ADD);
	CHECK_UINT(wc.wr_id, 3);
	CHECK_UINT(wc.byte_len, 8);
	CHECK_UINT(*(uint64_t *)(void *)(c.cbuf + 64), 40);
	CHECK_UINT(*word, 42);
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_CMP_AND_SWP, 4, (uintptr_t)word, c.smr->rkey, 42, 7);
	CHECK_INT(post_wr(c.cli.id->qp, &wr), 0);
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_COMP_SWAP);
	CHECK_UINT(wc.wr_id, 4);
	CHECK_UINT(*(uint64_t *)(void *)(c.cbuf + 64), 42);
	CHECK_UINT(*word, 7);
	/* Nothing else completed on the target. */
	CHECK_INT(ibv_poll_cq(c.srv.cq, 1, &wc), 0);
	/* An atomic's local SGE must be 8 bytes: refused as rdma-core providers do. */
	sge.length = 4;
	CHECK_INT(post_wr(c.cli.id->qp, &wr), EINVAL);
	conn_down(&c);
}

/* The refusal on one end that has, or talks to an end that has, SIW_RFC7306=off. */
static void refused(struct conn *c)
{
	struct ibv_send_wr wr;
	struct ibv_sge sge = {(uintptr_t)c->cbuf, 8, c->cmr->lkey};
	struct ibv_sge ssge = {(uintptr_t)c->sbuf, 8, c->smr->lkey};
	struct ibv_wc wc;

	wr_imm(&wr, &sge, IBV_WR_SEND_WITH_IMM, 1, 5);
	CHECK_INT(post_wr(c->cli.id->qp, &wr), EINVAL);
	wr_imm(&wr, &sge, IBV_WR_RDMA_WRITE_WITH_IMM, 2, 5);
	wr.wr.rdma.remote_addr = (uintptr_t)c->sbuf;
	wr.wr.rdma.rkey = c->smr->rkey;
	CHECK_INT(post_wr(c->cli.id->qp, &wr), EINVAL);
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_FETCH_AND_ADD, 3, (uintptr_t)c->sbuf, c->smr->rkey, 1, 0);
	CHECK_INT(post_wr(c->cli.id->qp, &wr), EINVAL);
	wr_atomic(&wr, &ssge, IBV_WR_ATOMIC_CMP_AND_SWP, 4, (uintptr_t)c->cbuf, c->cmr->rkey, 0, 1);
	CHECK_INT(post_wr(c->srv.id->qp, &wr), EINVAL);
	/* Nothing was queued, nothing arrived; the connection is fine. */
	usleep(50000);
	CHECK_INT(ibv_poll_cq(c->cli.cq, 1, &wc), 0);
	CHECK_INT(ibv_poll_cq(c->srv.cq, 1, &wc), 0);
	CHECK_UINT(c->sbuf[0], 0x5e);
	CHECK_UINT(c->cbuf[0], 0xc1);
	CHECK_INT(post_recv(c, 9, 0, 64), 0);
	memset(&wr, 0, sizeof(wr));
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	CHECK_INT(post_wr(c->cli.id->qp, &wr), 0);
	REQUIRE(poll1(c->srv.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RECV);
	CHECK_UINT(wc.wc_flags & IBV_WC_WITH_IMM, 0);
}

static void test_r7_server_off(void)
{
	struct conn c;

	REQUIRE(conn_up(&c, "off", NULL));
	refused(&c);
	conn_down(&c);
}

static void test_r7_client_off(void)
{
	struct conn c;

	REQUIRE(conn_up(&c, NULL, "off"));
	refused(&c);
	conn_down(&c);
}

/* atomic_cap as the device is opened: IBV_ATOMIC_HCA, or IBV_ATOMIC_NONE with SIW_RFC7306=off. */
static void test_r7_atomic_cap(void)
{
	int n;
	struct ibv_device **list = ibv_get_device_list(&n);

	REQUIRE(list && n > 0);
	for (int k = 0; k < 3; k++) {
		struct ibv_device_attr da;
		struct ibv_context *ctx;

		set_env(k == 0 ? "off" : k == 1 ? NULL : "on");
		ctx = ibv_open_device(list[0]);
		REQUIRE(ctx);
		CHECK_INT(ibv_query_device(ctx, &da), 0);
		CHECK_INT(da.atomic_cap, k == 0 ? IBV_ATOMIC_NONE : IBV_ATOMIC_HCA);
		CHECK(da.max_qp_rd_atom > 0 && da.max_qp_init_rd_atom > 0);
		ibv_close_device(ctx);
	}
	set_env(NULL);
	ibv_free_device_list(list);
}

/*
 * SIW_RFC7306=on forces it toward a peer that did not agree (here softiwarp with off, standing
 * in for kernel siw): the peer answers the first atomic with a TERMINATE "unexpected opcode",
 * both QPs go to error, the atomic is flushed, the target word is untouched.
 */
static void test_r7_forced_on_toward_peer_without(void)
{
	struct conn c;
	struct ibv_send_wr wr;
	struct ibv_sge sge;
	struct ibv_qp_attr qa;
	struct ibv_qp_init_attr qia;
	struct ibv_wc wc;
	uint64_t end;

	REQUIRE(conn_up(&c, "off", "on"));
	sge = (struct ibv_sge){(uintptr_t)c.cbuf, 8, c.cmr->lkey};
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_FETCH_AND_ADD, 3, (uintptr_t)c.sbuf + 8, c.smr->rkey, 1,
		  0);
	CHECK_INT(post_wr(c.cli.id->qp, &wr), 0);
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_UINT(wc.wr_id, 3);
	CHECK_INT(wc.status, IBV_WC_WR_FLUSH_ERR);
	CHECK_INT(wc.opcode, IBV_WC_FETCH_ADD);
	CHECK(cmt_expect_ack(c.cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	CHECK(cmt_expect_ack(c.sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	end = cmt_now_ms() + EV_MS;
	do {
		CHECK_INT(ibv_query_qp(c.srv.id->qp, &qa, IBV_QP_STATE, &qia), 0);
		if (qa.qp_state == IBV_QPS_ERR)
			break;
		usleep(1000);
	} while (cmt_now_ms() < end);
	CHECK_INT(qa.qp_state, IBV_QPS_ERR);
	for (int i = 0; i < 16; i++)
		CHECK_UINT(c.sbuf[i], 0x5e);
	CHECK_UINT(c.cbuf[0], 0xc1);
	conn_down(&c);
}

/* ---- posted before the connection exists ---------------------------------------------------- */

static void pre_post_send_imm(struct conn *c)
{
	struct ibv_sge sge = {(uintptr_t)c->cbuf, 8, c->cmr->lkey};
	struct ibv_send_wr wr;

	memcpy(c->cbuf, "early!!", 8);
	wr_imm(&wr, &sge, IBV_WR_SEND_WITH_IMM, 21, 0x55aa55aa);
	CHECK_INT(post_wr(c->cli.id->qp, &wr), 0);
}

static void pre_post_fetch_add(struct conn *c)
{
	struct ibv_sge sge = {(uintptr_t)c->cbuf, 8, c->cmr->lkey};
	struct ibv_send_wr wr;

	/* The server's region is not known yet: any address; it never leaves anyway. */
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_FETCH_AND_ADD, 22, 0x1000, 0x100, 1, 0);
	CHECK_INT(post_wr(c->cli.id->qp, &wr), 0);
}

static void pre_post_recv(struct conn *c)
{
	CHECK_INT(post_recv(c, 31, 0, 64), 0);
}

/*
 * Work requests wait in the send queue until the connection is up. With an RFC 7306 peer they
 * go out then; with a peer that did not agree, the WR completes with IBV_WC_LOC_QP_OP_ERR and
 * the QP goes to the error state (nothing of it reaches the peer).
 */
static void test_r7_posted_before_connect(void)
{
	struct conn c;
	struct ibv_wc wc;

	REQUIRE(conn_up_hooks(&c, NULL, NULL, pre_post_send_imm, pre_post_recv));
	REQUIRE(poll1(c.srv.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_INT(wc.opcode, IBV_WC_RECV);
	CHECK_UINT(wc.wr_id, 31);
	CHECK(wc.wc_flags & IBV_WC_WITH_IMM);
	CHECK_UINT(be32toh(wc.imm_data), 0x55aa55aa);
	CHECK_UINT(wc.byte_len, 8);
	CHECK_MEM(c.sbuf, "early!!", 8);
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_INT(wc.status, IBV_WC_SUCCESS);
	CHECK_UINT(wc.wr_id, 21);
	conn_down(&c);

	REQUIRE(conn_up_hooks(&c, "off", NULL, pre_post_fetch_add, pre_post_recv));
	REQUIRE(poll1(c.cli.cq, &wc));
	CHECK_UINT(wc.wr_id, 22);
	CHECK_INT(wc.status, IBV_WC_LOC_QP_OP_ERR);
	CHECK_INT(wc.opcode, IBV_WC_FETCH_ADD);
	CHECK(cmt_expect_ack(c.cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	/* The server's receive was not consumed by anything: it is flushed at the disconnect. */
	CHECK(cmt_expect_ack(c.sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	REQUIRE(poll1(c.srv.cq, &wc));
	CHECK_UINT(wc.wr_id, 31);
	CHECK_INT(wc.status, IBV_WC_WR_FLUSH_ERR);
	CHECK_UINT(c.sbuf[0], 0x5e);
	conn_down(&c);
}

/* ---- a responder that echoes the request's flag byte (kernel siw) -------------------------- */

static int raw_listen(uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, one = 1;

	if (cmt_addr("127.0.0.1", 0, &ss))
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len)) {
		close(fd);
		return -1;
	}
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Reads exactly len bytes within timeout_ms; returns the count read. */
static size_t read_for(int fd, uint8_t *buf, size_t len, int timeout_ms)
{
	uint64_t end = cmt_now_ms() + (uint64_t)timeout_ms;
	size_t have = 0;

	while (have < len && cmt_now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 10) != 1)
			continue;
		n = recv(fd, buf + have, len - have, MSG_DONTWAIT);
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	return have;
}

static void test_r7_kernel_siw_like_echo(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct rdma_conn_param p = {.responder_resources = 2, .initiator_depth = 2};
	struct cmt_node cli;
	struct ibv_mr *mr;
	struct ibv_send_wr wr;
	struct ibv_sge sge;
	uint8_t f[64], buf[64];
	uint16_t port;
	int lfd, fd;

	REQUIRE(ch);
	lfd = raw_listen(&port);
	REQUIRE(lfd >= 0);
	unsetenv("SIW_RFC7306"); /* auto: the request offers RFC 7306 */
	REQUIRE(cmt_client_connect(&cli, ch, "127.0.0.1", port, &p) == 0);
	fd = accept(lfd, NULL, NULL);
	REQUIRE(fd >= 0);
	/* Request: key, flags, rev, pd_len 4, IRD/ORD words. */
	REQUIRE(read_for(fd, f, 24, EV_MS) == 24);
	CHECK_MEM(f, "MPA ID Req Frame", 16);
	CHECK_UINT(f[16], 0x14); /* H and the RFC 7306 offer */
	CHECK_UINT(f[19], 4);
	/* Kernel siw's reply: the request's header with the key changed, its own IRD/ORD. */
	memcpy(f, "MPA ID Rep Frame", 16);
	f[20] = 0;
	f[21] = 2;
	f[22] = 0;
	f[23] = 2;
	CHECK_INT(send(fd, f, 24, MSG_NOSIGNAL), 24);
	REQUIRE(cmt_expect_ack(ch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));

	mr = ibv_reg_mr(cli.pd, buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(mr);
	sge = (struct ibv_sge){(uintptr_t)buf, 8, mr->lkey};
	wr_atomic(&wr, &sge, IBV_WR_ATOMIC_FETCH_AND_ADD, 1, 0x1000, 0x1234, 1, 0);
	CHECK_INT(post_wr(cli.id->qp, &wr), EINVAL);
	wr_imm(&wr, &sge, IBV_WR_SEND_WITH_IMM, 2, 1);
	CHECK_INT(post_wr(cli.id->qp, &wr), EINVAL);
	wr_imm(&wr, &sge, IBV_WR_RDMA_WRITE_WITH_IMM, 3, 1);
	CHECK_INT(post_wr(cli.id->qp, &wr), EINVAL);
	/* Nothing reached the "kernel siw" side. */
	CHECK_INT(read_for(fd, f, 1, 200), 0);

	ibv_dereg_mr(mr);
	rdma_disconnect(cli.id);
	close(fd);
	close(lfd);
	cmt_node_free(&cli);
	rdma_destroy_event_channel(ch);
}

T_MAIN(T_CASE(test_r7_verbs_end_to_end), T_CASE(test_r7_server_off), T_CASE(test_r7_client_off),
       T_CASE(test_r7_atomic_cap), T_CASE(test_r7_posted_before_connect),
       T_CASE(test_r7_forced_on_toward_peer_without), T_CASE(test_r7_kernel_siw_like_echo))
