// ledger_events: the events rows of the open turn, kept in memory and
// written in multi-row INSERTs (ledger_int.h declares the functions).
//
// Every transition appends an events row (invariant 4), two per finished
// task: as single-row statements each paid SQLite's whole per-statement
// cost (~10k instructions: the program's prologue, its cursors, the
// statement journal) for one short row (issue 9).  Here a row is copied
// into the turn's buffer (one arena of text, no allocation per row once
// warm) and the buffer is written as INSERTs of up to S_BATCH_MAX rows,
// one cached statement per power-of-two size.
//
// The rows are still the turn's: they are written before the turn's
// COMMIT (ledger_commit calls ledger__events_flush), before anything reads
// events in the turn (ledger_read.c), and whenever S_FLUSH_AT rows are
// waiting (so a turn that cancels a 100k-task plan holds a bounded
// buffer); a rolled-back turn drops them.  A failed write fails the turn,
// as a failed single-row INSERT did.  Order and numbers are the order of
// the appends: rows go in the order they were appended, and seq is the
// rowid that SQLite gives each in turn.
//
// This file never opens or commits a turn and never reads events.
#include "broker/ledger_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// 9 parameters a row; 64 rows = 576, far under SQLite's 32766.
#define S_BATCH_MAX 64
#define S_FLUSH_AT 1024
#define S_COLS 9

// A copied string: an offset into the arena, or S_NULL.
#define S_NULL SIZE_MAX

typedef struct {
    int64_t at_ms;
    int64_t plan;
    uint64_t token;
    size_t text[6];  // task, actor, kind, from, to, detail
} s_row_t;

struct ledger__events {
    s_row_t *rows;
    size_t n, cap;
    char *arena;
    size_t used, size;
    // stmt[k]: the INSERT of 2^k rows, prepared at first use.
    sqlite3_stmt *stmt[7];
};

static size_t
s_copy(ledger__events_t *ev, const char *s)
{
    if (!s) {
        return S_NULL;
    }
    size_t len = strlen(s) + 1;
    if (ev->used + len > ev->size) {
        size_t size = ev->size ? ev->size : 4096;
        while (ev->used + len > size) {
            size *= 2;
        }
        ev->arena = xrealloc(ev->arena, size);
        ev->size = size;
    }
    memcpy(ev->arena + ev->used, s, len);
    size_t at = ev->used;
    ev->used += len;
    return at;
}

static const char *
s_text(const ledger__events_t *ev, size_t at)
{
    return at == S_NULL ? NULL : ev->arena + at;
}

void
ledger__events_clear(ledger_t *self)
{
    if (self->events) {
        self->events->n = 0;
        self->events->used = 0;
    }
}

void
ledger__events_destroy(ledger_t *self)
{
    ledger__events_t *ev = self->events;
    if (!ev) {
        return;
    }
    for (size_t k = 0; k < sizeof ev->stmt / sizeof *ev->stmt; k++) {
        sqlite3_finalize(ev->stmt[k]);
    }
    free(ev->rows);
    free(ev->arena);
    free(ev);
    self->events = NULL;
}

// The INSERT of 2^k rows, prepared at its first use.
static sqlite3_stmt *
s_stmt(ledger_t *self, size_t k)
{
    ledger__events_t *ev = self->events;
    // No clear_bindings on reuse: s_write binds every parameter of all
    // 2^k rows each time.
    if (ev->stmt[k]) {
        return ev->stmt[k];
    }
    static const char head[] =
        "INSERT INTO events (at_ms, plan_id, tid, actor, kind, from_state,"
        " to_state, token, detail) VALUES ";
    static const char row[] = "(?, nullif(?, 0), ?, ?, ?, ?, ?, nullif(?, 0),"
                              " ?)";
    size_t rows = (size_t) 1 << k;
    char *sql = xmalloc(sizeof head + rows * sizeof row);
    size_t at = 0;
    memcpy(sql, head, sizeof head - 1);
    at += sizeof head - 1;
    for (size_t i = 0; i < rows; i++) {
        if (i) {
            sql[at++] = ',';
        }
        memcpy(sql + at, row, sizeof row - 1);
        at += sizeof row - 1;
    }
    sql[at] = '\0';
    int rc = sqlite3_prepare_v3(self->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &ev->stmt[k], NULL);
    free(sql);
    return rc == SQLITE_OK ? ev->stmt[k] : NULL;
}

