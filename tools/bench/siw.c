// SPDX-License-Identifier: MIT
/*
 * The softiwarp half of siw-bench, through the public verbs / rdma_cm API only.
 *
 * Connections: the server listens with rdma_cm on 127.0.0.1; the client connects --qps QPs one
 * after another (private data names the QP index), with initiator_depth = responder_resources
 * = min(16, device limits) so that READs are allowed (iWARP negotiates ORD/IRD in MPA).
 *
 * Memory: each process registers one arena (one MR, one rkey) laid out the same way on both
 * sides, so the peer's addresses follow from its base address:
 *
 *	A	max_size	client: data source (WRITE, SEND)
 *				server: WRITE target, READ source, receive buffer of every SEND
 *	B	max_size	client: READ sink, pong target (WRITE latency), pong receive buffer
 *				server: pong source
 *	credit	qps * 1 KiB	client: one credit word pair per QP (64-byte stride)
 *				server: a ring of 64 sources of 16 bytes per QP for credit writes
 *	fence	4 KiB		client: sink of the fence READs
 *
 * Credits (iWARP has no RNR retry: a SEND without a posted receive kills the connection): the
 * receiver posts rq receives per QP before accepting and reposts each as it completes; every
 * rq/4 reposts (and at the end of a row) it RDMA WRITEs {posted, ~posted} -- the number of
 * receives it ever posted on that QP -- into the sender's credit word. The sender posts a SEND
 * only while its SEND count on that QP is below the last valid value it read (a torn read of
 * the pair fails the ~ check and is ignored). Pongs need no credits: one is in flight at a time
 * and the client reposts its receive before it sends the next ping.
 *
 * Timing: a send completion means "in TCP's hands" on softiwarp, so bandwidth rows of WRITE and
 * SEND end with a small READ on every QP (its response comes after everything before it was
 * placed): the row's time runs to that READ's completion, and the server checks its memory only
 * then.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "bench.h"

#define CREDIT_STRIDE 64 /* client: bytes per QP in the credit area */
#define CREDIT_RING   64 /* server: credit-write sources per QP */
#define CREDIT_SLOT   16
#define FENCE_LEN     8
#define PD_MAGIC      0x53574251u /* "SWBQ": private data of our connect requests */

#define MR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

/* wr_id: kind (8 bits) | QP index (16 bits) | sequence (40 bits) */
enum wr_kind {
	WRK_BATCH = 1, /* bandwidth data; only a batch's last WR is signaled */
	WRK_ONE,       /* one signaled WR: latency ping/pong/READ */
	WRK_FENCE,     /* the READ ending a WRITE/SEND bandwidth row */
	WRK_CREDIT,    /* server: credit return */
	WRK_RECV,
};
#define WR_SEQ_MASK ((1ull << 40) - 1)

static uint64_t mk_wr_id(enum wr_kind k, int q, uint64_t seq)
{
	return (uint64_t)k << 56 | (uint64_t)q << 40 | (seq & WR_SEQ_MASK);
}

struct conn_pd {
	uint32_t magic;
	uint32_t index;
};

struct sqp {
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	bool established, disconnected;
	uint64_t posted, done; /* WRK_BATCH sequence numbers of the current row */
	uint32_t sq_out;       /* send WRs not completed yet, all kinds */
	uint32_t credit_out;   /* server: credit writes in flight */
	uint32_t credit_slot;
	uint64_t sends;        /* client: SENDs ever posted */
	uint64_t credit_seen;  /* client: the receive count of the peer, last valid read */
	uint64_t recvs_posted; /* receives ever posted */
	uint64_t credit_sent;  /* server: recvs_posted as last written to the client */
};

struct siw {
	bool server;
	const struct bench_opts *o;
	int nqps, depth, sq, rq, inline_max, ord;
	uint32_t credit_thresh;
	bool events, armed;
	size_t max_size;
	struct rdma_event_channel *cm_ch;
	struct rdma_cm_id *listen_id;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct ibv_comp_channel *comp;
	struct ibv_cq *scq, *rcq;
	uint8_t *arena;
	size_t arena_len;
	size_t off_a, off_b, off_credit, off_fence;
	struct ibv_mr *mr;
	uint64_t peer_addr;
	uint32_t peer_rkey;
	uint32_t peer_rq;    /* client: receives the server posts per QP at setup */
	uint64_t sq_out;     /* all QPs */
	uint64_t one_done;   /* WRK_ONE completions */
	uint64_t send_total; /* client: SENDs ever posted, all QPs */
	uint64_t recv_total; /* server: receives ever completed, all QPs */
	unsigned spins;
	struct sqp *qp;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static size_t page_up(size_t n)
{
	return (n + 4095) & ~(size_t)4095;
}

static void layout(struct siw *s)
{
	s->off_a = 0;
	s->off_b = page_up(s->max_size);
	s->off_credit = s->off_b + page_up(s->max_size);
	s->off_fence = s->off_credit + page_up((size_t)s->nqps * CREDIT_RING * CREDIT_SLOT);
	s->arena_len = s->off_fence + 4096;
}

static double tmo(const struct siw *s)
{
	return s->o->timeout;
}

/* Connection setup: the timeout, plus some time per QP. */
static double tmo_setup(const struct bench_opts *o)
{
	return o->timeout + 0.25 * o->qps;
}

static int64_t deadline_in(double secs)
{
	return now_ns() + (int64_t)(secs * 1e9);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * Busy-wait step. The host may have fewer cores than busy threads (two applications spinning
 * plus two progress threads on a 2-core machine), so a spinner yields now and then to let the
 * progress threads that do the actual work run.
 */
static void spin(struct siw *s)
{
	cpu_relax();
	if (++s->spins % 16 == 0)
		sched_yield();
}

static const char *wr_opname(enum ibv_wr_opcode opc)
{
	switch (opc) {
	case IBV_WR_RDMA_WRITE:
		return "RDMA WRITE";
	case IBV_WR_RDMA_READ:
		return "RDMA READ";
	case IBV_WR_SEND:
		return "SEND";
	default:
		return "?";
	}
}

static int post1(struct siw *s, int q, enum ibv_wr_opcode opc, uint64_t id, void *laddr, size_t len,
		 size_t roff, unsigned flags)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)laddr, .length = (uint32_t)len, .lkey = s->mr->lkey};
	struct ibv_send_wr wr, *bad = NULL;
	int e;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = opc;
	wr.send_flags = flags | IBV_SEND_SIGNALED;
	if (opc != IBV_WR_SEND) {
		wr.wr.rdma.remote_addr = s->peer_addr + roff;
		wr.wr.rdma.rkey = s->peer_rkey;
	}
	e = ibv_post_send(s->qp[q].qp, &wr, &bad);
	if (e)
		return err("ibv_post_send (%s of %zu bytes, QP %d): %s", wr_opname(opc), len, q,
			   strerror(e));
	s->qp[q].sq_out++;
	s->sq_out++;
	return 0;
}

