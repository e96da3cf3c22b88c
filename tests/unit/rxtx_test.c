// SPDX-License-Identifier: MIT
/*
 * The transmit builder and the streaming receive parser, against real kernel siw bytes, each
 * other (random messages, random FPDU sizes, CRC and markers on/off, every way of splitting the
 * stream), and every violation the parser must turn into a TERMINATE.
 */
#include <stdlib.h>

#include "crc32c.h"
#include "error.h"
#include "helper_peer.h"
#include "test.h"

#define STREAM_MAX (4u << 20)
static uint8_t stream[STREAM_MAX];

static const struct siw_rx_params rxp_crc = {.pd = 7, .qpn = 3, .crc = true};

/* ---- byte-exact against kernel siw (single-guest-lo-crc captures, see crc32c_test.c) ----- */

static const uint8_t siw_send_frame8[] = {
	/* crc-rping.pcap frame 8: Send, QN 0, MSN 1, MO 0, 16 bytes of rping buffer info */
	0x00, 0x22, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x55, 0xf3, 0x48, 0xdc, 0x03, 0x70,
	0x49, 0x4d, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x40, 0x5b, 0x81, 0x65, 0x7a,
};

static const uint8_t siw_rresp_frame10[] = {
	/* crc-rping.pcap frame 10: Read Response, STag 0xe1875300, TO 0x55fc48ba8550, 64 bytes */
	0x00, 0x4e, 0xc1, 0x42, 0xe1, 0x87, 0x53, 0x00, 0x00, 0x00, 0x55, 0xfc, 0x48, 0xba,
	0x85, 0x50, 0x72, 0x64, 0x6d, 0x61, 0x2d, 0x70, 0x69, 0x6e, 0x67, 0x2d, 0x30, 0x3a,
	0x20, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d,
	0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b,
	0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
	0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x00, 0x8b, 0xa2, 0xa8, 0x30,
};

static const uint8_t siw_send_frame14[] = {
	/* crc-send_bw.pcap frame 14: Send MSN 4 with 2 data bytes and non-zero pad (00 40) */
	0x00, 0x14, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x40, 0xbf, 0xe0, 0xac, 0x94,
};

static void test_tx_send_matches_kernel_siw(void)
{
	struct siw_tx tx;
	struct siw_tx_params tp = {.crc = true};
	struct siw_iov v = {(void *)(siw_send_frame8 + 20), 16};
	struct siw_tx_msg m = {.opcode = RDMAP_SEND, .iov = &v, .niov = 1, .len = 16};
	uint8_t out[64];
	long n;

	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &m, out, sizeof(out));
	CHECK_INT(n, sizeof(siw_send_frame8));
	CHECK_MEM(out, siw_send_frame8, sizeof(siw_send_frame8));
}

static void test_tx_read_resp_matches_kernel_siw(void)
{
	struct siw_tx tx;
	struct siw_tx_params tp = {.crc = true};
	struct siw_iov v = {(void *)(siw_rresp_frame10 + 16), 64};
	struct siw_tx_msg m = {.opcode = RDMAP_READ_RESP,
			       .stag = 0xe1875300,
			       .to = 0x55fc48ba8550ull,
			       .iov = &v,
			       .niov = 1,
			       .len = 64};
	uint8_t out[128];
	long n;

	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &m, out, sizeof(out));
	CHECK_INT(n, sizeof(siw_rresp_frame10));
	CHECK_MEM(out, siw_rresp_frame10, sizeof(siw_rresp_frame10));
}

/* Kernel siw's frames are accepted, including a pad that is not zero. */
static void test_rx_accepts_kernel_siw_frames(void)
{
	static struct tp_peer p;
	uint8_t buf[64];
	uint8_t sink[64];
	struct siw_sge sge;

	tp_init(&p, &rxp_crc);
	/* The Send of frame 14 carries MSN 4: pretend three Sends came before. */
	p.rx.msn[RDMAP_QN_SEND] = 4;
	sge.addr = (uintptr_t)buf;
	sge.length = sizeof(buf);
	sge.lkey = tp_add_mr(&p, buf, sizeof(buf), SIW_MEM_LOCAL_WRITE);
	tp_post_recv(&p, &sge, 1);
	CHECK_INT(siw_rx_feed(&p.rx, siw_send_frame14, sizeof(siw_send_frame14)),
		  sizeof(siw_send_frame14));
	REQUIRE(tp_count(&p, TP_EV_RECV) == 1);
	CHECK_INT(p.ev[0].recv.len, 2);
	CHECK_INT(buf[0], 0x33);

	/* The Read Response of frame 10 answers a READ whose sink is our MR at that TO. */
	tp_init(&p, &rxp_crc);
	{
		uint32_t stag = tp_add_mr_ex(&p, sink, sizeof(sink), 0x55fc48ba8550ull,
					     SIW_MEM_LOCAL_WRITE, 7, 0);

		/* The capture's STag is the peer's choice: make ours equal to it. */
		p.mr[0].stag = 0xe1875300;
		(void)stag;
		tp_push_orq(&p, 0xe1875300, 0x55fc48ba8550ull, 64);
	}
	CHECK_INT(siw_rx_feed(&p.rx, siw_rresp_frame10, sizeof(siw_rresp_frame10)),
		  sizeof(siw_rresp_frame10));
	CHECK_INT(tp_count(&p, TP_EV_READ_RESP), 1);
	CHECK_MEM(sink, siw_rresp_frame10 + 16, 64);
}

/* ---- random round trips -------------------------------------------------------------------- */

#define RT_MR 4096

struct rt_case {
	bool crc, markers, direct;
	uint32_t max_ulpdu;
	unsigned chunk;
	unsigned seed;
};

static uint8_t src_mem[1 << 16];
static uint8_t dst_mem[RT_MR + 64]; /* 32 guard bytes each side */
static uint8_t rcv_mem[RT_MR + 64];

