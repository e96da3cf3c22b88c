// SPDX-License-Identifier: MIT
/*
 * send_recv_server: a SEND/RECV echo server that serves clients one after another, and its
 * client.
 *
 *   send_recv_server [-p PORT] [-b BIND_ADDR] [-k CLIENTS]   server (default: serve forever)
 *   send_recv_server [-p PORT] [-m MESSAGES] SERVER_ADDR     client
 *
 * The client SENDs MESSAGES text messages, checks each echo, then SENDs an empty message that
 * means "goodbye"; the server disconnects and takes the next connect request. Connect
 * requests that arrive meanwhile wait on the listener's event channel, because each accepted
 * connection is moved to an event channel of its own (rdma_migrate_id).
 *
 * Receives are always posted before the SEND they are meant for can arrive: the server posts
 * its receives before it accepts, the client before it connects and, for each echo, before
 * it sends the message. This is not a matter of style on iWARP. InfiniBand has RNR ("receiver
 * not ready") retry: a SEND that finds no posted receive is NAKed and retried later. iWARP has
 * no such thing: the data rides on TCP, which has already acknowledged it, so DDP can only
 * report a fatal error (TERMINATE), and the connection is gone. Flow control of SENDs is the
 * application's job, as here, where the client has one message in flight at a time.
 *
 * Completions are waited for on a completion channel (poll() with a timeout), not by spinning.
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define TIMEOUT_MS 10000
#define MSG_MAX    256
#define NBUF       4     /* server: receive buffers per connection */
#define SEND_FLAG  0x100 /* wr_id of a SEND: SEND_FLAG | buffer index */

struct conn {
	struct rdma_cm_id *id;
	struct ibv_comp_channel *cc;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	char buf[NBUF][MSG_MAX];
};

/* Waits up to timeout_ms (-1: forever) for the next CM event, which must be `want`. */
static struct rdma_cm_id *cm_wait(struct rdma_event_channel *ch, enum rdma_cm_event_type want,
				  int timeout_ms)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLIN};
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;

	if (poll(&p, 1, timeout_ms) != 1 || rdma_get_cm_event(ch, &ev)) {
		fprintf(stderr, "send_recv_server: no %s\n", rdma_event_str(want));
		return NULL;
	}
	id = ev->event == want ? ev->id : NULL;
	if (!id)
		fprintf(stderr, "send_recv_server: expected %s, got %s (status %d)\n",
			rdma_event_str(want), rdma_event_str(ev->event), ev->status);
	rdma_ack_cm_event(ev);
	return id;
}

