// fake_llm: a real HTTP server process that answers the chat-completions
// protocol from a script, for tests of the model client and of `plan`.
//
//   fake_llm SCRIPT LOG
//
// Listens on 127.0.0.1:0 and prints "READY <port>" on stdout.  SCRIPT is a
// JSON array of steps, answered in order, one per request to
// POST /v1/chat/completions (or /chat/completions), or to /v1/messages
// (Anthropic's format: "content" then makes a message, and
// "finish_reason" is its stop_reason):
//   {"status": 200,                 HTTP status (default 200)
//    "headers": {"Retry-After": "1"},
//    "body": "...",                 the raw reply body, or
//    "content": "...",              a chat completion carrying this text
//    "finish_reason": "stop",       for "content" (default "stop")
//    "prompt_tokens": 11, "completion_tokens": 7,   for "content"
//    "delay_ms": 0,                 wait before answering
//    "hang": false,                 never answer (until the client leaves)
//    "close": false,                close half-way through the body
//    "drop": false,                 close without answering at all
//    "expect_contains": ["..."],    the request body must hold each
//    "expect_headers": ["..."],     the request head must hold each
//    "reject_headers": ["..."]}     and none of these (case-insensitive)
// Every request body is appended to LOG as one line, and to LOG.flight how
// many requests were in flight (arrived, connection not closed yet) as it
// arrived, this one included: a test of a concurrency limit reads the max;
// and to LOG.at when it arrived (monotonic ms), for a rate limit's test.
// Anything unexpected (another method or path, no step left, an
// expectation not met) gets a 500 naming it, and a line on stderr.  One thread, poll(); each connection
// serves one request and is closed.
#include "common/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_CONNS 64
#define S_MAX_REQUEST (8 * 1024 * 1024)

typedef enum { S_READING, S_WAITING, S_WRITING, S_HANGING } s_state_t;

typedef struct {
    int fd;                 // -1: free slot
    s_state_t state;
    char *in;               // request bytes so far
    size_t in_len;
    char *out;              // response bytes
    size_t out_len, out_off;
    bool close_early;       // close once out_len bytes went (a cut body)
    int64_t due_ms;         // S_WAITING: when to start writing
    bool counted;           // a request arrived: counts in s_in_flight
} s_conn_t;

static const jnode_t *s_steps;
static size_t s_next_step;
static FILE *s_log;
static FILE *s_flight;
static FILE *s_at;
static int s_in_flight;
static volatile sig_atomic_t s_stop;

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_on_term(int sig)
{
    (void) sig;
    s_stop = 1;
}

static char *
s_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
s_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        abort();
    }
    va_end(ap);
    return s;
}

