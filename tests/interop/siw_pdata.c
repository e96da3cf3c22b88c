// SPDX-License-Identifier: MIT
/*
 * siw_pdata - one rdma_cm connection that checks what the interop tests need to see end to
 * end: private data both ways, one SEND each way, an orderly disconnect from either side with
 * flush of the outstanding receives, a rejection with private data, and (stream mode) the
 * survivor's view of a peer that dies mid-transfer.
 *
 * Built against the system rdma-core (Debian's, the same version as in the interop guest), so
 * one binary runs natively on the kernel siw driver in the guest and on softiwarp on the host
 * (under siw-run, which swaps in softiwarp's libibverbs.so.1/librdmacm.so.1).
 *
 *   siw_pdata -s [-a BIND_ADDR] -p PORT [options]      server
 *   siw_pdata -c -a SERVER_ADDR -p PORT [options]      client
 *
 *   -l N   client private data length (default 56, the rdma_cm limit for connect on TCP)
 *   -L N   server private data length (default 37: odd, not a multiple of 4)
 *   -m N   message size of the SENDs (default 1024)
 *   -d client|server   which side calls rdma_disconnect first (default client); the other
 *          side must get RDMA_CM_EVENT_DISCONNECTED and have its receives flushed without
 *          calling rdma_disconnect itself
 *   -r     the server rejects with its private data; the client must get
 *          RDMA_CM_EVENT_REJECTED carrying exactly that data
 *   -S N   stream mode: after the first exchange, ping-pong SENDs for up to N seconds. The
 *          test kills one side meanwhile; the survivor must see the peer go (an error
 *          completion or DISCONNECTED), then get DISCONNECTED and every outstanding work
 *          request completed (flushed) within -t seconds. Exit 0 only if the peer went
 *          away and that happened; 5 if the stream ran the whole time
 *   -t N   bound of every wait, in seconds (default 30); -T N: the server's wait for the
 *          connect request (default 120)
 *   -x     (softiwarp side against a peer without RFC 7306, e.g. kernel siw) extra checks: print
 *          the device's atomic_cap and max_sge_rd; right after ESTABLISHED, ibv_post_send of
 *          SEND_WITH_IMM, RDMA_WRITE_WITH_IMM, ATOMIC_FETCH_AND_ADD and ATOMIC_CMP_AND_SWP must
 *          each fail with EINVAL (nothing sent, no completion); after message 0 arrived, one
 *          RDMA READ of the peer's message 0 (advertised in it, see below) into 3 sink SGEs
 *          must return it byte for byte with the guard bytes around the SGEs untouched. The
 *          peer needs no option. Not with -r or -S; needs -m >= 64
 *
 * Message 0 (>= 33 bytes) carries an advertisement of the sender's send slot in bytes 17..32
 * (address 8, rkey 4, length 4, big endian) instead of the pattern; every MR allows remote
 * READ, so the peer of a -x side can always be read from.
 *
 * Private data and messages are deterministic byte patterns, so each side knows what the other
 * must have sent. Output: one line per step, and a last line "RESULT: ok" or "RESULT: FAIL
 * (...)". Exit status 0 only if every check passed (1 check failed, 2 usage, 5 see -S).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define NRECV 8
#define MAX_EVENTS 64
#define MAX_PD 255

enum disc_side { DISC_CLIENT, DISC_SERVER };

static struct {
	int server;
	const char *addr, *port;
	int cl_len, sv_len, msg;
	enum disc_side disc;
	int reject, stream, timeout, accept_timeout, x;
} opt = {.cl_len = 56, .sv_len = 37, .msg = 1024, .timeout = 30, .accept_timeout = 120};

struct ev {
	enum rdma_cm_event_type type;
	int status;
	double at;
};

static struct {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen, *id;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	uint8_t *buf; /* NRECV receive slots, then one send slot, opt.msg bytes each */
	struct ev ev[MAX_EVENTS];
	int nev;
	uint8_t ev_pd[MAX_PD + 1]; /* private data of the last CONNECT_REQUEST/ESTABLISHED/REJECTED */
	int ev_pd_len;
	int ev_ird, ev_ord;
	int recv_out, send_out;		     /* posted, not completed */
	double rq_at[NRECV], sq_at;	     /* when each outstanding one was posted */
	int rq_busy[NRECV];
	double t_clean; /* start of the last CQ poll that found no error completion */
	int recv_ok, send_ok, flushed, errors; /* completions */
	int first_err_status;
	int rq[NRECV * 4], rq_len[NRECV * 4], rq_head, rq_tail; /* completed receive slots */
	int lost;						 /* an error completion was seen */
	int failed;
	double t0;
	/* -x: the peer's advertised send slot (from its message 0) and a copy of that message */
	uint64_t peer_addr;
	uint32_t peer_rkey, peer_len;
	uint8_t *msg0;
} S = {.first_err_status = -1};

