#!/usr/bin/env python3
# waggle_client: a second, independent implementation of the Waggle
# protocol, written from proto/PROTOCOL.md alone (not from the C sources).
#
# It is a drone (HELLO, heartbeats listing its leases, TASK -> a built-in
# action or a subprocess, RESULT with the outbox rules of section 7.8, STOP)
# and a console (PING, SUBMIT, STATUS, wait by polling, OUTPUT, CANCEL,
# RETRY).  Every message it receives is checked against the tables of
# section 6; a broker message that breaks them is a protocol violation,
# logged with the word "VIOLATION" and counted, so a test can fail on it.
#
# Uses Debian's python3-zmq and python3-msgpack and nothing else outside
# the standard library.
#
#   waggle_client.py --keys DIR [--broker EP] drone [--slots N] [--tags A,B]
#                    [--name-role drone] [--instance ID]
#   waggle_client.py --keys DIR [--broker EP] [--role R] ping|submit FILE|
#                    status [PLAN]|wait PLAN|output PLAN TASK [--attempt N]
import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

VERSION = 1
FRAME_LIMIT = 64 * 1024 * 1024
ARGV_VALUE_LIMIT = 128 * 1024
ENV_VALUE_LIMIT = 128 * 1024 - 128  # WAGGLE_INPUT_<ID> is unset from here
ENV_INPUTS_LIMIT = 1024 * 1024      # ... and past this many bytes in all
KILL_GRACE_S = 2.0                  # SIGTERM to SIGKILL (section 7.6)
DRAIN_S = 1.0                       # pipes kept after the leader exits
U32 = 2 ** 32 - 1
U64 = 2 ** 64 - 1
I32 = (-2 ** 31, 2 ** 31 - 1)


class ProtocolError(Exception):
    """A frame that breaks PROTOCOL.md; the text says where."""


# ---------------------------------------------------------------------------
# Key files (PROTOCOL.md section 2, "Key files"): czmq zcert text files in
# ZPL.  We read curve/public-key and curve/secret-key (Z85, 40 characters).

def parse_zpl(text):
    """Parses ZPL into {"section/key": value}.  A line is a comment when
    its first non-blank character is '#'; a quoted value runs to its
    closing quote (Z85 keys hold '#'), an unquoted one to a '#'."""
    out, stack = {}, []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith('#'):
            continue
        indent = len(line) - len(line.lstrip(' '))
        if indent % 4:
            raise ValueError("line %d: indent is not a multiple of 4" % lineno)
        depth = indent // 4
        if depth > len(stack):
            raise ValueError("line %d: indented too far" % lineno)
        del stack[depth:]
        value = None
        if '=' in body:
            name, rest = (x.strip() for x in body.split('=', 1))
            if rest[:1] in ('"', "'"):
                end = rest.find(rest[0], 1)
                if end < 0:
                    raise ValueError("line %d: unterminated value" % lineno)
                value = rest[1:end]
            else:
                value = rest.split('#', 1)[0].strip()
        else:
            name = body.split('#', 1)[0].strip()
        stack.append(name)
        if value is not None:
            out['/'.join(stack)] = value
    return out


def load_cert(path, secret=False):
    """Returns (public_z85, secret_z85 or None) from a zcert file."""
    st = os.stat(path)
    if secret and st.st_mode & 0o077:
        raise ValueError("'%s' is readable by others" % path)
    with open(path, encoding='utf-8') as f:
        zpl = parse_zpl(f.read())
    public = zpl.get('curve/public-key')
    if not public or len(public) != 40:
        raise ValueError("'%s' is not a CURVE certificate" % path)
    sec = zpl.get('curve/secret-key')
    if secret:
        if not sec or len(sec) != 40:
            raise ValueError("'%s' holds no secret key" % path)
        if zmq.curve_public(sec.encode()).decode() != public:
            raise ValueError("'%s': secret and public key differ" % path)
    return public, sec


