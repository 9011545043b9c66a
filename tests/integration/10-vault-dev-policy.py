"""vault-dev over raw HTTPS, part 2: ACL policy semantics (HCL and JSON, globs, precedence),
sys/internal/ui/mounts preflight, sys/health codes, sys/mounts and tune, namespaces by header and
by path, AppRole error bodies, token renew caps, delete_version_after, standby 307, and a burst of
malformed requests that must never crash the server."""
import json
import os
import random
import socket
import sys

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402

T = Checks()
PW1 = "smtp-pass-DEVTEST-one-81c2"


def test_acl(vd):
    vd.policy("globs", """
# comments are fine
path "secret/data/smtp-auth/*" {
  capabilities = ["read", "list"]
}
// another comment style
path "secret/data/smtp-auth/blocked" { capabilities = ["deny"] }
path "secret/data/+/shared" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["list"] }
path "secret/data/rw/*" { capabilities = ["create", "read"] }
path "secret/data/legacy" { policy = "write" }
/* block comment */
""")
    st, j = vd.call("GET", "/v1/sys/policies/acl/globs")
    T.ok(st == 200 and j["data"]["name"] == "globs" and 'path "secret/data/+/shared"' in j["data"]["policy"], "policy read back verbatim")
    for p in ("smtp-auth/a", "smtp-auth/blocked", "x/shared", "x/y/shared", "rw/new", "legacy"):
        vd.kv2_put(p, {"key": PW1})
    tok = vd.create_token(policies=["globs"])
    g = lambda p: vd.call("GET", "/v1/secret/data/" + p, token=tok)[0]  # noqa: E731
    T.eq(g("smtp-auth/a"), 200, "glob * grants read")
    T.eq(g("smtp-auth/blocked"), 403, "exact deny beats the glob")
    T.eq(g("x/shared"), 200, "+ matches one segment")
    T.eq(g("x/y/shared"), 403, "+ does not match two segments")
    T.eq(vd.call("LIST", "/v1/secret/metadata/smtp-auth", token=tok)[0], 200, "list capability on metadata/*")
    st, j = vd.call("POST", "/v1/secret/data/rw/brand-new", {"data": {"key": PW1}}, token=tok)
    T.eq(st, 200, "create capability writes a new key")
    st, j = vd.call("POST", "/v1/secret/data/rw/new", {"data": {"key": PW1}}, token=tok)
    T.eq((st, j), (403, {"errors": ["permission denied"]}), "create without update cannot overwrite an existing key")
    T.eq(vd.call("POST", "/v1/secret/data/legacy", {"data": {"a": "b"}}, token=tok)[0], 200, "legacy policy = \"write\"")
    T.eq(vd.call("DELETE", "/v1/secret/data/smtp-auth/a", token=tok)[0], 403, "no delete capability")
    # JSON form, and a bad policy
    st, _ = vd.call("PUT", "/v1/sys/policies/acl/jsonp", {"policy": json.dumps({"path": {"secret/data/j/*": {"capabilities": ["read"]}}})})
    T.eq(st, 204, "JSON policy accepted")
    st, j = vd.call("PUT", "/v1/sys/policies/acl/bad", {"policy": 'path "x" { capabilities = ["fly"] }'})
    T.ok(st == 400 and "failed to parse policy" in j["errors"][0], "unknown capability: 400 failed to parse policy")
    st, j = vd.call("PUT", "/v1/sys/policies/acl/bad", {"policy": 'path "x" { capabilities = '})
    T.eq(st, 400, "truncated HCL: 400")
    st, j = vd.call("LIST", "/v1/sys/policies/acl")
    T.ok(st == 200 and {"default", "globs", "jsonp", "root"} <= set(j["data"]["keys"]), "LIST sys/policies/acl")
    T.eq(vd.call("DELETE", "/v1/sys/policies/acl/default")[0], 400, "default policy cannot be deleted")
    # the default policy is what lets a token look itself up
    bare = vd.create_token(policies=["globs"], no_default_policy=True)
    T.eq(vd.call("GET", "/v1/auth/token/lookup-self", token=bare)[0], 403, "without the default policy: no lookup-self")
    st, j = vd.call("POST", "/v1/sys/capabilities-self", {"paths": ["secret/data/smtp-auth/a"]}, token=tok)
    T.eq(sorted(j["data"]["secret/data/smtp-auth/a"]), ["list", "read"], "capabilities-self")
    # preflight
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/secret/smtp-auth/a", token=tok)
    T.ok(st == 200 and j["data"]["options"]["version"] == "2", "ui/mounts with access: 200")
    other = vd.create_token(policies=["jsonp"])
    vd.call("POST", "/v1/sys/mounts/kvx", {"type": "kv", "options": {"version": "1"}})
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/kvx/foo", token=other)
    T.eq((st, j), (403, {"errors": ['preflight capability check returned 403, please ensure client\'s policies grant access to path "kvx/foo/"']}),
         "ui/mounts without access: Vault's preflight 403")
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/nomount/foo")
    T.ok(st == 403 and "preflight capability check returned 403" in j["errors"][0], "ui/mounts for no mount: 403")
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/secret/foo", token=None)
    T.eq(st, 403, "ui/mounts without a token: 403")


