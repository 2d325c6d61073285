// rate: requests-per-minute model limits (`--model-rpm NAME=N`, `*=N`):
// at most N dispatches of model NAME's prompt tasks in any window of
// window_ms (60 s; shorter only in tests), across all drones.  Every lease
// of a prompt task counts as one request, a retry again.  `*=N` applies to
// each model without its own limit, each counted apart; a prompt task
// without a `model` counts as model "" (the drone's default), which only
// `*` limits, as for --model-limit.
//
// A sliding log: each limited model keeps the times of its last N
// dispatches in a ring, so "full" is "N dispatches, the oldest less than a
// window ago", and it opens again when that oldest one leaves the window.
// Pure: times are monotonic ms passed in; no clock, no I/O.  In memory: a
// restarted broker refills it from the ledger (drones_rate_seed), noting
// the recent leases oldest first.
#ifndef WAGGLE_RATE_H
#define WAGGLE_RATE_H

#include "broker/limits.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct rate rate_t;

// A rate keeper for these limits (borrowed: they must outlive it) over
// windows of window_ms (> 0).
rate_t *rate_new(const limits_t *limits, int64_t window_ms);
void rate_destroy(rate_t **self_p);
// Whether model (NULL = "") has had its limit of dispatches within the
// window ending at now_ms.  When full, *max is its limit and *open_ms when
// the next dispatch may go (> now_ms).  A model without a limit is never
// full.
bool rate_full(const rate_t *self, const char *model, int64_t now_ms,
               int64_t *max, int64_t *open_ms);
// Records a dispatch of model at now_ms (a no-op for an unlimited model).
void rate_note(rate_t *self, const char *model, int64_t now_ms);
// The earliest time after now_ms at which a model full now opens again,
// or -1 when none is full: the broker's loop wakes then to dispatch what
// waited.
int64_t rate_next_open_ms(const rate_t *self, int64_t now_ms);
int64_t rate_window_ms(const rate_t *self);

#endif
