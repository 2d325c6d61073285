// rate: the sliding log behind `--model-rpm` (see rate.h).
#include "broker/rate.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *model;                 // owned; "" for the drone's default
    int64_t *at;                 // ring of the last max dispatch times
    int64_t max;                 // the model's limit: the ring's size
    int64_t n;                   // dispatches in the ring (<= max)
    int64_t head;                // where the oldest one is
} s_log_t;

struct rate {
    const limits_t *limits;      // borrowed
    int64_t window_ms;
    s_log_t *logs;               // one per limited model seen
    size_t n_logs;
};

rate_t *
rate_new(const limits_t *limits, int64_t window_ms)
{
    assert(limits && window_ms > 0);
    rate_t *self = xcalloc(1, sizeof *self);
    self->limits = limits;
    self->window_ms = window_ms;
    return self;
}

void
rate_destroy(rate_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    rate_t *self = *self_p;
    for (size_t i = 0; i < self->n_logs; i++) {
        free(self->logs[i].model);
        free(self->logs[i].at);
    }
    free(self->logs);
    free(self);
    *self_p = NULL;
}

static s_log_t *
s_find(const rate_t *self, const char *model)
{
    for (size_t i = 0; i < self->n_logs; i++) {
        if (strcmp(self->logs[i].model, model) == 0) {
            return &self->logs[i];
        }
    }
    return NULL;
}

// When the oldest logged dispatch leaves the window, if the log is full;
// else -1.
static int64_t
s_opens(const rate_t *self, const s_log_t *log)
{
    return log->n == log->max ? log->at[log->head] + self->window_ms : -1;
}

bool
rate_full(const rate_t *self, const char *model, int64_t now_ms,
          int64_t *max, int64_t *open_ms)
{
    const s_log_t *log = s_find(self, model ? model : "");
    int64_t opens = log ? s_opens(self, log) : -1;
    if (opens <= now_ms) {
        return false;
    }
    *max = log->max;
    *open_ms = opens;
    return true;
}

void
rate_note(rate_t *self, const char *model, int64_t now_ms)
{
    const char *m = model ? model : "";
    int64_t max = limits_of(self->limits, m);
    if (max <= 0) {
        return;
    }
    s_log_t *log = s_find(self, m);
    if (!log) {
        self->logs = xrealloc(self->logs,
                              (self->n_logs + 1) * sizeof *self->logs);
        log = &self->logs[self->n_logs++];
        *log = (s_log_t){.model = xstrdup(m), .max = max,
                         .at = xcalloc((size_t) max, sizeof *log->at)};
    }
    // Full, the newest replaces the oldest; else it goes after the last.
    int64_t slot = (log->head + log->n) % log->max;
    log->at[slot] = now_ms;
    if (log->n == log->max) {
        log->head = (log->head + 1) % log->max;
    } else {
        log->n++;
    }
}

int64_t
rate_next_open_ms(const rate_t *self, int64_t now_ms)
{
    int64_t next = -1;
    for (size_t i = 0; i < self->n_logs; i++) {
        int64_t opens = s_opens(self, &self->logs[i]);
        if (opens > now_ms && (next < 0 || opens < next)) {
            next = opens;
        }
    }
    return next;
}

int64_t
rate_window_ms(const rate_t *self)
{
    return self->window_ms;
}