static int post_recvs(struct siw *s, int q, int n)
{
	uint8_t *buf = s->arena + (s->server ? s->off_a : s->off_b);
	struct ibv_sge sge = {
	    .addr = (uintptr_t)buf, .length = (uint32_t)s->max_size, .lkey = s->mr->lkey};
	struct ibv_recv_wr wr, *bad = NULL;

	for (int i = 0; i < n; i++) {
		int e;

		memset(&wr, 0, sizeof(wr));
		wr.wr_id = mk_wr_id(WRK_RECV, q, 0);
		wr.sg_list = &sge;
		wr.num_sge = 1;
		e = ibv_post_recv(s->qp[q].qp, &wr, &bad);
		if (e)
			return err("ibv_post_recv (QP %d): %s", q, strerror(e));
		s->qp[q].recvs_posted++;
	}
	return 0;
}

static int wc_check(const struct ibv_wc *wc, const char *where)
{
	if (wc->status == IBV_WC_SUCCESS)
		return 0;
	return err("%s: work completion with status %s (%d), vendor_err 0x%x, wr kind %u, QP "
		   "index %u",
		   where, ibv_wc_status_str(wc->status), wc->status, wc->vendor_err,
		   (unsigned)(wc->wr_id >> 56), (unsigned)(wc->wr_id >> 40) & 0xffff);
}

/* One poll of the send CQ: retires what completed. Returns the number of CQEs or -1. */
static int reap_send(struct siw *s)
{
	struct ibv_wc wc[32];
	int n = ibv_poll_cq(s->scq, 32, wc);

	if (n < 0)
		return err("ibv_poll_cq (send CQ) failed");
	for (int i = 0; i < n; i++) {
		unsigned kind = (unsigned)(wc[i].wr_id >> 56);
		unsigned q = (unsigned)(wc[i].wr_id >> 40) & 0xffff;
		uint64_t seq = wc[i].wr_id & WR_SEQ_MASK;
		struct sqp *p;

		if (wc_check(&wc[i], "send queue") < 0)
			return -1;
		if (q >= (unsigned)s->nqps)
			return err("send completion for unknown QP index %u", q);
		p = &s->qp[q];
		if (kind == WRK_BATCH) {
			uint64_t retire = seq + 1 - p->done;

			if (seq < p->done || retire > p->sq_out)
				return err("send completion out of order on QP %u (seq %llu, "
					   "%llu done)",
					   q, (unsigned long long)seq, (unsigned long long)p->done);
			p->done = seq + 1;
			p->sq_out -= (uint32_t)retire;
			s->sq_out -= retire;
			continue;
		}
		if (!p->sq_out)
			return err("unexpected send completion on QP %u", q);
		p->sq_out--;
		s->sq_out--;
		if (kind == WRK_CREDIT)
			p->credit_out--;
		else if (kind == WRK_ONE)
			s->one_done++;
	}
	return n;
}

/*
 * Nothing to do right now. Polling mode: spin once. Event mode: arm both CQs (the caller then
 * polls once more), or, already armed, sleep on the completion channel (and extra_fd, when
 * >= 0) until something happens. Fails once deadline has passed.
 */
static int idle(struct siw *s, int64_t deadline, int extra_fd, const char *what)
{
	struct pollfd p[2];
	int n = 1;

	if (now_ns() > deadline)
		return err("timed out: %s", what);
	if (!s->events) {
		spin(s);
		return 0;
	}
	if (!s->armed) {
		if (ibv_req_notify_cq(s->scq, 0) || ibv_req_notify_cq(s->rcq, 0))
			return err("ibv_req_notify_cq failed");
		s->armed = true;
		return 0;
	}
	p[0].fd = s->comp->fd;
	p[0].events = POLLIN;
	if (extra_fd >= 0) {
		p[1].fd = extra_fd;
		p[1].events = POLLIN;
		n = 2;
	}
	if (poll(p, (nfds_t)n, ms_left(deadline, 100)) < 0 && errno != EINTR)
		return err_errno("poll (completion channel)");
	if (p[0].revents & POLLIN) {
		struct ibv_cq *cq;
		void *ctx;

		while (!ibv_get_cq_event(s->comp, &cq, &ctx)) {
			ibv_ack_cq_events(cq, 1);
			s->armed = false;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return err_errno("ibv_get_cq_event");
	}
	return 0;
}

/* Waits until QP q has room for one more send WR. */
static int sq_room(struct siw *s, int q, int64_t deadline)
{
	while (s->qp[q].sq_out + 1 > (uint32_t)s->sq) {
		int n = reap_send(s);

		if (n < 0)
			return -1;
		if (!n && idle(s, deadline, -1, "send queue full") < 0)
			return -1;
	}
	return 0;
}

/* Waits until every send WR completed. */
static int sq_drain(struct siw *s, int64_t deadline)
{
	while (s->sq_out) {
		int n = reap_send(s);

		if (n < 0)
			return -1;
		if (!n && idle(s, deadline, -1, "send completions") < 0)
			return -1;
	}
	return 0;
}

/* ---- credits -------------------------------------------------------------------------------- */

static uint64_t credits(struct siw *s, int q)
{
	struct sqp *p = &s->qp[q];
	const uint64_t *w =
	    (const uint64_t *)(s->arena + s->off_credit + (size_t)q * CREDIT_STRIDE);
	uint64_t v = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE);
	uint64_t c = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);

	if (c == ~v && v > p->credit_seen)
		p->credit_seen = v;
	return p->credit_seen > p->sends ? p->credit_seen - p->sends : 0;
}

