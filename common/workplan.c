// workplan: parse and validate a workplan from JSON into workplan_t, and
// own the plan's lifecycle and its errors.
//
// Validation runs in three passes so that every error is found in one go:
//   1. shape (here): each field of the plan, the defaults and every task is
//      checked for type, range and grammar, and ids go into a hash;
//   2. links (workplan_graph.c): needs are resolved through the hash
//      (missing, duplicate, self), templates are checked against the task's
//      needs, WAGGLE_INPUT_ names are checked for collisions;
//   3. cycles (workplan_graph.c): an iterative depth-first search over the
//      resolved needs.
// This file also owns the validation context the passes share (errors, the
// JSON path; workplan_int.h) and the small text helpers.  Every pass is
// linear in the size of the plan.  The JSON library is reached only through
// common/json.h.  Pure: no I/O, no logging, no clock.
#include "common/workplan.h"

#include "common/json.h"
#include "common/workplan_int.h"
#include "common/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A 1M-task plan holds a million of these: keep an eye on growth.
_Static_assert(sizeof(void *) != 8 || sizeof(wp_task_t) <= 152,
               "wp_task_t grew past 152 bytes");

#define S_NAME_MAX 128
#define S_TIMEOUT_MAX 604800        // one week
#define S_PRIORITY_MAX 1000
#define S_TAG_MAX 64

// --- text helpers ----------------------------------------------------------

void
wp_buf_add(wp_buf_t *b, const char *s, size_t n)
{
    json_out_raw(b, s, n);
}

void
wp_buf_adds(wp_buf_t *b, const char *s)
{
    wp_buf_add(b, s, strlen(s));
}

char *
wp_buf_take(wp_buf_t *b)
{
    return json_out_take(b, NULL);
}

const char *
wp_show(char out[WP_SHOW_MAX + 4], const char *s, size_t len)
{
    size_t n = len;
    if (n > WP_SHOW_MAX) {
        n = WP_SHOW_MAX;
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (unsigned char) s[i] < 0x20 || s[i] == 0x7F ? '?' : s[i];
    }
    strcpy(out + n, n < len ? "..." : "");
    return out;
}

// --- grammar ---------------------------------------------------------------

static bool
s_is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9');
}

// [A-Za-z0-9_][A-Za-z0-9_-]{0,63}
bool
wp_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > WORKPLAN_ID_MAX || s[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!s_is_alnum(s[i]) && s[i] != '_' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

// [A-Za-z0-9_.:-]{1,64}
static bool
s_tag_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > S_TAG_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!s_is_alnum(s[i]) && !strchr("_.:-", s[i])) {
            return false;
        }
    }
    return true;
}

// [A-Za-z_][A-Za-z0-9_]*
static bool
s_env_key_ok(const char *s)
{
    if (!*s || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (; *s; s++) {
        if (!s_is_alnum(*s) && *s != '_') {
            return false;
        }
    }
    return true;
}

static size_t
s_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        n += ((unsigned char) *s & 0xC0) != 0x80;
    }
    return n;
}

// --- validation context ----------------------------------------------------

// The JSON path of the current node, written out: kept as segments while
// checking (a 100k-task plan pushes a million of them, formatting each was
// a third of the parse) and only written when an error needs it.
static char *
s_path(const wp_ctx_t *ctx)
{
    wp_buf_t b = {0};
    for (size_t i = 0; i < ctx->n_segs; i++) {
        const wp_seg_t *s = &ctx->segs[i];
        if (!s->key) {
            char idx[32];
            snprintf(idx, sizeof idx, "[%zu]", s->idx);
            wp_buf_adds(&b, idx);
            continue;
        }
        bool plain = *s->key != '\0';
        for (const char *c = s->key; *c; c++) {
            plain = plain && (s_is_alnum(*c) || *c == '_' || *c == '-');
        }
        if (!plain) {
            char *q = json_quote(s->key);
            wp_buf_adds(&b, "[");
            wp_buf_adds(&b, q);
            wp_buf_adds(&b, "]");
            free(q);
            continue;
        }
        if (b.len > 0) {
            wp_buf_adds(&b, ".");
        }
        wp_buf_adds(&b, s->key);
    }
    return wp_buf_take(&b);
}

void
wp_err(wp_ctx_t *ctx, const char *fmt, ...)
{
    if (ctx->n_added >= WP_MAX_ERRORS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    wp_errors_t *errs = ctx->errs;
    errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof *errs->items);
    errs->items[errs->count++] = (wp_error_t){.path = s_path(ctx),
                                              .message = msg};
    ctx->n_added++;
}

bool
wp_full(const wp_ctx_t *ctx)
{
    return ctx->n_added >= WP_MAX_ERRORS;
}

