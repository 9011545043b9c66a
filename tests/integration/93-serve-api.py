"""vks serve, the admin API (issue 14), over real HTTPS against build/vault-dev with the shipped role
policies loaded unchanged and one userpass user per role (tests/lib/servetest.py): every endpoint
with every role (the matrix of docs/credentials.md "Access control" holds through the API, since
each act is made with the operator's own Vault token), login by token and userpass, failed logins
audited with operator, address and user agent, lockout after repeated failures, logout revoking
the token in Vault, CSRF and cross-origin refusals, malformed JSON and wrong types answered 400
naming the field, oversized bodies 413, idle sessions expiring, no-store on every answer, and every
answer checked against docs/openapi.json (which is also what the server serves)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402
from servetest import Serve, USERS, ROOT, ENC_KEY, AUDIT_KEY  # noqa: E402
from smtprelay import Relay  # noqa: E402
from credtest import Cred  # noqa: E402

T = Checks()
SPEC = json.load(open(os.path.join(ROOT, "docs", "openapi.json")))
SEEN = []          # (method, template, status, body)
PASSWORDS = []     # every password the API handed out: must appear nowhere else
UA = {"User-Agent": "vks-api-test/1"}


def template(path):
    p = path.split("?", 1)[0]
    for t in SPEC["paths"]:
        if "{name}" not in t:
            if t == p:
                return t
    if p.startswith("/api/v1/jobs/"):
        return "/api/v1/jobs/{job}"
    for suffix in ("/reveal", "/restrict", "/rotate", "/reset"):
        if p.startswith("/api/v1/credentials/") and p.endswith(suffix):
            return "/api/v1/credentials/{name}" + suffix
    if p.startswith("/api/v1/credentials/"):
        return "/api/v1/credentials/{name}"
    return None


def call(s, method, path, body=None, **kw):
    h = dict(UA)
    h.update(kw.pop("headers", {}))
    st, hdrs, j = s.call(method, path, body, headers=h, **kw)
    SEEN.append((method.lower(), template(path), st, j))
    if j and isinstance(j, dict) and "password" in j:
        PASSWORDS.append(j["password"])
    return st, hdrs, j


# ------------------------------------------------------------------ OpenAPI validation
def resolve(schema):
    while "$ref" in schema:
        node = SPEC
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def validate(v, schema, where):
    schema = resolve(schema)
    if "allOf" in schema:
        return [e for s in schema["allOf"] for e in validate(v, s, where)]
    if v is None:
        return [] if schema.get("nullable") else ["%s: null not allowed" % where]
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t in types and not isinstance(v, types[t]):
        return ["%s: %r is not %s" % (where, v, t)]
    if t == "integer" and (not isinstance(v, int) or isinstance(v, bool)):
        return ["%s: %r is not integer" % (where, v)]
    if "enum" in schema and v not in schema["enum"]:
        return ["%s: %r not in %r" % (where, v, schema["enum"])]
    errs = []
    if t == "object":
        for k in schema.get("required", []):
            if k not in v:
                errs.append("%s: missing %s" % (where, k))
        for k, s in schema.get("properties", {}).items():
            if k in v:
                errs += validate(v[k], s, where + "." + k)
    if t == "array":
        for i, e in enumerate(v):
            errs += validate(e, schema.get("items", {}), "%s[%d]" % (where, i))
    return errs


def check_openapi(sv):
    st, _, j = sv.request("GET", "/api/v1/openapi.json")
    SEEN.append(("get", "/api/v1/openapi.json", st, None))
    T.ok(st == 200 and j == SPEC, "GET /api/v1/openapi.json serves docs/openapi.json")
    bad, undocumented, used = [], [], set()
    for method, tpl, st, body in SEEN:
        op = SPEC["paths"].get(tpl, {}).get(method) if tpl else None
        if op is None or str(st) not in op["responses"]:
            undocumented.append((method, tpl, st))
            continue
        used.add((method, tpl))
        r = op["responses"][str(st)]
        r = resolve(r) if "$ref" in r else r
        schema = r.get("content", {}).get("application/json", {}).get("schema")
        if schema:
            bad += validate(body, schema, "%s %s %d" % (method.upper(), tpl, st))
    T.ok(not undocumented, "every answer's method, path and status is documented", undocumented[:5])
    T.ok(not bad, "%d answers match their OpenAPI schema" % len(SEEN), bad[:5])
    ops = {(m, p) for p, ms in SPEC["paths"].items() for m in ms}
    T.ok(ops <= used, "every documented operation was exercised", sorted(ops - used))


# ------------------------------------------------------------------ the tests
def test_program(sv):
    import subprocess
    from servetest import BIN
    p = subprocess.run([os.path.join(BIN, "vks"), "serve", "--help"], capture_output=True, timeout=20)
    T.ok(p.returncode == 0 and b"usage: vks serve --config FILE" in p.stdout, "vks serve --help")
    p = subprocess.run([os.path.join(BIN, "vks"), "serve"], capture_output=True, timeout=20)
    T.ok(p.returncode == 1 and b"usage" in p.stderr, "vks serve without --config: usage, exit 1")
    bad = os.path.join(sv.dir, "bad.toml")
    for text, want in (('listen = "127.0.0.1:1"\nsesion_idle_seconds = 5\n', b"bad.toml:2: sesion_idle_seconds: unknown key"),
                       ('listen = "127.0.0.1"\n', b"bad.toml:1: listen: must be"),
                       ('listen = "127.0.0.1:1"\nmax_body_bytes = 5\n', b"max_body_bytes: must be an integer"),
                       ('listen = "127.0.0.1:1"\n', b"tls_cert and tls_key are required"),
                       ('listen = [1\n', b"bad.toml:")):
        with open(bad, "w") as f:
            f.write(text)
        p = subprocess.run([os.path.join(BIN, "vks"), "serve", "--config", bad], capture_output=True, timeout=20)
        T.ok(p.returncode == 1 and want in p.stderr, "a bad configuration is refused naming the key: %s" % want.decode(),
             p.stderr[-200:])
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", sv.port, timeout=10)
    try:
        c.request("GET", "/api/v1/health")
        st = c.getresponse().status
    except (OSError, http.client.HTTPException):
        st = None
    T.ok(st is None or st >= 400, "no plain HTTP: a cleartext request gets no answer", st)


def test_health_and_headers(sv):
    st, h, j = call(sv.login("boss"), "GET", "/api/v1/health")
    T.ok(st == 200 and j["status"] == "ok", "health answers ok")
    csp = h.get("content-security-policy", "")
    T.ok("frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp,
         "strict CSP on API answers", csp)
    T.eq(h.get("cache-control"), "no-store", "API answers are no-store")
    st, h, _ = sv.request("GET", "/login")
    T.ok(st == 200 and "frame-ancestors 'none'" in h.get("content-security-policy", ""), "CSP on pages")


def test_login(sv, vd):
    for u in USERS:
        s = sv.login(u)
        T.ok(s is not None and s.operator == "userpass-" + u, "userpass login of %s (operator userpass-%s)" % (u, u))
    st, h, j = sv.request("POST", "/api/v1/login", {"method": "userpass", "username": "sam", "password": "wrong-TEST-password"},
                          headers=UA)
    SEEN.append(("post", "/api/v1/login", st, j))
    T.ok(st == 401 and "password" not in json.dumps(j).lower().replace("username or password", ""), "wrong password: 401", j)
    ev = [e for e in sv.audit_lines() if e.get("type") == "serve.login" and e.get("result") == "failure"]
    T.ok(ev and ev[-1].get("operator") == "sam" and ev[-1].get("client_addr") == "127.0.0.1"
         and ev[-1].get("user_agent") == "vks-api-test/1", "failed login audited with user, address and user agent",
         ev[-1:] if ev else None)
    tok = vd.create_token(policies=["cred-support"], display_name="tk-support")
    s = sv.login(tok, method="token")
    T.ok(s is not None and s.operator.startswith("token"), "token login", s and s.operator)
    st, _, j = call(s, "POST", "/api/v1/logout", {})
    T.ok(st == 200 and j == {"logged_out": True}, "logout")
    vst, _ = vd.call("GET", "/v1/auth/token/lookup-self", token=tok)
    T.eq(vst, 403, "logout revoked the operator's token in Vault")
    st, _, _ = call(s, "GET", "/api/v1/credentials")
    T.eq(st, 401, "the session is gone after logout")
    st, _, j = sv.request("POST", "/api/v1/login", {"method": "token", "token": "hvs.not-a-token-TEST"})
    T.eq(st, 401, "an unknown token cannot log in")
    for body, field in (({"method": "pin"}, "method"), ({"method": "userpass", "password": "x"}, "username"),
                        ({"method": "userpass", "username": "sam"}, "password"), ({"method": "token"}, "token")):
        st, _, j = sv.request("POST", "/api/v1/login", body)
        SEEN.append(("post", "/api/v1/login", st, j))
        T.ok(st == 400 and j.get("field") == field, "login without %s: 400 naming it" % field, (st, j))


def test_lockout(sv):
    for _ in range(5):
        sv.request("POST", "/api/v1/login", {"method": "userpass", "username": "audrey", "password": "bad-TEST-pw-123"})
    st, h, j = sv.request("POST", "/api/v1/login", {"method": "userpass", "username": "audrey",
                                                     "password": USERS["audrey"][0]})
    SEEN.append(("post", "/api/v1/login", st, j))
    T.ok(st == 429 and int(h.get("retry-after", "0")) > 0, "5 failures lock the username out, even with the right password",
         (st, h.get("retry-after")))
    ev = [e for e in sv.audit_lines() if e.get("type") == "serve.login" and "locked" in (e.get("detail") or "")]
    T.ok(ev and ev[-1]["operator"] == "audrey", "the refused login is audited")


def test_roles(sv):
    boss, olive, sam, audrey, gina, alex = (sv.login(u) for u in ("boss", "olive", "sam", "audrey", "gina", "alex"))
    new = {"name": "mx.example.com", "username": "mx-user", "domains": ["example.com", "*.example.org"],
           "ips": ["192.0.2.0/24", "2001:db8::/32"]}
    for s, name in ((sam, "support"), (audrey, "auditor"), (gina, "tenant globex")):
        st, _, j = call(s, "POST", "/api/v1/credentials", new)
        T.eq(st, 403, "%s cannot create" % name)
    st, h, j = call(olive, "POST", "/api/v1/credentials", new)
    T.ok(st == 201 and len(j.get("password", "")) == 32 and j["permissions"] == "2 domains, 2 IPs",
         "cred-operator creates; the password comes once", (st, j and j.get("permissions")))
    T.eq(h.get("cache-control"), "no-store", "the create answer is no-store")
    st, _, j = call(olive, "POST", "/api/v1/credentials", new)
    T.eq(st, 409, "the same name again: 409")
    for s, name in ((boss, "operator+support"), (olive, "operator"), (sam, "support"), (audrey, "auditor")):
        st, _, j = call(s, "GET", "/api/v1/credentials")
        T.ok(st == 200 and any(c["name"] == "mx.example.com" for c in j["credentials"]), "%s lists" % name)
    st, _, j = call(gina, "GET", "/api/v1/credentials")
    T.eq(st, 403, "a tenant cannot list the shared prefix")
    st, _, j = call(sam, "GET", "/api/v1/credentials/mx.example.com")
    T.ok(st == 200 and j["fingerprint"] and j["username"] == "mx-user" and j["audit_chain"] == "verified"
         and any(e["type"] == "cred.create" for e in j["audit_events"]), "support shows with fingerprint and audit events")
    ev = [e for e in sv.audit_lines() if e.get("type") == "serve.view"]
    T.ok(ev and ev[-1]["operator"] == "userpass-sam" and ev[-1]["path"] == "smtp-auth/mx.example.com"
         and ev[-1]["username"] == "mx-user" and ev[-1]["client_addr"] == "127.0.0.1", "a view is audited", ev[-1:])
    st, _, j = call(olive, "GET", "/api/v1/credentials/mx.example.com")
    T.ok(st == 200 and j["fingerprint"] is None, "operator shows without fingerprint")
    st, _, j = call(audrey, "GET", "/api/v1/credentials/mx.example.com")
    T.ok(st == 200 and j["fingerprint"] is None, "auditor shows without fingerprint")
    st, _, j = call(gina, "GET", "/api/v1/credentials/mx.example.com")
    T.eq(st, 403, "another tenant cannot show it")
    ev = [e for e in sv.audit_lines() if e.get("type") == "serve.view"]
    T.ok(ev[-1]["operator"] == "userpass-gina" and ev[-1]["result"] == "failure" and ev[-1]["code"] == "permission_denied",
         "a refused view is audited")
    st, _, j = call(audrey, "GET", "/api/v1/audit?action=view&operator=gina")
    T.ok(st == 200 and j["events"] and j["events"][0]["type"] == "serve.view", "views are in the audit query (action=view)")
    # reveal
    st, h, j = call(sam, "POST", "/api/v1/credentials/mx.example.com/reveal", {"reason": "ticket API-7"})
    T.ok(st == 200 and j["password"] == PASSWORDS[0] and h.get("cache-control") == "no-store",
         "support reveals the password created, no-store")
    ev = [e for e in sv.audit_lines() if e.get("type") == "cred.reveal" and e.get("result") == "success"]
    T.ok(ev and ev[-1]["operator"] == "userpass-sam" and ev[-1]["reason"] == "ticket API-7"
         and ev[-1]["client_addr"] == "127.0.0.1" and ev[-1]["source"] == "serve", "the reveal is audited with user and reason")
    for s, name in ((olive, "operator"), (audrey, "auditor"), (gina, "tenant globex")):
        st, _, j = call(s, "POST", "/api/v1/credentials/mx.example.com/reveal", {"reason": "curious"})
        T.eq(st, 403, "%s gets 403 on reveal" % name)
    st, _, j = call(sam, "POST", "/api/v1/credentials/mx.example.com/reveal", {})
    T.ok(st == 400 and j["field"] == "reason", "reveal without a reason: 400 naming reason")
    # restrict
    st, _, j = call(olive, "POST", "/api/v1/credentials/mx.example.com/restrict",
                    {"domains": ["example.net"], "all_ips": True})
    T.ok(st == 200 and j["allowed_domains"] == ["example.net"] and j["allowed_ips"] is None
         and j["permissions"] == "1 domain, all IPs", "operator sets the restrictions", j)
    for s, name in ((sam, "support"), (audrey, "auditor"), (gina, "tenant globex")):
        st, _, _ = call(s, "POST", "/api/v1/credentials/mx.example.com/restrict", {"all_domains": True})
        T.eq(st, 403, "%s cannot restrict" % name)
    st, _, j = call(olive, "POST", "/api/v1/credentials/mx.example.com/restrict", {"domains": ["not a domain"]})
    T.ok(st == 400 and j.get("field") == "domains", "a bad domain: 400 naming domains", j)
    st, _, j = call(olive, "POST", "/api/v1/credentials/mx.example.com/restrict", {"domains": ["a.org"], "ips": ["300.1.1.1"]})
    T.ok(st == 400 and j.get("field") == "ips", "a bad address: 400 naming ips", j)
    # due, audit
    for s, name, want in ((olive, "operator", 200), (audrey, "auditor", 200), (gina, "tenant", 403)):
        st, _, j = call(s, "GET", "/api/v1/due?within=400d")
        T.eq(st, want, "%s due: %d" % (name, want))
        if st == 200:
            T.ok(any(d["name"] == "mx.example.com" and d["status"] == "soon" for d in j["due"]), "due within 400d lists it")
    st, _, j = call(audrey, "GET", "/api/v1/due?within=forever")
    T.ok(st == 400 and j["field"] == "within", "a bad within: 400 naming it")
    for s, name, want in ((audrey, "auditor", 200), (boss, "operator+support", 200), (gina, "tenant", 403)):
        st, _, j = call(s, "GET", "/api/v1/audit?credential=mx.example.com&action=reveal")
        T.eq(st, want, "%s audit query: %d" % (name, want))
    st, _, j = call(audrey, "GET", "/api/v1/audit?operator=userpass-sam&action=reveal")
    T.ok(j["verified"] and all(e["operator"] == "userpass-sam" and "reveal" in e["type"] for e in j["events"])
         and j["events"], "audit filters by operator and action; chain verified")
    st, _, j = call(audrey, "GET", "/api/v1/audit/verify")
    T.ok(st == 200 and j["verified"] and j["chain"] == "verified", "audit verify")
    st, _, j = call(audrey, "GET", "/api/v1/audit?limit=0")
    T.ok(st == 400 and j["field"] == "limit", "a bad limit: 400 naming it")
    # tenants
    st, _, j = call(alex, "POST", "/api/v1/credentials", {"name": "relay", "username": "acme-relay", "all_domains": True})
    T.eq(st, 403, "tenant acme cannot create under the shared prefix")
    st, _, j = call(alex, "POST", "/api/v1/credentials?tenant=acme", {"name": "relay", "username": "acme-relay",
                                                                      "all_domains": True, "tenant": "acme"})
    T.eq(st, 201, "tenant acme creates under its own prefix")
    st, _, j = call(alex, "GET", "/api/v1/credentials?tenant=acme")
    T.ok(st == 200 and [c["name"] for c in j["credentials"]] == ["relay"], "tenant acme lists its own")
    st, _, j = call(gina, "GET", "/api/v1/credentials?tenant=acme")
    T.eq(st, 403, "tenant globex cannot list acme's")
    for path in ("/api/v1/credentials/acme/relay", "/api/v1/credentials/relay?tenant=acme"):
        st, _, j = call(gina, "GET", path)
        T.eq(st, 403, "tenant globex cannot show acme's (%s)" % path)
        st, _, j = call(gina, "POST", path.replace("relay", "relay/reveal"), {"reason": "x"})
        T.eq(st, 403, "tenant globex cannot reveal acme's (%s)" % path)
    st, _, j = call(boss, "GET", "/api/v1/credentials/acme/relay")
    T.ok(st == 200 and j["tenant"] == "acme", "the operator role sees it as acme/relay under the shared prefix")
    st, _, j = call(alex, "POST", "/api/v1/credentials/relay/reveal?tenant=acme", {"reason": "tenant support"})
    T.ok(st == 200 and j["password"] == PASSWORDS[-2], "tenant acme reveals its own")
    st, _, j = call(gina, "GET", "/api/v1/credentials?tenant=globex")
    T.ok(st == 200 and j["credentials"] == [], "tenant globex sees none of acme's in its own list")
    st, _, j = call(gina, "GET", "/api/v1/credentials?tenant=../x")
    T.ok(st == 400 and j["field"] == "tenant", "a bad tenant: 400 naming it")
    # delete
    for s, name in ((sam, "support"), (audrey, "auditor")):
        st, _, _ = call(s, "DELETE", "/api/v1/credentials/mx.example.com", {"confirm_username": "mx-user"})
        T.eq(st, 403, "%s cannot delete" % name)
    st, _, j = call(olive, "DELETE", "/api/v1/credentials/mx.example.com", {"confirm_username": "someone-else"})
    T.ok(st == 400 and j.get("field") == "confirm_username", "delete with the wrong username: 400", j)
    st, _, j = call(olive, "DELETE", "/api/v1/credentials/mx.example.com", {})
    T.ok(st == 400 and j.get("field") == "confirm_username", "delete without confirmation: 400")
    st, _, j = call(olive, "DELETE", "/api/v1/credentials/mx.example.com", {"confirm_username": "mx-user"})
    T.ok(st == 200 and j == {"deleted": "mx.example.com"}, "operator deletes with the typed username")
    st, _, _ = call(olive, "GET", "/api/v1/credentials/mx.example.com")
    T.eq(st, 404, "gone")
    st, _, j = call(olive, "GET", "/api/v1/session")
    T.ok(st == 200 and j["operator"] == "userpass-olive", "session")
    st, _, _ = olive.call("GET", "/api/v1/nothing-here")
    T.eq(st, 404, "unknown endpoint: 404")
    st, _, _ = olive.call("POST", "/api/v1/credentials/x/unknown", {})
    T.eq(st, 405, "an unknown credential act: 405")


def test_reset(sv):
    """Issue 13's emergency reset from the API: one credential, the core's vks_cred_reset."""
    olive, audrey = sv.login("olive"), sv.login("audrey")
    st, _, j = call(olive, "POST", "/api/v1/credentials", {"name": "rs.example", "username": "rs-user", "all_domains": True})
    T.eq(st, 201, "a credential to reset")
    pw = j["password"]
    c = Cred(sv.vd, enc_key=ENC_KEY, audit_key=AUDIT_KEY, audit_file=sv.audit_file)
    c.secret(pw)
    kind, val = c.resolve("smtp-auth/rs.example")
    T.ok(kind == "OK" and val == pw, "before the reset a fresh resolver gets the password", kind)
    path = "/api/v1/credentials/rs.example/reset"
    for body, why in (({}, "no reason"), ({"reason": ""}, "an empty reason")):
        st, _, j = call(olive, "POST", path, body)
        T.ok(st == 400 and j.get("code") == "invalid_input" and j.get("field") == "reason",
             "reset with %s: 400 naming reason" % why, (st, j))
    st, _, j = call(olive, "POST", path, {"reason": "bad\x01reason"})
    T.ok(st == 400 and j.get("field") == "reason", "a control character in the reason: 400 naming reason", (st, j))
    st, _, j = call(olive, "POST", path, {"reason": "x", "rotate": "yes"})
    T.ok(st == 400 and j.get("field") == "rotate", "rotate not a boolean: 400 naming it", (st, j))
    st, _, j = call(olive, "POST", path, {"reason": "no csrf"}, csrf=False)
    T.ok(st == 403 and j["code"] == "csrf", "reset without the CSRF token: 403", (st, j))
    st, _, j = call(olive, "POST", path, {"reason": "cross origin"}, headers={"Origin": "https://evil.example"})
    T.ok(st == 403 and j["code"] == "cross_origin", "reset from another Origin: 403", (st, j))
    st, _, j = call(audrey, "POST", path, {"reason": "auditor tries"})
    T.eq(st, 403, "the auditor cannot reset (Vault's ACL)")
    st, _, j = call(olive, "GET", "/api/v1/credentials/rs.example")
    T.ok(st == 200 and j["state"] == "active" and j.get("reset_id") is None, "the refused resets changed nothing", j.get("state"))
    st, _, j = call(olive, "POST", "/api/v1/credentials/nosuch.example/reset", {"reason": "typo"})
    T.eq(st, 404, "reset of an unknown credential: 404")
    st, h, j = call(olive, "POST", path, {"reason": "INC-93 leaked relay password"}, headers={"User-Agent": "vks-reset-test/1"})
    T.ok(st == 200 and j["result"] == "success" and j["reset_id"] and j["marked"] == 1 and j["already"] == 0
         and j["failed"] == 0 and j["record_written"] and j["credentials"][0]["outcome"] == "reset",
         "the operator resets it: 200 with reset_id, 1 marked, the control record written", (st, j))
    rid = j.get("reset_id")
    T.eq(h.get("cache-control"), "no-store", "the reset answer is no-store")
    st, _, j = call(olive, "GET", "/api/v1/credentials/rs.example")
    T.ok(st == 200 and j["state"] == "reset" and j["reset_id"] == rid and j["reset_at"],
         "the API show says state reset with the reset_id and reset_at", j and {k: j.get(k) for k in ("state", "reset_id", "reset_at")})
    rc, out, err = c.vks("cred", "show", "rs.example", "--json")
    T.ok(rc == 0 and json.loads(out).get("state") == "reset", "vks cred show --json says state reset", (rc, out[-200:], err[-200:]))
    kind, val = c.resolve("smtp-auth/rs.example")
    T.ok(kind == "ERR" and val.startswith("revoked "), "a fresh resolver now refuses it with code revoked",
         (kind, val[:120] if kind == "ERR" else "a value"))
    ev = [e for e in sv.audit_lines() if e.get("type") == "cred.reset" and e.get("result") == "success"]
    e = ev[-1] if ev else {}
    T.ok(e.get("operator") == "userpass-olive" and e.get("source") == "serve" and e.get("client_addr") == "127.0.0.1"
         and e.get("user_agent") == "vks-reset-test/1" and e.get("reason") == "INC-93 leaked relay password"
         and rid in (e.get("detail") or "") and "name:rs.example" in (e.get("detail") or ""),
         "cred.reset is audited: operator, source serve, address, user agent, reason, reset_id and scope", e)
    T.ok(pw not in json.dumps(ev), "the audit event carries no secret")
    mk = [x for x in sv.audit_lines() if x.get("type") == "cred.reset.mark" and rid in (x.get("detail") or "")]
    T.ok(len(mk) == 1 and mk[0].get("reason") == "INC-93 leaked relay password", "one cred.reset.mark for the credential", mk)
    st, _, j = call(olive, "POST", path, {"reason": "INC-93 again"})
    T.ok(st == 200 and j["marked"] == 0 and j["already"] == 1 and j["credentials"][0]["outcome"] == "already",
         "a second reset says already", (st, j))
    T.ok(not c.leaks(), "no password in the resolver's or vks's output")
    # a tenant's own token marks its credential but may not write the control record (policy)
    alex = sv.login("alex")
    st, _, j = call(alex, "POST", "/api/v1/credentials/relay/reset?tenant=acme", {"reason": "tenant incident"})
    T.ok(st == 403 and j["code"] == "permission_denied" and j["error"] and j["marked"] == 1 and not j["record_written"]
         and j["credentials"][0]["outcome"] == "reset", "a tenant's reset: marked, record refused: 403 saying what was done",
         (st, j))
    st, _, j = call(olive, "POST", "/api/v1/credentials/acme/relay/reset", {"reason": "tenant incident, record"})
    T.ok(st == 200 and j["already"] == 1 and j["record_written"], "the operator's rerun writes the record", (st, j))


def test_reset_rotate(sv, relay):
    boss = sv.login("boss")
    c = Cred(sv.vd, enc_key=ENC_KEY, audit_key=AUDIT_KEY, audit_file=sv.audit_file)
    kind, old = c.resolve("smtp-auth/rot.example")
    T.eq(kind, "OK", "rot.example resolves before")
    st, _, j = call(boss, "POST", "/api/v1/credentials/rot.example/reset", {"reason": "INC-93 rotate", "rotate": True})
    T.ok(st == 200 and j["marked"] == 1 and j["record_written"] and j.get("job") and j.get("rotate_error") is None,
         "reset with rotate: marked, record written, the rotation started as a job", (st, j))
    st, j2 = job(boss, j["job"]) if j.get("job") else (st, {})
    T.ok(j2.get("done") and j2.get("result") == "success", "the rotation job finishes", j2)
    st, _, s = call(boss, "GET", "/api/v1/credentials/rot.example")
    T.ok(st == 200 and s["state"] == "active" and s.get("reset_id") is None and s["current_version"] == j2.get("new_version"),
         "the rotation's finish ended the reset: state active, reset_id gone, the new version current", s and s.get("state"))
    kind, new = c.resolve("smtp-auth/rot.example")
    T.ok(kind == "OK" and new != old, "a fresh resolver gets the new password", kind)
    T.ok(any(e["user"] == "rot-user" and e["ok"] for e in relay.auth_events()), "the relay accepted the new password")
    c.secret(new)
    c.secret(old)
    T.ok(not c.leaks([json.dumps(j), json.dumps(j2)]), "no password in the answers, the audit trail or the outputs")


def oversized(sv, s, path):
    """Headers announcing 70000 bytes, no body sent: the server answers from the headers alone (a
    client still sending would race the server's close)."""
    import socket
    import ssl as _ssl
    ctx = _ssl.create_default_context(cafile=sv.vd.cacert)
    with socket.create_connection(("127.0.0.1", sv.port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            t.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                       "Cookie: vks_session=%s\r\nX-CSRF-Token: %s\r\nContent-Length: 70000\r\n\r\n"
                       % (path, sv.port, s.cookie, s.csrf)).encode())
            data = t.recv(4096).decode(errors="replace")
    SEEN.append(("post", template(path), int(data.split()[1]) if data.startswith("HTTP/") else 0, None))
    return int(data.split()[1]) if data.startswith("HTTP/") else 0


def test_bad_requests(sv):
    s = sv.login("boss")
    st, _, j = call(s, "POST", "/api/v1/credentials", raw=b'{"name": "x", ')
    T.ok(st == 400 and j["code"] == "malformed_json" and j["field"] == "body", "truncated JSON: 400 malformed_json", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", raw=b'["x"]')
    T.ok(st == 400 and j["code"] == "malformed_json", "a JSON array: 400")
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": 5, "username": "u"})
    T.ok(st == 400 and j["field"] == "name", "name of the wrong type: 400 naming name", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "a.example"})
    T.ok(st == 400 and j["field"] == "username", "missing username: 400 naming it", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "a.example", "username": "u", "all_domains": "yes"})
    T.ok(st == 400 and j["field"] == "all_domains", "all_domains not a boolean: 400 naming it", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "a.example", "username": "u", "domains": "x.org"})
    T.ok(st == 400 and j["field"] == "domains", "domains not an array: 400 naming it", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "../etc", "username": "u", "all_domains": True})
    T.ok(st == 400 and j["field"] == "name", "a bad name: 400 naming it", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "a.example", "username": "u v", "all_domains": True})
    T.ok(st == 400 and j["field"] == "username", "a bad username: 400 naming it", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", raw=b"name=x", ctype="application/x-www-form-urlencoded")
    T.ok(st == 415, "a form body: 415", (st, j))
    for path in ("/api/v1/credentials", "/api/v1/login"):
        T.eq(oversized(sv, s, path), 413, "a body over max_body_bytes: 413 on %s" % path)
    st, _, j = call(s, "POST", "/api/v1/credentials", raw=b'{"name":"' + b"a" * 60000 + b'", "username": "u", "all_domains": true}')
    T.ok(st == 400 and j["field"] == "name", "a big body under the limit is read and its field judged", j)
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "csrf.example", "username": "csrf-u", "all_domains": True},
                    csrf=False)
    T.ok(st == 403 and j["code"] == "csrf", "a state change without the CSRF token: 403")
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "csrf.example", "username": "csrf-u", "all_domains": True},
                    headers={"X-CSRF-Token": "0" * 64})
    T.ok(st == 403 and j["code"] == "csrf", "a wrong CSRF token: 403")
    st, _, j = call(s, "POST", "/api/v1/credentials", {"name": "csrf.example", "username": "csrf-u", "all_domains": True},
                    headers={"Origin": "https://evil.example"})
    T.ok(st == 403 and j["code"] == "cross_origin", "another Origin: 403")
    st, _, j = call(s, "GET", "/api/v1/credentials/csrf.example")
    T.eq(st, 404, "nothing was created by the refused requests")
    for path in ("/api/v1/credentials/a%00b", "/ui/credential/../../etc", "/api/v1/credentials/" + "x" * 1100):
        st, _, _ = s.call("GET", path)
        T.eq(st, 400, "a path with a NUL, a '..' segment or over 1 KiB: 400 (%s)" % path[:40])
    st, _, j = sv.request("GET", "/api/v1/credentials", headers={"Cookie": "vks_session=" + "a" * 64})
    T.eq(st, 401, "an unknown session id: 401")


