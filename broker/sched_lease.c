// sched_lease: the lease table inside sched (sched.h has the contract of
// every sched_lease* function).
//
// Owns every live lease and two open-addressing indexes over dense arrays:
// token -> lease, and instance -> how many leases that drone instance
// holds.  Lookups by token and counts by instance are O(1); the scans
// (expiry, an instance's leases, the next deadline) walk one dense array.
//
// Independent of the plans: it never looks at a plan, a task or its state,
// and sched.c reaches it only through sched__leases_new/destroy
// (sched_int.h).  Never does I/O, reads a clock or logs: deadlines are
// monotonic ms given by the caller.
#include "broker/sched_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char id[65];                 // drone instance id
    size_t n_leases;             // > 0
    size_t n_unconfirmed;        // of those, not confirmed yet
} s_inst_t;

// Open addressing with linear probing over a dense array.
typedef struct {
    size_t *slots;               // dense index + 1; 0 = empty
    size_t cap;                  // power of two
} s_index_t;

struct sched__leases {
    sched_lease_t *leases;       // dense
    size_t n_leases, cap_leases;
    s_index_t by_token;          // token -> leases[]
    s_inst_t *insts;             // instances holding leases, dense
    size_t n_insts, cap_insts;
    s_index_t by_inst;           // instance -> insts[]
};

// --- lease index --------------------------------------------------------

typedef uint64_t (*s_hash_at_fn)(const sched__leases_t *lt, size_t i);

static uint64_t
s_mix(uint64_t x)
{
    // splitmix64's finaliser: tokens are sequential, slots must not be.
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
s_hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h = (h ^ (uint8_t) *s) * 0x100000001b3ULL;
    }
    return h;
}

static uint64_t
s_token_hash_at(const sched__leases_t *lt, size_t i)
{
    return s_mix(lt->leases[i].token);
}

static uint64_t
s_inst_hash_at(const sched__leases_t *lt, size_t i)
{
    return s_hash_str(lt->insts[i].id);
}

// Keeps the load at most one half before n + 1 entries are indexed.
static void
s_index_grow(const sched__leases_t *lt, s_index_t *ix, size_t n,
             s_hash_at_fn hash_at)
{
    if ((n + 1) * 2 <= ix->cap) {
        return;
    }
    free(ix->slots);
    ix->cap *= 2;
    ix->slots = xcalloc(ix->cap, sizeof *ix->slots);
    size_t mask = ix->cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s = hash_at(lt, i) & mask;
        while (ix->slots[s]) {
            s = (s + 1) & mask;
        }
        ix->slots[s] = i + 1;
    }
}

// Empties slot hole, shifting later entries of the cluster back so that
// probing needs no tombstones.
static void
s_index_erase(const sched__leases_t *lt, s_index_t *ix, size_t hole,
              s_hash_at_fn hash_at)
{
    size_t mask = ix->cap - 1;
    ix->slots[hole] = 0;
    for (size_t j = (hole + 1) & mask; ix->slots[j]; j = (j + 1) & mask) {
        size_t home = hash_at(lt, ix->slots[j] - 1) & mask;
        // j may fill the hole only if the hole lies on its probe path.
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            ix->slots[hole] = ix->slots[j];
            ix->slots[j] = 0;
            hole = j;
        }
    }
}

// The dense entry at from moved to to.
static void
s_index_repoint(s_index_t *ix, uint64_t hash, size_t from, size_t to)
{
    size_t mask = ix->cap - 1;
    size_t s = hash & mask;
    while (ix->slots[s] != from + 1) {
        s = (s + 1) & mask;
    }
    ix->slots[s] = to + 1;
}

// The slot holding token, or the empty slot ending its probe.
static size_t
s_token_slot(const sched__leases_t *lt, uint64_t token)
{
    const s_index_t *ix = &lt->by_token;
    size_t mask = ix->cap - 1;
    size_t s = s_mix(token) & mask;
    while (ix->slots[s] && lt->leases[ix->slots[s] - 1].token != token) {
        s = (s + 1) & mask;
    }
    return s;
}

static size_t
s_inst_slot(const sched__leases_t *lt, const char *id)
{
    const s_index_t *ix = &lt->by_inst;
    size_t mask = ix->cap - 1;
    size_t s = s_hash_str(id) & mask;
    while (ix->slots[s] && strcmp(lt->insts[ix->slots[s] - 1].id, id) != 0) {
        s = (s + 1) & mask;
    }
    return s;
}

