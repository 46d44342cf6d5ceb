// SPDX-License-Identifier: MIT
/*
 * Remote guest memory over the transport (fab/rvmbus_rmem.h). A caller on a
 * worker thread hands one operation at a time to the loop thread through an
 * ev_async and sleeps on a condition variable; the loop thread runs it as a
 * transport remote read/write through a registered staging buffer (the
 * transport only moves data to and from registered memory).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "fab/rvmbus_rmem.h"
#include "fab/xport.h"

enum op_kind { OP_NONE, OP_READ, OP_WRITE };

struct rmem {
	struct ev_loop *loop;
	struct xport *x;
	ev_async wake;
	uint8_t *staging;
	struct xport_mr *mr;
	/* loop thread only */
	struct xport_conn *conn;
	struct xport_key key;
	bool bound;
	/* the operation being handed over */
	pthread_mutex_t op_lock; /* one caller at a time */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum op_kind kind;
	uint64_t gpa;
	size_t len;
	bool submitted, done;
	int err;
};

static void op_done(int err, void *arg)
{
	struct rmem *m = arg;

	pthread_mutex_lock(&m->lock);
	m->err = err == 0 ? 0 : err == -ECONNRESET || err == -ECANCELED ? -ENOTCONN : -EIO;
	m->done = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct rmem *m = w->data;
	enum op_kind kind;
	uint64_t gpa;
	size_t len;
	int rc;

	pthread_mutex_lock(&m->lock);
	if (!m->submitted || m->done) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->submitted = false;
	kind = m->kind;
	gpa = m->gpa;
	len = m->len;
	pthread_mutex_unlock(&m->lock);

	if (!m->bound) {
		op_done(-ECONNRESET, m);
		return;
	}
	if (kind == OP_READ)
		rc = xport_read(m->conn, m->mr, m->staging, len, &m->key, gpa, op_done, m);
	else
		rc = xport_write(m->conn, m->mr, m->staging, len, &m->key, gpa, op_done, m);
	if (rc)
		op_done(rc == -ENOTCONN ? -ECONNRESET : -EIO, m);
}

int rmem_create(struct ev_loop *loop, struct xport *x, struct rmem **out)
{
	struct rmem *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return -ENOMEM;
	m->loop = loop;
	m->x = x;
	m->staging = aligned_alloc(4096, RMEM_STAGING);
	if (!m->staging) {
		free(m);
		return -ENOMEM;
	}
	rc = xport_reg_mr(x, m->staging, RMEM_STAGING, XPORT_ACCESS_LOCAL_WRITE, &m->mr);
	if (rc) {
		free(m->staging);
		free(m);
		return rc;
	}
	pthread_mutex_init(&m->op_lock, NULL);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	ev_async_init(&m->wake, wake_cb);
	m->wake.data = m;
	ev_async_start(loop, &m->wake);
	*out = m;
	return 0;
}

void rmem_bind(struct rmem *m, struct xport_conn *c, const struct xport_key *key)
{
	m->conn = c;
	m->key = *key;
	m->bound = true;
}

void rmem_unbind(struct rmem *m)
{
	m->bound = false;
	m->conn = NULL;
}

/* One chunk: hands it to the loop and waits. */
static int chunk(struct rmem *m, enum op_kind kind, uint64_t gpa, size_t len)
{
	int err;

	pthread_mutex_lock(&m->lock);
	m->kind = kind;
	m->gpa = gpa;
	m->len = len;
	m->done = false;
	m->submitted = true;
	pthread_mutex_unlock(&m->lock);
	ev_async_send(m->loop, &m->wake);
	pthread_mutex_lock(&m->lock);
	while (!m->done)
		pthread_cond_wait(&m->cond, &m->lock);
	err = m->err;
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int rmem_op(struct rmem *m, enum op_kind kind, uint64_t gpa, uint8_t *buf, size_t len)
{
	uint64_t end;
	int rc = 0;

	/* The bound key says how much RAM the guest has: checked here as the
	 * peer checks it again. (Bind happens before workers start.) */
	if (m->key.length == 0)
		return -ENOTCONN;
	if (__builtin_add_overflow(gpa, (uint64_t)len, &end) || end > m->key.length)
		return -EFAULT;
	pthread_mutex_lock(&m->op_lock);
	while (len && !rc) {
		size_t n = len < RMEM_STAGING ? len : RMEM_STAGING;

		if (kind == OP_WRITE)
			memcpy(m->staging, buf, n);
		rc = chunk(m, kind, gpa, n);
		if (!rc && kind == OP_READ)
			memcpy(buf, m->staging, n);
		gpa += n;
		buf += n;
		len -= n;
	}
	pthread_mutex_unlock(&m->op_lock);
	return rc;
}

int rmem_read(struct rmem *m, uint64_t gpa, void *buf, size_t len)
{
	return rmem_op(m, OP_READ, gpa, buf, len);
}

int rmem_write(struct rmem *m, uint64_t gpa, const void *buf, size_t len)
{
	return rmem_op(m, OP_WRITE, gpa, (uint8_t *)buf, len);
}

void rmem_destroy(struct rmem *m)
{
	if (!m)
		return;
	ev_async_stop(m->loop, &m->wake);
	xport_dereg_mr(m->mr);
	free(m->staging);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->op_lock);
	free(m);
}
