// taskuser: --run-as resolved into a uid, a gid and groups (taskuser.h).
#include "drone/taskuser.h"

#include "common/xalloc.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Looks name up; copies what we need out of the static passwd record.
static bool
s_lookup(const char *name, uid_t *uid, gid_t *gid)
{
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        return false;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return true;
}

static void
s_groups(const char *name, gid_t gid, runner_user_t *u)
{
    int n = 16;
    u->groups = xcalloc((size_t) n, sizeof *u->groups);
    while (getgrouplist(name, gid, u->groups, &n) < 0) {
        u->groups = xrealloc(u->groups, (size_t) n * sizeof *u->groups);
    }
    u->n_groups = (size_t) n;
}

static int
s_root(const char *run_as, taskuser_t *out, char *err, size_t errlen)
{
    const char *name = run_as && *run_as ? run_as : TASKUSER_DEFAULT;
    uid_t uid;
    gid_t gid;
    if (!s_lookup(name, &uid, &gid)) {
        snprintf(err, errlen,
                 "cannot run tasks as '%s': no such user; create it with "
                 "'useradd --system --no-create-home --shell "
                 "/usr/sbin/nologin %s', or name another user with --run-as "
                 "USER (--run-as root runs tasks as root)", name, name);
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    if (uid == 0) {
        out->warn = true;
        snprintf(out->note, sizeof out->note,
                 "tasks run as root ('%s', --run-as): they can read the "
                 "drone's keys and everything else on this host", name);
        return 0;
    }
    out->switches = true;
    out->user.uid = uid;
    out->user.gid = gid;
    s_groups(name, gid, &out->user);
    snprintf(out->note, sizeof out->note, "tasks run as user '%s' (uid %u)",
             name, (unsigned) uid);
    return 0;
}

static int
s_not_root(const char *run_as, uid_t euid, taskuser_t *out, char *err,
           size_t errlen)
{
    struct passwd *pw = getpwuid(euid);
    snprintf(out->name, sizeof out->name, "%s",
             pw ? pw->pw_name : "(unknown)");
    uid_t uid;
    gid_t gid;
    if (run_as && *run_as && (!s_lookup(run_as, &uid, &gid) || uid != euid)) {
        snprintf(err, errlen,
                 "cannot run tasks as '%s': the drone runs as '%s', not as "
                 "root, and cannot switch users (start it as root, or drop "
                 "--run-as)", run_as, out->name);
        return -1;
    }
    out->warn = true;
    snprintf(out->note, sizeof out->note,
             "tasks run as the drone's own user '%s' (the drone is not root "
             "and cannot switch): a task can read every file the drone can, "
             "its key included", out->name);
    return 0;
}

int
taskuser_resolve(const char *run_as, uid_t euid, taskuser_t *out, char *err,
                 size_t errlen)
{
    *out = (taskuser_t) {0};
    return euid == 0 ? s_root(run_as, out, err, errlen)
                     : s_not_root(run_as, euid, out, err, errlen);
}

void
taskuser_release(taskuser_t *t)
{
    if (t) {
        xfree(&t->user.groups);
        t->user.n_groups = 0;
    }
}
