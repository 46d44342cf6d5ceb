// SPDX-License-Identifier: MIT
/*
 * The node's volumes: raw disk images <volume_dir>/<name>.img that the
 * controller creates and deletes (CreateVolume, DeleteVolume), served to
 * other nodes through the skeleton under their name, and fenced
 * (VolumeAccess) so only the node the controller chose may bind them.
 *
 * The directory is the store: there is no list besides it, so whatever is
 * in it after a restart is a volume (exported again, fenced until the
 * controller grants access anew), and a NodeReport lists exactly the files.
 * Creation is sparse (ftruncate), so a volume costs disk space as it is
 * written; it is refused when it could never fit the file system's free
 * space.
 *
 * Main loop thread only (see pmgr.h); the skeleton calls wait briefly for
 * the data plane's thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fab/log.h"
#include "fab/nodecfg.h"
#include "fab/remote.h"
#include "pmgr.h"

#define VOL_MIN_BYTES (1ull << 20)
#define VOL_MAX_BYTES (1ull << 50) /* 1 PiB: a sanity bound before statvfs's */
#define VOL_SUFFIX    ".img"

struct nhv_vols {
	struct nhv_vols_cfg cfg;
	const char *dir; /* cfg.volume_dir */
	bool local_only; /* the skeleton is not serving: nothing to export */
	nhv_report_cb report;
	void *report_arg;
};

/* A VolumeStatus with the storage its strings point into (first member:
 * a pointer to the status is a pointer to the whole). */
struct vol_msg {
	Fab__VolumeStatus st;
	char name[FAB_NAME_MAX];
	char path[NHV_CFG_PATH_MAX + FAB_NAME_MAX + 8];
	char error[256];
};

static void vol_path(const struct nhv_vols *vs, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s" VOL_SUFFIX, vs->dir, name);
}

static void report(struct nhv_vols *vs, const char *name, const char *state, uint64_t size,
		   const char *path, const char *error)
{
	Fab__Envelope env = FAB__ENVELOPE__INIT;
	Fab__VolumeStatus st = FAB__VOLUME_STATUS__INIT;

	st.name = (char *)name;
	st.state = (char *)state;
	st.size_bytes = size;
	st.path = (char *)(path ? path : "");
	st.error = (char *)(error ? error : "");
	env.body_case = FAB__ENVELOPE__BODY_VOLUME_STATUS;
	env.volume_status = &st;
	if (vs->report)
		vs->report(&env, vs->report_arg);
}

static void report_failed(struct nhv_vols *vs, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report_failed(struct nhv_vols *vs, const char *name, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fab_warn("volume %.64s: %s", name, why);
	report(vs, name, "failed", 0, NULL, why);
}

/* The volume name of a directory entry ("" if it is not one). */
static bool entry_name(const char *file, char *name, size_t len)
{
	size_t n = strlen(file), sl = strlen(VOL_SUFFIX);

	if (n <= sl || n - sl >= len || strcmp(file + n - sl, VOL_SUFFIX))
		return false;
	memcpy(name, file, n - sl);
	name[n - sl] = '\0';
	return fab_name_valid(name) == 0;
}

/* Serves the volume to other nodes (fenced until access is granted). */
static int vol_export(struct nhv_vols *vs, const char *name, const char *path)
{
	struct nhv_cfg_export e = { .type = NHV_DEV_STORAGE };
	int rc;

	if (vs->local_only)
		return 0;
	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.path, sizeof(e.path), "%s", path);
	rc = nhv_skel_export_add(vs->cfg.dp, &e);
	if (rc == -ENODEV) {
		fab_info("volumes are local only: this node serves nothing to others "
			 "(no data_listen)");
		vs->local_only = true;
		return 0;
	}
	return rc;
}

