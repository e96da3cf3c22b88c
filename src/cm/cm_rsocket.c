// SPDX-License-Identifier: MIT
/*
 * The rsocket entry points of librdmacm (RDMACM_1.0).
 *
 * Real rsockets (sockets emulated over RDMA QPs) are not implemented yet. Until then:
 *	- rpoll and rselect behave as poll(2) and select(2). Programs use them on ordinary file
 *	  descriptors too: rping's CM thread rpoll()s its event channel fd and a pipe, ucmatose
 *	  imports rpoll as well. Since no rsocket can exist, every fd is an ordinary one.
 *	- every other call fails with errno ENOSYS, so rstream/riostream load and report a clean
 *	  error instead of failing to start on a missing symbol.
 */
#include <poll.h>
#include <stdarg.h>
#include <sys/select.h>

#include "cm.h"

#define NOT_YET(ret)                                                                               \
	do {                                                                                       \
		errno = ENOSYS;                                                                    \
		return (ret);                                                                      \
	} while (0)

CM_API int rpoll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	return poll(fds, nfds, timeout);
}

CM_API int rselect(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
		   struct timeval *timeout)
{
	return select(nfds, readfds, writefds, exceptfds, timeout);
}

CM_API int rsocket(int domain, int type, int protocol)
{
	(void)domain;
	(void)type;
	(void)protocol;
	NOT_YET(-1);
}

CM_API int rbind(int socket, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)socket;
	(void)addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API int rlisten(int socket, int backlog)
{
	(void)socket;
	(void)backlog;
	NOT_YET(-1);
}

CM_API int raccept(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	(void)socket;
	(void)addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API int rconnect(int socket, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)socket;
	(void)addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API int rshutdown(int socket, int how)
{
	(void)socket;
	(void)how;
	NOT_YET(-1);
}

CM_API int rclose(int socket)
{
	(void)socket;
	NOT_YET(-1);
}

CM_API ssize_t rrecv(int socket, void *buf, size_t len, int flags)
{
	(void)socket;
	(void)buf;
	(void)len;
	(void)flags;
	NOT_YET(-1);
}

CM_API ssize_t rrecvfrom(int socket, void *buf, size_t len, int flags, struct sockaddr *src_addr,
			 socklen_t *addrlen)
{
	(void)socket;
	(void)buf;
	(void)len;
	(void)flags;
	(void)src_addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API ssize_t rrecvmsg(int socket, struct msghdr *msg, int flags)
{
	(void)socket;
	(void)msg;
	(void)flags;
	NOT_YET(-1);
}

CM_API ssize_t rsend(int socket, const void *buf, size_t len, int flags)
{
	(void)socket;
	(void)buf;
	(void)len;
	(void)flags;
	NOT_YET(-1);
}

CM_API ssize_t rsendto(int socket, const void *buf, size_t len, int flags,
		       const struct sockaddr *dest_addr, socklen_t addrlen)
{
	(void)socket;
	(void)buf;
	(void)len;
	(void)flags;
	(void)dest_addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API ssize_t rsendmsg(int socket, const struct msghdr *msg, int flags)
{
	(void)socket;
	(void)msg;
	(void)flags;
	NOT_YET(-1);
}

CM_API ssize_t rread(int socket, void *buf, size_t count)
{
	(void)socket;
	(void)buf;
	(void)count;
	NOT_YET(-1);
}

CM_API ssize_t rreadv(int socket, const struct iovec *iov, int iovcnt)
{
	(void)socket;
	(void)iov;
	(void)iovcnt;
	NOT_YET(-1);
}

CM_API ssize_t rwrite(int socket, const void *buf, size_t count)
{
	(void)socket;
	(void)buf;
	(void)count;
	NOT_YET(-1);
}

CM_API ssize_t rwritev(int socket, const struct iovec *iov, int iovcnt)
{
	(void)socket;
	(void)iov;
	(void)iovcnt;
	NOT_YET(-1);
}

CM_API int rgetpeername(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	(void)socket;
	(void)addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API int rgetsockname(int socket, struct sockaddr *addr, socklen_t *addrlen)
{
	(void)socket;
	(void)addr;
	(void)addrlen;
	NOT_YET(-1);
}

CM_API int rsetsockopt(int socket, int level, int optname, const void *optval, socklen_t optlen)
{
	(void)socket;
	(void)level;
	(void)optname;
	(void)optval;
	(void)optlen;
	NOT_YET(-1);
}

CM_API int rgetsockopt(int socket, int level, int optname, void *optval, socklen_t *optlen)
{
	(void)socket;
	(void)level;
	(void)optname;
	(void)optval;
	(void)optlen;
	NOT_YET(-1);
}

CM_API int rfcntl(int socket, int cmd, ... /* arg */)
{
	(void)socket;
	(void)cmd;
	NOT_YET(-1);
}

CM_API off_t riomap(int socket, void *buf, size_t len, int prot, int flags, off_t offset)
{
	(void)socket;
	(void)buf;
	(void)len;
	(void)prot;
	(void)flags;
	(void)offset;
	NOT_YET(-1);
}

CM_API int riounmap(int socket, void *buf, size_t len)
{
	(void)socket;
	(void)buf;
	(void)len;
	NOT_YET(-1);
}

CM_API size_t riowrite(int socket, const void *buf, size_t count, off_t offset, int flags)
{
	(void)socket;
	(void)buf;
	(void)count;
	(void)offset;
	(void)flags;
	/* rsocket.h gives riowrite a size_t result; rdma-core returns -1 cast to it on error. */
	NOT_YET((size_t)-1);
}
