#!/bin/sh
# Each foreign library has one owner module (STYLE.md 2.2).  Fails, naming
# the file, when a header shows up anywhere else outside tests/.
set -u
cd "$(dirname "$0")/.."
status=0
check() { # header, extended regex of the files allowed to include it
    hits=$(grep -lE "#include *<$1" \
        common/*.[ch] proto/*.[ch] broker/*.[ch] drone/*.[ch] \
        architect/*.[ch] 2>/dev/null | grep -Ev "$2")
    if [ -n "$hits" ]; then
        echo "<$1> may only be included by $2, but is in: $hits"
        status=1
    fi
}
check 'sqlite3\.h' '^broker/ledger[a-z_]*\.c$'
check 'msgpack\.h' '^proto/codec[a-z_]*\.c$'
check 'curl/curl\.h' '^common/model\.c$'
check 'jansson\.h' '^common/json\.c$'
check 'ncurses\.h|curses\.h' '^architect/console\.c$'
check 'zmq\.h|czmq\.h' '^(proto/wire\.c|broker/router\.c|broker/auth\.c|broker/loop\.c|drone/drone\.c|architect/link\.c|common/keys\.c)$'
# fork/exec: the drone's runner (runner.c forks, runner_child.c is the
# child's side) and the broker's gate hook (hook.c); the harness is under
# tests/.
forks=$(grep -lE '\bfork *\(|\bexecv' common/*.c proto/*.c broker/*.c \
    drone/*.c architect/*.c | grep -vE '^(drone/runner(_child)?|broker/hook)\.c$')
if [ -n "$forks" ]; then
    echo "fork/exec outside drone/runner.c, runner_child.c and broker/hook.c: $forks"
    status=1
fi
[ $status = 0 ] && echo "include ownership: ok"
exit $status
