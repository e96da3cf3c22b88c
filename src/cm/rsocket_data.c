// SPDX-License-Identifier: MIT
/*
 * rsockets: a connection's verbs resources and data path, i.e. the wire protocol described in
 * rsocket_int.h (ring buffer written with RDMA WRITE, inline SEND messages with credits).
 *
 * Every function here runs with the rsocket's lock held; only rs_wait releases it (while it
 * sleeps in poll(2)).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "rsocket_int.h"

/*
 * wr_id of our work requests. Receives: bit 63 and the slot index. Sends: the number of send
 * queue entries the completion accounts for (bits 48-62) and the staging bytes it frees (bits
 * 0-47); an unsignaled WRITE carries 0 and the SEND after it accounts for both.
 */
#define RS_WRID_RECV (1ull << 63)

static uint64_t wrid_send(uint32_t nwr, uint64_t staged)
{
	return ((uint64_t)nwr << 48) | staged;
}

static uint32_t wrid_nwr(uint64_t wr_id)
{
	return (uint32_t)((wr_id >> 48) & 0x7FFF);
}

static uint64_t wrid_staged(uint64_t wr_id)
{
	return wr_id & ((1ull << 48) - 1);
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)get16(p) << 16) | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

static uint32_t min32(uint64_t a, uint64_t b)
{
	return (uint32_t)(a < b ? a : b);
}

uint64_t rs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A position in an iovec: the application's side of a copy. */
struct rs_cursor {
	const struct iovec *iov;
	int cnt, i;
	size_t off;
};

