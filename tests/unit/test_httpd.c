// Unit tests for broker/httpd.c on a real loop and loopback sockets: a GET
// answered by the handler, 404/405, a request split over several writes,
// a response far larger than the socket buffers sent to a slow reader
// without blocking the loop, a silent client and a reader that never reads
// cut off at the timeout, and the connection limit.
#include "broker/httpd.h"
#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define S_BIG (8u << 20)   // bytes of /big: far over any socket buffer

static void
s_get(void *arg, const char *path, httpd_reply_t *r)
{
    int *calls = arg;
    (*calls)++;
    if (strcmp(path, "/hello") == 0) {
        r->status = 200;
        r->body = xstrdup("hi\n");
        r->len = 3;
    } else if (strcmp(path, "/big") == 0) {
        r->status = 200;
        r->body = xmalloc(S_BIG);
        memset(r->body, 'x', S_BIG);
        r->len = S_BIG;
    }
}

typedef struct {
    loop_t *loop;
    httpd_t *h;
    int port;
    int calls;
} s_srv_t;

static bool
s_start(s_srv_t *s)
{
    memset(s, 0, sizeof *s);
    s->loop = loop_new();
    char err[256];
    if (httpd_open(&s->h, s->loop, "127.0.0.1:0", s_get, &s->calls, err,
                   sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return false;
    }
    s->port = atoi(strrchr(httpd_address(s->h), ':') + 1);
    return s->port > 0;
}

static void
s_stop(s_srv_t *s)
{
    httpd_destroy(&s->h);
    CHECK(s->h == NULL);
    httpd_destroy(&s->h);
    loop_destroy(&s->loop);
}

static int
s_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *) &a, sizeof a);  // EINPROGRESS
    return fd;
}

// Runs the loop for ms, each pass capped at 10 ms; returns the longest
// pass (a pass that blocks would show here).
static int64_t
s_spin(s_srv_t *s, int ms)
{
    int64_t end = clock_mono_ms() + ms, worst = 0;
    while (clock_mono_ms() < end) {
        int64_t t0 = clock_mono_ms();
        loop_run_once(s->loop, 10);
        int64_t took = clock_mono_ms() - t0;
        worst = took > worst ? took : worst;
    }
    return worst;
}

// Reads what is there without waiting; appends to buf.  Returns -1 at
// EOF, else bytes read.
static ssize_t
s_take(int fd, char *buf, size_t cap, size_t *len)
{
    ssize_t total = 0;
    for (;;) {
        if (*len + 1 >= cap) {
            return total;
        }
        ssize_t n = recv(fd, buf + *len, cap - *len - 1, MSG_DONTWAIT);
        if (n == 0) {
            return -1;
        }
        if (n < 0) {
            return total;
        }
        *len += (size_t) n;
        buf[*len] = '\0';
        total += n;
    }
}

// Spins the loop and reads fd until EOF or ms pass.  Returns whether EOF
// came; *worst (if not NULL) gets the longest loop pass.
static bool
s_read_eof(s_srv_t *s, int fd, char *buf, size_t cap, size_t *len, int ms,
           int64_t *worst)
{
    for (int64_t end = clock_mono_ms() + ms; clock_mono_ms() < end;) {
        int64_t w = s_spin(s, 5);
        if (worst && w > *worst) {
            *worst = w;
        }
        if (s_take(fd, buf, cap, len) < 0) {
            return true;
        }
    }
    return false;
}

// Sends request, spins the loop until the response ends (EOF).
static char *
s_ask(s_srv_t *s, const char *request)
{
    int fd = s_connect(s->port);
    s_spin(s, 20);
    CHECK_INT(send(fd, request, strlen(request), MSG_NOSIGNAL),
              strlen(request));
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    CHECK(s_read_eof(s, fd, buf, cap, &len, 5000, NULL));
    close(fd);
    return buf;
}

