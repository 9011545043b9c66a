"""Start, drive and stop build/vault-dev from Python tests (run with Debian's /usr/bin/python3).

    import os, sys
    sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
    from vaultdev import VaultDev, ROOT_TOKEN

    with VaultDev() as vd:                   # HTTPS with a fresh CA in a temp dir
        vd.addr, vd.cacert, vd.root_token, vd.pid, vd.workdir
        vd.kv2_put("smtp-auth/example.com", {"key": "pw"})        # -> response dict
        vd.kv2_get("smtp-auth/example.com")                       # -> (status, body dict or None)
        vd.kv1_put("app/x", {"key": "v"}, mount="kv")             # mount needs --kv1 kv
        vd.request("GET", "/v1/secret/data/x", token=..., body=..., headers=...)
                                     # -> (status, headers dict (lower-case names), raw bytes)
        vd.call("GET", path, ...)    # -> (status, parsed JSON or None)
        vd.fault(action="status", status=503, path_prefix="/v1/secret/", count=2)  # -> rule id
        vd.clear_faults(); vd.counters(prefix="/v1/secret/"); vd.reset_counters()
        vd.seal(); vd.unseal(); vd.clock(offset_seconds=3600); vd.advance(60)
    # leaving the block (or vd.stop()) sends SIGTERM and waits; then vd.exit_status,
    # vd.stderr_text(), vd.sanitizer_report() (True if ASan/UBSan complained)

VaultDev(tls=True, args=[...], root_token=ROOT_TOKEN, workdir=None): extra args go to the server
(e.g. ["--kv1", "kv", "--state", path]). The work dir is created under $VKS_SUITE_WORK (or a temp
dir); the server's stderr goes to <workdir>/vault-dev.err. The binary is $VAULT_DEV_BIN or
$ROOT/$BUILD/vault-dev. The root token is a listed test secret (tests/test-secrets.d/dev.txt).
"""
import http.client
import json
import os
import select
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.parse

ROOT_TOKEN = "vault-dev-root-TEST-5b8e1d09"


def _binary():
    if os.environ.get("VAULT_DEV_BIN"):
        return os.environ["VAULT_DEV_BIN"]
    root = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    build = os.environ.get("BUILD", "build")
    return os.path.join(root, build, "vault-dev") if not os.path.isabs(build) else os.path.join(build, "vault-dev")


