// ledger: the broker's durable state in SQLite (ledger.h has the task
// lifecycle, its invariants and the contract of every function).
//
// Owns the one database connection, the lock file that makes this process
// the ledger's only writer, and a cache of prepared statements.  The schema
// enforces what it can of ledger.h's invariants itself (CHECK constraints,
// partial unique indexes, an append-only trigger on events) so that a bug
// elsewhere fails a turn instead of corrupting the ledger.  Every
// compare-and-set is in an UPDATE's WHERE clause, never in a read before it.
//
// This file never decides which transition to make (that is sched.c's and
// broker.c's business), never reads a clock, and is the only code in Waggle
// that includes <sqlite3.h>.
#include "broker/ledger.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define S_LOG "broker.ledger"
#define S_BUSY_TIMEOUT_MS 5000

// Version 1.  Task and plan states are stored as their lowercase names so
// the file reads well in the sqlite3 shell.  meta.value has no declared type
// (BLOB affinity) so a hex id that looks like a number stays text.
static const char s_schema[] =
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value"
    ") WITHOUT ROWID;"
    "CREATE TABLE plans ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  goal TEXT,"
    "  state TEXT NOT NULL CHECK (state IN"
    "    ('running', 'succeeded', 'failed', 'cancelled')),"
    "  submitted_by TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER,"
    "  workplan_json TEXT NOT NULL,"
    "  workplan_hash TEXT NOT NULL"
    ");"
    "CREATE INDEX plans_state ON plans (state);"
    "CREATE TABLE tasks ("
    "  plan_id INTEGER NOT NULL REFERENCES plans (id),"
    "  tid TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('waiting', 'ready', 'leased',"
    "    'awaiting_approval', 'succeeded', 'dead', 'rejected', 'blocked',"
    "    'cancelled')),"
    "  attempts_used INTEGER NOT NULL DEFAULT 0,"
    "  not_before_ms INTEGER NOT NULL DEFAULT 0,"
    "  lease_token INTEGER,"
    "  lease_instance TEXT,"
    "  lease_holder TEXT,"
    "  lease_start_ms INTEGER,"
    "  accepted_attempt INTEGER,"
    "  last_exit_code INTEGER,"
    "  last_error TEXT,"
    "  last_drone TEXT,"
    "  PRIMARY KEY (plan_id, tid),"
    // Invariant 1, the part a row can check.
    "  CHECK ((state = 'leased') = (lease_token IS NOT NULL"
    "    AND lease_instance IS NOT NULL AND lease_holder IS NOT NULL))"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX tasks_seq ON tasks (plan_id, seq);"
    "CREATE INDEX tasks_state ON tasks (plan_id, state);"
    "CREATE TABLE edges ("
    "  plan_id INTEGER NOT NULL,"
    "  tid TEXT NOT NULL,"
    "  ord INTEGER NOT NULL,"
    "  need TEXT NOT NULL,"
    "  PRIMARY KEY (plan_id, tid, ord),"
    "  FOREIGN KEY (plan_id, tid) REFERENCES tasks (plan_id, tid),"
    "  FOREIGN KEY (plan_id, need) REFERENCES tasks (plan_id, tid)"
    ") WITHOUT ROWID;"
    "CREATE TABLE attempts ("
    "  plan_id INTEGER NOT NULL,"
    "  tid TEXT NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  token INTEGER NOT NULL UNIQUE,"
    "  instance TEXT NOT NULL,"
    "  holder TEXT NOT NULL,"
    "  started_ms INTEGER NOT NULL,"
    "  ended_ms INTEGER,"
    "  outcome TEXT NOT NULL DEFAULT 'running' CHECK (outcome IN ('running',"
    "    'succeeded', 'failed', 'expired', 'released', 'cancelled')),"
    "  exit_code INTEGER,"
    "  signal INTEGER,"
    "  timed_out INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  stdout BLOB,"
    "  stdout_truncated INTEGER NOT NULL DEFAULT 0,"
    "  stderr BLOB,"
    "  stderr_truncated INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (plan_id, tid, n),"
    "  FOREIGN KEY (plan_id, tid) REFERENCES tasks (plan_id, tid)"
    ");"
    // Invariants 1 and 5: one open attempt per task, one accepted result.
    "CREATE UNIQUE INDEX attempts_running ON attempts (plan_id, tid)"
    "  WHERE outcome = 'running';"
    "CREATE UNIQUE INDEX attempts_succeeded ON attempts (plan_id, tid)"
    "  WHERE outcome = 'succeeded';"
    "CREATE TABLE drones ("
    "  instance TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  host TEXT,"
    "  slots INTEGER NOT NULL,"
    "  tags TEXT,"
    "  first_seen_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE idempotency ("
    "  submitter TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  plan_id INTEGER NOT NULL REFERENCES plans (id),"
    "  hash TEXT NOT NULL,"
    "  PRIMARY KEY (submitter, key)"
    ") WITHOUT ROWID;"
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at_ms INTEGER NOT NULL,"
    "  plan_id INTEGER,"
    "  tid TEXT,"
    "  actor TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  from_state TEXT,"
    "  to_state TEXT,"
    "  token INTEGER,"
    "  detail TEXT"
    ");"
    "CREATE INDEX events_plan ON events (plan_id, seq);"
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN"
    "  SELECT RAISE (ABORT, 'events are append-only'); END;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN"
    "  SELECT RAISE (ABORT, 'events are append-only'); END;";

// Every statement the ledger runs after open, prepared once at open.
typedef enum {
    Q_META_GET,
    Q_META_SET,
    Q_EVENT,
    Q_TASK_MOVE,
    Q_TASK_RESET,
    Q_LEASE,
    Q_TOKEN_NEXT,
    Q_ATTEMPT_START,
    Q_FINISH,
    Q_ATTEMPT_END,
    Q_TOKEN_LOOKUP,
    Q_OUTPUT,
    Q_PLAN_INSERT,
    Q_TASK_INSERT,
    Q_EDGE_INSERT,
    Q_IDEM_INSERT,
    Q_IDEM_GET,
    Q_PLAN_MOVE,
    Q_PLAN_STATE,
    Q_PLANS,
    Q_PLAN_ONE,
    Q_PLAN_COUNTS,
    Q_TASK_COUNT,
    Q_TASKS,
    Q_NEEDS,
    Q_ATTEMPTS,
    Q_DRONE,
    Q_LOAD_PLANS,
    Q_LOAD_TASKS,
    Q_LOAD_PLAN,
    Q_LOAD_PLAN_TASKS,
    Q_ATTEMPTS_USED,
    Q_EVENTS_ALL,
    Q_EVENTS_PLAN,
    Q__COUNT
} s_query_t;

