/*
 * Unit tests of libcurl's allocators (src/vks_curlmem.c). Criterion runs every test in its own
 * process, so each test decides for itself whether libcurl is initialised before us or by us.
 * The core-dump proof is tests/integration/40-cache-core.sh.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vks_curlmem.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* The VmFlags line of the /proc/self/smaps entry that contains addr ("" when none). */
static void vmflags_of(const void *addr, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool inside = false;
    out[0] = '\0';
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, cap, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static bool has_flag(const char *flags, const char *flag)
{
    char pad[600];
    snprintf(pad, sizeof pad, " %s ", flags);
    char want[8];
    snprintf(want, sizeof want, " %s ", flag);
    for (char *p = pad; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return strstr(pad, want) != NULL;
}

Test(curlmem, small_and_large_blocks_record_their_size)
{
    unsigned char *s = vks_curlmem_malloc(100);
    unsigned char *l = vks_curlmem_malloc(VKS_CURLMEM_MMAP_MIN + 1);
    cr_assert(s && l);
    cr_assert_eq((uintptr_t)s % 16, 0, "small blocks are 16-byte aligned");
    cr_assert_eq((uintptr_t)l % 16, 0, "large blocks are 16-byte aligned");
    cr_assert_eq(vks_curlmem_size(s), 100);
    cr_assert_eq(vks_curlmem_size(l), VKS_CURLMEM_MMAP_MIN + 1);
    memset(s, 0xab, 100);
    memset(l, 0xcd, VKS_CURLMEM_MMAP_MIN + 1);
    struct vks_curlmem_stats st;
    vks_curlmem_get_stats(&st);
    cr_assert_eq(st.allocs, 2);
    cr_assert_eq(st.mapped, 1);
    cr_assert_eq(st.live_bytes, 100 + VKS_CURLMEM_MMAP_MIN + 1);
    vks_curlmem_free(s);
    vks_curlmem_free(l);
    vks_curlmem_free(NULL);
    vks_curlmem_get_stats(&st);
    cr_assert_eq(st.frees, 2);
    cr_assert_eq(st.live_bytes, 0);
    cr_assert_eq(st.foreign_frees, 0);
}

Test(curlmem, large_blocks_are_dontdump_and_wipeonfork_small_ones_are_not)
{
    unsigned char *l = vks_curlmem_malloc(65536); /* curl's upload buffer */
    unsigned char *r = vks_curlmem_malloc(16385); /* curl's receive buffer */
    unsigned char *s = vks_curlmem_malloc(4000);
    cr_assert(l && r && s);
    char flags[512];
    vmflags_of(l, flags, sizeof flags);
    cr_assert(has_flag(flags, "dd"), "64 KiB block: VmFlags '%s' lacks dd", flags);
#ifdef MADV_WIPEONFORK
    cr_assert(has_flag(flags, "wf"), "64 KiB block: VmFlags '%s' lacks wf", flags);
#endif
    vmflags_of(r, flags, sizeof flags);
    cr_assert(has_flag(flags, "dd"), "16385-byte block: VmFlags '%s' lacks dd", flags);
    vmflags_of(s, flags, sizeof flags);
    cr_assert_not(has_flag(flags, "dd"), "a small block is ordinary heap, VmFlags '%s'", flags);
    vks_curlmem_free(l);
    vks_curlmem_free(r);
    vks_curlmem_free(s);
}

Test(curlmem, a_forked_child_sees_a_wiped_large_block_and_can_free_it)
{
    unsigned char *l = vks_curlmem_malloc(20000);
    cr_assert_not_null(l);
    memset(l, 0x77, 20000);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        size_t left = 0;
        for (size_t i = 0; i < 20000; i++)
            left += l[i] == 0x77;
#ifdef MADV_WIPEONFORK
        if (left != 0)
            _exit(2);
#endif
        if (vks_curlmem_size(l) != 20000)
            _exit(3);
        vks_curlmem_free(l);
        struct vks_curlmem_stats st;
        vks_curlmem_get_stats(&st);
        _exit(st.foreign_frees == 0 && st.live_bytes == 0 ? 0 : 4);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the child crashed freeing the block");
    cr_assert_eq(WEXITSTATUS(status), 0, "child: 2 = content survived fork, 3 = header lost, 4 = bad free");
    cr_assert_eq(l[19999], 0x77, "the parent keeps its content");
    vks_curlmem_free(l);
}

Test(curlmem, realloc_growth_keeps_content_across_the_threshold)
{
    size_t n = 10;
    unsigned char *p = vks_curlmem_malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + 1);
    /* grow like a dynbuf: small -> bigger small -> mapped -> bigger mapped */
    size_t sizes[] = { 100, 5000, VKS_CURLMEM_MMAP_MIN + 100, 200000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *q = vks_curlmem_realloc(p, sizes[k]);
        cr_assert_not_null(q);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(q[i], (unsigned char)(i * 7 + 1), "byte %zu lost growing to %zu", i, sizes[k]);
        for (size_t i = n; i < sizes[k]; i++)
            q[i] = (unsigned char)(i * 7 + 1);
        cr_assert_eq(vks_curlmem_size(q), sizes[k]);
        n = sizes[k];
        p = q;
    }
    /* shrink: content up to the new size stays */
    unsigned char *q = vks_curlmem_realloc(p, 50);
    cr_assert_not_null(q);
    for (size_t i = 0; i < 50; i++)
        cr_assert_eq(q[i], (unsigned char)(i * 7 + 1));
    cr_assert_null(vks_curlmem_realloc(q, 0), "realloc(p, 0) frees");
    struct vks_curlmem_stats st;
    vks_curlmem_get_stats(&st);
    cr_assert_eq(st.live_bytes, 0);
    cr_assert_eq(st.allocs, st.frees);
    unsigned char *fresh = vks_curlmem_realloc(NULL, 30);
    cr_assert_eq(vks_curlmem_size(fresh), 30);
    vks_curlmem_free(fresh);
}

Test(curlmem, calloc_zeroes_and_refuses_overflow_strdup_copies)
{
    unsigned char *z = vks_curlmem_calloc(100, 3);
    cr_assert_not_null(z);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(z[i], 0);
    unsigned char *zl = vks_curlmem_calloc(1, 70000);
    cr_assert_not_null(zl);
    for (int i = 0; i < 70000; i++)
        cr_assert_eq(zl[i], 0);
    cr_assert_null(vks_curlmem_calloc(SIZE_MAX / 2, 4));
    cr_assert_null(vks_curlmem_malloc(SIZE_MAX - 8));
    char *d = vks_curlmem_strdup("keep-alive");
    cr_assert_str_eq(d, "keep-alive");
    cr_assert_eq(vks_curlmem_size(d), 11);
    vks_curlmem_free(z);
    vks_curlmem_free(zl);
    vks_curlmem_free(d);
}

Test(curlmem, free_wipes_a_small_block)
{
    if (UNDER_ASAN)
        cr_skip_test("reads freed memory on purpose; not under AddressSanitizer");
    /* 1000 bytes: a tcache-sized chunk that glibc neither coalesces nor returns; glibc writes
     * only its list pointers into the chunk's first 16 bytes (our header) */
    volatile unsigned char *p = vks_curlmem_malloc(1000);
    cr_assert_not_null(p);
    memset((void *)p, 0x5a, 1000);
    vks_curlmem_free((void *)p);
    size_t left = 0;
    for (size_t i = 0; i < 1000; i++)
        left += p[i] == 0x5a;
    cr_assert_eq(left, 0, "%zu bytes of a freed block still hold their content", left);
}

Test(curlmem, realloc_wipes_the_old_block)
{
    if (UNDER_ASAN)
        cr_skip_test("reads freed memory on purpose; not under AddressSanitizer");
    volatile unsigned char *p = vks_curlmem_malloc(1000);
    cr_assert_not_null(p);
    memset((void *)p, 0x6b, 1000);
    unsigned char *q = vks_curlmem_realloc((void *)p, 3000);
    cr_assert_not_null(q);
    cr_assert_neq((void *)q, (void *)p, "growth always moves");
    size_t left = 0;
    for (size_t i = 0; i < 1000; i++)
        left += p[i] == 0x6b;
    cr_assert_eq(left, 0, "%zu bytes of the old block still hold their content", left);
    cr_assert_eq(q[999], 0x6b);
    vks_curlmem_free(q);
}

Test(curlmem, a_pointer_from_plain_malloc_goes_back_to_free)
{
    if (UNDER_ASAN)
        cr_skip_test("reads malloc's chunk header on purpose; not under AddressSanitizer");
    vks_curlmem_free(malloc(64));
    struct vks_curlmem_stats st;
    vks_curlmem_get_stats(&st);
    cr_assert_eq(st.foreign_frees, 1);
    cr_assert_eq(st.frees, 0);
}

Test(curlmem, install_routes_libcurl_through_us)
{
    cr_assert_eq(vks_curlmem_state(), VKS_CURLMEM_NOT_TRIED);
    cr_assert_eq(vks_curlmem_install(), VKS_CURLMEM_ACTIVE);
    cr_assert_eq(vks_curlmem_install(), VKS_CURLMEM_ACTIVE, "a second call returns the first result");
    struct vks_curlmem_stats a, b;
    vks_curlmem_get_stats(&a);
    CURL *e = curl_easy_init();
    cr_assert_not_null(e);
    curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:1/x");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vault-keysource/1");
    vks_curlmem_get_stats(&b);
    cr_assert_gt(b.allocs, a.allocs, "curl_easy_init allocated through our allocators");
    cr_assert_gt(b.live_bytes, a.live_bytes);
    curl_easy_cleanup(e);
    vks_curlmem_get_stats(&b);
    cr_assert_eq(b.live_bytes, a.live_bytes, "curl_easy_cleanup gave every byte back");
    cr_assert_eq(b.foreign_frees, 0);
}

