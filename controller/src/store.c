// SPDX-License-Identifier: MIT
/*
 * The controller's store: nodes, volumes, partitions with their attachments,
 * placement decisions and an event log, in one SQLite database.
 *
 * Atomicity: a public call that changes data is one statement or runs its
 * statements inside a SAVEPOINT. A savepoint nests inside the caller's
 * ctl_store_begin/ctl_store_commit and, outside one, is its own transaction
 * (its RELEASE commits), so the same code is atomic in both cases.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "fab/log.h"
#include "fab/util.h"
#include "store.h"

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

	/*
	 * 2: drained nodes, volumes, partitions and what they attach,
	 * placement decisions, events. A volume's and a partition's node are
	 * plain names, not foreign keys: a node can leave the cluster and
	 * come back while the records that name it stay.
	 */
	"ALTER TABLE nodes ADD COLUMN drained INTEGER NOT NULL DEFAULT 0"
	" CHECK (drained IN (0, 1));"
	"CREATE TABLE volumes ("
	" name TEXT PRIMARY KEY,"
	" node TEXT NOT NULL,"
	" size_bytes INTEGER NOT NULL,"
	" state TEXT NOT NULL,"
	" path TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE partitions ("
	" name TEXT PRIMARY KEY,"
	" image TEXT NOT NULL,"
	" vcpus INTEGER NOT NULL,"
	" memory_bytes INTEGER NOT NULL,"
	" anti_affinity TEXT NOT NULL,"
	" restart INTEGER NOT NULL,"
	" nargs INTEGER NOT NULL,"
	" args BLOB NOT NULL," /* nargs NUL-terminated strings */
	" created_ms INTEGER NOT NULL,"
	" desired_running INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" node TEXT NOT NULL,"
	" epoch INTEGER NOT NULL,"
	" exit_status INTEGER NOT NULL,"
	" reason TEXT NOT NULL,"
	" restarts INTEGER NOT NULL,"
	" state_ms INTEGER NOT NULL"
	") STRICT;"
	/* UNIQUE (volume): a volume is attached at most once; the volume
	 * reference without an action makes deleting an attached volume fail. */
	"CREATE TABLE attachments ("
	" partition TEXT NOT NULL REFERENCES partitions(name) ON DELETE CASCADE,"
	" device TEXT NOT NULL,"
	" volume TEXT NOT NULL UNIQUE REFERENCES volumes(name),"
	" PRIMARY KEY (partition, device)"
	") STRICT;"
	"CREATE TABLE placements ("
	" id INTEGER PRIMARY KEY,"
	" partition TEXT NOT NULL REFERENCES partitions(name) ON DELETE CASCADE,"
	" epoch INTEGER NOT NULL,"
	" node TEXT NOT NULL,"
	" policy TEXT NOT NULL,"
	" cause TEXT NOT NULL," /* the record's trigger, a keyword in SQL */
	" decided_ms INTEGER NOT NULL,"
	" verdicts TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX placements_by_partition ON placements(partition, id);"
	/* AUTOINCREMENT: ids are never reused, even if the log were emptied,
	 * so a reader resuming after an id cannot miss events. */
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" unix_ms INTEGER NOT NULL,"
	" kind TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" message TEXT NOT NULL"
	") STRICT;",

	/*
	 * 3: live migrations (controller/MIGRATION.md). The phase is the
	 * controller's decision: a row reaches COMMITTED in the same
	 * transaction that moves the partition's placement, and before any
	 * node hears RESUME or DROP. The partition is a plain name, so the
	 * history outlives a deleted partition. Progress between phase
	 * changes (dirty rate, link rate) lives in memory only.
	 */
	"CREATE TABLE migrations ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" partition TEXT NOT NULL,"
	" source TEXT NOT NULL,"
	" target TEXT NOT NULL,"
	" phase INTEGER NOT NULL CHECK (phase BETWEEN 1 AND 6),"
	" epoch_from INTEGER NOT NULL,"
	" epoch_to INTEGER NOT NULL,"
	" cause TEXT NOT NULL," /* the record's trigger */
	" downtime_ms INTEGER NOT NULL,"
	" max_rounds INTEGER NOT NULL,"
	" throttle INTEGER NOT NULL CHECK (throttle IN (0, 1)),"
	" rounds INTEGER NOT NULL,"
	" ram_bytes INTEGER NOT NULL,"
	" bytes_sent INTEGER NOT NULL,"
	" downtime_us INTEGER NOT NULL,"
	" error TEXT NOT NULL,"
	" started_ms INTEGER NOT NULL,"
	" ended_ms INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX migrations_by_partition ON migrations(partition, id);"
	"CREATE INDEX migrations_by_phase ON migrations(phase);",
};

#define PLACEMENTS_KEPT 8
#define EVENTS_KEPT	10000
#define EVENTS_TRIM	100  /* trim when an event id is a multiple of this */
#define MIGRATIONS_KEPT 1000 /* ended migrations kept, the newest */

