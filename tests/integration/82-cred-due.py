"""vks cred due against build/vault-dev over HTTPS (issue 12, phase 2, the rotation policy):
 * ages simulated by rewriting `rotated` / `due` / `rotation_days` in custom_metadata: overdue,
   due within the window, not due, a per-credential policy, an earlier stored due (it wins; a
   later one never extends the policy);
 * unparseable or missing dates fail closed: listed as invalid (naming the field), exit 3, never
   skipped; unmanaged secrets are counted and said, not judged;
 * exit codes for a systemd timer: 0 nothing, 4 only due-soon, 3 overdue/invalid, 1 local, 2 Vault;
 * the policy: VKS_CRED_ROTATION_DAYS (create writes due with it, due applies it), bad values exit 1;
 * the auditor policy (metadata only) is enough to run it;
 * the example units in policy-examples/ pass systemd-analyze verify, and their first ExecStart
   (the listing) runs against vault-dev (the rotation step: 85-cred-rotate-due)."""
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

T = Checks()
ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
VKS = os.path.join(ROOT, BUILD, "vks") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vks")
EX = os.path.join(ROOT, "policy-examples")
ENC_KEY = "Y3JlZDgxLXJvbGVzLWVuYy1rZXktVEVTVC0wMTIzNDU="  # tests/test-secrets.d/cred2.txt
SECRETS, OUTPUTS = [], []
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def ts(days_ago):
    return (NOW - datetime.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def env_for(vd, token=None, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "VKS_"))}
    e.update(VAULT_ADDR=vd.addr, VAULT_CACERT=vd.cacert, VAULT_TOKEN=token or vd.root_token, HOME=vd.workdir,
             VKS_ENCRYPTION_KEY=ENC_KEY, VAULT_MAX_RETRIES="0")
    e.update(extra)
    return e


