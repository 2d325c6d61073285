// ledger_int.h: what the ledger*.c files share (SQLite's *Int.h
// convention).  Nothing outside broker/ledger*.c includes it.
//
//   ledger.c         open, the lock file, schema creation and check, the
//                    statement cache, turns, and the SQLite edge below
//   ledger_schema.c  the SQL text: the schema, every prepared statement,
//                    and the names stored for plan states and outcomes
//   ledger_write.c   every change: plan creation, the compare-and-set
//                    transitions of plans and tasks, drones, events
//   ledger_events.c  the turn's events rows, buffered and written in
//                    multi-row INSERTs before the commit
//   ledger_read.c    every read: status, outputs, tokens, recovery, events
//   ledger_migrate.c the upgrade of an older file: backup, then one
//                    transaction per schema version
//   ledger_backup.c  copies through SQLite's backup API: the upgrade's
//                    backup and ledger_backup()
//   ledger_ckpt.c    WAL checkpoints on a thread with its own connection
//
// Names shared between those files start ledger__ / LEDGER__ (libuv's
// uv__); helpers private to one file stay static and start s_.
//
// This header never includes <sqlite3.h> (tests/check_includes.sh allows it
// in broker/ledger*.c only): it names SQLite's handles by their struct
// tags, which are the types sqlite3.h's typedefs stand for.
#ifndef WAGGLE_LEDGER_INT_H
#define WAGGLE_LEDGER_INT_H

#include "broker/ledger.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sqlite3;
struct sqlite3_stmt;

// Every statement the ledger runs after open, prepared once at open; the
// text of each is ledger__sql[q] (ledger_schema.c).
typedef enum {
    LEDGER__Q_META_GET,
    LEDGER__Q_META_SET,
    LEDGER__Q_TASK_MOVE,
    LEDGER__Q_TASK_RESET,
    LEDGER__Q_TASK_REDEFINE,
    LEDGER__Q_EDGES_DELETE,
    LEDGER__Q_TASK_BACKOFF,
    LEDGER__Q_GATE_DEADLINE,
    LEDGER__Q_LEASE,
    LEDGER__Q_ATTEMPT_START,
    LEDGER__Q_FINISH,
    LEDGER__Q_ATTEMPT_END,
    LEDGER__Q_TOKEN_LOOKUP,
    LEDGER__Q_OUTPUT,
    LEDGER__Q_PLAN_INSERT,
    LEDGER__Q_TASK_INSERT,
    LEDGER__Q_EDGE_INSERT,
    LEDGER__Q_IDEM_INSERT,
    LEDGER__Q_IDEM_GET,
    LEDGER__Q_PLAN_MOVE,
    LEDGER__Q_PLAN_WORKPLAN,
    LEDGER__Q_PLAN_STATE,
    LEDGER__Q_PLAN_JSON,
    LEDGER__Q_PLANS,
    LEDGER__Q_PLAN_ONE,
    LEDGER__Q_PLAN_COUNTS,
    LEDGER__Q_PLAN_USED,
    LEDGER__Q_TASK_COUNT,
    LEDGER__Q_TASKS,
    LEDGER__Q_NEEDS,
    LEDGER__Q_ATTEMPTS,
    LEDGER__Q_ATTEMPTS_RECENT,
    LEDGER__Q_DRONE,
    LEDGER__Q_DRONE_SECRET,
    LEDGER__Q_LOAD_PLANS,
    LEDGER__Q_LOAD_PLAN,
    LEDGER__Q_LOAD_PLAN_TASKS,
    LEDGER__Q_ATTEMPTS_USED,
    LEDGER__Q_LOST_LEASES,
    LEDGER__Q_TASK_STATE,
    LEDGER__Q_EVENTS_ALL,
    LEDGER__Q_EVENTS_PLAN,
    LEDGER__Q_EVENTS_PAGE_ALL,
    LEDGER__Q_EVENTS_PAGE_PLAN,
    LEDGER__Q_EVENTS_MAX_ALL,
    LEDGER__Q_EVENTS_MAX_PLAN,
    LEDGER__Q_TASK_STATES,
    LEDGER__Q_PLAN_STATES,
    LEDGER__Q_COUNT
} ledger__query_t;

typedef struct ledger__events ledger__events_t;
typedef struct ledger__ckpt ledger__ckpt_t;

