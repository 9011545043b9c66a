"""vks rekey against build/vault-dev over HTTPS (issue 13, bulk key rotation):
 * a mixed tree (nested folders; credentials from `vks cred create` under the old key k1; one
   already under the new key k2; a legacy genro envelope under key 'default'; plaintext, non-string
   and multi-field secrets; a credential with a rotation in flight and its pending record):
   --dry-run counts and writes nothing; the run re-keys every envelope to k2 bound to the same
   place, leaves the rest alone, records key_id in the credentials' metadata, skips the rotating
   one (exit 3) and finishes it on the rerun after the rotation ended; the verify pass says 0 left;
 * a looping resolver (Lua module, keyring k2+k1+default) resolves every credential all through
   the runs and never fails or sees another password;
 * kill drills (VKS_REKEY_STOP_AFTER list/read/data/meta, exit 137) at several points: every
   value still decrypts, and the rerun finishes without redoing work (one new version per secret);
 * a concurrent edit between the read and the write: the check-and-set is lost, re-read and
   retried, and the edit is kept (re-keyed);
 * hostile trees: metadata only, latest deleted, destroyed, unknown key id, tampered envelope,
   non-string values, 18 folders deep, a 503 from Vault mid-run: per-item errors naming the
   path, exit 3, nothing changed for them, the good values re-keyed, the rerun completes;
 * a 503 on a read, on the PATCH and on a credential's metadata write (a half-written credential
   the rerun completes); a credential whose metadata lags its data is left alone, named;
 * --max-secrets refuses a too-wide prefix before any write; a 1,500-secret folder works;
   policy-examples/rekey-operator.hcl is enough and a token without patch writes nothing;
 * the terminal: a progress bar updated in place, the confirmation prompt; plain progress lines
   otherwise; usage errors and exit codes 0/1/2/3;
 * --json shape; rekey.run and cred.rekey audit events (operator, target, counts), listed by
   vks audit report; the chain verifies; no secret in any output."""
import base64
import json
import os
import subprocess
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from credtest import Cred, set_meta  # noqa: E402

T = Checks()
# listed in tests/test-secrets.d/rekey.txt
RAW = {"k1": b"rekey89-k1-old-key-TEST-01234567", "k2": b"rekey89-k2-new-key-TEST-01234567",
       "default": b"rekey89-kd-dflt-key-TEST-0123456", "k9": b"rekey89-k9-unknown-TEST-0123456x"}
B64 = {k: base64.b64encode(v).decode() for k, v in RAW.items()}
AUDIT_KEY = "cmVrZXk4OS1hdWRpdC1rZXktVEVTVC0wMTIzNDU2Nzg="
PLAIN = "rekey89-plain-value-TEST-5f1a"
LEGACY_PW = "rekey89-legacy-pw-TEST-3c9d"
OTHER_PW = "rekey89-other-field-TEST-aa01"
EDITED_PW = "rekey89-edited-pw-TEST-77aa"
PENDING_PW = "rekey89-pending-pw-TEST-0b1c"
GOOD_PW = "rekey89-good-pw-TEST-19ef"
OLD_RING = "k1:%s" % B64["k1"]
RING = "k2:%s,k1:%s" % (B64["k2"], B64["k1"])  # plus VKS_ENCRYPTION_KEY = 'default'


def aad(kid, mount, path, key):
    f = lambda s: len(s.encode()).to_bytes(4, "big") + s.encode()  # noqa: E731
    return b"vks-envelope\x00\x02" + f(kid) + f(mount.strip("/")) + f(path.strip("/")) + f(key)


def enc(kid, path, key, plain, mount="secret"):
    n = os.urandom(12)
    ct = AESGCM(RAW[kid]).encrypt(n, plain.encode(), aad(kid, mount, path, key))
    return "ENC:v2:%s:%s" % (kid, base64.b64encode(n + ct).decode())


def enc_legacy(kid, plain):
    n = os.urandom(12)
    return "ENC:" + base64.b64encode(n + AESGCM(RAW[kid]).encrypt(n, plain.encode(), None)).decode()


