// workplan_json: the canonical JSON of a workplan, workplan_to_json().
//
// Canonical means one text per plan: a fixed key order, defaults resolved
// into every task (so the text has no "defaults"), optional fields only when
// set and env sorted by key (workplan_parse() sorts it), so equal plans give
// equal text and parsing the text back gives an equal plan.  It reads only
// the public workplan_t (common/workplan.h), reaches the JSON library only
// through common/json.h and never validates: the plan came from
// workplan_parse().  Pure: no I/O, no logging.
#include "common/workplan.h"

#include "common/json.h"

#include <assert.h>
#include <stddef.h>

static jnode_t *
s_strings_json(char *const *v, size_t n)
{
    jnode_t *arr = json_arr_new();
    for (size_t i = 0; i < n; i++) {
        json_arr_push_str(arr, v[i]);
    }
    return arr;
}

static void
s_kind_json(jnode_t *obj, const wp_task_t *t)
{
    switch (t->kind) {
    case WP_KIND_RUN: {
        jnode_t *argv = s_strings_json(t->argv, t->n_argv);
        json_obj_set_node(obj, "run", &argv);
        break;
    }
    case WP_KIND_PROMPT:
        json_obj_set_str(obj, "prompt", t->prompt);
        break;
    case WP_KIND_GATE:
        json_obj_set_str(obj, "gate", t->gate);
        break;
    }
}

// "limits" with the keys given, in a fixed order; nothing when none is.
static void
s_limits_json(jnode_t *obj, const wp_limits_t *l)
{
    if (!l->as_mb && !l->nofile && !l->nproc && !l->cpu_s) {
        return;
    }
    jnode_t *lim = json_obj_new();
    const struct {
        const char *name;
        int64_t v;
    } keys[] = {{"as_mb", l->as_mb}, {"nofile", l->nofile},
                {"nproc", l->nproc}, {"cpu_s", l->cpu_s}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (keys[i].v) {
            json_obj_set_int(lim, keys[i].name, keys[i].v);
        }
    }
    json_obj_set_node(obj, "limits", &lim);
}

// Key order: id, needs, run|prompt|gate, model, system, max_tokens,
// temperature, env, cwd, timeout_s,
// retries, priority, requires, limits.  Optional fields appear only when
// set.
static jnode_t *
s_task_json(const wp_task_t *t)
{
    jnode_t *obj = json_obj_new();
    json_obj_set_str(obj, "id", t->id);
    if (t->n_needs > 0) {
        jnode_t *needs = s_strings_json(t->needs, t->n_needs);
        json_obj_set_node(obj, "needs", &needs);
    }
    s_kind_json(obj, t);
    if (t->model) {
        json_obj_set_str(obj, "model", t->model);
    }
    if (t->system) {
        json_obj_set_str(obj, "system", t->system);
    }
    if (t->max_tokens) {
        json_obj_set_int(obj, "max_tokens", t->max_tokens);
    }
    if (t->has_temperature) {
        json_obj_set_num(obj, "temperature", t->temperature);
    }
    if (t->n_env > 0) {
        jnode_t *env = json_obj_new();
        for (size_t i = 0; i < t->n_env; i++) {
            json_obj_set_str(env, t->env[i].key, t->env[i].value);
        }
        json_obj_set_node(obj, "env", &env);
    }
    if (t->cwd) {
        json_obj_set_str(obj, "cwd", t->cwd);
    }
    json_obj_set_int(obj, "timeout_s", t->timeout_s);
    json_obj_set_int(obj, "retries", t->retries);
    json_obj_set_int(obj, "priority", t->priority);
    jnode_t *req = s_strings_json(t->requires, t->n_requires);
    json_obj_set_node(obj, "requires", &req);
    s_limits_json(obj, &t->limits);
    return obj;
}

char *
workplan_to_json(const workplan_t *wp)
{
    assert(wp);
    jnode_t *root = json_obj_new();
    json_obj_set_str(root, "name", wp->name);
    if (wp->goal) {
        json_obj_set_str(root, "goal", wp->goal);
    }
    if (wp->has_budget) {
        jnode_t *budget = json_obj_new();
        json_obj_set_int(budget, "tokens", wp->budget_tokens);
        json_obj_set_node(root, "budget", &budget);
    }
    jnode_t *tasks = json_arr_new();
    for (size_t i = 0; i < wp->n_tasks; i++) {
        jnode_t *t = s_task_json(&wp->tasks[i]);
        json_arr_push_node(tasks, &t);
    }
    json_obj_set_node(root, "tasks", &tasks);
    char *text = json_dump(root, false);
    json_destroy(&root);
    return text;
}