def write_cert(path, public, secret=None, name=None):
    """Writes a zcert file (0600 when it holds a secret)."""
    lines = ["#   ZeroMQ CURVE %s Certificate" %
             ("**Secret**" if secret else "Public"), "", "metadata"]
    if name:
        lines.append('    name = "%s"' % name)
    lines += ["curve", '    public-key = "%s"' % public]
    if secret:
        lines.append('    secret-key = "%s"' % secret)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                 0o600 if secret else 0o644)
    with os.fdopen(fd, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def load_bundle(keys_dir, role):
    """DIR/ROLE: its one NAME.key_secret and broker.key."""
    rdir = os.path.join(keys_dir, role)
    names = sorted(n[:-len('.key_secret')] for n in os.listdir(rdir)
                   if n.endswith('.key_secret'))
    if len(names) != 1 or names[0] == 'broker':
        raise ValueError("'%s' must hold exactly one client secret key" % rdir)
    public, secret = load_cert(os.path.join(rdir, names[0] + '.key_secret'),
                               secret=True)
    server, _ = load_cert(os.path.join(rdir, 'broker.key'))
    return {'name': names[0], 'public': public, 'secret': secret,
            'server': server}


def add_client_key(keys_dir, role, name):
    """Makes DIR/NAME (a bundle for ROLE) and admits it in DIR/broker."""
    public, secret = (k.decode() for k in zmq.curve_keypair())
    bdir = os.path.join(keys_dir, name)
    os.makedirs(bdir, mode=0o700)
    write_cert(os.path.join(bdir, name + '.key_secret'), public, secret, name)
    write_cert(os.path.join(bdir, name + '.key'), public)
    server, _ = load_cert(os.path.join(keys_dir, 'broker', 'broker.key'))
    write_cert(os.path.join(bdir, 'broker.key'), server)
    write_cert(os.path.join(keys_dir, 'broker', 'allow', role, name + '.key'),
               public)
    return bdir


# ---------------------------------------------------------------------------
# Encoding (sections 3 and 4)

def encode(cmd, req=0, **fields):
    body = {'v': VERSION, 'cmd': cmd, 'req': req}
    body.update(fields)
    return msgpack.packb(body, use_bin_type=True)


def _no_dup_pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ProtocolError("key %r appears twice in one map" % (k,))
        out[k] = v
    return out


def _no_ext(code, data):
    raise ProtocolError("ext type %d in a frame" % code)


def _scan(obj, path):
    # Section 3.1: no floats anywhere, map keys are str, no NUL in str.
    if isinstance(obj, float):
        raise ProtocolError("%s: a float" % path)
    if isinstance(obj, str) and '\0' in obj:
        raise ProtocolError("%s: NUL byte in a str" % path)
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ProtocolError("%s: a map key that is not a str" % path)
            _scan(v, path + '.' + k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _scan(v, '%s[%d]' % (path, i))


def decode(frame):
    """Decodes and checks one frame; returns the message map."""
    if len(frame) > FRAME_LIMIT:
        raise ProtocolError("frame over the frame limit")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True,
                              object_pairs_hook=_no_dup_pairs,
                              ext_hook=_no_ext, use_list=True)
    except ProtocolError:
        raise
    except UnicodeDecodeError:
        raise ProtocolError("a str that is not UTF-8")
    except Exception as e:  # msgpack's ExtraData, FormatError, ValueError...
        raise ProtocolError("not one msgpack object: %s" % e)
    if not isinstance(msg, dict):
        raise ProtocolError("the frame is not a map")
    _scan(msg, 'frame')
    for name in ('v', 'cmd', 'req'):
        if msg.get(name) is None:
            raise ProtocolError("missing field '%s'" % name)
    if msg['v'] != VERSION or not _is_int(msg['v']):
        raise ProtocolError("version %r" % (msg['v'],))
    if not isinstance(msg['cmd'], str) or msg['cmd'] not in SCHEMA:
        raise ProtocolError("unknown command %r" % (msg['cmd'],))
    _check_uint(msg['req'], 'req', 0, U64)
    _check_record(msg, SCHEMA[msg['cmd']], msg['cmd'])
    return msg


def _is_int(x):
    return type(x) is int  # bool is an int subclass in Python


def _check_uint(x, path, lo, hi):
    if not _is_int(x) or x < 0:
        raise ProtocolError("%s: expected an unsigned integer" % path)
    if not lo <= x <= hi:
        raise ProtocolError("%s: %d out of %d..%d" % (path, x, lo, hi))


# Field specs: name -> (type, required, lo, hi).  For str, bin and arrays
# lo/hi bound the length; for integers the value.  ('array', T) and
# ('map', T) nest; a dict is a record.
def _f(t, req=False, lo=None, hi=None):
    return (t, req, lo, hi)


LEASE = {'plan': _f('plan', True), 'task': _f('str', True, 1, 64),
         'token': _f('uint', True, 0, U64), 'finished': _f('bool')}
INPUT = {'id': _f('str', True, 1, 64), 'data': _f('bin', True),
         'truncated': _f('bool')}
PLAN_INFO = {'id': _f('plan', True), 'name': _f('str'),
             'state': _f(('enum', 'running', 'succeeded', 'failed',
                          'cancelled'), True),
             'submitted_by': _f('str', False, 0, 255),
             'created_ms': _f('int'), 'finished_ms': _f('int'),
             'counts': _f(('map', ('uint', 0, U32)))}
TASK_STATES = ('waiting', 'ready', 'leased', 'awaiting_approval',
               'succeeded', 'dead', 'rejected', 'blocked', 'cancelled')
TASK_INFO = {'id': _f('str', True, 1, 64),
             'state': _f(('enum',) + TASK_STATES, True),
             'kind': _f(('enum', 'run', 'prompt', 'gate'), True),
             'attempts': _f('uint', False, 0, U32),
             'drone': _f('str', False, 0, 255),
             'exit_code': _f('int', False, *I32), 'last_error': _f('str'),
             'waiting_reason': _f('str'),
             'needs': _f(('array', ('str', 1, 64)))}
DRONE_TASK = {'plan': _f('plan', True, 1, None),
              'task': _f('str', True, 1, 64)}
DRONE_INFO = {'instance': _f('str', True, 1, 64),
              'name': _f('str', True, 1, 255),
              'host': _f('str', False, 0, 255),
              'slots': _f('uint', True, 0, 1024),
              'leases': _f('uint', False, 0, U32), 'draining': _f('bool'),
              'tags': _f(('array', ('str', 1, 64)), False, 0, 64),
              'last_seen_ms': _f('int'),
              'quarantined': _f('bool'),
              'tasks': _f(('array', DRONE_TASK))}
ERROR_CODES = ('MALFORMED', 'BAD_VERSION', 'UNKNOWN_COMMAND', 'TOO_LARGE',
               'FORBIDDEN', 'HELLO_REQUIRED', 'NOT_FOUND', 'CONFLICT',
               'INVALID', 'UNSUPPORTED', 'INTERNAL')

SCHEMA = {
    'HELLO': {'instance': _f('str', True, 1, 64),
              'host': _f('str', False, 0, 255),
              'version': _f('str', False, 0, 255),
              'slots': _f('uint', True, 0, 1024),
              'tags': _f(('array', ('str', 1, 64)), False, 0, 64),
              'draining': _f('bool'),
              'leases': _f(('array', LEASE), False, 0, 4096),
              'secret': _f('str', False, 1, 128)},
    'WELCOME': {'heartbeat_ms': _f('uint', True, 1, U32),
                'lease_ms': _f('uint', True, 1, U32),
                'max_output_bytes': _f('uint', True, 0, U64),
                'broker_id': _f('str', True, 1, 255),
                'secret': _f('str', False, 1, 128)},
    'HEARTBEAT': {'tokens': _f(('array', ('uint', 0, U64)), False, 0, 4096)},
    'TASK': {'plan': _f('plan', True), 'plan_name': _f('str'),
             'task': _f('str', True, 1, 64),
             'token': _f('uint', True, 0, U64),
             'attempt': _f('uint', True, 1, U32),
             'argv': _f(('array', ('str', 0, None)), True, 1, None),
             'env': _f(('map', ('str', 0, None))),
             'cwd': _f('str', False, 1, None),
             'timeout_s': _f('uint', False, 0, U32),
             'inputs': _f(('array', INPUT))},
    'STOP': {'plan': _f('plan', True), 'task': _f('str', True, 1, 64),
             'token': _f('uint', True, 0, U64),
             'reason': _f(('enum', 'stale', 'cancelled', 'expired',
                           'timeout'))},
    'RESULT': {'plan': _f('plan', True), 'task': _f('str', True, 1, 64),
               'token': _f('uint', True, 0, U64),
               'outcome': _f(('enum', 'succeeded', 'failed', 'released'),
                             True)},
    'RESULT_ACK': {'plan': _f('plan', True), 'task': _f('str', True, 1, 64),
                   'token': _f('uint', True, 0, U64),
                   'status': _f(('enum', 'accepted', 'duplicate', 'stale',
                                 'error'), True),
                   'message': _f('str')},
    'UPDATE': {}, 'BYE': {}, 'PING': {},
    'PONG': {'role': _f('str', True, 1, 255), 'name': _f('str', True, 1, 255),
             'version': _f('str', True, 0, 255)},
    'SUBMIT': {},
    'SUBMIT_OK': {'plan': _f('plan', True, 1, None),
                  'created': _f('bool', True),
                  'warnings': _f(('array', ('str', 0, None)), False, 0, 16)},
    'STATUS': {},
    'STATUS_OK': {'plans': _f(('array', PLAN_INFO)),
                  'tasks': _f(('array', TASK_INFO)),
                  'drones': _f(('array', DRONE_INFO)),
                  'more': _f('bool')},
    'CANCEL': {}, 'RETRY': {}, 'OUTPUT': {}, 'APPROVE': {}, 'REJECT': {},
    'OUTPUT_OK': {'plan': _f('plan', True), 'task': _f('str', True, 1, 64),
                  'attempt': _f('uint', True, 0, U32),
                  'data': _f('bin', True), 'truncated': _f('bool')},
    'OK': {'message': _f('str')},
    'ERROR': {'code': _f(('enum',) + ERROR_CODES, True),
              'message': _f('str', True),
              'details': _f(('array', ('str', 0, None)))},
}


def _check_len(n, path, lo, hi):
    if lo is not None and n < lo or hi is not None and n > hi:
        raise ProtocolError("%s: length %d out of %s..%s" % (path, n, lo, hi))


def _check_value(x, t, path, lo=None, hi=None):
    if isinstance(t, dict):
        if not isinstance(x, dict):
            raise ProtocolError("%s: expected a record" % path)
        _check_record(x, t, path)
    elif isinstance(t, tuple) and t[0] == 'enum':
        if not isinstance(x, str) or x not in t[1:]:
            raise ProtocolError("%s: %r is not one of %s" % (path, x, t[1:]))
    elif isinstance(t, tuple) and t[0] == 'array':
        if not isinstance(x, list):
            raise ProtocolError("%s: expected an array" % path)
        _check_len(len(x), path, lo, hi)
        for i, item in enumerate(x):
            _check_item(item, t[1], '%s[%d]' % (path, i))
    elif isinstance(t, tuple) and t[0] == 'map':
        if not isinstance(x, dict):
            raise ProtocolError("%s: expected a map" % path)
        for k, v in x.items():
            _check_item(v, t[1], '%s.%s' % (path, k))
    elif t == 'uint':
        _check_uint(x, path, lo or 0, U64 if hi is None else hi)
    elif t == 'plan':
        _check_uint(x, path, lo or 0, 2 ** 63 - 1)
    elif t == 'int':
        if not _is_int(x):
            raise ProtocolError("%s: expected an integer" % path)
        if lo is not None and not lo <= x <= hi:
            raise ProtocolError("%s: %d out of range" % (path, x))
    elif t == 'str':
        if not isinstance(x, str):
            raise ProtocolError("%s: expected a str" % path)
        _check_len(len(x.encode()), path, lo, hi)
    elif t == 'bin':
        if not isinstance(x, bytes):
            raise ProtocolError("%s: expected a bin" % path)
        _check_len(len(x), path, lo, hi)
    elif t == 'bool':
        if not isinstance(x, bool):
            raise ProtocolError("%s: expected a bool" % path)


def _check_item(x, spec, path):
    # Items of arrays and maps are (type, lo, hi), a record or a bare type.
    if isinstance(spec, tuple) and spec[0] in ('str', 'uint', 'bin'):
        _check_value(x, spec[0], path, spec[1], spec[2])
    else:
        _check_value(x, spec, path)


def _check_record(m, spec, path):
    for name, (t, required, lo, hi) in spec.items():
        x = m.get(name)
        if x is None:
            if required:
                raise ProtocolError("%s: missing field '%s'" % (path, name))
            continue
        _check_value(x, t, '%s.%s' % (path, name), lo, hi)


# ---------------------------------------------------------------------------
# A connection: one DEALER socket with CurveZMQ, as section 2 recommends.

class Link:
    def __init__(self, endpoint, bundle, drone=False):
        self.endpoint, self.bundle, self.drone = endpoint, bundle, drone
        self.ctx = zmq.Context.instance()
        self.sock = None
        self.next_req = 1
        self.violations = []
        self.open()

    def open(self):
        s = self.ctx.socket(zmq.DEALER)
        s.curve_secretkey = self.bundle['secret'].encode()
        s.curve_publickey = self.bundle['public'].encode()
        s.curve_serverkey = self.bundle['server'].encode()
        s.setsockopt(zmq.MAXMSGSIZE, FRAME_LIMIT)
        s.setsockopt(zmq.LINGER, 200)
        s.setsockopt(zmq.HANDSHAKE_IVL, 3000)
        # With IMMEDIATE and no connection (the broker is down, or refused
        # our key) a send would block for ever: give up after a second and
        # let the state machine retry.
        s.setsockopt(zmq.SNDTIMEO, 1000)
        if self.drone:
            s.setsockopt(zmq.IMMEDIATE, 1)
        s.connect(self.endpoint)
        self.sock = s

    def reopen(self):
        self.sock.close(linger=0)
        self.open()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def take_req(self):
        r = self.next_req
        self.next_req += 1
        return r

    def send(self, cmd, req=0, dontwait=False, **fields):
        frame = encode(cmd, req, **fields)
        try:
            self.sock.send(frame, zmq.DONTWAIT if dontwait else 0)
            return True
        except zmq.Again:
            return False

    def send_raw(self, parts):
        self.sock.send_multipart(parts)

    def recv(self, timeout_ms):
        """The next valid message, or None on timeout.  A frame that breaks
        the spec is logged as a violation and skipped."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0 or not self.sock.poll(left, zmq.POLLIN):
                return None
            parts = self.sock.recv_multipart()
            if len(parts) != 1:
                self.violation("a message of %d parts" % len(parts))
                continue
            try:
                return decode(parts[0])
            except ProtocolError as e:
                self.violation("%s (frame %s)" % (e, parts[0][:64].hex()))

    def violation(self, what):
        self.violations.append(what)
        log("VIOLATION: %s" % what)

    def request(self, cmd, timeout_ms=5000, **fields):
        """Sends a request and waits for the reply with its req."""
        req = self.take_req()
        self.send(cmd, req, **fields)
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            m = self.recv(max(left, 0))
            if m is None:
                raise TimeoutError("no reply to %s within %d ms" %
                                   (cmd, timeout_ms))
            if m['req'] == req:
                return m
            if m['cmd'] != 'HEARTBEAT':
                log("console: ignored %s req %d" % (m['cmd'], m['req']))


def log(text):
    sys.stderr.write("%s pyclient[%d]: %s\n" %
                     (time.strftime('%H:%M:%S'), os.getpid(), text))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# The console (section 7.10)

class BrokerError(Exception):
    def __init__(self, reply):
        Exception.__init__(self, "%s: %s" % (reply['code'], reply['message']))
        self.code = reply['code']
        self.reply = reply


class Console:
    def __init__(self, endpoint, bundle):
        self.link = Link(endpoint, bundle)

    def call(self, cmd, want, timeout_ms=10000, **fields):
        m = self.link.request(cmd, timeout_ms, **fields)
        if m['cmd'] == 'ERROR':
            raise BrokerError(m)
        if m['cmd'] != want:
            self.link.violation("%s answered with %s" % (cmd, m['cmd']))
            raise ProtocolError("%s answered with %s" % (cmd, m['cmd']))
        return m

    def ping(self):
        return self.call('PING', 'PONG')

    def submit(self, workplan_text, key=None):
        return self.call('SUBMIT', 'SUBMIT_OK', workplan=workplan_text,
                         idempotency_key=key)

    def status(self, plan=0, summary=False):
        """STATUS; a big plan's tasks come in pages (section 7.10): they
        are gathered here into one reply."""
        st = self.call('STATUS', 'STATUS_OK', plan=plan, summary=summary)
        while plan and st.get('more'):
            page = self.call('STATUS', 'STATUS_OK', plan=plan,
                             offset=len(st.get('tasks', [])))
            if not page.get('tasks'):
                break
            st.setdefault('tasks', []).extend(page['tasks'])
            st['more'] = page.get('more', False)
        return st

    def output(self, plan, task, attempt=0, stderr=False):
        return self.call('OUTPUT', 'OUTPUT_OK', plan=plan, task=task,
                         attempt=attempt, want_stderr=stderr)

    def cancel(self, plan, task=None):
        return self.call('CANCEL', 'OK', plan=plan, task=task)

    def retry(self, plan, task):
        return self.call('RETRY', 'OK', plan=plan, task=task)

    def approve(self, plan, task, hash_hex, note=None):
        return self.call('APPROVE', 'OK', plan=plan, task=task, note=note,
                         hash=hash_hex)

    def reject(self, plan, task, hash_hex, note):
        return self.call('REJECT', 'OK', plan=plan, task=task, note=note,
                         hash=hash_hex)

    def wait(self, plan, timeout_s=60, poll_s=0.2):
        """Polls STATUS until the plan is no longer running."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.status(plan, summary=True)
            state = st['plans'][0]['state']
            if state != 'running' or time.monotonic() > deadline:
                return state, self.status(plan)
            time.sleep(poll_s)

    def close(self):
        self.link.close()


# ---------------------------------------------------------------------------
# Running a TASK (section 7.6)

def expand_template(item, values):
    """Expands {{id.output}} and {{{{ in one argv item (bytes).  Raises
    ValueError naming the template when it names no input."""
    out, i = bytearray(), 0
    s = item.encode()
    while i < len(s):
        if s.startswith(b'{{{{', i):
            out += b'{{'
            i += 4
        elif s.startswith(b'{{', i):
            end = s.find(b'}}', i + 2)
            ref = s[i + 2:end] if end >= 0 else b''
            name = ref[:-len(b'.output')] if ref.endswith(b'.output') else None
            if end < 0 or name is None or name.decode() not in values:
                raise ValueError("template '%s' names no input" %
                                 s[i:end + 2 if end >= 0 else len(s)]
                                 .decode(errors='replace'))
            v = values[name.decode()]
            if b'\0' in v:
                raise ValueError("input '%s' holds a NUL byte" % name.decode())
            out += v[:-1] if v.endswith(b'\n') else v
            i = end + 2
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def _tail(data, cap):
    return (data[-cap:], True) if cap is not None and len(data) > cap \
        else (data, False)


BUILTINS = {
    # waggle-py:upper ARG...: the arguments joined by spaces, upper case.
    'waggle-py:upper': lambda args, env: (b' '.join(args).upper() + b'\n', 0),
    # waggle-py:count ARG...: the number of words in the arguments.
    'waggle-py:count': lambda args, env:
        (b'%d\n' % len(b' '.join(args).split()), 0),
    # waggle-py:env NAME...: NAME=value per line from the child environment.
    'waggle-py:env': lambda args, env:
        (b''.join(b'%s=%s\n' % (a, env.get(a.decode(), '').encode())
                  for a in args), 0),
    # waggle-py:fail CODE: exits with CODE.
    'waggle-py:fail': lambda args, env: (b'', int(args[0]) if args else 1),
}


class Attempt(threading.Thread):
    """One TASK, run on a thread so the socket loop never blocks; the
    result goes to done (a queue) as RESULT fields."""

    def __init__(self, task, max_output, stderr_cap, workdir, done):
        threading.Thread.__init__(self, daemon=True)
        self.t, self.max_output, self.stderr_cap = task, max_output, stderr_cap
        self.workdir, self.done = workdir, done
        self.proc = None
        self.stopped = threading.Event()

    def result(self, outcome, **kw):
        r = {'plan': self.t['plan'], 'task': self.t['task'],
             'token': self.t['token'], 'outcome': outcome, 'exit_code': -1,
             'signal': 0, 'timed_out': False, 'error': None, 'out': b'',
             'out_truncated': False, 'err': b'', 'err_truncated': False,
             'started_ms': int(time.time() * 1000), 'duration_ms': 0}
        r.update(kw)
        return r

    def prepare(self, indir):
        """argv (bytes) and environment, or raises ValueError (why)."""
        t = self.t
        values = {}
        # The drone's own WAGGLE_* settings are not the task's business.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('WAGGLE_')}
        env.update(t.get('env') or {})
        env_left = ENV_INPUTS_LIMIT
        for inp in t.get('inputs') or []:
            if inp.get('truncated'):
                raise ValueError("input '%s' was truncated" % inp['id'])
            values[inp['id']] = inp['data']
            with open(os.path.join(indir, inp['id']), 'wb') as f:
                f.write(inp['data'])
            var = 'WAGGLE_INPUT_' + inp['id'].upper().replace('-', '_')
            data = inp['data']
            if (len(data) < ENV_VALUE_LIMIT and len(data) <= env_left
                    and b'\0' not in data):
                env[var] = data.decode(errors='surrogateescape')
                env_left -= len(data)
        argv = []
        for item in t['argv']:
            v = expand_template(item, values)
            if len(v) > ARGV_VALUE_LIMIT:
                raise ValueError("argv item over %d bytes" % ARGV_VALUE_LIMIT)
            argv.append(v)
        env.update({'WAGGLE_PLAN': str(t['plan']),
                    'WAGGLE_PLAN_NAME': t.get('plan_name') or '',
                    'WAGGLE_TASK': t['task'],
                    'WAGGLE_TASK_TOKEN': str(t['token']),
                    'WAGGLE_ATTEMPT': str(t['attempt']),
                    'WAGGLE_INPUT_DIR': indir})
        return argv, env

    def run(self):
        started = time.time()
        with tempfile.TemporaryDirectory(prefix='pyclient-in-') as indir:
            try:
                argv, env = self.prepare(indir)
            except ValueError as e:
                self.done.put((self.t['token'], self.result('failed',
                                                            error=str(e))))
                return
            r = self.execute(argv, env)
        if self.stopped.is_set():
            r = None  # STOP: a child killed this way has no RESULT
        if r is not None:
            r['started_ms'] = int(started * 1000)
            r['duration_ms'] = int((time.time() - started) * 1000)
        self.done.put((self.t['token'], r))

    def execute(self, argv, env):
        builtin = BUILTINS.get(argv[0].decode(errors='replace'))
        if builtin:
            out, code = builtin(argv[1:], env)
            out, cut = _tail(out, self.max_output)
            return self.result('succeeded' if code == 0 else 'failed',
                               exit_code=code, out=out, out_truncated=cut)
        try:
            self.proc = subprocess.Popen(
                argv, env={k.encode(): v.encode(errors='surrogateescape')
                           for k, v in env.items()},
                cwd=self.t.get('cwd') or self.workdir,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
                close_fds=True)
        except OSError as e:
            return self.result('failed', error="cannot run '%s': %s" %
                               (argv[0].decode(errors='replace'), e.strerror))
        out, err, timed_out = self.wait_child()
        if self.stopped.is_set():
            return None  # STOP: a child killed this way has no RESULT
        code = self.proc.returncode
        out, out_cut = _tail(out, self.max_output)
        err, err_cut = _tail(err, self.stderr_cap)
        ok = code == 0 and not timed_out
        return self.result('succeeded' if ok else 'failed',
                           exit_code=code if code >= 0 else -1,
                           signal=-code if code < 0 else 0,
                           timed_out=timed_out, out=out,
                           out_truncated=out_cut, err=err,
                           err_truncated=err_cut)

    def wait_child(self):
        """Drains both pipes until the task is finished (section 7.6): its
        leader exited and the pipes closed, or DRAIN_S after the exit.  At
        timeout_s (or on STOP): SIGTERM to the group, SIGKILL after
        KILL_GRACE_S."""
        timeout = self.t.get('timeout_s') or 0
        start = time.monotonic()
        timed_out, term_at, exit_at = False, None, None
        while True:
            try:
                out, err = self.proc.communicate(timeout=0.1)
                return out, err, timed_out
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.proc.poll() is not None:
                # Something the leader started still holds the pipes: the
                # group has live members, so its id is still theirs.
                exit_at = exit_at or now
                if now - exit_at >= DRAIN_S:
                    self.signal(signal.SIGKILL)
                continue
            stop = self.stopped.is_set()
            if term_at is None and (stop or timeout and
                                    now - start >= timeout):
                timed_out = not stop
                term_at = now
                self.signal(signal.SIGTERM)
            elif term_at is not None and now - term_at >= KILL_GRACE_S:
                self.signal(signal.SIGKILL)

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self):
        self.stopped.set()  # wait_child ends the child


