// clock: the two clocks Waggle reads.
//
// Monotonic milliseconds drive every in-memory deadline (lease renewals,
// heartbeats, timeouts); wall-clock epoch milliseconds are what the ledger
// stores.  Only event loops and main() read clocks: pure logic takes now_ms
// as an argument.
#ifndef WAGGLE_CLOCK_H
#define WAGGLE_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);  // CLOCK_MONOTONIC, ms
int64_t clock_mono_us(void);  // CLOCK_MONOTONIC, µs (durations to measure)
int64_t clock_wall_ms(void);  // CLOCK_REALTIME, ms since the epoch
// Formats epoch ms as "2026-01-02T03:04:05Z" into buf (at least 21 bytes).
void clock_format_utc(int64_t wall_ms, char *buf, int buflen);

#endif
