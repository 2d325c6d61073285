// ledger_write: every change to the ledger (ledger.h has the contracts and
// the invariants these keep).
//
// Owns plan creation (plan, tasks, edges, idempotency key in one go), the
// compare-and-set transitions of plans and tasks (move, reset, lease,
// finish, a shortened backoff), drone sightings (with their secret hash)
// and free-form events, and the events row each of them appends in the
// same turn (invariant 4; ledger_events.c writes the rows).  Every compare-and-set
// is in an UPDATE's WHERE clause (ledger_schema.c), never in a read before
// it; a miss is LEDGER_MISS and changes nothing.
//
// This file never decides which transition to make, never reads a clock,
// never opens or commits a turn (ledger.c does), and never reads for
// status or recovery (ledger_read.c).
#include "broker/ledger_int.h"

#include <assert.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

// --- events ------------------------------------------------------------

ledger_rc_t
ledger_event(ledger_t *self, int64_t plan, const char *task,
             const char *actor, const char *kind, const char *detail,
             int64_t now_ms)
{
    assert(self && actor && kind);
    if (!ledger__turn_ok(self, "append event")) {
        return LEDGER_ERROR;
    }
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = kind, .detail = detail});
}

// --- plans -------------------------------------------------------------

static ledger_rc_t
s_plan_insert(ledger_t *self, const workplan_t *wp, const char *json,
              const char *hash, const char *submitter, int64_t now_ms,
              int64_t *plan)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_INSERT);
    ledger__bind_text(st, 1, wp->name);
    ledger__bind_text(st, 2, wp->goal);
    ledger__bind_text(st, 3, submitter);
    ledger__bind_int(st, 4, now_ms);
    ledger__bind_text(st, 5, json);
    ledger__bind_text(st, 6, hash);
    if (ledger__write(self, st, "create plan") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    *plan = sqlite3_last_insert_rowid(self->db);
    return LEDGER_OK;
}

// Attempts a task's budget allows (retries + 1); 0 for a gate: none.
static int64_t
s_budget(const wp_task_t *t)
{
    return t->kind == WP_KIND_GATE ? 0 : t->retries + 1;
}

// Binds one task row of LEDGER__Q_TASK_INSERT: ready since now when it
// starts ready (or awaiting approval), its attempt budget.
static void
s_bind_task(sqlite3_stmt *st, int64_t plan, const wp_task_t *t, size_t seq,
            proto_task_state_t state, int64_t now_ms)
{
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, t->id);
    ledger__bind_int(st, 3, (int64_t) seq);
    ledger__bind_text(st, 4, workplan_kind_name(t->kind));
    ledger__bind_text(st, 5, proto_task_state_name(state));
    ledger__bind_int(st, 6, now_ms);
    ledger__bind_int(st, 7, s_budget(t));
}