/* Feeds the stream through the direct path wherever the parser offers it. */
static long feed_direct(struct tp_peer *p, const uint8_t *in, size_t len, unsigned *seed)
{
	size_t off = 0;

	while (off < len) {
		struct siw_iov iov[SIW_MAX_SGE];
		size_t avail, n;
		int cnt = siw_rx_direct_iov(&p->rx, iov, SIW_MAX_SGE, &avail);

		if (cnt > 0 && avail) {
			/* readv() straight into place: take a random part of what is offered */
			size_t want = 1 + (size_t)rand_r(seed) % avail, done = 0;

			if (want > len - off)
				want = len - off;
			for (int i = 0; i < cnt && done < want; i++) {
				size_t k = iov[i].len < want - done ? iov[i].len : want - done;

				memcpy(iov[i].base, in + off + done, k);
				done += k;
			}
			if (siw_rx_direct_done(&p->rx, done))
				return p->rx.err;
			off += done;
			continue;
		}
		n = 1 + (size_t)rand_r(seed) % 64;
		if (n > len - off)
			n = len - off;
		if (siw_rx_feed(&p->rx, in + off, n) < 0)
			return p->rx.err;
		off += n;
	}
	return (long)off;
}

static void run_round_trip(const struct rt_case *c)
{
	static struct tp_peer p;
	struct siw_tx tx;
	struct siw_tx_params tp = {.crc = c->crc, .markers = c->markers, .max_ulpdu = c->max_ulpdu};
	struct siw_rx_params rp = {.pd = 7, .qpn = 3, .crc = c->crc, .markers = c->markers};
	unsigned seed = c->seed;
	uint8_t want_dst[RT_MR], want_rcv[RT_MR];
	uint32_t dst_stag, rcv_stag, sink_stag;
	size_t used = 0;
	unsigned nsend = 0, nwrite = 0, nrreq = 0, nrresp = 0;
	long r;

	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	memset(dst_mem, 0xEE, sizeof(dst_mem));
	memset(rcv_mem, 0xDD, sizeof(rcv_mem));
	for (size_t i = 0; i < sizeof(src_mem); i++)
		src_mem[i] = (uint8_t)rand_r(&seed);
	dst_stag = tp_add_mr(&p, dst_mem + 32, RT_MR,
			     SIW_MEM_LOCAL_WRITE | SIW_MEM_REMOTE_WRITE | SIW_MEM_REMOTE_READ);
	rcv_stag = tp_add_mr(&p, rcv_mem + 32, RT_MR, SIW_MEM_LOCAL_WRITE);
	sink_stag = dst_stag;
	memset(want_dst, 0xEE, sizeof(want_dst));
	memset(want_rcv, 0xDD, sizeof(want_rcv));

	for (unsigned i = 0; i < 40 && used < STREAM_MAX - 200000; i++) {
		struct siw_iov v[8];
		struct siw_tx_msg m = {0};
		unsigned kind = (unsigned)rand_r(&seed) % 4;
		uint32_t len = (uint32_t)rand_r(&seed) % (rand_r(&seed) % 4 ? 600 : RT_MR + 1);
		uint32_t off = len < RT_MR ? (uint32_t)rand_r(&seed) % (RT_MR - len + 1) : 0;
		uint32_t src = (uint32_t)rand_r(&seed) % (sizeof(src_mem) - RT_MR);
		unsigned nv = 1 + (unsigned)rand_r(&seed) % 8, k;
		uint32_t left = len, pos = src;

		/* Split the source into nv gather pieces (some empty). */
		for (k = 0; k < nv; k++) {
			uint32_t piece = k == nv - 1 ? left : (uint32_t)rand_r(&seed) % (left + 1);

			v[k].base = src_mem + pos;
			v[k].len = piece;
			pos += piece;
			left -= piece;
		}
		m.iov = v;
		m.niov = nv;
		m.len = len;
		switch (kind) {
		case 0: /* RDMA WRITE into dst */
			m.opcode = RDMAP_WRITE;
			m.stag = dst_stag;
			m.to = (uintptr_t)(dst_mem + 32) + off;
			memcpy(want_dst + off, src_mem + src, len);
			nwrite++;
			break;
		case 1: { /* SEND into a receive buffer of 1..4 SGEs covering rcv[off..off+len] */
			struct siw_sge sge[4];
			unsigned ns = 1 + (unsigned)rand_r(&seed) % 4;
			uint32_t l2 = len, o2 = off;

			for (k = 0; k < ns; k++) {
				uint32_t piece = k == ns - 1 ? l2 : (uint32_t)rand_r(&seed) % (l2 + 1);

				sge[k].addr = (uintptr_t)(rcv_mem + 32) + o2;
				sge[k].length = piece;
				sge[k].lkey = rcv_stag;
				o2 += piece;
				l2 -= piece;
			}
			tp_post_recv(&p, sge, ns);
			m.opcode = (uint8_t)(RDMAP_SEND + (rand_r(&seed) % 2) * 2); /* SEND or SEND_SE */
			memcpy(want_rcv + off, src_mem + src, len);
			nsend++;
			break;
		}
		case 2: /* READ REQUEST for dst[off..off+len] */
			m.opcode = RDMAP_READ_REQ;
			m.niov = 0;
			m.iov = NULL;
			m.len = 0;
			m.rd_sink_stag = 0x1234;
			m.rd_sink_to = 99;
			m.rd_len = len;
			m.rd_src_stag = dst_stag;
			m.rd_src_to = (uintptr_t)(dst_mem + 32) + off;
			nrreq++;
			break;
		default: /* READ RESPONSE answering a READ we "sent" into dst */
			m.opcode = RDMAP_READ_RESP;
			m.stag = sink_stag;
			m.to = (uintptr_t)(dst_mem + 32) + off;
			tp_push_orq(&p, sink_stag, m.to, len);
			memcpy(want_dst + off, src_mem + src, len);
			nrresp++;
			break;
		}
		r = tp_build(&tx, &m, stream + used, STREAM_MAX - used);
		REQUIRE(r > 0);
		used += (size_t)r;
	}
	CHECK_UINT(tx.stream_pos, used);

	if (c->direct)
		r = feed_direct(&p, stream, used, &seed);
	else
		r = tp_feed(&p, stream, used, c->chunk, &seed);
	if (r != (long)used)
		fprintf(stderr, "  case crc=%d markers=%d mulpdu=%u chunk=%u direct=%d seed=%u: %s\n",
			c->crc, c->markers, c->max_ulpdu, c->chunk, c->direct, c->seed,
			siw_strerror(p.rx.err));
	CHECK_INT(r, used);
	CHECK_INT(p.rx.err, 0);
	CHECK_INT(p.rx.state, SIW_RX_HDR);
	CHECK_INT(tp_count(&p, TP_EV_RECV), nsend);
	CHECK_INT(tp_count(&p, TP_EV_WRITE), nwrite);
	CHECK_INT(tp_count(&p, TP_EV_READ_REQ), nrreq);
	CHECK_INT(tp_count(&p, TP_EV_READ_RESP), nrresp);
	CHECK_MEM(dst_mem + 32, want_dst, RT_MR);
	CHECK_MEM(rcv_mem + 32, want_rcv, RT_MR);
	/* Guard bytes around both regions are untouched. */
	for (int i = 0; i < 32; i++) {
		CHECK_INT(dst_mem[i], 0xEE);
		CHECK_INT(dst_mem[32 + RT_MR + i], 0xEE);
		CHECK_INT(rcv_mem[i], 0xDD);
		CHECK_INT(rcv_mem[32 + RT_MR + i], 0xDD);
	}
	CHECK_UINT(p.rx.stats.bytes, used);
}

