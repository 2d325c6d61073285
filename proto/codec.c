// codec: Waggle messages to msgpack frames and back.
//
// The only file in Waggle that includes <msgpack.h>.  A frame is one msgpack
// map: the envelope {"v", "cmd", "req"} and then every field of the message
// (PROTOCOL.md lists them).  The encoder always writes every field, a NULL
// string as nil, so each message's field count is a constant.  It trusts
// its caller: a NULL required string asserts in debug builds and otherwise
// travels as nil, an out-of-range enum as "?", both refused by the receiver.
//
// Decoding never trusts its input and runs in three steps:
//   1. s_prewalk() walks the raw bytes and proves they are exactly one map
//      whose every declared count and length fits in the bytes that remain,
//      within the depth, object and string limits.  msgpack-c allocates what
//      a header declares before the elements arrive, so nothing reaches it
//      unchecked.
//   2. msgpack_unpack_next() builds the objects of the whole frame at once
//      (never the streaming unpacker).
//   3. One hand-written decoder per message checks the schema through the
//      s_get_* reader and copies the values into a proto_msg_t.
// Pure: no I/O, no clock, no logging.
#include "proto/proto.h"

#include "common/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Schema limits that are part of the protocol, not configuration.
#define S_MAX_SLOTS 1024
#define S_MAX_TAGS 64
#define S_MAX_ID 64           // instance, task ids, tags, input ids
#define S_MAX_NAME 255        // host, versions, key and role names, states
#define S_MAX_IDEM 128        // idempotency keys
#define S_MAX_LEASES 4096     // leases in HELLO, tokens in HEARTBEAT
#define S_ANY SIZE_MAX        // bounded only by the frame limits
#define S_DEPTH_CAP 16        // msgpack-c's own parse stack holds 32

#define S_REQ true
#define S_OPT false

// --- names --------------------------------------------------------------

static const struct {
    const char *name;
    unsigned senders;
} s_cmds[PROTO_MSG__COUNT] = {
#define X(id, name, roles) [PROTO_MSG_##id] = {name, roles},
#include "proto/messages.def"
#undef X
};

static const char *const s_status_names[PROTO_E__COUNT] = {
    "NONE", "MALFORMED", "BAD_VERSION", "UNKNOWN_COMMAND", "TOO_LARGE",
    "FORBIDDEN", "HELLO_REQUIRED", "NOT_FOUND", "CONFLICT", "INVALID",
    "UNSUPPORTED", "INTERNAL",
};

static const char *const s_state_names[PROTO_TASK__COUNT] = {
    "waiting", "ready", "leased", "awaiting_approval", "succeeded", "dead",
    "rejected", "blocked", "cancelled",
};

static const char *const s_outcome_names[PROTO_OUTCOME__COUNT] = {
    "succeeded", "failed", "released",
};

static const char *const s_ack_names[PROTO_ACK__COUNT] = {
    "accepted", "duplicate", "stale", "error",
};

// Index of name in names[0..count), or -1.
static int
s_lookup(const char *const *names, int count, const char *name, size_t len)
{
    for (int i = 0; i < count; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) {
            return i;
        }
    }
    return -1;
}

const char *
proto_cmd_name(proto_cmd_t cmd)
{
    return (unsigned) cmd < PROTO_MSG__COUNT ? s_cmds[cmd].name : "?";
}

int
proto_cmd_parse(const char *name, proto_cmd_t *out)
{
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        if (strcmp(s_cmds[i].name, name) == 0) {
            *out = (proto_cmd_t) i;
            return 0;
        }
    }
    return -1;
}

unsigned
proto_cmd_senders(proto_cmd_t cmd)
{
    return (unsigned) cmd < PROTO_MSG__COUNT ? s_cmds[cmd].senders : 0;
}

const char *
proto_status_name(proto_status_t code)
{
    return (unsigned) code < PROTO_E__COUNT ? s_status_names[code] : "?";
}

int
proto_status_parse(const char *name, proto_status_t *out)
{
    int i = s_lookup(s_status_names, PROTO_E__COUNT, name, strlen(name));
    if (i < 0) {
        return -1;
    }
    *out = (proto_status_t) i;
    return 0;
}

const char *
proto_task_state_name(proto_task_state_t s)
{
    return (unsigned) s < PROTO_TASK__COUNT ? s_state_names[s] : "?";
}

int
proto_task_state_parse(const char *name, proto_task_state_t *out)
{
    int i = s_lookup(s_state_names, PROTO_TASK__COUNT, name, strlen(name));
    if (i < 0) {
        return -1;
    }
    *out = (proto_task_state_t) i;
    return 0;
}

const char *
proto_outcome_name(proto_outcome_t o)
{
    return (unsigned) o < PROTO_OUTCOME__COUNT ? s_outcome_names[o] : "?";
}

const char *
proto_ack_name(proto_ack_t a)
{
    return (unsigned) a < PROTO_ACK__COUNT ? s_ack_names[a] : "?";
}

void
proto_limits_default(proto_limits_t *lim)
{
    lim->max_frame = 64u << 20;
    lim->max_depth = 8;
    lim->max_objects = 1000000;
    lim->max_string = 64u << 20;
}

// --- building and freeing ----------------------------------------------

void
proto_strv_push(proto_strv_t *v, const char *s)
{
    v->items = xrealloc(v->items, (v->count + 1) * sizeof *v->items);
    v->items[v->count++] = xstrdup(s);
}

void
proto_bytes_set(proto_bytes_t *b, const void *data, size_t len)
{
    free(b->data);
    b->data = NULL;
    b->len = len;
    if (len > 0) {
        b->data = xmalloc(len);
        memcpy(b->data, data, len);
    }
}

static void
s_strv_free(proto_strv_t *v)
{
    for (size_t i = 0; i < v->count; i++) {
        free(v->items[i]);
    }
    free(v->items);
}

static void
s_free_hello(proto_msg_t *m)
{
    proto_hello_t *h = &m->u.hello;
    free(h->instance);
    free(h->host);
    free(h->version);
    s_strv_free(&h->tags);
    for (size_t i = 0; i < h->n_leases; i++) {
        free(h->leases[i].task);
    }
    free(h->leases);
}

