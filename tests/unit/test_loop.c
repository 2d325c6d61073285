// Unit tests for broker/loop.c: readable sources (fds and ZeroMQ sockets),
// quiet sources, deadline sources, removal from callbacks, many sources,
// and a small TCP server added from outside with registration calls only.
#include "broker/loop.h"
#include "common/clock.h"
#include "tests/harness/t.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <zmq.h>

// A readable pipe end and what the loop did with it.
typedef struct {
    int fds[2];
    int calls;
    loop_t *loop;
    int remove_fd;          // a callback removes this fd (or -1)
} s_pipe_t;

static void
s_pipe_open(s_pipe_t *p)
{
    memset(p, 0, sizeof *p);
    p->remove_fd = -1;
    if (pipe(p->fds) < 0) {
        abort();
    }
    fcntl(p->fds[0], F_SETFL, O_NONBLOCK);
}

static void
s_pipe_close(s_pipe_t *p)
{
    close(p->fds[0]);
    close(p->fds[1]);
}

static void
s_poke(s_pipe_t *p)
{
    CHECK_INT(write(p->fds[1], "x", 1), 1);
}

static void
s_on_pipe(loop_t *loop, void *arg)
{
    s_pipe_t *p = arg;
    char buf[64];
    while (read(p->fds[0], buf, sizeof buf) > 0) {
    }
    p->calls++;
    if (p->remove_fd >= 0) {
        CHECK_INT(loop_remove_fd(loop, p->remove_fd), 0);
    }
}

static void
test_fd_dispatch(void)
{
    loop_t *loop = loop_new();
    s_pipe_t a, b;
    s_pipe_open(&a);
    s_pipe_open(&b);
    loop_add_fd(loop, a.fds[0], 0, s_on_pipe, &a);
    loop_add_fd(loop, b.fds[0], 0, s_on_pipe, &b);
    s_poke(&b);
    int64_t start = clock_mono_ms();
    CHECK_INT(loop_run_once(loop, 10000), 10000);
    CHECK(clock_mono_ms() - start < 5000);
    CHECK_INT(a.calls, 0);
    CHECK_INT(b.calls, 1);
    // Nothing readable: the cap ends the wait.
    CHECK_INT(loop_run_once(loop, 0), 0);
    CHECK_INT(b.calls, 1);
    CHECK_INT(loop_remove_fd(loop, a.fds[0]), 0);
    CHECK_INT(loop_remove_fd(loop, a.fds[0]), -1);
    s_poke(&a);
    loop_run_once(loop, 0);
    CHECK_INT(a.calls, 0);
    loop_destroy(&loop);
    CHECK(loop == NULL);
    loop_destroy(&loop);
    s_pipe_close(&a);
    s_pipe_close(&b);
}

static int64_t
s_fixed(void *arg)
{
    return *(int64_t *) arg;
}

// A quiet source (ZAP) is served but the wait goes on to the same
// deadline, no longer.
static void
test_quiet_source(void)
{
    loop_t *loop = loop_new();
    s_pipe_t q;
    s_pipe_open(&q);
    loop_add_fd(loop, q.fds[0], LOOP_QUIET, s_on_pipe, &q);
    int64_t deadline = clock_mono_ms() + 300;
    loop_add_deadline(loop, s_fixed, NULL, &deadline);
    CHECK_INT(loop_next_deadline_ms(loop), deadline);
    s_poke(&q);
    int64_t waited = loop_run_once(loop, -1);
    int64_t end = clock_mono_ms();
    CHECK_INT(q.calls, 1);
    CHECK(waited > 0 && waited <= 300);
    CHECK(end >= deadline);
    CHECK(end < deadline + 3000);
    loop_destroy(&loop);
    s_pipe_close(&q);
}

// A deadline source that fires: records its order, and may remove
// another source.
typedef struct {
    int64_t deadline;       // -1 once fired
    int *order, *n_order;
    int id, remove_id;
    loop_t *loop;
} s_timer_t;

static int64_t
s_timer_next(void *arg)
{
    return ((s_timer_t *) arg)->deadline;
}

