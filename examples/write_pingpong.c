// SPDX-License-Identifier: MIT
/*
 * write_pingpong: RDMA WRITE ping-pong over rdma_cm, the way ib_write_lat measures latency.
 *
 *   write_pingpong [-p PORT] [-b BIND_ADDR]               server (serves one client)
 *   write_pingpong [-p PORT] [-n ROUNDS] SERVER_ADDR      client
 *
 * Each side registers one buffer the peer may write into. The two buffers' addresses and
 * rkeys travel in the connection's private data (MPA request and reply on iWARP), so no
 * message is ever SENT. Round i: the client RDMA WRITEs the counter i into the server's
 * buffer; the server, which polls its memory, sees i arrive and WRITEs it back; the client,
 * polling its own memory, sees i and starts round i + 1. Neither side posts a receive: a
 * WRITE lands in memory without involving the target's CPU or a work request.
 *
 * Only the standard librdmacm and libibverbs APIs are used; every wait gives up after
 * TIMEOUT_S seconds. Exit status: 0 all rounds done, 1 failure, 2 usage error.
 */
#include <endian.h>
#include <getopt.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define TIMEOUT_S 10

/* What each side tells the other in the private data (big-endian on the wire). */
struct buf_info {
	uint64_t addr;
	uint32_t rkey;
	uint32_t rounds; /* client -> server: how many rounds to play */
};

static struct rdma_event_channel *ch;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_mr *mr;
/* [0]: the peer WRITEs here; [1]: the local source of our WRITEs. */
static volatile uint64_t buf[2];

#define die(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, "write_pingpong: " __VA_ARGS__);                                   \
		fputc('\n', stderr);                                                               \
		exit(1);                                                                           \
	} while (0)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for the next CM event, which must be `want`; copies the peer's buf_info if asked. */
static struct rdma_cm_id *expect(enum rdma_cm_event_type want, struct buf_info *peer)
{
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;

	if (rdma_get_cm_event(ch, &ev))
		die("rdma_get_cm_event: %m");
	if (ev->event != want)
		die("expected %s, got %s (status %d)", rdma_event_str(want),
		    rdma_event_str(ev->event), ev->status);
	if (peer) {
		if (ev->param.conn.private_data_len < sizeof(*peer))
			die("%s without the peer's buffer", rdma_event_str(want));
		memcpy(peer, ev->param.conn.private_data, sizeof(*peer));
		peer->addr = be64toh(peer->addr);
		peer->rkey = be32toh(peer->rkey);
		peer->rounds = be32toh(peer->rounds);
	}
	id = ev->id; /* for a CONNECT_REQUEST, the new id of that connection */
	rdma_ack_cm_event(ev);
	return id;
}

/* PD, CQ, the registered buffer and an RC QP on the device the id is bound to. */
static void setup_qp(struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 4, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
	};

	pd = ibv_alloc_pd(id->verbs);
	cq = pd ? ibv_create_cq(id->verbs, 8, NULL, NULL, 0) : NULL;
	if (!cq)
		die("ibv_alloc_pd/ibv_create_cq: %m");
	mr = ibv_reg_mr(pd, (void *)buf, sizeof(buf),
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die("ibv_reg_mr: %m");
	qa.send_cq = qa.recv_cq = cq;
	if (rdma_create_qp(id, pd, &qa))
		die("rdma_create_qp: %m");
	printf("write_pingpong: device %s\n", ibv_get_device_name(id->verbs->device));
}

static struct buf_info my_info(uint32_t rounds)
{
	struct buf_info bi = {.addr = htobe64((uintptr_t)&buf[0]),
			      .rkey = htobe32(mr->rkey),
			      .rounds = htobe32(rounds)};

	return bi;
}

/* RDMA WRITEs v from buf[1] into the peer's buffer and waits for the local completion. */
static void write_value(struct rdma_cm_id *id, const struct buf_info *peer, uint64_t v)
{
	struct ibv_sge sge = {.addr = (uintptr_t)&buf[1], .length = 8, .lkey = mr->lkey};
	struct ibv_send_wr wr = {.sg_list = &sge,
				 .num_sge = 1,
				 .opcode = IBV_WR_RDMA_WRITE,
				 .send_flags = IBV_SEND_SIGNALED};
	struct ibv_send_wr *bad;
	struct ibv_wc wc;
	double end = now() + TIMEOUT_S;
	int n;

	buf[1] = v;
	wr.wr.rdma.remote_addr = peer->addr;
	wr.wr.rdma.rkey = peer->rkey;
	if (ibv_post_send(id->qp, &wr, &bad))
		die("ibv_post_send: %m");
	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		if (now() > end)
			die("no completion for the WRITE of %llu", (unsigned long long)v);
	if (n < 0 || wc.status != IBV_WC_SUCCESS)
		die("WRITE failed: %s", n < 0 ? "ibv_poll_cq" : ibv_wc_status_str(wc.status));
}

