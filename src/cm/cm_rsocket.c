// SPDX-License-Identifier: MIT
/*
 * The rsocket entry points of librdmacm (RDMACM_1.0): stream sockets over RDMA, as rsocket(7)
 * describes them, for softiwarp on both ends. The wire protocol and the design are described
 * in rsocket_int.h; the data path is in rsocket_data.c. This file has the socket-level calls:
 * descriptors, connection setup on the rdma_cm API, options, shutdown/close, rpoll/rselect.
 *
 * What is supported: AF_INET and AF_INET6 SOCK_STREAM rsockets (blocking, O_NONBLOCK and
 * MSG_DONTWAIT; MSG_PEEK, MSG_WAITALL), half-close, riomap/riounmap/riowrite, rpoll/rselect
 * over rsockets and ordinary descriptors mixed. SOCK_DGRAM rsockets need UD QPs, which iWARP
 * does not have: rsocket() refuses them. Options: SOL_SOCKET SO_ERROR, SO_TYPE, SO_REUSEADDR,
 * SO_KEEPALIVE (recorded; TCP underneath has its own), SO_LINGER (bounds rclose's wait for the
 * peer), SO_OOBINLINE (recorded), SO_SNDBUF/SO_RCVBUF (the staging and receive ring sizes, set
 * before connecting); IPPROTO_TCP TCP_NODELAY (accepted: messages are never delayed),
 * TCP_MAXSEG, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT (recorded); IPPROTO_IPV6 IPV6_V6ONLY; SOL_RDMA
 * RDMA_SQSIZE, RDMA_RQSIZE, RDMA_INLINE, RDMA_IOMAPSIZE. RDMA_ROUTE (IB path records) is not
 * supported.
 *
 * Differences from TCP worth knowing (rdma-core's rsockets share the first two):
 *	- no background progress: credits go back and requests are answered while the
 *	  application calls into the rsocket (any call, rpoll included);
 *	- a connection completes only when the server calls raccept, and the client's MPA
 *	  timer (SIW_MPA_TIMEOUT_MS, 10 s by default) runs meanwhile;
 *	- rclose waits (SO_LINGER, 2 s by default) for the peer to close or shut down too,
 *	  unless the peer already did: rstream's shutdown-then-close on both ends never waits.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rsocket_int.h"

/* ---- descriptors ----------------------------------------------------------------------------- */

/* rsockets by descriptor (the descriptor is the rsocket's event channel fd). */
static pthread_mutex_t rs_tab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rsock **rs_tab;
static int rs_tab_len;

static int rs_tab_set(int fd, struct rsock *rs)
{
	pthread_mutex_lock(&rs_tab_lock);
	if (fd >= rs_tab_len) {
		int len = rs_tab_len ? rs_tab_len : 256;
		struct rsock **t;

		while (len <= fd)
			len *= 2;
		t = realloc(rs_tab, (size_t)len * sizeof(*t));
		if (!t) {
			pthread_mutex_unlock(&rs_tab_lock);
			return ENOMEM;
		}
		memset(t + rs_tab_len, 0, (size_t)(len - rs_tab_len) * sizeof(*t));
		rs_tab = t;
		rs_tab_len = len;
	}
	rs_tab[fd] = rs;
	pthread_mutex_unlock(&rs_tab_lock);
	return 0;
}

static struct rsock *rs_lookup(int fd)
{
	struct rsock *rs = NULL;

	if (fd < 0)
		return NULL;
	pthread_mutex_lock(&rs_tab_lock);
	if (fd < rs_tab_len)
		rs = rs_tab[fd];
	pthread_mutex_unlock(&rs_tab_lock);
	return rs;
}

/* The rsocket of fd, locked; NULL with errno EBADF. */
static struct rsock *rs_get(int fd)
{
	struct rsock *rs = rs_lookup(fd);

	if (!rs) {
		errno = EBADF;
		return NULL;
	}
	pthread_mutex_lock(&rs->lock);
	return rs;
}

static void rs_put(struct rsock *rs)
{
	pthread_mutex_unlock(&rs->lock);
}

/* Returns -1 with errno = e after unlocking rs. */
static int rs_fail(struct rsock *rs, int e)
{
	rs_put(rs);
	return cm_seterr(e);
}

static int rs_set_nonblock_fd(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return errno;
	return 0;
}

/* A new rsocket with its event channel and id (options default or inherited from lrs). */
static struct rsock *rs_new(int domain, const struct rsock *lrs)
{
	struct rsock *rs = calloc(1, sizeof(*rs));
	pthread_condattr_t ca;
	int e;

