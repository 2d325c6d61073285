// events.c: events and log, the ledger's event log read out through
// SUBSCRIBE pages.
//
// The cursor is ours: each page answers "after seq N" and says where the
// next one starts, so a broker restart or a lost connection costs nothing
// but a retry from the last seq printed — no event is skipped or printed
// twice.  --follow, once caught up, asks with wait_ms: the broker answers
// right after a commit adds events (or empty after wait_ms), so following
// costs no polling.
#include "architect/arch.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/xalloc.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// How long --follow rests between attempts while the broker cannot be
// reached, and how long one caught-up request waits at the broker.
#define S_FOLLOW_PAUSE_MS 250
#define S_FOLLOW_WAIT_MS 5000

typedef struct {
    int64_t since;
    bool follow;
    bool json;
} s_events_opts_t;

static const cfg_option_t s_events_opts[] = {
    {"since", NULL, CFG_INT, offsetof(s_events_opts_t, since), "0", "SEQ",
     "only events after sequence number SEQ", 0, INT64_MAX},
    {"follow", NULL, CFG_BOOL, offsetof(s_events_opts_t, follow), NULL, NULL,
     "keep printing new events (rides broker restarts)", 0, 0},
    {"json", NULL, CFG_BOOL, offsetof(s_events_opts_t, json), NULL, NULL,
     "one JSON object a line", 0, 0},
    CFG_END,
};

static void
s_set_ostr(jnode_t *o, const char *key, const char *v)
{
    if (v) {
        json_obj_set_str(o, key, v);
    } else {
        json_obj_set_null(o, key);
    }
}

static void
s_print_json(const proto_event_t *e)
{
    jnode_t *o = json_obj_new();
    json_obj_set_int(o, "seq", e->seq);
    json_obj_set_int(o, "at_ms", e->at_ms);
    if (e->plan) {
        json_obj_set_int(o, "plan", e->plan);
    } else {
        json_obj_set_null(o, "plan");
    }
    s_set_ostr(o, "task", e->task);
    json_obj_set_str(o, "actor", e->actor);
    json_obj_set_str(o, "kind", e->kind);
    s_set_ostr(o, "from", e->from);
    s_set_ostr(o, "to", e->to);
    s_set_ostr(o, "detail", e->detail);
    char *text = json_dump(o, false);
    printf("%s\n", text);
    free(text);
    json_destroy(&o);
}

// "seq  2026-12-02T08:01:02.345Z  plan 3  build  drone:a  leased→running
// detail", fields that are absent left out.
static void
s_print_text(const proto_event_t *e)
{
    time_t secs = (time_t) (e->at_ms / 1000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&secs, &tm)) {
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    }
    printf("%lld  %s.%03dZ  ", (long long) e->seq, when,
           (int) (e->at_ms % 1000 + 1000) % 1000);
    if (e->plan) {
        printf("plan %lld  ", (long long) e->plan);
    }
    printf("%s  %s  %s", e->task ? e->task : "-", e->actor, e->kind);
    if (e->from || e->to) {
        printf("  %s\u2192%s", e->from ? e->from : "-", e->to ? e->to : "-");
    }
    printf("%s%s\n", e->detail ? "  " : "", e->detail ? e->detail : "");
}

static void
s_print_page(const proto_events_t *page, bool json)
{
    for (size_t i = 0; i < page->n_events; i++) {
        if (json) {
            s_print_json(&page->events[i]);
        } else {
            s_print_text(&page->events[i]);
        }
    }
    fflush(stdout);
}

static void
s_pause(void)
{
    struct timespec ts = {0, S_FOLLOW_PAUSE_MS * 1000L * 1000L};
    nanosleep(&ts, NULL);
}

// One SUBSCRIBE for the page after *since.  While following, a broker that
// cannot be reached is waited for (said once on stderr); otherwise the
// failure is the command's exit code.  1: printed a page, *since moved.
static int
s_page(arch_t *a, int64_t plan, int64_t *since, bool follow, bool json,
       bool *more, bool *down)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_SUBSCRIBE), *reply = NULL;
    req->u.subscribe.since = *since;
    req->u.subscribe.plan = plan;
    uint32_t wait_ms = follow && !*more ? S_FOLLOW_WAIT_MS : 0;
    req->u.subscribe.wait_ms = wait_ms;
    char err[512];
    link_rc_t lrc = follow ? link_request(a->link, &req,
                                          a->cfg->connect_timeout_ms +
                                              wait_ms,
                                          &reply, err, sizeof err)
                           : LINK_OK;
    if (!follow) {
        int rc = arch_call(a, &req, &reply);
        if (rc) {
            proto_msg_destroy(&req);
            return -rc;
        }
    } else if (lrc != LINK_OK || reply->cmd != PROTO_MSG_EVENTS) {
        if (!*down) {
            fprintf(stderr, "waggle-architect: %s; retrying\n",
                    lrc != LINK_OK ? err : "the broker refused the request");
        }
        *down = true;
        *more = false;
        proto_msg_destroy(&req);
        proto_msg_destroy(&reply);
        s_pause();
        return 0;
    }
    *down = false;
    s_print_page(&reply->u.events, json);
    *since = reply->u.events.next;
    *more = reply->u.events.more;
    proto_msg_destroy(&reply);
    return 1;
}

// Pages from since until caught up; with follow, forever.
static int
s_run(arch_t *a, int64_t plan, int64_t since, bool follow, bool json)
{
    int rc = arch_connect(a);
    if (rc) {
        return rc;
    }
    bool down = false, more = true;
    for (;;) {
        int got = s_page(a, plan, &since, follow, json, &more, &down);
        if (got < 0) {
            return -got;
        }
        if (!more && !follow) {
            return ARCH_EXIT_OK;
        }
    }
}

int
cmd_events(arch_t *a, int argc, char **argv)
{
    s_events_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_events_opts, &o, argc, argv, &pos,
                    "events [PLAN] [--follow] [--since SEQ] [--json]\n\n"
                    "Prints the event log (all plans, or one), one event a "
                    "line:\nseq, time (UTC), plan, task, actor, kind, "
                    "from\u2192to, detail.");
    int64_t plan = 0;
    if (rc || !arch_args(a, &pos, 0, 1, "events [PLAN] [--follow] "
                                        "[--since SEQ] [--json]") ||
        (pos.n == 1 && arch_parse_plan(a, pos.items[0], &plan) < 0)) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    return s_run(a, plan, o.since, o.follow, o.json);
}

// log PLAN of a plan that does not exist exits 4 like status: one summary
// STATUS (no task rows read) asks first, since an empty page of events
// cannot tell "no such plan" from "nothing happened".
static int
s_plan_known(arch_t *a, int64_t plan)
{
    int rc = arch_connect(a);
    if (rc) {
        return rc;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS), *reply = NULL;
    req->u.status.plan = plan;
    req->u.status.summary = true;
    rc = arch_call(a, &req, &reply);
    proto_msg_destroy(&req);
    proto_msg_destroy(&reply);
    return rc;
}

int
cmd_log(arch_t *a, int argc, char **argv)
{
    s_events_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_events_opts + 2, &o, argc, argv, &pos,
                    "log PLAN [--json]\n\nPrints a plan's full history from "
                    "the event log.");
    int64_t plan = 0;
    if (rc || !arch_args(a, &pos, 1, 1, "log PLAN [--json]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    if ((rc = s_plan_known(a, plan)) != 0) {
        return rc;
    }
    return s_run(a, plan, 0, false, o.json);
}
