// keygen: the architect's key management — a complete local key set, one
// key per host (--add), the list of keys (--list) and revocation
// (--revoke).  The files are keys.c's; this file parses the command line
// and says what to do next: which directory a host gets, and whether a
// running broker must be sent SIGHUP to apply a change.
#include "architect/arch.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { S_MAKE = 0, S_ADD, S_LIST, S_REVOKE } s_action_t;

typedef struct {
    const arch_t *arch;         // for reporting failures (--json)
    s_action_t action;
    const char *dir;            // DIR
    const char *role;           // --add ROLE
    const char *name;           // --add ROLE NAME, --revoke NAME
    bool json;                  // --json
    bool help;                  // --help
} s_args_t;

static const char *s_usage =
    "usage: waggle-architect keygen DIR [--add ROLE NAME | --list [--json] "
    "| --revoke NAME]\n";

static void
s_help(void)
{
    printf("%s\n"
           "  keygen DIR                 make a complete local key set in DIR:"
           " the broker's\n"
           "                             bundle and one key each for drone,"
           " submitter, operator\n"
           "  keygen DIR --add ROLE NAME make key NAME (ROLE: drone, "
           "submitter or operator),\n"
           "                             admit it in DIR/broker, write a "
           "bundle for that host\n"
           "                             alone and print its directory as "
           "the last line: copy\n"
           "                             that directory to the host and pass"
           " it as --keys\n"
           "  keygen DIR --list          every key with its role (admitted "
           "or revoked)\n"
           "  keygen DIR --revoke NAME   take NAME out of the allow lists; "
           "a running broker\n"
           "                             applies added and revoked keys on "
           "SIGHUP\n\n"
           "Names: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}, unique across roles; a "
           "revoked name\nstays taken.  Secrets are written 0600, "
           "directories 0700; nothing is\noverwritten.\n", s_usage);
}

// Says what is wrong with the command line (what, then the argument).
static int
s_bad(const s_args_t *o, const char *what, const char *arg)
{
    char *message = xasprintf("keygen: %s%s", what, arg);
    fprintf(stderr, "waggle-architect %s\n%s", message, s_usage);
    arch_json_error(o->arch, "usage", message, NULL);
    free(message);
    return -1;
}

static int
s_set_action(s_args_t *o, s_action_t action, const char *flag)
{
    if (o->action != S_MAKE) {
        return s_bad(o, "only one of --add, --list and --revoke: ", flag);
    }
    o->action = action;
    return 0;
}

// Reads flag i (and its values); returns the next index, or -1.
static int
s_flag(s_args_t *o, int argc, char **argv, int i)
{
    const char *f = argv[i];
    if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
        o->help = true;
    } else if (strcmp(f, "--json") == 0) {
        o->json = true;
    } else if (strcmp(f, "--list") == 0) {
        return s_set_action(o, S_LIST, f) < 0 ? -1 : i + 1;
    } else if (strcmp(f, "--add") == 0) {
        if (i + 2 >= argc) {
            return s_bad(o, "--add needs ROLE and NAME", "");
        }
        o->role = argv[i + 1];
        o->name = argv[i + 2];
        return s_set_action(o, S_ADD, f) < 0 ? -1 : i + 3;
    } else if (strcmp(f, "--revoke") == 0) {
        if (i + 1 >= argc) {
            return s_bad(o, "--revoke needs NAME", "");
        }
        o->name = argv[i + 1];
        return s_set_action(o, S_REVOKE, f) < 0 ? -1 : i + 2;
    } else {
        return s_bad(o, "unknown option ", f);
    }
    return i + 1;
}

static int
s_parse(s_args_t *o, int argc, char **argv)
{
    for (int i = 1; i < argc;) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            if ((i = s_flag(o, argc, argv, i)) < 0) {
                return -1;
            }
            continue;
        }
        if (o->dir) {
            return s_bad(o, "unexpected argument ", argv[i]);
        }
        // "keys/" prints as "keys/bundles/x", not "keys//bundles/x".
        size_t len = strlen(argv[i]);
        while (len > 1 && argv[i][len - 1] == '/') {
            argv[i][--len] = '\0';
        }
        o->dir = argv[i++];
    }
    if (!o->dir && !o->help) {
        return s_bad(o, "DIR is missing", "");
    }
    return 0;
}

static int
s_make(const s_args_t *o)
{
    char err[1024];
    const char *d = o->dir;
    if (keys_generate(d, err, sizeof err) < 0) {
        return arch_report(o->arch, ARCH_EXIT_FAILED, "keys", err, NULL);
    }
    printf("keys written to %s:\n"
           "  %s/broker/     the broker's secret key and allow lists "
           "(broker host only)\n"
           "  %s/drone/      a drone key for this host\n"
           "  %s/submitter/  a submitter key (submit, read, cancel, retry)\n"
           "  %s/operator/   an operator key (everything, approvals "
           "included)\n"
           "for a drone on another host: waggle-architect keygen %s --add "
           "drone NAME\n", d, d, d, d, d, d);
    return ARCH_EXIT_OK;
}

// Says whether a running broker must be sent SIGHUP to apply a change.
static void
s_hup_hint(FILE *out, const char *dir, const char *what)
{
    long pid = keys_broker_running(dir);
    if (pid > 0) {
        fprintf(out, "the broker running with '%s' (pid %ld) %s after "
                     "SIGHUP: kill -HUP %ld\n", dir, pid, what, pid);
    } else if (pid < 0) {
        fprintf(out, "a broker is running with '%s': it %s after SIGHUP\n",
                dir, what);
    } else {
        fprintf(out, "no broker is running with '%s' now; a broker reads "
                     "the allow lists when it starts and on SIGHUP\n", dir);
    }
}