static void
s_timer_fire(loop_t *loop, void *arg, int64_t now_ms)
{
    s_timer_t *t = arg;
    CHECK(now_ms >= t->deadline);
    t->order[(*t->n_order)++] = t->id;
    t->deadline = -1;
    if (t->remove_id > 0) {
        CHECK_INT(loop_remove_deadline(loop, t->remove_id), 0);
    }
}

static void
test_deadline_order(void)
{
    loop_t *loop = loop_new();
    int order[8], n = 0;
    int64_t now = clock_mono_ms();
    int64_t ago[] = {10, 30, 20, -100000};
    s_timer_t t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (s_timer_t){now - ago[i], order, &n, 0, 0, loop};
        t[i].id = loop_add_deadline(loop, s_timer_next, s_timer_fire, &t[i]);
        CHECK(t[i].id > 0);
    }
    int64_t none = -1;
    loop_add_deadline(loop, s_fixed, NULL, &none);
    CHECK_INT(loop_next_deadline_ms(loop), now - 30);
    CHECK_INT(loop_run_once(loop, 5000), 0);
    // Due ones earliest first; the one in the future waits.
    CHECK_INT(n, 3);
    CHECK_INT(order[0], t[1].id);
    CHECK_INT(order[1], t[2].id);
    CHECK_INT(order[2], t[0].id);
    CHECK_INT(loop_next_deadline_ms(loop), now + 100000);
    CHECK_INT(loop_remove_deadline(loop, t[3].id), 0);
    CHECK_INT(loop_remove_deadline(loop, t[3].id), -1);
    CHECK_INT(loop_next_deadline_ms(loop), -1);
    loop_destroy(&loop);
}

static void
test_timer_on_time(void)
{
    loop_t *loop = loop_new();
    int order[2], n = 0;
    int64_t start = clock_mono_ms();
    s_timer_t t = {start + 150, order, &n, 0, 0, loop};
    t.id = loop_add_deadline(loop, s_timer_next, s_timer_fire, &t);
    // The loop may wake a millisecond early (poll rounds): a few passes.
    for (int i = 0; i < 10 && n == 0; i++) {
        loop_run_once(loop, -1);
    }
    int64_t took = clock_mono_ms() - start;
    CHECK_INT(n, 1);
    CHECK(took >= 150);
    CHECK(took < 150 + 2000);  // a loaded machine: generous
    loop_destroy(&loop);
}

static void
test_remove_during_dispatch(void)
{
    loop_t *loop = loop_new();
    s_pipe_t a, b, c;
    s_pipe_open(&a);
    s_pipe_open(&b);
    s_pipe_open(&c);
    a.remove_fd = b.fds[0];     // a removes b before b's turn
    c.remove_fd = c.fds[0];     // c removes itself
    loop_add_fd(loop, a.fds[0], 0, s_on_pipe, &a);
    loop_add_fd(loop, b.fds[0], 0, s_on_pipe, &b);
    loop_add_fd(loop, c.fds[0], 0, s_on_pipe, &c);
    s_poke(&a);
    s_poke(&b);
    s_poke(&c);
    loop_run_once(loop, 1000);
    CHECK_INT(a.calls, 1);
    CHECK_INT(b.calls, 0);
    CHECK_INT(c.calls, 1);
    // Both gone, and b can be closed and re-added as a new source.
    CHECK_INT(loop_remove_fd(loop, b.fds[0]), -1);
    CHECK_INT(loop_remove_fd(loop, c.fds[0]), -1);
    s_poke(&c);
    a.remove_fd = -1;
    loop_run_once(loop, 0);
    CHECK_INT(c.calls, 1);
    loop_add_fd(loop, b.fds[0], 0, s_on_pipe, &b);
    loop_run_once(loop, 1000);
    CHECK_INT(b.calls, 1);
    // A timer removes a due timer that comes after it.
    int order[4], n = 0;
    int64_t now = clock_mono_ms();
    s_timer_t t1 = {now - 20, order, &n, 0, 0, loop};
    s_timer_t t2 = {now - 10, order, &n, 0, 0, loop};
    t1.id = loop_add_deadline(loop, s_timer_next, s_timer_fire, &t1);
    t2.id = loop_add_deadline(loop, s_timer_next, s_timer_fire, &t2);
    t1.remove_id = t2.id;
    loop_run_once(loop, 0);
    CHECK_INT(n, 1);
    CHECK_INT(order[0], t1.id);
    CHECK_INT(loop_remove_deadline(loop, t2.id), -1);
    loop_destroy(&loop);
    s_pipe_close(&a);
    s_pipe_close(&b);
    s_pipe_close(&c);
}

