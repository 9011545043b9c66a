/*
 * vks_cache: the process-wide secret cache. See vks_cache.h for the contract and
 * docs/internals/cache.md for the design.
 *
 * Shape: one mutex (g_cache.mu) guards a chained hash index, an LRU list and a refresh queue. Values are
 * arena slots owned by their entry; everything else is heap. An entry is referenced by the index
 * ("linked") and by whoever is waiting on it or fetching for it (refs); dropping an entry wipes its
 * value at once and unlinks it, and the last reference frees the heap parts. Callbacks (fetch,
 * clone, free) always run with g_cache.mu released.
 *
 * Hit path: a fresh value is served without g_cache.mu and without any lock (fast_hit, a "reader"), so
 * that hits from different threads do not serialise, on different keys or the same ones. Whatever
 * fast_hit reads is written only with g_cache.mu held AND inside a writer section (readers_exclude ..
 * readers_admit: no reader is in fast_hit meanwhile): the bucket chains (link, unlink, grow),
 * has_value, value, meta, fetched_at, hint_ns, the configuration. A value is therefore never
 * wiped or replaced while a reader copies it, and an unlinked entry is out of every reader's reach
 * before it is freed. Lock order: g_cache.mu, then the writer section, then the arena's locks (a reader
 * takes only the arena's, to copy). A fast hit does not move the entry in the LRU list (that needs
 * g_cache.mu): it stores last_used and sets `marked`; eviction takes marked entries into account
 * (evict_one_locked). Everything else (misses, expiry, stale, negative answers, refresh-ahead,
 * validator changes, a full arena) goes through g_cache.mu as before.
 */
#include "vks_cache_internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>

struct cache_state g_cache = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .fetched = PTHREAD_COND_INITIALIZER,
};
pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;
atomic_llong g_clock_offset;
atomic_ullong g_meta_serial;
_Atomic(struct reader *) g_readers;
struct cache_writer_flag g_writer;
_Thread_local struct reader *t_reader;
pthread_key_t g_reader_key;
atomic_bool g_fast;

static void reader_release(void *p)
{
    struct reader *r = p;
    if (t_reader == r)
        t_reader = NULL;
    atomic_store_explicit(&r->taken, false, memory_order_release);
}

