// events.c: SUBSCRIBE, the event log read out in pages.
//
// The ledger's events table is the source: a console asks for the events
// after the last sequence number it has seen and gets at most
// PROTO_EVENTS_PAGE of them with `next`, the number to ask from next time.
// Because the client keeps the cursor, nothing is missed or repeated across
// a reconnect or a broker restart, and the broker holds no state per
// reader.  The reply waits for the turn's commit like STATUS's, so a page
// never shows an event that a failed commit then takes back.
//
// A follower that has caught up sends wait_ms: its request is parked (one
// per session: a newer one replaces it, so a reader that stops reading
// costs nothing) and answered right after the next commit that adds events
// it wants, or with an empty page at its deadline.  Nothing is pushed that
// was not asked for, so a slow reader never makes the broker buffer.
#include "broker/broker_int.h"
#include "broker/ledger.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

// Parked requests at most (sessions are bounded too; this bounds a flood
// of distinct identities): past it one of them is answered at once, empty.
#define S_MAX_WAITERS 4096

typedef struct {
    proto_events_t *page;
    size_t max;              // events the page may hold
    size_t cap;              // allocated (grown as rows come: most pages
                             // of a follower hold a few events)
    bool more;               // one row past the page was seen
} s_fill_t;

static char *
s_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static bool
s_on_row(void *arg, const ledger_event_row_t *row)
{
    s_fill_t *f = arg;
    if (f->page->n_events == f->max) {
        f->more = true;
        return false;
    }
    if (f->page->n_events == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        f->page->events = xrealloc(f->page->events,
                                   f->cap * sizeof *f->page->events);
    }
    proto_event_t *e = &f->page->events[f->page->n_events++];
    e->seq = row->seq;
    e->at_ms = row->at_ms;
    e->plan = row->plan;
    e->task = s_dup(row->task);
    e->actor = xstrdup(row->actor ? row->actor : "");
    e->kind = xstrdup(row->kind ? row->kind : "");
    e->from = s_dup(row->from);
    e->to = s_dup(row->to);
    e->detail = s_dup(row->detail);
    return true;
}

// Fills *m (an EVENTS) with the page after since.  -1 when the ledger
// failed.
static int
s_fill(broker_t *b, int64_t plan, int64_t since, proto_msg_t *m)
{
    proto_events_t *page = &m->u.events;
    if (since < 0) {
        // "From now": no events, and the cursor to follow from.
        return ledger_events_max(b->ledger, plan, &page->next) == LEDGER_OK
                   ? 0 : -1;
    }
    s_fill_t f = {.page = page, .max = PROTO_EVENTS_PAGE};
    // One row more than a page tells whether another page follows.
    if (ledger_events_page(b->ledger, plan, since,
                           (uint32_t) f.max + 1, s_on_row, &f) != LEDGER_OK) {
        return -1;
    }
    page->more = f.more;
    page->next = page->n_events ? page->events[page->n_events - 1].seq
                                : since;
    return 0;
}

// Answers waiter i (its page, or an empty one) and removes it.
static void
s_answer(broker_t *b, size_t i, proto_msg_t **m)
{
    events_waiter_t *w = &b->waiters[i];
    if (!*m) {
        *m = proto_msg_new(PROTO_MSG_EVENTS);
        (*m)->u.events.next = w->since;
    }
    (*m)->req = w->req;
    broker_queue(b, &w->rid, m, false);
    b->waiters[i] = b->waiters[--b->n_waiters];
}

static void
s_park(broker_t *b, router_in_t *in)
{
    const proto_subscribe_t *s = &in->msg->u.subscribe;
    size_t i = 0;
    while (i < b->n_waiters && (b->waiters[i].rid.len != in->rid.len ||
                                memcmp(b->waiters[i].rid.bytes,
                                       in->rid.bytes, in->rid.len) != 0)) {
        i++;
    }
    if (i == b->n_waiters) {
        if (b->n_waiters == S_MAX_WAITERS) {
            proto_msg_t *none = NULL;
            s_answer(b, 0, &none);
        }
        if (!b->waiters) {
            b->waiters = xcalloc(S_MAX_WAITERS, sizeof *b->waiters);
        }
        i = b->n_waiters++;
    }
    // The session's earlier request was abandoned by its client (a link
    // matches replies by req): it is simply replaced.
    b->waiters[i] = (events_waiter_t){
        .rid = in->rid, .req = in->msg->req, .since = s->since,
        .plan = s->plan, .deadline_ms = b->now_mono + s->wait_ms};
}

void
events_subscribe(broker_t *b, router_in_t *in)
{
    const proto_subscribe_t *s = &in->msg->u.subscribe;
    proto_msg_t *m = proto_msg_new(PROTO_MSG_EVENTS);
    if (s_fill(b, s->plan, s->since, m) < 0) {
        proto_msg_destroy(&m);
        broker_fail_turn(b);
        proto_msg_t *e = proto_error_new(in->msg->req, PROTO_E_INTERNAL,
                                         "the ledger failed; try again");
        broker_queue(b, &in->rid, &e, ledger_in_turn(b->ledger));
        return;
    }
    // Parked only when nothing is there even counting this turn's own
    // writes; what this turn adds reaches it in the fan-out after commit.
    if (m->u.events.n_events == 0 && s->wait_ms > 0 && s->since >= 0) {
        proto_msg_destroy(&m);
        s_park(b, in);
        return;
    }
    m->req = in->msg->req;
    broker_queue(b, &in->rid, &m, ledger_in_turn(b->ledger));
}

void
events_fanout(broker_t *b)
{
    for (size_t i = 0; i < b->n_waiters;) {
        events_waiter_t *w = &b->waiters[i];
        proto_msg_t *m = proto_msg_new(PROTO_MSG_EVENTS);
        if (s_fill(b, w->plan, w->since, m) < 0 ||
            m->u.events.n_events == 0) {
            // A failed read leaves it parked: its deadline still ends it.
            proto_msg_destroy(&m);
            i++;
            continue;
        }
        s_answer(b, i, &m);
    }
}

void
events_expire(broker_t *b)
{
    for (size_t i = 0; i < b->n_waiters;) {
        if (b->waiters[i].deadline_ms > b->now_mono) {
            i++;
            continue;
        }
        proto_msg_t *none = NULL;
        s_answer(b, i, &none);
    }
}

int64_t
events_next_deadline_ms(const broker_t *b)
{
    int64_t next = -1;
    for (size_t i = 0; i < b->n_waiters; i++) {
        if (next < 0 || b->waiters[i].deadline_ms < next) {
            next = b->waiters[i].deadline_ms;
        }
    }
    return next;
}

void
events_forget(broker_t *b)
{
    free(b->waiters);
    b->waiters = NULL;
    b->n_waiters = 0;
}
