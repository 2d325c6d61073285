// ledger_ckpt: WAL checkpoints on a thread owned by the ledger, on a
// connection of its own, so no COMMIT on the broker's loop pays for one
// (ledger_int.h has the contract).
//
// With SQLite's autocheckpoint, the COMMIT that took the WAL past 1000
// frames copied every page into the database and synced the WAL and the
// database before it returned: that turn's replies and TASKs waited tens
// of ms (issue 9: the max of the dispatch latency).  Here the main
// connection's WAL hook (which also turns the autocheckpoint off) only
// counts frames and, every S_CKPT_FRAMES new ones, wakes this thread for
// a PASSIVE checkpoint, which never blocks the writer.  After a second
// with no commit the thread runs a TRUNCATE one, so an idle ledger leaves
// an empty WAL.  Durability does not change: the main connection still
// syncs every commit (synchronous=FULL); a checkpoint only copies frames
// that are durable already, and SQLite syncs the WAL before and the
// database after copying, so a SIGKILL in the middle loses nothing.
//
// The bound.  A checkpoint copies only frames no reader still needs, and
// the WAL starts over only when a write begins with every frame copied;
// a busy writer commits while the thread copies, keeps it one step behind
// (measured: at the 16x16 peak the WAL never restarted on its own), and
// the WAL would grow without end.  So the loop finishes what the thread
// began: at the first commit after a thread checkpoint, when at most
// S_FINISH_FRAMES frames are left, the hook runs a PASSIVE checkpoint
// itself, where no commit can slip in between; it copies only those few
// frames, and the next write restarts the WAL (journal_size_limit then
// cuts the file back).  Past S_WAL_HIGH_FRAMES it does so whatever is
// left, and logs it: the thread cannot keep up (a slow disk) or a reader
// holds an old snapshot.
//
// The thread never writes rows and never decides what is committed; it
// shares with the loop only the fields under mu.
#include "broker/ledger_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define S_LOG "broker.ledger"
// SQLite's own autocheckpoint rule: ~4 MB of 4 KiB pages.
#define S_CKPT_FRAMES 1000
// Past this the loop checkpoints itself (see above): ~32 MB of WAL.
#define S_WAL_HIGH_FRAMES (8 * S_CKPT_FRAMES)
#define S_IDLE_TRUNCATE_MS 1000     // no commit for this long: TRUNCATE
// A TRUNCATE takes the writer's lock: it waits this long for the loop's
// turn, and a turn that starts meanwhile waits for it (the WAL is copied
// already, so it is short).
#define S_CKPT_BUSY_MS 100
// A PASSIVE checkpoint that left frames (commits came in meanwhile) is
// run again at most this many times: the WAL restarts only when a write
// begins with every frame copied.
#define S_CATCH_UP 3
// The loop finishes a thread checkpoint that left at most this many
// frames (~1 MB): a short copy instead of the whole WAL.
#define S_FINISH_FRAMES 256

struct ledger__ckpt {
    char *path;                     // the database file, for messages
    struct sqlite3 *db;             // the thread's own connection
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t work;            // the thread waits here
    bool wanted;                    // a PASSIVE checkpoint is due (mu)
    bool stop;                      // ledger__ckpt_stop was called (mu)
    bool dirty;                     // commits since the last TRUNCATE (mu)
    uint64_t commits;               // commits seen by the hook (mu)
    // The loop's side, touched only by the hook.
    int asked_frames;               // WAL size at the last request
    uint64_t loop_ckpts;            // checkpoints the loop ran
    uint64_t high_ckpts;            // of them, past the high mark
    _Atomic uint64_t thread_ckpts;  // checkpoints the thread ran
    // Frames the thread's last PASSIVE copied, or 0: the loop's cue to
    // finish it (s_wal_hook); it takes it back to 0.
    _Atomic int copied;
};

// Returns how many frames are left behind (writes that came in meanwhile,
// or frames a reader still needs), 0 when the WAL is copied whole;
// *copied gets the frames copied so far (0 after an error).
static int
s_checkpoint(struct sqlite3 *db, const char *path, int mode, const char *who,
             int *copied)
{
    int log_frames = 0, done_frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, mode, &log_frames,
                                       &done_frames);
    // BUSY: another checkpoint, a reader or the writer is in the way; the
    // next one catches up.
    *copied = rc == SQLITE_OK ? done_frames : 0;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
        log_warn(S_LOG, "ledger '%s': checkpoint (%s): %s", path, who,
                 sqlite3_errmsg(db));
        return 0;
    }
    return rc == SQLITE_OK && log_frames > done_frames
               ? log_frames - done_frames : 0;
}

