/* SPDX-License-Identifier: MIT */
/*
 * Compile-time proof of what the translation in this directory assumes: engine.h's codes are
 * rdma-core's values (so a code is copied, never mapped), and the rdma-core 44 layouts we fill
 * are the ones the installed header declares.
 */
#include <stddef.h>

#include "vrb.h"

#define VRB_SAME(a, b) _Static_assert((long long)(a) == (long long)(b), #a " != " #b)

/* Work request opcodes. */
VRB_SAME(ENG_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE);
VRB_SAME(ENG_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_WRITE_WITH_IMM);
VRB_SAME(ENG_WR_SEND, IBV_WR_SEND);
VRB_SAME(ENG_WR_SEND_WITH_IMM, IBV_WR_SEND_WITH_IMM);
VRB_SAME(ENG_WR_RDMA_READ, IBV_WR_RDMA_READ);
VRB_SAME(ENG_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_CMP_AND_SWP);
VRB_SAME(ENG_WR_ATOMIC_FETCH_AND_ADD, IBV_WR_ATOMIC_FETCH_AND_ADD);
VRB_SAME(ENG_WR_LOCAL_INV, IBV_WR_LOCAL_INV);
VRB_SAME(ENG_WR_BIND_MW, IBV_WR_BIND_MW);
VRB_SAME(ENG_WR_SEND_WITH_INV, IBV_WR_SEND_WITH_INV);

/* Send flags. */
VRB_SAME(ENG_SEND_FENCE, IBV_SEND_FENCE);
VRB_SAME(ENG_SEND_SIGNALED, IBV_SEND_SIGNALED);
VRB_SAME(ENG_SEND_SOLICITED, IBV_SEND_SOLICITED);
VRB_SAME(ENG_SEND_INLINE, IBV_SEND_INLINE);

/* Completion opcodes, statuses and flags. */
VRB_SAME(ENG_WC_SEND, IBV_WC_SEND);
VRB_SAME(ENG_WC_RDMA_WRITE, IBV_WC_RDMA_WRITE);
VRB_SAME(ENG_WC_RDMA_READ, IBV_WC_RDMA_READ);
VRB_SAME(ENG_WC_COMP_SWAP, IBV_WC_COMP_SWAP);
VRB_SAME(ENG_WC_FETCH_ADD, IBV_WC_FETCH_ADD);
VRB_SAME(ENG_WC_BIND_MW, IBV_WC_BIND_MW);
VRB_SAME(ENG_WC_LOCAL_INV, IBV_WC_LOCAL_INV);
VRB_SAME(ENG_WC_RECV, IBV_WC_RECV);
VRB_SAME(ENG_WC_RECV_RDMA_WITH_IMM, IBV_WC_RECV_RDMA_WITH_IMM);

VRB_SAME(ENG_WC_SUCCESS, IBV_WC_SUCCESS);
VRB_SAME(ENG_WC_LOC_LEN_ERR, IBV_WC_LOC_LEN_ERR);
VRB_SAME(ENG_WC_LOC_QP_OP_ERR, IBV_WC_LOC_QP_OP_ERR);
VRB_SAME(ENG_WC_LOC_EEC_OP_ERR, IBV_WC_LOC_EEC_OP_ERR);
VRB_SAME(ENG_WC_LOC_PROT_ERR, IBV_WC_LOC_PROT_ERR);
VRB_SAME(ENG_WC_WR_FLUSH_ERR, IBV_WC_WR_FLUSH_ERR);
VRB_SAME(ENG_WC_MW_BIND_ERR, IBV_WC_MW_BIND_ERR);
VRB_SAME(ENG_WC_BAD_RESP_ERR, IBV_WC_BAD_RESP_ERR);
VRB_SAME(ENG_WC_LOC_ACCESS_ERR, IBV_WC_LOC_ACCESS_ERR);
VRB_SAME(ENG_WC_REM_INV_REQ_ERR, IBV_WC_REM_INV_REQ_ERR);
VRB_SAME(ENG_WC_REM_ACCESS_ERR, IBV_WC_REM_ACCESS_ERR);
VRB_SAME(ENG_WC_REM_OP_ERR, IBV_WC_REM_OP_ERR);
VRB_SAME(ENG_WC_RETRY_EXC_ERR, IBV_WC_RETRY_EXC_ERR);
VRB_SAME(ENG_WC_RNR_RETRY_EXC_ERR, IBV_WC_RNR_RETRY_EXC_ERR);
VRB_SAME(ENG_WC_LOC_RDD_VIOL_ERR, IBV_WC_LOC_RDD_VIOL_ERR);
VRB_SAME(ENG_WC_REM_INV_RD_REQ_ERR, IBV_WC_REM_INV_RD_REQ_ERR);
VRB_SAME(ENG_WC_REM_ABORT_ERR, IBV_WC_REM_ABORT_ERR);
VRB_SAME(ENG_WC_INV_EECN_ERR, IBV_WC_INV_EECN_ERR);
VRB_SAME(ENG_WC_INV_EEC_STATE_ERR, IBV_WC_INV_EEC_STATE_ERR);
VRB_SAME(ENG_WC_FATAL_ERR, IBV_WC_FATAL_ERR);
VRB_SAME(ENG_WC_RESP_TIMEOUT_ERR, IBV_WC_RESP_TIMEOUT_ERR);
VRB_SAME(ENG_WC_GENERAL_ERR, IBV_WC_GENERAL_ERR);

