/* SPDX-License-Identifier: MIT */
/*
 * The RDMA engine: software iWARP devices, protection domains, memory regions, completion
 * queues, shared receive queues and queue pairs, driven over non-blocking TCP sockets by one
 * progress thread per device context. It feeds the sans-I/O protocol core (src/core) and
 * executes what the core decides: placement, transmission, completions, TERMINATE, flush.
 *
 * The verbs layer (src/verbs) and the connection manager (src/cm) are its only callers; both
 * translate rdma-core's structs to these. Numeric codes (work request opcodes, completion
 * opcodes and statuses, access flags, QP states) deliberately equal rdma-core's IBV_* values so
 * the translation is a field copy; src/verbs checks that with static asserts.
 *
 * Return conventions (as rdma-core's verbs): constructors return the object or NULL with errno
 * set; other calls return 0 or a positive errno value.
 *
 * Threading: every call may be made from any application thread. Completions, async events and
 * CM notifications are produced by the progress thread (and by post_send when it transmits
 * directly).
 */
#ifndef SIW_ENGINE_H
#define SIW_ENGINE_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mpa.h"

/* ---- limits (what the devices report; see eng_device_attr) ------------------------------- */

#define ENG_MAX_QP	    1048576
#define ENG_MAX_QP_WR	    16384
#define ENG_MAX_CQE	    (1 << 22)
#define ENG_MAX_SGE	    32	   /* send and receive SGEs per work request */
#define ENG_MAX_SGE_RD	    32	   /* RDMA READ sink SGEs */
#define ENG_MAX_INLINE	    512	   /* bytes of inline data per send work request */
#define ENG_MAX_ORD	    128	   /* outstanding RDMA READs per QP, each direction */
#define ENG_MAX_MR_SIZE	    (1ull << 46)
#define ENG_MAX_MR	    (1 << 24) /* the STag index is 24 bits */
#define ENG_MAX_SRQ_WR	    16384
#define ENG_MAX_PD	    (1 << 20)
#define ENG_MAX_CQ	    (1 << 20)
#define ENG_MAX_PRIVDATA    (MPA_MAX_PRIVDATA - MPA_V2_IRD_ORD_LEN)

/* ---- codes equal to rdma-core's ---------------------------------------------------------- */

enum eng_wr_opcode { /* = enum ibv_wr_opcode */
	ENG_WR_RDMA_WRITE = 0,
	ENG_WR_RDMA_WRITE_WITH_IMM = 1,
	ENG_WR_SEND = 2,
	ENG_WR_SEND_WITH_IMM = 3,
	ENG_WR_RDMA_READ = 4,
	ENG_WR_ATOMIC_CMP_AND_SWP = 5,
	ENG_WR_ATOMIC_FETCH_AND_ADD = 6,
	ENG_WR_LOCAL_INV = 7,
	ENG_WR_BIND_MW = 8,
	ENG_WR_SEND_WITH_INV = 9,
};

enum eng_send_flags { /* = enum ibv_send_flags */
	ENG_SEND_FENCE = 1 << 0,
	ENG_SEND_SIGNALED = 1 << 1,
	ENG_SEND_SOLICITED = 1 << 2,
	ENG_SEND_INLINE = 1 << 3,
};

enum eng_wc_opcode { /* = enum ibv_wc_opcode */
	ENG_WC_SEND = 0,
	ENG_WC_RDMA_WRITE = 1,
	ENG_WC_RDMA_READ = 2,
	ENG_WC_COMP_SWAP = 3,
	ENG_WC_FETCH_ADD = 4,
	ENG_WC_BIND_MW = 5,
	ENG_WC_LOCAL_INV = 6,
	ENG_WC_RECV = 1 << 7,
	ENG_WC_RECV_RDMA_WITH_IMM = (1 << 7) + 1,
};