static void
s_free_task(proto_msg_t *m)
{
    proto_task_t *t = &m->u.task;
    free(t->plan_name);
    free(t->task);
    s_strv_free(&t->argv);
    for (size_t i = 0; i < t->n_env; i++) {
        free(t->env[i].key);
        free(t->env[i].value);
    }
    free(t->env);
    free(t->cwd);
    for (size_t i = 0; i < t->n_inputs; i++) {
        free(t->inputs[i].id);
        free(t->inputs[i].data.data);
    }
    free(t->inputs);
}

static void
s_free_status_ok(proto_msg_t *m)
{
    proto_status_ok_t *s = &m->u.status_ok;
    for (size_t i = 0; i < s->n_plans; i++) {
        free(s->plans[i].name);
        free(s->plans[i].state);
        free(s->plans[i].submitted_by);
    }
    free(s->plans);
    for (size_t i = 0; i < s->n_tasks; i++) {
        proto_task_info_t *t = &s->tasks[i];
        free(t->id);
        free(t->kind);
        free(t->drone);
        free(t->last_error);
        free(t->waiting_reason);
        s_strv_free(&t->needs);
    }
    free(s->tasks);
    for (size_t i = 0; i < s->n_drones; i++) {
        proto_drone_info_t *d = &s->drones[i];
        free(d->instance);
        free(d->name);
        free(d->host);
        s_strv_free(&d->tags);
    }
    free(s->drones);
}

// Frees the strings of the messages whose bodies are flat.
static void
s_free_flat(proto_msg_t *m)
{
    switch (m->cmd) {
    case PROTO_MSG_WELCOME: free(m->u.welcome.broker_id); break;
    case PROTO_MSG_HEARTBEAT: free(m->u.heartbeat.tokens); break;
    case PROTO_MSG_STOP:
        free(m->u.stop.task);
        free(m->u.stop.reason);
        break;
    case PROTO_MSG_RESULT:
        free(m->u.result.task);
        free(m->u.result.error);
        free(m->u.result.out.data);
        free(m->u.result.err.data);
        break;
    case PROTO_MSG_RESULT_ACK:
        free(m->u.result_ack.task);
        free(m->u.result_ack.message);
        break;
    case PROTO_MSG_PONG:
        free(m->u.pong.role);
        free(m->u.pong.name);
        free(m->u.pong.version);
        break;
    case PROTO_MSG_SUBMIT:
        free(m->u.submit.workplan);
        free(m->u.submit.idempotency_key);
        break;
    case PROTO_MSG_SUBMIT_OK: s_strv_free(&m->u.submit_ok.warnings); break;
    case PROTO_MSG_CANCEL: free(m->u.cancel.task); break;
    case PROTO_MSG_RETRY: free(m->u.retry.task); break;
    case PROTO_MSG_OUTPUT: free(m->u.output.task); break;
    case PROTO_MSG_OUTPUT_OK:
        free(m->u.output_ok.task);
        free(m->u.output_ok.data.data);
        break;
    case PROTO_MSG_OK: free(m->u.ok.message); break;
    case PROTO_MSG_ERROR:
        free(m->u.error.message);
        s_strv_free(&m->u.error.details);
        break;
    default: break; // HELLO, TASK, STATUS_OK have their own; others own nothing
    }
}

proto_msg_t *
proto_msg_new(proto_cmd_t cmd)
{
    assert((unsigned) cmd < PROTO_MSG__COUNT);
    proto_msg_t *m = xcalloc(1, sizeof *m);
    m->cmd = cmd;
    return m;
}

void
proto_msg_destroy(proto_msg_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    proto_msg_t *m = *self_p;
    if (m->cmd == PROTO_MSG_HELLO) {
        s_free_hello(m);
    } else if (m->cmd == PROTO_MSG_TASK) {
        s_free_task(m);
    } else if (m->cmd == PROTO_MSG_STATUS_OK) {
        s_free_status_ok(m);
    } else {
        s_free_flat(m);
    }
    free(m);
    *self_p = NULL;
}

proto_msg_t *
proto_error_new(uint64_t req, proto_status_t code, const char *fmt, ...)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_ERROR);
    va_list ap;
    va_start(ap, fmt);
    m->req = req;
    m->u.error.code = code;
    m->u.error.message = xvasprintf(fmt, ap);
    va_end(ap);
    return m;
}

// --- encoding -----------------------------------------------------------

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

static void
s_pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
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
    s_put_str(pk, "cmd", s_cmds[m->cmd].name);
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
    s_envelope(pk, m, 7);
    s_put_str(pk, "instance", h->instance);
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
    s_envelope(pk, m, 4);
    s_put_u64(pk, "heartbeat_ms", w->heartbeat_ms);
    s_put_u64(pk, "lease_ms", w->lease_ms);
    s_put_u64(pk, "max_output_bytes", w->max_output_bytes);
    s_put_str(pk, "broker_id", w->broker_id);
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

static void
s_enc_task(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_task_t *t = &m->u.task;
    s_envelope(pk, m, 10);
    s_put_i64(pk, "plan", t->plan);
    s_put_ostr(pk, "plan_name", t->plan_name);
    s_put_str(pk, "task", t->task);
    s_put_u64(pk, "token", t->token);
    s_put_u64(pk, "attempt", t->attempt);
    s_put_strv(pk, "argv", &t->argv);
    s_put_ostr(pk, "cwd", t->cwd);
    s_put_u64(pk, "timeout_s", t->timeout_s);
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
    s_envelope(pk, m, 14);
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
    s_envelope(pk, m, 1);
    s_put_i64(pk, "plan", m->u.status.plan);
}

static void
s_enc_plan_info(msgpack_packer *pk, const proto_plan_info_t *p)
{
    msgpack_pack_map(pk, 7);
    s_put_i64(pk, "id", p->id);
    s_put_ostr(pk, "name", p->name);
    s_put_str(pk, "state", p->state);
    s_put_ostr(pk, "submitted_by", p->submitted_by);
    s_put_i64(pk, "created_ms", p->created_ms);
    s_put_i64(pk, "finished_ms", p->finished_ms);
    s_pk_str(pk, "counts");
    msgpack_pack_map(pk, PROTO_TASK__COUNT);
    for (int i = 0; i < PROTO_TASK__COUNT; i++) {
        s_pk_str(pk, s_state_names[i]);
        msgpack_pack_uint32(pk, p->counts[i]);
    }
}

