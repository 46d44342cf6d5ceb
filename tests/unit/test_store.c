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
#include <sqlite3.h>

#include "ctl.h"
#include "fab/log.h"
#include "fab/util.h"
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

	/* 0 vCPUs: a storage-only node */
	m.vcpus = 0;
	assert_int_equal(ctl_register_validate(&m, "n1", &rec, err, sizeof(err)), 0);
	m.vcpus = 70000;
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

/* ---- schema --------------------------------------------------------------- */

/* Migration 1 as fabctld 0.1 shipped it: a database it wrote must open. */
static const char v1_schema[] = "CREATE TABLE nodes ("
				" name TEXT PRIMARY KEY,"
				" vcpus INTEGER NOT NULL,"
				" memory_bytes INTEGER NOT NULL,"
				" transports TEXT NOT NULL,"
				" vsps TEXT NOT NULL,"
				" data_addr TEXT NOT NULL,"
				" peer_addr TEXT NOT NULL,"
				" version TEXT NOT NULL,"
				" registered_ms INTEGER NOT NULL,"
				" last_seen_ms INTEGER NOT NULL,"
				" generation INTEGER NOT NULL"
				") STRICT;";

static void sql_exec(const char *path, const char *sql)
{
	sqlite3 *d;

	assert_int_equal(sqlite3_open(path, &d), SQLITE_OK);
	assert_int_equal(sqlite3_exec(d, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(d), SQLITE_OK);
}

static int copy_node(const struct ctl_node_rec *rec, void *arg)
{
	memcpy(arg, rec, sizeof(*rec));
	return 0;
}

static void test_migrate_v1(void **state)
{
	struct ctl_node_rec r, got;
	struct ctl_volume_rec v;
	struct ctl_store *s;
	int version, known;
	char sql[1024];

	snprintf(sql, sizeof(sql),
		 "%s INSERT INTO nodes VALUES('old', 4, 1073741824, 'tcp', 'storage',"
		 " '10.0.0.2:7800', '', '0.1.0', 1000, 2000, 3); PRAGMA user_version=1;",
		 v1_schema);
	sql_exec(db, sql);

	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_schema_version(s, &version, &known), 0);
	assert_true(known >= 2);
	assert_int_equal(version, known);
	memset(&got, 0, sizeof(got));
	assert_int_equal(ctl_store_node_foreach(s, copy_node, &got), 0);
	assert_string_equal(got.name, "old");
	assert_int_equal(got.vcpus, 4);
	assert_string_equal(got.vsps, "storage");
	assert_int_equal(got.registered_unix_ms, 1000);
	assert_int_equal(got.generation, 3);
	assert_false(got.drained);

	/* The upgraded database takes the new records and the new flag. */
	fill(&r, "old", 4, 5000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_int_equal(r.generation, 4);
	assert_int_equal(r.registered_unix_ms, 1000);
	assert_int_equal(ctl_store_node_set_drained(s, "old", true), 0);
	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "vol");
	assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	ctl_store_close(s);

	/* Reopening an up-to-date database migrates nothing. */
	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_schema_version(s, &version, &known), 0);
	assert_int_equal(version, known);
	assert_int_equal(ctl_store_node_foreach(s, copy_node, &got), 0);
	assert_true(got.drained);
	ctl_store_close(s);
}

static void test_newer_schema_refused(void **state)
{
	struct ctl_store *s;
	int version, known;
	char sql[64];

	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_schema_version(s, &version, &known), 0);
	ctl_store_close(s);
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d;", known + 1);
	sql_exec(db, sql);
	s = NULL;
	assert_int_equal(ctl_store_open(db, &s), -EPROTO);
	assert_null(s);
}

/* A database of schema 2 with a node and a partition: the current schema
 * with what 3 added taken away (3 only adds the migrations table). */
static void make_v2(void)
{
	struct ctl_node_rec r;
	struct ctl_part_rec p;
	struct ctl_store *s;

	assert_int_equal(ctl_store_open(db, &s), 0);
	fill(&r, "n1", 4, 1000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "web");
	snprintf(p.image, sizeof(p.image), "hello");
	p.vcpus = 1;
	p.memory_bytes = 64 << 20;
	p.state = 3;
	p.epoch = 7;
	snprintf(p.node, sizeof(p.node), "n1");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	ctl_store_close(s);
	sql_exec(db, "DROP TABLE migrations; PRAGMA user_version=2;");
}

