// SPDX-License-Identifier: MIT
/*
 * hostile_server: a softiwarp responder for the hostile-peer tests (tests/hostile/README.md).
 *
 * It listens on 127.0.0.1:PORT and, for every TCP connection, plays the MPA responder with the
 * core's functions (siw_mpa_reader, siw_mpa_parse, siw_mpa_respond), then hands the socket to
 * an engine QP. Each connection gets its own protection domains and its own guarded memory:
 *
 *	one mmap'ed area per connection:
 *	| guard | rw | guard | ro | guard | lw | guard | foreign_pd | guard |
 *	rw          REMOTE_WRITE | REMOTE_READ (| LOCAL_WRITE, which REMOTE_WRITE needs)
 *	ro          REMOTE_READ only
 *	lw          LOCAL_WRITE only: the posted receives live here
 *	foreign_pd  REMOTE_WRITE | REMOTE_READ, but registered in a second PD the QP is not in
 *
 * Guards hold a known pattern; every guard of every connection (alive or gone) is checked
 * after every close, and the whole area of a finished connection is fingerprinted when it ends
 * and re-checked later: nothing may touch the memory of a QP after its death.
 *
 * The MPA phase of all connections runs in one poll() loop with a deadline per connection, so
 * a peer that stalls never holds up another. A P2P connection whose RTR does not arrive within
 * the same timeout is disconnected.
 *
 * Output: one JSON object per line on stdout ("listening", "start", "end", "mpa_fail",
 * "stats", "exit"). Commands on stdin: "stats" prints totals, "quit" exits; SIGTERM and SIGINT
 * exit too. The exit status is 0 only if no guard was ever found touched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "error.h"
#include "mpa.h"

#define GUARD_LEN  4096
#define REGION_LEN 4096

enum { R_RW, R_RO, R_LW, R_FPD, NREG };

static const char *const reg_name[NREG] = {"rw", "ro", "lw", "foreign_pd"};
static const int reg_access[NREG] = {
    ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_READ,
    ENG_ACCESS_REMOTE_READ,
    ENG_ACCESS_LOCAL_WRITE,
    ENG_ACCESS_LOCAL_WRITE | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_READ,
};

#define AREA_LEN    (GUARD_LEN + NREG * (REGION_LEN + GUARD_LEN))
#define MAX_CQE_LOG 64
#define MAX_RECVS   16
#define MAX_BAD_LOG 32

enum phase { P_MPA, P_LIVE, P_DONE };

struct cqe_rec {
	uint64_t wr_id;
	uint8_t opcode, status;
	uint32_t byte_len;
};

struct conn {
	unsigned id;
	enum phase phase;
	int fd; /* MPA phase only; the engine owns it afterwards */
	unsigned peer_port;
	long long t_accept, deadline;
	struct siw_mpa_reader rd;
	struct siw_mpa_result res;

	struct eng_pd *pd, *pd2;
	struct eng_cq *scq, *rcq;
	struct eng_qp *qp;
	struct eng_mr *mr[NREG];
	uint8_t *area;
	int recvs_posted;

	/* written by the progress thread */
	int established, closed, close_err;

	const char *end_reason;
	bool disconnect_sent;
	struct cqe_rec cqes[MAX_CQE_LOG];
	unsigned ncqe, ncqe_total, nflushed;
	uint8_t *snapshot; /* the whole area as it was when the connection ended */
	bool guard_bad, post_close_bad;
};

static struct {
	struct eng_ctx *ctx;
	struct siw_mpa_cfg cfg;
	int mpa_timeout_ms;
	int recvs, recv_len;
	unsigned max_conns;
	bool unmap_after_close; /* give a finished connection's memory back, as applications do */
	int listen_fd;
	int wake_rd, wake_wr;
	volatile sig_atomic_t quit;
	struct conn **conns;
	unsigned nconns;
	/* totals */
	unsigned accepted, mpa_failed, started, ended, term_errors, closed_clean;
	unsigned guard_violations, post_close_violations;
	struct violation {
		unsigned conn;
		const char *kind;  /* "guard" or "post_close" */
		const char *where; /* region or guard name */
		size_t first_off;  /* in that region / guard */
		size_t nbytes;
	} bad[MAX_BAD_LOG];
	unsigned nbad;
} S = {.mpa_timeout_ms = 2000, .recvs = 4, .recv_len = 1024, .max_conns = 4096};

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void wake(void)
{
	char b = 1;
	ssize_t n = write(S.wake_wr, &b, 1);

	(void)n; /* a full pipe already means "wake up" */
}

