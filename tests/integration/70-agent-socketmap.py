"""vks-agent: configuration checks, the Postfix socketmap protocol against vault-dev over real
HTTPS (answers, key forms, lowercasing, TEMP vs NOTFOUND, restrictions, persistent connections),
bad input (oversized and malformed netstrings, partial frames, slow and idle clients, a thousand
idle connections, unknown map names, peers outside the allow-list), audit (verified with
`vks audit verify`), metrics, SIGHUP reload and SIGTERM drain. The agent's output is scanned for
the test passwords."""
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from agent import (Agent, RedactingChecks, agent_config, audit_key_file, check_config, connect,  # noqa: E402
                   free_port, netstring, read_netstring, socketmap_query, token_file)

PW1 = "agent-pw-ONE-3c9e71d2"
PW2 = "agent-pw-TWO-8a41f0b6"
PWC = "agent-pw-COLON-55e2a9c1"
PWR = "agent-pw-RESTRICT-0f7d3b"
SECRETS = [PW1, PW2, PWC, PWR]
T = RedactingChecks(SECRETS)


def config(vd, run, token_file, audit, key_file, metrics_port, map_name="sasl", extra_sm="",
           allow='allow_users = ["root"]'):
    return "# vks-agent test configuration\n" + agent_config(vd, token_file, audit, key_file, ttl="2s", timeout="10s") + f'''
[agent]
workers = 2
idle_timeout = "3s"
read_timeout = "1s"
max_request = 4096

[metrics]
listen = "127.0.0.1:{metrics_port}"

[socketmap]
socket = "{run}/sm.sock"
mode = "0660"
{allow}
map = "{map_name}"
{extra_sm}
[socketmap.credential]
mount = "secret"
path = "smtp-auth/{{host}}"
username_field = "username"
key = "password"
'''


def scan(text, where):
    for s in SECRETS:
        if s in text:
            T.ok(False, "no password in " + where)
            return
    T.ok(True, "no password in " + where)


def test_check_config(run, good):
    rc, out = check_config(good)
    T.eq(rc, 0, "--check-config accepts a valid file")
    bad = os.path.join(run, "bad.toml")
    text = open(good).read()
    text = text.replace('map = "sasl"', 'map = "sasl"\nmapp = "typo"').replace('workers = 2', 'workers = "two"')
    text = text.replace('ttl = "2s"', 'ttl = "soon"')
    open(bad, "w").write(text)
    rc, out = check_config(bad)
    T.eq(rc, 2, "--check-config rejects a bad file with status 2")
    lines = [l for l in out.splitlines() if l.strip()]
    T.ok(any(bad + ":" in l and "socketmap.mapp" in l and "unknown key" in l for l in lines),
         "unknown key named with file, line and key", out)
    T.ok(any("agent.workers" in l and "expected an integer" in l for l in lines), "wrong type named", out)
    T.ok(any("cache.ttl" in l for l in lines), "bad duration named", out)
    T.ok(all(l.startswith(bad + ":") for l in lines), "every error line starts with FILE:LINE", out)
    line_of = {k: i + 1 for i, l in enumerate(text.splitlines()) for k in ["mapp", "workers"] if l.startswith(k)}
    T.ok(any(l.startswith("%s:%d:" % (bad, line_of["mapp"])) for l in lines), "the line number is right", out)
    open(bad, "w").write(text.replace("[vault]", "[vault\n"))
    rc, out = check_config(bad)
    T.ok(rc == 2 and bad + ":" in out, "a TOML syntax error names the file and line", out)
    open(bad, "w").write(good_text_with(good, 'token_file', 'token = "s.inline"  #'))
    rc, out = check_config(bad)
    T.ok(rc == 2 and "vault.token" in out and "token_file" in out, "an inline token is refused", out)
    T.ok("s.inline" not in out, "the refused token is not echoed")
    open(bad, "w").write(open(good).read().replace('allow_users = ["root"]', ''))
    rc, out = check_config(bad)
    T.ok(rc == 2 and "allow_users or allow_groups is required" in out, "no allow-list is refused", out)


