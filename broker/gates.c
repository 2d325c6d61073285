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
    char *head = rc == LEDGER_OK
                     ? xasprintf("\n--- '%s' (attempt %u%s) ---\n", need,
                                 attempt, truncated ? ", truncated" : "")
                     : xasprintf("\n--- '%s' (no output) ---\n", need);
    s_append_str(buf, head);
    s_append(buf, data ? (const char *) data : "", len);
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
    log_info(LOG, "plan %lld gate '%s' %s by '%s'", (long long) plan, t->id,
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