static void test_round_trip_random(void)
{
	static const uint32_t mulpdu[] = {64, 100, 509, 1442, 8000, 65535};
	unsigned n = 0;

	for (unsigned crc = 0; crc < 2; crc++)
		for (unsigned mk = 0; mk < 2; mk++)
			for (unsigned u = 0; u < sizeof(mulpdu) / sizeof(mulpdu[0]); u++)
				for (unsigned chunk = 0; chunk < 4; chunk++) {
					struct rt_case c = {
						.crc = crc,
						.markers = mk,
						.max_ulpdu = mulpdu[u],
						.chunk = chunk == 2 ? 7 : chunk == 3 ? 3000 : chunk,
						.direct = false,
						.seed = 1000 + n++,
					};
					if (c.max_ulpdu < RREQ_HDR_LEN)
						continue; /* a READ REQUEST needs 46 bytes of ULPDU */
					run_round_trip(&c);
				}
}

static void test_round_trip_direct(void)
{
	for (unsigned i = 0; i < 24; i++) {
		struct rt_case c = {
			.crc = i & 1,
			.markers = (i >> 1) & 1,
			.max_ulpdu = i < 12 ? 1442 : 65535,
			.direct = true,
			.seed = 77 + i,
		};
		run_round_trip(&c);
	}
}

/* Splitting one stream at every offset (two feeds) gives the same result as one feed. */
static void test_every_split(void)
{
	static struct tp_peer p;
	struct siw_tx tx;
	struct siw_tx_params tp = {.crc = true, .markers = true, .max_ulpdu = 300};
	struct siw_rx_params rp = {.pd = 7, .crc = true, .markers = true};
	uint8_t src[700], dst[700], rcv[200];
	struct siw_iov v = {src, 700};
	struct siw_tx_msg w = {.opcode = RDMAP_WRITE, .to = 0, .iov = &v, .niov = 1, .len = 700};
	struct siw_iov v2 = {src, 150};
	struct siw_tx_msg s = {.opcode = RDMAP_SEND_INV, .stag = 0x999, .iov = &v2, .niov = 1, .len = 150};
	size_t used = 0;
	long r;

	for (unsigned i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + 3);
	siw_tx_init(&tx, &tp);
	w.stag = 0x15a; /* first MR of a tp_peer */
	r = tp_build(&tx, &w, stream, STREAM_MAX);
	REQUIRE(r > 0);
	used = (size_t)r;
	s.stag = 0x35a; /* third MR: invalidated by the Send */
	r = tp_build(&tx, &s, stream + used, STREAM_MAX - used);
	REQUIRE(r > 0);
	used += (size_t)r;

	for (size_t cut = 0; cut <= used; cut++) {
		struct siw_sge sge;

		tp_init(&p, &rp);
		memset(dst, 0, sizeof(dst));
		memset(rcv, 0, sizeof(rcv));
		tp_add_mr_ex(&p, dst, sizeof(dst), 0, SIW_MEM_REMOTE_WRITE, 7, 0);
		sge.lkey = tp_add_mr(&p, rcv, sizeof(rcv), SIW_MEM_LOCAL_WRITE);
		tp_add_mr(&p, src, 1, SIW_MEM_REMOTE_READ);
		sge.addr = (uintptr_t)rcv;
		sge.length = sizeof(rcv);
		tp_post_recv(&p, &sge, 1);
		CHECK_INT(siw_rx_feed(&p.rx, stream, cut), cut);
		CHECK_INT(siw_rx_feed(&p.rx, stream + cut, used - cut), used - cut);
		CHECK_MEM(dst, src, sizeof(dst));
		CHECK_MEM(rcv, src, 150);
		CHECK_INT(tp_count(&p, TP_EV_INVALIDATE), 1);
		REQUIRE(tp_count(&p, TP_EV_RECV) == 1);
		if (t_failures)
			return;
	}
}

/* ---- violations ---------------------------------------------------------------------------- */

#define TRIPLE(l, t, c) SIW_ERR_TERM(l, t, c)

struct bad_env {
	struct tp_peer p;
	struct siw_tx tx;
	uint8_t mr[256 + 64];	 /* REMOTE_WRITE|REMOTE_READ, guard 32 each side */
	uint8_t ro[64];		 /* REMOTE_READ only */
	uint8_t other_pd[64];	 /* another PD */
	uint8_t rcv[64];
	uint32_t mr_stag, ro_stag, opd_stag, rcv_stag;
	uint8_t buf[4096];
	long len;
};

