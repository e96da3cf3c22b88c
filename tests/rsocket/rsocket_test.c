// SPDX-License-Identifier: MIT
/*
 * rsockets (rsocket.h) of our librdmacm.so.1, through the public API, both ends in this
 * process: connection setup blocking and non-blocking, rpoll/rselect over rsockets and
 * ordinary descriptors, data integrity under tight credits (small rings and queues, both
 * directions at once), shutdown/close semantics (end of stream, EPIPE, SHUT_RD), MSG_PEEK and
 * MSG_WAITALL, refused connects, options, IPv6, riomap/riowrite, several connections, and a
 * plain rdma_cm client that is not an rsocket.
 *
 * Real rstream/riostream runs are in the scripts next to this file.
 */
#define _GNU_SOURCE /* pthread_tryjoin_np */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <rdma/rsocket.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define WAIT_MS 10000 /* generous: CI machines can be slow */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static int make_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
}

static int set_nonblock(int fd, bool on)
{
	int fl = rfcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return rfcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* Waits until rpoll reports `events` on fd (or an error/hang-up); returns revents or 0. */
static short wait_ev(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r = rpoll(&p, 1, ms);

	return r == 1 ? p.revents : 0;
}

/* A listening rsocket on ip, port chosen by the system. -1 on failure. */
static int listen_on(const char *ip, uint16_t *port, void (*opts)(int fd))
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, one = 1;

	if (make_addr(ip, 0, &ss))
		return -1;
	fd = rsocket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	rsetsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (opts)
		opts(fd);
	if (rbind(fd, (struct sockaddr *)&ss, sa_len(&ss)) || rlisten(fd, 16) ||
	    rgetsockname(fd, (struct sockaddr *)&ss, &len)) {
		rclose(fd);
		return -1;
	}
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/*
 * A connected pair over ip: *c the client (non-blocking connect, then blocking), *s the
 * server's socket (blocking). opts (may be NULL) runs on the listener and the client before
 * connecting. Returns 0 or -1 (with a message).
 */
static int make_pair_opts(const char *ip, int *c, int *s, void (*opts)(int fd))
{
	struct sockaddr_storage ss;
	uint16_t port;
	socklen_t len;
	int l, err = -1;
	uint64_t end;

	*c = *s = -1;
	l = listen_on(ip, &port, opts);
	if (l < 0) {
		fprintf(stderr, "  listen on %s: %s\n", ip, strerror(errno));
		return -1;
	}
	make_addr(ip, port, &ss);
	*c = rsocket(ss.ss_family, SOCK_STREAM, 0);
	if (*c < 0)
		goto out;
	if (opts)
		opts(*c);
	set_nonblock(*c, true);
	set_nonblock(l, true);
	if (rconnect(*c, (struct sockaddr *)&ss, sa_len(&ss)) == 0 || errno != EINPROGRESS) {
		fprintf(stderr, "  non-blocking rconnect: %s\n", strerror(errno));
		goto out;
	}
	end = now_ms() + WAIT_MS;
	while (*s < 0 && now_ms() < end) {
		if (!(wait_ev(l, POLLIN, 100) & POLLIN))
			continue;
		*s = raccept(l, NULL, NULL);
		if (*s < 0 && errno != EAGAIN) {
			fprintf(stderr, "  raccept: %s\n", strerror(errno));
			goto out;
		}
	}
	if (*s < 0 || !(wait_ev(*c, POLLOUT, WAIT_MS) & POLLOUT)) {
		fprintf(stderr, "  connection not established\n");
		goto out;
	}
	len = sizeof(err);
	if (rgetsockopt(*c, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
		fprintf(stderr, "  SO_ERROR after connect: %d\n", err);
		goto out;
	}
	set_nonblock(*c, false);
	err = 0;
out:
	rclose(l);
	if (err) {
		if (*c >= 0)
			rclose(*c);
		if (*s >= 0)
			rclose(*s);
		*c = *s = -1;
	}
	return err;
}

static int make_pair(int *c, int *s)
{
	return make_pair_opts("127.0.0.1", c, s, NULL);
}

/*
 * Both ends shut down, then closed (rstream's way): each close finds the peer's FIN and does
 * not linger. (Closing one end while the other stays open makes rclose wait for the peer.)
 */
static void close_pair(int c, int s)
{
	rshutdown(c, SHUT_RDWR);
	rshutdown(s, SHUT_RDWR);
	CHECK_INT(rclose(c), 0);
	CHECK_INT(rclose(s), 0);
}

/* Blocking helpers: all of n bytes, or false. */
static bool send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t r = rsend(fd, p, n, 0);

		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

static bool recv_all(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = rrecv(fd, p, n, 0);

		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

static uint8_t pattern(uint64_t i, uint32_t seed)
{
	return (uint8_t)((i * 131 + seed + (i >> 9)) & 0xFF);
}

/* ---- connection setup ------------------------------------------------------------------------ */

struct accept_arg {
	int l, s;
};

static void *accept_thread(void *p)
{
	struct accept_arg *a = p;

	a->s = raccept(a->l, NULL, NULL);
	return NULL;
}

/* Blocking connect and accept (a thread accepts), addresses on both ends, a round trip. */
static void test_rs_blocking_connect(void)
{
	struct sockaddr_storage ss, pa, la;
	socklen_t len = sizeof(pa), llen = sizeof(la);
	struct accept_arg a = {.s = -1};
	uint16_t port;
	pthread_t th;
	char buf[32];
	int c;

	a.l = listen_on("127.0.0.1", &port, NULL);
	REQUIRE(a.l >= 0);
	REQUIRE(pthread_create(&th, NULL, accept_thread, &a) == 0);
	make_addr("127.0.0.1", port, &ss);
	c = rsocket(AF_INET, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), 0);
	pthread_join(th, NULL);
	REQUIRE(a.s >= 0);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), -1);
	CHECK_INT(errno, EISCONN);

	CHECK_INT(rgetpeername(c, (struct sockaddr *)&pa, &len), 0);
	CHECK_INT(len, sizeof(struct sockaddr_in));
	CHECK_INT(ntohs(((struct sockaddr_in *)&pa)->sin_port), port);
	CHECK_INT(rgetsockname(a.s, (struct sockaddr *)&la, &llen), 0);
	CHECK_INT(ntohs(((struct sockaddr_in *)&la)->sin_port), port);

	CHECK_INT(rsend(c, "ping", 5, 0), 5);
	CHECK(recv_all(a.s, buf, 5));
	CHECK(strcmp(buf, "ping") == 0);
	CHECK_INT(rwrite(a.s, "pong", 5), 5);
	CHECK_INT(rread(c, buf, sizeof(buf)), 5);
	CHECK(strcmp(buf, "pong") == 0);
	CHECK_INT(rclose(c), 0);
	CHECK_INT(rclose(a.s), 0);
	CHECK_INT(rclose(a.l), 0);
}

