"""vks cred against build/vault-dev over HTTPS (issue 12): usernames unique under the prefix, atomically,
and `list --due-before` on the effective due date.
 * 8 concurrent `vks cred create` of distinct names with the same --username: exactly one succeeds, the
   others exit 2 naming the username, exactly one credential holds it, the index names the winner;
 * the username index record (vks-index/<prefix>usernames/<hex of the lowercased username>): a left-over
   record pointing to a deleted credential, to a credential with another username, or with no claim time
   is taken over; a fresh claim by a create in flight is not; a live one refuses (case-insensitively);
 * a create that fails after claiming gives the username back; delete frees it for reuse;
 * roles: cred-operator and a tenant create and delete through the index; the tenant cannot claim a
   username index outside its prefix; mta-reader and auditor cannot read the index;
 * list --due-before uses the effective due (earlier of stored due and rotated + policy, rotation_days
   per credential), lists invalid dates always (fail closed) and shows the effective due."""
import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from credtest import Cred, VKS, set_meta  # noqa: E402

T = Checks()
EX = os.path.join(os.environ["ROOT"], "policy-examples")
ENC_KEY = "Y3JlZDg2LXVuaXF1ZS1lbmMta2V5LVRFU1QtMDEyMzQ="   # tests/test-secrets.d/unique.txt
AUDIT_KEY = "Y3JlZDg2LXVuaXF1ZS1hdWRpdC1rZXktVEVTVC0wMTI="
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def ts(days_ago):
    return (NOW - datetime.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(days_ahead):
    return (NOW + datetime.timedelta(days=days_ahead)).strftime("%Y-%m-%d")


def ipath(username, prefix="smtp-auth/"):
    return "vks-index/%susernames/%s" % (prefix, username.lower().encode().hex())


def create(c, name, username, token=None, prefix=None, **extra):
    p = ["--prefix", prefix] if prefix else []
    rc, out, err = c.vks("cred", "create", name, "--username", username, "--all-domains", *p, keep_stdout=True,
                         token=token, **extra)
    if rc == 0:
        c.secret(out.strip())
    else:
        c.outputs.append(out)
    return rc, err


def delete(c, name, username, token=None, prefix=None):
    p = ["--prefix", prefix] if prefix else []
    return c.vks("cred", "delete", name, "--confirm", username, *p, token=token)


def holders(c, username):
    rc, out, _ = c.vks("cred", "list", "--json")
    return sorted(r["name"] for r in json.loads(out) if (r.get("username") or "").lower() == username.lower())


def index_name(vd, username, prefix="smtp-auth/"):
    st, j = vd.kv2_get(ipath(username, prefix))
    return j["data"]["data"].get("name") if st == 200 else None


def test_concurrent(vd, c):
    n = 8
    procs = [subprocess.Popen([VKS, "cred", "create", "race%d.example" % i, "--username", "Race+1@x.org",
                               "--all-domains"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=c.env()) for i in range(n)]
    res = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        res.append((p.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
    ok = [i for i, r in enumerate(res) if r[0] == 0]
    for rc, out, err in res:
        c.outputs.append(err)
        if rc == 0:
            c.secret(out.strip())
        else:
            c.outputs.append(out)
    T.eq(len(ok), 1, "%d concurrent creates with the same username: exactly one succeeds" % n)
    T.ok(all(rc == 2 and "Race+1@x.org" in err for rc, _, err in res if rc != 0),
         "the others exit 2 naming the username", [r[2][-200:] for r in res if r[0] != 0][:3])
    T.eq(holders(c, "race+1@x.org"), ["race%d.example" % i for i in ok], "exactly one credential holds it")
    T.eq(index_name(vd, "Race+1@x.org"), "race%d.example" % ok[0] if ok else None, "the index names the winner")
    rc, err = create(c, "late.example", "RACE+1@X.ORG")
    T.ok(rc == 2 and "RACE+1@X.ORG" in err, "a later create with the username in other case: exit 2", err[-200:])


def test_takeover(vd, c):
    # pointing to a deleted credential (no claim time: written by hand)
    vd.kv2_put(ipath("stale@x.org"), {"name": "gone.example", "username": "stale@x.org"}, cas=0)
    rc, err = create(c, "new.example", "stale@x.org")
    T.eq(rc, 0, "a record pointing to a credential that does not exist is taken over")
    T.eq(index_name(vd, "stale@x.org"), "new.example", "the index now names the new credential")
    st, j = vd.kv2_get(ipath("stale@x.org"))
    T.eq(j["data"]["metadata"]["version"], 2, "taken over with cas = its version (version 2)")
    # a claim an hour old by a create that died before writing its credential
    vd.kv2_put(ipath("died@x.org"), {"name": "died.example", "username": "died@x.org", "claimed": ts(1 / 24)})
    rc, err = create(c, "d2.example", "died@x.org")
    T.eq(rc, 0, "a claim an hour old whose credential never came is taken over")
    # a claim a few seconds old: a create in flight
    vd.kv2_put(ipath("flight@x.org"), {"name": "flight.example", "username": "flight@x.org", "claimed": ts(0)})
    rc, err = create(c, "f2.example", "flight@x.org")
    T.ok(rc == 2 and "flight@x.org" in err and "in progress" in err, "a fresh claim (a create in flight) "
         "is respected: exit 2 naming the username", err[-200:])
    # pointing to a live credential that has another username
    T.eq(create(c, "other.example", "other@x.org")[0], 0, "create other.example")
    vd.kv2_put(ipath("moved@x.org"), {"name": "other.example", "username": "moved@x.org", "claimed": ts(0)})
    rc, err = create(c, "moved.example", "moved@x.org")
    T.eq(rc, 0, "a record pointing to a live credential with another username is taken over")
    T.eq(index_name(vd, "moved@x.org"), "moved.example", "the index names the new holder")
    # a live holder (the listing check refuses first with the same message; the index record stays)
    rc, err = create(c, "dup.example", "other@x.org")
    T.ok(rc == 2 and "'other@x.org'" in err and "other.example" in err, "a live holder: exit 2 naming the "
         "username and its credential", err[-200:])
    T.eq(index_name(vd, "other@x.org"), "other.example", "the refused create left the index alone")


def test_release(vd, c):
    T.eq(create(c, "free.example", "free@x.org")[0], 0, "create free.example")
    rc, _, err = delete(c, "free.example", "free@x.org")
    T.eq(rc, 0, "delete free.example")
    st, _ = vd.call("GET", "/v1/secret/metadata/" + ipath("free@x.org"))
    T.eq(st, 404, "delete removed the index record with every version")
    rc, err = create(c, "free2.example", "free@x.org")
    T.eq(rc, 0, "the username is free for reuse at once")
    # a create that fails after its claim (no encryption key) gives the username back
    rc, err = create(c, "nokey.example", "nokey@x.org", VKS_ENCRYPTION_KEY="")
    T.ok(rc != 0, "create without an encryption key fails", err[-200:])
    st, _ = vd.call("GET", "/v1/secret/metadata/" + ipath("nokey@x.org"))
    T.eq(st, 404, "the failed create removed its index record")
    T.eq(create(c, "nokey.example", "nokey@x.org")[0], 0, "and the username can be used")


def test_roles(vd, c):
    for name in ("cred-operator", "mta-reader", "auditor", "cred-tenant-acme"):
        vd.policy(name, open(os.path.join(EX, name + ".hcl")).read())
    op = vd.create_token(policies=["cred-operator"], display_name="operator")
    acme = vd.create_token(policies=["cred-tenant-acme"], display_name="acme")
    mta = vd.create_token(policies=["mta-reader"], display_name="mta")
    aud = vd.create_token(policies=["auditor"], display_name="aud")
    rc, err = create(c, "op.example", "op@x.org", token=op)
    T.eq(rc, 0, "cred-operator creates through the index")
    rc, err = create(c, "op2.example", "op@x.org", token=op)
    T.ok(rc == 2 and "op@x.org" in err, "cred-operator: duplicate username refused (exit 2)", err[-200:])
    T.eq(delete(c, "op.example", "op@x.org", token=op)[0], 0, "cred-operator deletes (and frees the username)")
    T.eq(create(c, "op3.example", "op@x.org", token=op)[0], 0, "cred-operator reuses the freed username")
    rc, err = create(c, "a1.example", "t@x.org", token=acme, prefix="smtp-auth/acme/")
    T.eq(rc, 0, "tenant acme creates under its prefix")
    T.eq(index_name(vd, "t@x.org", "smtp-auth/acme/"), "a1.example", "its index lives under its prefix")
    rc, err = create(c, "a2.example", "t@x.org", token=acme, prefix="smtp-auth/acme/")
    T.ok(rc == 2 and "t@x.org" in err, "tenant acme: duplicate username refused", err[-200:])
    st, _ = vd.call("POST", "/v1/secret/data/" + ipath("grab@x.org"), {"data": {"name": "x"}, "options": {"cas": 0}},
                    token=acme)
    T.eq(st, 403, "tenant acme cannot claim a username index outside its prefix")
    rc, err = create(c, "a3.example", "grab2@x.org", token=acme)
    T.eq(rc, 2, "tenant acme cannot create under the whole prefix")
    st, _ = vd.call("GET", "/v1/secret/metadata/" + ipath("grab2@x.org"))
    T.eq(st, 404, "and left no index record there")
    T.eq(delete(c, "a1.example", "t@x.org", token=acme, prefix="smtp-auth/acme/")[0], 0, "tenant acme deletes")
    st, _ = vd.call("GET", "/v1/secret/metadata/" + ipath("t@x.org", "smtp-auth/acme/"))
    T.eq(st, 404, "tenant acme's delete removed its index record")
    for who, tok in (("mta-reader", mta), ("auditor", aud)):
        st, _ = vd.call("GET", "/v1/secret/data/" + ipath("op@x.org"), token=tok)
        T.eq(st, 403, "%s cannot read the username index" % who)
        st, _ = vd.call("POST", "/v1/secret/data/" + ipath("zz@x.org"), {"data": {"name": "x"}}, token=tok)
        T.eq(st, 403, "%s cannot write the username index" % who)


def test_due_before(vd, c):
    for n in ("policy.due", "days.due", "bad.due", "fresh.due", "stored.due"):
        T.eq(create(c, n, "u-" + n)[0], 0, "create " + n)
    set_meta(vd, "policy.due", rotated=ts(100), due=ts(-3000))            # effective: rotated + 180 = +80 days
    set_meta(vd, "days.due", rotated=ts(10), rotation_days="30", due=ts(-170))  # effective: +20 days
    set_meta(vd, "bad.due", rotated="last tuesday")                       # invalid
    set_meta(vd, "stored.due", due=ts(-5))                                 # stored due earlier: +5 days
    names = lambda out: sorted(r["name"] for r in json.loads(out) if r["name"].endswith(".due"))
    rc, out, err = c.vks("cred", "list", "--json", "--due-before", day(100))
    T.eq(names(out), ["bad.due", "days.due", "policy.due", "stored.due"],
         "--due-before +100d: rotated + policy earlier than the stored due counts; invalid listed; fresh not")
    rc, out, err = c.vks("cred", "list", "--json", "--due-before", day(25))
    T.eq(names(out), ["bad.due", "days.due", "stored.due"], "--due-before +25d: rotation_days=30 counts")
    rc, out, err = c.vks("cred", "list", "--json", "--due-before", "2000-01-01")
    T.eq(names(out), ["bad.due"], "an invalid credential is always listed by the filter (fail closed)")
    r = {x["name"]: x for x in json.loads(c.vks("cred", "list", "--json")[1])}
    T.eq(r["policy.due"]["effective_due"], ts(-80), "JSON: effective_due is rotated + 180 days")
    T.eq(r["policy.due"]["due"], ts(-3000), "JSON: due stays the stored value")
    T.eq(r["days.due"]["effective_due"], ts(-20), "JSON: effective_due with rotation_days 30")
    T.eq(r["bad.due"]["effective_due"], "invalid", "JSON: invalid dates say so")
    rc, out, err = c.vks("cred", "list", "--due-before", day(100))
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
    T.ok(ts(-80) in lines.get("policy.due", "") and ts(-3000) not in lines.get("policy.due", ""),
         "text: the due column shows the effective due", lines.get("policy.due"))
    T.ok("invalid" in lines.get("bad.due", "") and "active" in lines.get("bad.due", ""),
         "text: the invalid one shows 'invalid' and its state", lines.get("bad.due"))
    rc, out, err = c.vks("cred", "list", "--due-before", "2026-13-01")
    T.ok(rc == 1 and "--due-before" in err, "a bad date: exit 1 naming --due-before", err[-200:])


def main():
    with VaultDev() as vd:
        c = Cred(vd, ENC_KEY, AUDIT_KEY)
        T.run(test_concurrent, vd, c)
        T.run(test_takeover, vd, c)
        T.run(test_release, vd, c)
        T.run(test_roles, vd, c)
        T.run(test_due_before, vd, c)
        ok, detail = c.audit_verify()
        T.ok(ok, "vks audit verify accepts the trail", detail)
        T.eq(c.leaks(), [], "no password or key in any output but its one place")
        T.ok(not vd.sanitizer_report(), "vault-dev clean under sanitizers")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
