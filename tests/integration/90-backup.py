"""vks backup against build/vault-dev over HTTPS (issue 13, sealed backup and restore):
 * credentials made with `vks cred create` (and extra versions with `vks cred restrict`), plus an
   unmanaged secret with deleted, destroyed and pruned versions, are backed up, verified and
   restored into a fresh vault-dev: every credential resolves there to the same password (the
   resolver in a fresh process) with the same keyed fingerprint, versions, restrictions and KV
   settings, and deleted/destroyed versions keep their state and numbers;
 * interop with Debian's age: `age -d -i` opens our recipient bundle, `age -d` with the
   passphrase typed on a pseudo-terminal opens our passphrase bundle, and bundles sealed by
   `age -r` (age-keygen) and by `age -p` (passphrase typed on a pty) verify and restore;
 * refused with exit 1 and nothing written to the target: a tampered, truncated, foreign (not age;
   age of something else) bundle, a wrong identity or passphrase; refused with exit 2, nothing
   written: a non-empty target; a full disk (a 16 KiB tmpfs) while writing the bundle: a clear
   error and no file, partial or temporary, left behind; an existing output file is not replaced;
 * backup.create and backup.restore audit events with the operator; no password in any output."""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402

T = Checks()
ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")
# listed in tests/test-secrets.d/backup.txt
ENC_KEY = "YmFja3VwOTAtZW5jLWtleS1URVNULTAxMjM0NTY3ODk="    # 32 bytes, base64
AUDIT_KEY = "YmFja3VwOTAtYXVkaXQta2V5LVRFU1QtMDEyMzQ1Njc="   # 32 bytes, base64
PASSPHRASE = "backup90-Passphrase-TEST-6b2e"
UNMANAGED = "backup90-unmanaged-plain-TEST-91c4"
WORK = os.environ.get("VKS_SUITE_WORK") or "/tmp"

OUTPUTS = []
SECRETS = [PASSPHRASE, UNMANAGED]


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


def vks(vd, *args, keep_stdout=False, env=None):
    p = subprocess.run([VKS, *args], capture_output=True, timeout=120, env=env or env_for(vd))
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    OUTPUTS.append(err)
    if not keep_stdout:
        OUTPUTS.append(out)
    return p.returncode, out, err


def age_pty(args, passphrase, confirm):
    """Runs Debian's age with a controlling pseudo-terminal and types the passphrase at its
    prompt(s) (age reads passphrases from the terminal only). Returns (rc, terminal text)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("age", ["age", *args])
    got, typed, deadline = b"", 0, time.monotonic() + 60
    want = 2 if confirm else 1
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
            if typed < want and got.lower().count(b"passphrase") > typed:
                os.write(fd, passphrase.encode() + b"\n")
                typed += 1
        else:
            w, status = os.waitpid(pid, os.WNOHANG)
            if w == pid:
                os.close(fd)
                return os.waitstatus_to_exitcode(status), got.decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), got.decode(errors="replace")


LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local ctx = { domain = arg[2], destination = arg[3] ~= '' and arg[3] or nil }
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = arg[1] }, ctx)
if v then io.write('OK ', v) else io.write('ERR ', tostring(code), ' ', tostring(msg)) end
"""


def resolve(vd, path, domain, dest=""):
    script = os.path.join(vd.workdir, "resolve.lua")
    with open(script, "w") as f:
        f.write(LUA)
    e = env_for(vd)
    del e["VKS_AUDIT_FILE"]
    p = subprocess.run(["lua5.4", script, path, domain, dest], capture_output=True, timeout=60, env=e)
    OUTPUTS.append(p.stderr.decode(errors="replace"))
    kind, _, rest = p.stdout.decode(errors="replace").partition(" ")
    return kind, rest


CREDS = [  # name, username, extra create args, restrict calls (each one new version)
    ("example.com", "relay1@example.com", ["--domain", "example.com", "--ip", "192.0.2.10"],
     [["--domain", "*.example.com"], ["--ip", "10.1.0.0/16"]]),
    ("acme/mail.acme.test", "acme-relay", ["--all-domains", "--tenant", "acme", "--owner", "ops"], []),
    ("globex.test", "globex", ["--domain", "globex.test"], [["--all-ips"]]),
]


