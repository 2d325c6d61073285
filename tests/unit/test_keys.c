// test_keys: key sets on disk, their permissions and the broker's lookup.
#include "common/keys.h"
#include "tests/harness/t.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <zmq.h>

static char s_err[1024];

// A fresh key set in the test's temp dir; returns its path (static).
static const char *
s_keyset(void)
{
    static char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/k", t_tmpdir());
    if (keys_generate(dir, s_err, sizeof s_err) != 0) {
        fprintf(stderr, "keys_generate: %s\n", s_err);
        return NULL;
    }
    return dir;
}

static const char *
s_at(const char *dir, const char *rel)
{
    static char path[4][PATH_MAX];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", dir, rel);
    return p;
}

static unsigned
s_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (unsigned) (st.st_mode & 0777) : 01000;
}

static int
s_copy(const char *from, const char *to)
{
    char *data = t_read_file(from, NULL);
    int rc = data ? t_write_file(to, data) : -1;
    free(data);
    return rc;
}

static void
test_roles_and_names(void)
{
    keys_role_t r;
    CHECK_STR(keys_role_name(KEYS_ROLE_DRONE), "drone");
    CHECK_STR(keys_role_name(KEYS_ROLE_SUBMITTER), "submitter");
    CHECK_STR(keys_role_name(KEYS_ROLE_OPERATOR), "operator");
    CHECK(keys_role_parse("operator", &r) == 0 && r == KEYS_ROLE_OPERATOR);
    CHECK(keys_role_parse("drone", &r) == 0 && r == KEYS_ROLE_DRONE);
    CHECK(keys_role_parse("broker", &r) < 0);
    CHECK(keys_role_parse("", &r) < 0);
    CHECK(keys_role_parse(NULL, &r) < 0);

    char longest[KEYS_NAME_MAX + 2];
    memset(longest, 'a', sizeof longest);
    longest[KEYS_NAME_MAX] = '\0';
    CHECK(keys_name_is_valid(longest));
    longest[KEYS_NAME_MAX] = 'a';
    longest[KEYS_NAME_MAX + 1] = '\0';
    CHECK(!keys_name_is_valid(longest));
    CHECK(keys_name_is_valid("d1"));
    CHECK(keys_name_is_valid("_x.y-z"));
    CHECK(keys_name_is_valid("9"));
    CHECK(!keys_name_is_valid(""));
    CHECK(!keys_name_is_valid(NULL));
    CHECK(!keys_name_is_valid(".hidden"));
    CHECK(!keys_name_is_valid("-x"));
    CHECK(!keys_name_is_valid("../x"));
    CHECK(!keys_name_is_valid("a/b"));
    CHECK(!keys_name_is_valid("a b"));
    CHECK(!keys_name_is_valid("a:b"));
    CHECK(!keys_name_is_valid("caf\xc3\xa9"));
}

// Every client bundle loads, and the broker admits each under its role.
static void
test_generate_and_load(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 3);
    CHECK_INT(strlen(keys_broker_public(kb)), 40);
    CHECK_INT(strlen(keys_broker_secret(kb)), 40);
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        keys_client_t c;
        int rc = keys_load_client(k, (keys_role_t) r, &c, s_err,
                                  sizeof s_err);
        CHECK_INT(rc, 0);
        if (rc != 0) {
            fprintf(stderr, "%s\n", s_err);
            continue;
        }
        CHECK_STR(c.name, keys_role_name((keys_role_t) r));
        CHECK_STR(c.broker_z85, keys_broker_public(kb));
        CHECK_INT(strlen(c.public_z85), 40);
        CHECK_INT(strlen(c.secret_z85), 40);
        char derived[41];
        CHECK(zmq_curve_public(derived, c.secret_z85) == 0);
        CHECK_STR(derived, c.public_z85);
        uint8_t key[32];
        REQUIRE(zmq_z85_decode(key, c.public_z85));
        const keys_entry_t *e = keys_broker_lookup(kb, key);
        REQUIRE(e);
        CHECK_INT(e->role, r);
        CHECK_STR(e->name, c.name);
        key[0] ^= 1;
        CHECK(keys_broker_lookup(kb, key) == NULL);
    }
    keys_broker_destroy(&kb);
    CHECK(kb == NULL);
    keys_broker_destroy(&kb);
}

