/*
 * vks_curlmem: libcurl's memory, routed through allocators that wipe and keep big buffers out of
 * core dumps. Details: docs/internals/curlmem.md.
 *
 *  - Every block carries a 16-byte header recording its size; free and realloc wipe the old block
 *    with vks_wipe before releasing it (realloc always moves: the old block is wiped, never left
 *    to the C library's realloc).
 *  - Blocks of VKS_CURLMEM_MMAP_MIN bytes or more (curl's 16 KiB receive buffer and 64 KiB upload
 *    buffer) are a private anonymous mapping each, with MADV_DONTDUMP, and MADV_WIPEONFORK on the
 *    data pages (the header sits alone at the end of the first page, so a forked child can still
 *    free the block); smaller ones come from malloc and are wiped on free.
 *
 * Ownership: vks_curlmem_install is called once per process by vks_http before any other curl
 * call the module makes; the allocator functions are curl's (curl owns every block they return).
 * Thread-safety: every function is safe from any thread; the shared state is atomic counters, a
 * pthread_once, and a 16-entry pool of freed (wiped) mappings under a mutex held for O(16) work.
 */
#ifndef VKS_CURLMEM_H
#define VKS_CURLMEM_H

#include <stdbool.h>
#include <stddef.h>

/* The smallest request served by its own MADV_DONTDUMP mapping. curl 7.88 allocates its receive
 * buffer as buffer_size + 1 = 16385 bytes (CURL_MAX_WRITE_SIZE + 1) and its upload buffer as
 * 65536; everything else it allocates per transfer is far smaller (or a growing dynbuf). */
#define VKS_CURLMEM_MMAP_MIN 16384

enum vks_curlmem_state {
    VKS_CURLMEM_NOT_TRIED = 0,
    VKS_CURLMEM_ACTIVE,        /* curl_global_init_mem installed our allocators                  */
    VKS_CURLMEM_FOREIGN,       /* libcurl was initialised before us (by the host): curl uses its
                                  own malloc; initialised anyway, without our allocators         */
    VKS_CURLMEM_FAILED         /* curl_global_init(_mem) failed                                   */
};

/*
 * Initialises libcurl once per process (pthread_once): curl_global_init_mem with our allocators,
 * then a probe allocation through libcurl tells whether they are the ones in use (libcurl ignores
 * the allocators when it was initialised already). Returns the resulting state; a second call
 * returns the first call's result. Only VKS_CURLMEM_FAILED means libcurl is unusable.
 */
enum vks_curlmem_state vks_curlmem_install(void);

/* The state reached by vks_curlmem_install (VKS_CURLMEM_NOT_TRIED before it ran). */
enum vks_curlmem_state vks_curlmem_state(void);

struct vks_curlmem_stats {
    unsigned long allocs;        /* successful malloc/calloc/strdup/realloc calls              */
    unsigned long frees;         /* non-NULL blocks released (free, and the old block of realloc) */
    unsigned long mapped;        /* of the allocations, those that got their own mapping       */
    unsigned long foreign_frees; /* frees of a pointer without our header (passed to free())    */
    size_t live_bytes;           /* bytes currently handed out                                 */
};
void vks_curlmem_get_stats(struct vks_curlmem_stats *out);

/* The allocators themselves (curl's callback signatures), exposed for the unit test. free and
 * realloc accept NULL; realloc(p, 0) frees p and returns NULL. */
void *vks_curlmem_malloc(size_t n);
void vks_curlmem_free(void *p);
void *vks_curlmem_realloc(void *p, size_t n);
char *vks_curlmem_strdup(const char *s);
void *vks_curlmem_calloc(size_t nmemb, size_t size);

/*
 * Zeroes this thread's SIMD registers (x86-64: zmm0-31 with AVX-512, else ymm0-15 / xmm0-15).
 * glibc's memcpy moves a response body through up to eight vector registers, and a thread that
 * then goes idle keeps those bytes in its register state, which a core dump records
 * (NT_X86_XSTATE). vks_http_release calls it after the body is wiped. A no-op elsewhere.
 */
void vks_curlmem_scrub_registers(void);

/* Usable size of a block returned by the allocators (the size asked for). */
size_t vks_curlmem_size(const void *p);

#endif
