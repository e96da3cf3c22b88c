/* SPDX-License-Identifier: MIT */
/*
 * softiwarp's connection manager: a user-space replacement for rdma-core's librdmacm that runs
 * the iWARP connection setup (TCP + MPA, RFC 5044 / RFC 6581) itself instead of asking the
 * kernel's rdma_cm, and hands each negotiated socket to the engine (eng_qp_connect).
 *
 * Objects:
 *	struct cm_channel	an rdma_event_channel: an eventfd that is readable while events are
 *				queued, plus the queue.
 *	struct cm_id		an rdma_cm_id plus everything the CM knows about it: state, socket,
 *				MPA reader/writer, deadline, configuration snapshot.
 *	struct cm_dev		one software iWARP device as librdmacm sees it: the shared
 *				ibv_context every id on that device gets as id->verbs.
 *
 * Threads: application threads call the rdma_* API; one CM thread per process (started on
 * first need) owns epoll over listening sockets and connections still in MPA negotiation, and
 * the MPA timers. The engine reports established/closed from its progress thread; those
 * callbacks only append to a small notification queue and wake the CM thread (cm_notify_*),
 * so the engine never waits for a CM lock.
 *
 * Locks, in this order:
 *	cm.lock		all ids, their state and sockets, the device table, epoll registrations.
 *			May be held while calling into verbs/the engine (their callbacks never
 *			take it).
 *	ch->lock	one channel's event queue. Taken alone by rdma_get_cm_event.
 *	cm.nq_lock	the engine notification queue; a leaf, held for a few instructions.
 */
#ifndef SIW_CM_H
#define SIW_CM_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* The public API gets default visibility; everything else in the library stays hidden. */
#pragma GCC visibility push(default)
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>
#include <rdma/rsocket.h>
#pragma GCC visibility pop

/* Marks the definitions of the exported API (the version script lists the same names). */
#define CM_API __attribute__((visibility("default")))

#include "engine.h"
#include "error.h"
#include "mpa.h"

#ifdef SIW_HAVE_VERBS_H
#include "siw_verbs.h"
#else
/* Mapping functions of our libibverbs (src/verbs/siw_verbs.h, SOFTIWARP_PRIVATE_1). */
struct eng_ctx *siw_verbs_ctx(struct ibv_context *ctx);
struct eng_qp *siw_verbs_qp(struct ibv_qp *qp);
struct ibv_qp *siw_verbs_qp_from_eng(struct eng_qp *qp);
const struct eng_device *siw_verbs_device(struct ibv_device *dev);
#endif

/* ---- configuration (cm_config.c) ----------------------------------------------------------- */

struct cm_cfg {
	struct siw_mpa_cfg mpa;
	int req_timeout_ms; /* responder: TCP accept -> MPA request */
	int rep_timeout_ms; /* initiator: TCP connect + MPA request -> MPA reply */
	bool rfc7306_force; /* SIW_RFC7306=on: use RFC 7306 whatever the handshake said */
};

/* Fills cfg from the environment (SIW_MPA_*); bad values are logged and replaced by defaults. */
void cm_config_load(struct cm_cfg *cfg);

enum { CM_LOG_NONE, CM_LOG_ERR, CM_LOG_WARN, CM_LOG_INFO, CM_LOG_DBG };
extern int cm_log_level;
void cm_log_init(void);
void cm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define cm_err(...)  cm_log(CM_LOG_ERR, __VA_ARGS__)
#define cm_warn(...) cm_log(CM_LOG_WARN, __VA_ARGS__)
#define cm_info(...) cm_log(CM_LOG_INFO, __VA_ARGS__)
#define cm_dbg(...)                                                                                \
	do {                                                                                       \
		if (cm_log_level >= CM_LOG_DBG)                                                    \
			cm_log(CM_LOG_DBG, __VA_ARGS__);                                           \
	} while (0)

/* "127.0.0.1:7174" or "[::1]:7174" into buf (at least CM_ADDRSTRLEN bytes); returns buf. */
#define CM_ADDRSTRLEN (INET6_ADDRSTRLEN + 10)
const char *cm_addr_str(const struct sockaddr *sa, char *buf);

/* ---- devices (cm_dev.c) ------------------------------------------------------------------- */

struct cm_dev {
	char name[ENG_DEV_NAME_MAX];
	struct ibv_device *ibdev;
	struct ibv_context *verbs; /* opened on first use, shared by all ids of the process */
	struct ibv_pd *pd;         /* default PD of ids on this device (rdma_create_ep etc.) */
	int refcnt;                /* ids bound to it + outstanding rdma_get_devices() lists */
	uint8_t max_ird;           /* max_qp_rd_atom: inbound READs a QP may accept */
	uint8_t max_ord;           /* max_qp_init_rd_atom: outbound READs a QP may issue */
};

/*
 * The device owning a local address, opened, with a reference taken; NULL + errno (ENODEV
 * when no device owns the address). Must hold cm.lock.
 */