/* Server: tells the client how many receives QP q has posted so far. */
static int credit_write(struct siw *s, int q, int64_t deadline)
{
	struct sqp *p = &s->qp[q];
	uint64_t *slot;

	while (p->credit_out >= CREDIT_RING / 2 || p->sq_out + 1 > (uint32_t)s->sq) {
		int n = reap_send(s);

		if (n < 0)
			return -1;
		if (!n && idle(s, deadline, -1, "credit write completions") < 0)
			return -1;
	}
	slot =
	    (uint64_t *)(s->arena + s->off_credit +
			 ((size_t)q * CREDIT_RING + p->credit_slot++ % CREDIT_RING) * CREDIT_SLOT);
	slot[0] = p->recvs_posted;
	slot[1] = ~p->recvs_posted;
	if (post1(s, q, IBV_WR_RDMA_WRITE, mk_wr_id(WRK_CREDIT, q, 0), slot, CREDIT_SLOT,
		  s->off_credit + (size_t)q * CREDIT_STRIDE, 0) < 0)
		return -1;
	p->credit_out++;
	p->credit_sent = p->recvs_posted;
	return 0;
}

static int credit_flush(struct siw *s, int64_t deadline)
{
	for (int q = 0; q < s->nqps; q++)
		if (s->qp[q].recvs_posted != s->qp[q].credit_sent &&
		    credit_write(s, q, deadline) < 0)
			return -1;
	return 0;
}

/*
 * Server: one receive completion of a SEND row: checks it, reposts, returns credits. *tag is
 * the message's last byte.
 */
static int srv_on_recv(struct siw *s, const struct ibv_wc *wc, size_t size, uint8_t *tag,
		       int64_t deadline)
{
	unsigned q = (unsigned)(wc->wr_id >> 40) & 0xffff;
	struct sqp *p;

	if (wc_check(wc, "receive queue") < 0)
		return -1;
	if (q >= (unsigned)s->nqps || (wc->wr_id >> 56) != WRK_RECV)
		return err("receive completion with a bad wr_id 0x%llx",
			   (unsigned long long)wc->wr_id);
	if (wc->opcode != IBV_WC_RECV)
		return err("receive completion with opcode %d, expected IBV_WC_RECV", wc->opcode);
	if (wc->byte_len != size)
		return err("received a SEND of %u bytes, expected %zu", wc->byte_len, size);
	p = &s->qp[q];
	*tag = s->arena[s->off_a + size - 1];
	s->recv_total++;
	if (post_recvs(s, (int)q, 1) < 0)
		return -1;
	if (p->recvs_posted - p->credit_sent >= s->credit_thresh)
		return credit_write(s, (int)q, deadline);
	return 0;
}

/* ---- rdma_cm ------------------------------------------------------------------------------- */

struct cm_ev {
	enum rdma_cm_event_type type;
	int status;
	struct rdma_cm_id *id;
	struct conn_pd pd;
	bool has_pd;
};

/* The next CM event (copied, acked), waiting up to timeout seconds. */
static int cm_next(struct siw *s, struct cm_ev *out, double timeout, const char *what)
{
	int64_t deadline = deadline_in(timeout);
	struct rdma_cm_event *ev;

	for (;;) {
		struct pollfd p = {.fd = s->cm_ch->fd, .events = POLLIN};
		int r = poll(&p, 1, ms_left(deadline, 1000));

		if (r < 0 && errno != EINTR)
			return err_errno("poll (rdma_cm event channel)");
		if (r > 0)
			break;
		if (now_ns() >= deadline)
			return err("rdma_cm: no event within %.1f s (%s)", timeout, what);
	}
	if (rdma_get_cm_event(s->cm_ch, &ev))
		return err_errno("rdma_get_cm_event");
	memset(out, 0, sizeof(*out));
	out->type = ev->event;
	out->status = ev->status;
	out->id = ev->id;
	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST &&
	    ev->param.conn.private_data_len >= sizeof(out->pd) && ev->param.conn.private_data) {
		memcpy(&out->pd, ev->param.conn.private_data, sizeof(out->pd));
		out->has_pd = true;
	}
	rdma_ack_cm_event(ev);
	return 0;
}

static int cm_expect(struct siw *s, enum rdma_cm_event_type want, double timeout)
{
	struct cm_ev ev;

	if (cm_next(s, &ev, timeout, rdma_event_str(want)) < 0)
		return -1;
	if (ev.type != want)
		return err("rdma_cm: got %s (status %d) while waiting for %s",
			   rdma_event_str(ev.type), ev.status, rdma_event_str(want));
	if (ev.status)
		return err("rdma_cm: %s with status %d", rdma_event_str(ev.type), ev.status);
	return 0;
}

static void lo_sockaddr(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(bench_addr);
	sa->sin_port = htons((uint16_t)port);
}

/* ---- verbs resources ----------------------------------------------------------------------- */

static int imin(int a, int b)
{
	return a < b ? a : b;
}

