/* SPDX-License-Identifier: MIT */
/*
 * Async events (ibv_get_async_event / ibv_ack_async_event) and the registry that maps the
 * engine objects named in events back to the applications' CQs, SRQs and QPs.
 *
 * Destroy protocol (as rdma-core): a destroyed object is first removed from the registry, so
 * no new event can name it; then destroy waits until the application acknowledged every
 * event it was already handed. Counters: *_reported here (under the object's mutex, taken
 * while the registry lock still pins the object), *_completed in ibv_ack_async_event.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "siw_verbs.h"
#include "vrb.h"

/* ---- registry ---------------------------------------------------------------------------- */

#define VRB_OBJ_BITS    10
#define VRB_OBJ_BUCKETS (1u << VRB_OBJ_BITS)

static pthread_mutex_t vrb_obj_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vrb_obj *vrb_by_eng[VRB_OBJ_BUCKETS];
static struct vrb_obj *vrb_by_user[VRB_OBJ_BUCKETS];

static unsigned int vrb_obj_hash(const void *p)
{
	return (unsigned int)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) >>
			      (64 - VRB_OBJ_BITS));
}

void *vrb_obj_new_id(void)
{
	static uintptr_t next;

	/* Ids count up from 1: they never meet a heap address in the other table. */
	return (void *)__atomic_add_fetch(&next, 1, __ATOMIC_RELAXED);
}

void vrb_obj_add(struct vrb_obj *o, const void *eng, const void *user, enum vrb_obj_type type)
{
	struct vrb_obj **be = &vrb_by_eng[vrb_obj_hash(eng)];
	struct vrb_obj **bu = &vrb_by_user[vrb_obj_hash(user)];

	o->eng = eng;
	o->user = user;
	o->type = type;
	pthread_mutex_lock(&vrb_obj_lock);
	o->next_eng = *be;
	*be = o;
	o->next_user = *bu;
	*bu = o;
	pthread_mutex_unlock(&vrb_obj_lock);
}

void vrb_obj_del(struct vrb_obj *o)
{
	struct vrb_obj **pp;

	pthread_mutex_lock(&vrb_obj_lock);
	for (pp = &vrb_by_eng[vrb_obj_hash(o->eng)]; *pp; pp = &(*pp)->next_eng) {
		if (*pp == o) {
			*pp = o->next_eng;
			break;
		}
	}
	for (pp = &vrb_by_user[vrb_obj_hash(o->user)]; *pp; pp = &(*pp)->next_user) {
		if (*pp == o) {
			*pp = o->next_user;
			break;
		}
	}
	pthread_mutex_unlock(&vrb_obj_lock);
	o->next_eng = o->next_user = NULL;
}

/* The live object of that type with p as engine handle or user pointer. Hold vrb_obj_lock. */
static struct vrb_obj *vrb_obj_find_locked(const void *p, enum vrb_obj_type type)
{
	struct vrb_obj *o;

	for (o = vrb_by_eng[vrb_obj_hash(p)]; o; o = o->next_eng)
		if (o->eng == p && o->type == type)
			return o;
	for (o = vrb_by_user[vrb_obj_hash(p)]; o; o = o->next_user)
		if (o->user == p && o->type == type)
			return o;
	return NULL;
}

VRB_EXPORT struct ibv_qp *siw_verbs_qp_from_eng(struct eng_qp *qp)
{
	struct vrb_obj *o;

	if (!qp)
		return NULL;
	pthread_mutex_lock(&vrb_obj_lock);
	o = vrb_obj_find_locked(qp, VRB_OBJ_QP);
	pthread_mutex_unlock(&vrb_obj_lock);
	return o ? &vrb_container_of(o, struct vrb_qp, obj)->qpx.qp_base : NULL;
}

struct vrb_cq *vrb_cq_claim_event(const void *user)
{
	struct vrb_cq *cq = NULL;
	struct vrb_obj *o;

	pthread_mutex_lock(&vrb_obj_lock);
	o = vrb_obj_find_locked(user, VRB_OBJ_CQ);
	if (o) {
		cq = vrb_container_of(o, struct vrb_cq, obj);
		pthread_mutex_lock(&cq->ibcq.mutex);
		cq->comp_events_reported++;
		pthread_mutex_unlock(&cq->ibcq.mutex);
	}
	pthread_mutex_unlock(&vrb_obj_lock);
	return cq;
}