static size_t
s_push(wp_ctx_t *ctx, const char *key, size_t idx)
{
    if (ctx->n_segs == ctx->cap_segs) {
        ctx->cap_segs = ctx->cap_segs ? ctx->cap_segs * 2 : 16;
        ctx->segs = xrealloc(ctx->segs, ctx->cap_segs * sizeof *ctx->segs);
    }
    ctx->segs[ctx->n_segs] = (wp_seg_t){.key = key, .idx = idx};
    return ctx->n_segs++;
}

size_t
wp_push_key(wp_ctx_t *ctx, const char *key)
{
    assert(key);
    return s_push(ctx, key, 0);
}

size_t
wp_push_idx(wp_ctx_t *ctx, size_t i)
{
    return s_push(ctx, NULL, i);
}

void
wp_pop(wp_ctx_t *ctx, size_t old)
{
    assert(old <= ctx->n_segs);
    ctx->n_segs = old;
}

// --- types -----------------------------------------------------------------

static const char *
s_type_name(json_type_t t)
{
    switch (t) {
    case JSON_T_OBJECT:
        return "an object";
    case JSON_T_ARRAY:
        return "an array";
    case JSON_T_STRING:
        return "a string";
    case JSON_T_INTEGER:
    case JSON_T_REAL:
        return "a number";
    case JSON_T_BOOL:
        return "a boolean";
    case JSON_T_NULL:
        break;
    }
    return "null";
}

// True when val has type want; otherwise reports the mismatch.
static bool
s_want(wp_ctx_t *ctx, const jval_t *val, json_type_t want)
{
    json_type_t got = jval_type(val);
    if (got == want) {
        return true;
    }
    if (want == JSON_T_INTEGER && got == JSON_T_REAL) {
        wp_err(ctx, "expected an integer, found a real number");
    } else {
        wp_err(ctx, "expected %s, found %s",
               want == JSON_T_INTEGER ? "an integer" : s_type_name(want),
               s_type_name(got));
    }
    return false;
}

// A new copy of a non-empty string value, or NULL after reporting.
static char *
s_nonempty_str(wp_ctx_t *ctx, const jval_t *val)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return NULL;
    }
    if (jval_len(val) == 0) {
        wp_err(ctx, "must not be empty");
    }
    return wp_pool_str(ctx->wp->pool, jval_str(val), jval_len(val));
}

// True with *v an integer from min to max; otherwise reports.
static bool
s_int_ok(wp_ctx_t *ctx, const jval_t *val, int64_t min, int64_t max,
         int64_t *v)
{
    if (!s_want(ctx, val, JSON_T_INTEGER)) {
        return false;
    }
    *v = jval_int(val);
    if (*v < min || *v > max) {
        wp_err(ctx, "must be from %" PRId64 " to %" PRId64 ", found %" PRId64,
               min, max, *v);
        return false;
    }
    return true;
}

// s_int_ok into a task's 32-bit field (every task range fits).
static void
s_int_in(wp_ctx_t *ctx, const jval_t *val, int32_t min, int32_t max,
         int32_t *dst)
{
    int64_t v;
    if (s_int_ok(ctx, val, min, max, &v)) {
        *dst = (int32_t) v;
    }
}

// Copies an array of strings into the pool: non-strings are reported and
// left NULL.  intern: the strings and the array may be shared with other
// tasks (run lines, tags), else each is copied (ids in needs: unique).
// An empty array is a non-NULL pointer to nothing.
static char **
s_strings(wp_ctx_t *ctx, const jval_t *val, uint32_t *n_out, bool intern)
{
    *n_out = 0;
    if (!s_want(ctx, val, JSON_T_ARRAY)) {
        return NULL;
    }
    wp_pool_t *pool = ctx->wp->pool;
    size_t n = jval_size(val);
    char *small[16];
    char **v = n <= 16 ? small : xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const jval_t *item = jval_at(val, i);
        size_t old = wp_push_idx(ctx, i);
        v[i] = NULL;
        if (s_want(ctx, item, JSON_T_STRING)) {
            v[i] = intern ? wp_pool_str(pool, jval_str(item), jval_len(item))
                          : wp_pool_copy(pool, jval_str(item), jval_len(item));
        }
        wp_pop(ctx, old);
    }
    char **out = n == 0   ? wp_pool_alloc(pool, 0)
                 : intern ? wp_pool_strv(pool, v, n)
                          : memcpy(wp_pool_alloc(pool, n * sizeof *v), v,
                                   n * sizeof *v);
    if (v != small) {
        free(v);
    }
    *n_out = (uint32_t) n;        // a document's arrays fit 32 bits
    return out;
}

// A plan built by hand owns each string and array (workplan.h).
static void
s_strings_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

// --- pass 1: fields --------------------------------------------------------