static const char *const s_sql[Q__COUNT] = {
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_SET] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [Q_EVENT] = "INSERT INTO events (at_ms, plan_id, tid, actor, kind,"
                " from_state, to_state, token, detail) VALUES (?1,"
                " nullif(?2, 0), ?3, ?4, ?5, ?6, ?7, nullif(?8, 0), ?9)",
    [Q_TASK_MOVE] = "UPDATE tasks SET state = ?4"
                    " WHERE plan_id = ?1 AND tid = ?2 AND state = ?3",
    [Q_TASK_RESET] = "UPDATE tasks SET state = ?4, attempts_used = 0,"
                     " not_before_ms = 0"
                     " WHERE plan_id = ?1 AND tid = ?2 AND state = ?3",
    // The token is the counter's current value; Q_TOKEN_NEXT then bumps it
    // in the same transaction, and only when this CAS hit.
    [Q_LEASE] = "UPDATE tasks SET state = 'leased', lease_token ="
                " (SELECT value FROM meta WHERE key = 'next_token'),"
                " lease_instance = ?3, lease_holder = ?4, lease_start_ms = ?5"
                " WHERE plan_id = ?1 AND tid = ?2 AND state = 'ready'"
                " AND not_before_ms <= ?5",
    [Q_TOKEN_NEXT] = "UPDATE meta SET value = value + 1"
                     " WHERE key = 'next_token' RETURNING value - 1",
    [Q_ATTEMPT_START] = "INSERT INTO attempts (plan_id, tid, n, token,"
                        " instance, holder, started_ms)"
                        " SELECT ?1, ?2, coalesce(max(n), 0) + 1, ?3, ?4,"
                        " ?5, ?6 FROM attempts"
                        " WHERE plan_id = ?1 AND tid = ?2 RETURNING n",
    // ?7 is 1 when the outcome uses an attempt of the budget; only those
    // attempts are what status shows as the last run.
    [Q_FINISH] = "UPDATE tasks SET state = ?5, lease_token = NULL,"
                 " lease_instance = NULL, lease_holder = NULL,"
                 " lease_start_ms = NULL, not_before_ms = ?6,"
                 " attempts_used = attempts_used + ?7,"
                 " accepted_attempt = CASE WHEN ?5 = 'succeeded' THEN"
                 " (SELECT n FROM attempts WHERE token = ?3)"
                 " ELSE accepted_attempt END,"
                 " last_exit_code = iif(?7, ?8, last_exit_code),"
                 " last_error = iif(?7, ?9, last_error),"
                 " last_drone = iif(?7, lease_holder, last_drone)"
                 " WHERE plan_id = ?1 AND tid = ?2 AND state = 'leased'"
                 " AND lease_token = ?3"
                 " AND (?4 IS NULL OR lease_instance = ?4)",
    [Q_ATTEMPT_END] = "UPDATE attempts SET outcome = ?2, ended_ms = ?3,"
                      " exit_code = ?4, signal = ?5, timed_out = ?6,"
                      " error = ?7, stdout = ?8, stdout_truncated = ?9,"
                      " stderr = ?10, stderr_truncated = ?11"
                      " WHERE token = ?1 AND outcome = 'running' RETURNING n",
    [Q_TOKEN_LOOKUP] = "SELECT plan_id, tid, outcome FROM attempts"
                       " WHERE token = ?1",
    [Q_OUTPUT] = "SELECT n, iif(?4, stderr, stdout),"
                 " iif(?4, stderr_truncated, stdout_truncated)"
                 " FROM attempts WHERE plan_id = ?1 AND tid = ?2 AND n ="
                 " iif(?3 > 0, ?3, coalesce((SELECT accepted_attempt"
                 " FROM tasks WHERE plan_id = ?1 AND tid = ?2),"
                 " (SELECT max(n) FROM attempts WHERE plan_id = ?1"
                 " AND tid = ?2 AND outcome <> 'running')))",
    [Q_PLAN_INSERT] = "INSERT INTO plans (name, goal, state, submitted_by,"
                      " created_ms, workplan_json, workplan_hash)"
                      " VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6)",
    [Q_TASK_INSERT] = "INSERT INTO tasks (plan_id, tid, seq, kind, state)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_EDGE_INSERT] = "INSERT INTO edges (plan_id, tid, ord, need)"
                      " VALUES (?1, ?2, ?3, ?4)",
    [Q_IDEM_INSERT] = "INSERT INTO idempotency (submitter, key, plan_id,"
                      " hash) VALUES (?1, ?2, ?3, ?4)",
    [Q_IDEM_GET] = "SELECT plan_id, hash FROM idempotency"
                   " WHERE submitter = ?1 AND key = ?2",
    [Q_PLAN_MOVE] = "UPDATE plans SET state = ?3,"
                    " finished_ms = iif(?3 = 'running', NULL, ?4)"
                    " WHERE id = ?1 AND state = ?2",
    [Q_PLAN_STATE] = "SELECT state FROM plans WHERE id = ?1",
    [Q_PLANS] = "SELECT id, name, state, submitted_by, created_ms,"
                " finished_ms FROM plans ORDER BY id DESC LIMIT ?1",
    [Q_PLAN_ONE] = "SELECT id, name, state, submitted_by, created_ms,"
                   " finished_ms FROM plans WHERE id = ?1",
    [Q_PLAN_COUNTS] = "SELECT state, count(*) FROM tasks WHERE plan_id = ?1"
                      " GROUP BY state",
    [Q_TASK_COUNT] = "SELECT count(*) FROM tasks WHERE plan_id = ?1",
    [Q_TASKS] = "SELECT tid, state, kind, attempts_used,"
                " coalesce(lease_holder, last_drone), last_exit_code,"
                " last_error FROM tasks WHERE plan_id = ?1 ORDER BY seq",
    [Q_NEEDS] = "SELECT t.seq, e.need FROM edges e JOIN tasks t"
                " ON t.plan_id = e.plan_id AND t.tid = e.tid"
                " WHERE e.plan_id = ?1 ORDER BY t.seq, e.ord",
    [Q_ATTEMPTS] = "SELECT plan_id, tid, n, token, instance, holder, outcome,"
                   " started_ms, ended_ms, exit_code, error FROM attempts"
                   " WHERE plan_id = ?1 AND (?2 IS NULL OR tid = ?2)"
                   " ORDER BY token",
    [Q_DRONE] = "INSERT INTO drones (instance, name, host, slots, tags,"
                " first_seen_ms, last_seen_ms)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                " ON CONFLICT (instance) DO UPDATE SET name = excluded.name,"
                " host = excluded.host, slots = excluded.slots,"
                " tags = excluded.tags, last_seen_ms = excluded.last_seen_ms",
    [Q_LOAD_PLANS] = "SELECT id, workplan_json FROM plans"
                     " WHERE state = 'running' ORDER BY id",
#define S_LOAD_TASK_COLS                                                     \
    "SELECT t.plan_id, t.tid, t.state, t.lease_token, t.lease_instance,"     \
    " t.lease_holder, t.lease_start_ms, t.not_before_ms, t.attempts_used,"   \
    " (SELECT count(*) FROM attempts a"                                      \
    " WHERE a.plan_id = t.plan_id AND a.tid = t.tid)"
    [Q_LOAD_TASKS] = S_LOAD_TASK_COLS
                     " FROM plans p JOIN tasks t ON t.plan_id = p.id"
                     " WHERE p.state = 'running' ORDER BY p.id, t.seq",
    [Q_LOAD_PLAN] = "SELECT id, workplan_json FROM plans WHERE id = ?1",
    [Q_LOAD_PLAN_TASKS] = S_LOAD_TASK_COLS " FROM tasks t"
                          " WHERE t.plan_id = ?1 ORDER BY t.seq",
    [Q_ATTEMPTS_USED] = "SELECT attempts_used FROM tasks"
                        " WHERE plan_id = ?1 AND tid = ?2",
