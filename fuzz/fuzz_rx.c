// SPDX-License-Identifier: MIT
/*
 * fuzz_rx: arbitrary bytes as the received TCP stream of one connection, through siw_rx against
 * a live engine: a region table with guard bytes around every region (different rights, another
 * PD, type-2-window-like QP bindings, a region at the top of the TO space, an empty one), posted
 * receives of several SGE layouts, and READs outstanding in the ORQ. Any protocol error is a
 * valid outcome; what must never happen is a write outside a region, a broken "first error
 * wins" rule, a dead stream that comes back, or counters that do not add up.
 *
 * Input (see fuzz/README.md and fuzz/make-corpus.py):
 *	byte 0	flags: 0x01 CRC, 0x02 markers, 0x04 RFC 7306, 0x08 fix up CRCs and marker
 *		pointers before feeding, 0x10 direct path, 0x60 RTR type (SIW_RTR_*), 0x80 the
 *		engine fails: place() into region 0x95a or the second receive faults,
 *		read_req() finds the IRQ full
 *	byte 1	split: 0 all at once, 1 byte by byte, else the seed of random chunk sizes
 *	byte 2	largest ULPDU accepted: 0 = 65535, else max_ulpdu_tab[b % N]
 *	byte 3	bits 0-3: number of ORQ entries that follow; bits 4-5: receives posted (32, 0,
 *		2, 5); bit 6: the second receive has an SGE of another PD; bit 7: the first
 *		receive has no SGE at all
 *	6 bytes per ORQ entry: sink region (index into the table; 0x80 set: an STag nobody has;
 *		0x40 set: an RFC 7306 Atomic Request whose Request Identifier is the length
 *		field), offset in it (be16), length (be24)
 *	rest	the stream
 */
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "error.h"
#include "helper_peer.h"
#include "term.h"

#define PD    7
#define QPN   3
#define GUARD 64
#define GBYTE 0xA5

#define F_CRC     0x01
#define F_MARKERS 0x02
#define F_7306    0x04
#define F_FIXUP   0x08
#define F_DIRECT  0x10
#define F_RTR(b)  (((b) >> 5) & 3)
#define F_FAIL    0x80

#define RW (SIW_MEM_REMOTE_WRITE)
#define RR (SIW_MEM_REMOTE_READ)
#define LW (SIW_MEM_LOCAL_WRITE)
#define RA (SIW_MEM_REMOTE_ATOMIC)

struct region_def {
	uint64_t iova;
	uint32_t len;
	uint32_t access;
	uint32_t pd, qpn;
};

/* STags are 0x15a, 0x25a, ... in this order (helper_peer numbering). */
static const struct region_def defs[] = {
    {0x10000, 65536 + 4096, RW | RR | LW | RA, PD, 0}, /* 0x15a: general target, READ sink */
    {0x40000, 4096, RR, PD, 0},                        /* 0x25a: read only */
    {0x50000, 1024, RW | RR, PD + 1, 0},               /* 0x35a: another PD */
    {0x60000, 1024, RW | RR | RA, PD, QPN},            /* 0x45a: window bound to this QP */
    {0x70000, 1024, RW | RR | RA, PD, QPN + 1},        /* 0x55a: window bound to another QP */
    {0x80000, 16384, LW, PD, 0},                       /* 0x65a: receive buffers */
    {UINT64_MAX - 63, 64, RW | RR | RA, PD, 0},        /* 0x75a: last 64 bytes of the TO space */
    {0x90000, 0, RW | RR, PD, 0},                      /* 0x85a: empty */
    {0xA0000, 256, RW | LW, PD, 0},                    /* 0x95a: one more, to invalidate */
};
#define NREG (sizeof(defs) / sizeof(defs[0]))

static uint8_t *mem[NREG];

static const uint32_t max_ulpdu_tab[] = {0, 46, 64, 100, 509, 1442, 4096, 9000, 16384, 31850};

static struct tp_peer peer;
static struct siw_rx_ops ops;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static void init_once(void)
{
	if (mem[0])
		return;
	for (unsigned i = 0; i < NREG; i++) {
		mem[i] = malloc(GUARD + defs[i].len + GUARD);
		memset(mem[i], 0, GUARD + defs[i].len + GUARD);
	}
}