def populate(vd):
    pws = {}
    for name, user, extra, restricts in CREDS:
        rc, out, err = vks(vd, "cred", "create", name, "--username", user, *extra, keep_stdout=True)
        T.eq(rc, 0, "cred create %s" % name)
        pws[name] = out.strip()
        SECRETS.append(pws[name])
        for r in restricts:
            rc, _, err = vks(vd, "cred", "restrict", name, *r)
            T.eq(rc, 0, "cred restrict %s %s" % (name, r[0]))
    # an unmanaged secret: 6 versions, max_versions 4 (1 and 2 pruned), 4 destroyed, 6 deleted
    vd.call("POST", "/v1/secret/metadata/smtp-auth/legacy/plain", {"max_versions": 4})
    for i in range(6):
        vd.kv2_put("smtp-auth/legacy/plain", {"key": UNMANAGED + str(i), "note": "v%d" % (i + 1)})
    vd.kv2_destroy("smtp-auth/legacy/plain", [4])
    vd.call("POST", "/v1/secret/delete/smtp-auth/legacy/plain", {"versions": [6]})
    SECRETS.extend(UNMANAGED + str(i) for i in range(6))
    # the mount's default max_versions (0: Vault keeps 10): versions 1-2 of 12 pruned
    for i in range(12):
        vd.kv2_put("smtp-auth/legacy/many", {"n": str(i + 1)})
    return pws


def metadata(vd, path):
    st, m = vd.call("GET", "/v1/secret/metadata/" + path)
    d = m["data"]
    vs = {k: (bool(v["deletion_time"]), v["destroyed"]) for k, v in d["versions"].items()}
    return d["current_version"], d["max_versions"], d["cas_required"], d["custom_metadata"], vs


def data_of(vd, path, v):
    st, j = vd.kv2_get(path, version=v)
    return st, (j or {}).get("data", {}).get("data")


def writes(vd):
    c = vd.counters("/v1/secret/")
    return sum(n for k, n in c.items() if not k.startswith(("GET ", "LIST ")))


def fresh_target():
    return VaultDev()


def restore(src, tgt, bundle, *key, extra=()):
    return vks(src, "backup", "restore", bundle, *key, "--into", tgt.addr, *extra,
               env=env_for(src, VAULT_CACERT=tgt.cacert))


def test_create_verify(vd, pws, d):
    kf = os.path.join(d, "id.txt")
    subprocess.run(["age-keygen", "-o", kf], capture_output=True, check=True)
    pub = subprocess.run(["age-keygen", "-y", kf], capture_output=True, check=True).stdout.decode().strip()
    bundle = os.path.join(d, "b1.age")
    rc, out, err = vks(vd, "backup", "create", "--recipient", pub, "-o", bundle, "--json")
    T.eq(rc, 0, "backup create --recipient exits 0")
    j = json.loads(out)
    T.eq((j["secrets"], j["managed"]), (5, 3), "5 secrets under the prefix, 3 managed")
    T.eq((j["live"], j["deleted"], j["destroyed"]), (6 + 2 + 10, 1, 1), "live, deleted and destroyed versions counted")
    T.ok("create: 5/5 secrets" in err, "a progress line", err)
    T.eq(os.stat(bundle).st_mode & 0o777, 0o600, "the bundle is written with mode 0600")
    T.ok(not [f for f in os.listdir(d) if ".tmp-" in f], "no temporary file left")
    p = subprocess.run(["age", "-d", "-i", kf, bundle], capture_output=True)
    T.eq(p.returncode, 0, "Debian's age -d -i opens our bundle")
    doc = json.loads(p.stdout)
    T.eq((doc["format"], doc["version"], len(doc["secrets"])), ("vks-backup", 1, 5), "a vks-backup v1 document")
    T.ok(all(pw not in p.stdout.decode() for pw in pws.values()), "no managed password in the bundle: envelopes")
    T.ok(all(v["data"]["key"].startswith("ENC:v2:") for s in doc["secrets"] if s["custom_metadata"]
             and "vks_cred" in s["custom_metadata"] for v in s["versions"]), "ENC: values stay envelopes")
    rc, out, err = vks(vd, "backup", "create", "--recipient", pub, "-o", bundle)
    T.ok(rc == 1 and "exists" in err, "an existing output file is not replaced (exit 1)", err)
    # verify: counts, digests and the same fingerprints as `vks cred show`
    rc, out, err = vks(vd, "backup", "verify", bundle, "-i", kf, "--json")
    T.eq(rc, 0, "verify exits 0")
    v = json.loads(out)
    T.eq(v["counts"]["secrets"], 5, "verify counts 5 secrets")
    fps = {s["path"]: s["fingerprint"] for s in v["secrets"]}
    for name in pws:
        rc, out, _ = vks(vd, "cred", "show", name, "--json")
        T.eq(fps.get("smtp-auth/" + name), json.loads(out)["fingerprint"],
             "verify's fingerprint of %s is cred show's" % name)
    plain = [s for s in v["secrets"] if s["path"] == "smtp-auth/legacy/plain"][0]
    T.ok(plain["fingerprint"] is None and plain["envelope_sha256_128"] is None,
         "the unmanaged secret's latest version is deleted: nothing to digest")
    rc, out, err = vks(vd, "backup", "verify", bundle, "-i", kf)
    T.ok(rc == 0 and "sealed bundle OK" in out and "5 secrets (3 managed)" in out, "verify's text report", out)
    e = env_for(vd)
    del e["VKS_ENCRYPTION_KEY"]
    rc, out, err = vks(vd, "backup", "verify", bundle, "-i", kf, "--json", env=e)
    T.ok(rc == 0 and all(s["fingerprint"] is None for s in json.loads(out)["secrets"]),
         "without the envelope key verify still checks the seal, without fingerprints (two duties)")
    return bundle, kf, pub, doc


