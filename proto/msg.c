// msg: the lifecycle of a proto_msg_t: proto_msg_new(), proto_msg_destroy(),
// the proto_strv_t/proto_bytes_t builders and proto_error_new().
//
// Owns the rule of proto.h that a message owns everything it points at:
// destroy frees each message's strings, arrays and buffers, and is safe on
// a message the decoder abandoned half filled (unset pointers are NULL and
// counts match what was allocated).  Allocation goes through xalloc, which
// aborts on OOM, so nothing here fails.  Never encodes or decodes, and
// knows nothing of msgpack.
#include "proto/proto.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void
proto_strv_release(proto_strv_t *v)
{
    for (size_t i = 0; i < v->count; i++) {
        free(v->items[i]);
    }
    free(v->items);
    v->items = NULL;
    v->count = 0;
}

static void
s_free_hello(proto_msg_t *m)
{
    proto_hello_t *h = &m->u.hello;
    free(h->instance);
    free(h->host);
    free(h->version);
    free(h->secret);
    proto_strv_release(&h->tags);
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
    proto_strv_release(&t->argv);
    for (size_t i = 0; i < t->n_env; i++) {
        free(t->env[i].key);
        free(t->env[i].value);
    }
    free(t->env);
    free(t->cwd);
    free(t->prompt);
    free(t->system);
    free(t->model);
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
    free(s->workplan);
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
        proto_strv_release(&t->needs);
    }
    free(s->tasks);
    for (size_t i = 0; i < s->n_drones; i++) {
        proto_drone_info_t *d = &s->drones[i];
        free(d->instance);
        free(d->name);
        free(d->host);
        proto_strv_release(&d->tags);
        for (size_t k = 0; k < d->n_tasks; k++) {
            free(d->tasks[k].task);
        }
        free(d->tasks);
    }
    free(s->drones);
}

// Frees the strings of the messages whose bodies are flat.
static void
s_free_flat(proto_msg_t *m)
{
    switch (m->cmd) {
    case PROTO_MSG_WELCOME:
        free(m->u.welcome.broker_id);
        free(m->u.welcome.secret);
        break;
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
    case PROTO_MSG_SUBMIT_OK:
        proto_strv_release(&m->u.submit_ok.warnings);
        break;
    case PROTO_MSG_CANCEL: free(m->u.cancel.task); break;
    case PROTO_MSG_RETRY: free(m->u.retry.task); break;
    case PROTO_MSG_AMEND: free(m->u.amend.amendment); break;
    case PROTO_MSG_AMEND_OK:
        proto_strv_release(&m->u.amend_ok.added);
        proto_strv_release(&m->u.amend_ok.cancelled);
        proto_strv_release(&m->u.amend_ok.replaced);
        proto_strv_release(&m->u.amend_ok.warnings);
        break;
    case PROTO_MSG_OUTPUT: free(m->u.output.task); break;
    case PROTO_MSG_APPROVE:
    case PROTO_MSG_REJECT:
        free(m->u.verdict.task);
        free(m->u.verdict.note);
        free(m->u.verdict.hash);
        break;
    case PROTO_MSG_OUTPUT_OK:
        free(m->u.output_ok.task);
        free(m->u.output_ok.data.data);
        free(m->u.output_ok.state);
        break;
    case PROTO_MSG_TAIL: free(m->u.tail.data.data); break;
    case PROTO_MSG_EXPLAIN: free(m->u.explain.task); break;
    case PROTO_MSG_EXPLAIN_OK:
        proto_explain_ok_release(&m->u.explain_ok);
        break;
    case PROTO_MSG_EVENTS:
        for (size_t i = 0; i < m->u.events.n_events; i++) {
            proto_event_release(&m->u.events.events[i]);
        }
        free(m->u.events.events);
        break;
    case PROTO_MSG_OK: free(m->u.ok.message); break;
    case PROTO_MSG_ERROR:
        free(m->u.error.message);
        proto_strv_release(&m->u.error.details);
        break;
    // No default: a new message must say here what it owns (-Wswitch).
    case PROTO_MSG_HELLO:
    case PROTO_MSG_TASK:
    case PROTO_MSG_STATUS_OK:
        assert(!"freed by their own functions");
        break;
    case PROTO_MSG_UPDATE:
    case PROTO_MSG_BYE:
    case PROTO_MSG_PING:
    case PROTO_MSG_STATUS:
    case PROTO_MSG_SUBSCRIBE:
    case PROTO_MSG_BUDGET:
    case PROTO_MSG_BUDGET_OK:
    case PROTO_MSG__COUNT:
        break;  // nothing owned
    }
}

void
proto_explain_ok_release(proto_explain_ok_t *x)
{
    free(x->task);
    free(x->state);
    free(x->code);
    free(x->reason);
    proto_strv_release(&x->needs);
    proto_strv_release(&x->need_states);
    proto_strv_release(&x->tags);
    free(x->drone);
    free(x->model);
    free(x->blocked_by);
    free(x->blocked_state);
    memset(x, 0, sizeof *x);
}

void
proto_event_release(proto_event_t *e)
{
    free(e->task);
    free(e->actor);
    free(e->kind);
    free(e->from);
    free(e->to);
    free(e->detail);
    memset(e, 0, sizeof *e);
}

proto_msg_t *
proto_msg_new(proto_cmd_t cmd)
{
    assert((unsigned) cmd < PROTO_MSG__COUNT);
    proto_msg_t *m = xcalloc(1, sizeof *m);
    m->cmd = cmd;
    if (cmd == PROTO_MSG_RESULT) {
        // Not reported until a prompt task's drone sets them.
        m->u.result.prompt_tokens = -1;
        m->u.result.completion_tokens = -1;
    }
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

int
proto_error_set(proto_error_t *err, proto_status_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}
