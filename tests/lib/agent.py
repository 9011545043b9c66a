"""Start, drive and stop build/vks-agent from Python tests (run with Debian's /usr/bin/python3).

    from agent import Agent, socketmap_query, netstring
    a = Agent(workdir, config_text)        # writes agent.toml, starts the agent, waits for "ready"
    a.sock("socketmap")                    # the socket path of a listener, from the config
    a.hup(); a.stop() -> exit status;      a.log() -> everything it printed so far
    socketmap_query(path, "sasl", "key")   # -> reply text, one request on a new connection

Every process started here is stopped by stop() (also on context-manager exit and at interpreter
exit through atexit), so a failing test leaves nothing running.
"""
import atexit
import os
import signal
import socket
import subprocess
import time

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("BUILD", "build")
AGENT_BIN = os.path.join(ROOT, BUILD, "vks-agent")
_live = []


def _cleanup():
    for a in list(_live):
        a.stop()


atexit.register(_cleanup)


def netstring(b):
    if isinstance(b, str):
        b = b.encode()
    return str(len(b)).encode() + b":" + b + b","


def read_netstring(s, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while b":" not in buf:
        c = s.recv(1)
        if not c:
            raise EOFError("closed before a reply: %r" % buf)
        buf += c
    n = int(buf[:-1])
    data = b""
    while len(data) < n + 1:
        c = s.recv(n + 1 - len(data))
        if not c:
            raise EOFError("closed inside a reply")
        data += c
    assert data[-1:] == b",", data
    return data[:-1].decode("utf-8", "replace")


def connect(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def socketmap_query(path, name, key, timeout=30):
    with connect(path, timeout) as s:
        s.sendall(netstring(name + " " + key))
        return read_netstring(s, timeout)


def exim_query(path, request, timeout=10):
    """One readsocket exchange like Exim's: send, half-close, read to EOF. Returns (bytes, error)."""
    with connect(path, timeout) as s:
        try:
            s.sendall(request.encode())
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b"", "closed before the request was sent"
        out = b""
        try:
            while True:
                c = s.recv(4096)
                if not c:
                    break
                out += c
        except ConnectionResetError:
            return out, "reset"
        return out, None


class Agent:
    def __init__(self, workdir, config, name="agent.toml", start=True, env=None):
        self.workdir = workdir
        self.config_path = os.path.join(workdir, name)
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.env = env
        self.write_config(config)
        if start:
            self.start()

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            f.write(config)

    def start(self, timeout=20):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([AGENT_BIN, "--config", self.config_path], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env)
        _live.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "ready (" in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError("vks-agent exited %s: %s" % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        raise RuntimeError("vks-agent not ready: " + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, text, timeout=10, start=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log()[start:]:
                return True
            time.sleep(0.05)
        return False

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        if self in _live:
            _live.remove(self)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def check_config(path):
    p = subprocess.run([AGENT_BIN, "--check-config", "--config", path], capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def daemon_workdir(work, name):
    """A directory for a test whose daemons drop privileges (postfix, Debian-exim): WORK/name when
    every directory above it lets others through, else a 0755 directory under /tmp (a clone under
    /root, which is 0700, is not reachable by those users). Removed at exit when made here."""
    import atexit
    import shutil
    import stat
    import tempfile
    path = os.path.abspath(work)
    reachable = True
    while True:
        if not (os.stat(path).st_mode & stat.S_IXOTH):
            reachable = False
            break
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if reachable:
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
    else:
        d = tempfile.mkdtemp(prefix="vks-%s-" % name, dir="/tmp")
        atexit.register(shutil.rmtree, d, True)
    os.chmod(d, 0o755)
    return d
