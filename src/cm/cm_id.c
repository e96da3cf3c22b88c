// SPDX-License-Identifier: MIT
/*
 * rdma_cm_id life cycle and the address/connection calls of the API.
 *
 * Everything here runs on the application's thread under cm.lock; what has to wait for the
 * network (TCP connect, the MPA exchange, the engine's established/closed) continues on the CM
 * thread (cm_conn.c) and comes back as events. In synchronous mode (no event channel given)
 * the id has a private channel and each call waits for its own result event afterwards, as
 * rdma-core's librdmacm does (ucma_complete).
 *
 * Address resolution needs no kernel rdma_cm: the local address towards a destination is what
 * the routing table picks for a UDP socket connected to it, and the device is the one owning
 * that address (eng_device_by_addr). For iWARP the rdma_cm port is the TCP port, so an id's
 * socket is created and bound as soon as its local address is known (rdma_bind_addr or
 * rdma_resolve_addr), which also gives rdma_get_src_port a real port.
 */
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <string.h>
#include <unistd.h>

#include "cm.h"

struct cm_global cm = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
    .epfd = -1,
    .wake_fd = -1,
    .next_handle = 1,
    .nq_lock = PTHREAD_MUTEX_INITIALIZER,
};

const char *const cm_state_name[CM_NUM_STATES] = {
    [CM_IDLE] = "IDLE",
    [CM_BOUND] = "BOUND",
    [CM_ADDR_QUERY] = "ADDR_QUERY",
    [CM_ADDR_RESOLVED] = "ADDR_RESOLVED",
    [CM_ROUTE_RESOLVED] = "ROUTE_RESOLVED",
    [CM_LISTEN] = "LISTEN",
    [CM_CONNECTING] = "CONNECTING",
    [CM_MPA_REQ_SENT] = "MPA_REQ_SENT",
    [CM_MPA_AWAIT_REQ] = "MPA_AWAIT_REQ",
    [CM_REQ_RCVD] = "REQ_RCVD",
    [CM_ACCEPTING] = "ACCEPTING",
    [CM_CONNECTED] = "CONNECTED",
    [CM_ESTABLISHED] = "ESTABLISHED",
    [CM_DISCONNECTING] = "DISCONNECTING",
    [CM_DISCONNECTED] = "DISCONNECTED",
    [CM_FAILED] = "FAILED",
};

static void cm_init_once(void)
{
	cm_log_init();
}

void cm_init(void)
{
	pthread_once(&cm.once, cm_init_once);
}

/* ---- small helpers -------------------------------------------------------------------------- */

socklen_t cm_addr_len(const struct sockaddr *sa)
{
	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

void cm_addr_unmap(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *s6 = (void *)ss;
	struct sockaddr_in v4;

	if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		return;
	memset(&v4, 0, sizeof(v4));
	v4.sin_family = AF_INET;
	v4.sin_port = s6->sin6_port;
	memcpy(&v4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &v4, sizeof(v4));
}

static bool addr_is_any(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

static uint16_t addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_port;
	if (sa->sa_family == AF_INET6)
		return ((const struct sockaddr_in6 *)sa)->sin6_port;
	return 0;
}

static void addr_set_port(struct sockaddr *sa, uint16_t port_be)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = port_be;
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = port_be;
}

/* ---- ids ------------------------------------------------------------------------------------ */

static unsigned hbucket(uint64_t handle)
{
	return (unsigned)(handle % (sizeof(cm.table) / sizeof(cm.table[0])));
}

struct cm_id *cm_id_alloc(struct cm_channel *ch, void *context, enum rdma_port_space ps)
{
	struct cm_id *id = calloc(1, sizeof(*id));

	if (!id)
		return NULL;
	id->id.channel = ch ? &ch->ch : NULL;
	id->id.context = context;
	id->id.ps = ps;
	id->id.qp_type = IBV_QPT_RC;
	id->handle = cm.next_handle++;
	id->fd = -1;
	id->afonly = -1;
	id->reuseaddr = -1;
	pthread_cond_init(&id->cond, NULL);
	cm_config_load(&id->cfg);
	return id;
}

void cm_id_insert(struct cm_id *id)
{
	unsigned b = hbucket(id->handle);

	id->hnext = cm.table[b];
	cm.table[b] = id;
}

struct cm_id *cm_id_lookup(uint64_t handle)
{
	struct cm_id *id;

	for (id = cm.table[hbucket(handle)]; id; id = id->hnext)
		if (id->handle == handle)
			return id;
	return NULL;
}

