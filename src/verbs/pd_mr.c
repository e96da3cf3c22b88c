/* SPDX-License-Identifier: MIT */
/*
 * Protection domains, memory regions and memory windows.
 *
 * Registration checks follow the kernel's ib_check_mr_access() and uverbs reg_mr, so programs
 * see the errno they see on kernel siw; the engine then only gets flags it knows.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vrb.h"

#undef ibv_reg_mr /* verbs.h wraps these in inlines choosing ibv_reg_mr_iova2 */
#undef ibv_reg_mr_iova

/* Access bits the kernel accepts at all: LOCAL_WRITE .. HUGETLB, plus the optional range. */
#define VRB_ACCESS_DEFINED ((unsigned int)(IBV_ACCESS_HUGETLB << 1) - 1)

/* ---- protection domains ------------------------------------------------------------------ */

VRB_EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *context)
{
	struct vrb_pd *pd;

	if (!context) {
		errno = EINVAL;
		return NULL;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd) {
		errno = ENOMEM;
		return NULL;
	}
	pd->epd = eng_pd_alloc(vrb_ctx(context)->ectx);
	if (!pd->epd) {
		int err = errno ? errno : ENOMEM;

		free(pd);
		errno = err;
		return NULL;
	}
	pd->ibpd.context = context;
	pd->ibpd.handle = eng_pd_id(pd->epd);
	return &pd->ibpd;
}

VRB_EXPORT int ibv_dealloc_pd(struct ibv_pd *pd)
{
	int err;

	if (!pd)
		return EINVAL;
	err = eng_pd_free(vrb_pd(pd)->epd); /* EBUSY while MRs, QPs or SRQs use it */
	if (err)
		return err;
	free(vrb_pd(pd));
	return 0;
}

/* ---- memory regions ---------------------------------------------------------------------- */

/* Checks and converts access flags; returns 0 and the ENG_ACCESS_* set, or an errno. */
static int vrb_mr_access(unsigned int access, int *eng_access)
{
	/* Optional-range bits (relaxed ordering...) may be ignored by definition. */
	access &= ~(unsigned int)IBV_ACCESS_OPTIONAL_RANGE;
	if (access & ~VRB_ACCESS_DEFINED)
		return EINVAL;
	/* Remote write or atomic access needs local write (IBTA, kernel ib_check_mr_access). */
	if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
	    !(access & IBV_ACCESS_LOCAL_WRITE))
		return EINVAL;
	/* No on-demand paging (no ODP capabilities): kernel siw answers EINVAL. */
	if (access & IBV_ACCESS_ON_DEMAND)
		return EINVAL;
	/* ZERO_BASED and HUGETLB change nothing for a registration that pins no pages. */
	*eng_access = (int)(access & ENG_ACCESS_ALL);
	return 0;
}

/* Checks a range to register; returns 0 or an errno. */
static int vrb_mr_range(const void *addr, size_t length, uint64_t iova)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (!length)
		return EINVAL;
	if ((uintptr_t)addr + length < (uintptr_t)addr || iova + length < iova)
		return EINVAL;
	/* uverbs: the tagged address must have the buffer's offset within its page. */
	if (((uintptr_t)addr ^ iova) & (page - 1))
		return EINVAL;
	/* The kernel's page pinning fails on an unmapped range; NULL is the common case. */
	if (!addr)
		return EFAULT;
	return 0;
}

