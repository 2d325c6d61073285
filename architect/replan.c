// replan: `waggle-architect replan PLAN "INSTRUCTION"` — the model writes
// an amendment to a plan that runs (or failed), from the plan's state now.
//
// The model is shown the plan's workplan as it stands, each task's state,
// what succeeded with its output abridged (S_OUT_MAX bytes each, at most
// S_OUTS outputs), what failed or died and why (its error and stderr
// tail, abridged alike), and the instruction.  Its reply goes through
// amend_merge() against that workplan and those states — what the broker
// will run it through — inside plan.c's repair loop; the difference is
// shown (added, replaced, cancelled) and applied with AMEND once a person
// confirms, or with --yes; --out saves the amendment instead.  The broker
// validates again: the plan may have moved on meanwhile.
#include "architect/arch.h"

#include "common/amend.h"
#include "common/xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_OUT_MAX 1024          // bytes of one output or stderr shown
#define S_OUTS 40               // outputs shown at most
#define S_WORKPLAN_MAX 65536    // bytes of the workplan shown

static const char s_usage[] =
    "replan PLAN \"INSTRUCTION\" [--yes | --out FILE] [--repairs N] "
    "[--json]\n\n"
    "Asks the model for an amendment to PLAN (which runs, or failed) that\n"
    "carries out INSTRUCTION, e.g. \"task fetch went dead: fetch from the\n"
    "mirror instead\".  The model sees the plan's workplan, each task's\n"
    "state, the outputs of what succeeded and the errors of what failed\n"
    "(abridged).  Its amendment is validated against the plan (errors go\n"
    "back at most --repairs times), shown, and applied once you confirm\n"
    "(y/N on a terminal) or with --yes; --out FILE saves it for `amend`.\n"
    "Model settings as for plan.  A submitter key is enough.";

static const char s_format[] =
    "You are the Architect of Waggle, which runs a workplan - a DAG of "
    "tasks - on a swarm of drones. A plan is already running (or has "
    "failed); change it as the user asks by writing an amendment.\n"
    "Reply with exactly one JSON object and nothing else: no prose, no code "
    "fence.\n\n"
    "An amendment: {\"add\": [task, ...], \"cancel\": [\"id\", ...], "
    "\"replace\": [task, ...]}; each member is optional, at least one task "
    "in all.\n"
    "- add: new tasks with new ids. They may need any task of the plan, in "
    "any state, and each other. A need that succeeded gives its output; a "
    "need that is dead, rejected, cancelled or blocked blocks the new "
    "task.\n"
    "- cancel: ids of tasks that have not started (state waiting or "
    "ready).\n"
    "- replace: whole new definitions of tasks that have not started "
    "(waiting, ready or blocked), or that are dead, with the same id. A "
    "replaced dead task runs again with its new definition, and what it "
    "blocked waits for it again: this is how a plan that failed can still "
    "succeed.\n"
    "Tasks that are leased (running), awaiting_approval, succeeded, "
    "rejected or cancelled cannot be cancelled or replaced; a dead task "
    "can be replaced but not cancelled. The amended plan must still be "
    "valid: no cycle, every need exists.\n"
    "Example, after task 'fetch' went dead because its server moved:\n"
    "{\"replace\": [{\"id\": \"fetch\", \"run\": [\"curl\", \"-fsS\", "
    "\"https://mirror.example.com/data.csv\"]}]}\n\n";

// The plan as the broker has it now.
typedef struct {
    workplan_t *wp;
    char *json;                 // its workplan, canonical
    char *name;
    char *state;                // the plan's
    proto_task_info_t *tasks;   // in workplan order (copied from pages)
    size_t n_tasks;
    const char **states;        // per workplan task, its state's name
} s_plan_t;

static void
s_plan_release(s_plan_t *p)
{
    workplan_destroy(&p->wp);
    free(p->json);
    free(p->name);
    free(p->state);
    for (size_t i = 0; i < p->n_tasks; i++) {
        free(p->tasks[i].id);
        free(p->tasks[i].last_error);
    }
    free(p->tasks);
    free(p->states);
}

// The workplan, name and state: STATUS {plan, summary, workplan}.
static int
s_fetch_workplan(arch_t *a, int64_t plan, s_plan_t *p)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS), *reply = NULL;
    req->u.status.plan = plan;
    req->u.status.summary = true;
    req->u.status.workplan = true;
    int rc = arch_call(a, &req, &reply);
    if (rc != 0) {
        return rc;
    }
    proto_status_ok_t *st = &reply->u.status_ok;
    if (st->n_plans == 1 && st->workplan) {
        p->name = xstrdup(st->plans[0].name ? st->plans[0].name : "");
        p->state = xstrdup(st->plans[0].state);
        p->json = st->workplan;
        st->workplan = NULL;
    }
    proto_msg_destroy(&reply);
    wp_errors_t errs = {0};
    if (!p->json || workplan_parse(p->json, strlen(p->json), &p->wp,
                                   &errs) < 0) {
        wp_errors_release(&errs);
        return arch_fail(a, ARCH_EXIT_FAILED, "protocol", "the broker sent "
                         "no usable workplan for plan %lld", (long long) plan);
    }
    return 0;
}

