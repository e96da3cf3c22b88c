/* SPDX-License-Identifier: MIT */
/*
 * rsockets over softiwarp: stream sockets emulated on RDMA RC QPs (rsocket(7)).
 *
 * Both ends of a connection run this library; the wire protocol below is softiwarp's own (it
 * does not interoperate with rdma-core's rsockets, which needs RDMA WRITE with immediate data
 * or its IB-specific message layout). It uses only what iWARP has: RDMA WRITE, SEND with
 * inline data, and the MPA private data of the connection setup.
 *
 * ---- Connection setup -------------------------------------------------------------------------
 *
 * The active side calls rdma_connect and the passive side rdma_accept, each with 32 bytes of
 * private data (all integers big-endian):
 *
 *	 0  u32 magic "SIWR"   4  u8 version (1)   5  u8 flags (0)   6  u16 msg_credits
 *	 8  u32 rbuf_rkey     12  u32 rbuf_size    16  u64 rbuf_addr
 *	24  u16 iomap_size    26  u16 reserved    28  u32 reserved
 *
 * rbuf_* name the sender's receive ring (registered for remote write); msg_credits is how many
 * receives it posted for the peer's messages; iomap_size how many riomap() windows the peer
 * may announce to it (RDMA_IOMAPSIZE). A request or reply without this block is refused.
 * The connect asks for initiator depth 1 and responder resources 1, as rdma-core's rsockets
 * do on iWARP (room for the MPA peer-to-peer RTR READ); rsockets issue no READs themselves.
 *
 * ---- Data ------------------------------------------------------------------------------------
 *
 * Each side's receive ring is a byte ring of rbuf_size bytes. The sender keeps the ring's
 * write position and the free space it was granted (initially rbuf_size). A chunk of stream
 * data (at most RS_MAX_CHUNK bytes, never wrapping around the ring's end) is:
 *	1. an RDMA WRITE of the bytes to rbuf_addr + write position (unsignaled; from the
 *	   registered send staging buffer, or inline when no larger than RDMA_INLINE), then
 *	2. a DATA message carrying the chunk's length.
 * RDMAP delivers in order, so when the DATA message completes at the receiver the bytes are
 * placed; the receiver appends them to its readable bytes. Reading frees ring space, which
 * goes back to the sender as byte credits. Data written with riowrite() is an RDMA WRITE into
 * a window the peer announced with riomap(); the peer is not told (rsocket(7)), but it is
 * ordered with the stream like everything else on the QP.
 *
 * ---- Messages ----------------------------------------------------------------------------------
 *
 * SENDs with inline data, 16 bytes, or 40 for IOMAP and IOUNMAP:
 *
 *	 0  u8 op   1  u8 flags   2  u16 msg_credits   4  u32 byte_credits
 *	 8  u64 len              (DATA: chunk bytes; IOMAP: window length)
 *	16  u64 addr             (IOMAP: address of the window)
 *	24  u64 offset           (IOMAP, IOUNMAP: the riomap() offset naming the window)
 *	32  u32 rkey             (IOMAP)   36  u32 reserved
 *
 *	op 1 DATA     a chunk is in the ring
 *	op 2 CREDIT   nothing but the credits below
 *	op 3 IOMAP    the peer may riowrite() [offset, offset + len) into addr/rkey
 *	op 4 IOUNMAP  the window at offset is gone
 *	op 5 FIN      flags 1 (WR): the sender sends no more data (shutdown SHUT_WR, close);
 *		      flags 2 (RD): the sender reads no more and sends nothing after this message
 *		      (SHUT_RD with it, close). Flags accumulate over several FINs.
 *
 * Every message returns credits: msg_credits receives the sender re-posted and byte_credits
 * ring bytes its application consumed since its last message. A receive is re-posted as soon
 * as its completion is processed. Since iWARP has no RNR retry, a SEND must never find the
 * peer without a posted receive, so a side sends a message only while it holds a message
 * credit, and keeps the last one back for CREDIT and FIN: DATA and IOMAP/IOUNMAP need two.
 * A CREDIT message goes out when half of the receive queue or a quarter of the ring waits to
 * be returned and no other message carries it. Both halves of the scheme make progress as
 * long as each application keeps calling into its rsocket (reading, writing or polling), as
 * with TCP's window.
 *
 * ---- Closing -----------------------------------------------------------------------------------
 *
 * rshutdown(SHUT_WR) sends FIN(WR): the peer reads the rest of the ring, then end of stream.
 * rclose sends FIN(WR|RD), then lingers (SO_LINGER, by default RS_LINGER_MS) until its sends
 * completed and the peer's FIN(RD) arrived, and only then disconnects: nothing is in flight
 * towards a closed TCP socket (which would answer with a reset that can destroy data the peer
 * has not read yet). A disconnect without FIN (the peer died) reads as end of stream after the
 * ring is drained and makes writes fail with ECONNRESET.
 *
 * ---- Local structure --------------------------------------------------------------------------
 *
 * Every rsocket owns an rdma_cm event channel; its fd is the rsocket's descriptor (so rsocket
 * fds never collide with ordinary ones). A connected rsocket also has one CQ shared by both
 * queues with its own completion channel. Everything runs in the calling thread: calls poll the
 * CQ and the CM channel without blocking, and block (when they must) in poll(2) on those two
 * fds after arming the CQ. rpoll does the same for many rsockets and ordinary fds at once. One
 * mutex per rsocket serializes its state; it is released while sleeping. When several threads
 * block on one rsocket (a reader and a writer), one sleeps in poll and the others on a
 * condition variable it broadcasts when it wakes.
 */