enum {
    S_F_ID = 1 << 0,
    S_F_NEEDS = 1 << 1,
    S_F_RUN = 1 << 2,
    S_F_PROMPT = 1 << 3,
    S_F_GATE = 1 << 4,
    S_F_ENV = 1 << 5,
    S_F_CWD = 1 << 6,
    S_F_TIMEOUT = 1 << 7,
    S_F_RETRIES = 1 << 8,
    S_F_PRIORITY = 1 << 9,
    S_F_REQUIRES = 1 << 10,
    S_F_MODEL = 1 << 11,
    S_F_LIMITS = 1 << 12,
    S_F_SYSTEM = 1 << 13,
    S_F_MAX_TOKENS = 1 << 14,
    S_F_TEMPERATURE = 1 << 15,
};
// Fields only a prompt task takes.
#define S_F_PROMPT_ONLY                                                       \
    (S_F_MODEL | S_F_SYSTEM | S_F_MAX_TOKENS | S_F_TEMPERATURE)
#define S_F_KINDS (S_F_RUN | S_F_PROMPT | S_F_GATE)
#define S_F_DEFAULTS                                                          \
    (S_F_TIMEOUT | S_F_RETRIES | S_F_PRIORITY | S_F_REQUIRES | S_F_LIMITS)

static void
s_f_id(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return;
    }
    char shown[WP_SHOW_MAX + 4];
    if (!wp_id_ok(jval_str(val), jval_len(val))) {
        wp_err(ctx, "'%s' is not a valid id (1 to 64 letters, digits, '_' or "
                    "'-', not starting with '-')",
               wp_show(shown, jval_str(val), jval_len(val)));
    }
    // Kept even when invalid, so that needs naming it resolve.
    task->id = wp_pool_copy(ctx->wp->pool, jval_str(val), jval_len(val));
}

static void
s_f_needs(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->needs = s_strings(ctx, val, &task->n_needs, false);
}

static void
s_f_run(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->kind = WP_KIND_RUN;
    task->argv = s_strings(ctx, val, &task->n_argv, true);
    if (task->argv && task->n_argv == 0) {
        wp_err(ctx, "must hold at least the program to run");
    } else if (task->argv && task->argv[0] && !task->argv[0][0]) {
        size_t old = wp_push_idx(ctx, 0);
        wp_err(ctx, "the program name must not be empty");
        wp_pop(ctx, old);
    }
}

static void
s_f_prompt(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->kind = WP_KIND_PROMPT;
    task->prompt = s_nonempty_str(ctx, val);
}

static void
s_f_gate(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->kind = WP_KIND_GATE;
    task->gate = s_nonempty_str(ctx, val);
}

static int
s_env_cmp(const void *a, const void *b)
{
    return strcmp(((const wp_env_t *) a)->key, ((const wp_env_t *) b)->key);
}

static void
s_f_env(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    if (!s_want(ctx, val, JSON_T_OBJECT)) {
        return;
    }
    wp_pool_t *pool = ctx->wp->pool;
    task->env = wp_pool_alloc(pool, jval_size(val) * sizeof *task->env);
    char shown[WP_SHOW_MAX + 4];
    for (size_t m = 0; m < jval_size(val); m++) {
        const char *key = jval_key(val, m);
        const jval_t *v = jval_at(val, m);
        size_t old = wp_push_key(ctx, key);
        if (!s_env_key_ok(key)) {
            wp_err(ctx, "'%s' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                   wp_show(shown, key, strlen(key)));
        } else if (strncmp(key, "WAGGLE_", 7) == 0) {
            wp_err(ctx, "variables starting with WAGGLE_ are reserved");
        }
        if (s_want(ctx, v, JSON_T_STRING)) {
            task->env[task->n_env++] = (wp_env_t){
                wp_pool_str(pool, key, strlen(key)),
                wp_pool_str(pool, jval_str(v), jval_len(v))};
        }
        wp_pop(ctx, old);
    }
    // Sorted here, not only in the canonical text, so that a plan parsed
    // back from its canonical JSON is equal field by field.
    qsort(task->env, task->n_env, sizeof *task->env, s_env_cmp);
}

static void
s_f_cwd(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->cwd = s_nonempty_str(ctx, val);
}

static void
s_f_timeout(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, 0, S_TIMEOUT_MAX, &task->timeout_s);
}

static void
s_f_retries(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, 0, WORKPLAN_MAX_RETRIES, &task->retries);
}

static void
s_f_priority(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, -S_PRIORITY_MAX, S_PRIORITY_MAX, &task->priority);
}