#define MIG_SELECT                                                                        \
	"SELECT id, partition, source, target, phase, epoch_from, epoch_to, cause,"       \
	" downtime_ms, max_rounds, throttle, rounds, ram_bytes, bytes_sent, downtime_us," \
	" error, started_ms, ended_ms FROM migrations"

/* The columns a volume is read with; ?1 (when present) is its name. */
#define VOLUME_SELECT                                                                  \
	"SELECT v.name, v.node, v.size_bytes, v.state, v.path, v.error, v.created_ms," \
	" a.partition FROM volumes v LEFT JOIN attachments a ON a.volume = v.name"

/* A partition comes back as one row per attachment (or one row with NULL
 * attachment columns), in device order: disk0 < disk1 < ... as text, which
 * is numeric order while there are at most ten. */
_Static_assert(CTL_MAX_VOLUMES <= 10, "device names sort as text");
#define PART_SELECT                                                                    \
	"SELECT p.name, p.image, p.vcpus, p.memory_bytes, p.anti_affinity, p.restart," \
	" p.nargs, p.args, p.created_ms, p.desired_running, p.state, p.node, p.epoch," \
	" p.exit_status, p.reason, p.restarts, p.state_ms, a.volume"                   \
	" FROM partitions p LEFT JOIN attachments a ON a.partition = p.name"
#define PART_ORDER " ORDER BY p.name, a.device"

#define NODE_SELECT                                                                          \
	"SELECT name, vcpus, memory_bytes, transports, vsps, data_addr, peer_addr, version," \
	" registered_ms, last_seen_ms, generation, drained FROM nodes ORDER BY name"

/* Statements prepared once at open (SQLITE_PREPARE_PERSISTENT). Listings
 * are prepared per call instead, so a callback may call back into the store,
 * even into the same listing. */
enum {
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_NODE_GET,
	ST_NODE_INSERT,
	ST_NODE_UPDATE,
	ST_NODE_SEEN,
	ST_NODE_DELETE,
	ST_NODE_DRAIN,
	ST_VOL_INSERT,
	ST_VOL_UPDATE,
	ST_VOL_DELETE,
	ST_VOL_GET,
	ST_PART_INSERT,
	ST_PART_ATTACH,
	ST_PART_UPDATE,
	ST_PART_DELETE,
	ST_PART_GET,
	ST_PL_INSERT,
	ST_PL_TRIM,
	ST_PL_LAST,
	ST_EV_INSERT,
	ST_EV_TRIM,
	ST_MIG_INSERT,
	ST_MIG_UPDATE,
	ST_MIG_GET,
	ST_MIG_TRIM,
	ST_COUNT
};

static const char *const statements[ST_COUNT] = {
	[ST_SAVEPOINT] = "SAVEPOINT ctl_store",
	[ST_RELEASE] = "RELEASE ctl_store",
	[ST_ROLLBACK_TO] = "ROLLBACK TO ctl_store",
	[ST_NODE_GET] = "SELECT generation, registered_ms, drained FROM nodes WHERE name=?1",
	[ST_NODE_INSERT] = "INSERT INTO nodes(name, vcpus, memory_bytes, transports, vsps,"
			   " data_addr, peer_addr, version, registered_ms, last_seen_ms,"
			   " generation) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
	/* Not drained: an operator's decision outlives re-registrations. */
	[ST_NODE_UPDATE] = "UPDATE nodes SET vcpus=?2, memory_bytes=?3, transports=?4, vsps=?5,"
			   " data_addr=?6, peer_addr=?7, version=?8, last_seen_ms=?10,"
			   " generation=?11 WHERE name=?1",
	[ST_NODE_SEEN] = "UPDATE nodes SET last_seen_ms=?2 WHERE name=?1",
	[ST_NODE_DELETE] = "DELETE FROM nodes WHERE name=?1",
	[ST_NODE_DRAIN] = "UPDATE nodes SET drained=?2 WHERE name=?1",
	[ST_VOL_INSERT] = "INSERT INTO volumes(name, node, size_bytes, state, path, error,"
			  " created_ms) VALUES(?1,?2,?3,?4,?5,?6,?7)",
	[ST_VOL_UPDATE] = "UPDATE volumes SET node=?2, size_bytes=?3, state=?4, path=?5,"
			  " error=?6 WHERE name=?1",
	[ST_VOL_DELETE] = "DELETE FROM volumes WHERE name=?1",
	[ST_VOL_GET] = VOLUME_SELECT " WHERE v.name=?1",
	[ST_PART_INSERT] = "INSERT INTO partitions(name, image, vcpus, memory_bytes,"
			   " anti_affinity, restart, nargs, args, created_ms, desired_running,"
			   " state, node, epoch, exit_status, reason, restarts, state_ms)"
			   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
	[ST_PART_ATTACH] = "INSERT INTO attachments(partition, device, volume) VALUES(?1,?2,?3)",
	[ST_PART_UPDATE] = "UPDATE partitions SET desired_running=?2, state=?3, node=?4,"
			   " epoch=?5, exit_status=?6, reason=?7, restarts=?8, state_ms=?9"
			   " WHERE name=?1",
	/* Attachments and placements go with it (ON DELETE CASCADE). */
	[ST_PART_DELETE] = "DELETE FROM partitions WHERE name=?1",
	[ST_PART_GET] = PART_SELECT " WHERE p.name=?1" PART_ORDER,
	[ST_PL_INSERT] = "INSERT INTO placements(partition, epoch, node, policy, cause,"
			 " decided_ms, verdicts) VALUES(?1,?2,?3,?4,?5,?6,?7)",
	/* Everything at or below the id of the first decision past the kept
	 * ones; nothing while there are no more than that (NULL bound). */
	[ST_PL_TRIM] = "DELETE FROM placements WHERE partition=?1 AND id <= (SELECT id"
		       " FROM placements WHERE partition=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
	[ST_PL_LAST] = "SELECT epoch, node, policy, cause, decided_ms, verdicts FROM placements"
		       " WHERE partition=?1 ORDER BY id DESC LIMIT 1",
	[ST_EV_INSERT] = "INSERT INTO events(unix_ms, kind, subject, message) VALUES(?1,?2,?3,?4)",
	[ST_EV_TRIM] = "DELETE FROM events WHERE id <= ?1",
	[ST_MIG_INSERT] = "INSERT INTO migrations(partition, source, target, phase, epoch_from,"
			  " epoch_to, cause, downtime_ms, max_rounds, throttle, rounds, ram_bytes,"
			  " bytes_sent, downtime_us, error, started_ms, ended_ms)"
			  " VALUES(?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
	/* The spec of a migration (who, where from, to, why, budget) is
	 * fixed at insert. */
	[ST_MIG_UPDATE] = "UPDATE migrations SET phase=?5, epoch_to=?7, rounds=?12,"
			  " ram_bytes=?13, bytes_sent=?14, downtime_us=?15, error=?16,"
			  " ended_ms=?18 WHERE id=?1",
	[ST_MIG_GET] = MIG_SELECT " WHERE id=?1",
	/* Ended ones past the newest MIGRATIONS_KEPT; never an active one. */
	[ST_MIG_TRIM] = "DELETE FROM migrations WHERE phase IN (5, 6) AND id <= (SELECT id"
			" FROM migrations WHERE phase IN (5, 6) ORDER BY id DESC LIMIT 1"
			" OFFSET ?1)",
};