static void mig_fill(struct ctl_migration_rec *m, const char *part, int phase)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->partition, sizeof(m->partition), "%s", part);
	snprintf(m->source, sizeof(m->source), "n1");
	snprintf(m->target, sizeof(m->target), "n2");
	snprintf(m->trigger, sizeof(m->trigger), "operator admin");
	m->phase = phase;
	m->epoch_from = 7;
	m->epoch_to = 8;
	m->downtime_ms = 50;
	m->max_rounds = 30;
	m->throttle = true;
	m->started_unix_ms = 1234;
}

static int count_mig(const struct ctl_migration_rec *m, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_migrate_v2(void **state)
{
	struct ctl_migration_rec m, got;
	struct ctl_part_rec p;
	struct ctl_store *s;
	int version, known;

	make_v2();
	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_schema_version(s, &version, &known), 0);
	assert_int_equal(known, 3);
	assert_int_equal(version, 3);
	/* what version 2 held is still there */
	assert_int_equal(ctl_store_part_get(s, "web", &p), 0);
	assert_int_equal(p.epoch, 7);
	assert_string_equal(p.node, "n1");
	/* and the new table works */
	mig_fill(&m, "web", CTL_MIG_PREPARE);
	assert_int_equal(ctl_store_migration_insert(s, &m), 0);
	assert_true(m.id > 0);
	assert_int_equal(ctl_store_migration_get(s, m.id, &got), 0);
	assert_string_equal(got.partition, "web");
	assert_int_equal(got.phase, CTL_MIG_PREPARE);
	ctl_store_close(s);

	/* reopened: nothing to migrate, the row is durable */
	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_schema_version(s, &version, &known), 0);
	assert_int_equal(version, known);
	assert_int_equal(ctl_store_migration_get(s, m.id, &got), 0);
	assert_int_equal(got.epoch_from, 7);
	ctl_store_close(s);
}

static int collect_mig(const struct ctl_migration_rec *m, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%llu:%s:%d;", (unsigned long long)m->id,
		 m->partition, m->phase);
	return 0;
}

static void test_migrations(void **state)
{
	struct ctl_migration_rec a, b, got;
	struct ctl_store *s;
	char out[512], want[512];

	assert_int_equal(ctl_store_open(db, &s), 0);
	mig_fill(&a, "web", CTL_MIG_PREPARE);
	assert_int_equal(ctl_store_migration_insert(s, &a), 0);
	mig_fill(&b, "db", CTL_MIG_COPY);
	assert_int_equal(ctl_store_migration_insert(s, &b), 0);
	assert_true(b.id > a.id);

	/* the spec stays as inserted, the progress changes */
	a.phase = CTL_MIG_COMMITTED;
	a.rounds = 4;
	a.ram_bytes = 64 << 20;
	a.bytes_sent = 80 << 20;
	a.epoch_to = 9;
	snprintf(a.source, sizeof(a.source), "changed");
	assert_int_equal(ctl_store_migration_update(s, &a), 0);
	assert_int_equal(ctl_store_migration_get(s, a.id, &got), 0);
	assert_int_equal(got.phase, CTL_MIG_COMMITTED);
	assert_int_equal(got.rounds, 4);
	assert_int_equal(got.bytes_sent, 80 << 20);
	assert_int_equal(got.epoch_to, 9);
	assert_string_equal(got.source, "n1");
	assert_string_equal(got.trigger, "operator admin");
	assert_true(got.throttle);
	assert_int_equal(got.downtime_ms, 50);
	assert_int_equal(got.started_unix_ms, 1234);

	/* bad phases and unknown ids */
	a.phase = 0;
	assert_int_equal(ctl_store_migration_update(s, &a), -EINVAL);
	a.phase = 7;
	assert_int_equal(ctl_store_migration_insert(s, &a), -EINVAL);
	got = a;
	got.phase = CTL_MIG_DONE;
	got.id = 999;
	assert_int_equal(ctl_store_migration_update(s, &got), -ENOENT);
	assert_int_equal(ctl_store_migration_get(s, 999, &got), -ENOENT);

	/* ended ones leave the active listing */
	b.phase = CTL_MIG_ABORTED;
	snprintf(b.error, sizeof(b.error), "target node n2 lost");
	b.ended_unix_ms = 5000;
	assert_int_equal(ctl_store_migration_update(s, &b), 0);
	out[0] = '\0';
	assert_int_equal(ctl_store_migration_foreach(s, NULL, false, collect_mig, out), 0);
	snprintf(want, sizeof(want), "%llu:web:4;%llu:db:6;", (unsigned long long)a.id,
		 (unsigned long long)b.id);
	assert_string_equal(out, want);
	out[0] = '\0';
	assert_int_equal(ctl_store_migration_foreach(s, NULL, true, collect_mig, out), 0);
	assert_non_null(strstr(out, ":web:4;"));
	assert_null(strstr(out, ":db:"));
	out[0] = '\0';
	assert_int_equal(ctl_store_migration_foreach(s, "db", false, collect_mig, out), 0);
	assert_non_null(strstr(out, ":db:6;"));
	assert_null(strstr(out, "web"));
	assert_int_equal(ctl_store_migration_last(s, "db", &got), 0);
	assert_string_equal(got.error, "target node n2 lost");
	assert_int_equal(ctl_store_migration_last(s, "none", &got), -ENOENT);

	/* a rolled-back transaction leaves no row (the commit is the
	 * decision) */
	mig_fill(&got, "tx", CTL_MIG_PREPARE);
	assert_int_equal(ctl_store_begin(s), 0);
	assert_int_equal(ctl_store_migration_insert(s, &got), 0);
	assert_int_equal(ctl_store_rollback(s), 0);
	assert_int_equal(ctl_store_migration_last(s, "tx", &got), -ENOENT);
	ctl_store_close(s);
}

