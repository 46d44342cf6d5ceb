/* SPDX-License-Identifier: MIT */
/*
 * <errno.h> for guest code: the E* constants with Linux's x86-64 values, so
 * that negative errno results mean the same in guest images, in the host
 * and in the shared fabric/rvmbus code. There is no errno variable: guest
 * code returns negative errno values instead.
 */
#ifndef FAB_SHIM_ERRNO_H
#define FAB_SHIM_ERRNO_H

#define EPERM	     1
#define ENOENT	     2
#define EINTR	     4
#define EIO	     5
#define ENXIO	     6
#define E2BIG	     7
#define EAGAIN	     11
#define ENOMEM	     12
#define EFAULT	     14
#define EBUSY	     16
#define EEXIST	     17
#define EXDEV	     18
#define ENODEV	     19
#define EINVAL	     22
#define ENOSPC	     28
#define ERANGE	     34
#define ENOSYS	     38
#define ENOMSG	     42
#define ENODATA	     61
#define EPROTO	     71
#define EBADMSG	     74
#define EOVERFLOW    75
#define EILSEQ	     84
#define EMSGSIZE     90
#define EOPNOTSUPP   95
#define ENOBUFS	     105
#define EISCONN	     106
#define ENOTCONN     107
#define ESHUTDOWN    108
#define ETIMEDOUT    110
#define ECONNREFUSED 111
#define EALREADY     114
#define EINPROGRESS  115
#define ECANCELED    125

#define EWOULDBLOCK EAGAIN
#define ENOTSUP	    EOPNOTSUPP

#endif