#ifndef SIW_RSOCKET_INT_H
#define SIW_RSOCKET_INT_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cm.h"

#define RS_MAGIC    0x53495752u /* "SIWR" */
#define RS_VERSION  1
#define RS_CONN_LEN 32

enum rs_op {
	RS_OP_DATA = 1,
	RS_OP_CREDIT = 2,
	RS_OP_IOMAP = 3,
	RS_OP_IOUNMAP = 4,
	RS_OP_FIN = 5,
};

#define RS_FIN_WR 0x1
#define RS_FIN_RD 0x2

#define RS_MSG_HDR_LEN   16
#define RS_MSG_IOMAP_LEN 40
#define RS_RECV_SLOT     64 /* bytes per posted receive */

/* Defaults and limits (rdma-core's defaults where it has them). */
#define RS_DEF_BUF       (1u << 17) /* SO_SNDBUF / SO_RCVBUF */
#define RS_MIN_BUF       4096u
#define RS_MAX_BUF       (1u << 28)
#define RS_DEF_QSIZE     384 /* RDMA_SQSIZE / RDMA_RQSIZE */
#define RS_MIN_QSIZE     16
#define RS_MAX_QSIZE     8192
#define RS_DEF_INLINE    64
#define RS_MAX_CHUNK     (1u << 16)
#define RS_SNDLOWAT      2048u /* POLLOUT needs this much staging space (or the whole buffer) */
#define RS_LINGER_MS     2000
#define RS_CONNECT_MS    30000 /* address/route resolution waits (they are local and immediate) */
#define RS_POLL_SLICE_MS 200   /* rpoll re-checks its rsockets at least this often */

enum rs_state {
	RS_IDLE,
	RS_BOUND,
	RS_LISTENING,
	RS_CONNECTING, /* rdma_connect issued, no answer yet */
	RS_ACCEPTING,  /* rdma_accept issued, ESTABLISHED not seen yet */
	RS_CONNECTED,  /* stays so after FINs and disconnects (see the flags) */
	RS_FAILED,     /* connect failed; err says why */
};

/* A window the peer announced (riowrite writes into it). */
struct rs_rmap {
	bool used;
	uint32_t rkey;
	uint64_t offset, addr, len;
};

/* A local riomap() registration. */
struct rs_lmap {
	struct rs_lmap *next;
	void *buf;
	size_t len;
	uint64_t offset;
	struct ibv_mr *mr;
	bool remote; /* PROT_WRITE: announced (or to be announced) to the peer */
};

/* An IOMAP/IOUNMAP message waiting for credits, in call order. */
struct rs_ctl {
	struct rs_ctl *next;
	uint8_t op;
	uint32_t rkey;
	uint64_t offset, addr, len;
	struct rs_lmap *map; /* IOMAP: its mapping (cleared if unmapped before it was sent) */
};

struct rsock {
	int fd; /* the event channel's fd: the rsocket's descriptor */
	int domain;
	pthread_mutex_t lock;
	pthread_cond_t cv; /* threads waiting while another one sleeps in poll (rs_wait) */
	bool poller;       /* a thread sleeps in poll on our descriptors */
	enum rs_state state;
	int err;       /* SO_ERROR (connect failures), or the error that broke the connection */
	bool nonblock; /* O_NONBLOCK */

