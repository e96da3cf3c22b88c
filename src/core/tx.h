/* SPDX-License-Identifier: MIT */
/*
 * The transmit builder: turns one RDMAP message at a time into FPDUs sized to the connection's
 * maximum, as a gather list for sendmsg(): header bytes built here, payload referenced where it
 * lies (registered memory, never copied), pad and CRC built here, markers inserted when
 * negotiated. Many FPDUs (of one or several messages) go into one batch, so one system call
 * carries many segments.
 *
 * Usage:
 *	siw_tx_batch_reset(&b);
 *	while (work && !batch full) {
 *		siw_tx_begin(tx, &msg);         // once per message
 *		r = siw_tx_fill(tx, &b);        // 1: message complete in the batch; 0: batch full
 *	}
 *	sendmsg(b.iov...); siw_iov_advance(...) on partial writes; reset when all bytes are out.
 * A message whose fill returned 0 continues with another siw_tx_fill() into the next batch.
 *
 * Threading: a tx (and its batch) is used by one thread at a time.
 */
#ifndef SIW_TX_H
#define SIW_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iwarp.h"
#include "rx.h"

/* Bounds of one batch (one sendmsg): iovecs, FPDUs, and header/trailer/marker bytes. */
#define SIW_TX_BATCH_IOV   1024
#define SIW_TX_BATCH_FPDUS 256
#define SIW_TX_ARENA	   (SIW_TX_BATCH_FPDUS * (SIW_MAX_HDR_LEN + 8) + 64 * MPA_MARKER_LEN)

struct siw_tx_params {
	bool crc;	     /* compute CRC32c (else the CRC field is zero, as kernel siw sends) */
	bool markers;	     /* insert MPA markers into the stream we send */
	uint32_t max_ulpdu;  /* largest ULPDU per FPDU (MULPDU), header included */
};

/* With markers on, FPDUs are capped so that one always fits a batch (markers split iovecs). */
#define SIW_TX_MAX_ULPDU_MARKERS 16384

/* One RDMAP message to transmit. Payload is gathered from iov[0..niov) (len bytes in all). */
struct siw_tx_msg {
	uint8_t opcode; /* enum rdmap_opcode (SE and invalidate are opcodes of their own) */
	uint32_t stag;	/* tagged: sink STag; SEND_INV: STag to invalidate */
	uint64_t to;	/* tagged: sink tagged offset */
	/* RDMA READ REQUEST */
	uint32_t rd_sink_stag;
	uint64_t rd_sink_to;
	uint32_t rd_len;
	uint32_t rd_src_stag;
	uint64_t rd_src_to;
	/* TERMINATE: the control word; the body (header copy) is the payload */
	uint32_t term_ctrl;
	/* RFC 7306 Immediate Data: the 8 bytes as they go on the wire */
	uint8_t imm[8];
	/* RFC 7306 Atomic Request (stag/to name the remote operand) / Atomic Response */
	uint8_t aop;
	uint32_t req_id;
	uint64_t add_swap, add_swap_mask, cmp, cmp_mask;
	uint64_t orig;
	const struct siw_iov *iov;
	unsigned niov;
	uint32_t len;
};

struct siw_tx_batch {
	struct siw_iov iov[SIW_TX_BATCH_IOV];
	unsigned niov;
	size_t bytes;	    /* total bytes described */
	unsigned nfpdus;
	size_t arena_used;
	uint8_t arena[SIW_TX_ARENA];
};

struct siw_tx_stats {
	uint64_t fpdus;
	uint64_t bytes;	   /* stream bytes described (headers, payload, trailers, markers) */
	uint64_t payload;
	uint64_t messages;
};

struct siw_tx {
	struct siw_tx_params p;
	uint32_t msn[RDMAP_NUM_QN]; /* MSN of the last message sent on each untagged queue */
	uint64_t stream_pos;	    /* bytes described since the marker reference point */

	/* The message being segmented. */
	bool active;
	struct siw_tx_msg msg;
	uint32_t msg_msn;
	uint32_t off;		    /* payload bytes already in FPDUs */
	unsigned iov_idx;	    /* gather cursor */
	size_t iov_off;

	struct siw_tx_stats stats;
};

void siw_tx_init(struct siw_tx *tx, const struct siw_tx_params *p);

static inline void siw_tx_batch_reset(struct siw_tx_batch *b)
{
	b->niov = 0;
	b->bytes = 0;
	b->nfpdus = 0;
	b->arena_used = 0;
}

/*
 * Starts a message. SIW_ERR_STATE if the previous one is not completely in a batch yet;
 * SIW_ERR_INVAL for a malformed message (unknown opcode, payload where none is allowed, ...).
 * Untagged messages get the next MSN of their queue here.
 */
int siw_tx_begin(struct siw_tx *tx, const struct siw_tx_msg *m);

/*
 * Appends FPDUs of the current message to the batch. Returns 1 when the message's last FPDU is
 * in the batch, 0 when the batch is full first (call again with a fresh batch), or a negative
 * SIW_ERR_*. Reads the payload (for the CRC) when CRC is on.
 */
int siw_tx_fill(struct siw_tx *tx, struct siw_tx_batch *b);

/* Is a message begun but not completely in a batch? */
static inline bool siw_tx_busy(const struct siw_tx *tx)
{
	return tx->active;
}

/*
 * Drops n bytes from the front of an iovec array (after a partial write). Returns the new
 * count; *iov moves forward.
 */
unsigned siw_iov_advance(struct siw_iov **iov, unsigned cnt, size_t n);

#endif
