// workplan_graph: the workplan as a graph of needs.  Owns the id hash, the
// resolution of needs into need_idx (validation pass 2) and cycle detection
// (pass 3).
//
// Pass 2 finds needs naming no task, listed twice or naming the task itself,
// checks each task's templates against its needs (through the scanner in
// workplan_template.c) and refuses needs whose WAGGLE_INPUT_ names collide.
// Pass 3 is an iterative depth-first search, so a 100k-task chain costs no
// stack; each back edge closes one cycle, reported once.  Both are linear in
// the size of the plan.  Errors go through the validation context
// (workplan_int.h).  Never touches JSON; pure: no I/O, no logging.
#include "common/workplan_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CYCLE_SHOWN 12            // ids named before a long cycle is cut

// --- id hash ---------------------------------------------------------------

void
wp_map_init(wp_map_t *m, size_t n, bool fold)
{
    size_t cap = 16;
    while (cap < n * 2) {
        cap *= 2;
    }
    m->keys = xcalloc(cap, sizeof *m->keys);
    m->vals = xcalloc(cap, sizeof *m->vals);
    m->mask = cap - 1;
    m->fold = fold;
}

void
wp_map_release(wp_map_t *m)
{
    free(m->keys);
    free(m->vals);
    *m = (wp_map_t){0};
}

// The slot holding key (len bytes), or the empty slot where it would go.
static size_t
s_map_slot(const wp_map_t *m, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037u;   // FNV-1a
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char) wp_fold(key[i], m->fold)) * 1099511628211u;
    }
    for (size_t slot = (size_t) h & m->mask;; slot = (slot + 1) & m->mask) {
        const char *k = m->keys[slot];
        if (!k) {
            return slot;
        }
        size_t i = 0;
        while (i < len && k[i]
               && wp_fold(k[i], m->fold) == wp_fold(key[i], m->fold)) {
            i++;
        }
        if (i == len && k[i] == '\0') {
            return slot;
        }
    }
}

size_t
wp_map_find(const wp_map_t *m, const char *key, size_t len)
{
    size_t slot = s_map_slot(m, key, len);
    return m->keys[slot] ? m->vals[slot] : WP_NONE;
}

size_t
wp_map_add(wp_map_t *m, const char *key, size_t val)
{
    size_t slot = s_map_slot(m, key, strlen(key));
    if (m->keys[slot]) {
        return m->vals[slot];
    }
    m->keys[slot] = key;
    m->vals[slot] = val;
    return WP_NONE;
}

struct wp_ids {
    wp_map_t map;
};

wp_ids_t *
workplan_ids_new(const workplan_t *wp)
{
    assert(wp);
    wp_ids_t *self = xcalloc(1, sizeof *self);
    wp_map_init(&self->map, wp->n_tasks, false);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        (void) wp_map_add(&self->map, wp->tasks[i].id, i);
    }
    return self;
}

void
workplan_ids_destroy(wp_ids_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    wp_map_release(&(*self_p)->map);
    free(*self_p);
    *self_p = NULL;
}

long
workplan_ids_find(const wp_ids_t *self, const char *id)
{
    assert(self && id);
    size_t i = wp_map_find(&self->map, id, strlen(id));
    return i == WP_NONE ? -1 : (long) i;
}

// --- pass 2: links ---------------------------------------------------------

static void
s_link_one(wp_ctx_t *ctx, size_t i, size_t j)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    const char *name = task->needs[j];
    char shown[WP_SHOW_MAX + 4];
    size_t idx = wp_map_find(&ctx->ids, name, strlen(name));
    if (idx == WP_NONE) {
        wp_err(ctx, "'%s' is not a task in this workplan",
               wp_show(shown, name, strlen(name)));
        if (ctx->n_missing < WP_MAX_ERRORS) {
            ctx->missing[ctx->n_missing++] = name;
        }
        return;
    }
    wp_stamp_t *st = &ctx->stamps[idx];
    if (st->task == i + 1) {
        wp_err(ctx, "duplicate need '%s' (first at tasks[%zu].needs[%zu])",
               wp_show(shown, name, strlen(name)), i, st->pos);
        return;
    }
    *st = (wp_stamp_t){.task = i + 1, .pos = j};
    if (idx == i || (task->id && strcmp(task->id, name) == 0)) {
        wp_err(ctx, "a task cannot need itself");
        return;
    }
    task->need_idx[j] = idx;
}

