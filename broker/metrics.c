// metrics: storage for the figures of metrics.def and their text
// exposition.  Every labelled value of every counter and gauge is one slot
// of a flat array; the enum below gives each metric its first slot, so a
// bump is one indexed add.
#include "broker/metrics.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

// First and last slot of each metric: METRICS__<ID>_BASE ..
// METRICS__<ID>_LAST, consecutive in metrics.def order.
enum {
#define METRIC(ID, TYPE, NAME, HELP, LABEL, N, VALUE)                        \
    METRICS__##ID##_BASE, METRICS__##ID##_LAST = METRICS__##ID##_BASE + (N)-1,
#define HISTOGRAM(ID, ...)
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM
    METRICS__SLOTS
};

// Label values (the VALUE column of metrics.def).
static const char *
metrics_task_state(size_t i)
{
    return proto_task_state_name((proto_task_state_t) i);
}

static const char *
metrics_plan_state(size_t i)
{
    return ledger_plan_state_name((ledger_plan_state_t) i);
}

// Ended outcomes only: label 0 is LEDGER_ATTEMPT_SUCCEEDED.
static const char *
metrics_outcome(size_t i)
{
    return ledger_outcome_name((ledger_attempt_outcome_t) (i + 1));
}

static const char *
metrics_refuse_reason(size_t i)
{
    return auth_refuse_name((auth_refuse_t) i);
}

typedef enum { S_COUNTER, S_GAUGE } s_type_t;

#define S_TOKENS_HELP "Tokens that prompt tasks reported, by model and kind"

typedef struct {
    s_type_t type;
    const char *name;
    const char *help;
    const char *label;          // NULL: none
    size_t n;                   // label values
    size_t base;                // first slot
    const char *(*value)(size_t i);
} s_family_t;

static const s_family_t s_families[METRIC__COUNT] = {
#define METRIC(ID, TYPE, NAME, HELP, LABEL, N, VALUE)                        \
    [METRIC_##ID] = {S_##TYPE, NAME, HELP, LABEL, N, METRICS__##ID##_BASE,  \
                     VALUE},
#define HISTOGRAM(ID, ...)
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM
};

#define METRIC(ID, ...)
#define HISTOGRAM(ID, NAME, HELP, ...)                                       \
    static const double s_bounds_##ID[] = {__VA_ARGS__};
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM

typedef struct {
    const char *name;
    const char *help;
    const double *bounds;       // ascending upper bounds, +Inf not listed
    size_t n;
} s_hist_def_t;

static const s_hist_def_t s_hists[METRICS_H__COUNT] = {
#define METRIC(ID, ...)
#define HISTOGRAM(ID, NAME, HELP, ...)                                       \
    [METRICS_H_##ID] = {NAME, HELP, s_bounds_##ID,                           \
                        sizeof s_bounds_##ID / sizeof(double)},
#include "broker/metrics.def"
#undef METRIC
#undef HISTOGRAM
};

#define S_BUCKETS_MAX 32

typedef struct {
    uint64_t in[S_BUCKETS_MAX + 1];  // per bucket (not cumulative); last: +Inf
    double sum;
    uint64_t count;
} s_hist_t;

typedef struct {
    char *name;                 // owned; NULL: free entry
    uint64_t prompt, completion;
} s_model_t;

struct metrics {
    int64_t slot[METRICS__SLOTS];
    s_hist_t hist[METRICS_H__COUNT];
    s_model_t models[METRICS_MODELS_MAX + 1];  // the last is "other"
};

metrics_t *
metrics_new(void)
{
    metrics_t *m = xcalloc(1, sizeof *m);
    for (size_t h = 0; h < METRICS_H__COUNT; h++) {
        assert(s_hists[h].n <= S_BUCKETS_MAX);
    }
    m->models[METRICS_MODELS_MAX].name = xstrdup("other");
    return m;
}

void
metrics_destroy(metrics_t **self_p)
{
    metrics_t *m = *self_p;
    if (!m) {
        return;
    }
    for (size_t i = 0; i <= METRICS_MODELS_MAX; i++) {
        free(m->models[i].name);
    }
    free(m);
    *self_p = NULL;
}

static size_t
s_slot(metric_t id, size_t label)
{
    assert((size_t) id < METRIC__COUNT && label < s_families[id].n);
    return s_families[id].base + label;
}

void
metrics_add(metrics_t *self, metric_t id, size_t label, uint64_t n)
{
    self->slot[s_slot(id, label)] += (int64_t) n;
}

void
metrics_set(metrics_t *self, metric_t id, size_t label, int64_t v)
{
    self->slot[s_slot(id, label)] = v;
}

int64_t
metrics_get(const metrics_t *self, metric_t id, size_t label)
{
    return self->slot[s_slot(id, label)];
}

void
metrics_observe(metrics_t *self, metrics_hist_t h, double v)
{
    assert((size_t) h < METRICS_H__COUNT);
    const s_hist_def_t *d = &s_hists[h];
    size_t b = 0;
    while (b < d->n && v > d->bounds[b]) {
        b++;
    }
    self->hist[h].in[b]++;
    self->hist[h].sum += v;
    self->hist[h].count++;
}

// The entry of model: its own, a free one it takes, or "other" when all
// are taken.
static s_model_t *
s_model(metrics_t *self, const char *model)
{
    for (size_t i = 0; i < METRICS_MODELS_MAX; i++) {
        s_model_t *e = &self->models[i];
        if (!e->name) {
            e->name = xstrdup(model);
            return e;
        }
        if (strcmp(e->name, model) == 0) {
            return e;
        }
    }
    return &self->models[METRICS_MODELS_MAX];
}

void
metrics_tokens(metrics_t *self, const char *model, int64_t prompt,
               int64_t completion)
{
    s_model_t *e = s_model(self, model && *model ? model : "default");
    e->prompt += prompt > 0 ? (uint64_t) prompt : 0;
    e->completion += completion > 0 ? (uint64_t) completion : 0;
}

// --- exposition ---------------------------------------------------------

typedef struct {
    char *p;
    size_t len, cap;
} s_buf_t;

static void
s_put(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_put(s_buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        assert(n >= 0);
        if ((size_t) n < b->cap - b->len) {
            b->len += (size_t) n;
            return;
        }
        b->cap = b->cap * 2 + (size_t) n;
        b->p = xrealloc(b->p, b->cap);
    }
}

// s escaped for the exposition: backslash and newline always, the double
// quote too inside a label value (quote true).
static void
s_put_escaped(s_buf_t *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') {
            s_put(b, "\\\\");
        } else if (*s == '\n') {
            s_put(b, "\\n");
        } else if (*s == '"' && quote) {
            s_put(b, "\\\"");
        } else {
            s_put(b, "%c", *s);
        }
    }
}