/* ---- memory patterns ---------------------------------------------------------------------- */

static uint8_t guard_byte(size_t off)
{
	return (uint8_t)(0xA5 ^ off ^ (off >> 8));
}

/* Initial content of each region; documented in README.md so peers can check READ data. */
static uint8_t region_byte(int r, size_t i)
{
	switch (r) {
	case R_RW:
		return (uint8_t)(i * 7 + 3);
	case R_RO:
		return (uint8_t)(i * 13 + 0x5A);
	case R_FPD:
		return (uint8_t)(i * 11 + 1);
	default:
		return 0;
	}
}

static size_t region_off(int r)
{
	return GUARD_LEN + (size_t)r * (REGION_LEN + GUARD_LEN);
}

static size_t guard_off(int g)
{
	return (size_t)g * (REGION_LEN + GUARD_LEN);
}

static void area_init(uint8_t *a)
{
	for (int g = 0; g <= NREG; g++)
		for (size_t i = 0; i < GUARD_LEN; i++)
			a[guard_off(g) + i] = guard_byte(guard_off(g) + i);
	for (int r = 0; r < NREG; r++)
		for (size_t i = 0; i < REGION_LEN; i++)
			a[region_off(r) + i] = region_byte(r, i);
}

static bool guards_ok(const uint8_t *a)
{
	for (int g = 0; g <= NREG; g++)
		for (size_t i = 0; i < GUARD_LEN; i++)
			if (a[guard_off(g) + i] != guard_byte(guard_off(g) + i))
				return false;
	return true;
}

static bool region_pristine(const uint8_t *a, int r)
{
	for (size_t i = 0; i < REGION_LEN; i++)
		if (a[region_off(r) + i] != region_byte(r, i))
			return false;
	return true;
}

static const char *const guard_name[NREG + 1] = {"guard0", "guard1", "guard2", "guard3", "guard4"};

/* Names the guard or region holding area offset off; *rel is the offset inside it. */
static const char *area_part(size_t off, size_t *rel)
{
	size_t period = REGION_LEN + GUARD_LEN, k = off / period, in = off % period;

	if (in < GUARD_LEN) {
		*rel = in;
		return guard_name[k];
	}
	*rel = in - GUARD_LEN;
	return reg_name[k];
}

/* Records where a connection's area differs from `want` (a guard check or the snapshot). */
static void note_bad(struct conn *c, const char *kind, const uint8_t *want)
{
	struct violation *v;
	size_t first = AREA_LEN, n = 0;

	for (size_t i = 0; i < AREA_LEN; i++) {
		bool guard = (i % (REGION_LEN + GUARD_LEN)) < GUARD_LEN;
		uint8_t w = want ? want[i] : guard_byte(i);

		if ((want || guard) && c->area[i] != w) {
			if (first == AREA_LEN)
				first = i;
			n++;
		}
	}
	if (S.nbad >= MAX_BAD_LOG || first == AREA_LEN)
		return;
	v = &S.bad[S.nbad++];
	v->conn = c->id;
	v->kind = kind;
	v->where = area_part(first, &v->first_off);
	v->nbytes = n;
}

/*
 * Every guard of every connection, and the fingerprint of every finished one. Violations are
 * counted once per connection. Returns true if everything is intact.
 */
static bool scan_all(void)
{
	bool ok = true;

	for (unsigned i = 0; i < S.nconns; i++) {
		struct conn *c = S.conns[i];

		if (!c->area)
			continue;
		if (!guards_ok(c->area)) {
			ok = false;
			if (!c->guard_bad) {
				c->guard_bad = true;
				S.guard_violations++;
				note_bad(c, "guard", NULL);
			}
		}
		if (c->snapshot && memcmp(c->area, c->snapshot, AREA_LEN)) {
			ok = false;
			if (!c->post_close_bad) {
				c->post_close_bad = true;
				S.post_close_violations++;
				note_bad(c, "post_close", c->snapshot);
			}
		}
	}
	return ok;
}

