/*
 * bench_vault: a cold lookup (no cache: vks_vault_kv_read, KV v2, keep-alive HTTPS) against
 * build/vault-dev, compared in the same run with a bare libcurl GET of the same URL on one reused
 * easy handle (same headers, body into a malloc'd buffer). Goal: our median within 1.3x of the bare
 * median. Also shows that lookups 2..N reuse the connection (CURLINFO_NUM_CONNECTS summed).
 *
 * Not a test: it prints numbers. Runs well under a minute.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "vks_curlmem.h"
#include "vks_vault.h"

#define ROOT_TOKEN "root-token-vault-TEST-5e8a1c"
#define PASSWORD "smtp-pass-TEST-bench-2c9d"
#define N_ROUNDS 10
#define N_PER_ROUND 200

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct buf {
    char *p;
    size_t n;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    b->p = q;
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    return n;
}

int main(void)
{
    char dir[] = "/tmp/bench-vault-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char addr[256], ca[600];
    pid_t pid = bench_vault_dev_start(dir, ROOT_TOKEN, addr, sizeof addr, ca, sizeof ca);
    if (pid < 0) {
        printf("bench_vault: build/vault-dev is not available, skipped\n");
        return 0;
    }
    /* initialise libcurl the way the module does (vks_curlmem's allocators), so both sides of the
     * comparison, and the before/after numbers in docs/benchmarks.md, include their cost */
    if (vks_curlmem_install() != VKS_CURLMEM_ACTIVE)
        printf("note: libcurl runs without vks_curlmem's allocators here\n");
    char url[512];
    snprintf(url, sizeof url, "%s/v1/secret/data/smtp-auth/example.com", addr);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "X-Vault-Token: " ROOT_TOKEN);
    h = curl_slist_append(h, "X-Vault-Request: true");
    h = curl_slist_append(h, "Content-Type: application/json");

    /* seed the secret */
    CURL *w = curl_easy_init();
    curl_easy_setopt(w, CURLOPT_URL, url);
    curl_easy_setopt(w, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(w, CURLOPT_CAINFO, ca);
    curl_easy_setopt(w, CURLOPT_POSTFIELDS, "{\"data\":{\"password\":\"" PASSWORD "\"}}");
    struct buf sink = { NULL, 0 };
    curl_easy_setopt(w, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(w, CURLOPT_WRITEDATA, &sink);
    if (curl_easy_perform(w) != CURLE_OK) {
        printf("bench_vault: could not seed the secret\n");
        bench_vault_dev_stop(pid);
        return 1;
    }
    curl_easy_cleanup(w);
    free(sink.p);

    /* bare libcurl: one easy handle, keep-alive */
    CURL *bare = curl_easy_init();
    curl_easy_setopt(bare, CURLOPT_URL, url);
    curl_easy_setopt(bare, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(bare, CURLOPT_CAINFO, ca);
    curl_easy_setopt(bare, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(bare, CURLOPT_WRITEFUNCTION, collect);

    /* ours */
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(addr);
    c.cacert = strdup(ca);
    struct vks_err e;
    if (vks_secret_dup(ROOT_TOKEN, strlen(ROOT_TOKEN), &c.token, &e) != VKS_OK) {
        printf("bench_vault: %s\n", e.msg);
        bench_vault_dev_stop(pid);
        return 1;
    }
    struct vks_vault *v = NULL;
    if (vks_vault_new(&c, &v, &e) != VKS_OK) {
        printf("bench_vault: %s\n", e.msg);
        bench_vault_dev_stop(pid);
        return 1;
    }
    vks_vault_config_clear(&c);
    struct vks_kv_request rq = { .mount = "secret", .path = "smtp-auth/example.com", .key = "password",
                                 .kv_version = 2 };

    enum { N = N_ROUNDS * N_PER_ROUND };
    static double t_bare[N], t_ours[N];
    int nb = 0, no = 0, failures = 0;
    long bare_connects = 0;
    /* warm-up both (TLS handshake, lookup-self) */
    for (int i = 0; i < 20; i++) {
        struct buf b = { NULL, 0 };
        curl_easy_setopt(bare, CURLOPT_WRITEDATA, &b);
        curl_easy_perform(bare);
        free(b.p);
        struct vks_kv_result r;
        if (vks_vault_kv_read(v, &rq, &r, &e) != VKS_OK)
            failures++;
        vks_kv_result_free(&r);
    }
    struct vks_vault_stats s0;
    vks_vault_get_stats(v, &s0);
    for (int round = 0; round < N_ROUNDS; round++) {
        for (int i = 0; i < N_PER_ROUND; i++) {
            struct buf b = { NULL, 0 };
            curl_easy_setopt(bare, CURLOPT_WRITEDATA, &b);
            double t0 = bench_now_us();
            CURLcode rc = curl_easy_perform(bare);
            t_bare[nb++] = bench_now_us() - t0;
            long nc = 0;
            curl_easy_getinfo(bare, CURLINFO_NUM_CONNECTS, &nc);
            bare_connects += nc;
            if (rc != CURLE_OK)
                failures++;
            free(b.p);
        }
        for (int i = 0; i < N_PER_ROUND; i++) {
            struct vks_kv_result r;
            double t0 = bench_now_us();
            vks_status st = vks_vault_kv_read(v, &rq, &r, &e);
            t_ours[no++] = bench_now_us() - t0;
            if (st != VKS_OK || r.value.len != strlen(PASSWORD))
                failures++;
            vks_kv_result_free(&r);
        }
    }
    struct vks_vault_stats s1;
    vks_vault_get_stats(v, &s1);
    qsort(t_bare, (size_t)nb, sizeof(double), cmp);
    qsort(t_ours, (size_t)no, sizeof(double), cmp);
    double mb = t_bare[nb / 2], mo = t_ours[no / 2];
    printf("bench_vault: cold KV v2 lookup over keep-alive HTTPS to vault-dev, %d each, interleaved\n", N);
    printf("  bare libcurl GET : median %8.1f us   p90 %8.1f us\n", mb, t_bare[nb * 9 / 10]);
    printf("  vks_vault_kv_read: median %8.1f us   p90 %8.1f us\n", mo, t_ours[no * 9 / 10]);
    printf("  ratio (median)   : %.2fx   goal <= 1.30x   %s\n", mo / mb, mo / mb <= 1.3 ? "MET" : "NOT MET");
    printf("  connections: ours opened %lu in total (warm-up included), %lu during the timed lookups; "
           "bare opened %ld during its timed GETs (0 = the warm connection was reused every time)\n",
           s1.connects, s1.connects - s0.connects, bare_connects);
    printf("  requests sent by ours: %lu for %d lookups; failures: %d\n", s1.requests - s0.requests, N, failures);
    vks_vault_free(v);
    curl_easy_cleanup(bare);
    curl_slist_free_all(h);
    bench_vault_dev_stop(pid);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_vault: could not remove %s\n", dir);
    return 0;
}
