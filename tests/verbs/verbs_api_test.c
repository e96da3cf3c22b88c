/* SPDX-License-Identifier: MIT */
/*
 * The verbs ABI through rdma-core's public header, as an application sees it: linked against
 * our libibverbs.so.1, calling the exported functions and the header's inlines (which jump
 * through the context's ops). Device: $SIW_TEST_DEVICE, default siw_lo.
 *
 * Argument errors are checked against the errno kernel siw + rdma-core 44 give. Built with
 * -DVRB_TEST_RDMA_CORE against rdma-core's own library (on a kernel with siw), the same cases
 * calibrate those expectations; cases where we deliberately differ, and NULL arguments (which
 * crash rdma-core), are left out of that build.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "test.h"

#ifdef VRB_TEST_RDMA_CORE
#define OURS 0
#else
#define OURS 1
#endif

/* rdma-core declares these in infiniband/driver.h, which Debian does not install. */
int ibv_query_gid_type(struct ibv_context *context, uint8_t port_num, unsigned int index,
		       int *type);
int ibv_read_sysfs_file(const char *dir, const char *file, char *buf, size_t size);
const char *ibv_get_sysfs_path(void);

#define CHECK_ERRNO_NULL(expr, err)                                                                \
	do {                                                                                       \
		errno = 0;                                                                         \
		void *_p = (void *)(expr);                                                         \
		CHECK(_p == NULL);                                                                 \
		CHECK_INT(errno, err);                                                             \
	} while (0)

static const char *dev_name(void)
{
	const char *n = getenv("SIW_TEST_DEVICE");

	return n && *n ? n : "siw_lo";
}

/* Opens the test device (or, with other, another device if there is one; else NULL). */
static struct ibv_context *open_dev(bool other)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	if (!list)
		return NULL;
	for (int i = 0; list[i] && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), dev_name()) != other)
			ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	return ctx;
}

struct res {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
};

static bool res_open(struct res *r, int cqe, bool channel)
{
	struct ibv_qp_init_attr ia = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 2}};

	memset(r, 0, sizeof(*r));
	r->ctx = open_dev(false);
	if (!r->ctx)
		return false;
	r->pd = ibv_alloc_pd(r->ctx);
	if (channel)
		r->ch = ibv_create_comp_channel(r->ctx);
	r->cq = ibv_create_cq(r->ctx, cqe, r, r->ch, 0);
	if (!r->pd || !r->cq || (channel && !r->ch))
		return false;
	ia.send_cq = ia.recv_cq = r->cq;
	ia.qp_context = r;
	r->qp = ibv_create_qp(r->pd, &ia);
	return r->qp != NULL;
}

static void res_close(struct res *r)
{
	if (r->qp)
		CHECK_INT(ibv_destroy_qp(r->qp), 0);
	if (r->cq)
		CHECK_INT(ibv_destroy_cq(r->cq), 0);
	if (r->ch)
		CHECK_INT(ibv_destroy_comp_channel(r->ch), 0);
	if (r->pd)
		CHECK_INT(ibv_dealloc_pd(r->pd), 0);
	if (r->ctx)
		CHECK_INT(ibv_close_device(r->ctx), 0);
}

static int to_err(struct res *r)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

	return ibv_modify_qp(r->qp, &a, IBV_QP_STATE);
}

/* ---- devices ----------------------------------------------------------------------------- */

static void test_verbs_device_list(void)
{
	struct ibv_device **list;
	int n = -1, found = 0;

	list = ibv_get_device_list(&n);
	REQUIRE(list);
	CHECK(n >= 1);
	CHECK(list[n] == NULL);
	for (int i = 0; i < n; i++) {
		struct ibv_device *d = list[i];

		CHECK_INT(d->node_type, IBV_NODE_RNIC);
		CHECK_INT(d->transport_type, IBV_TRANSPORT_IWARP);
		CHECK(!strcmp(ibv_get_device_name(d), d->name));
		CHECK(!strncmp(d->dev_name, "uverbs", 6));
		CHECK(d->dev_path[0] == '/' && d->ibdev_path[0] == '/');
		if (!strcmp(d->name, dev_name())) {
			found++;
			CHECK(ibv_get_device_guid(d) != 0);
			CHECK(ibv_get_device_index(d) >= 0);
		}
	}
	CHECK_INT(found, 1);
	ibv_free_device_list(list);

	/* The count is optional; a second list holds the same devices. */
	list = ibv_get_device_list(NULL);
	REQUIRE(list);
	CHECK(list[0] != NULL);
	ibv_free_device_list(list);
	if (OURS) {
		ibv_free_device_list(NULL);
		CHECK_ERRNO_NULL(ibv_get_device_name(NULL), EINVAL);
		CHECK_ERRNO_NULL(ibv_open_device(NULL), EINVAL);
	}
}

static void test_verbs_open_close(void)
{
	struct ibv_context *ctx = open_dev(false);
	struct verbs_context *vctx;

	REQUIRE(ctx);
	CHECK(!strcmp(ctx->device->name, dev_name()));
	/* The layout the header's inlines rely on. */
	vctx = verbs_get_ctx(ctx);
	REQUIRE(vctx);
	CHECK(ctx->abi_compat == __VERBS_ABI_IS_EXTENDED);
	CHECK(vctx->sz >= sizeof(struct verbs_context));
	CHECK(verbs_get_ctx_op(ctx, query_port) != NULL);
	CHECK(verbs_get_ctx_op(ctx, query_device_ex) != NULL);
	CHECK(ctx->ops.poll_cq && ctx->ops.req_notify_cq && ctx->ops.post_send &&
	      ctx->ops.post_recv && ctx->ops.post_srq_recv);
	CHECK(ctx->ops.alloc_mw && ctx->ops.bind_mw && ctx->ops.dealloc_mw);
	CHECK(ctx->async_fd >= 0);
	CHECK(ctx->num_comp_vectors >= 1);
	CHECK_INT(ibv_close_device(ctx), 0);

	/* Two contexts on one device are independent. */
	ctx = open_dev(false);
	REQUIRE(ctx);
	{
		struct ibv_context *c2 = open_dev(false);

		REQUIRE(c2);
		CHECK(c2 != ctx);
		CHECK_INT(ibv_close_device(c2), 0);
	}
	CHECK_INT(ibv_close_device(ctx), 0);
	if (OURS) {
		errno = 0;
		CHECK_INT(ibv_close_device(NULL), -1);
		CHECK_INT(errno, EINVAL);
	}
}

/* perftest's table of devices it drives with vendor extensions (ABI.md §3.4). */
static bool perftest_knows(uint32_t vendor, uint32_t part)
{
	static const uint32_t ranges[][2] = {
	    {4099, 4129},   {25408, 26478}, {41682, 41692}, {1824, 1824},   {5684, 5734},
	    {32880, 33168}, {5638, 5968},   {55296, 55300}, {61344, 61345},
	};

	if (vendor == 0x1425 || vendor == 0x8086)
		return true;
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (part >= ranges[i][0] && part <= ranges[i][1])
			return true;
	return false;
}

