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
    static char path[4][PATH_MAX * 2];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, PATH_MAX * 2, "%s/%s", dir, rel);
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
    // Which folder, which role, and what to run on the broker host: never
    // a new key set here, which the broker would not know.
    snprintf(want, sizeof want, "no drone key in '%s/drone' (no *.key_secret "
             "file)", k);
    CHECK_HAS(s_err, want);
    CHECK_HAS(s_err, "waggle-architect keygen KEYDIR --add drone NAME");

    REQUIRE(rename(s_at(k, "broker/broker.key_secret"),
                   s_at(k, "broker/old")) == 0);
    CHECK(keys_load_broker(k, &kb, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "no broker key set");
    CHECK_HAS(s_err, s_at(k, "broker/broker.key_secret"));
    snprintf(want, sizeof want, "waggle-architect keygen %s", k);
    CHECK_HAS(s_err, want);
}

// The README's old mistake: a host given DIR/drone itself as --keys is told
// to pass the directory above it.
static void
test_role_folder_as_keys(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_client_t c;
    CHECK(keys_load_client(s_at(k, "drone"), KEYS_ROLE_DRONE, &c, s_err,
                           sizeof s_err) < 0);
    CHECK_HAS(s_err, "wants the directory above the 'drone' folder");
    CHECK(strstr(s_err, "complete local set") == NULL);
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
    CHECK_HAS(s_err, want);
    CHECK_HAS(s_err, "--add ROLE NAME");
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
    REQUIRE(s_copy(s_at(k, "drone/drone.key_secret"),
                   s_at(k, "drone/a.key_secret")) == 0);
    REQUIRE(chmod(s_at(k, "drone/a.key_secret"), 0600) == 0);
    CHECK(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) < 0);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "several secret keys in '%s/drone': 'a', "
             "'drone'", k);
    CHECK_HAS(s_err, want);
}

// keys_add writes a bundle for one host that loads as --keys, and the
// broker then admits its key.
static void
test_add(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    char bundle[PATH_MAX];
    REQUIRE(keys_add(k, KEYS_ROLE_DRONE, "d2.x-1", bundle, s_err,
                     sizeof s_err) == 0);
    CHECK_STR(bundle, s_at(k, "bundles/d2.x-1"));
    CHECK_INT(s_mode(s_at(bundle, "drone/d2.x-1.key_secret")), 0600);
    CHECK_INT(s_mode(bundle), 0700);
    CHECK_INT(s_mode(s_at(bundle, "drone")), 0700);
    CHECK_INT(s_mode(s_at(k, "bundles")), 0700);
    // The local key is untouched, and the bundle holds only its own role.
    keys_client_t c;
    REQUIRE(keys_load_client(k, KEYS_ROLE_DRONE, &c, s_err, sizeof s_err) ==
            0);
    CHECK_STR(c.name, "drone");
    REQUIRE(keys_load_client(bundle, KEYS_ROLE_DRONE, &c, s_err,
                             sizeof s_err) == 0);
    CHECK_STR(c.name, "d2.x-1");
    CHECK(s_mode(s_at(bundle, "broker")) == 01000);
    CHECK(s_mode(s_at(bundle, "operator")) == 01000);
    CHECK(s_mode(s_at(k, "broker/allow/drone/.d2.x-1.key.tmp")) == 01000);

    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 4);
    CHECK_STR(c.broker_z85, keys_broker_public(kb));
    uint8_t key[32];
    REQUIRE(zmq_z85_decode(key, c.public_z85));
    const keys_entry_t *e = keys_broker_lookup(kb, key);
    CHECK(e && e->role == KEYS_ROLE_DRONE && strcmp(e->name, "d2.x-1") == 0);
    keys_broker_destroy(&kb);
}

