"""Zero downtime of `vks cred rotate` under load (issue 12): three vks-policy processes look the
credential up (cache ttl TTL seconds) and authenticate at a real relay round after round while
the credential is rotated.

 * a rotation whose test step fails (the relay does not know the new password, no set hook):
   exit 2, every process keeps authenticating with the current password, current is unchanged
   (a fresh process authenticates with it), `--abort` ends the rotation;
 * a rotation with a set hook that makes the relay accept the new password beside the old one
   (the overlap): exit 0; no process ever uses the pending password before the test step;
   each switches to the new one within TTL of finish (+ a margin of two of its own round periods,
   explained at the check) and never goes back; the old password is then withdrawn at the relay and
   every process keeps authenticating;
 * 0 failed rounds (lookup or AUTH) in any process, every round reached the relay, and no password
   in any output, record, relay log, audit trail or server log.
The test waits for observed states (records, relay log lines), never for fixed times; the one
time bound (TTL + margin) is the property under test, relative to each process's own pace."""
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.environ["ROOT"]
BUILD = os.environ.get("BUILD", "build")
WORK = os.environ.get("VKS_SUITE_WORK", os.getcwd())
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from credtest import Cred  # noqa: E402
from policyloop import POLICY_BIN, PolicyLoop, write_vault_policy  # noqa: E402
from smtprelay import Relay  # noqa: E402
from vaultdev import VaultDev, Checks  # noqa: E402

T = Checks()
# tests/test-secrets.d/smtp.txt
ENC_KEY = "emQ4NC1lbmMta2V5LVRFU1QtMDEyMzQ1Njc4OWFiY2Q="
AUDIT_KEY = "emQ4NC1hdWRpdC1rZXktVEVTVC0wMTIzNDU2Nzg5YWI="
NAME, USER, DOMAIN = "example.com", "zd-relay@example.com", "example.com"
TTL = 2            # seconds: the processes' cache ttl
HOSTS = ("host-1", "host-2", "host-3")
WAIT = 120         # an upper bound for a state to be reached, not a timing assertion
C = None           # the Cred of the run (tests/lib/credtest.py): vks, its outputs, the secrets


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    print("timed out waiting for " + what)
    return False


def vks(vd, *args, keep_stdout=False):
    return C.vks(*args, keep_stdout=keep_stdout, timeout=180)


def show(vd):
    rc, out, _ = vks(vd, "cred", "show", NAME, "--json")
    return json.loads(out) if rc == 0 else {}


