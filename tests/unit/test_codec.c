// test_codec: every message round-trips field by field, every truncation
// and a catalogue of hostile frames fail cleanly with the right code, and
// every message is documented in PROTOCOL.md.
//
// Hostile frames are written byte by byte (the s_fr_* builder) because only
// codec.c may include <msgpack.h>.
#include "proto/proto.h"
#include "tests/harness/t.h"

#include <ctype.h>

#ifndef WAGGLE_SOURCE_DIR
#define WAGGLE_SOURCE_DIR "."
#endif

static proto_limits_t s_lim;

// --- comparing ----------------------------------------------------------

static bool
s_ostr_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool
s_bytes_eq(const proto_bytes_t *a, const proto_bytes_t *b)
{
    return a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool
s_strv_eq(const proto_strv_t *a, const proto_strv_t *b)
{
    if (a->count != b->count) {
        return false;
    }
    for (size_t i = 0; i < a->count; i++) {
        if (strcmp(a->items[i], b->items[i]) != 0) {
            return false;
        }
    }
    return true;
}

#define CHECK_OSTR(a, b) CHECK(s_ostr_eq((a), (b)))
#define CHECK_BYTES(a, b) CHECK(s_bytes_eq(&(a), &(b)))
#define CHECK_STRV(a, b) CHECK(s_strv_eq(&(a), &(b)))

static void
s_eq_hello(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_hello_t *a = &x->u.hello, *b = &y->u.hello;
    CHECK_OSTR(a->instance, b->instance);
    CHECK_OSTR(a->host, b->host);
    CHECK_OSTR(a->version, b->version);
    CHECK_INT(a->slots, b->slots);
    CHECK_STRV(a->tags, b->tags);
    CHECK_INT(a->draining, b->draining);
    CHECK_OSTR(a->secret, b->secret);
    REQUIRE(a->n_leases == b->n_leases);
    for (size_t i = 0; i < a->n_leases; i++) {
        CHECK_INT(a->leases[i].plan, b->leases[i].plan);
        CHECK_OSTR(a->leases[i].task, b->leases[i].task);
        CHECK(a->leases[i].token == b->leases[i].token);
        CHECK_INT(a->leases[i].finished, b->leases[i].finished);
    }
}

static void
s_eq_welcome(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_welcome_t *a = &x->u.welcome, *b = &y->u.welcome;
    CHECK_INT(a->heartbeat_ms, b->heartbeat_ms);
    CHECK_INT(a->lease_ms, b->lease_ms);
    CHECK(a->max_output_bytes == b->max_output_bytes);
    CHECK_OSTR(a->broker_id, b->broker_id);
    CHECK_OSTR(a->secret, b->secret);
}

static void
s_eq_heartbeat(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_heartbeat_t *a = &x->u.heartbeat, *b = &y->u.heartbeat;
    REQUIRE(a->n_tokens == b->n_tokens);
    for (size_t i = 0; i < a->n_tokens; i++) {
        CHECK(a->tokens[i] == b->tokens[i]);
    }
}

static void
s_eq_task(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_task_t *a = &x->u.task, *b = &y->u.task;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->plan_name, b->plan_name);
    CHECK_OSTR(a->task, b->task);
    CHECK(a->token == b->token);
    CHECK_INT(a->attempt, b->attempt);
    CHECK_INT(a->kind, b->kind);
    CHECK_OSTR(a->prompt, b->prompt);
    CHECK_OSTR(a->system, b->system);
    CHECK_OSTR(a->model, b->model);
    CHECK_INT(a->max_tokens, b->max_tokens);
    CHECK_INT(a->has_temperature, b->has_temperature);
    CHECK_INT(a->temperature_milli, b->temperature_milli);
    CHECK_STRV(a->argv, b->argv);
    CHECK_OSTR(a->cwd, b->cwd);
    CHECK_INT(a->timeout_s, b->timeout_s);
    CHECK_INT(a->limits.as_mb, b->limits.as_mb);
    CHECK_INT(a->limits.nofile, b->limits.nofile);
    CHECK_INT(a->limits.nproc, b->limits.nproc);
    CHECK_INT(a->limits.cpu_s, b->limits.cpu_s);
    REQUIRE(a->n_env == b->n_env);
    for (size_t i = 0; i < a->n_env; i++) {
        CHECK_OSTR(a->env[i].key, b->env[i].key);
        CHECK_OSTR(a->env[i].value, b->env[i].value);
    }
    REQUIRE(a->n_inputs == b->n_inputs);
    for (size_t i = 0; i < a->n_inputs; i++) {
        CHECK_OSTR(a->inputs[i].id, b->inputs[i].id);
        CHECK_BYTES(a->inputs[i].data, b->inputs[i].data);
        CHECK_INT(a->inputs[i].truncated, b->inputs[i].truncated);
    }
}

static void
s_eq_stop(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_stop_t *a = &x->u.stop, *b = &y->u.stop;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK(a->token == b->token);
    CHECK_OSTR(a->reason, b->reason);
}

static void
s_eq_result(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_result_t *a = &x->u.result, *b = &y->u.result;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK(a->token == b->token);
    CHECK_INT(a->outcome, b->outcome);
    CHECK_INT(a->exit_code, b->exit_code);
    CHECK_INT(a->signal, b->signal);
    CHECK_INT(a->timed_out, b->timed_out);
    CHECK_OSTR(a->error, b->error);
    CHECK_BYTES(a->out, b->out);
    CHECK_INT(a->out_truncated, b->out_truncated);
    CHECK_BYTES(a->err, b->err);
    CHECK_INT(a->err_truncated, b->err_truncated);
    CHECK_INT(a->started_ms, b->started_ms);
    CHECK_INT(a->duration_ms, b->duration_ms);
    CHECK_INT(a->prompt_tokens, b->prompt_tokens);
    CHECK_INT(a->completion_tokens, b->completion_tokens);
}

static void
s_eq_result_ack(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_result_ack_t *a = &x->u.result_ack, *b = &y->u.result_ack;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK(a->token == b->token);
    CHECK_INT(a->status, b->status);
    CHECK_OSTR(a->message, b->message);
}

static void
s_eq_update(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.update.slots, y->u.update.slots);
    CHECK_INT(x->u.update.draining, y->u.update.draining);
}

static void
s_eq_none(const proto_msg_t *x, const proto_msg_t *y)
{
    (void) x;
    (void) y;
}

static void
s_eq_pong(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_OSTR(x->u.pong.role, y->u.pong.role);
    CHECK_OSTR(x->u.pong.name, y->u.pong.name);
    CHECK_OSTR(x->u.pong.version, y->u.pong.version);
}

static void
s_eq_submit(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_OSTR(x->u.submit.workplan, y->u.submit.workplan);
    CHECK_OSTR(x->u.submit.idempotency_key, y->u.submit.idempotency_key);
}

static void
s_eq_submit_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.submit_ok.plan, y->u.submit_ok.plan);
    CHECK_INT(x->u.submit_ok.created, y->u.submit_ok.created);
    CHECK_STRV(x->u.submit_ok.warnings, y->u.submit_ok.warnings);
}

static void
s_eq_amend(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.amend.plan, y->u.amend.plan);
    CHECK_STR(x->u.amend.amendment, y->u.amend.amendment);
}

static void
s_eq_amend_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.amend_ok.plan, y->u.amend_ok.plan);
    CHECK_STRV(x->u.amend_ok.added, y->u.amend_ok.added);
    CHECK_STRV(x->u.amend_ok.cancelled, y->u.amend_ok.cancelled);
    CHECK_STRV(x->u.amend_ok.replaced, y->u.amend_ok.replaced);
    CHECK_STRV(x->u.amend_ok.warnings, y->u.amend_ok.warnings);
}

static void
s_eq_status(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.status.plan, y->u.status.plan);
    CHECK_INT(x->u.status.offset, y->u.status.offset);
    CHECK_INT(x->u.status.summary, y->u.status.summary);
    CHECK_INT(x->u.status.workplan, y->u.status.workplan);
}

static void
s_eq_plan_info(const proto_plan_info_t *a, const proto_plan_info_t *b)
{
    CHECK_INT(a->id, b->id);
    CHECK_OSTR(a->name, b->name);
    CHECK_OSTR(a->state, b->state);
    CHECK_OSTR(a->submitted_by, b->submitted_by);
    CHECK_INT(a->created_ms, b->created_ms);
    CHECK_INT(a->finished_ms, b->finished_ms);
    for (int s = 0; s < PROTO_TASK__COUNT; s++) {
        CHECK_INT(a->counts[s], b->counts[s]);
    }
}