def test_shipped_files(vd, run):
    """The example configuration, the man page and the systemd unit match the program."""
    ex = open(os.path.join(ROOT, "agent", "vks-agent.toml.example")).read()
    tok = os.path.join(run, "token")
    ex = (ex.replace("/etc/vks-agent/vault-ca.pem", vd.cacert).replace("/etc/vks-agent/token", tok)
          .replace("https://vault.example.net:8200", vd.addr).replace("/etc/vks-agent/audit.key", os.path.join(run, "audit.key"))
          .replace('allow_users = ["postfix"]', 'allow_users = ["root"]').replace('group = "postfix"', 'group = "root"'))
    path = os.path.join(run, "example.toml")
    open(path, "w").write(ex)
    rc, out = check_config(path)
    T.eq(rc, 0, "the shipped example configuration is valid (paths adapted) " + out.strip()[:300])
    helptext = subprocess.run([os.path.join(ROOT, BUILD, "vks-agent"), "--help"], capture_output=True).stdout.decode()
    man = open(os.path.join(ROOT, "agent", "vks-agent.8")).read().replace("\\-", "-")
    opts = sorted(set(w for w in helptext.split() if w.startswith("--")))
    T.ok(opts and all(o in man for o in opts), "every option of --help is in the man page", opts)
    T.ok(all(sig in man for sig in ("SIGHUP", "SIGTERM")) and all(sig in helptext for sig in ("SIGHUP", "SIGTERM")),
         "signals documented in both")
    p = subprocess.run(["vks-agent", "--bogus"], capture_output=True, executable=os.path.join(ROOT, BUILD, "vks-agent"))
    T.eq(p.returncode, 2, "an unknown option: exit 2")
    unit = open(os.path.join(ROOT, "agent", "vks-agent.service")).read()
    for k in ("ProtectSystem=strict", "MemoryDenyWriteExecute=yes", "LimitMEMLOCK=", "NoNewPrivileges=yes", "User=vks-agent"):
        T.ok(k in unit, "the systemd unit sets " + k)
    if subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        u = os.path.join(run, "vks-agent.service")
        open(u, "w").write(unit.replace("/usr/sbin/vks-agent", os.path.join(ROOT, BUILD, "vks-agent"))
                           .replace("Documentation=man:vks-agent(8)\n", ""))
        p = subprocess.run(["systemd-analyze", "verify", u], capture_output=True, timeout=60)
        T.eq((p.returncode, (p.stdout + p.stderr).decode()[:300]), (0, ""), "systemd-analyze verify accepts the unit")


def good_text_with(good, key, replacement):
    out = []
    for l in open(good).read().splitlines():
        out.append(replacement + " " + l if l.startswith(key) else l)
    return "\n".join(out) + "\n"


def q(a, key, name="sasl"):
    return socketmap_query(os.path.join(a.workdir, "sm.sock"), name, key)


