// explain.c: `explain PLAN TASK` — why a task is not running (or what it
// does), as the broker sees it: one sentence, or with --json the reason,
// its code and the details that code carries (PROTOCOL.md EXPLAIN_OK).
#include "architect/arch.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    bool json;
} s_explain_opts_t;

static const cfg_option_t s_explain_opts[] = {
    {"json", NULL, CFG_BOOL, offsetof(s_explain_opts_t, json), NULL, NULL,
     "{\"reason\", \"code\", \"details\"} instead of a sentence", 0, 0},
    CFG_END,
};

static void
s_strv(jnode_t *o, const char *key, const proto_strv_t *v)
{
    if (v->count == 0) {
        return;
    }
    jnode_t *a = json_arr_new();
    for (size_t i = 0; i < v->count; i++) {
        json_arr_push_str(a, v->items[i]);
    }
    json_obj_set_node(o, key, &a);
}

static void
s_str(jnode_t *o, const char *key, const char *v)
{
    if (v) {
        json_obj_set_str(o, key, v);
    }
}

static void
s_int(jnode_t *o, const char *key, int64_t v)
{
    if (v) {
        json_obj_set_int(o, key, v);
    }
}

// The details a code carries; fields it does not use are left out.
static jnode_t *
s_details(const proto_explain_ok_t *x)
{
    jnode_t *d = json_obj_new();
    if (x->needs.count) {
        jnode_t *a = json_arr_new();
        for (size_t i = 0; i < x->needs.count; i++) {
            jnode_t *n = json_obj_new();
            json_obj_set_str(n, "task", x->needs.items[i]);
            s_str(n, "state", i < x->need_states.count
                                  ? x->need_states.items[i] : NULL);
            json_arr_push_node(a, &n);
        }
        json_obj_set_node(d, "needs", &a);
    }
    s_int(d, "more_needs", x->more_needs);
    s_strv(d, "tags", &x->tags);
    s_str(d, "drone", x->drone);
    s_str(d, "model", x->model);
    s_str(d, "blocked_by", x->blocked_by);
    s_str(d, "blocked_state", x->blocked_state);
    s_int(d, "since_ms", x->since_ms);
    s_int(d, "until_ms", x->until_ms);
    s_int(d, "last_seen_ms", x->last_seen_ms);
    s_int(d, "used", x->used);
    s_int(d, "budget", x->budget);
    s_int(d, "limit", x->limit);
    s_int(d, "in_flight", x->in_flight);
    s_int(d, "attempt", x->attempt);
    return d;
}

static void
s_print(const proto_explain_ok_t *x, bool json)
{
    if (!json) {
        // The reason quotes ids, tags and a gate's question: escaped.
        char *safe = log_escape(x->reason);
        printf("%s (%s): %s\n", x->task, x->state, safe);
        free(safe);
        return;
    }
    jnode_t *o = json_obj_new();
    json_obj_set_int(o, "plan", x->plan);
    json_obj_set_str(o, "task", x->task);
    json_obj_set_str(o, "state", x->state);
    json_obj_set_str(o, "code", x->code);
    json_obj_set_str(o, "reason", x->reason);
    jnode_t *d = s_details(x);
    json_obj_set_node(o, "details", &d);
    char *text = json_dump(o, true);
    printf("%s\n", text);
    free(text);
    json_destroy(&o);
}

int
cmd_explain(arch_t *a, int argc, char **argv)
{
    s_explain_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_explain_opts, &o, argc, argv, &pos,
                    "explain PLAN TASK [--json]\n\nSays why a task is not "
                    "running (or what it is doing), as the broker sees\nit: "
                    "what it waits for, the tag no drone offers, its backoff, "
                    "its gate,\na spent budget or a model limit, the failure "
                    "that blocks it, the drone\nthat holds it.");
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, "explain PLAN TASK [--json]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    proto_msg_t *req = proto_msg_new(PROTO_MSG_EXPLAIN), *reply = NULL;
    req->u.explain.plan = plan;
    req->u.explain.task = xstrdup(pos.items[1]);
    if ((rc = arch_connect(a)) != 0 || (rc = arch_call(a, &req, &reply))) {
        proto_msg_destroy(&req);
        return rc;
    }
    proto_msg_destroy(&req);
    s_print(&reply->u.explain_ok, o.json);
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}