// A response with status, extra header lines (each ending "\r\n") and body.
// cut: announce the whole body but send only half of it.
static void
s_respond(s_conn_t *c, int status, const char *extra, const char *body,
          bool cut)
{
    size_t len = strlen(body);
    char *head = s_fmt("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                       status, len, extra);
    free(c->out);
    c->out = s_fmt("%s%.*s", head, (int) (cut ? len / 2 : len), body);
    c->out_len = strlen(c->out);
    c->out_off = 0;
    c->close_early = cut;
    free(head);
}

static void
s_refuse(s_conn_t *c, const char *why)
{
    fprintf(stderr, "fake_llm: %s\n", why);
    char *q = json_quote(why);
    char *body = s_fmt("{\"error\": {\"message\": %s}}", q);
    s_respond(c, 500, "", body, false);
    c->state = S_WRITING;
    free(body);
    free(q);
}

static void
s_usage(jnode_t *root, const jnode_t *step, const char *in, const char *out)
{
    jnode_t *usage = json_obj_new();
    const jnode_t *pt = json_obj_get(step, "prompt_tokens");
    const jnode_t *ct = json_obj_get(step, "completion_tokens");
    json_obj_set_int(usage, in, pt ? json_int(pt) : 11);
    json_obj_set_int(usage, out, ct ? json_int(ct) : 7);
    json_obj_set_node(root, "usage", &usage);
}

// An Anthropic message carrying the step's content.
static char *
s_message(const jnode_t *step)
{
    const char *stop = json_str(json_obj_get(step, "finish_reason"));
    jnode_t *root = json_obj_new(), *content = json_arr_new();
    jnode_t *block = json_obj_new();
    json_obj_set_str(root, "id", "msg_fake");
    json_obj_set_str(root, "type", "message");
    json_obj_set_str(root, "role", "assistant");
    json_obj_set_str(block, "type", "text");
    json_obj_set_str(block, "text", json_str(json_obj_get(step, "content")));
    json_arr_push_node(content, &block);
    json_obj_set_node(root, "content", &content);
    json_obj_set_str(root, "stop_reason", stop ? stop : "end_turn");
    s_usage(root, step, "input_tokens", "output_tokens");
    char *text = json_dump(root, false);
    json_destroy(&root);
    return text;
}

static char *
s_completion(const jnode_t *step)
{
    const char *finish = json_str(json_obj_get(step, "finish_reason"));
    jnode_t *root = json_obj_new(), *choices = json_arr_new();
    jnode_t *choice = json_obj_new(), *msg = json_obj_new();
    json_obj_set_str(root, "id", "chatcmpl-fake");
    json_obj_set_str(root, "object", "chat.completion");
    json_obj_set_str(msg, "role", "assistant");
    json_obj_set_str(msg, "content",
                     json_str(json_obj_get(step, "content")));
    json_obj_set_int(choice, "index", 0);
    json_obj_set_node(choice, "message", &msg);
    json_obj_set_str(choice, "finish_reason", finish ? finish : "stop");
    json_arr_push_node(choices, &choice);
    json_obj_set_node(root, "choices", &choices);
    s_usage(root, step, "prompt_tokens", "completion_tokens");
    char *text = json_dump(root, false);
    json_destroy(&root);
    return text;
}

// Each string of the step's list `key` must occur in hay; else the first
// one missing (borrowed).
static const char *
s_missing(const jnode_t *step, const char *key, const char *hay)
{
    const jnode_t *list = json_obj_get(step, key);
    for (size_t i = 0; i < json_arr_size(list); i++) {
        const char *want = json_str(json_arr_get(list, i));
        if (want && !strstr(hay, want)) {
            return want;
        }
    }
    return NULL;
}

// The first string of the step's list `key` that occurs in hay, ignoring
// case (borrowed); NULL when none does.
static const char *
s_present(const jnode_t *step, const char *key, const char *hay)
{
    const jnode_t *list = json_obj_get(step, key);
    for (size_t i = 0; i < json_arr_size(list); i++) {
        const char *bad = json_str(json_arr_get(list, i));
        if (bad && strcasestr(hay, bad)) {
            return bad;
        }
    }
    return NULL;
}

static void
s_answer_step(s_conn_t *c, const jnode_t *step, bool anthropic)
{
    const jnode_t *st = json_obj_get(step, "status");
    int status = st ? (int) json_int(st) : 200;
    char *extra = s_fmt("%s", "");
    json_iter_t it = json_obj_iter(json_obj_get(step, "headers"));
    const char *k;
    const jnode_t *v;
    while (json_obj_next(&it, &k, &v)) {
        char *more = s_fmt("%s%s: %s\r\n", extra, k, json_str(v));
        free(extra);
        extra = more;
    }
    char *body = json_obj_get(step, "content")
                     ? (anthropic ? s_message(step) : s_completion(step))
                     : s_fmt("%s", json_str(json_obj_get(step, "body"))
                                       ? json_str(json_obj_get(step, "body"))
                                       : "");
    s_respond(c, status, extra, body, json_bool(json_obj_get(step, "close")));
    if (json_bool(json_obj_get(step, "drop"))) {
        c->out_len = 0;  // s_on_writable then closes at once
    }
    free(body);
    free(extra);
    c->state = json_bool(json_obj_get(step, "hang")) ? S_HANGING : S_WAITING;
    c->due_ms = s_now_ms() + json_int(json_obj_get(step, "delay_ms"));
}

// A whole request arrived: head (NUL-terminated at the blank line) and body.
static void
s_on_request(s_conn_t *c, char *head, const char *body, size_t body_len)
{
    size_t n = ++s_next_step;
    fprintf(s_log, "%.*s\n", (int) body_len, body);
    fflush(s_log);
    c->counted = true;
    fprintf(s_flight, "%d\n", ++s_in_flight);
    fflush(s_flight);
    fprintf(s_at, "%lld\n", (long long) s_now_ms());
    fflush(s_at);
    char method[16] = "", path[256] = "";
    sscanf(head, "%15s %255s", method, path);
    path[strcspn(path, "?")] = '\0';
    const jnode_t *step = json_arr_get(s_steps, n - 1);
    char *why = NULL;
    const char *miss;
    bool anthropic = strcmp(path, "/v1/messages") == 0;
    if (strcmp(method, "POST") != 0 ||
        (strcmp(path, "/v1/chat/completions") != 0 &&
         strcmp(path, "/chat/completions") != 0 && !anthropic)) {
        why = s_fmt("request %zu: unexpected %s %s", n, method, path);
    } else if (!step) {
        why = s_fmt("request %zu: no step left in the script", n);
    } else if ((miss = s_missing(step, "expect_contains", body))) {
        why = s_fmt("request %zu: body lacks '%s'", n, miss);
    } else if ((miss = s_missing(step, "expect_headers", head))) {
        why = s_fmt("request %zu: headers lack '%s'", n, miss);
    } else if ((miss = s_present(step, "reject_headers", head))) {
        why = s_fmt("request %zu: headers hold '%s'", n, miss);
    }
    if (why) {
        s_refuse(c, why);
        free(why);
        return;
    }
    s_answer_step(c, step, anthropic);
}

// Parses what came so far; answers once the whole body is in.
static void
s_try_request(s_conn_t *c)
{
    char *end = c->in ? strstr(c->in, "\r\n\r\n") : NULL;
    if (!end) {
        return;
    }
    size_t head_len = (size_t) (end - c->in) + 4;
    size_t want = 0;
    for (const char *p = strstr(c->in, "\r\n"); p && p < end;
         p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, "content-length:", 15) == 0) {
            want = strtoul(p + 15, NULL, 10);
        }
    }
    if (want > S_MAX_REQUEST) {
        s_refuse(c, "request too large");
        return;
    }
    if (c->in_len < head_len + want) {
        return;
    }
    *end = '\0';
    char *body = strndup(c->in + head_len, want);
    s_on_request(c, c->in, body, want);
    free(body);
}

