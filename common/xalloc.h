// xalloc: allocation that never returns NULL.
//
// Every allocation in Waggle goes through these wrappers.  On out-of-memory
// they print one line to stderr and abort (Redis zmalloc): a broker that
// cannot allocate cannot keep its promises, and a crash is recovered from the
// ledger.  Sizes that come from the wire must be checked before calling these.
#ifndef WAGGLE_XALLOC_H
#define WAGGLE_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
// Copies at most n bytes of s and NUL-terminates the copy.
char *xstrndup(const char *s, size_t n);
// Returns a newly allocated formatted string; the caller frees it.
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
// Frees *p and sets it to NULL; a no-op on NULL.
void xfree(void *pp);
// Hands the heap's free pages back to the system (glibc's malloc_trim; a
// no-op elsewhere).  For after a large transient peak, such as a big
// workplan's parse trees: glibc keeps freed memory in the process, so the
// RSS would stay at the peak.  It walks the heap: not for every turn.
void xalloc_trim(void);

#endif
