"""vks cred rotate / rollback against build/vault-dev over HTTPS and a real SMTP relay
(tests/lib/smtprelay.py: STARTTLS with its own CA, AUTH PLAIN checked against a credentials file it
re-reads at every AUTH) (issue 12, rotation with zero downtime):
 * a full rotation: the set hook appends the new password to the relay's file, the test step's
   AUTH PLAIN gets 235, finish promotes it; the resolver (Lua module over the C core) returns the
   old password until finish and the new one after; previous_version is the old one;
 * a second rotation while one is in flight is refused, naming --resume and --abort;
 * killed after each step (VKS_CRED_ROTATE_STOP_AFTER, exit 137 as if killed): the current
   password resolves right after the kill, --resume completes the same rotation, nothing lost;
   a claim cut between its two writes is repaired by --resume;
 * Vault failing mid-rotation (vault-dev fault rules): exit 2 with a clear error, --resume later;
 * a relay refusing the pending password: exit 2, current unchanged, state rotating; the relay
   fixed, --resume completes; or --abort ends it;
 * a failing and a hanging set hook (deadline, process group killed);
 * rollback (audited with reason) and its refusal for a token that cannot read; the shipped
   policies: rotate allowed for cred-operator and a tenant in its prefix, denied for the others;
 * a restrict racing a rotation: check-and-set conflict, nothing lost; restrict during a rotation
   refused;
 * one audit event per step, `vks audit verify` passes, no password in any output or log."""
import glob
import json
import os
import shlex
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from smtprelay import Relay  # noqa: E402
from credtest import Cred  # noqa: E402

T = Checks()
ROOT = os.environ["ROOT"]
# listed in tests/test-secrets.d/rotate.txt
ENC_KEY = "Y3JlZDgzLXJvdGF0ZS1lbmMta2V5LVRFU1QtMDEyMzQ="   # 32 bytes, base64
AUDIT_KEY = "Y3JlZDgzLXJvdGF0ZS1hdWRpdC1rZXktVEVTVC0wMTI="  # 32 bytes, base64
PROVIDED = "cred83-Provider-Rotated-PW-5e2c9a"

C = None      # Cred helper
R = None      # the relay
HOOK = None   # the hook script that appends the new password to the relay's file


def write_hook(workdir):
    global HOOK
    HOOK = os.path.join(workdir, "set-hook.sh")
    with open(HOOK, "w") as f:
        f.write('#!/bin/sh\n# the relay operator\'s side: accept the new password too (overlap)\n'
                'read -r pw || exit 9\nprintf \'%s:%s\\n\' "$VKS_CRED_USERNAME" "$pw" >> "$1"\n')


def hook_cmd(target=None):
    return "/bin/sh %s %s" % (shlex.quote(HOOK), shlex.quote(target or R.creds_path))


def relay_passwords(user):
    out = []
    with open(R.creds_path) as f:
        for line in f:
            u, _, p = line.rstrip("\n").partition(":")
            if u == user:
                out.append(p)
    return out


def add_relay_cred(user, pw):
    with open(R.creds_path, "a") as f:
        f.write("%s:%s\n" % (user, pw))


def meta(vd, path):
    st, j = vd.call("GET", "/v1/secret/metadata/" + path)
    return j["data"] if st == 200 else None


def pending_status(vd, path):
    return vd.call("GET", "/v1/secret/data/vks-rotation/" + path)[0]


def new_cred(name, user, prefix="smtp-auth/", token=None, relay=True):
    args = ["cred", "create", name, "--username", user, "--domain", "example.com", "--ip", "127.0.0.1"]
    if relay:
        args += ["--relay", "127.0.0.1:%d" % R.port]
    if prefix != "smtp-auth/":
        args += ["--prefix", prefix]
    rc, out, err = C.vks(*args, keep_stdout=True, token=token)
    T.ok(rc == 0, "create %s" % name, err)
    pw = C.secret(out.strip())
    add_relay_cred(user, pw)
    return pw


