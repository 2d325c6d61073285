// ledger: the broker's durable state in SQLite (ledger.h has the task
// lifecycle, its invariants and the contract of every function;
// ledger_int.h says which ledger*.c file holds what).
//
// Owns the one database connection, the lock file that makes this process
// the ledger's only writer, the cache of prepared statements, turns (one
// transaction per broker loop turn), and the edge every other ledger file
// reaches SQLite through: binders, stepping, and logging SQLite's message
// once where it is still known.
//
// This file never decides which transition to make (that is sched.c's and
// broker.c's business), never reads a clock, and holds no SQL beyond the
// connection's own housekeeping (ledger_schema.c has the rest).  Only the
// broker/ledger*.c files in Waggle include <sqlite3.h>.
#include "broker/ledger_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_LOG "broker.ledger"
#define S_BUSY_TIMEOUT_MS 5000
// When the WAL starts over, the first commit cuts the file back to this
// (ledger_ckpt.c keeps it from growing much past a few MB in between).
#define S_WAL_LIMIT_BYTES (4 * 1024 * 1024)

// --- the SQLite edge ---------------------------------------------------

// An error ends the turn (ledger.h): a transition of several statements
// may have made only some of them, so the commit will refuse it.
static ledger_rc_t
s_broken(ledger_t *self, const char *op, const char *why)
{
    log_error(S_LOG, "ledger '%s': %s: %s", self->path, op, why);
    self->turn_failed = self->in_turn;
    return LEDGER_ERROR;
}

ledger_rc_t
ledger__broken(ledger_t *self, const char *op, const char *why)
{
    return s_broken(self, op, why);
}

// Logs SQLite's own message once, here where it is still known.
ledger_rc_t
ledger__fail(ledger_t *self, const char *op)
{
    return s_broken(self, op, sqlite3_errmsg(self->db));
}

void
ledger__bind_int(sqlite3_stmt *st, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(st, i, v);
    assert(rc == SQLITE_OK);
    (void) rc;
}

void
ledger__bind_text(sqlite3_stmt *st, int i, const char *s)
{
    int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
               : sqlite3_bind_null(st, i);
    assert(rc == SQLITE_OK);
    (void) rc;
}

void
ledger__bind_textn(sqlite3_stmt *st, int i, const char *s, size_t len)
{
    assert(s && len <= INT_MAX);
    int rc = sqlite3_bind_text(st, i, s, (int) len, SQLITE_STATIC);
    assert(rc == SQLITE_OK);
    (void) rc;
}

void
ledger__bind_sentence(sqlite3_stmt *st, int i, const char *s)
{
    if (!s) {
        ledger__bind_text(st, i, NULL);
        return;
    }
    size_t n = strlen(s);
    if (n > LEDGER_ERROR_MAX) {
        // Back up over the continuation bytes of a character the cut would
        // split: status sends this text, and the spec wants valid UTF-8.
        n = LEDGER_ERROR_MAX;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    int rc = sqlite3_bind_text(st, i, s, (int) n, SQLITE_STATIC);
    assert(rc == SQLITE_OK);
    (void) rc;
}

const char *
ledger__col_text(sqlite3_stmt *st, int i)
{
    return (const char *) sqlite3_column_text(st, i);
}

char *
ledger__col_dup(sqlite3_stmt *st, int i)
{
    const char *s = ledger__col_text(st, i);
    return s ? xstrdup(s) : NULL;
}

sqlite3_stmt *
ledger__stmt(ledger_t *self, ledger__query_t q)
{
    sqlite3_stmt *st = self->stmt[q];
    // Busy here means a callback re-entered the ledger mid-read.
    assert(!sqlite3_stmt_busy(st));
    sqlite3_clear_bindings(st);
    return st;
}

ledger_rc_t
ledger__write(ledger_t *self, sqlite3_stmt *st, const char *op)
{
    ledger_rc_t rc = LEDGER_OK;
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = ledger__fail(self, op);
    } else if (sqlite3_changes(self->db) != 1) {
        rc = LEDGER_MISS;
    }
    sqlite3_reset(st);
    return rc;
}

// SQLite makes all of a RETURNING statement's changes in the first step,
// so resetting after it loses nothing.
ledger_rc_t
ledger__returning(ledger_t *self, sqlite3_stmt *st, const char *op,
                  int64_t *v)
{
    int rc = sqlite3_step(st);
    ledger_rc_t out = LEDGER_OK;
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
    } else if (rc == SQLITE_DONE) {
        out = s_broken(self, op, "no row where one must be");
    } else {
        out = ledger__fail(self, op);
    }
    sqlite3_reset(st);
    return out;
}

