/* SPDX-License-Identifier: MIT */
/*
 * Remote guest memory: the skeleton's view of the RAM of a guest on another
 * node, for VSPs that copy GPA-direct data (copy_to/from_guest). The guest's
 * node registers the partition's RAM with the transport and sends its key;
 * reads and writes here become the transport's remote read/write into it,
 * checked against the registration on both ends.
 *
 * Threads: the transport lives on a libev loop; rmem_read and rmem_write
 * are called from other threads (VSP workers), block until done, and are
 * serialized per rmem. Everything else is for the loop thread.
 */
#ifndef FAB_RVMBUS_RMEM_H
#define FAB_RVMBUS_RMEM_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct xport;
struct xport_conn;
struct xport_key;
struct rmem;

#define RMEM_STAGING (1u << 20) /* bytes moved per transport operation */

/* Loop thread. Returns 0, -ENOMEM, or the registration's error. */
int rmem_create(struct ev_loop *loop, struct xport *x, struct rmem **out);
/* Loop thread: reads and writes go through c to the region key names. */
void rmem_bind(struct rmem *m, struct xport_conn *c, const struct xport_key *key);
/* Loop thread: the connection is gone; pending and later calls fail with
 * -ENOTCONN until the next bind. */
void rmem_unbind(struct rmem *m);

/* Any thread but the loop's: copies [gpa, gpa + len) of the guest's RAM.
 * Returns 0, -EFAULT (outside the guest's RAM), -ENOTCONN (not bound, or
 * the connection ended), -EIO (the peer refused). */
int rmem_read(struct rmem *m, uint64_t gpa, void *buf, size_t len);
int rmem_write(struct rmem *m, uint64_t gpa, const void *buf, size_t len);

/* Loop thread, with no rmem_read/write running. */
void rmem_destroy(struct rmem *m);

#endif
