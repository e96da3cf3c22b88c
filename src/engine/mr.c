// SPDX-License-Identifier: MIT
/*
 * Protection domains and the STag table.
 *
 * Registration is a table insert: nothing is pinned (user memory is not pinned by us, so there
 * is no memlock limit). The table is indexed by the STag's 24-bit index; each slot keeps its own
 * key byte, bumped on every reuse so a stale rkey never matches a new registration. Readers (the
 * progress thread resolving a peer's STag) never lock: a per-slot sequence count lets them copy
 * a consistent snapshot while an application thread registers or deregisters.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "priv.h"

#define CHUNK_SHIFT 16
#define CHUNK_SLOTS (1u << CHUNK_SHIFT)
#define NCHUNKS	    (ENG_MAX_MR / CHUNK_SLOTS)

struct mr_slot {
	atomic_uint seq;	  /* odd while being written */
	atomic_uint stag;	  /* 0: free */
	atomic_uint access;
	atomic_uint pd;
	atomic_bool invalid;	  /* invalidated by the peer (SEND with Invalidate) */
	atomic_uintptr_t addr;
	atomic_uint_fast64_t iova;
	atomic_uint_fast64_t len;
	atomic_uint qpn;   /* type-2 memory window: the QP it is bound to (else 0) */
	atomic_uint kind;  /* SLOT_MR, SLOT_MW1, SLOT_MW2 */
	uint8_t key;       /* under table_lock */
	uint32_t mw_binds; /* region: windows bound to it (under table_lock) */
	uint32_t mw_mr;    /* window: the STag of the region it is bound to (table_lock) */
};

enum { SLOT_MR = 0, SLOT_MW1 = 1, SLOT_MW2 = 2 };

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct mr_slot *) chunks[NCHUNKS];
static uint32_t *free_idx;	  /* stack of free slot indexes (under table_lock) */
static uint32_t nfree, free_cap;
static uint32_t next_idx = 1;	  /* index 0 is never used: STag 0..255 are invalid */

static atomic_uint pd_ids;

/* ---- protection domains --------------------------------------------------------------------- */

struct eng_pd *eng_pd_alloc(struct eng_ctx *ctx)
{
	struct eng_pd *pd;

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd) {
		errno = ENOMEM;
		return NULL;
	}
	pd->ctx = ctx;
	pd->id = atomic_fetch_add(&pd_ids, 1) + 1;
	pthread_mutex_lock(&ctx->lock);
	ctx->nobjs++;
	pthread_mutex_unlock(&ctx->lock);
	return pd;
}

int eng_pd_free(struct eng_pd *pd)
{
	if (!pd)
		return EINVAL;
	if (atomic_load(&pd->refs))
		return EBUSY;
	pthread_mutex_lock(&pd->ctx->lock);
	pd->ctx->nobjs--;
	pthread_mutex_unlock(&pd->ctx->lock);
	free(pd);
	return 0;
}

uint32_t eng_pd_id(const struct eng_pd *pd)
{
	return pd->id;
}

/* ---- the table ------------------------------------------------------------------------------ */

static struct mr_slot *slot_get(uint32_t idx)
{
	struct mr_slot *c;

	if (idx >= ENG_MAX_MR)
		return NULL;
	c = atomic_load_explicit(&chunks[idx >> CHUNK_SHIFT], memory_order_acquire);
	return c ? &c[idx & (CHUNK_SLOTS - 1)] : NULL;
}

/* Takes a free slot index (table_lock held). 0 if the table is full. */
static uint32_t slot_alloc(void)
{
	uint32_t idx;

	if (nfree)
		return free_idx[--nfree];
	if (next_idx >= ENG_MAX_MR)
		return 0;
	idx = next_idx;
	if (!atomic_load(&chunks[idx >> CHUNK_SHIFT])) {
		struct mr_slot *c = calloc(CHUNK_SLOTS, sizeof(*c));

		if (!c)
			return 0;
		for (uint32_t i = 0; i < CHUNK_SLOTS; i++)
			c[i].key = (uint8_t)(i * 37); /* spread the first keys */
		atomic_store_explicit(&chunks[idx >> CHUNK_SHIFT], c, memory_order_release);
	}
	next_idx++;
	return idx;
}

