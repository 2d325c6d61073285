// amend: merging an amendment into a plan's workplan (common/amend.h).
//
// Two passes.  The first reads the amendment itself: its shape, and whether
// each task it cancels or replaces exists and has not started; those errors
// point into the amendment directly.  The second builds the amended whole
// as JSON (the plan's canonical tasks, replacements in place, additions at
// the end) and runs it through workplan_parse_stored(), the validator submit
// uses with a stored plan's budget rules;
// its error paths ("tasks[7].needs[0]") are mapped back to where the
// amendment wrote that task ("add[2].needs[0]").
#include "common/amend.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const workplan_t *plan;
    wp_ids_t *ids;               // plan's task ids, hashed
    const char *const *states;
    wp_errors_t *errs;
    size_t n_errs;               // errors this merge added
    const jval_t **repl;        // per plan task: its replacement, or NULL
    size_t *repl_at;             // per plan task: its index in "replace"
    bool *cancel;                // per plan task: cancelled
    size_t *cancel_at;           // per plan task: its index in "cancel"
    const jval_t *add;          // the "add" array, or NULL
} s_merge_t;

#define S_MAX_ERRORS 100

static void
s_err(s_merge_t *m, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_err(s_merge_t *m, const char *path, const char *fmt, ...)
{
    if (m->n_errs >= S_MAX_ERRORS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    wp_errors_t *e = m->errs;
    e->items = xrealloc(e->items, (e->count + 1) * sizeof *e->items);
    e->items[e->count++] = (wp_error_t){.path = xstrdup(path),
                                        .message = msg};
    m->n_errs++;
}

bool
amend_may_cancel(const char *state)
{
    return state && (strcmp(state, "waiting") == 0 ||
                     strcmp(state, "ready") == 0);
}

// A dead task may be replaced too: a retry with a new definition, which is
// what a replan after a failure most often needs; its attempts stay in the
// ledger.  A rejected gate may not: a person's answer is not amended away
// by a key that may be a model's.
bool
amend_may_replace(const char *state)
{
    return amend_may_cancel(state) ||
           (state && (strcmp(state, "blocked") == 0 ||
                      strcmp(state, "dead") == 0));
}

// The plan task an amendment names at path, or -1 (and an error).
static long
s_plan_task(s_merge_t *m, const char *path, const char *id, bool cancel)
{
    if (!id) {
        s_err(m, path, cancel ? "expected the id of a task to cancel"
                              : "missing required field 'id' (the task to "
                                "replace)");
        return -1;
    }
    long idx = workplan_ids_find(m->ids, id);
    if (idx < 0) {
        s_err(m, path, "'%.64s' is not a task of this plan%s", id,
              cancel ? "" : " (a new task goes in \"add\")");
        return -1;
    }
    const char *st = m->states[idx];
    if (cancel ? !amend_may_cancel(st) : !amend_may_replace(st)) {
        s_err(m, path, "task '%s' is %s: only a task that has not started "
                       "(%s) can be %s", id, st ? st : "in an unknown state",
              cancel ? "waiting or ready" : "waiting, ready or blocked) or "
                                            "is dead (a retry with a new "
                                            "definition",
              cancel ? "cancelled" : "replaced");
        return -1;
    }
    return idx;
}

static void
s_read_replace(s_merge_t *m, const jval_t *arr)
{
    for (size_t k = 0; k < jval_size(arr); k++) {
        const jval_t *t = jval_at(arr, k);
        char path[64];
        snprintf(path, sizeof path, "replace[%zu]%s", k,
                 jval_type(t) == JSON_T_OBJECT ? ".id" : "");
        const char *id = jval_str(jval_get(t, "id"));
        long idx = s_plan_task(m, path, id, false);
        if (idx < 0) {
            continue;
        }
        if (m->repl[idx]) {
            s_err(m, path, "task '%s' is replaced twice (first at "
                           "replace[%zu])", id, m->repl_at[idx]);
            continue;
        }
        m->repl[idx] = t;
        m->repl_at[idx] = k;
    }
}

static void
s_read_cancel(s_merge_t *m, const jval_t *arr)
{
    for (size_t k = 0; k < jval_size(arr); k++) {
        char path[64];
        snprintf(path, sizeof path, "cancel[%zu]", k);
        const char *id = jval_str(jval_at(arr, k));
        long idx = s_plan_task(m, path, id, true);
        if (idx < 0) {
            continue;
        }
        if (m->cancel[idx]) {
            s_err(m, path, "task '%s' is cancelled twice (first at "
                           "cancel[%zu])", id, m->cancel_at[idx]);
        } else if (m->repl[idx]) {
            s_err(m, path, "task '%s' is both cancelled and replaced (at "
                           "replace[%zu])", id, m->repl_at[idx]);
        }
        m->cancel[idx] = true;
        m->cancel_at[idx] = k;
    }
}

// Pass 1: the amendment's own shape and the tasks it names.
static void
s_read(s_merge_t *m, const jval_t *root)
{
    if (jval_type(root) != JSON_T_OBJECT) {
        s_err(m, "", "an amendment is a JSON object with \"add\", "
                     "\"cancel\" and/or \"replace\"");
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < jval_size(root); i++) {
        const char *key = jval_key(root, i);
        const jval_t *val = jval_at(root, i);
        if (strcmp(key, "add") != 0 && strcmp(key, "cancel") != 0 &&
            strcmp(key, "replace") != 0) {
            s_err(m, key, "unknown field (an amendment has \"add\", "
                          "\"cancel\" and \"replace\")");
        } else if (jval_type(val) != JSON_T_ARRAY) {
            s_err(m, key, "expected an array");
        } else {
            total += jval_size(val);
        }
    }
    if (m->n_errs) {
        return;
    }
    if (total == 0) {
        s_err(m, "", "the amendment adds, cancels and replaces nothing");
        return;
    }
    s_read_replace(m, jval_get(root, "replace"));
    s_read_cancel(m, jval_get(root, "cancel"));
    m->add = jval_get(root, "add");
}

// The amended whole: the plan's canonical JSON with its tasks array
// rebuilt, written in one pass (no tree: a plan may hold 1M tasks).
// Caller frees.
static char *
s_whole(const s_merge_t *m, size_t *len)
{
    json_out_t o = {0};
    workplan_head_json(&o, m->plan);
    for (size_t i = 0; i < m->plan->n_tasks; i++) {
        if (i > 0) {
            json_out_raw(&o, ",", 1);
        }
        if (m->repl[i]) {
            json_out_jval(&o, m->repl[i]);
        } else {
            workplan_task_json(&o, &m->plan->tasks[i]);
        }
    }
    for (size_t k = 0; k < jval_size(m->add); k++) {
        if (k > 0 || m->plan->n_tasks > 0) {
            json_out_raw(&o, ",", 1);
        }
        json_out_jval(&o, jval_at(m->add, k));
    }
    json_out_raw(&o, "]}", 2);
    return json_out_take(&o, len);
}

// "tasks[N]rest" of the amended whole -> where the amendment wrote task N.
static char *
s_map_path(const s_merge_t *m, const char *path)
{
    size_t n;
    int used = 0;
    if (sscanf(path, "tasks[%zu]%n", &n, &used) != 1 || used == 0) {
        return xstrdup(path);
    }
    const char *rest = path + used;
    size_t n_old = m->plan->n_tasks;
    if (n >= n_old) {
        return xasprintf("add[%zu]%s", n - n_old, rest);
    }
    if (m->repl[n]) {
        return xasprintf("replace[%zu]%s", m->repl_at[n], rest);
    }
    return xasprintf("plan.tasks[%zu]%s", n, rest);
}

// Pass 2: the amended whole through the workplan validator, with the rules
// for a stored plan: an operator may have lowered its budget below what a
// prompt task reserves (`budget PLAN N`), which must not make every
// amendment of it invalid.
static workplan_t *
s_validate(s_merge_t *m)
{
    size_t len = 0;
    char *text = s_whole(m, &len);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse_take(&text, len, true, &wp, &errs) < 0) {
        for (size_t i = 0; i < errs.count; i++) {
            char *path = s_map_path(m, errs.items[i].path);
            s_err(m, path, "%s", errs.items[i].message);
            free(path);
        }
    }
    wp_errors_release(&errs);
    return wp;
}

static size_t *
s_indexes(const bool *set, const jval_t **set2, size_t n, size_t *count)
{
    size_t *v = xcalloc(n ? n : 1, sizeof *v);
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if (set ? set[i] : set2[i] != NULL) {
            v[(*count)++] = i;
        }
    }
    return v;
}

