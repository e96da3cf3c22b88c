// SPDX-License-Identifier: MIT
/*
 * The connection manager through its public API (rdma_cma.h), against our librdmacm.so.1 and
 * libibverbs.so.1: events and their parameters on both sides, private data, rejects, the MPA
 * timers, hostile and foreign peers (raw TCP sockets that speak hand-made MPA), a server that
 * keeps serving, IPv6, rdma_getaddrinfo, the synchronous endpoint API, two processes.
 *
 * No data moves here (tests/apps runs real programs for that); every QP exists only because
 * iWARP connects QPs, not ids.
 */
#include <fcntl.h>
#include <pthread.h>
#include <netdb.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_util.h"
#include "test.h"

#define EV_MS 5000 /* generous: CI machines can be slow */

extern char **environ;

/* ---- raw TCP peers ----------------------------------------------------------------------------
 */

static int raw_listen(const char *ip, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, one = 1;

	if (cmt_addr(ip, 0, &ss))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss,
		 ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					 : sizeof(struct sockaddr_in6)) ||
	    listen(fd, 8) || getsockname(fd, (struct sockaddr *)&ss, &len)) {
		close(fd);
		return -1;
	}
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static int raw_connect(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	int fd;

	if (cmt_addr(ip, port, &ss))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss,
		    ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					    : sizeof(struct sockaddr_in6))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int raw_accept(int lfd, int timeout_ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	return accept(lfd, NULL, NULL);
}

/* Reads up to len bytes within timeout_ms. Returns the count (short on EOF/timeout). */
static ssize_t read_for(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t end = cmt_now_ms() + (uint64_t)timeout_ms;
	size_t got = 0;

	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(end - cmt_now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			break;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Waits until the peer closes: true if EOF (or reset) came within timeout_ms. */
static bool wait_eof(int fd, int timeout_ms)
{
	uint64_t end = cmt_now_ms() + (uint64_t)timeout_ms;
	char buf[256];

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(end - cmt_now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return false;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
	}
}

/* An MPA request/reply header + private data (no IRD/ORD words unless in pd). */
static size_t mpa_frame(uint8_t *out, const char *key, uint8_t flags, uint8_t rev, uint16_t pdlen,
			const void *pd, size_t pd_bytes)
{
	memcpy(out, key, 16);
	out[16] = flags;
	out[17] = rev;
	out[18] = (uint8_t)(pdlen >> 8);
	out[19] = (uint8_t)pdlen;
	if (pd_bytes)
		memcpy(out + 20, pd, pd_bytes);
	return 20 + pd_bytes;
}

/* Reads one MPA frame header (+ its private data) from a raw socket. */
static bool read_frame(int fd, uint8_t *buf, size_t bufsz, size_t *len)
{
	uint16_t pdlen;

	if (read_for(fd, buf, 20, EV_MS) != 20)
		return false;
	pdlen = (uint16_t)(buf[18] << 8 | buf[19]);
	if (20 + (size_t)pdlen > bufsz || read_for(fd, buf + 20, pdlen, EV_MS) != pdlen)
		return false;
	*len = 20 + (size_t)pdlen;
	return true;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* One line (up to the newline) within timeout_ms. */
static void read_line(int fd, char *buf, size_t sz, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < sz && read_for(fd, buf + n, 1, timeout_ms) == 1 && buf[n] != '\n')
		n++;
	buf[n] = 0;
}

static void env_reset(void)
{
	unsetenv("SIW_MPA_TIMEOUT_MS");
	unsetenv("SIW_MPA_REV");
	unsetenv("SIW_MPA_P2P");
	unsetenv("SIW_MPA_CRC");
	unsetenv("SIW_MPA_RTR");
	unsetenv("SIW_RFC7306");
}

/* ---- devices, addresses, arguments ------------------------------------------------------------
 */

static void test_cm_resolve_and_devices(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct sockaddr_storage dst;
	struct rdma_cm_event *e;
	struct ibv_context **devs;
	struct rdma_cm_id *id;
	struct ibv_qp_attr qa;
	int n = 0, mask = -1;
	bool listed = false;

	REQUIRE(ch);
	devs = rdma_get_devices(&n);
	REQUIRE(devs);
	CHECK(n >= 1);
	CHECK(devs[n] == NULL);

	REQUIRE(rdma_create_id(ch, &id, (void *)0x1234, RDMA_PS_TCP) == 0);
	CHECK(id->channel == ch);
	CHECK(id->context == (void *)0x1234);
	CHECK_INT(id->ps, RDMA_PS_TCP);
	CHECK_INT(id->qp_type, IBV_QPT_RC);
	cmt_addr("127.0.0.1", 4791, &dst);
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) == 0);
	e = cmt_expect(ch, RDMA_CM_EVENT_ADDR_RESOLVED, EV_MS);
	REQUIRE(e);
	CHECK(e->id == id);
	CHECK_INT(e->status, 0);
	rdma_ack_cm_event(e);

	/* Bound to the loopback device, with the shared context rdma_get_devices returns. */
	REQUIRE(id->verbs);
	for (int i = 0; i < n; i++)
		listed |= devs[i] == id->verbs;
	CHECK(listed);
	CHECK_INT(id->verbs->device->transport_type, IBV_TRANSPORT_IWARP);
	CHECK_INT(id->port_num, 1);
	CHECK(id->pd != NULL);
	CHECK_INT(id->route.addr.src_addr.sa_family, AF_INET);
	CHECK_UINT(ntohl(id->route.addr.src_sin.sin_addr.s_addr), 0x7f000001);
	CHECK(rdma_get_src_port(id) != 0);
	CHECK_UINT(ntohs(rdma_get_dst_port(id)), 4791);
	CHECK(rdma_get_peer_addr(id) == &id->route.addr.dst_addr);

	REQUIRE(rdma_resolve_route(id, 2000) == 0);
	CHECK(cmt_expect_ack(ch, RDMA_CM_EVENT_ROUTE_RESOLVED, EV_MS));
	CHECK_INT(id->route.num_paths, 0);

	/* iWARP QP attributes: INIT/RTR set access + port, RTS has nothing to set. */
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_INIT;
	REQUIRE(rdma_init_qp_attr(id, &qa, &mask) == 0);
	CHECK_INT(mask, IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PORT);
	CHECK(qa.qp_access_flags & IBV_ACCESS_REMOTE_READ);
	CHECK(qa.qp_access_flags & IBV_ACCESS_REMOTE_WRITE);
	CHECK_INT(qa.port_num, 1);
	qa.qp_state = IBV_QPS_RTS;
	REQUIRE(rdma_init_qp_attr(id, &qa, &mask) == 0);
	CHECK_INT(mask, 0);

	CHECK_INT(rdma_destroy_id(id), 0);
	rdma_free_devices(devs);
	rdma_destroy_event_channel(ch);
}

