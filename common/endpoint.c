// endpoint: ZeroMQ endpoints as Waggle accepts them (text checks only).
#include "common/endpoint.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EXAMPLES "e.g. tcp://127.0.0.1:7600 or ipc:///run/waggle.sock"

// 1-65535, or 0 or * (any free port: libzmq binds one and reports it).
static bool
s_port_ok(const char *p)
{
    if (strcmp(p, "*") == 0) {
        return true;
    }
    size_t n = strlen(p);
    if (n == 0 || n > 5 || strspn(p, "0123456789") != n) {
        return false;
    }
    return atoi(p) <= 65535;
}

// A name, an IPv4 address or * as they are, an IPv6 address (with an
// optional %zone) only in brackets, as libzmq wants it.
static bool
s_host_ok(const char *h, size_t len)
{
    bool v6 = len > 2 && h[0] == '[' && h[len - 1] == ']';
    for (size_t i = v6 ? 1 : 0; i < (v6 ? len - 1 : len); i++) {
        unsigned char c = (unsigned char) h[i];
        bool ok = isalnum(c) || c == '.' || c == '-' || c == '_' ||
                  (!v6 && c == '*') || (v6 && (c == ':' || c == '%'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

static int
s_tcp(const char *text, const char *rest, char *err, size_t errlen)
{
    const char *colon = strrchr(rest, ':');
    const char *bracket = strchr(rest, ']');
    if (!colon || (bracket && colon < bracket)) {
        snprintf(err, errlen, "'%s' has no port (e.g. tcp://127.0.0.1:7600)",
                 text);
        return -1;
    }
    size_t hlen = (size_t) (colon - rest);
    if (hlen == 0) {
        snprintf(err, errlen, "'%s' has no host (e.g. tcp://127.0.0.1:7600, "
                              "or tcp://*:7600 to bind every interface)",
                 text);
        return -1;
    }
    if (!s_host_ok(rest, hlen)) {
        snprintf(err, errlen, "'%s': '%.*s' is not a host name or address "
                              "(an IPv6 address goes in brackets: "
                              "tcp://[::1]:7600)", text, (int) hlen, rest);
        return -1;
    }
    if (!s_port_ok(colon + 1)) {
        snprintf(err, errlen, "'%s': port '%s' is not 1-65535 (or 0 or * for "
                              "any free port when binding)", text, colon + 1);
        return -1;
    }
    return 0;
}

static int
s_ipc(const char *text, const char *path, char *err, size_t errlen)
{
    size_t n = strlen(path);
    if (n == 0) {
        snprintf(err, errlen, "'%s' has no path (e.g. "
                              "ipc:///run/waggle.sock)", text);
        return -1;
    }
    if (n > ENDPOINT_IPC_MAX) {
        snprintf(err, errlen, "'%s': the path has %zu bytes, more than a "
                              "Unix socket takes (%d)", text, n,
                 ENDPOINT_IPC_MAX);
        return -1;
    }
    return 0;
}

int
endpoint_check(const char *text, char *err, size_t errlen)
{
    if (strncmp(text, "tcp://", 6) == 0) {
        return s_tcp(text, text + 6, err, errlen);
    }
    if (strncmp(text, "ipc://", 6) == 0) {
        return s_ipc(text, text + 6, err, errlen);
    }
    if (!*text) {
        snprintf(err, errlen, "the endpoint is empty (" S_EXAMPLES ")");
    } else if (!strstr(text, "://")) {
        // The usual slip: host:port without the transport.
        snprintf(err, errlen, "'%s' needs tcp:// or ipc:// in front (e.g. "
                              "tcp://%s)", text,
                 strchr(text, ':') ? text : "127.0.0.1:7600");
    } else {
        snprintf(err, errlen, "'%s': Waggle speaks tcp:// and ipc:// only ("
                              S_EXAMPLES ")", text);
    }
    return -1;
}
