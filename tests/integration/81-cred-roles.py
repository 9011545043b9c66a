"""vks cred under the shipped Vault ACL policies (issue 12, phases 2 and 3, access control):
policy-examples/{mta-reader,cred-operator,cred-support,auditor,cred-tenant-acme,cred-tenant-globex}.hcl
are loaded unchanged into build/vault-dev; one token per role runs EVERY command (create, list, show,
reveal, restrict, delete and a resolver lookup of the password) and the outcome must be exactly the
matrix in docs/credentials.md "Access control" (phase 3: rotate, with a real relay and set hook, and
rollback): allowed acts succeed, denied ones exit 2 with a
permission message, write nothing (Vault's state compared before and after) and, for the acts that
are audited (create, reveal, restrict, delete), leave one failure event with the token's identity.
show must work without read on data (no fingerprint, and no refused data request made). Two tenant
tokens each manage their own prefix and cannot see, list or resolve the other's."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from smtprelay import Relay  # noqa: E402

T = Checks()
ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")
EX = os.path.join(ROOT, "policy-examples")
# listed in tests/test-secrets.d/cred2.txt
ENC_KEY = "Y3JlZDgxLXJvbGVzLWVuYy1rZXktVEVTVC0wMTIzNDU="   # 32 bytes, base64
AUDIT_KEY = "Y3JlZDgxLXJvbGVzLWF1ZGl0LWtleS1URVNULTAxMjM="  # 32 bytes, base64
ROLES = ["mta-reader", "cred-operator", "cred-support", "auditor"]
# rotate before restrict: restrict's --ip 192.0.2.1 would (rightly) keep the test step off 127.0.0.1
ACTS = ["create", "list", "show", "reveal", "rotate", "rollback", "restrict", "resolve", "delete"]
A, D = True, False
# the matrix of docs/credentials.md "Access control" (show: True = with fingerprint, "nofp" = without)
MATRIX = {
    "mta-reader":    dict(create=D, list=D, show=D, reveal=D, restrict=D, delete=D, resolve=A, rotate=D,
                          rollback=D),
    "cred-operator": dict(create=A, list=A, show="nofp", reveal=D, restrict=A, delete=A, resolve=D, rotate=A,
                          rollback=D),
    "cred-support":  dict(create=D, list=A, show=A, reveal=A, restrict=D, delete=D, resolve=A, rotate=D,
                          rollback=D),
    "auditor":       dict(create=D, list=A, show="nofp", reveal=D, restrict=D, delete=D, resolve=D, rotate=D,
                          rollback=D),
}
AUDITED = {"create", "reveal", "restrict", "delete", "rotate", "rollback"}
EVENT = {"rotate": "cred.rotate.claim"}   # the audit type of a refused act (default cred.<act>)
RELAY = None                              # the SMTP relay rotation tests new passwords against
HOOK = None
OUTPUTS, SECRETS = [], []


def env_for(vd, token, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEY=ENC_KEY, VKS_AUDIT_KEY=AUDIT_KEY, VAULT_MAX_RETRIES="0",
             VKS_AUDIT_FILE=os.path.join(vd.workdir, "audit.log"))
    e.update(extra)
    return e


def vks(vd, token, *args, keep_stdout=False, **extra):
    p = subprocess.run([VKS, "cred", *args], capture_output=True, timeout=60, env=env_for(vd, token, **extra),
                       stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    OUTPUTS.append(err)
    if not keep_stdout:
        OUTPUTS.append(out)
    return p.returncode, out, err


LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = arg[1] }, { domain = arg[2] })
if v then io.write('OK ', v) else io.write('ERR ', tostring(code), ' ', tostring(msg)) end
"""


def resolve(vd, token, path, domain):
    script = os.path.join(vd.workdir, "resolve.lua")
    with open(script, "w") as f:
        f.write(LUA)
    e = env_for(vd, token)
    del e["VKS_AUDIT_FILE"]
    p = subprocess.run(["lua5.4", script, path, domain], capture_output=True, timeout=60, env=e)
    OUTPUTS.append(p.stderr.decode(errors="replace"))
    kind, _, rest = p.stdout.decode(errors="replace").partition(" ")
    return kind, rest


def snapshot(vd, prefix="smtp-auth"):
    """Everything vks cred could have written: metadata (custom_metadata, versions, times) of every
    secret under the prefix, read with the root token."""
    out = {}

    def walk(p):
        st, j = vd.call("LIST", "/v1/secret/metadata/" + p)
        for k in (j or {}).get("data", {}).get("keys", []) if st == 200 else []:
            if k.endswith("/"):
                walk(p + "/" + k[:-1])
            else:
                out[p + "/" + k] = vd.call("GET", "/v1/secret/metadata/%s/%s" % (p, k))[1]["data"]
    walk(prefix)
    return out