# ---------------------------------------------------------------------------
# The drone (sections 7.1 to 7.8)

class Drone:
    def __init__(self, endpoint, bundle, slots=1, tags=(), instance=None,
                 workdir=None, stderr_cap=64 * 1024):
        self.link = Link(endpoint, bundle, drone=True)
        self.instance = instance or os.urandom(8).hex()
        self.slots, self.tags = slots, list(tags)
        self.workdir = workdir or os.getcwd()
        self.stderr_cap = stderr_cap
        self.leases = {}     # token -> {'plan','task','finished','attempt'}
        self.outbox = {}     # token -> RESULT fields
        self.sent_at = {}    # token -> when its RESULT was last sent
        self.pending = {}    # req -> ('HELLO'|'RESULT'|'BYE', token)
        self.done = queue.Queue()
        self.state = 'CONNECTED'
        self.hb_ms, self.lease_ms, self.max_output = 1000, 10000, 1024 * 1024
        self.broker_id = None
        self.secret = None   # the session secret from WELCOME (7.1)
        self.last_heard = time.monotonic()
        self.next_hb = 0.0
        self.hello_at = 0.0
        self.stopping = False
        self.tasks_seen = []  # every TASK, for tests: (plan, task, attempt)
        self.acks = []        # every RESULT_ACK status, for tests

    # -- sending ------------------------------------------------------------
    def say_hello(self):
        req = self.link.take_req()
        # A lease forgotten on STOP is not listed, even while its RESULT
        # waits in the outbox for an answer (section 7.7).
        leases = [{'plan': l['plan'], 'task': l['task'], 'token': tok,
                   'finished': l['finished']}
                  for tok, l in self.leases.items() if not l['stopped']]
        self.pending[req] = ('HELLO', None)
        extra = {'secret': self.secret} if self.secret else {}
        self.link.send('HELLO', req, instance=self.instance,
                       host=os.uname().nodename, version='pyclient',
                       slots=self.slots, tags=self.tags,
                       draining=self.stopping, leases=leases, **extra)
        self.state = 'HELLO_SENT'
        self.hello_at = time.monotonic()

    def send_result(self, token):
        req = self.link.take_req()
        self.pending[req] = ('RESULT', token)
        self.sent_at[token] = time.monotonic()
        self.link.send('RESULT', req, **self.outbox[token])

    def resend_waiting(self, now):
        # 7.8: a RESULT unanswered (or answered error) for 2 heartbeats is
        # sent again; the token fences any copy.
        for token in sorted(self.outbox):
            if now - self.sent_at.get(token, 0) >= 2 * self.hb_ms / 1000.0:
                self.send_result(token)

    def heartbeat(self):
        # Heartbeats are never queued: DONTWAIT, dropped when they cannot go.
        tokens = sorted(t for t, l in self.leases.items() if not l['stopped'])
        self.link.send('HEARTBEAT', 0, dontwait=True, tokens=tokens)

    # -- receiving ----------------------------------------------------------
    def on_message(self, m):
        self.last_heard = time.monotonic()
        handler = getattr(self, 'on_' + m['cmd'].lower(), None)
        if handler is None or m['cmd'] in ('HELLO', 'RESULT', 'PING'):
            self.link.violation("the broker sent %s" % m['cmd'])
            return
        handler(m)

    def on_heartbeat(self, m):
        if m['req'] != 0:
            self.link.violation("HEARTBEAT with req %d" % m['req'])

    def on_welcome(self, m):
        kind, _ = self.pending.pop(m['req'], (None, None))
        if kind != 'HELLO':
            self.link.violation("WELCOME for req %d, no HELLO" % m['req'])
            return
        if m['lease_ms'] < 3 * m['heartbeat_ms']:
            self.link.violation("lease_ms < 3 x heartbeat_ms")
        if self.broker_id is not None and m['broker_id'] != self.broker_id:
            log("drone: new ledger (broker_id changed)")
        self.broker_id = m['broker_id']
        if m.get('secret'):
            self.secret = m['secret']  # memory only, never a file or env
        self.hb_ms, self.lease_ms = m['heartbeat_ms'], m['lease_ms']
        self.max_output = m['max_output_bytes']
        self.state = 'ACTIVE'
        for token in sorted(self.outbox):
            self.send_result(token)

    def on_task(self, m):
        if m['req'] != 0:
            self.link.violation("TASK with req %d" % m['req'])
        token = m['token']
        self.tasks_seen.append((m['plan'], m['task'], m['attempt'], token))
        log("drone: TASK %d/%s token %d attempt %d" %
            (m['plan'], m['task'], token, m['attempt']))
        if token in self.leases or token in self.outbox:
            return  # a repeat of a push we hold
        if self.stopping:
            self.leases[token] = {'plan': m['plan'], 'task': m['task'],
                                  'finished': True, 'stopped': False,
                                  'attempt': None}
            self.finish(token, self.released(m))
            return
        a = Attempt(m, self.max_output, self.stderr_cap, self.workdir,
                    self.done)
        self.leases[token] = {'plan': m['plan'], 'task': m['task'],
                              'finished': False, 'stopped': False,
                              'attempt': a}
        a.start()

    @staticmethod
    def released(t):
        return {'plan': t['plan'], 'task': t['task'], 'token': t['token'],
                'outcome': 'released', 'exit_code': -1, 'signal': 0,
                'timed_out': False, 'error': None, 'out': b'',
                'out_truncated': False, 'err': b'', 'err_truncated': False,
                'started_ms': 0, 'duration_ms': 0}

    def on_stop(self, m):
        lease = self.leases.get(m['token'])
        log("drone: STOP %d/%s token %d (%s)" %
            (m['plan'], m['task'], m['token'], m.get('reason')))
        if lease is None:
            return  # a STOP for a token we do not hold is ignored
        if lease['plan'] != m['plan'] or lease['task'] != m['task']:
            self.link.violation("STOP token %d names %d/%s, lease is %d/%s"
                                % (m['token'], m['plan'], m['task'],
                                   lease['plan'], lease['task']))
        if m['token'] in self.outbox:
            lease['stopped'] = True  # keep the RESULT until it is answered
            return
        if lease['attempt'] is not None:
            lease['attempt'].stop()
        del self.leases[m['token']]

    def on_result_ack(self, m):
        kind, token = self.pending.pop(m['req'], (None, None))
        if kind != 'RESULT' or token != m['token']:
            self.link.violation("RESULT_ACK req %d token %d answers no "
                                "RESULT" % (m['req'], m['token']))
            return
        self.acks.append((m['plan'], m['task'], token, m['status']))
        log("drone: RESULT_ACK %d/%s token %d: %s" %
            (m['plan'], m['task'], token, m['status']))
        if m['status'] == 'error':
            return  # kept; resent after the next HELLO
        self.outbox.pop(token, None)
        self.sent_at.pop(token, None)
        self.leases.pop(token, None)

    def on_ok(self, m):
        kind, _ = self.pending.pop(m['req'], (None, None))
        if kind == 'BYE':
            self.state = 'CLOSED'

    def on_error(self, m):
        kind, token = self.pending.pop(m['req'], (None, None))
        log("drone: ERROR %s for %s: %s" % (m['code'], kind, m['message']))
        if m['code'] == 'HELLO_REQUIRED':
            self.say_hello()
        elif (kind == 'HELLO' and m['code'] == 'FORBIDDEN' and
              'session secret' in m['message']):
            # 7.1: the instance cannot be proved (its WELCOME was lost):
            # go on as a new one; the old one's leases lapse.
            self.instance, self.secret = os.urandom(8).hex(), None
            self.say_hello()
        elif kind == 'HELLO':
            self.state = 'CONNECTED'  # retried after a backoff
            self.hello_at = time.monotonic()

    def on_pong(self, m):
        self.pending.pop(m['req'], None)

    # -- children -----------------------------------------------------------
    def finish(self, token, result):
        lease = self.leases.get(token)
        if lease is None or result is None:
            return  # stopped: no RESULT
        lease['finished'] = True
        self.outbox[token] = result
        if self.state == 'ACTIVE':
            self.send_result(token)

    def reap(self):
        while True:
            try:
                token, result = self.done.get_nowait()
            except queue.Empty:
                return
            self.finish(token, result)

    def release_running(self):
        for tok, lease in list(self.leases.items()):
            if not lease['finished'] and lease['attempt'] is not None:
                lease['attempt'].stop()
                lease['attempt'].join()
                self.finish(tok, self.released(
                    {'plan': lease['plan'], 'task': lease['task'],
                     'token': tok}))

    # -- the loop -----------------------------------------------------------
    def tick(self):
        now = time.monotonic()
        if self.state == 'CONNECTED' and now - self.hello_at > 1.0:
            self.say_hello()
        elif self.state == 'HELLO_SENT' and now - self.hello_at > 3.0:
            self.reconnect()
        elif self.state == 'ACTIVE':
            if now >= self.next_hb:
                self.heartbeat()
                self.resend_waiting(now)
                self.next_hb = now + self.hb_ms / 1000.0
            if now - self.last_heard > 3 * self.hb_ms / 1000.0:
                log("drone: broker silent for 3 heartbeats, reconnecting")
                self.reconnect()

    def reconnect(self):
        # Tasks keep running; replies to the old session are lost, so the
        # outbox is resent after the next WELCOME.
        self.pending.clear()
        self.link.reopen()
        self.state = 'CONNECTED'
        self.hello_at = time.monotonic() - 1.0 + \
            min(0.25, self.lease_ms / 4000.0)
        self.last_heard = time.monotonic()

    def step(self, timeout_ms=50):
        m = self.link.recv(timeout_ms)
        if m is not None:
            self.on_message(m)
        self.reap()
        self.tick()

    def run(self, stop_event):
        self.say_hello()
        while not stop_event.is_set():
            self.step()
        self.shutdown()

    def shutdown(self, grace_s=10):
        """Release what runs, empty the outbox, BYE (section 7.2)."""
        self.stopping = True
        self.release_running()
        deadline = time.monotonic() + grace_s
        while self.outbox and time.monotonic() < deadline:
            self.step()
        if self.state == 'ACTIVE':
            req = self.link.take_req()
            self.pending[req] = ('BYE', None)
            self.link.send('BYE', req)
            while self.state != 'CLOSED' and time.monotonic() < deadline:
                self.step()
        self.link.close()