ledger_rc_t
ledger__read_end(ledger_t *self, sqlite3_stmt *st, int rc, const char *op)
{
    ledger_rc_t out = rc == SQLITE_DONE ? LEDGER_OK : ledger__fail(self, op);
    sqlite3_reset(st);
    return out;
}

// SQLite rolls a transaction back on its own after some errors (disk
// full, I/O); writing then would commit each statement alone, so the rest
// of that turn is refused.
bool
ledger__turn_ok(ledger_t *self, const char *op)
{
    assert(self->in_turn);
    if (!self->in_turn || sqlite3_get_autocommit(self->db)) {
        s_broken(self, op, "the turn was rolled back");
        return false;
    }
    return true;
}

int
ledger__parse(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++) {
        if (strcmp(names[i], s) == 0) {
            return (int) i;
        }
    }
    return -1;
}

// --- open --------------------------------------------------------------

// Names the process holding the lock, from the pid it wrote there.
static void
s_lock_busy(int fd, const char *path, char *err, size_t errlen)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (pid > 0) {
        snprintf(err, errlen, "ledger '%s' is in use by another broker "
                 "(pid %ld)", path, pid);
    } else {
        // It has locked the file but not yet written its pid.
        snprintf(err, errlen, "ledger '%s' is in use by another broker "
                 "(pid unknown)", path);
    }
}

// Takes the writer's lock and writes our pid into it.  flock() rather than
// fcntl(): its lock belongs to the open file, so a second open in the same
// process is refused too, and closing some other descriptor of the file
// (as SQLite's fcntl locks would) cannot release it.
static int
s_lock(const char *path, char *err, size_t errlen)
{
    char *lock_path = xasprintf("%s.lock", path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open lock file '%s': %s", lock_path,
                 strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            s_lock_busy(fd, path, err, errlen);
        } else {
            snprintf(err, errlen, "cannot lock '%s': %s", lock_path,
                     strerror(errno));
        }
        close(fd);
        fd = -1;
    } else if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file '%s': %s", lock_path,
                 strerror(errno));
        close(fd);
        fd = -1;
    }
    free(lock_path);
    return fd;
}

// Creates path empty and private when it does not exist yet: the ledger
// holds every task's output and the env its workplan gave it, and SQLite
// would create it 0644 less the umask (its WAL and shared-memory files
// then take this file's mode).  An existing file keeps the mode its owner
// gave it.
static void
s_create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    if (fd >= 0) {
        (void) fchmod(fd, 0600);  // a umask may have taken the owner's bits
        close(fd);
    }
}

