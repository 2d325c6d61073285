// Unit tests for taskuser: the --run-as policy for root and non-root
// drones (the effective uid is a parameter, so both run anywhere).
#include "drone/taskuser.h"
#include "tests/harness/t.h"

#include <pwd.h>

static void
test_root_default(void)
{
    taskuser_t tu;
    char err[512] = "";
    int rc = taskuser_resolve(NULL, 0, &tu, err, sizeof err);
    if (getpwnam(TASKUSER_DEFAULT)) {
        CHECK_INT(rc, 0);
        CHECK(tu.switches);
        CHECK_STR(tu.name, TASKUSER_DEFAULT);
    } else {
        // Refuses to start, and says how to make the user.
        CHECK_INT(rc, -1);
        CHECK_HAS(err, "cannot run tasks as 'waggle-task': no such user");
        CHECK_HAS(err, "useradd --system --no-create-home --shell "
                       "/usr/sbin/nologin waggle-task");
    }
    taskuser_release(&tu);
}

static void
test_root_named_users(void)
{
    taskuser_t tu;
    char err[512] = "";
    CHECK_INT(taskuser_resolve("nobody", 0, &tu, err, sizeof err), 0);
    CHECK(tu.switches);
    CHECK(!tu.warn);
    CHECK_INT(tu.user.uid, 65534);
    bool has_group = false;
    for (size_t i = 0; i < tu.user.n_groups; i++) {
        has_group = has_group || tu.user.groups[i] == tu.user.gid;
    }
    CHECK(has_group);
    CHECK_HAS(tu.note, "tasks run as user 'nobody'");
    taskuser_release(&tu);
    // The explicit opt-out: no switch, and a warning.
    CHECK_INT(taskuser_resolve("root", 0, &tu, err, sizeof err), 0);
    CHECK(!tu.switches);
    CHECK(tu.warn);
    CHECK_HAS(tu.note, "tasks run as root");
    taskuser_release(&tu);
    CHECK_INT(taskuser_resolve("no-such-user-q", 0, &tu, err, sizeof err),
              -1);
    CHECK_HAS(err, "cannot run tasks as 'no-such-user-q': no such user");
    taskuser_release(&tu);
}

static void
test_not_root(void)
{
    taskuser_t tu;
    char err[512] = "";
    // No --run-as: the drone's own user, said as a warning.
    CHECK_INT(taskuser_resolve("", 65534, &tu, err, sizeof err), 0);
    CHECK(!tu.switches);
    CHECK(tu.warn);
    CHECK_HAS(tu.note, "tasks run as the drone's own user 'nobody'");
    CHECK_HAS(tu.note, "its key included");
    taskuser_release(&tu);
    // Naming itself is fine; anyone else cannot be switched to.
    CHECK_INT(taskuser_resolve("nobody", 65534, &tu, err, sizeof err), 0);
    taskuser_release(&tu);
    CHECK_INT(taskuser_resolve("root", 65534, &tu, err, sizeof err), -1);
    CHECK_HAS(err, "cannot run tasks as 'root': the drone runs as 'nobody', "
                   "not as root, and cannot switch users");
    taskuser_release(&tu);
}

static const t_case_t t_cases[] = {
    T(test_root_default),
    T(test_root_named_users),
    T(test_not_root),
    {0},
};

T_MAIN(t_cases)
