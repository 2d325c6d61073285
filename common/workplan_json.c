// workplan_json: the canonical JSON of a workplan, workplan_to_json().
//
// Canonical means one text per plan: a fixed key order, defaults resolved
// into every task (so the text has no "defaults"), optional fields only when
// set and env sorted by key (workplan_parse() sorts it), so equal plans give
// equal text and parsing the text back gives an equal plan.  The bytes are
// pinned (the ledger stores and hashes them): written straight into one
// buffer with json_out (common/json.h), the same bytes a jansson tree gave,
// at a fraction of the time and with no tree.  It reads only the public
// workplan_t (common/workplan.h) and never validates: the plan came from
// workplan_parse().  Pure: no I/O, no logging.
#include "common/workplan.h"

#include "common/json.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#define S_LIT(o, lit) json_out_raw((o), (lit), sizeof(lit) - 1)

static void
s_str(json_out_t *o, const char *s)
{
    json_out_str(o, s, strlen(s));
}

// ["a","b"].
static void
s_strings(json_out_t *o, char *const *v, size_t n)
{
    S_LIT(o, "[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            S_LIT(o, ",");
        }
        s_str(o, v[i]);
    }
    S_LIT(o, "]");
}

static void
s_kind(json_out_t *o, const wp_task_t *t)
{
    switch (t->kind) {
    case WP_KIND_RUN:
        S_LIT(o, ",\"run\":");
        s_strings(o, t->argv, t->n_argv);
        break;
    case WP_KIND_PROMPT:
        S_LIT(o, ",\"prompt\":");
        s_str(o, t->prompt);
        break;
    case WP_KIND_GATE:
        S_LIT(o, ",\"gate\":");
        s_str(o, t->gate);
        break;
    }
}

// "limits" with the keys given, in a fixed order; nothing when none is.
static void
s_limits(json_out_t *o, const wp_limits_t *l)
{
    if (!l->as_mb && !l->nofile && !l->nproc && !l->cpu_s) {
        return;
    }
    const struct {
        const char *key;        // with its quotes and colon
        int64_t v;
    } keys[] = {{"\"as_mb\":", l->as_mb}, {"\"nofile\":", l->nofile},
                {"\"nproc\":", l->nproc}, {"\"cpu_s\":", l->cpu_s}};
    S_LIT(o, ",\"limits\":{");
    bool first = true;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (keys[i].v) {
            if (!first) {
                S_LIT(o, ",");
            }
            json_out_raw(o, keys[i].key, strlen(keys[i].key));
            json_out_int(o, keys[i].v);
            first = false;
        }
    }
    S_LIT(o, "}");
}

static void
s_env(json_out_t *o, const wp_task_t *t)
{
    S_LIT(o, ",\"env\":{");
    for (size_t i = 0; i < t->n_env; i++) {
        if (i > 0) {
            S_LIT(o, ",");
        }
        s_str(o, t->env[i].key);
        S_LIT(o, ":");
        s_str(o, t->env[i].value);
    }
    S_LIT(o, "}");
}

// ,"key":"value" for an optional string.
static void
s_opt_str(json_out_t *o, const char *key_colon, const char *v)
{
    if (v) {
        json_out_raw(o, key_colon, strlen(key_colon));
        s_str(o, v);
    }
}

// Key order: id, needs, run|prompt|gate, model, system, max_tokens,
// temperature, env, cwd, timeout_s, retries, priority, requires, limits.
// Optional fields appear only when set.
void
workplan_task_json(json_out_t *o, const wp_task_t *t)
{
    assert(o && t);
    S_LIT(o, "{\"id\":");
    s_str(o, t->id);
    if (t->n_needs > 0) {
        S_LIT(o, ",\"needs\":");
        s_strings(o, t->needs, t->n_needs);
    }
    s_kind(o, t);
    s_opt_str(o, ",\"model\":", t->model);
    s_opt_str(o, ",\"system\":", t->system);
    if (t->max_tokens) {
        S_LIT(o, ",\"max_tokens\":");
        json_out_int(o, t->max_tokens);
    }
    if (t->has_temperature) {
        S_LIT(o, ",\"temperature\":");
        json_out_real(o, t->temperature);
    }
    if (t->n_env > 0) {
        s_env(o, t);
    }
    s_opt_str(o, ",\"cwd\":", t->cwd);
    S_LIT(o, ",\"timeout_s\":");
    json_out_int(o, t->timeout_s);
    S_LIT(o, ",\"retries\":");
    json_out_int(o, t->retries);
    S_LIT(o, ",\"priority\":");
    json_out_int(o, t->priority);
    S_LIT(o, ",\"requires\":");
    s_strings(o, t->requires, t->n_requires);
    s_limits(o, &t->limits);
    S_LIT(o, "}");
}

void
workplan_head_json(json_out_t *o, const workplan_t *wp)
{
    assert(o && wp);
    S_LIT(o, "{\"name\":");
    s_str(o, wp->name);
    s_opt_str(o, ",\"goal\":", wp->goal);
    if (wp->has_budget) {
        S_LIT(o, ",\"budget\":{\"tokens\":");
        json_out_int(o, wp->budget_tokens);
        S_LIT(o, "}");
    }
    S_LIT(o, ",\"tasks\":[");
}

char *
workplan_to_json(const workplan_t *wp)
{
    assert(wp);
    json_out_t o = {0};
    workplan_head_json(&o, wp);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        if (i > 0) {
            S_LIT(&o, ",");
        }
        workplan_task_json(&o, &wp->tasks[i]);
    }
    S_LIT(&o, "]}");
    return json_out_take(&o, NULL);
}