#define ADV_OFF 17 /* message 0: the advertisement replaces pattern bytes 17..32 */
#define ADV_LEN 16
#define WR_X 3000  /* wr_ids of the -x work requests */
#define X_GUARD 0xee

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("[%7.3f] %s: ", now() - S.t0, opt.server ? "server" : "client");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("[%7.3f] %s: FAIL: ", now() - S.t0, opt.server ? "server" : "client");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	S.failed++;
}

/* Byte i of message seq sent by the server (who_server) or the client; private data is seq 0. */
static uint8_t pat_byte(int who_server, unsigned seq, int i)
{
	static const char cl[] = "siw_pdata client ", sv[] = "siw_pdata server ";

	if (i < 17)
		return (uint8_t)(who_server ? sv : cl)[i];
	return (uint8_t)((who_server ? 0xa5u : 0x5au) + (unsigned)i * 31u + seq * 7u);
}

static void pattern(uint8_t *p, int len, int who_server, unsigned seq)
{
	for (int i = 0; i < len; i++)
		p[i] = pat_byte(who_server, seq, i);
}

/* bytes [from, to) of p */
static int pattern_range_ok(const uint8_t *p, int from, int to, int who_server, unsigned seq,
			    int *bad_at)
{
	for (int i = from; i < to; i++)
		if (p[i] != pat_byte(who_server, seq, i)) {
			*bad_at = i;
			return 0;
		}
	return 1;
}

static int pattern_ok(const uint8_t *p, int len, int who_server, unsigned seq, int *bad_at)
{
	return pattern_range_ok(p, 0, len, who_server, seq, bad_at);
}

static const char *evname(enum rdma_cm_event_type t)
{
	return rdma_event_str(t);
}

/* ---- event and completion pump ------------------------------------------------------------ */

static void take_pd(const struct rdma_cm_event *e)
{
	S.ev_pd_len = e->param.conn.private_data_len;
	if (S.ev_pd_len > MAX_PD)
		S.ev_pd_len = MAX_PD;
	if (S.ev_pd_len && e->param.conn.private_data)
		memcpy(S.ev_pd, e->param.conn.private_data, (size_t)S.ev_pd_len);
	S.ev_ird = e->param.conn.initiator_depth;
	S.ev_ord = e->param.conn.responder_resources;
}