static int
s_add(const s_args_t *o)
{
    keys_role_t role;
    char err[1024], bundle[PATH_MAX];
    if (keys_role_parse(o->role, &role) < 0) {
        return arch_fail(o->arch, ARCH_EXIT_USAGE, "usage", "keygen: unknown "
                         "role '%s' (use drone, submitter or operator)",
                         o->role);
    }
    if (keys_add(o->dir, role, o->name, bundle, err, sizeof err) < 0) {
        return arch_report(o->arch, ARCH_EXIT_FAILED, "keys", err, NULL);
    }
    const char *r = keys_role_name(role);
    printf("added %s key '%s', admitted by '%s/broker/allow/%s/%s.key'\n", r,
           o->name, o->dir, r, o->name);
    s_hup_hint(stdout, o->dir, "admits it");
    printf("copy ONLY this directory to that host and pass it as --keys "
           "there (it holds\n'%s/%s.key_secret' and the broker's public "
           "key), e.g.\n  scp -r %s HOST:waggle-keys\n  waggle-%s --keys "
           "waggle-keys --broker tcp://BROKER-HOST:7600\n", r, o->name,
           bundle, role == KEYS_ROLE_DRONE ? "drone" : "architect");
    printf("%s\n", bundle);
    return ARCH_EXIT_OK;
}

static int
s_revoke(const s_args_t *o)
{
    keys_role_t role;
    char err[1024];
    if (keys_revoke(o->dir, o->name, &role, err, sizeof err) < 0) {
        return arch_report(o->arch, ARCH_EXIT_FAILED, "keys", err, NULL);
    }
    printf("revoked %s key '%s' (moved to '%s/broker/revoked/%s/'); its "
           "name stays taken\n", keys_role_name(role), o->name, o->dir,
           keys_role_name(role));
    s_hup_hint(stdout, o->dir, "still admits it and cuts its sessions off");
    return ARCH_EXIT_OK;
}

// The directory holding key name's bundle, or NULL.
static char *
s_bundle_of(const char *dir, const keys_info_t *k)
{
    struct stat st;
    char *path = xasprintf("%s/bundles/%s", dir, k->name);
    if (stat(path, &st) == 0) {
        return path;
    }
    free(path);
    path = xasprintf("%s/%s/%s.key_secret", dir, keys_role_name(k->role),
                     k->name);
    bool local = stat(path, &st) == 0;
    free(path);
    return local ? xstrdup(dir) : NULL;
}

static void
s_list_json(const char *dir, const keys_info_t *keys, size_t n)
{
    jnode_t *root = json_obj_new(), *arr = json_arr_new();
    for (size_t i = 0; i < n; i++) {
        jnode_t *k = json_obj_new();
        char *bundle = s_bundle_of(dir, &keys[i]);
        json_obj_set_str(k, "name", keys[i].name);
        json_obj_set_str(k, "role", keys_role_name(keys[i].role));
        json_obj_set_str(k, "state", keys[i].revoked ? "revoked"
                                                     : "admitted");
        json_obj_set_str(k, "public_key", keys[i].public_z85);
        if (bundle) {
            json_obj_set_str(k, "bundle", bundle);
        } else {
            json_obj_set_null(k, "bundle");
        }
        free(bundle);
        json_arr_push_node(arr, &k);
    }
    json_obj_set_node(root, "keys", &arr);
    char *text = json_dump(root, true);
    printf("%s\n", text);
    free(text);
    json_destroy(&root);
}

static void
s_list_text(const char *dir, const keys_info_t *keys, size_t n)
{
    printf("%-20s %-10s %-9s %-41s %s\n", "NAME", "ROLE", "STATE",
           "PUBLIC KEY", "BUNDLE (--keys)");
    for (size_t i = 0; i < n; i++) {
        char *bundle = s_bundle_of(dir, &keys[i]);
        printf("%-20s %-10s %-9s %-41s %s\n", keys[i].name,
               keys_role_name(keys[i].role),
               keys[i].revoked ? "revoked" : "admitted", keys[i].public_z85,
               bundle ? bundle : "-");
        free(bundle);
    }
}

static int
s_list(const s_args_t *o)
{
    keys_info_t *keys = NULL;
    size_t n = 0;
    char err[1024];
    if (keys_list(o->dir, &keys, &n, err, sizeof err) < 0) {
        return arch_report(o->arch, ARCH_EXIT_FAILED, "keys", err, NULL);
    }
    if (o->json) {
        s_list_json(o->dir, keys, n);
    } else {
        s_list_text(o->dir, keys, n);
    }
    free(keys);
    return ARCH_EXIT_OK;
}

int
cmd_keygen(arch_t *a, int argc, char **argv)
{
    s_args_t o = {.arch = a, .json = a->cfg->json};
    if (s_parse(&o, argc, argv) < 0) {
        return ARCH_EXIT_USAGE;
    }
    if (o.help) {
        s_help();
        return ARCH_EXIT_OK;
    }
    switch (o.action) {
    case S_ADD:
        return s_add(&o);
    case S_LIST:
        return s_list(&o);
    case S_REVOKE:
        return s_revoke(&o);
    default:
        return s_make(&o);
    }
}