static void id_remove(struct cm_id *id)
{
	struct cm_id **pp;

	for (pp = &cm.table[hbucket(id->handle)]; *pp; pp = &(*pp)->hnext)
		if (*pp == id) {
			*pp = id->hnext;
			break;
		}
	id->hnext = NULL;
}

void cm_set_state(struct cm_id *id, enum cm_state s)
{
	if (id->state != s)
		cm_dbg("id %llu: %s => %s", (unsigned long long)id->handle,
		       cm_state_name[id->state], cm_state_name[s]);
	id->state = s;
}

int cm_epoll_set(struct cm_id *id, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u64 = id->handle};
	int op;

	if (id->fd < 0 || cm.epfd < 0 || (!events && !id->ep_events))
		return 0;
	if (!events)
		op = EPOLL_CTL_DEL;
	else
		op = id->ep_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(cm.epfd, op, id->fd, &ev) < 0) {
		int e = errno;

		cm_err("epoll_ctl(%d) on socket %d: %s", op, id->fd, strerror(e));
		return e;
	}
	id->ep_events = events;
	return 0;
}

void cm_close_fd(struct cm_id *id)
{
	if (id->fd < 0)
		return;
	cm_epoll_set(id, 0);
	close(id->fd);
	id->fd = -1;
	id->ep_events = 0;
}

void cm_timer_set(struct cm_id *id, int ms)
{
	if (!id->deadline_ms) {
		id->tprev = NULL;
		id->tnext = cm.timers;
		if (cm.timers)
			cm.timers->tprev = id;
		cm.timers = id;
	}
	id->deadline_ms = cm_now_ms() + (uint64_t)(ms > 0 ? ms : 1);
	/* The CM thread may be sleeping towards a later deadline. */
	cm_wake();
}

void cm_timer_clear(struct cm_id *id)
{
	if (!id->deadline_ms)
		return;
	if (id->tprev)
		id->tprev->tnext = id->tnext;
	else
		cm.timers = id->tnext;
	if (id->tnext)
		id->tnext->tprev = id->tprev;
	id->tnext = id->tprev = NULL;
	id->deadline_ms = 0;
}

void cm_pending_unlink(struct cm_id *child)
{
	struct cm_id **pp;

	if (!child->listen)
		return;
	for (pp = &child->listen->pending; *pp; pp = &(*pp)->pnext)
		if (*pp == child) {
			*pp = child->pnext;
			break;
		}
	child->pnext = NULL;
	child->listen = NULL;
}

void cm_id_free(struct cm_id *id)
{
	id_remove(id);
	cm_timer_clear(id);
	cm_close_fd(id);
	cm_pending_unlink(id);
	while (id->pending)
		cm_id_free(id->pending);
	if (id->id.channel)
		cm_events_drop(id);
	if (id->dev)
		cm_dev_put(id->dev);
	if (id->sync && id->id.channel)
		cm_channel_free(cm_channel(id->id.channel));
	free(id->qp_init_attr);
	pthread_cond_destroy(&id->cond);
	free(id);
}

/* Binds id to the device owning addr (nothing for a wildcard). Must hold cm.lock. */
static int id_attach_dev(struct cm_id *id, const struct sockaddr *addr)
{
	struct cm_dev *d;

	if (id->dev)
		return 0;
	d = cm_dev_get_by_addr(addr);
	if (!d)
		return errno;
	id->dev = d;
	id->id.verbs = d->verbs;
	id->id.port_num = 1;
	id->id.pd = d->pd;
	return 0;
}

#define ACTIVE_BIND_EAGER 1024
static unsigned active_binds;

/* Creates the id's TCP socket bound to addr. Must hold cm.lock. */
static int id_bind(struct cm_id *id, const struct sockaddr *addr, bool active)
{
	struct sockaddr_storage ss;
	socklen_t len = cm_addr_len(addr);
	int fd, one = 1, e;

	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	/*
	 * Kernel siw sets SO_REUSEADDR on every CM socket; perftest -R needs it, as it listens
	 * with rdma_cm on the port its own TCP side channel just used.
	 */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->sa_family == AF_INET6) {
		/* rdma_cm's default is dual stack (the kernel's bindv6only = 0). */
		int v6only = id->afonly > 0;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	/*
	 * bind() to port 0 searches for a port no other bound socket uses, at a cost linear in
	 * the bound sockets: connection setup fell to ~150/s beyond ~5000 connections. Like
	 * rdma-core, an id has its source port once rdma_resolve_addr returns, so the first
	 * ACTIVE_BIND_EAGER active sides of a process bind one; after that connect() picks it
	 * from the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT, Linux >= 4.2) and the port is read
	 * back after connect() (cm_conn.c): rdma_get_src_port reads 0 until rdma_connect.
	 */
	if (active && addr_port(addr) == 0 &&
	    __atomic_fetch_add(&active_binds, 1, __ATOMIC_RELAXED) >= ACTIVE_BIND_EAGER)
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, addr, len) < 0) {
		e = errno;
		close(fd);
		return e;
	}
	memset(&ss, 0, sizeof(ss));
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	memcpy(&id->id.route.addr.src_storage, &ss, sizeof(ss));
	id->fd = fd;
	return 0;
}

