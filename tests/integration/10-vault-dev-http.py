"""vault-dev over raw HTTPS (http.client + ssl): status codes, headers and JSON bodies of the
Vault wire rules (reference: /work/shared/reference/vault-http-api.md), and the /v1/sys/dev/ controls."""
import json
import os
import re
import socket
import ssl
import sys
import threading

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402

T = Checks()
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# test secret values (listed in tests/test-secrets.d/dev.txt)
PW1 = "smtp-pass-DEVTEST-one-81c2"
PW2 = "smtp-pass-DEVTEST-two-93d4"
ENVELOPE_KEYS = ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth", "mount_type"]


def keys_in_order(raw):
    return list(json.loads(raw).keys())


def test_envelope_and_headers(vd):
    vd.kv2_put("smtp-auth/example.com", {"key": PW1})
    st, h, raw = vd.request("GET", "/v1/secret/data/smtp-auth/example.com")
    T.eq(st, 200, "kv2 read: 200")
    T.eq(h.get("cache-control"), "no-store", "Cache-Control: no-store")
    T.eq(h.get("content-type"), "application/json", "Content-Type: application/json")
    T.ok(raw.endswith(b"}\n"), "success body ends with a newline (Encoder.Encode)")
    T.eq(keys_in_order(raw), ENVELOPE_KEYS, "envelope keys in Vault's order")
    j = json.loads(raw)
    T.ok(UUID.match(j["request_id"]), "request_id is a UUID")
    T.ok(j["data"]["data"]["key"] == PW1, "kv2 read returns the stored value")
    md = j["data"]["metadata"]
    T.eq(sorted(md), ["created_time", "custom_metadata", "deletion_time", "destroyed", "version"], "metadata keys")
    T.ok(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$", md["created_time"]), "created_time RFC 3339 UTC")
    T.eq((md["deletion_time"], md["destroyed"], md["version"]), ("", False, 1), "fresh version metadata")
    T.eq(j["mount_type"], "kv", "mount_type kv")
    _, _, raw2 = vd.request("GET", "/v1/secret/data/smtp-auth/example.com")
    T.ok(json.loads(raw2)["request_id"] != j["request_id"], "request_id differs per request")
    # Authorization: Bearer
    st, _, _ = vd.request("GET", "/v1/secret/data/smtp-auth/example.com", token=None,
                          headers={"Authorization": "Bearer " + vd.root_token})
    T.eq(st, 200, "Authorization: Bearer accepted")
    st, _, raw = vd.request("GET", "/v1/secret/data/smtp-auth/example.com", token=None)
    T.eq((st, json.loads(raw)), (403, {"errors": ["permission denied"]}), "no token: 403 permission denied")
    st, _, raw = vd.request("GET", "/v1/secret/data/smtp-auth/example.com", token="not-a-token")
    T.ok(st == 403 and "permission denied" in json.loads(raw)["errors"][0] and "invalid token" in json.loads(raw)["errors"][0],
         "bad token: 403 permission denied + invalid token")


def test_kv2_versions(vd):
    p = "/v1/secret/data/v/one"
    st, j = vd.call("POST", p, {"data": {"key": PW1}, "options": {"cas": 0}})
    T.eq((st, j["data"]["version"]), (200, 1), "write cas=0 on a new key creates version 1")
    T.eq(sorted(j["data"]), ["created_time", "custom_metadata", "deletion_time", "destroyed", "version"], "write data keys")
    st, j = vd.call("POST", p, {"data": {"key": PW2}, "options": {"cas": 0}})
    T.eq((st, j), (400, {"errors": ["check-and-set parameter did not match the current version"]}), "CAS mismatch: 400 with Vault's message")
    st, j = vd.call("POST", p, {"data": {"key": PW2}, "options": {"cas": 1}})
    T.eq((st, j["data"]["version"]), (200, 2), "cas=1 writes version 2")
    st, j = vd.kv2_get("v/one", version=1)
    T.ok(st == 200 and j["data"]["data"]["key"] == PW1 and j["data"]["metadata"]["version"] == 1, "?version=1 reads the old version")
    st, j = vd.kv2_get("v/one")
    T.ok(st == 200 and j["data"]["data"]["key"] == PW2, "latest is version 2")
    st, j = vd.kv2_get("v/one", version=7)
    T.eq((st, j), (404, {"errors": []}), "missing version: 404 {\"errors\":[]}")
    st, _, raw = vd.request("POST", p, body={"options": {}})
    T.eq((st, json.loads(raw)), (400, {"errors": ["no data provided"]}), "write without data: 400 no data provided")
    # soft delete of the latest
    st, h, raw = vd.request("DELETE", p)
    T.eq((st, raw), (204, b""), "DELETE data: 204 empty")
    T.eq(h.get("content-type"), "application/json", "204 still has Content-Type")
    st, h, raw = vd.request("GET", p)
    j = json.loads(raw)
    T.eq(st, 404, "soft-deleted latest: 404")
    T.ok("errors" not in j, "soft-deleted: no errors key")
    T.eq(keys_in_order(raw), ENVELOPE_KEYS, "soft-deleted: full envelope")
    T.ok(j["data"]["data"] is None and j["data"]["metadata"]["deletion_time"] != "" and j["data"]["metadata"]["version"] == 2,
         "soft-deleted: data null, metadata with deletion_time")
    T.ok(not raw.endswith(b"\n"), "soft-deleted body is compact json.Marshal output (no newline)")
    st, j = vd.kv2_get("v/one", version=1)
    T.eq(st, 200, "older version still readable after deleting the latest")
    # undelete
    st, _ = vd.call("POST", "/v1/secret/undelete/v/one", {"versions": [2]})
    T.eq(st, 204, "undelete: 204")
    st, j = vd.kv2_get("v/one")
    T.ok(st == 200 and j["data"]["data"]["key"] == PW2 and j["data"]["metadata"]["deletion_time"] == "", "undeleted version readable")
    # delete specific versions
    st, j = vd.call("POST", "/v1/secret/delete/v/one", {"versions": []})
    T.eq((st, j), (400, {"errors": ["No version number provided"]}), "delete with no versions: 400")
    st, _ = vd.call("POST", "/v1/secret/delete/v/one", {"versions": [1]})
    T.eq(st, 204, "delete versions [1]: 204")
    st, j = vd.kv2_get("v/one", version=1)
    T.ok(st == 404 and j["data"]["metadata"]["deletion_time"] != "", "version 1 soft-deleted")
    # destroy
    st, j = vd.call("POST", "/v1/secret/destroy/v/one", {})
    T.eq((st, j), (400, {"errors": ["no version number provided"]}), "destroy without versions: 400")
    st, _ = vd.call("PUT", "/v1/secret/destroy/v/one", {"versions": [2]})
    T.eq(st, 204, "destroy [2]: 204")
    st, j = vd.kv2_get("v/one")
    T.ok(st == 404 and j["data"]["data"] is None and j["data"]["metadata"]["destroyed"] is True and "errors" not in j,
         "destroyed: 404, destroyed true, data null")
    st, _ = vd.call("POST", "/v1/secret/undelete/v/one", {"versions": [2]})
    st, j = vd.kv2_get("v/one")
    T.ok(st == 404 and j["data"]["metadata"]["destroyed"] is True, "undelete does not revive a destroyed version")
    # missing keys are silent
    for op in ("delete", "undelete", "destroy"):
        st, _ = vd.call("POST", "/v1/secret/%s/no/such/key" % op, {"versions": [1]})
        T.eq(st, 204, "%s on a missing key: 204" % op)
    st, _, raw = vd.request("DELETE", "/v1/secret/data/no/such/key")
    T.eq(st, 204, "DELETE on a missing key: 204")
    st, j = vd.kv2_get("no/such/key")
    T.eq((st, j), (404, {"errors": []}), "missing key: 404 {\"errors\":[]}")


def test_kv2_metadata(vd):
    vd.call("POST", "/v1/secret/metadata/m/k", {"max_versions": 2, "custom_metadata": {"owner": "ops", "tier": "gold"}})
    for i in range(4):
        vd.kv2_put("m/k", {"n": str(i)})
    st, j = vd.call("GET", "/v1/secret/metadata/m/k")
    d = j["data"]
    T.eq(st, 200, "metadata read: 200")
    T.eq((d["current_version"], d["oldest_version"], d["max_versions"]), (4, 3, 2), "max_versions prunes old versions")
    T.eq(sorted(d["versions"]), ["3", "4"], "only the newest 2 versions kept")
    T.eq(d["custom_metadata"], {"owner": "ops", "tier": "gold"}, "custom_metadata stored")
    T.eq(d["delete_version_after"], "0s", "delete_version_after as Go duration")
    T.ok(set(d) >= {"cas_required", "created_time", "updated_time", "versions"}, "metadata fields present")
    st, j = vd.kv2_get("m/k", version=1)
    T.eq((st, j), (404, {"errors": []}), "pruned version: 404 {\"errors\":[]}")
    st, j = vd.kv2_get("m/k")
    T.eq(j["data"]["metadata"]["custom_metadata"], {"owner": "ops", "tier": "gold"}, "custom_metadata on data reads")
    st, j = vd.call("LIST", "/v1/secret/metadata/m/")
    T.eq((st, j["data"]["keys"]), (200, ["k"]), "LIST metadata")
    vd.kv2_put("m/sub/deeper", {"x": "y"})
    st, j = vd.call("GET", "/v1/secret/metadata/m/?list=true")
    T.eq(j["data"]["keys"], ["k", "sub/"], "GET ?list=true lists, folders end with /")
    st, j = vd.call("LIST", "/v1/secret/metadata/empty/")
    T.eq((st, j), (404, {"errors": []}), "empty list: 404 {\"errors\":[]}")
    st, j = vd.call("GET", "/v1/secret/metadata/m/k?list=maybe")
    T.eq((st, j), (400, {"errors": []}), "bad list= value: 400")
    st, j = vd.call("POST", "/v1/secret/metadata/m/k", {"cas_required": True})
    st, j = vd.call("POST", "/v1/secret/data/m/k", {"data": {"n": "x"}})
    T.eq((st, j), (400, {"errors": ["check-and-set parameter required for this call"]}), "cas_required: 400 without cas")
    st, _ = vd.call("DELETE", "/v1/secret/metadata/m/k")
    T.eq(st, 204, "metadata delete: 204")
    st, j = vd.kv2_get("m/k")
    T.eq((st, j), (404, {"errors": []}), "after metadata delete: key gone")
    st, j = vd.call("POST", "/v1/secret/metadata/m/big", {"custom_metadata": {"k%d" % i: "v" for i in range(65)}})
    T.eq(st, 400, "custom_metadata over 64 keys: 400")
    # wrong path on a v2 mount
    st, j = vd.call("GET", "/v1/secret/foo")
    T.ok(st == 404 and "errors" not in j and "Invalid path for a versioned K/V secrets engine" in j["warnings"][0],
         "v1-style read on a v2 mount: 404 with the versioned-engine warning")
    # subkeys
    vd.kv2_put("sk", {"a": "1", "b": {"c": "2"}})
    st, j = vd.call("GET", "/v1/secret/subkeys/sk")
    T.eq((st, j["data"]["subkeys"]), (200, {"a": None, "b": {"c": None}}), "subkeys replaces leaves by null")


def test_kv1(vd):
    st, _, raw = vd.request("POST", "/v1/kv/app/one", body={"key": PW1})
    T.eq((st, raw), (204, b""), "kv1 write: 204")
    st, j = vd.kv1_get("app/one")
    T.ok(st == 200 and j["data"] == {"key": PW1}, "kv1 read: data is the stored map")
    T.eq((j["lease_duration"], j["lease_id"], j["renewable"]), (2764800, "", False), "kv1 default lease_duration 2764800")
    vd.kv1_put("app/ttl", {"key": PW2, "ttl": "1h"})
    st, j = vd.kv1_get("app/ttl")
    T.eq(j["lease_duration"], 3600, "kv1 per-secret ttl sets lease_duration")
    st, j = vd.call("POST", "/v1/kv/app/empty", {})
    T.eq((st, j), (400, {"errors": ["missing data fields"]}), "kv1 empty write: 400 missing data fields")
    st, j = vd.call("LIST", "/v1/kv/app")
    T.eq(j["data"]["keys"], ["one", "ttl"], "kv1 LIST")
    T.eq(vd.kv1_delete("app/one"), 204, "kv1 delete: 204")
    T.eq(vd.kv1_delete("app/never"), 204, "kv1 delete missing: 204")
    st, j = vd.kv1_get("app/one")
    T.eq((st, j), (404, {"errors": []}), "kv1 missing: 404 {\"errors\":[]}")
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/kv/app/one")
    T.ok(st == 200 and j["data"]["path"] == "kv/" and j["data"]["options"] == {"version": "1"} and j["data"]["type"] == "kv",
         "ui/mounts: kv v1 detection")
    st, j = vd.call("GET", "/v1/sys/internal/ui/mounts/secret/x")
    T.ok(st == 200 and j["data"]["options"] == {"version": "2"} and j["data"]["path"] == "secret/", "ui/mounts: kv v2 detection")


def test_tokens(vd):
    vd.policy("smtp-read", 'path "secret/data/smtp-auth/*" {\n  capabilities = ["read"]\n}\n')
    tok = vd.create_token(policies=["smtp-read"], ttl="1h", renewable=True)
    st, j = vd.call("GET", "/v1/auth/token/lookup-self", token=tok)
    d = j["data"]
    T.eq(st, 200, "lookup-self: 200")
    T.eq(d["policies"], ["default", "smtp-read"], "policies sorted with default")
    T.ok(3000 <= d["ttl"] <= 3600 and d["creation_ttl"] == 3600 and d["renewable"] is True, "ttl, creation_ttl, renewable")
    T.ok(d["expire_time"] and d["issue_time"] and d["orphan"] is False and d["type"] == "service", "expire_time, issue_time, orphan")
    st, j = vd.call("GET", "/v1/secret/data/smtp-auth/example.com", token=tok)
    T.eq(st, 200, "policy allows read under smtp-auth/")
    st, j = vd.call("GET", "/v1/secret/data/v/one", token=tok)
    T.eq((st, j), (403, {"errors": ["permission denied"]}), "policy denies other paths: 403 permission denied")
    st, j = vd.call("POST", "/v1/secret/data/smtp-auth/example.com", {"data": {"key": "x"}}, token=tok)
    T.eq(st, 403, "read-only policy cannot write")
    st, j = vd.call("POST", "/v1/auth/token/renew-self", {"increment": "2h"}, token=tok)
    T.ok(st == 200 and j["auth"]["lease_duration"] == 7200 and j["auth"]["renewable"] is True and j["data"] is None,
         "renew-self with increment 2h")
    T.eq(list(j["auth"].keys())[:3], ["client_token", "accessor", "policies"], "auth in HTTPAuth field order")
    st, j = vd.call("POST", "/v1/auth/token/renew-self", {}, token="root")
    T.eq((st, j), (400, {"errors": ["invalid lease ID"]}), "root token renew: 400 invalid lease ID")
    nr = vd.create_token(policies=["smtp-read"], ttl="1h", renewable=False)
    st, j = vd.call("POST", "/v1/auth/token/renew-self", {"increment": 60}, token=nr)
    T.eq((st, j), (400, {"errors": ["lease is not renewable"]}), "non-renewable: 400 lease is not renewable")
    # expiry via the clock offset
    short = vd.create_token(policies=["smtp-read"], ttl="10m")
    T.eq(vd.call("GET", "/v1/auth/token/lookup-self", token=short)[0], 200, "short token valid now")
    vd.advance(601)
    st, j = vd.call("GET", "/v1/auth/token/lookup-self", token=short)
    T.ok(st == 403 and "permission denied" in j["errors"][0], "expired token: 403")
    vd.clock(0)
    # num_uses
    two = vd.create_token(policies=["smtp-read"], num_uses=2)
    st, j = vd.call("GET", "/v1/auth/token/lookup-self", token=two)
    T.eq(j["data"]["num_uses"], 1, "num_uses counts this request")
    T.eq(vd.call("GET", "/v1/secret/data/smtp-auth/example.com", token=two)[0], 200, "last use allowed")
    T.eq(vd.call("GET", "/v1/secret/data/smtp-auth/example.com", token=two)[0], 403, "token gone after its uses")
    # revoke-self revokes children too
    vd.policy("creator", 'path "auth/token/create" { capabilities = ["update"] }')
    parent = vd.create_token(policies=["smtp-read", "creator"])
    st, j = vd.call("POST", "/v1/auth/token/create", {"policies": ["smtp-read"]}, token=vd.create_token(policies=["smtp-read"]))
    T.eq(st, 403, "token create without a policy for auth/token/create: 403")
    st, j = vd.call("POST", "/v1/auth/token/create", {"policies": ["smtp-read"]}, token=parent)
    child = j["auth"]["client_token"]
    T.ok(st == 200 and j["auth"]["orphan"] is False, "child token created by a non-root token")
    st, j = vd.call("POST", "/v1/auth/token/create", {"policies": ["other"]}, token=parent)
    T.eq((st, j), (400, {"errors": ["child policies must be subset of parent"]}), "child policies must be a subset")
    st, _, raw = vd.request("POST", "/v1/auth/token/revoke-self", token=parent)
    T.eq((st, raw), (204, b""), "revoke-self: 204")
    T.eq(vd.call("GET", "/v1/auth/token/lookup-self", token=parent)[0], 403, "revoked token: 403")
    T.eq(vd.call("GET", "/v1/auth/token/lookup-self", token=child)[0], 403, "child revoked with its parent")


def test_http_rules(vd):
    st, h, raw = vd.request("POST", "/v1/secret/data/x", body="{not json")
    T.eq((st, raw), (400, b'{"errors":["error parsing JSON"]}\n'), "malformed JSON: 400 error parsing JSON, trailing newline")
    st, _, raw = vd.request("POST", "/v1/secret/data/x", body='["a"]')
    T.eq((st, json.loads(raw)), (400, {"errors": ["error parsing JSON"]}), "JSON array body: 400")
    st, _, raw = vd.request("BREW", "/v1/secret/data/x")
    T.eq((st, json.loads(raw)), (405, {"errors": []}), "odd method: 405 {\"errors\":[]}")
    st, _, raw = vd.request("GET", "/nope")
    T.eq((st, json.loads(raw)), (404, {"errors": []}), "path outside /v1/: 404")
    st, _, raw = vd.request("GET", "/v1/nomount/x")
    T.eq((st, json.loads(raw)), (404, {"errors": ['no handler for route "nomount/x". route entry not found.']}), "no mount: 404 no handler")
    st, _, raw = vd.request("PATCH", "/v1/secret/data/x", body="{}", headers={"Content-Type": "application/json"})
    T.eq(st, 415, "PATCH without merge-patch content type: 415")
    vd.kv2_put("pt", {"a": "1", "b": "2"})
    st, j = vd.call("PATCH", "/v1/secret/data/pt", {"data": {"b": None, "c": "3"}}, headers={"Content-Type": "application/merge-patch+json"})
    T.eq((st, j["data"]["version"]), (200, 2), "PATCH merge: new version")
    T.eq(vd.kv2_get("pt")[1]["data"]["data"], {"a": "1", "c": "3"}, "merge patch applied")
    # 413 without buffering: stream 33 MiB
    big = 33 * 1024 * 1024
    c = vd.connection(timeout=120)
    c.putrequest("POST", "/v1/secret/data/huge")
    c.putheader("X-Vault-Token", vd.root_token)
    c.putheader("Content-Type", "application/json")
    c.putheader("Content-Length", str(big))
    c.endheaders()
    chunk = b" " * (1024 * 1024)
    try:
        for _ in range(33):
            c.send(chunk)
        r = c.getresponse()
        body = r.read()
        T.eq((r.status, json.loads(body)), (413, {"errors": ["http: request body too large"]}), "33 MiB body: 413")
    except (BrokenPipeError, ConnectionResetError) as e:
        T.ok(False, "33 MiB body: connection dropped before 413", type(e).__name__)
    finally:
        c.close()
    st, j = vd.call("POST", "/v1/secret/data/justunder", {"data": {"pad": "x" * (1024 * 1024)}})
    T.eq(st, 200, "1 MiB body accepted")
    # Go's encoder: invalid UTF-8 becomes U+FFFD, U+2028 is escaped, valid UTF-8 passes through
    st, _, _ = vd.request("POST", "/v1/kv/utf8", body=b'{"bad":"a\xff\xfeb","ls":"x\xe2\x80\xa8y","ok":"\xc3\xa9\xf0\x9f\x98\x80"}',
                          headers={"Content-Type": "application/json"})
    st, _, raw = vd.request("GET", "/v1/kv/utf8")
    T.ok(b'"bad":"a\\ufffd\\ufffdb"' in raw, "invalid UTF-8 written as \\ufffd like Go", raw[:200])
    T.ok(b'"ls":"x\\u2028y"' in raw, "U+2028 escaped like Go")
    T.ok('"ok":"\u00e9\U0001F600"'.encode() in raw, "valid multi-byte UTF-8 unchanged")
    # form bodies
    st, _, raw = vd.request("POST", "/v1/kv/form", body="key=a%20b&other=1",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    T.eq(st, 204, "form-encoded body accepted")
    T.eq(vd.kv1_get("form")[1]["data"], {"key": "a b", "other": "1"}, "form-encoded body decoded")


def test_dev_controls(vd):
    path = "/v1/secret/data/smtp-auth/example.com"
    T.eq(vd.call("GET", "/v1/sys/dev/counters", token=None)[0], 403, "sys/dev needs the root token")
    other = vd.create_token(policies=["smtp-read"])
    T.eq(vd.call("GET", "/v1/sys/dev/counters", token=other)[0], 403, "sys/dev refuses non-root tokens")
    vd.reset_counters()
    for _ in range(3):
        vd.request("GET", path)
    vd.request("DELETE", "/v1/secret/data/cnt")
    T.eq(vd.count("GET", path), 3, "counter per path and method")
    T.eq(vd.count("DELETE", "/v1/secret/data/cnt"), 1, "DELETE counted separately")
    T.ok(not any("/sys/dev/" in k for k in vd.counters()), "sys/dev requests are not counted")
    T.eq(list(vd.counters(prefix="/v1/secret/data/cnt").keys()), ["DELETE /v1/secret/data/cnt"], "counters ?prefix=")
    vd.reset_counters()
    T.eq(vd.counters(), {}, "counters reset")
    # status fault for the next 2 matching requests
    fid = vd.fault(action="status", status=503, body={"errors": ["Vault is sealed"]}, method="GET", path_prefix="/v1/secret/", count=2)
    T.ok(isinstance(fid, int), "fault rule id")
    s1 = vd.request("GET", path)[0]
    s2 = vd.request("GET", path)
    s3 = vd.request("GET", path)[0]
    T.eq((s1, s2[0], json.loads(s2[2]), s3), (503, 503, {"errors": ["Vault is sealed"]}, 200), "status fault for the next 2 requests")
    T.eq(vd.count("GET", path), 3, "faulted requests are counted")
    # method filter
    vd.fault(action="status", status=500, method="POST", path_prefix="/v1/secret/")
    T.eq(vd.request("GET", path)[0], 200, "fault with another method does not match")
    T.eq(vd.call("POST", "/v1/secret/data/f", {"data": {"a": "b"}})[0], 500, "POST fault matches")
    # close without answer
    vd.fault(action="close", path_prefix=path)
    try:
        vd.request("GET", path)
        T.ok(False, "close fault: connection closed without answer")
    except (http_client_errors()) as e:
        T.ok(True, "close fault: connection closed without answer (%s)" % type(e).__name__)
    # truncated body
    vd.fault(action="truncate", path_prefix=path)
    try:
        st, _, raw = vd.request("GET", path)
        T.ok(False, "truncate fault: short body")
    except (http_client_errors()) as e:
        T.ok(True, "truncate fault: short body (%s)" % type(e).__name__)
    # non-JSON body
    vd.fault(action="non_json", path_prefix=path, status=200)
    st, h, raw = vd.request("GET", path)
    bad = False
    try:
        json.loads(raw)
    except ValueError:
        bad = True
    T.ok(st == 200 and bad and h["content-type"].startswith("text/html"), "non_json fault: 200 with HTML")
    # oversized body
    vd.fault(action="oversized", path_prefix=path, size=2 * 1024 * 1024)
    st, h, raw = vd.request("GET", path)
    T.ok(st == 200 and len(raw) >= 2 * 1024 * 1024 and json.loads(raw)["data"], "oversized fault: 2 MiB JSON")
    # latency (asserted on order only, never on time)
    vd.fault(action="latency", latency_ms=300, path_prefix=path)
    st, _, raw = vd.request("GET", path)
    T.eq(st, 200, "latency fault still answers normally")
    # time window
    vd.fault(action="status", status=502, path_prefix="/v1/secret/data/win", duration_ms=60000)
    T.eq([vd.request("GET", "/v1/secret/data/win")[0] for _ in range(3)], [502, 502, 502], "window fault applies to every request")
    T.eq(len(vd.faults()), 1, "window rule listed")
    T.eq(vd.clear_faults(), 204, "faults cleared")
    T.eq(vd.request("GET", "/v1/secret/data/win")[0], 404, "after clearing: normal answer")
    st, j = vd.dev("POST", "faults", {"action": "explode"})
    T.eq(st, 400, "bad fault action: 400")
    # seal / unseal
    T.eq(vd.seal(), 204, "dev seal")
    st, j = vd.call("GET", path)
    T.eq((st, j), (503, {"errors": ["Vault is sealed"]}), "sealed: 503 Vault is sealed")
    st, j = vd.call("GET", "/v1/sys/health", token=None)
    T.ok(st == 503 and j["sealed"] is True, "health while sealed: 503 sealed true")
    T.eq(vd.unseal(), 204, "dev unseal")
    T.eq(vd.call("GET", path)[0], 200, "unsealed: reads work")
    # Vault's own sys/seal and sys/unseal
    st, _ = vd.call("PUT", "/v1/sys/seal", token=other)
    T.eq(st, 403, "sys/seal needs sudo")
    T.eq(vd.call("PUT", "/v1/sys/seal")[0], 204, "sys/seal with root: 204")
    T.eq(vd.call("GET", path)[0], 503, "sealed by sys/seal")
    st, j = vd.call("GET", "/v1/sys/seal-status", token=None)
    T.ok(st == 200 and j["sealed"] is True and j["type"] == "shamir", "seal-status while sealed")
    st, j = vd.call("PUT", "/v1/sys/unseal", {"key": "wrong-key-value"}, token=None)
    T.eq(st, 400, "unseal with a wrong key: 400")
    key = vd.dev("GET", "info")[1]["data"]["unseal_key"]
    st, j = vd.call("PUT", "/v1/sys/unseal", {"key": key}, token=None)
    T.ok(st == 200 and j["sealed"] is False, "unseal with the key")


def test_doc_shapes(vd):
    """Key sets of the documented sample bodies (reference sections 0.1, 1.3, 1.5, 2, 6.1, 6.3, 7)."""
    vd.kv2_put("shape", {"prod": "5679", "sandbox": "1234"})
    st, j = vd.kv2_get("shape")
    T.eq(list(j), ENVELOPE_KEYS, "KV v2 read sample: envelope keys")
    T.eq((j["lease_id"], j["renewable"], j["lease_duration"], j["wrap_info"], j["warnings"], j["auth"]),
         ("", False, 0, None, None, None), "KV v2 read sample: empty lease fields, nulls")
    T.eq(list(j["data"]["data"]), ["prod", "sandbox"], "data keys sorted like Go maps")
    st, j = vd.call("GET", "/v1/secret/metadata/shape")
    T.ok({"cas_required", "created_time", "current_version", "delete_version_after", "max_versions", "oldest_version",
          "updated_time", "custom_metadata", "versions"} <= set(j["data"]), "metadata sample keys")
    T.eq(sorted(j["data"]["versions"]["1"]), ["created_time", "deletion_time", "destroyed"], "metadata versions entry keys")
    tok = vd.create_token(policies=["default"], ttl="1h")
    st, j = vd.call("GET", "/v1/auth/token/lookup-self", token=tok)
    T.ok({"accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time", "explicit_max_ttl", "id",
          "issue_time", "meta", "num_uses", "orphan", "path", "policies", "renewable", "ttl", "type"} <= set(j["data"]),
         "lookup-self sample keys")
    T.ok(isinstance(j["data"]["creation_time"], int) and isinstance(j["data"]["expire_time"], str), "creation_time unix, expire_time RFC 3339")
    T.eq((j["lease_duration"], j["renewable"], j["auth"]), (0, False, None), "lookup-self top-level lease fields")
    st, j = vd.call("GET", "/v1/auth/token/lookup-self")
    T.ok("renewable" not in j["data"] and "issue_time" not in j["data"] and j["data"]["expire_time"] is None and j["data"]["ttl"] == 0,
         "root token lookup: no lease fields")
    st, j = vd.call("POST", "/v1/auth/token/create", {"policies": ["default"], "ttl": "20m"})
    T.eq(list(j["auth"]), ["client_token", "accessor", "policies", "token_policies", "metadata", "lease_duration", "renewable",
                           "entity_id", "token_type", "orphan", "mfa_requirement", "num_uses"], "HTTPAuth fields in Go order")
    T.eq(j["data"], None, "auth responses carry data: null")
    st, j = vd.call("GET", "/v1/sys/health", token=None)
    T.ok({"initialized", "sealed", "standby", "performance_standby", "replication_performance_mode", "replication_dr_mode",
          "server_time_utc", "version", "enterprise", "cluster_name", "cluster_id", "echo_duration_ms", "clock_skew_ms"} <= set(j),
         "health sample keys")
    T.ok(UUID.match(j["cluster_id"]), "cluster_id is a UUID")
    vd.kv1_put("shape", {"foo": "bar", "ttl": "1h"})
    st, j = vd.kv1_get("shape")
    T.eq((j["data"], j["lease_duration"], j["lease_id"], j["renewable"], j["auth"]), ({"foo": "bar", "ttl": "1h"}, 3600, "", False, None),
         "KV v1 read sample")


def http_client_errors():
    import http.client
    return (http.client.HTTPException, ConnectionError, socket.timeout, ssl.SSLError, OSError)


def test_concurrency(vd):
    errors = []
    vd.kv2_put("conc", {"key": PW1})

    def worker(n):
        try:
            c = vd.connection()
            for i in range(50):
                if i % 10 == 0:
                    c.request("POST", "/v1/secret/data/conc-%d" % n, body=json.dumps({"data": {"i": i}}),
                              headers={"X-Vault-Token": vd.root_token})
                else:
                    c.request("GET", "/v1/secret/data/conc", headers={"X-Vault-Token": vd.root_token})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    T.eq(errors, [], "16 concurrent keep-alive clients x 50 requests")
    # garbage on raw sockets does not kill it
    for junk in (b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100):
        s = socket.create_connection((vd.host, vd.port), timeout=5)
        try:
            s.sendall(junk)
            s.recv(100)
        except OSError:
            pass
        s.close()
    T.eq(vd.call("GET", "/v1/sys/health", token=None)[0], 200, "alive after junk connections")


def main():
    vd = VaultDev(args=["--kv1", "kv"])
    try:
        T.ok(vd.addr.startswith("https://127.0.0.1:") and os.path.isfile(vd.cacert), "VAULT_ADDR https and VAULT_CACERT file")
        for fn in (test_envelope_and_headers, test_kv2_versions, test_kv2_metadata, test_kv1, test_tokens,
                   test_http_rules, test_dev_controls, test_concurrency, test_doc_shapes):
            T.run(fn, vd)
    finally:
        rc = vd.stop()
    T.eq(rc, 0, "SIGTERM: clean exit 0")
    T.ok(not vd.sanitizer_report(), "no sanitizer report on the server's stderr")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
