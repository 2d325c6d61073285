// trust: what the broker believes of each drone instance — that a HELLO
// really comes from it (its session secret), how far ahead of its
// acknowledgements it may be pushed (its credit window), and whether it is
// quarantined because the leases it was given keep getting lost.
//
// Session secrets (PROTOCOL.md section 7.1): the first HELLO of an instance
// gets 32 random bytes (hex) in its WELCOME; only their hash is kept, in
// the ledger (drones.secret_hash), so it holds across broker restarts.  A
// later HELLO for that instance on any other session must present them.
// An instance id is not a credential (a task can learn it); the secret
// never leaves the drone's memory.
//
// Credit window and quarantine (sections 7.3 and 7.5): a drone may hold at
// most `window` leases it has not confirmed; the window starts at
// TRUST_WINDOW_START, grows by one per confirmation and halves per lost
// lease.  TRUST_QUARANTINE_STREAK lost leases in a row without an accepted
// RESULT quarantine the instance: no pushes for TRUST_COOLOFF_LEASES lease
// times, then one lease on probation.
//
// Never touches a socket or SQLite directly: replies go through
// broker_queue, durable state through the ledger module.
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.trust"

#define TRUST_SECRET_BYTES 32
#define TRUST_WINDOW_START 8
#define TRUST_WINDOW_MAX 1024
#define TRUST_QUARANTINE_STREAK 3
#define TRUST_COOLOFF_LEASES 5

static void
s_hash(const char *secret, char hex[65])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, (const uint8_t *) secret, strlen(secret),
                       NULL, 0);
    sodium_bin2hex(hex, 65, h, sizeof h);
}

static bool
s_secret_matches(const char *presented, const char stored[65])
{
    if (!presented || strlen(stored) != 64) {
        return false;
    }
    char hex[65];
    s_hash(presented, hex);
    return sodium_memcmp(hex, stored, 64) == 0;
}

static void
s_refuse(broker_t *b, router_in_t *in, const char *instance)
{
    proto_msg_t *e = proto_error_new(
        in->msg->req, PROTO_E_FORBIDDEN,
        "instance %s: missing or wrong session secret", instance);
    broker_queue(b, &in->rid, &e, false);
    broker_refused(b, in, "refused HELLO as instance %s from key '%s': "
                          "missing or wrong session secret",
                   instance, in->name);
}

static void
s_internal(broker_t *b, router_in_t *in)
{
    proto_msg_t *e = proto_error_new(in->msg->req, PROTO_E_INTERNAL,
                                     "the ledger could not be read; try "
                                     "again");
    broker_queue(b, &in->rid, &e, false);
}

// A fresh secret for the WELCOME (caller frees) and its hash.
static char *
s_issue(char hash[65])
{
    uint8_t raw[TRUST_SECRET_BYTES];
    randombytes_buf(raw, sizeof raw);
    char *secret = xmalloc(2 * sizeof raw + 1);
    sodium_bin2hex(secret, 2 * sizeof raw + 1, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    s_hash(secret, hash);
    return secret;
}

int
trust_hello(broker_t *b, const drone_t *known, router_in_t *in,
            char **issued, char hash[65])
{
    const proto_hello_t *h = &in->msg->u.hello;
    *issued = NULL;
    hash[0] = '\0';
    char stored[65] = "";
    ledger_rc_t rc = ledger_drone_secret(b->ledger, h->instance, stored);
    if (rc == LEDGER_ERROR) {
        s_internal(b, in);
        return -1;
    }
    if (rc != LEDGER_OK || !stored[0]) {
        // New to the ledger (or its secret was never committed): issue one.
        *issued = s_issue(hash);
        return 0;
    }
    // The session that is bound to the instance already proved it.
    if (known && wire_rid_equal(&known->rid, &in->rid)) {
        return 0;
    }
    if (!s_secret_matches(h->secret, stored)) {
        s_refuse(b, in, h->instance);
        return -1;
    }
    return 0;
}

void
trust_init(drone_t *d)
{
    d->window = TRUST_WINDOW_START;
}

void
trust_confirmed(drone_t *d)
{
    if (d->window < TRUST_WINDOW_MAX) {
        d->window++;
    }
}

void
trust_result(drone_t *d)
{
    if (d->quarantined || d->lost_streak >= TRUST_QUARANTINE_STREAK) {
        log_info(LOG, "drone '%s' instance %s finished work: quarantine "
                      "lifted", d->name, d->instance);
    }
    d->lost_streak = 0;
    d->quarantined = false;
}

void
trust_lost(broker_t *b, drone_t *d)
{
    d->window = d->window > 1 ? d->window / 2 : 1;
    if (++d->lost_streak < TRUST_QUARANTINE_STREAK || d->quarantined) {
        return;
    }
    int64_t cool = TRUST_COOLOFF_LEASES * b->cfg->lease_ms;
    d->quarantined = true;
    d->quarantine_end_ms = b->now_mono + cool;
    log_warn(LOG, "drone '%s' instance %s quarantined: %u leases in a row "
                  "lost (pushed, never confirmed, no result); no new tasks "
                  "for %lld s", d->name, d->instance, d->lost_streak,
             (long long) (cool / 1000));
}

bool
trust_is_quarantined(broker_t *b, drone_t *d)
{
    if (d->quarantined && b->now_mono >= d->quarantine_end_ms) {
        // On probation: one lease; losing it quarantines again at once, as
        // the streak stands until a RESULT is accepted.
        d->quarantined = false;
        d->window = 1;
        log_info(LOG, "drone '%s' instance %s: quarantine cool-off over; "
                      "one task on probation", d->name, d->instance);
    }
    return d->quarantined;
}

size_t
trust_credit(broker_t *b, drone_t *d)
{
    if (trust_is_quarantined(b, d)) {
        return 0;
    }
    size_t held = sched_lease_count_of(b->sched, d->instance);
    size_t unconfirmed = sched_unconfirmed_of(b->sched, d->instance);
    size_t by_slots = held < d->slots ? d->slots - held : 0;
    size_t by_window = unconfirmed < d->window ? d->window - unconfirmed : 0;
    return by_slots < by_window ? by_slots : by_window;
}
