/* SPDX-License-Identifier: MIT */
/*
 * Devices and contexts: one ibv_device per engine device, contexts laid out as rdma-core 44's
 * struct verbs_context, and the device / port / GID / P_Key queries, answered the way the
 * kernel siw driver answers them (checked against siw on Linux 6.1 with rdma-core 44).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "siw_verbs.h"
#include "vrb.h"

#undef ibv_query_port /* verbs.h turns it into the inline that prefers our query_port op */

/* ---- the device registry ----------------------------------------------------------------- */

/*
 * Every device ever listed stays here while a list or a context refers to it, so the
 * ibv_device pointers applications keep stay valid after ibv_free_device_list (as long as
 * the device was opened) and across rescans. vrb_dev_lock also serializes eng_devices(),
 * whose result array only lives until its next call.
 */
static pthread_mutex_t vrb_dev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vrb_device *vrb_devs;
static unsigned int vrb_dev_seq; /* N of the next "uverbsN" */

static struct vrb_device *vrb_dev_new(const struct eng_device *e)
{
	struct vrb_device *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->edev = *e;
	d->ibdev.node_type = IBV_NODE_RNIC;
	d->ibdev.transport_type = IBV_TRANSPORT_IWARP;
	snprintf(d->ibdev.name, sizeof(d->ibdev.name), "%.63s", e->name);
	snprintf(d->ibdev.dev_name, sizeof(d->ibdev.dev_name), "uverbs%u", vrb_dev_seq);
	/*
	 * Paths shaped like the kernel's, but nothing backs them: ibv_read_sysfs_file refuses
	 * them (ENOENT), so a kernel device of the same name is never read by mistake.
	 */
	snprintf(d->ibdev.dev_path, sizeof(d->ibdev.dev_path),
		 "/sys/class/infiniband_verbs/uverbs%u", vrb_dev_seq);
	snprintf(d->ibdev.ibdev_path, sizeof(d->ibdev.ibdev_path), "/sys/class/infiniband/%.63s",
		 e->name);
	vrb_dev_seq++;
	return d;
}

/* Frees a device nobody refers to any more. Must hold vrb_dev_lock. */
static void vrb_dev_reap_locked(void)
{
	struct vrb_device **pp = &vrb_devs, *d;

	while ((d = *pp)) {
		if (!d->present && !d->lists && !d->contexts) {
			*pp = d->next;
			free(d);
		} else {
			pp = &d->next;
		}
	}
}

/*
 * Re-reads the engine's devices. Returns 0 and a malloc'ed, NULL-terminated array in the
 * engine's order (each device's list count taken), or an errno. Must hold vrb_dev_lock.
 */
static int vrb_dev_scan_locked(struct ibv_device ***out, int *count)
{
	const struct eng_device *list;
	struct ibv_device **res;
	struct vrb_device *d, **tail;
	int n = eng_devices(&list);

	if (n < 0)
		return -n;
	res = calloc((size_t)n + 1, sizeof(*res));
	if (!res)
		return ENOMEM;
	for (d = vrb_devs; d; d = d->next)
		d->present = false;
	for (int i = 0; i < n; i++) {
		for (tail = &vrb_devs; (d = *tail); tail = &d->next)
			if (d->edev.ifindex == list[i].ifindex &&
			    !strcmp(d->edev.name, list[i].name))
				break;
		if (!d) {
			d = vrb_dev_new(&list[i]);
			if (!d) {
				for (int j = 0; j < i; j++)
					vrb_dev(res[j])->lists--;
				free(res);
				vrb_dev_reap_locked();
				return ENOMEM;
			}
			*tail = d;
		} else if (!d->contexts) {
			/*
			 * Addresses, MTU and state change. The copy is refreshed only while no
			 * context is open, so what siw_verbs_device() hands out stays put for
			 * the users of a context (eng_ctx_open copies it anyway).
			 */
			d->edev = list[i];
		}
		d->present = true;
		d->lists++;
		res[i] = &d->ibdev;
	}
	vrb_dev_reap_locked();
	*out = res;
	*count = n;
	return 0;
}

