// httpd: the connection slots, their read/write/timeout handling and the
// request line parser.  See httpd.h for what it promises.
#include "broker/httpd.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG "broker.httpd"

typedef struct {
    httpd_t *owner;
    int fd;                      // -1: a free slot
    bool polled;                 // registered with the loop
    bool got_request;            // the header block is in (or refused)
    bool eof;                    // the client closed its side
    char in[HTTPD_REQUEST_MAX];  // request line and headers so far
    size_t n_in;
    char *out;                   // owned response, NULL before one is built
    size_t n_out, sent;
    int64_t deadline_ms;         // monotonic: closed then, whatever state
    int64_t retry_ms;            // monotonic: next write of a refused rest
} s_conn_t;

struct httpd {
    loop_t *loop;                // borrowed
    int fd;                      // listening socket
    int deadline_id;             // loop deadline source
    httpd_get_fn *get;
    void *arg;
    char address[300];
    s_conn_t conns[HTTPD_CONNS_MAX];
};

// Splits "HOST:PORT" / "[V6]:PORT" into host and port.
static int
s_split(const char *addr, char *host, size_t hlen, char *port, size_t plen,
        char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t n = colon ? (size_t) (colon - addr) : 0;
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    char *end = NULL;
    long p = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || n == 0 || n >= hlen || colon[1] == '\0' || *end != '\0' ||
        p < 0 || p > 65535) {
        snprintf(err, errlen, "'%s' is not HOST:PORT (e.g. 127.0.0.1:9464)",
                 addr);
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, plen, "%ld", p);
    return 0;
}

int
httpd_check(const char *addr, char *err, size_t errlen)
{
    char host[256], port[8];
    return s_split(addr, host, sizeof host, port, sizeof port, err, errlen);
}

