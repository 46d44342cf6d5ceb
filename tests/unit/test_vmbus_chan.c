// SPDX-License-Identifier: MIT
/*
 * VMBus channel management: the host manager and the guest client driven
 * against each other in one process through a message queue (each side's
 * send callback enqueues, pump() delivers), plus the parser and both state
 * machines fed malformed and out-of-order messages.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fab/vmbus_chan.h"
#include "fab/vmbus_proto.h"

#define TO_HOST	  0
#define TO_CLIENT 1
#define QMAX	  1024
#define LOGMAX	  4096
#define MAXPFNS	  1024

struct qmsg {
	int to;
	uint32_t conn_id;
	size_t len;
	uint8_t buf[VMBUS_MSG_MAX];
};

struct logent {
	int to;
	uint32_t conn_id;
	uint32_t type;
	size_t len;
};

struct world {
	struct vmbus_host *h;
	struct vmbus_client c;
	struct vmbus_client_chan chans[8];
	struct vmbus_client_gpadl gpadls[8];

	struct qmsg q[QMAX];
	size_t qhead, qtail;
	struct logent log[LOGMAX];
	size_t nlog;
	int host_err;	/* first error vmbus_host_rx_conn returned in pump() */
	int client_err; /* same for vmbus_client_rx */

	/* what the host callbacks saw, and what they answer */
	int n_contact, contact_rc;
	struct vmbus_host_contact contact;
	int n_gpadl, gpadl_rc;
	uint32_t gpadl_id, gpadl_relid, gpadl_npfns, gpadl_nranges;
	uint64_t gpadl_pfns[MAXPFNS];
	int n_teardown;
	uint32_t teardown_id;
	int n_open, open_rc;
	bool open_sync; /* complete the open inside the callback */
	struct vmbus_host_open_req open;
	int n_close;
	uint32_t close_relid;
	int n_modify;
	uint32_t modify_status;
	int n_unload;
	char order[64]; /* callback letters: C close, T teardown, U unload */
};

static void note(struct world *w, char ch)
{
	size_t n = strlen(w->order);

	if (n + 1 < sizeof(w->order)) {
		w->order[n] = ch;
		w->order[n + 1] = '\0';
	}
}

static void enqueue(struct world *w, int to, uint32_t conn_id, const void *msg, size_t len)
{
	struct vmbus_msg_hdr hdr;
	struct qmsg *m;

	assert_true(len <= VMBUS_MSG_MAX);
	assert_true(len >= sizeof(hdr));
	assert_true(w->qtail - w->qhead < QMAX);
	m = &w->q[w->qtail++ % QMAX];
	m->to = to;
	m->conn_id = conn_id;
	m->len = len;
	memcpy(m->buf, msg, len);
	memcpy(&hdr, msg, sizeof(hdr));
	assert_true(w->nlog < LOGMAX);
	w->log[w->nlog++] = (struct logent){ to, conn_id, hdr.msgtype, len };
}

/* ---- host callbacks ------------------------------------------------------- */

static int h_send(void *ctx, const void *msg, size_t len)
{
	enqueue(ctx, TO_CLIENT, 0, msg, len);
	return 0;
}

static int h_contact(void *ctx, const struct vmbus_host_contact *c)
{
	struct world *w = ctx;

	w->n_contact++;
	w->contact = *c;
	return w->contact_rc;
}

static int h_gpadl_create(void *ctx, const struct vmbus_host_gpadl *g)
{
	struct world *w = ctx;

	w->n_gpadl++;
	w->gpadl_id = g->gpadl_id;
	w->gpadl_relid = g->relid;
	w->gpadl_npfns = g->npfns;
	w->gpadl_nranges = g->nranges;
	assert_true(g->nranges >= 1);
	assert_int_equal(g->ranges[0].first_pfn, 0);
	if (g->npfns <= MAXPFNS)
		memcpy(w->gpadl_pfns, g->pfns, g->npfns * sizeof(uint64_t));
	return w->gpadl_rc;
}

static void h_gpadl_teardown(void *ctx, uint32_t id, uint32_t relid)
{
	struct world *w = ctx;

	w->n_teardown++;
	w->teardown_id = id;
	note(w, 'T');
}

static int h_open(void *ctx, const struct vmbus_host_open_req *req)
{
	struct world *w = ctx;

	w->n_open++;
	w->open = *req;
	if (w->open_sync)
		assert_int_equal(vmbus_host_open_complete(w->h, req->relid, 0), 0);
	return w->open_rc;
}

static void h_close(void *ctx, uint32_t relid)
{
	struct world *w = ctx;

	w->n_close++;
	w->close_relid = relid;
	note(w, 'C');
}

static uint32_t h_modify(void *ctx, uint32_t relid, uint32_t vp)
{
	struct world *w = ctx;

	w->n_modify++;
	return w->modify_status;
}

static void h_unload(void *ctx)
{
	struct world *w = ctx;

	w->n_unload++;
	note(w, 'U');
}

static const struct vmbus_host_ops host_ops = {
	.send = h_send,
	.contact = h_contact,
	.gpadl_create = h_gpadl_create,
	.gpadl_teardown = h_gpadl_teardown,
	.open = h_open,
	.close = h_close,
	.modify = h_modify,
	.unload = h_unload,
};

/* ---- client callback: a hypervisor that refuses unknown connection ids --- */

static int c_send(void *ctx, uint32_t conn_id, const void *msg, size_t len)
{
	struct world *w = ctx;

	if (!vmbus_host_conn_id_valid(w->h, conn_id))
		return -ECONNREFUSED;
	enqueue(w, TO_HOST, conn_id, msg, len);
	return 0;
}

static const struct vmbus_client_ops client_ops = { .send = c_send };

/* ---- harness --------------------------------------------------------------- */

static struct world *world_new(const struct vmbus_host_config *hc,
			       const struct vmbus_client_config *cc)
{
	struct world *w = calloc(1, sizeof(*w));
	struct vmbus_client_config dflt = { .target_vcpu = 0,
					    .interrupt_page = 0x7000,
					    .monitor_page1 = 0x8000,
					    .monitor_page2 = 0x9000 };

	assert_non_null(w);
	assert_int_equal(vmbus_host_create(hc, &host_ops, w, &w->h), 0);
	assert_int_equal(vmbus_client_init(&w->c, cc ? cc : &dflt, &client_ops, w, w->chans, 8,
					   w->gpadls, 8),
			 0);
	return w;
}

static void world_free(struct world *w)
{
	assert_int_equal(w->qtail, w->qhead);
	vmbus_host_destroy(w->h);
	free(w);
}

/* Delivers everything queued, both ways, until quiet. */
static void pump(struct world *w)
{
	w->host_err = 0;
	w->client_err = 0;
	while (w->qhead != w->qtail) {
		struct qmsg m = w->q[w->qhead++ % QMAX];
		int rc;

		if (m.to == TO_HOST) {
			rc = vmbus_host_rx_conn(w->h, m.conn_id, m.buf, m.len);
			if (rc && !w->host_err)
				w->host_err = rc;
		} else {
			rc = vmbus_client_rx(&w->c, m.buf, m.len);
			if (rc && !w->client_err)
				w->client_err = rc;
		}
	}
}

/* Takes the next message queued for the guest, without delivering it. */
static void take_reply(struct world *w, uint32_t type, struct vmbus_msg *out)
{
	struct qmsg *m;

	assert_true(w->qhead != w->qtail);
	m = &w->q[w->qhead++ % QMAX];
	assert_int_equal(m->to, TO_CLIENT);
	assert_int_equal(vmbus_msg_parse(m->buf, m->len, VMBUS_DIR_H2G, out), 0);
	assert_int_equal(out->type, type);
}

static void no_reply(struct world *w)
{
	assert_int_equal(w->qhead, w->qtail);
}

static size_t log_count(const struct world *w, int to, uint32_t type)
{
	size_t n = 0;

	for (size_t i = 0; i < w->nlog; i++)
		if (w->log[i].to == to && w->log[i].type == type)
			n++;
	return n;
}

static const struct vmbus_guid scsi_guid =
	VMBUS_GUID_INIT(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f);
static const struct vmbus_guid hb_guid =
	VMBUS_GUID_INIT(0x57164f39, 0x9115, 0x4e78, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d);