struct ledger {
    struct sqlite3 *db;             // the one connection
    char *path;                     // database file, for messages
    int lock_fd;                    // path + ".lock", flock'ed; -1 if RDONLY
    bool rdonly;                    // LEDGER_RDONLY: no turns
    bool in_turn;                   // between ledger_begin and commit
    bool turn_failed;               // a LEDGER_ERROR in this turn
    bool fail_next_commit;          // test seam: next commit fails
    ledger_tally_t turn;            // what the open turn wrote
    ledger_tally_t tally;           // what committed turns wrote
    // Tasks by state (ledger_state_counts), counted once from the table
    // and then kept by the transitions and inserts that commit: a scrape
    // must not scan every task row of the ledger on the broker's loop.
    int64_t in_state[PROTO_TASK__COUNT];
    int64_t turn_in_state[PROTO_TASK__COUNT];  // the open turn's change
    bool in_state_known;
    char id[33];                    // random hex id made at creation
    // The lease token counter (meta.next_token), read at open and kept
    // here so a lease costs no read-modify-write of meta; written back
    // once per turn that used it, in that turn's transaction, so it is
    // durable with every token it handed out.  A rolled-back turn's
    // tokens are never reused (none was sent before a commit anyway).
    int64_t next_token;
    bool token_dirty;               // next_token moved in this turn
    // Prepared at open, reset after use; indexed by ledger__query_t.
    struct sqlite3_stmt *stmt[LEDGER__Q_COUNT];
    // The open turn's events rows not written yet (ledger_events.c);
    // NULL until the first.
    ledger__events_t *events;
    // The checkpoint thread (ledger_ckpt.c); NULL when RDONLY.
    ledger__ckpt_t *ckpt;
};

// One events row; see ledger__append_event().
typedef struct {
    int64_t at_ms;
    int64_t plan;                   // 0: not about a plan
    const char *task;
    const char *actor;
    const char *kind;
    const char *from, *to;          // state names, or NULL
    uint64_t token;                 // 0: none
    const char *detail;
} ledger__event_t;

// --- SQL text (ledger_schema.c) -----------------------------------------
#define LEDGER__N_PLAN_STATES (LEDGER_PLAN_CANCELLED + 1)
#define LEDGER__N_OUTCOMES (LEDGER_ATTEMPT_CANCELLED + 1)

// The current schema (LEDGER_SCHEMA_VERSION), run once when a ledger file
// is created.
extern const char ledger__schema[];
// ledger__migrations[n]: the SQL that takes a file from version n to n + 1
// (index 0 unused).
extern const char *const ledger__migrations[LEDGER_SCHEMA_VERSION];
// The text of every cached statement, indexed by ledger__query_t.
extern const char *const ledger__sql[LEDGER__Q_COUNT];
// The names stored in plans.state and attempts.outcome (the schema's CHECK
// constraints list the same names), indexed by the public enums.
extern const char *const ledger__plan_names[LEDGER__N_PLAN_STATES];
extern const char *const ledger__outcome_names[LEDGER__N_OUTCOMES];

// --- copies (ledger_backup.c) ---------------------------------------------
// Checks (and may change) the finished copy at tmp before it is renamed;
// returns 0, or -1 with a sentence in err (the copy is then removed).
typedef int (*ledger__copy_fn)(const char *tmp, void *arg, char *err,
                               size_t errlen);
// Copies the ledger through SQLite's backup API to out + ".partial", runs
// check on it (when not NULL), then renames it to out and syncs the
// directory.  Returns 0, or -1 with err (nothing left behind but an
// untouched out).
int ledger__save_copy(ledger_t *self, const char *out, ledger__copy_fn check,
                      void *arg, char *err, size_t errlen);

// --- the SQLite edge (ledger.c) -----------------------------------------
// Each logs SQLite's own message once, where it is still known, and marks
// the open turn failed: a transition of several statements may have made
// only some of them, so the commit will refuse it (ledger.h).

// Logs op's failure with SQLite's message; returns LEDGER_ERROR.
ledger_rc_t ledger__fail(ledger_t *self, const char *op);
// The same for a failure SQLite did not see (a row that must be there is
// not): logs why and ends the turn; LEDGER_ERROR.
ledger_rc_t ledger__broken(ledger_t *self, const char *op, const char *why);
// The cached statement q, bindings cleared, ready to bind.  Asserts it is
// not mid-read (a callback re-entering the ledger).
struct sqlite3_stmt *ledger__stmt(ledger_t *self, ledger__query_t q);
// Binders.  They can fail only on a programming error (a bad index) or a
// value over SQLite's 1 GB limit, which the wire limits rule out, so they
// assert.  ledger__bind_text binds NULL for s NULL; s is borrowed until
// the statement is reset.
void ledger__bind_int(struct sqlite3_stmt *st, int i, int64_t v);
void ledger__bind_text(struct sqlite3_stmt *st, int i, const char *s);
// ledger__bind_text of len bytes of s (not NUL-ended).
void ledger__bind_textn(struct sqlite3_stmt *st, int i, const char *s,
                        size_t len);