static bool inside(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (unsigned i = 0; i < NREG; i++) {
		const uint8_t *lo = mem[i] + GUARD;

		if (b >= lo && len <= defs[i].len && (size_t)(b - lo) <= defs[i].len - len)
			return true;
	}
	return false;
}

static bool engine_fails; /* F_FAIL */

/*
 * helper_peer's place(), but only after checking the destination is inside a region. With
 * F_FAIL, placing into region 0x95a or the upper half of the receive region (the second posted
 * receive) fails, as a copy to unmapped user memory would.
 */
static int checked_place(void *user, void *dst, const void *src, size_t len)
{
	const uint8_t *d = dst;

	CHECK(len == 0 || inside(dst, len));
	if (engine_fails && ((d >= mem[8] + GUARD && d < mem[8] + GUARD + defs[8].len) ||
			     (d >= mem[5] + GUARD + 8192 && d < mem[5] + GUARD + defs[5].len)))
		return SIW_ERR_FAULT;
	return tp_ops.place(user, dst, src, len);
}

static void guards_set(void)
{
	for (unsigned i = 0; i < NREG; i++) {
		memset(mem[i], GBYTE, GUARD);
		memset(mem[i] + GUARD + defs[i].len, GBYTE, GUARD);
	}
}

static void guards_check(void)
{
	for (unsigned i = 0; i < NREG; i++)
		for (unsigned k = 0; k < GUARD; k++)
			CHECK(mem[i][k] == GBYTE && mem[i][GUARD + defs[i].len + k] == GBYTE);
}

static void post_receives(uint8_t sel)
{
	static const unsigned count[] = {32, 0, 2, 5};
	const uint32_t rcv = 0x65a, base = 0x80000;

	for (unsigned i = 0; i < count[(sel >> 4) & 3]; i++) {
		struct siw_sge s[4];
		unsigned n;

		switch (i % 4) {
		case 0:
			s[0] = (struct siw_sge){base, 8192, rcv};
			n = 1;
			break;
		case 1: /* a zero-length SGE in the middle */
			s[0] = (struct siw_sge){base + 8192, 100, rcv};
			s[1] = (struct siw_sge){base + 9000, 0, rcv};
			s[2] = (struct siw_sge){base + 8292, 8092, rcv};
			n = 3;
			break;
		case 2: /* pieces out of address order */
			s[0] = (struct siw_sge){base + 6144, 2048, rcv};
			s[1] = (struct siw_sge){base, 2048, rcv};
			s[2] = (struct siw_sge){base + 4096, 2048, rcv};
			s[3] = (struct siw_sge){base + 2048, 2048, rcv};
			n = 4;
			break;
		default: /* two regions */
			s[0] = (struct siw_sge){base, 4096, rcv};
			s[1] = (struct siw_sge){0xA0000, 256, 0x95a};
			n = 2;
			break;
		}
		if (i == 29 || (i == 1 && (sel & 0x40))) /* another PD's SGE: a local fault */
			s[0].lkey = 0x35a;
		if (i == 30 || (i == 0 && (sel & 0x80))) /* nothing at all */
			n = 0;
		tp_post_recv(&peer, s, n);
	}
}

/*
 * Rewrites every FPDU's CRC and every marker's FPDU pointer as a correct sender would have, so
 * the fuzzer gets past them. Follows the receiver's rules (rx.c): a marker every 512 stream
 * bytes belongs to the FPDU it falls in, a marker where an FPDU starts belongs to that FPDU (its
 * pointer is 0), markers up to the last CRC byte are covered by the CRC.
 */
