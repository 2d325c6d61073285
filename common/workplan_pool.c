// workplan_pool: the memory of one workplan's tasks.
//
// Every string and array a parsed plan's tasks hold lives in the plan's pool:
// an arena (common/arena.h), freed at once by workplan_destroy().  A
// 1M-task plan used to make three to five small allocations per task, each
// with its malloc header and rounding (~100 B a task); here an id costs its
// bytes.  Repeated strings (argv words, tags, env, cwd, models) and
// repeated string arrays (a run line or requires shared by many tasks) are
// stored once: the intern tables are bounded, so a plan of all-different
// strings costs no more than without them.  Pure: no I/O.
#include "common/workplan_int.h"

#include "common/arena.h"
#include "common/xalloc.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S_INTERN_MAX 65536          // entries per intern table (power of 2)
#define S_INTERN_LEN 1024           // longer strings are not interned

// Open addressing, linear probing, never more than half full.
typedef struct {
    const void **items;         // strings, or arrays led by their length
    uint64_t *hashes;
    size_t n, cap;
} s_table_t;

struct wp_pool {
    arena_t arena;              // every string and array
    s_table_t strs;             // char *
    s_table_t vecs;             // char ** (the element count stored before)
};

wp_pool_t *
wp_pool_new(void)
{
    return xcalloc(1, sizeof(wp_pool_t));
}

static void
s_table_release(s_table_t *t)
{
    free(t->items);
    free(t->hashes);
    *t = (s_table_t){0};
}

void
wp_pool_destroy(wp_pool_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    wp_pool_t *self = *self_p;
    arena_release(&self->arena);
    s_table_release(&self->strs);
    s_table_release(&self->vecs);
    free(self);
    *self_p = NULL;
}

size_t
wp_pool_bytes(const wp_pool_t *self)
{
    return self ? self->arena.bytes : 0;
}

static void *
s_alloc(wp_pool_t *self, size_t n, size_t align)
{
    return arena_alloc(&self->arena, n, align);
}

void *
wp_pool_alloc(wp_pool_t *self, size_t n)
{
    assert(self);
    void *p = s_alloc(self, n, sizeof(void *));
    memset(p, 0, n);
    return p;
}

char *
wp_pool_copy(wp_pool_t *self, const char *s, size_t len)
{
    assert(self && (s || len == 0));
    char *p = s_alloc(self, len + 1, 1);
    if (len > 0) {
        memcpy(p, s, len);
    }
    p[len] = '\0';
    return p;
}

static uint64_t
s_hash(const void *p, size_t n)
{
    uint64_t h = 14695981039346656037u;   // FNV-1a
    for (size_t i = 0; i < n; i++) {
        h = (h ^ ((const unsigned char *) p)[i]) * 1099511628211u;
    }
    return h ^ (h >> 29);
}

// The slot holding an item equal to (h, eq) or the empty slot for it.
typedef bool (*s_eq_fn)(const void *item, const void *key, size_t n);

static size_t
s_slot(const s_table_t *t, uint64_t h, s_eq_fn eq, const void *key, size_t n)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t) h & mask;; i = (i + 1) & mask) {
        if (!t->items[i] || (t->hashes[i] == h && eq(t->items[i], key, n))) {
            return i;
        }
    }
}

// Makes room for one more item; false when the table is at its bound.
static bool
s_room(s_table_t *t)
{
    if (2 * (t->n + 1) <= t->cap) {
        return true;
    }
    if (t->cap >= 2 * S_INTERN_MAX) {
        return false;
    }
    size_t cap = t->cap ? t->cap * 2 : 64;
    const void **items = xcalloc(cap, sizeof *items);
    uint64_t *hashes = xcalloc(cap, sizeof *hashes);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->items[i]) {
            continue;
        }
        size_t j = (size_t) t->hashes[i] & (cap - 1);
        while (items[j]) {
            j = (j + 1) & (cap - 1);
        }
        items[j] = t->items[i];
        hashes[j] = t->hashes[i];
    }
    free(t->items);
    free(t->hashes);
    t->items = items;
    t->hashes = hashes;
    t->cap = cap;
    return true;
}

static bool
s_str_eq(const void *item, const void *key, size_t n)
{
    return memcmp(item, key, n) == 0 && ((const char *) item)[n] == '\0';
}

char *
wp_pool_str(wp_pool_t *self, const char *s, size_t len)
{
    assert(self && (s || len == 0));
    if (len > S_INTERN_LEN || !s_room(&self->strs)) {
        return wp_pool_copy(self, s, len);
    }
    s_table_t *t = &self->strs;
    uint64_t h = s_hash(s, len);
    size_t i = s_slot(t, h, s_str_eq, s, len);
    if (!t->items[i]) {
        t->items[i] = wp_pool_copy(self, s, len);
        t->hashes[i] = h;
        t->n++;
    }
    return (char *) t->items[i];
}

// An interned array is stored after its length: ((size_t *) v)[-1].
static bool
s_vec_eq(const void *item, const void *key, size_t n)
{
    return ((const size_t *) item)[-1] == n
           && memcmp(item, key, n * sizeof(char *)) == 0;
}

char **
wp_pool_strv(wp_pool_t *self, char *const *v, size_t n)
{
    assert(self && (v || n == 0));
    if (n == 0) {
        return NULL;
    }
    s_table_t *t = &self->vecs;
    bool room = s_room(t);
    uint64_t h = s_hash(v, n * sizeof *v);
    size_t i = room ? s_slot(t, h, s_vec_eq, v, n) : 0;
    if (room && t->items[i]) {
        return (char **) t->items[i];
    }
    size_t *len = s_alloc(self, sizeof(size_t) + n * sizeof *v,
                          sizeof(void *));
    *len = n;
    char **copy = (char **) (len + 1);
    memcpy(copy, v, n * sizeof *v);
    if (room) {
        t->items[i] = copy;
        t->hashes[i] = h;
        t->n++;
    }
    return copy;
}
