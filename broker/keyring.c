// keyring: the broker's allow lists at run time.
//
// keys.c loads the lists; auth.c admits handshakes against them.  This file
// changes them while the broker runs: on SIGHUP (seen by the loop, never
// acted on in the signal handler) it reloads DIR/broker/allow in place,
// logs which keys were added and removed, and cuts off the drones whose
// keys are gone: their leases are released (no attempt used) and STOPped,
// and the drones forgotten.  ZAP runs only at handshake, so a live session
// of a revoked key would otherwise go on: every message is checked against
// the lists by the key its handshake presented (one binary search), and a
// revoked one gets FORBIDDEN.  A reload that fails keeps the old lists.
#include "broker/auth.h"
#include "broker/broker_int.h"

#include "common/log.h"

#include <stdio.h>
#include <string.h>

#define LOG "broker.keys"
// Names listed per line of the reload log; the rest are counted.
#define KEYRING_LOG_NAMES 16

// Appends "role 'name', ..." for entries to buf.
static void
s_names(char *buf, size_t len, const keys_entry_t *e, size_t n)
{
    size_t used = strlen(buf);
    for (size_t i = 0; i < n && i < KEYRING_LOG_NAMES && used < len; i++) {
        used += (size_t) snprintf(buf + used, len - used, "%s%s '%s'",
                                  i ? ", " : "", keys_role_name(e[i].role),
                                  e[i].name);
    }
    if (n > KEYRING_LOG_NAMES && used < len) {
        snprintf(buf + used, len - used, " and %zu more",
                 n - KEYRING_LOG_NAMES);
    }
}

static void
s_log_diff(const broker_t *b, const keys_diff_t *diff)
{
    char added[1536] = "", removed[1536] = "";
    s_names(added, sizeof added, diff->added, diff->n_added);
    s_names(removed, sizeof removed, diff->removed, diff->n_removed);
    if (diff->n_added + diff->n_removed == 0) {
        log_info(LOG, "allow lists reloaded from '%s/broker': unchanged "
                      "(%zu keys)", b->cfg->keys, keys_broker_count(b->keys));
        return;
    }
    log_info(LOG, "allow lists reloaded from '%s/broker' (%zu keys): "
                  "added %zu%s%s; removed %zu%s%s", b->cfg->keys,
             keys_broker_count(b->keys), diff->n_added,
             diff->n_added ? ": " : "", added, diff->n_removed,
             diff->n_removed ? ": " : "", removed);
}

// True when a key authenticated as (role_bit, name) is still admitted so.
static bool
s_admits(const keys_broker_t *kb, unsigned role_bit, const char *name,
         const uint8_t key[32])
{
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        if (auth_role_bit((keys_role_t) r) == role_bit) {
            return keys_broker_admits(kb, (keys_role_t) r, name, key);
        }
    }
    return false;
}

static void
s_cut_drones(broker_t *b)
{
    for (size_t i = 0; i < b->n_drones;) {
        drone_t *d = b->drones[i];
        if (s_admits(b->keys, d->role, d->name, d->key)) {
            i++;
            continue;
        }
        char why[KEYS_NAME_MAX + 32];
        snprintf(why, sizeof why, "key '%s' was revoked", d->name);
        drones_cut(b, d, why);  // forgets drones[i]: do not advance
    }
}

void
keyring_reload(broker_t *b)
{
    keys_diff_t diff;
    char err[1024];
    if (keys_broker_reload(b->keys, b->cfg->keys, &diff, err, sizeof err) <
        0) {
        log_error(LOG, "cannot reload the allow lists, keeping the old "
                       "ones (%zu keys): %s", keys_broker_count(b->keys),
                  err);
        return;
    }
    s_log_diff(b, &diff);
    keys_diff_release(&diff);
    s_cut_drones(b);
}

bool
keyring_admits(const broker_t *b, const router_in_t *in)
{
    return in->role == 0 || s_admits(b->keys, in->role, in->name, in->key);
}

void
keyring_refuse(broker_t *b, const router_in_t *in)
{
    uint64_t req = in->msg ? in->msg->req : in->err.req;
    log_debug(LOG, "message from revoked key '%s' refused", in->name);
    proto_msg_t *e = proto_error_new(req, PROTO_E_FORBIDDEN,
                                     "key '%s' was revoked", in->name);
    broker_queue(b, &in->rid, &e, false);
}
