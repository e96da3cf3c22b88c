// SPDX-License-Identifier: MIT
/*
 * The engine end to end, through engine.h: two QPs in one process over loopback TCP, every
 * opcode, data integrity, one-sided operations with the target idle, errors with TERMINATE and
 * flush, disconnect, completion channels.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eng_pair.h"
#include "error.h"
#include "test.h"

#define BIG (4u << 20)

static struct side A, B;

static uint8_t *xalloc(size_t n, uint8_t fill)
{
	uint8_t *p = malloc(n + 64);

	memset(p, fill, n + 64);
	return p + 32; /* 32 guard bytes each side */
}

static void xfree(uint8_t *p)
{
	free(p - 32);
}

static bool guards_ok(const uint8_t *p, size_t n, uint8_t fill)
{
	for (int i = 1; i <= 32; i++)
		if (p[-i] != fill || p[n + (size_t)i - 1] != fill)
			return false;
	return true;
}

static void fill_rand(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static int post_send1(struct eng_qp *qp, enum eng_wr_opcode op, uint64_t id, void *buf,
		      uint32_t len, struct eng_mr *mr, uint64_t raddr, uint32_t rkey, unsigned flags)
{
	struct eng_sge sge = {(uintptr_t)buf, len, mr ? eng_mr_key(mr) : 0};
	struct eng_send_wr wr = {.wr_id = id,
				 .opcode = op,
				 .flags = flags,
				 .sg_list = &sge,
				 .num_sge = 1,
				 .remote_addr = raddr,
				 .rkey = rkey};
	int bad;

	return eng_post_send(qp, &wr, 1, &bad);
}

static int post_recv1(struct eng_qp *qp, uint64_t id, void *buf, uint32_t len, struct eng_mr *mr)
{
	struct eng_sge sge = {(uintptr_t)buf, len, eng_mr_key(mr)};
	struct eng_recv_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1};
	int bad;

	return eng_post_recv(qp, &wr, 1, &bad);
}

static bool connect_default(unsigned rq)
{
	struct pair_opts o;

	pair_default_opts(&o);
	if (rq)
		o.rq = rq;
	if (pair_connect(&A, &B, &o)) {
		t_fail(__FILE__, __LINE__, "pair_connect failed");
		return false;
	}
	return true;
}