/*
 * Takes a free slot for a new region or window and gives it a new key, so an old STag never
 * names the new object. Returns it with table_lock held and its STag in *stag; NULL (lock
 * released) if the table is full.
 */
static struct mr_slot *slot_take(uint32_t *stag)
{
	uint32_t idx;
	struct mr_slot *s;

	pthread_mutex_lock(&table_lock);
	idx = slot_alloc();
	s = idx ? slot_get(idx) : NULL;
	if (!s) {
		pthread_mutex_unlock(&table_lock);
		return NULL;
	}
	s->key++;
	*stag = idx << 8 | s->key;
	return s;
}

static int slot_free(uint32_t idx)
{
	if (nfree == free_cap) {
		uint32_t cap = free_cap ? free_cap * 2 : 1024;
		uint32_t *p = realloc(free_idx, cap * sizeof(*p));

		if (!p)
			return ENOMEM;
		free_idx = p;
		free_cap = cap;
	}
	free_idx[nfree++] = idx;
	return 0;
}

static void slot_write_begin(struct mr_slot *s)
{
	atomic_fetch_add_explicit(&s->seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
}

static void slot_write_end(struct mr_slot *s)
{
	atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
}

static int slot_lookup(uint32_t stag, struct siw_mem_ref *ref, bool local)
{
	struct mr_slot *s = slot_get(SIW_STAG_INDEX(stag));

	if (!s)
		return SIW_ERR_MEM_STAG;
	for (;;) {
		unsigned s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		uint32_t cur, kind;
		bool invalid;

		if (s1 & 1)
			continue; /* a writer is in the middle */
		cur = atomic_load_explicit(&s->stag, memory_order_relaxed);
		invalid = atomic_load_explicit(&s->invalid, memory_order_relaxed);
		kind = atomic_load_explicit(&s->kind, memory_order_relaxed);
		ref->addr = (uint8_t *)atomic_load_explicit(&s->addr, memory_order_relaxed);
		ref->iova = atomic_load_explicit(&s->iova, memory_order_relaxed);
		ref->len = atomic_load_explicit(&s->len, memory_order_relaxed);
		ref->access = atomic_load_explicit(&s->access, memory_order_relaxed);
		ref->pd = atomic_load_explicit(&s->pd, memory_order_relaxed);
		ref->qpn = atomic_load_explicit(&s->qpn, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) != s1)
			continue;
		/* A window's rkey is no lkey: local SGEs name regions only. */
		if (cur != stag || !stag || (local && kind != SLOT_MR))
			return SIW_ERR_MEM_STAG;
		return invalid ? SIW_ERR_MEM_INVALIDATED : 0;
	}
}

int eng_mr_lookup(uint32_t stag, struct siw_mem_ref *ref)
{
	return slot_lookup(stag, ref, false);
}

int eng_mr_lookup_local(uint32_t stag, struct siw_mem_ref *ref)
{
	return slot_lookup(stag, ref, true);
}

/* Unbinds window slot s (table_lock held, inside a write section). */
static void mw_unbind_locked(struct mr_slot *s)
{
	struct mr_slot *m = s->mw_mr ? slot_get(SIW_STAG_INDEX(s->mw_mr)) : NULL;

	if (m && atomic_load(&m->stag) == s->mw_mr && m->mw_binds)
		m->mw_binds--;
	s->mw_mr = 0;
	atomic_store_explicit(&s->invalid, true, memory_order_relaxed);
	atomic_store_explicit(&s->len, 0, memory_order_relaxed);
	atomic_store_explicit(&s->access, 0, memory_order_relaxed);
	atomic_store_explicit(&s->qpn, 0, memory_order_relaxed);
}

