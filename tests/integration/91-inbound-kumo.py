"""The KumoMTA example for inbound credentials (policy-examples/kumomta-inbound-auth.lua), pure
Lua, run unchanged under lua5.4 with a stand-in for the KumoMTA API it uses (tests/lib/kumo_stub.lua:
kumo.on, kumo.reject, kumo.serde, and kumo.http doing real HTTP with curl) against a real
vks-agent ([vault_api] plain HTTP on loopback, inbound.http_verify) and vault-dev:

  - smtp_server_auth_plain: right password true, wrong false, from an address outside the
    credential's list false, authz differing from authc false;
  - smtp_server_mail_from after a login: a listed domain passes, another is rejected 550 5.7.1;
    without a vks login nothing is checked;
  - the agent unreachable: the login fails and the sender check answers 451 (fail closed);
  - no password in the outputs, the agent log or the audit trail."""
import hashlib
import os
import subprocess
import sys

ROOT = os.environ["ROOT"]
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from vaultdev import VaultDev  # noqa: E402
from credtest import Cred  # noqa: E402
from agent import Agent, RedactingChecks, agent_config, audit_key_file, free_port, token_file  # noqa: E402

ENC_KEY = "aW5ib3VuZDkxLWVuYy1rZXktVEVTVC0wMTIzNDU2Nzg="    # tests/test-secrets.d/inbound.txt
AUDIT_KEY = "aW5ib3VuZDkxLWF1ZGl0LWtleS1URVNULTAxMjM0NTY="
TOKEN = "inbound-http-client-token-5e0b"
WRONG = "inbound-Wrong-Password-19ad"
T = RedactingChecks([TOKEN, WRONG])

DRIVER = r"""
package.path = arg[1] .. '/tests/lib/?.lua;' .. package.path
local kumo = require 'kumo_stub'
dofile(arg[1] .. '/policy-examples/kumomta-inbound-auth.lua')
local function meta(from)
  local m = { v = { received_from = from } }
  function m:get_meta(k) return self.v[k] end
  function m:set_meta(k, v) self.v[k] = v end
  return m
end
local pw = io.read 'l'
local function auth(authz, authc, p, from)
  local m = meta(from)
  local ok, r = pcall(kumo.handlers.smtp_server_auth_plain, authz, authc, p, m)
  return ok and r, m
end
local function mail(m, sender)
  local ok, e = pcall(kumo.handlers.smtp_server_mail_from, sender, m)
  if ok then return 'pass' end
  if type(e) == 'table' and e.rejected then return e.code .. ' ' .. e.text end
  return 'error ' .. tostring(e)
end
local ok, m = auth('app1', 'app1', pw, '127.0.0.1:40001')
print('auth_right', ok, m.v.vks_login)
print('mail_listed', mail(m, 'news@app.example'))
print('mail_other', mail(m, 'news@other.example'))
print('auth_wrong', (auth('app1', 'app1', arg[2], '127.0.0.1:40002')))
print('auth_source', (auth('app1', 'app1', pw, '127.0.0.2:40003')))
print('auth_v6_source', (auth('app1', 'app1', pw, '[2001:db8::9]:40004')))
print('auth_authz', (auth('other', 'app1', pw, '127.0.0.1:40005')))
print('mail_no_login', mail(meta('127.0.0.1:40006'), 'x@other.example'))
local m2 = meta('127.0.0.1:40007')
m2.v.vks_login = 'app1'
print('mail_logged_in', mail(m2, 'a@app.example'))
"""


def run_driver(d, env_extra, pw):
    path = os.path.join(d, "driver.lua")
    with open(path, "w") as f:
        f.write(DRIVER)
    env = dict(os.environ, **env_extra)
    p = subprocess.run(["lua5.4", path, ROOT, WRONG], input=(pw + "\n").encode(), capture_output=True,
                       timeout=120, env=env)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    res = {}
    for line in p.stdout.decode(errors="replace").splitlines():
        k, _, v = line.partition("\t")
        res[k] = v
    return res, out


def main():
    d = os.path.join(WORK, "kumo")
    os.makedirs(d, exist_ok=True)
    agent = None
    with VaultDev() as vd:
        c = Cred(vd, ENC_KEY, AUDIT_KEY)
        try:
            rc, out, err = c.vks("cred", "create", "app1", "--username", "app1", "--inbound", "--domain",
                                 "app.example", "--ip", "127.0.0.1", "--ip", "2001:db8::/32", keep_stdout=True)
            T.eq(rc, 0, "vks cred create --inbound app1")
            pw = c.secret(out.strip())
            T.secrets.append(pw)
            port = free_port()
            audit = os.path.join(d, "audit.jsonl")
            text = agent_config(vd, token_file(d, vd.root_token), audit=audit, key_file=audit_key_file(d)) + f'''
[vault_api]
listen = "127.0.0.1:{port}"
tls = false

[[vault_api.client]]
name = "kumod"
token_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
mounts = ["secret"]
path_prefixes = ["none/"]

[inbound]
http_verify = true
'''
            agent = Agent(d, text)
            env = {"VKS_AGENT_URL": "http://127.0.0.1:%d" % port, "VKS_AGENT_TOKEN": TOKEN}
            res, out = run_driver(d, env, pw)
            T.eq(res.get("auth_right"), "true\tapp1", "auth_plain, right password: true, the login kept in conn_meta")
            T.eq(res.get("mail_listed"), "pass", "mail_from a listed domain passes")
            T.ok(res.get("mail_other", "").startswith("550 5.7.1"), "mail_from another domain: 550 5.7.1", res)
            T.eq(res.get("auth_wrong"), "false", "auth_plain, wrong password: false")
            T.eq(res.get("auth_source"), "false", "auth_plain from 127.0.0.2 (outside the list): false")
            T.eq(res.get("auth_v6_source"), "true", "auth_plain from [2001:db8::9]:port (inside the /32): true")
            T.eq(res.get("auth_authz"), "false", "auth_plain with another authz: false")
            T.eq(res.get("mail_no_login"), "pass", "mail_from without a vks login: not checked here")
            outputs = [out]
            res, out = run_driver(d, dict(env, VKS_AGENT_URL="http://127.0.0.1:%d" % free_port()), pw)
            T.eq(res.get("auth_right"), "false\tnil", "agent unreachable: the login fails")
            T.ok(res.get("mail_logged_in", "").startswith("451 4.7.1"), "agent unreachable: the sender check is 451", res)
            outputs.append(out)
            res, out = run_driver(d, dict(env, VKS_AGENT_TOKEN="not-the-token"), pw)
            T.eq(res.get("auth_right"), "false\tnil", "a wrong client token: the login fails (403)")
            outputs.append(out)
        finally:
            if agent is not None:
                T.eq(agent.stop(), 0, "the agent exits 0 on SIGTERM")
        texts = outputs + [agent.log() if agent else "", open(audit).read() if os.path.exists(audit) else ""]
        T.ok(not any(s in t for s in [pw, WRONG] for t in texts), "no password in the outputs, agent log or trail")
        T.eq(c.leaks(texts), [], "no password in any vks output")
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
