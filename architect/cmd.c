// cmd: the architect's commands.
#include "architect/arch.h"

#include "common/cfg.h"
#include "common/clock.h"
#include "common/workplan.h"
#include "common/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int
arch_connect(arch_t *a)
{
    keys_role_t role;
    char err[512];
    if (a->link) {
        return ARCH_EXIT_OK;   // replan asks, then amends, on one link
    }
    if (keys_role_parse(a->cfg->role, &role) < 0 || role == KEYS_ROLE_DRONE) {
        return arch_fail(a, ARCH_EXIT_USAGE, "usage", "--role '%s' must be "
                         "operator or submitter", a->cfg->role);
    }
    if (keys_load_client(a->cfg->keys, role, &a->keys, err, sizeof err) < 0) {
        return arch_report(a, ARCH_EXIT_CONNECT, "keys", err, NULL);
    }
    a->link = link_new(a->cfg->broker, &a->keys);
    return ARCH_EXIT_OK;
}

void
arch_json_error(const arch_t *a, const char *code, const char *message,
                const proto_strv_t *details)
{
    if (!a->json) {
        return;
    }
    char *text = render_error_json(code, message, details);
    printf("%s\n", text);
    fflush(stdout);
    free(text);
}

int
arch_report(const arch_t *a, int status, const char *code,
            const char *message, const proto_strv_t *details)
{
    fprintf(stderr, "waggle-architect: %s\n", message);
    for (size_t i = 0; details && i < details->count; i++) {
        fprintf(stderr, "  %s\n", details->items[i]);
    }
    arch_json_error(a, code, message, details);
    return status;
}

int
arch_fail(const arch_t *a, int status, const char *code, const char *fmt,
          ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return arch_report(a, status, code, message, NULL);
}

// A link failure: all of them mean "cannot talk to the broker" (exit 3).
static int
s_link_fail(const arch_t *a, link_rc_t rc, const char *err)
{
    const char *code = rc == LINK_AUTH          ? "refused"
                       : rc == LINK_UNREACHABLE ? "unreachable"
                                                : "no_reply";
    return arch_report(a, ARCH_EXIT_CONNECT, code, err, NULL);
}

// The exit status for an ERROR reply: a refused key or role is like not
// getting in at all; a missing plan, task or attempt has its own status.
static int
s_error_status(proto_status_t code)
{
    switch (code) {
    case PROTO_E_FORBIDDEN:
        return ARCH_EXIT_CONNECT;
    case PROTO_E_NOT_FOUND:
        return ARCH_EXIT_NOT_FOUND;
    default:
        return ARCH_EXIT_FAILED;
    }
}

// The wire status as a JSON error code: "NOT_FOUND" -> "not_found".
static void
s_lower(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] && i + 1 < len; i++) {
        out[i] = (char) (in[i] >= 'A' && in[i] <= 'Z' ? in[i] - 'A' + 'a'
                                                      : in[i]);
    }
    out[i] = '\0';
}

static int
s_report_error(const arch_t *a, const proto_msg_t *reply)
{
    const proto_error_body_t *e = &reply->u.error;
    const char *message = e->message ? e->message : "";
    fprintf(stderr, "waggle-architect: %s: %s\n",
            proto_status_name(e->code), message);
    for (size_t i = 0; i < e->details.count; i++) {
        fprintf(stderr, "  %s\n", e->details.items[i]);
    }
    char code[32];
    s_lower(proto_status_name(e->code), code, sizeof code);
    arch_json_error(a, code, message, &e->details);
    return s_error_status(e->code);
}

int
arch_call(arch_t *a, proto_msg_t **req, proto_msg_t **reply)
{
    return arch_call_ms(a, req, reply, a->cfg->connect_timeout_ms);
}

int
arch_call_ms(arch_t *a, proto_msg_t **req, proto_msg_t **reply,
             int64_t timeout_ms)
{
    char err[512];
    link_rc_t rc = link_request(a->link, req, timeout_ms, reply, err,
                                sizeof err);
    if (rc != LINK_OK) {
        return s_link_fail(a, rc, err);
    }
    if ((*reply)->cmd == PROTO_MSG_ERROR) {
        int code = s_report_error(a, *reply);
        proto_msg_destroy(reply);
        return code;
    }
    return ARCH_EXIT_OK;
}