static void
s_eq_task_info(const proto_task_info_t *a, const proto_task_info_t *b)
{
    CHECK_OSTR(a->id, b->id);
    CHECK_INT(a->state, b->state);
    CHECK_OSTR(a->kind, b->kind);
    CHECK_INT(a->attempts, b->attempts);
    CHECK_OSTR(a->drone, b->drone);
    CHECK_INT(a->has_exit_code, b->has_exit_code);
    CHECK_INT(a->exit_code, b->exit_code);
    CHECK_OSTR(a->last_error, b->last_error);
    CHECK_OSTR(a->waiting_reason, b->waiting_reason);
    CHECK_STRV(a->needs, b->needs);
    CHECK_INT(a->ready_ms, b->ready_ms);
    CHECK_INT(a->attempt, b->attempt);
    CHECK_INT(a->attempt_budget, b->attempt_budget);
    CHECK_INT(a->started_ms, b->started_ms);
    CHECK_INT(a->ended_ms, b->ended_ms);
    CHECK_INT(a->duration_ms, b->duration_ms);
}

static void
s_eq_drone_info(const proto_drone_info_t *a, const proto_drone_info_t *b)
{
    CHECK_OSTR(a->instance, b->instance);
    CHECK_OSTR(a->name, b->name);
    CHECK_OSTR(a->host, b->host);
    CHECK_INT(a->slots, b->slots);
    CHECK_INT(a->leases, b->leases);
    CHECK_INT(a->draining, b->draining);
    CHECK_STRV(a->tags, b->tags);
    CHECK_INT(a->last_seen_ms, b->last_seen_ms);
    CHECK_INT(a->quarantined, b->quarantined);
    CHECK_INT(a->n_tasks, b->n_tasks);
    for (size_t i = 0; i < a->n_tasks && i < b->n_tasks; i++) {
        CHECK_INT(a->tasks[i].plan, b->tasks[i].plan);
        CHECK_OSTR(a->tasks[i].task, b->tasks[i].task);
        CHECK_INT(a->tasks[i].lease_left_ms, b->tasks[i].lease_left_ms);
    }
}

static void
s_eq_status_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_status_ok_t *a = &x->u.status_ok, *b = &y->u.status_ok;
    REQUIRE(a->n_plans == b->n_plans);
    REQUIRE(a->n_tasks == b->n_tasks);
    REQUIRE(a->n_drones == b->n_drones);
    CHECK_INT(a->more, b->more);
    CHECK_OSTR(a->workplan, b->workplan);
    for (size_t i = 0; i < a->n_plans; i++) {
        s_eq_plan_info(&a->plans[i], &b->plans[i]);
    }
    for (size_t i = 0; i < a->n_tasks; i++) {
        s_eq_task_info(&a->tasks[i], &b->tasks[i]);
    }
    for (size_t i = 0; i < a->n_drones; i++) {
        s_eq_drone_info(&a->drones[i], &b->drones[i]);
    }
}

static void
s_eq_cancel(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.cancel.plan, y->u.cancel.plan);
    CHECK_OSTR(x->u.cancel.task, y->u.cancel.task);
}

static void
s_eq_retry(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.retry.plan, y->u.retry.plan);
    CHECK_OSTR(x->u.retry.task, y->u.retry.task);
}

static void
s_eq_verdict(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.verdict.plan, y->u.verdict.plan);
    CHECK_OSTR(x->u.verdict.task, y->u.verdict.task);
    CHECK_OSTR(x->u.verdict.note, y->u.verdict.note);
    CHECK_OSTR(x->u.verdict.hash, y->u.verdict.hash);
}

static void
s_eq_output(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_output_t *a = &x->u.output, *b = &y->u.output;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK_INT(a->attempt, b->attempt);
    CHECK_INT(a->want_stderr, b->want_stderr);
    CHECK_INT(a->live, b->live);
}

static void
s_eq_output_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_output_ok_t *a = &x->u.output_ok, *b = &y->u.output_ok;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK_INT(a->attempt, b->attempt);
    CHECK_BYTES(a->data, b->data);
    CHECK_INT(a->truncated, b->truncated);
    CHECK_OSTR(a->state, b->state);
    CHECK_INT(a->running, b->running);
    CHECK_INT(a->token, b->token);
    CHECK_INT(a->total, b->total);
}

static void
s_eq_tail(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.tail.token, y->u.tail.token);
    CHECK_INT(x->u.tail.total, y->u.tail.total);
    CHECK_BYTES(x->u.tail.data, y->u.tail.data);
}

static void
s_eq_explain(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.explain.plan, y->u.explain.plan);
    CHECK_OSTR(x->u.explain.task, y->u.explain.task);
}

static void
s_eq_explain_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_explain_ok_t *a = &x->u.explain_ok, *b = &y->u.explain_ok;
    CHECK_INT(a->plan, b->plan);
    CHECK_OSTR(a->task, b->task);
    CHECK_OSTR(a->state, b->state);
    CHECK_OSTR(a->code, b->code);
    CHECK_OSTR(a->reason, b->reason);
    CHECK_STRV(a->needs, b->needs);
    CHECK_STRV(a->need_states, b->need_states);
    CHECK_INT(a->more_needs, b->more_needs);
    CHECK_STRV(a->tags, b->tags);
    CHECK_OSTR(a->drone, b->drone);
    CHECK_OSTR(a->model, b->model);
    CHECK_OSTR(a->blocked_by, b->blocked_by);
    CHECK_OSTR(a->blocked_state, b->blocked_state);
    CHECK_INT(a->since_ms, b->since_ms);
    CHECK_INT(a->until_ms, b->until_ms);
    CHECK_INT(a->last_seen_ms, b->last_seen_ms);
    CHECK_INT(a->used, b->used);
    CHECK_INT(a->budget, b->budget);
    CHECK_INT(a->limit, b->limit);
    CHECK_INT(a->in_flight, b->in_flight);
    CHECK_INT(a->attempt, b->attempt);
}

static void
s_eq_subscribe(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.subscribe.since, y->u.subscribe.since);
    CHECK_INT(x->u.subscribe.plan, y->u.subscribe.plan);
    CHECK_INT(x->u.subscribe.wait_ms, y->u.subscribe.wait_ms);
}

static void
s_eq_events(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_events_t *a = &x->u.events, *b = &y->u.events;
    CHECK_INT(a->next, b->next);
    CHECK_INT(a->more, b->more);
    CHECK_INT(a->gap, b->gap);
    REQUIRE(a->n_events == b->n_events);
    for (size_t i = 0; i < a->n_events; i++) {
        const proto_event_t *e = &a->events[i], *f = &b->events[i];
        CHECK_INT(e->seq, f->seq);
        CHECK_INT(e->at_ms, f->at_ms);
        CHECK_INT(e->plan, f->plan);
        CHECK_OSTR(e->task, f->task);
        CHECK_OSTR(e->actor, f->actor);
        CHECK_OSTR(e->kind, f->kind);
        CHECK_OSTR(e->from, f->from);
        CHECK_OSTR(e->to, f->to);
        CHECK_OSTR(e->detail, f->detail);
    }
}

static void
s_eq_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_OSTR(x->u.ok.message, y->u.ok.message);
}

static void
s_eq_error(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.error.code, y->u.error.code);
    CHECK_OSTR(x->u.error.message, y->u.error.message);
    CHECK_STRV(x->u.error.details, y->u.error.details);
}

// --- building: every field set (full) and only what is required (bare) ---

static proto_msg_t *
s_hello(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    proto_hello_t *h = &m->u.hello;
    m->req = 7;
    h->instance = strdup(full ? "d-7f3a9c" : "d");
    if (!full) {
        return m;
    }
    h->host = strdup("build-01");
    h->version = strdup("0.1.0");
    h->slots = 1024;
    proto_strv_push(&h->tags, "linux");
    proto_strv_push(&h->tags, "gpu");
    h->draining = true;
    h->secret = strdup("5ec7e7");
    h->n_leases = 2;
    h->leases = calloc(2, sizeof *h->leases);
    h->leases[0] = (proto_lease_t) {3, strdup("build"), 41, false};
    h->leases[1] = (proto_lease_t) {INT64_MAX, strdup("t-2"), UINT64_MAX,
                                    true};
    return m;
}

static proto_msg_t *
s_welcome(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_WELCOME);
    m->req = 7;
    m->u.welcome.heartbeat_ms = full ? 1000 : 1;
    m->u.welcome.lease_ms = full ? UINT32_MAX : 1;
    m->u.welcome.max_output_bytes = full ? (uint64_t) 1 << 40 : 0;
    m->u.welcome.broker_id = strdup("b-20260102");
    m->u.welcome.secret = full ? strdup("00ff") : NULL;
    return m;
}