static void test_verbs_query_device(void)
{
	struct ibv_context *ctx = open_dev(false);
	struct ibv_query_device_ex_input in = {.comp_mask = 1};
	struct ibv_device_attr_ex ex;
	struct ibv_device_attr a;

	REQUIRE(ctx);
	CHECK_INT(ibv_query_device(ctx, &a), 0);
	CHECK_INT(a.phys_port_cnt, 1);
	CHECK_UINT(a.vendor_id, 0x626d74);
	CHECK(!perftest_knows(a.vendor_id, a.vendor_part_id));
	CHECK(a.node_guid == ibv_get_device_guid(ctx->device));
	CHECK(a.max_qp > 0 && a.max_qp_wr > 0 && a.max_cq > 0 && a.max_cqe > 0);
	CHECK(a.max_sge >= 1 && a.max_sge_rd >= 1 && a.max_srq_sge >= 1);
	CHECK(a.max_qp_rd_atom >= 1 && a.max_qp_init_rd_atom >= 1);
	CHECK(a.max_mr > 0 && a.max_pd > 0 && a.max_mr_size > 0);
	CHECK(a.device_cap_flags & IBV_DEVICE_MEM_MGT_EXTENSIONS);
	CHECK_INT(a.max_ah, 0);

	/* The inline reaches our query_device_ex op: full-size attributes. */
	memset(&ex, 0xa5, sizeof(ex));
	CHECK_INT(ibv_query_device_ex(ctx, NULL, &ex), 0);
	CHECK_MEM(&ex.orig_attr, &a, sizeof(a));
	CHECK_UINT(ex.phys_port_cnt_ex, 1);
	CHECK_UINT(ex.odp_caps.general_caps, 0);
	CHECK_UINT(ex.max_dm_size, 0);
	CHECK_INT(ibv_query_device_ex(ctx, &in, &ex), EINVAL);
	if (OURS) {
		/* Older callers pass a shorter struct; shorter than orig_attr is refused. */
		struct verbs_context *v = verbs_get_ctx(ctx);

		CHECK_INT(v->query_device_ex(ctx, NULL, &ex, sizeof(ex.orig_attr) - 1), EINVAL);
		CHECK_INT(v->query_device_ex(ctx, NULL, &ex, sizeof(ex.orig_attr)), 0);
		CHECK_INT(ibv_query_device(NULL, &a), EINVAL);
	}
	CHECK_INT(ibv_close_device(ctx), 0);
}

static void test_verbs_query_port(void)
{
	struct ibv_context *ctx = open_dev(false);
	struct ibv_port_attr pa, old;

	REQUIRE(ctx);
	memset(&pa, 0xa5, sizeof(pa));
	CHECK_INT(ibv_query_port(ctx, 1, &pa), 0);
	CHECK_INT(pa.state, IBV_PORT_ACTIVE);
	CHECK_INT(pa.link_layer, IBV_LINK_LAYER_ETHERNET);
	CHECK_INT(pa.phys_state, 5);
	CHECK(pa.active_mtu >= IBV_MTU_256 && pa.active_mtu <= IBV_MTU_4096);
	CHECK(pa.max_mtu >= pa.active_mtu && pa.max_mtu <= IBV_MTU_4096);
	if (!strcmp(dev_name(), "siw_lo"))
		CHECK_INT(pa.active_mtu, IBV_MTU_4096); /* lo's MTU is 65536 */
	CHECK_INT(pa.gid_tbl_len, 1);
	CHECK_UINT(pa.max_msg_sz, 0xffffffff);
	CHECK_UINT(pa.port_cap_flags, IBV_PORT_CM_SUP | IBV_PORT_DEVICE_MGMT_SUP);
	CHECK_UINT(pa.port_cap_flags2, 0);
	CHECK_INT(pa.lid, 0);
	CHECK(pa.active_width >= 1 && pa.active_speed >= 1);
	if (OURS)
		CHECK_INT(pa.pkey_tbl_len, 1); /* kernel siw: 0 */
	CHECK_INT(ibv_query_port(ctx, 2, &pa), EINVAL);
	CHECK_INT(ibv_query_port(ctx, 0, &pa), EINVAL);

	/* The exported function fills only the older, 48-byte struct. */
	memset(&old, 0xa5, sizeof(old));
	CHECK_INT((ibv_query_port)(ctx, 1, (struct _compat_ibv_port_attr *)&old), 0);
	CHECK_INT(old.state, IBV_PORT_ACTIVE);
	CHECK_INT(old.link_layer, IBV_LINK_LAYER_ETHERNET);
	CHECK_UINT(old.port_cap_flags2, 0xa5a5);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* Whether a device's interface has a MAC ("siw_<ifname>"; lo's is all zero). */