	if (!rs) {
		errno = ENOMEM;
		return NULL;
	}
	rs->fd = -1;
	rs->domain = domain;
	pthread_mutex_init(&rs->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rs->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (lrs) {
		rs->sbuf_size = lrs->sbuf_size;
		rs->rbuf_size = lrs->rbuf_size;
		rs->sq_size = lrs->sq_size;
		rs->rq_size = lrs->rq_size;
		rs->sq_inline = lrs->sq_inline;
		rs->iomap_size = lrs->iomap_size;
		rs->keepalive = lrs->keepalive;
		rs->oobinline = lrs->oobinline;
		rs->nodelay = lrs->nodelay;
		rs->maxseg = lrs->maxseg;
		rs->keepidle = lrs->keepidle;
		rs->keepintvl = lrs->keepintvl;
		rs->keepcnt = lrs->keepcnt;
		rs->linger = lrs->linger;
	} else {
		rs->sbuf_size = RS_DEF_BUF;
		rs->rbuf_size = RS_DEF_BUF;
		rs->sq_size = RS_DEF_QSIZE;
		rs->rq_size = RS_DEF_QSIZE;
		rs->sq_inline = RS_DEF_INLINE;
		rs->keepidle = 7200;
		rs->keepintvl = 75;
		rs->keepcnt = 9;
	}
	rs->v6only = -1;
	rs->ch = rdma_create_event_channel();
	if (!rs->ch)
		goto err;
	e = rs_set_nonblock_fd(rs->ch->fd);
	if (e) {
		errno = e;
		goto err;
	}
	rs->fd = rs->ch->fd;
	return rs;
err:
	e = errno;
	if (rs->ch)
		rdma_destroy_event_channel(rs->ch);
	pthread_cond_destroy(&rs->cv);
	pthread_mutex_destroy(&rs->lock);
	free(rs);
	errno = e;
	return NULL;
}

/* Frees an rsocket that is no longer in the table. */
static void rs_free(struct rsock *rs)
{
	rs_destroy_resources(rs);
	if (rs->id)
		rdma_destroy_id(rs->id);
	if (rs->ch)
		rdma_destroy_event_channel(rs->ch);
	pthread_cond_destroy(&rs->cv);
	pthread_mutex_destroy(&rs->lock);
	free(rs);
}

CM_API int rsocket(int domain, int type, int protocol)
{
	int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct rsock *rs;
	int e;

	cm_init();
	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (domain != AF_INET && domain != AF_INET6)
		return cm_seterr(EAFNOSUPPORT);
	if (type != SOCK_STREAM) {
		if (type == SOCK_DGRAM)
			cm_info("rsocket: datagram rsockets need UD QPs, which iWARP does not "
				"have");
		return cm_seterr(ENOTSUP);
	}
	if (protocol && protocol != IPPROTO_TCP)
		return cm_seterr(EPROTONOSUPPORT);
	rs = rs_new(domain, NULL);
	if (!rs)
		return -1;
	rs->nonblock = flags & SOCK_NONBLOCK;
	if (rdma_create_id(rs->ch, &rs->id, rs, RDMA_PS_TCP)) {
		e = errno;
		rs_free(rs);
		return cm_seterr(e);
	}
	e = rs_tab_set(rs->fd, rs);
	if (e) {
		rs_free(rs);
		return cm_seterr(e);
	}
	return rs->fd;
}

/* ---- addresses and connection setup ---------------------------------------------------------- */

static int rs_check_addr(const struct rsock *rs, const struct sockaddr *addr, socklen_t len)
{
	if (!addr)
		return EFAULT;
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		return rs->domain == AF_INET || rs->domain == AF_INET6 ? 0 : EAFNOSUPPORT;
	if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		return rs->domain == AF_INET6 ? 0 : EAFNOSUPPORT;
	return addr->sa_family == AF_INET || addr->sa_family == AF_INET6 ? EINVAL : EAFNOSUPPORT;
}

static void rs_apply_id_options(struct rsock *rs)
{
	if (rs->v6only >= 0)
		rdma_set_option(rs->id, RDMA_OPTION_ID, RDMA_OPTION_ID_AFONLY, &rs->v6only,
				sizeof(rs->v6only));
	if (rs->reuseaddr)
		rdma_set_option(rs->id, RDMA_OPTION_ID, RDMA_OPTION_ID_REUSEADDR, &rs->reuseaddr,
				sizeof(rs->reuseaddr));
}

CM_API int rbind(int socket, const struct sockaddr *addr, socklen_t addrlen)
{
	struct rsock *rs = rs_get(socket);
	int e;

	if (!rs)
		return -1;
	e = rs_check_addr(rs, addr, addrlen);
	if (e)
		return rs_fail(rs, e);
	if (rs->state != RS_IDLE)
		return rs_fail(rs, EINVAL);
	rs_apply_id_options(rs);
	if (rdma_bind_addr(rs->id, (struct sockaddr *)addr))
		return rs_fail(rs, errno);
	rs->state = RS_BOUND;
	rs_put(rs);
	return 0;
}

CM_API int rlisten(int socket, int backlog)
{
	struct rsock *rs = rs_get(socket);

	if (!rs)
		return -1;
	if (rs->state == RS_LISTENING) {
		rs_put(rs);
		return 0;
	}
	if (rs->state != RS_IDLE && rs->state != RS_BOUND)
		return rs_fail(rs, EINVAL);
	if (rs->state == RS_IDLE)
		rs_apply_id_options(rs);
	if (rdma_listen(rs->id, backlog))
		return rs_fail(rs, errno);
	rs->state = RS_LISTENING;
	rs_put(rs);
	return 0;
}

/* Takes a connection request: a new rsocket, accepted (ESTABLISHED still to come). */
static struct rsock *rs_accept_one(struct rsock *lrs, struct rdma_cm_id *cid, const void *pd,
				   size_t pdlen)
{
	struct rdma_conn_param param;
	uint8_t conn[RS_CONN_LEN];
	struct rsock *rs;
	char a[CM_ADDRSTRLEN];
	int e;

	rs = rs_new(lrs->domain, lrs);
	if (!rs) {
		e = errno;
		goto reject;
	}
	e = rs_conn_peer(rs, pd, pdlen);
	if (e) {
		cm_err("rsocket %d: refused a connection from %s: not a softiwarp rsocket "
		       "(no rsocket connection data)",
		       lrs->fd, cm_addr_str(rdma_get_peer_addr(cid), a));
		goto reject;
	}
	if (rdma_migrate_id(cid, rs->ch)) {
		e = errno;
		goto reject;
	}
	cid->context = rs;
	rs->id = cid;
	e = rs_create_resources(rs);
	if (e) {
		cm_err("rsocket %d: cannot set up a connection from %s: %s", lrs->fd,
		       cm_addr_str(rdma_get_peer_addr(cid), a), strerror(e));
		goto reject;
	}
	rs_conn_data(rs, conn);
	memset(&param, 0, sizeof(param));
	param.private_data = conn;
	param.private_data_len = RS_CONN_LEN;
	param.responder_resources = 1;
	param.initiator_depth = 1;
	if (rdma_accept(cid, &param)) {
		e = errno;
		cm_err("rsocket %d: accepting %s failed: %s", lrs->fd,
		       cm_addr_str(rdma_get_peer_addr(cid), a), strerror(e));
		rs_destroy_resources(rs);
		rs->id = NULL;
		rs_free(rs);
		rdma_destroy_id(cid);
		errno = e;
		return NULL;
	}
	rs->state = RS_ACCEPTING;
	e = rs_tab_set(rs->fd, rs);
	if (e) {
		rs_close_connection(rs, 0);
		rs_free(rs);
		errno = e;
		return NULL;
	}
	return rs;

reject:
	rdma_reject(cid, NULL, 0);
	if (rs) {
		rs_destroy_resources(rs);
		rs->id = NULL;
		rs_free(rs);
	}
	rdma_destroy_id(cid);
	errno = e;
	return NULL;
}

CM_API int raccept(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	struct rsock *lrs = rs_get(socket), *rs;

	if (!lrs)
		return -1;
	if (lrs->state != RS_LISTENING)
		return rs_fail(lrs, EINVAL);
	for (;;) {
		struct rdma_cm_event *ev;
		struct rdma_cm_id *cid;
		uint8_t pd[RS_CONN_LEN];
		size_t pdlen = 0;

		if (rdma_get_cm_event(lrs->ch, &ev)) {
			struct pollfd p = {.fd = lrs->fd, .events = POLLIN};

			if (errno != EAGAIN)
				return rs_fail(lrs, errno);
			if (lrs->nonblock)
				return rs_fail(lrs, EAGAIN);
			rs_put(lrs);
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				return -1;
			pthread_mutex_lock(&lrs->lock);
			if (lrs->state != RS_LISTENING)
				return rs_fail(lrs, EINVAL);
			continue;
		}
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdma_ack_cm_event(ev);
			continue;
		}
		cid = ev->id;
		if (ev->param.conn.private_data && ev->param.conn.private_data_len >= RS_CONN_LEN) {
			pdlen = RS_CONN_LEN;
			memcpy(pd, ev->param.conn.private_data, pdlen);
		}
		rdma_ack_cm_event(ev);
		rs = rs_accept_one(lrs, cid, pdlen ? pd : NULL, pdlen);
		if (!rs) {
			/* A peer that is not an rsocket is turned away; the next one may be. */
			if (errno == ECONNREFUSED)
				continue;
			return rs_fail(lrs, errno);
		}
		break;
	}
	rs_put(lrs);
	if (addr && addrlen) {
		const struct sockaddr *pa = rdma_get_peer_addr(rs->id);
		socklen_t len = cm_addr_len(pa);

		memcpy(addr, pa, *addrlen < len ? *addrlen : len);
		*addrlen = len;
	}
	return rs->fd;
}