def rotate(name, *extra, token=None, stdin=None, **env):
    return C.vks("cred", "rotate", name, "--relay-cafile", R.cafile, *extra, token=token, stdin=stdin, **env)


def resolves(path, want, what):
    kind, val = C.resolve(path, "example.com", "127.0.0.1")
    T.ok(kind == "OK" and val == want, what, kind if kind != "OK" else "a different password")


def settled(vd, path, what):
    """After a completed rotation: active, no rotation fields, pending record gone."""
    m = meta(vd, path)
    cm = m["custom_metadata"]
    T.ok(cm["state"] == "active" and "rotation_id" not in cm and "pending_version" not in cm and
         cm["rev"] == cm["current_version"] == str(m["current_version"]), "%s: state active, pointers follow" % what,
         cm)
    T.eq(pending_status(vd, path), 404, "%s: the pending record is gone" % what)
    return cm


# ------------------------------------------------------------------ the tests

def test_full_rotation(vd):
    path = "smtp-auth/full.example"
    pw0 = new_cred("full.example", "full-user")
    resolves(path, pw0, "before: the created password resolves")
    # stop after the test step: new password accepted by the relay, not yet current
    rc, out, err = rotate("full.example", "--set-hook", hook_cmd(), VKS_CRED_ROTATE_STOP_AFTER="test")
    T.eq(rc, 137, "drill: stopped after test")
    new = relay_passwords("full-user")[-1]
    C.secret(new)
    T.ok(new != pw0 and len(new) == 32, "the hook gave the relay a new 32-character password")
    resolves(path, pw0, "before finish the resolver still returns the old password")
    cm = meta(vd, path)["custom_metadata"]
    T.ok(cm["state"] == "rotating" and cm.get("pending_version") and cm.get("rotation_id"),
         "metadata: rotating, rotation_id, pending_version", cm)
    st, j = vd.kv2_get("vks-rotation/" + path)
    T.ok(st == 200 and j["data"]["data"]["pending_key"].startswith("ENC:v2:") and
         j["data"]["data"]["step"] == "test" and j["data"]["data"]["rotation_id"] == cm["rotation_id"],
         "the pending record: an envelope, the step, the rotation id", j and j["data"]["data"].get("step"))
    st, j = vd.kv2_get(path)
    T.ok("pending_key" not in j["data"]["data"], "the main path holds no pending password")
    rc, out, err = rotate("full.example", "--resume", "--json")
    res = json.loads(out)
    T.ok(rc == 0 and res["result"] == "success" and res["step"] == "finish" and res["rotation_id"] == cm["rotation_id"],
         "--resume finishes the same rotation", err[-400:])
    resolves(path, new, "after finish the resolver returns the new password")
    cm = settled(vd, path, "full")
    T.eq(cm["previous_version"], str(res["old_version"]), "previous_version is the old current version")
    oks = [e for e in R.auth_events() if e["user"] == "full-user"]
    T.ok(oks and oks[-1]["ok"] and oks[-1]["tls"] and oks[-1]["line"] == 2,
         "the relay saw AUTH PLAIN over TLS with the new password (its line 2)", oks[-1:])
    # an uninterrupted rotation, hook included
    rc, out, err = rotate("full.example", "--set-hook", hook_cmd(), "--json")
    res2 = json.loads(out)
    newer = C.secret(relay_passwords("full-user")[-1])
    T.ok(rc == 0 and res2["test"]["code"] == 235 and res2["test"]["tls_verified"], "a second rotation in one go",
         err[-400:])
    resolves(path, newer, "the newest password resolves")
    return pw0, new, newer