static struct bad_env env;
static uint8_t payload[512];

static void bad_setup(bool crc)
{
	struct siw_tx_params tp = {.crc = crc};
	struct siw_rx_params rp = {.pd = 7, .qpn = 3, .crc = crc};

	memset(&env, 0, sizeof(env));
	memset(env.mr, 0xAB, sizeof(env.mr));
	tp_init(&env.p, &rp);
	siw_tx_init(&env.tx, &tp);
	env.mr_stag = tp_add_mr(&env.p, env.mr + 32, 256, SIW_MEM_REMOTE_WRITE | SIW_MEM_REMOTE_READ);
	env.ro_stag = tp_add_mr(&env.p, env.ro, sizeof(env.ro), SIW_MEM_REMOTE_READ);
	env.opd_stag = tp_add_mr_ex(&env.p, env.other_pd, sizeof(env.other_pd),
				    (uintptr_t)env.other_pd, SIW_MEM_REMOTE_WRITE, 8, 0);
	env.rcv_stag = tp_add_mr(&env.p, env.rcv, sizeof(env.rcv), SIW_MEM_LOCAL_WRITE);
}

static void bad_build(const struct siw_tx_msg *m)
{
	env.len = tp_build(&env.tx, m, env.buf, sizeof(env.buf));
}

static void bad_write(uint32_t stag, uint64_t to, uint32_t len)
{
	struct siw_iov v = {payload, len};
	struct siw_tx_msg m = {.opcode = RDMAP_WRITE, .stag = stag, .to = to, .iov = &v, .niov = 1, .len = len};

	bad_build(&m);
}

static void bad_read_req(uint32_t stag, uint64_t to, uint32_t len)
{
	struct siw_tx_msg m = {.opcode = RDMAP_READ_REQ,
			       .rd_sink_stag = 0x100,
			       .rd_sink_to = 0,
			       .rd_len = len,
			       .rd_src_stag = stag,
			       .rd_src_to = to};

	bad_build(&m);
}

static void bad_send(uint8_t opcode, uint32_t len)
{
	struct siw_iov v = {payload, len};
	struct siw_tx_msg m = {.opcode = opcode, .stag = 0x4242, .iov = &v, .niov = 1, .len = len};

	bad_build(&m);
}

static void post_rcv(void)
{
	struct siw_sge sge = {(uintptr_t)env.rcv, sizeof(env.rcv), env.rcv_stag};

	tp_post_recv(&env.p, &sge, 1);
}

/* Feeds env.buf byte by byte and checks the error, the dead state and untouched guards. */
static void expect_err(int want, unsigned want_hdr_copy, const char *what)
{
	long r;
	unsigned seed = 1;
	uint8_t more[8] = {0};

	REQUIRE(env.len > 0);
	r = tp_feed(&env.p, env.buf, (size_t)env.len, 1, &seed);
	if (r != want)
		fprintf(stderr, "  %s: got %s, want %s\n", what, siw_strerror((int)r), siw_strerror(want));
	CHECK_INT(r, want);
	CHECK_INT(env.p.rx.err, want);
	CHECK_INT(env.p.rx.state, SIW_RX_DEAD);
	CHECK_INT(env.p.rx.err_hdr_len, want_hdr_copy);
	/* Everything after the error is ignored. */
	CHECK_INT(siw_rx_feed(&env.p.rx, more, sizeof(more)), want);
	for (int i = 0; i < 32; i++) {
		CHECK_INT(env.mr[i], 0xAB);
		CHECK_INT(env.mr[32 + 256 + i], 0xAB);
	}
}

static void test_rx_rfc5041_tagged_errors(void)
{
	uint64_t base = (uintptr_t)(env.mr + 32);

	bad_setup(false);
	bad_write(0x7777, base, 16);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_STAG),
		   DDP_TAGGED_HDR_LEN, "invalid STag");

	bad_setup(false);
	base = (uintptr_t)(env.mr + 32);
	bad_write(env.mr_stag, base + 1, 256); /* one byte past the end */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_BASE_BOUNDS),
		   DDP_TAGGED_HDR_LEN, "write one past the end");

	bad_setup(false);
	base = (uintptr_t)(env.mr + 32);
	bad_write(env.mr_stag, base - 1, 8); /* one byte before the start */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_BASE_BOUNDS),
		   DDP_TAGGED_HDR_LEN, "write before the start");

	bad_setup(false);
	bad_write(env.mr_stag, UINT64_MAX - 3, 16); /* tagged offset that wraps */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_TO_WRAP),
		   DDP_TAGGED_HDR_LEN, "TO wrap");

	bad_setup(false);
	bad_write(env.opd_stag, (uintptr_t)env.other_pd, 8); /* region of another PD */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_STAG_NOT_ASSOC),
		   DDP_TAGGED_HDR_LEN, "other PD");

	bad_setup(false);
	bad_write(env.ro_stag, (uintptr_t)env.ro, 8); /* read-only region */
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_ACCESS),
		   DDP_TAGGED_HDR_LEN, "write to read-only");

	/* A READ RESPONSE that answers no READ. */
	bad_setup(false);
	{
		struct siw_iov v = {payload, 8};
		struct siw_tx_msg m = {.opcode = RDMAP_READ_RESP, .stag = env.mr_stag,
				       .to = (uintptr_t)(env.mr + 32), .iov = &v, .niov = 1, .len = 8};

		bad_build(&m);
	}
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP),
		   DDP_TAGGED_HDR_LEN, "unsolicited read response");

	/* A READ RESPONSE longer than the READ asked for. */
	bad_setup(false);
	tp_push_orq(&env.p, env.mr_stag, (uintptr_t)(env.mr + 32), 4);
	{
		struct siw_iov v = {payload, 8};
		struct siw_tx_msg m = {.opcode = RDMAP_READ_RESP, .stag = env.mr_stag,
				       .to = (uintptr_t)(env.mr + 32), .iov = &v, .niov = 1, .len = 8};

		bad_build(&m);
	}
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_BASE_BOUNDS),
		   DDP_TAGGED_HDR_LEN, "read response too long");
}

