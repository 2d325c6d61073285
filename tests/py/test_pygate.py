#!/usr/bin/env python3
# e2e: gates through the Python client (written from PROTOCOL.md alone).
# The gate's text is rebuilt here from section 7.10's description and must
# equal what OUTPUT serves; APPROVE carries its sha256; a submitter is
# FORBIDDEN (and so is a drone), a wrong hash is a CONFLICT, a REJECT without a note INVALID;
# the operator's approval lets the plan finish.
#
#   test_pygate.py BUILD_DIR
import hashlib
import json
import os
import sys

import pyswarm
import waggle_client as wc

PLAN = {
    'name': 'pygate',
    'tasks': [
        {'id': 'a', 'run': ['sh', '-c', 'echo alpha']},
        {'id': 'b', 'run': ['sh', '-c', 'printf beta']},
        {'id': 'g', 'needs': ['a', 'b'], 'gate': 'go on?'},
        {'id': 'c', 'needs': ['g'], 'run': ['echo', 'c']},
    ],
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect(code, fn, *args):
    try:
        fn(*args)
    except wc.BrokerError as e:
        check(e.code == code, "wanted %s, got %s" % (code, e))
        return
    raise AssertionError("wanted %s, got OK" % code)


def task_state(con, plan, task):
    for t in con.status(plan).get('tasks', []):
        if t['id'] == task:
            return t['state']
    return None


def run(swarm):
    swarm.start_broker()
    swarm.start_c_drone(2, 'c')
    con = swarm.console()
    sub = swarm.console('submitter')
    plan = con.submit(json.dumps(PLAN))['plan']
    pyswarm.wait_for(lambda: task_state(con, plan, 'g') ==
                     'awaiting_approval', 30, "gate g awaiting approval")
    shown = con.output(plan, 'g')
    check(shown['attempt'] == 0, "a gate's OUTPUT_OK has attempt 0")
    want = (b"question: go on?\n"
            b"\n--- 'a' (attempt 1) ---\nalpha\n"
            b"\n--- 'b' (attempt 1) ---\nbeta")
    check(shown['data'] == want, "gate text %r" % shown['data'])
    digest = hashlib.sha256(shown['data']).hexdigest()
    # The submitter may read it but never answer.
    check(sub.output(plan, 'g')['data'] == want, "submitter reads the gate")
    expect('FORBIDDEN', sub.approve, plan, 'g', digest)
    expect('FORBIDDEN', sub.reject, plan, 'g', digest, 'no')
    # Nor may a drone's key.
    drone = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'))
    m = drone.request('APPROVE', plan=plan, task='g', hash=digest)
    check(m['cmd'] == 'ERROR' and m['code'] == 'FORBIDDEN',
          "drone APPROVE: %r" % m)
    drone.close()
    expect('CONFLICT', con.approve, plan, 'g', '0' * 64)
    expect('INVALID', con.reject, plan, 'g', digest, '')
    expect('CONFLICT', con.approve, plan, 'a', digest)
    check(task_state(con, plan, 'g') == 'awaiting_approval', "still waits")
    con.approve(plan, 'g', digest, 'fine')
    state, st = con.wait(plan, 30)
    check(state == 'succeeded', "plan %s" % state)
    expect('CONFLICT', con.approve, plan, 'g', digest)
    con.close()
    sub.close()


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
    print("ok   pygate: approve bound to the sha256 of the gate's text")


if __name__ == '__main__':
    main()
