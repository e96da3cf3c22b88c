// SPDX-License-Identifier: MIT
#include "eng_pair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "mpa.h"
#include "term.h"
#include "test.h"

static long long ms_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void on_est(void *u, struct eng_qp *qp)
{
	(void)qp;
	__atomic_store_n(&((struct side *)u)->established, 1, __ATOMIC_RELEASE);
}

static void on_closed(void *u, struct eng_qp *qp, int err)
{
	struct side *s = u;

	(void)qp;
	s->close_err = err;
	__atomic_store_n(&s->closed, 1, __ATOMIC_RELEASE);
}

static const struct eng_cm_ops cm_ops = {.established = on_est, .closed = on_closed};

void pair_default_opts(struct pair_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->icfg.rev = 2;
	o->icfg.rtr_types = 1 << SIW_RTR_WRITE | 1 << SIW_RTR_READ;
	o->icfg.relaxed_ird = true;
	o->rcfg = o->icfg;
	o->ird = o->ord = 16;
	o->sq = o->rq = 64;
	o->sge = 4;
	o->inline_data = 64;
}

static int side_init(struct side *s, const struct pair_opts *o, bool srq)
{
	const struct eng_device *devs, *lo = NULL;
	struct eng_qp_init init = {0};
	int n = eng_devices(&devs);

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < n; i++)
		if (!strcmp(devs[i].ifname, "lo"))
			lo = &devs[i];
	if (!lo)
		return -1;
	s->ctx = eng_ctx_open(lo);
	if (!s->ctx)
		return -1;
	s->pd = eng_pd_alloc(s->ctx);
	if (o->use_channel)
		s->ch = eng_channel_create(s->ctx);
	s->scq = eng_cq_create(s->ctx, 1024, s->ch, s);
	s->rcq = eng_cq_create(s->ctx, 1024, s->ch, s);
	init.send_cq = s->scq;
	init.recv_cq = s->rcq;
	if (srq) {
		struct eng_srq_attr sa = {.max_wr = o->rq, .max_sge = o->sge, .srq_limit = 0};

		s->srq = eng_srq_create(s->pd, &sa, s);
		init.srq = s->srq;
	}
	init.cap.max_send_wr = o->sq;
	init.cap.max_recv_wr = o->rq;
	init.cap.max_send_sge = o->sge;
	init.cap.max_recv_sge = o->sge;
	init.cap.max_inline_data = o->inline_data;
	init.user = s;
	s->qp = eng_qp_create(s->pd, &init);
	return s->qp ? 0 : -1;
}

/* Reads one whole MPA frame from a blocking socket. */
static int read_frame(int fd, bool reply, uint8_t *buf, size_t cap, struct siw_mpa_frame *f)
{
	struct siw_mpa_reader r;
	int want;

	siw_mpa_reader_init(&r, reply);
	while ((want = siw_mpa_reader_want(&r)) > 0) {
		uint8_t tmp[600];
		ssize_t n = recv(fd, tmp, (size_t)want, 0);

		if (n <= 0 || siw_mpa_reader_feed(&r, tmp, (size_t)n) != n)
			return -1;
	}
	if (want < 0 || r.have > cap)
		return -1;
	memcpy(buf, r.buf, r.have);
	return siw_mpa_parse(buf, r.have, reply, f) > 0 ? 0 : -1;
}

int pair_connect(struct side *a, struct side *b, const struct pair_opts *o)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int ls, ia, rb, one = 1;
	uint8_t req[600], rep[600], fb[600];
	struct siw_mpa_frame f;
	struct siw_mpa_result ires, rres;
	int n;

	if (side_init(a, o, false) || side_init(b, o, o->use_srq))
		return -1;
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl))
		return -1;
	ia = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(ia, (struct sockaddr *)&sa, sizeof(sa)))
		return -1;
	rb = accept(ls, NULL, NULL);
	close(ls);
	if (rb < 0)
		return -1;

	/* MPA: initiator request, responder reply, both through the core's functions. */
	n = siw_mpa_build_req(&o->icfg, o->ird, o->ord, "hello", 5, req, sizeof(req));
	if (n < 0 || send(ia, req, (size_t)n, 0) != n)
		return -1;
	if (read_frame(rb, false, fb, sizeof(fb), &f) ||
	    siw_mpa_respond(&o->rcfg, &f, o->ird, o->ord, &rres))
		return -1;
	n = siw_mpa_build_reply(&o->rcfg, &rres, false, "world", 5, rep, sizeof(rep));
	if (n < 0 || send(rb, rep, (size_t)n, 0) != n)
		return -1;
	if (read_frame(ia, true, fb, sizeof(fb), &f) ||
	    siw_mpa_check_reply(&o->icfg, o->ird, o->ord, &f, &ires))
		return -1;

	{
		struct eng_conn ca = {.fd = ia, .initiator = true, .mpa = ires, .ops = &cm_ops,
				      .cm_user = a};
		struct eng_conn cb = {.fd = rb, .initiator = false, .mpa = rres, .ops = &cm_ops,
				      .cm_user = b};

		if (eng_qp_connect(b->qp, &cb) || eng_qp_connect(a->qp, &ca))
			return -1;
	}
	if (wait_flag(&a->established, 5000) || wait_flag(&b->established, 5000))
		return -1;
	return 0;
}

static void side_fini(struct side *s)
{
	if (s->qp)
		eng_qp_destroy(s->qp);
	if (s->srq)
		eng_srq_destroy(s->srq);
	if (s->scq)
		eng_cq_destroy(s->scq);
	if (s->rcq)
		eng_cq_destroy(s->rcq);
	if (s->ch)
		eng_channel_destroy(s->ch);
	if (s->pd)
		eng_pd_free(s->pd);
	if (s->ctx && eng_ctx_close(s->ctx))
		fprintf(stderr, "eng_ctx_close: objects left\n");
}

void check_catastrophic_end(struct side *target, struct side *peer)
{
	CHECK_INT(wait_flag(&target->closed, 5000), 0);
	CHECK(siw_err_is_term(target->close_err));
	CHECK_INT(siw_err_term_layer(target->close_err), TERM_LAYER_RDMAP);
	CHECK_INT(siw_err_term_etype(target->close_err), TERM_ETYPE_RDMAP_CATASTROPHIC);
	CHECK_INT(wait_flag(&peer->closed, 5000), 0);
}

int side_open(struct side *s, const struct pair_opts *o)
{
	return side_init(s, o, false);
}

void side_close(struct side *s)
{
	side_fini(s);
}

void pair_destroy(struct side *a, struct side *b)
{
	side_fini(a);
	side_fini(b);
}

int poll_n(struct eng_cq *cq, struct eng_cqe *out, int n, int timeout_ms)
{
	long long end = ms_now() + timeout_ms;
	int got = 0;

	while (got < n && ms_now() < end) {
		int r = eng_cq_poll(cq, n - got, out + got);

		if (r > 0)
			got += r;
		else
			usleep(50);
	}
	return got;
}

int wait_flag(int *flag, int timeout_ms)
{
	long long end = ms_now() + timeout_ms;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (ms_now() > end)
			return -1;
		usleep(100);
	}
	return 0;
}