/* Non-blocking everything: EINPROGRESS, EAGAIN from accept and recv, rpoll timeouts. */
static void test_rs_nonblocking(void)
{
	struct sockaddr_storage ss;
	struct pollfd p;
	uint16_t port;
	uint64_t t0;
	char buf[16];
	int l, c, s = -1, err;
	socklen_t len = sizeof(err);

	l = listen_on("127.0.0.1", &port, NULL);
	REQUIRE(l >= 0);
	CHECK_INT(set_nonblock(l, true), 0);
	CHECK(rfcntl(l, F_GETFL) & O_NONBLOCK);
	CHECK_INT(raccept(l, NULL, NULL), -1);
	CHECK_INT(errno, EAGAIN);
	/* Nothing pending: the listener is not readable; the timeout is honoured. */
	t0 = now_ms();
	CHECK_INT(wait_ev(l, POLLIN, 100), 0);
	CHECK(now_ms() - t0 >= 90);

	c = rsocket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE(c >= 0);
	CHECK(rfcntl(c, F_GETFL) & O_NONBLOCK);
	make_addr("127.0.0.1", port, &ss);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), -1);
	CHECK_INT(errno, EINPROGRESS);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), -1);
	CHECK_INT(errno, EALREADY);
	CHECK(wait_ev(l, POLLIN, WAIT_MS) & POLLIN);
	s = raccept(l, NULL, NULL);
	REQUIRE(s >= 0);
	CHECK(wait_ev(c, POLLOUT, WAIT_MS) & POLLOUT);
	CHECK_INT(rgetsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	CHECK_INT(err, 0);

	CHECK_INT(set_nonblock(s, true), 0);
	CHECK_INT(rrecv(s, buf, sizeof(buf), 0), -1);
	CHECK_INT(errno, EAGAIN);
	CHECK_INT(set_nonblock(s, false), 0);
	CHECK_INT(rrecv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);
	CHECK_INT(errno, EAGAIN);
	p.fd = s;
	p.events = POLLIN;
	t0 = now_ms();
	CHECK_INT(rpoll(&p, 1, 100), 0);
	CHECK(now_ms() - t0 >= 90);
	CHECK_INT(rpoll(&p, 1, 0), 0);

	CHECK_INT(rsend(c, "x", 1, 0), 1);
	CHECK(wait_ev(s, POLLIN, WAIT_MS) & POLLIN);
	CHECK_INT(rrecv(s, buf, sizeof(buf), 0), 1);
	CHECK_INT(buf[0], 'x');
	close_pair(c, s);
	rclose(l);
}

