"""Shared set-up for the `vks serve` tests (tests/integration/92-serve-browser.py, 93-serve-api.py).

    sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
    from vaultdev import VaultDev, Checks
    from servetest import Serve, USERS

    with VaultDev() as vd:
        sv = Serve(vd)                 # policies, userpass users, config, vks-serve started
        s = sv.login("olive")          # -> Session (cookie, csrf) over real HTTPS
        st, hdrs, body = s.call("GET", "/api/v1/credentials")
        sv.stop()

vks-serve gets vault-dev's own certificate (SAN IP:127.0.0.1, DNS:localhost; CA vd.cacert), the
shipped role policies (policy-examples/*.hcl) and one userpass user per role (USERS). The passwords
and keys here are listed in tests/test-secrets.d/serve.txt.
"""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT, BUILD) if not os.path.isabs(BUILD) else BUILD
EX = os.path.join(ROOT, "policy-examples")
ENC_KEY = "c2VydmUtdGVzdC1lbmMta2V5LVRFU1QtMDEyMzQ1Njc="    # 32 bytes, base64
AUDIT_KEY = "c2VydmUtdGVzdC1hdWRpdC1rZXktVEVTVC0wMTIzNDU="  # 32 bytes, base64
# user -> (password, policies)
USERS = {
    "olive": ("olive-pass-TEST-7c1d2e", ["cred-operator"]),
    "sam": ("sam-pass-TEST-3f9a0b4d", ["cred-support"]),
    "audrey": ("audrey-pass-TEST-8e2b5c", ["auditor"]),
    "gina": ("gina-pass-TEST-4d6f1a0e", ["cred-tenant-globex"]),
    "alex": ("alex-pass-TEST-9b3c7d2f", ["cred-tenant-acme"]),
    "boss": ("boss-pass-TEST-1a5e8f3c", ["cred-operator", "cred-support"]),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Session:
    def __init__(self, sv, cookie=None, csrf=None, operator=None):
        self.sv, self.cookie, self.csrf, self.operator = sv, cookie, csrf, operator

    def call(self, method, path, body=None, csrf=True, headers=None, raw=None, ctype="application/json"):
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = "vks_session=" + self.cookie
        if csrf and self.csrf and "X-CSRF-Token" not in h:
            h["X-CSRF-Token"] = self.csrf
        return self.sv.request(method, path, body=body, headers=h, raw=raw, ctype=ctype)


class Serve:
    def __init__(self, vd, extra_conf="", start=True, setup=True, users=None, port=None, env=None):
        self.vd = vd
        self.dir = vd.workdir
        self.port = port or free_port()
        self.users = users or USERS
        self.extra_env = env or {}
        self.url = "https://127.0.0.1:%d" % self.port
        self.audit_file = os.path.join(self.dir, "audit.log")
        self.outputs = []
        if setup:   # a second server on the same vault-dev skips this
            for f in sorted(os.listdir(EX)):
                if f.endswith(".hcl"):
                    vd.policy(f[:-4], open(os.path.join(EX, f)).read())
            st, _ = vd.call("POST", "/v1/sys/auth/userpass", {"type": "userpass"})
            assert st == 204, st
            for u, (pw, pol) in self.users.items():
                st, _ = vd.call("POST", "/v1/auth/userpass/users/" + u, {"password": pw, "token_policies": pol})
                assert st == 204, st
        tls = os.path.join(self.dir, "tls")
        self.conf = os.path.join(self.dir, "serve-%d.toml" % self.port)
        with open(self.conf, "w") as f:
            f.write('listen = "127.0.0.1:%d"\ntls_cert = "%s/server.pem"\ntls_key = "%s/server-key.pem"\n'
                    'static_dir = "%s/web/static"\nopenapi = "%s/docs/openapi.json"\n%s\n'
                    '[vault]\naddress = "%s"\nca_cert = "%s"\n[audit]\nfile = "%s"\n'
                    % (self.port, tls, tls, ROOT, ROOT, extra_conf, vd.addr, vd.cacert, self.audit_file))
        self.proc = None
        if start:
            self.start()

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
        e.update(HOME=self.dir, VKS_ENCRYPTION_KEY=ENC_KEY, VKS_AUDIT_KEY=AUDIT_KEY)
        e.update(self.extra_env)
        return e

    def start(self, timeout=20):
        self.err = os.path.join(self.dir, "serve-%d.err" % self.port)
        self._errf = open(self.err, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "vks"), "serve", "--config", self.conf], env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self._errf, stderr=self._errf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("vks serve exited: " + self.stderr_text())
            try:
                st, _, _ = self.request("GET", "/api/v1/health")
                if st == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("vks serve did not start: " + self.stderr_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.rc = self.proc.wait()
        if self.proc:
            self._errf.close()
        self.proc = None

    def stderr_text(self):
        try:
            return open(self.err, errors="replace").read()
        except FileNotFoundError:
            return ""

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.vd.cacert)

    def request(self, method, path, body=None, headers=None, raw=None, ctype="application/json", timeout=30):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context())
        h = dict(headers or {})
        data = raw
        if body is not None and raw is None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", ctype)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        hdrs["set-cookie-all"] = r.headers.get_all("Set-Cookie") or []
        c.close()
        text = payload.decode(errors="replace")
        self.outputs.append(text)
        try:
            j = json.loads(text) if text else None
        except ValueError:
            j = None
        return r.status, hdrs, j

    def login(self, user, password=None, method="userpass"):
        body = {"method": "userpass", "username": user, "password": password or self.users[user][0]} \
            if method == "userpass" else {"method": "token", "token": user}
        st, h, j = self.request("POST", "/api/v1/login", body)
        if st != 200:
            return None
        cookie = None
        for sc in h["set-cookie-all"]:
            if sc.startswith("vks_session="):
                cookie = sc.split(";", 1)[0].split("=", 1)[1]
        return Session(self, cookie, j["csrf_token"], j["operator"])

    def audit_lines(self):
        try:
            return [json.loads(line) for line in open(self.audit_file)]
        except FileNotFoundError:
            return []