def test_restore(vd, pws, bundle, kf):
    with fresh_target() as tgt:
        rc, out, err = restore(vd, tgt, bundle, "-i", kf, extra=("--json",))
        T.eq(rc, 0, "restore into a fresh vault-dev exits 0")
        j = json.loads(out) if rc == 0 else {}
        T.eq(j.get("secrets"), 5, "5 secrets restored")
        for name in pws:
            path = "smtp-auth/" + name
            a, b = metadata(vd, path), metadata(tgt, path)
            T.eq(b[:2], a[:2], "%s: same current_version and max_versions" % name)
            T.eq(b[3], a[3], "%s: same custom_metadata (restrictions, state, rev)" % name)
            T.eq(b[4], a[4], "%s: same version history" % name)
            T.ok(b[2] is True, "%s: cas_required kept" % name)
            for ver in range(1, a[0] + 1):
                T.eq(data_of(tgt, path, ver), data_of(vd, path, ver), "%s v%d: same stored data" % (name, ver))
            dom = {"example.com": "mx.example.com", "acme/mail.acme.test": "any.org", "globex.test": "globex.test"}
            kind, val = resolve(tgt, path, dom[name], "10.1.2.3:25")
            T.ok(kind == "OK" and val == pws[name], "%s resolves to the same password in the target" % name,
                 val.split(" ")[0] if kind != "OK" else "a different value")
            kind, val = resolve(tgt, path, "elsewhere.invalid", "10.1.2.3:25")
            T.ok(kind == "ERR" or name == "acme/mail.acme.test", "%s: its domain restriction holds in the target"
                 % name)
            rc, o1, _ = vks(vd, "cred", "show", name, "--json")
            rc2, o2, _ = vks(tgt, "cred", "show", name, "--json")
            T.ok(rc == rc2 == 0 and json.loads(o1)["fingerprint"] == json.loads(o2)["fingerprint"] != "",
                 "%s: cred show gives the same fingerprint on both" % name)
        a, b = metadata(vd, "smtp-auth/legacy/plain"), metadata(tgt, "smtp-auth/legacy/plain")
        T.eq((b[0], b[1], b[4]), (a[0], a[1], a[4]), "unmanaged: versions 3-6, 4 destroyed, 6 deleted, 1-2 pruned")
        T.eq(data_of(tgt, "smtp-auth/legacy/plain", 5), data_of(vd, "smtp-auth/legacy/plain", 5),
             "unmanaged: a live version's data restored")
        T.eq(data_of(tgt, "smtp-auth/legacy/plain", 4)[0], 404, "unmanaged: a destroyed version is not readable")
        a, b = metadata(vd, "smtp-auth/legacy/many"), metadata(tgt, "smtp-auth/legacy/many")
        T.eq((b[0], b[1], b[4]), (a[0], a[1], a[4]), "default max_versions: versions 3-12, as in the source")
        T.eq(data_of(tgt, "smtp-auth/legacy/many", 12), data_of(vd, "smtp-auth/legacy/many", 12),
             "default max_versions: the latest data restored")
        # a second restore into the same (now non-empty) target: refused, nothing written
        tgt.reset_counters()
        rc, out, err = restore(vd, tgt, bundle, "-i", kf)
        T.ok(rc == 2 and "not empty" in err and "nothing was written" in err, "a non-empty target: exit 2", err)
        T.eq(writes(tgt), 0, "no write request to the non-empty target")
        with open(os.path.join(vd.workdir, "audit.log")) as f:
            ev = [json.loads(x) for x in f if '"backup.' in x]
        T.ok(any(e["type"] == "backup.create" and e["result"] == "success" and e["operator"] for e in ev),
             "a backup.create event with the operator")
        T.ok(any(e["type"] == "backup.restore" and e["result"] == "success" for e in ev), "a backup.restore event")
        T.ok(any(e["type"] == "backup.restore" and e["code"] == "exists" for e in ev), "the refusal is audited")
        rc, out, err = vks(vd, "audit", "verify", os.path.join(vd.workdir, "audit.log"))
        T.eq(rc, 0, "vks audit verify accepts the trail with backup events")