static void
s_f_requires(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->requires = s_strings(ctx, val, &task->n_requires, true);
    char shown[WP_SHOW_MAX + 4];
    for (size_t i = 0; i < task->n_requires; i++) {
        const char *tag = task->requires[i];
        if (tag && !s_tag_ok(tag)) {
            size_t old = wp_push_idx(ctx, i);
            wp_err(ctx, "'%s' is not a valid tag (1 to 64 letters, digits or "
                        "'_.:-')",
                   wp_show(shown, tag, strlen(tag)));
            wp_pop(ctx, old);
        }
    }
}

static void
s_f_model(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->model = s_nonempty_str(ctx, val);
}

static void
s_f_system(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    task->system = s_nonempty_str(ctx, val);
}

static void
s_f_max_tokens(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, 1, WORKPLAN_MAX_TOKENS, &task->max_tokens);
}

// 0..2, the range both OpenAI and Anthropic accept.
static void
s_f_temperature(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    json_type_t t = jval_type(val);
    if (t != JSON_T_INTEGER && t != JSON_T_REAL) {
        wp_err(ctx, "expected a number from 0 to 2");
        return;
    }
    double v = jval_num(val);
    if (!(v >= 0.0 && v <= 2.0)) {
        wp_err(ctx, "must be from 0 to 2, found %g", v);
        return;
    }
    task->temperature = v;
    task->has_temperature = true;
}

static const struct {
    const char *name;
    size_t offset;
    int32_t max;
} s_limit_keys[] = {
    {"as_mb", offsetof(wp_limits_t, as_mb), WORKPLAN_MAX_AS_MB},
    {"nofile", offsetof(wp_limits_t, nofile), WORKPLAN_MAX_NOFILE},
    {"nproc", offsetof(wp_limits_t, nproc), WORKPLAN_MAX_NPROC},
    {"cpu_s", offsetof(wp_limits_t, cpu_s), WORKPLAN_MAX_CPU_S},
};
#define S_N_LIMIT_KEYS (sizeof s_limit_keys / sizeof s_limit_keys[0])

// "limits": {"as_mb": N, "nofile": N, "nproc": N, "cpu_s": N}, each
// optional and at least 1 (leave a key out for the drone's own limit).
static void
s_f_limits(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task)
{
    if (!s_want(ctx, val, JSON_T_OBJECT)) {
        return;
    }
    char shown[WP_SHOW_MAX + 4];
    for (size_t m = 0; m < jval_size(val); m++) {
        const char *key = jval_key(val, m);
        const jval_t *v = jval_at(val, m);
        size_t k = 0;
        while (k < S_N_LIMIT_KEYS && strcmp(s_limit_keys[k].name, key) != 0) {
            k++;
        }
        size_t old = wp_push_key(ctx, key);
        if (k == S_N_LIMIT_KEYS) {
            wp_err(ctx, "unknown field '%s' (known: as_mb, nofile, nproc, "
                        "cpu_s)", wp_show(shown, key, strlen(key)));
        } else {
            s_int_in(ctx, v, 1, s_limit_keys[k].max,
                     (int32_t *) ((char *) &task->limits
                                  + s_limit_keys[k].offset));
        }
        wp_pop(ctx, old);
    }
}

typedef void (*s_field_fn)(wp_ctx_t *ctx, const jval_t *val, wp_task_t *task);

static const struct {
    const char *name;
    unsigned bit;
    s_field_fn fn;
} s_fields[] = {
    {"id", S_F_ID, s_f_id},
    {"needs", S_F_NEEDS, s_f_needs},
    {"run", S_F_RUN, s_f_run},
    {"prompt", S_F_PROMPT, s_f_prompt},
    {"gate", S_F_GATE, s_f_gate},
    {"env", S_F_ENV, s_f_env},
    {"cwd", S_F_CWD, s_f_cwd},
    {"timeout_s", S_F_TIMEOUT, s_f_timeout},
    {"retries", S_F_RETRIES, s_f_retries},
    {"priority", S_F_PRIORITY, s_f_priority},
    {"requires", S_F_REQUIRES, s_f_requires},
    {"model", S_F_MODEL, s_f_model},
    {"limits", S_F_LIMITS, s_f_limits},
    {"system", S_F_SYSTEM, s_f_system},
    {"max_tokens", S_F_MAX_TOKENS, s_f_max_tokens},
    {"temperature", S_F_TEMPERATURE, s_f_temperature},
};

