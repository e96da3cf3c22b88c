// SPDX-License-Identifier: MIT
#include "mem.h"

#include "error.h"
#include "iwarp.h"

int siw_mem_check(const struct siw_mem_ref *m, uint32_t pd, uint32_t qpn, uint32_t access,
		  uint64_t to, uint64_t len, uint8_t **out)
{
	if (m->pd != pd || (m->qpn && m->qpn != qpn))
		return SIW_ERR_MEM_PD;
	if ((m->access & access) != access)
		return SIW_ERR_MEM_ACCESS;
	if (to + len < to)
		return SIW_ERR_MEM_WRAP;
	/* Written so that no sum can overflow: to >= iova, and to - iova + len <= m->len. */
	if (to < m->iova || to - m->iova > m->len || len > m->len - (to - m->iova))
		return SIW_ERR_MEM_BOUNDS;
	if (out)
		*out = m->addr + (to - m->iova);
	return 0;
}

int siw_mem_err_to_term(int mem_err, bool ddp_tagged)
{
	unsigned layer = ddp_tagged ? TERM_LAYER_DDP : TERM_LAYER_RDMAP;
	unsigned etype = ddp_tagged ? TERM_ETYPE_DDP_TAGGED : TERM_ETYPE_RDMAP_REMOTE_PROT;

	switch (mem_err) {
	case SIW_ERR_MEM_STAG:
	case SIW_ERR_MEM_INVALIDATED:
		return SIW_ERR_TERM(layer, etype,
				    ddp_tagged ? TERM_ECODE_DDP_T_INV_STAG : TERM_ECODE_RDMAP_INV_STAG);
	case SIW_ERR_MEM_BOUNDS:
		return SIW_ERR_TERM(layer, etype,
				    ddp_tagged ? TERM_ECODE_DDP_T_BASE_BOUNDS
					       : TERM_ECODE_RDMAP_BASE_BOUNDS);
	case SIW_ERR_MEM_PD:
		return SIW_ERR_TERM(layer, etype,
				    ddp_tagged ? TERM_ECODE_DDP_T_STAG_NOT_ASSOC
					       : TERM_ECODE_RDMAP_STAG_NOT_ASSOC);
	case SIW_ERR_MEM_WRAP:
		return SIW_ERR_TERM(layer, etype,
				    ddp_tagged ? TERM_ECODE_DDP_T_TO_WRAP : TERM_ECODE_RDMAP_TO_WRAP);
	case SIW_ERR_MEM_ACCESS:
		/*
		 * DDP has no "access rights" code: a tagged placement without the right is an
		 * RDMAP remote protection error (RFC 5040 §7.2). Kernel siw reports a WRITE
		 * without the right as DDP "invalid STag" instead; the RFC's code says more.
		 */
		return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_REMOTE_PROT,
				    TERM_ECODE_RDMAP_ACCESS);
	default:
		return SIW_ERR_TERM(TERM_LAYER_RDMAP, TERM_ETYPE_RDMAP_CATASTROPHIC,
				    TERM_ECODE_RDMAP_UNSPECIFIED);
	}
}
