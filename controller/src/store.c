// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "fab/log.h"
#include "store.h"

struct ctl_store {
	sqlite3 *db;
	sqlite3_stmt *st_get_gen, *st_insert, *st_update, *st_seen, *st_delete, *st_list;
};

/* Schema migrations, applied in order; PRAGMA user_version counts how many
 * are in the database. Never edit one that has shipped: append. */
static const char *const migrations[] = {
	"CREATE TABLE nodes ("
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
	") STRICT;",
};

static int db_fail(struct ctl_store *s, const char *what)
{
	fab_err("store: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

static int exec(struct ctl_store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fab_err("store: %s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

/* journal_mode answers with the mode in force, which can differ from the
 * one asked for (e.g. on a file system without shared memory). */
static int check_wal(struct ctl_store *s)
{
	sqlite3_stmt *st;
	int ok;

	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "setting WAL mode");
	ok = sqlite3_step(st) == SQLITE_ROW &&
	     sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	if (!ok) {
		fab_err("store: the database refused WAL mode");
		return -EIO;
	}
	return 0;
}

int ctl_store_durability(struct ctl_store *s, char *journal, size_t len, int *synchronous)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "reading journal mode");
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(journal, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "PRAGMA synchronous", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "reading synchronous");
	*synchronous = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	return 0;
}

int ctl_store_begin(struct ctl_store *s)
{
	return exec(s, "BEGIN IMMEDIATE");
}

int ctl_store_commit(struct ctl_store *s)
{
	return exec(s, "COMMIT");
}

static int migrate(struct ctl_store *s)
{
	sqlite3_stmt *st;
	int version, rc;
	char sql[64];

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "reading schema version");
	version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (version > (int)(sizeof(migrations) / sizeof(migrations[0]))) {
		fab_err("store: database schema version %d is newer than this fabctld knows (%zu)",
			version, sizeof(migrations) / sizeof(migrations[0]));
		return -EPROTO;
	}
	for (size_t i = (size_t)version; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		rc = exec(s, "BEGIN IMMEDIATE");
		if (!rc)
			rc = exec(s, migrations[i]);
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", i + 1);
		if (!rc)
			rc = exec(s, sql);
		if (!rc)
			rc = exec(s, "COMMIT");
		if (rc) {
			exec(s, "ROLLBACK");
			return rc;
		}
	}
	return 0;
}

static int prepare(struct ctl_store *s, sqlite3_stmt **st, const char *sql)
{
	if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		return db_fail(s, sql);
	return 0;
}

int ctl_store_open(const char *path, struct ctl_store **out)
{
	struct ctl_store *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		fab_err("store: opening %s: %s", path,
			s->db ? sqlite3_errmsg(s->db) : "out of memory");
		rc = -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	/* WAL with synchronous=FULL: every commit is fsynced before it
	 * returns, so an acknowledged registration survives a crash. */
	rc = check_wal(s);
	if (!rc)
		rc = exec(s, "PRAGMA synchronous=FULL");
	if (!rc)
		rc = exec(s, "PRAGMA foreign_keys=ON");
	if (!rc)
		rc = migrate(s);
	if (!rc)
		rc = prepare(s, &s->st_get_gen,
			     "SELECT generation, registered_ms FROM nodes WHERE name=?1");
	if (!rc)
		rc = prepare(s, &s->st_insert,
			     "INSERT INTO nodes(name, vcpus, memory_bytes, transports, vsps,"
			     " data_addr, peer_addr, version, registered_ms, last_seen_ms,"
			     " generation) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)");
	if (!rc)
		rc = prepare(s, &s->st_update,
			     "UPDATE nodes SET vcpus=?2, memory_bytes=?3, transports=?4, vsps=?5,"
			     " data_addr=?6, peer_addr=?7, version=?8, last_seen_ms=?10,"
			     " generation=?11 WHERE name=?1");
	if (!rc)
		rc = prepare(s, &s->st_seen, "UPDATE nodes SET last_seen_ms=?2 WHERE name=?1");
	if (!rc)
		rc = prepare(s, &s->st_delete, "DELETE FROM nodes WHERE name=?1");
	if (!rc)
		rc = prepare(s, &s->st_list,
			     "SELECT name, vcpus, memory_bytes, transports, vsps, data_addr,"
			     " peer_addr, version, registered_ms, last_seen_ms, generation"
			     " FROM nodes ORDER BY name");
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	ctl_store_close(s);
	return rc;
}