static int bind_locked(struct cm_id *id, const struct sockaddr *addr)
{
	int err;

	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
		return addr->sa_family == AF_IB ? EAFNOSUPPORT : EINVAL;
	if (!addr_is_any(addr)) {
		err = id_attach_dev(id, addr);
		if (err) {
			char a[CM_ADDRSTRLEN];

			cm_err("cannot bind to %s: no softiwarp device has that address",
			       cm_addr_str(addr, a));
			return EADDRNOTAVAIL;
		}
	}
	err = id_bind(id, addr, false);
	if (err) {
		char a[CM_ADDRSTRLEN];

		if (err == EADDRINUSE)
			cm_err("cannot bind to %s: address in use (another listener on that port?)",
			       cm_addr_str(addr, a));
		if (id->dev) {
			cm_dev_put(id->dev);
			id->dev = NULL;
			id->id.verbs = NULL;
			id->id.pd = NULL;
			id->id.port_num = 0;
		}
		return err;
	}
	cm_set_state(id, CM_BOUND);
	return 0;
}

/* ---- synchronous mode ----------------------------------------------------------------------- */

int cm_sync_wait(struct cm_id *cid)
{
	struct rdma_cm_id *id = &cid->id;
	int st;

	if (!cid->sync)
		return 0;
	if (id->event) {
		rdma_ack_cm_event(id->event);
		id->event = NULL;
	}
	if (rdma_get_cm_event(id->channel, &id->event))
		return -1;
	st = id->event->status;
	if (!st)
		return 0;
	if (id->event->event == RDMA_CM_EVENT_REJECTED)
		return cm_seterr(ECONNREFUSED);
	return cm_seterr(st < 0 ? -st : st);
}

/* ---- API: ids ------------------------------------------------------------------------------- */

CM_API int rdma_create_id(struct rdma_event_channel *channel, struct rdma_cm_id **id, void *context,
			  enum rdma_port_space ps)
{
	struct cm_channel *ch = channel ? cm_channel(channel) : NULL;
	struct cm_id *cid;

	cm_init();
	if (!id)
		return cm_seterr(EINVAL);
	switch (ps) {
	case RDMA_PS_TCP:
		break;
	case RDMA_PS_UDP:
	case RDMA_PS_IPOIB:
	case RDMA_PS_IB:
		/* iWARP runs over TCP only: no UD QPs, no AF_IB addressing. */
		cm_info("rdma_create_id: port space 0x%x is not supported by iWARP (only "
			"RDMA_PS_TCP)",
			ps);
		return cm_seterr(EOPNOTSUPP);
	default:
		return cm_seterr(EINVAL);
	}
	if (!ch) {
		ch = cm_channel_new();
		if (!ch)
			return -1;
	}
	pthread_mutex_lock(&cm.lock);
	cid = cm_id_alloc(ch, context, ps);
	if (cid) {
		cid->sync = channel == NULL;
		cm_id_insert(cid);
	}
	pthread_mutex_unlock(&cm.lock);
	if (!cid) {
		if (!channel)
			cm_channel_free(ch);
		return cm_seterr(ENOMEM);
	}
	*id = &cid->id;
	return 0;
}

