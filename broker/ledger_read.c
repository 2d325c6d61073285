// ledger_read: every read of the ledger (ledger.h has the contracts).
//
// Owns the lookups the broker answers requests with (idempotency keys,
// plan state, tokens, task output, a drone's secret hash, a task's
// counters), the status reads that fill a STATUS_OK (plans with their task
// counts, tasks with their needs, attempts), the recovery load that
// rebuilds the broker's memory, and the event log read.  Reads run inside or outside a turn; strings handed to
// callbacks are borrowed for the call, the rest are copies the caller
// frees.
//
// This file never writes (ledger_write.c).  A callback must not call back
// into the ledger: its statement is mid-read until the loop ends, which
// ledger__stmt() asserts.
#include "broker/ledger_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- plans -------------------------------------------------------------

const char *
ledger_plan_state_name(ledger_plan_state_t s)
{
    return (size_t) s < LEDGER__N_PLAN_STATES ? ledger__plan_names[s] : "?";
}

const char *
ledger_outcome_name(ledger_attempt_outcome_t o)
{
    return (size_t) o < LEDGER__N_OUTCOMES ? ledger__outcome_names[o] : "?";
}

ledger_rc_t
ledger_idem_get(ledger_t *self, const char *submitter, const char *key,
                int64_t *plan, char **hash)
{
    assert(self && submitter && key && plan && hash);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_IDEM_GET);
    ledger__bind_text(st, 1, submitter);
    ledger__bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *plan = sqlite3_column_int64(st, 0);
        *hash = ledger__col_dup(st, 1);
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, "idempotency lookup") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

ledger_rc_t
ledger_plan_state(ledger_t *self, int64_t plan, ledger_plan_state_t *state)
{
    assert(self && state);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_STATE);
    ledger__bind_int(st, 1, plan);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int s = ledger__parse(ledger__plan_names, LEDGER__N_PLAN_STATES,
                              ledger__col_text(st, 0));
        sqlite3_reset(st);
        assert(s >= 0);  // the schema's CHECK allows only these names
        *state = (ledger_plan_state_t) s;
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, "plan state") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

ledger_rc_t
ledger_plan_json(ledger_t *self, int64_t plan, char **json)
{
    assert(self && json);
    *json = NULL;
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_JSON);
    ledger__bind_int(st, 1, plan);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *text = ledger__col_text(st, 0);
        *json = text ? xstrdup(text) : NULL;
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, "plan workplan") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- tasks -------------------------------------------------------------

ledger_rc_t
ledger_token_lookup(ledger_t *self, uint64_t token, int64_t *plan,
                    char **task, ledger_attempt_outcome_t *outcome)
{
    assert(self && plan && task && outcome);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TOKEN_LOOKUP);
    ledger__bind_int(st, 1, (int64_t) token);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *plan = sqlite3_column_int64(st, 0);
        *task = ledger__col_dup(st, 1);
        int o = ledger__parse(ledger__outcome_names, LEDGER__N_OUTCOMES,
                              ledger__col_text(st, 2));
        assert(o >= 0);  // the schema's CHECK allows only these names
        *outcome = (ledger_attempt_outcome_t) o;
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, "token lookup") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

ledger_rc_t
ledger_task_output(ledger_t *self, int64_t plan, const char *task,
                   uint32_t attempt, bool want_stderr, uint8_t **data,
                   size_t *len, bool *truncated, uint32_t *attempt_out)
{
    assert(self && task && data && len && truncated && attempt_out);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_OUTPUT);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    ledger__bind_int(st, 3, attempt);
    ledger__bind_int(st, 4, want_stderr);
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
    return ledger__read_end(self, st, rc, "task output") == LEDGER_OK
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
    p->name = ledger__col_dup(st, 1);
    p->state = ledger__col_dup(st, 2);
    p->submitted_by = ledger__col_dup(st, 3);
    p->created_ms = sqlite3_column_int64(st, 4);
    p->finished_ms = sqlite3_column_int64(st, 5);  // NULL reads as 0
    p->prompt_tokens = sqlite3_column_int64(st, 6);
    p->completion_tokens = sqlite3_column_int64(st, 7);
}

ledger_rc_t
ledger_plan_used(ledger_t *self, int64_t plan, int64_t *used)
{
    assert(self && used);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_USED);
    ledger__bind_int(st, 1, plan);
    return ledger__returning(self, st, "plan tokens", used);
}