/* ---- JSON output -------------------------------------------------------------------------- */

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_err(int err)
{
	printf("\"err\":%d,\"err_name\":", err);
	json_str(err ? siw_strerror(err) : "none");
	if (siw_err_is_term(err))
		printf(",\"term\":{\"layer\":%u,\"etype\":%u,\"ecode\":%u}",
		       siw_err_term_layer(err), siw_err_term_etype(err), siw_err_term_ecode(err));
	else
		printf(",\"term\":null");
}

static void json_totals(const char *event, bool all_ok)
{
	unsigned live = 0, mpa = 0;

	for (unsigned i = 0; i < S.nconns; i++) {
		live += S.conns[i]->phase == P_LIVE;
		mpa += S.conns[i]->phase == P_MPA;
	}
	printf("{\"event\":\"%s\",\"accepted\":%u,\"mpa_failed\":%u,\"started\":%u,\"ended\":%u,"
	       "\"live\":%u,\"in_mpa\":%u,\"term_errors\":%u,\"closed_clean\":%u,"
	       "\"guard_violations\":%u,\"post_close_violations\":%u,\"all_guards_ok\":%s,"
	       "\"violations\":[",
	       event, S.accepted, S.mpa_failed, S.started, S.ended, live, mpa, S.term_errors,
	       S.closed_clean, S.guard_violations, S.post_close_violations,
	       all_ok ? "true" : "false");
	for (unsigned i = 0; i < S.nbad; i++)
		printf("%s{\"conn\":%u,\"peer_port\":%u,\"kind\":\"%s\",\"where\":\"%s\","
		       "\"first_off\":%zu,\"bytes\":%zu}",
		       i ? "," : "", S.bad[i].conn, S.conns[S.bad[i].conn]->peer_port,
		       S.bad[i].kind, S.bad[i].where, S.bad[i].first_off, S.bad[i].nbytes);
	printf("]}\n");
	fflush(stdout);
}

static const char *rtr_name(enum siw_rtr r)
{
	switch (r) {
	case SIW_RTR_SEND:
		return "send";
	case SIW_RTR_WRITE:
		return "write";
	case SIW_RTR_READ:
		return "read";
	default:
		return "none";
	}
}

static void json_start(const struct conn *c)
{
	printf("{\"event\":\"start\",\"conn\":%u,\"peer_port\":%u,\"qpn\":%u,\"pd\":%u,\"pd2\":%u,"
	       "\"mpa\":{\"rev\":%u,\"crc\":%s,\"p2p\":%s,\"rtr\":\"%s\",\"ird\":%u,\"ord\":%u},"
	       "\"recvs\":%d,\"recv_len\":%d,\"regions\":{",
	       c->id, c->peer_port, eng_qp_num(c->qp), eng_pd_id(c->pd), eng_pd_id(c->pd2),
	       c->res.rev, c->res.crc ? "true" : "false", c->res.p2p ? "true" : "false",
	       rtr_name(c->res.rtr), c->res.ird, c->res.ord, c->recvs_posted, S.recv_len);
	for (int r = 0; r < NREG; r++)
		printf("%s\"%s\":{\"stag\":%u,\"to\":%" PRIu64 ",\"len\":%d,\"access\":%d,"
		       "\"pd\":%u}",
		       r ? "," : "", reg_name[r], eng_mr_key(c->mr[r]),
		       (uint64_t)(uintptr_t)(c->area + region_off(r)), REGION_LEN, reg_access[r],
		       eng_pd_id(r == R_FPD ? c->pd2 : c->pd));
	printf("}}\n");
	fflush(stdout);
}