# ---------------------------------------------------------------------------
# Command line

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--broker', default='tcp://127.0.0.1:7600')
    p.add_argument('--keys', default='keys')
    p.add_argument('--role', default='operator')
    sub = p.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('drone')
    d.add_argument('--slots', type=int, default=1)
    d.add_argument('--tags', default='')
    d.add_argument('--bundle', help='a bundle directory instead of DIR/drone')
    d.add_argument('--workdir')
    sub.add_parser('ping')
    s = sub.add_parser('submit')
    s.add_argument('file')
    s.add_argument('--idempotency-key')
    st = sub.add_parser('status')
    st.add_argument('plan', type=int, nargs='?', default=0)
    w = sub.add_parser('wait')
    w.add_argument('plan', type=int)
    w.add_argument('--timeout', type=float, default=60)
    o = sub.add_parser('output')
    o.add_argument('plan', type=int)
    o.add_argument('task')
    o.add_argument('--attempt', type=int, default=0)
    o.add_argument('--stderr', action='store_true')
    a = p.parse_args(argv)

    if a.cmd == 'drone':
        bundle = load_bundle(os.path.dirname(a.bundle.rstrip('/')),
                             os.path.basename(a.bundle.rstrip('/'))) \
            if a.bundle else load_bundle(a.keys, 'drone')
        drone = Drone(a.broker, bundle, a.slots,
                      [t for t in a.tags.split(',') if t], workdir=a.workdir)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print("READY %s" % drone.instance, flush=True)
        drone.run(stop)
        if drone.link.violations:
            log("drone: %d protocol violations" % len(drone.link.violations))
            return 3
        return 0

    con = Console(a.broker, load_bundle(a.keys, a.role))
    try:
        if a.cmd == 'ping':
            r = con.ping()
            print("%s:%s broker %s" % (r['role'], r['name'], r['version']))
        elif a.cmd == 'submit':
            with open(a.file, encoding='utf-8') as f:
                r = con.submit(f.read(), a.idempotency_key)
            for w_ in r.get('warnings') or []:
                log("warning: " + w_)
            print(r['plan'])
        elif a.cmd == 'status':
            r = con.status(a.plan)
            print(json.dumps({k: r.get(k) or [] for k in
                              ('plans', 'tasks', 'drones')}, indent=1))
        elif a.cmd == 'wait':
            state, _ = con.wait(a.plan, a.timeout)
            print(state)
            return 0 if state == 'succeeded' else 1
        elif a.cmd == 'output':
            r = con.output(a.plan, a.task, a.attempt, a.stderr)
            sys.stdout.buffer.write(r['data'])
    except BrokerError as e:
        log(str(e))
        return 1
    finally:
        con.close()
    return 3 if con.link.violations else 0


if __name__ == '__main__':
    sys.exit(main())