static bool dev_has_mac(const char *name)
{
	unsigned int m[6] = {0};
	char path[128];
	bool nonzero = false;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/address",
		 strncmp(name, "siw_", 4) ? name : name + 4);
	f = fopen(path, "r");
	if (!f)
		return strcmp(name, "siw_lo") != 0;
	if (fscanf(f, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
		m[0] = 0;
	fclose(f);
	for (int i = 0; i < 6; i++)
		nonzero |= m[i] != 0;
	return nonzero;
}

static void check_gid(struct ibv_context *ctx)
{
	bool has_mac = dev_has_mac(ctx->device->name);
	struct ibv_gid_entry e, tab[2];
	union ibv_gid gid, zero;
	int type = -1;

	memset(&zero, 0, sizeof(zero));
	CHECK_INT(ibv_query_gid(ctx, 1, 0, &gid), 0);
	/* kernel siw: the MAC, then zeros; lo's MAC is all zero. */
	CHECK_MEM(gid.raw + 6, zero.raw, 10);
	CHECK_INT(memcmp(gid.raw, zero.raw, 6) != 0, has_mac);
	errno = 0;
	CHECK_INT(ibv_query_gid(ctx, 1, 1, &gid), -1);
	CHECK(errno != 0);
	CHECK_INT(ibv_query_gid(ctx, 2, 0, &gid), -1);

	memset(&e, 0xa5, sizeof(e));
	if (has_mac) {
		CHECK_INT(ibv_query_gid_ex(ctx, 1, 0, &e, 0), 0);
		CHECK_MEM(e.gid.raw, gid.raw, 16);
		CHECK_UINT(e.gid_index, 0);
		CHECK_UINT(e.port_num, 1);
		CHECK_UINT(e.gid_type, IBV_GID_TYPE_IB);
		if (OURS) /* the interface; kernel siw (6.1) reports 0 */
			CHECK(e.ndev_ifindex > 0);
		CHECK_INT(ibv_query_gid_table(ctx, tab, 2, 0), 1);
		CHECK_MEM(&tab[0], &e, sizeof(e));
		CHECK_INT(ibv_query_gid_table(ctx, tab, 0, 0), -EINVAL);
	} else {
		/* An all-zero GID is an empty entry. */
		CHECK_INT(ibv_query_gid_ex(ctx, 1, 0, &e, 0), ENODATA);
		CHECK_INT(ibv_query_gid_table(ctx, tab, 2, 0), 0);
	}
	CHECK_INT(ibv_query_gid_ex(ctx, 1, 1, &e, 0), EINVAL);
	CHECK_INT(ibv_query_gid_ex(ctx, 1, 0, &e, 1), EINVAL);
	CHECK_INT(ibv_query_gid_type(ctx, 1, 0, &type), 0);
	CHECK_INT(type, 0); /* IBV_GID_TYPE_SYSFS_IB_ROCE_V1 */
}

static void test_verbs_gid_pkey(void)
{
	struct ibv_context *ctx = open_dev(false), *other;
	__be16 pkey = 0;

	REQUIRE(ctx);
	check_gid(ctx);
	other = open_dev(true);
	if (other) {
		check_gid(other);
		CHECK_INT(ibv_close_device(other), 0);
	}

	if (OURS) {
		/* One P_Key, the default 0xffff (kernel siw has none). */
		CHECK_INT(ibv_query_pkey(ctx, 1, 0, &pkey), 0);
		CHECK_UINT(pkey, 0xffff);
		CHECK_INT(ibv_get_pkey_index(ctx, 1, 0xffff), 0);
		errno = 0;
		CHECK_INT(ibv_get_pkey_index(ctx, 1, htobe16(0x8001)), -1);
		CHECK_INT(errno, ENOENT);
	}
	errno = 0;
	CHECK_INT(ibv_query_pkey(ctx, 1, 1, &pkey), -1);
	CHECK_INT(errno, ENOENT);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* ---- PD and MR --------------------------------------------------------------------------- */

static void test_verbs_pd_mr(void)
{
	struct ibv_context *ctx = open_dev(false);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	unsigned int flags;
	struct ibv_mr *mr, *mr2;
	struct ibv_pd *pd;
	char *buf;

	REQUIRE(ctx);
	buf = aligned_alloc(pg, 4 * pg);
	REQUIRE(buf);
	pd = ibv_alloc_pd(ctx);
	REQUIRE(pd);
	CHECK(pd->context == ctx);

	mr = ibv_reg_mr(pd, buf, 4 * pg,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	REQUIRE(mr);
	CHECK(mr->context == ctx && mr->pd == pd && mr->addr == buf && mr->length == 4 * pg);
	CHECK(mr->lkey == mr->rkey);
	/* A run-time flags value goes through ibv_reg_mr_iova2, optional bits ignored. */
	flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_RELAXED_ORDERING;
	mr2 = ibv_reg_mr(pd, buf + 100, 1000, flags);
	REQUIRE(mr2);
	CHECK(mr2->lkey != mr->lkey);
	CHECK_INT(ibv_dereg_mr(mr2), 0);
	mr2 = ibv_reg_mr_iova(pd, buf + 100, 1000, 0x10000 + 100, 0);
	REQUIRE(mr2);
	CHECK_INT(ibv_dereg_mr(mr2), 0);

	/* A PD with a region is busy. */
	CHECK_INT(ibv_dealloc_pd(pd), EBUSY);

	/* Access rules (kernel ib_check_mr_access): remote write/atomic need local write. */
	CHECK_ERRNO_NULL(ibv_reg_mr(pd, buf, pg, IBV_ACCESS_REMOTE_WRITE), EINVAL);
	CHECK_ERRNO_NULL(ibv_reg_mr(pd, buf, pg, IBV_ACCESS_REMOTE_ATOMIC), EINVAL);
	CHECK_ERRNO_NULL(ibv_reg_mr(pd, buf, pg, IBV_ACCESS_LOCAL_WRITE | (1 << 15)), EINVAL);
	CHECK_ERRNO_NULL(ibv_reg_mr(pd, buf, pg, IBV_ACCESS_ON_DEMAND), EINVAL);
	/* The tagged address keeps the buffer's offset in its page. */
	CHECK_ERRNO_NULL(ibv_reg_mr_iova(pd, buf + 100, 1000, 0x10000, 0), EINVAL);
	if (OURS) {
		CHECK_ERRNO_NULL(ibv_reg_mr(pd, buf, 0, 0), EINVAL);
		CHECK_ERRNO_NULL(ibv_reg_mr(pd, NULL, pg, 0), EFAULT);
		CHECK_ERRNO_NULL(ibv_reg_mr(NULL, buf, pg, 0), EINVAL);
		CHECK_INT(ibv_dereg_mr(NULL), EINVAL);
		CHECK_INT(ibv_dealloc_pd(NULL), EINVAL);
		CHECK_ERRNO_NULL(ibv_alloc_pd(NULL), EINVAL);
		CHECK_ERRNO_NULL(ibv_reg_dmabuf_mr(pd, 0, pg, 0, -1, 0), EOPNOTSUPP);
	}

	/* Re-registration. */
	errno = 0;
	CHECK_INT(ibv_rereg_mr(mr, 1 << 7, NULL, NULL, 0, 0), IBV_REREG_MR_ERR_INPUT);
	CHECK_INT(errno, EINVAL);
	errno = 0;
	CHECK_INT(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, NULL, 0, 0),
		  IBV_REREG_MR_ERR_INPUT);
	CHECK_INT(errno, EINVAL);
	if (OURS) {
		CHECK_INT(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0,
				       IBV_ACCESS_LOCAL_WRITE),
			  0);
		CHECK(mr->lkey == mr->rkey);
		CHECK_INT(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, buf + pg, pg, 0),
			  0);
		CHECK(mr->addr == buf + pg && mr->length == pg);
		errno = 0;
		CHECK_INT(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0,
				       IBV_ACCESS_REMOTE_WRITE),
			  IBV_REREG_MR_ERR_INPUT);
		CHECK_INT(errno, EINVAL);
	}
	CHECK_INT(ibv_dereg_mr(mr), 0);
	CHECK_INT(ibv_dealloc_pd(pd), 0);
	CHECK_INT(ibv_close_device(ctx), 0);
	free(buf);
}

/* ---- CQs and completion channels --------------------------------------------------------- */

