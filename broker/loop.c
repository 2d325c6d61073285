// loop: readable sources and deadline sources around zmq_poll.
//
// Sources live in two arrays in registration order.  A removal inside a
// callback only marks the entry dead; the arrays are compacted when the
// dispatch is over, so the indexes a dispatch walks stay valid.
#include "broker/loop.h"

#include "common/clock.h"
#include "common/xalloc.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <zmq.h>

typedef struct {
    void *sock;                 // a ZeroMQ socket, or NULL for fd
    int fd;                     // when sock is NULL
    unsigned flags;             // LOOP_*
    loop_read_fn *fn;           // may be NULL: readiness only ends the wait
    void *arg;
    bool live;                  // false once removed
} s_io_t;

typedef struct {
    int id;
    loop_next_fn *next;
    loop_fire_fn *fire;         // may be NULL: a query only
    void *arg;
    bool live;
} s_deadline_t;

// A due deadline source, for sorting.
typedef struct {
    int64_t deadline_ms;
    size_t idx;
} s_due_t;

struct loop {
    s_io_t *io;                 // readable sources
    size_t n_io, cap_io;
    zmq_pollitem_t *items;      // this pass's poll set
    size_t *item_io;            // items[k] polls io[item_io[k]]
    size_t cap_items;
    s_deadline_t *dl;           // deadline sources
    size_t n_dl, cap_dl;
    s_due_t *due;               // scratch for the due ones
    size_t cap_due;
    int last_id;                // ids of deadline sources
    bool busy;                  // dispatching: removals only mark
    bool dirty;                 // something was marked dead
};

loop_t *
loop_new(void)
{
    return xcalloc(1, sizeof(loop_t));
}

void
loop_destroy(loop_t **self_p)
{
    loop_t *self = *self_p;
    if (!self) {
        return;
    }
    free(self->io);
    free(self->items);
    free(self->item_io);
    free(self->dl);
    free(self->due);
    free(self);
    *self_p = NULL;
}

static s_io_t *
s_find_io(loop_t *self, void *sock, int fd)
{
    for (size_t i = 0; i < self->n_io; i++) {
        s_io_t *io = &self->io[i];
        if (io->live && io->sock == sock && (sock || io->fd == fd)) {
            return io;
        }
    }
    return NULL;
}

static void
s_add_io(loop_t *self, void *sock, int fd, unsigned flags, loop_read_fn *fn,
         void *arg)
{
    assert(!s_find_io(self, sock, fd));
    if (self->n_io == self->cap_io) {
        self->cap_io = self->cap_io ? self->cap_io * 2 : 8;
        self->io = xrealloc(self->io, self->cap_io * sizeof *self->io);
    }
    self->io[self->n_io++] = (s_io_t){sock, fd, flags, fn, arg, true};
}

void
loop_add_fd(loop_t *self, int fd, unsigned flags, loop_read_fn *fn,
            void *arg)
{
    assert(fd >= 0);
    s_add_io(self, NULL, fd, flags, fn, arg);
}

void
loop_add_socket(loop_t *self, void *sock, unsigned flags, loop_read_fn *fn,
                void *arg)
{
    assert(sock);
    s_add_io(self, sock, -1, flags, fn, arg);
}

// Drops the dead entries, keeping the order.  Only outside a dispatch.
static void
s_compact(loop_t *self)
{
    size_t k = 0;
    for (size_t i = 0; i < self->n_io; i++) {
        if (self->io[i].live) {
            self->io[k++] = self->io[i];
        }
    }
    self->n_io = k;
    k = 0;
    for (size_t i = 0; i < self->n_dl; i++) {
        if (self->dl[i].live) {
            self->dl[k++] = self->dl[i];
        }
    }
    self->n_dl = k;
    self->dirty = false;
}

static void
s_mark_dead(loop_t *self, bool *live)
{
    *live = false;
    self->dirty = true;
    if (!self->busy) {
        s_compact(self);
    }
}

static int
s_remove_io(loop_t *self, void *sock, int fd)
{
    s_io_t *io = s_find_io(self, sock, fd);
    if (!io) {
        return -1;
    }
    s_mark_dead(self, &io->live);
    return 0;
}

int
loop_remove_fd(loop_t *self, int fd)
{
    return s_remove_io(self, NULL, fd);
}

int
loop_remove_socket(loop_t *self, void *sock)
{
    assert(sock);
    return s_remove_io(self, sock, -1);
}

int
loop_add_deadline(loop_t *self, loop_next_fn *next, loop_fire_fn *fire,
                  void *arg)
{
    assert(next);
    if (self->n_dl == self->cap_dl) {
        self->cap_dl = self->cap_dl ? self->cap_dl * 2 : 8;
        self->dl = xrealloc(self->dl, self->cap_dl * sizeof *self->dl);
    }
    int id = ++self->last_id;
    self->dl[self->n_dl++] = (s_deadline_t){id, next, fire, arg, true};
    return id;
}

