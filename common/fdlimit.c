// fdlimit: raising the soft limit on open files (see fdlimit.h).
#include "common/fdlimit.h"

#include <sys/resource.h>

uint64_t
fdlimit_raise(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0) {
        return 0;
    }
    rlim_t want = r.rlim_max == RLIM_INFINITY || r.rlim_max > FDLIMIT_MAX
                      ? FDLIMIT_MAX
                      : r.rlim_max;
    if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
        rlim_t had = r.rlim_cur;
        r.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &r) < 0) {
            r.rlim_cur = had;
        }
    }
    return r.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t) r.rlim_cur;
}