/* Only the newest 1000 ended migrations are kept; active ones always. */
static void test_migrations_trim(void **state)
{
	struct ctl_migration_rec m, first_active;
	struct ctl_store *s;
	int n = 0;

	assert_int_equal(ctl_store_open(db, &s), 0);
	mig_fill(&first_active, "keep", CTL_MIG_COPY);
	assert_int_equal(ctl_store_migration_insert(s, &first_active), 0);
	assert_int_equal(ctl_store_begin(s), 0);
	for (int i = 0; i < 1100; i++) {
		mig_fill(&m, "x", CTL_MIG_DONE);
		assert_int_equal(ctl_store_migration_insert(s, &m), 0);
	}
	assert_int_equal(ctl_store_commit(s), 0);
	assert_int_equal(ctl_store_migration_foreach(s, "x", false, count_mig, &n), 0);
	assert_true(n >= 1000 && n <= 1001);
	assert_int_equal(ctl_store_migration_get(s, first_active.id, &m), 0);
	ctl_store_close(s);
}

/* ---- nodes ---------------------------------------------------------------- */

static int collect_drained(const struct ctl_node_rec *rec, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%s:%d;", rec->name, rec->drained);
	return 0;
}

static void test_drained(void **state)
{
	struct ctl_store *s;
	struct ctl_node_rec r;
	char out[512] = "";

	assert_int_equal(ctl_store_open(db, &s), 0);
	fill(&r, "a", 2, 1000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_false(r.drained);
	fill(&r, "b", 2, 1000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_int_equal(ctl_store_node_set_drained(s, "a", true), 0);
	assert_int_equal(ctl_store_node_set_drained(s, "nobody", true), -ENOENT);

	/* A node that restarts and registers again stays drained, and says
	 * so to the caller. */
	fill(&r, "a", 4, 2000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	assert_true(r.drained);
	assert_int_equal(r.generation, 2);
	assert_int_equal(ctl_store_node_foreach(s, collect_drained, out), 0);
	assert_string_equal(out, "a:1;b:0;");
	ctl_store_close(s);

	assert_int_equal(ctl_store_open(db, &s), 0);
	out[0] = '\0';
	assert_int_equal(ctl_store_node_foreach(s, collect_drained, out), 0);
	assert_string_equal(out, "a:1;b:0;");
	assert_int_equal(ctl_store_node_set_drained(s, "a", false), 0);
	out[0] = '\0';
	assert_int_equal(ctl_store_node_foreach(s, collect_drained, out), 0);
	assert_string_equal(out, "a:0;b:0;");
	ctl_store_close(s);
}

/* ---- volumes -------------------------------------------------------------- */

static void vol(struct ctl_volume_rec *v, const char *name, const char *node)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->node, sizeof(v->node), "%s", node);
	v->size_bytes = 1ull << 30;
	snprintf(v->state, sizeof(v->state), "creating");
	v->created_unix_ms = 42;
}

static int collect_vol(const struct ctl_volume_rec *v, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%s@%s:%s:%s;", v->name, v->node, v->state,
		 v->attached_to);
	return 0;
}

