/* libcurl's allocators: wipe on free, big buffers in MADV_DONTDUMP mappings. See vks_curlmem.h. */
#include "vks_curlmem.h"

#include <curl/curl.h>
#include <curl/mprintf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vks_secmem.h"

/* 16 bytes in front of every block, so the block stays 16-byte aligned like malloc's. */
struct hdr {
    size_t size;      /* bytes asked for                                           */
    uint32_t magic;   /* MAGIC ^ the header's address: tells our blocks from others */
    uint32_t mapped;  /* 1 = the block is its own mapping (header at its start)    */
};
_Static_assert(sizeof(struct hdr) == 16, "header must keep 16-byte alignment");

#define MAGIC 0x7c3a91e5u

static atomic_ulong g_allocs, g_frees, g_mapped, g_foreign;
static atomic_size_t g_live;
static _Atomic int g_state = VKS_CURLMEM_NOT_TRIED;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static uint32_t magic_for(const struct hdr *h)
{
    uintptr_t a = (uintptr_t)h;
    return MAGIC ^ (uint32_t)(a >> 4) ^ (uint32_t)(a >> 36);
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static size_t map_len(size_t n)
{
    size_t pg = page_size();
    return (n + sizeof(struct hdr) + pg - 1) / pg * pg;
}

void *vks_curlmem_malloc(size_t n)
{
    if (n > SIZE_MAX - sizeof(struct hdr) - page_size())
        return NULL;
    struct hdr *h;
    uint32_t mapped = 0;
    if (n >= VKS_CURLMEM_MMAP_MIN) {
        size_t len = map_len(n);
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        /* best effort: a kernel without one of these still gets a working (wiped) buffer */
        (void)madvise(m, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
        (void)madvise(m, len, MADV_WIPEONFORK);
#endif
        h = m;
        mapped = 1;
        atomic_fetch_add_explicit(&g_mapped, 1, memory_order_relaxed);
    } else {
        h = malloc(sizeof *h + n);
        if (!h)
            return NULL;
    }
    h->size = n;
    h->magic = magic_for(h);
    h->mapped = mapped;
    atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_live, n, memory_order_relaxed);
    return h + 1;
}

static struct hdr *header_of(void *p)
{
    struct hdr *h = (struct hdr *)p - 1;
    return h->magic == magic_for(h) ? h : NULL;
}

void vks_curlmem_free(void *p)
{
    if (!p)
        return;
    struct hdr *h = header_of(p);
    if (!h) {
        /* not ours: allocated by libcurl with the C library's malloc before our allocators were
         * installed (see the docs); give it back where it came from */
        atomic_fetch_add_explicit(&g_foreign, 1, memory_order_relaxed);
        free(p);
        return;
    }
    size_t n = h->size;
    atomic_fetch_add_explicit(&g_frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_live, n, memory_order_relaxed);
    if (h->mapped) {
        size_t len = map_len(n);
        vks_wipe(h, len);
        munmap(h, len);
    } else {
        vks_wipe(h, sizeof *h + n);
        free(h);
    }
}

size_t vks_curlmem_size(const void *p)
{
    if (!p)
        return 0;
    const struct hdr *h = (const struct hdr *)p - 1;
    return h->magic == magic_for(h) ? h->size : 0;
}

void *vks_curlmem_realloc(void *p, size_t n)
{
    if (!p)
        return vks_curlmem_malloc(n);
    if (n == 0) {
        vks_curlmem_free(p);
        return NULL;
    }
    struct hdr *h = header_of(p);
    if (!h) {
        /* a foreign block: we do not know its size, so the C library must move it (unwiped) */
        atomic_fetch_add_explicit(&g_foreign, 1, memory_order_relaxed);
        return realloc(p, n);
    }
    if (n <= h->size && (h->mapped || n + 64 > h->size)) {
        /* shrinking in place (or by a little): keep the block, wipe the tail now unused */
        if (n < h->size)
            vks_wipe((unsigned char *)p + n, h->size - n);
        if (!h->mapped) {
            atomic_fetch_sub_explicit(&g_live, h->size - n, memory_order_relaxed);
            h->size = n;
        }
        return p;
    }
    void *q = vks_curlmem_malloc(n);
    if (!q)
        return NULL; /* p stays valid, as realloc requires */
    memcpy(q, p, n < h->size ? n : h->size);
    vks_curlmem_free(p);
    return q;
}

char *vks_curlmem_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = vks_curlmem_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *vks_curlmem_calloc(size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    size_t n = nmemb * size;
    void *p = vks_curlmem_malloc(n);
    if (p && n < VKS_CURLMEM_MMAP_MIN) /* fresh mappings are already zero */
        memset(p, 0, n);
    return p;
}

static void install_once(void)
{
    unsigned long before = atomic_load(&g_allocs);
    CURLcode rc = curl_global_init_mem(CURL_GLOBAL_DEFAULT, vks_curlmem_malloc, vks_curlmem_free,
                                       vks_curlmem_realloc, vks_curlmem_strdup, vks_curlmem_calloc);
    if (rc != CURLE_OK) {
        atomic_store(&g_state, VKS_CURLMEM_FAILED);
        return;
    }
    /* libcurl keeps the allocators of whoever initialised it first: allocate through it to see */
    char *probe = curl_maprintf("%s", "vks-curlmem-probe");
    if (!probe) {
        atomic_store(&g_state, VKS_CURLMEM_FAILED);
        return;
    }
    curl_free(probe);
    atomic_store(&g_state, atomic_load(&g_allocs) != before ? VKS_CURLMEM_ACTIVE : VKS_CURLMEM_FOREIGN);
}

enum vks_curlmem_state vks_curlmem_install(void)
{
    pthread_once(&g_once, install_once);
    return (enum vks_curlmem_state)atomic_load(&g_state);
}

enum vks_curlmem_state vks_curlmem_state(void)
{
    return (enum vks_curlmem_state)atomic_load(&g_state);
}

void vks_curlmem_get_stats(struct vks_curlmem_stats *out)
{
    if (!out)
        return;
    out->allocs = atomic_load_explicit(&g_allocs, memory_order_relaxed);
    out->frees = atomic_load_explicit(&g_frees, memory_order_relaxed);
    out->mapped = atomic_load_explicit(&g_mapped, memory_order_relaxed);
    out->foreign_frees = atomic_load_explicit(&g_foreign, memory_order_relaxed);
    out->live_bytes = atomic_load_explicit(&g_live, memory_order_relaxed);
}

/* ------------------------------------------------------------------ vector registers */

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"), noinline)) static void zero_zmm16_31(void)
{
    __asm__ volatile("vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
                     "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
                     "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
                     "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
                     "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
                     "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
                     "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
                     "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31"
                     ::: "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
                         "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

__attribute__((target("avx512f"), noinline)) static void zero_zmm0_15(void)
{
    /* vzeroall leaves bits 511:256 of zmm0-15 alone; vpxord clears the whole register */
    __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0\n\tvpxord %%zmm1, %%zmm1, %%zmm1\n\t"
                     "vpxord %%zmm2, %%zmm2, %%zmm2\n\tvpxord %%zmm3, %%zmm3, %%zmm3\n\t"
                     "vpxord %%zmm4, %%zmm4, %%zmm4\n\tvpxord %%zmm5, %%zmm5, %%zmm5\n\t"
                     "vpxord %%zmm6, %%zmm6, %%zmm6\n\tvpxord %%zmm7, %%zmm7, %%zmm7\n\t"
                     "vpxord %%zmm8, %%zmm8, %%zmm8\n\tvpxord %%zmm9, %%zmm9, %%zmm9\n\t"
                     "vpxord %%zmm10, %%zmm10, %%zmm10\n\tvpxord %%zmm11, %%zmm11, %%zmm11\n\t"
                     "vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "vpxord %%zmm14, %%zmm14, %%zmm14\n\tvpxord %%zmm15, %%zmm15, %%zmm15"
                     ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                         "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

__attribute__((target("avx"), noinline)) static void zero_ymm0_15(void)
{
    __asm__ volatile("vzeroall" ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                     "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

__attribute__((noinline)) static void zero_xmm0_15(void)
{
    __asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
                     "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
                     "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
                     "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
                     "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
                     "pxor %%xmm15, %%xmm15"
                     ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                         "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

void vks_curlmem_scrub_registers(void)
{
    if (__builtin_cpu_supports("avx512f")) {
        zero_zmm0_15();
        zero_zmm16_31();
    } else if (__builtin_cpu_supports("avx")) {
        zero_ymm0_15();
    } else {
        zero_xmm0_15();
    }
}
#else
void vks_curlmem_scrub_registers(void)
{
}
#endif
