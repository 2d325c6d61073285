// codec_encode: Waggle messages to msgpack frames (proto_encode()).
//
// Owns the writing half of the codec: a growable buffer behind a
// msgpack_packer, the s_put_* field writers and one encoder per message,
// dispatched from a table.  A frame is one msgpack map: the envelope
// {"v", "cmd", "req"} and then every field of the message (PROTOCOL.md
// lists them).  The encoder always writes every field, a NULL string as
// nil, so each message's field count is a constant.  It trusts its caller:
// a NULL required string asserts in debug builds and otherwise travels as
// nil, an out-of-range enum as "?", both refused by the receiver.
// Never reads a frame (codec.c decodes) and never fails: the buffer grows
// through xalloc, which aborts on OOM.  Pure: no I/O, no clock, no logging.
#include "proto/proto.h"

#include "common/xalloc.h"
#include "proto/prewalk.h"

#include <assert.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
} s_buf_t;

// msgpack_packer's write callback; xrealloc aborts on OOM, so it never fails.
static int
s_buf_write(void *data, const char *p, size_t n)
{
    s_buf_t *b = data;
    if (n == 0) {
        return 0;
    }
    if (b->len + n > b->cap) {
        while (b->len + n > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 256;
        }
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

// A str must be UTF-8 (PROTOCOL.md 3.1) or the receiver refuses the whole
// frame, and text from outside may not be: an error message cut mid-
// character, a name read from a file.  Each byte that starts no valid
// sequence travels as '?', so the rest of the message still arrives.
static void
s_pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    size_t bad = prewalk_utf8_bad((const uint8_t *) s, n);
    if (bad == n) {
        msgpack_pack_str_with_body(pk, s, n);
        return;
    }
    char *copy = xstrndup(s, n);
    while (bad < n) {
        copy[bad++] = '?';
        bad += prewalk_utf8_bad((const uint8_t *) copy + bad, n - bad);
    }
    msgpack_pack_str_with_body(pk, copy, n);
    free(copy);
}

// An optional string: NULL travels as nil.
static void
s_put_ostr(msgpack_packer *pk, const char *key, const char *s)
{
    s_pk_str(pk, key);
    if (s) {
        s_pk_str(pk, s);
    } else {
        msgpack_pack_nil(pk);
    }
}

// A required string: NULL is a bug in the caller.  Release builds send it
// as nil, which the receiver refuses naming the field, rather than crash.
static void
s_put_str(msgpack_packer *pk, const char *key, const char *s)
{
    assert(s);
    s_put_ostr(pk, key, s);
}

static void
s_put_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    s_pk_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

static void
s_put_i64(msgpack_packer *pk, const char *key, int64_t v)
{
    s_pk_str(pk, key);
    msgpack_pack_int64(pk, v);
}

static void
s_put_bool(msgpack_packer *pk, const char *key, bool v)
{
    s_pk_str(pk, key);
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static void
s_put_bin(msgpack_packer *pk, const char *key, const proto_bytes_t *b)
{
    s_pk_str(pk, key);
    msgpack_pack_bin_with_body(pk, b->len ? (const void *) b->data : "",
                               b->len);
}

static void
s_put_strv(msgpack_packer *pk, const char *key, const proto_strv_t *v)
{
    s_pk_str(pk, key);
    msgpack_pack_array(pk, v->count);
    for (size_t i = 0; i < v->count; i++) {
        s_pk_str(pk, v->items[i]);
    }
}

// The envelope, opening a map of 3 + nfields entries.
static void
s_envelope(msgpack_packer *pk, const proto_msg_t *m, size_t nfields)
{
    msgpack_pack_map(pk, 3 + nfields);
    s_put_u64(pk, "v", PROTO_VERSION);
    s_put_str(pk, "cmd", proto_cmd_name(m->cmd));
    s_put_u64(pk, "req", m->req);
}

static void
s_enc_empty(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 0);
}

static void
s_enc_hello(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_hello_t *h = &m->u.hello;
    s_envelope(pk, m, 8);
    s_put_str(pk, "instance", h->instance);
    s_put_ostr(pk, "secret", h->secret);
    s_put_ostr(pk, "host", h->host);
    s_put_ostr(pk, "version", h->version);
    s_put_u64(pk, "slots", h->slots);
    s_put_strv(pk, "tags", &h->tags);
    s_put_bool(pk, "draining", h->draining);
    s_pk_str(pk, "leases");
    msgpack_pack_array(pk, h->n_leases);
    for (size_t i = 0; i < h->n_leases; i++) {
        msgpack_pack_map(pk, 4);
        s_put_i64(pk, "plan", h->leases[i].plan);
        s_put_str(pk, "task", h->leases[i].task);
        s_put_u64(pk, "token", h->leases[i].token);
        s_put_bool(pk, "finished", h->leases[i].finished);
    }
}

static void
s_enc_welcome(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_welcome_t *w = &m->u.welcome;
    s_envelope(pk, m, 5);
    s_put_u64(pk, "heartbeat_ms", w->heartbeat_ms);
    s_put_u64(pk, "lease_ms", w->lease_ms);
    s_put_u64(pk, "max_output_bytes", w->max_output_bytes);
    s_put_str(pk, "broker_id", w->broker_id);
    s_put_ostr(pk, "secret", w->secret);
}

static void
s_enc_heartbeat(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_heartbeat_t *h = &m->u.heartbeat;
    s_envelope(pk, m, 1);
    s_pk_str(pk, "tokens");
    msgpack_pack_array(pk, h->n_tokens);
    for (size_t i = 0; i < h->n_tokens; i++) {
        msgpack_pack_uint64(pk, h->tokens[i]);
    }
}

static void
s_enc_env_inputs(msgpack_packer *pk, const proto_task_t *t)
{
    s_pk_str(pk, "env");
    msgpack_pack_map(pk, t->n_env);
    for (size_t i = 0; i < t->n_env; i++) {
        s_pk_str(pk, t->env[i].key);
        s_pk_str(pk, t->env[i].value);
    }
    s_pk_str(pk, "inputs");
    msgpack_pack_array(pk, t->n_inputs);
    for (size_t i = 0; i < t->n_inputs; i++) {
        msgpack_pack_map(pk, 3);
        s_put_str(pk, "id", t->inputs[i].id);
        s_put_bin(pk, "data", &t->inputs[i].data);
        s_put_bool(pk, "truncated", t->inputs[i].truncated);
    }
}

// nil when no limit is given, so a TASK without limits stays as it was.
static void
s_enc_limits(msgpack_packer *pk, const proto_task_limits_t *l)
{
    s_pk_str(pk, "limits");
    if (!l->as_mb && !l->nofile && !l->nproc && !l->cpu_s) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_map(pk, 4);
    s_put_u64(pk, "as_mb", l->as_mb);
    s_put_u64(pk, "nofile", l->nofile);
    s_put_u64(pk, "nproc", l->nproc);
    s_put_u64(pk, "cpu_s", l->cpu_s);
}

static void
s_enc_task(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_task_t *t = &m->u.task;
    bool prompt = t->kind == PROTO_KIND_PROMPT;
    s_envelope(pk, m, prompt ? 16 : 11);
    s_put_i64(pk, "plan", t->plan);
    s_put_ostr(pk, "plan_name", t->plan_name);
    s_put_str(pk, "task", t->task);
    s_put_u64(pk, "token", t->token);
    s_put_u64(pk, "attempt", t->attempt);
    if (prompt) {
        // A run TASK has no "kind" (run is the default), so it stays as
        // drones without prompt support decode it.
        s_put_str(pk, "kind", "prompt");
        s_put_str(pk, "prompt", t->prompt);
        s_put_ostr(pk, "system", t->system);
        s_put_ostr(pk, "model", t->model);
        s_put_u64(pk, "max_tokens", t->max_tokens);
        s_pk_str(pk, "temperature_milli");
        if (t->has_temperature) {
            msgpack_pack_uint32(pk, t->temperature_milli);
        } else {
            msgpack_pack_nil(pk);
        }
    } else {
        s_put_strv(pk, "argv", &t->argv);
    }
    s_put_ostr(pk, "cwd", t->cwd);
    s_put_u64(pk, "timeout_s", t->timeout_s);
    s_enc_limits(pk, &t->limits);
    s_enc_env_inputs(pk, t); // "env" and "inputs"
}

static void
s_enc_stop(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_stop_t *s = &m->u.stop;
    s_envelope(pk, m, 4);
    s_put_i64(pk, "plan", s->plan);
    s_put_str(pk, "task", s->task);
    s_put_u64(pk, "token", s->token);
    s_put_ostr(pk, "reason", s->reason);
}

static void
s_enc_result(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_result_t *r = &m->u.result;
    bool tokens = r->prompt_tokens >= 0 || r->completion_tokens >= 0;
    s_envelope(pk, m, tokens ? 16 : 14);
    s_put_i64(pk, "plan", r->plan);
    s_put_str(pk, "task", r->task);
    s_put_u64(pk, "token", r->token);
    s_put_str(pk, "outcome", proto_outcome_name(r->outcome));
    s_put_i64(pk, "exit_code", r->exit_code);
    s_put_i64(pk, "signal", r->signal);
    s_put_bool(pk, "timed_out", r->timed_out);
    s_put_ostr(pk, "error", r->error);
    s_put_bin(pk, "out", &r->out);
    s_put_bool(pk, "out_truncated", r->out_truncated);
    s_put_bin(pk, "err", &r->err);
    s_put_bool(pk, "err_truncated", r->err_truncated);
    s_put_i64(pk, "started_ms", r->started_ms);
    s_put_i64(pk, "duration_ms", r->duration_ms);
    if (tokens) {
        s_put_i64(pk, "prompt_tokens", r->prompt_tokens < 0 ? 0 : r->prompt_tokens);
        s_put_i64(pk, "completion_tokens",
                  r->completion_tokens < 0 ? 0 : r->completion_tokens);
    }
}

static void
s_enc_result_ack(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_result_ack_t *a = &m->u.result_ack;
    s_envelope(pk, m, 5);
    s_put_i64(pk, "plan", a->plan);
    s_put_str(pk, "task", a->task);
    s_put_u64(pk, "token", a->token);
    s_put_str(pk, "status", proto_ack_name(a->status));
    s_put_ostr(pk, "message", a->message);
}

static void
s_enc_update(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 2);
    s_put_u64(pk, "slots", m->u.update.slots);
    s_put_bool(pk, "draining", m->u.update.draining);
}

