// SPDX-License-Identifier: MIT
/*
 * The other process of the two-process CM tests: a server that serves N connections.
 *
 *	cm_peer server IP N
 *
 * Listens on IP (port chosen by the system), prints "PORT <n>" on stdout, then for each of N
 * connections: takes the CONNECT_REQUEST, accepts with private data "pong:" + the request's
 * private data, waits for ESTABLISHED and for the client's disconnect. Exits 0 when all N went
 * through, 1 on the first surprise, 2 on a usage error.
 */
#include <stdlib.h>

#include "cm_util.h"

/*
 * Events of different connections arrive in any order (the next client's request may come
 * before the engine noticed the previous one's close), so this is an event loop, not a script.
 */
static int serve(const char *ip, int n)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct cmt_node nodes[64];
	struct rdma_cm_id *listen;
	int established = 0, disconnected = 0, requests = 0;
	uint16_t port;

	if (!ch || n < 1 || n > 64)
		return 1;
	listen = cmt_listen(ch, ip, &port);
	if (!listen)
		return 1;
	printf("PORT %u\n", port);
	fflush(stdout);
	memset(nodes, 0, sizeof(nodes));

	while (disconnected < n) {
		struct rdma_cm_event *e = cmt_get_event(ch, 10000);
		struct rdma_conn_param p;
		struct cmt_node *node;
		char reply[256];
		int len;

		if (!e)
			return 1;
		switch (e->event) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			if (requests == n || e->listen_id != listen || e->id == listen) {
				fprintf(stderr, "cm_peer: unexpected connection request\n");
				return 1;
			}
			node = &nodes[requests++];
			len = snprintf(reply, sizeof(reply), "pong:%.*s",
				       e->param.conn.private_data_len,
				       (const char *)e->param.conn.private_data);
			if (cmt_node_qp(node, e->id)) {
				fprintf(stderr, "cm_peer: QP: %s\n", strerror(errno));
				return 1;
			}
			memset(&p, 0, sizeof(p));
			p.private_data = reply;
			p.private_data_len = (uint8_t)len;
			p.responder_resources = 1;
			p.initiator_depth = 1;
			if (rdma_accept(node->id, &p)) {
				fprintf(stderr, "cm_peer: rdma_accept: %s\n", strerror(errno));
				return 1;
			}
			break;
		case RDMA_CM_EVENT_ESTABLISHED:
			established++;
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			disconnected++;
			break;
		default:
			fprintf(stderr, "cm_peer: unexpected %s\n", rdma_event_str(e->event));
			return 1;
		}
		rdma_ack_cm_event(e);
	}
	for (int i = 0; i < requests; i++)
		cmt_node_free(&nodes[i]);
	rdma_destroy_id(listen);
	rdma_destroy_event_channel(ch);
	if (established != n) {
		fprintf(stderr, "cm_peer: %d of %d connections established\n", established, n);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 || strcmp(argv[1], "server")) {
		fprintf(stderr, "usage: %s server IP N\n", argv[0]);
		return 2;
	}
	return serve(argv[2], atoi(argv[3]));
}
