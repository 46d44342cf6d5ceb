// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for guest-controlled VMBus channel messages.
 *
 * The whole input first goes to vmbus_msg_parse() in both directions. Then
 * a host manager with small limits, three offers and a completed 5.3 contact
 * is fed a sequence of operations split from the input: raw messages,
 * messages with a chosen type header (so the fuzzer reaches the handlers
 * quickly), and host-side calls (open completion, rescind, offer, reset)
 * interleaved with them. Every message the host sends must parse as
 * host-to-guest and fit in 240 bytes; the bounds must hold after every step;
 * the host is destroyed at the end so leaks show up.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fab/vmbus_chan.h"
#include "fab/vmbus_proto.h"

#define MAX_GPADLS 6
#define MAX_PFNS   200
#define MAX_RELID  8

struct fuzz_ctx {
	struct vmbus_host *h;
	int gpadl_rc;
	int open_rc;
	int open_sync;
	int contact_rc;
	int mapped; /* GPADLs the host "mapped" and has not been told to unmap */
};

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int f_send(void *ctx, const void *msg, size_t len)
{
	struct vmbus_msg m;

	check(len <= VMBUS_MSG_MAX);
	check(vmbus_msg_parse(msg, len, VMBUS_DIR_H2G, &m) == 0);
	return 0;
}

static int f_gpadl_create(void *ctx, const struct vmbus_host_gpadl *g)
{
	struct fuzz_ctx *f = ctx;
	uint32_t sum = 0;

	check(g->nranges >= 1 && g->npfns >= g->nranges && g->npfns <= MAX_PFNS);
	for (uint32_t i = 0; i < g->nranges; i++) {
		check(g->ranges[i].first_pfn == sum);
		check(g->ranges[i].byte_offset < VMBUS_PAGE_SIZE && g->ranges[i].byte_count > 0);
		check(g->ranges[i].npfns ==
		      vmbus_range_pages(g->ranges[i].byte_offset, g->ranges[i].byte_count));
		sum += g->ranges[i].npfns;
	}
	check(sum == g->npfns);
	/* Touch every PFN so ASan sees the array's bounds. */
	for (uint32_t i = 0; i < g->npfns; i++)
		sum += (uint32_t)g->pfns[i];
	if (f->gpadl_rc == 0)
		f->mapped++;
	return f->gpadl_rc;
}

static void f_gpadl_teardown(void *ctx, uint32_t id, uint32_t relid)
{
	struct fuzz_ctx *f = ctx;

	f->mapped--;
	check(f->mapped >= 0);
}

static int f_open(void *ctx, const struct vmbus_host_open_req *req)
{
	struct fuzz_ctx *f = ctx;

	check(req->downstream_offset > 0 && req->downstream_offset < req->ring_pages);
	if (f->open_sync)
		check(vmbus_host_open_complete(f->h, req->relid, 0) == 0);
	return f->open_rc;
}

static int f_contact(void *ctx, const struct vmbus_host_contact *c)
{
	struct fuzz_ctx *f = ctx;

	return f->contact_rc;
}

static void f_close(void *ctx, uint32_t relid)
{
	check(relid >= 1 && relid <= MAX_RELID);
}

static uint32_t f_modify(void *ctx, uint32_t relid, uint32_t vp)
{
	check(relid >= 1 && relid <= MAX_RELID);
	return vp & 1 ? VMBUS_STATUS_UNSUCCESSFUL : 0;
}

static void f_unload(void *ctx)
{
	struct fuzz_ctx *f = ctx;

	/* Everything was torn down before the unload callback. */
	check(f->mapped == 0);
}

static const struct vmbus_host_ops ops = {
	.send = f_send,
	.contact = f_contact,
	.gpadl_create = f_gpadl_create,
	.gpadl_teardown = f_gpadl_teardown,
	.open = f_open,
	.close = f_close,
	.modify = f_modify,
	.unload = f_unload,
};

static void add_offer(struct fuzz_ctx *f, uint8_t tag)
{
	struct vmbus_host_offer o;
	uint32_t relid;

	memset(&o, 0, sizeof(o));
	o.if_type.b[0] = tag;
	o.if_instance.b[0] = tag;
	vmbus_host_offer_add(f->h, &o, &relid, NULL);
}

/* Consumes n bytes from the input cursor; NULL when exhausted. */
static const uint8_t *take(const uint8_t **p, const uint8_t *end, size_t n)
{
	const uint8_t *r = *p;

	if ((size_t)(end - r) < n)
		return NULL;
	*p += n;
	return r;
}