CM_API int rdma_destroy_id(struct rdma_cm_id *id)
{
	struct cm_id *cid = cm_id(id);

	if (!id)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	cid->destroying = true;
	/* From here on nothing (CM thread, engine callbacks) finds the id any more. */
	id_remove(cid);
	cm_timer_clear(cid);
	/*
	 * A request the application saw but neither accepted nor rejected: tell the peer no,
	 * as the kernel's iw_cm does when such an id is destroyed.
	 */
	if (cid->state == CM_REQ_RCVD && cid->fd >= 0 && !cid->peer_gone)
		cm_conn_reject(cid, NULL, 0);
	/*
	 * The socket of a connection handed to the engine belongs to the QP: it closes when the
	 * QP is destroyed (id->qp is not touched; rping destroys it with ibv_destroy_qp first).
	 */
	cm_close_fd(cid);
	while (cid->pending)
		cm_id_free(cid->pending);
	cm_events_drop(cid);
	pthread_mutex_unlock(&cm.lock);

	if (id->event) {
		rdma_ack_cm_event(id->event);
		id->event = NULL;
	}

	pthread_mutex_lock(&cm.lock);
	/* rdma_cm semantics: wait until every event of this id has been acknowledged. */
	while (cid->events > 0)
		pthread_cond_wait(&cid->cond, &cm.lock);
	cm_id_free(cid);
	pthread_mutex_unlock(&cm.lock);
	return 0;
}

CM_API int rdma_migrate_id(struct rdma_cm_id *id, struct rdma_event_channel *channel)
{
	struct cm_id *cid = cm_id(id);
	struct cm_channel *from, *to;
	bool was_sync;

	if (!id)
		return cm_seterr(EINVAL);
	if (cid->sync && !channel)
		return cm_seterr(EINVAL);
	to = channel ? cm_channel(channel) : cm_channel_new();
	if (!to)
		return -1;
	/* A synchronous id's pending result event goes away with its private channel. */
	if (cid->sync && id->event) {
		rdma_ack_cm_event(id->event);
		id->event = NULL;
	}
	pthread_mutex_lock(&cm.lock);
	from = cm_channel(id->channel);
	was_sync = cid->sync;
	cm_events_move(cid, from, to);
	id->channel = &to->ch;
	cid->sync = channel == NULL;
	if (was_sync)
		cm_channel_free(from);
	pthread_mutex_unlock(&cm.lock);
	return 0;
}

CM_API int rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *addr)
{
	struct cm_id *cid = cm_id(id);
	int err;

	if (!id || !addr)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	err = cid->state == CM_IDLE ? bind_locked(cid, addr) : EINVAL;
	pthread_mutex_unlock(&cm.lock);
	return err ? cm_seterr(err) : 0;
}

/*
 * The local address the routing table uses towards dst (a connected UDP socket sends nothing).
 * Returns 0 or an errno (ENETUNREACH...).
 */
static int route_src(const struct sockaddr *dst, struct sockaddr_storage *src)
{
	socklen_t len = sizeof(*src);
	int fd, e = 0;

	fd = socket(dst->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (connect(fd, dst, cm_addr_len(dst)) < 0 ||
	    getsockname(fd, (struct sockaddr *)src, &len) < 0)
		e = errno;
	close(fd);
	addr_set_port((struct sockaddr *)src, 0);
	return e;
}

CM_API int rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *src_addr,
			     struct sockaddr *dst_addr, int timeout_ms)
{
	struct cm_id *cid = cm_id(id);
	struct sockaddr_storage local;
	char a[CM_ADDRSTRLEN], b[CM_ADDRSTRLEN];
	int err = 0, st = 0;

	(void)timeout_ms; /* resolution is local and immediate */
	if (!id || !cm_addr_len(dst_addr) || (src_addr && !cm_addr_len(src_addr)))
		return cm_seterr(dst_addr && dst_addr->sa_family == AF_IB ? EAFNOSUPPORT : EINVAL);
	if (src_addr && src_addr->sa_family != dst_addr->sa_family)
		return cm_seterr(EINVAL);

	pthread_mutex_lock(&cm.lock);
	if (cid->state == CM_IDLE && src_addr) {
		err = bind_locked(cid, src_addr);
		if (err)
			goto out;
	}
	if (cid->state != CM_IDLE && cid->state != CM_BOUND) {
		err = EINVAL;
		goto out;
	}
	if (cid->state == CM_BOUND && id->route.addr.src_addr.sa_family != dst_addr->sa_family) {
		err = EINVAL;
		goto out;
	}
	memset(&id->route.addr.dst_storage, 0, sizeof(id->route.addr.dst_storage));
	memcpy(&id->route.addr.dst_storage, dst_addr, cm_addr_len(dst_addr));
	cm_set_state(cid, CM_ADDR_QUERY);