static int
s_listen(httpd_t *self, const char *addr, char *err, size_t errlen)
{
    char host[256], port[8];
    if (s_split(addr, host, sizeof host, port, sizeof port, err, errlen) < 0) {
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "metrics address '%s': %s", addr,
                 gai_strerror(rc));
        return -1;
    }
    self->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
                      SOCK_CLOEXEC, 0);
    int one = 1;
    if (self->fd < 0 ||
        setsockopt(self->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(self->fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(self->fd, HTTPD_CONNS_MAX) < 0) {
        snprintf(err, errlen, "cannot listen for metrics on '%s': %s", addr,
                 strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return 0;
}

// The bound address with its real port, for the log and tests.
static void
s_name(httpd_t *self)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[256] = "?", port[16] = "?";
    if (getsockname(self->fd, (struct sockaddr *) &ss, &len) == 0) {
        getnameinfo((struct sockaddr *) &ss, len, host, sizeof host, port,
                    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
    }
    bool v6 = ss.ss_family == AF_INET6;
    snprintf(self->address, sizeof self->address, "%s%s%s:%s",
             v6 ? "[" : "", host, v6 ? "]" : "", port);
}

static void
s_close(httpd_t *self, s_conn_t *c)
{
    if (c->polled) {
        loop_remove_fd(self->loop, c->fd);
    }
    close(c->fd);
    free(c->out);
    httpd_t *owner = c->owner;
    memset(c, 0, sizeof *c);
    c->owner = owner;
    c->fd = -1;
}

static const char *
s_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

// Builds c's response from r (r's body is taken).
static void
s_build(s_conn_t *c, httpd_reply_t *r)
{
    if (!r->body) {
        r->body = xasprintf("%s\n", s_reason(r->status));
        r->len = strlen(r->body);
        r->type = NULL;
    }
    char *head = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                           "Content-Length: %zu\r\n%sConnection: close"
                           "\r\n\r\n", r->status, s_reason(r->status),
                           r->type ? r->type : "text/plain; charset=utf-8",
                           r->len, r->status == 405 ? "Allow: GET\r\n" : "");
    size_t n = strlen(head);
    c->out = xmalloc(n + r->len);
    memcpy(c->out, head, n);
    memcpy(c->out + n, r->body, r->len);
    c->n_out = n + r->len;
    c->sent = 0;
    free(head);
    free(r->body);
    r->body = NULL;
}

// Writes what the socket takes.  Once all is out, the write side is shut
// and the connection lingers, reading to EOF, so that unread request bytes
// never make the kernel reset the connection before the client read the
// response; a client that already closed is closed now.
static void
s_write(httpd_t *self, s_conn_t *c, int64_t now_ms)
{
    while (c->sent < c->n_out) {
        ssize_t n = send(c->fd, c->out + c->sent, c->n_out - c->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->retry_ms = now_ms + HTTPD_RETRY_MS;
            return;
        }
        if (n <= 0) {
            s_close(self, c);
            return;
        }
        c->sent += (size_t) n;
    }
    if (c->eof) {
        s_close(self, c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
}

// Parses the request line in c->in (NUL-ended) and asks the caller.
static void
s_answer(httpd_t *self, s_conn_t *c, httpd_reply_t *r)
{
    char method[16], target[HTTPD_REQUEST_MAX], version[16];
    if (sscanf(c->in, "%15s %8191s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/') {
        r->status = 400;
        return;
    }
    if (strcmp(method, "GET") != 0) {
        r->status = 405;
        return;
    }
    target[strcspn(target, "?#")] = '\0';
    r->status = 404;
    self->get(self->arg, target, r);
}

// The header block is in (ended is its end), or the buffer is full.
static void
s_respond(httpd_t *self, s_conn_t *c, const char *ended, int64_t now_ms)
{
    httpd_reply_t r = {0};
    c->got_request = true;
    if (!ended) {
        // Full without a blank line: the request line alone, or with the
        // headers, is over the limit.
        r.status = memchr(c->in, '\n', c->n_in) ? 431 : 414;
    } else {
        c->in[c->n_in < sizeof c->in ? c->n_in : sizeof c->in - 1] = '\0';
        s_answer(self, c, &r);
    }
    s_build(c, &r);
    s_write(self, c, now_ms);
}

// The end of the header block in c->in, or NULL.
static const char *
s_header_end(const s_conn_t *c)
{
    for (size_t i = 0; i + 1 < c->n_in; i++) {
        if (c->in[i] == '\n' && (c->in[i + 1] == '\n' ||
            (c->in[i + 1] == '\r' && i + 2 < c->n_in &&
             c->in[i + 2] == '\n'))) {
            return c->in + i;
        }
    }
    return NULL;
}

// Reads what is there: into the request buffer until the request is in,
// into a scratch buffer after that (a quiet source must be drained, or
// the loop would poll it busily).
static void
s_drain(s_conn_t *c)
{
    char scratch[4096];
    for (;;) {
        bool into_in = !c->got_request && c->n_in < sizeof c->in;
        char *p = into_in ? c->in + c->n_in : scratch;
        size_t room = into_in ? sizeof c->in - c->n_in : sizeof scratch;
        ssize_t n = recv(c->fd, p, room, MSG_DONTWAIT);
        if (n > 0) {
            c->n_in += into_in ? (size_t) n : 0;
            continue;
        }
        // A reset counts as the end: the client is gone either way.
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR)) {
            c->eof = true;
        }
        return;
    }
}

// A connection is readable.
static void
s_on_conn(loop_t *loop, void *arg)
{
    (void) loop;
    s_conn_t *c = arg;
    httpd_t *self = c->owner;
    s_drain(c);
    if (!c->got_request) {
        const char *end = s_header_end(c);
        if (end || c->n_in == sizeof c->in) {
            s_respond(self, c, end, clock_mono_ms());
            if (c->fd < 0) {
                return;
            }
        }
    }
    if (!c->eof) {
        return;
    }
    if (!c->got_request || c->sent == c->n_out) {
        s_close(self, c);     // gone before asking, or done
    } else if (c->polled) {
        // Its half-close stays readable: the rest goes by the retry timer.
        loop_remove_fd(self->loop, c->fd);
        c->polled = false;
    }
}

static s_conn_t *
s_free_slot(httpd_t *self)
{
    for (size_t i = 0; i < HTTPD_CONNS_MAX; i++) {
        if (self->conns[i].fd < 0) {
            return &self->conns[i];
        }
    }
    return NULL;
}

// Accepts every pending connection; past HTTPD_CONNS_MAX it closes them
// at once (the listening socket must be drained too).
static void
s_on_accept(loop_t *loop, void *arg)
{
    httpd_t *self = arg;
    int fd;
    while ((fd = accept4(self->fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        s_conn_t *c = s_free_slot(self);
        if (!c) {
            log_debug(LOG, "metrics: %d connections open; one refused",
                      HTTPD_CONNS_MAX);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->deadline_ms = clock_mono_ms() + HTTPD_TIMEOUT_MS;
        c->polled = true;
        loop_add_fd(loop, fd, LOOP_QUIET, s_on_conn, c);
    }
}

static int64_t
s_conn_next(const s_conn_t *c)
{
    bool pending = c->got_request && c->sent < c->n_out;
    return pending && c->retry_ms < c->deadline_ms ? c->retry_ms
                                                   : c->deadline_ms;
}

static int64_t
s_next(void *arg)
{
    httpd_t *self = arg;
    int64_t next = -1;
    for (size_t i = 0; i < HTTPD_CONNS_MAX; i++) {
        const s_conn_t *c = &self->conns[i];
        if (c->fd >= 0 && (next < 0 || s_conn_next(c) < next)) {
            next = s_conn_next(c);
        }
    }
    return next;
}

// Closes connections past their time; retries refused responses.
static void
s_fire(loop_t *loop, void *arg, int64_t now_ms)
{
    (void) loop;
    httpd_t *self = arg;
    for (size_t i = 0; i < HTTPD_CONNS_MAX; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->fd < 0) {
            continue;
        }
        if (now_ms >= c->deadline_ms) {
            s_close(self, c);
        } else if (c->got_request && c->sent < c->n_out &&
                   now_ms >= c->retry_ms) {
            s_write(self, c, now_ms);
        }
    }
}

int
httpd_open(httpd_t **out, loop_t *loop, const char *addr, httpd_get_fn *get,
           void *arg, char *err, size_t errlen)
{
    assert(out && loop && addr && get);
    httpd_t *self = xcalloc(1, sizeof *self);
    self->fd = -1;
    self->loop = loop;
    self->get = get;
    self->arg = arg;
    for (size_t i = 0; i < HTTPD_CONNS_MAX; i++) {
        self->conns[i].owner = self;
        self->conns[i].fd = -1;
    }
    if (s_listen(self, addr, err, errlen) < 0) {
        if (self->fd >= 0) {
            close(self->fd);
        }
        free(self);
        return -1;
    }
    s_name(self);
    loop_add_fd(loop, self->fd, LOOP_QUIET, s_on_accept, self);
    self->deadline_id = loop_add_deadline(loop, s_next, s_fire, self);
    *out = self;
    return 0;
}

void
httpd_destroy(httpd_t **self_p)
{
    httpd_t *self = *self_p;
    if (!self) {
        return;
    }
    for (size_t i = 0; i < HTTPD_CONNS_MAX; i++) {
        if (self->conns[i].fd >= 0) {
            s_close(self, &self->conns[i]);
        }
    }
    loop_remove_deadline(self->loop, self->deadline_id);
    loop_remove_fd(self->loop, self->fd);
    close(self->fd);
    free(self);
    *self_p = NULL;
}

const char *
httpd_address(const httpd_t *self)
{
    return self->address;
}
