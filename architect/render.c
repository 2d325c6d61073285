// render: status for people (aligned tables) and for scripts (JSON).
#include "architect/arch.h"

#include "common/clock.h"
#include "common/json.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t
s_total(const proto_plan_info_t *p)
{
    uint32_t n = 0;
    for (int i = 0; i < PROTO_TASK__COUNT; i++) {
        n += p->counts[i];
    }
    return n;
}

static void
s_age(int64_t ms, char *buf, size_t len)
{
    int64_t s = ms / 1000;
    if (s < 120) {
        snprintf(buf, len, "%llds", (long long) s);
    } else if (s < 7200) {
        snprintf(buf, len, "%lldm", (long long) (s / 60));
    } else if (s < 172800) {
        snprintf(buf, len, "%lldh", (long long) (s / 3600));
    } else {
        snprintf(buf, len, "%lldd", (long long) (s / 86400));
    }
}

// A wall-clock time as UTC HH:MM:SS, "-" for none (0).
static void
s_clock(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&secs, &tm)) {
        snprintf(buf, len, "-");
        return;
    }
    strftime(buf, len, "%H:%M:%S", &tm);
}

// A duration to the tenth of a second below a minute ("1.3s"), then
// "4m05s", "2h07m"; "-" for a task that never ran.
static void
s_took(const proto_task_info_t *t, char *buf, size_t len)
{
    int64_t ms = t->duration_ms, s = ms / 1000;
    if (t->started_ms <= 0) {
        snprintf(buf, len, "-");
    } else if (s < 60) {
        snprintf(buf, len, "%lld.%llds", (long long) s,
                 (long long) (ms % 1000 / 100));
    } else if (s < 3600) {
        snprintf(buf, len, "%lldm%02llds", (long long) (s / 60),
                 (long long) (s % 60));
    } else {
        snprintf(buf, len, "%lldh%02lldm", (long long) (s / 3600),
                 (long long) (s % 3600 / 60));
    }
}

// "3 (1/3)": the latest attempt's number (never reset, what output
// --attempt takes), then attempts used of the current budget.
static void
s_attempt(const proto_task_info_t *t, char *buf, size_t len)
{
    if (t->kind && strcmp(t->kind, "gate") == 0) {
        snprintf(buf, len, "-");  // a person answers it: no attempts
    } else if (t->attempt_budget) {
        snprintf(buf, len, "%u (%u/%u)", t->attempt, t->attempts,
                 t->attempt_budget);
    } else {
        snprintf(buf, len, "%u (%u)", t->attempt, t->attempts);
    }
}

char *
render_progress(const proto_plan_info_t *p)
{
    char parts[512] = "";
    size_t o = 0;
    for (int i = 0; i < PROTO_TASK__COUNT && o < sizeof parts - 64; i++) {
        if (p->counts[i] && i != PROTO_TASK_SUCCEEDED) {
            o += (size_t) snprintf(parts + o, sizeof parts - o, ", %u %s",
                                   p->counts[i],
                                   proto_task_state_name((proto_task_state_t)
                                                             i));
        }
    }
    return xasprintf("plan %lld '%s': %s, %u/%u succeeded%s",
                     (long long) p->id, p->name ? p->name : "",
                     p->state ? p->state : "?",
                     p->counts[PROTO_TASK_SUCCEEDED], s_total(p), parts);
}

// Joins v with sep into buf, cut with "..." when it does not fit.
static void
s_join(char *buf, size_t len, const char *const *v, size_t n,
       const char *sep)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? sep : "", v[i]);
        used += w > 0 ? (size_t) w : 0;
    }
    if (used >= len && len > 4) {
        memcpy(buf + len - 4, "...", 4);
    }
}

// "PLAN/TASK, ..." for what a drone's leases run.
static void
s_drone_tasks(char *buf, size_t len, const proto_drone_info_t *d)
{
    char **items = xcalloc(d->n_tasks + 1, sizeof *items);
    for (size_t k = 0; k < d->n_tasks; k++) {
        items[k] = xasprintf("%lld/%s", (long long) d->tasks[k].plan,
                             d->tasks[k].task);
    }
    s_join(buf, len, (const char *const *) items, d->n_tasks, ", ");
    for (size_t k = 0; k < d->n_tasks; k++) {
        free(items[k]);
    }
    free(items);
    if (d->n_tasks == 0) {
        snprintf(buf, len, "-");
    }
}

// One drone: short instance id (the first 8 characters; --json has it
// whole), key name, host, slots used/total, tags and its tasks.
static void
s_drone_line(FILE *out, const proto_drone_info_t *d)
{
    char tags[256], tasks[512], slots[32];
    s_join(tags, sizeof tags, (const char *const *) d->tags.items,
           d->tags.count, ",");
    s_drone_tasks(tasks, sizeof tasks, d);
    snprintf(slots, sizeof slots, "%u/%u", d->leases, d->slots);
    fprintf(out, "%-8.8s  %-16s %-16s %-7s %-16s %s%s%s\n", d->instance,
            d->name ? d->name : "", d->host && d->host[0] ? d->host : "-",
            slots, tags[0] ? tags : "-", tasks,
            d->draining ? " (draining)" : "",
            d->quarantined ? " (quarantined)" : "");
}