static void fixup(uint8_t *s, size_t len, bool crc, bool markers)
{
	size_t pos = 0;

	while (pos < len) {
		size_t start = pos, need = MPA_HDR_LEN, have = 0, crc_at[MPA_CRC_LEN];
		unsigned ncrc = 0;
		uint32_t c = SIW_CRC32C_INIT;
		uint8_t lb[2] = {0, 0};

		while (pos < len && ncrc < MPA_CRC_LEN) {
			size_t k;

			if (markers && pos % MPA_MARKER_PERIOD == 0) {
				if (len - pos < MPA_MARKER_LEN)
					return;
				put_be16(s + pos + 2, (uint16_t)(pos - start));
				c = siw_crc32c(c, s + pos, MPA_MARKER_LEN);
				pos += MPA_MARKER_LEN;
				continue;
			}
			if (have < need) {
				k = need - have;
				if (have < MPA_HDR_LEN)
					k = 1;
				if (k > len - pos)
					k = len - pos;
				if (markers && k > MPA_MARKER_PERIOD - pos % MPA_MARKER_PERIOD)
					k = MPA_MARKER_PERIOD - pos % MPA_MARKER_PERIOD;
				if (have < MPA_HDR_LEN)
					lb[have] = s[pos];
				c = siw_crc32c(c, s + pos, k);
				have += k;
				pos += k;
				if (have == MPA_HDR_LEN) {
					unsigned ulpdu = get_be16(lb);

					need = MPA_HDR_LEN + ulpdu + mpa_pad(ulpdu);
				}
				continue;
			}
			crc_at[ncrc++] = pos++;
		}
		if (ncrc < MPA_CRC_LEN)
			return;
		if (crc) {
			uint8_t v[MPA_CRC_LEN];

			siw_crc32c_put(v, siw_crc32c_final(c));
			for (unsigned i = 0; i < MPA_CRC_LEN; i++)
				s[crc_at[i]] = v[i];
		}
	}
}

/*
 * An inbound Atomic Request: its operand must be 8 aligned bytes inside a region. Carry the
 * operation out (plain 64-bit add / compare and swap; the masks do not matter here), so a bad
 * target shows up as a write outside the region.
 */
static int checked_atomic_req(void *user, const struct siw_atomic_req *r)
{
	uint64_t v;

	CHECK(inside(r->target, 8) && !((uintptr_t)r->target & 7));
	memcpy(&v, r->target, 8);
	if (r->aop == AOP_FETCH_ADD)
		v += r->add_swap;
	else if (v == r->cmp)
		v = r->add_swap;
	memcpy(r->target, &v, 8);
	return tp_ops.atomic_req(user, r);
}

/*
 * RFC 6581: only the negotiated zero-length message is the ready-to-receive one; anything else
 * first is "no matching RTR", and a TERMINATE first is the peer giving up, to be reported.
 */
static int checked_rtr_done(void *user)
{
	const struct siw_rx *rx = &peer.rx;
	static const uint8_t rtr_op[] = {
	    [SIW_RTR_SEND] = RDMAP_SEND,
	    [SIW_RTR_WRITE] = RDMAP_WRITE,
	    [SIW_RTR_READ] = RDMAP_READ_REQ,
	};

	CHECK(rx->p.rtr != SIW_RTR_NONE && rx->opcode == rtr_op[rx->p.rtr]);
	CHECK(rx->payload_len == 0 && rx->last);
	return tp_ops.rtr_done(user);
}

/*
 * A completed RDMA WRITE is reported with the range it covered: inside the region its STag names
 * (RFC 5041 §5: every segment of a tagged message carries the same STag, at consecutive offsets).
 */
static int checked_write_done(void *user, uint32_t stag, uint64_t to, uint32_t len)
{
	bool found = false;

	for (unsigned i = 0; i < NREG; i++) {
		if (peer.mr[i].stag != stag)
			continue;
		found = true;
		CHECK(len == 0 || (to >= defs[i].iova && to - defs[i].iova <= defs[i].len &&
				   len <= defs[i].len - (to - defs[i].iova)));
	}
	CHECK(found || len == 0);
	return tp_ops.write_done(user, stag, to, len);
}

