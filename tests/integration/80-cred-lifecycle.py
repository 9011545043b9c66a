"""vks cred against build/vault-dev over HTTPS (issue 12, phase 1):
 * create -> the resolver (Lua module, C core) resolves the same password through
   {vault_mount, vault_path}, an ENC: envelope in field `key`, `username` beside it;
 * a provider-issued password through --password-stdin; duplicate names and usernames refused;
 * concurrent edits: two writers at once give one success and one conflict (check-and-set), an
   edit made behind vks cred's back is noticed by the rev guard, nothing silently overwritten;
 * restrict -> the resolver enforces the new lists; list's summary strings; show's fingerprint is
   the fp of the resolver's lookup audit event;
 * reveal needs --reason and a terminal (or --force-stdout); delete needs the username and removes
   every version;
 * every act is one cred.<action> event with the operator's identity, and `vks audit verify`
   accepts the trail;
 * no password (generated or provided) in any output, audit line or server log but the one place
   it is meant to be shown;
 * bad input: clear errors naming the field, exit 1, nothing written; remote failures exit 2."""
import json
import os
import pty
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402

T = Checks()
ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")
# listed in tests/test-secrets.d/cred.txt
ENC_KEY = "Y3JlZDgwLWVuYy1rZXktVEVTVC0wMTIzNDU2Nzg5YWI="   # 32 bytes, base64
AUDIT_KEY = "Y3JlZDgwLWF1ZGl0LWtleS1URVNULTAxMjM0NTY3ODk="  # 32 bytes, base64
PROVIDED = "cred80-Provider:Issued^PW-7d41"

OUTPUTS = []       # every stdout/stderr that must never hold a password
SECRETS = []       # generated and provided passwords (checked by this test, never printed)


def env_for(vd, **extra):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith(("VAULT_", "VKS_")):
            del e[k]
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=vd.root_token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEY=ENC_KEY, VKS_AUDIT_KEY=AUDIT_KEY, VAULT_MAX_RETRIES="0",
             VKS_AUDIT_FILE=os.path.join(vd.workdir, "audit.log"))
    e.update(extra)
    return e


def vks(vd, *args, stdin=None, keep_stdout=False, env=None):
    """Runs build/vks; stdout is scanned for secrets unless it is where a password is meant to be."""
    p = subprocess.run([VKS, *args], input=stdin, capture_output=True, timeout=60, env=env or env_for(vd))
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    OUTPUTS.append(err)
    if not keep_stdout:
        OUTPUTS.append(out)
    return p.returncode, out, err


def vks_tty(vd, *args):
    """Runs build/vks with stdout on a pseudo-terminal; returns (rc, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([VKS, *args], stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=env_for(vd))
    os.close(slave)
    got = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        elif p.poll() is not None:
            break
    rc = p.wait(timeout=30)
    OUTPUTS.append(p.stderr.read().decode(errors="replace"))
    os.close(master)
    return rc, got.decode(errors="replace").replace("\r\n", "\n")


LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local ctx = { domain = arg[2] ~= '' and arg[2] or nil, destination = arg[3] ~= '' and arg[3] or nil }
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = arg[1] }, ctx)
if v then io.write('OK ', v) else io.write('ERR ', tostring(code), ' ', tostring(msg)) end
"""


def resolve(vd, path, domain="", dest="", audit_file=None):
    """The existing resolver (Lua module over the C core) in a fresh process: ('OK', value) or
    ('ERR', 'code message'). The value never reaches the test output."""
    script = os.path.join(vd.workdir, "resolve.lua")
    with open(script, "w") as f:
        f.write(LUA)
    e = env_for(vd)
    if audit_file:
        e["VKS_AUDIT_FILE"] = audit_file
    else:
        del e["VKS_AUDIT_FILE"]
    p = subprocess.run(["lua5.4", script, path, domain, dest], capture_output=True, timeout=60, env=e)
    OUTPUTS.append(p.stderr.decode(errors="replace"))
    kind, _, rest = p.stdout.decode(errors="replace").partition(" ")
    return kind, rest


