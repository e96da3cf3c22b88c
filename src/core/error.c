// SPDX-License-Identifier: MIT
#include "error.h"

#include "iwarp.h"

const char *siw_term_name(unsigned layer, unsigned etype, unsigned ecode)
{
	switch (layer) {
	case TERM_LAYER_RDMAP:
		if (etype == TERM_ETYPE_RDMAP_CATASTROPHIC)
			return "RDMAP: local catastrophic error";
		if (etype == TERM_ETYPE_RDMAP_REMOTE_PROT) {
			switch (ecode) {
			case TERM_ECODE_RDMAP_INV_STAG: return "RDMAP remote protection: invalid STag";
			case TERM_ECODE_RDMAP_BASE_BOUNDS: return "RDMAP remote protection: base or bounds violation";
			case TERM_ECODE_RDMAP_ACCESS: return "RDMAP remote protection: access rights violation";
			case TERM_ECODE_RDMAP_STAG_NOT_ASSOC: return "RDMAP remote protection: STag not associated with this stream";
			case TERM_ECODE_RDMAP_TO_WRAP: return "RDMAP remote protection: TO wrap";
			case TERM_ECODE_RDMAP_CANNOT_INVALIDATE: return "RDMAP remote protection: STag cannot be invalidated";
			case TERM_ECODE_RDMAP_UNSPECIFIED: return "RDMAP remote protection: unspecified";
			}
			return NULL;
		}
		if (etype == TERM_ETYPE_RDMAP_REMOTE_OP) {
			switch (ecode) {
			case TERM_ECODE_RDMAP_INV_VERSION: return "RDMAP remote operation: invalid RDMAP version";
			case TERM_ECODE_RDMAP_UNEXPECTED_OP: return "RDMAP remote operation: unexpected opcode";
			case TERM_ECODE_RDMAP_CATASTROPHIC_STREAM: return "RDMAP remote operation: catastrophic error in this stream";
			case TERM_ECODE_RDMAP_CATASTROPHIC_GLOBAL: return "RDMAP remote operation: global catastrophic error";
			case TERM_ECODE_RDMAP_UNSPECIFIED: return "RDMAP remote operation: unspecified";
			}
		}
		return NULL;
	case TERM_LAYER_DDP:
		if (etype == TERM_ETYPE_DDP_CATASTROPHIC && ecode == TERM_ECODE_DDP_CATASTROPHIC)
			return "DDP: local catastrophic error";
		if (etype == TERM_ETYPE_DDP_TAGGED) {
			switch (ecode) {
			case TERM_ECODE_DDP_T_INV_STAG: return "DDP tagged: invalid STag";
			case TERM_ECODE_DDP_T_BASE_BOUNDS: return "DDP tagged: base or bounds violation";
			case TERM_ECODE_DDP_T_STAG_NOT_ASSOC: return "DDP tagged: STag not associated with this stream";
			case TERM_ECODE_DDP_T_TO_WRAP: return "DDP tagged: TO wrap";
			case TERM_ECODE_DDP_T_INV_VERSION: return "DDP tagged: invalid DDP version";
			}
		}
		if (etype == TERM_ETYPE_DDP_UNTAGGED) {
			switch (ecode) {
			case TERM_ECODE_DDP_U_INV_QN: return "DDP untagged: invalid QN";
			case TERM_ECODE_DDP_U_INV_MSN_NOBUF: return "DDP untagged: invalid MSN, no buffer available";
			case TERM_ECODE_DDP_U_INV_MSN_RANGE: return "DDP untagged: invalid MSN, out of range";
			case TERM_ECODE_DDP_U_INV_MO: return "DDP untagged: invalid MO";
			case TERM_ECODE_DDP_U_MSG_TOO_LONG: return "DDP untagged: message too long for the receive buffer";
			case TERM_ECODE_DDP_U_INV_VERSION: return "DDP untagged: invalid DDP version";
			}
		}
		return NULL;
	case TERM_LAYER_LLP:
		if (etype != TERM_ETYPE_LLP)
			return NULL;
		switch (ecode) {
		case TERM_ECODE_LLP_CONN_LOST: return "MPA: TCP connection closed or lost";
		case TERM_ECODE_LLP_CRC: return "MPA: CRC error";
		case TERM_ECODE_LLP_MARKER: return "MPA: marker and FPDU length mismatch";
		case TERM_ECODE_LLP_BAD_REQREP: return "MPA: invalid request or reply frame";
		case TERM_ECODE_LLP_LOCAL_CATASTROPHIC: return "MPA: local catastrophic error";
		case TERM_ECODE_LLP_INSUFFICIENT_IRD: return "MPA: insufficient IRD resources";
		case TERM_ECODE_LLP_NO_MATCHING_RTR: return "MPA: no matching RTR option";
		}
		return NULL;
	}
	return NULL;
}

const char *siw_strerror(int err)
{
	if (siw_err_is_term(err)) {
		const char *s = siw_term_name(siw_err_term_layer(err), siw_err_term_etype(err),
					      siw_err_term_ecode(err));
		return s ? s : "TERMINATE (unregistered error code)";
	}
	switch (err) {
	case SIW_OK: return "success";
	case SIW_ERR_INVAL: return "invalid argument";
	case SIW_ERR_NOBUFS: return "output buffer too small";
	case SIW_ERR_STATE: return "not allowed in this state";
	case SIW_ERR_AGAIN: return "more input needed";
	case SIW_ERR_REJECTED: return "connection rejected by the peer";
	case SIW_ERR_TIMEDOUT: return "peer did not answer in time";
	case SIW_ERR_FAULT: return "local memory fault";
	case SIW_ERR_CLOSED: return "TCP connection closed";
	case SIW_ERR_TERMINATED: return "peer sent TERMINATE";
	case SIW_ERR_QFULL: return "queue full";
	case SIW_ERR_NOTSUP: return "not supported";
	case SIW_ERR_MEM_STAG: return "invalid STag";
	case SIW_ERR_MEM_BOUNDS: return "outside the memory region";
	case SIW_ERR_MEM_ACCESS: return "access right missing";
	case SIW_ERR_MEM_PD: return "memory belongs to another protection domain";
	case SIW_ERR_MEM_WRAP: return "offset wraps";
	case SIW_ERR_MEM_INVALIDATED: return "STag invalidated";
	}
	return "unknown error";
}