ledger_rc_t
ledger_plan_counts(ledger_t *self, proto_plan_info_t *p)
{
    assert(self && p);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_PLAN_COUNTS);
    ledger__bind_int(st, 1, p->id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        proto_task_state_t s;
        if (proto_task_state_parse(ledger__col_text(st, 0), &s) == 0) {
            p->counts[s] = (uint32_t) sqlite3_column_int64(st, 1);
        }
    }
    return ledger__read_end(self, st, rc, "plan counts");
}

// Runs a "SELECT state, count(*) ... GROUP BY state" into counts[i] for
// the state named names[i].
static ledger_rc_t
s_state_counts(ledger_t *self, ledger__query_t q, const char *const *names,
               size_t n, int64_t *counts)
{
    sqlite3_stmt *st = ledger__stmt(self, q);
    memset(counts, 0, n * sizeof *counts);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int i = ledger__parse(names, n, ledger__col_text(st, 0));
        if (i >= 0) {
            counts[i] = sqlite3_column_int64(st, 1);
        }
    }
    return ledger__read_end(self, st, rc, "state counts");
}

ledger_rc_t
ledger_state_counts(ledger_t *self, int64_t tasks[PROTO_TASK__COUNT],
                    int64_t plans[LEDGER_PLAN_CANCELLED + 1])
{
    assert(self && tasks && plans);
    const char *names[PROTO_TASK__COUNT];
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        names[i] = proto_task_state_name((proto_task_state_t) i);
    }
    if (!self->in_state_known) {
        // Once per open.  The scan sees the open turn's own writes, which
        // its commit will add again: take them out.
        if (s_state_counts(self, LEDGER__Q_TASK_STATES, names,
                           PROTO_TASK__COUNT, self->in_state) != LEDGER_OK) {
            return LEDGER_ERROR;
        }
        for (size_t i = 0; self->in_turn && i < PROTO_TASK__COUNT; i++) {
            self->in_state[i] -= self->turn_in_state[i];
        }
        self->in_state_known = true;
    }
    memcpy(tasks, self->in_state, sizeof self->in_state);
    return s_state_counts(self, LEDGER__Q_PLAN_STATES, ledger__plan_names,
                          LEDGER__N_PLAN_STATES, plans);
}

ledger_rc_t
ledger_plan_rows(ledger_t *self, int64_t plan, size_t limit,
                 proto_status_ok_t *out)
{
    assert(self && out && out->n_plans == 0);
    sqlite3_stmt *st =
        ledger__stmt(self, plan ? LEDGER__Q_PLAN_ONE : LEDGER__Q_PLANS);
    // LIMIT -1 is SQLite's "no limit"; limit 0 means all plans.
    ledger__bind_int(st, 1, plan ? plan : limit ? (int64_t) limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s_plan_row(out, st);
    }
    if (ledger__read_end(self, st, rc, "plans") != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    return plan && out->n_plans == 0 ? LEDGER_MISS : LEDGER_OK;
}

ledger_rc_t
ledger_plans(ledger_t *self, int64_t plan, size_t limit,
             proto_status_ok_t *out)
{
    ledger_rc_t rc = ledger_plan_rows(self, plan, limit, out);
    for (size_t i = 0; rc == LEDGER_OK && i < out->n_plans; i++) {
        rc = ledger_plan_counts(self, &out->plans[i]);
    }
    return rc;
}

static void
s_task_row(proto_task_info_t *t, sqlite3_stmt *st)
{
    memset(t, 0, sizeof *t);
    t->id = ledger__col_dup(st, 0);
    if (proto_task_state_parse(ledger__col_text(st, 1), &t->state) != 0) {
        assert(!"unknown task state in the ledger");
    }
    t->kind = ledger__col_dup(st, 2);
    t->attempts = (uint32_t) sqlite3_column_int64(st, 3);
    t->drone = ledger__col_dup(st, 4);
    t->has_exit_code = sqlite3_column_type(st, 5) != SQLITE_NULL;
    t->exit_code = sqlite3_column_int(st, 5);
    t->last_error = ledger__col_dup(st, 6);
    t->prompt_tokens = sqlite3_column_int64(st, 7);
    t->completion_tokens = sqlite3_column_int64(st, 8);
    t->ready_ms = sqlite3_column_int64(st, 9);     // NULL reads as 0: none
    t->attempt = (uint32_t) sqlite3_column_int64(st, 10);
    t->started_ms = sqlite3_column_int64(st, 11);
    t->ended_ms = sqlite3_column_int64(st, 12);
    t->attempt_budget = (uint32_t) sqlite3_column_int64(st, 13);
}

// Fills the needs of tasks[0..n), which start at seq first.
static ledger_rc_t
s_task_needs(ledger_t *self, int64_t plan, int64_t first,
             proto_task_info_t *tasks, size_t n)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_NEEDS);
    ledger__bind_int(st, 1, plan);
    ledger__bind_int(st, 2, first);
    ledger__bind_int(st, 3, first + (int64_t) n);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        // seq is the task's index in the workplan: tasks[seq - first].
        int64_t i = sqlite3_column_int64(st, 0) - first;
        if (i >= 0 && (size_t) i < n) {
            proto_strv_push(&tasks[i].needs, ledger__col_text(st, 1));
        }
    }
    return ledger__read_end(self, st, rc, "task needs");
}

