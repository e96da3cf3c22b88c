// SPDX-License-Identifier: MIT
/*
 * Event channels and events.
 *
 * A channel is an eventfd plus a queue. The eventfd counter is non-zero exactly while the queue
 * is not empty (both change together under ch->lock), so the application can poll() the fd as
 * it polls the kernel's rdma_cm fd (rping does), and rdma_get_cm_event honours O_NONBLOCK set
 * on it (EAGAIN), as a read() of the kernel fd would.
 *
 * Every event counts against one id until it is acknowledged ("owner": the id itself, or the
 * listener for CONNECT_REQUEST, as rdma-core counts them), and rdma_destroy_id waits for that
 * count to drop to zero. Events still queued when their owner is destroyed are dropped.
 */
#include <poll.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cm.h"

struct cm_channel *cm_channel_new(void)
{
	struct cm_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->ch.fd = eventfd(0, EFD_CLOEXEC);
	if (ch->ch.fd < 0) {
		int e = errno;

		free(ch);
		errno = e;
		return NULL;
	}
	pthread_mutex_init(&ch->lock, NULL);
	return ch;
}

/* The queue became non-empty / empty: keep the eventfd readable exactly while it is not. */
static void ch_signal(struct cm_channel *ch)
{
	uint64_t one = 1;

	if (write(ch->ch.fd, &one, sizeof(one)) != sizeof(one))
		cm_err("event channel %d: cannot signal: %s", ch->ch.fd, strerror(errno));
}

static void ch_drain(struct cm_channel *ch)
{
	uint64_t v;

	/* The counter is >= 1 here, so this read never blocks even on a blocking fd. */
	if (read(ch->ch.fd, &v, sizeof(v)) != sizeof(v) && errno != EAGAIN)
		cm_err("event channel %d: cannot reset: %s", ch->ch.fd, strerror(errno));
}

/* An event leaves its owner's count (acked or dropped). Must hold cm.lock. */
static void ev_release(struct cm_event *e)
{
	if (e->owner) {
		e->owner->events--;
		pthread_cond_broadcast(&e->owner->cond);
	}
}

/* Frees events taken off a queue without being delivered. Must hold cm.lock. */
static void ev_drop_list(struct cm_event *e)
{
	while (e) {
		struct cm_event *next = e->next;

		ev_release(e);
		/* A connection request nobody saw: its id goes with it (the socket closes). */
		if (e->child)
			cm_id_free(e->child);
		free(e);
		e = next;
	}
}

static void ch_release(struct cm_channel *ch)
{
	if (ch->ch.fd >= 0)
		close(ch->ch.fd);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
}

#define DEAD_KEEP 64
static pthread_mutex_t dead_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cm_channel *dead_keep[DEAD_KEEP];
static unsigned dead_next;

void cm_channel_free(struct cm_channel *ch)
{
	struct cm_event *list;
	struct cm_channel *old;
	bool busy;

	pthread_mutex_lock(&ch->lock);
	list = ch->head;
	ch->head = ch->tail = NULL;
	ch->dead = true;
	busy = ch->waiters > 0;
	pthread_mutex_unlock(&ch->lock);
	ev_drop_list(list);
	/*
	 * With rdma-core a thread blocked in rdma_get_cm_event stays blocked when its channel
	 * is destroyed (close() does not wake a read), and programs rely on that at exit (rping's
	 * CM thread must not return an error and exit the process with it). So a waited-on
	 * channel keeps its fd and memory; no event can reach it any more.
	 */
	if (busy)
		return;
	/*
	 * Nobody waits yet, but a program thread may be on its way into rdma_get_cm_event (rping's
	 * CM thread while main destroys the channel at exit). The memory of the last destroyed
	 * channels is therefore kept a while, so such a thread finds the channel dead and blocks
	 * like a waiter instead of reading freed memory; the fd is closed now.
	 */
	close(ch->ch.fd);
	ch->ch.fd = -1;
	pthread_mutex_lock(&dead_lock);
	old = dead_keep[dead_next];
	dead_keep[dead_next] = ch;
	dead_next = (dead_next + 1) % DEAD_KEEP;
	pthread_mutex_unlock(&dead_lock);
	if (old)
		ch_release(old);
}