// One reused statement per table: a 100k-task plan is 100k steps, not
// 100k compilations.
static ledger_rc_t
s_tasks_insert(ledger_t *self, int64_t plan, const workplan_t *wp,
               const proto_task_state_t *initial, int64_t now_ms)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_INSERT);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        assert(initial[i] != PROTO_TASK_LEASED);
        s_bind_task(st, plan, &wp->tasks[i], i, initial[i], now_ms);
        if (ledger__write(self, st, "create plan: task") != LEDGER_OK) {
            return LEDGER_ERROR;
        }
        ledger__tally_insert(self, initial[i]);
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_task_edges(ledger_t *self, int64_t plan, const wp_task_t *t)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_EDGE_INSERT);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, t->id);
    for (size_t j = 0; j < t->n_needs; j++) {
        ledger__bind_int(st, 3, (int64_t) j);
        ledger__bind_text(st, 4, t->needs[j]);
        if (ledger__write(self, st, "edge") != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_edges_insert(ledger_t *self, int64_t plan, const workplan_t *wp)
{
    for (size_t i = 0; i < wp->n_tasks; i++) {
        if (s_task_edges(self, plan, &wp->tasks[i]) != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_idem_insert(ledger_t *self, const char *submitter, const char *key,
              int64_t plan, const char *hash)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_IDEM_INSERT);
    ledger__bind_text(st, 1, submitter);
    ledger__bind_text(st, 2, key);
    ledger__bind_int(st, 3, plan);
    ledger__bind_text(st, 4, hash);
    return ledger__write(self, st, "create plan: idempotency key")
                   == LEDGER_OK
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
    if (!ledger__turn_ok(self, "create plan")) {
        return LEDGER_ERROR;
    }
    int64_t id;
    char detail[64];
    snprintf(detail, sizeof detail, "%zu tasks", wp->n_tasks);
    if (s_plan_insert(self, wp, json, hash, submitter, now_ms, &id)
            != LEDGER_OK
        || s_tasks_insert(self, id, wp, initial, now_ms) != LEDGER_OK
        || s_edges_insert(self, id, wp) != LEDGER_OK
        || (idem_key && s_idem_insert(self, submitter, idem_key, id, hash)
                            != LEDGER_OK)) {
        return LEDGER_ERROR;
    }
    *plan = id;
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = id, .actor = submitter ? submitter : "unknown",
        .kind = "submitted", .to = ledger__plan_names[LEDGER_PLAN_RUNNING],
        .detail = detail});
}

ledger_rc_t
ledger_plan_move(ledger_t *self, int64_t plan, ledger_plan_state_t from,
                 ledger_plan_state_t to, const char *actor, int64_t now_ms)
{
    assert(self && actor);
    assert((size_t) from < LEDGER__N_PLAN_STATES);
    assert((size_t) to < LEDGER__N_PLAN_STATES);
    if (!ledger__turn_ok(self, "move plan")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_MOVE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, ledger__plan_names[from]);
    ledger__bind_text(st, 3, ledger__plan_names[to]);
    ledger__bind_int(st, 4, now_ms);
    ledger_rc_t rc = ledger__write(self, st, "move plan");
    if (rc != LEDGER_OK) {
        return rc;
    }
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .actor = actor, .kind = "plan",
        .from = ledger__plan_names[from], .to = ledger__plan_names[to]});
}

int
ledger_plan_set_workplan(ledger_t *self, int64_t plan, const char *json,
                         size_t len)
{
    assert(self && json);
    if (!ledger__turn_ok(self, "set workplan")) {
        return -1;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_WORKPLAN);
    ledger__bind_int(st, 1, plan);
    ledger__bind_textn(st, 2, json, len);
    return ledger__write(self, st, "set workplan") == LEDGER_OK ? 0 : -1;
}

// --- tasks -------------------------------------------------------------

// A compare-and-set on state alone (move, reset) plus its event.
static ledger_rc_t
s_task_cas(ledger_t *self, ledger__query_t q, int64_t plan, const char *task,
           proto_task_state_t from, proto_task_state_t to, const char *actor,
           const char *detail, int64_t now_ms)
{
    assert(self && task && actor);
    // Leases change only through lease and finish, which keep invariant 1.
    assert(from != PROTO_TASK_LEASED && to != PROTO_TASK_LEASED);
    if (!ledger__turn_ok(self, "move task")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, q);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_text(st, 3, proto_task_state_name(from));
    ledger__bind_text(st, 4, proto_task_state_name(to));
    ledger__bind_int(st, 5, now_ms);
    ledger_rc_t rc = ledger__write(self, st, "move task");
    if (rc != LEDGER_OK) {
        return rc;
    }
    ledger__tally_move(self, from, to);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "task", .from = proto_task_state_name(from),
        .to = proto_task_state_name(to), .detail = detail});
}

ledger_rc_t
ledger_task_move(ledger_t *self, int64_t plan, const char *task,
                 proto_task_state_t from, proto_task_state_t to,
                 const char *actor, const char *detail, int64_t now_ms)
{
    return s_task_cas(self, LEDGER__Q_TASK_MOVE, plan, task, from, to, actor,
                      detail, now_ms);
}

ledger_rc_t
ledger_task_reset(ledger_t *self, int64_t plan, const char *task,
                  proto_task_state_t from, proto_task_state_t to,
                  const char *actor, int64_t now_ms)
{
    return s_task_cas(self, LEDGER__Q_TASK_RESET, plan, task, from, to, actor,
                      "retry with a fresh attempt budget", now_ms);
}

