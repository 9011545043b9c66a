/*
 * vks_secmem: the locked arena, the wipe primitive and constant-time comparison.
 *
 * Layout (docs/internals/secmem.md):
 *
 *   [ guard page | data: nunits x 4096-byte units | guard page ]     one private anonymous mapping
 *
 * Each 4096-byte unit is carved on demand (bump pointer, then a free-unit stack) to one size class
 * (16 << c bytes, c = 0..8, i.e. 16..4096) and split into equal slots. A unit whose last slot is
 * freed goes back to the free-unit stack, so classes share the region without fragmenting it for
 * good. All metadata (class of each unit, free-slot bitmaps, partial-unit lists) lives in ordinary
 * heap memory: the region holds nothing but secret bytes. Every operation is O(1).
 *
 * Locks: a carved unit belongs to one of NLANES lanes (its own partial lists and counters under
 * the lane's mutex); a thread allocates from its lane (threads are spread over the lanes) and a
 * slot is freed under the lane of its unit, so that threads allocating and freeing at the same
 * time (every cache hit does both) do not share a lock or a cache line. g_lock guards the rest
 * (mapping, free-unit stack, flags). Carving a unit, a full lane, initialisation, fork and every
 * status call take every lane then g_lock (lock_arena); freeing the last slot of a unit takes its
 * lane then g_lock. g_ready (initialised, open, not refused, no fork pending) is written with
 * every lock held, so a lane holder may trust it.
 *
 * Invariant: every slot that is not handed out is all zeros (fresh pages are zero, and a slot is
 * wiped on free), so allocation needs no memset.
 */
#include "vks_secmem.h"
#include "vks_fork.h"
#include "vks_guard.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define UNIT_SHIFT 12u
#define UNIT_SIZE ((size_t)1 << UNIT_SHIFT)
#define NCLASSES 9u
#define CLASS_MIN_SHIFT 4u
#define NONE UINT32_MAX
#define FREE_UNIT 0xffu

#define DEFAULT_LOCKED_BYTES ((size_t)7 << 20)
#define MIN_LOCKED_BYTES ((size_t)64 << 10)
#define MAX_LOCKED_BYTES ((size_t)1 << 30)
#define MAX_SCRATCH ((size_t)256 << 20)

struct unit {
    _Alignas(64) uint64_t freemap[UNIT_SIZE / 16 / 64]; /* bit set = slot free; only bits < slots(class) used */
    uint32_t next, prev;                   /* partial list of the class, or the free-unit stack */
    uint16_t used;
    uint8_t cls;                           /* FREE_UNIT when not carved                        */
    _Atomic unsigned char lane;            /* owner lane while carved (read before its lock)   */
};

#define NLANES 8
struct lane {
    _Alignas(64) pthread_mutex_t mu;
    uint32_t partial[NCLASSES];            /* this lane's units with a free slot, per class    */
    _Atomic size_t in_use, slots_in_use;   /* written under mu; summed without it by status */
};

static struct arena {
    bool init;
    bool closed; /* the library is being unloaded: refuse, frees only forget */
    bool locked, dontdump, guard_pages, wipe_on_fork, require_locked, refused;
    pid_t pid;
    struct vks_guarded region; /* the mapping, guard pages included (vks_guard) */
    unsigned char *data;   /* start of the data region                   */
    size_t capacity;       /* bytes of data (multiple of UNIT_SIZE)      */
    uint32_t nunits, bump, free_units;
    struct unit *units;
    unsigned long alloc_failures;
} g;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
#define LANE_INIT { PTHREAD_MUTEX_INITIALIZER, { 0 }, 0, 0 }
static struct lane lanes[NLANES] = { LANE_INIT, LANE_INIT, LANE_INIT, LANE_INIT,
                                     LANE_INIT, LANE_INIT, LANE_INIT, LANE_INIT };