static void test_rx_rfc5040_read_request_errors(void)
{
	bad_setup(false);
	bad_read_req(0x7777, 0, 8);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_INV_STAG),
		   RREQ_HDR_LEN, "read invalid STag");

	bad_setup(false);
	bad_read_req(env.mr_stag, (uintptr_t)(env.mr + 32) + 1, 256); /* one byte past the end */
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_BASE_BOUNDS),
		   RREQ_HDR_LEN, "read one past the end");

	bad_setup(false);
	bad_read_req(env.rcv_stag, (uintptr_t)env.rcv, 8); /* no REMOTE_READ */
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_ACCESS),
		   RREQ_HDR_LEN, "read without the right");

	bad_setup(false);
	bad_read_req(env.mr_stag, UINT64_MAX - 2, 8);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_TO_WRAP),
		   RREQ_HDR_LEN, "read TO wrap");

	/* More READs than the IRQ holds. */
	bad_setup(false);
	env.p.fail_read_req = true;
	bad_read_req(env.mr_stag, (uintptr_t)(env.mr + 32), 8);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC, TERM_ECODE_RDMAP_UNSPECIFIED),
		   RREQ_HDR_LEN, "IRQ full");
}

static void test_rx_rfc5041_untagged_errors(void)
{
	bad_setup(false);
	bad_send(RDMAP_SEND, 8); /* no receive posted */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MSN_NOBUF),
		   DDP_UNTAGGED_HDR_LEN, "send without receive");

	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, sizeof(env.rcv) + 1); /* longer than the receive buffer */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_MSG_TOO_LONG),
		   DDP_UNTAGGED_HDR_LEN, "send too long");

	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, 8);
	put_be32(env.buf + DDP_OFF_MSN, 2); /* MSN must be 1 */
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MSN_RANGE),
		   DDP_UNTAGGED_HDR_LEN, "wrong MSN");

	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, 8);
	put_be32(env.buf + DDP_OFF_QN, 5);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_QN),
		   DDP_UNTAGGED_HDR_LEN, "wrong QN");

	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, 8);
	put_be32(env.buf + DDP_OFF_MO, 4);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_MO),
		   DDP_UNTAGGED_HDR_LEN, "wrong MO");

	/* Send with Invalidate of an STag we cannot invalidate. */
	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND_INV, 8);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
			  TERM_ECODE_RDMAP_CANNOT_INVALIDATE),
		   DDP_UNTAGGED_HDR_LEN, "cannot invalidate");
}

static void test_rx_header_errors(void)
{
	bad_setup(false);
	bad_write(env.mr_stag, (uintptr_t)(env.mr + 32), 8);
	env.buf[DDP_OFF_CTRL] = (env.buf[DDP_OFF_CTRL] & ~DDP_VERSION_MASK) | 2;
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_VERSION), 0,
		   "DDP version (tagged)");

	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, 8);
	env.buf[DDP_OFF_CTRL] &= ~DDP_VERSION_MASK;
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED, TERM_ECODE_DDP_U_INV_VERSION), 0,
		   "DDP version (untagged)");

	bad_setup(false);
	bad_write(env.mr_stag, (uintptr_t)(env.mr + 32), 8);
	env.buf[RDMAP_OFF_CTRL] = (uint8_t)(2 << RDMAP_VERSION_SHIFT | RDMAP_WRITE);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_INV_VERSION), 0,
		   "RDMAP version");

	/* Unknown opcodes, RFC 7306 opcodes not negotiated, T bit that does not fit the opcode. */
	for (unsigned op = RDMAP_IMM_DATA; op <= 0xF; op++) {
		bad_setup(false);
		post_rcv();
		bad_send(RDMAP_SEND, 8);
		env.buf[RDMAP_OFF_CTRL] = (uint8_t)(RDMAP_VERSION << RDMAP_VERSION_SHIFT | op);
		expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP,
				  TERM_ECODE_RDMAP_UNEXPECTED_OP),
			   0, "opcode");
	}
	bad_setup(false);
	post_rcv();
	bad_send(RDMAP_SEND, 8);
	env.buf[DDP_OFF_CTRL] |= DDP_FLAG_TAGGED;
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP),
		   0, "tagged send");

	/* An ULPDU too short for its own header. */
	bad_setup(false);
	bad_write(env.mr_stag, (uintptr_t)(env.mr + 32), 0);
	put_be16(env.buf, 6);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_CATASTROPHIC, TERM_ECODE_DDP_CATASTROPHIC),
		   0, "short ULPDU");

	/* A READ REQUEST that carries payload. */
	bad_setup(false);
	bad_read_req(env.mr_stag, (uintptr_t)(env.mr + 32), 8);
	{
		uint8_t tmp[128];

		/* grow the ULPDU by 4 bytes of junk payload, keep the trailer */
		memcpy(tmp, env.buf, RREQ_HDR_LEN);
		memset(tmp + RREQ_HDR_LEN, 0x55, 4);
		memset(tmp + RREQ_HDR_LEN + 4, 0, 4);
		put_be16(tmp, RREQ_HDR_LEN - 2 + 4);
		memcpy(env.buf, tmp, RREQ_HDR_LEN + 8);
		env.len = RREQ_HDR_LEN + 8;
	}
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP),
		   RREQ_HDR_LEN, "read request with payload");
}

