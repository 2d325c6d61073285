// workplan: parse and validate a workplan, emit its canonical JSON, expand
// {{id.output}} templates.
//
// Validation runs in three passes so that every error is found in one go:
//   1. shape: each field of the plan, the defaults and every task is checked
//      for type, range and grammar, and ids go into a hash;
//   2. links: needs are resolved through the hash (missing, duplicate, self),
//      templates are checked against the task's needs, WAGGLE_INPUT_ names
//      are checked for collisions;
//   3. cycles: an iterative depth-first search over the resolved needs, so
//      a 100k-task chain costs no stack.
// Every pass is linear in the size of the plan.  The JSON library is reached
// only through common/json.h.  Pure: no I/O, no logging, no clock.
#include "common/workplan.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_ERRORS 100
#define S_NAME_MAX 128
#define S_TIMEOUT_MAX 604800        // one week
#define S_PRIORITY_MAX 1000
#define S_TAG_MAX 64
#define S_SHOW_MAX 64               // bytes of user text quoted in a message
#define S_CYCLE_SHOWN 12            // ids named before a long cycle is cut
#define S_NONE SIZE_MAX
#define S_INPUT_PREFIX "WAGGLE_INPUT_"

// --- growable string -------------------------------------------------------

typedef struct {
    char *p;                // NUL-terminated once anything was added
    size_t len;             // bytes before the NUL
    size_t cap;             // bytes allocated
} s_buf_t;

static void
s_buf_add(s_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
}

static void
s_buf_adds(s_buf_t *b, const char *s)
{
    s_buf_add(b, s, strlen(s));
}

static char *
s_buf_take(s_buf_t *b)
{
    char *p = b->p ? b->p : xstrdup("");
    *b = (s_buf_t){0};
    return p;
}

// Copies at most S_SHOW_MAX bytes of s into out for quoting in a message:
// control characters become '?', and a cut never splits a UTF-8 sequence.
static const char *
s_show(char out[S_SHOW_MAX + 4], const char *s, size_t len)
{
    size_t n = len;
    if (n > S_SHOW_MAX) {
        n = S_SHOW_MAX;
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

// --- id hash ---------------------------------------------------------------
// Open addressing with linear probing; keys are borrowed.  A folding map
// compares keys the way WAGGLE_INPUT_ names do: ASCII upper case, '-' = '_'.

typedef struct {
    const char **keys;      // NULL marks an empty slot
    size_t *vals;
    size_t mask;            // capacity - 1; capacity is a power of two
    bool fold;
} s_map_t;

static char
s_fold(char c, bool fold)
{
    if (!fold) {
        return c;
    }
    return c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char) (c - 32) : c;
}

static void
s_map_init(s_map_t *m, size_t n, bool fold)
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

static void
s_map_release(s_map_t *m)
{
    free(m->keys);
    free(m->vals);
    *m = (s_map_t){0};
}

// The slot holding key (len bytes), or the empty slot where it would go.
static size_t
s_map_slot(const s_map_t *m, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037u;   // FNV-1a
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char) s_fold(key[i], m->fold)) * 1099511628211u;
    }
    for (size_t slot = (size_t) h & m->mask;; slot = (slot + 1) & m->mask) {
        const char *k = m->keys[slot];
        if (!k) {
            return slot;
        }
        size_t i = 0;
        while (i < len && k[i] && s_fold(k[i], m->fold) == s_fold(key[i], m->fold)) {
            i++;
        }
        if (i == len && k[i] == '\0') {
            return slot;
        }
    }
}

// The value stored under key, or S_NONE.
static size_t
s_map_find(const s_map_t *m, const char *key, size_t len)
{
    size_t slot = s_map_slot(m, key, len);
    return m->keys[slot] ? m->vals[slot] : S_NONE;
}

// Stores key -> val unless key is there: returns S_NONE when stored, else the
// value already stored.  At most capacity / 2 keys may be added.
static size_t
s_map_add(s_map_t *m, const char *key, size_t val)
{
    size_t slot = s_map_slot(m, key, strlen(key));
    if (m->keys[slot]) {
        return m->vals[slot];
    }
    m->keys[slot] = key;
    m->vals[slot] = val;
    return S_NONE;
}

// --- grammar ---------------------------------------------------------------

static bool
s_is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9');
}

// [A-Za-z0-9_][A-Za-z0-9_-]{0,63}
static bool
s_id_ok(const char *s, size_t len)
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

// --- templates -------------------------------------------------------------

