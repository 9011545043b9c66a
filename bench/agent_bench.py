"""vks-agent benchmarks (issue 11 "Performance"), all ratios from one run on this machine.

Clients: `postmap -q` (what Postfix users run) and bench_agent_client, one small C program used
for both sides of every other comparison (libcurl with one reused handle per thread: keep-alive
and the TLS session kept; raw unix sockets for socketmap and Exim's readsocket), so the client's
own cost is the same and small on both sides.

Two agents, one after the other, same config except `agent.inline_hits`:
  A "inline": cache hits answered on the event loop (the default), audit file sink mode async;
  B "pool":    every lookup through the worker pool (inline_hits = false; how it was before).

  1. socketmap hits through the agent vs `postmap -q` on a hash:/lmdb: table (postmap's start-up
     in both; goal: agent at most 2x), and the agent's own hit latency on a persistent connection.
  2. hits with the lean client: socketmap (persistent connection), Exim readsocket (a connection
     per request), [vault_api] over loopback TLS and over its unix socket, and the same KV v2
     read straight from vault-dev over loopback TLS (goal: a vault_api hit at least 5x faster).
  2k. KumoMTA's real pattern: vaultrs builds a new VaultClient on every keysource call, i.e. a NEW
     connection (and a full TLS handshake) per read, once per outbound connection that does AUTH.
     The lean client with a new libcurl handle per request (no TLS session reuse), the exact
     request KumoMTA sends (GET /v1/<mount>/data/<path>, X-Vault-Request: true, X-Vault-Token):
     vault-dev over TLS vs the agent over loopback TLS vs a second agent (same cache and audit
     settings) whose [vault_api] listener is plain HTTP on 127.0.0.1 (tls = false).
  3. 64 concurrent clients: throughput and p99 (socketmap, vault_api).
  4. cold starts, counted by vault-dev: N credentials one after the other, 64 clients on one key,
     64 clients on 16 keys, a three-field vault_api read (goal: one Vault request per key).
Timings are wall-clock on a shared machine: compare the ratios, not the absolute numbers."""
import hashlib
import os
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
from agent import Agent, connect, netstring, read_netstring  # noqa: E402
from smtprelay import ensure_cert  # noqa: E402

