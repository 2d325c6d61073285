// gate: a person's answer to a gate — approve and reject.
//
// An answer is bound to what the person saw: the sha256 of the gate's text
// (its question and inputs, OUTPUT of the gate).  Without --hash the command
// fetches the text, prints it, and answers for exactly that; with --hash
// (printed by `output PLAN GATE`) it answers for what was read earlier, and
// the broker refuses when the gate has changed since.  On a terminal it asks
// before answering what it just printed.
#include "architect/arch.h"
#include "common/cfg.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *note;
    char *hash;
} s_gate_opts_t;

static const cfg_option_t s_gate_opts[] = {
    {"note", NULL, CFG_STR, offsetof(s_gate_opts_t, note), NULL, "TEXT",
     "why (recorded with the answer; required to reject)", 0, 0},
    {"hash", NULL, CFG_STR, offsetof(s_gate_opts_t, hash), NULL, "HEX",
     "answer for the text with this sha256 (from `output PLAN GATE`) "
     "instead of fetching it now", 0, 0},
    CFG_END,
};

char *
gate_hash_hex(const uint8_t *data, size_t len)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data ? data : (const uint8_t *) "", len);
    char *hex = xmalloc(sizeof h * 2 + 1);
    sodium_bin2hex(hex, sizeof h * 2 + 1, h, sizeof h);
    return hex;
}

// On a terminal, the person confirms the answer after reading the text.
static bool
s_confirm(proto_cmd_t cmd, int64_t plan, const char *task)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
        return true;
    }
    fprintf(stderr, "%s gate '%s' of plan %lld as shown above? [y/N] ",
            cmd == PROTO_MSG_APPROVE ? "approve" : "reject", task,
            (long long) plan);
    fflush(stderr);
    char line[64] = "";
    return fgets(line, sizeof line, stdin) &&
           (line[0] == 'y' || line[0] == 'Y');
}

// Fetches and prints what the gate shows; returns its hash in *hash.
static int
s_fetch(arch_t *a, int64_t plan, const char *task, char **hash)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_OUTPUT), *reply = NULL;
    req->u.output.plan = plan;
    req->u.output.task = xstrdup(task);
    int rc = arch_call(a, &req, &reply);
    proto_msg_destroy(&req);
    if (rc != 0) {
        return rc;
    }
    const proto_bytes_t *d = &reply->u.output_ok.data;
    fwrite(d->data ? (const void *) d->data : "", 1, d->len, stdout);
    fflush(stdout);
    *hash = gate_hash_hex(d->data, d->len);
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}

static int
s_answer(arch_t *a, proto_cmd_t cmd, int argc, char **argv,
         const char *usage, const char *help)
{
    s_gate_opts_t o = {0};
    arch_pos_t pos;
    char *text = xasprintf("%s\n\n%s", usage, help);
    int rc = arch_opts(a, s_gate_opts, &o, argc, argv, &pos, text);
    free(text);
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, usage) ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        cfg_release(s_gate_opts, &o);
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    if (cmd == PROTO_MSG_REJECT && (!o.note || !o.note[0])) {
        cfg_release(s_gate_opts, &o);
        return arch_fail(a, ARCH_EXIT_USAGE, "usage",
                         "reject needs --note saying why");
    }
    const char *task = pos.items[1];
    char *hash = o.hash ? xstrdup(o.hash) : NULL;
    if ((rc = arch_connect(a)) == 0 && !hash) {
        rc = s_fetch(a, plan, task, &hash);
        if (rc == 0 && !s_confirm(cmd, plan, task)) {
            rc = arch_fail(a, ARCH_EXIT_FAILED, "declined", "nothing sent");
        }
    }
    if (rc == 0) {
        proto_msg_t *req = proto_msg_new(cmd), *reply = NULL;
        req->u.verdict.plan = plan;
        req->u.verdict.task = xstrdup(task);
        req->u.verdict.note = o.note ? xstrdup(o.note) : NULL;
        req->u.verdict.hash = xstrdup(hash);
        if ((rc = arch_call(a, &req, &reply)) == 0) {
            printf("%s gate '%s' of plan %lld (sha256 %s)\n",
                   cmd == PROTO_MSG_APPROVE ? "approved" : "rejected", task,
                   (long long) plan, hash);
        }
        proto_msg_destroy(&req);
        proto_msg_destroy(&reply);
    }
    free(hash);
    cfg_release(s_gate_opts, &o);
    return rc;
}

int
cmd_approve(arch_t *a, int argc, char **argv)
{
    return s_answer(a, PROTO_MSG_APPROVE, argc, argv,
                    "approve PLAN TASK [--note TEXT] [--hash HEX]",
                    "Approves a gate awaiting approval (operator keys only): "
                    "prints what the gate\nshows and approves exactly that; "
                    "what needs the gate then runs.");
}

int
cmd_reject(arch_t *a, int argc, char **argv)
{
    return s_answer(a, PROTO_MSG_REJECT, argc, argv,
                    "reject PLAN TASK --note TEXT [--hash HEX]",
                    "Rejects a gate awaiting approval (operator keys only); "
                    "what needs it is\nblocked.");
}