	/* Local address: the bound one, or what the routing table picks towards dst. */
	memset(&local, 0, sizeof(local));
	if (cid->fd >= 0 && !addr_is_any(&id->route.addr.src_addr)) {
		memcpy(&local, &id->route.addr.src_storage, sizeof(local));
	} else {
		st = route_src(dst_addr, &local);
		if (st) {
			cm_err("cannot resolve %s: no usable route (%s)", cm_addr_str(dst_addr, a),
			       strerror(st));
			goto addr_error;
		}
	}
	if (!cid->dev) {
		st = id_attach_dev(cid, (struct sockaddr *)&local);
		if (st && st != ENODEV) {
			cm_err("cannot resolve %s: cannot look up the device of %s: %s",
			       cm_addr_str(dst_addr, a), cm_addr_str((struct sockaddr *)&local, b),
			       strerror(st));
			goto addr_error;
		} else if (st) {
			cm_err("cannot resolve %s: the local address %s belongs to no softiwarp "
			       "device",
			       cm_addr_str(dst_addr, a), cm_addr_str((struct sockaddr *)&local, b));
			goto addr_error;
		}
	}
	if (cid->fd < 0) {
		st = id_bind(cid, (struct sockaddr *)&local, true);
		if (st) {
			cm_err("cannot resolve %s: binding a socket to %s failed: %s",
			       cm_addr_str(dst_addr, a), cm_addr_str((struct sockaddr *)&local, b),
			       strerror(st));
			goto addr_error;
		}
	} else if (addr_is_any(&id->route.addr.src_addr)) {
		/* Bound to a wildcard: report the address connections will actually use. */
		uint16_t port = addr_port(&id->route.addr.src_addr);

		memcpy(&id->route.addr.src_storage, &local, sizeof(local));
		addr_set_port(&id->route.addr.src_addr, port);
	}
	id->route.num_paths = 0;
	id->route.path_rec = NULL;
	cm_set_state(cid, CM_ADDR_RESOLVED);
	cm_event_queue(cid, cid, RDMA_CM_EVENT_ADDR_RESOLVED, 0, NULL, 0);
	goto out;

addr_error:
	cm_set_state(cid, cid->fd >= 0 ? CM_BOUND : CM_IDLE);
	cm_event_queue(cid, cid, RDMA_CM_EVENT_ADDR_ERROR, -st, NULL, 0);
out:
	pthread_mutex_unlock(&cm.lock);
	if (err)
		return cm_seterr(err);
	return cm_sync_wait(cid);
}

CM_API int rdma_resolve_route(struct rdma_cm_id *id, int timeout_ms)
{
	struct cm_id *cid = cm_id(id);
	int err = 0;

	(void)timeout_ms;
	if (!id)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	if (cid->state == CM_ADDR_RESOLVED) {
		/* iWARP: the route is the TCP connection; there are no path records. */
		id->route.num_paths = 0;
		cm_set_state(cid, CM_ROUTE_RESOLVED);
		cm_event_queue(cid, cid, RDMA_CM_EVENT_ROUTE_RESOLVED, 0, NULL, 0);
	} else {
		err = EINVAL;
	}
	pthread_mutex_unlock(&cm.lock);
	if (err)
		return cm_seterr(err);
	return cm_sync_wait(cid);
}

CM_API int rdma_listen(struct rdma_cm_id *id, int backlog)
{
	struct cm_id *cid = cm_id(id);
	int err = 0;

	if (!id)
		return cm_seterr(EINVAL);
	/* As the kernel's ucma: a backlog <= 0 (ucmatose passes 0) means "the default". */
	if (backlog <= 0 || backlog > 1024)
		backlog = 1024;
	pthread_mutex_lock(&cm.lock);
	if (cid->state == CM_IDLE) {
		/* Listening unbound: any address, a port of the system's choice (as rdma_cm). */
		struct sockaddr_in any = {.sin_family = AF_INET};

		err = bind_locked(cid, (struct sockaddr *)&any);
	}
	if (!err && cid->state != CM_BOUND)
		err = EINVAL;
	if (!err && listen(cid->fd, backlog) < 0) {
		char a[CM_ADDRSTRLEN];

		err = errno;
		cm_err("cannot listen on %s: %s", cm_addr_str(&id->route.addr.src_addr, a),
		       strerror(err));
	}
	if (!err)
		err = cm_thread_ensure();
	if (!err)
		err = cm_epoll_set(cid, EPOLLIN);
	if (!err) {
		cm_set_state(cid, CM_LISTEN);
		cm_conn_reserve_fd(); /* see refuse_one() */
	}
	pthread_mutex_unlock(&cm.lock);
	return err ? cm_seterr(err) : 0;
}

