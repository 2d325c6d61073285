// backup: 'waggle-broker backup' (backup.h).
#include "broker/backup.h"
#include "broker/ledger.h"

#include "common/cfg.h"
#include "common/json.h"
#include "common/xalloc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char *db;                   // the ledger to copy
    bool json;                  // --json: one object on stdout
} backup_config_t;

#define C(f) offsetof(backup_config_t, f)

static const cfg_option_t s_opts[] = {
    {"db", NULL, CFG_STR, C(db), NULL, "FILE",
     "the ledger to copy (default: the broker's --db)", 0, 0},
    {"json", NULL, CFG_BOOL, C(json), "0", NULL,
     "print the result as one JSON object", 0, 0},
    CFG_END,
};

static void
s_usage(void)
{
    printf("usage: waggle-broker [--db FILE] backup [--json] OUT\n\n"
           "Writes a consistent copy of the ledger to OUT while the broker "
           "runs, through\nSQLite's backup API (never a file copy), checks "
           "it with integrity_check and\nadvances its lease-token counter "
           "by 2^32 so that a broker restored from it\nnever reuses a "
           "token.  OUT is written as OUT.partial and renamed when whole.\n"
           "\noptions:\n");
    cfg_usage(stdout, s_opts);
    printf("\nexit status: 0 written and checked; 1 the copy failed; 3 the "
           "ledger cannot be\nopened; 64 bad usage.\n");
}

static int
s_fail(const backup_config_t *c, int status, const char *msg)
{
    fprintf(stderr, "waggle-broker: backup: %s\n", msg);
    if (c->json) {
        jnode_t *o = json_obj_new();
        json_obj_set_str(o, "error", msg);
        json_obj_set_int(o, "exit", status);
        char *text = json_dump(o, false);
        printf("%s\n", text);
        free(text);
        json_destroy(&o);
    }
    return status;
}

static void
s_report(const backup_config_t *c, const char *out,
         const ledger_backup_info_t *info)
{
    if (!c->json) {
        printf("backup of '%s' written to '%s': %lld bytes, %lld plans, up "
               "to event %lld, schema version %d, integrity ok\n", c->db, out,
               (long long) info->bytes, (long long) info->plans,
               (long long) info->last_event, info->schema_version);
        return;
    }
    jnode_t *o = json_obj_new();
    json_obj_set_str(o, "ledger", c->db);
    json_obj_set_str(o, "backup", out);
    json_obj_set_int(o, "bytes", info->bytes);
    json_obj_set_int(o, "plans", info->plans);
    json_obj_set_int(o, "last_event", info->last_event);
    json_obj_set_int(o, "next_token", (int64_t) info->next_token);
    json_obj_set_int(o, "schema_version", info->schema_version);
    json_obj_set_str(o, "integrity", "ok");
    char *text = json_dump(o, false);
    printf("%s\n", text);
    free(text);
    json_destroy(&o);
}

// Options and the one argument, in any order after the word "backup".
static int
s_parse(backup_config_t *c, int argc, char **argv, int first,
        const char **out)
{
    char err[256];
    bool help = false;
    for (int i = first + 1; i < argc;) {
        int next = i;
        if (cfg_load_args(s_opts, c, argc, argv, i, &next, &help, err,
                          sizeof err) < 0) {
            return s_fail(c, BACKUP_EXIT_USAGE, err);
        }
        if (next < argc && *out) {
            return s_fail(c, BACKUP_EXIT_USAGE, "one OUT file only");
        }
        if (next < argc) {
            *out = argv[next];
        }
        i = next + 1;
    }
    if (help) {
        s_usage();
        return BACKUP_EXIT_OK;
    }
    if (!*out || !**out) {
        return s_fail(c, BACKUP_EXIT_USAGE, "usage: waggle-broker backup "
                      "[--db FILE] [--json] OUT (see backup --help)");
    }
    return -1;
}

int
backup_main(const char *db, int argc, char **argv, int first)
{
    backup_config_t c = {.db = xstrdup(db)};
    const char *out = NULL;
    int rc = s_parse(&c, argc, argv, first, &out);
    if (rc >= 0) {
        cfg_release(s_opts, &c);
        return rc;
    }
    char err[1024];
    ledger_t *ledger = NULL;
    ledger_backup_info_t info;
    if (ledger_open(&ledger, c.db, LEDGER_RDONLY, err, sizeof err) < 0) {
        rc = s_fail(&c, BACKUP_EXIT_LEDGER, err);
    } else if (ledger_backup(ledger, out, &info, err, sizeof err) < 0) {
        rc = s_fail(&c, BACKUP_EXIT_FAILED, err);
    } else {
        s_report(&c, out, &info);
        rc = BACKUP_EXIT_OK;
    }
    ledger_destroy(&ledger);
    cfg_release(s_opts, &c);
    return rc;
}