def test_sys(vd):
    st, h, raw = vd.request("HEAD", "/v1/sys/health", token=None)
    T.eq((st, raw), (200, b""), "HEAD sys/health: 200, no body")
    st, j = vd.call("GET", "/v1/sys/health?activecode=299", token=None)
    T.eq(st, 299, "activecode override")
    T.eq(vd.call("GET", "/v1/sys/health?sealedcode=abc", token=None)[0], 400, "bad code override: 400")
    T.eq(vd.call("POST", "/v1/sys/health", {}, token=None)[0], 405, "POST sys/health: 405")
    vd.seal()
    T.eq(vd.call("GET", "/v1/sys/health?sealedcode=299", token=None)[0], 299, "sealedcode override")
    T.eq(vd.call("GET", "/v1/sys/dev/info")[0], 200, "sys/dev works while sealed")
    vd.unseal()
    st, j = vd.call("GET", "/v1/sys/mounts")
    T.ok(st == 200 and j["data"]["secret/"]["options"] == {"version": "2"} and j["data"]["secret/"]["type"] == "kv", "sys/mounts list")
    st, j = vd.call("POST", "/v1/sys/mounts/kv2b", {"type": "kv-v2"})
    T.eq(st, 204, "mount type kv-v2")
    st, j = vd.call("POST", "/v1/sys/mounts/kv2b", {"type": "kv-v2"})
    T.ok(st == 400 and "path is already in use" in j["errors"][0], "double mount: 400 path is already in use")
    st, j = vd.call("POST", "/v1/sys/mounts/pki", {"type": "pki"})
    T.eq(st, 400, "unsupported engine type: 400")
    vd.call("POST", "/v1/sys/mounts/kvl", {"type": "kv", "config": {"default_lease_ttl": "10m"}})
    vd.kv1_put("a", {"key": PW1}, mount="kvl")
    T.eq(vd.kv1_get("a", mount="kvl")[1]["lease_duration"], 600, "kv v1 lease from the mount's default_lease_ttl")
    T.eq(vd.call("POST", "/v1/sys/mounts/kvl/tune", {"default_lease_ttl": 120})[0], 204, "tune")
    T.eq(vd.kv1_get("a", mount="kvl")[1]["lease_duration"], 120, "tuned default_lease_ttl applies")
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/kvl/a")
    T.eq(j["data"]["options"], None, "kv mounted without options: options null (v1)")
    T.eq(vd.call("DELETE", "/v1/sys/mounts/kvl")[0], 204, "unmount")
    st, j = vd.call("GET", "/v1/kvl/a")
    T.eq((st, j), (404, {"errors": ['no handler for route "kvl/a". route entry not found.']}), "unmounted: no handler")


def test_kv2_timing(vd):
    vd.call("POST", "/v1/secret/metadata/dva", {"delete_version_after": "1h"})
    vd.kv2_put("dva", {"key": PW1})
    st, j = vd.kv2_get("dva")
    T.ok(st == 200 and j["data"]["metadata"]["deletion_time"] != "", "future deletion_time still readable (200)")
    vd.advance(3601)
    st, j = vd.kv2_get("dva")
    T.ok(st == 404 and j["data"]["metadata"]["deletion_time"] != "" and "errors" not in j, "after delete_version_after: 404 deleted")
    vd.clock(0)
    st, j = vd.call("GET", "/v1/secret/metadata/dva")
    T.eq(j["data"]["delete_version_after"], "1h0m0s", "delete_version_after as Go duration string")
    st, _ = vd.call("PATCH", "/v1/secret/metadata/dva", {"custom_metadata": {"a": "1"}}, headers={"Content-Type": "application/merge-patch+json"})
    T.eq(st, 204, "metadata PATCH")
    T.eq(vd.call("GET", "/v1/secret/metadata/dva")[1]["data"]["custom_metadata"], {"a": "1"}, "metadata PATCH applied")
    st, _ = vd.call("PATCH", "/v1/secret/metadata/nokey", {"max_versions": 1}, headers={"Content-Type": "application/merge-patch+json"})
    T.eq(st, 404, "metadata PATCH on a missing key: 404")
    st, j = vd.call("GET", "/v1/secret/config")
    T.ok(st == 200 and j["data"]["max_versions"] == 0 and j["data"]["cas_required"] is False, "kv v2 config read")
    st, j = vd.call("GET", "/v1/secret/data/")
    T.ok(st == 404 and "Non-listing operations on the root" in j["warnings"][0], "data/ root: 404 with warning")


