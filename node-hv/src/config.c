// SPDX-License-Identifier: MIT
/*
 * fabnode configuration file parser (format in fab/nodecfg.h). One pass,
 * every key looked up in a table that says where its value goes and how it
 * is checked, so an unknown or repeated key can never be ignored silently.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fab/conn.h"
#include "fab/nodecfg.h"
#include "fab/util.h"

enum section { SEC_NODE, SEC_EXPORT, SEC_REMOTE };

enum vtype { V_NAME, V_HOSTPORT, V_PATH, V_ABSPATH, V_U32, V_SIZE, V_BOOL, V_DEVTYPE, V_TRANSPORT };

struct key {
	enum section sec;
	const char *key;
	enum vtype type;
	size_t off;	   /* offset in the section's struct */
	size_t size;	   /* for strings */
	uint32_t min, max; /* V_U32 */
	bool required;
};

#define NODE(f)	  offsetof(struct nhv_config, f), sizeof(((struct nhv_config *)0)->f)
#define EXPORT(f) offsetof(struct nhv_cfg_export, f), sizeof(((struct nhv_cfg_export *)0)->f)
#define REMOTE(f) offsetof(struct nhv_cfg_remote, f), sizeof(((struct nhv_cfg_remote *)0)->f)

static const struct key keys[] = {
	{ SEC_NODE, "name", V_NAME, NODE(name), 0, 0, true },
	{ SEC_NODE, "controller", V_HOSTPORT, NODE(controller), 0, 0, false },
	{ SEC_NODE, "pki", V_PATH, NODE(pki), 0, 0, false },
	{ SEC_NODE, "data_listen", V_HOSTPORT, NODE(data_listen), 0, 0, false },
	{ SEC_NODE, "transport", V_TRANSPORT, NODE(transport), 0, 0, false },
	{ SEC_NODE, "vcpus", V_U32, NODE(vcpus), 0, 65536, false },
	{ SEC_NODE, "memory", V_SIZE, NODE(memory_bytes), 0, 0, false },
	{ SEC_NODE, "volume_dir", V_ABSPATH, NODE(volume_dir), 0, 0, false },
	{ SEC_NODE, "image_dir", V_ABSPATH, NODE(image_dir), 0, 0, false },
	{ SEC_NODE, "state_dir", V_ABSPATH, NODE(state_dir), 0, 0, false },
	{ SEC_EXPORT, "type", V_DEVTYPE, EXPORT(type), 0, 0, false },
	{ SEC_EXPORT, "path", V_PATH, EXPORT(path), 0, 0, false }, /* storage: required */
	{ SEC_EXPORT, "read_only", V_BOOL, EXPORT(read_only), 0, 0, false },
	{ SEC_REMOTE, "node", V_NAME, REMOTE(node), 0, 0, true },
	{ SEC_REMOTE, "address", V_HOSTPORT, REMOTE(address), 0, 0, true },
	{ SEC_REMOTE, "export", V_NAME, REMOTE(export_name), 0, 0, true },
	{ SEC_REMOTE, "type", V_DEVTYPE, REMOTE(type), 0, 0, false },
	{ SEC_REMOTE, "timeout_ms", V_U32, REMOTE(timeout_ms), 100, 3600000, false },
};

struct parser {
	const char *file;
	unsigned line;
	char *err;
	size_t errlen;
	enum section sec;
	void *obj;     /* the struct the current section fills */
	unsigned seen; /* bit per keys[] entry, for this section */
	unsigned sec_line;
};

