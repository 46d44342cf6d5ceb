// SPDX-License-Identifier: MIT
/* Controller store (SQLite) and registration validation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"
#include "fab/log.h"
#include "store.h"

static char dir[64], db[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/fabstore-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(db, sizeof(db), "%s/ctl.db", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static int collect(const struct ctl_node_rec *rec, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%s:%u:%s:%llu;", rec->name, rec->vcpus,
		 rec->transports, (unsigned long long)rec->generation);
	return 0;
}

static void fill(struct ctl_node_rec *r, const char *name, uint32_t vcpus, int64_t t)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->vcpus = vcpus;
	r->memory_bytes = 1ull << 30;
	snprintf(r->transports, sizeof(r->transports), "tcp");
	r->registered_unix_ms = r->last_seen_unix_ms = t;
}

static void test_register_reopen(void **state)
{
	struct ctl_store *s;
	struct ctl_node_rec r;
	char out[512] = "";

	assert_int_equal(ctl_store_open(db, &s), 0);
	{
		/* An acknowledged registration must survive power loss, not
		 * just a process crash: WAL with an fsync per commit. */
		char journal[16];
		int sync = -1;

		assert_int_equal(ctl_store_durability(s, journal, sizeof(journal), &sync), 0);
		assert_string_equal(journal, "wal");
		assert_int_equal(sync, 2); /* FULL */
	}
	fill(&r, "beta", 2, 1000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_int_equal(r.generation, 1);
	fill(&r, "alpha", 4, 2000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	/* Re-registration: new description, generation up, first time kept. */
	fill(&r, "beta", 8, 3000);
	snprintf(r.transports, sizeof(r.transports), "tcp,rdma");
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_int_equal(r.generation, 2);
	assert_int_equal(r.registered_unix_ms, 1000);
	assert_int_equal(ctl_store_node_seen(s, "alpha", 5000), 0);
	assert_int_equal(ctl_store_node_seen(s, "nobody", 5000), -ENOENT);
	ctl_store_close(s);

	/* Everything is there after reopening, in name order. */
	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_node_foreach(s, collect, out), 0);
	assert_string_equal(out, "alpha:4:tcp:1;beta:8:tcp,rdma:2;");
	assert_int_equal(ctl_store_node_delete(s, "alpha"), 0);
	assert_int_equal(ctl_store_node_delete(s, "alpha"), -ENOENT);
	out[0] = '\0';
	assert_int_equal(ctl_store_node_foreach(s, collect, out), 0);
	assert_string_equal(out, "beta:8:tcp,rdma:2;");
	ctl_store_close(s);
}

static void test_not_a_database(void **state)
{
	struct ctl_store *s;
	FILE *f = fopen(db, "w");

	fputs("this is not an SQLite database, just text that is long enough to fail\n", f);
	for (int i = 0; i < 100; i++)
		fputs("junk junk junk junk junk junk junk junk\n", f);
	fclose(f);
	assert_int_equal(ctl_store_open(db, &s), -EIO);
}

static void test_validate(void **state)
{
	char *tr_ok[] = { "tcp", "rdma" }, *tr_bad[] = { "carrier-pigeon" },
	     *tr_dup[] = { "tcp", "tcp" }, *vsps[] = { "storage" }, *vsps_bad[] = { "Bad/Name" };
	Fab__RegisterNode m = FAB__REGISTER_NODE__INIT;
	struct ctl_node_rec rec;
	char err[160];

	m.name = "n1";
	m.vcpus = 4;
	m.memory_bytes = 1ull << 30;
	m.transports = tr_ok;
	m.n_transports = 2;
	m.vsps = vsps;
	m.n_vsps = 1;
	m.data_addr = "10.0.0.2:7800";
	m.version = "0.1.0";
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), 0);
	assert_string_equal(rec.transports, "tcp,rdma");
	assert_string_equal(rec.vsps, "storage");

	/* The certificate decides the name. */
	assert_int_equal(ctl_register_validate(&m, "n2", &rec, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "certificate"));

	m.vcpus = 0;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.vcpus = 4;
	m.memory_bytes = 12;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.memory_bytes = 1ull << 30;
	m.transports = tr_bad;
	m.n_transports = 1;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "carrier-pigeon"));
	m.transports = tr_dup;
	m.n_transports = 2;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.n_transports = 0;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.transports = tr_ok;
	m.n_transports = 1;
	m.vsps = vsps_bad;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.vsps = vsps;
	m.data_addr = "no-port";
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.data_addr = "";
	m.version = "bad\nversion";
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), -EINVAL);
	m.version = "";
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
		cmocka_unit_test(test_validate),
	};

	fab_log_init("test_store", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