// Parses the members of obj that `allowed` names into task, reporting the
// others; sets ctx->seen to the fields present.
static void
s_parse_fields(wp_ctx_t *ctx, const jval_t *obj, unsigned allowed,
               wp_task_t *task)
{
    const size_t n_fields = sizeof s_fields / sizeof s_fields[0];
    char shown[WP_SHOW_MAX + 4];
    ctx->seen = 0;
    for (size_t m = 0; m < jval_size(obj); m++) {
        const char *key = jval_key(obj, m);
        const jval_t *val = jval_at(obj, m);
        size_t old = wp_push_key(ctx, key);
        size_t f = 0;
        while (f < n_fields && strcmp(s_fields[f].name, key) != 0) {
            f++;
        }
        if (f == n_fields || !(s_fields[f].bit & allowed)) {
            wp_err(ctx, "unknown field '%s'", wp_show(shown, key, strlen(key)));
        } else {
            ctx->seen |= s_fields[f].bit;
            s_fields[f].fn(ctx, val, task);
        }
        wp_pop(ctx, old);
    }
}

// --- pass 1: the plan and its tasks ----------------------------------------

static void
s_check_kind(wp_ctx_t *ctx, wp_task_t *task)
{
    static const char *const base =
        "a task needs exactly one of 'run', 'prompt' or 'gate'";
    unsigned kinds = ctx->seen & S_F_KINDS;
    if (kinds == 0) {
        wp_err(ctx, "%s", base);
    } else if (kinds == S_F_KINDS) {
        wp_err(ctx, "%s, found all three", base);
    } else if (kinds & (kinds - 1)) {
        wp_err(ctx, "%s, found '%s' and '%s'", base,
               kinds & S_F_RUN ? "run" : "prompt",
               kinds & S_F_GATE ? "gate" : "prompt");
    } else if ((ctx->seen & S_F_PROMPT_ONLY) && task->kind != WP_KIND_PROMPT) {
        static const char *const names[] = {"model", "system", "max_tokens",
                                            "temperature"};
        static const char *const what[] = {"a model", "a system message",
                                           "max_tokens", "a temperature"};
        static const unsigned bits[] = {S_F_MODEL, S_F_SYSTEM, S_F_MAX_TOKENS,
                                        S_F_TEMPERATURE};
        for (size_t i = 0; i < 4; i++) {
            if (!(ctx->seen & bits[i])) {
                continue;
            }
            size_t old = wp_push_key(ctx, names[i]);
            wp_err(ctx, "only prompt tasks take %s, and this is a %s task",
                   what[i], workplan_kind_name(task->kind));
            wp_pop(ctx, old);
        }
    }
}

static bool
s_has_tag(const wp_task_t *task, const char *tag)
{
    for (size_t i = 0; i < task->n_requires; i++) {
        if (task->requires[i] && strcmp(task->requires[i], tag) == 0) {
            return true;
        }
    }
    return false;
}

// Adds tag (in the pool) to requires unless it is there: a new array, as
// the old one may be shared.
static void
s_add_tag(wp_ctx_t *ctx, wp_task_t *task, char *tag)
{
    if (s_has_tag(task, tag)) {
        return;
    }
    char **req = wp_pool_alloc(ctx->wp->pool,
                               (task->n_requires + 1) * sizeof *req);
    if (task->n_requires > 0) {
        memcpy(req, task->requires, task->n_requires * sizeof *req);
    }
    req[task->n_requires++] = tag;
    task->requires = req;
}

// A prompt task requires the tag "model", and "model:NAME" when it names
// a model, so it goes only to drones that offer one (and submit warns when
// none does).  Added after defaults, once: the canonical text holds them,
// and parsing it back adds nothing.
static void
s_imply_model_tags(wp_ctx_t *ctx, wp_task_t *task)
{
    if (task->kind != WP_KIND_PROMPT) {
        return;
    }
    wp_pool_t *pool = ctx->wp->pool;
    s_add_tag(ctx, task, wp_pool_str(pool, WORKPLAN_MODEL_TAG,
                                     strlen(WORKPLAN_MODEL_TAG)));
    if (!task->model) {
        return;
    }
    char *tag = xasprintf(WORKPLAN_MODEL_TAG ":%s", task->model);
    if (!s_tag_ok(tag)) {
        char shown[WP_SHOW_MAX + 4];
        size_t old = wp_push_key(ctx, "model");
        wp_err(ctx, "'%s' cannot name a model: 'model:' and the name must "
                    "be a valid tag (up to 64 letters, digits or '_.:-')",
               wp_show(shown, task->model, strlen(task->model)));
        wp_pop(ctx, old);
    } else {
        s_add_tag(ctx, task, wp_pool_str(pool, tag, strlen(tag)));
    }
    free(tag);
}

// Bytes one argument or variable takes in exec's argument space; 0 when
// it is missing (a type error already reported).
static size_t
s_exec_len(const char *a, const char *b)
{
    return !a ? 0 : b ? strlen(a) + 1 + strlen(b) + 1 : strlen(a) + 1;
}

