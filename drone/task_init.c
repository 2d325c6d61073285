// waggle-task-init: the init of one task of a confined waggle-drone.
//
// The drone starts it vfork-style (clone CLONE_VM | CLONE_VFORK, the PID
// and mount namespaces made by that clone) and this program replaces the
// drone's memory at once, so a task's init costs one small exec instead of
// a copy of the drone's page tables, its copy-on-write faults and its
// teardown (drone/runner.c).  Everything it needs is in argv
// and its environment (drone/runner_int.h gives the layout); the task's
// variables arrive behind a '=', so nothing a workplan puts there
// (LD_PRELOAD, ...) applies to it.  Linked statically where the toolchain can: no dynamic
// loader to run per task.
//
// It is not a command for people: run by hand it says so and exits 64.
#include "drone/runner_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

enum {
    S_REPORT_FD = 3,
    // As the drone's (runner.c): a PATH search may put PATH and argv on it.
    S_STACK_BYTES = 2 * 1024 * 1024,
    S_MAX_GROUPS = 65536,
};

static int
s_num(const char *s, uint64_t *v, int base)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(s, &end, base);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        return -1;
    }
    *v = n;
    return 0;
}

// "-": none; "=X": X.
static int
s_opt(const char *s, const char **out)
{
    if (strcmp(s, "-") == 0) {
        *out = NULL;
        return 0;
    }
    if (s[0] != '=') {
        return -1;
    }
    *out = s + 1;
    return 0;
}

static int
s_limits(const char *s, runner_limits_t *lim)
{
    unsigned long long v[4];
    int used = 0;
    if (sscanf(s, "%llu:%llu:%llu:%llu%n", &v[0], &v[1], &v[2], &v[3], &used)
            != 4
        || s[used] != '\0') {
        return -1;
    }
    *lim = (runner_limits_t) {.as_bytes = v[0], .nofile = v[1],
                              .nproc = v[2], .cpu_s = v[3]};
    return 0;
}

// "UID:GID:G1,G2,...".  The groups array is static: one task per process.
static int
s_user(const char *s, runner_user_t *u)
{
    static gid_t groups[S_MAX_GROUPS];
    char *end = NULL;
    u->uid = (uid_t) strtoul(s, &end, 10);
    if (*end != ':') {
        return -1;
    }
    u->gid = (gid_t) strtoul(end + 1, &end, 10);
    if (*end != ':') {
        return -1;
    }
    u->groups = groups;
    u->n_groups = 0;
    for (const char *p = end + 1; *p;) {
        if (u->n_groups == S_MAX_GROUPS) {
            return -1;
        }
        groups[u->n_groups++] = (gid_t) strtoul(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) {
            return -1;
        }
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

static int
s_mode(const char *s, runner_mode_t *mode)
{
    if (strcmp(s, "pidns") == 0) {
        *mode = RUNNER_PIDNS;
    } else if (strcmp(s, "subreaper") == 0) {
        *mode = RUNNER_SUBREAPER;
    } else {
        return -1;
    }
    return 0;
}

// The task's environment: ours, each entry without its leading '='
// (runner_int.h).  Read before s_search_path replaces environ.
static int
s_task_env(runner_launch_t *l)
{
    size_t n = 0;
    while (environ[n]) {
        n++;
    }
    char **env = calloc(n + 1, sizeof *env);
    if (!env) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (environ[i][0] != '=') {
            free(env);
            return -1;
        }
        env[i] = environ[i] + 1;
    }
    l->envp = env;
    return 0;
}

// Fills l from argv (runner_int.h); user and reset are its storage.
static int
s_parse(int argc, char **argv, runner_launch_t *l, runner_user_t *user,
        sigset_t *reset, const char **search)
{
    uint64_t userns, uid, gid, mask, open_max, n;
    if (argc < RUNNER_INIT_FIXED || s_mode(argv[1], &l->mode) != 0
        || s_num(argv[2], &userns, 10) != 0 || s_num(argv[3], &uid, 10) != 0
        || s_num(argv[4], &gid, 10) != 0
        || s_limits(argv[6], &l->limits) != 0
        || s_num(argv[7], &mask, 16) != 0
        || s_num(argv[8], &open_max, 10) != 0 || s_opt(argv[9], &l->cwd) != 0
        || s_opt(argv[10], &l->path) != 0 || s_opt(argv[11], search) != 0
        || s_num(argv[12], &n, 10) != 0
        || n == 0 || n != (uint64_t) (argc - RUNNER_INIT_FIXED)) {
        return -1;
    }
    if (strcmp(argv[5], "-") == 0) {
        l->user = NULL;
    } else if (s_user(argv[5], user) == 0) {
        l->user = user;
    } else {
        return -1;
    }
    sigemptyset(reset);
    for (int sig = 1; sig <= 64 && sig < NSIG; sig++) {
        if (mask & (UINT64_C(1) << (sig - 1))) {
            sigaddset(reset, sig);
        }
    }
    l->reset = reset;
    l->userns = userns != 0;
    l->uid = (uid_t) uid;
    l->gid = (gid_t) gid;
    l->open_max = (long) open_max;
    l->argv = argv + RUNNER_INIT_FIXED;
    return s_task_env(l);
}

// The drone's PATH as this process's only variable: the PATH search of
// the task's exec reads environ (the task still gets exactly its envp).
static int
s_search_path(const char *search)
{
    static char *env[2];
    if (search) {
        size_t len = strlen(search) + sizeof "PATH=";
        env[0] = malloc(len);
        if (!env[0]) {
            return -1;
        }
        snprintf(env[0], len, "PATH=%s", search);
    }
    environ = env;
    return 0;
}

int
main(int argc, char **argv)
{
    // Nothing of the drone is left in this memory, but the report pipe is:
    // keep other processes of this uid out.
    // (With a user namespace, runner_child_namespace makes it dumpable
    // just long enough to write the maps, then not again.)
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (fcntl(S_REPORT_FD, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "%s: the init of a waggle-drone task; started "
                        "by waggle-drone only\n", argv[0]);
        return 64;
    }
    runner_user_t user;
    sigset_t reset;
    runner_launch_t l = {.exec_w = S_REPORT_FD, .null_fd = -1, .out_w = -1,
                         .err_w = -1};
    const char *search = NULL;
    if (s_parse(argc, argv, &l, &user, &reset, &search) != 0
        || s_search_path(search) != 0) {
        runner_report(S_REPORT_FD, RUNNER_STAGE_SETUP, EINVAL);
        return 127;
    }
    char *stack = mmap(NULL, S_STACK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                       -1, 0);
    if (stack == MAP_FAILED) {
        runner_report(S_REPORT_FD, RUNNER_STAGE_SETUP, errno);
        return 127;
    }
    l.stack_top = stack + S_STACK_BYTES;
    runner_init(&l);
}
