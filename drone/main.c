// waggle-drone: entry point — configuration and signals.
#include "drone/drone.h"
#include "drone/prompt.h"
#include "drone/taskuser.h"

#include "common/cfg.h"
#include "common/log.h"
#include "proto/proto.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define C(f) offsetof(drone_config_t, f)

static const cfg_option_t s_opts[] = {
    {"broker", "WAGGLE_BROKER", CFG_ENDPOINT, C(broker),
     "tcp://127.0.0.1:7600", "ENDPOINT", "the broker to work for", 0, 0},
    {"keys", "WAGGLE_KEYS", CFG_STR, C(keys), "keys", "DIR",
     "key directory; the drone reads DIR/drone", 0, 0},
    {"slots", "WAGGLE_SLOTS", CFG_INT, C(slots), "1", "N",
     "tasks run at once", 0, 1024},
    {"tags", "WAGGLE_TAGS", CFG_STR, C(tags), "", "A,B",
     "capability tags offered (tasks 'requires' them)", 0, 0},
    {"workdir", "WAGGLE_WORKDIR", CFG_STR, C(workdir), "", "DIR",
     "where tasks without 'cwd' run (default: the drone's cwd)", 0, 0},
    {"drain-s", "WAGGLE_DRAIN_S", CFG_INT, C(drain_s), "30", "N",
     "on SIGTERM, seconds to let running tasks finish before handing "
     "them back", 0, 86400},
    {"stderr-cap", "WAGGLE_STDERR_CAP", CFG_INT, C(err_cap), "65536",
     "BYTES", "bytes of a task's stderr kept (the tail)", 0, 16777216},
    {"run-as", "WAGGLE_RUN_AS", CFG_STR, C(run_as), "", "USER",
     "user tasks run as (a root drone's default: " TASKUSER_DEFAULT ")", 0,
     0},
    {"pass-env", "WAGGLE_PASS_ENV", CFG_LIST, C(pass_env), "", "NAME",
     "a variable of the drone's environment that tasks get too "
     "(repeatable; the variable takes a comma list)", 0, 0},
    {"isolation", "WAGGLE_ISOLATION", CFG_STR, C(isolation), "auto", "MODE",
     "auto, pidns (a PID namespace per task) or subreaper", 0, 0},
    {"limit-as-mb", "WAGGLE_LIMIT_AS_MB", CFG_INT, C(limit_as_mb), "0", "MIB",
     "address space per task, 0 = none", 0, 4194304},
    {"limit-nofile", "WAGGLE_LIMIT_NOFILE", CFG_INT, C(limit_nofile), "4096",
     "N", "open files per task process, 0 = none", 0, 1048576},
    {"limit-nproc", "WAGGLE_LIMIT_NPROC", CFG_INT, C(limit_nproc), "4096", "N",
     "processes of the task user (counted per uid, across all its tasks), "
     "0 = none", 0, 4194304},
    {"limit-cpu-s", "WAGGLE_LIMIT_CPU_S", CFG_INT, C(limit_cpu_s), "0", "N",
     "CPU seconds per task process, 0 = none", 0, 604800},
    {"model-url", "WAGGLE_MODEL_URL", CFG_STR, C(model_url), "", "URL",
     "a chat-completions endpoint for prompt tasks, e.g. "
     "http://127.0.0.1:8080/v1 (offers the tags model and model:NAME)", 0,
     0},
    {"model", "WAGGLE_MODEL", CFG_STR, C(model), "", "NAME",
     "the model prompt tasks use", 0, 0},
    {"model-key-file", "WAGGLE_MODEL_KEY_FILE", CFG_STR, C(model_key_file),
     "", "FILE", "the model's API key (first line; the file must not be "
     "readable by group or others)", 0, 0},
    {"model-api", "WAGGLE_MODEL_API", CFG_STR, C(model_api), "openai", "API",
     "openai (chat completions) or anthropic (messages)", 0, 0},
    {"model-timeout-s", "WAGGLE_MODEL_TIMEOUT_S", CFG_INT,
     C(model_timeout_s), "120", "S", "give up on one model request after S "
     "seconds (the task's timeout_s bounds the whole call)", 1, 86400},
    {"log-format", "WAGGLE_LOG_FORMAT", CFG_STR, C(log_format), "text",
     "FMT", "text or json (one object per line)", 0, 0},
    {"verbose", "WAGGLE_VERBOSE", CFG_BOOL, C(verbose), "0", NULL,
     "log debug detail", 0, 0},
    CFG_END,
};