static proto_msg_t *
s_heartbeat(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    if (full) {
        m->u.heartbeat.n_tokens = 3;
        m->u.heartbeat.tokens = calloc(3, sizeof(uint64_t));
        m->u.heartbeat.tokens[0] = 1;
        m->u.heartbeat.tokens[1] = 1u << 20;
        m->u.heartbeat.tokens[2] = UINT64_MAX;
    }
    return m;
}

static void
s_task_extras(proto_task_t *t)
{
    static const uint8_t bin[] = {0, 1, 2, 0xff, '\n', 0xc1};
    t->plan_name = strdup("release-notes");
    t->cwd = strdup("/srv/work");
    t->timeout_s = 600;
    t->limits = (proto_task_limits_t) {.as_mb = 2048, .nofile = 1024,
                                       .nproc = 0, .cpu_s = UINT32_MAX};
    t->n_env = 2;
    t->env = calloc(2, sizeof *t->env);
    t->env[0] = (proto_kv_t) {strdup("LANG"), strdup("C.UTF-8")};
    t->env[1] = (proto_kv_t) {strdup("EMPTY"), strdup("")};
    t->n_inputs = 2;
    t->inputs = calloc(2, sizeof *t->inputs);
    t->inputs[0].id = strdup("log");
    proto_bytes_set(&t->inputs[0].data, bin, sizeof bin);
    t->inputs[0].truncated = true;
    t->inputs[1].id = strdup("empty-out");
}

static proto_msg_t *
s_task(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_TASK);
    proto_task_t *t = &m->u.task;
    t->plan = 12;
    t->task = strdup("log");
    t->token = 99;
    t->attempt = 1;
    proto_strv_push(&t->argv, "git");
    if (full) {
        proto_strv_push(&t->argv, "log");
        proto_strv_push(&t->argv, "{{draft.output}}");
        proto_strv_push(&t->argv, "");
        s_task_extras(t);
    }
    return m;
}

static proto_msg_t *
s_stop(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STOP);
    m->u.stop.plan = 12;
    m->u.stop.task = strdup("log");
    m->u.stop.token = 99;
    m->u.stop.reason = full ? strdup("stale") : NULL;
    return m;
}

static proto_msg_t *
s_result(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
    proto_result_t *r = &m->u.result;
    m->req = 1u << 31;
    r->plan = 12;
    r->task = strdup("log");
    r->token = 99;
    r->outcome = full ? PROTO_OUTCOME_FAILED : PROTO_OUTCOME_RELEASED;
    r->exit_code = full ? INT32_MIN : -1;
    if (!full) {
        return m;
    }
    r->signal = 9;
    r->timed_out = true;
    r->error = strdup("killed after 600 s");
    proto_bytes_set(&r->out, "hello\n\0world", 12);
    r->out_truncated = true;
    proto_bytes_set(&r->err, "oops", 4);
    r->err_truncated = true;
    r->started_ms = 1767323045000;
    r->duration_ms = -5;
    r->prompt_tokens = 1234;
    r->completion_tokens = 0;
    return m;
}

static proto_msg_t *
s_result_ack(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT_ACK);
    m->req = 1u << 31;
    m->u.result_ack.plan = 12;
    m->u.result_ack.task = strdup("log");
    m->u.result_ack.token = 99;
    m->u.result_ack.status = full ? PROTO_ACK_STALE : PROTO_ACK_ACCEPTED;
    m->u.result_ack.message = full ? strdup("token 99 is not current") : NULL;
    return m;
}

static proto_msg_t *
s_update(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_UPDATE);
    m->req = 3;
    m->u.update.slots = full ? 4 : 0;
    m->u.update.draining = full;
    return m;
}

static proto_msg_t *
s_bye(bool full)
{
    (void) full;
    return proto_msg_new(PROTO_MSG_BYE);
}

static proto_msg_t *
s_ping(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_PING);
    m->req = full ? UINT64_MAX : 0;
    return m;
}

static proto_msg_t *
s_pong(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_PONG);
    m->req = full ? UINT64_MAX : 0;
    m->u.pong.role = strdup("submitter");
    m->u.pong.name = strdup("ci-planner");
    m->u.pong.version = strdup(full ? "0.1.0" : "");
    return m;
}

static proto_msg_t *
s_submit(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBMIT);
    m->req = 5;
    m->u.submit.workplan = strdup("{\"name\": \"x\", \"tasks\": []}");
    m->u.submit.idempotency_key = full ? strdup("build-4711") : NULL;
    return m;
}

static proto_msg_t *
s_submit_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBMIT_OK);
    m->req = 5;
    m->u.submit_ok.plan = 12;
    m->u.submit_ok.created = full;
    if (full) {
        proto_strv_push(&m->u.submit_ok.warnings,
                        "tasks[3].requires: no connected drone offers 'gpu'");
    }
    return m;
}

static proto_msg_t *
s_amend(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_AMEND);
    m->req = 6;
    m->u.amend.plan = 3;
    m->u.amend.amendment = strdup(full ? "{\"cancel\": [\"x\"]}" : "");
    return m;
}

static proto_msg_t *
s_amend_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_AMEND_OK);
    m->req = 6;
    m->u.amend_ok.plan = 3;
    if (full) {
        proto_strv_push(&m->u.amend_ok.added, "x1");
        proto_strv_push(&m->u.amend_ok.added, "x2");
        proto_strv_push(&m->u.amend_ok.cancelled, "c");
        proto_strv_push(&m->u.amend_ok.replaced, "r");
        proto_strv_push(&m->u.amend_ok.warnings, "task 'x1' is blocked");
    }
    return m;
}

static proto_msg_t *
s_status(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS);
    m->req = 6;
    m->u.status.plan = full ? 12 : 0;
    m->u.status.offset = full ? 40000 : 0;
    m->u.status.summary = full;
    m->u.status.workplan = full;
    return m;
}

static void
s_status_plan(proto_status_ok_t *s)
{
    s->n_plans = 2;
    s->plans = calloc(2, sizeof *s->plans);
    proto_plan_info_t *p = &s->plans[0];
    p->id = 12;
    p->name = strdup("release-notes");
    p->state = strdup("running");
    p->submitted_by = strdup("alice");
    p->created_ms = 1767323045000;
    p->finished_ms = 0;
    for (int i = 0; i < PROTO_TASK__COUNT; i++) {
        p->counts[i] = (uint32_t) i * 1000 + 1;
    }
    s->plans[1].id = 13;
    s->plans[1].state = strdup("succeeded");
}

static void
s_status_tasks(proto_status_ok_t *s)
{
    s->n_tasks = 2;
    s->tasks = calloc(2, sizeof *s->tasks);
    proto_task_info_t *t = &s->tasks[0];
    t->id = strdup("draft");
    t->state = PROTO_TASK_AWAITING_APPROVAL;
    t->kind = strdup("run");
    t->attempts = 3;
    t->drone = strdup("d-7f3a9c");
    t->has_exit_code = true;
    t->exit_code = -1;
    t->last_error = strdup("exit status 2");
    t->waiting_reason = strdup("no drone offers 'gpu'");
    proto_strv_push(&t->needs, "log");
    t->ready_ms = 1767323045000;
    t->attempt = 7;
    t->attempt_budget = 3;
    t->started_ms = 1767323046000;
    t->ended_ms = 1767323048500;
    t->duration_ms = 2500;
    s->tasks[1].id = strdup("log");
    s->tasks[1].state = PROTO_TASK_CANCELLED;
    s->tasks[1].kind = strdup("run");
}

static void
s_status_drones(proto_status_ok_t *s)
{
    s->n_drones = 1;
    s->drones = calloc(1, sizeof *s->drones);
    proto_drone_info_t *d = &s->drones[0];
    d->instance = strdup("d-7f3a9c");
    d->name = strdup("drone-01");
    d->host = strdup("build-01");
    d->slots = 8;
    d->leases = 2;
    d->draining = true;
    proto_strv_push(&d->tags, "linux");
    d->last_seen_ms = 1767323045123;
    d->quarantined = true;
    d->n_tasks = 2;
    d->tasks = calloc(2, sizeof *d->tasks);
    d->tasks[0].plan = 3;
    d->tasks[0].task = strdup("build");
    d->tasks[0].lease_left_ms = 7250;
    d->tasks[1].plan = 12;
    d->tasks[1].task = strdup("test-all");
    d->tasks[1].lease_left_ms = -1;  // not given: left out on the wire
}

static proto_msg_t *
s_status_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    m->req = 6;
    if (full) {
        s_status_plan(&m->u.status_ok);
        s_status_tasks(&m->u.status_ok);
        s_status_drones(&m->u.status_ok);
        m->u.status_ok.more = true;
        m->u.status_ok.workplan = strdup("{\"name\":\"p\",\"tasks\":[]}");
    }
    return m;
}