def test_second_refused(vd):
    path = "smtp-auth/twice.example"
    new_cred("twice.example", "twice-user")
    rc, _, _ = rotate("twice.example", "--set-hook", hook_cmd(), VKS_CRED_ROTATE_STOP_AFTER="create")
    T.eq(rc, 137, "first rotation stopped after create")
    before = meta(vd, path)
    rc, out, err = rotate("twice.example", "--set-hook", hook_cmd())
    T.ok(rc == 2 and "already in flight" in err and "--resume twice.example" in err and "--abort twice.example" in err,
         "a second rotation is refused naming --resume and --abort", err)
    T.eq(meta(vd, path), before, "the refused rotation wrote nothing")
    rc, out, err = C.vks("cred", "restrict", "twice.example", "--domain", "b.example")
    T.ok(rc == 2 and "rotation is in flight" in err, "restrict during a rotation: conflict", err)
    rc, _, err = rotate("twice.example", "--resume", "--set-hook", hook_cmd())
    T.eq(rc, 0, "--resume completes it")
    C.secret(relay_passwords("twice-user")[-1])


def test_kill_each_step(vd):
    for step in ("claim", "create", "set", "test", "finish-data"):
        name, user = "kill-%s.example" % step, "kill-%s" % step
        path = "smtp-auth/" + name
        pw0 = new_cred(name, user)
        rc, out, err = rotate(name, "--set-hook", hook_cmd(), VKS_CRED_ROTATE_STOP_AFTER=step)
        T.eq(rc, 137, "killed after %s" % step)
        for p in relay_passwords(user):
            C.secret(p)
        kind, val = C.resolve(path, "example.com", "127.0.0.1")
        want = relay_passwords(user)[-1] if step == "finish-data" else pw0
        T.ok(kind == "OK" and val == want, "killed after %s: the current password resolves (%s)" %
             (step, "the new one: already written" if step == "finish-data" else "the old one"))
        T.eq(meta(vd, path)["custom_metadata"]["state"], "rotating", "killed after %s: state rotating" % step)
        rc, out, err = rotate(name, "--resume", "--set-hook", hook_cmd())
        T.ok(rc == 0, "killed after %s: --resume completes" % step, err[-400:])
        pws = relay_passwords(user)
        for p in pws:
            C.secret(p)
        T.eq(len(pws), 2, "killed after %s: one new password for the relay (the hook ran once)" % step)
        resolves(path, pws[-1], "killed after %s: the new password resolves" % step)
        cm = settled(vd, path, "killed after %s" % step)
        T.ok(cm.get("previous_version") and int(cm["previous_version"]) < int(cm["current_version"]),
             "killed after %s: previous_version kept" % step)
        st, j = vd.kv2_get(path, version=int(cm["previous_version"]))
        T.ok(st == 200 and j["data"]["data"]["key"].startswith("ENC:"), "killed after %s: nothing lost" % step)


def test_half_claim(vd):
    """A claim cut between its data bump and its metadata write (Vault failed): --resume repairs."""
    path = "smtp-auth/half.example"
    pw0 = new_cred("half.example", "half-user")
    vd.fault(action="status", status=500, method="POST", path_prefix="/v1/secret/metadata/" + path, count=1)
    rc, out, err = rotate("half.example", "--set-hook", hook_cmd())
    vd.clear_faults()
    T.ok(rc == 2 and "--resume half.example repairs it" in err, "claim cut after its data write: exit 2, said how",
         err)
    resolves(path, pw0, "the old password resolves")
    rc, out, err = rotate("half.example", "--set-hook", hook_cmd())
    T.ok(rc == 2 and "--resume" in err and "describes version" in err, "a fresh rotate names the lag and --resume",
         err)
    rc, out, err = rotate("half.example", "--resume", "--set-hook", hook_cmd())
    T.ok(rc == 0 and "repair" in err, "--resume repairs the metadata and rotates", err[-400:])
    resolves(path, C.secret(relay_passwords("half-user")[-1]), "the new password resolves")
    settled(vd, path, "half claim")


