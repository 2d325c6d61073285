// loop: the broker's event loop — a registry of readable sources and of
// deadline sources, polled together (Redis ae.c in the small).
//
// Readable sources are file descriptors and ZeroMQ sockets: zmq_poll waits
// on both kinds at once.  Each has a read callback, or none when readiness
// only ends the wait and its owner reads in its own turn (the ROUTER).
// LOOP_QUIET sources (the ZAP handler) are served as they become readable
// but do not end the wait: the loop polls on until the same deadline.
//
// Deadline sources are queries, not armed timers: `next` returns the
// source's next deadline (monotonic ms) or -1, and is asked again before
// every wait.  The broker's deadlines (leases, not-before readiness, gate
// and hook timeouts, held requests) live in other structures and move at
// every transition; asking them keeps one truth and nothing to re-arm or
// cancel.  The registry is small (a handful of sources) and a query is
// cheap (the heap tops of sched), so a timer heap would only add a second
// copy to keep in sync.  A source with a `fire` callback is called once
// its deadline has passed; one without only bounds the wait (its owner
// acts in the turn that follows).
//
// It never reads or writes a source and owns none of them; callbacks run
// in the caller's thread inside loop_run_once, and may add or remove any
// source (their own included) safely, but not call loop_run_once.
#ifndef WAGGLE_LOOP_H
#define WAGGLE_LOOP_H

#include <stdint.h>

typedef struct loop loop_t;

// A readable source is ready: read (drain) it.  arg as registered.
typedef void(loop_read_fn)(loop_t *loop, void *arg);
// The source's next deadline in monotonic ms, or -1 for none.
typedef int64_t(loop_next_fn)(void *arg);
// The source's deadline has passed; now_ms is the loop's monotonic clock.
typedef void(loop_fire_fn)(loop_t *loop, void *arg, int64_t now_ms);

enum loop_flags {
    LOOP_QUIET = 1 << 0,  // served when readable, but does not end the wait
};

loop_t *loop_new(void);
// Frees the registry (never the sources).  A no-op on NULL.
void loop_destroy(loop_t **self_p);

// Registers fd (or a ZeroMQ socket) as readable source.  fn may be NULL:
// readiness then only ends the wait.  A LOOP_QUIET source needs an fn that
// drains it, or the loop polls it busily until the deadline.  Registering
// the same fd or socket twice is a bug.  fd and sock stay the caller's;
// remove them before closing them.
void loop_add_fd(loop_t *self, int fd, unsigned flags, loop_read_fn *fn,
                 void *arg);
void loop_add_socket(loop_t *self, void *sock, unsigned flags,
                     loop_read_fn *fn, void *arg);
// Unregisters; from a callback too (the source is not called again).
// Returns 0, or -1 when it was not registered.
int loop_remove_fd(loop_t *self, int fd);
int loop_remove_socket(loop_t *self, void *sock);

// Registers a deadline source.  fire may be NULL (a query that only bounds
// the wait).  Returns its id (> 0) for loop_remove_deadline.
int loop_add_deadline(loop_t *self, loop_next_fn *next, loop_fire_fn *fire,
                      void *arg);
// Returns 0, or -1 when no such id is registered.
int loop_remove_deadline(loop_t *self, int id);
// The earliest deadline of all sources (monotonic ms), or -1.
int64_t loop_next_deadline_ms(loop_t *self);

// One pass: waits until a non-quiet source is readable, the earliest
// deadline, max_wait_ms (-1: no cap) or a signal, whichever comes first;
// calls the read callbacks of the ready sources (registration order), then
// the fire callbacks of the due deadline sources (earliest first).
// Returns the wait it chose in ms (-1: unbounded), so that the caller can
// tell how far it overslept.
int64_t loop_run_once(loop_t *self, int64_t max_wait_ms);

#endif