/* The next CM event during address/route resolution; 0 if it is `want`, else an errno. */
static int rs_cm_expect(struct rsock *rs, enum rdma_cm_event_type want)
{
	uint64_t deadline = rs_now_ms() + RS_CONNECT_MS;

	for (;;) {
		struct rdma_cm_event *ev;
		struct pollfd p = {.fd = rs->fd, .events = POLLIN};
		enum rdma_cm_event_type type;
		int st;

		if (rdma_get_cm_event(rs->ch, &ev) == 0) {
			type = ev->event;
			st = ev->status < 0 ? -ev->status : ev->status;
			rdma_ack_cm_event(ev);
			if (type == want)
				return 0;
			return st ? st : EHOSTUNREACH;
		}
		if (errno != EAGAIN)
			return errno;
		if (rs_now_ms() >= deadline)
			return ETIMEDOUT;
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			return errno;
	}
}

static bool rs_connect_settled(struct rsock *rs)
{
	return rs->state != RS_CONNECTING;
}

CM_API int rconnect(int socket, const struct sockaddr *addr, socklen_t addrlen)
{
	struct rsock *rs = rs_get(socket);
	struct rdma_conn_param param;
	uint8_t conn[RS_CONN_LEN];
	int e;

	if (!rs)
		return -1;
	switch (rs->state) {
	case RS_IDLE:
	case RS_BOUND:
		break;
	case RS_CONNECTING:
		return rs_fail(rs, EALREADY);
	case RS_CONNECTED:
	case RS_ACCEPTING:
		return rs_fail(rs, EISCONN);
	default:
		return rs_fail(rs, EINVAL);
	}
	e = rs_check_addr(rs, addr, addrlen);
	if (e)
		return rs_fail(rs, e);
	if (rs->state == RS_IDLE)
		rs_apply_id_options(rs);
	/* Resolution is local (the CM queues its result at once). */
	if (rdma_resolve_addr(rs->id, NULL, (struct sockaddr *)addr, 2000))
		return rs_fail(rs, errno);
	e = rs_cm_expect(rs, RDMA_CM_EVENT_ADDR_RESOLVED);
	if (!e && rdma_resolve_route(rs->id, 2000))
		e = errno;
	if (!e)
		e = rs_cm_expect(rs, RDMA_CM_EVENT_ROUTE_RESOLVED);
	if (!e)
		e = rs_create_resources(rs);
	if (e)
		goto fail;
	rs_conn_data(rs, conn);
	memset(&param, 0, sizeof(param));
	param.private_data = conn;
	param.private_data_len = RS_CONN_LEN;
	/* As rdma-core's rsockets on iWARP: room for the peer-to-peer RTR READ. */
	param.responder_resources = 1;
	param.initiator_depth = 1;
	param.retry_count = 7;
	param.rnr_retry_count = 7;
	if (rdma_connect(rs->id, &param)) {
		e = errno;
		goto fail;
	}
	rs->state = RS_CONNECTING;
	if (rs->nonblock)
		return rs_fail(rs, EINPROGRESS);
	e = rs_wait(rs, rs_connect_settled, -1);
	if (!e && rs->state != RS_CONNECTED) {
		e = rs->err ? rs->err : ECONNREFUSED;
		rs->err = 0; /* reported here, not again by SO_ERROR */
	}
	if (e)
		return rs_fail(rs, e);
	rs_put(rs);
	return 0;

fail:
	/* The socket cannot be used for another attempt (as TCP after a failed connect). */
	rs_destroy_resources(rs);
	rs->state = RS_FAILED;
	return rs_fail(rs, e);
}