def test_vault_down(vd):
    path = "smtp-auth/down.example"
    pw0 = new_cred("down.example", "down-user")
    # the finish step's data write (claim is a PATCH) fails: Vault answers 503
    vd.fault(action="status", status=503, method="POST", path_prefix="/v1/secret/data/" + path, count=1)
    rc, out, err = rotate("down.example", "--set-hook", hook_cmd())
    vd.clear_faults()
    T.ok(rc == 2 and "unavailable" in err, "Vault failing at finish: exit 2 with Vault's error", err[-300:])
    C.secret(relay_passwords("down-user")[-1])
    resolves(path, pw0, "the old password still resolves")
    T.eq(meta(vd, path)["custom_metadata"]["state"], "rotating", "state rotating")
    # Vault unreachable at create: the connection is closed
    path2 = "smtp-auth/down2.example"
    pw2 = new_cred("down2.example", "down2-user")
    vd.fault(action="status", status=502, method="POST", path_prefix="/v1/secret/data/vks-rotation/" + path2, count=1)
    rc, out, err = rotate("down2.example", "--set-hook", hook_cmd())
    vd.clear_faults()
    T.ok(rc == 2 and "(unavailable)" in err, "Vault failing at create (502): exit 2", err[-300:])
    resolves(path2, pw2, "the old password still resolves")
    for name, user, p in (("down.example", "down-user", path), ("down2.example", "down2-user", path2)):
        rc, out, err = rotate(name, "--resume", "--set-hook", hook_cmd())
        T.ok(rc == 0, "%s: --resume once Vault is back completes" % name, err[-300:])
        pws = relay_passwords(user)
        C.secret(pws[-1])
        T.eq(len(pws), 2, "%s: the hook ran once" % name)
        resolves(p, pws[-1], "%s: the new password resolves" % name)
        settled(vd, p, name)


def test_relay_refuses(vd):
    path = "smtp-auth/refused.example"
    pw0 = new_cred("refused.example", "refused-user")
    stage = os.path.join(vd.workdir, "staged-creds")
    open(stage, "w").close()
    rc, out, err = rotate("refused.example", "--set-hook", hook_cmd(stage), "--json")
    staged = open(stage).read().strip().partition(":")[2]
    C.secret(staged)
    res = json.loads(out)
    T.ok(rc == 2 and res["code"] == "rejected" and res["test"]["code"] == 535 and "535" in err,
         "the relay refuses the pending password: exit 2, 535 named", err[-300:])
    T.ok("--resume refused.example" in err and "--abort refused.example" in err, "the error says how to go on")
    resolves(path, pw0, "current unchanged: the old password resolves")
    T.eq(meta(vd, path)["custom_metadata"]["state"], "rotating", "state rotating")
    add_relay_cred("refused-user", staged)      # the relay operator applies it
    rc, out, err = rotate("refused.example", "--resume")
    T.eq(rc, 0, "relay fixed: --resume completes (the hook is not run again)")
    resolves(path, staged, "the new password resolves")
    settled(vd, path, "refused then fixed")
    # refused then aborted
    path = "smtp-auth/abort.example"
    pw1 = new_cred("abort.example", "abort-user")
    rc, out, err = rotate("abort.example", "--set-hook", "cat >/dev/null")
    T.eq(rc, 2, "refused again")
    rc, out, err = C.vks("cred", "rotate", "--abort", "abort.example", "--json")
    T.ok(rc == 0 and json.loads(out)["result"] == "success", "--abort ends it", err)
    resolves(path, pw1, "the old password resolves after the abort")
    settled(vd, path, "aborted")
    rc, out, err = C.vks("cred", "rotate", "--abort", "abort.example")
    T.ok(rc == 2 and "no rotation in flight" in err, "a second --abort: nothing to abort (exit 2)", err)


