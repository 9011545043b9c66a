"""Inbound credentials (issue 15 "Performance"), ratios from one run on this machine.

The same client (this script, one persistent unix-socket connection per thread, speaking the
Dovecot authentication protocol exactly as Postfix's smtpd does: VERSION/CPID, then
AUTH PLAIN with service=smtp, secured, rip=, resp=) measures both servers:

  vks-agent  [inbound.sasl], a credential made by `vks cred create --inbound` with the verifier
             pbkdf2-sha256 (ITER iterations) in vault-dev over HTTPS;
  Dovecot    a private auth-only instance (dovecot -F -c FILE), passwd-file with {PBKDF2}
             (Dovecot's PBKDF2 is HMAC-SHA1; it has no SHA-256 or scrypt variant: the closest
             scheme), the same iteration count.

  1. cached: the same right password again and again. The agent answers from its success cache
     (cache_ttl); Dovecot with auth_cache_size (its passdb cache) still computes the hash, and
     without a cache reads the file and hashes. Goal: the agent at least as fast at p50 and p99.
  2. cold: every verification does the full work: the agent with cache_ttl = 0 (index record and
     credential read from vault-dev, then the hash) vs Dovecot without cache; next to both, the
     bare hash in OpenSSL (hashlib) for each scheme. Goal: the agent's cold cost dominated by the
     hash (hash / cold close to 1).
  3. under load: 4 client threads on 4 connections, cached: p50/p99 and throughput.
Also the default verifier (scrypt ln=14,r=8,p=5) and PBKDF2-SHA256 at 600000 iterations: the bare
hash cost of each. Timings are wall-clock on a shared machine: compare the ratios."""
import base64
import hashlib
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ.get("ROOT", os.getcwd())
BUILD = os.environ.get("BUILD", "build")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from credtest import Cred  # noqa: E402
from agent import Agent, agent_config, token_file  # noqa: E402

ITER = 10000
N_CACHED, N_COLD, N_LOAD = 3000, 60, 1500
ENC_KEY = "aW5ib3VuZDkxLWVuYy1rZXktVEVTVC0wMTIzNDU2Nzg="
AUDIT_KEY = "aW5ib3VuZDkxLWF1ZGl0LWtleS1URVNULTAxMjM0NTY="


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def ms(x):
    return "%8.3f ms" % (x * 1000)


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.buf = b""
        self.s.sendall(b"VERSION\t1\t0\nCPID\t%d\n" % os.getpid())
        while not self.line().startswith(b"DONE"):
            pass
        self.id = 0

    def line(self):
        while b"\n" not in self.buf:
            c = self.s.recv(4096)
            if not c:
                raise EOFError("closed")
            self.buf += c
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln

    def auth(self, user, pw):
        self.id += 1
        resp = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
        t0 = time.perf_counter()
        self.s.sendall(b"AUTH\t%d\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\tresp=%s\n"
                       % (self.id, resp))
        ln = self.line()
        dt = time.perf_counter() - t0
        if not ln.startswith(b"OK\t"):
            raise RuntimeError("auth failed: %r" % ln[:80])
        return dt


def run(path, user, pw, n, threads=1):
    lat, errs = [], []
    lock = threading.Lock()

    def worker():
        try:
            c = Client(path)
            mine = [c.auth(user, pw) for _ in range(n)]
            with lock:
                lat.extend(mine)
        except Exception as x:  # reported below
            errs.append(x)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errs:
        raise errs[0]
    return lat, wall


def row(name, lat, wall=None):
    extra = "  %7.0f/s" % (len(lat) / wall) if wall else ""
    print("  %-46s p50 %s  p99 %s%s" % (name, ms(pct(lat, 50)), ms(pct(lat, 99)), extra))


