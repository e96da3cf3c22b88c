// SPDX-License-Identifier: MIT
/*
 * siw-bench helpers: clocks, CPU time, data patterns, errors, loopback sockets with timeouts,
 * the control connection and machine facts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

const char *const bench_op_name[OP_COUNT] = {"write", "read", "send"};

/* ---- time --------------------------------------------------------------------------------- */

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

int ms_left(int64_t deadline, int cap_ms)
{
	int64_t left = deadline - now_ns();

	if (left <= 0)
		return 0;
	left = (left + 999999) / 1000000;
	return left > cap_ms ? cap_ms : (int)left;
}

/* ---- data patterns ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: every word of a pattern differs from its neighbours. */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	size_t i, words = len / 8;

	for (i = 0; i < words; i++) {
		uint64_t w = mix64(seed + i);

		memcpy(p + 8 * i, &w, 8);
	}
	if (len % 8) {
		uint64_t w = mix64(seed + words);

		memcpy(p + 8 * words, &w, len % 8);
	}
}

ssize_t check_pattern(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;
	size_t i, words = len / 8;

	for (i = 0; i < words; i++) {
		uint64_t w = mix64(seed + i);

		if (memcmp(p + 8 * i, &w, 8)) {
			for (size_t b = 0; b < 8; b++)
				if (p[8 * i + b] != ((const uint8_t *)&w)[b])
					return (ssize_t)(8 * i + b);
		}
	}
	if (len % 8) {
		uint64_t w = mix64(seed + words);

		for (size_t b = 0; b < len % 8; b++)
			if (p[8 * words + b] != ((const uint8_t *)&w)[b])
				return (ssize_t)(8 * words + b);
	}
	return -1;
}

uint64_t seed_next(void)
{
	static uint64_t state;

	if (!state)
		state = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	state = mix64(state);
	/* Patterns are taken at seed + word index: keep seeds far apart. */
	return state & ~0xffffffull;
}

/* ---- errors ------------------------------------------------------------------------------- */

static char err_buf[512];

int err(const char *fmt, ...)
{
	va_list ap;

	if (err_buf[0])
		return -1;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	return -1;
}

int err_errno(const char *what)
{
	return err("%s: %s", what, strerror(errno));
}

const char *err_text(void)
{
	return err_buf[0] ? err_buf : "unknown error";
}

bool err_isset(void)
{
	return err_buf[0] != 0;
}

void err_clear(void)
{
	err_buf[0] = 0;
}

/* ---- latency statistics ------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

void lat_stats(int64_t *ns, size_t n, double scale, struct lat_result *r)
{
	size_t i99;

	memset(r, 0, sizeof(*r));
	if (!n)
		return;
	qsort(ns, n, sizeof(*ns), cmp_i64);
	/* Nearest rank: the smallest sample with at least 99 % of the samples at or below it. */
	i99 = (n * 99 + 99) / 100;
	i99 = i99 ? i99 - 1 : 0;
	if (n % 2)
		r->med_us = (double)ns[n / 2] * scale / 1000.0;
	else
		r->med_us = ((double)ns[n / 2 - 1] + (double)ns[n / 2]) / 2 * scale / 1000.0;
	r->p99_us = (double)ns[i99] * scale / 1000.0;
	r->iters = n;
	r->done = true;
}

/* ---- sockets ------------------------------------------------------------------------------ */

uint32_t bench_addr = INADDR_LOOPBACK;

static void lo_addr(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(bench_addr);
	sa->sin_port = htons((uint16_t)port);
}

int tcp_listen_lo(int port, int *bound_port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_errno("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	lo_addr(&sa, port);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err("bind 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, 16) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		err_errno("listen");
		close(fd);
		return -1;
	}
	*bound_port = ntohs(sa.sin_port);
	return fd;
}

