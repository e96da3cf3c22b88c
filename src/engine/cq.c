// SPDX-License-Identifier: MIT
/*
 * Completion queues and completion channels.
 *
 * A CQ is a power-of-two ring under a mutex: producers are the progress thread and application
 * threads that complete sends they transmitted themselves; consumers poll. Arming is one-shot,
 * as in verbs: the first completion after ibv_req_notify_cq (or the first solicited/error one
 * with solicited_only) writes the CQ's user pointer into its channel's pipe and disarms.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "priv.h"

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static void ctx_obj(struct eng_ctx *ctx, int delta)
{
	pthread_mutex_lock(&ctx->lock);
	ctx->nobjs += (unsigned)delta;
	pthread_mutex_unlock(&ctx->lock);
}

/* ---- channels -------------------------------------------------------------------------------- */

struct eng_channel *eng_channel_create(struct eng_ctx *ctx)
{
	struct eng_channel *ch;
	int p[2];

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		int e = errno;

		free(ch);
		errno = e;
		return NULL;
	}
	/* The writer is a producer thread: never block it (a full pipe means the app sleeps). */
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	ch->ctx = ctx;
	ch->rd = p[0];
	ch->wr = p[1];
	ctx_obj(ctx, 1);
	return ch;
}

int eng_channel_destroy(struct eng_channel *ch)
{
	if (!ch)
		return EINVAL;
	if (atomic_load(&ch->refs))
		return EBUSY;
	close(ch->rd);
	close(ch->wr);
	ctx_obj(ch->ctx, -1);
	free(ch);
	return 0;
}

int eng_channel_fd(const struct eng_channel *ch)
{
	return ch->rd;
}

int eng_channel_get_event(struct eng_channel *ch, void **cq_user)
{
	ssize_t r;

	do
		r = read(ch->rd, cq_user, sizeof(*cq_user));
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)sizeof(*cq_user))
		return 0;
	return r < 0 ? errno : EIO;
}

/* ---- completion queues ---------------------------------------------------------------------- */

struct eng_cq *eng_cq_create(struct eng_ctx *ctx, int cqe, struct eng_channel *ch, void *user)
{
	struct eng_cq *cq;

	if (!ctx || cqe < 1 || cqe > ENG_MAX_CQE || (ch && ch->ctx != ctx)) {
		errno = EINVAL;
		return NULL;
	}
	cq = calloc(1, sizeof(*cq));
	if (!cq) {
		errno = ENOMEM;
		return NULL;
	}
	cq->size = pow2_at_least((uint32_t)cqe);
	cq->ring = calloc(cq->size, sizeof(*cq->ring));
	if (!cq->ring) {
		free(cq);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&cq->lock, NULL);
	pthread_mutex_init(&cq->qp_lock, NULL);
	cq->ctx = ctx;
	cq->ch = ch;
	cq->user = user;
	if (ch)
		atomic_fetch_add(&ch->refs, 1);
	ctx_obj(ctx, 1);
	return cq;
}

int eng_cq_destroy(struct eng_cq *cq)
{
	if (!cq)
		return EINVAL;
	if (atomic_load(&cq->refs))
		return EBUSY;
	if (cq->ch)
		atomic_fetch_sub(&cq->ch->refs, 1);
	ctx_obj(cq->ctx, -1);
	pthread_mutex_destroy(&cq->lock);
	pthread_mutex_destroy(&cq->qp_lock);
	free(cq->qps);
	free(cq->ring);
	free(cq);
	return 0;
}

void *eng_cq_user(const struct eng_cq *cq)
{
	return cq->user;
}

int eng_cq_size(const struct eng_cq *cq)
{
	return (int)cq->size;
}

int eng_cq_resize(struct eng_cq *cq, int cqe)
{
	struct eng_cqe *ring;
	uint32_t size, used;

	if (!cq || cqe < 1 || cqe > ENG_MAX_CQE)
		return EINVAL;
	size = pow2_at_least((uint32_t)cqe);
	ring = calloc(size, sizeof(*ring));
	if (!ring)
		return ENOMEM;
	pthread_mutex_lock(&cq->lock);
	used = cq->tail - cq->head;
	if (used > size) {
		pthread_mutex_unlock(&cq->lock);
		free(ring);
		return EINVAL; /* the new size must hold what is queued */
	}
	for (uint32_t i = 0; i < used; i++)
		ring[i] = cq->ring[(cq->head + i) & (cq->size - 1)];
	free(cq->ring);
	cq->ring = ring;
	cq->size = size;
	__atomic_store_n(&cq->head, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&cq->tail, used, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&cq->lock);
	return 0;
}

