// backup: the 'waggle-broker backup' command — a consistent copy of a
// ledger while its broker runs (ledger_backup(), SQLite's backup API).
//
// It runs as a separate process beside the broker, opens the ledger
// read-only (no writer's lock: WAL lets it read while the broker writes)
// and needs no key, no socket and no protocol message: whoever can read
// the ledger file can copy it, and whoever cannot, cannot.  Never writes
// the ledger itself.
#ifndef WAGGLE_BACKUP_H
#define WAGGLE_BACKUP_H

// Exit status of backup_main (also in --help and the README).
enum backup_exit {
    BACKUP_EXIT_OK = 0,         // the copy is written and checked
    BACKUP_EXIT_FAILED = 1,     // copying, checking or renaming failed
    BACKUP_EXIT_LEDGER = 3,     // the ledger cannot be opened (as the broker)
    BACKUP_EXIT_USAGE = 64,     // bad options or arguments
};

// Runs 'backup [--db FILE] [--json] OUT' from argv[first] on (argv[first]
// is the word "backup"); db is the broker's --db (flag, WAGGLE_DB or its
// default), which a --db after the word overrides.  Prints a line (or a
// JSON object with --json) saying what was written; errors go to stderr
// (with --json also as {"error": ...} on stdout).  Returns an exit status.
int backup_main(const char *db, int argc, char **argv, int first);

#endif