typedef enum {
    S_TOK_END = 0,
    S_TOK_TEXT,             // bytes to copy as they are
    S_TOK_REF,              // {{id.output}}
    S_TOK_BAD,              // {{anything else}}
    S_TOK_UNCLOSED,         // {{ with no }} after it
} s_tok_kind_t;

typedef struct {
    s_tok_kind_t kind;
    const char *p;          // the token's bytes
    size_t len;
    const char *id;         // S_TOK_REF: the id inside
    size_t id_len;
} s_tok_t;

// Reads the token at s into *tok; returns where the next one starts.
static const char *
s_tok_next(const char *s, s_tok_t *tok)
{
    static const char suffix[] = ".output";
    const size_t slen = sizeof suffix - 1;
    *tok = (s_tok_t){.kind = S_TOK_TEXT, .p = s};
    const char *open = strstr(s, "{{");
    if (!*s || open != s) {
        tok->len = open ? (size_t) (open - s) : strlen(s);
        tok->kind = tok->len ? S_TOK_TEXT : S_TOK_END;
        return s + tok->len;
    }
    if (strncmp(s + 2, "{{", 2) == 0) {
        tok->len = 2;       // "{{{{" is a literal "{{"
        return s + 4;
    }
    const char *close = strstr(s + 2, "}}");
    if (!close) {
        tok->kind = S_TOK_UNCLOSED;
        tok->len = strlen(s);
        return s + tok->len;
    }
    tok->len = (size_t) (close + 2 - s);
    size_t inner = (size_t) (close - (s + 2));
    tok->kind = S_TOK_BAD;
    if (inner > slen && memcmp(close - slen, suffix, slen) == 0
        && s_id_ok(s + 2, inner - slen)) {
        tok->kind = S_TOK_REF;
        tok->id = s + 2;
        tok->id_len = inner - slen;
    }
    return close + 2;
}

// The sentence for a S_TOK_BAD or S_TOK_UNCLOSED token; caller frees.
static char *
s_tok_error(const s_tok_t *tok)
{
    char shown[S_SHOW_MAX + 4];
    if (tok->kind == S_TOK_UNCLOSED) {
        return xstrdup("unclosed '{{' (write {{{{ for a literal {{)");
    }
    return xasprintf("'%s' is not a placeholder (write {{ID.output}}, "
                     "or {{{{ for a literal {{)",
                     s_show(shown, tok->p, tok->len));
}

// --- validation context ----------------------------------------------------

typedef struct {
    size_t task;            // 1 + index of the task that needs this one
    size_t pos;             // where in that task's needs it is listed
} s_stamp_t;

typedef struct {
    wp_errors_t *errs;
    size_t n_added;         // errors this parse added (capped)
    s_buf_t path;           // JSON path of the node being checked
    workplan_t *wp;
    wp_task_t defaults;     // only timeout_s, retries, priority, requires
    unsigned seen;          // S_F_* bits of the object being parsed
    s_map_t ids;            // id -> index of its first task
    s_stamp_t *stamps;      // per task: which task needs it (pass 2)
    const char *missing[S_MAX_ERRORS];  // current task's needs naming no task
    size_t n_missing;
} s_ctx_t;

static void s_err(s_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_err(s_ctx_t *ctx, const char *fmt, ...)
{
    if (ctx->n_added >= S_MAX_ERRORS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    wp_errors_t *errs = ctx->errs;
    errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof *errs->items);
    errs->items[errs->count++] = (wp_error_t){
        .path = xstrdup(ctx->path.p ? ctx->path.p : ""), .message = msg};
    ctx->n_added++;
}

static bool
s_full(const s_ctx_t *ctx)
{
    return ctx->n_added >= S_MAX_ERRORS;
}

// Appends ".key" (or "key" at the root, or ["k y"] for keys that are not
// plain words) to the path; returns the length to restore with s_pop().
static size_t
s_push_key(s_ctx_t *ctx, const char *key)
{
    size_t old = ctx->path.len;
    bool plain = *key != '\0';
    for (const char *c = key; *c; c++) {
        plain = plain && (s_is_alnum(*c) || *c == '_' || *c == '-');
    }
    if (!plain) {
        char *q = json_quote(key);
        s_buf_adds(&ctx->path, "[");
        s_buf_adds(&ctx->path, q);
        s_buf_adds(&ctx->path, "]");
        free(q);
        return old;
    }
    if (old > 0) {
        s_buf_adds(&ctx->path, ".");
    }
    s_buf_adds(&ctx->path, key);
    return old;
}

static size_t
s_push_idx(s_ctx_t *ctx, size_t i)
{
    size_t old = ctx->path.len;
    char b[32];
    snprintf(b, sizeof b, "[%zu]", i);
    s_buf_adds(&ctx->path, b);
    return old;
}

static void
s_pop(s_ctx_t *ctx, size_t old)
{
    ctx->path.len = old;
    if (ctx->path.p) {
        ctx->path.p[old] = '\0';
    }
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
s_want(s_ctx_t *ctx, const jnode_t *val, json_type_t want)
{
    json_type_t got = json_type_of(val);
    if (got == want) {
        return true;
    }
    if (want == JSON_T_INTEGER && got == JSON_T_REAL) {
        s_err(ctx, "expected an integer, found a real number");
    } else {
        s_err(ctx, "expected %s, found %s",
              want == JSON_T_INTEGER ? "an integer" : s_type_name(want),
              s_type_name(got));
    }
    return false;
}

// A new copy of a non-empty string value, or NULL after reporting.
static char *
s_nonempty_str(s_ctx_t *ctx, const jnode_t *val)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return NULL;
    }
    if (json_str_len(val) == 0) {
        s_err(ctx, "must not be empty");
    }
    return xstrdup(json_str(val));
}

