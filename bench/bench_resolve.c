/*
 * bench_resolve: the whole core lookup, cold (cache off: every call reads Vault), against
 * build/vault-dev over keep-alive HTTPS, next to a bare libcurl GET of the same URL in the same
 * run. "Whole" means vks_resolve as the Lua module calls it: keysource validation from fields,
 * runtime snapshot, Vault read, envelope check (or an ENC: decryption), restrictions, the audit
 * call, the value in an arena slot. Goal: median within 1.3x of the bare GET.
 *
 * Not a test: prints numbers (make bench; docs/benchmarks.md). Runs in a few seconds.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "vks_config.h"
#include "vks_curlmem.h"
#include "vks_envelope.h"
#include "vks_keysource.h"
#include "vks_resolver.h"

#define TOKEN "bench-token-RESOLVER-6d0f3b"
#define PASSWORD "bench-pw-RESOLVER-91a4c7"
#define ROUNDS 8
#define PER_ROUND 150

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

int main(void)
{
    /* cache off, audit off, one key for the ENC: case: all before the first lookup */
    setenv("VKS_CACHE_TTL", "0", 1);
    unsetenv("VKS_AUDIT_FILE");
    setenv("VKS_ENCRYPTION_KEY", "YmVuY2gta2V5LVJFU09MVkVSLTAxMjM0NTY3ODlhYmM=", 1);
    char dir[] = "/tmp/bench-resolve-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char addr[256], ca[600];
    pid_t pid = bench_vault_dev_start(dir, TOKEN, addr, sizeof addr, ca, sizeof ca);
    if (pid < 0) {
        printf("bench_resolve: build/vault-dev is not available, skipped\n");
        return 0;
    }
    /* initialise libcurl the way the module does (vks_curlmem's allocators), so both sides of the
     * comparison, and the before/after numbers in docs/benchmarks.md, include their cost */
    if (vks_curlmem_install() != VKS_CURLMEM_ACTIVE)
        printf("note: libcurl runs without vks_curlmem's allocators here\n");
    struct vks_err e;
    int rc = 1;

    /* an envelope of the same password, bound to its place */
    struct vks_keyring *kr = NULL;
    char *env = NULL;
    struct vks_envelope_place place = { "secret", "smtp-auth/enc.example", "password" };
    if (vks_keyring_load_env(&kr, &e) != VKS_OK ||
        vks_envelope_encrypt(kr, vks_keyring_primary_id(kr), &place, (const unsigned char *)PASSWORD,
                             strlen(PASSWORD), &env, &e) != VKS_OK) {
        printf("bench_resolve: %s\n", e.msg);
        goto out;
    }
    char json[1024];
    snprintf(json, sizeof json, "{\"data\":{\"password\":\"%s\"}}", env);
    if (bench_vault_put(addr, ca, TOKEN, "smtp-auth/example.com", "{\"data\":{\"password\":\"" PASSWORD "\"}}") != 0 ||
        bench_vault_put(addr, ca, TOKEN, "smtp-auth/enc.example", json) != 0) {
        printf("bench_resolve: could not seed vault-dev\n");
        goto out;
    }

    struct vks_config cfg;
    if (vks_config_from_env(&cfg, &e) != VKS_OK) {
        printf("bench_resolve: %s\n", e.msg);
        goto out;
    }
    struct vks_field opts[] = {
        { .name = "address", .type = VKS_FT_STRING, .str = addr, .len = strlen(addr) },
        { .name = "ca_cert", .type = VKS_FT_STRING, .str = ca, .len = strlen(ca) },
        { .name = "token", .type = VKS_FT_STRING, .str = TOKEN, .len = strlen(TOKEN) },
    };
    bool changed;
    for (size_t i = 0; i < 3; i++)
        vks_config_set(&cfg, &opts[i], &e);
    if (vks_config_finish(&cfg, &e) != VKS_OK || vks_resolver_setup(&cfg, &changed, &e) != VKS_OK) {
        printf("bench_resolve: %s\n", e.msg);
        vks_config_clear(&cfg);
        goto out;
    }
    vks_config_clear(&cfg);

    char url[600];
    snprintf(url, sizeof url, "%s/v1/secret/data/smtp-auth/example.com", addr);
    CURL *bare = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "X-Vault-Token: " TOKEN);
    h = curl_slist_append(h, "X-Vault-Request: true");
    curl_easy_setopt(bare, CURLOPT_URL, url);
    curl_easy_setopt(bare, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(bare, CURLOPT_CAINFO, ca);
    curl_easy_setopt(bare, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(bare, CURLOPT_WRITEFUNCTION, discard);

    const char *paths[2] = { "smtp-auth/example.com", "smtp-auth/enc.example" };
    static double tb[ROUNDS * PER_ROUND], tp[ROUNDS * PER_ROUND], te[ROUNDS * PER_ROUND];
    int n = 0, failures = 0;
    for (int round = -1; round < ROUNDS; round++) { /* round -1: warm-up */
        for (int i = 0; i < PER_ROUND; i++) {
            double t0 = bench_now_us();
            if (curl_easy_perform(bare) != CURLE_OK)
                failures++;
            double t1 = bench_now_us();
            double tt[2];
            for (int k = 0; k < 2; k++) {
                struct vks_field f[] = {
                    { .name = "vault_mount", .type = VKS_FT_STRING, .str = "secret", .len = 6 },
                    { .name = "vault_path", .type = VKS_FT_STRING, .str = paths[k], .len = strlen(paths[k]) },
                    { .name = "vault_key", .type = VKS_FT_STRING, .str = "password", .len = 8 },
                };
                double s0 = bench_now_us();
                struct vks_keysource ks;
                vks_secret v = VKS_SECRET_EMPTY;
                vks_status st = vks_keysource_from_fields(f, 3, &ks, &e);
                if (st == VKS_OK) {
                    struct vks_resolve_req rq = { .api = "resolve", .ks = &ks };
                    st = vks_resolve(&rq, &v, NULL, &e);
                }
                if (st != VKS_OK || v.len != strlen(PASSWORD) || memcmp(v.data, PASSWORD, v.len) != 0)
                    failures++;
                vks_secret_free(&v);
                vks_keysource_clear(&ks);
                tt[k] = bench_now_us() - s0;
            }
            if (round >= 0) {
                tb[n] = t1 - t0;
                tp[n] = tt[0];
                te[n] = tt[1];
                n++;
            }
        }
    }
    double mb = bench_median(tb, n), mp = bench_median(tp, n), me = bench_median(te, n);
    printf("cold lookup through vks_resolve (cache off, keep-alive HTTPS to vault-dev), %d samples each:\n", n);
    printf("  bare libcurl GET of the same URL:  median %7.1f us\n", mb);
    printf("  vks_resolve, plaintext value:      median %7.1f us  (%.2fx the bare GET; goal <= 1.3x)\n", mp, mp / mb);
    printf("  vks_resolve, ENC: value decrypted: median %7.1f us  (%.2fx the bare GET)\n", me, me / mb);
    printf("  failures: %d\n", failures);
    curl_slist_free_all(h);
    curl_easy_cleanup(bare);
    vks_resolver_shutdown();
    rc = failures == 0 ? 0 : 1;
out:
    free(env);
    vks_keyring_free(kr);
    bench_vault_dev_stop(pid);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