void eng_cq_push(struct eng_cq *cq, const struct eng_cqe *cqe)
{
	bool notify = false, overflow = false;

	pthread_mutex_lock(&cq->lock);
	if (cq->tail - cq->head == cq->size) {
		/* No room: the consumer let the CQ overflow (verbs: CQ error, async event). */
		overflow = !cq->overflow;
		cq->overflow = true;
	} else {
		cq->ring[cq->tail & (cq->size - 1)] = *cqe;
		__atomic_store_n(&cq->tail, cq->tail + 1, __ATOMIC_RELEASE);
		if (cq->armed == ARM_NEXT ||
		    (cq->armed == ARM_SOLICITED &&
		     (cqe->solicited || cqe->status != ENG_WC_SUCCESS))) {
			__atomic_store_n(&cq->armed, 0, __ATOMIC_RELAXED);
			notify = cq->ch != NULL;
		}
	}
	pthread_mutex_unlock(&cq->lock);
	if (notify) {
		void *u = cq->user;
		ssize_t r;

		do
			r = write(cq->ch->wr, &u, sizeof(u));
		while (r < 0 && errno == EINTR);
	}
	if (overflow) {
		eng_err("CQ overflow: completions lost (the CQ is smaller than the work posted)");
		eng_ctx_async_event(cq->ctx, ENG_EVENT_CQ_ERR, cq->user);
	}
}

int eng_cq_attach(struct eng_cq *cq, struct eng_qp *qp)
{
	int err = 0;

	pthread_mutex_lock(&cq->qp_lock);
	if (cq->nqps == cq->qps_cap) {
		unsigned cap = cq->qps_cap ? cq->qps_cap * 2 : 4;
		struct eng_qp **q = realloc(cq->qps, cap * sizeof(*q));

		if (q) {
			cq->qps = q;
			cq->qps_cap = cap;
		} else {
			err = ENOMEM;
		}
	}
	if (!err)
		cq->qps[cq->nqps++] = qp;
	pthread_mutex_unlock(&cq->qp_lock);
	return err;
}

void eng_cq_detach(struct eng_cq *cq, struct eng_qp *qp)
{
	pthread_mutex_lock(&cq->qp_lock);
	for (unsigned i = 0; i < cq->nqps; i++)
		if (cq->qps[i] == qp) {
			cq->qps[i] = cq->qps[--cq->nqps];
			break;
		}
	pthread_mutex_unlock(&cq->qp_lock);
}

/* ---- busy polling ---------------------------------------------------------------------------- */

#define POLL_STAGING (64 * 1024)

static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void reader_free(void *p)
{
	eng_reader_fini(p);
	free(p);
}

static void reader_key_init(void)
{
	if (pthread_key_create(&reader_key, reader_free))
		eng_warn("no thread-specific key: busy polling is off");
}

/* This application thread's receive buffers (made on first use, freed at thread exit). */
static struct eng_reader *thread_reader(void)
{
	struct eng_reader *rd;

	pthread_once(&reader_once, reader_key_init);
	rd = pthread_getspecific(reader_key);
	if (rd)
		return rd;
	rd = malloc(sizeof(*rd));
	if (!rd || eng_reader_init(rd, POLL_STAGING)) {
		free(rd);
		return NULL;
	}
	if (pthread_setspecific(reader_key, rd)) {
		reader_free(rd);
		return NULL;
	}
	return rd;
}

/*
 * Busy polling (on unless SIW_POLL_PROGRESS=0): an application thread polling an empty CQ
 * reads and writes the sockets of its QPs itself instead of waiting for the progress thread,
 * which leaves those QPs alone while it does (eng_qp_park in qp.c: without that hand-off the
 * two fought over every message and, on 2 cores, made latency worse rather than better). Only
 * a thread that is waiting on the CQ counts: one that armed it for an event is about to
 * sleep, and one that just got a completion may go and wait somewhere else.
 */