static void
test_get_and_refusals(void)
{
    s_srv_t s;
    REQUIRE(s_start(&s));
    char *r = s_ask(&s, "GET /hello?x HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK_HAS(r, "HTTP/1.1 200 OK\r\n");
    CHECK_HAS(r, "Content-Length: 3\r\n");
    CHECK_HAS(r, "Connection: close\r\n\r\nhi\n");
    free(r);
    r = s_ask(&s, "GET /other HTTP/1.1\r\n\r\n");
    CHECK_HAS(r, "HTTP/1.1 404 Not Found\r\n");
    free(r);
    r = s_ask(&s, "DELETE /hello HTTP/1.1\r\n\r\n");
    CHECK_HAS(r, "HTTP/1.1 405 Method Not Allowed\r\n");
    CHECK_HAS(r, "Allow: GET\r\n");
    free(r);
    r = s_ask(&s, "GET /hello\n\n");
    CHECK_HAS(r, "HTTP/1.1 400 Bad Request\r\n");
    free(r);
    CHECK_INT(s.calls, 2);  // 405 and 400 never reach the handler
    s_stop(&s);
}

// A request that arrives a few bytes at a time is answered once whole.
static void
test_split_request(void)
{
    s_srv_t s;
    REQUIRE(s_start(&s));
    int fd = s_connect(s.port);
    const char *parts[] = {"GE", "T /hel", "lo HTTP/1.1\r\n", "Host: a\r\n",
                           "\r\n"};
    for (size_t i = 0; i < 5; i++) {
        s_spin(&s, 20);
        CHECK_INT(s.calls, 0);
        send(fd, parts[i], strlen(parts[i]), MSG_NOSIGNAL);
    }
    char buf[4096] = "";
    size_t len = 0;
    CHECK(s_read_eof(&s, fd, buf, sizeof buf, &len, 5000, NULL));
    CHECK_HAS(buf, "\r\n\r\nhi\n");
    close(fd);
    s_stop(&s);
}

// 8 MiB to a client that reads slowly: the loop never blocks on it, and
// all of it arrives.
static void
test_big_response_slow_reader(void)
{
    s_srv_t s;
    REQUIRE(s_start(&s));
    int fd = s_connect(s.port);
    s_spin(&s, 20);
    send(fd, "GET /big HTTP/1.1\r\n\r\n", 21, MSG_NOSIGNAL);
    size_t cap = S_BIG + 4096, len = 0;
    char *buf = malloc(cap);
    int64_t worst = 0;
    CHECK(s_read_eof(&s, fd, buf, cap, &len, HTTPD_TIMEOUT_MS - 500,
                     &worst));
    CHECK(worst < 1000);  // a pass is capped at 10 ms; slack for valgrind
    CHECK(len > S_BIG);
    close(fd);
    free(buf);
    s_stop(&s);
}

// A client that says nothing, and one that asks for /big and never reads,
// are both closed at the timeout; the loop stays responsive.
static void
test_timeouts(void)
{
    s_srv_t s;
    REQUIRE(s_start(&s));
    int silent = s_connect(s.port);
    int stuck = s_connect(s.port);
    s_spin(&s, 20);
    send(stuck, "GET /big HTTP/1.1\r\n\r\n", 21, MSG_NOSIGNAL);
    int64_t worst = s_spin(&s, HTTPD_TIMEOUT_MS + 500);
    CHECK(worst < 1000);  // a pass is capped at 10 ms; slack for valgrind
    char buf[64];
    size_t len = 0;
    CHECK_INT(s_take(silent, buf, sizeof buf, &len), -1);  // EOF
    // What it was sent before the cut, then EOF.
    char *big = malloc(S_BIG + 4096);
    len = 0;
    ssize_t got = 0;
    for (int64_t end = clock_mono_ms() + 5000;
         got >= 0 && clock_mono_ms() < end; usleep(1000)) {
        got = s_take(stuck, big, S_BIG + 4096, &len);
    }
    CHECK_INT(got, -1);
    free(big);
    close(silent);
    close(stuck);
    s_stop(&s);
}

// Past HTTPD_CONNS_MAX, a connection is closed at once; the others work.
static void
test_connection_limit(void)
{
    s_srv_t s;
    REQUIRE(s_start(&s));
    int fds[HTTPD_CONNS_MAX + 1];
    for (int i = 0; i <= HTTPD_CONNS_MAX; i++) {
        fds[i] = s_connect(s.port);
        s_spin(&s, 5);
    }
    s_spin(&s, 50);
    char buf[64];
    size_t len = 0;
    CHECK_INT(s_take(fds[HTTPD_CONNS_MAX], buf, sizeof buf, &len), -1);
    len = 0;
    CHECK_INT(s_take(fds[0], buf, sizeof buf, &len), 0);  // still open
    for (int i = 0; i <= HTTPD_CONNS_MAX; i++) {
        close(fds[i]);
    }
    s_spin(&s, 50);
    char *r = s_ask(&s, "GET /hello HTTP/1.1\r\n\r\n");
    CHECK_HAS(r, "200 OK");
    free(r);
    s_stop(&s);
}

static void
test_check_address(void)
{
    char err[256];
    CHECK_INT(httpd_check("127.0.0.1:9464", err, sizeof err), 0);
    CHECK_INT(httpd_check("[::1]:0", err, sizeof err), 0);
    CHECK_INT(httpd_check("localhost:80", err, sizeof err), 0);
    CHECK_INT(httpd_check("9464", err, sizeof err), -1);
    CHECK_HAS(err, "'9464' is not HOST:PORT");
    CHECK_INT(httpd_check(":9464", err, sizeof err), -1);
    CHECK_INT(httpd_check("h:", err, sizeof err), -1);
    CHECK_INT(httpd_check("h:70000", err, sizeof err), -1);
    CHECK_INT(httpd_check("h:12x", err, sizeof err), -1);
}

static const t_case_t t_cases[] = {
    T(test_get_and_refusals),
    T(test_split_request),
    T(test_big_response_slow_reader),
    T(test_timeouts),
    T(test_connection_limit),
    T(test_check_address),
    {0},
};

T_MAIN(t_cases)