static proto_msg_t *
s_cancel(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_CANCEL);
    m->req = 8;
    m->u.cancel.plan = 12;
    m->u.cancel.task = full ? strdup("log") : NULL;
    return m;
}

static proto_msg_t *
s_retry(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RETRY);
    m->req = 9;
    m->u.retry.plan = full ? 12 : 0;
    m->u.retry.task = strdup("log");
    return m;
}

static proto_msg_t *
s_verdict(proto_cmd_t cmd, bool full)
{
    proto_msg_t *m = proto_msg_new(cmd);
    m->req = 13;
    m->u.verdict.plan = 12;
    m->u.verdict.task = strdup("review");
    m->u.verdict.note = full ? strdup("looks right") : NULL;
    m->u.verdict.hash = strdup("0123456789abcdef0123456789abcdef"
                               "0123456789abcdef0123456789abcdef");
    return m;
}

static proto_msg_t *
s_approve(bool full)
{
    return s_verdict(PROTO_MSG_APPROVE, full);
}

static proto_msg_t *
s_reject(bool full)
{
    return s_verdict(PROTO_MSG_REJECT, full);
}

static proto_msg_t *
s_output(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT);
    m->req = 10;
    m->u.output.plan = 12;
    m->u.output.task = strdup("log");
    m->u.output.attempt = full ? 3 : 0;
    m->u.output.want_stderr = full;
    m->u.output.live = full;
    return m;
}

static proto_msg_t *
s_output_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT_OK);
    m->req = 10;
    m->u.output_ok.plan = 12;
    m->u.output_ok.task = strdup("log");
    m->u.output_ok.attempt = full ? 3 : 0;
    if (full) {
        proto_bytes_set(&m->u.output_ok.data, "a\0b", 3);
        m->u.output_ok.state = strdup("leased");
        m->u.output_ok.running = true;
        m->u.output_ok.token = 77;
        m->u.output_ok.total = 1u << 20;
    }
    m->u.output_ok.truncated = full;
    return m;
}

static proto_msg_t *
s_tail(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_TAIL);
    m->req = 21;
    m->u.tail.token = full ? UINT64_MAX : 1;
    m->u.tail.total = full ? 5000 : 0;
    if (full) {
        proto_bytes_set(&m->u.tail.data, "line 1\n\033[2Jx\0", 13);
    }
    return m;
}

static proto_msg_t *
s_explain(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_EXPLAIN);
    m->req = 22;
    m->u.explain.plan = full ? 12 : 1;
    m->u.explain.task = strdup("publish");
    return m;
}

static proto_msg_t *
s_explain_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_EXPLAIN_OK);
    proto_explain_ok_t *x = &m->u.explain_ok;
    m->req = 22;
    x->plan = 12;
    x->task = strdup("publish");
    x->state = strdup("waiting");
    x->code = strdup("waiting_on_needs");
    x->reason = strdup("waiting for 'build' (leased)");
    if (full) {
        proto_strv_push(&x->needs, "build");
        proto_strv_push(&x->need_states, "leased");
        x->more_needs = 2;
        proto_strv_push(&x->tags, "gpu");
        x->drone = strdup("drone-01");
        x->model = strdup("local");
        x->blocked_by = strdup("lint");
        x->blocked_state = strdup("dead");
        x->since_ms = 1767323045000;
        x->until_ms = 1767323046000;
        x->last_seen_ms = 1767323044000;
        x->used = 110;
        x->budget = 100;
        x->limit = 2;
        x->in_flight = 2;
        x->attempt = 4;
    }
    return m;
}

static proto_msg_t *
s_subscribe(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBSCRIBE);
    m->req = 13;
    m->u.subscribe.since = full ? 4711 : 0;
    m->u.subscribe.plan = full ? 12 : 0;
    m->u.subscribe.wait_ms = full ? 30000 : 0;
    return m;
}

static proto_msg_t *
s_events(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_EVENTS);
    proto_events_t *e = &m->u.events;
    m->req = 13;
    e->next = full ? 4713 : 4711;
    e->more = full;
    e->gap = full;
    if (full) {
        e->n_events = 2;
        e->events = calloc(2, sizeof *e->events);
        e->events[0] = (proto_event_t){
            .seq = 4712, .at_ms = 1764662400123, .plan = 12,
            .task = strdup("log"), .actor = strdup("broker"),
            .kind = strdup("task"), .from = strdup("ready"),
            .to = strdup("leased"), .detail = strdup("attempt 1")};
        e->events[1] = (proto_event_t){.seq = 4713, .at_ms = -1,
                                       .actor = strdup(""),
                                       .kind = strdup("reconcile")};
    }
    return m;
}

static void
s_eq_budget(const proto_msg_t *x, const proto_msg_t *y)
{
    CHECK_INT(x->u.budget.plan, y->u.budget.plan);
    CHECK_INT(x->u.budget.tokens, y->u.budget.tokens);
}

static void
s_eq_budget_ok(const proto_msg_t *x, const proto_msg_t *y)
{
    const proto_budget_ok_t *a = &x->u.budget_ok, *b = &y->u.budget_ok;
    CHECK_INT(a->plan, b->plan);
    CHECK_INT(a->old_tokens, b->old_tokens);
    CHECK_INT(a->new_tokens, b->new_tokens);
    CHECK_INT(a->used, b->used);
    CHECK_INT(a->reserved, b->reserved);
}

// full: a raise to the largest budget; bare: removing the budget (-1).
static proto_msg_t *
s_budget(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_BUDGET);
    m->req = 13;
    m->u.budget.plan = 12;
    m->u.budget.tokens = full ? PROTO_BUDGET_MAX : -1;
    return m;
}

static proto_msg_t *
s_budget_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_BUDGET_OK);
    m->req = 13;
    m->u.budget_ok.plan = 12;
    m->u.budget_ok.old_tokens = full ? 100 : -1;
    m->u.budget_ok.new_tokens = full ? 5000 : -1;
    m->u.budget_ok.used = full ? 110 : 0;
    m->u.budget_ok.reserved = full ? 20 : 0;
    return m;
}

static proto_msg_t *
s_ok(bool full)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OK);
    m->req = 11;
    m->u.ok.message = full ? strdup("plan 12 cancelled") : NULL;
    return m;
}

static proto_msg_t *
s_error(bool full)
{
    proto_msg_t *m = proto_error_new(12, PROTO_E_INVALID, "%s", full ?
                                     "workplan refused" : "");
    if (full) {
        proto_strv_push(&m->u.error.details, "tasks[2].needs[0]: no task "
                        "'lgo'");
        proto_strv_push(&m->u.error.details, "tasks: cycle a -> b -> a");
    }
    return m;
}

static const struct {
    proto_msg_t *(*make)(bool full);
    void (*eq)(const proto_msg_t *a, const proto_msg_t *b);
} s_msgs[PROTO_MSG__COUNT] = {
    [PROTO_MSG_HELLO] = {s_hello, s_eq_hello},
    [PROTO_MSG_WELCOME] = {s_welcome, s_eq_welcome},
    [PROTO_MSG_HEARTBEAT] = {s_heartbeat, s_eq_heartbeat},
    [PROTO_MSG_TASK] = {s_task, s_eq_task},
    [PROTO_MSG_STOP] = {s_stop, s_eq_stop},
    [PROTO_MSG_RESULT] = {s_result, s_eq_result},
    [PROTO_MSG_RESULT_ACK] = {s_result_ack, s_eq_result_ack},
    [PROTO_MSG_UPDATE] = {s_update, s_eq_update},
    [PROTO_MSG_BYE] = {s_bye, s_eq_none},
    [PROTO_MSG_PING] = {s_ping, s_eq_none},
    [PROTO_MSG_PONG] = {s_pong, s_eq_pong},
    [PROTO_MSG_SUBMIT] = {s_submit, s_eq_submit},
    [PROTO_MSG_SUBMIT_OK] = {s_submit_ok, s_eq_submit_ok},
    [PROTO_MSG_STATUS] = {s_status, s_eq_status},
    [PROTO_MSG_STATUS_OK] = {s_status_ok, s_eq_status_ok},
    [PROTO_MSG_CANCEL] = {s_cancel, s_eq_cancel},
    [PROTO_MSG_RETRY] = {s_retry, s_eq_retry},
    [PROTO_MSG_AMEND] = {s_amend, s_eq_amend},
    [PROTO_MSG_AMEND_OK] = {s_amend_ok, s_eq_amend_ok},
    [PROTO_MSG_OUTPUT] = {s_output, s_eq_output},
    [PROTO_MSG_OUTPUT_OK] = {s_output_ok, s_eq_output_ok},
    [PROTO_MSG_TAIL] = {s_tail, s_eq_tail},
    [PROTO_MSG_EXPLAIN] = {s_explain, s_eq_explain},
    [PROTO_MSG_EXPLAIN_OK] = {s_explain_ok, s_eq_explain_ok},
    [PROTO_MSG_APPROVE] = {s_approve, s_eq_verdict},
    [PROTO_MSG_REJECT] = {s_reject, s_eq_verdict},
    [PROTO_MSG_SUBSCRIBE] = {s_subscribe, s_eq_subscribe},
    [PROTO_MSG_EVENTS] = {s_events, s_eq_events},
    [PROTO_MSG_BUDGET] = {s_budget, s_eq_budget},
    [PROTO_MSG_BUDGET_OK] = {s_budget_ok, s_eq_budget_ok},
    [PROTO_MSG_OK] = {s_ok, s_eq_ok},
    [PROTO_MSG_ERROR] = {s_error, s_eq_error},
};

