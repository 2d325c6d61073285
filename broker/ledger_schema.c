// ledger_schema: the ledger's SQL text, as data (ledger_int.h declares it).
//
// Owns the schema a new ledger file is created with, the text of every
// statement ledger.c prepares at open, and the names stored for plan states
// and attempt outcomes.  Kept together so that a change to a table shows
// every statement that touches it.  The schema enforces what it can of
// ledger.h's invariants itself (CHECK constraints, partial unique indexes,
// an append-only trigger on events) so that a bug elsewhere fails a turn
// instead of corrupting the ledger.
//
// This file holds no code: it never runs a statement, never binds one, and
// does not include <sqlite3.h>.  Bumping the schema means bumping
// LEDGER_SCHEMA_VERSION (ledger.h), changing ledger__schema to the new
// version, and adding the step from the old one to ledger__migrations.
#include "broker/ledger_int.h"

// The CHECKs on state and outcome names are chains of ORs, not IN lists:
// SQLite builds an ephemeral table for an IN list of more than two values
// each time a statement checks it, i.e. on every insert or update of the
// row, which cost about a third of the broker's instructions per task
// (issue 9).  Version 5 rewrote the IN lists of older files into these.
#define S_PLAN_CHECK                                                         \
    "CHECK (state = 'running' OR state = 'succeeded' OR state = 'failed'"    \
    " OR state = 'cancelled')"
#define S_TASK_CHECK                                                         \
    "CHECK (state = 'waiting' OR state = 'ready' OR state = 'leased'"        \
    " OR state = 'awaiting_approval' OR state = 'succeeded'"                 \
    " OR state = 'dead' OR state = 'rejected' OR state = 'blocked'"          \
    " OR state = 'cancelled')"
#define S_OUTCOME_CHECK                                                      \
    "CHECK (outcome = 'running' OR outcome = 'succeeded'"                    \
    " OR outcome = 'failed' OR outcome = 'expired' OR outcome = 'released'"  \
    " OR outcome = 'cancelled')"

// The attempts and events tables, as version 6 has them: written once here
// for the schema and for the step from version 5, which rebuilds both.
// An attempt's token is its rowid (INTEGER PRIMARY KEY): tokens are unique
// and only grow, so a lease appends at the table's end, and every lookup by
// token (finish, a result's duplicate check) is one rowid seek instead of a
// search of a separate UNIQUE index and then the table (issue 9).  It is
// still never NULL (a rowid cannot be; the lease always binds one: SQLite
// would give a NULL the next rowid, so NOT NULL would not refuse it) and
// unique.  (plan_id, tid, n) stays unique.
#define S_ATTEMPTS_TABLE                                                     \
    "CREATE TABLE attempts ("                                                \
    "  plan_id INTEGER NOT NULL,"                                            \
    "  tid TEXT NOT NULL,"                                                   \
    "  n INTEGER NOT NULL,"                                                  \
    "  token INTEGER PRIMARY KEY,"                                           \
    "  instance TEXT NOT NULL,"                                              \
    "  holder TEXT NOT NULL,"                                                \
    "  started_ms INTEGER NOT NULL,"                                         \
    "  ended_ms INTEGER,"                                                    \
    "  outcome TEXT NOT NULL DEFAULT 'running' " S_OUTCOME_CHECK ","         \
    "  exit_code INTEGER,"                                                   \
    "  signal INTEGER,"                                                      \
    "  timed_out INTEGER NOT NULL DEFAULT 0,"                                \
    "  error TEXT,"                                                          \
    "  stdout BLOB,"                                                         \
    "  stdout_truncated INTEGER NOT NULL DEFAULT 0,"                         \
    "  stderr BLOB,"                                                         \
    "  stderr_truncated INTEGER NOT NULL DEFAULT 0,"                         \
    "  prompt_tokens INTEGER,"                                               \
    "  completion_tokens INTEGER,"                                           \
    "  UNIQUE (plan_id, tid, n),"                                            \
    "  FOREIGN KEY (plan_id, tid) REFERENCES tasks (plan_id, tid)"           \
    ");"
