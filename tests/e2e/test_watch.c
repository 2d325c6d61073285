// e2e watch: the dashboard driven in tmux at 80x24, as a person would.  It
// shows a running plan and its gate waiting, and `e` the broker's
// explanation of it; a submitter key's `a` says it needs an operator key;
// an operator approves from the keyboard with a note; a running task's
// output is shown live; the plan finishes, and the log records who
// approved and the note; the broker killed and restarted shows as
// unreachable, then reconnected; a resize redraws; `q`, Ctrl-C and SIGTERM
// leave the shell prompt, not curses leftovers; without a terminal it is a
// usage error.  Skips when tmux is missing.
#include "common/xalloc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <signal.h>
#include <stdarg.h>
#include <time.h>

// hold keeps the plan running until the file go exists (the work directory
// is the test directory).
static const char *s_plan =
    "{\"name\":\"watched\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"echo\",\"built 42 files\"]},"
    "{\"id\":\"g\",\"needs\":[\"a\"],\"gate\":\"ship it?\"},"
    "{\"id\":\"b\",\"needs\":[\"g\"],\"run\":[\"echo\",\"shipped\"]},"
    "{\"id\":\"hold\",\"run\":[\"sh\",\"-c\","
    " \"n=0; while [ ! -f go ]; do n=$((n+1)); echo tick $n; sleep 0.1;"
    " done\"]}]}";

typedef struct {
    swarm_t *s;
    char sock[700];          // tmux server socket: ours alone
} s_tmux_t;

// The tmux server's socket, for the exit handler: a failed check must not
// leave the server (and a dashboard reconnecting for ever) behind.
static char s_sock[700];

static void
s_kill_server(void)
{
    if (s_sock[0]) {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "tmux -S '%s' kill-server >/dev/null 2>&1",
                 s_sock);
        if (system(cmd) != 0) {
            // Already gone.
        }
        s_sock[0] = '\0';
    }
}

// Runs tmux with the arguments (a printf format); returns its status.
static int
s_tmux(const s_tmux_t *t, const char *fmt, ...)
{
    char args[2048], cmd[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "tmux -S '%s' %s >/dev/null 2>&1", t->sock,
             args);
    return system(cmd);
}

// The pane as text (caller frees).
static char *
s_capture(const s_tmux_t *t, const char *session)
{
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "tmux -S '%s' capture-pane -p -t %s 2>/dev/null",
             t->sock, session);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    if (p) {
        n = fread(buf, 1, cap - 1, p);
        pclose(p);
    }
    buf[n] = '\0';
    return buf;
}

// Waits (generously: the machine is loaded) until the pane holds want
// (and want2, when not NULL); prints the last capture when it never does.
static bool
s_see(const s_tmux_t *t, const char *session, const char *want,
      const char *want2)
{
    char *last = NULL;
    for (int i = 0; i < 300; i++) {
        free(last);
        last = s_capture(t, session);
        if (strstr(last, want) && (!want2 || strstr(last, want2))) {
            free(last);
            return true;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "pane %s never showed '%s'%s%s; it shows:\n%s\n",
            session, want, want2 ? " and " : "", want2 ? want2 : "", last);
    free(last);
    return false;
}

// The widest line of the pane now.
static int
s_widest(const s_tmux_t *t, const char *session)
{
    char *pane = s_capture(t, session);
    int widest = 0, n = 0;
    for (const char *c = pane; *c; c++) {
        // Columns, not bytes: UTF-8 continuation bytes do not count.
        n = *c == '\n' ? 0 : n + ((*c & 0xc0) != 0x80);
        widest = n > widest ? n : widest;
    }
    free(pane);
    return widest;
}

// The lease column of task id's row ("-" when none is shown).
static void
s_lease_shown(const s_tmux_t *t, const char *session, const char *id,
              char *lease, size_t len)
{
    char *pane = s_capture(t, session);
    snprintf(lease, len, "?");
    for (char *line = strtok(pane, "\n"); line; line = strtok(NULL, "\n")) {
        char tid[64], state[32], att[16], drone[64], left[16];
        if (sscanf(line, "%63s %31s %15s %63s %15s", tid, state, att, drone,
                   left) == 5 && strcmp(tid, id) == 0) {
            snprintf(lease, len, "%s", left);
        }
    }
    free(pane);
}

// A shell at 80x24 with a plain prompt, running the dashboard.
static void
s_start(const s_tmux_t *t, const char *session, const char *role,
        const char *plan)
{
    s_tmux(t, "-f /dev/null new-session -d -x 80 -y 24 -s %s "
              "'env -i PATH=/usr/bin:/bin TERM=screen PS1=PROMPT\\$\\  sh'",
           session);
    s_tmux(t, "send-keys -t %s \"'%s' --broker %s --keys %s --role %s watch "
              "%s; echo WATCH-EXIT=\\$?\" Enter", session,
           swarm_bin("waggle-architect"), t->s->endpoint, t->s->keys, role,
           plan);
}

// The architect's pid in the session: the shell's child.
static long
s_watch_pid(const s_tmux_t *t, const char *session)
{
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "pgrep -P $(tmux -S '%s' display -p -t %s "
             "'#{pane_pid}')", t->sock, session);
    FILE *p = popen(cmd, "r");
    long pid = 0;
    if (p) {
        if (fscanf(p, "%ld", &pid) != 1) {
            pid = 0;
        }
        pclose(p);
    }
    return pid;
}