static uint32_t add_offer(struct world *w, const struct vmbus_guid *type, uint8_t tag)
{
	struct vmbus_host_offer o;
	uint32_t relid = 0, conn = 0;

	memset(&o, 0, sizeof(o));
	o.if_type = *type;
	memset(o.if_instance.b, tag, sizeof(o.if_instance.b));
	o.flags = VMBUS_OFFER_SERVER_SUPPORTS_GPADLS;
	o.mmio_megabytes = tag;
	o.user_def[0] = tag;
	o.user_def[119] = (uint8_t)~tag;
	assert_int_equal(vmbus_host_offer_add(w->h, &o, &relid, &conn), 0);
	assert_int_equal(conn, VMBUS_HOST_DEFAULT_EVENT_CONN_ID + relid);
	return relid;
}

static void connect_ready(struct world *w)
{
	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	assert_int_equal(vmbus_client_connect_status(&w->c), 0);
	assert_int_equal(vmbus_client_request_offers(&w->c), 0);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_offers_status(&w->c), 0);
}

static void fill_pfns(uint64_t *p, uint32_t n, uint64_t base)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = base + i * 3; /* not contiguous: order must survive */
}

static uint32_t make_gpadl(struct world *w, uint32_t relid, uint32_t npfns)
{
	uint64_t pfns[MAXPFNS];
	uint32_t id = 0;

	fill_pfns(pfns, npfns, 0x1000 + relid * 0x10000);
	assert_int_equal(vmbus_client_gpadl_create(&w->c, relid, pfns, npfns, &id), 0);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, NULL), -EINPROGRESS);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, NULL), 0);
	return id;
}

static void open_chan(struct world *w, uint32_t relid, uint32_t ring)
{
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 0, NULL, 0), 0);
	pump(w);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), -EINPROGRESS);
	assert_int_equal(vmbus_host_open_complete(w->h, relid, 0), 0);
	pump(w);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), 0);
}

/* Host-only raw injection: a host connected at 5.3 by hand. */
static void raw_contact(struct world *w, uint32_t version)
{
	uint8_t b[VMBUS_MSG_MAX];
	struct vmbus_msg m;
	size_t len;

	assert_int_equal(
		vmbus_build_initiate_contact(b, sizeof(b), version, 0, 0x7000, 2, 0, 0, 0, &len),
		0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_VERSION_RESPONSE, &m);
	assert_int_equal(m.u.version.version_supported, 1);
}

static void raw_request_offers(struct world *w)
{
	uint8_t b[VMBUS_MSG_MAX];
	size_t len;

	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_REQUESTOFFERS, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
}

/* Drops whatever the host queued for the guest. */
static void drain(struct world *w)
{
	w->qhead = w->qtail;
}

/* A GPADL_HEADER with arbitrary fields and nwords range-buffer words. */
static size_t mk_gpadl_header(uint8_t *b, uint32_t relid, uint32_t id, uint16_t buflen,
			      uint16_t rangecount, const uint64_t *words, uint32_t nwords)
{
	struct vmbus_msg_gpadl_header h;

	memset(&h, 0, sizeof(h));
	h.hdr.msgtype = VMBUS_MSG_GPADL_HEADER;
	h.child_relid = relid;
	h.gpadl = id;
	h.range_buflen = buflen;
	h.rangecount = rangecount;
	memcpy(b, &h, sizeof(h));
	memcpy(b + sizeof(h), words, nwords * 8);
	return sizeof(h) + nwords * 8;
}

static uint64_t desc(uint32_t byte_count, uint32_t byte_offset)
{
	return (uint64_t)byte_offset << 32 | byte_count;
}

/* ---- tests: GUIDs and the parser ------------------------------------------- */

static void test_guid(void **state)
{
	static const uint8_t shutdown_wire[16] = { 0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49,
						   0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb };
	static const uint8_t scsi_wire[16] = { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d,
					       0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };
	struct vmbus_guid g;
	char s[VMBUS_GUID_STR_LEN];

	assert_int_equal(vmbus_guid_parse("{0E0B6031-5213-4934-818B-38D90CED39DB}", &g), 0);
	assert_memory_equal(g.b, shutdown_wire, 16);
	vmbus_guid_format(&g, s);
	assert_string_equal(s, "0e0b6031-5213-4934-818b-38d90ced39db");

	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f", &g), 0);
	assert_memory_equal(g.b, scsi_wire, 16);
	assert_true(vmbus_guid_equal(&g, &scsi_guid));
	assert_false(vmbus_guid_equal(&g, &hb_guid));
	vmbus_guid_format(&hb_guid, s);
	assert_string_equal(s, "57164f39-9115-4e78-ab55-382f3bd5422d");

	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f0", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("ba6163d9x04a1-4d29-b605-72e2ffb1dc7f", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7g", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse("", &g), -EINVAL);
	assert_int_equal(vmbus_guid_parse(NULL, &g), -EINVAL);
}