struct cm_dev *cm_dev_get_by_addr(const struct sockaddr *sa);
void cm_dev_put(struct cm_dev *dev);

/* ---- event channels and events (cm_event.c) ----------------------------------------------- */

struct cm_id;

struct cm_event {
	struct rdma_cm_event ev; /* first: what the application gets */
	struct cm_event *next;
	struct cm_id *owner; /* id whose ack count this event holds (listen id for requests) */
	struct cm_id *child; /* CONNECT_REQUEST: the new id, dropped with the event if unseen */
	uint8_t pd[MPA_MAX_PRIVDATA];
};

struct cm_channel {
	struct rdma_event_channel ch; /* first: ch.fd is an eventfd, readable while queued > 0 */
	pthread_mutex_t lock;
	struct cm_event *head, *tail;
	/*
	 * Threads inside rdma_get_cm_event. A program may destroy the channel while its CM thread
	 * still waits on it (rping does, at exit): the last waiter then frees it.
	 */
	int waiters;
	bool dead;
};

static inline struct cm_channel *cm_channel(struct rdma_event_channel *ch)
{
	return (struct cm_channel *)ch;
}

struct cm_channel *cm_channel_new(void);
void cm_channel_free(struct cm_channel *ch);

/*
 * An event about id for owner's channel (owner == id except for CONNECT_REQUEST, whose owner
 * is the listener); owner gets the ack count; pd/pd_len is copied. cm_event_new only builds
 * it (the caller fills in more), cm_event_post publishes it: once posted, the application may
 * already be reading it. Returns NULL if out of memory. Must hold cm.lock.
 */
struct cm_event *cm_event_new(struct cm_id *id, struct cm_id *owner, enum rdma_cm_event_type type,
			      int status, const void *pd, size_t pd_len);
void cm_event_post(struct cm_event *e);
/* Both at once, for events without further fields; the result must not be written to. */
struct cm_event *cm_event_queue(struct cm_id *id, struct cm_id *owner, enum rdma_cm_event_type type,
				int status, const void *pd, size_t pd_len);
/* Removes the still queued events owned by id from its channel (destroy). Must hold cm.lock. */
void cm_events_drop(struct cm_id *id);
/* Moves id's queued events to another channel (rdma_migrate_id). Must hold cm.lock. */
void cm_events_move(struct cm_id *id, struct cm_channel *from, struct cm_channel *to);

/* ---- ids (cm_id.c) ------------------------------------------------------------------------- */

enum cm_state {
	CM_IDLE,       /* created */
	CM_BOUND,      /* rdma_bind_addr (or implicitly by resolve_addr): socket bound */
	CM_ADDR_QUERY, /* resolving (transient, inside rdma_resolve_addr) */
	CM_ADDR_RESOLVED,
	CM_ROUTE_RESOLVED,
	CM_LISTEN,
	CM_CONNECTING,    /* initiator: TCP connect in progress */
	CM_MPA_REQ_SENT,  /* initiator: request (being) sent, waiting for the reply */
	CM_MPA_AWAIT_REQ, /* responder: TCP accepted, waiting for the request (app sees nothing) */
	CM_REQ_RCVD,      /* responder: CONNECT_REQUEST delivered, waiting for accept/reject */
	CM_ACCEPTING,     /* responder: reply being written */
	CM_CONNECTED,     /* handed to the engine, waiting for established() */
	CM_ESTABLISHED,
	CM_DISCONNECTING, /* rdma_disconnect called, closed() not seen yet */
	CM_DISCONNECTED,
	CM_FAILED, /* attempt over: rejected, unreachable, error */
	CM_NUM_STATES,
};

extern const char *const cm_state_name[CM_NUM_STATES];

struct cm_id;
/* The QP the connection runs on: id->qp, or the one the application named by number. */
#define cm_qp(cid) ((cid)->id.qp ? (cid)->id.qp : (cid)->user_qp)

struct cm_id {
	struct rdma_cm_id id; /* first: what the application gets */
	uint64_t handle;      /* never reused; epoll data and engine cm_user */
	struct cm_id *hnext;  /* handle hash chain */
	enum cm_state state;
	struct cm_cfg cfg;
	bool sync; /* rdma_create_id(NULL, ...): private channel, blocking calls */
	bool destroying;
	pthread_cond_t cond; /* signalled when events drops */
	int events;          /* queued + delivered-but-unacked events owned by this id */
	struct cm_dev *dev;
	struct ibv_qp *user_qp; /* a QP the application made itself, named by conn_param.qp_num */

	/* socket */
	int fd;             /* -1 when none (or after the hand-over to the engine) */
	uint32_t ep_events; /* what is registered in epoll, 0 = not registered */
	bool peer_gone;     /* responder: peer hung up before accept */

	/* options */
	bool tos_set;
	uint8_t tos;
	int afonly; /* -1 = not set */
	int reuseaddr;