static void
s_enc_pong(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 3);
    s_put_str(pk, "role", m->u.pong.role);
    s_put_str(pk, "name", m->u.pong.name);
    s_put_str(pk, "version", m->u.pong.version);
}

static void
s_enc_submit(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 2);
    s_put_str(pk, "workplan", m->u.submit.workplan);
    s_put_ostr(pk, "idempotency_key", m->u.submit.idempotency_key);
}

static void
s_enc_submit_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 3);
    s_put_i64(pk, "plan", m->u.submit_ok.plan);
    s_put_bool(pk, "created", m->u.submit_ok.created);
    s_put_strv(pk, "warnings", &m->u.submit_ok.warnings);
}

static void
s_enc_status(msgpack_packer *pk, const proto_msg_t *m)
{
    // "workplan" only when asked for: a request as it was before the field.
    s_envelope(pk, m, m->u.status.workplan ? 4 : 3);
    s_put_i64(pk, "plan", m->u.status.plan);
    s_put_u64(pk, "offset", m->u.status.offset);
    s_put_bool(pk, "summary", m->u.status.summary);
    if (m->u.status.workplan) {
        s_put_bool(pk, "workplan", true);
    }
}

static void
s_enc_plan_info(msgpack_packer *pk, const proto_plan_info_t *p)
{
    msgpack_pack_map(pk, 9);
    s_put_i64(pk, "id", p->id);
    s_put_i64(pk, "prompt_tokens", p->prompt_tokens);
    s_put_i64(pk, "completion_tokens", p->completion_tokens);
    s_put_ostr(pk, "name", p->name);
    s_put_str(pk, "state", p->state);
    s_put_ostr(pk, "submitted_by", p->submitted_by);
    s_put_i64(pk, "created_ms", p->created_ms);
    s_put_i64(pk, "finished_ms", p->finished_ms);
    s_pk_str(pk, "counts");
    msgpack_pack_map(pk, PROTO_TASK__COUNT);
    for (int i = 0; i < PROTO_TASK__COUNT; i++) {
        s_pk_str(pk, proto_task_state_name((proto_task_state_t) i));
        msgpack_pack_uint32(pk, p->counts[i]);
    }
}