class VaultDev:
    def __init__(self, tls=True, args=None, root_token=ROOT_TOKEN, workdir=None, start=True):
        self.tls = tls
        self.args = list(args or [])
        self.root_token = root_token
        base = os.environ.get("VKS_SUITE_WORK") or None
        self.workdir = workdir or tempfile.mkdtemp(prefix="vault-dev-", dir=base)
        self.proc = None
        self.addr = self.cacert = None
        self.pid = None
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout=20):
        cmd = [_binary(), "--addr", "127.0.0.1:0", "--root-token", self.root_token]
        if self.tls:
            cmd += ["--tls-dir", os.path.join(self.workdir, "tls")]
        cmd += self.args
        self._err = open(os.path.join(self.workdir, "vault-dev.err"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        want = {"VAULT_ADDR"} | ({"VAULT_CACERT"} if self.tls else set())
        got = {}
        deadline = time.monotonic() + timeout
        buf = b""
        while want - set(got):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("vault-dev did not start (see %s/vault-dev.err)" % self.workdir)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                k, _, v = line.decode().partition("=")
                got[k] = v
        self.addr = got["VAULT_ADDR"]
        self.cacert = got.get("VAULT_CACERT")
        u = urllib.parse.urlsplit(self.addr)
        self.host, self.port = u.hostname, u.port
        return self

    def stop(self, timeout=15):
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit status."""
        if not self.proc:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()
        self.proc = None
        self.exit_status = rc
        return rc

    def stderr_text(self):
        """The server's stderr so far (diagnostics; never secrets)."""
        with open(os.path.join(self.workdir, "vault-dev.err"), "rb") as f:
            return f.read().decode(errors="replace")

    def sanitizer_report(self):
        """True when an ASan/UBSan/LSan report is in the server's stderr (make asan)."""
        t = self.stderr_text()
        return "Sanitizer" in t or "runtime error:" in t

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ HTTP
    def ssl_context(self):
        return ssl.create_default_context(cafile=self.cacert) if self.tls else None

    def connection(self, timeout=30):
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, token="root", headers=None, timeout=30):
        """One request on a fresh connection. token="root" sends the root token, None sends none.
        body: dict/list (sent as JSON), str or bytes (sent as is)."""
        h = dict(headers or {})
        if token == "root":
            token = self.root_token
        if token is not None:
            h["X-Vault-Token"] = token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c = self.connection(timeout)
        try:
            c.request(method, path, body=body, headers=h)
            resp = c.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            c.close()

    def call(self, method, path, body=None, token="root", headers=None):
        status, _, data = self.request(method, path, body, token, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    # ------------------------------------------------------------------ KV helpers
    def kv2_put(self, path, data, mount="secret", cas=None):
        body = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        status, j = self.call("POST", "/v1/%s/data/%s" % (mount, path), body)
        if status != 200:
            raise RuntimeError("kv2_put %s: HTTP %d %s" % (path, status, j))
        return j

    def kv2_get(self, path, mount="secret", version=None):
        q = "?version=%d" % version if version else ""
        return self.call("GET", "/v1/%s/data/%s%s" % (mount, path, q))

    def kv2_delete(self, path, mount="secret"):
        return self.call("DELETE", "/v1/%s/data/%s" % (mount, path))[0]

    def kv2_destroy(self, path, versions, mount="secret"):
        return self.call("POST", "/v1/%s/destroy/%s" % (mount, path), {"versions": versions})[0]

    def kv1_put(self, path, data, mount="kv"):
        status, j = self.call("POST", "/v1/%s/%s" % (mount, path), data)
        if status != 204:
            raise RuntimeError("kv1_put %s: HTTP %d %s" % (path, status, j))

    def kv1_get(self, path, mount="kv"):
        return self.call("GET", "/v1/%s/%s" % (mount, path))

    def kv1_delete(self, path, mount="kv"):
        return self.call("DELETE", "/v1/%s/%s" % (mount, path))[0]

    def policy(self, name, text):
        status, j = self.call("PUT", "/v1/sys/policies/acl/%s" % name, {"policy": text})
        if status != 204:
            raise RuntimeError("policy %s: HTTP %d %s" % (name, status, j))

    def create_token(self, **fields):
        status, j = self.call("POST", "/v1/auth/token/create", fields)
        if status != 200:
            raise RuntimeError("token create: HTTP %d %s" % (status, j))
        return j["auth"]["client_token"]

    # ------------------------------------------------------------------ /v1/sys/dev
    def dev(self, method, sub, body=None):
        return self.call(method, "/v1/sys/dev/" + sub, body)

    def fault(self, **rule):
        """action= latency|status|close|truncate|non_json|oversized; method=, path_prefix=,
        count= (default 1), duration_ms=, latency_ms=, status=, body=, content_type=, size=."""
        status, j = self.dev("POST", "faults", rule)
        if status != 200:
            raise RuntimeError("fault: HTTP %d %s" % (status, j))
        return j["data"]["id"]

    def faults(self):
        return self.dev("GET", "faults")[1]["data"]["faults"]

    def clear_faults(self):
        return self.dev("DELETE", "faults")[0]

    def counters(self, prefix=None):
        sub = "counters" + ("?prefix=" + urllib.parse.quote(prefix, safe="/") if prefix else "")
        return self.dev("GET", sub)[1]["data"]["counters"]

    def count(self, method, path):
        return self.counters().get("%s %s" % (method, path), 0)

    def reset_counters(self):
        return self.dev("DELETE", "counters")[0]

    def seal(self):
        return self.dev("POST", "seal")[0]

    def unseal(self):
        return self.dev("POST", "unseal")[0]

    def clock(self, offset_seconds):
        return self.dev("POST", "clock", {"offset_seconds": offset_seconds})[1]["data"]

    def advance(self, seconds):
        return self.dev("POST", "clock", {"advance_seconds": seconds})[1]["data"]


class Checks:
    """Tiny test recorder: ok(cond, name); closes with 'N passed, N failed'."""

    def __init__(self):
        self.passed = self.failed = 0

    def ok(self, cond, name, detail=None):
        if cond:
            self.passed += 1
            print("ok   - %s" % name)
        else:
            self.failed += 1
            print("FAIL - %s%s" % (name, "" if detail is None else "  (%s)" % (detail,)))
        return cond

    def eq(self, got, want, name):
        return self.ok(got == want, name, "got %r, want %r" % (got, want))

    def run(self, fn, *args):
        """Runs one test function; an exception counts as a failure."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a crash of one test must not stop the others
            import traceback
            traceback.print_exc()
            self.ok(False, "%s raised %s" % (fn.__name__, type(e).__name__))

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0
