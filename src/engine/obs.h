/* SPDX-License-Identifier: MIT */
/*
 * Observability: the per-process status socket that tools/siw-stat reads (stat.c) and the opt-in
 * packet capture of a process's iWARP traffic (capture.c). Included by priv.h; the engine calls
 * these from a handful of marked hook lines:
 *
 *	ctx.c	eng_ctx_open / eng_ctx_close	eng_stat_ctx_open, eng_stat_ctx_close
 *	qp.c	eng_qp_connect			eng_obs_connect (MPA frames into the capture)
 *		eng_qp_fail			eng_obs_term (TERMINATE sent), eng_cap_close (FIN)
 *		eng_qp_destroy			eng_stat_qp_unlink
 *	qp_tx.c	after each sendmsg()		eng_cap_tx, behind ENG_CAP_ON()
 *	qp_rx.c	after each recv()/readv()	eng_cap_rx, behind ENG_CAP_ON()
 *		rx_terminate			eng_obs_term (TERMINATE received)
 *
 * With capture off (SIW_CAPTURE unset, the default) the data path pays one predictable branch
 * on a variable that never changes after the first context is opened.
 *
 * Locks: the stat lock (stat.c) comes before every engine lock; it is taken with no engine
 * lock held. The capture lock (capture.c) is a leaf: taken under qp->lock (send side), under
 * qp->rx_lock (receive side), under cm.lock (the CM's failed MPA exchanges), never while
 * waiting for anything else.
 */
#ifndef SIW_ENGINE_OBS_H
#define SIW_ENGINE_OBS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "term.h"

struct eng_ctx;
struct eng_qp;
struct eng_conn;

/* One direction of a captured connection: FPDU framing, so that each segment holds one FPDU. */
struct eng_cap_dir {
	bool framed;    /* the FPDU stream runs (after the MPA frame): cut at FPDU ends */
	bool markers;   /* this direction carries MPA markers */
	bool len_known; /* flen is valid */
	uint64_t start; /* stream position (after the MPA frame) of the current FPDU */
	uint32_t flen;  /* its length in the stream (markers included) */
	uint8_t *held;  /* its bytes seen so far, when it spans system calls */
	size_t nheld, cap;
};

/* One captured TCP connection as the capture file shows it (under the capture lock). */
struct eng_cap_conn {
	struct eng_cap_conn *next; /* live captured connections of the process */
	bool live;                 /* being captured */
	bool v6;
	uint8_t ip[2][16]; /* [0] local, [1] peer (IPv4: first 4 bytes) */
	uint16_t port[2];  /* host order */
	uint32_t seq[2];   /* next sequence number sent by [0] local, [1] peer */
	uint32_t ack[2];   /* last acknowledgment number each side was shown to send */
	bool fin[2];
	struct eng_cap_dir dir[2]; /* [0] local -> peer, [1] peer -> local */
};

/* Per-QP state of stat.c and capture.c (a member of struct eng_qp). */
struct eng_obs_qp {
	uint64_t connected_ms;     /* wall clock of the last hand-over (both QP locks) */
	uint8_t term_dir;          /* last TERMINATE: 0 none, 1 sent, 2 received (rx_lock) */
	struct siw_term_info term; /* ... and what it said */
	struct eng_cap_conn cap;   /* the capture lock */
};

/* ---- stat.c: the status socket ------------------------------------------------------------- */

/* A context was opened / is being closed (no engine lock held). */
void eng_stat_ctx_open(struct eng_ctx *ctx);
void eng_stat_ctx_close(struct eng_ctx *ctx);
/* A QP left its context's list and is about to be freed (no engine lock held). */
void eng_stat_qp_unlink(struct eng_qp *qp);

/* The QP was handed a connection (both QP locks held): timestamps, capture start. */
void eng_obs_connect(struct eng_qp *qp, const struct eng_conn *conn);
/* A TERMINATE was sent (sent = true, both locks; ignored unless qp->term_sent) or received. */
void eng_obs_term(struct eng_qp *qp, bool sent, const struct siw_term_info *t);
/* "name (layer l etype e code c)", with both readings when the control word is ambiguous. */
char *eng_obs_term_text(const struct siw_term_info *t, char *out, size_t sz);
/* For the log: what a protocol error we terminate a connection for means, and what to try. */
const char *eng_obs_err_hint(int err);

/* ---- capture.c: SIW_CAPTURE=file.pcap ------------------------------------------------------- */

extern bool eng_cap_on; /* SIW_CAPTURE is set; constant once the first context is open */
#define ENG_CAP_ON() __builtin_expect(eng_cap_on, 0)

/* Reads SIW_CAPTURE (once; eng_stat_ctx_open calls it). */
void eng_cap_init(void);
/* Bytes sendmsg() took: the first `bytes` of iov[0..n) (qp->lock held). */
void eng_cap_tx(struct eng_qp *qp, const struct iovec *iov, unsigned n, size_t bytes);
/*
 * Bytes a read returned (rx_lock held): the first `bytes` of iov[0..n), or of stage when iov is
 * NULL. bytes == 0 is the peer's FIN, bytes < 0 is ignored.
 */
void eng_cap_rx(struct eng_qp *qp, const struct iovec *iov, int n, const void *stage,
		ssize_t bytes);
/* We close the connection (both locks held): our FIN, and the connection leaves the capture. */
void eng_cap_close(struct eng_qp *qp);
/* capture.c side of eng_obs_connect (both locks held). */
void eng_cap_connect(struct eng_qp *qp, const struct eng_conn *conn);
/* The capture file of this process into buf (returned), or NULL when nothing is captured. */
const char *eng_cap_path(char *buf, size_t sz);

#endif