static atomic_bool g_ready;
static atomic_uint g_lane_next;
static _Thread_local int t_lane = -1;
static size_t g_scratch_open, g_scratch_locked;
static unsigned long g_scratch_lock_failures;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static atomic_ulong g_generation = 1;
static bool g_warned;
static volatile sig_atomic_t g_fork_pending;

/* ---------------------------------------------------------------------------------------------- */

void vks_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

bool vks_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return true;
    return CRYPTO_memcmp(a, b, n) == 0;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static unsigned class_of(size_t n)
{
    if (n <= 16)
        return 0;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - CLASS_MIN_SHIFT;
}

static size_t class_bytes(unsigned c)
{
    return (size_t)16 << c;
}

static unsigned class_slots(unsigned c)
{
    return (unsigned)(UNIT_SIZE >> (c + CLASS_MIN_SHIFT));
}

size_t vks_secmem_class_size(size_t n)
{
    if (n > VKS_SECRET_MAX)
        return 0;
    return class_bytes(class_of(n));
}

/* ---------------------------------------------------------------------------------------------- */
/* configuration                                                                                  */

static vks_status parse_size_env(const char *name, size_t *out, struct vks_err *err)
{
    const char *v = getenv(name);
    *out = 0;
    if (v == NULL || *v == '\0')
        return VKS_OK;
    errno = 0;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || v[0] == '-')
        return vks_err_set(err, VKS_E_CONFIG, "%s must be a size in bytes (optionally with K, M or G)", name);
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1ull << 30, end++;
    if (*end == 'i' && mul > 1)
        end++;
    if ((*end == 'b' || *end == 'B') && mul > 1)
        end++;
    if (*end != '\0' || n > MAX_LOCKED_BYTES / mul)
        return vks_err_set(err, VKS_E_CONFIG, "%s must be a size in bytes (optionally with K, M or G) of at most %zu",
                           name, MAX_LOCKED_BYTES);
    *out = (size_t)(n * mul);
    return VKS_OK;
}

static vks_status parse_bool_env(const char *name, bool *out, struct vks_err *err)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return VKS_OK;
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
        *out = false;
    else
        return vks_err_set(err, VKS_E_CONFIG, "%s must be true or false", name);
    return VKS_OK;
}

