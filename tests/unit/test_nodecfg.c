// SPDX-License-Identifier: MIT
/* fabnode configuration file: the documented format parses; every kind of
 * mistake is refused with its line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fab/nodecfg.h"

static struct nhv_config *cfg;
static char err[300];

static int setup(void **state)
{
	cfg = calloc(1, sizeof(*cfg));
	return cfg ? 0 : -1;
}

static int teardown(void **state)
{
	free(cfg);
	return 0;
}

static void test_full_example(void **state)
{
	static const char text[] = "# node a\n"
				   "name = node-a\n"
				   "controller = 10.77.0.1:7700\n"
				   "pki = /etc/fabric/pki   # cluster PKI\n"
				   "data_listen = 0.0.0.0:7800\n"
				   "vcpus = 8\n"
				   "memory = 16G\n"
				   "\n"
				   "[export disk0]\n"
				   "path = /var/lib/fabric/disk0.img\n"
				   "read_only = true\n"
				   "[remote web1/disk0]\n"
				   "node = node-b\n"
				   "address = [fd00::2]:7800\n"
				   "export = disk0\n"
				   "[remote web1/disk1]\n"
				   "node = node-c\n"
				   "address = 10.77.0.13:7800\n"
				   "export = big\n"
				   "timeout_ms = 5000\n";
	const struct nhv_cfg_remote *r;

	assert_int_equal(nhv_config_parse(text, "a.conf", cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->name, "node-a");
	assert_string_equal(cfg->controller, "10.77.0.1:7700");
	assert_string_equal(cfg->pki, "/etc/fabric/pki");
	assert_int_equal(cfg->vcpus, 8);
	assert_int_equal(cfg->memory_bytes, 16ull << 30);
	assert_int_equal(cfg->nexports, 1);
	assert_string_equal(cfg->exports[0].name, "disk0");
	assert_true(cfg->exports[0].read_only);
	assert_int_equal(cfg->nremotes, 2);
	r = nhv_config_remote(cfg, "web1", "disk0");
	assert_non_null(r);
	assert_string_equal(r->node, "node-b");
	assert_string_equal(r->address, "[fd00::2]:7800");
	assert_int_equal(r->timeout_ms, NHV_CFG_DEFAULT_TIMEOUT_MS);
	r = nhv_config_remote(cfg, "web1", "disk1");
	assert_int_equal(r->timeout_ms, 5000);
	assert_null(nhv_config_remote(cfg, "web2", "disk0"));
}

static void refused(const char *text, const char *want)
{
	assert_int_equal(nhv_config_parse(text, "t.conf", cfg, err, sizeof(err)), -EINVAL);
	if (!strstr(err, want))
		fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_mistakes(void **state)
{
	refused("controller = 1.2.3.4:5\n", "t.conf:1: missing required key 'name'");
	refused("name = a\ncolour = blue\n", "t.conf:2: unknown key 'colour'");
	refused("name = a\nname = b\n", "t.conf:2: key 'name' given twice");
	refused("name = Big\n", "t.conf:1: name: 'Big' is not a valid name");
	refused("name = a\ncontroller = nowhere\n",
		"t.conf:2: controller: 'nowhere' is not HOST:PORT");
	refused("name = a\nvcpus = 65537\n", "t.conf:2: vcpus");
	refused("name = a\nvolume_dir = volumes\n",
		"t.conf:2: volume_dir: 'volumes' is not an absolute path");
	refused("name = a\nimage_dir =\n", "t.conf:2: image_dir: path empty");
	refused("name = a\nstate_dir = /a\nstate_dir = /b\n",
		"t.conf:3: key 'state_dir' given twice");
	refused("name = a\n[export d]\nvolume_dir = /v\n",
		"t.conf:3: unknown key 'volume_dir' in an [export] section");
	refused("name = a\nvcpus = 12x\n", "t.conf:2: vcpus");
	refused("name = a\nmemory = 12Q\n", "t.conf:2: memory");
	refused("name = a\njust words\n", "t.conf:2: expected KEY = VALUE");
	refused("name = a\n[disk x]\n", "t.conf:2: unknown section [disk]");
	refused("name = a\n[export]\n", "t.conf:2: section [export] needs a name");
	refused("name = a\n[export d]\nread_only = maybe\n", "t.conf:3: read_only");
	refused("name = a\n[export d]\nread_only = true\n",
		"t.conf:2: missing required key 'path'");
	refused("name = a\n[export d]\npath = /x\n[export d]\npath = /y\n",
		"t.conf:4: export 'd' defined twice");
	refused("name = a\n[export d]\npath = /x\nnode = b\n",
		"t.conf:4: unknown key 'node' in an [export] section");
	refused("name = a\n[remote p]\n", "t.conf:2: remote 'p' must be PARTITION/DEVICE");
	refused("name = a\n[remote p/d]\nnode = b\naddress = 1.2.3.4:9\n",
		"t.conf:2: missing required key 'export'");
	refused("name = a\n[remote p/d]\nnode = b\naddress = 1.2.3.4:9\nexport = e\n"
		"timeout_ms = 5\n",
		"t.conf:6: timeout_ms");
	refused("name = a\n[remote p/d] junk\n", "t.conf:2: malformed section header");
	refused("name = a\n[export d]\ntype = tape\n",
		"t.conf:3: type: 'tape' is not a device type");
	refused("name = a\n[export d]\npath = /x\n",
		"t.conf:1: [export] sections need data_listen");
	refused("name = a\ntransport = infiniband\n", "t.conf:2: transport: 'infiniband' is not");
	refused("name = a\ndata_listen = 1.2.3.4:5\n[export e]\ntype = echo\npath = /x\n",
		"t.conf:3: an echo export takes no path");
	refused("name = a\n[remote p/d]\nnode = b\naddress = 1.2.3.4:9\nexport = e\n"
		"type = disk\n",
		"t.conf:6: type");
}

/* Device types: storage by default, echo without an image. */
static void test_types(void **state)
{
	const char *text = "name = a\ndata_listen = 1.2.3.4:5\n"
			   "[export e]\ntype = echo\n"
			   "[export d]\npath = /d.img\n"
			   "[remote p/e]\nnode = b\naddress = 1.2.3.4:9\nexport = e\ntype = echo\n"
			   "[remote p/d]\nnode = b\naddress = 1.2.3.4:9\nexport = d\n";

	assert_int_equal(nhv_config_parse(text, "t.conf", cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->exports[0].type, NHV_DEV_ECHO);
	assert_int_equal(cfg->exports[1].type, NHV_DEV_STORAGE);
	assert_int_equal(nhv_config_remote(cfg, "p", "e")->type, NHV_DEV_ECHO);
	assert_int_equal(nhv_config_remote(cfg, "p", "d")->type, NHV_DEV_STORAGE);
}

/* The directories of the controller's volumes, images and state; vcpus = 0
 * (a storage-only node) is a value, not "unset". */
static void test_dirs_and_storage_only(void **state)
{
	static const char text[] = "name = store1\n"
				   "vcpus = 0\n"
				   "volume_dir = /srv/fabric/volumes\n"
				   "image_dir = /opt/images\n"
				   "state_dir = /srv/fabric\n";

	assert_int_equal(nhv_config_parse(text, "s.conf", cfg, err, sizeof(err)), 0);
	assert_true(cfg->vcpus_set);
	assert_int_equal(cfg->vcpus, 0);
	assert_string_equal(cfg->volume_dir, "/srv/fabric/volumes");
	assert_string_equal(cfg->image_dir, "/opt/images");
	assert_string_equal(cfg->state_dir, "/srv/fabric");

	/* Left out: unset, so fabnode applies its defaults. */
	assert_int_equal(nhv_config_parse("name = a\n", "a.conf", cfg, err, sizeof(err)), 0);
	assert_false(cfg->vcpus_set);
	assert_string_equal(cfg->volume_dir, "");
	assert_string_equal(cfg->image_dir, "");
	assert_string_equal(cfg->state_dir, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_mistakes),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_dirs_and_storage_only),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