struct cm_event *cm_event_new(struct cm_id *id, struct cm_id *owner, enum rdma_cm_event_type type,
			      int status, const void *pd, size_t pd_len)
{
	struct cm_event *e = calloc(1, sizeof(*e));

	if (!e) {
		cm_err("out of memory: %s for an id is lost", rdma_event_str(type));
		return NULL;
	}
	e->ev.id = &id->id;
	e->ev.event = type;
	e->ev.status = status;
	e->owner = owner;
	if (pd_len > 255)
		pd_len = 255; /* rdma_conn_param.private_data_len is a u8; callers check */
	if (pd && pd_len) {
		memcpy(e->pd, pd, pd_len);
		e->ev.param.conn.private_data = e->pd;
		e->ev.param.conn.private_data_len = (uint8_t)pd_len;
	}
	return e;
}

void cm_event_post(struct cm_event *e)
{
	/* On the owner's channel: a CONNECT_REQUEST goes where the listener's events go. */
	struct cm_channel *ch = cm_channel(e->owner->id.channel);

	e->owner->events++;
	pthread_mutex_lock(&ch->lock);
	if (ch->tail)
		ch->tail->next = e;
	else
		ch->head = e;
	ch->tail = e;
	if (ch->head == e)
		ch_signal(ch);
	pthread_mutex_unlock(&ch->lock);
	cm_dbg("id %llu: queued %s (status %d)", (unsigned long long)cm_id(e->ev.id)->handle,
	       rdma_event_str(e->ev.event), e->ev.status);
}

struct cm_event *cm_event_queue(struct cm_id *id, struct cm_id *owner, enum rdma_cm_event_type type,
				int status, const void *pd, size_t pd_len)
{
	struct cm_event *e = cm_event_new(id, owner, type, status, pd, pd_len);

	if (e)
		cm_event_post(e);
	return e;
}

/* Unlinks the events owned by id from ch; returns them as a list. */
static struct cm_event *ch_take_owned(struct cm_channel *ch, struct cm_id *id)
{
	struct cm_event *taken = NULL, **tp = &taken, **pp, *e;
	bool had;

	pthread_mutex_lock(&ch->lock);
	had = ch->head != NULL;
	for (pp = &ch->head; (e = *pp);) {
		if (e->owner == id) {
			*pp = e->next;
			e->next = NULL;
			*tp = e;
			tp = &e->next;
		} else {
			pp = &e->next;
		}
	}
	ch->tail = NULL;
	for (e = ch->head; e; e = e->next)
		ch->tail = e;
	if (had && !ch->head)
		ch_drain(ch);
	pthread_mutex_unlock(&ch->lock);
	return taken;
}

void cm_events_drop(struct cm_id *id)
{
	ev_drop_list(ch_take_owned(cm_channel(id->id.channel), id));
}

void cm_events_move(struct cm_id *id, struct cm_channel *from, struct cm_channel *to)
{
	struct cm_event *list = ch_take_owned(from, id);

	if (!list)
		return;
	pthread_mutex_lock(&to->lock);
	for (struct cm_event *e = list, *next; e; e = next) {
		next = e->next;
		e->next = NULL;
		if (to->tail)
			to->tail->next = e;
		else
			to->head = e;
		to->tail = e;
	}
	if (to->head == list)
		ch_signal(to);
	pthread_mutex_unlock(&to->lock);
}

/* ---- API ------------------------------------------------------------------------------------ */

CM_API struct rdma_event_channel *rdma_create_event_channel(void)
{
	struct cm_channel *ch;

	cm_init();
	ch = cm_channel_new();

	return ch ? &ch->ch : NULL;
}

CM_API void rdma_destroy_event_channel(struct rdma_event_channel *channel)
{
	if (!channel)
		return;
	pthread_mutex_lock(&cm.lock);
	cm_channel_free(cm_channel(channel));
	pthread_mutex_unlock(&cm.lock);
}