def test_answers(vd, a):
    T.eq(q(a, "127.0.0.1"), "OK relay-user:" + PW1, "host key: OK user:password")
    T.eq(q(a, "RELAY.Example.TEST"), "OK name-user:" + PW2, "keys are lowercased before matching")
    T.eq(q(a, "[127.0.0.1]:2525"), "OK relay-user:" + PW1, "nexthop [host]:port uses {host}")
    T.eq(q(a, "[relay.example.test]"), "OK name-user:" + PW2, "nexthop [host] without port")
    T.eq(q(a, "nothing.example.test"), "NOTFOUND ", "no secret at that path: NOTFOUND")
    T.eq(q(a, "someone@example.test"), "NOTFOUND ", "sender key with sender_dependent off: NOTFOUND")
    T.eq(q(a, "../etc"), "NOTFOUND ", "a key that is not a safe path component: NOTFOUND")
    T.eq(q(a, "x/y"), "NOTFOUND ", "a key with '/': NOTFOUND (never a path traversal)")
    r = q(a, "colon.example.test")
    T.ok(r.startswith("TEMP ") and PWC not in r, "a user name with ':' is refused with TEMP", r)
    r = q(a, "nouser.example.test")
    T.ok(r.startswith("TEMP "), "secret without the username field: TEMP (not NOTFOUND)", r)
    r = q(a, "restricted.example.test")
    T.ok(r.startswith("TEMP ") and PWR not in r, "restricted for this destination: TEMP", r)
    r = q(a, "127.0.0.1", name="other")
    T.ok(r.startswith("PERM "), "unknown map name: PERM", r)
    # persistent connection: many requests on one connection
    with connect(os.path.join(a.workdir, "sm.sock")) as s:
        got = []
        for i in range(30):
            s.sendall(netstring("sasl " + ("127.0.0.1" if i % 2 == 0 else "nothing.example.test")))
            got.append(read_netstring(s))
        T.ok(all(g == ("OK relay-user:" + PW1 if i % 2 == 0 else "NOTFOUND ") for i, g in enumerate(got)),
             "30 requests on one persistent connection", got[:3])
        # two requests in one write (pipelined) are answered in order
        s.sendall(netstring("sasl nothing.example.test") + netstring("sasl 127.0.0.1"))
        T.eq([read_netstring(s), read_netstring(s)], ["NOTFOUND ", "OK relay-user:" + PW1], "pipelined requests answered in order")


def test_no_stall(vd, a):
    """A lookup stuck on a slow Vault answer must not hold up other clients."""
    T.ok(q(a, "127.0.0.1").startswith("OK "), "warm the cache for 127.0.0.1")
    vd.fault(action="latency", latency_ms=2000, path_prefix="/v1/secret/data/smtp-auth/slow.example.test", count=4)
    box = {}

    def slow():
        box["reply"] = q(a, "slow.example.test")
        box["done"] = time.monotonic()

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.3)
    r = q(a, "127.0.0.1")
    fast_done = time.monotonic()
    T.ok(r.startswith("OK relay-user:"), "another client is answered while a miss waits on Vault")
    th.join(30)
    T.ok("done" in box and box["done"] > fast_done, "the other answer came before the slow one finished")
    T.ok(box.get("reply", "").startswith("OK slow-user:"), "the slow lookup still completes", box.get("reply"))
    vd.clear_faults()


def test_vault_down(vd, a):
    time.sleep(2.2)  # past ttl (2 s), max_stale 0: no stale copy
    rule = vd.fault(action="close", path_prefix="/v1/secret/data/smtp-auth/", duration_seconds=60)
    r = q(a, "127.0.0.1")
    T.ok(r.startswith("TEMP "), "Vault unreachable, no stale copy: TEMP", r)
    r = q(a, "[127.0.0.1]:2525")
    T.ok(r.startswith("TEMP "), "the nexthop form too: TEMP (never NOTFOUND)", r)
    vd.clear_faults()
    time.sleep(1.2)  # neg_ttl
    T.eq(q(a, "127.0.0.1"), "OK relay-user:" + PW1, "Vault back: OK again")
    vd.kv2_put("smtp-auth/127.0.0.1", {"username": "relay-user", "password": PW2})
    time.sleep(2.2)
    T.eq(q(a, "127.0.0.1"), "OK relay-user:" + PW2, "a changed password is served after the cache ttl")
    vd.kv2_put("smtp-auth/127.0.0.1", {"username": "relay-user", "password": PW1})
    vd.kv2_delete("smtp-auth/gone.example.test")
    r = q(a, "gone.example.test")
    T.ok(r.startswith("TEMP "), "a deleted (soft-deleted) credential: TEMP", r)
    del rule