static void
s_task_free(proto_task_info_t *t)
{
    free(t->id);
    free(t->kind);
    free(t->drone);
    free(t->last_error);
    free(t->waiting_reason);
    proto_strv_release(&t->needs);
}

// Keeps the tasks that fit in max_objects (at least one, so paging always
// moves on) and frees the rest.
static void
s_task_trim(proto_status_ok_t *out, size_t max_objects)
{
    size_t objects = 0, keep = 0;
    for (; keep < out->n_tasks; keep++) {
        objects += PROTO_TASK_INFO_OBJECTS + out->tasks[keep].needs.count;
        if (keep > 0 && objects > max_objects) {
            break;
        }
    }
    for (size_t i = keep; i < out->n_tasks; i++) {
        s_task_free(&out->tasks[i]);
    }
    out->n_tasks = keep;
}

ledger_rc_t
ledger_tasks(ledger_t *self, int64_t plan, uint32_t first,
             size_t max_objects, proto_status_ok_t *out)
{
    assert(self && out && out->n_tasks == 0 && max_objects > 0);
    int64_t count;
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_COUNT);
    ledger__bind_int(st, 1, plan);
    if (ledger__returning(self, st, "tasks", &count) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    int64_t left = count > (int64_t) first ? count - (int64_t) first : 0;
    int64_t most = (int64_t) (max_objects / PROTO_TASK_INFO_OBJECTS) + 1;
    size_t cap = (size_t) (left < most ? left : most);
    out->tasks = xcalloc(cap ? cap : 1, sizeof *out->tasks);
    st = ledger__stmt(self, LEDGER__Q_TASKS);
    ledger__bind_int(st, 1, plan);
    ledger__bind_int(st, 2, first);
    ledger__bind_int(st, 3, (int64_t) cap);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && out->n_tasks < cap) {
        s_task_row(&out->tasks[out->n_tasks++], st);
    }
    if (rc == SQLITE_ROW) {
        rc = SQLITE_DONE;  // cannot happen inside one read transaction
    }
    if (ledger__read_end(self, st, rc, "tasks") != LEDGER_OK ||
        s_task_needs(self, plan, first, out->tasks, out->n_tasks) !=
            LEDGER_OK) {
        return LEDGER_ERROR;
    }
    s_task_trim(out, max_objects);
    out->more = (int64_t) first + (int64_t) out->n_tasks < count;
    return LEDGER_OK;
}

ledger_rc_t
ledger_attempts(ledger_t *self, int64_t plan, const char *task,
                void (*cb)(void *arg, const ledger_attempt_row_t *row),
                void *arg)
{
    assert(self && cb);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_ATTEMPTS);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int o = ledger__parse(ledger__outcome_names, LEDGER__N_OUTCOMES,
                              ledger__col_text(st, 6));
        ledger_attempt_row_t row = {
            .plan = sqlite3_column_int64(st, 0),
            .task = ledger__col_text(st, 1),
            .n = (uint32_t) sqlite3_column_int64(st, 2),
            .token = (uint64_t) sqlite3_column_int64(st, 3),
            .instance = ledger__col_text(st, 4),
            .holder = ledger__col_text(st, 5),
            .outcome = o < 0 ? LEDGER_ATTEMPT_RUNNING
                             : (ledger_attempt_outcome_t) o,
            .started_ms = sqlite3_column_int64(st, 7),
            .ended_ms = sqlite3_column_int64(st, 8),
            .has_exit_code = sqlite3_column_type(st, 9) != SQLITE_NULL,
            .exit_code = sqlite3_column_int(st, 9),
            .error = ledger__col_text(st, 10),
        };
        cb(arg, &row);
    }
    return ledger__read_end(self, st, rc, "attempts");
}