/* rpoll and rselect over an rsocket, a pipe and a listener at once. */
static void test_rs_rpoll_mixed(void)
{
	struct pollfd p[3];
	struct timeval tv;
	fd_set rd, wr;
	int pfd[2], c, s, maxfd;
	char b;

	REQUIRE(make_pair(&c, &s) == 0);
	REQUIRE(pipe(pfd) == 0);
	p[0] = (struct pollfd){.fd = pfd[0], .events = POLLIN};
	p[1] = (struct pollfd){.fd = s, .events = POLLIN};
	p[2] = (struct pollfd){.fd = pfd[1], .events = POLLOUT};
	/* Only the pipe's write end is ready. */
	CHECK_INT(rpoll(p, 3, 1000), 1);
	CHECK_INT(p[0].revents, 0);
	CHECK_INT(p[1].revents, 0);
	CHECK_INT(p[2].revents, POLLOUT);
	p[2].events = 0;
	/* The pipe wakes a sleeping rpoll... */
	CHECK_INT(write(pfd[1], "a", 1), 1);
	CHECK_INT(rpoll(p, 3, WAIT_MS), 1);
	CHECK_INT(p[0].revents, POLLIN);
	CHECK_INT(read(pfd[0], &b, 1), 1);
	/* ... and so does the rsocket. */
	CHECK_INT(rsend(c, "b", 1, 0), 1);
	CHECK_INT(rpoll(p, 3, WAIT_MS), 1);
	CHECK_INT(p[0].revents, 0);
	CHECK_INT(p[1].revents, POLLIN);
	CHECK_INT(rrecv(s, &b, 1, 0), 1);
	CHECK_INT(b, 'b');

	/* rselect: the rsocket is writable, nothing is readable; then both are. */
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(pfd[0], &rd);
	FD_SET(s, &rd);
	FD_SET(s, &wr);
	maxfd = (pfd[0] > s ? pfd[0] : s) + 1;
	tv.tv_sec = 1;
	tv.tv_usec = 0;
	CHECK_INT(rselect(maxfd, &rd, &wr, NULL, &tv), 1);
	CHECK(FD_ISSET(s, &wr));
	CHECK(!FD_ISSET(s, &rd));
	CHECK(!FD_ISSET(pfd[0], &rd));
	CHECK_INT(write(pfd[1], "c", 1), 1);
	CHECK_INT(rsend(c, "d", 1, 0), 1);
	FD_ZERO(&rd);
	FD_SET(pfd[0], &rd);
	FD_SET(s, &rd);
	tv.tv_sec = 10;
	/* The rsocket's data may arrive a moment after the pipe's byte. */
	for (int i = 0; i < 100; i++) {
		fd_set r2 = rd;

		if (rselect(maxfd, &r2, NULL, NULL, &tv) == 2) {
			CHECK(FD_ISSET(s, &r2) && FD_ISSET(pfd[0], &r2));
			break;
		}
		usleep(10000);
	}
	CHECK_INT(rrecv(s, &b, 1, 0), 1);
	CHECK_INT(b, 'd');
	close(pfd[0]);
	close(pfd[1]);
	close_pair(c, s);
}

/* ---- data ------------------------------------------------------------------------------------ */

struct stream_arg {
	int fd;
	size_t total;
	uint32_t seed;
	bool ok;
	bool iov; /* use rsendmsg/rrecvmsg with three buffers */
};

static void *stream_sender(void *p)
{
	struct stream_arg *a = p;
	uint8_t buf[7000];
	size_t off = 0;

	a->ok = true;
	while (off < a->total) {
		size_t n = 1 + (off * 7919) % sizeof(buf);
		ssize_t r;

		if (n > a->total - off)
			n = a->total - off;
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i, a->seed);
		if (a->iov) {
			struct iovec v[3] = {{buf, n / 3},
					     {buf + n / 3, n / 3},
					     {buf + 2 * (n / 3), n - 2 * (n / 3)}};
			struct msghdr m = {.msg_iov = v, .msg_iovlen = 3};

			r = rsendmsg(a->fd, &m, 0);
		} else {
			r = rsend(a->fd, buf, n, 0);
		}
		if (r <= 0) {
			fprintf(stderr, "  rsend: %s\n", strerror(errno));
			a->ok = false;
			return NULL;
		}
		off += (size_t)r; /* a blocking send takes all, but be exact anyway */
		if ((size_t)r != n) {
			fprintf(stderr, "  blocking rsend sent %zd of %zu\n", r, n);
			a->ok = false;
			return NULL;
		}
	}
	return NULL;
}

static void *stream_receiver(void *p)
{
	struct stream_arg *a = p;
	uint8_t buf[5000];
	size_t off = 0;

	a->ok = true;
	while (off < a->total) {
		ssize_t r;

		if (a->iov) {
			struct iovec v[3] = {{buf, 1000}, {buf + 1000, 1}, {buf + 1001, 3999}};
			struct msghdr m = {.msg_iov = v, .msg_iovlen = 3};

			r = rrecvmsg(a->fd, &m, 0);
		} else {
			r = rrecv(a->fd, buf, sizeof(buf), 0);
		}
		if (r <= 0) {
			fprintf(stderr, "  rrecv at %zu: %zd (%s)\n", off, r, strerror(errno));
			a->ok = false;
			return NULL;
		}
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != pattern(off + (size_t)i, a->seed)) {
				fprintf(stderr, "  byte %zu is wrong\n", off + (size_t)i);
				a->ok = false;
				return NULL;
			}
		}
		off += (size_t)r;
	}
	return NULL;
}

static void tight(int fd)
{
	int v = 4096, q = 16, in = 32;

	rsetsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	rsetsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	rsetsockopt(fd, SOL_RDMA, RDMA_SQSIZE, &q, sizeof(q));
	rsetsockopt(fd, SOL_RDMA, RDMA_RQSIZE, &q, sizeof(q));
	rsetsockopt(fd, SOL_RDMA, RDMA_INLINE, &in, sizeof(in));
}

/* Both directions at once, tiny rings and queues: the credit scheme must neither stall nor
 * overrun; every byte is checked. */
static void run_bidir(void (*opts)(int fd), size_t total, bool iov)
{
	struct stream_arg a[4];
	pthread_t th[4];
	int c, s;

	REQUIRE(make_pair_opts("127.0.0.1", &c, &s, opts) == 0);
	a[0] = (struct stream_arg){.fd = c, .total = total, .seed = 1, .iov = iov};
	a[1] = (struct stream_arg){.fd = s, .total = total, .seed = 1, .iov = iov};
	a[2] = (struct stream_arg){.fd = s, .total = total, .seed = 2, .iov = iov};
	a[3] = (struct stream_arg){.fd = c, .total = total, .seed = 2, .iov = iov};
	pthread_create(&th[0], NULL, stream_sender, &a[0]);
	pthread_create(&th[1], NULL, stream_receiver, &a[1]);
	pthread_create(&th[2], NULL, stream_sender, &a[2]);
	pthread_create(&th[3], NULL, stream_receiver, &a[3]);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(a[i].ok);
	}
	close_pair(c, s);
}