static void test_engine_send_recv(void)
{
	static const uint32_t sizes[] = {0, 1, 3, 100, 1442, 4096, 65536, 100000, BIG};
	uint8_t *s, *r;
	struct eng_mr *smr, *rmr;
	struct eng_cqe c[2];

	REQUIRE(connect_default(0));
	s = xalloc(BIG, 0x11);
	r = xalloc(BIG, 0x22);
	smr = eng_mr_reg(A.pd, s, BIG, (uintptr_t)s, 0);
	rmr = eng_mr_reg(B.pd, r, BIG, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	REQUIRE(smr && rmr);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill_rand(s, sizes[i], i);
		CHECK_INT(post_recv1(B.qp, 100 + i, r, BIG, rmr), 0);
		CHECK_INT(post_send1(A.qp, ENG_WR_SEND, i, s, sizes[i], smr, 0, 0, ENG_SEND_SIGNALED),
			  0);
		REQUIRE(poll_n(A.scq, c, 1, 5000) == 1);
		CHECK_INT(c[0].status, ENG_WC_SUCCESS);
		CHECK_INT(c[0].opcode, ENG_WC_SEND);
		CHECK_UINT(c[0].wr_id, i);
		REQUIRE(poll_n(B.rcq, c + 1, 1, 5000) == 1);
		CHECK_INT(c[1].status, ENG_WC_SUCCESS);
		CHECK_INT(c[1].opcode, ENG_WC_RECV);
		CHECK_UINT(c[1].wr_id, 100 + i);
		CHECK_UINT(c[1].byte_len, sizes[i]);
		CHECK_MEM(r, s, sizes[i]);
	}
	CHECK(guards_ok(r, BIG, 0x22));
	eng_mr_dereg(smr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(s);
	xfree(r);
}

/* RDMA WRITE and READ complete with the target application not calling anything. */
static void test_engine_write_read_one_sided(void)
{
	uint8_t *a, *b;
	struct eng_mr *amr, *bmr;
	struct eng_cqe c;
	unsigned seed = 7;

	REQUIRE(connect_default(0));
	a = xalloc(BIG, 0x33);
	b = xalloc(BIG, 0x44);
	amr = eng_mr_reg(A.pd, a, BIG, (uintptr_t)a, ENG_ACCESS_LOCAL_WRITE);
	bmr = eng_mr_reg(B.pd, b, BIG, (uintptr_t)b,
			 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_READ);
	REQUIRE(amr && bmr);
	for (int i = 0; i < 40; i++) {
		uint32_t len = (uint32_t)rand_r(&seed) % (i % 4 == 0 ? BIG : 70000);
		uint32_t off = (uint32_t)rand_r(&seed) % (BIG - len + 1);
		uint32_t off2 = (uint32_t)rand_r(&seed) % (BIG - len + 1);

		fill_rand(a + off, len, (unsigned)i);
		CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_WRITE, 1, a + off, len, amr,
				     (uintptr_t)b + off2, eng_mr_key(bmr), ENG_SEND_SIGNALED),
			  0);
		REQUIRE(poll_n(A.scq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_RDMA_WRITE);
		/* Read it back into another place of a: proves the WRITE landed, then the READ. */
		memset(a + off, 0, len);
		CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_READ, 2, a + off, len, amr,
				     (uintptr_t)b + off2, eng_mr_key(bmr), ENG_SEND_SIGNALED),
			  0);
		REQUIRE(poll_n(A.scq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_RDMA_READ);
		CHECK_UINT(c.byte_len, len);
		{
			uint8_t *want = malloc(len + 1);

			fill_rand(want, len, (unsigned)i);
			CHECK_MEM(a + off, want, len);
			CHECK_MEM(b + off2, want, len);
			free(want);
		}
		if (t_failures)
			break;
	}
	/* Nothing arrived on the target's CQs: one-sided operations make no completions there. */
	CHECK_INT(eng_cq_poll(B.rcq, 1, &c), 0);
	CHECK_INT(eng_cq_poll(B.scq, 1, &c), 0);
	CHECK(guards_ok(b, BIG, 0x44));
	eng_mr_dereg(amr);
	eng_mr_dereg(bmr);
	pair_destroy(&A, &B);
	xfree(a);
	xfree(b);
}

