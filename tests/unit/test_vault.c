/*
 * The Vault client against a real build/vault-dev over HTTPS: KV v1/v2/auto, versions, metadata,
 * every failure mapping, retries (counted by vault-dev), deadline, TLS, redirects, namespaces,
 * AppRole login/renewal/re-login, connection reuse and concurrency.
 */
#include <pthread.h>

#include "vaultdev_harness.h"
#include "vks_vault.h"

#define PASSWORD_1 "smtp-pass-TEST-one-7c21"
#define PASSWORD_2 "smtp-pass-TEST-two-44d0"
#define PASSWORD_V1 "smtp-pass-TEST-kv1-93aa"
#define PASSWORD_NS "smtp-pass-TEST-ns-1f6b"
#define LIMITED_TOKEN_POLICY "path \"secret/data/allowed/*\" { capabilities = [\"read\"] }"

static struct vd srv;
static char tls_dir[600];

static void tls_dir_init(void)
{
    snprintf(tls_dir, sizeof tls_dir, "%s/vault-tls", vd_work_dir());
    mkdir(tls_dir, 0700);
}

static void setup_server(void)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    tls_dir_init();
    const char *extra[] = { "--kv1", "kv", NULL };
    vd_start_args(&srv, tls_dir, extra);
}

static void teardown_server(void)
{
    vd_stop(&srv);
}

TestSuite(vault, .init = setup_server, .fini = teardown_server, .timeout = 60);

/* A client configuration for srv with the root token, small retry waits and a 10 s deadline. */
static void base_cfg(struct vks_vault_config *c, const struct vd *d)
{
    vks_vault_config_defaults(c);
    c->address = strdup(d->addr);
    if (d->cacert[0])
        c->cacert = strdup(d->cacert);
    cr_assert_eq(vks_secret_dup(VD_ROOT_TOKEN, strlen(VD_ROOT_TOKEN), &c->token, NULL), VKS_OK);
    c->min_retry_wait_ms = 10;
    c->max_retry_wait_ms = 20;
    c->timeout_ms = 10000;
}

static struct vks_vault *client_for(const struct vd *d)
{
    struct vks_vault_config c;
    base_cfg(&c, d);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
    return v;
}

static vks_status read_kv(struct vks_vault *v, int kv, const char *mount, const char *path, const char *key,
                          int64_t version, struct vks_kv_result *r, struct vks_err *e)
{
    struct vks_kv_request rq = { .mount = mount, .path = path, .key = key, .kv_version = kv, .version = version };
    return vks_vault_kv_read(v, &rq, r, e);
}

static void assert_value(const struct vks_kv_result *r, const char *want)
{
    cr_assert_eq(r->value.len, strlen(want), "value has the wrong length");
    cr_assert(memcmp(r->value.data, want, r->value.len) == 0, "value differs");
}

/* No message may ever contain a token or a password. */
static void assert_clean(const struct vks_err *e)
{
    static const char *const s[] = { VD_ROOT_TOKEN, PASSWORD_1, PASSWORD_2, PASSWORD_V1, PASSWORD_NS };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        cr_assert(strstr(e->msg, s[i]) == NULL, "a secret leaked into an error message");
}

/* ------------------------------------------------------------------ happy paths */

