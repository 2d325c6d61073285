// limits: swarm-wide model limits (`--model-limit NAME=N`): at most N
// prompt-task leases of model NAME in flight across all drones; `*=N`
// applies to every model without a limit of its own, each counted apart.
// A prompt task without a `model` counts as model "" (the drone's default),
// which only `*` limits.  Pure: parsing and lookup, no I/O.
#ifndef WAGGLE_LIMITS_H
#define WAGGLE_LIMITS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **names;                // owned
    int64_t *max;
    size_t count;
    int64_t any;                 // `*=N`, or -1 = none
} limits_t;

// Parses a comma list of NAME=N (N in 1..1000000; a NAME given twice is
// refused).  Returns 0, or -1 with why in err; *out is filled either way
// and must be released.
int limits_parse(const char *list, limits_t *out, char *err, size_t len);
void limits_release(limits_t *self);
// The limit for model (NULL = ""), or -1 when it has none.
int64_t limits_of(const limits_t *self, const char *model);

#endif