def audit_lines(vd):
    try:
        with open(os.path.join(vd.workdir, "audit.log")) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def run_act(vd, tok, act, name, user, prefix=None):
    pre = ["--prefix", prefix] if prefix else []
    if act == "create":
        return vks(vd, tok, "create", "new-" + name, "--username", "new-" + user, "--all-domains", *pre,
                   keep_stdout=True)
    if act == "list":
        return vks(vd, tok, "list", "--json", *pre)
    if act == "show":
        return vks(vd, tok, "show", name, "--json", *pre)
    if act == "reveal":
        return vks(vd, tok, "reveal", name, "--reason", "ticket 81", "--force-stdout", *pre, keep_stdout=True)
    if act == "restrict":
        return vks(vd, tok, "restrict", name, "--ip", "192.0.2.1", *pre)
    if act == "delete":
        return vks(vd, tok, "delete", name, "--confirm", user, *pre)
    if act == "rotate":
        r = vks(vd, tok, "rotate", name, "--relay", "127.0.0.1:%d" % RELAY.port, "--relay-cafile", RELAY.cafile,
                "--set-hook", HOOK, *pre)
        relay_secrets()
        return r
    if act == "rollback":
        return vks(vd, tok, "rollback", name, "--reason", "ticket 81", *pre)
    raise ValueError(act)


def relay_secrets():
    with open(RELAY.creds_path) as f:
        for line in f:
            pw = line.rstrip("\n").partition(":")[2]
            if pw and pw not in SECRETS:
                SECRETS.append(pw)


def check_act(vd, who, tok, act, want, name, user, prefix=None, display=None):
    """Runs one act with one token and asserts the outcome, the state and the audit trail."""
    before, nlines = snapshot(vd), len(audit_lines(vd))
    full = (prefix or "smtp-auth/") + name
    written = (prefix or "smtp-auth/") + ("new-" + name if act == "create" else name)
    if act == "resolve":
        kind, rest = resolve(vd, tok, full, "example.com")
        if want:
            T.ok(kind == "OK" and rest in SECRETS, "%s: resolve %s allowed" % (who, full), kind)
        else:
            T.ok(kind == "ERR" and rest.startswith("permission_denied"), "%s: resolve %s denied" % (who, full), rest)
        return
    rc, out, err = run_act(vd, tok, act, name, user, prefix)
    if act in ("create", "reveal") and rc == 0:
        SECRETS.append(out.strip())
    after = snapshot(vd)
    if want:
        T.ok(rc == 0, "%s: %s allowed" % (who, act), err.strip()[-300:])
        if act == "show":
            j = json.loads(out)
            if want == "nofp":
                T.ok(j["fingerprint"] is None and "may not read the password" in j["fingerprint_unavailable"],
                     "%s: show without read on data: no fingerprint, said why" % who, j.get("fingerprint_unavailable"))
            else:
                T.ok(j["fingerprint"] and len(j["fingerprint"]) == 32, "%s: show with a fingerprint" % who)
        if act == "list":
            names = [r["name"] for r in json.loads(out)]
            T.ok(name in names, "%s: list shows %s" % (who, name), names)
        if act == "reveal":
            T.ok(len(out.strip()) == 32, "%s: reveal printed the password" % who)
    else:
        T.ok(rc == 2 and "permission denied" in err and "token's Vault policies do not allow this" in err,
             "%s: %s denied: exit 2 and a permission message" % (who, act), (rc, err.strip()[-300:]))
        T.ok(out == "", "%s: %s denied: nothing on stdout" % (who, act), out[:80])
        T.ok(after == before, "%s: %s denied: nothing written to Vault" % (who, act))
        new = audit_lines(vd)[nlines:]
        if act in AUDITED:
            ev = [x for x in new if x["type"] == EVENT.get(act, "cred." + act)]
            T.ok(len(ev) == 1 and ev[0]["result"] == "failure" and ev[0]["code"] == "permission_denied" and
                 ev[0]["operator"] == display and ev[0]["path"] == written,
                 "%s: %s denied: one failure event with the operator and the credential" % (who, act),
                 [(x["type"], x.get("result"), x.get("code"), x.get("operator")) for x in new])
        else:
            T.eq(new, [], "%s: %s denied: a metadata read, not audited (as when allowed)" % (who, act))


def load_policies(vd):
    for name in ROLES + ["cred-tenant-acme", "cred-tenant-globex"]:
        with open(os.path.join(EX, name + ".hcl")) as f:
            vd.policy(name, f.read())  # unchanged
    st, j = vd.call("GET", "/v1/sys/policies/acl/cred-operator")
    T.ok(st == 200 and "secret/data/smtp-auth/*" in j["data"]["policy"], "the shipped policies load")


def test_roles(vd):
    root = vd.root_token
    for role in ROLES:
        name, user = role + ".example", "u-" + role
        rc, out, err = vks(vd, root, "create", name, "--username", user, "--domain", "example.com",
                           keep_stdout=True)
        T.eq(rc, 0, "root creates %s" % name)
        SECRETS.append(out.strip())
        rc, out, err = run_act(vd, root, "rotate", name, user)   # so that each has a previous version
        T.ok(rc == 0, "root rotates %s" % name, err[-300:])
    for role in ROLES:
        tok = vd.create_token(policies=[role], display_name=role)
        name, user = role + ".example", "u-" + role
        for act in ACTS:
            check_act(vd, role, tok, act, MATRIX[role][act], name, user, display="token-" + role)
    # the operator's show and rollback made no data request (sys/capabilities-self answered first):
    # the two requests are its refused reveal and its refused resolver lookup
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/cred-operator.example"), 2,
         "cred-operator.example's data: only the refused reveal and lookup asked for it, never show or rollback")


