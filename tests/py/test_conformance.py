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


def expect_error(link, cmd, code, needle, what, **fields):
    """Sends a request; its reply must be ERROR code echoing req."""
    req = link.take_req()
    link.send(cmd, req, **fields)
    m = next_reply(link)
    ok = (m is not None and m['cmd'] == 'ERROR' and m['code'] == code and
          m['req'] == req and needle in m['message'])
    check(ok, "%s: want ERROR %s req %d saying %r, got %r" %
          (what, code, req, needle, m))
    return m


def probe_envelope(con):
    link = con.link
    # 4 and 11: the version first, with the spec's sentence.
    error_for_code(link, wc.encode('PING', 51) .replace(b'\xa1v\x01',
                                                         b'\xa1v\x02'),
                   'BAD_VERSION', 51, 'protocol version 2 is not supported '
                   '(this side speaks 1)', '11 another version')
    error_for_code(link, wc.encode('FROB', 52), 'UNKNOWN_COMMAND', 52,
                   "unknown command 'FROB'", '4 unknown command')
    # 3.2: a duplicate key, a nil required field, an unknown field.
    dup = raw_frame(envelope('STATUS', 53) + [('plan', b'\x00'),
                                              ('plan', b'\x01')])
    error_for_code(link, dup, 'MALFORMED', 53, "'plan'", '3.2 duplicate key')
    expect_error(link, 'OUTPUT', 'MALFORMED', "field 'task'",
                 '3.2 nil required field', plan=1, task=None)
    req = link.take_req()
    link.send('PING', req, something_new={'nested': [1, 'x']})
    m = next_reply(link)
    check(m is not None and m['cmd'] == 'PONG' and m['req'] == req and
          m['role'] == 'operator' and m['name'] == 'operator',
          "3.2 unknown fields are ignored: %r" % (m,))


def error_for_code(link, frame, code, req, needle, what):
    link.sock.send(frame)
    m = next_reply(link)
    ok = (m is not None and m['cmd'] == 'ERROR' and m['code'] == code and
          m['req'] == req and needle in m['message'])
    check(ok, "%s: want ERROR %s req %d saying %r, got %r" %
          (what, code, req, needle, m))


def probe_roles(swarm):
    # 5: who may send what; a broker-only message is forbidden to all.
    sub = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'submitter'))
    expect_error(sub, 'HELLO', 'FORBIDDEN', 'HELLO', '5 submitter HELLO',
                 instance='x', slots=1)
    expect_error(sub, 'WELCOME', 'FORBIDDEN', 'WELCOME', '5 client WELCOME',
                 heartbeat_ms=1, lease_ms=3, max_output_bytes=1,
                 broker_id='b')
    sub.close()
    drone = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'),
                    drone=True)
    expect_error(drone, 'SUBMIT', 'FORBIDDEN', 'SUBMIT', '5 drone SUBMIT',
                 workplan='{}')
    # 7.1: drone messages before HELLO get HELLO_REQUIRED, req echoed.
    expect_error(drone, 'RESULT', 'HELLO_REQUIRED', '', '7.1 RESULT first',
                 plan=1, task='t', token=1, outcome='failed')
    expect_error(drone, 'UPDATE', 'HELLO_REQUIRED', '', '7.1 UPDATE first',
                 slots=1, draining=False)
    # 7.4: UPDATE and BYE get OK; after BYE the session needs HELLO again.
    hello(drone, 'probe-bye', [])
    for cmd, fields in (('UPDATE', {'slots': 2, 'draining': True}),
                        ('BYE', {})):
        req = drone.take_req()
        drone.send(cmd, req, **fields)
        m = next_reply(drone)
        check(m is not None and m['cmd'] == 'OK' and m['req'] == req,
              "7.4 %s answered %r" % (cmd, m))
    expect_error(drone, 'UPDATE', 'HELLO_REQUIRED', '', '7.4 after BYE',
                 slots=1, draining=False)
    check(not drone.violations, "drone link violations %r" %
          drone.violations)
    drone.close()