void ctl_store_close(struct ctl_store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->st_get_gen);
	sqlite3_finalize(s->st_insert);
	sqlite3_finalize(s->st_update);
	sqlite3_finalize(s->st_seen);
	sqlite3_finalize(s->st_delete);
	sqlite3_finalize(s->st_list);
	sqlite3_close(s->db);
	free(s);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

int ctl_store_node_register(struct ctl_store *s, struct ctl_node_rec *rec)
{
	sqlite3_stmt *st;
	int exists, rc;

	sqlite3_reset(s->st_get_gen);
	bind_text(s->st_get_gen, 1, rec->name);
	rc = sqlite3_step(s->st_get_gen);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(s, "looking up node");
	exists = rc == SQLITE_ROW;
	if (exists) {
		rec->generation = (uint64_t)sqlite3_column_int64(s->st_get_gen, 0) + 1;
		rec->registered_unix_ms = sqlite3_column_int64(s->st_get_gen, 1);
	} else {
		rec->generation = 1;
	}
	sqlite3_reset(s->st_get_gen);

	st = exists ? s->st_update : s->st_insert;
	sqlite3_reset(st);
	bind_text(st, 1, rec->name);
	sqlite3_bind_int64(st, 2, rec->vcpus);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)rec->memory_bytes);
	bind_text(st, 4, rec->transports);
	bind_text(st, 5, rec->vsps);
	bind_text(st, 6, rec->data_addr);
	bind_text(st, 7, rec->peer_addr);
	bind_text(st, 8, rec->version);
	if (!exists)
		sqlite3_bind_int64(st, 9, rec->registered_unix_ms);
	sqlite3_bind_int64(st, 10, rec->last_seen_unix_ms);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)rec->generation);
	/* Autocommit: the statement is its own transaction, fsynced on return. */
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, "storing node registration");
	return 0;
}

static int exec_name(struct ctl_store *s, sqlite3_stmt *st, const char *name, int has_ms,
		     int64_t ms, const char *what)
{
	int rc;

	sqlite3_reset(st);
	bind_text(st, 1, name);
	if (has_ms)
		sqlite3_bind_int64(st, 2, ms);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, what);
	return sqlite3_changes(s->db) ? 0 : -ENOENT;
}

int ctl_store_node_seen(struct ctl_store *s, const char *name, int64_t unix_ms)
{
	return exec_name(s, s->st_seen, name, 1, unix_ms, "updating last seen");
}

int ctl_store_node_delete(struct ctl_store *s, const char *name)
{
	return exec_name(s, s->st_delete, name, 0, 0, "deleting node");
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(dst, len, "%s", t ? (const char *)t : "");
}

int ctl_store_node_foreach(struct ctl_store *s, ctl_store_node_cb cb, void *arg)
{
	sqlite3_stmt *st = s->st_list;
	struct ctl_node_rec rec;
	int rc, ret = 0;

	sqlite3_reset(st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&rec, 0, sizeof(rec));
		col_text(st, 0, rec.name, sizeof(rec.name));
		rec.vcpus = (uint32_t)sqlite3_column_int64(st, 1);
		rec.memory_bytes = (uint64_t)sqlite3_column_int64(st, 2);
		col_text(st, 3, rec.transports, sizeof(rec.transports));
		col_text(st, 4, rec.vsps, sizeof(rec.vsps));
		col_text(st, 5, rec.data_addr, sizeof(rec.data_addr));
		col_text(st, 6, rec.peer_addr, sizeof(rec.peer_addr));
		col_text(st, 7, rec.version, sizeof(rec.version));
		rec.registered_unix_ms = sqlite3_column_int64(st, 8);
		rec.last_seen_unix_ms = sqlite3_column_int64(st, 9);
		rec.generation = (uint64_t)sqlite3_column_int64(st, 10);
		ret = cb(&rec, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "listing nodes");
	sqlite3_reset(st);
	return ret;
}