def created_password(out):
    return out.strip()


def test_create_and_resolve(vd):
    rc, out, err = vks(vd, "cred", "create", "example.com", "--username", "relay1@example.com",
                       "--domain", "example.com", "--domain", "*.example.com", "--ip", "192.0.2.10",
                       "--ip", "10.1.0.0/16", "--ip", "2001:db8::/32", "--owner", "mail ops",
                       "--tenant", "acme", keep_stdout=True)
    T.eq(rc, 0, "create exits 0")
    pw = created_password(out)
    SECRETS.append(pw)
    T.ok(len(pw) == 32 and pw.isalnum() and pw.isascii(), "the password printed once: 32 letters and digits")
    T.ok("version 1" in err and "2 domains, 3 IPs" in err, "create says what it did", err)
    st, j = vd.kv2_get("smtp-auth/example.com")
    data = j["data"]["data"]
    T.ok(st == 200 and data["key"].startswith("ENC:v2:") and pw not in json.dumps(j),
         "stored as an ENC: envelope in field key, no plaintext in Vault")
    T.eq(data["username"], "relay1@example.com", "username beside it")
    st, m = vd.call("GET", "/v1/secret/metadata/smtp-auth/example.com")
    cm = m["data"]["custom_metadata"]
    T.eq((cm["allowed_domains"], cm["allowed_hosts"]), ("example.com, *.example.com",
         "192.0.2.10, 10.1.0.0/16, 2001:db8::/32"), "restrictions where the resolver reads them")
    T.ok(cm["rev"] == "1" and cm["state"] == "active" and cm["tenant"] == "acme" and cm["vks_cred"] == "1",
         "lifecycle state in custom_metadata", cm)
    T.ok(m["data"]["cas_required"] is True and m["data"]["max_versions"] == 20, "cas_required on the secret")
    T.ok(all(1 <= len(v) <= 512 for v in cm.values()) and len(cm) <= 64, "within Vault's limits")
    # vault-dev refuses what Vault refuses (vault-http-api.md 1.5), so a writer that broke the
    # limits would fail here as against Vault
    for bad in ({"owner": ""}, {"": "x"}, {"owner": "a\nb"}, {"owner": "x" * 513}):
        st, j = vd.call("POST", "/v1/secret/metadata/smtp-auth/limits-probe", {"custom_metadata": bad})
        T.eq(st, 400, "vault-dev refuses custom_metadata %r like Vault" % (list(bad.items())[0][0][:8],))
    kind, val = resolve(vd, "smtp-auth/example.com", "mx.example.com", "10.1.2.3:25")
    T.ok(kind == "OK" and val == pw, "the existing resolver resolves the same password via vault_mount/vault_path",
         kind if kind != "OK" else "a different value")
    return pw


def test_provided(vd):
    rc, out, err = vks(vd, "cred", "create", "provider.net", "--username", "prov-user", "--all-domains",
                       "--password-stdin", stdin=(PROVIDED + "\n").encode())
    T.eq(rc, 0, "create --password-stdin exits 0")
    T.ok(PROVIDED not in out and out == "", "a provided password is not printed back")
    kind, val = resolve(vd, "smtp-auth/provider.net", "any.org", "")
    T.ok(kind == "OK" and val == PROVIDED, "the provided password resolves (':' and '^' intact)")
    rc, _, err = vks(vd, "cred", "create", "p2.net", "--username", "p2", "--all-domains", "--password-stdin",
                     stdin=b"two words\n")
    T.ok(rc == 1 and "position 4" in err and "two" not in err, "a provided password with a space: exit 1", err)


def test_duplicates(vd):
    rc, _, err = vks(vd, "cred", "create", "example.com", "--username", "other", "--all-domains")
    T.ok(rc == 2 and "already exists" in err, "a duplicate name is refused (exit 2)", err)
    rc, _, err = vks(vd, "cred", "create", "example.org", "--username", "RELAY1@example.com", "--all-domains")
    T.ok(rc == 2 and "already used by credential 'example.com'" in err, "a duplicate username is refused", err)
    st, _ = vd.call("GET", "/v1/secret/metadata/smtp-auth/example.org")
    T.eq(st, 404, "nothing was written for a refused create")