static void test_cm_bad_arguments(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;
	uint8_t tos = 0x10, ack = 14;
	int one = 1;

	REQUIRE(ch);
	/* iWARP has only the TCP port space. */
	errno = 0;
	CHECK_INT(rdma_create_id(ch, &id, NULL, RDMA_PS_UDP), -1);
	CHECK_INT(errno, EOPNOTSUPP);
	CHECK_INT(rdma_create_id(ch, &id, NULL, RDMA_PS_IB), -1);
	CHECK_INT(rdma_create_id(ch, &id, NULL, (enum rdma_port_space)0x42), -1);
	CHECK_INT(errno, EINVAL);

	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0);
	/* Options apps set: accepted. */
	CHECK_INT(rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &tos, 1), 0);
	CHECK_INT(rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &ack, 1), 0);
	CHECK_INT(rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_REUSEADDR, &one, sizeof(one)),
		  0);
	CHECK_INT(rdma_set_option(id, RDMA_OPTION_ID, 77, &one, sizeof(one)), -1);
	CHECK_INT(errno, ENOSYS);
	CHECK_INT(rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &one, sizeof(one)), -1);
	CHECK_INT(errno, EINVAL);

	/* Calls out of order. */
	CHECK_INT(rdma_connect(id, NULL), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(rdma_accept(id, NULL), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(rdma_reject(id, NULL, 0), -1);
	CHECK_INT(rdma_resolve_route(id, 2000), -1);
	CHECK_INT(rdma_disconnect(id), -1);

	/* Not a local address (TEST-NET-1). */
	cmt_addr("192.0.2.1", 0, &ss);
	CHECK_INT(rdma_bind_addr(id, (struct sockaddr *)&ss), -1);
	CHECK_INT(errno, EADDRNOTAVAIL);
	ss.ss_family = AF_IB;
	CHECK_INT(rdma_bind_addr(id, (struct sockaddr *)&ss), -1);
	CHECK_INT(errno, EAFNOSUPPORT);

	/* Not on iWARP. */
	cmt_addr("239.1.1.1", 0, &ss);
	CHECK_INT(rdma_join_multicast(id, (struct sockaddr *)&ss, NULL), -1);
	CHECK_INT(errno, ENOSYS);
	CHECK_INT(rdma_leave_multicast(id, (struct sockaddr *)&ss), -1);
	CHECK_INT(errno, EADDRNOTAVAIL);
	CHECK_INT(rdma_get_remote_ece(id, &(struct ibv_ece){0}), -1);
	CHECK_INT(errno, EOPNOTSUPP);

	CHECK(!strcmp(rdma_event_str(RDMA_CM_EVENT_ESTABLISHED), "RDMA_CM_EVENT_ESTABLISHED"));
	CHECK(!strcmp(rdma_event_str((enum rdma_cm_event_type)99), "UNKNOWN EVENT"));
	CHECK_INT(rdma_destroy_id(id), 0);
	rdma_destroy_event_channel(ch);
}

/* An address the CM cannot resolve to a local device: ADDR_ERROR (sync mode: the errno). */
static void test_cm_addr_error(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct rdma_addrinfo hints, *res;
	struct sockaddr_storage dst;
	struct rdma_cm_event *e;
	struct rdma_cm_id *id;

	REQUIRE(ch);
	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0);
	/* The broadcast address has no route a connection could use. */
	cmt_addr("255.255.255.255", 7, &dst);
	CHECK_INT(rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000), 0);
	e = cmt_expect(ch, RDMA_CM_EVENT_ADDR_ERROR, EV_MS);
	REQUIRE(e);
	CHECK(e->status < 0);
	rdma_ack_cm_event(e);
	CHECK_INT(rdma_destroy_id(id), 0);
	rdma_destroy_event_channel(ch);

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = RAI_NUMERICHOST;
	REQUIRE(rdma_getaddrinfo("255.255.255.255", "7", &hints, &res) == 0);
	errno = 0;
	CHECK_INT(rdma_create_ep(&id, res, NULL, NULL), -1);
	CHECK(errno != 0);
	rdma_freeaddrinfo(res);
}

/* The channel fd honours O_NONBLOCK, and migrate moves queued events along. */
static void test_cm_channel_nonblock_and_migrate(void)
{
	struct rdma_event_channel *ch1 = rdma_create_event_channel();
	struct rdma_event_channel *ch2 = rdma_create_event_channel();
	struct sockaddr_storage dst;
	struct rdma_cm_event *e;
	struct rdma_cm_id *id;
	struct pollfd p;

	REQUIRE(ch1 && ch2);
	fcntl(ch1->fd, F_SETFL, fcntl(ch1->fd, F_GETFL) | O_NONBLOCK);
	errno = 0;
	CHECK_INT(rdma_get_cm_event(ch1, &e), -1);
	CHECK_INT(errno, EAGAIN);

	REQUIRE(rdma_create_id(ch1, &id, NULL, RDMA_PS_TCP) == 0);
	cmt_addr("127.0.0.1", 9, &dst);
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) == 0);
	p = (struct pollfd){.fd = ch1->fd, .events = POLLIN};
	CHECK_INT(poll(&p, 1, EV_MS), 1);

	/* The queued ADDR_RESOLVED follows the id to ch2; ch1 is empty again. */
	REQUIRE(rdma_migrate_id(id, ch2) == 0);
	CHECK(id->channel == ch2);
	p = (struct pollfd){.fd = ch1->fd, .events = POLLIN};
	CHECK_INT(poll(&p, 1, 0), 0);
	e = cmt_expect(ch2, RDMA_CM_EVENT_ADDR_RESOLVED, EV_MS);
	CHECK(e && e->id == id);
	if (e)
		rdma_ack_cm_event(e);
	CHECK_INT(rdma_destroy_id(id), 0);
	rdma_destroy_event_channel(ch1);
	rdma_destroy_event_channel(ch2);
}

