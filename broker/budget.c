// budget: BUDGET — an operator sets a running plan's token budget
// (`waggle-architect budget PLAN N`).
//
// The budget lives where the loader reads it: the plan's stored workplan.
// The change rewrites that text (ledger_plan_set_workplan) and appends a
// 'budget' event naming the key, old and new value, in the turn's one
// transaction; memory (sched's workplan) changes with it, and a failed
// commit rebuilds memory from the ledger.  Holding prompt tasks back is
// drones.c's (drones_budget_spent): this file only changes the number.
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/workplan.h"
#include "common/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.budget"

_Static_assert(PROTO_BUDGET_MAX == WORKPLAN_MAX_BUDGET,
               "the wire's budget limit is the workplan's");

// "100" or "null": a budget in the event's JSON detail.
static void
s_json_tokens(char *buf, size_t len, int64_t tokens)
{
    if (tokens < 0) {
        snprintf(buf, len, "null");
    } else {
        snprintf(buf, len, "%" PRId64, tokens);
    }
}

// Rewrites the stored workplan with wp's new budget and records who did
// it.  False when the ledger failed.
static bool
s_record(broker_t *b, const char *actor, int64_t plan, const workplan_t *wp,
         int64_t old_tokens)
{
    char old[32], now[32];
    s_json_tokens(old, sizeof old, old_tokens);
    s_json_tokens(now, sizeof now, wp->has_budget ? wp->budget_tokens : -1);
    char *detail = xasprintf("{\"old\":%s,\"new\":%s}", old, now);
    char *json = workplan_to_json(wp);
    bool ok = ledger_plan_set_workplan(b->ledger, plan, json,
                                       strlen(json)) == 0 &&
              ledger_event(b->ledger, plan, NULL, actor, "budget", detail,
                           b->now_wall) == LEDGER_OK;
    free(json);
    free(detail);
    return ok;
}

void
budget_on_request(broker_t *b, router_in_t *in)
{
    const proto_budget_t *q = &in->msg->u.budget;
    ledger_plan_state_t state;
    if (!requests_plan_state(b, in, q->plan, &state) ||
        requests_not_running(b, in, q->plan, state)) {
        return;
    }
    int64_t used = drones_plan_used(b, NULL, q->plan);
    if (used < 0 || !broker_begin(b)) {
        requests_internal(b, in);
        return;
    }
    workplan_t *wp = sched_workplan_edit(b->sched, q->plan);
    int64_t old = wp->has_budget ? wp->budget_tokens : -1;
    wp->has_budget = q->tokens >= 0;
    wp->budget_tokens = q->tokens >= 0 ? q->tokens : 0;
    if (!s_record(b, in->name, q->plan, wp, old)) {
        requests_internal(b, in);  // the failed turn rebuilds wp
        return;
    }
    proto_msg_t *m = proto_msg_new(PROTO_MSG_BUDGET_OK);
    proto_budget_ok_t *ok = &m->u.budget_ok;
    ok->plan = q->plan;
    ok->old_tokens = old;
    ok->new_tokens = q->tokens;
    ok->used = used;
    ok->reserved = drones_plan_reserved(b, q->plan);
    log_info(LOG, "plan %" PRId64 " token budget %" PRId64 " -> %" PRId64
             " (-1: none) by '%s'; used %" PRId64 ", reserved %" PRId64,
             q->plan, old, q->tokens, in->name, used, ok->reserved);
    m->req = in->msg->req;
    broker_queue(b, &in->rid, &m, true);
}