def dec(value, path, key, mount="secret"):
    """(key id, plaintext) of an envelope, or (None, None)."""
    try:
        if value.startswith("ENC:v2:"):
            kid, b = value[7:].split(":", 1)
            raw = base64.b64decode(b)
            return kid, AESGCM(RAW[kid]).decrypt(raw[:12], raw[12:], aad(kid, mount, path, key)).decode()
        raw = base64.b64decode(value[4:])
        for kid in ("default", "k1", "k2"):
            try:
                return "legacy", AESGCM(RAW[kid]).decrypt(raw[:12], raw[12:], None).decode()
            except Exception:  # noqa: BLE001
                pass
    except Exception:  # noqa: BLE001
        pass
    return None, None


def data(vd, path):
    st, j = vd.call("GET", "/v1/secret/data/" + path)
    return (j["data"]["data"], j["data"]["metadata"]["version"]) if st == 200 else (None, st)


def meta(vd, path):
    st, j = vd.call("GET", "/v1/secret/metadata/" + path)
    return j["data"] if st == 200 else None


def rekey(C, *args, **env):
    return C.vks("rekey", "--to", "k2", "--yes", *args, VKS_ENCRYPTION_KEYS=RING, **env)


def rekey_json(C, *args, **env):
    rc, out, err = rekey(C, "--json", *args, **env)
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, None, err + out


def create(C, name, ring=OLD_RING):
    rc, out, err = C.vks("cred", "create", name, "--username", "u-" + name.replace("/", "-"), "--all-domains",
                         keep_stdout=True, VKS_ENCRYPTION_KEYS=ring)
    assert rc == 0, err
    pw = out.split("password:")[-1].strip().split()[0] if "password:" in out else out.strip().splitlines()[-1]
    return C.secret(pw)


# ---------------------------------------------------------------- the looping resolver

LOOP_LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local want = {}
for p, v in string.gmatch(os.getenv('REKEY_EXPECT'), '([^=;]+)=([^;]+)') do want[p] = v end
local ok, bad, wrong, first = 0, 0, 0, ''
local stop = os.getenv('REKEY_STOP')
while true do
  for p, v in pairs(want) do
    local got, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = p }, {})
    if not got then bad = bad + 1; if first == '' then first = p .. ': ' .. tostring(code) .. ' ' .. tostring(msg) end
    elseif got ~= v then wrong = wrong + 1; if first == '' then first = p .. ': another value' end
    else ok = ok + 1 end
  end
  local f = io.open(stop, 'r')
  if f then f:close(); break end