struct acker {
	struct rdma_cm_event *e;
	volatile int acked;
};

static void *ack_later(void *arg)
{
	struct acker *a = arg;

	usleep(100 * 1000);
	a->acked = 1;
	rdma_ack_cm_event(a->e);
	return NULL;
}

/* rdma_destroy_id waits for the events of the id to be acknowledged. */
static void test_cm_destroy_waits_for_ack(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct sockaddr_storage dst;
	struct rdma_cm_id *id;
	struct acker a = {0};
	pthread_t t;

	REQUIRE(ch);
	REQUIRE(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) == 0);
	cmt_addr("127.0.0.1", 9, &dst);
	REQUIRE(rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) == 0);
	a.e = cmt_expect(ch, RDMA_CM_EVENT_ADDR_RESOLVED, EV_MS);
	REQUIRE(a.e);
	REQUIRE(pthread_create(&t, NULL, ack_later, &a) == 0);
	CHECK_INT(rdma_destroy_id(id), 0);
	CHECK_INT(a.acked, 1);
	pthread_join(t, NULL);
	rdma_destroy_event_channel(ch);
}

/* ---- connections ------------------------------------------------------------------------------
 */

static void test_cm_connect_accept_disconnect(void)
{
	struct rdma_event_channel *sch = rdma_create_event_channel();
	struct rdma_event_channel *cch = rdma_create_event_channel();
	struct cmt_node cli, srv;
	struct rdma_conn_param p;
	struct rdma_cm_event *e;
	struct rdma_cm_id *listen;
	uint16_t port;

	REQUIRE(sch && cch);
	listen = cmt_listen(sch, "127.0.0.1", &port);
	REQUIRE(listen);
	CHECK(port != 0);
	listen->context = (void *)0xabc;

	for (int round = 0; round < 2; round++) {
		memset(&p, 0, sizeof(p));
		p.private_data = "hello";
		p.private_data_len = 5;
		p.responder_resources = 4; /* our IRD */
		p.initiator_depth = 2;     /* our ORD */
		p.retry_count = 7;
		REQUIRE(cmt_client_connect(&cli, cch, "127.0.0.1", port, &p) == 0);

		/* Passive side: a new id, the listener, private data, the peer's IRD/ORD. */
		e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
		REQUIRE(e);
		CHECK(e->listen_id == listen);
		CHECK(e->id != listen);
		CHECK(e->id->context == (void *)0xabc);
		CHECK(e->id->verbs != NULL);
		CHECK(e->id->channel == sch);
		CHECK_INT(e->id->port_num, 1);
		CHECK_INT(e->status, 0);
		CHECK_INT(e->param.conn.private_data_len, 5);
		CHECK(e->param.conn.private_data &&
		      !memcmp(e->param.conn.private_data, "hello", 5));
		CHECK_INT(e->param.conn.initiator_depth, 2);     /* the peer's ORD */
		CHECK_INT(e->param.conn.responder_resources, 4); /* the peer's IRD */
		CHECK_INT(e->id->route.addr.dst_addr.sa_family, AF_INET);
		CHECK(rdma_get_dst_port(e->id) == rdma_get_src_port(cli.id));
		CHECK_UINT(ntohs(rdma_get_src_port(e->id)), port);
		REQUIRE(cmt_node_qp(&srv, e->id) == 0);
		rdma_ack_cm_event(e);

		/* Round 0: accept(NULL) = the device's maximum, lowered to the request's. */
		memset(&p, 0, sizeof(p));
		p.private_data = "world!";
		p.private_data_len = 6;
		p.responder_resources = 2;
		p.initiator_depth = 4;
		CHECK_INT(rdma_accept(srv.id, round ? &p : NULL), 0);

		e = cmt_expect(cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
		REQUIRE(e);
		CHECK(e->id == cli.id);
		CHECK_INT(e->status, 0);
		CHECK_INT(e->param.conn.private_data_len, round ? 6 : 0);
		if (round)
			CHECK(!memcmp(e->param.conn.private_data, "world!", 6));
		/* iw_cm convention: initiator_depth = negotiated IRD, responder_resources = ORD. */
		CHECK_INT(e->param.conn.initiator_depth, 4);
		CHECK_INT(e->param.conn.responder_resources, 2);
		rdma_ack_cm_event(e);
		e = cmt_expect(sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
		REQUIRE(e);
		CHECK(e->id == srv.id);
		CHECK_INT(e->param.conn.initiator_depth, 2);
		CHECK_INT(e->param.conn.responder_resources, 4);
		rdma_ack_cm_event(e);

		/* Round 0: the client disconnects; round 1: the server does. */
		CHECK_INT(rdma_disconnect(round ? srv.id : cli.id), 0);
		CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
		CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
		/* A second disconnect is harmless. */
		CHECK_INT(rdma_disconnect(cli.id), 0);
		cmt_node_free(&cli);
		cmt_node_free(&srv);
	}
	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
	rdma_destroy_event_channel(cch);
}

static void test_cm_reject_with_private_data(void)
{
	struct rdma_event_channel *sch = rdma_create_event_channel();
	struct rdma_event_channel *cch = rdma_create_event_channel();
	struct rdma_conn_param p = {.private_data = "may I?", .private_data_len = 6};
	struct rdma_cm_event *e;
	struct rdma_cm_id *listen;
	struct cmt_node cli;
	uint16_t port;

	REQUIRE(sch && cch);
	listen = cmt_listen(sch, "127.0.0.1", &port);
	REQUIRE(listen);
	REQUIRE(cmt_client_connect(&cli, cch, "127.0.0.1", port, &p) == 0);
	e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->param.conn.private_data_len, 6);
	CHECK(!memcmp(e->param.conn.private_data, "may I?", 6));
	CHECK_INT(rdma_reject(e->id, "no, go away", 11), 0);
	/* The rejected id can only be destroyed now. */
	CHECK_INT(rdma_accept(e->id, NULL), -1);
	CHECK_INT(rdma_destroy_id(e->id), 0);
	rdma_ack_cm_event(e);

	e = cmt_expect(cch, RDMA_CM_EVENT_REJECTED, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->status, -ECONNREFUSED);
	CHECK_INT(e->param.conn.private_data_len, 11);
	CHECK(e->param.conn.private_data && !memcmp(e->param.conn.private_data, "no, go away", 11));
	rdma_ack_cm_event(e);
	cmt_node_free(&cli);
	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
	rdma_destroy_event_channel(cch);
}

static void test_cm_connection_refused(void)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct rdma_cm_event *e;
	struct cmt_node cli;
	uint16_t port;
	int fd;

	REQUIRE(ch);
	/* A port nobody listens on: bind one, then close it. */
	fd = raw_listen("127.0.0.1", &port);
	REQUIRE(fd >= 0);
	close(fd);
	REQUIRE(cmt_client_connect(&cli, ch, "127.0.0.1", port, NULL) == 0);
	e = cmt_expect(ch, RDMA_CM_EVENT_REJECTED, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->status, -ECONNREFUSED);
	rdma_ack_cm_event(e);
	cmt_node_free(&cli);
	rdma_destroy_event_channel(ch);
}