static void
s_enc_task_info(msgpack_packer *pk, const proto_task_info_t *t)
{
    msgpack_pack_map(pk, 9);
    s_put_str(pk, "id", t->id);
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
    msgpack_pack_map(pk, 8);
    s_put_str(pk, "instance", d->instance);
    s_put_str(pk, "name", d->name);
    s_put_ostr(pk, "host", d->host);
    s_put_u64(pk, "slots", d->slots);
    s_put_u64(pk, "leases", d->leases);
    s_put_bool(pk, "draining", d->draining);
    s_put_strv(pk, "tags", &d->tags);
    s_put_i64(pk, "last_seen_ms", d->last_seen_ms);
}

static void
s_enc_status_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_status_ok_t *s = &m->u.status_ok;
    s_envelope(pk, m, 3);
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
s_enc_output(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_output_t *o = &m->u.output;
    s_envelope(pk, m, 4);
    s_put_i64(pk, "plan", o->plan);
    s_put_str(pk, "task", o->task);
    s_put_u64(pk, "attempt", o->attempt);
    s_put_bool(pk, "want_stderr", o->want_stderr);
}

static void
s_enc_output_ok(msgpack_packer *pk, const proto_msg_t *m)
{
    const proto_output_ok_t *o = &m->u.output_ok;
    s_envelope(pk, m, 5);
    s_put_i64(pk, "plan", o->plan);
    s_put_str(pk, "task", o->task);
    s_put_u64(pk, "attempt", o->attempt);
    s_put_bin(pk, "data", &o->data);
    s_put_bool(pk, "truncated", o->truncated);
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

// --- the pre-walk --------------------------------------------------------

typedef enum { S_SCALAR, S_BYTES, S_ARRAY, S_MAP, S_BAD } s_kind_t;

typedef struct {
    s_kind_t kind;
    size_t width;     // scalar: payload bytes; others: bytes of the length
    uint64_t fixed;   // a length held in the first byte (fixstr, fixmap...)
} s_head_t;

// What the first byte of a msgpack object says about the bytes after it.
static s_head_t
s_classify(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0) {
        return (s_head_t) {S_SCALAR, 0, 0};
    }
    if (b <= 0x8f) {
        return (s_head_t) {S_MAP, 0, b & 0x0fu};
    }
    if (b <= 0x9f) {
        return (s_head_t) {S_ARRAY, 0, b & 0x0fu};
    }
    if (b <= 0xbf) {
        return (s_head_t) {S_BYTES, 0, b & 0x1fu};
    }
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return (s_head_t) {S_SCALAR, 0, 0};
    case 0xcc: case 0xd0: return (s_head_t) {S_SCALAR, 1, 0};
    case 0xcd: case 0xd1: return (s_head_t) {S_SCALAR, 2, 0};
    case 0xca: case 0xce: case 0xd2: return (s_head_t) {S_SCALAR, 4, 0};
    case 0xcb: case 0xcf: case 0xd3: return (s_head_t) {S_SCALAR, 8, 0};
    case 0xc4: case 0xd9: return (s_head_t) {S_BYTES, 1, 0};
    case 0xc5: case 0xda: return (s_head_t) {S_BYTES, 2, 0};
    case 0xc6: case 0xdb: return (s_head_t) {S_BYTES, 4, 0};
    case 0xdc: return (s_head_t) {S_ARRAY, 2, 0};
    case 0xdd: return (s_head_t) {S_ARRAY, 4, 0};
    case 0xde: return (s_head_t) {S_MAP, 2, 0};
    case 0xdf: return (s_head_t) {S_MAP, 4, 0};
    default: return (s_head_t) {S_BAD, 0, 0}; // 0xc1, ext and fixext
    }
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;          // frame length and read position
    size_t objects;           // objects seen or promised so far
    const proto_limits_t *lim;
    proto_error_t *err;
} s_walk_t;

static int s_fail(proto_error_t *err, proto_status_t code, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));