/* This thread's record: a free one, or a new one. NULL when out of memory (slow path then). */
struct reader *cache_my_reader(void)
{
    struct reader *r = t_reader;
    if (r != NULL)
        return r;
    for (r = atomic_load_explicit(&g_readers, memory_order_acquire); r != NULL; r = r->next) {
        bool free_ = false;
        if (atomic_compare_exchange_strong(&r->taken, &free_, true))
            break;
    }
    if (r == NULL) {
        if ((r = aligned_alloc(64, sizeof *r)) == NULL)
            return NULL;
        memset(r, 0, sizeof *r);
        atomic_init(&r->active, 0);
        atomic_init(&r->taken, true);
        atomic_init(&r->hits, 0);
        r->next = atomic_load_explicit(&g_readers, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&g_readers, &r->next, r, memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    pthread_setspecific(g_reader_key, r);
    t_reader = r;
    return r;
}

/* g_cache.mu held: from now on no reader is in cache_fast_hit and none enters until cache_readers_admit. Waits for
 * readers in flight (a lookup's copy: a moment). */
void cache_readers_exclude(void)
{
    atomic_store_explicit(&g_writer.on, 1, memory_order_seq_cst);
    for (struct reader *r = atomic_load_explicit(&g_readers, memory_order_acquire); r != NULL; r = r->next)
        for (unsigned spins = 0; atomic_load_explicit(&r->active, memory_order_seq_cst) != 0; spins++)
            if (spins >= 100)
                sched_yield();
}

void cache_readers_admit(void) { atomic_store_explicit(&g_writer.on, 0, memory_order_release); }

void vks_cache_test_advance_clock(double seconds)
{
    atomic_fetch_add(&g_clock_offset, (long long)(seconds * (double)NS_PER_S));
}

/* ---- fork handling ------------------------------------------------------------------------- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_cache.mu);
    cache_readers_exclude();
}

static void atfork_parent(void)
{
    cache_readers_admit();
    pthread_mutex_unlock(&g_cache.mu);
}

static void init_conds(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cache.work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&g_cache.fetched, NULL);
}

static void atfork_child(void)
{
    /* Only this thread exists now; the arena was wiped by the kernel (MADV_WIPEONFORK). The index
     * is forgotten at the next call (fork_reset); the refresh thread does not exist here.
     * g_cache.mu was locked by this thread in atfork_prepare: unlocked, not re-initialised (a
     * re-init left it held in ThreadSanitizer's view, so every lock the child took after it looked
     * nested inside the cache's, and a grandchild's fork reported a lock-order inversion). */
    for (struct reader *r = atomic_load(&g_readers); r != NULL; r = r->next)
        if (r != t_reader) { /* their threads are not here: their records are free (one may have
                              * been marked active by a reader about to see the writer and back off) */
            atomic_store(&r->active, 0);
            atomic_store(&r->taken, false);
        }
    atomic_store(&g_fast, false);
    cache_readers_admit();
    init_conds();
    g_cache.thr_running = false;
    g_cache.thr_stop = false;
    g_cache.fork_reset = true;
    pthread_mutex_unlock(&g_cache.mu);
}

void cache_once_init(void)
{
    init_conds();
    g_cache.lru.next = g_cache.lru.prev = &g_cache.lru;
    pthread_key_create(&g_reader_key, reader_release);
    /* fork handlers: prepare handlers run in the reverse order of registration, and a lookup
     * holding a cache lock takes the arena's (cache -> secmem). The arena registers its own
     * first (its status call does), so that before fork the cache's locks are taken first. */
    struct vks_secmem_status ms;
    vks_secmem_get_status(&ms);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- configuration ------------------------------------------------------------------------- */

void vks_cache_config_defaults(struct vks_cache_config *cfg)
{
    cfg->ttl_s = 300;
    cfg->max_stale_s = 900;
    cfg->neg_ttl_s = 5;
    cfg->refresh_fraction = 0.75;
    cfg->capacity = 0;
}

static vks_status env_seconds(const char *name, double *dst, double lo, double hi, struct vks_err *err)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return VKS_OK;
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(d) || d < lo || d > hi)
        return vks_err_set(err, VKS_E_CONFIG, "%s must be a number from %g to %g", name, lo, hi);
    *dst = d;
    return VKS_OK;
}

vks_status vks_cache_config_from_env(struct vks_cache_config *cfg, struct vks_err *err)
{
    vks_status st;
    if ((st = env_seconds("VKS_CACHE_TTL", &cfg->ttl_s, 0, 1e9, err)) != VKS_OK ||
        (st = env_seconds("VKS_CACHE_MAX_STALE", &cfg->max_stale_s, 0, 1e9, err)) != VKS_OK ||
        (st = env_seconds("VKS_CACHE_NEG_TTL", &cfg->neg_ttl_s, 0, 1e9, err)) != VKS_OK ||
        (st = env_seconds("VKS_CACHE_REFRESH", &cfg->refresh_fraction, 0.01, 1, err)) != VKS_OK)
        return st;
    double cap = (double)cfg->capacity;
    if ((st = env_seconds("VKS_CACHE_CAPACITY", &cap, 0, CAPACITY_MAX, err)) != VKS_OK)
        return st;
    if (cap != floor(cap))
        return vks_err_set(err, VKS_E_CONFIG, "VKS_CACHE_CAPACITY must be a whole number");
    cfg->capacity = (size_t)cap;
    return VKS_OK;
}