static ledger_rc_t
s_task_insert(ledger_t *self, int64_t plan, const wp_task_t *task,
              size_t seq, proto_task_state_t state, const char *actor,
              int64_t now_ms)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_INSERT);
    s_bind_task(st, plan, task, seq, state, now_ms);
    if (ledger__write(self, st, "add task") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    ledger__tally_insert(self, state);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task->id, .actor = actor,
        .kind = "task", .to = proto_task_state_name(state),
        .detail = "added by an amendment"});
}

ledger_rc_t
ledger_plan_add_tasks(ledger_t *self, int64_t plan, const workplan_t *wp,
                      size_t first, const proto_task_state_t *states,
                      const char *actor, int64_t now_ms)
{
    assert(self && wp && states && actor);
    if (!ledger__turn_ok(self, "add tasks")) {
        return LEDGER_ERROR;
    }
    // Rows first: the edges' foreign keys want every task they name.
    for (size_t i = first; i < wp->n_tasks; i++) {
        assert(states[i] != PROTO_TASK_LEASED);
        if (s_task_insert(self, plan, &wp->tasks[i], i, states[i], actor,
                          now_ms) != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    for (size_t i = first; i < wp->n_tasks; i++) {
        if (s_task_edges(self, plan, &wp->tasks[i]) != LEDGER_OK) {
            return LEDGER_ERROR;
        }
    }
    return LEDGER_OK;
}

ledger_rc_t
ledger_task_redefine(ledger_t *self, int64_t plan, const wp_task_t *task,
                     proto_task_state_t from, proto_task_state_t to,
                     const char *actor, int64_t now_ms)
{
    assert(self && task && actor);
    assert(from != PROTO_TASK_LEASED && to != PROTO_TASK_LEASED);
    if (!ledger__turn_ok(self, "replace task")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_REDEFINE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task->id);
    ledger__bind_text(st, 3, proto_task_state_name(from));
    ledger__bind_text(st, 4, proto_task_state_name(to));
    ledger__bind_text(st, 5, workplan_kind_name(task->kind));
    ledger__bind_int(st, 6, now_ms);
    ledger__bind_int(st, 7, s_budget(task));
    ledger_rc_t rc = ledger__write(self, st, "replace task");
    if (rc != LEDGER_OK) {
        return rc;
    }
    st = ledger__stmt(self, LEDGER__Q_EDGES_DELETE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task->id);
    rc = ledger__write(self, st, "replace task: edges");
    if (rc == LEDGER_ERROR || s_task_edges(self, plan, task) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    ledger__tally_move(self, from, to);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task->id, .actor = actor,
        .kind = "task", .from = proto_task_state_name(from),
        .to = proto_task_state_name(to),
        .detail = "replaced by an amendment, with a fresh attempt budget"});
}

ledger_rc_t
ledger_gate_deadline(ledger_t *self, int64_t plan, const char *task,
                     int64_t deadline_ms, const char *actor, int64_t now_ms)
{
    assert(self && task && actor);
    if (!ledger__turn_ok(self, "set a gate deadline")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_GATE_DEADLINE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_int(st, 3, deadline_ms);
    ledger_rc_t rc = ledger__write(self, st, "set a gate deadline");
    if (rc != LEDGER_OK) {
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "rejected at %" PRId64 " unless answered",
             deadline_ms);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "gate_deadline", .detail = detail});
}

ledger_rc_t
ledger_task_backoff(ledger_t *self, int64_t plan, const char *task,
                    int64_t not_before_ms, const char *actor, int64_t now_ms)
{
    assert(self && task && actor);
    if (!ledger__turn_ok(self, "shorten backoff")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_BACKOFF);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_int(st, 3, not_before_ms);
    ledger_rc_t rc = ledger__write(self, st, "shorten backoff");
    if (rc != LEDGER_OK) {
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "backoff now ends at %" PRId64,
             not_before_ms);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "backoff", .detail = detail});
}

