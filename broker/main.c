// waggle-broker: entry point — configuration, signals, READY.
#include "broker/backup.h"
#include "broker/broker.h"
#include "broker/httpd.h"
#include "broker/limits.h"
#include "broker/metrics.h"

#include "common/cfg.h"
#include "common/fdlimit.h"
#include "common/keys.h"
#include "common/log.h"
#include "proto/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define C(f) offsetof(broker_config_t, f)
#define MiB "1048576"

static const cfg_option_t s_opts[] = {
    {"bind", "WAGGLE_BIND", CFG_ENDPOINT, C(bind), "tcp://127.0.0.1:7600",
     "ENDPOINT", "where drones and consoles connect (tcp://, ipc://)", 0, 0},
    {"db", "WAGGLE_DB", CFG_STR, C(db), "waggle.db", "FILE",
     "the ledger (SQLite); a lock file FILE.lock sits beside it", 0, 0},
    {"keys", "WAGGLE_KEYS", CFG_STR, C(keys), "keys", "DIR",
     "key directory; the broker reads DIR/broker", 0, 0},
    {"heartbeat-ms", "WAGGLE_HEARTBEAT_MS", CFG_INT, C(heartbeat_ms), "1000",
     "N", "heartbeat interval, both directions; a drone whose connection "
     "closed (or whose host stopped answering for 2) is given up 2 later",
     10, 3600000},
    {"lease-ms", "WAGGLE_LEASE_MS", CFG_INT, C(lease_ms), "10000", "N",
     "a lease lapses this long after its drone last listed it", 30,
     86400000},
    {"max-output", "WAGGLE_MAX_OUTPUT", CFG_INT, C(max_output), MiB, "BYTES",
     "stdout bytes stored per attempt (the tail is kept)", 1024,
     1073741824},
    {"max-inputs", "WAGGLE_MAX_INPUTS", CFG_INT, C(max_inputs), "8388608",
     "BYTES", "bytes of inputs carried by one task", 1024, 1073741824},
    {"max-frame", "WAGGLE_MAX_FRAME", CFG_INT, C(max_frame), "67108864",
     "BYTES", "largest message accepted (also the workplan limit)", 65536,
     1073741824},
    {"backoff-base-ms", "WAGGLE_BACKOFF_BASE_MS", CFG_INT,
     C(backoff_base_ms), "1000", "N", "delay before the first retry", 0,
     86400000},
    {"backoff-cap-ms", "WAGGLE_BACKOFF_CAP_MS", CFG_INT, C(backoff_cap_ms),
     "60000", "N", "longest delay between retries", 0, 86400000},
    {"turn-msgs", "WAGGLE_TURN_MSGS", CFG_INT, C(turn_msgs), "1000", "N",
     "messages read per turn (one commit) at most", 1, 1000000},
    {"turn-ms", "WAGGLE_TURN_MS", CFG_INT, C(turn_ms), "50", "N",
     "milliseconds spent reading per turn at most", 1, 10000},
    {"slow-turn-ms", "WAGGLE_SLOW_TURN_MS", CFG_INT, C(slow_turn_ms), "0",
     "N", "log each turn that takes N ms or longer, with the time of each "
     "part (0: off; for finding stalls)", 0, 3600000},
    {"model-limit", "WAGGLE_MODEL_LIMIT", CFG_LIST, C(model_limit), NULL,
     "NAME=N", "at most N prompt tasks of model NAME in flight across all "
     "drones (repeatable; '*=N' for each model without its own)", 0, 0},
    {"model-rpm", "WAGGLE_MODEL_RPM", CFG_LIST, C(model_rpm), NULL,
     "NAME=N", "at most N prompt tasks of model NAME dispatched per minute "
     "across all drones, retries included (repeatable; '*=N' for each model "
     "without its own)", 0, 0},
    {"model-rpm-window-ms", "WAGGLE_MODEL_RPM_WINDOW_MS", CFG_INT,
     C(model_rpm_window_ms), "60000", "N",
     "for tests only: the --model-rpm window instead of a minute", 100,
     3600000},
    {"on-gate", "WAGGLE_ON_GATE", CFG_STR, C(on_gate), NULL, "CMD",
     "run CMD (sh -c) when a gate starts waiting; WAGGLE_PLAN, WAGGLE_TASK "
     "and WAGGLE_GATE_QUESTION say which", 0, 0},
    {"on-gate-timeout-ms", "WAGGLE_ON_GATE_TIMEOUT_MS", CFG_INT,
     C(on_gate_timeout_ms), "10000", "N",
     "a gate hook still running after this long is killed", 1, 3600000},
    {"log-format", "WAGGLE_LOG_FORMAT", CFG_STR, C(log_format), "text",
     "FMT", "text or json (one object per line)", 0, 0},
    {"metrics", "WAGGLE_METRICS", CFG_STR, C(metrics), NULL, "HOST:PORT",
     "serve Prometheus metrics at http://HOST:PORT/metrics and a health "
     "check at /healthz (off unless given; e.g. 127.0.0.1:9464)", 0, 0},
    {"list-metrics", NULL, CFG_BOOL, C(list_metrics), "0", NULL,
     "print the metrics served (name, type, labels, help) and exit", 0, 0},
    {"verbose", "WAGGLE_VERBOSE", CFG_BOOL, C(verbose), "0", NULL,
     "log debug detail", 0, 0},
    CFG_END,
};