static void test_builders_parse(void **state)
{
	uint8_t b[VMBUS_MSG_MAX], user[120];
	uint64_t pfns[40];
	struct vmbus_channel_offer o;
	struct vmbus_msg m;
	uint32_t used;
	size_t len;

	memset(&o, 0, sizeof(o));
	o.if_type = scsi_guid;
	o.chn_flags = 0x4;
	assert_int_equal(vmbus_build_offer(b, sizeof(b), &o, 7, 0x10007, true, &len), 0);
	assert_int_equal(len, 196);
	/* Offsets from the facts, read from the raw bytes. */
	assert_memory_equal(b + 8, scsi_guid.b, 16);
	assert_int_equal(b[184], 7);
	assert_int_equal(b[190], 1);
	assert_int_equal(b[192] | b[193] << 8 | b[194] << 16, 0x10007);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(m.u.offer.child_relid, 7);
	assert_true(vmbus_guid_equal(&m.u.offer.offer.if_type, &scsi_guid));
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EPERM);

	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10_V5_3, 3,
						      0x1234, 2, 0, 0xa000, 0xb000, &len),
			 0);
	assert_int_equal(len, 40);
	assert_int_equal(b[16], 2); /* msg_sint at 16 for >= 5.0 */
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.u.contact.vmbus_version_requested, 0x00050003);
	assert_int_equal(m.u.contact.target_vcpu, 3);
	assert_int_equal(m.u.contact.monitor_page2, 0xb000);
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10, 0, 0x1234,
						      2, 0, 0, 0, &len),
			 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.u.contact.interrupt_page, 0x1234);

	memset(user, 0xab, sizeof(user));
	assert_int_equal(vmbus_build_open_channel(b, sizeof(b), 5, 5, 77, 1, 4, user, 120, &len),
			 0);
	assert_int_equal(len, 148);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.u.open.downstream_ringbuffer_pageoffset, 4);
	assert_int_equal(m.u.open.userdata[119], 0xab);
	assert_int_equal(vmbus_build_open_channel(b, sizeof(b), 5, 5, 77, 1, 4, user, 121, &len),
			 -EINVAL);

	fill_pfns(pfns, 40, 100);
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), 5, 9, pfns, 40, &used, &len), 0);
	assert_int_equal(used, 26);
	assert_int_equal(len, 236);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.u.gpadl_header.range_buflen, 8 + 40 * 8);
	assert_int_equal(m.nwords, 27);
	assert_int_equal(m.total_words, 41);
	assert_int_equal(vmbus_msg_word(&m, 0), desc(40 * 4096, 0));
	assert_int_equal(vmbus_msg_word(&m, 26), pfns[25]);
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 9, pfns + 26, 14, &used, &len), 0);
	assert_int_equal(used, 14);
	assert_int_equal(len, 16 + 14 * 8);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.nwords, 14);
	assert_int_equal(vmbus_msg_word(&m, 13), pfns[39]);
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 9, pfns, 40, &used, &len), 0);
	assert_int_equal(used, 28);
	assert_int_equal(len, 240);

	/* Too small a buffer, bad arguments. */
	assert_int_equal(vmbus_build_rescind(b, 11, 1, &len), -ENOSPC);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_OPENCHANNEL, &len), -EINVAL);
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), 5, 9, pfns, 0, &used, &len),
			 -EINVAL);
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), 5, 9, pfns,
						  VMBUS_GPADL_MAX_WIRE_PFNS + 1, &used, &len),
			 -EINVAL);

	/* Every builder's output parses in its own direction. */
	assert_int_equal(vmbus_build_version_response(b, sizeof(b), true, 0, 1, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(m.u.version.msg_conn_id, 1);
	assert_int_equal(vmbus_build_open_result(b, sizeof(b), 1, 1, 5, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(vmbus_build_gpadl_created(b, sizeof(b), 1, 2, 0, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(vmbus_build_gpadl_torndown(b, sizeof(b), 2, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(vmbus_build_modify_response(b, sizeof(b), 1, 0, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_UNLOAD_RESPONSE, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(vmbus_build_close_channel(b, sizeof(b), 1, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(vmbus_build_gpadl_teardown(b, sizeof(b), 1, 2, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(vmbus_build_relid_released(b, sizeof(b), 1, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(vmbus_build_modifychannel(b, sizeof(b), 1, 2, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_string_equal(vmbus_msg_name(VMBUS_MSG_GPADL_BODY), "GPADL_BODY");
	assert_string_equal(vmbus_msg_name(19), "UNKNOWN");
}

static void test_parse_rejects(void **state)
{
	uint8_t b[512];
	uint64_t w[40];
	struct vmbus_msg m;
	struct vmbus_msg_hdr h = { 0, 0 };
	size_t len;

	memset(b, 0, sizeof(b));
	memset(&m, 0x5a, sizeof(m));

	/* Short: no header, or below the type's fixed size. */
	assert_int_equal(vmbus_msg_parse(NULL, 8, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_msg_parse(b, 7, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_build_open_channel(b, sizeof(b), 1, 1, 2, 0, 1, NULL, 0, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, 147, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10, 0, 0, 0, 0,
						      0, 0, &len),
			 0);
	assert_int_equal(vmbus_msg_parse(b, 39, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_build_gpadl_created(b, sizeof(b), 1, 2, 0, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, 19, VMBUS_DIR_H2G, &m), -EBADMSG);
	/* Long: over the 240-byte SynIC payload; longer fixed messages are fine. */
	assert_int_equal(vmbus_msg_parse(b, 241, VMBUS_DIR_H2G, &m), -EMSGSIZE);
	assert_int_equal(vmbus_msg_parse(b, 240, VMBUS_DIR_H2G, &m), 0);
	assert_int_equal(m.len, 240);

	/* Unknown or unimplemented types. */
	const uint32_t bad_types[] = { 0, 18, 19, 20, 21, 23, 25, 26, 29, 0xffffffffu };
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		h.msgtype = bad_types[i];
		memcpy(b, &h, sizeof(h));
		assert_int_equal(vmbus_msg_parse(b, 64, VMBUS_DIR_G2H, &m), -ENOMSG);
		assert_int_equal(vmbus_msg_parse(b, 64, VMBUS_DIR_H2G, &m), -ENOMSG);
	}

	/* Wrong direction, both ways. */
	for (uint32_t t = 1; t < VMBUS_MSG_COUNT; t++) {
		struct vmbus_msg a, c;
		int g2h, h2g;

		h.msgtype = t;
		memset(b, 0, sizeof(b));
		memcpy(b, &h, sizeof(h));
		g2h = vmbus_msg_parse(b, 200, VMBUS_DIR_G2H, &a);
		h2g = vmbus_msg_parse(b, 200, VMBUS_DIR_H2G, &c);
		if (g2h == -ENOMSG) {
			assert_int_equal(h2g, -ENOMSG);
			continue;
		}
		/* Exactly one direction is permitted. */
		assert_true((g2h == -EPERM) != (h2g == -EPERM));
	}

	/* GPADL_HEADER: PFN counts that disagree and other structural faults. */
	fill_pfns(w, 40, 1);
	w[0] = desc(3 * 4096, 0);
	len = mk_gpadl_header(b, 1, 9, 8 + 3 * 8, 1, w, 4);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.nwords, 4);
	assert_int_equal(m.total_words, 4);
	/* buflen says 4 PFNs, the descriptor 3 */
	len = mk_gpadl_header(b, 1, 9, 8 + 4 * 8, 1, w, 4);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* descriptor says 3, 2 present, buflen 2 */
	len = mk_gpadl_header(b, 1, 9, 8 + 2 * 8, 1, w, 3);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* more bytes present than range_buflen */
	len = mk_gpadl_header(b, 1, 9, 8 + 3 * 8, 1, w, 5);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* range_buflen not a multiple of 8 */
	len = mk_gpadl_header(b, 1, 9, 8 + 3 * 8 + 1, 1, w, 4);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* partial trailing word */
	len = mk_gpadl_header(b, 1, 9, 8 + 3 * 8, 1, w, 4);
	assert_int_equal(vmbus_msg_parse(b, len - 3, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* rangecount 0 */
	len = mk_gpadl_header(b, 1, 9, 8 + 3 * 8, 0, w, 4);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* byte_offset must stay inside the first page */
	w[0] = desc(4096, 4096);
	len = mk_gpadl_header(b, 1, 9, 8 + 2 * 8, 1, w, 3);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	w[0] = desc(4096, 4095); /* spans two pages */
	len = mk_gpadl_header(b, 1, 9, 8 + 2 * 8, 1, w, 3);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	/* byte_count 0 */
	w[0] = desc(0, 0);
	len = mk_gpadl_header(b, 1, 9, 8 + 8, 1, w, 2);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* Header announcing PFNs for later bodies: fine; but fewer ranges
	 * than still fit is not. */
	w[0] = desc(100 * 4096, 0);
	len = mk_gpadl_header(b, 1, 9, 8 + 100 * 8, 1, w, 27);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);
	assert_int_equal(m.total_words, 101);
	w[0] = desc(4096, 0);
	len = mk_gpadl_header(b, 1, 9, 8 + 8 + 8, 2, w, 2); /* 2nd range needs 2 more words */
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), -EBADMSG);
	/* two ranges, both complete in the header */
	w[0] = desc(4096, 0);
	w[2] = desc(8192, 0);
	len = mk_gpadl_header(b, 1, 9, 5 * 8, 2, w, 5);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);

	/* GPADL_BODY without PFNs or with a partial word. */
	uint32_t used;
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 9, w, 2, &used, &len), 0);
	assert_int_equal(vmbus_msg_parse(b, 16, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_msg_parse(b, len - 1, VMBUS_DIR_G2H, &m), -EBADMSG);
	assert_int_equal(vmbus_msg_parse(b, len, VMBUS_DIR_G2H, &m), 0);

	/* Full-buffer range check used by the host. */
	uint32_t npfns = 0;
	w[0] = desc(2 * 4096, 0);
	assert_int_equal(vmbus_gpa_ranges_check(w, 3, 1, &npfns), 0);
	assert_int_equal(npfns, 2);
	assert_int_equal(vmbus_gpa_ranges_check(w, 4, 1, &npfns), -EBADMSG);
	assert_int_equal(vmbus_gpa_ranges_check(w, 2, 1, &npfns), -EBADMSG);
	assert_int_equal(vmbus_gpa_ranges_check(w, 3, 2, &npfns), -EBADMSG);
}

/* ---- tests: connection ------------------------------------------------------ */

static void test_connect_newest(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t v = 0;

	assert_int_equal(vmbus_host_version(w->h, &v), -ENOTCONN);
	assert_int_equal(vmbus_client_connect(&w->c), 0);
	assert_int_equal(vmbus_client_connect_status(&w->c), -EINPROGRESS);
	assert_int_equal(vmbus_client_connect(&w->c), -EISCONN);
	/* 5.3 contact goes to connection id 4 ... */
	assert_int_equal(w->nlog, 1);
	assert_int_equal(w->log[0].type, VMBUS_MSG_INITIATE_CONTACT);
	assert_int_equal(w->log[0].conn_id, VMBUS_MESSAGE_CONNECTION_ID_4);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(vmbus_client_connect_status(&w->c), 0);
	assert_int_equal(vmbus_client_version(&w->c), VMBUS_VERSION_WIN10_V5_3);
	assert_int_equal(vmbus_host_version(w->h, &v), 0);
	assert_int_equal(v, VMBUS_VERSION_WIN10_V5_3);
	assert_int_equal(w->n_contact, 1);
	assert_int_equal(w->contact.msg_sint, VMBUS_MESSAGE_SINT);
	assert_int_equal(w->contact.interrupt_page, 0); /* not carried from 5.0 */
	assert_int_equal(w->contact.monitor_page1, 0x8000);
	assert_int_equal(w->contact.monitor_page2, 0x9000);
	/* ... and the response sends the guest back to id 1 for the rest. */
	assert_int_equal(vmbus_client_msg_conn_id(&w->c), VMBUS_MESSAGE_CONNECTION_ID);
	assert_false(vmbus_host_conn_id_valid(w->h, VMBUS_MESSAGE_CONNECTION_ID_4));
	assert_true(vmbus_host_conn_id_valid(w->h, VMBUS_MESSAGE_CONNECTION_ID));
	assert_int_equal(vmbus_client_request_offers(&w->c), 0);
	assert_int_equal(w->log[w->nlog - 1].conn_id, VMBUS_MESSAGE_CONNECTION_ID);
	pump(w);
	assert_int_equal(vmbus_client_offers_status(&w->c), 0);
	assert_int_equal(vmbus_client_state(&w->c), VMBUS_CLIENT_READY);
	assert_int_equal(vmbus_client_request_offers(&w->c), -EPROTO);
	world_free(w);
}

/* A host without 5.0 has no connection id 4: the posts fail, the client
 * steps down at once to 4.1 on id 1. */
static void test_connect_fallback_conn_refused(void **state)
{
	struct vmbus_host_config hc = { .max_version = VMBUS_VERSION_WIN10_V4_1 };
	struct world *w = world_new(&hc, NULL);

	assert_false(vmbus_host_conn_id_valid(w->h, VMBUS_MESSAGE_CONNECTION_ID_4));
	connect_ready(w);
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_INITIATE_CONTACT), 1);
	assert_int_equal(w->log[0].conn_id, VMBUS_MESSAGE_CONNECTION_ID);
	assert_int_equal(vmbus_client_version(&w->c), VMBUS_VERSION_WIN10_V4_1);
	assert_int_equal(vmbus_client_msg_conn_id(&w->c), VMBUS_MESSAGE_CONNECTION_ID);
	/* Below 5.0 the union carries the interrupt page. */
	assert_int_equal(w->contact.interrupt_page, 0x7000);
	world_free(w);
}

/* The host answers version_supported 0 until the client reaches 5.0. */
static void test_connect_fallback_unsupported(void **state)
{
	struct vmbus_host_config hc = { .max_version = VMBUS_VERSION_WIN10_V5,
					.min_version = VMBUS_VERSION_WIN10_V5 };
	struct world *w = world_new(&hc, NULL);
	struct vmbus_msg m;
	size_t replies = 0;

	connect_ready(w);
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_INITIATE_CONTACT), 4);
	for (size_t i = 0; i < w->nlog; i++) {
		if (w->log[i].type == VMBUS_MSG_INITIATE_CONTACT)
			assert_int_equal(w->log[i].conn_id, VMBUS_MESSAGE_CONNECTION_ID_4);
		if (w->log[i].type == VMBUS_MSG_VERSION_RESPONSE)
			replies++;
	}
	assert_int_equal(replies, 4);
	assert_int_equal(vmbus_client_version(&w->c), VMBUS_VERSION_WIN10_V5);
	assert_int_equal(vmbus_client_msg_conn_id(&w->c), VMBUS_MESSAGE_CONNECTION_ID);
	assert_int_equal(w->n_contact, 1);
	world_free(w);

	/* The rejection itself, by hand. */
	w = world_new(&hc, NULL);
	uint8_t b[VMBUS_MSG_MAX];
	size_t len;
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10_V5_1, 0, 0,
						      2, 0, 0, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 4, b, len), 0);
	take_reply(w, VMBUS_MSG_VERSION_RESPONSE, &m);
	assert_int_equal(m.u.version.version_supported, 0);
	assert_int_equal(m.u.version.connection_state, VMBUS_CONNECTION_SUCCESSFUL);
	assert_int_equal(vmbus_host_version(w->h, &(uint32_t){ 0 }), -ENOTCONN);
	/* An unknown version (6.0) is just as unsupported. */
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_MAKE_VERSION(6, 0), 0, 0,
						      2, 0, 0, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 4, b, len), 0);
	take_reply(w, VMBUS_MSG_VERSION_RESPONSE, &m);
	assert_int_equal(m.u.version.version_supported, 0);
	world_free(w);
}

static void test_connect_refused(void **state)
{
	/* No version in common. */
	struct vmbus_host_config hc = { .min_version = VMBUS_VERSION_WIN10_V5_3 };
	struct vmbus_client_config cc = { .max_version = VMBUS_VERSION_WIN10_V5_2 };
	struct world *w = world_new(&hc, &cc);

	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	assert_int_equal(vmbus_client_connect_status(&w->c), -ECONNREFUSED);
	assert_int_equal(vmbus_client_state(&w->c), VMBUS_CLIENT_REFUSED);
	/* every version from 5.2 down to WIN8 was tried once */
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_INITIATE_CONTACT), 7);
	assert_int_equal(vmbus_client_request_offers(&w->c), -ENOTCONN);
	world_free(w);

	/* The host's contact callback refuses: the client stops at once. */
	w = world_new(NULL, NULL);
	w->contact_rc = -EPERM;
	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	assert_int_equal(w->host_err, -EPERM);
	assert_int_equal(vmbus_client_connect_status(&w->c), -ECONNREFUSED);
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_INITIATE_CONTACT), 1);
	/* and may try again */
	w->contact_rc = 0;
	connect_ready(w);
	world_free(w);
}

static void test_conn_id_rules(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint8_t b[VMBUS_MSG_MAX];
	struct vmbus_msg m;
	size_t len;

	assert_true(vmbus_host_conn_id_valid(w->h, 1));
	assert_true(vmbus_host_conn_id_valid(w->h, 4));
	assert_false(vmbus_host_conn_id_valid(w->h, 2));
	/* >= 5.0 contact must come on id 4, < 5.0 on id 1 */
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10_V5_3, 0, 0,
						      2, 0, 0, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 1, b, len), -EXDEV);
	no_reply(w);
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10, 0, 0, 2, 0,
						      0, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 4, b, len), -EXDEV);
	no_reply(w);
	/* nothing else before contact, whatever the id */
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_REQUESTOFFERS, &len), 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 1, b, len), -ENOTCONN);
	assert_int_equal(vmbus_host_rx_conn(w->h, 4, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_initiate_contact(b, sizeof(b), VMBUS_VERSION_WIN10, 0, 0, 2, 0,
						      0, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 1, b, len), 0);
	take_reply(w, VMBUS_MSG_VERSION_RESPONSE, &m);
	assert_int_equal(m.u.version.version_supported, 1);
	/* a second contact while connected */
	assert_int_equal(vmbus_host_rx_conn(w->h, 1, b, len), -EISCONN);
	no_reply(w);
	world_free(w);

	/* A host naming another message connection id. */
	struct vmbus_host_config hc = { .msg_conn_id = 7 };
	w = world_new(&hc, NULL);
	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	assert_int_equal(vmbus_client_msg_conn_id(&w->c), 7);
	assert_true(vmbus_host_conn_id_valid(w->h, 7));
	assert_false(vmbus_host_conn_id_valid(w->h, 1));
	assert_int_equal(vmbus_client_request_offers(&w->c), 0);
	assert_int_equal(w->log[w->nlog - 1].conn_id, 7);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_UNLOAD, &len), 0);
	assert_int_equal(vmbus_host_rx_conn(w->h, 1, b, len), -EXDEV);
	world_free(w);
}

