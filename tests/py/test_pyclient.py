#!/usr/bin/env python3
# e2e: the Python client (written from PROTOCOL.md alone) against the real
# broker.  A Python drone (its own key, tag "py") and a real C drone (tag
# "c") run a fan-out/fan-in plan submitted and followed by the Python
# console; the test checks every output, the ledger (one accepted attempt
# per task, each on the drone its tags sent it to) and that the Python
# side saw no frame that breaks the spec.
#
#   test_pyclient.py BUILD_DIR
import json
import os
import sys

import pyswarm
import waggle_client as wc

WORDS = 'alpha beta gamma delta'
SHARDS = 6
# Prints what PROTOCOL.md 7.6 gives a task: the input file, the WAGGLE_*
# variables, the byte count of WAGGLE_INPUT_WORDS (its newline is kept)
# and whether a WAGGLE_* setting of the drone leaked through.
ENV_SCRIPT = ('cat "$WAGGLE_INPUT_DIR/words"; '
              'echo "$WAGGLE_PLAN $WAGGLE_PLAN_NAME $WAGGLE_TASK '
              '$WAGGLE_TASK_TOKEN $WAGGLE_ATTEMPT"; '
              'printf "%s" "$WAGGLE_INPUT_WORDS" | wc -c; '
              'echo "leak=${WAGGLE_SECRET_SETTING:-none}"')