/* The cheap invariants, after every call. */
static void check_state(const struct siw_rx *rx, uint64_t fed)
{
	CHECK(rx->stats.bytes <= fed);
	CHECK(rx->stats.payload <= rx->stats.bytes);
	CHECK(rx->stats.direct <= rx->stats.payload);
	CHECK(rx->stats.messages <= rx->stats.fpdus);
	CHECK(rx->hdr_have <= rx->hdr_need && rx->hdr_need <= SIW_MAX_HDR_LEN);
	CHECK(rx->trailer_have <= rx->trailer_need && rx->trailer_need <= sizeof(rx->trailer));
	CHECK(rx->marker_have < MPA_MARKER_LEN);
	CHECK(rx->err_hdr_len <= SIW_MAX_HDR_LEN);
	CHECK(!rx->err || rx->state == SIW_RX_DEAD);
	if (rx->state != SIW_RX_DEAD)
		CHECK(rx->stats.bytes == fed);
	if (rx->u_active)
		CHECK(rx->u_nseg <= SIW_MAX_SGE && rx->u_mo <= rx->u_cap);
}

/*
 * The first error is one the engine can act on: a registered TERMINATE triple (whose body can
 * be built from the kept header and decoded back to the same triple), or the peer's TERMINATE.
 */
static void check_error(const struct siw_rx *rx)
{
	uint8_t body[SIW_MAX_HDR_LEN];
	struct siw_term_info t;
	uint32_t ctrl;
	int n;

	if (!rx->err || rx->err == SIW_ERR_TERMINATED)
		return;
	CHECK(siw_err_is_term(rx->err));
	CHECK(siw_term_valid(siw_err_term_layer(rx->err), siw_err_term_etype(rx->err),
			     siw_err_term_ecode(rx->err)));
	n = siw_term_build(rx->err, rx->err_hdr, rx->err_hdr_len, rx->err_hdr_rdmap, body,
			   sizeof(body), &ctrl);
	CHECK(n >= 0 && (unsigned)n <= rx->err_hdr_len);
	CHECK(siw_term_decode(ctrl, body, (size_t)n, &t) == 0);
	CHECK(t.rfc_valid && t.layer == siw_err_term_layer(rx->err) &&
	      t.etype == siw_err_term_etype(rx->err) && t.ecode == siw_err_term_ecode(rx->err));
	CHECK(t.hdr_len == (unsigned)n && !memcmp(t.hdr, rx->err_hdr, (size_t)n));
}