/* Our device behind an application's pointer, or NULL. Must hold vrb_dev_lock. */
static struct vrb_device *vrb_dev_find_locked(const struct ibv_device *ibdev)
{
	for (struct vrb_device *d = vrb_devs; d; d = d->next)
		if (&d->ibdev == ibdev)
			return d;
	return NULL;
}

static bool vrb_path_under(const char *dir, const char *path)
{
	size_t n = strlen(path);

	return !strncmp(dir, path, n) && (dir[n] == '\0' || dir[n] == '/');
}

bool vrb_dev_owns_path(const char *dir)
{
	bool owned = false;

	pthread_mutex_lock(&vrb_dev_lock);
	for (struct vrb_device *d = vrb_devs; d && !owned; d = d->next)
		owned = vrb_path_under(dir, d->ibdev.dev_path) ||
			vrb_path_under(dir, d->ibdev.ibdev_path);
	pthread_mutex_unlock(&vrb_dev_lock);
	return owned;
}

VRB_EXPORT struct ibv_device **ibv_get_device_list(int *num_devices)
{
	struct ibv_device **list = NULL;
	int n = 0, err;

	if (num_devices)
		*num_devices = 0;
	pthread_mutex_lock(&vrb_dev_lock);
	err = vrb_dev_scan_locked(&list, &n);
	pthread_mutex_unlock(&vrb_dev_lock);
	if (err) {
		vrb_err("cannot list devices: %s\n", strerror(err));
		errno = err;
		return NULL;
	}
	if (num_devices)
		*num_devices = n;
	return list;
}

VRB_EXPORT void ibv_free_device_list(struct ibv_device **list)
{
	if (!list)
		return;
	pthread_mutex_lock(&vrb_dev_lock);
	for (struct ibv_device **p = list; *p; p++) {
		struct vrb_device *d = vrb_dev_find_locked(*p);

		if (d && d->lists)
			d->lists--;
	}
	vrb_dev_reap_locked();
	pthread_mutex_unlock(&vrb_dev_lock);
	free(list);
}

VRB_EXPORT const char *ibv_get_device_name(struct ibv_device *device)
{
	if (!device) {
		errno = EINVAL;
		return NULL;
	}
	return device->name;
}

VRB_EXPORT __be64 ibv_get_device_guid(struct ibv_device *device)
{
	__be64 guid = 0;

	if (!device)
		return 0;
	pthread_mutex_lock(&vrb_dev_lock);
	guid = vrb_dev(device)->edev.node_guid;
	pthread_mutex_unlock(&vrb_dev_lock);
	return guid;
}

/* The interface index: stable for the device's life and the same in every process. */
VRB_EXPORT int ibv_get_device_index(struct ibv_device *device)
{
	int idx;

	if (!device)
		return -1;
	pthread_mutex_lock(&vrb_dev_lock);
	idx = (int)vrb_dev(device)->edev.ifindex;
	pthread_mutex_unlock(&vrb_dev_lock);
	return idx;
}

/* ---- contexts ---------------------------------------------------------------------------- */

static const struct ibv_context_ops vrb_ctx_ops = {
    .alloc_mw = vrb_alloc_mw,
    .bind_mw = vrb_bind_mw,
    .dealloc_mw = vrb_dealloc_mw,
    .poll_cq = vrb_poll_cq,
    .post_recv = vrb_post_recv,
    .post_send = vrb_post_send,
    .post_srq_recv = vrb_post_srq_recv,
    .req_notify_cq = vrb_req_notify_cq,
};