static void test_cm_private_data_limits(void)
{
	struct rdma_event_channel *sch = rdma_create_event_channel();
	struct rdma_event_channel *cch = rdma_create_event_channel();
	struct rdma_conn_param p;
	struct rdma_cm_event *e;
	struct rdma_cm_id *listen;
	struct cmt_node cli, srv, cli2;
	uint8_t big[255];
	uint16_t port;

	REQUIRE(sch && cch);
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	listen = cmt_listen(sch, "127.0.0.1", &port);
	REQUIRE(listen);

	/* Over the limit (MPA v2: 256 - 4 bytes, as kernel siw): EINVAL before anything is sent. */
	memset(&p, 0, sizeof(p));
	p.private_data = big;
	p.private_data_len = 253;
	CHECK_INT(cmt_client_connect(&cli, cch, "127.0.0.1", port, &p), -1);
	CHECK_INT(errno, EINVAL);
	/* The same id connects with the limit. */
	p.private_data_len = 252;
	CHECK_INT(rdma_connect(cli.id, &p), 0);

	e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->param.conn.private_data_len, 252);
	CHECK(!memcmp(e->param.conn.private_data, big, 252));
	REQUIRE(cmt_node_qp(&srv, e->id) == 0);
	rdma_ack_cm_event(e);
	p.private_data = big + 3;
	p.private_data_len = 253;
	CHECK_INT(rdma_accept(srv.id, &p), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(rdma_reject(srv.id, big, 253), -1);
	CHECK_INT(errno, EINVAL);
	p.private_data_len = 252;
	CHECK_INT(rdma_accept(srv.id, &p), 0);
	e = cmt_expect(cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->param.conn.private_data_len, 252);
	CHECK(!memcmp(e->param.conn.private_data, big + 3, 252));
	rdma_ack_cm_event(e);
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));
	CHECK_INT(rdma_disconnect(cli.id), 0);
	CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	cmt_node_free(&cli);
	cmt_node_free(&srv);

	/* A reject carries up to the limit as well. */
	p.private_data = big;
	p.private_data_len = 100;
	REQUIRE(cmt_client_connect(&cli2, cch, "127.0.0.1", port, &p) == 0);
	e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	REQUIRE(e);
	CHECK_INT(rdma_reject(e->id, big + 1, 252), 0);
	rdma_destroy_id(e->id);
	rdma_ack_cm_event(e);
	e = cmt_expect(cch, RDMA_CM_EVENT_REJECTED, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->param.conn.private_data_len, 252);
	CHECK(!memcmp(e->param.conn.private_data, big + 1, 252));
	rdma_ack_cm_event(e);
	cmt_node_free(&cli2);

	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
	rdma_destroy_event_channel(cch);
}

/* ---- MPA on the wire: our requests, foreign replies, timeouts ---------------------------------
 */

/*
 * Our MPA request as a raw TCP server sees it, per configuration; then no reply at all: the
 * initiator gives up after SIW_MPA_TIMEOUT_MS with UNREACHABLE / -ETIMEDOUT.
 */
static void test_cm_request_format_and_initiator_timeout(void)
{
	/* Flag 0x04: RFC 7306 offered (SIW_RFC7306=auto, the default; PROTOCOL.md §6.5). */
	static const struct {
		const char *rev, *p2p, *crc, *rfc7306;
		uint8_t flags, revno;
		uint16_t ird_word, ord_word; /* 0xffff: no words expected */
	} cfg[] = {
	    {NULL, NULL, NULL, NULL, 0x14, 2, 3, 1},
	    {NULL, "1", "request", NULL, 0x54, 2, 0x8000 | 3, 0xc000 | 1},
	    {"1", NULL, NULL, NULL, 0x04, 1, 0xffff, 0xffff},
	    {NULL, NULL, NULL, "off", 0x10, 2, 3, 1},
	    {NULL, NULL, NULL, "on", 0x14, 2, 3, 1},
	};

	for (unsigned c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		struct rdma_event_channel *ch = rdma_create_event_channel();
		struct rdma_conn_param p = {.private_data = "xyz",
					    .private_data_len = 3,
					    .responder_resources = 3,
					    .initiator_depth = 1};
		struct rdma_cm_event *e;
		struct cmt_node cli;
		uint8_t f[600];
		uint16_t port;
		uint64_t t0;
		size_t len;
		int lfd, fd;

		REQUIRE(ch);
		lfd = raw_listen("127.0.0.1", &port);
		REQUIRE(lfd >= 0);
		env_reset();
		setenv("SIW_MPA_TIMEOUT_MS", "300", 1);
		if (cfg[c].rev)
			setenv("SIW_MPA_REV", cfg[c].rev, 1);
		if (cfg[c].p2p)
			setenv("SIW_MPA_P2P", cfg[c].p2p, 1);
		if (cfg[c].crc)
			setenv("SIW_MPA_CRC", cfg[c].crc, 1);
		if (cfg[c].rfc7306)
			setenv("SIW_RFC7306", cfg[c].rfc7306, 1);
		t0 = cmt_now_ms();
		REQUIRE(cmt_client_connect(&cli, ch, "127.0.0.1", port, &p) == 0);
		env_reset();

		fd = raw_accept(lfd, EV_MS);
		REQUIRE(fd >= 0);
		REQUIRE(read_frame(fd, f, sizeof(f), &len));
		CHECK_MEM(f, "MPA ID Req Frame", 16);
		CHECK_UINT(f[16], cfg[c].flags);
		CHECK_UINT(f[17], cfg[c].revno);
		if (cfg[c].ird_word == 0xffff) {
			CHECK_UINT(len, 20 + 3);
			CHECK_MEM(f + 20, "xyz", 3);
		} else {
			CHECK_UINT(len, 20 + 4 + 3);
			CHECK_UINT(get16(f + 20), cfg[c].ird_word);
			CHECK_UINT(get16(f + 22), cfg[c].ord_word);
			CHECK_MEM(f + 24, "xyz", 3);
		}

		e = cmt_expect(ch, RDMA_CM_EVENT_UNREACHABLE, EV_MS);
		REQUIRE(e);
		CHECK_INT(e->status, -ETIMEDOUT);
		rdma_ack_cm_event(e);
		CHECK(cmt_now_ms() - t0 >= 250);
		CHECK(wait_eof(fd, EV_MS));
		close(fd);
		close(lfd);
		cmt_node_free(&cli);
		rdma_destroy_event_channel(ch);
	}
}