#define S_ATTEMPTS_COLS                                                      \
    "plan_id, tid, n, token, instance, holder, started_ms, ended_ms,"        \
    " outcome, exit_code, signal, timed_out, error, stdout,"                 \
    " stdout_truncated, stderr, stderr_truncated, prompt_tokens,"            \
    " completion_tokens"
// Invariants 1 and 5: one open attempt per task, one accepted result.
#define S_ATTEMPTS_INDEXES                                                   \
    "CREATE UNIQUE INDEX attempts_running ON attempts (plan_id, tid)"        \
    "  WHERE outcome = 'running';"                                           \
    "CREATE UNIQUE INDEX attempts_succeeded ON attempts (plan_id, tid)"      \
    "  WHERE outcome = 'succeeded';"
// seq is the rowid without AUTOINCREMENT: rows are never deleted (the
// trigger), so max(seq) + 1 never reuses a number, and an insert no longer
// reads and rewrites sqlite_sequence (~5k instructions per event, two
// events per task; issue 9).
#define S_EVENTS_TABLE                                                       \
    "CREATE TABLE events ("                                                  \
    "  seq INTEGER PRIMARY KEY,"                                             \
    "  at_ms INTEGER NOT NULL,"                                              \
    "  plan_id INTEGER,"                                                     \
    "  tid TEXT,"                                                            \
    "  actor TEXT NOT NULL,"                                                 \
    "  kind TEXT NOT NULL,"                                                  \
    "  from_state TEXT,"                                                     \
    "  to_state TEXT,"                                                       \
    "  token INTEGER,"                                                       \
    "  detail TEXT"                                                          \
    ");"
#define S_EVENTS_COLS                                                        \
    "seq, at_ms, plan_id, tid, actor, kind, from_state, to_state, token,"    \
    " detail"
#define S_EVENTS_EXTRAS                                                      \
    "CREATE INDEX events_plan ON events (plan_id, seq);"                     \
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN"          \
    "  SELECT RAISE (ABORT, 'events are append-only'); END;"                 \
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN"          \
    "  SELECT RAISE (ABORT, 'events are append-only'); END;"

// Version 6.  Task and plan states are stored as their lowercase names so
// the file reads well in the sqlite3 shell.  meta.value has no declared type
// (BLOB affinity) so a hex id that looks like a number stays text.  Columns
// a migration added come last in their table, where ALTER TABLE puts them,
// so a new file and an upgraded one have the same columns in one order.
const char ledger__schema[] =
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value"
    ") WITHOUT ROWID;"
    "CREATE TABLE plans ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  goal TEXT,"
    "  state TEXT NOT NULL " S_PLAN_CHECK ","
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
    "  state TEXT NOT NULL " S_TASK_CHECK ","
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
    "  lost_leases INTEGER NOT NULL DEFAULT 0,"
    // When it last became ready (or, a gate, began awaiting approval);
    // NULL while it never has.
    "  ready_ms INTEGER,"
    // Attempts a budget allows (retries + 1); NULL for a gate and for a
    // task stored before version 4.
    "  attempt_budget INTEGER,"
    "  PRIMARY KEY (plan_id, tid),"
    // Invariant 1, the part a row can check.
    "  CHECK ((state = 'leased') = (lease_token IS NOT NULL"
    "    AND lease_instance IS NOT NULL AND lease_holder IS NOT NULL))"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX tasks_seq ON tasks (plan_id, seq);"
    "CREATE TABLE edges ("
    "  plan_id INTEGER NOT NULL,"
    "  tid TEXT NOT NULL,"
    "  ord INTEGER NOT NULL,"
    "  need TEXT NOT NULL,"
    "  PRIMARY KEY (plan_id, tid, ord),"
    "  FOREIGN KEY (plan_id, tid) REFERENCES tasks (plan_id, tid),"
    "  FOREIGN KEY (plan_id, need) REFERENCES tasks (plan_id, tid)"
    ") WITHOUT ROWID;"
    S_ATTEMPTS_TABLE S_ATTEMPTS_INDEXES
    "CREATE TABLE drones ("
    "  instance TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  host TEXT,"
    "  slots INTEGER NOT NULL,"
    "  tags TEXT,"
    "  first_seen_ms INTEGER NOT NULL,"
    "  last_seen_ms INTEGER NOT NULL,"
    "  secret_hash TEXT"
    ");"
    "CREATE TABLE idempotency ("
    "  submitter TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  plan_id INTEGER NOT NULL REFERENCES plans (id),"
    "  hash TEXT NOT NULL,"
    "  PRIMARY KEY (submitter, key)"
    ") WITHOUT ROWID;"
    S_EVENTS_TABLE S_EVENTS_EXTRAS;