// --- decoding helpers ---------------------------------------------------

// Decodes a private copy of exactly len bytes, so ASan sees any over-read.
static int
s_decode(const void *buf, size_t len, proto_msg_t **out, proto_error_t *err)
{
    if (s_lim.max_frame == 0) {
        proto_limits_default(&s_lim);
    }
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    int rc = proto_decode(len ? copy : NULL, len, &s_lim, out, err);
    free(copy);
    if (rc == 0) {
        CHECK(*out != NULL);
    } else {
        CHECK(*out == NULL);
        CHECK(err->code != PROTO_E_NONE);
        CHECK(err->message[0] != '\0');
    }
    return rc;
}

// Every strict prefix of a valid frame is an incomplete map: each must fail.
static void
s_check_prefixes(const uint8_t *buf, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        proto_msg_t *m = NULL;
        proto_error_t err;
        CHECK_INT(s_decode(buf, n, &m, &err), -1);
        CHECK_INT(err.code, PROTO_E_MALFORMED);
        proto_msg_destroy(&m);
    }
}

// Encodes m, decodes it, checks that re-encoding gives the same bytes and
// that every truncation fails; returns the decoded copy.
static proto_msg_t *
s_roundtrip(const proto_msg_t *m)
{
    uint8_t *buf, *again;
    size_t len, len2;
    proto_msg_t *out = NULL;
    proto_error_t err;
    proto_encode(m, &buf, &len);
    if (s_decode(buf, len, &out, &err) != 0) {
        fprintf(stderr, "%s: %s: %s\n", t_current, proto_cmd_name(m->cmd),
                err.message);
        t_failures++;
        free(buf);
        return NULL;
    }
    CHECK_INT(out->cmd, m->cmd);
    CHECK(out->req == m->req);
    proto_encode(out, &again, &len2);
    CHECK(len == len2 && memcmp(buf, again, len) == 0);
    s_check_prefixes(buf, len);
    free(again);
    free(buf);
    return out;
}

// --- a byte-level frame builder for hostile input -------------------------

typedef struct {
    uint8_t b[8192];
    size_t n;
} s_fr_t;

static void
s_fr_raw(s_fr_t *f, const void *p, size_t n)
{
    memcpy(f->b + f->n, p, n);
    f->n += n;
}

static void
s_fr_byte(s_fr_t *f, uint8_t b)
{
    f->b[f->n++] = b;
}

static void
s_fr_str(s_fr_t *f, const char *s)
{
    size_t n = strlen(s);
    s_fr_byte(f, 0xd9); // str8, even for short strings: both are valid
    s_fr_byte(f, (uint8_t) n);
    s_fr_raw(f, s, n);
}

static void
s_fr_uint(s_fr_t *f, uint64_t v)
{
    s_fr_byte(f, 0xcf);
    for (int i = 7; i >= 0; i--) {
        s_fr_byte(f, (uint8_t) (v >> (8 * i)));
    }
}

// Appends a string literal's bytes (without its terminating NUL).
#define S_FR_LIT(f, lit) s_fr_raw((f), lit, sizeof lit - 1)

// A map of 3 + nfields entries opened with the envelope.
static void
s_fr_env(s_fr_t *f, unsigned nfields, uint64_t v, const char *cmd,
         uint64_t req)
{
    s_fr_byte(f, (uint8_t) (0x80 | (3 + nfields)));
    s_fr_str(f, "v");
    s_fr_uint(f, v);
    s_fr_str(f, "cmd");
    s_fr_str(f, cmd);
    s_fr_str(f, "req");
    s_fr_uint(f, req);
}

// Decodes f expecting failure with code; the message must contain needle.
static void
s_expect_fail(const s_fr_t *f, proto_status_t code, uint64_t req,
              const char *needle)
{
    proto_msg_t *m = NULL;
    proto_error_t err;
    CHECK_INT(s_decode(f->b, f->n, &m, &err), -1);
    CHECK_STR(proto_status_name(err.code), proto_status_name(code));
    CHECK(err.req == req);
    CHECK_HAS(err.message, needle);
    proto_msg_destroy(&m);
}

static void
s_expect_bytes(const void *p, size_t n, proto_status_t code,
               const char *needle)
{
    s_fr_t f = {.n = 0};
    s_fr_raw(&f, p, n);
    s_expect_fail(&f, code, 0, needle);
}

// A HELLO whose "slots" field is the raw bytes given.
static void
s_hello_slots(s_fr_t *f, const void *slots, size_t n)
{
    s_fr_env(f, 2, 1, "HELLO", 77);
    s_fr_str(f, "instance");
    s_fr_str(f, "d1");
    s_fr_str(f, "slots");
    s_fr_raw(f, slots, n);
}

// --- tests --------------------------------------------------------------

static void
test_roundtrip_every_message_full(void)
{
    for (int c = 0; c < PROTO_MSG__COUNT; c++) {
        REQUIRE(s_msgs[c].make != NULL);
        proto_msg_t *m = s_msgs[c].make(true);
        CHECK_INT(m->cmd, c);
        proto_msg_t *d = s_roundtrip(m);
        if (d) {
            s_msgs[c].eq(m, d);
        }
        proto_msg_destroy(&m);
        proto_msg_destroy(&d);
        CHECK(d == NULL);
    }
}

// A prompt TASK: kind, prompt fields, no argv; a bare one keeps the
// optional fields unset.
static void
test_roundtrip_prompt_task(void)
{
    for (int full = 0; full < 2; full++) {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_TASK);
        proto_task_t *t = &m->u.task;
        t->plan = 3;
        t->task = strdup("draft");
        t->token = 7;
        t->attempt = 2;
        t->kind = PROTO_KIND_PROMPT;
        t->prompt = strdup("Summarize:\n{{log.output}}");
        if (full) {
            t->system = strdup("be brief");
            t->model = strdup("llama3.1:8b");
            t->max_tokens = 300;
            t->has_temperature = true;
            t->temperature_milli = 250;
            s_task_extras(t);
        }
        proto_msg_t *d = s_roundtrip(m);
        REQUIRE(d);
        s_eq_task(m, d);
        CHECK_INT(d->u.task.argv.count, 0);
        proto_msg_destroy(&d);
        proto_strv_push(&t->argv, "sh");
        uint8_t *buf = NULL;
        size_t len = 0;
        proto_encode(m, &buf, &len);
        proto_error_t err = {0};
        // The encoder leaves argv out of a prompt TASK, so it decodes.
        CHECK(s_decode(buf, len, &d, &err) == 0);
        proto_msg_destroy(&d);
        free(buf);
        proto_msg_destroy(&m);
    }
}

static void
test_roundtrip_every_message_bare(void)
{
    for (int c = 0; c < PROTO_MSG__COUNT; c++) {
        proto_msg_t *m = s_msgs[c].make(false);
        proto_msg_t *d = s_roundtrip(m);
        if (d) {
            s_msgs[c].eq(m, d);
        }
        proto_msg_destroy(&m);
        proto_msg_destroy(&d);
    }
}

// Optional fields that are absent from the map, not just nil.
static void
test_absent_optionals_take_defaults(void)
{
    s_fr_t f = {.n = 0};
    proto_msg_t *m = NULL;
    proto_error_t err;
    s_fr_env(&f, 4, 1, "RESULT", 5);
    s_fr_str(&f, "plan");
    s_fr_uint(&f, 3);
    s_fr_str(&f, "task");
    s_fr_str(&f, "t");
    s_fr_str(&f, "token");
    s_fr_uint(&f, 8);
    s_fr_str(&f, "outcome");
    s_fr_str(&f, "succeeded");
    REQUIRE(s_decode(f.b, f.n, &m, &err) == 0);
    CHECK_INT(m->u.result.exit_code, -1);
    CHECK_INT(m->u.result.signal, 0);
    CHECK(m->u.result.error == NULL);
    CHECK_INT(m->u.result.out.len, 0);
    CHECK_INT(m->u.result.outcome, PROTO_OUTCOME_SUCCEEDED);
    proto_msg_destroy(&m);
    f.n = 0;
    s_fr_env(&f, 0, 1, "STATUS", 6);
    REQUIRE(s_decode(f.b, f.n, &m, &err) == 0);
    CHECK_INT(m->u.status.plan, 0);
    proto_msg_destroy(&m);
}