VRB_EXPORT struct ibv_context *ibv_open_device(struct ibv_device *device)
{
	struct vrb_context *c;
	struct ibv_context *ctx;
	struct vrb_device *d;
	int err;

	if (!device) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&vrb_dev_lock);
	d = vrb_dev_find_locked(device);
	if (d && !d->present)
		d = NULL; /* unplugged since it was listed */
	if (d)
		d->contexts++;
	pthread_mutex_unlock(&vrb_dev_lock);
	if (!d) {
		errno = ENODEV;
		return NULL;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		err = ENOMEM;
		goto err_put;
	}
	errno = 0;
	c->ectx = eng_ctx_open(&d->edev);
	if (!c->ectx) {
		err = errno ? errno : ENOMEM;
		goto err_free;
	}
	c->dev = d;
	eng_device_query(&d->edev, &c->attr);

	ctx = &c->vctx.context;
	ctx->device = device;
	ctx->ops = vrb_ctx_ops;
	ctx->cmd_fd = -1; /* there is no uverbs command channel */
	ctx->async_fd = vrb_async_fd_open(eng_ctx_async_fd(c->ectx));
	if (ctx->async_fd < 0) {
		err = errno;
		goto err_close;
	}
	ctx->num_comp_vectors = c->attr.num_comp_vectors > 0 ? c->attr.num_comp_vectors : 1;
	pthread_mutex_init(&ctx->mutex, NULL);
	ctx->abi_compat = __VERBS_ABI_IS_EXTENDED;
	c->vctx.sz = sizeof(struct verbs_context);
	c->vctx.query_port = vrb_query_port_op;
	c->vctx.query_device_ex = vrb_query_device_ex_op;
	c->vctx.create_cq_ex = vrb_create_cq_ex_op;
	c->vctx.create_qp_ex = vrb_create_qp_ex_op;
	vrb_debug("opened %s\n", device->name);
	return ctx;

err_close:
	eng_ctx_close(c->ectx);
err_free:
	free(c);
err_put:
	pthread_mutex_lock(&vrb_dev_lock);
	d->contexts--;
	vrb_dev_reap_locked();
	pthread_mutex_unlock(&vrb_dev_lock);
	vrb_err("cannot open %s: %s\n", device->name, strerror(err));
	errno = err;
	return NULL;
}

VRB_EXPORT int ibv_close_device(struct ibv_context *context)
{
	struct vrb_context *c;
	int err;

	if (!context) {
		errno = EINVAL;
		return -1;
	}
	c = vrb_ctx(context);
	/* rdma-core frees whatever is left; the engine refuses instead (EBUSY): report it. */
	err = eng_ctx_close(c->ectx);
	if (err) {
		vrb_warn("cannot close %s: %s (objects still exist)\n", context->device->name,
			 strerror(err));
		errno = err;
		return -1;
	}
	close(context->async_fd);
	pthread_mutex_destroy(&context->mutex);
	pthread_mutex_lock(&vrb_dev_lock);
	c->dev->contexts--;
	vrb_dev_reap_locked();
	pthread_mutex_unlock(&vrb_dev_lock);
	free(c);
	return 0;
}

/* ---- device attributes ------------------------------------------------------------------- */

static void vrb_fill_device_attr(struct vrb_context *c, struct ibv_device_attr *a)
{
	const struct eng_device_attr *e = &c->attr;

	memset(a, 0, sizeof(*a));
	snprintf(a->fw_ver, sizeof(a->fw_ver), "%.63s", e->fw_ver);
	a->node_guid = e->node_guid;
	a->sys_image_guid = e->sys_image_guid;
	a->max_mr_size = e->max_mr_size;
	a->page_size_cap = e->page_size_cap;
	a->vendor_id = e->vendor_id;
	a->vendor_part_id = e->vendor_part_id;
	a->hw_ver = e->hw_ver;
	a->max_qp = e->max_qp;
	a->max_qp_wr = e->max_qp_wr;
	/* What kernel siw reports (fast-register/invalidate). */
	a->device_cap_flags = IBV_DEVICE_MEM_MGT_EXTENSIONS;
	if (e->max_mw > 0) /* type 1 and type 2B (bound to a QP and its PD) */
		a->device_cap_flags |= IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B;
	a->max_sge = e->max_sge;
	a->max_sge_rd = e->max_sge_rd;
	a->max_cq = e->max_cq;
	a->max_cqe = e->max_cqe;
	a->max_mr = e->max_mr;
	a->max_pd = e->max_pd;
	a->max_qp_rd_atom = e->max_qp_rd_atom;
	a->max_res_rd_atom = e->max_res_rd_atom;
	a->max_qp_init_rd_atom = e->max_qp_init_rd_atom;
	a->atomic_cap = e->atomic_cap ? IBV_ATOMIC_HCA : IBV_ATOMIC_NONE;
	a->max_mw = e->max_mw;
	a->max_srq = e->max_srq;
	a->max_srq_wr = e->max_srq_wr;
	a->max_srq_sge = e->max_srq_sge;
	a->max_pkeys = 1; /* one P_Key (0xffff) so P_Key-index users work; kernel siw says 0 */
	a->phys_port_cnt = 1;
}

