// httpd: a small non-blocking HTTP/1.x responder on the broker's loop, for
// GET /metrics and GET /healthz (--metrics ADDR:PORT).
//
// It owns a listening TCP socket and at most HTTPD_CONNS_MAX connections,
// each with a fixed HTTPD_REQUEST_MAX-byte request buffer: a connection
// costs no memory beyond its slot until its response is built.  All its
// descriptors are LOOP_QUIET sources, so a scrape never ends the loop's
// wait or runs a turn by itself; each connection has HTTPD_TIMEOUT_MS from
// accept to close, enforced by one deadline source, so a silent or slow
// client holds a slot for that long at most and never blocks the loop.
// One request per connection (Connection: close).  Only GET is served (405
// otherwise); a request line or header block over the buffer gets 414 or
// 431; what to answer for a path is the caller's (httpd_get_fn).  It never
// blocks: a response the socket cannot take at once is retried every
// HTTPD_RETRY_MS until the timeout.
#ifndef WAGGLE_HTTPD_H
#define WAGGLE_HTTPD_H

#include "broker/loop.h"

#include <stddef.h>

#define HTTPD_CONNS_MAX 16       // open connections; more are closed at once
#define HTTPD_REQUEST_MAX 8192   // bytes of request line and headers
#define HTTPD_TIMEOUT_MS 5000    // accept to close, whatever the client does
#define HTTPD_RETRY_MS 20        // retry of a response the socket refused

typedef struct httpd httpd_t;

// What to answer.  body is owned (malloc'd; freed by httpd), or NULL for
// a body made from the status ("not found").  type NULL: text/plain.
typedef struct {
    int status;                  // 200, 404, 503
    const char *type;            // Content-Type (a static string)
    char *body;
    size_t len;
} httpd_reply_t;

// Answers GET path (without its query string).  arg as registered.
typedef void(httpd_get_fn)(void *arg, const char *path, httpd_reply_t *reply);

// Checks addr as HOST:PORT (HOST an IPv4 address, a name, or an IPv6
// address in brackets; PORT 0-65535).  Returns 0 or -1 with why in err.
int httpd_check(const char *addr, char *err, size_t errlen);
// Listens on addr and registers with loop (borrowed; destroy the responder
// before the loop).  get and arg answer requests.  Returns 0, or -1 with
// why in err (cannot resolve, bind or listen).
int httpd_open(httpd_t **out, loop_t *loop, const char *addr,
               httpd_get_fn *get, void *arg, char *err, size_t errlen);
// Unregisters and closes everything; a no-op on NULL.
void httpd_destroy(httpd_t **self_p);
// The bound address as HOST:PORT, with the real port when addr asked for 0.
const char *httpd_address(const httpd_t *self);

#endif