static int post_recv(struct conn *c, int i)
{
	struct ibv_sge sge = {.addr = (uintptr_t)c->buf[i], .length = MSG_MAX, .lkey = c->mr->lkey};
	struct ibv_recv_wr wr = {.wr_id = (uint64_t)i, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_recv(c->id->qp, &wr, &bad);
}

static int post_send(struct conn *c, int i, uint32_t len)
{
	struct ibv_sge sge = {.addr = (uintptr_t)c->buf[i], .length = len, .lkey = c->mr->lkey};
	struct ibv_send_wr wr = {.wr_id = SEND_FLAG | (uint64_t)i,
				 .sg_list = &sge,
				 .num_sge = len ? 1 : 0, /* an empty SEND needs no SGE */
				 .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	return ibv_post_send(c->id->qp, &wr, &bad);
}

/* The next completion: poll the CQ; when it is empty, sleep on the completion channel. */
static int next_wc(struct conn *c, struct ibv_wc *wc)
{
	struct pollfd p = {.fd = c->cc->fd, .events = POLLIN};
	struct ibv_cq *ev_cq;
	void *ev_ctx;
	int n;

	while ((n = ibv_poll_cq(c->cq, 1, wc)) == 0) {
		/* Armed before this poll, so a completion after it wakes us (no lost wakeup). */
		if (poll(&p, 1, TIMEOUT_MS) != 1 || ibv_get_cq_event(c->cc, &ev_cq, &ev_ctx))
			break;
		ibv_ack_cq_events(ev_cq, 1);
		if (ibv_req_notify_cq(c->cq, 0))
			break;
	}
	if (n == 1 && wc->status == IBV_WC_SUCCESS)
		return 0;
	fprintf(stderr, "send_recv_server: %s\n",
		n == 1 ? ibv_wc_status_str(wc->status) : "no completion (timeout)");
	return -1;
}

/* PD, CQ with completion channel, registered buffers, QP; then nrecv receives are posted. */
static int setup(struct conn *c, int nrecv)
{
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {
		.max_send_wr = NBUF, .max_recv_wr = NBUF, .max_send_sge = 1, .max_recv_sge = 1}};

	c->cc = ibv_create_comp_channel(c->id->verbs);
	c->cq = c->cc ? ibv_create_cq(c->id->verbs, 2 * NBUF, NULL, c->cc, 0) : NULL;
	c->pd = c->cq ? ibv_alloc_pd(c->id->verbs) : NULL;
	c->mr = c->pd ? ibv_reg_mr(c->pd, c->buf, sizeof(c->buf), IBV_ACCESS_LOCAL_WRITE) : NULL;
	if (!c->mr || ibv_req_notify_cq(c->cq, 0))
		return -1;
	qa.send_cq = qa.recv_cq = c->cq;
	if (rdma_create_qp(c->id, c->pd, &qa))
		return -1;
	for (int i = 0; i < nrecv; i++)
		if (post_recv(c, i))
			return -1;
	return 0;
}

/* Frees what setup() made, in reverse order (a failed setup leaves NULLs behind). */
static void teardown(struct conn *c)
{
	if (c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->mr)
		ibv_dereg_mr(c->mr);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	rdma_destroy_id(c->id);
}

/*
 * Echoes until the goodbye. A message is echoed from the buffer it arrived in, which is
 * posted again once that SEND has completed; the other NBUF - 1 receives stay posted.
 */
static int serve(struct conn *c)
{
	struct ibv_wc wc;
	int n = 0;

	while (next_wc(c, &wc) == 0) {
		int i = (int)(wc.wr_id & (SEND_FLAG - 1));

		if (wc.wr_id & SEND_FLAG) {
			if (post_recv(c, i))
				return -1;
		} else if (wc.byte_len == 0) {
			printf("send_recv_server: client done after %d messages\n", n);
			return 0;
		} else if (post_send(c, i, wc.byte_len) == 0) {
			n++;
		} else {
			return -1;
		}
	}
	return -1;
}

static int server(struct rdma_event_channel *ch, int clients)
{
	int failed = 0;

	for (int k = 0; !clients || k < clients; k++) {
		struct conn *c = calloc(1, sizeof(*c));
		struct rdma_event_channel *cch = rdma_create_event_channel();

		if (!c || !cch || !(c->id = cm_wait(ch, RDMA_CM_EVENT_CONNECT_REQUEST, -1)))
			return 1;
		/* This connection's events go to cch from now on; new requests stay on ch. */
		if (rdma_migrate_id(c->id, cch) || setup(c, NBUF) || rdma_accept(c->id, NULL) ||
		    !cm_wait(cch, RDMA_CM_EVENT_ESTABLISHED, TIMEOUT_MS) || serve(c)) {
			fprintf(stderr, "send_recv_server: client %d failed\n", k + 1);
			failed = 1;
		}
		rdma_disconnect(c->id);
		cm_wait(cch, RDMA_CM_EVENT_DISCONNECTED, TIMEOUT_MS);
		teardown(c);
		rdma_destroy_event_channel(cch);
		free(c);
	}
	return failed;
}

static int client(struct rdma_event_channel *ch, struct conn *c, struct rdma_addrinfo *ai,
		  int count)
{
	struct ibv_wc wc;
	char *msg = c->buf[NBUF - 1]; /* SEND source; the echo lands in buf[0] */
	uint32_t got = 0;

	if (rdma_resolve_addr(c->id, NULL, ai->ai_dst_addr, TIMEOUT_MS) ||
	    !cm_wait(ch, RDMA_CM_EVENT_ADDR_RESOLVED, TIMEOUT_MS) ||
	    rdma_resolve_route(c->id, TIMEOUT_MS) ||
	    !cm_wait(ch, RDMA_CM_EVENT_ROUTE_RESOLVED, TIMEOUT_MS))
		return 1;
	/* One receive for the first echo, posted before the connection exists. */
	if (setup(c, 1) || rdma_connect(c->id, NULL) ||
	    !cm_wait(ch, RDMA_CM_EVENT_ESTABLISHED, TIMEOUT_MS))
		return 1;
	printf("send_recv_server: connected on device %s\n",
	       ibv_get_device_name(c->id->verbs->device));
	for (int i = 1; i <= count; i++) {
		int len =
		    snprintf(msg, MSG_MAX, "message %d of %d from pid %d", i, count, (int)getpid());

		if (post_send(c, NBUF - 1, (uint32_t)len + 1))
			return 1;
		/* Two completions, in either order: our SEND and the RECV of its echo. */
		got = 0;
		for (int done = 0; done < 2; done++) {
			if (next_wc(c, &wc))
				return 1;
			if (!(wc.wr_id & SEND_FLAG))
				got = wc.byte_len;
		}
		if (got != (uint32_t)len + 1 || memcmp(c->buf[0], msg, got)) {
			fprintf(stderr, "send_recv_server: bad echo '%.*s'\n", MSG_MAX, c->buf[0]);
			return 1;
		}
		/* The receive for the next echo, before the next SEND. */
		if (i < count && post_recv(c, 0))
			return 1;
	}
	/* Goodbye: an empty SEND. The server then disconnects. */
	if (post_send(c, NBUF - 1, 0) || next_wc(c, &wc) ||
	    !cm_wait(ch, RDMA_CM_EVENT_DISCONNECTED, TIMEOUT_MS))
		return 1;
	printf("send_recv_server: %d messages echoed\n", count);
	return 0;
}

int main(int argc, char **argv)
{
	const char *port = "7472", *bind_addr = NULL, *addr;
	struct rdma_addrinfo hints = {.ai_port_space = RDMA_PS_TCP}, *ai;
	struct rdma_event_channel *ch;
	struct conn *c = calloc(1, sizeof(*c));
	int opt, clients = 0, count = 10, rc;

	while ((opt = getopt(argc, argv, "p:b:k:m:")) != -1) {
		if (opt == 'p')
			port = optarg;
		else if (opt == 'b')
			bind_addr = optarg;
		else if (opt == 'k' && atoi(optarg) >= 0)
			clients = atoi(optarg);
		else if (opt == 'm' && atoi(optarg) > 0)
			count = atoi(optarg);
		else
			goto usage;
	}
	if (optind + 1 < argc)
		goto usage;
	addr = optind < argc ? argv[optind] : NULL;
	hints.ai_flags = addr ? 0 : RAI_PASSIVE;
	ch = rdma_create_event_channel();
	if (!c || !ch || rdma_create_id(ch, &c->id, NULL, RDMA_PS_TCP) ||
	    rdma_getaddrinfo(addr ? addr : bind_addr, port, &hints, &ai)) {
		perror("send_recv_server: setup");
		return 1;
	}
	if (addr) {
		rc = client(ch, c, ai, count);
		teardown(c);
	} else if (rdma_bind_addr(c->id, ai->ai_src_addr) || rdma_listen(c->id, 8)) {
		perror("send_recv_server: listen");
		return 1;
	} else {
		printf("send_recv_server: listening on port %s\n", port);
		fflush(stdout);
		rc = server(ch, clients);
		rdma_destroy_id(c->id);
	}
	rdma_freeaddrinfo(ai);
	rdma_destroy_event_channel(ch);
	free(c);
	return rc;
usage:
	fprintf(stderr,
		"usage: %s [-p PORT] [-b BIND_ADDR] [-k CLIENTS]   (server)\n"
		"       %s [-p PORT] [-m MESSAGES] SERVER_ADDR     (client)\n",
		argv[0], argv[0]);
	return 2;
}