void
render_overview(FILE *out, const proto_status_ok_t *st, int64_t now_ms)
{
    fprintf(out, "%-6s %-10s %-11s %-12s %-6s %s\n", "PLAN", "STATE",
            "SUCCEEDED", "SUBMITTER", "AGE", "NAME");
    for (size_t i = 0; i < st->n_plans; i++) {
        const proto_plan_info_t *p = &st->plans[i];
        char done[32], age[32];
        snprintf(done, sizeof done, "%u/%u", p->counts[PROTO_TASK_SUCCEEDED],
                 s_total(p));
        s_age(now_ms - p->created_ms, age, sizeof age);
        fprintf(out, "%-6lld %-10s %-11s %-12s %-6s %s\n", (long long) p->id,
                p->state, done, p->submitted_by ? p->submitted_by : "", age,
                p->name ? p->name : "");
    }
    if (st->n_plans == 0) {
        fprintf(out, "(no plans)\n");
    }
    fprintf(out, "\n%-8s  %-16s %-16s %-7s %-16s %s\n", "DRONE", "KEY",
            "HOST", "SLOTS", "TAGS", "TASKS");
    for (size_t i = 0; i < st->n_drones; i++) {
        s_drone_line(out, &st->drones[i]);
    }
    if (st->n_drones == 0) {
        fprintf(out, "(no drones connected)\n");
    }
}

void
render_plan(FILE *out, const proto_status_ok_t *st)
{
    if (st->n_plans > 0) {
        const proto_plan_info_t *p = &st->plans[0];
        char *line = render_progress(p);
        fprintf(out, "%s\n", line);
        free(line);
        if (p->prompt_tokens || p->completion_tokens) {
            fprintf(out, "tokens: %lld prompt + %lld completion\n",
                    (long long) p->prompt_tokens,
                    (long long) p->completion_tokens);
        }
        fputc('\n', out);
    }
    fprintf(out, "%-20s %-18s %-10s %-12s %-5s %-8s %-8s %-8s %-7s %s\n",
            "TASK", "STATE", "ATTEMPT", "DRONE", "EXIT", "READY", "STARTED",
            "ENDED", "TOOK", "NOTE");
    for (size_t i = 0; i < st->n_tasks; i++) {
        const proto_task_info_t *t = &st->tasks[i];
        char code[16] = "-";
        if (t->has_exit_code) {
            snprintf(code, sizeof code, "%d", t->exit_code);
        }
        const char *note = t->last_error        ? t->last_error
                           : t->waiting_reason ? t->waiting_reason
                                               : "";
        // A prompt task's tokens lead its note: "tokens 11+7".
        char tokens[64] = "";
        if (t->prompt_tokens || t->completion_tokens) {
            snprintf(tokens, sizeof tokens, "tokens %lld+%lld%s",
                     (long long) t->prompt_tokens,
                     (long long) t->completion_tokens, *note ? "; " : "");
        }
        char attempt[32], ready[16], started[16], ended[16], took[48];
        s_attempt(t, attempt, sizeof attempt);
        s_clock(t->ready_ms, ready, sizeof ready);
        s_clock(t->started_ms, started, sizeof started);
        s_clock(t->ended_ms, ended, sizeof ended);
        s_took(t, took, sizeof took);
        fprintf(out, "%-20s %-18s %-10s %-12s %-5s %-8s %-8s %-8s %-7s %s%s\n",
                t->id, proto_task_state_name(t->state), attempt,
                t->drone ? t->drone : "-", code, ready, started, ended, took,
                tokens, note);
    }
}

static jnode_t *
s_plan_json(const proto_plan_info_t *p)
{
    jnode_t *o = json_obj_new();
    json_obj_set_int(o, "id", p->id);
    json_obj_set_str(o, "name", p->name ? p->name : "");
    json_obj_set_str(o, "state", p->state ? p->state : "");
    json_obj_set_str(o, "submitted_by", p->submitted_by ? p->submitted_by
                                                        : "");
    json_obj_set_int(o, "created_ms", p->created_ms);
    json_obj_set_int(o, "prompt_tokens", p->prompt_tokens);
    json_obj_set_int(o, "completion_tokens", p->completion_tokens);
    if (p->finished_ms) {
        json_obj_set_int(o, "finished_ms", p->finished_ms);
    } else {
        json_obj_set_null(o, "finished_ms");
    }
    jnode_t *counts = json_obj_new();
    for (int i = 0; i < PROTO_TASK__COUNT; i++) {
        json_obj_set_int(counts, proto_task_state_name((proto_task_state_t) i),
                         p->counts[i]);
    }
    json_obj_set_node(o, "counts", &counts);
    return o;
}

static void
s_opt_str(jnode_t *o, const char *key, const char *value)
{
    if (value) {
        json_obj_set_str(o, key, value);
    } else {
        json_obj_set_null(o, key);
    }
}

