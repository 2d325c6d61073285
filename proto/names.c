// names: the wire spellings of commands, statuses, task states, outcomes
// and RESULT_ACK statuses, and the lookups both ways.
//
// Owns the name tables: the command table comes from messages.def (with
// each command's allowed senders), the others are listed here in enum
// order.  Behind the public proto_*_name()/proto_*_parse() of proto.h and
// the length-taking names_*_find() of names.h that the decoder uses.
// Never allocates, and knows nothing of msgpack or of message bodies.
#include "proto/names.h"

#include "proto/proto.h"

#include <string.h>

static const struct {
    const char *name;
    unsigned senders;
} s_cmds[PROTO_MSG__COUNT] = {
#define X(id, name, roles) [PROTO_MSG_##id] = {name, roles},
#include "proto/messages.def"
#undef X
};

static const char *const s_status_names[PROTO_E__COUNT] = {
    "NONE", "MALFORMED", "BAD_VERSION", "UNKNOWN_COMMAND", "TOO_LARGE",
    "FORBIDDEN", "HELLO_REQUIRED", "NOT_FOUND", "CONFLICT", "INVALID",
    "UNSUPPORTED", "INTERNAL",
};

static const char *const s_state_names[PROTO_TASK__COUNT] = {
    "waiting", "ready", "leased", "awaiting_approval", "succeeded", "dead",
    "rejected", "blocked", "cancelled",
};

static const char *const s_outcome_names[PROTO_OUTCOME__COUNT] = {
    "succeeded", "failed", "released",
};

static const char *const s_ack_names[PROTO_ACK__COUNT] = {
    "accepted", "duplicate", "stale", "error",
};

// Index of name in names[0..count), or -1.
static int
s_lookup(const char *const *names, int count, const char *name, size_t len)
{
    for (int i = 0; i < count; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) {
            return i;
        }
    }
    return -1;
}

// --- names.h: lookups by pointer and length ------------------------------

int
names_cmd_find(const char *p, size_t len)
{
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        if (strlen(s_cmds[i].name) == len &&
            memcmp(s_cmds[i].name, p, len) == 0) {
            return i;
        }
    }
    return -1;
}

int
names_status_find(const char *p, size_t len)
{
    return s_lookup(s_status_names, PROTO_E__COUNT, p, len);
}

int
names_task_state_find(const char *p, size_t len)
{
    return s_lookup(s_state_names, PROTO_TASK__COUNT, p, len);
}

int
names_outcome_find(const char *p, size_t len)
{
    return s_lookup(s_outcome_names, PROTO_OUTCOME__COUNT, p, len);
}

int
names_ack_find(const char *p, size_t len)
{
    return s_lookup(s_ack_names, PROTO_ACK__COUNT, p, len);
}

// --- proto.h: names and parsing ------------------------------------------

const char *
proto_cmd_name(proto_cmd_t cmd)
{
    return (unsigned) cmd < PROTO_MSG__COUNT ? s_cmds[cmd].name : "?";
}

int
proto_cmd_parse(const char *name, proto_cmd_t *out)
{
    for (int i = 0; i < PROTO_MSG__COUNT; i++) {
        if (strcmp(s_cmds[i].name, name) == 0) {
            *out = (proto_cmd_t) i;
            return 0;
        }
    }
    return -1;
}

unsigned
proto_cmd_senders(proto_cmd_t cmd)
{
    return (unsigned) cmd < PROTO_MSG__COUNT ? s_cmds[cmd].senders : 0;
}

const char *
proto_status_name(proto_status_t code)
{
    return (unsigned) code < PROTO_E__COUNT ? s_status_names[code] : "?";
}

int
proto_status_parse(const char *name, proto_status_t *out)
{
    int i = s_lookup(s_status_names, PROTO_E__COUNT, name, strlen(name));
    if (i < 0) {
        return -1;
    }
    *out = (proto_status_t) i;
    return 0;
}

const char *
proto_task_state_name(proto_task_state_t s)
{
    return (unsigned) s < PROTO_TASK__COUNT ? s_state_names[s] : "?";
}

int
proto_task_state_parse(const char *name, proto_task_state_t *out)
{
    int i = s_lookup(s_state_names, PROTO_TASK__COUNT, name, strlen(name));
    if (i < 0) {
        return -1;
    }
    *out = (proto_task_state_t) i;
    return 0;
}

bool
proto_task_state_is_terminal(proto_task_state_t s)
{
    switch (s) {
    case PROTO_TASK_SUCCEEDED:
    case PROTO_TASK_DEAD:
    case PROTO_TASK_REJECTED:
    case PROTO_TASK_BLOCKED:
    case PROTO_TASK_CANCELLED:
        return true;
    case PROTO_TASK_WAITING:
    case PROTO_TASK_READY:
    case PROTO_TASK_LEASED:
    case PROTO_TASK_AWAITING_APPROVAL:
    case PROTO_TASK__COUNT:
        break;
    }
    return false;
}

const char *
proto_outcome_name(proto_outcome_t o)
{
    return (unsigned) o < PROTO_OUTCOME__COUNT ? s_outcome_names[o] : "?";
}

const char *
proto_ack_name(proto_ack_t a)
{
    return (unsigned) a < PROTO_ACK__COUNT ? s_ack_names[a] : "?";
}
