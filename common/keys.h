// keys: CurveZMQ key bundles by role (DESIGN.md "Keys and roles").
//
// Layout of a key directory DIR (keys_generate makes a complete local set):
//   DIR/broker/broker.key             the broker's public certificate
//   DIR/broker/broker.key_secret      the broker's secret certificate (0600)
//   DIR/broker/broker.pid             the running broker's pid, locked
//   DIR/broker/allow/drone/NAME.key   public keys admitted as role drone
//   DIR/broker/allow/submitter/NAME.key
//   DIR/broker/allow/operator/NAME.key
//   DIR/broker/revoked/ROLE/NAME.key  revoked keys (their names stay taken)
//   DIR/ROLE/NAME.key_secret          a client's secret certificate (0600)
//   DIR/ROLE/NAME.key                 its public certificate
//   DIR/ROLE/broker.key               the broker's public certificate
//   DIR/bundles/NAME/ROLE/...         the same three files for a key made
//                                     by keys_add: what one host gets
// for ROLE in drone, submitter, operator.  A key's NAME (its file name) is
// the identity the ledger records; keys_add keeps names unique across
// roles.  Certificates are czmq zcert files.  A secret readable by group or
// others is refused.  Directories are made 0700.
#ifndef WAGGLE_KEYS_H
#define WAGGLE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KEYS_ROLE_DRONE = 0,
    KEYS_ROLE_SUBMITTER,
    KEYS_ROLE_OPERATOR,
    KEYS_ROLE__COUNT
} keys_role_t;

#define KEYS_NAME_MAX 64

typedef struct {
    char name[KEYS_NAME_MAX + 1];  // the key's name
    char public_z85[41];           // this client's public key
    char secret_z85[41];           // this client's secret key
    char broker_z85[41];           // the broker's public key
} keys_client_t;

typedef struct {
    uint8_t public_key[32];        // binary, as ZAP presents it
    keys_role_t role;
    char name[KEYS_NAME_MAX + 1];
} keys_entry_t;

typedef struct keys_broker keys_broker_t;

// One key of a key directory, for listing.
typedef struct {
    keys_role_t role;
    char name[KEYS_NAME_MAX + 1];
    char public_z85[41];
    bool revoked;                  // in broker/revoked/, not admitted
} keys_info_t;

// What a reload changed: entries admitted now that were not before, and
// entries no longer admitted (a key whose file changed is both).
typedef struct {
    keys_entry_t *added;           // owned
    size_t n_added;
    keys_entry_t *removed;         // owned
    size_t n_removed;
} keys_diff_t;

const char *keys_role_name(keys_role_t role);      // "drone"
int keys_role_parse(const char *s, keys_role_t *out);
// True when name matches [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}.
bool keys_name_is_valid(const char *name);

// Loads DIR/ROLE: its one NAME.key_secret and broker.key.  Returns 0 or -1
// with err saying which file and what is wrong ("no secret key in
// 'k/drone'", "'k/drone/x.key_secret' is readable by others (mode 0644);
// chmod 600 it").
int keys_load_client(const char *dir, keys_role_t role, keys_client_t *out,
                     char *err, size_t errlen);

// Loads DIR/broker: the secret certificate and every allow list.  The same
// public key under two roles or names is refused.
int keys_load_broker(const char *dir, keys_broker_t **out, char *err,
                     size_t errlen);
void keys_broker_destroy(keys_broker_t **self_p);
const char *keys_broker_public(const keys_broker_t *kb);   // z85
const char *keys_broker_secret(const keys_broker_t *kb);   // z85
size_t keys_broker_count(const keys_broker_t *kb);
// The allow-list entry for a 32-byte public key, or NULL (borrowed).
const keys_entry_t *keys_broker_lookup(const keys_broker_t *kb,
                                       const uint8_t public_key[32]);

// Reloads the allow lists of DIR/broker into kb (the broker's own key is
// kept: a running socket cannot change it).  On success kb holds the new
// lists and *diff what changed (keys_diff_release it).  On failure kb is
// unchanged and err says which file and why.
int keys_broker_reload(keys_broker_t *kb, const char *dir, keys_diff_t *diff,
                       char *err, size_t errlen);
void keys_diff_release(keys_diff_t *diff);
// True when the 32-byte public key is admitted now, as role and name: a
// session authenticated earlier whose key was revoked (or moved to another
// role or name) is not.
bool keys_broker_admits(const keys_broker_t *kb, keys_role_t role,
                        const char *name, const uint8_t public_key[32]);

// Marks DIR/broker as in use by this process: DIR/broker/broker.pid holds
// the pid under an exclusive lock kept until exit (*fd stays open).  A
// directory the broker cannot write is not an error (returns -1, *fd -1):
// keygen then cannot name the pid to signal.
int keys_broker_claim(const char *dir, int *fd);
// Undoes keys_broker_claim at a clean exit: removes the pid file, so a
// stale pid is never signalled by `kill -HUP $(cat ...)`.  *fd becomes -1.
void keys_broker_unclaim(const char *dir, int *fd);
// The pid of the broker running with DIR/broker: 0 when none holds the
// lock, -1 when one does but its pid cannot be read.
long keys_broker_running(const char *dir);

// Makes a complete local set in DIR (created if missing): the broker bundle
// and one client per role named after the role ("drone", "submitter",
// "operator"), each admitted by the broker.  Refuses to overwrite an
// existing DIR/broker/broker.key_secret.  Secrets are written 0600.
int keys_generate(const char *dir, char *err, size_t errlen);
// Adds one client key NAME for ROLE.  Writes a bundle for that host alone,
// DIR/bundles/NAME/ROLE/{NAME.key_secret, NAME.key, broker.key} (what
// `--keys DIR/bundles/NAME` reads), then admits the public key by writing
// DIR/broker/allow/ROLE/NAME.key last (atomically, so a broker reloading
// meanwhile sees all or nothing).  The bundle's directory goes into bundle
// (PATH_MAX bytes).  Refuses a NAME that is taken in any role, admitted or
// revoked, and a DIR without a broker key set.
int keys_add(const char *dir, keys_role_t role, const char *name,
             char *bundle, char *err, size_t errlen);
// Lists every key of DIR/broker (admitted and revoked), sorted by role and
// name, into *out (caller frees).  Returns 0 or -1 with err.
int keys_list(const char *dir, keys_info_t **out, size_t *n, char *err,
              size_t errlen);
// Revokes NAME: moves DIR/broker/allow/ROLE/NAME.key to
// DIR/broker/revoked/ROLE/ for every role it is admitted in; its role goes
// into *role.  A running broker applies it on SIGHUP.  Returns 0, or -1
// with err (no such key, already revoked).
int keys_revoke(const char *dir, const char *name, keys_role_t *role,
                char *err, size_t errlen);

#endif