static volatile sig_atomic_t s_stop = 0;
// SIGHUP's self-pipe: the handler writes a byte, the loop polls the read
// end and reloads the allow lists there (nothing else is safe here).
static int s_hup_pipe[2] = {-1, -1};

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static void
s_on_hup(int sig)
{
    (void) sig;
    int saved = errno;
    // A full pipe already holds a pending reload: dropping this is fine.
    ssize_t n = write(s_hup_pipe[1], "h", 1);
    (void) n;
    errno = saved;
}

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: waggle-broker [OPTIONS]\n"
            "       waggle-broker [--db FILE] backup [--json] OUT\n\n"
            "The one process that writes the Waggle ledger: it schedules "
            "workplans onto\ndrones, keeps their leases, and answers the "
            "architect.  Prints\n'READY <endpoint>' on stdout once it "
            "accepts connections.\nSIGHUP reloads the allow lists in "
            "DIR/broker/allow (no restart) and cuts off\nthe sessions of "
            "revoked keys.\n'backup OUT' copies the ledger "
            "consistently while the broker runs\n(see 'waggle-broker backup "
            "--help').\n\noptions (flag > environment > "
            "default):\n");
    cfg_usage(out, s_opts);
    fprintf(out, "  --version                    print the version and "
                 "exit\n\nexit status: 0 after SIGTERM/SIGINT; 1 a runtime "
                 "error; 2 cannot start (keys,\nbind); 3 the ledger is "
                 "locked or cannot be opened or loaded; 64 bad usage\n(an "
                 "option, value or argument, from the command line or the "
                 "environment).\n");
}

static const cfg_program_t s_prog = {
    .name = "waggle-broker", .opts = s_opts, .usage = s_usage};

static void
s_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(s_hup_pipe, O_NONBLOCK | O_CLOEXEC) == 0) {
        sa.sa_handler = s_on_hup;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGHUP, &sa, NULL);
    } else {
        // Without the pipe a SIGHUP must not kill the broker either.
        signal(SIGHUP, SIG_IGN);
    }
}