// Runs sql on the raw connection (open time, before statements exist).
static int
s_exec(ledger_t *self, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_exec(self->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                 sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

// The first column of a one-row query as text into buf ("" if no row).
static int
s_scalar(ledger_t *self, const char *sql, char *buf, size_t buflen,
         char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
    buf[0] = '\0';
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) {
            snprintf(buf, buflen, "%s", ledger__col_text(st, 0));
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                 sqlite3_errmsg(self->db));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int
s_create(ledger_t *self, char *err, size_t errlen)
{
    unsigned char raw[16];
    char id[33];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(id, sizeof id, raw, sizeof raw);
    char *meta = xasprintf("INSERT INTO meta (key, value) VALUES"
                           " ('schema_version', %d), ('next_token', 1),"
                           " ('ledger_id', '%s');",
                           LEDGER_SCHEMA_VERSION, id);
    int rc = s_exec(self, ledger__schema, err, errlen);
    if (rc == 0) {
        rc = s_exec(self, meta, err, errlen);
    }
    free(meta);
    return rc;
}

// A version this code can run as it is, or (writers only) upgrade.
static int
s_version_check(ledger_t *self, long version, bool rdonly, char *err,
                size_t errlen)
{
    if (version > LEDGER_SCHEMA_VERSION) {
        snprintf(err, errlen, "ledger '%s' has schema version %ld, newer "
                 "than this broker's version %d: upgrade waggle", self->path,
                 version, LEDGER_SCHEMA_VERSION);
        return -1;
    }
    if (version < 1) {
        snprintf(err, errlen, "ledger '%s' has no valid schema version",
                 self->path);
        return -1;
    }
    if (version < LEDGER_SCHEMA_VERSION && rdonly) {
        snprintf(err, errlen, "ledger '%s' has schema version %ld, older "
                 "than this broker's version %d: a broker upgrades it when "
                 "it opens it", self->path, version, LEDGER_SCHEMA_VERSION);
        return -1;
    }
    return 0;
}

// Creates the schema in an empty file, or checks the one there; *version
// gets the file's schema version.
static int
s_schema_check(ledger_t *self, bool rdonly, long *version, char *err,
               size_t errlen)
{
    *version = LEDGER_SCHEMA_VERSION;
    char buf[64];
    if (s_scalar(self, "SELECT count(*) FROM sqlite_schema WHERE name ="
                 " 'meta'", buf, sizeof buf, err, errlen) != 0) {
        return -1;
    }
    if (strcmp(buf, "0") == 0) {
        if (s_scalar(self, "SELECT count(*) FROM sqlite_schema", buf,
                     sizeof buf, err, errlen) != 0) {
            return -1;
        }
        if (rdonly || strcmp(buf, "0") != 0) {
            snprintf(err, errlen, "'%s' is not a waggle ledger", self->path);
            return -1;
        }
        return s_create(self, err, errlen);
    }
    if (s_scalar(self, "SELECT value FROM meta WHERE key = 'schema_version'",
                 buf, sizeof buf, err, errlen) != 0) {
        return -1;
    }
    *version = strtol(buf, NULL, 10);
    return s_version_check(self, *version, rdonly, err, errlen);
}

static int
s_prepare_all(ledger_t *self, char *err, size_t errlen)
{
    for (int q = 0; q < LEDGER__Q_COUNT; q++) {
        assert(ledger__sql[q]);
        if (sqlite3_prepare_v3(self->db, ledger__sql[q], -1,
                               SQLITE_PREPARE_PERSISTENT, &self->stmt[q],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot open ledger '%s': %s", self->path,
                     sqlite3_errmsg(self->db));
            return -1;
        }
    }
    return 0;
}

// The lease token counter, into memory (ledger_int.h says why).
static int
s_token_load(ledger_t *self, char *err, size_t errlen)
{
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_META_GET);
    ledger__bind_text(st, 1, "next_token");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        self->next_token = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW || self->next_token < 1) {
        snprintf(err, errlen, "cannot open ledger '%s': no valid lease token "
                 "counter (meta.next_token)", self->path);
        return -1;
    }
    return 0;
}

// Writes the token counter back in the turn that moved it.
static int
s_token_flush(ledger_t *self)
{
    // Not into a turn that will not commit, nor as a statement of its own
    // after SQLite rolled the turn back by itself.
    if (!self->token_dirty || self->turn_failed || self->fail_next_commit
        || sqlite3_get_autocommit(self->db)) {
        return 0;
    }
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_META_SET);
    ledger__bind_text(st, 1, "next_token");
    ledger__bind_int(st, 2, self->next_token);
    if (ledger__write(self, st, "commit: token counter") != LEDGER_OK) {
        return -1;
    }
    self->token_dirty = false;
    return 0;
}

int64_t
ledger__token_take(ledger_t *self)
{
    assert(self->in_turn);
    self->token_dirty = true;
    return self->next_token++;
}

