// endpoint: what Waggle accepts as a ZeroMQ endpoint, checked before any
// socket sees it, so a typo is a usage error that says what is wrong and
// shows the right form instead of a bare "Invalid argument" from libzmq.
//
// Accepted: tcp://HOST:PORT and ipc://PATH.  Pure text checks: no name
// lookup, no socket, no file system.
#ifndef WAGGLE_ENDPOINT_H
#define WAGGLE_ENDPOINT_H

#include <stddef.h>

// Longest ipc:// path: a Unix socket address holds 108 bytes with its NUL.
#define ENDPOINT_IPC_MAX 107

// Checks text as tcp://HOST:PORT — HOST a name, an IPv4 address, an IPv6
// address in brackets, or * (bind every interface); PORT 1-65535, or 0 or *
// (any free port, when binding) — or as ipc://PATH (1 to ENDPOINT_IPC_MAX
// bytes; @NAME is Linux's abstract namespace).  Returns 0, or -1 with what
// is wrong and an example in err (lowercase, the endpoint quoted, no
// subject: the caller prefixes the flag).
int endpoint_check(const char *text, char *err, size_t errlen);

#endif