static void
test_secret_modes(void)
{
    // Even with a permissive umask the secrets come out 0600 and the umask
    // is left as it was.
    mode_t old = umask(0);
    const char *k = s_keyset();
    mode_t after = umask(old);
    REQUIRE(k);
    CHECK_INT(after, 0);
    CHECK_INT(s_mode(s_at(k, "broker/broker.key_secret")), 0600);
    CHECK_INT(s_mode(s_at(k, "drone/drone.key_secret")), 0600);
    CHECK_INT(s_mode(s_at(k, "submitter/submitter.key_secret")), 0600);
    CHECK_INT(s_mode(s_at(k, "operator/operator.key_secret")), 0600);
    CHECK_INT(s_mode(k), 0700);
    CHECK_INT(s_mode(s_at(k, "broker")), 0700);
    CHECK_INT(s_mode(s_at(k, "broker/allow/drone")), 0700);
    CHECK_INT(s_mode(s_at(k, "drone")), 0700);
}

static void
test_readable_secret_refused(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_client_t c;
    const char *secret = s_at(k, "drone/drone.key_secret");
    char want[PATH_MAX * 2 + 64];
    REQUIRE(chmod(secret, 0644) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    snprintf(want, sizeof want, "'%s' is readable by others (mode 0644); "
             "run: chmod 600 '%s'", secret, secret);
    CHECK_STR(s_err, want);
    REQUIRE(chmod(secret, 0640) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "(mode 0640)");
    REQUIRE(chmod(secret, 0400) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) == 0);

    keys_broker_t *kb = NULL;
    const char *bsecret = s_at(k, "broker/broker.key_secret");
    REQUIRE(chmod(bsecret, 0604) == 0);
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK(kb == NULL);
    CHECK_HAS(s_err, bsecret);
    CHECK_HAS(s_err, "readable by others (mode 0604)");
}

static void
test_missing_files(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_client_t c;
    keys_broker_t *kb = NULL;
    char want[PATH_MAX * 2 + 64];

    CHECK(keys_load_client(s_at(k, "nope"), KEYS_ROLE_DRONE, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, "nope/drone");
    CHECK_HAS(s_err, "No such file or directory");

    REQUIRE(remove(s_at(k, "drone/broker.key")) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "missing");
    CHECK_HAS(s_err, s_at(k, "drone/broker.key"));

    REQUIRE(remove(s_at(k, "drone/drone.key_secret")) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    snprintf(want, sizeof want, "no secret key (*.key_secret) in '%s/drone'; "
             "run: waggle-architect keygen %s", k, k);
    CHECK_STR(s_err, want);

    REQUIRE(rename(s_at(k, "broker/broker.key_secret"),
                   s_at(k, "broker/old")) == 0);
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "missing");
    CHECK_HAS(s_err, s_at(k, "broker/broker.key_secret"));
}

static void
test_garbage_refused(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_client_t c;
    keys_broker_t *kb = NULL;
    const char *bkey = s_at(k, "submitter/broker.key");
    REQUIRE(t_write_file(bkey, "this is not a certificate\n") == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_SUBMITTER, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, bkey);
    CHECK_HAS(s_err, "not a CURVE certificate");

    // A public certificate under a secret's name has no secret key.
    const char *secret = s_at(k, "operator/operator.key_secret");
    REQUIRE(s_copy(s_at(k, "operator/operator.key"), secret) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_OPERATOR, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, "holds no valid secret key");

    static char big[100000];
    memset(big, '#', sizeof big - 1);
    REQUIRE(t_write_file(bkey, big) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_SUBMITTER, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, "is too large for a certificate");

    // A key that is not z85.
    REQUIRE(t_write_file(bkey, "curve\n    public-key = \"~~~~~~~~~~~~~~~~"
                         "~~~~~~~~~~~~~~~~~~~~~~~~\"\n") == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_SUBMITTER, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, "not a CURVE certificate");

    REQUIRE(t_write_file(s_at(k, "broker/allow/drone/bad name.key"),
                         "x") == 0);
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "bad name.key': not a valid key name");
}

static void
test_generate_twice_refused(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    char want[PATH_MAX + 64];
    char *before = t_read_file(s_at(k, "broker/broker.key_secret"), NULL);
    CHECK(keys_generate(k, s_err, sizeof s_err) < 0);
    snprintf(want, sizeof want, "key set already exists in '%s'; refusing "
             "to overwrite", k);
    CHECK_STR(s_err, want);
    char *after = t_read_file(s_at(k, "broker/broker.key_secret"), NULL);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
}

static void
test_several_secrets_refused(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_client_t c;
    REQUIRE(keys_add(k, KEYS_ROLE_DRONE, "a", s_err, sizeof s_err) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "several secret keys in '%s/drone': 'a', "
             "'drone'", k);
    CHECK_STR(s_err, want);
}