VRB_EXPORT int ibv_query_device(struct ibv_context *context, struct ibv_device_attr *device_attr)
{
	if (!context || !device_attr)
		return EINVAL;
	vrb_fill_device_attr(vrb_ctx(context), device_attr);
	return 0;
}

int vrb_query_device_ex_op(struct ibv_context *context,
			   const struct ibv_query_device_ex_input *input,
			   struct ibv_device_attr_ex *attr, size_t attr_size)
{
	struct ibv_device_attr_ex ex;

	if (!context || !attr)
		return EINVAL;
	if (input && input->comp_mask)
		return EINVAL;
	if (attr_size < sizeof(attr->orig_attr))
		return EINVAL;
	memset(&ex, 0, sizeof(ex));
	vrb_fill_device_attr(vrb_ctx(context), &ex.orig_attr);
	ex.device_cap_flags_ex = ex.orig_attr.device_cap_flags;
	ex.phys_port_cnt_ex = 1;
	/* A newer caller's tail is zeroed; an older caller gets the prefix it knows. */
	memset(attr, 0, attr_size);
	memcpy(attr, &ex, attr_size < sizeof(ex) ? attr_size : sizeof(ex));
	return 0;
}

/* ---- port attributes --------------------------------------------------------------------- */

/* As the kernel's ib_mtu_int_to_enum: the largest IB MTU not above the interface MTU. */
static enum ibv_mtu vrb_mtu_enum(unsigned int mtu)
{
	if (mtu >= 4096)
		return IBV_MTU_4096;
	if (mtu >= 2048)
		return IBV_MTU_2048;
	if (mtu >= 1024)
		return IBV_MTU_1024;
	if (mtu >= 512)
		return IBV_MTU_512;
	return IBV_MTU_256;
}

/*
 * The interface's current state and MTU. Read here rather than from eng_devices(): a rescan
 * would invalidate the device array other callers (the CM) may still hold.
 */
static void vrb_if_state(const struct vrb_device *d, bool *running, unsigned int *mtu)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	*running = d->edev.running;
	*mtu = d->edev.mtu;
	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", d->edev.ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0)
		*running = (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
	else
		*running = false; /* the interface is gone */
	if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
		*mtu = (unsigned int)ifr.ifr_mtu;
	close(s);
}

/*
 * Link width and speed as the kernel's ib_get_eth_speed() derives them from the Ethernet
 * speed (unknown speed counts as 1 Gb/s, which is what virtual interfaces and lo show).
 */
static void vrb_eth_speed(const struct vrb_device *d, uint8_t *width, uint8_t *speed)
{
	/* Up to this many Mb/s: IB width (1X = 1, 4X = 2) and speed (SDR 1, DDR 2, FDR10 8, EDR
	 * 32). */
	static const struct {
		long mbps;
		uint8_t width, speed;
	} map[] = {
	    {1000, 1, 1}, {10000, 1, 8}, {20000, 2, 2}, {25000, 1, 32}, {40000, 2, 8},
	};
	char path[64 + IF_NAMESIZE], buf[32];
	long mbps = 1000;
	size_t i;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/class/net/%s/speed", d->edev.ifname);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			mbps = strtol(buf, NULL, 10);
		}
		close(fd);
	}
	if (mbps <= 0)
		mbps = 1000;
	*width = 2; /* above 40 Gb/s: 4X EDR */
	*speed = 32;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (mbps <= map[i].mbps) {
			*width = map[i].width;
			*speed = map[i].speed;
			break;
		}
	}
}