static int perr(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(struct parser *ps, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%u: %s", ps->file, ps->line, msg);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int set_value(struct parser *ps, const struct key *k, const char *v)
{
	char *dst = (char *)ps->obj + k->off;
	char host[256], port[8];
	uint64_t size;
	uint32_t u;

	switch (k->type) {
	case V_NAME:
		if (fab_name_valid(v))
			return perr(ps, "%s: '%s' is not a valid name (1-63 of a-z 0-9 . _ -)",
				    k->key, v);
		break;
	case V_HOSTPORT:
		if (strlen(v) >= k->size ||
		    fab_hostport_split(v, host, sizeof(host), port, sizeof(port)))
			return perr(ps, "%s: '%s' is not HOST:PORT", k->key, v);
		break;
	case V_PATH:
	case V_ABSPATH:
		if (!*v || strlen(v) >= k->size)
			return perr(ps, "%s: path empty or longer than %zu bytes", k->key,
				    k->size - 1);
		/* Directories the node checks paths against (a volume must
		 * resolve inside volume_dir) are absolute. */
		if (k->type == V_ABSPATH && *v != '/')
			return perr(ps, "%s: '%s' is not an absolute path", k->key, v);
		break;
	case V_U32:
		if (fab_parse_u32(v, k->min, k->max, &u))
			return perr(ps, "%s: '%s' is not a number in %u..%u", k->key, v, k->min,
				    k->max);
		memcpy(dst, &u, sizeof(u));
		/* 0 vCPUs is a storage-only node, not "unset". */
		if (ps->sec == SEC_NODE && !strcmp(k->key, "vcpus"))
			((struct nhv_config *)ps->obj)->vcpus_set = true;
		return 0;
	case V_SIZE:
		if (fab_parse_size(v, &size) || size < (1u << 20))
			return perr(ps, "%s: '%s' is not a size of at least 1M (e.g. 512M, 16G)",
				    k->key, v);
		memcpy(dst, &size, sizeof(size));
		return 0;
	case V_TRANSPORT:
		if (strcmp(v, "tcp") && strcmp(v, "rdma") && strcmp(v, "auto"))
			return perr(ps, "%s: '%s' is not tcp, rdma or auto", k->key, v);
		break;
	case V_DEVTYPE: {
		enum nhv_dev_type t;

		if (nhv_dev_type_parse(v, &t))
			return perr(ps, "%s: '%s' is not a device type (storage, echo)", k->key, v);
		memcpy(dst, &t, sizeof(t));
		return 0;
	}
	case V_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
			*(bool *)dst = true;
		else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
			*(bool *)dst = false;
		else
			return perr(ps, "%s: '%s' is not true or false", k->key, v);
		return 0;
	}
	snprintf(dst, k->size, "%s", v);
	return 0;
}

/* Checks that the section just finished has its required keys. */
static int end_section(struct parser *ps)
{
	for (size_t i = 0; i < FAB_ARRAY_SIZE(keys); i++) {
		if (keys[i].sec == ps->sec && keys[i].required && !(ps->seen & (1u << i))) {
			ps->line = ps->sec_line;
			return perr(ps, "missing required key '%s'", keys[i].key);
		}
	}
	if (ps->sec == SEC_EXPORT) {
		const struct nhv_cfg_export *e = ps->obj;

		bool no_path = e->type == NHV_DEV_STORAGE && !e->path[0];
		bool extra = e->type != NHV_DEV_STORAGE && (e->path[0] || e->read_only);

		if (no_path || extra)
			ps->line = ps->sec_line;
		if (no_path)
			return perr(ps, "missing required key 'path' (a storage export's image)");
		if (extra)
			return perr(ps, "an %s export takes no path or read_only",
				    nhv_dev_type_name(e->type));
	}
	return 0;
}

static int start_section(struct parser *ps, struct nhv_config *cfg, char *hdr)
{
	char *close = strchr(hdr, ']'), *kind, *arg, *slash;

	if (!close || trim(close + 1)[0])
		return perr(ps, "malformed section header (want [export NAME] or "
				"[remote PARTITION/DEVICE])");
	*close = '\0';
	kind = trim(hdr + 1);
	arg = strpbrk(kind, " \t");
	if (!arg)
		return perr(ps, "section [%s] needs a name", kind);
	*arg++ = '\0';
	arg = trim(arg);
	if (!strcmp(kind, "export")) {
		struct nhv_cfg_export *e;

		if (fab_name_valid(arg))
			return perr(ps, "export name '%s' is not valid", arg);
		for (unsigned i = 0; i < cfg->nexports; i++)
			if (!strcmp(cfg->exports[i].name, arg))
				return perr(ps, "export '%s' defined twice", arg);
		if (cfg->nexports == NHV_CFG_MAX_EXPORTS)
			return perr(ps, "more than %d exports", NHV_CFG_MAX_EXPORTS);
		e = &cfg->exports[cfg->nexports++];
		snprintf(e->name, sizeof(e->name), "%s", arg);
		ps->sec = SEC_EXPORT;
		ps->obj = e;
	} else if (!strcmp(kind, "remote")) {
		struct nhv_cfg_remote *r;

		slash = strchr(arg, '/');
		if (!slash)
			return perr(ps, "remote '%s' must be PARTITION/DEVICE", arg);
		*slash = '\0';
		if (fab_name_valid(arg) || fab_name_valid(slash + 1))
			return perr(ps, "remote '%s/%s': invalid partition or device name", arg,
				    slash + 1);
		if (nhv_config_remote(cfg, arg, slash + 1))
			return perr(ps, "remote '%s/%s' defined twice", arg, slash + 1);
		if (cfg->nremotes == NHV_CFG_MAX_REMOTES)
			return perr(ps, "more than %d remote devices", NHV_CFG_MAX_REMOTES);
		r = &cfg->remotes[cfg->nremotes++];
		snprintf(r->partition, sizeof(r->partition), "%s", arg);
		snprintf(r->device, sizeof(r->device), "%s", slash + 1);
		r->timeout_ms = NHV_CFG_DEFAULT_TIMEOUT_MS;
		ps->sec = SEC_REMOTE;
		ps->obj = r;
	} else {
		return perr(ps, "unknown section [%s] (known: export, remote)", kind);
	}
	ps->seen = 0;
	ps->sec_line = ps->line;
	return 0;
}

int nhv_config_parse(const char *text, const char *name, struct nhv_config *cfg, char *err,
		     size_t errlen)
{
	struct parser ps = { .file = name, .err = err, .errlen = errlen, .sec = SEC_NODE };
	char *buf = strdup(text), *line;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	memset(cfg, 0, sizeof(*cfg));
	ps.obj = cfg;
	ps.sec_line = 1;
	/* strsep keeps empty lines, so line numbers stay right */
	for (char *rest = buf; (line = strsep(&rest, "\n")) != NULL && !rc;) {
		char *hash, *eq, *k, *v;
		size_t i;

		ps.line++;
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		line = trim(line);
		if (!*line)
			continue;
		if (*line == '[') {
			rc = end_section(&ps);
			if (!rc)
				rc = start_section(&ps, cfg, line);
			continue;
		}
		eq = strchr(line, '=');
		if (!eq) {
			rc = perr(&ps, "expected KEY = VALUE");
			break;
		}
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		for (i = 0; i < FAB_ARRAY_SIZE(keys); i++)
			if (keys[i].sec == ps.sec && !strcmp(keys[i].key, k))
				break;
		if (i == FAB_ARRAY_SIZE(keys)) {
			rc = perr(&ps, "unknown key '%s'%s", k,
				  ps.sec == SEC_NODE	 ? ""
				  : ps.sec == SEC_EXPORT ? " in an [export] section"
							 : " in a [remote] section");
			break;
		}
		if (ps.seen & (1u << i)) {
			rc = perr(&ps, "key '%s' given twice", k);
			break;
		}
		ps.seen |= 1u << i;
		rc = set_value(&ps, &keys[i], v);
	}
	if (!rc)
		rc = end_section(&ps);
	/* The node section's required keys are checked once, at the end. */
	if (!rc && !cfg->name[0]) {
		ps.line = 1;
		rc = perr(&ps, "missing required key 'name'");
	}
	if (!rc && cfg->nexports && !cfg->data_listen[0]) {
		ps.line = 1;
		rc = perr(&ps, "[export] sections need data_listen (where other nodes reach them)");
	}
	free(buf);
	return rc;
}

int nhv_config_load(const char *path, struct nhv_config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text;
	long n;
	int rc;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1 << 20)) {
		fclose(f);
		snprintf(err, errlen, "%s: unreadable or larger than 1 MiB", path);
		return -EFBIG;
	}
	rewind(f);
	text = malloc((size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		free(text);
		fclose(f);
		snprintf(err, errlen, "%s: read error", path);
		return -EIO;
	}
	fclose(f);
	text[n] = '\0';
	if (strlen(text) != (size_t)n) {
		free(text);
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		return -EINVAL;
	}
	rc = nhv_config_parse(text, path, cfg, err, errlen);
	free(text);
	return rc;
}

const struct nhv_cfg_remote *nhv_config_remote(const struct nhv_config *cfg, const char *partition,
					       const char *device)
{
	for (unsigned i = 0; i < cfg->nremotes; i++)
		if (!strcmp(cfg->remotes[i].partition, partition) &&
		    !strcmp(cfg->remotes[i].device, device))
			return &cfg->remotes[i];
	return NULL;
}

static const char *const dev_type_names[] = {
	[NHV_DEV_STORAGE] = "storage", [NHV_DEV_ECHO] = "echo"
};

int nhv_dev_type_parse(const char *s, enum nhv_dev_type *out)
{
	for (size_t i = 0; i < FAB_ARRAY_SIZE(dev_type_names); i++)
		if (!strcmp(s, dev_type_names[i])) {
			*out = (enum nhv_dev_type)i;
			return 0;
		}
	return -EINVAL;
}

const char *nhv_dev_type_name(enum nhv_dev_type t)
{
	return (unsigned)t < FAB_ARRAY_SIZE(dev_type_names) ? dev_type_names[t] : "?";
}
