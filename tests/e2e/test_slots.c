// e2e: a drone with hundreds of slots runs hundreds of tasks at once.
//
// The drone polls its broker socket plus two pipes per running task; a
// fixed-size poll array once overflowed past ~128 running tasks (issue 6,
// item 5).  Here 300 tasks hold 300 slots at the same time (the overview
// shows 300 leases on the one drone), then all of them succeed and the
// drone is still alive.  Under ASan an overflow aborts the drone.  The
// drone starts with a soft limit of 512 open files (a distribution's
// default is 1024 for up to 1024 slots): each running task holds three
// descriptors in the drone, so it must raise its own limit.
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <sys/resource.h>

enum { S_TASKS = 300 };

// 300 tasks that each sleep long enough for all of them to overlap.
static char *
s_plan(void)
{
    size_t cap = 128 + (size_t) S_TASKS * 64, len = 0;
    char *p = xmalloc(cap);
    len += (size_t) snprintf(p + len, cap - len,
                             "{\"name\":\"wide\",\"tasks\":[");
    for (int i = 0; i < S_TASKS; i++) {
        len += (size_t) snprintf(p + len, cap - len,
                                 "%s{\"id\":\"t%d\",\"run\":[\"sleep\","
                                 "\"12\"],\"requires\":[\"wide\"]}",
                                 i ? "," : "", i);
    }
    snprintf(p + len, cap - len, "]}");
    return p;
}

static void
test_three_hundred_slots(void)
{
    swarm_t s;
    swarm_init(&s, 200, 4000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    // The production default: a PID namespace per task when root.
    struct rlimit was, low;
    SWARM_REQUIRE(&s, getrlimit(RLIMIT_NOFILE, &was) == 0);
    low = was;
    low.rlim_cur = was.rlim_max < 512 ? was.rlim_max : 512;
    SWARM_REQUIRE(&s, setrlimit(RLIMIT_NOFILE, &low) == 0);
    int d = swarm_drone(&s, S_TASKS, "wide", "--isolation", "auto", NULL);
    SWARM_REQUIRE(&s, setrlimit(RLIMIT_NOFILE, &was) == 0);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "wide", true, -1, 20000));
    char *plan = s_plan();
    int64_t id = swarm_submit(&s, plan);
    free(plan);
    SWARM_REQUIRE(&s, id > 0);
    // Every slot busy at once: 300 leases on the one drone.
    CHECK(swarm_wait_drone(&s, "wide", true, S_TASKS, 60000));
    CHECK(proc_alive(s.drones[d]));
    char state[32];
    swarm_wait_plan(&s, id, 120, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(proc_alive(s.drones[d]));
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_three_hundred_slots),
    {0},
};

T_MAIN(t_cases)
