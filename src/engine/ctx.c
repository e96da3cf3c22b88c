// SPDX-License-Identifier: MIT
/*
 * Device contexts and their progress thread. The thread sleeps in epoll_wait over the sockets of
 * its connected QPs and an eventfd for commands; it receives and places data, answers READs,
 * finishes sends the application thread could not complete, and tears QPs down. This is what
 * lets one-sided operations land while the target application calls nothing.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error.h"
#include "priv.h"

#define STAGING_SIZE (256 * 1024) /* batched reads of small FPDUs land here */
#define MAX_EVENTS   64
#define PARK_MS      2 /* see eng_qp_park */

/* ---- logging ------------------------------------------------------------------------------- */

int eng_log_level = 1;
enum eng_place_mode eng_place_mode = ENG_PLACE_SAFE;
int eng_poll_progress;
static FILE *log_file;

__attribute__((constructor)) static void eng_log_init(void)
{
	const char *lvl = getenv("SIW_LOG_LEVEL");
	const char *file = getenv("SIW_LOG_FILE");
	const char *place = getenv("SIW_PLACE");
	const char *poll = getenv("SIW_POLL_PROGRESS");

	/* Read here, before any thread exists: application threads polling CQs only read it. */
	eng_poll_progress = !(poll && *poll == '0'); /* busy polling hand-off: on unless =0 */

	if (place && !strcmp(place, "copy"))
		eng_place_mode = ENG_PLACE_COPY;

	if (lvl && *lvl) {
		static const char *const names[] = {"none", "error", "warn", "info", "debug"};
		char *end;
		long v = strtol(lvl, &end, 10);
		int level = -1;

		if (!*end && v >= 0 && v <= 4)
			level = (int)v;
		for (int i = 0; i < 5 && level < 0; i++)
			if (!strncasecmp(lvl, names[i], strlen(names[i])))
				level = i;
		/* Like the CM: a value that means nothing keeps the default (errors only). */
		eng_log_level = level < 0 ? 1 : level;
	}
	if (file && *file)
		log_file = fopen(file, "ae"); /* close-on-exec: not inherited by exec'ed programs */
}

void eng_log(int level, const char *fmt, ...)
{
	static const char *const names[] = {"", "error", "warning", "info", "debug"};
	FILE *f = log_file ? log_file : stderr;
	va_list ap;

	if (level > eng_log_level)
		return;
	flockfile(f);
	fprintf(f, "softiwarp %s: ", names[level < 5 ? level : 4]);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	funlockfile(f);
}

/* ---- fork and quiescence --------------------------------------------------------------------- */

static atomic_uint fork_gen;
static pthread_mutex_t ctx_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct eng_link ctx_list = {&ctx_list, &ctx_list};
static atomic_uint_fast64_t mr_epoch;

/* Remote atomics of the whole process (qp_rx.c: atomic_execute). */
pthread_mutex_t eng_atomic_lock = PTHREAD_MUTEX_INITIALIZER;

static void eng_atfork_child(void)
{
	/* The child has none of the progress threads: every inherited context is dead. */
	atomic_fetch_add(&fork_gen, 1);
	pthread_mutex_init(&ctx_list_lock, NULL);
	/* A thread of the parent may have held it; its new contexts need it free. */
	pthread_mutex_init(&eng_atomic_lock, NULL);
}

__attribute__((constructor)) static void eng_fork_init(void)
{
	pthread_atfork(NULL, NULL, eng_atfork_child);
}

