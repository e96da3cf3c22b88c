// SPDX-License-Identifier: MIT
/*
 * The CM thread: connection setup on the wire.
 *
 * One thread per process, started by the first rdma_listen/rdma_connect. It sleeps in
 * epoll_wait over
 *	- listening sockets (accept),
 *	- initiator sockets: TCP connect in progress, MPA request to write, MPA reply to read,
 *	- responder sockets: MPA request to read, MPA reply to write (after rdma_accept), and
 *	  hang-up detection while the application decides,
 *	- an eventfd that wakes it for new timers and for the engine's notifications,
 * with a timeout that is the nearest MPA deadline. All sockets are non-blocking. The MPA frame
 * is read with the core's reader, which asks for exactly the bytes the frame still lacks, so
 * the first FPDU (or a TERMINATE) after it stays in the socket for the engine.
 *
 * Timers (kernel siw's values by default, SIW_MPA_TIMEOUT_MS changes both): the initiator's
 * deadline starts at rdma_connect and covers TCP connect and the reply (restarted when the
 * request has been written); expiry is RDMA_CM_EVENT_UNREACHABLE with -ETIMEDOUT. The
 * responder's deadline starts at TCP accept and covers the request; expiry just closes the
 * socket (the application never heard of that connection). Nothing times out once a request
 * is delivered to the application: accepting or rejecting is its business.
 *
 * When the MPA exchange succeeds the socket goes to the engine with the negotiated parameters
 * (eng_qp_connect); ESTABLISHED and DISCONNECTED then come from the engine's callbacks, which
 * run on its progress thread and only queue a notification here (see cm.h for why).
 */
#define _GNU_SOURCE /* accept4 */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cm.h"
#include "term.h"
#include "tx.h"

_Static_assert(sizeof(struct siw_iov) == sizeof(struct iovec), "siw_iov is an iovec");

enum { MPA_AGAIN = 0, MPA_DONE = 1, MPA_EOF = 2, MPA_IOERR = 3 };