/* A deep queue of mixed, mostly unsignaled work; the last signaled completion covers all. */
static void test_engine_pipeline(void)
{
	enum { N = 2000 };
	uint8_t *a, *b, *r;
	struct eng_mr *amr, *bmr, *rmr;
	struct eng_cqe c[64];
	int sends = 0, recvd = 0;

	REQUIRE(connect_default(1024));
	a = xalloc(1 << 20, 1);
	b = xalloc(1 << 20, 2);
	r = xalloc(N * 64, 3);
	amr = eng_mr_reg(A.pd, a, 1 << 20, (uintptr_t)a, ENG_ACCESS_LOCAL_WRITE);
	bmr = eng_mr_reg(B.pd, b, 1 << 20, (uintptr_t)b,
			 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_READ);
	rmr = eng_mr_reg(B.pd, r, N * 64, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	fill_rand(a, 1 << 20, 99);
	for (int i = 0; i < N; i++) {
		int err;

		if (i % 3 == 0) {
			CHECK_INT(post_recv1(B.qp, (uint64_t)i, r + (i * 64), 64, rmr), 0);
			sends++;
		}
		for (;;) {
			if (i % 3 == 0)
				err = post_send1(A.qp, ENG_WR_SEND, (uint64_t)i, a + i, 64, amr, 0, 0,
						 (i % 60 == 0 ? ENG_SEND_SIGNALED : 0) |
							 (i % 2 ? ENG_SEND_INLINE : 0));
			else
				err = post_send1(A.qp, ENG_WR_RDMA_WRITE, (uint64_t)i,
						 a + i * 500 % 500000, 500, amr,
						 (uintptr_t)b + (uint64_t)i * 500 % 500000,
						 eng_mr_key(bmr), i % 50 == 0 ? ENG_SEND_SIGNALED : 0);
			if (err != ENOMEM)
				break;
			/* SQ full: reap completions (a signaled WR frees the ones before it). */
			if (!eng_cq_poll(A.scq, 64, c))
				usleep(10);
		}
		CHECK_INT(err, 0);
		if (t_failures)
			break;
	}
	while (recvd < sends) {
		int k = poll_n(B.rcq, c, 1, 5000);

		REQUIRE(k == 1);
		CHECK_INT(c[0].status, ENG_WC_SUCCESS);
		recvd++;
	}
	for (int i = 0; i < N; i += 3)
		CHECK_MEM(r + i * 64, a + i, 64);
	eng_mr_dereg(amr);
	eng_mr_dereg(bmr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(a);
	xfree(b);
	xfree(r);
}

/* A WRITE to an STag the target never registered: TERMINATE, both sides in error, flushed. */
static void test_engine_bad_rkey_terminates(void)
{
	uint8_t *a, *r;
	struct eng_mr *amr, *rmr;
	struct eng_cqe c[8];
	int n;

	REQUIRE(connect_default(0));
	a = xalloc(4096, 0);
	r = xalloc(4096, 0);
	amr = eng_mr_reg(A.pd, a, 4096, (uintptr_t)a, ENG_ACCESS_LOCAL_WRITE);
	rmr = eng_mr_reg(B.pd, r, 4096, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	CHECK_INT(post_recv1(B.qp, 77, r, 4096, rmr), 0);
	CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_WRITE, 1, a, 100, amr, 0x1000, 0xdead00,
			     ENG_SEND_SIGNALED),
		  0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(wait_flag(&A.closed, 5000), 0);
	/* The target found the bad STag; the initiator was told by TERMINATE. */
	CHECK(siw_err_is_term(B.close_err));
	CHECK_INT(A.close_err, SIW_ERR_TERMINATED);
	/* B's posted receive is flushed. */
	n = poll_n(B.rcq, c, 1, 2000);
	CHECK_INT(n, 1);
	CHECK_INT(c[0].status, ENG_WC_WR_FLUSH_ERR);
	CHECK_UINT(c[0].wr_id, 77);
	/* Posting on an errored QP completes at once with a flush. */
	CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 5, a, 1, amr, 0, 0, 0), 0);
	n = poll_n(A.scq, c, 8, 500);
	CHECK(n >= 1);
	CHECK_INT(c[n - 1].status, ENG_WC_WR_FLUSH_ERR);
	CHECK_UINT(c[n - 1].wr_id, 5);
	eng_mr_dereg(amr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(a);
	xfree(r);
}

/* A SEND with no receive posted: iWARP terminates (DDP untagged "no buffer"). */
static void test_engine_send_without_recv(void)
{
	uint8_t buf[64] = {0};
	struct eng_mr *mr;

	REQUIRE(connect_default(0));
	mr = eng_mr_reg(A.pd, buf, sizeof(buf), (uintptr_t)buf, 0);
	CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 1, buf, 8, mr, 0, 0, 0), 0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(wait_flag(&A.closed, 5000), 0);
	CHECK_INT(B.close_err, SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
					    TERM_ECODE_DDP_U_INV_MSN_NOBUF));
	CHECK_INT(A.close_err, SIW_ERR_TERMINATED);
	eng_mr_dereg(mr);
	pair_destroy(&A, &B);
}

