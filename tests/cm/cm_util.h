/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the connection manager tests: event waits with a deadline, a minimal QP
 * (the CM needs one to connect or accept; no data moves here), addresses.
 */
#ifndef SIW_CM_UTIL_H
#define SIW_CM_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A QP with its own PD and CQ on id->verbs. */
struct cmt_node {
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
};

static inline uint64_t cmt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Next event on ch within timeout_ms, or NULL (and a message saying why). */
static inline struct rdma_cm_event *cmt_get_event(struct rdma_event_channel *ch, int timeout_ms)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLIN};
	struct rdma_cm_event *e = NULL;
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		fprintf(stderr, "  no CM event within %d ms\n", timeout_ms);
		return NULL;
	}
	if (rdma_get_cm_event(ch, &e)) {
		fprintf(stderr, "  rdma_get_cm_event: %s\n", strerror(errno));
		return NULL;
	}
	return e;
}

/* Next event, which must be `type`; NULL (after acking a wrong one) otherwise. */
static inline struct rdma_cm_event *cmt_expect(struct rdma_event_channel *ch,
					       enum rdma_cm_event_type type, int timeout_ms)
{
	struct rdma_cm_event *e = cmt_get_event(ch, timeout_ms);

	if (e && e->event != type) {
		fprintf(stderr, "  expected %s, got %s (status %d)\n", rdma_event_str(type),
			rdma_event_str(e->event), e->status);
		rdma_ack_cm_event(e);
		return NULL;
	}
	return e;
}

/* Waits for `type` and acks it; returns whether it came. */
static inline bool cmt_expect_ack(struct rdma_event_channel *ch, enum rdma_cm_event_type type,
				  int timeout_ms)
{
	struct rdma_cm_event *e = cmt_expect(ch, type, timeout_ms);

	if (!e)
		return false;
	rdma_ack_cm_event(e);
	return true;
}

static inline int cmt_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (void *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in *s4 = (void *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
	}
}

/* PD, CQ and an RC QP on the id's device. */
static inline int cmt_node_qp(struct cmt_node *n, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr a;

	memset(n, 0, sizeof(*n));
	n->id = id;
	n->pd = ibv_alloc_pd(id->verbs);
	if (!n->pd)
		return -1;
	n->cq = ibv_create_cq(id->verbs, 16, NULL, NULL, 0);
	if (!n->cq)
		return -1;
	memset(&a, 0, sizeof(a));
	a.send_cq = n->cq;
	a.recv_cq = n->cq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = 4;
	a.cap.max_recv_wr = 4;
	a.cap.max_send_sge = 1;
	a.cap.max_recv_sge = 1;
	return rdma_create_qp(id, n->pd, &a);
}

/* Destroys the QP, CQ, PD and the id. */
static inline void cmt_node_free(struct cmt_node *n)
{
	if (n->id && n->id->qp)
		rdma_destroy_qp(n->id);
	if (n->cq)
		ibv_destroy_cq(n->cq);
	if (n->pd)
		ibv_dealloc_pd(n->pd);
	if (n->id)
		rdma_destroy_id(n->id);
	memset(n, 0, sizeof(*n));
}

/* A listener on ip, port chosen by the system; returns the id, the port in *port. */
static inline struct rdma_cm_id *cmt_listen(struct rdma_event_channel *ch, const char *ip,
					    uint16_t *port)
{
	struct sockaddr_storage ss;
	struct rdma_cm_id *id;

	if (cmt_addr(ip, 0, &ss) || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		return NULL;
	if (rdma_bind_addr(id, (struct sockaddr *)&ss) || rdma_listen(id, 16)) {
		fprintf(stderr, "  listen on %s: %s\n", ip, strerror(errno));
		rdma_destroy_id(id);
		return NULL;
	}
	*port = ntohs(rdma_get_src_port(id));
	return id;
}

/*
 * Client side up to rdma_connect: id on ch, address and route resolved, a QP, connect with
 * param. Returns 0 or -1 (with a message).
 */
static inline int cmt_client_connect(struct cmt_node *n, struct rdma_event_channel *ch,
				     const char *ip, uint16_t port, struct rdma_conn_param *param)
{
	struct sockaddr_storage dst;
	struct rdma_cm_id *id;

	memset(n, 0, sizeof(*n));
	if (cmt_addr(ip, port, &dst) || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP))
		return -1;
	n->id = id;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000) ||
	    !cmt_expect_ack(ch, RDMA_CM_EVENT_ADDR_RESOLVED, 2000))
		return -1;
	if (rdma_resolve_route(id, 2000) || !cmt_expect_ack(ch, RDMA_CM_EVENT_ROUTE_RESOLVED, 2000))
		return -1;
	if (cmt_node_qp(n, id)) {
		fprintf(stderr, "  client QP: %s\n", strerror(errno));
		return -1;
	}
	if (rdma_connect(id, param)) {
		fprintf(stderr, "  rdma_connect: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

#endif