struct ctl_store {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
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

/*
 * Steps a statement that returns no rows, then resets it. A failed PRIMARY
 * KEY or UNIQUE constraint returns on_unique, a failed FOREIGN KEY on_fk,
 * when the caller expects them (non-zero); anything else is -EIO, logged.
 * A failed statement undoes only itself: the transaction stays open.
 */
static int run(struct ctl_store *s, sqlite3_stmt *st, const char *what, int on_unique, int on_fk)
{
	int rc = sqlite3_step(st), ext, ret = 0;

	if (rc != SQLITE_DONE) {
		ext = sqlite3_extended_errcode(s->db);
		if (on_unique &&
		    (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE))
			ret = on_unique;
		else if (on_fk && ext == SQLITE_CONSTRAINT_FOREIGNKEY)
			ret = on_fk;
		else
			ret = db_fail(s, what);
	}
	sqlite3_reset(st);
	return ret;
}

/* A one-row change keyed by name (?1), its other parameters bound by the
 * caller: -ENOENT when no row has that name. */
static int change_by_name(struct ctl_store *s, sqlite3_stmt *st, const char *name, const char *what,
			  int on_fk)
{
	int rc;

	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = run(s, st, what, 0, on_fk);
	if (rc)
		return rc;
	/* Rows removed by a cascade are not counted: this is the named row. */
	return sqlite3_changes(s->db) ? 0 : -ENOENT;
}

static int sp_begin(struct ctl_store *s)
{
	return run(s, s->st[ST_SAVEPOINT], "opening a savepoint", 0, 0);
}

/* Ends the savepoint of sp_begin: keeps its changes when rc is 0 (and, with
 * no outer transaction, commits them), undoes them otherwise. Returns rc, or
 * -EIO if keeping them failed. */
static int sp_end(struct ctl_store *s, int rc)
{
	if (!rc)
		rc = run(s, s->st[ST_RELEASE], "committing", 0, 0);
	if (rc) {
		/* ROLLBACK TO undoes but keeps the savepoint, RELEASE then
		 * drops it. Both fail, harmlessly, when SQLite has already
		 * rolled back the whole transaction (after an I/O error). */
		sqlite3_step(s->st[ST_ROLLBACK_TO]);
		sqlite3_reset(s->st[ST_ROLLBACK_TO]);
		sqlite3_step(s->st[ST_RELEASE]);
		sqlite3_reset(s->st[ST_RELEASE]);
	}
	return rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(dst, len, "%s", t ? (const char *)t : "");
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

static int pragma_int(struct ctl_store *s, const char *sql, int *out)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, sql);
	*out = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
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
	return pragma_int(s, "PRAGMA synchronous", synchronous);
}