static int res_init(struct siw *s, struct ibv_context *verbs)
{
	struct ibv_device_attr da;
	int e;

	if (!verbs)
		return err("rdma_cm gave no verbs context for 127.0.0.1 (no softiwarp device?)");
	s->verbs = verbs;
	e = ibv_query_device(verbs, &da);
	if (e)
		return err("ibv_query_device: %s", strerror(e));
	s->ord = imin(BENCH_ORD, imin(da.max_qp_init_rd_atom, da.max_qp_rd_atom));
	if (s->ord < 1)
		return err("the device allows no RDMA READ (max_qp_init_rd_atom %d, max_qp_rd_atom "
			   "%d)",
			   da.max_qp_init_rd_atom, da.max_qp_rd_atom);
	/* Verbs report no inline limit before a QP exists: qp_create finds it. */
	s->inline_max = (int)s->o->inline_max;
	s->sq = imin(s->depth + CREDIT_RING / 2 + 4, da.max_qp_wr);
	s->rq = imin(s->depth < 4 ? 4 : s->depth, da.max_qp_wr);
	if (s->sq < s->depth + 1)
		return err("--depth %d exceeds the device's max_qp_wr %d", s->depth, da.max_qp_wr);
	s->credit_thresh = (uint32_t)(s->rq / 4 > 0 ? s->rq / 4 : 1);

	s->pd = ibv_alloc_pd(verbs);
	if (!s->pd)
		return err_errno("ibv_alloc_pd");
	if (s->events) {
		int fl;

		s->comp = ibv_create_comp_channel(verbs);
		if (!s->comp)
			return err_errno("ibv_create_comp_channel");
		fl = fcntl(s->comp->fd, F_GETFL);
		if (fl < 0 || fcntl(s->comp->fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return err_errno("fcntl (completion channel)");
	}
	s->scq = ibv_create_cq(verbs, s->nqps * s->sq + 16, s, s->comp, 0);
	s->rcq = ibv_create_cq(verbs, s->nqps * s->rq + 16, s, s->comp, 0);
	if (!s->scq || !s->rcq)
		return err_errno("ibv_create_cq");
	layout(s);
	s->arena =
	    mmap(NULL, s->arena_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->arena == MAP_FAILED) {
		s->arena = NULL;
		return err_errno("mmap (buffers)");
	}
	s->mr = ibv_reg_mr(s->pd, s->arena, s->arena_len, MR_ACCESS);
	if (!s->mr)
		return err_errno("ibv_reg_mr");
	return 0;
}

static int qp_create(struct siw *s, int q, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr a;

	if (id->verbs != s->verbs)
		return err("rdma_cm put QP %d on another verbs context than the first", q);
	memset(&a, 0, sizeof(a));
	a.send_cq = s->scq;
	a.recv_cq = s->rcq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = (uint32_t)s->sq;
	a.cap.max_recv_wr = (uint32_t)s->rq;
	a.cap.max_send_sge = 1;
	a.cap.max_recv_sge = 1;
	a.cap.max_inline_data = (uint32_t)s->inline_max;
	while (rdma_create_qp(id, s->pd, &a)) {
		/* Over the device's inline limit? Ask for less (the limit is not queryable). */
		if (errno != EINVAL || !s->inline_max)
			return err_errno("rdma_create_qp");
		s->inline_max = s->inline_max > 512 ? 512 : s->inline_max / 2;
		a.cap.max_inline_data = (uint32_t)s->inline_max;
	}
	if ((int)a.cap.max_inline_data < s->inline_max)
		s->inline_max = (int)a.cap.max_inline_data;
	s->qp[q].id = id;
	s->qp[q].qp = id->qp;
	/* Receives first: the peer may send as soon as the connection is up. */
	return post_recvs(s, q, s->rq);
}

static void conn_param(struct siw *s, struct rdma_conn_param *cp, struct conn_pd *pd)
{
	memset(cp, 0, sizeof(*cp));
	cp->initiator_depth = (uint8_t)s->ord;
	cp->responder_resources = (uint8_t)s->ord;
	cp->retry_count = 7;
	cp->rnr_retry_count = 7;
	if (pd) {
		cp->private_data = pd;
		cp->private_data_len = sizeof(*pd);
	}
}

static struct siw *siw_new(const struct bench_opts *o, int nqps, int depth, bool events,
			   size_t max_size)
{
	struct siw *s = calloc(1, sizeof(*s));

	if (!s || !(s->qp = calloc((size_t)nqps, sizeof(*s->qp)))) {
		free(s);
		err("out of memory");
		return NULL;
	}
	s->o = o;
	s->nqps = nqps;
	s->depth = depth;
	s->events = events;
	s->max_size = max_size;
	s->cm_ch = rdma_create_event_channel();
	if (!s->cm_ch) {
		err_errno("rdma_create_event_channel");
		free(s->qp);
		free(s);
		return NULL;
	}
	return s;
}

static void fill_info(struct siw *s, struct siw_info *info)
{
	Dl_info dl;

	memset(info, 0, sizeof(*info));
	snprintf(info->device, sizeof(info->device), "%s",
		 s->verbs && s->verbs->device ? ibv_get_device_name(s->verbs->device) : "?");
	if (dladdr((void *)ibv_get_device_name, &dl) && dl.dli_fname)
		snprintf(info->libverbs, sizeof(info->libverbs), "%s", dl.dli_fname);
	info->inline_max = s->inline_max;
	info->ord = s->ord;
	info->sq_depth = s->sq;
	info->rq_depth = s->rq;
}

/* ---- setup ----------------------------------------------------------------------------------- */

struct siw *siw_client_setup(int ctl, const struct bench_opts *o, size_t max_size,
			     struct siw_info *info)
{
	struct sockaddr_in dst;
	struct ctl_msg m, res;
	struct siw *s;

	ctl_init(&m, CTL_SIW_SETUP);
	m.qps = (uint32_t)o->qps;
	m.depth = (uint32_t)o->depth;
	m.inline_max = o->inline_max;
	m.events = o->events;
	m.max_size = max_size;
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_SIW_LISTEN, tmo_setup(o)) < 0)
		return NULL;
	s = siw_new(o, o->qps, o->depth, o->events, max_size);
	if (!s)
		return NULL;
	s->peer_addr = res.addr;
	s->peer_rkey = res.rkey;
	s->peer_rq = res.depth;
	lo_sockaddr(&dst, (int)res.port);
	for (int q = 0; q < s->nqps; q++) {
		struct conn_pd pd = {.magic = PD_MAGIC, .index = (uint32_t)q};
		struct rdma_conn_param cp;
		struct rdma_cm_id *id;

		if (rdma_create_id(s->cm_ch, &id, s, RDMA_PS_TCP)) {
			err_errno("rdma_create_id");
			goto fail;
		}
		s->qp[q].id = id;
		if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000)) {
			err_errno("rdma_resolve_addr 127.0.0.1");
			goto fail;
		}
		if (cm_expect(s, RDMA_CM_EVENT_ADDR_RESOLVED, tmo(s)) < 0)
			goto fail;
		if (!s->verbs && res_init(s, id->verbs) < 0)
			goto fail;
		if (rdma_resolve_route(id, 2000)) {
			err_errno("rdma_resolve_route");
			goto fail;
		}
		if (cm_expect(s, RDMA_CM_EVENT_ROUTE_RESOLVED, tmo(s)) < 0 ||
		    qp_create(s, q, id) < 0)
			goto fail;
		conn_param(s, &cp, &pd);
		if (rdma_connect(id, &cp)) {
			err_errno("rdma_connect");
			goto fail;
		}
		if (cm_expect(s, RDMA_CM_EVENT_ESTABLISHED, tmo(s)) < 0) {
			s->qp[q].disconnected = true;
			goto fail;
		}
		s->qp[q].established = true;
		s->qp[q].credit_seen = s->peer_rq;
	}
	ctl_init(&m, CTL_SIW_KEYS);
	m.addr = (uintptr_t)s->arena;
	m.rkey = s->mr->rkey;
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_SIW_KEYS, tmo(s)) < 0)
		goto fail;
	fill_info(s, info);
	return s;
fail:
	siw_teardown(s);
	return NULL;
}

struct siw *siw_server_setup(int ctl, const struct ctl_msg *m, const struct bench_opts *o)
{
	struct sockaddr_in sa;
	struct ctl_msg res;
	struct siw *s;
	int established = 0, accepted = 0;
	int64_t deadline;

