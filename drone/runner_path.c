// runner_path: where argv[0] is in the drone's PATH, looked up once per
// distinct name and remembered, so that a task's child execs the file
// directly instead of trying every PATH entry in turn.
//
// The lookup is glibc's PATH-searching exec's: the drone's own PATH (its environ, not the
// task's envp), "/bin:/usr/bin" without one, the first entry holding a
// regular file the drone may execute.  What it cannot decide the same way
// (a name with a '/', an empty or relative PATH entry, nothing found) is
// not remembered: the child's exec searches PATH as before.  A remembered
// file that is gone is forgotten when a child reports so (the child then
// searches itself), and found afresh on the next start.
//
// Never forks, never logs.
#include "drone/runner_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { S_MAX_NAMES = 256 };     // then all are forgotten and found again

typedef struct {
    char *name;                 // argv[0]
    char *path;                 // the file PATH gave it
} s_entry_t;

struct runner_paths {
    s_entry_t *entries;
    size_t count;
};

runner_paths_t *
runner_paths_new(void)
{
    return xcalloc(1, sizeof(runner_paths_t));
}

static void
s_clear(runner_paths_t *self)
{
    for (size_t i = 0; i < self->count; i++) {
        free(self->entries[i].name);
        free(self->entries[i].path);
    }
    self->count = 0;
}

void
runner_paths_destroy(runner_paths_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        s_clear(*self_p);
        free((*self_p)->entries);
        free(*self_p);
        *self_p = NULL;
    }
}

static bool
s_runnable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode)
           && access(path, X_OK) == 0;
}

// The first PATH entry holding a runnable name; NULL when there is none or
// an entry the libc search would read differently (empty: the cwd; relative).
static char *
s_search(const char *name)
{
    const char *path = getenv("PATH");
    path = path ? path : "/bin:/usr/bin";
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        if (end == p || *p != '/') {
            return NULL;
        }
        char *file = xasprintf("%.*s/%s", (int) (end - p), p, name);
        if (s_runnable(file)) {
            return file;
        }
        free(file);
        if (!*end) {
            return NULL;
        }
        p = end;
    }
}

const char *
runner_paths_find(runner_paths_t *self, const char *name)
{
    assert(self && name);
    if (!*name || strchr(name, '/')) {
        return NULL;
    }
    for (size_t i = 0; i < self->count; i++) {
        if (strcmp(self->entries[i].name, name) == 0) {
            return self->entries[i].path;
        }
    }
    char *file = s_search(name);
    if (!file) {
        return NULL;
    }
    if (self->count == S_MAX_NAMES) {
        s_clear(self);
    }
    if (!self->entries) {
        self->entries = xcalloc(S_MAX_NAMES, sizeof *self->entries);
    }
    self->entries[self->count++] = (s_entry_t) {xstrdup(name), file};
    return file;
}

void
runner_paths_forget(runner_paths_t *self, const char *name)
{
    assert(self && name);
    for (size_t i = 0; i < self->count; i++) {
        if (strcmp(self->entries[i].name, name) == 0) {
            free(self->entries[i].name);
            free(self->entries[i].path);
            self->entries[i] = self->entries[--self->count];
            return;
        }
    }
}