// Every task's state, in pages.
static int
s_fetch_tasks(arch_t *a, int64_t plan, s_plan_t *p)
{
    bool more = true;
    while (more) {
        proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS), *reply = NULL;
        req->u.status.plan = plan;
        req->u.status.offset = (uint32_t) p->n_tasks;
        int rc = arch_call(a, &req, &reply);
        if (rc != 0) {
            return rc;
        }
        proto_status_ok_t *st = &reply->u.status_ok;
        p->tasks = xrealloc(p->tasks, (p->n_tasks + st->n_tasks + 1) *
                                          sizeof *p->tasks);
        for (size_t i = 0; i < st->n_tasks; i++) {
            proto_task_info_t *t = &p->tasks[p->n_tasks++];
            *t = (proto_task_info_t){
                .id = xstrdup(st->tasks[i].id), .state = st->tasks[i].state,
                .attempts = st->tasks[i].attempts,
                .has_exit_code = st->tasks[i].has_exit_code,
                .exit_code = st->tasks[i].exit_code,
                .last_error = st->tasks[i].last_error
                                  ? xstrdup(st->tasks[i].last_error)
                                  : NULL};
        }
        more = st->more && st->n_tasks > 0;
        proto_msg_destroy(&reply);
    }
    p->states = xcalloc(p->wp->n_tasks + 1, sizeof *p->states);
    for (size_t i = 0; i < p->n_tasks; i++) {
        long idx = workplan_find(p->wp, p->tasks[i].id);
        if (idx >= 0) {
            p->states[idx] = proto_task_state_name(p->tasks[i].state);
        }
    }
    return 0;
}

// At most S_OUT_MAX bytes of a task's stdout (or stderr tail), NULs
// shown as '?'; NULL when there is none.  Caller frees.
static char *
s_output(arch_t *a, int64_t plan, const char *task, bool want_stderr)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_OUTPUT), *reply = NULL;
    req->u.output.plan = plan;
    req->u.output.task = xstrdup(task);
    req->u.output.want_stderr = want_stderr;
    char err[256];
    if (link_request(a->link, &req, a->cfg->connect_timeout_ms, &reply, err,
                     sizeof err) != LINK_OK) {
        return NULL;
    }
    char *text = NULL;
    if (reply->cmd == PROTO_MSG_OUTPUT_OK && reply->u.output_ok.data.len) {
        size_t len = reply->u.output_ok.data.len;
        size_t n = len > S_OUT_MAX ? S_OUT_MAX : len;
        // The end of stderr says why; the start of stdout says what.
        const uint8_t *from = reply->u.output_ok.data.data +
                              (want_stderr ? len - n : 0);
        text = xstrndup((const char *) from, n);
        for (size_t i = 0; i < n; i++) {
            text[i] = text[i] ? text[i] : '?';
        }
        if (n < len) {
            char *more = xasprintf("%s… (%zu bytes in all)", text, len);
            free(text);
            text = more;
        }
    }
    proto_msg_destroy(&reply);
    return text;
}

// Appends the strings (NULL-terminated) to *buf.
static void
s_cat(char **buf, ...)
{
    va_list ap;
    va_start(ap, buf);
    for (const char *p = va_arg(ap, const char *); p;
         p = va_arg(ap, const char *)) {
        char *all = xasprintf("%s%s", *buf, p);
        free(*buf);
        *buf = all;
    }
    va_end(ap);
}

// One task's line for the model: its state, and what it gave or why it
// failed.  *outs counts the outputs shown.
static void
s_task_line(arch_t *a, int64_t plan, const proto_task_info_t *t,
            size_t *outs, char **buf)
{
    const char *st = proto_task_state_name(t->state);
    s_cat(buf, "- ", t->id, ": ", st, NULL);
    if (t->state == PROTO_TASK_SUCCEEDED && *outs < S_OUTS) {
        char *out = s_output(a, plan, t->id, false);
        (*outs)++;
        s_cat(buf, "; output: ", out ? out : "(empty)", NULL);
        free(out);
    } else if (t->state == PROTO_TASK_DEAD || t->state == PROTO_TASK_REJECTED) {
        char n[64];
        snprintf(n, sizeof n, "%u", t->attempts);
        s_cat(buf, " after ", n, " attempt(s)", NULL);
        if (t->last_error) {
            s_cat(buf, "; error: ", t->last_error, NULL);
        }
        char *tail = *outs < S_OUTS ? s_output(a, plan, t->id, true) : NULL;
        if (tail) {
            (*outs)++;
            s_cat(buf, "; stderr tail: ", tail, NULL);
            free(tail);
        }
    }
    s_cat(buf, "\n", NULL);
}