static void
s_int_in(s_ctx_t *ctx, const jnode_t *val, int64_t min, int64_t max,
         int64_t *dst)
{
    if (!s_want(ctx, val, JSON_T_INTEGER)) {
        return;
    }
    int64_t v = json_int(val);
    if (v < min || v > max) {
        s_err(ctx, "must be from %" PRId64 " to %" PRId64 ", found %" PRId64,
              min, max, v);
        return;
    }
    *dst = v;
}

// Copies an array of strings: non-strings are reported and left NULL.
static char **
s_strings(s_ctx_t *ctx, const jnode_t *val, size_t *n_out)
{
    *n_out = 0;
    if (!s_want(ctx, val, JSON_T_ARRAY)) {
        return NULL;
    }
    size_t n = json_arr_size(val);
    char **v = xcalloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const jnode_t *item = json_arr_get(val, i);
        size_t old = s_push_idx(ctx, i);
        if (s_want(ctx, item, JSON_T_STRING)) {
            v[i] = xstrdup(json_str(item));
        }
        s_pop(ctx, old);
    }
    *n_out = n;
    return v;
}

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
};
#define S_F_KINDS (S_F_RUN | S_F_PROMPT | S_F_GATE)
#define S_F_DEFAULTS (S_F_TIMEOUT | S_F_RETRIES | S_F_PRIORITY | S_F_REQUIRES)

static void
s_f_id(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return;
    }
    char shown[S_SHOW_MAX + 4];
    if (!s_id_ok(json_str(val), json_str_len(val))) {
        s_err(ctx, "'%s' is not a valid id (1 to 64 letters, digits, '_' or "
                   "'-', not starting with '-')",
              s_show(shown, json_str(val), json_str_len(val)));
    }
    // Kept even when invalid, so that needs naming it resolve.
    task->id = xstrdup(json_str(val));
}

static void
s_f_needs(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->needs = s_strings(ctx, val, &task->n_needs);
}

static void
s_f_run(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->kind = WP_KIND_RUN;
    task->argv = s_strings(ctx, val, &task->n_argv);
    if (task->argv && task->n_argv == 0) {
        s_err(ctx, "must hold at least the program to run");
    } else if (task->argv && task->argv[0] && !task->argv[0][0]) {
        size_t old = s_push_idx(ctx, 0);
        s_err(ctx, "the program name must not be empty");
        s_pop(ctx, old);
    }
}

static void
s_f_prompt(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->kind = WP_KIND_PROMPT;
    task->prompt = s_nonempty_str(ctx, val);
}

static void
s_f_gate(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
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
s_f_env(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    if (!s_want(ctx, val, JSON_T_OBJECT)) {
        return;
    }
    task->env = xcalloc(json_obj_size(val), sizeof *task->env);
    json_iter_t it = json_obj_iter(val);
    const char *key;
    const jnode_t *v;
    char shown[S_SHOW_MAX + 4];
    while (json_obj_next(&it, &key, &v)) {
        size_t old = s_push_key(ctx, key);
        if (!s_env_key_ok(key)) {
            s_err(ctx, "'%s' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                  s_show(shown, key, strlen(key)));
        } else if (strncmp(key, "WAGGLE_", 7) == 0) {
            s_err(ctx, "variables starting with WAGGLE_ are reserved");
        }
        if (s_want(ctx, v, JSON_T_STRING)) {
            task->env[task->n_env++] = (wp_env_t){xstrdup(key), xstrdup(json_str(v))};
        }
        s_pop(ctx, old);
    }
    // Sorted here, not only in the canonical text, so that a plan parsed
    // back from its canonical JSON is equal field by field.
    qsort(task->env, task->n_env, sizeof *task->env, s_env_cmp);
}

static void
s_f_cwd(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->cwd = s_nonempty_str(ctx, val);
}

static void
s_f_timeout(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, 0, S_TIMEOUT_MAX, &task->timeout_s);
}

static void
s_f_retries(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, 0, WORKPLAN_MAX_RETRIES, &task->retries);
}