static vks_status check_config(const struct vks_cache_config *c, struct vks_err *err)
{
    if (!isfinite(c->ttl_s) || c->ttl_s < 0 || c->ttl_s > 1e9)
        return vks_err_set(err, VKS_E_CONFIG, "cache.ttl must be from 0 to 1e9 seconds");
    if (!isfinite(c->max_stale_s) || c->max_stale_s < 0 || c->max_stale_s > 1e9)
        return vks_err_set(err, VKS_E_CONFIG, "cache.max_stale must be from 0 to 1e9 seconds");
    if (!isfinite(c->neg_ttl_s) || c->neg_ttl_s < 0 || c->neg_ttl_s > 1e9)
        return vks_err_set(err, VKS_E_CONFIG, "cache.neg_ttl must be from 0 to 1e9 seconds");
    if (!isfinite(c->refresh_fraction) || c->refresh_fraction <= 0 || c->refresh_fraction > 1)
        return vks_err_set(err, VKS_E_CONFIG, "cache.refresh must be in (0, 1]");
    if (c->capacity > CAPACITY_MAX)
        return vks_err_set(err, VKS_E_CONFIG, "cache.capacity must be at most %u", CAPACITY_MAX);
    return VKS_OK;
}

static size_t derived_capacity(void)
{
    struct vks_secmem_status ss;
    vks_secmem_get_status(&ss);
    size_t bytes = ss.capacity ? ss.capacity : DEFAULT_LOCKED_BYTES;
    size_t n = bytes / BYTES_PER_ENTRY;
    if (n > DEFAULT_CAPACITY_MAX)
        n = DEFAULT_CAPACITY_MAX;
    return n ? n : 1;
}

static void apply_config_locked(const struct vks_cache_config *c)
{
    cache_readers_exclude(); /* cache_fast_hit reads ttl_ns and refresh_fraction */
    g_cache.cfg = *c;
    g_cache.ttl_ns = (int64_t)(c->ttl_s * NS_PER_S);
    g_cache.max_stale_ns = (int64_t)(c->max_stale_s * NS_PER_S);
    g_cache.neg_ttl_ns = (int64_t)(c->neg_ttl_s * NS_PER_S);
    g_cache.capacity = c->capacity ? c->capacity : derived_capacity();
    g_cache.st.capacity = g_cache.capacity;
    g_cache.configured = true;
    cache_readers_admit();
}

/* Called with g_cache.mu held: loads defaults + environment the first time. */
void cache_ensure_configured_locked(void)
{
    if (g_cache.configured)
        return;
    struct vks_cache_config c;
    struct vks_err e;
    vks_err_clear(&e);
    vks_cache_config_defaults(&c);
    vks_status st = vks_cache_config_from_env(&c, &e);
    if (st == VKS_OK)
        st = check_config(&c, &e);
    if (st != VKS_OK) {
        g_cache.config_status = st;
        snprintf(g_cache.config_msg, sizeof g_cache.config_msg, "%s", e.msg);
        vks_cache_config_defaults(&c);
    } else {
        g_cache.config_status = VKS_OK;
    }
    apply_config_locked(&c);
}

/* ---- management ---------------------------------------------------------------------------- */

