"""vks audit report against a real trail (issue 13, "Evidence for auditors"): build/vault-dev over
HTTPS, vks cred create / restrict / reveal / delete and Lua-module lookups (served, refused by the
restrictions, failed not_found) write one hash-chained audit log; then
 * text, --json and --csv report exactly the lookup groups (credential x actor, counts, first/last),
   the reveal with operator and reason, every administrative act with its result, and the chain
   status per file;
 * a period starting between the two phases leaves out the earlier events (create, first lookups);
 * a tampered line: the report opens with the broken chain, names the file and line, exits 1;
 * no audit key: "unverifiable without the key", exit 3; another key likewise;
 * usage errors exit 2 naming the option; no output holds a password or a key."""
import csv
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from credtest import Cred, RESOLVE_LUA, set_meta  # noqa: E402

T = Checks()
ENC_KEY = "YXVkaXRyZXBvcnQ4Ny1lbmMta2V5LVRFU1QtMDEyMzQ="    # tests/test-secrets.d/auditreport.txt
AUDIT_KEY = "YXVkaXRyZXBvcnQ4Ny1hdWQta2V5LVRFU1QtMDEyMzQ="
OTHER_KEY = "YXVkaXRyZXBvcnQ4Ny1vdGhlci1rZXktVEVTVC0wMTI="


def lookup(c, path, domain):
    """One resolve through the Lua module, audited into the same file."""
    p = subprocess.run(["lua5.4", c.script, path, domain, ""], capture_output=True, timeout=60, env=c.env())
    c.outputs.append(p.stderr.decode(errors="replace"))
    return p.stdout.decode(errors="replace").split(" ", 1)[0]


def report(c, *args, key=True):
    extra = {} if key else {"VKS_AUDIT_KEY": ""}
    env = c.env(**extra)
    if not key:
        del env["VKS_AUDIT_KEY"]
    return c.vks("audit", "report", *args, env=env)


def ts_of(line):
    return line["ts"]


def main():
    with VaultDev() as vd:
        c = Cred(vd, enc_key=ENC_KEY, audit_key=AUDIT_KEY)
        rc, out, err = c.vks("cred", "create", "example.com", "--username", "relay87@example.com",
                             "--domain", "example.com", keep_stdout=True)
        T.eq(rc, 0, "create")
        pw = c.secret(out.strip())
        T.eq(lookup(c, "smtp-auth/example.com", "example.com"), "OK", "phase 1 lookup served")
        time.sleep(1.1)
        cut = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=1)
        time.sleep(1.2)
        for dom in ("example.com", "example.com", "other.org"):
            lookup(c, "smtp-auth/example.com", dom)
        lookup(c, "smtp-auth/missing.example", "example.com")
        rc, out, err = c.vks("cred", "reveal", "example.com", "--reason", "ticket 8701 support", "--force-stdout",
                             keep_stdout=True)
        T.eq(rc, 0, "reveal")
        T.eq(out.strip(), pw, "reveal shows the password")
        rc, _, err = c.vks("cred", "restrict", "example.com", "--domain", "other.org")
        T.eq(rc, 0, "restrict")
        rc, _, err = c.vks("cred", "delete", "nope.example", "--confirm", "x")
        T.ok(rc != 0, "delete of a missing credential fails (recorded as a failure)")
        rc, _, err = c.vks("cred", "delete", "example.com", "--confirm", "relay87@example.com")
        T.eq(rc, 0, "delete")
        ok, why = c.audit_verify()
        T.ok(ok, "vks audit verify accepts the trail", why)
        lines = c.audit_lines()
        check_reports(c, vd, lines, cut)
        check_broken(c, vd)
        check_usage(c)
        check_vault(c, vd)
        T.eq(c.leaks(), [], "no password in any output, report or audit line")
    return T.finish()


def expected(lines, lo):
    """What the report must hold, computed from the trail itself (ts >= lo)."""
    ev = [e for e in lines if e["ts"][:19] >= lo[:19]]
    look = {}
    for e in ev:
        if e["type"] != "secret.lookup":
            continue
        g = look.setdefault(e["mount"] + "/" + e["path"], dict(n=0, s=0, r=0, f=0, first=e["ts"], last=None,
                                                                 actor="%s@%s uid %d" % (
                                                                     e["actor"]["program"], e["actor"]["host"],
                                                                     e["actor"]["uid"])))
        g["n"] += 1
        g["last"] = e["ts"]
        if e["result"] == "success":
            g["s"] += 1
        elif e["code"] == "restricted":
            g["r"] += 1
        else:
            g["f"] += 1
    acts = [e for e in ev if e["type"].startswith(("cred.", "backup."))]
    return ev, look, acts


