// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fab/conn.h"
#include "fab/pki.h"
#include "ctl.h"

#define MAX_TRANSPORTS 4
#define MAX_VSPS       32
#define MAX_VCPUS      65536u
#define MAX_MEMORY     (1ull << 52) /* 4 PiB */

static const char *const known_transports[] = { "tcp", "rdma" };

static int printable(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (n >= max || *s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

/* Appends items to a comma-separated list, refusing duplicates. */
static int join_list(char *dst, size_t len, char **items, size_t n, const char *what, char *err,
		     size_t errlen)
{
	size_t off = 0;

	dst[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(items[i], items[j])) {
				snprintf(err, errlen, "%s '%s' listed twice", what, items[i]);
				return -EINVAL;
			}
		}
		int w = snprintf(dst + off, len - off, "%s%s", off ? "," : "", items[i]);

		if (w < 0 || (size_t)w >= len - off) {
			snprintf(err, errlen, "%s list too long", what);
			return -EINVAL;
		}
		off += (size_t)w;
	}
	return 0;
}

int ctl_register_validate(const Fab__RegisterNode *m, const char *cert_name,
			  struct ctl_node_rec *rec, char *err, size_t errlen)
{
	char host[256], port[8];

	memset(rec, 0, sizeof(*rec));
	if (!m->name || fab_name_valid(m->name)) {
		snprintf(err, errlen, "invalid node name");
		return -EINVAL;
	}
	if (strcmp(m->name, cert_name) != 0) {
		snprintf(err, errlen, "node name '%s' differs from its certificate's '%s'", m->name,
			 cert_name);
		return -EACCES;
	}
	/* 0: a storage-only node, which serves volumes and runs no partitions. */
	if (m->vcpus > MAX_VCPUS) {
		snprintf(err, errlen, "vcpus %u out of range 0..%u", m->vcpus, MAX_VCPUS);
		return -EINVAL;
	}
	if (m->memory_bytes < (1u << 20) || m->memory_bytes > MAX_MEMORY) {
		snprintf(err, errlen, "memory %llu bytes out of range",
			 (unsigned long long)m->memory_bytes);
		return -EINVAL;
	}
	if (m->n_transports < 1 || m->n_transports > MAX_TRANSPORTS) {
		snprintf(err, errlen, "a node offers 1..%d transports, not %zu", MAX_TRANSPORTS,
			 m->n_transports);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_transports; i++) {
		int ok = 0;

		for (size_t k = 0; k < sizeof(known_transports) / sizeof(known_transports[0]); k++)
			ok |= !strcmp(m->transports[i], known_transports[k]);
		if (!ok) {
			snprintf(err, errlen, "unknown transport '%.32s' (known: tcp, rdma)",
				 m->transports[i]);
			return -EINVAL;
		}
	}
	if (m->n_vsps > MAX_VSPS) {
		snprintf(err, errlen, "too many VSPs (%zu > %d)", m->n_vsps, MAX_VSPS);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_vsps; i++) {
		if (fab_name_valid(m->vsps[i])) {
			snprintf(err, errlen, "invalid VSP name");
			return -EINVAL;
		}
	}
	if (m->data_addr && m->data_addr[0] &&
	    (strlen(m->data_addr) >= sizeof(rec->data_addr) ||
	     !printable(m->data_addr, sizeof(rec->data_addr) - 1) ||
	     fab_hostport_split(m->data_addr, host, sizeof(host), port, sizeof(port)))) {
		snprintf(err, errlen, "invalid data address (want host:port)");
		return -EINVAL;
	}
	if (m->version && !printable(m->version, sizeof(rec->version) - 1)) {
		snprintf(err, errlen, "invalid version string");
		return -EINVAL;
	}
	if (m->instance && !printable(m->instance, sizeof(rec->instance) - 1)) {
		snprintf(err, errlen, "invalid instance id");
		return -EINVAL;
	}
	if (join_list(rec->transports, sizeof(rec->transports), m->transports, m->n_transports,
		      "transport", err, errlen) ||
	    join_list(rec->vsps, sizeof(rec->vsps), m->vsps, m->n_vsps, "VSP", err, errlen))
		return -EINVAL;
	snprintf(rec->name, sizeof(rec->name), "%s", m->name);
	rec->vcpus = m->vcpus;
	rec->memory_bytes = m->memory_bytes;
	snprintf(rec->data_addr, sizeof(rec->data_addr), "%s", m->data_addr ? m->data_addr : "");
	snprintf(rec->version, sizeof(rec->version), "%s", m->version ? m->version : "");
	snprintf(rec->instance, sizeof(rec->instance), "%s", m->instance ? m->instance : "");
	return 0;
}

size_t ctl_split_list(char *buf, char **out, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		out[n++] = t;
	return n;
}
