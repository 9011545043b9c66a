"""vks-agent benchmarks (issue 11 "Performance"), all ratios from one run on this machine:

  1. socketmap hits through the agent vs what Postfix users have today: `postmap -q KEY` against
     the agent's socketmap and against a hash: and an lmdb: table (same client program, so the
     process start-up cost is in both; goal: agent at most 2x). Also the agent's own hit latency
     on a persistent connection (what Postfix's smtp process sees).
  2. 64 concurrent socketmap clients on persistent connections: throughput and p99.
  3. cold start: 64 clients ask for the same cold key at once; Vault requests counted by vault-dev
     (goal: one per Vault field read; the agent reads two fields, user name and password, unless
     the map has a fixed username).
  4. [vault_api] hit vs a direct vault-dev read of the same secret over TLS, persistent
     connections (goal: the agent at least 5x faster).
Timings are wall-clock on a shared machine: compare the ratios, not the absolute numbers."""
import hashlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ.get("ROOT", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from agent import Agent, connect, netstring, read_netstring  # noqa: E402
from smtprelay import ensure_cert  # noqa: E402

PW = "bench-pw-not-a-real-secret-0001"
TOK = "bench-client-token-0001"


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


def main():
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
        vd.kv2_put("smtp-auth/cold.example", {"username": "cold", "password": PW})
        vd.kv2_put("smtp-auth/cold2.example", {"username": "cold", "password": PW})
        tok = os.path.join(work, "token")
        with open(tok, "w") as f:
            f.write(vd.root_token)
        os.chmod(tok, 0o600)
        cert, key = ensure_cert(os.path.join(work, "tls"))
        api_port = free_port()
        h = hashlib.sha256(TOK.encode()).hexdigest()
        cfg = f'''[vault]
address = "{vd.addr}"
ca_cert = "{vd.cacert}"
token_file = "{tok}"
[cache]
ttl = "600s"
[agent]
workers = 4
max_connections = 4096
[socketmap]
socket = "{work}/sm.sock"
allow_users = ["root"]
map = "sasl"
[socketmap.credential]
mount = "secret"
path = "smtp-auth/{{host}}"
username_field = "username"
key = "password"
[vault_api]
listen = "127.0.0.1:{api_port}"
tls_cert = "{cert}"
tls_key = "{key}"
fields = ["password"]
[[vault_api.client]]
name = "bench"
token_sha256 = "{h}"
mounts = ["secret"]
path_prefixes = ["smtp-auth/"]
'''
        with Agent(work, cfg) as a:
            sock = os.path.join(work, "sm.sock")
            sm_table = "socketmap:unix:%s:sasl" % sock
            # 1. postmap -q: agent vs hash/lmdb (warm the cache first)
            subprocess.run(["postmap", "-c", pfdir, "-q", "relay1.example", sm_table], capture_output=True)
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
            c = connect(sock)
            lat = []
            for i in range(3000):
                t0 = time.perf_counter()
                c.sendall(netstring("sasl relay%d.example" % (i % 64)))
                r = read_netstring(c)
                lat.append(time.perf_counter() - t0)
                assert r.startswith("OK "), r[:20]
            c.close()
            print("   agent hit, persistent connection (as Postfix's smtp uses it): p50 %s p99 %s" %
                  (ms(pct(lat, 50)), ms(pct(lat, 99))))

            # 2. 64 concurrent clients
            per, nthreads = 300, 64
            lats = [[] for _ in range(nthreads)]

            def client(k):
                s = connect(sock)
                for i in range(per):
                    t0 = time.perf_counter()
                    s.sendall(netstring("sasl relay%d.example" % ((i + k) % 64)))
                    read_netstring(s)
                    lats[k].append(time.perf_counter() - t0)
                s.close()

            th = [threading.Thread(target=client, args=(k,)) for k in range(nthreads)]
            t0 = time.perf_counter()
            for t in th:
                t.start()
            for t in th:
                t.join()
            dt = time.perf_counter() - t0
            allv = [x for l in lats for x in l]
            print("2. 64 concurrent clients x %d hits: %.0f lookups/s, p50 %s, p99 %s (Python clients)" %
                  (per, len(allv) / dt, ms(pct(allv, 50)), ms(pct(allv, 99))))

            # 3. cold start: 64 clients, one cold key
            vd.reset_counters()
            barrier = threading.Barrier(64)
            res = []

            def cold(k):
                s = connect(sock)
                barrier.wait()
                s.sendall(netstring("sasl cold.example"))
                res.append(read_netstring(s))
                s.close()

            th = [threading.Thread(target=cold, args=(k,)) for k in range(64)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            gets = vd.count("GET", "/v1/secret/data/smtp-auth/cold.example")
            print("3. cold start, 64 clients at once on one key: %d OK, %d Vault GETs "
                  "(2 fields read: user name and password; goal one per field)" %
                  (sum(r.startswith("OK ") for r in res), gets))

            # 4. vault_api hit vs direct vault-dev read
            ctx_agent = ssl.create_default_context(cafile=cert)
            ctx_vd = ssl.create_default_context(cafile=vd.cacert)
            path = "/v1/secret/data/smtp-auth/relay2.example"

            def run_http(host, port, ctx, token, n):
                conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
                out = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    conn.request("GET", path, headers={"X-Vault-Token": token, "X-Vault-Request": "true"})
                    r = conn.getresponse()
                    r.read()
                    out.append(time.perf_counter() - t0)
                    assert r.status == 200, r.status
                conn.close()
                return out

            run_http("127.0.0.1", api_port, ctx_agent, TOK, 5)
            t_agent = run_http("127.0.0.1", api_port, ctx_agent, TOK, 500)
            t_vd = run_http(vd.host, vd.port, ctx_vd, vd.root_token, 500)
            print("4. KV v2 read over TLS, persistent connection, 500 each:")
            print("   vault_api (cache hit) p50 %s p99 %s; vault-dev direct p50 %s p99 %s; "
                  "speed-up p50 %.1fx (goal >= 5x)" %
                  (ms(pct(t_agent, 50)), ms(pct(t_agent, 99)), ms(pct(t_vd, 50)), ms(pct(t_vd, 99)),
                   pct(t_vd, 50) / pct(t_agent, 50)))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