int eng_stag_invalidate(uint32_t stag, uint32_t pd, uint32_t qpn, bool remote)
{
	struct mr_slot *s;
	uint32_t kind;
	int err = 0;

	pthread_mutex_lock(&table_lock);
	s = slot_get(SIW_STAG_INDEX(stag));
	if (!s || atomic_load(&s->stag) != stag || !stag) {
		err = SIW_ERR_MEM_STAG;
		goto out;
	}
	kind = atomic_load(&s->kind);
	if (atomic_load(&s->pd) != pd)
		err = SIW_ERR_MEM_PD;
	else if (atomic_load(&s->invalid))
		err = SIW_ERR_MEM_INVALIDATED;
	else if (kind == SLOT_MW1)
		err = SIW_ERR_MEM_STAG; /* type-1 windows are unbound by a zero-length bind only */
	else if (kind == SLOT_MW2 && remote && atomic_load(&s->qpn) != qpn)
		err = SIW_ERR_MEM_PD; /* a type-2 window is invalidated through its own QP */
	if (!err) {
		slot_write_begin(s);
		if (kind == SLOT_MR)
			atomic_store_explicit(&s->invalid, true, memory_order_relaxed);
		else
			mw_unbind_locked(s);
		slot_write_end(s);
	}
out:
	pthread_mutex_unlock(&table_lock);
	return err;
}

/* ---- memory regions ------------------------------------------------------------------------- */

struct eng_mr *eng_mr_reg(struct eng_pd *pd, void *addr, size_t len, uint64_t iova, int access)
{
	struct eng_mr *mr;
	struct mr_slot *s;

	if (!pd || (access & ~ENG_ACCESS_ALL) || (!addr && len) || len > ENG_MAX_MR_SIZE ||
	    iova + len < iova) {
		errno = EINVAL;
		return NULL;
	}
	/* Remote write or atomic access needs local write (IB spec, rdma-core man page). */
	if ((access & (ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_ATOMIC)) &&
	    !(access & ENG_ACCESS_LOCAL_WRITE)) {
		errno = EINVAL;
		return NULL;
	}
	mr = malloc(sizeof(*mr));
	if (!mr) {
		errno = ENOMEM;
		return NULL;
	}
	s = slot_take(&mr->stag);
	if (!s) {
		free(mr);
		errno = ENOMEM;
		return NULL;
	}
	mr->pd = pd;
	mr->addr = addr;
	mr->len = len;
	slot_write_begin(s);
	atomic_store_explicit(&s->addr, (uintptr_t)addr, memory_order_relaxed);
	atomic_store_explicit(&s->iova, iova, memory_order_relaxed);
	atomic_store_explicit(&s->len, len, memory_order_relaxed);
	atomic_store_explicit(&s->access, (unsigned)access, memory_order_relaxed);
	atomic_store_explicit(&s->pd, pd->id, memory_order_relaxed);
	atomic_store_explicit(&s->invalid, false, memory_order_relaxed);
	atomic_store_explicit(&s->qpn, 0, memory_order_relaxed);
	atomic_store_explicit(&s->kind, SLOT_MR, memory_order_relaxed);
	s->mw_binds = 0;
	s->mw_mr = 0;
	atomic_store_explicit(&s->stag, mr->stag, memory_order_relaxed);
	slot_write_end(s);
	pthread_mutex_unlock(&table_lock);
	atomic_fetch_add(&pd->refs, 1);
	return mr;
}