enum eng_wc_status { /* = enum ibv_wc_status */
	ENG_WC_SUCCESS = 0,
	ENG_WC_LOC_LEN_ERR = 1,
	ENG_WC_LOC_QP_OP_ERR = 2,
	ENG_WC_LOC_EEC_OP_ERR = 3,
	ENG_WC_LOC_PROT_ERR = 4,
	ENG_WC_WR_FLUSH_ERR = 5,
	ENG_WC_MW_BIND_ERR = 6,
	ENG_WC_BAD_RESP_ERR = 7,
	ENG_WC_LOC_ACCESS_ERR = 8,
	ENG_WC_REM_INV_REQ_ERR = 9,
	ENG_WC_REM_ACCESS_ERR = 10,
	ENG_WC_REM_OP_ERR = 11,
	ENG_WC_RETRY_EXC_ERR = 12,
	ENG_WC_RNR_RETRY_EXC_ERR = 13,
	ENG_WC_LOC_RDD_VIOL_ERR = 14,
	ENG_WC_REM_INV_RD_REQ_ERR = 15,
	ENG_WC_REM_ABORT_ERR = 16,
	ENG_WC_INV_EECN_ERR = 17,
	ENG_WC_INV_EEC_STATE_ERR = 18,
	ENG_WC_FATAL_ERR = 19,
	ENG_WC_RESP_TIMEOUT_ERR = 20,
	ENG_WC_GENERAL_ERR = 21,
};

enum eng_wc_flags { /* = enum ibv_wc_flags */
	ENG_WC_WITH_IMM = 1 << 1,
	ENG_WC_WITH_INV = 1 << 3,
};

enum eng_qp_state { /* = enum ibv_qp_state */
	ENG_QPS_RESET = 0,
	ENG_QPS_INIT = 1,
	ENG_QPS_RTR = 2,
	ENG_QPS_RTS = 3,
	ENG_QPS_SQD = 4,
	ENG_QPS_SQE = 5,
	ENG_QPS_ERR = 6,
};

enum eng_event_type { /* = enum ibv_event_type (the ones an iWARP device raises) */
	ENG_EVENT_CQ_ERR = 0,
	ENG_EVENT_QP_FATAL = 1,
	ENG_EVENT_QP_REQ_ERR = 2,
	ENG_EVENT_QP_ACCESS_ERR = 3,
	ENG_EVENT_COMM_EST = 4,
	ENG_EVENT_SQ_DRAINED = 5,
	ENG_EVENT_SRQ_LIMIT_REACHED = 15,
	ENG_EVENT_QP_LAST_WQE_REACHED = 16,
	ENG_EVENT_DEVICE_FATAL = 8,
};

/* Access flags: = IBV_ACCESS_* (and = SIW_MEM_* of the core). */
#define ENG_ACCESS_LOCAL_WRITE	 0x1
#define ENG_ACCESS_REMOTE_WRITE	 0x2
#define ENG_ACCESS_REMOTE_READ	 0x4
#define ENG_ACCESS_REMOTE_ATOMIC 0x8
#define ENG_ACCESS_MW_BIND	 0x10
#define ENG_ACCESS_ALL		 0x1F

/* ---- devices ----------------------------------------------------------------------------- */

#define ENG_DEV_NAME_MAX 64
#define ENG_DEV_MAX_ADDRS 16

/* A software iWARP device: one per usable network interface (loopback included). */
struct eng_device {
	char name[ENG_DEV_NAME_MAX]; /* "siw_<ifname>" */
	char ifname[IF_NAMESIZE];
	unsigned ifindex;
	uint8_t mac[6];
	uint64_t node_guid;	     /* network byte order, from the MAC (or the name for lo) */
	unsigned mtu;		     /* interface MTU */
	bool running;		     /* interface up and running */
	unsigned naddrs;
	struct sockaddr_storage addrs[ENG_DEV_MAX_ADDRS]; /* IPv4 and IPv6 addresses */
	uint32_t vendor_part_id;     /* 1, 2, ... (never in perftest's table of known devices) */
};

/*
 * The devices of this host, (re)read from the interfaces on each call. Returns the count (>= 0)
 * and an array that stays valid until the next call; or -errno.
 */
int eng_devices(const struct eng_device **list);

/* The device owning a local address (port ignored); NULL if none. */
const struct eng_device *eng_device_by_addr(const struct sockaddr *sa);

struct eng_device_attr {
	uint64_t node_guid;
	uint64_t sys_image_guid;
	uint64_t max_mr_size;
	uint64_t page_size_cap;
	uint32_t vendor_id;
	uint32_t vendor_part_id;
	uint32_t hw_ver;
	int max_qp, max_qp_wr, max_sge, max_sge_rd, max_cq, max_cqe, max_mr, max_pd;
	int max_qp_rd_atom, max_qp_init_rd_atom, max_res_rd_atom;
	int max_srq, max_srq_wr, max_srq_sge, max_mw;
	int max_inline_data;
	int atomic_cap; /* 0 = none, 1 = this HCA only (IBV_ATOMIC_HCA); see eng_rfc7306_env */
	int num_comp_vectors;
	char fw_ver[64];
};

