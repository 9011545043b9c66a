"""End to end: every policy example under policy-examples/ runs in build/vks-policy against
build/vault-dev (HTTPS) and a real SMTP relay (aiosmtpd, STARTTLS + AUTH PLAIN). The relay's log
shows which credential line authenticated, so a test can tell the right secret was used."""
import base64
import os
import subprocess
import sys

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from smtprelay import Relay  # noqa: E402
from vaultdev import VaultDev  # noqa: E402

POLICY_BIN = os.path.join(ROOT, BUILD, "vks-policy")
ENVELOPE_TOOL = os.path.join(ROOT, BUILD, "tests", "helpers", "envelope_tool")
EX = os.path.join(ROOT, "policy-examples")

# every one of these is listed in tests/test-secrets.d/host.txt
PW_COM = "e2e-pass-COM-31d7a9f2"
PW_NET = "e2e-pass-NET-84c2e6b0"
PW_LOCAL = "e2e-pass-LOCAL-5e0b7d13"
PW_ENC = "e2e-pass-ENC-a6f3c19e"
PW_NS = "e2e-pass-NS-2b9d04c7"
PW_SHARED = "e2e-pass-SHARED-70e1f5a8"
PW_EVENT = "e2e-pass-EVENT-c4a8e2d6"
ENC_KEY_RAW = b"e2e-envelope-key-0123456789abcde"   # 32 bytes
ENC_KEY = base64.b64encode(ENC_KEY_RAW).decode()
AUDIT_KEY_RAW = b"e2e-audit-chain-key-0123456789ab"  # 32 bytes
AUDIT_KEY = base64.b64encode(AUDIT_KEY_RAW).decode()
VKS_CLI = os.path.join(ROOT, BUILD, "vks")
SECRETS = [s.encode() for s in (PW_COM, PW_NET, PW_LOCAL, PW_ENC, PW_NS, PW_SHARED, PW_EVENT)]
SECRETS += [ENC_KEY.encode(), ENC_KEY_RAW, AUDIT_KEY.encode(), AUDIT_KEY_RAW]

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def base_env(vd):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VAULT_", "VKS_", "MAIL_PROXY_"))}
    env.update(VAULT_ADDR=vd.addr, VAULT_TOKEN=vd.root_token, VAULT_CACERT=vd.cacert)
    return env


def run(example, domain, relay, env, *extra):
    pol = example if os.path.isabs(example) else os.path.join(EX, example)
    args = [POLICY_BIN, pol, "--domain", domain, "--relay", f"127.0.0.1:{relay.port}",
            "--check-auth", "--cafile", relay.cafile, "--timeout-ms", "20000"] + list(extra)
    p = subprocess.run(args, capture_output=True, env=env, timeout=120)
    out = p.stdout + p.stderr
    sys.stdout.write(out.decode("utf-8", "replace"))
    for s in SECRETS:
        if s in out:
            check("no secret in vks-policy output (%s)" % example, False, "a test secret was printed")
    return p.returncode, out.decode("utf-8", "replace")


def last_auth(relay, n_before):
    ev = relay.auth_events()[n_before:]
    return ev