int eng_mr_dereg(struct eng_mr *mr)
{
	struct mr_slot *s;
	uint32_t idx;

	if (!mr)
		return EINVAL;
	idx = SIW_STAG_INDEX(mr->stag);
	pthread_mutex_lock(&table_lock);
	s = slot_get(idx);
	if (!s || atomic_load(&s->stag) != mr->stag) {
		pthread_mutex_unlock(&table_lock);
		return EINVAL;
	}
	if (s->mw_binds) {
		pthread_mutex_unlock(&table_lock);
		return EBUSY; /* memory windows are bound to it */
	}
	slot_write_begin(s);
	atomic_store_explicit(&s->stag, 0, memory_order_relaxed);
	slot_write_end(s);
	pthread_mutex_unlock(&table_lock);
	/* No progress thread may still hold a pointer it resolved before the removal. */
	eng_quiesce();
	pthread_mutex_lock(&table_lock);
	if (slot_free(idx))
		eng_warn("STag index %u leaked (out of memory)", idx);
	pthread_mutex_unlock(&table_lock);
	atomic_fetch_sub(&mr->pd->refs, 1);
	free(mr);
	return 0;
}

uint32_t eng_mr_key(const struct eng_mr *mr)
{
	return mr->stag;
}

/* ---- memory windows ------------------------------------------------------------------------- */

struct eng_mw *eng_mw_alloc(struct eng_pd *pd, int type)
{
	struct eng_mw *mw;
	struct mr_slot *s;

	if (!pd || (type != 1 && type != 2)) {
		errno = EINVAL;
		return NULL;
	}
	mw = malloc(sizeof(*mw));
	if (!mw) {
		errno = ENOMEM;
		return NULL;
	}
	s = slot_take(&mw->stag);
	if (!s) {
		free(mw);
		errno = ENOMEM;
		return NULL;
	}
	mw->pd = pd;
	/* A new window is unbound: its STag names no memory until a bind. */
	slot_write_begin(s);
	atomic_store_explicit(&s->addr, 0, memory_order_relaxed);
	atomic_store_explicit(&s->iova, 0, memory_order_relaxed);
	atomic_store_explicit(&s->len, 0, memory_order_relaxed);
	atomic_store_explicit(&s->access, 0, memory_order_relaxed);
	atomic_store_explicit(&s->pd, pd->id, memory_order_relaxed);
	atomic_store_explicit(&s->invalid, true, memory_order_relaxed);
	atomic_store_explicit(&s->qpn, 0, memory_order_relaxed);
	atomic_store_explicit(&s->kind, type == 1 ? SLOT_MW1 : SLOT_MW2, memory_order_relaxed);
	s->mw_binds = 0;
	s->mw_mr = 0;
	atomic_store_explicit(&s->stag, mw->stag, memory_order_relaxed);
	slot_write_end(s);
	pthread_mutex_unlock(&table_lock);
	atomic_fetch_add(&pd->refs, 1);
	return mw;
}

int eng_mw_dealloc(struct eng_mw *mw)
{
	struct mr_slot *s;
	uint32_t idx;

	if (!mw)
		return EINVAL;
	pthread_mutex_lock(&table_lock);
	/* The current STag: a bind may have changed the key byte since the allocation. */
	idx = SIW_STAG_INDEX(mw->stag);
	s = slot_get(idx);
	if (!s || SIW_STAG_INDEX(atomic_load(&s->stag)) != idx || !atomic_load(&s->stag)) {
		pthread_mutex_unlock(&table_lock);
		return EINVAL;
	}
	slot_write_begin(s);
	mw_unbind_locked(s);
	atomic_store_explicit(&s->stag, 0, memory_order_relaxed);
	slot_write_end(s);
	pthread_mutex_unlock(&table_lock);
	eng_quiesce();
	pthread_mutex_lock(&table_lock);
	if (slot_free(idx))
		eng_warn("STag index %u leaked (out of memory)", idx);
	pthread_mutex_unlock(&table_lock);
	atomic_fetch_sub(&mw->pd->refs, 1);
	free(mw);
	return 0;
}

uint32_t eng_mw_key(const struct eng_mw *mw)
{
	uint32_t stag;
	struct mr_slot *s;

	pthread_mutex_lock(&table_lock);
	s = slot_get(SIW_STAG_INDEX(mw->stag));
	stag = s ? atomic_load(&s->stag) : mw->stag;
	pthread_mutex_unlock(&table_lock);
	return stag;
}

