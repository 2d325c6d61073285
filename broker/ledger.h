// ledger: the broker's durable state in SQLite — the only code that touches
// SQLite, and the source of truth the broker rebuilds its memory from.
//
// Task lifecycle (DESIGN.md "Task states"):
//
//              needs succeeded               lease (token++)
//   waiting ------------------> ready -----------------------> leased
//      |  \  (gate)               ^  ^                          | | | |
//      |   `--> awaiting_approval |  `-- failed/expired, budget | | | |
//      |          |   |           |      left (not_before)  <---' | | |
//      |          |   `-> rejected `---- released (no attempt) <--' | |
//      |          `-> succeeded  <-------- result accepted ---------' |
//      |                                   budget used up ----> dead  |
//      `--> blocked (a need ended dead/rejected/cancelled)            |
//   any non-terminal --> cancelled (leased: token void, STOP) <------'
//   retry: dead/rejected/cancelled -> ready|waiting, blocked -> waiting
//
// Invariants:
//   1. state = leased  <=>  lease_token > 0, lease_instance and
//      lease_holder set, and one attempt row with that token and no outcome.
//   2. Tokens come from one counter in the meta table, incremented inside
//      the lease transaction, never reset: every token ever issued is unique
//      and larger than every earlier one.
//   3. Every state change is a compare-and-set (UPDATE ... WHERE state = from
//      [AND lease_token = t AND lease_instance = i]); LEDGER_MISS means the
//      row was not in that state and nothing changed.
//   4. Every state change appends one row to events, with its actor, in the
//      same transaction.
//   5. At most one attempt per task has outcome 'succeeded', and then
//      tasks.state = succeeded and accepted_attempt names it.
//   6. tasks.lost_leases changes only with the attempt that lost its lease
//      (ledger_task_finish with end->lost) and goes back to 0 only with a
//      fresh attempt budget (ledger_task_reset).
//
// Schema versions: meta.schema_version is LEDGER_SCHEMA_VERSION in a file
// this code wrote.  An older file is upgraded in place at open, one version
// per transaction, after a copy of it is saved as "<path>.v<N>.bak" through
// SQLite's backup API; a newer one is refused.  Version 2 added
// tasks.lost_leases and drones.secret_hash; version 3
// attempts.prompt_tokens and attempts.completion_tokens (NULL: none
// reported, as for run tasks); version 4 tasks.ready_ms (when the task last
// became ready or, a gate, began awaiting approval; set by every write
// that moves it there) and tasks.attempt_budget (retries + 1, stored at
// submit; NULL for gates and older rows); version 5 wrote the CHECKs on
// state and outcome names as chains of ORs (the same rule, without an
// ephemeral table built by every statement that checks it) and dropped the
// index tasks_state; version 6 made an attempt's token its rowid (a lookup
// by token is one seek; (plan_id, tid, n) stays unique) and dropped
// AUTOINCREMENT from events.seq (the numbers are kept, never reused since
// events are never deleted), rebuilding both tables.
//
// Turns: ledger_begin() opens BEGIN IMMEDIATE; transitions accumulate; one
// ledger_commit() makes them durable (WAL, synchronous=FULL).  A failed
// commit rolls the whole transaction back; the broker then rebuilds its
// memory with ledger_load().  Read functions may be called inside or outside
// a turn.  All *_ms values are wall-clock epoch milliseconds.
//
// Checkpoints: a writer's WAL is copied into the database by a thread of
// the ledger on its own connection (ledger_ckpt.c), not inside a COMMIT on
// the caller's thread: PASSIVE every 1000 new frames, TRUNCATE after a
// second with no commit.  A commit checkpoints only the few frames (at
// most 256) a thread checkpoint left, so the WAL can start over, or,
// logged, a WAL past 8000 frames (the thread fell behind, or a reader
// holds an old snapshot), so the file stays bounded; journal_size_limit
// (4 MiB) cuts it back after a restart.
// Durability does not depend on the thread: every commit is synced.
#ifndef WAGGLE_LEDGER_H
#define WAGGLE_LEDGER_H

#include "common/workplan.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_SCHEMA_VERSION 6

typedef struct ledger ledger_t;