CM_API int rgetpeername(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	struct rsock *rs = rs_get(socket);
	const struct sockaddr *pa;
	socklen_t len;

	if (!rs)
		return -1;
	if (!addr || !addrlen)
		return rs_fail(rs, EFAULT);
	if (rs->state != RS_CONNECTED && rs->state != RS_ACCEPTING)
		return rs_fail(rs, ENOTCONN);
	pa = rdma_get_peer_addr(rs->id);
	len = cm_addr_len(pa);
	memcpy(addr, pa, *addrlen < len ? *addrlen : len);
	*addrlen = len;
	rs_put(rs);
	return 0;
}

CM_API int rgetsockname(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	struct rsock *rs = rs_get(socket);
	struct sockaddr_storage ss;
	const struct sockaddr *la;
	socklen_t len;

	if (!rs)
		return -1;
	if (!addr || !addrlen)
		return rs_fail(rs, EFAULT);
	la = rdma_get_local_addr(rs->id);
	len = cm_addr_len(la);
	if (!len) {
		/* Not bound yet: the wildcard of the socket's family, port 0. */
		memset(&ss, 0, sizeof(ss));
		ss.ss_family = (sa_family_t)rs->domain;
		la = (const struct sockaddr *)&ss;
		len = rs->domain == AF_INET6 ? sizeof(struct sockaddr_in6)
					     : sizeof(struct sockaddr_in);
	}
	memcpy(addr, la, *addrlen < len ? *addrlen : len);
	*addrlen = len;
	rs_put(rs);
	return 0;
}

/* ---- data calls ------------------------------------------------------------------------------ */

static ssize_t rs_sendv(int socket, const struct iovec *iov, int iovcnt, int flags)
{
	struct rsock *rs = rs_get(socket);
	ssize_t r;

	if (!rs)
		return -1;
	if (iovcnt < 0 || (iovcnt && !iov))
		return rs_fail(rs, EINVAL);
	r = rs_send_locked(rs, iov, iovcnt, flags);
	rs_put(rs);
	return r;
}

static ssize_t rs_recvv(int socket, const struct iovec *iov, int iovcnt, int flags)
{
	struct rsock *rs = rs_get(socket);
	ssize_t r;

	if (!rs)
		return -1;
	if (iovcnt < 0 || (iovcnt && !iov))
		return rs_fail(rs, EINVAL);
	r = rs_recv_locked(rs, iov, iovcnt, flags);
	rs_put(rs);
	return r;
}

CM_API ssize_t rsend(int socket, const void *buf, size_t len, int flags)
{
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};

	return rs_sendv(socket, &v, 1, flags);
}

CM_API ssize_t rsendto(int socket, const void *buf, size_t len, int flags,
		       const struct sockaddr *dest_addr, socklen_t addrlen)
{
	/* A connected stream socket: an address is an error, as with TCP. */
	if (dest_addr || addrlen) {
		struct rsock *rs = rs_lookup(socket);

		if (!rs)
			return cm_seterr(EBADF);
		return cm_seterr(EISCONN);
	}
	return rsend(socket, buf, len, flags);
}