// After the dashboard ended: the shell's prompt and the exit line, and
// nothing of the dashboard left on the screen.
static void
s_check_clean(const s_tmux_t *t, const char *session, const char *exit_line)
{
    CHECK(s_see(t, session, exit_line, NULL));
    char *pane = s_capture(t, session);
    CHECK(!strstr(pane, "waggle watch") && !strstr(pane, "Plans"));
    const char *after = strstr(pane, exit_line);
    CHECK(after && strstr(after, "PROMPT$"));
    free(pane);
}

static bool
s_submitter(s_tmux_t *t, const char *id)
{
    s_start(t, "sub", "submitter", id);
    if (!s_see(t, "sub", "AWAITING", "submitter:")) {
        return false;
    }
    s_tmux(t, "send-keys -t sub Tab j");
    CHECK(s_see(t, "sub", "Gate shows: g", NULL));
    s_tmux(t, "send-keys -t sub a");
    CHECK(s_see(t, "sub", "approve needs an operator key", NULL));
    // Ctrl-C (SIGINT from the terminal) ends it as cleanly as q.
    s_tmux(t, "send-keys -t sub C-c");
    s_check_clean(t, "sub", "WATCH-EXIT=0");
    // And SIGTERM, from elsewhere.
    s_tmux(t, "send-keys -t sub clear Enter");
    s_tmux(t, "send-keys -t sub \"'%s' --broker %s --keys %s watch; echo "
              "TERM-EXIT=\\$?\" Enter", swarm_bin("waggle-architect"),
           t->s->endpoint, t->s->keys);
    CHECK(s_see(t, "sub", "waggle watch", NULL));
    long pid = s_watch_pid(t, "sub");
    CHECK(pid > 0);
    if (pid > 0) {
        kill((pid_t) pid, SIGTERM);
    }
    s_check_clean(t, "sub", "TERM-EXIT=0");
    return true;
}

static bool
s_approve(s_tmux_t *t, swarm_t *s, const char *id)
{
    s_start(t, "op", "operator", id);
    if (!s_see(t, "op", "AWAITING", "1 gate waiting")) {
        return false;
    }
    CHECK(s_see(t, "op", "running", "watched"));
    // A running task's lease: time left, from the broker.
    char lease[16];
    s_lease_shown(t, "op", "hold", lease, sizeof lease);
    CHECK(strcmp(lease, "-") != 0 && strcmp(lease, "?") != 0 &&
          (strchr(lease, 's') != NULL));
    s_tmux(t, "send-keys -t op Tab j");
    CHECK(s_see(t, "op", "Gate shows: g", "ship it?"));
    // e: the broker's explanation in the right pane; e again: back.
    s_tmux(t, "send-keys -t op e");
    CHECK(s_see(t, "op", "Why: g", "waits for a person"));
    s_tmux(t, "send-keys -t op e");
    CHECK(s_see(t, "op", "Gate shows: g", NULL));
    // The capture for the README: 80x24, a gate waiting.
    char *shot = s_capture(t, "op");
    fprintf(stderr, "---- dashboard ----\n%s-------------------\n", shot);
    free(shot);
    s_tmux(t, "send-keys -t op a");
    CHECK(s_see(t, "op", "approve: note", NULL));
    s_tmux(t, "send-keys -t op -l 'looks good'");
    s_tmux(t, "send-keys -t op Enter");
    CHECK(s_see(t, "op", "approved gate 'g'", NULL));
    // A running task's output, live: its ticks go on without events.
    s_tmux(t, "send-keys -t op j j");
    CHECK(s_see(t, "op", "Live output of hold", "tick"));
    CHECK(s_see(t, "op", "tick 30", NULL));
    return swarm_wait_task(s, atoll(id), "b", "succeeded", 60);
}