#define S_EVENT_COLS                                                         \
    "SELECT seq, at_ms, tid, actor, kind, from_state, to_state, token,"      \
    " detail FROM events"
    [Q_EVENTS_ALL] = S_EVENT_COLS " WHERE seq > ?1 ORDER BY seq",
    [Q_EVENTS_PLAN] = S_EVENT_COLS " WHERE plan_id = ?2 AND seq > ?1"
                      " ORDER BY seq",
};

static const char *const s_plan_names[] = {
    [LEDGER_PLAN_RUNNING] = "running",
    [LEDGER_PLAN_SUCCEEDED] = "succeeded",
    [LEDGER_PLAN_FAILED] = "failed",
    [LEDGER_PLAN_CANCELLED] = "cancelled",
};

static const char *const s_outcome_names[] = {
    [LEDGER_ATTEMPT_RUNNING] = "running",
    [LEDGER_ATTEMPT_SUCCEEDED] = "succeeded",
    [LEDGER_ATTEMPT_FAILED] = "failed",
    [LEDGER_ATTEMPT_EXPIRED] = "expired",
    [LEDGER_ATTEMPT_RELEASED] = "released",
    [LEDGER_ATTEMPT_CANCELLED] = "cancelled",
};

#define S_COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct ledger {
    sqlite3 *db;                    // the one connection
    char *path;                     // database file, for messages
    int lock_fd;                    // path + ".lock", flock'ed; -1 if RDONLY
    bool rdonly;                    // LEDGER_RDONLY: no turns
    bool in_turn;                   // between ledger_begin and commit
    bool turn_failed;               // a LEDGER_ERROR in this turn
    bool fail_next_commit;          // test seam: next commit fails
    char id[33];                    // random hex id made at creation
    sqlite3_stmt *stmt[Q__COUNT];   // prepared at open, reset after use
};

// One events row; see ledger_event().
typedef struct {
    int64_t at_ms;
    int64_t plan;                   // 0: not about a plan
    const char *task;
    const char *actor;
    const char *kind;
    const char *from, *to;          // state names, or NULL
    uint64_t token;                 // 0: none
    const char *detail;
} s_event_t;

// --- the SQLite edge ---------------------------------------------------

// An error ends the turn (ledger.h): a transition of several statements
// may have made only some of them, so the commit will refuse it.
static ledger_rc_t
s_broken(ledger_t *self, const char *op, const char *why)
{
    log_error(S_LOG, "ledger '%s': %s: %s", self->path, op, why);
    self->turn_failed = self->in_turn;
    return LEDGER_ERROR;
}

// Logs SQLite's own message once, here where it is still known.
static ledger_rc_t
s_fail(ledger_t *self, const char *op)
{
    return s_broken(self, op, sqlite3_errmsg(self->db));
}

// Binders.  They can fail only on a programming error (a bad index) or a
// value over SQLite's 1 GB limit, which the wire limits rule out.
static void
s_int(sqlite3_stmt *st, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(st, i, v);
    assert(rc == SQLITE_OK);
    (void) rc;
}

static void
s_text(sqlite3_stmt *st, int i, const char *s)
{
    int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
               : sqlite3_bind_null(st, i);
    assert(rc == SQLITE_OK);
    (void) rc;
}

static const char *
s_col_text(sqlite3_stmt *st, int i)
{
    return (const char *) sqlite3_column_text(st, i);
}

static char *
s_col_dup(sqlite3_stmt *st, int i)
{
    const char *s = s_col_text(st, i);
    return s ? xstrdup(s) : NULL;
}

// The cached statement q, ready to bind.
static sqlite3_stmt *
s_stmt(ledger_t *self, s_query_t q)
{
    sqlite3_stmt *st = self->stmt[q];
    // Busy here means a callback re-entered the ledger mid-read.
    assert(!sqlite3_stmt_busy(st));
    sqlite3_clear_bindings(st);
    return st;
}

// Runs a write to completion: LEDGER_OK when it changed exactly one row
// (the compare-and-set hit), LEDGER_MISS when it changed none.
static ledger_rc_t
s_write(ledger_t *self, sqlite3_stmt *st, const char *op)
{
    ledger_rc_t rc = LEDGER_OK;
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = s_fail(self, op);
    } else if (sqlite3_changes(self->db) != 1) {
        rc = LEDGER_MISS;
    }
    sqlite3_reset(st);
    return rc;
}

// Runs a statement that must yield a row (RETURNING, aggregates) and
// returns its first column.  SQLite makes all of a RETURNING statement's
// changes in the first step, so resetting after it loses nothing.
static ledger_rc_t
s_returning(ledger_t *self, sqlite3_stmt *st, const char *op, int64_t *v)
{
    int rc = sqlite3_step(st);
    ledger_rc_t out = LEDGER_OK;
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
    } else if (rc == SQLITE_DONE) {
        out = s_broken(self, op, "no row where one must be");
    } else {
        out = s_fail(self, op);
    }
    sqlite3_reset(st);
    return out;
}

// Ends a read loop: LEDGER_OK when the loop ran to the end.
static ledger_rc_t
s_read_end(ledger_t *self, sqlite3_stmt *st, int rc, const char *op)
{
    ledger_rc_t out = rc == SQLITE_DONE ? LEDGER_OK : s_fail(self, op);
    sqlite3_reset(st);
    return out;
}

// Writes need an open turn.  SQLite rolls a transaction back on its own
// after some errors (disk full, I/O); writing then would commit each
// statement alone, so the rest of that turn is refused.
static bool
s_turn_ok(ledger_t *self, const char *op)
{
    assert(self->in_turn);
    if (!self->in_turn || sqlite3_get_autocommit(self->db)) {
        s_broken(self, op, "the turn was rolled back");
        return false;
    }
    return true;
}

static ledger_rc_t
s_event(ledger_t *self, const s_event_t *ev)
{
    sqlite3_stmt *st = s_stmt(self, Q_EVENT);
    s_int(st, 1, ev->at_ms);
    s_int(st, 2, ev->plan);
    s_text(st, 3, ev->task);
    s_text(st, 4, ev->actor);
    s_text(st, 5, ev->kind);
    s_text(st, 6, ev->from);
    s_text(st, 7, ev->to);
    s_int(st, 8, (int64_t) ev->token);
    s_text(st, 9, ev->detail);
    return s_write(self, st, "append event") == LEDGER_OK ? LEDGER_OK
                                                           : LEDGER_ERROR;
}

static int
s_parse(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            return (int) i;
        }
    }
    return -1;
}

// --- open --------------------------------------------------------------