// ledger__migrations[n] takes a file from version n to n + 1; ledger.c runs
// it in one transaction together with the version bump.  Steps only ever
// get appended: a file of any older version passes through all of them.
const char *const ledger__migrations[LEDGER_SCHEMA_VERSION] = {
    [1] = "ALTER TABLE tasks ADD COLUMN"
          " lost_leases INTEGER NOT NULL DEFAULT 0;"
          "ALTER TABLE drones ADD COLUMN secret_hash TEXT;",
    [2] = "ALTER TABLE attempts ADD COLUMN prompt_tokens INTEGER;"
          "ALTER TABLE attempts ADD COLUMN completion_tokens INTEGER;",
    // An upgraded task became ready when its last event says so; one that
    // never moved there was ready from the start if it needs nothing (the
    // plan's creation, which wrote no task event).  One pass over events.
    [3] = "ALTER TABLE tasks ADD COLUMN ready_ms INTEGER;"
          "ALTER TABLE tasks ADD COLUMN attempt_budget INTEGER;"
          "UPDATE tasks SET ready_ms = r.at FROM (SELECT plan_id, tid,"
          " max(at_ms) AS at FROM events WHERE tid IS NOT NULL AND"
          " to_state IN ('ready', 'awaiting_approval')"
          " GROUP BY plan_id, tid) AS r"
          " WHERE r.plan_id = tasks.plan_id AND r.tid = tasks.tid;"
          "UPDATE tasks SET ready_ms = (SELECT created_ms FROM plans"
          " WHERE id = tasks.plan_id) WHERE ready_ms IS NULL"
          " AND state <> 'waiting' AND NOT EXISTS (SELECT 1 FROM edges e"
          " WHERE e.plan_id = tasks.plan_id AND e.tid = tasks.tid);",
    // The CHECK constraints' IN lists become chains of ORs (S_*_CHECK
    // above): the same rule, with no ephemeral table per statement.
    // Only the schema text changes, so it is rewritten in place (SQLite's
    // documented procedure for changing CHECKs; ledger_migrate.c bumps
    // the schema cookie after each step).  A file whose text differs
    // keeps its IN lists: slower, still correct.
    // tasks_state goes: every transition rewrote an entry in it (a delete
    // and an insert at a place keyed by the state), and the one query
    // that could use it, a plan's counts by state for status, reads the
    // plan's rows through the primary key just as well.
    [4] = "DROP INDEX tasks_state;"
          "PRAGMA writable_schema = ON;"
          "UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN"
          "    (''running'', ''succeeded'', ''failed'', ''cancelled''))',"
          " 'CHECK (state = ''running'' OR state = ''succeeded'' OR state"
          " = ''failed'' OR state = ''cancelled'')') WHERE type = 'table'"
          " AND name = 'plans';"
          "UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN "
          "(''waiting'', ''ready'', ''leased'',    ''awaiting_approval'',"
          " ''succeeded'', ''dead'', ''rejected'', ''blocked'',    "
          "''cancelled''))', 'CHECK (state = ''waiting'' OR state = "
          "''ready'' OR state = ''leased'' OR state = "
          "''awaiting_approval'' OR state = ''succeeded'' OR state = "
          "''dead'' OR state = ''rejected'' OR state = ''blocked'' OR "
          "state = ''cancelled'')') WHERE type = 'table' AND name = "
          "'tasks';"
          "UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (outcome IN"
          " (''running'',    ''succeeded'', ''failed'', ''expired'', "
          "''released'', ''cancelled''))', 'CHECK (outcome = ''running'' "
          "OR outcome = ''succeeded'' OR outcome = ''failed'' OR outcome "
          "= ''expired'' OR outcome = ''released'' OR outcome = "
          "''cancelled'')') WHERE type = 'table' AND name = 'attempts';"
          "PRAGMA writable_schema = OFF;",
    // attempts keyed by token and events without AUTOINCREMENT
    // (S_ATTEMPTS_TABLE, S_EVENTS_TABLE): a rowid changes only by building
    // the table again.  Each old table is renamed aside (its indexes and
    // triggers go with it), the new one made under the real name with the
    // fresh file's text, the rows copied as they are, the old one dropped,
    // and then its indexes and triggers made again.  Event numbers are
    // kept, so a reader's cursor (events after seq N) still holds.
    [5] = "ALTER TABLE attempts RENAME TO attempts_v5;"
          S_ATTEMPTS_TABLE
          "INSERT INTO attempts (" S_ATTEMPTS_COLS ") SELECT "
          S_ATTEMPTS_COLS " FROM attempts_v5 ORDER BY token;"
          "DROP TABLE attempts_v5;"
          S_ATTEMPTS_INDEXES
          "ALTER TABLE events RENAME TO events_v5;"
          S_EVENTS_TABLE
          "INSERT INTO events (" S_EVENTS_COLS ") SELECT " S_EVENTS_COLS
          " FROM events_v5 ORDER BY seq;"
          "DROP TABLE events_v5;"
          S_EVENTS_EXTRAS,
};