int sock_set_timeouts(int fd, double timeout)
{
	struct timeval tv = {.tv_sec = (time_t)timeout,
			     .tv_usec = (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return err_errno("setsockopt SO_RCVTIMEO/SO_SNDTIMEO");
	return 0;
}

int sock_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return err_errno("setsockopt TCP_NODELAY");
	return 0;
}

int tcp_connect_lo(int port, double timeout)
{
	struct sockaddr_in sa;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_errno("socket");
	lo_addr(&sa, port);
	/* SO_SNDTIMEO bounds a blocking connect() too. */
	if (sock_set_timeouts(fd, timeout) < 0)
		goto fail;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err("connect 127.0.0.1:%d: %s", port, strerror(errno));
		goto fail;
	}
	if (sock_nodelay(fd) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

int tcp_accept_timeout(int lfd, double timeout)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
	int fd, r;

	for (;;) {
		r = poll(&p, 1, ms_left(deadline, 1000));
		if (r < 0 && errno != EINTR)
			return err_errno("poll (accept)");
		if (r > 0)
			break;
		if (now_ns() >= deadline)
			return err("no TCP connection within %.1f s", timeout);
	}
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return err_errno("accept");
	if (sock_set_timeouts(fd, timeout) < 0 || sock_nodelay(fd) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int send_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return err("TCP send: timed out");
			return err_errno("TCP send");
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int recv_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, MSG_WAITALL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return err("TCP recv: timed out");
			return err_errno("TCP recv");
		}
		if (n == 0) {
			if (!got)
				return 0;
			return err("TCP recv: connection closed in the middle of a message "
				   "(%zu of %zu bytes)",
				   got, len);
		}
		got += (size_t)n;
	}
	return 1;
}

/* ---- control connection ------------------------------------------------------------------- */

void ctl_init(struct ctl_msg *m, enum ctl_type type)
{
	memset(m, 0, sizeof(*m));
	m->magic = CTL_MAGIC;
	m->type = type;
}

int ctl_send(int fd, const struct ctl_msg *m)
{
	const uint8_t *p = (const uint8_t *)m;
	size_t len = sizeof(*m);

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err("control connection: %s",
				   errno == EAGAIN ? "send timed out" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void ctl_send_error(int fd, const char *text)
{
	struct ctl_msg m;

	ctl_init(&m, CTL_ERROR);
	snprintf(m.text, sizeof(m.text), "%s", text);
	/* Best effort: the peer may be gone already. */
	if (send(fd, &m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		return;
}

static const char *ctl_name(uint32_t type)
{
	static const char *const names[] = {"a message", "SIW_SETUP", "SIW_LISTEN", "SIW_KEYS",
					    "ROW",       "READY",     "END",        "RESULT",
					    "QUIT",      "BYE",       "ERROR"};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

int ctl_recv(int fd, struct ctl_msg *m, enum ctl_type want, double timeout)
{
	int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
	uint8_t *p = (uint8_t *)m;
	size_t got = 0;

	while (got < sizeof(*m)) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int r = poll(&pf, 1, ms_left(deadline, 1000));
		ssize_t n;

		if (r < 0 && errno != EINTR)
			return err_errno("poll (control connection)");
		if (r <= 0) {
			if (now_ns() >= deadline)
				return err("control connection: no %s from the peer within %.1f s",
					   ctl_name(want), timeout);
			continue;
		}
		n = recv(fd, p + got, sizeof(*m) - got, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return err_errno("control connection");
		}
		if (n == 0)
			return err("control connection closed by the peer (waiting for %s)",
				   ctl_name(want));
		got += (size_t)n;
	}
	if (m->magic != CTL_MAGIC)
		return err("control connection: bad message (magic 0x%08x)", m->magic);
	m->text[sizeof(m->text) - 1] = 0;
	if (m->type == CTL_ERROR)
		return err("peer: %s", m->text);
	if (want && m->type != (uint32_t)want)
		return err("control connection: got %s, expected %s", ctl_name(m->type),
			   ctl_name(want));
	return 0;
}

/* ---- machine facts ------------------------------------------------------------------------ */

void machine_facts(struct machine *m)
{
	struct utsname u;
	char line[512];
	FILE *f;

	snprintf(m->cpu, sizeof(m->cpu), "unknown CPU");
	f = fopen("/proc/cpuinfo", "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');

			if (strncmp(line, "model name", 10) || !colon)
				continue;
			colon++;
			while (*colon == ' ' || *colon == '\t')
				colon++;
			colon[strcspn(colon, "\n")] = 0;
			snprintf(m->cpu, sizeof(m->cpu), "%s", colon);
			break;
		}
		fclose(f);
	}
	m->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (!uname(&u))
		snprintf(m->kernel, sizeof(m->kernel), "%.20s %.64s %.20s", u.sysname, u.release,
			 u.machine);
	else
		snprintf(m->kernel, sizeof(m->kernel), "unknown kernel");
}