CM_API int rdma_get_cm_event(struct rdma_event_channel *channel, struct rdma_cm_event **event)
{
	struct cm_channel *ch;
	struct cm_event *e;

	if (!channel || !event)
		return cm_seterr(EINVAL);
	ch = cm_channel(channel);
	pthread_mutex_lock(&ch->lock);
	ch->waiters++;
	for (;;) {
		struct pollfd p = {.fd = ch->ch.fd, .events = POLLIN};
		int flags, err = 0;

		if (ch->dead) {
			/* Destroyed under us: block as rdma-core would (see cm_channel_free). */
			pthread_mutex_unlock(&ch->lock);
			for (;;)
				pause();
		} else if ((e = ch->head) != NULL) {
			ch->head = e->next;
			if (!ch->head) {
				ch->tail = NULL;
				ch_drain(ch);
			}
			e->next = NULL;
		} else {
			pthread_mutex_unlock(&ch->lock);
			flags = fcntl(ch->ch.fd, F_GETFL);
			if (flags >= 0 && (flags & O_NONBLOCK))
				err = EAGAIN;
			else if (poll(&p, 1, -1) < 0 && errno != EINTR)
				err = errno;
			pthread_mutex_lock(&ch->lock);
			if (!err)
				continue;
		}
		ch->waiters--;
		pthread_mutex_unlock(&ch->lock);
		if (err)
			return cm_seterr(err);
		break;
	}

	/*
	 * rdma-core moves the QP of a rejected connection to ERROR, which flushes the receives
	 * the application posted before connecting.
	 */
	if (e->ev.event == RDMA_CM_EVENT_REJECTED && e->ev.id->qp) {
		struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

		ibv_modify_qp(e->ev.id->qp, &a, IBV_QP_STATE);
	}
	*event = &e->ev;
	return 0;
}

CM_API int rdma_ack_cm_event(struct rdma_cm_event *event)
{
	struct cm_event *e = (struct cm_event *)event;

	if (!event)
		return cm_seterr(EINVAL);
	pthread_mutex_lock(&cm.lock);
	ev_release(e);
	pthread_mutex_unlock(&cm.lock);
	free(e);
	return 0;
}

CM_API const char *rdma_event_str(enum rdma_cm_event_type event)
{
	static const char *const names[] = {
	    [RDMA_CM_EVENT_ADDR_RESOLVED] = "RDMA_CM_EVENT_ADDR_RESOLVED",
	    [RDMA_CM_EVENT_ADDR_ERROR] = "RDMA_CM_EVENT_ADDR_ERROR",
	    [RDMA_CM_EVENT_ROUTE_RESOLVED] = "RDMA_CM_EVENT_ROUTE_RESOLVED",
	    [RDMA_CM_EVENT_ROUTE_ERROR] = "RDMA_CM_EVENT_ROUTE_ERROR",
	    [RDMA_CM_EVENT_CONNECT_REQUEST] = "RDMA_CM_EVENT_CONNECT_REQUEST",
	    [RDMA_CM_EVENT_CONNECT_RESPONSE] = "RDMA_CM_EVENT_CONNECT_RESPONSE",
	    [RDMA_CM_EVENT_CONNECT_ERROR] = "RDMA_CM_EVENT_CONNECT_ERROR",
	    [RDMA_CM_EVENT_UNREACHABLE] = "RDMA_CM_EVENT_UNREACHABLE",
	    [RDMA_CM_EVENT_REJECTED] = "RDMA_CM_EVENT_REJECTED",
	    [RDMA_CM_EVENT_ESTABLISHED] = "RDMA_CM_EVENT_ESTABLISHED",
	    [RDMA_CM_EVENT_DISCONNECTED] = "RDMA_CM_EVENT_DISCONNECTED",
	    [RDMA_CM_EVENT_DEVICE_REMOVAL] = "RDMA_CM_EVENT_DEVICE_REMOVAL",
	    [RDMA_CM_EVENT_MULTICAST_JOIN] = "RDMA_CM_EVENT_MULTICAST_JOIN",
	    [RDMA_CM_EVENT_MULTICAST_ERROR] = "RDMA_CM_EVENT_MULTICAST_ERROR",
	    [RDMA_CM_EVENT_ADDR_CHANGE] = "RDMA_CM_EVENT_ADDR_CHANGE",
	    [RDMA_CM_EVENT_TIMEWAIT_EXIT] = "RDMA_CM_EVENT_TIMEWAIT_EXIT",
	};

	if ((unsigned)event < sizeof(names) / sizeof(names[0]) && names[event])
		return names[event];
	return "UNKNOWN EVENT";
}