static int stop_at_second(const struct ctl_volume_rec *v, void *arg)
{
	return ++*(int *)arg == 2 ? 7 : 0;
}

static void test_volumes(void **state)
{
	struct ctl_volume_rec v, got;
	struct ctl_store *s;
	char out[512] = "";
	int n = 0;

	assert_int_equal(ctl_store_open(db, &s), 0);
	vol(&v, "v2", "n1");
	assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	vol(&v, "v1", "n2");
	assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	assert_int_equal(ctl_store_volume_insert(s, &v), -EEXIST);

	vol(&v, "v2", "n3");
	snprintf(v.state, sizeof(v.state), "ready");
	snprintf(v.path, sizeof(v.path), "/var/lib/fab/v2.img");
	v.size_bytes = 5ull << 40;
	v.created_unix_ms = 999; /* not updated */
	assert_int_equal(ctl_store_volume_update(s, &v), 0);
	vol(&v, "nope", "n3");
	assert_int_equal(ctl_store_volume_update(s, &v), -ENOENT);

	assert_int_equal(ctl_store_volume_get(s, "v2", &got), 0);
	assert_string_equal(got.name, "v2");
	assert_string_equal(got.node, "n3");
	assert_string_equal(got.state, "ready");
	assert_string_equal(got.path, "/var/lib/fab/v2.img");
	assert_string_equal(got.error, "");
	assert_int_equal(got.size_bytes, 5ull << 40);
	assert_int_equal(got.created_unix_ms, 42);
	assert_string_equal(got.attached_to, "");
	assert_int_equal(ctl_store_volume_get(s, "nope", &got), -ENOENT);

	assert_int_equal(ctl_store_volume_foreach(s, collect_vol, out), 0);
	assert_string_equal(out, "v1@n2:creating:;v2@n3:ready:;");
	assert_int_equal(ctl_store_volume_foreach(s, stop_at_second, &n), 7);
	assert_int_equal(n, 2);

	assert_int_equal(ctl_store_volume_delete(s, "v1"), 0);
	assert_int_equal(ctl_store_volume_delete(s, "v1"), -ENOENT);
	assert_int_equal(ctl_store_volume_get(s, "v1", &got), -ENOENT);
	ctl_store_close(s);
}

/* ---- partitions ----------------------------------------------------------- */

static void part(struct ctl_part_rec *p, const char *name, unsigned nvol, ...)
{
	va_list ap;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->image, sizeof(p->image), "hello.elf");
	p->vcpus = 2;
	p->memory_bytes = 256ull << 20;
	p->restart = 1;
	p->created_unix_ms = 7;
	p->desired_running = true;
	va_start(ap, nvol);
	for (unsigned i = 0; i < nvol; i++)
		snprintf(p->volumes[i], sizeof(p->volumes[i]), "%s", va_arg(ap, const char *));
	va_end(ap);
	p->nvolumes = nvol;
}

/* Packs argv the way the rec holds it: each string NUL-terminated. */
static void pack_args(struct ctl_part_rec *p, unsigned n, const char *const *argv)
{
	p->nargs = n;
	p->args_len = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t len = strlen(argv[i]) + 1;

		memcpy(p->args + p->args_len, argv[i], len);
		p->args_len += len;
	}
}

static void add_vols(struct ctl_store *s, unsigned n, const char *prefix)
{
	struct ctl_volume_rec v;
	char name[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%u", prefix, i);
		vol(&v, name, "n1");
		assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	}
}

static void assert_attached(struct ctl_store *s, const char *volume, const char *partition)
{
	struct ctl_volume_rec v;

	assert_int_equal(ctl_store_volume_get(s, volume, &v), 0);
	assert_string_equal(v.attached_to, partition);
}