int ctl_store_schema_version(struct ctl_store *s, int *version, int *known)
{
	*known = (int)FAB_ARRAY_SIZE(migrations);
	return pragma_int(s, "PRAGMA user_version", version);
}

int ctl_store_begin(struct ctl_store *s)
{
	return exec(s, "BEGIN IMMEDIATE");
}

int ctl_store_commit(struct ctl_store *s)
{
	return exec(s, "COMMIT");
}

bool ctl_store_in_tx(struct ctl_store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

int ctl_store_rollback(struct ctl_store *s)
{
	/* After some errors SQLite has rolled back already: nothing to do. */
	if (sqlite3_get_autocommit(s->db))
		return 0;
	return exec(s, "ROLLBACK");
}

static int migrate(struct ctl_store *s)
{
	int version, rc;
	char sql[64];

	rc = pragma_int(s, "PRAGMA user_version", &version);
	if (rc)
		return rc;
	if (version > (int)FAB_ARRAY_SIZE(migrations)) {
		fab_err("store: database schema version %d is newer than this fabctld knows (%zu)",
			version, FAB_ARRAY_SIZE(migrations));
		return -EPROTO;
	}
	/* One transaction per migration: a crash leaves the database at the
	 * last complete version, and the next open carries on from there. */
	for (size_t i = (size_t)version; i < FAB_ARRAY_SIZE(migrations); i++) {
		rc = exec(s, "BEGIN IMMEDIATE");
		if (!rc)
			rc = exec(s, migrations[i]);
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", i + 1);
		if (!rc)
			rc = exec(s, sql);
		if (!rc)
			rc = exec(s, "COMMIT");
		if (rc) {
			ctl_store_rollback(s);
			return rc;
		}
	}
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
	/* Per connection and off by default: attachments and placements
	 * rely on it. */
	if (!rc)
		rc = exec(s, "PRAGMA foreign_keys=ON");
	if (!rc)
		rc = migrate(s);
	for (int i = 0; !rc && i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &s->st[i], NULL) != SQLITE_OK)
			rc = db_fail(s, statements[i]);
	}
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
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	/* A transaction still open (begun, never committed) is rolled back. */
	sqlite3_close(s->db);
	free(s);
}

/* ---- nodes ---------------------------------------------------------------- */

static int node_register(struct ctl_store *s, struct ctl_node_rec *rec)
{
	sqlite3_stmt *st = s->st[ST_NODE_GET];
	int exists, rc;

	bind_text(st, 1, rec->name);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		rc = db_fail(s, "looking up node");
		sqlite3_reset(st);
		return rc;
	}
	exists = rc == SQLITE_ROW;
	if (exists) {
		rec->generation = (uint64_t)sqlite3_column_int64(st, 0) + 1;
		rec->registered_unix_ms = sqlite3_column_int64(st, 1);
		rec->drained = sqlite3_column_int(st, 2) != 0;
	} else {
		rec->generation = 1;
		rec->drained = false;
	}
	sqlite3_reset(st);

	st = s->st[exists ? ST_NODE_UPDATE : ST_NODE_INSERT];
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
	return run(s, st, "storing node registration", 0, 0);
}

int ctl_store_node_register(struct ctl_store *s, struct ctl_node_rec *rec)
{
	/* Read and write in one transaction: the generation is counted from
	 * the row that is replaced. */
	int rc = sp_begin(s);

	if (rc)
		return rc;
	return sp_end(s, node_register(s, rec));
}

int ctl_store_node_seen(struct ctl_store *s, const char *name, int64_t unix_ms)
{
	sqlite3_bind_int64(s->st[ST_NODE_SEEN], 2, unix_ms);
	return change_by_name(s, s->st[ST_NODE_SEEN], name, "updating last seen", 0);
}

int ctl_store_node_set_drained(struct ctl_store *s, const char *name, bool drained)
{
	sqlite3_bind_int(s->st[ST_NODE_DRAIN], 2, drained);
	return change_by_name(s, s->st[ST_NODE_DRAIN], name, "setting drained", 0);
}

int ctl_store_node_delete(struct ctl_store *s, const char *name)
{
	return change_by_name(s, s->st[ST_NODE_DELETE], name, "deleting node", 0);
}

int ctl_store_node_foreach(struct ctl_store *s, ctl_store_node_cb cb, void *arg)
{
	struct ctl_node_rec rec;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (sqlite3_prepare_v2(s->db, NODE_SELECT, -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "listing nodes");
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
		rec.drained = sqlite3_column_int(st, 11) != 0;
		ret = cb(&rec, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "listing nodes");
	sqlite3_finalize(st);
	return ret;
}

/* ---- volumes -------------------------------------------------------------- */

static void bind_volume(sqlite3_stmt *st, const struct ctl_volume_rec *v)
{
	bind_text(st, 1, v->name);
	bind_text(st, 2, v->node);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)v->size_bytes);
	bind_text(st, 4, v->state);
	bind_text(st, 5, v->path);
	bind_text(st, 6, v->error);
}