int eng_mw_bind(uint32_t pd, uint32_t qpn, const struct eng_mw_bind *b)
{
	struct mr_slot *w, *m = NULL;
	uint32_t kind, acc;
	uint64_t miova = 0, mlen = 0;
	uintptr_t maddr = 0;
	int err = 0;

	pthread_mutex_lock(&table_lock);
	/* The window is named by its index: its key byte is whatever the last bind made it. */
	w = slot_get(SIW_STAG_INDEX(b->mw_stag));
	if (!w || SIW_STAG_INDEX(atomic_load(&w->stag)) != SIW_STAG_INDEX(b->mw_stag) ||
	    !atomic_load(&w->stag) || SIW_STAG_INDEX(b->new_stag) != SIW_STAG_INDEX(b->mw_stag)) {
		err = SIW_ERR_MEM_STAG;
		goto out;
	}
	kind = atomic_load(&w->kind);
	acc = b->access &
	      (ENG_ACCESS_REMOTE_READ | ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_ATOMIC);
	if (kind == SLOT_MR) {
		err = SIW_ERR_MEM_STAG;
	} else if (atomic_load(&w->pd) != pd) {
		err = SIW_ERR_MEM_PD;
	} else if (kind == SLOT_MW2 && (!atomic_load(&w->invalid) || !b->bind)) {
		/* A type-2 window is bound only while free; it is freed by invalidation. */
		err = SIW_ERR_MEM_ACCESS;
	} else if (b->bind) {
		m = slot_get(SIW_STAG_INDEX(b->mr_stag));
		if (!m || atomic_load(&m->stag) != b->mr_stag || !b->mr_stag ||
		    atomic_load(&m->kind) != SLOT_MR || atomic_load(&m->invalid))
			err = SIW_ERR_MEM_STAG;
		else if (atomic_load(&m->pd) != pd)
			err = SIW_ERR_MEM_PD;
		else if (!(atomic_load(&m->access) & ENG_ACCESS_MW_BIND) ||
			 ((acc & (ENG_ACCESS_REMOTE_WRITE | ENG_ACCESS_REMOTE_ATOMIC)) &&
			  !(atomic_load(&m->access) & ENG_ACCESS_LOCAL_WRITE)))
			err = SIW_ERR_MEM_ACCESS;
		if (!err) {
			maddr = atomic_load(&m->addr);
			miova = atomic_load(&m->iova);
			mlen = atomic_load(&m->len);
			if (b->addr + b->len < b->addr)
				err = SIW_ERR_MEM_WRAP;
			else if (b->addr < miova || b->addr - miova > mlen ||
				 b->len > mlen - (b->addr - miova))
				err = SIW_ERR_MEM_BOUNDS;
		}
	}
	if (err)
		goto out;
	slot_write_begin(w);
	mw_unbind_locked(w);
	if (b->bind) {
		atomic_store_explicit(&w->addr, maddr + (uintptr_t)(b->addr - miova),
				      memory_order_relaxed);
		atomic_store_explicit(&w->iova, b->addr, memory_order_relaxed);
		atomic_store_explicit(&w->len, b->len, memory_order_relaxed);
		atomic_store_explicit(&w->access, acc, memory_order_relaxed);
		atomic_store_explicit(&w->qpn, kind == SLOT_MW2 ? qpn : 0, memory_order_relaxed);
		atomic_store_explicit(&w->invalid, false, memory_order_relaxed);
		w->mw_mr = b->mr_stag;
		m->mw_binds++;
	}
	/* The key byte is the consumer's (ibv_inc_rkey): the old rkey names nothing now. */
	w->key = (uint8_t)SIW_STAG_KEY(b->new_stag);
	atomic_store_explicit(&w->stag, b->new_stag, memory_order_relaxed);
	slot_write_end(w);
out:
	pthread_mutex_unlock(&table_lock);
	return err;
}