int
arch_opts(const arch_t *a, const cfg_option_t *opts, void *conf, int argc,
       char **argv, arch_pos_t *pos, const char *usage)
{
    char err[256];
    bool help = false;
    pos->n = 0;
    for (int i = 1; i < argc;) {
        int next = i;
        if (cfg_load_args(opts, conf, argc, argv, i, &next, &help, err,
                          sizeof err) < 0) {
            arch_fail(a, ARCH_EXIT_USAGE, "usage", "%s: %s", argv[0], err);
            return -1;
        }
        if (next < argc) {
            if (pos->n == 8) {
                arch_fail(a, ARCH_EXIT_USAGE, "usage", "%s: too many "
                          "arguments", argv[0]);
                return -1;
            }
            pos->items[pos->n++] = argv[next];
        }
        i = next + 1;
    }
    if (help) {
        printf("usage: waggle-architect [GLOBAL OPTIONS] %s\n", usage);
        if (opts[0].flag) {
            printf("\noptions:\n");
            cfg_usage(stdout, opts);
        }
        return 1;
    }
    return 0;
}

int
arch_parse_plan(const arch_t *a, const char *s, int64_t *plan)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v <= 0) {
        arch_fail(a, ARCH_EXIT_USAGE, "usage", "'%s' is not a plan id (a "
                  "positive number)", s);
        return -1;
    }
    *plan = v;
    return 0;
}

bool
arch_args(const arch_t *a, const arch_pos_t *pos, int min, int max,
       const char *usage)
{
    int n = pos->n;
    if (n >= min && n <= max) {
        return true;
    }
    char *line = xasprintf("usage: waggle-architect %s", usage);
    if (n > max) {
        fprintf(stderr, "waggle-architect: unexpected argument '%s'\n",
                pos->items[max]);
    }
    fprintf(stderr, "%s\n", line);
    arch_json_error(a, "usage", line, NULL);
    free(line);
    return false;
}

static const cfg_option_t s_no_opts[] = {CFG_END};

int
cmd_ping(arch_t *a, int argc, char **argv)
{
    arch_pos_t pos;
    int rc = arch_opts(a, s_no_opts, NULL, argc, argv, &pos,
                    "ping\n\nChecks that the broker answers and accepts "
                    "this key; prints the role it sees.");
    if (rc || !arch_args(a, &pos, 0, 0, "ping")) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    if ((rc = arch_connect(a)) != 0) {
        return rc;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_PING), *reply = NULL;
    if ((rc = arch_call(a, &req, &reply)) != 0) {
        return rc;
    }
    printf("broker %s answers: key '%s' has role %s (broker %s)\n",
           a->cfg->broker, reply->u.pong.name, reply->u.pong.role,
           reply->u.pong.version);
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}

char *
arch_read_file(const arch_t *a, const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        arch_fail(a, ARCH_EXIT_FAILED, "io", "cannot read '%s': %s", path,
                  strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0, r;
    char *buf = xmalloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

// Validates locally so a person sees every error with its path before
// anything is sent.
static bool
s_validate(const arch_t *a, const char *path, const char *text, size_t len)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(text, len, &wp, &errs) == 0) {
        workplan_destroy(&wp);
        return true;
    }
    proto_strv_t details = {0};
    for (size_t i = 0; i < errs.count; i++) {
        char *line = xasprintf("%s: %s", errs.items[i].path[0]
                                             ? errs.items[i].path
                                             : "(top level)",
                               errs.items[i].message);
        proto_strv_push(&details, line);
        free(line);
    }
    char *message = xasprintf("workplan '%s' is invalid (%zu error%s):",
                              path, errs.count, errs.count == 1 ? "" : "s");
    arch_report(a, ARCH_EXIT_FAILED, "invalid", message, &details);
    free(message);
    proto_strv_release(&details);
    wp_errors_release(&errs);
    return false;
}

