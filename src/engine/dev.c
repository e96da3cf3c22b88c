// SPDX-License-Identifier: MIT
/*
 * Software iWARP devices: one per network interface that has an IP address, loopback included
 * (kernel siw creates one per netdev with `rdma link add`; we need no command). Identity follows
 * kernel siw where an application could notice: node GUID from the MAC, vendor id 0x626d74.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "priv.h"

#define MAX_DEVICES 64
#define SIW_VENDOR_ID 0x626d74 /* "bmt", kernel siw's vendor id */

static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct eng_device devices[MAX_DEVICES];
static int ndevices;

static struct eng_device *dev_find_or_add(struct eng_device *tab, int *n, const char *ifname)
{
	for (int i = 0; i < *n; i++)
		if (!strcmp(tab[i].ifname, ifname))
			return &tab[i];
	if (*n == MAX_DEVICES)
		return NULL;
	memset(&tab[*n], 0, sizeof(tab[*n]));
	snprintf(tab[*n].ifname, sizeof(tab[*n].ifname), "%s", ifname);
	snprintf(tab[*n].name, sizeof(tab[*n].name), "siw_%s", ifname);
	return &tab[(*n)++];
}

static unsigned if_mtu(const char *ifname)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned mtu = 1500;

	if (fd < 0)
		return mtu;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
		mtu = (unsigned)ifr.ifr_mtu;
	close(fd);
	return mtu;
}

/* EUI-64 from a MAC, as kernel siw (and IPv6) derive the node GUID. */
static uint64_t guid_from_mac(const uint8_t *mac)
{
	uint8_t g[8] = {mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]};
	uint64_t v;

	memcpy(&v, g, sizeof(v)); /* network order, as ibv_get_device_guid returns it */
	return v;
}

/* A MAC-less interface (loopback) gets a GUID from its name, stable across runs. */
static uint64_t guid_from_name(const char *name)
{
	uint8_t g[8] = {0x02, 's', 'i', 'w', 0, 0, 0, 0};
	uint32_t h = 2166136261u;
	uint64_t v;

	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	memcpy(g + 4, &h, 4);
	memcpy(&v, g, sizeof(v));
	return v;
}

static int dev_scan(void)
{
	struct eng_device tab[MAX_DEVICES];
	struct ifaddrs *ifa0, *ifa;
	int n = 0, out = 0;

	if (getifaddrs(&ifa0) < 0)
		return -errno;
	/* Interfaces with an IPv4 or IPv6 address become devices, in the kernel's order. */
	for (ifa = ifa0; ifa; ifa = ifa->ifa_next) {
		struct eng_device *d;
		int fam;

		if (!ifa->ifa_addr)
			continue;
		fam = ifa->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		d = dev_find_or_add(tab, &n, ifa->ifa_name);
		if (!d)
			continue;
		d->running = (ifa->ifa_flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING);
		if (d->naddrs < ENG_DEV_MAX_ADDRS)
			memcpy(&d->addrs[d->naddrs++], ifa->ifa_addr,
			       fam == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6));
	}
	for (ifa = ifa0; ifa; ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_PACKET)
			continue;
		for (int i = 0; i < n; i++) {
			const struct sockaddr_ll *ll = (const void *)ifa->ifa_addr;

			if (!strcmp(tab[i].ifname, ifa->ifa_name) && ll->sll_halen == 6)
				memcpy(tab[i].mac, ll->sll_addr, 6);
		}
	}
	freeifaddrs(ifa0);

	pthread_mutex_lock(&dev_lock);
	for (int i = 0; i < n; i++) {
		static const uint8_t zero[6];
		struct eng_device *d = &tab[i];

		d->ifindex = if_nametoindex(d->ifname);
		d->mtu = if_mtu(d->ifname);
		d->node_guid = memcmp(d->mac, zero, 6) ? guid_from_mac(d->mac)
						       : guid_from_name(d->name);
		d->vendor_part_id = (uint32_t)out + 1;
		devices[out++] = *d;
	}
	ndevices = out;
	pthread_mutex_unlock(&dev_lock);
	return out;
}

int eng_devices(const struct eng_device **list)
{
	int n = dev_scan();

	*list = devices;
	return n;
}

static bool addr_match(const struct sockaddr_storage *a, const struct sockaddr *b, bool loopback)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		/* All of 127.0.0.0/8 belongs to the loopback interface. */
		if (loopback && (ntohl(y->sin_addr.s_addr) >> 24) == 127)
			return true;
		return x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	{
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
}