end
io.write(string.format('ok=%d bad=%d wrong=%d first=%s\n', ok, bad, wrong, first))
"""


def start_loop(C, vd, expect):
    script = os.path.join(vd.workdir, "loop.lua")
    with open(script, "w") as f:
        f.write(LOOP_LUA)
    stop = os.path.join(vd.workdir, "loop.stop")
    if os.path.exists(stop):
        os.unlink(stop)
    e = C.env(VKS_ENCRYPTION_KEYS=RING, REKEY_EXPECT=";".join("%s=%s" % kv for kv in expect.items()),
              REKEY_STOP=stop)
    del e["VKS_AUDIT_FILE"]
    return subprocess.Popen(["lua5.4", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e), stop


def stop_loop(C, p, stop):
    open(stop, "w").close()
    out, err = p.communicate(timeout=60)
    C.outputs.append(err.decode(errors="replace"))
    return out.decode(errors="replace").strip()


# ---------------------------------------------------------------- the mixed tree

def seed_mixed(C, vd):
    pw = {}
    for name in ("a.example", "t1/b.example", "t1/deep/c.example", "rot.example"):
        pw["smtp-auth/" + name] = create(C, name)
    pw["smtp-auth/new.example"] = create(C, "new.example", ring=RING)
    vd.kv2_put("smtp-auth/plain.example", {"key": PLAIN, "username": "p"})
    vd.kv2_put("smtp-auth/t1/legacy.example", {"key": enc_legacy("default", LEGACY_PW), "port": 587})
    vd.kv2_put("smtp-auth/multi.example", {"key": enc("k1", "smtp-auth/multi.example", "key", LEGACY_PW),
                                           "other": enc("k1", "smtp-auth/multi.example", "other", OTHER_PW),
                                           "note": "hello", "nested": {"x": "ENC:not-looked-into"}})
    # a rotation in flight (as a killed `vks cred rotate` leaves it): state rotating + pending record
    set_meta(vd, "rot.example", state="rotating", rotation_id="0b7c1e4a-9d7e-4c1b-8f00-89aa00000001",
             rotation_started="2026-12-04T05:00:00Z")
    vd.kv2_put("vks-rotation/smtp-auth/rot.example",
               {"pending_key": enc("k1", "vks-rotation/smtp-auth/rot.example", "pending_key", PENDING_PW),
                "rotation_id": "0b7c1e4a-9d7e-4c1b-8f00-89aa00000001", "step": "create", "base_version": "2"})
    return pw


def versions(vd, paths):
    return {p: (meta(vd, p) or {}).get("current_version") for p in paths}


def test_mixed(C, vd):
    pw = seed_mixed(C, vd)
    paths = list(pw) + ["smtp-auth/plain.example", "smtp-auth/t1/legacy.example", "smtp-auth/multi.example"]
    before = versions(vd, paths)
    new_env = data(vd, "smtp-auth/new.example")[0]["key"]
    n_audit = len(C.audit_lines())

    rc, j, err = rekey_json(C, "--dry-run")
    T.eq(rc, 3, "dry run: exit 3 (a rotation in flight is reported)")
    T.ok(j and j["dry_run"] and j["values"]["rekeyed"] == 6 and j["values"]["current"] == 1,
         "dry run counts 6 values to re-key (3 credentials, legacy, 2 fields) and 1 already under k2",
         j and j["values"])
    T.eq(versions(vd, paths), before, "dry run wrote nothing (every version unchanged)")
    T.eq(len(C.audit_lines()), n_audit, "dry run writes no audit event")

    loop, stop = start_loop(C, vd, {p: v for p, v in pw.items()})
    time.sleep(0.5)
    rc, j, err = rekey_json(C)
    T.eq(rc, 3, "run: exit 3 while a rotation is in flight")
    T.ok(j is not None and j["result"] == "partial" and j["rotation_in_flight"] == 1 and
         any(e["path"] == "smtp-auth/rot.example" and "rotation is in flight" in e["message"] for e in j["errors"]),
         "the rotating credential is skipped and named", j and j["errors"])
    T.ok(j and j["values"] == {"rekeyed": 6, "current": 1, "plaintext": 7, "not_string": 2},
         "values: 6 re-keyed, 1 current, 7 plaintext (usernames, note, the plaintext secret), 2 not strings",
         j and j["values"])
    T.ok(j and j["verify"]["values_left"] == 1 and j["verify"]["left_by_key"] == {"k1": 1},
         "verify: 1 value left under k1 (the rotating credential)", j and j["verify"])
    for key in ("mount", "prefix", "to", "dry_run", "result", "secrets", "secrets_changed", "credentials_changed",
                "values", "no_live_version", "rotation_in_flight", "cas_retries", "metadata_repaired", "failed",
                "errors", "requests", "requests_per_secret", "seconds", "verify"):
        T.ok(j is not None and key in j, "--json has %s" % key)

    # the rotation ends (as --abort does: pending record removed, state active); the rerun finishes
    vd.call("DELETE", "/v1/secret/metadata/vks-rotation/smtp-auth/rot.example")
    set_meta(vd, "rot.example", state="active", rotation_id=None, rotation_started=None)
    rc, j, err = rekey_json(C)
    T.eq(rc, 0, "rerun after the rotation ended: exit 0")
    T.ok(j and j["values"]["rekeyed"] == 1 and j["values"]["current"] == 7 and j["verify"]["values_left"] == 0,
         "rerun re-keys only the one left; verify: 0 left", j and (j["values"], j["verify"]))
    res = stop_loop(C, loop, stop)
    T.ok(res.startswith("ok=") and " bad=0 wrong=0 " in res + " " and int(res.split()[0][3:]) > 0,
         "the looping resolver never failed and never saw another password during the runs", res)

    for p, v in pw.items():
        d, ver = data(vd, p)
        kid, plain = dec(d["key"], p, "key")
        T.ok(kid == "k2" and plain == v, "%s: under k2, same password" % p, kid)
        m = meta(vd, p)
        cm = m["custom_metadata"]
        T.ok(cm.get("key_id") == "k2" and cm["rev"] == str(m["current_version"]) == cm["current_version"],
             "%s: metadata key_id k2, rev and current_version follow the new version" % p, cm)
    d, _ = data(vd, "smtp-auth/multi.example")
    T.ok(dec(d["other"], "smtp-auth/multi.example", "other") == ("k2", OTHER_PW) and d["note"] == "hello" and
         d["nested"] == {"x": "ENC:not-looked-into"}, "multi-field secret: both envelopes re-keyed at their own "
         "field, the rest unchanged")
    d, _ = data(vd, "smtp-auth/t1/legacy.example")
    T.ok(dec(d["key"], "smtp-auth/t1/legacy.example", "key") == ("k2", LEGACY_PW) and d["port"] == 587,
         "legacy genro envelope upgraded to v2 under k2; the number kept")
    T.eq(data(vd, "smtp-auth/plain.example")[0], {"key": PLAIN, "username": "p"}, "plaintext secret untouched")
    T.ok(data(vd, "smtp-auth/new.example")[0]["key"] == new_env and
         data(vd, "smtp-auth/new.example")[1] == before["smtp-auth/new.example"] + 1,
         "the credential already under k2 keeps its envelope byte for byte (one version bump to record key_id)")
    kind, val = C.resolve("smtp-auth/a.example")
    T.ok(kind == "ERR", "sanity: without k2 in the keyring the re-keyed value does not resolve", kind)

    ev = C.audit_lines()
    runs = [x for x in ev if x.get("type") == "rekey.run"]
    T.ok(len(runs) == 2 and runs[0]["result"] != "success" and runs[1]["result"] == "success" and
         "to=k2" in runs[1]["detail"] and runs[1]["operator"] and runs[1]["path"] == "smtp-auth/",
         "one rekey.run event per run (operator, target, prefix, counts)", runs[-1:] if runs else ev[-2:])
    per = [x for x in ev if x.get("type") == "cred.rekey"]
    T.eq(sorted(x["path"] for x in per), sorted(pw), "one cred.rekey event per credential written")
    ok, why = C.audit_verify()
    T.ok(ok, "audit chain verifies", why)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    rc, out, err = C.vks("audit", "report", "--from", day, "--to", day, "--json", C.audit_file)
    T.ok(rc == 0 and '"rekey.run"' in out and '"cred.rekey"' in out,
         "vks audit report lists the rekey.run and cred.rekey acts", (rc, err[-200:]))


# ---------------------------------------------------------------- kill drills

def test_drills(C, vd):
    for spec in ("list", "read:2", "data:1", "data:2", "meta:1", "meta:3"):
        pre = "drill-%s/" % spec.replace(":", "-")
        pw = {pre + n: create_in(C, pre, n) for n in ("x1", "f/x2", "x3")}
        before = versions(vd, pw)
        rc, out, err = rekey(C, "--prefix", pre, VKS_REKEY_STOP_AFTER=spec)
        T.eq(rc, 137, "%s: killed" % spec)
        T.ok(all(dec(data(vd, p)[0]["key"], p, "key")[1] == v for p, v in pw.items()),
             "%s: after the kill every value still decrypts to its password" % spec)
        rc, j, err = rekey_json(C, "--prefix", pre)
        T.ok(rc == 0 and j["verify"]["values_left"] == 0, "%s: the rerun completes, 0 left" % spec, (rc, err[-300:]))
        done = {"list": 0, "read:2": 1, "data:1": 1, "data:2": 2, "meta:1": 1, "meta:3": 3}[spec]
        T.ok(j and j["values"]["rekeyed"] == 3 - done and j["values"]["current"] == done and
             j["metadata_repaired"] == (1 if spec.startswith("data") else 0),
             "%s: the rerun re-keys only what was left (%d) and repairs a cut metadata write" % (spec, 3 - done),
             j and (j["values"], j["metadata_repaired"]))
        after = versions(vd, pw)
        T.ok(all(after[p] == before[p] + 1 for p in pw) or spec.startswith("data"),
             "%s: one new version per credential (no work redone)" % spec, (before, after))
        if spec.startswith("data"):  # the cut one got a second (value-preserving) version for its metadata
            T.eq(sorted(after[p] - before[p] for p in pw), sorted([1, 1, 2]), "%s: the repaired one got one "
                 "version bump for its metadata, the others one" % spec)
        T.ok(all(dec(data(vd, p)[0]["key"], p, "key") == ("k2", v) for p, v in pw.items()) and
             all(meta(vd, p)["custom_metadata"].get("key_id") == "k2" for p in pw),
             "%s: every value under k2 with its own password, key_id recorded" % spec)


def create_in(C, prefix, name):
    rc, out, err = C.vks("cred", "create", name, "--prefix", prefix, "--username",
                         "u-%s-%s" % (prefix.strip("/"), name.replace("/", "-")), "--all-domains",
                         keep_stdout=True, VKS_ENCRYPTION_KEYS=OLD_RING)
    assert rc == 0, err
    pw = out.split("password:")[-1].strip().split()[0] if "password:" in out else out.strip().splitlines()[-1]
    return C.secret(pw)


# ---------------------------------------------------------------- a concurrent edit

def test_race(C, vd):
    p = "race/u1"
    vd.kv2_put(p, {"key": enc("k1", p, "key", GOOD_PW)})
    pause = os.path.join(vd.workdir, "race.go")
    proc = subprocess.Popen([os.path.join(os.environ["ROOT"], os.environ.get("BUILD", "build"), "vks"), "rekey",
                             "--to", "k2", "--yes", "--json", "--prefix", "race/"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=C.env(VKS_ENCRYPTION_KEYS=RING, VKS_REKEY_PAUSE_FILE=pause))
    line = proc.stderr.readline().decode()
    T.ok("paused" in line, "the run paused between its read and its write", line)
    vd.kv2_put(p, {"key": enc("k1", p, "key", EDITED_PW), "username": "edited"}, cas=1)
    open(pause, "w").close()
    out, err = proc.communicate(timeout=60)
    C.outputs += [out.decode(), err.decode()]
    j = json.loads(out)
    T.ok(proc.returncode == 0 and j["cas_retries"] >= 1 and j["values"]["rekeyed"] == 1,
         "the lost check-and-set was re-read and retried", (proc.returncode, j["cas_retries"]))
    d, ver = data(vd, p)
    T.ok(dec(d["key"], p, "key") == ("k2", EDITED_PW) and d["username"] == "edited" and ver == 3,
         "the concurrent edit is kept (its value re-keyed, version 3), never overwritten", (d.get("username"), ver))


# ---------------------------------------------------------------- hostile trees

def test_hostile(C, vd):
    h = "hostile/"
    vd.call("POST", "/v1/secret/metadata/" + h + "meta-only", {"custom_metadata": {"owner": "x"}})
    vd.kv2_put(h + "deleted", {"key": enc("k1", h + "deleted", "key", GOOD_PW)})
    vd.kv2_delete(h + "deleted")
    vd.kv2_put(h + "destroyed", {"key": enc("k1", h + "destroyed", "key", GOOD_PW)})
    vd.kv2_destroy(h + "destroyed", [1])
    unknown = enc("k9", h + "unknown", "key", GOOD_PW)
    tampered = enc("k1", h + "somewhere-else", "key", GOOD_PW)
    vd.kv2_put(h + "unknown", {"key": unknown})
    vd.kv2_put(h + "tampered", {"key": tampered})
    vd.kv2_put(h + "nonstring", {"key": 5, "list": ["ENC:x"], "flag": True, "none": None})
    vd.kv2_put(h + "good", {"key": enc("k1", h + "good", "key", GOOD_PW)})
    deep = h + "".join("d%d/" % i for i in range(18)) + "leaf"
    vd.kv2_put(deep, {"key": enc("k1", deep, "key", GOOD_PW)})
    rc, j, err = rekey_json(C, "--prefix", h)
    T.eq(rc, 3, "hostile tree: exit 3 (partial)")
    errs = {(e["path"], e["code"]) for e in (j or {}).get("errors", [])}
    T.ok((h + "unknown", "decrypt_failed") in errs and (h + "tampered", "decrypt_failed") in errs,
         "unknown key id and tampered envelope: per-item errors naming the path", errs)
    T.ok(any(e["path"].startswith(h + "d0/") and "deeper than 16" in e["message"] for e in j["errors"]),
         "an 18-folder-deep tree: an error naming the folder")
    T.ok(any("unknown key id 'k9'" in e["message"] for e in j["errors"]), "the unknown key id is named")
    T.ok(j["no_live_version"] == 3 and j["values"]["not_string"] == 4 and j["values"]["rekeyed"] == 1,
         "metadata-only, deleted and destroyed: no live version (3); 4 non-string values left alone; the good "
         "one re-keyed", (j["no_live_version"], j["values"]))
    T.eq(data(vd, h + "unknown")[0]["key"], unknown, "the unknown-key value is unchanged")
    T.eq(data(vd, h + "tampered")[0]["key"], tampered, "the tampered value is unchanged")
    T.eq(dec(data(vd, h + "good")[0]["key"], h + "good", "key"), ("k2", GOOD_PW), "the good value is re-keyed")
    T.ok("hostile/unknown" in err and "hostile/tampered" in err, "stderr names each failed path")
    # fix the tree (remove the unrecoverable ones, re-key the deep one by its own prefix): the rerun completes
    for p in ("unknown", "tampered"):
        vd.call("DELETE", "/v1/secret/metadata/" + h + p)
    rc, j2, _ = rekey_json(C, "--prefix", h + "".join("d%d/" % i for i in range(10)))
    T.ok(rc == 0 and j2["values"]["rekeyed"] == 1, "the deep folder re-keys with its own --prefix")


def test_lag(C, vd):
    """A credential whose metadata lags its data (an edit cut short by another tool) with a value
    under the old key is left alone with a clear error; `vks cred` repairs it, then rekey finishes."""
    pw = create_in(C, "lag/", "l1")
    _, v = data(vd, "lag/l1")
    st, _ = vd.call("PATCH", "/v1/secret/data/lag/l1", {"options": {"cas": v}, "data": {"username": "u-lag-l1"}},
                    headers={"Content-Type": "application/merge-patch+json"})
    rc, j, err = rekey_json(C, "--prefix", "lag/")
    T.ok(st == 200 and rc == 3 and j["errors"] and "lags the data version" in j["errors"][0]["message"] and
         j["errors"][0]["path"] == "lag/l1", "metadata lagging its data: left alone, named", (st, j and j["errors"]))
    T.eq(dec(data(vd, "lag/l1")[0]["key"], "lag/l1", "key"), ("k1", pw), "the lagging credential is unchanged")


def test_503(C, vd):
    pre = "flaky/"
    for i in range(5):
        vd.kv2_put(pre + "c%d" % i, {"key": enc("k1", pre + "c%d" % i, "key", GOOD_PW)})
    vd.fault(action="status", status=503, method="GET", path_prefix="/v1/secret/data/flaky/c3", count=1)
    rc, j, err = rekey_json(C, "--prefix", pre)
    T.ok(rc == 3 and any(e["path"] == "flaky/c3" and e["code"] == "unavailable" for e in j["errors"]) and
         j["values"]["rekeyed"] == 4, "a 503 mid-run: that item fails by name, the others are re-keyed", j and j["errors"])
    T.eq(dec(data(vd, pre + "c3")[0]["key"], pre + "c3", "key")[0], "k1", "the failed one is unchanged")
    rc, j, err = rekey_json(C, "--prefix", pre)
    T.ok(rc == 0 and j["values"]["rekeyed"] == 1 and j["values"]["current"] == 4 and j["verify"]["values_left"] == 0,
         "the rerun completes (1 re-keyed, 4 skipped)", j and j["values"])
    # a 503 on the check-and-set PATCH, and one on a credential's metadata write (its data is then
    # written, its metadata not: a half-written credential the rerun completes)
    vd.kv2_put(pre + "c5", {"key": enc("k1", pre + "c5", "key", GOOD_PW)})
    pw = create_in(C, pre, "m1")
    vd.fault(action="status", status=503, method="PATCH", path_prefix="/v1/secret/data/flaky/c5", count=1)
    vd.fault(action="status", status=503, method="POST", path_prefix="/v1/secret/metadata/flaky/m1", count=1)
    rc, j, err = rekey_json(C, "--prefix", pre)
    codes = {(e["path"], e["code"]) for e in (j or {}).get("errors", [])}
    T.ok(rc == 3 and codes == {("flaky/c5", "unavailable"), ("flaky/m1", "unavailable")},
         "503 on a PATCH and on a metadata write: both named, exit 3", codes)
    T.eq(dec(data(vd, pre + "c5")[0]["key"], pre + "c5", "key")[0], "k1", "the refused PATCH changed nothing")
    m = meta(vd, pre + "m1")
    T.ok(dec(data(vd, pre + "m1")[0]["key"], pre + "m1", "key") == ("k2", pw) and
         int(m["custom_metadata"]["rev"]) == m["current_version"] - 1,
         "the credential is half-written: data under k2 (same password, it resolves), metadata one behind")
    rc, j, err = rekey_json(C, "--prefix", pre)
    m = meta(vd, pre + "m1")
    T.ok(rc == 0 and j["values"]["rekeyed"] == 1 and j["metadata_repaired"] == 1 and
         m["custom_metadata"]["rev"] == str(m["current_version"]) and m["custom_metadata"].get("key_id") == "k2" and
         dec(data(vd, pre + "m1")[0]["key"], pre + "m1", "key") == ("k2", pw),
         "the rerun re-keys the refused one and completes the half-written credential",
         j and (j["values"], j["metadata_repaired"], j["errors"]))


def test_huge(C, vd):
    """A listing over the limit is refused before any write; a big flat folder works."""
    pre = "big/"
    c = vd.connection()
    h = {"X-Vault-Token": vd.root_token, "Content-Type": "application/json"}
    for i in range(1500):
        p = pre + "s%04d" % i
        c.request("POST", "/v1/secret/data/" + p, json.dumps({"data": {"key": enc("k1", p, "key", GOOD_PW)}}), h)
        r = c.getresponse()
        r.read()
    c.close()
    rc, out, err = C.vks("rekey", "--to", "k2", "--yes", "--prefix", pre, "--max-secrets", "1000",
                         VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 1 and "more than 1000 secrets under the prefix" in err and "nothing was written" in err,
         "a listing over --max-secrets: refused naming the limit, exit 1", err[-300:])
    T.eq(dec(data(vd, pre + "s0000")[0]["key"], pre + "s0000", "key")[0], "k1", "nothing was written")
    rc, j, err = rekey_json(C, "--prefix", pre)
    T.ok(rc == 0 and j["secrets"] == 1500 and j["values"]["rekeyed"] == 1500 and j["verify"]["values_left"] == 0,
         "a folder of 1,500 secrets (one LIST answer) is re-keyed whole", j and (j["secrets"], j["values"]))
    rc, out, err = C.vks("rekey", "--to", "k2", "--max-secrets", "0")
    T.ok(rc == 1 and "--max-secrets" in err, "--max-secrets 0 is a usage error")


def test_policy(C, vd):
    """policy-examples/rekey-operator.hcl is enough, and backup-reader (no patch) is not: per-item
    errors, nothing written."""
    pol = os.path.join(os.environ["ROOT"], "policy-examples")
    vd.policy("rekey-operator", open(os.path.join(pol, "rekey-operator.hcl")).read())
    vd.policy("backup-reader", open(os.path.join(pol, "backup-reader.hcl")).read())
    for name in ("p1.example", "p2.example"):
        create(C, "pol/" + name)
    ro = vd.create_token(policies=["backup-reader"], display_name="reader")
    rc, j, err = rekey_json(C, "--prefix", "smtp-auth/pol/", token=ro)
    T.ok(rc == 3 and j["failed"] == 2 and all(e["code"] == "permission_denied" for e in j["errors"]) and
         all(data(vd, "smtp-auth/pol/" + n)[0]["key"].startswith("ENC:v2:k1:") for n in ("p1.example", "p2.example")),
         "a token without patch: each credential refused by name, nothing written", j and j["errors"][:1])
    tok = vd.create_token(policies=["rekey-operator"], display_name="custodian")
    rc, j, err = rekey_json(C, "--prefix", "smtp-auth/pol/", token=tok)
    T.ok(rc == 0 and j["credentials_changed"] == 2 and j["verify"]["values_left"] == 0,
         "policy-examples/rekey-operator.hcl is enough", (rc, err[-300:]))
    runs = [x for x in C.audit_lines() if x.get("type") == "rekey.run"]
    T.ok(runs and runs[-1]["operator"] == "token-custodian", "the run is audited with the operator's identity",
         runs[-1:] if runs else None)


def test_usage(C, vd):
    rc, out, err = C.vks("rekey", "--to", "k7", "--yes", VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 1 and "'k7': no such key id" in err, "an unknown --to: exit 1 naming it", err)
    rc, out, err = C.vks("rekey", VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 1 and "--to KEYID is required" in err, "no --to: usage error", err)
    rc, out, err = C.vks("rekey", "--to", "k2", VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 1 and "--yes" in err, "no terminal and no --yes: refused", err)
    rc, out, err = C.vks("rekey", "--help")
    T.ok(rc == 0 and "usage: vks rekey" in out and "exit status" in out, "--help")
    rc, out, err = C.vks("rekey", "--to", "k2", "--yes", "--prefix", "nothing-here/", VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 0 and "re-keyed 0 values" in out and "0 left" in out, "an empty prefix: 0 and exit 0", out + err)
    rc, out, err = C.vks("rekey", "--to", "k2", "--yes", "--prefix", "flaky/", VKS_ENCRYPTION_KEYS=RING,
                         VAULT_ADDR="https://127.0.0.1:1")
    T.ok(rc == 2, "Vault unreachable: exit 2, nothing written", (rc, err[-200:]))
    rc, out, err = C.vks("rekey", "--to", "k2", "--yes", "--prefix", "flaky/", VKS_ENCRYPTION_KEYS=RING)
    T.ok(rc == 0 and "vks rekey verify:" in err, "progress lines on stderr when not a terminal", err[-200:])


def test_tty_progress(C, vd):
    """On a terminal: one updating progress line (carriage returns, done/total, rate, ETA)."""
    import pty
    import select
    for i in range(3):
        vd.kv2_put("tty/c%d" % i, {"key": enc("k1", "tty/c%d" % i, "key", GOOD_PW)})
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(os.path.join(os.environ["ROOT"], os.environ.get("BUILD", "build"), "vks"),
                  ["vks", "rekey", "--to", "k2", "--yes", "--prefix", "tty/"], C.env(VKS_ENCRYPTION_KEYS=RING))
    got, deadline = b"", time.monotonic() + 60
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
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = got.decode(errors="replace")
    C.outputs.append(text)
    T.ok(os.waitstatus_to_exitcode(status) == 0 and "\rrekey   [" in text and "3/3" in text and "/s ETA" in text
         and "\033[K" in text and "\rverify  [" in text, "on a terminal: a progress bar updated in place "
         "(done/total, rate, ETA) for the run and the verify pass", text[-300:])


def pty_run(C, args, answer):
    """Runs vks on a pseudo-terminal, answers its confirmation prompt; (rc, terminal text)."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(os.path.join(os.environ["ROOT"], os.environ.get("BUILD", "build"), "vks"), ["vks", *args],
                  C.env(VKS_ENCRYPTION_KEYS=RING))
    got, sent, deadline = b"", False, time.monotonic() + 60
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
            if not sent and b"Type 'yes'" in got:
                os.write(fd, answer.encode() + b"\n")
                sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = got.decode(errors="replace")
    C.outputs.append(text)
    return os.waitstatus_to_exitcode(status), text


