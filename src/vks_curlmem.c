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
    uint32_t mapped;  /* 1 = the block is its own mapping (header ends page 1)     */
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

/* A large block: one page whose last 16 bytes are the header, then the data pages. The header
 * page is not wipe-on-fork, so a forked child that frees the block still finds its size. */
static size_t map_len(size_t n)
{
    size_t pg = page_size();
    return pg + (n + pg - 1) / pg * pg;
}

/* libcurl 7.88 allocates (and frees) its receive buffer and a 64 KiB buffer on every transfer:
 * freed mappings, wiped, are kept in a small pool for the next allocation of the same length
 * instead of being unmapped (no mmap/madvise/munmap and no page faults per request). The mutex
 * is held for O(POOL) pointer moves only. */
#define POOL 16
static struct { void *map; size_t len; } g_pool[POOL];
static int g_pool_n;
static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void *pool_take(size_t len)
{
    void *m = NULL;
    pthread_mutex_lock(&g_pool_lock);
    for (int i = g_pool_n - 1; i >= 0; i--) {
        if (g_pool[i].len == len) {
            m = g_pool[i].map;
            g_pool[i] = g_pool[--g_pool_n];
            break;
        }
    }
    pthread_mutex_unlock(&g_pool_lock);
    return m;
}

static bool pool_give(void *m, size_t len)
{
    bool kept = false;
    pthread_mutex_lock(&g_pool_lock);
    if (g_pool_n < POOL) {
        g_pool[g_pool_n].map = m;
        g_pool[g_pool_n].len = len;
        g_pool_n++;
        kept = true;
    }
    pthread_mutex_unlock(&g_pool_lock);
    return kept;
}

void *vks_curlmem_malloc(size_t n)
{
    if (n > SIZE_MAX - sizeof(struct hdr) - page_size())
        return NULL;
    struct hdr *h;
    uint32_t mapped = 0;
    if (n >= VKS_CURLMEM_MMAP_MIN) {
        size_t len = map_len(n);
        void *m = pool_take(len);
        if (m)
            goto have_map; /* wiped when pooled; the advice stays with the mapping */
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        /* best effort: a kernel without one of these still gets a working (wiped) buffer */
        (void)madvise(m, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
        (void)madvise((unsigned char *)m + page_size(), len - page_size(), MADV_WIPEONFORK);
#endif
    have_map:
        h = (struct hdr *)((unsigned char *)m + page_size()) - 1;
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
        vks_wipe(h, sizeof *h + n);
        void *m = (unsigned char *)(h + 1) - page_size();
        if (!pool_give(m, len))
            munmap(m, len);
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
    /* mappings are all zero: fresh ones, and pooled ones (wiped over every byte a user could reach) */
    if (p && n < VKS_CURLMEM_MMAP_MIN)
        memset(p, 0, n);
    return p;
}

/* fork: the pool mutex is never inherited locked (the pooled pages are wiped on fork anyway) */
static void pool_lock(void) { pthread_mutex_lock(&g_pool_lock); }
static void pool_unlock(void) { pthread_mutex_unlock(&g_pool_lock); }

static void install_once(void)
{
    pthread_atfork(pool_lock, pool_unlock, pool_unlock);
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
/* 128-bit EVEX forms: they zero the whole register (bits up to 511) without the 512-bit operations
 * that would change the core's power state. Registers 16-31 have no SSE/AVX transition state. */
__attribute__((target("avx512f,avx512vl"), noinline)) static void zero_xmm16_31(void)
{
    __asm__ volatile("vpxord %%xmm16, %%xmm16, %%xmm16\n\tvpxord %%xmm17, %%xmm17, %%xmm17\n\t"
                     "vpxord %%xmm18, %%xmm18, %%xmm18\n\tvpxord %%xmm19, %%xmm19, %%xmm19\n\t"
                     "vpxord %%xmm20, %%xmm20, %%xmm20\n\tvpxord %%xmm21, %%xmm21, %%xmm21\n\t"
                     "vpxord %%xmm22, %%xmm22, %%xmm22\n\tvpxord %%xmm23, %%xmm23, %%xmm23\n\t"
                     "vpxord %%xmm24, %%xmm24, %%xmm24\n\tvpxord %%xmm25, %%xmm25, %%xmm25\n\t"
                     "vpxord %%xmm26, %%xmm26, %%xmm26\n\tvpxord %%xmm27, %%xmm27, %%xmm27\n\t"
                     "vpxord %%xmm28, %%xmm28, %%xmm28\n\tvpxord %%xmm29, %%xmm29, %%xmm29\n\t"
                     "vpxord %%xmm30, %%xmm30, %%xmm30\n\tvpxord %%xmm31, %%xmm31, %%xmm31"
                     ::: "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
                         "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
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
    if (__builtin_cpu_supports("avx")) {
        zero_ymm0_15(); /* vzeroall: all bits of zmm0-15 on AVX-512 machines, and a clean upper state */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
            zero_xmm16_31();
    } else {
        zero_xmm0_15();
    }
}
#else
void vks_curlmem_scrub_registers(void)
{
}
#endif