static void test_engine_disconnect(void)
{
	struct eng_qp_info info;

	REQUIRE(connect_default(0));
	CHECK_INT(eng_qp_query(A.qp, &info), 0);
	CHECK_INT(info.state, ENG_QPS_RTS);
	CHECK(info.connected);
	CHECK_INT(eng_qp_disconnect(A.qp), 0);
	CHECK_INT(wait_flag(&A.closed, 5000), 0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(A.close_err, 0);
	CHECK_INT(B.close_err, 0);
	CHECK_INT(eng_qp_query(B.qp, &info), 0);
	CHECK_INT(info.state, ENG_QPS_ERR);
	pair_destroy(&A, &B);
}

/* An armed CQ makes its channel fd readable on the next completion, once. */
static void test_engine_channel(void)
{
	struct pair_opts o;
	uint8_t s[16] = {1}, r[16];
	struct eng_mr *smr, *rmr;
	struct pollfd pfd;
	void *user = NULL;
	struct eng_cqe c;

	pair_default_opts(&o);
	o.use_channel = true;
	REQUIRE(pair_connect(&A, &B, &o) == 0);
	smr = eng_mr_reg(A.pd, s, sizeof(s), (uintptr_t)s, 0);
	rmr = eng_mr_reg(B.pd, r, sizeof(r), (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	CHECK_INT(eng_cq_arm(B.rcq, false), 0);
	pfd.fd = eng_channel_fd(B.ch);
	pfd.events = POLLIN;
	CHECK_INT(poll(&pfd, 1, 0), 0);
	CHECK_INT(post_recv1(B.qp, 1, r, sizeof(r), rmr), 0);
	CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 1, s, 16, smr, 0, 0, 0), 0);
	CHECK_INT(poll(&pfd, 1, 5000), 1);
	CHECK_INT(eng_channel_get_event(B.ch, &user), 0);
	CHECK(user == &B);
	CHECK_INT(poll_n(B.rcq, &c, 1, 1000), 1);
	/* Not re-armed: the next completion raises no event. */
	CHECK_INT(post_recv1(B.qp, 2, r, sizeof(r), rmr), 0);
	CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 2, s, 16, smr, 0, 0, 0), 0);
	CHECK_INT(poll_n(B.rcq, &c, 1, 2000), 1);
	CHECK_INT(poll(&pfd, 1, 100), 0);
	eng_mr_dereg(smr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
}

/* Peer-to-peer with each RTR type, CRC on, markers on: data still flows. */
static void test_engine_mpa_variants(void)
{
	static const struct {
		bool p2p, crc, markers;
		uint16_t rtr;
	} v[] = {
		{true, false, false, 1 << SIW_RTR_WRITE}, {true, true, false, 1 << SIW_RTR_READ},
		{true, false, false, 1 << SIW_RTR_SEND},  {false, true, true, 0},
		{false, false, true, 0},
	};

	for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct pair_opts o;
		uint8_t *s = xalloc(200000, 5), *r = xalloc(200000, 6);
		struct eng_mr *smr, *rmr;
		struct eng_cqe c;

		pair_default_opts(&o);
		o.icfg.p2p = v[i].p2p;
		o.icfg.rtr_types = v[i].rtr;
		o.rcfg.rtr_types = 1 << SIW_RTR_WRITE | 1 << SIW_RTR_READ | 1 << SIW_RTR_SEND;
		o.icfg.crc = v[i].crc ? SIW_CRC_REQUIRE : SIW_CRC_OFF;
		o.icfg.markers = o.rcfg.markers = v[i].markers;
		o.icfg.accept_markers = o.rcfg.accept_markers = v[i].markers;
		if (pair_connect(&A, &B, &o)) {
			t_fail(__FILE__, __LINE__, "variant %u: connect failed", i);
			break;
		}
		smr = eng_mr_reg(A.pd, s, 200000, (uintptr_t)s, 0);
		rmr = eng_mr_reg(B.pd, r, 200000, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
		fill_rand(s, 200000, i);
		CHECK_INT(post_recv1(B.qp, 1, r, 200000, rmr), 0);
		CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 1, s, 200000, smr, 0, 0, 0), 0);
		CHECK_INT(poll_n(B.rcq, &c, 1, 5000), 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_MEM(r, s, 200000);
		eng_mr_dereg(smr);
		eng_mr_dereg(rmr);
		pair_destroy(&A, &B);
		xfree(s);
		xfree(r);
		if (t_failures) {
			fprintf(stderr, "  variant %u failed\n", i);
			break;
		}
	}
}

