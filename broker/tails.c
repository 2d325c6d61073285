// tails: the latest few KiB of each running attempt's stdout, as its drone
// last sent them (TAIL), for `output --follow` (OUTPUT with live).
//
// In memory only, never in the ledger: a tail is a view of work in
// progress, and a broker restart loses nothing that matters (the drone
// sends the next one within PROTO_TAIL_MS).  Bounded: an entry exists only
// for a live lease whose holder sent it, holds at most PROTO_TAIL_MAX bytes,
// and goes when the attempt ends (tails_drop where results are recorded,
// tails_prune once a heartbeat for every other way a lease ends).  Entries
// are kept sorted by token: lookups are a binary search, and an insert or a
// removal moves pointers once per attempt.
#include "broker/broker_int.h"

#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct tail {
    uint64_t token;
    uint64_t total;             // bytes the attempt wrote so far
    size_t len;                 // the last len of them are in data
    uint8_t data[PROTO_TAIL_MAX];
};

// Index of token, or of where it would go (*found false).
static size_t
s_find(const broker_t *b, uint64_t token, bool *found)
{
    size_t lo = 0, hi = b->n_tails;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->tails[mid]->token < token) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < b->n_tails && b->tails[lo]->token == token;
    return lo;
}

static void
s_remove_at(broker_t *b, size_t i)
{
    free(b->tails[i]);
    memmove(&b->tails[i], &b->tails[i + 1],
            (b->n_tails - i - 1) * sizeof *b->tails);
    b->n_tails--;
}

void
tails_put(broker_t *b, uint64_t token, uint64_t total, const uint8_t *data,
          size_t len)
{
    bool found;
    size_t i = s_find(b, token, &found);
    if (!found) {
        if (b->n_tails == b->cap_tails) {
            b->cap_tails = b->cap_tails ? b->cap_tails * 2 : 16;
            b->tails = xrealloc(b->tails, b->cap_tails * sizeof *b->tails);
        }
        memmove(&b->tails[i + 1], &b->tails[i],
                (b->n_tails - i) * sizeof *b->tails);
        b->tails[i] = xcalloc(1, sizeof **b->tails);
        b->tails[i]->token = token;
        b->n_tails++;
    } else if (total < b->tails[i]->total) {
        return;  // an older TAIL overtaken by a newer one
    }
    tail_t *t = b->tails[i];
    t->total = total;
    t->len = len < PROTO_TAIL_MAX ? len : PROTO_TAIL_MAX;
    memcpy(t->data, data + (len - t->len), t->len);
}

bool
tails_get(const broker_t *b, uint64_t token, uint64_t *total,
          proto_bytes_t *out)
{
    bool found;
    size_t i = s_find(b, token, &found);
    if (!found) {
        return false;
    }
    *total = b->tails[i]->total;
    proto_bytes_set(out, b->tails[i]->data, b->tails[i]->len);
    return true;
}

void
tails_drop(broker_t *b, uint64_t token)
{
    bool found;
    size_t i = s_find(b, token, &found);
    if (found) {
        s_remove_at(b, i);
    }
}

void
tails_prune(broker_t *b)
{
    for (size_t i = b->n_tails; i-- > 0;) {
        if (!sched_lease_get(b->sched, b->tails[i]->token)) {
            s_remove_at(b, i);
        }
    }
}

void
tails_clear(broker_t *b)
{
    for (size_t i = 0; i < b->n_tails; i++) {
        free(b->tails[i]);
    }
    free(b->tails);
    b->tails = NULL;
    b->n_tails = b->cap_tails = 0;
}