static void test_rs_bidir_tight(void)
{
	run_bidir(tight, 1u << 20, false);
}

static void test_rs_bidir_default_iov(void)
{
	run_bidir(NULL, 24u << 20, true);
}

/* A receiver that reads in odd sizes with MSG_WAITALL, MSG_PEEK first. */
static void test_rs_peek_waitall(void)
{
	uint8_t out[10000], in[10000];
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = pattern(i, 7);
	CHECK_INT(rsend(c, out, 10, 0), 10);
	CHECK(wait_ev(s, POLLIN, WAIT_MS) & POLLIN);
	memset(in, 0, sizeof(in));
	CHECK_INT(rrecv(s, in, 4, MSG_PEEK), 4);
	CHECK_MEM(in, out, 4);
	CHECK_INT(rrecv(s, in, 100, MSG_PEEK), 10);
	CHECK_INT(rrecv(s, in, 3, 0), 3);
	CHECK_MEM(in, out, 3);
	/* WAITALL: 7 are there, the rest comes later in pieces. */
	CHECK(send_all(c, out + 10, 1000));
	CHECK(send_all(c, out + 1010, sizeof(out) - 1010));
	CHECK_INT(rrecv(s, in + 3, sizeof(in) - 3, MSG_WAITALL), sizeof(in) - 3);
	CHECK_MEM(in, out, sizeof(in));
	close_pair(c, s);
}

/* ---- closing --------------------------------------------------------------------------------- */

/* SHUT_WR: the peer reads what was sent, then end of stream; the other direction lives on. */
static void test_rs_shutdown_wr(void)
{
	uint8_t buf[70000], big[70000];
	short ev;
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = pattern(i, 3);
	CHECK(send_all(c, big, sizeof(big)));
	CHECK_INT(rshutdown(c, SHUT_WR), 0);
	CHECK_INT(rsend(c, "x", 1, 0), -1);
	CHECK_INT(errno, EPIPE);
	CHECK(recv_all(s, buf, sizeof(buf)));
	CHECK_MEM(buf, big, sizeof(buf));
	CHECK_INT(rrecv(s, buf, sizeof(buf), 0), 0);
	CHECK_INT(rrecv(s, buf, sizeof(buf), 0), 0);
	ev = wait_ev(s, POLLIN | POLLRDHUP | POLLOUT, WAIT_MS);
	CHECK(ev & POLLIN);
	CHECK(ev & POLLRDHUP);
	CHECK(ev & POLLOUT);
	CHECK(!(ev & POLLHUP));
	/* The half-closed side still receives, more than its ring holds. */
	CHECK(send_all(s, big, sizeof(big)));
	CHECK(recv_all(c, buf, sizeof(buf)));
	CHECK_MEM(buf, big, sizeof(buf));
	/* Both directions shut: hang-up on both ends, end of stream for the first. */
	CHECK_INT(rshutdown(s, SHUT_WR), 0);
	CHECK_INT(rrecv(c, buf, sizeof(buf), 0), 0);
	CHECK(wait_ev(c, POLLIN, WAIT_MS) & POLLHUP);
	CHECK(wait_ev(s, POLLIN, WAIT_MS) & POLLHUP);
	close_pair(c, s);
}

/* rclose with data still on its way: the peer gets all of it, then end of stream; writing to
 * the closed peer fails with EPIPE. */
static void test_rs_close_delivers(void)
{
	static uint8_t big[1 << 17], buf[1 << 17];
	uint64_t t0;
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = pattern(i, 5);
	/* More than the ring: the last rsend returns before the peer has read it all. */
	/* As much as the peer's ring holds; the peer reads it only after rclose returned. */
	CHECK(send_all(c, big, sizeof(big)));
	t0 = now_ms();
	CHECK_INT(rclose(c), 0);
	/* rclose lingers (2 s by default) for the peer's FIN, which does not come here. */
	CHECK(now_ms() - t0 < 2000 + 2000);
	CHECK(recv_all(s, buf, sizeof(big)));
	CHECK_MEM(buf, big, sizeof(big));
	CHECK_INT(rrecv(s, buf, 10, 0), 0);
	CHECK_INT(rsend(s, "x", 1, 0), -1);
	CHECK(errno == EPIPE || errno == ECONNRESET);
	rclose(s);
}

/* A close with the peer waiting in rrecv wakes it with end of stream; rpoll sees it too. */
struct eof_arg {
	int fd;
	ssize_t r;
};

static void *eof_reader(void *p)
{
	struct eof_arg *a = p;
	char b;

	a->r = rrecv(a->fd, &b, 1, 0);
	return NULL;
}

static void test_rs_close_wakes_reader(void)
{
	struct eof_arg a = {.r = -2};
	pthread_t th;
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	a.fd = s;
	pthread_create(&th, NULL, eof_reader, &a);
	usleep(100000);
	CHECK_INT(rshutdown(c, SHUT_RDWR), 0);
	pthread_join(th, NULL);
	CHECK_INT(a.r, 0);
	CHECK(wait_ev(s, POLLIN, WAIT_MS) & POLLIN);
	close_pair(c, s);
}