static void test_verbs_cq(void)
{
	struct ibv_context *ctx = open_dev(false), *ctx2 = open_dev(false);
	struct ibv_comp_channel *ch, *ch2;
	struct ibv_device_attr a;
	struct ibv_wc wc[4];
	struct ibv_cq *cq;

	REQUIRE(ctx && ctx2);
	CHECK_INT(ibv_query_device(ctx, &a), 0);
	cq = ibv_create_cq(ctx, 1, (void *)0x1234, NULL, 0);
	REQUIRE(cq);
	CHECK(cq->context == ctx && cq->cq_context == (void *)0x1234 && cq->channel == NULL);
	CHECK(cq->cqe >= 1);
	CHECK_INT(ibv_poll_cq(cq, 4, wc), 0);
	CHECK_INT(ibv_req_notify_cq(cq, 0), 0);
	CHECK_INT(ibv_req_notify_cq(cq, 1), 0);
	if (OURS) { /* kernel siw cannot resize: EOPNOTSUPP */
		CHECK_INT(ibv_resize_cq(cq, 100), 0);
		CHECK(cq->cqe >= 100);
		CHECK_INT(ibv_resize_cq(cq, 0), EINVAL);
		CHECK_INT(ibv_resize_cq(cq, a.max_cqe + 1), EINVAL);
	}
	CHECK_INT(ibv_destroy_cq(cq), 0);

	CHECK_ERRNO_NULL(ibv_create_cq(ctx, 0, NULL, NULL, 0), EINVAL);
	CHECK_ERRNO_NULL(ibv_create_cq(ctx, a.max_cqe + 1, NULL, NULL, 0), EINVAL);
	CHECK_ERRNO_NULL(ibv_create_cq(ctx, 1, NULL, NULL, ctx->num_comp_vectors), EINVAL);
	CHECK_ERRNO_NULL(ibv_create_cq(ctx, 1, NULL, NULL, -1), EINVAL);

	/* Channels count the CQs that use them. */
	ch = ibv_create_comp_channel(ctx);
	ch2 = ibv_create_comp_channel(ctx2);
	REQUIRE(ch && ch2);
	CHECK(ch->context == ctx && ch->fd >= 0 && ch->refcnt == 0);
	if (OURS) /* the kernel checks neither: the CQ would signal another file's channel */
		CHECK_ERRNO_NULL(ibv_create_cq(ctx, 1, NULL, ch2, 0), EINVAL);
	cq = ibv_create_cq(ctx, 8, NULL, ch, 0);
	REQUIRE(cq);
	CHECK(cq->channel == ch);
	CHECK_INT(ch->refcnt, 1);
	CHECK_INT(ibv_destroy_comp_channel(ch), EBUSY);
	CHECK_INT(ibv_destroy_cq(cq), 0);
	CHECK_INT(ch->refcnt, 0);
	CHECK_INT(ibv_destroy_comp_channel(ch), 0);
	CHECK_INT(ibv_destroy_comp_channel(ch2), 0);
	if (OURS) {
		CHECK_ERRNO_NULL(ibv_create_comp_channel(NULL), EINVAL);
		CHECK_INT(ibv_destroy_comp_channel(NULL), EINVAL);
		CHECK_INT(ibv_destroy_cq(NULL), EINVAL);
		CHECK_INT(ibv_resize_cq(NULL, 1), EINVAL);
	}
	CHECK_INT(ibv_close_device(ctx2), 0);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* ---- SRQ --------------------------------------------------------------------------------- */

static void test_verbs_srq(void)
{
	struct ibv_context *ctx = open_dev(false);
	struct ibv_srq_init_attr ia = {.srq_context = (void *)7,
				       .attr = {.max_wr = 16, .max_sge = 2, .srq_limit = 4}};
	struct ibv_device_attr a;
	struct ibv_recv_wr wr[2], *bad = NULL;
	struct ibv_sge sge[3];
	struct ibv_srq_attr sa;
	struct ibv_srq *srq;
	struct ibv_pd *pd;
	char buf[64];

	REQUIRE(ctx);
	CHECK_INT(ibv_query_device(ctx, &a), 0);
	pd = ibv_alloc_pd(ctx);
	REQUIRE(pd);
	srq = ibv_create_srq(pd, &ia);
	REQUIRE(srq);
	CHECK(srq->context == ctx && srq->pd == pd && srq->srq_context == (void *)7);
	CHECK(ia.attr.max_wr >= 16 && ia.attr.max_sge >= 2);
	sa = ia.attr;
	sa.srq_limit = 2;
	CHECK_INT(ibv_modify_srq(srq, &sa, IBV_SRQ_LIMIT), 0);
	if (OURS) { /* rdma-core's siw provider has no query_srq: EOPNOTSUPP */
		CHECK_INT(ibv_query_srq(srq, &sa), 0);
		CHECK_UINT(sa.max_wr, ia.attr.max_wr);
		CHECK_UINT(sa.srq_limit, 2);
	}
	sa.srq_limit = ia.attr.max_wr + 1;
	CHECK_INT(ibv_modify_srq(srq, &sa, IBV_SRQ_LIMIT), EINVAL);
	CHECK_INT(ibv_dealloc_pd(pd), EBUSY);

	/* Posting: the list stops at the first bad WR, which bad_wr names. */
	for (int i = 0; i < 3; i++)
		sge[i] = (struct ibv_sge){.addr = (uintptr_t)buf, .length = 8, .lkey = 0};
	wr[0] = (struct ibv_recv_wr){.wr_id = 1, .next = &wr[1], .sg_list = sge, .num_sge = 1};
	wr[1] =
	    (struct ibv_recv_wr){.wr_id = 2, .sg_list = sge, .num_sge = (int)ia.attr.max_sge + 1};
	if (OURS) { /* rdma-core's siw provider does not check the SGE count */
		CHECK_INT(ibv_post_srq_recv(srq, wr, &bad), EINVAL);
		CHECK(bad == &wr[1]);
	}

	ia.attr = (struct ibv_srq_attr){.max_wr = 0, .max_sge = 1};
	CHECK_ERRNO_NULL(ibv_create_srq(pd, &ia), EINVAL);
	ia.attr = (struct ibv_srq_attr){.max_wr = (uint32_t)a.max_srq_wr + 1, .max_sge = 1};
	CHECK_ERRNO_NULL(ibv_create_srq(pd, &ia), EINVAL);
	ia.attr = (struct ibv_srq_attr){.max_wr = 4, .max_sge = (uint32_t)a.max_srq_sge + 1};
	CHECK_ERRNO_NULL(ibv_create_srq(pd, &ia), EINVAL);
	ia.attr = (struct ibv_srq_attr){.max_wr = 4, .max_sge = 1, .srq_limit = 5};
	CHECK_ERRNO_NULL(ibv_create_srq(pd, &ia), EINVAL);
	if (OURS) {
		CHECK_INT(ibv_modify_srq(srq, &sa, 1 << 5), EINVAL);
		CHECK_ERRNO_NULL(ibv_create_srq(NULL, &ia), EINVAL);
		CHECK_INT(ibv_destroy_srq(NULL), EINVAL);
	}
	CHECK_INT(ibv_destroy_srq(srq), 0);
	CHECK_INT(ibv_dealloc_pd(pd), 0);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* ---- QPs --------------------------------------------------------------------------------- */

static void test_verbs_qp_create(void)
{
	struct ibv_context *ctx = open_dev(false), *ctx2 = open_dev(false);
	struct ibv_qp_init_attr ia, base;
	struct ibv_srq_init_attr sia = {.attr = {.max_wr = 8, .max_sge = 1}};
	struct ibv_cq *cq, *cq2;
	struct ibv_device_attr a;
	struct ibv_recv_wr rwr = {.wr_id = 1}, *rbad = NULL;
	struct ibv_srq *srq;
	struct ibv_pd *pd;
	struct ibv_qp *qp;

	REQUIRE(ctx && ctx2);
	CHECK_INT(ibv_query_device(ctx, &a), 0);
	pd = ibv_alloc_pd(ctx);
	cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	cq2 = ibv_create_cq(ctx2, 16, NULL, NULL, 0);
	REQUIRE(pd && cq && cq2);
	memset(&base, 0, sizeof(base));
	base.qp_context = (void *)9;
	base.send_cq = base.recv_cq = cq;
	base.qp_type = IBV_QPT_RC;
	base.cap = (struct ibv_qp_cap){.max_send_wr = 10,
				       .max_recv_wr = 5,
				       .max_send_sge = 2,
				       .max_recv_sge = 2,
				       .max_inline_data = 16};

	ia = base;
	qp = ibv_create_qp(pd, &ia);
	REQUIRE(qp);
	CHECK(qp->context == ctx && qp->pd == pd && qp->send_cq == cq && qp->recv_cq == cq);
	CHECK(qp->qp_context == (void *)9 && qp->srq == NULL);
	CHECK_INT(qp->qp_type, IBV_QPT_RC);
	CHECK_INT(qp->state, IBV_QPS_RESET);
	CHECK(qp->qp_num != 0);
	/* What was granted comes back in the attributes (at least what was asked). */
	CHECK(ia.cap.max_send_wr >= 10 && ia.cap.max_recv_wr >= 5);
	CHECK(ia.cap.max_send_sge >= 2 && ia.cap.max_recv_sge >= 2);
	CHECK(ia.cap.max_inline_data >= 16);
	/* Objects in use cannot go. */
	CHECK_INT(ibv_destroy_cq(cq), EBUSY);
	CHECK_INT(ibv_dealloc_pd(pd), EBUSY);
	CHECK(ibv_qp_to_qp_ex(qp) == NULL);
	CHECK_INT(ibv_destroy_qp(qp), 0);

	/* iWARP: reliable connected only. */
	ia = base;
	ia.qp_type = IBV_QPT_UD;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EOPNOTSUPP);
	ia.qp_type = IBV_QPT_UC;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EOPNOTSUPP);
	/* Sizes: a send queue is required, limits are the device's. */
	ia = base;
	ia.cap.max_send_wr = 0;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia = base;
	ia.cap.max_send_wr = (uint32_t)a.max_qp_wr + 1;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia = base;
	ia.cap.max_recv_wr = (uint32_t)a.max_qp_wr + 1;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia = base;
	ia.cap.max_send_sge = (uint32_t)a.max_sge + 1;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia = base;
	ia.cap.max_recv_sge = (uint32_t)a.max_sge + 1;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia = base;
	ia.cap.max_inline_data = 1u << 20;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);

	/*
	 * With an SRQ the QP takes no receives itself; kernel siw still checks the receive
	 * sizes against the device limits.
	 */
	srq = ibv_create_srq(pd, &sia);
	REQUIRE(srq);
	ia = base;
	ia.srq = srq;
	ia.cap.max_recv_wr = (uint32_t)a.max_qp_wr + 1;
	CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
	ia.cap.max_recv_wr = 1;
	qp = ibv_create_qp(pd, &ia);
	REQUIRE(qp);
	CHECK(qp->srq == srq);
	CHECK_INT(ibv_destroy_srq(srq), EBUSY);
	if (OURS) { /* rdma-core's siw provider: -EINVAL */
		CHECK_INT(ibv_post_recv(qp, &rwr, &rbad), EINVAL);
		CHECK(rbad == &rwr);
	}
	CHECK_INT(ibv_destroy_qp(qp), 0);
	CHECK_INT(ibv_destroy_srq(srq), 0);

	if (OURS) {
		ia = base;
		ia.qp_type = 0;
		CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
		ia = base;
		ia.send_cq = NULL;
		CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
		ia = base;
		ia.recv_cq = cq2; /* another context's CQ */
		CHECK_ERRNO_NULL(ibv_create_qp(pd, &ia), EINVAL);
		CHECK_ERRNO_NULL(ibv_create_qp(NULL, &ia), EINVAL);
		CHECK_ERRNO_NULL(ibv_create_qp(pd, NULL), EINVAL);
		CHECK_INT(ibv_destroy_qp(NULL), EINVAL);
	}
	CHECK_INT(ibv_destroy_cq(cq), 0);
	CHECK_INT(ibv_destroy_cq(cq2), 0);
	CHECK_INT(ibv_dealloc_pd(pd), 0);
	CHECK_INT(ibv_close_device(ctx2), 0);
	CHECK_INT(ibv_close_device(ctx), 0);
}