bool eng_forked(const struct eng_ctx *ctx)
{
	/* No getpid() on the data path: the fork handler bumps a generation instead. */
	return ctx->fork_gen != atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

void eng_quiesce(void)
{
	uint64_t e = atomic_fetch_add(&mr_epoch, 1) + 1;
	struct eng_link *l;

	pthread_mutex_lock(&ctx_list_lock);
	for (l = ctx_list.next; l != &ctx_list; l = l->next) {
		struct eng_ctx *ctx = container_of(l, struct eng_ctx, ctx_link);

		if (eng_in_progress_thread(ctx))
			continue;
		/*
		 * A thread asleep in epoll_wait holds no resolved pointer into the region; a busy
		 * one passes a quiescent point at the top of its next loop, within microseconds.
		 * Bounded: ~100 ms at most, then give up (documented gap).
		 */
		for (int i = 0; i < 100000 && !atomic_load(&ctx->idle) &&
				atomic_load(&ctx->seen_epoch) < e && !atomic_load(&ctx->stop);
		     i++)
			if (i > 100)
				usleep(1);
	}
	pthread_mutex_unlock(&ctx_list_lock);
}

/* ---- commands ------------------------------------------------------------------------------ */

static void wake(struct eng_ctx *ctx)
{
	uint64_t one = 1;
	ssize_t r;

	do
		r = write(ctx->wake_fd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

void eng_ctx_post(struct eng_ctx *ctx, struct eng_cmd *cmd, bool wait)
{
	if (eng_forked(ctx)) {
		/* A forked child has no progress thread: nothing would ever run the command. */
		if (!wait)
			free(cmd);
		return;
	}
	cmd->done = false;
	cmd->waiter = wait;
	pthread_mutex_lock(&ctx->lock);
	link_add(&ctx->cmds, &cmd->link);
	pthread_mutex_unlock(&ctx->lock);
	wake(ctx);
	if (!wait)
		return;
	pthread_mutex_lock(&ctx->lock);
	while (!cmd->done)
		pthread_cond_wait(&ctx->cmd_cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);
}

int eng_ctx_post_async(struct eng_ctx *ctx, enum eng_cmd_type type, struct eng_qp *qp, int err)
{
	struct eng_cmd *c = calloc(1, sizeof(*c));

	if (!c)
		return ENOMEM;
	c->type = type;
	c->qp = qp;
	c->err = err;
	eng_ctx_post(ctx, c, false);
	return 0;
}

bool eng_in_progress_thread(const struct eng_ctx *ctx)
{
	return ctx->started && pthread_equal(pthread_self(), ctx->thread);
}

static void run_cmd(struct eng_ctx *ctx, struct eng_cmd *c)
{
	switch (c->type) {
	case ENG_CMD_SYNC:
		break;
	case ENG_CMD_QP_FAIL:
		eng_qp_fail(c->qp, c->err);
		break;
	case ENG_CMD_QP_TX:
		eng_qp_kick_tx(c->qp);
		break;
	case ENG_CMD_QP_START:
		eng_qp_start(c->qp);
		break;
	case ENG_CMD_QP_CLOSE:
		eng_qp_fail(c->qp, 0);
		break;
	}
	(void)ctx;
}

static void run_cmds(struct eng_ctx *ctx)
{
	for (;;) {
		struct eng_cmd *c;
		bool waiter;

		pthread_mutex_lock(&ctx->lock);
		if (ctx->cmds.next == &ctx->cmds) {
			pthread_mutex_unlock(&ctx->lock);
			return;
		}
		c = container_of(ctx->cmds.next, struct eng_cmd, link);
		link_del(&c->link);
		pthread_mutex_unlock(&ctx->lock);

		run_cmd(ctx, c);

		pthread_mutex_lock(&ctx->lock);
		waiter = c->waiter;
		c->done = true;
		if (waiter)
			pthread_cond_broadcast(&ctx->cmd_cond);
		pthread_mutex_unlock(&ctx->lock);
		if (!waiter)
			free(c);
	}
}

/* ---- the progress thread --------------------------------------------------------------------- */

static void *progress_main(void *arg)
{
	struct eng_ctx *ctx = arg;
	struct epoll_event ev[MAX_EVENTS];
	sigset_t all;

	/* Signals are the application's business: deliver them to its threads, never to ours. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	while (!atomic_load(&ctx->stop)) {
		int n;

		atomic_store(&ctx->idle, true);
		/* Parked QPs (busy polling hand-off, qp.c) are looked at again every PARK_MS. */
		n = epoll_wait(ctx->epfd, ev, MAX_EVENTS,
			       ctx->parked.next != &ctx->parked ? PARK_MS : -1);
		atomic_store(&ctx->idle, false);
		atomic_store(&ctx->seen_epoch, atomic_load(&mr_epoch));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			eng_err("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct eng_qp *qp = ev[i].data.ptr;

			if (!qp) {
				uint64_t v;

				if (read(ctx->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					eng_warn("eventfd read: %s", strerror(errno));
				continue;
			}
			/*
			 * An application thread busy-polls this QP's CQ: it reads and writes the
			 * socket itself, so leave the QP to it (errors are still handled here).
			 */
			if (!(ev[i].events & (EPOLLERR | EPOLLHUP)) && eng_poll_progress &&
			    eng_qp_polled(qp, eng_now_ns())) {
				eng_qp_park(qp);
				continue;
			}
			/* ERR/HUP count as readable: the read finds out what happened. */
			if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
				eng_qp_rx_ready(qp);
			if (ev[i].events & EPOLLOUT)
				eng_qp_kick_tx(qp);
		}
		if (ctx->parked.next != &ctx->parked)
			eng_qp_unpark_idle(ctx);
		/* Commands last: a QP freed by one is not in this round's events any more. */
		run_cmds(ctx);
	}
	run_cmds(ctx);
	return NULL;
}

/* ---- readers ---------------------------------------------------------------------------------- */

int eng_reader_init(struct eng_reader *rd, size_t staging)
{
	memset(rd, 0, sizeof(*rd));
	rd->staging_size = staging;
	rd->staging = malloc(staging);
	rd->pl_src = calloc(ENG_PLACE_BATCH, sizeof(*rd->pl_src));
	rd->pl_dst = calloc(ENG_PLACE_BATCH, sizeof(*rd->pl_dst));
	rd->pend = calloc(ENG_PEND_CQE, sizeof(*rd->pend));
	if (!rd->staging || !rd->pl_src || !rd->pl_dst || !rd->pend) {
		eng_reader_fini(rd);
		return ENOMEM;
	}
	return 0;
}

void eng_reader_fini(struct eng_reader *rd)
{
	free(rd->staging);
	free(rd->pl_src);
	free(rd->pl_dst);
	free(rd->pend);
	memset(rd, 0, sizeof(*rd));
}

/* ---- contexts -------------------------------------------------------------------------------- */

struct eng_ctx *eng_ctx_open(const struct eng_device *dev)
{
	struct eng_ctx *ctx = calloc(1, sizeof(*ctx));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int p[2] = {-1, -1}, err;

	if (!ctx || !dev) {
		free(ctx);
		errno = dev ? ENOMEM : EINVAL;
		return NULL;
	}
	ctx->dev = *dev;
	ctx->pid = getpid();
	ctx->fork_gen = atomic_load(&fork_gen);
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctx->epfd < 0 || ctx->wake_fd < 0 || pipe2(p, O_CLOEXEC) < 0 ||
	    eng_reader_init(&ctx->rd, STAGING_SIZE))
		goto fail;
	ctx->async_rd = p[0];
	ctx->async_wr = p[1];
	/* Async events must never block the progress thread. */
	fcntl(ctx->async_wr, F_SETFL, O_NONBLOCK);
	if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->wake_fd, &ev) < 0)
		goto fail;
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_cond_init(&ctx->cmd_cond, NULL);
	link_init(&ctx->cmds);
	link_init(&ctx->qps);
	link_init(&ctx->parked);
	link_init(&ctx->ctx_link);
	err = pthread_create(&ctx->thread, NULL, progress_main, ctx);
	if (err) {
		errno = err;
		goto fail;
	}
	pthread_setname_np(ctx->thread, "siw-progress"); /* top -H, siw-stat */
	ctx->started = true;
	pthread_mutex_lock(&ctx_list_lock);
	link_add(&ctx_list, &ctx->ctx_link);
	pthread_mutex_unlock(&ctx_list_lock);
	eng_stat_ctx_open(ctx); /* observability hook: siw-stat socket, SIW_CAPTURE (obs.h) */
	return ctx;
fail:
	err = errno ? errno : ENOMEM;
	if (ctx->epfd >= 0)
		close(ctx->epfd);
	if (ctx->wake_fd >= 0)
		close(ctx->wake_fd);
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	eng_reader_fini(&ctx->rd);
	free(ctx);
	errno = err;
	return NULL;
}

int eng_ctx_close(struct eng_ctx *ctx)
{
	if (!ctx)
		return EINVAL;
	pthread_mutex_lock(&ctx->lock);
	if (ctx->nobjs) {
		pthread_mutex_unlock(&ctx->lock);
		return EBUSY;
	}
	pthread_mutex_unlock(&ctx->lock);
	eng_stat_ctx_close(ctx); /* observability hook: siw-stat forgets it (obs.h) */
	if (!eng_forked(ctx)) {
		atomic_store(&ctx->stop, true);
		wake(ctx);
		pthread_join(ctx->thread, NULL);
		pthread_mutex_lock(&ctx_list_lock);
		link_del(&ctx->ctx_link);
		pthread_mutex_unlock(&ctx_list_lock);
	}
	close(ctx->epfd);
	close(ctx->wake_fd);
	close(ctx->async_rd);
	close(ctx->async_wr);
	eng_reader_fini(&ctx->rd);
	pthread_mutex_destroy(&ctx->lock);
	pthread_cond_destroy(&ctx->cmd_cond);
	free(ctx);
	return 0;
}

const struct eng_device *eng_ctx_device(const struct eng_ctx *ctx)
{
	return &ctx->dev;
}

int eng_ctx_async_fd(const struct eng_ctx *ctx)
{
	return ctx->async_rd;
}

void eng_ctx_async_event(struct eng_ctx *ctx, enum eng_event_type type, void *obj)
{
	struct eng_async_event ev = {.type = type, .obj = obj};
	ssize_t r;

	do
		r = write(ctx->async_wr, &ev, sizeof(ev));
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(ev))
		eng_warn("async event %d dropped (queue full)", type);
}

int eng_ctx_get_async_event(struct eng_ctx *ctx, struct eng_async_event *ev)
{
	ssize_t r;

	do
		r = read(ctx->async_rd, ev, sizeof(*ev));
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)sizeof(*ev))
		return 0;
	return r < 0 ? errno : EIO;
}
