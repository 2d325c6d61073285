// events.c: SUBSCRIBE, the event log read out in pages.
//
// The ledger's events table is the source: a console asks for the events
// after the last sequence number it has seen and gets at most
// PROTO_EVENTS_PAGE of them with `next`, the number to ask from next time.
// Because the client keeps the cursor, nothing is missed or repeated across
// a reconnect or a broker restart, and the broker holds no state per
// reader.  The reply waits for the turn's commit like STATUS's, so a page
// never shows an event that a failed commit then takes back.
#include "broker/broker_int.h"
#include "broker/ledger.h"
#include "common/xalloc.h"

#include <string.h>

typedef struct {
    proto_events_t *page;
    size_t cap;              // events the page may hold
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
    if (f->page->n_events == f->cap) {
        f->more = true;
        return false;
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
    s_fill_t f = {.page = page, .cap = PROTO_EVENTS_PAGE};
    page->events = xcalloc(f.cap, sizeof *page->events);
    // One row more than a page tells whether another page follows.
    if (ledger_events_page(b->ledger, plan, since,
                           (uint32_t) f.cap + 1, s_on_row, &f) != LEDGER_OK) {
        return -1;
    }
    page->more = f.more;
    page->next = page->n_events ? page->events[page->n_events - 1].seq
                                : since;
    return 0;
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
    m->req = in->msg->req;
    broker_queue(b, &in->rid, &m, ledger_in_turn(b->ledger));
}
