/* SPDX-License-Identifier: MIT */
/*
 * fabnode's configuration file. Line oriented; '#' starts a comment:
 *
 *   name = node-a                    # this node (its certificate is node-NAME)
 *   controller = 10.77.0.1:7700
 *   pki = /etc/fabric/pki
 *   data_listen = 0.0.0.0:7800       # where other nodes reach our VSPs
 *   transport = auto                 # tcp, rdma, or auto (default): rdma when
 *                                    #   a device with an active port exists
 *   vcpus = 8                        # offered to partitions (default: online CPUs);
 *                                    #   0: a storage-only node that runs none
 *   memory = 16G                     # offered to partitions (default: physical RAM)
 *   volume_dir = /var/lib/fabric/volumes  # the volumes the controller creates here:
 *                                    #   NAME.img each, exported as NAME (default shown)
 *   image_dir = /usr/lib/fabric/images    # partition images, found by name (default shown)
 *   state_dir = /var/lib/fabric      # console logs under console/ (default shown)
 *
 *   [export disk0]                   # a device this node serves to others
 *   type = storage                   # storage (default): a SCSI disk on ...
 *   path = /var/lib/fabric/disk0.img #   this raw image (size a multiple of 512)
 *   read_only = false
 *
 *   [export echo0]                   # the echo test device (benchmarks of the
 *   type = echo                      #   remote channel path); no path
 *
 *   [remote web1/disk0]              # device disk0 of partition web1 is
 *   node = node-b                    #   served by node-b ...
 *   address = 10.77.0.12:7800        #   reached here ...
 *   export = disk0                   #   under this export name
 *   type = storage                   # must match the export's (default storage)
 *   timeout_ms = 30000               # I/O fails (SCSI error) after this long
 *                                    #   without the serving node
 *
 * Names (node, export, partition, device) follow fab_name_valid(). Every
 * key is known and typed: an unknown section or key, a repeated key or
 * section, a bad value, or a missing required key is an error naming the
 * file and line.
 *
 * Devices bound here are for fabnode run and for exports anyone in the
 * cluster may bind; under fabnode serve the controller creates volumes in
 * volume_dir and binds disks itself (RunPartition), and those exports are
 * fenced to the node it names (VolumeAccess; node-hv/src/pmgr.h).
 */
#ifndef FAB_NODECFG_H
#define FAB_NODECFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fab/pki.h"

#define NHV_CFG_MAX_EXPORTS 64
#define NHV_CFG_MAX_REMOTES 64
#define NHV_CFG_PATH_MAX    1024
#define NHV_CFG_ADDR_MAX    128

#define NHV_CFG_DEFAULT_VOLUME_DIR "/var/lib/fabric/volumes"
#define NHV_CFG_DEFAULT_IMAGE_DIR  "/usr/lib/fabric/images"
#define NHV_CFG_DEFAULT_STATE_DIR  "/var/lib/fabric"

/* What a device is (its VSP). */
enum nhv_dev_type {
	NHV_DEV_STORAGE = 0, /* SCSI disk (VSTOR), Hyper-V's synthetic storage */
	NHV_DEV_ECHO = 1,    /* the fabric's echo device (fab/vmbus_ic.h) */
};

/* "storage" or "echo": 0 or -EINVAL. */
int nhv_dev_type_parse(const char *s, enum nhv_dev_type *out);
const char *nhv_dev_type_name(enum nhv_dev_type t);

struct nhv_cfg_export {
	char name[FAB_NAME_MAX];
	enum nhv_dev_type type;
	char path[NHV_CFG_PATH_MAX];
	bool read_only;
};

struct nhv_cfg_remote {
	char partition[FAB_NAME_MAX];
	char device[FAB_NAME_MAX];
	char node[FAB_NAME_MAX];
	char address[NHV_CFG_ADDR_MAX];
	char export_name[FAB_NAME_MAX];
	enum nhv_dev_type type;
	uint32_t timeout_ms;
};

struct nhv_config {
	char name[FAB_NAME_MAX];
	char controller[NHV_CFG_ADDR_MAX];
	char pki[NHV_CFG_PATH_MAX];
	char data_listen[NHV_CFG_ADDR_MAX];
	char transport[8]; /* "tcp", "rdma", "auto"; "" = auto */
	uint32_t vcpus;	   /* valid if vcpus_set (0 is a valid value) */
	bool vcpus_set;
	uint64_t memory_bytes;		   /* 0: not set */
	char volume_dir[NHV_CFG_PATH_MAX]; /* "": not set (the defaults above) */
	char image_dir[NHV_CFG_PATH_MAX];
	char state_dir[NHV_CFG_PATH_MAX];
	unsigned nexports, nremotes;
	struct nhv_cfg_export exports[NHV_CFG_MAX_EXPORTS];
	struct nhv_cfg_remote remotes[NHV_CFG_MAX_REMOTES];
};

#define NHV_CFG_DEFAULT_TIMEOUT_MS 30000

/*
 * Parses the text of a configuration (name is used in messages). Returns 0
 * or -EINVAL with "FILE:LINE: reason" in err. The struct is large: allocate
 * it. Thread: any.
 */
int nhv_config_parse(const char *text, const char *name, struct nhv_config *cfg, char *err,
		     size_t errlen);

/* Reads and parses a file (at most 1 MiB). -ENOENT/-EACCES/-EFBIG or as
 * nhv_config_parse. */
int nhv_config_load(const char *path, struct nhv_config *cfg, char *err, size_t errlen);

/* The remote binding of (partition, device), or NULL. */
const struct nhv_cfg_remote *nhv_config_remote(const struct nhv_config *cfg, const char *partition,
					       const char *device);

#endif
