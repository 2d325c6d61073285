# pyswarm: the real broker and C drone for the Python tests.
#
# A fresh directory, a real key set made by `waggle-architect keygen`, a
# real ledger file, a TCP port picked once, real processes; every wait has a
# timeout.  stop() ends what it started: SIGTERM, then SIGKILL after a grace.
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import waggle_client as wc


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_line(proc, prefix, timeout_s):
    """Reads proc's stdout until a line starts with prefix; returns it."""
    deadline = time.monotonic() + timeout_s
    buf = b''
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b'\n'):
                if line.startswith(prefix.encode()):
                    return line.decode()
    return None


def wait_for(pred, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" %
                         (timeout_s, what))


class Swarm:
    def __init__(self, build, hb_ms=200, lease_ms=2000):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix='waggle-py-')
        self.keys = os.path.join(self.dir, 'keys')
        self.db = os.path.join(self.dir, 'ledger.db')
        self.endpoint = 'tcp://127.0.0.1:%d' % free_port()
        self.hb_ms, self.lease_ms = hb_ms, lease_ms
        self.procs = []
        self.broker = None
        subprocess.run([self.bin('architect', 'waggle-architect'), 'keygen',
                        self.keys], check=True, stdout=subprocess.DEVNULL)

    def bin(self, sub, name):
        return os.path.join(self.build, sub, name)

    def log(self, name):
        return open(os.path.join(self.dir, name + '.log'), 'ab')

    def spawn(self, name, argv, stdout=None, env=None):
        p = subprocess.Popen(argv, stdout=stdout or subprocess.DEVNULL,
                             stderr=self.log(name), stdin=subprocess.DEVNULL,
                             env=env)
        p.name = name
        self.procs.append(p)
        return p

    @staticmethod
    def drone_env():
        # A WAGGLE_* setting of the drone that tasks must not see (7.6).
        env = dict(os.environ)
        env['WAGGLE_SECRET_SETTING'] = 'leaked'
        # As the C harness does (swarm_init): tasks write into this test's
        # 0700 directory, so a root drone runs them as root, under a
        # subreaper, unless a test asks for more (README "Isolation").
        if os.geteuid() == 0:
            env.setdefault('WAGGLE_RUN_AS', 'root')
        env.setdefault('WAGGLE_ISOLATION', 'subreaper')
        return env

    def start_broker(self, *extra):
        self.broker = self.spawn('broker', [
            self.bin('broker', 'waggle-broker'), '--keys', self.keys,
            '--db', self.db, '--bind', self.endpoint,
            '--heartbeat-ms', str(self.hb_ms), '--lease-ms',
            str(self.lease_ms)] + list(extra), stdout=subprocess.PIPE)
        if not wait_line(self.broker, 'READY ', 20):
            raise AssertionError("broker did not say READY; see %s" %
                                 os.path.join(self.dir, 'broker.log'))

    def start_c_drone(self, slots, tags, name='cdrone'):
        return self.spawn(name, [
            self.bin('drone', 'waggle-drone'), '--keys', self.keys,
            '--broker', self.endpoint, '--slots', str(slots), '--tags', tags,
            '--workdir', self.dir], env=self.drone_env())

    def start_py_drone(self, bundle, slots, tags, name='pydrone'):
        here = os.path.dirname(os.path.abspath(__file__))
        p = self.spawn(name, [
            sys.executable, os.path.join(here, 'waggle_client.py'),
            '--broker', self.endpoint, 'drone', '--bundle', bundle,
            '--slots', str(slots), '--tags', tags, '--workdir', self.dir],
            stdout=subprocess.PIPE, env=self.drone_env())
        if not wait_line(p, 'READY ', 20):
            raise AssertionError("python drone did not start")
        return p

    def console(self, role='operator'):
        return wc.Console(self.endpoint, wc.load_bundle(self.keys, role))

    def reload_keys(self):
        """SIGHUP: the broker rereads its allow lists; waits for its log."""
        log = os.path.join(self.dir, 'broker.log')
        before = open(log, 'rb').read().count(b'allow lists reloaded')
        self.broker.send_signal(signal.SIGHUP)
        wait_for(lambda: open(log, 'rb').read().count(
            b'allow lists reloaded') > before, 20, "the allow lists reload")

    def ledger(self):
        return sqlite3.connect('file:%s?mode=ro' % self.db, uri=True,
                               timeout=10)

    def end(self, p, grace_s=15):
        """SIGTERM, wait, SIGKILL after grace; returns the exit status."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop(self):
        """Ends every process; returns the names of those that did not exit
        0 (a sanitizer's report makes a program exit non-zero)."""
        bad = []
        for p in reversed(self.procs):
            if self.end(p) != 0:
                bad.append('%s (exit %s)' % (p.name, p.returncode))
        self.procs = []
        return bad

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self):
        for name in sorted(os.listdir(self.dir)):
            if name.endswith('.log'):
                with open(os.path.join(self.dir, name), 'rb') as f:
                    tail = f.read()[-6000:]
                sys.stderr.write("---- %s ----\n%s\n" %
                                 (name, tail.decode(errors='replace')))