def test_bad_input(vd):
    before = vd.call("LIST", "/v1/secret/metadata/smtp-auth")[1]["data"]["keys"]
    cases = [
        (["create", "a.net", "--username", "bad user", "--all-domains"], "--username", "character 4"),
        (["create", "a.net", "--username", "x" * 256, "--all-domains"], "--username", "256"),
        (["create", "a.net", "--username", "a:b", "--all-domains"], "--username", "':'"),
        (["create", "a.net", "--username", "u", "--domain", "a..b"], "--domain", "a..b"),
        (["create", "a.net", "--username", "u", "--domain", "*"], "--domain", "not a domain"),
        (["create", "a.net", "--username", "u", "--all-domains", "--ip", "10.0.0.0/33"], "--ip", "10.0.0.0/33"),
        (["create", "a.net", "--username", "u", "--all-domains", "--ip", "10.0.0.300"], "--ip", "10.0.0.300"),
        (["create", "a.net", "--username", "u", "--all-domains", "--ip", "10.0.0.1/8"], "--ip", "bits set"),
        (["create", "a.net", "--username", "u", "--all-domains", "--ip", "relay.example.com"], "--ip", "CIDR"),
        (["create", "a.net", "--username", "u"], "--domain", "--all-domains"),
        (["create", "../x", "--username", "u", "--all-domains"], "NAME", "not a credential name"),
        (["create", "a.net", "--all-domains"], "--username", "required"),
        (["create", "a.net", "--username", "u", "--all-domains", "--tenant", "Acme"], "--tenant", "a-z"),
        (["restrict", "example.com", "--ip", "2001:db8::/129"], "--ip", "2001:db8::/129"),
        (["restrict", "example.com", "--remove-domain", "nope.example"], "--remove-domain", "not in the list"),
        (["create", "a.net", "--username", "u", "--all-domains", "--mount", "../x"], "--mount", "segments"),
    ]
    for args, field, part in cases:
        rc, out, err = vks(vd, "cred", *args)
        T.ok(rc == 1 and field in err and part in err, "bad input %r: exit 1 naming %s" % (args[1:4], field), err)
    many = []
    for i in range(40):
        many += ["--ip", "198.51.100.%d" % (i + 1)]
    rc, _, err = vks(vd, "cred", "create", "a.net", "--username", "u", "--all-domains", *many)
    T.ok(rc == 1 and "512" in err, "a list over Vault's 512-character value limit is refused before writing", err)
    after = vd.call("LIST", "/v1/secret/metadata/smtp-auth")[1]["data"]["keys"]
    T.eq(after, before, "nothing was written by any refused command")
    rc, _, err = vks(vd, "cred", "show", "missing.example")
    T.ok(rc == 2 and "not found" in err, "show of a missing credential: exit 2", err)
    rc, _, err = vks(vd, "cred", "list", "--bogus")
    T.eq(rc, 1, "an unknown option: exit 1")


