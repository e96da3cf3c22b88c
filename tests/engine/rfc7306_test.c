// SPDX-License-Identifier: MIT
/*
 * RFC 7306 end to end through engine.h (docs/PROTOCOL.md §6.5): the MPA handshake that turns it
 * on only between two softiwarp ends, SEND and RDMA WRITE with immediate data, FetchAdd and
 * CmpSwap (values, ordering after WRITEs, ORD flow control, concurrency from several QPs and
 * progress threads on one word), the TERMINATEs of misused atomics, and the local refusal when
 * the peer did not agree (nothing goes on the wire).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "eng_pair.h"
#include "error.h"
#include "mpa.h"
#include "test.h"

static struct side A, B;

static uint8_t *xalloc(size_t n, uint8_t fill)
{
	uint8_t *p = aligned_alloc(64, (n + 128 + 63) & ~(size_t)63);

	memset(p, fill, n + 128);
	return p + 64; /* 64 guard bytes each side, 8-aligned */
}

static void xfree(uint8_t *p)
{
	free(p - 64);
}

static bool guards_ok(const uint8_t *p, size_t n, uint8_t fill)
{
	for (int i = 1; i <= 64; i++)
		if (p[-i] != fill || p[n + (size_t)i - 1] != fill)
			return false;
	return true;
}