int nhv_vols_new(const struct nhv_vols_cfg *cfg, struct nhv_vols **out)
{
	struct nhv_vols *vs = calloc(1, sizeof(*vs));
	struct dirent *de;
	unsigned n = 0;
	DIR *d;
	int rc;

	if (!vs)
		return -ENOMEM;
	vs->cfg = *cfg;
	vs->dir = cfg->volume_dir;
	vs->local_only = !cfg->dp;
	d = opendir(vs->dir);
	/* Missing: no volumes yet (the first CreateVolume makes it). */
	if (!d && errno != ENOENT)
		fab_err("volume directory %s: %s; volume commands will fail until it is fixed",
			vs->dir, strerror(errno));
	/* Volumes survive a restart: serve every one found. */
	while (d && (de = readdir(d))) {
		char name[FAB_NAME_MAX], path[sizeof(((struct vol_msg *)0)->path)];
		struct stat st;

		if (!entry_name(de->d_name, name, sizeof(name)))
			continue;
		vol_path(vs, name, path, sizeof(path));
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		rc = vol_export(vs, name, path);
		if (rc)
			fab_err("volume %s: cannot export it: %s", name, strerror(-rc));
		n++;
	}
	if (d)
		closedir(d);
	fab_info("%u volume(s) in %s%s", n, vs->dir,
		 vs->local_only ? " (local use only)" : ", exported (fenced until granted)");
	*out = vs;
	return 0;
}

void nhv_vols_set_report(struct nhv_vols *vs, nhv_report_cb cb, void *arg)
{
	vs->report = cb;
	vs->report_arg = arg;
}

void nhv_vols_create(struct nhv_vols *vs, const Fab__CreateVolume *m)
{
	char path[sizeof(((struct vol_msg *)0)->path)];
	uint64_t size = m->size_bytes;
	struct statvfs sv;
	struct stat st;
	int fd, rc;

	if (fab_name_valid(m->name)) {
		report_failed(vs, m->name, "invalid volume name");
		return;
	}
	if (size < VOL_MIN_BYTES || size > VOL_MAX_BYTES || size % 512) {
		report_failed(vs, m->name,
			      "size %llu: must be a multiple of 512 bytes, at least 1 MiB",
			      (unsigned long long)size);
		return;
	}
	rc = nhv_mkdirs(vs->dir, 0750);
	if (rc) {
		report_failed(vs, m->name, "volume directory %s: %s", vs->dir, strerror(-rc));
		return;
	}
	vol_path(vs, m->name, path, sizeof(path));
	if (stat(path, &st) == 0) {
		/* A resend of a create that succeeded: the same answer. */
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
			report_failed(vs, m->name, "%s exists with another size (%lld bytes)", path,
				      (long long)st.st_size);
			return;
		}
	} else {
		if (statvfs(vs->dir, &sv) == 0 && size > (uint64_t)sv.f_bavail * sv.f_frsize) {
			report_failed(vs, m->name, "%llu bytes asked, only %llu free in %s",
				      (unsigned long long)size,
				      (unsigned long long)sv.f_bavail * sv.f_frsize, vs->dir);
			return;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			report_failed(vs, m->name, "cannot create %s: %s", path, strerror(errno));
			return;
		}
		/* Sparse; fsync so an acknowledged volume survives a crash. */
		if (ftruncate(fd, (off_t)size) || fsync(fd)) {
			rc = errno;
			close(fd);
			unlink(path);
			report_failed(vs, m->name, "cannot size %s: %s", path, strerror(rc));
			return;
		}
		close(fd);
		fd = open(vs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
		fab_info("volume %s: created %s (%llu MiB, sparse)", m->name, path,
			 (unsigned long long)(size >> 20));
	}
	rc = vol_export(vs, m->name, path);
	if (rc) {
		report_failed(vs, m->name, "created, but cannot export it: %s", strerror(-rc));
		return;
	}
	report(vs, m->name, "ready", size, path, NULL);
}