static void
s_f_priority(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    s_int_in(ctx, val, -S_PRIORITY_MAX, S_PRIORITY_MAX, &task->priority);
}

static void
s_f_requires(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->requires = s_strings(ctx, val, &task->n_requires);
    char shown[S_SHOW_MAX + 4];
    for (size_t i = 0; i < task->n_requires; i++) {
        const char *tag = task->requires[i];
        if (tag && !s_tag_ok(tag)) {
            size_t old = s_push_idx(ctx, i);
            s_err(ctx, "'%s' is not a valid tag (1 to 64 letters, digits or "
                       "'_.:-')",
                  s_show(shown, tag, strlen(tag)));
            s_pop(ctx, old);
        }
    }
}

static void
s_f_model(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task)
{
    task->model = s_nonempty_str(ctx, val);
}

typedef void (*s_field_fn)(s_ctx_t *ctx, const jnode_t *val, wp_task_t *task);

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
};

// Parses the members of obj that `allowed` names into task, reporting the
// others; sets ctx->seen to the fields present.
static void
s_parse_fields(s_ctx_t *ctx, const jnode_t *obj, unsigned allowed,
               wp_task_t *task)
{
    const size_t n_fields = sizeof s_fields / sizeof s_fields[0];
    json_iter_t it = json_obj_iter(obj);
    const char *key;
    const jnode_t *val;
    char shown[S_SHOW_MAX + 4];
    ctx->seen = 0;
    while (json_obj_next(&it, &key, &val)) {
        size_t old = s_push_key(ctx, key);
        size_t f = 0;
        while (f < n_fields && strcmp(s_fields[f].name, key) != 0) {
            f++;
        }
        if (f == n_fields || !(s_fields[f].bit & allowed)) {
            s_err(ctx, "unknown field '%s'", s_show(shown, key, strlen(key)));
        } else {
            ctx->seen |= s_fields[f].bit;
            s_fields[f].fn(ctx, val, task);
        }
        s_pop(ctx, old);
    }
}

// --- pass 1: the plan and its tasks ----------------------------------------

static void
s_check_kind(s_ctx_t *ctx, wp_task_t *task)
{
    static const char *const base =
        "a task needs exactly one of 'run', 'prompt' or 'gate'";
    unsigned kinds = ctx->seen & S_F_KINDS;
    if (kinds == 0) {
        s_err(ctx, "%s", base);
    } else if (kinds == S_F_KINDS) {
        s_err(ctx, "%s, found all three", base);
    } else if (kinds & (kinds - 1)) {
        s_err(ctx, "%s, found '%s' and '%s'", base,
              kinds & S_F_RUN ? "run" : "prompt",
              kinds & S_F_GATE ? "gate" : "prompt");
    } else if ((ctx->seen & S_F_MODEL) && task->kind != WP_KIND_PROMPT) {
        size_t old = s_push_key(ctx, "model");
        s_err(ctx, "only prompt tasks take a model, and this is a %s task",
              workplan_kind_name(task->kind));
        s_pop(ctx, old);
    }
}

static void
s_apply_defaults(s_ctx_t *ctx, wp_task_t *task)
{
    const wp_task_t *d = &ctx->defaults;
    if (!(ctx->seen & S_F_TIMEOUT)) {
        task->timeout_s = d->timeout_s;
    }
    if (!(ctx->seen & S_F_RETRIES)) {
        task->retries = d->retries;
    }
    if (!(ctx->seen & S_F_PRIORITY)) {
        task->priority = d->priority;
    }
    if (!(ctx->seen & S_F_REQUIRES) && d->n_requires > 0) {
        task->requires = xcalloc(d->n_requires, sizeof *task->requires);
        task->n_requires = d->n_requires;
        for (size_t i = 0; i < d->n_requires; i++) {
            task->requires[i] = d->requires[i] ? xstrdup(d->requires[i]) : NULL;
        }
    }
}