static void test_part_insert(void **state)
{
	static const char *const argv[] = { "console=ttyS0", "", "x=1", "" };
	struct ctl_part_rec p, got;
	struct ctl_store *s;
	char out[512] = "";

	assert_int_equal(ctl_store_open(db, &s), 0);
	add_vols(s, 4, "v");

	/* Three volumes attached in order, and arguments with empty strings
	 * (including the last) that a C-string round trip would lose. */
	part(&p, "p1", 3, "v2", "v0", "v3");
	snprintf(p.group, sizeof(p.group), "web");
	pack_args(&p, 4, argv);
	assert_int_equal(p.args_len, 20);
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	assert_int_equal(ctl_store_part_insert(s, &p), -EEXIST);

	memset(&got, 0xa5, sizeof(got));
	assert_int_equal(ctl_store_part_get(s, "p1", &got), 0);
	assert_string_equal(got.name, "p1");
	assert_string_equal(got.image, "hello.elf");
	assert_string_equal(got.group, "web");
	assert_int_equal(got.vcpus, 2);
	assert_int_equal(got.memory_bytes, 256ull << 20);
	assert_int_equal(got.restart, 1);
	assert_int_equal(got.created_unix_ms, 7);
	assert_true(got.desired_running);
	assert_int_equal(got.nargs, 4);
	assert_int_equal(got.args_len, 20);
	assert_memory_equal(got.args, p.args, 20);
	assert_int_equal(got.nvolumes, 3);
	assert_string_equal(got.volumes[0], "v2");
	assert_string_equal(got.volumes[1], "v0");
	assert_string_equal(got.volumes[2], "v3");
	assert_string_equal(got.node, "");
	assert_attached(s, "v0", "p1");
	assert_attached(s, "v1", "");
	assert_int_equal(ctl_store_volume_foreach(s, collect_vol, out), 0);
	assert_string_equal(out, "v0@n1:creating:p1;v1@n1:creating:;v2@n1:creating:p1;"
				 "v3@n1:creating:p1;");

	/* An unknown volume after a good one: nothing of p2 is stored. */
	part(&p, "p2", 2, "v1", "ghost");
	assert_int_equal(ctl_store_part_insert(s, &p), -ENOENT);
	assert_int_equal(ctl_store_part_get(s, "p2", &got), -ENOENT);
	assert_attached(s, "v1", "");

	/* A volume attached to p1: refused, v1 stays free. */
	part(&p, "p2", 2, "v1", "v3");
	assert_int_equal(ctl_store_part_insert(s, &p), -EBUSY);
	assert_int_equal(ctl_store_part_get(s, "p2", &got), -ENOENT);
	assert_attached(s, "v1", "");
	assert_attached(s, "v3", "p1");

	/* The same volume twice. */
	part(&p, "p2", 2, "v1", "v1");
	assert_int_equal(ctl_store_part_insert(s, &p), -EBUSY);
	assert_int_equal(ctl_store_part_get(s, "p2", &got), -ENOENT);

	part(&p, "p2", 0);
	p.nvolumes = CTL_MAX_VOLUMES + 1;
	assert_int_equal(ctl_store_part_insert(s, &p), -EINVAL);

	/* No volumes, no arguments. */
	part(&p, "p2", 0);
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	assert_int_equal(ctl_store_part_get(s, "p2", &got), 0);
	assert_int_equal(got.nvolumes, 0);
	assert_int_equal(got.nargs, 0);
	assert_int_equal(got.args_len, 0);

	/* An attached volume cannot be deleted. */
	assert_int_equal(ctl_store_volume_delete(s, "v0"), -EBUSY);
	assert_attached(s, "v0", "p1");
	ctl_store_close(s);
}

static int collect_part(const struct ctl_part_rec *p, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), 512 - strlen(out), "%s:%d:%s:%u:", p->name, p->state, p->node,
		 p->nvolumes);
	for (unsigned i = 0; i < p->nvolumes; i++)
		snprintf(out + strlen(out), 512 - strlen(out), "%s,", p->volumes[i]);
	snprintf(out + strlen(out), 512 - strlen(out), ";");
	return 0;
}