static void poll_cq(void)
{
	struct ibv_wc wc[16];
	int n;

	double t = now();

	if (!S.cq)
		return;
	while ((n = ibv_poll_cq(S.cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			int is_recv = wc[i].wr_id < NRECV;

			if (wc[i].wr_id >= WR_X && wc[i].wr_id < WR_X + 4) {
				/* a refused RFC 7306 WR completed: it was queued after all */
				S.send_out--;
				fail("-x: a completion for refused work request %llu (status %s)",
				     (unsigned long long)wc[i].wr_id,
				     ibv_wc_status_str(wc[i].status));
				continue;
			}

			if (is_recv) {
				S.recv_out--;
				S.rq_busy[wc[i].wr_id] = 0;
			} else {
				S.send_out--;
			}
			if (wc[i].status == IBV_WC_SUCCESS) {
				if (is_recv) {
					S.recv_ok++;
					S.rq[S.rq_tail % (NRECV * 4)] = (int)wc[i].wr_id;
					S.rq_len[S.rq_tail % (NRECV * 4)] = (int)wc[i].byte_len;
					S.rq_tail++;
				} else {
					S.send_ok++;
				}
				continue;
			}
			if (wc[i].status == IBV_WC_WR_FLUSH_ERR)
				S.flushed++;
			else
				S.errors++;
			if (S.first_err_status < 0) {
				S.first_err_status = wc[i].status;
				say("first error completion: %s %s (status %d, vendor_err 0x%x)",
				    is_recv ? "RECV" : "SEND", ibv_wc_status_str(wc[i].status),
				    wc[i].status, wc[i].vendor_err);
			}
			S.lost = 1;
		}
	}
	if (n < 0) {
		fail("ibv_poll_cq returned %d", n);
		S.lost = 1;
	}
	if (!S.lost)
		S.t_clean = t;
}

/* Wait up to ms for CM events (recording them) and drain the CQ. */
static void pump(int ms)
{
	struct pollfd pfd = {.fd = S.ch->fd, .events = POLLIN};
	struct rdma_cm_event *e;

	if (poll(&pfd, 1, ms) > 0 && (pfd.revents & POLLIN) && !rdma_get_cm_event(S.ch, &e)) {
		if (S.nev < MAX_EVENTS) {
			S.ev[S.nev].type = e->event;
			S.ev[S.nev].status = e->status;
			S.ev[S.nev].at = now();
			S.nev++;
		}
		say("event %s (status %d)", evname(e->event), e->status);
		switch (e->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			S.id = e->id;
			take_pd(e);
			break;
		case RDMA_CM_EVENT_ESTABLISHED:
		case RDMA_CM_EVENT_REJECTED:
			take_pd(e);
			break;
		default:
			break;
		}
		rdma_ack_cm_event(e);
	}
	poll_cq();
}

/* Wait for the first event at index >= *from whose type is in want[] (terminated by -1).
 * Returns its type, or -1 after secs. Moves *from past it. */
static int wait_ev(int *from, const int *want, double secs)
{
	double end = now() + secs;

	for (;;) {
		for (; *from < S.nev; (*from)++)
			for (const int *w = want; *w >= 0; w++)
				if ((int)S.ev[*from].type == *w)
					return (int)S.ev[(*from)++].type;
		if (now() >= end)
			return -1;
		pump(10);
	}
}

static int seen(enum rdma_cm_event_type t)
{
	for (int i = 0; i < S.nev; i++)
		if (S.ev[i].type == t)
			return 1;
	return 0;
}

/* ---- verbs --------------------------------------------------------------------------------- */

static uint8_t *slot(int i)
{
	return S.buf + (size_t)i * (size_t)opt.msg;
}

/* After the NRECV + 1 slots: the -x area (READ sink with guard bytes, atomic result word). */
#define X_AREA(msg) ((size_t)(msg) + 256)

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static int post_recv(int i)
{
	struct ibv_sge sge = {.addr = (uintptr_t)slot(i), .length = (uint32_t)opt.msg,
			      .lkey = S.mr->lkey};
	struct ibv_recv_wr wr = {.wr_id = (uint64_t)i, .sg_list = &sge, .num_sge = 1}, *bad;
	int r;

	/* Never post once the connection is known to be gone: kernel siw's user-space QPs
	 * (libsiw writes the RQ ring, no system call) never complete a receive posted after the
	 * flush, which is a difference we report rather than a test failure. */
	if (S.lost || seen(RDMA_CM_EVENT_DISCONNECTED))
		return 0;
	r = ibv_post_recv(S.id->qp, &wr, &bad);
	if (r) {
		fail("ibv_post_recv: %s", strerror(r));
		return -1;
	}
	S.recv_out++;
	S.rq_busy[i] = 1;
	S.rq_at[i] = now();
	return 0;
}

static int post_send(unsigned seq)
{
	struct ibv_sge sge = {.addr = (uintptr_t)slot(NRECV), .length = (uint32_t)opt.msg,
			      .lkey = S.mr->lkey};
	struct ibv_send_wr wr = {.wr_id = 1000 + seq, .sg_list = &sge, .num_sge = 1,
				 .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED},
			   *bad;
	int r;

	pattern(slot(NRECV), opt.msg, opt.server, seq);
	if (seq == 0 && opt.msg >= ADV_OFF + ADV_LEN) { /* advertise the send slot (see -x) */
		put_be(slot(NRECV) + ADV_OFF, (uintptr_t)slot(NRECV), 8);
		put_be(slot(NRECV) + ADV_OFF + 8, S.mr->rkey, 4);
		put_be(slot(NRECV) + ADV_OFF + 12, (uint32_t)opt.msg, 4);
	}
	r = ibv_post_send(S.id->qp, &wr, &bad);
	if (r) {
		fail("ibv_post_send: %s", strerror(r));
		return -1;
	}
	S.send_out++;
	S.sq_at = now();
	return 0;
}

static int setup_qp(void)
{
	struct ibv_qp_init_attr qa = {0};

	S.pd = ibv_alloc_pd(S.id->verbs);
	S.cq = S.pd ? ibv_create_cq(S.id->verbs, 4 * NRECV, NULL, NULL, 0) : NULL;
	S.buf = calloc(1, (size_t)(NRECV + 1) * (size_t)opt.msg + X_AREA(opt.msg));
	/* remote READ: a -x peer reads this side's message 0 from the send slot */
	S.mr = S.cq && S.buf ? ibv_reg_mr(S.pd, S.buf,
					  (size_t)(NRECV + 1) * (size_t)opt.msg + X_AREA(opt.msg),
					  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ)
			     : NULL;
	if (!S.mr) {
		fail("PD/CQ/MR setup: %s", strerror(errno));
		return -1;
	}
	qa.send_cq = qa.recv_cq = S.cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 1;
	qa.cap.max_send_wr = 2 * NRECV;
	qa.cap.max_recv_wr = NRECV;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	if (opt.x)
		qa.cap.max_send_sge = 3; /* the multi-SGE READ */
	if (rdma_create_qp(S.id, S.pd, &qa)) {
		fail("rdma_create_qp: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < NRECV; i++)
		if (post_recv(i))
			return -1;
	return 0;
}

/* Wait for one successful receive; returns its slot or -1 (timeout or error completion). */
static int wait_recv(double secs, int *len)
{
	double end = now() + secs;

	while (S.rq_head == S.rq_tail) {
		if (S.lost || now() >= end)
			return -1;
		pump(1);
	}
	*len = S.rq_len[S.rq_head % (NRECV * 4)];
	return S.rq[S.rq_head++ % (NRECV * 4)];
}

static int wait_sends(double secs)
{
	double end = now() + secs;

	while (S.send_out > 0) {
		if (S.lost || now() >= end)
			return -1;
		pump(1);
	}
	return 0;
}

static int check_msg(int s, int len, unsigned seq)
{
	int bad = -1, adv = seq == 0 && len >= ADV_OFF + ADV_LEN;
	const uint8_t *p = slot(s);

	if (len != opt.msg) {
		fail("message %u: %d bytes received, %d expected", seq, len, opt.msg);
		return -1;
	}
	if (!adv ? !pattern_ok(p, len, !opt.server, seq, &bad)
		 : !pattern_range_ok(p, 0, ADV_OFF, !opt.server, seq, &bad) ||
			   !pattern_range_ok(p, ADV_OFF + ADV_LEN, len, !opt.server, seq, &bad)) {
		fail("message %u: byte %d differs", seq, bad);
		return -1;
	}
	if (adv) {
		S.peer_addr = get_be(p + ADV_OFF, 8);
		S.peer_rkey = (uint32_t)get_be(p + ADV_OFF + 8, 4);
		S.peer_len = (uint32_t)get_be(p + ADV_OFF + 12, 4);
		if (S.peer_len != (uint32_t)opt.msg) {
			fail("message 0: advertised length %u, %d expected", S.peer_len, opt.msg);
			return -1;
		}
		free(S.msg0);
		S.msg0 = malloc((size_t)len);
		if (S.msg0)
			memcpy(S.msg0, p, (size_t)len);
	}
	return 0;
}

static void check_pd(const char *what, int want_len, int who_server)
{
	int bad = -1;

	if (S.ev_pd_len != want_len)
		fail("%s: private data is %d bytes, %d expected", what, S.ev_pd_len, want_len);
	else if (!pattern_ok(S.ev_pd, want_len, who_server, 0, &bad))
		fail("%s: private data byte %d differs", what, bad);
	else
		say("%s: private data %d bytes: ok (\"%.*s...\")", what, want_len,
		    want_len < 17 ? want_len : 17, (const char *)S.ev_pd);
}

/* ---- phases -------------------------------------------------------------------------------- */

/* After the peer or we ended the connection: DISCONNECTED, then every outstanding work request
 * completed (flushed). */
static void check_teardown(const char *why, int evidx)
{
	static const int disc[] = {RDMA_CM_EVENT_DISCONNECTED, -1};
	double t = now(), end;

	if (wait_ev(&evidx, disc, opt.timeout) < 0 && !seen(RDMA_CM_EVENT_DISCONNECTED))
		fail("%s: no DISCONNECTED event within %d s", why, opt.timeout);
	else
		say("%s: DISCONNECTED after %.0f ms", why, (now() - t) * 1000);
	end = now() + opt.timeout;
	while ((S.recv_out > 0 || S.send_out > 0) && now() < end)
		pump(5);
	if (S.recv_out > 0 || S.send_out > 0) {
		/* A work request posted after the last CQ poll that found no error may have been
		 * posted after the QP was flushed already (see post_recv); only the older ones
		 * must have completed. */
		int late = 0, old = 0;

		for (int i = 0; i < NRECV; i++)
			if (S.rq_busy[i])
				S.rq_at[i] >= S.t_clean ? late++ : old++;
		if (S.send_out > 0)
			S.sq_at >= S.t_clean ? late++ : old++;
		if (old)
			fail("%s: %d receives and %d sends still outstanding %d s later (%d of them "
			     "posted before the flush)",
			     why, S.recv_out, S.send_out, opt.timeout, old);
		else
			say("%s: %d flushed (WR_FLUSH_ERR), %d other errors; %d work request(s) "
			    "posted while the QP was being flushed never completed (not counted)",
			    why, S.flushed, S.errors, late);
	} else
		say("%s: all work requests completed: %d flushed (WR_FLUSH_ERR), %d other errors, "
		    "%.0f ms",
		    why, S.flushed, S.errors, (now() - t) * 1000);
}

static int stream(void)
{
	double end = now() + opt.stream, next_report = now() + 1;
	unsigned seq = 1;
	int s, len;

	say("stream: running (up to %d s, %d-byte messages)", opt.stream, opt.msg);
	while (now() < end && !S.lost && !seen(RDMA_CM_EVENT_DISCONNECTED)) {
		if (!opt.server && post_send(seq))
			break;
		s = wait_recv(opt.timeout, &len);
		if (s < 0)
			break;
		if (check_msg(s, len, seq) || post_recv(s))
			return -1;
		if (opt.server && post_send(seq))
			break;
		if (wait_sends(opt.timeout))
			break;
		if (now() >= next_report) {
			say("stream: %u round trips", seq);
			next_report = now() + 1;
		}
		seq++;
	}
	if (S.lost || seen(RDMA_CM_EVENT_DISCONNECTED)) {
		say("stream: peer lost after %u round trips", seq - 1);
		return 1;
	}
	if (now() < end) { /* a wait timed out: neither an error nor an event */
		fail("stream: stalled at round trip %u for %d s without an error or event", seq,
		     opt.timeout);
		return -1;
	}
	say("stream: %u round trips, the peer is still there", seq - 1);
	return 0;
}

/* ---- -x: what softiwarp must never send to a peer without RFC 7306 ------------------------- */

static uint8_t *x_area(void)
{
	return S.buf + (size_t)(NRECV + 1) * (size_t)opt.msg;
}

/* Right after ESTABLISHED: the device's attributes, then every RFC 7306 opcode refused. */
static void x_refuse(void)
{
	static const struct {
		enum ibv_wr_opcode op;
		const char *name;
	} ops[] = {{IBV_WR_SEND_WITH_IMM, "SEND_WITH_IMM"},
		   {IBV_WR_RDMA_WRITE_WITH_IMM, "RDMA_WRITE_WITH_IMM"},
		   {IBV_WR_ATOMIC_FETCH_AND_ADD, "ATOMIC_FETCH_AND_ADD"},
		   {IBV_WR_ATOMIC_CMP_AND_SWP, "ATOMIC_CMP_AND_SWP"}};
	struct ibv_device_attr da;
	/* the atomics' 8-byte result word: the last 8-aligned word of the -x area */
	uint8_t *word = (uint8_t *)(((uintptr_t)x_area() + X_AREA(opt.msg) - 8) & ~(uintptr_t)7);

	if (ibv_query_device(S.id->verbs, &da)) {
		fail("-x: ibv_query_device: %s", strerror(errno));
	} else {
		say("x: device %s: atomic_cap %d (%s), max_sge_rd %d, max_qp_rd_atom %d",
		    ibv_get_device_name(S.id->verbs->device), (int)da.atomic_cap,
		    da.atomic_cap == IBV_ATOMIC_NONE  ? "NONE"
		    : da.atomic_cap == IBV_ATOMIC_HCA ? "HCA"
						      : "GLOB",
		    da.max_sge_rd, da.max_qp_rd_atom);
		if (da.max_sge_rd < 3)
			fail("-x: max_sge_rd %d, the multi-SGE READ needs 3", da.max_sge_rd);
	}
	for (int i = 0; i < 4; i++) {
		int atomic = ops[i].op == IBV_WR_ATOMIC_FETCH_AND_ADD ||
			     ops[i].op == IBV_WR_ATOMIC_CMP_AND_SWP;
		struct ibv_sge sge = {.addr = atomic ? (uintptr_t)word : (uintptr_t)slot(NRECV),
				      .length = atomic ? 8 : 64, .lkey = S.mr->lkey};
		struct ibv_send_wr wr = {.wr_id = WR_X + (uint64_t)i, .sg_list = &sge, .num_sge = 1,
					 .opcode = ops[i].op, .send_flags = IBV_SEND_SIGNALED},
				   *bad = NULL;
		int r;

		/* well-formed requests (the peer's buffer is not known yet: a plausible remote
		 * address and rkey; only the opcode must make them fail) */
		if (atomic) {
			wr.wr.atomic.remote_addr = 0x10000;
			wr.wr.atomic.rkey = 0x7306;
			wr.wr.atomic.compare_add = 1;
			wr.wr.atomic.swap = 2;
		} else {
			wr.imm_data = htobe32(0x7306u + (uint32_t)i);
			wr.wr.rdma.remote_addr = 0x10000;
			wr.wr.rdma.rkey = 0x7306;
		}
		r = ibv_post_send(S.id->qp, &wr, &bad);
		if (r == EINVAL && bad == &wr) {
			say("x: %s: ibv_post_send -> EINVAL: ok (refused, nothing sent)",
			    ops[i].name);
			continue;
		}
		if (!r)
			S.send_out++; /* queued after all: its completion is counted as a failure */
		fail("-x: %s: ibv_post_send returned %d (%s), bad_wr %s; EINVAL expected toward a "
		     "peer without RFC 7306",
		     ops[i].name, r, r ? strerror(r) : "accepted",
		     bad == &wr ? "= the WR" : bad ? "other" : "NULL");
	}
	pump(20); /* a refused WR must never complete: poll once now, and until the end */
}

/* After message 0 arrived: one RDMA READ of the peer's message 0 into 3 sink SGEs of odd
 * sizes at odd offsets (one READ Request per SGE on softiwarp: plain RFC 5040 traffic). */
static int x_read(void)
{
	uint8_t *sink = x_area();
	int len = (int)S.peer_len, l[3], off[3], pos = 0, bad = -1, end;
	struct ibv_sge sge[3];
	struct ibv_send_wr wr = {.wr_id = 4000, .sg_list = sge, .num_sge = 3,
				 .opcode = IBV_WR_RDMA_READ, .send_flags = IBV_SEND_SIGNALED},
			   *badwr = NULL;
	double t = now();
	int r;

	if (!S.msg0) {
		fail("-x: message 0 carried no advertisement");
		return -1;
	}
	l[0] = len / 3 + 1;
	l[1] = len / 3 - 7;
	l[2] = len - l[0] - l[1];
	off[0] = 8;
	off[1] = off[0] + l[0] + 13;
	off[2] = off[1] + l[1] + 29;
	end = off[2] + l[2] + 8;
	memset(sink, X_GUARD, (size_t)end);
	for (int i = 0; i < 3; i++) {
		sge[i].addr = (uintptr_t)(sink + off[i]);
		sge[i].length = (uint32_t)l[i];
		sge[i].lkey = S.mr->lkey;
	}
	wr.wr.rdma.remote_addr = S.peer_addr;
	wr.wr.rdma.rkey = S.peer_rkey;
	r = ibv_post_send(S.id->qp, &wr, &badwr);
	if (r) {
		fail("-x: multi-SGE RDMA READ: ibv_post_send: %s", strerror(r));
		return -1;
	}
	S.send_out++;
	S.sq_at = now();
	if (wait_sends(opt.timeout)) {
		fail("-x: multi-SGE RDMA READ did not complete successfully");
		return -1;
	}
	for (int i = 0, at = 0; i < end; i++) { /* SGE i: message bytes in order; else guard */
		int in;

		while (at < 3 && i >= off[at] + l[at])
			at++;
		in = at < 3 && i >= off[at];
		if (in ? sink[i] != S.msg0[pos] : sink[i] != X_GUARD) {
			bad = i;
			break;
		}
		pos += in;
	}
	if (bad >= 0 || pos != len) {
		fail("-x: multi-SGE RDMA READ: sink byte %d (message byte %d) differs", bad, pos);
		return -1;
	}
	say("x: RDMA READ of the peer's message 0 (%d bytes, rkey 0x%x) into 3 sink SGEs "
	    "(%d+%d+%d bytes): ok, byte for byte, guard bytes untouched (%.1f ms)",
	    len, S.peer_rkey, l[0], l[1], l[2], (now() - t) * 1000);
	return 0;
}

static int run(void)
{
	static const int req[] = {RDMA_CM_EVENT_CONNECT_REQUEST, -1};
	static const int conn[] = {RDMA_CM_EVENT_ESTABLISHED, RDMA_CM_EVENT_REJECTED,
				   RDMA_CM_EVENT_UNREACHABLE, RDMA_CM_EVENT_CONNECT_ERROR,
				   RDMA_CM_EVENT_DISCONNECTED, -1};
	static const int addr[] = {RDMA_CM_EVENT_ADDR_RESOLVED, RDMA_CM_EVENT_ADDR_ERROR, -1};
	static const int route[] = {RDMA_CM_EVENT_ROUTE_RESOLVED, RDMA_CM_EVENT_ROUTE_ERROR, -1};
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	uint8_t mypd[MAX_PD];
	int mylen = opt.server ? opt.sv_len : opt.cl_len, peerlen = opt.server ? opt.cl_len
									     : opt.sv_len;
	struct rdma_conn_param cp = {0};
	int k = 0, r, s, len, st;

	pattern(mypd, mylen, opt.server, 0);
	S.ch = rdma_create_event_channel();
	if (!S.ch) {
		fail("rdma_create_event_channel: %s", strerror(errno));
		return -1;
	}
	if (opt.server)
		hints.ai_flags = AI_PASSIVE;
	if ((r = getaddrinfo(opt.addr, opt.port, &hints, &ai))) {
		fail("getaddrinfo %s:%s: %s", opt.addr ? opt.addr : "*", opt.port, gai_strerror(r));
		return -1;
	}
	if (opt.server) {
		if (rdma_create_id(S.ch, &S.listen, NULL, RDMA_PS_TCP) ||
		    rdma_bind_addr(S.listen, ai->ai_addr) || rdma_listen(S.listen, 4)) {
			fail("listen on %s:%s: %s", opt.addr ? opt.addr : "*", opt.port,
			     strerror(errno));
			freeaddrinfo(ai);
			return -1;
		}
		freeaddrinfo(ai);
		say("listening on %s:%s", opt.addr ? opt.addr : "*", opt.port);
		if (wait_ev(&k, req, opt.accept_timeout) < 0) {
			fail("no connect request within %d s", opt.accept_timeout);
			return -1;
		}
		check_pd("connect request", peerlen, 0);
		say("connect request: initiator_depth %d, responder_resources %d", S.ev_ird,
		    S.ev_ord);
		cp.private_data = mypd;
		cp.private_data_len = (uint8_t)mylen;
		if (opt.reject) {
			if (rdma_reject(S.id, mypd, (uint8_t)mylen)) {
				fail("rdma_reject: %s", strerror(errno));
				return -1;
			}
			say("rejected with %d bytes of private data", mylen);
			return 0;
		}
		if (setup_qp())
			return -1;
		cp.responder_resources = 1;
		cp.initiator_depth = 1;
		if (rdma_accept(S.id, &cp)) {
			fail("rdma_accept: %s", strerror(errno));
			return -1;
		}
	} else {
		if (rdma_create_id(S.ch, &S.id, NULL, RDMA_PS_TCP) ||
		    rdma_resolve_addr(S.id, NULL, ai->ai_addr, 5000)) {
			fail("resolve %s: %s", opt.addr, strerror(errno));
			freeaddrinfo(ai);
			return -1;
		}
		freeaddrinfo(ai);
		if (wait_ev(&k, addr, opt.timeout) != RDMA_CM_EVENT_ADDR_RESOLVED ||
		    rdma_resolve_route(S.id, 5000) ||
		    wait_ev(&k, route, opt.timeout) != RDMA_CM_EVENT_ROUTE_RESOLVED) {
			fail("address/route resolution of %s failed", opt.addr);
			return -1;
		}
		if (setup_qp())
			return -1;
		cp.private_data = mypd;
		cp.private_data_len = (uint8_t)mylen;
		cp.responder_resources = 1;
		cp.initiator_depth = 1;
		cp.retry_count = 7;
		if (rdma_connect(S.id, &cp)) {
			fail("rdma_connect: %s", strerror(errno));
			return -1;
		}
		say("connecting to %s:%s with %d bytes of private data", opt.addr, opt.port, mylen);
	}

	r = wait_ev(&k, conn, opt.timeout);
	if (opt.reject && !opt.server) {
		if (r != RDMA_CM_EVENT_REJECTED) {
			fail("expected REJECTED, got %s", r < 0 ? "nothing" : evname(r));
			return -1;
		}
		check_pd("reject", peerlen, 1);
		return 0;
	}
	if (r != RDMA_CM_EVENT_ESTABLISHED) {
		fail("expected ESTABLISHED, got %s", r < 0 ? "nothing" : evname(r));
		return -1;
	}
	if (opt.x)
		x_refuse();
	if (!opt.server) {
		check_pd("established", peerlen, 1);
		say("established: initiator_depth %d, responder_resources %d", S.ev_ird, S.ev_ord);
		if (post_send(0) || wait_sends(opt.timeout)) {
			fail("SEND 0 did not complete");
			return -1;
		}
	}
	s = wait_recv(opt.timeout, &len);
	if (s < 0) {
		fail("no message 0 within %d s", opt.timeout);
		return -1;
	}
	if (check_msg(s, len, 0) || (opt.stream && post_recv(s)))
		return -1;
	if (opt.x && x_read())
		return -1;
	if (opt.server && (post_send(0) || wait_sends(opt.timeout))) {
		fail("SEND 0 did not complete");
		return -1;
	}
	say("SEND each way (%d bytes): ok", opt.msg);

	if (opt.stream) {
		st = stream();
		if (st < 0)
			return -1;
		if (st > 0) {
			check_teardown("peer loss", k);
			return S.failed ? -1 : 0;
		}
		/* the peer survived the whole stream: end normally, exit 5 */
	}

	if ((opt.disc == DISC_SERVER) == (opt.server != 0)) {
		say("rdma_disconnect (this side ends the connection)");
		if (rdma_disconnect(S.id))
			fail("rdma_disconnect: %s", strerror(errno));
		check_teardown("local disconnect", k);
	} else {
		check_teardown("peer disconnect", k);
		rdma_disconnect(S.id); /* usual application reaction; must be harmless now */
	}
	return opt.stream ? 5 : 0;
}

static void cleanup(void)
{
	if (S.id && S.id->qp)
		rdma_destroy_qp(S.id);
	if (S.mr)
		ibv_dereg_mr(S.mr);
	if (S.cq)
		ibv_destroy_cq(S.cq);
	if (S.pd)
		ibv_dealloc_pd(S.pd);
	if (S.id)
		rdma_destroy_id(S.id);
	if (S.listen)
		rdma_destroy_id(S.listen);
	if (S.ch)
		rdma_destroy_event_channel(S.ch);
	free(S.buf);
	free(S.msg0);
}

static void usage(void)
{
	fprintf(stderr, "usage: siw_pdata -s|-c [-a ADDR] -p PORT [-l N] [-L N] [-m N] "
			"[-d client|server] [-r] [-S SECS] [-t SECS] [-T SECS] [-x]\n");
	exit(2);
}

static int num(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < lo || v > hi)
		usage();
	return (int)v;
}

int main(int argc, char **argv)
{
	int c, role = 0, r;

	while ((c = getopt(argc, argv, "sca:p:l:L:m:d:rS:t:T:x")) != -1) {
		switch (c) {
		case 's': role |= 1; opt.server = 1; break;
		case 'c': role |= 2; break;
		case 'a': opt.addr = optarg; break;
		case 'p': opt.port = optarg; break;
		case 'l': opt.cl_len = num(optarg, 0, 56); break;
		case 'L': opt.sv_len = num(optarg, 0, 56); break;
		case 'm': opt.msg = num(optarg, 1, 1 << 20); break;
		case 'd':
			if (!strcmp(optarg, "client"))
				opt.disc = DISC_CLIENT;
			else if (!strcmp(optarg, "server"))
				opt.disc = DISC_SERVER;
			else
				usage();
			break;
		case 'r': opt.reject = 1; break;
		case 'S': opt.stream = num(optarg, 1, 3600); break;
		case 't': opt.timeout = num(optarg, 1, 3600); break;
		case 'T': opt.accept_timeout = num(optarg, 1, 3600); break;
		case 'x': opt.x = 1; break;
		default: usage();
		}
	}
	if ((role != 1 && role != 2) || !opt.port || (!opt.server && !opt.addr) || optind != argc)
		usage();
	if (opt.x && (opt.reject || opt.stream || opt.msg < 64))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	S.t0 = now();
	r = run();
	cleanup();
	if (r == 5 && !S.failed) {
		printf("RESULT: the peer was still there after %d s (stream mode expects it to die)\n",
		       opt.stream);
		return 5;
	}
	if (r < 0 || S.failed) {
		printf("RESULT: FAIL (%d check%s failed)\n", S.failed ? S.failed : 1,
		       S.failed > 1 ? "s" : "");
		return 1;
	}
	printf("RESULT: ok\n");
	return 0;
}
