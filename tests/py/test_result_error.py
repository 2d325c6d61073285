#!/usr/bin/env python3
# e2e fault: what a drone hears when the broker cannot record its RESULT
# (PROTOCOL.md 7.8 and 7.9), with a real fault: the ledger on a small tmpfs
# that is filled up.  The RESULT must not be answered accepted, duplicate
# or stale (nothing was recorded): the answer is ERROR INTERNAL or
# RESULT_ACK error, and the drone keeps it.  Once there is room again, the
# same RESULT sent again is accepted, exactly once.  Needs root (mount);
# exits 77 (skipped) otherwise.
#
#   test_result_error.py BUILD_DIR
import json
import os
import signal
import subprocess
import sys
import time

import pyswarm
import waggle_client as wc

OUT = b'x' * 4095 + b'\n'   # the disk is full: any commit fails


def next_reply(link, token, timeout_s=15):
    """Heartbeats token until a reply that is not a HEARTBEAT arrives.
    Without a token, a STOP is skipped too: a heartbeat that listed the
    token just before its RESULT was accepted draws a legitimate STOP."""
    deadline = time.monotonic() + timeout_s
    skip = ('HEARTBEAT',) if token else ('HEARTBEAT', 'STOP')
    while time.monotonic() < deadline:
        link.send('HEARTBEAT', 0, dontwait=True, tokens=[token] if token
                  else [])
        m = link.recv(100)
        if m is not None and m['cmd'] not in skip:
            return m
    return None


def fill(path):
    """Writes zeros into path until the file system is full."""
    with open(path, 'wb') as f:
        try:
            while True:
                f.write(b'\0' * 65536)
                f.flush()
        except OSError:
            pass


def run(swarm, mnt):
    swarm.db = os.path.join(mnt, 'ledger.db')
    swarm.start_broker()
    con = swarm.console()
    link = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'),
                   drone=True)
    req = link.take_req()
    link.send('HELLO', req, instance='probe-disk', slots=1, tags=['probe'])
    m = next_reply(link, None)
    assert m and m['cmd'] == 'WELCOME', m
    plan = con.submit(json.dumps({
        'name': 'disk', 'goal': 'a result the ledger cannot take',
        'tasks': [{'id': 'big', 'run': ['true'], 'requires': ['probe']}]
    }))['plan']
    task = next_reply(link, None)
    assert task and task['cmd'] == 'TASK', task
    token = task['token']
    result = dict(plan=plan, task='big', token=token, outcome='succeeded',
                  exit_code=0, out=OUT)

    filler = os.path.join(mnt, 'filler')
    fill(filler)
    # A heartbeat in the same turn as the RESULT sees the lease already
    # finished in memory; that turn is not committed, so it must draw no
    # STOP (7.9): the ledger still holds the lease.  The broker is frozen
    # while the three messages go out so that one turn reads them all; the
    # PONG shows that nothing came before it.
    req, ping = link.take_req(), link.take_req()
    os.kill(swarm.broker.pid, signal.SIGSTOP)
    try:
        link.send('RESULT', req, **result)
        link.send('HEARTBEAT', 0, tokens=[token])
        link.send('PING', ping)
        # Our side's I/O thread must hand them to the kernel before the
        # broker wakes; nothing observable says when, hence this pause.
        time.sleep(0.3)
    finally:
        os.kill(swarm.broker.pid, signal.SIGCONT)
    m = next_reply(link, token)
    assert m is not None and m['req'] == req, m
    refused = (m['cmd'] == 'ERROR' and m['code'] == 'INTERNAL') or \
        (m['cmd'] == 'RESULT_ACK' and m['status'] == 'error')
    assert refused, "a RESULT the ledger could not take was answered %r" % m
    m = next_reply(link, token)
    assert m is not None and m['cmd'] == 'PONG' and m['req'] == ping, \
        "after a turn that was not committed: %r" % m
    st = con.status(plan)['tasks'][0]
    assert st['state'] == 'leased', "after the refusal: %r" % st

    os.unlink(filler)
    acks = []
    # Sent again it is accepted; a copy after that (a lost reply) is a
    # duplicate.  Once accepted the drone forgets the lease: no heartbeat
    # lists its token any more.
    for hb in (token, None):
        req = link.take_req()
        link.send('RESULT', req, **result)
        m = next_reply(link, hb)
        assert m is not None and m['cmd'] == 'RESULT_ACK', m
        acks.append(m['status'])
    assert acks == ['accepted', 'duplicate'], acks
    state, st = con.wait(plan, 20)
    assert state == 'succeeded', st
    assert con.output(plan, 'big')['data'] == OUT
    with swarm.ledger() as db:
        n = db.execute("SELECT COUNT(*) FROM attempts WHERE plan_id = ? AND "
                       "outcome = 'succeeded'", (plan,)).fetchone()[0]
    assert n == 1, "%d accepted attempts" % n
    assert not link.violations and not con.link.violations
    link.close()
    con.close()


def main():
    if os.geteuid() != 0:
        print("SKIP result_error: needs root to mount a tmpfs")
        sys.exit(77)
    swarm = pyswarm.Swarm(os.path.abspath(sys.argv[1]))
    mnt = os.path.join(swarm.dir, 'mnt')
    os.mkdir(mnt)
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m,mode=0755',
                       'tmpfs', mnt]).returncode != 0:
        print("SKIP result_error: cannot mount a tmpfs")
        sys.exit(77)
    try:
        run(swarm, mnt)
        bad = swarm.stop()
        assert not bad, "did not stop cleanly: %s" % bad
    except BaseException:
        swarm.stop()
        swarm.dump_logs()
        raise
    finally:
        subprocess.run(['umount', '-l', mnt])
    swarm.remove()
    print("ok   result_error: a RESULT the ledger cannot take is kept and "
          "accepted once later")


if __name__ == '__main__':
    main()