	/* options (SOL_SOCKET, IPPROTO_TCP and SOL_RDMA) */
	uint32_t sbuf_size, rbuf_size;
	uint16_t sq_size, rq_size, sq_inline, iomap_size;
	int reuseaddr, keepalive, oobinline, nodelay, maxseg, keepidle, keepintvl, keepcnt;
	int v6only; /* -1 = not set */
	struct linger linger;

	/* connection management */
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;

	/* verbs resources of a connection */
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	bool armed;
	bool qp_dead; /* flushed or broken: no posting any more */
	uint8_t *rbuf, *sbuf, *mbuf;
	struct ibv_mr *rmr, *smr, *mmr;
	uint32_t qp_inline; /* max_inline_data of the QP */

	/* the peer (from its connection data) */
	bool peer_known;
	uint64_t peer_rbuf_addr;
	uint32_t peer_rbuf_rkey, peer_rbuf_size;
	uint16_t peer_iomap_size;
	uint32_t peer_head;    /* where our next chunk goes in the peer's ring */
	uint32_t peer_space;   /* ring bytes we may still write */
	uint32_t peer_credits; /* messages we may still send */

	/* our receive ring */
	uint32_t rtail;     /* oldest unread byte */
	uint32_t runread;   /* readable bytes */
	uint32_t ret_bytes; /* consumed, not yet returned to the peer */
	uint32_t ret_msgs;  /* receives re-posted, not yet returned */

	/* send staging ring and send queue */
	uint32_t shead, sinflight;
	uint32_t sq_avail;

	/* closing */
	uint8_t fin_sent;  /* RS_FIN_* flags sent */
	uint8_t fin_rcvd;  /* RS_FIN_* flags received */
	bool rd_shut;      /* SHUT_RD locally: reads see end of stream */
	bool wr_shut;      /* SHUT_WR locally (the FIN may still wait for a credit) */
	bool disconnected; /* DISCONNECTED seen, or the QP failed */

	/* riomap */
	struct rs_lmap *lmaps;
	struct rs_rmap *rmaps;     /* iomap_size entries: the peer's windows */
	uint16_t rmaps_used_by_us; /* our announced windows still mapped (<= peer_iomap_size) */
	struct rs_ctl *ctl_head, *ctl_tail;
};

/* ---- rsocket_data.c -------------------------------------------------------------------------- */

/* Verbs resources and posted receives of a connection (id->verbs known). 0 or an errno. */
int rs_create_resources(struct rsock *rs);
void rs_destroy_resources(struct rsock *rs);
/* Our connection data for rdma_connect/rdma_accept. */
void rs_conn_data(const struct rsock *rs, uint8_t out[RS_CONN_LEN]);
/* Takes the peer's connection data; 0, or ECONNREFUSED if it is not ours. */
int rs_conn_peer(struct rsock *rs, const void *pd, size_t len);

/* Processes completions and CM events without blocking; sends owed credits/control. */
void rs_progress(struct rsock *rs);
/* Arms the CQ for its next completion (once). */
void rs_arm(struct rsock *rs);
/* Consumes pending completion channel events (the fd was readable). */
void rs_drain_cq_events(struct rsock *rs);

/*
 * Blocks (lock released while sleeping) until cond(rs) holds; 0, ETIMEDOUT after timeout_ms
 * (< 0: no limit), or another errno.
 */
int rs_wait(struct rsock *rs, bool (*cond)(struct rsock *rs), int timeout_ms);

/* Readiness of a connected (or connecting) rsocket, as poll(2) revents. */
short rs_events(struct rsock *rs);

bool rs_readable(struct rsock *rs); /* data, end of stream or an error: a read won't block */
bool rs_writable(struct rsock *rs); /* a write of at least one byte won't block */

/* The data path: return bytes (>= 0) or -1 with errno. Called with rs->lock held. */
ssize_t rs_send_locked(struct rsock *rs, const struct iovec *iov, int iovcnt, int flags);
ssize_t rs_recv_locked(struct rsock *rs, const struct iovec *iov, int iovcnt, int flags);
ssize_t rs_iowrite_locked(struct rsock *rs, const void *buf, size_t count, uint64_t offset,
			  int flags);
off_t rs_iomap_locked(struct rsock *rs, void *buf, size_t len, int prot, off_t offset);
int rs_iounmap_locked(struct rsock *rs, void *buf, size_t len);

/* Sends FIN with these flags (waiting up to timeout_ms for a credit); 0 or an errno. */
int rs_send_fin(struct rsock *rs, uint8_t flags, int timeout_ms);
/* rclose: FIN(WR|RD), linger, disconnect. */
void rs_close_connection(struct rsock *rs, int linger_ms);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t rs_now_ms(void);

#endif
