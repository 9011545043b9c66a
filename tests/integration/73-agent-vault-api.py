"""vks-agent [vault_api]: the Vault-compatible read endpoint for unmodified clients.

  - the exact request KumoMTA's vault keysource sends (vaultrs 0.7: GET /v1/<mount>/data/<path>,
    headers X-Vault-Request: true and X-Vault-Token) gets Vault's response shape with every field
    vaultrs requires, and the same bytes as a direct vault-dev read;
  - python3-hvac (KV v2 read_secret_version, KV v1 read_secret) pointed at the agent reads the same
    values as from Vault;
  - the agent's cache serves repeated reads (vault-dev counts one request);
  - a wrong, missing or other client's token, a path outside the client's prefixes, a mount not
    granted, '..' in the path: 403 in Vault's error shape; POST: 405; no secret: 404 {"errors":[]};
    a restricted secret (no destination in a Vault request): 403; Vault unreachable: 503;
  - the TCP listener speaks HTTPS (loopback TLS, verified against its certificate by every client);
  - the unix-socket listener, with the peer's uid in the audit trail; `vks audit verify` passes;
  - `tls = false`: plain HTTP on a loopback address (KumoMTA builds a new Vault client per read):
    KumoMTA's request shape, hvac over http://, the KumoMTA policy example (its
    vault_address = 'http://127.0.0.1:PORT' form) all read the same bytes; no or a wrong token:
    403; --check-config refuses it on a non-loopback address or a name (FILE:LINE: key:), a TCP
    listener with neither TLS files nor tls = false, and tls = false with TLS files.
The agent's output and audit trail are scanned for the test passwords and client tokens."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from agent import Agent, RedactingChecks, agent_config, audit_key_file, free_port, token_file  # noqa: E402

PW = "agent-pw-KUMO-2f8e61a0"
PW1 = "agent-pw-KV1-7c3b90d4"
TOK = "agent-client-token-KUMO-51e0c9aa"
TOK2 = "agent-client-token-NARROW-d7f3b2"
TOK3 = "agent-client-token-BOUND-3e91c07a"
PW3 = "agent-pw-THREE-6b2d94e1"
SECRETS = [PW, PW1, TOK, TOK2, TOK3, PW3]
T = RedactingChecks(SECRETS, "<secret>")
RESTRICTED_MSG = ("permission denied: the secret is restricted (allowed_hosts/allowed_domains) and this client "
                  "token is not bound to an allowed destination or domain")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


CAFILE = None


def get(port, path, token=TOK, headers=None, method="GET", unix=None):
    import ssl
    if unix:
        c = UnixHTTPConnection(unix)
    else:
        ctx = ssl.create_default_context(cafile=CAFILE)
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    h = dict(headers or {})
    if token is not None:
        h["X-Vault-Token"] = token
    c.request(method, path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, body


MPORT = free_port()


def inline_answers():
    import urllib.request
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % MPORT, timeout=10).read().decode()
    line = [x for x in body.splitlines() if x.startswith('vks_agent_inline_total{protocol="vault_api"}')]
    return int(line[0].split()[-1]) if line else -1


def config(vd, d, port, tokf, audit, key, cert, tlskey):
    h1 = hashlib.sha256(TOK.encode()).hexdigest()
    h2 = hashlib.sha256(TOK2.encode()).hexdigest()
    h3 = hashlib.sha256(TOK3.encode()).hexdigest()
    # [audit] comes last from agent_config: async, so cache hits are answered on the event loop
    return agent_config(vd, tokf, audit, key, ttl="60s") + 'mode = "async"\n' + f'''
[metrics]
listen = "127.0.0.1:{MPORT}"
[vault_api]
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{tlskey}"
socket = "{d}/vault.sock"
mode = "0660"
fields = ["key", "username", "password"]

[[vault_api.client]]
name = "kumod"
token_sha256 = "{h1}"
mounts = ["secret", "kv"]
path_prefixes = ["smtp-auth/"]

[[vault_api.client]]
name = "narrow"
token_sha256 = "{h2}"
mounts = ["secret"]
path_prefixes = ["smtp-auth/other"]

[[vault_api.client]]
name = "bound"
token_sha256 = "{h3}"
mounts = ["secret"]
path_prefixes = ["smtp-auth/"]
destination = "192.0.2.1"
'''


def one_read_per_secret(vd, port):
    """All configured fields of a secret come from one Vault read (the first names the others as
    siblings); a response whose first field is cached and the next not is finished in the pool,
    from that field on (one audit event per field, checked in main)."""
    vd.reset_counters()
    st, j = get(port, "/v1/secret/data/smtp-auth/three")
    T.ok(st == 200 and j["data"]["data"] == {"key": PW3, "username": "u3", "password": PW3},
         "three fields of a cold secret", (st, j))
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/three"), 1, "a cold read of three fields = one Vault GET")
    before = inline_answers()
    for _ in range(5):
        get(port, "/v1/secret/data/smtp-auth/three")
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/three"), 1, "and hits read nothing more")
    T.eq(inline_answers() - before, 5, "the 5 hits were answered on the event loop (audit async)")
    st, j = get(port, "/v1/secret/data/smtp-auth/grow")
    T.ok(st == 200 and j["data"]["data"] == {"key": PW3}, "a secret with only the first field", (st, j))
    vd.kv2_put("smtp-auth/grow", {"key": PW3, "username": "u4", "password": PW3})
    time.sleep(1.3)  # past neg_ttl: the absent fields are looked up again, the first is still cached
    vd.reset_counters()
    st, j = get(port, "/v1/secret/data/smtp-auth/grow")
    T.ok(st == 200 and j["data"]["data"] == {"key": PW3, "username": "u4", "password": PW3},
         "first field a hit, the rest read: the response is completed in the pool", (st, j))
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/grow"), 1, "one Vault GET for the two new fields")


def checks(vd, d, port, agent):
    kumo_headers = {"X-Vault-Request": "true"}
    st, j = get(port, "/v1/secret/data/smtp-auth/example.com", headers=kumo_headers)
    T.eq(st, 200, "KumoMTA's request: 200")
    env_ok = (isinstance(j, dict) and isinstance(j.get("request_id"), str) and len(j["request_id"]) == 36 and
              j.get("lease_id") == "" and j.get("renewable") is False and j.get("lease_duration") == 0)
    T.ok(env_ok, "the envelope fields vaultrs requires (request_id, lease_id, renewable, lease_duration)", j)
    md = (j or {}).get("data", {}).get("metadata", {})
    T.ok(isinstance(md.get("created_time"), str) and isinstance(md.get("deletion_time"), str) and
         md.get("destroyed") is False and isinstance(md.get("version"), int) and md.get("version") >= 1,
         "data.metadata has created_time, deletion_time, destroyed, version", md)
    vst, vj = vd.kv2_get("smtp-auth/example.com")
    T.eq(j["data"]["data"]["key"], vj["data"]["data"]["key"], "data.data.key is the same string as Vault's")
    T.eq(md.get("version"), vj["data"]["metadata"]["version"], "the version is Vault's")
    T.eq(sorted(j["data"]["data"]), ["key", "username"], "only the configured fields present in the secret")
    # cache: a second read does not reach Vault
    before = vd.count("GET", "/v1/secret/data/smtp-auth/example.com")
    st, j2 = get(port, "/v1/secret/data/smtp-auth/example.com", headers=kumo_headers)
    T.ok(st == 200 and j2["data"]["data"]["key"] == PW, "a repeated read answers the same")
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/example.com"), before, "served from the agent's cache (no Vault request)")
    T.ok(j2["request_id"] != j["request_id"], "a fresh request_id per response")

    # hvac, the Python Vault client, pointed at the agent
    import hvac
    client = hvac.Client(url="https://127.0.0.1:%d" % port, token=TOK, verify=CAFILE)
    r = client.secrets.kv.v2.read_secret_version(path="smtp-auth/example.com", mount_point="secret")
    T.eq(r["data"]["data"]["key"], vj["data"]["data"]["key"], "hvac KV v2 read through the agent: same value")
    r = client.secrets.kv.v1.read_secret(path="smtp-auth/legacy", mount_point="kv")
    v1st, v1 = vd.kv1_get("smtp-auth/legacy")
    T.eq(r["data"]["key"], v1["data"]["key"], "hvac KV v1 read through the agent: same value")
    bad = hvac.Client(url="https://127.0.0.1:%d" % port, token="not-a-client-token-000", verify=CAFILE)
    try:
        bad.secrets.kv.v2.read_secret_version(path="smtp-auth/example.com", mount_point="secret")
        T.ok(False, "hvac with a wrong token is refused")
    except hvac.exceptions.Forbidden:
        T.ok(True, "hvac with a wrong token is refused (Forbidden)")

    # refusals, in Vault's error shape
    for name, args in [("wrong token", dict(token="wrong-token-123456")), ("missing token", dict(token=None)),
                       ("the agent's own Vault token", dict(token=vd.root_token)),
                       ("another client's prefix", dict(token=TOK2)),
                       ]:
        st, j = get(port, "/v1/secret/data/smtp-auth/example.com", **args)
        T.ok(st == 403 and j == {"errors": ["permission denied"]}, name + ": 403 permission denied", (st, j))
    for name, path in [("path outside the prefixes", "/v1/secret/data/other/x"),
                       ("a mount not granted", "/v1/cubbyhole/smtp-auth/x"),
                       ("'..' in the path", "/v1/secret/data/smtp-auth/../root"),
                       ("escaped path", "/v1/secret/data/smtp-auth%2Fexample.com"),
                       ("no path", "/v1/secret/data/")]:
        st, j = get(port, path)
        T.eq(st, 403, name + ": 403")
    st, j = get(port, "/v1/secret/data/smtp-auth/example.com", method="POST")
    T.ok(st == 405 and "errors" in j, "a write: 405 in the error shape", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/nothing-here")
    T.ok(st == 404 and j == {"errors": []}, "no secret: 404 {\"errors\":[]} like Vault", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/restricted")
    T.ok(st == 403 and j == {"errors": [RESTRICTED_MSG]}, "a restricted secret: 403 saying why (no destination in a Vault request)", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/restricted")
    T.ok(st == 403 and j == {"errors": [RESTRICTED_MSG]}, "again (remembered, judged without a Vault read): 403", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/restricted", token=TOK3)
    T.ok(st == 200 and j["data"]["data"]["key"] == PW, "a client token bound to an allowed destination reads it", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/restricted")
    T.ok(st == 403 and j == {"errors": [RESTRICTED_MSG]}, "an unbound client after it: still 403 (a hit is judged per client)", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/example.com", token=TOK3)
    T.ok(st == 200 and j["data"]["data"]["key"] == PW, "the bound client reads unrestricted secrets as usual", (st, j))
    one_read_per_secret(vd, port)
    st, j = get(port, "/v1/secret/data/smtp-auth/example.com?version=1")
    T.ok(st == 200 and j["data"]["metadata"]["version"] == 1, "?version=N is passed on", (st, j))
    st, j = get(port, "/v1/secret/data/smtp-auth/example.com?list=true")
    T.eq(st, 400, "another query: 400")
    vd.fault(action="close", path_prefix="/v1/secret/data/smtp-auth/cold", duration_seconds=30)
    st, j = get(port, "/v1/secret/data/smtp-auth/cold")
    T.ok(st == 503 and "errors" in j, "Vault unreachable, nothing cached: 503", (st, j))
    vd.clear_faults()
    # the unix socket, with the peer's uid in the audit trail
    st, j = get(0, "/v1/secret/data/smtp-auth/example.com", unix=os.path.join(d, "vault.sock"))
    T.ok(st == 200 and j["data"]["data"]["key"] == PW, "the unix-socket listener answers")
    # bad input on the unix listener: oversized headers, garbage, a thousand idle connections
    us = os.path.join(d, "vault.sock")
    st, j = get(0, "/v1/secret/data/smtp-auth/example.com", headers={"X-Big": "a" * 20000}, unix=us)
    T.ok(st >= 400 and st < 500, "oversized headers: refused with a 4xx", st)
    g = socket.socket(socket.AF_UNIX)
    g.settimeout(10)
    g.connect(us)
    g.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    try:
        data = g.recv(200)
    except OSError:
        data = b""
    g.close()
    T.ok(data == b"" or data.startswith(b"HTTP/1.1 400"), "garbage: 400 or closed", data[:40])
    idle = []
    for _ in range(1000):
        for attempt in range(200):
            try:
                c2 = socket.socket(socket.AF_UNIX)
                c2.connect(us)
                idle.append(c2)
                break
            except (BlockingIOError, ConnectionRefusedError):
                c2.close()
                time.sleep(0.01)
    st, j = get(0, "/v1/secret/data/smtp-auth/example.com", unix=us)
    T.ok(st == 200 and j["data"]["data"]["key"] == PW, "served while 1000 idle connections are open", st)
    for c2 in idle:
        c2.close()
    # the TCP listener speaks TLS only: a plaintext request gets no HTTP answer
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/v1/secret/data/smtp-auth/example.com", headers={"X-Vault-Token": TOK})
        r = c.getresponse()
        body = r.read()
        T.ok(PW.encode() not in body and r.status != 200, "plain HTTP on the TLS port gets no secret", r.status)
    except (http.client.HTTPException, OSError) as e:
        T.ok(True, "plain HTTP on the TLS port is refused (%s)" % type(e).__name__)
    finally:
        c.close()
    T.ok(agent.proc.poll() is None, "the agent is still running")


def policy_example(vd, d, port):
    """policy-examples/kumomta-via-agent.lua in the project's KumoMTA-style host: its Vault client
    (the module) talks to the agent (plain HTTP on loopback: the example's vault_address, with the
    test's port) as to Vault, and the relay accepts the AUTH."""
    from smtprelay import Relay
    relay = Relay(d, creds=[("kumo-user", PW)], tls=True)
    try:
        src = open(os.path.join(ROOT, "policy-examples", "kumomta-via-agent.lua")).read()
        T.ok("vault_address = 'http://127.0.0.1:8207'" in src, "the example shows the plain loopback vault_address form")
        pol = os.path.join(d, "kumomta-via-agent.lua")
        with open(pol, "w") as f:
            f.write(src.replace("127.0.0.1:8207", "127.0.0.1:%d" % port))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
        env.update(VAULT_TOKEN=TOK)
        p = subprocess.run([os.path.join(ROOT, BUILD, "vks-policy"), pol,
                            "--domain", "example.com", "--relay", "127.0.0.1:%d" % relay.port, "--check-auth",
                            "--cafile", relay.cafile, "--timeout-ms", "20000"], capture_output=True, env=env, timeout=120)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        ev = relay.auth_events()
        T.ok(p.returncode == 0 and ev and ev[-1]["ok"] and ev[-1]["user"] == "kumo-user",
             "the KumoMTA policy example authenticates with the password served by the agent", (p.returncode, out[-400:], ev))
        T.ok(not any(x in out for x in SECRETS), "no secret in vks-policy's output")
    finally:
        relay.stop()


def plain_section(listen, extra="tls = false\n"):
    h1 = hashlib.sha256(TOK.encode()).hexdigest()
    return f'''
[vault_api]
listen = "{listen}"
{extra}fields = ["key", "username"]

[[vault_api.client]]
name = "kumod"
token_sha256 = "{h1}"
mounts = ["secret", "kv"]
path_prefixes = ["smtp-auth/"]
'''


def plain_check_config(vd, d, tokf, key, cert, tlskey):
    """--check-config: plain HTTP only on a loopback IP address, and only when asked for."""
    from agent import check_config
    base = agent_config(vd, tokf, os.path.join(d, "audit-cc.jsonl"), key)
    path = os.path.join(d, "plain-cc.toml")
    tls_files = 'tls_cert = "%s"\ntls_key = "%s"\n' % (cert, tlskey)
    for listen, extra, want_key, want in [
            ("0.0.0.0:8207", "tls = false\n", "vault_api.listen", "loopback only"),
            ("192.0.2.10:8207", "tls = false\n", "vault_api.listen", "loopback only"),
            ("[::]:8207", "tls = false\n", "vault_api.listen", "loopback only"),
            ("[::ffff:127.0.0.1]:8207", "tls = false\n", "vault_api.listen", "loopback only"),
            ("127.evil.example:8207", "tls = false\n", "vault_api.listen", "loopback only"),
            ("localhost:8207", "tls = false\n", "vault_api.listen", "only on a loopback IP address"),
            ("127.0.0.1:8207", "", "vault_api.listen", "tls = false for plain HTTP"),
            ("127.0.0.1:8207", "tls = false\n" + tls_files, "vault_api.tls", "contradicts"),
            ("127.0.0.1:8207", 'tls = "off"\n', "vault_api.tls", "expected a boolean")]:
        text = base + plain_section(listen, extra)
        with open(path, "w") as f:
            f.write(text)
        rc, out = check_config(path)
        lines = text.splitlines()
        keyword = want_key.split(".")[1] + " ="
        lineno = [i + 1 for i, ln in enumerate(lines) if ln.startswith(keyword)][0]
        T.ok(rc == 2 and "%s:%d: %s: " % (path, lineno, want_key) in out and want in out,
             "--check-config refuses listen %s %s with FILE:LINE: %s" % (
                 listen, "tls = false + TLS files" if "tls_cert" in extra else extra.strip() or "(no TLS, no tls = false)",
                 want_key),
             (rc, out))
    for listen in ("127.0.0.2:8207", "[::1]:8207"):
        with open(path, "w") as f:
            f.write(base + plain_section(listen))
        rc, out = check_config(path)
        T.ok(rc == 0, "--check-config accepts tls = false on " + listen, (rc, out))
    with open(path, "w") as f:
        f.write(base + plain_section("localhost:8207", tls_files))
    rc, out = check_config(path)
    T.ok(rc == 0, "HTTPS on localhost:PORT is still accepted", (rc, out))


def plain_http(vd, d, tokf, key):
    """A second agent with [vault_api] tls = false on 127.0.0.1: KumoMTA's request, hvac, 403s."""
    pd = os.path.join(d, "plain")
    os.makedirs(pd, exist_ok=True)
    port = free_port()
    audit = os.path.join(pd, "audit.jsonl")
    a = Agent(pd, agent_config(vd, tokf, audit, key) + plain_section("127.0.0.1:%d" % port), name="plain.toml")
    try:
        T.ok("vault_api on http://127.0.0.1:%d (plain HTTP, loopback only)" % port in a.log(),
             "the log says the listener is plain HTTP, loopback only")

        def plain_get(path, token=TOK, headers=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            h = dict(headers or {})
            if token is not None:
                h["X-Vault-Token"] = token
            c.request("GET", path, headers=h)
            r = c.getresponse()
            body = r.read()
            c.close()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, body
        st, j = plain_get("/v1/secret/data/smtp-auth/example.com", headers={"X-Vault-Request": "true"})
        vst, vj = vd.kv2_get("smtp-auth/example.com")
        T.ok(st == 200 and j["data"]["data"]["key"] == vj["data"]["data"]["key"] and j.get("lease_id") == "" and
             j.get("renewable") is False and isinstance(j.get("request_id"), str),
             "KumoMTA's request over plain loopback HTTP: 200, Vault's shape, the same bytes as Vault", (st, j if st != 200 else "ok"))
        import hvac
        client = hvac.Client(url="http://127.0.0.1:%d" % port, token=TOK)
        r = client.secrets.kv.v2.read_secret_version(path="smtp-auth/example.com", mount_point="secret")
        T.eq(r["data"]["data"]["key"], vj["data"]["data"]["key"], "hvac over http:// KV v2: same value")
        r = client.secrets.kv.v1.read_secret(path="smtp-auth/legacy", mount_point="kv")
        T.eq(r["data"]["key"], vd.kv1_get("smtp-auth/legacy")[1]["data"]["key"], "hvac over http:// KV v1: same value")
        for name, tok in [("no token", None), ("a wrong token", "wrong-token-123456"),
                          ("the agent's own Vault token", vd.root_token), ("an empty token", "")]:
            st, j = plain_get("/v1/secret/data/smtp-auth/example.com", token=tok, headers={"X-Vault-Request": "true"})
            T.ok(st == 403 and j == {"errors": ["permission denied"]}, "plain HTTP, %s: 403 permission denied" % name, (st, j))
        st, j = plain_get("/v1/secret/data/other/x")
        T.eq(st, 403, "plain HTTP, a path outside the client's prefixes: 403")
        policy_example(vd, pd, port)
        T.ok(a.proc.poll() is None, "the plain-HTTP agent is still running")
    finally:
        T.eq(a.stop(), 0, "the plain-HTTP agent exits 0 on SIGTERM")
    p = subprocess.run([os.path.join(ROOT, BUILD, "vks"), "audit", "verify", audit, "--key-file", key],
                       capture_output=True, timeout=60)
    T.eq(p.returncode, 0, "vks audit verify accepts the plain-HTTP agent's trail")
    trail = open(audit).read()
    T.ok("client=kumod" in trail and "peer addr=127.0.0.1:" in trail, "its audit events name the client and the peer address")
    for name, text in (("plain agent's log", a.log()), ("plain agent's audit trail", trail)):
        T.ok(not any(x in text for x in SECRETS), "no password or client token in the " + name)


def main():
    d = os.path.join(WORK, "api")
    os.makedirs(d, exist_ok=True)
    agent = None
    with VaultDev(args=["--kv1", "kv"]) as vd:
        try:
            vd.kv2_put("smtp-auth/example.com", {"key": "old-value-not-secret"})
            vd.kv2_put("smtp-auth/example.com", {"key": PW, "username": "kumo-user"})
            vd.kv2_put("smtp-auth/restricted", {"key": PW})
            vd.kv2_put("smtp-auth/cold", {"key": PW})
            vd.kv2_put("smtp-auth/three", {"key": PW3, "username": "u3", "password": PW3})
            vd.kv2_put("smtp-auth/grow", {"key": PW3})
            vd.call("POST", "/v1/secret/metadata/smtp-auth/restricted", {"custom_metadata": {"allowed_hosts": "192.0.2.1"}})
            vd.kv1_put("smtp-auth/legacy", {"key": PW1})
            tokf = token_file(d, vd.root_token)
            key = audit_key_file(d)
            audit = os.path.join(d, "audit.jsonl")
            port = free_port()
            from smtprelay import ensure_cert
            global CAFILE
            cert, tlskey = ensure_cert(os.path.join(d, "tls"))  # self-signed, SAN 127.0.0.1
            CAFILE = cert
            agent = Agent(d, config(vd, d, port, tokf, audit, key, cert, tlskey))
            T.run(checks, vd, d, port, agent)
            T.run(plain_check_config, vd, d, tokf, key, cert, tlskey)
            T.run(plain_http, vd, d, tokf, key)
        finally:
            if agent is not None:
                T.eq(agent.stop(), 0, "the agent exits 0 on SIGTERM")
    p = subprocess.run([os.path.join(ROOT, BUILD, "vks"), "audit", "verify", audit, "--key-file", key],
                       capture_output=True, timeout=60)
    T.eq(p.returncode, 0, "vks audit verify accepts the trail")
    trail = open(audit).read()
    T.ok('"agent.vault_api"' in trail and "client=kumod" in trail, "audit events name the protocol and the client")
    T.ok("peer uid=0" in trail, "the unix-socket peer's uid is audited")
    evs = [json.loads(x) for x in trail.splitlines() if '"agent.vault_api"' in x]
    refused = [e for e in evs if e.get("path") == "smtp-auth/restricted" and e.get("code") == "restricted"]
    T.ok(len(refused) >= 3 and all(e.get("outcome") == "denied" for e in refused),
         "refused reads of the restricted secret are audited as restricted (denied)", len(refused))
    bound = [e for e in evs if e.get("path") == "smtp-auth/restricted" and e.get("code") == "ok"]
    T.ok(len(bound) >= 1 and "client=bound" in json.dumps(bound[0]) and "192.0.2.1" in json.dumps(bound[0]),
         "the bound client's read is audited with its destination", bound[:1])
    grow = [e for e in evs if e.get("path") == "smtp-auth/grow" and e.get("key") == "key"]
    T.eq(len(grow), 2, "a response finished in the pool has one audit event per field (no repeat of the inline hit)")
    log = agent.log() if agent else ""
    print("---- agent log (tail) ----")
    print("\n".join(log.splitlines()[-12:]))
    for name, text in (("agent log", log), ("audit trail", trail)):
        T.ok(not any(s in text for s in SECRETS), "no password or client token in the " + name)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