static void
s_link_needs(wp_ctx_t *ctx, size_t i)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    ctx->n_missing = 0;
    if (task->n_needs == 0) {
        return;
    }
    task->need_idx = wp_pool_alloc(ctx->wp->pool,
                                   task->n_needs * sizeof *task->need_idx);
    size_t old = wp_push_key(ctx, "needs");
    for (size_t j = 0; j < task->n_needs; j++) {
        task->need_idx[j] = WP_NONE;
        if (task->needs[j]) {
            size_t o2 = wp_push_idx(ctx, j);
            s_link_one(ctx, i, j);
            wp_pop(ctx, o2);
        }
    }
    wp_pop(ctx, old);
}

// Whether task i lists id (len bytes) in its needs; valid right after
// s_link_needs(ctx, i).
static bool
s_lists_need(const wp_ctx_t *ctx, size_t i, const char *id, size_t len)
{
    size_t idx = wp_map_find(&ctx->ids, id, len);
    if (idx != WP_NONE) {
        return ctx->stamps[idx].task == i + 1;
    }
    for (size_t k = 0; k < ctx->n_missing; k++) {
        const char *m = ctx->missing[k];
        if (strncmp(m, id, len) == 0 && m[len] == '\0') {
            return true;
        }
    }
    return false;
}

static void
s_check_template(wp_ctx_t *ctx, size_t i, const char *text)
{
    wp_tok_t tok;
    for (const char *s = wp_tok_next(text, &tok);
         tok.kind != WP_TOK_END && !wp_full(ctx); s = wp_tok_next(s, &tok)) {
        if (tok.kind == WP_TOK_BAD || tok.kind == WP_TOK_UNCLOSED) {
            char *msg = wp_tok_error(&tok);
            wp_err(ctx, "%s", msg);
            free(msg);
        } else if (tok.kind == WP_TOK_REF
                   && !s_lists_need(ctx, i, tok.id, tok.id_len)) {
            wp_err(ctx,
                   "'%.*s' refers to '%.*s', which this task does not need",
                   (int) tok.len, tok.p, (int) tok.id_len, tok.id);
        }
    }
}

static void
s_check_templates(wp_ctx_t *ctx, size_t i)
{
    const wp_task_t *task = &ctx->wp->tasks[i];
    if (task->argv) {
        size_t old = wp_push_key(ctx, "run");
        for (size_t k = 0; k < task->n_argv; k++) {
            if (task->argv[k]) {
                size_t o2 = wp_push_idx(ctx, k);
                s_check_template(ctx, i, task->argv[k]);
                wp_pop(ctx, o2);
            }
        }
        wp_pop(ctx, old);
    }
    if (task->prompt) {
        size_t old = wp_push_key(ctx, "prompt");
        s_check_template(ctx, i, task->prompt);
        wp_pop(ctx, old);
    }
}

// Two needs whose WAGGLE_INPUT_ names are equal ("a-b", "A_B") cannot both
// reach the task through its environment.
static void
s_check_inputs(wp_ctx_t *ctx, size_t i)
{
    const wp_task_t *task = &ctx->wp->tasks[i];
    if (task->n_needs < 2) {
        return;
    }
    wp_map_t vars;
    wp_map_init(&vars, task->n_needs, true);
    size_t old = wp_push_key(ctx, "needs");
    for (size_t j = 0; j < task->n_needs; j++) {
        const char *name = task->needs[j];
        if (!name || !wp_id_ok(name, strlen(name))) {
            continue;
        }
        size_t first = wp_map_add(&vars, name, j);
        if (first != WP_NONE && strcmp(task->needs[first], name) != 0) {
            size_t o2 = wp_push_idx(ctx, j);
            char *var = workplan_input_var(name);
            wp_err(ctx, "'%s' and '%s' both become %s", task->needs[first],
                   name, var);
            free(var);
            wp_pop(ctx, o2);
        }
    }
    wp_pop(ctx, old);
    wp_map_release(&vars);
}

