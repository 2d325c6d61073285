// keys: CurveZMQ key bundles by role (DESIGN.md "Keys and roles").
//
// Layout of a key directory DIR (keys_generate makes a complete local set):
//   DIR/broker/broker.key             the broker's public certificate
//   DIR/broker/broker.key_secret      the broker's secret certificate (0600)
//   DIR/broker/allow/drone/NAME.key   public keys admitted as role drone
//   DIR/broker/allow/submitter/NAME.key
//   DIR/broker/allow/operator/NAME.key
//   DIR/ROLE/NAME.key_secret          a client's secret certificate (0600)
//   DIR/ROLE/NAME.key                 its public certificate
//   DIR/ROLE/broker.key               the broker's public certificate
// for ROLE in drone, submitter, operator.  A key's NAME (its file name) is
// the identity the ledger records.  Certificates are czmq zcert files.
// A secret readable by group or others is refused.
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

// Makes a complete local set in DIR (created if missing): the broker bundle
// and one client per role named after the role ("drone", "submitter",
// "operator"), each admitted by the broker.  Refuses to overwrite an
// existing DIR/broker/broker.key_secret.  Secrets are written 0600.
int keys_generate(const char *dir, char *err, size_t errlen);
// Adds one client key NAME for ROLE: DIR/ROLE/NAME.key{,_secret} and the
// public key into DIR/broker/allow/ROLE/.  Refuses an existing NAME.
int keys_add(const char *dir, keys_role_t role, const char *name, char *err,
             size_t errlen);

#endif