// Connection settings, then the schema check (or creation) in one
// transaction, so a read-only opener never sees half a schema; then the
// upgrade of an older file, in transactions of its own.
static int
s_setup(ledger_t *self, bool rdonly, char *err, size_t errlen)
{
    char mode[16];
    long version;
    sqlite3_extended_result_codes(self->db, 1);
    sqlite3_busy_timeout(self->db, S_BUSY_TIMEOUT_MS);
    if (s_exec(self, "PRAGMA foreign_keys = ON", err, errlen) != 0) {
        return -1;
    }
    if (!rdonly) {
        if (s_scalar(self, "PRAGMA journal_mode = WAL", mode, sizeof mode,
                     err, errlen) != 0
            || s_exec(self, "PRAGMA synchronous = FULL", err, errlen) != 0) {
            return -1;
        }
        if (strcmp(mode, "wal") != 0) {
            snprintf(err, errlen, "cannot open ledger '%s': journal mode "
                     "is '%s', not 'wal'", self->path, mode);
            return -1;
        }
    }
    if (s_exec(self, rdonly ? "BEGIN" : "BEGIN IMMEDIATE", err, errlen)
            != 0) {
        return -1;
    }
    if (s_schema_check(self, rdonly, &version, err, errlen) != 0
        || s_scalar(self, "SELECT value FROM meta WHERE key = 'ledger_id'",
                    self->id, sizeof self->id, err, errlen) != 0) {
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (s_exec(self, "COMMIT", err, errlen) != 0) {
        return -1;
    }
    return version < LEDGER_SCHEMA_VERSION
               ? ledger__migrate(self, (int) version, err, errlen)
               : 0;
}

// SQLite's memory statistics take a global mutex and update counters on
// every malloc and free (about a fifth of the broker's CPU at 10k tasks/s,
// issue 9); nothing reads them.  The setting must come before SQLite
// initialises itself, i.e. before the first open in this process; when
// something else opened a database first it is refused and does no harm.
static void
s_memstatus_off(void)
{
    static bool done;
    if (!done) {
        done = true;
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    }
}

// Checkpoints move to a thread of their own (ledger_ckpt.c); the WAL
// limit keeps a file that grew under load from staying big.  The pragma
// before the thread: it would replace the thread's WAL hook.
static int
s_ckpt_setup(ledger_t *self, char *err, size_t errlen)
{
    char *sql = xasprintf("PRAGMA wal_autocheckpoint = 0;"
                          " PRAGMA journal_size_limit = %d",
                          S_WAL_LIMIT_BYTES);
    int rc = s_exec(self, sql, err, errlen);
    free(sql);
    if (rc != 0) {
        return -1;
    }
    return ledger__ckpt_start(&self->ckpt, self->db, self->path, err,
                              errlen);
}

int
ledger_open(ledger_t **out, const char *path, unsigned flags, char *err,
            size_t errlen)
{
    assert(out && path && err);
    bool rdonly = flags & LEDGER_RDONLY;
    *out = NULL;
    s_memstatus_off();
    if (sodium_init() < 0) {
        snprintf(err, errlen, "cannot open ledger '%s': libsodium failed "
                 "to initialise", path);
        return -1;
    }
    ledger_t *self = xcalloc(1, sizeof *self);
    self->path = xstrdup(path);
    self->lock_fd = -1;
    self->rdonly = rdonly;
    if (!rdonly && (self->lock_fd = s_lock(path, err, errlen)) < 0) {
        ledger_destroy(&self);
        return -1;
    }
    if (!rdonly) {
        s_create_private(path);
    }
    // One thread uses the connection, so SQLite's own mutexes are waste.
    int oflags = SQLITE_OPEN_NOMUTEX
                 | (rdonly ? SQLITE_OPEN_READONLY
                           : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &self->db, oflags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s': %s", path,
                 self->db ? sqlite3_errmsg(self->db) : "out of memory");
        ledger_destroy(&self);
        return -1;
    }
    if (s_setup(self, rdonly, err, errlen) != 0
        || s_prepare_all(self, err, errlen) != 0
        || s_token_load(self, err, errlen) != 0
        || (!rdonly && s_ckpt_setup(self, err, errlen) != 0)) {
        ledger_destroy(&self);
        return -1;
    }
    *out = self;
    return 0;
}

void
ledger_destroy(ledger_t **self_p)
{
    assert(self_p);
    ledger_t *self = *self_p;
    if (!self) {
        return;
    }
    ledger_rollback(self);
    ledger__events_destroy(self);
    for (int q = 0; q < LEDGER__Q_COUNT; q++) {
        sqlite3_finalize(self->stmt[q]);
    }
    // The thread's connection closes first, so the main one is the last
    // and its close checkpoints and removes the WAL, as before.
    if (self->db) {
        sqlite3_wal_hook(self->db, NULL, NULL);
    }
    ledger__ckpt_stop(&self->ckpt);
    sqlite3_close(self->db);
    // Closing the file releases the flock; the file itself stays, since
    // unlinking it could race with the next broker's open.
    if (self->lock_fd >= 0) {
        close(self->lock_fd);
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

void
ledger_checkpoints(const ledger_t *self, uint64_t *by_thread,
                   uint64_t *on_loop)
{
    assert(self && by_thread && on_loop);
    *by_thread = *on_loop = 0;
    if (self->ckpt) {
        ledger__ckpt_counts(self->ckpt, by_thread, on_loop);
    }
}

const char *
ledger_id(const ledger_t *self)
{
    assert(self);
    return self->id;
}

int
ledger_test_set_schema_version(ledger_t *self, int version)
{
    assert(self);
    sqlite3_stmt *st = ledger__stmt(self, LEDGER__Q_META_SET);
    ledger__bind_text(st, 1, "schema_version");
    ledger__bind_int(st, 2, version);
    return ledger__write(self, st, "set schema version") == LEDGER_OK ? 0 : -1;
}

// --- turns -------------------------------------------------------------

int
ledger_begin(ledger_t *self)
{
    assert(self);
    if (self->in_turn) {
        return 0;
    }
    // SQLite would begin one and fail only at the first write.
    if (self->rdonly) {
        log_error(S_LOG, "ledger '%s': begin: opened read-only", self->path);
        return -1;
    }
    if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)
            != SQLITE_OK) {
        ledger__fail(self, "begin");
        return -1;
    }
    self->in_turn = true;
    self->turn_failed = false;
    memset(&self->turn, 0, sizeof self->turn);
    memset(self->turn_in_state, 0, sizeof self->turn_in_state);
    return 0;
}

