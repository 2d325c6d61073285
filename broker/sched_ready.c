// sched_ready: the ready side of sched, which task runs next and why one
// has not (sched.h has the contract; sched_int.h the shared structs).
//
// Owns each plan's requires groups (tasks with equal requires share one),
// the indexed heaps: one per group, holding its ready tasks whose backoff
// has ended, and the scheduler-wide backoff heap; picking, with its
// round-robin cursor; and the waiting reasons status shows.  Backoff
// entries move to their group lazily, when sched_pick is given a now_ms
// past them.  Picking looks only at the top of each group heap, so it
// costs O(plans x groups), never O(tasks).
//
// Never changes a task's state (sched.c does, then requeues it here),
// never touches a lease, never does I/O, reads a clock or logs.
#include "broker/sched_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

// --- heaps --------------------------------------------------------------

static bool
s_before(const sched__heap_t *h, const sched__hent_t *a, const sched__hent_t *b)
{
    if (a->key != b->key) {
        return h->by_time ? a->key < b->key : a->key > b->key;
    }
    if (a->plan != b->plan) {
        return a->plan->id < b->plan->id;
    }
    return a->idx < b->idx;
}

static void
s_heap_put(sched__heap_t *h, size_t i, sched__hent_t e)
{
    h->items[i] = e;
    e.plan->tasks[e.idx].pos = i;
}

