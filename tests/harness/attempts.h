// attempts: reading a stopped (or running) broker's ledger from tests, to
// assert "exactly once" on the ledger itself rather than on logs.
#ifndef WAGGLE_ATTEMPTS_H
#define WAGGLE_ATTEMPTS_H

#include "broker/ledger.h"

#include <stdint.h>

#define ATTEMPTS_MAX 256

typedef struct {
    char task[72];
    uint32_t n;                       // 1-based attempt number
    uint64_t token;
    ledger_attempt_outcome_t outcome;
    char instance[72];                // the drone instance that held it
    int64_t started_ms;               // its lease (wall clock)
} attempt_row_t;

typedef struct {
    attempt_row_t a[ATTEMPTS_MAX];    // in ledger order; the rest dropped
    int n;
} attempts_t;

// Reads the attempts of a plan (task NULL: of every task) from the ledger
// file db, read-only (no lock taken).  Returns 0 or -1 (the reason on
// stderr).
int attempts_read(const char *db, int64_t plan, const char *task,
                  attempts_t *out);
// How many attempts ended with outcome o.
int attempts_count(const attempts_t *v, ledger_attempt_outcome_t o);

#endif