/*
 * The target application unmaps a registered buffer (a bug, but user memory is not pinned):
 * the peer's WRITE into it must fail the connection with a local error, not crash the process.
 * Small writes take the staged path, large ones the direct readv() path.
 */
static void test_engine_unmapped_target(void)
{
	static const uint32_t sizes[] = {100, 300000};

	for (unsigned i = 0; i < 2; i++) {
		size_t len = 1 << 20;
		uint8_t *a = xalloc(len, 1);
		uint8_t *t = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct eng_mr *amr, *tmr;

		REQUIRE(t != MAP_FAILED);
		REQUIRE(connect_default(0));
		amr = eng_mr_reg(A.pd, a, len, (uintptr_t)a, 0);
		tmr = eng_mr_reg(B.pd, t, len, (uintptr_t)t,
				 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE);
		munmap(t, len);
		CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_WRITE, 1, a, sizes[i], amr, (uintptr_t)t,
				     eng_mr_key(tmr), 0),
			  0);
		check_catastrophic_end(&B, &A);
		eng_mr_dereg(amr);
		eng_mr_dereg(tmr);
		pair_destroy(&A, &B);
		xfree(a);
	}
}

/* Many READs outstanding: at most ORD on the wire at once, all complete in order; a fenced SEND
 * waits for them; SEND with Invalidate kills the target's STag. */
static void test_engine_reads_fence_invalidate(void)
{
	struct pair_opts o;
	uint8_t *a = xalloc(1 << 20, 0), *b = xalloc(1 << 20, 0), r[64];
	struct eng_mr *amr, *bmr, *rmr, *vmr;
	struct eng_cqe c[64];
	int got = 0;

	pair_default_opts(&o);
	o.ird = o.ord = 2;
	o.sq = 256;
	REQUIRE(pair_connect(&A, &B, &o) == 0);
	amr = eng_mr_reg(A.pd, a, 1 << 20, (uintptr_t)a, ENG_ACCESS_LOCAL_WRITE);
	bmr = eng_mr_reg(B.pd, b, 1 << 20, (uintptr_t)b,
			 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_READ);
	rmr = eng_mr_reg(B.pd, r, sizeof(r), (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	vmr = eng_mr_reg(B.pd, b, 4096, (uintptr_t)b, ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE);
	fill_rand(b, 1 << 20, 5);
	for (int i = 0; i < 40; i++)
		CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_READ, (uint64_t)i, a + i * 20000, 20000, amr,
				     (uintptr_t)b + (uint64_t)i * 20000, eng_mr_key(bmr),
				     ENG_SEND_SIGNALED),
			  0);
	/* Fenced SEND with Invalidate of vmr's STag: goes only after all 40 READs completed. */
	CHECK_INT(post_recv1(B.qp, 900, r, sizeof(r), rmr), 0);
	{
		struct eng_sge sge = {(uintptr_t)a, 8, eng_mr_key(amr)};
		struct eng_send_wr wr = {.wr_id = 1000,
					 .opcode = ENG_WR_SEND_WITH_INV,
					 .flags = ENG_SEND_SIGNALED | ENG_SEND_FENCE,
					 .imm_or_inv = eng_mr_key(vmr),
					 .sg_list = &sge,
					 .num_sge = 1};
		int bad;

		CHECK_INT(eng_post_send(A.qp, &wr, 1, &bad), 0);
	}
	while (got < 41) {
		int k = poll_n(A.scq, c, 1, 5000);

		REQUIRE(k == 1);
		CHECK_INT(c[0].status, ENG_WC_SUCCESS);
		/* Completions come in posting order; the fenced SEND is last. */
		CHECK_UINT(c[0].wr_id, got < 40 ? (uint64_t)got : 1000);
		got++;
	}
	CHECK_MEM(a, b, 40 * 20000);
	REQUIRE(poll_n(B.rcq, c, 1, 5000) == 1);
	CHECK_INT(c[0].status, ENG_WC_SUCCESS);
	CHECK_INT(c[0].flags, ENG_WC_WITH_INV);
	CHECK_UINT(c[0].imm_or_inv, eng_mr_key(vmr));
	/* The invalidated STag no longer admits a WRITE: the peer gets a TERMINATE. */
	CHECK_INT(post_send1(A.qp, ENG_WR_RDMA_WRITE, 7, a, 16, amr, (uintptr_t)b, eng_mr_key(vmr), 0),
		  0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(B.close_err, SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED,
					    TERM_ECODE_DDP_T_INV_STAG));
	eng_mr_dereg(amr);
	eng_mr_dereg(bmr);
	eng_mr_dereg(rmr);
	eng_mr_dereg(vmr);
	pair_destroy(&A, &B);
	xfree(a);
	xfree(b);
}