def test_list_and_show(vd, pw):
    rc, out, _ = vks(vd, "cred", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    T.eq(rc, 0, "list --json exits 0")
    T.eq(rows["example.com"]["permissions"], "2 domains, 3 IPs", "summary '2 domains, 3 IPs'")
    T.eq(rows["provider.net"]["permissions"], "All domains, all IPs", "summary 'All domains, all IPs'")
    rc, out, _ = vks(vd, "cred", "list")
    T.ok(rc == 0 and "2 domains, 3 IPs" in out and "All domains, all IPs" in out, "the table too")
    rc, out, _ = vks(vd, "cred", "list", "--tenant", "acme", "--json")
    T.eq([r["name"] for r in json.loads(out)], ["example.com"], "list --tenant filters")
    import datetime
    soon = (datetime.datetime.utcnow() + datetime.timedelta(days=181)).strftime("%Y-%m-%d")
    rc, out, _ = vks(vd, "cred", "list", "--due-before", soon, "--json")
    T.ok(rc == 0 and "example.com" in [r["name"] for r in json.loads(out)], "due 180 days after create: listed")
    rc, out, _ = vks(vd, "cred", "list", "--due-before", "2026-01-01", "--json")
    T.eq(json.loads(out), [], "--due-before an earlier date: none")
    rc, _, err = vks(vd, "cred", "list", "--due-before", "soon")
    T.ok(rc == 1 and "--due-before" in err, "a bad date: exit 1 naming the option", err)
    rc, out, _ = vks(vd, "cred", "show", "example.com", "--json")
    j = json.loads(out)
    T.ok(rc == 0 and len(j["fingerprint"]) == 32 and j["versions"][0]["version"] == 1, "show --json", out)
    alog = os.path.join(vd.workdir, "lookup-audit.log")
    kind, _ = resolve(vd, "smtp-auth/example.com", "example.com", "192.0.2.10", audit_file=alog)
    with open(alog) as f:
        fps = [json.loads(line).get("fp") for line in f if '"secret.lookup"' in line]
    T.ok(kind == "OK" and fps and fps[-1] == j["fingerprint"],
         "show's fingerprint is the fp of the resolver's lookup audit event (same audit key)", (fps, j["fingerprint"]))
    e = env_for(vd)
    del e["VKS_AUDIT_KEY"]
    rc, out, _ = vks(vd, "cred", "show", "example.com", "--json", env=e)
    j2 = json.loads(out)
    T.ok(rc == 0 and j2["fingerprint"] is None and "audit key" in j2["fingerprint_unavailable"],
         "no audit key: no fingerprint (an ephemeral key would make an unkeyed-looking value)")


def test_restrict_enforced(vd):
    rc, out, err = vks(vd, "cred", "restrict", "example.com", "--remove-domain", "*.example.com",
                       "--remove-ip", "10.1.0.0/16", "--ip", "203.0.113.0/24")
    T.ok(rc == 0 and "1 domain, 3 IPs" in out, "restrict exits 0 and prints the summary", out + err)
    kind, rest = resolve(vd, "smtp-auth/example.com", "mx.example.com", "192.0.2.10")
    T.ok(kind == "ERR" and rest.startswith("restricted"), "the resolver refuses a removed domain", rest)
    kind, rest = resolve(vd, "smtp-auth/example.com", "example.com", "10.1.2.3")
    T.ok(kind == "ERR" and rest.startswith("restricted"), "the resolver refuses a removed range", rest)
    kind, _ = resolve(vd, "smtp-auth/example.com", "example.com", "203.0.113.7:587")
    T.eq(kind, "OK", "the resolver allows the added range")
    rc, out, _ = vks(vd, "cred", "restrict", "example.com", "--all-ips", "--all-domains", "--json")
    T.ok(rc == 0 and json.loads(out)["permissions"] == "All domains, all IPs", "--all-* lifts both")
    kind, _ = resolve(vd, "smtp-auth/example.com", "anything.test", "198.18.0.1")
    T.eq(kind, "OK", "lifted: any domain, any IP")
    st, m = vd.call("GET", "/v1/secret/metadata/smtp-auth/example.com")
    cm = m["data"]["custom_metadata"]
    T.ok("allowed_domains" not in cm and "allowed_hosts" not in cm and cm["rev"] == str(m["data"]["current_version"]),
         "no list = no restriction; rev follows the data version", cm)
    vks(vd, "cred", "restrict", "example.com", "--domain", "example.com")


def test_concurrent(vd):
    vks(vd, "cred", "create", "race.example", "--username", "racer", "--domain", "race.example")
    # writer A's check-and-set write is held back by the server for 1.5 s; writer B starts meanwhile
    vd.fault(action="latency", latency_ms=1500, method="PATCH", path_prefix="/v1/secret/data/smtp-auth/race.example",
             count=1)
    res = {}

    def writer(name, dom, delay):
        time.sleep(delay)
        res[name] = vks(vd, "cred", "restrict", "race.example", "--domain", dom)

    a = threading.Thread(target=writer, args=("A", "a.race.example", 0))
    b = threading.Thread(target=writer, args=("B", "b.race.example", 0.5))
    a.start(); b.start(); a.join(); b.join()
    vd.clear_faults()
    rcs = sorted([res["A"][0], res["B"][0]])
    T.eq(rcs, [0, 2], "two writers at once: one success, one refusal (exit 2)")
    # B read the metadata before A's write landed, so both wrote with the same cas: Vault's
    # check-and-set let B's through and refused A's
    T.ok(res["B"][0] == 0 and res["A"][0] == 2 and "changed concurrently (check-and-set" in res["A"][2],
         "the delayed writer A lost the check-and-set, the refusal says why", res["A"][2])
    st, m = vd.call("GET", "/v1/secret/metadata/smtp-auth/race.example")
    doms = m["data"]["custom_metadata"]["allowed_domains"]
    winner_dom = "a.race.example" if res["A"][0] == 0 else "b.race.example"
    loser_dom = "b.race.example" if winner_dom == "a.race.example" else "a.race.example"
    T.ok(winner_dom in doms and loser_dom not in doms, "the winner's edit is stored, the loser's is not", doms)
    T.eq(m["data"]["custom_metadata"]["rev"], str(m["data"]["current_version"]), "metadata follows the data")
    # an edit behind vks cred's back (a raw KV write with the right cas) is noticed by the rev guard
    cur = m["data"]["current_version"]
    st, _ = vd.call("PATCH", "/v1/secret/data/smtp-auth/race.example", {"options": {"cas": cur},
                    "data": {"note": "hand edit"}}, headers={"Content-Type": "application/merge-patch+json"})
    T.eq(st, 200, "a hand edit (merge patch with cas)")
    rc, _, err = vks(vd, "cred", "restrict", "race.example", "--domain", "c.race.example")
    T.ok(rc == 2 and "describes version %d" % cur in err, "the next edit is refused, naming both versions", err)
    # two creates of one new name at once: exactly one wins
    res.clear()
    vd.fault(action="latency", latency_ms=1000, method="POST", path_prefix="/v1/secret/data/smtp-auth/twin.example",
             count=1)
    a = threading.Thread(target=lambda: res.__setitem__("A", vks(vd, "cred", "create", "twin.example", "--username",
                                                                  "twin-a", "--all-domains", keep_stdout=True)))
    b = threading.Thread(target=lambda: (time.sleep(0.4), res.__setitem__("B", vks(vd, "cred", "create",
                         "twin.example", "--username", "twin-b", "--all-domains", keep_stdout=True))))
    a.start(); b.start(); a.join(); b.join()
    vd.clear_faults()
    for r in res.values():
        if r[0] == 0:
            SECRETS.append(r[1].strip())
        else:
            T.ok(r[1] == "", "the losing create prints no password")
    T.eq(sorted([res["A"][0], res["B"][0]]), [0, 2], "two creates of one name: one wins (cas 0), one exit 2")
    kind, val = resolve(vd, "smtp-auth/twin.example", "x.org", "")
    winner = res["A"] if res["A"][0] == 0 else res["B"]
    T.ok(kind == "OK" and val == winner[1].strip(), "the winner's password is the one stored")


def test_interrupted(vd):
    """A writer that dies (or loses Vault) between the data write and the metadata write: the
    password keeps resolving, nothing is lost, and the next edit says what happened."""
    rc, out, err = vks(vd, "cred", "create", "cut.example", "--username", "cut", "--domain", "cut.example",
                       keep_stdout=True)
    pw = out.strip()
    SECRETS.append(pw)
    vd.fault(action="status", status=500, method="POST", path_prefix="/v1/secret/metadata/smtp-auth/cut.example",
             count=1)
    rc, out, err = vks(vd, "cred", "restrict", "cut.example", "--domain", "more.example")
    vd.clear_faults()
    T.ok(rc == 2 and "unavailable" in err, "the metadata write fails: exit 2", err)
    kind, val = resolve(vd, "smtp-auth/cut.example", "cut.example", "")
    T.ok(kind == "OK" and val == pw, "the password still resolves, restrictions as before")
    kind, rest = resolve(vd, "smtp-auth/cut.example", "more.example", "")
    T.ok(kind == "ERR" and rest.startswith("restricted"), "the half-done edit granted nothing", rest)
    rc, _, err = vks(vd, "cred", "restrict", "cut.example", "--domain", "other.example")
    T.ok(rc == 2 and "interrupted" in err and "describes version 1" in err, "the next edit names the interruption",
         err)
    # create whose metadata write fails: the password is still shown once and resolves
    vd.fault(action="status", status=500, method="POST", path_prefix="/v1/secret/metadata/smtp-auth/half.example",
             count=1)
    rc, out, err = vks(vd, "cred", "create", "half.example", "--username", "half", "--all-domains",
                       keep_stdout=True)
    vd.clear_faults()
    pw2 = out.strip()
    SECRETS.append(pw2)
    T.ok(rc == 2 and len(pw2) == 32 and "was stored (version 1" in err, "create: password shown, failure said", err)
    kind, val = resolve(vd, "smtp-auth/half.example", "x.org", "")
    T.ok(kind == "OK" and val == pw2, "and it resolves")
    rc, out, _ = vks(vd, "cred", "list", "--state", "unmanaged", "--json")
    T.ok("half.example" in [r["name"] for r in json.loads(out)], "list shows it as unmanaged")
    rc, _, err = vks(vd, "cred", "restrict", "half.example", "--all-ips")
    T.ok(rc == 1 and "not managed" in err, "an unmanaged secret is not edited", err)


def test_reveal(vd, pw):
    rc, out, err = vks(vd, "cred", "reveal", "example.com", "--reason", "ticket 4711")
    T.ok(rc == 1 and out == "" and "not a terminal" in err, "reveal to a pipe is refused without --force-stdout", err)
    rc, out, err = vks(vd, "cred", "reveal", "example.com")
    T.ok(rc == 1 and "--reason" in err, "--reason is required", err)
    rc, got = vks_tty(vd, "cred", "reveal", "example.com", "--reason", "ticket 4711")
    T.ok(rc == 0 and got.strip() == pw, "reveal on a terminal prints the password")
    rc, out, _ = vks(vd, "cred", "reveal", "example.com", "--reason", "ticket 4712", "--force-stdout",
                     keep_stdout=True)
    T.ok(rc == 0 and out.strip() == pw, "--force-stdout prints to a pipe")
    e = env_for(vd)
    del e["VKS_AUDIT_FILE"]
    before = vd.count("GET", "/v1/secret/data/smtp-auth/example.com")
    rc, out, err = vks(vd, "cred", "reveal", "example.com", "--reason", "t", "--force-stdout", env=e)
    T.ok(rc == 1 and out == "" and "no audit sink" in err, "no audit sink: reveal refused (exit 1)", err)
    T.eq(vd.count("GET", "/v1/secret/data/smtp-auth/example.com"), before, "and the password was not even read")


def test_delete(vd):
    rc, _, err = vks(vd, "cred", "delete", "race.example")
    T.ok(rc == 1 and "--confirm" in err, "delete without a terminal needs --confirm", err)
    rc, _, err = vks(vd, "cred", "delete", "race.example", "--confirm", "not-the-user")
    T.ok(rc == 1 and "does not match" in err, "a wrong username deletes nothing", err)
    st, _ = vd.call("GET", "/v1/secret/metadata/smtp-auth/race.example")
    T.eq(st, 200, "still there")
    rc, _, err = vks(vd, "cred", "delete", "race.example", "--confirm", "racer")
    T.eq(rc, 0, "delete --confirm USERNAME exits 0")
    T.eq(vd.call("GET", "/v1/secret/metadata/smtp-auth/race.example")[0], 404, "metadata gone")
    for v in (1, 2, 3):
        st, _ = vd.kv2_get("smtp-auth/race.example", version=v)
        T.eq(st, 404, "version %d gone" % v)
    kind, rest = resolve(vd, "smtp-auth/race.example", "race.example", "")
    T.ok(kind == "ERR" and rest.startswith("not_found"), "the resolver finds nothing", rest)


def test_permission_denied(vd):
    vd.policy("cred-list-only", 'path "secret/metadata/smtp-auth/*" { capabilities = ["list", "read"] }\n'
                                'path "secret/metadata/smtp-auth" { capabilities = ["list"] }\n')
    tok = vd.create_token(policies=["cred-list-only"], display_name="support-alice")
    e = env_for(vd, VAULT_TOKEN=tok)
    rc, out, _ = vks(vd, "cred", "list", "--json", env=e)
    T.ok(rc == 0 and len(json.loads(out)) >= 2, "a list-only token lists")
    rc, _, err = vks(vd, "cred", "restrict", "example.com", "--domain", "x.example", env=e)
    T.ok(rc == 2 and "permission denied" in err, "a token without write: exit 2 permission denied", err)
    rc, _, err = vks(vd, "cred", "reveal", "example.com", "--reason", "r", "--force-stdout", env=e)
    T.ok(rc == 2 and "permission denied" in err, "and it cannot reveal", err)
    return tok


def test_audit(vd, tok):
    path = os.path.join(vd.workdir, "audit.log")
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    cred = [x for x in lines if x["type"].startswith("cred.")]
    kinds = {x["type"] for x in cred}
    T.ok({"cred.create", "cred.reveal", "cred.restrict", "cred.delete"} <= kinds, "one event type per act", kinds)
    st, me = vd.call("GET", "/v1/auth/token/lookup-self")
    ok = [x for x in cred if x["result"] == "success"]
    T.ok(all(x["operator"] == "root" and x["operator_accessor"] == me["data"]["accessor"] for x in ok),
         "operator identity from lookup-self: display name and accessor")
    rev = [x for x in cred if x["type"] == "cred.reveal" and x["result"] == "success"]
    T.ok(rev and rev[0]["reason"] == "ticket 4711" and rev[0]["secret_version"] >= 1,
         "reveal carries the reason and the version")
    denied = [x for x in cred if x["operator"] == "token-support-alice"]
    T.ok(denied and all(x["result"] == "failure" and x["code"] == "permission_denied" for x in denied),
         "refused acts are audited with the operator and the code", [(x["operator"], x["code"]) for x in cred][-3:])
    conflict = [x for x in cred if x["code"] == "conflict"]
    T.ok(conflict, "a lost check-and-set is audited")
    raw = open(path).read()
    T.ok(vd.root_token not in raw and tok not in raw and "ENC:" not in raw, "no token and no envelope in the trail")
    rc, out, _ = vks(vd, "audit", "verify", path)
    T.ok(rc == 0 and out.rstrip().splitlines()[-1].startswith("OK:"), "vks audit verify accepts the trail",
         out[-300:])


def test_no_secret_anywhere(vd):
    logs = [open(os.path.join(vd.workdir, n)).read() for n in ("audit.log", "lookup-audit.log")]
    logs.append(vd.stderr_text())
    T.ok(len(SECRETS) >= 2, "generated passwords collected")
    leaks = [i for i, s in enumerate(SECRETS + [PROVIDED]) for o in OUTPUTS + logs if s and s in o]
    T.ok(not leaks, "no password in any output but its one place, the audit trail or the server log",
         "%d hit(s)" % len(leaks))


def main():
    with VaultDev() as vd:
        pw = None
        try:
            pw = test_create_and_resolve(vd)
            T.run(test_provided, vd)
            T.run(test_duplicates, vd)
            T.run(test_bad_input, vd)
            T.run(test_list_and_show, vd, pw)
            T.run(test_restrict_enforced, vd)
            T.run(test_concurrent, vd)
            T.run(test_interrupted, vd)
            T.run(test_reveal, vd, pw)
            T.run(test_delete, vd)
            tok = test_permission_denied(vd)
            T.run(test_audit, vd, tok)
            T.run(test_no_secret_anywhere, vd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    sys.exit(T.finish())


main()
