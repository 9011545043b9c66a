/*
 * Vault client pieces that need no server: retry policy, backoff, address rules, URL escaping,
 * configuration from the environment (including ~/.vault-token), and refusals at vks_vault_new.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_http.h"
#include "vks_vault.h"

/* The token used here is listed in tests/test-secrets.d/vault.txt. */
#define ENV_TOKEN "hvs.env-token-TEST-4b1d93e7"
#define FILE_TOKEN "hvs.file-token-TEST-a0c7e512"

static void clear_env(void)
{
    static const char *const vars[] = {
        "VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT",
        "VAULT_CLIENT_KEY", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_TIMEOUT",
        "VAULT_MAX_RETRIES", "VKS_APPROLE_ROLE_ID", "VKS_APPROLE_SECRET_ID", "VKS_APPROLE_SECRET_ID_FILE",
        "VKS_APPROLE_MOUNT", "VKS_VAULT_ALLOW_HTTP",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    setenv("HOME", "/nonexistent-home-for-tests", 1);
}

Test(vault_pure, retry_policy_matches_the_go_client)
{
    /* statuses */
    cr_assert(vks_http_should_retry(0, 412));
    cr_assert(vks_http_should_retry(0, 429));
    cr_assert(vks_http_should_retry(0, 500));
    cr_assert(vks_http_should_retry(0, 502));
    cr_assert(vks_http_should_retry(0, 503));
    cr_assert(vks_http_should_retry(0, 504));
    cr_assert_not(vks_http_should_retry(0, 501));
    cr_assert_not(vks_http_should_retry(0, 200));
    cr_assert_not(vks_http_should_retry(0, 400));
    cr_assert_not(vks_http_should_retry(0, 403));
    cr_assert_not(vks_http_should_retry(0, 404));
    cr_assert_not(vks_http_should_retry(0, 405));
    cr_assert_not(vks_http_should_retry(0, 473));
    /* transport errors */
    cr_assert(vks_http_should_retry(CURLE_COULDNT_CONNECT, 0));
    cr_assert(vks_http_should_retry(CURLE_RECV_ERROR, 0));
    cr_assert(vks_http_should_retry(CURLE_GOT_NOTHING, 0));
    cr_assert_not(vks_http_should_retry(CURLE_PARTIAL_FILE, 0)); /* truncated body: final */
    cr_assert_not(vks_http_should_retry(CURLE_PEER_FAILED_VERIFICATION, 0));
    cr_assert_not(vks_http_should_retry(CURLE_SSL_CONNECT_ERROR, 0));
    cr_assert_not(vks_http_should_retry(CURLE_UNSUPPORTED_PROTOCOL, 0));
    cr_assert_not(vks_http_should_retry(CURLE_OPERATION_TIMEDOUT, 0));
    cr_assert_not(vks_http_should_retry(CURLE_WRITE_ERROR, 0));
}

Test(vault_pure, linear_jitter_backoff)
{
    cr_assert_eq(vks_http_backoff_ms(1000, 1500, 1, 0.0), 1000);
    cr_assert_eq(vks_http_backoff_ms(1000, 1500, 1, 0.5), 1250);
    cr_assert_eq(vks_http_backoff_ms(1000, 1500, 2, 0.0), 2000);
    cr_assert_eq(vks_http_backoff_ms(1000, 1500, 2, 0.5), 2500);
    long w = vks_http_backoff_ms(1000, 1500, 2, 0.9999);
    cr_assert(w >= 2000 && w < 3000, "%ld", w);
    cr_assert_eq(vks_http_backoff_ms(10, 5, 1, 0.7), 10); /* max below min: min */
    cr_assert_eq(vks_http_backoff_ms(10, 20, 0, 0.0), 10); /* attempt clamped to 1 */
}

Test(vault_pure, loopback_hosts)
{
    cr_assert(vks_http_host_is_loopback("127.0.0.1"));
    cr_assert(vks_http_host_is_loopback("127.255.3.4"));
    cr_assert(vks_http_host_is_loopback("localhost"));
    cr_assert(vks_http_host_is_loopback("LOCALHOST"));
    cr_assert(vks_http_host_is_loopback("::1"));
    cr_assert(vks_http_host_is_loopback("[::1]"));
    cr_assert_not(vks_http_host_is_loopback("128.0.0.1"));
    cr_assert_not(vks_http_host_is_loopback("10.0.0.1"));
    cr_assert_not(vks_http_host_is_loopback("localhost.example.com"));
    cr_assert_not(vks_http_host_is_loopback("127.0.0.1.example.com"));
    cr_assert_not(vks_http_host_is_loopback(""));
}

Test(vault_pure, address_rules)
{
    char o[256];
    struct vks_err e;
    cr_assert_eq(vks_http_check_address("https://vault.example.com:8200/", false, o, sizeof o, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(o, "https://vault.example.com:8200");
    cr_assert_eq(vks_http_check_address("HTTPS://vault.example.com", false, o, sizeof o, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(o, "https://vault.example.com");
    cr_assert_eq(vks_http_check_address("http://127.0.0.1:8200", false, o, sizeof o, &e), VKS_OK);
    cr_assert_str_eq(o, "http://127.0.0.1:8200");
    cr_assert_eq(vks_http_check_address("http://localhost:8200", false, o, sizeof o, &e), VKS_OK);
    cr_assert_eq(vks_http_check_address("http://[::1]:8200", false, o, sizeof o, &e), VKS_OK);
    cr_assert_eq(vks_http_check_address("https://proxy.example.com/vault/", false, o, sizeof o, &e), VKS_OK);
    cr_assert_str_eq(o, "https://proxy.example.com/vault");

    cr_assert_eq(vks_http_check_address("http://vault.example.com:8200", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "vault.example.com") && strstr(e.msg, "http"), "%s", e.msg);
    cr_assert_eq(vks_http_check_address("http://vault.example.com:8200", true, o, sizeof o, &e), VKS_OK);
    cr_assert_eq(vks_http_check_address("ftp://vault.example.com", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("unix:///run/vault.sock", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("vault.example.com:8200", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("https://", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("https://host:99999999", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("https://a b.example.com", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("https://h.example.com/?x=1", false, o, sizeof o, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_http_check_address("https://h.example.com/#f", false, o, sizeof o, &e), VKS_E_CONFIG);
    /* user info is refused and never echoed */
    cr_assert_eq(vks_http_check_address("https://user:pw-TEST-91ab-userinfo-password@h.example.com", false, o, sizeof o, &e),
                 VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "pw-TEST-91ab-userinfo-password") == NULL, "%s", e.msg);
}

Test(vault_pure, path_escaping_and_traversal)
{
    char u[128] = "https://h/v1/";
    size_t n = strlen(u);
    cr_assert(vks_http_append_path(u, sizeof u, &n, "smtp-auth/ex ample.com/a?b#c%d&e"));
    cr_assert_str_eq(u, "https://h/v1/smtp-auth/ex%20ample.com/a%3Fb%23c%25d%26e");
    n = 13;
    u[n] = '\0';
    cr_assert(vks_http_append_path(u, sizeof u, &n, "dkim//example.com/sel"));
    cr_assert_str_eq(u, "https://h/v1/dkim//example.com/sel");
    n = 13;
    cr_assert(vks_http_append_path(u, sizeof u, &n, "a/.hidden/..x/x..")); /* dots inside names are fine */
    n = 13;
    cr_assert_not(vks_http_append_path(u, sizeof u, &n, "a/../b"));
    cr_assert_not(vks_http_append_path(u, sizeof u, &n, ".."));
    cr_assert_not(vks_http_append_path(u, sizeof u, &n, "./a"));
    cr_assert_not(vks_http_append_path(u, sizeof u, &n, "a/."));
    char small[8] = "";
    size_t sn = 0;
    cr_assert_not(vks_http_append_path(small, sizeof small, &sn, "abcdefgh"));
    sn = 0;
    cr_assert_not(vks_http_append_path(small, sizeof small, &sn, "abc def"));
}

Test(vault_pure, config_defaults_from_an_empty_environment)
{
    clear_env();
    struct vks_vault_config c;
    struct vks_err e;
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(c.address, "https://127.0.0.1:8200");
    cr_assert_null(c.namespace_);
    cr_assert_eq(c.auth, VKS_AUTH_TOKEN);
    cr_assert_eq(c.token.len, 0);
    cr_assert_eq(c.timeout_ms, 60000);
    cr_assert_eq(c.max_retries, 2);
    cr_assert_eq(c.min_retry_wait_ms, 1000);
    cr_assert_eq(c.max_retry_wait_ms, 1500);
    cr_assert_eq(c.max_response_bytes, 1024 * 1024);
    cr_assert_not(c.skip_verify);
    cr_assert_not(c.allow_http);
    vks_vault_config_clear(&c);
}

Test(vault_pure, config_reads_every_variable)
{
    clear_env();
    setenv("VAULT_ADDR", "https://vault.example.com:8200", 1);
    setenv("VAULT_TOKEN", ENV_TOKEN, 1);
    setenv("VAULT_NAMESPACE", "team-a/", 1);
    setenv("VAULT_CACERT", "/etc/ca.pem", 1);
    setenv("VAULT_CAPATH", "/etc/cas", 1);
    setenv("VAULT_CLIENT_CERT", "/etc/c.pem", 1);
    setenv("VAULT_CLIENT_KEY", "/etc/k.pem", 1);
    setenv("VAULT_SKIP_VERIFY", "true", 1);
    setenv("VAULT_TLS_SERVER_NAME", "vault.internal", 1);
    setenv("VAULT_CLIENT_TIMEOUT", "1m30s", 1);
    setenv("VAULT_MAX_RETRIES", "5", 1);
    struct vks_vault_config c;
    struct vks_err e;
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(c.address, "https://vault.example.com:8200");
    cr_assert_eq(c.token.len, strlen(ENV_TOKEN));
    cr_assert(memcmp(c.token.data, ENV_TOKEN, c.token.len) == 0);
    cr_assert_str_eq(c.namespace_, "team-a/");
    cr_assert_str_eq(c.cacert, "/etc/ca.pem");
    cr_assert_str_eq(c.capath, "/etc/cas");
    cr_assert_str_eq(c.client_cert, "/etc/c.pem");
    cr_assert_str_eq(c.client_key, "/etc/k.pem");
    cr_assert(c.skip_verify);
    cr_assert_str_eq(c.tls_server_name, "vault.internal");
    cr_assert_eq(c.timeout_ms, 90000);
    cr_assert_eq(c.max_retries, 5);
    vks_vault_config_clear(&c);
    cr_assert_null(c.address);
    cr_assert_null(c.token.data);
}

Test(vault_pure, skip_verify_is_not_inverted)
{
    static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
    static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False" };
    struct vks_vault_config c;
    struct vks_err e;
    for (size_t i = 0; i < 6; i++) {
        clear_env();
        setenv("VAULT_SKIP_VERIFY", yes[i], 1);
        cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK);
        cr_assert(c.skip_verify, "%s must mean skip", yes[i]);
        vks_vault_config_clear(&c);
        setenv("VAULT_SKIP_VERIFY", no[i], 1);
        cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK);
        cr_assert_not(c.skip_verify, "%s must mean verify", no[i]);
        vks_vault_config_clear(&c);
    }
    setenv("VAULT_SKIP_VERIFY", "yes", 1);
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VAULT_SKIP_VERIFY") != NULL, "%s", e.msg);
}

Test(vault_pure, bad_values_name_the_variable)
{
    struct vks_vault_config c;
    struct vks_err e;
    static const struct { const char *var, *val; } bad[] = {
        { "VAULT_CLIENT_TIMEOUT", "soon" }, { "VAULT_CLIENT_TIMEOUT", "0" }, { "VAULT_CLIENT_TIMEOUT", "-5" },
        { "VAULT_CLIENT_TIMEOUT", "10x" },  { "VAULT_MAX_RETRIES", "-1" },   { "VAULT_MAX_RETRIES", "two" },
        { "VAULT_CLIENT_CERT", "/only/cert.pem" }, { "VKS_VAULT_ALLOW_HTTP", "maybe" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clear_env();
        setenv(bad[i].var, bad[i].val, 1);
        cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_E_CONFIG, "%s=%s accepted", bad[i].var, bad[i].val);
        cr_assert(strstr(e.msg, bad[i].var) != NULL, "message does not name %s: %s", bad[i].var, e.msg);
        cr_assert_null(c.address);
    }
}

Test(vault_pure, timeout_forms)
{
    static const struct { const char *val; long ms; } ok[] = {
        { "30", 30000 }, { "30s", 30000 }, { "1m", 60000 }, { "1m30s", 90000 }, { "500ms", 500 },
        { "1.5s", 1500 }, { "2h", 7200000 },
    };
    struct vks_vault_config c;
    struct vks_err e;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        clear_env();
        setenv("VAULT_CLIENT_TIMEOUT", ok[i].val, 1);
        cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s: %s", ok[i].val, e.msg);
        cr_assert_eq(c.timeout_ms, ok[i].ms, "%s gave %ld", ok[i].val, c.timeout_ms);
        vks_vault_config_clear(&c);
    }
}

Test(vault_pure, token_file_in_home_is_used_and_trimmed)
{
    clear_env();
    char dir[] = "/tmp/vks-home-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/.vault-token", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    const char content[] = "  " FILE_TOKEN "\n";
    cr_assert_eq(write(fd, content, sizeof content - 1), (ssize_t)(sizeof content - 1));
    close(fd);
    setenv("HOME", dir, 1);
    struct vks_vault_config c;
    struct vks_err e;
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(c.token.len, strlen(FILE_TOKEN));
    cr_assert(memcmp(c.token.data, FILE_TOKEN, c.token.len) == 0);
    vks_vault_config_clear(&c);
    /* VAULT_TOKEN wins over the file */
    setenv("VAULT_TOKEN", ENV_TOKEN, 1);
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert(memcmp(c.token.data, ENV_TOKEN, c.token.len) == 0);
    vks_vault_config_clear(&c);
    unlink(path);
    rmdir(dir);
}

Test(vault_pure, approle_from_environment)
{
    clear_env();
    setenv("VKS_APPROLE_ROLE_ID", "role-1234", 1);
    setenv("VKS_APPROLE_SECRET_ID_FILE", "/run/secrets/sid", 1);
    setenv("VKS_APPROLE_MOUNT", "approle-smtp", 1);
    struct vks_vault_config c;
    struct vks_err e;
    cr_assert_eq(vks_vault_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(c.auth, VKS_AUTH_APPROLE);
    cr_assert_str_eq(c.role_id, "role-1234");
    cr_assert_str_eq(c.secret_id_file, "/run/secrets/sid");
    cr_assert_str_eq(c.approle_mount, "approle-smtp");
    vks_vault_config_clear(&c);
}

Test(vault_pure, new_refuses_bad_addresses_without_crashing)
{
    static const char *const bad[] = { "not a url", "http://vault.example.com:8200", "ftp://x", "https://",
                                       "https://[::1", "unix:///tmp/s" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vks_vault_config c;
        vks_vault_config_defaults(&c);
        c.address = (char *)bad[i];
        struct vks_vault *v = NULL;
        struct vks_err e;
        cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_E_CONFIG, "%s accepted", bad[i]);
        cr_assert_null(v);
    }
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = (char *)"http://vault.example.com:8200";
    c.allow_http = true;
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(vks_vault_address(v), "http://vault.example.com:8200");
    vks_vault_free(v);
}

Test(vault_pure, read_refuses_bad_requests_before_any_network)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = (char *)"https://127.0.0.1:1"; /* nothing listens there; must not even be tried */
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    struct vks_kv_result r;
    struct { struct vks_kv_request rq; vks_status want; } cases[] = {
        { { .mount = "secret", .path = "a/../b" }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "" }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "/", .path = "x" }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "x", .kv_version = 3 }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "x", .address = "http://vault.example.com" }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "x", .address = "::bad::" }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "x", .version = -1 }, VKS_E_BAD_KEYSOURCE },
        { { .mount = "secret", .path = "x" }, VKS_E_AUTH_FAILED }, /* no token at all */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(vks_vault_kv_read(v, &cases[i].rq, &r, &e), cases[i].want, "case %zu: %s", i, e.msg);
        cr_assert_null(r.value.data);
        vks_kv_result_free(&r);
    }
    struct vks_vault_stats s;
    vks_vault_get_stats(v, &s);
    cr_assert_eq(s.requests, 0);
    vks_vault_free(v);
}
