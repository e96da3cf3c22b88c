/* SPDX-License-Identifier: MIT */
/*
 * The streaming receive parser: MPA FPDU framing, DDP placement and RDMAP message rules for one
 * direction of one connection. It is fed any slice of the TCP byte stream (one byte, or a
 * megabyte) and never copies payload itself: it tells the caller where each payload byte goes
 * (ops->place, or siw_rx_direct_iov() so the caller can read from the socket straight into the
 * destination), checks every header field against the connection's state and the memory it may
 * touch, verifies the CRC and reports messages in wire order through ops callbacks.
 *
 * The first protocol violation is recorded with its TERMINATE triple (siw_rx.err) and every later
 * byte is ignored; the caller then sends the TERMINATE (siw_term_from_rx()) and tears down.
 *
 * Threading: an rx is used by one thread at a time; callbacks must not re-enter the rx.
 */
#ifndef SIW_RX_H
#define SIW_RX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "iwarp.h"
#include "mem.h"

/* Scatter/gather limits the core is built for (the verbs layer may report less). */
#define SIW_MAX_SGE 32

/* Same layout as struct iovec (checked where both are visible). */
struct siw_iov {
	void *base;
	size_t len;
};

/* Same layout as struct ibv_sge. */
struct siw_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey;
};

/* Negotiated parameters of the receive direction. */
struct siw_rx_params {
	bool crc;	     /* verify the MPA CRC of every FPDU */
	bool markers;	     /* the peer inserts MPA markers into the stream we receive */
	bool rfc7306;	     /* accept RFC 7306 opcodes (immediate data, atomics) */
	uint8_t rtr;	     /* SIW_RTR_*: the first FPDU must be this ready-to-receive message */
	uint32_t pd;	     /* our protection domain, for access checks */
	uint32_t qpn;	     /* our QP number, for type-2 memory windows */
	uint32_t max_ulpdu;  /* longest ULPDU accepted (<= MPA_MAX_ULPDU) */
};

/* RFC 6581 ready-to-receive message the responder waits for (SIW_RTR_NONE: no P2P). */
enum siw_rtr {
	SIW_RTR_NONE = 0,
	SIW_RTR_SEND = 1,
	SIW_RTR_WRITE = 2,
	SIW_RTR_READ = 3,
};

/* A received SEND-family message, complete and verified. */
struct siw_rx_recv {
	uint32_t len;	   /* payload bytes placed */
	uint8_t opcode;	   /* RDMAP_SEND, _SEND_INV, _SEND_SE, _SEND_SE_INV */
	bool solicited;	   /* SE was set */
	bool invalidate;   /* a Send with Invalidate: inv_stag was invalidated (ops->invalidate) */
	uint32_t inv_stag;
};

/* An inbound RDMA READ REQUEST, validated: the source range may be read by the peer. */
struct siw_read_req {
	uint32_t sink_stag;
	uint64_t sink_to;
	uint32_t len;
	uint32_t src_stag;
	uint64_t src_to;
	uint32_t msn;
	bool rtr; /* a zero-length READ that serves as the RFC 6581 ready-to-receive message */
};

/* The request we sent that the next response must answer (our ORQ head). */
struct siw_orq_view {
	bool atomic;	   /* an RFC 7306 Atomic Request (else an RDMA READ) */
	uint32_t sink_stag;
	uint64_t sink_to;
	uint32_t len;
	uint32_t req_id;   /* atomic: the Request Identifier we sent */
};

/* An inbound RFC 7306 Atomic Request, validated: the 8-byte target may be operated on. */
struct siw_atomic_req {
	uint8_t aop;	   /* AOP_FETCH_ADD or AOP_CMP_SWAP */
	uint32_t req_id;
	uint32_t stag;
	uint64_t to;
	uint64_t add_swap, add_swap_mask;
	uint64_t cmp, cmp_mask;
	uint32_t msn;
	uint8_t *target;   /* local address of the 8-byte-aligned operand */
};