void eng_device_query(const struct eng_device *dev, struct eng_device_attr *attr);

/*
 * SIW_RFC7306=auto|on|off (default auto): whether RFC 7306 immediate data and atomics are
 * offered in connection setup (auto, on), used without the peer's confirmation (on), or never
 * (off). Read from the environment at each call (the CM snapshots it per rdma_cm_id); a bad
 * value is logged and taken as auto. See docs/PROTOCOL.md §6.5.
 */
enum eng_rfc7306_mode {
	ENG_RFC7306_AUTO = 0,
	ENG_RFC7306_ON = 1,
	ENG_RFC7306_OFF = 2,
};
enum eng_rfc7306_mode eng_rfc7306_env(void);

/* ---- contexts ---------------------------------------------------------------------------- */

struct eng_ctx;
struct eng_pd;
struct eng_mr;
struct eng_cq;
struct eng_srq;
struct eng_qp;
struct eng_channel;

/* Opens a context on a device: starts its progress thread. NULL + errno on failure. */
struct eng_ctx *eng_ctx_open(const struct eng_device *dev);
/* Stops the progress thread; EBUSY if objects remain. */
int eng_ctx_close(struct eng_ctx *ctx);
const struct eng_device *eng_ctx_device(const struct eng_ctx *ctx);

/*
 * Async events (ibv_get_async_event): a pollable fd, readable while events are queued. Events
 * of an object destroyed after they were queued stay queued: the consumer must recognise them
 * (verbs keeps a registry of live user pointers).
 */
struct eng_async_event {
	enum eng_event_type type;
	void *obj; /* the user pointer given when the QP / CQ / SRQ was created */
};
int eng_ctx_async_fd(const struct eng_ctx *ctx);
/* Takes the next event; blocks unless the fd was made non-blocking (then EAGAIN if none). */
int eng_ctx_get_async_event(struct eng_ctx *ctx, struct eng_async_event *ev);

/* ---- protection domains and memory ------------------------------------------------------- */

struct eng_pd *eng_pd_alloc(struct eng_ctx *ctx);
int eng_pd_free(struct eng_pd *pd); /* EBUSY while MRs/QPs/SRQs use it */
uint32_t eng_pd_id(const struct eng_pd *pd);

/*
 * Registers [addr, addr + len) for access through STags (lkey == rkey). iova is the tagged
 * offset of addr (ibv_reg_mr: iova == addr). No pinning: registration is a table insert.
 * Errors: EINVAL (bad flags: REMOTE_WRITE or REMOTE_ATOMIC without LOCAL_WRITE, len 0 with
 * addr NULL...), ENOMEM.
 */
struct eng_mr *eng_mr_reg(struct eng_pd *pd, void *addr, size_t len, uint64_t iova, int access);
int eng_mr_dereg(struct eng_mr *mr); /* EBUSY while memory windows are bound to it */
uint32_t eng_mr_key(const struct eng_mr *mr);

/*
 * Memory windows (type 1 or 2) of a PD: an STag of their own that names nothing until an
 * ENG_WR_BIND_MW work request binds it to a range of a region registered with
 * ENG_ACCESS_MW_BIND, with remote rights of its own. A type-2 window is then bound to the QP
 * that bound it (only that QP's peer may use it) until IBV_WR_LOCAL_INV or a SEND with
 * Invalidate through that QP frees it; a type-1 window is rebound or unbound (zero-length
 * bind) at any time. eng_mw_key is the window's current STag (binds change its key byte).
 */
struct eng_mw;
struct eng_mw *eng_mw_alloc(struct eng_pd *pd, int type);
int eng_mw_dealloc(struct eng_mw *mw);
uint32_t eng_mw_key(const struct eng_mw *mw);

/* ---- completion queues ------------------------------------------------------------------- */

/* A completion channel: a pollable fd that becomes readable when an armed CQ gets a CQE. */
struct eng_channel *eng_channel_create(struct eng_ctx *ctx);
int eng_channel_destroy(struct eng_channel *ch); /* EBUSY while CQs use it */
int eng_channel_fd(const struct eng_channel *ch);
/*
 * Waits (unless the fd was made non-blocking: EAGAIN) for the next event; returns the CQ's
 * user pointer given to eng_cq_create in *cq_user.
 */
int eng_channel_get_event(struct eng_channel *ch, void **cq_user);

