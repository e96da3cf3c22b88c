/* SPDX-License-Identifier: MIT */
/*
 * Engine internals shared by its files: the objects behind engine.h and the rules for who may
 * touch what.
 *
 * Locks, always taken in this order:
 *	qp->rx_lock	the receive side (core rx, RQ consumer, ORQ consumer). Held by the progress
 *			thread while it reads from the socket, and by whoever flushes the QP.
 *	qp->lock	the send side (SQ, core tx, batch, IRQ consumer, ORQ producer) and the state.
 *	qp->rq_lock	RQ producers (post_recv) against the flush.
 *	cq->lock	one CQ's ring and arm state. Never held while taking another lock.
 *	ctx->lock	the context's object lists and command queue.
 */
#ifndef SIW_ENGINE_PRIV_H
#define SIW_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/uio.h>

#include "engine.h"
#include "qp.h"
#include "rx.h"
#include "tx.h"
#include "obs.h" /* observability hook: siw-stat and SIW_CAPTURE (stat.c, capture.c) */

/* ---- logging (SIW_LOG_LEVEL=0..4: none, error, warn, info, debug; default 1) --------------- */

extern int eng_log_level;
void eng_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define eng_err(...)  eng_log(1, __VA_ARGS__)
#define eng_warn(...) eng_log(2, __VA_ARGS__)
#define eng_info(...) eng_log(3, __VA_ARGS__)
#define eng_dbg(...)                                                                               \
	do {                                                                                       \
		if (eng_log_level >= 4)                                                            \
			eng_log(4, __VA_ARGS__);                                                   \
	} while (0)

/* ---- simple intrusive list ---------------------------------------------------------------- */

struct eng_link {
	struct eng_link *prev, *next;
};

static inline void link_init(struct eng_link *h)
{
	h->prev = h->next = h;
}

static inline void link_add(struct eng_link *h, struct eng_link *n)
{
	n->next = h;
	n->prev = h->prev;
	h->prev->next = n;
	h->prev = n;
}