/* rdma-core's ucma_valid_param: IRD/ORD within the device limits (0xFF = "the maximum"). */
static int check_conn_param(struct cm_id *cid, const struct rdma_conn_param *p)
{
	if (!p)
		return 0;
	if (p->private_data_len && !p->private_data)
		return EINVAL;
	if (p->private_data_len > cm_max_pd(cid)) {
		cm_err("private data of %u bytes is too long: softiwarp carries at most %zu "
		       "(MPA revision %u, compatible with kernel siw)",
		       p->private_data_len, cm_max_pd(cid), cid->cfg.mpa.rev);
		return EINVAL;
	}
	if (!cid->dev)
		return EINVAL;
	if (p->responder_resources != RDMA_MAX_RESP_RES &&
	    p->responder_resources > cid->dev->max_ird)
		return EINVAL;
	if (p->initiator_depth != RDMA_MAX_INIT_DEPTH && p->initiator_depth > cid->dev->max_ord)
		return EINVAL;
	return 0;
}

/*
 * An application that created its QP itself names it by number (rping -q): the kernel's iw_cm
 * finds it the same way. id->qp stays NULL (rdma_establish must still accept the id) and the
 * QP stays the application's to destroy.
 */
static bool adopt_qp(struct rdma_cm_id *id, const struct rdma_conn_param *p)
{
	struct cm_id *cid = cm_id(id);
	struct eng_qp *eqp;

	if (!p || !p->qp_num || !id->verbs)
		return false;
	eqp = eng_qp_by_num(siw_verbs_ctx(id->verbs), p->qp_num);
	cid->user_qp = eqp ? siw_verbs_qp_from_eng(eqp) : NULL;
	return cid->user_qp != NULL;
}

CM_API int rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *conn_param)
{
	struct cm_id *cid = cm_id(id);
	const void *pd = NULL;
	size_t pd_len = 0;
	int err, n;

	if (!id)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	err = EINVAL;
	if (cid->state != CM_ROUTE_RESOLVED)
		goto out;
	if (!id->qp && !adopt_qp(id, conn_param)) {
		cm_err("rdma_connect: no QP on this id; create it with rdma_create_qp first "
		       "(or pass its number in conn_param->qp_num)");
		goto out;
	}
	err = check_conn_param(cid, conn_param);
	if (err)
		goto out;
	cid->ird = cid->dev->max_ird;
	cid->ord = cid->dev->max_ord;
	if (conn_param) {
		if (conn_param->responder_resources != RDMA_MAX_RESP_RES)
			cid->ird = conn_param->responder_resources;
		if (conn_param->initiator_depth != RDMA_MAX_INIT_DEPTH)
			cid->ord = conn_param->initiator_depth;
		pd = conn_param->private_data;
		pd_len = conn_param->private_data_len;
	}
	n = siw_mpa_build_req(&cid->cfg.mpa, cid->ird, cid->ord, pd, pd_len, cid->out,
			      sizeof(cid->out));
	if (n < 0) {
		cm_err("rdma_connect: cannot build the MPA request (%s)", siw_strerror(n));
		goto out;
	}
	cid->out_len = (size_t)n;
	cid->out_off = 0;
	err = cm_conn_start(cid);
out:
	pthread_mutex_unlock(&cm.lock);
	if (err)
		return cm_seterr(err);
	return cm_sync_wait(cid);
}

