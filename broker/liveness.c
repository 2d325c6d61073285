// liveness: when the broker gives up on a lease, or on a drone.
//
// A lease ends at its deadline (the grant or its last renewal + lease_ms),
// or at its timeout backstop.  A drone is *gone* once its connection has
// closed and it has said nothing since for S_CLOSED_BEATS heartbeats, or
// since PROTO_LIVENESS_BEATS heartbeats before.  A ROUTER reports no
// disconnect, so a close is learnt from the socket monitor (router_closed:
// the descriptor, matched against the one the drone's messages came on) or
// from a send that found the session gone.  A dead process's connection is
// closed by its kernel at once; a dead host's or a cut link's by the
// broker's kernel once the HEARTBEATs it sends there go unacknowledged
// (router.c, TCP_USER_TIMEOUT).  A live drone's kernel acknowledges them
// however busy or stopped the drone is: such a drone keeps its leases until
// they lapse.  The grace after a close lets a live drone whose connection
// was reset reconnect and say HELLO, and tells a descriptor reused by a
// newer connection apart: any message clears the close.
//
// A gone drone's leases end at once, so its tasks run elsewhere within
// seconds rather than after lease_ms (PROTOCOL.md 7.5).  Each is *lost*, as
// a lease never confirmed is: the first loss of a task uses no attempt, a
// later one does (a task that kills every drone it lands on still dies).
// A drone cut off by a partition may still be running its copy: the token
// fences its late RESULT (stale).  The drone is forgotten (a quarantined
// one only unbound, trust.c); leases lost this way do not count towards a
// quarantine, which is for a live drone whose TASKs keep getting lost.
// Decisions are taken only once the turn's input was drained, so messages
// waiting in the socket are seen first.
#include "broker/broker_int.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.liveness"

// Heartbeats a drone whose connection closed has to speak again.
#define S_CLOSED_BEATS 2

typedef enum {
    S_LAPSED,      // the lease's own deadline passed
    S_GONE,        // its drone is gone
} s_why_t;

static bool
s_bound(const drone_t *d)
{
    return d->rid.len > 0;
}

// When d is gone, or -1 while its connection is not known closed.
static int64_t
s_deadline(const broker_t *b, const drone_t *d)
{
    if (!d->closed_ms) {
        return -1;
    }
    int64_t hb = b->cfg->heartbeat_ms;
    int64_t silent = d->last_seen_ms + PROTO_LIVENESS_BEATS * hb;
    int64_t grace = d->closed_ms + S_CLOSED_BEATS * hb;
    return silent < grace ? silent : grace;
}

void
liveness_seen(broker_t *b, drone_t *d, int fd)
{
    d->last_seen_ms = b->now_mono;
    d->connected = true;
    d->closed_ms = 0;
    if (fd >= 0) {
        d->fd = fd;
    }
}

void
liveness_closed(broker_t *b, drone_t *d)
{
    d->connected = false;
    if (!d->closed_ms) {
        d->closed_ms = b->now_mono;
        log_debug(LOG, "drone '%s' instance %s: connection closed",
                  d->name, d->instance);
    }
}

void
liveness_closed_fds(broker_t *b, const int *fds, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < b->n_drones; i++) {
            drone_t *d = b->drones[i];
            if (s_bound(d) && d->fd == fds[k] && !d->closed_ms) {
                // Not connected=false: on a reused descriptor the drone
                // may be alive, and its next message says so.
                d->closed_ms = b->now_mono;
                log_debug(LOG, "drone '%s' instance %s: connection closed "
                               "(descriptor %d)", d->name, d->instance,
                          fds[k]);
            }
        }
    }
}

bool
liveness_alive(const broker_t *b, const drone_t *d)
{
    return s_bound(d) && d->connected && !d->closed_ms &&
           b->now_mono - d->last_seen_ms <=
               PROTO_LIVENESS_BEATS * b->cfg->heartbeat_ms;
}

int64_t
liveness_next_deadline_ms(const broker_t *b)
{
    int64_t next = -1;
    for (size_t i = 0; i < b->n_drones; i++) {
        const drone_t *d = b->drones[i];
        int64_t dl = s_bound(d) ? s_deadline(b, d) : -1;
        if (dl >= 0 && (next < 0 || dl < next)) {
            next = dl;
        }
    }
    return next;
}

void
liveness_shift(broker_t *b, int64_t delta_ms)
{
    for (size_t i = 0; i < b->n_drones; i++) {
        drone_t *d = b->drones[i];
        d->last_seen_ms += delta_ms;
        if (d->closed_ms) {
            d->closed_ms += delta_ms;
        }
    }
}

// The task's lost leases so far; on a ledger error, as if it had lost one
// (the end then uses an attempt, as it did before leases were lost).
static uint32_t
s_lost_before(broker_t *b, const sched_lease_t *l)
{
    const workplan_t *wp = sched_workplan(b->sched, l->plan);
    uint32_t n = 1;
    if (wp && ledger_task_lost_leases(b->ledger, l->plan,
                                      wp->tasks[l->idx].id, &n) != LEDGER_OK) {
        n = 1;
    }
    return n;
}