#define S_MANY 200

static void
test_many_sources(void)
{
    loop_t *loop = loop_new();
    static s_pipe_t p[S_MANY];
    for (int i = 0; i < S_MANY; i++) {
        s_pipe_open(&p[i]);
        loop_add_fd(loop, p[i].fds[0], 0, s_on_pipe, &p[i]);
    }
    for (int i = 0; i < S_MANY; i += 3) {
        s_poke(&p[i]);
    }
    loop_run_once(loop, 1000);
    for (int i = 0; i < S_MANY; i++) {
        CHECK_INT(p[i].calls, i % 3 == 0 ? 1 : 0);
    }
    // Remove every other one; the rest still dispatch.
    for (int i = 0; i < S_MANY; i += 2) {
        CHECK_INT(loop_remove_fd(loop, p[i].fds[0]), 0);
    }
    for (int i = 0; i < S_MANY; i++) {
        s_poke(&p[i]);
    }
    loop_run_once(loop, 1000);
    for (int i = 0; i < S_MANY; i++) {
        CHECK_INT(p[i].calls, (i % 3 == 0 ? 1 : 0) + (i % 2 ? 1 : 0));
        s_pipe_close(&p[i]);
    }
    // 1000 deadline sources fire in deadline order.
    enum { N = 1000 };
    static s_timer_t t[N];
    static int order[N];
    int n = 0;
    int64_t now = clock_mono_ms();
    for (int i = 0; i < N; i++) {
        t[i] = (s_timer_t){now - 1 - (i * 7919) % N, order, &n, 0, 0, loop};
        t[i].id = loop_add_deadline(loop, s_timer_next, s_timer_fire, &t[i]);
    }
    loop_run_once(loop, 0);
    CHECK_INT(n, N);
    for (int i = 1; i < n; i++) {
        CHECK(t[order[i - 1] - t[0].id].deadline == -1);
    }
    int64_t prev = INT64_MIN;
    for (int i = 0; i < n; i++) {
        int64_t dl = now - 1 - ((order[i] - t[0].id) * 7919) % N;
        CHECK(dl >= prev);
        prev = dl;
    }
    loop_destroy(&loop);
}

// ZeroMQ sockets are sources too; a socket without a callback only ends
// the wait (the broker's ROUTER: the turn reads it).
static void
s_on_zmq(loop_t *loop, void *arg)
{
    (void) loop;
    char buf[16];
    while (zmq_recv(arg, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
    }
}

static void
test_zmq_socket(void)
{
    void *ctx = zmq_ctx_new();
    void *rx = zmq_socket(ctx, ZMQ_PAIR), *tx = zmq_socket(ctx, ZMQ_PAIR);
    void *qrx = zmq_socket(ctx, ZMQ_PAIR), *qtx = zmq_socket(ctx, ZMQ_PAIR);
    CHECK_INT(zmq_bind(rx, "inproc://loop-a"), 0);
    CHECK_INT(zmq_connect(tx, "inproc://loop-a"), 0);
    CHECK_INT(zmq_bind(qrx, "inproc://loop-q"), 0);
    CHECK_INT(zmq_connect(qtx, "inproc://loop-q"), 0);
    loop_t *loop = loop_new();
    loop_add_socket(loop, rx, 0, NULL, NULL);
    loop_add_socket(loop, qrx, LOOP_QUIET, s_on_zmq, qrx);
    int64_t deadline = clock_mono_ms() + 200;
    loop_add_deadline(loop, s_fixed, NULL, &deadline);
    // Quiet traffic alone: served, and the wait lasts to the deadline.
    CHECK_INT(zmq_send(qtx, "zap", 3, 0), 3);
    loop_run_once(loop, -1);
    CHECK(clock_mono_ms() >= deadline);
    int events = 0;
    size_t len = sizeof events;
    zmq_getsockopt(qrx, ZMQ_EVENTS, &events, &len);
    CHECK_INT(events & ZMQ_POLLIN, 0);
    // The plain socket ends the wait at once and is left to its owner.
    deadline = clock_mono_ms() + 60000;
    CHECK_INT(zmq_send(tx, "hi", 2, 0), 2);
    int64_t start = clock_mono_ms();
    loop_run_once(loop, -1);
    CHECK(clock_mono_ms() - start < 30000);
    char buf[8];
    CHECK_INT(zmq_recv(rx, buf, sizeof buf, ZMQ_DONTWAIT), 2);
    CHECK_INT(loop_remove_socket(loop, rx), 0);
    CHECK_INT(loop_remove_socket(loop, rx), -1);
    loop_destroy(&loop);
    int zero = 0;
    void *socks[] = {rx, tx, qrx, qtx};
    for (int i = 0; i < 4; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(socks[i]);
    }
    zmq_ctx_term(ctx);
}

// What a future metrics listener needs, added from outside with
// registration calls alone: a listening TCP fd whose callback accepts
// and registers each connection, connection fds served and removed, and
// a periodic timer of its own.
typedef struct {
    int listen_fd;
    int served, ticks;
    int64_t next_tick;
} s_server_t;

static void
s_on_conn(loop_t *loop, void *arg)
{
    int fd = (int) (intptr_t) arg;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        CHECK_INT(write(fd, "ok\n", 3), 3);
    }
    loop_remove_fd(loop, fd);
    close(fd);
}