def test_tokens_more(vd):
    st, j = vd.call("POST", "/v1/auth/token/create", {"policies": ["default"], "ttl": "1h", "explicit_max_ttl": "90m"})
    tok = j["auth"]["client_token"]
    st, j = vd.call("POST", "/v1/auth/token/renew-self", {"increment": "2h"}, token=tok)
    T.ok(st == 200 and j["auth"]["lease_duration"] <= 5400 and j["warnings"] and "capped" in j["warnings"][0],
         "renew beyond explicit_max_ttl: capped with a warning")
    st, j = vd.call("POST", "/v1/auth/token/renew-self", {"increment": 60}, token=tok)
    T.eq((st, j["auth"]["lease_duration"]), (200, 60), "integer increment (seconds)")
    T.eq(vd.call("POST", "/v1/auth/token/lookup", {"token": tok})[1]["data"]["explicit_max_ttl"], 5400, "lookup by root")
    acc = vd.call("GET", "/v1/auth/token/lookup-self", token=tok)[1]["data"]["accessor"]
    T.eq(vd.call("POST", "/v1/auth/token/revoke-accessor", {"accessor": acc})[0], 204, "revoke-accessor")
    T.eq(vd.call("GET", "/v1/auth/token/lookup-self", token=tok)[0], 403, "revoked by accessor")
    st, j = vd.call("POST", "/v1/auth/token/create", {"ttl": "bogus"})
    T.eq(st, 400, "bad ttl: 400")


def test_approle_raw(vd):
    T.eq(vd.call("POST", "/v1/sys/auth/approle", {"type": "approle"})[0], 204, "sys/auth enable approle")
    st, j = vd.call("POST", "/v1/sys/auth/approle", {"type": "approle"})
    T.eq(st, 400, "enable twice: 400")
    T.eq(vd.call("POST", "/v1/auth/approle/role/r1", {"token_policies": "default", "secret_id_num_uses": 1})[0], 204, "role write")
    rid = vd.call("GET", "/v1/auth/approle/role/r1/role-id")[1]["data"]["role_id"]
    sid = vd.call("POST", "/v1/auth/approle/role/r1/secret-id", {})[1]["data"]["secret_id"]
    st, j = vd.call("POST", "/v1/auth/approle/login", {"role_id": rid}, token=None)
    T.eq((st, j), (400, {"errors": ["missing secret_id"]}), "login without secret_id")
    st, j = vd.call("POST", "/v1/auth/approle/login", {"secret_id": sid}, token=None)
    T.eq((st, j), (400, {"errors": ["missing role_id"]}), "login without role_id")
    st, j = vd.call("POST", "/v1/auth/approle/login", {"role_id": "nope", "secret_id": sid}, token=None)
    T.eq((st, j), (400, {"errors": ["invalid role or secret ID"]}), "unknown role_id: 400 invalid role or secret ID")
    st, j = vd.call("POST", "/v1/auth/approle/login", {"role_id": rid, "secret_id": sid}, token=None)
    T.ok(st == 200 and j["auth"]["token_type"] == "service" and j["data"] is None and j["auth"]["lease_duration"] == 2764800,
         "login: default TTL 768h")
    st, j = vd.call("POST", "/v1/auth/approle/login", {"role_id": rid, "secret_id": sid}, token=None)
    T.eq(st, 400, "secret_id_num_uses=1: second login refused")
    T.eq(vd.call("GET", "/v1/auth/approle/role/none")[0], 404, "unknown role: 404")
    T.eq(vd.call("POST", "/v1/auth/noauth/login", {}, token=None)[0], 404, "login on an unmounted auth path: 404")