static void
s_conn_close(s_conn_t *c)
{
    close(c->fd);
    s_in_flight -= c->counted;
    free(c->in);
    free(c->out);
    *c = (s_conn_t){.fd = -1};
}

static void
s_on_readable(s_conn_t *c)
{
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n <= 0) {
        s_conn_close(c);
        return;
    }
    if (c->state != S_READING) {
        return;  // bytes after the request: ignored
    }
    if (c->in_len + (size_t) n > S_MAX_REQUEST) {
        s_refuse(c, "request too large");
        return;
    }
    c->in = realloc(c->in, c->in_len + (size_t) n + 1);
    memcpy(c->in + c->in_len, buf, (size_t) n);
    c->in_len += (size_t) n;
    c->in[c->in_len] = '\0';
    s_try_request(c);
}

static void
s_on_writable(s_conn_t *c)
{
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) {
        s_conn_close(c);
        return;
    }
    c->out_off += (size_t) n;
    if (c->out_off == c->out_len) {
        // Both a cut body and a whole one end the connection here; the
        // client sees the cut one as truncated (Content-Length unmet).
        shutdown(c->fd, SHUT_WR);
        s_conn_close(c);
    }
}

static int
s_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) < 0 ||
        listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *) &a, &alen) < 0) {
        perror("fake_llm: listen");
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void
s_accept(int lfd, s_conn_t *conns)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        return;
    }
    for (int i = 0; i < S_MAX_CONNS; i++) {
        if (conns[i].fd < 0) {
            conns[i] = (s_conn_t){.fd = fd, .state = S_READING};
            return;
        }
    }
    close(fd);
}

