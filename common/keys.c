// keys: CurveZMQ key bundles on disk, as czmq zcert certificate files.
//
// Owns the key directory layout of keys.h and the permissions of secrets:
// every secret is created 0600, exclusively (nothing is ever overwritten),
// and one whose mode has group or other bits is refused on load.  The
// broker's allow lists are kept sorted by public key so that a duplicate
// shows up as two neighbours and a lookup is a binary search.  This module
// never opens a socket: auth.c and the clients take the keys from here.
#include "common/keys.h"

#include "common/xalloc.h"

#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

// A zcert file is well under 1 KiB; anything near this is not one.
#define KEYS_CERT_MAX 65536

struct keys_broker {
    char public_z85[41];        // the broker's public key
    char secret_z85[41];        // the broker's secret key
    keys_entry_t *entries;      // allow lists, sorted by public key
    size_t count;               // entries in use
    size_t cap;                 // entries allocated
};

// Where one client key is written.
typedef struct {
    char secret[PATH_MAX];      // ROOT/ROLE/NAME.key_secret
    char public[PATH_MAX];      // ROOT/ROLE/NAME.key
    char broker[PATH_MAX];      // ROOT/ROLE/broker.key
    char allow[PATH_MAX];       // DIR/broker/allow/ROLE/NAME.key
    char allow_tmp[PATH_MAX];   // DIR/broker/allow/ROLE/.NAME.key.tmp
} s_add_paths_t;

static const char *s_role_names[KEYS_ROLE__COUNT] = {
    [KEYS_ROLE_DRONE] = "drone",
    [KEYS_ROLE_SUBMITTER] = "submitter",
    [KEYS_ROLE_OPERATOR] = "operator",
};

const char *
keys_role_name(keys_role_t role)
{
    assert((unsigned) role < KEYS_ROLE__COUNT);
    return s_role_names[role];
}

int
keys_role_parse(const char *s, keys_role_t *out)
{
    for (int r = 0; s && r < KEYS_ROLE__COUNT; r++) {
        if (strcmp(s, s_role_names[r]) == 0) {
            *out = (keys_role_t) r;
            return 0;
        }
    }
    return -1;
}

// ASCII only: a key name becomes a file name and part of a User-Id, so it
// must not depend on the locale.
static bool
s_is_name_char(char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '_') {
        return true;
    }
    return !first && (c == '.' || c == '-');
}

bool
keys_name_is_valid(const char *name)
{
    if (!name) {
        return false;
    }
    size_t len = strlen(name);
    if (len == 0 || len > KEYS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!s_is_name_char(name[i], i == 0)) {
            return false;
        }
    }
    return true;
}

static int __attribute__((format(printf, 3, 4)))
s_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// Formats a path into buf (PATH_MAX bytes).
static int __attribute__((format(printf, 4, 5)))
s_path(char *buf, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX) {
        return s_fail(err, errlen, "path too long: '%.200s...'", buf);
    }
    return 0;
}

// True when s ends with suffix and has something before it; *len is the
// length of that something.
static bool
s_strip_suffix(const char *s, const char *suffix, size_t *len)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n <= m || strcmp(s + n - m, suffix) != 0) {
        return false;
    }
    *len = n - m;
    return true;
}

static bool
s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

// Creates path and its missing parents, each 0700.
static int
s_mkdirs(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (s_path(buf, err, errlen, "%s", path) < 0) {
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) == 0) {
            // The umask may have taken bits we want (0700 is the point).
            chmod(buf, 0700);
        } else if (errno != EEXIST) {
            return s_fail(err, errlen, "cannot create directory '%s': %s",
                          buf, strerror(errno));
        }
        *p = c;
        if (c == '\0') {
            break;
        }
    }
    return 0;
}

// Checks what fd is before it is read: a regular file of a sane size and,
// for a secret, private.
static int
s_check_fd(int fd, const char *path, bool secret, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return s_fail(err, errlen, "cannot read '%s': %s", path,
                      strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        s_fail(err, errlen, "'%s' is not a regular file", path);
        return -2;
    }
    if (secret && (st.st_mode & 077)) {
        return s_fail(err, errlen,
                      "'%s' is readable by others (mode %04o); "
                      "run: chmod 600 '%s'",
                      path, (unsigned) (st.st_mode & 0777), path);
    }
    if (st.st_size > KEYS_CERT_MAX) {
        s_fail(err, errlen, "'%s' is too large for a certificate", path);
        return -2;
    }
    return 0;
}