static void
s_enc_task_info(msgpack_packer *pk, const proto_task_info_t *t)
{
    msgpack_pack_map(pk, 17);
    s_put_str(pk, "id", t->id);
    s_put_i64(pk, "ready_ms", t->ready_ms);
    s_put_u64(pk, "attempt", t->attempt);
    s_put_u64(pk, "attempt_budget", t->attempt_budget);
    s_put_i64(pk, "started_ms", t->started_ms);
    s_put_i64(pk, "ended_ms", t->ended_ms);
    s_put_i64(pk, "duration_ms", t->duration_ms);
    s_put_i64(pk, "prompt_tokens", t->prompt_tokens);
    s_put_i64(pk, "completion_tokens", t->completion_tokens);
    s_put_str(pk, "state", proto_task_state_name(t->state));
    s_put_str(pk, "kind", t->kind);
    s_put_u64(pk, "attempts", t->attempts);
    s_put_ostr(pk, "drone", t->drone);
    s_pk_str(pk, "exit_code");
    if (t->has_exit_code) {
        msgpack_pack_int32(pk, t->exit_code);
    } else {
        msgpack_pack_nil(pk);
    }
    s_put_ostr(pk, "last_error", t->last_error);
    s_put_ostr(pk, "waiting_reason", t->waiting_reason);
    s_put_strv(pk, "needs", &t->needs);
}