int
loop_remove_deadline(loop_t *self, int id)
{
    for (size_t i = 0; i < self->n_dl; i++) {
        if (self->dl[i].live && self->dl[i].id == id) {
            s_mark_dead(self, &self->dl[i].live);
            return 0;
        }
    }
    return -1;
}

int64_t
loop_next_deadline_ms(loop_t *self)
{
    int64_t next = -1;
    for (size_t i = 0; i < self->n_dl; i++) {
        if (!self->dl[i].live) {
            continue;
        }
        int64_t d = self->dl[i].next(self->dl[i].arg);
        if (d >= 0 && (next < 0 || d < next)) {
            next = d;
        }
    }
    return next;
}

// The wait until the earliest deadline, capped by max_wait_ms.
static int64_t
s_wait_ms(loop_t *self, int64_t max_wait_ms, int64_t now)
{
    int64_t next = loop_next_deadline_ms(self);
    if (next < 0) {
        return max_wait_ms;
    }
    int64_t wait = next > now ? next - now : 0;
    return max_wait_ms >= 0 && max_wait_ms < wait ? max_wait_ms : wait;
}

// Fills the poll set from the live sources; returns its size.
static size_t
s_fill_items(loop_t *self)
{
    if (self->cap_items < self->n_io) {
        self->cap_items = self->n_io;
        self->items = xrealloc(self->items,
                               self->cap_items * sizeof *self->items);
        self->item_io = xrealloc(self->item_io,
                                 self->cap_items * sizeof *self->item_io);
    }
    size_t n = 0;
    for (size_t i = 0; i < self->n_io; i++) {
        const s_io_t *io = &self->io[i];
        if (io->live) {
            self->items[n] = (zmq_pollitem_t){io->sock, io->fd, ZMQ_POLLIN, 0};
            self->item_io[n++] = i;
        }
    }
    return n;
}

// Calls the ready sources; true when one of them ends the wait.
static bool
s_dispatch(loop_t *self, size_t n)
{
    bool wake = false;
    for (size_t k = 0; k < n; k++) {
        // An error counts as readable: the reader sees it, and the loop
        // does not spin on a descriptor nobody looks at.
        if (!(self->items[k].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
            continue;
        }
        s_io_t io = self->io[self->item_io[k]];  // a callback may realloc
        if (!io.live) {
            continue;  // removed by an earlier callback of this pass
        }
        if (!(io.flags & LOOP_QUIET)) {
            wake = true;
        }
        if (io.fn) {
            io.fn(self, io.arg);
        }
    }
    return wake;
}

static void
s_poll(loop_t *self, int64_t wait_ms)
{
    int64_t until = wait_ms < 0 ? -1 : clock_mono_ms() + wait_ms;
    for (;;) {
        size_t n = s_fill_items(self);
        int rc = zmq_poll(self->items, (int) n, wait_ms < 0 ? -1L
                                                            : (long) wait_ms);
        if (rc <= 0) {
            return;  // timed out, or a signal: the caller decides
        }
        if (s_dispatch(self, n)) {
            return;
        }
        // Only quiet sources: wait on, but never past the same deadline.
        if (until >= 0) {
            int64_t left = until - clock_mono_ms();
            wait_ms = left > 0 ? left : 0;
        }
    }
}

static int
s_due_cmp(const void *a, const void *b)
{
    const s_due_t *x = a, *y = b;
    if (x->deadline_ms != y->deadline_ms) {
        return x->deadline_ms < y->deadline_ms ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Fires the due deadline sources, earliest first.  Each is asked again
// just before it fires: an earlier one may have moved or removed it.
static void
s_fire_due(loop_t *self)
{
    int64_t now = clock_mono_ms();
    size_t n = 0, n_dl = self->n_dl;
    if (self->cap_due < n_dl) {
        self->cap_due = n_dl;
        self->due = xrealloc(self->due, self->cap_due * sizeof *self->due);
    }
    for (size_t i = 0; i < n_dl; i++) {
        const s_deadline_t *d = &self->dl[i];
        int64_t at = d->live && d->fire ? d->next(d->arg) : -1;
        if (at >= 0 && at <= now) {
            self->due[n++] = (s_due_t){at, i};
        }
    }
    if (n > 1) {
        qsort(self->due, n, sizeof *self->due, s_due_cmp);
    }
    for (size_t k = 0; k < n; k++) {
        s_deadline_t d = self->dl[self->due[k].idx];
        int64_t at = d.live ? d.next(d.arg) : -1;
        if (at >= 0 && at <= now) {
            d.fire(self, d.arg, now);
        }
    }
}

int64_t
loop_run_once(loop_t *self, int64_t max_wait_ms)
{
    assert(!self->busy);  // not from a callback
    int64_t wait_ms = s_wait_ms(self, max_wait_ms, clock_mono_ms());
    self->busy = true;
    s_poll(self, wait_ms);
    s_fire_due(self);
    self->busy = false;
    if (self->dirty) {
        s_compact(self);
    }
    return wait_ms;
}