def test_bad_input(a):
    path = os.path.join(a.workdir, "sm.sock")
    with connect(path) as s:
        s.sendall(b"99999999:")
        r = read_netstring(s)
        T.ok(r.startswith("PERM ") and "limit" in r, "oversized netstring: PERM naming the limit", r)
        T.eq(s.recv(10), b"", "then the connection is closed")
    with connect(path) as s:
        s.sendall(b"5:abcde;")
        r = read_netstring(s)
        T.ok(r.startswith("PERM ") and "','" in r, "netstring without ',': PERM", r)
    with connect(path) as s:
        s.sendall(b"x:")
        T.ok(read_netstring(s).startswith("PERM "), "non-numeric length: PERM")
    with connect(path) as s:
        s.sendall(netstring("saslnospace"))
        T.ok(read_netstring(s).startswith("PERM "), "request without a key: PERM")
    t0 = time.monotonic()
    with connect(path) as s:
        s.sendall(b"20:sasl 12")  # partial frame, then silence
        s.settimeout(10)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        T.ok(data == b"" and time.monotonic() - t0 < 8, "partial frame: closed at the read deadline", data)
    with connect(path) as s:  # slow client: one byte at a time, but within the deadline per byte
        for ch in netstring("sasl 127.0.0.1")[:-1]:
            s.sendall(bytes([ch]))
            time.sleep(0.01)
        s.sendall(b",")
        T.eq(read_netstring(s), "OK relay-user:" + PW1, "a slow client (byte by byte) is served")
    # a thousand idle connections; another client is served meanwhile; no fd leak afterwards
    pid = a.proc.pid
    fds_before = len(os.listdir("/proc/%d/fd" % pid))
    idle = []
    for _ in range(1000):
        for attempt in range(200):  # the listen backlog may be full for a moment
            try:
                idle.append(connect(path))
                break
            except (BlockingIOError, ConnectionRefusedError):
                time.sleep(0.01)
    T.eq(q(a, "127.0.0.1"), "OK relay-user:" + PW1, "served while 1000 idle connections are open")
    fds_busy = len(os.listdir("/proc/%d/fd" % pid))
    T.ok(fds_busy >= fds_before + 900, "the agent holds the idle connections (some may already have idled out)", (fds_before, fds_busy))
    for s in idle:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and len(os.listdir("/proc/%d/fd" % pid)) > fds_before + 2:
        time.sleep(0.1)
    T.ok(len(os.listdir("/proc/%d/fd" % pid)) <= fds_before + 2, "their descriptors are released")
    # idle deadline
    with connect(path) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        T.eq(s.recv(10), b"", "an idle connection is closed at idle_timeout")
        T.ok(time.monotonic() - t0 < 8, "within the idle timeout")
    T.ok(a.proc.poll() is None, "the agent is still running after bad input")


def test_peer_refused(vd, run, tok, audit, key, mport):
    cfg = config(vd, run, tok, audit, key, mport, allow='allow_users = ["nobody"]')
    cfg = cfg.replace(f'{run}/sm.sock', f'{run}/sm2.sock').replace(f"127.0.0.1:{mport}", "127.0.0.1:%d" % free_port())
    with Agent(run, cfg, name="agent2.toml") as a2:
        with connect(os.path.join(run, "sm2.sock")) as s:  # refused at accept: the reply comes unasked
            r = read_netstring(s)
        T.ok(r.startswith("PERM ") and "not allowed" in r, "a peer outside the allow-list is refused", r)
        T.ok(a2.wait_log("uid 0"), "the refusal is logged with the peer's uid")
        scan(a2.log(), "the second agent's log")


