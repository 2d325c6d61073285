#!/usr/bin/env python3
# e2e: where PROTOCOL.md and the broker used to differ, probed on the wire
# by the Python client against the real broker.  Each probe names the
# section it checks.  No fixed sleeps: an absence ("not answered") is shown
# by a PING sent after the probe, whose PONG must be the next reply (a
# session's messages are handled and answered in order).
#
#   test_conformance.py BUILD_DIR
import json
import os
import sys
import time

import msgpack

import pyswarm
import waggle_client as wc

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        sys.stderr.write("FAIL: %s\n" % what)


def next_reply(link, timeout_ms=5000):
    """The next message that is not a broker HEARTBEAT."""
    deadline = time.monotonic() + timeout_ms / 1000.0
    while True:
        left = int((deadline - time.monotonic()) * 1000)
        m = link.recv(max(left, 0))
        if m is None or m['cmd'] != 'HEARTBEAT':
            return m


def ping_is_next(link, what):
    """Sends PING; the next reply must be its PONG (nothing came before)."""
    req = link.take_req()
    link.send('PING', req)
    m = next_reply(link)
    ok = m is not None and m['cmd'] == 'PONG' and m['req'] == req
    check(ok, "%s: expected nothing before PONG, got %r" % (what, m))


def raw_frame(pairs):
    """A frame from (key, packed value bytes) pairs, for what msgpack-python
    will not write (bad UTF-8)."""
    out = bytes([0x80 | len(pairs)])
    for k, v in pairs:
        out += msgpack.packb(k) + v
    return out


def envelope(cmd, req):
    return [('v', msgpack.packb(1)), ('cmd', msgpack.packb(cmd)),
            ('req', msgpack.packb(req))]


def error_for(link, frame, req, needle, what):
    link.sock.send(frame)
    m = next_reply(link)
    ok = (m is not None and m['cmd'] == 'ERROR' and
          m['code'] == 'MALFORMED' and m['req'] == req and
          needle in m['message'])
    check(ok, "%s: want ERROR MALFORMED req %d saying %r, got %r" %
          (what, req, needle, m))


def probe_decoding(con):
    link = con.link
    # 3.1: a float anywhere, even in a field nobody reads.
    error_for(link, wc.encode('PING', 41, future=1.5), 41, 'float',
              '3.1 float in an ignored field')
    error_for(link, wc.encode('PING', 42, future=[1, 2.5]), 42,
              "field 'future'", '3.1 float says where')
    # 3.1: a str that is not UTF-8.
    bad = raw_frame(envelope('PING', 43) + [('future', b'\xa2\xc3\x28')])
    error_for(link, bad, 43, 'UTF-8', '3.1 invalid UTF-8')
    # 4: a frame the bounded walk refuses still echoes its req.
    lie = raw_frame(envelope('PING', 44) + [('x', b'\xd9\x40abc')])
    error_for(link, lie, 44, 'declares', '4 req of a lying frame')
    # 2: a message of more than one part is dropped, not answered.
    link.sock.send_multipart([wc.encode('PING', 45), b'second part'])
    ping_is_next(link, '2 multi-part message')


def hello(link, instance, tags, leases=()):
    req = link.take_req()
    link.send('HELLO', req, instance=instance, slots=1, tags=tags,
              leases=list(leases))
    m = next_reply(link)
    check(m is not None and m['cmd'] == 'WELCOME' and m['req'] == req,
          "HELLO answered %r" % (m,))
    return m


def probe_heartbeats(swarm):
    link = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'),
                   drone=True)
    hello(link, 'probe-hb', [])
    # 6 HEARTBEAT: never answered, even when malformed.
    link.send('HEARTBEAT', 0, tokens='not an array')
    link.send('HEARTBEAT', 0, tokens=[-1])
    ping_is_next(link, '6 malformed HEARTBEAT')
    # 7.7 STOP: a HELLO listing a token this ledger never issued gets
    # STOP stale naming the plan and task the drone listed.
    hello(link, 'probe-hb', [], [{'plan': 7, 'task': 'ghost',
                                  'token': 987654321, 'finished': False}])
    m = next_reply(link)
    check(m is not None and m['cmd'] == 'STOP' and
          m['token'] == 987654321 and m['task'] == 'ghost' and
          m['plan'] == 7, "7.1 STOP for a listed unknown token: %r" % (m,))
    # A HEARTBEAT listing it names no task: no STOP with an empty task
    # (STOP's own schema wants 1..64 bytes); the decoder would flag one.
    link.send('HEARTBEAT', 0, tokens=[987654321])
    ping_is_next(link, '7.5 HEARTBEAT with a token never issued')
    check(not link.violations, "frames that break the spec: %r" %
          link.violations)
    link.close()


def wait_task(link, token_hb, timeout_s=20):
    """Waits for a TASK, heartbeating the tokens in token_hb meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        link.send('HEARTBEAT', 0, dontwait=True, tokens=sorted(token_hb))
        m = link.recv(100)
        if m is not None and m['cmd'] == 'TASK':
            return m
    return None


def result(link, task, outcome, exit_code):
    req = link.take_req()
    link.send('RESULT', req, plan=task['plan'], task=task['task'],
              token=task['token'], outcome=outcome, exit_code=exit_code)
    m = next_reply(link)
    return m


def probe_attempts(swarm, con):
    # TASK attempt is the attempt the task is on: a released push uses no
    # attempt and does not advance it; a failed one does.
    link = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'),
                   drone=True)
    hello(link, 'probe-att', ['probe'])
    plan = con.submit(json.dumps({
        'name': 'attempts', 'goal': 'attempt numbers',
        'tasks': [{'id': 'flaky', 'run': ['true'], 'requires': ['probe'],
                   'retries': 3}]}))['plan']
    seen = []
    for outcome, code in (('released', -1), ('released', -1),
                          ('failed', 1), ('succeeded', 0)):
        t = wait_task(link, set())
        check(t is not None, "a TASK for 'flaky' (after %s)" % seen)
        if t is None:
            break
        seen.append(t['attempt'])
        ack = result(link, t, outcome, code)
        check(ack is not None and ack['cmd'] == 'RESULT_ACK' and
              ack['status'] == 'accepted', "RESULT %s: %r" % (outcome, ack))
    check(seen == [1, 1, 1, 2], "7.6 TASK attempt numbers %r, want "
          "[1, 1, 1, 2]" % seen)
    st = con.status(plan)
    task = st['tasks'][0]
    check(task['state'] == 'succeeded' and task['attempts'] == 2,
          "status after two budget attempts: %r" % task)
    link.close()


def main():
    swarm = pyswarm.Swarm(os.path.abspath(sys.argv[1]))
    try:
        swarm.start_broker('--backoff-base-ms', '50', '--backoff-cap-ms',
                           '100')
        con = swarm.console()
        probe_decoding(con)
        probe_heartbeats(swarm)
        probe_attempts(swarm, con)
        check(not con.link.violations, "console saw frames that break the "
              "spec: %r" % con.link.violations)
        con.close()
    except BaseException:
        swarm.stop()
        swarm.dump_logs()
        raise
    check(not swarm.stop(), "processes did not stop cleanly")
    if FAILURES:
        swarm.dump_logs()
        sys.exit("%d conformance failures" % len(FAILURES))
    swarm.remove()
    print("ok   conformance: the broker does what PROTOCOL.md says")


if __name__ == '__main__':
    main()