int ctl_store_volume_insert(struct ctl_store *s, const struct ctl_volume_rec *v)
{
	sqlite3_stmt *st = s->st[ST_VOL_INSERT];

	bind_volume(st, v);
	sqlite3_bind_int64(st, 7, v->created_unix_ms);
	return run(s, st, "inserting volume", -EEXIST, 0);
}

int ctl_store_volume_update(struct ctl_store *s, const struct ctl_volume_rec *v)
{
	bind_volume(s->st[ST_VOL_UPDATE], v);
	return change_by_name(s, s->st[ST_VOL_UPDATE], v->name, "updating volume", 0);
}

int ctl_store_volume_delete(struct ctl_store *s, const char *name)
{
	/* An attachment still references it: its foreign key refuses. */
	return change_by_name(s, s->st[ST_VOL_DELETE], name, "deleting volume", -EBUSY);
}

/* Reads the rows of VOLUME_SELECT into cb; returns cb's first non-zero
 * value, or -EIO. Resets st (the caller finalizes a per-call one). */
static int volume_rows(struct ctl_store *s, sqlite3_stmt *st, ctl_store_volume_cb cb, void *arg)
{
	struct ctl_volume_rec v;
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&v, 0, sizeof(v));
		col_text(st, 0, v.name, sizeof(v.name));
		col_text(st, 1, v.node, sizeof(v.node));
		v.size_bytes = (uint64_t)sqlite3_column_int64(st, 2);
		col_text(st, 3, v.state, sizeof(v.state));
		col_text(st, 4, v.path, sizeof(v.path));
		col_text(st, 5, v.error, sizeof(v.error));
		v.created_unix_ms = sqlite3_column_int64(st, 6);
		col_text(st, 7, v.attached_to, sizeof(v.attached_to)); /* NULL: "" */
		ret = cb(&v, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "reading volumes");
	sqlite3_reset(st);
	return ret;
}

static int volume_copy(const struct ctl_volume_rec *v, void *arg)
{
	memcpy(arg, v, sizeof(*v));
	return 1;
}

int ctl_store_volume_get(struct ctl_store *s, const char *name, struct ctl_volume_rec *out)
{
	int rc;

	bind_text(s->st[ST_VOL_GET], 1, name);
	rc = volume_rows(s, s->st[ST_VOL_GET], volume_copy, out);
	return rc == 1 ? 0 : rc ? rc : -ENOENT;
}

int ctl_store_volume_foreach(struct ctl_store *s, ctl_store_volume_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, VOLUME_SELECT " ORDER BY v.name", -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "listing volumes");
	rc = volume_rows(s, st, cb, arg);
	sqlite3_finalize(st);
	return rc;
}

/* ---- partitions ----------------------------------------------------------- */

static void bind_part_status(sqlite3_stmt *st, const struct ctl_part_rec *p, int first)
{
	sqlite3_bind_int(st, first, p->desired_running);
	sqlite3_bind_int(st, first + 1, p->state);
	bind_text(st, first + 2, p->node);
	sqlite3_bind_int64(st, first + 3, (sqlite3_int64)p->epoch);
	sqlite3_bind_int(st, first + 4, p->exit_status);
	bind_text(st, first + 5, p->reason);
	sqlite3_bind_int64(st, first + 6, p->restarts);
	sqlite3_bind_int64(st, first + 7, p->state_unix_ms);
}

static int part_insert(struct ctl_store *s, const struct ctl_part_rec *p)
{
	sqlite3_stmt *st = s->st[ST_PART_INSERT];
	char device[16];
	int rc;

	bind_text(st, 1, p->name);
	bind_text(st, 2, p->image);
	sqlite3_bind_int64(st, 3, p->vcpus);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)p->memory_bytes);
	bind_text(st, 5, p->group);
	sqlite3_bind_int(st, 6, p->restart);
	sqlite3_bind_int64(st, 7, p->nargs);
	/* A zero-length blob, not NULL: the pointer is never NULL. */
	sqlite3_bind_blob(st, 8, p->args, (int)p->args_len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 9, p->created_unix_ms);
	bind_part_status(st, p, 10);
	rc = run(s, st, "inserting partition", -EEXIST, 0);

	st = s->st[ST_PART_ATTACH];
	for (unsigned i = 0; !rc && i < p->nvolumes; i++) {
		snprintf(device, sizeof(device), "disk%u", i);
		bind_text(st, 1, p->name);
		bind_text(st, 2, device);
		bind_text(st, 3, p->volumes[i]);
		/* UNIQUE (volume): attached elsewhere, or twice here. */
		rc = run(s, st, "attaching volume", -EBUSY, -ENOENT);
	}
	return rc;
}

int ctl_store_part_insert(struct ctl_store *s, const struct ctl_part_rec *p)
{
	int rc;

	if (p->nvolumes > CTL_MAX_VOLUMES || p->args_len > CTL_ARGS_MAX)
		return -EINVAL;
	rc = sp_begin(s);
	if (rc)
		return rc;
	return sp_end(s, part_insert(s, p));
}