static amend_t *
s_result(const s_merge_t *m, workplan_t **wp)
{
    amend_t *a = xcalloc(1, sizeof *a);
    a->wp = *wp;
    *wp = NULL;
    a->json = workplan_to_json(a->wp);
    a->n_old = m->plan->n_tasks;
    a->cancelled = s_indexes(m->cancel, NULL, a->n_old, &a->n_cancelled);
    a->replaced = s_indexes(NULL, m->repl, a->n_old, &a->n_replaced);
    return a;
}

int
amend_merge(const workplan_t *plan, const char *const *states,
            const char *text, size_t len, amend_t **out, wp_errors_t *errs)
{
    assert(plan && states && text && out && errs);
    *out = NULL;
    size_t n = plan->n_tasks;
    s_merge_t m = {.plan = plan, .ids = workplan_ids_new(plan),
                   .states = states, .errs = errs};
    m.repl = xcalloc(n ? n : 1, sizeof *m.repl);
    m.repl_at = xcalloc(n ? n : 1, sizeof *m.repl_at);
    m.cancel = xcalloc(n ? n : 1, sizeof *m.cancel);
    m.cancel_at = xcalloc(n ? n : 1, sizeof *m.cancel_at);
    char jerr[160];
    jdoc_t *doc = jdoc_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        s_err(&m, "", "not JSON: %s", jerr);
    } else {
        s_read(&m, jdoc_root(doc));
    }
    workplan_t *wp = m.n_errs ? NULL : s_validate(&m);
    if (wp && !m.n_errs) {
        *out = s_result(&m, &wp);
    }
    workplan_destroy(&wp);
    jdoc_destroy(&doc);
    free(m.repl);
    free(m.repl_at);
    free(m.cancel);
    free(m.cancel_at);
    workplan_ids_destroy(&m.ids);
    return *out ? 0 : -1;
}