static void
s_header(s_buf_t *b, const char *name, const char *suffix, const char *help,
         const char *type)
{
    s_put(b, "# HELP " METRICS_PREFIX "%s%s ", name, suffix);
    s_put_escaped(b, help, false);
    s_put(b, "\n# TYPE " METRICS_PREFIX "%s%s %s\n", name, suffix, type);
}

static void
s_family(s_buf_t *b, const metrics_t *m, const s_family_t *f)
{
    const char *suffix = f->type == S_COUNTER ? "_total" : "";
    s_header(b, f->name, suffix, f->help,
             f->type == S_COUNTER ? "counter" : "gauge");
    for (size_t i = 0; i < f->n; i++) {
        s_put(b, METRICS_PREFIX "%s%s", f->name, suffix);
        if (f->label) {
            s_put(b, "{%s=\"", f->label);
            s_put_escaped(b, f->value(i), true);
            s_put(b, "\"}");
        }
        s_put(b, " %lld\n", (long long) m->slot[f->base + i]);
    }
}

static void
s_tokens(s_buf_t *b, const metrics_t *m)
{
    static const char *const kinds[] = {"prompt", "completion"};
    s_header(b, "model_tokens", "_total", S_TOKENS_HELP, "counter");
    for (size_t i = 0; i <= METRICS_MODELS_MAX; i++) {
        const s_model_t *e = &m->models[i];
        bool other = i == METRICS_MODELS_MAX;
        if (!e->name || (other && e->prompt + e->completion == 0)) {
            continue;
        }
        for (size_t k = 0; k < 2; k++) {
            s_put(b, METRICS_PREFIX "model_tokens_total{model=\"");
            s_put_escaped(b, e->name, true);
            s_put(b, "\",kind=\"%s\"} %llu\n", kinds[k],
                  (unsigned long long) (k ? e->completion : e->prompt));
        }
    }
}

static void
s_histogram(s_buf_t *b, const s_hist_def_t *d, const s_hist_t *h)
{
    s_header(b, d->name, "", d->help, "histogram");
    uint64_t cum = 0;
    for (size_t i = 0; i < d->n; i++) {
        cum += h->in[i];
        s_put(b, METRICS_PREFIX "%s_bucket{le=\"%g\"} %llu\n", d->name,
              d->bounds[i], (unsigned long long) cum);
    }
    s_put(b, METRICS_PREFIX "%s_bucket{le=\"+Inf\"} %llu\n", d->name,
          (unsigned long long) h->count);
    s_put(b, METRICS_PREFIX "%s_sum %.9g\n", d->name, h->sum);
    s_put(b, METRICS_PREFIX "%s_count %llu\n", d->name,
          (unsigned long long) h->count);
}

char *
metrics_format(const metrics_t *self, size_t *len)
{
    s_buf_t b = {.p = xmalloc(4096), .cap = 4096};
    for (size_t i = 0; i < METRIC__COUNT; i++) {
        s_family(&b, self, &s_families[i]);
    }
    s_tokens(&b, self);
    for (size_t h = 0; h < METRICS_H__COUNT; h++) {
        s_histogram(&b, &s_hists[h], &self->hist[h]);
    }
    *len = b.len;
    return b.p;
}

void
metrics_list(FILE *out)
{
    for (size_t i = 0; i < METRIC__COUNT; i++) {
        const s_family_t *f = &s_families[i];
        bool counter = f->type == S_COUNTER;
        fprintf(out, METRICS_PREFIX "%s%s\t%s\t%s\t%s\n", f->name,
                counter ? "_total" : "", counter ? "counter" : "gauge",
                f->label ? f->label : "-", f->help);
    }
    fprintf(out, METRICS_PREFIX "model_tokens_total\tcounter\tmodel,kind\t"
                 S_TOKENS_HELP "\n");
    for (size_t h = 0; h < METRICS_H__COUNT; h++) {
        fprintf(out, METRICS_PREFIX "%s\thistogram\tle\t%s\n",
                s_hists[h].name, s_hists[h].help);
    }
}