CM_API int rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *conn_param)
{
	struct cm_id *cid = cm_id(id);
	const void *pd = NULL;
	size_t pd_len = 0;
	uint16_t ird, ord;
	int err, r;

	if (!id)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	err = EINVAL;
	if (cid->state != CM_REQ_RCVD)
		goto out;
	if (!id->qp && !adopt_qp(id, conn_param)) {
		cm_err("rdma_accept: no QP on this id; create it with rdma_create_qp first "
		       "(or pass its number in conn_param->qp_num)");
		goto out;
	}
	err = check_conn_param(cid, conn_param);
	if (err)
		goto out;
	if (cid->peer_gone || cid->fd < 0) {
		err = ECONNRESET;
		goto out;
	}
	/* NULL or 0xFF: as much as the device can, the negotiation lowers it to the peer's. */
	ird = cid->dev->max_ird;
	ord = cid->dev->max_ord;
	if (conn_param) {
		if (conn_param->responder_resources != RDMA_MAX_RESP_RES)
			ird = conn_param->responder_resources;
		if (conn_param->initiator_depth != RDMA_MAX_INIT_DEPTH)
			ord = conn_param->initiator_depth;
		pd = conn_param->private_data;
		pd_len = conn_param->private_data_len;
	}
	/*
	 * Relaxed IRD (kernel siw, cxgb4): rather than refuse the initiator's ORD, raise our IRD
	 * to it when the device can. Applications often echo the CONNECT_REQUEST's values, which
	 * (kernel convention) carry the peer's own ORD as initiator_depth.
	 */
	if (cid->cfg.mpa.relaxed_ird && cid->peer_ord != MPA_V2_IRD_ORD_NONE && ird < cid->peer_ord)
		ird = cid->peer_ord < cid->dev->max_ird ? cid->peer_ord : cid->dev->max_ird;
	r = siw_mpa_respond(&cid->cfg.mpa, &cid->frame, ird, ord, &cid->res);
	if (r < 0) {
		char a[CM_ADDRSTRLEN];

		cm_err("rdma_accept: cannot accept %s with these parameters (%s); rejecting",
		       cm_addr_str(&id->route.addr.dst_addr, a), siw_strerror(r));
		cm_conn_reject(cid, NULL, 0);
		cm_set_state(cid, CM_FAILED);
		goto out;
	}
	r = siw_mpa_build_reply(&cid->cfg.mpa, &cid->res, false, pd, pd_len, cid->out,
				sizeof(cid->out));
	if (r < 0) {
		err = EINVAL;
		goto out;
	}
	cid->out_len = (size_t)r;
	cid->out_off = 0;
	err = cm_conn_accept_send(cid);
out:
	pthread_mutex_unlock(&cm.lock);
	if (err)
		return cm_seterr(err);
	return cm_sync_wait(cid);
}

CM_API int rdma_reject(struct rdma_cm_id *id, const void *private_data, uint8_t private_data_len)
{
	struct cm_id *cid = cm_id(id);
	int err = 0;

	if (!id || (private_data_len && !private_data))
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	if (cid->state != CM_REQ_RCVD) {
		err = EINVAL;
	} else if (private_data_len > cm_max_pd(cid)) {
		cm_err("rdma_reject: private data of %u bytes is too long (at most %zu)",
		       private_data_len, cm_max_pd(cid));
		err = EINVAL;
	} else {
		if (cid->fd >= 0 && !cid->peer_gone)
			cm_conn_reject(cid, private_data, private_data_len);
		cm_close_fd(cid);
		cm_set_state(cid, CM_FAILED);
	}
	pthread_mutex_unlock(&cm.lock);
	return err ? cm_seterr(err) : 0;
}

CM_API int rdma_reject_ece(struct rdma_cm_id *id, const void *private_data,
			   uint8_t private_data_len)
{
	return rdma_reject(id, private_data, private_data_len);
}

CM_API int rdma_disconnect(struct rdma_cm_id *id)
{
	struct cm_id *cid = cm_id(id);
	bool wait = false;
	int err = 0;

	if (!id)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	switch (cid->state) {
	case CM_CONNECTED:
	case CM_ESTABLISHED: {
		struct eng_qp *qp = cm_qp(cid) ? siw_verbs_qp(cm_qp(cid)) : NULL;
		int r = qp ? eng_qp_disconnect(qp) : ENOTCONN;

		if (r) {
			/*
			 * No QP any more (rdma_destroy_qp already closed the connection) or the
			 * engine has nothing to close: report the end now, nobody else will.
			 */
			cm_set_state(cid, CM_DISCONNECTED);
			cm_event_queue(cid, cid, RDMA_CM_EVENT_DISCONNECTED, 0, NULL, 0);
		} else {
			cm_set_state(cid, CM_DISCONNECTING);
		}
		wait = true;
		break;
	}
	case CM_DISCONNECTING:
	case CM_FAILED:
		break;
	case CM_DISCONNECTED: {
		/* Sync mode: the peer's DISCONNECTED may still wait on the private channel. */
		struct cm_channel *ch = cm_channel(id->channel);

		pthread_mutex_lock(&ch->lock);
		wait = ch->head != NULL;
		pthread_mutex_unlock(&ch->lock);
		break;
	}
	default:
		err = EINVAL;
		break;
	}
	pthread_mutex_unlock(&cm.lock);
	if (err)
		return cm_seterr(err);
	return wait ? cm_sync_wait(cid) : 0;
}