/* What a non-softiwarp responder may answer, and what the initiator makes of it. */
static void test_cm_foreign_replies(void)
{
	enum { REJECT, IRD_TOO_LOW, GOOD, GARBAGE, HANGUP };
	static const char *const names[] = {"reject", "ird too low", "good", "garbage", "hangup"};

	for (int kind = REJECT; kind <= HANGUP; kind++) {
		struct rdma_event_channel *ch = rdma_create_event_channel();
		struct rdma_conn_param p = {.responder_resources = 2, .initiator_depth = 2};
		struct rdma_cm_event *e;
		struct cmt_node cli;
		uint8_t f[600], pd[16];
		uint16_t port;
		size_t len;
		int lfd, fd;

		fprintf(stderr, "  peer answers: %s\n", names[kind]);
		REQUIRE(ch);
		lfd = raw_listen("127.0.0.1", &port);
		REQUIRE(lfd >= 0);
		REQUIRE(cmt_client_connect(&cli, ch, "127.0.0.1", port, &p) == 0);
		fd = raw_accept(lfd, EV_MS);
		REQUIRE(fd >= 0);
		REQUIRE(read_frame(fd, f, sizeof(f), &len));

		switch (kind) {
		case REJECT:
			/* rev 2 reject keeps the IRD/ORD words in front (cxgb4, kernel siw). */
			memcpy(pd, "\x00\x00\x00\x00sorry", 9);
			len = mpa_frame(f, "MPA ID Rep Frame", 0x30, 2, 9, pd, 9);
			break;
		case IRD_TOO_LOW:
			/* The responder wants 5 outstanding READs towards us; we offered IRD 2. */
			memcpy(pd, "\x00\x02\x00\x05", 4);
			len = mpa_frame(f, "MPA ID Rep Frame", 0x10, 2, 4, pd, 4);
			break;
		case GOOD:
			memcpy(pd, "\x00\x02\x00\x01ok", 6);
			len = mpa_frame(f, "MPA ID Rep Frame", 0x10, 2, 6, pd, 6);
			break;
		case GARBAGE:
			len = mpa_frame(f, "HTTP/1.1 400 Bad", 0, 0, 0, NULL, 0);
			break;
		case HANGUP:
			len = 0;
			break;
		}
		if (len)
			CHECK_INT(send(fd, f, len, MSG_NOSIGNAL), (ssize_t)len);
		else
			shutdown(fd, SHUT_WR);

		switch (kind) {
		case REJECT:
			e = cmt_expect(ch, RDMA_CM_EVENT_REJECTED, EV_MS);
			REQUIRE(e);
			CHECK_INT(e->status, -ECONNREFUSED);
			CHECK_INT(e->param.conn.private_data_len, 5);
			CHECK(!memcmp(e->param.conn.private_data, "sorry", 5));
			rdma_ack_cm_event(e);
			break;
		case IRD_TOO_LOW:
			CHECK(cmt_expect_ack(ch, RDMA_CM_EVENT_CONNECT_ERROR, EV_MS));
			/*
			 * RFC 6581: a TERMINATE "insufficient IRD" as the first FPDU: 2 + 18 + 4
			 * bytes of header, no pad, CRC: 28 bytes; layer 2 (LLP), etype 0, code 6.
			 */
			CHECK_INT(read_for(fd, f, 28, EV_MS), 28);
			CHECK_UINT(get16(f), 22);
			CHECK_UINT(f[3] & 0x0f, 7);      /* RDMAP TERMINATE */
			CHECK_UINT(get16(f + 8 + 2), 2); /* QN 2 (low half) */
			CHECK_UINT(f[20], 0x20);         /* layer 2, etype 0 */
			CHECK_UINT(f[21], 0x06);         /* insufficient IRD */
			break;
		case GOOD:
			e = cmt_expect(ch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
			REQUIRE(e);
			CHECK_INT(e->param.conn.private_data_len, 2);
			CHECK(!memcmp(e->param.conn.private_data, "ok", 2));
			CHECK_INT(e->param.conn.initiator_depth, 1);     /* IRD = their ORD */
			CHECK_INT(e->param.conn.responder_resources, 2); /* ORD */
			rdma_ack_cm_event(e);
			CHECK_INT(rdma_disconnect(cli.id), 0);
			CHECK(cmt_expect_ack(ch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
			break;
		case GARBAGE:
			e = cmt_expect(ch, RDMA_CM_EVENT_CONNECT_ERROR, EV_MS);
			REQUIRE(e);
			CHECK(e->status < 0);
			rdma_ack_cm_event(e);
			break;
		case HANGUP:
			e = cmt_expect(ch, RDMA_CM_EVENT_REJECTED, EV_MS);
			REQUIRE(e);
			CHECK_INT(e->status, -ECONNRESET);
			rdma_ack_cm_event(e);
			break;
		}
		CHECK(wait_eof(fd, EV_MS));
		close(fd);
		close(lfd);
		cmt_node_free(&cli);
		rdma_destroy_event_channel(ch);
	}
}

/* One good client through the whole handshake (the listener still serves). */
static void good_client(struct rdma_event_channel *sch, uint16_t port)
{
	struct rdma_event_channel *cch = rdma_create_event_channel();
	struct rdma_conn_param p = {.private_data = "good", .private_data_len = 4};
	struct rdma_cm_event *e;
	struct cmt_node cli, srv;

	REQUIRE(cch);
	REQUIRE(cmt_client_connect(&cli, cch, "127.0.0.1", port, &p) == 0);
	e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	REQUIRE(e);
	CHECK(!memcmp(e->param.conn.private_data, "good", 4));
	REQUIRE(cmt_node_qp(&srv, e->id) == 0);
	rdma_ack_cm_event(e);
	CHECK_INT(rdma_accept(srv.id, NULL), 0);
	CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));
	CHECK_INT(rdma_disconnect(srv.id), 0);
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	cmt_node_free(&cli);
	cmt_node_free(&srv);
	rdma_destroy_event_channel(cch);
}

/*
 * A client that connects and sends nothing is dropped after the responder's timeout; while it
 * waits, the listener serves a good client.
 */
static void test_cm_responder_timeout(void)
{
	struct rdma_event_channel *sch = rdma_create_event_channel();
	struct rdma_cm_id *listen;
	struct pollfd p;
	uint16_t port;
	uint64_t t0;
	int fd;

	REQUIRE(sch);
	setenv("SIW_MPA_TIMEOUT_MS", "1000", 1);
	listen = cmt_listen(sch, "127.0.0.1", &port);
	env_reset();
	REQUIRE(listen);
	t0 = cmt_now_ms();
	fd = raw_connect("127.0.0.1", port);
	REQUIRE(fd >= 0);
	good_client(sch, port);
	CHECK(wait_eof(fd, EV_MS));
	CHECK(cmt_now_ms() - t0 >= 900);
	close(fd);
	/* The application never heard of it. */
	p = (struct pollfd){.fd = sch->fd, .events = POLLIN};
	CHECK_INT(poll(&p, 1, 0), 0);
	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
}

/* Bad key, unknown revision, oversized private data: a reject, a close, and service goes on. */
static void test_cm_hostile_clients(void)
{
	struct rdma_event_channel *sch = rdma_create_event_channel();
	struct rdma_cm_id *listen;
	uint8_t f[1024], r[64];
	uint16_t port;

	REQUIRE(sch);
	listen = cmt_listen(sch, "127.0.0.1", &port);
	REQUIRE(listen);
	for (int kind = 0; kind < 4; kind++) {
		uint8_t words[4] = {0, 1, 0, 1};
		struct pollfd p;
		size_t len = 0;
		int fd;

		switch (kind) {
		case 0: /* not MPA at all */
			len = mpa_frame(f, "GET / HTTP/1.1\r\n", 0x10, 2, 4, words, 4);
			break;
		case 1: /* revision 3 */
			len = mpa_frame(f, "MPA ID Req Frame", 0x10, 3, 4, words, 4);
			break;
		case 2: /* 600 bytes of private data: over MPA's 512 */
			memset(f + 20, 0xaa, 600);
			len = mpa_frame(f, "MPA ID Req Frame", 0x10, 2, 600, NULL, 0) + 600;
			break;
		case 3: /* a reply where a request belongs */
			len = mpa_frame(f, "MPA ID Rep Frame", 0x10, 2, 4, words, 4);
			break;
		}
		fd = raw_connect("127.0.0.1", port);
		REQUIRE(fd >= 0);
		CHECK_INT(send(fd, f, len, MSG_NOSIGNAL), (ssize_t)len);
		/*
		 * Not a request softiwarp can work with: RFC 5044 has the responder close the
		 * connection, without a Reply (kernel siw does the same); nothing else arrives.
		 */
		CHECK_INT(read_for(fd, r, 20, EV_MS), 0);
		CHECK(wait_eof(fd, EV_MS));
		close(fd);
		p = (struct pollfd){.fd = sch->fd, .events = POLLIN};
		CHECK_INT(poll(&p, 1, 0), 0);
	}
	good_client(sch, port);
	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
}

/* ---- a server thread that keeps serving -------------------------------------------------------
 */

struct server {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen;
	int want, established, disconnected, errors;
	struct cmt_node nodes[64];
};

static struct cmt_node *srv_node(struct server *s, struct rdma_cm_id *id)
{
	for (int i = 0; i < 64; i++)
		if (s->nodes[i].id == id)
			return &s->nodes[i];
	return NULL;
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	while (s->disconnected < s->want) {
		struct rdma_cm_event *e = cmt_get_event(s->ch, 20000);
		struct cmt_node *n;

		if (!e) {
			s->errors++;
			break;
		}
		switch (e->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			n = srv_node(s, NULL);
			if (!n || cmt_node_qp(n, e->id) || rdma_accept(e->id, NULL)) {
				s->errors++;
				rdma_reject(e->id, NULL, 0);
			}
			break;
		case RDMA_CM_EVENT_ESTABLISHED:
			s->established++;
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			s->disconnected++;
			n = srv_node(s, e->id);
			rdma_ack_cm_event(e);
			if (n)
				cmt_node_free(n);
			continue;
		default:
			fprintf(stderr, "  server: unexpected %s\n", rdma_event_str(e->event));
			s->errors++;
			break;
		}
		rdma_ack_cm_event(e);
	}
	return NULL;
}

static void test_cm_server_keeps_serving_20_clients(void)
{
	struct server s = {.want = 20};
	struct rdma_event_channel *cch[4];
	pthread_t t;
	uint16_t port;

	s.ch = rdma_create_event_channel();
	REQUIRE(s.ch);
	for (int i = 0; i < 4; i++) {
		cch[i] = rdma_create_event_channel();
		REQUIRE(cch[i]);
	}
	s.listen = cmt_listen(s.ch, "127.0.0.1", &port);
	REQUIRE(s.listen);
	REQUIRE(pthread_create(&t, NULL, server_main, &s) == 0);
	/* Clients come and go, up to 4 at a time (a channel each), 20 in all. */
	for (int done = 0; done < 20;) {
		struct cmt_node c[4];
		int k = 20 - done < 4 ? 20 - done : 4;

		for (int i = 0; i < k; i++)
			CHECK_INT(cmt_client_connect(&c[i], cch[i], "127.0.0.1", port, NULL), 0);
		for (int i = 0; i < k; i++)
			CHECK(cmt_expect_ack(cch[i], RDMA_CM_EVENT_ESTABLISHED, EV_MS));
		for (int i = 0; i < k; i++)
			CHECK_INT(rdma_disconnect(c[i].id), 0);
		for (int i = 0; i < k; i++)
			CHECK(cmt_expect_ack(cch[i], RDMA_CM_EVENT_DISCONNECTED, EV_MS));
		for (int i = 0; i < k; i++)
			cmt_node_free(&c[i]);
		done += k;
		if (t_failures)
			break;
	}
	pthread_join(t, NULL);
	CHECK_INT(s.established, 20);
	CHECK_INT(s.disconnected, 20);
	CHECK_INT(s.errors, 0);
	CHECK_INT(rdma_destroy_id(s.listen), 0);
	rdma_destroy_event_channel(s.ch);
	for (int i = 0; i < 4; i++)
		rdma_destroy_event_channel(cch[i]);
}

/* ---- IPv6 -------------------------------------------------------------------------------------
 */

static void test_cm_ipv6_loopback(void)
{
	struct rdma_event_channel *sch, *cch;
	struct rdma_cm_event *e;
	struct rdma_cm_id *listen;
	struct cmt_node cli, srv;
	uint16_t port;
	int fd = raw_listen("::1", &port);

	if (fd < 0) {
		fprintf(stderr, "  no IPv6 loopback here: skipped\n");
		return;
	}
	close(fd);
	sch = rdma_create_event_channel();
	cch = rdma_create_event_channel();
	REQUIRE(sch && cch);
	listen = cmt_listen(sch, "::1", &port);
	REQUIRE(listen);
	REQUIRE(cmt_client_connect(&cli, cch, "::1", port, NULL) == 0);
	CHECK_INT(cli.id->route.addr.src_addr.sa_family, AF_INET6);
	CHECK(IN6_IS_ADDR_LOOPBACK(&cli.id->route.addr.src_sin6.sin6_addr));
	e = cmt_expect(sch, RDMA_CM_EVENT_CONNECT_REQUEST, EV_MS);
	REQUIRE(e);
	CHECK_INT(e->id->route.addr.dst_addr.sa_family, AF_INET6);
	REQUIRE(cmt_node_qp(&srv, e->id) == 0);
	rdma_ack_cm_event(e);
	CHECK_INT(rdma_accept(srv.id, NULL), 0);
	CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_ESTABLISHED, EV_MS));
	CHECK_INT(rdma_disconnect(cli.id), 0);
	CHECK(cmt_expect_ack(cch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	CHECK(cmt_expect_ack(sch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
	cmt_node_free(&cli);
	cmt_node_free(&srv);
	CHECK_INT(rdma_destroy_id(listen), 0);
	rdma_destroy_event_channel(sch);
	rdma_destroy_event_channel(cch);
}

/* ---- rdma_getaddrinfo -------------------------------------------------------------------------
 */

static void test_cm_getaddrinfo(void)
{
	struct rdma_addrinfo hints, *res = NULL;
	struct sockaddr_in *sin;
	struct sockaddr_storage src;

	/* Active: the destination, port in network order, RC over TCP. */
	REQUIRE(rdma_getaddrinfo("127.0.0.1", "7471", NULL, &res) == 0);
	CHECK_INT(res->ai_family, AF_INET);
	CHECK_INT(res->ai_qp_type, IBV_QPT_RC);
	CHECK_INT(res->ai_port_space, RDMA_PS_TCP);
	REQUIRE(res->ai_dst_addr);
	CHECK_INT(res->ai_dst_len, sizeof(struct sockaddr_in));
	sin = (struct sockaddr_in *)res->ai_dst_addr;
	CHECK_UINT(ntohs(sin->sin_port), 7471);
	CHECK_UINT(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	CHECK(res->ai_src_addr == NULL);
	CHECK(res->ai_connect == NULL && res->ai_connect_len == 0);
	CHECK(res->ai_route == NULL);
	rdma_freeaddrinfo(res);

	/* Passive, no node: a wildcard source. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = RAI_PASSIVE;
	hints.ai_port_space = RDMA_PS_TCP;
	REQUIRE(rdma_getaddrinfo(NULL, "7471", &hints, &res) == 0);
	CHECK(res->ai_flags & RAI_PASSIVE);
	REQUIRE(res->ai_src_addr);
	CHECK(res->ai_dst_addr == NULL);
	rdma_freeaddrinfo(res);

	/* A source in the hints is kept; IPv6 literals work. */
	memset(&hints, 0, sizeof(hints));
	cmt_addr("::1", 0, &src);
	hints.ai_src_addr = (struct sockaddr *)&src;
	hints.ai_src_len = sizeof(struct sockaddr_in6);
	REQUIRE(rdma_getaddrinfo("::1", "18515", &hints, &res) == 0);
	CHECK_INT(res->ai_family, AF_INET6);
	CHECK(res->ai_src_addr && res->ai_src_len == sizeof(struct sockaddr_in6));
	CHECK(res->ai_dst_addr && res->ai_dst_len == sizeof(struct sockaddr_in6));
	rdma_freeaddrinfo(res);

	/* RAI_NUMERICHOST refuses names; nothing at all is EINVAL; AF_IB is not ours. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = RAI_NUMERICHOST;
	CHECK(rdma_getaddrinfo("localhost", "1", &hints, &res) != 0);
	CHECK_INT(rdma_getaddrinfo(NULL, NULL, NULL, &res), -1);
	CHECK_INT(errno, EINVAL);
	hints.ai_flags = 0;
	hints.ai_family = AF_IB;
	CHECK(rdma_getaddrinfo("127.0.0.1", "1", &hints, &res) != 0);
	/* Names resolve. */
	REQUIRE(rdma_getaddrinfo("localhost", "1", NULL, &res) == 0);
	CHECK(res->ai_family == AF_INET || res->ai_family == AF_INET6);
	rdma_freeaddrinfo(res);
}

/* ---- synchronous endpoints (rdma_server / rdma_client style) ----------------------------------
 */

struct ep_server {
	uint16_t port;
	int ok;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ready;
};

static void *ep_server_main(void *arg)
{
	struct ep_server *s = arg;
	struct rdma_addrinfo hints, *res;
	struct ibv_qp_init_attr attr;
	struct rdma_cm_id *listen, *id;
	char port[16];
	int ok = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = RAI_PASSIVE;
	hints.ai_port_space = RDMA_PS_TCP;
	if (rdma_getaddrinfo("127.0.0.1", "0", &hints, &res))
		goto out;
	memset(&attr, 0, sizeof(attr));
	attr.cap.max_send_wr = attr.cap.max_recv_wr = 1;
	attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
	attr.cap.max_inline_data = 16;
	attr.sq_sig_all = 1;
	if (rdma_create_ep(&listen, res, NULL, &attr)) {
		perror("  rdma_create_ep (passive)");
		rdma_freeaddrinfo(res);
		goto out;
	}
	rdma_freeaddrinfo(res);
	if (rdma_listen(listen, 0))
		goto out_listen;
	snprintf(port, sizeof(port), "%u", ntohs(rdma_get_src_port(listen)));
	pthread_mutex_lock(&s->lock);
	s->port = (uint16_t)atoi(port);
	s->ready = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);

	if (rdma_get_request(listen, &id)) {
		perror("  rdma_get_request");
		goto out_listen;
	}
	/* The QP exists already, with CQs and channels the CM made: cq_context is the id. */
	if (!id->qp || !id->send_cq || !id->recv_cq || !id->send_cq_channel ||
	    !id->recv_cq_channel || id->send_cq->cq_context != id ||
	    id->recv_cq->cq_context != id || !id->pd || id->event == NULL ||
	    id->event->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
		fprintf(stderr, "  rdma_get_request: id not set up as rdma-core does\n");
		goto out_id;
	}
	if (rdma_accept(id, NULL)) { /* returns once ESTABLISHED */
		perror("  rdma_accept (sync)");
		goto out_id;
	}
	if (!id->event || id->event->event != RDMA_CM_EVENT_ESTABLISHED)
		goto out_id;
	/* Waits for the DISCONNECTED (ours or the client's, whichever comes first). */
	if (rdma_disconnect(id)) {
		perror("  rdma_disconnect (sync)");
		goto out_id;
	}
	ok = 1;
out_id:
	rdma_destroy_ep(id);
out_listen:
	rdma_destroy_ep(listen);
out:
	pthread_mutex_lock(&s->lock);
	s->ok = ok;
	s->ready = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void test_cm_sync_endpoints(void)
{
	struct ep_server s = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct rdma_addrinfo hints, *res;
	struct ibv_qp_init_attr attr;
	struct rdma_cm_id *id;
	char port[16];
	pthread_t t;

	REQUIRE(pthread_create(&t, NULL, ep_server_main, &s) == 0);
	pthread_mutex_lock(&s.lock);
	while (!s.ready)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
	REQUIRE(s.port != 0);

	snprintf(port, sizeof(port), "%u", s.port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_port_space = RDMA_PS_TCP;
	REQUIRE(rdma_getaddrinfo("127.0.0.1", port, &hints, &res) == 0);
	memset(&attr, 0, sizeof(attr));
	attr.cap.max_send_wr = attr.cap.max_recv_wr = 1;
	attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
	attr.sq_sig_all = 1;
	CHECK_INT(rdma_create_ep(&id, res, NULL, &attr), 0);
	rdma_freeaddrinfo(res);
	if (!t_failures) {
		CHECK(id->qp != NULL);
		CHECK(id->send_cq && id->send_cq->cq_context == id);
		CHECK(id->channel != NULL); /* the private channel of a synchronous id */
		CHECK_INT(rdma_connect(id, NULL), 0);
		CHECK(id->event && id->event->event == RDMA_CM_EVENT_ESTABLISHED);
		CHECK_INT(rdma_disconnect(id), 0);
		rdma_destroy_ep(id);
	}
	pthread_join(t, NULL);
	CHECK_INT(s.ok, 1);
}

/* ---- two processes ----------------------------------------------------------------------------
 */

static void test_cm_two_processes(void)
{
	char *argv[] = {(char *)CM_PEER_PATH, (char *)"server", (char *)"127.0.0.1", (char *)"3",
			NULL};
	posix_spawn_file_actions_t fa;
	struct rdma_event_channel *ch;
	char line[64] = "";
	unsigned port = 0;
	int pipefd[2], status = -1;
	pid_t pid;

	REQUIRE(pipe(pipefd) == 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pipefd[0]);
	/* CMT_PEER_LOG=file: the peer's stderr (its CM log) goes there, apart from ours. */
	if (getenv("CMT_PEER_LOG"))
		posix_spawn_file_actions_addopen(&fa, 2, getenv("CMT_PEER_LOG"),
						 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	REQUIRE(posix_spawn(&pid, CM_PEER_PATH, &fa, NULL, argv, environ) == 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	read_line(pipefd[0], line, sizeof(line), 10000);
	close(pipefd[0]);
	CHECK(sscanf(line, "PORT %u", &port) == 1);

	ch = rdma_create_event_channel();
	for (int i = 0; i < 3 && port && ch; i++) {
		struct rdma_conn_param p = {.private_data = "ping",
					    .private_data_len = 4,
					    .responder_resources = 1,
					    .initiator_depth = 1};
		struct rdma_cm_event *e;
		struct cmt_node cli;

		if (cmt_client_connect(&cli, ch, "127.0.0.1", (uint16_t)port, &p)) {
			CHECK(!"connect");
			break;
		}
		e = cmt_expect(ch, RDMA_CM_EVENT_ESTABLISHED, EV_MS);
		CHECK(e != NULL);
		if (e) {
			CHECK_INT(e->param.conn.private_data_len, 9);
			CHECK(!memcmp(e->param.conn.private_data, "pong:ping", 9));
			rdma_ack_cm_event(e);
		}
		CHECK_INT(rdma_disconnect(cli.id), 0);
		CHECK(cmt_expect_ack(ch, RDMA_CM_EVENT_DISCONNECTED, EV_MS));
		cmt_node_free(&cli);
	}
	if (ch)
		rdma_destroy_event_channel(ch);
	if (t_failures)
		kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

T_MAIN(T_CASE(test_cm_resolve_and_devices), T_CASE(test_cm_bad_arguments),
       T_CASE(test_cm_addr_error), T_CASE(test_cm_channel_nonblock_and_migrate),
       T_CASE(test_cm_destroy_waits_for_ack), T_CASE(test_cm_connect_accept_disconnect),
       T_CASE(test_cm_reject_with_private_data), T_CASE(test_cm_connection_refused),
       T_CASE(test_cm_private_data_limits), T_CASE(test_cm_request_format_and_initiator_timeout),
       T_CASE(test_cm_foreign_replies), T_CASE(test_cm_responder_timeout),
       T_CASE(test_cm_hostile_clients), T_CASE(test_cm_server_keeps_serving_20_clients),
       T_CASE(test_cm_ipv6_loopback), T_CASE(test_cm_getaddrinfo), T_CASE(test_cm_sync_endpoints),
       T_CASE(test_cm_two_processes))