static void
s_enc_drone_info(msgpack_packer *pk, const proto_drone_info_t *d)
{
    msgpack_pack_map(pk, 10);
    s_put_str(pk, "instance", d->instance);
    s_put_str(pk, "name", d->name);
    s_put_ostr(pk, "host", d->host);
    s_put_u64(pk, "slots", d->slots);
    s_put_u64(pk, "leases", d->leases);
    s_put_bool(pk, "draining", d->draining);
    s_put_strv(pk, "tags", &d->tags);
    s_put_i64(pk, "last_seen_ms", d->last_seen_ms);
    s_put_bool(pk, "quarantined", d->quarantined);
    s_pk_str(pk, "tasks");
    msgpack_pack_array(pk, d->n_tasks);
    for (size_t i = 0; i < d->n_tasks; i++) {
        bool left = d->tasks[i].lease_left_ms >= 0;
        msgpack_pack_map(pk, left ? 3 : 2);
        s_put_i64(pk, "plan", d->tasks[i].plan);
        s_put_str(pk, "task", d->tasks[i].task);
        if (left) {
            s_put_i64(pk, "lease_left_ms", d->tasks[i].lease_left_ms);
        }
    }
}

static void
s_enc_status_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_status_ok_t *s = &m->u.status_ok;
    s_envelope(pk, m, s->workplan ? 5 : 4);
    s_put_bool(pk, "more", s->more);
    if (s->workplan) {
        s_put_str(pk, "workplan", s->workplan);
    }
    s_pk_str(pk, "plans");
    msgpack_pack_array(pk, s->n_plans);
    for (size_t i = 0; i < s->n_plans; i++) {
        s_enc_plan_info(pk, &s->plans[i]);
    }
    s_pk_str(pk, "tasks");
    msgpack_pack_array(pk, s->n_tasks);
    for (size_t i = 0; i < s->n_tasks; i++) {
        s_enc_task_info(pk, &s->tasks[i]);
    }
    s_pk_str(pk, "drones");
    msgpack_pack_array(pk, s->n_drones);
    for (size_t i = 0; i < s->n_drones; i++) {
        s_enc_drone_info(pk, &s->drones[i]);
    }
}

static void
s_enc_amend(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 2);
    s_put_i64(pk, "plan", m->u.amend.plan);
    s_put_str(pk, "amendment", m->u.amend.amendment);
}

static void
s_enc_amend_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_amend_ok_t *a = &m->u.amend_ok;
    s_envelope(pk, m, 5);
    s_put_i64(pk, "plan", a->plan);
    s_put_strv(pk, "added", &a->added);
    s_put_strv(pk, "cancelled", &a->cancelled);
    s_put_strv(pk, "replaced", &a->replaced);
    s_put_strv(pk, "warnings", &a->warnings);
}

// CANCEL and RETRY share a shape.
static void
s_enc_plan_task(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_cancel_t *c = &m->u.cancel;
    const proto_retry_t *r = &m->u.retry;
    s_envelope(pk, m, 2);
    if (m->cmd == PROTO_MSG_CANCEL) {
        s_put_i64(pk, "plan", c->plan);
        s_put_ostr(pk, "task", c->task);
    } else {
        s_put_i64(pk, "plan", r->plan);
        s_put_str(pk, "task", r->task);
    }
}

