// gates: a person's answer to a gate task — what the gate shows (its
// question and the outputs of what it needs), APPROVE and REJECT.
//
// An approval is bound to what was shown: the client fetches the gate's
// text (OUTPUT of the gate), shows it, and sends the sha256 of exactly
// those bytes; the broker rebuilds the text from the ledger and refuses the
// answer when it differs (an input re-run by retry since).  A model-driven
// process may read a gate but never answer it: APPROVE and REJECT are
// operator-only in messages.def.
#include "broker/broker_int.h"

#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.gates"

typedef struct {
    char *data;
    size_t len;
} s_buf_t;

static void
s_append(s_buf_t *buf, const void *data, size_t len)
{
    buf->data = xrealloc(buf->data, buf->len + len + 1);
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

static void
s_append_str(s_buf_t *buf, const char *s)
{
    s_append(buf, s, strlen(s));
}

// One input: a header naming it and its accepted attempt, then its stdout.
static ledger_rc_t
s_append_input(broker_t *b, int64_t plan, const char *need, s_buf_t *buf)
{
    uint8_t *data = NULL;
    size_t len = 0;
    bool truncated = false;
    uint32_t attempt = 0;
    ledger_rc_t rc = ledger_task_output(b->ledger, plan, need, 0, false,
                                        &data, &len, &truncated, &attempt);
    if (rc == LEDGER_ERROR) {
        return rc;
    }
    // The text must fit one reply: what passes half a frame is cut (the
    // hash covers what is shown, cut or not).
    size_t room = (size_t) b->cfg->max_frame / 2;
    room = buf->len < room ? room - buf->len : 0;
    bool cut = len > room;
    char *head = rc == LEDGER_OK
                     ? xasprintf("\n--- '%s' (attempt %u%s) ---\n", need,
                                 attempt,
                                 truncated || cut ? ", truncated" : "")
                     : xasprintf("\n--- '%s' (no output) ---\n", need);
    s_append_str(buf, head);
    s_append(buf, data ? (const char *) data : "", cut ? room : len);
    free(head);
    free(data);
    return LEDGER_OK;
}

int
gates_text(broker_t *b, int64_t plan, size_t idx, uint8_t **data,
           size_t *len)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    const wp_task_t *t = &wp->tasks[idx];
    s_buf_t buf = {0};
    s_append_str(&buf, "question: ");
    s_append_str(&buf, t->gate);
    s_append_str(&buf, "\n");
    for (size_t i = 0; i < t->n_needs; i++) {
        if (s_append_input(b, plan, t->needs[i], &buf) != LEDGER_OK) {
            free(buf.data);
            return -1;
        }
    }
    *data = (uint8_t *) buf.data;
    *len = buf.len;
    return 0;
}

static char *
s_hash_hex(const uint8_t *data, size_t len)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    char *hex = xmalloc(sizeof h * 2 + 1);
    sodium_bin2hex(hex, sizeof h * 2 + 1, h, sizeof h);
    return hex;
}

char *
gates_hash(broker_t *b, int64_t plan, size_t idx)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (gates_text(b, plan, idx, &data, &len) < 0) {
        return NULL;
    }
    char *hex = s_hash_hex(data, len);
    free(data);
    return hex;
}

// What the events record: the note and the hash of what was shown.
static char *
s_detail(const char *note, const char *hash)
{
    jnode_t *obj = json_obj_new();
    if (note) {
        json_obj_set_str(obj, "note", note);
    } else {
        json_obj_set_null(obj, "note");
    }
    json_obj_set_str(obj, "hash", hash);
    char *text = json_dump(obj, false);
    json_destroy(&obj);
    return text;
}

ledger_rc_t
gates_decide(broker_t *b, int64_t plan, size_t idx, proto_task_state_t to,
             const char *actor, const char *note, const char *hash)
{
    const wp_task_t *t = &sched_workplan(b->sched, plan)->tasks[idx];
    char *detail = s_detail(note, hash);
    ledger_rc_t rc = ledger_task_move(b->ledger, plan, t->id,
                                      PROTO_TASK_AWAITING_APPROVAL, to, actor,
                                      detail, b->now_wall);
    free(detail);
    if (rc != LEDGER_OK) {
        return rc;
    }
    sched_set(b->sched, plan, idx, to, 0);
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", plan), LOG_STR("task", t->id),
                                  LOG_STR("key", actor)),
                  "plan %lld gate '%s' %s by '%s'", (long long) plan, t->id,
             to == PROTO_TASK_SUCCEEDED ? "approved" : "rejected", actor);
    sched_moves_t moves = {0};
    sched_cascade(b->sched, plan, idx, &moves);
    bool ok = plans_apply(b, &moves, actor);
    sched_moves_release(&moves);
    if (!ok) {
        return LEDGER_ERROR;
    }
    plans_check_done(b, plan, actor);
    return LEDGER_OK;
}