static void test_rx_rfc5044_crc_and_markers(void)
{
	/* Any flipped bit of a CRC-protected FPDU is caught. */
	for (unsigned bit = 0; bit < 8 * 44; bit += 5) {
		bad_setup(true);
		post_rcv();
		bad_send(RDMAP_SEND, 20);
		REQUIRE(env.len == 44);
		if (bit / 8 < 4 || (bit / 8 >= 8 && bit / 8 < 20))
			continue; /* header fields checked before the CRC have their own errors */
		env.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		expect_err(TRIPLE(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_CRC),
			   DDP_UNTAGGED_HDR_LEN, "crc");
	}

	/* A marker whose pointer does not lead to the FPDU start. */
	{
		static struct tp_peer p;
		struct siw_tx tx;
		struct siw_tx_params tp = {.markers = true, .max_ulpdu = 1000};
		struct siw_rx_params rp = {.pd = 7, .markers = true};
		uint8_t dst[900];
		struct siw_iov v = {payload, 500};
		struct siw_tx_msg m = {.opcode = RDMAP_WRITE, .to = 0, .iov = &v, .niov = 1, .len = 500};
		long n;
		unsigned seed = 3;

		tp_init(&p, &rp);
		m.stag = tp_add_mr_ex(&p, dst, sizeof(dst), 0, SIW_MEM_REMOTE_WRITE, 7, 0);
		siw_tx_init(&tx, &tp);
		n = tp_build(&tx, &m, stream, STREAM_MAX);
		REQUIRE(n == 4 + 16 + 500 + 4 + 4); /* leading marker, one more at 512 */
		CHECK_INT(get_be16(stream + 2), 0);	/* first marker: FPDU starts here */
		CHECK_INT(get_be16(stream + 512 + 2), 512);
		stream[512 + 3] ^= 4;
		CHECK_INT(tp_feed(&p, stream, (size_t)n, 1, &seed),
			  TRIPLE(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_MARKER));
	}
}

static void test_rx_terminate_received(void)
{
	struct siw_tx_msg m = {.opcode = RDMAP_TERMINATE};
	uint8_t body[2 + 18];
	struct siw_iov v = {body, sizeof(body)};
	long r;
	unsigned seed = 1;

	bad_setup(true);
	/* A DDP untagged "no buffer" TERMINATE with the offending header attached. */
	memset(body, 0, sizeof(body));
	put_be16(body, 26);
	body[2] = 0x41;
	body[3] = 0x43;
	m.term_ctrl = siw_term_ctrl(TERM_LAYER_DDP, TERM_ETYPE_DDP_UNTAGGED,
				    TERM_ECODE_DDP_U_INV_MSN_NOBUF, true, true, false);
	m.iov = &v;
	m.niov = 1;
	m.len = sizeof(body);
	bad_build(&m);
	REQUIRE(env.len > 0);
	CHECK_INT(get_be32(env.buf + DDP_OFF_QN), RDMAP_QN_TERM);
	CHECK_INT(get_be32(env.buf + DDP_OFF_MSN), 1);
	r = tp_feed(&env.p, env.buf, (size_t)env.len, 1, &seed);
	CHECK_INT(r, SIW_ERR_TERMINATED);
	REQUIRE(tp_count(&env.p, TP_EV_TERM) == 1);
	CHECK_INT(env.p.term.layer, TERM_LAYER_DDP);
	CHECK_INT(env.p.term.etype, TERM_ETYPE_DDP_UNTAGGED);
	CHECK_INT(env.p.term.ecode, TERM_ECODE_DDP_U_INV_MSN_NOBUF);
	CHECK(env.p.term.rfc_valid);
	CHECK(env.p.term.d);
}

static void test_rx_rtr(void)
{
	struct siw_tx_msg w = {.opcode = RDMAP_WRITE, .stag = 1};
	struct siw_rx_params rp = {.pd = 7, .rtr = SIW_RTR_WRITE};
	struct siw_tx_params tp = {0};
	static struct tp_peer p;
	struct siw_tx tx;
	uint8_t buf[64];
	long n;

	/* Zero-length WRITE to STag 1 (what kernel siw sends) opens the stream. */
	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &w, buf, sizeof(buf));
	REQUIRE(n == 20);
	CHECK_INT(siw_rx_feed(&p.rx, buf, (size_t)n), n);
	CHECK_INT(tp_count(&p, TP_EV_RTR), 1);
	CHECK_INT(tp_count(&p, TP_EV_WRITE), 0);

	/* A READ RTR is answered: it reaches read_req with rtr set, and the RTR is reported. */
	rp.rtr = SIW_RTR_READ;
	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	{
		struct siw_tx_msg r = {.opcode = RDMAP_READ_REQ, .rd_sink_stag = 1, .rd_src_stag = 1};

		n = tp_build(&tx, &r, buf, sizeof(buf));
	}
	CHECK_INT(siw_rx_feed(&p.rx, buf, (size_t)n), n);
	REQUIRE(tp_count(&p, TP_EV_READ_REQ) == 1);
	CHECK(p.ev[0].rreq.rtr);
	CHECK_INT(tp_count(&p, TP_EV_RTR), 1);

	/* Anything else first is "no matching RTR". */
	rp.rtr = SIW_RTR_READ;
	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &w, buf, sizeof(buf));
	CHECK_INT(siw_rx_feed(&p.rx, buf, (size_t)n),
		  TRIPLE(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_NO_MATCHING_RTR));
}

/* Found by fuzz_rx: while the RTR is awaited, a TERMINATE is a TERMINATE, anything else fails. */
static void test_rx_rtr_pending_only_rtr_or_terminate(void)
{
	struct siw_rx_params rp = {.pd = 7, .rtr = SIW_RTR_WRITE, .rfc7306 = true};
	struct siw_tx_params tp = {0};
	static struct tp_peer p;
	struct siw_tx tx;
	uint8_t buf[128], body[4] = {0};
	struct siw_iov v = {body, 0};
	struct siw_tx_msg term = {.opcode = RDMAP_TERMINATE, .iov = &v, .niov = 0};
	long n;

	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	term.term_ctrl = siw_term_ctrl(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_INSUFFICIENT_IRD,
				       false, false, false);
	n = tp_build(&tx, &term, buf, sizeof(buf));
	CHECK_INT(siw_rx_feed(&p.rx, buf, (size_t)n), SIW_ERR_TERMINATED);
	CHECK_INT(tp_count(&p, TP_EV_TERM), 1);
	CHECK_INT(tp_count(&p, TP_EV_RTR), 0);
	CHECK_INT(p.term.ecode, TERM_ECODE_LLP_INSUFFICIENT_IRD);

	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &(struct siw_tx_msg){.opcode = RDMAP_IMM_DATA}, buf, sizeof(buf));
	CHECK_INT(siw_rx_feed(&p.rx, buf, (size_t)n),
		  TRIPLE(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_NO_MATCHING_RTR));
	CHECK_INT(tp_count(&p, TP_EV_RTR) + tp_count(&p, TP_EV_IMM), 0);
}