def probe_requests(con):
    # 7.10: the console's requests and their refusals.
    link = con.link
    expect_error(link, 'STATUS', 'NOT_FOUND', '', '7.10 unknown plan',
                 plan=999999)
    bad = json.dumps({'name': 'bad', 'goal': 'g', 'tasks': [
        {'id': 'a', 'needs': ['lgo'], 'run': ['true']}]})
    m = expect_error(link, 'SUBMIT', 'INVALID', '', '7.10 invalid workplan',
                     workplan=bad)
    details = (m or {}).get('details') or []
    check(any(d.startswith('tasks[0].needs[0]: ') for d in details),
          "7.10 INVALID details are 'path: message' lines: %r" % details)
    plan_text = json.dumps({'name': 'idem', 'goal': 'g', 'tasks': [
        {'id': 'a', 'run': ['true'], 'requires': ['nobody-has-this']}]})
    first = con.submit(plan_text, key='k-1')
    again = con.submit(plan_text, key='k-1')
    check(first['created'] is True and again['created'] is False and
          again['plan'] == first['plan'], "7.10 idempotent replay %r %r" %
          (first, again))
    warn = first.get('warnings') or []
    check(len(warn) == 1 and "no connected drone offers 'nobody-has-this'"
          in warn[0], "SUBMIT_OK warning %r" % warn)
    expect_error(link, 'SUBMIT', 'CONFLICT', '', '7.10 key reused',
                 workplan=plan_text.replace('idem', 'other'),
                 idempotency_key='k-1')
    plan = first['plan']
    expect_error(link, 'OUTPUT', 'NOT_FOUND', '', '7.10 no attempt yet',
                 plan=plan, task='a')
    expect_error(link, 'RETRY', 'CONFLICT', '', '7.10 retry a ready task',
                 plan=plan, task='a')
    expect_error(link, 'CANCEL', 'NOT_FOUND', '', '7.10 cancel unknown task',
                 plan=plan, task='zz')
    ok = con.cancel(plan)
    check(ok['cmd'] == 'OK', "CANCEL answered %r" % ok)
    st = con.status(plan)
    check(st['plans'][0]['state'] == 'cancelled' and
          st['tasks'][0]['state'] == 'cancelled', "after CANCEL %r" % st)
    expect_error(link, 'CANCEL', 'CONFLICT', 'cancelled',
                 '7.10 cancel an ended plan', plan=plan)
    expect_error(link, 'RETRY', 'CONFLICT', '', '7.10 retry in a cancelled '
                 'plan', plan=plan, task='a')


def hello(link, instance, tags, leases=(), slots=1):
    req = link.take_req()
    link.send('HELLO', req, instance=instance, slots=slots, tags=tags,
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


def probe_credit(swarm, con):
    # 7.3 and 7.4: pushes fill the free credit and no more; draining stops
    # them; the credit a RESULT frees is filled again once not draining.
    link = wc.Link(swarm.endpoint, wc.load_bundle(swarm.keys, 'drone'),
                   drone=True)
    hello(link, 'probe-credit', ['credit'], slots=2)
    con.submit(json.dumps({'name': 'credit', 'goal': 'credit', 'tasks': [
        {'id': 't%d' % i, 'run': ['true'], 'requires': ['credit']}
        for i in range(3)]}))
    held = [wait_task(link, set()), None]
    held[1] = wait_task(link, {held[0]['token']}) if held[0] else None
    check(all(held), "7.3 two TASKs for two slots: %r" % held)
    if not all(held):
        link.close()
        return
    tokens = {t['token'] for t in held}
    link.send('HEARTBEAT', 0, tokens=sorted(tokens))
    ping_is_next(link, '7.3 no third TASK for two slots')
    req = link.take_req()
    link.send('UPDATE', req, slots=2, draining=True)
    check((next_reply(link) or {}).get('cmd') == 'OK', "UPDATE draining")
    ack = result(link, held[0], 'succeeded', 0)
    check(ack is not None and ack.get('status') == 'accepted',
          "RESULT while draining %r" % (ack,))
    tokens.discard(held[0]['token'])
    link.send('HEARTBEAT', 0, tokens=sorted(tokens))
    ping_is_next(link, '7.4 no TASK while draining')
    req = link.take_req()
    link.send('UPDATE', req, slots=2, draining=False)
    check((next_reply(link) or {}).get('cmd') == 'OK', "UPDATE not draining")
    third = wait_task(link, tokens)
    check(third is not None, "7.3 the freed slot is filled again")
    check(not link.violations, "credit link violations %r" %
          link.violations)
    link.close()


def main():
    swarm = pyswarm.Swarm(os.path.abspath(sys.argv[1]))
    try:
        swarm.start_broker('--backoff-base-ms', '50', '--backoff-cap-ms',
                           '100')
        con = swarm.console()
        probe_decoding(con)
        probe_envelope(con)
        probe_roles(swarm)
        probe_requests(con)
        probe_heartbeats(swarm)
        probe_attempts(swarm, con)
        probe_credit(swarm, con)
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