// Reports each item of a string list (run, or env as NAME=value) over what
// exec takes for one; returns the bytes of all of them.
static size_t
s_check_exec_items(wp_ctx_t *ctx, const wp_task_t *task, bool env)
{
    size_t n = env ? task->n_env : task->n_argv, total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = env ? task->env[i].key : task->argv[i];
        size_t len = s_exec_len(a, env ? task->env[i].value : NULL);
        total += len;
        if (len <= WORKPLAN_MAX_ARG_BYTES) {
            continue;
        }
        size_t old = env ? wp_push_key(ctx, a) : wp_push_idx(ctx, i);
        wp_err(ctx, "%zu bytes; %s takes at most %d", len - 1,
               env ? "a variable" : "an argument", WORKPLAN_MAX_ARG_BYTES - 1);
        wp_pop(ctx, old);
    }
    return total;
}

// A run task that exec could never start (E2BIG), or whose TASK a drone
// could not decode (PROTOCOL.md 10: 1,000,000 objects), is refused here
// rather than pushed to drone after drone until its retries are gone.
static void
s_check_exec(wp_ctx_t *ctx, const wp_task_t *task)
{
    static const struct {
        const char *field;
        size_t max;
        const char *what;
    } counts[2] = {{"run", WORKPLAN_MAX_ARGV, "items"},
                   {"env", WORKPLAN_MAX_ENV, "variables"}};
    size_t total = 0;
    for (int k = 0; k < 2; k++) {
        size_t n = k ? task->n_env : task->n_argv;
        size_t old = wp_push_key(ctx, counts[k].field);
        if (n > counts[k].max) {
            wp_err(ctx, "at most %zu %s, found %zu", counts[k].max,
                   counts[k].what, n);
        } else {
            total += s_check_exec_items(ctx, task, k == 1);
        }
        wp_pop(ctx, old);
    }
    if (total > WORKPLAN_MAX_EXEC_BYTES) {
        wp_err(ctx, "run and env take %zu bytes; exec takes at most %d",
               total, WORKPLAN_MAX_EXEC_BYTES);
    }
}

static void
s_apply_defaults(wp_ctx_t *ctx, wp_task_t *task)
{
    const wp_task_t *d = &ctx->defaults;
    if (!(ctx->seen & S_F_TIMEOUT)) {
        // A gate waits for a person: only its own timeout_s rejects it.
        task->timeout_s = task->kind == WP_KIND_GATE ? 0 : d->timeout_s;
    }
    if (!(ctx->seen & S_F_RETRIES)) {
        task->retries = d->retries;
    }
    if (!(ctx->seen & S_F_PRIORITY)) {
        task->priority = d->priority;
    }
    for (size_t k = 0; k < S_N_LIMIT_KEYS; k++) {
        size_t off = s_limit_keys[k].offset;
        int32_t *mine = (int32_t *) ((char *) &task->limits + off);
        if (*mine == 0) {
            *mine = *(const int32_t *) ((const char *) &d->limits + off);
        }
    }
    if (!(ctx->seen & S_F_REQUIRES) && d->n_requires > 0) {
        // Shared: arrays in the pool are never changed in place.
        task->requires = d->requires;
        task->n_requires = d->n_requires;
    }
}

static void
s_parse_task(wp_ctx_t *ctx, size_t i, const jval_t *node)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    size_t old = wp_push_idx(ctx, i);
    if (!s_want(ctx, node, JSON_T_OBJECT)) {
        wp_pop(ctx, old);
        return;
    }
    s_parse_fields(ctx, node, ~0u, task);
    if (!(ctx->seen & S_F_ID)) {
        wp_err(ctx, "missing required field 'id'");
    }
    s_check_kind(ctx, task);
    s_check_exec(ctx, task);
    s_apply_defaults(ctx, task);
    s_imply_model_tags(ctx, task);
    size_t first = task->id ? wp_map_add(&ctx->ids, task->id, i) : WP_NONE;
    if (first != WP_NONE) {
        char shown[WP_SHOW_MAX + 4];
        size_t o2 = wp_push_key(ctx, "id");
        wp_err(ctx, "duplicate id '%s' (first at tasks[%zu])",
               wp_show(shown, task->id, strlen(task->id)), first);
        wp_pop(ctx, o2);
    }
    wp_pop(ctx, old);
}

static void
s_parse_tasks(wp_ctx_t *ctx, const jval_t *val)
{
    size_t old = wp_push_key(ctx, "tasks");
    size_t n = jval_size(val);
    if (!s_want(ctx, val, JSON_T_ARRAY)) {
        // Reported.
    } else if (n == 0) {
        wp_err(ctx, "a workplan needs at least one task");
    } else if (n > WORKPLAN_MAX_TASKS) {
        wp_err(ctx, "a workplan holds at most %d tasks, found %zu",
               WORKPLAN_MAX_TASKS, n);
    } else {
        workplan_t *wp = ctx->wp;
        wp->tasks = xcalloc(n, sizeof *wp->tasks);
        wp->n_tasks = n;
        wp_map_init(&ctx->ids, n, false);
        for (size_t i = 0; i < n; i++) {
            s_parse_task(ctx, i, jval_at(val, i));
        }
    }
    wp_pop(ctx, old);
}