/* Found by fuzz_rx: the segments of one WRITE keep its STag and continue its offsets. */
static void test_rx_write_segments_continue(void)
{
	uint8_t two[2][4096];
	unsigned seed = 2;
	long n;

	bad_setup(false);
	{
		struct siw_iov v = {payload, 200};
		struct siw_tx_msg m = {.opcode = RDMAP_WRITE, .stag = env.mr_stag,
				       .to = (uintptr_t)(env.mr + 32), .iov = &v, .niov = 1, .len = 200};
		struct siw_tx_params tp = {.max_ulpdu = 114}; /* two FPDUs of 100 bytes */

		siw_tx_init(&env.tx, &tp);
		env.len = tp_build(&env.tx, &m, env.buf, sizeof(env.buf));
	}
	REQUIRE(env.len == 2 * 120);
	memcpy(two[0], env.buf, (size_t)env.len);
	/* The second segment names another (valid, writable) STag: not this message. */
	put_be32(env.buf + 120 + DDP_OFF_STAG, env.opd_stag);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_INV_STAG),
		   DDP_TAGGED_HDR_LEN, "write segment with another STag");
	/* The second segment skips ahead. */
	bad_setup(false);
	memcpy(env.buf, two[0], 240);
	env.len = 240;
	put_be64(env.buf + 120 + DDP_OFF_TO, get_be64(env.buf + 120 + DDP_OFF_TO) + 8);
	expect_err(TRIPLE(TERM_LAYER_DDP, TERM_ETYPE_DDP_TAGGED, TERM_ECODE_DDP_T_BASE_BOUNDS),
		   DDP_TAGGED_HDR_LEN, "write segment not continuing");
	/* Unchanged, it goes through. */
	bad_setup(false);
	n = tp_feed(&env.p, two[0], 240, 1, &seed);
	CHECK_INT(n, 240);
	CHECK_INT(tp_count(&env.p, TP_EV_WRITE), 1);
	(void)two[1];
}

/* A local fault while placing (EFAULT in the engine) stops the stream as a local error. */
static void test_rx_place_fault(void)
{
	bad_setup(false);
	env.p.fail_place = SIW_ERR_FAULT;
	bad_write(env.mr_stag, (uintptr_t)(env.mr + 32), 16);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC, TERM_ECODE_RDMAP_UNSPECIFIED),
		   DDP_TAGGED_HDR_LEN, "place fault");
}

/* Multi-FPDU messages: L only on the last, MO/TO advance, MSN stays. */
static void test_tx_segmentation(void)
{
	struct siw_tx tx;
	struct siw_tx_params tp = {.max_ulpdu = 1442};
	static uint8_t big[5000];
	struct siw_iov v = {big, sizeof(big)};
	struct siw_tx_msg m = {.opcode = RDMAP_SEND, .iov = &v, .niov = 1, .len = sizeof(big)};
	size_t off = 0;
	unsigned fpdus = 0;
	long n;

	siw_tx_init(&tx, &tp);
	n = tp_build(&tx, &m, stream, STREAM_MAX);
	REQUIRE(n > 0);
	while (off < (size_t)n) {
		unsigned ulpdu = get_be16(stream + off);
		bool last = stream[off + DDP_OFF_CTRL] & DDP_FLAG_LAST;

		CHECK(ulpdu <= 1442);
		CHECK_INT(get_be32(stream + off + DDP_OFF_MSN), 1);
		CHECK_INT(get_be32(stream + off + DDP_OFF_MO), fpdus * (1442 - 18));
		CHECK_INT(last, off + MPA_HDR_LEN + ulpdu + mpa_pad(ulpdu) + 4 == (size_t)n);
		off += MPA_HDR_LEN + ulpdu + mpa_pad(ulpdu) + 4;
		fpdus++;
	}
	CHECK_INT(fpdus, 4);
	/* The next Send carries MSN 2. */
	n = tp_build(&tx, &m, stream, STREAM_MAX);
	CHECK_INT(get_be32(stream + DDP_OFF_MSN), 2);
	CHECK_INT(siw_tx_begin(&tx, &(struct siw_tx_msg){.opcode = 0xC}), SIW_ERR_INVAL);
	CHECK_INT(siw_tx_begin(&tx, &(struct siw_tx_msg){.opcode = RDMAP_READ_REQ, .len = 3}),
		  SIW_ERR_INVAL);
}

/* ---- RFC 7306 -------------------------------------------------------------------------------- */