// The broker takes a big plan in one turn (a 1M-task plan, 33 MB: ~4 s on
// a loaded 2-core machine), so the reply may come after
// --connect-timeout-ms: a submit waits this much longer per MiB of JSON.
#define S_SUBMIT_MS_PER_MB 1000

typedef struct {
    char *idem;
} s_submit_opts_t;

static const cfg_option_t s_submit_opts[] = {
    {"idempotency-key", NULL, CFG_STR, offsetof(s_submit_opts_t, idem), NULL,
     "KEY", "submitting again with the same key returns the same plan", 0,
     0},
    CFG_END,
};

int
cmd_submit(arch_t *a, int argc, char **argv)
{
    s_submit_opts_t o = {0};
    arch_pos_t pos;
    int rc = arch_opts(a, s_submit_opts, &o, argc, argv, &pos,
                    "submit FILE [--idempotency-key KEY]\n\nValidates the "
                    "workplan FILE (- for stdin), submits it (waiting for the "
                    "reply --connect-timeout-ms plus 1 s per MiB of JSON) "
                    "and prints the "
                    "plan id.");
    if (rc || !arch_args(a, &pos, 1, 1, "submit FILE")) {
        cfg_release(s_submit_opts, &o);
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    size_t len = 0;
    char *text = arch_read_file(a, pos.items[0], &len);
    rc = !text ? ARCH_EXIT_FAILED
         : !s_validate(a, pos.items[0], text, len) ? ARCH_EXIT_FAILED
                                                 : arch_connect(a);
    proto_msg_t *reply = NULL;
    if (rc == 0) {
        proto_msg_t *req = proto_msg_new(PROTO_MSG_SUBMIT);
        req->u.submit.workplan = text;
        req->u.submit.idempotency_key = o.idem ? xstrdup(o.idem) : NULL;
        text = NULL;
        rc = arch_call_ms(a, &req, &reply, a->cfg->connect_timeout_ms
                                               + S_SUBMIT_MS_PER_MB
                                                     * (int64_t) (len >> 20));
    }
    if (rc == 0) {
        const proto_submit_ok_t *ok = &reply->u.submit_ok;
        for (size_t i = 0; i < ok->warnings.count; i++) {
            fprintf(stderr, "warning: %s\n", ok->warnings.items[i]);
        }
        if (!ok->created) {
            fprintf(stderr, "note: idempotency key already used; this is "
                            "the existing plan\n");
        }
        printf("%lld\n", (long long) ok->plan);
    }
    proto_msg_destroy(&reply);
    free(text);
    cfg_release(s_submit_opts, &o);
    return rc;
}

typedef struct {
    bool json;
} s_status_opts_t;

static const cfg_option_t s_status_opts[] = {
    {"json", NULL, CFG_BOOL, offsetof(s_status_opts_t, json), NULL, NULL,
     "print one JSON object", 0, 0},
    CFG_END,
};

static int
s_status_page(arch_t *a, int64_t plan, uint32_t offset, proto_msg_t **reply)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS);
    req->u.status.plan = plan;
    req->u.status.offset = offset;
    return arch_call(a, &req, reply);
}

// Moves page's tasks to the end of all's (page keeps none).
static void
s_status_append(proto_status_ok_t *all, proto_status_ok_t *page)
{
    size_t n = all->n_tasks + page->n_tasks;
    all->tasks = xrealloc(all->tasks, (n ? n : 1) * sizeof *all->tasks);
    memcpy(all->tasks + all->n_tasks, page->tasks,
           page->n_tasks * sizeof *page->tasks);
    all->n_tasks = n;
    page->n_tasks = 0;
    all->more = page->more;
}

// STATUS, with every page of a big plan's tasks gathered into one reply.
static int
s_status_call(arch_t *a, int64_t plan, proto_msg_t **reply)
{
    int rc = s_status_page(a, plan, 0, reply);
    while (rc == 0 && (*reply)->u.status_ok.more) {
        proto_status_ok_t *all = &(*reply)->u.status_ok;
        proto_msg_t *next = NULL;
        // The broker lists at least one task per page, so this ends.
        if ((rc = s_status_page(a, plan, (uint32_t) all->n_tasks, &next))
            != 0) {
            proto_msg_destroy(reply);
            break;
        }
        if (next->u.status_ok.n_tasks == 0) {
            next->u.status_ok.more = false;
        }
        s_status_append(all, &next->u.status_ok);
        proto_msg_destroy(&next);
    }
    return rc;
}

