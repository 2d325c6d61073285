// limits: parsing and looking up `--model-limit` (see limits.h).
#include "broker/limits.h"

#include "common/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LIMIT_MAX 1000000

static int
s_fail(char *err, size_t len, const char *what, size_t n)
{
    snprintf(err, len, "model limit '%.*s': %s", (int) n, what,
             "want NAME=N with N from 1 to 1000000, each NAME once");
    return -1;
}

static int
s_add(limits_t *self, const char *item, size_t n, char *err, size_t len)
{
    const char *eq = memchr(item, '=', n);
    if (!eq || eq == item) {
        return s_fail(err, len, item, n);
    }
    char num[16];
    size_t nlen = n - (size_t) (eq + 1 - item);
    if (nlen == 0 || nlen >= sizeof num) {
        return s_fail(err, len, item, n);
    }
    memcpy(num, eq + 1, nlen);
    num[nlen] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(num, &end, 10);
    if (errno || *end || num[0] == '-' || num[0] == '+' || v < 1 ||
        v > S_LIMIT_MAX) {
        return s_fail(err, len, item, n);
    }
    size_t name_len = (size_t) (eq - item);
    if (name_len == 1 && item[0] == '*') {
        if (self->any >= 0) {
            return s_fail(err, len, item, n);
        }
        self->any = v;
        return 0;
    }
    char *name = xstrndup(item, name_len);
    for (size_t i = 0; i < self->count; i++) {
        if (strcmp(self->names[i], name) == 0) {
            free(name);
            return s_fail(err, len, item, n);
        }
    }
    self->names = xrealloc(self->names, (self->count + 1) * sizeof *self->names);
    self->max = xrealloc(self->max, (self->count + 1) * sizeof *self->max);
    self->names[self->count] = name;
    self->max[self->count++] = v;
    return 0;
}

int
limits_parse(const char *list, limits_t *out, char *err, size_t len)
{
    *out = (limits_t){.any = -1};
    if (!list || !*list) {
        return 0;
    }
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (s_add(out, p, n, err, len) < 0) {
            return -1;
        }
        if (!p[n]) {
            return 0;
        }
        p += n + 1;
    }
}

void
limits_release(limits_t *self)
{
    for (size_t i = 0; i < self->count; i++) {
        free(self->names[i]);
    }
    free(self->names);
    free(self->max);
    *self = (limits_t){.any = -1};
}

int64_t
limits_of(const limits_t *self, const char *model)
{
    const char *m = model ? model : "";
    for (size_t i = 0; i < self->count; i++) {
        if (strcmp(self->names[i], m) == 0) {
            return self->max[i];
        }
    }
    return self->any;
}