static void test_part_update_delete(void **state)
{
	struct ctl_part_rec p, got;
	struct ctl_placement_rec pl;
	struct ctl_store *s;
	char out[512] = "";

	assert_int_equal(ctl_store_open(db, &s), 0);
	add_vols(s, 3, "v");
	part(&p, "b", 2, "v0", "v1");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	part(&p, "a", 0);
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	part(&p, "c", 1, "v2");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);

	/* Only the status changes: the spec in the update is ignored. */
	part(&p, "b", 0);
	snprintf(p.image, sizeof(p.image), "other.elf");
	p.vcpus = 64;
	p.desired_running = false;
	p.state = 3;
	snprintf(p.node, sizeof(p.node), "n7");
	p.epoch = 5;
	p.exit_status = -11;
	snprintf(p.reason, sizeof(p.reason), "triple fault");
	p.restarts = 2;
	p.state_unix_ms = 123456;
	assert_int_equal(ctl_store_part_update(s, &p), 0);
	part(&p, "nope", 0);
	assert_int_equal(ctl_store_part_update(s, &p), -ENOENT);

	assert_int_equal(ctl_store_part_get(s, "b", &got), 0);
	assert_string_equal(got.image, "hello.elf");
	assert_int_equal(got.vcpus, 2);
	assert_int_equal(got.nvolumes, 2);
	assert_false(got.desired_running);
	assert_int_equal(got.state, 3);
	assert_string_equal(got.node, "n7");
	assert_int_equal(got.epoch, 5);
	assert_int_equal(got.exit_status, -11);
	assert_string_equal(got.reason, "triple fault");
	assert_int_equal(got.restarts, 2);
	assert_int_equal(got.state_unix_ms, 123456);

	assert_int_equal(ctl_store_part_foreach(s, collect_part, out), 0);
	assert_string_equal(out, "a:0::0:;b:3:n7:2:v0,v1,;c:0::1:v2,;");

	/* Deleting b frees its volumes and drops its placements. */
	memset(&pl, 0, sizeof(pl));
	snprintf(pl.partition, sizeof(pl.partition), "b");
	assert_int_equal(ctl_store_placement_add(s, &pl), 0);
	assert_int_equal(ctl_store_part_delete(s, "b"), 0);
	assert_int_equal(ctl_store_part_delete(s, "b"), -ENOENT);
	assert_int_equal(ctl_store_part_get(s, "b", &got), -ENOENT);
	assert_int_equal(ctl_store_placement_last(s, "b", &pl), -ENOENT);
	assert_attached(s, "v0", "");
	assert_attached(s, "v1", "");
	assert_attached(s, "v2", "c");
	assert_int_equal(ctl_store_volume_delete(s, "v0"), 0);
	part(&p, "d", 1, "v1");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	out[0] = '\0';
	assert_int_equal(ctl_store_part_foreach(s, collect_part, out), 0);
	assert_string_equal(out, "a:0::0:;c:0::1:v2,;d:0::1:v1,;");
	ctl_store_close(s);
}

/* ---- placement decisions -------------------------------------------------- */

static void test_placements(void **state)
{
	struct ctl_placement_rec r, got;
	struct ctl_part_rec p;
	struct ctl_store *s;
	sqlite3 *d;
	sqlite3_stmt *st;
	char verdicts[64];

	assert_int_equal(ctl_store_open(db, &s), 0);
	part(&p, "p1", 0);
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	part(&p, "p2", 0);
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	assert_int_equal(ctl_store_placement_last(s, "p1", &got), -ENOENT);
	assert_null(got.verdicts);

	memset(&r, 0, sizeof(r));
	snprintf(r.partition, sizeof(r.partition), "ghost");
	assert_int_equal(ctl_store_placement_add(s, &r), -ENOENT);

	for (int i = 1; i <= 20; i++) {
		memset(&r, 0, sizeof(r));
		snprintf(r.partition, sizeof(r.partition), "%s", i % 2 ? "p1" : "p2");
		r.epoch = (uint64_t)i;
		snprintf(r.node, sizeof(r.node), "n%d", i);
		snprintf(r.policy, sizeof(r.policy), "spread");
		snprintf(r.trigger, sizeof(r.trigger), "created");
		r.decided_unix_ms = 1000 + i;
		snprintf(verdicts, sizeof(verdicts), "n%d\t1\t0.5\tfree 2 vCPUs\n", i);
		r.verdicts = i == 20 ? NULL : verdicts;
		assert_int_equal(ctl_store_placement_add(s, &r), 0);
	}

	assert_int_equal(ctl_store_placement_last(s, "p1", &got), 0);
	assert_string_equal(got.partition, "p1");
	assert_int_equal(got.epoch, 19);
	assert_string_equal(got.node, "n19");
	assert_string_equal(got.policy, "spread");
	assert_string_equal(got.trigger, "created");
	assert_int_equal(got.decided_unix_ms, 1019);
	assert_string_equal(got.verdicts, "n19\t1\t0.5\tfree 2 vCPUs\n");
	ctl_placement_rec_free(&got);
	assert_null(got.verdicts);
	ctl_placement_rec_free(&got); /* twice is harmless */
	assert_int_equal(ctl_store_placement_last(s, "p2", &got), 0);
	assert_int_equal(got.epoch, 20);
	assert_string_equal(got.verdicts, ""); /* stored from NULL */
	ctl_placement_rec_free(&got);
	ctl_store_close(s);

	/* 10 added to each, the 8 latest kept. */
	assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(d,
					    "SELECT partition, count(*), min(epoch) FROM placements"
					    " GROUP BY partition ORDER BY partition",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "p1");
	assert_int_equal(sqlite3_column_int(st, 1), 8);
	assert_int_equal(sqlite3_column_int(st, 2), 5);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "p2");
	assert_int_equal(sqlite3_column_int(st, 1), 8);
	assert_int_equal(sqlite3_column_int(st, 2), 6);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(d);
}