void
wp_graph_link(wp_ctx_t *ctx)
{
    size_t n = ctx->wp->n_tasks;
    ctx->stamps = xcalloc(n, sizeof *ctx->stamps);
    size_t old = wp_push_key(ctx, "tasks");
    for (size_t i = 0; i < n; i++) {
        size_t o2 = wp_push_idx(ctx, i);
        s_link_needs(ctx, i);
        if (!wp_full(ctx)) {
            s_check_templates(ctx, i);
            s_check_inputs(ctx, i);
        }
        wp_pop(ctx, o2);
    }
    wp_pop(ctx, old);
}

// --- pass 3: cycles --------------------------------------------------------

typedef struct {
    size_t task;
    size_t next;            // index into the task's needs to follow next
} s_frame_t;

typedef struct {
    uint8_t *color;         // per task: 0 unseen, 1 on the stack, 2 done
    size_t *depth;          // per task on the stack: its frame
    s_frame_t *stack;       // the current path; frame k needs frame k + 1
    size_t top;             // frames in use
} s_dfs_t;

// Appends the id of the task in frame k to msg, quoted safely.
static void
s_cycle_add(wp_buf_t *msg, const wp_ctx_t *ctx, const s_dfs_t *d, size_t k)
{
    char shown[WP_SHOW_MAX + 4];
    const char *id = ctx->wp->tasks[d->stack[k].task].id;
    wp_buf_adds(msg, wp_show(shown, id, strlen(id)));
}

// Reports the cycle stack[from..top-1] (whose last frame needs the first),
// named from the task written first, at the need that leaves it.
static void
s_report_cycle(wp_ctx_t *ctx, const s_dfs_t *d, size_t from)
{
    size_t len = d->top - from, start = from;
    for (size_t k = from; k < d->top; k++) {
        start = d->stack[k].task < d->stack[start].task ? k : start;
    }
    size_t named = len < S_CYCLE_SHOWN ? len : S_CYCLE_SHOWN;
    wp_buf_t msg = {0};
    wp_buf_adds(&msg, "cycle: ");
    for (size_t n = 0; n < named; n++) {
        s_cycle_add(&msg, ctx, d, from + (start - from + n) % len);
        wp_buf_adds(&msg, " -> ");
    }
    if (named < len) {
        char more[64];
        snprintf(more, sizeof more, "... (%zu more) -> ", len - named);
        wp_buf_adds(&msg, more);
    }
    s_cycle_add(&msg, ctx, d, start);
    size_t old = wp_push_key(ctx, "tasks");
    wp_push_idx(ctx, d->stack[start].task);
    wp_push_key(ctx, "needs");
    wp_push_idx(ctx, d->stack[start].next - 1);
    wp_err(ctx, "%s", msg.p);
    wp_pop(ctx, old);
    free(msg.p);
}

static void
s_dfs(wp_ctx_t *ctx, s_dfs_t *d, size_t root)
{
    const wp_task_t *tasks = ctx->wp->tasks;
    d->stack[0] = (s_frame_t){.task = root};
    d->top = 1;
    d->color[root] = 1;
    d->depth[root] = 0;
    while (d->top > 0) {
        s_frame_t *f = &d->stack[d->top - 1];
        const wp_task_t *t = &tasks[f->task];
        if (f->next == t->n_needs) {
            d->color[f->task] = 2;
            d->top--;
            continue;
        }
        size_t v = t->need_idx[f->next++];
        if (v == WP_NONE || d->color[v] == 2) {
            continue;
        }
        if (d->color[v] == 1) {
            if (!wp_full(ctx)) {
                s_report_cycle(ctx, d, d->depth[v]);
            }
            continue;
        }
        d->color[v] = 1;
        d->depth[v] = d->top;
        d->stack[d->top++] = (s_frame_t){.task = v};
    }
}

// Each back edge of the search closes one cycle, so each is reported once.
void
wp_graph_cycles(wp_ctx_t *ctx)
{
    size_t n = ctx->wp->n_tasks;
    s_dfs_t d = {
        .color = xcalloc(n, sizeof *d.color),
        .depth = xcalloc(n, sizeof *d.depth),
        .stack = xcalloc(n, sizeof *d.stack),
    };
    for (size_t i = 0; i < n; i++) {
        if (d.color[i] == 0) {
            s_dfs(ctx, &d, i);
        }
    }
    free(d.color);
    free(d.depth);
    free(d.stack);
}
