/* SPDX-License-Identifier: MIT */
/*
 * TERMINATE messages (RFC 5040 §4.8, §7): building the body we send, decoding a peer's.
 *
 * Kernel siw (through at least 6.12) lays out the Terminate Control word with C bitfields on a
 * little-endian machine, which swaps the Layer and EType nibbles relative to RFC 5040. We always
 * send the RFC layout and decode tolerantly: when the RFC reading is not a registered
 * combination but the swapped one is, both readings are reported.
 */
#ifndef SIW_TERM_H
#define SIW_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iwarp.h"

struct siw_term_info {
	uint8_t layer;
	uint8_t etype;
	uint8_t ecode;
	bool m, d, r;		/* header-copy bits of the control word */
	bool rfc_valid;		/* (layer, etype, ecode) is registered (RFC 6580) as read per RFC */
	bool swapped_valid;	/* ... as read with the two nibbles swapped (kernel siw) */
	uint8_t swapped_layer;
	uint8_t swapped_etype;
	uint16_t ddp_seg_len;	/* valid if m */
	unsigned hdr_len;	/* bytes of the copied header(s) in hdr */
	uint8_t hdr[SIW_MAX_HDR_LEN];
};

/* Is this a registered (layer, etype, ecode) combination? */
bool siw_term_valid(unsigned layer, unsigned etype, unsigned ecode);

/* The Terminate Control word for a triple and header-copy bits (RFC layout). */
uint32_t siw_term_ctrl(unsigned layer, unsigned etype, unsigned ecode, bool m, bool d, bool r);

/*
 * Decodes a TERMINATE message: ctrl is the 32-bit control word, body/len the bytes after it
 * (DDP segment length and copied headers, as the M/D/R bits say). Returns 0 or
 * SIW_ERR_TERM(...) when the body is inconsistent with the bits (a malformed TERMINATE).
 */
int siw_term_decode(uint32_t ctrl, const uint8_t *body, size_t len, struct siw_term_info *t);

/*
 * Builds the body of the TERMINATE to send for error `err` (a SIW_ERR_TERM triple, or any other
 * error, which becomes a local catastrophic error of the layer that found it) and the offending
 * FPDU header `hdr` (from its MPA length field; hdr_len 0 if unknown). Which header parts are
 * copied follows RFC 5040 §7 (see term.c). Writes the body to out and the control word to
 * *ctrl; returns the body length, or SIW_ERR_NOBUFS.
 */
int siw_term_build(int err, const uint8_t *hdr, unsigned hdr_len, bool hdr_has_rdmap, uint8_t *out,
		   size_t outsz, uint32_t *ctrl);

/* "layer/etype/ecode" in words, e.g. for logs; writes at most sz bytes, returns out. */
char *siw_term_describe(const struct siw_term_info *t, char *out, size_t sz);

#endif