struct eng_cqe {
	uint64_t wr_id;
	uint32_t byte_len;
	uint32_t qp_num;
	uint32_t imm_or_inv;	/* immediate data (network order) or invalidated rkey */
	uint8_t status;		/* enum eng_wc_status */
	uint8_t opcode;		/* enum eng_wc_opcode */
	uint8_t flags;		/* enum eng_wc_flags */
	uint8_t solicited;
};

/* cqe: minimum entries (rounded up). user: returned by eng_channel_get_event. */
struct eng_cq *eng_cq_create(struct eng_ctx *ctx, int cqe, struct eng_channel *ch, void *user);
int eng_cq_destroy(struct eng_cq *cq); /* EBUSY while QPs use it */
void *eng_cq_user(const struct eng_cq *cq);
int eng_cq_size(const struct eng_cq *cq);
int eng_cq_resize(struct eng_cq *cq, int cqe);
/* Takes up to n completions, oldest first. Returns the count (>= 0). */
int eng_cq_poll(struct eng_cq *cq, int n, struct eng_cqe *out);
/* Arms the CQ for one event: the next completion (or the next solicited one / error). */
int eng_cq_arm(struct eng_cq *cq, bool solicited_only);

/* ---- shared receive queues --------------------------------------------------------------- */

struct eng_srq_attr {
	uint32_t max_wr;
	uint32_t max_sge;
	uint32_t srq_limit;
};

struct eng_srq *eng_srq_create(struct eng_pd *pd, struct eng_srq_attr *attr, void *user);
int eng_srq_destroy(struct eng_srq *srq);
void *eng_srq_user(const struct eng_srq *srq);
int eng_srq_modify(struct eng_srq *srq, const struct eng_srq_attr *attr, bool set_limit,
		   bool resize);
int eng_srq_query(struct eng_srq *srq, struct eng_srq_attr *attr);

/* ---- queue pairs ------------------------------------------------------------------------- */

struct eng_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey;
};

/*
 * ENG_WR_BIND_MW: rkey is an STag of the window (eng_mw_key), imm_or_inv its STag after the
 * bind (same index, new key byte), sg_list[0] the range bound (addr, length, lkey = the
 * region's) or num_sge 0 to unbind a type-1 window, compare_add the window's
 * ENG_ACCESS_REMOTE_* rights. ENG_WR_LOCAL_INV: imm_or_inv is the STag to invalidate.
 * Both are executed by the send queue in order, locally, once the QP is connected.
 */
struct eng_send_wr {
	uint64_t wr_id;
	enum eng_wr_opcode opcode;
	unsigned flags;		/* enum eng_send_flags */
	uint32_t imm_or_inv;	/* immediate data (network order) or rkey to invalidate */
	const struct eng_sge *sg_list;
	int num_sge;
	uint64_t remote_addr;	/* RDMA / atomic */
	uint32_t rkey;
	uint64_t compare_add;	/* atomics */
	uint64_t swap;
};

struct eng_recv_wr {
	uint64_t wr_id;
	const struct eng_sge *sg_list;
	int num_sge;
};

struct eng_qp_cap {
	uint32_t max_send_wr;
	uint32_t max_recv_wr;
	uint32_t max_send_sge;
	uint32_t max_recv_sge;
	uint32_t max_inline_data;
};

struct eng_qp_init {
	struct eng_cq *send_cq;
	struct eng_cq *recv_cq;
	struct eng_srq *srq;	/* NULL: the QP has its own receive queue */
	struct eng_qp_cap cap;	/* in: requested; out: granted (eng_qp_create updates it) */
	bool sq_sig_all;
	void *user;		/* returned in async events */
};

/* RC only. Errors: EINVAL (caps over the device's limits, CQ of another context), ENOMEM. */
struct eng_qp *eng_qp_create(struct eng_pd *pd, struct eng_qp_init *init);
/* Moves the QP to ERROR (flushing, closing its connection) and frees it. */
int eng_qp_destroy(struct eng_qp *qp);
uint32_t eng_qp_num(const struct eng_qp *qp);
void *eng_qp_user(const struct eng_qp *qp);
/* The QP of this context with number qpn, or NULL (rdma_cm's conn_param.qp_num). */
struct eng_qp *eng_qp_by_num(struct eng_ctx *ctx, uint32_t qpn);

struct eng_qp_info {
	enum eng_qp_state state;
	struct eng_qp_cap cap;
	int access;		/* remote access flags allowed on this QP (modify ACCESS_FLAGS) */
	uint16_t ord, ird;	/* negotiated outbound / inbound READ depth (0 before connect) */
	bool connected;
	struct sockaddr_storage local, peer;
	struct siw_mpa_result mpa; /* negotiated MPA parameters (valid when connected) */
};
int eng_qp_query(struct eng_qp *qp, struct eng_qp_info *info);

