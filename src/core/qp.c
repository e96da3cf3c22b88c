// SPDX-License-Identifier: MIT
/*
 * The QP state machine as a table (RFC 5040 §6 for the stream's life, kernel siw's
 * siw_qp_modify() for how verbs requests map onto it).
 *
 * Who may ask for what:
 *  - any cause, any state -> ERROR: always (verbs ERR, TERMINATE received, LLP reset, a local
 *    fatal error). ERROR -> ERROR is accepted as a no-op.
 *  - IDLE -> RTR (user): verbs INIT -> RTR. Nothing happens on the wire; RTR only records that
 *    the application is ready. User RTR -> IDLE (RESET) goes back.
 *  - IDLE/RTR -> RTS: only the connection manager, once MPA negotiated the connection (kernel
 *    siw needs the socket for it). The same request from the user is let through without a
 *    state change (SIW_QP_KEEP; kernel siw says EINVAL).
 *  - RTS -> CLOSING: the user (verbs SQD, a graceful disconnect) or the CM (peer closed).
 *  - RTS -> TERMINATE: a protocol error found locally (RFC 5040 §5.4†: the TERMINATE goes out,
 *    then the stream ends). A second error in TERMINATE changes nothing (the first wins).
 *    Users cannot ask for it: verbs SQE is not a state an application may request.
 *  - TERMINATE -> ERROR: after the TERMINATE was sent (or could not be).
 *  - CLOSING -> IDLE: the CM, when the LLP closed with the SQ drained; CLOSING -> CLOSING is a
 *    no-op for user and CM (the peer's FIN may have got there first, as siw notes).
 *  - ERROR -> IDLE: only the user (verbs RESET); kernel siw never leaves ERROR, verbs allow it
 *    so the QP can be reused for a new connection.
 *  - Same state: a no-op for the user in IDLE, RTR, RTS (a modify that changes other
 *    attributes), CLOSING and ERROR.
 * Everything else is illegal, e.g. user RTS -> IDLE (tear down through ERROR first), RTS -> RTR,
 * or leaving ERROR other than by RESET.
 */
#include "qp.h"

#include "error.h"

const char *const siw_qp_state_name[SIW_QP_NUM_STATES] = {
    [SIW_QP_IDLE] = "IDLE",
    [SIW_QP_RTR] = "RTR",
    [SIW_QP_RTS] = "RTS",
    [SIW_QP_CLOSING] = "CLOSING",
    [SIW_QP_TERMINATE] = "TERMINATE",
    [SIW_QP_ERROR] = "ERROR",
};

/* Table entries: X illegal, OK moves (or stays on a same-state request), KP keeps. */
#define X  0
#define OK 1
#define KP 2

#define NCAUSE (SIW_QP_BY_ERROR + 1)

/* [cause][from][to], states in enum order: IDLE RTR RTS CLOSING TERMINATE ERROR */
/* clang-format off */
static const unsigned char qp_table[NCAUSE][SIW_QP_NUM_STATES][SIW_QP_NUM_STATES] = {
	[SIW_QP_BY_USER] = {
		[SIW_QP_IDLE] =      {OK, OK, KP, X,  X,  OK},
		[SIW_QP_RTR] =       {OK, OK, KP, X,  X,  OK},
		[SIW_QP_RTS] =       {X,  X,  OK, OK, X,  OK},
		[SIW_QP_CLOSING] =   {X,  X,  X,  OK, X,  OK},
		[SIW_QP_TERMINATE] = {X,  X,  X,  X,  X,  OK},
		[SIW_QP_ERROR] =     {OK, X,  X,  X,  X,  OK},
	},
	[SIW_QP_BY_CM] = {
		[SIW_QP_IDLE] =      {X,  X,  OK, X,  X,  OK},
		[SIW_QP_RTR] =       {X,  X,  OK, X,  X,  OK},
		[SIW_QP_RTS] =       {X,  X,  X,  OK, X,  OK},
		[SIW_QP_CLOSING] =   {OK, X,  X,  OK, X,  OK},
		[SIW_QP_TERMINATE] = {X,  X,  X,  X,  X,  OK},
		[SIW_QP_ERROR] =     {X,  X,  X,  X,  X,  OK},
	},
	[SIW_QP_BY_ERROR] = {
		[SIW_QP_IDLE] =      {X,  X,  X,  X,  X,  OK},
		[SIW_QP_RTR] =       {X,  X,  X,  X,  X,  OK},
		[SIW_QP_RTS] =       {X,  X,  X,  X,  OK, OK},
		[SIW_QP_CLOSING] =   {X,  X,  X,  X,  X,  OK},
		[SIW_QP_TERMINATE] = {X,  X,  X,  X,  OK, OK},
		[SIW_QP_ERROR] =     {X,  X,  X,  X,  X,  OK},
	},
};
/* clang-format on */

int siw_qp_check_transition(enum siw_qp_state from, enum siw_qp_state to, enum siw_qp_cause why)
{
	if ((unsigned)from >= SIW_QP_NUM_STATES || (unsigned)to >= SIW_QP_NUM_STATES ||
	    (unsigned)why >= NCAUSE)
		return SIW_ERR_INVAL;
	switch (qp_table[why][from][to]) {
	case OK:
		return 0;
	case KP:
		return SIW_QP_KEEP;
	default:
		return SIW_ERR_INVAL;
	}
}