typedef enum {
    LEDGER_ERROR = -1,  // SQLite failed (logged once here); end the turn
    LEDGER_OK = 0,
    LEDGER_MISS = 1,    // compare-and-set refused / row not found
} ledger_rc_t;

typedef enum {
    LEDGER_PLAN_RUNNING = 0,
    LEDGER_PLAN_SUCCEEDED,
    LEDGER_PLAN_FAILED,
    LEDGER_PLAN_CANCELLED,
} ledger_plan_state_t;

typedef enum {
    LEDGER_ATTEMPT_RUNNING = 0,  // no outcome yet
    LEDGER_ATTEMPT_SUCCEEDED,
    LEDGER_ATTEMPT_FAILED,       // non-zero exit, signal, timeout, bad input
    LEDGER_ATTEMPT_EXPIRED,      // lease lost
    LEDGER_ATTEMPT_RELEASED,     // handed back / undelivered: no attempt used
    LEDGER_ATTEMPT_CANCELLED,    // cancelled while leased: no attempt used
} ledger_attempt_outcome_t;

enum ledger_flags {
    LEDGER_RDONLY = 1 << 0,      // read-only, takes no lock (tests, tools)
};

// Bytes of an attempt's error text kept (the rest is cut, on a UTF-8
// character boundary): it is a sentence, shown with every status page.
#define LEDGER_ERROR_MAX 1024

// How a leased attempt ended (ledger_task_finish).
typedef struct {
    ledger_attempt_outcome_t outcome;
    bool has_exit_code;
    int32_t exit_code;
    int32_t signal;
    bool timed_out;
    const char *error;           // NULL or a sentence
    const uint8_t *out;          // stdout (borrowed)
    size_t out_len;
    bool out_truncated;
    const uint8_t *err;          // stderr tail (borrowed)
    size_t err_len;
    bool err_truncated;
    int64_t prompt_tokens;       // a prompt task's usage; -1: none reported
    int64_t completion_tokens;   // (0 in a zeroed struct: recorded as 0)
    bool lost;                   // the lease expired without its drone ever
                                 // confirming it, or its drone is gone
                                 // (liveness.c): the finish also bumps
                                 // the task's lost_leases
} ledger_attempt_end_t;

// One task as loaded for recovery (strings borrowed for the callback).
typedef struct {
    int64_t plan;
    const char *task;
    proto_task_state_t state;
    uint64_t token;              // lease token when leased, else 0
    const char *instance;        // lease holder's instance id when leased
    const char *holder;          // lease holder's key name when leased
    int64_t lease_start_ms;
    int64_t not_before_ms;       // backoff end for ready tasks, else 0
    uint32_t attempts_used;      // attempts that used the budget
    uint32_t attempts_total;     // attempt rows, any outcome: their
                                 // highest n (numbered 1, 2, ... by
                                 // ledger_task_lease), which the broker
                                 // keeps to number the next one
    uint32_t lost_leases;        // leases lost: unconfirmed, or with their
                                 // drone (invariant 6)
} ledger_task_row_t;

// One attempt (strings borrowed for the callback).
typedef struct {
    int64_t plan;
    const char *task;
    uint32_t n;                  // 1-based
    uint64_t token;
    const char *instance;
    const char *holder;
    ledger_attempt_outcome_t outcome;
    int64_t started_ms, ended_ms;
    bool has_exit_code;
    int32_t exit_code;
    const char *error;
} ledger_attempt_row_t;

// Opens (creating if needed) the ledger at path: WAL, synchronous=FULL,
// schema created or checked.  Unless LEDGER_RDONLY, first takes an exclusive
// lock on path + ".lock" and writes its pid there; when another process
// holds it, fails with "ledger 'x' is in use by another broker (pid N)".
// An older schema is upgraded (see "Schema versions" above; the backup and
// each step are logged); when a step fails, that step's transaction is
// rolled back, the file keeps the version it had before the step, and open
// fails naming both versions.  LEDGER_RDONLY refuses an older schema (it
// cannot upgrade).  A schema newer than this code is refused, naming both
// versions.  A writer (not LEDGER_RDONLY) also starts a thread, with a
// connection of its own, that checkpoints the WAL (ledger_ckpt.c): no
// commit pays for a checkpoint unless the WAL grew past a high mark;
// ledger_destroy joins it.  Returns 0 or -1 with err.
int ledger_open(ledger_t **out, const char *path, unsigned flags, char *err,
                size_t errlen);