static void
s_deadline(struct timespec *until, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, until);
    until->tv_sec += ms / 1000;
    until->tv_nsec += (ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

// Waits for a checkpoint to do: PASSIVE when asked, TRUNCATE after
// S_IDLE_TRUNCATE_MS with no commit; -1 when the thread must end.  Called
// and returns with mu held.
static int
s_wait(ledger__ckpt_t *self)
{
    while (!self->stop && !self->wanted) {
        if (!self->dirty) {
            pthread_cond_wait(&self->work, &self->mu);
            continue;
        }
        uint64_t seen = self->commits;
        struct timespec until;
        s_deadline(&until, S_IDLE_TRUNCATE_MS);
        if (pthread_cond_timedwait(&self->work, &self->mu, &until) != 0
            && self->commits == seen && !self->stop && !self->wanted) {
            self->dirty = false;
            return SQLITE_CHECKPOINT_TRUNCATE;
        }
    }
    if (self->stop) {
        return -1;
    }
    self->wanted = false;
    return SQLITE_CHECKPOINT_PASSIVE;
}

static void *
s_main(void *arg)
{
    ledger__ckpt_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        int mode = s_wait(self);
        if (mode < 0) {
            break;
        }
        pthread_mutex_unlock(&self->mu);
        int copied = 0;
        int left = s_checkpoint(self->db, self->path, mode, "thread",
                                &copied);
        for (int i = 0; left > 0 && i < S_CATCH_UP; i++) {
            left = s_checkpoint(self->db, self->path, mode, "thread",
                                &copied);
        }
        atomic_store(&self->copied, copied);
        atomic_fetch_add(&self->thread_ckpts, 1);
        pthread_mutex_lock(&self->mu);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

// Checkpoints here, where no commit can come in between: the few frames
// a thread checkpoint left, or (high) a WAL past the high mark, which is
// logged (rarely: at 1, 2, 4, 8... times).
static void
s_loop_checkpoint(ledger__ckpt_t *self, struct sqlite3 *db, int frames,
                  bool high)
{
    self->loop_ckpts++;
    if (high) {
        self->high_ckpts++;
    }
    if (high && (self->high_ckpts & (self->high_ckpts - 1)) == 0) {
        log_warn(S_LOG, "ledger '%s': the WAL holds %d frames (over %d): "
                 "checkpointing on the broker's loop (%llu times so far); "
                 "the checkpoint thread is behind (slow disk) or a reader "
                 "holds an old snapshot", self->path, frames,
                 S_WAL_HIGH_FRAMES, (unsigned long long) self->high_ckpts);
    }
    int copied;
    (void) s_checkpoint(db, self->path, SQLITE_CHECKPOINT_PASSIVE, "loop",
                        &copied);
}

// True when the thread's last checkpoint of this WAL left only a few
// frames (the cue is taken either way).
static bool
s_finish_due(ledger__ckpt_t *self, int frames)
{
    int copied = atomic_exchange(&self->copied, 0);
    return copied > 0 && frames >= copied
           && frames - copied <= S_FINISH_FRAMES;
}

// SQLite calls this on the loop after each commit of the main connection,
// with the frames now in the WAL.
static int
s_wal_hook(void *arg, struct sqlite3 *db, const char *name, int frames)
{
    (void) name;
    ledger__ckpt_t *self = arg;
    if (frames < self->asked_frames) {
        self->asked_frames = 0;     // the WAL started over
    }
    // Once per S_CKPT_FRAMES new frames, not after every commit: each
    // checkpoint syncs the WAL and the database, and back to back they
    // would compete with the commits' syncs for the disk.
    bool ask = frames - self->asked_frames >= S_CKPT_FRAMES;
    if (ask) {
        self->asked_frames = frames;
    }
    pthread_mutex_lock(&self->mu);
    self->commits++;
    self->dirty = true;
    if (ask && !self->wanted) {
        self->wanted = true;
        pthread_cond_signal(&self->work);
    }
    pthread_mutex_unlock(&self->mu);
    if (frames >= S_WAL_HIGH_FRAMES) {
        s_loop_checkpoint(self, db, frames, true);
    } else if (s_finish_due(self, frames)) {
        s_loop_checkpoint(self, db, frames, false);
    }
    return SQLITE_OK;
}

static int
s_open_db(ledger__ckpt_t *self, char *err, size_t errlen)
{
    if (sqlite3_open_v2(self->path, &self->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
            != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s' for checkpoints: %s",
                 self->path, self->db ? sqlite3_errmsg(self->db)
                                      : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(self->db, S_CKPT_BUSY_MS);
    // This connection never commits, so its own synchronous setting only
    // governs checkpoints: FULL (as the writer's) syncs the WAL before
    // copying and the database after, before the WAL may start over.
    if (sqlite3_exec(self->db, "PRAGMA synchronous = FULL", NULL, NULL,
                     NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger '%s' for checkpoints: %s",
                 self->path, sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

int
ledger__ckpt_start(ledger__ckpt_t **out, struct sqlite3 *main_db,
                   const char *path, char *err, size_t errlen)
{
    assert(out && main_db && path);
    ledger__ckpt_t *self = xcalloc(1, sizeof *self);
    self->path = xstrdup(path);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&self->mu, NULL);
    int rc = s_open_db(self, err, errlen);
    if (rc == 0) {
        self->started = pthread_create(&self->thread, NULL, s_main, self)
                        == 0;
        if (!self->started) {
            snprintf(err, errlen, "cannot start the checkpoint thread of "
                     "ledger '%s'", path);
            rc = -1;
        }
    }
    if (rc != 0) {
        ledger__ckpt_stop(&self);
        return -1;
    }
    // From here on SQLite's autocheckpoint is off (it is a WAL hook too).
    sqlite3_wal_hook(main_db, s_wal_hook, self);
    *out = self;
    return 0;
}

void
ledger__ckpt_stop(ledger__ckpt_t **self_p)
{
    assert(self_p);
    ledger__ckpt_t *self = *self_p;
    if (!self) {
        return;
    }
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->mu);
    if (self->started) {
        pthread_join(self->thread, NULL);
        log_info(S_LOG, "ledger '%s': %llu checkpoints by the thread, %llu "
                 "on the loop (%llu past the high mark)", self->path,
                 (unsigned long long) atomic_load(&self->thread_ckpts),
                 (unsigned long long) self->loop_ckpts,
                 (unsigned long long) self->high_ckpts);
    }
    sqlite3_close(self->db);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->work);
    free(self->path);
    free(self);
    *self_p = NULL;
}

void
ledger__ckpt_counts(ledger__ckpt_t *self, uint64_t *thread_ckpts,
                    uint64_t *loop_ckpts)
{
    assert(self);
    *thread_ckpts = atomic_load(&self->thread_ckpts);
    *loop_ckpts = self->loop_ckpts;
}