static int post(struct eng_qp *qp, enum eng_wr_opcode op, uint64_t id, void *buf, uint32_t len,
		uint32_t lkey, uint64_t raddr, uint32_t rkey, unsigned flags, uint32_t imm,
		uint64_t compare_add, uint64_t swap)
{
	struct eng_sge sge = {(uintptr_t)buf, len, lkey};
	struct eng_send_wr wr = {.wr_id = id,
				 .opcode = op,
				 .flags = flags,
				 .imm_or_inv = imm,
				 .sg_list = &sge,
				 .num_sge = buf ? 1 : 0,
				 .remote_addr = raddr,
				 .rkey = rkey,
				 .compare_add = compare_add,
				 .swap = swap};
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

static void opts_7306(struct pair_opts *o, bool i7306, bool r7306)
{
	pair_default_opts(o);
	o->icfg.rfc7306 = i7306;
	o->rcfg.rfc7306 = r7306;
}

static bool connect_7306(bool i7306, bool r7306)
{
	struct pair_opts o;

	opts_7306(&o, i7306, r7306);
	if (pair_connect(&A, &B, &o)) {
		t_fail(__FILE__, __LINE__, "pair_connect failed");
		return false;
	}
	return true;
}

static bool qp_rfc7306(struct eng_qp *qp)
{
	struct eng_qp_info info;

	return !eng_qp_query(qp, &info) && info.mpa.rfc7306;
}

/* ---- the handshake ------------------------------------------------------------------------- */

/* The two flag bits, and why an echoed request (kernel siw's reply) does not turn it on. */
static void test_rfc7306_mpa_handshake(void)
{
	struct siw_mpa_cfg on = {.rev = 2, .relaxed_ird = true, .rfc7306 = true};
	struct siw_mpa_cfg off = {.rev = 2, .relaxed_ird = true};
	uint8_t req[64], rep[64];
	struct siw_mpa_frame f;
	struct siw_mpa_result rres, ires;
	int n;

	/* softiwarp <-> softiwarp: OFFER in the request, ACCEPT (not OFFER) in the reply. */
	n = siw_mpa_build_req(&on, 4, 4, NULL, 0, req, sizeof(req));
	REQUIRE(n > 0);
	CHECK_UINT(req[16], MPA_FLAG_ENHANCED | MPA_FLAG_RFC7306_OFFER);
	REQUIRE(siw_mpa_parse(req, (size_t)n, false, &f) == n);
	CHECK_INT(siw_mpa_respond(&on, &f, 4, 4, &rres), 0);
	CHECK(rres.rfc7306);
	n = siw_mpa_build_reply(&on, &rres, false, NULL, 0, rep, sizeof(rep));
	REQUIRE(n > 0);
	CHECK_UINT(rep[16], MPA_FLAG_ENHANCED | MPA_FLAG_RFC7306_ACCEPT);
	REQUIRE(siw_mpa_parse(rep, (size_t)n, true, &f) == n);
	CHECK_INT(siw_mpa_check_reply(&on, 4, 4, &f, &ires), 0);
	CHECK(ires.rfc7306);

	/* A responder that does not do it (off, kernel siw, hardware) never says ACCEPT. */
	n = siw_mpa_build_req(&on, 4, 4, NULL, 0, req, sizeof(req));
	REQUIRE(siw_mpa_parse(req, (size_t)n, false, &f) == n);
	CHECK_INT(siw_mpa_respond(&off, &f, 4, 4, &rres), 0);
	CHECK(!rres.rfc7306);
	n = siw_mpa_build_reply(&off, &rres, false, NULL, 0, rep, sizeof(rep));
	CHECK_UINT(rep[16] & (MPA_FLAG_RFC7306_OFFER | MPA_FLAG_RFC7306_ACCEPT), 0);
	REQUIRE(siw_mpa_parse(rep, (size_t)n, true, &f) == n);
	CHECK_INT(siw_mpa_check_reply(&on, 4, 4, &f, &ires), 0);
	CHECK(!ires.rfc7306);

	/*
	 * Kernel siw answers with the request's flag byte (only the key changes): the echoed
	 * OFFER must not count as an answer, even with every reserved bit set.
	 */
	for (unsigned extra = 0; extra < 2; extra++) {
		memcpy(rep, req, (size_t)n);
		memcpy(rep, MPA_KEY_REP, MPA_KEY_LEN);
		if (extra)
			rep[16] |= MPA_FLAGS_RSVD;
		REQUIRE(siw_mpa_parse(rep, (size_t)n, true, &f) == n);
		CHECK_INT(siw_mpa_check_reply(&on, 4, 4, &f, &ires), 0);
		CHECK(!ires.rfc7306);
	}

	/* An initiator that did not offer: the responder stays off. Off initiators never offer. */
	n = siw_mpa_build_req(&off, 4, 4, NULL, 0, req, sizeof(req));
	CHECK_UINT(req[16] & (MPA_FLAG_RFC7306_OFFER | MPA_FLAG_RFC7306_ACCEPT), 0);
	REQUIRE(siw_mpa_parse(req, (size_t)n, false, &f) == n);
	CHECK_INT(siw_mpa_respond(&on, &f, 4, 4, &rres), 0);
	CHECK(!rres.rfc7306);
	/* A reply ACCEPT that we did not ask for (off) changes nothing. */
	rep[16] = MPA_FLAG_ENHANCED | MPA_FLAG_RFC7306_ACCEPT;
	memcpy(rep, MPA_KEY_REP, MPA_KEY_LEN);
	REQUIRE(siw_mpa_parse(rep, (size_t)n, true, &f) == n);
	CHECK_INT(siw_mpa_check_reply(&off, 4, 4, &f, &ires), 0);
	CHECK(!ires.rfc7306);
	/* A reject carries neither bit. */
	rres.rfc7306 = true;
	n = siw_mpa_build_reply(&on, &rres, true, NULL, 0, rep, sizeof(rep));
	CHECK_UINT(rep[16] & (MPA_FLAG_RFC7306_OFFER | MPA_FLAG_RFC7306_ACCEPT), 0);
}

/* ---- immediate data ------------------------------------------------------------------------ */

static void test_rfc7306_send_with_imm(void)
{
	static const uint32_t sizes[] = {0, 1, 100, 5000, 300000};
	const size_t cap = 300000;
	uint8_t *s, *r;
	struct eng_mr *smr, *rmr;
	struct eng_cqe c;

	REQUIRE(connect_7306(true, true));
	CHECK(qp_rfc7306(A.qp));
	CHECK(qp_rfc7306(B.qp));
	s = xalloc(cap, 0x11);
	r = xalloc(cap, 0x22);
	smr = eng_mr_reg(A.pd, s, cap, (uintptr_t)s, 0);
	rmr = eng_mr_reg(B.pd, r, cap, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	REQUIRE(smr && rmr);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint32_t imm = htonl(0x12345600u + i);
		unsigned flags = ENG_SEND_SIGNALED | (i == 2 ? ENG_SEND_SOLICITED : 0);

		for (size_t k = 0; k < sizes[i]; k++)
			s[k] = (uint8_t)(k * 7 + i);
		memset(r, 0x22, cap);
		CHECK_INT(post_recv1(B.qp, 100 + i, r, cap, rmr), 0);
		CHECK_INT(post(A.qp, ENG_WR_SEND_WITH_IMM, i, s, sizes[i], eng_mr_key(smr), 0, 0,
			       flags, imm, 0, 0),
			  0);
		REQUIRE(poll_n(A.scq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_SEND);
		CHECK_UINT(c.wr_id, i);
		CHECK_UINT(c.byte_len, sizes[i]);
		REQUIRE(poll_n(B.rcq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_RECV);
		CHECK_UINT(c.wr_id, 100 + i);
		CHECK_UINT(c.byte_len, sizes[i]);
		CHECK_UINT(c.flags, ENG_WC_WITH_IMM);
		CHECK_UINT(c.imm_or_inv, imm);
		CHECK_UINT(c.qp_num, eng_qp_num(B.qp));
		CHECK_INT(c.solicited, i == 2);
		CHECK_MEM(r, s, sizes[i]);
		CHECK(guards_ok(r, cap, 0x22));
		/* one receive per SEND_WITH_IMM: nothing else completed */
		CHECK_INT(poll_n(B.rcq, &c, 1, 20), 0);
	}
	/* Inline, then a plain SEND: no immediate flag carried over. */
	memcpy(s, "inline!", 8);
	CHECK_INT(post_recv1(B.qp, 200, r, cap, rmr), 0);
	CHECK_INT(post_recv1(B.qp, 201, r + 64, cap - 64, rmr), 0);
	CHECK_INT(post(A.qp, ENG_WR_SEND_WITH_IMM, 50, s, 8, 0, 0, 0, ENG_SEND_INLINE, htonl(7), 0,
		       0),
		  0);
	CHECK_INT(post(A.qp, ENG_WR_SEND, 51, s, 8, eng_mr_key(smr), 0, 0, 0, 0, 0, 0), 0);
	REQUIRE(poll_n(B.rcq, &c, 1, 5000) == 1);
	CHECK_UINT(c.wr_id, 200);
	CHECK_UINT(c.flags, ENG_WC_WITH_IMM);
	CHECK_UINT(c.imm_or_inv, htonl(7));
	CHECK_UINT(c.byte_len, 8);
	CHECK_MEM(r, "inline!", 8);
	REQUIRE(poll_n(B.rcq, &c, 1, 5000) == 1);
	CHECK_UINT(c.wr_id, 201);
	CHECK_INT(c.opcode, ENG_WC_RECV);
	CHECK_UINT(c.flags, 0);
	CHECK_INT(A.closed + B.closed, 0);
	eng_mr_dereg(smr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(s);
	xfree(r);
}

static void test_rfc7306_write_with_imm(void)
{
	static const uint32_t sizes[] = {0, 1, 4096, 1000000};
	const size_t cap = 1000000;
	uint8_t *s, *t, *r;
	struct eng_mr *smr, *tmr, *rmr;
	struct eng_cqe c;

	REQUIRE(connect_7306(true, true));
	s = xalloc(cap, 0x11);
	t = xalloc(cap, 0x33);
	r = xalloc(64, 0x44);
	smr = eng_mr_reg(A.pd, s, cap, (uintptr_t)s, 0);
	tmr = eng_mr_reg(B.pd, t, cap, (uintptr_t)t,
			 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE);
	rmr = eng_mr_reg(B.pd, r, 64, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	REQUIRE(smr && tmr && rmr);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint32_t imm = htonl(0xabcd0000u + i);

		for (size_t k = 0; k < sizes[i]; k++)
			s[k] = (uint8_t)(k * 13 + i);
		CHECK_INT(post_recv1(B.qp, 300 + i, r, 64, rmr), 0);
		/* A plain WRITE first: its length must not leak into the next completion. */
		CHECK_INT(post(A.qp, ENG_WR_RDMA_WRITE, 90, s, 3, eng_mr_key(smr), (uintptr_t)t,
			       eng_mr_key(tmr), 0, 0, 0, 0),
			  0);
		CHECK_INT(post(A.qp, ENG_WR_RDMA_WRITE_WITH_IMM, i, s, sizes[i], eng_mr_key(smr),
			       (uintptr_t)t, eng_mr_key(tmr),
			       ENG_SEND_SIGNALED | (i == 1 ? ENG_SEND_SOLICITED : 0), imm, 0, 0),
			  0);
		REQUIRE(poll_n(A.scq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_RDMA_WRITE);
		CHECK_UINT(c.wr_id, i);
		CHECK_UINT(c.byte_len, sizes[i]);
		REQUIRE(poll_n(B.rcq, &c, 1, 5000) == 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_INT(c.opcode, ENG_WC_RECV_RDMA_WITH_IMM);
		CHECK_UINT(c.wr_id, 300 + i);
		CHECK_UINT(c.byte_len, sizes[i]);
		CHECK_UINT(c.flags, ENG_WC_WITH_IMM);
		CHECK_UINT(c.imm_or_inv, imm);
		CHECK_INT(c.solicited, i == 1);
		CHECK_UINT(c.qp_num, eng_qp_num(B.qp));
		/* The data is in place when the completion is seen; the receive buffer untouched. */
		if (sizes[i] >= 3)
			CHECK_MEM(t, s, sizes[i]);
		CHECK(guards_ok(t, cap, 0x33));
		for (int k = 0; k < 64; k++)
			if (r[k] != 0x44) {
				t_fail(__FILE__, __LINE__, "receive buffer of WRITE_WITH_IMM written");
				break;
			}
	}
	/* Without a posted receive it is a "no buffer" TERMINATE, as for a SEND. */
	CHECK_INT(post(A.qp, ENG_WR_RDMA_WRITE_WITH_IMM, 9, s, 8, eng_mr_key(smr), (uintptr_t)t,
		       eng_mr_key(tmr), 0, 1, 0, 0),
		  0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(wait_flag(&A.closed, 5000), 0);
	CHECK_INT(B.close_err, SIW_ERR_TERM(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
					    TERM_ECODE_DDP_U_INV_MSN_NOBUF));
	CHECK_INT(A.close_err, SIW_ERR_TERMINATED);
	eng_mr_dereg(smr);
	eng_mr_dereg(tmr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(s);
	xfree(t);
	xfree(r);
}

/* ---- atomics ------------------------------------------------------------------------------- */

static void test_rfc7306_atomics(void)
{
	struct pair_opts o;
	uint8_t *t, *res, *s;
	struct eng_mr *tmr, *resmr, *smr;
	struct eng_cqe c[64];
	uint64_t *word, *out;
	struct eng_device_attr da;
	const struct eng_device *devs;

	opts_7306(&o, true, true);
	o.ird = o.ord = 2; /* 40 atomics through 2 ORD slots: flow control */
	REQUIRE(pair_connect(&A, &B, &o) == 0);
	REQUIRE(eng_devices(&devs) > 0);
	eng_device_query(&devs[0], &da);
	CHECK_INT(da.atomic_cap, 1); /* IBV_ATOMIC_HCA */
	t = xalloc(64, 0x55);
	res = xalloc(8 * 64, 0x66);
	s = xalloc(64, 0);
	tmr = eng_mr_reg(B.pd, t, 64, (uintptr_t)t,
			 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC | ENG_ACCESS_REMOTE_WRITE);
	resmr = eng_mr_reg(A.pd, res, 8 * 64, (uintptr_t)res, ENG_ACCESS_LOCAL_WRITE);
	smr = eng_mr_reg(A.pd, s, 64, (uintptr_t)s, 0);
	REQUIRE(tmr && resmr && smr);
	word = (uint64_t *)(void *)(t + 8);
	out = (uint64_t *)(void *)res;
	*word = 5;

	CHECK_INT(post(A.qp, ENG_WR_ATOMIC_FETCH_AND_ADD, 1, out, 8, eng_mr_key(resmr),
		       (uintptr_t)word, eng_mr_key(tmr), ENG_SEND_SIGNALED, 0, 7, 0),
		  0);
	REQUIRE(poll_n(A.scq, c, 1, 5000) == 1);
	CHECK_INT(c[0].status, ENG_WC_SUCCESS);
	CHECK_INT(c[0].opcode, ENG_WC_FETCH_ADD);
	CHECK_UINT(c[0].wr_id, 1);
	CHECK_UINT(c[0].byte_len, 8);
	CHECK_UINT(out[0], 5);
	CHECK_UINT(*word, 12);
	/* CmpSwap that matches, then one that does not. */
	CHECK_INT(post(A.qp, ENG_WR_ATOMIC_CMP_AND_SWP, 2, out + 1, 8, eng_mr_key(resmr),
		       (uintptr_t)word, eng_mr_key(tmr), ENG_SEND_SIGNALED, 0, 12, 0x1122334455667788ull),
		  0);
	CHECK_INT(post(A.qp, ENG_WR_ATOMIC_CMP_AND_SWP, 3, out + 2, 8, eng_mr_key(resmr),
		       (uintptr_t)word, eng_mr_key(tmr), ENG_SEND_SIGNALED, 0, 12, 99),
		  0);
	REQUIRE(poll_n(A.scq, c, 2, 5000) == 2);
	CHECK_INT(c[0].opcode, ENG_WC_COMP_SWAP);
	CHECK_UINT(c[0].wr_id, 2);
	CHECK_INT(c[1].opcode, ENG_WC_COMP_SWAP);
	CHECK_UINT(c[1].wr_id, 3);
	CHECK_UINT(out[1], 12);
	CHECK_UINT(out[2], 0x1122334455667788ull);
	CHECK_UINT(*word, 0x1122334455667788ull);
	/* Wrap-around add. */
	CHECK_INT(post(A.qp, ENG_WR_ATOMIC_FETCH_AND_ADD, 4, out + 3, 8, eng_mr_key(resmr),
		       (uintptr_t)word, eng_mr_key(tmr), ENG_SEND_SIGNALED, 0,
		       ~0x1122334455667788ull + 2, 0),
		  0);
	REQUIRE(poll_n(A.scq, c, 1, 5000) == 1);
	CHECK_UINT(*word, 1);

	/*
	 * Stream order: a WRITE to the word, then atomics, then a READ of it. 40 unsignaled and
	 * signaled atomics through ORD 2; each sees the previous one's result.
	 */
	memcpy(s, "\x64\0\0\0\0\0\0\0", 8); /* 100, little-endian host order */
	CHECK_INT(post(A.qp, ENG_WR_RDMA_WRITE, 5, s, 8, eng_mr_key(smr), (uintptr_t)word,
		       eng_mr_key(tmr), 0, 0, 0, 0),
		  0);
	for (unsigned i = 0; i < 40; i++)
		CHECK_INT(post(A.qp, ENG_WR_ATOMIC_FETCH_AND_ADD, 10 + i, out + 4 + i, 8,
			       eng_mr_key(resmr), (uintptr_t)word, eng_mr_key(tmr),
			       i % 3 || i == 39 ? ENG_SEND_SIGNALED : 0, 0, 1, 0),
			  0);
	{
		int got = 0, want = 0;

		for (unsigned i = 0; i < 40; i++)
			want += i % 3 != 0 || i == 39;
		while (got < want) {
			int n = poll_n(A.scq, c, want - got, 5000);

			if (n <= 0)
				break;
			for (int k = 0; k < n; k++) {
				CHECK_INT(c[k].status, ENG_WC_SUCCESS);
				CHECK_INT(c[k].opcode, ENG_WC_FETCH_ADD);
			}
			got += n;
		}
		CHECK_INT(got, want);
	}
	for (unsigned i = 0; i < 40; i++)
		CHECK_UINT(out[4 + i], 100 + i);
	CHECK_UINT(*word, 140);
	CHECK(guards_ok(t, 64, 0x55));
	CHECK_UINT(*(uint64_t *)(void *)t, 0x5555555555555555ull);
	CHECK(guards_ok(res, 8 * 64, 0x66));
	CHECK_INT(A.closed + B.closed, 0);
	eng_mr_dereg(tmr);
	eng_mr_dereg(resmr);
	eng_mr_dereg(smr);
	pair_destroy(&A, &B);
	xfree(t);
	xfree(res);
	xfree(s);
}

/*
 * Several connections, each with its own progress threads on both ends, hammer one word
 * registered once per target PD: FetchAdd from all of them, then CmpSwap increments (retry
 * until the compare matches). Every old value FetchAdd returned is distinct, the final value
 * exact.
 */
#define HAMMER_PAIRS 4
#define HAMMER_ADDS  2000
#define HAMMER_CAS   150

static pthread_barrier_t hammer_barrier;

struct hammer {
	struct side a, b;
	struct eng_mr *tmr, *resmr;
	uint64_t res[64];
	uint64_t *word;
	uint64_t *seen; /* HAMMER_ADDS old values */
	int err;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	struct eng_cqe c[16];
	unsigned posted = 0, done = 0;

	/* FetchAdd +1, up to 16 outstanding. */
	while (done < HAMMER_ADDS) {
		while (posted < HAMMER_ADDS && posted - done < 16) {
			if (post(h->a.qp, ENG_WR_ATOMIC_FETCH_AND_ADD, posted, &h->res[posted % 64],
				 8, eng_mr_key(h->resmr), (uintptr_t)h->word, eng_mr_key(h->tmr),
				 ENG_SEND_SIGNALED, 0, 1, 0)) {
				h->err = 1;
				pthread_barrier_wait(&hammer_barrier);
				return NULL;
			}
			posted++;
		}
		{
			int n = poll_n(h->a.scq, c, 1, 10000);

			if (n != 1 || c[0].status != ENG_WC_SUCCESS || c[0].wr_id != done) {
				h->err = 2;
				pthread_barrier_wait(&hammer_barrier);
				return NULL;
			}
			h->seen[done] = h->res[done % 64];
			done++;
		}
	}
	/* CmpSwap increments: old -> old + 1, retried with the value seen until it matches. */
	pthread_barrier_wait(&hammer_barrier); /* all FetchAdds are done: their values are 0..N-1 */
	{
		uint64_t guess = 0;

		for (int k = 0; k < HAMMER_CAS;) {
			if (post(h->a.qp, ENG_WR_ATOMIC_CMP_AND_SWP, 1000000 + (unsigned)k, h->res, 8,
				 eng_mr_key(h->resmr), (uintptr_t)h->word, eng_mr_key(h->tmr),
				 ENG_SEND_SIGNALED, 0, guess, guess + 1) ||
			    poll_n(h->a.scq, c, 1, 10000) != 1 || c[0].status != ENG_WC_SUCCESS) {
				h->err = 3;
				return NULL;
			}
			if (h->res[0] == guess) {
				k++;
				guess++;
			} else {
				guess = h->res[0];
			}
		}
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_rfc7306_atomics_concurrent(void)
{
	static struct hammer h[HAMMER_PAIRS];
	pthread_t th[HAMMER_PAIRS];
	uint8_t *t = xalloc(64, 0x77);
	uint64_t *word = (uint64_t *)(void *)(t + 16);
	uint64_t *all = calloc(HAMMER_PAIRS * HAMMER_ADDS, sizeof(uint64_t));
	struct pair_opts o;

	REQUIRE(all);
	*word = 0;
	opts_7306(&o, true, true);
	for (int i = 0; i < HAMMER_PAIRS; i++) {
		memset(&h[i], 0, sizeof(h[i]));
		REQUIRE(pair_connect(&h[i].a, &h[i].b, &o) == 0);
		h[i].tmr = eng_mr_reg(h[i].b.pd, t, 64, (uintptr_t)t,
				      ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC);
		h[i].resmr = eng_mr_reg(h[i].a.pd, h[i].res, sizeof(h[i].res),
					(uintptr_t)h[i].res, ENG_ACCESS_LOCAL_WRITE);
		REQUIRE(h[i].tmr && h[i].resmr);
		h[i].word = word;
		h[i].seen = all + (size_t)i * HAMMER_ADDS;
	}
	pthread_barrier_init(&hammer_barrier, NULL, HAMMER_PAIRS);
	for (int i = 0; i < HAMMER_PAIRS; i++)
		REQUIRE(pthread_create(&th[i], NULL, hammer_main, &h[i]) == 0);
	for (int i = 0; i < HAMMER_PAIRS; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(h[i].err, 0);
	}
	CHECK_UINT(*word, (uint64_t)HAMMER_PAIRS * (HAMMER_ADDS + HAMMER_CAS));
	/* No two FetchAdds saw the same old value; together they saw 0 .. N-1 (in some order). */
	qsort(all, HAMMER_PAIRS * HAMMER_ADDS, sizeof(uint64_t), cmp_u64);
	for (uint64_t i = 0; i < HAMMER_PAIRS * HAMMER_ADDS; i++)
		if (all[i] != i) {
			t_fail(__FILE__, __LINE__, "FetchAdd old values: [%llu] = %llu",
			       (unsigned long long)i, (unsigned long long)all[i]);
			break;
		}
	pthread_barrier_destroy(&hammer_barrier);
	CHECK(guards_ok(t, 64, 0x77));
	for (int i = 0; i < HAMMER_PAIRS; i++) {
		CHECK_INT(h[i].a.closed + h[i].b.closed, 0);
		eng_mr_dereg(h[i].tmr);
		eng_mr_dereg(h[i].resmr);
		pair_destroy(&h[i].a, &h[i].b);
	}
	free(all);
	xfree(t);
}

/* ---- misuse -------------------------------------------------------------------------------- */

/* One misused atomic: the target terminates with `want`, both QPs end in error, all flushed. */
static void violation(int access, size_t off, bool bad_rkey, int want)
{
	uint8_t *t = xalloc(64, 0x5a), *res = xalloc(8, 0x6b), *r = xalloc(64, 0x7c);
	struct eng_mr *tmr, *resmr, *rmr;
	struct eng_qp_stats sa, sb;
	struct eng_qp_info ia, ib;
	struct eng_cqe c[4];
	int n;

	REQUIRE(connect_7306(true, true));
	tmr = eng_mr_reg(B.pd, t, 64, (uintptr_t)t, access);
	resmr = eng_mr_reg(A.pd, res, 8, (uintptr_t)res, ENG_ACCESS_LOCAL_WRITE);
	rmr = eng_mr_reg(B.pd, r, 64, (uintptr_t)r, ENG_ACCESS_LOCAL_WRITE);
	REQUIRE(tmr && resmr && rmr);
	CHECK_INT(post_recv1(B.qp, 42, r, 64, rmr), 0);
	CHECK_INT(post(A.qp, ENG_WR_ATOMIC_FETCH_AND_ADD, 7, res, 8, eng_mr_key(resmr),
		       (uintptr_t)t + off, bad_rkey ? eng_mr_key(tmr) ^ 0x100 : eng_mr_key(tmr),
		       ENG_SEND_SIGNALED, 0, 1, 0),
		  0);
	CHECK_INT(post(A.qp, ENG_WR_SEND, 8, res, 8, eng_mr_key(resmr), 0, 0, ENG_SEND_SIGNALED, 0,
		       0, 0),
		  0);
	CHECK_INT(wait_flag(&B.closed, 5000), 0);
	CHECK_INT(wait_flag(&A.closed, 5000), 0);
	CHECK_INT(B.close_err, want);
	CHECK_INT(A.close_err, SIW_ERR_TERMINATED);
	CHECK_INT(eng_qp_stats(B.qp, &sb), 0);
	CHECK_INT(eng_qp_stats(A.qp, &sa), 0);
	CHECK_UINT(sb.terms_sent, 1);
	CHECK_UINT(sa.terms_recv, 1);
	CHECK_INT(eng_qp_query(A.qp, &ia), 0);
	CHECK_INT(eng_qp_query(B.qp, &ib), 0);
	CHECK_INT(ia.state, ENG_QPS_ERR);
	CHECK_INT(ib.state, ENG_QPS_ERR);
	/*
	 * The atomic waited for its response in the ORQ: flushed. The SEND behind it completed
	 * when TCP took it, or is flushed; either way both complete exactly once.
	 */
	n = poll_n(A.scq, c, 2, 2000);
	n += poll_n(A.scq, c + n, 1, 20);
	CHECK_INT(n, 2);
	for (int k = 0; k < n; k++) {
		if (c[k].wr_id == 7) {
			CHECK_INT(c[k].opcode, ENG_WC_FETCH_ADD);
			CHECK_INT(c[k].status, ENG_WC_WR_FLUSH_ERR);
		} else {
			CHECK_UINT(c[k].wr_id, 8);
			CHECK_INT(c[k].opcode, ENG_WC_SEND);
		}
	}
	CHECK(n == 2 && c[0].wr_id != c[1].wr_id);
	n = poll_n(B.rcq, c, 1, 2000);
	CHECK_INT(n, 1);
	CHECK_UINT(c[0].wr_id, 42);
	CHECK_INT(c[0].status, ENG_WC_WR_FLUSH_ERR);
	/* Nothing was written anywhere. */
	CHECK(guards_ok(t, 64, 0x5a));
	for (int k = 0; k < 64; k++)
		CHECK_UINT(t[k], 0x5a);
	CHECK(guards_ok(res, 8, 0x6b));
	CHECK_UINT(*(uint64_t *)(void *)res, 0x6b6b6b6b6b6b6b6bull);
	eng_mr_dereg(tmr);
	eng_mr_dereg(resmr);
	eng_mr_dereg(rmr);
	pair_destroy(&A, &B);
	xfree(t);
	xfree(res);
	xfree(r);
}

static void test_rfc7306_atomic_no_access(void)
{
	/* Remote write and read, but no REMOTE_ATOMIC. */
	violation(ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_READ, 8,
		  false,
		  SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_ACCESS));
}

static void test_rfc7306_atomic_misaligned(void)
{
	violation(ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC, 4, false,
		  SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
			       TERM_ECODE_RDMAP_BASE_BOUNDS));
}

static void test_rfc7306_atomic_out_of_bounds(void)
{
	/* The last word starts at 56: 64 is one past the region, 60 straddles its end. */
	violation(ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC, 64, false,
		  SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
			       TERM_ECODE_RDMAP_BASE_BOUNDS));
}

static void test_rfc7306_atomic_bad_stag(void)
{
	violation(ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC, 8, true,
		  SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
			       TERM_ECODE_RDMAP_INV_STAG));
}

/*
 * The target application unmapped a buffer it had registered for remote atomics (a bug, but
 * user memory is not pinned): a FetchAdd and a CompareSwap into it must end the connection
 * with a catastrophic error (as a WRITE into it does, engine_test's unmapped_target), not crash
 * the process; the requester's atomic is flushed.
 */
static void test_rfc7306_atomic_unmapped(void)
{
	static const enum eng_wr_opcode ops[] = {ENG_WR_ATOMIC_FETCH_AND_ADD,
						 ENG_WR_ATOMIC_CMP_AND_SWP};
	for (unsigned i = 0; i < 2; i++) {
		long pg = sysconf(_SC_PAGESIZE);
		uint8_t *t = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *res = xalloc(8, 0x6b);
		struct eng_mr *tmr, *resmr;
		struct eng_cqe c;

		REQUIRE(t != MAP_FAILED);
		REQUIRE(connect_7306(true, true));
		tmr = eng_mr_reg(B.pd, t, (size_t)pg, (uintptr_t)t,
				 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC);
		resmr = eng_mr_reg(A.pd, res, 8, (uintptr_t)res, ENG_ACCESS_LOCAL_WRITE);
		REQUIRE(tmr && resmr);
		munmap(t, (size_t)pg);
		/* CompareSwap compares 0 with the 0 a fresh page would hold: it would write. */
		CHECK_INT(post(A.qp, ops[i], 9, res, 8, eng_mr_key(resmr), (uintptr_t)t + 16,
			       eng_mr_key(tmr), ENG_SEND_SIGNALED, 0, 0, 5),
			  0);
		check_catastrophic_end(&B, &A);
		CHECK_INT(A.close_err, SIW_ERR_TERMINATED);
		CHECK_INT(poll_n(A.scq, &c, 1, 2000), 1);
		CHECK_UINT(c.wr_id, 9);
		CHECK_INT(c.status, ENG_WC_WR_FLUSH_ERR);
		CHECK_UINT(*(uint64_t *)(void *)res, 0x6b6b6b6b6b6b6b6bull);
		eng_mr_dereg(tmr);
		eng_mr_dereg(resmr);
		pair_destroy(&A, &B);
		xfree(res);
		if (t_failures) {
			fprintf(stderr, "  %s failed\n", i ? "CompareSwap" : "FetchAdd");
			break;
		}
	}
}

/* ---- not negotiated -------------------------------------------------------------------------- */

/*
 * One end does not do RFC 7306 (SIW_RFC7306=off there, or kernel siw): both ends refuse the
 * work requests with EINVAL, nothing reaches the wire, and the connection goes on working.
 */
static void test_rfc7306_not_negotiated(void)
{
	static const struct {
		bool i, r;
	} v[] = {{true, false}, {false, true}, {false, false}};

	int failures0 = t_failures;

	for (unsigned k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
		uint8_t *s = xalloc(64, 1), *r = xalloc(64, 2);
		struct eng_mr *smr, *rmr;
		struct eng_qp_stats before, after;
		struct eng_cqe c;

		REQUIRE(connect_7306(v[k].i, v[k].r));
		CHECK(!qp_rfc7306(A.qp));
		CHECK(!qp_rfc7306(B.qp));
		smr = eng_mr_reg(A.pd, s, 64, (uintptr_t)s,
				 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC);
		rmr = eng_mr_reg(B.pd, r, 64, (uintptr_t)r,
				 ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_ATOMIC |
					 ENG_ACCESS_REMOTE_WRITE);
		REQUIRE(smr && rmr);
		/* Let the RTR / setup traffic settle, then count. */
		usleep(20000);
		CHECK_INT(eng_qp_stats(A.qp, &before), 0);
		for (struct side *x = &A; x; x = x == &A ? &B : NULL) {
			struct eng_mr *mine = x == &A ? smr : rmr, *theirs = x == &A ? rmr : smr;
			uint8_t *buf = x == &A ? s : r, *tbuf = x == &A ? r : s;

			CHECK_INT(post(x->qp, ENG_WR_SEND_WITH_IMM, 1, buf, 8, eng_mr_key(mine), 0, 0,
				       ENG_SEND_SIGNALED, 1, 0, 0),
				  EINVAL);
			CHECK_INT(post(x->qp, ENG_WR_RDMA_WRITE_WITH_IMM, 2, buf, 8, eng_mr_key(mine),
				       (uintptr_t)tbuf, eng_mr_key(theirs), ENG_SEND_SIGNALED, 1, 0,
				       0),
				  EINVAL);
			CHECK_INT(post(x->qp, ENG_WR_ATOMIC_FETCH_AND_ADD, 3, buf, 8,
				       eng_mr_key(mine), (uintptr_t)tbuf, eng_mr_key(theirs),
				       ENG_SEND_SIGNALED, 0, 1, 0),
				  EINVAL);
			CHECK_INT(post(x->qp, ENG_WR_ATOMIC_CMP_AND_SWP, 4, buf, 8, eng_mr_key(mine),
				       (uintptr_t)tbuf, eng_mr_key(theirs), ENG_SEND_SIGNALED, 0, 0,
				       1),
				  EINVAL);
		}
		CHECK_INT(poll_n(A.scq, &c, 1, 50), 0);
		CHECK_INT(poll_n(B.scq, &c, 1, 1), 0);
		CHECK_INT(eng_qp_stats(A.qp, &after), 0);
		CHECK_UINT(after.tx_msgs, before.tx_msgs);
		CHECK_UINT(after.tx_bytes, before.tx_bytes);
		/* Still connected: a SEND goes through. */
		CHECK_INT(post_recv1(B.qp, 5, r, 64, rmr), 0);
		CHECK_INT(post(A.qp, ENG_WR_SEND, 6, s, 8, eng_mr_key(smr), 0, 0, 0, 0, 0, 0), 0);
		CHECK_INT(poll_n(B.rcq, &c, 1, 5000), 1);
		CHECK_INT(c.status, ENG_WC_SUCCESS);
		CHECK_UINT(c.flags, 0);
		CHECK_INT(A.closed + B.closed, 0);
		eng_mr_dereg(smr);
		eng_mr_dereg(rmr);
		pair_destroy(&A, &B);
		xfree(s);
		xfree(r);
		if (t_failures != failures0) {
			fprintf(stderr, "  variant %u failed\n", k);
			break;
		}
	}
}

T_MAIN(T_CASE(test_rfc7306_mpa_handshake), T_CASE(test_rfc7306_send_with_imm),
       T_CASE(test_rfc7306_write_with_imm), T_CASE(test_rfc7306_atomics),
       T_CASE(test_rfc7306_atomics_concurrent), T_CASE(test_rfc7306_atomic_no_access),
       T_CASE(test_rfc7306_atomic_misaligned), T_CASE(test_rfc7306_atomic_out_of_bounds),
       T_CASE(test_rfc7306_atomic_bad_stag), T_CASE(test_rfc7306_atomic_unmapped),
       T_CASE(test_rfc7306_not_negotiated))