Test(curlmem, a_host_that_initialised_libcurl_first_is_detected)
{
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    cr_assert_eq(vks_curlmem_install(), VKS_CURLMEM_FOREIGN);
    struct vks_curlmem_stats a, b;
    vks_curlmem_get_stats(&a);
    CURL *e = curl_easy_init();
    cr_assert_not_null(e);
    curl_easy_cleanup(e);
    vks_curlmem_get_stats(&b);
    cr_assert_eq(b.allocs, a.allocs, "libcurl kept the host's allocators");
}

#define THREADS 4
#define ROUNDS 2000

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % (r % 50 == 0 ? 70000 : 2000) + 1;
        unsigned char *p = vks_curlmem_malloc(n);
        if (!p)
            return (void *)1;
        memset(p, (int)(seed & 0xff), n);
        p = vks_curlmem_realloc(p, n * 2);
        if (!p || p[n - 1] != (unsigned char)(seed & 0xff))
            return (void *)1;
        vks_curlmem_free(p);
    }
    return NULL;
}

Test(curlmem, threads_allocate_and_free_concurrently)
{
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        cr_assert_null(rc, "thread %d saw a bad block", i);
    }
    struct vks_curlmem_stats st;
    vks_curlmem_get_stats(&st);
    cr_assert_eq(st.live_bytes, 0);
    cr_assert_eq(st.allocs, st.frees);
    cr_assert_eq(st.allocs, (unsigned long)THREADS * ROUNDS * 2);
}

Test(curlmem, scrub_registers_is_callable)
{
    /* what it clears is proven by the core dump in tests/integration/40-cache-core.sh */
    vks_curlmem_scrub_registers();
    char buf[64];
    snprintf(buf, sizeof buf, "%g", 1.5);
    cr_assert_str_eq(buf, "1.5", "floating point still works after the scrub");
}