/* rdma_cm / rping / perftest modify sequences on an unconnected QP. */
static void test_verbs_qp_modify_query(void)
{
	struct ibv_qp_init_attr init;
	struct ibv_qp_attr a, q;
	struct res r;

	REQUIRE(res_open(&r, 16, false));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = 1;
	a.qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
	CHECK_INT(
	    ibv_modify_qp(r.qp, &a,
			  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS),
	    0);
	CHECK_INT(r.qp->state, IBV_QPS_INIT);

	memset(&q, 0xa5, sizeof(q));
	memset(&init, 0xa5, sizeof(init));
	CHECK_INT(ibv_query_qp(r.qp, &q, IBV_QP_STATE | IBV_QP_CAP, &init), 0);
	if (OURS) /* kernel siw reports RESET for INIT (both are its IDLE) */
		CHECK_INT(q.qp_state, IBV_QPS_INIT);
	CHECK(q.cap.max_send_wr >= 4 && q.cap.max_recv_wr >= 4 && q.cap.max_recv_sge >= 2);
	CHECK(init.send_cq == r.cq && init.recv_cq == r.cq && init.srq == NULL);
	CHECK(init.qp_context == &r);
	CHECK_INT(init.qp_type, IBV_QPT_RC);
	CHECK_MEM(&init.cap, &q.cap, sizeof(q.cap));
	if (OURS)
		CHECK_UINT(q.qp_access_flags, IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);

	/* IB-only attributes are accepted and ignored. */
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = 77;
	a.rq_psn = 1;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.dlid = 3;
	a.ah_attr.port_num = 1;
	CHECK_INT(ibv_modify_qp(r.qp, &a,
				IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				    IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
				    IBV_QP_MIN_RNR_TIMER),
		  0);
	CHECK_INT(r.qp->state, IBV_QPS_RTR);
	/* As kernel siw: RTS needs the connection manager's socket, so an unconnected QP refuses. */
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = 1;
	a.max_rd_atomic = 1;
	CHECK_INT(ibv_modify_qp(r.qp, &a,
				IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				    IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC),
		  EINVAL);
	CHECK_INT(r.qp->state, IBV_QPS_RTR);
	/* perftest after rdma_accept: MIN_RNR_TIMER alone. */
	CHECK_INT(ibv_modify_qp(r.qp, &a, IBV_QP_MIN_RNR_TIMER), 0);

	/* Bad attributes. */
	a.port_num = 2;
	CHECK_INT(ibv_modify_qp(r.qp, &a, IBV_QP_PORT), EINVAL);
	a.qp_state = IBV_QPS_UNKNOWN;
	CHECK_INT(ibv_modify_qp(r.qp, &a, IBV_QP_STATE), EINVAL);
	CHECK_INT(ibv_modify_qp(r.qp, &a, IBV_QP_RATE_LIMIT), EOPNOTSUPP);
	CHECK_INT(ibv_modify_qp(r.qp, &a, 1 << 21), EOPNOTSUPP);
	if (OURS) {
		CHECK_INT(ibv_modify_qp(NULL, &a, 0), EINVAL);
		CHECK_INT(ibv_modify_qp(r.qp, NULL, 0), EINVAL);
		CHECK_INT(ibv_query_qp(r.qp, NULL, 0, &init), EINVAL);
	}

	CHECK_INT(to_err(&r), 0);
	CHECK_INT(r.qp->state, IBV_QPS_ERR);
	CHECK_INT(ibv_query_qp(r.qp, &q, IBV_QP_STATE, &init), 0);
	if (OURS)
		CHECK_INT(q.qp_state, IBV_QPS_ERR);
	/* ERR -> RESET makes the QP usable again. */
	a.qp_state = IBV_QPS_RESET;
	CHECK_INT(ibv_modify_qp(r.qp, &a, IBV_QP_STATE), 0);
	CHECK_INT(r.qp->state, IBV_QPS_RESET);
	res_close(&r);
}