static bool
s_reconnect(s_tmux_t *t, swarm_t *s)
{
    swarm_broker_kill(s);
    CHECK(s_see(t, "op", "BROKER UNREACHABLE", NULL));
    if (swarm_broker(s, NULL) != 0) {
        return false;
    }
    return s_see(t, "op", "connected to the broker again", NULL);
}

static void
test_watch(void)
{
    if (system("tmux -V >/dev/null 2>&1") != 0) {
        t_skip("tmux is not installed");
        return;
    }
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan);
    SWARM_REQUIRE(&s, plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    s_tmux_t t = {.s = &s};
    snprintf(t.sock, sizeof t.sock, "%s/tmux.sock", s.dir);
    snprintf(s_sock, sizeof s_sock, "%s", t.sock);
    atexit(s_kill_server);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "g", "awaiting_approval",
                                      60));
    if (!s_submitter(&t, id) || !s_approve(&t, &s, id) ||
        !s_reconnect(&t, &s)) {
        s_kill_server();
        SWARM_REQUIRE(&s, !"the dashboard did not get through");
    }
    char go[700];
    snprintf(go, sizeof go, "%s/go", s.dir);
    CHECK(t_write_file(go, "") == 0);
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(s_see(&t, "op", "succeeded", "4/4"));
    // A resize redraws at the new size, and back.
    CHECK(s_widest(&t, "op") <= 80);
    s_tmux(&t, "resize-window -t op -x 100 -y 30");
    int widest = 0;
    for (int i = 0; i < 100 && widest <= 80; i++) {
        widest = s_widest(&t, "op");
        usleep(100 * 1000);
    }
    CHECK(widest > 80 && widest <= 100);
    CHECK(s_see(&t, "op", "drones    host", NULL));
    s_tmux(&t, "resize-window -t op -x 80 -y 24");
    for (int i = 0; i < 100 && widest > 80; i++) {
        widest = s_widest(&t, "op");
        usleep(100 * 1000);
    }
    CHECK_INT(widest <= 80, 1);
    s_tmux(&t, "send-keys -t op q");
    s_check_clean(&t, "op", "WATCH-EXIT=0");
    // The log says who approved (the operator key, named "operator" by
    // keygen), with the note and the hash of what the pane showed.
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "log", id, "--json", NULL), 0);
    bool found = false;
    for (char *l = out ? strtok(out, "\n") : NULL; l; l = strtok(NULL, "\n")) {
        found |= strstr(l, "\"task\":\"g\"") && strstr(l, "\"actor\":"
                                                           "\"operator\"") &&
                 strstr(l, "awaiting_approval") && strstr(l, "looks good") &&
                 strstr(l, "hash");
    }
    CHECK(found);
    free(out);
    s_kill_server();
    swarm_stop(&s);
}

// Without a terminal it says what to use instead (64); --help is there.
static void
test_usage(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char *out = NULL, *err = NULL;
    CHECK_INT(swarm_arch(&s, &out, &err, "watch", NULL), 64);
    CHECK(err && strstr(err, "watch needs a terminal") &&
          strstr(err, "events --follow"));
    free(out);
    free(err);
    out = err = NULL;
    CHECK_INT(swarm_arch(&s, &out, &err, "watch", "--help", NULL), 0);
    CHECK(out && strstr(out, "watch [PLAN]") && strstr(out, "q quit"));
    free(out);
    free(err);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "watch", "1", "2", NULL), 64);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "watch", "x", NULL), 64);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_usage),
    T(test_watch),
    {0},
};

T_MAIN(t_cases)
