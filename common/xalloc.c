// xalloc: allocation wrappers that abort on out-of-memory.
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__  // defined by the headers above
#include <malloc.h>
#endif

static void
s_oom(size_t n)
{
    fprintf(stderr, "waggle: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        s_oom(n);
    }
    return p;
}

void *
xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        s_oom(count * size);
    }
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        s_oom(n);
    }
    return q;
}

char *
xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        n = 0;
    }
    char *p = xmalloc((size_t) n + 1);
    vsnprintf(p, (size_t) n + 1, fmt, ap);
    return p;
}

char *
xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void
xfree(void *pp)
{
    void **p = pp;
    if (p && *p) {
        free(*p);
        *p = NULL;
    }
}

void
xalloc_trim(void)
{
#ifdef __GLIBC__
    (void) malloc_trim(0);
#endif
}