// Names the process holding the lock, from the pid it wrote there.
static void
s_lock_busy(int fd, const char *path, char *err, size_t errlen)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (pid > 0) {
        snprintf(err, errlen, "ledger '%s' is in use by another broker "
                 "(pid %ld)", path, pid);
    } else {
        // It has locked the file but not yet written its pid.
        snprintf(err, errlen, "ledger '%s' is in use by another broker "
                 "(pid unknown)", path);
    }
}

// Takes the writer's lock and writes our pid into it.  flock() rather than
// fcntl(): its lock belongs to the open file, so a second open in the same
// process is refused too, and closing some other descriptor of the file
// (as SQLite's fcntl locks would) cannot release it.
static int
s_lock(const char *path, char *err, size_t errlen)
{
    char *lock_path = xasprintf("%s.lock", path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open lock file '%s': %s", lock_path,
                 strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            s_lock_busy(fd, path, err, errlen);
        } else {
            snprintf(err, errlen, "cannot lock '%s': %s", lock_path,
                     strerror(errno));
        }
        close(fd);
        fd = -1;
    } else if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file '%s': %s", lock_path,
                 strerror(errno));
        close(fd);
        fd = -1;
    }
    free(lock_path);
    return fd;
}

// Runs sql on the raw connection (open time, before statements exist).
static int
s_exec(ledger_t *self, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_exec(self->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                 sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

// The first column of a one-row query as text into buf ("" if no row).
static int
s_scalar(ledger_t *self, const char *sql, char *buf, size_t buflen,
         char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
    buf[0] = '\0';
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) {
            snprintf(buf, buflen, "%s", s_col_text(st, 0));
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                 sqlite3_errmsg(self->db));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int
s_create(ledger_t *self, char *err, size_t errlen)
{
    unsigned char raw[16];
    char id[33];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(id, sizeof id, raw, sizeof raw);
    char *meta = xasprintf("INSERT INTO meta (key, value) VALUES"
                           " ('schema_version', %d), ('next_token', 1),"
                           " ('ledger_id', '%s');",
                           LEDGER_SCHEMA_VERSION, id);
    int rc = s_exec(self, s_schema, err, errlen);
    if (rc == 0) {
        rc = s_exec(self, meta, err, errlen);
    }
    free(meta);
    return rc;
}

// Creates the schema in an empty file, or checks the one there.
static int
s_schema_check(ledger_t *self, bool rdonly, char *err, size_t errlen)
{
    char buf[64];
    if (s_scalar(self, "SELECT count(*) FROM sqlite_schema WHERE name ="
                 " 'meta'", buf, sizeof buf, err, errlen) != 0) {
        return -1;
    }
    if (strcmp(buf, "0") == 0) {
        if (s_scalar(self, "SELECT count(*) FROM sqlite_schema", buf,
                     sizeof buf, err, errlen) != 0) {
            return -1;
        }
        if (rdonly || strcmp(buf, "0") != 0) {
            snprintf(err, errlen, "'%s' is not a waggle ledger", self->path);
            return -1;
        }
        return s_create(self, err, errlen);
    }
    if (s_scalar(self, "SELECT value FROM meta WHERE key = 'schema_version'",
                 buf, sizeof buf, err, errlen) != 0) {
        return -1;
    }
    long version = strtol(buf, NULL, 10);
    if (version != LEDGER_SCHEMA_VERSION) {
        snprintf(err, errlen, "ledger '%s' has schema version %ld; this "
                 "broker understands version %d%s", self->path, version,
                 LEDGER_SCHEMA_VERSION,
                 version > LEDGER_SCHEMA_VERSION ? " (upgrade waggle)" : "");
        return -1;
    }
    return 0;
}

static int
s_prepare_all(ledger_t *self, char *err, size_t errlen)
{
    for (int q = 0; q < Q__COUNT; q++) {
        assert(s_sql[q]);
        if (sqlite3_prepare_v3(self->db, s_sql[q], -1,
                               SQLITE_PREPARE_PERSISTENT, &self->stmt[q],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                     sqlite3_errmsg(self->db));
            return -1;
        }
    }
    return 0;
}

// Connection settings, then the schema check (or creation) in one
// transaction, so a read-only opener never sees half a schema.
static int
s_setup(ledger_t *self, bool rdonly, char *err, size_t errlen)
{
    char mode[16];
    sqlite3_extended_result_codes(self->db, 1);
    sqlite3_busy_timeout(self->db, S_BUSY_TIMEOUT_MS);
    if (s_exec(self, "PRAGMA foreign_keys = ON", err, errlen) != 0) {
        return -1;
    }
    if (!rdonly) {
        if (s_scalar(self, "PRAGMA journal_mode = WAL", mode, sizeof mode,
                     err, errlen) != 0
            || s_exec(self, "PRAGMA synchronous = FULL", err, errlen) != 0) {
            return -1;
        }
        if (strcmp(mode, "wal") != 0) {
            snprintf(err, errlen, "cannot open ledger '%s': journal mode "
                     "is '%s', not 'wal'", self->path, mode);
            return -1;
        }
    }
    if (s_exec(self, rdonly ? "BEGIN" : "BEGIN IMMEDIATE", err, errlen)
            != 0) {
        return -1;
    }
    if (s_schema_check(self, rdonly, err, errlen) != 0
        || s_scalar(self, "SELECT value FROM meta WHERE key = 'ledger_id'",
                    self->id, sizeof self->id, err, errlen) != 0) {
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return s_exec(self, "COMMIT", err, errlen);
}

int
ledger_open(ledger_t **out, const char *path, unsigned flags, char *err,
            size_t errlen)
{
    assert(out && path && err);
    bool rdonly = flags & LEDGER_RDONLY;
    *out = NULL;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "cannot open ledger '%s': libsodium failed "
                 "to initialise", path);
        return -1;
    }
    ledger_t *self = xcalloc(1, sizeof *self);
    self->path = xstrdup(path);
    self->lock_fd = -1;
    self->rdonly = rdonly;
    if (!rdonly && (self->lock_fd = s_lock(path, err, errlen)) < 0) {
        ledger_destroy(&self);
        return -1;
    }
    // One thread uses the connection, so SQLite's own mutexes are waste.
    int oflags = SQLITE_OPEN_NOMUTEX
                 | (rdonly ? SQLITE_OPEN_READONLY
                           : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &self->db, oflags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", path,
                 self->db ? sqlite3_errmsg(self->db) : "out of memory");
        ledger_destroy(&self);
        return -1;
    }
    if (s_setup(self, rdonly, err, errlen) != 0
        || s_prepare_all(self, err, errlen) != 0) {
        ledger_destroy(&self);
        return -1;
    }
    *out = self;
    return 0;
}

