/* SPDX-License-Identifier: MIT */
/*
 * Memory regions as the protocol core sees them: an STag resolves (through the engine's table,
 * see siw_rx_ops.mem_lookup) to a siw_mem_ref, and every placement or source range is checked
 * here before a single byte moves. Nothing else in the core touches local memory by address.
 */
#ifndef SIW_MEM_H
#define SIW_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Access rights; the values equal IBV_ACCESS_* so the verbs layer passes them through. */
#define SIW_MEM_LOCAL_WRITE   0x01
#define SIW_MEM_REMOTE_WRITE  0x02
#define SIW_MEM_REMOTE_READ   0x04
#define SIW_MEM_REMOTE_ATOMIC 0x08
#define SIW_MEM_MW_BIND	      0x10
/* Not a right of the region: the caller asks only that the range be valid (local read). */
#define SIW_MEM_LOCAL_READ    0

/* An STag is a 24-bit index and an 8-bit key (as in kernel siw and the verbs rkey/lkey). */
#define SIW_STAG_INDEX(stag) ((stag) >> 8)
#define SIW_STAG_KEY(stag)   ((stag)&0xFFu)

struct siw_mem_ref {
	uint8_t *addr;	 /* local address of the byte at tagged offset `iova` */
	uint64_t iova;	 /* first valid tagged offset (the VA given at registration) */
	uint64_t len;	 /* length in bytes */
	uint32_t access; /* SIW_MEM_* */
	uint32_t pd;	 /* protection domain id */
	uint32_t qpn;	 /* type-2 memory window: the only QP allowed; 0: any QP of the PD */
};

/*
 * Checks that [to, to + len) lies in the region, that `access` is granted (all bits), and that
 * the region belongs to PD `pd` (and to QP `qpn` if it is bound to one). On success stores the
 * local address of `to` in *out (when out is not NULL; also for len == 0).
 * Returns 0, SIW_ERR_MEM_WRAP, SIW_ERR_MEM_BOUNDS, SIW_ERR_MEM_ACCESS or SIW_ERR_MEM_PD.
 */
int siw_mem_check(const struct siw_mem_ref *m, uint32_t pd, uint32_t qpn, uint32_t access,
		  uint64_t to, uint64_t len, uint8_t **out);

/*
 * Maps a SIW_ERR_MEM_* result to the TERMINATE error (SIW_ERR_TERM) the peer must receive:
 * tagged placement (RDMA WRITE, READ RESPONSE) reports at the DDP tagged layer, a source or
 * target named by an RDMAP header (READ REQUEST source, atomics) at the RDMAP remote-protection
 * layer (RFC 5040 §7.2; kernel siw makes the same split).
 */
int siw_mem_err_to_term(int mem_err, bool ddp_tagged);

#endif