static void json_mpa_fail(const struct conn *c, const char *reason, int err, bool replied)
{
	printf("{\"event\":\"mpa_fail\",\"conn\":%u,\"peer_port\":%u,\"reason\":\"%s\","
	       "\"reject_sent\":%s,\"bytes\":%zu,\"elapsed_ms\":%lld,",
	       c->id, c->peer_port, reason, replied ? "true" : "false", c->rd.have,
	       now_ms() - c->t_accept);
	json_err(err);
	printf("}\n");
	fflush(stdout);
}

/* ---- connections -------------------------------------------------------------------------- */

static void on_established(void *u, struct eng_qp *qp)
{
	(void)qp;
	__atomic_store_n(&((struct conn *)u)->established, 1, __ATOMIC_RELEASE);
	wake();
}

static void on_closed(void *u, struct eng_qp *qp, int err)
{
	struct conn *c = u;

	(void)qp;
	/* Atomic: at shutdown conn_finish reads it while the QP may still be failing. */
	__atomic_store_n(&c->close_err, err, __ATOMIC_RELAXED);
	__atomic_store_n(&c->closed, 1, __ATOMIC_RELEASE);
	wake();
}

static const struct eng_cm_ops cm_ops = {.established = on_established, .closed = on_closed};

static void drain_cq(struct conn *c, struct eng_cq *cq)
{
	struct eng_cqe e[16];
	int n;

	if (!cq)
		return;
	while ((n = eng_cq_poll(cq, 16, e)) > 0) {
		for (int i = 0; i < n; i++) {
			if (c->ncqe < MAX_CQE_LOG) {
				struct cqe_rec *r = &c->cqes[c->ncqe++];

				r->wr_id = e[i].wr_id;
				r->opcode = e[i].opcode;
				r->status = e[i].status;
				r->byte_len = e[i].byte_len;
			}
			c->ncqe_total++;
			c->nflushed += e[i].status == ENG_WC_WR_FLUSH_ERR;
		}
	}
}

/* Releases the engine objects; the memory area stays for later guard checks. */
static void conn_release(struct conn *c)
{
	if (c->qp)
		eng_qp_destroy(c->qp);
	c->qp = NULL;
	for (int r = 0; r < NREG; r++) {
		if (c->mr[r])
			eng_mr_dereg(c->mr[r]);
		c->mr[r] = NULL;
	}
	if (c->scq)
		eng_cq_destroy(c->scq);
	if (c->rcq)
		eng_cq_destroy(c->rcq);
	c->scq = c->rcq = NULL;
	if (c->pd)
		eng_pd_free(c->pd);
	if (c->pd2)
		eng_pd_free(c->pd2);
	c->pd = c->pd2 = NULL;
}

static int conn_setup(struct conn *c)
{
	struct eng_qp_init init = {0};
	uint8_t *lw;

	c->area = mmap(NULL, AREA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->area == MAP_FAILED) {
		c->area = NULL;
		return -1;
	}
	area_init(c->area);
	c->pd = eng_pd_alloc(S.ctx);
	c->pd2 = eng_pd_alloc(S.ctx);
	if (!c->pd || !c->pd2)
		return -1;
	for (int r = 0; r < NREG; r++) {
		uint8_t *p = c->area + region_off(r);

		c->mr[r] = eng_mr_reg(r == R_FPD ? c->pd2 : c->pd, p, REGION_LEN,
				      (uint64_t)(uintptr_t)p, reg_access[r]);
		if (!c->mr[r])
			return -1;
	}
	c->scq = eng_cq_create(S.ctx, 64, NULL, c);
	c->rcq = eng_cq_create(S.ctx, 64, NULL, c);
	if (!c->scq || !c->rcq)
		return -1;
	init.send_cq = c->scq;
	init.recv_cq = c->rcq;
	init.cap.max_send_wr = 16;
	init.cap.max_recv_wr = MAX_RECVS;
	init.cap.max_send_sge = 1;
	init.cap.max_recv_sge = 1;
	init.user = c;
	c->qp = eng_qp_create(c->pd, &init);
	if (!c->qp)
		return -1;
	/* Receives go into the LOCAL_WRITE-only region, recv_len bytes each. */
	lw = c->area + region_off(R_LW);
	for (int i = 0; i < S.recvs; i++) {
		struct eng_sge sge = {.addr = (uint64_t)(uintptr_t)(lw + (size_t)i * S.recv_len),
				      .length = (uint32_t)S.recv_len,
				      .lkey = eng_mr_key(c->mr[R_LW])};
		struct eng_recv_wr wr = {.wr_id = 100 + (uint64_t)i, .sg_list = &sge, .num_sge = 1};
		int bad;

		if (eng_post_recv(c->qp, &wr, 1, &bad))
			return -1;
		c->recvs_posted++;
	}
	return 0;
}