static void
test_unknown_fields_are_ignored(void)
{
    s_fr_t f = {.n = 0};
    proto_msg_t *m = NULL;
    proto_error_t err;
    s_fr_env(&f, 3, 1, "HELLO", 5);
    s_fr_str(&f, "future");
    s_fr_raw(&f, "\x92\x81\xa1x\xc0\xcd\x00\x01", 8);
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 2);
    s_fr_str(&f, "instance");
    s_fr_str(&f, "abc");
    REQUIRE(s_decode(f.b, f.n, &m, &err) == 0);
    CHECK_STR(m->u.hello.instance, "abc");
    CHECK_INT(m->u.hello.slots, 2);
    CHECK_INT(m->u.hello.n_leases, 0);
    proto_msg_destroy(&m);
}

static void
test_hostile_huge_counts(void)
{
    s_expect_bytes("\xdd\xff\xff\xff\xff", 5, PROTO_E_MALFORMED, "not a");
    s_expect_bytes("\xdf\xff\xff\xff\xff", 5, PROTO_E_MALFORMED,
                   "declares 4294967295");
    s_expect_bytes("\xde\xff\xff", 3, PROTO_E_MALFORMED, "declares");
    // The same lies one level down, where msgpack-c would allocate them.
    s_expect_bytes("\x81\xa1x\xdd\xff\xff\xff\xff", 8, PROTO_E_MALFORMED,
                   "declares 4294967295");
    s_expect_bytes("\x81\xa1x\xdf\xff\xff\xff\xff", 8, PROTO_E_MALFORMED,
                   "declares");
    s_expect_bytes("\x81\xa1x\x92\x00", 5, PROTO_E_MALFORMED, "declares");
}

static void
test_hostile_short_strings(void)
{
    s_expect_bytes("\x81\xa1x\xd9\x10" "abc", 8, PROTO_E_MALFORMED,
                   "declares 16 bytes");
    s_expect_bytes("\x81\xa1x\xdb\x00\x00\xff\xff" "abc", 11,
                   PROTO_E_MALFORMED, "declares 65535 bytes");
    s_expect_bytes("\x81\xa1x\xc6\xff\xff\xff\x00", 8, PROTO_E_MALFORMED,
                   "declares");
    s_expect_bytes("\x81\xa1x\xdb\x00\x00", 6, PROTO_E_MALFORMED,
                   "truncated");
    s_expect_bytes("\x81\xa1x\xcf\x00\x00", 6, PROTO_E_MALFORMED,
                   "truncated");
}

static void
test_hostile_deep_nesting(void)
{
    s_fr_t f = {.n = 0};
    s_fr_raw(&f, "\x81\xa1x", 3);
    for (int i = 0; i < 7; i++) {
        s_fr_byte(&f, 0x91);
    }
    s_fr_byte(&f, 0x90); // depth 9 counting the top map
    s_expect_fail(&f, PROTO_E_TOO_LARGE, 0, "nesting deeper than 8");
    f.n = 0;
    for (int i = 0; i < 2000; i++) {
        s_fr_raw(&f, "\x81\xa1x", 3);
    }
    s_fr_byte(&f, 0xc0);
    s_expect_fail(&f, PROTO_E_TOO_LARGE, 0, "nesting");
}

static void
test_hostile_ext_and_reserved(void)
{
    s_expect_bytes("\x81\xa1x\xd4\x01\x00", 6, PROTO_E_MALFORMED, "ext");
    s_expect_bytes("\x81\xa1x\xc7\x01\x01\x00", 7, PROTO_E_MALFORMED, "ext");
    s_expect_bytes("\x81\xa1x\xd8\x01" "0123456789abcdef", 21,
                   PROTO_E_MALFORMED, "0xd8");
    s_expect_bytes("\x81\xa1x\xc1", 4, PROTO_E_MALFORMED, "0xc1");
    s_expect_bytes("\xd6\xff\x00\x00\x00\x00", 6, PROTO_E_MALFORMED,
                   "not a");
}

static void
test_hostile_trailing_and_two_objects(void)
{
    s_expect_bytes("\x80\x00", 2, PROTO_E_MALFORMED, "1 bytes after");
    s_expect_bytes("\x80\xc1", 2, PROTO_E_MALFORMED, "after");
    proto_msg_t *ping = s_ping(true);
    uint8_t *buf;
    size_t len;
    proto_encode(ping, &buf, &len);
    s_fr_t f = {.n = 0};
    s_fr_raw(&f, buf, len);
    s_fr_raw(&f, buf, len);
    // The first message's req was read before the fault: it is echoed.
    s_expect_fail(&f, PROTO_E_MALFORMED, UINT64_MAX, "after the message");
    free(buf);
    proto_msg_destroy(&ping);
}

static void
test_hostile_top_level_not_a_map(void)
{
    s_expect_bytes("", 0, PROTO_E_MALFORMED, "empty");
    s_expect_bytes("\x91\x80", 2, PROTO_E_MALFORMED, "not a msgpack map");
    s_expect_bytes("\xa1x", 2, PROTO_E_MALFORMED, "not a msgpack map");
    s_expect_bytes("\x00", 1, PROTO_E_MALFORMED, "not a msgpack map");
    s_expect_bytes("\xc0", 1, PROTO_E_MALFORMED, "not a msgpack map");
    s_expect_bytes("\x80", 1, PROTO_E_MALFORMED, "field 'v'");
}

static void
test_wrong_field_types(void)
{
    s_fr_t f = {.n = 0};
    s_hello_slots(&f, "\xa1" "8", 2);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77,
                  "field 'slots': expected an unsigned integer");
    f.n = 0;
    s_hello_slots(&f, "\xff", 1); // -1
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'slots'");
    f.n = 0;
    s_hello_slots(&f, "\xcb\x40\x20\x00\x00\x00\x00\x00\x00", 9); // 8.0
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'slots'");
    f.n = 0;
    s_hello_slots(&f, "\xc3", 1);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'slots'");
    f.n = 0;
    s_fr_env(&f, 1, 1, "HELLO", 77);
    s_fr_str(&f, "instance");
    s_fr_raw(&f, "\xc4\x02" "d1", 4); // bin where text belongs
    s_expect_fail(&f, PROTO_E_MALFORMED, 77,
                  "field 'instance': expected a string");
    f.n = 0;
    s_fr_env(&f, 4, 1, "OUTPUT_OK", 77);
    s_fr_str(&f, "plan");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "task");
    s_fr_str(&f, "t");
    s_fr_str(&f, "attempt");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "data");
    s_fr_str(&f, "text"); // text where bytes belong
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'data': expected binary");
}

// A HELLO with one lease record whose fields are the raw bytes given.
static void
s_hello_lease(s_fr_t *f, uint8_t map_head, const void *fields, size_t n)
{
    s_hello_slots(f, "\x01", 1);
    f->b[0]++; // one more field: leases
    s_fr_str(f, "leases");
    s_fr_byte(f, 0x91);
    s_fr_byte(f, map_head);
    s_fr_raw(f, fields, n);
}

// A TASK whose "limits" field is the raw bytes given.
static void
s_task_limits(s_fr_t *f, const void *limits, size_t n)
{
    s_fr_env(f, 6, 1, "TASK", 0);
    s_fr_str(f, "plan");
    s_fr_uint(f, 1);
    s_fr_str(f, "task");
    s_fr_str(f, "t");
    s_fr_str(f, "token");
    s_fr_uint(f, 5);
    s_fr_str(f, "attempt");
    s_fr_uint(f, 1);
    s_fr_str(f, "argv");
    s_fr_raw(f, "\x91\xa4true", 6);
    s_fr_str(f, "limits");
    s_fr_raw(f, limits, n);
}

static void
test_task_limits_are_checked(void)
{
    s_fr_t f = {.n = 0};
    s_task_limits(&f, "\x91\x01", 2);
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "field 'limits': expected a map");
    f.n = 0;
    s_task_limits(&f, "\x81\xa5nproc\xff", 8);  // -1
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "field 'limits.nproc'");
    f.n = 0;
    s_task_limits(&f, "\x81\xa5" "cpu_s\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
                  16);  // 2^32
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "field 'limits.cpu_s'");
    f.n = 0;
    s_task_limits(&f, "\x82\xa5" "as_mb\x10\xa7unknown\x01", 17);
    proto_msg_t *m = NULL;
    proto_error_t err;
    REQUIRE(s_decode(f.b, f.n, &m, &err) == 0);
    CHECK_INT(m->u.task.limits.as_mb, 16);
    CHECK_INT(m->u.task.limits.nproc, 0);
    proto_msg_destroy(&m);
}