VRB_SAME(ENG_WC_WITH_IMM, IBV_WC_WITH_IMM);
VRB_SAME(ENG_WC_WITH_INV, IBV_WC_WITH_INV);

/* QP states. */
VRB_SAME(ENG_QPS_RESET, IBV_QPS_RESET);
VRB_SAME(ENG_QPS_INIT, IBV_QPS_INIT);
VRB_SAME(ENG_QPS_RTR, IBV_QPS_RTR);
VRB_SAME(ENG_QPS_RTS, IBV_QPS_RTS);
VRB_SAME(ENG_QPS_SQD, IBV_QPS_SQD);
VRB_SAME(ENG_QPS_SQE, IBV_QPS_SQE);
VRB_SAME(ENG_QPS_ERR, IBV_QPS_ERR);

/*
 * Async event types are translated by a switch (async.c), not copied: engine.h gives
 * SRQ_LIMIT_REACHED 12 and QP_LAST_WQE_REACHED 13, which are rdma-core's PKEY_CHANGE and
 * SM_CHANGE (rdma-core: 15 and 16). The rest agree.
 */
VRB_SAME(ENG_EVENT_CQ_ERR, IBV_EVENT_CQ_ERR);
VRB_SAME(ENG_EVENT_QP_FATAL, IBV_EVENT_QP_FATAL);
VRB_SAME(ENG_EVENT_QP_REQ_ERR, IBV_EVENT_QP_REQ_ERR);
VRB_SAME(ENG_EVENT_QP_ACCESS_ERR, IBV_EVENT_QP_ACCESS_ERR);
VRB_SAME(ENG_EVENT_COMM_EST, IBV_EVENT_COMM_EST);
VRB_SAME(ENG_EVENT_SQ_DRAINED, IBV_EVENT_SQ_DRAINED);
VRB_SAME(ENG_EVENT_DEVICE_FATAL, IBV_EVENT_DEVICE_FATAL);

/* Access flags. */
VRB_SAME(ENG_ACCESS_LOCAL_WRITE, IBV_ACCESS_LOCAL_WRITE);
VRB_SAME(ENG_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_WRITE);
VRB_SAME(ENG_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_READ);
VRB_SAME(ENG_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_ATOMIC);
VRB_SAME(ENG_ACCESS_MW_BIND, IBV_ACCESS_MW_BIND);
VRB_SAME(ENG_ACCESS_ALL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
			     IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND);

/* Names fit. */
VRB_SAME(ENG_DEV_NAME_MAX, IBV_SYSFS_NAME_MAX);

/*
 * rdma-core 44's extended context: sz sits right before the ibv_context, which ends the
 * struct (verbs_get_ctx() subtracts offsetof(context); verbs_get_ctx_op() checks sz).
 */
_Static_assert(offsetof(struct verbs_context, sz) + sizeof(size_t) ==
		   offsetof(struct verbs_context, context),
	       "sz must sit right before the ibv_context");
_Static_assert(offsetof(struct verbs_context, context) + sizeof(struct ibv_context) ==
		   sizeof(struct verbs_context),
	       "the ibv_context must end struct verbs_context");
/* ibv_context_ops: 32 pointer slots, the live ones where the inlines expect them. */
_Static_assert(sizeof(struct ibv_context_ops) == 32 * sizeof(void *), "32 ops slots");
VRB_SAME(offsetof(struct ibv_context_ops, alloc_mw), 7 * sizeof(void *));
VRB_SAME(offsetof(struct ibv_context_ops, poll_cq), 11 * sizeof(void *));
VRB_SAME(offsetof(struct ibv_context_ops, req_notify_cq), 12 * sizeof(void *));
VRB_SAME(offsetof(struct ibv_context_ops, post_srq_recv), 20 * sizeof(void *));
VRB_SAME(offsetof(struct ibv_context_ops, post_send), 25 * sizeof(void *));
VRB_SAME(offsetof(struct ibv_context_ops, post_recv), 26 * sizeof(void *));
/* ibv_qp_ex starts with the ibv_qp (ibv_qp_to_qp_ex and back is a cast). */
VRB_SAME(offsetof(struct ibv_qp_ex, qp_base), 0);
/* The pre-port_cap_flags2 port attributes ibv_query_port@IBVERBS_1.1 fills: 48 bytes. */
VRB_SAME(VRB_COMPAT_PORT_ATTR_LEN, 48);
