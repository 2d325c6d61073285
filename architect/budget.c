// budget: `budget PLAN N|--none` — an operator sets a running plan's token
// budget (BUDGET).  Raising it lets prompt tasks the old budget held back
// run; lowering it below what is used and reserved is allowed and only
// stops further prompt tasks, which the command says.  The broker refuses
// any key but an operator's: a planner runs with a submitter key and must
// not raise its own spending.
#include "architect/arch.h"
#include "common/cfg.h"
#include "common/json.h"
#include "common/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define S_USAGE "budget PLAN N | budget PLAN --none [--json]"

typedef struct {
    bool none;
    bool json;
} s_budget_opts_t;

static const cfg_option_t s_budget_opts[] = {
    {"none", NULL, CFG_BOOL, offsetof(s_budget_opts_t, none), NULL, NULL,
     "remove the plan's budget (no N)", 0, 0},
    {"json", NULL, CFG_BOOL, offsetof(s_budget_opts_t, json), NULL, NULL,
     "the result as one JSON object", 0, 0},
    CFG_END,
};

static const char s_help[] =
    S_USAGE "\n\n"
    "Sets the token budget of running plan PLAN to N (0: nothing more may be\n"
    "spent), or removes it with --none.  Prompt tasks the old budget held\n"
    "back are dispatched at once when the new one lets them.  A budget below\n"
    "what the plan has used and reserved is allowed: it stops further prompt\n"
    "tasks.  Operator keys only.  Exit 0: set; 1: refused (plan not\n"
    "running); 3: cannot connect, or not an operator key; 4: no such plan;\n"
    "64: usage.";

// N from s: 0..PROTO_BUDGET_MAX; -1 after reporting a usage error.
static int64_t
s_tokens(const arch_t *a, const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || s[0] == '+' || s[0] == '-' || v < 0 ||
        v > PROTO_BUDGET_MAX) {
        arch_fail(a, ARCH_EXIT_USAGE, "usage", "budget '%s': want a number "
                  "of tokens from 0 to %lld, or --none", s,
                  (long long) PROTO_BUDGET_MAX);
        return -1;
    }
    return v;
}

static void
s_set_tokens(jnode_t *o, const char *key, int64_t tokens)
{
    if (tokens < 0) {
        json_obj_set_null(o, key);
    } else {
        json_obj_set_int(o, key, tokens);
    }
}

static void
s_print_json(const proto_budget_ok_t *r, bool spent)
{
    jnode_t *o = json_obj_new();
    json_obj_set_int(o, "plan", r->plan);
    s_set_tokens(o, "old_tokens", r->old_tokens);
    s_set_tokens(o, "new_tokens", r->new_tokens);
    json_obj_set_int(o, "used", r->used);
    json_obj_set_int(o, "reserved", r->reserved);
    json_obj_set_bool(o, "spent", spent);
    char *text = json_dump(o, true);
    printf("%s\n", text);
    free(text);
    json_destroy(&o);
}

static void
s_print_text(const proto_budget_ok_t *r, bool spent)
{
    char old[32] = "none", now[32] = "none";
    if (r->old_tokens >= 0) {
        snprintf(old, sizeof old, "%" PRId64, r->old_tokens);
    }
    if (r->new_tokens >= 0) {
        snprintf(now, sizeof now, "%" PRId64, r->new_tokens);
    }
    printf("plan %" PRId64 " token budget: %s -> %s (used %" PRId64
           ", %" PRId64 " reserved by running prompt tasks)\n",
           r->plan, old, now, r->used, r->reserved);
    if (spent) {
        fprintf(stderr, "note: plan %" PRId64 " has used and reserved %"
                PRId64 " tokens, not below its new budget of %s: no further "
                "prompt task is dispatched until it is raised\n", r->plan,
                r->used + r->reserved, now);
    }
}

int
cmd_budget(arch_t *a, int argc, char **argv)
{
    s_budget_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_budget_opts, &o, argc, argv, &pos, s_help);
    int64_t plan = 0, tokens = -1;
    if (rc || !arch_args(a, &pos, o.none ? 1 : 2, o.none ? 1 : 2, S_USAGE) ||
        arch_parse_plan(a, pos.items[0], &plan) < 0 ||
        (!o.none && (tokens = s_tokens(a, pos.items[1])) < 0)) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    if ((rc = arch_connect(a)) != 0) {
        return rc;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_BUDGET), *reply = NULL;
    req->u.budget.plan = plan;
    req->u.budget.tokens = tokens;
    rc = arch_call(a, &req, &reply);
    proto_msg_destroy(&req);
    if (rc != 0) {
        return rc;
    }
    const proto_budget_ok_t *r = &reply->u.budget_ok;
    bool spent = r->new_tokens >= 0 && r->used + r->reserved >= r->new_tokens;
    if (o.json) {
        s_print_json(r, spent);
    } else {
        s_print_text(r, spent);
    }
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}