static int
s_fail(proto_error_t *err, proto_status_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

// The length or count of a str, bin, array or map header (big-endian).
static uint64_t
s_walk_len(const s_walk_t *w, const s_head_t *h)
{
    uint64_t n = h->fixed;
    for (size_t i = 0; i < h->width; i++) {
        n = n << 8 | w->p[w->pos + i];
    }
    return n;
}

// Reads the header of the object at w->pos and skips its payload; *kids is
// how many objects it contains (a map's entries count twice).
static int
s_walk_one(s_walk_t *w, s_head_t *h, uint64_t *kids)
{
    size_t at = w->pos;
    *h = s_classify(w->p[w->pos++]);
    if (h->kind == S_BAD) {
        return s_fail(w->err, PROTO_E_MALFORMED,
                      "byte 0x%02x at offset %zu: ext types and 0xc1 are "
                      "not allowed", w->p[at], at);
    }
    if (h->width > w->len - w->pos) {
        return s_fail(w->err, PROTO_E_MALFORMED,
                      "frame truncated at offset %zu", at);
    }
    uint64_t n = h->kind == S_SCALAR ? 0 : s_walk_len(w, h);
    w->pos += h->width;
    *kids = h->kind == S_MAP ? 2 * n : h->kind == S_ARRAY ? n : 0;
    // Each element takes at least one byte: a count the rest of the frame
    // cannot hold is a lie, whatever the limits say.
    if ((h->kind == S_BYTES ? n : *kids) > w->len - w->pos) {
        return s_fail(w->err, PROTO_E_MALFORMED,
                      "object at offset %zu declares %" PRIu64 " %s but only "
                      "%zu bytes remain", at, n,
                      h->kind == S_BYTES ? "bytes" : "elements",
                      w->len - w->pos);
    }
    if (h->kind == S_BYTES && n > w->lim->max_string) {
        return s_fail(w->err, PROTO_E_TOO_LARGE,
                      "string of %" PRIu64 " bytes at offset %zu is over the "
                      "limit %zu", n, at, w->lim->max_string);
    }
    w->pos += h->kind == S_BYTES ? n : 0;
    w->objects += *kids;
    if (w->objects > w->lim->max_objects) {
        return s_fail(w->err, PROTO_E_TOO_LARGE,
                      "more than %zu objects in the frame",
                      w->lim->max_objects);
    }
    return 0;
}

// What the frame's length and first byte alone can refuse.
static int
s_check_frame(const uint8_t *buf, size_t len, const proto_limits_t *lim,
              proto_error_t *err)
{
    if (len == 0) {
        return s_fail(err, PROTO_E_MALFORMED, "empty frame");
    }
    if (len > lim->max_frame) {
        return s_fail(err, PROTO_E_TOO_LARGE, "frame of %zu bytes is over "
                      "the limit %zu", len, lim->max_frame);
    }
    if (s_classify(buf[0]).kind != S_MAP) {
        return s_fail(err, PROTO_E_MALFORMED, "frame is not a msgpack map");
    }
    return 0;
}

// Proves buf holds exactly one map within the limits (see the file header).
static int
s_prewalk(const uint8_t *buf, size_t len, const proto_limits_t *lim,
          proto_error_t *err)
{
    s_walk_t w = {buf, len, 0, 1, lim, err};
    uint64_t stack[S_DEPTH_CAP]; // children left in each open container
    size_t sp = 0, max_depth = lim->max_depth;
    max_depth = max_depth < S_DEPTH_CAP ? max_depth : S_DEPTH_CAP;
    if (s_check_frame(buf, len, lim, err) < 0) {
        return -1;
    }
    do {
        s_head_t h;
        uint64_t kids = 0;
        if (w.pos >= len) {
            return s_fail(err, PROTO_E_MALFORMED, "frame truncated");
        }
        if (sp > 0) {
            stack[sp - 1]--;
        }
        if (s_walk_one(&w, &h, &kids) < 0) {
            return -1;
        }
        if (h.kind == S_ARRAY || h.kind == S_MAP) {
            if (sp + 1 > max_depth) {
                return s_fail(err, PROTO_E_TOO_LARGE, "nesting deeper than "
                              "%zu", max_depth);
            }
            if (kids > 0) {
                stack[sp++] = kids;
            }
        }
        while (sp > 0 && stack[sp - 1] == 0) {
            sp--;
        }
    } while (sp > 0);
    if (w.pos != len) {
        return s_fail(err, PROTO_E_MALFORMED, "%zu bytes after the message",
                      len - w.pos);
    }
    return 0;
}

// --- the schema reader ---------------------------------------------------

typedef struct {
    const msgpack_object_map *map;  // the record being read
    const char *path;               // prefix of field names in errors
    proto_error_t *err;
} s_rd_t;

static int s_bad(const s_rd_t *rd, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A MALFORMED naming the field: "field 'leases[2].token': ...".
static int
s_bad(const s_rd_t *rd, const char *name, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return s_fail(rd->err, PROTO_E_MALFORMED, "field '%s%s': %s", rd->path,
                  name, why);
}

// Copies a wire string for an error message: at most 48 bytes, '?' for
// anything unprintable, so a hostile name cannot mangle a log line.
static const char *
s_quote(char *dst, size_t size, const char *p, size_t n)
{
    size_t i = 0;
    for (; i < n && i < 48 && i + 4 < size; i++) {
        dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    }
    if (i < n) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
    return dst;
}

// Finds key: *out is NULL when absent or nil.  Fails when a required key is
// absent or nil, and when the key appears twice (readers could disagree).
static int
s_field(const s_rd_t *rd, const char *key, bool req, const msgpack_object **out)
{
    size_t klen = strlen(key);
    bool seen = false;
    *out = NULL;
    for (uint32_t i = 0; i < rd->map->size; i++) {
        const msgpack_object *k = &rd->map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != klen ||
            memcmp(k->via.str.ptr, key, klen) != 0) {
            continue;
        }
        if (seen) {
            return s_bad(rd, key, "appears more than once");
        }
        seen = true;
        *out = &rd->map->ptr[i].val;
    }
    if (*out && (*out)->type == MSGPACK_OBJECT_NIL) {
        *out = NULL;
    }
    if (!*out && req) {
        return s_bad(rd, key, seen ? "required but nil" : "required but "
                     "missing");
    }
    return 0;
}

static int
s_obj_str(const s_rd_t *rd, const char *name, const msgpack_object *o,
          size_t min, size_t max, char **out)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, name, "expected a string");
    }
    size_t n = o->via.str.size;
    if (n < min || n > max) {
        return s_bad(rd, name, "%zu bytes, expected %zu to %zu", n, min, max);
    }
    if (n > 0 && memchr(o->via.str.ptr, '\0', n)) {
        return s_bad(rd, name, "contains a NUL byte");
    }
    *out = xstrndup(n > 0 ? o->via.str.ptr : "", n);
    return 0;
}

static int
s_get_str(const s_rd_t *rd, const char *key, bool req, size_t min,
          size_t max, char **out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    return o ? s_obj_str(rd, key, o, min, max, out) : 0;
}

static int
s_obj_u64(const s_rd_t *rd, const char *name, const msgpack_object *o,
          uint64_t min, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_bad(rd, name, "expected an unsigned integer");
    }
    if (o->via.u64 < min || o->via.u64 > max) {
        return s_bad(rd, name, "%" PRIu64 " is outside %" PRIu64 "..%" PRIu64,
                     o->via.u64, min, max);
    }
    *out = o->via.u64;
    return 0;
}

static int
s_get_u64(const s_rd_t *rd, const char *key, bool req, uint64_t max,
          uint64_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    return o ? s_obj_u64(rd, key, o, 0, max, out) : 0;
}

static int
s_get_u32(const s_rd_t *rd, const char *key, bool req, uint32_t min,
          uint32_t max, uint32_t *out)
{
    const msgpack_object *o;
    uint64_t v = 0;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && s_obj_u64(rd, key, o, min, max, &v) < 0) {
        return -1;
    }
    *out = o ? (uint32_t) v : *out;
    return 0;
}

static int
s_get_i64(const s_rd_t *rd, const char *key, bool req, int64_t min,
          int64_t max, int64_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER &&
        o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_bad(rd, key, "expected an integer");
    }
    bool big = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
               o->via.u64 > (uint64_t) INT64_MAX;
    if (big || o->via.i64 < min || o->via.i64 > max) {
        return s_bad(rd, key, "out of range %" PRId64 "..%" PRId64, min, max);
    }
    *out = o->via.i64;
    return 0;
}

static int
s_get_i32(const s_rd_t *rd, const char *key, bool req, int32_t *out)
{
    int64_t v = *out;
    if (s_get_i64(rd, key, req, INT32_MIN, INT32_MAX, &v) < 0) {
        return -1;
    }
    *out = (int32_t) v;
    return 0;
}

