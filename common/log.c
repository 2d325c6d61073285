// log: formats entries as text or JSON lines on stderr.
//
// Each entry is written with a single write(2) so lines from the several
// processes of a swarm sharing one terminal or file do not interleave.
// Messages carry strings from peers (instance ids, host names, task ids,
// decode errors), so a text entry escapes every control byte, DEL and
// UTF-8 C1 control as \xNN: a peer can neither start a forged line nor send
// terminal escapes.
// JSON entries get the same protection as \uNNNN escapes (the encoder's,
// and ours for C1).
#include "common/log.h"

#include "common/clock.h"
#include "common/json.h"
#include "common/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static log_level_t s_level = LOG_LEVEL_INFO;
static bool s_json = false;
static const char *s_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *s_json_names[] = {"error", "warn", "info", "debug"};

void
log_init(log_level_t level, bool json)
{
    s_level = level;
    s_json = json;
}

bool
log_enabled(log_level_t level)
{
    return level <= s_level;
}

int
log_format_parse(const char *s, bool *json)
{
    if (strcmp(s, "text") == 0) {
        *json = false;
    } else if (strcmp(s, "json") == 0) {
        *json = true;
    } else {
        return -1;
    }
    return 0;
}

static void
s_emit(const char *line)
{
    size_t len = strlen(line);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n <= 0) {
            return;
        }
        line += n;
        len -= (size_t) n;
    }
}

// How many bytes at p make one control to escape: a C0 byte or DEL, or
// a C1 control in UTF-8 (U+0080..U+009F: 0xc2 0x80..0x9f), which xterm and
// VTE obey as they do ESC (U+009B is CSI).  0 for text.
static size_t
s_control_len(const unsigned char *p)
{
    if (*p < 0x20 || *p == 0x7f) {
        return 1;
    }
    return p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f ? 2 : 0;
}

char *
log_escape(const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t n = 0;
    for (size_t i = 0; p[i];) {
        size_t k = s_control_len(p + i);
        n += k ? 4 * k : 1;
        i += k ? k : 1;
    }
    char *out = xmalloc(n + 1);
    char *o = out;
    for (size_t i = 0; p[i];) {
        size_t k = s_control_len(p + i);
        if (k == 0) {
            *o++ = (char) p[i++];
        }
        for (; k > 0; k--) {
            o += sprintf(o, "\\x%02x", p[i++]);
        }
    }
    *o = '\0';
    return out;
}

// A JSON string's text (json_quote's output) with each UTF-8 C1 control
// written as \u00NN: JSON lets them through raw, and JSON lines are read
// in terminals too.  Takes q.
static char *
s_json_c1(char *q)
{
    const unsigned char *p = (const unsigned char *) q;
    size_t n = 0;
    for (size_t i = 0; p[i]; i++) {
        n += s_control_len(p + i) == 2 ? 4 : 0;  // 2 bytes become 6
    }
    if (n == 0) {
        return q;
    }
    char *out = xmalloc(strlen(q) + n + 1);
    char *o = out;
    for (size_t i = 0; p[i];) {
        if (s_control_len(p + i) == 2) {
            o += sprintf(o, "\\u%04x", p[i + 1]);
            i += 2;
        } else {
            *o++ = (char) p[i++];
        }
    }
    *o = '\0';
    free(q);
    return out;
}

void
log_write(log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, component, fmt, ap);
    va_end(ap);
}

static bool
s_reserved(const char *key)
{
    static const char *const names[] = {"ts", "level", "component", "msg"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (strcmp(key, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

// One JSON line: the entry's members, then the fields.  json.c writes it;
// C1 controls, which JSON lets through raw, are escaped after.
static char *
s_json_line(const char *ts, log_level_t level, const char *component,
            const char *msg, const log_field_t *fields)
{
    jnode_t *o = json_obj_new();
    json_obj_set_str(o, "ts", ts);
    json_obj_set_str(o, "level", s_json_names[level]);
    json_obj_set_str(o, "component", component);
    json_obj_set_str(o, "msg", msg);
    for (const log_field_t *f = fields; f && f->key; f++) {
        if (s_reserved(f->key)) {
            continue;
        }
        if (f->is_num) {
            json_obj_set_int(o, f->key, f->num);
        } else if (f->str) {
            json_obj_set_str(o, f->key, f->str);
        }
    }
    char *text = s_json_c1(json_dump(o, false));
    json_destroy(&o);
    char *line = xasprintf("%s\n", text);
    free(text);
    return line;
}

static void
s_vwrite(log_level_t level, const char *component, const log_field_t *fields,
         const char *fmt, va_list ap)
{
    if (!log_enabled(level)) {
        return;
    }
    char ts[32];
    clock_format_utc(clock_wall_ms(), ts, sizeof ts);
    char *msg = xvasprintf(fmt, ap);
    char *line;
    if (s_json) {
        line = s_json_line(ts, level, component, msg, fields);
    } else {
        char *safe = log_escape(msg);
        line = xasprintf("%s %s %s: %s\n", ts, s_names[level], component,
                         safe);
        free(safe);
    }
    s_emit(line);
    free(line);
    free(msg);
}

void
log_vwrite(log_level_t level, const char *component, const char *fmt,
           va_list ap)
{
    s_vwrite(level, component, NULL, fmt, ap);
}

void
log_with(log_level_t level, const char *component, const log_field_t *fields,
         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vwrite(level, component, fields, fmt, ap);
    va_end(ap);
}
