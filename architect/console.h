// console: the terminal under the dashboard — the only architect code that
// touches ncurses (tests/check_includes.sh).
//
// It draws a dash_t (dash.h: what each pane holds, its layout and lines)
// and reads keys; it decides nothing.  console_close() (endwin) is safe to
// call any number of times and runs at exit too, so the terminal is left
// clean on every way out; the caller turns SIGINT/SIGTERM into a normal
// return (ncurses keeps the handlers it finds installed), and SIGWINCH
// comes back from console_key() as CONSOLE_KEY_RESIZE.
#ifndef WAGGLE_CONSOLE_H
#define WAGGLE_CONSOLE_H

#include "architect/dash.h"

#include <stdint.h>

// Keys console_key() returns besides plain characters: Enter is '\n',
// Backspace 127, Esc 27.
enum {
    CONSOLE_KEY_NONE = -1,
    CONSOLE_KEY_UP = 0x1000,
    CONSOLE_KEY_DOWN,
    CONSOLE_KEY_PGUP,
    CONSOLE_KEY_PGDN,
    CONSOLE_KEY_RESIZE,
};

// Takes over the terminal.  -1 (nothing changed) when stdin or stdout is
// not a terminal.
int console_open(void);
// Gives the terminal back as it was (endwin).  Idempotent.
void console_close(void);
// The next key, or CONSOLE_KEY_NONE when none is waiting (never blocks).
int console_key(void);
// Draws the whole screen from d; now_ms (wall clock) for ages.
void console_draw(const dash_t *d, int64_t now_ms);

#endif