def one_shot(vd, policy, relay, ehlo):
    """A fresh vks-policy process (empty cache): one lookup + AUTH; returns (rc, relay event)."""
    n = len(events_of(relay, ehlo))
    p = subprocess.run([POLICY_BIN, policy, "--domain", DOMAIN, "--relay",
                        f"127.0.0.1:{relay.port}", "--check-auth", "--cafile", relay.cafile, "--ehlo", ehlo,
                        "--brief"], capture_output=True, timeout=120, env=C.env(VKS_CACHE_TTL=str(TTL)))
    C.outputs.append(p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    ev = events_of(relay, ehlo)[n:]
    return p.returncode, ev[0] if len(ev) == 1 else None


def events_of(relay, name):
    return [e for e in relay.auth_events() if e.get("ehlo") == name]


def version_time(rec):
    """Unix time of the newest version of the credential (vault-dev records it to the nanosecond
    with the machine's clock): the moment finish wrote the new current password."""
    vs = [v for v in rec.get("versions") or [] if v.get("created")]
    if not vs:
        return None
    c = max(vs, key=lambda v: v["version"])["created"]   # 2026-12-03T20:41:05.786648395Z
    whole, _, frac = c.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def period_s(loop):
    """The longest time between the starts of two consecutive rounds of this process (s)."""
    r = loop.records()
    gaps = [(b["t0_ms"] - a["t0_ms"]) / 1000.0 for a, b in zip(r, r[1:])]
    return max(gaps) if gaps else loop.interval_ms / 1000.0


def failed_rotation(vd, relay, loops, policy, before):
    """Test step fails: the relay was never told the new password (no set hook)."""
    marks = {l.name: len(events_of(relay, l.name)) for l in loops}
    rc, out, err = vks(vd, "cred", "rotate", NAME, "--relay-cafile", relay.cafile, "--ehlo", "rotate-fail")
    T.ok(rc == 2, "a rotation whose test step fails exits 2", "rc=%d %s" % (rc, err[-300:]))
    T.ok("test" in err and ("--resume" in err or "--abort" in err),
         "its error names the test step and how to go on", err[-300:])
    ev = events_of(relay, "rotate-fail")
    T.ok(len(ev) == 1 and not ev[0]["ok"], "the relay refused the pending password (one AUTH)", ev)
    # the keyed fingerprint identifies the password (docs/credentials.md): current is unchanged
    after = show(vd)
    T.ok(before.get("fingerprint") and after.get("fingerprint") == before.get("fingerprint"),
         "current is unchanged after the failed test step (same fingerprint)")
    # the processes go on, and still after their caches expired (the pending value is invisible)
    t = time.time()
    T.ok(wait_for(lambda: all(any(e["ts"] > t + TTL for e in events_of(relay, l.name)[marks[l.name]:])
                              for l in loops), "a round of every process after TTL"),
         "every process kept authenticating through the failed rotation")
    lines = {e["line"] for l in loops for e in events_of(relay, l.name)}
    T.eq(lines, {1}, "... with the current password only")
    rc, e = one_shot(vd, policy, relay, "fresh-after-fail")
    T.ok(rc == 0 and e is not None and e["ok"] and e["line"] == 1,
         "a fresh process resolves the unchanged current password", e)
    kind, value = C.resolve("smtp-auth/" + NAME, domain=DOMAIN, dest="127.0.0.1")
    T.ok(kind == "OK" and value == C.secrets[0], "the resolver returns the current password, not the pending one")
    rc, _, err = vks(vd, "cred", "rotate", "--abort", NAME)
    T.ok(rc == 0, "--abort ends the failed rotation", err[-300:])
    T.ok(show(vd).get("state") == "active", "state is active again")


def good_rotation(vd, relay, loops, policy, before):
    hook = relay.hook_command(USER)
    rc, out, err = vks(vd, "cred", "rotate", NAME, "--set-hook", hook, "--relay-cafile", relay.cafile,
                       "--ehlo", "rotate-test")
    t_exit = time.time()
    T.ok(rc == 0, "the rotation with the set hook exits 0", "rc=%d %s" % (rc, err[-300:]))
    creds = relay.read_creds()
    T.ok(len(creds) == 2 and creds[1][0] == 2 and creds[1][1] == USER,
         "the hook added the new password on line 2 (overlap: both accepted)", [c[:2] for c in creds])
    if len(creds) == 2:
        C.secret(creds[1][2])
    test_ev = events_of(relay, "rotate-test")
    T.ok(len(test_ev) == 1 and test_ev[0]["ok"] and test_ev[0]["line"] == 2,
         "the test step authenticated with the pending password", test_ev)
    t_test = test_ev[0]["ts"] if test_ev else t_exit
    after = show(vd)
    T.ok(after.get("fingerprint") and after.get("fingerprint") != before.get("fingerprint") and
         after.get("state") == "active", "finish made the new password current (new fingerprint, active)")
    t_finish = version_time(after)
    T.ok(t_finish is not None and t_test <= t_finish <= t_exit,
         "finish wrote the new current version after the test step, before rotate exited",
         (t_test, t_finish, t_exit))
    t_finish = t_finish or t_exit
    T.ok(wait_for(lambda: time.time() > t_exit + TTL + 1 and
                  all(any(e["line"] == 2 for e in events_of(relay, l.name)) for l in loops),
                  "every process on the new password"), "every process switched to the new password")
    for l in loops:
        ev = events_of(relay, l.name)
        new = [e for e in ev if e["line"] == 2]
        if not new:
            T.ok(False, "%s used the new password" % l.name)
            continue
        first = new[0]
        # Pending is invisible to resolvers: no process may use the new password before finish.
        T.ok(first["ts"] >= t_finish, "%s never used the pending password before finish" % l.name)
        # Bound: the entry holding the old value was stored at most one lookup after finish and
        # expires TTL later; the next round (at most one round period later) fetches the new value
        # and authenticates with it in the same round. A round period (interval, lookup, TLS
        # session, scheduling on a loaded machine) is measured from this process's own records, and
        # counted twice (the lookup that stored the entry, the round that sees it expired).
        margin = 2 * period_s(l)
        lag = first["ts"] - t_finish
        print("  %s: first AUTH with the new password %.2f s after finish (ttl %d s, margin %.2f s)"
              % (l.name, lag, TTL, margin))
        T.ok(lag <= TTL + margin, "%s used the new password within its cache ttl (+ margin)" % l.name,
             "%.2f s > %d + %.2f" % (lag, TTL, margin))
        i = ev.index(first)
        T.ok(all(e["line"] == 2 for e in ev[i:]), "%s never went back to the old password" % l.name)
    return t_exit


def main():
    global C
    with VaultDev() as vd, Relay(WORK, creds=[]) as relay:
        C = Cred(vd, ENC_KEY, AUDIT_KEY, audit_file=os.path.join(WORK, "audit.log"))
        rc, out, err = vks(vd, "cred", "create", NAME, "--username", USER, "--domain", DOMAIN,
                           "--ip", "127.0.0.1", "--relay", f"127.0.0.1:{relay.port}", keep_stdout=True)
        old = C.secret(out.strip())
        T.ok(rc == 0 and len(old) == 32, "create: the managed credential with its relay", err[-300:])
        relay.set_creds([(USER, old)])
        policy = write_vault_policy(os.path.join(WORK, "loop-policy.lua"), USER)
        env = C.env(VKS_CACHE_TTL=str(TTL))
        loops = [PolicyLoop(WORK, h, policy, relay, env, domain=DOMAIN, interval_ms=150) for h in HOSTS]
        try:
            T.ok(wait_for(lambda: all(len(l.records()) >= 3 for l in loops) or
                          not all(l.running() for l in loops), "three rounds of every process"),
                 "three processes authenticate in a loop")
            T.ok(all(l.running() for l in loops), "the load processes run", [l.lines()[-3:] for l in loops])
            before = show(vd)
            failed_rotation(vd, relay, loops, policy, before)
            good_rotation(vd, relay, loops, policy, show(vd))
            # end of the overlap: the old password is withdrawn at the relay
            relay.retire_line(1)
            t_retire = time.time()
            T.ok(wait_for(lambda: all(sum(e["ts"] > t_retire for e in events_of(relay, l.name)) >= 3
                                      for l in loops), "three rounds of every process after the withdrawal"),
                 "every process keeps authenticating after the old password is withdrawn")
        finally:
            rcs = [l.stop() for l in loops]
        T.ok(rcs == [0, 0, 0], "every load process exits 0 (no failed round)", rcs)
        for l in loops:
            recs, ev = l.records(), events_of(relay, l.name)
            T.ok(recs and not l.failures(), "%s: 0 failed rounds in %d" % (l.name, len(recs)), l.failures()[:3])
            T.ok(ev and all(e["ok"] for e in ev), "%s: 0 AUTH failures at the relay" % l.name,
                 [e for e in ev if not e["ok"]][:3])
            T.eq(len(ev), len(recs), "%s: every round reached the relay" % l.name)
            T.ok(ev and all(e["line"] == 2 for e in ev[-3:]), "%s: its last rounds use the new password" % l.name)
            C.outputs.append("\n".join(l.lines()))
            with open(l.rec_path) as f:
                C.outputs.append(f.read())
        rc, e = one_shot(vd, policy, relay, "fresh-after-rotate")
        T.ok(rc == 0 and e is not None and e["ok"] and e["line"] == 2, "a fresh process resolves the new password", e)
        kind, value = C.resolve("smtp-auth/" + NAME, domain=DOMAIN, dest="127.0.0.1")
        T.ok(kind == "OK" and value == C.secrets[-1], "the resolver returns the new password (the hook's)")
        ok, detail = C.audit_verify()
        T.ok(ok, "the audit trail of the rotations and the lookups verifies", detail)
        kinds = [(e.get("type"), e.get("result")) for e in C.audit_lines()]
        T.ok(("cred.rotate.finish", "success") in kinds and ("cred.rotate.abort", "success") in kinds and
             any(k == "cred.rotate.test" and r != "success" for k, r in kinds),
             "the trail holds the failed test step, the abort and the finish", sorted(set(kinds)))
        relay_texts = []
        for path in (relay.log_path, os.path.join(relay.dir, "relay.out")):
            with open(path, errors="replace") as f:
                relay_texts.append(f.read())
        leaks = C.leaks(relay_texts)
    T.ok(len(C.secrets) == 2 and not leaks, "no password in any output, record, log or audit line",
         "%d secrets, %d leaks" % (len(C.secrets), len(leaks)))
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