/* ---- completions: a QP in ERROR completes what is posted with WR_FLUSH_ERR --------------- */

static void test_verbs_flush_poll(void)
{
	struct ibv_send_wr swr[2], *sbad = NULL;
	struct ibv_recv_wr rwr[3], *rbad = NULL;
	struct ibv_sge sge[3];
	struct ibv_wc wc[8];
	char buf[64];
	struct res r;
	int n;

	/* Kernel siw does not flush WRs user space posts to a QP in ERROR. */
	if (!OURS)
		return;

	REQUIRE(res_open(&r, 128, false));
	CHECK_INT(to_err(&r), 0);
	for (int i = 0; i < 3; i++)
		sge[i] = (struct ibv_sge){.addr = (uintptr_t)buf, .length = 16, .lkey = 0};
	for (int i = 0; i < 3; i++)
		rwr[i] = (struct ibv_recv_wr){.wr_id = 100 + (uint64_t)i,
					      .next = i < 2 ? &rwr[i + 1] : NULL,
					      .sg_list = sge,
					      .num_sge = 1};
	CHECK_INT(ibv_post_recv(r.qp, rwr, &rbad), 0);
	n = ibv_poll_cq(r.cq, 8, wc);
	CHECK_INT(n, 3);
	for (int i = 0; i < n; i++) {
		CHECK_UINT(wc[i].wr_id, 100 + (uint64_t)i);
		CHECK_INT(wc[i].status, IBV_WC_WR_FLUSH_ERR);
		CHECK_INT(wc[i].opcode & IBV_WC_RECV, IBV_WC_RECV);
		CHECK_UINT(wc[i].qp_num, r.qp->qp_num);
	}
	CHECK_INT(ibv_poll_cq(r.cq, 8, wc), 0);

	/* A send list: the first WR is posted (and flushed), the second is refused. */
	swr[0] = (struct ibv_send_wr){.wr_id = 7,
				      .next = &swr[1],
				      .sg_list = sge,
				      .num_sge = 1,
				      .opcode = IBV_WR_SEND,
				      .send_flags = IBV_SEND_SIGNALED};
	swr[1] = swr[0];
	swr[1].wr_id = 8;
	swr[1].next = NULL;
	swr[1].num_sge = 3; /* the QP has one send SGE */
	CHECK_INT(ibv_post_send(r.qp, swr, &sbad), EINVAL);
	CHECK(sbad == &swr[1]);
	CHECK_INT(ibv_poll_cq(r.cq, 8, wc), 1);
	CHECK_UINT(wc[0].wr_id, 7);
	CHECK_INT(wc[0].status, IBV_WC_WR_FLUSH_ERR);
	swr[0].next = NULL;
	swr[0].opcode = IBV_WR_TSO; /* not an iWARP operation */
	sbad = NULL;
	CHECK_INT(ibv_post_send(r.qp, swr, &sbad), EINVAL);
	CHECK(sbad == &swr[0]);
	/* A receive with more SGEs than the QP has. */
	rwr[0].next = NULL;
	rwr[0].num_sge = 3;
	rbad = NULL;
	CHECK_INT(ibv_post_recv(r.qp, rwr, &rbad), EINVAL);
	CHECK(rbad == &rwr[0]);
	if (OURS) {
		CHECK(ibv_poll_cq(r.cq, -1, wc) < 0);
		rwr[0].num_sge = -1;
		CHECK_INT(ibv_post_recv(r.qp, rwr, &rbad), EINVAL);
	}

	/* Many WRs in one list (more than one engine batch). */
	{
		struct ibv_recv_wr many[100], *bad = NULL;
		int got = 0;

		for (int i = 0; i < 100; i++)
			many[i] = (struct ibv_recv_wr){.wr_id = (uint64_t)i,
						       .next = i < 99 ? &many[i + 1] : NULL,
						       .sg_list = sge,
						       .num_sge = 1};
		CHECK_INT(ibv_post_recv(r.qp, many, &bad), 0);
		while ((n = ibv_poll_cq(r.cq, 7, wc)) > 0) {
			for (int i = 0; i < n; i++)
				CHECK_UINT(wc[i].wr_id, (uint64_t)(got + i));
			got += n;
		}
		CHECK_INT(got, 100);
	}
	res_close(&r);
}

struct destroyer {
	struct ibv_cq *cq;
	volatile int done;
	int ret;
};

static void *destroy_cq_thread(void *arg)
{
	struct destroyer *d = arg;

	d->ret = ibv_destroy_cq(d->cq);
	d->done = 1;
	return NULL;
}