/* An RFC 7306 Atomic Response answering our ORQ head. */
struct siw_atomic_resp {
	uint32_t req_id;
	uint64_t orig;	   /* the value before the operation */
};

struct siw_term_info; /* term.h */

/*
 * Callbacks into the engine. Each returns 0 or a negative SIW_ERR_*; a non-zero return stops the
 * parser with that error (a SIW_ERR_TERM triple is sent to the peer as given; other errors
 * become a local catastrophic TERMINATE).
 */
struct siw_rx_ops {
	/* Resolves an STag (local table). SIW_ERR_MEM_STAG if there is none with that key. */
	int (*mem_lookup)(void *user, uint32_t stag, struct siw_mem_ref *ref);
	/*
	 * A new untagged message on queue 0 starts: take the next receive buffer (RQ or SRQ) and
	 * show its SGEs; they stay valid until recv_done or the connection's end. SIW_ERR_QFULL if
	 * no receive is posted (iWARP has no RNR: this becomes DDP "MSN no buffer").
	 */
	int (*rq_begin)(void *user, const struct siw_sge **sge, unsigned *num_sge);
	/* The READ RESPONSE we are receiving answers our oldest outstanding READ. */
	int (*orq_head)(void *user, struct siw_orq_view *e);
	/* Moves len payload bytes into place. The engine may copy now or batch until the next event. */
	int (*place)(void *user, void *dst, const void *src, size_t len);
	/* Message completions, in wire order, after the last FPDU's CRC checked out. */
	int (*recv_done)(void *user, const struct siw_rx_recv *r);
	int (*read_req)(void *user, const struct siw_read_req *r);
	int (*read_resp_done)(void *user);
	/* SEND with Invalidate: invalidate a local STag (SIW_ERR_MEM_* if it cannot be). */
	int (*invalidate)(void *user, uint32_t stag);
	/* The peer sent a TERMINATE; the parser stops after this call with SIW_ERR_TERMINATED. */
	int (*terminate)(void *user, const struct siw_term_info *t);
	/* The RFC 6581 ready-to-receive message arrived (responder side of a P2P connection). */
	int (*rtr_done)(void *user);
	/* Optional (may be NULL): an RDMA WRITE message was completely placed. */
	int (*write_done)(void *user, uint32_t stag, uint64_t to, uint32_t len);
	/*
	 * RFC 7306, used only with p.rfc7306; a NULL callback makes its opcode unsupported
	 * (TERMINATE "unexpected opcode"). imm: the 8 data bytes as on the wire.
	 */
	int (*imm_data)(void *user, const uint8_t imm[8], bool solicited);
	int (*atomic_req)(void *user, const struct siw_atomic_req *r);
	int (*atomic_resp)(void *user, const struct siw_atomic_resp *r);
};

enum siw_rx_state {
	SIW_RX_HDR,	/* collecting the FPDU header */
	SIW_RX_PAYLOAD, /* payload bytes go to their destination */
	SIW_RX_TRAILER, /* pad and CRC */
	SIW_RX_DEAD,	/* an error or TERMINATE ended the stream: input is ignored */
};

struct siw_rx_stats {
	uint64_t fpdus;
	uint64_t bytes;	   /* stream bytes consumed */
	uint64_t payload;  /* payload bytes placed */
	uint64_t messages; /* completed RDMAP messages */
	uint64_t direct;   /* payload bytes placed by the caller through siw_rx_direct_iov() */
};

/* A resolved destination segment of the current untagged message. */
struct siw_rx_seg {
	uint8_t *addr;
	uint32_t len;
};

struct siw_rx {
	const struct siw_rx_ops *ops;
	void *user;
	struct siw_rx_params p;

	enum siw_rx_state state;
	uint8_t hdr[SIW_MAX_HDR_LEN]; /* current FPDU header, from the MPA length on */
	unsigned hdr_have;
	unsigned hdr_need;	      /* grows from the minimum once the opcode is known */
	unsigned ulpdu_len;
	uint32_t payload_left;	      /* payload bytes of this FPDU still to come */
	uint32_t payload_len;	      /* payload bytes of this FPDU */
	uint8_t trailer[8];	      /* pad + CRC */
	unsigned trailer_have;
	unsigned trailer_need;
	uint32_t crc;		      /* running CRC of the current FPDU */