static struct ibv_mr *vrb_reg(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
			      unsigned int access)
{
	struct vrb_mr *mr;
	int eacc, err;

	if (!pd) {
		err = EINVAL;
		goto fail;
	}
	err = vrb_mr_access(access, &eacc);
	if (!err)
		err = vrb_mr_range(addr, length, iova);
	if (err)
		goto fail;
	mr = calloc(1, sizeof(*mr));
	if (!mr) {
		err = ENOMEM;
		goto fail;
	}
	errno = 0;
	mr->emr = eng_mr_reg(vrb_pd(pd)->epd, addr, length, iova, eacc);
	if (!mr->emr) {
		err = errno ? errno : ENOMEM;
		free(mr);
		goto fail;
	}
	mr->iova = iova;
	mr->access = eacc;
	mr->ibmr.context = pd->context;
	mr->ibmr.pd = pd;
	mr->ibmr.addr = addr;
	mr->ibmr.length = length;
	mr->ibmr.lkey = eng_mr_key(mr->emr);
	mr->ibmr.rkey = mr->ibmr.lkey;
	mr->ibmr.handle = mr->ibmr.lkey;
	return &mr->ibmr;

fail:
	vrb_debug("reg_mr(%p, %zu, 0x%x): %s\n", addr, length, access, strerror(err));
	errno = err;
	return NULL;
}

VRB_EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access)
{
	return vrb_reg(pd, addr, length, (uintptr_t)addr, (unsigned int)access);
}

VRB_EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
					  uint64_t iova, int access)
{
	return vrb_reg(pd, addr, length, iova, (unsigned int)access);
}

VRB_EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					   uint64_t iova, unsigned int access)
{
	return vrb_reg(pd, addr, length, iova, access);
}

VRB_EXPORT struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length,
					    uint64_t iova, int fd, int access)
{
	(void)pd, (void)offset, (void)length, (void)iova, (void)fd, (void)access;
	errno = EOPNOTSUPP; /* no device memory to import */
	return NULL;
}

/*
 * Re-registration is a new registration of the changed region followed by dropping the old
 * one, so the keys change (applications must read lkey/rkey again, as with most providers).
 * Any failure leaves the old region intact, hence IBV_REREG_MR_ERR_INPUT.
 */
VRB_EXPORT int ibv_rereg_mr(struct ibv_mr *ibmr, int flags, struct ibv_pd *pd, void *addr,
			    size_t length, int access)
{
	struct ibv_pd *npd;
	struct vrb_mr *mr;
	struct eng_mr *nmr;
	uint64_t niova;
	void *naddr;
	size_t nlen;
	int nacc, err;

	if (!ibmr || (flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) ||
	    ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (!addr || !length)) ||
	    (access && !(flags & IBV_REREG_MR_CHANGE_ACCESS)) ||
	    ((flags & IBV_REREG_MR_CHANGE_PD) && (!pd || pd->context != ibmr->context))) {
		errno = EINVAL;
		return IBV_REREG_MR_ERR_INPUT;
	}
	mr = vrb_mr(ibmr);
	if (!flags)
		return 0;
	npd = flags & IBV_REREG_MR_CHANGE_PD ? pd : ibmr->pd;
	naddr = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? addr : ibmr->addr;
	nlen = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? length : ibmr->length;
	niova = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? (uintptr_t)addr : mr->iova;
	nacc = mr->access;
	err = 0;
	if (flags & IBV_REREG_MR_CHANGE_ACCESS)
		err = vrb_mr_access((unsigned int)access, &nacc);
	if (!err)
		err = vrb_mr_range(naddr, nlen, niova);
	if (err) {
		errno = err;
		return IBV_REREG_MR_ERR_INPUT;
	}
	errno = 0;
	nmr = eng_mr_reg(vrb_pd(npd)->epd, naddr, nlen, niova, nacc);
	if (!nmr) {
		errno = errno ? errno : ENOMEM;
		return IBV_REREG_MR_ERR_INPUT;
	}
	err = eng_mr_dereg(mr->emr);
	if (err) {
		eng_mr_dereg(nmr);
		errno = err;
		return IBV_REREG_MR_ERR_INPUT;
	}
	mr->emr = nmr;
	mr->iova = niova;
	mr->access = nacc;
	ibmr->pd = npd;
	ibmr->addr = naddr;
	ibmr->length = nlen;
	ibmr->lkey = eng_mr_key(nmr);
	ibmr->rkey = ibmr->lkey;
	ibmr->handle = ibmr->lkey;
	return 0;
}

VRB_EXPORT int ibv_dereg_mr(struct ibv_mr *mr)
{
	int err;

	if (!mr)
		return EINVAL;
	err = eng_mr_dereg(vrb_mr(mr)->emr);
	if (err)
		return err;
	free(vrb_mr(mr));
	return 0;
}