/*
 * Polls local memory until the peer's WRITE of v has landed. softiwarp's progress thread (a
 * thread of this process) places incoming data, so yield now and then: on a machine with few
 * cores a pure spin would keep it from running.
 */
static void wait_value(uint64_t v)
{
	double end = now() + TIMEOUT_S;

	for (unsigned spins = 0; buf[0] != v; spins++)
		if (spins % 16 == 15) {
			sched_yield();
			if (now() > end)
				die("round %llu: nothing arrived", (unsigned long long)v);
		}
}

int main(int argc, char **argv)
{
	const char *port = "7471", *bind_addr = NULL, *server = NULL;
	struct rdma_addrinfo hints = {0}, *ai;
	struct rdma_conn_param cp = {0};
	struct rdma_cm_id *listen_id = NULL, *id;
	struct buf_info mine, peer;
	uint32_t rounds = 1000;
	double t0, best = 1e9;
	int c;

	while ((c = getopt(argc, argv, "p:n:b:")) != -1) {
		if (c == 'p')
			port = optarg;
		else if (c == 'n' && atoi(optarg) > 0)
			rounds = (uint32_t)atoi(optarg);
		else if (c == 'b')
			bind_addr = optarg;
		else
			goto usage;
	}
	if (optind + 1 < argc)
		goto usage;
	server = optind < argc ? argv[optind] : NULL;

	ch = rdma_create_event_channel();
	if (!ch || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		die("cannot create an rdma_cm id: %m");
	hints.ai_port_space = RDMA_PS_TCP;
	hints.ai_flags = server ? 0 : RAI_PASSIVE;
	if (rdma_getaddrinfo(server ? server : bind_addr, port, &hints, &ai))
		die("rdma_getaddrinfo %s:%s: %m", server ? server : "*", port);

	if (!server) {
		/* Server: listen, take one connection, reply with our buffer, echo the rounds. */
		listen_id = id;
		if (rdma_bind_addr(listen_id, ai->ai_src_addr) || rdma_listen(listen_id, 1))
			die("cannot listen on port %s: %m", port);
		printf("write_pingpong: listening on port %s\n", port);
		fflush(stdout);
		id = expect(RDMA_CM_EVENT_CONNECT_REQUEST, &peer);
		setup_qp(id);
		mine = my_info(0);
		cp.private_data = &mine;
		cp.private_data_len = sizeof(mine);
		if (rdma_accept(id, &cp))
			die("rdma_accept: %m");
		expect(RDMA_CM_EVENT_ESTABLISHED, NULL);
		for (uint64_t i = 1; i <= peer.rounds; i++) {
			wait_value(i);
			write_value(id, &peer, i);
		}
		printf("write_pingpong: %u rounds served\n", peer.rounds);
	} else {
		/* Client: resolve, connect with our buffer in the request, play the rounds. */
		if (rdma_resolve_addr(id, NULL, ai->ai_dst_addr, TIMEOUT_S * 1000))
			die("rdma_resolve_addr: %m");
		expect(RDMA_CM_EVENT_ADDR_RESOLVED, NULL);
		if (rdma_resolve_route(id, TIMEOUT_S * 1000))
			die("rdma_resolve_route: %m");
		expect(RDMA_CM_EVENT_ROUTE_RESOLVED, NULL);
		setup_qp(id);
		mine = my_info(rounds);
		cp.private_data = &mine;
		cp.private_data_len = sizeof(mine);
		if (rdma_connect(id, &cp))
			die("rdma_connect: %m");
		expect(RDMA_CM_EVENT_ESTABLISHED, &peer);
		t0 = now();
		for (uint64_t i = 1; i <= rounds; i++) {
			double t = now();

			write_value(id, &peer, i);
			wait_value(i);
			t = now() - t;
			best = t < best ? t : best;
		}
		printf("write_pingpong: %u rounds of 8 bytes, round trip average %.2f us, "
		       "best %.2f us\n",
		       rounds, (now() - t0) / rounds * 1e6, best * 1e6);
	}

	/* Orderly teardown: both sides disconnect and see DISCONNECTED. */
	rdma_disconnect(id);
	expect(RDMA_CM_EVENT_DISCONNECTED, NULL);
	rdma_destroy_qp(id);
	ibv_dereg_mr(mr);
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
	rdma_destroy_id(id);
	if (listen_id)
		rdma_destroy_id(listen_id);
	rdma_freeaddrinfo(ai);
	rdma_destroy_event_channel(ch);
	return 0;
usage:
	fprintf(stderr,
		"usage: %s [-p PORT] [-b BIND_ADDR]            (server)\n"
		"       %s [-p PORT] [-n ROUNDS] SERVER_ADDR   (client)\n",
		argv[0], argv[0]);
	return 2;
}