static void
s_inst_hold(sched__leases_t *lt, const char *id, bool confirmed)
{
    size_t s = s_inst_slot(lt, id);
    if (lt->by_inst.slots[s]) {
        lt->insts[lt->by_inst.slots[s] - 1].n_leases++;
        lt->insts[lt->by_inst.slots[s] - 1].n_unconfirmed += !confirmed;
        return;
    }
    s_index_grow(lt, &lt->by_inst, lt->n_insts, s_inst_hash_at);
    s = s_inst_slot(lt, id);
    sched__grow(&lt->insts, &lt->cap_insts, lt->n_insts + 1,
                sizeof *lt->insts);
    s_inst_t *in = &lt->insts[lt->n_insts++];
    memcpy(in->id, id, sizeof in->id);
    in->n_leases = 1;
    in->n_unconfirmed = !confirmed;
    lt->by_inst.slots[s] = lt->n_insts;
}

static s_inst_t *
s_inst_get(const sched__leases_t *lt, const char *id)
{
    size_t s = lt->by_inst.slots[s_inst_slot(lt, id)];
    return s ? &lt->insts[s - 1] : NULL;
}

static void
s_inst_release(sched__leases_t *lt, const char *id, bool confirmed)
{
    size_t s = s_inst_slot(lt, id);
    assert(lt->by_inst.slots[s]);
    size_t i = lt->by_inst.slots[s] - 1;
    lt->insts[i].n_unconfirmed -= !confirmed;
    if (--lt->insts[i].n_leases > 0) {
        return;
    }
    s_index_erase(lt, &lt->by_inst, s, s_inst_hash_at);
    size_t last = --lt->n_insts;
    if (i != last) {
        s_index_repoint(&lt->by_inst, s_inst_hash_at(lt, last), last, i);
        lt->insts[i] = lt->insts[last];
    }
}

// --- the table ----------------------------------------------------------

sched__leases_t *
sched__leases_new(void)
{
    sched__leases_t *lt = xcalloc(1, sizeof *lt);
    lt->by_token.cap = 16;
    lt->by_token.slots = xcalloc(16, sizeof *lt->by_token.slots);
    lt->by_inst.cap = 16;
    lt->by_inst.slots = xcalloc(16, sizeof *lt->by_inst.slots);
    return lt;
}

void
sched__leases_destroy(sched__leases_t **self_p)
{
    assert(self_p);
    sched__leases_t *lt = *self_p;
    if (!lt) {
        return;
    }
    free(lt->leases);
    free(lt->by_token.slots);
    free(lt->insts);
    free(lt->by_inst.slots);
    free(lt);
    *self_p = NULL;
}

// --- leases -------------------------------------------------------------

void
sched_lease_add(sched_t *self, const sched_lease_t *lease)
{
    assert(self && lease);
    sched__leases_t *lt = self->leases;
    assert(!lt->by_token.slots[s_token_slot(lt, lease->token)]);
    s_index_grow(lt, &lt->by_token, lt->n_leases, s_token_hash_at);
    size_t s = s_token_slot(lt, lease->token);
    sched__grow(&lt->leases, &lt->cap_leases, lt->n_leases + 1,
                sizeof *lt->leases);
    sched_lease_t *l = &lt->leases[lt->n_leases++];
    *l = *lease;
    l->instance[sizeof l->instance - 1] = '\0';
    lt->by_token.slots[s] = lt->n_leases;
    s_inst_hold(lt, l->instance, l->confirmed);
}

const sched_lease_t *
sched_lease_get(const sched_t *self, uint64_t token)
{
    assert(self);
    const sched__leases_t *lt = self->leases;
    size_t s = lt->by_token.slots[s_token_slot(lt, token)];
    return s ? &lt->leases[s - 1] : NULL;
}

void
sched_lease_renew(sched_t *self, uint64_t token, int64_t deadline_ms)
{
    assert(self);
    sched__leases_t *lt = self->leases;
    size_t s = lt->by_token.slots[s_token_slot(lt, token)];
    if (!s) {
        return;
    }
    sched_lease_t *l = &lt->leases[s - 1];
    if (l->hard_deadline_ms && deadline_ms > l->hard_deadline_ms) {
        deadline_ms = l->hard_deadline_ms;
    }
    l->deadline_ms = deadline_ms;
}

