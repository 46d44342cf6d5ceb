// SPDX-License-Identifier: MIT
/* Test-only raw RDMA CM peer; see xrdma_testhook.h. Blocking by design. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <rdma/rdma_cma.h>

#include "xrdma_testhook.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The next event of ch within the deadline: its type and status. */
static int next_event(struct rdma_event_channel *ch, double end, enum rdma_cm_event_type *type,
		      int *status)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *ev;

	for (;;) {
		double left = end - now_s();

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			return -errno;
		if (p.revents & POLLIN)
			break;
	}
	if (rdma_get_cm_event(ch, &ev))
		return -errno;
	*type = ev->event;
	*status = ev->status;
	rdma_ack_cm_event(ev);
	return 0;
}

int xrdma_test_raw_connect(const char *host, unsigned port, const void *priv, size_t len,
			   double timeout_s)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 }
	};
	struct rdma_conn_param cp = { .private_data = priv,
				      .private_data_len = (uint8_t)len,
				      .retry_count = 3,
				      .rnr_retry_count = 3 };
	double end = now_s() + timeout_s;
	enum rdma_cm_event_type type;
	struct rdma_cm_id *id = NULL;
	struct addrinfo *ai = NULL;
	char ps[16];
	int rc, status;

	if (!ch)
		return -errno;
	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host, ps, &hints, &ai) ? -EHOSTUNREACH : 0;
	if (!rc)
		rc = rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) ? -errno : 0;
	if (!rc)
		rc = rdma_resolve_addr(id, NULL, ai->ai_addr, 5000) ? -errno : 0;
	if (!rc)
		rc = next_event(ch, end, &type, &status);
	if (!rc && type != RDMA_CM_EVENT_ADDR_RESOLVED)
		rc = -EHOSTUNREACH;
	if (!rc)
		rc = rdma_resolve_route(id, 5000) ? -errno : 0;
	if (!rc)
		rc = next_event(ch, end, &type, &status);
	if (!rc && type != RDMA_CM_EVENT_ROUTE_RESOLVED)
		rc = -EHOSTUNREACH;
	/* NULL pd and CQs: librdmacm supplies its own. */
	if (!rc)
		rc = rdma_create_qp(id, NULL, &qa) ? -errno : 0;
	if (!rc)
		rc = rdma_connect(id, &cp) ? -errno : 0;
	if (!rc)
		rc = next_event(ch, end, &type, &status);
	if (!rc) {
		if (type == RDMA_CM_EVENT_ESTABLISHED) {
			rc = XRDMA_TEST_ESTABLISHED;
			rdma_disconnect(id);
		} else if (type == RDMA_CM_EVENT_REJECTED) {
			rc = XRDMA_TEST_REJECTED;
		} else {
			rc = -ECONNRESET;
		}
	}
	if (id && id->qp)
		rdma_destroy_qp(id);
	if (id)
		rdma_destroy_id(id);
	if (ai)
		freeaddrinfo(ai);
	rdma_destroy_event_channel(ch);
	return rc;
}
