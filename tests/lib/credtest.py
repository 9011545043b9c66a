"""Shared set-up for the `vks cred` tests (tests/integration/8x-cred-*.py; run with /usr/bin/python3).

    sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
    from vaultdev import VaultDev, Checks
    from credtest import Cred

    with VaultDev() as vd:
        c = Cred(vd, enc_key=..., audit_key=...)      # keys: listed test secrets of the caller
        rc, out, err = c.vks("cred", "list", "--json")          # build/vks, outputs recorded
        rc, out, err = c.vks("cred", "create", ..., keep_stdout=True)   # stdout holds a password
        c.secret(pw)                                            # a value that must not leak
        kind, value = c.resolve("smtp-auth/x", domain="x.org")  # the Lua resolver, fresh process
        c.audit_lines(); c.audit_verify()                       # the trail of every vks run
        c.leaks(extra_texts)                                    # -> secrets found in any output
        c.env(token=..., **extra)                               # the environment vks runs with

Every stdout/stderr of vks (unless keep_stdout) and of the resolver goes to c.outputs, which the
test scans for the secrets it registered (c.leaks()). The resolver prints its value only to this
process (never to the test output).
"""
import json
import os
import subprocess

ROOT = os.environ.get("ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")

RESOLVE_LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local ctx = { domain = arg[2] ~= '' and arg[2] or nil, destination = arg[3] ~= '' and arg[3] or nil }
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = arg[1] }, ctx)
if v then io.write('OK ', v) else io.write('ERR ', tostring(code), ' ', tostring(msg)) end
"""


class Cred:
    def __init__(self, vd, enc_key, audit_key, audit_file=None):
        self.vd = vd
        self.enc_key, self.audit_key = enc_key, audit_key
        self.audit_file = audit_file or os.path.join(vd.workdir, "audit.log")
        self.outputs, self.secrets = [], []
        self.script = os.path.join(vd.workdir, "resolve.lua")
        with open(self.script, "w") as f:
            f.write(RESOLVE_LUA)

    def env(self, token=None, **extra):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
        e.update(VAULT_ADDR=self.vd.addr, VAULT_CACERT=self.vd.cacert, VAULT_TOKEN=token or self.vd.root_token,
                 HOME=self.vd.workdir, VKS_ENCRYPTION_KEY=self.enc_key, VKS_AUDIT_KEY=self.audit_key,
                 VAULT_MAX_RETRIES="0", VKS_AUDIT_FILE=self.audit_file)
        e.update(extra)
        return e

    def vks(self, *args, stdin=None, keep_stdout=False, token=None, env=None, timeout=120, **extra):
        kw = dict(capture_output=True, timeout=timeout, env=env or self.env(token, **extra))
        if stdin is None:
            kw["stdin"] = subprocess.DEVNULL
        else:
            kw["input"] = stdin
        p = subprocess.run([VKS, *args], **kw)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.outputs.append(err)
        if not keep_stdout:
            self.outputs.append(out)
        return p.returncode, out, err

    def secret(self, value):
        if value:
            self.secrets.append(value)
        return value

    def resolve(self, path, domain="", dest="", token=None):
        """('OK', value) or ('ERR', 'code message') from the Lua resolver in a fresh process."""
        e = self.env(token)
        del e["VKS_AUDIT_FILE"]
        p = subprocess.run(["lua5.4", self.script, path, domain, dest], capture_output=True, timeout=60, env=e)
        self.outputs.append(p.stderr.decode(errors="replace"))
        kind, _, rest = p.stdout.decode(errors="replace").partition(" ")
        return kind, rest

    def audit_lines(self):
        try:
            with open(self.audit_file) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def audit_verify(self):
        rc, out, err = self.vks("audit", "verify", self.audit_file)
        return rc == 0 and out.rstrip().splitlines()[-1].startswith("OK:"), out[-300:] + err[-300:]

    def leaks(self, extra_texts=()):
        texts = self.outputs + list(extra_texts)
        try:
            texts.append(open(self.audit_file).read())
        except FileNotFoundError:
            pass
        texts.append(self.vd.stderr_text())
        return [i for i, s in enumerate(self.secrets) for t in texts if s and s in t]


def set_meta(vd, name, prefix="smtp-auth/", **changes):
    """Rewrites custom_metadata keys of a credential by hand, as an operator (or time) would; a
    value None removes the key. Keeps vks cred's own metadata settings (max_versions 20, cas)."""
    st, j = vd.call("GET", "/v1/secret/metadata/" + prefix + name)
    assert st == 200, st
    cm = j["data"]["custom_metadata"]
    for k, v in changes.items():
        if v is None:
            cm.pop(k, None)
        else:
            cm[k] = v
    st, _ = vd.call("POST", "/v1/secret/metadata/" + prefix + name,
                    {"custom_metadata": cm, "max_versions": 20, "cas_required": True})
    assert st == 204, st
