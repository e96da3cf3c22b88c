/* SPDX-License-Identifier: MIT */
/*
 * The compat-only symbol versions of rdma-core's libibverbs.so.1: the 33 IBVERBS_1.0 copies
 * of calls whose default version is IBVERBS_1.1, and ibv_register_driver@IBVERBS_1.1.
 *
 * The IBVERBS_1.0 copies exist for binaries linked against libibverbs 1.0 (2006), whose
 * objects had other layouts (rdma-core wraps every object for them). No binary we target binds
 * to them: a linker only picks the default version. We still define every one, so the symbol
 * table is rdma-core's exactly and such an old binary fails cleanly — each copy logs and
 * reports ENOSYS (NULL, -1 or ENOSYS by the call's convention) — instead of dying at load with
 * "symbol not found".
 *
 * Each stub is a hidden function bound to its versioned name with .symver; its parameters are
 * left out, as they are never read (the caller cleans up its own arguments).
 */
#define _GNU_SOURCE
#include <errno.h>

#include "vrb.h"

static void vrb_compat_log(const char *name)
{
	vrb_err("%s@IBVERBS_1.0 called: the libibverbs 1.0 ABI is not supported\n", name);
}

/* Calls returning an object (NULL + errno). */
#define VRB_COMPAT_PTR(name)                                                                       \
	VRB_EXPORT void *vrb_compat_##name(void);                                                  \
	void *vrb_compat_##name(void)                                                              \
	{                                                                                          \
		vrb_compat_log(#name);                                                             \
		errno = ENOSYS;                                                                    \
		return NULL;                                                                       \
	}                                                                                          \
	__asm__(".symver vrb_compat_" #name ", " #name "@IBVERBS_1.0")

/* Calls returning 0 or an errno value. */
#define VRB_COMPAT_ERR(name)                                                                       \
	VRB_EXPORT int vrb_compat_##name(void);                                                    \
	int vrb_compat_##name(void)                                                                \
	{                                                                                          \
		vrb_compat_log(#name);                                                             \
		return ENOSYS;                                                                     \
	}                                                                                          \
	__asm__(".symver vrb_compat_" #name ", " #name "@IBVERBS_1.0")

/* Calls returning 0 or -1 with errno. */
#define VRB_COMPAT_NEG(name)                                                                       \
	VRB_EXPORT int vrb_compat_##name(void);                                                    \
	int vrb_compat_##name(void)                                                                \
	{                                                                                          \
		vrb_compat_log(#name);                                                             \
		errno = ENOSYS;                                                                    \
		return -1;                                                                         \
	}                                                                                          \
	__asm__(".symver vrb_compat_" #name ", " #name "@IBVERBS_1.0")

/* Calls without a result. */
#define VRB_COMPAT_VOID(name)                                                                      \
	VRB_EXPORT void vrb_compat_##name(void);                                                   \
	void vrb_compat_##name(void)                                                               \
	{                                                                                          \
		vrb_compat_log(#name);                                                             \
	}                                                                                          \
	__asm__(".symver vrb_compat_" #name ", " #name "@IBVERBS_1.0")

VRB_COMPAT_VOID(ibv_ack_async_event);
VRB_COMPAT_VOID(ibv_ack_cq_events);
VRB_COMPAT_PTR(ibv_alloc_pd);
VRB_COMPAT_ERR(ibv_attach_mcast);
VRB_COMPAT_NEG(ibv_close_device);
VRB_COMPAT_PTR(ibv_create_ah);
VRB_COMPAT_PTR(ibv_create_cq);
VRB_COMPAT_PTR(ibv_create_qp);
VRB_COMPAT_PTR(ibv_create_srq);
VRB_COMPAT_ERR(ibv_dealloc_pd);
VRB_COMPAT_ERR(ibv_dereg_mr);
VRB_COMPAT_ERR(ibv_destroy_ah);
VRB_COMPAT_ERR(ibv_destroy_cq);
VRB_COMPAT_ERR(ibv_destroy_qp);
VRB_COMPAT_ERR(ibv_destroy_srq);
VRB_COMPAT_ERR(ibv_detach_mcast);
VRB_COMPAT_VOID(ibv_free_device_list);
VRB_COMPAT_NEG(ibv_get_async_event);
VRB_COMPAT_NEG(ibv_get_cq_event);
VRB_COMPAT_PTR(ibv_get_device_list);
VRB_COMPAT_PTR(ibv_get_device_name);
VRB_COMPAT_ERR(ibv_modify_qp);
VRB_COMPAT_ERR(ibv_modify_srq);
VRB_COMPAT_PTR(ibv_open_device);
VRB_COMPAT_ERR(ibv_query_device);
VRB_COMPAT_NEG(ibv_query_gid);
VRB_COMPAT_NEG(ibv_query_pkey);
VRB_COMPAT_ERR(ibv_query_port);
VRB_COMPAT_ERR(ibv_query_qp);
VRB_COMPAT_ERR(ibv_query_srq);
VRB_COMPAT_PTR(ibv_reg_mr);
VRB_COMPAT_ERR(ibv_resize_cq);

/* A GUID of 0: no device. */
VRB_EXPORT uint64_t vrb_compat_ibv_get_device_guid(void);
uint64_t vrb_compat_ibv_get_device_guid(void)
{
	vrb_compat_log("ibv_get_device_guid");
	return 0;
}
__asm__(".symver vrb_compat_ibv_get_device_guid, ibv_get_device_guid@IBVERBS_1.0");

/*
 * The pre-rdma-core way for a provider to register itself. rdma-core keeps it as a stub that
 * refuses the (incompatible) provider; there are no providers to register with us at all.
 */
VRB_EXPORT void vrb_compat_ibv_register_driver(const char *name, void *init_func);
void vrb_compat_ibv_register_driver(const char *name, void *init_func)
{
	(void)init_func;
	vrb_warn("provider %s uses the obsolete ibv_register_driver: ignored\n",
		 name ? name : "(null)");
}
__asm__(".symver vrb_compat_ibv_register_driver, ibv_register_driver@IBVERBS_1.1");