void
amend_destroy(amend_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    amend_t *a = *self_p;
    workplan_destroy(&a->wp);
    free(a->json);
    free(a->cancelled);
    free(a->replaced);
    free(a);
    *self_p = NULL;
}

// "key":["id",...]: the tasks at idx[0..n-1], then tasks from..to-1.
static void
s_ids(json_out_t *o, const char *key, const workplan_t *wp,
      const size_t *idx, size_t n, size_t from, size_t to)
{
    json_out_str(o, key, strlen(key));
    json_out_raw(o, ":[", 2);
    bool first = true;
    for (size_t k = 0; k < n + (to - from); k++) {
        const char *id = wp->tasks[k < n ? idx[k] : from + (k - n)].id;
        if (!first) {
            json_out_raw(o, ",", 1);
        }
        json_out_str(o, id, strlen(id));
        first = false;
    }
    json_out_raw(o, "]", 1);
}

char *
amend_summary_json(const amend_t *a)
{
    assert(a);
    json_out_t o = {0};
    json_out_raw(&o, "{", 1);
    s_ids(&o, "added", a->wp, NULL, 0, a->n_old, a->wp->n_tasks);
    json_out_raw(&o, ",", 1);
    s_ids(&o, "cancelled", a->wp, a->cancelled, a->n_cancelled, 0, 0);
    json_out_raw(&o, ",", 1);
    s_ids(&o, "replaced", a->wp, a->replaced, a->n_replaced, 0, 0);
    json_out_raw(&o, "}", 1);
    return json_out_take(&o, NULL);
}