enum ibv_mtu vrb_port_mtu(struct vrb_context *c)
{
	unsigned int mtu;
	bool running;

	vrb_if_state(c->dev, &running, &mtu);
	return vrb_mtu_enum(mtu);
}

static int vrb_fill_port(struct vrb_context *c, uint8_t port_num, struct ibv_port_attr *pa)
{
	unsigned int mtu;
	bool running;

	if (port_num != 1)
		return EINVAL;
	vrb_if_state(c->dev, &running, &mtu);
	memset(pa, 0, sizeof(*pa));
	pa->state = running ? IBV_PORT_ACTIVE : IBV_PORT_DOWN;
	/* Kernel siw takes max_mtu from the netdev's max_mtu; we know only the current one. */
	pa->max_mtu = vrb_mtu_enum(mtu);
	pa->active_mtu = pa->max_mtu;
	pa->gid_tbl_len = 1;
	pa->port_cap_flags = IBV_PORT_CM_SUP | IBV_PORT_DEVICE_MGMT_SUP;
	pa->max_msg_sz = 0xffffffff;
	pa->pkey_tbl_len = 1;
	vrb_eth_speed(c->dev, &pa->active_width, &pa->active_speed);
	pa->phys_state = running ? 5 /* LinkUp */ : 3 /* Disabled */;
	pa->link_layer = IBV_LINK_LAYER_ETHERNET;
	return 0;
}

int vrb_query_port_op(struct ibv_context *context, uint8_t port_num,
		      struct ibv_port_attr *port_attr, size_t port_attr_len)
{
	struct ibv_port_attr pa;
	int err;

	if (!context || !port_attr || port_attr_len < VRB_COMPAT_PORT_ATTR_LEN)
		return EINVAL;
	err = vrb_fill_port(vrb_ctx(context), port_num, &pa);
	if (err)
		return err;
	memset(port_attr, 0, port_attr_len);
	memcpy(port_attr, &pa, port_attr_len < sizeof(pa) ? port_attr_len : sizeof(pa));
	return 0;
}

/* Binaries built against headers older than the query_port op pass the shorter struct. */
VRB_EXPORT int ibv_query_port(struct ibv_context *context, uint8_t port_num,
			      struct _compat_ibv_port_attr *port_attr)
{
	return vrb_query_port_op(context, port_num, (struct ibv_port_attr *)port_attr,
				 VRB_COMPAT_PORT_ATTR_LEN);
}

/* ---- GIDs and P_Keys --------------------------------------------------------------------- */

/*
 * One GID per port, built as kernel siw builds it: the interface MAC in the first six bytes,
 * the rest zero. (An address-derived GID would be ambiguous with several addresses and
 * change with them; iWARP consumers address peers by IP through the CM, never by GID.)
 * A device without a MAC (lo) thus has a zero GID, which rdma-core reports as an empty entry.
 */
static bool vrb_gid(struct vrb_context *c, union ibv_gid *gid)
{
	bool zero = true;

	memset(gid, 0, sizeof(*gid));
	memcpy(gid->raw, c->dev->edev.mac, sizeof(c->dev->edev.mac));
	for (size_t i = 0; i < sizeof(c->dev->edev.mac); i++)
		zero &= gid->raw[i] == 0;
	return !zero;
}

/* Returns 0 and fills *gid, or -1 with errno (the old sysfs-era convention of this call). */
VRB_EXPORT int ibv_query_gid(struct ibv_context *context, uint8_t port_num, int index,
			     union ibv_gid *gid)
{
	if (!context || !gid || port_num != 1 || index != 0) {
		errno = EINVAL;
		return -1;
	}
	vrb_gid(vrb_ctx(context), gid); /* an empty entry reads as the zero GID */
	return 0;
}

