/* SPDX-License-Identifier: MIT */
/* Two connected engine QPs in one process (loopback TCP, MPA negotiated by the core). */
#ifndef SIW_ENG_PAIR_H
#define SIW_ENG_PAIR_H

#include "engine.h"

struct side {
	struct eng_ctx *ctx;
	struct eng_pd *pd;
	struct eng_cq *scq, *rcq;
	struct eng_channel *ch;
	struct eng_qp *qp;
	struct eng_srq *srq;
	int established, closed, close_err;
};

struct pair_opts {
	struct siw_mpa_cfg icfg, rcfg; /* initiator / responder MPA configuration */
	uint16_t ird, ord;	       /* both sides ask for these */
	uint32_t sq, rq, sge, inline_data;
	bool use_channel;
	bool use_srq;		       /* the responder's QP takes receives from an SRQ */
};

void pair_default_opts(struct pair_opts *o);
/* Sets up a (initiator) and b (responder) and connects them. 0 or an error (test fails). */
int pair_connect(struct side *a, struct side *b, const struct pair_opts *o);
void pair_destroy(struct side *a, struct side *b);
/* One side alone, its QP not connected (WRs posted to it wait in its queues). */
int side_open(struct side *s, const struct pair_opts *o);
void side_close(struct side *s);
/*
 * Checks (test.h CHECK) that target ended its connection with the local catastrophic
 * TERMINATE (what a registered buffer freed while in use gives) and that its peer closed too.
 */
void check_catastrophic_end(struct side *target, struct side *peer);
/* Polls cq until n completions arrived or timeout_ms passed; returns the count. */
int poll_n(struct eng_cq *cq, struct eng_cqe *out, int n, int timeout_ms);
/* Waits until *flag becomes non-zero (bounded). */
int wait_flag(int *flag, int timeout_ms);

#endif