def refused(vd, bundle, key, name, want_rc, want_msg):
    with fresh_target() as tgt:
        rc, out, err = restore(vd, tgt, bundle, *key)
        T.ok(rc == want_rc and want_msg in err, "%s: restore refused (exit %d)" % (name, want_rc), err)
        T.eq(writes(tgt), 0, "%s: nothing written to the target" % name)
        T.eq(len(tgt.counters("/v1/secret/")), 0, "%s: not one request to the target's mount" % name)
    rc, out, err = vks(vd, "backup", "verify", bundle, *key)
    T.ok(rc == want_rc and want_msg in err, "%s: verify refuses it too" % name, err)


def test_refusals(vd, bundle, kf, d, doc):
    raw = open(bundle, "rb").read()
    tampered = os.path.join(d, "tampered.age")
    b = bytearray(raw)
    b[len(b) // 2 + 40] ^= 0x01
    open(tampered, "wb").write(bytes(b))
    refused(vd, tampered, ["-i", kf], "a tampered bundle", 1, "does not authenticate")
    trunc = os.path.join(d, "truncated.age")
    open(trunc, "wb").write(raw[:-100])
    refused(vd, trunc, ["-i", kf], "a truncated bundle", 1, "modified or truncated")
    hdr = os.path.join(d, "hdr.age")
    open(hdr, "wb").write(raw.replace(b"X25519 ", b"X25519 A", 1)[: raw.index(b"\n---") + 30])
    refused(vd, hdr, ["-i", kf], "a damaged header", 1, "age header")
    foreign = os.path.join(d, "foreign.bin")
    open(foreign, "wb").write(os.urandom(3000))
    refused(vd, foreign, ["-i", kf], "a file that is not age", 1, "not an age file")
    other = os.path.join(d, "other.age")
    pub = subprocess.run(["age-keygen", "-y", kf], capture_output=True).stdout.decode().strip()
    subprocess.run(["age", "-r", pub, "-o", other], input=b'{"hello":"world"}\n', check=True)
    refused(vd, other, ["-i", kf], "an age file of something else", 1, "not a vks backup bundle")
    k2 = os.path.join(d, "id2.txt")
    subprocess.run(["age-keygen", "-o", k2], capture_output=True, check=True)
    refused(vd, bundle, ["-i", k2], "the wrong identity", 1, "no identity matches")
    pf = os.path.join(d, "pass.txt")
    open(pf, "w").write(PASSPHRASE + "\n")
    refused(vd, bundle, ["--passphrase-file", pf], "a passphrase for a recipient bundle", 1, "identity")
    # a bundle whose document is altered consistently (re-sealed by age: authentic, but not ours)
    bad = dict(doc)
    bad["secrets"] = [dict(doc["secrets"][0], path="../etc")]
    alt = os.path.join(d, "alt.age")
    subprocess.run(["age", "-r", pub, "-o", alt], input=json.dumps(bad).encode(), check=True)
    refused(vd, alt, ["-i", kf], "a bundle with a bad path", 1, "secret 1: path")
    rc, out, err = vks(vd, "backup", "verify", bundle)
    T.ok(rc == 1 and "exactly one of" in err, "verify without a key: exit 1", err)
    rc, out, err = vks(vd, "backup", "create", "-o", os.path.join(d, "x.age"), "--recipient", "age1nope")
    T.ok(rc == 1 and "--recipient" in err, "a bad recipient is named (exit 1)", err)


def test_passphrase_interop(vd, d):
    pf = os.path.join(d, "pass.txt")
    open(pf, "w").write(PASSPHRASE + "\n")
    ours = os.path.join(d, "pass.age")
    rc, out, err = vks(vd, "backup", "create", "--passphrase-file", pf, "-o", ours)
    T.eq(rc, 0, "backup create --passphrase-file exits 0")
    dec = os.path.join(d, "pass.json")
    rc, term = age_pty(["-d", "-o", dec, ours], PASSPHRASE, False)
    T.ok(rc == 0 and os.path.exists(dec) and json.load(open(dec))["format"] == "vks-backup",
         "Debian's age -d opens our passphrase bundle (passphrase typed on a pty)", term[-200:])
    wrong = os.path.join(d, "wrong.txt")
    open(wrong, "w").write(PASSPHRASE + "x\n")
    refused(vd, ours, ["--passphrase-file", wrong], "a wrong passphrase", 1, "wrong passphrase")
    theirs = os.path.join(d, "theirs-p.age")
    rc, term = age_pty(["-p", "-o", theirs, dec], PASSPHRASE, True)
    T.ok(rc == 0 and os.path.exists(theirs), "age -p sealed the document (passphrase typed on a pty)", term[-200:])
    rc, out, err = vks(vd, "backup", "verify", theirs, "--passphrase-file", pf, "--json")
    T.ok(rc == 0 and json.loads(out)["counts"]["secrets"] == 5, "we open a bundle sealed by age -p", err)
    with fresh_target() as tgt:
        rc, out, err = restore(vd, tgt, theirs, "--passphrase-file", pf)
        T.eq(rc, 0, "a bundle sealed by age -p restores")
        T.eq(metadata(tgt, "smtp-auth/example.com")[4], metadata(vd, "smtp-auth/example.com")[4],
             "with its version history")
    os.unlink(dec)


def test_age_recipient_interop(vd, d, kf, pub, doc):
    theirs = os.path.join(d, "theirs-r.age")
    subprocess.run(["age", "-r", pub, "-o", theirs], input=json.dumps(doc).encode(), check=True)
    rc, out, err = vks(vd, "backup", "verify", theirs, "-i", kf, "--json")
    T.ok(rc == 0 and json.loads(out)["counts"]["secrets"] == 5, "we open a bundle sealed by age -r", err)


def test_full_disk(vd, d):
    for i in range(8):  # about 100 KiB of data under another prefix
        vd.kv2_put("filler/f%d" % i, {"blob": "%02d" % i * 6000})
    mnt = os.path.join(d, "small")
    os.mkdir(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt], capture_output=True)
    if m.returncode != 0:
        T.ok(False, "mount a 16 KiB tmpfs (the test runs as root)", m.stderr.decode())
        return
    try:
        pf = os.path.join(d, "pass.txt")
        out_file = os.path.join(mnt, "full.age")
        rc, out, err = vks(vd, "backup", "create", "--prefix", "filler/", "--passphrase-file", pf, "-o", out_file)
        T.ok(rc == 1 and "No space left on device" in err, "a full disk: exit 1 with a clear error", err)
        T.eq(os.listdir(mnt), [], "no bundle, partial or temporary, is left on the full disk")
        rc, out, err = vks(vd, "backup", "create", "--prefix", "filler/", "--passphrase-file", pf, "-o",
                           os.path.join(d, "filler.age"))
        T.eq(rc, 0, "the same backup fits elsewhere")
    finally:
        subprocess.run(["umount", mnt])


