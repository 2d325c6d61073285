#!/usr/bin/env python3
# e2e fault: the broker is SIGKILLed twice while the Python drone (written
# from PROTOCOL.md alone) runs a plan.  The drone must notice (silence, or
# HELLO_REQUIRED), reconnect, say HELLO listing what it holds, resend its
# outbox, and the plan must finish with one accepted attempt per task and
# no frame that breaks the spec.
#
#   test_pyrestart.py BUILD_DIR
import json
import os
import sys

import pyswarm
import test_pyclient
import waggle_client as wc

TASKS = 6
PLAN = {
    'name': 'restart', 'goal': 'survive broker restarts',
    'defaults': {'timeout_s': 60, 'retries': 2},
    'tasks': [
        {'id': 'w-%d' % i, 'run': ['sh', '-c', 'sleep 0.5; echo %d' % i]}
        for i in range(TASKS)
    ] + [
        {'id': 'sum', 'needs': ['w-%d' % i for i in range(TASKS)],
         'run': ['sh', '-c', 'cat "$WAGGLE_INPUT_DIR"/w-* | '
                 'awk \'{s += $1} END {print s}\'']},
    ],
}


def leased(con, plan):
    st = con.status(plan)
    return any(t['state'] == 'leased' for t in st['tasks'])


def restart(swarm, con_box):
    swarm.broker.kill()
    swarm.broker.wait()
    swarm.procs.remove(swarm.broker)  # its exit -9 is ours, not a failure
    con_box[0].close()
    swarm.start_broker()
    con_box[0] = swarm.console()


def run(swarm):
    swarm.start_broker()
    bundle = wc.add_client_key(swarm.keys, 'drone', 'pydrone')
    swarm.reload_keys()
    py = swarm.start_py_drone(bundle, 2, '')
    con = [swarm.console()]
    plan = con[0].submit(json.dumps(PLAN))['plan']
    for _ in range(2):
        pyswarm.wait_for(lambda: leased(con[0], plan), 30, "a leased task")
        restart(swarm, con)
    state, st = con[0].wait(plan, timeout_s=120)
    assert state == 'succeeded', st['tasks']
    out = con[0].output(plan, 'sum')['data']
    assert out == b'%d\n' % sum(range(TASKS)), out
    test_pyclient.check_ledger(swarm, plan, len(PLAN['tasks']))
    con[0].close()
    rc = swarm.end(py)
    assert rc == 0, "the python drone exited %s (3: frames that break the " \
        "spec; see pydrone.log)" % rc


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
    print("ok   pyrestart: the Python drone rides through broker SIGKILLs")


if __name__ == '__main__':
    main()
