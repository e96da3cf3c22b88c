/* SPDX-License-Identifier: MIT */
/*
 * The core's error space: negative ints. An error detected on received data carries the
 * TERMINATE triple (layer, error type, error code) that must go to the peer, so the code that
 * finds a fault already names the wire result (quicly/ngtcp2 style). Other errors are local.
 */
#ifndef SIW_ERROR_H
#define SIW_ERROR_H

#include <stdbool.h>
#include <stdint.h>

enum siw_err {
	SIW_OK = 0,
	SIW_ERR_INVAL = -201,	   /* invalid argument from the caller */
	SIW_ERR_NOBUFS = -202,	   /* caller's output buffer is too small */
	SIW_ERR_STATE = -203,	   /* call not allowed in the current state */
	SIW_ERR_AGAIN = -204,	   /* more input needed */
	SIW_ERR_REJECTED = -205,   /* MPA: the peer rejected the connection */
	SIW_ERR_TIMEDOUT = -206,   /* MPA: the peer did not answer in time */
	SIW_ERR_FAULT = -207,	   /* local memory fault while placing or sending */
	SIW_ERR_CLOSED = -208,	   /* the LLP (TCP) connection closed */
	SIW_ERR_TERMINATED = -209, /* the peer sent a TERMINATE */
	SIW_ERR_QFULL = -210,	   /* a bounded queue (ORQ, IRQ, batch) is full */
	SIW_ERR_NOTSUP = -211,	   /* not supported by this peer or build */
	/* Memory access results (siw_mem_check), mapped to wire codes by siw_mem_err_to_term(). */
	SIW_ERR_MEM_STAG = -220,   /* no such STag, or its key does not match */
	SIW_ERR_MEM_BOUNDS = -221, /* outside the region */
	SIW_ERR_MEM_ACCESS = -222, /* access right missing */
	SIW_ERR_MEM_PD = -223,	   /* region belongs to another protection domain / QP */
	SIW_ERR_MEM_WRAP = -224,   /* offset + length wraps */
	SIW_ERR_MEM_INVALIDATED = -225, /* STag was invalidated */
};

/* Errors that carry a TERMINATE triple: -(SIW_ERR_TERM_BASE | layer<<12 | etype<<8 | ecode). */
#define SIW_ERR_TERM_BASE 0x100000
#define SIW_ERR_TERM(layer, etype, ecode)                                                          \
	(-(int)(SIW_ERR_TERM_BASE | ((unsigned)(layer) & 0xF) << 12 |                              \
		((unsigned)(etype) & 0xF) << 8 | ((unsigned)(ecode) & 0xFF)))

static inline bool siw_err_is_term(int err)
{
	return err < 0 && ((unsigned)-err & ~0xFFFFu) == SIW_ERR_TERM_BASE;
}

static inline unsigned siw_err_term_layer(int err)
{
	return ((unsigned)-err >> 12) & 0xF;
}

static inline unsigned siw_err_term_etype(int err)
{
	return ((unsigned)-err >> 8) & 0xF;
}

static inline unsigned siw_err_term_ecode(int err)
{
	return (unsigned)-err & 0xFF;
}

/* A short name for any SIW_ERR_* value, including TERMINATE triples. Never NULL. */
const char *siw_strerror(int err);

/* Text for a TERMINATE triple, e.g. "DDP tagged: invalid STag". NULL if not a valid triple. */
const char *siw_term_name(unsigned layer, unsigned etype, unsigned ecode);

#endif
