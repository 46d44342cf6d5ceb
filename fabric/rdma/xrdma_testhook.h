/* SPDX-License-Identifier: MIT */
/*
 * Test-only helpers of the RDMA backend (library xport_rdma_int, never
 * linked into the daemons): a raw RDMA CM peer that skips the TLS pairing,
 * so tests can show what the listener does with connect requests that carry
 * bad, missing or replayed tokens. Tests stay free of verbs headers.
 */
#ifndef FAB_XRDMA_TESTHOOK_H
#define FAB_XRDMA_TESTHOOK_H

#include <stddef.h>

enum xrdma_test_outcome {
	XRDMA_TEST_REJECTED = 0,
	XRDMA_TEST_ESTABLISHED = 1,
};

/*
 * Connects to host:port (numeric IPv4/IPv6) through the RDMA CM with a
 * minimal QP and priv (len bytes, may be 0) as the private data of the
 * request. Blocking, on its own event channel, so it may run on a thread
 * while the loop of the listener under test runs elsewhere. An established
 * connection is disconnected at once. Returns an xrdma_test_outcome, or a
 * negative errno (-ETIMEDOUT after timeout_s, -EHOSTUNREACH, ...).
 */
int xrdma_test_raw_connect(const char *host, unsigned port, const void *priv, size_t len,
			   double timeout_s);

#endif