def test_expiry(vd):
    sv = Serve(vd, extra_conf="session_idle_seconds = 10\nsession_max_seconds = 20", setup=False)
    try:
        s = sv.login("boss")
        st, _, _ = call(s, "GET", "/api/v1/session")
        T.eq(st, 200, "short-lived server: session works")
        time.sleep(11)
        st, _, j = call(s, "GET", "/api/v1/credentials")
        T.ok(st == 401 and j["code"] == "unauthenticated", "after the idle timeout the session is gone", (st, j))
        s = sv.login("boss")
        for _ in range(3):   # kept busy, it still ends at the absolute lifetime
            time.sleep(7)
            st, _, _ = call(s, "GET", "/api/v1/session")
        T.eq(st, 401, "a busy session ends at session_max_seconds")
    finally:
        sv.stop()
        OUT.append(sv.stderr_text())


def job(s, jid, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        st, _, j = call(s, "GET", "/api/v1/jobs/" + jid)
        if st != 200 or j["done"] or time.monotonic() > deadline:
            return st, j
        time.sleep(0.1)


def test_rotate(sv, relay):
    boss, sam, audrey, olive = (sv.login(u) for u in ("boss", "sam", "audrey", "olive"))
    st, _, j = call(boss, "POST", "/api/v1/credentials", {"name": "rot.example", "username": "rot-user", "all_domains": True,
                                                          "relay": "127.0.0.1:%d" % relay.port})
    T.eq(st, 201, "a credential with a relay")
    old = j["password"]
    relay.set_creds([("rot-user", old)])
    st, _, j = call(boss, "POST", "/api/v1/credentials/rot.example/rotate", {})
    T.ok(st == 202 and j["job"], "rotate starts a job: 202", (st, j))
    st, j2 = job(boss, j["job"])
    steps = [x.split(":")[0] for x in j2["steps"]]
    T.ok(j2["done"] and j2["result"] == "success" and j2["new_version"] == j2["old_version"] + 1,
         "the rotation finished: a new current version, the old one previous", j2)
    T.ok([x for x in ("claim", "create", "set", "test", "finish") if x in steps] == ["claim", "create", "set", "test", "finish"],
         "the job reported the four steps after the claim, in order", steps)
    st, _, other = call(olive, "GET", "/api/v1/jobs/" + j["job"])
    T.eq(st, 404, "another operator cannot see the job")
    st, _, r = call(boss, "POST", "/api/v1/credentials/rot.example/reveal", {"reason": "check the rotation"})
    T.ok(st == 200 and r["password"] != old and r["version"] == j2["new_version"], "the new password is current")
    ok = [e for e in relay.auth_events() if e["user"] == "rot-user" and e["ok"]]
    T.ok(ok, "the relay accepted the new password in the test step")
    for s, name in ((sam, "support"), (audrey, "auditor")):
        st, _, j = call(s, "POST", "/api/v1/credentials/rot.example/rotate", {})
        st, j2 = job(s, j["job"]) if st == 202 else (st, j)
        T.ok(j2.get("result") == "failure" and j2.get("code") == "permission_denied", "%s cannot rotate" % name, j2)
    st, _, j = call(boss, "POST", "/api/v1/credentials/rot.example/rotate", {"abort": True})
    T.ok(st == 404, "abort with nothing in flight: 404", (st, j))
    st, _, j = call(boss, "POST", "/api/v1/credentials/rot.example/rotate", {"abort": True, "resume": True})
    T.ok(st == 400 and j["field"] == "abort", "resume and abort together: 400")
    st, _, j = call(boss, "GET", "/api/v1/jobs/nope")
    T.eq(st, 404, "an unknown job: 404")
    rot = [e for e in sv.audit_lines() if e.get("type") == "cred.rotate.finish" and e.get("result") == "success"]
    T.ok(rot and rot[-1]["operator"] == "userpass-boss" and rot[-1]["source"] == "serve", "the rotation is audited")


TOTP_B32 = "JBSWY3DPEHPK3PXPTESTSERVE2STEPUP"   # listed in tests/test-secrets.d/serve.txt


def totp(b32, t=None, step=0):
    import base64
    import hashlib
    import hmac
    import struct
    key = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    c = int((time.time() if t is None else t) // 30) + step
    mac = hmac.new(key, struct.pack(">Q", c), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7fffffff) % 1000000)


def test_totp(vd):
    f = os.path.join(vd.workdir, "totp")
    with open(f, "w") as fh:
        fh.write("# operator base32-secret\nuserpass-boss %s\n" % TOTP_B32)
    os.chmod(f, 0o644)
    bad = Serve(vd, extra_conf='totp_file = "%s"' % f, setup=False, start=False)
    try:
        bad.start(timeout=5)
        T.ok(False, "a totp_file readable by others is refused")
    except RuntimeError as e:
        T.ok("not readable by group or others" in str(e), "a totp_file readable by others is refused at start")
    bad.stop()
    os.chmod(f, 0o600)
    sv = Serve(vd, extra_conf='totp_file = "%s"\ntotp_required = true' % f, setup=False)
    try:
        boss = sv.login("boss")
        path = "/api/v1/credentials/rot.example/reveal"
        st, _, j = call(boss, "POST", path, {"reason": "step-up test"})
        T.ok(st == 401 and j["code"] == "totp_required" and j["field"] == "totp", "a reveal needs the one-time code", j)
        st, _, j = call(boss, "POST", path, {"reason": "step-up test", "totp": "%06d" % ((int(totp(TOTP_B32)) + 1) % 10 ** 6)})
        T.ok(st == 401 and j["code"] == "totp_invalid", "a wrong code is refused", j)
        code = totp(TOTP_B32)
        st, _, j = call(boss, "POST", path, {"reason": "step-up test", "totp": code})
        T.ok(st == 200 and j["password"], "the right code steps up and reveals", (st, j and j.get("code")))
        st, _, j = call(boss, "POST", path, {"reason": "step-up test, again"})
        T.eq(st, 200, "stepped up: the next reveal needs no code")
        boss2 = sv.login("boss")
        st, _, j = call(boss2, "POST", path, {"reason": "replay", "totp": code})
        T.ok(st == 401 and j["code"] == "totp_invalid", "the same code is not accepted twice (replay)", j)
        sam = sv.login("sam")
        st, _, j = call(sam, "POST", path, {"reason": "no secret", "totp": "123456"})
        T.ok(st == 403 and j["code"] == "totp_not_enrolled", "totp_required: an operator without a secret cannot reveal", j)
        ev = [e for e in sv.audit_lines() if e.get("type") == "serve.stepup"]
        T.ok([e["result"] for e in ev[-4:]] == ["failure", "success", "failure", "failure"],
             "step-ups are audited", [(e["result"], e.get("detail")) for e in ev])
        # the emergency reset needs the same step-up
        resets = lambda: len([e for e in sv.audit_lines() if e.get("type", "").startswith("cred.reset")
                              and (e.get("path") or "").endswith("rot.example")])  # noqa: E731
        before = resets()
        fresh = sv.login("boss")
        rpath = "/api/v1/credentials/rot.example/reset"
        st, _, j = call(fresh, "POST", rpath, {"reason": "step-up test"})
        T.ok(st == 401 and j["code"] == "totp_required" and j["field"] == "totp", "a reset needs the one-time code", j)
        st, _, j = call(fresh, "POST", rpath, {"reason": "step-up test", "totp": code})
        T.ok(st == 401 and j["code"] == "totp_invalid", "a reset with a used code is refused (replay)", j)
        st, _, j = call(sam, "POST", rpath, {"reason": "no secret"})
        T.ok(st == 403 and j["code"] == "totp_not_enrolled", "totp_required: an operator without a secret cannot reset", j)
        st, _, j = call(fresh, "GET", "/api/v1/credentials/rot.example")
        T.ok(st == 200 and j["state"] == "active" and j.get("reset_id") is None, "the refused resets did nothing", j.get("state"))
        T.ok(before > 0 and resets() == before, "no cred.reset event for the refused ones", (before, resets()))
    finally:
        sv.stop()
        OUT.append(sv.stderr_text())


OUT = []


def main():
    with VaultDev() as vd:
        relay = Relay(vd.workdir, creds=[])
        hook = os.path.join(vd.workdir, "set-hook.sh")
        with open(hook, "w") as f:
            f.write('read -r pw || exit 9\nprintf "%s:%s\\n" "$VKS_CRED_USERNAME" "$pw" >> "$1"\n')
        sv = Serve(vd, extra_conf='rotate_set_hook = "/bin/sh %s %s"\nrotate_cafile = "%s"' % (hook, relay.creds_path,
                                                                                              relay.cafile))
        try:
            for fn, args in ((test_program, (sv,)), (test_health_and_headers, (sv,)), (test_login, (sv, vd)), (test_roles, (sv,)),
                             (test_bad_requests, (sv,)), (test_rotate, (sv, relay)), (test_reset, (sv,)),
                             (test_reset_rotate, (sv, relay)),
                             (test_lockout, (sv,))):
                T.run(fn, *args)
            T.run(check_openapi, sv)
        finally:
            sv.stop()
        T.run(test_totp, vd)
        relay.stop()
        T.run(test_expiry, vd)
        T.eq(sv.rc, 0, "vks serve exits 0 on SIGTERM")
        texts = OUT + [sv.stderr_text(), vd.stderr_text(), open(sv.audit_file).read()]
        san = [t for t in OUT + [sv.stderr_text()] if "Sanitizer" in t or "runtime error:" in t]
        T.ok(not san and not vd.sanitizer_report(), "no sanitizer report from vks-serve or vault-dev (make asan)",
             san[:1])
        leaks = [i for i, p in enumerate(PASSWORDS) for t in texts if p in t]
        T.ok(PASSWORDS and not leaks, "no password handed out appears in a log, the audit trail or stderr", leaks)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
