// scrape: what the broker answers on its --metrics listener.
//
// GET /metrics sets the gauges from their sources — the ledger's counts by
// state, what committed turns wrote (ledger_tally), the drone registry,
// the ZAP handler's refusals, the ledger file's size — and returns
// metrics_format's text.  GET /healthz says whether the ledger answers.
// Scrapes run between turns (loop callbacks), so they read only committed
// state; they never write.
#include "broker/broker_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LOG "broker.metrics"

static void
s_ledger_counts(broker_t *b)
{
    int64_t tasks[PROTO_TASK__COUNT], plans[LEDGER_PLAN_CANCELLED + 1];
    if (ledger_state_counts(b->ledger, tasks, plans) != LEDGER_OK) {
        return;  // logged by the ledger; the last figures stand
    }
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        metrics_set(b->metrics, METRIC_TASKS, i, tasks[i]);
    }
    for (size_t i = 0; i <= LEDGER_PLAN_CANCELLED; i++) {
        metrics_set(b->metrics, METRIC_PLANS, i, plans[i]);
    }
    metrics_set(b->metrics, METRIC_GATES_WAITING, 0,
                tasks[PROTO_TASK_AWAITING_APPROVAL]);
}

static void
s_tally(broker_t *b)
{
    const ledger_tally_t *t = ledger_tally(b->ledger);
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        metrics_set(b->metrics, METRIC_TRANSITIONS, i, (int64_t) t->moves[i]);
    }
    // Label 0 is the first ended outcome (metrics.def).
    for (size_t o = LEDGER_ATTEMPT_SUCCEEDED; o <= LEDGER_ATTEMPT_CANCELLED;
         o++) {
        metrics_set(b->metrics, METRIC_RESULTS, o - 1, (int64_t) t->ended[o]);
    }
}

static void
s_drones(broker_t *b, int64_t now_mono)
{
    int64_t connected = 0, quarantined = 0, slots = 0, used = 0;
    for (size_t i = 0; i < b->n_drones; i++) {
        const drone_t *d = b->drones[i];
        if (!d->connected) {
            continue;
        }
        connected++;
        // Read, not trust_is_quarantined: a scrape changes nothing.
        quarantined += d->quarantined && now_mono < d->quarantine_end_ms;
        slots += d->slots;
        used += (int64_t) sched_lease_count_of(b->sched, d->instance);
    }
    metrics_set(b->metrics, METRIC_DRONES_CONNECTED, 0, connected);
    metrics_set(b->metrics, METRIC_DRONES_QUARANTINED, 0, quarantined);
    metrics_set(b->metrics, METRIC_SLOTS, 0, slots);
    metrics_set(b->metrics, METRIC_SLOTS_USED, 0, used);
}

// The ledger file and its WAL: what the volume under it must hold.
static int64_t
s_ledger_bytes(const char *db)
{
    struct stat st;
    int64_t n = stat(db, &st) == 0 ? (int64_t) st.st_size : 0;
    char *wal = xasprintf("%s-wal", db);
    n += stat(wal, &st) == 0 ? (int64_t) st.st_size : 0;
    free(wal);
    return n;
}

void
scrape_refresh(broker_t *b)
{
    s_ledger_counts(b);
    s_tally(b);
    s_drones(b, clock_mono_ms());
    for (size_t r = 0; b->router && r < AUTH_REFUSE__COUNT; r++) {
        metrics_set(b->metrics, METRIC_HANDSHAKES_REFUSED, r,
                    (int64_t) router_refused(b->router, (auth_refuse_t) r));
    }
    metrics_set(b->metrics, METRIC_LEDGER_SIZE, 0,
                s_ledger_bytes(b->cfg->db));
}

// Whether the ledger answers a read (and memory is not waiting for a
// rebuild that keeps failing).
static bool
s_healthy(broker_t *b)
{
    int64_t seq;
    return !b->rebuild && ledger_events_max(b->ledger, 0, &seq) == LEDGER_OK;
}

static void
s_get(void *arg, const char *path, httpd_reply_t *r)
{
    broker_t *b = arg;
    if (strcmp(path, "/metrics") == 0) {
        scrape_refresh(b);
        r->status = 200;
        r->type = "text/plain; version=0.0.4; charset=utf-8";
        r->body = metrics_format(b->metrics, &r->len);
    } else if (strcmp(path, "/healthz") == 0) {
        bool ok = s_healthy(b);
        r->status = ok ? 200 : 503;
        r->body = xstrdup(ok ? "ok\n" : "ledger unavailable\n");
        r->len = strlen(r->body);
    }
}

int
scrape_start(broker_t *b, char *err, size_t errlen)
{
    if (!b->cfg->metrics || !*b->cfg->metrics) {
        return 0;
    }
    if (httpd_open(&b->httpd, b->loop, b->cfg->metrics, s_get, b, err,
                   errlen) < 0) {
        return -1;
    }
    log_info(LOG, "metrics on http://%s/metrics", httpd_address(b->httpd));
    return 0;
}

void
scrape_stop(broker_t *b)
{
    httpd_destroy(&b->httpd);
}