/* ---- events --------------------------------------------------------------- */

struct ev_seen {
	int n;
	int64_t first, last;
	int stop_after;
};

static int count_ev(const struct ctl_event_rec *e, void *arg)
{
	struct ev_seen *seen = arg;

	if (!seen->n)
		seen->first = e->id;
	else
		assert_int_equal(e->id, seen->last + 1);
	seen->last = e->id;
	seen->n++;
	return seen->n == seen->stop_after ? 9 : 0;
}

static int first_ev(const struct ctl_event_rec *e, void *arg)
{
	memcpy(arg, e, sizeof(*e));
	return 1;
}

static void test_events(void **state)
{
	struct ev_seen seen = { 0 };
	struct ctl_event_rec e;
	struct ctl_store *s;
	char msg[64];
	int64_t t0;

	assert_int_equal(ctl_store_open(db, &s), 0);
	t0 = fab_unix_ms();
	assert_int_equal(ctl_store_event_add(s, "node", "n1", "registered"), 0);
	assert_int_equal(ctl_store_event_foreach(s, 0, 10, first_ev, &e), 1);
	assert_int_equal(e.id, 1);
	assert_string_equal(e.kind, "node");
	assert_string_equal(e.subject, "n1");
	assert_string_equal(e.message, "registered");
	assert_true(e.unix_ms >= t0 && e.unix_ms <= fab_unix_ms());

	/* In one transaction: 10,250 fsyncs would take a while. */
	assert_int_equal(ctl_store_begin(s), 0);
	for (int i = 2; i <= 10250; i++) {
		snprintf(msg, sizeof(msg), "event %d", i);
		assert_int_equal(ctl_store_event_add(s, "partition", "p", msg), 0);
	}
	assert_int_equal(ctl_store_commit(s), 0);

	/* The last trim, at id 10,200, dropped ids up to 200. */
	assert_int_equal(ctl_store_event_foreach(s, 0, 100000, count_ev, &seen), 0);
	assert_int_equal(seen.first, 201);
	assert_int_equal(seen.last, 10250);
	assert_int_equal(seen.n, 10050);

	/* Paging: after an id, at most limit, oldest first. */
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ctl_store_event_foreach(s, 10000, 20, count_ev, &seen), 0);
	assert_int_equal(seen.n, 20);
	assert_int_equal(seen.first, 10001);
	assert_int_equal(seen.last, 10020);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ctl_store_event_foreach(s, 10245, 20, count_ev, &seen), 0);
	assert_int_equal(seen.n, 5);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ctl_store_event_foreach(s, 10250, 20, count_ev, &seen), 0);
	assert_int_equal(seen.n, 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(ctl_store_event_foreach(s, 0, 0, count_ev, &seen), 0);
	assert_int_equal(seen.n, 0);
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 3;
	assert_int_equal(ctl_store_event_foreach(s, 0, 20, count_ev, &seen), 9);
	assert_int_equal(seen.n, 3);
	ctl_store_close(s);

	/* Ids continue after a reopen. */
	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_event_add(s, "volume", "v", "ready"), 0);
	assert_int_equal(ctl_store_event_foreach(s, 10250, 10, first_ev, &e), 1);
	assert_int_equal(e.id, 10251);
	assert_string_equal(e.message, "ready");
	ctl_store_close(s);
}

/* ---- transactions --------------------------------------------------------- */