static void
s_bind_row(const ledger__events_t *ev, sqlite3_stmt *st, int base,
           const s_row_t *r)
{
    ledger__bind_int(st, base + 1, r->at_ms);
    ledger__bind_int(st, base + 2, r->plan);
    ledger__bind_text(st, base + 3, s_text(ev, r->text[0]));
    ledger__bind_text(st, base + 4, s_text(ev, r->text[1]));
    ledger__bind_text(st, base + 5, s_text(ev, r->text[2]));
    ledger__bind_text(st, base + 6, s_text(ev, r->text[3]));
    ledger__bind_text(st, base + 7, s_text(ev, r->text[4]));
    ledger__bind_int(st, base + 8, (int64_t) r->token);
    ledger__bind_text(st, base + 9, s_text(ev, r->text[5]));
}

// Writes 2^k rows from rows[0].
static ledger_rc_t
s_write(ledger_t *self, size_t k, const s_row_t *rows)
{
    sqlite3_stmt *st = s_stmt(self, k);
    if (!st) {
        return ledger__fail(self, "append events: prepare");
    }
    size_t n = (size_t) 1 << k;
    for (size_t i = 0; i < n; i++) {
        s_bind_row(self->events, st, (int) (i * S_COLS), &rows[i]);
    }
    ledger_rc_t rc = LEDGER_OK;
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = ledger__fail(self, "append events");
    } else if ((size_t) sqlite3_changes(self->db) != n) {
        rc = ledger__broken(self, "append events", "rows went missing");
    }
    sqlite3_reset(st);
    return rc;
}

ledger_rc_t
ledger__events_flush(ledger_t *self)
{
    ledger__events_t *ev = self->events;
    if (!ev || ev->n == 0) {
        return LEDGER_OK;
    }
    // Rows wait only inside a turn.  One SQLite rolled back on its own
    // (disk full, I/O) must not get them: outside a transaction each
    // INSERT would commit alone, events of transitions that never were.
    if (!ledger__turn_ok(self, "append events")) {
        ledger__events_clear(self);
        return LEDGER_ERROR;
    }
    ledger_rc_t rc = LEDGER_OK;
    size_t done = 0;
    while (rc == LEDGER_OK && done < ev->n) {
        size_t k = 6;
        while (((size_t) 1 << k) > ev->n - done) {
            k--;
        }
        rc = s_write(self, k, &ev->rows[done]);
        done += (size_t) 1 << k;
    }
    ledger__events_clear(self);
    return rc;
}

ledger_rc_t
ledger__append_event(ledger_t *self, const ledger__event_t *e)
{
    if (!self->events) {
        self->events = xcalloc(1, sizeof *self->events);
    }
    ledger__events_t *ev = self->events;
    if (ev->n == ev->cap) {
        ev->cap = ev->cap ? ev->cap * 2 : 256;
        ev->rows = xrealloc(ev->rows, ev->cap * sizeof *ev->rows);
    }
    s_row_t *r = &ev->rows[ev->n++];
    r->at_ms = e->at_ms;
    r->plan = e->plan;
    r->token = e->token;
    const char *text[6] = {e->task, e->actor, e->kind, e->from, e->to,
                           e->detail};
    for (size_t i = 0; i < 6; i++) {
        r->text[i] = s_copy(ev, text[i]);
    }
    return ev->n >= S_FLUSH_AT ? ledger__events_flush(self) : LEDGER_OK;
}