def main():
    creds = [("daniel", PW_COM), ("daniel", PW_NET), ("daniel", PW_LOCAL), ("daniel", PW_ENC),
             ("daniel", PW_NS), ("daniel", PW_SHARED), ("daniel", PW_EVENT)]
    line_of = {pw: i + 1 for i, (_, pw) in enumerate(creds)}
    with VaultDev() as vd, Relay(WORK, creds=creds) as relay:
        env = base_env(vd)

        # --- the seed policies, unchanged ------------------------------------------------------
        vd.kv2_put("smtp-auth/example.com", {"key": PW_COM})
        vd.kv2_put("smtp-auth/example.net", {"key": PW_NET})
        for domain, pw in (("example.com", PW_COM), ("example.net", PW_NET)):
            n = len(relay.auth_events())
            rc, out = run("auth-vault-per-domain.lua", domain, relay, env)
            ev = last_auth(relay, n)
            check("seed vault per domain (%s): 235 with that domain's credential" % domain,
                  rc == 0 and "auth: OK 235" in out and len(ev) == 1 and ev[0]["ok"]
                  and ev[0]["line"] == line_of[pw], str(ev))
        check("egress path shows the vault keysource, not the secret",
              'vault_path = "smtp-auth/example.net"' in out)

        vd.kv2_put("smtp-auth/local", {"password": PW_LOCAL})
        for pol in ("shaping-toml.lua", "shaping-json.lua"):
            n = len(relay.auth_events())
            rc, out = run(pol, "192.168.1.10", relay, env)
            ev = last_auth(relay, n)
            check("seed shaping %s for 192.168.1.10 (mx_rollup = false): 235" % pol,
                  rc == 0 and "auth: OK 235" in out and len(ev) == 1
                  and ev[0]["line"] == line_of[PW_LOCAL], out[-400:])
        rc, out = run("shaping-toml.lua", "192.168.1.11", relay, env)
        check("shaping entry for one IP does not apply to another (no AUTH configured)",
              "no smtp_auth_plain_username" in out, out[-300:])

        missing_env = dict(env)
        missing_env.pop("VAULT_TOKEN")
        missing_env["HOME"] = WORK  # no ~/.vault-token either
        n = len(relay.auth_events())
        rc, out = run("auth-vault-per-domain.lua", "example.com", relay, missing_env)
        check("without a token: lookup fails clearly, nothing is sent to the relay",
              rc == 1 and "password: FAILED" in out and len(relay.auth_events()) == n, out[-300:])
        rc, out = run("auth-vault-per-domain.lua", "nosuch.example", relay, env)
        check("no secret for the domain: not_found, exit 1",
              rc == 1 and "FAILED not_found" in out, out[-300:])

        # --- vault_key -------------------------------------------------------------------------
        vd.kv2_put("smtp-auth/example.org", {"username": "daniel", "password": PW_COM})
        rc, out = run("vault-key.lua", "example.org", relay, env)
        check("vault_key = 'password': 235", rc == 0 and "auth: OK 235" in out, out[-300:])
        rc, out = run("auth-vault-per-domain.lua", "example.org", relay, env)
        check("default vault_key 'key' missing in that secret: missing_key",
              rc == 1 and "FAILED missing_key" in out, out[-300:])

        # --- ENC: values -----------------------------------------------------------------------
        if os.path.exists(ENVELOPE_TOOL):
            kenv = dict(env, VKS_ENCRYPTION_KEYS="k1:" + ENC_KEY)
            enc = subprocess.run([ENVELOPE_TOOL, "encrypt", "--mount", "secret", "--path",
                                  "smtp-auth/enc.example", "--key", "password"],
                                 input=PW_ENC.encode(), capture_output=True, env=kenv, timeout=60)
            envelope = enc.stdout.decode().strip()
            check("envelope made", enc.returncode == 0 and envelope.startswith("ENC:"))
            vd.kv2_put("smtp-auth/enc.example", {"password": envelope})
            n = len(relay.auth_events())
            rc, out = run("enc-values.lua", "enc.example", relay, kenv)
            ev = last_auth(relay, n)
            check("ENC: value decrypted with the environment's key: 235",
                  rc == 0 and "auth: OK 235" in out and ev and ev[0]["line"] == line_of[PW_ENC],
                  out[-400:])
            rc, out = run("enc-values.lua", "enc.example", relay, env)
            check("without the key: decrypt_failed, credential not sent",
                  rc == 1 and "FAILED decrypt_failed" in out, out[-300:])
            vd.kv2_put("smtp-auth/copied.example", {"password": envelope})
            rc, out = run("enc-values.lua", "copied.example", relay, kenv)
            check("an envelope copied to another path does not decrypt (AAD)",
                  rc == 1 and "FAILED decrypt_failed" in out, out[-300:])
            # the production-style example: init configures setup{require_encrypted, audit = file}
            audit = os.path.join(WORK, "audit.jsonl")
            aenv = dict(kenv, VKS_AUDIT_FILE=audit, VKS_AUDIT_KEY=AUDIT_KEY)
            n = len(relay.auth_events())
            rc, out = run("init-audit.lua", "enc.example", relay, aenv)
            ev = last_auth(relay, n)
            check("init-audit.lua (setup with an audit file in init): 235",
                  rc == 0 and "auth: OK 235" in out and ev and ev[0]["line"] == line_of[PW_ENC],
                  out[-400:])
            import json
            events = []
            if os.path.exists(audit):
                events = [json.loads(l) for l in open(audit) if l.strip()]
            look = [e for e in events if e.get("type") == "secret.lookup"]
            ctx = look[0].get("ctx", {}) if look else {}
            check("the audit file has the lookup with who and for what",
                  len(look) == 1 and look[0].get("code") == "ok" and look[0].get("path") == "smtp-auth/enc.example"
                  and ctx.get("domain") == "enc.example" and ctx.get("username") == "daniel"
                  and ctx.get("destination") == "127.0.0.1" and ctx.get("tag") == "smtp_auth_plain_password",
                  str(look)[:400])
            v = subprocess.run([VKS_CLI, "audit", "verify", audit], capture_output=True,
                               env=dict(env, VKS_AUDIT_KEY=AUDIT_KEY), timeout=60)
            check("vks audit verify accepts the trail", v.returncode == 0,
                  (v.stdout + v.stderr).decode()[-300:])
            vd.kv2_put("smtp-auth/plain.example", {"password": PW_ENC})
            rc, out = run("enc-values.lua", "plain.example", relay, kenv)
            check("require_encrypted refuses a plaintext value: not_encrypted",
                  rc == 1 and "FAILED not_encrypted" in out, out[-300:])
        else:
            check("envelope_tool helper is built", False, ENVELOPE_TOOL)

        # --- namespace -------------------------------------------------------------------------
        st, _ = vd.call("POST", "/v1/sys/namespaces/mail", {})
        ns = {"X-Vault-Namespace": "mail"}
        st2, _ = vd.call("POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}},
                         headers=ns)
        st3, _ = vd.call("POST", "/v1/secret/data/smtp-auth/example.com",
                         {"data": {"password": PW_NS}}, headers=ns)
        check("namespace set up in vault-dev", st in (200, 204) and st2 in (200, 204) and st3 == 200,
              "%s %s %s" % (st, st2, st3))
        n = len(relay.auth_events())
        rc, out = run("vault-namespace.lua", "example.com", relay, env)
        ev = last_auth(relay, n)
        check("vault_namespace = 'mail': the namespace's credential authenticates",
              rc == 0 and ev and ev[0]["line"] == line_of[PW_NS], out[-300:])

        # --- AppRole ---------------------------------------------------------------------------
        vd.call("POST", "/v1/sys/auth/approle", {"type": "approle"})
        vd.policy("relay-read", 'path "secret/data/smtp-auth/*" { capabilities = ["read"] }')
        vd.call("POST", "/v1/auth/approle/role/relay", {"token_policies": ["relay-read"], "token_ttl": "1h"})
        _, rid = vd.call("GET", "/v1/auth/approle/role/relay/role-id")
        _, sid = vd.call("POST", "/v1/auth/approle/role/relay/secret-id", {})
        sid_file = os.path.join(WORK, "secret-id")
        fd = os.open(sid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, sid["data"]["secret_id"].encode())
        os.close(fd)
        aenv = dict(env, VKS_APPROLE_ROLE_ID=rid["data"]["role_id"], VKS_APPROLE_SECRET_ID_FILE=sid_file)
        aenv.pop("VAULT_TOKEN")
        aenv["HOME"] = WORK
        rc, out = run("vault-approle.lua", "example.org", relay, aenv)
        check("AppRole login (role id + secret id file from the environment): 235",
              rc == 0 and "auth: OK 235" in out, out[-400:])
        if sid["data"]["secret_id"].encode() in out.encode():
            check("AppRole secret id never printed", False)

        # --- restrictions ----------------------------------------------------------------------
        vd.kv2_put("smtp-auth/shared-relay", {"password": PW_SHARED})
        vd.call("POST", "/v1/secret/metadata/smtp-auth/shared-relay", {"custom_metadata": {
            "allowed_domains": "example.com, *.example.com", "allowed_hosts": "127.0.0.1"}})
        n = len(relay.auth_events())
        rc, out = run("restricted.lua", "mx.example.com", relay, env)
        ev = last_auth(relay, n)
        check("restricted credential inside its lists: 235",
              rc == 0 and ev and ev[0]["line"] == line_of[PW_SHARED], out[-300:])
        n = len(relay.auth_events())
        rc, out = run("restricted.lua", "example.org", relay, env)
        check("domain outside allowed_domains: restricted, nothing sent to the relay",
              rc == 1 and "FAILED restricted" in out and "allowed_domains" in out
              and len(relay.auth_events()) == n, out[-300:])
        rc, out = run("restricted.lua", "example.com", relay, env, "--relay", "localhost:%d" % relay.port)
        check("relay host outside allowed_hosts: restricted",
              rc == 1 and "FAILED restricted" in out and "allowed_hosts" in out, out[-300:])
        vd.call("POST", "/v1/secret/metadata/smtp-auth/shared-relay", {"custom_metadata": {
            "allowed_domains": "example.com,,example.net", "allowed_hosts": "127.0.0.1"}})
        rc, out = run("restricted.lua", "example.com", relay, env)
        check("malformed allowed_domains: refused with an error naming the field",
              rc == 1 and "FAILED restricted" in out and "allowed_domains is malformed" in out,
              out[-300:])

        # --- event keysource -------------------------------------------------------------------
        vd.kv2_put("smtp-auth/acme/example.com", {"password": PW_EVENT})
        n = len(relay.auth_events())
        rc, out = run("event-keysource.lua", "example.com", relay, env)
        ev = last_auth(relay, n)
        check("event keysource through kumo.on + kumo.secrets.load: 235",
              rc == 0 and ev and ev[0]["line"] == line_of[PW_EVENT], out[-400:])

        # --- the inline seed needs no Vault at all ---------------------------------------------
        # (covered with the relay in 60-host-smtp-auth.py)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