static void check_bounds(struct fuzz_ctx *f)
{
	uint32_t est = 0, pend = 0;

	check(vmbus_host_gpadl_count(f->h, &est, &pend) == 0);
	check(est + pend <= MAX_GPADLS);
	check((int)est == f->mapped);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmbus_host_config cfg = { .max_gpadls = MAX_GPADLS,
					 .max_gpadl_pfns = MAX_PFNS,
					 .max_relid = MAX_RELID };
	const uint8_t *p = data, *end = data + size;
	struct fuzz_ctx f = { 0 };
	uint8_t buf[256];
	struct vmbus_msg m;
	size_t len;

	vmbus_msg_parse(data, size, VMBUS_DIR_G2H, &m);
	vmbus_msg_parse(data, size, VMBUS_DIR_H2G, &m);

	if (vmbus_host_create(&cfg, &ops, &f, &f.h) != 0)
		return 0;
	for (uint8_t t = 0; t < 3; t++)
		add_offer(&f, t);
	check(vmbus_build_initiate_contact(buf, sizeof(buf), VMBUS_VERSION_WIN10_V5_3, 0, 0,
					   VMBUS_MESSAGE_SINT, 0, 0, 0, &len) == 0);
	check(vmbus_host_rx_conn(f.h, VMBUS_MESSAGE_CONNECTION_ID_4, buf, len) == 0);
	check(vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_REQUESTOFFERS, &len) == 0);
	check(vmbus_host_rx(f.h, buf, len) == 0);

	for (;;) {
		const uint8_t *op = take(&p, end, 1), *a, *body;
		uint64_t pfns[MAX_PFNS + 8];
		uint32_t used;

		if (!op)
			break;
		switch (*op % 12) {
		case 0: /* raw message: length byte, bytes; optionally a connection id */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			len = *a;
			body = take(&p, end, len);
			if (!body)
				goto out;
			memcpy(buf, body, len);
			if (*op & 0x80)
				vmbus_host_rx_conn(f.h, (*op >> 4) & 7, buf, len);
			else
				vmbus_host_rx(f.h, buf, len);
			break;
		case 1: /* typed message: type byte, length byte, payload after the header */
			a = take(&p, end, 2);
			if (!a)
				goto out;
			len = (size_t)a[1] + 8;
			if (len > sizeof(buf))
				len = sizeof(buf);
			body = take(&p, end, len - 8);
			if (!body)
				goto out;
			memset(buf, 0, 8);
			buf[0] = (uint8_t)(a[0] % VMBUS_MSG_COUNT);
			memcpy(buf + 8, body, len - 8);
			vmbus_host_rx(f.h, buf, len);
			break;
		case 2: /* well-formed GPADL_HEADER, then maybe one byte changed */
			a = take(&p, end, 5);
			if (!a)
				goto out;
			for (uint32_t i = 0; i < MAX_PFNS + 8; i++)
				pfns[i] = i * 7;
			check(vmbus_build_gpadl_header(buf, sizeof(buf), a[0] % 5, a[1] % 8, pfns,
						       1 + a[2] % (MAX_PFNS + 8), &used,
						       &len) == 0);
			if (a[3] & 1)
				buf[a[4] % len] ^= a[3];
			vmbus_host_rx(f.h, buf, len);
			break;
		case 3: /* GPADL_BODY for a small id */
			a = take(&p, end, 2);
			if (!a)
				goto out;
			for (uint32_t i = 0; i < 28; i++)
				pfns[i] = i;
			check(vmbus_build_gpadl_body(buf, sizeof(buf), a[0] % 8, pfns,
						     1 + a[1] % 28, &used, &len) == 0);
			vmbus_host_rx(f.h, buf, len);
			break;
		case 4: /* OPENCHANNEL with small relid / GPADL id / offset */
			a = take(&p, end, 4);
			if (!a)
				goto out;
			check(vmbus_build_open_channel(buf, sizeof(buf), a[0] % 5, a[1], a[2] % 8,
						       0, a[3] % 32, NULL, 0, &len) == 0);
			vmbus_host_rx(f.h, buf, len);
			break;
		case 5: /* close, teardown, release, unload, modify, request offers */
			a = take(&p, end, 2);
			if (!a)
				goto out;
			switch (a[0] % 6) {
			case 0:
				vmbus_build_close_channel(buf, sizeof(buf), a[1] % 5, &len);
				break;
			case 1:
				vmbus_build_gpadl_teardown(buf, sizeof(buf), a[1] % 5,
							   (a[1] >> 3) % 8, &len);
				break;
			case 2:
				vmbus_build_relid_released(buf, sizeof(buf), a[1] % 5, &len);
				break;
			case 3:
				vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_UNLOAD, &len);
				break;
			case 4:
				vmbus_build_modifychannel(buf, sizeof(buf), a[1] % 5, a[1] >> 3,
							  &len);
				break;
			default:
				vmbus_build_simple(buf, sizeof(buf), VMBUS_MSG_REQUESTOFFERS, &len);
				break;
			}
			vmbus_host_rx(f.h, buf, len);
			break;
		case 6: /* host completes an open */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			vmbus_host_open_complete(f.h, *a % (MAX_RELID + 2),
						 (*a & 0x80) ? VMBUS_STATUS_UNSUCCESSFUL : 0);
			break;
		case 7: /* host rescinds or offers */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			if (*a & 0x80)
				add_offer(&f, *a);
			else
				vmbus_host_rescind(f.h, *a % (MAX_RELID + 2));
			break;
		case 8: /* callback behaviour */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			f.gpadl_rc = (*a & 1) ? -EFAULT : 0;
			f.open_rc = (*a & 2) ? -ENODEV : 0;
			f.open_sync = (*a & 4) != 0;
			f.contact_rc = (*a & 8) ? -EPERM : 0;
			break;
		case 9: /* contact again (after an unload), at some version */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			check(vmbus_build_initiate_contact(
				      buf, sizeof(buf),
				      vmbus_version_list[*a % VMBUS_VERSION_COUNT], 0, 0x1000,
				      VMBUS_MESSAGE_SINT, 0, 0, 0, &len) == 0);
			vmbus_host_rx(f.h, buf, len);
			break;
		case 10: /* partition reset */
			vmbus_host_reset(f.h);
			break;
		default: /* several messages from one 240-byte window, split by the input */
			a = take(&p, end, 1);
			if (!a)
				goto out;
			len = *a % (VMBUS_MSG_MAX + 1);
			body = take(&p, end, len);
			if (!body)
				goto out;
			for (size_t off = 0; off + 8 <= len;) {
				size_t n = 8 + body[off] % (len - off - 7);

				vmbus_host_rx(f.h, body + off, n);
				off += n;
			}
			break;
		}
		check_bounds(&f);
	}
out:
	vmbus_host_reset(f.h);
	check(f.mapped == 0);
	vmbus_host_destroy(f.h);
	return 0;
}
