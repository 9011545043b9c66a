/*
 * The administrative calls of the Vault client (vks cred) against a real build/vault-dev over
 * HTTPS: KV v2 write and merge patch with check-and-set (a lost cas is `conflict`, any other 400
 * `rejected`), metadata read/write/delete, LIST (an empty folder is not an error), token identity,
 * and that a pooled connection used for LIST/DELETE/PATCH goes back to plain GET afterwards.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "vaultdev_harness.h"
#include "vks_vault.h"

static struct vd srv;
static char tls_dir[600];

static void setup_server(void)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    snprintf(tls_dir, sizeof tls_dir, "%s/vault-admin-tls-%d", vd_work_dir(), (int)getpid()); /* one per test process */
    mkdir(tls_dir, 0700);
    vd_start(&srv, tls_dir);
}

static void teardown_server(void)
{
    vd_stop(&srv);
}

TestSuite(vault_admin, .init = setup_server, .fini = teardown_server, .timeout = 60);

static struct vks_vault *client(const char *token)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(srv.addr);
    c.cacert = strdup(srv.cacert);
    cr_assert_eq(vks_secret_dup(token, strlen(token), &c.token, NULL), VKS_OK);
    c.max_retries = 0;
    c.timeout_ms = 10000;
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
    return v;
}

Test(vault_admin, write_with_cas_conflict_and_patch)
{
    struct vks_vault *v = client(VD_ROOT_TOKEN);
    struct vks_err e;
    int64_t ver = 0;
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "{\"username\":\"u1\"}", 0, false, &ver, &e), VKS_OK,
                 "%s", e.msg);
    cr_assert_eq(ver, 1);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "{\"username\":\"u2\"}", 0, false, &ver, &e),
                 VKS_E_CONFLICT, "cas 0 on an existing key");
    cr_assert(strstr(e.msg, "changed concurrently") && strstr(e.msg, "adm/a"), "%s", e.msg);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "{\"username\":\"u2\"}", 7, false, &ver, &e),
                 VKS_E_CONFLICT, "a stale cas");
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "{\"note\":\"n\"}", 1, true, &ver, &e), VKS_OK,
                 "merge patch with the right cas: %s", e.msg);
    cr_assert_eq(ver, 2);
    json_object *j = NULL;
    long st = vd_req(&srv, "GET", "secret/data/adm/a", NULL, NULL, NULL, &j);
    const char *u = vd_jstr(j, "data", "data", "username"), *n = vd_jstr(j, "data", "data", "note");
    cr_assert(st == 200 && u && n && !strcmp(u, "u1") && !strcmp(n, "n"), "the patch merged");
    json_object_put(j);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "{\"note\":\"m\"}", 1, true, &ver, &e),
                 VKS_E_CONFLICT, "a patch with a stale cas");
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/nope", "{\"x\":\"y\"}", 0, true, &ver, &e),
                 VKS_E_NOT_FOUND, "a patch of a missing key");
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm/a", "[1]", 2, false, &ver, &e), VKS_E_REJECTED,
                 "data that is not a map: Vault's 400 is `rejected`");
    cr_assert(strstr(e.msg, "expected a map"), "Vault's reason is quoted: %s", e.msg);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "../x", "{}", 0, false, &ver, &e), VKS_E_INVALID_INPUT);
    vks_vault_free(v);
}

Test(vault_admin, metadata_list_delete_and_method_reset)
{
    struct vks_vault *v = client(VD_ROOT_TOKEN);
    struct vks_err e;
    struct vks_vault_reply r = { 0 };
    cr_assert_eq(vks_vault_kv2_list(v, "secret", "adm2", &r, &e), VKS_OK, "an empty folder: %s", e.msg);
    cr_assert_null(r.body);
    int64_t ver = 0;
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm2/x", "{\"k\":\"v\"}", 0, false, &ver, &e), VKS_OK);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm2/sub/y", "{\"k\":\"v\"}", 0, false, &ver, &e), VKS_OK);
    cr_assert_eq(vks_vault_kv2_list(v, "secret", "adm2", &r, &e), VKS_OK);
    cr_assert(r.body && strstr(r.body, "\"x\"") && strstr(r.body, "\"sub/\""), "%s", r.body);
    vks_vault_reply_free(&r);
    cr_assert_eq(vks_vault_kv2_metadata_write(v, "secret", "adm2/x",
                                              "{\"cas_required\":true,\"custom_metadata\":{\"rev\":\"1\"}}", &e),
                 VKS_OK, "%s", e.msg);
    /* GET after LIST on the pooled handle: must be a GET again (a LIST would not be metadata) */
    cr_assert_eq(vks_vault_kv2_metadata_read(v, "secret", "adm2/x", &r, &e), VKS_OK, "%s", e.msg);
    cr_assert(strstr(r.body, "\"rev\":\"1\"") && strstr(r.body, "\"cas_required\":true"), "%s", r.body);
    vks_vault_reply_free(&r);
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm2/x", "{\"k\":\"w\"}", -1, false, &ver, &e), VKS_E_REJECTED,
                 "cas_required: a write without cas is refused");
    cr_assert(strstr(e.msg, "check-and-set parameter required"), "%s", e.msg);
    cr_assert_eq(vks_vault_kv2_metadata_write(v, "secret", "adm2/x", "{\"custom_metadata\":{\"k\":\"\"}}", &e),
                 VKS_E_REJECTED, "an empty custom_metadata value, as Vault");
    cr_assert_eq(vks_vault_kv2_metadata_delete(v, "secret", "adm2/x", &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_vault_kv2_metadata_read(v, "secret", "adm2/x", &r, &e), VKS_E_NOT_FOUND);
    /* a plain read after DELETE on the pooled handle */
    struct vks_kv_request rq = { .mount = "secret", .path = "adm2/sub/y", .key = "k", .kv_version = 2 };
    struct vks_kv_result res;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &res, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&res);
    vks_vault_free(v);
}

Test(vault_admin, identity_and_denial)
{
    long st = vd_req(&srv, "PUT", "sys/policies/acl/adm-ro",
                     "{\"policy\":\"path \\\"secret/metadata/*\\\" { capabilities = [\\\"read\\\"] }\"}",
                     NULL, NULL, NULL);
    cr_assert_eq(st, 204);
    json_object *j = NULL;
    st = vd_req(&srv, "POST", "auth/token/create", "{\"policies\":[\"adm-ro\"],\"display_name\":\"alice\"}",
                NULL, NULL, &j);
    cr_assert_eq(st, 200);
    char tok[128], acc[128];
    snprintf(tok, sizeof tok, "%s", vd_jstr(j, "auth", "client_token", NULL));
    snprintf(acc, sizeof acc, "%s", vd_jstr(j, "auth", "accessor", NULL));
    json_object_put(j);
    struct vks_vault *v = client(tok);
    char name[128], got[64];
    struct vks_err e;
    cr_assert_eq(vks_vault_token_identity(v, name, sizeof name, got, sizeof got, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(name, "token-alice");
    cr_assert_str_eq(got, acc, "the accessor, never the token");
    int64_t ver;
    cr_assert_eq(vks_vault_kv2_write(v, "secret", "adm3/x", "{\"k\":\"v\"}", 0, false, &ver, &e),
                 VKS_E_PERMISSION_DENIED);
    cr_assert(strstr(e.msg, "permission denied") && !strstr(e.msg, tok), "%s", e.msg);
    vks_vault_free(v);
}