uint64_t cm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cm_wake(void)
{
	uint64_t one = 1;

	if (cm.wake_fd >= 0 && write(cm.wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		cm_err("cannot wake the CM thread: %s", strerror(errno));
}

/* ---- engine notifications ------------------------------------------------------------------- */

enum cm_notify_type { CM_NOTIFY_ESTABLISHED, CM_NOTIFY_CLOSED };

struct cm_notify {
	struct cm_notify *next;
	enum cm_notify_type type;
	uint64_t handle;
	int err;
};

/* Engine progress thread: never blocks on the CM (only the leaf nq_lock). */
static void notify_push(enum cm_notify_type type, void *cm_user, int err)
{
	struct cm_notify *n = calloc(1, sizeof(*n));

	if (!n) {
		cm_err("out of memory: a connection %s notification is lost",
		       type == CM_NOTIFY_ESTABLISHED ? "established" : "closed");
		return;
	}
	n->type = type;
	n->handle = (uint64_t)(uintptr_t)cm_user;
	n->err = err;
	cm_dbg("id %llu: engine reports %s (%d)", (unsigned long long)n->handle,
	       type == CM_NOTIFY_ESTABLISHED ? "established" : "closed", err);
	pthread_mutex_lock(&cm.nq_lock);
	if (cm.nq_tail)
		cm.nq_tail->next = n;
	else
		cm.nq_head = n;
	cm.nq_tail = n;
	pthread_mutex_unlock(&cm.nq_lock);
	cm_wake();
}

static void eng_established(void *cm_user, struct eng_qp *qp)
{
	(void)qp;
	notify_push(CM_NOTIFY_ESTABLISHED, cm_user, 0);
}

static void eng_closed(void *cm_user, struct eng_qp *qp, int err)
{
	(void)qp;
	notify_push(CM_NOTIFY_CLOSED, cm_user, err);
}

const struct eng_cm_ops cm_eng_ops = {
    .established = eng_established,
    .closed = eng_closed,
};

static uint8_t u8_clamp(unsigned v)
{
	return v > 255 ? 255 : (uint8_t)v;
}

static void notify_one(struct cm_notify *n)
{
	struct cm_id *id = cm_id_lookup(n->handle);
	struct cm_event *e;
	char a[CM_ADDRSTRLEN];

	if (!id || id->destroying)
		return; /* the id is gone; the QP (and its connection) is the application's */
	if (n->type == CM_NOTIFY_ESTABLISHED) {
		if (id->state != CM_CONNECTED)
			return;
		cm_timer_clear(id); /* the RTR wait, if any */
		cm_set_state(id, CM_ESTABLISHED);
		e = cm_event_new(id, id, RDMA_CM_EVENT_ESTABLISHED, 0, id->est_pd, id->est_pd_len);
		if (e) {
			/* iw_cm convention: initiator_depth = IRD, responder_resources = ORD */
			e->ev.param.conn.initiator_depth = u8_clamp(id->res.ird);
			e->ev.param.conn.responder_resources = u8_clamp(id->res.ord);
			cm_event_post(e);
		}
		return;
	}
	switch (id->state) {
	case CM_CONNECTED:
		/* Never established: the peer or the engine gave up (RTR missing, TERMINATE...). */
		cm_err("connection with %s failed before it was established (%s)",
		       cm_addr_str(&id->id.route.addr.dst_addr, a),
		       n->err ? siw_strerror(n->err) : "closed");
		cm_set_state(id, CM_FAILED);
		cm_event_queue(id, id, RDMA_CM_EVENT_CONNECT_ERROR, -ECONNRESET, NULL, 0);
		break;
	case CM_ESTABLISHED:
	case CM_DISCONNECTING:
		if (n->err)
			cm_info("connection with %s ended: %s",
				cm_addr_str(&id->id.route.addr.dst_addr, a), siw_strerror(n->err));
		cm_set_state(id, CM_DISCONNECTED);
		cm_event_queue(id, id, RDMA_CM_EVENT_DISCONNECTED, 0, NULL, 0);
		break;
	default:
		break;
	}
}

void cm_notify_run(void)
{
	struct cm_notify *list;

	pthread_mutex_lock(&cm.nq_lock);
	list = cm.nq_head;
	cm.nq_head = cm.nq_tail = NULL;
	pthread_mutex_unlock(&cm.nq_lock);
	while (list) {
		struct cm_notify *next = list->next;

		notify_one(list);
		free(list);
		list = next;
	}
}

/* ---- socket helpers ------------------------------------------------------------------------- */

/* Writes what is left of id->out. Returns 0 when all is out, EAGAIN, or an errno. */
static int out_flush(struct cm_id *id)
{
	while (id->out_off < id->out_len) {
		ssize_t n = send(id->fd, id->out + id->out_off, id->out_len - id->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? EAGAIN : errno;
		}
		id->out_off += (size_t)n;
	}
	return 0;
}

/*
 * Reads what the MPA reader still wants, and not one byte more. Returns MPA_DONE (frame
 * complete), MPA_AGAIN, MPA_EOF, MPA_IOERR (*err = errno of the failed recv), or the reader's
 * SIW_ERR_TERM verdict on a bad header (< 0).
 */
static int mpa_read(struct cm_id *id, int *err)
{
	uint8_t buf[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];

	for (;;) {
		int want = siw_mpa_reader_want(&id->rd);
		ssize_t n;

		if (want < 0)
			return want;
		if (want == 0)
			return MPA_DONE;
		n = recv(id->fd, buf, (size_t)want, MSG_DONTWAIT);
		if (n == 0)
			return MPA_EOF;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return MPA_AGAIN;
			*err = errno;
			return MPA_IOERR;
		}
		siw_mpa_reader_feed(&id->rd, buf, (size_t)n);
	}
}

/* Why the reader refused a frame header, in words for the log. */
static const char *bad_frame_reason(const struct siw_mpa_reader *rd, char *buf, size_t sz)
{
	const uint8_t *h = rd->buf;

	if (rd->have >= MPA_KEY_LEN &&
	    memcmp(h, rd->want_reply ? MPA_KEY_REP : MPA_KEY_REQ, MPA_KEY_LEN) != 0)
		snprintf(buf, sz, "not an MPA %s (wrong key)",
			 rd->want_reply ? "reply" : "request");
	else if (rd->have >= MPA_RR_HDR_LEN && h[MPA_RR_OFF_REV] > MPA_REV_2)
		snprintf(buf, sz, "unsupported MPA revision %u (we speak 1 and 2)",
			 h[MPA_RR_OFF_REV]);
	else if (rd->have >= MPA_RR_HDR_LEN && get_be16(h + MPA_RR_OFF_PDLEN) > MPA_MAX_PRIVDATA)
		snprintf(buf, sz, "private data length %u exceeds MPA's limit of %d",
			 get_be16(h + MPA_RR_OFF_PDLEN), MPA_MAX_PRIVDATA);
	else if (rd->have >= MPA_RR_HDR_LEN && rd->want_reply && h[MPA_RR_OFF_REV] == 0)
		snprintf(buf, sz, "MPA revision 0 in a reply");
	else
		snprintf(buf, sz, "malformed MPA frame");
	return buf;
}

/* What to change when an MPA negotiation fails (err from siw_mpa_respond/check_reply). */
static const char *mpa_advice(const struct cm_id *id, const struct siw_mpa_frame *f, int err)
{
	unsigned code = siw_err_is_term(err) ? siw_err_term_ecode(err) : 0;

	if (code == TERM_ECODE_LLP_NO_MATCHING_RTR)
		return "the peer-to-peer RTR types do not match: give both ends a common type in "
		       "SIW_MPA_RTR (write,read,send), or turn peer-to-peer off at the initiator "
		       "(SIW_MPA_P2P=0)";
	if (code == TERM_ECODE_LLP_INSUFFICIENT_IRD)
		return "the RDMA READ depths do not fit: lower the initiator's initiator_depth or "
		       "raise the responder's responder_resources";
	if ((f->flags & MPA_FLAG_MARKERS) && !id->cfg.mpa.accept_markers)
		return "the peer asks for MPA markers, which this side refuses: set "
		       "SIW_MPA_MARKERS=1 here, or make the peer stop asking for markers";
	if (f->is_reply && id->cfg.mpa.crc == SIW_CRC_REQUIRE && !(f->flags & MPA_FLAG_CRC))
		return "SIW_MPA_CRC=require here, but the peer runs without CRC: enable CRC at the "
		       "peer (kernel siw: mpa_crc_required=1) or use SIW_MPA_CRC=request here";
	return "both ends must agree on SIW_MPA_REV, SIW_MPA_CRC, SIW_MPA_MARKERS and "
	       "peer-to-peer mode (SIW_MPA_P2P, SIW_MPA_RTR)";
}

/*
 * Best effort: the MPA-layer TERMINATE the initiator owes the responder when the reply cannot
 * be used (RFC 6581: insufficient IRD, no matching RTR), sent as the first FPDU.
 */
static void send_terminate(struct cm_id *id, int err)
{
	struct siw_tx_params p = {.crc = id->res.crc, .markers = false, .max_ulpdu = 1024};
	struct siw_tx_msg m = {.opcode = RDMAP_TERMINATE};
	struct siw_tx_batch *b;
	struct siw_tx tx;

	if (!siw_err_is_term(err) || id->res.markers_tx)
		return;
	b = malloc(sizeof(*b));
	if (!b)
		return;
	m.term_ctrl = siw_term_ctrl(siw_err_term_layer(err), siw_err_term_etype(err),
				    siw_err_term_ecode(err), false, false, false);
	siw_tx_init(&tx, &p);
	siw_tx_batch_reset(b);
	if (siw_tx_begin(&tx, &m) == 0 && siw_tx_fill(&tx, b) == 1) {
		struct msghdr mh = {.msg_iov = (struct iovec *)b->iov, .msg_iovlen = b->niov};

		if (sendmsg(id->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			cm_dbg("TERMINATE not sent: %s", strerror(errno));
	}
	free(b);
}

/* Initiator: the attempt is over; tell the application. */
static void conn_fail(struct cm_id *id, enum rdma_cm_event_type type, int status, const void *pd,
		      size_t pd_len)
{
	/* observability hook (SIW_CAPTURE): the MPA frames exchanged so far */
	eng_capture_mpa(id->fd, &id->id.route.addr.dst_addr, id->out, id->out_off, id->rd.buf,
			id->rd.have);
	cm_timer_clear(id);
	cm_close_fd(id);
	cm_set_state(id, CM_FAILED);
	cm_event_queue(id, id, type, status, pd, pd_len);
}

/* A TCP-level failure of an active connection, mapped as the kernel's iw_cm does. */
static void conn_fail_errno(struct cm_id *id, int e)
{
	char a[CM_ADDRSTRLEN];
	const char *peer = cm_addr_str(&id->id.route.addr.dst_addr, a);

	switch (e) {
	case ECONNREFUSED:
		cm_err("connect to %s: connection refused (is the server listening on that port?)",
		       peer);
		conn_fail(id, RDMA_CM_EVENT_REJECTED, -ECONNREFUSED, NULL, 0);
		break;
	case ECONNRESET:
	case EPIPE:
		cm_err("connect to %s: the peer reset the connection during MPA negotiation (a "
		       "listener that is not iWARP, or one that refused our MPA request?)",
		       peer);
		conn_fail(id, RDMA_CM_EVENT_REJECTED, -ECONNRESET, NULL, 0);
		break;
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
		cm_err("connect to %s: %s", peer, strerror(e));
		conn_fail(id, RDMA_CM_EVENT_UNREACHABLE, -e, NULL, 0);
		break;
	default:
		cm_err("connect to %s: %s", peer, strerror(e));
		conn_fail(id, RDMA_CM_EVENT_CONNECT_ERROR, -e, NULL, 0);
		break;
	}
}

/* ---- hand-over -------------------------------------------------------------------------- */

int cm_conn_handoff(struct cm_id *id, bool initiator)
{
	struct eng_qp *qp = cm_qp(id) ? siw_verbs_qp(cm_qp(id)) : NULL;
	struct eng_conn c;
	int one = 1, r;

	if (!qp) {
		cm_err("the QP of this connection is gone; cannot start RDMA mode");
		return EINVAL;
	}
	/* As kernel siw: small control messages must not wait for Nagle. */
	setsockopt(id->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cm_timer_clear(id);
	cm_epoll_set(id, 0);

	memset(&c, 0, sizeof(c));
	c.fd = id->fd;
	c.initiator = initiator;
	c.mpa = id->res;
	c.mpa.user_pd = NULL; /* points into our reader; the engine does not need it */
	c.mpa.user_pd_len = 0;
	if (id->cfg.rfc7306_force)
		c.mpa.rfc7306 = true; /* SIW_RFC7306=on: the user vouches for the peer */
	c.ops = &cm_eng_ops;
	c.cm_user = (void *)(uintptr_t)id->handle;
	/* observability hook (SIW_CAPTURE): the MPA frames of this connection, for the capture */
	c.mpa_sent = id->out;
	c.mpa_sent_len = id->out_off;
	c.mpa_rcvd = id->rd.buf;
	c.mpa_rcvd_len = id->rd.have;
	/* Before the call: established() may be reported while it runs. */
	cm_set_state(id, CM_CONNECTED);
	r = eng_qp_connect(qp, &c);
	if (r) {
		cm_err("cannot start RDMA mode on the QP: %s", strerror(r));
		return r;
	}
	id->fd = -1; /* the engine owns the socket now */
	id->ep_events = 0;
	/*
	 * A peer-to-peer responder waits for the initiator's RTR before ESTABLISHED: bounded like
	 * the MPA Request (cm_conn_timeout), or a peer that never sends it holds the QP forever.
	 */
	if (!initiator && id->res.p2p && id->res.rtr != SIW_RTR_NONE && id->state == CM_CONNECTED)
		cm_timer_set(id, id->cfg.req_timeout_ms);
	cm_dbg("id %llu: handed to the engine (%s, rev %u, crc %d, ird %u, ord %u, rtr %d)",
	       (unsigned long long)id->handle, initiator ? "initiator" : "responder", id->res.rev,
	       id->res.crc, id->res.ird, id->res.ord, id->res.rtr);
	return 0;
}

/* ---- initiator -------------------------------------------------------------------------- */

int cm_conn_start(struct cm_id *id)
{
	const struct sockaddr *dst = &id->id.route.addr.dst_addr;
	int err = cm_thread_ensure();

	if (err)
		return err;
	if (id->tos_set) {
		int tos = id->tos;

		if (dst->sa_family == AF_INET)
			setsockopt(id->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
		else
			setsockopt(id->fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
	}
	siw_mpa_reader_init(&id->rd, true);
	cm_set_state(id, CM_CONNECTING);
	if (connect(id->fd, dst, cm_addr_len(dst)) < 0 && errno != EINPROGRESS) {
		/* Reported as an event: rdma_connect itself succeeds, as with the kernel. */
		conn_fail_errno(id, errno);
		return 0;
	}
	{
		/* The source port is chosen now (IP_BIND_ADDRESS_NO_PORT, see id_bind). */
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (!getsockname(id->fd, (struct sockaddr *)&ss, &len))
			memcpy(&id->id.route.addr.src_storage, &ss, sizeof(ss));
	}
	cm_timer_set(id, id->cfg.rep_timeout_ms);
	return cm_epoll_set(id, EPOLLOUT);
}

static void initiator_got_reply(struct cm_id *id)
{
	char a[CM_ADDRSTRLEN];
	const char *peer = cm_addr_str(&id->id.route.addr.dst_addr, a);
	int r;

	r = siw_mpa_parse(id->rd.buf, id->rd.have, true, &id->frame);
	if (r >= 0)
		r = siw_mpa_check_reply(&id->cfg.mpa, id->ird, id->ord, &id->frame, &id->res);
	if (r == SIW_ERR_REJECTED) {
		size_t len = id->res.user_pd_len > 255 ? 255 : id->res.user_pd_len;

		cm_err("connect to %s: rejected by the peer (MPA reject, %u bytes of private data). "
		       "The peer's log says why: its application refused the connection, or its "
		       "MPA settings refuse ours (compare SIW_MPA_* on both ends)",
		       peer, id->res.user_pd_len);
		conn_fail(id, RDMA_CM_EVENT_REJECTED, -ECONNREFUSED, id->res.user_pd, len);
		return;
	}
	if (r < 0) {
		cm_err("connect to %s: the MPA reply does not fit our request: %s; %s", peer,
		       siw_strerror(r), mpa_advice(id, &id->frame, r));
		send_terminate(id, r);
		conn_fail(id, RDMA_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0);
		return;
	}
	id->est_pd_len = id->res.user_pd_len;
	if (id->est_pd_len > 255) {
		cm_warn("connect to %s: the reply carries %u bytes of private data; rdma_cm "
			"delivers 255",
			peer, id->est_pd_len);
		id->est_pd_len = 255;
	}
	memcpy(id->est_pd, id->res.user_pd, id->est_pd_len);
	r = cm_conn_handoff(id, true);
	if (r) {
		conn_fail(id, RDMA_CM_EVENT_CONNECT_ERROR, -r, NULL, 0);
		return;
	}
}

static void initiator_io(struct cm_id *id, uint32_t events)
{
	char a[CM_ADDRSTRLEN], why[96];
	int r, err = 0;

	if (id->state == CM_CONNECTING) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(id->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr) {
			conn_fail_errno(id, soerr);
			return;
		}
		cm_set_state(id, CM_MPA_REQ_SENT);
		/* The reply wait starts now, as in kernel siw. */
		cm_timer_set(id, id->cfg.rep_timeout_ms);
	}
	/* Still writing the request? (It is <= 532 bytes: practically always one send.) */
	if (id->out_off < id->out_len) {
		r = out_flush(id);
		if (r == EAGAIN) {
			cm_epoll_set(id, EPOLLOUT);
			return;
		}
		if (r) {
			conn_fail_errno(id, r);
			return;
		}
		cm_epoll_set(id, EPOLLIN);
		return; /* the reply cannot be there before the request */
	}
	if (id->ep_events != EPOLLIN)
		cm_epoll_set(id, EPOLLIN);
	r = mpa_read(id, &err);
	if (r == MPA_AGAIN)
		return;
	if (r == MPA_DONE) {
		initiator_got_reply(id);
		return;
	}
	if (r == MPA_EOF) {
		cm_err("connect to %s: the peer closed the connection without an MPA reply (not "
		       "an iWARP endpoint, or it refused our MPA revision %u request?)",
		       cm_addr_str(&id->id.route.addr.dst_addr, a), id->cfg.mpa.rev);
		conn_fail(id, RDMA_CM_EVENT_REJECTED, -ECONNRESET, NULL, 0);
		return;
	}
	if (r == MPA_IOERR) {
		conn_fail_errno(id, err);
		return;
	}
	cm_err("connect to %s: bad MPA reply: %s", cm_addr_str(&id->id.route.addr.dst_addr, a),
	       bad_frame_reason(&id->rd, why, sizeof(why)));
	conn_fail(id, RDMA_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0);
}

/* ---- responder -------------------------------------------------------------------------- */

/*
 * FIN after what was sent (a reject, or nothing). Unread input would turn close() into a reset
 * that can overtake the reject, so drain what a misbehaving peer may have sent beyond its
 * request.
 */
static void conn_close_unanswered(struct cm_id *id)
{
	uint8_t junk[512];

	/* observability hook (SIW_CAPTURE): the request and our reject, if any */
	eng_capture_mpa(id->fd, &id->id.route.addr.dst_addr, id->out, id->out_off, id->rd.buf,
			id->rd.have);
	shutdown(id->fd, SHUT_WR);
	for (int i = 0; i < 16 && recv(id->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		;
	cm_close_fd(id);
}

void cm_conn_reject(struct cm_id *id, const void *pd, size_t pd_len)
{
	int n;

	/*
	 * A parsed request is answered in the negotiated revision (rev 2 keeps the IRD/ORD words,
	 * as kernel siw and cxgb4 send them); before negotiation in revision 1, or 0 to an RDMA
	 * Consortium (rev 0) peer.
	 */
	if (id->res.rev != MPA_REV_1 && id->res.rev != MPA_REV_2)
		id->res.rev = id->frame.pd && id->frame.rev == 0 ? 0 : MPA_REV_1;
	n = siw_mpa_build_reply(&id->cfg.mpa, &id->res, true, pd, pd_len, id->out, sizeof(id->out));
	if (n > 0) {
		id->out_len = (size_t)n;
		id->out_off = 0;
		out_flush(id);
	}
	conn_close_unanswered(id);
}

/* A connection the application never saw goes away. */
static void responder_drop(struct cm_id *id)
{
	cm_id_free(id);
}

/* The request is complete: check it, then show it to the application. */
static void responder_got_request(struct cm_id *id)
{
	struct cm_id *listen = id->listen;
	struct sockaddr_storage local;
	char a[CM_ADDRSTRLEN], b[CM_ADDRSTRLEN];
	const char *peer = cm_addr_str(&id->id.route.addr.dst_addr, a);
	struct cm_event *e;
	struct cm_dev *dev;
	int r;

	r = siw_mpa_parse(id->rd.buf, id->rd.have, false, &id->frame);
	if (r < 0) {
		/*
		 * Not a request we can work with (key, revision, private data length): RFC 5044
		 * has the responder close the connection, as kernel siw does; no Reply.
		 */
		cm_err("closed connection from %s: inconsistent MPA request (revision %u, "
		       "flags 0x%02x, %u bytes of private data)",
		       peer, id->rd.buf[MPA_RR_OFF_REV], id->rd.buf[MPA_RR_OFF_FLAGS],
		       get_be16(id->rd.buf + MPA_RR_OFF_PDLEN));
		conn_close_unanswered(id);
		responder_drop(id);
		return;
	}
	if (id->frame.user_pd_len > 255) {
		cm_err("rejected connection from %s: %u bytes of private data, but rdma_cm can "
		       "deliver at most 255",
		       peer, id->frame.user_pd_len);
		goto reject_parsed;
	}
	memcpy(&local, &id->id.route.addr.src_storage, sizeof(local));
	dev = cm_dev_get_by_addr((struct sockaddr *)&local);
	if (!dev) {
		if (errno != ENODEV)
			cm_err("rejected connection from %s: cannot look up the device of %s: %s "
			       "(out of file descriptors? raise the limit with ulimit -n)",
			       peer, cm_addr_str((struct sockaddr *)&local, b), strerror(errno));
		else
			cm_err("rejected connection from %s: the local address %s belongs to no "
			       "softiwarp device",
			       peer, cm_addr_str((struct sockaddr *)&local, b));
		goto reject_parsed;
	}
	id->dev = dev;
	/* Checked now against the device's limits; rdma_accept decides again with the app's. */
	r = siw_mpa_respond(&id->cfg.mpa, &id->frame, dev->max_ird, dev->max_ord, &id->res);
	if (r < 0) {
		cm_err("rejected connection from %s: %s (MPA revision %u, flags 0x%02x); %s", peer,
		       siw_strerror(r), id->frame.rev, id->frame.flags,
		       mpa_advice(id, &id->frame, r));
		cm_conn_reject(id, NULL, 0);
		responder_drop(id);
		return;
	}

	if (id->frame.v2) {
		id->peer_ird = id->frame.ird_word & MPA_V2_IRD_ORD_MASK;
		id->peer_ord = id->frame.ord_word & MPA_V2_IRD_ORD_MASK;
	} else {
		id->peer_ird = id->peer_ord = MPA_V2_IRD_ORD_NONE;
	}

	/* Expose: the id becomes the application's. */
	cm_timer_clear(id);
	cm_pending_unlink(id);
	if (listen->sync) {
		struct cm_channel *ch = cm_channel_new();

		if (!ch) {
			cm_err("rejected connection from %s: out of memory", peer);
			cm_conn_reject(id, NULL, 0);
			cm_id_free(id);
			return;
		}
		id->id.channel = &ch->ch;
		id->sync = true;
	} else {
		id->id.channel = listen->id.channel;
	}
	id->id.verbs = dev->verbs;
	id->id.port_num = 1;
	id->id.pd = dev->pd;
	/* Only a hang-up matters now; the peer sends nothing until it has our reply. */
	cm_epoll_set(id, EPOLLRDHUP);
	cm_set_state(id, CM_REQ_RCVD);

	e = cm_event_new(id, listen, RDMA_CM_EVENT_CONNECT_REQUEST, 0, id->frame.user_pd,
			 id->frame.user_pd_len);
	if (!e) {
		cm_conn_reject(id, NULL, 0);
		cm_id_free(id);
		return;
	}
	e->child = id;
	e->ev.listen_id = &listen->id;
	/*
	 * The kernel's iw_cm convention: initiator_depth = the peer's ORD (what our IRD must
	 * cover), responder_resources = the peer's IRD. A revision 1 request carries neither:
	 * then the device maximum, which rdma_accept lowers as needed.
	 */
	e->ev.param.conn.initiator_depth =
	    u8_clamp(id->peer_ord == MPA_V2_IRD_ORD_NONE ? dev->max_ord : id->peer_ord);
	e->ev.param.conn.responder_resources =
	    u8_clamp(id->peer_ird == MPA_V2_IRD_ORD_NONE ? dev->max_ird : id->peer_ird);
	cm_event_post(e);
	cm_dbg("id %llu: connection request from %s (rev %u, flags 0x%02x, ird %u, ord %u, %u "
	       "bytes of private data)",
	       (unsigned long long)id->handle, peer, id->frame.rev, id->frame.flags, id->peer_ird,
	       id->peer_ord, id->frame.user_pd_len);
	return;

reject_parsed:
	/* Answer in the revision the peer speaks. */
	id->res.rev = id->frame.v2 && id->cfg.mpa.rev == MPA_REV_2 ? MPA_REV_2 : MPA_REV_1;
	cm_conn_reject(id, NULL, 0);
	responder_drop(id);
}

static void responder_io(struct cm_id *id, uint32_t events)
{
	char a[CM_ADDRSTRLEN], why[96];
	const char *peer = cm_addr_str(&id->id.route.addr.dst_addr, a);
	int r, err = 0;

	switch (id->state) {
	case CM_MPA_AWAIT_REQ:
		r = mpa_read(id, &err);
		if (r == MPA_AGAIN)
			return;
		if (r == MPA_DONE) {
			responder_got_request(id);
			return;
		}
		if (r == MPA_EOF || r == MPA_IOERR) {
			cm_info("connection from %s closed before it sent an MPA request (%s)",
				peer, r == MPA_EOF ? "end of stream" : strerror(err));
			responder_drop(id);
			return;
		}
		/* Not an MPA request: closed without a Reply (see responder_got_request). */
		cm_err("closed connection from %s: %s (a client that does not speak MPA?)", peer,
		       bad_frame_reason(&id->rd, why, sizeof(why)));
		conn_close_unanswered(id);
		responder_drop(id);
		return;
	case CM_REQ_RCVD:
		/* Hang-up while the application decides: accept will fail, reject is moot. */
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
			cm_info("connection request from %s: the peer hung up before it was "
				"accepted",
				peer);
			id->peer_gone = true;
			cm_epoll_set(id, 0);
		}
		return;
	case CM_ACCEPTING:
		r = out_flush(id);
		if (r == EAGAIN)
			return;
		if (!r)
			r = cm_conn_handoff(id, false);
		if (r) {
			cm_err("accepting %s failed: %s", peer, strerror(r));
			conn_fail(id, RDMA_CM_EVENT_CONNECT_ERROR, -r, NULL, 0);
		}
		return;
	default:
		return;
	}
}

int cm_conn_accept_send(struct cm_id *id)
{
	int r;

	cm_set_state(id, CM_ACCEPTING);
	r = out_flush(id);
	if (r == EAGAIN) {
		/* Rare (a fresh socket takes 532 bytes): the CM thread finishes the write. */
		return cm_epoll_set(id, EPOLLOUT);
	}
	if (!r)
		r = cm_conn_handoff(id, false);
	if (r) {
		char a[CM_ADDRSTRLEN];

		if (r == EPIPE)
			r = ECONNRESET;
		cm_err("accepting %s failed: %s", cm_addr_str(&id->id.route.addr.dst_addr, a),
		       strerror(r));
		cm_timer_clear(id);
		cm_close_fd(id);
		cm_set_state(id, CM_FAILED);
	}
	return r;
}

/* ---- listener ------------------------------------------------------------------------------- */

/*
 * A descriptor kept in reserve (cm.lock) for a process out of descriptors: a connection it
 * cannot accept would wait in the backlog until its client gives up on the MPA reply (10 s).
 * Instead the reserve is freed, the connection accepted and reset at once, so the client
 * fails now and knows why, and the reserve is taken again.
 */
static int reserve_fd = -1;

void cm_conn_reserve_fd(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static bool refuse_one(struct cm_id *listen)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char a[CM_ADDRSTRLEN], b[CM_ADDRSTRLEN];
	int fd, e = errno;

	if (reserve_fd < 0)
		return false;
	close(reserve_fd);
	fd = accept4(listen->fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	reserve_fd = -1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* RST, not FIN */
		close(fd);
		cm_addr_unmap(&peer);
		cm_err("refused a connection from %s on %s: %s (raise the limit: ulimit -n)",
		       cm_addr_str((struct sockaddr *)&peer, a),
		       cm_addr_str(&listen->id.route.addr.src_addr, b), strerror(e));
	}
	cm_conn_reserve_fd();
	errno = e;
	return fd >= 0 && reserve_fd >= 0;
}

static void listener_io(struct cm_id *listen)
{
	char a[CM_ADDRSTRLEN];

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer, local;
		socklen_t plen = sizeof(peer), llen = sizeof(local);
		struct cm_id *child;
		int fd;

		fd = accept4(listen->fd, (struct sockaddr *)&peer, &plen,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if ((errno == EMFILE || errno == ENFILE) && refuse_one(listen))
				continue;
			/*
			 * Otherwise the connection stays in the backlog and epoll would report
			 * it again at once; pause the listener for a moment instead of spinning.
			 */
			cm_err("accept on %s: %s; retrying in 100 ms",
			       cm_addr_str(&listen->id.route.addr.src_addr, a), strerror(errno));
			cm_epoll_set(listen, 0);
			cm_timer_set(listen, 100);
			return;
		}
		child = cm_id_alloc(NULL, listen->id.context, listen->id.ps);
		if (!child) {
			close(fd);
			continue;
		}
		child->cfg = listen->cfg; /* the listener's snapshot governs its connections */
		child->fd = fd;
		memset(&local, 0, sizeof(local));
		getsockname(fd, (struct sockaddr *)&local, &llen);
		cm_addr_unmap(&local);
		cm_addr_unmap(&peer);
		memcpy(&child->id.route.addr.src_storage, &local, sizeof(local));
		memcpy(&child->id.route.addr.dst_storage, &peer, sizeof(peer));
		child->listen = listen;
		child->pnext = listen->pending;
		listen->pending = child;
		cm_id_insert(child);
		siw_mpa_reader_init(&child->rd, false);
		cm_set_state(child, CM_MPA_AWAIT_REQ);
		if (cm_epoll_set(child, EPOLLIN | EPOLLRDHUP)) {
			cm_id_free(child);
			continue;
		}
		cm_timer_set(child, child->cfg.req_timeout_ms);
		cm_dbg("id %llu: TCP connection from %s", (unsigned long long)child->handle,
		       cm_addr_str((struct sockaddr *)&peer, a));
	}
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void cm_conn_io(struct cm_id *id, uint32_t events)
{
	switch (id->state) {
	case CM_LISTEN:
		listener_io(id);
		break;
	case CM_CONNECTING:
	case CM_MPA_REQ_SENT:
		initiator_io(id, events);
		break;
	case CM_MPA_AWAIT_REQ:
	case CM_REQ_RCVD:
	case CM_ACCEPTING:
		responder_io(id, events);
		break;
	default:
		/* Nothing to watch in this state any more. */
		cm_epoll_set(id, 0);
		break;
	}
}

void cm_conn_timeout(struct cm_id *id)
{
	char a[CM_ADDRSTRLEN];

	cm_timer_clear(id);
	switch (id->state) {
	case CM_LISTEN:
		cm_epoll_set(id, EPOLLIN); /* back from the accept pause */
		break;
	case CM_MPA_AWAIT_REQ:
		cm_err("connection from %s sent no MPA request within %d ms; closing it (not an "
		       "iWARP client? SIW_MPA_TIMEOUT_MS changes the wait)",
		       cm_addr_str(&id->id.route.addr.dst_addr, a), id->cfg.req_timeout_ms);
		responder_drop(id);
		break;
	case CM_CONNECTING:
	case CM_MPA_REQ_SENT:
		cm_err("connect to %s: no %s within %d ms (is the peer an iWARP endpoint, and "
		       "reachable? SIW_MPA_TIMEOUT_MS changes the wait)",
		       cm_addr_str(&id->id.route.addr.dst_addr, a),
		       id->state == CM_CONNECTING ? "TCP connection" : "MPA reply",
		       id->cfg.rep_timeout_ms);
		conn_fail(id, RDMA_CM_EVENT_UNREACHABLE, -ETIMEDOUT, NULL, 0);
		break;
	case CM_CONNECTED: {
		/* Handed to the engine, which still waits for the peer-to-peer RTR. */
		struct eng_qp *qp = cm_qp(id) ? siw_verbs_qp(cm_qp(id)) : NULL;

		cm_err("connection from %s sent no ready-to-receive message (MPA peer-to-peer) "
		       "within %d ms; closing it (SIW_MPA_TIMEOUT_MS changes the wait)",
		       cm_addr_str(&id->id.route.addr.dst_addr, a), id->cfg.req_timeout_ms);
		/* closed() follows and reports CONNECT_ERROR (notify_one). */
		if (qp)
			eng_qp_disconnect(qp);
		break;
	}
	default:
		break;
	}
}

/* ---- the thread ----------------------------------------------------------------------------- */

static int next_timeout_ms(void)
{
	uint64_t now = cm_now_ms(), min = 0;

	for (struct cm_id *id = cm.timers; id; id = id->tnext)
		if (!min || id->deadline_ms < min)
			min = id->deadline_ms;
	if (!min)
		return -1;
	return min <= now ? 0 : (int)(min - now > 60000 ? 60000 : min - now);
}

static void run_timers(void)
{
	bool again = true;

	/* An expiry may free ids (and so change the list): rescan after each. */
	while (again) {
		uint64_t now = cm_now_ms();

		again = false;
		for (struct cm_id *id = cm.timers; id; id = id->tnext) {
			if (id->deadline_ms <= now) {
				cm_conn_timeout(id);
				again = true;
				break;
			}
		}
	}
}

static void *cm_thread_main(void *arg)
{
	struct epoll_event evs[64];

	(void)arg;
	for (;;) {
		int timeout, n;

		pthread_mutex_lock(&cm.lock);
		if (cm.stopping) {
			pthread_mutex_unlock(&cm.lock);
			break;
		}
		timeout = next_timeout_ms();
		pthread_mutex_unlock(&cm.lock);

		n = epoll_wait(cm.epfd, evs, 64, timeout);
		if (n < 0) {
			if (errno != EINTR) {
				cm_err("CM thread: epoll_wait: %s", strerror(errno));
				usleep(10000);
			}
			n = 0;
		}

		pthread_mutex_lock(&cm.lock);
		for (int i = 0; i < n; i++) {
			struct cm_id *id;

			if (evs[i].data.u64 == CM_WAKE_KEY) {
				uint64_t v;

				if (read(cm.wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					cm_err("CM thread: wake fd: %s", strerror(errno));
				continue;
			}
			/* Looked up by handle: the id may have been destroyed meanwhile. */
			id = cm_id_lookup(evs[i].data.u64);
			if (id && id->fd >= 0 && id->ep_events)
				cm_conn_io(id, evs[i].events);
		}
		cm_notify_run();
		run_timers();
		pthread_mutex_unlock(&cm.lock);
	}
	return NULL;
}

int cm_thread_ensure(void)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CM_WAKE_KEY};
	sigset_t all, old;
	int e;

	if (cm.thread_started)
		return 0;
	if (cm.epfd < 0) {
		cm.epfd = epoll_create1(EPOLL_CLOEXEC);
		if (cm.epfd < 0)
			return errno;
	}
	if (cm.wake_fd < 0) {
		cm.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (cm.wake_fd < 0)
			return errno;
		if (epoll_ctl(cm.epfd, EPOLL_CTL_ADD, cm.wake_fd, &ev) < 0) {
			e = errno;
			close(cm.wake_fd);
			cm.wake_fd = -1;
			return e;
		}
	}
	/* The application's signals are not ours to receive: the thread starts with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&cm.thread, NULL, cm_thread_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		cm_err("cannot start the CM thread: %s", strerror(e));
		return e;
	}
	cm.thread_started = true;
	pthread_setname_np(cm.thread, "siw-cm");
	return 0;
}

/*
 * Library unload (dlclose or exit): stop the CM thread. Device contexts stay open: at exit the
 * application may still use them (or be tearing them down in another thread), and the engine
 * goes away with the process anyway.
 */
__attribute__((destructor)) static void cm_fini(void)
{
	bool join;

	pthread_mutex_lock(&cm.lock);
	join = cm.thread_started;
	cm.stopping = true;
	pthread_mutex_unlock(&cm.lock);
	if (join) {
		cm_wake();
		pthread_join(cm.thread, NULL);
	}
	pthread_mutex_lock(&cm.lock);
	cm.thread_started = false;
	cm_notify_run();
	pthread_mutex_unlock(&cm.lock);
}