def test_confirm(C, vd):
    p = "ask/c0"
    vd.kv2_put(p, {"key": enc("k1", p, "key", GOOD_PW)})
    rc, text = pty_run(C, ["rekey", "--to", "k2", "--prefix", "ask/"], "no")
    T.ok(rc == 1 and "under key 'k2'?" in text and dec(data(vd, p)[0]["key"], p, "key")[0] == "k1",
         "on a terminal without --yes it asks; anything but 'yes' writes nothing", (rc, text[-200:]))
    rc, text = pty_run(C, ["rekey", "--to", "k2", "--prefix", "ask/"], "yes")
    T.ok(rc == 0 and dec(data(vd, p)[0]["key"], p, "key")[0] == "k2", "answered 'yes': re-keyed", (rc, text[-200:]))


def main():
    with VaultDev() as vd:
        C = Cred(vd, enc_key=B64["default"], audit_key=AUDIT_KEY)
        C.secret(PLAIN), C.secret(LEGACY_PW), C.secret(OTHER_PW), C.secret(EDITED_PW), C.secret(GOOD_PW)
        C.secret(PENDING_PW)
        for k in RAW:
            C.secret(B64[k])
        for fn in (test_mixed, test_drills, test_race, test_hostile, test_lag, test_503, test_huge, test_policy, test_usage, test_tty_progress, test_confirm):
            T.run(fn, C, vd)
        T.eq(C.leaks(), [], "no password or key in any output, audit line or vault-dev log")
    T.finish()


main()