def test_namespaces_raw(vd):
    T.eq(vd.call("POST", "/v1/sys/namespaces/ns1")[0], 200, "create ns1")
    st, j = vd.call("POST", "/v1/sys/namespaces/ns2", headers={"X-Vault-Namespace": "ns1"})
    T.ok(st == 200 and j["data"]["path"] == "ns1/ns2/", "nested namespace via header")
    T.eq(vd.call("POST", "/v1/ns1/ns2/sys/mounts/secret", {"type": "kv-v2"})[0], 204, "mount in ns1/ns2 by path prefix")
    vd.call("POST", "/v1/secret/data/k", {"data": {"where": "ns1/ns2"}}, headers={"X-Vault-Namespace": "ns1/ns2/"})
    for hdr, path in (("ns1/ns2", "/v1/secret/data/k"), ("ns1", "/v1/ns2/secret/data/k"), (None, "/v1/ns1/ns2/secret/data/k"),
                      ("/ns1/ns2/", "/v1/secret/data/k")):
        st, j = vd.call("GET", path, headers={"X-Vault-Namespace": hdr} if hdr else None)
        T.ok(st == 200 and j["data"]["data"]["where"] == "ns1/ns2", "namespace %r + %s" % (hdr, path))
    st, j = vd.call("GET", "/v1/secret/data/k")
    T.eq(st, 404, "root namespace has its own secret/")
    st, j = vd.call("LIST", "/v1/sys/namespaces")
    T.ok(st == 200 and j["data"]["keys"] == ["ns1/"], "LIST namespaces shows direct children")


def test_standby(vd):
    sb = VaultDev(tls=True, args=["--standby-of", vd.addr])
    try:
        st, h, raw = sb.request("GET", "/v1/secret/data/x?version=2")
        T.eq((st, h.get("location")), (307, vd.addr + "/v1/secret/data/x?version=2"), "standby: 307 to the active node")
        st, j = sb.call("GET", "/v1/sys/health", token=None)
        T.ok(st == 429 and j["standby"] is True, "standby health: 429 standby")
        T.eq(sb.call("GET", "/v1/sys/health?standbyok=true", token=None)[0], 200, "standbyok=true: 200")
    finally:
        T.eq(sb.stop(), 0, "standby server exits cleanly")


def test_garbage(vd):
    rnd = random.Random(1234)
    methods = ["GET", "POST", "PUT", "DELETE", "LIST", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]
    paths = ["/v1/secret/data/", "/v1/secret/metadata/", "/v1/sys/", "/v1/auth/token/", "/v1/auth/approle/", "/v1/",
             "/", "/v1/sys/namespaces/", "/v1/sys/policies/acl/", "/v1/sys/internal/ui/mounts/", "/v1/kv/", "/v1/sys/mounts/"]
    tails = ["", "a", "a/b", "..", "%00", "%ff", "+", "*", "a//b", "x" * 300, "?list=true", "?version=-1", "?version=abc"]
    bodies = [None, "", "{", "[]", "null", "\"s\"", "123", "{\"data\":[]}", "{\"data\":{\"a\":{\"b\":[1,2,{}]}}}",
              "{\"options\":{\"cas\":\"x\"},\"data\":{}}", "{\"versions\":\"1,2\"}", "{\"policy\":\"path\"}",
              "{\"type\":\"kv\",\"options\":{\"version\":7}}", "\x00\x01\x02", "{\"a\":" * 50, "{\"ttl\":-5}"]
    crashed = 0
    for i in range(400):
        m = rnd.choice(methods)
        p = rnd.choice(paths) + rnd.choice(tails)
        b = rnd.choice(bodies)
        h = {"Content-Type": rnd.choice(["application/json", "application/x-www-form-urlencoded", "application/merge-patch+json", "text/plain"])}
        if rnd.random() < 0.2:
            h["X-Vault-Namespace"] = rnd.choice(["", "ns1", "nope/", "//", "../"])
        try:
            st, _, _ = vd.request(m, p, body=b, headers=h, token=rnd.choice(["root", None, "garbage"]))
            if st >= 500 and st != 503:
                crashed += 1
                print("   unexpected %d for %s %s" % (st, m, p[:60]))
        except (ConnectionError, socket.timeout, OSError) as e:
            crashed += 1
            print("   connection error %s for %s %s" % (type(e).__name__, m, p[:60]))
    T.eq(crashed, 0, "400 malformed requests: no 5xx, no dropped connection")
    T.eq(vd.call("GET", "/v1/sys/health", token=None)[0], 200, "alive after the garbage")


def main():
    vd = VaultDev(args=["--kv1", "kv"])
    try:
        for fn in (test_acl, test_sys, test_kv2_timing, test_tokens_more, test_approle_raw, test_namespaces_raw,
                   test_standby, test_garbage):
            T.run(fn, vd)
    finally:
        rc = vd.stop()
    T.eq(rc, 0, "SIGTERM: clean exit 0")
    T.ok(not vd.sanitizer_report(), "no sanitizer report on the server's stderr")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
