// waggle-architect: global options, then one command.
#include "architect/arch.h"

#include "common/cfg.h"
#include "common/log.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define C(f) offsetof(arch_config_t, f)

static const cfg_option_t s_opts[] = {
    {"broker", "WAGGLE_BROKER", CFG_ENDPOINT, C(broker),
     "tcp://127.0.0.1:7600", "ENDPOINT", "the broker to talk to", 0, 0},
    {"keys", "WAGGLE_KEYS", CFG_STR, C(keys), "keys", "DIR",
     "key directory; reads DIR/operator (or DIR/submitter)", 0, 0},
    {"role", "WAGGLE_ROLE", CFG_STR, C(role), "operator", "ROLE",
     "which key bundle to use: operator or submitter", 0, 0},
    {"connect-timeout-ms", "WAGGLE_CONNECT_TIMEOUT_MS", CFG_INT,
     C(connect_timeout_ms), "5000", "N",
     "how long to wait for the broker before saying why not", 100,
     3600000},
    {"json", "WAGGLE_JSON", CFG_BOOL, C(json), "0", NULL,
     "JSON output where a command has it; failures as JSON on stdout", 0,
     0},
    {"log-format", "WAGGLE_LOG_FORMAT", CFG_STR, C(log_format), "text",
     "FMT", "text or json", 0, 0},
    {"verbose", "WAGGLE_VERBOSE", CFG_BOOL, C(verbose), "0", NULL,
     "log debug detail", 0, 0},
    {"model-api", "WAGGLE_MODEL_API", CFG_STR, C(model_api), "openai", "API",
     "plan: openai (chat completions) or anthropic (messages)", 0, 0},
    {"model-url", "WAGGLE_MODEL_URL", CFG_STR, C(model_url), NULL, "URL",
     "plan: OpenAI-compatible base URL (http://127.0.0.1:8080/v1)", 0, 0},
    {"model", "WAGGLE_MODEL", CFG_STR, C(model), NULL, "NAME",
     "plan: the model to ask", 0, 0},
    {"model-key", "WAGGLE_MODEL_KEY", CFG_STR, C(model_key), NULL, "KEY",
     "plan: API key (prefer the env or a key file: flags show in ps)", 0,
     0},
    {"model-key-file", "WAGGLE_MODEL_KEY_FILE", CFG_STR, C(model_key_file),
     NULL, "FILE", "plan: read the API key from FILE (mode 0600)", 0, 0},
    {"model-timeout-s", "WAGGLE_MODEL_TIMEOUT_S", CFG_INT,
     C(model_timeout_s), "120", "S", "plan: give up on one model request "
     "after S seconds", 1, 86400},
    CFG_END,
};

static const struct {
    const char *name;
    arch_cmd_fn fn;
    const char *summary;
} s_cmds[] = {
    {"keygen", cmd_keygen,
     "keygen DIR [--add ROLE NAME | --list | --revoke NAME]\n"
     "                        key sets; one key per host (see keygen --help)"},
    {"ping", cmd_ping, "ping                  check the broker and this key"},
    {"submit", cmd_submit,
     "submit FILE           validate and submit a workplan; prints its id"},
    {"status", cmd_status,
     "status [PLAN]         plans and drones, or one plan's tasks"},
    {"wait", cmd_wait, "wait PLAN             follow a plan until it ends"},
    {"cancel", cmd_cancel, "cancel PLAN [TASK]    cancel a plan or a task"},
    {"retry", cmd_retry, "retry PLAN TASK       run a dead task again"},
    {"output", cmd_output,
     "output PLAN TASK [--follow]\n"
     "                        print a task's output; --follow while it runs"},
    {"explain", cmd_explain,
     "explain PLAN TASK     why a task is not running"},
    {"events", cmd_events,
     "events [PLAN] [--follow] [--since SEQ] [--json]\n"
     "                        print the event log; --follow keeps going"},
    {"log", cmd_log, "log PLAN              a plan's full history"},
    {"watch", cmd_watch,
     "watch [PLAN]          live dashboard: plans, tasks, drones, gates"},
    {"approve", cmd_approve,
     "approve PLAN TASK     approve a gate (operator keys only)"},
    {"reject", cmd_reject,
     "reject PLAN TASK --note TEXT\n"
     "                        reject a gate (operator keys only)"},
    {"amend", cmd_amend,
     "amend PLAN FILE       add, cancel or replace tasks of a running plan"},
    {"replan", cmd_replan,
     "replan PLAN \"INSTRUCTION\"\n"
     "                        ask the model to amend a plan, then apply it"},
    {"budget", cmd_budget,
     "budget PLAN N|--none  set a running plan's token budget (operator keys "
     "only)"},
    {"plan", cmd_plan,
     "plan \"GOAL\"           ask the model for a workplan, then submit it"},
};

