/* SPDX-License-Identifier: MIT */
/*
 * MPA connection setup (RFC 5044 §7, RFC 6581): request/reply/reject frames, the negotiation
 * of revision, CRC, markers, IRD/ORD and the peer-to-peer ready-to-receive (RTR) message.
 * Pure functions over byte buffers plus a small reader that asks for exactly the bytes the
 * frame still needs (so no byte of the FPDU stream is ever read by mistake).
 */
#ifndef SIW_MPA_H
#define SIW_MPA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iwarp.h"
#include "rx.h"

/* How we treat CRC (RFC 5044 §7.1: CRC is used if either side asks for it). */
enum siw_crc_mode {
	SIW_CRC_OFF = 0,     /* don't ask; use it if the peer asks */
	SIW_CRC_REQUEST = 1, /* ask (then CRC is on: either side asking is enough) */
	SIW_CRC_REQUIRE = 2, /* ask, and fail a connection that would run without it */
};

/* Timeouts kernel siw uses (responder waits for the request, initiator for the reply). */
#define SIW_MPA_REQ_TIMEOUT_MS 5000
#define SIW_MPA_REP_TIMEOUT_MS 10000

struct siw_mpa_cfg {
	uint8_t rev;		/* revision we send (initiator) / highest we accept (1 or 2) */
	enum siw_crc_mode crc;
	bool markers;		/* ask for markers in the stream we receive */
	bool accept_markers;	/* agree to put markers in the stream we send when asked */
	bool p2p;		/* initiator: request peer-to-peer mode (we send the RTR) */
	uint16_t rtr_types;	/* RTR types we offer (initiator) / accept (responder): 1 << SIW_RTR_* */
	bool relaxed_ird;	/* lower our IRD/ORD to fit the peer instead of failing */
	bool gso;		/* set kernel siw's private GSO bit (large FPDUs between peers that agree) */
	bool rfc7306;		/* offer (initiator) / accept (responder) RFC 7306 (PROTOCOL.md §6.5) */
};

/* A parsed request or reply. Pointers point into the buffer given to siw_mpa_parse(). */
struct siw_mpa_frame {
	bool is_reply;
	uint8_t flags;
	uint8_t rev;
	uint16_t pd_len;		/* private data length on the wire */
	const uint8_t *pd;
	bool v2;			/* H set and rev 2: IRD/ORD words lead the private data */
	uint16_t ird_word, ord_word;	/* raw words (v2) */
	const uint8_t *user_pd;		/* private data without the IRD/ORD words */
	uint16_t user_pd_len;
};

/* Outcome of a negotiation: how both directions run. */
struct siw_mpa_result {
	uint8_t rev;
	bool crc;
	bool markers_rx;		/* the peer puts markers into the stream we receive */
	bool markers_tx;		/* we put markers into the stream we send */
	bool gso;			/* both sides set the siw GSO bit */
	bool rfc7306;			/* both sides implement RFC 7306 (immediate data, atomics) */
	uint16_t ird;			/* inbound READs we accept at once */
	uint16_t ord;			/* outbound READs we may have outstanding */
	bool p2p;
	enum siw_rtr rtr;		/* RTR message that opens the stream (initiator sends it) */
	const uint8_t *user_pd;		/* peer's private data (without IRD/ORD words) */
	uint16_t user_pd_len;
};

/*
 * Parses a frame from buf[0..len). Returns the frame's total length when it is complete (f is
 * filled), SIW_ERR_AGAIN if more bytes are needed, or SIW_ERR_TERM(LLP, 0, BAD_REQREP) for a
 * bad key, unsupported revision (> 2 or 0 for a request... see mpa.c), or private data longer
 * than MPA_MAX_PRIVDATA, or inconsistent v2 words.
 */
int siw_mpa_parse(const uint8_t *buf, size_t len, bool want_reply, struct siw_mpa_frame *f);

/*
 * Builds a request. ird/ord are what the local side wants (RFC 6581 words, rev 2 only).
 * Returns the frame length or SIW_ERR_INVAL (private data too long) / SIW_ERR_NOBUFS.
 */
int siw_mpa_build_req(const struct siw_mpa_cfg *cfg, uint16_t ird, uint16_t ord, const void *pd,
		      size_t pd_len, uint8_t *out, size_t outsz);

/*
 * Responder: decides how to run given the peer's request and our limits. Returns 0 (res
 * filled) or the reason to reject: SIW_ERR_TERM(LLP, 0, ...) for an unacceptable request
 * (markers refused, CRC mismatch in strict modes, no usable RTR, insufficient IRD when not
 * relaxed). local_ird/ord: what the local application offers.
 */
int siw_mpa_respond(const struct siw_mpa_cfg *cfg, const struct siw_mpa_frame *req,
		    uint16_t local_ird, uint16_t local_ord, struct siw_mpa_result *res);

/* Builds the reply (accept) for res, or a reject (reject = true) with private data. */
int siw_mpa_build_reply(const struct siw_mpa_cfg *cfg, const struct siw_mpa_result *res,
			bool reject, const void *pd, size_t pd_len, uint8_t *out, size_t outsz);

/*
 * Initiator: checks the reply against what we requested. Returns 0 (res filled),
 * SIW_ERR_REJECTED (R bit: res->user_pd holds the reject's private data), or the
 * SIW_ERR_TERM(LLP, 0, ...) error to send (insufficient IRD, no matching RTR, bad reply).
 */
int siw_mpa_check_reply(const struct siw_mpa_cfg *cfg, uint16_t our_ird, uint16_t our_ord,
			const struct siw_mpa_frame *rep, struct siw_mpa_result *res);

/* Reads exactly one frame from a byte stream, never past its end. */
struct siw_mpa_reader {
	uint8_t buf[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	size_t have;
	bool want_reply;
};

void siw_mpa_reader_init(struct siw_mpa_reader *r, bool want_reply);

/* How many more bytes the frame needs (0 when complete); SIW_ERR_TERM(...) if it is bad. */
int siw_mpa_reader_want(const struct siw_mpa_reader *r);

/* Takes up to siw_mpa_reader_want() bytes; returns the number taken or an error. */
int siw_mpa_reader_feed(struct siw_mpa_reader *r, const uint8_t *in, size_t len);

#endif