// Reads a certificate file whole, through the descriptor whose mode was
// checked.  Returns a NUL-terminated copy the caller wipes and frees, or
// NULL with *damaged set when the file is missing or not a certificate
// file (as opposed to unreadable or too open).
static char *
s_read_cert_file(const char *path, bool secret, bool *damaged, char *err,
                 size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    *damaged = fd < 0 && errno == ENOENT;
    if (*damaged) {
        s_fail(err, errlen, "missing '%s'", path);
        return NULL;
    }
    if (fd < 0) {
        s_fail(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    int rc = s_check_fd(fd, path, secret, err, errlen);
    *damaged = rc == -2;
    if (rc == 0) {
        buf = xmalloc(KEYS_CERT_MAX + 1);
        ssize_t n = read(fd, buf, KEYS_CERT_MAX);
        if (n < 0) {
            s_fail(err, errlen, "cannot read '%s': %s", path,
                   strerror(errno));
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    close(fd);
    return buf;
}

static bool
s_z85_key(const char *z85, uint8_t key[32])
{
    return z85 && strlen(z85) == 40 && zmq_z85_decode(key, z85);
}

// Parses zcert's file format (ZPL: curve/public-key and, in a secret
// certificate, curve/secret-key).  A missing secret stays zero.
static zcert_t *
s_parse_cert(const char *text)
{
    zconfig_t *root = zconfig_str_load(text);
    if (!root) {
        return NULL;
    }
    uint8_t public_key[32] = {0}, secret_key[32] = {0};
    zcert_t *cert = NULL;
    if (s_z85_key(zconfig_get(root, "/curve/public-key", NULL), public_key)) {
        if (!s_z85_key(zconfig_get(root, "/curve/secret-key", NULL),
                       secret_key)) {
            memset(secret_key, 0, sizeof secret_key);
        }
        cert = zcert_new_from(public_key, secret_key);
    }
    explicit_bzero(secret_key, sizeof secret_key);
    zconfig_destroy(&root);
    return cert;
}

// True when the certificate's secret key is real and belongs to its
// public key: a public certificate has a zero secret.
static bool
s_secret_matches(zcert_t *cert)
{
    char public_z85[41];
    return zmq_curve_public(public_z85, zcert_secret_txt(cert)) == 0 &&
           strcmp(public_z85, zcert_public_txt(cert)) == 0;
}

// Appends "; fix" to err: what to run about a missing or damaged file.
static void
s_add_fix(char *err, size_t errlen, const char *fix)
{
    size_t used = strlen(err);
    if (fix && used < errlen) {
        snprintf(err + used, errlen - used, "; %s", fix);
    }
}

// Loads a zcert file.  Not with zcert_load: it reads "PATH_secret" before
// PATH through a 256-byte name buffer, checks nothing about the file, and
// (czmq 4.2.1 zconfig_load) leaks when the file does not parse.  fix (or
// NULL) says what to do when the file is missing or damaged.
static zcert_t *
s_load_cert(const char *path, bool secret, const char *fix, char *err,
            size_t errlen)
{
    bool damaged = false;
    char *text = s_read_cert_file(path, secret, &damaged, err, errlen);
    if (!text) {
        if (damaged) {
            s_add_fix(err, errlen, fix);
        }
        return NULL;
    }
    zcert_t *cert = s_parse_cert(text);
    explicit_bzero(text, strlen(text));
    free(text);
    if (!cert) {
        s_fail(err, errlen, "'%s' is not a CURVE certificate", path);
        s_add_fix(err, errlen, fix);
        return NULL;
    }
    if (secret && !s_secret_matches(cert)) {
        s_fail(err, errlen, "'%s' holds no valid secret key", path);
        s_add_fix(err, errlen, fix);
        zcert_destroy(&cert);
    }
    return cert;
}

static int
s_save_public(zcert_t *cert, const char *path, char *err, size_t errlen)
{
    if (zcert_save_public(cert, path) != 0) {
        return s_fail(err, errlen, "cannot write '%s': %s", path,
                      strerror(errno));
    }
    return 0;
}

static int
s_save_secret(zcert_t *cert, const char *path, char *err, size_t errlen)
{
    // Creating the file first, exclusively and 0600, means a secret is
    // never overwritten and never readable by others, whatever the umask.
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    if (fd < 0) {
        return s_fail(err, errlen, "cannot create '%s': %s", path,
                      strerror(errno));
    }
    close(fd);
    // zcert_save_secret leaves czmq's default umask behind: keep ours.
    mode_t old = umask(077);
    int rc = zcert_save_secret(cert, path);
    int saved_errno = errno;
    umask(old);
    if (rc != 0 || chmod(path, 0600) < 0) {
        unlink(path);
        return s_fail(err, errlen, "cannot write '%s': %s", path,
                      strerror(rc != 0 ? saved_errno : errno));
    }
    return 0;
}

static int
s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

// Lists the base names of rdir/*.key_secret, sorted.  *names is NULL and
// -1 returned (errno set) when rdir cannot be opened.
static int
s_list_secrets(const char *rdir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(rdir);
    if (!d) {
        return -1;
    }
    struct dirent *de;
    size_t len;
    while ((de = readdir(d))) {
        if (s_strip_suffix(de->d_name, ".key_secret", &len)) {
            *names = xrealloc(*names, (*n + 1) * sizeof **names);
            (*names)[(*n)++] = xstrndup(de->d_name, len);
        }
    }
    closedir(d);
    if (*n > 1) {
        qsort(*names, *n, sizeof **names, s_cmp_str);
    }
    return 0;
}

static void
s_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

// True when dir itself holds a client bundle's files: someone passed a
// role folder (DIR/drone) as --keys instead of the directory above it.
static bool
s_is_role_folder(const char *dir)
{
    char **names = NULL, path[PATH_MAX];
    size_t n = 0;
    if (s_list_secrets(dir, &names, &n) < 0) {
        return false;
    }
    s_free_names(names, n);
    snprintf(path, sizeof path, "%s/broker.key", dir);
    return n > 0 && s_exists(path);
}

// The error for a missing client key: which folder, which role, and what
// to run.  Making a new key set on a client host is never the advice: the
// broker would not know it.
static int
s_no_client_key(const char *dir, keys_role_t role, const char *why,
                char *err, size_t errlen)
{
    const char *r = keys_role_name(role);
    if (s_is_role_folder(dir)) {
        return s_fail(err, errlen, "no %s key in '%s/%s' (%s), but '%s' "
                      "itself holds a key: --keys wants the directory "
                      "above the '%s' folder (the one keygen printed)",
                      r, dir, r, why, dir, r);
    }
    return s_fail(err, errlen,
                  "no %s key in '%s/%s' (%s); it needs one NAME.key_secret "
                  "and broker.key.  On the broker host, run: "
                  "waggle-architect keygen KEYDIR --add %s NAME, copy the "
                  "directory it prints to this host and pass that as --keys "
                  "(one host alone: waggle-architect keygen %s makes a "
                  "complete local set)",
                  r, dir, r, why, r, dir);
}

static int
s_several(const char *rdir, char **names, size_t n, char *err,
          size_t errlen)
{
    size_t used = (size_t) snprintf(err, errlen, "several secret keys in "
                                    "'%s':", rdir);
    for (size_t i = 0; i < n && used < errlen; i++) {
        used += (size_t) snprintf(err + used, errlen - used, "%s '%s'",
                                  i ? "," : "", names[i]);
    }
    if (used < errlen) {
        snprintf(err + used, errlen - used, "; a host's key folder holds "
                 "exactly one (keep its own, move the others away)");
    }
    return -1;
}

// The one secret key's NAME in DIR/ROLE, validated, into name.
static int
s_pick_secret(const char *rdir, const char *dir, keys_role_t role,
              char *name, char *err, size_t errlen)
{
    char **names = NULL;
    size_t n = 0;
    if (s_list_secrets(rdir, &names, &n) < 0) {
        return s_no_client_key(dir, role, strerror(errno), err, errlen);
    }
    int rc = 0;
    if (n == 0) {
        rc = s_no_client_key(dir, role, "no *.key_secret file", err,
                             errlen);
    } else if (n > 1) {
        rc = s_several(rdir, names, n, err, errlen);
    } else if (!keys_name_is_valid(names[0]) ||
               strcmp(names[0], "broker") == 0) {
        rc = s_fail(err, errlen, "'%s/%s.key_secret': '%s' is not a valid "
                    "client key name (use [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}, "
                    "not 'broker'; keygen --add makes valid ones)", rdir,
                    names[0], names[0]);
    } else {
        snprintf(name, KEYS_NAME_MAX + 1, "%s", names[0]);
    }
    s_free_names(names, n);
    return rc;
}

static int
s_load_client_broker(const char *rdir, keys_role_t role, keys_client_t *out,
                     char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (s_path(path, err, errlen, "%s/broker.key", rdir) < 0) {
        return -1;
    }
    char *fix = xasprintf("it is the broker's public key for role %s: copy "
                          "the whole directory that 'waggle-architect keygen "
                          "KEYDIR --add %s NAME' printed on the broker host",
                          keys_role_name(role), keys_role_name(role));
    zcert_t *cert = s_load_cert(path, false, fix, err, errlen);
    free(fix);
    if (!cert) {
        return -1;
    }
    snprintf(out->broker_z85, sizeof out->broker_z85, "%s",
             zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

int
keys_load_client(const char *dir, keys_role_t role, keys_client_t *out,
                 char *err, size_t errlen)
{
    assert(dir && out);
    char rdir[PATH_MAX], path[PATH_MAX];
    memset(out, 0, sizeof *out);
    if (s_path(rdir, err, errlen, "%s/%s", dir, keys_role_name(role)) < 0 ||
        s_pick_secret(rdir, dir, role, out->name, err, errlen) < 0 ||
        s_path(path, err, errlen, "%s/%s.key_secret", rdir, out->name) < 0) {
        return -1;
    }
    const char *r = keys_role_name(role);
    char *fix = xasprintf("the %s key '%s' is damaged: on the broker host, "
                          "run 'waggle-architect keygen KEYDIR --revoke %s' "
                          "and 'waggle-architect keygen KEYDIR --add %s "
                          "NEWNAME', and use the directory it prints",
                          r, out->name, out->name, r);
    zcert_t *cert = s_load_cert(path, true, fix, err, errlen);
    free(fix);
    if (!cert) {
        return -1;
    }
    snprintf(out->public_z85, sizeof out->public_z85, "%s",
             zcert_public_txt(cert));
    snprintf(out->secret_z85, sizeof out->secret_z85, "%s",
             zcert_secret_txt(cert));
    zcert_destroy(&cert);
    if (s_load_client_broker(rdir, role, out, err, errlen) < 0) {
        explicit_bzero(out, sizeof *out);
        return -1;
    }
    return 0;
}

static void
s_append(keys_broker_t *kb, const uint8_t *key, keys_role_t role,
         const char *name)
{
    if (kb->count == kb->cap) {
        kb->cap = kb->cap ? 2 * kb->cap : 16;
        kb->entries = xrealloc(kb->entries, kb->cap * sizeof *kb->entries);
    }
    keys_entry_t *e = &kb->entries[kb->count++];
    memset(e, 0, sizeof *e);
    memcpy(e->public_key, key, sizeof e->public_key);
    e->role = role;
    snprintf(e->name, sizeof e->name, "%s", name);
}

// Loads adir/FILE if FILE is NAME.key; anything else is not ours.
static int
s_load_allow_entry(keys_broker_t *kb, const char *adir, keys_role_t role,
                   const char *file, char *err, size_t errlen)
{
    char name[KEYS_NAME_MAX + 1], path[PATH_MAX];
    size_t len;
    if (!s_strip_suffix(file, ".key", &len)) {
        return 0;
    }
    if (len <= KEYS_NAME_MAX) {
        memcpy(name, file, len);
        name[len] = '\0';
    }
    if (len > KEYS_NAME_MAX || !keys_name_is_valid(name)) {
        return s_fail(err, errlen, "'%s/%s': not a valid key name (use "
                      "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}.key; rename or "
                      "remove the file)", adir, file);
    }
    if (s_path(path, err, errlen, "%s/%s", adir, file) < 0) {
        return -1;
    }
    char *fix = xasprintf("an allow list of role %s holds public "
                          "certificates made by 'waggle-architect keygen': "
                          "remove this file, or put the key's NAME.key there",
                          keys_role_name(role));
    zcert_t *cert = s_load_cert(path, false, fix, err, errlen);
    free(fix);
    if (!cert) {
        return -1;
    }
    s_append(kb, zcert_public_key(cert), role, name);
    zcert_destroy(&cert);
    return 0;
}

// Loads DIR/broker/SUB/ROLE/*.key (SUB: allow or revoked).  A missing
// directory is an empty list for that role.
static int
s_load_allow(keys_broker_t *kb, const char *dir, const char *sub,
             keys_role_t role, char *err, size_t errlen)
{
    char adir[PATH_MAX];
    if (s_path(adir, err, errlen, "%s/broker/%s/%s", dir, sub,
               keys_role_name(role)) < 0) {
        return -1;
    }
    DIR *d = opendir(adir);
    if (!d) {
        if (errno == ENOENT) {
            return 0;
        }
        return s_fail(err, errlen, "cannot open '%s': %s", adir,
                      strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        rc = s_load_allow_entry(kb, adir, role, de->d_name, err, errlen);
    }
    closedir(d);
    return rc;
}

static int
s_cmp_entry(const void *a, const void *b)
{
    const keys_entry_t *x = a, *y = b;
    int c = memcmp(x->public_key, y->public_key, sizeof x->public_key);
    if (c == 0) {
        c = (int) x->role - (int) y->role;
    }
    return c ? c : strcmp(x->name, y->name);
}

static int
s_check_unique(const keys_broker_t *kb, const char *dir, char *err,
               size_t errlen)
{
    for (size_t i = 1; i < kb->count; i++) {
        const keys_entry_t *a = &kb->entries[i - 1], *b = &kb->entries[i];
        if (memcmp(a->public_key, b->public_key, sizeof a->public_key)) {
            continue;
        }
        return s_fail(err, errlen,
                      "the same public key is in '%s/broker/allow/%s/%s.key' "
                      "and '%s/broker/allow/%s/%s.key'; remove one",
                      dir, keys_role_name(a->role), a->name, dir,
                      keys_role_name(b->role), b->name);
    }
    return 0;
}

// Loads every allow list of dir into kb's (empty) entries, sorted.
static int
s_load_lists(keys_broker_t *kb, const char *dir, char *err, size_t errlen)
{
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        if (s_load_allow(kb, dir, "allow", (keys_role_t) r, err, errlen) <
            0) {
            return -1;
        }
    }
    if (kb->count > 1) {
        qsort(kb->entries, kb->count, sizeof *kb->entries, s_cmp_entry);
    }
    return s_check_unique(kb, dir, err, errlen);
}

int
keys_load_broker(const char *dir, keys_broker_t **out, char *err,
                 size_t errlen)
{
    assert(dir && out);
    char path[PATH_MAX];
    *out = NULL;
    if (s_path(path, err, errlen, "%s/broker/broker.key_secret", dir) < 0) {
        return -1;
    }
    if (!s_exists(path)) {
        return s_fail(err, errlen, "no broker key set in '%s/broker' "
                      "(missing '%s'); make one on this host with: "
                      "waggle-architect keygen %s", dir, path, dir);
    }
    zcert_t *cert = s_load_cert(path, true, "the broker's secret key is "
                                "damaged: restore it from a backup (a new "
                                "set from 'waggle-architect keygen NEWDIR' "
                                "needs new bundles on every host)", err,
                                errlen);
    if (!cert) {
        return -1;
    }
    keys_broker_t *kb = xcalloc(1, sizeof *kb);
    snprintf(kb->public_z85, sizeof kb->public_z85, "%s",
             zcert_public_txt(cert));
    snprintf(kb->secret_z85, sizeof kb->secret_z85, "%s",
             zcert_secret_txt(cert));
    zcert_destroy(&cert);
    if (s_load_lists(kb, dir, err, errlen) < 0) {
        keys_broker_destroy(&kb);
        return -1;
    }
    *out = kb;
    return 0;
}

static void
s_diff_push(keys_entry_t **arr, size_t *n, const keys_entry_t *e)
{
    *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
    (*arr)[(*n)++] = *e;
}

// Both lists are sorted by s_cmp_entry: one merge walk finds what is only
// in one of them.
static void
s_diff(const keys_broker_t *old, const keys_broker_t *new,
       keys_diff_t *diff)
{
    size_t i = 0, j = 0;
    while (i < old->count || j < new->count) {
        int c = i == old->count   ? 1
                : j == new->count ? -1
                                  : s_cmp_entry(&old->entries[i],
                                                &new->entries[j]);
        if (c < 0) {
            s_diff_push(&diff->removed, &diff->n_removed, &old->entries[i++]);
        } else if (c > 0) {
            s_diff_push(&diff->added, &diff->n_added, &new->entries[j++]);
        } else {
            i++;
            j++;
        }
    }
}

int
keys_broker_reload(keys_broker_t *kb, const char *dir, keys_diff_t *diff,
                   char *err, size_t errlen)
{
    assert(kb && dir && diff);
    memset(diff, 0, sizeof *diff);
    char path[PATH_MAX];
    if (s_path(path, err, errlen, "%s/broker", dir) < 0) {
        return -1;
    }
    // A vanished key directory (an unmounted volume) is a failure, not
    // an empty allow list that would cut everyone off.
    DIR *d = opendir(path);
    if (!d) {
        return s_fail(err, errlen, "cannot read '%s': %s", path,
                      strerror(errno));
    }
    closedir(d);
    keys_broker_t fresh = {0};
    if (s_load_lists(&fresh, dir, err, errlen) < 0) {
        free(fresh.entries);
        return -1;
    }
    s_diff(kb, &fresh, diff);
    free(kb->entries);
    kb->entries = fresh.entries;
    kb->count = fresh.count;
    kb->cap = fresh.cap;
    return 0;
}

void
keys_diff_release(keys_diff_t *diff)
{
    free(diff->added);
    free(diff->removed);
    memset(diff, 0, sizeof *diff);
}

bool
keys_broker_admits(const keys_broker_t *kb, keys_role_t role,
                   const char *name, const uint8_t public_key[32])
{
    const keys_entry_t *e = keys_broker_lookup(kb, public_key);
    return e && e->role == role && name && strcmp(e->name, name) == 0;
}

void
keys_broker_destroy(keys_broker_t **self_p)
{
    assert(self_p);
    keys_broker_t *self = *self_p;
    if (!self) {
        return;
    }
    explicit_bzero(self->secret_z85, sizeof self->secret_z85);
    free(self->entries);
    free(self);
    *self_p = NULL;
}

const char *
keys_broker_public(const keys_broker_t *kb)
{
    assert(kb);
    return kb->public_z85;
}

const char *
keys_broker_secret(const keys_broker_t *kb)
{
    assert(kb);
    return kb->secret_z85;
}

size_t
keys_broker_count(const keys_broker_t *kb)
{
    assert(kb);
    return kb->count;
}

static int
s_cmp_key(const void *key, const void *entry)
{
    const keys_entry_t *e = entry;
    return memcmp(key, e->public_key, sizeof e->public_key);
}

const keys_entry_t *
keys_broker_lookup(const keys_broker_t *kb, const uint8_t public_key[32])
{
    assert(kb && public_key);
    if (kb->count == 0) {
        return NULL;
    }
    return bsearch(public_key, kb->entries, kb->count, sizeof *kb->entries,
                   s_cmp_key);
}

static int
s_make_broker(const char *dir, char *err, size_t errlen)
{
    char secret[PATH_MAX], public[PATH_MAX];
    if (s_path(secret, err, errlen, "%s/broker/broker.key_secret", dir) < 0 ||
        s_path(public, err, errlen, "%s/broker/broker.key", dir) < 0) {
        return -1;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        return s_fail(err, errlen, "cannot make a CURVE key pair: %s",
                      strerror(errno));
    }
    zcert_set_meta(cert, "name", "broker");
    int rc = s_save_secret(cert, secret, err, errlen);
    if (rc == 0) {
        rc = s_save_public(cert, public, err, errlen);
    }
    zcert_destroy(&cert);
    return rc;
}

static int
s_add_paths(s_add_paths_t *p, const char *dir, const char *root,
            const char *role, const char *name, char *err, size_t errlen)
{
    if (s_path(p->secret, err, errlen, "%s/%s/%s.key_secret", root, role,
               name) < 0 ||
        s_path(p->public, err, errlen, "%s/%s/%s.key", root, role, name) < 0 ||
        s_path(p->broker, err, errlen, "%s/%s/broker.key", root, role) < 0 ||
        s_path(p->allow, err, errlen, "%s/broker/allow/%s/%s.key", dir, role,
               name) < 0 ||
        s_path(p->allow_tmp, err, errlen, "%s/broker/allow/%s/.%s.key.tmp",
               dir, role, name) < 0) {
        return -1;
    }
    const char *taken = s_exists(p->secret)   ? p->secret
                        : s_exists(p->public) ? p->public
                        : s_exists(p->allow)  ? p->allow
                                              : NULL;
    if (taken) {
        return s_fail(err, errlen, "key '%s' already exists for role %s "
                      "('%s')", name, role, taken);
    }
    return 0;
}

// Creates the directories of p and writes the files; the allow-list entry
// goes last and by rename, so the broker never admits a half-written key.
static int
s_add_files(const s_add_paths_t *p, zcert_t *broker, zcert_t *cert,
            char *err, size_t errlen)
{
    char dirs[2][PATH_MAX];
    snprintf(dirs[0], PATH_MAX, "%s", p->secret);
    snprintf(dirs[1], PATH_MAX, "%s", p->allow);
    for (int i = 0; i < 2; i++) {
        *strrchr(dirs[i], '/') = '\0';
        if (s_mkdirs(dirs[i], err, errlen) < 0) {
            return -1;
        }
    }
    unlink(p->allow_tmp);
    if (s_save_secret(cert, p->secret, err, errlen) < 0 ||
        s_save_public(cert, p->public, err, errlen) < 0 ||
        s_save_public(broker, p->broker, err, errlen) < 0 ||
        s_save_public(cert, p->allow_tmp, err, errlen) < 0) {
        return -1;
    }
    if (rename(p->allow_tmp, p->allow) < 0) {
        unlink(p->allow_tmp);
        return s_fail(err, errlen, "cannot write '%s': %s", p->allow,
                      strerror(errno));
    }
    return 0;
}

// Makes key NAME for role: its files under root/ROLE, admitted in dir.
static int
s_add_key(const char *dir, const char *root, keys_role_t role,
          const char *name, char *err, size_t errlen)
{
    s_add_paths_t *paths = xcalloc(1, sizeof *paths);
    char bpath[PATH_MAX];
    zcert_t *broker = NULL, *cert = NULL;
    int rc = -1;
    if (s_path(bpath, err, errlen, "%s/broker/broker.key", dir) < 0 ||
        s_add_paths(paths, dir, root, keys_role_name(role), name, err,
                    errlen) < 0 ||
        !(broker = s_load_cert(bpath, false, "it is the broker's public "
                               "certificate: restore it from the broker's "
                               "backup", err, errlen))) {
        goto out_free;
    }
    if (!(cert = zcert_new())) {
        s_fail(err, errlen, "cannot make a CURVE key pair: %s",
               strerror(errno));
        goto out_free;
    }
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "role", "%s", keys_role_name(role));
    rc = s_add_files(paths, broker, cert, err, errlen);
out_free:
    zcert_destroy(&cert);
    zcert_destroy(&broker);
    free(paths);
    return rc;
}

int
keys_generate(const char *dir, char *err, size_t errlen)
{
    assert(dir);
    char path[PATH_MAX];
    if (s_path(path, err, errlen, "%s/broker/broker.key_secret", dir) < 0) {
        return -1;
    }
    if (s_exists(path)) {
        return s_fail(err, errlen, "key set already exists in '%s'; "
                      "refusing to overwrite (add a key to it with: "
                      "waggle-architect keygen %s --add ROLE NAME)", dir,
                      dir);
    }
    if (s_path(path, err, errlen, "%s/broker", dir) < 0 ||
        s_mkdirs(path, err, errlen) < 0 ||
        s_make_broker(dir, err, errlen) < 0) {
        return -1;
    }
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        keys_role_t role = (keys_role_t) r;
        if (s_add_key(dir, dir, role, keys_role_name(role), err, errlen) <
            0) {
            return -1;
        }
    }
    return 0;
}

// Where a name may already be used for role r: 0 admitted, 1 revoked,
// 2 a local client key.  Returns s_path's result.
static int
s_name_place(char *path, const char *dir, const char *role, int w,
             const char *name)
{
    char e[8];
    switch (w) {
    case 0:
        return s_path(path, e, sizeof e, "%s/broker/allow/%s/%s.key", dir,
                      role, name);
    case 1:
        return s_path(path, e, sizeof e, "%s/broker/revoked/%s/%s.key", dir,
                      role, name);
    default:
        return s_path(path, e, sizeof e, "%s/%s/%s.key_secret", dir, role,
                      name);
    }
}

// Refuses a name that any role uses, admitted, revoked or local, and an
// existing bundle of that name: a name is one identity in the ledger.
static int
s_name_free(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        const char *role = keys_role_name((keys_role_t) r);
        for (int w = 0; w < 3; w++) {
            if (s_name_place(path, dir, role, w, name) < 0 ||
                !s_exists(path)) {
                continue;
            }
            return s_fail(err, errlen, "key name '%s' is taken (role %s%s: "
                          "'%s'); names are unique across roles and a "
                          "revoked name stays taken: pick another", name,
                          role, w == 1 ? ", revoked" : "", path);
        }
    }
    if (s_path(path, err, errlen, "%s/bundles/%s", dir, name) < 0) {
        return -1;
    }
    if (s_exists(path)) {
        return s_fail(err, errlen, "key name '%s' is taken: '%s' exists; "
                      "pick another", name, path);
    }
    return 0;
}

static int
s_check_name(const char *name, char *err, size_t errlen)
{
    if (!keys_name_is_valid(name) || strcmp(name, "broker") == 0) {
        return s_fail(err, errlen, "'%s' is not a valid key name (use "
                      "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}, not 'broker')",
                      name ? name : "");
    }
    return 0;
}

static int
s_need_broker(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (s_path(path, err, errlen, "%s/broker/broker.key", dir) < 0) {
        return -1;
    }
    if (!s_exists(path)) {
        return s_fail(err, errlen, "'%s' holds no broker key set (missing "
                      "'%s'); make one first with: waggle-architect keygen "
                      "%s", dir, path, dir);
    }
    return 0;
}

// Removes what a failed keys_add left of the bundle (p's files).
static void
s_remove_bundle(const char *bundle, const char *role, const char *name)
{
    char path[PATH_MAX], e[8];
    if (s_path(path, e, sizeof e, "%s/%s/%s.key_secret", bundle, role,
               name) == 0) {
        unlink(path);
    }
    if (s_path(path, e, sizeof e, "%s/%s/%s.key", bundle, role, name) == 0) {
        unlink(path);
    }
    if (s_path(path, e, sizeof e, "%s/%s/broker.key", bundle, role) == 0) {
        unlink(path);
    }
    if (s_path(path, e, sizeof e, "%s/%s", bundle, role) == 0) {
        rmdir(path);
    }
    rmdir(bundle);
}

int
keys_add(const char *dir, keys_role_t role, const char *name, char *bundle,
         char *err, size_t errlen)
{
    assert(dir && bundle);
    char path[PATH_MAX];
    bundle[0] = '\0';
    if (s_check_name(name, err, errlen) < 0 ||
        s_need_broker(dir, err, errlen) < 0 ||
        s_name_free(dir, name, err, errlen) < 0 ||
        s_path(path, err, errlen, "%s/bundles", dir) < 0 ||
        s_mkdirs(path, err, errlen) < 0 ||
        s_path(path, err, errlen, "%s/bundles/%s", dir, name) < 0) {
        return -1;
    }
    // mkdir is the claim: two keygens adding one name cannot both win.
    if (mkdir(path, 0700) < 0) {
        return s_fail(err, errlen, "cannot create '%s': %s", path,
                      strerror(errno));
    }
    chmod(path, 0700);
    if (s_add_key(dir, path, role, name, err, errlen) < 0) {
        s_remove_bundle(path, keys_role_name(role), name);
        return -1;
    }
    snprintf(bundle, PATH_MAX, "%s", path);
    return 0;
}

static int
s_cmp_info(const void *a, const void *b)
{
    const keys_info_t *x = a, *y = b;
    int c = (int) x->role - (int) y->role;
    return c ? c : strcmp(x->name, y->name);
}

static void
s_info_push(keys_info_t **out, size_t *n, const keys_entry_t *e,
            bool revoked)
{
    *out = xrealloc(*out, (*n + 1) * sizeof **out);
    keys_info_t *i = &(*out)[(*n)++];
    memset(i, 0, sizeof *i);
    i->role = e->role;
    snprintf(i->name, sizeof i->name, "%s", e->name);
    zmq_z85_encode(i->public_z85, e->public_key, 32);
    i->revoked = revoked;
}

int
keys_list(const char *dir, keys_info_t **out, size_t *n, char *err,
          size_t errlen)
{
    assert(dir && out && n);
    *out = NULL;
    *n = 0;
    if (s_need_broker(dir, err, errlen) < 0) {
        return -1;
    }
    static const char *const subs[] = {"allow", "revoked"};
    for (int s = 0; s < 2; s++) {
        keys_broker_t kb = {0};
        int rc = 0;
        for (int r = 0; r < KEYS_ROLE__COUNT && rc == 0; r++) {
            rc = s_load_allow(&kb, dir, subs[s], (keys_role_t) r, err,
                              errlen);
        }
        for (size_t i = 0; i < kb.count && rc == 0; i++) {
            s_info_push(out, n, &kb.entries[i], s == 1);
        }
        free(kb.entries);
        if (rc < 0) {
            free(*out);
            *out = NULL;
            *n = 0;
            return -1;
        }
    }
    if (*n > 1) {
        qsort(*out, *n, sizeof **out, s_cmp_info);
    }
    return 0;
}

// Moves DIR/broker/allow/ROLE/NAME.key to revoked/; 1 when it was there.
static int
s_revoke_role(const char *dir, keys_role_t role, const char *name,
              char *err, size_t errlen)
{
    char from[PATH_MAX], rdir[PATH_MAX], to[PATH_MAX];
    const char *r = keys_role_name(role);
    if (s_path(from, err, errlen, "%s/broker/allow/%s/%s.key", dir, r,
               name) < 0 ||
        s_path(rdir, err, errlen, "%s/broker/revoked/%s", dir, r) < 0 ||
        s_path(to, err, errlen, "%s/%s.key", rdir, name) < 0) {
        return -1;
    }
    if (!s_exists(from)) {
        return 0;
    }
    if (s_mkdirs(rdir, err, errlen) < 0) {
        return -1;
    }
    if (rename(from, to) < 0) {
        return s_fail(err, errlen, "cannot move '%s' to '%s': %s", from, to,
                      strerror(errno));
    }
    return 1;
}

int
keys_revoke(const char *dir, const char *name, keys_role_t *role, char *err,
            size_t errlen)
{
    assert(dir && role);
    if (s_check_name(name, err, errlen) < 0 ||
        s_need_broker(dir, err, errlen) < 0) {
        return -1;
    }
    int found = 0;
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        int rc = s_revoke_role(dir, (keys_role_t) r, name, err, errlen);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0 && found++ == 0) {
            *role = (keys_role_t) r;
        }
    }
    if (found) {
        return 0;
    }
    char path[PATH_MAX];
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        snprintf(path, sizeof path, "%s/broker/revoked/%s/%s.key", dir,
                 keys_role_name((keys_role_t) r), name);
        if (s_exists(path)) {
            return s_fail(err, errlen, "key '%s' (role %s) is already "
                          "revoked ('%s')", name,
                          keys_role_name((keys_role_t) r), path);
        }
    }
    return s_fail(err, errlen, "no key '%s' is admitted in '%s/broker/allow' "
                  "(list them with: waggle-architect keygen %s --list)",
                  name, dir, dir);
}

