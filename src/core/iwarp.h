/* SPDX-License-Identifier: MIT */
/*
 * iWARP wire formats: MPA (RFC 5044, RFC 6581), DDP (RFC 5041), RDMAP (RFC 5040, RFC 7306).
 *
 * This header holds only protocol constants, byte offsets and tiny accessors; no state. All
 * multi-byte fields are big-endian on the wire. Frames are handled as byte arrays through the
 * get/put helpers below (never by casting a buffer to a packed struct): input comes from the
 * network at any alignment, and the fuzzers must not trip over misaligned loads.
 *
 * Offsets of FPDU fields are given from the start of the FPDU, i.e. from the 2-byte MPA
 * ULPDU_Length field, so the header of one FPDU is one contiguous array `h[]`.
 */
#ifndef SIW_IWARP_H
#define SIW_IWARP_H

#include <stdint.h>
#include <string.h>

/* ---- byte access --------------------------------------------------------------------------- */

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* ---- MPA request / reply frames (RFC 5044 §7.1, RFC 6581 §5) ------------------------------- */

#define MPA_KEY_LEN	16
#define MPA_KEY_REQ	"MPA ID Req Frame"
#define MPA_KEY_REP	"MPA ID Rep Frame"

/* Frame: key[16] | flags u8 | rev u8 | pd_len be16 | private data[pd_len] */
#define MPA_RR_OFF_FLAGS  16
#define MPA_RR_OFF_REV	  17
#define MPA_RR_OFF_PDLEN  18
#define MPA_RR_HDR_LEN	  20

#define MPA_FLAG_MARKERS  0x80 /* M: the sender wants markers in the stream it receives */
#define MPA_FLAG_CRC	  0x40 /* C: CRC32c in every FPDU (on if either side asks) */
#define MPA_FLAG_REJECT	  0x20 /* R: reply only, connection rejected */
#define MPA_FLAG_ENHANCED 0x10 /* H: RFC 6581 enhanced setup, IRD/ORD words lead private data */
/*
 * Kernel siw's private "GSO_EXP" bit, a reserved bit of RFC 5044: set by siw with try_gso=1;
 * when both sides set it, siw sends FPDUs larger than one TCP segment. softiwarp never sets
 * it unless told to, but tolerates it in a peer's frame.
 */
#define MPA_FLAG_SIW_GSO  0x08
/*
 * softiwarp's RFC 7306 handshake (docs/PROTOCOL.md §6.5), two more reserved bits of RFC 5044:
 * OFFER in a request says "I implement RFC 7306"; ACCEPT in a reply says "so do I, and I saw
 * your OFFER". A reply must carry ACCEPT and not OFFER: kernel siw builds its reply from the
 * request's header and so echoes every reserved bit of the request back.
 */
#define MPA_FLAG_RFC7306_OFFER	0x04
#define MPA_FLAG_RFC7306_ACCEPT 0x02
#define MPA_FLAGS_RSVD	  0x0F

#define MPA_REV_1	  1
#define MPA_REV_2	  2

/* RFC 5044 §7.1: private data is at most 512 bytes (both request and reply). */
#define MPA_MAX_PRIVDATA  512
/* RFC 6581 §5: with H set, the first 4 bytes of private data are the IRD and ORD words. */
#define MPA_V2_IRD_ORD_LEN 4

/* IRD word (first): */
#define MPA_V2_PEER_TO_PEER 0x8000 /* "A": the initiator will send an RTR message */
#define MPA_V2_RTR_SEND	    0x4000 /* "B": zero-length SEND can serve as RTR */
/* ORD word (second): */
#define MPA_V2_RTR_WRITE    0x8000 /* "C": zero-length RDMA WRITE can serve as RTR */
#define MPA_V2_RTR_READ	    0x4000 /* "D": zero-length RDMA READ can serve as RTR */
#define MPA_V2_IRD_ORD_MASK 0x3FFF
/* Intel hardware sends 0x3FFF for "no limit given". */
#define MPA_V2_IRD_ORD_NONE 0x3FFF

/* ---- FPDU framing (RFC 5044 §4) ----------------------------------------------------------- */

#define MPA_HDR_LEN	    2 /* ULPDU_Length */
#define MPA_CRC_LEN	    4
#define MPA_MARKER_LEN	    4
#define MPA_MARKER_PERIOD   512
/* The ULPDU length field is 16 bits. */
#define MPA_MAX_ULPDU	    0xFFFF

/* Pad bytes after an ULPDU of length ulpdu_len: (2 + ulpdu + pad) is a multiple of 4. */
static inline unsigned mpa_pad(unsigned ulpdu_len)
{
	return (4u - ((ulpdu_len + MPA_HDR_LEN) & 3u)) & 3u;
}

