// SPDX-License-Identifier: MIT
/*
 * Devices as librdmacm presents them: every software iWARP device gets one ibv_context per
 * process, opened the first time an id is bound to it (or rdma_get_devices asks), and that same
 * context is id->verbs for every id on the device. Applications allocate PDs, CQs and MRs on
 * id->verbs and then create QPs through the CM, so it has to be one shared object, exactly as
 * rdma-core's librdmacm does. Contexts stay open until the library is unloaded.
 *
 * Which device an IP address belongs to is the engine's answer (eng_device_by_addr: the device
 * of the interface holding the address; all of 127/8 belongs to the loopback device); the CM
 * matches the engine device to the verbs device by name ("siw_<ifname>").
 */
#include <stdlib.h>
#include <string.h>

#include "cm.h"

#define CM_MAX_DEVS 64

static struct cm_dev devs[CM_MAX_DEVS];
static int ndevs;
/* Device lists we took entries from; kept for the process's life (the devices live in them). */
static struct ibv_device **lists[8];
static int nlists;

/* Adds the devices of a fresh ibv_get_device_list() we do not know yet. Must hold cm.lock. */
static void dev_scan(void)
{
	struct ibv_device **l;
	bool used = false;
	int n;

	if (nlists == (int)(sizeof(lists) / sizeof(lists[0])))
		return;
	l = ibv_get_device_list(&n);
	if (!l) {
		cm_err("cannot list the RDMA devices (ibv_get_device_list: %s); is softiwarp's "
		       "libibverbs.so.1 loaded (run the program under siw-run)?",
		       strerror(errno));
		return;
	}
	for (int i = 0; i < n && ndevs < CM_MAX_DEVS; i++) {
		const char *name = ibv_get_device_name(l[i]);
		bool known = false;

		if (!name)
			continue;
		for (int j = 0; j < ndevs && !known; j++)
			known = !strcmp(devs[j].name, name);
		if (known)
			continue;
		memset(&devs[ndevs], 0, sizeof(devs[ndevs]));
		snprintf(devs[ndevs].name, sizeof(devs[ndevs].name), "%s", name);
		devs[ndevs].ibdev = l[i];
		ndevs++;
		used = true;
	}
	if (used)
		lists[nlists++] = l;
	else
		ibv_free_device_list(l);
}

/* Opens the shared context of a device. Must hold cm.lock. */
static int dev_open(struct cm_dev *d)
{
	struct ibv_device_attr attr;

	if (d->verbs)
		return 0;
	d->verbs = ibv_open_device(d->ibdev);
	if (!d->verbs) {
		int e = errno ? errno : ENODEV;

		cm_err("cannot open RDMA device %s: %s", d->name, strerror(e));
		return e;
	}
	memset(&attr, 0, sizeof(attr));
	if (ibv_query_device(d->verbs, &attr) == 0) {
		d->max_ird = attr.max_qp_rd_atom > 255 ? 255 : (uint8_t)attr.max_qp_rd_atom;
		d->max_ord =
		    attr.max_qp_init_rd_atom > 255 ? 255 : (uint8_t)attr.max_qp_init_rd_atom;
	}
	return 0;
}

static struct cm_dev *dev_by_name(const char *name)
{
	for (int i = 0; i < ndevs; i++)
		if (!strcmp(devs[i].name, name))
			return &devs[i];
	return NULL;
}

struct cm_dev *cm_dev_get_by_addr(const struct sockaddr *sa)
{
	const struct eng_device *ed = eng_device_by_addr(sa);
	char name[ENG_DEV_NAME_MAX];
	struct cm_dev *d;
	int err;

	if (!ed) {
		/* Out of descriptors the interface scan fails: say so, not "no device". */
		if (errno != EMFILE && errno != ENFILE && errno != ENOMEM)
			errno = ENODEV;
		return NULL;
	}
	/* ed points into the engine's table, which the next scan rewrites: copy the name now. */
	snprintf(name, sizeof(name), "%s", ed->name);
	d = dev_by_name(name);
	if (!d) {
		dev_scan();
		d = dev_by_name(name);
	}
	if (!d) {
		cm_err("address belongs to device %s, but libibverbs does not list it", name);
		errno = ENODEV;
		return NULL;
	}
	err = dev_open(d);
	if (err) {
		errno = err;
		return NULL;
	}
	/* As rdma-core: a default PD per device while ids use it (rdma_create_ep without a PD). */
	if (!d->pd) {
		d->pd = ibv_alloc_pd(d->verbs);
		if (!d->pd) {
			err = errno ? errno : ENOMEM;
			cm_err("cannot allocate the default PD on %s: %s", d->name, strerror(err));
			errno = err;
			return NULL;
		}
	}
	d->refcnt++;
	return d;
}

void cm_dev_put(struct cm_dev *d)
{
	if (!d || --d->refcnt > 0)
		return;
	/* The application may still use the default PD (a QP of rdma_create_ep): keep it then. */
	if (d->pd && ibv_dealloc_pd(d->pd) == 0)
		d->pd = NULL;
}

CM_API struct ibv_context **rdma_get_devices(int *num_devices)
{
	struct ibv_context **out = NULL;
	int n = 0;

	cm_init();
	pthread_mutex_lock(&cm.lock);
	dev_scan();
	out = calloc((size_t)ndevs + 1, sizeof(*out));
	if (out) {
		for (int i = 0; i < ndevs; i++)
			if (dev_open(&devs[i]) == 0)
				out[n++] = devs[i].verbs;
	}
	pthread_mutex_unlock(&cm.lock);
	if (num_devices)
		*num_devices = n;
	return out;
}

CM_API void rdma_free_devices(struct ibv_context **list)
{
	free(list);
}
