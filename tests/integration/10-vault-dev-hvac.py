"""Conformance: drive vault-dev with a real Vault client nobody here wrote, Debian's python3-hvac.
KV v2 create/read/versions/delete/undelete/destroy/metadata, KV v1, token lookup/renew/create/revoke,
AppRole set up through its own endpoints and login, a 403 from a policy, namespaces, sys/mounts."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "lib"))
from vaultdev import VaultDev, Checks  # noqa: E402

import hvac  # noqa: E402
from hvac import exceptions as hx  # noqa: E402

T = Checks()
PW1 = "smtp-pass-DEVTEST-one-81c2"
PW2 = "smtp-pass-DEVTEST-two-93d4"


def raises(exc, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except exc:
        return True
    except Exception as e:  # noqa: BLE001
        print("   (raised %s instead)" % type(e).__name__)
        return False
    return False


def client(vd, token=None, namespace=None):
    return hvac.Client(url=vd.addr, token=token if token is not None else vd.root_token, verify=vd.cacert,
                       namespace=namespace)


def test_kv2(vd):
    c = client(vd)
    T.ok(c.is_authenticated(), "hvac: root token authenticated")
    kv = c.secrets.kv.v2
    r = kv.create_or_update_secret("smtp-auth/example.com", {"key": PW1}, cas=0)
    T.eq(r["data"]["version"], 1, "create_or_update_secret with cas=0 -> version 1")
    T.ok(raises(hx.InvalidRequest, kv.create_or_update_secret, "smtp-auth/example.com", {"key": PW2}, cas=0),
         "cas mismatch raises InvalidRequest (400)")
    kv.create_or_update_secret("smtp-auth/example.com", {"key": PW2}, cas=1)
    r = kv.read_secret_version("smtp-auth/example.com")
    T.ok(r["data"]["data"]["key"] == PW2 and r["data"]["metadata"]["version"] == 2, "read latest")
    r = kv.read_secret_version("smtp-auth/example.com", version=1)
    T.ok(r["data"]["data"]["key"] == PW1, "read version 1")
    md = kv.read_secret_metadata("smtp-auth/example.com")
    T.eq((md["data"]["current_version"], sorted(md["data"]["versions"])), (2, ["1", "2"]), "read_secret_metadata")
    kv.update_metadata("smtp-auth/example.com", max_versions=5, cas_required=False)
    T.eq(kv.read_secret_metadata("smtp-auth/example.com")["data"]["max_versions"], 5, "update_metadata")
    T.eq(kv.list_secrets("smtp-auth")["data"]["keys"], ["example.com"], "list_secrets")
    kv.delete_latest_version_of_secret("smtp-auth/example.com")
    T.ok(raises(hx.InvalidPath, kv.read_secret_version, "smtp-auth/example.com"), "deleted latest -> InvalidPath (404)")
    kv.undelete_secret_versions("smtp-auth/example.com", versions=[2])
    T.eq(kv.read_secret_version("smtp-auth/example.com")["data"]["data"]["key"], PW2, "undelete_secret_versions")
    kv.delete_secret_versions("smtp-auth/example.com", versions=[1])
    T.ok(raises(hx.InvalidPath, kv.read_secret_version, "smtp-auth/example.com", version=1), "delete_secret_versions")
    kv.destroy_secret_versions("smtp-auth/example.com", versions=[2])
    T.ok(raises(hx.InvalidPath, kv.read_secret_version, "smtp-auth/example.com"), "destroy_secret_versions")
    T.eq(kv.read_secret_metadata("smtp-auth/example.com")["data"]["versions"]["2"]["destroyed"], True, "metadata shows destroyed")
    kv.create_or_update_secret("smtp-auth/patched", {"a": "1", "key": PW1})
    r = kv.patch("smtp-auth/patched", {"b": "2"})
    T.eq(kv.read_secret_version("smtp-auth/patched")["data"]["data"], {"a": "1", "b": "2", "key": PW1}, "kv.patch (read + cas write)")
    kv.delete_metadata_and_all_versions("smtp-auth/example.com")
    T.ok(raises(hx.InvalidPath, kv.read_secret_metadata, "smtp-auth/example.com"), "delete_metadata_and_all_versions")
    kv.configure(max_versions=3, mount_point="secret")
    T.eq(kv.read_configuration()["data"]["max_versions"], 3, "kv v2 configure / read_configuration")


def test_kv1_and_mounts(vd):
    c = client(vd)
    c.sys.enable_secrets_engine("kv", path="legacy", options={"version": "1"})
    T.ok("legacy/" in c.sys.list_mounted_secrets_engines()["data"], "enable_secrets_engine kv v1 at legacy/")
    kv1 = c.secrets.kv.v1
    kv1.create_or_update_secret("app/db", {"key": PW1, "ttl": "30m"}, mount_point="legacy")
    r = kv1.read_secret("app/db", mount_point="legacy")
    T.ok(r["data"]["key"] == PW1 and r["lease_duration"] == 1800, "kv v1 read with ttl -> lease_duration 1800")
    T.eq(kv1.list_secrets("app", mount_point="legacy")["data"]["keys"], ["db"], "kv v1 list")
    kv1.delete_secret("app/db", mount_point="legacy")
    T.ok(raises(hx.InvalidPath, kv1.read_secret, "app/db", mount_point="legacy"), "kv v1 delete")
    c.sys.enable_secrets_engine("kv", path="v2more", options={"version": "2"})
    c.secrets.kv.v2.create_or_update_secret("x", {"key": PW2}, mount_point="v2more")
    T.eq(c.secrets.kv.v2.read_secret_version("x", mount_point="v2more")["data"]["data"]["key"], PW2, "runtime-mounted kv v2")
    c.sys.disable_secrets_engine("v2more")
    T.ok("v2more/" not in c.sys.list_mounted_secrets_engines()["data"], "disable_secrets_engine")
    h = c.sys.read_health_status(method="GET")
    T.ok(h["initialized"] is True and h["sealed"] is False and h["standby"] is False, "read_health_status")
    T.eq(c.sys.is_sealed(), False, "is_sealed")


def test_tokens(vd):
    c = client(vd)
    c.sys.create_or_update_policy("smtp-read", 'path "secret/data/smtp-auth/*" {\n  capabilities = ["read", "list"]\n}')
    T.ok("smtp-read" in c.sys.list_policies()["data"]["policies"], "create_or_update_policy / list_policies (HCL)")
    c.sys.create_or_update_policy("json-pol", {"path": {"secret/data/json/*": {"capabilities": ["read"]}}})
    T.ok('"secret/data/json/*"' in c.sys.read_policy("json-pol")["data"]["rules"], "JSON policy stored")
    r = c.auth.token.create(policies=["smtp-read"], ttl="1h", renewable=True)
    tok = r["auth"]["client_token"]
    T.eq(r["auth"]["policies"], ["default", "smtp-read"], "token create: policies")
    T.eq(r["auth"]["lease_duration"], 3600, "token create: lease_duration")
    t = client(vd, tok)
    me = t.auth.token.lookup_self()["data"]
    T.ok(me["policies"] == ["default", "smtp-read"] and me["renewable"] is True and 0 < me["ttl"] <= 3600, "lookup_self")
    T.eq(c.auth.token.lookup(tok)["data"]["accessor"], me["accessor"], "lookup (by root)")
    T.eq(c.auth.token.lookup_accessor(me["accessor"])["data"]["policies"], ["default", "smtp-read"], "lookup_accessor")
    r = t.auth.token.renew_self(increment="2h")
    T.eq(r["auth"]["lease_duration"], 7200, "renew_self increment 2h")
    c.secrets.kv.v2.create_or_update_secret("smtp-auth/a.example", {"key": PW1})
    c.secrets.kv.v2.create_or_update_secret("other/b", {"key": PW2})
    T.eq(t.secrets.kv.v2.read_secret_version("smtp-auth/a.example")["data"]["data"]["key"], PW1, "policy allows smtp-auth/")
    T.ok(raises(hx.Forbidden, t.secrets.kv.v2.read_secret_version, "other/b"), "policy denies other/: Forbidden (403)")
    T.ok(raises(hx.Forbidden, t.secrets.kv.v2.create_or_update_secret, "smtp-auth/a.example", {"key": "x"}),
         "read-only policy cannot write: Forbidden")
    c.sys.create_or_update_policy("deny-one", 'path "secret/data/smtp-auth/blocked" { capabilities = ["deny"] }')
    r2 = c.auth.token.create(policies=["smtp-read", "deny-one"])
    c.secrets.kv.v2.create_or_update_secret("smtp-auth/blocked", {"key": PW2})
    T.ok(raises(hx.Forbidden, client(vd, r2["auth"]["client_token"]).secrets.kv.v2.read_secret_version, "smtp-auth/blocked"),
         "deny on an exact path wins over the glob")
    t.auth.token.revoke_self()
    T.ok(raises(hx.Forbidden, t.auth.token.lookup_self), "revoke_self: token no longer works")
    r = c.auth.token.create(policies=["smtp-read"])
    c.auth.token.revoke(r["auth"]["client_token"])
    T.ok(raises(hx.Forbidden, client(vd, r["auth"]["client_token"]).auth.token.lookup_self), "revoke (by root)")
    T.ok(not client(vd, "no-such-token-value").is_authenticated(), "unknown token not authenticated")


def test_approle(vd):
    c = client(vd)
    c.sys.enable_auth_method("approle")
    T.ok("approle/" in c.sys.list_auth_methods()["data"], "enable_auth_method approle via sys/auth")
    c.auth.approle.create_or_update_approle("mta", token_policies=["smtp-read"], token_ttl="20m", token_max_ttl="1h")
    T.eq(c.auth.approle.list_roles()["data"]["keys"], ["mta"], "approle list_roles")
    role = c.auth.approle.read_role("mta")["data"]
    T.ok(role["token_ttl"] == 1200 and role["token_policies"] == ["smtp-read"], "approle read_role")
    role_id = c.auth.approle.read_role_id("mta")["data"]["role_id"]
    sec = c.auth.approle.generate_secret_id("mta")["data"]
    T.ok(role_id and sec["secret_id"] and sec["secret_id_accessor"], "read_role_id / generate_secret_id")
    a = hvac.Client(url=vd.addr, verify=vd.cacert)
    r = a.auth.approle.login(role_id=role_id, secret_id=sec["secret_id"])
    T.ok(r["auth"]["lease_duration"] == 1200 and r["auth"]["metadata"] == {"role_name": "mta"} and
         r["auth"]["policies"] == ["default", "smtp-read"] and r["auth"]["renewable"] is True, "approle login")
    T.ok(a.is_authenticated(), "login token set on the client")
    T.eq(a.auth.token.lookup_self()["data"]["path"], "auth/approle/login", "token path auth/approle/login")
    try:
        hvac.Client(url=vd.addr, verify=vd.cacert).auth.approle.login(role_id=role_id, secret_id="wrong-secret-id")
        T.ok(False, "bad secret_id refused")
    except hx.InvalidRequest as e:
        T.ok("invalid role or secret ID" in str(e), "bad secret_id: 400 invalid role or secret ID")
    c.auth.approle.update_role_id("mta", "mta-fixed-role-id")
    T.eq(c.auth.approle.read_role_id("mta")["data"]["role_id"], "mta-fixed-role-id", "update_role_id")
    c.auth.approle.create_custom_secret_id("mta", "custom-secret-DEVTEST-77aa")
    r = hvac.Client(url=vd.addr, verify=vd.cacert).auth.approle.login("mta-fixed-role-id", "custom-secret-DEVTEST-77aa")
    T.ok(r["auth"]["client_token"], "custom secret-id login")


def test_namespaces(vd):
    c = client(vd)
    c.sys.create_namespace("team-a")
    T.ok("team-a/" in c.sys.list_namespaces()["data"]["keys"], "create_namespace / list_namespaces")
    na = client(vd, namespace="team-a")
    na.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    na.secrets.kv.v2.create_or_update_secret("smtp-auth/x", {"key": PW2})
    T.eq(na.secrets.kv.v2.read_secret_version("smtp-auth/x")["data"]["data"]["key"], PW2, "namespaced write/read via X-Vault-Namespace")
    T.ok(raises(hx.InvalidPath, c.secrets.kv.v2.read_secret_version, "smtp-auth/x"), "root namespace does not see team-a's secret")
    r = c.adapter.get("/v1/team-a/secret/data/smtp-auth/x")
    T.eq(r["data"]["data"]["key"], PW2, "path-prefix namespace selects the same tree")
    st, h, _ = vd.request("GET", "/v1/secret/data/smtp-auth/x", headers={"X-Vault-Namespace": "team-a"})
    T.eq((st, h.get("x-vault-namespace")), (200, "team-a"), "X-Vault-Namespace echoed back")
    na.sys.create_or_update_policy("ns-read", 'path "secret/data/*" { capabilities = ["read"] }')
    r = na.auth.token.create(policies=["ns-read"])
    nt = r["auth"]["client_token"]
    T.eq(client(vd, nt, namespace="team-a").secrets.kv.v2.read_secret_version("smtp-auth/x")["data"]["data"]["key"], PW2,
         "namespace token reads in its namespace")
    T.ok(raises(hx.Forbidden, client(vd, nt).secrets.kv.v2.read_secret_version, "smtp-auth/a.example"),
         "namespace token cannot read the root namespace")
    c.sys.delete_namespace("team-a")
    T.ok(raises(hx.InvalidPath, c.sys.list_namespaces), "delete_namespace (empty list -> 404)")


def main():
    vd = VaultDev()
    try:
        for fn in (test_kv2, test_kv1_and_mounts, test_tokens, test_approle, test_namespaces):
            T.run(fn, vd)
    finally:
        rc = vd.stop()
    T.eq(rc, 0, "SIGTERM: clean exit 0")
    T.ok(not vd.sanitizer_report(), "no sanitizer report on the server's stderr")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
