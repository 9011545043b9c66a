/*
 * vks_fork: the fork generation, the fork mode, and the kept region for credentials
 * (contract: vks_fork.h; design: docs/internals/secmem.md, "Fork").
 *
 *   [ guard page | 64 KiB: 1024 chunks of 64 bytes | guard page ]   one private anonymous mapping
 *
 * MADV_DONTDUMP, mlock attempted (again in every child: locks are not inherited), MADV_WIPEONFORK
 * only in strict mode. A kept secret is a run of consecutive chunks; its vks_secret.cap says how
 * many, so no metadata is needed beyond a 1024-bit map in ordinary memory. Free chunks are zero.
 */
#include "vks_fork.h"
#include "vks_guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KEPT_BYTES ((size_t)64 << 10)
#define CHUNK ((size_t)64)
#define NCHUNKS (KEPT_BYTES / CHUNK)
#define NWORDS (NCHUNKS / 64)

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_kept_lock = PTHREAD_MUTEX_INITIALIZER; /* the kept region           */
static pthread_mutex_t g_sync_lock = PTHREAD_MUTEX_INITIALIZER; /* vks_fork_sync callbacks   */
static atomic_int g_mode = -1;         /* enum vks_fork_mode; -1 = not set (environment)         */
static atomic_ulong g_gen = 1;         /* bumped in every child                                  */
static atomic_ulong g_wiped;           /* generation at which a strict fork wiped credentials    */
static atomic_int g_pid;

static _Atomic(unsigned char *) g_data; /* the kept region's data (NULL until first use)         */
static struct vks_guarded g_region; /* the kept region's mapping (vks_guard)             */
static uint64_t g_used[NWORDS];         /* bit set = chunk handed out (g_kept_lock)               */
static size_t g_in_use;
static unsigned long g_fallbacks;

/* ---------------------------------------------------------------------------------------------- */
/* mode                                                                                           */

vks_status vks_fork_mode_parse(const char *s, size_t n, const char *what, enum vks_fork_mode *out,
                               struct vks_err *err)
{
    if (s && n == 7 && memcmp(s, "inherit", 7) == 0)
        *out = VKS_FORK_INHERIT;
    else if (s && n == 6 && memcmp(s, "strict", 6) == 0)
        *out = VKS_FORK_STRICT;
    else
        return vks_err_set(err, VKS_E_CONFIG, "%s must be \"inherit\" or \"strict\"", what ? what : "fork");
    return VKS_OK;
}

const char *vks_fork_mode_name(enum vks_fork_mode m)
{
    return m == VKS_FORK_STRICT ? "strict" : "inherit";
}

/* The mode before any setup: VKS_FORK (unset or empty = inherit; anything unknown = strict). */
static int mode_from_env(void)
{
    const char *v = getenv("VKS_FORK");
    enum vks_fork_mode m = VKS_FORK_INHERIT;
    if (v && *v && vks_fork_mode_parse(v, strlen(v), "VKS_FORK", &m, NULL) != VKS_OK) {
        fprintf(stderr, "vault-keysource: VKS_FORK must be inherit or strict; using strict\n");
        m = VKS_FORK_STRICT;
    }
    return (int)m;
}

static enum vks_fork_mode mode_now(void)
{
    int m = atomic_load(&g_mode);
    return m == VKS_FORK_STRICT ? VKS_FORK_STRICT : VKS_FORK_INHERIT;
}

/* ---------------------------------------------------------------------------------------------- */
/* fork detection (g_kept_lock held, or the only thread of a new child)                           */

static void wipe_used_chunks(unsigned char *d)
{
    for (size_t w = 0; w < NWORDS; w++)
        for (uint64_t bits = g_used[w]; bits; bits &= bits - 1)
            explicit_bzero(d + (w * 64 + (size_t)__builtin_ctzll(bits)) * CHUNK, CHUNK);
}