// Every statement the ledger runs after open.  Every compare-and-set is in
// an UPDATE's WHERE clause, never in a read before it.  The ?N parameters
// are bound by the function that runs the statement (ledger_write.c,
// ledger_read.c).
const char *const ledger__sql[LEDGER__Q_COUNT] = {
    [LEDGER__Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [LEDGER__Q_META_SET] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [LEDGER__Q_TASK_MOVE] =
        "UPDATE tasks SET state = ?4, ready_ms = iif(?4 IN ('ready',"
        " 'awaiting_approval'), ?5, ready_ms)"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = ?3",
    [LEDGER__Q_TASK_RESET] =
        "UPDATE tasks SET state = ?4, attempts_used = 0,"
        " not_before_ms = 0, lost_leases = 0, ready_ms = iif(?4 IN"
        " ('ready', 'awaiting_approval'), ?5, ready_ms)"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = ?3",
    // An amendment's new definition of a task that never ran (or ran and
    // failed, ready again): a fresh attempt budget like a retry.
    [LEDGER__Q_TASK_REDEFINE] =
        "UPDATE tasks SET state = ?4, kind = ?5, attempts_used = 0,"
        " not_before_ms = 0, lost_leases = 0, ready_ms = iif(?4 IN"
        " ('ready', 'awaiting_approval'), ?6, ready_ms),"
        " attempt_budget = nullif(?7, 0)"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = ?3",
    [LEDGER__Q_EDGES_DELETE] =
        "DELETE FROM edges WHERE plan_id = ?1 AND tid = ?2",
    [LEDGER__Q_GATE_DEADLINE] =
        "UPDATE tasks SET not_before_ms = ?3"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = 'awaiting_approval'",
    [LEDGER__Q_TASK_BACKOFF] =
        "UPDATE tasks SET not_before_ms = ?3"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = 'ready'"
        " AND not_before_ms > ?3",
    // ?6 is the token counter's value (ledger.c keeps it; the turn's
    // commit writes it back to meta.next_token).  No RETURNING and no
    // INSERT ... SELECT from the table written on the hot path: SQLite
    // runs each through an ephemeral table (issue 9).
    [LEDGER__Q_LEASE] =
        "UPDATE tasks SET state = 'leased', lease_token = ?6,"
        " lease_instance = ?3, lease_holder = ?4, lease_start_ms = ?5"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = 'ready'"
        " AND not_before_ms <= ?5",
    [LEDGER__Q_ATTEMPT_START] =
        "INSERT INTO attempts (plan_id, tid, n, token,"
        " instance, holder, started_ms)"
        " VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6)",
    // ?7 is 1 when the outcome uses an attempt of the budget; only those
    // attempts are what status shows as the last run.  ?12 is the lease's
    // attempt number, from the broker's memory (no read on the hot path;
    // LEDGER__Q_ATTEMPT_END checks it against the row).
    [LEDGER__Q_FINISH] =
        "UPDATE tasks SET state = ?5, lease_token = NULL,"
        " lease_instance = NULL, lease_holder = NULL,"
        " lease_start_ms = NULL, not_before_ms = ?6,"
        " attempts_used = attempts_used + ?7,"
        " accepted_attempt = iif(?5 = 'succeeded', ?12, accepted_attempt),"
        " last_exit_code = iif(?7, ?8, last_exit_code),"
        " last_error = iif(?7, ?9, last_error),"
        " last_drone = iif(?7, lease_holder, last_drone),"
        " lost_leases = lost_leases + ?10,"
        " ready_ms = iif(?5 = 'ready', ?11, ready_ms)"
        " WHERE plan_id = ?1 AND tid = ?2 AND state = 'leased'"
        " AND lease_token = ?3"
        " AND (?4 IS NULL OR lease_instance = ?4)",
    [LEDGER__Q_ATTEMPT_END] =
        "UPDATE attempts SET outcome = ?2, ended_ms = ?3,"
        " exit_code = ?4, signal = ?5, timed_out = ?6,"
        " error = ?7, stdout = ?8, stdout_truncated = ?9,"
        " stderr = ?10, stderr_truncated = ?11,"
        " prompt_tokens = ?12, completion_tokens = ?13"
        " WHERE token = ?1 AND outcome = 'running' AND n = ?14",
    [LEDGER__Q_TOKEN_LOOKUP] =
        "SELECT plan_id, tid, outcome FROM attempts"
        " WHERE token = ?1",
    [LEDGER__Q_OUTPUT] =
        "SELECT n, iif(?4, stderr, stdout),"
        " iif(?4, stderr_truncated, stdout_truncated)"
        " FROM attempts WHERE plan_id = ?1 AND tid = ?2 AND n ="
        " iif(?3 > 0, ?3, coalesce((SELECT accepted_attempt"
        " FROM tasks WHERE plan_id = ?1 AND tid = ?2),"
        " (SELECT max(n) FROM attempts WHERE plan_id = ?1"
        " AND tid = ?2 AND outcome <> 'running')))",
    [LEDGER__Q_PLAN_INSERT] =
        "INSERT INTO plans (name, goal, state, submitted_by,"
        " created_ms, workplan_json, workplan_hash)"
        " VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6)",
    [LEDGER__Q_TASK_INSERT] =
        "INSERT INTO tasks (plan_id, tid, seq, kind, state, ready_ms,"
        " attempt_budget) VALUES (?1, ?2, ?3, ?4, ?5, iif(?5 IN ('ready',"
        " 'awaiting_approval'), ?6, NULL), nullif(?7, 0))",
    [LEDGER__Q_EDGE_INSERT] =
        "INSERT INTO edges (plan_id, tid, ord, need)"
        " VALUES (?1, ?2, ?3, ?4)",
    [LEDGER__Q_IDEM_INSERT] =
        "INSERT INTO idempotency (submitter, key, plan_id,"
        " hash) VALUES (?1, ?2, ?3, ?4)",
    [LEDGER__Q_IDEM_GET] =
        "SELECT plan_id, hash FROM idempotency"
        " WHERE submitter = ?1 AND key = ?2",
    [LEDGER__Q_PLAN_MOVE] =
        "UPDATE plans SET state = ?3,"
        " finished_ms = iif(?3 = 'running', NULL, ?4)"
        " WHERE id = ?1 AND state = ?2",
    [LEDGER__Q_PLAN_WORKPLAN] =
        "UPDATE plans SET workplan_json = ?2 WHERE id = ?1",
    [LEDGER__Q_PLAN_STATE] = "SELECT state FROM plans WHERE id = ?1",
    [LEDGER__Q_PLAN_JSON] = "SELECT workplan_json FROM plans WHERE id = ?1",
    // The newest ?1 plans and every running one (at most 10,000).
#define S_PLAN_TOKENS                                                        \
    " (SELECT coalesce(sum(prompt_tokens), 0) FROM attempts a"               \
    " WHERE a.plan_id = plans.id),"                                          \
    " (SELECT coalesce(sum(completion_tokens), 0) FROM attempts a"           \
    " WHERE a.plan_id = plans.id)"
    [LEDGER__Q_PLANS] =
        "SELECT id, name, state, submitted_by, created_ms,"
        " finished_ms," S_PLAN_TOKENS " FROM plans"
        " WHERE id IN (SELECT id FROM plans ORDER BY id DESC LIMIT ?1)"
        " OR id IN (SELECT id FROM plans WHERE state = 'running'"
        " ORDER BY id DESC LIMIT 10000) ORDER BY id DESC",
    [LEDGER__Q_PLAN_ONE] =
        "SELECT id, name, state, submitted_by, created_ms,"
        " finished_ms," S_PLAN_TOKENS " FROM plans WHERE id = ?1",
    [LEDGER__Q_PLAN_USED] =
        "SELECT coalesce(sum(prompt_tokens), 0)"
        " + coalesce(sum(completion_tokens), 0) FROM attempts"
        " WHERE plan_id = ?1",
    [LEDGER__Q_PLAN_COUNTS] =
        "SELECT state, count(*) FROM tasks WHERE plan_id = ?1"
        " GROUP BY state",
    [LEDGER__Q_TASK_COUNT] = "SELECT count(*) FROM tasks WHERE plan_id = ?1",
    [LEDGER__Q_TASKS] =
        "SELECT tasks.tid, tasks.state, tasks.kind, tasks.attempts_used,"
        " coalesce(tasks.lease_holder, tasks.last_drone),"
        " tasks.last_exit_code, tasks.last_error,"
        " (SELECT coalesce(sum(prompt_tokens), 0) FROM attempts a"
        " WHERE a.plan_id = tasks.plan_id AND a.tid = tasks.tid),"
        " (SELECT coalesce(sum(completion_tokens), 0) FROM attempts a"
        " WHERE a.plan_id = tasks.plan_id AND a.tid = tasks.tid),"
        // The latest attempt (every lease is one, by number n): the times
        // status shows, and the number a retry does not reset.
        " tasks.ready_ms, l.n, l.started_ms, l.ended_ms, tasks.attempt_budget"
        " FROM tasks LEFT JOIN attempts l ON l.plan_id = tasks.plan_id"
        " AND l.tid = tasks.tid AND l.n = (SELECT max(n) FROM attempts m"
        " WHERE m.plan_id = tasks.plan_id AND m.tid = tasks.tid)"
        " WHERE tasks.plan_id = ?1 AND tasks.seq >= ?2"
        " ORDER BY tasks.seq LIMIT ?3",
    [LEDGER__Q_NEEDS] =
        "SELECT t.seq, e.need FROM edges e JOIN tasks t"
        " ON t.plan_id = e.plan_id AND t.tid = e.tid"
        " WHERE e.plan_id = ?1 AND t.seq >= ?2 AND t.seq < ?3"
        " ORDER BY t.seq, e.ord",
    [LEDGER__Q_ATTEMPTS] =
        "SELECT plan_id, tid, n, token, instance, holder, outcome,"
        " started_ms, ended_ms, exit_code, error FROM attempts"
        " WHERE plan_id = ?1 AND (?2 IS NULL OR tid = ?2)"
        " ORDER BY token",
    // Newest first by token (its index); the caller stops at the first
    // row older than it wants.
    [LEDGER__Q_ATTEMPTS_RECENT] =
        "SELECT plan_id, started_ms FROM attempts ORDER BY token DESC",
    [LEDGER__Q_DRONE] =
        "INSERT INTO drones (instance, name, host, slots, tags,"
        " first_seen_ms, last_seen_ms, secret_hash)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)"
        " ON CONFLICT (instance) DO UPDATE SET name = excluded.name,"
        " host = excluded.host, slots = excluded.slots,"
        " tags = excluded.tags, last_seen_ms = excluded.last_seen_ms,"
        " secret_hash = coalesce(excluded.secret_hash,"
        " drones.secret_hash)",
    [LEDGER__Q_DRONE_SECRET] =
        "SELECT secret_hash FROM drones WHERE instance = ?1"
        " AND secret_hash IS NOT NULL",
    [LEDGER__Q_LOAD_PLANS] =
        "SELECT id, workplan_json FROM plans"
        " WHERE state = 'running' ORDER BY id",
#define S_LOAD_TASK_COLS                                                     \
    "SELECT t.plan_id, t.tid, t.state, t.lease_token, t.lease_instance,"     \
    " t.lease_holder, t.lease_start_ms, t.not_before_ms, t.attempts_used,"   \
    " (SELECT coalesce(max(a.n), 0) FROM attempts a"                         \
    " WHERE a.plan_id = t.plan_id AND a.tid = t.tid), t.lost_leases"
    [LEDGER__Q_LOAD_PLAN] = "SELECT id, workplan_json FROM plans WHERE id = ?1",
    [LEDGER__Q_LOAD_PLAN_TASKS] =
        S_LOAD_TASK_COLS " FROM tasks t"
        " WHERE t.plan_id = ?1 ORDER BY t.seq",
    [LEDGER__Q_ATTEMPTS_USED] =
        "SELECT attempts_used FROM tasks"
        " WHERE plan_id = ?1 AND tid = ?2",
    [LEDGER__Q_TASK_STATE] =
        "SELECT state FROM tasks WHERE plan_id = ?1 AND tid = ?2",
    [LEDGER__Q_LOST_LEASES] =
        "SELECT lost_leases FROM tasks"
        " WHERE plan_id = ?1 AND tid = ?2",
#define S_EVENT_COLS                                                         \
    "SELECT seq, at_ms, tid, actor, kind, from_state, to_state, token,"      \
    " detail FROM events"
    [LEDGER__Q_EVENTS_ALL] = S_EVENT_COLS " WHERE seq > ?1 ORDER BY seq",
    [LEDGER__Q_EVENTS_PLAN] =
        S_EVENT_COLS " WHERE plan_id = ?2 AND seq > ?1"
        " ORDER BY seq",
#define S_EVENT_PAGE_COLS                                                    \
    "SELECT seq, at_ms, plan_id, tid, actor, kind, from_state, to_state,"    \
    " detail FROM events"
    [LEDGER__Q_EVENTS_PAGE_ALL] =
        S_EVENT_PAGE_COLS " WHERE seq > ?1 ORDER BY seq LIMIT ?3",
    [LEDGER__Q_EVENTS_PAGE_PLAN] =
        S_EVENT_PAGE_COLS " WHERE plan_id = ?2 AND seq > ?1"
        " ORDER BY seq LIMIT ?3",
    [LEDGER__Q_EVENTS_MAX_ALL] = "SELECT coalesce(max(seq), 0) FROM events",
    [LEDGER__Q_EVENTS_MAX_PLAN] =
        "SELECT coalesce(max(seq), 0) FROM events WHERE plan_id = ?1",
    [LEDGER__Q_TASK_STATES] = "SELECT state, count(*) FROM tasks"
                              " GROUP BY state",
    [LEDGER__Q_PLAN_STATES] = "SELECT state, count(*) FROM plans"
                              " GROUP BY state",
};

// The names stored in state and outcome columns, as the CHECKs list them.
const char *const ledger__plan_names[LEDGER__N_PLAN_STATES] = {
    [LEDGER_PLAN_RUNNING] = "running",
    [LEDGER_PLAN_SUCCEEDED] = "succeeded",
    [LEDGER_PLAN_FAILED] = "failed",
    [LEDGER_PLAN_CANCELLED] = "cancelled",
};

const char *const ledger__outcome_names[LEDGER__N_OUTCOMES] = {
    [LEDGER_ATTEMPT_RUNNING] = "running",
    [LEDGER_ATTEMPT_SUCCEEDED] = "succeeded",
    [LEDGER_ATTEMPT_FAILED] = "failed",
    [LEDGER_ATTEMPT_EXPIRED] = "expired",
    [LEDGER_ATTEMPT_RELEASED] = "released",
    [LEDGER_ATTEMPT_CANCELLED] = "cancelled",
};