void ledger_destroy(ledger_t **self_p);
// A random id made when the ledger was created (the broker's identity).
const char *ledger_id(const ledger_t *self);
// WAL checkpoints so far: by the thread, and on the caller's thread inside
// a commit because the WAL had grown past the high mark (0, 0 when
// RDONLY).
void ledger_checkpoints(const ledger_t *self, uint64_t *by_thread,
                        uint64_t *on_loop);

// --- turns ------------------------------------------------------------
int ledger_begin(ledger_t *self);          // no-op if a turn is open
int ledger_commit(ledger_t *self);         // 0, or -1 (rolled back)
void ledger_rollback(ledger_t *self);      // no-op if none open
bool ledger_in_turn(const ledger_t *self);
// What committed turns wrote since open (metrics): the open turn's writes
// count once ledger_commit succeeds, never when it is rolled back.
typedef struct {
    uint64_t moves[PROTO_TASK__COUNT];  // task transitions, by state entered
    uint64_t ended[LEDGER_ATTEMPT_CANCELLED + 1];  // attempts ended, by
                                                   // outcome (running: 0)
} ledger_tally_t;
// Borrowed; valid while the ledger is open.
const ledger_tally_t *ledger_tally(const ledger_t *self);
// Task transitions written in the open turn so far (0 outside a turn).
uint64_t ledger_turn_moves(const ledger_t *self);
// Test seam: the next commit fails as if the disk were full.
void ledger_fail_next_commit(ledger_t *self);
// Test seam: overwrites meta.schema_version (in the open turn, or on its
// own), so a test can make a ledger newer than this code.  Returns 0 or -1.
int ledger_test_set_schema_version(ledger_t *self, int version);

// --- plans ------------------------------------------------------------
// Looks up an idempotency key of one submitter.  LEDGER_OK fills *plan and
// *hash (caller frees); LEDGER_MISS when unknown.
ledger_rc_t ledger_idem_get(ledger_t *self, const char *submitter,
                            const char *key, int64_t *plan, char **hash);
// Stores a validated workplan as a new running plan: the plan row (with its
// canonical JSON and hash), one task row per task in initial[i] state,
// edges, the idempotency key when not NULL, and the events.  Sets *plan.
ledger_rc_t ledger_plan_create(ledger_t *self, const workplan_t *wp,
                               const char *json, const char *hash,
                               const proto_task_state_t *initial,
                               const char *submitter, const char *idem_key,
                               int64_t now_ms, int64_t *plan);
ledger_rc_t ledger_plan_move(ledger_t *self, int64_t plan,
                             ledger_plan_state_t from, ledger_plan_state_t to,
                             const char *actor, int64_t now_ms);
// Replaces the stored workplan text of a plan (len bytes of canonical JSON
// the loader reads back with workplan_parse_stored) in the open turn; the
// idempotency hash keeps naming what was submitted.  The caller appends the
// event that says who changed what, in the same turn.  0, or -1 when there
// is no open turn, no such plan, or SQLite failed.
int ledger_plan_set_workplan(ledger_t *self, int64_t plan, const char *json,
                             size_t len);
// A plan's stored workplan (any state) into *json (caller frees; NULL when
// the row has none).  LEDGER_MISS when there is no such plan.
ledger_rc_t ledger_plan_json(ledger_t *self, int64_t plan, char **json);
ledger_rc_t ledger_plan_state(ledger_t *self, int64_t plan,
                              ledger_plan_state_t *state);
const char *ledger_plan_state_name(ledger_plan_state_t s);
// The name stored for an attempt outcome ("expired"), "?" when out of range.
const char *ledger_outcome_name(ledger_attempt_outcome_t o);
// Whether an attempt that ended so uses one of its task's budget
// (succeeded, failed, expired; not released or cancelled).
bool ledger_outcome_uses_budget(ledger_attempt_outcome_t o);