def check_text(c, out, look, acts, nev, total):
    T.ok(out.startswith("audit report "), "text: starts with the period (no warning on a verified chain)", out[:200])
    T.ok("chain: verified; %d events read, %d in the period\n" % (total, nev) in out, "text: chain verified, counts",
         out[:300])
    T.ok("  file %s: verified\n" % c.audit_file in out, "text: the file is verified")
    for cred, g in look.items():
        want = "  %s by %s: %d (served %d, refused %d, failed %d), first %s, last %s\n" % (
            cred, g["actor"], g["n"], g["s"], g["r"], g["f"], g["first"], g["last"])
        T.ok(want in out, "text: lookup group " + cred, want)
    T.ok("lookups by credential and actor: %d\n" % len(look) in out, "text: number of lookup groups")
    for a in acts:
        line = "  %s %s %s/%s by root: %s" % (a["ts"], a["type"], a["mount"], a["path"], a["result"])
        T.ok(line in out, "text: act " + a["type"] + " " + a["path"], line)
    rev = [a for a in acts if a["type"] == "cred.reveal"]
    T.ok("reveals: %d\n" % len(rev) in out and 'reason "ticket 8701 support"' in out,
         "text: the reveal with its operator and reason")
    T.ok("rotations finished: 0\n" in out, "text: no rotation finished")


def check_json(c, out, look, acts, nev):
    d = json.loads(out)
    T.eq(d["verification"]["status"], "verified", "json: verified")
    T.eq(d["verification"]["files"], [{"file": c.audit_file, "status": "verified", "broken_line": None}],
         "json: per-file status")
    T.eq(d["events_in_period"], nev, "json: events in the period")
    got = {g["credential"]: (g["actor"], g["count"], g["served"], g["refused"], g["failed"], g["first"], g["last"])
           for g in d["lookups"]}
    T.eq(got, {k: (g["actor"], g["n"], g["s"], g["r"], g["f"], g["first"], g["last"]) for k, g in look.items()},
         "json: lookup groups exactly")
    T.eq([(a["type"], a["ts"], a["operator"], a["result"], a["code"]) for a in d["admin"] + d["reveals"]
          if True], [(a["type"], a["ts"], "root", a["result"], a["code"]) for a in acts if a["type"] != "cred.reveal"] +
         [(a["type"], a["ts"], "root", a["result"], a["code"]) for a in acts if a["type"] == "cred.reveal"],
         "json: every administrative act, reveals apart")
    T.eq([r["reason"] for r in d["reveals"]], ["ticket 8701 support"] * len(d["reveals"]), "json: reveal reasons")
    T.eq([(a["type"], a["code"]) for a in d["failed_admin"]],
         [(a["type"], a["code"]) for a in acts if a["result"] != "success"], "json: failed acts")
    T.eq(d["overdue"], None, "json: overdue not checked without --vault")
    return d


def check_csv(c, out, look, acts):
    rows = list(csv.reader(io.StringIO(out)))
    T.eq(rows[0], ["kind", "first", "last", "count", "credential", "actor", "operator", "type", "result", "code",
                   "served", "refused", "failed", "reason", "detail"], "csv: header")
    T.eq(rows[1][:5] + rows[1][8:9], ["verification", "", "", "", c.audit_file, "verified"], "csv: file status row")
    lk = [r for r in rows if r[0] == "lookup"]
    T.eq({r[4]: (r[5], int(r[3]), int(r[10]), int(r[11]), int(r[12]), r[1], r[2]) for r in lk},
         {k: (g["actor"], g["n"], g["s"], g["r"], g["f"], g["first"], g["last"]) for k, g in look.items()},
         "csv: one row per lookup group")
    ad = [r for r in rows if r[0] in ("admin", "reveal")]
    T.eq([(r[0], r[1], r[6], r[7], r[8], r[9], r[13]) for r in ad],
         [("reveal" if a["type"] == "cred.reveal" else "admin", a["ts"], "root", a["type"], a["result"], a["code"],
           a["reason"] or "") for a in acts], "csv: one row per administrative act")
    T.eq(len(rows), 2 + len(lk) + len(ad), "csv: nothing else")