def test_policy_and_schedule(vd, d, pub):
    """policy-examples/backup-reader.hcl is enough for create (and nothing more); the ExecStart and
    ExecStartPost lines of policy-examples/vks-backup.service, run as written (with this build's
    vks), write dated bundles and keep the newest 30."""
    ex = os.path.join(ROOT, "policy-examples")
    vd.policy("backup-reader", open(os.path.join(ex, "backup-reader.hcl")).read())
    tok = vd.create_token(policies=["backup-reader"], display_name="backup-bot")
    rc, out, err = vks(vd, "backup", "create", "--recipient", pub, "-o", os.path.join(d, "reader.age"), "--json",
                       env=env_for(vd, VAULT_TOKEN=tok))
    T.ok(rc == 0 and json.loads(out)["secrets"] == 5, "backup-reader may create a backup", err)
    with fresh_target() as tgt:
        tgt.policy("backup-reader", open(os.path.join(ex, "backup-reader.hcl")).read())
        tok2 = tgt.create_token(policies=["backup-reader"])
        kf = os.path.join(d, "id.txt")
        rc, out, err = vks(vd, "backup", "restore", os.path.join(d, "reader.age"), "-i", kf, "--into", tgt.addr,
                           env=env_for(vd, VAULT_CACERT=tgt.cacert, VAULT_TOKEN=tok2))
        T.ok(rc == 2 and "permission denied" in err, "backup-reader may not restore (exit 2)", err)
    unit = open(os.path.join(ex, "vks-backup.service")).read()
    lines = {k: v for k, _, v in (x.partition("=") for x in unit.splitlines() if x.startswith("ExecStart"))}
    state = os.path.join(d, "state")
    os.mkdir(state)
    rfile = os.path.join(d, "recipients.txt")
    open(rfile, "w").write("# restore team\n%s\n" % pub)
    for i in range(32):
        open(os.path.join(state, "vks-backup-2026010%02dT000000Z.age" % i), "w").close()
        os.utime(os.path.join(state, "vks-backup-2026010%02dT000000Z.age" % i), (1000 + i, 1000 + i))
    e = env_for(vd, VAULT_TOKEN=tok, STATE_DIRECTORY=state)
    for key in ("ExecStart", "ExecStartPost"):
        cmd = lines[key].replace("/usr/bin/vks", VKS).replace("/etc/vault-keysource/backup-recipients.txt", rfile)
        cmd = cmd.replace("%%", "%")
        p = subprocess.run(["/bin/sh", "-c", cmd.split("'", 1)[1].rsplit("'", 1)[0]], env=e, capture_output=True)
        OUTPUTS.append(p.stderr.decode(errors="replace"))
        T.eq(p.returncode, 0, "vks-backup.service %s runs" % key)
    kept = sorted(os.listdir(state))
    T.eq(len(kept), 30, "retention keeps the newest 30 bundles")
    T.ok(any(k.startswith("vks-backup-2026") and os.path.getsize(os.path.join(state, k)) > 0 for k in kept)
         and "vks-backup-202601000T000000Z.age" not in kept, "the new dated bundle is kept, the oldest removed")


def test_no_secret_anywhere(vd):
    logs = open(os.path.join(vd.workdir, "audit.log")).read()
    leaks = [s for s in SECRETS for o in OUTPUTS + [logs] if s in o]
    T.ok(not leaks, "no password or passphrase in any output or audit line", "%d hit(s)" % len(leaks))


def main():
    d = os.path.join(WORK, "backup90-%d" % os.getpid())
    os.makedirs(d)
    with VaultDev() as vd:
        try:
            pws = populate(vd)
            bundle, kf, pub, doc = test_create_verify(vd, pws, d)
            T.run(test_restore, vd, pws, bundle, kf)
            T.run(test_refusals, vd, bundle, kf, d, doc)
            T.run(test_passphrase_interop, vd, d)
            T.run(test_age_recipient_interop, vd, d, kf, pub, doc)
            T.run(test_full_disk, vd, d)
            T.run(test_policy_and_schedule, vd, d, pub)
            T.run(test_no_secret_anywhere, vd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    shutil.rmtree(d, ignore_errors=True)
    sys.exit(T.finish())


main()