CM_API ssize_t rsendmsg(int socket, const struct msghdr *msg, int flags)
{
	if (!msg)
		return cm_seterr(EFAULT);
	if (msg->msg_control && msg->msg_controllen)
		return cm_seterr(ENOTSUP);
	return rs_sendv(socket, msg->msg_iov, (int)msg->msg_iovlen, flags);
}

CM_API ssize_t rwrite(int socket, const void *buf, size_t count)
{
	return rsend(socket, buf, count, 0);
}

CM_API ssize_t rwritev(int socket, const struct iovec *iov, int iovcnt)
{
	return rs_sendv(socket, iov, iovcnt, 0);
}

CM_API ssize_t rrecv(int socket, void *buf, size_t len, int flags)
{
	struct iovec v = {.iov_base = buf, .iov_len = len};

	return rs_recvv(socket, &v, 1, flags);
}

CM_API ssize_t rrecvfrom(int socket, void *buf, size_t len, int flags, struct sockaddr *src_addr,
			 socklen_t *addrlen)
{
	ssize_t r = rrecv(socket, buf, len, flags);

	if (r >= 0 && src_addr && addrlen) {
		int e = errno;

		if (rgetpeername(socket, src_addr, addrlen))
			*addrlen = 0;
		errno = e;
	}
	return r;
}

CM_API ssize_t rrecvmsg(int socket, struct msghdr *msg, int flags)
{
	ssize_t r;

	if (!msg)
		return cm_seterr(EFAULT);
	r = rs_recvv(socket, msg->msg_iov, (int)msg->msg_iovlen, flags);
	if (r >= 0) {
		msg->msg_flags = 0;
		msg->msg_controllen = 0;
		if (msg->msg_name && msg->msg_namelen) {
			if (rgetpeername(socket, msg->msg_name, &msg->msg_namelen))
				msg->msg_namelen = 0;
		}
	}
	return r;
}

CM_API ssize_t rread(int socket, void *buf, size_t count)
{
	return rrecv(socket, buf, count, 0);
}

CM_API ssize_t rreadv(int socket, const struct iovec *iov, int iovcnt)
{
	return rs_recvv(socket, iov, iovcnt, 0);
}

CM_API off_t riomap(int socket, void *buf, size_t len, int prot, int flags, off_t offset)
{
	struct rsock *rs = rs_get(socket);
	off_t r;

	if (!rs)
		return -1;
	if (flags)
		return rs_fail(rs, EINVAL);
	r = rs_iomap_locked(rs, buf, len, prot, offset);
	rs_put(rs);
	return r;
}

CM_API int riounmap(int socket, void *buf, size_t len)
{
	struct rsock *rs = rs_get(socket);
	int r;

	if (!rs)
		return -1;
	r = rs_iounmap_locked(rs, buf, len);
	rs_put(rs);
	return r;
}

CM_API size_t riowrite(int socket, const void *buf, size_t count, off_t offset, int flags)
{
	struct rsock *rs = rs_get(socket);
	ssize_t r;

	/* rsocket.h gives riowrite a size_t result; errors are -1 cast to it, as in rdma-core. */
	if (!rs)
		return (size_t)-1;
	if (offset < 0) {
		rs_fail(rs, EINVAL);
		return (size_t)-1;
	}
	r = rs_iowrite_locked(rs, buf, count, (uint64_t)offset, flags);
	rs_put(rs);
	return (size_t)r;
}

/* ---- shutdown and close ---------------------------------------------------------------------- */

static bool rs_settled(struct rsock *rs)
{
	return rs->state != RS_CONNECTING && rs->state != RS_ACCEPTING;
}

static int rs_linger_ms(const struct rsock *rs)
{
	if (rs->linger.l_onoff)
		return rs->linger.l_linger > 0 ? rs->linger.l_linger * 1000 : 0;
	return RS_LINGER_MS;
}

CM_API int rshutdown(int socket, int how)
{
	struct rsock *rs = rs_get(socket);
	uint8_t flags = 0;

	if (!rs)
		return -1;
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return rs_fail(rs, EINVAL);
	if (rs->state == RS_CONNECTING || rs->state == RS_ACCEPTING)
		rs_wait(rs, rs_settled, rs_linger_ms(rs));
	if (rs->state != RS_CONNECTED)
		return rs_fail(rs, ENOTCONN);
	rs_progress(rs);
	if (how != SHUT_WR && !rs->rd_shut) {
		/* What was not read is dropped; its ring space goes back to the peer. */
		rs->rd_shut = true;
		rs->ret_bytes += rs->runread;
		rs->rtail = (rs->rtail + rs->runread) % rs->rbuf_size;
		rs->runread = 0;
	}
	if (how != SHUT_RD)
		rs->wr_shut = true;
	if (rs->wr_shut)
		flags |= RS_FIN_WR;
	if (rs->wr_shut && rs->rd_shut)
		flags |= RS_FIN_RD;
	rs_send_fin(rs, flags, rs_linger_ms(rs));
	rs_progress(rs);
	rs_put(rs);
	return 0;
}