	if (m->qps < 1 || m->qps > BENCH_MAX_QPS || m->depth < 1 || m->depth > BENCH_MAX_DEPTH ||
	    m->max_size < 1 || m->max_size > BENCH_MAX_SIZE) {
		err("bad SIW_SETUP request");
		return NULL;
	}
	s = siw_new(o, (int)m->qps, (int)m->depth, m->events != 0, m->max_size);
	if (!s)
		return NULL;
	s->server = true;
	if (rdma_create_id(s->cm_ch, &s->listen_id, s, RDMA_PS_TCP)) {
		err_errno("rdma_create_id");
		goto fail;
	}
	lo_sockaddr(&sa, o->port ? o->port + 1 : 0);
	if (rdma_bind_addr(s->listen_id, (struct sockaddr *)&sa)) {
		err("rdma_bind_addr 127.0.0.1:%d: %s", o->port ? o->port + 1 : 0, strerror(errno));
		goto fail;
	}
	if (rdma_listen(s->listen_id, 64)) {
		err_errno("rdma_listen");
		goto fail;
	}
	if (res_init(s, s->listen_id->verbs) < 0)
		goto fail;
	ctl_init(&res, CTL_SIW_LISTEN);
	res.port = ntohs(rdma_get_src_port(s->listen_id));
	res.addr = (uintptr_t)s->arena;
	res.rkey = s->mr->rkey;
	res.depth = (uint32_t)s->rq;
	if (!res.port) {
		err("rdma_get_src_port gave no port for the listener");
		goto fail;
	}
	if (ctl_send(ctl, &res) < 0)
		goto fail;

	deadline = deadline_in(tmo_setup(o));
	while (established < s->nqps) {
		struct rdma_conn_param cp;
		struct cm_ev ev;
		int q;

		if (cm_next(s, &ev, (double)ms_left(deadline, 1 << 30) / 1000.0 + 0.001,
			    "connections") < 0)
			goto fail;
		if (ev.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			if (!ev.has_pd || ev.pd.magic != PD_MAGIC ||
			    ev.pd.index >= (uint32_t)s->nqps || s->qp[ev.pd.index].id) {
				rdma_reject(ev.id, NULL, 0);
				rdma_destroy_id(ev.id);
				err("unexpected connection request (not from this client)");
				goto fail;
			}
			q = (int)ev.pd.index;
			if (qp_create(s, q, ev.id) < 0) {
				s->qp[q].id = ev.id; /* destroyed with the others */
				goto fail;
			}
			conn_param(s, &cp, NULL);
			if (rdma_accept(ev.id, &cp)) {
				err_errno("rdma_accept");
				goto fail;
			}
			accepted++;
			continue;
		}
		for (q = 0; q < s->nqps; q++)
			if (s->qp[q].id == ev.id)
				break;
		if (ev.type == RDMA_CM_EVENT_ESTABLISHED && q < s->nqps && !ev.status) {
			s->qp[q].established = true;
			s->qp[q].credit_sent = s->qp[q].recvs_posted;
			established++;
			continue;
		}
		err("rdma_cm: got %s (status %d) while accepting connections (%d of %d accepted, "
		    "%d established)",
		    rdma_event_str(ev.type), ev.status, accepted, s->nqps, established);
		goto fail;
	}
	if (ctl_recv(ctl, &res, CTL_SIW_KEYS, tmo(s)) < 0)
		goto fail;
	s->peer_addr = res.addr;
	s->peer_rkey = res.rkey;
	ctl_init(&res, CTL_SIW_KEYS);
	res.ok = 1;
	if (ctl_send(ctl, &res) < 0)
		goto fail;
	return s;
fail:
	siw_teardown(s);
	return NULL;
}

/* ---- teardown ----------------------------------------------------------------------------- */

int siw_teardown(struct siw *s)
{
	int64_t deadline;
	int rc = 0, open = 0;

	if (!s)
		return 0;
	for (int q = 0; q < s->nqps; q++) {
		if (!s->qp[q].established || s->qp[q].disconnected)
			continue;
		/* Either side may be first; a second rdma_disconnect is harmless. */
		rdma_disconnect(s->qp[q].id);
		open++;
	}
	deadline = deadline_in(s->o->timeout);
	while (open > 0) {
		struct cm_ev ev;

		if (cm_next(s, &ev, (double)ms_left(deadline, 1 << 30) / 1000.0 + 0.001,
			    "disconnect") < 0) {
			rc = -1;
			break;
		}
		if (ev.type != RDMA_CM_EVENT_DISCONNECTED)
			continue;
		for (int q = 0; q < s->nqps; q++) {
			if (s->qp[q].id == ev.id && s->qp[q].established &&
			    !s->qp[q].disconnected) {
				s->qp[q].disconnected = true;
				open--;
			}
		}
	}
	for (int q = 0; q < s->nqps; q++) {
		if (!s->qp[q].id)
			continue;
		if (s->qp[q].qp)
			rdma_destroy_qp(s->qp[q].id);
		if (rdma_destroy_id(s->qp[q].id))
			rc = err_errno("rdma_destroy_id");
	}
	if (s->listen_id && rdma_destroy_id(s->listen_id))
		rc = err_errno("rdma_destroy_id (listener)");
	if (s->mr && ibv_dereg_mr(s->mr))
		rc = err("ibv_dereg_mr failed");
	if (s->arena)
		munmap(s->arena, s->arena_len);
	if (s->scq && ibv_destroy_cq(s->scq))
		rc = err("ibv_destroy_cq failed");
	if (s->rcq && ibv_destroy_cq(s->rcq))
		rc = err("ibv_destroy_cq failed");
	if (s->comp && ibv_destroy_comp_channel(s->comp))
		rc = err("ibv_destroy_comp_channel failed");
	if (s->pd && ibv_dealloc_pd(s->pd))
		rc = err("ibv_dealloc_pd failed");
	if (s->cm_ch)
		rdma_destroy_event_channel(s->cm_ch);
	free(s->qp);
	free(s);
	return rc;
}

/* ---- client rows ----------------------------------------------------------------------------- */

static void row_msg(struct siw *s, struct ctl_msg *m, enum bench_op op, enum bench_mode mode,
		    size_t size)
{
	ctl_init(m, CTL_ROW);
	m->transport = TR_SIW;
	m->op = op;
	m->mode = mode;
	m->size = size;
	m->seed_c = seed_next();
	m->seed_s = seed_next();
	m->time_ns = (int64_t)(s->o->time * 1e9);
}

