"""Inbound credentials through the module in vks-policy (issue 15): the host runs
policy-examples/inbound-module.lua (vks.inbound_verify / vks.inbound_sender in the
smtp_server_auth_plain and smtp_server_mail_from events) with the host's own kumo API
(kumo.on, kumo.reject), driven by `vks-policy --script`, against vault-dev with a token holding
only policy-examples/mta-inbound.hcl:
  right password true; wrong false; from an address outside the list false; a listed sender passes;
  another is 550 5.7.1; Vault unreachable: the sender check is 451 (fail closed); no password in
  any output."""
import os
import subprocess
import sys

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from credtest import Cred  # noqa: E402

ENC_KEY = "aW5ib3VuZDkxLWVuYy1rZXktVEVTVC0wMTIzNDU2Nzg="    # tests/test-secrets.d/inbound.txt
AUDIT_KEY = "aW5ib3VuZDkxLWF1ZGl0LWtleS1URVNULTAxMjM0NTY="
WRONG = "inbound-Wrong-Password-19ad"
T = Checks()

DRIVE = r"""
local policy, wrong = ...
local kumo = require 'kumo'
dofile(policy)
local pw = io.read 'l'
local function meta(from)
  local m = { v = { received_from = from } }
  function m:get_meta(k) return self.v[k] end
  function m:set_meta(k, v) self.v[k] = v end
  return m
end
local function mail(m, s)
  local ok, e = pcall(kumo._fire, 'smtp_server_mail_from', s, m)
  if ok then return 'pass' end
  if type(e) == 'table' and e.rejected then return e.code .. ' ' .. e.text end
  return 'error ' .. tostring(e)
end
local m = meta('127.0.0.1:40001')
print('auth_right', tostring(kumo._fire('smtp_server_auth_plain', 'app9', 'app9', pw, m)), m.v.vks_login)
print('mail_listed', mail(m, 'a@app.example'))
print('mail_other', mail(m, 'a@other.example'))
print('auth_wrong', tostring(kumo._fire('smtp_server_auth_plain', 'app9', 'app9', wrong, meta('127.0.0.1:1'))))
print('auth_source', tostring(kumo._fire('smtp_server_auth_plain', 'app9', 'app9', pw, meta('127.0.0.9:1'))))
local m2 = meta('127.0.0.1:40002')
m2.v.vks_login = 'app9'
print('mail_logged_in', mail(m2, 'b@app.example'))
return 0
"""


def drive(d, c, pw, token, addr=None):
    path = os.path.join(d, "drive.lua")
    with open(path, "w") as f:
        f.write(DRIVE)
    env = c.env(token=token)
    if addr:
        env["VAULT_ADDR"] = addr
    p = subprocess.run([os.path.join(ROOT, BUILD, "vks-policy"), "--script", path,
                        os.path.join(ROOT, "policy-examples", "inbound-module.lua"), WRONG],
                       input=(pw + "\n").encode(), capture_output=True, timeout=120, env=env)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    res = {}
    for line in p.stdout.decode(errors="replace").splitlines():
        k, _, v = line.partition("\t")
        res[k] = v
    return p.returncode, res, out


def main():
    d = os.path.join(WORK, "host")
    os.makedirs(d, exist_ok=True)
    with VaultDev() as vd:
        c = Cred(vd, ENC_KEY, AUDIT_KEY)
        rc, out, err = c.vks("cred", "create", "app9", "--username", "app9", "--inbound", "--domain", "app.example",
                             "--ip", "127.0.0.1", "--verifier", "scrypt:ln=12,r=8,p=1", keep_stdout=True)
        T.eq(rc, 0, "vks cred create --inbound app9")
        pw = c.secret(out.strip())
        with open(os.path.join(ROOT, "policy-examples", "mta-inbound.hcl")) as f:
            vd.policy("mta-inbound", f.read())
        tok = c.secret(vd.create_token(policies=["mta-inbound"], display_name="host-inbound"))
        rc, res, out1 = drive(d, c, pw, tok)
        T.eq(rc, 0, "vks-policy --script runs the policy")
        T.eq(res.get("auth_right"), "true\tapp9", "smtp_server_auth_plain: right password, login kept")
        T.eq(res.get("mail_listed"), "pass", "smtp_server_mail_from: a listed domain passes")
        T.ok(res.get("mail_other", "").startswith("550 5.7.1"), "another domain: 550 5.7.1", res)
        T.eq(res.get("auth_wrong"), "false", "wrong password: false")
        T.eq(res.get("auth_source"), "false", "from an address outside the list: false")
        T.eq(res.get("mail_logged_in"), "pass", "a session logged in earlier: its sender checked from Vault")
        vd.stop()
        rc, res, out2 = drive(d, c, pw, tok)
        T.eq(res.get("auth_right"), "false\tnil", "Vault unreachable: the login fails (fail closed)")
        T.ok(res.get("mail_logged_in", "").startswith("451 4.7.1"), "Vault unreachable: the sender check is 451", res)
        T.eq(c.leaks([out1, out2]), [], "no password or token in any output")
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
