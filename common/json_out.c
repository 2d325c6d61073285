// json_out: JSON text written straight into a growing buffer.
//
// The canonical workplan of a 100k-task plan is 9 MB; building it as a
// jansson tree and dumping that cost ~0.4 s and ~1 KB of transient heap per
// task.  This writer appends the same bytes json_dump() would give (the
// unit tests compare the two) without a tree.  Pure: no I/O, no library.
#include "common/json.h"

#include "common/xalloc.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void
s_reserve(json_out_t *o, size_t n)
{
    if (o->len + n + 1 <= o->cap) {
        return;
    }
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n + 1) {
        cap *= 2;
    }
    o->p = xrealloc(o->p, cap);
    o->cap = cap;
}

void
json_out_raw(json_out_t *o, const char *s, size_t n)
{
    assert(o && (s || n == 0));
    s_reserve(o, n);
    if (n > 0) {
        memcpy(o->p + o->len, s, n);
    }
    o->len += n;
    o->p[o->len] = '\0';
}

// What jansson writes for byte c inside a string: NULL when c goes as it is.
static const char *
s_escape(unsigned char c, char buf[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c >= 0x20) {
        return NULL;
    }
    snprintf(buf, 8, "\\u%04X", c);
    return buf;
}

void
json_out_str(json_out_t *o, const char *s, size_t len)
{
    assert(o && (s || len == 0));
    s_reserve(o, len + 2);
    o->p[o->len++] = '"';
    size_t run = 0;             // bytes of s before i not yet copied
    for (size_t i = 0; i < len; i++) {
        char buf[8];
        const char *esc = s_escape((unsigned char) s[i], buf);
        if (!esc) {
            continue;
        }
        json_out_raw(o, s + run, i - run);
        json_out_raw(o, esc, strlen(esc));
        run = i + 1;
    }
    json_out_raw(o, s + run, len - run);
    json_out_raw(o, "\"", 1);
}

// Digits by hand: snprintf was a fifth of a big canonical text's cost.
void
json_out_int(json_out_t *o, int64_t v)
{
    char buf[24];
    char *p = buf + sizeof buf;
    // Negated as unsigned, so INT64_MIN does not overflow.
    uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0) {
        *--p = '-';
    }
    json_out_raw(o, p, (size_t) (buf + sizeof buf - p));
}

// jansson's jsonp_dtostr: "%.17g"; ".0" added when the text has neither a
// '.' nor an 'e'; a '+' and leading zeros dropped from the exponent.
void
json_out_real(json_out_t *o, double v)
{
    if (!isfinite(v)) {
        json_out_raw(o, "null", 4);
        return;
    }
    char buf[40];
    int n = snprintf(buf, sizeof buf - 2, "%.17g", v);
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(buf, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') {
            start++;
        }
        while (*end == '0') {
            end++;
        }
        if (end != start) {
            memmove(start, end, strlen(end) + 1);
            n = (int) strlen(buf);
        }
    }
    json_out_raw(o, buf, (size_t) n);
}

char *
json_out_take(json_out_t *o, size_t *len_out)
{
    assert(o);
    if (len_out) {
        *len_out = o->len;
    }
    char *p = o->p ? o->p : xstrdup("");
    *o = (json_out_t){0};
    return p;
}