static void
s_parse_name(wp_ctx_t *ctx, const jval_t *val)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return;
    }
    size_t n = s_utf8_chars(jval_str(val));
    if (n == 0 || n > S_NAME_MAX) {
        wp_err(ctx, "must be 1 to %d characters long, found %zu", S_NAME_MAX,
               n);
    }
    ctx->wp->name = xstrdup(jval_str(val));
}

// "budget": {"tokens": N}, N from 1 (0 in a stored plan) to
// WORKPLAN_MAX_BUDGET; nothing else.
static void
s_parse_budget(wp_ctx_t *ctx, const jval_t *val)
{
    if (!s_want(ctx, val, JSON_T_OBJECT)) {
        return;
    }
    char shown[WP_SHOW_MAX + 4];
    for (size_t m = 0; m < jval_size(val); m++) {
        const char *key = jval_key(val, m);
        const jval_t *v = jval_at(val, m);
        size_t old = wp_push_key(ctx, key);
        if (strcmp(key, "tokens") == 0) {
            int64_t tokens;
            if (s_int_ok(ctx, v, ctx->stored ? 0 : 1, WORKPLAN_MAX_BUDGET,
                         &tokens)) {
                ctx->wp->budget_tokens = tokens;
            }
            ctx->wp->has_budget = true;
        } else {
            wp_err(ctx, "unknown field '%s'", wp_show(shown, key, strlen(key)));
        }
        wp_pop(ctx, old);
    }
    if (!jval_get(val, "tokens")) {
        wp_err(ctx, "missing required field 'tokens'");
    }
}

// name and goal, and the unknown fields; defaults and tasks come after,
// whatever their place in the text, because tasks depend on defaults.
static void
s_parse_top(wp_ctx_t *ctx, const jval_t *root)
{
    char shown[WP_SHOW_MAX + 4];
    for (size_t m = 0; m < jval_size(root); m++) {
        const char *key = jval_key(root, m);
        const jval_t *val = jval_at(root, m);
        size_t old = wp_push_key(ctx, key);
        if (strcmp(key, "name") == 0) {
            s_parse_name(ctx, val);
        } else if (strcmp(key, "goal") == 0) {
            if (s_want(ctx, val, JSON_T_STRING)) {
                ctx->wp->goal = xstrdup(jval_str(val));
            }
        } else if (strcmp(key, "budget") == 0) {
            s_parse_budget(ctx, val);
        } else if (strcmp(key, "defaults") != 0 && strcmp(key, "tasks") != 0) {
            wp_err(ctx, "unknown field '%s'", wp_show(shown, key, strlen(key)));
        }
        wp_pop(ctx, old);
    }
}

static void
s_parse_root(wp_ctx_t *ctx, const jval_t *root)
{
    if (!s_want(ctx, root, JSON_T_OBJECT)) {
        return;
    }
    s_parse_top(ctx, root);
    if (!jval_get(root, "name")) {
        wp_err(ctx, "missing required field 'name'");
    }
    const jval_t *defaults = jval_get(root, "defaults");
    if (defaults) {
        size_t old = wp_push_key(ctx, "defaults");
        if (s_want(ctx, defaults, JSON_T_OBJECT)) {
            s_parse_fields(ctx, defaults, S_F_DEFAULTS, &ctx->defaults);
        }
        wp_pop(ctx, old);
    }
    const jval_t *tasks = jval_get(root, "tasks");
    if (!tasks) {
        wp_err(ctx, "missing required field 'tasks'");
    } else {
        s_parse_tasks(ctx, tasks);
    }
}

// --- the plan --------------------------------------------------------------

static void
s_task_release(wp_task_t *t)
{
    free(t->id);
    s_strings_free(t->needs, t->n_needs);
    free(t->need_idx);
    s_strings_free(t->argv, t->n_argv);
    free(t->prompt);
    free(t->gate);
    free(t->model);
    free(t->system);
    for (size_t i = 0; i < t->n_env; i++) {
        free(t->env[i].key);
        free(t->env[i].value);
    }
    free(t->env);
    free(t->cwd);
    s_strings_free(t->requires, t->n_requires);
}

void
workplan_destroy(workplan_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    workplan_t *self = *self_p;
    for (size_t i = 0; !self->pool && i < self->n_tasks; i++) {
        s_task_release(&self->tasks[i]);
    }
    wp_pool_destroy(&self->pool);
    free(self->tasks);
    free(self->name);
    free(self->goal);
    free(self);
    *self_p = NULL;
}