static void test_outer_transaction(void **state)
{
	struct ctl_volume_rec v;
	struct ctl_part_rec p;
	struct ctl_node_rec r;
	struct ctl_store *s;

	/* A group that commits, with a failed call in the middle: the failed
	 * call leaves nothing, the others all land. */
	assert_int_equal(ctl_store_open(db, &s), 0);
	add_vols(s, 2, "v");
	assert_int_equal(ctl_store_begin(s), 0);
	fill(&r, "n1", 2, 1000);
	assert_int_equal(ctl_store_node_register(s, &r), 0);
	part(&p, "p1", 1, "v0");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	part(&p, "p2", 2, "v1", "v0");
	assert_int_equal(ctl_store_part_insert(s, &p), -EBUSY);
	assert_int_equal(ctl_store_volume_delete(s, "v0"), -EBUSY);
	assert_int_equal(ctl_store_event_add(s, "partition", "p1", "created"), 0);
	assert_int_equal(ctl_store_commit(s), 0);
	ctl_store_close(s);

	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_part_get(s, "p1", &p), 0);
	assert_int_equal(ctl_store_part_get(s, "p2", &p), -ENOENT);
	assert_attached(s, "v0", "p1");
	assert_attached(s, "v1", "");

	/* A group abandoned by ctl_store_rollback. */
	assert_int_equal(ctl_store_begin(s), 0);
	vol(&v, "v9", "n1");
	assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	assert_int_equal(ctl_store_part_delete(s, "p1"), 0);
	assert_int_equal(ctl_store_rollback(s), 0);
	assert_int_equal(ctl_store_volume_get(s, "v9", &v), -ENOENT);
	assert_int_equal(ctl_store_part_get(s, "p1", &p), 0);

	/* A group never committed (the process dies, or closes): gone. */
	assert_int_equal(ctl_store_begin(s), 0);
	vol(&v, "v9", "n1");
	assert_int_equal(ctl_store_volume_insert(s, &v), 0);
	part(&p, "p3", 1, "v1");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	assert_int_equal(ctl_store_part_get(s, "p3", &p), 0); /* visible inside */
	ctl_store_close(s);

	assert_int_equal(ctl_store_open(db, &s), 0);
	assert_int_equal(ctl_store_volume_get(s, "v9", &v), -ENOENT);
	assert_int_equal(ctl_store_part_get(s, "p3", &p), -ENOENT);
	assert_attached(s, "v1", "");
	/* And the store works normally afterwards. */
	part(&p, "p3", 1, "v1");
	assert_int_equal(ctl_store_part_insert(s, &p), 0);
	ctl_store_close(s);
}

/* ---- scale ---------------------------------------------------------------- */

struct big_seen {
	unsigned n, volumes;
	char last[FAB_NAME_MAX];
};

static int count_part(const struct ctl_part_rec *p, void *arg)
{
	struct big_seen *seen = arg;
	char want[FAB_NAME_MAX];

	assert_true(strcmp(seen->last, p->name) < 0);
	snprintf(seen->last, sizeof(seen->last), "%s", p->name);
	snprintf(want, sizeof(want), "%.32s-a", p->name);
	if (p->nvolumes) {
		assert_int_equal(p->nvolumes, 2);
		assert_string_equal(p->volumes[0], want);
	}
	seen->volumes += p->nvolumes;
	seen->n++;
	return 0;
}

static void test_part_foreach_10000(void **state)
{
	const unsigned n = 10000;
	struct big_seen seen = { 0 };
	struct ctl_volume_rec v;
	struct ctl_part_rec p;
	struct ctl_store *s;
	char name[32], vname[40];
	int64_t t0, t1, t2;

	assert_int_equal(ctl_store_open(db, &s), 0);
	t0 = fab_mono_ms();
	assert_int_equal(ctl_store_begin(s), 0);
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "part-%05u", i);
		part(&p, name, 0);
		p.nargs = 1;
		p.args_len = 200;
		memset(p.args, 'x', p.args_len - 1);
		/* Every other partition has two volumes. */
		if (i % 2 == 0) {
			for (unsigned j = 0; j < 2; j++) {
				snprintf(vname, sizeof(vname), "%s-%c", name, 'a' + j);
				vol(&v, vname, "n1");
				assert_int_equal(ctl_store_volume_insert(s, &v), 0);
				snprintf(p.volumes[j], sizeof(p.volumes[j]), "%s", vname);
			}
			p.nvolumes = 2;
		}
		assert_int_equal(ctl_store_part_insert(s, &p), 0);
	}
	assert_int_equal(ctl_store_commit(s), 0);
	t1 = fab_mono_ms();
	assert_int_equal(ctl_store_part_foreach(s, count_part, &seen), 0);
	t2 = fab_mono_ms();
	assert_int_equal(seen.n, n);
	assert_int_equal(seen.volumes, n);
	printf("part_foreach: %u partitions, %u volumes: insert %lld ms, list %lld ms\n", n,
	       seen.volumes, (long long)(t1 - t0), (long long)(t2 - t1));
	ctl_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
		cmocka_unit_test(test_validate),
		cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_part_insert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_part_update_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_placements, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outer_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_part_foreach_10000, setup, teardown),
	};

	fab_log_init("test_store", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