int ctl_store_part_update(struct ctl_store *s, const struct ctl_part_rec *p)
{
	bind_part_status(s->st[ST_PART_UPDATE], p, 2);
	return change_by_name(s, s->st[ST_PART_UPDATE], p->name, "updating partition", 0);
}

int ctl_store_part_delete(struct ctl_store *s, const char *name)
{
	return change_by_name(s, s->st[ST_PART_DELETE], name, "deleting partition", 0);
}

/* Fills the spec and status of a partition from a PART_SELECT row. */
static void part_fill(sqlite3_stmt *st, struct ctl_part_rec *p)
{
	const void *args;
	int len;

	memset(p, 0, sizeof(*p));
	col_text(st, 0, p->name, sizeof(p->name));
	col_text(st, 1, p->image, sizeof(p->image));
	p->vcpus = (uint32_t)sqlite3_column_int64(st, 2);
	p->memory_bytes = (uint64_t)sqlite3_column_int64(st, 3);
	col_text(st, 4, p->group, sizeof(p->group));
	p->restart = sqlite3_column_int(st, 5);
	p->nargs = (unsigned)sqlite3_column_int64(st, 6);
	args = sqlite3_column_blob(st, 7);
	len = sqlite3_column_bytes(st, 7);
	if (args && len > 0) {
		/* Only ever written from a rec, so it fits. */
		p->args_len = (size_t)len < sizeof(p->args) ? (size_t)len : sizeof(p->args);
		memcpy(p->args, args, p->args_len);
	}
	p->created_unix_ms = sqlite3_column_int64(st, 8);
	p->desired_running = sqlite3_column_int(st, 9) != 0;
	p->state = sqlite3_column_int(st, 10);
	col_text(st, 11, p->node, sizeof(p->node));
	p->epoch = (uint64_t)sqlite3_column_int64(st, 12);
	p->exit_status = sqlite3_column_int(st, 13);
	col_text(st, 14, p->reason, sizeof(p->reason));
	p->restarts = (uint32_t)sqlite3_column_int64(st, 15);
	p->state_unix_ms = sqlite3_column_int64(st, 16);
}

/*
 * Folds the rows of PART_SELECT (ordered by name, then device) into one
 * record per partition and hands each to cb once its last row is read.
 * Returns cb's first non-zero value, or -EIO. Resets st.
 */
static int part_rows(struct ctl_store *s, sqlite3_stmt *st, ctl_store_part_cb cb, void *arg)
{
	struct ctl_part_rec p;
	const char *name;
	bool have = false;
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		name = (const char *)sqlite3_column_text(st, 0);
		if (!have || strcmp(p.name, name ? name : "") != 0) {
			if (have && (ret = cb(&p, arg)) != 0)
				break;
			part_fill(st, &p);
			have = true;
		}
		if (sqlite3_column_type(st, 17) != SQLITE_NULL && p.nvolumes < CTL_MAX_VOLUMES)
			col_text(st, 17, p.volumes[p.nvolumes++], sizeof(p.volumes[0]));
	}
	if (!ret) {
		if (rc != SQLITE_DONE)
			ret = db_fail(s, "reading partitions");
		else if (have)
			ret = cb(&p, arg);
	}
	sqlite3_reset(st);
	return ret;
}

static int part_copy(const struct ctl_part_rec *p, void *arg)
{
	memcpy(arg, p, sizeof(*p));
	return 1;
}

int ctl_store_part_get(struct ctl_store *s, const char *name, struct ctl_part_rec *out)
{
	int rc;

	bind_text(s->st[ST_PART_GET], 1, name);
	rc = part_rows(s, s->st[ST_PART_GET], part_copy, out);
	return rc == 1 ? 0 : rc ? rc : -ENOENT;
}

int ctl_store_part_foreach(struct ctl_store *s, ctl_store_part_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;

	/* One pass over partitions joined with their attachments, not a
	 * query per partition: listing 10,000 stays one statement. */
	if (sqlite3_prepare_v2(s->db, PART_SELECT PART_ORDER, -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "listing partitions");
	rc = part_rows(s, st, cb, arg);
	sqlite3_finalize(st);
	return rc;
}

/* ---- placement decisions -------------------------------------------------- */

static int placement_add(struct ctl_store *s, const struct ctl_placement_rec *r)
{
	sqlite3_stmt *st = s->st[ST_PL_INSERT];
	int rc;

	bind_text(st, 1, r->partition);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)r->epoch);
	bind_text(st, 3, r->node);
	bind_text(st, 4, r->policy);
	bind_text(st, 5, r->trigger);
	sqlite3_bind_int64(st, 6, r->decided_unix_ms);
	bind_text(st, 7, r->verdicts);
	rc = run(s, st, "storing placement", 0, -ENOENT);
	if (rc)
		return rc;
	st = s->st[ST_PL_TRIM];
	bind_text(st, 1, r->partition);
	sqlite3_bind_int(st, 2, PLACEMENTS_KEPT);
	return run(s, st, "trimming placements", 0, 0);
}