int
cmd_status(arch_t *a, int argc, char **argv)
{
    s_status_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_status_opts, &o, argc, argv, &pos,
                    "status [PLAN] [--json]\n\nWithout PLAN: plans and "
                    "connected drones.  With PLAN: its tasks.");
    int64_t plan = 0;
    if (rc || !arch_args(a, &pos, 0, 1, "status [PLAN] [--json]") ||
        (pos.n > 0 && arch_parse_plan(a, pos.items[0], &plan) < 0)) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    proto_msg_t *reply = NULL;
    if ((rc = arch_connect(a)) != 0 ||
        (rc = s_status_call(a, plan, &reply)) != 0) {
        return rc;
    }
    const proto_status_ok_t *st = &reply->u.status_ok;
    if (o.json) {
        char *text = render_json(st, plan != 0);
        printf("%s\n", text);
        free(text);
    } else if (plan) {
        render_plan(stdout, st);
    } else {
        render_overview(stdout, st, clock_wall_ms());
    }
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}

typedef struct {
    int64_t timeout_s;
    bool json;
} s_wait_opts_t;

static const cfg_option_t s_wait_opts[] = {
    {"timeout", NULL, CFG_INT, offsetof(s_wait_opts_t, timeout_s), "0", "S",
     "give up after S seconds (exit 2); 0 waits for ever", 0, 31536000},
    {"json", NULL, CFG_BOOL, offsetof(s_wait_opts_t, json), NULL, NULL,
     "print the plan's final status as JSON", 0, 0},
    CFG_END,
};

typedef struct {
    bool tty;
    char *last;                // last progress line printed
    bool ever;                 // a status reply ever arrived
} s_progress_t;

static void
s_show(s_progress_t *p, const char *line, bool final)
{
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    } else if (!p->last || strcmp(p->last, line) != 0) {
        fprintf(stderr, "%s\n", line);
    }
    free(p->last);
    p->last = xstrdup(line);
}

// wait --json at the end: the whole plan, its tasks included (the polls
// asked for its counts only).  Returns code, or the failure's exit code.
static int
s_wait_json(arch_t *a, int64_t plan, int code)
{
    proto_msg_t *full = NULL;
    int rc = s_status_call(a, plan, &full);
    if (rc != 0) {
        return rc;
    }
    char *text = render_json(&full->u.status_ok, true);
    printf("%s\n", text);
    free(text);
    proto_msg_destroy(&full);
    return code;
}

// One poll of the plan.  Returns -1 to keep waiting, else an exit code.
static int
s_wait_once(arch_t *a, int64_t plan, s_progress_t *p, bool json)
{
    const char *nl = p->tty && p->last ? "\n" : "";
    proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS), *reply = NULL;
    req->u.status.plan = plan;
    // The plan's counts are all a poll needs; its tasks only at the end.
    req->u.status.summary = true;
    char err[512];
    link_rc_t rc = link_request(a->link, &req, a->cfg->connect_timeout_ms,
                                &reply, err, sizeof err);
    if (rc != LINK_OK) {
        if (rc == LINK_AUTH || !p->ever) {
            fputs(nl, stderr);
            return s_link_fail(a, rc, err);
        }
        s_show(p, "broker unreachable; still waiting (it may be "
                  "restarting)", false);
        return -1;
    }
    p->ever = true;
    if (reply->cmd == PROTO_MSG_ERROR) {
        fputs(nl, stderr);
        int code = s_report_error(a, reply);
        proto_msg_destroy(&reply);
        return code;
    }
    const proto_status_ok_t *st = &reply->u.status_ok;
    int code = -1;
    if (st->n_plans > 0) {
        const proto_plan_info_t *pi = &st->plans[0];
        bool done = strcmp(pi->state, "running") != 0;
        char *line = render_progress(pi);
        s_show(p, line, done);
        free(line);
        if (done) {
            code = strcmp(pi->state, "succeeded") == 0 ? ARCH_EXIT_OK
                                                       : ARCH_EXIT_FAILED;
            if (json) {
                code = s_wait_json(a, plan, code);
            }
        }
    }
    proto_msg_destroy(&reply);
    return code;
}