int
keys_broker_claim(const char *dir, int *fd)
{
    char path[PATH_MAX], pid[32];
    *fd = -1;
    snprintf(path, sizeof path, "%s/broker/broker.pid", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0) {
        return -1;
    }
    if (flock(f, LOCK_EX | LOCK_NB) < 0 || ftruncate(f, 0) < 0) {
        close(f);
        return -1;
    }
    int len = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    if (write(f, pid, (size_t) len) != len) {
        close(f);
        return -1;
    }
    *fd = f;
    return 0;
}

void
keys_broker_unclaim(const char *dir, int *fd)
{
    char path[PATH_MAX];
    if (*fd < 0) {
        return;
    }
    snprintf(path, sizeof path, "%s/broker/broker.pid", dir);
    // Unlink while the lock is held: no other broker can have claimed it.
    unlink(path);
    close(*fd);
    *fd = -1;
}

long
keys_broker_running(const char *dir)
{
    char path[PATH_MAX], buf[32] = "";
    snprintf(path, sizeof path, "%s/broker/broker.pid", dir);
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) {
        return 0;
    }
    long pid = 0;
    // The lock, not the file, says a broker runs: a crashed one leaves
    // the file behind but not the lock.
    if (flock(f, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
        ssize_t n = read(f, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = '\0';
        pid = strtol(buf, NULL, 10);
        if (pid <= 0) {
            pid = -1;  // running, pid unknown
        }
    }
    close(f);
    return pid;
}