static void
s_usage(FILE *out)
{
    fprintf(out, "usage: waggle-architect [GLOBAL OPTIONS] COMMAND "
                 "[ARGS]\n\nThe human's console to a Waggle swarm.\n\n"
                 "commands (COMMAND --help for more):\n");
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        fprintf(out, "  %s\n", s_cmds[i].summary);
    }
    fprintf(out, "\nglobal options (before the command; flag > environment "
                 "> default):\n");
    cfg_usage(out, s_opts);
    fprintf(out, "  --version                    print the version and "
                 "exit\n\nexit status: 0 ok; 1 refused or failed (wait: the "
                 "plan failed or was\ncancelled); 2 wait timed out; 3 cannot "
                 "connect or authenticate; 4 no such\nplan (or task, or "
                 "attempt); 64 bad usage.  With --json a failure is also\n"
                 "{\"error\": {\"code\": ..., \"message\": ...}} on "
                 "stdout.\n");
}

// Usage errors of the global options, as JSON too when --json came first
// (or WAGGLE_JSON is set).
static void
s_usage_error(void *conf, const char *message)
{
    arch_t a = {.cfg = conf, .json = ((const arch_config_t *) conf)->json};
    arch_report(&a, ARCH_EXIT_USAGE, "usage", message, NULL);
}

static const cfg_program_t s_prog = {
    .name = "waggle-architect", .opts = s_opts, .usage = s_usage,
    .usage_error = s_usage_error};

// A command's own --json asks for JSON errors even before the command has
// parsed its options (a usage error among them, say).
static bool
s_wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            return true;
        }
    }
    return false;
}

int
main(int argc, char **argv)
{
    arch_config_t cfg = {0};
    int next = 0;
    bool json_logs = false;
    signal(SIGPIPE, SIG_IGN);
    int rc = cfg_main(&s_prog, &cfg, argc, argv, &next);
    if (rc != CFG_RUN) {
        return rc;
    }
    arch_t a = {.cfg = &cfg, .json = cfg.json};
    if (next >= argc) {
        s_usage(stderr);
        rc = arch_fail(&a, ARCH_EXIT_USAGE, "usage", "no command given");
    } else if (log_format_parse(cfg.log_format, &json_logs) < 0) {
        rc = arch_fail(&a, ARCH_EXIT_USAGE, "usage", "--log-format: '%s' is "
                       "not text or json", cfg.log_format);
    }
    if (rc != CFG_RUN) {
        cfg_release(s_opts, &cfg);
        return rc;
    }
    log_init(cfg.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN, json_logs);
    a.json = a.json || s_wants_json(argc - next, argv + next);
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        if (strcmp(argv[next], s_cmds[i].name) == 0) {
            rc = s_cmds[i].fn(&a, argc - next, argv + next);
        }
    }
    if (rc == CFG_RUN) {
        rc = arch_fail(&a, ARCH_EXIT_USAGE, "usage", "unknown command '%s' "
                       "(see --help)", argv[next]);
    }
    link_destroy(&a.link);
    if (cfg.model_key) {
        explicit_bzero(cfg.model_key, strlen(cfg.model_key));
    }
    cfg_release(s_opts, &cfg);
    return rc;
}