PW = "bench-pw-not-a-real-secret-0001"
TOK = "bench-client-token-0001"
CLIENT = os.path.join(ROOT, BUILD, "bench", "bench_agent_client")
N_COLD = 32


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def ms(x):
    return "%.3f ms" % (x * 1000)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def postmap_times(pfdir, table, key, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.run(["postmap", "-c", pfdir, "-q", key, table], capture_output=True)
        out.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise RuntimeError("postmap -q %s: %s" % (table, p.stderr.decode()[:200]))
    return out


def client(*args):
    """Runs the lean client; returns its numbers as a dict (p50_us, p99_us, rps, errors...)."""
    p = subprocess.run([CLIENT] + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    r = dict(kv.split("=") for kv in line.split() if "=" in kv)
    if not r:
        raise RuntimeError("bench_agent_client %s: %s" % (args[0], p.stderr[:300]))
    return {k: float(v) for k, v in r.items()}


def us(r):
    return "p50 %.0f us p99 %.0f us" % (r["p50_us"], r["p99_us"])


def config(vd, work, tok, cert, key, api_port, inline, audit_key):
    h = hashlib.sha256(TOK.encode()).hexdigest()
    return f'''[vault]
address = "{vd.addr}"
ca_cert = "{vd.cacert}"
token_file = "{tok}"
[cache]
ttl = "600s"
[audit]
file = "{work}/audit-{inline}.jsonl"
key_file = "{audit_key}"
mode = "async"
[agent]
workers = 4
max_connections = 4096
inline_hits = {"true" if inline == "inline" else "false"}
[socketmap]
socket = "{work}/sm.sock"
allow_users = ["root"]
map = "sasl"
[socketmap.credential]
mount = "secret"
path = "smtp-auth/{{host}}"
username_field = "username"
key = "password"
[exim]
socket = "{work}/exim.sock"
allow_users = ["root"]
[exim.credential]
mount = "secret"
path = "smtp-auth/{{host}}"
username_field = "username"
key = "password"
[vault_api]
listen = "127.0.0.1:{api_port}"
tls_cert = "{cert}"
tls_key = "{key}"
socket = "{work}/api.sock"
fields = ["password"]
[[vault_api.client]]
name = "bench"
token_sha256 = "{h}"
mounts = ["secret"]
path_prefixes = ["smtp-auth/"]
'''


def plain_config(vd, work, tok, port, audit_key):
    h = hashlib.sha256(TOK.encode()).hexdigest()
    return f'''[vault]
address = "{vd.addr}"
ca_cert = "{vd.cacert}"
token_file = "{tok}"
[cache]
ttl = "600s"
[audit]
file = "{work}/audit-plain.jsonl"
key_file = "{audit_key}"
mode = "async"
[agent]
workers = 4
max_connections = 4096
[vault_api]
listen = "127.0.0.1:{port}"
tls = false
fields = ["password"]
[[vault_api.client]]
name = "bench"
token_sha256 = "{h}"
mounts = ["secret"]
path_prefixes = ["smtp-auth/"]
'''


def kumomta_pattern(work, vd, api_port, plain_port, cert):
    """Section 2k: a new connection per read (see the module's docstring). Returns the numbers."""
    path = "/v1/secret/data/smtp-auth/relay2.example"
    n = int(os.environ.get("AGENT_BENCH_NEWCONN_N", "500"))
    r = {}
    # interleaved in two halves so a load change on the shared machine hits every side alike
    for half in range(2):
        for name, args in [("vd", (vd.addr + path, "--cacert", vd.cacert, "--token", vd.root_token)),
                           ("api_tls", ("https://127.0.0.1:%d%s" % (api_port, path), "--cacert", cert, "--token", TOK)),
                           ("api_plain", ("http://127.0.0.1:%d%s" % (plain_port, path), "--token", TOK))]:
            x = client("http", *args, "--new-conn", 1, "-n", n // 2, "-w", 10)
            r.setdefault(name, []).append(x)
    out = {k: {"p50_us": sum(x["p50_us"] for x in v) / 2, "p99_us": max(x["p99_us"] for x in v)} for k, v in r.items()}
    out["api_plain_keepalive"] = client("http", "http://127.0.0.1:%d%s" % (plain_port, path), "--token", TOK,
                                        "-n", 2000, "-w", 20)
    print("2k. KumoMTA's pattern: a NEW connection per read (new libcurl handle, no TLS session reuse), %d each:" % n)
    print("   vault-dev direct over TLS            %s" % us(out["vd"]))
    print("   agent over loopback TLS              %s" % us(out["api_tls"]))
    print("   agent over plain HTTP on 127.0.0.1   %s" % us(out["api_plain"]))
    print("   speed-up vs vault-dev, p50: agent TLS %.1fx, agent plain %.1fx (goal >= 5x)" %
          (out["vd"]["p50_us"] / out["api_tls"]["p50_us"], out["vd"]["p50_us"] / out["api_plain"]["p50_us"]))
    print("   (plain HTTP, keep-alive, for comparison: %s)" % us(out["api_plain_keepalive"]))
    return out


def hits(work, vd, api_port, cert, label):
    """Section 2 for one agent: returns the numbers by name."""
    sm, ex, api = os.path.join(work, "sm.sock"), os.path.join(work, "exim.sock"), os.path.join(work, "api.sock")
    path = "/v1/secret/data/smtp-auth/relay2.example"
    r = {}
    r["socketmap"] = client("socketmap", sm, "sasl relay%d.example", 64, "-n", 3000, "-w", 64)
    r["exim"] = client("exim", ex, "plain relay3.example\n", "-n", 2000)
    r["api_tls"] = client("http", "https://127.0.0.1:%d%s" % (api_port, path), "--cacert", cert, "--token", TOK,
                          "-n", 2000, "-w", 20)
    r["vd_tls"] = client("http", vd.addr + path, "--cacert", vd.cacert, "--token", vd.root_token, "-n", 2000, "-w", 20)
    r["api_unix"] = client("http", "http://localhost" + path, "--unix", api, "--token", TOK, "-n", 2000, "-w", 20)
    print("2%s. hits, lean C client, agent %s:" % ("a" if label == "inline" else "b", label))
    print("   socketmap, persistent connection     %s" % us(r["socketmap"]))
    print("   exim readsocket, connection each     %s" % us(r["exim"]))
    print("   vault_api over TLS (keep-alive)      %s" % us(r["api_tls"]))
    print("   vault_api over its unix socket       %s" % us(r["api_unix"]))
    print("   vault-dev direct over TLS            %s" % us(r["vd_tls"]))
    print("   speed-up vault_api hit vs vault-dev: TLS p50 %.1fx p99 %.1fx, unix p50 %.1fx (goal >= 5x)" %
          (r["vd_tls"]["p50_us"] / r["api_tls"]["p50_us"], r["vd_tls"]["p99_us"] / r["api_tls"]["p99_us"],
           r["vd_tls"]["p50_us"] / r["api_unix"]["p50_us"]))
    return r


def concurrent(work, api_port, cert):
    sm = os.path.join(work, "sm.sock")
    path = "/v1/secret/data/smtp-auth/relay2.example"
    a = client("socketmap", sm, "sasl relay%d.example", 64, "-n", 300, "-c", 64, "-w", 5)
    b = client("http", "https://127.0.0.1:%d%s" % (api_port, path), "--cacert", cert, "--token", TOK,
               "-n", 100, "-c", 64, "-w", 2)
    print("3. 64 concurrent clients (agent inline):")
    print("   socketmap x 300 hits each: %.0f lookups/s, %s" % (a["rps"], us(a)))
    print("   vault_api TLS x 100 each:  %.0f reads/s, %s" % (b["rps"], us(b)))


def cold(work, vd, api_port, cert):
    sm = os.path.join(work, "sm.sock")
    pre = "/v1/secret/data/smtp-auth/cold"

    def gets():
        return sum(v for k, v in vd.counters().items() if k.startswith("GET " + pre))

    vd.reset_counters()
    ok = 0
    with connect(sm) as s:
        for i in range(N_COLD):
            s.sendall(netstring("sasl cold%d.example" % i))
            ok += read_netstring(s).startswith("OK ")
    seq = gets()
    res = {}
    for label, keys in [("one key", [N_COLD] * 64), ("16 keys", [N_COLD + 1 + k % 16 for k in range(64)])]:
        vd.reset_counters()
        barrier = threading.Barrier(64)
        out = []

        def one(k):
            with connect(sm) as c:
                barrier.wait()
                c.sendall(netstring("sasl cold%d.example" % keys[k]))
                out.append(read_netstring(c))

        th = [threading.Thread(target=one, args=(k,)) for k in range(64)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        res[label] = (sum(r.startswith("OK ") for r in out), gets(), len(set(keys)))
    print("4. cold starts (Vault GETs counted by vault-dev; a credential = 2 fields of one secret):")
    print("   %d credentials one after the other: %d OK, %d Vault GETs (goal %d)" % (N_COLD, ok, seq, N_COLD))
    for label, (nok, g, want) in res.items():
        print("   64 clients at once on %s: %d OK, %d Vault GETs (goal %d)" % (label, nok, g, want))


def main():
    if not os.access(CLIENT, os.X_OK):
        print("agent bench skipped: %s not built" % CLIENT)
        return
    work = tempfile.mkdtemp(prefix="vks-agent-bench-")
    os.chmod(work, 0o755)
    pfdir = os.path.join(work, "pf")
    os.makedirs(pfdir)
    with open(os.path.join(pfdir, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\n")
    with open(os.path.join(pfdir, "sasl_passwd"), "w") as f:
        for i in range(1000):
            f.write("relay%d.example user%d:%s\n" % (i, i, PW))
    subprocess.run(["postmap", "-c", pfdir, "hash:" + os.path.join(pfdir, "sasl_passwd")], check=True)
    has_lmdb = subprocess.run(["postmap", "-c", pfdir, "lmdb:" + os.path.join(pfdir, "sasl_passwd")],
                              capture_output=True).returncode == 0
    os.makedirs(os.path.join(work, "vd"))
    with VaultDev(workdir=os.path.join(work, "vd")) as vd:
        for i in range(64):
            vd.kv2_put("smtp-auth/relay%d.example" % i, {"username": "user%d" % i, "password": PW})
        for i in range(N_COLD + 17):
            vd.kv2_put("smtp-auth/cold%d.example" % i, {"username": "cold%d" % i, "password": PW})
        tok = os.path.join(work, "token")
        with open(tok, "w") as f:
            f.write(vd.root_token)
        os.chmod(tok, 0o600)
        audit_key = os.path.join(work, "audit.key")
        with open(audit_key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(audit_key, 0o600)
        cert, key = ensure_cert(os.path.join(work, "tls"))
        api_port = free_port()
        results = {}
        for label in ("inline", "pool"):
            with Agent(work, config(vd, work, tok, cert, key, api_port, label, audit_key), name=label + ".toml"):
                sock = os.path.join(work, "sm.sock")
                sm_table = "socketmap:unix:%s:sasl" % sock
                for i in range(64):  # warm the cache
                    subprocess.run(["postmap", "-c", pfdir, "-q", "relay%d.example" % i, sm_table], capture_output=True)
                if label == "inline":
                    n = 60
                    t_sm = postmap_times(pfdir, sm_table, "relay1.example", n)
                    t_hash = postmap_times(pfdir, "hash:" + os.path.join(pfdir, "sasl_passwd"), "relay1.example", n)
                    print("1. postmap -q, %d runs each (process start-up included in all):" % n)
                    print("   socketmap via agent  p50 %s  p99 %s" % (ms(pct(t_sm, 50)), ms(pct(t_sm, 99))))
                    print("   hash: table          p50 %s  p99 %s" % (ms(pct(t_hash, 50)), ms(pct(t_hash, 99))))
                    print("   ratio agent/hash     p50 %.2fx  p99 %.2fx  (goal <= 2x)" %
                          (pct(t_sm, 50) / pct(t_hash, 50), pct(t_sm, 99) / pct(t_hash, 99)))
                    if has_lmdb:
                        t_lmdb = postmap_times(pfdir, "lmdb:" + os.path.join(pfdir, "sasl_passwd"), "relay1.example", n)
                        print("   lmdb: table          p50 %s  p99 %s  ratio agent/lmdb p50 %.2fx" %
                              (ms(pct(t_lmdb, 50)), ms(pct(t_lmdb, 99)), pct(t_sm, 50) / pct(t_lmdb, 50)))
                results[label] = hits(work, vd, api_port, cert, label)
                if label == "inline":
                    plain_port = free_port()
                    with Agent(work, plain_config(vd, work, tok, plain_port, audit_key), name="plain.toml"):
                        kumomta_pattern(work, vd, api_port, plain_port, cert)
                    concurrent(work, api_port, cert)
                    cold(work, vd, api_port, cert)
        a, b = results["inline"], results["pool"]
        print("5. inline vs pool, p50: socketmap %.1fx, exim %.1fx, vault_api TLS %.1fx, unix %.1fx faster" %
              tuple(b[k]["p50_us"] / a[k]["p50_us"] for k in ("socketmap", "exim", "api_tls", "api_unix")))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
