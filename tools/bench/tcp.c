// SPDX-License-Identifier: MIT
/*
 * The TCP half of siw-bench: what an application would do without RDMA. One fresh loopback
 * connection per measurement, blocking sockets, TCP_NODELAY, a single stream.
 *
 *   bandwidth, op write/send   client -> server: send() messages of `size` bytes until the row
 *                              time is over, shutdown(SHUT_WR); the server recv()s (MSG_WAITALL,
 *                              one message at a time) until EOF and reports the time of EOF.
 *   bandwidth, op read         the same, server -> client (the data flows as an RDMA READ's).
 *   latency, op write/send     ping-pong of `size` bytes each way; half the round trip.
 *   latency, op read           an 8-byte request, a `size`-byte answer; the whole round trip.
 *
 * Both processes share CLOCK_MONOTONIC, so a rate is bytes / (receiver's EOF - sender's start).
 * The receiver checks the last message against the sender's pattern.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

struct tcp_ctx {
	uint8_t *src, *dst;
	size_t max_size;
	const struct bench_opts *o;
};

struct tcp_ctx *tcp_ctx_new(size_t max_size, const struct bench_opts *o)
{
	struct tcp_ctx *t = calloc(1, sizeof(*t));

	if (!t) {
		err("out of memory");
		return NULL;
	}
	t->src = aligned_alloc(4096, (max_size + 4095) & ~(size_t)4095);
	t->dst = aligned_alloc(4096, (max_size + 4095) & ~(size_t)4095);
	if (!t->src || !t->dst) {
		err("out of memory (2 x %zu bytes of TCP buffers)", max_size);
		tcp_ctx_free(t);
		return NULL;
	}
	t->max_size = max_size;
	t->o = o;
	return t;
}

void tcp_ctx_free(struct tcp_ctx *t)
{
	if (!t)
		return;
	free(t->src);
	free(t->dst);
	free(t);
}

/* Waits for the peer's close after our shutdown(SHUT_WR), so neither side sees a reset. */
static int drain_eof(int fd)
{
	uint8_t b[256];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n == 0)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err("TCP: waiting for the peer to close: %s",
				   errno == EAGAIN ? "timed out" : strerror(errno));
		return err("TCP: %zd unexpected bytes after the end of the row", n);
	}
}

static void row_msg(struct ctl_msg *m, const struct bench_opts *o, enum bench_op op,
		    enum bench_mode mode, size_t size)
{
	ctl_init(m, CTL_ROW);
	m->transport = TR_TCP;
	m->op = op;
	m->mode = mode;
	m->size = size;
	m->seed_c = seed_next();
	m->seed_s = seed_next();
	m->time_ns = (int64_t)(o->time * 1e9);
}

static double row_timeout(const struct bench_opts *o)
{
	return o->time + o->timeout;
}

/* Sends messages until the row time or the cap is over; returns the count or -1. */
static int64_t stream_send(int fd, const uint8_t *buf, size_t size, int64_t t_stop)
{
	uint64_t n = 0;

	do {
		if (send_full(fd, buf, size) < 0)
			return -1;
		n++;
	} while (n < BENCH_BW_CAP && now_ns() < t_stop);
	if (shutdown(fd, SHUT_WR) < 0)
		return err_errno("TCP shutdown");
	return (int64_t)n;
}

/* Receives messages until EOF; *t_end is the time of EOF. Returns the count or -1. */
static int64_t stream_recv(int fd, uint8_t *buf, size_t size, int64_t *t_end)
{
	int64_t n = 0;
	int r;

	while ((r = recv_full(fd, buf, size)) == 1)
		n++;
	*t_end = now_ns();
	return r < 0 ? -1 : n;
}

static int verify(const uint8_t *buf, size_t size, uint64_t seed, const char *what)
{
	ssize_t bad = check_pattern(buf, size, seed);

	if (bad >= 0)
		return err("TCP %s: data mismatch at byte %zd of %zu", what, bad, size);
	return 0;
}

int tcp_client_bw(struct tcp_ctx *t, int ctl, int data_port, enum bench_op op, size_t size,
		  struct bw_result *r)
{
	const struct bench_opts *o = t->o;
	struct ctl_msg m, res;
	int64_t c0, c1, n, t0, t_end;
	int fd;

	memset(r, 0, sizeof(*r));
	row_msg(&m, o, op, MODE_BW, size);
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_READY, o->timeout) < 0)
		return -1;
	c0 = cpu_ns();
	fd = tcp_connect_lo(data_port, row_timeout(o));
	if (fd < 0)
		return -1;
	if (op == OP_READ) {
		/* server -> client */
		n = stream_recv(fd, t->dst, size, &t_end);
		if (n < 0)
			goto fail;
		if (n > 0 && verify(t->dst, size, m.seed_s, "stream") < 0)
			goto fail;
		close(fd);
		c1 = cpu_ns();
		if (ctl_recv(ctl, &res, CTL_RESULT, row_timeout(o)) < 0)
			return -1;
		if ((int64_t)res.count != n)
			return err("TCP stream: server sent %llu messages, client got %lld",
				   (unsigned long long)res.count, (long long)n);
		t0 = res.t_start;
	} else {
		fill_pattern(t->src, size, m.seed_c);
		t0 = now_ns();
		n = stream_send(fd, t->src, size, t0 + m.time_ns);
		if (n < 0 || drain_eof(fd) < 0)
			goto fail;
		close(fd);
		c1 = cpu_ns();
		if (ctl_recv(ctl, &res, CTL_RESULT, row_timeout(o)) < 0)
			return -1;
		if ((int64_t)res.count != n)
			return err("TCP stream: client sent %lld messages, server got %llu",
				   (long long)n, (unsigned long long)res.count);
		t_end = res.t_end;
	}
	if (n <= 0 || t_end <= t0)
		return err("TCP stream: nothing measured");
	r->msgs = (uint64_t)n;
	r->secs = (double)(t_end - t0) / 1e9;
	r->gbps = (double)n * (double)size / (double)(t_end - t0);
	r->cpu_ns_b = (double)(c1 - c0 + res.cpu_ns) / ((double)n * (double)size);
	r->done = true;
	return 0;