static int verify(const uint8_t *buf, size_t len, uint64_t seed, const char *what)
{
	ssize_t bad = check_pattern(buf, len, seed);

	if (bad >= 0)
		return err("%s: data mismatch at byte %zd of %zu", what, bad, len);
	return 0;
}

int siw_client_bw(struct siw *s, int ctl, enum bench_op op, size_t size, struct bw_result *r)
{
	enum ibv_wr_opcode opc = op == OP_WRITE  ? IBV_WR_RDMA_WRITE
				 : op == OP_READ ? IBV_WR_RDMA_READ
						 : IBV_WR_SEND;
	int batch = s->depth / 4 > 0 ? s->depth / 4 : 1;
	uint8_t *local = s->arena + (op == OP_READ ? s->off_b : s->off_a);
	unsigned flags = op != OP_READ && size <= (size_t)s->inline_max ? IBV_SEND_INLINE : 0;
	struct ibv_send_wr *wrs = calloc((size_t)batch, sizeof(*wrs));
	struct ibv_sge sge = {
	    .addr = (uintptr_t)local, .length = (uint32_t)size, .lkey = s->mr->lkey};
	int64_t c0, c1, t0, t_stop, t_end, deadline;
	uint64_t total = 0;
	struct ctl_msg m, res;
	int rr = 0, rc = -1;

	memset(r, 0, sizeof(*r));
	if (!wrs)
		return err("out of memory");
	row_msg(s, &m, op, MODE_BW, size);
	if (op == OP_READ)
		memset(local, 0, size);
	else
		fill_pattern(local, size, m.seed_c);
	for (int q = 0; q < s->nqps; q++)
		s->qp[q].posted = s->qp[q].done = 0;
	for (int j = 0; j < batch; j++) {
		wrs[j].sg_list = &sge;
		wrs[j].num_sge = 1;
		wrs[j].opcode = opc;
		wrs[j].wr.rdma.remote_addr = s->peer_addr + s->off_a;
		wrs[j].wr.rdma.rkey = s->peer_rkey;
	}
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_READY, tmo(s)) < 0)
		goto out;

	c0 = cpu_ns();
	t0 = now_ns();
	t_stop = t0 + m.time_ns;
	deadline = t_stop + (int64_t)(tmo(s) * 1e9);
	for (;;) {
		bool stop = total >= BENCH_BW_CAP || now_ns() >= t_stop;
		bool progress = false;
		int n;

		for (int i = 0; !stop && i < s->nqps; i++) {
			int q = (rr + i) % s->nqps;
			struct sqp *p = &s->qp[q];
			uint64_t room = (uint64_t)s->depth - (p->posted - p->done);
			struct ibv_send_wr *bad = NULL;
			int k, e;

			if (op == OP_SEND) {
				uint64_t c = credits(s, q);

				room = room < c ? room : c;
			}
			k = room < (uint64_t)batch ? (int)room : batch;
			if (k <= 0)
				continue;
			for (int j = 0; j < k; j++) {
				wrs[j].wr_id = mk_wr_id(WRK_BATCH, q, p->posted + (uint64_t)j);
				wrs[j].send_flags = flags | (j == k - 1 ? IBV_SEND_SIGNALED : 0);
				wrs[j].next = j == k - 1 ? NULL : &wrs[j + 1];
			}
			e = ibv_post_send(p->qp, wrs, &bad);
			if (e) {
				err("ibv_post_send (%d x %s of %zu bytes, QP %d): %s", k,
				    wr_opname(opc), size, q, strerror(e));
				goto out;
			}
			p->posted += (uint64_t)k;
			p->sq_out += (uint32_t)k;
			s->sq_out += (uint64_t)k;
			total += (uint64_t)k;
			if (op == OP_SEND) {
				p->sends += (uint64_t)k;
				s->send_total += (uint64_t)k;
			}
			progress = true;
		}
		rr = (rr + 1) % s->nqps;
		n = reap_send(s);
		if (n < 0)
			goto out;
		if (stop && !s->sq_out)
			break;
		if (n || progress)
			continue;
		if (s->events && s->sq_out) {
			if (idle(s, deadline, -1, "bandwidth row completions") < 0)
				goto out;
		} else {
			/* Waiting for credits only: they come by RDMA WRITE, with no completion. */
			if (now_ns() > deadline) {
				err("timed out waiting for %s (credits %llu)",
				    op == OP_SEND ? "SEND credits" : "completions",
				    (unsigned long long)credits(s, 0));
				goto out;
			}
			spin(s);
		}
	}
	if (op != OP_READ) {
		for (int q = 0; q < s->nqps; q++)
			if (s->qp[q].posted &&
			    post1(s, q, IBV_WR_RDMA_READ, mk_wr_id(WRK_FENCE, q, 0),
				  s->arena + s->off_fence, FENCE_LEN, s->off_a, 0) < 0)
				goto out;
		if (sq_drain(s, deadline) < 0)
			goto out;
	}
	t_end = now_ns();
	c1 = cpu_ns();
	if (op == OP_READ && verify(local, size, m.seed_s, "RDMA READ sink") < 0)
		goto out;
	ctl_init(&m, CTL_END);
	m.count = s->send_total;
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_RESULT, tmo(s)) < 0)
		goto out;
	if (!total || t_end <= t0) {
		err("nothing measured");
		goto out;
	}
	r->msgs = total;
	r->secs = (double)(t_end - t0) / 1e9;
	r->gbps = (double)total * (double)size / (double)(t_end - t0);
	r->cpu_ns_b = (double)(c1 - c0 + res.cpu_ns) / ((double)total * (double)size);
	r->done = true;
	rc = 0;
out:
	free(wrs);
	return rc;
}

/* Client: waits for the pong of a SEND ping-pong; checks its length and tag. */
static int wait_pong(struct siw *s, size_t size, uint8_t tag, int64_t deadline)
{
	struct ibv_wc wc;

	for (;;) {
		int n = ibv_poll_cq(s->rcq, 1, &wc);

		if (n < 0)
			return err("ibv_poll_cq (receive CQ) failed");
		if (n)
			break;
		if (reap_send(s) < 0 || idle(s, deadline, -1, "SEND pong") < 0)
			return -1;
	}
	if (wc_check(&wc, "receive queue") < 0)
		return -1;
	if (wc.byte_len != size)
		return err("pong of %u bytes, expected %zu", wc.byte_len, size);
	if (s->arena[s->off_b + size - 1] != tag)
		return err("pong with tag %u, expected %u", s->arena[s->off_b + size - 1], tag);
	return post_recvs(s, 0, 1);
}