// --- tasks ------------------------------------------------------------
// A transition that involves no lease (waiting->ready, ->blocked,
// ->awaiting_approval, ->cancelled from a non-leased state, ...).
ledger_rc_t ledger_task_move(ledger_t *self, int64_t plan, const char *task,
                             proto_task_state_t from, proto_task_state_t to,
                             const char *actor, const char *detail,
                             int64_t now_ms);
// ready -> leased to (instance, holder) under a fresh token; inserts the
// attempt row numbered run (its n counts every lease of the task: the
// task's attempt rows + 1).  used is the task's attempts_used; *attempt is
// the attempt of the budget this lease is: used + 1, so a lease that ended
// using none (released, undelivered) does not advance it.  The caller
// keeps both in memory (sched_attempts) so the lease reads nothing; a
// run already used fails the insert (UNIQUE (plan_id, tid, n)):
// LEDGER_ERROR.
// Refused (MISS) unless ready and not_before <= now_ms.
ledger_rc_t ledger_task_lease(ledger_t *self, int64_t plan, const char *task,
                              const char *instance, const char *holder,
                              uint32_t used, uint32_t run, int64_t now_ms,
                              uint64_t *token, uint32_t *attempt);
// An amendment's new tasks: wp->tasks[first..] get their rows (seq = their
// index, state states[i], never leased), then their edges (they may need
// each other), each with a 'task' event from nothing to its state.
ledger_rc_t ledger_plan_add_tasks(ledger_t *self, int64_t plan,
                                  const workplan_t *wp, size_t first,
                                  const proto_task_state_t *states,
                                  const char *actor, int64_t now_ms);
// An amendment's new definition of a task that has not started: from -> to
// as a compare-and-set (neither leased), its kind and edges rewritten, a
// fresh attempt budget as with ledger_task_reset, and a 'task' event
// saying it was replaced.
ledger_rc_t ledger_task_redefine(ledger_t *self, int64_t plan,
                                 const wp_task_t *task,
                                 proto_task_state_t from,
                                 proto_task_state_t to, const char *actor,
                                 int64_t now_ms);
// leased(token[, instance]) -> to, recording how the attempt ended in
// attempt row run (the lease's n, kept by the caller: nothing is read; an
// open attempt of that token with another n is LEDGER_ERROR, memory and
// ledger disagree).  to is
// succeeded, ready (with not_before_ms), dead or cancelled.  instance NULL
// skips the holder check (cancel, expiry).  SUCCEEDED/FAILED/EXPIRED
// outcomes use one attempt of the budget; RELEASED/CANCELLED do not.
// end->lost adds one to the task's lost_leases in the same compare-and-set
// (whatever the outcome; a forgiven first loss is typically RELEASED).
ledger_rc_t ledger_task_finish(ledger_t *self, int64_t plan, const char *task,
                               uint64_t token, uint32_t run,
                               const char *instance,
                               const ledger_attempt_end_t *end,
                               proto_task_state_t to, int64_t not_before_ms,
                               const char *actor, int64_t now_ms);
// A gate awaiting approval gets its deadline (wall ms) in not_before_ms —
// a gate is never in backoff, so the column is free for it — and an event
// saying so.  The deadline survives a restart with the row.  MISS unless
// awaiting_approval.
ledger_rc_t ledger_gate_deadline(ledger_t *self, int64_t plan,
                                 const char *task, int64_t deadline_ms,
                                 const char *actor, int64_t now_ms);
// Shortens the backoff of a ready task to end at not_before_ms (a restart
// clamps every backoff to the broker's cap, and a lease is refused before
// the stored end).  Only ever shortens: LEDGER_MISS when the task is not
// ready or its backoff already ends by then.  Appends a 'backoff' event.
ledger_rc_t ledger_task_backoff(ledger_t *self, int64_t plan,
                                const char *task, int64_t not_before_ms,
                                const char *actor, int64_t now_ms);
// from -> to with a fresh attempt budget (retry): attempts_used = 0,
// not_before = 0, lost_leases = 0.
ledger_rc_t ledger_task_reset(ledger_t *self, int64_t plan, const char *task,
                              proto_task_state_t from, proto_task_state_t to,
                              const char *actor, int64_t now_ms);