// --- timeouts --------------------------------------------------------------
//
// A gate with timeout_s is rejected by the broker when it has waited that
// long.  The deadline is wall-clock from when it started waiting, persisted
// in the task's not_before_ms (ledger_gate_deadline), so a restart keeps it;
// the watch list in memory only says which gates to look at and is checked
// against sched (an entry whose gate was answered, retried or whose plan
// went is dropped).

static void
s_watch(broker_t *b, int64_t plan, size_t idx, int64_t deadline_ms)
{
    if (b->n_gate_watch == b->cap_gate_watch) {
        b->cap_gate_watch = b->cap_gate_watch ? 2 * b->cap_gate_watch : 8;
        b->gate_watch = xrealloc(b->gate_watch, b->cap_gate_watch *
                                                    sizeof *b->gate_watch);
    }
    b->gate_watch[b->n_gate_watch++] = (gate_watch_t){plan, idx, deadline_ms};
}

bool
gates_started(broker_t *b, int64_t plan, size_t idx)
{
    const wp_task_t *t = &sched_workplan(b->sched, plan)->tasks[idx];
    if (t->kind != WP_KIND_GATE) {
        return true;
    }
    hook_queue(b, plan, t->id, t->gate);
    if (t->timeout_s <= 0) {
        return true;
    }
    int64_t deadline = b->now_wall + t->timeout_s * 1000;
    ledger_rc_t rc = ledger_gate_deadline(b->ledger, plan, t->id, deadline,
                                          "broker", b->now_wall);
    if (rc == LEDGER_ERROR) {
        broker_fail_turn(b);
        return false;
    }
    if (rc == LEDGER_OK) {
        sched_set(b->sched, plan, idx, PROTO_TASK_AWAITING_APPROVAL,
                  deadline);
        s_watch(b, plan, idx, deadline);
    }
    return true;
}

void
gates_loaded(broker_t *b, int64_t plan, size_t idx, int64_t deadline_ms)
{
    sched_set(b->sched, plan, idx, PROTO_TASK_AWAITING_APPROVAL, deadline_ms);
    if (deadline_ms > 0) {
        s_watch(b, plan, idx, deadline_ms);
    }
}

static bool
s_live(broker_t *b, const gate_watch_t *w)
{
    return sched_has_plan(b->sched, w->plan) &&
           sched_get(b->sched, w->plan, w->idx) ==
               PROTO_TASK_AWAITING_APPROVAL &&
           sched_not_before(b->sched, w->plan, w->idx) == w->deadline_ms;
}

static void
s_expire_one(broker_t *b, const gate_watch_t *w)
{
    const wp_task_t *t = &sched_workplan(b->sched, w->plan)->tasks[w->idx];
    char *hash = gates_hash(b, w->plan, w->idx);
    char *note = xasprintf("timed out: no answer within %lld s",
                           (long long) t->timeout_s);
    if (!hash || !broker_begin(b) ||
        gates_decide(b, w->plan, w->idx, PROTO_TASK_REJECTED, "broker", note,
                     hash) == LEDGER_ERROR) {
        broker_fail_turn(b);
    }
    free(note);
    free(hash);
}

void
gates_expire(broker_t *b)
{
    // A rejection only blocks, so nothing is watched anew while this runs;
    // entries appended all the same (past n) are kept.
    size_t keep = 0, n = b->n_gate_watch;
    for (size_t i = 0; i < n; i++) {
        gate_watch_t w = b->gate_watch[i];
        if (!s_live(b, &w)) {
            continue;
        }
        if (w.deadline_ms > b->now_wall) {
            b->gate_watch[keep++] = w;
            continue;
        }
        s_expire_one(b, &w);
    }
    for (size_t i = n; i < b->n_gate_watch; i++) {
        b->gate_watch[keep++] = b->gate_watch[i];
    }
    b->n_gate_watch = keep;
}

int64_t
gates_next_deadline_ms(const broker_t *b)
{
    int64_t next = -1;
    for (size_t i = 0; i < b->n_gate_watch; i++) {
        int64_t d = b->gate_watch[i].deadline_ms;
        next = next < 0 || d < next ? d : next;
    }
    return next;
}

void
gates_forget(broker_t *b)
{
    free(b->gate_watch);
    b->gate_watch = NULL;
    b->n_gate_watch = b->cap_gate_watch = 0;
}