// Plan ids: 0 and up (0 means "no plan" where a message allows it).
static int
s_get_plan(const s_rd_t *rd, const char *key, bool req, int64_t *out)
{
    return s_get_i64(rd, key, req, 0, INT64_MAX, out);
}

static int
s_get_bool(const s_rd_t *rd, const char *key, bool req, bool *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_BOOLEAN) {
        return s_bad(rd, key, "expected a boolean");
    }
    *out = o ? o->via.boolean : *out;
    return 0;
}

static int
s_get_bin(const s_rd_t *rd, const char *key, bool req, proto_bytes_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_BIN) {
        return s_bad(rd, key, "expected binary data (msgpack bin)");
    }
    if (o) {
        proto_bytes_set(out, o->via.bin.ptr, o->via.bin.size);
    }
    return 0;
}

// A required string from a fixed set of names, as its index.
static int
s_get_enum(const s_rd_t *rd, const char *key, const char *const *names,
           int count, int *out)
{
    const msgpack_object *o;
    char q[64];
    if (s_field(rd, key, S_REQ, &o) < 0) {
        return -1;
    }
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, key, "expected a string");
    }
    *out = s_lookup(names, count, o->via.str.ptr, o->via.str.size);
    if (*out < 0) {
        return s_bad(rd, key, "unknown value '%s'",
                     s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    return 0;
}

// An optional array (absent: empty), checked against max items.
static int
s_get_array(const s_rd_t *rd, const char *key, size_t max,
            const msgpack_object_array **out)
{
    const msgpack_object *o;
    *out = NULL;
    if (s_field(rd, key, S_OPT, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_ARRAY) {
        return s_bad(rd, key, "expected an array");
    }
    if (o && o->via.array.size > max) {
        return s_bad(rd, key, "%" PRIu32 " items, over the limit %zu",
                     o->via.array.size, max);
    }
    *out = o && o->via.array.size > 0 ? &o->via.array : NULL;
    return 0;
}

// An optional array of strings, each min..max bytes.
static int
s_get_strv(const s_rd_t *rd, const char *key, size_t max_items, size_t min,
           size_t max, proto_strv_t *out)
{
    const msgpack_object_array *a;
    char name[96];
    if (s_get_array(rd, key, max_items, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    out->items = xcalloc(a->size, sizeof *out->items);
    out->count = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        snprintf(name, sizeof name, "%s[%" PRIu32 "]", key, i);
        if (s_obj_str(rd, name, &a->ptr[i], min, max, &out->items[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

typedef int (*s_rec_fn)(const s_rd_t *rd, void *elem);

// An optional array of records (maps), each decoded by fn into a new
// element of size bytes.  *arr and *n are set even on failure, so the
// message's destroy frees what was decoded.
static int
s_get_records(const s_rd_t *rd, const char *key, size_t max, size_t size,
              void **arr, size_t *n, s_rec_fn fn)
{
    const msgpack_object_array *a;
    char path[128];
    *arr = NULL;
    *n = 0;
    if (s_get_array(rd, key, max, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    *arr = xcalloc(a->size, size);
    *n = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        if (a->ptr[i].type != MSGPACK_OBJECT_MAP) {
            snprintf(path, sizeof path, "%s[%" PRIu32 "]", key, i);
            return s_bad(rd, path, "expected a map");
        }
        snprintf(path, sizeof path, "%s%s[%" PRIu32 "].", rd->path, key, i);
        s_rd_t sub = {&a->ptr[i].via.map, path, rd->err};
        if (fn(&sub, (char *) *arr + (size_t) i * size) < 0) {
            return -1;
        }
    }
    return 0;
}

// --- decoders, one per message -------------------------------------------

static int
s_dec_lease(const s_rd_t *rd, void *elem)
{
    proto_lease_t *l = elem;
    return s_get_plan(rd, "plan", S_REQ, &l->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &l->task) ||
           s_get_u64(rd, "token", S_REQ, UINT64_MAX, &l->token) ||
           s_get_bool(rd, "finished", S_OPT, &l->finished) ? -1 : 0;
}

static int
s_dec_hello(const s_rd_t *rd, proto_msg_t *m)
{
    proto_hello_t *h = &m->u.hello;
    void *arr;
    if (s_get_str(rd, "instance", S_REQ, 1, S_MAX_ID, &h->instance) ||
        s_get_str(rd, "host", S_OPT, 0, S_MAX_NAME, &h->host) ||
        s_get_str(rd, "version", S_OPT, 0, S_MAX_NAME, &h->version) ||
        s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &h->slots) ||
        s_get_strv(rd, "tags", S_MAX_TAGS, 1, S_MAX_ID, &h->tags) ||
        s_get_bool(rd, "draining", S_OPT, &h->draining)) {
        return -1;
    }
    int rc = s_get_records(rd, "leases", S_MAX_LEASES, sizeof *h->leases,
                           &arr, &h->n_leases, s_dec_lease);
    h->leases = arr;
    return rc;
}

static int
s_dec_welcome(const s_rd_t *rd, proto_msg_t *m)
{
    proto_welcome_t *w = &m->u.welcome;
    return s_get_u32(rd, "heartbeat_ms", S_REQ, 1, UINT32_MAX,
                     &w->heartbeat_ms) ||
           s_get_u32(rd, "lease_ms", S_REQ, 1, UINT32_MAX, &w->lease_ms) ||
           s_get_u64(rd, "max_output_bytes", S_REQ, UINT64_MAX,
                     &w->max_output_bytes) ||
           s_get_str(rd, "broker_id", S_REQ, 1, S_MAX_NAME, &w->broker_id)
               ? -1 : 0;
}

static int
s_dec_heartbeat(const s_rd_t *rd, proto_msg_t *m)
{
    proto_heartbeat_t *h = &m->u.heartbeat;
    const msgpack_object_array *a;
    char name[32];
    if (s_get_array(rd, "tokens", S_MAX_LEASES, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    h->tokens = xcalloc(a->size, sizeof *h->tokens);
    h->n_tokens = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        snprintf(name, sizeof name, "tokens[%" PRIu32 "]", i);
        if (s_obj_u64(rd, name, &a->ptr[i], 0, UINT64_MAX, &h->tokens[i])) {
            return -1;
        }
    }
    return 0;
}

static int
s_dec_env(const s_rd_t *rd, proto_task_t *t)
{
    const msgpack_object *o;
    char name[32];
    if (s_field(rd, "env", S_OPT, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_bad(rd, "env", "expected a map of strings");
    }
    t->env = o->via.map.size ? xcalloc(o->via.map.size, sizeof *t->env)
                             : NULL;
    t->n_env = o->via.map.size;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        snprintf(name, sizeof name, "env[%" PRIu32 "]", i);
        if (s_obj_str(rd, name, &kv->key, 1, S_ANY, &t->env[i].key) ||
            s_obj_str(rd, name, &kv->val, 0, S_ANY, &t->env[i].value)) {
            return -1;
        }
        if (strchr(t->env[i].key, '=')) {
            return s_bad(rd, name, "a variable name holds '='");
        }
    }
    return 0;
}

static int
s_dec_input(const s_rd_t *rd, void *elem)
{
    proto_input_t *in = elem;
    return s_get_str(rd, "id", S_REQ, 1, S_MAX_ID, &in->id) ||
           s_get_bin(rd, "data", S_REQ, &in->data) ||
           s_get_bool(rd, "truncated", S_OPT, &in->truncated) ? -1 : 0;
}

static int
s_dec_task(const s_rd_t *rd, proto_msg_t *m)
{
    proto_task_t *t = &m->u.task;
    void *arr;
    if (s_get_plan(rd, "plan", S_REQ, &t->plan) ||
        s_get_str(rd, "plan_name", S_OPT, 0, S_ANY, &t->plan_name) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &t->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &t->token) ||
        s_get_u32(rd, "attempt", S_REQ, 1, UINT32_MAX, &t->attempt) ||
        s_get_strv(rd, "argv", S_ANY, 0, S_ANY, &t->argv) ||
        s_get_str(rd, "cwd", S_OPT, 1, S_ANY, &t->cwd) ||
        s_get_u32(rd, "timeout_s", S_OPT, 0, UINT32_MAX, &t->timeout_s) ||
        s_dec_env(rd, t)) {
        return -1;
    }
    if (t->argv.count == 0) {
        return s_bad(rd, "argv", "required: at least one item");
    }
    int rc = s_get_records(rd, "inputs", S_ANY, sizeof *t->inputs, &arr,
                           &t->n_inputs, s_dec_input);
    t->inputs = arr;
    return rc;
}

static int
s_dec_stop(const s_rd_t *rd, proto_msg_t *m)
{
    proto_stop_t *s = &m->u.stop;
    return s_get_plan(rd, "plan", S_REQ, &s->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &s->task) ||
           s_get_u64(rd, "token", S_REQ, UINT64_MAX, &s->token) ||
           s_get_str(rd, "reason", S_OPT, 0, S_ANY, &s->reason) ? -1 : 0;
}

static int
s_dec_result(const s_rd_t *rd, proto_msg_t *m)
{
    proto_result_t *r = &m->u.result;
    int outcome;
    r->exit_code = -1;
    if (s_get_plan(rd, "plan", S_REQ, &r->plan) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &r->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &r->token) ||
        s_get_enum(rd, "outcome", s_outcome_names, PROTO_OUTCOME__COUNT,
                   &outcome) ||
        s_get_i32(rd, "exit_code", S_OPT, &r->exit_code) ||
        s_get_i32(rd, "signal", S_OPT, &r->signal) ||
        s_get_bool(rd, "timed_out", S_OPT, &r->timed_out) ||
        s_get_str(rd, "error", S_OPT, 0, S_ANY, &r->error)) {
        return -1;
    }
    r->outcome = (proto_outcome_t) outcome;
    return s_get_bin(rd, "out", S_OPT, &r->out) ||
           s_get_bool(rd, "out_truncated", S_OPT, &r->out_truncated) ||
           s_get_bin(rd, "err", S_OPT, &r->err) ||
           s_get_bool(rd, "err_truncated", S_OPT, &r->err_truncated) ||
           s_get_i64(rd, "started_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &r->started_ms) ||
           s_get_i64(rd, "duration_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &r->duration_ms) ? -1 : 0;
}

static int
s_dec_result_ack(const s_rd_t *rd, proto_msg_t *m)
{
    proto_result_ack_t *a = &m->u.result_ack;
    int status;
    if (s_get_plan(rd, "plan", S_REQ, &a->plan) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &a->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &a->token) ||
        s_get_enum(rd, "status", s_ack_names, PROTO_ACK__COUNT, &status) ||
        s_get_str(rd, "message", S_OPT, 0, S_ANY, &a->message)) {
        return -1;
    }
    a->status = (proto_ack_t) status;
    return 0;
}

static int
s_dec_update(const s_rd_t *rd, proto_msg_t *m)
{
    proto_update_t *u = &m->u.update;
    return s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &u->slots) ||
           s_get_bool(rd, "draining", S_REQ, &u->draining) ? -1 : 0;
}

static int
s_dec_pong(const s_rd_t *rd, proto_msg_t *m)
{
    proto_pong_t *p = &m->u.pong;
    return s_get_str(rd, "role", S_REQ, 1, S_MAX_NAME, &p->role) ||
           s_get_str(rd, "name", S_REQ, 1, S_MAX_NAME, &p->name) ||
           s_get_str(rd, "version", S_REQ, 0, S_MAX_NAME, &p->version)
               ? -1 : 0;
}

static int
s_dec_submit(const s_rd_t *rd, proto_msg_t *m)
{
    proto_submit_t *s = &m->u.submit;
    return s_get_str(rd, "workplan", S_REQ, 0, S_ANY, &s->workplan) ||
           s_get_str(rd, "idempotency_key", S_OPT, 1, S_MAX_IDEM,
                     &s->idempotency_key) ? -1 : 0;
}

static int
s_dec_submit_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_submit_ok_t *s = &m->u.submit_ok;
    return s_get_plan(rd, "plan", S_REQ, &s->plan) ||
           s_get_bool(rd, "created", S_REQ, &s->created) ||
           s_get_strv(rd, "warnings", S_ANY, 0, S_ANY, &s->warnings) ? -1 : 0;
}

static int
s_dec_status(const s_rd_t *rd, proto_msg_t *m)
{
    return s_get_plan(rd, "plan", S_OPT, &m->u.status.plan);
}

// "counts": {state name: uint32}; names this side does not know are skipped.
static int
s_dec_counts(const s_rd_t *rd, proto_plan_info_t *p)
{
    const msgpack_object *o;
    char name[48];
    uint64_t v = 0;
    if (s_field(rd, "counts", S_OPT, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_bad(rd, "counts", "expected a map");
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            return s_bad(rd, "counts", "expected state names as keys");
        }
        int s = s_lookup(s_state_names, PROTO_TASK__COUNT, kv->key.via.str.ptr,
                         kv->key.via.str.size);
        if (s < 0) {
            continue;
        }
        snprintf(name, sizeof name, "counts.%s", s_state_names[s]);
        if (s_obj_u64(rd, name, &kv->val, 0, UINT32_MAX, &v) < 0) {
            return -1;
        }
        p->counts[s] = (uint32_t) v;
    }
    return 0;
}

static int
s_dec_plan_info(const s_rd_t *rd, void *elem)
{
    proto_plan_info_t *p = elem;
    return s_get_plan(rd, "id", S_REQ, &p->id) ||
           s_get_str(rd, "name", S_OPT, 0, S_ANY, &p->name) ||
           s_get_str(rd, "state", S_REQ, 1, S_MAX_NAME, &p->state) ||
           s_get_str(rd, "submitted_by", S_OPT, 0, S_MAX_NAME,
                     &p->submitted_by) ||
           s_get_i64(rd, "created_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &p->created_ms) ||
           s_get_i64(rd, "finished_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &p->finished_ms) ||
           s_dec_counts(rd, p) ? -1 : 0;
}

static int
s_dec_task_info(const s_rd_t *rd, void *elem)
{
    proto_task_info_t *t = elem;
    const msgpack_object *o;
    int state;
    if (s_get_str(rd, "id", S_REQ, 1, S_MAX_ID, &t->id) ||
        s_get_enum(rd, "state", s_state_names, PROTO_TASK__COUNT, &state) ||
        s_get_str(rd, "kind", S_REQ, 1, S_MAX_NAME, &t->kind) ||
        s_get_u32(rd, "attempts", S_OPT, 0, UINT32_MAX, &t->attempts) ||
        s_get_str(rd, "drone", S_OPT, 0, S_MAX_NAME, &t->drone) ||
        s_get_str(rd, "last_error", S_OPT, 0, S_ANY, &t->last_error) ||
        s_get_str(rd, "waiting_reason", S_OPT, 0, S_ANY,
                  &t->waiting_reason) ||
        s_get_strv(rd, "needs", S_ANY, 1, S_MAX_ID, &t->needs) ||
        s_get_i32(rd, "exit_code", S_OPT, &t->exit_code)) {
        return -1;
    }
    t->state = (proto_task_state_t) state;
    // Absent or nil means no attempt has finished yet.
    t->has_exit_code = s_field(rd, "exit_code", S_OPT, &o) == 0 && o;
    return 0;
}

static int
s_dec_drone_info(const s_rd_t *rd, void *elem)
{
    proto_drone_info_t *d = elem;
    return s_get_str(rd, "instance", S_REQ, 1, S_MAX_ID, &d->instance) ||
           s_get_str(rd, "name", S_REQ, 1, S_MAX_NAME, &d->name) ||
           s_get_str(rd, "host", S_OPT, 0, S_MAX_NAME, &d->host) ||
           s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &d->slots) ||
           s_get_u32(rd, "leases", S_OPT, 0, UINT32_MAX, &d->leases) ||
           s_get_bool(rd, "draining", S_OPT, &d->draining) ||
           s_get_strv(rd, "tags", S_MAX_TAGS, 1, S_MAX_ID, &d->tags) ||
           s_get_i64(rd, "last_seen_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &d->last_seen_ms) ? -1 : 0;
}

static int
s_dec_status_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_status_ok_t *s = &m->u.status_ok;
    void *plans, *tasks, *drones;
    int rc = s_get_records(rd, "plans", S_ANY, sizeof *s->plans, &plans,
                           &s->n_plans, s_dec_plan_info);
    s->plans = plans;
    if (rc == 0) {
        rc = s_get_records(rd, "tasks", S_ANY, sizeof *s->tasks, &tasks,
                           &s->n_tasks, s_dec_task_info);
        s->tasks = tasks;
    }
    if (rc == 0) {
        rc = s_get_records(rd, "drones", S_ANY, sizeof *s->drones, &drones,
                           &s->n_drones, s_dec_drone_info);
        s->drones = drones;
    }
    return rc;
}

static int
s_dec_cancel(const s_rd_t *rd, proto_msg_t *m)
{
    proto_cancel_t *c = &m->u.cancel;
    return s_get_plan(rd, "plan", S_REQ, &c->plan) ||
           s_get_str(rd, "task", S_OPT, 1, S_MAX_ID, &c->task) ? -1 : 0;
}

static int
s_dec_retry(const s_rd_t *rd, proto_msg_t *m)
{
    proto_retry_t *r = &m->u.retry;
    return s_get_plan(rd, "plan", S_REQ, &r->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &r->task) ? -1 : 0;
}

static int
s_dec_output(const s_rd_t *rd, proto_msg_t *m)
{
    proto_output_t *o = &m->u.output;
    return s_get_plan(rd, "plan", S_REQ, &o->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &o->task) ||
           s_get_u32(rd, "attempt", S_OPT, 0, UINT32_MAX, &o->attempt) ||
           s_get_bool(rd, "want_stderr", S_OPT, &o->want_stderr) ? -1 : 0;
}

static int
s_dec_output_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_output_ok_t *o = &m->u.output_ok;
    return s_get_plan(rd, "plan", S_REQ, &o->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &o->task) ||
           s_get_u32(rd, "attempt", S_REQ, 0, UINT32_MAX, &o->attempt) ||
           s_get_bin(rd, "data", S_REQ, &o->data) ||
           s_get_bool(rd, "truncated", S_OPT, &o->truncated) ? -1 : 0;
}

static int
s_dec_ok(const s_rd_t *rd, proto_msg_t *m)
{
    return s_get_str(rd, "message", S_OPT, 0, S_ANY, &m->u.ok.message);
}

static int
s_dec_error(const s_rd_t *rd, proto_msg_t *m)
{
    proto_error_body_t *e = &m->u.error;
    int code;
    if (s_get_enum(rd, "code", s_status_names, PROTO_E__COUNT, &code) ||
        s_get_str(rd, "message", S_REQ, 0, S_ANY, &e->message) ||
        s_get_strv(rd, "details", S_ANY, 0, S_ANY, &e->details)) {
        return -1;
    }
    if (code == PROTO_E_NONE) {
        return s_bad(rd, "code", "NONE is not an error");
    }
    e->code = (proto_status_t) code;
    return 0;
}

static int
s_dec_empty(const s_rd_t *rd, proto_msg_t *m)
{
    return 0;
}

// --- the message table -------------------------------------------------

static const struct {
    void (*enc)(msgpack_packer *pk, const proto_msg_t *m);
    int (*dec)(const s_rd_t *rd, proto_msg_t *m);
} s_ops[PROTO_MSG__COUNT] = {
    [PROTO_MSG_HELLO] = {s_enc_hello, s_dec_hello},
    [PROTO_MSG_WELCOME] = {s_enc_welcome, s_dec_welcome},
    [PROTO_MSG_HEARTBEAT] = {s_enc_heartbeat, s_dec_heartbeat},
    [PROTO_MSG_TASK] = {s_enc_task, s_dec_task},
    [PROTO_MSG_STOP] = {s_enc_stop, s_dec_stop},
    [PROTO_MSG_RESULT] = {s_enc_result, s_dec_result},
    [PROTO_MSG_RESULT_ACK] = {s_enc_result_ack, s_dec_result_ack},
    [PROTO_MSG_UPDATE] = {s_enc_update, s_dec_update},
    [PROTO_MSG_BYE] = {s_enc_empty, s_dec_empty},
    [PROTO_MSG_PING] = {s_enc_empty, s_dec_empty},
    [PROTO_MSG_PONG] = {s_enc_pong, s_dec_pong},
    [PROTO_MSG_SUBMIT] = {s_enc_submit, s_dec_submit},
    [PROTO_MSG_SUBMIT_OK] = {s_enc_submit_ok, s_dec_submit_ok},
    [PROTO_MSG_STATUS] = {s_enc_status, s_dec_status},
    [PROTO_MSG_STATUS_OK] = {s_enc_status_ok, s_dec_status_ok},
    [PROTO_MSG_CANCEL] = {s_enc_plan_task, s_dec_cancel},
    [PROTO_MSG_RETRY] = {s_enc_plan_task, s_dec_retry},
    [PROTO_MSG_OUTPUT] = {s_enc_output, s_dec_output},
    [PROTO_MSG_OUTPUT_OK] = {s_enc_output_ok, s_dec_output_ok},
    [PROTO_MSG_OK] = {s_enc_ok, s_dec_ok},
    [PROTO_MSG_ERROR] = {s_enc_error, s_dec_error},
};

void
proto_encode(const proto_msg_t *msg, uint8_t **buf, size_t *len)
{
    assert(msg && buf && len);
    assert((unsigned) msg->cmd < PROTO_MSG__COUNT);
    s_buf_t b = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, s_buf_write);
    s_ops[msg->cmd].enc(&pk, msg);
    *buf = b.data;
    *len = b.len;
}

// Sets err->req from the first usable "req", failing silently: it only
// lets an ERROR reply echo the request.
static void
s_peek_req(const s_rd_t *rd)
{
    for (uint32_t i = 0; i < rd->map->size; i++) {
        const msgpack_object_kv *kv = &rd->map->ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3 &&
            memcmp(kv->key.via.str.ptr, "req", 3) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            rd->err->req = kv->val.via.u64;
            return;
        }
    }
}

// Reads "v" and "cmd"; err->req is set first so every later failure can
// be echoed to the sender.
static int
s_dec_envelope(const s_rd_t *rd, proto_cmd_t *cmd, uint64_t *req)
{
    const msgpack_object *o;
    uint64_t v = 0;
    char q[64];
    s_peek_req(rd);
    if (s_get_u64(rd, "v", S_REQ, UINT64_MAX, &v) < 0) {
        return -1;
    }
    if (v != PROTO_VERSION) {
        return s_fail(rd->err, PROTO_E_BAD_VERSION, "protocol version %" PRIu64
                      " is not supported (this side speaks %d)", v,
                      PROTO_VERSION);
    }
    if (s_field(rd, "cmd", S_REQ, &o) < 0) {
        return -1;
    }
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, "cmd", "expected a string");
    }
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        if (strlen(s_cmds[i].name) == o->via.str.size &&
            memcmp(s_cmds[i].name, o->via.str.ptr, o->via.str.size) == 0) {
            *cmd = (proto_cmd_t) i;
            return s_get_u64(rd, "req", S_REQ, UINT64_MAX, req);
        }
    }
    return s_fail(rd->err, PROTO_E_UNKNOWN_COMMAND, "unknown command '%s'",
                  s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
}

static int
s_dec_frame(const msgpack_object *top, proto_msg_t **out, proto_error_t *err)
{
    s_rd_t rd = {&top->via.map, "", err};
    proto_cmd_t cmd = PROTO_MSG_PING;
    uint64_t req = 0;
    if (s_dec_envelope(&rd, &cmd, &req) < 0) {
        return -1;
    }
    proto_msg_t *msg = proto_msg_new(cmd);
    msg->req = req;
    if (s_ops[cmd].dec(&rd, msg) < 0) {
        proto_msg_destroy(&msg);
        return -1;
    }
    *out = msg;
    return 0;
}

int
proto_decode(const uint8_t *buf, size_t len, const proto_limits_t *lim,
             proto_msg_t **out, proto_error_t *err)
{
    proto_limits_t def;
    assert(out && err && (buf || len == 0));
    *out = NULL;
    memset(err, 0, sizeof *err);
    if (!lim) {
        proto_limits_default(&def);
        lim = &def;
    }
    if (s_prewalk(buf, len, lim, err) < 0) {
        return -1;
    }
    msgpack_unpacked up;
    size_t off = 0;
    int rc = -1;
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, (const char *) buf, len, &off) !=
            MSGPACK_UNPACK_SUCCESS || off != len ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        // The pre-walk accepts only what msgpack-c parses; this is a guard.
        s_fail(err, PROTO_E_MALFORMED, "not a valid msgpack frame");
    } else {
        rc = s_dec_frame(&up.data, out, err);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}
