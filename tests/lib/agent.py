"""The agent tests' shared set-up (tests/integration/7x-agent-*, scripts/demo); run with Debian's
/usr/bin/python3.

    from agent import Agent, socketmap_query, netstring
    a = Agent(workdir, config_text)        # writes agent.toml, starts the agent, waits for "ready"
    a.hup(); a.stop() -> exit status;      a.log() -> everything it printed so far
    socketmap_query(path, "sasl", "key")   # -> reply text, one request on a new connection

    T = RedactingChecks(SECRETS)           # vaultdev.Checks that never print a secret in a detail
    tok = token_file(d, vd.root_token)     # 0600 files for the agent: its Vault token,
    key = audit_key_file(d)                # a fresh 32-byte audit HMAC key
    text = agent_config(vd, tok, audit=..., key_file=key, ttl="1s") + socketmap_section(...)
                                           # [vault] [cache] [audit] + a listener with its credential
    free_port()                            # a free loopback TCP port
    pf = Postfix(d, relay_port, relay_cafile, sasl_maps="socketmap:unix:private/vks:sasl",
                 chroot=False)             # a private instance (postfix -c DIR/etc), config written
    pf.start(); pf.submit(n); pf.maillog(); pf.queue(); pf.flush(); pf.postconf(k, v); pf.stop()

Command line (for scripts/demo):
    agent.py postfix-config DIR --relay-port N --relay-cafile FILE [--sasl-maps MAP] [--chroot]
        writes the private Postfix instance's configuration under DIR (as Postfix() does)

Every process started here is stopped by stop() (also on context-manager exit and at interpreter
exit through atexit), so a failing test leaves nothing running.
"""
import atexit
import os
import signal
import socket
import subprocess
import time

from vaultdev import Checks

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


# ---------------------------------------------------------------------------------- test set-up
class RedactingChecks(Checks):
    """Checks whose failure details never print one of the given secrets."""

    def __init__(self, secrets, mask="<password>"):
        Checks.__init__(self)
        self.secrets = list(secrets)
        self.mask = mask

    def ok(self, cond, name, detail=None):
        if detail is not None:
            detail = str(detail)
            for x in self.secrets:
                detail = detail.replace(x, self.mask)
        return Checks.ok(self, cond, name, detail)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def secret_file(path, data, mode=0o600):
    """Writes DATA (str or bytes) to PATH created with MODE (never readable by others)."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def token_file(d, token, name="token"):
    """The agent's Vault token in a 0600 file (the agent refuses a world-readable one)."""
    return secret_file(os.path.join(d, name), token)


def audit_key_file(d, name="audit.key"):
    """A fresh 32-byte audit HMAC key in a 0600 file, for [audit] key_file and `vks audit verify`."""
    return secret_file(os.path.join(d, name), os.urandom(32))


def agent_config(vd, token, audit=None, key_file=None, ttl="1s", max_stale="0s", neg_ttl="1s",
                 timeout="3s", max_retries=0):
    """The [vault], [cache] and [audit] sections every agent test starts with: vault-dev over
    HTTPS with the token from TOKEN (a file), no retries, a short cache, no stale answers."""
    text = f'''[vault]
address = "{vd.addr}"
ca_cert = "{vd.cacert}"
token_file = "{token}"
timeout = "{timeout}"
max_retries = {max_retries}

[cache]
ttl = "{ttl}"
max_stale = "{max_stale}"
neg_ttl = "{neg_ttl}"
'''
    if audit:
        text += f'\n[audit]\nfile = "{audit}"\n'
        if key_file:
            text += f'key_file = "{key_file}"\n'
    return text


def credential_section(table, mount="secret", path="smtp-auth/{host}", username_field="username",
                       key="password"):
    return f'''
[{table}.credential]
mount = "{mount}"
path = "{path}"
username_field = "{username_field}"
key = "{key}"
'''


def socketmap_section(sock, allow_users=("postfix",), group="postfix", map_name="sasl", mode="0660"):
    """A [socketmap] listener for Postfix with the usual credential (smtp-auth/{host})."""
    users = ", ".join('"%s"' % u for u in allow_users)
    text = f'\n[socketmap]\nsocket = "{sock}"\nmode = "{mode}"\n'
    if group:
        text += f'group = "{group}"\n'
    text += f'allow_users = [{users}]\nmap = "{map_name}"\n'
    return text + credential_section("socketmap")


# ------------------------------------------------------------------ a private Postfix instance
POSTFIX = "/usr/sbin/postfix"
_live_postfix = []


def _run(args, timeout=60, input=None):
    p = subprocess.run(list(args), capture_output=True, timeout=timeout, input=input)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