static int
s_cmp_id(const void *x, const void *y)
{
    int64_t a = *(const int64_t *) x, c = *(const int64_t *) y;
    return (a > c) - (a < c);
}

ledger_rc_t
ledger_recent_plans(ledger_t *self, int64_t since_ms, int64_t **plans,
                    size_t *n)
{
    assert(self && plans && n);
    *plans = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_ATTEMPTS_RECENT);
    int rc;
    // Tokens grow with time, so the rows in the window come first.
    while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
           sqlite3_column_int64(st, 1) >= since_ms) {
        int64_t plan = sqlite3_column_int64(st, 0);
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++) {
            seen = (*plans)[i] == plan;
        }
        if (!seen) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 8;
                *plans = xrealloc(*plans, cap * sizeof **plans);
            }
            (*plans)[(*n)++] = plan;
        }
    }
    if (rc == SQLITE_ROW) {
        rc = SQLITE_DONE;  // stopped at the window's start
    }
    if (*n > 0) {
        qsort(*plans, *n, sizeof **plans, s_cmp_id);
    }
    return ledger__read_end(self, st, rc, "recent attempts");
}

// --- recovery ----------------------------------------------------------

static ledger_rc_t
s_load_plans(ledger_t *self, sqlite3_stmt *st,
             void (*plan_cb)(void *arg, int64_t plan, const char *json),
             void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        plan_cb(arg, sqlite3_column_int64(st, 0), ledger__col_text(st, 1));
    }
    return ledger__read_end(self, st, rc, "load plans");
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
            .task = ledger__col_text(st, 1),
            .token = (uint64_t) sqlite3_column_int64(st, 3),
            .instance = ledger__col_text(st, 4),
            .holder = ledger__col_text(st, 5),
            .lease_start_ms = sqlite3_column_int64(st, 6),
            .not_before_ms = sqlite3_column_int64(st, 7),
            .attempts_used = (uint32_t) sqlite3_column_int64(st, 8),
            .attempts_total = (uint32_t) sqlite3_column_int64(st, 9),
            .lost_leases = (uint32_t) sqlite3_column_int64(st, 10),
        };
        if (proto_task_state_parse(ledger__col_text(st, 2), &row.state) != 0) {
            assert(!"unknown task state in the ledger");
        }
        task_cb(arg, &row);
    }
    return ledger__read_end(self, st, rc, "load tasks");
}

// Each plan's tasks straight after the plan, read by a second statement
// while the plans' statement is mid-read, so the caller never has to find
// which plan a task belongs to.
ledger_rc_t
ledger_load(ledger_t *self,
            void (*plan_cb)(void *arg, int64_t plan, const char *json),
            void (*task_cb)(void *arg, const ledger_task_row_t *row),
            void *arg)
{
    assert(self && plan_cb && task_cb);
    sqlite3_stmt *plans = ledger__stmt(self, LEDGER__Q_LOAD_PLANS);
    int rc;
    while ((rc = sqlite3_step(plans)) == SQLITE_ROW) {
        int64_t plan = sqlite3_column_int64(plans, 0);
        plan_cb(arg, plan, ledger__col_text(plans, 1));
        sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_LOAD_PLAN_TASKS);
        ledger__bind_int(st, 1, plan);
        if (s_load_tasks(self, st, task_cb, arg) != LEDGER_OK) {
            sqlite3_reset(plans);
            return LEDGER_ERROR;
        }
    }
    return ledger__read_end(self, plans, rc, "load plans");
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
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_LOAD_PLAN);
    ledger__bind_int(st, 1, plan);
    if (s_load_plans(self, st, plan_cb, arg) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    st = ledger__stmt(self, LEDGER__Q_LOAD_PLAN_TASKS);
    ledger__bind_int(st, 1, plan);
    return s_load_tasks(self, st, task_cb, arg);
}

// One task's counter column (q selects it by plan and tid).
static ledger_rc_t
s_task_count(ledger_t *self, ledger__query_t q, int64_t plan,
             const char *task, uint32_t *n, const char *op)
{
    sqlite3_stmt *st = ledger__stmt(self, q);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *n = (uint32_t) sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, op) == LEDGER_OK ? LEDGER_MISS
                                                           : LEDGER_ERROR;
}

ledger_rc_t
ledger_task_attempts_used(ledger_t *self, int64_t plan, const char *task,
                          uint32_t *used)
{
    assert(self && task && used);
    return s_task_count(self, LEDGER__Q_ATTEMPTS_USED, plan, task, used,
                        "attempts used");
}