static void *big_sender(void *p)
{
	static uint8_t big[1 << 20];
	struct stream_arg *a = p;

	a->ok = send_all(a->fd, big, sizeof(big));
	return NULL;
}

/*
 * SHUT_RD: reads end at once; what the peer keeps sending is dropped without stalling it, as
 * long as the application calls into the socket now and then (there is no background thread:
 * here it polls).
 */
static void test_rs_shutdown_rd(void)
{
	struct stream_arg a = {.ok = false};
	bool joined = false;
	pthread_t th;
	void *ret;
	char b;
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	CHECK_INT(rsend(c, "abc", 3, 0), 3);
	CHECK(wait_ev(s, POLLIN, WAIT_MS) & POLLIN);
	CHECK_INT(rshutdown(s, SHUT_RD), 0);
	CHECK_INT(rrecv(s, &b, 1, 0), 0);
	CHECK(wait_ev(s, POLLIN, 0) & POLLIN); /* end of stream is readable */
	/* 1 MiB into a 128 KiB ring whose reader is gone: must not block forever. */
	a.fd = c;
	pthread_create(&th, NULL, big_sender, &a);
	/* Bounded in time, not in iterations: a writable socket makes wait_ev() return at once. */
	for (int i = 0; i < WAIT_MS && !joined; i++) {
		joined = pthread_tryjoin_np(th, &ret) == 0;
		if (!joined) {
			wait_ev(s, POLLOUT, 1); /* calls into the socket: drops what arrived */
			usleep(1000);
		}
	}
	REQUIRE(joined);
	CHECK(a.ok);
	/* The shut-down side may still write. */
	CHECK_INT(rsend(s, "z", 1, 0), 1);
	CHECK_INT(rrecv(c, &b, 1, 0), 1);
	CHECK_INT(b, 'z');
	CHECK_INT(rshutdown(s, SHUT_RD), 0);
	CHECK_INT(rshutdown(s, 42), -1);
	CHECK_INT(errno, EINVAL);
	close_pair(c, s);
}

/* ---- failures -------------------------------------------------------------------------------- */