def test_approle(vd, run, audit, key, mport):
    """The agent's own Vault auth by AppRole (role_id, secret_id_file), with a read-only policy."""
    sid = "agent-approle-secret-id-5b1e7c"
    vd.call("POST", "/v1/sys/auth/approle", {"type": "approle"})
    vd.policy("agent-read", 'path "secret/data/smtp-auth/*" { capabilities = ["read"] }')
    vd.call("POST", "/v1/auth/approle/role/agent", {"token_policies": ["agent-read"], "token_ttl": "1h"})
    vd.call("POST", "/v1/auth/approle/role/agent/role-id", {"role_id": "agent-role-id-1"})
    vd.call("POST", "/v1/auth/approle/role/agent/custom-secret-id", {"secret_id": sid})
    sidf = os.path.join(run, "secret-id")
    with open(sidf, "w") as f:
        f.write(sid + "\n")
    os.chmod(sidf, 0o600)
    cfg = config(vd, run, "unused", audit, key, mport).replace(
        'token_file = "unused"', 'auth = "approle"\nrole_id = "agent-role-id-1"\nsecret_id_file = "%s"' % sidf)
    cfg = cfg.replace(f"{run}/sm.sock", f"{run}/sm3.sock").replace(f"127.0.0.1:{mport}", "127.0.0.1:%d" % free_port())
    vd.reset_counters()
    with Agent(run, cfg, name="agent3.toml") as a3:
        r = socketmap_query(os.path.join(run, "sm3.sock"), "sasl", "relay.example.test")
        T.eq(r, "OK name-user:" + PW2, "AppRole auth: the agent logs in and answers")
        T.ok(vd.count("POST", "/v1/auth/approle/login") >= 1, "it logged in with AppRole")
        T.ok(sid not in a3.log(), "the secret_id is never logged")
        scan(a3.log(), "the AppRole agent's log")


def test_one_read_per_key(vd, run, tok, audit, key, mport, mode):
    """Cold start: one Vault GET per credential (user name and password are two fields of one
    secret, read once), with lookups in the pool (audit mode sync) and hits on the loop (async);
    64 concurrent clients on one key and on 16 keys; a restricted credential stores nothing."""
    n = 8
    pre = "cold-%s-" % mode
    for i in range(n + 1 + 16):
        vd.kv2_put("smtp-auth/%s%d.example.test" % (pre, i), {"username": "u%d" % i, "password": PW1})
    cfg = config(vd, run, tok, audit, key, mport).replace('ttl = "2s"', 'ttl = "600s"')
    cfg = cfg.replace('file = "%s"' % audit, 'file = "%s"\nmode = "%s"' % (audit, mode))
    sock = os.path.join(run, "sm-%s.sock" % mode)
    mp = free_port()
    cfg = cfg.replace(f"{run}/sm.sock", sock).replace(f"127.0.0.1:{mport}", "127.0.0.1:%d" % mp)
    path = "/v1/secret/data/smtp-auth/" + pre

    def inline_answers():
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mp, timeout=10).read().decode()
        line = [x for x in body.splitlines() if x.startswith('vks_agent_inline_total{protocol="socketmap"}')]
        return int(line[0].split()[-1]) if line else -1

    def gets():
        return sum(v for k, v in vd.counters().items() if k.startswith("GET " + path))

    with Agent(run, cfg, name="agent-%s.toml" % mode) as a4:
        vd.reset_counters()
        for i in range(n):
            T.eq(socketmap_query(sock, "sasl", "%s%d.example.test" % (pre, i)), "OK u%d:%s" % (i, PW1),
                 "%s: cold key %d answered" % (mode, i))
        T.eq(gets(), n, "%s: cold start of %d credentials = %d Vault GETs (one per key, not per field)" % (mode, n, n))
        for i in range(n):
            socketmap_query(sock, "sasl", "[%s%d.example.test]:587" % (pre, i))
        T.eq(gets(), n, "%s: warm lookups (host and nexthop forms) read nothing more" % mode)
        got = inline_answers()
        if mode == "async":
            T.ok(got >= n, "async audit: the %d warm lookups were answered on the event loop" % n, got)
        else:
            T.eq(got, 0, "sync audit: nothing is answered on the event loop (every lookup in the pool)")
        for label, keys in [("one key", [n] * 64), ("16 keys", [n + 1 + (k % 16) for k in range(64)])]:
            vd.reset_counters()
            barrier = threading.Barrier(len(keys))
            res = [None] * len(keys)

            def cold(k):
                with connect(sock) as s:
                    barrier.wait()
                    s.sendall(netstring("sasl %s%d.example.test" % (pre, keys[k])))
                    res[k] = read_netstring(s)

            th = [threading.Thread(target=cold, args=(k,)) for k in range(len(keys))]
            for t in th:
                t.start()
            for t in th:
                t.join(60)
            want = len(set(keys))
            T.ok(all(r == "OK u%d:%s" % (keys[k], PW1) for k, r in enumerate(res)),
                 "%s: 64 concurrent clients on %s all answered right" % (mode, label), [r for r in res if r and not r.startswith("OK")][:3])
            T.eq(gets(), want, "%s: 64 concurrent clients on %s = %d Vault GETs" % (mode, label, want))
        vd.reset_counters()
        r = socketmap_query(sock, "sasl", "restricted.example.test")
        T.ok(r.startswith("TEMP ") and PWR not in r, "%s: a restricted credential is still TEMP" % mode, r)
        scan(a4.log(), "the %s agent's log" % mode)