/* ---- tests: offers ---------------------------------------------------------- */

static void test_offers(void **state)
{
	struct world *w = world_new(NULL, NULL);
	const struct vmbus_client_chan *ch;
	uint32_t r1 = add_offer(w, &scsi_guid, 1);
	uint32_t r2 = add_offer(w, &hb_guid, 2);
	uint32_t r3, r4, r5;
	size_t first_all = 0, offers_before = 0;

	assert_int_equal(r1, 1);
	assert_int_equal(r2, 2);
	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	/* connected but not requested: held back */
	r3 = add_offer(w, &scsi_guid, 3);
	no_reply(w);
	assert_int_equal(vmbus_client_request_offers(&w->c), 0);
	pump(w);
	assert_int_equal(vmbus_client_offers_status(&w->c), 0);
	/* three OFFERCHANNEL, then ALLOFFERS_DELIVERED */
	for (size_t i = 0; i < w->nlog; i++) {
		if (w->log[i].type == VMBUS_MSG_ALLOFFERS_DELIVERED && !first_all)
			first_all = i;
		if (w->log[i].type == VMBUS_MSG_OFFERCHANNEL && !first_all)
			offers_before++;
	}
	assert_int_equal(offers_before, 3);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_ALLOFFERS_DELIVERED), 1);

	assert_int_equal(vmbus_client_offer(&w->c, r2, &ch), 0);
	assert_true(vmbus_guid_equal(&ch->if_type, &hb_guid));
	assert_int_equal(ch->if_instance.b[15], 2);
	assert_int_equal(ch->conn_id, VMBUS_HOST_DEFAULT_EVENT_CONN_ID + r2);
	assert_int_equal(ch->flags, VMBUS_OFFER_SERVER_SUPPORTS_GPADLS);
	assert_int_equal(ch->mmio_megabytes, 2);
	assert_int_equal(ch->user_def[0], 2);
	assert_int_equal(ch->user_def[119], 0xfd);
	assert_true(ch->dedicated_interrupt);
	assert_false(ch->monitor_allocated);
	assert_false(ch->rescinded);

	assert_int_equal(vmbus_client_find_offer(&w->c, &scsi_guid, 0, &ch), 0);
	assert_int_equal(ch->relid, r1);
	assert_int_equal(vmbus_client_find_offer(&w->c, &scsi_guid, r1, &ch), 0);
	assert_int_equal(ch->relid, r3);
	assert_int_equal(vmbus_client_find_offer(&w->c, &scsi_guid, r3, &ch), -ENOENT);

	/* A late offer goes out at once and is recorded. */
	r4 = add_offer(w, &hb_guid, 4);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_OFFERCHANNEL), 4);
	pump(w);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_offer(&w->c, r4, &ch), 0);
	assert_int_equal(ch->if_instance.b[0], 4);
	assert_int_equal(vmbus_client_state(&w->c), VMBUS_CLIENT_READY);

	/* Client storage is bounded: 8 slots, the ninth offer is dropped. */
	for (uint8_t t = 5; t <= 8; t++)
		add_offer(w, &hb_guid, t);
	pump(w);
	assert_int_equal(w->client_err, 0);
	r5 = add_offer(w, &hb_guid, 9);
	pump(w);
	assert_int_equal(w->client_err, -ENOSPC);
	assert_int_equal(vmbus_client_offer(&w->c, r5, &ch), -ENOENT);
	world_free(w);
}

