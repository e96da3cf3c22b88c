// SPDX-License-Identifier: MIT
#include "helper_peer.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static struct tp_event *tp_ev(struct tp_peer *p, enum tp_ev_type t)
{
	static struct tp_event spare;
	struct tp_event *e = p->nev < TP_MAX_EV ? &p->ev[p->nev++] : &spare;

	memset(e, 0, sizeof(*e));
	e->type = t;
	return e;
}

static int tp_mem_lookup(void *user, uint32_t stag, struct siw_mem_ref *ref)
{
	struct tp_peer *p = user;

	for (unsigned i = 0; i < p->nmr; i++) {
		if (p->mr[i].valid && p->mr[i].stag == stag) {
			*ref = p->mr[i].ref;
			return 0;
		}
	}
	return SIW_ERR_MEM_STAG;
}

static int tp_rq_begin(void *user, const struct siw_sge **sge, unsigned *n)
{
	struct tp_peer *p = user;
	struct tp_recv *r;

	if (p->rq_head == p->rq_tail)
		return SIW_ERR_QFULL;
	r = &p->rq[p->rq_head++ % TP_MAX_RQ];
	*sge = r->sge;
	*n = r->nsge;
	return 0;
}

static int tp_orq_head(void *user, struct siw_orq_view *e)
{
	struct tp_peer *p = user;

	if (p->orq_head == p->orq_tail)
		return SIW_ERR_STATE;
	*e = p->orq[p->orq_head % TP_MAX_ORQ];
	return 0;
}

static int tp_place(void *user, void *dst, const void *src, size_t len)
{
	struct tp_peer *p = user;

	if (p->fail_place)
		return p->fail_place;
	memcpy(dst, src, len);
	p->placed += len;
	return 0;
}

static int tp_recv_done(void *user, const struct siw_rx_recv *r)
{
	tp_ev(user, TP_EV_RECV)->recv = *r;
	return 0;
}

static int tp_read_req(void *user, const struct siw_read_req *r)
{
	struct tp_peer *p = user;

	if (p->fail_read_req)
		return SIW_ERR_QFULL;
	tp_ev(p, TP_EV_READ_REQ)->rreq = *r;
	return 0;
}

static int tp_read_resp_done(void *user)
{
	struct tp_peer *p = user;

	p->orq_head++;
	tp_ev(p, TP_EV_READ_RESP);
	return 0;
}

static int tp_invalidate(void *user, uint32_t stag)
{
	struct tp_peer *p = user;

	for (unsigned i = 0; i < p->nmr; i++) {
		if (p->mr[i].valid && p->mr[i].stag == stag) {
			p->mr[i].valid = false;
			tp_ev(p, TP_EV_INVALIDATE)->stag = stag;
			return 0;
		}
	}
	return SIW_ERR_MEM_STAG;
}

static int tp_terminate(void *user, const struct siw_term_info *t)
{
	struct tp_peer *p = user;

	p->term = *t;
	tp_ev(p, TP_EV_TERM);
	return 0;
}

static int tp_rtr_done(void *user)
{
	tp_ev(user, TP_EV_RTR);
	return 0;
}

static int tp_write_done(void *user, uint32_t stag, uint64_t to, uint32_t len)
{
	struct tp_event *e = tp_ev(user, TP_EV_WRITE);

	e->stag = stag;
	e->to = to;
	e->len = len;
	return 0;
}

static int tp_imm(void *user, const uint8_t imm[8], bool se)
{
	struct tp_event *e = tp_ev(user, TP_EV_IMM);

	memcpy(e->imm, imm, 8);
	e->solicited = se;
	return 0;
}

static int tp_atomic_req(void *user, const struct siw_atomic_req *r)
{
	tp_ev(user, TP_EV_ATOMIC_REQ)->areq = *r;
	return 0;
}