/* Resolves a config (NULL = environment defaults) into a capacity and the require flag. */
static vks_status resolve_config(const struct vks_secmem_config *cfg, size_t *cap, bool *require,
                                 struct vks_err *err)
{
    size_t n = cfg != NULL ? cfg->locked_bytes : 0;
    *require = cfg != NULL ? cfg->require_locked : false;
    vks_status st;
    if (cfg == NULL && (st = parse_bool_env("VKS_REQUIRE_LOCKED", require, err)) != VKS_OK)
        return st;
    if (n == 0) {
        if ((st = parse_size_env("VKS_LOCKED_BYTES", &n, err)) != VKS_OK)
            return st;
        if (n == 0)
            n = DEFAULT_LOCKED_BYTES;
    }
    if (n < MIN_LOCKED_BYTES || n > MAX_LOCKED_BYTES)
        return vks_err_set(err, VKS_E_CONFIG, "locked_bytes must be between %zu and %zu (got %zu)",
                           MIN_LOCKED_BYTES, MAX_LOCKED_BYTES, n);
    *cap = round_up(n, vks_guard_page_size() > UNIT_SIZE ? vks_guard_page_size() : UNIT_SIZE);
    return VKS_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* mapping and protections (called with g_lock held)                                              */

static void describe_memlock(char *buf, size_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        snprintf(buf, n, "unknown");
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(buf, n, "unlimited");
    else
        snprintf(buf, n, "%llu bytes", (unsigned long long)rl.rlim_cur);
}

static int g_lock_errno;

/* Tries to mlock the data region; records the outcome. */
static void try_lock(void)
{
    if (g.locked)
        return;
    if (vks_guard_lock(g.data, g.capacity) == 0) {
        g.locked = true;
        g_lock_errno = 0;
    } else {
        g_lock_errno = errno;
    }
}

static void warn_degraded(void)
{
    if (g_warned || (g.locked && g.dontdump && g.guard_pages))
        return;
    g_warned = true;
    char lim[64];
    describe_memlock(lim, sizeof lim);
    fprintf(stderr,
            "vault-keysource: WARNING: secret memory is degraded:%s%s%s serving anyway "
            "(require_locked is off). RLIMIT_MEMLOCK is %s, arena is %zu bytes%s%s. "
            "Raise the memlock limit (systemd LimitMEMLOCK=, ulimit -l) or lower cache.locked_bytes / "
            "VKS_LOCKED_BYTES.\n",
            g.locked ? "" : " NOT LOCKED in RAM (secrets may be written to swap);",
            g.dontdump ? "" : " NOT excluded from core dumps;",
            g.guard_pages ? "" : " no guard pages;", lim, g.capacity,
            g.locked ? "" : ", mlock failed: ", g.locked ? "" : strerror(g_lock_errno));
}

/* With every lock held: the lanes forget their units (the mapping is new or gone). */
static void reset_lanes(void)
{
    for (int l = 0; l < NLANES; l++) {
        for (unsigned c = 0; c < NCLASSES; c++)
            lanes[l].partial[c] = NONE;
        atomic_store(&lanes[l].in_use, 0);
        atomic_store(&lanes[l].slots_in_use, 0);
    }
}

/* l->mu held: no read-modify-write needed, the atomics are for readers without the lock */
static void lane_count(struct lane *l, ptrdiff_t bytes, ptrdiff_t slots)
{
    atomic_store_explicit(&l->in_use, atomic_load_explicit(&l->in_use, memory_order_relaxed) + (size_t)bytes,
                          memory_order_relaxed);
    atomic_store_explicit(&l->slots_in_use,
                          atomic_load_explicit(&l->slots_in_use, memory_order_relaxed) + (size_t)slots,
                          memory_order_relaxed);
}

static void lane_sums(size_t *in_use, size_t *slots)
{
    size_t a = 0, b = 0;
    for (int l = 0; l < NLANES; l++) {
        a += atomic_load_explicit(&lanes[l].in_use, memory_order_relaxed);
        b += atomic_load_explicit(&lanes[l].slots_in_use, memory_order_relaxed);
    }
    if (in_use)
        *in_use = a;
    if (slots)
        *slots = b;
}

static void free_metadata(void)
{
    free(g.units);
    g.units = NULL;
}

static vks_status map_arena(size_t cap, struct vks_err *err)
{
    struct vks_guarded region;
    struct vks_guard_failure why;
    if (vks_guard_map(cap, true, &region, &why) != 0)
        return vks_err_set(err, VKS_E_NOMEM, "secret memory: %s of %zu bytes failed: %s", why.step, cap,
                           strerror(why.errnum));
    uint32_t nunits = (uint32_t)(cap / UNIT_SIZE);
    struct unit *units = aligned_alloc(_Alignof(struct unit), nunits * sizeof *units);
    if (units != NULL)
        memset(units, 0, nunits * sizeof *units);
    if (units == NULL) {
        vks_guard_unmap(&region);
        return vks_err_set(err, VKS_E_NOMEM, "secret memory: no memory for arena metadata");
    }
    memset(&g, 0, sizeof g);
    g.region = region;
    g.data = region.data;
    g.capacity = cap;
    g.units = units;
    g.nunits = nunits;
    g.free_units = NONE;
    reset_lanes();
    for (uint32_t i = 0; i < nunits; i++)
        units[i].cls = FREE_UNIT;
    g.guard_pages = true; /* the mapping was made PROT_NONE; only the data was opened */
    g.dontdump = region.dontdump;
    g.wipe_on_fork = region.wipe_on_fork;
    g.pid = getpid();
    g.init = true;
    try_lock();
    return VKS_OK;
}

/* Wipes every unit that holds live slots (free slots are already zero). */
static void wipe_live_units(void)
{
    for (uint32_t u = 0; u < g.bump; u++)
        if (g.units[u].cls != FREE_UNIT)
            vks_wipe(g.data + (size_t)u * UNIT_SIZE, UNIT_SIZE);
}

static void unmap_arena(void)
{
    if (!g.init)
        return;
    wipe_live_units();
    g.region.locked = g.locked;
    vks_guard_unmap(&g.region);
    free_metadata();
    memset(&g, 0, sizeof g);
    reset_lanes();
    atomic_store(&g_ready, false);
}

/* ---------------------------------------------------------------------------------------------- */
/* fork                                                                                           */

static void lock_all(void)
{
    for (int l = 0; l < NLANES; l++)
        pthread_mutex_lock(&lanes[l].mu);
    pthread_mutex_lock(&g_lock);
}

static void unlock_arena(void)
{
    pthread_mutex_unlock(&g_lock);
    for (int l = NLANES - 1; l >= 0; l--)
        pthread_mutex_unlock(&lanes[l].mu);
}

/* With every lock held: whether lane holders may allocate and free on their own. */
static void update_ready(void)
{
    atomic_store(&g_ready, g.init && !g.closed && !g.refused && !g_fork_pending);
}

static void atfork_prepare(void)
{
    lock_all();
}

static void atfork_parent(void)
{
    unlock_arena();
}

/* In the child: the region reads zeros (WIPEONFORK) or is wiped here; locks are not inherited. */
static void child_after_fork(void)
{
    if (g.init && !g.closed) {
        if (!g.wipe_on_fork)
            wipe_live_units();
        g.locked = false;
        g_fork_pending = 1;
    }
    g.pid = getpid();
    atomic_fetch_add(&g_generation, 1);
    update_ready();
}

static void atfork_child(void)
{
    child_after_fork();
    unlock_arena();
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Called with g_lock held at the start of every slow operation. */
static void check_fork_locked(bool check_pid)
{
    if (!g.init)
        return;
    if (check_pid && !g_fork_pending && g.pid != getpid())
        child_after_fork(); /* forked without running atfork handlers (_Fork, clone) */
    if (g_fork_pending) {
        g_fork_pending = 0;
        try_lock();
        g.refused = g.require_locked && !g.locked;
        update_ready();
    }
}

static void lock_arena(void)
{
    pthread_once(&g_atfork_once, register_atfork);
    lock_all();
}

static struct lane *my_lane(void)
{
    if (t_lane < 0)
        t_lane = (int)(atomic_fetch_add_explicit(&g_lane_next, 1, memory_order_relaxed) % NLANES);
    return &lanes[t_lane];
}

/* ---------------------------------------------------------------------------------------------- */

static vks_status refused_error(struct vks_err *err)
{
    char lim[64];
    describe_memlock(lim, sizeof lim);
    return vks_err_set(err, VKS_E_LOCKED_MEMORY,
                       "secret memory could not be locked and require_locked is set (mlock of %zu bytes failed: %s; "
                       "RLIMIT_MEMLOCK is %s)",
                       g.capacity, strerror(g_lock_errno ? g_lock_errno : EPERM), lim);
}

static vks_status init_locked(const struct vks_secmem_config *cfg, struct vks_err *err)
{
    size_t cap = 0;
    bool require = false;
    vks_status st = resolve_config(cfg, &cap, &require, err);
    if (st != VKS_OK)
        return st;
    if (g.closed)
        return vks_err_set(err, VKS_E_LOCKED_MEMORY, "secret memory is closed (library unloading)");
    check_fork_locked(true);
    if (g.init && cap != g.capacity) {
        size_t live;
        lane_sums(NULL, &live);
        if (live > 0)
            return vks_err_set(err, VKS_E_CONFIG,
                               "locked_bytes cannot change from %zu to %zu while %zu secrets are live", g.capacity,
                               cap, live);
        unmap_arena();
    }
    if (!g.init && (st = map_arena(cap, err)) != VKS_OK)
        return st;
    try_lock();
    g.require_locked = require;
    g.refused = require && !g.locked;
    update_ready();
    if (g.refused)
        return refused_error(err);
    warn_degraded();
    return VKS_OK;
}

vks_status vks_secmem_init(const struct vks_secmem_config *cfg, struct vks_err *err)
{
    lock_arena();
    vks_status st = init_locked(cfg, err);
    unlock_arena();
    return st;
}

void vks_secmem_get_status(struct vks_secmem_status *out)
{
    /* g_lock alone is enough to read (every writer of these holds it), unless a fork has to be
     * noticed first, which takes every lock (vks.stats() calls this: it stays cheap) */
    pthread_once(&g_atfork_once, register_atfork);
    pthread_mutex_lock(&g_lock);
    bool all = g.init && (g_fork_pending || g.pid != getpid());
    if (all) {
        pthread_mutex_unlock(&g_lock);
        lock_arena();
        check_fork_locked(true);
    }
    memset(out, 0, sizeof *out);
    out->initialised = g.init && !g.closed;
    out->locked = g.init && g.locked;
    out->dontdump = g.init && g.dontdump;
    out->guard_pages = g.init && g.guard_pages;
    out->wipe_on_fork = g.init && g.wipe_on_fork;
    out->require_locked = g.require_locked;
    out->capacity = g.capacity;
    lane_sums(&out->in_use, &out->slots_in_use);
    out->alloc_failures = g.alloc_failures;
    out->scratch_open = g_scratch_open;
    out->scratch_locked_bytes = g_scratch_locked;
    out->scratch_lock_failures = g_scratch_lock_failures;
    if (all)
        unlock_arena();
    else
        pthread_mutex_unlock(&g_lock);
}

unsigned long vks_secmem_generation(void)
{
    return atomic_load_explicit(&g_generation, memory_order_acquire);
}

bool vks_secmem_region(const void **data, size_t *len)
{
    lock_arena();
    bool ok = g.init && !g.closed;
    if (data)
        *data = ok ? g.data : NULL;
    if (len)
        *len = ok ? g.capacity : 0;
    unlock_arena();
    return ok;
}

/* ---------------------------------------------------------------------------------------------- */
/* slots (g_lock held)                                                                            */

static void list_remove(uint32_t *head, uint32_t u)
{
    struct unit *x = &g.units[u];
    if (x->prev != NONE)
        g.units[x->prev].next = x->next;
    else
        *head = x->next;
    if (x->next != NONE)
        g.units[x->next].prev = x->prev;
    x->next = x->prev = NONE;
}

static void list_push(uint32_t *head, uint32_t u)
{
    struct unit *x = &g.units[u];
    x->prev = NONE;
    x->next = *head;
    if (*head != NONE)
        g.units[*head].prev = u;
    *head = u;
}

/* Carves a free unit for class c into lane l. Every lock held (lock_arena). */
static uint32_t take_unit(struct lane *l, unsigned c)
{
    uint32_t u;
    if (g.free_units != NONE) {
        u = g.free_units;
        g.free_units = g.units[u].next;
    } else if (g.bump < g.nunits) {
        u = g.bump++;
    } else {
        return NONE;
    }
    struct unit *x = &g.units[u];
    unsigned n = class_slots(c);
    memset(x->freemap, 0, sizeof x->freemap);
    for (unsigned w = 0; w < n / 64; w++)
        x->freemap[w] = UINT64_MAX;
    if (n % 64)
        x->freemap[n / 64] = (UINT64_C(1) << (n % 64)) - 1;
    x->used = 0;
    x->cls = (uint8_t)c;
    atomic_store_explicit(&x->lane, (unsigned char)(l - lanes), memory_order_relaxed);
    list_push(&l->partial[c], u);
    return u;
}

/* A slot of class c from one of l's partial units, or NULL. l's lock held. */
static unsigned char *slot_alloc(struct lane *l, unsigned c)
{
    uint32_t u = l->partial[c];
    if (u == NONE)
        return NULL;
    struct unit *x = &g.units[u];
    unsigned w = 0;
    while (x->freemap[w] == 0)
        w++;
    unsigned b = (unsigned)__builtin_ctzll(x->freemap[w]);
    x->freemap[w] &= ~(UINT64_C(1) << b);
    if (++x->used == class_slots(c))
        list_remove(&l->partial[c], u);
    lane_count(l, (ptrdiff_t)class_bytes(c), 1);
    return g.data + (size_t)u * UNIT_SIZE + (size_t)(w * 64 + b) * class_bytes(c);
}

static void bad_free(const char *why)
{
    fprintf(stderr, "vault-keysource: vks_secret_free: %s; aborting (memory-safety bug)\n", why);
    abort();
}

/* The unit of p (aborts when p is not in the arena). Any lane lock or g_lock held. */
static uint32_t unit_of(const unsigned char *p)
{
    if (p < g.data || p >= g.data + g.capacity)
        bad_free("pointer is not in the secret arena");
    return (uint32_t)((size_t)(p - g.data) >> UNIT_SHIFT);
}

/* Frees p, whose unit belongs to the lane whose lock is held; g_lock too when have_g (else it is
 * taken to give back a unit that became empty). */
static void slot_free(unsigned char *p, bool have_g)
{
    size_t off = (size_t)(p - g.data);
    uint32_t u = unit_of(p);
    struct unit *x = &g.units[u];
    if (x->cls == FREE_UNIT)
        bad_free("slot is not allocated");
    struct lane *l = &lanes[atomic_load_explicit(&x->lane, memory_order_relaxed)];
    unsigned c = x->cls;
    size_t in = off & (UNIT_SIZE - 1);
    if (in % class_bytes(c) != 0)
        bad_free("pointer is not the start of a slot");
    unsigned s = (unsigned)(in / class_bytes(c));
    uint64_t bit = UINT64_C(1) << (s % 64);
    if (x->freemap[s / 64] & bit)
        bad_free("slot freed twice");
    vks_wipe(p, class_bytes(c));
    if (x->used == class_slots(c))
        list_push(&l->partial[c], u);
    x->freemap[s / 64] |= bit;
    lane_count(l, -(ptrdiff_t)class_bytes(c), -1);
    if (--x->used == 0 && !(l->partial[c] == u && x->next == NONE)) {
        /* an empty unit goes back to the free-unit stack, except the lane's last one of its class:
         * a thread that allocates and frees one slot at a time (every cache hit) would otherwise
         * carve a unit under every lock on each allocation. Kept ones are reclaimed when the
         * stack runs dry (reclaim_empty_units). */
        list_remove(&l->partial[c], u);
        if (!have_g)
            pthread_mutex_lock(&g_lock);
        x->cls = FREE_UNIT;
        x->next = g.free_units;
        g.free_units = u;
        if (!have_g)
            pthread_mutex_unlock(&g_lock);
    }
}

/* Every lock held: the empty units the lanes kept go back to the free-unit stack. */
static bool reclaim_empty_units(void)
{
    bool any = false;
    for (int l = 0; l < NLANES; l++)
        for (unsigned c = 0; c < NCLASSES; c++) {
            uint32_t u = lanes[l].partial[c];
            while (u != NONE) {
                uint32_t next = g.units[u].next;
                if (g.units[u].used == 0) {
                    list_remove(&lanes[l].partial[c], u);
                    g.units[u].cls = FREE_UNIT;
                    g.units[u].next = g.free_units;
                    g.free_units = u;
                    any = true;
                }
                u = next;
            }
        }
    return any;
}

/* Every lock held: a slot from the caller's lane, a new unit for it, or any other lane's. */
static unsigned char *slot_alloc_any(struct lane *mine, unsigned c)
{
    unsigned char *p = slot_alloc(mine, c);
    if (p == NULL && (take_unit(mine, c) != NONE || (reclaim_empty_units() && take_unit(mine, c) != NONE)))
        p = slot_alloc(mine, c);
    for (int l = 0; p == NULL && l < NLANES; l++)
        p = slot_alloc(&lanes[l], c);
    return p;
}

/* The slow allocation: initialisation, fork, refusal, a new unit or a full lane. */
static vks_status alloc_slow(unsigned c, vks_secret *out, struct vks_err *err)
{
    vks_status st = VKS_OK;
    struct lane *mine = my_lane();
    lock_arena();
    if (!g.init && !g.closed)
        st = init_locked(NULL, err);
    else
        check_fork_locked(false);
    if (st != VKS_OK) {
        /* refused or misconfigured: already reported in err */
    } else if (g.closed) {
        st = vks_err_set(err, VKS_E_LOCKED_MEMORY, "secret memory is closed (library unloading)");
    } else if (g.refused) {
        st = refused_error(err);
    } else {
        unsigned char *p = slot_alloc_any(mine, c);
        if (p == NULL) {
            size_t in_use, slots;
            lane_sums(&in_use, &slots);
            st = vks_err_set(err, VKS_E_LOCKED_MEMORY,
                             "secret memory is full (%zu of %zu bytes in use in %zu secrets); raise "
                             "cache.locked_bytes or VKS_LOCKED_BYTES",
                             in_use, g.capacity, slots);
        } else {
            out->data = p;
            out->cap = class_bytes(c);
        }
    }
    if (st != VKS_OK)
        g.alloc_failures++;
    update_ready();
    unlock_arena();
    return st;
}

vks_status vks_secret_alloc(size_t cap, vks_secret *out, struct vks_err *err)
{
    if (out == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_secret_alloc: out is NULL");
    *out = VKS_SECRET_EMPTY;
    if (cap == 0 || cap > VKS_SECRET_MAX)
        return vks_err_set(err, VKS_E_INVALID_ARG, "secret size %zu is out of range (1..%d)", cap, VKS_SECRET_MAX);
    unsigned c = class_of(cap);
    /* the common case: a free slot in a partial unit of this thread's lane */
    struct lane *l = my_lane();
    pthread_mutex_lock(&l->mu);
    unsigned char *p = atomic_load_explicit(&g_ready, memory_order_relaxed) ? slot_alloc(l, c) : NULL;
    pthread_mutex_unlock(&l->mu);
    if (p == NULL)
        return alloc_slow(c, out, err);
    out->data = p;
    out->cap = class_bytes(c);
    return VKS_OK;
}

vks_status vks_secret_dup(const void *src, size_t n, vks_secret *out, struct vks_err *err)
{
    return vks_secret_dup_with(vks_secret_alloc, "vks_secret_dup", src, n, out, err);
}

vks_status vks_secret_dup_with(vks_secret_alloc_fn alloc, const char *who, const void *src, size_t n,
                               vks_secret *out, struct vks_err *err)
{
    if (n > 0 && src == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s: src is NULL", who);
    vks_status st = alloc(n > 0 ? n : 1, out, err);
    if (st != VKS_OK)
        return st;
    if (n > 0)
        memcpy(out->data, src, n);
    out->len = n;
    return VKS_OK;
}

void vks_secret_free(vks_secret *s)
{
    if (s == NULL)
        return;
    if (s->data != NULL && vks_fork_kept_owns(s->data)) {
        vks_fork_kept_free(s); /* a credential in the kept region (vks_fork) */
        return;
    }
    if (s->data != NULL) {
        /* under the lock of the slot's lane (the mapping cannot change while any lane is held) */
        struct lane *l = my_lane();
        pthread_mutex_lock(&l->mu);
        if (atomic_load_explicit(&g_ready, memory_order_relaxed)) {
            struct lane *owner = &lanes[atomic_load_explicit(&g.units[unit_of(s->data)].lane, memory_order_relaxed)];
            if (owner != l) {
                pthread_mutex_unlock(&l->mu);
                pthread_mutex_lock(&owner->mu);
                l = owner;
            }
        }
        if (atomic_load_explicit(&g_ready, memory_order_relaxed)) {
            slot_free(s->data, false);
            pthread_mutex_unlock(&l->mu);
        } else {
            pthread_mutex_unlock(&l->mu);
            lock_arena();
            if (g.init && !g.closed)
                slot_free(s->data, true);
            /* else: the arena was shut down or unloaded (and wiped); nothing left to release */
            unlock_arena();
        }
    }
    *s = VKS_SECRET_EMPTY;
}

bool vks_secmem_owns(const void *p, size_t n)
{
    const unsigned char *q = p;
    pthread_mutex_lock(&g_lock);
    bool ok = g.init && !g.closed && q >= g.data && n <= g.capacity && (size_t)(q - g.data) <= g.capacity - n;
    pthread_mutex_unlock(&g_lock);
    return ok;
}

void vks_secmem_shutdown(void)
{
    lock_arena();
    unmap_arena();
    atomic_fetch_add(&g_generation, 1);
    unlock_arena();
}

/* When the library is unloaded (dlclose of the Lua module) or the process exits: wipe every live
 * slot, give back the lock and the pages, but keep the mapping so that a late reader in another
 * thread reads zeros instead of faulting. */
__attribute__((destructor)) static void vks_secmem_unload(void)
{
    lock_all();
    if (g.init && !g.closed) {
        wipe_live_units();
        if (g.locked)
            munlock(g.data, g.capacity);
        madvise(g.data, g.capacity, MADV_DONTNEED);
        g.locked = false;
        g.closed = true;
        atomic_fetch_add(&g_generation, 1);
        update_ready();
    }
    unlock_arena();
}

/* ---------------------------------------------------------------------------------------------- */
/* scratch buffers                                                                                */

vks_status vks_scratch_open(size_t cap, vks_scratch *out, struct vks_err *err)
{
    if (out == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_scratch_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (cap == 0 || cap > MAX_SCRATCH)
        return vks_err_set(err, VKS_E_INVALID_ARG, "scratch size %zu is out of range (1..%zu)", cap, MAX_SCRATCH);
    /* the arena is locked first, so scratch buffers never eat the memlock budget it needs */
    lock_arena();
    if (!g.init && !g.closed)
        (void)init_locked(NULL, NULL);
    unlock_arena();
    struct vks_guarded region;
    struct vks_guard_failure why;
    if (vks_guard_map(cap, true, &region, &why) != 0)
        return vks_err_set(err, VKS_E_NOMEM, "scratch buffer: %s of %zu bytes failed: %s", why.step, cap,
                           strerror(why.errnum));
    bool locked = vks_guard_lock_region(&region); /* best effort; not counted against the arena */
    size_t body = region.len;
    pthread_mutex_lock(&g_lock);
    g_scratch_open++;
    if (locked)
        g_scratch_locked += body;
    else
        g_scratch_lock_failures++;
    pthread_mutex_unlock(&g_lock);
    out->data = region.data;
    out->locked = locked;
    out->cap = body;
    out->len = 0;
    out->map_len = region.map_len;
    return VKS_OK;
}

void vks_scratch_reset(vks_scratch *s)
{
    if (s == NULL || s->data == NULL)
        return;
    vks_wipe(s->data, s->len < s->cap ? s->len : s->cap);
    s->len = 0;
}

void vks_scratch_close(vks_scratch *s)
{
    if (s == NULL)
        return;
    if (s->data != NULL) {
        vks_wipe(s->data, s->len < s->cap ? s->len : s->cap);
        struct vks_guarded region = {
            .map = s->data - vks_guard_page_size(), .map_len = s->map_len,
            .data = s->data, .len = s->cap, .locked = s->locked,
        };
        vks_guard_unmap(&region);
        pthread_mutex_lock(&g_lock);
        g_scratch_open--;
        if (s->locked)
            g_scratch_locked -= s->cap;
        pthread_mutex_unlock(&g_lock);
    }
    memset(s, 0, sizeof *s);
}