def test_metrics(a, mport):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10).read().decode()
    T.ok('vks_agent_lookups_total{protocol="socketmap",result="OK"}' in body, "metrics: lookups by protocol and result")
    ok_count = [l for l in body.splitlines() if l.startswith('vks_agent_lookups_total{protocol="socketmap",result="OK"}')]
    T.ok(ok_count and int(ok_count[0].split()[-1]) > 10, "metrics: OK lookups counted", ok_count)
    T.ok("vks_agent_cache_hits_total" in body and "vks_agent_stale_answers_total" in body, "metrics: hits and stale")
    T.ok('vks_agent_vault_latency_seconds_bucket{le="+Inf"}' in body, "metrics: Vault latency histogram")
    tmp = [l for l in body.splitlines() if l.startswith('vks_agent_lookups_total{protocol="socketmap",result="TEMP"}')]
    T.ok(tmp and int(tmp[0].split()[-1]) >= 3, "metrics: TEMP answers counted", tmp)
    h = urllib.request.urlopen("http://127.0.0.1:%d/health" % mport, timeout=10)
    T.ok(h.status == 200 and h.read() == b"ok\n", "health check: 200 ok")
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % mport, timeout=10)
        T.ok(False, "unknown metrics path: 404")
    except urllib.error.HTTPError as e:
        T.eq(e.code, 404, "unknown metrics path: 404")
    scan(body, "/metrics")


def test_reload(a):
    good = open(a.config_path).read()
    start = len(a.log())
    a.write_config(good.replace('map = "sasl"', 'map = "sasl2"'))
    a.hup()
    T.ok(a.wait_log("configuration reloaded", start=start), "SIGHUP reloads")
    T.ok(q(a, "127.0.0.1", name="sasl2").startswith("OK relay-user:"), "the new map name is answered after reload")
    T.ok(q(a, "127.0.0.1").startswith("PERM "), "the old map name is not")
    start = len(a.log())
    a.write_config(good.replace('map = "sasl"', 'map = "sasl"\nbogus = 1'))
    a.hup()
    T.ok(a.wait_log("reload refused", start=start), "a bad config on SIGHUP is refused")
    T.ok("socketmap.bogus" in a.log()[start:], "and the log says why (the key)")
    T.ok(q(a, "127.0.0.1", name="sasl2").startswith("OK relay-user:"), "the running configuration is kept")
    # a new socket path: the new socket answers, the old path is gone
    start = len(a.log())
    a.write_config(good.replace("/sm.sock", "/sm-new.sock"))
    a.hup()
    T.ok(a.wait_log("configuration reloaded", start=start), "SIGHUP with a new socket path")
    T.ok(socketmap_query(os.path.join(a.workdir, "sm-new.sock"), "sasl", "127.0.0.1").startswith("OK "),
         "the new socket answers")
    T.ok(not os.path.exists(os.path.join(a.workdir, "sm.sock")), "the old socket path is removed")
    # a socket path that cannot be bound: refused, the running socket stays
    start = len(a.log())
    a.write_config(good.replace("/sm.sock", "/no-such-dir/sm.sock"))
    a.hup()
    T.ok(a.wait_log("reload refused", start=start), "an unbindable socket path is refused")
    T.ok(socketmap_query(os.path.join(a.workdir, "sm-new.sock"), "sasl", "127.0.0.1").startswith("OK "),
         "the running socket keeps answering")
    a.write_config(good)
    start = len(a.log())
    a.hup()
    T.ok(a.wait_log("configuration reloaded", start=start), "reload back to the first file")
    T.ok(q(a, "127.0.0.1").startswith("OK "), "the first socket path answers again")