void
sched_lease_remove(sched_t *self, uint64_t token)
{
    assert(self);
    sched__leases_t *lt = self->leases;
    size_t s = s_token_slot(lt, token);
    if (!lt->by_token.slots[s]) {
        return;
    }
    size_t i = lt->by_token.slots[s] - 1;
    s_inst_release(lt, lt->leases[i].instance, lt->leases[i].confirmed);
    s_index_erase(lt, &lt->by_token, s, s_token_hash_at);
    size_t last = --lt->n_leases;
    if (i != last) {
        s_index_repoint(&lt->by_token, s_token_hash_at(lt, last), last, i);
        lt->leases[i] = lt->leases[last];
    }
}

static int
s_cmp_lease(const void *a, const void *b)
{
    const sched_lease_t *x = a, *y = b;
    if (x->deadline_ms != y->deadline_ms) {
        return x->deadline_ms < y->deadline_ms ? -1 : 1;
    }
    return x->token < y->token ? -1 : x->token > y->token;
}

// Copies the leases that match into *out, earliest deadline first.
static size_t
s_leases_where(const sched__leases_t *lt, const char *instance,
               int64_t now_ms, sched_lease_t **out)
{
    size_t n = 0;
    *out = NULL;
    for (size_t i = 0; i < lt->n_leases; i++) {
        const sched_lease_t *l = &lt->leases[i];
        if (instance ? strcmp(l->instance, instance) != 0
                     : l->deadline_ms > now_ms) {
            continue;
        }
        if ((n & (n - 1)) == 0) {
            *out = xrealloc(*out, (n ? 2 * n : 1) * sizeof **out);
        }
        (*out)[n++] = *l;
    }
    if (n > 1) {
        qsort(*out, n, sizeof **out, s_cmp_lease);
    }
    return n;
}

size_t
sched_leases_of(const sched_t *self, const char *instance,
                sched_lease_t **out)
{
    assert(self && instance && out);
    return s_leases_where(self->leases, instance, 0, out);
}

size_t
sched_lease_count_of(const sched_t *self, const char *instance)
{
    assert(self && instance);
    const s_inst_t *in = s_inst_get(self->leases, instance);
    return in ? in->n_leases : 0;
}

size_t
sched_lease_count_if(const sched_t *self,
                     bool (*match)(void *arg, const sched_lease_t *l),
                     void *arg)
{
    assert(self && match);
    const sched__leases_t *lt = self->leases;
    size_t n = 0;
    for (size_t i = 0; i < lt->n_leases; i++) {
        n += match(arg, &lt->leases[i]);
    }
    return n;
}

bool
sched_lease_confirm(sched_t *self, uint64_t token)
{
    assert(self);
    sched__leases_t *lt = self->leases;
    size_t s = lt->by_token.slots[s_token_slot(lt, token)];
    if (!s || lt->leases[s - 1].confirmed) {
        return false;
    }
    sched_lease_t *l = &lt->leases[s - 1];
    l->confirmed = true;
    s_inst_get(lt, l->instance)->n_unconfirmed--;
    return true;
}

size_t
sched_unconfirmed_of(const sched_t *self, const char *instance)
{
    assert(self && instance);
    const s_inst_t *in = s_inst_get(self->leases, instance);
    return in ? in->n_unconfirmed : 0;
}

size_t
sched_leases_expired(const sched_t *self, int64_t now_ms,
                     sched_lease_t **out)
{
    assert(self && out);
    return s_leases_where(self->leases, NULL, now_ms, out);
}

void
sched_leases_shift(sched_t *self, int64_t delta_ms)
{
    assert(self);
    sched__leases_t *lt = self->leases;
    // The backstop moves too: a stalled broker is not the task's run time.
    for (size_t i = 0; i < lt->n_leases; i++) {
        lt->leases[i].deadline_ms += delta_ms;
        if (lt->leases[i].hard_deadline_ms) {
            lt->leases[i].hard_deadline_ms += delta_ms;
        }
    }
}

int64_t
sched_next_deadline_ms(const sched_t *self)
{
    assert(self);
    const sched__leases_t *lt = self->leases;
    if (lt->n_leases == 0) {
        return -1;
    }
    int64_t best = lt->leases[0].deadline_ms;
    for (size_t i = 1; i < lt->n_leases; i++) {
        if (lt->leases[i].deadline_ms < best) {
            best = lt->leases[i].deadline_ms;
        }
    }
    return best;
}

const sched_lease_t *
sched_lease_of_task(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const sched__leases_t *lt = self->leases;
    for (size_t i = 0; i < lt->n_leases; i++) {
        if (lt->leases[i].plan == plan && lt->leases[i].idx == idx) {
            return &lt->leases[i];
        }
    }
    return NULL;
}
