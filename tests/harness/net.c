// net: namespaces and links for the network fault tests.
#include "tests/harness/net.h"

#include "tests/harness/proc.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
net_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL, *err = NULL;
    int rc = proc_run(argv, 20000, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "[%s] -> %d: %s%s", cmd, rc, out ? out : "",
                err ? err : "");
    }
    free(out);
    free(err);
    return rc;
}

const char *
net_ip(void)
{
    return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip";
}

const char *
net_usable(void)
{
    if (geteuid() != 0) {
        return "not running as root";
    }
    if (access(net_ip(), X_OK) != 0) {
        return "no 'ip' program";
    }
    return NULL;
}

// The pid in name (prefix, letters, digits, anything), or 0.
static long
s_name_pid(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0) {
        return 0;
    }
    const char *p = name + n;
    while (isalpha((unsigned char) *p)) {
        p++;
    }
    return isdigit((unsigned char) *p) ? strtol(p, NULL, 10) : 0;
}

static bool
s_stale(const char *name, const char *prefix)
{
    long pid = s_name_pid(name, prefix);
    return pid > 0 && kill((pid_t) pid, 0) < 0 && errno == ESRCH;
}

// Runs `del NAME` for each stale NAME: the first word of a line of cmd's
// output, cut at any character of cut.
static void
s_each_name(const char *cmd, const char *cut, const char *prefix,
            const char *del)
{
    char *argv[] = {"/bin/sh", "-c", (char *) cmd, NULL};
    char *out = NULL;
    if (proc_run(argv, 10000, &out, NULL) != 0) {
        free(out);
        return;
    }
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }
        char name[64];
        if (sscanf(line, "%63s", name) == 1) {
            name[strcspn(name, cut)] = '\0';
            if (s_stale(name, prefix)) {
                net_sh("%s %s 2>/dev/null || true", del, name);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(out);
}

void
net_sweep_stale(const char *prefix)
{
    s_each_name("ip netns list 2>/dev/null", "", prefix, "ip netns del");
    // `ip -o link` lines read "7: NAME@PEER: <...>"; the name is field 2.
    s_each_name("ip -o link show 2>/dev/null | cut -d' ' -f2", "@:", prefix,
                "ip link del");
}
