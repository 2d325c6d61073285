// metrics: the broker's counters, gauges and histograms (listed once in
// metrics.def) and their Prometheus text exposition (format 0.0.4).
//
// Bumps are plain integer adds on the loop thread: no lock, no allocation
// (a model's token counts allocate its name once, the first time it is
// seen).  Histograms have fixed buckets in base units.  It reads no clock
// and does no I/O: callers observe durations they measured, and scrape.c
// sets the gauges from the ledger and the drone registry before
// metrics_format.  It never serves HTTP (httpd.c does).
#ifndef WAGGLE_METRICS_H
#define WAGGLE_METRICS_H

#include "broker/auth.h"
#include "broker/ledger.h"
#include "proto/proto.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
#define METRIC(ID, ...) METRIC_##ID,
#define HISTOGRAM(ID, ...)
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM
    METRIC__COUNT
} metric_t;

typedef enum {
#define METRIC(ID, ...)
#define HISTOGRAM(ID, ...) METRICS_H_##ID,
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM
    METRICS_H__COUNT
} metrics_hist_t;

// Models with token counts of their own; the rest share model="other".
#define METRICS_MODELS_MAX 32
// The exported name prefix.
#define METRICS_PREFIX "waggle_"

typedef struct metrics metrics_t;

metrics_t *metrics_new(void);
// Frees; a no-op on NULL.
void metrics_destroy(metrics_t **self_p);

// Adds n to counter id's value for label value `label` (0 without a
// label; below the metric's N in metrics.def).
void metrics_add(metrics_t *self, metric_t id, size_t label, uint64_t n);
// Sets a gauge (or a counter kept elsewhere, such as the ledger's tally).
void metrics_set(metrics_t *self, metric_t id, size_t label, int64_t v);
int64_t metrics_get(const metrics_t *self, metric_t id, size_t label);
// Counts v (base units: seconds, transitions) in histogram h.
void metrics_observe(metrics_t *self, metrics_hist_t h, double v);
// Adds the tokens a prompt task of model (NULL or "": "default") reported.
void metrics_tokens(metrics_t *self, const char *model, int64_t prompt,
                    int64_t completion);

// The whole exposition: for each family `# HELP`, `# TYPE` and its samples
// (counters end in _total; histogram buckets are cumulative, then +Inf,
// _sum and _count); label values and help escaped as the format says.
// Caller frees; *len gets its length.
char *metrics_format(const metrics_t *self, size_t *len);
// One line per family: name, type, labels, help (--list-metrics).
void metrics_list(FILE *out);

#endif