PLAN = {
    'name': 'pyfan',
    'goal': 'fan out over a Python and a C drone and back in',
    'defaults': {'timeout_s': 60, 'retries': 1},
    'tasks': [
        {'id': 'words', 'run': ['sh', '-c', "printf '%s\\n'" % WORDS]},
        # Built-in action of the Python drone, with an argv template.
        {'id': 'py-upper', 'needs': ['words'], 'requires': ['py'],
         'run': ['waggle-py:upper', '{{words.output}}']},
        # The environment of section 7.6, on each kind of drone.
        {'id': 'py-env', 'needs': ['words'], 'requires': ['py'],
         'run': ['sh', '-c', ENV_SCRIPT]},
        {'id': 'c-env', 'needs': ['words'], 'requires': ['c'],
         'run': ['sh', '-c', ENV_SCRIPT]},
        {'id': 'c-rev', 'needs': ['words'], 'requires': ['c'],
         'run': ['sh', '-c', "echo '{{words.output}}' | tr ' ' '\\n' | "
                 "sort -r | tr '\\n' ' '"]},
        {'id': 'c-len', 'needs': ['words'], 'requires': ['c'],
         'run': ['sh', '-c', 'wc -c < "$WAGGLE_INPUT_DIR/words"']},
    ] + [
        {'id': 'any-%d' % i, 'needs': ['words'],
         'run': ['sh', '-c', 'echo "$WAGGLE_TASK"']}
        for i in range(1, SHARDS + 1)
    ] + [
        {'id': 'join',
         'needs': ['py-upper', 'py-env', 'c-rev', 'c-len'] +
                  ['any-%d' % i for i in range(1, SHARDS + 1)],
         'run': ['sh', '-c', 'cd "$WAGGLE_INPUT_DIR" && cat *']},
    ],
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(swarm):
    swarm.start_broker()
    # A key of its own, written in the key-file format of PROTOCOL.md 2 and
    # admitted without a restart (SIGHUP rereads the allow lists).
    bundle = wc.add_client_key(swarm.keys, 'drone', 'pydrone')
    swarm.reload_keys()
    py = swarm.start_py_drone(bundle, 3, 'py')
    swarm.start_c_drone(3, 'c')
    con = swarm.console()
    pong = con.ping()
    check(pong['role'] == 'operator' and pong['name'] == 'operator',
          "PONG %r" % pong)

    def both_drones():
        names = sorted(d['name'] for d in con.status(0).get('drones') or [])
        return names == ['drone', 'pydrone']
    pyswarm.wait_for(both_drones, 20, "both drones in the overview")
    drones = {d['name']: d for d in con.status(0)['drones']}
    check(drones['pydrone']['tags'] == ['py'] and
          drones['pydrone']['slots'] == 3, "overview %r" % drones)

    sub = con.submit(json.dumps(PLAN))
    plan = sub['plan']
    check(sub['created'] is True, "created %r" % sub)
    state, st = con.wait(plan, timeout_s=90)
    check(state == 'succeeded', "plan ended %s: %r" % (state, st['tasks']))
    tasks = {t['id']: t for t in st['tasks']}
    check(len(tasks) == len(PLAN['tasks']), "task count")
    check(all(t['state'] == 'succeeded' for t in tasks.values()), "states")
    check(tasks['py-upper']['drone'] == 'pydrone', "py-upper ran on %r" %
          tasks['py-upper']['drone'])
    check(tasks['c-rev']['drone'] == 'drone', "c-rev ran on %r" %
          tasks['c-rev']['drone'])
    check(tasks['join']['needs'] == PLAN['tasks'][-1]['needs'], "needs")

    out = {t: con.output(plan, t)['data'] for t in tasks}
    check(out['words'] == (WORDS + '\n').encode(), "words %r" % out['words'])
    check(out['py-upper'] == (WORDS.upper() + '\n').encode(),
          "py-upper %r" % out['py-upper'])
    for tid in ('py-env', 'c-env'):
        lines = out[tid].decode().splitlines()
        want = [WORDS, '%d pyfan %s %d 1' % (plan, tid,
                                            swarm_token(swarm, plan, tid)),
                str(len(WORDS) + 1), 'leak=none']
        check([l.strip() for l in lines] == want, "%s printed %r, want %r" %
              (tid, lines, want))
    check(out['c-rev'] == b'gamma delta beta alpha ', "c-rev %r" %
          out['c-rev'])
    check(out['c-len'].strip() == str(len(WORDS) + 1).encode(), "c-len")
    for i in range(1, SHARDS + 1):
        check(out['any-%d' % i] == b'any-%d\n' % i, "any-%d" % i)
    want = b''.join(out[t] for t in sorted(PLAN['tasks'][-1]['needs']))
    check(out['join'] == want, "join %r" % out['join'])
    err = con.output(plan, 'py-env', stderr=True)
    check(err['data'] == b'', "py-env stderr %r" % err['data'])

    check_ledger(swarm, plan, len(PLAN['tasks']))
    con.close()
    check(not con.link.violations, "console saw violations")
    rc = swarm.end(py)
    check(rc == 0, "the python drone exited %s (3: it saw frames that "
          "break the spec; see pydrone.log)" % rc)


def swarm_token(swarm, plan, task):
    with swarm.ledger() as db:
        return db.execute("SELECT token FROM attempts WHERE plan_id = ? AND "
                          "tid = ? AND outcome = 'succeeded'",
                          (plan, task)).fetchone()[0]


def check_ledger(swarm, plan, n_tasks):
    with swarm.ledger() as db:
        rows = db.execute(
            "SELECT t.tid, t.state, COUNT(a.token), "
            " SUM(a.outcome = 'succeeded'), MIN(a.holder) "
            "FROM tasks t LEFT JOIN attempts a "
            " ON a.plan_id = t.plan_id AND a.tid = t.tid "
            "WHERE t.plan_id = ? GROUP BY t.tid", (plan,)).fetchall()
        accepted = db.execute(
            "SELECT COUNT(*) FROM tasks WHERE plan_id = ? AND "
            "accepted_attempt IS NOT NULL", (plan,)).fetchone()[0]
        pstate = db.execute("SELECT state FROM plans WHERE id = ?",
                            (plan,)).fetchone()[0]
    check(pstate == 'succeeded', "ledger plan state %s" % pstate)
    check(len(rows) == n_tasks, "ledger has %d tasks" % len(rows))
    check(accepted == n_tasks, "accepted attempts %d" % accepted)
    for tid, state, n, ok, holder in rows:
        check(state == 'succeeded', "ledger %s is %s" % (tid, state))
        check(ok == 1, "ledger %s has %s succeeded attempts" % (tid, ok))
        if tid.startswith('py-'):
            check(holder == 'pydrone', "%s held by %s" % (tid, holder))
        if tid.startswith('c-'):
            check(holder == 'drone', "%s held by %s" % (tid, holder))


def main():
    swarm = pyswarm.Swarm(os.path.abspath(sys.argv[1]))
    try:
        run(swarm)
    except BaseException:
        swarm.stop()
        swarm.dump_logs()
        raise
    bad = swarm.stop()
    if bad:
        swarm.dump_logs()
        sys.exit("processes did not stop cleanly: %s" % ', '.join(bad))
    swarm.remove()
    print("ok   pyclient: fan-out/fan-in on a Python and a C drone")


if __name__ == '__main__':
    main()
