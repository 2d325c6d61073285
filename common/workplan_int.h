// workplan_int.h: what the files of the workplan module share (SQLite's
// *Int.h convention).  Nothing outside common/workplan*.c includes it; the
// contract for everyone else is common/workplan.h.
//
//   workplan.c           parse and pass 1 (fields), the validation context,
//                        errors, the plan's lifecycle, text helpers
//   workplan_graph.c     the id hash, pass 2 (links: needs, templates
//                        against needs, input-name collisions), pass 3
//                        (cycles)
//   workplan_template.c  the {{id.output}} scanner, workplan_expand,
//                        workplan_input_var
//   workplan_json.c      canonical workplan_to_json (public header only)
#ifndef WAGGLE_WORKPLAN_INT_H
#define WAGGLE_WORKPLAN_INT_H

#include "common/json.h"
#include "common/workplan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WP_MAX_ERRORS 100           // errors one parse collects
#define WP_SHOW_MAX 64              // bytes of user text quoted in a message
#define WP_NONE SIZE_MAX            // "no index" in maps and need_idx

// --- workplan.c: text helpers -----------------------------------------------

// A growing text: json_out's buffer (common/json.h), which is one.
typedef json_out_t wp_buf_t;

// Appends n bytes of s (which need not be NUL-terminated).
void wp_buf_add(wp_buf_t *b, const char *s, size_t n);
void wp_buf_adds(wp_buf_t *b, const char *s);
// Returns the string built so far ("" if nothing was added; caller frees)
// and leaves b empty.
char *wp_buf_take(wp_buf_t *b);

// Copies at most WP_SHOW_MAX bytes of s into out for quoting in a message:
// control characters become '?', and a cut never splits a UTF-8 sequence.
// Returns out.
const char *wp_show(char out[WP_SHOW_MAX + 4], const char *s, size_t len);
// Whether len bytes at s are an id: [A-Za-z0-9_][A-Za-z0-9_-]{0,63}.
bool wp_id_ok(const char *s, size_t len);

// How WAGGLE_INPUT_ names compare ids: ASCII upper case, '-' = '_'.  The
// identity when fold is false.  Inline because the id hash calls it per byte.
static inline char
wp_fold(char c, bool fold)
{
    if (!fold) {
        return c;
    }
    return c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char) (c - 32) : c;
}

// --- workplan_graph.c: the id hash ------------------------------------------
// Open addressing with linear probing; keys are borrowed and must outlive
// the map.  A folding map compares keys with wp_fold().

typedef struct {
    const char **keys;      // NULL marks an empty slot
    size_t *vals;
    size_t mask;            // capacity - 1; capacity is a power of two
    bool fold;
} wp_map_t;

// Sizes m for up to n keys.  wp_map_release() frees it.
void wp_map_init(wp_map_t *m, size_t n, bool fold);
void wp_map_release(wp_map_t *m);
// The value stored under key (len bytes), or WP_NONE.
size_t wp_map_find(const wp_map_t *m, const char *key, size_t len);
// Stores key -> val unless key is there: returns WP_NONE when stored, else
// the value already stored.  At most the n given to wp_map_init() keys may
// be added.
size_t wp_map_add(wp_map_t *m, const char *key, size_t val);

// --- workplan_pool.c: the memory of a plan's tasks -------------------------
// Strings and arrays that live until the plan is destroyed; never freed or
// changed one by one (interned ones are shared between tasks).

typedef struct wp_pool wp_pool_t;

wp_pool_t *wp_pool_new(void);
void wp_pool_destroy(wp_pool_t **self_p);
// Bytes the pool holds (its blocks; the intern tables aside).
size_t wp_pool_bytes(const wp_pool_t *self);
// n zeroed bytes, aligned for pointers; never NULL (even for n == 0).
void *wp_pool_alloc(wp_pool_t *self, size_t n);
// A NUL-terminated copy of len bytes of s.
char *wp_pool_copy(wp_pool_t *self, const char *s, size_t len);
// The same, shared with every equal string interned before.
char *wp_pool_str(wp_pool_t *self, const char *s, size_t len);
// A copy of the n pointers at v (NULL when n is 0), shared with every equal
// array interned before (equal pointers: intern the strings first).
char **wp_pool_strv(wp_pool_t *self, char *const *v, size_t n);

// --- workplan.c: the validation context -------------------------------------

typedef struct {
    size_t task;            // 1 + index of the task that needs this one
    size_t pos;             // where in that task's needs it is listed
} wp_stamp_t;

// One step of a JSON path: a member's key (borrowed: it must outlive its
// push), or an index when key is NULL.
typedef struct {
    const char *key;
    size_t idx;
} wp_seg_t;

typedef struct {
    wp_errors_t *errs;
    size_t n_added;         // errors this parse added (capped)
    wp_seg_t *segs;         // JSON path of the node being checked
    size_t n_segs, cap_segs;
    workplan_t *wp;
    wp_task_t defaults;     // only timeout_s, retries, priority, requires,
                            // limits
    unsigned seen;          // field bits of the object being parsed (pass 1)
    wp_map_t ids;           // id -> index of its first task
    wp_stamp_t *stamps;     // per task: which task needs it (pass 2)
    const char *missing[WP_MAX_ERRORS];  // current task's needs naming no task
    size_t n_missing;
    bool stored;            // workplan_parse_stored: what the broker kept
} wp_ctx_t;

// Adds an error at the current path, unless WP_MAX_ERRORS were added.
void wp_err(wp_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// Whether no more errors will be kept.
bool wp_full(const wp_ctx_t *ctx);
// Append ".key" (or "key" at the root, or ["k y"] for keys that are not
// plain words; key is borrowed until the matching wp_pop()) or "[i]" to the
// path; return the depth to restore with wp_pop().
size_t wp_push_key(wp_ctx_t *ctx, const char *key);
size_t wp_push_idx(wp_ctx_t *ctx, size_t i);
void wp_pop(wp_ctx_t *ctx, size_t old);

// --- workplan_graph.c: passes 2 and 3 ---------------------------------------

// Pass 2: resolves every task's needs into need_idx (missing, duplicate and
// self needs are errors and stay WP_NONE), checks templates against the
// needs and WAGGLE_INPUT_ names for collisions.  Allocates ctx->stamps.
void wp_graph_link(wp_ctx_t *ctx);
// Pass 3: reports each cycle in the resolved needs once.  Iterative, so a
// long chain costs no stack.
void wp_graph_cycles(wp_ctx_t *ctx);

// --- workplan_template.c: the scanner ---------------------------------------

typedef enum {
    WP_TOK_END = 0,
    WP_TOK_TEXT,            // bytes to copy as they are
    WP_TOK_REF,             // {{id.output}}
    WP_TOK_BAD,             // {{anything else}}
    WP_TOK_UNCLOSED,        // {{ with no }} after it
} wp_tok_kind_t;

typedef struct {
    wp_tok_kind_t kind;
    const char *p;          // the token's bytes
    size_t len;
    const char *id;         // WP_TOK_REF: the id inside
    size_t id_len;
} wp_tok_t;

// Reads the token at s into *tok; returns where the next one starts.
const char *wp_tok_next(const char *s, wp_tok_t *tok);
// The sentence for a WP_TOK_BAD or WP_TOK_UNCLOSED token; caller frees.
char *wp_tok_error(const wp_tok_t *tok);

#endif