def check_reports(c, vd, lines, cut):
    day = lines[0]["ts"][:10]
    total = len(lines)
    ev, look, acts = expected(lines, "")
    T.ok(len(look) == 2 and len(acts) == 5, "the trail has 2 lookup credentials and 5 acts", (look, len(acts)))
    rc, out, err = report(c, "--from", day, "--to", day, c.audit_file)
    T.eq(rc, 0, "text report exits 0 on a verified chain")
    check_text(c, out, look, acts, len(ev), total)
    rc, out, err = report(c, "--json", "--from", day, "--to", day, c.audit_file)
    T.eq(rc, 0, "json report exits 0")
    check_json(c, out, look, acts, len(ev))
    rc, out, err = report(c, "--csv", "--from", day, "--to", day, c.audit_file)
    T.eq(rc, 0, "csv report exits 0")
    check_csv(c, out, look, acts)
    # the period: from the cut (between the phases) to the end of the day
    lo = cut.strftime("%Y-%m-%dT%H:%M:%SZ")
    ev2, look2, acts2 = expected(lines, lo)
    T.ok(len(ev2) < len(ev) and all(a["type"] != "cred.create" for a in acts2), "the cut leaves out phase 1")
    rc, out, err = report(c, "--from", lo, "--to", day, c.audit_file)
    T.eq(rc, 0, "period report exits 0")
    check_text(c, out, look2, acts2, len(ev2), total)
    T.ok("cred.create" not in out and look["secret/smtp-auth/example.com"]["first"] not in out,
         "text: events before --from are left out")
    rc, out, err = report(c, "--json", "--from", lo, "--to", day, c.audit_file)
    check_json(c, out, look2, acts2, len(ev2))
    rc, out, err = report(c, "--csv", "--from", lo, "--to", day, c.audit_file)
    check_csv(c, out, look2, acts2)
    # a period before the trail: nothing listed, still verified
    rc, out, err = report(c, "--json", "--from", "2020-01-01", "--to", "2020-01-31", c.audit_file)
    d = json.loads(out)
    T.ok(rc == 0 and d["events_in_period"] == 0 and d["lookups"] == [] and d["admin"] == [] and
         d["events_read"] == total, "a period without events: empty lists, chain still verified")
    # the file read as two files (a rotation): per-file status, same groups
    a, b = c.audit_file + ".1", c.audit_file + ".2"
    raw = open(c.audit_file).read().splitlines(True)
    open(a, "w").writelines(raw[:10])
    open(b, "w").writelines(raw[10:])
    rc, out, err = report(c, "--json", "--from", day, "--to", day, a, b)
    d = json.loads(out)
    T.ok(rc == 0 and [f["status"] for f in d["verification"]["files"]] == ["verified", "verified"] and
         len(d["lookups"]) == 2, "two files read in order as one log: both verified", out[:400])


def tampered(c, lines_raw, idx, old, new):
    path = c.audit_file + ".tampered"
    raw = list(lines_raw)
    T.ok(old in raw[idx], "the line to tamper holds " + old)
    raw[idx] = raw[idx].replace(old, new, 1)
    open(path, "w").writelines(raw)
    return path


def check_broken(c, vd):
    raw = open(c.audit_file).read().splitlines(True)
    day = json.loads(raw[0])["ts"][:10]
    idx = next(i for i, l in enumerate(raw) if '"cred.reveal"' in l)
    path = tampered(c, raw, idx, "ticket 8701 support", "ticket 8701 routine!")
    for fmt in ([], ["--json"], ["--csv"]):
        rc, out, err = report(c, *fmt, "--from", day, "--to", day, path)
        T.eq(rc, 1, "a tampered line: exit 1 %s" % fmt)
        T.ok("BROKEN" in err, "a tampered line: said on stderr %s" % fmt, err)
        if not fmt:
            T.ok(out.startswith("WARNING: AUDIT CHAIN BROKEN") and "file %s: broken at line %d\n" % (path, idx + 1)
                 in out and "FAIL:" in out.splitlines()[1], "text: the break first, file and line named", out[:500])
        elif fmt == ["--json"]:
            d = json.loads(out)
            T.eq((d["verification"]["status"], d["verification"]["files"][0]["broken_line"]), ("BROKEN", idx + 1),
                 "json: broken at the tampered line")
        else:
            T.ok('"verification","","","","%s","","","","broken at line %d"' % (path, idx + 1) in out,
                 "csv: the broken line in the verification row", out[:400])
    # a deleted line (a lookup removed): broken at the next line
    path = c.audit_file + ".deleted"
    j = next(i for i, l in enumerate(raw) if '"secret.lookup"' in l)
    open(path, "w").writelines(raw[:j] + raw[j + 1:])
    rc, out, err = report(c, "--from", day, "--to", day, path)
    T.ok(rc == 1 and "broken at line %d" % (j + 1) in out, "a deleted line: broken where the gap is", out[:400])
    # a break in the second of two files: the first is verified up to it
    a, b = c.audit_file + ".b1", c.audit_file + ".b2"
    open(a, "w").writelines(raw[:5])
    t = list(raw[5:])
    k = next(i for i, l in enumerate(t) if '"success"' in l)
    t[k] = t[k].replace('"success"', '"failure"', 1)
    open(b, "w").writelines(t)
    rc, out, err = report(c, "--from", day, "--to", day, a, b)
    T.ok(rc == 1 and "file %s: verified up to the break\n" % a in out and "file %s: broken at line %d\n" % (b, k + 1)
         in out,
         "two files: the break is placed in the second, at its own line number", out[:600])
    # no key: unverifiable, exit 3; another key likewise
    rc, out, err = report(c, "--from", day, "--to", day, c.audit_file, key=False)
    T.ok(rc == 3 and "file %s: unverifiable without the key\n" % c.audit_file in out and "no audit key" in err,
         "no key: unverifiable, exit 3", out[:300] + err)
    rc, out, err = report(c, "--json", "--from", day, "--to", day, c.audit_file, key=False)
    T.ok(rc == 3 and json.loads(out)["verification"]["status"] == "unverifiable", "json: unverifiable")
    rc, out, err = c.vks("audit", "report", "--from", day, "--to", day, c.audit_file, VKS_AUDIT_KEY=OTHER_KEY)
    T.ok(rc == 3 and "unverifiable without the key" in out, "another key: unverifiable, exit 3", out[:300])