def test_hook_failures(vd):
    path = "smtp-auth/hook.example"
    pw0 = new_cred("hook.example", "hook-user")
    rc, out, err = rotate("hook.example", "--set-hook", "cat >/dev/null; exit 3")
    T.ok(rc == 2 and "exited with status 3" in err and "--resume hook.example" in err, "a failing hook: exit 2", err)
    resolves(path, pw0, "current unchanged")
    rc, _, _ = C.vks("cred", "rotate", "--abort", "hook.example")
    T.eq(rc, 0, "aborted")
    pidfile = os.path.join(vd.workdir, "hook.pid")
    t0 = time.monotonic()
    rc, out, err = rotate("hook.example", "--set-hook", "echo $$ > %s; sleep 60 & sleep 60" % shlex.quote(pidfile),
                          "--hook-timeout", "1")
    took = time.monotonic() - t0
    T.ok(rc == 2 and "no answer within 1000 ms" in err, "a hanging hook: exit 2 after its deadline", err[-300:])
    T.ok(took < 30, "the hang did not hold the rotation (%.1f s)" % took)
    pgid = int(open(pidfile).read())
    alive = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie is dead (PID 1 may not reap it here)
            alive.append(stat)
    T.eq(alive, [], "the hook's whole process group was killed (its background sleep too)")
    resolves(path, pw0, "current unchanged after the timeout")
    rc, _, err = rotate("hook.example", "--resume", "--set-hook", hook_cmd())
    T.eq(rc, 0, "a fixed hook: --resume completes")
    resolves(path, C.secret(relay_passwords("hook-user")[-1]), "the new password resolves")


def test_relay_checks(vd):
    """The test step only talks to an allowed address, over verified TLS."""
    path = "smtp-auth/fenced.example"
    rc, out, err = C.vks("cred", "create", "fenced.example", "--username", "fenced-user", "--all-domains", "--ip",
                         "192.0.2.10", "--relay", "127.0.0.1:%d" % R.port, keep_stdout=True)
    pw0 = C.secret(out.strip())
    rc, out, err = rotate("fenced.example", "--set-hook", hook_cmd())
    C.secret(relay_passwords("fenced-user")[-1])
    T.ok(rc == 2 and "allowed_hosts" in err and "restricted" in err,
         "the relay's address is not in allowed_hosts: exit 2 before anything is sent", err[-300:])
    T.eq([e for e in R.auth_events() if e["user"] == "fenced-user"], [], "the relay saw no AUTH for it")
    kind, val = C.resolve(path, "example.com", "192.0.2.10")
    T.ok(kind == "OK" and val == pw0, "current unchanged")
    T.eq(C.vks("cred", "rotate", "--abort", "fenced.example")[0], 0, "aborted")
    plain = Relay(vd.workdir, creds=[], tls=False, name="plain-relay")
    try:
        pw1 = new_cred("plain.example", "plain-user", relay=False)
        rc, out, err = rotate("plain.example", "--relay", "127.0.0.1:%d" % plain.port, "--set-hook", hook_cmd())
        C.secret(relay_passwords("plain-user")[-1])
        T.ok(rc == 2 and "(tls)" in err, "a relay without STARTTLS: exit 2, the password is not sent", err[-300:])
        T.eq(plain.auth_events(), [], "the plain relay saw no AUTH")
        resolves("smtp-auth/plain.example", pw1, "current unchanged")
        # a certificate the CA file does not vouch for: the system's CAs do not know the test relay
        rc, out, err = C.vks("cred", "rotate", "plain.example", "--resume", "--relay", "127.0.0.1:%d" % R.port)
        T.ok(rc == 2 and "(tls)" in err, "an unverifiable relay certificate: exit 2", err[-300:])
        T.eq([e for e in R.auth_events() if e["user"] == "plain-user"], [], "no AUTH sent to it either")
        rc, out, err = rotate("plain.example", "--resume", "--relay", "127.0.0.1:%d" % R.port)
        T.eq(rc, 0, "with the relay's CA file: --resume completes")
    finally:
        plain.stop()


