/*
 * Vault client auth against a real build/vault-dev: AppRole login (secret_id from memory and from a
 * file), single-flight first login, renew-self at about 2/3 of the TTL (both clocks moved forward),
 * one re-login and retry after the server expired the token, and bad credentials.
 */
#include <pthread.h>

#include "vaultdev_harness.h"
#include "vks_vault.h"

#define APPROLE_SECRET_ID "approle-secret-id-TEST-6d2e90"
#define WRONG_SECRET_ID "wrong-secret-id-TEST-0b7f33"
#define AUTH_PASSWORD "smtp-pass-TEST-auth-5a1e"

static struct vd srv;
static char role_id[128];
static char secret_id[128];

static void setup(void)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    char tls_dir[600];
    snprintf(tls_dir, sizeof tls_dir, "%s/vault-tls", vd_work_dir());
    mkdir(tls_dir, 0700);
    vd_start(&srv, tls_dir);
    long st = vd_admin(&srv, "POST", "sys/auth/approle", "{\"type\":\"approle\"}");
    cr_assert(st / 100 == 2, "enable approle: %ld", st);
    st = vd_admin(&srv, "PUT", "sys/policies/acl/smtp-read",
                  "{\"policy\":\"path \\\"secret/data/*\\\" { capabilities = [\\\"read\\\"] }\"}");
    cr_assert(st / 100 == 2, "policy: %ld", st);
    st = vd_admin(&srv, "POST", "auth/approle/role/mailer",
                  "{\"token_ttl\":\"60s\",\"token_max_ttl\":\"1h\",\"token_policies\":[\"smtp-read\"]}");
    cr_assert(st / 100 == 2, "role: %ld", st);
    struct json_object *j = NULL;
    st = vd_req(&srv, "GET", "auth/approle/role/mailer/role-id", NULL, NULL, NULL, &j);
    cr_assert_eq(st, 200, "role-id: %ld", st);
    snprintf(role_id, sizeof role_id, "%s", vd_jstr(j, "data", "role_id", NULL));
    json_object_put(j);
    cr_assert(role_id[0]);
    /* A secret_id of ours (listed in the test secrets) when the server supports it, else a generated one. */
    st = vd_req(&srv, "POST", "auth/approle/role/mailer/custom-secret-id",
                "{\"secret_id\":\"" APPROLE_SECRET_ID "\"}", NULL, NULL, NULL);
    if (st == 200 || st == 204) {
        snprintf(secret_id, sizeof secret_id, "%s", APPROLE_SECRET_ID);
    } else {
        st = vd_req(&srv, "POST", "auth/approle/role/mailer/secret-id", "{}", NULL, NULL, &j);
        cr_assert_eq(st, 200, "secret-id: %ld", st);
        snprintf(secret_id, sizeof secret_id, "%s", vd_jstr(j, "data", "secret_id", NULL));
        json_object_put(j);
    }
    cr_assert(secret_id[0]);
    vd_kv2_put(&srv, "secret", "smtp/relay", "{\"password\":\"" AUTH_PASSWORD "\"}");
}

static void teardown(void)
{
    vd_stop(&srv);
}

TestSuite(vault_auth, .init = setup, .fini = teardown, .timeout = 60);

static struct vks_vault *approle_client(const char *sid, const char *sid_file)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(srv.addr);
    c.cacert = strdup(srv.cacert);
    c.auth = VKS_AUTH_APPROLE;
    c.role_id = strdup(role_id);
    if (sid)
        cr_assert_eq(vks_secret_dup(sid, strlen(sid), &c.secret_id, NULL), VKS_OK);
    if (sid_file)
        c.secret_id_file = strdup(sid_file);
    c.min_retry_wait_ms = 10;
    c.max_retry_wait_ms = 20;
    c.timeout_ms = 10000;
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
    return v;
}

static vks_status read_pw(struct vks_vault *v, struct vks_kv_result *r, struct vks_err *e)
{
    struct vks_kv_request rq = { .mount = "secret", .path = "smtp/relay", .key = "password", .kv_version = 2 };
    return vks_vault_kv_read(v, &rq, r, e);
}

static void assert_pw(struct vks_kv_result *r)
{
    cr_assert_eq(r->value.len, strlen(AUTH_PASSWORD));
    cr_assert(memcmp(r->value.data, AUTH_PASSWORD, r->value.len) == 0);
    vks_kv_result_free(r);
}

static void assert_clean(const struct vks_err *e)
{
    cr_assert(strstr(e->msg, secret_id) == NULL, "secret_id in a message");
    cr_assert(strstr(e->msg, WRONG_SECRET_ID) == NULL, "secret_id in a message");
    cr_assert(strstr(e->msg, AUTH_PASSWORD) == NULL, "password in a message");
    cr_assert(strstr(e->msg, VD_ROOT_TOKEN) == NULL, "root token in a message");
}

Test(vault_auth, approle_login_then_read)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
        cr_assert(r.token_accessor[0], "the login's accessor is reported");
        assert_pw(&r);
    }
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.logins, 1);
    cr_assert_eq(vd_count(&srv, "POST /v1/auth/approle/login"), 1);
    vks_vault_free(v);
}