def check_vault(c, vd):
    """--vault: what is overdue now (and what cannot be judged), from Vault's metadata."""
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("old.example", "bad.example", "fresh.example"):
        rc, out, _ = c.vks("cred", "create", name, "--username", "u-" + name, "--all-domains", keep_stdout=True)
        T.eq(rc, 0, "create " + name)
        c.secret(out.strip())
    set_meta(vd, "old.example", rotated=old)
    set_meta(vd, "bad.example", rotated="last tuesday")
    day = c.audit_lines()[0]["ts"][:10]
    rc, out, err = report(c, "--vault", "--json", "--from", day, "--to", day, c.audit_file)
    T.eq(rc, 0, "--vault: exit 0 (the chain is verified)")
    od = {o["name"]: o for o in json.loads(out)["overdue"]}
    T.eq(sorted(od), ["bad.example", "old.example"], "--vault: the overdue and the invalid, not the fresh one")
    T.ok(od["old.example"]["why"].startswith("overdue, 180-day policy, rotated " + old) and
         od["bad.example"]["why"].startswith("invalid: ") and "rotated" in od["bad.example"]["why"],
         "--vault: why each is listed", od)
    rc, out, err = report(c, "--vault", "--from", day, "--to", day, c.audit_file)
    T.ok(rc == 0 and "\nrotations overdue now: 2\n  bad.example: due - (invalid: " in out and
         "  old.example: due " in out, "--vault: text section", out[-600:])
    rc, out, err = report(c, "--vault", "--csv", "--from", day, "--to", day, c.audit_file)
    T.ok(rc == 0 and sum(1 for r in csv.reader(io.StringIO(out)) if r[0] == "overdue") == 2, "--vault: csv rows")
    rc, out, err = c.vks("audit", "report", "--vault", "--from", day, "--to", day, c.audit_file,
                         VAULT_TOKEN="not-a-valid-token-87")
    T.ok(rc == 2 and out == "", "--vault with a token Vault refuses: exit 2, no report (fail closed)", err[-300:])


def check_usage(c):
    f = c.audit_file
    for args, word in ((["--to", "2026-01-01", f], "--from"), (["--from", "2026-01-01", f], "--from and --to"),
                       (["--from", "2026-13-01", "--to", "2026-12-01", f], "--from"),
                       (["--from", "2026-01-01", "--to", "yesterday", f], "--to"),
                       (["--from", "2026-02-01", "--to", "2026-01-01", f], "after --to"),
                       (["--from", "2026-01-01", "--to", "2026-01-02"], "no FILE"),
                       (["--json", "--csv", "--from", "2026-01-01", "--to", "2026-01-02", f], "exclude"),
                       (["--from", "2026-01-01", "--to", "2026-01-02", f + ".none"], "audit log"),
                       (["--from", "2026-01-01", "--to", "2026-01-02", "/dev/null/x"], "audit log")):
        rc, out, err = report(c, *args)
        T.ok(rc == 2 and out == "" and word in err, "usage: %s -> exit 2 naming %s" % (args[:2], word), err[:300])
    rc, out, err = c.vks("audit", "report", "--help")
    T.ok("usage: vks audit report" in out + err and "exit status" in out + err, "--help")


if __name__ == "__main__":
    sys.exit(main())