// The user's message: the plan as it stands, then the instruction.
static char *
s_state_text(arch_t *a, int64_t plan, const s_plan_t *p,
             const char *instruction)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *buf = xasprintf("Plan %s '%s' is %s. Its workplan as it stands "
                          "(defaults resolved into each task):\n", id,
                          p->name, p->state);
    size_t len = strlen(p->json);
    char *wp = xstrndup(p->json, len > S_WORKPLAN_MAX ? S_WORKPLAN_MAX : len);
    s_cat(&buf, wp, len > S_WORKPLAN_MAX ? "… (cut)" : "",
          "\n\nThe state of each task (outputs abridged):\n", NULL);
    free(wp);
    size_t outs = 0;
    for (size_t i = 0; i < p->n_tasks; i++) {
        s_task_line(a, plan, &p->tasks[i], &outs, &buf);
    }
    s_cat(&buf, "\nInstruction: ", instruction, NULL);
    return buf;
}

typedef struct {
    const s_plan_t *plan;
    amend_t *amend;             // the valid amendment, once there is one
} s_judge_arg_t;

// replan's judge: the amendment in the reply, merged into the plan.
static int
s_judge(void *arg, const char *text, char **json, proto_strv_t *errs)
{
    static const char *const keys[] = {"add", "cancel", "replace", NULL};
    s_judge_arg_t *j = arg;
    *json = plan_extract_json(text, keys);
    if (!*json) {
        proto_strv_push(errs, "(reply): holds no JSON object");
        return -1;
    }
    wp_errors_t we = {0};
    if (amend_merge(j->plan->wp, j->plan->states, *json, strlen(*json),
                    &j->amend, &we) == 0) {
        return 0;
    }
    plan_error_lines(&we, errs);
    free(*json);
    *json = NULL;
    return -1;
}

// Show, then save, or confirm and apply.
static int
s_deliver(arch_t *a, const plan_opts_t *o, int64_t plan, char **json,
          const amend_t *am, const plan_chat_t *c)
{
    plan_show_amendment(o->json ? stderr : stdout, am);
    fflush(stdout);
    fprintf(stderr, "the model used %lld prompt + %lld completion tokens in "
            "%d call%s\n", (long long) c->prompt_tokens,
            (long long) c->completion_tokens, c->calls,
            c->calls == 1 ? "" : "s");
    if (o->out) {
        return plan_save(a, o->out, *json, "amendment");
    }
    char *q = xasprintf("apply this amendment to plan %lld?",
                        (long long) plan);
    bool yes = o->yes || plan_confirm(q);
    free(q);
    if (!yes) {
        return arch_fail(a, ARCH_EXIT_FAILED, "declined", "not applied");
    }
    return arch_amend_send(a, plan, json, o->json);
}

static int
s_replan(arch_t *a, const plan_opts_t *o, int64_t plan,
         const char *instruction)
{
    model_config_t mc;
    char *key = NULL, *json = NULL;
    s_plan_t p = {0};
    proto_strv_t tags = {0};
    size_t n_drones = 0;
    char err[512];
    int rc = plan_model_config(a, o, &mc, &key);
    if (rc == 0 && (rc = arch_connect(a)) == 0 &&
        (rc = s_fetch_workplan(a, plan, &p)) == 0) {
        rc = s_fetch_tasks(a, plan, &p);
    }
    plan_chat_t c = {.json_mode = true, .what = "amendment"};
    s_judge_arg_t j = {.plan = &p};
    if (rc == 0) {
        bool known = plan_drone_tags(a, &tags, &n_drones, err,
                                     sizeof err) == 0;
        char *drones = plan_drones_text(known ? &tags : NULL, n_drones);
        plan_chat_add(&c, MODEL_ROLE_SYSTEM,
                      xasprintf("%s%s\n%s", s_format, plan_task_rules,
                                drones));
        free(drones);
        plan_chat_add(&c, MODEL_ROLE_USER,
                      s_state_text(a, plan, &p, instruction));
        rc = plan_converse(a, &mc, o, &c, s_judge, &j, &json);
    }
    if (rc == 0) {
        rc = s_deliver(a, o, plan, &json, j.amend, &c);
    }
    amend_destroy(&j.amend);
    free(json);
    plan_chat_release(&c);
    proto_strv_release(&tags);
    s_plan_release(&p);
    plan_key_free(&key);
    return rc;
}

int
cmd_replan(arch_t *a, int argc, char **argv)
{
    plan_opts_t o = {.json = a->cfg->json, .repairs = 3};
    arch_pos_t pos;
    int rc = arch_opts(a, plan_opts, &o, argc, argv, &pos, s_usage);
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, "replan PLAN \"INSTRUCTION\" [--yes "
                                        "| --out FILE]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        cfg_release(plan_opts, &o);
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    rc = plan_can_confirm(a, &o, "replan", "apply", "amendment");
    if (rc == 0) {
        rc = s_replan(a, &o, plan, pos.items[1]);
    }
    cfg_release(plan_opts, &o);
    return rc;
}