// keys_add writes a bundle that loads and that the broker then admits.
static void
test_add(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    REQUIRE(keys_add(k, KEYS_ROLE_DRONE, "d2.x-1", s_err, sizeof s_err) == 0);
    CHECK_INT(s_mode(s_at(k, "drone/d2.x-1.key_secret")), 0600);
    // A client host gets only its own key: move the first one away.
    REQUIRE(rename(s_at(k, "drone/drone.key_secret"), s_at(k, "moved")) == 0);
    keys_client_t c;
    REQUIRE(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) ==
            0);
    CHECK_STR(c.name, "d2.x-1");

    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 4);
    CHECK_STR(c.broker_z85, keys_broker_public(kb));
    uint8_t key[32];
    REQUIRE(zmq_z85_decode(key, c.public_z85));
    const keys_entry_t *e = keys_broker_lookup(kb, key);
    CHECK(e && e->role == KEYS_ROLE_DRONE && strcmp(e->name, "d2.x-1") == 0);
    keys_broker_destroy(&kb);

    CHECK(keys_add(k, KEYS_ROLE_DRONE, "d2.x-1", s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "key 'd2.x-1' already exists for role drone");
    CHECK(keys_add(k, KEYS_ROLE_OPERATOR, "operator", s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "already exists");
    // The same name under another role is another identity.
    CHECK(keys_add(k, KEYS_ROLE_OPERATOR, "d2.x-1", s_err, sizeof s_err) ==
          0);
}

static void
test_add_refuses_bad_names(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    const char *bad[] = {"", "../x", "a/b", ".x", "a b", "broker", NULL};
    for (int i = 0; bad[i]; i++) {
        CHECK(keys_add(k, KEYS_ROLE_DRONE, bad[i], s_err, sizeof s_err) < 0);
        CHECK_HAS(s_err, "is not a valid key name");
    }
    CHECK(keys_add(k, KEYS_ROLE_DRONE, NULL, s_err, sizeof s_err) < 0);
    // Without a broker there is nothing to admit the key.
    char other[PATH_MAX];
    snprintf(other, sizeof other, "%s/empty", t_tmpdir());
    CHECK(keys_add(other, KEYS_ROLE_DRONE, "d", s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "broker/broker.key");
}

static void
test_duplicate_key_refused(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    const char *from = s_at(k, "broker/allow/drone/drone.key");
    const char *to = s_at(k, "broker/allow/operator/twin.key");
    REQUIRE(s_copy(from, to) == 0);
    keys_broker_t *kb = NULL;
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK(kb == NULL);
    CHECK_HAS(s_err, "the same public key is in");
    CHECK_HAS(s_err, from);
    CHECK_HAS(s_err, to);

    // Under one role and two names as well.
    REQUIRE(remove(to) == 0);
    to = s_at(k, "broker/allow/drone/twin.key");
    REQUIRE(s_copy(from, to) == 0);
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, from);
    CHECK_HAS(s_err, to);
}

static void
test_empty_allow_list(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    const char *files[] = {"broker/allow/drone/drone.key",
                           "broker/allow/submitter/submitter.key",
                           "broker/allow/operator/operator.key", NULL};
    for (int i = 0; files[i]; i++) {
        REQUIRE(remove(s_at(k, files[i])) == 0);
    }
    REQUIRE(rmdir(s_at(k, "broker/allow/operator")) == 0);
    REQUIRE(t_write_file(s_at(k, "broker/allow/drone/README"), "x") == 0);
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 0);
    uint8_t key[32] = {0};
    CHECK(keys_broker_lookup(kb, key) == NULL);
    keys_broker_destroy(&kb);
}

// Many keys: every one is found, under its own name.
static void
test_lookup_many(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "d%02d", i);
        REQUIRE(keys_add(k, KEYS_ROLE_SUBMITTER, name, s_err,
                         sizeof s_err) == 0);
    }
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 43);
    for (int i = 0; i < 40; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/submitter/d%02d.key_secret", k, i);
        char *data = t_read_file(path, NULL);
        REQUIRE(data);
        char *p = strstr(data, "public-key = \"");
        REQUIRE(p);
        p += strlen("public-key = \"");
        p[40] = '\0';
        uint8_t key[32];
        REQUIRE(zmq_z85_decode(key, p));
        const keys_entry_t *e = keys_broker_lookup(kb, key);
        snprintf(name, sizeof name, "d%02d", i);
        CHECK(e && e->role == KEYS_ROLE_SUBMITTER &&
              strcmp(e->name, name) == 0);
        free(data);
    }
    keys_broker_destroy(&kb);
}

static const t_case_t t_cases[] = {
    T(test_roles_and_names),
    T(test_generate_and_load),
    T(test_secret_modes),
    T(test_readable_secret_refused),
    T(test_missing_files),
    T(test_garbage_refused),
    T(test_generate_twice_refused),
    T(test_several_secrets_refused),
    T(test_add),
    T(test_add_refuses_bad_names),
    T(test_duplicate_key_refused),
    T(test_empty_allow_list),
    T(test_lookup_many),
    {0},
};

T_MAIN(t_cases)