// Checks what one option alone cannot.  Returns 0, or CFG_EXIT_USAGE after
// saying why.
static int
s_check(const broker_config_t *cfg)
{
    bool json;
    if (log_format_parse(cfg->log_format, &json) < 0) {
        return cfg_usage_error(&s_prog, "--log-format: '%s' is not text or "
                                        "json", cfg->log_format);
    }
    log_init(cfg->verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, json);
    if (cfg->lease_ms < PROTO_LIVENESS_BEATS * cfg->heartbeat_ms) {
        return cfg_usage_error(&s_prog, "--lease-ms %lld must be at least %d "
                               "x --heartbeat-ms %lld, or one lost heartbeat "
                               "would cost a lease", (long long) cfg->lease_ms,
                               PROTO_LIVENESS_BEATS,
                               (long long) cfg->heartbeat_ms);
    }
    // A RESULT carries at most max_output bytes of stdout and as many of
    // stderr (the drone trims both to WELCOME's max_output_bytes); it must
    // fit in one frame, or the drone could never deliver it.
    if (cfg->max_frame < 2 * cfg->max_output + 65536) {
        return cfg_usage_error(&s_prog, "--max-frame %lld must be at least "
                               "2 x --max-output + 65536 = %lld, so that a "
                               "result with a full stdout and stderr fits "
                               "in one frame", (long long) cfg->max_frame,
                               (long long) (2 * cfg->max_output + 65536));
    }
    limits_t limits;
    char why[256];
    int bad = limits_parse(cfg->model_limit, &limits, why, sizeof why);
    limits_release(&limits);
    if (bad < 0) {
        return cfg_usage_error(&s_prog, "--model-limit: %s", why);
    }
    bad = limits_parse(cfg->model_rpm, &limits, why, sizeof why);
    limits_release(&limits);
    if (bad < 0) {
        return cfg_usage_error(&s_prog, "--model-rpm: %s", why);
    }
    if (cfg->metrics && httpd_check(cfg->metrics, why, sizeof why) < 0) {
        return cfg_usage_error(&s_prog, "--metrics: %s", why);
    }
    if (cfg->backoff_cap_ms < cfg->backoff_base_ms) {
        return cfg_usage_error(&s_prog, "--backoff-cap-ms must be >= "
                                        "--backoff-base-ms");
    }
    return 0;
}

// The exit status for each way broker_open() fails (see s_usage).
static int
s_open_status(broker_open_rc_t rc)
{
    return rc == BROKER_OPEN_LEDGER ? 3 : 2;
}

// Every drone and console connection is a descriptor: past the soft limit
// on open files the broker would stop accepting, with nothing in its log.
static void
s_raise_nofile(void)
{
    log_info("broker", "open files: up to %llu (each drone and console "
                       "connection takes one)",
             (unsigned long long) fdlimit_raise());
}

int
main(int argc, char **argv)
{
    broker_config_t cfg = {0};
    char err[512];
    int next = 0;
    int rc = cfg_main(&s_prog, &cfg, argc, argv, &next);
    if (rc != CFG_RUN) {
        return rc;
    }
    if (next < argc && strcmp(argv[next], "backup") == 0) {
        rc = backup_main(cfg.db, argc, argv, next);
        cfg_release(s_opts, &cfg);
        return rc;
    }
    if (cfg.list_metrics) {
        metrics_list(stdout);
        cfg_release(s_opts, &cfg);
        return 0;
    }
    if (next < argc) {
        rc = cfg_usage_error(&s_prog, "unexpected argument '%s'", argv[next]);
    } else {
        rc = s_check(&cfg);
    }
    if (rc != 0) {
        cfg_release(s_opts, &cfg);
        return rc;
    }
    s_signals();
    s_raise_nofile();
    broker_t *broker = NULL;
    broker_open_rc_t orc = broker_open(&broker, &cfg, err, sizeof err);
    if (orc != BROKER_OPEN_OK) {
        fprintf(stderr, "waggle-broker: %s\n", err);
        cfg_release(s_opts, &cfg);
        return s_open_status(orc);
    }
    log_info("broker", "listening on %s, ledger '%s', heartbeat %lld ms, "
                       "lease %lld ms", broker_endpoint(broker), cfg.db,
             (long long) cfg.heartbeat_ms, (long long) cfg.lease_ms);
    // So that keygen can say which process to send SIGHUP; a key
    // directory we cannot write only loses that hint.
    int pid_fd = -1;
    if (keys_broker_claim(cfg.keys, &pid_fd) < 0) {
        log_debug("broker", "no pid file in '%s/broker' (read-only, or "
                            "another broker uses it)", cfg.keys);
    }
    printf("READY %s\n", broker_endpoint(broker));
    fflush(stdout);
    rc = broker_run(broker, &s_stop, s_hup_pipe[0]);
    keys_broker_unclaim(cfg.keys, &pid_fd);
    broker_destroy(&broker);
    cfg_release(s_opts, &cfg);
    return rc == 0 ? 0 : 1;
}