CM_API int rdma_establish(struct rdma_cm_id *id)
{
	struct cm_id *cid = cm_id(id);
	int err;

	/*
	 * Only meaningful for IB's CONNECT_RESPONSE, which iWARP never produces: the connection
	 * is established by the MPA exchange itself.
	 */
	if (!id || id->qp)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	err = cid->state == CM_ESTABLISHED || cid->state == CM_CONNECTED ? 0 : EINVAL;
	pthread_mutex_unlock(&cm.lock);
	return err ? cm_seterr(err) : 0;
}

CM_API int rdma_notify(struct rdma_cm_id *id, enum ibv_event_type event)
{
	(void)event;
	/* COMM_EST matters for IB only: an iWARP connection is up once MPA has completed. */
	return id ? 0 : cm_seterr(EINVAL);
}

CM_API int rdma_set_option(struct rdma_cm_id *id, int level, int optname, void *optval,
			   size_t optlen)
{
	struct cm_id *cid = cm_id(id);
	int err = 0;

	if (!id || !optval)
		return cm_seterr(EINVAL);
	if (level == RDMA_OPTION_IB)
		return cm_seterr(EINVAL); /* path records are an IB notion */
	if (level != RDMA_OPTION_ID)
		return cm_seterr(ENOSYS);
	pthread_mutex_lock(&cm.lock);
	switch (optname) {
	case RDMA_OPTION_ID_TOS:
		if (optlen != sizeof(uint8_t)) {
			err = EINVAL;
			break;
		}
		cid->tos = *(uint8_t *)optval;
		cid->tos_set = true;
		break;
	case RDMA_OPTION_ID_REUSEADDR:
		if (optlen != sizeof(int)) {
			err = EINVAL;
			break;
		}
		/* CM sockets always have SO_REUSEADDR (see id_bind); recorded only. */
		cid->reuseaddr = *(int *)optval;
		break;
	case RDMA_OPTION_ID_AFONLY:
		if (optlen != sizeof(int) || cid->state != CM_IDLE) {
			err = EINVAL;
			break;
		}
		cid->afonly = *(int *)optval ? 1 : 0;
		break;
	case RDMA_OPTION_ID_ACK_TIMEOUT:
		/* An IB transport timer; TCP has its own retransmission. Accepted, ignored. */
		if (optlen != sizeof(uint8_t))
			err = EINVAL;
		break;
	default:
		err = ENOSYS;
		break;
	}
	pthread_mutex_unlock(&cm.lock);
	return err ? cm_seterr(err) : 0;
}

CM_API __be16 rdma_get_src_port(struct rdma_cm_id *id)
{
	return id ? addr_port(&id->route.addr.src_addr) : 0;
}

CM_API __be16 rdma_get_dst_port(struct rdma_cm_id *id)
{
	return id ? addr_port(&id->route.addr.dst_addr) : 0;
}

/* ---- not available on iWARP ----------------------------------------------------------------- */

CM_API int rdma_join_multicast(struct rdma_cm_id *id, struct sockaddr *addr, void *context)
{
	(void)id;
	(void)addr;
	(void)context;
	/* The kernel's rdma_cm answers ENOSYS for multicast on a device without it (iWARP). */
	return cm_seterr(ENOSYS);
}

CM_API int rdma_join_multicast_ex(struct rdma_cm_id *id,
				  struct rdma_cm_join_mc_attr_ex *mc_join_attr, void *context)
{
	(void)id;
	(void)context;
	if (!mc_join_attr)
		return cm_seterr(EINVAL);
	if (mc_join_attr->comp_mask >= RDMA_CM_JOIN_MC_ATTR_RESERVED)
		return cm_seterr(EOPNOTSUPP);
	return cm_seterr(ENOSYS);
}

CM_API int rdma_leave_multicast(struct rdma_cm_id *id, struct sockaddr *addr)
{
	(void)id;
	(void)addr;
	/* Nothing can have been joined. */
	return cm_seterr(EADDRNOTAVAIL);
}

CM_API int rdma_set_local_ece(struct rdma_cm_id *id, struct ibv_ece *ece)
{
	if (!id || id->qp || !ece)
		return cm_seterr(EINVAL);
	/* Enhanced connection establishment is an IB CM (REQ/REP) extension. */
	return cm_seterr(EOPNOTSUPP);
}

CM_API int rdma_get_remote_ece(struct rdma_cm_id *id, struct ibv_ece *ece)
{
	if (!id || !ece)
		return cm_seterr(EINVAL);
	return cm_seterr(EOPNOTSUPP);
}