static void mpa_close(struct conn *c)
{
	if (c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		close(c->fd);
	}
	c->fd = -1;
	c->phase = P_DONE;
}

static void mpa_fail(struct conn *c, const char *reason, int err, bool replied)
{
	json_mpa_fail(c, reason, err, replied);
	S.mpa_failed++;
	conn_release(c);
	mpa_close(c);
}

static int send_all(int fd, const uint8_t *b, size_t n)
{
	/* Frames are < 600 bytes: a fresh socket always takes them at once. */
	ssize_t k = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	return k == (ssize_t)n ? 0 : -1;
}

/* The whole request is in c->rd: decide, reply, connect. */
static void mpa_complete(struct conn *c)
{
	struct siw_mpa_frame f;
	uint8_t out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	int r, n;

	r = siw_mpa_parse(c->rd.buf, c->rd.have, false, &f);
	if (r < 0) {
		mpa_fail(c, "bad_frame", r, false);
		return;
	}
	/* Our IRD/ORD offer: 8 each; relaxed mode lowers them to what the peer can use. */
	r = siw_mpa_respond(&S.cfg, &f, 8, 8, &c->res);
	if (r == 0 && conn_setup(c))
		r = SIW_ERR_TERM(TERM_LAYER_LLP, TERM_ETYPE_LLP, TERM_ECODE_LLP_LOCAL_CATASTROPHIC);
	if (r) {
		/* The frame parsed: say no with the R bit, then close. */
		n = siw_mpa_build_reply(&S.cfg, &c->res, true, NULL, 0, out, sizeof(out));
		mpa_fail(c, "rejected", r, n > 0 && send_all(c->fd, out, (size_t)n) == 0);
		return;
	}
	n = siw_mpa_build_reply(&S.cfg, &c->res, false, NULL, 0, out, sizeof(out));
	if (n < 0 || send_all(c->fd, out, (size_t)n)) {
		mpa_fail(c, "reply_failed", n < 0 ? n : SIW_ERR_CLOSED, false);
		return;
	}
	{
		struct eng_conn ec = {
		    .fd = c->fd, .initiator = false, .mpa = c->res, .ops = &cm_ops, .cm_user = c};

		ec.mpa.user_pd = NULL;
		ec.mpa.user_pd_len = 0;
		if (eng_qp_connect(c->qp, &ec)) {
			mpa_fail(c, "connect_failed", SIW_ERR_STATE, false);
			return;
		}
	}
	c->fd = -1; /* the engine's now */
	c->phase = P_LIVE;
	/* A P2P peer gets the same time again to send its RTR. */
	c->deadline = now_ms() + S.mpa_timeout_ms;
	S.started++;
	json_start(c);
}