static void test_rfc7306_round_trip(void)
{
	static struct tp_peer p;
	struct siw_tx tx;
	struct siw_tx_params tp = {.crc = true};
	struct siw_rx_params rp = {.pd = 7, .qpn = 3, .crc = true, .rfc7306 = true};
	uint64_t target[2] = {0, 0};
	struct siw_tx_msg imm = {.opcode = RDMAP_IMM_DATA_SE, .imm = {1, 2, 3, 4, 5, 6, 7, 8}};
	struct siw_tx_msg areq = {.opcode = RDMAP_ATOMIC_REQ,
				  .aop = AOP_CMP_SWAP,
				  .req_id = 0xabc,
				  .add_swap = 0x1111,
				  .add_swap_mask = ~0ull,
				  .cmp = 0x2222,
				  .cmp_mask = ~0ull};
	struct siw_tx_msg aresp = {.opcode = RDMAP_ATOMIC_RESP, .req_id = 0x77, .orig = 0x123456789ull};
	size_t used = 0;
	long n;

	tp_init(&p, &rp);
	siw_tx_init(&tx, &tp);
	areq.stag = tp_add_mr(&p, target, sizeof(target),
			      SIW_MEM_LOCAL_WRITE | SIW_MEM_REMOTE_ATOMIC);
	areq.to = (uintptr_t)&target[1];
	tp_push_orq(&p, 0, 0, 8);
	p.orq[0].atomic = true;
	p.orq[0].req_id = 0x77;
	n = tp_build(&tx, &imm, stream, STREAM_MAX);
	CHECK_INT(n, IMM_HDR_LEN + 4);
	used += (size_t)n;
	n = tp_build(&tx, &areq, stream + used, STREAM_MAX - used);
	CHECK_INT(n, AREQ_HDR_LEN + 4);
	used += (size_t)n;
	n = tp_build(&tx, &aresp, stream + used, STREAM_MAX - used);
	CHECK_INT(n, ARESP_HDR_LEN + 4);
	used += (size_t)n;
	CHECK_INT(tp_feed(&p, stream, used, 1, &(unsigned){1}), used);
	REQUIRE(p.nev == 3);
	CHECK_INT(p.ev[0].type, TP_EV_IMM);
	CHECK_MEM(p.ev[0].imm, imm.imm, 8);
	CHECK(p.ev[0].solicited);
	CHECK_INT(p.ev[1].type, TP_EV_ATOMIC_REQ);
	CHECK_INT(p.ev[1].areq.aop, AOP_CMP_SWAP);
	CHECK_UINT(p.ev[1].areq.req_id, 0xabc);
	CHECK_UINT(p.ev[1].areq.cmp, 0x2222);
	CHECK_UINT(p.ev[1].areq.add_swap, 0x1111);
	CHECK(p.ev[1].areq.target == (uint8_t *)&target[1]);
	CHECK_INT(p.ev[2].type, TP_EV_ATOMIC_RESP);
	CHECK_UINT(p.ev[2].aresp.orig, 0x123456789ull);
	/* MSNs: Immediate Data counts on QN 0, the Atomic Request on QN 1, the response on QN 3. */
	CHECK_INT(p.rx.msn[RDMAP_QN_SEND], 2);
	CHECK_INT(p.rx.msn[RDMAP_QN_READ_REQ], 2);
	CHECK_INT(p.rx.msn[RDMAP_QN_ATOMIC_RESP], 2);
}

static void test_rfc7306_atomic_errors(void)
{
	static uint64_t target[4];
	struct siw_tx_msg m = {.opcode = RDMAP_ATOMIC_REQ, .aop = AOP_FETCH_ADD};
	uint32_t stag;

	/* Misaligned operand. */
	bad_setup(false);
	env.p.rx.p.rfc7306 = true;
	stag = tp_add_mr(&env.p, target, sizeof(target), SIW_MEM_LOCAL_WRITE | SIW_MEM_REMOTE_ATOMIC);
	m.stag = stag;
	m.to = (uintptr_t)target + 4;
	bad_build(&m);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_BASE_BOUNDS),
		   AREQ_HDR_LEN, "misaligned atomic");
	/* No REMOTE_ATOMIC right. */
	bad_setup(false);
	env.p.rx.p.rfc7306 = true;
	m.stag = env.mr_stag;
	m.to = (uintptr_t)(env.mr + 32);
	bad_build(&m);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_ACCESS),
		   AREQ_HDR_LEN, "atomic without the right");
	/* Past the end. */
	bad_setup(false);
	env.p.rx.p.rfc7306 = true;
	stag = tp_add_mr(&env.p, target, sizeof(target), SIW_MEM_LOCAL_WRITE | SIW_MEM_REMOTE_ATOMIC);
	m.stag = stag;
	m.to = (uintptr_t)target + sizeof(target);
	bad_build(&m);
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT, TERM_ECODE_RDMAP_BASE_BOUNDS),
		   AREQ_HDR_LEN, "atomic past the end");
	/* A response that answers nothing. */
	bad_setup(false);
	env.p.rx.p.rfc7306 = true;
	bad_build(&(struct siw_tx_msg){.opcode = RDMAP_ATOMIC_RESP, .req_id = 5});
	expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP, TERM_ECODE_RDMAP_UNEXPECTED_OP),
		   ARESP_HDR_LEN, "unsolicited atomic response");
	/* An engine without the callbacks treats the opcodes as unknown. */
	bad_setup(false);
	{
		static struct siw_rx_ops no7306;

		no7306 = tp_ops;
		no7306.imm_data = NULL;
		env.p.rx.ops = &no7306;
		env.p.rx.p.rfc7306 = true;
		bad_build(&(struct siw_tx_msg){.opcode = RDMAP_IMM_DATA});
		expect_err(TRIPLE(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_OP,
				  TERM_ECODE_RDMAP_UNEXPECTED_OP),
			   0, "imm without handler");
	}
}

T_MAIN(T_CASE(test_rfc7306_round_trip), T_CASE(test_rfc7306_atomic_errors),
       T_CASE(test_tx_send_matches_kernel_siw), T_CASE(test_tx_read_resp_matches_kernel_siw),
       T_CASE(test_rx_accepts_kernel_siw_frames), T_CASE(test_tx_segmentation),
       T_CASE(test_round_trip_random), T_CASE(test_round_trip_direct), T_CASE(test_every_split),
       T_CASE(test_rx_rfc5041_tagged_errors), T_CASE(test_rx_rfc5040_read_request_errors),
       T_CASE(test_rx_rfc5041_untagged_errors), T_CASE(test_rx_header_errors),
       T_CASE(test_rx_rfc5044_crc_and_markers), T_CASE(test_rx_terminate_received),
       T_CASE(test_rx_rtr), T_CASE(test_rx_place_fault),
       T_CASE(test_rx_rtr_pending_only_rtr_or_terminate), T_CASE(test_rx_write_segments_continue))