void vrb_wait_events(pthread_mutex_t *mutex, pthread_cond_t *cond, const uint32_t *completed,
		     const uint32_t *reported)
{
	pthread_mutex_lock(mutex);
	while (*completed != *reported)
		pthread_cond_wait(cond, mutex);
	pthread_mutex_unlock(mutex);
}

/* ---- the async fd ------------------------------------------------------------------------ */

/*
 * ibv_get_async_event blocks unless the application made context->async_fd non-blocking,
 * so the flag on that fd must be the application's alone. The engine's fd is made
 * non-blocking (as engine.h describes it) so taking an event never blocks; an epoll fd
 * watching it (level-triggered) is readable exactly when it is, and is what we hand out.
 */
int vrb_async_fd_open(int eng_fd)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int fl = fcntl(eng_fd, F_GETFL);
	int ep;

	if (fl < 0 || fcntl(eng_fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, eng_fd, &ev)) {
		int err = errno;

		close(ep);
		errno = err;
		return -1;
	}
	return ep;
}

/* ---- events ------------------------------------------------------------------------------ */

/* Engine event types, their rdma-core codes and the kind of object each one names. */
static const struct {
	enum eng_event_type eng;
	enum ibv_event_type ibv;
	enum vrb_obj_type obj; /* unused for DEVICE_FATAL */
} vrb_events[] = {
    {ENG_EVENT_CQ_ERR, IBV_EVENT_CQ_ERR, VRB_OBJ_CQ},
    {ENG_EVENT_QP_FATAL, IBV_EVENT_QP_FATAL, VRB_OBJ_QP},
    {ENG_EVENT_QP_REQ_ERR, IBV_EVENT_QP_REQ_ERR, VRB_OBJ_QP},
    {ENG_EVENT_QP_ACCESS_ERR, IBV_EVENT_QP_ACCESS_ERR, VRB_OBJ_QP},
    {ENG_EVENT_COMM_EST, IBV_EVENT_COMM_EST, VRB_OBJ_QP},
    {ENG_EVENT_SQ_DRAINED, IBV_EVENT_SQ_DRAINED, VRB_OBJ_QP},
    {ENG_EVENT_QP_LAST_WQE_REACHED, IBV_EVENT_QP_LAST_WQE_REACHED, VRB_OBJ_QP},
    {ENG_EVENT_SRQ_LIMIT_REACHED, IBV_EVENT_SRQ_LIMIT_REACHED, VRB_OBJ_SRQ},
    {ENG_EVENT_DEVICE_FATAL, IBV_EVENT_DEVICE_FATAL, VRB_OBJ_QP},
};

static bool vrb_event_type(enum eng_event_type t, enum ibv_event_type *type, enum vrb_obj_type *obj)
{
	for (size_t i = 0; i < sizeof(vrb_events) / sizeof(vrb_events[0]); i++) {
		if (vrb_events[i].eng == t) {
			*type = vrb_events[i].ibv;
			*obj = vrb_events[i].obj;
			return true;
		}
	}
	return false;
}

/*
 * Fills the event and counts it against its object, or returns false if the event is unknown
 * or its object is gone (destroyed after the engine queued the event: the event is dropped,
 * as the kernel does).
 */