def test_delete_in_flight(vd):
    path = "smtp-auth/gone.example"
    new_cred("gone.example", "gone-user")
    rc, _, _ = rotate("gone.example", "--set-hook", hook_cmd(), VKS_CRED_ROTATE_STOP_AFTER="set")
    C.secret(relay_passwords("gone-user")[-1])
    T.ok(rc == 137 and pending_status(vd, path) == 200, "a rotation in flight with its pending record")
    rc, _, err = C.vks("cred", "delete", "gone.example", "--confirm", "gone-user")
    T.eq(rc, 0, "delete during a rotation")
    T.eq((meta(vd, path), vd.call("GET", "/v1/secret/metadata/vks-rotation/" + path)[0]), (None, 404),
         "the credential and its pending record are both gone")


def test_provided(vd):
    path = "smtp-auth/prov.example"
    new_cred("prov.example", "prov-user")
    add_relay_cred("prov-user", PROVIDED)  # the provider changed it at the relay
    rc, out, err = rotate("prov.example", "--password-stdin", stdin=(PROVIDED + "\n").encode())
    T.ok(rc == 0, "--password-stdin, no hook: rotated", err[-300:])
    resolves(path, PROVIDED, "the provider's password resolves")


def test_rollback(vd, pw_before, pw_after):
    path = "smtp-auth/full.example"
    before = meta(vd, path)["custom_metadata"]
    op = vd.create_token(policies=["cred-operator"], display_name="op-only")
    rc, out, err = C.vks("cred", "rollback", "full.example", "--reason", "relay broke", token=op)
    T.ok(rc == 2 and "may not read" in err and "cred-support" in err, "rollback with cred-operator alone: refused",
         err)
    T.eq(meta(vd, path)["custom_metadata"], before, "nothing written")
    both = vd.create_token(policies=["cred-operator", "cred-support"], display_name="op-support")
    rc, out, err = C.vks("cred", "rollback", "full.example", "--reason", "relay broke", "--json", token=both)
    T.ok(rc == 0 and json.loads(out)["result"] == "success", "rollback with cred-operator + cred-support", err)
    resolves(path, pw_before, "rollback: the previous password resolves again")
    cm = meta(vd, path)["custom_metadata"]
    T.ok(cm["previous_version"] == before["current_version"] and cm["rotated"] == before["previous_rotated"],
         "rollback: pointers swapped, rotated is the old password's time", cm)
    rc, _, err = C.vks("cred", "rollback", "full.example", token=both)
    T.ok(rc == 1 and "--reason" in err, "rollback needs --reason", err)
    ev = [x for x in C.audit_lines() if x.get("type") == "cred.rollback"]
    T.ok(len(ev) == 2 and ev[0]["result"] == "failure" and ev[0]["operator"] == "token-op-only" and
         ev[1]["result"] == "success" and ev[1]["reason"] == "relay broke" and ev[1]["operator"] == "token-op-support",
         "rollback audited: the refusal and the act, with operator and reason", [(x["result"], x["operator"]) for x in ev])
    rc, _, err = C.vks("cred", "rollback", "full.example", "--reason", "forward again", token=both)
    resolves(path, pw_after, "a second rollback goes forward again")


