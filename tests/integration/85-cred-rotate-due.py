"""vks cred rotate --due against build/vault-dev over HTTPS and tests/lib/smtprelay.py relays (issue 12,
the 180-day policy's rotation part):
 * selection: exactly the overdue credentials (due brought forward by a metadata patch, as 82 does);
   --within adds the ones due soon; unmanaged secrets skipped; invalid dates or an unknown state
   reported and counted as a failure, never rotated; a rotation in flight resumed when due (same
   rotation id), reported and left alone when not;
 * --dry-run lists what would be rotated and why (due date, policy, relay) and writes nothing (no
   write request reaches Vault; versions unchanged): exit 0 nothing due, 3 something, 4 invalid;
 * the real run rotates exactly the due ones through the four steps with one set hook for all
   (VKS_CRED_NAME in its environment): their versions and `rotated` change, the others' do not;
   each resolves (the real resolver) to the password the hook gave the relay; the audit trail
   verifies; a relay that refuses the new password fails that one (exit 4) while the others are
   rotated, and it stays resolvable with its old password; Vault unreachable for the listing: 2;
 * a run killed mid-rotation (drill) is resumed by the next with the same rotation id; Vault
   failing one credential's rotation counts under 4 and the run goes on; the cred-operator policy
   runs it without reading any credential's data, the auditor policy only the dry run;
 * the example units pass systemd-analyze verify and their ExecStart lines run against vault-dev;
 * no password in any output, audit line or server log."""
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from credtest import set_meta  # noqa: E402
from smtprelay import Relay  # noqa: E402

T = Checks()
ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")
EX = os.path.join(ROOT, "policy-examples")
# listed in tests/test-secrets.d/rotate-due.txt
ENC_KEY = "Y3JlZDg1LXJvdGR1ZS1lbmMta2V5LVRFU1QtMDEyMzQ="
AUDIT_KEY = "Y3JlZDg1LXJvdGR1ZS1hdWRpdC1rZXktVEVTVC0wMTI="
SECRETS, OUTPUTS = [], []
PASSWORDS = {}     # name -> the password created with it
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
MAIN = ("due1.example", "due2.example", "soon.example", "fresh.example")
CTX = {}