/* ---- DDP / RDMAP control (RFC 5041 §4, RFC 5040 §4.2) ------------------------------------- */

/* Offsets from the start of the FPDU (the MPA length field). */
#define DDP_OFF_CTRL	  2 /* byte: T | L | rsvd(4) | DV(2) */
#define RDMAP_OFF_CTRL	  3 /* byte: RV(2) | rsvd(2) | opcode(4) */

#define DDP_FLAG_TAGGED	  0x80
#define DDP_FLAG_LAST	  0x40
#define DDP_CTRL_RSVD	  0x3C
#define DDP_VERSION_MASK  0x03
#define DDP_VERSION	  1

#define RDMAP_VERSION_SHIFT 6
#define RDMAP_CTRL_RSVD	    0x30
#define RDMAP_OPCODE_MASK   0x0F
#define RDMAP_VERSION	    1

/* Tagged buffer model header: STag, tagged offset. */
#define DDP_OFF_STAG	  4
#define DDP_OFF_TO	  8
#define DDP_TAGGED_HDR_LEN 16 /* incl. the 2-byte MPA length */

/* Untagged buffer model header: RsvdULP (RDMAP: STag to invalidate), QN, MSN, MO. */
#define DDP_OFF_RSVDULP	  4
#define DDP_OFF_QN	  8
#define DDP_OFF_MSN	  12
#define DDP_OFF_MO	  16
#define DDP_UNTAGGED_HDR_LEN 20

/* Untagged queue numbers used by RDMAP (RFC 5040 §5.1, RFC 7306 §7). */
#define RDMAP_QN_SEND	  0 /* Send, Send with Invalidate/SE, Immediate Data */
#define RDMAP_QN_READ_REQ 1 /* RDMA Read Request, Atomic Request */
#define RDMAP_QN_TERM	  2 /* Terminate */
#define RDMAP_QN_ATOMIC_RESP 3 /* Atomic Response (RFC 7306) */
#define RDMAP_NUM_QN	  4

enum rdmap_opcode {
	RDMAP_WRITE = 0x0,
	RDMAP_READ_REQ = 0x1,
	RDMAP_READ_RESP = 0x2,
	RDMAP_SEND = 0x3,
	RDMAP_SEND_INV = 0x4,
	RDMAP_SEND_SE = 0x5,
	RDMAP_SEND_SE_INV = 0x6,
	RDMAP_TERMINATE = 0x7,
	/* RFC 7306 */
	RDMAP_IMM_DATA = 0x8,
	RDMAP_IMM_DATA_SE = 0x9,
	RDMAP_ATOMIC_REQ = 0xA,
	RDMAP_ATOMIC_RESP = 0xB,
	RDMAP_NUM_OPCODES = 0xC,
};

/* RDMA Read Request header after the untagged DDP header (RFC 5040 §4.4). */
#define RREQ_OFF_SINK_STAG 20
#define RREQ_OFF_SINK_TO   24
#define RREQ_OFF_SIZE	   32
#define RREQ_OFF_SRC_STAG  36
#define RREQ_OFF_SRC_TO	   40
#define RREQ_HDR_LEN	   48

/*
 * Terminate header after the untagged DDP header (RFC 5040 §4.8): a 32-bit Terminate Control
 * word: Layer(4) | EType(4) | Error Code(8) | M | D | R | reserved(13); then, as the bits say,
 * the DDP segment length and the copy of the offending DDP header (and RDMAP header).
 */
#define TERM_OFF_CTRL	  20
#define TERM_HDR_LEN	  24
#define TERM_CTRL_M	  0x00008000u /* DDP Segment Length valid */
#define TERM_CTRL_D	  0x00004000u /* DDP header included */
#define TERM_CTRL_R	  0x00002000u /* RDMAP header included */
#define TERM_CTRL_RSVD	  0x00001FFFu

/* RFC 7306 Immediate Data (QN 0): 8 bytes of data after the untagged DDP header. */
#define IMM_OFF_DATA	   20
#define IMM_HDR_LEN	   28
/*
 * softiwarp's use of the 8 bytes (PROTOCOL.md §6.5): bytes 0-3 carry verbs' 32-bit imm_data as
 * given (network order); byte 4 bit 0 set means the value belongs to the SEND that follows
 * (IBV_WR_SEND_WITH_IMM), clear that it stands alone, taking a receive of its own (after an
 * RDMA WRITE: IBV_WR_RDMA_WRITE_WITH_IMM). Bytes 5-7 are sent as 0 and ignored.
 */
#define IMM_SIW_FLAGS	   4
#define IMM_SIW_FOR_SEND   0x01