/* Receives from a shared receive queue; the limit event fires once when it runs low. */
static void test_engine_srq(void)
{
	struct pair_opts o;
	uint8_t s[32] = "shared receive queue", r[8][32];
	struct eng_mr *smr, *rmr;
	struct eng_cqe c;
	struct eng_recv_wr rw[8];
	struct eng_sge rs[8];
	struct eng_srq_attr sa = {.srq_limit = 4};
	struct eng_async_event ev;
	int bad;

	pair_default_opts(&o);
	o.use_srq = true;
	REQUIRE(pair_connect(&A, &B, &o) == 0);
	rmr = eng_mr_reg(B.pd, r, sizeof(r), (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	smr = eng_mr_reg(A.pd, s, sizeof(s), (uintptr_t)s, 0);
	for (int i = 0; i < 8; i++) {
		rs[i] = (struct eng_sge){(uintptr_t)r[i], 32, eng_mr_key(rmr)};
		rw[i] = (struct eng_recv_wr){.wr_id = (uint64_t)i, .sg_list = &rs[i], .num_sge = 1};
	}
	/* A QP with an SRQ takes no receives of its own. */
	CHECK_INT(eng_post_recv(B.qp, rw, 1, &bad), EINVAL);
	CHECK_INT(eng_post_srq_recv(B.srq, rw, 8, &bad), 0);
	CHECK_INT(eng_srq_modify(B.srq, &sa, true, false), 0);
	for (int i = 0; i < 6; i++) {
		s[0] = (uint8_t)('a' + i);
		CHECK_INT(post_send1(A.qp, ENG_WR_SEND, (uint64_t)i, s, 32, smr, 0, 0, 0), 0);
		REQUIRE(poll_n(B.rcq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_UINT(c.wr_id, (uint64_t)i);
		CHECK_INT(r[i][0], 'a' + i);
	}
	/* 2 left < limit 4: one SRQ_LIMIT_REACHED event, for the SRQ's user pointer. */
	CHECK_INT(eng_ctx_get_async_event(B.ctx, &ev), 0);
	CHECK_INT(ev.type, ENG_EVENT_SRQ_LIMIT_REACHED);
	CHECK(ev.obj == &B);
	CHECK_INT(eng_srq_destroy(B.srq), EBUSY); /* still used by the QP */
	eng_mr_dereg(smr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
}

/* fork(): the child cannot use the parent's QPs (and must not hang trying); the parent goes on. */
static void test_engine_fork(void)
{
	uint8_t s[16] = "after fork", r[16];
	struct eng_mr *smr, *rmr;
	struct eng_cqe c;
	int status = -1;
	pid_t pid;

	REQUIRE(connect_default(0));
	smr = eng_mr_reg(A.pd, s, sizeof(s), (uintptr_t)s, 0);
	rmr = eng_mr_reg(B.pd, r, sizeof(r), (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	pid = fork();
	if (pid == 0) {
		/* Refused, and a destroy completes without the (absent) progress thread. */
		int rc = post_send1(A.qp, ENG_WR_SEND, 1, s, 16, smr, 0, 0, 0) == EIO ? 0 : 1;

		eng_qp_destroy(A.qp);
		_exit(rc);
	}
	REQUIRE(pid > 0);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(post_recv1(B.qp, 1, r, sizeof(r), rmr), 0);
	CHECK_INT(post_send1(A.qp, ENG_WR_SEND, 1, s, 16, smr, 0, 0, 0), 0);
	CHECK_INT(poll_n(B.rcq, &c, 1, 5000), 1);
	CHECK_INT(c.status, ENG_WC_SUCCESS);
	CHECK_MEM(r, s, 16);
	eng_mr_dereg(smr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
}

/*
 * eng_post_send_all (ibv_wr_complete) queues all of its WRs or none: for a full send queue, or
 * a bad WR anywhere in the list. Checked on a QP that is not connected, so that what was
 * posted stays in its send queue: a batch of exactly the room left goes in only if the failed
 * batches left nothing behind.
 */
static void test_engine_post_send_all(void)
{
	struct pair_opts o;
	struct eng_send_wr w[8];
	struct eng_sge sge;
	uint8_t buf[64] = {0};
	struct eng_mr *mr;
	struct side s;
	int bad;

	pair_default_opts(&o);
	o.sq = 8; /* a power of two: the queue holds exactly 8 */
	REQUIRE(side_open(&s, &o) == 0);
	mr = eng_mr_reg(s.pd, buf, sizeof(buf), (uintptr_t)buf, ENG_ACCESS_LOCAL_WRITE);
	REQUIRE(mr);
	sge = (struct eng_sge){(uintptr_t)buf, 8, eng_mr_key(mr)};
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 8; i++) {
		w[i].wr_id = (uint64_t)i;
		w[i].opcode = ENG_WR_SEND;
		w[i].flags = ENG_SEND_SIGNALED;
		w[i].sg_list = &sge;
		w[i].num_sge = 1;
	}
	CHECK_INT(eng_post_send(s.qp, w, 5, &bad), 0);
	/* Room for 3: a batch of 4 is refused whole. */
	CHECK_INT(eng_post_send_all(s.qp, w, 4, &bad), ENOMEM);
	CHECK_INT(bad, 3);
	/* A bad WR second in the list: refused whole, the first not queued either. */
	w[1].num_sge = 99;
	CHECK_INT(eng_post_send_all(s.qp, w, 3, &bad), EINVAL);
	CHECK_INT(bad, 1);
	w[1].num_sge = 1;
	/* Exactly the room left: all 3 go in, and then the queue is full. */
	CHECK_INT(eng_post_send_all(s.qp, w, 3, &bad), 0);
	CHECK_INT(eng_post_send(s.qp, w, 1, &bad), ENOMEM);
	CHECK_INT(eng_mr_dereg(mr), 0);
	side_close(&s);
}

T_MAIN(T_CASE(test_engine_fork), T_CASE(test_engine_reads_fence_invalidate), T_CASE(test_engine_srq),
       T_CASE(test_engine_unmapped_target), T_CASE(test_engine_send_recv), T_CASE(test_engine_write_read_one_sided),
       T_CASE(test_engine_pipeline), T_CASE(test_engine_bad_rkey_terminates),
       T_CASE(test_engine_send_without_recv), T_CASE(test_engine_disconnect),
       T_CASE(test_engine_channel), T_CASE(test_engine_mpa_variants),
       T_CASE(test_engine_post_send_all))
