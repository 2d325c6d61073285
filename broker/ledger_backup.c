// ledger_backup: consistent copies of a ledger, made through SQLite's
// backup API and never by copying the file (a live WAL ledger copied byte
// by byte can be torn, and its -wal holds commits the main file lacks).
//
// Owns two kinds of copy: the one ledger_migrate.c saves before an upgrade
// ("<path>.v<N>.bak", an exact copy), and ledger_backup()'s, which an
// operator makes beside a running broker and restores from (checked with
// integrity_check, token counter advanced; ledger.h).  Both are written
// under "<out>.partial" and renamed when whole, so out is only ever
// replaced by a complete copy.  Never touches the source beyond reading it.
#include "broker/ledger_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The rename of the finished copy survives a crash only once the
// directory holding it is on disk.
static void
s_sync_dir(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void) fsync(fd);
        close(fd);
    }
    free(copy);
}

// Creates tmp empty with the ledger's mode, so the copy is never readable
// by anyone the ledger is not (SQLite would create it 0644 less the umask).
static int
s_create(ledger_t *self, const char *tmp, char *err, size_t errlen)
{
    struct stat sb;
    mode_t mode = stat(self->path, &sb) == 0 ? sb.st_mode & 0777 : 0600;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  mode);
    if (fd < 0 || fchmod(fd, mode) < 0) {
        snprintf(err, errlen, "cannot back up ledger '%s': cannot create "
                 "'%s': %s", self->path, tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    return 0;
}

// Copies the whole database, WAL included, into tmp in one read
// transaction of the source: the copy is the ledger as of one commit.
static int
s_copy(ledger_t *self, const char *tmp, char *err, size_t errlen)
{
    if (s_create(self, tmp, err, errlen) < 0) {
        return -1;
    }
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE
                             | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_backup *bk = sqlite3_backup_init(dst, "main", self->db,
                                                 "main");
        if (bk) {
            rc = sqlite3_backup_step(bk, -1);
            sqlite3_backup_finish(bk);
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(dst);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot back up ledger '%s' to '%s': %s",
                 self->path, tmp, dst ? sqlite3_errmsg(dst) : "out of memory");
    }
    sqlite3_close(dst);
    return rc == SQLITE_OK ? 0 : -1;
}

int
ledger__save_copy(ledger_t *self, const char *out, ledger__copy_fn check,
                  void *arg, char *err, size_t errlen)
{
    char *tmp = xasprintf("%s.partial", out);
    int rc = -1;
    if (unlink(tmp) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot back up ledger '%s': cannot remove "
                 "'%s': %s", self->path, tmp, strerror(errno));
    } else if (s_copy(self, tmp, err, errlen) == 0
               && (!check || check(tmp, arg, err, errlen) == 0)) {
        if (rename(tmp, out) != 0) {
            snprintf(err, errlen, "cannot back up ledger '%s': cannot "
                     "rename '%s': %s", self->path, tmp, strerror(errno));
        } else {
            s_sync_dir(out);
            rc = 0;
        }
    }
    if (rc != 0) {
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

// --- ledger_backup's check of the copy ------------------------------------

// The first column of sql's first row as an integer into *v (0 if none).
static int
s_int(sqlite3 *db, const char *sql, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        *v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

// PRAGMA integrity_check's verdict: 0 for "ok", else -1 with its first
// complaint in err.
static int
s_integrity(sqlite3 *db, const char *tmp, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st,
                                NULL);
    const char *verdict = NULL;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        verdict = (const char *) sqlite3_column_text(st, 0);
    }
    int ok = verdict && strcmp(verdict, "ok") == 0;
    if (!ok) {
        snprintf(err, errlen, "the copy '%s' fails its integrity check: %s",
                 tmp, verdict ? verdict : sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

// Advances the copy's token counter past every token the live broker may
// issue after the copy was taken (ledger.h, LEDGER_BACKUP_TOKEN_GAP), and
// reads what the copy holds into info.
static int
s_gap_and_count(sqlite3 *db, ledger_backup_info_t *info)
{
    char *sql = xasprintf("UPDATE meta SET value = value + %llu WHERE key ="
                          " 'next_token'",
                          (unsigned long long) LEDGER_BACKUP_TOKEN_GAP);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    free(sql);
    int64_t v = 0;
    if (rc == SQLITE_OK) {
        rc = s_int(db, "SELECT value FROM meta WHERE key = 'next_token'", &v);
        info->next_token = (uint64_t) v;
    }
    if (rc == SQLITE_OK) {
        rc = s_int(db, "SELECT value FROM meta WHERE key ="
                       " 'schema_version'", &v);
        info->schema_version = (int) v;
    }
    if (rc == SQLITE_OK) {
        rc = s_int(db, "SELECT count(*) FROM plans", &info->plans);
    }
    if (rc == SQLITE_OK) {
        rc = s_int(db, "SELECT coalesce(max(seq), 0) FROM events",
                   &info->last_event);
    }
    return rc;
}

// ledger__copy_fn for ledger_backup: checks and prepares the copy at tmp.
static int
s_check_copy(const char *tmp, void *arg, char *err, size_t errlen)
{
    ledger_backup_info_t *info = arg;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE
                             | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open the copy '%s': %s", tmp,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    int bad = s_integrity(db, tmp, err, errlen);
    if (!bad && s_gap_and_count(db, info) != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare the copy '%s': %s", tmp,
                 sqlite3_errmsg(db));
        bad = -1;
    }
    // Closing the last connection checkpoints the copy's WAL into it and
    // removes the -wal file, so the copy is one self-contained file.
    if (sqlite3_close(db) != SQLITE_OK && !bad) {
        snprintf(err, errlen, "cannot close the copy '%s'", tmp);
        bad = -1;
    }
    struct stat sb;
    if (!bad && stat(tmp, &sb) == 0) {
        info->bytes = (int64_t) sb.st_size;
    }
    return bad;
}

int
ledger_backup(ledger_t *self, const char *out, ledger_backup_info_t *info,
              char *err, size_t errlen)
{
    assert(self && out && info && err);
    memset(info, 0, sizeof *info);
    return ledger__save_copy(self, out, s_check_copy, info, err, errlen);
}
