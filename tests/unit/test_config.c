#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_config.h"

#define S(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_STRING, .str = (v), .len = strlen(v) })
#define I(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_INTEGER, .ival = (v) })
#define D(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_NUMBER, .dval = (v) })
#define B(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_BOOLEAN, .bval = (v) })

static const char *vars[] = { "VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH",
                              "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_SKIP_VERIFY",
                              "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_TIMEOUT", "VAULT_MAX_RETRIES", "VKS_AUTH",
                              "VKS_APPROLE_ROLE_ID", "VKS_APPROLE_SECRET_ID", "VKS_APPROLE_SECRET_ID_FILE",
                              "VKS_APPROLE_MOUNT", "VKS_VAULT_ALLOW_HTTP", "VKS_KV_VERSION", "VKS_REQUIRE_ENCRYPTED",
                              "VKS_LOCKED_BYTES", "VKS_REQUIRE_LOCKED", "VKS_MIN_RETRY_WAIT",
                              "VKS_MAX_RETRY_WAIT", "VKS_MAX_RESPONSE_BYTES" };
static char home[64];

/* Every test starts from an empty environment and a HOME without ~/.vault-token. */
static void clean_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    snprintf(home, sizeof home, "/tmp/vks-test-config-%d", (int)getpid());
    mkdir(home, 0700);
    setenv("HOME", home, 1);
}

static void rm_home(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/.vault-token", home);
    unlink(p);
    rmdir(home);
}

TestSuite(config, .init = clean_env, .fini = rm_home);

Test(config, defaults_without_environment)
{
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_null(c.vault.address, "no default address: KumoMTA errors instead of assuming 127.0.0.1");
    cr_assert_null(c.vault.token.data);
    cr_assert_eq(c.kv_version, 2);
    cr_assert_eq(c.vault.timeout_ms, 60000);
    cr_assert_eq(c.vault.max_retries, 2);
    cr_assert_eq(c.vault.min_retry_wait_ms, 1000);
    cr_assert_eq(c.vault.max_retry_wait_ms, 1500);
    cr_assert_eq(c.vault.max_response_bytes, 1024 * 1024);
    cr_assert_not(c.vault.skip_verify);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(c.vault.auth, VKS_AUTH_TOKEN);
    vks_config_clear(&c);
}

Test(config, environment_is_read)
{
    setenv("VAULT_ADDR", "https://127.0.0.1:8200/", 1);
    setenv("VAULT_TOKEN", "cfg-token-UNIT-0c4e9a1f", 1);
    setenv("VAULT_NAMESPACE", "ns1/child", 1);
    setenv("VAULT_SKIP_VERIFY", "true", 1);
    setenv("VAULT_CLIENT_TIMEOUT", "30s", 1);
    setenv("VAULT_MAX_RETRIES", "5", 1);
    setenv("VKS_KV_VERSION", "auto", 1);
    setenv("VKS_REQUIRE_ENCRYPTED", "1", 1);
    setenv("VAULT_CACERT", "/etc/ca.pem", 1);
    setenv("VAULT_CLIENT_CERT", "/c.pem", 1);
    setenv("VAULT_CLIENT_KEY", "/k.pem", 1);
    setenv("VAULT_TLS_SERVER_NAME", "vault.internal", 1);
    setenv("VAULT_CAPATH", "", 1); /* empty means unset */
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(c.vault.address, "https://127.0.0.1:8200");
    cr_assert_eq(c.vault.token.len, strlen("cfg-token-UNIT-0c4e9a1f"));
    cr_assert_eq(memcmp(c.vault.token.data, "cfg-token-UNIT-0c4e9a1f", c.vault.token.len), 0);
    cr_assert_str_eq(c.token_source, "VAULT_TOKEN");
    cr_assert_str_eq(c.vault.namespace_, "ns1/child");
    cr_assert(c.vault.skip_verify, "VAULT_SKIP_VERIFY=true must mean skip (vaultrs 0.7.4 had it inverted)");
    cr_assert_eq(c.vault.timeout_ms, 30000);
    cr_assert_eq(c.vault.max_retries, 5);
    cr_assert_eq(c.kv_version, VKS_KV_AUTO);
    cr_assert(c.require_encrypted);
    cr_assert_str_eq(c.vault.cacert, "/etc/ca.pem");
    cr_assert_null(c.vault.capath);
    cr_assert_str_eq(c.vault.tls_server_name, "vault.internal");
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    vks_config_clear(&c);
    cr_assert_null(c.vault.token.data);
}