// The attempt a token was issued for: LEDGER_OK with its plan, task (caller
// frees) and outcome, or LEDGER_MISS if no such token was ever issued.
ledger_rc_t ledger_token_lookup(ledger_t *self, uint64_t token, int64_t *plan,
                                char **task,
                                ledger_attempt_outcome_t *outcome);
// A task's output.  attempt 0: the accepted attempt, else the latest that
// ended; n: that attempt.  Sets *data (caller frees), *len, *truncated and
// *attempt_out.  MISS when there is no such task or attempt.
ledger_rc_t ledger_task_output(ledger_t *self, int64_t plan, const char *task,
                               uint32_t attempt, bool want_stderr,
                               uint8_t **data, size_t *len, bool *truncated,
                               uint32_t *attempt_out);

// --- reads for status -------------------------------------------------
// Plans, newest first, with task counts per state (fills out->plans).
// plan 0: the newest limit plans (0: all) and every running plan, however
// old (at most 10,000); else that plan only (MISS if none).
ledger_rc_t ledger_plans(ledger_t *self, int64_t plan, size_t limit,
                         proto_status_ok_t *out);
// ledger_plans without the counts (left 0), and the counts of one plan:
// for a caller that knows a loaded plan's counts without counting rows.
ledger_rc_t ledger_plan_rows(ledger_t *self, int64_t plan, size_t limit,
                             proto_status_ok_t *out);
ledger_rc_t ledger_plan_counts(ledger_t *self, proto_plan_info_t *p);
// The tokens (prompt + completion) every attempt of plan reported, summed:
// what its budget has used.
ledger_rc_t ledger_plan_used(ledger_t *self, int64_t plan, int64_t *used);
// A page of a plan's tasks in workplan order, from index first: as many as
// fit in max_objects (PROTO_TASK_INFO_OBJECTS plus one per need each), at least
// one.  Fills out->tasks (waiting_reason left NULL for the broker to fill)
// and sets out->more when tasks follow.  A first past the end gives none.
ledger_rc_t ledger_tasks(ledger_t *self, int64_t plan, uint32_t first,
                         size_t max_objects, proto_status_ok_t *out);
// Every attempt of a plan (task NULL) or of one task, in order.
ledger_rc_t ledger_attempts(ledger_t *self, int64_t plan, const char *task,
                            void (*cb)(void *arg,
                                       const ledger_attempt_row_t *row),
                            void *arg);

// The plans with an attempt started at or after since_ms (wall), each
// once, ascending, in a new array (*plans; caller frees, NULL when none).
// Any plan state: a finished plan's leases still count in a window.
ledger_rc_t ledger_recent_plans(ledger_t *self, int64_t since_ms,
                                int64_t **plans, size_t *n);

// Every task and plan of the ledger counted by state (metrics): tasks[s]
// for proto_task_state_t s, plans[s] for ledger_plan_state_t s.  Tasks
// are counted from the table once per open and then kept in memory by
// the committed transitions (a million rows took 250 ms to count, on the
// broker's loop at every scrape); plans in one pass over their index.
// What a committed turn wrote counts; an open turn's writes do not.
ledger_rc_t ledger_state_counts(ledger_t *self,
                                int64_t tasks[PROTO_TASK__COUNT],
                                int64_t plans[LEDGER_PLAN_CANCELLED + 1]);

// --- drones -----------------------------------------------------------
// Records a HELLO (upsert by instance).  secret_hash is the hex hash (at
// most 64 characters) of the secret the broker issued this instance, or
// NULL to keep what is stored (nothing, for a new row).
ledger_rc_t ledger_drone_seen(ledger_t *self, const char *instance,
                              const char *name, const char *host,
                              uint32_t slots, const char *tags,
                              const char *secret_hash, int64_t now_ms);
// The secret hash stored for an instance, copied into hash (NUL-ended).
// LEDGER_OK, or LEDGER_MISS when there is no such instance or it has none.
ledger_rc_t ledger_drone_secret(ledger_t *self, const char *instance,
                                char hash[65]);

// --- recovery ---------------------------------------------------------
// For every running plan in id order: plan_cb (with its canonical workplan
// JSON), then task_cb for each task row of that plan in workplan (seq)
// order, so every task_cb is for the plan of the plan_cb just before it.
// Rows are handed over as stored: the caller checks them against the
// workplan.  Callbacks must not call into the ledger.  LEDGER_ERROR only
// when SQLite fails.
ledger_rc_t ledger_load(ledger_t *self,
                        void (*plan_cb)(void *arg, int64_t plan,
                                        const char *json),
                        void (*task_cb)(void *arg,
                                        const ledger_task_row_t *row),
                        void *arg);

