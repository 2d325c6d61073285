// arena: memory that is allocated piece by piece and freed all at once.
//
// For structures built once and read until they go as a whole (a parsed
// document, a workplan's strings): no header per piece, no rounding to
// malloc's chunk sizes, no free per piece.  Blocks grow with what the arena
// holds (a quarter of it, at least 16 KiB), so a big arena makes few
// blocks and a small one wastes little.  Aborts on OOM, like xalloc.
#ifndef WAGGLE_ARENA_H
#define WAGGLE_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block_t;

// Zero-initialise ({0}) to start; arena_release() frees every block.
typedef struct {
    arena_block_t *blocks;  // newest first
    size_t bytes;           // held, headers included
} arena_t;

// n bytes aligned to align (a power of two, at most alignof(max_align_t));
// never NULL, even for n == 0.  Not zeroed.
void *arena_alloc(arena_t *a, size_t n, size_t align);
// Frees every block and leaves a empty (ready for use again).
void arena_release(arena_t *a);

#endif
