// broker: the waggle-broker process — one writer of the ledger, the
// scheduler, the lease clock.
//
// It works in turns (DESIGN.md "The ledger"): read input, apply each
// transition to the ledger as a compare-and-set, fire timers, push work into
// free credit, commit the turn in one transaction, and only then send what
// depends on it.  broker_run() returns when *stop was set (from a signal
// handler); a failing ledger fails turns, it does not end the loop.
// SIGHUP reloads the allow lists.
#ifndef WAGGLE_BROKER_H
#define WAGGLE_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *bind;               // endpoint: tcp://127.0.0.1:7600, ipc://...
    char *db;                 // ledger file
    char *keys;               // key directory (reads DIR/broker)
    int64_t heartbeat_ms;     // both directions
    int64_t lease_ms;         // >= 3 x heartbeat_ms
    int64_t max_output;       // bytes of a task's stdout stored
    int64_t max_inputs;       // bytes of inputs carried by one TASK
    int64_t max_frame;        // bytes of one frame (ZMQ_MAXMSGSIZE)
    int64_t backoff_base_ms;  // first retry delay
    int64_t backoff_cap_ms;   // largest retry delay
    int64_t turn_msgs;        // messages read per turn at most
    int64_t turn_ms;          // milliseconds of reading per turn at most
    int64_t slow_turn_ms;     // log turns this long, by part (0: off)
    char *model_limit;        // comma list of NAME=N (limits.h), or NULL
    char *model_rpm;          // comma list of NAME=N: dispatches per window
    int64_t model_rpm_window_ms;  // that window; 0: BROKER_RPM_WINDOW_MS
    char *on_gate;            // sh -c command when a gate waits, or NULL
    int64_t on_gate_timeout_ms;  // the hook is killed after this long
    char *log_format;         // text | json
    char *metrics;            // HOST:PORT of the /metrics listener, or NULL
    bool verbose;
    bool list_metrics;        // --list-metrics: print them and exit
} broker_config_t;

// --model-rpm counts dispatches per minute; tests shorten the window with
// --model-rpm-window-ms.
#define BROKER_RPM_WINDOW_MS 60000

typedef struct broker broker_t;

// Why broker_open() failed: main() gives each its own exit status.
typedef enum {
    BROKER_OPEN_OK = 0,
    BROKER_OPEN_KEYS,         // the broker's keys are missing or unusable
    BROKER_OPEN_LEDGER,       // the ledger is locked, unreadable or unloadable
    BROKER_OPEN_BIND,         // ZAP or the bind failed (address in use...)
} broker_open_rc_t;

// Opens the ledger (taking its lock), loads keys, starts ZAP and binds.
// cfg is borrowed and must outlive the broker.  Returns BROKER_OPEN_OK, or
// what failed with why in err.
broker_open_rc_t broker_open(broker_t **out, const broker_config_t *cfg,
                             char *err, size_t errlen);
void broker_destroy(broker_t **self_p);
// The bound endpoint (with the real port when the bind asked for port 0).
const char *broker_endpoint(const broker_t *self);
// Runs turns until *stop becomes non-zero.  reload_fd, when >= 0, is the
// non-blocking read end of a pipe that a SIGHUP handler writes a byte to:
// the loop polls it, drains it and reloads the allow lists in its next
// turn (keyring.c).  Returns 0 once *stop is set: nothing at run time is
// fatal (a failed commit fails its turn and memory is rebuilt).
int broker_run(broker_t *self, volatile sig_atomic_t *stop, int reload_fd);

#endif