// A prompt task whose reservation (max_tokens, else the default) alone
// exceeds the plan's budget could never be dispatched: refused at submit.
static void
s_check_budget(wp_ctx_t *ctx)
{
    const workplan_t *wp = ctx->wp;
    if (!wp->has_budget || ctx->stored) {
        return;
    }
    for (size_t i = 0; i < wp->n_tasks; i++) {
        const wp_task_t *t = &wp->tasks[i];
        int64_t want = t->max_tokens > 0 ? t->max_tokens
                                         : WORKPLAN_DEFAULT_RESERVE;
        if (t->kind != WP_KIND_PROMPT || want <= wp->budget_tokens) {
            continue;
        }
        size_t old = wp_push_key(ctx, "tasks");
        size_t o2 = wp_push_idx(ctx, i);
        size_t o3 = wp_push_key(ctx, "max_tokens");
        wp_err(ctx, "reserves %" PRId64 " tokens%s, more than the plan's "
               "budget of %" PRId64 ": it could never run", want,
               t->max_tokens > 0 ? "" : " (the default, max_tokens unset)",
               wp->budget_tokens);
        wp_pop(ctx, o3);
        wp_pop(ctx, o2);
        wp_pop(ctx, old);
    }
}

static int
s_parse(const char *json, size_t len, bool stored, char **owned,
        workplan_t **out, wp_errors_t *errs)
{
    assert(out && errs);
    *out = NULL;
    wp_ctx_t ctx = {.errs = errs, .stored = stored};
    char jerr[256];
    jdoc_t *doc = jdoc_parse(json, len, jerr, sizeof jerr);
    if (owned) {
        free(*owned);
        *owned = NULL;
    }
    if (!doc) {
        wp_err(&ctx, "%s", jerr);
        return -1;
    }
    ctx.wp = xcalloc(1, sizeof *ctx.wp);
    ctx.wp->pool = wp_pool_new();
    ctx.defaults.timeout_s = WORKPLAN_DEFAULT_TIMEOUT_S;
    ctx.defaults.retries = WORKPLAN_DEFAULT_RETRIES;
    s_parse_root(&ctx, jdoc_root(doc));
    jdoc_destroy(&doc);
    s_check_budget(&ctx);
    if (ctx.wp->n_tasks > 0) {
        wp_graph_link(&ctx);
        wp_graph_cycles(&ctx);
    }
    free(ctx.segs);
    free(ctx.stamps);
    wp_map_release(&ctx.ids);
    if (ctx.n_added > 0) {
        workplan_destroy(&ctx.wp);
        return -1;
    }
    *out = ctx.wp;
    return 0;
}

int
workplan_parse(const char *json, size_t len, workplan_t **out,
               wp_errors_t *errs)
{
    return s_parse(json, len, false, NULL, out, errs);
}

int
workplan_parse_take(char **json_p, size_t len, bool stored, workplan_t **out,
                    wp_errors_t *errs)
{
    assert(json_p && *json_p);
    return s_parse(*json_p, len, stored, json_p, out, errs);
}

int
workplan_parse_stored(const char *json, size_t len, workplan_t **out,
                      wp_errors_t *errs)
{
    return s_parse(json, len, true, NULL, out, errs);
}

long
workplan_find(const workplan_t *wp, const char *id)
{
    assert(wp && id);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        if (strcmp(wp->tasks[i].id, id) == 0) {
            return (long) i;
        }
    }
    return -1;
}

const char *
workplan_kind_name(wp_kind_t kind)
{
    switch (kind) {
    case WP_KIND_RUN:
        return "run";
    case WP_KIND_PROMPT:
        return "prompt";
    case WP_KIND_GATE:
        return "gate";
    }
    return "unknown";
}

// --- errors ----------------------------------------------------------------

void
wp_errors_release(wp_errors_t *errs)
{
    if (!errs) {
        return;
    }
    for (size_t i = 0; i < errs->count; i++) {
        free(errs->items[i].path);
        free(errs->items[i].message);
    }
    free(errs->items);
    *errs = (wp_errors_t){0};
}

char *
wp_errors_format(const wp_errors_t *errs)
{
    assert(errs);
    wp_buf_t b = {0};
    for (size_t i = 0; i < errs->count; i++) {
        const wp_error_t *e = &errs->items[i];
        if (i > 0) {
            wp_buf_adds(&b, "\n");
        }
        if (e->path[0]) {
            wp_buf_adds(&b, e->path);
            wp_buf_adds(&b, ": ");
        }
        wp_buf_adds(&b, e->message);
    }
    return wp_buf_take(&b);
}
