// sched_describe: a canonical text of what sched holds (sched.h has the
// contract), so a test can compare the picture a live broker built with
// the one it rebuilds from the ledger.
//
// Owns only the text.  It reads every plan's task states, backoff ends,
// requires groups and queue membership, and the lease table, and checks
// the invariants that tie them together (a ready task is queued exactly
// once, where its entry says; pending counts and tallies match the states;
// one lease per leased task), writing "BROKEN: ..." lines where they fail.
// What a restart legitimately changes is left out: lease deadlines (a
// restart grants a grace), the round-robin cursor, and the order of
// entries inside a heap.
//
// Pure like the rest of sched: no I/O, no clock, no logging.
#include "broker/sched_int.h"

#include "common/xalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, cap;
} s_text_t;

// Appends printf-style text (the attribute lets clang check the callers).
static void s_add(s_text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_add(s_text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (t->len + (size_t) n + 1 > t->cap) {
        t->cap = (t->len + (size_t) n + 1) * 2;
        t->buf = xrealloc(t->buf, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t) n;
}

// Whether the heap entry a task points at is that task.
static bool
s_queued_right(const sched_t *self, const sched__plan_t *p, size_t idx)
{
    const sched__task_t *t = &p->tasks[idx];
    const sched__heap_t *h = t->where == SCHED__IN_GROUP
                                 ? &p->groups[t->group].heap
                             : t->where == SCHED__IN_BACKOFF ? &self->backoff
                                                             : NULL;
    return h && t->pos < h->len && h->items[t->pos].plan == p
           && h->items[t->pos].idx == idx;
}

static uint32_t
s_pending(const sched__plan_t *p, size_t idx)
{
    uint32_t n = 0;
    for (size_t k = p->need_off[idx]; k < p->need_off[idx + 1]; k++) {
        n += p->tasks[p->needs[k]].state != PROTO_TASK_SUCCEEDED;
    }
    return n;
}

static void
s_task(s_text_t *out, const sched_t *self, const sched__plan_t *p,
       size_t idx)
{
    const sched__task_t *t = &p->tasks[idx];
    proto_task_state_t s = (proto_task_state_t) t->state;
    s_add(out, "  task %zu '%s' %s", idx, p->wp->tasks[idx].id,
          proto_task_state_name(s));
    if (s == PROTO_TASK_READY && t->not_before_ms > 0) {
        s_add(out, " not_before %" PRId64, t->not_before_ms);
    }
    if (s == PROTO_TASK_AWAITING_APPROVAL && t->not_before_ms > 0) {
        s_add(out, " deadline %" PRId64, t->not_before_ms);
    }
    if (s == PROTO_TASK_WAITING || t->n_pending != s_pending(p, idx)) {
        s_add(out, " pending %" PRIu32, t->n_pending);
    }
    if (t->used || t->runs) {
        s_add(out, " used %" PRIu32 " runs %" PRIu32, (uint32_t) t->used,
              t->runs);
    }
    s_add(out, "\n");
    if (t->n_pending != s_pending(p, idx)) {
        s_add(out, "  BROKEN: pending should be %" PRIu32 "\n",
              s_pending(p, idx));
    }
    if ((s == PROTO_TASK_READY) != (t->where != SCHED__NOWHERE)) {
        s_add(out, "  BROKEN: %s\n", s == PROTO_TASK_READY
                                         ? "ready but not queued"
                                         : "queued but not ready");
    } else if (s == PROTO_TASK_READY && !s_queued_right(self, p, idx)) {
        s_add(out, "  BROKEN: its queue entry is not where it says\n");
    }
}

// Each requires group with its ready tasks, in workplan order, whether
// still in backoff or already in the group's heap (which of the two is a
// matter of when sched_pick last ran, not of state).
static void
s_groups(s_text_t *out, const sched_t *self, const sched__plan_t *p)
{
    size_t queued = 0;
    for (size_t g = 0; g < p->n_groups; g++) {
        const sched__group_t *gr = &p->groups[g];
        s_add(out, "  group %zu [", g);
        for (size_t r = 0; r < gr->n_req; r++) {
            s_add(out, "%s%s", r ? " " : "", gr->req[r]);
        }
        s_add(out, "] ready:");
        for (size_t i = 0; i < p->wp->n_tasks; i++) {
            if (p->tasks[i].group == g && p->tasks[i].where != SCHED__NOWHERE) {
                s_add(out, " %zu", i);
            }
        }
        s_add(out, "\n");
        queued += gr->heap.len;
    }
    for (size_t i = 0; i < self->backoff.len; i++) {
        queued += self->backoff.items[i].plan == p;
    }
    size_t ready = 0;
    for (size_t i = 0; i < p->wp->n_tasks; i++) {
        ready += p->tasks[i].state == PROTO_TASK_READY;
    }
    if (queued != ready) {
        s_add(out, "  BROKEN: %zu queue entries for %zu ready tasks\n",
              queued, ready);
    }
}

static void
s_plan(s_text_t *out, const sched_t *self, const sched__plan_t *p)
{
    size_t terminal = 0, succeeded = 0;
    for (size_t i = 0; i < p->wp->n_tasks; i++) {
        terminal += proto_task_state_is_terminal(p->tasks[i].state);
        succeeded += p->tasks[i].state == PROTO_TASK_SUCCEEDED;
    }
    s_add(out, "plan %" PRId64 " '%s': %zu tasks, %zu terminal, %zu "
          "succeeded\n", p->id, p->wp->name, p->wp->n_tasks, p->n_terminal,
          p->n_succeeded);
    if (terminal != p->n_terminal || succeeded != p->n_succeeded) {
        s_add(out, "  BROKEN: tallies should be %zu terminal, %zu "
              "succeeded\n", terminal, succeeded);
    }
    for (size_t i = 0; i < p->wp->n_tasks; i++) {
        s_task(out, self, p, i);
    }
    s_groups(out, self, p);
}

static int
s_cmp_token(const void *a, const void *b)
{
    const sched_lease_t *x = a, *y = b;
    return x->token < y->token ? -1 : x->token > y->token;
}

static int
s_cmp_task(const void *a, const void *b)
{
    const sched_lease_t *x = a, *y = b;
    if (x->plan != y->plan) {
        return x->plan < y->plan ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Every lease by token; every leased task has exactly one.
static void
s_leases(s_text_t *out, const sched_t *self)
{
    sched_lease_t *all = NULL;
    size_t n = sched_leases_expired(self, INT64_MAX, &all);
    if (n > 1) {
        qsort(all, n, sizeof *all, s_cmp_token);
    }
    size_t leased = 0;
    for (size_t i = 0; i < self->n_plans; i++) {
        const sched__plan_t *p = self->plans[i];
        for (size_t k = 0; k < p->wp->n_tasks; k++) {
            leased += p->tasks[k].state == PROTO_TASK_LEASED;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const sched_lease_t *l = &all[i];
        const sched__plan_t *p = sched__plan_find(self, l->plan);
        bool ok = p && l->idx < p->wp->n_tasks
                  && p->tasks[l->idx].state == PROTO_TASK_LEASED;
        s_add(out, "lease %" PRIu64 " plan %" PRId64 " task '%s' instance %s"
              "%s\n", l->token, l->plan, ok ? p->wp->tasks[l->idx].id : "?",
              l->instance, l->hard_deadline_ms ? " backstop" : "");
        if (!ok) {
            s_add(out, "BROKEN: lease %" PRIu64 " is not of a leased task\n",
                  l->token);
        }
    }
    if (leased != n) {
        s_add(out, "BROKEN: %zu leased tasks, %zu leases\n", leased, n);
    }
    if (n > 1) {
        qsort(all, n, sizeof *all, s_cmp_task);
    }
    for (size_t i = 1; i < n; i++) {
        if (all[i].plan == all[i - 1].plan && all[i].idx == all[i - 1].idx) {
            s_add(out, "BROKEN: two leases for task %zu of plan %" PRId64
                  "\n", all[i].idx, all[i].plan);
        }
    }
    free(all);
}

char *
sched_describe(const sched_t *self)
{
    s_text_t out = {0};
    s_add(&out, "sched: %zu plans\n", self->n_plans);
    for (size_t i = 0; i < self->n_plans; i++) {
        s_plan(&out, self, self->plans[i]);
    }
    s_leases(&out, self);
    return out.buf;
}