def vks(vd, *args, token=None, **extra):
    p = subprocess.run([VKS, "cred", *args], capture_output=True, timeout=60, env=env_for(vd, token, **extra),
                       stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if args[0] == "create":
        SECRETS.append(out.strip())
    else:
        OUTPUTS.append(out)
    OUTPUTS.append(err)
    return p.returncode, out, err


def create(vd, name, tenant=None, **extra):
    t = ["--tenant", tenant] if tenant else []
    rc, _, err = vks(vd, "create", name, "--username", "u-" + name, "--all-domains", *t, **extra)
    T.eq(rc, 0, "create %s" % name)


def rows(out):
    return {r["name"]: r for r in json.loads(out)}


def setup(vd):
    for n in ("old.example", "soon.example", "fresh.example", "short.example", "early.example", "late.example",
              "bad-rot.example", "bad-due.example", "no-rot.example", "bad-days.example"):
        create(vd, n)
    create(vd, "t1-soon.example", tenant="t1")
    create(vd, "t1-fresh.example", tenant="t1")
    set_meta(vd, "old.example", rotated=ts(200), due=ts(20))
    set_meta(vd, "soon.example", rotated=ts(170), due=None)           # due in 10 days
    set_meta(vd, "t1-soon.example", rotated=ts(170), due=ts(-10))
    set_meta(vd, "short.example", rotated=ts(40), rotation_days="30")  # per-credential policy
    set_meta(vd, "early.example", due=ts(1))                          # compromise: due yesterday
    set_meta(vd, "late.example", rotated=ts(181), due=ts(-3000))      # a later due never extends
    set_meta(vd, "bad-rot.example", rotated="last tuesday")
    set_meta(vd, "bad-due.example", due="2026-02-30T00:00:00Z")
    set_meta(vd, "no-rot.example", rotated=None)
    set_meta(vd, "bad-days.example", rotation_days="90d")
    vd.kv2_put("smtp-auth/hand-made", {"key": "not managed"})


def test_listing(vd):
    rc, out, err = vks(vd, "due", "--json")
    r = rows(out)
    T.eq(rc, 3, "overdue and invalid credentials: exit 3")
    want = {"old.example": "overdue", "soon.example": "due-soon", "t1-soon.example": "due-soon",
            "short.example": "overdue", "early.example": "overdue", "late.example": "overdue",
            "bad-rot.example": "invalid", "bad-due.example": "invalid", "no-rot.example": "invalid",
            "bad-days.example": "invalid"}
    T.eq({k: v["status"] for k, v in r.items()}, want, "exactly the due, due-soon and invalid ones (default 30d)")
    T.ok(r["soon.example"]["days_left"] in (9, 10) and r["soon.example"]["rotation_days"] == 180 and
         r["soon.example"]["policy"] == "default", "due-soon: days left and the default 180-day policy",
         r["soon.example"])
    T.ok(r["short.example"]["policy"] == "rotation_days" and r["short.example"]["rotation_days"] == 30,
         "a per-credential rotation_days applies", r["short.example"])
    T.ok(r["early.example"]["stored_due_earlier"] and r["early.example"]["days_left"] == -1,
         "an earlier stored due wins (compromise)", r["early.example"])
    T.ok(not r["late.example"]["stored_due_earlier"] and r["late.example"]["due"] == ts(1),
         "a later stored due does not extend the policy", r["late.example"])
    for n, field in (("bad-rot.example", "rotated"), ("bad-due.example", "due"), ("no-rot.example", "rotated"),
                     ("bad-days.example", "rotation_days")):
        T.ok(field in (r[n]["invalid"] or "") and r[n]["due"] is None, "invalid %s names %s" % (n, field), r[n])
    order = [x["name"] for x in json.loads(out)]
    T.ok(all(r[n]["status"] == "invalid" for n in order[:4]), "invalid ones first, then by due date", order)
    T.ok("4 invalid" in err and "1 secret under secret/smtp-auth/ not managed" in err,
         "the summary counts invalid and unmanaged secrets", err)
    rc, out, err = vks(vd, "due")
    T.ok(rc == 3 and "bad-due.example" in out and "invalid" in out and "due \"2026-02-30T00:00:00Z\"" in out,
         "the table says why a row is invalid", out)
    rc, out, _ = vks(vd, "due", "--within", "0", "--json")
    T.ok(rc == 3 and "soon.example" not in rows(out) and "old.example" in rows(out), "--within 0: overdue only")


def test_exit_codes(vd):
    rc, out, _ = vks(vd, "due", "--tenant", "t1", "--json")
    T.ok(rc == 4 and list(rows(out)) == ["t1-soon.example"], "only something due soon: exit 4", (rc, out))
    rc, out, _ = vks(vd, "due", "--tenant", "t1", "--within", "5d", "--json")
    T.ok(rc == 0 and json.loads(out) == [], "nothing due: exit 0 and []", (rc, out))
    rc, out, _ = vks(vd, "due", "--tenant", "t1", "--within", "2w")
    T.ok(rc == 4 and "t1-soon.example" in out, "--within 2w", out)
    rc, out, _ = vks(vd, "due", "--tenant", "t1", "--json", VKS_CRED_ROTATION_DAYS="160")
    T.ok(rc == 3 and rows(out)["t1-soon.example"]["status"] == "overdue", "VKS_CRED_ROTATION_DAYS=160: overdue")
    for bad in ("0", "3651", "180d", "x"):
        rc, _, err = vks(vd, "due", VKS_CRED_ROTATION_DAYS=bad)
        T.ok(rc == 1 and "VKS_CRED_ROTATION_DAYS" in err, "VKS_CRED_ROTATION_DAYS=%s: exit 1 naming it" % bad, err)
    for bad in ("30", "1y", "-1d", "3651d", ""):
        rc, _, err = vks(vd, "due", "--within", bad)
        T.ok(rc == 1 and "--within" in err, "--within %r: exit 1 naming it" % bad, err)
    vd.fault(action="status", status=503, method="LIST", path_prefix="/v1/secret/metadata/smtp-auth", count=1)
    rc, _, err = vks(vd, "due")
    vd.clear_faults()
    T.ok(rc == 2, "Vault unavailable: exit 2", err)
    tok = vd.create_token(policies=["default"], display_name="nobody")
    rc, _, err = vks(vd, "due", token=tok)
    T.ok(rc == 2 and "permission denied" in err, "a token without the policy: exit 2", err)


def test_policy_at_create(vd):
    create(vd, "ninety.example", VKS_CRED_ROTATION_DAYS="90")
    st, j = vd.call("GET", "/v1/secret/metadata/smtp-auth/ninety.example")
    cm = j["data"]["custom_metadata"]
    r = datetime.datetime.strptime(cm["rotated"], "%Y-%m-%dT%H:%M:%SZ")
    d = datetime.datetime.strptime(cm["due"], "%Y-%m-%dT%H:%M:%SZ")
    T.eq((d - r).days, 90, "create writes due = rotated + VKS_CRED_ROTATION_DAYS")
    rc, _, err = vks(vd, "create", "x.example", "--username", "x", "--all-domains", VKS_CRED_ROTATION_DAYS="-1")
    T.ok(rc == 1 and "VKS_CRED_ROTATION_DAYS" in err, "create with a bad policy: exit 1", err)
    T.eq(vd.call("GET", "/v1/secret/metadata/smtp-auth/x.example")[0], 404, "and nothing written")


def test_auditor_runs_it(vd):
    with open(os.path.join(EX, "auditor.hcl")) as f:
        vd.policy("auditor", f.read())
    tok = vd.create_token(policies=["auditor"], display_name="timer")
    vd.reset_counters()
    rc, out, _ = vks(vd, "due", "--json", token=tok)
    T.ok(rc == 3 and "old.example" in rows(out), "the auditor policy (metadata only) runs vks cred due")
    T.ok(not any("/data/" in k for k in vd.counters()), "due reads no data")


def unit_text(name):
    with open(os.path.join(EX, name)) as f:
        return f.read()


def test_units(vd):
    svc, tim = unit_text("vks-cred-due.service"), unit_text("vks-cred-due.timer")
    execs = [l.split("=", 1)[1] for l in svc.splitlines() if l.startswith("ExecStart")]
    T.eq(execs[0], "-/usr/bin/vks cred due --within 30d",
         "the service lists what is due first, its status ignored ('-'): rotate --due follows (85)")
    T.ok("OnCalendar=daily" in tim and "Persistent=true" in tim, "daily, catching up")
    # the unit's first command line against vault-dev: exit 3 (overdue), which '-' ignores
    argv = shlex.split(execs[0].lstrip("-"))
    argv[0] = VKS
    p = subprocess.run(argv, capture_output=True, timeout=60, env=env_for(vd))
    OUTPUTS.append(p.stdout.decode() + p.stderr.decode())
    T.eq(p.returncode, 3, "ExecStart as written: exit 3 with overdue credentials")
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


def test_no_secret(vd):
    logs = [vd.stderr_text()]
    leaks = [i for i, s in enumerate(SECRETS) for o in OUTPUTS + logs if s and s in o]
    T.ok(len(SECRETS) >= 10 and not leaks, "no generated password in any due output or the server log")


def main():
    with VaultDev() as vd:
        try:
            setup(vd)
            T.run(test_listing, vd)
            T.run(test_exit_codes, vd)
            T.run(test_policy_at_create, vd)
            T.run(test_auditor_runs_it, vd)
            T.run(test_units, vd)
            T.run(test_no_secret, vd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            T.ok(False, "the suite ran to the end")
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    sys.exit(T.finish())


main()