	/* Markers (RFC 5044 §5): position of the stream relative to the marker grid. */
	uint64_t stream_pos;	      /* bytes consumed since the marker reference point */
	uint64_t fpdu_start;	      /* stream_pos of this FPDU's first byte */
	bool in_fpdu;		      /* the current FPDU's first byte is consumed */
	unsigned marker_have;	      /* bytes of a marker consumed so far */
	uint8_t marker[MPA_MARKER_LEN];

	/* The FPDU being received. */
	uint8_t opcode;
	bool tagged;
	bool last;

	/* Tagged message in progress (RDMA WRITE or READ RESPONSE). */
	bool t_active;
	uint8_t t_opcode;
	uint32_t t_stag;
	uint64_t t_to;		      /* tagged offset of the next byte */
	uint32_t t_len;		      /* bytes placed so far */
	uint8_t *t_dst;		      /* where the next payload byte of this FPDU goes */

	/* Untagged queue-0 message in progress (the SEND family). */
	bool u_active;
	uint8_t u_opcode;
	uint32_t u_msn;
	uint32_t u_mo;		      /* bytes placed so far == next MO expected */
	uint32_t u_cap;		      /* total capacity of the receive buffer */
	unsigned u_nseg;
	unsigned u_seg;		      /* current segment */
	uint32_t u_seg_off;	      /* offset inside it */
	struct siw_rx_seg u_segs[SIW_MAX_SGE];
	uint32_t u_inv_stag;

	uint32_t msn[RDMAP_NUM_QN];   /* next MSN expected on each untagged queue */
	bool rtr_pending;

	/* First error and the header that caused it, kept for the TERMINATE. */
	int err;
	uint8_t err_hdr[SIW_MAX_HDR_LEN];
	unsigned err_hdr_len;	      /* 0: no header copy (layout unknown) */
	bool err_hdr_rdmap;	      /* the copy includes the RDMAP header (R bit) */
	int u_status;		      /* how the active receive ends if the error is local */

	struct siw_rx_stats stats;
};

/* Prepares rx for a fresh stream (right after the MPA request/reply). */
void siw_rx_init(struct siw_rx *rx, const struct siw_rx_ops *ops, void *user,
		 const struct siw_rx_params *p);

/*
 * Consumes input. Header, marker and trailer bytes are taken into rx; payload bytes are handed
 * to ops->place (src points into `in`). Returns len, or a negative SIW_ERR_* once the stream is
 * dead (the first error; rx->err keeps it). Input after an error is ignored.
 */
ssize_t siw_rx_feed(struct siw_rx *rx, const uint8_t *in, size_t len);

/*
 * If the parser is inside an FPDU's payload, describes where the next payload bytes go (up to
 * the end of this FPDU's payload, and never across a marker) so the caller can read them from
 * the socket straight into place. Returns the number of iovecs (0: not in a payload, the caller
 * must use siw_rx_feed) and stores their total length in *len.
 */
int siw_rx_direct_iov(struct siw_rx *rx, struct siw_iov *iov, int maxiov, size_t *len);

/*
 * The caller wrote n (<= the total given by siw_rx_direct_iov) bytes into those iovecs. The CRC
 * is taken over them where they now lie. Returns 0 or the stream's error.
 */
int siw_rx_direct_done(struct siw_rx *rx, size_t n);

/*
 * Stops the stream with a local error found by the caller (e.g. EFAULT while placing). Keeps the
 * first error. Returns rx->err.
 */
int siw_rx_fail(struct siw_rx *rx, int err);

/* Is a SEND-family message partly received (its receive buffer is taken)? */
static inline bool siw_rx_recv_active(const struct siw_rx *rx)
{
	return rx->u_active;
}

#endif