static void child_after_fork(void)
{
    unsigned long gen = atomic_fetch_add(&g_gen, 1) + 1;
    atomic_store(&g_pid, (int)getpid());
    unsigned char *d = atomic_load(&g_data);
    if (mode_now() == VKS_FORK_STRICT) {
        if (d && g_in_use)
            wipe_used_chunks(d); /* the kernel did it already (WIPEONFORK); _Fork did not */
        atomic_store(&g_wiped, gen);
    }
    if (d)
        (void)vks_guard_lock_region(&g_region); /* memory locks are not inherited */
}

/* The kept lock is a leaf (nothing else is locked under it), so taking it in prepare cannot
 * deadlock whatever the order of other libraries' handlers. The sync lock is not a leaf (callbacks
 * free curl handles): it is not taken around fork but started afresh in the child, whose only
 * thread cannot be inside a callback. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_kept_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_kept_lock);
}

static void atfork_child(void)
{
    child_after_fork();
    pthread_mutex_unlock(&g_kept_lock);
    pthread_mutex_init(&g_sync_lock, NULL);
}

static void init_once(void)
{
    atomic_store(&g_pid, (int)getpid());
    int unset = -1;
    atomic_compare_exchange_strong(&g_mode, &unset, mode_from_env());
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

unsigned long vks_fork_generation(void)
{
    pthread_once(&g_once, init_once);
    if ((int)getpid() != atomic_load(&g_pid)) {
        /* forked without the atfork handlers (_Fork, raw clone) */
        pthread_mutex_lock(&g_kept_lock);
        if ((int)getpid() != atomic_load(&g_pid))
            child_after_fork();
        pthread_mutex_unlock(&g_kept_lock);
    }
    return atomic_load(&g_gen);
}

void vks_fork_set_mode(enum vks_fork_mode m)
{
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_kept_lock);
    atomic_store(&g_mode, (int)m);
    unsigned char *d = atomic_load(&g_data);
    if (d)
        (void)vks_guard_set_wipe_on_fork(&g_region, m == VKS_FORK_STRICT);
    pthread_mutex_unlock(&g_kept_lock);
}

enum vks_fork_mode vks_fork_get_mode(void)
{
    pthread_once(&g_once, init_once);
    return mode_now();
}

vks_status vks_fork_check(unsigned long born, vks_status code, const char *what, struct vks_err *err)
{
    (void)vks_fork_generation();
    if (atomic_load(&g_wiped) > born)
        return vks_err_set(err, code,
                           "%s was inherited across fork() and fork = 'strict' wiped it in this child (pid %ld): "
                           "call vks.setup in the child, or use fork = 'inherit'",
                           what, (long)getpid());
    return VKS_OK;
}

void vks_fork_sync(atomic_ulong *seen, void (*fn)(void *), void *arg)
{
    unsigned long gen = vks_fork_generation();
    if (atomic_load_explicit(seen, memory_order_acquire) == gen)
        return;
    pthread_mutex_lock(&g_sync_lock);
    if (atomic_load(seen) != gen) {
        fn(arg);
        atomic_store_explicit(seen, gen, memory_order_release);
    }
    pthread_mutex_unlock(&g_sync_lock);
}

/* ---------------------------------------------------------------------------------------------- */
/* the kept region (g_kept_lock held)                                                             */

static bool map_kept(void)
{
    if (atomic_load(&g_data))
        return true;
    struct vks_guard_failure why;
    if (vks_guard_map(KEPT_BYTES, mode_now() == VKS_FORK_STRICT, &g_region, &why) != 0)
        return false;
    (void)vks_guard_lock_region(&g_region);
    atomic_store(&g_data, g_region.data);
    return true;
}

static bool chunk_used(size_t i)
{
    return (g_used[i / 64] >> (i % 64)) & 1u;
}

static void mark(size_t first, size_t n, bool used)
{
    for (size_t i = first; i < first + n; i++) {
        if (used)
            g_used[i / 64] |= UINT64_C(1) << (i % 64);
        else
            g_used[i / 64] &= ~(UINT64_C(1) << (i % 64));
    }
}

/* First run of n free chunks, or NCHUNKS when there is none. */
static size_t find_run(size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < NCHUNKS; i++) {
        run = chunk_used(i) ? 0 : run + 1;
        if (run == n)
            return i + 1 - n;
    }
    return NCHUNKS;
}