def test_no_refused_data_read(vd):
    """show with a metadata-only token sends no data request (Vault would log a refusal)."""
    vks(vd, vd.root_token, "create", "quiet.example", "--username", "quiet", "--all-domains", keep_stdout=True)
    tok = vd.create_token(policies=["auditor"], display_name="auditor2")
    vd.reset_counters()
    rc, out, _ = vks(vd, tok, "show", "quiet.example", "--json")
    T.ok(rc == 0 and json.loads(out)["username"] == "quiet", "auditor: show quiet.example")
    c = vd.counters()
    T.ok(not any("/data/" in k for k in c) and c.get("POST /v1/sys/capabilities-self", 0) == 1,
         "auditor's show: one capabilities-self, no data request", c)


def test_tenants(vd):
    root = vd.root_token
    toks = {t: vd.create_token(policies=["cred-tenant-" + t], display_name="tenant-" + t) for t in ("acme", "globex")}
    for t in ("acme", "globex"):
        pre = "smtp-auth/%s/" % t
        rc, out, err = vks(vd, toks[t], "create", "mail.%s.example" % t, "--username", "u-" + t, "--domain",
                           "example.com", "--tenant", t, "--prefix", pre, keep_stdout=True)
        T.ok(rc == 0, "tenant %s creates under its own prefix" % t, err)
        SECRETS.append(out.strip())
    for t, other in (("acme", "globex"), ("globex", "acme")):
        who = "tenant " + t
        own, oth = "smtp-auth/%s/" % t, "smtp-auth/%s/" % other
        name = "mail.%s.example" % t
        for act in ("list", "show", "resolve", "rotate", "rollback", "restrict"):
            check_act(vd, who, toks[t], act, A, name, "u-" + t, prefix=own, display="token-tenant-" + t)
        oname = "mail.%s.example" % other
        for act in ACTS:
            check_act(vd, who + " on " + other, toks[t], act, D, oname, "u-" + other, prefix=oth,
                      display="token-tenant-" + t)
        rc, out, err = vks(vd, toks[t], "list", "--json")
        T.ok(rc == 2 and "permission denied" in err, "%s: list of the whole smtp-auth/ denied (no names leak)" % who,
             err)
        # the "smtp-auth/<tenant>/" prefix is the boundary: a credential name with a segment does not
        # escape it (NAME rules forbid "..")
        rc, _, err = vks(vd, toks[t], "show", "../%s/%s" % (other, oname), "--prefix", own)
        T.ok(rc == 1 and "NAME" in err, "%s: '..' in NAME refused before any request" % who, err)
    rc, out, err = vks(vd, toks["acme"], "delete", "mail.acme.example", "--confirm", "u-acme", "--prefix",
                       "smtp-auth/acme/")
    T.eq(rc, 0, "tenant acme deletes its own credential")
    rc, out, _ = vks(vd, root, "list", "--json")
    T.ok(rc == 0 and "globex/mail.globex.example" in [r["name"] for r in json.loads(out)],
         "root still sees globex's credential (under the whole prefix, as globex/NAME)")


def test_audit_verify(vd):
    path = os.path.join(vd.workdir, "audit.log")
    raw = open(path).read()
    T.ok(vd.root_token not in raw and "ENC:" not in raw, "no token and no envelope in the trail")
    p = subprocess.run([VKS, "audit", "verify", path], capture_output=True, timeout=60,
                       env=env_for(vd, vd.root_token))
    T.ok(p.returncode == 0, "vks audit verify accepts the trail with the denials", p.stdout[-300:])
    logs = [raw, vd.stderr_text()]
    leaks = [i for i, s in enumerate(SECRETS) for o in OUTPUTS + logs if s and s in o]
    T.ok(len(SECRETS) >= 6 and not leaks, "no password in any output but its one place", "%d hit(s)" % len(leaks))


def main():
    global RELAY, HOOK
    with VaultDev() as vd:
        RELAY = Relay(vd.workdir, creds=[])
        hook = os.path.join(vd.workdir, "set-hook.sh")
        with open(hook, "w") as f:   # the relay accepts the new password too (its file is re-read)
            f.write('read -r pw || exit 9\nprintf "%s:%s\\n" "$VKS_CRED_USERNAME" "$pw" >> "$1"\n')
        HOOK = "/bin/sh %s %s" % (hook, RELAY.creds_path)
        try:
            load_policies(vd)
            T.run(test_roles, vd)
            T.run(test_no_refused_data_read, vd)
            T.run(test_tenants, vd)
            T.run(test_audit_verify, vd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        finally:
            RELAY.stop()
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    sys.exit(T.finish())


main()