static void
s_enc_budget(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_budget_t *b = &m->u.budget;
    s_envelope(pk, m, 2);
    s_put_i64(pk, "plan", b->plan);
    s_put_i64(pk, "tokens", b->tokens);
}

static void
s_enc_budget_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_budget_ok_t *b = &m->u.budget_ok;
    s_envelope(pk, m, 5);
    s_put_i64(pk, "plan", b->plan);
    s_put_i64(pk, "old_tokens", b->old_tokens);
    s_put_i64(pk, "new_tokens", b->new_tokens);
    s_put_i64(pk, "used", b->used);
    s_put_i64(pk, "reserved", b->reserved);
}

static void
s_enc_verdict(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_verdict_t *v = &m->u.verdict;
    s_envelope(pk, m, 4);
    s_put_i64(pk, "plan", v->plan);
    s_put_str(pk, "task", v->task);
    s_put_ostr(pk, "note", v->note);
    s_put_str(pk, "hash", v->hash);
}

static void
s_enc_output(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_output_t *o = &m->u.output;
    s_envelope(pk, m, o->live ? 5 : 4);
    s_put_i64(pk, "plan", o->plan);
    s_put_str(pk, "task", o->task);
    s_put_u64(pk, "attempt", o->attempt);
    s_put_bool(pk, "want_stderr", o->want_stderr);
    if (o->live) {
        s_put_bool(pk, "live", true);
    }
}

// The live fields go only with a state (a reply to OUTPUT with live), so
// a console that never asks live sees the reply it always saw.
static void
s_enc_output_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_output_ok_t *o = &m->u.output_ok;
    s_envelope(pk, m, o->state ? 9 : 5);
    s_put_i64(pk, "plan", o->plan);
    s_put_str(pk, "task", o->task);
    s_put_u64(pk, "attempt", o->attempt);
    s_put_bin(pk, "data", &o->data);
    s_put_bool(pk, "truncated", o->truncated);
    if (o->state) {
        s_put_str(pk, "state", o->state);
        s_put_bool(pk, "running", o->running);
        s_put_u64(pk, "token", o->token);
        s_put_u64(pk, "total", o->total);
    }
}

static void
s_enc_tail(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_tail_t *t = &m->u.tail;
    s_envelope(pk, m, 3);
    s_put_u64(pk, "token", t->token);
    s_put_u64(pk, "total", t->total);
    s_put_bin(pk, "data", &t->data);
}

static void
s_enc_explain(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 2);
    s_put_i64(pk, "plan", m->u.explain.plan);
    s_put_str(pk, "task", m->u.explain.task);
}

static void
s_enc_explain_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_explain_ok_t *x = &m->u.explain_ok;
    s_envelope(pk, m, 21);
    s_put_i64(pk, "plan", x->plan);
    s_put_str(pk, "task", x->task);
    s_put_str(pk, "state", x->state);
    s_put_str(pk, "code", x->code);
    s_put_str(pk, "reason", x->reason);
    s_put_strv(pk, "needs", &x->needs);
    s_put_strv(pk, "need_states", &x->need_states);
    s_put_u64(pk, "more_needs", x->more_needs);
    s_put_strv(pk, "tags", &x->tags);
    s_put_ostr(pk, "drone", x->drone);
    s_put_ostr(pk, "model", x->model);
    s_put_ostr(pk, "blocked_by", x->blocked_by);
    s_put_ostr(pk, "blocked_state", x->blocked_state);
    s_put_i64(pk, "since_ms", x->since_ms);
    s_put_i64(pk, "until_ms", x->until_ms);
    s_put_i64(pk, "last_seen_ms", x->last_seen_ms);
    s_put_i64(pk, "used", x->used);
    s_put_i64(pk, "budget", x->budget);
    s_put_u64(pk, "limit", x->limit);
    s_put_u64(pk, "in_flight", x->in_flight);
    s_put_u64(pk, "attempt", x->attempt);
}

static void
s_enc_subscribe(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 3);
    s_put_i64(pk, "since", m->u.subscribe.since);
    s_put_i64(pk, "plan", m->u.subscribe.plan);
    s_put_u64(pk, "wait_ms", m->u.subscribe.wait_ms);
}