static void
s_on_listen(loop_t *loop, void *arg)
{
    s_server_t *s = arg;
    int fd;
    while ((fd = accept(s->listen_fd, NULL, NULL)) >= 0) {
        loop_add_fd(loop, fd, 0, s_on_conn, (void *) (intptr_t) fd);
        s->served++;
    }
}

static int64_t
s_tick_next(void *arg)
{
    return ((s_server_t *) arg)->next_tick;
}

static void
s_tick(loop_t *loop, void *arg, int64_t now_ms)
{
    (void) loop;
    s_server_t *s = arg;
    s->ticks++;
    s->next_tick = now_ms + 20;
}

static int
s_listen(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *addr;
    if (bind(fd, (struct sockaddr *) addr, len) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *) addr, &len) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void
test_listener_from_outside(void)
{
    struct sockaddr_in addr;
    s_server_t s = {s_listen(&addr), 0, 0, clock_mono_ms()};
    if (s.listen_fd < 0) {
        t_skip("cannot listen on 127.0.0.1");
        return;
    }
    loop_t *loop = loop_new();
    loop_add_fd(loop, s.listen_fd, 0, s_on_listen, &s);
    int tick = loop_add_deadline(loop, s_tick_next, s_tick, &s);
    enum { N = 20 };
    int ok = 0;
    for (int i = 0; i < N; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(connect(c, (struct sockaddr *) &addr, sizeof addr) == 0);
        CHECK_INT(write(c, "GET /metrics\n", 13), 13);
        char buf[8] = "";
        int64_t until = clock_mono_ms() + 10000;
        fcntl(c, F_SETFL, O_NONBLOCK);
        ssize_t n = -1;
        while (n <= 0 && clock_mono_ms() < until) {
            loop_run_once(loop, 50);
            n = read(c, buf, sizeof buf - 1);
        }
        ok += n == 3 && strcmp(buf, "ok\n") == 0;
        close(c);
    }
    CHECK_INT(ok, N);
    CHECK_INT(s.served, N);
    CHECK(s.ticks >= 1);
    CHECK_INT(loop_remove_deadline(loop, tick), 0);
    CHECK_INT(loop_remove_fd(loop, s.listen_fd), 0);
    loop_destroy(&loop);
    close(s.listen_fd);
}

static const t_case_t t_cases[] = {
    T(test_fd_dispatch),
    T(test_quiet_source),
    T(test_deadline_order),
    T(test_timer_on_time),
    T(test_remove_during_dispatch),
    T(test_many_sources),
    T(test_zmq_socket),
    T(test_listener_from_outside),
    {0},
};

T_MAIN(t_cases)