ledger_rc_t
ledger_task_lost_leases(ledger_t *self, int64_t plan, const char *task,
                        uint32_t *n)
{
    assert(self && task && n);
    return s_task_count(self, LEDGER__Q_LOST_LEASES, plan, task, n,
                        "lost leases");
}

ledger_rc_t
ledger_task_state(ledger_t *self, int64_t plan, const char *task,
                  proto_task_state_t *state)
{
    assert(self && task && state);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_TASK_STATE);
    ledger__bind_int(st, 1, plan);
    ledger__bind_text(st, 2, task);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int ok = proto_task_state_parse(ledger__col_text(st, 0), state);
        sqlite3_reset(st);
        return ok == 0 ? LEDGER_OK : LEDGER_ERROR;
    }
    return ledger__read_end(self, st, rc, "task state") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- drones ------------------------------------------------------------

ledger_rc_t
ledger_drone_secret(ledger_t *self, const char *instance, char hash[65])
{
    assert(self && instance && hash);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_DRONE_SECRET);
    ledger__bind_text(st, 1, instance);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(hash, 65, "%s", ledger__col_text(st, 0));
        sqlite3_reset(st);
        return LEDGER_OK;
    }
    return ledger__read_end(self, st, rc, "drone secret") == LEDGER_OK
               ? LEDGER_MISS
               : LEDGER_ERROR;
}

// --- events ------------------------------------------------------------

ledger_rc_t
ledger_events(ledger_t *self, int64_t plan, int64_t after,
              void (*cb)(void *arg, int64_t seq, int64_t at_ms,
                         const char *task, const char *actor,
                         const char *kind, const char *from, const char *to,
                         uint64_t token, const char *detail),
              void *arg)
{
    assert(self && cb);
    // The turn's own rows too, as a read inside it always saw them.
    if (ledger__events_flush(self) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, plan ? LEDGER__Q_EVENTS_PLAN
                                               : LEDGER__Q_EVENTS_ALL);
    ledger__bind_int(st, 1, after);
    if (plan) {
        ledger__bind_int(st, 2, plan);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
           ledger__col_text(st, 2), ledger__col_text(st, 3),
           ledger__col_text(st, 4), ledger__col_text(st, 5),
           ledger__col_text(st, 6),
           (uint64_t) sqlite3_column_int64(st, 7), ledger__col_text(st, 8));
    }
    return ledger__read_end(self, st, rc, "events");
}

static void
s_event_row(sqlite3_stmt *st, ledger_event_row_t *r)
{
    r->seq = sqlite3_column_int64(st, 0);
    r->at_ms = sqlite3_column_int64(st, 1);
    r->plan = sqlite3_column_int64(st, 2);
    r->task = ledger__col_text(st, 3);
    r->actor = ledger__col_text(st, 4);
    r->kind = ledger__col_text(st, 5);
    r->from = ledger__col_text(st, 6);
    r->to = ledger__col_text(st, 7);
    r->detail = ledger__col_text(st, 8);
}

ledger_rc_t
ledger_events_page(ledger_t *self, int64_t plan, int64_t after,
                   uint32_t limit,
                   bool (*cb)(void *arg, const ledger_event_row_t *row),
                   void *arg)
{
    assert(self && cb);
    // The turn's own rows too, as a read inside it always saw them.
    if (ledger__events_flush(self) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, plan ? LEDGER__Q_EVENTS_PAGE_PLAN
                                               : LEDGER__Q_EVENTS_PAGE_ALL);
    ledger__bind_int(st, 1, after);
    if (plan) {
        ledger__bind_int(st, 2, plan);
    }
    ledger__bind_int(st, 3, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_event_row_t row;
        s_event_row(st, &row);
        if (!cb(arg, &row)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return ledger__read_end(self, st, rc, "events");
}

ledger_rc_t
ledger_events_max(ledger_t *self, int64_t plan, int64_t *seq)
{
    assert(self && seq);
    // The turn's own rows too, as a read inside it always saw them.
    if (ledger__events_flush(self) != LEDGER_OK) {
        return LEDGER_ERROR;
    }
    sqlite3_stmt *st = ledger__stmt(self, plan ? LEDGER__Q_EVENTS_MAX_PLAN
                                               : LEDGER__Q_EVENTS_MAX_ALL);
    if (plan) {
        ledger__bind_int(st, 1, plan);
    }
    int rc = sqlite3_step(st);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    return ledger__read_end(self, st, rc == SQLITE_ROW ? SQLITE_DONE : rc,
                            "events max");
}