static void
s_parse_task(s_ctx_t *ctx, size_t i, const jnode_t *node)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    size_t old = s_push_idx(ctx, i);
    if (!s_want(ctx, node, JSON_T_OBJECT)) {
        s_pop(ctx, old);
        return;
    }
    s_parse_fields(ctx, node, ~0u, task);
    if (!(ctx->seen & S_F_ID)) {
        s_err(ctx, "missing required field 'id'");
    }
    s_check_kind(ctx, task);
    s_apply_defaults(ctx, task);
    size_t first = task->id ? s_map_add(&ctx->ids, task->id, i) : S_NONE;
    if (first != S_NONE) {
        char shown[S_SHOW_MAX + 4];
        size_t o2 = s_push_key(ctx, "id");
        s_err(ctx, "duplicate id '%s' (first at tasks[%zu])",
              s_show(shown, task->id, strlen(task->id)), first);
        s_pop(ctx, o2);
    }
    s_pop(ctx, old);
}

static void
s_parse_tasks(s_ctx_t *ctx, const jnode_t *val)
{
    size_t old = s_push_key(ctx, "tasks");
    size_t n = json_arr_size(val);
    if (!s_want(ctx, val, JSON_T_ARRAY)) {
        // Reported.
    } else if (n == 0) {
        s_err(ctx, "a workplan needs at least one task");
    } else if (n > WORKPLAN_MAX_TASKS) {
        s_err(ctx, "a workplan holds at most %d tasks, found %zu",
              WORKPLAN_MAX_TASKS, n);
    } else {
        workplan_t *wp = ctx->wp;
        wp->tasks = xcalloc(n, sizeof *wp->tasks);
        wp->n_tasks = n;
        s_map_init(&ctx->ids, n, false);
        for (size_t i = 0; i < n; i++) {
            s_parse_task(ctx, i, json_arr_get(val, i));
        }
    }
    s_pop(ctx, old);
}

static void
s_parse_name(s_ctx_t *ctx, const jnode_t *val)
{
    if (!s_want(ctx, val, JSON_T_STRING)) {
        return;
    }
    size_t n = s_utf8_chars(json_str(val));
    if (n == 0 || n > S_NAME_MAX) {
        s_err(ctx, "must be 1 to %d characters long, found %zu", S_NAME_MAX,
              n);
    }
    ctx->wp->name = xstrdup(json_str(val));
}

// name and goal, and the unknown fields; defaults and tasks come after,
// whatever their place in the text, because tasks depend on defaults.
static void
s_parse_top(s_ctx_t *ctx, const jnode_t *root)
{
    json_iter_t it = json_obj_iter(root);
    const char *key;
    const jnode_t *val;
    char shown[S_SHOW_MAX + 4];
    while (json_obj_next(&it, &key, &val)) {
        size_t old = s_push_key(ctx, key);
        if (strcmp(key, "name") == 0) {
            s_parse_name(ctx, val);
        } else if (strcmp(key, "goal") == 0) {
            if (s_want(ctx, val, JSON_T_STRING)) {
                ctx->wp->goal = xstrdup(json_str(val));
            }
        } else if (strcmp(key, "defaults") != 0 && strcmp(key, "tasks") != 0) {
            s_err(ctx, "unknown field '%s'", s_show(shown, key, strlen(key)));
        }
        s_pop(ctx, old);
    }
}

static void
s_parse_root(s_ctx_t *ctx, const jnode_t *root)
{
    if (!s_want(ctx, root, JSON_T_OBJECT)) {
        return;
    }
    s_parse_top(ctx, root);
    if (!json_obj_get(root, "name")) {
        s_err(ctx, "missing required field 'name'");
    }
    const jnode_t *defaults = json_obj_get(root, "defaults");
    if (defaults) {
        size_t old = s_push_key(ctx, "defaults");
        if (s_want(ctx, defaults, JSON_T_OBJECT)) {
            s_parse_fields(ctx, defaults, S_F_DEFAULTS, &ctx->defaults);
        }
        s_pop(ctx, old);
    }
    const jnode_t *tasks = json_obj_get(root, "tasks");
    if (!tasks) {
        s_err(ctx, "missing required field 'tasks'");
    } else {
        s_parse_tasks(ctx, tasks);
    }
}

// --- pass 2: links ---------------------------------------------------------

static void
s_link_one(s_ctx_t *ctx, size_t i, size_t j)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    const char *name = task->needs[j];
    char shown[S_SHOW_MAX + 4];
    size_t idx = s_map_find(&ctx->ids, name, strlen(name));
    if (idx == S_NONE) {
        s_err(ctx, "'%s' is not a task in this workplan",
              s_show(shown, name, strlen(name)));
        if (ctx->n_missing < S_MAX_ERRORS) {
            ctx->missing[ctx->n_missing++] = name;
        }
        return;
    }
    s_stamp_t *st = &ctx->stamps[idx];
    if (st->task == i + 1) {
        s_err(ctx, "duplicate need '%s' (first at tasks[%zu].needs[%zu])",
              s_show(shown, name, strlen(name)), i, st->pos);
        return;
    }
    *st = (s_stamp_t){.task = i + 1, .pos = j};
    if (idx == i || (task->id && strcmp(task->id, name) == 0)) {
        s_err(ctx, "a task cannot need itself");
        return;
    }
    task->need_idx[j] = idx;
}