static int wait_credit(struct siw *s, int q, int64_t deadline)
{
	while (!credits(s, q)) {
		if (reap_send(s) < 0)
			return -1;
		if (now_ns() > deadline)
			return err("timed out waiting for SEND credits");
		spin(s);
	}
	return 0;
}

/* Waits for the pong WRITE: its last byte turns to tag. */
static int wait_byte(struct siw *s, volatile uint8_t *b, uint8_t tag, uint8_t alt, int64_t deadline)
{
	unsigned n = 0;

	for (;;) {
		uint8_t v = __atomic_load_n(b, __ATOMIC_ACQUIRE);

		if (v == tag || v == alt)
			return 0;
		/*
		 * Poll the send CQ on every turn, as fi-rma-bench's loop drives libfabric: with
		 * busy polling that is also what reads the socket (SIW_POLL_PROGRESS).
		 */
		if (reap_send(s) < 0)
			return -1;
		if (++n % 64 == 0) {
			if (now_ns() > deadline)
				return err("timed out waiting for the peer's RDMA WRITE (last byte "
					   "%u, expected %u)",
					   v, tag);
		}
		spin(s);
	}
}

static uint8_t lat_tag(uint64_t i)
{
	return (uint8_t)(i % 254 + 1); /* 1..254: never 0 (cleared buffer) or the final tag */
}

int siw_client_lat(struct siw *s, int ctl, enum bench_op op, size_t size, struct lat_result *r)
{
	uint8_t *a = s->arena + s->off_a, *b = s->arena + s->off_b;
	unsigned flags = op != OP_READ && size <= (size_t)s->inline_max ? IBV_SEND_INLINE : 0;
	uint64_t i, cap = BENCH_LAT_CAP + BENCH_LAT_WARMUP;
	size_t nsamp = 0, alloc = 4096;
	int64_t *samp = malloc(alloc * sizeof(*samp));
	int64_t t_stop = INT64_MAX, deadline;
	struct ctl_msg m, res;
	uint8_t tag = 0;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (!samp)
		return err("out of memory");
	row_msg(s, &m, op, MODE_LAT, size);
	fill_pattern(a, size, m.seed_c);
	memset(b, 0, size);
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_READY, tmo(s)) < 0)
		goto out;
	for (i = 0; i < cap; i++) {
		int64_t t0, t1;

		deadline = now_ns() + (int64_t)(tmo(s) * 1e9);
		if (i == BENCH_LAT_WARMUP)
			t_stop = now_ns() + m.time_ns;
		tag = lat_tag(i);
		if (sq_room(s, 0, deadline) < 0)
			goto out;
		if (op == OP_SEND && wait_credit(s, 0, deadline) < 0)
			goto out;
		if (op != OP_READ)
			a[size - 1] = tag;
		t0 = now_ns();
		if (op == OP_WRITE) {
			if (post1(s, 0, IBV_WR_RDMA_WRITE, mk_wr_id(WRK_ONE, 0, i), a, size,
				  s->off_a, flags) < 0 ||
			    wait_byte(s, b + size - 1, tag, tag, deadline) < 0)
				goto out;
		} else if (op == OP_SEND) {
			if (post1(s, 0, IBV_WR_SEND, mk_wr_id(WRK_ONE, 0, i), a, size, 0, flags) <
			    0)
				goto out;
			s->qp[0].sends++;
			s->send_total++;
			if (wait_pong(s, size, tag, deadline) < 0)
				goto out;
		} else {
			uint64_t want = s->one_done + 1;

			if (post1(s, 0, IBV_WR_RDMA_READ, mk_wr_id(WRK_ONE, 0, i), b, size,
				  s->off_a, 0) < 0)
				goto out;
			while (s->one_done < want) {
				int n = reap_send(s);

				if (n < 0 || (!n && idle(s, deadline, -1, "RDMA READ") < 0))
					goto out;
			}
		}
		t1 = now_ns();
		if (i < BENCH_LAT_WARMUP)
			continue;
		if (nsamp == alloc) {
			int64_t *n2 = realloc(samp, 2 * alloc * sizeof(*samp));

			if (!n2) {
				err("out of memory");
				goto out;
			}
			samp = n2;
			alloc *= 2;
		}
		samp[nsamp++] = t1 - t0;
		if (t1 >= t_stop)
			break;
	}
	deadline = now_ns() + (int64_t)(tmo(s) * 1e9);
	if (op != OP_READ) {
		/* The message that ends the server's loop. */
		if (sq_room(s, 0, deadline) < 0 ||
		    (op == OP_SEND && wait_credit(s, 0, deadline) < 0))
			goto out;
		a[size - 1] = BENCH_FINAL_TAG;
		if (post1(s, 0, op == OP_WRITE ? IBV_WR_RDMA_WRITE : IBV_WR_SEND,
			  mk_wr_id(WRK_ONE, 0, i + 1), a, size, s->off_a, flags) < 0)
			goto out;
		if (op == OP_SEND) {
			s->qp[0].sends++;
			s->send_total++;
		}
	}
	if (sq_drain(s, deadline) < 0)
		goto out;
	if (op == OP_READ) {
		if (verify(b, size, m.seed_s, "RDMA READ sink") < 0)
			goto out;
	} else if (verify(b, size - 1, m.seed_s, op == OP_WRITE ? "pong WRITE" : "pong SEND") < 0) {
		goto out;
	}
	ctl_init(&m, CTL_END);
	m.count = s->send_total;
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_RESULT, tmo(s)) < 0)
		goto out;
	if (op != OP_READ && res.count != (i < cap ? i + 1 : cap)) {
		err("the server answered %llu pings, the client sent %llu",
		    (unsigned long long)res.count, (unsigned long long)(i < cap ? i + 1 : cap));
		goto out;
	}
	lat_stats(samp, nsamp, op == OP_READ ? 1.0 : 0.5, r);
	rc = 0;
out:
	free(samp);
	return rc;
}

/* ---- server rows ---------------------------------------------------------------------------- */

