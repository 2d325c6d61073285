// arena: blocks that grow with the arena, freed at once (common/arena.h).
#include "common/arena.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>

#define S_BLOCK_MIN 16384

struct arena_block {
    arena_block_t *next;
    size_t used, cap;
    max_align_t data[];
};

void *
arena_alloc(arena_t *a, size_t n, size_t align)
{
    assert(a && align > 0 && (align & (align - 1)) == 0);
    assert(align <= _Alignof(max_align_t));
    arena_block_t *b = a->blocks;
    if (b) {
        b->used = (b->used + align - 1) & ~(align - 1);
        b->used = b->used > b->cap ? b->cap : b->used;
    }
    if (!b || b->cap - b->used < n) {
        size_t cap = a->bytes / 4;
        cap = cap < S_BLOCK_MIN ? S_BLOCK_MIN : cap;
        cap = cap < n ? n : cap;
        b = xmalloc(sizeof *b + cap);
        b->next = a->blocks;
        b->used = 0;
        b->cap = cap;
        a->blocks = b;
        a->bytes += sizeof *b + cap;
    }
    void *p = (char *) b->data + b->used;
    b->used += n;
    return p;
}

void
arena_release(arena_t *a)
{
    assert(a);
    for (arena_block_t *b = a->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    *a = (arena_t){0};
}