def ts(days_ago):
    return (NOW - datetime.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def env_for(vd, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=vd.root_token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEY=ENC_KEY, VKS_AUDIT_KEY=AUDIT_KEY, VAULT_MAX_RETRIES="0",
             VKS_AUDIT_FILE=os.path.join(vd.workdir, "audit.log"),
             VKS_CRED_SET_HOOK=CTX.get("hook", ""), VKS_CRED_RELAY_CAFILE=CTX.get("cafile", ""))
    e.update(extra)
    return {k: v for k, v in e.items() if v is not None}


def vks(vd, *args, **extra):
    p = subprocess.run([VKS, *args], capture_output=True, timeout=300, env=env_for(vd, **extra),
                       stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    OUTPUTS.extend((out, err))
    return p.returncode, out, err


def due(vd, *args, **extra):
    return vks(vd, "cred", "rotate", "--due", *args, **extra)


def create(vd, name, tenant=None):
    t = ["--tenant", tenant] if tenant else []
    p = subprocess.run([VKS, "cred", "create", name, "--username", "u-" + name, "--all-domains", *t],
                       capture_output=True, timeout=60, env=env_for(vd), stdin=subprocess.DEVNULL)
    OUTPUTS.append(p.stderr.decode(errors="replace"))
    T.eq(p.returncode, 0, "create %s" % name)
    PASSWORDS[name] = p.stdout.decode().strip()
    SECRETS.append(PASSWORDS[name])


def meta(vd, name):
    st, j = vd.call("GET", "/v1/secret/metadata/smtp-auth/" + name)
    assert st == 200, (name, st)
    return j["data"]


def snapshot(vd, names):
    """name -> (Vault's current_version, rotated, state, the current_version custom_metadata names)"""
    out = {}
    for n in names:
        m = meta(vd, n)
        cm = m["custom_metadata"]
        out[n] = (m["current_version"], cm.get("rotated"), cm.get("state"), cm.get("current_version"))
    return out


def writes(vd):
    return {k: v for k, v in vd.counters().items() if k.split(" ")[0] in ("POST", "PUT", "DELETE", "PATCH")
            and "/v1/sys/dev" not in k and "/auth/token/lookup-self" not in k}


def rows(out):
    return {r["name"]: r for r in json.loads(out)}


LUA = r"""
local vks = require 'vault_keysource'
assert(vks.setup { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                   token = os.getenv('VAULT_TOKEN'), timeout = '10s', max_retries = 0 })
local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = arg[1] }, {})
if v then io.write('OK ', v) else io.write('ERR ', tostring(code), ' ', tostring(msg)) end
"""


def resolve(vd, name):
    """The resolver (Lua module over the C core) in a fresh process: the value, or None."""
    script = os.path.join(vd.workdir, "resolve.lua")
    with open(script, "w") as f:
        f.write(LUA)
    e = env_for(vd)
    del e["VKS_AUDIT_FILE"]
    p = subprocess.run(["lua5.4", script, "smtp-auth/" + name], capture_output=True, timeout=60, env=e)
    OUTPUTS.append(p.stderr.decode(errors="replace"))
    kind, _, rest = p.stdout.decode(errors="replace").partition(" ")
    return rest if kind == "OK" else None


def hook_lines(path):
    """The hook's record: [(VKS_CRED_NAME, VKS_CRED_USERNAME, VKS_CRED_ROTATION_ID, password)]."""
    try:
        with open(path) as f:
            return [tuple(line.rstrip("\n").split(" ", 3)) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def setup(vd, ok_relay, bad_relay):
    for n in MAIN:
        create(vd, n)
        set_meta(vd, n, relay="127.0.0.1:%d" % ok_relay.port)
    set_meta(vd, "due1.example", rotated=ts(200), due=ts(20))
    set_meta(vd, "due2.example", rotated=ts(10), due=ts(1))  # brought forward (suspected exposure)
    set_meta(vd, "soon.example", rotated=ts(170), due=None)  # due in 10 days
    vd.kv2_put("smtp-auth/hand-made", {"key": "not managed"})
    ok_relay.set_creds([("u-" + n, PASSWORDS[n]) for n in MAIN])
    # one hook for every credential: tells "the relay" (its creds file) the new password, and
    # records who asked (the line's password is what the resolver must return afterwards)
    CTX["hooklog"] = os.path.join(vd.workdir, "hook.log")
    CTX["hook"] = os.path.join(vd.workdir, "set-hook.sh")
    with open(CTX["hook"], "w") as f:
        f.write("#!/bin/sh\nset -e\npw=$(cat)\nprintf '%%s:%%s\\n' \"$VKS_CRED_USERNAME\" \"$pw\" >> %s\n"
                "printf '%%s %%s %%s %%s\\n' \"$VKS_CRED_NAME\" \"$VKS_CRED_USERNAME\" \"$VKS_CRED_ROTATION_ID\" "
                "\"$pw\" >> %s\n" % (shlex.quote(ok_relay.creds_path), shlex.quote(CTX["hooklog"])))
    os.chmod(CTX["hook"], 0o700)
    CTX["cafile"] = os.path.join(vd.workdir, "relays-ca.pem")   # both relays' certificates
    with open(CTX["cafile"], "w") as f:
        f.write(open(ok_relay.cafile).read() + open(bad_relay.cafile).read())
    CTX["ok_port"], CTX["bad_port"] = ok_relay.port, bad_relay.port


def test_dry_run(vd):
    before = snapshot(vd, MAIN)
    vd.reset_counters()
    rc, out, err = due(vd, "--dry-run", "--json")
    r = rows(out)
    T.eq(rc, 3, "--dry-run with due credentials: exit 3")
    T.eq(sorted(r), ["due1.example", "due2.example"], "--dry-run lists exactly the overdue ones")
    T.ok(all(x["outcome"] == "would-rotate" and x["action"] == "rotate" for x in r.values()),
         "each as would-rotate", r)
    T.ok(r["due1.example"]["due"] == ts(20) and r["due1.example"]["days_left"] == -20 and
         r["due1.example"]["rotation_days"] == 180 and r["due1.example"]["policy"] == "default",
         "why: the due date, days overdue, the default 180-day policy", r["due1.example"])
    T.ok(r["due2.example"]["due"] == ts(1) and r["due2.example"]["relay"] == "127.0.0.1:%d" % CTX["ok_port"],
         "the brought-forward due and the stored relay", r["due2.example"])
    T.eq(writes(vd), {}, "--dry-run sends no write request to Vault")
    T.eq(snapshot(vd, MAIN), before, "--dry-run: versions, rotated and state unchanged")
    T.ok("2 would be rotated" in err and "1 secret under secret/smtp-auth/ not managed" in err,
         "the summary counts them and the unmanaged secret", err)
    T.ok(not hook_lines(CTX["hooklog"]), "--dry-run never runs the hook")
    rc, out, _ = due(vd, "--dry-run")
    lines = out.strip().splitlines()
    T.ok(rc == 3 and len(lines) == 2 and lines[0].startswith("would rotate due1.example: overdue since " + ts(20))
         and "180-day policy" in lines[0] and "due2.example" in lines[1] and "stored due earlier" in lines[1],
         "text: one line per credential, oldest due first, with the reason", out)


def test_dry_run_within(vd):
    rc, out, _ = due(vd, "--dry-run", "--within", "30d", "--json")
    r = rows(out)
    T.ok(rc == 3 and sorted(r) == ["due1.example", "due2.example", "soon.example"] and
         r["soon.example"]["status"] == "due-soon" and r["soon.example"]["days_left"] in (9, 10),
         "--within 30d adds the one due soon", r)
    rc, out, _ = due(vd, "--dry-run", "--within", "5d", "--json")
    T.ok(rc == 3 and "soon.example" not in rows(out), "--within 5d does not")
    rc, out, err = due(vd, "--dry-run", "--tenant", "nobody", "--json")
    T.ok(rc == 0 and json.loads(out) == [], "nothing due (another tenant): exit 0 and []", (rc, out, err))


def test_local_errors(vd):
    for args, what in ((["--within", "30"], "--within"), (["--within", "1y"], "--within"),
                       (["--hook-timeout", "0"], "--hook-timeout"), (["--hook-timeout", "x"], "--hook-timeout"),
                       (["due1.example"], "NAME"), (["--relay", "127.0.0.1:25"], "--relay"),
                       (["--password-stdin"], "--password-stdin"), (["--tenant", "Bad Tenant!"], "--tenant")):
        rc, out, err = due(vd, "--dry-run", *args)
        T.ok(rc == 1 and what in err and out == "", "%s: exit 1 naming %s" % (args, what), err)
    rc, _, err = due(vd, "--dry-run", VKS_CRED_ROTATION_DAYS="0")
    T.ok(rc == 1 and "VKS_CRED_ROTATION_DAYS" in err, "a bad policy: exit 1", err)
    rc, _, err = due(vd, "--dry-run", VKS_CRED_HOOK_TIMEOUT="-5")
    T.ok(rc == 1 and "VKS_CRED_HOOK_TIMEOUT" in err, "a bad VKS_CRED_HOOK_TIMEOUT: exit 1", err)
    before = snapshot(vd, MAIN)
    rc, _, err = due(vd, VKS_ENCRYPTION_KEY=None)
    T.ok(rc == 1 and snapshot(vd, MAIN) == before, "a real run without an encryption key: exit 1, nothing written",
         err)
    rc, out, _ = vks(vd, "cred", "rotate", "--help")
    T.ok(rc == 0 and "vks cred rotate --due" in out and "exit status with --due: 0 nothing due or all rotated; 4"
         in out and "With --dry-run: 0 nothing due; 3 some" in out, "rotate --help documents --due and its codes")
    rc, out, err = due(vd, "--bogus")
    T.ok(rc == 1 and out == "" and "usage: vks cred rotate --due" in err and "4 at least one rotation failed" in err,
         "a usage error with --due prints the whole --due usage", err)


def test_vault_unreachable(vd):
    for args in (["--dry-run"], []):
        vd.fault(action="status", status=503, method="LIST", path_prefix="/v1/secret/metadata/smtp-auth", count=1)
        before = snapshot(vd, MAIN)
        rc, out, err = due(vd, *args)
        vd.clear_faults()
        T.ok(rc == 2 and out == "" and snapshot(vd, MAIN) == before, "Vault 503 on the listing %s: exit 2" % args,
             err)
    rc, _, err = due(vd, VAULT_ADDR="https://127.0.0.1:1", VAULT_CLIENT_TIMEOUT="5s")
    T.ok(rc == 2, "Vault unreachable: exit 2", err)
    tok = vd.create_token(policies=["default"], display_name="nobody")
    rc, _, err = due(vd, "--dry-run", VAULT_TOKEN=tok)
    T.ok(rc == 2 and "permission denied" in err, "a token that may not list: exit 2", err)


def test_invalid(vd):
    for n in ("bad-rot.example", "odd-state.example", "tb-due.example", "tb-norelay.example"):
        create(vd, n, tenant="tb")
        set_meta(vd, n, relay="127.0.0.1:%d" % CTX["ok_port"])
    set_meta(vd, "bad-rot.example", rotated="last tuesday")
    set_meta(vd, "odd-state.example", state="frozen", rotated=ts(400))
    set_meta(vd, "tb-due.example", rotated=ts(181), due=None)
    set_meta(vd, "tb-norelay.example", rotated=ts(190), due=None, relay=None)
    names = ("bad-rot.example", "odd-state.example", "tb-norelay.example")
    before = snapshot(vd, names + ("tb-due.example",))
    rc, out, _ = due(vd, "--dry-run", "--tenant", "tb", "--json")
    r = rows(out)
    T.ok(rc == 4 and {k: v["outcome"] for k, v in r.items()} ==
         {"bad-rot.example": "invalid", "odd-state.example": "invalid", "tb-norelay.example": "invalid",
          "tb-due.example": "would-rotate"},
         "--dry-run: invalid ones listed as such, exit 4 (a real run would fail) even with one due", (rc, r))
    T.ok("rotated" in r["bad-rot.example"]["invalid"] and "frozen" in r["odd-state.example"]["invalid"] and
         "no relay" in r["tb-norelay.example"]["invalid"], "each names what is wrong", r)
    T.eq(snapshot(vd, names + ("tb-due.example",)), before, "the dry run changed nothing")
    vd.reset_counters()
    rc, out, err = due(vd, "--tenant", "tb")
    lines = out.splitlines()
    T.ok(rc == 4 and lines[0].startswith("invalid      bad-rot.example") and
         lines[1].startswith("invalid      odd-state.example") and "not rotated" in lines[0] and
         lines[2].startswith("invalid      tb-norelay.example") and "--relay" in lines[2] and
         lines[3].startswith("rotated      tb-due.example") and "1 rotated, 0 failed, 3 invalid" in err,
         "the real run reports them first, still rotates the due one, and exits 4", (out, err))
    T.ok(not any(n in k for k in writes(vd) for n in names), "no write request for an invalid credential",
         writes(vd))
    T.eq(snapshot(vd, names), {n: before[n] for n in names}, "and nothing of it changes")
    T.ok(not any(x[0] in names for x in hook_lines(CTX["hooklog"])), "nor is the hook run for it")
    for name, _, _, pw in hook_lines(CTX["hooklog"]):
        SECRETS.append(pw)
    T.eq(resolve(vd, "bad-rot.example"), PASSWORDS["bad-rot.example"], "an invalid one still resolves")


def test_in_flight_not_due(vd):
    create(vd, "flight.example", tenant="tf")
    set_meta(vd, "flight.example", state="rotating", rotation_id="r-by-hand-0001",
             relay="127.0.0.1:%d" % CTX["ok_port"])
    vd.reset_counters()
    rc, out, err = due(vd, "--tenant", "tf")
    T.ok(rc == 0 and out.startswith("in-flight    flight.example") and "--resume flight.example" in out,
         "a rotation in flight that is not due: reported, left alone, exit 0", (rc, out, err))
    T.eq(writes(vd), {}, "and not touched")
    set_meta(vd, "flight.example", rotated=ts(190))
    rc, out, _ = due(vd, "--dry-run", "--tenant", "tf", "--json")
    r = rows(out)["flight.example"]
    T.ok(rc == 3 and r["outcome"] == "would-resume" and r["rotation_id"] == "r-by-hand-0001",
         "due with a rotation in flight: resumed with the same rotation id", r)
    vd.kv2_delete("smtp-auth/flight.example")
    vd.call("DELETE", "/v1/secret/metadata/smtp-auth/flight.example")


# ------------------------------------------------------------------ the rotation itself


def test_rotate(vd, ok_relay):
    before = snapshot(vd, MAIN)
    rc, out, err = due(vd, "--json")
    r = rows(out)
    T.eq(rc, 0, "the real run: every due credential rotated, exit 0")
    T.eq({k: v["outcome"] for k, v in r.items()}, {"due1.example": "rotated", "due2.example": "rotated"},
         "exactly the due ones")
    after = snapshot(vd, MAIN)
    for n in ("due1.example", "due2.example"):
        T.ok(after[n][0] > before[n][0] and after[n][1] != before[n][1] and after[n][1] >= NOW.strftime(
             "%Y-%m-%dT%H:%M:%SZ") and after[n][2] == "active", "%s: new version, rotated now, active" % n,
             (before[n], after[n]))
        T.ok(r[n]["old_version"] >= before[n][0] and r[n]["new_version"] == after[n][0] == int(after[n][3]),
             "%s: the versions reported (new = current)" % n, r[n])
    for n in ("soon.example", "fresh.example"):
        T.eq(after[n], before[n], "%s (not due) unchanged" % n)
    hooks = hook_lines(CTX["hooklog"])
    T.eq(sorted(h[0] for h in hooks), ["due1.example", "due2.example"],
         "one set hook served both, with VKS_CRED_NAME set")
    for name, user, rid, pw in hooks:
        T.ok(user == "u-" + name and rid == r[name]["rotation_id"] and rid, "%s: the hook's environment" % name)
        got = resolve(vd, name)
        T.ok(got == pw and got != PASSWORDS[name], "%s resolves to the new password (the one the relay got)" % name)
        SECRETS.append(pw)
    for n in ("soon.example", "fresh.example"):
        T.ok(resolve(vd, n) == PASSWORDS[n], "%s still resolves to its password" % n)
    auths = [a for a in ok_relay.auth_events() if a["ok"]]
    T.ok({a["user"] for a in auths} >= {"u-due1.example", "u-due2.example"} and all(a["tls"] for a in auths),
         "each new password was tested with SMTP AUTH over STARTTLS at the relay", auths)
    rc, out, err = due(vd)
    T.ok(rc == 0 and out == "" and "0 rotated, 0 failed" in err, "a second run: nothing due, exit 0", (out, err))


def test_within(vd):
    before = snapshot(vd, ["soon.example", "fresh.example"])
    rc, out, _ = due(vd, "--within", "30d", "--tenant", "")
    T.ok(rc == 1, "--tenant '' is refused (exit 1)")
    rc, out, err = due(vd, "--within", "30d")
    T.ok(rc == 0 and out.splitlines() and out.splitlines()[-1].startswith("rotated      soon.example"),
         "--within 30d rotates the one due soon", (out, err))
    after = snapshot(vd, ["soon.example", "fresh.example"])
    T.ok(after["soon.example"][0] > before["soon.example"][0] and after["fresh.example"] == before["fresh.example"],
         "soon rotated, fresh untouched")
    pw = [h[3] for h in hook_lines(CTX["hooklog"]) if h[0] == "soon.example"]
    T.ok(len(pw) == 1 and resolve(vd, "soon.example") == pw[0], "soon resolves to its new password")
    SECRETS.extend(pw)


def test_relay_refuses(vd, bad_relay):
    for n in ("refused.example", "fine.example"):
        create(vd, n, tenant="tr")
        set_meta(vd, n, rotated=ts(200), due=None)
    bad_relay.set_creds([("u-refused.example", PASSWORDS["refused.example"])])  # never learns the new one
    set_meta(vd, "refused.example", relay="127.0.0.1:%d" % CTX["bad_port"])
    set_meta(vd, "fine.example", relay="127.0.0.1:%d" % CTX["ok_port"])
    names = ("refused.example", "fine.example")
    before = snapshot(vd, names)
    rc, out, err = due(vd, "--tenant", "tr")
    after = snapshot(vd, names)
    lines = {l.split()[1].rstrip(":"): l for l in out.splitlines()}
    T.eq(rc, 4, "a relay that refuses the new password: exit 4")
    T.ok(lines["refused.example"].startswith("FAILED") and "--resume refused.example" in lines["refused.example"]
         and "untouched" in lines["refused.example"], "its line says it failed and how to resume", out)
    T.ok(after["fine.example"][0] > before["fine.example"][0], "the other one was still rotated")
    T.ok(after["refused.example"][1] == before["refused.example"][1] and after["refused.example"][2] == "rotating",
         "the refused one: rotated unchanged, its rotation in flight (claimed; the claim is a version of the same "
         "password)", after["refused.example"])
    T.eq(resolve(vd, "refused.example"), PASSWORDS["refused.example"], "and it resolves to its old password")
    T.ok("1 rotated, 1 failed" in err, "the summary counts both", err)
    refused = [a for a in bad_relay.auth_events() if a["user"] == "u-refused.example"]
    T.ok(refused and not refused[-1]["ok"], "the relay did refuse it", refused)
    for name, _, _, pw in hook_lines(CTX["hooklog"]):
        SECRETS.append(pw)
    # the next run resumes the rotation in flight (same id) once the relay knows the password
    rid = meta(vd, "refused.example")["custom_metadata"].get("rotation_id")
    rc, out, _ = due(vd, "--dry-run", "--tenant", "tr", "--json")
    r = rows(out)
    T.ok(rc == 3 and r["refused.example"]["outcome"] == "would-resume" and r["refused.example"]["rotation_id"] == rid,
         "the failed rotation is in flight and due: the next run resumes it", r)
    pending = [h[3] for h in hook_lines(CTX["hooklog"]) if h[0] == "refused.example"]
    bad_relay.set_creds([("u-refused.example", pw) for pw in [PASSWORDS["refused.example"]] + pending])
    rc, out, err = due(vd, "--tenant", "tr", "--json")
    r = rows(out)
    T.ok(rc == 0 and r["refused.example"]["outcome"] == "resumed" and r["refused.example"]["rotation_id"] == rid,
         "resumed with the same rotation id, exit 0", (out, err))
    pending = [h[3] for h in hook_lines(CTX["hooklog"]) if h[0] == "refused.example"]
    T.eq(resolve(vd, "refused.example"), pending[-1], "it now resolves to the password the relay accepted")


def test_killed_run(vd):
    """A run killed mid-rotation (TimeoutStartSec=, a reboot): the next run resumes it, same id."""
    for n, age in (("k1.example", 300), ("k2.example", 200)):
        create(vd, n, tenant="tk")
        set_meta(vd, n, rotated=ts(age), due=None, relay="127.0.0.1:%d" % CTX["ok_port"])
    rc, out, err = due(vd, "--tenant", "tk", VKS_CRED_ROTATE_STOP_AFTER="set")
    T.ok(rc == 137, "the drill kills the run right after k1's set step (exit 137)", (rc, out, err))
    m1, m2 = (meta(vd, n)["custom_metadata"] for n in ("k1.example", "k2.example"))
    T.ok(m1.get("state") == "rotating" and m2.get("state") == "active", "k1 in flight, k2 not started")
    rc, out, _ = due(vd, "--dry-run", "--tenant", "tk", "--json")
    r = rows(out)
    T.ok(rc == 3 and r["k1.example"]["outcome"] == "would-resume" and r["k1.example"]["rotation_id"] ==
         m1.get("rotation_id") and r["k2.example"]["outcome"] == "would-rotate", "the next dry run: resume k1, rotate k2",
         r)
    rc, out, err = due(vd, "--tenant", "tk", "--json")
    r = rows(out)
    T.ok(rc == 0 and r["k1.example"]["outcome"] == "resumed" and r["k1.example"]["rotation_id"] == m1["rotation_id"]
         and r["k2.example"]["outcome"] == "rotated", "the next run resumes k1 (same rotation id) and rotates k2",
         (out, err))
    T.ok("resumed      k1.example: version" in err and "rotated      k2.example: version" in err,
         "with --json the progress lines go to stderr as it goes", err)
    for n in ("k1.example", "k2.example"):
        pws = [h[3] for h in hook_lines(CTX["hooklog"]) if h[0] == n]
        SECRETS.extend(pws)
        T.ok(pws and resolve(vd, n) == pws[-1] and meta(vd, n)["custom_metadata"]["state"] == "active",
             "%s resolves to its new password, active" % n)


def test_roles(vd):
    """The example unit's claim: the cred-operator policy runs rotate --due (it never reads a
    password); the auditor policy (metadata only) runs the dry run but cannot rotate."""
    for pol in ("cred-operator", "auditor"):
        with open(os.path.join(EX, pol + ".hcl")) as f:
            vd.policy(pol, f.read())
    op = vd.create_token(policies=["cred-operator"], display_name="rotate-timer")
    au = vd.create_token(policies=["auditor"], display_name="due-check")
    create(vd, "role.example", tenant="tro")
    set_meta(vd, "role.example", rotated=ts(200), due=None, relay="127.0.0.1:%d" % CTX["ok_port"])
    before = snapshot(vd, ["role.example"])
    rc, out, _ = due(vd, "--dry-run", "--tenant", "tro", "--json", VAULT_TOKEN=au)
    T.ok(rc == 3 and list(rows(out)) == ["role.example"], "auditor: the dry run works (exit 3)")
    rc, out, err = due(vd, "--tenant", "tro", VAULT_TOKEN=au)
    T.ok(rc == 4 and out.startswith("FAILED       role.example") and "permission" in out.lower(),
         "auditor: the rotation is refused by Vault's ACL, exit 4", (out, err))
    T.eq(snapshot(vd, ["role.example"]), before, "and nothing changed")
    vd.reset_counters()
    rc, out, err = due(vd, "--tenant", "tro", VAULT_TOKEN=op)
    T.ok(rc == 0 and out.startswith("rotated      role.example"), "cred-operator: rotated, exit 0", (out, err))
    c = vd.counters()
    T.ok(any("/metadata/smtp-auth/role.example" in k for k in c) and
         not any(k.split(" ")[0] == "GET" and "/data/smtp-auth/" in k for k in c),
         "without any read of a credential's data", c)
    pws = [h[3] for h in hook_lines(CTX["hooklog"]) if h[0] == "role.example"]
    SECRETS.extend(pws)
    T.ok(pws and resolve(vd, "role.example") == pws[-1], "and it resolves to the new password")


def test_vault_fails_mid_run(vd):
    """Vault answers the listing but fails one credential's rotation: that one fails (4, not 2),
    the next is still rotated, and the failed one still resolves to its password."""
    for n, age in (("vf1.example", 300), ("vf2.example", 200)):
        create(vd, n, tenant="tv")
        set_meta(vd, n, rotated=ts(age), due=None, relay="127.0.0.1:%d" % CTX["ok_port"])
    vd.fault(action="status", status=503, path_prefix="/v1/secret/data/smtp-auth/vf1.example", count=20)
    rc, out, err = due(vd, "--tenant", "tv")
    vd.clear_faults()
    lines = out.splitlines()
    T.ok(rc == 4 and lines[0].startswith("FAILED       vf1.example") and
         lines[1].startswith("rotated      vf2.example") and "1 rotated, 1 failed" in err,
         "a rotation that Vault fails counts under 4 and the run goes on", (out, err))
    T.eq(resolve(vd, "vf1.example"), PASSWORDS["vf1.example"], "the failed one still resolves to its password")
    SECRETS.extend(h[3] for h in hook_lines(CTX["hooklog"]))


def test_audit(vd):
    path = os.path.join(vd.workdir, "audit.log")
    with open(path) as f:
        ev = [json.loads(l) for l in f if l.strip()]
    rot = [x for x in ev if str(x.get("type", "")).startswith("cred.rotate")]
    T.ok({x.get("credential", x.get("path", "")).split("/")[-1] for x in rot} >=
         {"due1.example", "due2.example", "soon.example", "fine.example", "refused.example"},
         "each rotation's steps are in the audit trail", sorted({x["type"] for x in rot}))
    T.ok(not any(x.get("credential", "").endswith(("bad-rot.example", "odd-state.example")) for x in rot),
         "nothing for the invalid ones")
    rc, out, _ = vks(vd, "audit", "verify", path)
    T.ok(rc == 0 and out.rstrip().splitlines()[-1].startswith("OK:"), "vks audit verify accepts the trail", out)


# ------------------------------------------------------------------ the example units


def unit_text(name):
    with open(os.path.join(EX, name)) as f:
        return f.read()


def test_units(vd):
    svc, tim = unit_text("vks-cred-due.service"), unit_text("vks-cred-due.timer")
    execs = [l.split("=", 1)[1] for l in svc.splitlines() if l.startswith("ExecStart")]
    T.eq(execs, ["-/usr/bin/vks cred due --within 30d", "/usr/bin/vks cred rotate --due"],
         "the service lists what is due (its status ignored), then rotates what is due")
    T.ok("PLACEHOLDER" not in svc and "SuccessExitStatus" not in svc and "OnCalendar=daily" in tim,
         "no placeholder; exit 4 (a failed rotation) fails the unit")
    for line in execs:
        argv = shlex.split(line.lstrip("-"))
        argv[0] = VKS
        p = subprocess.run(argv + ["--dry-run"] if "rotate" in line else argv, capture_output=True, timeout=120,
                           env=env_for(vd))
        OUTPUTS.append(p.stdout.decode() + p.stderr.decode())
        T.ok(p.returncode in (0, 3, 4), "%s runs against vault-dev (exit %d)" % (line, p.returncode))
    if shutil.which("systemd-analyze") is None:
        print("skip - systemd-analyze not installed: units not verified")
        return
    d = os.path.join(vd.workdir, "units")
    os.makedirs(d, exist_ok=True)
    envf = os.path.join(d, "cred-rotate.env")
    open(envf, "w").write("VAULT_ADDR=%s\n" % vd.addr)
    for name, text in (("vks-cred-due.service", svc), ("vks-cred-due.timer", tim)):
        text = (text.replace("/usr/bin/vks", VKS).replace("/etc/vault-keysource/cred-rotate.env", envf)
                .replace("Documentation=man:vks-cred(1)\n", ""))
        open(os.path.join(d, name), "w").write(text)
    p = subprocess.run(["systemd-analyze", "verify", os.path.join(d, "vks-cred-due.timer"),
                        os.path.join(d, "vks-cred-due.service")], capture_output=True, timeout=60, cwd=d)
    T.eq((p.returncode, (p.stdout + p.stderr).decode()[:400]), (0, ""), "systemd-analyze verify accepts both units")


def test_no_secret(vd, relays):
    logs = [vd.stderr_text(), open(os.path.join(vd.workdir, "audit.log")).read()]
    for r in relays:
        logs.append(open(r.log_path).read() if os.path.exists(r.log_path) else "")
    leaks = [i for i, s in enumerate(SECRETS) for o in OUTPUTS + logs if s and s in o]
    T.ok(len(SECRETS) >= 6 and not leaks, "no password (old or new) in any output, audit line or log", leaks)


def main():
    with VaultDev() as vd, Relay(vd.workdir, name="relay-ok") as ok_relay, \
            Relay(vd.workdir, name="relay-refuses") as bad_relay:
        try:
            setup(vd, ok_relay, bad_relay)
            T.run(test_dry_run, vd)
            T.run(test_dry_run_within, vd)
            T.run(test_local_errors, vd)
            T.run(test_vault_unreachable, vd)
            T.run(test_rotate, vd, ok_relay)
            T.run(test_within, vd)
            T.run(test_relay_refuses, vd, bad_relay)
            T.run(test_invalid, vd)
            T.run(test_in_flight_not_due, vd)
            T.run(test_killed_run, vd)
            T.run(test_roles, vd)
            T.run(test_vault_fails_mid_run, vd)
            T.run(test_audit, vd)
            T.run(test_units, vd)
            T.run(test_no_secret, vd, (ok_relay, bad_relay))
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    sys.exit(T.finish())


main()