// A name is one identity: taken in any role, admitted, revoked or local.
static void
test_add_names_unique(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    char bundle[PATH_MAX];
    REQUIRE(keys_add(k, KEYS_ROLE_DRONE, "hostB", bundle, s_err,
                     sizeof s_err) == 0);
    CHECK(keys_add(k, KEYS_ROLE_DRONE, "hostB", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "key name 'hostB' is taken (role drone");
    CHECK_STR(bundle, "");
    CHECK(keys_add(k, KEYS_ROLE_OPERATOR, "hostB", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "unique across roles");
    CHECK(keys_add(k, KEYS_ROLE_DRONE, "operator", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "role operator");
    keys_role_t role;
    REQUIRE(keys_revoke(k, "hostB", &role, s_err, sizeof s_err) == 0);
    CHECK_INT(role, KEYS_ROLE_DRONE);
    CHECK(keys_add(k, KEYS_ROLE_SUBMITTER, "hostB", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "role drone, revoked");
    // A stray bundle directory of that name also blocks it.
    REQUIRE(mkdir(s_at(k, "bundles/stray"), 0700) == 0);
    CHECK(keys_add(k, KEYS_ROLE_DRONE, "stray", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "bundles/stray' exists");
}

// --list shows every key with its role and state; --revoke moves the
// public key out of the allow lists, and the broker no longer admits it.
static void
test_list_and_revoke(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    char bundle[PATH_MAX];
    REQUIRE(keys_add(k, KEYS_ROLE_SUBMITTER, "ci", bundle, s_err,
                     sizeof s_err) == 0);
    keys_info_t *list = NULL;
    size_t n = 0;
    REQUIRE(keys_list(k, &list, &n, s_err, sizeof s_err) == 0);
    REQUIRE(n == 4);
    // Sorted by role, then name.
    CHECK_STR(list[0].name, "drone");
    CHECK_STR(list[1].name, "ci");
    CHECK_INT(list[1].role, KEYS_ROLE_SUBMITTER);
    CHECK_STR(list[2].name, "submitter");
    CHECK_STR(list[3].name, "operator");
    CHECK(!list[1].revoked && strlen(list[1].public_z85) == 40);
    free(list);

    keys_role_t role;
    REQUIRE(keys_revoke(k, "ci", &role, s_err, sizeof s_err) == 0);
    CHECK_INT(role, KEYS_ROLE_SUBMITTER);
    CHECK(s_mode(s_at(k, "broker/allow/submitter/ci.key")) == 01000);
    CHECK(s_mode(s_at(k, "broker/revoked/submitter/ci.key")) != 01000);
    REQUIRE(keys_list(k, &list, &n, s_err, sizeof s_err) == 0);
    REQUIRE(n == 4);
    CHECK(list[1].revoked && strcmp(list[1].name, "ci") == 0);
    free(list);
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 3);
    keys_broker_destroy(&kb);

    CHECK(keys_revoke(k, "ci", &role, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "already revoked");
    CHECK(keys_revoke(k, "nobody", &role, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "no key 'nobody' is admitted");
    CHECK_HAS(s_err, "--list");
    CHECK(keys_revoke(k, "../x", &role, s_err, sizeof s_err) < 0);
    char empty[PATH_MAX];
    snprintf(empty, sizeof empty, "%s/empty", t_tmpdir());
    CHECK(keys_list(empty, &list, &n, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "holds no broker key set");
}

static bool
s_has_entry(const keys_entry_t *a, size_t n, keys_role_t role,
            const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].role == role && strcmp(a[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

// A reload reports what was added and removed, keeps the broker's own
// key, and changes what is admitted; a failed one changes nothing.
static void
test_reload(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    keys_client_t drone;
    REQUIRE(keys_load_client(k, KEYS_ROLE_DRONE, &drone, s_err,
                             sizeof s_err) == 0);
    uint8_t dkey[32];
    REQUIRE(zmq_z85_decode(dkey, drone.public_z85));
    CHECK(keys_broker_admits(kb, KEYS_ROLE_DRONE, "drone", dkey));
    CHECK(!keys_broker_admits(kb, KEYS_ROLE_OPERATOR, "drone", dkey));
    CHECK(!keys_broker_admits(kb, KEYS_ROLE_DRONE, "other", dkey));

    char bundle[PATH_MAX], public[41];
    snprintf(public, sizeof public, "%s", keys_broker_public(kb));
    keys_role_t role;
    REQUIRE(keys_add(k, KEYS_ROLE_DRONE, "hostC", bundle, s_err,
                     sizeof s_err) == 0);
    REQUIRE(keys_revoke(k, "drone", &role, s_err, sizeof s_err) == 0);
    keys_diff_t diff;
    REQUIRE(keys_broker_reload(kb, k, &diff, s_err, sizeof s_err) == 0);
    CHECK_INT(diff.n_added, 1);
    CHECK_INT(diff.n_removed, 1);
    CHECK(s_has_entry(diff.added, diff.n_added, KEYS_ROLE_DRONE, "hostC"));
    CHECK(s_has_entry(diff.removed, diff.n_removed, KEYS_ROLE_DRONE,
                      "drone"));
    keys_diff_release(&diff);
    CHECK(!keys_broker_admits(kb, KEYS_ROLE_DRONE, "drone", dkey));
    CHECK_INT(keys_broker_count(kb), 3);
    CHECK_STR(keys_broker_public(kb), public);

    // Nothing changed: an empty diff.
    REQUIRE(keys_broker_reload(kb, k, &diff, s_err, sizeof s_err) == 0);
    CHECK_INT(diff.n_added + diff.n_removed, 0);
    keys_diff_release(&diff);

    // A broken allow list: refused, and the lists stay as they were.
    REQUIRE(t_write_file(s_at(k, "broker/allow/drone/bad.key"), "junk\n") ==
            0);
    CHECK(keys_broker_reload(kb, k, &diff, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "bad.key");
    CHECK_INT(keys_broker_count(kb), 3);
    CHECK(diff.added == NULL && diff.removed == NULL);
    REQUIRE(remove(s_at(k, "broker/allow/drone/bad.key")) == 0);
    // A directory in the way of a list, or the whole key directory gone
    // (an unmounted volume): refused, nothing cut off.
    REQUIRE(rename(s_at(k, "broker/allow/submitter"), s_at(k, "moved")) ==
            0);
    REQUIRE(t_write_file(s_at(k, "broker/allow/submitter"), "x") == 0);
    CHECK(keys_broker_reload(kb, k, &diff, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "broker/allow/submitter");
    CHECK_INT(keys_broker_count(kb), 3);
    REQUIRE(rename(s_at(k, "broker"), s_at(k, "gone")) == 0);
    CHECK(keys_broker_reload(kb, k, &diff, s_err, sizeof s_err) < 0);
    CHECK_HAS(s_err, "cannot read");
    CHECK_INT(keys_broker_count(kb), 3);
    keys_broker_destroy(&kb);
}

// The pid file tells keygen which broker to signal, by its lock.
static void
test_claim(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    CHECK_INT(keys_broker_running(k), 0);
    int fd = -1;
    REQUIRE(keys_broker_claim(k, &fd) == 0);
    CHECK_INT(keys_broker_running(k), (long) getpid());
    int again = -1;
    CHECK(keys_broker_claim(k, &again) < 0);
    CHECK_INT(again, -1);
    close(fd);
    // A crashed broker: the file stays, the lock does not.
    CHECK(s_mode(s_at(k, "broker/broker.pid")) == 0600);
    CHECK_INT(keys_broker_running(k), 0);
    // A clean exit removes the file.
    REQUIRE(keys_broker_claim(k, &fd) == 0);
    keys_broker_unclaim(k, &fd);
    CHECK_INT(fd, -1);
    CHECK(s_mode(s_at(k, "broker/broker.pid")) == 01000);
    CHECK_INT(keys_broker_running(k), 0);
}

static void
test_add_refuses_bad_names(void)
{
    const char *k = s_keyset();
    REQUIRE(k);
    const char *bad[] = {"", "../x", "a/b", ".x", "a b", "broker", NULL};
    char bundle[PATH_MAX];
    for (int i = 0; bad[i]; i++) {
        CHECK(keys_add(k, KEYS_ROLE_DRONE, bad[i], bundle, s_err,
                       sizeof s_err) < 0);
        CHECK_HAS(s_err, "is not a valid key name");
    }
    CHECK(keys_add(k, KEYS_ROLE_DRONE, NULL, bundle, s_err,
                   sizeof s_err) < 0);
    // Without a broker there is nothing to admit the key.
    char other[PATH_MAX];
    snprintf(other, sizeof other, "%s/empty", t_tmpdir());
    CHECK(keys_add(other, KEYS_ROLE_DRONE, "d", bundle, s_err,
                   sizeof s_err) < 0);
    CHECK_HAS(s_err, "broker/broker.key");
    CHECK_HAS(s_err, "waggle-architect keygen");
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
        char bundle[PATH_MAX];
        REQUIRE(keys_add(k, KEYS_ROLE_SUBMITTER, name, bundle, s_err,
                         sizeof s_err) == 0);
    }
    keys_broker_t *kb = NULL;
    REQUIRE(keys_load_broker(k, &kb, s_err, sizeof s_err) == 0);
    CHECK_INT(keys_broker_count(kb), 43);
    for (int i = 0; i < 40; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/bundles/d%02d/submitter/"
                 "d%02d.key_secret", k, i, i);
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
    T(test_role_folder_as_keys),
    T(test_add),
    T(test_add_names_unique),
    T(test_list_and_revoke),
    T(test_reload),
    T(test_claim),
    T(test_add_refuses_bad_names),
    T(test_duplicate_key_refused),
    T(test_empty_allow_list),
    T(test_lookup_many),
    {0},
};

T_MAIN(t_cases)