Test(vault, kv2_read_with_key_metadata_and_accessor)
{
    vd_kv2_put(&srv, "secret", "smtp-auth/example.com", "{\"password\":\"" PASSWORD_1 "\",\"user\":\"mailer\"}");
    long st = vd_admin(&srv, "POST", "secret/metadata/smtp-auth/example.com",
                       "{\"custom_metadata\":{\"allowed_domains\":\"example.com\"}}");
    cr_assert(st == 204 || st == 200, "metadata write: %ld", st);
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "smtp-auth/example.com", "password", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    cr_assert_eq(r.kv_version, 2);
    cr_assert_eq(r.secret_version, 1);
    cr_assert_eq(r.lease_duration, 0);
    cr_assert_eq(r.http_status, 200);
    cr_assert_eq(r.attempts, 1);
    cr_assert_not_null(r.custom_metadata_json);
    struct json_object *cm = json_tokener_parse(r.custom_metadata_json);
    cr_assert_str_eq(vd_jstr(cm, "allowed_domains", NULL, NULL), "example.com");
    json_object_put(cm);
    cr_assert(r.token_accessor[0] != '\0', "the accessor of the token is known (lookup-self)");
    cr_assert(strstr(r.token_accessor, VD_ROOT_TOKEN) == NULL);
    vks_kv_result_free(&r);
    /* default key is "key" */
    vd_kv2_put(&srv, "secret", "k", "{\"key\":\"" PASSWORD_2 "\"}");
    cr_assert_eq(read_kv(v, 2, "secret", "k", NULL, 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_2);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}

Test(vault, kv2_version_pin_and_escaped_values)
{
    vd_kv2_put(&srv, "secret", "pin", "{\"key\":\"" PASSWORD_1 "\"}");
    vd_kv2_put(&srv, "secret", "pin", "{\"key\":\"" PASSWORD_2 "\\u00e9\\\"\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "pin", "key", 1, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    cr_assert_eq(r.secret_version, 1);
    vks_kv_result_free(&r);
    cr_assert_eq(read_kv(v, 2, "secret", "pin", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_2 "\xc3\xa9\"");
    cr_assert_eq(r.secret_version, 2);
    vks_kv_result_free(&r);
    cr_assert_eq(read_kv(v, 2, "secret", "pin", "key", 7, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    vks_vault_free(v);
}

Test(vault, kv1_read_and_lease_duration)
{
    long st = vd_admin(&srv, "POST", "kv/smtp/a", "{\"key\":\"" PASSWORD_V1 "\",\"ttl\":\"1h\"}");
    cr_assert(st == 204 || st == 200, "%ld", st);
    st = vd_admin(&srv, "POST", "kv/smtp/b", "{\"key\":\"" PASSWORD_V1 "\"}");
    cr_assert(st == 204 || st == 200, "%ld", st);
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 1, "kv", "smtp/a", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_V1);
    cr_assert_eq(r.kv_version, 1);
    cr_assert_eq(r.lease_duration, 3600);
    cr_assert_eq(r.secret_version, 0);
    vks_kv_result_free(&r);
    cr_assert_eq(read_kv(v, 1, "kv", "smtp/b", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.lease_duration, 2764800);
    vks_kv_result_free(&r);
    /* a version pin needs KV v2 */
    cr_assert_eq(read_kv(v, 1, "kv", "smtp/a", "key", 3, &r, &e), VKS_E_BAD_KEYSOURCE, "%s", e.msg);
    vks_vault_free(v);
}

Test(vault, auto_detects_the_kv_version_once_per_mount)
{
    vd_kv2_put(&srv, "secret", "auto", "{\"key\":\"" PASSWORD_1 "\"}");
    long st = vd_admin(&srv, "POST", "kv/auto", "{\"key\":\"" PASSWORD_V1 "\"}");
    cr_assert(st == 204 || st == 200);
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(read_kv(v, 0, "secret", "auto", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
        assert_value(&r, PASSWORD_1);
        cr_assert_eq(r.kv_version, 2);
        vks_kv_result_free(&r);
        cr_assert_eq(read_kv(v, 0, "kv/", "auto", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
        assert_value(&r, PASSWORD_V1);
        cr_assert_eq(r.kv_version, 1);
        vks_kv_result_free(&r);
    }
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.mount_lookups, 2, "one detection per mount, got %lu", s.mount_lookups);
    cr_assert_eq(vd_count(&srv, "GET /v1/sys/internal/ui/mounts/"), 2);
    vks_vault_free(v);
}

/* ------------------------------------------------------------------ not found & friends */

Test(vault, not_found_missing_key_and_non_string_values)
{
    vd_kv2_put(&srv, "secret", "typed", "{\"key\":\"x-TEST-not-secret\",\"n\":5,\"o\":{\"a\":1},\"b\":true,\"z\":null}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "nope/nothing", "key", 0, &r, &e), VKS_E_NOT_FOUND);
    cr_assert(strstr(e.msg, "nope/nothing") && strstr(e.msg, "secret") && strstr(e.msg, srv.addr), "%s", e.msg);
    cr_assert_eq(r.http_status, 404);
    cr_assert_eq(r.attempts, 1, "404 is not retried");
    cr_assert_eq(read_kv(v, 2, "secret", "typed", "password", 0, &r, &e), VKS_E_MISSING_KEY);
    cr_assert(strstr(e.msg, "'password'") && strstr(e.msg, "typed"), "%s", e.msg);
    static const char *const keys[] = { "n", "o", "b", "z" };
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(read_kv(v, 2, "secret", "typed", keys[i], 0, &r, &e), VKS_E_MISSING_KEY, "key %s", keys[i]);
        cr_assert(strstr(e.msg, "not a string"), "%s", e.msg);
        cr_assert_null(r.value.data);
    }
    /* a KV v2 read on a KV v1 mount and the reverse */
    long st = vd_admin(&srv, "POST", "kv/x", "{\"key\":\"x-TEST-not-secret\"}");
    cr_assert(st == 204 || st == 200);
    cr_assert_neq(read_kv(v, 2, "kv", "x", "key", 0, &r, &e), VKS_OK);
    assert_clean(&e);
    /* a mount that does not exist */
    cr_assert_eq(read_kv(v, 2, "nomount", "x", "key", 0, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    vks_vault_free(v);
}

Test(vault, deleted_and_destroyed_versions)
{
    vd_kv2_put(&srv, "secret", "gone", "{\"key\":\"" PASSWORD_1 "\"}");
    vd_kv2_put(&srv, "secret", "gone", "{\"key\":\"" PASSWORD_2 "\"}");
    long st = vd_admin(&srv, "DELETE", "secret/data/gone", NULL); /* soft-deletes version 2 */
    cr_assert(st == 204 || st == 200, "%ld", st);
    st = vd_admin(&srv, "POST", "secret/destroy/gone", "{\"versions\":[1]}");
    cr_assert(st == 204 || st == 200, "%ld", st);
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "gone", "key", 0, &r, &e), VKS_E_DELETED, "%s", e.msg);
    cr_assert(strstr(e.msg, "deleted") && strstr(e.msg, "gone"), "%s", e.msg);
    cr_assert_eq(read_kv(v, 2, "secret", "gone", "key", 1, &r, &e), VKS_E_DESTROYED, "%s", e.msg);
    cr_assert(strstr(e.msg, "destroyed"), "%s", e.msg);
    assert_clean(&e);
    st = vd_admin(&srv, "POST", "secret/undelete/gone", "{\"versions\":[2]}");
    cr_assert(st == 204 || st == 200, "%ld", st);
    cr_assert_eq(read_kv(v, 2, "secret", "gone", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_2);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}

/* ------------------------------------------------------------------ auth failures */

Test(vault, forbidden_path_is_permission_denied_and_names_no_token)
{
    vd_kv2_put(&srv, "secret", "allowed/a", "{\"key\":\"" PASSWORD_1 "\"}");
    vd_kv2_put(&srv, "secret", "private/b", "{\"key\":\"" PASSWORD_2 "\"}");
    char body[512];
    struct json_object *pol = json_object_new_string(LIMITED_TOKEN_POLICY);
    snprintf(body, sizeof body, "{\"policy\":%s}", json_object_to_json_string(pol));
    json_object_put(pol);
    long st = vd_admin(&srv, "PUT", "sys/policies/acl/limited", body);
    cr_assert(st == 204 || st == 200, "policy: %ld", st);
    struct json_object *j = NULL;
    st = vd_req(&srv, "POST", "auth/token/create", "{\"policies\":[\"limited\"],\"ttl\":\"1h\"}", NULL, NULL, &j);
    cr_assert_eq(st, 200);
    const char *tok = vd_jstr(j, "auth", "client_token", NULL);
    cr_assert(tok[0]);
    char accessor[128];
    snprintf(accessor, sizeof accessor, "%s", vd_jstr(j, "auth", "accessor", NULL));
    vks_secret ts = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_dup(tok, strlen(tok), &ts, NULL), VKS_OK);
    char tokcopy[256];
    snprintf(tokcopy, sizeof tokcopy, "%s", tok);
    json_object_put(j);

    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    struct vks_kv_request rq = { .mount = "secret", .path = "allowed/a", .kv_version = 2, .token = &ts };
    vd_reset_counters(&srv);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
        assert_value(&r, PASSWORD_1);
        /* the accessor of the per-request token, for audit: learnt once */
        cr_assert_str_eq(r.token_accessor, accessor);
        vks_kv_result_free(&r);
    }
    cr_assert_eq(vd_count(&srv, "GET /v1/auth/token/lookup-self"), 1);
    rq.path = "private/b";
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_PERMISSION_DENIED, "%s", e.msg);
    cr_assert(strstr(e.msg, "permission denied") && strstr(e.msg, "private/b"), "%s", e.msg);
    cr_assert(strstr(e.msg, tokcopy) == NULL, "the token leaked into the message");
    cr_assert_eq(r.attempts, 1, "403 is not retried");
    assert_clean(&e);
    /* a revoked static token: still permission_denied (no AppRole to log in again with) */
    st = vd_req(&srv, "POST", "auth/token/revoke-self", "", tokcopy, NULL, NULL);
    cr_assert(st == 204 || st == 200, "%ld", st);
    rq.path = "allowed/a";
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_PERMISSION_DENIED, "%s", e.msg);
    cr_assert(strstr(e.msg, tokcopy) == NULL);
    vks_secret_free(&ts);
    vks_vault_free(v);
}

Test(vault, auto_detection_denied_says_how_to_avoid_it)
{
    struct vks_vault *v = client_for(&srv);
    vks_secret bad = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_dup("hvs.bogus-TEST-token-0c55", 25, &bad, NULL), VKS_OK);
    struct vks_kv_request rq = { .mount = "secret", .path = "x", .kv_version = 0, .token = &bad };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_PERMISSION_DENIED, "%s", e.msg);
    cr_assert(strstr(e.msg, "vault_kv_version"), "%s", e.msg);
    cr_assert(strstr(e.msg, "hvs.bogus-TEST-token-0c55") == NULL);
    vks_secret_free(&bad);
    vks_vault_free(v);
}

/* ------------------------------------------------------------------ retries and faults */

Test(vault, sealed_is_retried_then_reported)
{
    vd_kv2_put(&srv, "secret", "s", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "s", "key", 0, &r, &e), VKS_OK, "%s", e.msg); /* warm: lookup-self */
    vks_kv_result_free(&r);
    cr_assert(vd_admin(&srv, "POST", "sys/dev/seal", "{}") / 100 == 2);
    vd_reset_counters(&srv);
    cr_assert_eq(read_kv(v, 2, "secret", "s", "key", 0, &r, &e), VKS_E_SEALED, "%s", e.msg);
    cr_assert(strstr(e.msg, "sealed"), "%s", e.msg);
    cr_assert_eq(r.attempts, 3, "1 try + 2 retries, got %d", r.attempts);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/data/s"), 3, "vault-dev saw the retries");
    cr_assert(vd_admin(&srv, "POST", "sys/dev/unseal", "{}") / 100 == 2);
    cr_assert_eq(read_kv(v, 2, "secret", "s", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}

Test(vault, status_faults_429_412_500_are_retried_501_is_not)
{
    vd_kv2_put(&srv, "secret", "f", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "f", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    static const int codes[] = { 429, 412, 500, 502, 503 };
    for (int i = 0; i < 5; i++) {
        char rule[256];
        /* one failure: the retry succeeds */
        snprintf(rule, sizeof rule,
                 "{\"action\":\"status\",\"status\":%d,\"path_prefix\":\"/v1/secret/data/f\",\"count\":1,"
                 "\"body\":{\"errors\":[\"injected\"]}}", codes[i]);
        vd_fault(&srv, rule);
        cr_assert_eq(read_kv(v, 2, "secret", "f", "key", 0, &r, &e), VKS_OK, "%d: %s", codes[i], e.msg);
        cr_assert_eq(r.attempts, 2, "%d: attempts %d", codes[i], r.attempts);
        assert_value(&r, PASSWORD_1);
        vks_kv_result_free(&r);
        /* persistent failure: unavailable after 3 attempts, with Vault's error text */
        snprintf(rule, sizeof rule,
                 "{\"action\":\"status\",\"status\":%d,\"path_prefix\":\"/v1/secret/data/f\",\"count\":3,"
                 "\"body\":{\"errors\":[\"injected\"]}}", codes[i]);
        vd_fault(&srv, rule);
        cr_assert_eq(read_kv(v, 2, "secret", "f", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%d: %s", codes[i], e.msg);
        cr_assert_eq(r.attempts, 3);
        cr_assert(strstr(e.msg, "injected"), "%s", e.msg);
    }
    vd_fault(&srv, "{\"action\":\"status\",\"status\":501,\"path_prefix\":\"/v1/secret/data/f\",\"count\":1}");
    cr_assert_eq(read_kv(v, 2, "secret", "f", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert_eq(r.attempts, 1, "501 is not retried");
    vks_vault_free(v);
}

Test(vault, bad_bodies_are_bad_response)
{
    vd_kv2_put(&srv, "secret", "b", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "b", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    static const char *const rules[] = {
        "{\"action\":\"non_json\",\"path_prefix\":\"/v1/secret/data/b\",\"count\":5}",
        "{\"action\":\"truncate\",\"path_prefix\":\"/v1/secret/data/b\",\"count\":5}",
        "{\"action\":\"oversized\",\"size\":2097152,\"path_prefix\":\"/v1/secret/data/b\",\"count\":5}",
        "{\"action\":\"status\",\"status\":200,\"body\":\"{\\\"data\\\":{\\\"data\\\":{\\\"key\\\":\\\"x\",\"path_prefix\":\"/v1/secret/data/b\",\"count\":5}",
    };
    for (int i = 0; i < 4; i++) {
        vd_fault(&srv, rules[i]);
        cr_assert_eq(read_kv(v, 2, "secret", "b", "key", 0, &r, &e), VKS_E_BAD_RESPONSE, "rule %d: %s", i, e.msg);
        cr_assert_null(r.value.data);
        assert_clean(&e);
        cr_assert(vd_admin(&srv, "DELETE", "sys/dev/faults", NULL) / 100 == 2);
    }
    cr_assert_eq(read_kv(v, 2, "secret", "b", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}

Test(vault, closed_connection_is_retried)
{
    vd_kv2_put(&srv, "secret", "c", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "c", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    vd_reset_counters(&srv);
    vd_fault(&srv, "{\"action\":\"close\",\"path_prefix\":\"/v1/secret/data/c\",\"count\":1}");
    cr_assert_eq(read_kv(v, 2, "secret", "c", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    vks_kv_result_free(&r);
    /* the closed request was sent again (by curl on a fresh connection, or by our retry) */
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/data/c"), 2);
    /* closed for good: unavailable after the retries */
    vd_fault(&srv, "{\"action\":\"close\",\"path_prefix\":\"/v1/secret/data/c\",\"duration_ms\":60000}");
    cr_assert_eq(read_kv(v, 2, "secret", "c", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert_eq(r.attempts, 3, "1 try + 2 retries, got %d", r.attempts);
    cr_assert_eq(r.http_status, 0, "no HTTP answer at all");
    cr_assert(strstr(e.msg, "after 3 attempts"), "%s", e.msg);
    cr_assert(vd_admin(&srv, "DELETE", "sys/dev/faults", NULL) / 100 == 2);
    vks_vault_free(v);
}

Test(vault, deadline_covers_the_whole_lookup)
{
    vd_kv2_put(&srv, "secret", "slow", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault_config c;
    base_cfg(&c, &srv);
    c.timeout_ms = 700;
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
    struct vks_kv_result r;
    cr_assert_eq(read_kv(v, 2, "secret", "slow", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    vd_fault(&srv, "{\"action\":\"latency\",\"latency_ms\":5000,\"path_prefix\":\"/v1/secret/data/slow\",\"count\":5}");
    cr_assert_eq(read_kv(v, 2, "secret", "slow", "key", 0, &r, &e), VKS_E_TIMEOUT, "%s", e.msg);
    cr_assert(strstr(e.msg, "slow") && strstr(e.msg, "timed out"), "%s", e.msg);
    vks_vault_free(v);
}

Test(vault, vault_down_is_unavailable)
{
    struct vd gone;
    vd_start(&gone, tls_dir);
    vd_stop(&gone); /* its port is closed now */
    struct vks_vault *v = client_for(&gone);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "x", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert(strstr(e.msg, gone.addr) || strstr(e.msg, "127.0.0.1"), "%s", e.msg);
    assert_clean(&e);
    vks_vault_free(v);
}

/* ------------------------------------------------------------------ TLS and redirects */

Test(vault, wrong_ca_is_a_tls_error_and_skip_verify_skips)
{
    vd_kv2_put(&srv, "secret", "t", "{\"key\":\"" PASSWORD_1 "\"}");
    char other[700];
    snprintf(other, sizeof other, "%s/other-tls", vd_work_dir());
    mkdir(other, 0700);
    struct vd o;
    vd_start(&o, other); /* a second CA */
    char other_ca[600];
    snprintf(other_ca, sizeof other_ca, "%s", o.cacert);
    vd_stop(&o);
    struct vks_vault_config c;
    base_cfg(&c, &srv);
    free(c.cacert);
    c.cacert = strdup(other_ca);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    struct vks_kv_result r;
    cr_assert_eq(read_kv(v, 2, "secret", "t", "key", 0, &r, &e), VKS_E_TLS, "%s", e.msg);
    cr_assert_eq(r.attempts, 1, "certificate errors are not retried");
    cr_assert_eq(r.http_status, 0, "no HTTP answer");
    vks_vault_free(v);
    c.skip_verify = true;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(read_kv(v, 2, "secret", "t", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    vks_vault_config_clear(&c);
}

Test(vault, ca_directory_works_like_a_ca_file)
{
    vd_kv2_put(&srv, "secret", "capath", "{\"key\":\"" PASSWORD_1 "\"}");
    char dir[700], cmd[2000];
    snprintf(dir, sizeof dir, "%s/capath", vd_work_dir());
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/vault-ca.pem' && openssl rehash '%s' >/dev/null 2>&1", srv.cacert, dir, dir);
    cr_assert_eq(system(cmd), 0, "could not prepare the CA directory");
    struct vks_vault_config c;
    base_cfg(&c, &srv);
    free(c.cacert);
    c.cacert = NULL;
    c.capath = strdup(dir);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    struct vks_kv_result r;
    cr_assert_eq(read_kv(v, 2, "secret", "capath", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    vks_vault_config_clear(&c);
}

Test(vault, tls_server_name_is_used_for_verification)
{
    vd_kv2_put(&srv, "secret", "sni", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault_config c;
    base_cfg(&c, &srv);
    c.tls_server_name = strdup("localhost"); /* in the certificate's SANs */
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    struct vks_kv_result r;
    cr_assert_eq(read_kv(v, 2, "secret", "sni", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    free(c.tls_server_name);
    c.tls_server_name = strdup("not-in-the-cert.example");
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(read_kv(v, 2, "secret", "sni", "key", 0, &r, &e), VKS_E_TLS, "%s", e.msg);
    vks_vault_free(v);
    vks_vault_config_clear(&c);
}

Test(vault, standby_redirect_307_to_another_node_is_refused)
{
    vd_kv2_put(&srv, "secret", "ha", "{\"key\":\"" PASSWORD_1 "\"}");
    const char *extra[] = { "--standby-of", srv.addr, NULL };
    struct vd sb;
    vd_start_args(&sb, tls_dir, extra);
    struct vks_vault *v = client_for(&sb);
    struct vks_kv_result r;
    struct vks_err e;
    vd_reset_counters(&srv);
    cr_assert_eq(read_kv(v, 2, "secret", "ha", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert(strstr(e.msg, sb.addr) && strstr(e.msg, srv.addr) && strstr(e.msg, "refused"), "%s", e.msg);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/data/ha"), 0, "the token went to the active node");
    vks_vault_free(v);
    vd_stop(&sb);
}

Test(vault, redirect_from_https_to_http_is_refused)
{
    struct vd plain;
    vd_start(&plain, NULL); /* http:// on loopback */
    const char *extra[] = { "--standby-of", plain.addr, NULL };
    struct vd sb;
    vd_start_args(&sb, tls_dir, extra);
    struct vks_vault *v = client_for(&sb);
    struct vks_kv_result r;
    struct vks_err e;
    vd_reset_counters(&plain);
    cr_assert_eq(read_kv(v, 2, "secret", "x", "key", 0, &r, &e), VKS_E_UNAVAILABLE, "%s", e.msg);
    cr_assert(strstr(e.msg, sb.addr) && strstr(e.msg, plain.addr), "names both addresses: %s", e.msg);
    cr_assert(strstr(e.msg, "downgrade"), "%s", e.msg);
    cr_assert_eq(vd_count(&plain, "GET /v1/secret"), 0, "nothing was sent over http");
    vks_vault_free(v);
    vd_stop(&sb);
    vd_stop(&plain);
}

Test(vault, plain_http_to_loopback_works)
{
    struct vd plain;
    vd_start(&plain, NULL);
    vd_kv2_put(&plain, "secret", "p", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&plain);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_kv(v, 2, "secret", "p", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_1);
    vks_kv_result_free(&r);
    vks_vault_free(v);
    vd_stop(&plain);
}

/* ------------------------------------------------------------------ namespaces, overrides */

Test(vault, namespaces_select_separate_trees)
{
    long st = vd_admin(&srv, "POST", "sys/namespaces/team-a", "{}");
    cr_assert(st / 100 == 2, "namespace create: %ld", st);
    st = vd_req(&srv, "POST", "sys/mounts/secret", "{\"type\":\"kv\",\"options\":{\"version\":\"2\"}}", NULL,
                "team-a", NULL);
    cr_assert(st / 100 == 2 || st == 400, "mount in namespace: %ld", st);
    st = vd_req(&srv, "POST", "secret/data/ns-cred", "{\"data\":{\"key\":\"" PASSWORD_NS "\"}}", NULL, "team-a", NULL);
    cr_assert(st / 100 == 2, "write in namespace: %ld", st);
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_request rq = { .mount = "secret", .path = "ns-cred", .kv_version = 2, .namespace_ = "team-a" };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_NS);
    vks_kv_result_free(&r);
    rq.namespace_ = NULL; /* the client's (root) namespace: not there */
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    rq.namespace_ = "team-a";
    rq.kv_version = 0; /* detection is per namespace too */
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.kv_version, 2);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}

Test(vault, per_request_address_override)
{
    struct vd second;
    vd_start(&second, tls_dir); /* same CA */
    vd_kv2_put(&second, "secret", "over", "{\"key\":\"" PASSWORD_2 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_request rq = { .mount = "secret", .path = "over", .kv_version = 2, .address = second.addr };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    assert_value(&r, PASSWORD_2);
    vks_kv_result_free(&r);
    rq.address = NULL;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_NOT_FOUND, "%s", e.msg);
    vks_vault_free(v);
    vd_stop(&second);
}

/* ------------------------------------------------------------------ connections and threads */

Test(vault, connections_are_reused)
{
    vd_kv2_put(&srv, "secret", "reuse", "{\"key\":\"" PASSWORD_1 "\"}");
    struct vks_vault *v = client_for(&srv);
    struct vks_kv_result r;
    struct vks_err e;
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(read_kv(v, 2, "secret", "reuse", "key", 0, &r, &e), VKS_OK, "%s", e.msg);
        vks_kv_result_free(&r);
    }
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.reads, 20);
    cr_assert_eq(s.requests, 21, "20 reads + one lookup-self, got %lu", s.requests);
    cr_assert_eq(s.connects, 1, "one connection for everything, got %lu", s.connects);
    vks_vault_free(v);
}

struct worker {
    struct vks_vault *v;
    int ok;
    int bad;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 40; i++) {
        struct vks_kv_result r;
        struct vks_err e;
        const char *path = (i % 2) ? "conc/a" : "conc/b";
        const char *want = (i % 2) ? PASSWORD_1 : PASSWORD_2;
        if (read_kv(w->v, 0, "secret", path, "key", 0, &r, &e) == VKS_OK && r.value.len == strlen(want) &&
            memcmp(r.value.data, want, r.value.len) == 0)
            w->ok++;
        else
            w->bad++;
        vks_kv_result_free(&r);
    }
    return NULL;
}

Test(vault, many_threads_share_one_client)
{
    vd_kv2_put(&srv, "secret", "conc/a", "{\"key\":\"" PASSWORD_1 "\"}");
    vd_kv2_put(&srv, "secret", "conc/b", "{\"key\":\"" PASSWORD_2 "\"}");
    struct vks_vault *v = client_for(&srv);
    enum { N = 8 };
    pthread_t th[N];
    struct worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){ v, 0, 0 };
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        bad += w[i].bad;
    }
    cr_assert_eq(bad, 0);
    cr_assert_eq(ok, N * 40);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_leq(s.connects, N, "at most one connection per thread, got %lu", s.connects);
    cr_assert_eq(s.mount_lookups >= 1 && s.mount_lookups <= N, 1, "mount lookups %lu", s.mount_lookups);
    vks_vault_free(v);
}
