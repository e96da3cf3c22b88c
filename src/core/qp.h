/* SPDX-License-Identifier: MIT */
/*
 * The iWARP QP state machine (RFC 5040 §6 and the verbs mapping kernel siw uses):
 *
 *	IDLE --(CM hands over a negotiated connection)--> RTS
 *	RTS  --(disconnect: graceful close)--> CLOSING --(SQ drained, LLP closed)--> IDLE/ERROR
 *	RTS  --(protocol error found locally)--> TERMINATE --(TERMINATE sent)--> ERROR
 *	any  --(TERMINATE received, LLP reset, local fatal error)--> ERROR
 *	ERROR --(verbs RESET)--> IDLE
 *
 * Verbs states map as RESET/INIT -> IDLE, RTR -> RTR, RTS -> RTS, SQD -> CLOSING,
 * SQE -> TERMINATE, ERR -> ERROR.
 */
#ifndef SIW_QP_H
#define SIW_QP_H

#include <stdbool.h>

enum siw_qp_state {
	SIW_QP_IDLE = 0,
	SIW_QP_RTR,
	SIW_QP_RTS,
	SIW_QP_CLOSING,
	SIW_QP_TERMINATE,
	SIW_QP_ERROR,
	SIW_QP_NUM_STATES,
};

extern const char *const siw_qp_state_name[SIW_QP_NUM_STATES];

/* Why a transition is asked for. */
enum siw_qp_cause {
	SIW_QP_BY_USER,  /* ibv_modify_qp */
	SIW_QP_BY_CM,    /* connection established / closed by the connection manager */
	SIW_QP_BY_ERROR, /* protocol or local error, TERMINATE received, LLP reset */
};

/* siw_qp_check_transition(): the request is accepted, but the QP stays where it is. */
#define SIW_QP_KEEP 1

/*
 * Is from -> to allowed for this cause? Returns
 *   0             the QP moves to `to` (or stays, when to == from and that is allowed),
 *   SIW_QP_KEEP   the call succeeds but the QP keeps its state: the user asks for RTS while
 *                 the QP still waits for its connection (IB-style INIT/RTR/RTS sequences).
 *                 On iWARP only the connection manager enters RTS, with the negotiated
 *                 connection; kernel siw answers EINVAL here, we let the call pass,
 *   SIW_ERR_INVAL the transition is illegal (verbs: EINVAL).
 * The full table is in qp.c.
 */
int siw_qp_check_transition(enum siw_qp_state from, enum siw_qp_state to, enum siw_qp_cause why);

static inline bool siw_qp_is_connected(enum siw_qp_state s)
{
	return s == SIW_QP_RTS || s == SIW_QP_CLOSING;
}

#endif