Test(config, skip_verify_false_keeps_verification)
{
    setenv("VAULT_SKIP_VERIFY", "false", 1);
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    cr_assert_not(c.vault.skip_verify);
    vks_config_clear(&c);
    setenv("VAULT_SKIP_VERIFY", "yes please", 1);
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VAULT_SKIP_VERIFY") != NULL, "%s", e.msg);
}

Test(config, bad_environment_names_the_variable)
{
    struct { const char *var, *val; } cases[] = {
        { "VAULT_ADDR", "vault:8200" }, { "VAULT_CLIENT_TIMEOUT", "soon" }, { "VAULT_MAX_RETRIES", "-1" },
        { "VKS_KV_VERSION", "3" }, { "VKS_AUTH", "ldap" }, { "VKS_LOCKED_BYTES", "12Q" },
        { "VAULT_ADDR", "https://u:p@h:1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clean_env();
        setenv(cases[i].var, cases[i].val, 1);
        struct vks_config c;
        struct vks_err e;
        cr_assert_eq(vks_config_from_env(&c, &e), VKS_E_CONFIG, "%s=%s accepted", cases[i].var, cases[i].val);
        cr_assert(strstr(e.msg, cases[i].var) != NULL, "%s: %s", cases[i].var, e.msg);
        cr_assert_null(c.vault.address);
    }
}

Test(config, vault_token_file_is_used_when_no_variable)
{
    char p[128];
    snprintf(p, sizeof p, "%s/.vault-token", home);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("  file-token-UNIT-93b2d7c4\n", f);
    fclose(f);
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(c.vault.token.len, strlen("file-token-UNIT-93b2d7c4"));
    cr_assert_eq(memcmp(c.vault.token.data, "file-token-UNIT-93b2d7c4", c.vault.token.len), 0);
    cr_assert_str_eq(c.token_source, "~/.vault-token");
    vks_config_clear(&c);
    setenv("VAULT_TOKEN", "cfg-token-UNIT-0c4e9a1f", 1);
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(memcmp(c.vault.token.data, "cfg-token-UNIT-0c4e9a1f", c.vault.token.len), 0,
                 "VAULT_TOKEN must win over ~/.vault-token");
    vks_config_clear(&c);
}

Test(config, setup_options_override_environment)
{
    setenv("VAULT_ADDR", "https://127.0.0.1:1", 1);
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    struct vks_field f[] = {
        S("address", "https://127.0.0.1:2"), D("timeout", 2.5), S("min_retry_wait", "10ms"),
        S("max_retry_wait", "20ms"), I("max_retries", 0), I("kv_version", 1), B("require_encrypted", true),
        S("token", "cfg-token-UNIT-0c4e9a1f"), S("namespace", ""), S("max_response_bytes", "64K"),
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        cr_assert_eq(vks_config_set(&c, &f[i], &e), VKS_OK, "%s: %s", f[i].name, e.msg);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(c.vault.address, "https://127.0.0.1:2");
    cr_assert_eq(c.vault.timeout_ms, 2500);
    cr_assert_eq(c.vault.min_retry_wait_ms, 10);
    cr_assert_eq(c.vault.max_retry_wait_ms, 20);
    cr_assert_eq(c.vault.max_retries, 0);
    cr_assert_eq(c.kv_version, 1);
    cr_assert(c.require_encrypted);
    cr_assert_str_eq(c.token_source, "setup");
    cr_assert_str_eq(c.vault.namespace_, "");
    cr_assert_eq(c.vault.max_response_bytes, 65536);
    vks_config_clear(&c);
}

Test(config, setup_errors_name_the_option)
{
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    struct vks_field bad[] = { S("adress", "https://x"), B("timeout", true), S("kv_version", "v2"),
                               I("address", 1), S("auth", "kerberos"), D("max_retries", 1.5),
                               S("token", ""), S("skip_verify", "maybe") };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(vks_config_set(&c, &bad[i], &e), VKS_E_CONFIG, "%s accepted", bad[i].name);
        cr_assert(strstr(e.msg, bad[i].name) != NULL, "%s: %s", bad[i].name, e.msg);
    }
    vks_config_clear(&c);
}

Test(config, finish_checks_combinations)
{
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    struct vks_field a = S("address", "http://vault.example:8200");
    cr_assert_eq(vks_config_set(&c, &a, &e), VKS_OK);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "allow_http") != NULL, "%s", e.msg);
    struct vks_field ah = B("allow_http", true);
    cr_assert_eq(vks_config_set(&c, &ah, &e), VKS_OK);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    struct vks_field lo = S("address", "http://127.0.0.1:8200");
    struct vks_field ah0 = B("allow_http", false);
    vks_config_set(&c, &lo, &e);
    vks_config_set(&c, &ah0, &e);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "loopback http is allowed: %s", e.msg);

    struct vks_field cc = S("client_cert", "/c.pem");
    vks_config_set(&c, &cc, &e);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "client_key") != NULL, "%s", e.msg);
    struct vks_field ck = S("client_key", "/k.pem");
    vks_config_set(&c, &ck, &e);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK);

    struct vks_field ar = S("auth", "approle");
    vks_config_set(&c, &ar, &e);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "role_id") != NULL, "%s", e.msg);
    struct vks_field rid = S("role_id", "role-1");
    vks_config_set(&c, &rid, &e);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(c.vault.approle_mount, "approle");
    vks_config_clear(&c);
}

