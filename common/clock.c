// clock: monotonic and wall-clock time in milliseconds.
#include "common/clock.h"

#include <time.h>

static int64_t
s_read(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ms(void)
{
    return s_read(CLOCK_MONOTONIC);
}

int64_t
clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_wall_ms(void)
{
    return s_read(CLOCK_REALTIME);
}

void
clock_format_utc(int64_t wall_ms, char *buf, int buflen)
{
    time_t t = (time_t) (wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, (size_t) buflen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