def test_roles(vd):
    ex = os.path.join(ROOT, "policy-examples")
    for name in ("mta-reader", "cred-operator", "cred-support", "auditor", "cred-tenant-acme", "cred-tenant-globex"):
        with open(os.path.join(ex, name + ".hcl")) as f:
            vd.policy(name, f.read())
    toks = {r: vd.create_token(policies=[r], display_name=r) for r in
            ("mta-reader", "cred-operator", "cred-support", "auditor", "cred-tenant-acme")}
    new_cred("roles.example", "roles-user")
    for role in ("mta-reader", "cred-support", "auditor"):
        before = meta(vd, "smtp-auth/roles.example")
        rc, out, err = rotate("roles.example", "--set-hook", hook_cmd(), token=toks[role])
        T.ok(rc == 2 and "permission denied" in err, "%s: rotate denied (exit 2)" % role, err[-300:])
        T.eq(meta(vd, "smtp-auth/roles.example"), before, "%s: nothing written" % role)
        T.eq(pending_status(vd, "smtp-auth/roles.example"), 404, "%s: no pending record" % role)
        ev = [x for x in C.audit_lines() if x.get("type") == "cred.rotate.claim" and x["operator"] == "token-" + role]
        T.ok(ev and ev[-1]["result"] == "failure" and ev[-1]["code"] == "permission_denied",
             "%s: the denied rotation is audited" % role)
    rc, out, err = rotate("roles.example", "--set-hook", hook_cmd(), token=toks["cred-operator"])
    T.ok(rc == 0, "cred-operator: rotate allowed (no read of the password itself needed)", err[-300:])
    resolves("smtp-auth/roles.example", C.secret(relay_passwords("roles-user")[-1]), "operator's rotation resolves")
    pre = "smtp-auth/acme/"
    new_cred("mail.acme.example", "acme-user", prefix=pre, token=toks["cred-tenant-acme"])
    rc, out, err = rotate("mail.acme.example", "--prefix", pre, "--set-hook", hook_cmd(), token=toks["cred-tenant-acme"])
    T.ok(rc == 0, "tenant acme: rotate in its own prefix allowed", err[-300:])
    C.secret(relay_passwords("acme-user")[-1])
    new_cred("mail.globex.example", "globex-user", prefix="smtp-auth/globex/")
    rc, out, err = rotate("mail.globex.example", "--prefix", "smtp-auth/globex/", "--set-hook", hook_cmd(),
                          token=toks["cred-tenant-acme"])
    T.ok(rc == 2 and "permission denied" in err, "tenant acme: rotate in globex's prefix denied", err[-300:])


def test_concurrent(vd):
    path = "smtp-auth/race.example"
    pw0 = new_cred("race.example", "race-user")
    # the rotation's claim (a PATCH with cas) is held back 1.5 s; a restrict starts meanwhile
    vd.fault(action="latency", latency_ms=1500, method="PATCH", path_prefix="/v1/secret/data/" + path, count=1)
    res = {}

    def run(key, fn, delay):
        time.sleep(delay)
        res[key] = fn()

    a = threading.Thread(target=run, args=("rot", lambda: rotate("race.example", "--set-hook", hook_cmd()), 0))
    b = threading.Thread(target=run, args=("res", lambda: C.vks("cred", "restrict", "race.example", "--domain",
                                                                 "b.example"), 0.5))
    a.start(); b.start(); a.join(); b.join()
    vd.clear_faults()
    T.ok(res["res"][0] == 0 and res["rot"][0] == 2 and "check-and-set" in res["rot"][2],
         "restrict racing a rotation: the restrict wins, the rotation loses the check-and-set (exit 2)",
         (res["rot"][0], res["rot"][2][-300:]))
    cm = meta(vd, path)["custom_metadata"]
    T.ok("b.example" in cm["allowed_domains"] and cm["state"] == "active" and "rotation_id" not in cm,
         "the restrict's edit is stored, no rotation half-claimed", cm)
    T.eq(pending_status(vd, path), 404, "no pending record")
    resolves(path, pw0, "the password is unchanged")
    rc, _, err = rotate("race.example", "--set-hook", hook_cmd())
    T.eq(rc, 0, "the rotation run again succeeds")
    resolves(path, C.secret(relay_passwords("race-user")[-1]), "and its password resolves")