// A time or duration, null when there is none.
static void
s_opt_ms(jnode_t *o, const char *key, int64_t ms, bool present)
{
    if (present) {
        json_obj_set_int(o, key, ms);
    } else {
        json_obj_set_null(o, key);
    }
}

static jnode_t *
s_task_json(const proto_task_info_t *t)
{
    jnode_t *o = json_obj_new();
    json_obj_set_str(o, "id", t->id);
    json_obj_set_str(o, "state", proto_task_state_name(t->state));
    s_opt_str(o, "kind", t->kind);
    json_obj_set_int(o, "attempts", t->attempts);
    json_obj_set_int(o, "attempt", t->attempt);
    json_obj_set_int(o, "attempt_budget", t->attempt_budget);
    s_opt_ms(o, "ready_ms", t->ready_ms, t->ready_ms > 0);
    s_opt_ms(o, "started_ms", t->started_ms, t->started_ms > 0);
    s_opt_ms(o, "ended_ms", t->ended_ms, t->ended_ms > 0);
    s_opt_ms(o, "duration_ms", t->duration_ms, t->started_ms > 0);
    s_opt_str(o, "drone", t->drone);
    if (t->has_exit_code) {
        json_obj_set_int(o, "exit_code", t->exit_code);
    } else {
        json_obj_set_null(o, "exit_code");
    }
    s_opt_str(o, "last_error", t->last_error);
    s_opt_str(o, "waiting_reason", t->waiting_reason);
    json_obj_set_int(o, "prompt_tokens", t->prompt_tokens);
    json_obj_set_int(o, "completion_tokens", t->completion_tokens);
    jnode_t *needs = json_arr_new();
    for (size_t k = 0; k < t->needs.count; k++) {
        json_arr_push_str(needs, t->needs.items[k]);
    }
    json_obj_set_node(o, "needs", &needs);
    return o;
}

static jnode_t *
s_drone_json(const proto_drone_info_t *d)
{
    jnode_t *o = json_obj_new();
    json_obj_set_str(o, "instance", d->instance);
    json_obj_set_str(o, "name", d->name ? d->name : "");
    json_obj_set_str(o, "host", d->host ? d->host : "");
    json_obj_set_int(o, "slots", d->slots);
    json_obj_set_int(o, "leases", d->leases);
    json_obj_set_bool(o, "draining", d->draining);
    json_obj_set_bool(o, "quarantined", d->quarantined);
    jnode_t *tags = json_arr_new();
    for (size_t k = 0; k < d->tags.count; k++) {
        json_arr_push_str(tags, d->tags.items[k]);
    }
    json_obj_set_node(o, "tags", &tags);
    json_obj_set_int(o, "last_seen_ms", d->last_seen_ms);
    jnode_t *tasks = json_arr_new();
    for (size_t k = 0; k < d->n_tasks; k++) {
        jnode_t *t = json_obj_new();
        json_obj_set_int(t, "plan", d->tasks[k].plan);
        json_obj_set_str(t, "task", d->tasks[k].task);
        if (d->tasks[k].lease_left_ms >= 0) {
            json_obj_set_int(t, "lease_left_ms", d->tasks[k].lease_left_ms);
        }
        json_arr_push_node(tasks, &t);
    }
    json_obj_set_node(o, "tasks", &tasks);
    return o;
}

char *
render_json(const proto_status_ok_t *st, bool plan)
{
    jnode_t *root;
    if (plan && st->n_plans > 0) {
        root = s_plan_json(&st->plans[0]);
        jnode_t *tasks = json_arr_new();
        for (size_t i = 0; i < st->n_tasks; i++) {
            jnode_t *t = s_task_json(&st->tasks[i]);
            json_arr_push_node(tasks, &t);
        }
        json_obj_set_node(root, "tasks", &tasks);
    } else {
        root = json_obj_new();
        jnode_t *plans = json_arr_new(), *drones = json_arr_new();
        for (size_t i = 0; i < st->n_plans; i++) {
            jnode_t *p = s_plan_json(&st->plans[i]);
            json_arr_push_node(plans, &p);
        }
        for (size_t i = 0; i < st->n_drones; i++) {
            jnode_t *d = s_drone_json(&st->drones[i]);
            json_arr_push_node(drones, &d);
        }
        json_obj_set_node(root, "plans", &plans);
        json_obj_set_node(root, "drones", &drones);
    }
    char *text = json_dump(root, true);
    json_destroy(&root);
    return text;
}

char *
render_error_json(const char *code, const char *message,
                  const proto_strv_t *details)
{
    jnode_t *root = json_obj_new(), *e = json_obj_new();
    json_obj_set_str(e, "code", code);
    json_obj_set_str(e, "message", message);
    if (details && details->count > 0) {
        jnode_t *list = json_arr_new();
        for (size_t i = 0; i < details->count; i++) {
            json_arr_push_str(list, details->items[i]);
        }
        json_obj_set_node(e, "details", &list);
    }
    json_obj_set_node(root, "error", &e);
    char *text = json_dump(root, true);
    json_destroy(&root);
    return text;
}
