// follow.c: `output PLAN TASK --follow` — a running task's stdout as it is
// produced, then its final output, and the task's outcome as exit status.
//
// The drone sends the broker the last few KiB of a running attempt's
// stdout now and then (TAIL, at most every 500 ms); the broker keeps only
// the latest in memory.  This polls OUTPUT with live every S_POLL_MS: a
// cheap request (no ledger read while the task runs).  Each reply says how
// many bytes the attempt wrote in all, so only what is new is printed, and
// a gap (more came between two polls than one tail holds) is said.  The
// bytes are a task's: they may be binary or hostile, so control
// characters are escaped as the logs escape them (log_escape); newlines
// are kept.
#include "architect/arch.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_POLL_MS 300

typedef struct {
    uint64_t token;             // the attempt being shown (0: none yet)
    uint64_t shown;             // its bytes printed so far
    uint8_t held;               // a trailing 0xc2 kept back: with the next
    bool holding;               //   byte it may be a C1 control
    bool down;                  // the broker was unreachable (said once)
} s_follow_t;

// Prints bytes escaped, line by line: a NUL becomes \x00, control
// characters \xNN (log_escape), newlines stay newlines.
static void
s_emit(s_follow_t *f, const uint8_t *p, size_t n, bool last)
{
    char *buf = xmalloc(n + 2);
    size_t k = 0;
    if (f->holding) {
        buf[k++] = (char) f->held;
        f->holding = false;
    }
    memcpy(buf + k, p, n);
    k += n;
    if (!last && k > 0 && (uint8_t) buf[k - 1] == 0xc2) {
        f->held = 0xc2;
        f->holding = true;
        k--;
    }
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && buf[j] != '\n' && buf[j] != '\0') {
            j++;
        }
        char save = j < k ? buf[j] : '\0';
        buf[j] = '\0';
        char *safe = log_escape(buf + i);
        fputs(safe, stdout);
        free(safe);
        if (j < k) {
            fputs(save == '\n' ? "\n" : "\\x00", stdout);
        }
        i = j + 1;
    }
    fflush(stdout);
    free(buf);
}

// A running attempt's tail: what is new since the last poll.
static void
s_running(s_follow_t *f, const proto_output_ok_t *out)
{
    if (out->token == 0) {
        return;  // not leased (yet, or again): nothing runs
    }
    if (out->token != f->token) {
        if (f->token) {
            s_emit(f, NULL, 0, true);
            fprintf(stderr, "\n--- '%s': another attempt started ---\n",
                    out->task);
        }
        f->token = out->token;
        f->shown = 0;
    }
    if (out->total <= f->shown) {
        return;
    }
    uint64_t first = out->total - out->data.len;  // offset of data[0]
    if (first > f->shown) {
        s_emit(f, NULL, 0, true);
        fprintf(stderr, "\n[... %llu bytes not shown ...]\n",
                (unsigned long long) (first - f->shown));
        f->shown = first;
    }
    s_emit(f, out->data.data + (f->shown - first), out->total - f->shown,
           false);
    f->shown = out->total;
}

// The task ended: the rest of its final output (all of it when what was
// shown is not its beginning), its outcome on stderr, and the exit code.
static int
s_final(s_follow_t *f, const proto_output_ok_t *out)
{
    const uint8_t *p = out->data.data;
    size_t n = out->data.len;
    if (f->shown > 0 && !out->truncated && n >= f->shown) {
        p += f->shown;
        n -= (size_t) f->shown;
    } else if (f->shown > 0 && n > 0) {
        s_emit(f, NULL, 0, true);
        fprintf(stderr, "\n--- final output of '%s' (attempt %u) ---\n",
                out->task, out->attempt);
    }
    s_emit(f, p, n, true);
    fprintf(stderr, "task '%s' %s\n", out->task, out->state);
    return strcmp(out->state, "succeeded") == 0 ? ARCH_EXIT_OK
                                                : ARCH_EXIT_FAILED;
}

static void
s_sleep(void)
{
    struct timespec ts = {0, S_POLL_MS * 1000L * 1000L};
    nanosleep(&ts, NULL);
}

// One poll.  -1: go on; else the exit code.
static int
s_poll(arch_t *a, int64_t plan, const char *task, s_follow_t *f)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_OUTPUT), *reply = NULL;
    req->u.output.plan = plan;
    req->u.output.task = xstrdup(task);
    req->u.output.live = true;
    char err[512];
    link_rc_t lrc = link_request(a->link, &req, a->cfg->connect_timeout_ms,
                                 &reply, err, sizeof err);
    proto_msg_destroy(&req);
    if (lrc != LINK_OK && lrc != LINK_AUTH) {
        if (!f->down) {
            fprintf(stderr, "waggle-architect: %s; still following\n", err);
        }
        f->down = true;
        return -1;
    }
    f->down = false;
    if (lrc != LINK_OK || reply->cmd == PROTO_MSG_ERROR ||
        !reply->u.output_ok.state) {
        // An error, or a broker that does not know live: as plain output.
        proto_msg_destroy(&reply);
        return -2;
    }
    int code = reply->u.output_ok.running ? -1
                                          : s_final(f, &reply->u.output_ok);
    if (code == -1) {
        s_running(f, &reply->u.output_ok);
    }
    proto_msg_destroy(&reply);
    return code;
}

int
follow_output(arch_t *a, int64_t plan, const char *task)
{
    int rc = arch_connect(a);
    if (rc) {
        return rc;
    }
    s_follow_t f = {0};
    for (;;) {
        rc = s_poll(a, plan, task, &f);
        if (rc == -2) {
            // Says why (not found, forbidden, ...) with the usual exit code.
            proto_msg_t *req = proto_msg_new(PROTO_MSG_OUTPUT), *reply = NULL;
            req->u.output.plan = plan;
            req->u.output.task = xstrdup(task);
            req->u.output.live = true;
            rc = arch_call(a, &req, &reply);
            proto_msg_destroy(&req);
            proto_msg_destroy(&reply);
            return rc ? rc : ARCH_EXIT_FAILED;
        }
        if (rc >= 0) {
            return rc;
        }
        s_sleep();
    }
}