// The turn committed: what it wrote now counts.
static void
s_tally_commit(ledger_t *self)
{
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        self->tally.moves[i] += self->turn.moves[i];
    }
    for (size_t i = 0; i < LEDGER__N_OUTCOMES; i++) {
        self->tally.ended[i] += self->turn.ended[i];
    }
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        self->in_state[i] += self->turn_in_state[i];
    }
    memset(&self->turn, 0, sizeof self->turn);
    memset(self->turn_in_state, 0, sizeof self->turn_in_state);
}

const ledger_tally_t *
ledger_tally(const ledger_t *self)
{
    assert(self);
    return &self->tally;
}

uint64_t
ledger_turn_moves(const ledger_t *self)
{
    assert(self);
    uint64_t n = 0;
    for (size_t i = 0; self->in_turn && i < PROTO_TASK__COUNT; i++) {
        n += self->turn.moves[i];
    }
    return n;
}

void
ledger__tally_move(ledger_t *self, proto_task_state_t from,
                   proto_task_state_t to)
{
    assert((size_t) from < PROTO_TASK__COUNT);
    assert((size_t) to < PROTO_TASK__COUNT);
    self->turn.moves[to]++;
    self->turn_in_state[from]--;
    self->turn_in_state[to]++;
}

void
ledger__tally_insert(ledger_t *self, proto_task_state_t to)
{
    assert((size_t) to < PROTO_TASK__COUNT);
    self->turn_in_state[to]++;
}

int
ledger_commit(ledger_t *self)
{
    assert(self);
    if (!self->in_turn) {
        return 0;
    }
    // The counter's write and the buffered events rows are part of the
    // turn: when one fails, so does the commit (the write marked the turn
    // failed).
    (void) ledger__events_flush(self);
    (void) s_token_flush(self);
    if (self->fail_next_commit || self->turn_failed) {
        log_error(S_LOG, "ledger '%s': commit: %s; rolled back", self->path,
                  self->turn_failed ? "an error earlier in this turn"
                                    : "injected failure (test)");
        self->fail_next_commit = false;
        ledger_rollback(self);
        return -1;
    }
    // A transaction SQLite already rolled back has nothing left to commit.
    if (sqlite3_get_autocommit(self->db)) {
        log_error(S_LOG, "ledger '%s': commit: the turn was rolled back",
                  self->path);
        self->in_turn = false;
        return -1;
    }
    if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ledger__fail(self, "commit");
        ledger_rollback(self);
        return -1;
    }
    self->in_turn = false;
    s_tally_commit(self);
    return 0;
}

void
ledger_rollback(ledger_t *self)
{
    assert(self);
    if (!self->in_turn) {
        return;
    }
    self->in_turn = false;
    ledger__events_clear(self);
    // The counter stays where it is: tokens of a rolled-back turn are
    // skipped, never handed out twice.
    self->token_dirty = false;
    if (!sqlite3_get_autocommit(self->db)
        && sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL)
               != SQLITE_OK) {
        ledger__fail(self, "rollback");
    }
}

bool
ledger_in_turn(const ledger_t *self)
{
    assert(self);
    return self->in_turn;
}

void
ledger_fail_next_commit(ledger_t *self)
{
    assert(self);
    self->fail_next_commit = true;
}