	/* MPA */
	uint64_t deadline_ms;        /* 0 = no timer */
	struct cm_id *tnext, *tprev; /* timer list */
	struct siw_mpa_reader rd;
	struct siw_mpa_frame frame; /* the parsed request (responder) / reply (initiator) */
	struct siw_mpa_result res;  /* what was negotiated (pre-checked for a request) */
	uint8_t out[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	size_t out_len, out_off;
	uint16_t ird, ord;                /* initiator: what we asked for */
	uint16_t peer_ird, peer_ord;      /* responder: what the request offered (0x3FFF = none) */
	uint8_t est_pd[MPA_MAX_PRIVDATA]; /* initiator: reply's private data for ESTABLISHED */
	uint16_t est_pd_len;

	/* listener relations */
	struct cm_id *listen;  /* responder child: its listener (until exposed) */
	struct cm_id *pnext;   /* listener's list of unexposed children */
	struct cm_id *pending; /* listener: children still negotiating (not exposed) */

	/* rdma_create_ep passive side */
	struct ibv_qp_init_attr *qp_init_attr;
};

static inline struct cm_id *cm_id(struct rdma_cm_id *id)
{
	return (struct cm_id *)id;
}

struct cm_global {
	pthread_mutex_t lock;
	pthread_once_t once;
	int epfd;
	int wake_fd;
	pthread_t thread;
	bool thread_started;
	bool stopping;
	uint64_t next_handle;
	struct cm_id *table[1024];
	struct cm_id *timers; /* ids with a deadline */

	pthread_mutex_t nq_lock;
	struct cm_notify *nq_head, *nq_tail;
};

extern struct cm_global cm;

/* First-use setup (log level); every API entry that may log calls it. */
void cm_init(void);

#define CM_WAKE_KEY UINT64_MAX

/* Creates an id (not yet visible through a table lookup until cm_id_insert). Must hold lock. */
struct cm_id *cm_id_alloc(struct cm_channel *ch, void *context, enum rdma_port_space ps);
void cm_id_insert(struct cm_id *id);
/* Frees an id that the application never saw or has destroyed. Must hold cm.lock. */
void cm_id_free(struct cm_id *id);
struct cm_id *cm_id_lookup(uint64_t handle);

void cm_set_state(struct cm_id *id, enum cm_state s);
void cm_timer_set(struct cm_id *id, int ms);
void cm_timer_clear(struct cm_id *id);
int cm_epoll_set(struct cm_id *id, uint32_t events); /* 0 = remove */
void cm_close_fd(struct cm_id *id);
/* A responder child leaves its listener's list of unexposed connections. */
void cm_pending_unlink(struct cm_id *child);

/* Sync mode: waits for the next event on the id's private channel (ucma_complete). */
int cm_sync_wait(struct cm_id *id);

/* ---- the CM thread and MPA (cm_conn.c) ------------------------------------------------------ */

int cm_thread_ensure(void); /* must hold cm.lock */
void cm_wake(void);
uint64_t cm_now_ms(void);

/* Socket / timer events for an id, on the CM thread. Must hold cm.lock. */
void cm_conn_io(struct cm_id *id, uint32_t events);
void cm_conn_reserve_fd(void); /* a listener exists: keep a descriptor for refusals */
void cm_conn_timeout(struct cm_id *id);
/* Process the engine's notifications. Must hold cm.lock. */
void cm_notify_run(void);

/* Initiator: starts TCP connect + MPA request (rdma_connect). Must hold cm.lock. */
int cm_conn_start(struct cm_id *id);
/* Responder: tries to write the reply and hands the socket over (rdma_accept). */
int cm_conn_accept_send(struct cm_id *id);
/* Sends a reject reply with private data and closes (rdma_reject, refused requests). */
void cm_conn_reject(struct cm_id *id, const void *pd, size_t pd_len);
/* Hands a connected, negotiated socket to the engine. Must hold cm.lock. */
int cm_conn_handoff(struct cm_id *id, bool initiator);

extern const struct eng_cm_ops cm_eng_ops;

/* ---- misc ---------------------------------------------------------------------------------- */

/* Private data rdma_connect/accept/reject may carry: MPA's 512 minus what the CM adds, and
 * never more than kernel siw accepts (256 incl. the 4-byte IRD/ORD block), so that a
 * connection that works with softiwarp also works with kernel siw. */
#define CM_MAX_PD_V2 (256 - MPA_V2_IRD_ORD_LEN)
#define CM_MAX_PD_V1 255
static inline size_t cm_max_pd(const struct cm_id *id)
{
	return id->cfg.mpa.rev == MPA_REV_2 ? CM_MAX_PD_V2 : CM_MAX_PD_V1;
}

/* errno = e, return -1 (librdmacm's convention). */
static inline int cm_seterr(int e)
{
	errno = e;
	return -1;
}

socklen_t cm_addr_len(const struct sockaddr *sa);
/* An IPv4-mapped IPv6 address becomes the IPv4 address (in place). */
void cm_addr_unmap(struct sockaddr_storage *ss);

#endif