/* ---- memory windows ---------------------------------------------------------------------- */

struct ibv_mw *vrb_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type)
{
	struct vrb_mw *mw;
	int err;

	if (!pd || (type != IBV_MW_TYPE_1 && type != IBV_MW_TYPE_2)) {
		errno = EINVAL;
		return NULL;
	}
	mw = calloc(1, sizeof(*mw));
	if (!mw) {
		errno = ENOMEM;
		return NULL;
	}
	errno = 0;
	mw->emw = eng_mw_alloc(vrb_pd(pd)->epd, type == IBV_MW_TYPE_1 ? 1 : 2);
	if (!mw->emw) {
		err = errno ? errno : ENOMEM;
		free(mw);
		errno = err;
		return NULL;
	}
	mw->ibmw.context = pd->context;
	mw->ibmw.pd = pd;
	mw->ibmw.rkey = eng_mw_key(mw->emw);
	mw->ibmw.handle = mw->ibmw.rkey >> 8;
	mw->ibmw.type = type;
	return &mw->ibmw;
}

int vrb_dealloc_mw(struct ibv_mw *mw)
{
	int err;

	if (!mw)
		return EINVAL;
	err = eng_mw_dealloc(vrb_mw(mw)->emw);
	if (err)
		return err;
	free(vrb_mw(mw));
	return 0;
}

/* Window rights: remote ones only (no zero-based windows). */
#define VRB_MW_ACCESS (IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)

int vrb_bind_wr(struct ibv_qp *qp, struct ibv_mw *mw, uint32_t rkey,
		const struct ibv_mw_bind_info *bi, struct eng_send_wr *e, struct eng_sge *sge)
{
	if (!qp || !mw || !bi || mw->context != qp->context)
		return EINVAL;
	if (bi->mw_access_flags & ~(unsigned int)VRB_MW_ACCESS)
		return EINVAL;
	/* The new rkey keeps the window's index; the consumer picks the key byte. */
	if ((rkey >> 8) != (mw->rkey >> 8))
		return EINVAL;
	e->opcode = ENG_WR_BIND_MW;
	e->rkey = mw->rkey;
	e->imm_or_inv = rkey;
	e->compare_add = bi->mw_access_flags;
	e->remote_addr = 0;
	e->swap = 0;
	if (bi->mr) {
		if (bi->mr->context != mw->context || bi->length > UINT32_MAX || !bi->length)
			return EINVAL;
		sge->addr = bi->addr;
		sge->length = (uint32_t)bi->length;
		sge->lkey = bi->mr->lkey;
		e->sg_list = sge;
		e->num_sge = 1;
	} else {
		if (bi->addr || bi->length || mw->type != IBV_MW_TYPE_1)
			return EINVAL;
		e->sg_list = NULL;
		e->num_sge = 0; /* unbind */
	}
	return 0;
}

/*
 * ibv_bind_mw (type 1; the header's inline checked type, range and PD): posted on the QP as a
 * bind work request with the next key byte; mw->rkey is the new rkey once it is posted.
 */
int vrb_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind)
{
	struct eng_send_wr e;
	struct eng_sge sge;
	uint32_t rkey;
	int bad = 0, err;

	if (!qp || !mw || !mw_bind)
		return EINVAL;
	if (mw_bind->send_flags & ~(unsigned int)(IBV_SEND_SIGNALED | IBV_SEND_FENCE))
		return EINVAL;
	memset(&e, 0, sizeof(e));
	rkey = ibv_inc_rkey(mw->rkey);
	err = vrb_bind_wr(qp, mw, rkey, &mw_bind->bind_info, &e, &sge);
	if (err)
		return err;
	e.wr_id = mw_bind->wr_id;
	e.flags = mw_bind->send_flags;
	err = eng_post_send(vrb_qp(qp)->eqp, &e, 1, &bad);
	if (err)
		return err;
	mw->rkey = rkey;
	return 0;
}