static void mpa_readable(struct conn *c)
{
	for (;;) {
		uint8_t tmp[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
		int want = siw_mpa_reader_want(&c->rd);
		ssize_t n;
		int k;

		if (want < 0) {
			/* Judged on the fixed header: bad key, revision, length. Close. */
			mpa_fail(c, "bad_frame", want, false);
			return;
		}
		if (want == 0) {
			mpa_complete(c);
			return;
		}
		n = recv(c->fd, tmp, (size_t)want, MSG_DONTWAIT);
		if (n == 0) {
			mpa_fail(c, "peer_closed", SIW_ERR_CLOSED, false);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			mpa_fail(c, "recv_error", SIW_ERR_CLOSED, false);
			return;
		}
		k = siw_mpa_reader_feed(&c->rd, tmp, (size_t)n);
		if (k != n) {
			mpa_fail(c, "bad_frame", k < 0 ? k : SIW_ERR_INVAL, false);
			return;
		}
	}
}

static void accept_new(void)
{
	for (;;) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		int fd =
		    accept4(S.listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0)
			return;
		S.accepted++;
		if (S.nconns >= S.max_conns || !(c = calloc(1, sizeof(*c)))) {
			printf("{\"event\":\"mpa_fail\",\"conn\":null,\"peer_port\":%u,"
			       "\"reason\":\"too_many_connections\"}\n",
			       ntohs(sa.sin_port));
			fflush(stdout);
			S.mpa_failed++;
			close(fd);
			continue;
		}
		c->id = S.nconns;
		c->fd = fd;
		c->peer_port = ntohs(sa.sin_port);
		c->t_accept = now_ms();
		c->deadline = c->t_accept + S.mpa_timeout_ms;
		c->phase = P_MPA;
		siw_mpa_reader_init(&c->rd, false);
		if (S.nconns % 64 == 0) {
			struct conn **p = realloc(S.conns, (S.nconns + 64) * sizeof(*p));

			if (!p) {
				free(c);
				close(fd);
				continue;
			}
			S.conns = p;
		}
		S.conns[S.nconns++] = c;
	}
}

static const char *wc_op_name(uint8_t op)
{
	switch (op) {
	case ENG_WC_SEND:
		return "send";
	case ENG_WC_RDMA_WRITE:
		return "write";
	case ENG_WC_RDMA_READ:
		return "read";
	case ENG_WC_RECV:
		return "recv";
	default:
		return "other";
	}
}

/* The engine said the connection is over: report, release, check every guard. */
static void conn_finish(struct conn *c)
{
	struct eng_qp_stats st = {0};
	int err = __atomic_load_n(&c->close_err, __ATOMIC_ACQUIRE);
	bool own_ok, all_ok;

	eng_qp_stats(c->qp, &st);
	/* Destroying flushes what a close did not (shutdown); then every completion is in. */
	eng_qp_destroy(c->qp);
	c->qp = NULL;
	drain_cq(c, c->scq);
	drain_cq(c, c->rcq);
	conn_release(c);
	c->phase = P_DONE;
	S.ended++;
	if (siw_err_is_term(err))
		S.term_errors++;
	else if (!err)
		S.closed_clean++;

	own_ok = guards_ok(c->area);
	printf("{\"event\":\"end\",\"conn\":%u,\"peer_port\":%u,\"reason\":\"%s\",", c->id,
	       c->peer_port, c->end_reason ? c->end_reason : "closed");
	json_err(err);
	printf(",\"established\":%s,\"stats\":{\"rx_fpdus\":%" PRIu64 ",\"rx_msgs\":%" PRIu64
	       ",\"tx_msgs\":%" PRIu64 ",\"terms_sent\":%" PRIu64 ",\"terms_recv\":%" PRIu64 "}",
	       __atomic_load_n(&c->established, __ATOMIC_ACQUIRE) ? "true" : "false", st.rx_fpdus,
	       st.rx_msgs, st.tx_msgs, st.terms_sent, st.terms_recv);
	printf(",\"recvs_posted\":%d,\"ncqe\":%u,\"flushed\":%u,\"completions\":[", c->recvs_posted,
	       c->ncqe_total, c->nflushed);
	for (unsigned i = 0; i < c->ncqe; i++)
		printf("%s{\"wr_id\":%" PRIu64 ",\"op\":\"%s\",\"status\":%u,\"len\":%u}",
		       i ? "," : "", c->cqes[i].wr_id, wc_op_name(c->cqes[i].opcode),
		       c->cqes[i].status, c->cqes[i].byte_len);
	printf("],\"pristine\":{");
	for (int r = 0; r < NREG && c->area; r++)
		printf("%s\"%s\":%s", r ? "," : "", reg_name[r],
		       region_pristine(c->area, r) ? "true" : "false");
	if (S.unmap_after_close) {
		/* Deregistered and freed: from now on a stray write faults instead of landing. */
		munmap(c->area, AREA_LEN);
		c->area = NULL;
	} else {
		c->snapshot = malloc(AREA_LEN);
		if (c->snapshot)
			memcpy(c->snapshot, c->area, AREA_LEN);
	}
	all_ok = scan_all();
	printf("},\"guards_ok\":%s,\"all_guards_ok\":%s,\"violations\":%u}\n",
	       own_ok ? "true" : "false", all_ok ? "true" : "false", S.nbad);
	fflush(stdout);
}