vks_status vks_secret_alloc_kept(size_t cap, vks_secret *out, struct vks_err *err)
{
    if (out == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_secret_alloc_kept: out is NULL");
    *out = VKS_SECRET_EMPTY;
    if (cap == 0 || cap > VKS_SECRET_MAX)
        return vks_err_set(err, VKS_E_INVALID_ARG, "secret size %zu is out of range (1..%d)", cap, VKS_SECRET_MAX);
    struct vks_secmem_status ms;
    vks_secmem_get_status(&ms); /* the arena's require_locked applies here too */
    (void)vks_fork_generation();
    size_t n = (cap + CHUNK - 1) / CHUNK;
    pthread_mutex_lock(&g_kept_lock);
    size_t first = NCHUNKS;
    if (map_kept() && (g_region.locked || !ms.require_locked))
        first = find_run(n);
    if (first < NCHUNKS) {
        mark(first, n, true);
        g_in_use += n * CHUNK;
        out->data = atomic_load(&g_data) + first * CHUNK;
        out->cap = n * CHUNK;
    } else {
        g_fallbacks++;
    }
    pthread_mutex_unlock(&g_kept_lock);
    if (out->data != NULL)
        return VKS_OK;
    return vks_secret_alloc(cap, out, err); /* full or unusable: an ordinary (wipe-on-fork) slot */
}

vks_status vks_secret_dup_kept(const void *src, size_t n, vks_secret *out, struct vks_err *err)
{
    return vks_secret_dup_with(vks_secret_alloc_kept, "vks_secret_dup_kept", src, n, out, err);
}

vks_status vks_secret_keep(vks_secret *s, struct vks_err *err)
{
    if (s == NULL || s->data == NULL || vks_fork_kept_owns(s->data))
        return VKS_OK;
    vks_secret k = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_dup_kept(s->data, s->len, &k, err);
    if (st != VKS_OK)
        return st;
    vks_secret_free(s);
    *s = k;
    return VKS_OK;
}

bool vks_fork_kept_owns(const void *p)
{
    const unsigned char *d = atomic_load(&g_data);
    const unsigned char *q = p;
    return d != NULL && q >= d && q < d + KEPT_BYTES;
}

void vks_fork_kept_free(vks_secret *s)
{
    unsigned char *d = atomic_load(&g_data);
    size_t off = (size_t)(s->data - d), n = s->cap / CHUNK;
    pthread_mutex_lock(&g_kept_lock);
    bool ok = off % CHUNK == 0 && s->cap % CHUNK == 0 && n > 0 && off / CHUNK + n <= NCHUNKS;
    for (size_t i = off / CHUNK; ok && i < off / CHUNK + n; i++)
        ok = chunk_used(i);
    if (!ok) {
        fprintf(stderr, "vault-keysource: vks_secret_free: bad kept secret; aborting (memory-safety bug)\n");
        abort();
    }
    explicit_bzero(s->data, s->cap);
    mark(off / CHUNK, n, false);
    g_in_use -= s->cap;
    pthread_mutex_unlock(&g_kept_lock);
    *s = VKS_SECRET_EMPTY;
}

void vks_fork_get_status(struct vks_fork_status *out)
{
    unsigned long gen = vks_fork_generation();
    pthread_mutex_lock(&g_kept_lock);
    memset(out, 0, sizeof *out);
    out->mode = mode_now();
    out->generation = gen;
    out->kept_locked = atomic_load(&g_data) != NULL && g_region.locked;
    out->kept_dontdump = atomic_load(&g_data) != NULL && g_region.dontdump;
    out->kept_capacity = KEPT_BYTES;
    out->kept_in_use = g_in_use;
    out->kept_fallbacks = g_fallbacks;
    pthread_mutex_unlock(&g_kept_lock);
}

/* Library unload or exit: wipe the live credentials; the mapping stays for late readers. */
__attribute__((destructor)) static void vks_fork_unload(void)
{
    pthread_mutex_lock(&g_kept_lock);
    unsigned char *d = atomic_load(&g_data);
    if (d && g_in_use)
        wipe_used_chunks(d);
    pthread_mutex_unlock(&g_kept_lock);
}
