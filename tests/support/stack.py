"""A whole Starling stack for script tests: `starling up` (starling-broker and
the four services) on free loopback ports in a temporary folder, optionally
with a throw-away mosquitto that ingest bridges (STARLING_MQTT, which only
starling-ingest reads). Python 3 standard library only.

    with Stack(bin_dir, source_dir, mqtt=True) as s:
        s.ingest_url, s.saga_url, s.bootstrap, s.mqtt_port, s.db_path
        s.wait_settled(sagas=3)   # every saga COMPLETED, nothing in flight

Everything it starts is stopped on exit from the `with`, on SIGTERM/SIGINT
and at interpreter exit: `starling up` and mosquitto run in their own process
groups, which get SIGTERM and then SIGKILL. If the test process is killed
outright (SIGKILL), both get SIGTERM from the kernel (PR_SET_PDEATHSIG).
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

_live = []


def _stop_all(*_):
    for s in list(_live):
        s.stop()


def _on_signal(signum, _frame):
    _stop_all()
    sys.exit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # In the child before exec: SIGTERM when this test process dies, even by
    # SIGKILL (ctest's timeout), so no server outlives the test. starling up
    # then stops its services (which get SIGKILL if it dies itself).
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port():
    """A port the kernel picked for us on loopback (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def log(msg):
    print(msg, flush=True)


# Checks of a script test: "ok"/"FAIL" lines, the failures collected for the
# exit code; a failing check keeps every live stack's folder for its logs.
failures = []


def check(cond, what):
    log(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)
        for s in list(_live):
            s.keep = True  # its logs are worth a look
    return cond


class Stack:
    def __init__(self, bin_dir, source_dir, pipeline="pipelines/ecowheels.yaml", mqtt=False, env=None, keep=None):
        self.bin_dir = os.path.abspath(bin_dir)
        self.source_dir = os.path.abspath(source_dir)
        self.pipeline_file = os.path.join(self.source_dir, pipeline)
        self.pipeline = os.path.basename(pipeline).removesuffix(".yaml")
        self.want_mqtt = mqtt
        self.extra_env = dict(env or {})
        self.dir = tempfile.mkdtemp(prefix="starling-stack-")
        # Kept for a look after a failure (set .keep), or always with STARLING_KEEP_TEST_DIRS=1.
        self.keep = keep if keep is not None else os.environ.get("STARLING_KEEP_TEST_DIRS") == "1"
        self._procs = []  # (name, Popen), started in order, stopped in reverse
        self.mqtt_port = None

    # --- lifecycle -------------------------------------------------------
    def __enter__(self):
        _live.append(self)
        try:
            self.start()
        except BaseException:
            self.keep = True  # the logs say why it did not start
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.keep = True
        self.stop()
        return False

    def _spawn(self, name, argv, env=None):
        logf = open(os.path.join(self.dir, f"{name}.out"), "wb")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                             start_new_session=True,  # its own group: stop() reaches its children too
                             preexec_fn=_die_with_parent)
        logf.close()
        self._procs.append((name, p))
        return p

    def start(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("STARLING_"):
                del env[k]  # only what this test sets
        if self.want_mqtt:
            self.mqtt_port = self._start_mosquitto()
            env["STARLING_MQTT"] = f"127.0.0.1:{self.mqtt_port}"
            env["STARLING_MQTT_CLIENT_ID"] = f"starling-ingest-{os.getpid()}"
        env.update(self.extra_env)
        up = self._spawn("starling-up", [os.path.join(self.bin_dir, "starling"), "up", "--pipeline",
                                         self.pipeline_file, "--ingest-port", "0", "--saga-port", "0",
                                         "--data-dir", os.path.join(self.dir, "stack")], env)
        out = os.path.join(self.dir, "starling-up.out")
        deadline = time.monotonic() + 60
        while True:
            text = open(out, encoding="utf-8", errors="replace").read()
            m = re.search(r"kafka (\S+)\s+ingest (\S+)\s+saga API (\S+)", text)
            if m:
                self.bootstrap, self.ingest_url, self.saga_url = m.groups()
                break
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"starling up did not start (exit {up.poll()}):\n{text}\n{self.logs()}")
            time.sleep(0.1)
        # /readyz: the broker answers, and with --mqtt the bridge is connected
        # and subscribed (a message published before that would be missed).
        self.wait_ready(self.ingest_url)
        self.wait_ready(self.saga_url)
        log(f"stack up in {self.dir}: kafka {self.bootstrap}, ingest {self.ingest_url}, saga {self.saga_url}"
            + (f", mosquitto 127.0.0.1:{self.mqtt_port}" if self.mqtt_port else ""))

    def _start_mosquitto(self):
        port = free_port()
        d = os.path.join(self.dir, "mosquitto")
        os.makedirs(d)
        with open(os.path.join(d, "mosquitto.conf"), "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {d}/\nlog_dest stdout\n"
                    # As root, mosquitto would switch to the `mosquitto` user, who cannot write here.
                    + ("user root\n" if os.geteuid() == 0 else ""))
        p = self._spawn("mosquitto", ["/usr/sbin/mosquitto", "-c", os.path.join(d, "mosquitto.conf")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"mosquitto exited:\n{open(os.path.join(self.dir, 'mosquitto.out')).read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not accept connections")

    def wait_ready(self, base, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"{base}/readyz not 200 after {timeout} s: {last}\n{self.logs()}")

    def stop(self):
        if self in _live:
            _live.remove(self)
        # starling up stops its services front door first, broker last, on SIGTERM.
        for name, p in reversed(self._procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                except ProcessLookupError:
                    pass
            # A child that outlived its parent (starling up killed) is in the same group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._procs = []
        if self.keep:
            log(f"kept {self.dir} (logs in {self.dir}/stack/logs)")
        elif os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- what the tests look at -----------------------------------------
    @property
    def db_path(self):
        return os.path.join(self.dir, "stack", f"load.{self.pipeline}", f"{self.pipeline}.db")

    def logs(self):
        out = []
        logdir = os.path.join(self.dir, "stack", "logs")
        for d in (self.dir, logdir):
            if not os.path.isdir(d):
                continue
            for f in sorted(os.listdir(d)):
                path = os.path.join(d, f)
                if f.endswith((".out", ".log")) and os.path.isfile(path):
                    tail = open(path, encoding="utf-8", errors="replace").read()[-3000:]
                    out.append(f"--- {path} (tail)\n{tail}")
        return "\n".join(out)

    def sagas(self):
        """(sagas, totals) of this stack's pipeline from the saga API."""
        got = http_json(f"{self.saga_url}/v1/sagas?pipeline={self.pipeline}&limit=1000")
        return got["sagas"], got["totals"]

    def ingest_accepted(self):
        """Events ingest has answered 2xx for (HTTP and MQTT), from /metrics."""
        with urllib.request.urlopen(f"{self.ingest_url}/metrics", timeout=10) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if re.match(r'starling_ingest_(mqtt_records|events)_accepted_total\{[^}]*pipeline="' + self.pipeline + '"',
                        line):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def wait_settled(self, sagas=None, timeout=60):
        """Waits until the saga API has every event ingest accepted (and
        `sagas` sagas, if given), nothing in flight and every saga COMPLETED.
        Returns (sagas, totals); raises with the last state on timeout."""
        deadline = time.monotonic() + timeout
        state = None
        previous = None
        while time.monotonic() < deadline:
            accepted = self.ingest_accepted()
            listed, totals = self.sagas()
            state = (accepted, totals)
            done = (totals["accepted"] >= accepted and totals["in_flight"] == 0
                    and totals.get("by_state", {}).get("COMPLETED", 0) == totals["sagas"]
                    and (sagas is None or totals["sagas"] >= sagas))
            # Twice the same: an MQTT message mosquitto acknowledged may not
            # have reached ingest's counters at the first look.
            if done and totals == previous:
                return listed, totals
            previous = totals if done else None
            time.sleep(0.3)
        raise RuntimeError(f"not settled after {timeout} s: ingest accepted, saga totals = {state}\n{self.logs()}")