static void
s_enc_event(msgpack_packer *pk, const proto_event_t *e)
{
    msgpack_pack_map(pk, 9);
    s_put_i64(pk, "seq", e->seq);
    s_put_i64(pk, "at_ms", e->at_ms);
    s_put_i64(pk, "plan", e->plan);
    s_put_ostr(pk, "task", e->task);
    s_put_str(pk, "actor", e->actor);
    s_put_str(pk, "kind", e->kind);
    s_put_ostr(pk, "from", e->from);
    s_put_ostr(pk, "to", e->to);
    s_put_ostr(pk, "detail", e->detail);
}

static void
s_enc_events(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_events_t *e = &m->u.events;
    s_envelope(pk, m, 4);
    s_put_i64(pk, "next", e->next);
    s_put_bool(pk, "more", e->more);
    s_put_bool(pk, "gap", e->gap);
    s_pk_str(pk, "events");
    msgpack_pack_array(pk, e->n_events);
    for (size_t i = 0; i < e->n_events; i++) {
        s_enc_event(pk, &e->events[i]);
    }
}

static void
s_enc_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    s_envelope(pk, m, 1);
    s_put_ostr(pk, "message", m->u.ok.message);
}

static void
s_enc_error(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_error_body_t *e = &m->u.error;
    s_envelope(pk, m, 3);
    s_put_str(pk, "code", proto_status_name(e->code));
    s_put_str(pk, "message", e->message);
    s_put_strv(pk, "details", &e->details);
}

// --- the message table -------------------------------------------------

static void (*const s_enc[PROTO_MSG__COUNT])(msgpack_packer *pk,
                                             const proto_msg_t *m) = {
    [PROTO_MSG_HELLO] = s_enc_hello,
    [PROTO_MSG_WELCOME] = s_enc_welcome,
    [PROTO_MSG_HEARTBEAT] = s_enc_heartbeat,
    [PROTO_MSG_TASK] = s_enc_task,
    [PROTO_MSG_STOP] = s_enc_stop,
    [PROTO_MSG_RESULT] = s_enc_result,
    [PROTO_MSG_RESULT_ACK] = s_enc_result_ack,
    [PROTO_MSG_UPDATE] = s_enc_update,
    [PROTO_MSG_BYE] = s_enc_empty,
    [PROTO_MSG_PING] = s_enc_empty,
    [PROTO_MSG_PONG] = s_enc_pong,
    [PROTO_MSG_SUBMIT] = s_enc_submit,
    [PROTO_MSG_SUBMIT_OK] = s_enc_submit_ok,
    [PROTO_MSG_STATUS] = s_enc_status,
    [PROTO_MSG_STATUS_OK] = s_enc_status_ok,
    [PROTO_MSG_CANCEL] = s_enc_plan_task,
    [PROTO_MSG_RETRY] = s_enc_plan_task,
    [PROTO_MSG_AMEND] = s_enc_amend,
    [PROTO_MSG_AMEND_OK] = s_enc_amend_ok,
    [PROTO_MSG_OUTPUT] = s_enc_output,
    [PROTO_MSG_APPROVE] = s_enc_verdict,
    [PROTO_MSG_REJECT] = s_enc_verdict,
    [PROTO_MSG_BUDGET] = s_enc_budget,
    [PROTO_MSG_BUDGET_OK] = s_enc_budget_ok,
    [PROTO_MSG_OUTPUT_OK] = s_enc_output_ok,
    [PROTO_MSG_TAIL] = s_enc_tail,
    [PROTO_MSG_EXPLAIN] = s_enc_explain,
    [PROTO_MSG_EXPLAIN_OK] = s_enc_explain_ok,
    [PROTO_MSG_SUBSCRIBE] = s_enc_subscribe,
    [PROTO_MSG_EVENTS] = s_enc_events,
    [PROTO_MSG_OK] = s_enc_ok,
    [PROTO_MSG_ERROR] = s_enc_error,
};

void
proto_encode(const proto_msg_t *msg, uint8_t **buf, size_t *len)
{
    assert(msg && buf && len);
    assert((unsigned) msg->cmd < PROTO_MSG__COUNT);
    s_buf_t b = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, s_buf_write);
    s_enc[msg->cmd](&pk, msg);
    *buf = b.data;
    *len = b.len;
}