static int tp_atomic_resp(void *user, const struct siw_atomic_resp *r)
{
	struct tp_peer *p = user;

	p->orq_head++;
	tp_ev(p, TP_EV_ATOMIC_RESP)->aresp = *r;
	return 0;
}

const struct siw_rx_ops tp_ops = {
	.imm_data = tp_imm,
	.atomic_req = tp_atomic_req,
	.atomic_resp = tp_atomic_resp,
	.mem_lookup = tp_mem_lookup,
	.rq_begin = tp_rq_begin,
	.orq_head = tp_orq_head,
	.place = tp_place,
	.recv_done = tp_recv_done,
	.read_req = tp_read_req,
	.read_resp_done = tp_read_resp_done,
	.invalidate = tp_invalidate,
	.terminate = tp_terminate,
	.rtr_done = tp_rtr_done,
	.write_done = tp_write_done,
};

void tp_init(struct tp_peer *p, const struct siw_rx_params *rp)
{
	memset(p, 0, sizeof(*p));
	siw_rx_init(&p->rx, &tp_ops, p, rp);
}

uint32_t tp_add_mr_ex(struct tp_peer *p, void *buf, uint64_t len, uint64_t iova, uint32_t access,
		      uint32_t pd, uint32_t qpn)
{
	struct tp_region *r = &p->mr[p->nmr];

	r->valid = true;
	/* Index in the upper 24 bits, a key byte below, as real STags. */
	r->stag = (p->nmr + 1) << 8 | 0x5a;
	r->ref.addr = buf;
	r->ref.iova = iova;
	r->ref.len = len;
	r->ref.access = access;
	r->ref.pd = pd;
	r->ref.qpn = qpn;
	p->nmr++;
	return r->stag;
}

uint32_t tp_add_mr(struct tp_peer *p, void *buf, uint64_t len, uint32_t access)
{
	return tp_add_mr_ex(p, buf, len, (uintptr_t)buf, access, p->rx.p.pd, 0);
}

void tp_post_recv(struct tp_peer *p, const struct siw_sge *sge, unsigned nsge)
{
	struct tp_recv *r = &p->rq[p->rq_tail++ % TP_MAX_RQ];

	memcpy(r->sge, sge, nsge * sizeof(*sge));
	r->nsge = nsge;
}

void tp_push_orq(struct tp_peer *p, uint32_t sink_stag, uint64_t sink_to, uint32_t len)
{
	struct siw_orq_view *o = &p->orq[p->orq_tail++ % TP_MAX_ORQ];

	o->sink_stag = sink_stag;
	o->sink_to = sink_to;
	o->len = len;
}

unsigned tp_count(const struct tp_peer *p, enum tp_ev_type t)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->nev; i++)
		n += p->ev[i].type == t;
	return n;
}

long tp_build(struct siw_tx *tx, const struct siw_tx_msg *m, uint8_t *out, size_t outsz)
{
	static struct siw_tx_batch b;
	size_t used = 0;
	int r = siw_tx_begin(tx, m);

	if (r)
		return r;
	do {
		siw_tx_batch_reset(&b);
		r = siw_tx_fill(tx, &b);
		if (r < 0)
			return r;
		for (unsigned i = 0; i < b.niov; i++) {
			if (used + b.iov[i].len > outsz)
				return SIW_ERR_NOBUFS;
			memcpy(out + used, b.iov[i].base, b.iov[i].len);
			used += b.iov[i].len;
		}
	} while (r == 0);
	return (long)used;
}

long tp_feed(struct tp_peer *p, const uint8_t *in, size_t len, unsigned chunk, unsigned *seed)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off;
		ssize_t r;

		if (chunk == 1)
			n = 1;
		else if (chunk > 1)
			n = 1 + (size_t)rand_r(seed) % chunk;
		if (n > len - off)
			n = len - off;
		r = siw_rx_feed(&p->rx, in + off, n);
		if (r < 0)
			return r;
		off += n;
	}
	return (long)off;
}