/* One-shot arming, events through the channel fd, and destroy waiting for acks. */
static void test_verbs_comp_channel(void)
{
	struct ibv_recv_wr rwr = {.wr_id = 5}, *bad = NULL;
	struct pollfd pfd;
	struct ibv_cq *ecq = NULL;
	struct destroyer d;
	void *ectx = NULL;
	struct ibv_wc wc;
	pthread_t th;
	struct res r;
	int fl;

	/* Kernel siw does not flush WRs user space posts to a QP in ERROR. */
	if (!OURS)
		return;

	REQUIRE(res_open(&r, 16, true));
	pfd = (struct pollfd){.fd = r.ch->fd, .events = POLLIN};
	CHECK_INT(to_err(&r), 0);

	/* Not armed: a completion raises no event. */
	CHECK_INT(ibv_post_recv(r.qp, &rwr, &bad), 0);
	CHECK_INT(poll(&pfd, 1, 50), 0);
	CHECK_INT(ibv_poll_cq(r.cq, 1, &wc), 1);

	/* Armed: one event, then disarmed. */
	CHECK_INT(ibv_req_notify_cq(r.cq, 0), 0);
	CHECK_INT(ibv_post_recv(r.qp, &rwr, &bad), 0);
	CHECK_INT(ibv_post_recv(r.qp, &rwr, &bad), 0);
	CHECK_INT(poll(&pfd, 1, 2000), 1);
	CHECK_INT(ibv_get_cq_event(r.ch, &ecq, &ectx), 0);
	CHECK(ecq == r.cq && ectx == &r);
	CHECK_INT(poll(&pfd, 1, 50), 0);
	CHECK_INT(ibv_poll_cq(r.cq, 1, &wc), 1);
	CHECK_INT(ibv_poll_cq(r.cq, 1, &wc), 1);
	CHECK_INT(ibv_poll_cq(r.cq, 1, &wc), 0);

	/* A non-blocking channel fd: EAGAIN instead of waiting. */
	fl = fcntl(r.ch->fd, F_GETFL);
	CHECK_INT(fcntl(r.ch->fd, F_SETFL, fl | O_NONBLOCK), 0);
	errno = 0;
	CHECK_INT(ibv_get_cq_event(r.ch, &ecq, &ectx), -1);
	CHECK_INT(errno, EAGAIN);
	CHECK_INT(fcntl(r.ch->fd, F_SETFL, fl), 0);

	/* Destroying the CQ waits until its event has been acknowledged. */
	CHECK_INT(ibv_destroy_qp(r.qp), 0);
	r.qp = NULL;
	d = (struct destroyer){.cq = r.cq};
	REQUIRE(pthread_create(&th, NULL, destroy_cq_thread, &d) == 0);
	usleep(100 * 1000);
	CHECK_INT(d.done, 0);
	ibv_ack_cq_events(r.cq, 1);
	pthread_join(th, NULL);
	CHECK_INT(d.done, 1);
	CHECK_INT(d.ret, 0);
	r.cq = NULL;
	res_close(&r);
}

/* An event still queued for a destroyed CQ is never handed out, not even to a new CQ. */
static void test_verbs_channel_stale_event(void)
{
	struct ibv_recv_wr rwr = {.wr_id = 5}, *bad = NULL;
	struct ibv_cq *ecq = NULL;
	struct pollfd pfd;
	void *ectx = NULL;
	struct res r;

	/* Kernel siw does not flush WRs user space posts to a QP in ERROR. */
	if (!OURS)
		return;
	REQUIRE(res_open(&r, 16, true));
	pfd = (struct pollfd){.fd = r.ch->fd, .events = POLLIN};
	CHECK_INT(to_err(&r), 0);
	CHECK_INT(ibv_req_notify_cq(r.cq, 0), 0);
	CHECK_INT(ibv_post_recv(r.qp, &rwr, &bad), 0);
	CHECK_INT(poll(&pfd, 1, 2000), 1);
	/* Nothing was handed out, so nothing to acknowledge: destroy does not wait. */
	CHECK_INT(ibv_destroy_qp(r.qp), 0);
	r.qp = NULL;
	CHECK_INT(ibv_destroy_cq(r.cq), 0);
	/* A new CQ on the channel, quite likely at the old one's address. */
	r.cq = ibv_create_cq(r.ctx, 16, &r, r.ch, 0);
	REQUIRE(r.cq);
	CHECK_INT(fcntl(r.ch->fd, F_SETFL, fcntl(r.ch->fd, F_GETFL) | O_NONBLOCK), 0);
	errno = 0;
	CHECK_INT(ibv_get_cq_event(r.ch, &ecq, &ectx), -1);
	CHECK_INT(errno, EAGAIN);
	res_close(&r);
}

/* ---- async events ------------------------------------------------------------------------ */

static void test_verbs_async_event(void)
{
	struct ibv_recv_wr rwr[2], *bad = NULL;
	struct ibv_async_event ev;
	struct ibv_wc wc[2];
	struct pollfd pfd;
	struct res r;
	int fl;

	/* A one-entry CQ overflows when two receives are flushed into it: CQ error. */
	REQUIRE(res_open(&r, 1, false));
	pfd = (struct pollfd){.fd = r.ctx->async_fd, .events = POLLIN};
	fl = fcntl(r.ctx->async_fd, F_GETFL);
	CHECK_INT(fcntl(r.ctx->async_fd, F_SETFL, fl | O_NONBLOCK), 0);
	errno = 0;
	CHECK_INT(ibv_get_async_event(r.ctx, &ev), -1);
	CHECK_INT(errno, EAGAIN);
	CHECK_INT(poll(&pfd, 1, 0), 0);
	CHECK_INT(fcntl(r.ctx->async_fd, F_SETFL, fl), 0);

	/* Kernel siw does not flush WRs user space posts to a QP in ERROR. */
	if (!OURS) {
		res_close(&r);
		return;
	}
	CHECK_INT(to_err(&r), 0);
	rwr[0] = (struct ibv_recv_wr){.wr_id = 1, .next = &rwr[1]};
	rwr[1] = (struct ibv_recv_wr){.wr_id = 2};
	CHECK_INT(ibv_post_recv(r.qp, rwr, &bad), 0);
	CHECK_INT(poll(&pfd, 1, 2000), 1);
	/* Blocking mode: an event is there, so it returns at once. */
	CHECK_INT(ibv_get_async_event(r.ctx, &ev), 0);
	CHECK_INT(ev.event_type, IBV_EVENT_CQ_ERR);
	CHECK(ev.element.cq == r.cq);
	CHECK(!strcmp(ibv_event_type_str(ev.event_type), "CQ error"));
	ibv_ack_async_event(&ev);
	CHECK_UINT(r.cq->async_events_completed, 1);
	CHECK(ibv_poll_cq(r.cq, 2, wc) >= 1);
	if (OURS) {
		errno = 0;
		CHECK_INT(ibv_get_async_event(NULL, &ev), -1);
		CHECK_INT(errno, EINVAL);
		ibv_ack_async_event(NULL);
	}
	res_close(&r);
}

/* ---- the rest ---------------------------------------------------------------------------- */