def hash_cost(fn, n=20):
    if n > 1:
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def dovecot(d, user, pw, cache):
    enc = subprocess.run(["doveadm", "pw", "-s", "PBKDF2", "-r", str(ITER), "-p", pw], capture_output=True,
                         text=True, check=True).stdout.strip()
    pf = os.path.join(d, "passwd")
    with open(pf, "w") as f:
        f.write("%s:%s:1000:1000::%s::\n" % (user, enc, d))
    os.chown(pf, 0, pwd.getpwnam("dovecot").pw_gid)
    os.chmod(pf, 0o640)
    sock = os.path.join(d, "auth-client")
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""protocols =
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
auth_mechanisms = plain login
auth_cache_size = {"10M" if cache else "0"}
auth_cache_ttl = 1 hour
passdb {{
  driver = passwd-file
  args = {pf}
}}
userdb {{
  driver = passwd-file
  args = {pf}
}}
service auth {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
""")
    p = subprocess.Popen(["dovecot", "-F", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline and not os.path.exists(sock):
        time.sleep(0.05)
    return p, sock


def main():
    work = tempfile.mkdtemp(prefix="vks-inbound-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    user = "bench-app"
    print("inbound verification: vks-agent [inbound.sasl] vs Dovecot auth, PBKDF2 %d iterations "
          "(agent: HMAC-SHA256, Dovecot: HMAC-SHA1), one client, Postfix's request" % ITER)
    with VaultDev() as vd:
        c = Cred(vd, ENC_KEY, AUDIT_KEY)
        rc, out, err = c.vks("cred", "create", "bench", "--username", user, "--inbound", "--all-domains",
                             "--verifier", "pbkdf2-sha256:i=%d" % ITER, keep_stdout=True)
        if rc != 0:
            print("create failed:", err[-300:])
            return 1
        pw = out.strip()
        agents, results = {}, {}
        for ttl in ("30s", "0"):
            d = os.path.join(work, "agent-" + ttl)
            os.makedirs(d)
            sock = os.path.join(d, "auth.sock")
            text = agent_config(vd, token_file(d, vd.root_token), audit=os.path.join(d, "audit.jsonl"))
            text += ('\n[audit]\n' if False else '') + f'''
[inbound]
cache_ttl = {'"30s"' if ttl != "0" else 0}
workers = 2
[inbound.sasl]
socket = "{sock}"
allow_users = ["root"]
'''
            text = text.replace('file = "%s"\n' % os.path.join(d, "audit.jsonl"),
                                'file = "%s"\nmode = "async"\n' % os.path.join(d, "audit.jsonl"))
            agents[ttl] = (Agent(d, text), sock)
        dv = {}
        for cache in (True, False):
            d = os.path.join(work, "dovecot-%s" % ("cache" if cache else "nocache"))
            os.makedirs(d)
            dv[cache] = dovecot(d, user, pw, cache)
        try:
            a_sock, a0_sock = agents["30s"][1], agents["0"][1]
            print("1. cached (the same right password, %d requests)" % N_CACHED)
            results["agent_cached"] = run(a_sock, user, pw, N_CACHED)[0]
            results["dc_cache"] = run(dv[True][1], user, pw, N_CACHED // 10)[0]
            results["dc_nocache"] = run(dv[False][1], user, pw, N_CACHED // 10)[0]
            row("vks-agent, success cache", results["agent_cached"])
            row("Dovecot, auth_cache_size=10M", results["dc_cache"])
            row("Dovecot, no cache", results["dc_nocache"])
            for k in ("dc_cache", "dc_nocache"):
                print("  ratio %-18s p50 %6.1fx  p99 %6.1fx (Dovecot / agent; >= 1 is the goal)" % (
                    k, pct(results[k], 50) / pct(results["agent_cached"], 50),
                    pct(results[k], 99) / pct(results["agent_cached"], 99)))
            print("2. cold (every verification does the whole work, %d requests, each followed by the "
                  "bare hash of its scheme in OpenSSL/hashlib, so both see the same machine load)" % N_COLD)
            ca, cd = Client(a0_sock), Client(dv[False][1])
            cold_a, cold_d, h256, h1 = [], [], [], []
            for _ in range(N_COLD):
                cold_a.append(ca.auth(user, pw))
                h256.append(hash_cost(lambda: hashlib.pbkdf2_hmac("sha256", pw.encode(), b"s" * 16, ITER), 1))
                cold_d.append(cd.auth(user, pw))
                h1.append(hash_cost(lambda: hashlib.pbkdf2_hmac("sha1", pw.encode(), b"s" * 16, ITER), 1))
            row("vks-agent, cache_ttl = 0 (Vault reads + hash)", cold_a)
            row("  bare PBKDF2-HMAC-SHA256", h256)
            row("Dovecot, no cache (file + hash)", cold_d)
            row("  bare PBKDF2-HMAC-SHA1", h1)
            print("  hash share of the cold p50: agent %.0f%% (overhead %s), Dovecot %.0f%% (overhead %s)" % (
                100 * pct(h256, 50) / pct(cold_a, 50), ms(pct(cold_a, 50) - pct(h256, 50)),
                100 * pct(h1, 50) / pct(cold_d, 50), ms(pct(cold_d, 50) - pct(h1, 50))))
            print("3. under load: 4 threads x %d cached requests on 4 connections" % N_LOAD)
            lat, wall = run(a_sock, user, pw, N_LOAD, threads=4)
            row("vks-agent, success cache", lat, wall)
            lat2, wall2 = run(dv[True][1], user, pw, N_LOAD // 10, threads=4)
            row("Dovecot, auth_cache_size=10M", lat2, wall2)
            print("verifier costs (bare hash, OpenSSL through hashlib):")
            s5 = hash_cost(lambda: hashlib.scrypt(pw.encode(), salt=b"s" * 16, n=2 ** 14, r=8, p=5, maxmem=2 ** 26,
                                                  dklen=32), 5)
            s1 = hash_cost(lambda: hashlib.scrypt(pw.encode(), salt=b"s" * 16, n=2 ** 14, r=8, p=1, maxmem=2 ** 26,
                                                  dklen=32), 5)
            p6 = hash_cost(lambda: hashlib.pbkdf2_hmac("sha256", pw.encode(), b"s" * 16, 600000), 3)
            print("  scrypt ln=14,r=8,p=5 (default) %s; scrypt ln=14,r=8,p=1 %s; pbkdf2-sha256 i=600000 %s"
                  % (ms(s5), ms(s1), ms(p6)))
        finally:
            for a, _ in agents.values():
                a.stop()
            for p, _ in dv.values():
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