void
ledger_destroy(ledger_t **self_p)
{
    assert(self_p);
    ledger_t *self = *self_p;
    if (!self) {
        return;
    }
    ledger_rollback(self);
    for (int q = 0; q < Q__COUNT; q++) {
        sqlite3_finalize(self->stmt[q]);
    }
    sqlite3_close(self->db);
    // Closing the file releases the flock; the file itself stays, since
    // unlinking it could race with the next broker's open.
    if (self->lock_fd >= 0) {
        close(self->lock_fd);
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

const char *
ledger_id(const ledger_t *self)
{
    assert(self);
    return self->id;
}

int
ledger_test_set_schema_version(ledger_t *self, int version)
{
    assert(self);
    sqlite3_stmt *st = s_stmt(self, Q_META_SET);
    s_text(st, 1, "schema_version");
    s_int(st, 2, version);
    return s_write(self, st, "set schema version") == LEDGER_OK ? 0 : -1;
}

// --- turns -------------------------------------------------------------

int
ledger_begin(ledger_t *self)
{
    assert(self);
    if (self->in_turn) {
        return 0;
    }
    // SQLite would begin one and fail only at the first write.
    if (self->rdonly) {
        log_error(S_LOG, "ledger '%s': begin: opened read-only", self->path);
        return -1;
    }
    if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)
            != SQLITE_OK) {
        s_fail(self, "begin");
        return -1;
    }
    self->in_turn = true;
    self->turn_failed = false;
    return 0;
}

int
ledger_commit(ledger_t *self)
{
    assert(self);
    if (!self->in_turn) {
        return 0;
    }
    if (self->fail_next_commit || self->turn_failed) {
        log_error(S_LOG, "ledger '%s': commit: %s; rolled back", self->path,
                  self->turn_failed ? "an error earlier in this turn"
                                    : "injected failure (test)");
        self->fail_next_commit = false;
        ledger_rollback(self);
        return -1;
    }
    // A transaction SQLite already rolled back has nothing left to commit.
    if (sqlite3_get_autocommit(self->db)) {
        log_error(S_LOG, "ledger '%s': commit: the turn was rolled back",
                  self->path);
        self->in_turn = false;
        return -1;
    }
    if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        s_fail(self, "commit");
        ledger_rollback(self);
        return -1;
    }
    self->in_turn = false;
    return 0;
}

void
ledger_rollback(ledger_t *self)
{
    assert(self);
    if (!self->in_turn) {
        return;
    }
    self->in_turn = false;
    if (!sqlite3_get_autocommit(self->db)
        && sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL)
               != SQLITE_OK) {
        s_fail(self, "rollback");
    }
}

bool
ledger_in_turn(const ledger_t *self)
{
    assert(self);
    return self->in_turn;
}

void
ledger_fail_next_commit(ledger_t *self)
{
    assert(self);
    self->fail_next_commit = true;
}

// --- plans -------------------------------------------------------------

const char *
ledger_plan_state_name(ledger_plan_state_t s)
{
    return (size_t) s < S_COUNT(s_plan_names) ? s_plan_names[s] : "?";
}