static ledger_rc_t
s_attempt_start(ledger_t *self, int64_t plan, const char *task,
                int64_t token, const char *instance, const char *holder,
                int64_t now_ms, int64_t n)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_ATTEMPT_START);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_int(st, 3, token);
    ledger__bind_text(st, 4, instance);
    ledger__bind_text(st, 5, holder);
    ledger__bind_int(st, 6, now_ms);
    ledger__bind_int(st, 7, n);
    return ledger__write(self, st, "lease: attempt") == LEDGER_OK
               ? LEDGER_OK
               : LEDGER_ERROR;
}

// Three statements, none a read and none through an ephemeral table: the
// compare-and-set, the attempt row, the event.  The token comes from the
// counter ledger.c keeps (a miss takes none); used and run from the
// caller's memory (issue 9: the read they replace was ~9k instructions a
// task).
ledger_rc_t
ledger_task_lease(ledger_t *self, int64_t plan, const char *task,
                  const char *instance, const char *holder, uint32_t used,
                  uint32_t run, int64_t now_ms, uint64_t *token,
                  uint32_t *attempt)
{
    assert(self && task && instance && holder && token && attempt);
    if (!ledger__turn_ok(self, "lease")) {
        return LEDGER_ERROR;
    }
    int64_t tok = self->next_token;
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_LEASE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_text(st, 3, instance);
    ledger__bind_text(st, 4, holder);
    ledger__bind_int(st, 5, now_ms);
    ledger__bind_int(st, 6, tok);
    ledger_rc_t rc = ledger__write(self, st, "lease");
    if (rc != LEDGER_OK) {
        return rc;
    }
    int64_t taken = ledger__token_take(self);
    assert(taken == tok);
    (void) taken;
    int64_t n = run;
    if (s_attempt_start(self, plan, task, tok, instance, holder, now_ms, n)
            != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    *token = (uint64_t) tok;
    ledger__tally_move(self, PROTO_TASK_READY, PROTO_TASK_LEASED);
    // The attempt of the budget this lease is (PROTOCOL.md TASK): pushes
    // that used none (released, undelivered, cancelled) do not count, so it
    // is not n, the ledger's row number for every lease.
    *attempt = used + 1;
    char detail[256];
    snprintf(detail, sizeof detail, "attempt %" PRIu32 " (run %" PRId64
             ") to '%s' (instance %s)", *attempt, n, holder, instance);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = "broker",
        .kind = "task", .from = "ready", .to = "leased", .token = *token,
        .detail = detail});
}

bool
ledger_outcome_uses_budget(ledger_attempt_outcome_t o)
{
    return o == LEDGER_ATTEMPT_SUCCEEDED || o == LEDGER_ATTEMPT_FAILED
           || o == LEDGER_ATTEMPT_EXPIRED;
}

static ledger_rc_t
s_finish_cas(ledger_t *self, int64_t plan, const char *task, uint64_t token,
             uint32_t run, const char *instance,
             const ledger_attempt_end_t *end, proto_task_state_t to,
             int64_t not_before_ms, int64_t now_ms)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_FINISH);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_int(st, 3, (int64_t) token);
    ledger__bind_text(st, 4, instance);
    ledger__bind_text(st, 5, proto_task_state_name(to));
    ledger__bind_int(st, 6, to == PROTO_TASK_READY ? not_before_ms : 0);
    ledger__bind_int(st, 7, ledger_outcome_uses_budget(end->outcome));
    if (end->has_exit_code) {
        ledger__bind_int(st, 8, end->exit_code);
    }
    ledger__bind_sentence(st, 9, end->error);
    ledger__bind_int(st, 10, end->lost);
    ledger__bind_int(st, 11, now_ms);
    ledger__bind_int(st, 12, run);
    return ledger__write(self, st, "finish");
}

