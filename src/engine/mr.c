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
	uint8_t key;		  /* under table_lock */
};

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

int eng_mr_lookup(uint32_t stag, struct siw_mem_ref *ref)
{
	struct mr_slot *s = slot_get(SIW_STAG_INDEX(stag));

	if (!s)
		return SIW_ERR_MEM_STAG;
	for (;;) {
		unsigned s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		uint32_t cur;
		bool invalid;

		if (s1 & 1)
			continue; /* a writer is in the middle */
		cur = atomic_load_explicit(&s->stag, memory_order_relaxed);
		invalid = atomic_load_explicit(&s->invalid, memory_order_relaxed);
		ref->addr = (uint8_t *)atomic_load_explicit(&s->addr, memory_order_relaxed);
		ref->iova = atomic_load_explicit(&s->iova, memory_order_relaxed);
		ref->len = atomic_load_explicit(&s->len, memory_order_relaxed);
		ref->access = atomic_load_explicit(&s->access, memory_order_relaxed);
		ref->pd = atomic_load_explicit(&s->pd, memory_order_relaxed);
		ref->qpn = 0;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) != s1)
			continue;
		if (cur != stag || !stag)
			return SIW_ERR_MEM_STAG;
		return invalid ? SIW_ERR_MEM_INVALIDATED : 0;
	}
}

int eng_mr_invalidate(uint32_t stag, uint32_t pd)
{
	struct mr_slot *s;
	int err = 0;

	pthread_mutex_lock(&table_lock);
	s = slot_get(SIW_STAG_INDEX(stag));
	if (!s || atomic_load(&s->stag) != stag || !stag)
		err = SIW_ERR_MEM_STAG;
	else if (atomic_load(&s->pd) != pd)
		err = SIW_ERR_MEM_PD;
	else if (atomic_load(&s->invalid))
		err = SIW_ERR_MEM_INVALIDATED;
	if (!err) {
		slot_write_begin(s);
		atomic_store_explicit(&s->invalid, true, memory_order_relaxed);
		slot_write_end(s);
	}
	pthread_mutex_unlock(&table_lock);
	return err;
}

/* ---- memory regions ------------------------------------------------------------------------- */

struct eng_mr *eng_mr_reg(struct eng_pd *pd, void *addr, size_t len, uint64_t iova, int access)
{
	struct eng_mr *mr;
	struct mr_slot *s;
	uint32_t idx;

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
	pthread_mutex_lock(&table_lock);
	idx = slot_alloc();
	s = idx ? slot_get(idx) : NULL;
	if (!s) {
		pthread_mutex_unlock(&table_lock);
		free(mr);
		errno = ENOMEM;
		return NULL;
	}
	/* A new key on every use of the slot: an old rkey never names this registration. */
	s->key++;
	mr->pd = pd;
	mr->stag = idx << 8 | s->key;
	mr->addr = addr;
	mr->len = len;
	slot_write_begin(s);
	atomic_store_explicit(&s->addr, (uintptr_t)addr, memory_order_relaxed);
	atomic_store_explicit(&s->iova, iova, memory_order_relaxed);
	atomic_store_explicit(&s->len, len, memory_order_relaxed);
	atomic_store_explicit(&s->access, (unsigned)access, memory_order_relaxed);
	atomic_store_explicit(&s->pd, pd->id, memory_order_relaxed);
	atomic_store_explicit(&s->invalid, false, memory_order_relaxed);
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