ledger_rc_t
ledger_idem_get(ledger_t *self, const char *submitter, const char *key,
                int64_t *plan, char **hash)
{
    assert(self && submitter && key && plan && hash);
    sqlite3_stmt *st = s_stmt(self, Q_IDEM_GET);
    s_text(st, 1, submitter);
    s_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *plan = sqlite3_column_int64(st, 0);
        *hash = s_col_dup(st, 1);
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return s_read_end(self, st, rc, "idempotency lookup") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

static ledger_rc_t
s_plan_insert(ledger_t *self, const workplan_t *wp, const char *json,
              const char *hash, const char *submitter, int64_t now_ms,
              int64_t *plan)
{
    sqlite3_stmt *st = s_stmt(self, Q_PLAN_INSERT);
    s_text(st, 1, wp->name);
    s_text(st, 2, wp->goal);
    s_text(st, 3, submitter);
    s_int(st, 4, now_ms);
    s_text(st, 5, json);
    s_text(st, 6, hash);
    if (s_write(self, st, "create plan") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    *plan = sqlite3_last_insert_rowid(self->db);
    return LEDGER_OK;
}

// One reused statement per table: a 100k-task plan is 100k steps, not
// 100k compilations.
static ledger_rc_t
s_tasks_insert(ledger_t *self, int64_t plan, const workplan_t *wp,
               const proto_task_state_t *initial)
{
    sqlite3_stmt *st = s_stmt(self, Q_TASK_INSERT);
    s_int(st, 1, plan);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        assert(initial[i] != PROTO_TASK_LEASED);
        s_text(st, 2, wp->tasks[i].id);
        s_int(st, 3, (int64_t) i);
        s_text(st, 4, workplan_kind_name(wp->tasks[i].kind));
        s_text(st, 5, proto_task_state_name(initial[i]));
        if (s_write(self, st, "create plan: task") != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_edges_insert(ledger_t *self, int64_t plan, const workplan_t *wp)
{
    sqlite3_stmt *st = s_stmt(self, Q_EDGE_INSERT);
    s_int(st, 1, plan);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        const wp_task_t *t = &wp->tasks[i];
        s_text(st, 2, t->id);
        for (size_t j = 0; j < t->n_needs; j++) {
            s_int(st, 3, (int64_t) j);
            s_text(st, 4, t->needs[j]);
            if (s_write(self, st, "create plan: edge") != LEDGER_OK) {
                return LEDGER_ERROR;
            }
        }
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_idem_insert(ledger_t *self, const char *submitter, const char *key,
              int64_t plan, const char *hash)
{
    sqlite3_stmt *st = s_stmt(self, Q_IDEM_INSERT);
    s_text(st, 1, submitter);
    s_text(st, 2, key);
    s_int(st, 3, plan);
    s_text(st, 4, hash);
    return s_write(self, st, "create plan: idempotency key") == LEDGER_OK
               ? LEDGER_OK
               : LEDGER_ERROR;
}

ledger_rc_t
ledger_plan_create(ledger_t *self, const workplan_t *wp, const char *json,
                   const char *hash, const proto_task_state_t *initial,
                   const char *submitter, const char *idem_key,
                   int64_t now_ms, int64_t *plan)
{
    assert(self && wp && json && hash && plan);
    assert(wp->n_tasks == 0 || initial);
    assert(!idem_key || submitter);
    if (!s_turn_ok(self, "create plan")) {
        return LEDGER_ERROR;
    }
    int64_t id;
    char detail[64];
    snprintf(detail, sizeof detail, "%zu tasks", wp->n_tasks);
    if (s_plan_insert(self, wp, json, hash, submitter, now_ms, &id)
            != LEDGER_OK
        || s_tasks_insert(self, id, wp, initial) != LEDGER_OK
        || s_edges_insert(self, id, wp) != LEDGER_OK
        || (idem_key && s_idem_insert(self, submitter, idem_key, id, hash)
                            != LEDGER_OK)) {
        return LEDGER_ERROR;
    }
    *plan = id;
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = id, .actor = submitter ? submitter : "unknown",
        .kind = "submitted", .to = s_plan_names[LEDGER_PLAN_RUNNING],
        .detail = detail});
}

ledger_rc_t
ledger_plan_move(ledger_t *self, int64_t plan, ledger_plan_state_t from,
                 ledger_plan_state_t to, const char *actor, int64_t now_ms)
{
    assert(self && actor);
    assert((size_t) from < S_COUNT(s_plan_names));
    assert((size_t) to < S_COUNT(s_plan_names));
    if (!s_turn_ok(self, "move plan")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = s_stmt(self, Q_PLAN_MOVE);
    s_int(st, 1, plan);
    s_text(st, 2, s_plan_names[from]);
    s_text(st, 3, s_plan_names[to]);
    s_int(st, 4, now_ms);
    ledger_rc_t rc = s_write(self, st, "move plan");
    if (rc != LEDGER_OK) {
        return rc;
    }
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = plan, .actor = actor, .kind = "plan",
        .from = s_plan_names[from], .to = s_plan_names[to]});
}

ledger_rc_t
ledger_plan_state(ledger_t *self, int64_t plan, ledger_plan_state_t *state)
{
    assert(self && state);
    sqlite3_stmt *st = s_stmt(self, Q_PLAN_STATE);
    s_int(st, 1, plan);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int s = s_parse(s_plan_names, S_COUNT(s_plan_names),
                        s_col_text(st, 0));
        sqlite3_reset(st);
        assert(s >= 0);  // the schema's CHECK allows only these names
        *state = (ledger_plan_state_t) s;
        return LEDGER_OK;
    }
    return s_read_end(self, st, rc, "plan state") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- tasks -------------------------------------------------------------

// A compare-and-set on state alone (move, reset) plus its event.
static ledger_rc_t
s_task_cas(ledger_t *self, s_query_t q, int64_t plan, const char *task,
           proto_task_state_t from, proto_task_state_t to, const char *actor,
           const char *detail, int64_t now_ms)
{
    assert(self && task && actor);
    // Leases change only through lease and finish, which keep invariant 1.
    assert(from != PROTO_TASK_LEASED && to != PROTO_TASK_LEASED);
    if (!s_turn_ok(self, "move task")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = s_stmt(self, q);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    s_text(st, 3, proto_task_state_name(from));
    s_text(st, 4, proto_task_state_name(to));
    ledger_rc_t rc = s_write(self, st, "move task");
    if (rc != LEDGER_OK) {
        return rc;
    }
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "task", .from = proto_task_state_name(from),
        .to = proto_task_state_name(to), .detail = detail});
}

ledger_rc_t
ledger_task_move(ledger_t *self, int64_t plan, const char *task,
                 proto_task_state_t from, proto_task_state_t to,
                 const char *actor, const char *detail, int64_t now_ms)
{
    return s_task_cas(self, Q_TASK_MOVE, plan, task, from, to, actor, detail,
                      now_ms);
}

ledger_rc_t
ledger_task_reset(ledger_t *self, int64_t plan, const char *task,
                  proto_task_state_t from, proto_task_state_t to,
                  const char *actor, int64_t now_ms)
{
    return s_task_cas(self, Q_TASK_RESET, plan, task, from, to, actor,
                      "retry with a fresh attempt budget", now_ms);
}

static ledger_rc_t
s_attempt_start(ledger_t *self, int64_t plan, const char *task,
                int64_t token, const char *instance, const char *holder,
                int64_t now_ms, int64_t *n)
{
    sqlite3_stmt *st = s_stmt(self, Q_ATTEMPT_START);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    s_int(st, 3, token);
    s_text(st, 4, instance);
    s_text(st, 5, holder);
    s_int(st, 6, now_ms);
    return s_returning(self, st, "lease: attempt", n);
}

ledger_rc_t
ledger_task_lease(ledger_t *self, int64_t plan, const char *task,
                  const char *instance, const char *holder, int64_t now_ms,
                  uint64_t *token, uint32_t *attempt)
{
    assert(self && task && instance && holder && token && attempt);
    if (!s_turn_ok(self, "lease")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = s_stmt(self, Q_LEASE);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    s_text(st, 3, instance);
    s_text(st, 4, holder);
    s_int(st, 5, now_ms);
    ledger_rc_t rc = s_write(self, st, "lease");
    if (rc != LEDGER_OK) {
        return rc;
    }
    int64_t tok, n;
    if (s_returning(self, s_stmt(self, Q_TOKEN_NEXT), "lease: token", &tok)
            != LEDGER_OK
        || s_attempt_start(self, plan, task, tok, instance, holder, now_ms,
                           &n) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    *token = (uint64_t) tok;
    *attempt = (uint32_t) n;
    char detail[256];
    snprintf(detail, sizeof detail, "attempt %" PRId64 " to '%s' (instance "
             "%s)", n, holder, instance);
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = "broker",
        .kind = "task", .from = "ready", .to = "leased", .token = *token,
        .detail = detail});
}

static bool
s_uses_budget(ledger_attempt_outcome_t o)
{
    return o == LEDGER_ATTEMPT_SUCCEEDED || o == LEDGER_ATTEMPT_FAILED
           || o == LEDGER_ATTEMPT_EXPIRED;
}

static ledger_rc_t
s_finish_cas(ledger_t *self, int64_t plan, const char *task, uint64_t token,
             const char *instance, const ledger_attempt_end_t *end,
             proto_task_state_t to, int64_t not_before_ms)
{
    sqlite3_stmt *st = s_stmt(self, Q_FINISH);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    s_int(st, 3, (int64_t) token);
    s_text(st, 4, instance);
    s_text(st, 5, proto_task_state_name(to));
    s_int(st, 6, to == PROTO_TASK_READY ? not_before_ms : 0);
    s_int(st, 7, s_uses_budget(end->outcome));
    if (end->has_exit_code) {
        s_int(st, 8, end->exit_code);
    }
    s_text(st, 9, end->error);
    return s_write(self, st, "finish");
}

// Stores how the attempt ended; *n gets its number.  Output over SQLite's
// blob limit cannot reach here (the broker caps it), but is still refused
// rather than stored as NULL.
static ledger_rc_t
s_attempt_end(ledger_t *self, uint64_t token, const ledger_attempt_end_t *e,
              int64_t now_ms, int64_t *n)
{
    sqlite3_stmt *st = s_stmt(self, Q_ATTEMPT_END);
    s_int(st, 1, (int64_t) token);
    s_text(st, 2, s_outcome_names[e->outcome]);
    s_int(st, 3, now_ms);
    if (e->has_exit_code) {
        s_int(st, 4, e->exit_code);
    }
    s_int(st, 5, e->signal);
    s_int(st, 6, e->timed_out);
    s_text(st, 7, e->error);
    s_int(st, 9, e->out_truncated);
    s_int(st, 11, e->err_truncated);
    if (sqlite3_bind_blob64(st, 8, e->out, e->out_len, SQLITE_STATIC)
            != SQLITE_OK
        || sqlite3_bind_blob64(st, 10, e->err, e->err_len, SQLITE_STATIC)
               != SQLITE_OK) {
        return s_fail(self, "finish: output");
    }
    return s_returning(self, st, "finish: attempt", n);
}

static void
s_finish_detail(char *buf, size_t len, int64_t n,
                const ledger_attempt_end_t *e)
{
    int k = snprintf(buf, len, "attempt %" PRId64 " %s", n,
                     s_outcome_names[e->outcome]);
    if (e->has_exit_code && k >= 0 && (size_t) k < len) {
        k += snprintf(buf + k, len - (size_t) k, ", exit %d", e->exit_code);
    }
    if (e->signal && k >= 0 && (size_t) k < len) {
        k += snprintf(buf + k, len - (size_t) k, ", signal %d", e->signal);
    }
    if (e->timed_out && k >= 0 && (size_t) k < len) {
        k += snprintf(buf + k, len - (size_t) k, ", timed out");
    }
    if (e->error && k >= 0 && (size_t) k < len) {
        snprintf(buf + k, len - (size_t) k, ": %s", e->error);
    }
}

ledger_rc_t
ledger_task_finish(ledger_t *self, int64_t plan, const char *task,
                   uint64_t token, const char *instance,
                   const ledger_attempt_end_t *end, proto_task_state_t to,
                   int64_t not_before_ms, const char *actor, int64_t now_ms)
{
    assert(self && task && end && actor);
    assert(end->outcome > LEDGER_ATTEMPT_RUNNING
           && (size_t) end->outcome < S_COUNT(s_outcome_names));
    assert((end->outcome == LEDGER_ATTEMPT_SUCCEEDED)
           == (to == PROTO_TASK_SUCCEEDED));
    assert(to == PROTO_TASK_SUCCEEDED || to == PROTO_TASK_READY
           || to == PROTO_TASK_DEAD || to == PROTO_TASK_CANCELLED);
    if (!s_turn_ok(self, "finish")) {
        return LEDGER_ERROR;
    }
    ledger_rc_t rc = s_finish_cas(self, plan, task, token, instance, end, to,
                                  not_before_ms);
    if (rc != LEDGER_OK) {
        return rc;
    }
    int64_t n;
    if (s_attempt_end(self, token, end, now_ms, &n) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    char detail[512];
    s_finish_detail(detail, sizeof detail, n, end);
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "task", .from = "leased", .to = proto_task_state_name(to),
        .token = token, .detail = detail});
}