/*
 * One table entry as the kernel reports an iWARP GID: type IB. ndev_ifindex is the interface
 * (what the field means; kernel siw on 6.1 leaves it 0).
 */
static int vrb_gid_entry(struct vrb_context *c, uint32_t port_num, uint32_t index,
			 struct ibv_gid_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (port_num != 1 || index != 0)
		return EINVAL;
	if (!vrb_gid(c, &e->gid))
		return ENODATA;
	e->gid_index = index;
	e->port_num = port_num;
	e->gid_type = IBV_GID_TYPE_IB;
	e->ndev_ifindex = c->dev->edev.ifindex;
	return 0;
}

VRB_EXPORT int _ibv_query_gid_ex(struct ibv_context *context, uint32_t port_num, uint32_t gid_index,
				 struct ibv_gid_entry *entry, uint32_t flags, size_t entry_size)
{
	struct ibv_gid_entry e;
	int err;

	if (!context || !entry || flags || entry_size < sizeof(e))
		return EINVAL;
	err = vrb_gid_entry(vrb_ctx(context), port_num, gid_index, &e);
	if (err)
		return err;
	memset(entry, 0, entry_size);
	memcpy(entry, &e, sizeof(e));
	return 0;
}

VRB_EXPORT ssize_t _ibv_query_gid_table(struct ibv_context *context, struct ibv_gid_entry *entries,
					size_t max_entries, uint32_t flags, size_t entry_size)
{
	struct ibv_gid_entry e;

	if (!context || flags || entry_size < sizeof(e))
		return -EINVAL;
	if (vrb_gid_entry(vrb_ctx(context), 1, 0, &e))
		return 0; /* no valid GID: an empty table */
	if (max_entries < 1 || !entries)
		return -EINVAL;
	memset(entries, 0, entry_size);
	memcpy(entries, &e, sizeof(e));
	return 1;
}

/*
 * rdma-core's private helper (ibv_devinfo calls it): 0 = IBV_GID_TYPE_SYSFS_IB_ROCE_V1, the
 * type sysfs shows for siw GIDs, also answered for the empty entry as rdma-core does.
 */
VRB_EXPORT int ibv_query_gid_type(struct ibv_context *context, uint8_t port_num, unsigned int index,
				  int *type)
{
	struct ibv_gid_entry e;
	int err;

	if (!context || !type) {
		errno = EINVAL;
		return -1;
	}
	err = vrb_gid_entry(vrb_ctx(context), port_num, index, &e);
	if (err && err != ENODATA) {
		errno = err;
		return -1;
	}
	*type = 0;
	return 0;
}

/*
 * A single P_Key, the default full-membership 0xffff, so programs that look up P_Key index 0
 * keep working. Out-of-range reads fail with ENOENT, as rdma-core's sysfs read does.
 */
VRB_EXPORT int ibv_query_pkey(struct ibv_context *context, uint8_t port_num, int index,
			      __be16 *pkey)
{
	if (!context || !pkey) {
		errno = EINVAL;
		return -1;
	}
	if (port_num != 1 || index != 0) {
		errno = ENOENT;
		return -1;
	}
	*pkey = 0xffff; /* the same in either byte order */
	return 0;
}

VRB_EXPORT int ibv_get_pkey_index(struct ibv_context *context, uint8_t port_num, __be16 pkey)
{
	__be16 p;

	if (ibv_query_pkey(context, port_num, 0, &p))
		return -1;
	if (p != pkey) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

/* ---- the connection manager's view (SOFTIWARP_PRIVATE_1) --------------------------------- */

VRB_EXPORT struct eng_ctx *siw_verbs_ctx(struct ibv_context *context)
{
	return context ? vrb_ctx(context)->ectx : NULL;
}

VRB_EXPORT const struct eng_device *siw_verbs_device(struct ibv_device *device)
{
	return device ? &vrb_dev(device)->edev : NULL;
}
