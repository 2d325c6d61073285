// ledger_migrate: upgrading a ledger file written by an older Waggle to
// the schema this code runs (ledger.h, "Schema versions").
//
// Owns the steps (the copy saved before an upgrade, "<path>.v<N>.bak", is
// made by ledger_backup.c through SQLite's backup API): one
// transaction per version, holding the step's SQL (ledger__migrations in
// ledger_schema.c) and the version bump, so a file is always at exactly
// one version and a failed step leaves it at the one before.
//
// Runs at open only, after the writer's lock is taken and before any
// statement is prepared (the statements are written for the new schema).
// It never creates a ledger (ledger.c does) and never downgrades one.
#include "broker/ledger_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LOG "broker.ledger"

// Runs sql; on failure puts SQLite's message in why.
static int
s_exec(ledger_t *self, const char *sql, char *why, size_t whylen)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(why, whylen, "%s", msg ? msg : sqlite3_errmsg(self->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

// The version bump, a compare-and-set on the version the step was written
// for, and an event saying so.  Open has no now_ms to give, so the event's
// time is SQLite's clock.
static int
s_bump(ledger_t *self, int v, char *why, size_t whylen)
{
    char *bump = xasprintf("UPDATE meta SET value = %d WHERE key ="
                           " 'schema_version' AND value = %d", v + 1, v);
    char *event = xasprintf("INSERT INTO events (at_ms, actor, kind, detail)"
                            " VALUES (CAST((julianday('now') - 2440587.5)"
                            " * 86400000 AS INTEGER), 'broker', 'upgrade',"
                            " 'schema version %d to %d')", v, v + 1);
    int rc = s_exec(self, bump, why, whylen);
    if (rc == 0 && sqlite3_changes(self->db) != 1) {
        snprintf(why, whylen, "the schema version changed underneath");
        rc = -1;
    }
    if (rc == 0) {
        rc = s_exec(self, event, why, whylen);
    }
    free(event);
    free(bump);
    return rc;
}

// A step that rewrote sqlite_schema itself (writable_schema) must change
// the schema cookie, or this connection and any reader keep the schema
// they parsed before.  One more than the old value, as SQLite's docs say;
// harmless after a step whose ALTER TABLE already changed it.
static int
s_cookie_bump(ledger_t *self, char *why, size_t whylen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db, "PRAGMA schema_version", -1, &st,
                                NULL);
    long long cookie = -1;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        cookie = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (cookie < 0) {
        snprintf(why, whylen, "cannot read the schema version: %s",
                 sqlite3_errmsg(self->db));
        return -1;
    }
    char *set = xasprintf("PRAGMA schema_version = %lld", cookie + 1);
    rc = s_exec(self, set, why, whylen);
    free(set);
    return rc;
}

// Version v to v + 1 in one transaction.
static int
s_step(ledger_t *self, int v, char *why, size_t whylen)
{
    if (s_exec(self, "BEGIN IMMEDIATE", why, whylen) != 0) {
        return -1;
    }
    int rc = s_exec(self, ledger__migrations[v], why, whylen);
    if (rc == 0) {
        rc = s_cookie_bump(self, why, whylen);
    }
    if (rc == 0) {
        rc = s_bump(self, v, why, whylen);
    }
    if (rc == 0) {
        rc = s_exec(self, "COMMIT", why, whylen);
    }
    if (rc != 0 && !sqlite3_get_autocommit(self->db)) {
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

int
ledger__migrate(ledger_t *self, int from, char *err, size_t errlen)
{
    if (from < 1 || from >= LEDGER_SCHEMA_VERSION) {
        snprintf(err, errlen, "ledger '%s' has schema version %d; this "
                 "broker can upgrade versions 1 to %d", self->path, from,
                 LEDGER_SCHEMA_VERSION - 1);
        return -1;
    }
    char *bak = xasprintf("%s.v%d.bak", self->path, from);
    int rc = ledger__save_copy(self, bak, NULL, NULL, err, errlen);
    if (rc == 0) {
        log_info(S_LOG, "ledger '%s' has schema version %d; upgrading it to "
                 "%d; a copy of it as it was is in '%s'", self->path, from,
                 LEDGER_SCHEMA_VERSION, bak);
    }
    for (int v = from; rc == 0 && v < LEDGER_SCHEMA_VERSION; v++) {
        char why[256];
        rc = s_step(self, v, why, sizeof why);
        if (rc != 0) {
            snprintf(err, errlen, "cannot upgrade ledger '%s' from schema "
                     "version %d to %d: %s; it is still at version %d (a "
                     "copy from before the upgrade is in '%s')", self->path,
                     v, v + 1, why, v, bak);
        } else {
            log_info(S_LOG, "ledger '%s': upgraded from schema version %d "
                     "to %d", self->path, v, v + 1);
        }
    }
    free(bak);
    return rc;
}
