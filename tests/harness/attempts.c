// attempts: ledger reads for end-to-end assertions.
#include "tests/harness/attempts.h"

#include <stdio.h>
#include <string.h>

static void
s_row(void *arg, const ledger_attempt_row_t *row)
{
    attempts_t *v = arg;
    if (v->n >= ATTEMPTS_MAX) {
        return;
    }
    attempt_row_t *a = &v->a[v->n++];
    snprintf(a->task, sizeof a->task, "%s", row->task ? row->task : "");
    a->n = row->n;
    a->token = row->token;
    a->started_ms = row->started_ms;
    a->outcome = row->outcome;
    snprintf(a->instance, sizeof a->instance, "%s",
             row->instance ? row->instance : "");
}

int
attempts_read(const char *db, int64_t plan, const char *task,
              attempts_t *out)
{
    memset(out, 0, sizeof *out);
    ledger_t *l = NULL;
    char err[256];
    if (ledger_open(&l, db, LEDGER_RDONLY, err, sizeof err) < 0) {
        fprintf(stderr, "ledger_open: %s\n", err);
        return -1;
    }
    ledger_rc_t rc = ledger_attempts(l, plan, task, s_row, out);
    ledger_destroy(&l);
    return rc == LEDGER_OK ? 0 : -1;
}

int
attempts_count(const attempts_t *v, ledger_attempt_outcome_t o)
{
    int c = 0;
    for (int i = 0; i < v->n; i++) {
        c += v->a[i].outcome == o;
    }
    return c;
}
