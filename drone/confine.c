// confine: the drone's isolation setup (confine.h).
#include "drone/confine.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG "drone"

static int
s_mode(confine_t *c, const char *want, char *err, size_t errlen)
{
    bool any = !want || !*want || strcmp(want, "auto") == 0;
    bool pidns = (any || strcmp(want, "pidns") == 0) && runner_pidns_works();
    if (any) {
        c->mode = pidns ? RUNNER_PIDNS : RUNNER_SUBREAPER;
    } else if (strcmp(want, "pidns") == 0 && pidns) {
        c->mode = RUNNER_PIDNS;
    } else if (strcmp(want, "pidns") == 0) {
        snprintf(err, errlen, "--isolation pidns: this drone cannot make a "
                              "PID and mount namespace (it needs root, or "
                              "CAP_SYS_ADMIN)");
        return -1;
    } else if (strcmp(want, "subreaper") == 0) {
        c->mode = RUNNER_SUBREAPER;
    } else {
        snprintf(err, errlen, "--isolation: '%s' is not auto, pidns or "
                              "subreaper", want);
        return -1;
    }
    return 0;
}

#define S_BASE_PREFIX "waggle-drone-"
#define S_LOCK ".lock"

// Whether tmp/name is the base of a drone that died: ours to remove (a
// directory, not a link, this user's, 0711) and its lock free.  A live
// drone holds its lock; a base still being made has none yet.
static bool
s_is_stale(int tmp, const char *name)
{
    struct stat st;
    if (strncmp(name, S_BASE_PREFIX, strlen(S_BASE_PREFIX)) != 0
        || fstatat(tmp, name, &st, AT_SYMLINK_NOFOLLOW) != 0
        || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()
        || (st.st_mode & 07777) != 0711) {
        return false;
    }
    int base = openat(tmp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                     | O_CLOEXEC);
    int lock = base >= 0 ? openat(base, S_LOCK, O_RDONLY | O_NOFOLLOW
                                                    | O_CLOEXEC)
                         : -1;
    bool stale = lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0;
    if (lock >= 0) {
        close(lock);
    }
    if (base >= 0) {
        close(base);
    }
    return stale;
}

// A drone killed with SIGKILL leaves its base, with its attempts' inputs,
// behind: the next one on the host removes it.
static void
s_sweep(const char *tmp)
{
    DIR *d = opendir(tmp);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (s_is_stale(dirfd(d), e->d_name)) {
            char *path = xasprintf("%s/%s", tmp, e->d_name);
            attempt_remove_dir(path);
            free(path);
            n++;
        }
    }
    if (d) {
        closedir(d);
    }
    if (n > 0) {
        log_info(LOG, "removed %d scratch directories of drones that were "
                      "killed in '%s'", n, tmp);
    }
}

// Holds BASE/.lock for the drone's life (flock: the kernel lets go when
// the process dies, whatever killed it).
static int
s_lock(confine_t *c)
{
    char *path = xasprintf("%s/" S_LOCK, c->base);
    c->lock_fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW
                                | O_CLOEXEC, 0600);
    free(path);
    return c->lock_fd >= 0 && flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0
               ? 0
               : -1;
}

// mkdtemp makes it 0700 under a random name (not the instance id); 0711
// lets the task user reach its own directory inside without listing any.
// Locked before it is 0711: a drone starting meanwhile sweeps only 0711
// bases, and must never see this one unlocked.
static int
s_base(confine_t *c, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR")
                                                           : "/tmp";
    s_sweep(tmp);
    snprintf(c->base, sizeof c->base, "%s/" S_BASE_PREFIX "XXXXXX", tmp);
    bool made = mkdtemp(c->base) != NULL;
    if (made && s_lock(c) == 0 && chmod(c->base, 0711) == 0) {
        return 0;
    }
    snprintf(err, errlen, "cannot create a scratch directory in '%s': %s",
             tmp, strerror(errno));
    if (made) {
        attempt_remove_dir(c->base);
    }
    c->base[0] = '\0';
    return -1;
}

static char **
s_split(const char *csv)
{
    char **v = xcalloc(1, sizeof *v);
    size_t n = 0;
    char *copy = xstrdup(csv ? csv : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t;
         t = strtok_r(NULL, ", ", &save)) {
        v = xrealloc(v, (n + 2) * sizeof *v);
        v[n++] = xstrdup(t);
        v[n] = NULL;
    }
    free(copy);
    return v;
}

static void
s_log(const confine_t *c)
{
    if (c->user.warn) {
        log_warn(LOG, "%s", c->user.note);
    } else {
        log_info(LOG, "%s", c->user.note);
    }
    log_info(LOG, "%s%s", c->mode == RUNNER_PIDNS
                              ? "each task runs in its own PID and mount "
                                "namespace: nothing it starts outlives it, "
                                "and it sees no other process"
                              : "tasks run under a subreaper (no PID "
                                "namespace here): nothing they start "
                                "outlives them, but tasks of one user can see "
                                "each other in /proc",
             c->mode == RUNNER_PIDNS && geteuid() != 0
                 ? " (inside a user namespace of its own)"
                 : "");
}

int
confine_open(confine_t *c, const drone_config_t *cfg, char *err,
             size_t errlen)
{
    *c = (confine_t) {.lock_fd = -1};
    if (taskuser_resolve(cfg->run_as, geteuid(), &c->user, err, errlen) < 0
        || s_mode(c, cfg->isolation, err, errlen) < 0
        || s_base(c, err, errlen) < 0) {
        confine_close(c);
        return -1;
    }
    c->pass_env = s_split(cfg->pass_env);
    c->caps = (runner_limits_t) {
        .as_bytes = (uint64_t) cfg->limit_as_mb << 20,
        .nofile = (uint64_t) cfg->limit_nofile,
        .nproc = (uint64_t) cfg->limit_nproc,
        .cpu_s = (uint64_t) cfg->limit_cpu_s};
    s_log(c);
    return 0;
}

void
confine_close(confine_t *c)
{
    if (c->base[0]) {
        attempt_remove_dir(c->base);
        c->base[0] = '\0';
    }
    if (c->lock_fd >= 0) {
        close(c->lock_fd);
        c->lock_fd = -1;
    }
    for (size_t i = 0; c->pass_env && c->pass_env[i]; i++) {
        free(c->pass_env[i]);
    }
    xfree(&c->pass_env);
    taskuser_release(&c->user);
}

attempt_opts_t
confine_attempt_opts(const confine_t *c)
{
    bool sw = c->user.switches;
    return (attempt_opts_t) {.base = c->base, .pass_env = c->pass_env,
                             .uid = sw ? c->user.user.uid : (uid_t) -1,
                             .gid = sw ? c->user.user.gid : (gid_t) -1};
}

void
confine_spec(const confine_t *c, const proto_task_t *t, runner_spec_t *spec)
{
    spec->user = c->user.switches ? &c->user.user : NULL;
    spec->limits = attempt_limits(&t->limits, &c->caps);
}