/*
 * ibv_modify_qp's state part. iWARP QPs become RTS only through eng_qp_connect(): a user move
 * to RTS while unconnected is EINVAL (as kernel siw: without the CM's socket there is nothing
 * to send on), INIT/RTR are recorded, a move to ERR flushes, to RESET (from ERR) makes the QP
 * reusable, SQD starts a graceful close. Errors: EINVAL for a transition the state machine
 * forbids.
 */
int eng_qp_modify_state(struct eng_qp *qp, enum eng_qp_state state);
int eng_qp_set_access(struct eng_qp *qp, int access);

/*
 * Posting, as rdma-core providers do: WRs are queued in order; the first bad one stops the
 * call (*bad = its index, none after it is queued) and its errno is returned: EINVAL (bad
 * opcode or flags, too many SGEs, inline data too long, bad lkey in inline...), ENOMEM (queue
 * full). In ERROR state, WRs complete at once with WR_FLUSH_ERR.
 */
int eng_post_send(struct eng_qp *qp, const struct eng_send_wr *wr, int n, int *bad);
/* The same, but posts none of them if any would fail (ibv_wr_complete). */
int eng_post_send_all(struct eng_qp *qp, const struct eng_send_wr *wr, int n, int *bad);
int eng_post_recv(struct eng_qp *qp, const struct eng_recv_wr *wr, int n, int *bad);
int eng_post_srq_recv(struct eng_srq *srq, const struct eng_recv_wr *wr, int n, int *bad);

/* ---- connection hand-over from the connection manager ------------------------------------ */

/* What the CM learns from the engine about a connected QP (called from the progress thread). */
struct eng_cm_ops {
	/* The stream is open (responder with P2P: the RTR arrived). */
	void (*established)(void *cm_user, struct eng_qp *qp);
	/*
	 * The connection ended: err 0 = graceful close by the peer or us, else SIW_ERR_* (a
	 * received TERMINATE, a protocol error we terminated, a reset, a local fatal error).
	 */
	void (*closed)(void *cm_user, struct eng_qp *qp, int err);
};

struct eng_conn {
	int fd;				/* connected TCP socket; the engine owns it from now on */
	bool initiator;			/* we sent the MPA request */
	struct siw_mpa_result mpa;	/* negotiated (user_pd pointers are not used) */
	const struct eng_cm_ops *ops;
	void *cm_user;
	/* observability hook (SIW_CAPTURE, obs.h): the MPA frames exchanged; optional */
	const void *mpa_sent, *mpa_rcvd;
	size_t mpa_sent_len, mpa_rcvd_len;
};

/*
 * Starts RDMA mode on a QP over an MPA-negotiated socket: sets ORD/IRD, CRC, markers, the RTR
 * (the initiator sends it first, the responder waits for it), moves the QP to RTS and hands the
 * socket to the progress thread. established() follows (immediately unless an RTR is awaited);
 * closed() comes exactly once per connection, also when the QP is destroyed.
 * Errors: EINVAL (QP not in a connectable state), EBUSY (already connected), ENOMEM. On an
 * error the caller still owns the socket.
 */
int eng_qp_connect(struct eng_qp *qp, const struct eng_conn *conn);

/*
 * Graceful disconnect (rdma_disconnect): stop sending new work, close the TCP connection,
 * flush. closed() follows from the progress thread.
 */
int eng_qp_disconnect(struct eng_qp *qp);

/* ---- diagnostics ------------------------------------------------------------------------- */

struct eng_qp_stats {
	uint64_t tx_bytes, rx_bytes;	  /* stream bytes */
	uint64_t tx_msgs, rx_msgs;
	uint64_t tx_fpdus, rx_fpdus;
	uint64_t terms_sent, terms_recv;
	uint64_t errors;
};
int eng_qp_stats(struct eng_qp *qp, struct eng_qp_stats *st);

/*
 * Observability hook (SIW_CAPTURE, obs.h): writes an MPA exchange that never reached
 * eng_qp_connect (rejected, refused, timed out) on socket fd into the capture file; peer is
 * used when the socket has no peer address any more. A no-op when capture is off.
 */
void eng_capture_mpa(int fd, const struct sockaddr *peer, const void *sent, size_t sent_len,
		     const void *rcvd, size_t rcvd_len);

#endif