// Like ledger__bind_text for an error sentence: at most LEDGER_ERROR_MAX
// bytes, cut on a UTF-8 character boundary.
void ledger__bind_sentence(struct sqlite3_stmt *st, int i, const char *s);
// Column i of the current row: borrowed until the next step or reset; or
// a copy the caller frees.  NULL for SQL NULL.
const char *ledger__col_text(struct sqlite3_stmt *st, int i);
char *ledger__col_dup(struct sqlite3_stmt *st, int i);
// Runs a write to completion and resets it: LEDGER_OK when it changed
// exactly one row (the compare-and-set hit), LEDGER_MISS when it changed
// none, LEDGER_ERROR when SQLite failed.
ledger_rc_t ledger__write(ledger_t *self, struct sqlite3_stmt *st,
                          const char *op);
// The next lease token, counted in memory; the turn's commit writes the
// counter back.  Only inside a turn.
int64_t ledger__token_take(ledger_t *self);
// Runs a statement that must yield a row (RETURNING, aggregates), puts its
// first column in *v and resets it.  No row is LEDGER_ERROR.
ledger_rc_t ledger__returning(ledger_t *self, struct sqlite3_stmt *st,
                              const char *op, int64_t *v);
// Ends a read loop whose last step returned rc, and resets st: LEDGER_OK
// when the loop ran to the end (SQLITE_DONE), else LEDGER_ERROR.
ledger_rc_t ledger__read_end(ledger_t *self, struct sqlite3_stmt *st, int rc,
                             const char *op);
// True when a write may run: a turn is open and SQLite has not rolled it
// back on its own (disk full, I/O), which would make each later statement
// commit alone.  False (logged, turn failed) refuses the write.
bool ledger__turn_ok(ledger_t *self, const char *op);
// The index of s in names[0..n), or -1 (also for s NULL).
int ledger__parse(const char *const *names, size_t n, const char *s);

// --- upgrades (ledger_migrate.c) -----------------------------------------
// Upgrades the open file from schema version `from` to
// LEDGER_SCHEMA_VERSION: first a copy as "<path>.v<from>.bak", then one
// transaction per version.  Runs before statements are prepared.  Returns
// 0, or -1 with err (the file is left at the last version it reached).
int ledger__migrate(ledger_t *self, int from, char *err, size_t errlen);

// --- events rows (ledger_events.c) ---------------------------------------
// Appends one events row (invariant 4) to the turn's buffer; the strings
// are copied.  The caller checked the turn.  LEDGER_OK, or LEDGER_ERROR
// when a flush (every S_FLUSH_AT rows) failed (the turn is then failed).
ledger_rc_t ledger__append_event(ledger_t *self, const ledger__event_t *ev);
// Writes the buffered rows, in order, and empties the buffer: before the
// turn's COMMIT and before any read of events.  LEDGER_OK (also with
// nothing to write) or LEDGER_ERROR (logged, the turn failed).
ledger_rc_t ledger__events_flush(ledger_t *self);
// Drops the buffered rows (a rolled-back turn).
void ledger__events_clear(ledger_t *self);
// Frees the buffer and its statements; before the connection closes.
void ledger__events_destroy(ledger_t *self);

// --- checkpoints (ledger_ckpt.c) -----------------------------------------
// Opens a second connection to path, starts the thread and sets main_db's
// WAL hook (which turns SQLite's autocheckpoint off): from then on no
// commit of main_db checkpoints, unless the WAL grew past the high mark
// (ledger_ckpt.c says why).  Returns 0, or -1 with err.
int ledger__ckpt_start(ledger__ckpt_t **out, struct sqlite3 *main_db,
                       const char *path, char *err, size_t errlen);
// Joins the thread and closes its connection; no-op on NULL.  The caller
// removed the WAL hook of the main connection first.
void ledger__ckpt_stop(ledger__ckpt_t **self_p);
// Checkpoints run so far by the thread and, past the high mark, on the
// loop.
void ledger__ckpt_counts(ledger__ckpt_t *self, uint64_t *thread_ckpts,
                         uint64_t *loop_ckpts);

// --- writes (ledger_write.c) --------------------------------------------
// Counts a task transition of the open turn (ledger_tally and the tasks
// by state).
void ledger__tally_move(ledger_t *self, proto_task_state_t from,
                        proto_task_state_t to);
// Counts a task row the open turn inserted in state to.
void ledger__tally_insert(ledger_t *self, proto_task_state_t to);

#endif