static void
test_nested_field_errors_name_the_path(void)
{
    s_fr_t f = {.n = 0}, g = {.n = 0};
    s_hello_lease(&f, 0x80, "", 0);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77,
                  "field 'leases[0].plan': required but missing");
    s_fr_str(&g, "plan");
    s_fr_uint(&g, 1);
    s_fr_str(&g, "task");
    s_fr_str(&g, "t");
    s_fr_str(&g, "token");
    s_fr_str(&g, "x");
    f.n = 0;
    s_hello_lease(&f, 0x83, g.b, g.n);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77,
                  "field 'leases[0].token': expected an unsigned integer");
    f.n = 0;
    s_hello_slots(&f, "\x01", 1);
    f.b[0]++;
    s_fr_str(&f, "leases");
    s_fr_raw(&f, "\x91\x01", 2);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'leases[0]': expected a map");
}

static void
test_required_missing_nil_and_duplicates(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 1, 1, "HELLO", 4);
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 1);
    s_expect_fail(&f, PROTO_E_MALFORMED, 4,
                  "field 'instance': required but missing");
    f.n = 0;
    s_fr_env(&f, 2, 1, "HELLO", 4);
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "instance");
    s_fr_byte(&f, 0xc0);
    s_expect_fail(&f, PROTO_E_MALFORMED, 4, "field 'instance': required");
    f.n = 0;
    s_hello_slots(&f, "\x01", 1);
    f.b[0]++;
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 2);
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "appears more than once");
    f.n = 0;
    s_fr_byte(&f, 0x82);
    s_fr_str(&f, "v");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "cmd");
    s_fr_str(&f, "PING");
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "field 'req'");
}

// PROTOCOL.md 3.1: no float anywhere in a frame, even in a field the
// receiver ignores; the error says where (offset and top-level field).
static void
test_floats_are_refused_anywhere(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 1, 1, "PING", 21);
    s_fr_str(&f, "future");
    s_fr_raw(&f, "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9);
    s_expect_fail(&f, PROTO_E_MALFORMED, 21, "float");
    s_expect_fail(&f, PROTO_E_MALFORMED, 21, "field 'future'");
    f.n = 0;
    s_fr_env(&f, 1, 1, "PING", 22);
    s_fr_str(&f, "future");
    s_fr_raw(&f, "\x92\x01\xca\x3f\xc0\x00\x00", 7); // [1, 1.5f]
    s_expect_fail(&f, PROTO_E_MALFORMED, 22, "float");
    f.n = 0;
    s_hello_slots(&f, "\xca\x40\x00\x00\x00", 5);       // slots: 2.0f
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'slots'");
}

// PROTOCOL.md 3.1: a str is UTF-8 (bin is not checked); overlong forms,
// surrogates and code points past U+10FFFF are not UTF-8.
static void
test_invalid_utf8_is_refused(void)
{
    static const char *const bad[] = {
        "\xff", "a\x80", "\xc0\x80", "\xc3", "\xe0\x80\xaf",
        "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_fr_t f = {.n = 0};
        s_fr_env(&f, 1, 1, "PING", 30 + i);
        s_fr_str(&f, "future");
        s_fr_str(&f, bad[i]);
        s_expect_fail(&f, PROTO_E_MALFORMED, 30 + i, "UTF-8");
        s_expect_fail(&f, PROTO_E_MALFORMED, 30 + i, "field 'future'");
    }
    s_fr_t f = {.n = 0};
    proto_msg_t *m = NULL;
    proto_error_t err;
    s_fr_env(&f, 3, 1, "HELLO", 5);
    s_fr_str(&f, "instance");
    // d, e-acute, the euro sign, a bee: 1 to 4 bytes per code point.
    s_fr_str(&f, "d\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d");
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "blob");
    s_fr_raw(&f, "\xc4\x02\xff\x00", 4);                // bin: any bytes
    REQUIRE(s_decode(f.b, f.n, &m, &err) == 0);
    CHECK_STR(m->u.hello.instance, "d\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d");
    proto_msg_destroy(&m);
    // The encoder never writes what a decoder refuses: a message cut in
    // the middle of a character travels with '?' for the broken bytes.
    proto_msg_t *e = s_error(false);
    free(e->u.error.message);
    e->u.error.message = strdup("caf\xc3 \xff\xfe ok \xe2\x82");
    proto_msg_t *d = s_roundtrip(e);
    REQUIRE(d != NULL);
    CHECK_STR(d->u.error.message, "caf? ?? ok ??");
    proto_msg_destroy(&d);
    proto_msg_destroy(&e);
}

// PROTOCOL.md 4: a frame refused by the bounded walk still echoes the
// request's req when the walk read it before the fault.
static void
test_first_pass_errors_echo_req(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 1, 1, "PING", 61);
    s_fr_str(&f, "x");
    S_FR_LIT(&f, "\xd9\x10" "abc");        // a lying length
    s_expect_fail(&f, PROTO_E_MALFORMED, 61, "declares 16 bytes");
    f.n = 0;
    s_fr_env(&f, 1, 1, "PING", 62);
    s_fr_str(&f, "x");
    s_fr_byte(&f, 0xc1);
    s_expect_fail(&f, PROTO_E_MALFORMED, 62, "0xc1");
    // req as a positive fixint and as a non-negative int 8 (both uint).
    f.n = 0;
    S_FR_LIT(&f, "\x82\xa3req\x07\xa1x\xc1");
    s_expect_fail(&f, PROTO_E_MALFORMED, 7, "0xc1");
    f.n = 0;
    S_FR_LIT(&f, "\x82\xa3req\xd0\x05\xa1x\xd9\x09");
    s_expect_fail(&f, PROTO_E_MALFORMED, 5, "declares 9 bytes");
    // Not a uint, nested, or after the fault: nothing to echo.
    f.n = 0;
    S_FR_LIT(&f, "\x82\xa3req\xd0\xfb\xa1x\xc1");
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "0xc1");
    f.n = 0;
    S_FR_LIT(&f, "\x82\xa1m\x81\xa3req\x09\xa1x\xc1");
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "0xc1");
    f.n = 0;
    S_FR_LIT(&f, "\x82\xa1x\xc1\xa3req\x09");
    s_expect_fail(&f, PROTO_E_MALFORMED, 0, "0xc1");
}

static void
test_bad_version_echoes_req(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 0, 2, "PING", 42);
    s_expect_fail(&f, PROTO_E_BAD_VERSION, 42,
                  "protocol version 2 is not supported (this side speaks 1)");
    // The version is judged before the command, which may be new.
    f.n = 0;
    s_fr_env(&f, 0, 2, "SOMETHING_NEW", 43);
    s_expect_fail(&f, PROTO_E_BAD_VERSION, 43, "version 2");
}

static void
test_unknown_command_echoes_req(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 0, 1, "FROB", 9);
    s_expect_fail(&f, PROTO_E_UNKNOWN_COMMAND, 9, "unknown command 'FROB'");
    f.n = 0;
    s_fr_env(&f, 0, 1, "hello", 10); // names are case-sensitive
    s_expect_fail(&f, PROTO_E_UNKNOWN_COMMAND, 10, "'hello'");
    f.n = 0;
    s_fr_env(&f, 0, 1, "BAD\n\x01NAME", 11);
    s_expect_fail(&f, PROTO_E_UNKNOWN_COMMAND, 11, "'BAD??NAME'");
}

static void
test_limits_too_large(void)
{
    s_fr_t f = {.n = 0};
    s_fr_env(&f, 1, 1, "SUBMIT", 3);
    s_fr_str(&f, "workplan");
    s_fr_str(&f, "0123456789abcdefX");
    s_lim.max_string = 16;
    s_expect_fail(&f, PROTO_E_TOO_LARGE, 3, "over the limit 16");
    // A frame refused before any byte of it is walked echoes no req.
    proto_limits_default(&s_lim);
    s_lim.max_frame = f.n - 1;
    s_expect_fail(&f, PROTO_E_TOO_LARGE, 0, "frame of");
    proto_limits_default(&s_lim);
    s_lim.max_objects = 8;
    s_expect_fail(&f, PROTO_E_TOO_LARGE, 0, "more than 8 objects");
    proto_limits_default(&s_lim);
    proto_msg_t *m = NULL;
    proto_error_t err;
    CHECK_INT(s_decode(f.b, f.n, &m, &err), 0);
    proto_msg_destroy(&m);
}