// Stores how attempt row run ended.  Output over SQLite's blob limit
// cannot reach here (the broker caps it), but is still refused rather than
// stored as NULL.
static ledger_rc_t
s_attempt_end(ledger_t *self, uint64_t token, uint32_t run,
              const ledger_attempt_end_t *e, int64_t now_ms)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_ATTEMPT_END);
    ledger__bind_int(st, 1, (int64_t) token);
    ledger__bind_text(st, 2, ledger__outcome_names[e->outcome]);
    ledger__bind_int(st, 3, now_ms);
    if (e->has_exit_code) {
        ledger__bind_int(st, 4, e->exit_code);
    }
    ledger__bind_int(st, 5, e->signal);
    ledger__bind_int(st, 6, e->timed_out);
    ledger__bind_int(st, 14, run);
    ledger__bind_sentence(st, 7, e->error);
    ledger__bind_int(st, 9, e->out_truncated);
    ledger__bind_int(st, 11, e->err_truncated);
    if (e->prompt_tokens >= 0 && e->completion_tokens >= 0) {
        ledger__bind_int(st, 12, e->prompt_tokens);
        ledger__bind_int(st, 13, e->completion_tokens);
    }
    if (sqlite3_bind_blob64(st, 8, e->out, e->out_len, SQLITE_STATIC)
            != SQLITE_OK
        || sqlite3_bind_blob64(st, 10, e->err, e->err_len, SQLITE_STATIC)
               != SQLITE_OK) {
        return ledger__fail(self, "finish: output");
    }
    // The task's CAS hit, so its open attempt must be there, numbered as
    // the caller's memory says.
    ledger_rc_t rc = ledger__write(self, st, "finish: attempt");
    if (rc == LEDGER_MISS) {
        return ledger__broken(self, "finish: attempt", "no open attempt "
                              "with that number for the lease");
    }
    return rc == LEDGER_OK ? LEDGER_OK : LEDGER_ERROR;
}

static void
s_finish_detail(char *buf, size_t len, int64_t n,
                const ledger_attempt_end_t *e)
{
    int k = snprintf(buf, len, "attempt %" PRId64 " %s", n,
                     ledger__outcome_names[e->outcome]);
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
                   uint64_t token, uint32_t run, const char *instance,
                   const ledger_attempt_end_t *end, proto_task_state_t to,
                   int64_t not_before_ms, const char *actor, int64_t now_ms)
{
    assert(self && task && end && actor);
    assert(end->outcome > LEDGER_ATTEMPT_RUNNING
           && (size_t) end->outcome < LEDGER__N_OUTCOMES);
    assert((end->outcome == LEDGER_ATTEMPT_SUCCEEDED)
           == (to == PROTO_TASK_SUCCEEDED));
    assert(to == PROTO_TASK_SUCCEEDED || to == PROTO_TASK_READY
           || to == PROTO_TASK_DEAD || to == PROTO_TASK_CANCELLED);
    if (!ledger__turn_ok(self, "finish")) {
        return LEDGER_ERROR;
    }
    ledger_rc_t rc = s_finish_cas(self, plan, task, token, run, instance,
                                  end, to, not_before_ms, now_ms);
    if (rc != LEDGER_OK) {
        return rc;
    }
    if (s_attempt_end(self, token, run, end, now_ms) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    ledger__tally_move(self, PROTO_TASK_LEASED, to);
    self->turn.ended[end->outcome]++;
    char detail[512];
    s_finish_detail(detail, sizeof detail, run, end);
    return ledger__append_event(self, &(ledger__event_t){
        .at_ms = now_ms, .plan = plan, .task = task, .actor = actor,
        .kind = "task", .from = "leased", .to = proto_task_state_name(to),
        .token = token, .detail = detail});
}

// --- drones ------------------------------------------------------------

ledger_rc_t
ledger_drone_seen(ledger_t *self, const char *instance, const char *name,
                  const char *host, uint32_t slots, const char *tags,
                  const char *secret_hash, int64_t now_ms)
{
    assert(self && instance && name);
    // ledger_drone_secret hands it back in 65 bytes.
    assert(!secret_hash || strlen(secret_hash) <= 64);
    if (!ledger__turn_ok(self, "drone seen")) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_DRONE);
    ledger__bind_text(st, 1, instance);
    ledger__bind_text(st, 2, name);
    ledger__bind_text(st, 3, host);
    ledger__bind_int(st, 4, slots);
    ledger__bind_text(st, 5, tags);
    ledger__bind_int(st, 6, now_ms);
    ledger__bind_text(st, 7, secret_hash);
    return ledger__write(self, st, "drone seen") == LEDGER_OK
               ? LEDGER_OK
               : LEDGER_ERROR;
}