static void tick(void)
{
	long long now = now_ms();

	for (unsigned i = 0; i < S.nconns; i++) {
		struct conn *c = S.conns[i];

		if (c->phase == P_MPA && now >= c->deadline) {
			mpa_fail(c, "timeout", SIW_ERR_TIMEDOUT, false);
			continue;
		}
		if (c->phase != P_LIVE)
			continue;
		drain_cq(c, c->scq);
		drain_cq(c, c->rcq);
		if (__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE)) {
			conn_finish(c);
			continue;
		}
		if (!__atomic_load_n(&c->established, __ATOMIC_ACQUIRE) && !c->disconnect_sent &&
		    now >= c->deadline) {
			/* P2P: the RTR never came. */
			c->end_reason = "rtr_timeout";
			c->disconnect_sent = true;
			eng_qp_disconnect(c->qp);
		}
	}
}

static int next_timeout(void)
{
	long long now = now_ms(), t = 200;

	for (unsigned i = 0; i < S.nconns; i++) {
		struct conn *c = S.conns[i];

		if ((c->phase == P_MPA ||
		     (c->phase == P_LIVE && !__atomic_load_n(&c->established, __ATOMIC_ACQUIRE))) &&
		    c->deadline - now < t)
			t = c->deadline - now;
	}
	return t < 0 ? 0 : (int)t;
}

static void shutdown_all(void)
{
	for (unsigned i = 0; i < S.nconns; i++) {
		struct conn *c = S.conns[i];

		if (c->phase == P_MPA) {
			mpa_fail(c, "shutdown", 0, false);
		} else if (c->phase == P_LIVE) {
			c->end_reason = c->end_reason ? c->end_reason : "shutdown";
			/* Destroy closes and flushes; closed() may or may not run first. */
			conn_finish(c);
		}
	}
}

static bool stdin_command(void)
{
	char line[128];
	ssize_t n = read(0, line, sizeof(line) - 1);

	if (n <= 0)
		return false; /* EOF: stop listening to stdin, keep serving */
	line[n] = '\0';
	if (strstr(line, "stats"))
		json_totals("stats", scan_all());
	if (strstr(line, "quit"))
		S.quit = 1;
	return true;
}

static void on_signal(int sig)
{
	(void)sig;
	S.quit = 1;
	wake();
}

static int open_listener(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 512) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		close(fd);
		return -1;
	}
	printf("{\"event\":\"listening\",\"host\":\"127.0.0.1\",\"port\":%u,\"pid\":%d,"
	       "\"mpa_timeout_ms\":%d,\"recvs\":%d,\"recv_len\":%d,\"guard_len\":%d,"
	       "\"region_len\":%d}\n",
	       ntohs(sa.sin_port), (int)getpid(), S.mpa_timeout_ms, S.recvs, S.recv_len, GUARD_LEN,
	       REGION_LEN);
	fflush(stdout);
	return fd;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s PORT [--mpa-timeout-ms N] [--recvs N] [--recv-len N] [--max-conns N]\n"
		"          [--unmap-after-close]\n"
		"  PORT 0 picks a free port (printed in the \"listening\" line)\n"
		"  --unmap-after-close: free a connection's memory when it ends (no post-close "
		"check)\n",
		argv0);
}