class Postfix:
    """A private Postfix instance in DIR (etc/, spool/ = queue_directory, data/, log/maillog),
    started with `postfix -c DIR/etc`, relaying everything to [127.0.0.1]:RELAY_PORT with TLS
    required (verified against RELAY_CAFILE) and SMTP AUTH from SASL_MAPS. No smtpd listener:
    messages come in through `sendmail -C`. Debian's master.cf.dist is used with every chroot
    column `n`, or, with chroot=True, as Debian ships it (smtp, relay, cleanup, ... chrooted into
    the queue directory). /etc/postfix is never touched. DIR (and every directory above it) must
    be reachable by the postfix user (daemon_workdir)."""

    def __init__(self, d, relay_port, relay_cafile, sasl_maps="socketmap:unix:private/vks:sasl",
                 chroot=False, write=True):
        self.dir = d
        self.etc = os.path.join(d, "etc")
        self.spool = os.path.join(d, "spool")
        self.relay_port, self.relay_cafile = relay_port, relay_cafile
        self.sasl_maps, self.chroot = sasl_maps, chroot
        self.started = False
        if write:
            self.write_config()

    def write_config(self):
        import shutil
        d = self.dir
        for sub in ("etc", "spool", "data", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix", "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""# a private Postfix instance for vault-keysource (tests/lib/agent.py)
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = pfx.test
myorigin = example.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
relayhost = [127.0.0.1]:{self.relay_port}
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {self.relay_cafile}
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = {self.sasl_maps}
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_connection_cache_on_demand = no
smtpd_peername_lookup = no
maillog_file = {d}/log/maillog
maillog_file_prefixes = /var, /dev/stdout, {d}
delay_warning_time = 0
""")
        out = []
        with open("/usr/share/postfix/master.cf.dist") as f:
            for line in f:
                fields = line.split()
                if line[:1].strip() and not line.startswith("#") and len(fields) >= 8:
                    if fields[0] == "smtp" and fields[1] == "inet":
                        out.append("#" + line)  # no listener: messages come in through sendmail
                        continue
                    if not self.chroot:
                        fields[4] = "n"
                    line = "  ".join(fields) + "\n"
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.writelines(out)
        return self.etc

    def start(self, timeout=120):
        """`postfix -c DIR/etc start`: (exit status, output); on failure the output includes
        `postfix check` (which prints what start does not when there is no syslog)."""
        rc, out = _run([POSTFIX, "-c", self.etc, "start"], timeout=timeout)
        self.started = True
        _live_postfix.append(self)
        if rc != 0:
            out += _run(["script", "-qec", "%s -c %s check" % (POSTFIX, self.etc), "/dev/null"])[1]
        return rc, out

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout=60):
        """`postfix stop`, then SIGKILL to a master that is still there."""
        if not self.started:
            return
        self.started = False
        if self in _live_postfix:
            _live_postfix.remove(self)
        try:
            _run([POSTFIX, "-c", self.etc, "stop"], timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        pid = self.master_pid()
        if pid:
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    return
                time.sleep(0.1)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def reload(self):
        return _run([POSTFIX, "-c", self.etc, "reload"])

    def postconf(self, name, value):
        return _run(["/usr/sbin/postconf", "-c", self.etc, "-e", "%s=%s" % (name, value)])

    def submit(self, n, rcpt="rcpt@example.net", sender="sender@example.test"):
        """One message through `sendmail -C`: its exit status."""
        msg = f"From: {sender}\nTo: {rcpt}\nSubject: vks-agent test {n}\n\nmessage {n}\n"
        return _run(["/usr/sbin/sendmail", "-C", self.etc, "-f", sender, rcpt], input=msg.encode())[0]

    def queue(self):
        return _run(["/usr/sbin/postqueue", "-c", self.etc, "-p"])[1]

    def flush(self):
        return _run(["/usr/sbin/postqueue", "-c", self.etc, "-f"])

    def maillog(self):
        try:
            with open(os.path.join(self.dir, "log", "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def processes(self, name):
        """PIDs of this instance's NAME daemons (children of its master, e.g. "smtp")."""
        master = self.master_pid()
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv0 = f.read().split(b"\0")[0].decode()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master and argv0 == name:
                out.append(int(p))
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _stop_postfix():
    for p in list(_live_postfix):
        p.stop()


atexit.register(_stop_postfix)


def wait_for(fn, timeout=40, interval=0.1):
    """fn()'s first true value within TIMEOUT seconds, else None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return None


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="agent test set-up helpers (scripts/demo)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("postfix-config", help="write a private Postfix instance's configuration")
    pc.add_argument("dir")
    pc.add_argument("--relay-port", type=int, required=True)
    pc.add_argument("--relay-cafile", required=True)
    pc.add_argument("--sasl-maps", default="socketmap:unix:private/vks:sasl")
    pc.add_argument("--chroot", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "postfix-config":
        pf = Postfix(os.path.abspath(a.dir), a.relay_port, a.relay_cafile, a.sasl_maps, a.chroot)
        print("POSTFIX_ETC=%s" % pf.etc)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