static void test_relid_exhaustion(void **state)
{
	struct vmbus_host_config hc = { .max_relid = 3 };
	struct world *w = world_new(&hc, NULL);
	struct vmbus_host_offer o;
	uint32_t relid;

	memset(&o, 0, sizeof(o));
	for (int i = 0; i < 3; i++)
		add_offer(w, &scsi_guid, (uint8_t)i);
	assert_int_equal(vmbus_host_offer_add(w->h, &o, &relid, NULL), -ENOSPC);
	/* Never seen by a guest: rescind frees the relid at once. */
	assert_int_equal(vmbus_host_rescind(w->h, 2), 0);
	no_reply(w);
	assert_int_equal(vmbus_host_offer_add(w->h, &o, &relid, NULL), 0);
	assert_int_equal(relid, 2);
	assert_int_equal(vmbus_host_rescind(w->h, 9), -ENOENT);
	world_free(w);
}

/* ---- tests: GPADLs ---------------------------------------------------------- */

static void check_gpadl(uint32_t npfns, size_t bodies)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), id, est, pend;
	uint64_t want[MAXPFNS];
	size_t before;

	connect_ready(w);
	before = w->nlog;
	id = make_gpadl(w, relid, npfns);
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_GPADL_HEADER), 1);
	assert_int_equal(log_count(w, TO_HOST, VMBUS_MSG_GPADL_BODY), bodies);
	for (size_t i = before; i < w->nlog; i++) {
		assert_true(w->log[i].len <= VMBUS_MSG_MAX);
		if (w->log[i].to == TO_HOST)
			assert_int_equal(w->log[i].conn_id, VMBUS_MESSAGE_CONNECTION_ID);
	}
	/* header, bodies, then the one GPADL_CREATED */
	assert_int_equal(w->log[w->nlog - 1].type, VMBUS_MSG_GPADL_CREATED);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_GPADL_CREATED), 1);
	assert_int_equal(w->n_gpadl, 1);
	assert_int_equal(w->gpadl_id, id);
	assert_int_equal(w->gpadl_relid, relid);
	assert_int_equal(w->gpadl_nranges, 1);
	assert_int_equal(w->gpadl_npfns, npfns);
	fill_pfns(want, npfns, 0x1000 + relid * 0x10000);
	assert_memory_equal(w->gpadl_pfns, want, npfns * sizeof(uint64_t));
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est, 1);
	assert_int_equal(pend, 0);
	world_free(w);
}

static void test_gpadl_sizes(void **state)
{
	check_gpadl(1, 0);
	check_gpadl(26, 0);
	check_gpadl(27, 1);
	check_gpadl(26 + 28, 1);
	check_gpadl(26 + 28 + 1, 2);
	check_gpadl(300, 10); /* 26 + 9 * 28 + 22 */
	check_gpadl(MAXPFNS, (MAXPFNS - 26 + 27) / 28);
}

static void test_gpadl_teardown(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), id, est = 9;

	connect_ready(w);
	id = make_gpadl(w, relid, 300);
	assert_int_equal(vmbus_client_gpadl_teardown(&w->c, id), 0);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, NULL), -EINPROGRESS);
	assert_int_equal(vmbus_client_gpadl_teardown(&w->c, id), -EINPROGRESS);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(w->n_teardown, 1);
	assert_int_equal(w->teardown_id, id);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_GPADL_TORNDOWN), 1);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, NULL), -ENOENT);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, NULL), 0);
	assert_int_equal(est, 0);
	/* the id is free again on both sides: a new GPADL works */
	make_gpadl(w, relid, 3);
	world_free(w);
}

static void test_gpadl_refused(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), id, st = 0, est = 9;
	uint64_t pfns[2] = { 1, 2 };

	connect_ready(w);
	w->gpadl_rc = -EFAULT; /* e.g. PFN outside guest RAM */
	assert_int_equal(vmbus_client_gpadl_create(&w->c, relid, pfns, 2, &id), 0);
	pump(w);
	assert_int_equal(w->host_err, -EFAULT);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, &st), -EIO);
	assert_int_equal(st, VMBUS_STATUS_UNSUCCESSFUL);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, NULL), 0);
	assert_int_equal(est, 0);
	/* forgetting a refused GPADL sends nothing */
	size_t n = w->nlog;
	assert_int_equal(vmbus_client_gpadl_teardown(&w->c, id), 0);
	assert_int_equal(w->nlog, n);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, id, NULL), -ENOENT);
	w->gpadl_rc = 0;
	make_gpadl(w, relid, 2);
	world_free(w);
}

/* ---- tests: open / close ---------------------------------------------------- */

static void test_open_success(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), ring;
	struct vmbus_host_chan_info info;
	uint8_t user[24];

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	memset(user, 0x11, sizeof(user));
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 1, user, sizeof(user)), 0);
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 1, NULL, 0), -EPROTO);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->n_open, 1);
	assert_int_equal(w->open.relid, relid);
	assert_int_equal(w->open.open_id, relid);
	assert_int_equal(w->open.ring_gpadl, ring);
	assert_int_equal(w->open.ring_pages, 8);
	assert_int_equal(w->open.downstream_offset, 4);
	assert_int_equal(w->open.target_vp, 1);
	assert_int_equal(w->open.user_data[23], 0x11);
	assert_int_equal(w->open.user_data[24], 0);
	assert_int_equal(vmbus_host_chan_info(w->h, relid, &info), 0);
	assert_int_equal(info.state, VMBUS_HOST_CHAN_OPENING);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), -EINPROGRESS);
	/* the host answers later */
	assert_int_equal(vmbus_host_open_complete(w->h, relid, 0), 0);
	assert_int_equal(vmbus_host_open_complete(w->h, relid, 0), -EPROTO);
	assert_int_equal(vmbus_host_open_complete(w->h, 99, 0), -ENOENT);
	pump(w);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), 0);
	assert_int_equal(vmbus_host_chan_info(w->h, relid, &info), 0);
	assert_int_equal(info.state, VMBUS_HOST_CHAN_OPEN);
	assert_int_equal(info.ring_gpadl, ring);
	world_free(w);
}