static void
s_heap_up(sched__heap_t *h, size_t i)
{
    sched__hent_t e = h->items[i];
    while (i > 0 && s_before(h, &e, &h->items[(i - 1) / 2])) {
        s_heap_put(h, i, h->items[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    s_heap_put(h, i, e);
}

static void
s_heap_down(sched__heap_t *h, size_t i)
{
    sched__hent_t e = h->items[i];
    for (size_t c = 2 * i + 1; c < h->len; c = 2 * i + 1) {
        if (c + 1 < h->len && s_before(h, &h->items[c + 1], &h->items[c])) {
            c++;
        }
        if (!s_before(h, &h->items[c], &e)) {
            break;
        }
        s_heap_put(h, i, h->items[c]);
        i = c;
    }
    s_heap_put(h, i, e);
}

static void
s_heap_push(sched__heap_t *h, sched__hent_t e)
{
    sched__grow(&h->items, &h->cap, h->len + 1, sizeof *h->items);
    h->items[h->len++] = e;
    s_heap_up(h, h->len - 1);
}

static void
s_heap_remove(sched__heap_t *h, size_t i)
{
    assert(i < h->len);
    sched__hent_t last = h->items[--h->len];
    if (i < h->len) {
        s_heap_put(h, i, last);
        if (i > 0 && s_before(h, &last, &h->items[(i - 1) / 2])) {
            s_heap_up(h, i);
        } else {
            s_heap_down(h, i);
        }
    }
    // Give memory back after a burst (a 100k fan-out drained).
    if (h->cap > 64 && h->len < h->cap / 4) {
        h->cap /= 2;
        h->items = xrealloc(h->items, h->cap * sizeof *h->items);
    }
}

// Drops every entry of plan p, then restores the heap order.
static void
s_heap_purge(sched__heap_t *h, const sched__plan_t *p)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (h->items[i].plan != p) {
            s_heap_put(h, n++, h->items[i]);
        }
    }
    h->len = n;
    for (size_t i = n / 2; i-- > 0;) {
        s_heap_down(h, i);
    }
}

// Earliest key > now_ms.  Entries <= now_ms form a subtree at the root, so
// this visits that subtree and its border; recursion depth is the heap's
// height, O(log n).
static int64_t
s_heap_min_after(const sched__heap_t *h, size_t i, int64_t now_ms)
{
    if (i >= h->len) {
        return -1;
    }
    if (h->items[i].key > now_ms) {
        return h->items[i].key;
    }
    int64_t a = s_heap_min_after(h, 2 * i + 1, now_ms);
    int64_t b = s_heap_min_after(h, 2 * i + 2, now_ms);
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

// --- ready queues -------------------------------------------------------

// Every entry into a group heap: keeps prio_max an upper bound of every
// key in any group heap, which lets sched_pick_if stop early.
static void
s_group_push(sched_t *self, sched__plan_t *p, size_t idx)
{
    sched__task_t *t = &p->tasks[idx];
    s_heap_push(&p->groups[t->group].heap,
                (sched__hent_t){t->priority, p, idx});
    t->where = SCHED__IN_GROUP;
    if (!self->prio_seen || t->priority > self->prio_max) {
        self->prio_max = t->priority;
        self->prio_seen = true;
    }
}

void
sched__enqueue(sched_t *self, sched__plan_t *p, size_t idx)
{
    sched__task_t *t = &p->tasks[idx];
    if (t->not_before_ms > 0) {
        s_heap_push(&self->backoff,
                    (sched__hent_t){t->not_before_ms, p, idx});
        t->where = SCHED__IN_BACKOFF;
    } else {
        s_group_push(self, p, idx);
    }
}

void
sched__dequeue(sched_t *self, sched__plan_t *p, size_t idx)
{
    sched__task_t *t = &p->tasks[idx];
    if (t->where == SCHED__IN_GROUP) {
        s_heap_remove(&p->groups[t->group].heap, t->pos);
    } else if (t->where == SCHED__IN_BACKOFF) {
        s_heap_remove(&self->backoff, t->pos);
    }
    t->where = SCHED__NOWHERE;
}

static void
s_backoff_drain(sched_t *self, int64_t now_ms)
{
    sched__heap_t *h = &self->backoff;
    while (h->len > 0 && h->items[0].key <= now_ms) {
        sched__hent_t e = h->items[0];
        s_heap_remove(h, 0);
        s_group_push(self, e.plan, e.idx);
    }
}

void
sched__backoff_purge(sched_t *self, const sched__plan_t *p)
{
    s_heap_purge(&self->backoff, p);
}

// --- requires groups ----------------------------------------------------

typedef struct {
    const char **req;
    size_t n_req;
    size_t idx;
} s_reqkey_t;

static int
s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int
s_cmp_req(const s_reqkey_t *x, const s_reqkey_t *y)
{
    if (x->n_req != y->n_req) {
        return x->n_req < y->n_req ? -1 : 1;
    }
    for (size_t i = 0; i < x->n_req; i++) {
        int c = strcmp(x->req[i], y->req[i]);
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

static int
s_cmp_reqkey(const void *a, const void *b)
{
    const s_reqkey_t *x = a, *y = b;
    int c = s_cmp_req(x, y);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Every task's requires, sorted and without duplicates, in p->req_pool.
static s_reqkey_t *
s_plan_reqkeys(sched__plan_t *p)
{
    const workplan_t *wp = p->wp;
    size_t total = 0;
    for (size_t i = 0; i < wp->n_tasks; i++) {
        total += wp->tasks[i].n_requires;
    }
    p->req_pool = xmalloc((total ? total : 1) * sizeof *p->req_pool);
    s_reqkey_t *keys = xmalloc((wp->n_tasks ? wp->n_tasks : 1) * sizeof *keys);
    size_t off = 0;
    for (size_t i = 0; i < wp->n_tasks; i++) {
        const wp_task_t *t = &wp->tasks[i];
        const char **req = p->req_pool + off;
        size_t m = 0;
        if (t->n_requires > 0) {
            memcpy(req, t->requires, t->n_requires * sizeof *req);
            qsort(req, t->n_requires, sizeof *req, s_cmp_str);
        }
        for (size_t k = 0; k < t->n_requires; k++) {
            if (m == 0 || strcmp(req[m - 1], req[k]) != 0) {
                req[m++] = req[k];
            }
        }
        keys[i] = (s_reqkey_t){req, m, i};
        off += t->n_requires;
    }
    return keys;
}

// Tasks with equal requires share a group: sort by requires, then cut.
void
sched__groups_init(sched__plan_t *p)
{
    size_t n = p->wp->n_tasks;
    s_reqkey_t *keys = s_plan_reqkeys(p);
    qsort(keys, n, sizeof *keys, s_cmp_reqkey);
    for (size_t k = 0; k < n; k++) {
        p->n_groups += k == 0 || s_cmp_req(&keys[k - 1], &keys[k]) != 0;
    }
    p->groups = xcalloc(p->n_groups ? p->n_groups : 1, sizeof *p->groups);
    size_t g = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && s_cmp_req(&keys[k - 1], &keys[k]) != 0) {
            g++;
        }
        p->groups[g].req = keys[k].req;
        p->groups[g].n_req = keys[k].n_req;
        p->tasks[keys[k].idx].group = (uint32_t) g;
    }
    free(keys);
}

void
sched__groups_release(sched__plan_t *p)
{
    for (size_t g = 0; g < p->n_groups; g++) {
        free(p->groups[g].heap.items);
    }
    free(p->groups);
    free(p->req_pool);
}

// --- picking ------------------------------------------------------------

static bool
s_has_tag(const char *const *tags, size_t n_tags, const char *tag)
{
    for (size_t i = 0; i < n_tags; i++) {
        if (strcmp(tags[i], tag) == 0) {
            return true;
        }
    }
    return false;
}

static bool
s_covers(const char *const *tags, size_t n_tags, const sched__group_t *g)
{
    for (size_t i = 0; i < g->n_req; i++) {
        if (!s_has_tag(tags, n_tags, g->req[i])) {
            return false;
        }
    }
    return true;
}

// The best task of p a drone with these tags may take, or NULL.
static const sched__hent_t *
s_plan_best(const sched__plan_t *p, const char *const *tags, size_t n_tags,
            sched_hold_fn hold, void *arg)
{
    const sched__hent_t *best = NULL;
    for (size_t g = 0; g < p->n_groups; g++) {
        const sched__group_t *gr = &p->groups[g];
        if (gr->heap.len == 0 || !s_covers(tags, n_tags, gr)) {
            continue;
        }
        if (hold && hold(arg, p->id, gr->heap.items[0].idx)) {
            continue;
        }
        if (!best || s_before(&gr->heap, &gr->heap.items[0], best)) {
            best = &gr->heap.items[0];
        }
    }
    return best;
}

int
sched_pick(sched_t *self, const char *const *tags, size_t n_tags,
           int64_t now_ms, int64_t *plan, size_t *idx)
{
    return sched_pick_if(self, tags, n_tags, now_ms, NULL, NULL, plan, idx);
}

int
sched_pick_if(sched_t *self, const char *const *tags, size_t n_tags,
              int64_t now_ms, sched_hold_fn hold, void *arg, int64_t *plan,
              size_t *idx)
{
    assert(self && (tags || n_tags == 0) && plan && idx);
    s_backoff_drain(self, now_ms);
    size_t start = sched__plan_bound(self, self->rr_last, true);
    const sched__hent_t *best = NULL;
    for (size_t k = 0; k < self->n_plans; k++) {
        const sched__plan_t *p = self->plans[(start + k) % self->n_plans];
        const sched__hent_t *top = s_plan_best(p, tags, n_tags, hold, arg);
        // Strictly higher: at equal priority the plan met first wins.
        if (top && (!best || top->key > best->key)) {
            best = top;
        }
        // Nothing after can be strictly higher: stop.  Without this every
        // pick walked every running plan, so a backlog of plans made each
        // dispatch slower and the backlog longer — the paced runs' stalls
        // (bench/README.md).  Usually every task has the same priority and
        // the first plan with a task this drone may take wins at once.
        if (best && best->key >= self->prio_max) {
            break;
        }
    }
    if (!best) {
        return -1;
    }
    *plan = best->plan->id;
    *idx = best->idx;
    self->rr_last = *plan;
    return 0;
}

int64_t
sched_next_ready_ms(const sched_t *self, int64_t now_ms)
{
    assert(self);
    return s_heap_min_after(&self->backoff, 0, now_ms);
}

// --- waiting reasons ----------------------------------------------------

static bool
s_offered(const char *tag, const char *const *const *drone_tags,
          const size_t *n_drone_tags, size_t n_drones)
{
    for (size_t i = 0; i < n_drones; i++) {
        if (s_has_tag(drone_tags[i], n_drone_tags[i], tag)) {
            return true;
        }
    }
    return false;
}

// The needs of a waiting task that have not succeeded (the first few named).
static void
s_why_needs(const sched__plan_t *p, size_t idx, sched_why_t *out)
{
    out->n_pending = p->tasks[idx].n_pending;
    for (size_t k = p->need_off[idx];
         k < p->need_off[idx + 1] && out->n_needs < SCHED_WHY_NAMED; k++) {
        size_t d = p->needs[k];
        if (p->tasks[d].state != PROTO_TASK_SUCCEEDED) {
            out->needs[out->n_needs++] = d;
        }
    }
}

// No code when some drone covers g's requires; else the tags no drone
// offers, or all of them (all_of) when each is offered but never by one
// drone.
static void
s_why_tags(const sched__group_t *g, const char *const *const *drone_tags,
           const size_t *n_drone_tags, size_t n_drones, sched_why_t *out)
{
    for (size_t i = 0; i < n_drones; i++) {
        if (s_covers(drone_tags[i], n_drone_tags[i], g)) {
            return;
        }
    }
    out->code = SCHED_WHY_TAGS;
    for (size_t k = 0; k < g->n_req && out->n_tags < SCHED_WHY_NAMED; k++) {
        if (!s_offered(g->req[k], drone_tags, n_drone_tags, n_drones)) {
            out->tags[out->n_tags++] = g->req[k];
        }
    }
    out->all_of = out->n_tags == 0;
    for (size_t k = 0; out->all_of && k < g->n_req && k < SCHED_WHY_NAMED;
         k++) {
        out->tags[out->n_tags++] = g->req[k];
    }
}

void
sched_why(const sched_t *self, int64_t plan, size_t idx,
          const char *const *const *drone_tags, const size_t *n_drone_tags,
          size_t n_drones, int64_t now_ms, sched_why_t *out)
{
    assert(self && out && (n_drones == 0 || (drone_tags && n_drone_tags)));
    memset(out, 0, sizeof *out);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p || idx >= p->wp->n_tasks) {
        return;
    }
    const sched__task_t *t = &p->tasks[idx];
    if (t->state == PROTO_TASK_WAITING && t->n_pending > 0) {
        out->code = SCHED_WHY_NEEDS;
        s_why_needs(p, idx, out);
    } else if (t->state != PROTO_TASK_READY) {
        return;
    } else if (t->not_before_ms > now_ms) {
        out->code = SCHED_WHY_BACKOFF;
        out->not_before_ms = t->not_before_ms;
    } else if (n_drones == 0) {
        out->code = SCHED_WHY_NO_DRONES;
    } else {
        s_why_tags(&p->groups[t->group], drone_tags, n_drone_tags, n_drones,
                   out);
    }
}

static char *
s_append(char *s, const char *sep, const char *tag)
{
    char *next = xasprintf("%s%s'%s'", s, sep, tag);
    free(s);
    return next;
}

char *
sched_why_text(const sched_t *self, int64_t plan, const sched_why_t *why,
               int64_t now_ms)
{
    assert(self && why);
    const sched__plan_t *p = sched__plan_find(self, plan);
    char *s = NULL;
    switch (why->code) {
    case SCHED_WHY_NEEDS:
        s = xstrdup("waiting for ");
        for (size_t k = 0; p && k < why->n_needs && k < 3; k++) {
            s = s_append(s, k ? ", " : "", p->wp->tasks[why->needs[k]].id);
        }
        if (why->n_pending > 3 && why->n_needs >= 3) {
            char *next = xasprintf("%s and %zu more", s, why->n_pending - 3);
            free(s);
            s = next;
        }
        return s;
    case SCHED_WHY_BACKOFF:
        // Round up: "0 s" would read as no backoff at all.
        return xasprintf("in backoff for %" PRId64 " s",
                         (why->not_before_ms - now_ms + 999) / 1000);
    case SCHED_WHY_NO_DRONES:
        return xstrdup("no connected drones");
    case SCHED_WHY_TAGS:
        s = xstrdup("no connected drone offers ");
        for (size_t k = 0; k < why->n_tags; k++) {
            s = s_append(s, k ? ", " : why->all_of ? "all of " : "",
                         why->tags[k]);
        }
        return s;
    case SCHED_WHY_NONE:
        break;
    }
    return NULL;
}

char *
sched_waiting_reason(const sched_t *self, int64_t plan, size_t idx,
                     const char *const *const *drone_tags,
                     const size_t *n_drone_tags, size_t n_drones,
                     int64_t now_ms)
{
    sched_why_t why;
    sched_why(self, plan, idx, drone_tags, n_drone_tags, n_drones, now_ms,
              &why);
    return sched_why_text(self, plan, &why, now_ms);
}
