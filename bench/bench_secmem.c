/*
 * bench_secmem: cost of the locked arena. A measurement, not a test: prints numbers and the goals
 * they are compared with (docs/benchmarks.md). Runs in a few seconds.
 *
 *   alloc+free and dup+free of a 32-byte secret (median ns per pair over many batches)
 *   alloc+free throughput with 1, 2, 4 and 8 threads sharing the one arena (one mutex)
 *   vks_wipe(64), vks_ct_equal(32), vks_secmem_generation()
 *   locked bytes per 32-byte secret (size class, and region bytes carved / secrets for 100,000)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_secmem.h"

#define BATCHES 61
#define PER_BATCH 20000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static volatile unsigned sink;

enum op { OP_ALLOC_FREE, OP_DUP_FREE, OP_WIPE, OP_CT_EQUAL, OP_GENERATION };

static void run_op(enum op op, int n)
{
    static const unsigned char src[64] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde";
    unsigned char buf[64], other[64];
    memcpy(other, src, sizeof other);
    struct vks_err e;
    vks_secret s;
    for (int i = 0; i < n; i++) {
        switch (op) {
        case OP_ALLOC_FREE:
            if (vks_secret_alloc(32, &s, &e) != VKS_OK)
                abort();
            s.data[0] = 1;
            vks_secret_free(&s);
            break;
        case OP_DUP_FREE:
            if (vks_secret_dup(src, 32, &s, &e) != VKS_OK)
                abort();
            vks_secret_free(&s);
            break;
        case OP_WIPE:
            buf[i & 63] = (unsigned char)i;
            vks_wipe(buf, sizeof buf);
            sink += buf[5];
            break;
        case OP_CT_EQUAL:
            sink += vks_ct_equal(src, other, 32);
            break;
        case OP_GENERATION:
            sink += (unsigned)vks_secmem_generation();
            break;
        }
    }
}

static double median_ns(enum op op)
{
    double t[BATCHES];
    run_op(op, PER_BATCH); /* warm up */
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        run_op(op, PER_BATCH);
        t[b] = (now_ns() - t0) / PER_BATCH;
    }
    qsort(t, BATCHES, sizeof t[0], cmp_double);
    return t[BATCHES / 2];
}

struct thr {
    int n;
    pthread_t t;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    run_op(OP_ALLOC_FREE, t->n);
    return NULL;
}

static double throughput(int nthreads, int per_thread)
{
    struct thr t[8];
    double t0 = now_ns();
    for (int i = 0; i < nthreads; i++) {
        t[i].n = per_thread;
        pthread_create(&t[i].t, NULL, thr_main, &t[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i].t, NULL);
    double secs = (now_ns() - t0) / 1e9;
    return (double)nthreads * per_thread / secs / 1e6;
}

int main(void)
{
    struct vks_err e;
    if (vks_secmem_init(NULL, &e) != VKS_OK) {
        fprintf(stderr, "init: %s\n", e.msg);
        return 1;
    }
    struct vks_secmem_status st;
    vks_secmem_get_status(&st);
    printf("arena: %zu bytes, locked=%d dontdump=%d guard_pages=%d wipe_on_fork=%d\n", st.capacity, st.locked,
           st.dontdump, st.guard_pages, st.wipe_on_fork);

    printf("alloc+free 32 B            median %7.1f ns/pair\n", median_ns(OP_ALLOC_FREE));
    printf("dup+free 32 B              median %7.1f ns/pair\n", median_ns(OP_DUP_FREE));
    printf("vks_wipe 64 B              median %7.1f ns\n", median_ns(OP_WIPE));
    printf("vks_ct_equal 32 B          median %7.1f ns\n", median_ns(OP_CT_EQUAL));
    printf("vks_secmem_generation      median %7.1f ns\n", median_ns(OP_GENERATION));

    for (int n = 1; n <= 8; n *= 2)
        printf("alloc+free throughput, %d thread%s: %6.2f M pairs/s\n", n, n == 1 ? " " : "s",
               throughput(n, 400000 / n));

    enum { N = 100000 };
    vks_secret *s = calloc(N, sizeof *s);
    const void *data;
    size_t len;
    vks_secmem_region(&data, &len);
    uintptr_t hi = 0;
    unsigned char v[32];
    for (int i = 0; i < N; i++) {
        memset(v, i, sizeof v);
        if (vks_secret_dup(v, sizeof v, &s[i], &e) != VKS_OK) {
            fprintf(stderr, "dup %d: %s\n", i, e.msg);
            return 1;
        }
        uintptr_t end = (uintptr_t)s[i].data + s[i].cap;
        if (end > hi)
            hi = end;
    }
    vks_secmem_get_status(&st);
    size_t carved = (hi - (uintptr_t)data + 4095) / 4096 * 4096;
    printf("locked bytes per 32-byte secret: %.1f (size class %zu; %d secrets use %zu bytes of slots, "
           "%zu bytes of region)  goal <= 64\n",
           (double)carved / N, vks_secmem_class_size(32), N, st.in_use, carved);
    printf("100,000 x 64-byte secrets need %zu bytes of a %zu-byte default arena (8 MiB memlock limit)\n",
           (size_t)N * vks_secmem_class_size(64), st.capacity);
    for (int i = 0; i < N; i++)
        vks_secret_free(&s[i]);
    free(s);
    return 0;
}