static void
test_schema_limits(void)
{
    s_fr_t f = {.n = 0};
    s_hello_slots(&f, "\xcd\x04\x01", 3); // 1025
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'slots': 1025");
    f.n = 0;
    s_fr_env(&f, 2, 1, "HELLO", 1);
    s_fr_str(&f, "slots");
    s_fr_uint(&f, 1);
    s_fr_str(&f, "instance");
    s_fr_str(&f, "");
    s_expect_fail(&f, PROTO_E_MALFORMED, 1, "field 'instance': 0 bytes");
    f.n = 0;
    s_hello_slots(&f, "\x01", 1);
    f.b[0]++;
    s_fr_str(&f, "tags");
    s_fr_byte(&f, 0xdc);
    s_fr_byte(&f, 0);
    s_fr_byte(&f, 65);
    for (int i = 0; i < 65; i++) {
        s_fr_str(&f, "t");
    }
    s_expect_fail(&f, PROTO_E_MALFORMED, 77, "field 'tags': 65 items");
    f.n = 0;
    s_fr_env(&f, 2, 1, "SUBMIT", 2);
    s_fr_str(&f, "workplan");
    s_fr_raw(&f, "\xa3{\x00}", 4);
    s_fr_str(&f, "idempotency_key");
    s_fr_str(&f, "k");
    s_expect_fail(&f, PROTO_E_MALFORMED, 2, "contains a NUL byte");
    f.n = 0;
    s_fr_env(&f, 3, 1, "ERROR", 2);
    s_fr_str(&f, "code");
    s_fr_str(&f, "NO_SUCH_CODE");
    s_fr_str(&f, "message");
    s_fr_str(&f, "m");
    s_fr_str(&f, "details");
    s_fr_byte(&f, 0x90);
    s_expect_fail(&f, PROTO_E_MALFORMED, 2, "unknown value 'NO_SUCH_CODE'");
}

// Random bytes and mutated valid frames: no crash, no leak, clean errors.
static void
test_garbage_never_crashes(void)
{
    uint32_t x = 2463534242u;
    uint8_t *buf;
    size_t len;
    proto_msg_t *full = s_task(true);
    proto_encode(full, &buf, &len);
    for (int round = 0; round < 20000; round++) {
        uint8_t tmp[512];
        size_t n = len < sizeof tmp ? len : sizeof tmp;
        memcpy(tmp, buf, n);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            tmp[x % n] = (uint8_t) (x >> 8);
        }
        proto_msg_t *m = NULL;
        proto_error_t err;
        s_decode(tmp, round % 7 == 0 ? x % n : n, &m, &err);
        proto_msg_destroy(&m);
    }
    free(buf);
    proto_msg_destroy(&full);
}

static void
test_names_and_helpers(void)
{
    proto_cmd_t c;
    proto_status_t s;
    proto_task_state_t st;
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        REQUIRE(proto_cmd_parse(proto_cmd_name((proto_cmd_t) i), &c) == 0);
        CHECK_INT(c, i);
    }
    CHECK_INT(proto_cmd_parse("NOPE", &c), -1);
    CHECK_STR(proto_cmd_name(PROTO_MSG_RESULT_ACK), "RESULT_ACK");
    CHECK_INT(proto_cmd_senders(PROTO_MSG_HELLO),
              PROTO_R_DRONE | PROTO_R_OPERATOR);
    CHECK_INT(proto_cmd_senders(PROTO_MSG_TASK), PROTO_R_BROKER);
    CHECK_STR(proto_status_name(PROTO_E_HELLO_REQUIRED), "HELLO_REQUIRED");
    CHECK_INT(proto_status_parse("UNSUPPORTED", &s), 0);
    CHECK_INT(s, PROTO_E_UNSUPPORTED);
    CHECK_INT(proto_status_parse("unsupported", &s), -1);
    CHECK_STR(proto_task_state_name(PROTO_TASK_AWAITING_APPROVAL),
              "awaiting_approval");
    CHECK_INT(proto_task_state_parse("leased", &st), 0);
    CHECK_INT(st, PROTO_TASK_LEASED);
    CHECK_STR(proto_outcome_name(PROTO_OUTCOME_RELEASED), "released");
    CHECK_STR(proto_ack_name(PROTO_ACK_DUPLICATE), "duplicate");
    CHECK_STR(proto_cmd_name(PROTO_MSG__COUNT), "?");
    proto_msg_t *e = proto_error_new(5, PROTO_E_NOT_FOUND, "no plan %d", 7);
    CHECK_STR(e->u.error.message, "no plan 7");
    CHECK(e->req == 5);
    proto_msg_destroy(&e);
    CHECK(e == NULL);
    proto_msg_destroy(&e);
    proto_msg_destroy(NULL);
    proto_limits_t lim;
    proto_limits_default(&lim);
    CHECK_INT(lim.max_frame, 64 << 20);
    CHECK_INT(lim.max_depth, 8);
    CHECK_INT(lim.max_objects, 1000000);
    CHECK_INT(lim.max_string, 64 << 20);
}

// Every message and every error code has its place in the spec.
static void
test_protocol_md_names_every_message(void)
{
    char *doc = t_read_file(WAGGLE_SOURCE_DIR "/proto/PROTOCOL.md", NULL);
    char needle[64];
    REQUIRE(doc != NULL);
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        snprintf(needle, sizeof needle, "\n### %s\n",
                 proto_cmd_name((proto_cmd_t) i));
        CHECK_HAS(doc, needle);
    }
    for (int i = 1; i < PROTO_E__COUNT; i++) {
        snprintf(needle, sizeof needle, "| `%s` |",
                 proto_status_name((proto_status_t) i));
        CHECK_HAS(doc, needle);
    }
    free(doc);
}

// The fuzz target's seed corpus, tests/fuzz/corpus/: one valid frame per
// message, full and bare, made by the builders of the round trips.  With
// WAGGLE_WRITE_CORPUS=1 in the environment this test (re)writes it;
// otherwise every seed must be there and decode to its message, so a
// stale corpus fails here rather than quietly seeding the fuzzer with
// refusals.
static void
test_fuzz_corpus_holds_every_message(void)
{
    bool write = getenv("WAGGLE_WRITE_CORPUS") != NULL;
    for (int c = 0; c < PROTO_MSG__COUNT; c++) {
        for (int full = 0; full < 2; full++) {
            char path[512], name[32];
            snprintf(name, sizeof name, "%s", proto_cmd_name(c));
            for (char *p = name; *p; p++) {
                *p = (char) tolower((unsigned char) *p);
            }
            snprintf(path, sizeof path, WAGGLE_SOURCE_DIR
                     "/tests/fuzz/corpus/%s%s.msgpack", name,
                     full ? "" : "-bare");
            proto_msg_t *m = s_msgs[c].make(full);
            uint8_t *buf;
            size_t len;
            proto_encode(m, &buf, &len);
            if (write) {
                FILE *f = fopen(path, "wb");
                REQUIRE(f != NULL);
                CHECK(fwrite(buf, 1, len, f) == len);
                CHECK(fclose(f) == 0);
            }
            size_t n = 0;
            char *seed = t_read_file(path, &n);
            proto_msg_t *d = NULL;
            proto_error_t err;
            CHECK(seed != NULL);
            if (seed && s_decode(seed, n, &d, &err) == 0) {
                CHECK_INT(d->cmd, c);
            } else {
                fprintf(stderr, "%s: stale or missing; rerun with "
                        "WAGGLE_WRITE_CORPUS=1\n", path);
                t_failures++;
            }
            proto_msg_destroy(&d);
            free(seed);
            free(buf);
            proto_msg_destroy(&m);
        }
    }
}

static const t_case_t t_cases[] = {
    T(test_task_limits_are_checked),
    T(test_roundtrip_every_message_full),
    T(test_roundtrip_every_message_bare),
    T(test_roundtrip_prompt_task),
    T(test_absent_optionals_take_defaults),
    T(test_unknown_fields_are_ignored),
    T(test_hostile_huge_counts),
    T(test_hostile_short_strings),
    T(test_hostile_deep_nesting),
    T(test_hostile_ext_and_reserved),
    T(test_hostile_trailing_and_two_objects),
    T(test_hostile_top_level_not_a_map),
    T(test_wrong_field_types),
    T(test_nested_field_errors_name_the_path),
    T(test_required_missing_nil_and_duplicates),
    T(test_floats_are_refused_anywhere),
    T(test_invalid_utf8_is_refused),
    T(test_first_pass_errors_echo_req),
    T(test_bad_version_echoes_req),
    T(test_unknown_command_echoes_req),
    T(test_limits_too_large),
    T(test_schema_limits),
    T(test_garbage_never_crashes),
    T(test_names_and_helpers),
    T(test_protocol_md_names_every_message),
    T(test_fuzz_corpus_holds_every_message),
    {0},
};

T_MAIN(t_cases)