static void
s_link_needs(s_ctx_t *ctx, size_t i)
{
    wp_task_t *task = &ctx->wp->tasks[i];
    ctx->n_missing = 0;
    if (task->n_needs == 0) {
        return;
    }
    task->need_idx = xmalloc(task->n_needs * sizeof *task->need_idx);
    size_t old = s_push_key(ctx, "needs");
    for (size_t j = 0; j < task->n_needs; j++) {
        task->need_idx[j] = S_NONE;
        if (task->needs[j]) {
            size_t o2 = s_push_idx(ctx, j);
            s_link_one(ctx, i, j);
            s_pop(ctx, o2);
        }
    }
    s_pop(ctx, old);
}

// Whether task i lists id (len bytes) in its needs; valid right after
// s_link_needs(ctx, i).
static bool
s_lists_need(const s_ctx_t *ctx, size_t i, const char *id, size_t len)
{
    size_t idx = s_map_find(&ctx->ids, id, len);
    if (idx != S_NONE) {
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
s_check_template(s_ctx_t *ctx, size_t i, const char *text)
{
    s_tok_t tok;
    for (const char *s = s_tok_next(text, &tok);
         tok.kind != S_TOK_END && !s_full(ctx); s = s_tok_next(s, &tok)) {
        if (tok.kind == S_TOK_BAD || tok.kind == S_TOK_UNCLOSED) {
            char *msg = s_tok_error(&tok);
            s_err(ctx, "%s", msg);
            free(msg);
        } else if (tok.kind == S_TOK_REF
                   && !s_lists_need(ctx, i, tok.id, tok.id_len)) {
            s_err(ctx, "'%.*s' refers to '%.*s', which this task does not need",
                  (int) tok.len, tok.p, (int) tok.id_len, tok.id);
        }
    }
}

static void
s_check_templates(s_ctx_t *ctx, size_t i)
{
    const wp_task_t *task = &ctx->wp->tasks[i];
    if (task->argv) {
        size_t old = s_push_key(ctx, "run");
        for (size_t k = 0; k < task->n_argv; k++) {
            if (task->argv[k]) {
                size_t o2 = s_push_idx(ctx, k);
                s_check_template(ctx, i, task->argv[k]);
                s_pop(ctx, o2);
            }
        }
        s_pop(ctx, old);
    }
    if (task->prompt) {
        size_t old = s_push_key(ctx, "prompt");
        s_check_template(ctx, i, task->prompt);
        s_pop(ctx, old);
    }
}

// Two needs whose WAGGLE_INPUT_ names are equal ("a-b", "A_B") cannot both
// reach the task through its environment.
static void
s_check_inputs(s_ctx_t *ctx, size_t i)
{
    const wp_task_t *task = &ctx->wp->tasks[i];
    if (task->n_needs < 2) {
        return;
    }
    s_map_t vars;
    s_map_init(&vars, task->n_needs, true);
    size_t old = s_push_key(ctx, "needs");
    for (size_t j = 0; j < task->n_needs; j++) {
        const char *name = task->needs[j];
        if (!name || !s_id_ok(name, strlen(name))) {
            continue;
        }
        size_t first = s_map_add(&vars, name, j);
        if (first != S_NONE && strcmp(task->needs[first], name) != 0) {
            size_t o2 = s_push_idx(ctx, j);
            char *var = workplan_input_var(name);
            s_err(ctx, "'%s' and '%s' both become %s", task->needs[first],
                  name, var);
            free(var);
            s_pop(ctx, o2);
        }
    }
    s_pop(ctx, old);
    s_map_release(&vars);
}

static void
s_link(s_ctx_t *ctx)
{
    size_t n = ctx->wp->n_tasks;
    ctx->stamps = xcalloc(n, sizeof *ctx->stamps);
    size_t old = s_push_key(ctx, "tasks");
    for (size_t i = 0; i < n; i++) {
        size_t o2 = s_push_idx(ctx, i);
        s_link_needs(ctx, i);
        if (!s_full(ctx)) {
            s_check_templates(ctx, i);
            s_check_inputs(ctx, i);
        }
        s_pop(ctx, o2);
    }
    s_pop(ctx, old);
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
s_cycle_add(s_buf_t *msg, const s_ctx_t *ctx, const s_dfs_t *d, size_t k)
{
    char shown[S_SHOW_MAX + 4];
    const char *id = ctx->wp->tasks[d->stack[k].task].id;
    s_buf_adds(msg, s_show(shown, id, strlen(id)));
}

// Reports the cycle stack[from..top-1] (whose last frame needs the first),
// named from the task written first, at the need that leaves it.
static void
s_report_cycle(s_ctx_t *ctx, const s_dfs_t *d, size_t from)
{
    size_t len = d->top - from, start = from;
    for (size_t k = from; k < d->top; k++) {
        start = d->stack[k].task < d->stack[start].task ? k : start;
    }
    size_t named = len < S_CYCLE_SHOWN ? len : S_CYCLE_SHOWN;
    s_buf_t msg = {0};
    s_buf_adds(&msg, "cycle: ");
    for (size_t n = 0; n < named; n++) {
        s_cycle_add(&msg, ctx, d, from + (start - from + n) % len);
        s_buf_adds(&msg, " -> ");
    }
    if (named < len) {
        char more[64];
        snprintf(more, sizeof more, "... (%zu more) -> ", len - named);
        s_buf_adds(&msg, more);
    }
    s_cycle_add(&msg, ctx, d, start);
    size_t old = s_push_key(ctx, "tasks");
    s_push_idx(ctx, d->stack[start].task);
    s_push_key(ctx, "needs");
    s_push_idx(ctx, d->stack[start].next - 1);
    s_err(ctx, "%s", msg.p);
    s_pop(ctx, old);
    free(msg.p);
}

static void
s_dfs(s_ctx_t *ctx, s_dfs_t *d, size_t root)
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
        if (v == S_NONE || d->color[v] == 2) {
            continue;
        }
        if (d->color[v] == 1) {
            if (!s_full(ctx)) {
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
static void
s_find_cycles(s_ctx_t *ctx)
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
    for (size_t i = 0; i < self->n_tasks; i++) {
        s_task_release(&self->tasks[i]);
    }
    free(self->tasks);
    free(self->name);
    free(self->goal);
    free(self);
    *self_p = NULL;
}

int
workplan_parse(const char *json, size_t len, workplan_t **out,
               wp_errors_t *errs)
{
    assert(out && errs);
    *out = NULL;
    s_ctx_t ctx = {.errs = errs};
    char jerr[256];
    jnode_t *root = json_parse(json, len, jerr, sizeof jerr);
    if (!root) {
        s_err(&ctx, "%s", jerr);
        return -1;
    }
    ctx.wp = xcalloc(1, sizeof *ctx.wp);
    ctx.defaults.timeout_s = WORKPLAN_DEFAULT_TIMEOUT_S;
    ctx.defaults.retries = WORKPLAN_DEFAULT_RETRIES;
    s_parse_root(&ctx, root);
    json_destroy(&root);
    if (ctx.wp->n_tasks > 0) {
        s_link(&ctx);
        s_find_cycles(&ctx);
    }
    free(ctx.path.p);
    free(ctx.stamps);
    s_map_release(&ctx.ids);
    s_task_release(&ctx.defaults);
    if (ctx.n_added > 0) {
        workplan_destroy(&ctx.wp);
        return -1;
    }
    *out = ctx.wp;
    return 0;
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

// --- canonical JSON --------------------------------------------------------

static jnode_t *
s_strings_json(char *const *v, size_t n)
{
    jnode_t *arr = json_arr_new();
    for (size_t i = 0; i < n; i++) {
        json_arr_push_str(arr, v[i]);
    }
    return arr;
}

static void
s_kind_json(jnode_t *obj, const wp_task_t *t)
{
    switch (t->kind) {
    case WP_KIND_RUN: {
        jnode_t *argv = s_strings_json(t->argv, t->n_argv);
        json_obj_set_node(obj, "run", &argv);
        break;
    }
    case WP_KIND_PROMPT:
        json_obj_set_str(obj, "prompt", t->prompt);
        break;
    case WP_KIND_GATE:
        json_obj_set_str(obj, "gate", t->gate);
        break;
    }
}

// Key order: id, needs, run|prompt|gate, model, env, cwd, timeout_s,
// retries, priority, requires.  Optional fields appear only when set.
static jnode_t *
s_task_json(const wp_task_t *t)
{
    jnode_t *obj = json_obj_new();
    json_obj_set_str(obj, "id", t->id);
    if (t->n_needs > 0) {
        jnode_t *needs = s_strings_json(t->needs, t->n_needs);
        json_obj_set_node(obj, "needs", &needs);
    }
    s_kind_json(obj, t);
    if (t->model) {
        json_obj_set_str(obj, "model", t->model);
    }
    if (t->n_env > 0) {
        jnode_t *env = json_obj_new();
        for (size_t i = 0; i < t->n_env; i++) {
            json_obj_set_str(env, t->env[i].key, t->env[i].value);
        }
        json_obj_set_node(obj, "env", &env);
    }
    if (t->cwd) {
        json_obj_set_str(obj, "cwd", t->cwd);
    }
    json_obj_set_int(obj, "timeout_s", t->timeout_s);
    json_obj_set_int(obj, "retries", t->retries);
    json_obj_set_int(obj, "priority", t->priority);
    jnode_t *req = s_strings_json(t->requires, t->n_requires);
    json_obj_set_node(obj, "requires", &req);
    return obj;
}

char *
workplan_to_json(const workplan_t *wp)
{
    assert(wp);
    jnode_t *root = json_obj_new();
    json_obj_set_str(root, "name", wp->name);
    if (wp->goal) {
        json_obj_set_str(root, "goal", wp->goal);
    }
    jnode_t *tasks = json_arr_new();
    for (size_t i = 0; i < wp->n_tasks; i++) {
        jnode_t *t = s_task_json(&wp->tasks[i]);
        json_arr_push_node(tasks, &t);
    }
    json_obj_set_node(root, "tasks", &tasks);
    char *text = json_dump(root, false);
    json_destroy(&root);
    return text;
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
    s_buf_t b = {0};
    for (size_t i = 0; i < errs->count; i++) {
        const wp_error_t *e = &errs->items[i];
        if (i > 0) {
            s_buf_adds(&b, "\n");
        }
        if (e->path[0]) {
            s_buf_adds(&b, e->path);
            s_buf_adds(&b, ": ");
        }
        s_buf_adds(&b, e->message);
    }
    return s_buf_take(&b);
}

// --- expansion -------------------------------------------------------------

char *
workplan_input_var(const char *id)
{
    assert(id);
    size_t plen = strlen(S_INPUT_PREFIX), n = strlen(id);
    char *var = xmalloc(plen + n + 1);
    memcpy(var, S_INPUT_PREFIX, plen);
    for (size_t i = 0; i <= n; i++) {
        var[plen + i] = s_fold(id[i], true);
    }
    return var;
}

// Appends the value for tok (a S_TOK_REF) to b, or returns a new sentence.
static char *
s_expand_ref(s_buf_t *b, const s_tok_t *tok, const wp_value_t *values,
             size_t n, size_t max_value)
{
    int il = (int) tok->id_len;
    const wp_value_t *v = NULL;
    for (size_t i = 0; i < n && !v; i++) {
        if (strncmp(values[i].id, tok->id, tok->id_len) == 0
            && values[i].id[tok->id_len] == '\0') {
            v = &values[i];
        }
    }
    if (!v) {
        return xasprintf("%.*s: '%.*s' is not among the task's needs",
                         (int) tok->len, tok->p, il, tok->id);
    }
    size_t len = v->len;
    if (len > 0 && v->data[len - 1] == '\n') {
        len--;
    }
    if (v->truncated) {
        return xasprintf("input '%.*s' was truncated at the output cap", il,
                         tok->id);
    }
    if (len > 0 && memchr(v->data, '\0', len)) {
        return xasprintf("input '%.*s' holds a NUL byte", il, tok->id);
    }
    if (max_value > 0 && len > max_value) {
        return xasprintf("input '%.*s' is %zu bytes; at most %zu may go into "
                         "argv",
                         il, tok->id, len, max_value);
    }
    s_buf_add(b, (const char *) v->data, len);
    return NULL;
}

int
workplan_expand(const char *tmpl, const wp_value_t *values, size_t n,
                size_t max_value, char **out, char **err)
{
    assert(tmpl && out && err && (values || n == 0));
    *out = NULL;
    *err = NULL;
    s_buf_t b = {0};
    s_tok_t tok;
    for (const char *s = s_tok_next(tmpl, &tok); tok.kind != S_TOK_END;
         s = s_tok_next(s, &tok)) {
        if (tok.kind == S_TOK_TEXT) {
            s_buf_add(&b, tok.p, tok.len);
        } else if (tok.kind == S_TOK_REF) {
            *err = s_expand_ref(&b, &tok, values, n, max_value);
        } else {
            *err = s_tok_error(&tok);
        }
        if (*err) {
            free(b.p);
            return -1;
        }
    }
    *out = s_buf_take(&b);
    return 0;
}