static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal(int sig)
{
    (void) sig;
    if (s_stop < 3) {
        s_stop++;
    }
}

// Blanks our arguments in place once cfg has copied them: each task's init
// is a copy of this process, so /proc/1/cmdline in a task's namespace (and
// /proc/PID/cmdline of the drone, which any user may read) would show the
// drone's flags.  argv[0] stays.
static void
s_hide_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        memset(argv[i], 0, strlen(argv[i]));
    }
}

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: waggle-drone [OPTIONS]\n\n"
            "A Waggle worker: rents tasks from the broker, runs them and "
            "reports back.\nRun as many as you like, on as many hosts as "
            "you like.\n\noptions (flag > environment > default):\n");
    cfg_usage(out, s_opts);
    fprintf(out,
            "  --version                    print the version and exit\n"
            "\nSIGTERM/SIGINT: take no new work, let running tasks finish "
            "(up to --drain-s),\nhand the rest back, then leave; a second "
            "signal hands everything back now.\n\nexit status: 0 after a "
            "clean stop; 1 a runtime error; 2 cannot start (keys,\nits "
            "scratch directory); 64 bad usage (an option, value or argument, "
            "from the\ncommand line or the environment).\n");
}

static const cfg_program_t s_prog = {
    .name = "waggle-drone", .opts = s_opts, .usage = s_usage};

// --tags as HELLO will carry them: the broker refuses a HELLO over the
// limits, and the drone would only reconnect and be refused again.
static int
s_check_tags(const char *csv)
{
    int n = 0;
    for (const char *t = csv; *t;) {
        t += strspn(t, " ,");
        size_t len = strcspn(t, ",");
        if (len > PROTO_MAX_TAG_LEN) {
            return cfg_usage_error(&s_prog, "--tags: '%.*s' is longer than "
                                   "%d bytes", (int) len, t,
                                   PROTO_MAX_TAG_LEN);
        }
        n += len > 0;
        t += len;
    }
    if (n > PROTO_MAX_TAGS) {
        return cfg_usage_error(&s_prog, "--tags: %d tags, more than the %d a "
                               "drone may offer", n, PROTO_MAX_TAGS);
    }
    return CFG_RUN;
}

int
main(int argc, char **argv)
{
    // Before anything secret is in memory: a task running as our uid must
    // not read our /proc/PID/environ, mem or fds (or ptrace us).
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    // A prompt task's child: this program again, its request on stdin.
    if (argc == 2 && strcmp(argv[1], PROMPT_MODE) == 0) {
        return prompt_call_main();
    }
    drone_config_t cfg = {0};
    char err[512];
    int next = 0;
    bool json = false;
    int rc = cfg_main(&s_prog, &cfg, argc, argv, &next);
    if (rc != CFG_RUN) {
        return rc;
    }
    if (next < argc) {
        rc = cfg_usage_error(&s_prog, "unexpected argument '%s'", argv[next]);
    } else if (log_format_parse(cfg.log_format, &json) < 0) {
        rc = cfg_usage_error(&s_prog, "--log-format: '%s' is not text or "
                                      "json", cfg.log_format);
    } else if (!*cfg.model_url != !*cfg.model) {
        rc = cfg_usage_error(&s_prog, "a model needs both --model-url and "
                                      "--model");
    } else if (*cfg.model_url && strcmp(cfg.model_api, "openai") != 0
               && strcmp(cfg.model_api, "anthropic") != 0) {
        rc = cfg_usage_error(&s_prog, "--model-api: '%s' is not openai or "
                                      "anthropic", cfg.model_api);
    } else {
        rc = s_check_tags(cfg.tags);
    }
    if (rc != CFG_RUN) {
        cfg_release(s_opts, &cfg);
        return rc;
    }
    s_hide_args(argc, argv);
    log_init(cfg.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, json);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    drone_t *drone = NULL;
    if (drone_open(&drone, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "waggle-drone: %s\n", err);
        cfg_release(s_opts, &cfg);
        return 2;
    }
    rc = drone_run(drone, &s_stop);
    drone_destroy(&drone);
    cfg_release(s_opts, &cfg);
    return rc == 0 ? 0 : 1;
}