static int parse_args(int argc, char **argv, unsigned *port)
{
	bool have_port = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--mpa-timeout-ms") && v) {
			S.mpa_timeout_ms = atoi(v);
			i++;
		} else if (!strcmp(a, "--recvs") && v) {
			S.recvs = atoi(v);
			i++;
		} else if (!strcmp(a, "--recv-len") && v) {
			S.recv_len = atoi(v);
			i++;
		} else if (!strcmp(a, "--unmap-after-close")) {
			S.unmap_after_close = true;
		} else if (!strcmp(a, "--max-conns") && v) {
			S.max_conns = (unsigned)atoi(v);
			i++;
		} else if (a[0] != '-' && !have_port) {
			*port = (unsigned)atoi(a);
			have_port = true;
		} else {
			return -1;
		}
	}
	if (!have_port || *port > 65535 || S.mpa_timeout_ms < 1 || S.recvs < 0 ||
	    S.recvs > MAX_RECVS || S.recv_len < 1 || (long)S.recvs * S.recv_len > REGION_LEN)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	const struct eng_device *devs, *lo = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	int pipefd[2], ndev;
	unsigned port = 0;
	bool stdin_open = true, all_ok;

	if (parse_args(argc, argv, &port)) {
		usage(argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC))
		return 2;
	S.wake_rd = pipefd[0];
	S.wake_wr = pipefd[1];

	/* The responder: P2P with a WRITE or READ RTR, relaxed IRD/ORD, CRC if the peer asks. */
	S.cfg.rev = MPA_REV_2;
	S.cfg.crc = SIW_CRC_OFF;
	S.cfg.rtr_types = 1 << SIW_RTR_WRITE | 1 << SIW_RTR_READ;
	S.cfg.relaxed_ird = true;
	/* RFC 7306 when the peer offers it (PROTOCOL.md §6.5), as SIW_RFC7306=auto does. */
	S.cfg.rfc7306 = true;

	ndev = eng_devices(&devs);
	for (int i = 0; i < ndev; i++)
		if (!strcmp(devs[i].ifname, "lo"))
			lo = &devs[i];
	if (!lo) {
		fprintf(stderr, "hostile_server: no loopback device\n");
		return 2;
	}
	S.ctx = eng_ctx_open(lo);
	if (!S.ctx) {
		perror("eng_ctx_open");
		return 2;
	}
	S.listen_fd = open_listener(port);
	if (S.listen_fd < 0) {
		perror("listen");
		return 2;
	}

	while (!S.quit) {
		struct pollfd *p = calloc(S.nconns + 3, sizeof(*p));
		struct conn **who = calloc(S.nconns + 3, sizeof(*who));
		unsigned np = 0;

		if (!p || !who) {
			free(p);
			free(who);
			break;
		}
		p[np++] = (struct pollfd){.fd = S.listen_fd, .events = POLLIN};
		p[np++] = (struct pollfd){.fd = S.wake_rd, .events = POLLIN};
		p[np++] = (struct pollfd){.fd = stdin_open ? 0 : -1, .events = POLLIN};
		for (unsigned i = 0; i < S.nconns; i++) {
			if (S.conns[i]->phase != P_MPA)
				continue;
			who[np] = S.conns[i];
			p[np++] = (struct pollfd){.fd = S.conns[i]->fd, .events = POLLIN};
		}
		if (poll(p, np, next_timeout()) < 0 && errno != EINTR) {
			free(p);
			free(who);
			break;
		}
		if (p[1].revents) {
			char b[64];

			while (read(S.wake_rd, b, sizeof(b)) > 0)
				;
		}
		if (p[2].revents && !stdin_command())
			stdin_open = false;
		for (unsigned i = 3; i < np; i++)
			if (p[i].revents && who[i]->phase == P_MPA)
				mpa_readable(who[i]);
		if (p[0].revents)
			accept_new();
		free(p);
		free(who);
		tick();
	}

	close(S.listen_fd);
	shutdown_all();
	all_ok = scan_all();
	json_totals("exit", all_ok);
	if (eng_ctx_close(S.ctx))
		fprintf(stderr, "hostile_server: eng_ctx_close: objects left\n");
	for (unsigned i = 0; i < S.nconns; i++) {
		if (S.conns[i]->area)
			munmap(S.conns[i]->area, AREA_LEN);
		free(S.conns[i]->snapshot);
		free(S.conns[i]);
	}
	free(S.conns);
	return all_ok ? 0 : 1;
}