/* Copies n bytes from the application's buffers to dst. */
static void cur_take(struct rs_cursor *c, void *dst, size_t n)
{
	uint8_t *d = dst;

	while (n) {
		const struct iovec *v = &c->iov[c->i];
		size_t k = v->iov_len - c->off;

		if (k > n)
			k = n;
		memcpy(d, (const uint8_t *)v->iov_base + c->off, k);
		d += k;
		n -= k;
		c->off += k;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

/* Copies n bytes from src to the application's buffers. */
static void cur_give(struct rs_cursor *c, const void *src, size_t n)
{
	const uint8_t *s = src;

	while (n) {
		const struct iovec *v = &c->iov[c->i];
		size_t k = v->iov_len - c->off;

		if (k > n)
			k = n;
		memcpy((uint8_t *)v->iov_base + c->off, s, k);
		s += k;
		n -= k;
		c->off += k;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

static void cur_init(struct rs_cursor *c, const struct iovec *iov, int cnt)
{
	c->iov = iov;
	c->cnt = cnt;
	c->i = 0;
	c->off = 0;
	/* Empty buffers at the start would make cur_* look at them forever. */
	while (c->i < cnt && !iov[c->i].iov_len)
		c->i++;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;

	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* ---- resources ------------------------------------------------------------------------------- */

static void *rs_alloc_buf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len))
		return NULL;
	memset(p, 0, len);
	return p;
}

static int rs_post_recvs(struct rsock *rs, const uint32_t *slots, int n)
{
	struct ibv_recv_wr wr[32], *bad = NULL;
	struct ibv_sge sge[32];

	for (int i = 0; i < n; i++) {
		sge[i].addr = (uintptr_t)(rs->mbuf + (size_t)slots[i] * RS_RECV_SLOT);
		sge[i].length = RS_RECV_SLOT;
		sge[i].lkey = rs->mmr->lkey;
		wr[i].wr_id = RS_WRID_RECV | slots[i];
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
	}
	return ibv_post_recv(rs->id->qp, wr, &bad);
}

int rs_create_resources(struct rsock *rs)
{
	struct rdma_cm_id *id = rs->id;
	struct ibv_qp_init_attr qa;
	uint32_t slots[32];
	int e, flags;

	if (!id->verbs || !id->pd)
		return ENODEV;
	rs->qp_inline = rs->sq_inline > RS_RECV_SLOT ? rs->sq_inline : RS_RECV_SLOT;
	rs->rbuf = rs_alloc_buf(rs->rbuf_size);
	rs->sbuf = rs_alloc_buf(rs->sbuf_size);
	rs->mbuf = rs_alloc_buf((size_t)rs->rq_size * RS_RECV_SLOT);
	if (!rs->rbuf || !rs->sbuf || !rs->mbuf)
		return ENOMEM;
	rs->rmr = ibv_reg_mr(id->pd, rs->rbuf, rs->rbuf_size,
			     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	rs->smr = ibv_reg_mr(id->pd, rs->sbuf, rs->sbuf_size, IBV_ACCESS_LOCAL_WRITE);
	rs->mmr = ibv_reg_mr(id->pd, rs->mbuf, (size_t)rs->rq_size * RS_RECV_SLOT,
			     IBV_ACCESS_LOCAL_WRITE);
	if (!rs->rmr || !rs->smr || !rs->mmr)
		return errno ? errno : ENOMEM;

	rs->cch = ibv_create_comp_channel(id->verbs);
	if (!rs->cch)
		return errno ? errno : ENOMEM;
	/* We never block in ibv_get_cq_event: waits are poll(2) on the fd. */
	flags = fcntl(rs->cch->fd, F_GETFL);
	if (flags < 0 || fcntl(rs->cch->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return errno;
	rs->cq = ibv_create_cq(id->verbs, rs->sq_size + rs->rq_size + 1, rs, rs->cch, 0);
	if (!rs->cq)
		return errno ? errno : ENOMEM;

	memset(&qa, 0, sizeof(qa));
	qa.qp_context = rs;
	qa.send_cq = rs->cq;
	qa.recv_cq = rs->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = rs->sq_size;
	qa.cap.max_recv_wr = rs->rq_size;
	qa.cap.max_send_sge = 2;
	qa.cap.max_recv_sge = 1;
	qa.cap.max_inline_data = rs->qp_inline;
	qa.sq_sig_all = 0;
	if (rdma_create_qp(id, NULL, &qa))
		return errno ? errno : ENOMEM;
	rs->sq_avail = rs->sq_size;

	/* Every receive is posted before the connection starts: the peer may send at once. */
	for (uint32_t i = 0; i < rs->rq_size;) {
		int n = 0;

		while (n < 32 && i < rs->rq_size)
			slots[n++] = i++;
		e = rs_post_recvs(rs, slots, n);
		if (e)
			return e;
	}
	return 0;
}

void rs_destroy_resources(struct rsock *rs)
{
	if (rs->id && rs->id->qp)
		rdma_destroy_qp(rs->id);
	if (rs->cq) {
		rs_drain_cq_events(rs);
		ibv_destroy_cq(rs->cq);
		rs->cq = NULL;
	}
	if (rs->cch) {
		ibv_destroy_comp_channel(rs->cch);
		rs->cch = NULL;
	}
	while (rs->lmaps) {
		struct rs_lmap *m = rs->lmaps;

		rs->lmaps = m->next;
		ibv_dereg_mr(m->mr);
		free(m);
	}
	while (rs->ctl_head) {
		struct rs_ctl *c = rs->ctl_head;

		rs->ctl_head = c->next;
		free(c);
	}
	rs->ctl_tail = NULL;
	if (rs->rmr)
		ibv_dereg_mr(rs->rmr);
	if (rs->smr)
		ibv_dereg_mr(rs->smr);
	if (rs->mmr)
		ibv_dereg_mr(rs->mmr);
	rs->rmr = rs->smr = rs->mmr = NULL;
	free(rs->rbuf);
	free(rs->sbuf);
	free(rs->mbuf);
	free(rs->rmaps);
	rs->rbuf = rs->sbuf = rs->mbuf = NULL;
	rs->rmaps = NULL;
}

void rs_conn_data(const struct rsock *rs, uint8_t out[RS_CONN_LEN])
{
	memset(out, 0, RS_CONN_LEN);
	put32(out, RS_MAGIC);
	out[4] = RS_VERSION;
	put16(out + 6, rs->rq_size);
	put32(out + 8, rs->rmr->rkey);
	put32(out + 12, rs->rbuf_size);
	put64(out + 16, (uintptr_t)rs->rbuf);
	put16(out + 24, rs->iomap_size);
}

int rs_conn_peer(struct rsock *rs, const void *pd, size_t len)
{
	const uint8_t *p = pd;
	uint16_t credits;
	uint32_t size;

	if (!p || len < RS_CONN_LEN || get32(p) != RS_MAGIC || p[4] != RS_VERSION)
		return ECONNREFUSED;
	credits = get16(p + 6);
	size = get32(p + 12);
	if (credits < 2 || size == 0)
		return ECONNREFUSED;
	rs->peer_rbuf_rkey = get32(p + 8);
	rs->peer_rbuf_size = size;
	rs->peer_rbuf_addr = get64(p + 16);
	rs->peer_iomap_size = get16(p + 24);
	/* Added, not set: messages of the peer may have been processed already (see rs_progress).
	 */
	rs->peer_space += size;
	rs->peer_credits += credits;
	rs->peer_known = true;
	return 0;
}

/* ---- messages -------------------------------------------------------------------------------- */

/* The connection cannot carry anything any more (flushed, broken, protocol error). */
static void rs_set_dead(struct rsock *rs, int err)
{
	if (err && !rs->err)
		rs->err = err;
	rs->qp_dead = true;
}

static void rs_protocol_error(struct rsock *rs, const char *what)
{
	char a[CM_ADDRSTRLEN];

	cm_err("rsocket %d: protocol error from %s: %s; closing the connection", rs->fd,
	       cm_addr_str(rdma_get_peer_addr(rs->id), a), what);
	rs_set_dead(rs, EPROTO);
	rdma_disconnect(rs->id);
}

/*
 * Posts a message (after write, if given: its WRITE goes first, in one post). It returns
 * every credit owed to the peer. Needs a message credit and the send queue entries.
 */
static int rs_post_msg(struct rsock *rs, uint8_t op, uint8_t flags, uint64_t len, uint64_t addr,
		       uint64_t offset, uint32_t rkey, struct ibv_send_wr *write, uint64_t staged)
{
	uint8_t m[RS_MSG_IOMAP_LEN];
	uint32_t mc = min32(rs->ret_msgs, 0xFFFF);
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad = NULL;
	uint32_t nwr = write ? 2 : 1;
	int e;

	memset(m, 0, sizeof(m));
	m[0] = op;
	m[1] = flags;
	put16(m + 2, (uint16_t)mc);
	put32(m + 4, rs->ret_bytes);
	put64(m + 8, len);
	put64(m + 16, addr);
	put64(m + 24, offset);
	put32(m + 32, rkey);
	sge.addr = (uintptr_t)m;
	sge.length = op == RS_OP_IOMAP || op == RS_OP_IOUNMAP ? RS_MSG_IOMAP_LEN : RS_MSG_HDR_LEN;
	sge.lkey = 0;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wrid_send(nwr, staged);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = IBV_WR_SEND;
	wr.send_flags = IBV_SEND_INLINE | IBV_SEND_SIGNALED;
	if (write)
		write->next = &wr;
	e = ibv_post_send(rs->id->qp, write ? write : &wr, &bad);
	if (e) {
		cm_err("rsocket %d: posting a message failed: %s", rs->fd, strerror(e));
		rs_set_dead(rs, e);
		return e;
	}
	rs->ret_msgs -= mc;
	rs->ret_bytes = 0;
	rs->peer_credits--;
	rs->sq_avail -= nwr;
	rs->sinflight += (uint32_t)staged;
	return 0;
}

static bool rs_can_post(const struct rsock *rs)
{
	return rs->state == RS_CONNECTED && !rs->qp_dead && !rs->disconnected && rs->peer_known &&
	       !(rs->fin_sent & RS_FIN_RD);
}

/* IOMAP/IOUNMAP messages that waited for a credit. */
static void rs_flush_ctl(struct rsock *rs)
{
	while (rs->ctl_head && rs_can_post(rs) && rs->peer_credits >= 2 && rs->sq_avail >= 1) {
		struct rs_ctl *c = rs->ctl_head;

		if (rs_post_msg(rs, c->op, 0, c->len, c->addr, c->offset, c->rkey, NULL, 0))
			return;
		rs->ctl_head = c->next;
		if (!rs->ctl_head)
			rs->ctl_tail = NULL;
		free(c);
	}
}

/*
 * A CREDIT message when enough is owed. The last message credit may carry only a return of
 * message credits (so the peer can always answer; see rsocket_int.h).
 */
static void rs_maybe_credit(struct rsock *rs)
{
	bool msgs = rs->ret_msgs >= rs->rq_size / 2u;
	bool bytes = rs->ret_bytes >= rs->rbuf_size / 4u;

	if (!rs_can_post(rs) || rs->sq_avail < 1 || (!msgs && !bytes))
		return;
	if (rs->peer_credits >= 2 || (msgs && rs->peer_credits >= 1))
		rs_post_msg(rs, RS_OP_CREDIT, 0, 0, 0, 0, 0, NULL, 0);
}

static void rs_rmap_add(struct rsock *rs, const uint8_t *m)
{
	if (!rs->rmaps && rs->iomap_size)
		rs->rmaps = calloc(rs->iomap_size, sizeof(*rs->rmaps));
	for (unsigned i = 0; rs->rmaps && i < rs->iomap_size; i++) {
		struct rs_rmap *r = &rs->rmaps[i];

		if (r->used)
			continue;
		r->used = true;
		r->len = get64(m + 8);
		r->addr = get64(m + 16);
		r->offset = get64(m + 24);
		r->rkey = get32(m + 32);
		return;
	}
	rs_protocol_error(rs, "more riomap windows than RDMA_IOMAPSIZE allows");
}

static void rs_rmap_del(struct rsock *rs, uint64_t offset)
{
	for (unsigned i = 0; rs->rmaps && i < rs->iomap_size; i++) {
		if (rs->rmaps[i].used && rs->rmaps[i].offset == offset) {
			rs->rmaps[i].used = false;
			return;
		}
	}
}

static void rs_handle_msg(struct rsock *rs, const uint8_t *m, uint32_t len)
{
	uint64_t n;

	if (len < RS_MSG_HDR_LEN) {
		rs_protocol_error(rs, "short message");
		return;
	}
	rs->peer_credits += get16(m + 2);
	rs->peer_space += get32(m + 4);
	if (rs->peer_known && rs->peer_space > rs->peer_rbuf_size) {
		rs_protocol_error(rs, "more ring space returned than there is");
		return;
	}
	switch (m[0]) {
	case RS_OP_DATA:
		n = get64(m + 8);
		/* Unread and consumed-but-unreturned bytes are what the sender cannot have. */
		if (n > rs->rbuf_size - rs->runread - rs->ret_bytes) {
			rs_protocol_error(rs, "data beyond the ring space granted");
			return;
		}
		if (rs->rd_shut) {
			/* Nobody will read it: consume at once (and let the peer go on). */
			rs->rtail = (uint32_t)((rs->rtail + n) % rs->rbuf_size);
			rs->ret_bytes += (uint32_t)n;
		} else {
			rs->runread += (uint32_t)n;
		}
		break;
	case RS_OP_CREDIT:
		break;
	case RS_OP_IOMAP:
	case RS_OP_IOUNMAP:
		if (len < RS_MSG_IOMAP_LEN) {
			rs_protocol_error(rs, "short riomap message");
			return;
		}
		if (m[0] == RS_OP_IOMAP)
			rs_rmap_add(rs, m);
		else
			rs_rmap_del(rs, get64(m + 24));
		break;
	case RS_OP_FIN:
		rs->fin_rcvd |= m[1] & (RS_FIN_WR | RS_FIN_RD);
		break;
	default:
		rs_protocol_error(rs, "unknown message");
		break;
	}
}

/* ---- completions and events ------------------------------------------------------------------ */

static void rs_poll_cq(struct rsock *rs)
{
	struct ibv_wc wc[32];
	uint32_t slots[32];
	int n;

	do {
		int nr = 0;

		n = ibv_poll_cq(rs->cq, 32, wc);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			const struct ibv_wc *w = &wc[i];

			if (w->wr_id & RS_WRID_RECV) {
				uint32_t slot = (uint32_t)w->wr_id;

				if (w->status != IBV_WC_SUCCESS) {
					rs_set_dead(
					    rs, w->status == IBV_WC_WR_FLUSH_ERR ? 0 : ECONNRESET);
					continue;
				}
				if (rs->qp_dead)
					continue;
				rs_handle_msg(rs, rs->mbuf + (size_t)slot * RS_RECV_SLOT,
					      w->byte_len);
				slots[nr++] = slot;
				continue;
			}
			rs->sq_avail += wrid_nwr(w->wr_id);
			rs->sinflight -= (uint32_t)wrid_staged(w->wr_id);
			if (w->status != IBV_WC_SUCCESS)
				rs_set_dead(rs, w->status == IBV_WC_WR_FLUSH_ERR ? 0 : ECONNRESET);
		}
		if (nr && !rs->qp_dead) {
			if (rs_post_recvs(rs, slots, nr) == 0)
				rs->ret_msgs += (uint32_t)nr;
			else
				rs_set_dead(rs, rs->disconnected ? 0 : ECONNRESET);
		}
	} while (n == 32);
}

static void rs_fail_connect(struct rsock *rs, int err)
{
	if (rs->state != RS_CONNECTING && rs->state != RS_ACCEPTING)
		return;
	rs->state = RS_FAILED;
	rs->err = err;
	rs->qp_dead = true;
}

/*
 * Whether our channel holds an event: a look at the queue (this library's own channel), which
 * spares busy callers the system call rdma_get_cm_event makes to find it empty.
 */
static bool rs_cm_pending(struct rsock *rs)
{
	struct cm_channel *ch = cm_channel(rs->ch);
	bool pending;

	pthread_mutex_lock(&ch->lock);
	pending = ch->head != NULL;
	pthread_mutex_unlock(&ch->lock);
	return pending;
}

static void rs_cm_events(struct rsock *rs)
{
	struct rdma_cm_event *ev;

	while (rs_cm_pending(rs) && rdma_get_cm_event(rs->ch, &ev) == 0) {
		enum rdma_cm_event_type type = ev->event;
		int st = ev->status < 0 ? -ev->status : ev->status;
		uint8_t pd[RS_CONN_LEN];
		size_t pdlen = 0;

		if (ev->param.conn.private_data && ev->param.conn.private_data_len >= RS_CONN_LEN) {
			pdlen = RS_CONN_LEN;
			memcpy(pd, ev->param.conn.private_data, pdlen);
		}
		rdma_ack_cm_event(ev);
		cm_dbg("rsocket %d: %s (status %d)", rs->fd, rdma_event_str(type), st);
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			if (rs->state == RS_CONNECTING) {
				int e = rs_conn_peer(rs, pdlen ? pd : NULL, pdlen);

				if (e) {
					cm_err("rsocket %d: the server is not a softiwarp rsocket "
					       "(no rsocket connection data in its reply)",
					       rs->fd);
					rs_fail_connect(rs, e);
					rdma_disconnect(rs->id);
					break;
				}
				rs->state = RS_CONNECTED;
			} else if (rs->state == RS_ACCEPTING) {
				rs->state = RS_CONNECTED;
			}
			break;
		case RDMA_CM_EVENT_REJECTED:
			rs_fail_connect(rs, ECONNREFUSED);
			break;
		case RDMA_CM_EVENT_UNREACHABLE:
			rs_fail_connect(rs, st ? st : ETIMEDOUT);
			break;
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_ADDR_ERROR:
		case RDMA_CM_EVENT_ROUTE_ERROR:
			rs_fail_connect(rs, st ? st : ECONNRESET);
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			rs_fail_connect(rs, ECONNRESET);
			rs->disconnected = true;
			break;
		default:
			break;
		}
	}
}

void rs_arm(struct rsock *rs)
{
	if (rs->cq && !rs->armed && ibv_req_notify_cq(rs->cq, 0) == 0)
		rs->armed = true;
}

void rs_drain_cq_events(struct rsock *rs)
{
	struct ibv_cq *cq;
	void *ctx;

	while (rs->cch && ibv_get_cq_event(rs->cch, &cq, &ctx) == 0) {
		ibv_ack_cq_events(cq, 1);
		rs->armed = false;
	}
}

void rs_progress(struct rsock *rs)
{
	if (rs->state == RS_LISTENING)
		return;
	/* CM first: ESTABLISHED brings the peer's ring before its first messages count. */
	rs_cm_events(rs);
	if (rs->cq)
		rs_poll_cq(rs);
	if (rs->state == RS_CONNECTED) {
		rs_flush_ctl(rs);
		rs_maybe_credit(rs);
	}
}

int rs_wait(struct rsock *rs, bool (*cond)(struct rsock *rs), int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ? rs_now_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		struct pollfd p[2];
		int n = 0, t = 100, r;

		rs_progress(rs);
		if (cond(rs))
			return 0;
		if (deadline) {
			uint64_t now = rs_now_ms();

			if (now >= deadline)
				return ETIMEDOUT;
			if (deadline - now < (uint64_t)t)
				t = (int)(deadline - now);
		}
		if (rs->poller) {
			/*
			 * Another thread sleeps on the descriptors: wait for it to report what it
			 * saw (it broadcasts when it wakes up), then look again.
			 */
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += (long)t * 1000000;
			ts.tv_sec += ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&rs->cv, &rs->lock, &ts);
			continue;
		}
		if (rs->cq && !rs->armed) {
			rs_arm(rs);
			rs_progress(rs); /* what completed before the CQ was armed */
			if (cond(rs))
				return 0;
		}
		p[n].fd = rs->fd;
		p[n++].events = POLLIN;
		if (rs->cch) {
			p[n].fd = rs->cch->fd;
			p[n++].events = POLLIN;
		}
		/* The bounded sleep is a safety net for rpoll in another thread taking our event.
		 */
		rs->poller = true;
		pthread_mutex_unlock(&rs->lock);
		r = poll(p, (nfds_t)n, t);
		pthread_mutex_lock(&rs->lock);
		rs->poller = false;
		if (r > 0 && rs->cch && p[n - 1].revents)
			rs_drain_cq_events(rs);
		pthread_cond_broadcast(&rs->cv);
		if (r < 0 && errno != EINTR)
			return errno;
	}
}

/* ---- readiness ------------------------------------------------------------------------------- */

static bool rs_broken(const struct rsock *rs)
{
	return rs->qp_dead || rs->disconnected;
}

static bool rs_rd_eof(const struct rsock *rs)
{
	return rs->rd_shut || (rs->fin_rcvd & RS_FIN_WR) || rs_broken(rs);
}

/* Why a write cannot go on, or 0. */
static int rs_write_error(const struct rsock *rs)
{
	if (rs->wr_shut || (rs->fin_sent & RS_FIN_WR))
		return EPIPE;
	if (rs->fin_rcvd & RS_FIN_RD)
		return EPIPE; /* the peer closed: as TCP's reset after close */
	if (rs_broken(rs))
		return rs->err && rs->err != EPIPE ? rs->err : ECONNRESET;
	return 0;
}

/* How much of want can go into one stream chunk now (0: nothing). */
static uint32_t rs_chunk(const struct rsock *rs, size_t want)
{
	uint32_t n, free_s;

	if (!rs->peer_known || rs->peer_credits < 2 || rs->sq_avail < 2 || rs->ctl_head)
		return 0;
	n = min32(want, RS_MAX_CHUNK);
	n = min32(n, rs->peer_space);
	n = min32(n, rs->peer_rbuf_size - rs->peer_head);
	if (n <= rs->sq_inline)
		return n;
	free_s = rs->sbuf_size - rs->sinflight;
	if (free_s >= n)
		return n;
	/* Little staging room left: wait for completions rather than send crumbs. */
	if (free_s >= RS_SNDLOWAT || free_s == rs->sbuf_size)
		return free_s;
	return rs->sq_inline ? min32(n, rs->sq_inline) : 0;
}

bool rs_readable(struct rsock *rs)
{
	if (rs->state == RS_FAILED)
		return true;
	if (rs->state != RS_CONNECTED)
		return false;
	return rs->runread > 0 || rs_rd_eof(rs) || rs->err;
}

bool rs_writable(struct rsock *rs)
{
	if (rs->state == RS_FAILED)
		return true;
	if (rs->state != RS_CONNECTED)
		return false;
	return rs_write_error(rs) || rs_chunk(rs, RS_SNDLOWAT) > 0;
}

short rs_events(struct rsock *rs)
{
	short ev = 0;

	switch (rs->state) {
	case RS_IDLE:
	case RS_BOUND:
		return POLLOUT | POLLHUP; /* as an unconnected TCP socket */
	case RS_FAILED:
		return POLLIN | POLLOUT | POLLERR | POLLHUP;
	case RS_CONNECTED:
		break;
	default:
		return 0;
	}
	if (rs_readable(rs))
		ev |= POLLIN;
	if ((rs->fin_rcvd & RS_FIN_WR) || rs_broken(rs))
		ev |= POLLRDHUP;
	if (rs_writable(rs))
		ev |= POLLOUT;
	/* Both directions closed, or the connection is gone without the peer's FIN (a reset). */
	if (((rs->fin_rcvd & RS_FIN_WR) && (rs->fin_sent & RS_FIN_WR)) ||
	    (rs_broken(rs) && !(rs->fin_rcvd & RS_FIN_WR)))
		ev |= POLLHUP;
	if (rs->err)
		ev |= POLLERR;
	return ev;
}

static bool rs_conn_settled(struct rsock *rs)
{
	return rs->state != RS_CONNECTING && rs->state != RS_ACCEPTING;
}

/* Waits for a connection in progress; 0 when connected, else an errno. */
static int rs_ready_for_io(struct rsock *rs, bool nb)
{
	int e;

	if (rs->state == RS_CONNECTING || rs->state == RS_ACCEPTING) {
		rs_progress(rs);
		if (!rs_conn_settled(rs)) {
			if (nb)
				return EAGAIN;
			e = rs_wait(rs, rs_conn_settled, -1);
			if (e)
				return e;
		}
	}
	if (rs->state == RS_CONNECTED)
		return 0;
	if (rs->state == RS_FAILED)
		return rs->err ? rs->err : ENOTCONN;
	return ENOTCONN;
}

/* ---- stream data ----------------------------------------------------------------------------- */

/* Copies n bytes of c into the staging ring; fills sg (1 or 2 entries). */
static int rs_stage(struct rsock *rs, struct rs_cursor *c, uint32_t n, struct ibv_sge *sg)
{
	uint32_t first = min32(n, rs->sbuf_size - rs->shead);
	int nsg = 1;

	cur_take(c, rs->sbuf + rs->shead, first);
	sg[0].addr = (uintptr_t)(rs->sbuf + rs->shead);
	sg[0].length = first;
	sg[0].lkey = rs->smr->lkey;
	if (first < n) {
		cur_take(c, rs->sbuf, n - first);
		sg[1].addr = (uintptr_t)rs->sbuf;
		sg[1].length = n - first;
		sg[1].lkey = rs->smr->lkey;
		nsg = 2;
	}
	rs->shead = (rs->shead + n) % rs->sbuf_size;
	return nsg;
}

/* The WRITE of n bytes from c to raddr/rkey: inline or staged. Returns the staged bytes. */
static uint32_t rs_prep_write(struct rsock *rs, struct ibv_send_wr *w, struct ibv_sge *sg,
			      uint8_t *tmp, struct rs_cursor *c, uint32_t n, uint64_t raddr,
			      uint32_t rkey)
{
	memset(w, 0, sizeof(*w));
	w->opcode = IBV_WR_RDMA_WRITE;
	w->wr.rdma.remote_addr = raddr;
	w->wr.rdma.rkey = rkey;
	w->sg_list = sg;
	if (n <= rs->sq_inline) {
		cur_take(c, tmp, n);
		sg[0].addr = (uintptr_t)tmp;
		sg[0].length = n;
		sg[0].lkey = 0;
		w->num_sge = 1;
		w->send_flags = IBV_SEND_INLINE;
		return 0;
	}
	w->num_sge = rs_stage(rs, c, n, sg);
	return n;
}

ssize_t rs_send_locked(struct rsock *rs, const struct iovec *iov, int iovcnt, int flags)
{
	bool nb = rs->nonblock || (flags & MSG_DONTWAIT);
	size_t total = iov_total(iov, iovcnt), done = 0;
	struct rs_cursor c;
	int e;

	e = rs_ready_for_io(rs, nb);
	if (e)
		return cm_seterr(e);
	cur_init(&c, iov, iovcnt);
	for (;;) {
		uint8_t tmp[ENG_MAX_INLINE];
		struct ibv_send_wr w;
		struct ibv_sge sg[2];
		uint32_t n, staged;

		rs_progress(rs);
		e = rs_write_error(rs);
		if (e || done == total)
			break;
		n = rs_chunk(rs, total - done);
		if (n) {
			staged =
			    rs_prep_write(rs, &w, sg, tmp, &c, n,
					  rs->peer_rbuf_addr + rs->peer_head, rs->peer_rbuf_rkey);
			e = rs_post_msg(rs, RS_OP_DATA, 0, n, 0, 0, 0, &w, staged);
			if (e)
				break;
			rs->peer_head = (rs->peer_head + n) % rs->peer_rbuf_size;
			rs->peer_space -= n;
			done += n;
			continue;
		}
		if (nb) {
			e = EAGAIN;
			break;
		}
		e = rs_wait(rs, rs_writable, -1);
		if (e)
			break;
	}
	if (done)
		return (ssize_t)done;
	if (!total && !e)
		return 0;
	return cm_seterr(e);
}

/* Copies n bytes of the ring from pos on to c. */
static void rs_ring_give(struct rsock *rs, uint32_t pos, struct rs_cursor *c, uint32_t n)
{
	uint32_t first = min32(n, rs->rbuf_size - pos);

	cur_give(c, rs->rbuf + pos, first);
	if (first < n)
		cur_give(c, rs->rbuf, n - first);
}

ssize_t rs_recv_locked(struct rsock *rs, const struct iovec *iov, int iovcnt, int flags)
{
	bool nb = rs->nonblock || (flags & MSG_DONTWAIT);
	bool peek = flags & MSG_PEEK;
	bool waitall = (flags & MSG_WAITALL) && !peek;
	size_t total = iov_total(iov, iovcnt), done = 0;
	struct rs_cursor c;
	int e;

	e = rs_ready_for_io(rs, nb);
	if (e)
		return cm_seterr(e);
	cur_init(&c, iov, iovcnt);
	while (done < total) {
		rs_progress(rs);
		if (rs->rd_shut)
			break;
		if (rs->runread) {
			uint32_t n = min32(rs->runread, total - done);

			if (peek) {
				rs_ring_give(rs, rs->rtail, &c, n);
				done += n;
				break;
			}
			rs_ring_give(rs, rs->rtail, &c, n);
			rs->rtail = (rs->rtail + n) % rs->rbuf_size;
			rs->runread -= n;
			rs->ret_bytes += n;
			done += n;
			if (!waitall)
				break;
			continue;
		}
		if (rs_rd_eof(rs))
			break;
		if (nb) {
			if (!done)
				e = EAGAIN;
			break;
		}
		e = rs_wait(rs, rs_readable, -1);
		if (e)
			break;
	}
	if (rs->state == RS_CONNECTED) {
		rs_maybe_credit(rs);
		rs_flush_ctl(rs);
	}
	if (done || !e)
		return (ssize_t)done;
	return cm_seterr(e);
}

/* ---- control messages: FIN ------------------------------------------------------------------- */

static bool rs_fin_ready(struct rsock *rs)
{
	return !rs_can_post(rs) || (rs->peer_credits >= 1 && rs->sq_avail >= 1);
}

int rs_send_fin(struct rsock *rs, uint8_t flags, int timeout_ms)
{
	int e = 0;

	flags &= (uint8_t)~rs->fin_sent;
	if (!flags || rs->state != RS_CONNECTED)
		return 0;
	if (rs_can_post(rs) && !rs_fin_ready(rs))
		e = rs_wait(rs, rs_fin_ready, timeout_ms);
	if (!e && rs_can_post(rs))
		e = rs_post_msg(rs, RS_OP_FIN, flags, 0, 0, 0, 0, NULL, 0);
	rs->fin_sent |= flags;
	return e;
}

static bool rs_close_done(struct rsock *rs)
{
	return rs_broken(rs) || (rs->sq_avail == rs->sq_size && (rs->fin_rcvd & RS_FIN_RD));
}

void rs_close_connection(struct rsock *rs, int linger_ms)
{
	if (rs->state == RS_CONNECTING || rs->state == RS_ACCEPTING) {
		rdma_disconnect(rs->id);
		return;
	}
	if (rs->state != RS_CONNECTED)
		return;
	if (!rs_broken(rs) && linger_ms > 0) {
		uint64_t start = rs_now_ms();
		int left;

		rs_send_fin(rs, RS_FIN_WR | RS_FIN_RD, linger_ms);
		left = linger_ms - (int)(rs_now_ms() - start);
		if (left > 0 && rs_wait(rs, rs_close_done, left) == ETIMEDOUT)
			cm_info("rsocket %d: the peer did not close within %d ms; disconnecting",
				rs->fd, linger_ms);
	}
	rdma_disconnect(rs->id);
}

/* ---- riomap / riowrite ----------------------------------------------------------------------- */

static int rs_ctl_queue(struct rsock *rs, uint8_t op, uint64_t offset, uint64_t addr, uint64_t len,
			uint32_t rkey, struct rs_lmap *map)
{
	struct rs_ctl *c = calloc(1, sizeof(*c));

	if (!c)
		return ENOMEM;
	c->op = op;
	c->offset = offset;
	c->addr = addr;
	c->len = len;
	c->rkey = rkey;
	c->map = map;
	if (rs->ctl_tail)
		rs->ctl_tail->next = c;
	else
		rs->ctl_head = c;
	rs->ctl_tail = c;
	return 0;
}

off_t rs_iomap_locked(struct rsock *rs, void *buf, size_t len, int prot, off_t offset)
{
	bool remote = prot & PROT_WRITE;
	struct rs_lmap *m;
	int e;

	if ((prot & ~PROT_WRITE) || !buf || !len || offset < -1)
		return cm_seterr(EINVAL);
	if (!rs->cq || rs->state == RS_FAILED)
		return cm_seterr(EINVAL); /* no connection (as rdma-core: no PD yet) */
	if (remote && rs->peer_known && rs->rmaps_used_by_us >= rs->peer_iomap_size) {
		cm_info("rsocket %d: riomap: the peer allows %u windows (RDMA_IOMAPSIZE)", rs->fd,
			rs->peer_iomap_size);
		return cm_seterr(ENOMEM);
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return cm_seterr(ENOMEM);
	m->mr = ibv_reg_mr(rs->id->pd, buf, len,
			   IBV_ACCESS_LOCAL_WRITE | (remote ? IBV_ACCESS_REMOTE_WRITE : 0));
	if (!m->mr) {
		e = errno ? errno : ENOMEM;
		free(m);
		return cm_seterr(e);
	}
	m->buf = buf;
	m->len = len;
	m->offset = offset == -1 ? (uint64_t)(uintptr_t)buf : (uint64_t)offset;
	m->remote = remote;
	if (remote) {
		e = rs_ctl_queue(rs, RS_OP_IOMAP, m->offset, (uintptr_t)buf, len, m->mr->rkey, m);
		if (e) {
			ibv_dereg_mr(m->mr);
			free(m);
			return cm_seterr(e);
		}
		rs->rmaps_used_by_us++;
	}
	m->next = rs->lmaps;
	rs->lmaps = m;
	rs_progress(rs); /* announce it now if credits allow */
	return (off_t)m->offset;
}

int rs_iounmap_locked(struct rsock *rs, void *buf, size_t len)
{
	struct rs_lmap **pp, *m;

	for (pp = &rs->lmaps; (m = *pp); pp = &m->next)
		if (m->buf == buf && m->len == len)
			break;
	if (!m)
		return cm_seterr(EINVAL);
	*pp = m->next;
	if (m->remote) {
		struct rs_ctl **cp, *c;
		bool queued = false;

		/* Not announced yet: the announcement is simply dropped. */
		for (cp = &rs->ctl_head; (c = *cp); cp = &c->next) {
			if (c->op == RS_OP_IOMAP && c->map == m) {
				*cp = c->next;
				free(c);
				queued = true;
				break;
			}
		}
		rs->ctl_tail = NULL;
		for (c = rs->ctl_head; c; c = c->next)
			rs->ctl_tail = c;
		if (!queued && rs_ctl_queue(rs, RS_OP_IOUNMAP, m->offset, 0, 0, 0, NULL))
			cm_err("rsocket %d: riounmap: out of memory; the peer keeps the window",
			       rs->fd);
		rs->rmaps_used_by_us--;
	}
	ibv_dereg_mr(m->mr);
	free(m);
	rs_progress(rs);
	return 0;
}

static const struct rs_rmap *rs_rmap_find(const struct rsock *rs, uint64_t off)
{
	for (unsigned i = 0; rs->rmaps && i < rs->iomap_size; i++) {
		const struct rs_rmap *r = &rs->rmaps[i];

		if (r->used && off >= r->offset && off - r->offset < r->len)
			return r;
	}
	return NULL;
}

/* Room for one riowrite WRITE of want bytes (0: none now). */
static uint32_t rs_io_chunk(const struct rsock *rs, size_t want)
{
	uint32_t n = min32(want, RS_MAX_CHUNK), free_s;

	if (rs->sq_avail < 1)
		return 0;
	if (n <= rs->sq_inline)
		return n;
	free_s = rs->sbuf_size - rs->sinflight;
	if (free_s >= n)
		return n;
	if (free_s >= RS_SNDLOWAT || free_s == rs->sbuf_size)
		return free_s;
	return rs->sq_inline ? min32(n, rs->sq_inline) : 0;
}

static bool rs_io_writable(struct rsock *rs)
{
	return rs->state != RS_CONNECTED || rs_write_error(rs) || rs_io_chunk(rs, RS_SNDLOWAT);
}

ssize_t rs_iowrite_locked(struct rsock *rs, const void *buf, size_t count, uint64_t offset,
			  int flags)
{
	bool nb = rs->nonblock || (flags & MSG_DONTWAIT);
	struct iovec v = {.iov_base = (void *)buf, .iov_len = count};
	size_t done = 0;
	struct rs_cursor c;
	int e;

	e = rs_ready_for_io(rs, nb);
	if (e)
		return cm_seterr(e);
	cur_init(&c, &v, 1);
	while (done < count) {
		uint8_t tmp[ENG_MAX_INLINE];
		const struct rs_rmap *r;
		struct ibv_send_wr w, *bad = NULL;
		struct ibv_sge sg[2];
		uint64_t off = offset + done;
		uint32_t n, staged;

		rs_progress(rs);
		e = rs_write_error(rs);
		if (e)
			break;
		r = rs_rmap_find(rs, off);
		if (!r) {
			e = EINVAL; /* no window of the peer covers it (rdma-core writes nothing) */
			break;
		}
		n = rs_io_chunk(rs, count - done < r->offset + r->len - off
					? count - done
					: r->offset + r->len - off);
		if (n) {
			staged = rs_prep_write(rs, &w, sg, tmp, &c, n, r->addr + (off - r->offset),
					       r->rkey);
			w.wr_id = wrid_send(1, staged);
			w.send_flags |= IBV_SEND_SIGNALED;
			e = ibv_post_send(rs->id->qp, &w, &bad);
			if (e) {
				rs_set_dead(rs, e);
				break;
			}
			rs->sq_avail--;
			rs->sinflight += staged;
			done += n;
			continue;
		}
		if (nb) {
			e = EAGAIN;
			break;
		}
		e = rs_wait(rs, rs_io_writable, -1);
		if (e)
			break;
	}
	if (done)
		return (ssize_t)done;
	return cm_seterr(e);
}