static bool vrb_map_event(const struct eng_async_event *ev, struct ibv_async_event *out)
{
	enum vrb_obj_type kind = VRB_OBJ_QP;
	struct vrb_obj *o;
	bool ok = true;

	memset(out, 0, sizeof(*out));
	if (!vrb_event_type(ev->type, &out->event_type, &kind)) {
		vrb_warn("unknown async event %d dropped\n", (int)ev->type);
		return false;
	}
	if (out->event_type == IBV_EVENT_DEVICE_FATAL) {
		out->element.port_num = 0;
		return true;
	}
	pthread_mutex_lock(&vrb_obj_lock);
	o = ev->obj ? vrb_obj_find_locked(ev->obj, kind) : NULL;
	if (!o) {
		ok = false;
	} else if (o->type == VRB_OBJ_CQ) {
		struct vrb_cq *cq = vrb_container_of(o, struct vrb_cq, obj);

		pthread_mutex_lock(&cq->ibcq.mutex);
		cq->async_events_reported++;
		pthread_mutex_unlock(&cq->ibcq.mutex);
		out->element.cq = &cq->ibcq;
	} else if (o->type == VRB_OBJ_SRQ) {
		struct vrb_srq *srq = vrb_container_of(o, struct vrb_srq, obj);

		pthread_mutex_lock(&srq->ibsrq.mutex);
		srq->events_reported++;
		pthread_mutex_unlock(&srq->ibsrq.mutex);
		out->element.srq = &srq->ibsrq;
	} else {
		struct vrb_qp *qp = vrb_container_of(o, struct vrb_qp, obj);

		pthread_mutex_lock(&qp->qpx.qp_base.mutex);
		qp->events_reported++;
		pthread_mutex_unlock(&qp->qpx.qp_base.mutex);
		out->element.qp = &qp->qpx.qp_base;
	}
	pthread_mutex_unlock(&vrb_obj_lock);
	if (!ok)
		vrb_debug("async event %d for a destroyed object dropped\n", (int)ev->type);
	return ok;
}

/* Returns 0, or -1 with errno (EAGAIN on a non-blocking async_fd with nothing queued). */
VRB_EXPORT int ibv_get_async_event(struct ibv_context *context, struct ibv_async_event *event)
{
	struct vrb_context *c;
	struct eng_async_event ev;
	int err;

	if (!context || !event) {
		errno = EINVAL;
		return -1;
	}
	c = vrb_ctx(context);
	for (;;) {
		struct pollfd pfd = {.fd = context->async_fd, .events = POLLIN};
		int fl;

		err = eng_ctx_get_async_event(c->ectx, &ev);
		if (!err) {
			if (vrb_map_event(&ev, event))
				return 0;
			continue;
		}
		if (err != EAGAIN)
			break;
		fl = fcntl(context->async_fd, F_GETFL);
		if (fl < 0) {
			err = errno;
			break;
		}
		if (fl & O_NONBLOCK)
			break;
		if (poll(&pfd, 1, -1) < 0) {
			err = errno; /* EINTR: like a read interrupted by a signal */
			break;
		}
	}
	errno = err;
	return -1;
}

VRB_EXPORT void ibv_ack_async_event(struct ibv_async_event *event)
{
	pthread_mutex_t *mutex = NULL;
	pthread_cond_t *cond = NULL;
	uint32_t *completed = NULL;

	if (!event)
		return;
	switch (event->event_type) {
	case IBV_EVENT_CQ_ERR:
		if (event->element.cq) {
			mutex = &event->element.cq->mutex;
			cond = &event->element.cq->cond;
			completed = &event->element.cq->async_events_completed;
		}
		break;
	case IBV_EVENT_QP_FATAL:
	case IBV_EVENT_QP_REQ_ERR:
	case IBV_EVENT_QP_ACCESS_ERR:
	case IBV_EVENT_COMM_EST:
	case IBV_EVENT_SQ_DRAINED:
	case IBV_EVENT_PATH_MIG:
	case IBV_EVENT_PATH_MIG_ERR:
	case IBV_EVENT_QP_LAST_WQE_REACHED:
		if (event->element.qp) {
			mutex = &event->element.qp->mutex;
			cond = &event->element.qp->cond;
			completed = &event->element.qp->events_completed;
		}
		break;
	case IBV_EVENT_SRQ_ERR:
	case IBV_EVENT_SRQ_LIMIT_REACHED:
		if (event->element.srq) {
			mutex = &event->element.srq->mutex;
			cond = &event->element.srq->cond;
			completed = &event->element.srq->events_completed;
		}
		break;
	default: /* port and device events have nothing to count */
		return;
	}
	if (!mutex)
		return;
	pthread_mutex_lock(mutex);
	(*completed)++;
	pthread_cond_signal(cond);
	pthread_mutex_unlock(mutex);
}