vks_status vks_cache_config_check(const struct vks_cache_config *cfg, struct vks_err *err)
{
    if (cfg == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no configuration");
    return check_config(cfg, err);
}

vks_status vks_cache_configure(const struct vks_cache_config *cfg, struct vks_err *err)
{
    if (cfg == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no configuration");
    vks_status st = check_config(cfg, err);
    if (st != VKS_OK)
        return st;
    pthread_once(&g_cache_once, cache_once_init);
    struct entry *dead = NULL;
    pthread_mutex_lock(&g_cache.mu);
    cache_fork_reset_locked();
    apply_config_locked(cfg);
    g_cache.config_status = VKS_OK;
    atomic_store(&g_fast, g_cache.ttl_ns > 0);
    while (g_cache.count > g_cache.capacity && cache_evict_one_locked(NULL, &dead))
        ;
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
    return VKS_OK;
}

void vks_cache_get_config(struct vks_cache_config *out)
{
    pthread_once(&g_cache_once, cache_once_init);
    pthread_mutex_lock(&g_cache.mu);
    cache_ensure_configured_locked();
    *out = g_cache.cfg;
    out->capacity = g_cache.capacity;
    pthread_mutex_unlock(&g_cache.mu);
}

struct where {
    const char *s;
    size_t sl;
    bool prefix;
};

static bool where_match(const char *identity, void *arg)
{
    const struct where *w = arg;
    return w->prefix ? strncmp(identity, w->s, w->sl) == 0 : strcmp(identity, w->s) == 0;
}

size_t vks_cache_invalidate_match(bool (*match)(const char *identity, void *arg), void *arg)
{
    pthread_once(&g_cache_once, cache_once_init);
    size_t n = 0;
    struct entry *dead = NULL;
    pthread_mutex_lock(&g_cache.mu);
    cache_fork_reset_locked();
    struct entry *e = g_cache.lru.next;
    while (e != &g_cache.lru) {
        struct entry *nx = e->next;
        if (match(e->identity, arg)) {
            cache_drop_locked(e, &dead);
            n++;
        }
        e = nx;
    }
    g_cache.st.invalidations += n;
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
    return n;
}

static size_t invalidate_where(const char *s, bool prefix)
{
    if (s == NULL)
        return 0;
    struct where w = { s, strlen(s), prefix };
    return vks_cache_invalidate_match(where_match, &w);
}

size_t vks_cache_invalidate(const char *identity) { return invalidate_where(identity, false); }

size_t vks_cache_invalidate_prefix(const char *prefix) { return invalidate_where(prefix, true); }

size_t vks_cache_flush(void) { return invalidate_where("", true); }

void vks_cache_get_stats(struct vks_cache_stats *out)
{
    pthread_once(&g_cache_once, cache_once_init);
    pthread_mutex_lock(&g_cache.mu);
    cache_fork_reset_locked();
    cache_ensure_configured_locked();
    *out = g_cache.st;
    for (struct reader *r = atomic_load_explicit(&g_readers, memory_order_acquire); r != NULL; r = r->next)
        out->hits += atomic_load_explicit(&r->hits, memory_order_relaxed);
    out->entries = g_cache.count;
    out->values = g_cache.nvalues;
    out->value_bytes = g_cache.value_bytes;
    out->capacity = g_cache.capacity;
    pthread_mutex_unlock(&g_cache.mu);
}

const unsigned char *vks_cache_test_slot(const char *identity, size_t *cap)
{
    pthread_once(&g_cache_once, cache_once_init);
    const unsigned char *p = NULL;
    pthread_mutex_lock(&g_cache.mu);
    struct entry *e = cache_find_locked(hash_str(identity, strlen(identity)), identity);
    if (e && e->has_value) {
        p = e->value.data;
        if (cap)
            *cap = e->value.cap;
    }
    pthread_mutex_unlock(&g_cache.mu);
    return p;
}

void vks_cache_shutdown(void)
{
    pthread_once(&g_cache_once, cache_once_init);
    pthread_mutex_lock(&g_cache.mu);
    atomic_store(&g_fast, false);
    if (g_cache.thr_running) {
        g_cache.thr_stop = true;
        pthread_cond_broadcast(&g_cache.work);
        pthread_mutex_unlock(&g_cache.mu);
        pthread_join(g_cache.thr, NULL);
        pthread_mutex_lock(&g_cache.mu);
        g_cache.thr_running = false;
        g_cache.thr_stop = false;
    }
    cache_fork_reset_locked();
    struct entry *dead = NULL;
    while (g_cache.qhead) {
        struct entry *e = g_cache.qhead;
        g_cache.qhead = e->qnext;
        e->queued = false;
        cache_unref_locked(e, &dead);
    }
    g_cache.qtail = NULL;
    while (g_cache.lru.next != &g_cache.lru)
        cache_drop_locked(g_cache.lru.next, &dead);
    cache_readers_exclude();
    free(g_cache.buckets);
    g_cache.buckets = NULL;
    g_cache.nbuckets = 0;
    for (struct reader *r = atomic_load(&g_readers); r != NULL; r = r->next)
        atomic_store(&r->hits, 0);
    cache_readers_admit();
    g_cache.configured = false;
    g_cache.config_status = VKS_OK;
    memset(&g_cache.st, 0, sizeof g_cache.st);
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
}