static int feed_one(struct siw_rx *rx, const uint8_t *in, size_t n, uint64_t *fed)
{
	enum siw_rx_state before = rx->state;
	int err_before = rx->err;
	uint64_t bytes_before = rx->stats.bytes;
	ssize_t r = siw_rx_feed(rx, in, n);

	*fed += n;
	if (before == SIW_RX_DEAD) {
		/* dead stays dead, with the same error, and takes nothing */
		CHECK(r == err_before && rx->err == err_before);
		CHECK(rx->stats.bytes == bytes_before);
	} else if (r < 0) {
		CHECK(r == rx->err && rx->state == SIW_RX_DEAD);
	} else {
		CHECK((size_t)r == n && !rx->err);
	}
	if (err_before)
		CHECK(rx->err == err_before);
	check_state(rx, *fed);
	return r < 0 ? (int)r : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct siw_rx_params rp = {.pd = PD, .qpn = QPN};
	struct siw_rx *rx = &peer.rx;
	uint8_t flags, split;
	unsigned norq, seed;
	uint8_t *s;
	size_t len, off = 0;
	uint64_t fed = 0;

	if (size < 4)
		return 0;
	init_once();
	flags = data[0];
	split = data[1];
	rp.crc = flags & F_CRC;
	rp.markers = flags & F_MARKERS;
	rp.rfc7306 = flags & F_7306;
	rp.rtr = (uint8_t)F_RTR(flags);
	rp.max_ulpdu =
	    data[2] ? max_ulpdu_tab[data[2] % (sizeof(max_ulpdu_tab) / sizeof(uint32_t))] : 0;
	norq = data[3] & 0x0F;
	if (size < 4 + 6 * (size_t)norq)
		return 0;

	tp_init(&peer, &rp);
	ops = tp_ops;
	ops.place = checked_place;
	ops.atomic_req = checked_atomic_req;
	ops.rtr_done = checked_rtr_done;
	ops.write_done = checked_write_done;
	siw_rx_init(rx, &ops, &peer, &rp);
	for (unsigned i = 0; i < NREG; i++)
		tp_add_mr_ex(&peer, mem[i] + GUARD, defs[i].len, defs[i].iova, defs[i].access,
			     defs[i].pd, defs[i].qpn);
	guards_set();
	post_receives(data[3]);
	engine_fails = flags & F_FAIL;
	peer.fail_read_req = engine_fails;
	for (unsigned i = 0; i < norq; i++) {
		const uint8_t *e = data + 4 + 6 * i;
		unsigned r = (e[0] & 0x3F) % NREG;
		uint32_t stag = e[0] & 0x80 ? 0xDEAD00u : peer.mr[r].stag;
		uint32_t n = (uint32_t)e[3] << 16 | (uint32_t)e[4] << 8 | e[5];

		tp_push_orq(&peer, stag, defs[r].iova + get_be16(e + 1), n);
		if (e[0] & 0x40) {
			struct siw_orq_view *o = &peer.orq[(peer.orq_tail - 1) % TP_MAX_ORQ];

			o->atomic = true;
			o->req_id = n;
		}
	}

	len = size - 4 - 6 * (size_t)norq;
	s = malloc(len ? len : 1);
	memcpy(s, data + 4 + 6 * norq, len);
	if (flags & F_FIXUP)
		fixup(s, len, rp.crc, rp.markers);

	seed = split;
	while (off < len) {
		size_t n = len - off;

		if (flags & F_DIRECT) {
			struct siw_iov iov[SIW_MAX_SGE];
			size_t avail, want, done = 0;
			int cnt = siw_rx_direct_iov(rx, iov, SIW_MAX_SGE, &avail);

			CHECK(cnt >= 0 && cnt <= SIW_MAX_SGE);
			if (cnt > 0 && avail) {
				/* the bytes a readv() straight into place would bring */
				want = 1 + (size_t)rand_r(&seed) % avail;
				if (want > n)
					want = n;
				for (int i = 0; i < cnt && done < want; i++) {
					size_t k =
					    iov[i].len < want - done ? iov[i].len : want - done;

					CHECK(inside(iov[i].base, k));
					memcpy(iov[i].base, s + off + done, k);
					done += k;
				}
				fed += done;
				if (siw_rx_direct_done(rx, done)) {
					CHECK(rx->state == SIW_RX_DEAD && rx->err);
					break;
				}
				check_state(rx, fed);
				off += done;
				continue;
			}
			CHECK(cnt == 0 || avail == 0);
			/* outside a payload, direct_done() is a caller error that changes nothing
			 */
			if (cnt == 0 && rx->state != SIW_RX_PAYLOAD) {
				enum siw_rx_state st = rx->state;
				uint64_t b = rx->stats.bytes;
				int r = siw_rx_direct_done(rx, 0);

				CHECK(r == (rx->err ? rx->err : SIW_ERR_STATE));
				CHECK(rx->state == st && rx->stats.bytes == b);
			}
		}
		if (split == 1)
			n = 1;
		else if (split > 1)
			n = 1 + (size_t)rand_r(&seed) % (split & 1 ? 64 : 4096);
		if (n > len - off)
			n = len - off;
		if (feed_one(rx, s + off, n, &fed))
			break;
		off += n;
	}
	check_error(rx);
	/* once dead, more input changes nothing */
	if (rx->state == SIW_RX_DEAD) {
		uint8_t more[8] = {0};

		feed_one(rx, more, sizeof(more), &fed);
	} else {
		/* a local failure now: it becomes the first error */
		CHECK(siw_rx_fail(rx, SIW_ERR_CLOSED) == SIW_ERR_CLOSED);
		CHECK(rx->state == SIW_RX_DEAD && rx->err == SIW_ERR_CLOSED);
		CHECK(siw_rx_fail(rx, SIW_ERR_FAULT) == SIW_ERR_CLOSED);
	}
	CHECK(peer.orq_head <= peer.orq_tail);
	guards_check();
	free(s);
	return 0;
}
