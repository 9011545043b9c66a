/*
 * bench_cache: what a cache hit costs from C, how hits scale with threads, and the locked bytes a
 * cached 32-byte secret costs. A measurement, not a test (make bench; docs/benchmarks.md).
 *
 *  - hit latency: vks_cache_get on a cached entry (identity of a realistic Vault keysource) +
 *    vks_secret_free of the caller's copy + vks_cache_info_release; median and p99 over batches
 *    of 1000 lookups (goal: median <= 250 ns);
 *  - throughput: 1, 2, 4, 8 threads doing hits on 64 keys for 0.3 s each;
 *  - locked bytes per 32-byte secret: arena bytes in use for 10,000 cached 32-byte values
 *    (goal: <= 64).
 * The fetch function is in-process: this measures the cache, not Vault.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_cache.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static vks_status fetch32(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    (void)source;
    static const char v[33] = "bench-cache-32-byte-value-......";
    out->meta.kv_version = 2;
    return vks_secret_dup(v, 32, &out->value, err);
}

static const struct vks_cache_source_ops ops = { fetch32, NULL, NULL, NULL };

static void identity(char *buf, size_t n, int i)
{
    snprintf(buf, n, "vault\x1fhttps://vault.example.net:8200\x1f\x1f-\x1f" "2\x1fsecret\x1fsmtp-auth/relay%d.example.com\x1fkey\x1f" "0", i);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline int hit(const char *id)
{
    vks_secret v;
    struct vks_cache_info info;
    vks_status st = vks_cache_get(id, NULL, &ops, NULL, &v, &info, NULL);
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return st == VKS_OK && info.outcome == VKS_CACHE_HIT;
}

static atomic_bool go, halt;
static atomic_ullong total;

static void *worker(void *arg)
{
    int t = (int)(long)arg;
    char ids[64][160];
    for (int i = 0; i < 64; i++)
        identity(ids[i], sizeof ids[i], i);
    while (!atomic_load(&go))
        ;
    unsigned long long n = 0;
    int k = t;
    while (!atomic_load_explicit(&halt, memory_order_relaxed)) {
        for (int i = 0; i < 100; i++) {
            hit(ids[k & 63]);
            k += 7;
        }
        n += 100;
    }
    atomic_fetch_add(&total, n);
    return NULL;
}

int main(void)
{
    struct vks_cache_config c;
    vks_cache_config_defaults(&c);
    c.capacity = 20000;
    c.refresh_fraction = 1.0;
    struct vks_err e;
    if (vks_cache_configure(&c, &e) != VKS_OK) {
        fprintf(stderr, "configure: %s\n", e.msg);
        return 1;
    }
    char id[160];
    identity(id, sizeof id, 0);
    if (!hit(id) && !hit(id)) {
        fprintf(stderr, "no hit\n");
        return 1;
    }

    /* hit latency */
    enum { BATCHES = 300, PER = 1000 };
    static double ns[BATCHES];
    for (int i = 0; i < 20000; i++)
        hit(id);
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_s();
        for (int i = 0; i < PER; i++)
            hit(id);
        ns[b] = (now_s() - t0) * 1e9 / PER;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp_d);
    printf("cache hit from C (get + free copy + release info), identity %zu bytes: median %.0f ns, "
           "p99 %.0f ns (goal: median <= 250 ns)\n", strlen(id), ns[BATCHES / 2], ns[BATCHES * 99 / 100]);

    /* throughput */
    for (int i = 0; i < 64; i++) {
        identity(id, sizeof id, i);
        hit(id);
    }
    int counts[] = { 1, 2, 4, 8 };
    for (size_t ci = 0; ci < 4; ci++) {
        int nt = counts[ci];
        pthread_t th[8];
        atomic_store(&go, false);
        atomic_store(&halt, false);
        atomic_store(&total, 0);
        for (int i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, worker, (void *)(long)i);
        double t0 = now_s();
        atomic_store(&go, true);
        struct timespec d = { 0, 300 * 1000 * 1000 };
        nanosleep(&d, NULL);
        atomic_store(&halt, true);
        for (int i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        double el = now_s() - t0;
        printf("throughput, %d thread%s: %.2f M hits/s\n", nt, nt > 1 ? "s" : "",
               (double)atomic_load(&total) / el / 1e6);
    }

    /* locked bytes per cached 32-byte secret */
    vks_cache_flush();
    struct vks_secmem_status s0, s1;
    vks_secmem_get_status(&s0);
    for (int i = 0; i < 10000; i++) {
        identity(id, sizeof id, 1000 + i);
        hit(id);
    }
    vks_secmem_get_status(&s1);
    struct vks_cache_stats st;
    vks_cache_get_stats(&st);
    printf("locked bytes per cached 32-byte secret: %.1f (%zu values, %zu arena bytes; locked=%s) "
           "(goal: <= 64)\n", (double)(s1.in_use - s0.in_use) / (double)st.values, st.values,
           s1.in_use - s0.in_use, s1.locked ? "yes" : "no");
    vks_cache_shutdown();
    return 0;
}
