// Unit tests for broker/metrics.c: the text exposition (HELP/TYPE lines,
// _total on counters, label values and their escaping), histograms
// (cumulative buckets, a value on a bound, +Inf, _sum, _count), token
// counts by model with the "other" overflow, --list-metrics, and that the
// README lists every metric.
#include "broker/metrics.h"
#include "tests/harness/t.h"

#include <ctype.h>

static char *
s_text(const metrics_t *m)
{
    size_t len = 0;
    char *text = metrics_format(m, &len);
    CHECK_INT(strlen(text), len);
    return text;
}

static void
test_families(void)
{
    metrics_t *m = metrics_new();
    metrics_set(m, METRIC_TASKS, PROTO_TASK_READY, 7);
    metrics_add(m, METRIC_RESULTS, LEDGER_ATTEMPT_FAILED - 1, 2);
    metrics_add(m, METRIC_RESULTS, LEDGER_ATTEMPT_FAILED - 1, 1);
    metrics_set(m, METRIC_DRONES_CONNECTED, 0, 3);
    CHECK_INT(metrics_get(m, METRIC_RESULTS, LEDGER_ATTEMPT_FAILED - 1), 3);
    char *t = s_text(m);
    CHECK_HAS(t, "# HELP waggle_tasks Tasks in the ledger by state");
    CHECK_HAS(t, "\n# TYPE waggle_tasks gauge\n");
    CHECK_HAS(t, "\nwaggle_tasks{state=\"ready\"} 7\n");
    CHECK_HAS(t, "\nwaggle_tasks{state=\"waiting\"} 0\n");
    CHECK_HAS(t, "\n# TYPE waggle_results_total counter\n");
    CHECK_HAS(t, "\nwaggle_results_total{outcome=\"failed\"} 3\n");
    CHECK_HAS(t, "\nwaggle_results_total{outcome=\"succeeded\"} 0\n");
    CHECK(!strstr(t, "outcome=\"running\""));
    CHECK_HAS(t, "\nwaggle_drones_connected 3\n");
    CHECK_HAS(t, "\nwaggle_handshakes_refused_total{reason=\"unknown_key\"} 0");
    CHECK(t[strlen(t) - 1] == '\n');
    free(t);
    metrics_destroy(&m);
    CHECK(m == NULL);
    metrics_destroy(&m);
}

// Every line is a comment or NAME[{labels}] VALUE with a metric name
// Prometheus accepts, prefixed waggle_.
static void
test_lines_well_formed(void)
{
    metrics_t *m = metrics_new();
    metrics_tokens(m, "llama", 10, 20);
    metrics_observe(m, METRICS_H_COMMIT_DURATION, 0.002);
    char *t = s_text(m);
    int samples = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            CHECK(strncmp(line, "# HELP waggle_", 14) == 0 ||
                  strncmp(line, "# TYPE waggle_", 14) == 0);
            continue;
        }
        CHECK(strncmp(line, "waggle_", 7) == 0);
        size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyz_");
        CHECK(line[n] == '{' || line[n] == ' ');
        const char *value = strrchr(line, ' ');
        REQUIRE(value);
        CHECK(isdigit((unsigned char) value[1]));
        samples++;
    }
    CHECK(samples > 50);
    free(t);
    metrics_destroy(&m);
}

static void
test_label_escaping(void)
{
    metrics_t *m = metrics_new();
    metrics_tokens(m, "a\"b\\c\nd", 5, 6);
    metrics_tokens(m, NULL, 1, 0);
    metrics_tokens(m, "a\"b\\c\nd", 1, 1);
    char *t = s_text(m);
    CHECK_HAS(t, "# TYPE waggle_model_tokens_total counter\n");
    CHECK_HAS(t, "\nwaggle_model_tokens_total{model=\"a\\\"b\\\\c\\nd\","
                 "kind=\"prompt\"} 6\n");
    CHECK_HAS(t, "\nwaggle_model_tokens_total{model=\"a\\\"b\\\\c\\nd\","
                 "kind=\"completion\"} 7\n");
    CHECK_HAS(t, "{model=\"default\",kind=\"prompt\"} 1\n");
    CHECK(!strstr(t, "model=\"other\""));
    free(t);
    metrics_destroy(&m);
}

