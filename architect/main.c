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
    {"broker", "WAGGLE_BROKER", CFG_STR, C(broker), "tcp://127.0.0.1:7600",
     "ENDPOINT", "the broker to talk to", 0, 0},
    {"keys", "WAGGLE_KEYS", CFG_STR, C(keys), "keys", "DIR",
     "key directory; reads DIR/operator (or DIR/submitter)", 0, 0},
    {"role", "WAGGLE_ROLE", CFG_STR, C(role), "operator", "ROLE",
     "which key bundle to use: operator or submitter", 0, 0},
    {"connect-timeout-ms", "WAGGLE_CONNECT_TIMEOUT_MS", CFG_INT,
     C(connect_timeout_ms), "5000", "N",
     "how long to wait for the broker before saying why not", 100,
     3600000},
    {"json", "WAGGLE_JSON", CFG_BOOL, C(json), "0", NULL,
     "JSON output where a command has it", 0, 0},
    {"log-format", "WAGGLE_LOG_FORMAT", CFG_STR, C(log_format), "text",
     "FMT", "text or json", 0, 0},
    {"verbose", "WAGGLE_VERBOSE", CFG_BOOL, C(verbose), "0", NULL,
     "log debug detail", 0, 0},
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
    {"output", cmd_output, "output PLAN TASK      print a task's output"},
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
    fprintf(out, "\nexit status: 0 ok; 1 refused or failed (wait: the plan "
                 "failed or was\ncancelled); 2 wait timed out; 3 cannot "
                 "connect or authenticate; 64 bad usage.\n");
}

int
main(int argc, char **argv)
{
    arch_config_t cfg = {0};
    char err[512];
    int next = 0;
    bool help = false, json_logs = false;
    signal(SIGPIPE, SIG_IGN);
    if (cfg_load(s_opts, &cfg, argc, argv, &next, &help, err, sizeof err) <
        0) {
        fprintf(stderr, "waggle-architect: %s\n", err);
        return ARCH_EXIT_USAGE;
    }
    if (help || next >= argc) {
        s_usage(help ? stdout : stderr);
        cfg_release(s_opts, &cfg);
        return help ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    log_format_parse(cfg.log_format, &json_logs);
    log_init(cfg.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN, json_logs);
    int rc = -1;
    arch_t a = {.cfg = &cfg};
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        if (strcmp(argv[next], s_cmds[i].name) == 0) {
            rc = s_cmds[i].fn(&a, argc - next, argv + next);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "waggle-architect: unknown command '%s' (see "
                        "--help)\n", argv[next]);
        rc = ARCH_EXIT_USAGE;
    }
    link_destroy(&a.link);
    cfg_release(s_opts, &cfg);
    return rc;
}
