// SPDX-License-Identifier: MIT
/*
 * rdma_getaddrinfo without a kernel or ibacm: names and ports are resolved with getaddrinfo(),
 * and the result is shaped as rdma-core's librdmacm shapes it (one entry, the first address;
 * a passive lookup fills ai_src_addr, an active one ai_dst_addr; a source address given in the
 * hints is kept). iWARP needs no route or connect data, so ai_route and ai_connect stay NULL.
 * Errors follow rdma-core: -1 with errno set to the getaddrinfo() code (EAI_*), or EINVAL /
 * ENOMEM.
 */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"

static int copy_addr(struct sockaddr **dst, socklen_t *dst_len, const struct sockaddr *src,
		     socklen_t len)
{
	*dst = malloc(len);
	if (!*dst)
		return ENOMEM;
	memcpy(*dst, src, len);
	*dst_len = len;
	return 0;
}

CM_API int rdma_getaddrinfo(const char *node, const char *service,
			    const struct rdma_addrinfo *hints, struct rdma_addrinfo **res)
{
	static const struct rdma_addrinfo nohints;
	struct rdma_addrinfo *rai;
	int ret = 0;

	cm_init();
	if ((!node && !service && !hints) || !res)
		return cm_seterr(EINVAL);
	if (!hints)
		hints = &nohints;
	if (hints->ai_family == AF_IB ||
	    (hints->ai_port_space && hints->ai_port_space != RDMA_PS_TCP) ||
	    (hints->ai_qp_type && hints->ai_qp_type != IBV_QPT_RC)) {
		/* iWARP: IP addresses, the TCP port space, RC QPs. */
		return cm_seterr(EAI_FAMILY);
	}
	rai = calloc(1, sizeof(*rai));
	if (!rai)
		return cm_seterr(ENOMEM);
	rai->ai_qp_type = hints->ai_qp_type ? hints->ai_qp_type : IBV_QPT_RC;
	rai->ai_port_space = RDMA_PS_TCP;

	if (node || service) {
		struct addrinfo ah, *ai;

		memset(&ah, 0, sizeof(ah));
		if (hints->ai_flags & RAI_PASSIVE)
			ah.ai_flags |= AI_PASSIVE;
		if (hints->ai_flags & RAI_NUMERICHOST)
			ah.ai_flags |= AI_NUMERICHOST;
		ah.ai_family = hints->ai_family;
		ah.ai_socktype = SOCK_STREAM;
		ah.ai_protocol = IPPROTO_TCP;
		ret = getaddrinfo(node, service, &ah, &ai);
		if (ret) {
			free(rai);
			return cm_seterr(ret);
		}
		rai->ai_family = ai->ai_family;
		if (hints->ai_flags & RAI_PASSIVE) {
			rai->ai_flags = RAI_PASSIVE;
			ret = copy_addr(&rai->ai_src_addr, &rai->ai_src_len, ai->ai_addr,
					ai->ai_addrlen);
			if (!ret && ai->ai_canonname)
				rai->ai_src_canonname = strdup(ai->ai_canonname);
		} else {
			ret = copy_addr(&rai->ai_dst_addr, &rai->ai_dst_len, ai->ai_addr,
					ai->ai_addrlen);
			if (!ret && ai->ai_canonname)
				rai->ai_dst_canonname = strdup(ai->ai_canonname);
		}
		freeaddrinfo(ai);
	} else {
		rai->ai_flags = hints->ai_flags;
		rai->ai_family = hints->ai_family;
		if (hints->ai_dst_len && hints->ai_dst_addr)
			ret = copy_addr(&rai->ai_dst_addr, &rai->ai_dst_len, hints->ai_dst_addr,
					hints->ai_dst_len);
	}
	if (!ret && !rai->ai_src_len && hints->ai_src_len && hints->ai_src_addr)
		ret = copy_addr(&rai->ai_src_addr, &rai->ai_src_len, hints->ai_src_addr,
				hints->ai_src_len);
	if (ret) {
		rdma_freeaddrinfo(rai);
		return cm_seterr(ret);
	}
	*res = rai;
	return 0;
}

CM_API void rdma_freeaddrinfo(struct rdma_addrinfo *res)
{
	while (res) {
		struct rdma_addrinfo *next = res->ai_next;

		free(res->ai_connect);
		free(res->ai_route);
		free(res->ai_src_canonname);
		free(res->ai_dst_canonname);
		free(res->ai_src_addr);
		free(res->ai_dst_addr);
		free(res);
		res = next;
	}
}