int ctl_store_placement_add(struct ctl_store *s, const struct ctl_placement_rec *r)
{
	int rc = sp_begin(s);

	if (rc)
		return rc;
	return sp_end(s, placement_add(s, r));
}

int ctl_store_placement_last(struct ctl_store *s, const char *partition,
			     struct ctl_placement_rec *out)
{
	sqlite3_stmt *st = s->st[ST_PL_LAST];
	const unsigned char *verdicts;
	int rc;

	memset(out, 0, sizeof(*out));
	bind_text(st, 1, partition);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else if (rc != SQLITE_ROW) {
		rc = db_fail(s, "reading placement");
	} else {
		snprintf(out->partition, sizeof(out->partition), "%s", partition);
		out->epoch = (uint64_t)sqlite3_column_int64(st, 0);
		col_text(st, 1, out->node, sizeof(out->node));
		col_text(st, 2, out->policy, sizeof(out->policy));
		col_text(st, 3, out->trigger, sizeof(out->trigger));
		out->decided_unix_ms = sqlite3_column_int64(st, 4);
		verdicts = sqlite3_column_text(st, 5);
		out->verdicts = strdup(verdicts ? (const char *)verdicts : "");
		rc = out->verdicts ? 0 : -ENOMEM;
	}
	sqlite3_reset(st);
	return rc;
}

void ctl_placement_rec_free(struct ctl_placement_rec *r)
{
	if (!r)
		return;
	free(r->verdicts);
	r->verdicts = NULL;
}

/* ---- event log ------------------------------------------------------------ */

static int event_add(struct ctl_store *s, const char *kind, const char *subject,
		     const char *message)
{
	sqlite3_stmt *st = s->st[ST_EV_INSERT];
	int64_t id;
	int rc;

	sqlite3_bind_int64(st, 1, fab_unix_ms());
	bind_text(st, 2, kind);
	bind_text(st, 3, subject);
	bind_text(st, 4, message);
	rc = run(s, st, "storing event", 0, 0);
	if (rc)
		return rc;
	/* Ids are consecutive, so trimming at every EVENTS_TRIM-th one bounds
	 * the log at EVENTS_KEPT + EVENTS_TRIM - 1 for one indexed range
	 * delete per EVENTS_TRIM appends. */
	id = sqlite3_last_insert_rowid(s->db);
	if (id % EVENTS_TRIM != 0 || id <= EVENTS_KEPT)
		return 0;
	sqlite3_bind_int64(s->st[ST_EV_TRIM], 1, id - EVENTS_KEPT);
	return run(s, s->st[ST_EV_TRIM], "trimming events", 0, 0);
}

int ctl_store_event_add(struct ctl_store *s, const char *kind, const char *subject,
			const char *message)
{
	int rc = sp_begin(s);

	if (rc)
		return rc;
	return sp_end(s, event_add(s, kind, subject, message));
}

int ctl_store_event_last_id(struct ctl_store *s, int64_t *id)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(id), 0) FROM events", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_fail(s, "reading the last event");
	*id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return 0;
}

int ctl_store_event_foreach(struct ctl_store *s, int64_t after_id, unsigned limit,
			    ctl_store_event_cb cb, void *arg)
{
	struct ctl_event_rec e;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT id, unix_ms, kind, subject, message FROM events"
			       " WHERE id > ?1 ORDER BY id LIMIT ?2",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "listing events");
	sqlite3_bind_int64(st, 1, after_id);
	sqlite3_bind_int64(st, 2, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&e, 0, sizeof(e));
		e.id = sqlite3_column_int64(st, 0);
		e.unix_ms = sqlite3_column_int64(st, 1);
		col_text(st, 2, e.kind, sizeof(e.kind));
		col_text(st, 3, e.subject, sizeof(e.subject));
		col_text(st, 4, e.message, sizeof(e.message));
		ret = cb(&e, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "listing events");
	sqlite3_finalize(st);
	return ret;
}

/* ---- migrations ------------------------------------------------------------ */

static void bind_migration(sqlite3_stmt *st, const struct ctl_migration_rec *m, bool all)
{
	sqlite3_bind_int64(st, 1, (sqlite3_int64)m->id);
	sqlite3_bind_int(st, 5, m->phase);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)m->epoch_to);
	sqlite3_bind_int64(st, 12, m->rounds);
	sqlite3_bind_int64(st, 13, (sqlite3_int64)m->ram_bytes);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)m->bytes_sent);
	sqlite3_bind_int64(st, 15, (sqlite3_int64)m->downtime_us);
	bind_text(st, 16, m->error);
	sqlite3_bind_int64(st, 18, m->ended_unix_ms);
	if (!all)
		return;
	bind_text(st, 2, m->partition);
	bind_text(st, 3, m->source);
	bind_text(st, 4, m->target);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)m->epoch_from);
	bind_text(st, 8, m->trigger);
	sqlite3_bind_int64(st, 9, m->downtime_ms);
	sqlite3_bind_int64(st, 10, m->max_rounds);
	sqlite3_bind_int(st, 11, m->throttle);
	sqlite3_bind_int64(st, 17, m->started_unix_ms);
}