CM_API int rclose(int socket)
{
	struct rsock *rs = rs_lookup(socket);

	if (!rs)
		return cm_seterr(EBADF);
	/* From here on the descriptor names nothing (its number is reused once closed). */
	rs_tab_set(socket, NULL);
	pthread_mutex_lock(&rs->lock);
	rs_close_connection(rs, rs_linger_ms(rs));
	pthread_mutex_unlock(&rs->lock);
	rs_free(rs);
	return 0;
}

/* ---- options --------------------------------------------------------------------------------- */

static uint32_t clamp_u32(int v, uint32_t lo, uint32_t hi)
{
	if (v < 0 || (uint32_t)v < lo)
		return lo;
	return (uint32_t)v > hi ? hi : (uint32_t)v;
}

/* Sizes of the connection are fixed once it has resources. */
static bool rs_configurable(const struct rsock *rs)
{
	return rs->state == RS_IDLE || rs->state == RS_BOUND || rs->state == RS_LISTENING;
}

CM_API int rsetsockopt(int socket, int level, int optname, const void *optval, socklen_t optlen)
{
	struct rsock *rs = rs_get(socket);
	int v;

	if (!rs)
		return -1;
	if (!optval)
		return rs_fail(rs, EFAULT);
	if (level == SOL_SOCKET && optname == SO_LINGER) {
		if (optlen < sizeof(struct linger))
			return rs_fail(rs, EINVAL);
		memcpy(&rs->linger, optval, sizeof(rs->linger));
		rs_put(rs);
		return 0;
	}
	if (optlen < sizeof(int))
		return rs_fail(rs, EINVAL);
	memcpy(&v, optval, sizeof(v));
	switch (level) {
	case SOL_SOCKET:
		switch (optname) {
		case SO_REUSEADDR:
			rs->reuseaddr = v ? 1 : 0;
			if (rs->state == RS_IDLE)
				rdma_set_option(rs->id, RDMA_OPTION_ID, RDMA_OPTION_ID_REUSEADDR,
						&rs->reuseaddr, sizeof(rs->reuseaddr));
			break;
		case SO_KEEPALIVE:
			rs->keepalive = v ? 1 : 0;
			break;
		case SO_OOBINLINE:
			rs->oobinline = v ? 1 : 0;
			break;
		case SO_SNDBUF:
			if (rs_configurable(rs))
				rs->sbuf_size = clamp_u32(v, RS_MIN_BUF, RS_MAX_BUF);
			break;
		case SO_RCVBUF:
			if (rs_configurable(rs))
				rs->rbuf_size = clamp_u32(v, RS_MIN_BUF, RS_MAX_BUF);
			break;
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	case IPPROTO_TCP:
		switch (optname) {
		case TCP_NODELAY:
			rs->nodelay = v ? 1 : 0; /* messages are sent at once anyway */
			break;
		case TCP_MAXSEG:
			if (v < 0)
				return rs_fail(rs, EINVAL);
			rs->maxseg = v;
			break;
		case TCP_KEEPIDLE:
		case TCP_KEEPINTVL:
		case TCP_KEEPCNT:
			if (v < 1)
				return rs_fail(rs, EINVAL);
			if (optname == TCP_KEEPIDLE)
				rs->keepidle = v;
			else if (optname == TCP_KEEPINTVL)
				rs->keepintvl = v;
			else
				rs->keepcnt = v;
			break;
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	case IPPROTO_IPV6:
		if (optname != IPV6_V6ONLY)
			return rs_fail(rs, ENOPROTOOPT);
		if (rs->domain != AF_INET6 || rs->state != RS_IDLE)
			return rs_fail(rs, EINVAL);
		rs->v6only = v ? 1 : 0;
		break;
	case SOL_RDMA:
		switch (optname) {
		case RDMA_SQSIZE:
		case RDMA_RQSIZE:
			if (!rs_configurable(rs))
				return rs_fail(rs, EINVAL);
			if (optname == RDMA_SQSIZE)
				rs->sq_size = (uint16_t)clamp_u32(v, RS_MIN_QSIZE, RS_MAX_QSIZE);
			else
				rs->rq_size = (uint16_t)clamp_u32(v, RS_MIN_QSIZE, RS_MAX_QSIZE);
			break;
		case RDMA_INLINE:
			/* On a connection it can only shrink below what its QP was made with. */
			rs->sq_inline = (uint16_t)clamp_u32(
			    v, 0, rs_configurable(rs) ? ENG_MAX_INLINE : rs->qp_inline);
			break;
		case RDMA_IOMAPSIZE:
			if (!rs_configurable(rs))
				return rs_fail(rs, EINVAL);
			rs->iomap_size = (uint16_t)clamp_u32(v, 0, 1024);
			break;
		case RDMA_ROUTE:
			/* An IB path record: iWARP routes are TCP's. */
			return rs_fail(rs, ENOTSUP);
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	default:
		return rs_fail(rs, ENOPROTOOPT);
	}
	rs_put(rs);
	return 0;
}

CM_API int rgetsockopt(int socket, int level, int optname, void *optval, socklen_t *optlen)
{
	struct rsock *rs = rs_get(socket);
	int v = 0;

	if (!rs)
		return -1;
	if (!optval || !optlen)
		return rs_fail(rs, EFAULT);
	if (level == SOL_SOCKET && optname == SO_LINGER) {
		if (*optlen < sizeof(struct linger))
			return rs_fail(rs, EINVAL);
		memcpy(optval, &rs->linger, sizeof(rs->linger));
		*optlen = sizeof(struct linger);
		rs_put(rs);
		return 0;
	}
	if (*optlen < sizeof(int))
		return rs_fail(rs, EINVAL);
	switch (level) {
	case SOL_SOCKET:
		switch (optname) {
		case SO_ERROR:
			/* A connect that finished meanwhile (rpoll may not have looked). */
			rs_progress(rs);
			v = rs->err;
			rs->err = 0;
			break;
		case SO_TYPE:
			v = SOCK_STREAM;
			break;
		case SO_REUSEADDR:
			v = rs->reuseaddr;
			break;
		case SO_KEEPALIVE:
			v = rs->keepalive;
			break;
		case SO_OOBINLINE:
			v = rs->oobinline;
			break;
		case SO_SNDBUF:
			v = (int)rs->sbuf_size;
			break;
		case SO_RCVBUF:
			v = (int)rs->rbuf_size;
			break;
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	case IPPROTO_TCP:
		switch (optname) {
		case TCP_NODELAY:
			v = rs->nodelay;
			break;
		case TCP_MAXSEG:
			v = rs->maxseg ? rs->maxseg : 1460;
			break;
		case TCP_KEEPIDLE:
			v = rs->keepidle;
			break;
		case TCP_KEEPINTVL:
			v = rs->keepintvl;
			break;
		case TCP_KEEPCNT:
			v = rs->keepcnt;
			break;
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	case IPPROTO_IPV6:
		if (optname != IPV6_V6ONLY || rs->domain != AF_INET6)
			return rs_fail(rs, ENOPROTOOPT);
		v = rs->v6only > 0;
		break;
	case SOL_RDMA:
		switch (optname) {
		case RDMA_SQSIZE:
			v = rs->sq_size;
			break;
		case RDMA_RQSIZE:
			v = rs->rq_size;
			break;
		case RDMA_INLINE:
			v = rs->sq_inline;
			break;
		case RDMA_IOMAPSIZE:
			v = rs->iomap_size;
			break;
		default:
			return rs_fail(rs, ENOPROTOOPT);
		}
		break;
	default:
		return rs_fail(rs, ENOPROTOOPT);
	}
	memcpy(optval, &v, sizeof(v));
	*optlen = sizeof(int);
	rs_put(rs);
	return 0;
}

CM_API int rfcntl(int socket, int cmd, ... /* arg */)
{
	struct rsock *rs = rs_get(socket);
	va_list ap;
	int arg, r = 0;

	if (!rs)
		return -1;
	switch (cmd) {
	case F_GETFL:
		r = O_RDWR | (rs->nonblock ? O_NONBLOCK : 0);
		break;
	case F_SETFL:
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
		/* Only the flag is kept: the descriptors underneath always stay non-blocking. */
		rs->nonblock = arg & O_NONBLOCK;
		break;
	case F_GETFD:
		r = fcntl(rs->fd, F_GETFD);
		break;
	case F_SETFD:
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
		r = fcntl(rs->fd, F_SETFD, arg);
		break;
	default:
		return rs_fail(rs, ENOTSUP);
	}
	rs_put(rs);
	return r;
}

/* ---- rpoll / rselect ------------------------------------------------------------------------- */

/* Readiness of one rsocket (not a listener); arms its CQ first if it is not ready. */
static short rs_poll_eval(struct rsock *rs, short events, bool arm)
{
	short mask = (short)(events | POLLERR | POLLHUP);
	short rev;

	pthread_mutex_lock(&rs->lock);
	rs_progress(rs);
	rev = rs_events(rs) & mask;
	if (!rev && arm && rs->cq && !rs->armed) {
		rs_arm(rs);
		rs_progress(rs);
		rev = rs_events(rs) & mask;
	}
	pthread_mutex_unlock(&rs->lock);
	return rev;
}

static bool rs_is_listener(struct rsock *rs)
{
	bool l;

	pthread_mutex_lock(&rs->lock);
	l = rs->state == RS_LISTENING;
	pthread_mutex_unlock(&rs->lock);
	return l;
}

CM_API int rpoll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	struct rsock *small_rs[16], **rss = small_rs;
	struct pollfd small_p[32], *p = small_p;
	short small_lev[16], *lev = small_lev;
	uint64_t deadline = timeout > 0 ? rs_now_ms() + (uint64_t)timeout : 0;
	bool any = false;
	int ret = -1;

	if (!fds && nfds)
		return cm_seterr(EFAULT);
	if (nfds > 16) {
		rss = calloc(nfds, sizeof(*rss));
		p = calloc(nfds * 2, sizeof(*p));
		lev = calloc(nfds, sizeof(*lev));
		if (!rss || !p || !lev) {
			ret = cm_seterr(ENOMEM);
			goto out;
		}
	}
	for (nfds_t i = 0; i < nfds; i++) {
		rss[i] = rs_lookup(fds[i].fd);
		lev[i] = fds[i].events;
		/* A listener is polled as its event channel fd: readable = connection waiting. */
		if (rss[i] && rs_is_listener(rss[i])) {
			rss[i] = NULL;
			lev[i] = fds[i].events & POLLIN;
		}
		any |= rss[i] != NULL;
	}
	if (!any) {
		/* Ordinary descriptors and listeners only (rping's CM thread, ucmatose). */
		for (nfds_t i = 0; i < nfds; i++) {
			p[i].fd = fds[i].fd;
			p[i].events = lev[i];
		}
		ret = poll(p, nfds, timeout);
		for (nfds_t i = 0; ret >= 0 && i < nfds; i++)
			fds[i].revents = p[i].revents;
		goto out;
	}
	for (;;) {
		int ready = 0, wait_ms = timeout, sleep_ms, r;
		nfds_t np = 0;

		for (nfds_t i = 0; i < nfds; i++) {
			fds[i].revents = 0;
			if (!rss[i])
				continue;
			fds[i].revents = rs_poll_eval(rss[i], fds[i].events, true);
			ready += fds[i].revents != 0;
		}
		for (nfds_t i = 0; i < nfds; i++) {
			if (!rss[i]) {
				p[np].fd = fds[i].fd;
				p[np++].events = lev[i];
				continue;
			}
			p[np].fd = rss[i]->fd;
			p[np++].events = POLLIN;
			if (rss[i]->cch) {
				p[np].fd = rss[i]->cch->fd;
				p[np++].events = POLLIN;
			}
		}
		if (ready) {
			wait_ms = 0;
		} else if (timeout > 0) {
			uint64_t now = rs_now_ms();

			wait_ms = now >= deadline ? 0 : (int)(deadline - now);
		}
		/*
		 * Sleep in slices: another thread using one of these rsockets may take the
		 * completion event we sleep on (it then sees the news, but we would not).
		 */
		sleep_ms = wait_ms < 0 || wait_ms > RS_POLL_SLICE_MS ? RS_POLL_SLICE_MS : wait_ms;
		r = poll(p, np, sleep_ms);
		if (r < 0)
			goto out;
		np = 0;
		for (nfds_t i = 0; i < nfds; i++) {
			bool fired;

			if (!rss[i]) {
				fds[i].revents = p[np++].revents;
				ready += fds[i].revents != 0;
				continue;
			}
			fired = p[np++].revents != 0;
			if (rss[i]->cch)
				fired |= p[np++].revents != 0;
			if (!fired || fds[i].revents)
				continue;
			pthread_mutex_lock(&rss[i]->lock);
			rs_drain_cq_events(rss[i]);
			pthread_mutex_unlock(&rss[i]->lock);
			fds[i].revents = rs_poll_eval(rss[i], fds[i].events, false);
			ready += fds[i].revents != 0;
		}
		if (ready || wait_ms == 0) {
			ret = ready;
			goto out;
		}
		if (r == 0 && timeout > 0 && rs_now_ms() >= deadline) {
			ret = 0;
			goto out;
		}
	}
out:
	if (rss != small_rs)
		free(rss);
	if (p != small_p)
		free(p);
	if (lev != small_lev)
		free(lev);
	return ret;
}

CM_API int rselect(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
		   struct timeval *timeout)
{
	struct pollfd *p;
	bool any = false;
	int n = 0, ret, ms = -1;

	if (nfds < 0 || nfds > FD_SETSIZE)
		return cm_seterr(EINVAL);
	for (int fd = 0; fd < nfds && !any; fd++) {
		if ((readfds && FD_ISSET(fd, readfds)) || (writefds && FD_ISSET(fd, writefds)) ||
		    (exceptfds && FD_ISSET(fd, exceptfds)))
			any = rs_lookup(fd) != NULL;
	}
	if (!any)
		return select(nfds, readfds, writefds, exceptfds, timeout);

	p = calloc((size_t)nfds, sizeof(*p));
	if (!p)
		return cm_seterr(ENOMEM);
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (readfds && FD_ISSET(fd, readfds))
			ev |= POLLIN;
		if (writefds && FD_ISSET(fd, writefds))
			ev |= POLLOUT;
		if (exceptfds && FD_ISSET(fd, exceptfds))
			ev |= POLLPRI;
		if (!ev)
			continue;
		p[n].fd = fd;
		p[n++].events = ev;
	}
	if (timeout) {
		long long t = (long long)timeout->tv_sec * 1000 + (timeout->tv_usec + 999) / 1000;

		ms = t > INT32_MAX ? INT32_MAX : (int)t;
	}
	ret = rpoll(p, (nfds_t)n, ms);
	if (ret < 0) {
		free(p);
		return -1;
	}
	if (readfds)
		FD_ZERO(readfds);
	if (writefds)
		FD_ZERO(writefds);
	if (exceptfds)
		FD_ZERO(exceptfds);
	ret = 0;
	for (int i = 0; i < n; i++) {
		short r = p[i].revents;

		if (r & POLLNVAL) {
			free(p);
			return cm_seterr(EBADF);
		}
		if ((p[i].events & POLLIN) && (r & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(p[i].fd, readfds);
			ret++;
		}
		if ((p[i].events & POLLOUT) && (r & (POLLOUT | POLLERR))) {
			FD_SET(p[i].fd, writefds);
			ret++;
		}
		if ((p[i].events & POLLPRI) && (r & POLLPRI)) {
			FD_SET(p[i].fd, exceptfds);
			ret++;
		}
	}
	free(p);
	return ret;
}
