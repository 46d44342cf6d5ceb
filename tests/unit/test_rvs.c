// SPDX-License-Identifier: MIT
/*
 * rvmbus session: two ends joined by a simulated link that loses whatever
 * is in flight when it is cut. Through thousands of cuts every message is
 * delivered exactly once and in order, in both directions.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fab/rvmbus_session.h"

#define QMAX 4096

/* One direction of the link: a FIFO of wire messages. */
struct pipe {
	uint8_t *msg[QMAX];
	size_t len[QMAX];
	unsigned head, count;
};

struct end {
	struct rvs *s;
	struct pipe *out; /* what we transmit */
	bool link_ok;
	uint64_t next_expected; /* content check: bodies carry 1, 2, 3, ... */
	uint64_t got;
	bool bad;
};

static void pipe_clear(struct pipe *p)
{
	while (p->count) {
		free(p->msg[p->head]);
		p->head = (p->head + 1) % QMAX;
		p->count--;
	}
}

static int xmit(void *ctx, const void *msg, size_t len)
{
	struct end *e = ctx;
	unsigned i;

	if (!e->link_ok || e->out->count == QMAX)
		return -ENOTCONN;
	i = (e->out->head + e->out->count) % QMAX;
	e->out->msg[i] = malloc(len);
	memcpy(e->out->msg[i], msg, len);
	e->out->len[i] = len;
	e->out->count++;
	return 0;
}

static void deliver(void *ctx, uint16_t type, const void *body, size_t len)
{
	struct end *e = ctx;
	uint64_t v;

	if (type != RVS_T_USER_MIN || len != sizeof(v)) {
		e->bad = true;
		return;
	}
	memcpy(&v, body, sizeof(v));
	if (v != e->next_expected)
		e->bad = true;
	e->next_expected = v + 1;
	e->got++;
}

static const struct rvs_ops ops = { .xmit_cb = xmit, .deliver_cb = deliver };

/* Moves up to n messages from p into the receiving end. */
static void pump(struct pipe *p, struct end *to, unsigned n)
{
	while (n-- && p->count) {
		uint8_t *m = p->msg[p->head];
		size_t len = p->len[p->head];

		p->head = (p->head + 1) % QMAX;
		p->count--;
		assert_int_equal(rvs_rx(to->s, m, len), 0);
		free(m);
	}
}

static void test_exactly_once_through_cuts(void **state)
{
	static struct pipe ab, ba;
	struct end a = { .out = &ab, .next_expected = 1 }, b = { .out = &ba, .next_expected = 1 };
	uint64_t sent_a = 0, sent_b = 0;
	struct rvs_stats st;

	assert_int_equal(rvs_create(&ops, &a, 64, &a.s), 0);
	assert_int_equal(rvs_create(&ops, &b, 64, &b.s), 0);
	srand(42);
	for (int round = 0; round < 3000; round++) {
		/* (Re)connect: each side tells the other how far it delivered. */
		uint64_t da = rvs_delivered(a.s), db = rvs_delivered(b.s);

		a.link_ok = b.link_ok = true;
		assert_int_equal(rvs_link_up(a.s, db), 0);
		assert_int_equal(rvs_link_up(b.s, da), 0);
		for (int step = 0, n = rand() % 40; step < n; step++) {
			int r = rand() % 4;

			if (r == 0 && sent_a < 100000) {
				uint64_t v = sent_a + 1;

				if (rvs_send(a.s, RVS_T_USER_MIN, &v, sizeof(v)) == 0)
					sent_a++;
			} else if (r == 1 && sent_b < 100000) {
				uint64_t v = sent_b + 1;

				if (rvs_send(b.s, RVS_T_USER_MIN, &v, sizeof(v)) == 0)
					sent_b++;
			} else if (r == 2) {
				pump(&ab, &b, (unsigned)(rand() % 8));
				rvs_ack(b.s);
			} else {
				pump(&ba, &a, (unsigned)(rand() % 8));
				rvs_ack(a.s);
			}
		}
		/* Cut: whatever is in flight is lost. */
		a.link_ok = b.link_ok = false;
		rvs_link_down(a.s);
		rvs_link_down(b.s);
		pipe_clear(&ab);
		pipe_clear(&ba);
	}
	/* A last clean connection drains everything. */
	a.link_ok = b.link_ok = true;
	assert_int_equal(rvs_link_up(a.s, rvs_delivered(b.s)), 0);
	assert_int_equal(rvs_link_up(b.s, rvs_delivered(a.s)), 0);
	for (int i = 0; i < 100 && (ab.count || ba.count); i++) {
		pump(&ab, &b, QMAX);
		pump(&ba, &a, QMAX);
		rvs_ack(a.s);
		rvs_ack(b.s);
	}
	assert_false(a.bad);
	assert_false(b.bad);
	assert_int_equal(b.got, sent_a);
	assert_int_equal(a.got, sent_b);
	assert_true(sent_a > 1000 && sent_b > 1000);
	rvs_get_stats(a.s, &st);
	assert_true(st.resent > 0); /* the cuts did force resends */
	assert_int_equal(st.queued, 0);
	rvs_get_stats(b.s, &st);
	assert_true(st.duplicates > 0 || st.resent > 0);
	rvs_destroy(a.s);
	rvs_destroy(b.s);
}

static void test_window_and_malformed(void **state)
{
	static struct pipe ab;
	struct end a = { .out = &ab, .next_expected = 1 }, b = { .next_expected = 1 };
	struct rvs_hdr h = { 0 };
	uint8_t buf[64];
	uint64_t v = 1;

	assert_int_equal(rvs_create(&ops, &a, 2, &a.s), 0);
	assert_int_equal(rvs_create(&ops, &b, 2, &b.s), 0);
	assert_int_equal(rvs_send(a.s, RVS_T_USER_MIN, &v, 8), 0);
	v = 2;
	assert_int_equal(rvs_send(a.s, RVS_T_USER_MIN, &v, 8), 0);
	assert_int_equal(rvs_send(a.s, RVS_T_USER_MIN, &v, 8), -ENOBUFS); /* window */
	assert_int_equal(rvs_send(a.s, RVS_T_ACK, &v, 8), -EINVAL);	  /* reserved */

	assert_int_equal(rvs_rx(b.s, buf, 10), -EBADMSG); /* short */
	h.type = RVS_T_USER_MIN;
	h.seq = 1;
	h.len = 40; /* disagrees with the bytes present */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(rvs_rx(b.s, buf, sizeof(h) + 8), -EBADMSG);
	h.len = 8;
	h.ack = 5; /* acks something b never sent */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(rvs_rx(b.s, buf, sizeof(h) + 8), -EBADMSG);
	h.ack = 0;
	h.seq = 3; /* gap */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(rvs_rx(b.s, buf, sizeof(h) + 8), -EPROTO);
	h.seq = 1;
	h.type = 0x0042; /* reserved type with a sequence number */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(rvs_rx(b.s, buf, sizeof(h) + 8), -EBADMSG);
	/* A peer claiming to have delivered more than we sent: not our peer. */
	assert_int_equal(rvs_link_up(a.s, 7), -EPROTO);
	pipe_clear(&ab);
	rvs_destroy(a.s);
	rvs_destroy(b.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exactly_once_through_cuts),
		cmocka_unit_test(test_window_and_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