// One turn of the loop: poll, then serve what is ready.
static void
s_turn(int lfd, s_conn_t *conns)
{
    struct pollfd p[S_MAX_CONNS + 1] = {{.fd = lfd, .events = POLLIN}};
    int64_t now = s_now_ms(), timeout = 1000;
    for (int i = 0; i < S_MAX_CONNS; i++) {
        s_conn_t *c = &conns[i];
        if (c->fd >= 0 && c->state == S_WAITING && c->due_ms <= now) {
            c->state = S_WRITING;
        }
        if (c->fd >= 0 && c->state == S_WAITING && c->due_ms - now < timeout) {
            timeout = c->due_ms - now;
        }
        p[i + 1].fd = c->fd;
        p[i + 1].events = c->fd < 0            ? 0
                          : c->state == S_WRITING ? POLLOUT
                                                  : POLLIN;
    }
    if (poll(p, S_MAX_CONNS + 1, (int) timeout) <= 0) {
        return;
    }
    if (p[0].revents & POLLIN) {
        s_accept(lfd, conns);
    }
    for (int i = 0; i < S_MAX_CONNS; i++) {
        if (conns[i].fd < 0 || p[i + 1].fd != conns[i].fd) {
            continue;
        }
        if (p[i + 1].revents & POLLOUT) {
            s_on_writable(&conns[i]);
        } else if (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) {
            s_on_readable(&conns[i]);
        }
    }
}

static jnode_t *
s_load_script(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fake_llm: cannot read '%s'\n", path);
        return NULL;
    }
    char *buf = malloc(S_MAX_REQUEST);
    size_t n = fread(buf, 1, S_MAX_REQUEST, f);
    fclose(f);
    char err[160];
    jnode_t *root = json_parse(buf, n, err, sizeof err);
    free(buf);
    if (!root || json_type_of(root) != JSON_T_ARRAY) {
        fprintf(stderr, "fake_llm: script '%s' is not a JSON array: %s\n",
                path, root ? "" : err);
        json_destroy(&root);
    }
    return root;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fake_llm SCRIPT LOG\n");
        return 64;
    }
    jnode_t *script = s_load_script(argv[1]);
    s_log = fopen(argv[2], "a");
    char flight[4096];
    snprintf(flight, sizeof flight, "%s.flight", argv[2]);
    s_flight = fopen(flight, "a");
    snprintf(flight, sizeof flight, "%s.at", argv[2]);
    s_at = fopen(flight, "a");
    int port = 0, lfd = script && s_log && s_flight && s_at ? s_listen(&port)
                                                            : -1;
    if (lfd < 0) {
        return 1;
    }
    s_steps = script;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, s_on_term);
    signal(SIGINT, s_on_term);
    // A test that crashes leaves no server behind on a shared machine.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) {
        s_stop = 1;
    }
    static s_conn_t conns[S_MAX_CONNS];
    for (int i = 0; i < S_MAX_CONNS; i++) {
        conns[i].fd = -1;
    }
    printf("READY %d\n", port);
    fflush(stdout);
    while (!s_stop) {
        s_turn(lfd, conns);
    }
    for (int i = 0; i < S_MAX_CONNS; i++) {
        if (conns[i].fd >= 0) {
            s_conn_close(&conns[i]);
        }
    }
    close(lfd);
    fclose(s_log);
    fclose(s_flight);
    fclose(s_at);
    json_destroy(&script);
    return 0;
}