// Like ledger_load, for one plan in any state (to retry a finished plan).
// LEDGER_MISS when there is no such plan.
ledger_rc_t ledger_load_plan(ledger_t *self, int64_t plan,
                             void (*plan_cb)(void *arg, int64_t plan,
                                             const char *json),
                             void (*task_cb)(void *arg,
                                             const ledger_task_row_t *row),
                             void *arg);
// The attempts of a task that used its budget (attempts_used).
ledger_rc_t ledger_task_attempts_used(ledger_t *self, int64_t plan,
                                      const char *task, uint32_t *used);
// A task's state as the ledger holds it; LEDGER_MISS when there is no such
// task (or plan).
ledger_rc_t ledger_task_state(ledger_t *self, int64_t plan, const char *task,
                              proto_task_state_t *state);
// How many of a task's leases expired without their drone ever confirming
// or renewing them (invariant 6).  LEDGER_OK with *n, LEDGER_MISS when
// there is no such task.
ledger_rc_t ledger_task_lost_leases(ledger_t *self, int64_t plan,
                                    const char *task, uint32_t *n);

// --- events -----------------------------------------------------------
// Appends a free-form event (submit, cancel requested, reconcile, ...).
ledger_rc_t ledger_event(ledger_t *self, int64_t plan, const char *task,
                         const char *actor, const char *kind,
                         const char *detail, int64_t now_ms);
// Events of a plan (0: all) after sequence `after`, in order.
ledger_rc_t ledger_events(ledger_t *self, int64_t plan, int64_t after,
                          void (*cb)(void *arg, int64_t seq, int64_t at_ms,
                                     const char *task, const char *actor,
                                     const char *kind, const char *from,
                                     const char *to, uint64_t token,
                                     const char *detail),
                          void *arg);
// A page of the event log for a subscriber: at most limit events of a plan
// (0: all) after sequence `after`, in order, each with its plan (0: none).
// Stops early when cb returns false.
typedef struct {
    int64_t seq, at_ms, plan;
    const char *task, *actor, *kind, *from, *to, *detail;  // NULL if none
} ledger_event_row_t;
ledger_rc_t ledger_events_page(ledger_t *self, int64_t plan, int64_t after,
                               uint32_t limit,
                               bool (*cb)(void *arg,
                                          const ledger_event_row_t *row),
                               void *arg);
// The greatest event seq of a plan (0: of all events); 0 when none.
ledger_rc_t ledger_events_max(ledger_t *self, int64_t plan, int64_t *seq);

// --- backups ------------------------------------------------------------
// A restored broker must never hand out a token that the live broker gave
// after the copy was taken (invariant 2): ledger_backup() advances the
// copy's counter by this much, more leases than a broker grants in years.
#define LEDGER_BACKUP_TOKEN_GAP (1ULL << 32)

// What a copy made by ledger_backup() holds.
typedef struct {
    int64_t bytes;              // size of the copy's file
    int64_t plans;              // plans in it
    int64_t last_event;         // its greatest events.seq: it holds the
                                // ledger up to that event
    uint64_t next_token;        // its token counter, the gap included
    int schema_version;         // its meta.schema_version
} ledger_backup_info_t;

// Writes a consistent copy of the ledger to the file out, through SQLite's
// backup API in one read transaction: the ledger as of one commit.  Works
// on a ledger opened LEDGER_RDONLY beside the broker that writes it (WAL:
// the read blocks nobody).  The copy is written as out + ".partial",
// passes PRAGMA integrity_check, gets LEDGER_BACKUP_TOKEN_GAP added to its
// token counter, is synced and renamed to out, so an existing out is only
// ever replaced by a whole, checked copy.  The copy has the ledger's file
// mode.  Returns 0 with info filled, or -1 with a sentence in err.
int ledger_backup(ledger_t *self, const char *out, ledger_backup_info_t *info,
                  char *err, size_t errlen);

#endif