static void test_rs_connect_refused(void)
{
	struct sockaddr_storage ss;
	uint16_t port;
	int l, c, err;
	socklen_t len = sizeof(err);
	short ev;

	/* A port that nothing listens on: take one from a listener, then close it. */
	l = listen_on("127.0.0.1", &port, NULL);
	REQUIRE(l >= 0);
	rclose(l);
	make_addr("127.0.0.1", port, &ss);

	c = rsocket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(c >= 0);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), -1);
	CHECK_INT(errno, ECONNREFUSED);
	CHECK_INT(rsend(c, "x", 1, 0), -1);
	rclose(c);

	c = rsocket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE(c >= 0);
	CHECK_INT(rconnect(c, (struct sockaddr *)&ss, sa_len(&ss)), -1);
	CHECK_INT(errno, EINPROGRESS);
	ev = wait_ev(c, POLLOUT, WAIT_MS);
	CHECK(ev & POLLOUT);
	CHECK(ev & POLLERR);
	CHECK_INT(rgetsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	CHECK_INT(err, ECONNREFUSED);
	CHECK_INT(rgetsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	CHECK_INT(err, 0);
	rclose(c);
}

/* Calls that make no sense, descriptors that are not rsockets. */
static void test_rs_bad_calls(void)
{
	struct pollfd p;
	char b;
	int fd, pfd[2];

	CHECK_INT(rsocket(AF_INET, SOCK_DGRAM, 0), -1);
	CHECK_INT(rsocket(AF_IB, SOCK_STREAM, 0), -1);
	CHECK_INT(errno, EAFNOSUPPORT);
	CHECK_INT(rsocket(AF_INET, SOCK_STREAM, IPPROTO_UDP), -1);
	REQUIRE(pipe(pfd) == 0);
	CHECK_INT(rsend(pfd[1], "x", 1, 0), -1);
	CHECK_INT(errno, EBADF);
	CHECK_INT(rclose(pfd[0] + 1000), -1);
	CHECK_INT(errno, EBADF);
	/* rpoll over ordinary descriptors only is poll(2). */
	p.fd = pfd[1];
	p.events = POLLOUT;
	CHECK_INT(rpoll(&p, 1, 0), 1);
	CHECK_INT(p.revents, POLLOUT);
	close(pfd[0]);
	close(pfd[1]);

	fd = rsocket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
	CHECK_INT(rrecv(fd, &b, 1, 0), -1);
	CHECK_INT(errno, ENOTCONN);
	CHECK_INT(rshutdown(fd, SHUT_RDWR), -1);
	CHECK_INT(errno, ENOTCONN);
	CHECK_INT(raccept(fd, NULL, NULL), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(riomap(fd, &b, 1, PROT_WRITE, 0, -1), -1);
	CHECK_INT(rclose(fd), 0);
}

/* ---- options --------------------------------------------------------------------------------- */

static void test_rs_options(void)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 1}, lg2;
	socklen_t len;
	int fd, v;

	fd = rsocket(AF_INET6, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
#define GET(level, name, want)                                                                     \
	do {                                                                                       \
		len = sizeof(v);                                                                   \
		CHECK_INT(rgetsockopt(fd, level, name, &v, &len), 0);                              \
		CHECK_INT(len, sizeof(int));                                                       \
		CHECK_INT(v, want);                                                                \
	} while (0)
#define SET(level, name, val)                                                                      \
	do {                                                                                       \
		v = val;                                                                           \
		CHECK_INT(rsetsockopt(fd, level, name, &v, sizeof(v)), 0);                         \
	} while (0)
	GET(SOL_SOCKET, SO_TYPE, SOCK_STREAM);
	GET(SOL_SOCKET, SO_ERROR, 0);
	SET(SOL_SOCKET, SO_SNDBUF, 1 << 19);
	GET(SOL_SOCKET, SO_SNDBUF, 1 << 19);
	SET(SOL_SOCKET, SO_RCVBUF, 100000);
	GET(SOL_SOCKET, SO_RCVBUF, 100000);
	SET(SOL_SOCKET, SO_RCVBUF, 10); /* raised to the minimum */
	GET(SOL_SOCKET, SO_RCVBUF, 4096);
	SET(SOL_SOCKET, SO_REUSEADDR, 1);
	GET(SOL_SOCKET, SO_REUSEADDR, 1);
	SET(SOL_SOCKET, SO_KEEPALIVE, 1);
	GET(SOL_SOCKET, SO_KEEPALIVE, 1);
	SET(IPPROTO_TCP, TCP_NODELAY, 1);
	GET(IPPROTO_TCP, TCP_NODELAY, 1);
	SET(IPPROTO_TCP, TCP_KEEPIDLE, 30);
	GET(IPPROTO_TCP, TCP_KEEPIDLE, 30);
	SET(IPPROTO_IPV6, IPV6_V6ONLY, 1);
	GET(IPPROTO_IPV6, IPV6_V6ONLY, 1);
	SET(SOL_RDMA, RDMA_SQSIZE, 100);
	GET(SOL_RDMA, RDMA_SQSIZE, 100);
	SET(SOL_RDMA, RDMA_RQSIZE, 1);
	GET(SOL_RDMA, RDMA_RQSIZE, 16);
	SET(SOL_RDMA, RDMA_INLINE, 100000);
	GET(SOL_RDMA, RDMA_INLINE, 512);
	SET(SOL_RDMA, RDMA_IOMAPSIZE, 4);
	GET(SOL_RDMA, RDMA_IOMAPSIZE, 4);
	v = 1;
	CHECK_INT(rsetsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, sizeof(v)), -1);
	CHECK_INT(errno, ENOPROTOOPT);
	CHECK_INT(rsetsockopt(fd, SOL_RDMA, RDMA_ROUTE, &v, sizeof(v)), -1);
	CHECK_INT(rsetsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, 1), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(rsetsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	len = sizeof(lg2);
	CHECK_INT(rgetsockopt(fd, SOL_SOCKET, SO_LINGER, &lg2, &len), 0);
	CHECK_INT(lg2.l_onoff, 1);
	CHECK_INT(lg2.l_linger, 1);
	CHECK_INT(rfcntl(fd, F_SETFL, O_NONBLOCK), 0);
	CHECK_INT(rfcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	CHECK_INT(rfcntl(fd, F_SETFL, 0), 0);
	CHECK_INT(rfcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	CHECK_INT(rclose(fd), 0);
#undef GET
#undef SET
}

/* ---- IPv6, many connections ------------------------------------------------------------------ */

static void test_rs_ipv6(void)
{
	struct sockaddr_storage pa;
	socklen_t len = sizeof(pa);
	char buf[6000], out[6000];
	int c, s;

	REQUIRE(make_pair_opts("::1", &c, &s, NULL) == 0);
	CHECK_INT(rgetpeername(c, (struct sockaddr *)&pa, &len), 0);
	CHECK_INT(pa.ss_family, AF_INET6);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (char)pattern(i, 9);
	CHECK(send_all(c, out, sizeof(out)));
	CHECK(recv_all(s, buf, sizeof(buf)));
	CHECK_MEM(buf, out, sizeof(out));
	close_pair(c, s);
}

/* Eight connections through one listener, served by one thread with rpoll. */
static void test_rs_many_connections(void)
{
	enum { N = 8, MSGS = 50 };
	int c[N], s[N];
	int got[N] = {0};
	struct pollfd p[N];
	uint64_t end;
	int done = 0;

	for (int i = 0; i < N; i++)
		REQUIRE(make_pair(&c[i], &s[i]) == 0);
	for (int m = 0; m < MSGS; m++)
		for (int i = 0; i < N; i++) {
			uint32_t v = (uint32_t)(i * 1000 + m);

			CHECK(send_all(c[i], &v, sizeof(v)));
		}
	end = now_ms() + WAIT_MS;
	while (done < N && now_ms() < end) {
		for (int i = 0; i < N; i++)
			p[i] = (struct pollfd){.fd = s[i], .events = got[i] < MSGS ? POLLIN : 0};
		if (rpoll(p, N, 1000) <= 0)
			continue;
		for (int i = 0; i < N; i++) {
			uint32_t v;

			if (!(p[i].revents & POLLIN))
				continue;
			CHECK(recv_all(s[i], &v, sizeof(v)));
			CHECK_INT(v, (uint32_t)(i * 1000 + got[i]));
			if (++got[i] == MSGS)
				done++;
		}
	}
	CHECK_INT(done, N);
	for (int i = 0; i < N; i++)
		close_pair(c[i], s[i]);
}

static int count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 4096; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

/* Connections come and go (both closing orders, with data left unread): nothing leaks. */
static void test_rs_connect_close_cycles(void)
{
	int before, c, s;
	char b[100] = {0};

	/* The first connection opens the device and starts the engine's and the CM's threads. */
	REQUIRE(make_pair(&c, &s) == 0);
	close_pair(c, s);
	before = count_fds();
	for (int i = 0; i < 40; i++) {
		REQUIRE(make_pair(&c, &s) == 0);
		CHECK_INT(rsend(c, b, sizeof(b), 0), sizeof(b));
		CHECK_INT(rsend(s, b, sizeof(b), 0), sizeof(b));
		if (i % 2) {
			close_pair(c, s);
		} else {
			/* Unread data both ways; the client end goes first, without a linger. */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};

			CHECK_INT(rsetsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
			CHECK_INT(rclose(c), 0);
			CHECK_INT(rclose(s), 0);
		}
	}
	CHECK_INT(count_fds(), before);
}

/* ---- riomap / riowrite ----------------------------------------------------------------------- */

static void iomap2(int fd)
{
	int v = 2;

	rsetsockopt(fd, SOL_RDMA, RDMA_IOMAPSIZE, &v, sizeof(v));
}

static bool wait_byte(volatile uint8_t *p, uint8_t want)
{
	uint64_t end = now_ms() + WAIT_MS;

	while (*p != want) {
		if (now_ms() > end)
			return false;
		usleep(100);
	}
	return true;
}

static void test_rs_iomap(void)
{
	static uint8_t win[100000], win2[4096], src[100000], extra[64];
	uint8_t sync;
	off_t off, off2;
	int c, s;

	REQUIRE(make_pair_opts("127.0.0.1", &c, &s, iomap2) == 0);
	/* The server maps a window at an offset it picks and one where rsockets pick. */
	off = riomap(s, win, sizeof(win), PROT_WRITE, 0, 1000000);
	CHECK_INT(off, 1000000);
	off2 = riomap(s, win2, sizeof(win2), PROT_WRITE, 0, -1);
	CHECK_INT(off2, (off_t)(uintptr_t)win2);
	/* The peer allows two windows. */
	CHECK_INT(riomap(s, extra, sizeof(extra), PROT_WRITE, 0, 0), -1);
	CHECK_INT(errno, ENOMEM);
	/* Local-only registrations do not count. */
	CHECK(riomap(s, extra, sizeof(extra), PROT_NONE, 0, 0) >= 0);
	CHECK_INT(riounmap(s, extra, sizeof(extra)), 0);
	CHECK_INT(riounmap(s, extra, sizeof(extra)), -1);
	CHECK_INT(errno, EINVAL);
	/* A message after riomap makes the mapping known to the peer (rsocket(7)). */
	CHECK_INT(rsend(s, "m", 1, 0), 1);
	CHECK_INT(rrecv(c, &sync, 1, 0), 1);

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = pattern(i, 11);
	/* The last byte goes last: the server learns by watching it, calling nothing. */
	CHECK_INT((ssize_t)riowrite(c, src, sizeof(src) - 1, off, 0), (ssize_t)sizeof(src) - 1);
	CHECK_INT((ssize_t)riowrite(c, src + sizeof(src) - 1, 1, off + sizeof(src) - 1, 0), 1);
	CHECK(wait_byte(&win[sizeof(win) - 1], src[sizeof(src) - 1]));
	CHECK_MEM(win, src, sizeof(win));
	CHECK_INT((ssize_t)riowrite(c, "hello", 6, off2 + 100, 0), 6);
	CHECK(wait_byte(&win2[105], 0));
	CHECK(wait_byte(&win2[100], 'h'));
	/* Beyond every window: an error, nothing written. */
	CHECK_INT((ssize_t)riowrite(c, src, 10, off + sizeof(win), 0), -1);
	CHECK_INT(errno, EINVAL);
	/* A write crossing the window's end stops at it. */
	CHECK_INT((ssize_t)riowrite(c, src, 10, off + sizeof(win) - 4, 0), 4);

	/* Riowrite data is ordered with the stream: a message after it finds it placed. */
	memset(win, 0, sizeof(win));
	CHECK_INT((ssize_t)riowrite(c, src, 5000, off, 0), 5000);
	CHECK_INT(rsend(c, "n", 1, 0), 1);
	CHECK_INT(rrecv(s, &sync, 1, 0), 1);
	CHECK_MEM(win, src, 5000);

	/* Unmapped, remapped elsewhere at the same offset. */
	CHECK_INT(riounmap(s, win, sizeof(win)), 0);
	memset(extra, 0, sizeof(extra));
	CHECK_INT(riomap(s, extra, sizeof(extra), PROT_WRITE, 0, 1000000), 1000000);
	CHECK_INT(rsend(s, "o", 1, 0), 1);
	CHECK_INT(rrecv(c, &sync, 1, 0), 1);
	CHECK_INT((ssize_t)riowrite(c, "world", 6, 1000000, 0), 6);
	CHECK(wait_byte(&extra[0], 'w'));
	CHECK_INT((ssize_t)riowrite(c, src, 100, 1000000, 0), 64);
	CHECK_INT(riounmap(s, extra, sizeof(extra)), 0);
	CHECK_INT(riounmap(s, win2, sizeof(win2)), 0);
	/* The client's peer (the server) allows two windows as well. */
	CHECK(riomap(c, win, sizeof(win), PROT_WRITE, 0, 0) == 0);
	close_pair(c, s);
}

static void test_rs_iomap_not_allowed(void)
{
	uint8_t b[64];
	int c, s;

	/* Without RDMA_IOMAPSIZE the peer takes no windows. */
	REQUIRE(make_pair(&c, &s) == 0);
	CHECK_INT(riomap(s, b, sizeof(b), PROT_WRITE, 0, 0), -1);
	CHECK_INT(errno, ENOMEM);
	CHECK_INT(riomap(s, b, sizeof(b), PROT_READ, 0, 0), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT((ssize_t)riowrite(c, b, sizeof(b), 0, 0), -1);
	CHECK_INT(errno, EINVAL);
	close_pair(c, s);
}

/* ---- non-blocking sends into a full ring ----------------------------------------------------- */

static void test_rs_nonblocking_full(void)
{
	static uint8_t chunk[1 << 16], in[1 << 16];
	size_t sent = 0, rcvd = 0;
	ssize_t r;
	int c, s;

	REQUIRE(make_pair(&c, &s) == 0);
	CHECK_INT(set_nonblock(c, true), 0);
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = pattern(i, 13);
	/* The reader does not read: the writer fills the ring, then EAGAIN. */
	for (int i = 0; i < 1000; i++) {
		r = rsend(c, chunk + sent % sizeof(chunk), sizeof(chunk) - sent % sizeof(chunk), 0);
		if (r < 0)
			break;
		sent += (size_t)r;
		if (!r)
			break;
	}
	CHECK_INT(r, -1);
	CHECK_INT(errno, EAGAIN);
	CHECK(sent >= 1u << 17); /* the default ring, at least */
	CHECK(sent < 1u << 20);
	CHECK_INT(wait_ev(c, POLLOUT, 200), 0);
	/* Reading frees space: POLLOUT comes back. */
	while (rcvd < sent) {
		r = rrecv(s, in, sizeof(in), 0);
		REQUIRE(r > 0);
		for (ssize_t i = 0; i < r; i++)
			if (in[i] != chunk[(rcvd + (size_t)i) % sizeof(chunk)]) {
				CHECK(!"wrong byte");
				break;
			}
		rcvd += (size_t)r;
	}
	CHECK(wait_ev(c, POLLOUT, WAIT_MS) & POLLOUT);
	CHECK(rsend(c, chunk, 100, 0) == 100);
	close_pair(c, s);
}

/* ---- a peer that is not an rsocket ----------------------------------------------------------- */

static void test_rs_plain_rdma_cm_client_refused(void)
{
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct rdma_cm_event *e;
	struct rdma_conn_param param;
	struct ibv_qp_init_attr qa;
	struct sockaddr_storage ss;
	struct pollfd p;
	uint16_t port;
	int l;

	l = listen_on("127.0.0.1", &port, NULL);
	REQUIRE(l >= 0);
	set_nonblock(l, true);
	ch = rdma_create_event_channel();
	REQUIRE(ch);
	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0);
	make_addr("127.0.0.1", port, &ss);
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&ss, 2000) == 0);
	p = (struct pollfd){.fd = ch->fd, .events = POLLIN};
	REQUIRE(poll(&p, 1, WAIT_MS) == 1 && rdma_get_cm_event(ch, &e) == 0);
	rdma_ack_cm_event(e);
	REQUIRE(rdma_resolve_route(id, 2000) == 0);
	REQUIRE(poll(&p, 1, WAIT_MS) == 1 && rdma_get_cm_event(ch, &e) == 0);
	rdma_ack_cm_event(e);
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	REQUIRE(rdma_create_qp(id, NULL, &qa) == 0);
	memset(&param, 0, sizeof(param));
	param.private_data = "hello";
	param.private_data_len = 6;
	REQUIRE(rdma_connect(id, &param) == 0);
	/* The listener turns it away (raccept only says EAGAIN: nothing acceptable). */
	for (int i = 0; i < 100; i++) {
		CHECK_INT(raccept(l, NULL, NULL), -1);
		if (poll(&p, 1, 50) == 1)
			break;
	}
	REQUIRE(rdma_get_cm_event(ch, &e) == 0);
	CHECK_INT(e->event, RDMA_CM_EVENT_REJECTED);
	rdma_ack_cm_event(e);
	rdma_destroy_qp(id);
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	rclose(l);
}

T_MAIN(T_CASE(test_rs_blocking_connect), T_CASE(test_rs_nonblocking), T_CASE(test_rs_rpoll_mixed),
       T_CASE(test_rs_bidir_tight), T_CASE(test_rs_bidir_default_iov), T_CASE(test_rs_peek_waitall),
       T_CASE(test_rs_shutdown_wr), T_CASE(test_rs_close_delivers),
       T_CASE(test_rs_close_wakes_reader), T_CASE(test_rs_shutdown_rd),
       T_CASE(test_rs_connect_refused), T_CASE(test_rs_bad_calls), T_CASE(test_rs_options),
       T_CASE(test_rs_ipv6), T_CASE(test_rs_many_connections), T_CASE(test_rs_connect_close_cycles),
       T_CASE(test_rs_iomap), T_CASE(test_rs_iomap_not_allowed), T_CASE(test_rs_nonblocking_full),
       T_CASE(test_rs_plain_rdma_cm_client_refused))