static bool phase_ok(int phase)
{
	return phase >= CTL_MIG_PREPARE && phase <= CTL_MIG_ABORTED;
}

static int migration_insert(struct ctl_store *s, struct ctl_migration_rec *m)
{
	sqlite3_stmt *st = s->st[ST_MIG_INSERT];
	int rc;

	sqlite3_clear_bindings(st);
	bind_migration(st, m, true);
	rc = run(s, st, "inserting migration", 0, 0);
	if (rc)
		return rc;
	m->id = (uint64_t)sqlite3_last_insert_rowid(s->db);
	sqlite3_bind_int(s->st[ST_MIG_TRIM], 1, MIGRATIONS_KEPT);
	return run(s, s->st[ST_MIG_TRIM], "trimming migrations", 0, 0);
}

int ctl_store_migration_insert(struct ctl_store *s, struct ctl_migration_rec *m)
{
	int rc;

	if (!phase_ok(m->phase))
		return -EINVAL;
	rc = sp_begin(s);
	if (rc)
		return rc;
	return sp_end(s, migration_insert(s, m));
}

int ctl_store_migration_update(struct ctl_store *s, const struct ctl_migration_rec *m)
{
	sqlite3_stmt *st = s->st[ST_MIG_UPDATE];
	int rc;

	if (!phase_ok(m->phase))
		return -EINVAL;
	sqlite3_clear_bindings(st);
	bind_migration(st, m, false);
	rc = run(s, st, "updating migration", 0, 0);
	if (rc)
		return rc;
	return sqlite3_changes(s->db) ? 0 : -ENOENT;
}

static void migration_fill(sqlite3_stmt *st, struct ctl_migration_rec *m)
{
	memset(m, 0, sizeof(*m));
	m->id = (uint64_t)sqlite3_column_int64(st, 0);
	col_text(st, 1, m->partition, sizeof(m->partition));
	col_text(st, 2, m->source, sizeof(m->source));
	col_text(st, 3, m->target, sizeof(m->target));
	m->phase = sqlite3_column_int(st, 4);
	m->epoch_from = (uint64_t)sqlite3_column_int64(st, 5);
	m->epoch_to = (uint64_t)sqlite3_column_int64(st, 6);
	col_text(st, 7, m->trigger, sizeof(m->trigger));
	m->downtime_ms = (uint32_t)sqlite3_column_int64(st, 8);
	m->max_rounds = (uint32_t)sqlite3_column_int64(st, 9);
	m->throttle = sqlite3_column_int(st, 10) != 0;
	m->rounds = (uint32_t)sqlite3_column_int64(st, 11);
	m->ram_bytes = (uint64_t)sqlite3_column_int64(st, 12);
	m->bytes_sent = (uint64_t)sqlite3_column_int64(st, 13);
	m->downtime_us = (uint64_t)sqlite3_column_int64(st, 14);
	col_text(st, 15, m->error, sizeof(m->error));
	m->started_unix_ms = sqlite3_column_int64(st, 16);
	m->ended_unix_ms = sqlite3_column_int64(st, 17);
}

/* Rows of MIG_SELECT into cb; cb's first non-zero value, or -EIO. */
static int migration_rows(struct ctl_store *s, sqlite3_stmt *st, ctl_store_migration_cb cb,
			  void *arg)
{
	struct ctl_migration_rec m;
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		migration_fill(st, &m);
		ret = cb(&m, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_fail(s, "reading migrations");
	sqlite3_reset(st);
	return ret;
}

static int migration_copy(const struct ctl_migration_rec *m, void *arg)
{
	memcpy(arg, m, sizeof(*m));
	return 1;
}

int ctl_store_migration_get(struct ctl_store *s, uint64_t id, struct ctl_migration_rec *out)
{
	int rc;

	sqlite3_bind_int64(s->st[ST_MIG_GET], 1, (sqlite3_int64)id);
	rc = migration_rows(s, s->st[ST_MIG_GET], migration_copy, out);
	return rc == 1 ? 0 : rc ? rc : -ENOENT;
}

int ctl_store_migration_foreach(struct ctl_store *s, const char *partition, bool active_only,
				ctl_store_migration_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db,
			       MIG_SELECT " WHERE (?1 IS NULL OR partition = ?1)"
					  " AND (?2 = 0 OR phase NOT IN (5, 6)) ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "listing migrations");
	if (partition)
		bind_text(st, 1, partition);
	sqlite3_bind_int(st, 2, active_only);
	rc = migration_rows(s, st, cb, arg);
	sqlite3_finalize(st);
	return rc;
}

int ctl_store_migration_last(struct ctl_store *s, const char *partition,
			     struct ctl_migration_rec *out)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, MIG_SELECT " WHERE partition = ?1 ORDER BY id DESC LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(s, "reading migrations");
	bind_text(st, 1, partition);
	rc = migration_rows(s, st, migration_copy, out);
	sqlite3_finalize(st);
	return rc == 1 ? 0 : rc ? rc : -ENOENT;
}