Test(config, role_id_implies_approle)
{
    setenv("VKS_APPROLE_ROLE_ID", "role-2", 1);
    setenv("VKS_APPROLE_SECRET_ID", "cfg-secretid-UNIT-6f0a", 1);
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK);
    cr_assert_eq(c.vault.auth, VKS_AUTH_APPROLE);
    cr_assert_eq(c.vault.secret_id.len, strlen("cfg-secretid-UNIT-6f0a"));
    vks_config_clear(&c);
}

Test(config, equal_copy_and_changes)
{
    setenv("VAULT_ADDR", "https://127.0.0.1:8200", 1);
    setenv("VAULT_TOKEN", "cfg-token-UNIT-0c4e9a1f", 1);
    struct vks_config a, b, c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&a, &e), VKS_OK);
    cr_assert_eq(vks_config_from_env(&b, &e), VKS_OK);
    cr_assert(vks_config_equal(&a, &b));
    cr_assert_eq(vks_config_copy(&a, &c, &e), VKS_OK);
    cr_assert(vks_config_equal(&a, &c));
    cr_assert_neq(c.vault.token.data, a.vault.token.data);
    cr_assert_neq(c.vault.address, a.vault.address);
    struct vks_field t = S("token", "cfg-token-UNIT-0c4e9a1X");
    vks_config_set(&c, &t, &e);
    cr_assert_not(vks_config_equal(&a, &c), "a different token is a different config");
    vks_config_clear(&c);
    struct vks_field to = I("timeout", 61);
    vks_config_set(&b, &to, &e);
    cr_assert_not(vks_config_equal(&a, &b));
    vks_config_clear(&a);
    vks_config_clear(&b);
}

Test(config, duration_and_size_parsers)
{
    long ms;
    struct vks_err e;
    struct vks_field ok[] = { S("t", "15"), S("t", "1.5s"), S("t", "250ms"), S("t", "2m"), S("t", "1h"), I("t", 3),
                              D("t", 0.25) };
    long want[] = { 15000, 1500, 250, 120000, 3600000, 3000, 250 };
    for (size_t i = 0; i < 7; i++) {
        cr_assert_eq(vks_parse_duration_ms(&ok[i], "t", &ms, &e), VKS_OK, "%zu", i);
        cr_assert_eq(ms, want[i], "%zu: %ld", i, ms);
    }
    struct vks_field bad[] = { S("t", ""), S("t", "-1"), S("t", "10 s"), S("t", "1d"), D("t", -2), S("t", "nan") };
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(vks_parse_duration_ms(&bad[i], "t", &ms, &e), VKS_E_CONFIG, "%zu", i);
    size_t sz;
    struct vks_field s1 = S("s", "8M");
    cr_assert_eq(vks_parse_size(&s1, "s", &sz, &e), VKS_OK);
    cr_assert_eq(sz, 8u << 20);
    const char *const *names = vks_config_option_names();
    size_t n = 0;
    while (names[n] != NULL)
        n++;
    cr_assert_geq(n, 20);
}

Test(config, named_files_must_exist)
{
    struct vks_config c;
    struct vks_err e;
    cr_assert_eq(vks_config_from_env(&c, &e), VKS_OK);
    cr_assert_eq(vks_config_check_files(&c, &e), VKS_OK);
    struct vks_field ca = S("ca_cert", "/nonexistent/ca.pem");
    vks_config_set(&c, &ca, &e);
    cr_assert_eq(vks_config_check_files(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "ca_cert \"/nonexistent/ca.pem\"") != NULL, "%s", e.msg);
    struct vks_field ca2 = S("ca_cert", "/tmp");
    vks_config_set(&c, &ca2, &e);
    cr_assert_eq(vks_config_check_files(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "not a regular file") != NULL, "%s", e.msg);
    struct vks_field ca3 = S("ca_cert", "/etc/hostname");
    vks_config_set(&c, &ca3, &e);
    cr_assert_eq(vks_config_check_files(&c, &e), VKS_OK, "%s", e.msg);
    vks_config_clear(&c);
}
