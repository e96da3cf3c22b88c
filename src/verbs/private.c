/* SPDX-License-Identifier: MIT */
/*
 * rdma-core's provider-private ABI, IBVERBS_PRIVATE_34. The distro's libmlx5.so.1 and
 * libefa.so.1 import these names, and perftest links both, so they must resolve for perftest
 * to start at all. Their ELF constructors call verbs_register_driver_34(); everything else is
 * reached only through an mlx5 or EFA device, which this library never lists. So: the
 * registration is accepted and ignored, the ibv_cmd_* kernel-command helpers answer
 * EOPNOTSUPP, constructors of provider objects answer NULL. The real ones (__verbs_log,
 * ibv_query_gid_type) live in log.c and device.c.
 *
 * Parameters are left out of the stubs, as they are never read; every stub logs its name at
 * the debug level, so a surprise caller shows up with VERBS_LOG_LEVEL=4.
 */
#define _GNU_SOURCE
#include <errno.h>

#include "vrb.h"

static void vrb_private_log(const char *name)
{
	vrb_debug("%s: provider-private call answered with a stub\n", name);
}

/* ibv_cmd_*: issue a uverbs command; 0 or an errno value. */
#define VRB_CMD_STUB(name)                                                                         \
	VRB_EXPORT int name(void);                                                                 \
	int name(void)                                                                             \
	{                                                                                          \
		vrb_private_log(#name);                                                            \
		return EOPNOTSUPP;                                                                 \
	}

VRB_CMD_STUB(execute_ioctl)
VRB_CMD_STUB(ibv_cmd_advise_mr)
VRB_CMD_STUB(ibv_cmd_alloc_dm)
VRB_CMD_STUB(ibv_cmd_alloc_mw)
VRB_CMD_STUB(ibv_cmd_alloc_pd)
VRB_CMD_STUB(ibv_cmd_attach_mcast)
VRB_CMD_STUB(ibv_cmd_close_xrcd)
VRB_CMD_STUB(ibv_cmd_create_ah)
VRB_CMD_STUB(ibv_cmd_create_counters)
VRB_CMD_STUB(ibv_cmd_create_cq)
VRB_CMD_STUB(ibv_cmd_create_cq_ex)
VRB_CMD_STUB(ibv_cmd_create_flow)
VRB_CMD_STUB(ibv_cmd_create_flow_action_esp)
VRB_CMD_STUB(ibv_cmd_create_qp)
VRB_CMD_STUB(ibv_cmd_create_qp_ex)
VRB_CMD_STUB(ibv_cmd_create_qp_ex2)
VRB_CMD_STUB(ibv_cmd_create_rwq_ind_table)
VRB_CMD_STUB(ibv_cmd_create_srq)
VRB_CMD_STUB(ibv_cmd_create_srq_ex)
VRB_CMD_STUB(ibv_cmd_create_wq)
VRB_CMD_STUB(ibv_cmd_dealloc_mw)
VRB_CMD_STUB(ibv_cmd_dealloc_pd)
VRB_CMD_STUB(ibv_cmd_dereg_mr)
VRB_CMD_STUB(ibv_cmd_destroy_ah)
VRB_CMD_STUB(ibv_cmd_destroy_counters)
VRB_CMD_STUB(ibv_cmd_destroy_cq)
VRB_CMD_STUB(ibv_cmd_destroy_flow)
VRB_CMD_STUB(ibv_cmd_destroy_flow_action)
VRB_CMD_STUB(ibv_cmd_destroy_qp)
VRB_CMD_STUB(ibv_cmd_destroy_rwq_ind_table)
VRB_CMD_STUB(ibv_cmd_destroy_srq)
VRB_CMD_STUB(ibv_cmd_destroy_wq)
VRB_CMD_STUB(ibv_cmd_detach_mcast)
VRB_CMD_STUB(ibv_cmd_free_dm)
VRB_CMD_STUB(ibv_cmd_get_context)
VRB_CMD_STUB(ibv_cmd_modify_cq)
VRB_CMD_STUB(ibv_cmd_modify_flow_action_esp)
VRB_CMD_STUB(ibv_cmd_modify_qp)
VRB_CMD_STUB(ibv_cmd_modify_qp_ex)
VRB_CMD_STUB(ibv_cmd_modify_srq)
VRB_CMD_STUB(ibv_cmd_modify_wq)
VRB_CMD_STUB(ibv_cmd_open_qp)
VRB_CMD_STUB(ibv_cmd_open_xrcd)
VRB_CMD_STUB(ibv_cmd_poll_cq)
VRB_CMD_STUB(ibv_cmd_post_recv)
VRB_CMD_STUB(ibv_cmd_post_send)
VRB_CMD_STUB(ibv_cmd_post_srq_recv)
VRB_CMD_STUB(ibv_cmd_query_context)
VRB_CMD_STUB(ibv_cmd_query_device_any)
VRB_CMD_STUB(ibv_cmd_query_mr)
VRB_CMD_STUB(ibv_cmd_query_port)
VRB_CMD_STUB(ibv_cmd_query_qp)
VRB_CMD_STUB(ibv_cmd_query_srq)
VRB_CMD_STUB(ibv_cmd_read_counters)
VRB_CMD_STUB(ibv_cmd_reg_dm_mr)
VRB_CMD_STUB(ibv_cmd_reg_dmabuf_mr)
VRB_CMD_STUB(ibv_cmd_reg_mr)
VRB_CMD_STUB(ibv_cmd_req_notify_cq)
VRB_CMD_STUB(ibv_cmd_rereg_mr)
VRB_CMD_STUB(ibv_cmd_resize_cq)

/* Provider context / device constructors: NULL + errno. */
#define VRB_PTR_STUB(name)                                                                         \
	VRB_EXPORT void *name(void);                                                               \
	void *name(void)                                                                           \
	{                                                                                          \
		vrb_private_log(#name);                                                            \
		errno = EOPNOTSUPP;                                                                \
		return NULL;                                                                       \
	}

VRB_PTR_STUB(_verbs_init_and_alloc_context)
VRB_PTR_STUB(verbs_open_device)

/* Provider bookkeeping with nothing to do here. */
#define VRB_VOID_STUB(name)                                                                        \
	VRB_EXPORT void name(void);                                                                \
	void name(void)                                                                            \
	{                                                                                          \
		vrb_private_log(#name);                                                            \
	}

VRB_VOID_STUB(verbs_init_cq)
VRB_VOID_STUB(verbs_set_ops)
VRB_VOID_STUB(verbs_uninit_context)

/*
 * Called from the ELF constructor of every rdma-core provider library that gets loaded
 * (libmlx5 and libefa with perftest): accept and ignore; no device ever matches them.
 */
VRB_EXPORT void verbs_register_driver_34(const void *ops);
void verbs_register_driver_34(const void *ops)
{
	(void)ops;
	vrb_private_log("verbs_register_driver_34");
}

/* Sizes an ioctl command buffer; without ioctls the count is what was asked for. */
VRB_EXPORT unsigned int __ioctl_final_num_attrs(unsigned int num_attrs, const void *link);
unsigned int __ioctl_final_num_attrs(unsigned int num_attrs, const void *link)
{
	(void)link;
	return num_attrs;
}

/* Providers read their device's sysfs attributes with it; ours have no sysfs directory. */
VRB_EXPORT int ibv_read_ibdev_sysfs_file(void);
int ibv_read_ibdev_sysfs_file(void)
{
	vrb_private_log("ibv_read_ibdev_sysfs_file");
	errno = ENOENT;
	return -1;
}

/* Set by providers whose devices can be hot-unplugged; nothing here reads it. */
VRB_EXPORT bool verbs_allow_disassociate_destroy;