static int srv_send_bw(struct siw *s, int ctl, const struct ctl_msg *m, int64_t deadline)
{
	uint64_t target = 0;
	bool end_seen = false;
	unsigned empty = 0;
	struct ctl_msg end;

	for (;;) {
		struct ibv_wc wc[32];
		int n = ibv_poll_cq(s->rcq, 32, wc), ns;
		uint8_t tag;

		if (n < 0)
			return err("ibv_poll_cq (receive CQ) failed");
		for (int i = 0; i < n; i++)
			if (srv_on_recv(s, &wc[i], m->size, &tag, deadline) < 0)
				return -1;
		ns = reap_send(s);
		if (ns < 0)
			return -1;
		if (end_seen && s->recv_total >= target)
			break;
		if (n || ns) {
			empty = 0;
			continue;
		}
		if (!end_seen && (s->events || ++empty % 256 == 0)) {
			struct pollfd p = {.fd = ctl, .events = POLLIN};

			if (poll(&p, 1, 0) > 0) {
				if (ctl_recv(ctl, &end, CTL_END, tmo(s)) < 0)
					return -1;
				end_seen = true;
				target = end.count;
				continue;
			}
		}
		if (idle(s, deadline, end_seen ? -1 : ctl, "SENDs of the bandwidth row") < 0)
			return -1;
	}
	if (s->recv_total != target)
		return err("received %llu SENDs in all, the client posted %llu",
			   (unsigned long long)s->recv_total, (unsigned long long)target);
	if (credit_flush(s, deadline) < 0)
		return -1;
	return verify(s->arena + s->off_a, m->size, m->seed_c, "SEND receive buffer");
}

static int srv_write_lat(struct siw *s, const struct ctl_msg *m, unsigned flags, uint64_t *count)
{
	uint8_t *a = s->arena + s->off_a, *b = s->arena + s->off_b;
	size_t size = m->size;

	for (uint64_t i = 0;; i++) {
		/* Each ping may take the whole row time plus the timeout (the first one waits
		 * for the client to start). */
		int64_t deadline = now_ns() + m->time_ns + (int64_t)(tmo(s) * 1e9);
		uint8_t tag = lat_tag(i);

		if (wait_byte(s, a + size - 1, tag, BENCH_FINAL_TAG, deadline) < 0)
			return -1;
		if (a[size - 1] == BENCH_FINAL_TAG)
			break;
		b[size - 1] = tag;
		if (sq_room(s, 0, deadline) < 0 ||
		    post1(s, 0, IBV_WR_RDMA_WRITE, mk_wr_id(WRK_ONE, 0, i), b, size, s->off_b,
			  flags) < 0)
			return -1;
		(*count)++;
	}
	return 0;
}

static int srv_send_lat(struct siw *s, const struct ctl_msg *m, unsigned flags, uint64_t *count)
{
	uint8_t *b = s->arena + s->off_b;
	size_t size = m->size;

	for (uint64_t i = 0;; i++) {
		int64_t deadline = now_ns() + m->time_ns + (int64_t)(tmo(s) * 1e9);
		struct ibv_wc wc;
		uint8_t tag;
		int n;

		while (!(n = ibv_poll_cq(s->rcq, 1, &wc)))
			if (reap_send(s) < 0 || idle(s, deadline, -1, "SEND ping") < 0)
				return -1;
		if (n < 0)
			return err("ibv_poll_cq (receive CQ) failed");
		if (srv_on_recv(s, &wc, size, &tag, deadline) < 0)
			return -1;
		if (tag == BENCH_FINAL_TAG)
			break;
		if (tag != lat_tag(i))
			return err("SEND ping %llu has tag %u, expected %u", (unsigned long long)i,
				   tag, lat_tag(i));
		b[size - 1] = tag;
		if (sq_room(s, 0, deadline) < 0 ||
		    post1(s, 0, IBV_WR_SEND, mk_wr_id(WRK_ONE, 0, i), b, size, 0, flags) < 0)
			return -1;
		(*count)++;
	}
	return 0;
}

int siw_server_row(struct siw *s, int ctl, const struct ctl_msg *m)
{
	uint8_t *a = s->arena + s->off_a, *b = s->arena + s->off_b;
	size_t size = m->size;
	unsigned flags = m->op != OP_READ && size <= (size_t)s->inline_max ? IBV_SEND_INLINE : 0;
	int64_t c0 = cpu_ns(), deadline;
	struct ctl_msg res, end;
	uint64_t count = 0;
	const char *what = "RDMA WRITE target";

	if (!s)
		return err("ROW for softiwarp before SIW_SETUP");
	if (size < 1 || size > s->max_size || m->op >= OP_COUNT)
		return err("bad ROW request (size %llu)", (unsigned long long)size);
	/* Prepare what the client will read or check, and clear what it will write. */
	if (m->op == OP_READ)
		fill_pattern(a, size, m->seed_s);
	else
		memset(a, 0, size);
	if (m->mode == MODE_LAT)
		fill_pattern(b, size, m->seed_s);
	ctl_init(&res, CTL_READY);
	if (ctl_send(ctl, &res) < 0)
		return -1;
	deadline = now_ns() + m->time_ns + (int64_t)(tmo(s) * 1e9);

	if (m->mode == MODE_BW && m->op == OP_SEND) {
		if (srv_send_bw(s, ctl, m, deadline) < 0)
			return -1;
	} else {
		if (m->mode == MODE_LAT && m->op == OP_WRITE &&
		    srv_write_lat(s, m, flags, &count) < 0)
			return -1;
		if (m->mode == MODE_LAT && m->op == OP_SEND &&
		    srv_send_lat(s, m, flags, &count) < 0)
			return -1;
		if (ctl_recv(ctl, &end, CTL_END, m->time_ns / 1e9 + tmo(s)) < 0)
			return -1;
		deadline = now_ns() + (int64_t)(tmo(s) * 1e9);
		if (m->mode == MODE_LAT && m->op == OP_SEND) {
			if (s->recv_total != end.count)
				return err("received %llu SENDs in all, the client posted %llu",
					   (unsigned long long)s->recv_total,
					   (unsigned long long)end.count);
			if (credit_flush(s, deadline) < 0)
				return -1;
			what = "SEND receive buffer";
		}
		/* WRITE and SEND rows: the client's data must be in place (bandwidth rows:
		 * behind the fence READ; latency rows: all but the final tag). */
		if (m->op != OP_READ) {
			size_t len = m->mode == MODE_LAT ? size - 1 : size;

			if (verify(a, len, m->seed_c, what) < 0)
				return -1;
			if (m->mode == MODE_LAT && a[size - 1] != BENCH_FINAL_TAG)
				return err("%s: last byte %u, expected the final tag", what,
					   a[size - 1]);
		}
	}
	if (sq_drain(s, deadline) < 0)
		return -1;
	ctl_init(&res, CTL_RESULT);
	res.ok = 1;
	res.count = count;
	res.cpu_ns = cpu_ns() - c0;
	return ctl_send(ctl, &res);
}
