/* SPDX-License-Identifier: MIT */
/*
 * Internals of the verbs ABI layer (our libibverbs.so.1). Every object embeds the rdma-core
 * struct the application holds as its first member, so a pointer from the application turns
 * back into ours with vrb_container_of(); the rest is the engine handle plus the counters
 * rdma-core keeps next to the public struct (events delivered, for destroy to wait on).
 *
 * Naming: exported functions carry rdma-core's names; everything else is vrb_* and hidden
 * (the library is built with -fvisibility=hidden; VRB_EXPORT marks the ABI, and
 * libibverbs.map puts each exported name into its version node).
 */
#ifndef SIW_VRB_H
#define SIW_VRB_H

#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define VRB_EXPORT __attribute__((visibility("default")))

#define vrb_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Bytes of the pre-port_cap_flags2 struct ibv_port_attr that ibv_query_port@IBVERBS_1.1 fills. */
#define VRB_COMPAT_PORT_ATTR_LEN offsetof(struct ibv_port_attr, port_cap_flags2)

/* ---- logging (VERBS_LOG_LEVEL / VERBS_LOG_FILE, levels as rdma-core's VERBS_LOG_*) ------- */

enum vrb_log_level {
	VRB_LOG_NONE = 0,
	VRB_LOG_ERR = 1,
	VRB_LOG_WARN = 2,
	VRB_LOG_INFO = 3,
	VRB_LOG_DEBUG = 4,
};

void vrb_log(unsigned int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vrb_err(...)   vrb_log(VRB_LOG_ERR, __VA_ARGS__)
#define vrb_warn(...)  vrb_log(VRB_LOG_WARN, __VA_ARGS__)
#define vrb_info(...)  vrb_log(VRB_LOG_INFO, __VA_ARGS__)
#define vrb_debug(...) vrb_log(VRB_LOG_DEBUG, __VA_ARGS__)

/* ---- devices and contexts ---------------------------------------------------------------- */

struct vrb_device {
	struct ibv_device ibdev; /* what applications hold */
	struct eng_device edev;  /* our copy: eng_ctx_open() gets a pointer to it */
	unsigned int lists;      /* device lists (ibv_get_device_list) holding it */
	unsigned int contexts;   /* open contexts */
	bool present;            /* the last scan of the engine's devices saw it */
	struct vrb_device *next; /* registry (device.c) */
};

struct vrb_context {
	struct verbs_context vctx; /* rdma-core 44 layout: ends with the ibv_context apps hold */
	struct eng_ctx *ectx;
	struct vrb_device *dev;
	struct eng_device_attr attr; /* the device's limits, read once at open */
};

static inline struct vrb_device *vrb_dev(struct ibv_device *d)
{
	return vrb_container_of(d, struct vrb_device, ibdev);
}

static inline struct vrb_context *vrb_ctx(struct ibv_context *c)
{
	return vrb_container_of(c, struct vrb_context, vctx.context);
}

/* ---- objects ----------------------------------------------------------------------------- */

/*
 * Engine objects that raise events (CQ, SRQ, QP) are registered by both their engine handle
 * and the user pointer we gave the engine, so the object an engine event names is found
 * either way: engine.h has no accessor from one to the other, and its async events carry
 * either (CQ_ERR the eng_cq, QP_FATAL and SRQ_LIMIT_REACHED the user pointer). The user
 * pointer is a never-reused id, not our address: events queued before a destroy outlive the
 * object (the engine does not take them back), and must then find nothing, not a new object
 * that got the same memory.
 */
enum vrb_obj_type {
	VRB_OBJ_CQ,
	VRB_OBJ_SRQ,
	VRB_OBJ_QP,
};

struct vrb_obj {
	const void *eng;
	const void *user;
	enum vrb_obj_type type;
	struct vrb_obj *next_eng, *next_user; /* hash chains (async.c) */
};

struct vrb_pd {
	struct ibv_pd ibpd;
	struct eng_pd *epd;
};

struct vrb_mr {
	struct ibv_mr ibmr;
	struct eng_mr *emr;
	uint64_t iova; /* as registered, for ibv_rereg_mr without CHANGE_TRANSLATION */
	int access;    /* as registered (ENG_ACCESS_*), for ibv_rereg_mr without CHANGE_ACCESS */
};

struct vrb_channel {
	struct ibv_comp_channel ch;
	struct eng_channel *ech;
};

/* The ibv_*_poll / ibv_wc_read_* state of a CQ made by ibv_create_cq_ex (ex.c). */
struct vrb_cq_poll {
	pthread_mutex_t lock; /* start_poll .. end_poll, unless single-threaded */
	bool single_threaded;
	struct eng_cqe cur; /* the completion the read_* accessors report */
};

struct vrb_cq {
	union {
		struct ibv_cq ibcq;   /* what applications hold (a prefix of ibv_cq_ex) */
		struct ibv_cq_ex cqx; /* ibv_create_cq_ex: the extended poll API */
	};
	struct eng_cq *ecq;
	struct vrb_cq_poll *ex; /* ibv_create_cq_ex only */
	struct vrb_obj obj;
	uint32_t comp_events_reported;  /* handed out by ibv_get_cq_event (ibcq.mutex) */
	uint32_t async_events_reported; /* handed out by ibv_get_async_event (ibcq.mutex) */
};

struct vrb_srq {
	struct ibv_srq ibsrq;
	struct eng_srq *esrq;
	struct vrb_obj obj;
	uint32_t events_reported; /* ibsrq.mutex */
};

struct vrb_qp {
	struct ibv_qp_ex qpx; /* qpx.qp_base is the ibv_qp apps hold; room for the ibv_wr_* API */
	struct eng_qp *eqp;
	struct vrb_obj obj;
	uint32_t events_reported; /* qpx.qp_base.mutex */
	bool sq_sig_all;
	struct vrb_wr_batch *wrb; /* ibv_create_qp_ex with SEND_OPS_FLAGS: the ibv_wr_* API */
};

struct vrb_mw {
	struct ibv_mw ibmw;
	struct eng_mw *emw;
};

#define vrb_pd(p)      vrb_container_of(p, struct vrb_pd, ibpd)
#define vrb_mr(m)      vrb_container_of(m, struct vrb_mr, ibmr)
#define vrb_cq(c)      vrb_container_of(c, struct vrb_cq, ibcq)
#define vrb_srq(s)     vrb_container_of(s, struct vrb_srq, ibsrq)
#define vrb_qp(q)      vrb_container_of(q, struct vrb_qp, qpx.qp_base)
#define vrb_channel(c) vrb_container_of(c, struct vrb_channel, ch)
#define vrb_mw(m)      vrb_container_of(m, struct vrb_mw, ibmw)
#define vrb_cqx(c)     vrb_container_of(c, struct vrb_cq, cqx)
#define vrb_qpx(q)     vrb_container_of(q, struct vrb_qp, qpx)

/* Registry of event-raising objects (async.c). */
void *vrb_obj_new_id(void); /* the user pointer for the next eng_*_create */
void vrb_obj_add(struct vrb_obj *o, const void *eng, const void *user, enum vrb_obj_type type);
void vrb_obj_del(struct vrb_obj *o);
/* The CQ a completion-channel event names, its event counted; NULL if destroyed since. */
struct vrb_cq *vrb_cq_claim_event(const void *user);

/* Waits until the application acknowledged every event it was handed for the object. */
void vrb_wait_events(pthread_mutex_t *mutex, pthread_cond_t *cond, const uint32_t *completed,
		     const uint32_t *reported);

/* ---- the ibv_context_ops and verbs_context ops (slots the header inlines jump through) ---- */

int vrb_poll_cq(struct ibv_cq *cq, int num_entries, struct ibv_wc *wc);
int vrb_req_notify_cq(struct ibv_cq *cq, int solicited_only);
int vrb_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr);
int vrb_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
int vrb_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
struct ibv_mw *vrb_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type);
int vrb_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind);
int vrb_dealloc_mw(struct ibv_mw *mw);
int vrb_query_port_op(struct ibv_context *context, uint8_t port_num,
		      struct ibv_port_attr *port_attr, size_t port_attr_len);
