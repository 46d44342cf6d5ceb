// SPDX-License-Identifier: MIT
/* Registry of transport backends and the wrappers that dispatch to them. */
#include <errno.h>
#include <string.h>

#include "fab/xport.h"

#define XPORT_MAX_BACKENDS 8

static const struct xport_ops *backends[XPORT_MAX_BACKENDS];

int xport_register(const struct xport_ops *ops)
{
	int i;

	if (!ops || !ops->name || !ops->name[0] || !ops->create)
		return -EINVAL;
	for (i = 0; i < XPORT_MAX_BACKENDS && backends[i]; i++) {
		if (backends[i] == ops)
			return 0;
		if (!strcmp(backends[i]->name, ops->name))
			return -EEXIST;
	}
	if (i == XPORT_MAX_BACKENDS)
		return -ENOSPC;
	backends[i] = ops;
	return 0;
}

const struct xport_ops *xport_lookup(const char *name)
{
	for (int i = 0; name && i < XPORT_MAX_BACKENDS && backends[i]; i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

int xport_create(const char *name, struct ev_loop *loop, const struct xport_cfg *cfg,
		 struct xport **out)
{
	const struct xport_ops *ops = xport_lookup(name);
	int rc;

	if (!ops)
		return -ENOENT;
	if (!loop || !cfg || !out)
		return -EINVAL;
	rc = ops->create(loop, cfg, out);
	if (rc == 0) {
		(*out)->ops = ops;
		(*out)->loop = loop;
	}
	return rc;
}

void xport_destroy(struct xport *x)
{
	if (x)
		x->ops->destroy(x);
}

int xport_listen(struct xport *x, const char *hostport, xport_accept_cb cb, void *arg, char *bound,
		 size_t boundlen)
{
	if (!hostport || !cb)
		return -EINVAL;
	return x->ops->listen(x, hostport, cb, arg, bound, boundlen);
}

int xport_connect(struct xport *x, const char *hostport, const char *peer_name,
		  const struct xport_conn_cbs *cbs, void *arg, struct xport_conn **out)
{
	if (!hostport || !peer_name || !cbs || !cbs->closed_cb || !out)
		return -EINVAL;
	return x->ops->connect(x, hostport, peer_name, cbs, arg, out);
}

int xport_sendv(struct xport_conn *c, const struct iovec *iov, int iovcnt)
{
	if (iovcnt <= 0 || iovcnt > XPORT_IOV_MAX || !iov)
		return -EINVAL;
	return c->x->ops->sendv(c, iov, iovcnt);
}

void xport_close(struct xport_conn *c)
{
	if (c)
		c->x->ops->close(c);
}

int xport_reg_mr(struct xport *x, void *addr, size_t len, unsigned access, struct xport_mr **out)
{
	const unsigned all =
		XPORT_ACCESS_LOCAL_WRITE | XPORT_ACCESS_REMOTE_WRITE | XPORT_ACCESS_REMOTE_READ;

	if (!addr || !len || (access & ~all) || !out)
		return -EINVAL;
	return x->ops->reg_mr(x, addr, len, access, out);
}

void xport_dereg_mr(struct xport_mr *mr)
{
	if (mr)
		mr->x->ops->dereg_mr(mr);
}

unsigned xport_flags(const struct xport *x)
{
	return x->ops->flags;
}

const struct xport_key *xport_mr_key(const struct xport_mr *mr)
{
	return &mr->key;
}

/* The checks every backend needs before it touches the local buffer. */
static int rma_check(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		     const struct xport_key *key, uint64_t offset, xport_rma_cb cb, unsigned need)
{
	uintptr_t b = (uintptr_t)buf, m;

	if (!local || !buf || !len || !key || !cb || local->x != c->x)
		return -EINVAL;
	m = (uintptr_t)local->addr;
	if (b < m || b - m > local->len || len > local->len - (b - m))
		return -EINVAL;
	if ((local->access & need) != need)
		return -EACCES;
	if (offset > key->length || len > key->length - offset)
		return -ERANGE;
	return 0;
}

int xport_read(struct xport_conn *c, struct xport_mr *local, void *buf, size_t len,
	       const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	int rc = rma_check(c, local, buf, len, key, offset, cb, XPORT_ACCESS_LOCAL_WRITE);

	return rc ? rc : c->x->ops->read(c, local, buf, len, key, offset, cb, arg);
}

int xport_write(struct xport_conn *c, struct xport_mr *local, const void *buf, size_t len,
		const struct xport_key *key, uint64_t offset, xport_rma_cb cb, void *arg)
{
	int rc = rma_check(c, local, buf, len, key, offset, cb, 0);

	return rc ? rc : c->x->ops->write(c, local, buf, len, key, offset, cb, arg);
}

const char *xport_peer_name(const struct xport_conn *c)
{
	return c->x->ops->peer_name(c);
}

const char *xport_peer_addr(const struct xport_conn *c)
{
	return c->x->ops->peer_addr(c);
}

void xport_stats(const struct xport_conn *c, struct xport_stats *out)
{
	c->x->ops->stats(c, out);
}

void xport_set_cbs(struct xport_conn *c, const struct xport_conn_cbs *cbs, void *arg)
{
	c->cbs = cbs;
	c->arg = arg;
}