void nhv_vols_delete(struct nhv_vols *vs, const Fab__DeleteVolume *m)
{
	char path[sizeof(((struct vol_msg *)0)->path)], who[300], real[PATH_MAX];
	struct stat st;
	int rc;

	if (fab_name_valid(m->name)) {
		report_failed(vs, m->name, "invalid volume name");
		return;
	}
	vol_path(vs, m->name, path, sizeof(path));
	if (stat(path, &st)) {
		/* Gone already: deleting is idempotent. */
		if (!vs->local_only)
			nhv_skel_export_remove(vs->cfg.dp, m->name, NULL, 0);
		report(vs, m->name, "deleted", 0, path, NULL);
		return;
	}
	/* Partitions hold their disks' paths resolved. */
	if (vs->cfg.pm && realpath(path, real) &&
	    nhv_pmgr_volume_user(vs->cfg.pm, real, who, sizeof(who))) {
		report_failed(vs, m->name, "in use by partition %s on this node", who);
		return;
	}
	if (!vs->local_only) {
		rc = nhv_skel_export_remove(vs->cfg.dp, m->name, who, sizeof(who));
		if (rc == -EBUSY) {
			report_failed(vs, m->name, "in use by %s", who);
			return;
		}
		if (rc && rc != -ENOENT) {
			report_failed(vs, m->name, "cannot stop serving it: %s", strerror(-rc));
			return;
		}
	}
	if (unlink(path)) {
		rc = errno;
		/* Still there: keep serving it. */
		if (vol_export(vs, m->name, path))
			fab_err("volume %s: could not export it again", m->name);
		report_failed(vs, m->name, "cannot delete %s: %s", path, strerror(rc));
		return;
	}
	fab_info("volume %s: deleted %s", m->name, path);
	report(vs, m->name, "deleted", 0, path, NULL);
}

void nhv_vols_access(struct nhv_vols *vs, const Fab__VolumeAccess *m)
{
	unsigned closed = 0;
	int rc;

	if (fab_name_valid(m->name) || (m->node[0] && fab_name_valid(m->node))) {
		fab_warn("VolumeAccess for '%.64s' to '%.64s': invalid name; ignored", m->name,
			 m->node);
		return;
	}
	if (vs->local_only) {
		fab_info("VolumeAccess %s: this node serves no volumes to others", m->name);
		return;
	}
	rc = nhv_skel_export_access(vs->cfg.dp, m->name, m->node, &closed);
	if (rc) {
		fab_warn("VolumeAccess %s to '%s' (epoch %llu): %s", m->name, m->node,
			 (unsigned long long)m->epoch,
			 rc == -ENOENT	? "no such volume here"
			 : rc == -EPERM ? "a configured export, not fenced"
					: strerror(-rc));
		return;
	}
	fab_info("volume %s: access for %s%s (epoch %llu); %u channel(s) of other nodes closed",
		 m->name, m->node[0] ? "node " : "", m->node[0] ? m->node : "nobody",
		 (unsigned long long)m->epoch, closed);
}

int nhv_vols_report_fill(struct nhv_vols *vs, Fab__NodeReport *r)
{
	Fab__VolumeStatus **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(vs->dir);

	if (!d) {
		if (errno != ENOENT)
			fab_err("volume directory %s: %s", vs->dir, strerror(errno));
		return 0;
	}
	while ((de = readdir(d))) {
		struct vol_msg *m;
		struct stat st;
		char name[FAB_NAME_MAX];

		if (!entry_name(de->d_name, name, sizeof(name)))
			continue;
		m = calloc(1, sizeof(*m));
		if (!m)
			goto nomem;
		snprintf(m->name, sizeof(m->name), "%s", name);
		vol_path(vs, name, m->path, sizeof(m->path));
		if (stat(m->path, &st) || !S_ISREG(st.st_mode)) {
			free(m);
			continue;
		}
		if (n == cap) {
			Fab__VolumeStatus **nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(m);
				goto nomem;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		fab__volume_status__init(&m->st);
		m->st.name = m->name;
		m->st.state = "ready";
		m->st.size_bytes = (uint64_t)st.st_size;
		m->st.path = m->path;
		m->st.error = m->error;
		v[n++] = &m->st;
	}
	closedir(d);
	r->volumes = v;
	r->n_volumes = n;
	return 0;
nomem:
	closedir(d);
	r->volumes = v;
	r->n_volumes = n;
	nhv_vols_report_free(r);
	return -ENOMEM;
}

void nhv_vols_report_free(Fab__NodeReport *r)
{
	/* Each entry is the first member of its struct vol_msg. */
	for (size_t i = 0; i < r->n_volumes; i++)
		free(r->volumes[i]);
	free(r->volumes);
	r->volumes = NULL;
	r->n_volumes = 0;
}

void nhv_vols_free(struct nhv_vols *vs)
{
	free(vs);
}