int vrb_query_device_ex_op(struct ibv_context *context,
			   const struct ibv_query_device_ex_input *input,
			   struct ibv_device_attr_ex *attr, size_t attr_size);
/* The extended API (ex.c): verbs_context's create_cq_ex and create_qp_ex. */
struct ibv_cq_ex *vrb_create_cq_ex_op(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr);
struct ibv_qp *vrb_create_qp_ex_op(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr);
/* Frees what ex.c attached to a CQ / QP (on destroy). */
void vrb_cq_ex_free(struct vrb_cq *cq);
void vrb_qp_ex_free(struct vrb_qp *qp);
/*
 * Translates an IBV_WR_BIND_MW work request for the engine (pd_mr.c): e gets the opcode's
 * fields (see engine.h), sge the range. Returns 0 or an errno.
 */
int vrb_bind_wr(struct ibv_qp *qp, struct ibv_mw *mw, uint32_t rkey,
		const struct ibv_mw_bind_info *bi, struct eng_send_wr *e, struct eng_sge *sge);

/* ---- helpers shared between files -------------------------------------------------------- */

/*
 * Posts a receive list to a QP's receive queue (qp) or to an SRQ (srq), translating it in
 * bounded batches; on failure *bad_wr is the first WR not posted (qp.c).
 */
int vrb_post_recv_list(struct eng_qp *qp, struct eng_srq *srq, struct ibv_recv_wr *wr,
		       struct ibv_recv_wr **bad_wr);

/* Async-fd wrapper (async.c): an epoll fd over the engine's async fd, see there why. */
int vrb_async_fd_open(int eng_fd);

/* Whether dir is (under) the dev_path or ibdev_path of one of our devices (device.c). */
bool vrb_dev_owns_path(const char *dir);

/* Port 1's current MTU as an IB enum, for ibv_query_qp's path_mtu (device.c). */
enum ibv_mtu vrb_port_mtu(struct vrb_context *c);

/* ---- rdma-core private ABI (IBVERBS_PRIVATE_34) with real behaviour ---------------------- */

/* rdma-core declares these in infiniband/driver.h, which Debian does not install. */
int ibv_query_gid_type(struct ibv_context *context, uint8_t port_num, unsigned int index,
		       int *type);
void __verbs_log(struct verbs_context *ctx, uint32_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- public calls rdma-core declares in headers Debian does not install ------------------ */

struct ib_uverbs_qp_attr;
struct ib_uverbs_ah_attr;
struct ibv_sa_path_rec;
struct ib_user_path_rec;
void ibv_copy_qp_attr_from_kern(struct ibv_qp_attr *dst, struct ib_uverbs_qp_attr *src);
void ibv_copy_ah_attr_from_kern(struct ibv_ah_attr *dst, struct ib_uverbs_ah_attr *src);
void ibv_copy_path_rec_from_kern(struct ibv_sa_path_rec *dst, struct ib_user_path_rec *src);
void ibv_copy_path_rec_to_kern(struct ib_user_path_rec *dst, struct ibv_sa_path_rec *src);
int ibv_read_sysfs_file(const char *dir, const char *file, char *buf, size_t size);
int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);
const char *ibv_get_sysfs_path(void);

#endif