static void
test_models_overflow(void)
{
    metrics_t *m = metrics_new();
    char name[32];
    for (int i = 0; i < METRICS_MODELS_MAX + 3; i++) {
        snprintf(name, sizeof name, "m%d", i);
        metrics_tokens(m, name, 1, 2);
    }
    char *t = s_text(m);
    CHECK_HAS(t, "{model=\"m0\",kind=\"prompt\"} 1\n");
    snprintf(name, sizeof name, "{model=\"m%d\"", METRICS_MODELS_MAX - 1);
    CHECK_HAS(t, name);
    snprintf(name, sizeof name, "{model=\"m%d\"", METRICS_MODELS_MAX);
    CHECK(!strstr(t, name));
    CHECK_HAS(t, "{model=\"other\",kind=\"prompt\"} 3\n");
    CHECK_HAS(t, "{model=\"other\",kind=\"completion\"} 6\n");
    free(t);
    metrics_destroy(&m);
}

static void
test_histogram(void)
{
    metrics_t *m = metrics_new();
    metrics_observe(m, METRICS_H_DISPATCH_LATENCY, 0.003);
    metrics_observe(m, METRICS_H_DISPATCH_LATENCY, 0.003);
    metrics_observe(m, METRICS_H_DISPATCH_LATENCY, 0.5);   // on a bound
    metrics_observe(m, METRICS_H_DISPATCH_LATENCY, 2);
    metrics_observe(m, METRICS_H_DISPATCH_LATENCY, 1000);  // past the last
    char *t = s_text(m);
    const char *h = strstr(t, "# HELP waggle_dispatch_latency_seconds ");
    REQUIRE(h);
    CHECK_HAS(h, "\n# TYPE waggle_dispatch_latency_seconds histogram\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.001\"} 0\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.005\"} 2\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.01\"} 2\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.05\"} 2\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.1\"} 2\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"0.5\"} 3\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"1\"} 3\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"5\"} 4\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"10\"} 4\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"30\"} 4\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"60\"} 4\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"300\"} 4\n"
                 "waggle_dispatch_latency_seconds_bucket{le=\"+Inf\"} 5\n"
                 "waggle_dispatch_latency_seconds_sum 1002.506\n"
                 "waggle_dispatch_latency_seconds_count 5\n");
    // An empty histogram still has every bucket, at 0.
    CHECK_HAS(t, "waggle_commit_transitions_bucket{le=\"0\"} 0\n");
    CHECK_HAS(t, "waggle_commit_transitions_bucket{le=\"+Inf\"} 0\n");
    CHECK_HAS(t, "waggle_commit_transitions_sum 0\n");
    CHECK_HAS(t, "waggle_commit_transitions_count 0\n");
    free(t);
    metrics_destroy(&m);
}

static char *
s_list(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    metrics_list(f);
    fclose(f);
    return buf;
}

static void
test_list(void)
{
    char *l = s_list();
    CHECK_HAS(l, "waggle_tasks\tgauge\tstate\t");
    CHECK_HAS(l, "waggle_drones_connected\tgauge\t-\t");
    CHECK_HAS(l, "waggle_commits_total\tcounter\t-\t");
    CHECK_HAS(l, "waggle_model_tokens_total\tcounter\tmodel,kind\t");
    CHECK_HAS(l, "waggle_commit_duration_seconds\thistogram\tle\t");
    free(l);
}

// README's "Metrics" section names every metric --list-metrics prints.
static void
test_readme_lists_all(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/README.md", WAGGLE_SOURCE_DIR);
    char *readme = t_read_file(path, NULL);
    REQUIRE(readme);
    char *l = s_list();
    for (char *line = strtok(l, "\n"); line; line = strtok(NULL, "\n")) {
        line[strcspn(line, "\t")] = '\0';
        char want[128];
        snprintf(want, sizeof want, "`%s`", line);
        CHECK_HAS(readme, want);
    }
    free(l);
    free(readme);
}

static const t_case_t t_cases[] = {
    T(test_families),
    T(test_lines_well_formed),
    T(test_label_escaping),
    T(test_models_overflow),
    T(test_histogram),
    T(test_list),
    T(test_readme_lists_all),
    {0},
};

T_MAIN(t_cases)