def test_audit(audit, key):
    p = subprocess.run([os.path.join(ROOT, BUILD, "vks"), "audit", "verify", audit, "--key-file", key],
                       capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode()
    T.eq(p.returncode, 0, "vks audit verify accepts the agent's trail")
    text = open(audit).read()
    T.ok('"agent.socketmap"' in text, "audit events name the protocol (api agent.socketmap)")
    T.ok("peer uid=0" in text and "pid=" in text, "audit events carry the peer's uid and pid")
    T.ok("key=relay.example.test" in text, "audit events carry the lowercased key")
    T.ok('"relay-user"' in text, "the user name is in the event context")
    scan(text, "the audit trail")
    scan(out, "vks audit verify output")


def main():
    run = os.path.join(WORK, "run")
    os.makedirs(run, mode=0o755, exist_ok=True)
    with VaultDev() as vd:
        vd.kv2_put("smtp-auth/127.0.0.1", {"username": "relay-user", "password": PW1})
        vd.kv2_put("smtp-auth/relay.example.test", {"username": "name-user", "password": PW2})
        vd.kv2_put("smtp-auth/slow.example.test", {"username": "slow-user", "password": PW2})
        vd.kv2_put("smtp-auth/colon.example.test", {"username": "bad:user", "password": PWC})
        vd.kv2_put("smtp-auth/nouser.example.test", {"password": PWC})
        vd.kv2_put("smtp-auth/gone.example.test", {"username": "g", "password": PWC})
        vd.kv2_put("smtp-auth/restricted.example.test", {"username": "r", "password": PWR})
        vd.call("POST", "/v1/secret/metadata/smtp-auth/restricted.example.test",
                {"custom_metadata": {"allowed_hosts": "192.0.2.1"}})
        tok = token_file(run, vd.root_token + "\n")
        key = audit_key_file(run)
        audit = os.path.join(run, "audit.jsonl")
        mport = free_port()
        good = os.path.join(run, "agent.toml")
        with open(good, "w") as f:
            f.write(config(vd, run, tok, audit, key, mport))
        T.run(test_check_config, run, good)
        T.run(test_shipped_files, vd, run)
        a = Agent(run, config(vd, run, tok, audit, key, mport))
        try:
            T.ok(oct(os.stat(os.path.join(run, "sm.sock")).st_mode & 0o777) == "0o660", "socket mode 0660")
            T.run(test_answers, vd, a)
            T.run(test_bad_input, a)
            T.run(test_no_stall, vd, a)
            T.run(test_vault_down, vd, a)
            T.run(test_metrics, a, mport)
            T.run(test_reload, a)
            T.run(test_peer_refused, vd, run, tok, audit + ".2", key, mport)
            T.run(test_approle, vd, run, audit + ".3", key, mport)
            T.run(test_one_read_per_key, vd, run, tok, audit + ".4", key, mport, "sync")
            T.run(test_one_read_per_key, vd, run, tok, audit + ".5", key, mport, "async")
        finally:
            rc = a.stop()
        T.eq(rc, 0, "SIGTERM: the agent drains and exits 0")
        T.ok(not os.path.exists(os.path.join(run, "sm.sock")), "the socket is removed at exit")
        log = a.log()
        print("---- agent log (tail) ----")
        print("\n".join(log.splitlines()[-15:]))
        scan(log, "the agent's log")
        T.run(test_audit, audit, key)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