// How a lease ends (PROTOCOL.md section 7.5).  Past the task's timeout it
// failed.  Never confirmed by its holder, or held by a drone that is gone,
// it was lost: the first loss of a task uses no attempt (a drone that
// swallows its pushes, or dies, must not burn everyone's retries), a later
// one does.  Else the holder stopped renewing it: expired.
static void
s_ending(broker_t *b, const sched_lease_t *l, s_why_t cause, char *why,
         size_t len, ledger_attempt_end_t *end)
{
    bool backstop = l->hard_deadline_ms &&
                    b->now_mono >= l->hard_deadline_ms;
    bool lost = !backstop && (!l->confirmed || cause == S_GONE);
    bool first = lost && s_lost_before(b, l) == 0;
    const char *again = first ? "; no attempt used the first time"
                              : " (again)";
    if (backstop) {
        snprintf(why, len, "ran past its timeout (broker backstop)");
    } else if (cause == S_GONE) {
        snprintf(why, len, "lease lost: the connection of drone instance %s "
                           "closed%s", l->instance, again);
    } else if (lost) {
        snprintf(why, len, "lease lost: drone instance %s never confirmed "
                           "the task%s", l->instance, again);
    } else {
        snprintf(why, len, "lease expired: no heartbeat from drone '%s' "
                           "listing it", l->instance);
    }
    *end = (ledger_attempt_end_t){
        .outcome = backstop ? LEDGER_ATTEMPT_FAILED
                   : first  ? LEDGER_ATTEMPT_RELEASED
                            : LEDGER_ATTEMPT_EXPIRED,
        .timed_out = backstop,
        .error = why,
        .lost = lost};
}

// Ends lease l (its holder d, or NULL) for cause.  False when the ledger
// failed (the turn is failed).
static bool
s_end(broker_t *b, sched_lease_t *l, drone_t *d, s_why_t cause)
{
    char why[200];
    ledger_attempt_end_t end;
    s_ending(b, l, cause, why, sizeof why, &end);
    const workplan_t *wp = sched_workplan(b->sched, l->plan);
    const char *task = wp ? wp->tasks[l->idx].id : "?";
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", l->plan),
                                  LOG_STR("task", task),
                                  LOG_INT("token", l->token),
                                  LOG_STR("drone", l->instance)),
                  "task '%s' of plan %lld: %s", task, (long long) l->plan,
                  why);
    if (d && wp && s_bound(d)) {
        drones_stop(b, &d->rid, l->plan, wp->tasks[l->idx].id, l->token,
                    end.timed_out ? "timeout" : "expired", true);
    }
    // Only a live drone's lapsed TASKs count against it (trust.c): a drone
    // that died or was cut off with fresh pushes in flight swallowed none.
    bool swallowed = !l->confirmed && cause == S_LAPSED;
    ledger_rc_t rc = broker_begin(b) ? plans_finish(b, l, &end, "broker")
                                     : LEDGER_ERROR;
    if (rc == LEDGER_ERROR) {
        broker_fail_turn(b);
        return false;
    }
    // Lapsed leases and those of a drone gone are counted apart: the first
    // say a drone or a task is slow, the second that drones die.
    if (rc == LEDGER_OK) {
        metrics_add(b->metrics, cause == S_LAPSED ? METRIC_LEASES_EXPIRED
                                                  : METRIC_LEASES_DRONE_GONE,
                    0, 1);
    }
    if (swallowed && d) {
        trust_lost(b, d);
    }
    return true;
}

void
liveness_expire(broker_t *b)
{
    sched_lease_t *gone = NULL;
    size_t n = sched_leases_expired(b->sched, b->now_mono, &gone);
    for (size_t i = 0; i < n && !b->turn_failed; i++) {
        if (!s_end(b, &gone[i], drones_find(b, gone[i].instance),
                   S_LAPSED)) {
            break;
        }
    }
    free(gone);
}

// d is gone: its leases end now, and it leaves.
static void
s_gone(broker_t *b, drone_t *d)
{
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, d->instance, &mine);
    log_info_with(LOG, LOG_FIELDS(LOG_STR("drone", d->instance),
                                  LOG_STR("key", d->name)),
                  "drone '%s' instance %s gone: its connection closed %lld "
                  "ms ago, silent for %lld ms; %zu leases end now", d->name,
                  d->instance, (long long) (b->now_mono - d->closed_ms),
                  (long long) (b->now_mono - d->last_seen_ms), n);
    for (size_t i = 0; i < n && s_end(b, &mine[i], d, S_GONE); i++) {
    }
    free(mine);
    metrics_add(b->metrics, METRIC_DRONES_GONE, 0, 1);
    drones_leave(b, d);
}

void
liveness_check(broker_t *b)
{
    for (size_t i = 0; i < b->n_drones && !b->turn_failed;) {
        drone_t *d = b->drones[i];
        int64_t dl = s_bound(d) ? s_deadline(b, d) : -1;
        if (dl < 0 || b->now_mono < dl) {
            i++;
            continue;
        }
        s_gone(b, d);
        // Forgotten: another drone took its place at i.  Kept (a
        // quarantined one, now unbound): move on.
        if (i < b->n_drones && b->drones[i] == d) {
            i++;
        }
    }
}