/* RFC 7306 Atomic Request (QN 1, shares MSNs with READ REQUESTs). */
#define AREQ_OFF_AOPCODE   20 /* 32 bits: reserved(28) | AOpCode(4) */
#define AREQ_OFF_REQ_ID	   24
#define AREQ_OFF_STAG	   28
#define AREQ_OFF_TO	   32
#define AREQ_OFF_ADD_SWAP  40 /* Add Data (FetchAdd) / Swap Data (CmpSwap) */
#define AREQ_OFF_ADD_SWAP_MASK 48
#define AREQ_OFF_CMP	   56
#define AREQ_OFF_CMP_MASK  64
#define AREQ_HDR_LEN	   72
#define AOP_FETCH_ADD	   0x0
#define AOP_CMP_SWAP	   0x2
#define AOP_MASK	   0xF

/* RFC 7306 Atomic Response (QN 3, own MSN sequence). */
#define ARESP_OFF_REQ_ID   20
#define ARESP_OFF_ORIG	   24
#define ARESP_HDR_LEN	   32

/* ---- header length per opcode -------------------------------------------------------------- */

/* Largest FPDU header we ever parse or build: a Terminate with copied DDP + RDMAP headers. */
#define SIW_MAX_HDR_LEN 96

/* ---- error layers, types and codes (RFC 5040 §7, RFC 6580, RFC 6581, RFC 7306) ------------ */

enum term_layer {
	TERM_LAYER_RDMAP = 0,
	TERM_LAYER_DDP = 1,
	TERM_LAYER_LLP = 2, /* MPA */
};

/* RDMAP error types. */
enum term_rdmap_etype {
	TERM_ETYPE_RDMAP_CATASTROPHIC = 0,
	TERM_ETYPE_RDMAP_REMOTE_PROT = 1,
	TERM_ETYPE_RDMAP_REMOTE_OP = 2,
};

/* RDMAP error codes. */
enum term_rdmap_ecode {
	TERM_ECODE_RDMAP_INV_STAG = 0x00,
	TERM_ECODE_RDMAP_BASE_BOUNDS = 0x01,
	TERM_ECODE_RDMAP_ACCESS = 0x02,
	TERM_ECODE_RDMAP_STAG_NOT_ASSOC = 0x03,
	TERM_ECODE_RDMAP_TO_WRAP = 0x04,
	TERM_ECODE_RDMAP_INV_VERSION = 0x05,
	TERM_ECODE_RDMAP_UNEXPECTED_OP = 0x06,
	TERM_ECODE_RDMAP_CATASTROPHIC_STREAM = 0x07,
	TERM_ECODE_RDMAP_CATASTROPHIC_GLOBAL = 0x08,
	TERM_ECODE_RDMAP_CANNOT_INVALIDATE = 0x09,
	TERM_ECODE_RDMAP_UNSPECIFIED = 0xFF,
};

/* DDP error types. */
enum term_ddp_etype {
	TERM_ETYPE_DDP_CATASTROPHIC = 0,
	TERM_ETYPE_DDP_TAGGED = 1,
	TERM_ETYPE_DDP_UNTAGGED = 2,
};

enum term_ddp_tagged_ecode {
	TERM_ECODE_DDP_T_INV_STAG = 0x00,
	TERM_ECODE_DDP_T_BASE_BOUNDS = 0x01,
	TERM_ECODE_DDP_T_STAG_NOT_ASSOC = 0x02,
	TERM_ECODE_DDP_T_TO_WRAP = 0x03,
	TERM_ECODE_DDP_T_INV_VERSION = 0x04,
};

enum term_ddp_untagged_ecode {
	TERM_ECODE_DDP_U_INV_QN = 0x01,
	TERM_ECODE_DDP_U_INV_MSN_NOBUF = 0x02,
	TERM_ECODE_DDP_U_INV_MSN_RANGE = 0x03,
	TERM_ECODE_DDP_U_INV_MO = 0x04,
	TERM_ECODE_DDP_U_MSG_TOO_LONG = 0x05,
	TERM_ECODE_DDP_U_INV_VERSION = 0x06,
};

/* DDP catastrophic: code 0 "local catastrophic". */
#define TERM_ECODE_DDP_CATASTROPHIC 0x00

/* LLP (MPA) error type 0, codes (RFC 5044 §8, RFC 6581 §8). */
enum term_llp_ecode {
	TERM_ECODE_LLP_CONN_LOST = 0x01, /* TCP connection closed / lost */
	TERM_ECODE_LLP_CRC = 0x02,
	TERM_ECODE_LLP_MARKER = 0x03, /* FPDU start / marker mismatch */
	TERM_ECODE_LLP_BAD_REQREP = 0x04,
	TERM_ECODE_LLP_LOCAL_CATASTROPHIC = 0x05,
	TERM_ECODE_LLP_INSUFFICIENT_IRD = 0x06,
	TERM_ECODE_LLP_NO_MATCHING_RTR = 0x07,
};
#define TERM_ETYPE_LLP 0

#endif
