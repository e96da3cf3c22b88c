/* SPDX-License-Identifier: MIT */
/*
 * A scripted receive side for core tests and fuzzers: a siw_rx with an in-memory region table,
 * receive queue and ORQ standing in for the engine, recording every callback in order.
 */
#ifndef SIW_TEST_PEER_H
#define SIW_TEST_PEER_H

#include <stdbool.h>
#include <stdint.h>

#include "rx.h"
#include "term.h"
#include "tx.h"

#define TP_MAX_MR  16
#define TP_MAX_RQ  64
#define TP_MAX_ORQ 64
#define TP_MAX_EV  256

enum tp_ev_type {
	TP_EV_RECV = 1,
	TP_EV_READ_REQ,
	TP_EV_READ_RESP,
	TP_EV_WRITE,
	TP_EV_INVALIDATE,
	TP_EV_TERM,
	TP_EV_RTR,
	TP_EV_IMM,
	TP_EV_ATOMIC_REQ,
	TP_EV_ATOMIC_RESP,
};

struct tp_event {
	enum tp_ev_type type;
	struct siw_rx_recv recv;
	struct siw_read_req rreq;
	struct siw_atomic_req areq;
	struct siw_atomic_resp aresp;
	uint8_t imm[8];
	bool solicited;
	uint32_t stag;
	uint64_t to;
	uint32_t len;
};

struct tp_region {
	bool valid;
	uint32_t stag;
	struct siw_mem_ref ref;
};

struct tp_recv {
	struct siw_sge sge[SIW_MAX_SGE];
	unsigned nsge;
};

struct tp_peer {
	struct siw_rx rx;
	struct tp_region mr[TP_MAX_MR];
	unsigned nmr;
	struct tp_recv rq[TP_MAX_RQ];
	unsigned rq_head, rq_tail;
	struct siw_orq_view orq[TP_MAX_ORQ];
	unsigned orq_head, orq_tail;
	struct tp_event ev[TP_MAX_EV];
	unsigned nev;
	uint64_t placed;
	struct siw_term_info term;
	int fail_place;	 /* non-zero: place() returns this error */
	bool fail_read_req; /* read_req() reports a full IRQ */
};

void tp_init(struct tp_peer *p, const struct siw_rx_params *rp);
/* Registers buf[0..len) with iova == (uintptr_t)buf; returns the STag. */
uint32_t tp_add_mr(struct tp_peer *p, void *buf, uint64_t len, uint32_t access);
/* Same, with an explicit iova, PD and QP binding. */
uint32_t tp_add_mr_ex(struct tp_peer *p, void *buf, uint64_t len, uint64_t iova, uint32_t access,
		      uint32_t pd, uint32_t qpn);
void tp_post_recv(struct tp_peer *p, const struct siw_sge *sge, unsigned nsge);
void tp_push_orq(struct tp_peer *p, uint32_t sink_stag, uint64_t sink_to, uint32_t len);

/* Counts events of a type. */
unsigned tp_count(const struct tp_peer *p, enum tp_ev_type t);

/* Builds one message with tx into out (all FPDUs); returns the byte count or a negative error. */
long tp_build(struct siw_tx *tx, const struct siw_tx_msg *m, uint8_t *out, size_t outsz);

/* Feeds in[0..len) in chunks: chunk 0 = all at once, 1 = byte by byte, else random sizes. */
long tp_feed(struct tp_peer *p, const uint8_t *in, size_t len, unsigned chunk, unsigned *seed);

extern const struct siw_rx_ops tp_ops;

#endif