static void test_open_failure(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), ring, st = 0;

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	/* asynchronous failure */
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 0, NULL, 0), 0);
	pump(w);
	assert_int_equal(vmbus_host_open_complete(w->h, relid, VMBUS_STATUS_UNSUCCESSFUL), 0);
	pump(w);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, &st), -EIO);
	assert_int_equal(st, VMBUS_STATUS_UNSUCCESSFUL);
	/* immediate failure from the callback */
	w->open_rc = -ENODEV;
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 0, NULL, 0), 0);
	pump(w);
	assert_int_equal(w->host_err, -ENODEV);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), -EIO);
	assert_int_equal(vmbus_host_open_complete(w->h, relid, 0), -EPROTO);
	/* unsuitable ring: offset past the GPADL, answered with failure */
	w->open_rc = 0;
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 8, 0, NULL, 0), 0);
	pump(w);
	assert_int_equal(w->host_err, -EINVAL);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), -EIO);
	assert_int_equal(w->n_open, 2);
	/* completion inside the callback */
	w->open_sync = true;
	assert_int_equal(vmbus_client_open(&w->c, relid, ring, 4, 0, NULL, 0), 0);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), 0);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_OPENCHANNEL_RESULT), 4);
	world_free(w);
}

static void test_close(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), ring;
	struct vmbus_host_chan_info info;

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	open_chan(w, relid, ring);
	assert_int_equal(vmbus_client_close(&w->c, relid), 0);
	assert_int_equal(vmbus_client_open_status(&w->c, relid, NULL), -ENOTCONN);
	assert_int_equal(vmbus_client_close(&w->c, relid), -ENOTCONN);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->n_close, 1);
	assert_int_equal(w->close_relid, relid);
	assert_int_equal(vmbus_host_chan_info(w->h, relid, &info), 0);
	assert_int_equal(info.state, VMBUS_HOST_CHAN_CLOSED);
	/* the ring GPADL goes straight away now */
	assert_int_equal(vmbus_client_gpadl_teardown(&w->c, ring), 0);
	pump(w);
	assert_int_equal(w->n_teardown, 1);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, ring, NULL), -ENOENT);
	/* and the channel can be opened again on a fresh ring */
	ring = make_gpadl(w, relid, 6);
	open_chan(w, relid, ring);
	world_free(w);
}

/* Teardown of a ring in use waits for the close. */
static void test_teardown_ring_deferred(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), ring;

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	open_chan(w, relid, ring);
	assert_int_equal(vmbus_client_gpadl_teardown(&w->c, ring), 0);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->n_teardown, 0);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_GPADL_TORNDOWN), 0);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, ring, NULL), -EINPROGRESS);
	assert_int_equal(vmbus_client_close(&w->c, relid), 0);
	pump(w);
	assert_string_equal(w->order, "CT");
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_GPADL_TORNDOWN), 1);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, ring, NULL), -ENOENT);
	world_free(w);
}

/* ---- tests: rescind, release, reuse ----------------------------------------- */

static void test_rescind_release_reuse(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t r1 = add_offer(w, &scsi_guid, 1), r2 = add_offer(w, &scsi_guid, 2), r3, r4;
	uint32_t ring, extra, est = 9;
	const struct vmbus_client_chan *ch;
	struct vmbus_host_chan_info info;
	uint8_t b[VMBUS_MSG_MAX];
	size_t len;

	connect_ready(w);
	ring = make_gpadl(w, r1, 8);
	extra = make_gpadl(w, r1, 2);
	open_chan(w, r1, ring);

	assert_int_equal(vmbus_host_rescind(w->h, r1), 0);
	assert_int_equal(vmbus_host_rescind(w->h, r1), -EALREADY);
	pump(w);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_offer(&w->c, r1, &ch), 0);
	assert_true(ch->rescinded);
	assert_int_equal(vmbus_client_find_offer(&w->c, &scsi_guid, 0, &ch), 0);
	assert_int_equal(ch->relid, r2);
	/* nothing new may start on a rescinded channel */
	assert_int_equal(vmbus_client_gpadl_create(&w->c, r1, (uint64_t[]){ 1 }, 1, &ring),
			 -EPROTO);

	/* the relid stays taken until released */
	r3 = add_offer(w, &hb_guid, 3);
	assert_int_equal(r3, 3);
	pump(w);
	assert_int_equal(vmbus_host_chan_info(w->h, r1, &info), 0);
	assert_true(info.rescinded);

	/* releasing a live channel is a protocol error */
	assert_int_equal(vmbus_build_relid_released(b, sizeof(b), r2, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	assert_int_equal(vmbus_client_release(&w->c, r2), -EPROTO);

	/* Released without close or teardown (as Linux does): the host cleans up. */
	assert_int_equal(vmbus_client_release(&w->c, r1), 0);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_string_equal(w->order, "CTT");
	assert_int_equal(w->n_close, 1);
	assert_int_equal(vmbus_host_chan_info(w->h, r1, &info), -ENOENT);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, NULL), 0);
	assert_int_equal(est, 0);
	assert_int_equal(vmbus_client_offer(&w->c, r1, &ch), -ENOENT);
	assert_int_equal(vmbus_client_gpadl_status(&w->c, extra, NULL), -ENOENT);
	/* no reply to RELID_RELEASED, nothing torn down on the wire */
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_GPADL_TORNDOWN), 0);
	/* a second release of the same relid */
	assert_int_equal(vmbus_build_relid_released(b, sizeof(b), r1, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);

	/* the relid is reused */
	r4 = add_offer(w, &hb_guid, 4);
	assert_int_equal(r4, r1);
	pump(w);
	assert_int_equal(w->client_err, 0);
	assert_int_equal(vmbus_client_offer(&w->c, r4, &ch), 0);
	assert_false(ch->rescinded);
	assert_true(vmbus_guid_equal(&ch->if_type, &hb_guid));
	ring = make_gpadl(w, r4, 5);
	open_chan(w, r4, ring);
	world_free(w);
}

/* ---- tests: unload ----------------------------------------------------------- */

static void test_unload(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t r1 = add_offer(w, &scsi_guid, 1), r2 = add_offer(w, &hb_guid, 2), r3;
	uint32_t ring1, ring2, est = 9, pend = 9;
	const struct vmbus_client_chan *ch;
	uint64_t pfns[40];
	uint8_t b[VMBUS_MSG_MAX];
	size_t len;

	connect_ready(w);
	ring1 = make_gpadl(w, r1, 8);
	ring2 = make_gpadl(w, r2, 8);
	make_gpadl(w, r2, 3);
	open_chan(w, r1, ring1);
	/* r2's open still pending at unload */
	assert_int_equal(vmbus_client_open(&w->c, r2, ring2, 4, 0, NULL, 0), 0);
	pump(w);
	/* r3 rescinded, never released */
	r3 = add_offer(w, &hb_guid, 3);
	pump(w);
	assert_int_equal(vmbus_host_rescind(w->h, r3), 0);
	pump(w);
	/* a half-assembled GPADL: header only */
	fill_pfns(pfns, 40, 5);
	assert_int_equal(
		vmbus_build_gpadl_header(b, sizeof(b), r1, 0x999, pfns, 40, &(uint32_t){ 0 }, &len),
		0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est, 3);
	assert_int_equal(pend, 1);

	w->order[0] = '\0';
	assert_int_equal(vmbus_client_unload(&w->c), 0);
	assert_int_equal(vmbus_client_state(&w->c), VMBUS_CLIENT_UNLOADING);
	pump(w);
	assert_int_equal(w->host_err, 0);
	assert_int_equal(w->client_err, 0);
	/* both channels closed, three GPADLs unmapped, then unload */
	assert_string_equal(w->order, "CCTTTU");
	assert_int_equal(w->n_unload, 1);
	assert_int_equal(log_count(w, TO_CLIENT, VMBUS_MSG_UNLOAD_RESPONSE), 1);
	assert_int_equal(vmbus_client_state(&w->c), VMBUS_CLIENT_IDLE);
	assert_int_equal(vmbus_client_offer(&w->c, r1, &ch), -ENOENT);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est + pend, 0);
	assert_int_equal(vmbus_host_version(w->h, &est), -ENOTCONN);
	assert_int_equal(vmbus_host_open_complete(w->h, r2, 0), -EPROTO);
	assert_int_equal(vmbus_host_chan_info(w->h, r3, &(struct vmbus_host_chan_info){ 0 }),
			 -ENOENT);
	/* messages after unload need a new contact */
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_REQUESTOFFERS, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);

	/* reconnect: the same offers come back with the same relids */
	connect_ready(w);
	assert_int_equal(vmbus_client_offer(&w->c, r1, &ch), 0);
	assert_true(vmbus_guid_equal(&ch->if_type, &scsi_guid));
	assert_int_equal(vmbus_client_offer(&w->c, r2, &ch), 0);
	assert_int_equal(vmbus_client_offer(&w->c, r3, &ch), -ENOENT);
	ring1 = make_gpadl(w, r1, 8);
	open_chan(w, r1, ring1);

	/* a host-side reset forgets the guest without a message */
	w->order[0] = '\0';
	vmbus_host_reset(w->h);
	no_reply(w);
	assert_string_equal(w->order, "CT");
	assert_int_equal(vmbus_host_version(w->h, &est), -ENOTCONN);
	world_free(w);
}