// Waits until an event of plan after *cursor is committed, or up to
// wait_ms: wait follows the event stream instead of polling the plan.
// *cursor -1 learns the last seq (at once).  A broker that cannot be asked
// (down, or too old for SUBSCRIBE) costs the old 250 ms pause instead.
static void
s_wait_event(arch_t *a, int64_t plan, int64_t *cursor, int64_t wait_ms)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_SUBSCRIBE), *reply = NULL;
    uint32_t w = *cursor < 0 ? 0 : (uint32_t) (wait_ms < 1 ? 1
                                               : wait_ms > 5000 ? 5000
                                                                : wait_ms);
    req->u.subscribe.since = *cursor;
    req->u.subscribe.plan = plan;
    req->u.subscribe.wait_ms = w;
    char err[512];
    if (link_request(a->link, &req, a->cfg->connect_timeout_ms + w, &reply,
                     err, sizeof err) == LINK_OK &&
        reply->cmd == PROTO_MSG_EVENTS) {
        *cursor = reply->u.events.next;
    } else {
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    proto_msg_destroy(&req);
    proto_msg_destroy(&reply);
}

int
cmd_wait(arch_t *a, int argc, char **argv)
{
    s_wait_opts_t o = {.json = a->cfg->json};
    arch_pos_t pos;
    int rc = arch_opts(a, s_wait_opts, &o, argc, argv, &pos,
                    "wait PLAN [--timeout S] [--json]\n\nWaits until PLAN "
                    "ends, showing progress.  Exit 0: succeeded; 1: failed "
                    "or\ncancelled; 2: timed out; 3: cannot connect or "
                    "authenticate; 4: no such plan.");
    int64_t plan = 0;
    if (rc || !arch_args(a, &pos, 1, 1, "wait PLAN [--timeout S] [--json]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    if ((rc = arch_connect(a)) != 0) {
        return rc;
    }
    s_progress_t p = {.tty = isatty(STDERR_FILENO)};
    int64_t deadline = o.timeout_s ? clock_mono_ms() + o.timeout_s * 1000
                                   : INT64_MAX;
    // The cursor comes before the first look at the plan, so no event
    // after that look can be missed.
    int64_t cursor = -1;
    s_wait_event(a, plan, &cursor, 0);
    for (;;) {
        int code = s_wait_once(a, plan, &p, o.json);
        if (code >= 0) {
            rc = code;
            break;
        }
        if (clock_mono_ms() >= deadline) {
            fputs(p.tty && p.last ? "\n" : "", stderr);
            rc = arch_fail(a, ARCH_EXIT_TIMEOUT, "timeout", "timed out after "
                           "%lld s; plan %lld is still running",
                           (long long) o.timeout_s, (long long) plan);
            break;
        }
        s_wait_event(a, plan, &cursor, deadline - clock_mono_ms());
    }
    free(p.last);
    return rc;
}

static int
s_simple(arch_t *a, proto_msg_t **req, const char *done)
{
    int rc = arch_connect(a);
    proto_msg_t *reply = NULL;
    if (rc == 0 && (rc = arch_call(a, req, &reply)) == 0) {
        printf("%s\n", done);
    }
    proto_msg_destroy(req);
    proto_msg_destroy(&reply);
    return rc;
}

int
cmd_cancel(arch_t *a, int argc, char **argv)
{
    arch_pos_t pos;
    int rc = arch_opts(a, s_no_opts, NULL, argc, argv, &pos,
                    "cancel PLAN [TASK]\n\nCancels a whole plan, or one task "
                    "and what needs it; running work is killed.");
    int64_t plan;
    if (rc || !arch_args(a, &pos, 1, 2, "cancel PLAN [TASK]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_CANCEL);
    req->u.cancel.plan = plan;
    req->u.cancel.task = pos.n > 1 ? xstrdup(pos.items[1]) : NULL;
    char *done = pos.n > 1
                     ? xasprintf("cancelled task '%s' of plan %lld",
                                 pos.items[1], (long long) plan)
                     : xasprintf("cancelled plan %lld", (long long) plan);
    rc = s_simple(a, &req, done);
    free(done);
    return rc;
}

int
cmd_retry(arch_t *a, int argc, char **argv)
{
    arch_pos_t pos;
    int rc = arch_opts(a, s_no_opts, NULL, argc, argv, &pos,
                    "retry PLAN TASK\n\nSends a dead, rejected or cancelled "
                    "task back to work with a fresh attempt budget;\nwhat it "
                    "blocked waits for it again.");
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, "retry PLAN TASK") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_RETRY);
    req->u.retry.plan = plan;
    req->u.retry.task = xstrdup(pos.items[1]);
    char *done = xasprintf("task '%s' of plan %lld will run again",
                           pos.items[1], (long long) plan);
    rc = s_simple(a, &req, done);
    free(done);
    return rc;
}

typedef struct {
    int64_t attempt;
    bool want_stderr;
    bool follow;
} s_output_opts_t;

static const cfg_option_t s_output_opts[] = {
    {"attempt", NULL, CFG_INT, offsetof(s_output_opts_t, attempt), "0", "N",
     "that attempt (default: the accepted one, else the latest)", 0,
     1000000},
    {"stderr", NULL, CFG_BOOL, offsetof(s_output_opts_t, want_stderr), NULL,
     NULL, "the stderr tail instead of stdout", 0, 0},
    {"follow", NULL, CFG_BOOL, offsetof(s_output_opts_t, follow), NULL, NULL,
     "while the task runs, show its output as it comes; exit with its "
     "outcome", 0, 0},
    CFG_END,
};

int
cmd_output(arch_t *a, int argc, char **argv)
{
    s_output_opts_t o = {0};
    arch_pos_t pos;
    int rc = arch_opts(a, s_output_opts, &o, argc, argv, &pos,
                    "output PLAN TASK [--attempt N] [--stderr] [--follow]\n\n"
                    "Prints a task's output exactly as stored.  --follow "
                    "shows a running task's\noutput as it is produced "
                    "(control characters escaped), then its final\noutput, "
                    "and exits 0 when the task succeeded, 1 when it ended "
                    "otherwise.");
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, "output PLAN TASK [--attempt N]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    if (o.follow && (o.attempt || o.want_stderr)) {
        return arch_fail(a, ARCH_EXIT_USAGE, "usage", "output: --follow "
                         "takes neither --attempt nor --stderr");
    }
    if (o.follow) {
        return follow_output(a, plan, pos.items[1]);
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_OUTPUT), *reply = NULL;
    req->u.output.plan = plan;
    req->u.output.task = xstrdup(pos.items[1]);
    req->u.output.attempt = (uint32_t) o.attempt;
    req->u.output.want_stderr = o.want_stderr;
    if ((rc = arch_connect(a)) != 0 || (rc = arch_call(a, &req, &reply))) {
        proto_msg_destroy(&req);
        return rc;
    }
    const proto_output_ok_t *out = &reply->u.output_ok;
    fwrite(out->data.data ? (const void *) out->data.data : "", 1,
           out->data.len, stdout);
    fflush(stdout);
    if (out->attempt == 0) {
        // Only a gate has no attempt: this is what it shows a person.
        char *hash = gate_hash_hex(out->data.data, out->data.len);
        fprintf(stderr, "note: this gate's text has sha256 %s; `approve %lld "
                        "%s --hash %s` answers for exactly it\n",
                hash, (long long) plan, pos.items[1], hash);
        free(hash);
    }
    if (out->truncated) {
        fprintf(stderr, "note: attempt %u's output was cut at the broker's "
                        "cap; this is its tail\n", out->attempt);
    }
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}