Test(vault_auth, secret_id_from_a_file)
{
    char path[700];
    snprintf(path, sizeof path, "%s/secret-id-XXXXXX", vd_work_dir());
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, secret_id, strlen(secret_id)), (ssize_t)strlen(secret_id));
    cr_assert_eq(write(fd, "\n", 1), 1);
    close(fd);
    struct vks_vault *v = approle_client(NULL, path);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    vks_vault_free(v);
    unlink(path);
    /* a missing file is an auth failure naming the file */
    v = approle_client(NULL, path);
    cr_assert_eq(read_pw(v, &r, &e), VKS_E_AUTH_FAILED, "%s", e.msg);
    cr_assert(strstr(e.msg, path), "%s", e.msg);
    vks_vault_free(v);
}

Test(vault_auth, wrong_secret_id_is_auth_failed)
{
    struct vks_vault *v = approle_client(WRONG_SECRET_ID, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_E_AUTH_FAILED, "%s", e.msg);
    cr_assert(strstr(e.msg, "invalid role or secret ID") || strstr(e.msg, "HTTP 400"), "%s", e.msg);
    cr_assert(strstr(e.msg, "smtp/relay"), "names what was being read: %s", e.msg);
    assert_clean(&e);
    cr_assert_null(r.value.data);
    vks_vault_free(v);
}

Test(vault_auth, renews_at_two_thirds_of_the_ttl)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    /* 30 s of a 60 s TTL: not yet */
    cr_assert(vd_admin(&srv, "POST", "sys/dev/clock", "{\"advance_seconds\":30}") / 100 == 2);
    vks_vault_advance_clock(v, 30);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.renewals, 0);
    /* 45 s: past 2/3, renewed once, same login */
    cr_assert(vd_admin(&srv, "POST", "sys/dev/clock", "{\"advance_seconds\":15}") / 100 == 2);
    vks_vault_advance_clock(v, 15);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.renewals, 1, "renewals %lu", s.renewals);
    cr_assert_eq(s.logins, 1);
    cr_assert_eq(vd_count(&srv, "POST /v1/auth/token/renew-self"), 1);
    /* 50 s after the renewal the old TTL would be long gone: the renewed token still works */
    cr_assert(vd_admin(&srv, "POST", "sys/dev/clock", "{\"advance_seconds\":50}") / 100 == 2);
    vks_vault_advance_clock(v, 50);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.renewals, 2);
    cr_assert_eq(s.logins, 1);
    vks_vault_free(v);
}

Test(vault_auth, expired_token_logs_in_again_once)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    /* only the server's clock moves: the client believes its token is fresh, Vault says 403 */
    cr_assert(vd_admin(&srv, "POST", "sys/dev/clock", "{\"advance_seconds\":120}") / 100 == 2);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    assert_pw(&r);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.relogins, 1);
    cr_assert_eq(s.logins, 2);
    vks_vault_free(v);
}

Test(vault_auth, revoked_token_logs_in_again_once)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    char body[256];
    snprintf(body, sizeof body, "{\"accessor\":\"%s\"}", r.token_accessor);
    char first[64];
    snprintf(first, sizeof first, "%s", r.token_accessor);
    assert_pw(&r);
    long st = vd_admin(&srv, "POST", "auth/token/revoke-accessor", body);
    cr_assert(st / 100 == 2, "revoke-accessor: %ld", st);
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert(r.token_accessor[0] && strcmp(r.token_accessor, first) != 0, "a new token after the re-login");
    assert_pw(&r);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.relogins, 1);
    cr_assert_eq(s.logins, 2);
    vks_vault_free(v);
}

Test(vault_auth, expired_token_during_kv_version_detection)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(read_pw(v, &r, &e), VKS_OK, "%s", e.msg); /* logged in, KV v2 given: no detection yet */
    assert_pw(&r);
    cr_assert(vd_admin(&srv, "POST", "sys/dev/clock", "{\"advance_seconds\":120}") / 100 == 2);
    struct vks_kv_request rq = { .mount = "secret", .path = "smtp/relay", .key = "password", .kv_version = 0 };
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.kv_version, 2);
    assert_pw(&r);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.relogins, 1);
    cr_assert_eq(s.logins, 2);
    vks_vault_free(v);
}

Test(vault_auth, a_real_permission_denial_does_not_loop)
{
    vd_kv2_put(&srv, "secret", "other", "{\"key\":\"x-TEST-not-secret\"}");
    long st = vd_admin(&srv, "PUT", "sys/policies/acl/smtp-read",
                       "{\"policy\":\"path \\\"secret/data/smtp/*\\\" { capabilities = [\\\"read\\\"] }\"}");
    cr_assert(st / 100 == 2);
    struct vks_vault *v = approle_client(secret_id, NULL);
    struct vks_kv_request rq = { .mount = "secret", .path = "other", .kv_version = 2 };
    struct vks_kv_result r;
    struct vks_err e;
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_PERMISSION_DENIED, "%s", e.msg);
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.logins, 1, "the token is fine: no re-login");
    cr_assert_eq(s.relogins, 0);
    assert_clean(&e);
    vks_vault_free(v);
}

static void *first_read(void *arg)
{
    struct vks_kv_result r;
    struct vks_err e;
    vks_status st = read_pw(arg, &r, &e);
    vks_kv_result_free(&r);
    return (void *)(intptr_t)st;
}

Test(vault_auth, first_login_is_single_flight)
{
    struct vks_vault *v = approle_client(secret_id, NULL);
    enum { N = 8 };
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, first_read, v);
    for (int i = 0; i < N; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        cr_assert_eq((vks_status)(intptr_t)rv, VKS_OK);
    }
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.logins, 1, "logins %lu", s.logins);
    vks_vault_free(v);
}