ledger_rc_t
ledger_token_lookup(ledger_t *self, uint64_t token, int64_t *plan,
                    char **task, ledger_attempt_outcome_t *outcome)
{
    assert(self && plan && task && outcome);
    sqlite3_stmt *st = s_stmt(self, Q_TOKEN_LOOKUP);
    s_int(st, 1, (int64_t) token);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *plan = sqlite3_column_int64(st, 0);
        *task = s_col_dup(st, 1);
        int o = s_parse(s_outcome_names, S_COUNT(s_outcome_names),
                        s_col_text(st, 2));
        assert(o >= 0);  // the schema's CHECK allows only these names
        *outcome = (ledger_attempt_outcome_t) o;
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return s_read_end(self, st, rc, "token lookup") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

ledger_rc_t
ledger_task_output(ledger_t *self, int64_t plan, const char *task,
                   uint32_t attempt, bool want_stderr, uint8_t **data,
                   size_t *len, bool *truncated, uint32_t *attempt_out)
{
    assert(self && task && data && len && truncated && attempt_out);
    sqlite3_stmt *st = s_stmt(self, Q_OUTPUT);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    s_int(st, 3, attempt);
    s_int(st, 4, want_stderr);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(st, 1);
        size_t n = (size_t) sqlite3_column_bytes(st, 1);
        *data = xmalloc(n ? n : 1);
        if (n) {
            memcpy(*data, blob, n);
        }
        *len = n;
        *truncated = sqlite3_column_int(st, 2) != 0;
        *attempt_out = (uint32_t) sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return s_read_end(self, st, rc, "task output") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- reads for status --------------------------------------------------

// Room for one more element in an array whose capacity is implied by its
// length: the next power of two.  Only for arrays grown from empty here.
static void *
s_grow(void *arr, size_t n, size_t size)
{
    if (n == 0 || (n & (n - 1)) == 0) {
        return xrealloc(arr, (n ? 2 * n : 1) * size);
    }
    return arr;
}

static void
s_plan_row(proto_status_ok_t *out, sqlite3_stmt *st)
{
    out->plans = s_grow(out->plans, out->n_plans, sizeof *out->plans);
    proto_plan_info_t *p = &out->plans[out->n_plans++];
    memset(p, 0, sizeof *p);
    p->id = sqlite3_column_int64(st, 0);
    p->name = s_col_dup(st, 1);
    p->state = s_col_dup(st, 2);
    p->submitted_by = s_col_dup(st, 3);
    p->created_ms = sqlite3_column_int64(st, 4);
    p->finished_ms = sqlite3_column_int64(st, 5);  // NULL reads as 0
}

static ledger_rc_t
s_plan_counts(ledger_t *self, proto_plan_info_t *p)
{
    sqlite3_stmt *st = s_stmt(self, Q_PLAN_COUNTS);
    s_int(st, 1, p->id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        proto_task_state_t s;
        if (proto_task_state_parse(s_col_text(st, 0), &s) == 0) {
            p->counts[s] = (uint32_t) sqlite3_column_int64(st, 1);
        }
    }
    return s_read_end(self, st, rc, "plan counts");
}

ledger_rc_t
ledger_plans(ledger_t *self, int64_t plan, size_t limit,
             proto_status_ok_t *out)
{
    assert(self && out && out->n_plans == 0);
    sqlite3_stmt *st = s_stmt(self, plan ? Q_PLAN_ONE : Q_PLANS);
    // LIMIT -1 is SQLite's "no limit"; limit 0 means all plans.
    s_int(st, 1, plan ? plan : limit ? (int64_t) limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s_plan_row(out, st);
    }
    if (s_read_end(self, st, rc, "plans") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    for (size_t i = 0; i < out->n_plans; i++) {
        if (s_plan_counts(self, &out->plans[i]) != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    return plan && out->n_plans == 0 ? LEDGER_MISS : LEDGER_OK;
}

static void
s_task_row(proto_task_info_t *t, sqlite3_stmt *st)
{
    memset(t, 0, sizeof *t);
    t->id = s_col_dup(st, 0);
    if (proto_task_state_parse(s_col_text(st, 1), &t->state) != 0) {
        assert(!"unknown task state in the ledger");
    }
    t->kind = s_col_dup(st, 2);
    t->attempts = (uint32_t) sqlite3_column_int64(st, 3);
    t->drone = s_col_dup(st, 4);
    t->has_exit_code = sqlite3_column_type(st, 5) != SQLITE_NULL;
    t->exit_code = sqlite3_column_int(st, 5);
    t->last_error = s_col_dup(st, 6);
}

static ledger_rc_t
s_task_needs(ledger_t *self, int64_t plan, proto_task_info_t *tasks,
             size_t n)
{
    sqlite3_stmt *st = s_stmt(self, Q_NEEDS);
    s_int(st, 1, plan);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        // seq is the task's index in the workplan, so in tasks[].
        if (seq >= 0 && (size_t) seq < n) {
            proto_strv_push(&tasks[seq].needs, s_col_text(st, 1));
        }
    }
    return s_read_end(self, st, rc, "task needs");
}

ledger_rc_t
ledger_tasks(ledger_t *self, int64_t plan, proto_status_ok_t *out)
{
    assert(self && out && out->n_tasks == 0);
    int64_t count;
    sqlite3_stmt *st = s_stmt(self, Q_TASK_COUNT);
    s_int(st, 1, plan);
    if (s_returning(self, st, "tasks", &count) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    out->tasks = xcalloc((size_t) count, sizeof *out->tasks);
    st = s_stmt(self, Q_TASKS);
    s_int(st, 1, plan);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW
           && out->n_tasks < (size_t) count) {
        s_task_row(&out->tasks[out->n_tasks++], st);
    }
    if (rc == SQLITE_ROW) {
        rc = SQLITE_DONE;  // cannot happen inside one read transaction
    }
    if (s_read_end(self, st, rc, "tasks") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    return s_task_needs(self, plan, out->tasks, out->n_tasks);
}

ledger_rc_t
ledger_attempts(ledger_t *self, int64_t plan, const char *task,
                void (*cb)(void *arg, const ledger_attempt_row_t *row),
                void *arg)
{
    assert(self && cb);
    sqlite3_stmt *st = s_stmt(self, Q_ATTEMPTS);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int o = s_parse(s_outcome_names, S_COUNT(s_outcome_names),
                        s_col_text(st, 6));
        ledger_attempt_row_t row = {
            .plan = sqlite3_column_int64(st, 0),
            .task = s_col_text(st, 1),
            .n = (uint32_t) sqlite3_column_int64(st, 2),
            .token = (uint64_t) sqlite3_column_int64(st, 3),
            .instance = s_col_text(st, 4),
            .holder = s_col_text(st, 5),
            .outcome = o < 0 ? LEDGER_ATTEMPT_RUNNING
                             : (ledger_attempt_outcome_t) o,
            .started_ms = sqlite3_column_int64(st, 7),
            .ended_ms = sqlite3_column_int64(st, 8),
            .has_exit_code = sqlite3_column_type(st, 9) != SQLITE_NULL,
            .exit_code = sqlite3_column_int(st, 9),
            .error = s_col_text(st, 10),
        };
        cb(arg, &row);
    }
    return s_read_end(self, st, rc, "attempts");
}

// --- drones ------------------------------------------------------------

ledger_rc_t
ledger_drone_seen(ledger_t *self, const char *instance, const char *name,
                  const char *host, uint32_t slots, const char *tags,
                  int64_t now_ms)
{
    assert(self && instance && name);
    if (!s_turn_ok(self, "drone seen")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = s_stmt(self, Q_DRONE);
    s_text(st, 1, instance);
    s_text(st, 2, name);
    s_text(st, 3, host);
    s_int(st, 4, slots);
    s_text(st, 5, tags);
    s_int(st, 6, now_ms);
    return s_write(self, st, "drone seen") == LEDGER_OK ? LEDGER_OK
                                                         : LEDGER_ERROR;
}

// --- recovery ----------------------------------------------------------

static ledger_rc_t
s_load_plans(ledger_t *self, sqlite3_stmt *st,
             void (*plan_cb)(void *arg, int64_t plan, const char *json),
             void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        plan_cb(arg, sqlite3_column_int64(st, 0), s_col_text(st, 1));
    }
    return s_read_end(self, st, rc, "load plans");
}

static ledger_rc_t
s_load_tasks(ledger_t *self, sqlite3_stmt *st,
             void (*task_cb)(void *arg, const ledger_task_row_t *row),
             void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_task_row_t row = {
            .plan = sqlite3_column_int64(st, 0),
            .task = s_col_text(st, 1),
            .token = (uint64_t) sqlite3_column_int64(st, 3),
            .instance = s_col_text(st, 4),
            .holder = s_col_text(st, 5),
            .lease_start_ms = sqlite3_column_int64(st, 6),
            .not_before_ms = sqlite3_column_int64(st, 7),
            .attempts_used = (uint32_t) sqlite3_column_int64(st, 8),
            .attempts_total = (uint32_t) sqlite3_column_int64(st, 9),
        };
        if (proto_task_state_parse(s_col_text(st, 2), &row.state) != 0) {
            assert(!"unknown task state in the ledger");
        }
        task_cb(arg, &row);
    }
    return s_read_end(self, st, rc, "load tasks");
}

ledger_rc_t
ledger_load(ledger_t *self,
            void (*plan_cb)(void *arg, int64_t plan, const char *json),
            void (*task_cb)(void *arg, const ledger_task_row_t *row),
            void *arg)
{
    assert(self && plan_cb && task_cb);
    if (s_load_plans(self, s_stmt(self, Q_LOAD_PLANS), plan_cb, arg)
            != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    return s_load_tasks(self, s_stmt(self, Q_LOAD_TASKS), task_cb, arg);
}

ledger_rc_t
ledger_load_plan(ledger_t *self, int64_t plan,
                 void (*plan_cb)(void *arg, int64_t plan, const char *json),
                 void (*task_cb)(void *arg, const ledger_task_row_t *row),
                 void *arg)
{
    assert(self && plan_cb && task_cb);
    ledger_plan_state_t state;
    ledger_rc_t rc = ledger_plan_state(self, plan, &state);
    if (rc != LEDGER_OK) {
        return rc;
    }
    sqlite3_stmt *st = s_stmt(self, Q_LOAD_PLAN);
    s_int(st, 1, plan);
    if (s_load_plans(self, st, plan_cb, arg) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    st = s_stmt(self, Q_LOAD_PLAN_TASKS);
    s_int(st, 1, plan);
    return s_load_tasks(self, st, task_cb, arg);
}

ledger_rc_t
ledger_task_attempts_used(ledger_t *self, int64_t plan, const char *task,
                          uint32_t *used)
{
    assert(self && task && used);
    sqlite3_stmt *st = s_stmt(self, Q_ATTEMPTS_USED);
    s_int(st, 1, plan);
    s_text(st, 2, task);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *used = (uint32_t) sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return s_read_end(self, st, rc, "attempts used") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- events ------------------------------------------------------------

ledger_rc_t
ledger_event(ledger_t *self, int64_t plan, const char *task,
             const char *actor, const char *kind, const char *detail,
             int64_t now_ms)
{
    assert(self && actor && kind);
    if (!s_turn_ok(self, "append event")) {
        return LEDGER_ERROR;
    }
    return s_event(self, &(s_event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = kind, .detail = detail});
}

ledger_rc_t
ledger_events(ledger_t *self, int64_t plan, int64_t after,
              void (*cb)(void *arg, int64_t seq, int64_t at_ms,
                         const char *task, const char *actor,
                         const char *kind, const char *from, const char *to,
                         uint64_t token, const char *detail),
              void *arg)
{
    assert(self && cb);
    sqlite3_stmt *st = s_stmt(self, plan ? Q_EVENTS_PLAN : Q_EVENTS_ALL);
    s_int(st, 1, after);
    if (plan) {
        s_int(st, 2, plan);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
           s_col_text(st, 2), s_col_text(st, 3), s_col_text(st, 4),
           s_col_text(st, 5), s_col_text(st, 6),
           (uint64_t) sqlite3_column_int64(st, 7), s_col_text(st, 8));
    }
    return s_read_end(self, st, rc, "events");
}