static inline void link_del(struct eng_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---- context ------------------------------------------------------------------------------ */

/* Work handed to the progress thread. */
enum eng_cmd_type {
	ENG_CMD_SYNC,	     /* just a barrier */
	ENG_CMD_QP_FAIL,     /* tear a QP down with cmd.err */
	ENG_CMD_QP_TX,	     /* run the send side of a QP */
	ENG_CMD_QP_START,    /* a QP was connected: register its socket, report established */
	ENG_CMD_QP_CLOSE,    /* graceful disconnect */
};

struct eng_cmd {
	struct eng_link link;
	enum eng_cmd_type type;
	struct eng_qp *qp;
	int err;
	bool done;	     /* set by the progress thread; the poster may wait on ctx->cmd_cond */
	bool waiter;	     /* someone waits for done (the command lives on its stack) */
};

struct eng_cq;
struct eng_pend_cqe {
	struct eng_cq *cq;
	struct eng_cqe cqe;
};
#define ENG_PEND_CQE 256

/*
 * What one thread needs to receive for QPs: a staging buffer that socket reads land in, the
 * copies from it into place (done in one system call), and the receive completions waiting for
 * them. The progress thread has one; an application thread that polls a CQ gets its own (see
 * eng_cq_poll). pl_commit pieces belong to messages whose completion is pending; the rest belong
 * to an FPDU not yet checked (CRC). Used under the rx_lock of the QP being read.
 */
struct eng_reader {
	uint8_t *staging;
	size_t staging_size;
	struct iovec *pl_src, *pl_dst;
	unsigned pl_n;
	size_t pl_bytes;
	unsigned pl_commit;
	bool pl_sealed;	     /* the last piece may not grow: a completion follows it */
	struct eng_pend_cqe *pend;
	unsigned npend;
};

int eng_reader_init(struct eng_reader *rd, size_t staging);
void eng_reader_fini(struct eng_reader *rd);

struct eng_ctx {
	struct eng_device dev;
	int epfd;
	int wake_fd;	     /* eventfd: commands queued */
	int async_rd, async_wr; /* pipe of struct eng_async_event */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_bool idle;    /* the progress thread sleeps in epoll_wait (quiescent) */
	atomic_uint_fast64_t seen_epoch;
	pid_t pid;	     /* creator (process_vm_writev target) */
	unsigned fork_gen;   /* fork generation at creation: a forked child may not use it */

	pthread_mutex_t lock;
	pthread_cond_t cmd_cond;
	struct eng_link cmds;
	struct eng_link qps;
	unsigned nobjs;	     /* PDs, CQs, channels, QPs, SRQs alive */

	struct eng_reader rd; /* the progress thread's */
	struct eng_link parked; /* QPs left to busy pollers (progress thread only, see qp.c) */
	struct eng_link ctx_link;
};


/* Queues a command for the progress thread. wait: block until it ran. */
void eng_ctx_post(struct eng_ctx *ctx, struct eng_cmd *cmd, bool wait);
/* Queues a heap command that the progress thread frees (fire and forget). */
int eng_ctx_post_async(struct eng_ctx *ctx, enum eng_cmd_type type, struct eng_qp *qp, int err);
void eng_ctx_async_event(struct eng_ctx *ctx, enum eng_event_type type, void *obj);
bool eng_in_progress_thread(const struct eng_ctx *ctx);
bool eng_forked(const struct eng_ctx *ctx);

/* How staged payload reaches its destination (SIW_PLACE=safe|copy). */
enum eng_place_mode {
	ENG_PLACE_SAFE, /* process_vm_writev(): unmapped memory is EFAULT, not a crash */
	ENG_PLACE_COPY, /* memcpy(): faster for small FPDUs; a freed buffer crashes the process */
};
extern enum eng_place_mode eng_place_mode;
extern pthread_mutex_t eng_atomic_lock; /* remote atomics, process-wide (qp_rx.c) */
extern int eng_poll_progress; /* SIW_POLL_PROGRESS (default 1): CQ pollers read their QPs' sockets */
#define ENG_PLACE_BATCH 1024 /* IOV_MAX */

/* Waits until every progress thread has passed a quiescent point after now (deregistration). */
void eng_quiesce(void);

/* ---- protection domains and memory ------------------------------------------------------- */

struct eng_pd {
	struct eng_ctx *ctx;
	uint32_t id;
	atomic_int refs;     /* MRs, QPs, SRQs */
};

struct eng_mr {
	struct eng_pd *pd;
	uint32_t stag;
	void *addr;
	size_t len;
};

/* Resolves an STag for the core (any thread). 0 or SIW_ERR_MEM_STAG. */
int eng_mr_lookup(uint32_t stag, struct siw_mem_ref *ref);
/* The same for an lkey of a local SGE: memory windows' STags are refused. */
int eng_mr_lookup_local(uint32_t stag, struct siw_mem_ref *ref);
/*
 * Invalidates a region's STag or unbinds a type-2 window (a type-1 window is refused). remote:
 * a SEND with Invalidate arriving on QP qpn (a type-2 window must be bound to it); else a local
 * IBV_WR_LOCAL_INV. 0 or SIW_ERR_MEM_*.
 */
int eng_stag_invalidate(uint32_t stag, uint32_t pd, uint32_t qpn, bool remote);

struct eng_mw {
	struct eng_pd *pd;
	uint32_t stag;	     /* as allocated (the index stays; binds change the key byte) */
};

/* A bind as the SQ executes it (from an ENG_WR_BIND_MW work request, see engine.h). */
struct eng_mw_bind {
	uint32_t mw_stag;    /* an STag of the window (its index names it) */
	uint32_t new_stag;   /* its STag after the bind (same index, the consumer's key) */
	bool bind;	     /* false: unbind (type 1, zero-length bind) */
	uint32_t mr_stag;    /* the region's lkey */
	uint64_t addr, len;  /* in the region's tagged-offset space */
	uint32_t access;     /* ENG_ACCESS_REMOTE_* */
};
/* Binds (or unbinds) a window of PD pd for QP qpn. 0 or SIW_ERR_MEM_*. */
int eng_mw_bind(uint32_t pd, uint32_t qpn, const struct eng_mw_bind *b);

/* ---- completion queues ------------------------------------------------------------------- */

struct eng_channel {
	struct eng_ctx *ctx;
	int rd, wr;	     /* pipe of CQ user pointers */
	atomic_int refs;
};

struct eng_cq {
	struct eng_ctx *ctx;
	pthread_mutex_t lock;
	struct eng_cqe *ring;
	uint32_t size;	     /* power of two */
	uint32_t head, tail; /* free-running */
	int armed;	     /* 0, ARM_NEXT, ARM_SOLICITED */
	bool overflow;
	atomic_uint empty_polls;
	atomic_llong poll_ns; /* when an application thread last spun on it empty (0: not) */
	atomic_uint empty_run; /* empty polls since the last completion taken */
	unsigned poll_next;  /* busy polling: the QP to serve next (qp_lock) */
	/* QPs that complete into this CQ, for busy polling (qp_lock; never held across others) */
	pthread_mutex_t qp_lock;
	struct eng_qp **qps;
	unsigned nqps, qps_cap;
	struct eng_channel *ch;
	void *user;
	atomic_int refs;     /* QPs using it */
};

#define ARM_NEXT      1
#define ARM_SOLICITED 2

/* Adds a completion; raises the channel event if armed for it. */
void eng_cq_push(struct eng_cq *cq, const struct eng_cqe *cqe);
/* A QP completes into this CQ (for busy polling); detach is idempotent. */
int eng_cq_attach(struct eng_cq *cq, struct eng_qp *qp);
void eng_cq_detach(struct eng_cq *cq, struct eng_qp *qp);

/* ---- receive queues ---------------------------------------------------------------------- */

struct eng_rqe {
	uint64_t wr_id;
	uint32_t num_sge;
	struct siw_sge sge[]; /* max_sge entries */
};

/* A single-producer (post_recv, under plock) single-consumer (rx) ring of receive WRs. */
struct eng_rq {
	pthread_mutex_t plock; /* producers */
	uint8_t *mem;
	uint32_t size;	       /* power of two */
	uint32_t slot;	       /* bytes per entry */
	uint32_t max_sge;
	atomic_uint head;      /* consumer */
	atomic_uint tail;      /* producer */
	bool flushed;	       /* under plock: posting completes at once with FLUSH_ERR */
};

static inline struct eng_rqe *rq_entry(struct eng_rq *rq, uint32_t i)
{
	return (struct eng_rqe *)(rq->mem + (size_t)(i & (rq->size - 1)) * rq->slot);
}

int eng_rq_init(struct eng_rq *rq, uint32_t wr, uint32_t max_sge);
void eng_rq_fini(struct eng_rq *rq);

struct eng_srq {
	struct eng_ctx *ctx;
	struct eng_pd *pd;
	pthread_mutex_t lock;  /* consumers (several QPs) */
	struct eng_rq rq;
	uint32_t limit;	       /* SRQ_LIMIT_REACHED when the count drops below (0: off) */
	void *user;
	atomic_int refs;
};

/* ---- queue pairs ------------------------------------------------------------------------- */

struct eng_wqe {
	uint64_t wr_id;
	uint8_t opcode;	     /* enum eng_wr_opcode */
	uint8_t flags;	     /* enum eng_send_flags */
	uint8_t done;	     /* transmitted / moved to the ORQ: the slot may be reused */
	uint8_t signaled;
	uint16_t num_sge;
	uint16_t rd_part;    /* RDMA READ with several sink SGEs: the next one to request */
	uint32_t len;	     /* payload bytes */
	uint32_t imm_or_inv;
	uint32_t rkey;
	uint64_t raddr;
	uint64_t compare_add, swap;
	struct siw_sge sge[]; /* num_sge entries, or inline data when ENG_SEND_INLINE */
};

/* An outstanding RDMA READ we sent (ORQ), waiting for its response. */
struct eng_orq {
	uint64_t wr_id;
	bool signaled;
	bool internal;	     /* the RFC 6581 READ RTR: no work request behind it */
	uint32_t sink_stag;  /* atomic: lkey of the 8-byte result buffer */
	uint64_t sink_to;    /* atomic: its address */
	uint32_t len;
	uint32_t wr_len;     /* the whole work request's bytes (its completion's byte_len) */
	uint8_t atomic;	     /* RFC 7306: 0 for a READ, else the ENG_WC_* opcode of the atomic */
	uint32_t req_id;     /* atomic: the Request Identifier sent */
};

/* An inbound RDMA READ (or RFC 7306 Atomic Request: they share IRD) to answer (IRQ). */
struct eng_irq {
	struct siw_read_req req;
	bool atomic;	     /* answer with an Atomic Response: */
	uint32_t req_id;
	uint64_t orig;	     /* the value before the operation (executed on arrival) */
};

/* What the send side is transmitting now. */
enum eng_tx_kind {
	TXK_NONE,
	TXK_SQ,
	TXK_IRQ,
	TXK_TERM,
	TXK_RTR,
	TXK_RD_PART,	     /* a READ REQUEST of a multi-SGE READ that is not its last */
	TXK_SQ_PART,	     /* RFC 7306: the first of the two messages of a WR with immediate */
};

struct eng_txc {
	size_t end;	     /* batch byte offset after which the message is in TCP */
	enum eng_tx_kind kind;
	uint32_t sq_idx;
};

struct eng_qp {
	struct eng_ctx *ctx;
	struct eng_pd *pd;
	struct eng_cq *scq, *rcq;
	struct eng_srq *srq;
	uint32_t qpn;
	void *user;
	bool sq_sig_all;
	struct eng_qp_cap cap;
	int access;
	struct eng_link link;	 /* ctx->qps */

	pthread_mutex_t rx_lock;
	pthread_mutex_t lock;

	/* state (under lock; read racily by diagnostics) */
	enum siw_qp_state state;
	enum eng_qp_state user_state; /* what verbs last set while not connected */
	bool connected;		 /* a socket was handed over */
	bool in_epoll;
	atomic_bool live;	 /* eng_qp_start is done: busy pollers may work the QP */
	bool epollout;		 /* the send side waits for the socket to take more */
	uint32_t ep_events;	 /* what epoll watches now (under lock) */
	bool parked;		 /* a busy poller does the socket work: epoll watches nothing */
	struct eng_link park_link; /* ctx->parked (progress thread) */
	bool fail_posted;
	bool destroying;
	int fd;
	bool initiator;
	struct siw_mpa_result mpa;
	const struct eng_cm_ops *cm_ops;
	void *cm_user;
	bool cm_closed_sent;
	struct sockaddr_storage local, peer;

	/* send queue (under lock) */
	uint8_t *sq_mem;
	uint32_t sq_size, sq_slot;
	uint32_t sq_head;	 /* next WQE to start */
	uint32_t sq_tail;	 /* next free slot */
	uint32_t sq_done;	 /* oldest slot not yet reusable */

	/* outbound READs (producer: tx under lock; consumer: rx under rx_lock) */
	struct eng_orq orq[ENG_MAX_ORD];
	atomic_uint orq_head, orq_tail;
	uint16_t ord, ird;

	/* inbound READs (producer: rx; consumer: tx under lock) */
	struct eng_irq irq[ENG_MAX_ORD];
	atomic_uint irq_head, irq_tail;
	unsigned irq_burst;	 /* READ RESPONSEs sent in a row while the SQ waits */

	/* send side */
	struct siw_tx tx;
	struct siw_tx_batch *batch;
	struct siw_iov *out;	 /* unsent part of batch->iov */
	unsigned out_cnt;
	size_t batch_sent;
	struct eng_txc txc[SIW_TX_BATCH_FPDUS + 1];
	unsigned ntxc, txc_done;
	enum eng_tx_kind tx_kind;
	uint32_t tx_sq_idx;
	struct siw_iov tx_iov[ENG_MAX_SGE];
	uint8_t term_body[SIW_MAX_HDR_LEN];
	uint32_t term_ctrl;
	unsigned term_len;
	struct siw_iov term_iov;
	bool term_pending;	 /* a TERMINATE is to be sent first */
	bool term_sent;
	bool rtr_tx_pending;	 /* initiator: the RTR is to be sent first */
	bool tx_hold;		 /* nothing but TERMINATE may be sent (error / closing) */

	/* receive side (under rx_lock) */
	struct siw_rx rx;
	struct eng_rq rq;
	struct eng_reader *rd;	 /* whose buffers the current read uses (set under rx_lock) */
	struct eng_rq *rq_active; /* the RQ (own or SRQ's) the receive in progress came from */
	uint64_t rx_wr_id;	 /* the receive in progress */
	struct siw_sge rx_sge[ENG_MAX_SGE]; /* its SGEs, copied out of the (shared) queue */
	bool tx_kick;		 /* receive made send work (READ to answer, ORQ slot freed) */
	bool rx_eof;
	int rx_lowat;		 /* SO_RCVLOWAT now (0: never set, the kernel's 1) */
	/* RFC 7306 receive side (PROTOCOL.md §6.5) */
	bool rx_imm_pending;	 /* an Immediate Data for the next SEND arrived (SEND_WITH_IMM) */
	uint32_t rx_imm;	 /* its imm_data, network order */
	uint64_t rx_write_msg;	 /* rx.stats.messages after the last RDMA WRITE message */
	uint32_t rx_write_len;	 /* its length (byte_len of RECV_RDMA_WITH_IMM) */
	uint64_t atomic_res[ENG_MAX_ORD]; /* Atomic Response values on their way into place */
	/* RFC 7306 send side */
	bool rfc7306;		 /* negotiated: immediate data and atomics may be sent */
	uint8_t tx_part;	 /* the SQ head's first message (of two) is in the builder */
	uint32_t atomic_req_id;	 /* next Request Identifier */

	struct eng_qp_stats stats;
	struct eng_obs_qp obs;	 /* observability hook: siw-stat, capture (obs.h) */
	int err;		 /* why the QP failed */
};

static inline struct eng_wqe *sq_entry(struct eng_qp *qp, uint32_t i)
{
	return (struct eng_wqe *)(qp->sq_mem + (size_t)(i & (qp->sq_size - 1)) * qp->sq_slot);
}

/* qp_tx.c: runs the send side (qp->lock held). Returns 0 or a fatal error. */
int eng_qp_tx_run(struct eng_qp *qp, unsigned budget);
/* qp_rx.c: the socket is readable (progress thread). */
void eng_qp_rx_ready(struct eng_qp *qp);
/* qp_rx.c: busy-poll progress from an application thread polling an empty CQ. */
void eng_qp_poll_progress(struct eng_qp *qp, struct eng_reader *rd);
extern const struct siw_rx_ops eng_rx_ops;
/* qp.c */
void eng_qp_fail(struct eng_qp *qp, int err); /* progress thread */
/*
 * A registered buffer the application unmapped while in use (a bug: user memory is not pinned)
 * met by "placing into", "sending from"...: logged; returns the local catastrophic error.
 */
int eng_qp_unmapped(const struct eng_qp *qp, const char *what);
void eng_qp_request_fail(struct eng_qp *qp, int err); /* any thread */
void eng_qp_start(struct eng_qp *qp);		/* progress thread, ENG_CMD_QP_START */
void eng_qp_want_write(struct eng_qp *qp, bool on); /* qp->lock held */
/* Busy polling hand-off (qp.c): is an application thread polling a CQ of this QP right now? */
bool eng_qp_polled(const struct eng_qp *qp, long long now_ns);
void eng_qp_park(struct eng_qp *qp);		/* progress thread */
void eng_qp_unpark_idle(struct eng_ctx *ctx);	/* progress thread */
long long eng_now_ns(void);
void eng_qp_kick_tx(struct eng_qp *qp);		/* progress thread: run tx now */

#endif
