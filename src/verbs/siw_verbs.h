/* SPDX-License-Identifier: MIT */
/*
 * What the connection manager (src/cm, librdmacm.so.1) needs from our libibverbs.so.1 besides
 * rdma-core's ABI: the engine objects behind the verbs objects applications hand it. These,
 * and every eng_* function of engine.h, are exported in the version node SOFTIWARP_PRIVATE_1,
 * so librdmacm links against libibverbs.so.1 and shares its engine state.
 *
 * None of these take references: the results live as long as the verbs object they came from.
 */
#ifndef SIW_VERBS_H
#define SIW_VERBS_H

struct ibv_context;
struct ibv_device;
struct ibv_qp;
struct eng_ctx;
struct eng_device;
struct eng_qp;

/* The engine context behind an open device (NULL for NULL). */
struct eng_ctx *siw_verbs_ctx(struct ibv_context *context);

/* The engine QP behind a QP made by ibv_create_qp (NULL for NULL). */
struct eng_qp *siw_verbs_qp(struct ibv_qp *qp);

/* The ibv_qp for an engine QP, e.g. one named in an engine callback; NULL if it has none. */
struct ibv_qp *siw_verbs_qp_from_eng(struct eng_qp *qp);

/*
 * The engine device behind a listed device (NULL for NULL). It is the copy the context was
 * opened with; while no context of the device is open, a device rescan may refresh it.
 */
const struct eng_device *siw_verbs_device(struct ibv_device *device);

#endif