static void test_verbs_strings_rates(void)
{
	CHECK(!strcmp(ibv_wc_status_str(IBV_WC_SUCCESS), "success"));
	CHECK(!strcmp(ibv_wc_status_str(IBV_WC_WR_FLUSH_ERR), "Work Request Flushed Error"));
	CHECK(!strcmp(ibv_wc_status_str((enum ibv_wc_status)999), "unknown"));
	CHECK(!strcmp(ibv_node_type_str(IBV_NODE_RNIC), "iWARP NIC"));
	CHECK(!strcmp(ibv_node_type_str(IBV_NODE_UNKNOWN), "unknown"));
	CHECK(!strcmp(ibv_port_state_str(IBV_PORT_ACTIVE), "active"));
	CHECK(!strcmp(ibv_port_state_str((enum ibv_port_state)42), "unknown"));
	CHECK(
	    !strcmp(ibv_event_type_str(IBV_EVENT_QP_FATAL), "local work queue catastrophic error"));
	CHECK(!strcmp(ibv_event_type_str((enum ibv_event_type) - 1), "unknown"));

	CHECK_INT(ibv_rate_to_mult(IBV_RATE_10_GBPS), 4);
	CHECK_INT(ibv_rate_to_mult(IBV_RATE_600_GBPS), 240);
	CHECK_INT(ibv_rate_to_mult(IBV_RATE_14_GBPS), -1);
	CHECK_INT(mult_to_ibv_rate(48), IBV_RATE_120_GBPS);
	CHECK_INT(mult_to_ibv_rate(3), IBV_RATE_MAX);
	CHECK_INT(ibv_rate_to_mbps(IBV_RATE_25_GBPS), 25781);
	CHECK_INT(ibv_rate_to_mbps(IBV_RATE_MAX), -1);
	CHECK_INT(mbps_to_ibv_rate(56250), IBV_RATE_56_GBPS);
	CHECK_INT(mbps_to_ibv_rate(1), IBV_RATE_MAX);
}

static void test_verbs_misc(void)
{
	struct ibv_context *ctx = open_dev(false);
	struct ibv_qp_init_attr_ex qx;
	struct ibv_cq_init_attr_ex cqx = {.cqe = 4};
	struct ibv_ah_attr ah = {.port_num = 1};
	struct ibv_ece ece;
	union ibv_gid gid;
	char buf[64];
	struct res r;

	REQUIRE(ctx);
	if (OURS) {
		CHECK_INT(ibv_fork_init(), 0);
		CHECK_INT(ibv_is_fork_initialized(), IBV_FORK_UNNEEDED);
		/* Our devices have no sysfs directory. */
		errno = 0;
		CHECK_INT(
		    ibv_read_sysfs_file(ctx->device->ibdev_path, "board_id", buf, sizeof(buf)), -1);
		CHECK_INT(errno, ENOENT);
		CHECK(ibv_get_sysfs_path() != NULL);
		CHECK_ERRNO_NULL(ibv_import_device(ctx->cmd_fd), EOPNOTSUPP);
		memset(&gid, 0, sizeof(gid));
		CHECK_INT(ibv_resolve_eth_l2_from_gid(ctx, &ah, (uint8_t *)buf, NULL), -EOPNOTSUPP);
	}

	REQUIRE(res_open(&r, 4, false));
	CHECK_ERRNO_NULL(ibv_create_ah(r.pd, &ah), EOPNOTSUPP);
	if (OURS) {
		/* Memory windows and extended CQs exist (tests/xverbs uses them). */
		struct ibv_mw *mw = ibv_alloc_mw(r.pd, IBV_MW_TYPE_1);
		struct ibv_cq_ex *cq = ibv_create_cq_ex(r.ctx, &cqx);

		CHECK(mw != NULL);
		if (mw)
			CHECK_INT(ibv_dealloc_mw(mw), 0);
		CHECK(cq != NULL);
		if (cq)
			CHECK_INT(ibv_destroy_cq(ibv_cq_ex_to_cq(cq)), 0);
	} else {
		/* Kernel siw and its rdma-core provider have neither. */
		CHECK_ERRNO_NULL(ibv_alloc_mw(r.pd, IBV_MW_TYPE_1), EOPNOTSUPP);
		CHECK_ERRNO_NULL(ibv_create_cq_ex(r.ctx, &cqx), EOPNOTSUPP);
	}
	memset(&gid, 0, sizeof(gid));
	gid.raw[0] = 0xff;
	CHECK_INT(ibv_attach_mcast(r.qp, &gid, 0), EOPNOTSUPP);
	CHECK_INT(ibv_detach_mcast(r.qp, &gid, 0), EOPNOTSUPP);
	CHECK_INT(ibv_query_ece(r.qp, &ece), EOPNOTSUPP);
	CHECK_INT(ibv_query_qp_data_in_order(r.qp, IBV_WR_RDMA_WRITE, 0), 0);

	/* create_qp_ex with only a PD is plain ibv_create_qp (the header's inline). */
	memset(&qx, 0, sizeof(qx));
	qx.send_cq = qx.recv_cq = r.cq;
	qx.qp_type = IBV_QPT_RC;
	qx.cap = (struct ibv_qp_cap){
	    .max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1};
	qx.comp_mask = IBV_QP_INIT_ATTR_PD;
	qx.pd = r.pd;
	{
		struct ibv_qp *qp = ibv_create_qp_ex(r.ctx, &qx);

		REQUIRE(qp);
		CHECK_INT(ibv_destroy_qp(qp), 0);
	}
	qx.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
	if (OURS) {
		struct ibv_qp *qp;

		qx.send_ops_flags = IBV_QP_EX_WITH_SEND;
		qp = ibv_create_qp_ex(r.ctx, &qx);
		REQUIRE(qp);
		CHECK(ibv_qp_to_qp_ex(qp) != NULL);
		CHECK_INT(ibv_destroy_qp(qp), 0);
		qx.send_ops_flags = IBV_QP_EX_WITH_TSO;
	}
	CHECK_ERRNO_NULL(ibv_create_qp_ex(r.ctx, &qx), EOPNOTSUPP);
	res_close(&r);
	CHECK_INT(ibv_close_device(ctx), 0);
}

T_MAIN(T_CASE(test_verbs_device_list), T_CASE(test_verbs_open_close),
       T_CASE(test_verbs_query_device), T_CASE(test_verbs_query_port), T_CASE(test_verbs_gid_pkey),
       T_CASE(test_verbs_pd_mr), T_CASE(test_verbs_cq), T_CASE(test_verbs_srq),
       T_CASE(test_verbs_qp_create), T_CASE(test_verbs_qp_modify_query),
       T_CASE(test_verbs_flush_poll), T_CASE(test_verbs_comp_channel),
       T_CASE(test_verbs_channel_stale_event), T_CASE(test_verbs_async_event),
       T_CASE(test_verbs_strings_rates), T_CASE(test_verbs_misc))