static void test_modify(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), ring, st = 0;
	struct vmbus_host_chan_info info;

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	assert_int_equal(vmbus_client_modify_channel(&w->c, relid, 3), -ENOTCONN);
	open_chan(w, relid, ring);
	assert_int_equal(vmbus_client_modify_channel(&w->c, relid, 3), 0);
	assert_int_equal(vmbus_client_modify_status(&w->c, relid, NULL), -EINPROGRESS);
	assert_int_equal(vmbus_client_modify_channel(&w->c, relid, 3), -EINPROGRESS);
	pump(w);
	assert_int_equal(vmbus_client_modify_status(&w->c, relid, NULL), 0);
	assert_int_equal(vmbus_host_chan_info(w->h, relid, &info), 0);
	assert_int_equal(info.target_vp, 3);
	w->modify_status = VMBUS_STATUS_UNSUCCESSFUL;
	assert_int_equal(vmbus_client_modify_channel(&w->c, relid, 5), 0);
	pump(w);
	assert_int_equal(vmbus_client_modify_status(&w->c, relid, &st), -EIO);
	assert_int_equal(st, VMBUS_STATUS_UNSUCCESSFUL);
	assert_int_equal(vmbus_host_chan_info(w->h, relid, &info), 0);
	assert_int_equal(info.target_vp, 3);
	world_free(w);

	/* Below 4.1 there is no MODIFYCHANNEL. */
	struct vmbus_host_config hc = { .max_version = VMBUS_VERSION_WIN10 };
	uint8_t b[VMBUS_MSG_MAX];
	size_t len;
	w = world_new(&hc, NULL);
	relid = add_offer(w, &scsi_guid, 1);
	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	open_chan(w, relid, ring);
	assert_int_equal(vmbus_client_modify_channel(&w->c, relid, 3), -EOPNOTSUPP);
	assert_int_equal(vmbus_build_modifychannel(b, sizeof(b), relid, 3, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	no_reply(w);
	world_free(w);
}

/* ---- tests: the host rejects, and stays usable --------------------------------- */

static void test_host_rejects(void **state)
{
	struct vmbus_host_config hc = { .max_gpadls = 3, .max_gpadl_pfns = 60 };
	struct world *w = world_new(&hc, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), est = 9, pend = 9;
	uint8_t b[VMBUS_MSG_MAX];
	uint64_t pfns[100], words[40];
	struct vmbus_msg m;
	uint32_t used;
	size_t len;

	fill_pfns(pfns, 100, 0x100);

	/* Every guest message before contact. */
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_REQUESTOFFERS, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_UNLOAD, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 1, pfns, 2, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 1, pfns, 2, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(
		vmbus_build_open_channel(b, sizeof(b), relid, relid, 1, 0, 1, NULL, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_close_channel(b, sizeof(b), relid, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_gpadl_teardown(b, sizeof(b), relid, 1, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_relid_released(b, sizeof(b), relid, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	assert_int_equal(vmbus_build_modifychannel(b, sizeof(b), relid, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOTCONN);
	no_reply(w);
	/* host-to-guest types sent to the host, garbage */
	assert_int_equal(vmbus_build_gpadl_created(b, sizeof(b), 1, 1, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPERM);
	assert_int_equal(vmbus_host_rx(w->h, b, 4), -EBADMSG);
	assert_int_equal(vmbus_host_rx(w->h, b, 300), -EMSGSIZE);

	raw_contact(w, VMBUS_VERSION_WIN10_V5_3);
	/* GPADL for a relid not offered yet (no REQUESTOFFERS): failure reply */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 1, pfns, 2, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_equal(m.u.gpadl_created.gpadl, 1);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);
	raw_request_offers(w);
	drain(w); /* the offer and ALLOFFERS_DELIVERED */
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_REQUESTOFFERS, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	no_reply(w);

	/* A body for a GPADL nobody announced. */
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 0x77, pfns, 5, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	no_reply(w);

	/* Header for an unknown relid. */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), 55, 2, pfns, 2, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);

	/* A good one-message GPADL, then its duplicate. */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 10, pfns, 8, &used, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_equal(m.u.gpadl_created.creation_status, 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EEXIST);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);
	/* the original survives the duplicate */
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est, 1);
	/* a body for a GPADL that is already complete */
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 10, pfns, 1, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	no_reply(w);

	/* Excess PFNs: header announces 30, bodies carry 4 + 28 after 26. */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 11, pfns, 30, &used, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	no_reply(w);
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 11, pfns, 28, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EBADMSG);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_equal(m.u.gpadl_created.gpadl, 11);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est, 1);
	assert_int_equal(pend, 0);
	/* and the id is gone: a later body is unknown */
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);

	/* Too many PFNs for the configured bound (60). */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 12, pfns, 61, &used, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOSPC);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);

	/* Multi-range GPADL whose second descriptor arrives in a body but
	 * promises more pages than the buffer holds. */
	words[0] = desc(4096, 0);
	words[1] = 0x42;
	len = mk_gpadl_header(b, relid, 13, 5 * 8, 2, words, 2);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	words[0] = desc(3 * 4096, 0); /* needs 3 PFNs, only 2 words left */
	words[1] = 0x43;
	words[2] = 0x44;
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 13, words, 3, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EBADMSG);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);
	/* the same, well formed: two ranges, 1 + 2 pages */
	words[0] = desc(4096, 0);
	words[1] = 0x42;
	len = mk_gpadl_header(b, relid, 14, 5 * 8, 2, words, 2);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	words[0] = desc(2 * 4096 - 100, 50);
	words[1] = 0x43;
	assert_int_equal(vmbus_build_gpadl_body(b, sizeof(b), 14, words, 3, &used, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_equal(m.u.gpadl_created.creation_status, 0);
	assert_int_equal(w->gpadl_nranges, 2);
	assert_int_equal(w->gpadl_npfns, 3);
	assert_int_equal(w->gpadl_pfns[1], 0x43);

	/* Too many GPADLs (bound 3: 10, 14 and this one fit, the next not). */
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 15, pfns, 8, &used, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_equal(vmbus_build_gpadl_header(b, sizeof(b), relid, 16, pfns, 8, &used, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOSPC);
	take_reply(w, VMBUS_MSG_GPADL_CREATED, &m);
	assert_int_not_equal(m.u.gpadl_created.creation_status, 0);

	/* Open: unknown relid answered, multi-range ring refused, open twice. */
	assert_int_equal(vmbus_build_open_channel(b, sizeof(b), 55, 55, 10, 0, 4, NULL, 0, &len),
			 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	take_reply(w, VMBUS_MSG_OPENCHANNEL_RESULT, &m);
	assert_int_not_equal(m.u.open_result.status, 0);
	assert_int_equal(
		vmbus_build_open_channel(b, sizeof(b), relid, relid, 14, 0, 1, NULL, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EINVAL);
	take_reply(w, VMBUS_MSG_OPENCHANNEL_RESULT, &m);
	assert_int_not_equal(m.u.open_result.status, 0);
	assert_int_equal(
		vmbus_build_open_channel(b, sizeof(b), relid, relid, 10, 0, 0, NULL, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EINVAL); /* offset 0 */
	take_reply(w, VMBUS_MSG_OPENCHANNEL_RESULT, &m);
	assert_int_equal(
		vmbus_build_open_channel(b, sizeof(b), relid, relid, 10, 0, 4, NULL, 0, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	no_reply(w);
	assert_int_equal(vmbus_host_open_complete(w->h, relid, 0), 0);
	take_reply(w, VMBUS_MSG_OPENCHANNEL_RESULT, &m);
	assert_int_equal(m.u.open_result.status, 0);

	/* Teardown: unknown id, wrong relid. Close: twice. */
	assert_int_equal(vmbus_build_gpadl_teardown(b, sizeof(b), relid, 0x999, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	assert_int_equal(vmbus_build_gpadl_teardown(b, sizeof(b), relid + 1, 15, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	assert_int_equal(vmbus_build_close_channel(b, sizeof(b), relid, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -EPROTO);
	assert_int_equal(vmbus_build_close_channel(b, sizeof(b), 77, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	no_reply(w);

	/* After all that the state is intact: tear down, unload, reconnect. */
	assert_int_equal(vmbus_host_gpadl_count(w->h, &est, &pend), 0);
	assert_int_equal(est, 3);
	assert_int_equal(pend, 0);
	assert_int_equal(vmbus_build_gpadl_teardown(b, sizeof(b), relid, 15, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_GPADL_TORNDOWN, &m);
	assert_int_equal(m.u.gpadl_torndown.gpadl, 15);
	assert_int_equal(vmbus_host_rx(w->h, b, len), -ENOENT);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_UNLOAD, &len), 0);
	assert_int_equal(vmbus_host_rx(w->h, b, len), 0);
	take_reply(w, VMBUS_MSG_UNLOAD_RESPONSE, &m);
	connect_ready(w);
	make_gpadl(w, relid, 40);
	world_free(w);
}

/* ---- tests: the client rejects ----------------------------------------------- */

static void test_client_rejects(void **state)
{
	struct world *w = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1);
	uint8_t b[VMBUS_MSG_MAX];
	struct vmbus_channel_offer o;
	size_t len;

	/* before connecting */
	assert_int_equal(vmbus_build_version_response(b, sizeof(b), true, 0, 1, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPROTO);
	assert_int_equal(vmbus_build_open_result(b, sizeof(b), relid, relid, 0, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -ENOTCONN);
	assert_int_equal(vmbus_client_gpadl_create(&w->c, relid, (uint64_t[]){ 1 }, 1, &relid),
			 -ENOTCONN);
	assert_int_equal(vmbus_client_unload(&w->c), -ENOTCONN);
	/* guest-to-host messages are not for the client */
	assert_int_equal(vmbus_build_close_channel(b, sizeof(b), relid, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPERM);

	assert_int_equal(vmbus_client_connect(&w->c), 0);
	pump(w);
	/* offers before REQUESTOFFERS */
	memset(&o, 0, sizeof(o));
	assert_int_equal(vmbus_build_offer(b, sizeof(b), &o, 5, 0, true, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPROTO);
	assert_int_equal(vmbus_client_request_offers(&w->c), 0);
	pump(w);
	/* duplicate relid, relid out of range */
	assert_int_equal(vmbus_build_offer(b, sizeof(b), &o, relid, 0, true, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EEXIST);
	assert_int_equal(vmbus_build_offer(b, sizeof(b), &o, 0, 0, true, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EINVAL);
	assert_int_equal(vmbus_build_offer(b, sizeof(b), &o, 2048, 0, true, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EINVAL);
	/* results nobody waits for */
	assert_int_equal(vmbus_build_open_result(b, sizeof(b), relid, relid, 0, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPROTO);
	assert_int_equal(vmbus_build_open_result(b, sizeof(b), 9, 9, 0, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -ENOENT);
	assert_int_equal(vmbus_build_gpadl_created(b, sizeof(b), relid, 5, 0, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -ENOENT);
	assert_int_equal(vmbus_build_gpadl_torndown(b, sizeof(b), 5, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -ENOENT);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_UNLOAD_RESPONSE, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPROTO);
	assert_int_equal(vmbus_build_simple(b, sizeof(b), VMBUS_MSG_ALLOFFERS_DELIVERED, &len), 0);
	assert_int_equal(vmbus_client_rx(&w->c, b, len), -EPROTO);
	/* argument checks */
	assert_int_equal(vmbus_client_gpadl_create(&w->c, relid, (uint64_t[]){ 1 }, 0, &relid),
			 -EINVAL);
	assert_int_equal(vmbus_client_gpadl_create(&w->c, 9, (uint64_t[]){ 1 }, 1, &relid),
			 -ENOENT);
	assert_int_equal(vmbus_client_open(&w->c, relid, 0x1234, 1, 0, NULL, 0), -EINVAL);
	assert_int_equal(vmbus_client_release(&w->c, relid), -EPROTO);
	/* the ninth GPADL has no slot */
	for (int i = 0; i < 8; i++)
		make_gpadl(w, relid, 1);
	uint32_t id;
	assert_int_equal(vmbus_client_gpadl_create(&w->c, relid, (uint64_t[]){ 1 }, 1, &id),
			 -ENOSPC);
	world_free(w);
}

/* A manager's checkpoint restores into a fresh manager holding the same
 * offers and saves again to the same bytes; a different manager refuses it. */
static void test_save_restore(void **state)
{
	struct world *w = world_new(NULL, NULL), *w2 = world_new(NULL, NULL);
	uint32_t relid = add_offer(w, &scsi_guid, 1), relid2 = add_offer(w, &hb_guid, 2), ring;
	uint8_t a[4096], b[4096];
	size_t alen = 0, blen = 0;
	struct vmbus_host_chan_info info;

	connect_ready(w);
	ring = make_gpadl(w, relid, 8);
	open_chan(w, relid, ring);
	make_gpadl(w, relid2, 3);
	assert_int_equal(vmbus_host_save(w->h, NULL, 0, &alen), 0);
	assert_true(alen <= sizeof(a));
	assert_int_equal(vmbus_host_save(w->h, a, 8, &alen), -ENOSPC);
	assert_int_equal(vmbus_host_save(w->h, a, sizeof(a), &alen), 0);

	assert_int_equal(add_offer(w2, &scsi_guid, 1), relid);
	/* Not the same devices yet. */
	assert_int_equal(vmbus_host_restore(w2->h, a, alen), -EINVAL);
	assert_int_equal(add_offer(w2, &hb_guid, 2), relid2);
	for (size_t n = 0; n < alen; n++)
		assert_int_not_equal(vmbus_host_restore(w2->h, a, n), 0);
	assert_int_equal(vmbus_host_restore(w2->h, a, alen), 0);
	assert_int_equal(vmbus_host_save(w2->h, b, sizeof(b), &blen), 0);
	assert_int_equal(blen, alen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(vmbus_host_chan_info(w2->h, relid, &info), 0);
	assert_int_equal(info.state, VMBUS_HOST_CHAN_OPEN);
	assert_int_equal(info.ring_gpadl, ring);
	/* Not fresh any more. */
	assert_int_equal(vmbus_host_restore(w2->h, a, alen), -EINVAL);
	world_free(w2);
	world_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guid),
		cmocka_unit_test(test_builders_parse),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_connect_newest),
		cmocka_unit_test(test_connect_fallback_conn_refused),
		cmocka_unit_test(test_connect_fallback_unsupported),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_conn_id_rules),
		cmocka_unit_test(test_offers),
		cmocka_unit_test(test_relid_exhaustion),
		cmocka_unit_test(test_gpadl_sizes),
		cmocka_unit_test(test_gpadl_teardown),
		cmocka_unit_test(test_gpadl_refused),
		cmocka_unit_test(test_open_success),
		cmocka_unit_test(test_open_failure),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_teardown_ring_deferred),
		cmocka_unit_test(test_rescind_release_reuse),
		cmocka_unit_test(test_unload),
		cmocka_unit_test(test_modify),
		cmocka_unit_test(test_host_rejects),
		cmocka_unit_test(test_client_rejects),
		cmocka_unit_test(test_save_restore),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