def test_bad_input(vd):
    cases = [
        (["rotate", "full.example", "--relay", "nohost"], "--relay"),
        (["rotate", "full.example", "--relay", "h.example:0"], "port"),
        (["rotate", "full.example", "--hook-timeout", "0"], "--hook-timeout"),
        (["rotate", "../x"], "NAME"),
        (["rotate", "--resume", "--abort", "full.example"], "exclude"),
        (["create", "x.example", "--username", "x", "--all-domains", "--relay", "a b:25"], "--relay"),
        (["restrict", "full.example", "--relay", "[::1]:99999"], "port"),
    ]
    for args, part in cases:
        rc, out, err = C.vks("cred", *args)
        T.ok(rc == 1 and part in err, "bad input %r: exit 1 naming %s" % (args[1:], part), err[-200:])
    new_cred("norelay.example", "norelay-user", relay=False)
    rc, out, err = C.vks("cred", "rotate", "norelay.example")
    T.ok(rc == 1 and "--relay" in err, "no relay stored or given: exit 1 before anything is written", err)
    T.eq(meta(vd, "smtp-auth/norelay.example")["custom_metadata"]["state"], "active", "still active")
    rc, out, err = C.vks("cred", "restrict", "norelay.example", "--relay", "[::1]:2525", "--json")
    T.ok(rc == 0 and json.loads(out)["relay"] == "[::1]:2525", "restrict --relay stores the relay", err)
    rc, out, err = C.vks("cred", "rotate", "--resume", "norelay.example")
    T.ok(rc == 2 and "no rotation in flight" in err, "--resume with nothing in flight: exit 2", err)


def test_audit(vd):
    lines = C.audit_lines()
    kinds = {x["type"] for x in lines}
    want = {"cred.rotate.claim", "cred.rotate.create", "cred.rotate.set", "cred.rotate.test", "cred.rotate.finish",
            "cred.rotate.abort", "cred.rollback"}
    T.ok(want <= kinds, "one event type per step", sorted(want - kinds))
    rot = [x for x in lines if x["type"].startswith("cred.rotate.") and x["result"] == "success"]
    T.ok(all("rotation_id=" in (x.get("detail") or "") and x["operator"] and x["operator_accessor"] for x in rot),
         "every step names the rotation id and the operator")
    fin = [x for x in rot if x["type"] == "cred.rotate.finish"]
    T.ok(fin and all(x["secret_version"] > 1 for x in fin), "finish names the new version")
    raw = open(C.audit_file).read()
    T.ok("ENC:" not in raw and vd.root_token not in raw, "no envelope and no token in the trail")
    ok, detail = C.audit_verify()
    T.ok(ok, "vks audit verify accepts the trail", detail)


def test_no_secret_anywhere(vd):
    logs = [open(os.path.join(R.dir, "relay.out")).read(), open(R.log_path).read()]
    T.ok(len(C.secrets) >= 20, "passwords collected (%d)" % len(C.secrets))
    C.secret(PROVIDED)
    leaks = C.leaks(logs)
    T.ok(not leaks, "no password in any output, the audit trail, Vault's or the relay's log", "%d hit(s)" % len(leaks))


def main():
    global C, R
    with VaultDev() as vd:
        C = Cred(vd, ENC_KEY, AUDIT_KEY)
        write_hook(vd.workdir)
        R = Relay(vd.workdir, creds=[])
        try:
            pw0, new, newer = test_full_rotation(vd)
            T.run(test_second_refused, vd)
            T.run(test_kill_each_step, vd)
            T.run(test_half_claim, vd)
            T.run(test_vault_down, vd)
            T.run(test_relay_refuses, vd)
            T.run(test_hook_failures, vd)
            T.run(test_relay_checks, vd)
            T.run(test_provided, vd)
            T.run(test_delete_in_flight, vd)
            T.run(test_bad_input, vd)
            T.run(test_roles, vd)
            T.run(test_rollback, vd, new, newer)
            T.run(test_concurrent, vd)
            T.run(test_audit, vd)
            T.run(test_no_secret_anywhere, vd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        finally:
            R.stop()
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    sys.exit(T.finish())


main()