static const struct eng_device *dev_lookup(const struct sockaddr *sa)
{
	const struct eng_device *found = NULL;

	pthread_mutex_lock(&dev_lock);
	for (int i = 0; i < ndevices && !found; i++) {
		bool lo = !memcmp(devices[i].ifname, "lo", 3);

		for (unsigned j = 0; j < devices[i].naddrs; j++)
			if (addr_match(&devices[i].addrs[j], sa, lo)) {
				found = &devices[i];
				break;
			}
	}
	pthread_mutex_unlock(&dev_lock);
	return found;
}

const struct eng_device *eng_device_by_addr(const struct sockaddr *sa)
{
	const struct eng_device *found = NULL;
	struct sockaddr_in v4;

	if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return NULL;
	/* An IPv4-mapped IPv6 address is the IPv4 address. */
	if (sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
		memset(&v4, 0, sizeof(v4));
		v4.sin_family = AF_INET;
		memcpy(&v4.sin_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], 4);
		sa = (const struct sockaddr *)&v4;
	}
	/*
	 * The table of the last scan first: a scan is a netlink dump plus a socket per interface,
	 * too much for every connection (and it fails when the process is out of descriptors).
	 * Rescan only on a miss, when an address may have been added since.
	 */
	found = dev_lookup(sa);
	if (!found) {
		int r = dev_scan();

		if (r < 0) {
			errno = -r;
			return NULL;
		}
		found = dev_lookup(sa);
		if (!found)
			errno = EADDRNOTAVAIL;
	}
	return found;
}

enum eng_rfc7306_mode eng_rfc7306_env(void)
{
	const char *s = getenv("SIW_RFC7306");

	if (!s || !*s || !strcasecmp(s, "auto"))
		return ENG_RFC7306_AUTO;
	if (!strcasecmp(s, "on") || !strcmp(s, "1"))
		return ENG_RFC7306_ON;
	if (!strcasecmp(s, "off") || !strcmp(s, "0"))
		return ENG_RFC7306_OFF;
	eng_err("SIW_RFC7306=%s: expected auto, on or off; using auto", s);
	return ENG_RFC7306_AUTO;
}

void eng_device_query(const struct eng_device *dev, struct eng_device_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->node_guid = dev->node_guid;
	a->sys_image_guid = dev->node_guid;
	a->max_mr_size = ENG_MAX_MR_SIZE;
	a->page_size_cap = 4096;
	a->vendor_id = SIW_VENDOR_ID;
	a->vendor_part_id = dev->vendor_part_id;
	a->hw_ver = 0;
	a->max_qp = ENG_MAX_QP;
	a->max_qp_wr = ENG_MAX_QP_WR;
	a->max_sge = ENG_MAX_SGE;
	a->max_sge_rd = ENG_MAX_SGE_RD; /* one READ REQUEST per sink SGE (qp_tx.c) */
	a->max_cq = ENG_MAX_CQ;
	a->max_cqe = ENG_MAX_CQE;
	a->max_mr = ENG_MAX_MR;
	a->max_pd = ENG_MAX_PD;
	a->max_qp_rd_atom = ENG_MAX_ORD;
	a->max_qp_init_rd_atom = ENG_MAX_ORD;
	a->max_res_rd_atom = ENG_MAX_ORD * 1024;
	a->max_srq = ENG_MAX_QP;
	a->max_srq_wr = ENG_MAX_SRQ_WR;
	a->max_srq_sge = ENG_MAX_SGE;
	a->max_mw = ENG_MAX_MR; /* windows and regions share the STag table */
	a->max_inline_data = ENG_MAX_INLINE;
	/*
	 * RFC 7306 atomics (when a connection negotiates them, PROTOCOL.md §6.5) run under one
	 * process-wide lock (qp_rx.c: atomic_execute): atomic among all remote atomics this
	 * process executes, whichever QP or thread, which is what IBV_ATOMIC_HCA promises. They
	 * are not atomic against RDMA WRITEs or READs of the same word (nor does RFC 7306 ask
	 * it), so IBV_ATOMIC_GLOB is not claimed.
	 */
	a->atomic_cap = eng_rfc7306_env() == ENG_RFC7306_OFF ? 0 : 1;
	a->num_comp_vectors = 1;
	snprintf(a->fw_ver, sizeof(a->fw_ver), "softiwarp 0.1");
}