#define POLL_QPS      4 /* QPs served per empty poll, round robin (many QPs per CQ) */
/*
 * Empty polls in a row from which a thread counts as spinning here. perftest's ib_write_lat
 * polls its send CQ until the completion and then spins on memory; siw-bench's WRITE
 * ping-pong polls the CQ now and then while it spins on memory (2: 0.86-1.04x TCP; 3: 2.8-3.2x;
 * 8: 1.7x, as with no hand-off).
 */
#define POLL_SPINNING 2

static void cq_progress(struct eng_cq *cq)
{
	struct eng_reader *rd;
	unsigned n;

	if (!eng_poll_progress || eng_in_progress_thread(cq->ctx) || eng_forked(cq->ctx))
		return;
	rd = thread_reader();
	if (!rd || pthread_mutex_trylock(&cq->qp_lock))
		return;
	/* A thread that polls once and then waits elsewhere is not spinning here. */
	if (!__atomic_load_n(&cq->armed, __ATOMIC_RELAXED) &&
	    atomic_fetch_add_explicit(&cq->empty_run, 1, memory_order_relaxed) + 1 >= POLL_SPINNING)
		atomic_store_explicit(&cq->poll_ns, eng_now_ns(), memory_order_relaxed);
	n = cq->nqps < POLL_QPS ? cq->nqps : POLL_QPS;
	for (unsigned i = 0; i < n; i++) {
		if (cq->poll_next >= cq->nqps)
			cq->poll_next = 0;
		eng_qp_poll_progress(cq->qps[cq->poll_next++], rd);
	}
	pthread_mutex_unlock(&cq->qp_lock);
}

int eng_cq_poll(struct eng_cq *cq, int n, struct eng_cqe *out)
{
	int got = 0;

	/*
	 * Busy-polling applications mostly find the CQ empty: see that without the lock, so
	 * they do not fight the producers for it.
	 */
	if (__atomic_load_n(&cq->tail, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&cq->head, __ATOMIC_RELAXED)) {
		/* Empty: make progress on the QPs behind it ourselves (busy polling)... */
		cq_progress(cq);
		if (__atomic_load_n(&cq->tail, __ATOMIC_ACQUIRE) ==
		    __atomic_load_n(&cq->head, __ATOMIC_RELAXED)) {
			/*
			 * ... and now and then give the CPU away: a spinning application must not
			 * starve the progress thread when cores are scarce (2-core CI machines,
			 * containers). With a core to spare this costs one cheap syscall.
			 */
			if ((atomic_fetch_add_explicit(&cq->empty_polls, 1, memory_order_relaxed) &
			     31) == 31)
				sched_yield();
			return 0;
		}
	}
	pthread_mutex_lock(&cq->lock);
	while (got < n && cq->head != cq->tail) {
		out[got++] = cq->ring[cq->head & (cq->size - 1)];
		__atomic_store_n(&cq->head, cq->head + 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&cq->lock);
	/*
	 * The thread got what it waited for and may now wait elsewhere (perftest's
	 * ib_write_lat spins on memory between its CQ polls): not a poller any more until its
	 * next empty poll, so data that arrives meanwhile wakes the progress thread.
	 */
	if (got && atomic_load_explicit(&cq->empty_run, memory_order_relaxed))
		atomic_store_explicit(&cq->empty_run, 0, memory_order_relaxed);
	if (got && atomic_load_explicit(&cq->poll_ns, memory_order_relaxed))
		atomic_store_explicit(&cq->poll_ns, 0, memory_order_relaxed);
	return got;
}

int eng_cq_arm(struct eng_cq *cq, bool solicited_only)
{
	if (!cq)
		return EINVAL;
	pthread_mutex_lock(&cq->lock);
	/* NEXT wins over SOLICITED when both are asked for before an event. */
	if (cq->armed != ARM_NEXT)
		__atomic_store_n(&cq->armed, solicited_only ? ARM_SOLICITED : ARM_NEXT,
				 __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cq->lock);
	/* Its thread will sleep on the channel: the progress thread takes its QPs back. */
	atomic_store_explicit(&cq->poll_ns, 0, memory_order_relaxed);
	return 0;
}