fail:
	close(fd);
	return -1;
}

int tcp_client_lat(struct tcp_ctx *t, int ctl, int data_port, enum bench_op op, size_t size,
		   struct lat_result *r)
{
	const struct bench_opts *o = t->o;
	size_t req = op == OP_READ ? BENCH_TCP_REQ : size;
	uint64_t i, done = 0, cap = BENCH_LAT_CAP + BENCH_LAT_WARMUP;
	size_t nsamp = 0, alloc = 4096;
	int64_t *samp = malloc(alloc * sizeof(*samp));
	int64_t t_stop = 0;
	struct ctl_msg m, res;
	int fd = -1, rc = -1;

	memset(r, 0, sizeof(*r));
	if (!samp)
		return err("out of memory");
	row_msg(&m, o, op, MODE_LAT, size);
	if (ctl_send(ctl, &m) < 0 || ctl_recv(ctl, &res, CTL_READY, o->timeout) < 0)
		goto out;
	fd = tcp_connect_lo(data_port, row_timeout(o));
	if (fd < 0)
		goto out;
	fill_pattern(t->src, req, m.seed_c);
	memset(t->dst, 0, size);
	for (i = 0; i < cap; i++) {
		int64_t t0, t1;
		int g;

		if (i == BENCH_LAT_WARMUP)
			t_stop = now_ns() + m.time_ns;
		t0 = now_ns();
		if (send_full(fd, t->src, req) < 0)
			goto out;
		g = recv_full(fd, t->dst, size);
		if (g <= 0) {
			if (!g)
				err("TCP ping-pong: server closed the connection");
			goto out;
		}
		t1 = now_ns();
		done++;
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
	if (shutdown(fd, SHUT_WR) < 0) {
		err_errno("TCP shutdown");
		goto out;
	}
	if (drain_eof(fd) < 0 || verify(t->dst, size, m.seed_s, "ping-pong") < 0)
		goto out;
	if (ctl_recv(ctl, &res, CTL_RESULT, row_timeout(o)) < 0)
		goto out;
	if (res.count != done) {
		err("TCP ping-pong: server answered %llu times, client got %llu answers",
		    (unsigned long long)res.count, (unsigned long long)done);
		goto out;
	}
	/* Ping-pong: one way = half the round trip; READ-like request/answer: the round trip. */
	lat_stats(samp, nsamp, op == OP_READ ? 1.0 : 0.5, r);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(samp);
	return rc;
}

int tcp_server_row(struct tcp_ctx *t, int ctl, int lfd, const struct ctl_msg *m)
{
	const struct bench_opts *o = t->o;
	size_t size = m->size;
	struct ctl_msg res;
	int64_t c0, n = 0;
	int fd;

	if (size > t->max_size || size == 0)
		return err("TCP row: bad size %llu", (unsigned long long)size);
	ctl_init(&res, CTL_READY);
	if (ctl_send(ctl, &res) < 0)
		return -1;
	c0 = cpu_ns();
	fd = tcp_accept_timeout(lfd, o->time + o->timeout);
	if (fd < 0)
		return -1;
	ctl_init(&res, CTL_RESULT);
	if (m->mode == MODE_BW && m->op == OP_READ) {
		fill_pattern(t->src, size, m->seed_s);
		res.t_start = now_ns();
		n = stream_send(fd, t->src, size, res.t_start + m->time_ns);
		if (n < 0 || drain_eof(fd) < 0)
			goto fail;
	} else if (m->mode == MODE_BW) {
		n = stream_recv(fd, t->dst, size, &res.t_end);
		if (n < 0)
			goto fail;
		if (n > 0 && verify(t->dst, size, m->seed_c, "stream") < 0)
			goto fail;
	} else {
		size_t req = m->op == OP_READ ? BENCH_TCP_REQ : size;
		int g;

		fill_pattern(t->src, size, m->seed_s);
		memset(t->dst, 0, req);
		while ((g = recv_full(fd, t->dst, req)) == 1) {
			if (send_full(fd, t->src, size) < 0)
				goto fail;
			n++;
		}
		if (g < 0)
			goto fail;
		if (n > 0 && verify(t->dst, req, m->seed_c, "ping-pong") < 0)
			goto fail;
	}
	close(fd);
	res.count = (uint64_t)n;
	res.cpu_ns = cpu_ns() - c0;
	res.ok = 1;
	return ctl_send(ctl, &res);
fail:
	close(fd);
	return -1;
}
