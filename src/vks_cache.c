/*
 * vks_cache: the process-wide secret cache. See vks_cache.h for the contract and
 * docs/internals/cache.md for the design.
 *
 * Shape: one mutex (g.mu) guards a chained hash index, an LRU list and a refresh queue. Values are
 * arena slots owned by their entry; everything else is heap. An entry is referenced by the index
 * ("linked") and by whoever is waiting on it or fetching for it (refs); dropping an entry wipes its
 * value at once and unlinks it, and the last reference frees the heap parts. Callbacks (fetch,
 * clone, free) always run with g.mu released.
 *
 * Hit path: a fresh value is served without g.mu and without any lock (fast_hit, a "reader"), so
 * that hits from different threads do not serialise, on different keys or the same ones. Whatever
 * fast_hit reads is written only with g.mu held AND inside a writer section (readers_exclude ..
 * readers_admit: no reader is in fast_hit meanwhile): the bucket chains (link, unlink, grow),
 * has_value, value, meta, fetched_at, hint_ns, the configuration. A value is therefore never
 * wiped or replaced while a reader copies it, and an unlinked entry is out of every reader's reach
 * before it is freed. Lock order: g.mu, then the writer section, then the arena's locks (a reader
 * takes only the arena's, to copy). A fast hit does not move the entry in the LRU list (that needs
 * g.mu): it stores last_used and sets `marked`; eviction takes marked entries into account
 * (evict_one_locked). Everything else (misses, expiry, stale, negative answers, refresh-ahead,
 * validator changes, a full arena) goes through g.mu as before.
 */
#include "vks_cache.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000LL
#define IDENTITY_MAX 4096
#define CAPACITY_MAX 10000000u
#define DEFAULT_LOCKED_BYTES (7u * 1024u * 1024u)
#define BYTES_PER_ENTRY 96u
#define DEFAULT_CAPACITY_MAX 100000u
#define SCAN_INTERVAL_NS (1 * NS_PER_S)
#define COPY_RETRIES 16

struct meta_ref {
    atomic_uint refs;
    uint64_t serial;             /* unique per meta_ref: which metadata a caller was given */
    struct vks_cache_meta m;
};
static atomic_ullong g_meta_serial;

struct entry {
    struct entry *hnext;          /* hash chain                                   */
    struct entry *prev, *next;    /* LRU list, g.lru.next is the most recent     */
    struct entry *qnext;          /* refresh queue                                */
    uint64_t hash;
    char *identity;
    char *validator;
    vks_secret value;
    bool has_value;
    bool linked;                  /* in the index and the LRU list                */
    bool fetching;                /* a fetch for it is in flight                  */
    bool queued;                  /* on the refresh queue                         */
    unsigned refs;                /* waiters + fetchers + queue                   */
    struct meta_ref *meta;
    int64_t fetched_at, hint_ns, neg_until, retry_after;
    _Atomic int64_t last_used;    /* time of the last hit (fast hits too)          */
    atomic_bool marked;           /* hit on the fast path since last placed in LRU */
    vks_status last_status;       /* result of the last fetch                     */
    char *last_msg;               /* its message when it failed (no secrets)      */
    uint64_t gen;                 /* completed fetches                            */
    const struct vks_cache_source_ops *ops;
    void *src;                    /* clone used by refresh-ahead, or NULL         */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t fetched;       /* a fetch completed (broadcast)                */
    pthread_cond_t work;          /* refresh thread: queue or stop                */
    bool configured;
    vks_status config_status;     /* error of the environment at lazy init        */
    char config_msg[VKS_ERR_MSG_MAX];
    struct vks_cache_config cfg;
    int64_t ttl_ns, max_stale_ns, neg_ttl_ns;
    size_t capacity;
    struct entry **buckets;
    size_t nbuckets, count, nvalues, value_bytes;
    struct entry lru;             /* sentinel                                     */
    struct entry *qhead, *qtail;
    pthread_t thr;
    bool thr_running, thr_stop;
    bool fork_reset;
    struct vks_cache_stats st;
} g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .fetched = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_llong g_clock_offset;

/* The hit path's readers (see the top of this file). g_fast: the cache is configured, caching is
 * on and no fork reset is pending, so fast_hit may look.
 *
 * Every thread that looks up owns a record on a cache line of its own. fast_hit marks its record
 * active, checks that no writer is in, reads, and clears the mark; a writer (g.mu held) raises
 * g_writer and waits until no record is active, so readers and writers exclude each other while
 * a hit writes nothing but its own record (two threads hitting never hand a line back and forth).
 * A reader that finds a writer in takes the slow path (g.mu) instead of waiting. The mark and the
 * flag are a Dekker pair (sequentially consistent store, then load, on both sides): at least one
 * of the two sees the other. Records are never freed (a thread's record goes to a later thread
 * after it exits), so a writer walks them without a lock. */
struct reader {
    _Alignas(64) atomic_uint active; /* in fast_hit                                          */
    atomic_bool taken;               /* owned by a live thread                               */
    _Atomic uint64_t hits;           /* fast hits: written by the owner, summed by get_stats */
    struct reader *next;             /* every record ever made; set before it is published  */
};
static _Atomic(struct reader *) g_readers;
static struct {
    _Alignas(64) atomic_uint on; /* a writer is in (g.mu held): readers keep off */
    char pad[64 - sizeof(atomic_uint)];
} g_writer;
static _Thread_local struct reader *t_reader;
static pthread_key_t g_reader_key; /* its destructor gives a record back at thread exit */
static atomic_bool g_fast;

static void reader_release(void *p)
{
    struct reader *r = p;
    if (t_reader == r)
        t_reader = NULL;
    atomic_store_explicit(&r->taken, false, memory_order_release);
}

/* This thread's record: a free one, or a new one. NULL when out of memory (slow path then). */
static struct reader *my_reader(void)
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

/* g.mu held: from now on no reader is in fast_hit and none enters until readers_admit. Waits for
 * readers in flight (a lookup's copy: a moment). */
static void readers_exclude(void)
{
    atomic_store_explicit(&g_writer.on, 1, memory_order_seq_cst);
    for (struct reader *r = atomic_load_explicit(&g_readers, memory_order_acquire); r != NULL; r = r->next)
        for (unsigned spins = 0; atomic_load_explicit(&r->active, memory_order_seq_cst) != 0; spins++)
            if (spins >= 100)
                sched_yield();
}

static void readers_admit(void) { atomic_store_explicit(&g_writer.on, 0, memory_order_release); }

/* ------------------------------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec +
           atomic_load_explicit(&g_clock_offset, memory_order_relaxed);
}

void vks_cache_test_advance_clock(double seconds)
{
    atomic_fetch_add(&g_clock_offset, (long long)(seconds * (double)NS_PER_S));
}

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 0x243f6a8885a308d3ULL ^ (n * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 32;
    return h;
}

/* ---- fork handling ------------------------------------------------------------------------- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g.mu);
    readers_exclude();
}

static void atfork_parent(void)
{
    readers_admit();
    pthread_mutex_unlock(&g.mu);
}

static void init_conds(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g.work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&g.fetched, NULL);
}

static void atfork_child(void)
{
    /* Only this thread exists now; the arena was wiped by the kernel (MADV_WIPEONFORK). The index
     * is forgotten at the next call (fork_reset); the refresh thread does not exist here. */
    pthread_mutex_init(&g.mu, NULL);
    for (struct reader *r = atomic_load(&g_readers); r != NULL; r = r->next)
        if (r != t_reader) { /* their threads are not here: their records are free (one may have
                              * been marked active by a reader about to see the writer and back off) */
            atomic_store(&r->active, 0);
            atomic_store(&r->taken, false);
        }
    atomic_store(&g_fast, false);
    readers_admit();
    init_conds();
    g.thr_running = false;
    g.thr_stop = false;
    g.fork_reset = true;
}

static void once_init(void)
{
    init_conds();
    g.lru.next = g.lru.prev = &g.lru;
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
    readers_exclude(); /* fast_hit reads ttl_ns and refresh_fraction */
    g.cfg = *c;
    g.ttl_ns = (int64_t)(c->ttl_s * NS_PER_S);
    g.max_stale_ns = (int64_t)(c->max_stale_s * NS_PER_S);
    g.neg_ttl_ns = (int64_t)(c->neg_ttl_s * NS_PER_S);
    g.capacity = c->capacity ? c->capacity : derived_capacity();
    g.st.capacity = g.capacity;
    g.configured = true;
    readers_admit();
}

/* Called with g.mu held: loads defaults + environment the first time. */
static void ensure_configured_locked(void)
{
    if (g.configured)
        return;
    struct vks_cache_config c;
    struct vks_err e;
    vks_err_clear(&e);
    vks_cache_config_defaults(&c);
    vks_status st = vks_cache_config_from_env(&c, &e);
    if (st == VKS_OK)
        st = check_config(&c, &e);
    if (st != VKS_OK) {
        g.config_status = st;
        snprintf(g.config_msg, sizeof g.config_msg, "%s", e.msg);
        vks_cache_config_defaults(&c);
    } else {
        g.config_status = VKS_OK;
    }
    apply_config_locked(&c);
}

/* ---- entries ------------------------------------------------------------------------------- */

static void meta_unref(struct meta_ref *m)
{
    if (m == NULL)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        free(m->m.custom_metadata_json);
        free(m);
    }
}

static struct meta_ref *meta_ref_of(const struct vks_cache_meta *src)
{
    struct meta_ref *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    atomic_init(&m->refs, 1);
    m->serial = atomic_fetch_add_explicit(&g_meta_serial, 1, memory_order_relaxed) + 1;
    m->m = *src;
    m->m.token_accessor[sizeof m->m.token_accessor - 1] = '\0';
    return m;
}

static void fetch_clear(struct vks_cache_fetch *f)
{
    vks_secret_free(&f->value);
    free(f->meta.custom_metadata_json);
    f->meta.custom_metadata_json = NULL;
}

/* Wipes the value only: the entry keeps its metadata (no secret). */
static void withhold_value_locked(struct entry *e)
{
    if (!e->has_value)
        return;
    g.value_bytes -= e->value.cap;
    g.nvalues--;
    readers_exclude();
    vks_secret_free(&e->value);
    e->has_value = false;
    readers_admit();
}

/* Wipes the value and forgets its metadata (also metadata remembered after a refusal). */
static void wipe_value_locked(struct entry *e)
{
    withhold_value_locked(e);
    readers_exclude();
    struct meta_ref *m = e->meta;
    e->meta = NULL;
    readers_admit();
    meta_unref(m);
}

static void set_msg(struct entry *e, const char *msg)
{
    free(e->last_msg);
    e->last_msg = (msg && *msg) ? strdup(msg) : NULL;
}

/* Frees the heap parts of an unlinked, unreferenced entry. Runs without g.mu (ops->free). */
static void free_entry(struct entry *e)
{
    if (e->src && e->ops && e->ops->free)
        e->ops->free(e->src);
    vks_secret_free(&e->value);
    meta_unref(e->meta);
    free(e->identity);
    free(e->validator);
    free(e->last_msg);
    free(e);
}

static void free_dead(struct entry *dead)
{
    while (dead) {
        struct entry *n = dead->hnext;
        free_entry(dead);
        dead = n;
    }
}

static void lru_unlink(struct entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct entry *e)
{
    atomic_store_explicit(&e->marked, false, memory_order_relaxed);
    e->next = g.lru.next;
    e->prev = &g.lru;
    g.lru.next->prev = e;
    g.lru.next = e;
}

static void lru_touch(struct entry *e)
{
    if (g.lru.next != e) {
        lru_unlink(e);
        lru_push_front(e);
    }
}

static struct entry *find_locked(uint64_t h, const char *identity)
{
    if (g.nbuckets == 0)
        return NULL;
    for (struct entry *e = g.buckets[h & (g.nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->identity, identity) == 0)
            return e;
    return NULL;
}

/* Wipes the value, unlinks from the index and the LRU list; the entry goes to *dead when nobody
 * else references it (otherwise the last reference frees it). */
static void drop_locked(struct entry *e, struct entry **dead)
{
    wipe_value_locked(e);
    if (e->linked) {
        readers_exclude();
        struct entry **pp = &g.buckets[e->hash & (g.nbuckets - 1)];
        while (*pp != e)
            pp = &(*pp)->hnext;
        *pp = e->hnext;
        e->hnext = NULL;
        readers_admit();
        lru_unlink(e);
        e->linked = false;
        g.count--;
    }
    if (e->refs == 0) {
        e->hnext = *dead;
        *dead = e;
    }
}

static void unref_locked(struct entry *e, struct entry **dead)
{
    e->refs--;
    if (!e->linked && e->refs == 0) {
        e->hnext = *dead;
        *dead = e;
    }
}

/*
 * Drops the least recently used idle entry (not `keep`). Fast hits mark entries instead of moving
 * them, so the list is in order of the last slow-path use: walking from the least recent end, the
 * marked entries met before the first unmarked idle one may have been used less recently than it
 * (their last_used says); the victim is the idle entry with the oldest last_used among those, and
 * the marked survivors move to the front, most recent first.
 */
#define EVICT_SCAN 64

static bool evict_one_locked(const struct entry *keep, struct entry **dead)
{
    struct entry *seen[EVICT_SCAN], *victim = NULL;
    int n = 0;
    for (struct entry *e = g.lru.prev; e != &g.lru && n < EVICT_SCAN; e = e->prev) {
        if (e == keep || e->refs > 0 || e->fetching)
            continue;
        if (victim == NULL || e->last_used < victim->last_used)
            victim = e;
        if (!atomic_load_explicit(&e->marked, memory_order_relaxed))
            break;
        seen[n++] = e;
    }
    if (victim == NULL)
        return false;
    /* survivors to the front in order of last use (insertion sort: n is small) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && seen[j - 1]->last_used > seen[j]->last_used; j--) {
            struct entry *t = seen[j];
            seen[j] = seen[j - 1];
            seen[j - 1] = t;
        }
    for (int i = 0; i < n; i++)
        if (seen[i] != victim) {
            lru_unlink(seen[i]);
            lru_push_front(seen[i]);
        }
    drop_locked(victim, dead);
    g.st.evictions++;
    return true;
}

static void grow_locked(void)
{
    size_t nb = g.nbuckets ? g.nbuckets * 2 : 256;
    struct entry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    readers_exclude();
    for (size_t i = 0; i < g.nbuckets; i++) {
        struct entry *e = g.buckets[i];
        while (e) {
            struct entry *n = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = n;
        }
    }
    free(g.buckets);
    g.buckets = b;
    g.nbuckets = nb;
    readers_admit();
}

static struct entry *new_entry_locked(uint64_t h, const char *identity, const char *validator,
                                      struct entry **dead)
{
    while (g.count >= g.capacity && evict_one_locked(NULL, dead))
        ;
    if (g.nbuckets == 0 || g.count >= g.nbuckets * 2)
        grow_locked();
    if (g.nbuckets == 0)
        return NULL;
    struct entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->identity = strdup(identity);
    e->validator = validator ? strdup(validator) : NULL;
    if (e->identity == NULL || (validator && e->validator == NULL)) {
        free(e->identity);
        free(e->validator);
        free(e);
        return NULL;
    }
    e->hash = h;
    e->last_status = VKS_OK;
    size_t b = h & (g.nbuckets - 1);
    readers_exclude();
    e->hnext = g.buckets[b];
    g.buckets[b] = e;
    readers_admit();
    lru_push_front(e);
    e->linked = true;
    g.count++;
    return e;
}

static int64_t eff_ttl(const struct entry *e)
{
    return (e->hint_ns > 0 && e->hint_ns < g.ttl_ns) ? e->hint_ns : g.ttl_ns;
}

static int64_t expires_at(const struct entry *e) { return e->fetched_at + eff_ttl(e); }

static int64_t stale_limit(const struct entry *e) { return expires_at(e) + g.max_stale_ns; }

/* The entry holds no value but the metadata of one withheld from a refused caller, until the
 * value would have expired. */
static bool remembers_meta(const struct entry *e, int64_t now)
{
    return !e->has_value && e->meta != NULL && now < expires_at(e);
}

static bool refresh_due(const struct entry *e, int64_t now)
{
    if (g.cfg.refresh_fraction >= 1.0 || e->src == NULL || e->fetching || e->queued || !e->has_value)
        return false;
    int64_t at = e->fetched_at + (int64_t)((double)eff_ttl(e) * g.cfg.refresh_fraction);
    return now >= at && now >= e->retry_after;
}

static void enqueue_locked(struct entry *e)
{
    e->queued = true;
    e->refs++;
    e->qnext = NULL;
    if (g.qtail)
        g.qtail->qnext = e;
    else
        g.qhead = e;
    g.qtail = e;
    pthread_cond_signal(&g.work);
}

static bool is_local(vks_status s)
{
    return s == VKS_E_LOCKED_MEMORY || s == VKS_E_NOMEM || s == VKS_E_INTERNAL ||
           s == VKS_E_INVALID_ARG || s == VKS_E_CONFIG || s == VKS_E_AUDIT_UNAVAILABLE;
}

bool vks_cache_status_is_transient(vks_status s)
{
    return s == VKS_E_UNAVAILABLE || s == VKS_E_TIMEOUT || s == VKS_E_SEALED || s == VKS_E_TLS ||
           s == VKS_E_BAD_RESPONSE;
}

/* Entries of a parent with a source, forgotten in a forked child: never freed, but reachable (a
 * leak checker at the child's exit() would report them otherwise). */
static struct entry *g_fork_graveyard;

/* Forgets every entry in a forked child: the slots were wiped by the kernel and belong to the
 * parent's arena state, so they are not freed; sources are not freed either (their free callback
 * may touch parent-only state) and stay reachable from g_fork_graveyard. */
static void fork_reset_locked(void)
{
    if (!g.fork_reset)
        return;
    g.fork_reset = false;
    readers_exclude();
    for (size_t i = 0; i < g.nbuckets; i++) {
        struct entry *e = g.buckets[i];
        while (e) {
            struct entry *n = e->hnext;
            meta_unref(e->meta);
            free(e->identity);
            free(e->validator);
            free(e->last_msg);
            if (e->src) {
                e->identity = e->validator = e->last_msg = NULL;
                e->meta = NULL;
                e->hnext = g_fork_graveyard;
                g_fork_graveyard = e;
            } else {
                free(e);
            }
            e = n;
        }
        g.buckets[i] = NULL;
    }
    g.lru.next = g.lru.prev = &g.lru;
    g.qhead = g.qtail = NULL;
    g.count = g.nvalues = g.value_bytes = 0;
    readers_admit();
}

/* ---- refresh thread ------------------------------------------------------------------------ */

static void scan_locked(int64_t now, struct entry **dead)
{
    struct entry *e = g.lru.prev;
    while (e != &g.lru) {
        struct entry *p = e->prev;
        if (e->has_value && now >= stale_limit(e) && !e->fetching) {
            wipe_value_locked(e);
            g.st.expirations++;
        }
        if (!e->has_value && !e->fetching && e->refs == 0 && now >= e->neg_until &&
            !remembers_meta(e, now)) {
            drop_locked(e, dead);
        } else if (refresh_due(e, now) && e->last_used >= e->fetched_at) {
            enqueue_locked(e);
        }
        e = p;
    }
}

/* Records a successful fetch (its metadata and times) in place of whatever e held; the value is
 * not installed (install_locked does that; a value withheld from a refused caller is not). */
static void note_fetch_locked(struct entry *e, const struct vks_cache_fetch *fr,
                              struct meta_ref *meta, int64_t now)
{
    wipe_value_locked(e);
    readers_exclude(); /* fast_hit reads these */
    e->meta = meta;
    e->fetched_at = now;
    e->hint_ns = fr->ttl_hint_s > 0 ? (int64_t)(fr->ttl_hint_s * NS_PER_S) : 0;
    if (e->hint_ns == 0 && fr->ttl_hint_s > 0)
        e->hint_ns = 1;
    readers_admit();
    e->neg_until = 0;
    e->retry_after = 0;
    e->last_status = VKS_OK;
    set_msg(e, NULL);
}

static void install_locked(struct entry *e, struct vks_cache_fetch *fr, struct meta_ref *meta,
                           int64_t now)
{
    note_fetch_locked(e, fr, meta, now);
    readers_exclude();
    e->value = fr->value;
    fr->value = VKS_SECRET_EMPTY;
    e->has_value = true;
    readers_admit();
    g.nvalues++;
    g.value_bytes += e->value.cap;
}

static void *refresher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.mu);
    int64_t next_scan = now_ns() + SCAN_INTERVAL_NS;
    while (!g.thr_stop) {
        struct entry *dead = NULL;
        int64_t now = now_ns();
        if (now >= next_scan) {
            scan_locked(now, &dead);
            next_scan = now + SCAN_INTERVAL_NS;
        }
        struct entry *e = g.qhead;
        if (e == NULL) {
            if (dead) {
                pthread_mutex_unlock(&g.mu);
                free_dead(dead);
                pthread_mutex_lock(&g.mu);
                continue;
            }
            /* real time: the test clock offset only moves deadlines, it never sleeps */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&g.work, &g.mu, &ts);
            continue;
        }
        g.qhead = e->qnext;
        if (g.qhead == NULL)
            g.qtail = NULL;
        e->queued = false;
        if (!e->linked || e->fetching || e->src == NULL || !e->has_value) {
            unref_locked(e, &dead);
            pthread_mutex_unlock(&g.mu);
            free_dead(dead);
            pthread_mutex_lock(&g.mu);
            continue;
        }
        e->fetching = true;
        const struct vks_cache_source_ops *ops = e->ops;
        void *src = e->src;
        g.st.fetches++;
        pthread_mutex_unlock(&g.mu);

        struct vks_cache_fetch fr;
        memset(&fr, 0, sizeof fr);
        struct vks_err ferr;
        vks_err_clear(&ferr);
        vks_status st = ops->fetch(src, &fr, &ferr);
        struct meta_ref *meta = NULL;
        if (st == VKS_OK && (meta = meta_ref_of(&fr.meta)) == NULL)
            st = vks_err_set(&ferr, VKS_E_NOMEM, "out of memory caching metadata");
        if (meta)
            fr.meta.custom_metadata_json = NULL; /* owned by meta now */

        pthread_mutex_lock(&g.mu);
        now = now_ns();
        e->fetching = false;
        e->gen++;
        e->last_status = st;
        pthread_cond_broadcast(&g.fetched);
        if (e->linked) {
            if (st == VKS_OK) {
                install_locked(e, &fr, meta, now);
                meta = NULL;
                g.st.refreshes++;
            } else {
                g.st.refresh_failures++;
                set_msg(e, ferr.msg);
                e->retry_after = now + (g.neg_ttl_ns > NS_PER_S ? g.neg_ttl_ns : NS_PER_S);
                if (vks_cache_status_is_transient(st)) {
                    e->neg_until = now + g.neg_ttl_ns;
                } else if (!is_local(st)) {
                    wipe_value_locked(e);
                    e->neg_until = now + g.neg_ttl_ns;
                    g.st.revocations++;
                }
            }
        }
        unref_locked(e, &dead);
        pthread_mutex_unlock(&g.mu);
        fetch_clear(&fr);
        meta_unref(meta);
        free_dead(dead);
        pthread_mutex_lock(&g.mu);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

/* At exit the refresh thread is asked to stop and given 2 s to finish a fetch in flight, so that
 * it is not inside libcurl/OpenSSL while their own exit handlers (registered earlier, so run
 * later) tear them down. A thread still blocked after that is left to the exit. */
static void stop_at_exit(void)
{
    pthread_mutex_lock(&g.mu);
    bool running = g.thr_running;
    pthread_t thr = g.thr;
    if (running) {
        g.thr_stop = true;
        pthread_cond_broadcast(&g.work);
    }
    pthread_mutex_unlock(&g.mu);
    if (!running)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    if (pthread_timedjoin_np(thr, NULL, &until) == 0) {
        pthread_mutex_lock(&g.mu);
        g.thr_running = false;
        pthread_mutex_unlock(&g.mu);
    }
}

static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static void register_atexit(void) { atexit(stop_at_exit); }

static void start_thread_locked(void)
{
    if (g.thr_running || g.thr_stop)
        return;
    pthread_once(&g_atexit_once, register_atexit);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g.thr_stop = false;
    if (pthread_create(&g.thr, NULL, refresher, NULL) == 0)
        g.thr_running = true;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- lookups ------------------------------------------------------------------------------- */

const char *vks_cache_outcome_name(enum vks_cache_outcome o)
{
    switch (o) {
    case VKS_CACHE_HIT: return "hit";
    case VKS_CACHE_MISS: return "miss";
    case VKS_CACHE_REFRESH: return "refresh";
    case VKS_CACHE_STALE: return "stale";
    case VKS_CACHE_NEGATIVE: return "negative";
    case VKS_CACHE_ERROR: return "error";
    case VKS_CACHE_BYPASS: return "bypass";
    case VKS_CACHE_NONE: break;
    }
    return "none";
}

void vks_cache_info_release(struct vks_cache_info *info)
{
    if (info == NULL)
        return;
    meta_unref(info->meta_ref_);
    info->meta_ref_ = NULL;
    info->meta = NULL;
    info->meta_copy_.custom_metadata_json = NULL;
}

/* The caller gets a copy of the metadata: a hit writes nothing shared, except a reference to
 * m when it holds custom metadata (the copy points at its text). */
static void info_set_meta(struct vks_cache_info *info, struct meta_ref *m)
{
    if (m == NULL)
        return;
    info->meta_copy_ = m->m;
    info->meta = &info->meta_copy_;
    info->meta_serial_ = m->serial;
    if (m->m.custom_metadata_json != NULL) {
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
        info->meta_ref_ = m;
    }
}

/* Copies e's value into a fresh slot for the caller, evicting idle entries when the arena is
 * full. */
static vks_status copy_out_locked(struct entry *e, vks_secret *out, struct vks_err *err,
                                  struct entry **dead)
{
    vks_status st = VKS_OK;
    for (int i = 0; i <= COPY_RETRIES; i++) {
        st = vks_secret_dup(e->value.data, e->value.len, out, err);
        if (st != VKS_E_LOCKED_MEMORY || !evict_one_locked(e, dead))
            break;
    }
    return st;
}

/* Answers a lookup from e's last failed fetch: with serve_stale, a copy of the last good value
 * marked stale; otherwise the remembered failure (a negative answer). Caller holds g.mu. */
static vks_status answer_from_failure_locked(struct entry *e, int64_t now, bool serve_stale,
                                             vks_secret *out, struct vks_cache_info *info,
                                             struct vks_err *err, struct entry **dead)
{
    vks_status rc;
    if (serve_stale) {
        rc = copy_out_locked(e, out, err, dead);
        if (rc == VKS_OK) {
            info->outcome = VKS_CACHE_STALE;
            info->age_s = (double)(now - e->fetched_at) / NS_PER_S;
            info->fetch_status = e->last_status;
            info_set_meta(info, e->meta);
            g.st.stale++;
        }
        return rc;
    }
    rc = vks_err_set(err, e->last_status, "%s", e->last_msg ? e->last_msg : vks_status_code(e->last_status));
    info->outcome = VKS_CACHE_NEGATIVE;
    info->fetch_status = rc;
    g.st.negative++;
    return rc;
}

/* A fetch failed for lack of arena space: evicts up to COPY_RETRIES idle least recently used
 * entries (not `keep`) and says whether any was dropped (then the fetch is worth one retry).
 * Nothing is evicted when the arena refuses everything (require_locked without a lock). */
static bool make_room(const struct entry *keep)
{
    struct vks_secmem_status ss;
    vks_secmem_get_status(&ss);
    if (ss.require_locked && !ss.locked)
        return false;
    struct entry *dead = NULL;
    int n = 0;
    pthread_mutex_lock(&g.mu);
    while (n < COPY_RETRIES && g.nvalues > 0 && evict_one_locked(keep, &dead))
        n++;
    if (n > 0)
        g.st.fetches++;
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
    return n > 0;
}

static vks_status fail_fetch_status(vks_status st, struct vks_err *ferr)
{
    if (st == VKS_OK || (unsigned)st >= VKS_STATUS_COUNT) {
        st = VKS_E_INTERNAL;
        vks_err_set(ferr, st, "cache: fetch returned an invalid status");
    }
    if (ferr->msg[0] == '\0')
        vks_err_set(ferr, st, "lookup failed (%s)", vks_status_code(st));
    return st;
}

/* The answer to a caller that ops->admit refused (g.mu held: counts it). */
static vks_status refuse_locked(vks_status st, const struct vks_err *aerr,
                                struct vks_cache_info *info, struct vks_err *err)
{
    if (st == VKS_OK || (unsigned)st >= VKS_STATUS_COUNT)
        st = VKS_E_INTERNAL;
    g.st.refused++;
    info->fetch_status = st;
    return vks_err_set(err, st, "%s", aerr->msg[0] ? aerr->msg : vks_status_code(st));
}

static vks_status bypass(const struct vks_cache_source_ops *ops, void *source, vks_secret *out,
                         struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_cache_fetch fr;
    memset(&fr, 0, sizeof fr);
    struct vks_err ferr;
    vks_err_clear(&ferr);
    info->outcome = VKS_CACHE_BYPASS;
    info->waited = true;
    vks_status st = ops->fetch(source, &fr, &ferr);
    pthread_mutex_lock(&g.mu);
    g.st.fetches++;
    g.st.waits++;
    g.st.misses++;
    if (st != VKS_OK)
        g.st.errors++;
    pthread_mutex_unlock(&g.mu);
    if (st != VKS_OK) {
        st = fail_fetch_status(st, &ferr);
        fetch_clear(&fr);
        info->fetch_status = st;
        return vks_err_set(err, st, "%s", ferr.msg);
    }
    struct meta_ref *m = meta_ref_of(&fr.meta);
    if (m == NULL) {
        fetch_clear(&fr);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    fr.meta.custom_metadata_json = NULL;
    info_set_meta(info, m);
    meta_unref(m);
    vks_status ast = ops->admit != NULL ? ops->admit(source, info->meta, &ferr) : VKS_OK;
    if (ast != VKS_OK) {
        fetch_clear(&fr); /* the refused value is wiped at once */
        pthread_mutex_lock(&g.mu);
        vks_status rc = refuse_locked(ast, &ferr, info, err);
        pthread_mutex_unlock(&g.mu);
        return rc;
    }
    *out = fr.value;
    return VKS_OK;
}

/* ---- vks_cache_get, step by step ----------------------------------------------------------- */

/* What a step taken under g.mu decided for the caller. */
enum step {
    STEP_ANSWERED, /* out/info/err are filled, rc says how                                   */
    STEP_LEAD,     /* nothing usable and no fetch in flight: this caller fetches             */
    STEP_RESTART,  /* the entry was dropped while this caller waited: look it up again       */
    STEP_AGAIN,    /* the entry changed (a fetch completed, metadata admitted): judge again  */
};

static bool same_validator(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Step 1: the entry for identity. One whose validator differs is wiped and replaced. *created
 * says the entry is new (nothing to serve: the caller leads its fetch). NULL: out of memory. */
static struct entry *entry_for_locked(uint64_t h, const char *identity, const char *validator,
                                      bool *created, struct entry **dead)
{
    struct entry *e = find_locked(h, identity);
    if (e != NULL && !same_validator(validator, e->validator)) {
        drop_locked(e, dead);
        g.st.invalidations++;
        e = NULL;
    }
    *created = e == NULL;
    return e != NULL ? e : new_entry_locked(h, identity, validator, dead);
}

/* A fresh value: a copy for the caller (HIT), and refresh-ahead when the entry is due. */
static vks_status serve_hit_locked(struct entry *e, int64_t now, bool waited, vks_secret *out,
                                   struct vks_cache_info *info, struct vks_err *err,
                                   struct entry **dead)
{
    vks_status rc = copy_out_locked(e, out, err, dead);
    if (rc != VKS_OK) {
        info->outcome = VKS_CACHE_ERROR;
        info->fetch_status = rc;
        return rc;
    }
    info->outcome = VKS_CACHE_HIT;
    info->age_s = (double)(now - e->fetched_at) / NS_PER_S;
    info_set_meta(info, e->meta);
    g.st.hits++;
    if (waited)
        g.st.coalesced++;
    if (refresh_due(e, now)) {
        enqueue_locked(e);
        start_thread_locked();
    }
    return rc;
}

/* Single-flight: waits (g.mu released meanwhile) for the fetch in flight on e. A failure of that
 * fetch is shared at once (STALE or NEGATIVE); otherwise the entry is judged again. */
static enum step wait_for_fetch_locked(struct entry *e, bool *waited, vks_secret *out,
                                       struct vks_cache_info *info, struct vks_err *err,
                                       struct entry **dead, vks_status *rc)
{
    uint64_t gen = e->gen;
    if (!*waited)
        g.st.waits++;
    *waited = true;
    info->waited = true;
    e->refs++;
    while (e->fetching && e->gen == gen)
        pthread_cond_wait(&g.fetched, &g.mu);
    unref_locked(e, dead);
    if (!e->linked)
        return STEP_RESTART;
    if (e->gen == gen || e->last_status == VKS_OK || is_local(e->last_status))
        return STEP_AGAIN;
    int64_t now = now_ns();
    bool serve_stale = e->has_value && vks_cache_status_is_transient(e->last_status) &&
                       now < stale_limit(e);
    *rc = answer_from_failure_locked(e, now, serve_stale, out, info, err, dead);
    g.st.coalesced++;
    return STEP_ANSWERED;
}

/* Metadata remembered after a refusal: this caller is judged against it (ops->admit, g.mu
 * released meanwhile) without a fetch. Refused: answered at once (NEGATIVE). Admitted: *admitted
 * takes a reference to that metadata (it is not judged twice) and the entry is judged again. */
static enum step admit_remembered_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                         void *source, struct meta_ref **admitted,
                                         struct vks_cache_info *info, struct vks_err *err,
                                         struct entry **dead, vks_status *rc)
{
    struct meta_ref *m = e->meta;
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    e->refs++;
    pthread_mutex_unlock(&g.mu);
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status st = ops->admit(source, &m->m, &aerr);
    pthread_mutex_lock(&g.mu);
    unref_locked(e, dead);
    if (st != VKS_OK) {
        info->outcome = VKS_CACHE_NEGATIVE;
        info->age_s = (double)(now_ns() - e->fetched_at) / NS_PER_S;
        info_set_meta(info, m);
        meta_unref(m);
        *rc = refuse_locked(st, &aerr, info, err);
        return STEP_ANSWERED;
    }
    meta_unref(*admitted);
    *admitted = m;
    return e->linked ? STEP_AGAIN : STEP_RESTART;
}

/* One look at an existing entry: a fresh value (HIT), a remembered failure (STALE or NEGATIVE),
 * remembered metadata that refuses this caller, or a wait for the fetch in flight; STEP_LEAD when
 * none of these applies, STEP_AGAIN when the entry must be looked at again. */
static enum step judge_entry_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                    void *source, bool *waited, struct meta_ref **admitted,
                                    vks_secret *out, struct vks_cache_info *info,
                                    struct vks_err *err, struct entry **dead, vks_status *rc)
{
    int64_t now = now_ns();
    lru_touch(e);
    e->last_used = now;
    if (e->has_value && now >= stale_limit(e)) {
        wipe_value_locked(e);
        g.st.expirations++;
    }
    if (e->has_value && now < expires_at(e)) {
        *rc = serve_hit_locked(e, now, *waited, out, info, err, dead);
        return STEP_ANSWERED;
    }
    if (now < e->neg_until && e->last_status != VKS_OK) {
        *rc = answer_from_failure_locked(e, now, e->has_value, out, info, err, dead);
        if (*waited)
            g.st.coalesced++;
        return STEP_ANSWERED;
    }
    if (ops->admit != NULL && remembers_meta(e, now) && e->meta != *admitted)
        return admit_remembered_locked(e, ops, source, admitted, info, err, dead, rc);
    if (!e->fetching)
        return STEP_LEAD;
    return wait_for_fetch_locked(e, waited, out, info, err, dead, rc);
}

/* Step 2, for an existing entry: judge it until there is an answer, or this caller must lead a
 * fetch, or the entry was dropped under it (STEP_RESTART). */
static enum step answer_or_wait_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                       void *source, bool *waited, vks_secret *out,
                                       struct vks_cache_info *info, struct vks_err *err,
                                       struct entry **dead, vks_status *rc)
{
    struct meta_ref *admitted = NULL;
    enum step s;
    do {
        s = judge_entry_locked(e, ops, source, waited, &admitted, out, info, err, dead, rc);
    } while (s == STEP_AGAIN);
    meta_unref(admitted);
    return s;
}

/* Step 2b, g.mu released: a value served from the cache (HIT, STALE) is judged for this caller.
 * Refused: the caller's copy is wiped, and so is the cached value (the entry keeps only its
 * metadata), so the next admitted caller fetches. */
static vks_status admit_served(uint64_t h, const char *identity,
                               const struct vks_cache_source_ops *ops, void *source,
                               vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status st = ops->admit(source, info->meta, &aerr);
    if (st == VKS_OK)
        return VKS_OK;
    vks_secret_free(out);
    pthread_mutex_lock(&g.mu);
    struct entry *e = find_locked(h, identity);
    if (e != NULL && e->has_value && e->meta != NULL && e->meta->serial == info->meta_serial_) {
        withhold_value_locked(e);
        g.st.refused_wipes++;
    }
    vks_status rc = refuse_locked(st, &aerr, info, err);
    pthread_mutex_unlock(&g.mu);
    return rc;
}

/* What a leader's fetch produced (step 3). */
struct lead {
    struct vks_cache_fetch fr;
    struct vks_err ferr;
    vks_status st;
    struct meta_ref *meta;  /* shareable metadata of fr (on success)                        */
    void *clone;            /* source clone for refresh-ahead, or NULL                      */
    bool had_value;         /* the entry held an (expired) value: REFRESH rather than MISS  */
    vks_status refused;     /* ops->admit refused this caller: fr.value was wiped           */
};

/* Step 3a, without g.mu: calls the source (once more after making room when the arena was
 * full), makes the metadata shareable and, when wanted, clones the source for refresh-ahead. */
static void fetch_unlocked(struct entry *e, const struct vks_cache_source_ops *ops, void *source,
                           bool want_clone, struct lead *ld)
{
    vks_err_clear(&ld->ferr);
    ld->st = ops->fetch(source, &ld->fr, &ld->ferr);
    if (ld->st == VKS_E_LOCKED_MEMORY && make_room(e)) {
        /* the arena was full: idle cached values were evicted, try once more */
        fetch_clear(&ld->fr);
        memset(&ld->fr, 0, sizeof ld->fr);
        vks_err_clear(&ld->ferr);
        ld->st = ops->fetch(source, &ld->fr, &ld->ferr);
    }
    if (ld->st != VKS_OK) {
        ld->st = fail_fetch_status(ld->st, &ld->ferr);
        return;
    }
    if ((ld->meta = meta_ref_of(&ld->fr.meta)) == NULL) {
        ld->st = vks_err_set(&ld->ferr, VKS_E_NOMEM, "out of memory caching metadata");
        return;
    }
    ld->fr.meta.custom_metadata_json = NULL; /* owned by ld->meta now */
    if (ops->admit != NULL && (ld->refused = ops->admit(source, &ld->meta->m, &ld->ferr)) != VKS_OK) {
        vks_secret_free(&ld->fr.value); /* refused: wiped at once, never cached */
        return;
    }
    if (want_clone)
        ld->clone = ops->clone(source);
}

/* Step 3b, success: the value is installed (unless the entry was dropped meanwhile: then the
 * caller still gets what it asked for) and a copy returned (MISS or REFRESH). */
static vks_status install_fetched_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                         struct lead *ld, int64_t now, vks_secret *out,
                                         struct vks_cache_info *info, struct vks_err *err,
                                         struct entry **dead)
{
    vks_status rc;
    if (e->linked) {
        install_locked(e, &ld->fr, ld->meta, now);
        ld->meta = NULL;
        if (ld->clone && e->src == NULL) {
            e->src = ld->clone;
            e->ops = ops;
            ld->clone = NULL;
        }
        start_thread_locked();
        rc = copy_out_locked(e, out, err, dead);
        if (rc == VKS_OK)
            info_set_meta(info, e->meta);
    } else {
        *out = ld->fr.value;
        ld->fr.value = VKS_SECRET_EMPTY;
        info_set_meta(info, ld->meta);
        rc = VKS_OK;
    }
    info->outcome = rc == VKS_OK ? (ld->had_value ? VKS_CACHE_REFRESH : VKS_CACHE_MISS)
                                 : VKS_CACHE_ERROR;
    if (rc != VKS_OK)
        info->fetch_status = rc;
    return rc;
}

/* Step 3b, refused by ops->admit: the fetched value is already wiped; an older value goes too and
 * the entry remembers only the new metadata, until the value would have expired. */
static vks_status withhold_fetched_locked(struct entry *e, struct lead *ld, int64_t now,
                                          struct vks_cache_info *info, struct vks_err *err)
{
    info_set_meta(info, ld->meta);
    info->outcome = ld->had_value ? VKS_CACHE_REFRESH : VKS_CACHE_MISS;
    if (e->linked) {
        if (e->has_value)
            g.st.refused_wipes++;
        note_fetch_locked(e, &ld->fr, ld->meta, now);
        ld->meta = NULL;
    }
    return refuse_locked(ld->refused, &ld->ferr, info, err);
}

/* Step 3b, failure: transient → remembered, the last good value served while inside the stale
 * window (STALE), else wiped; fail-closed → the value wiped at once and the failure remembered;
 * local → neither remembered nor allowed to drop a good value. */
static vks_status settle_failed_fetch_locked(struct entry *e, vks_status st, const char *msg,
                                             int64_t now, vks_secret *out,
                                             struct vks_cache_info *info, struct vks_err *err,
                                             struct entry **dead)
{
    set_msg(e, msg);
    info->fetch_status = st;
    if (vks_cache_status_is_transient(st)) {
        e->neg_until = now + g.neg_ttl_ns;
        if (e->has_value && now < stale_limit(e))
            return answer_from_failure_locked(e, now, true, out, info, err, dead);
        wipe_value_locked(e);
    } else if (!is_local(st)) {
        if (e->has_value)
            g.st.revocations++;
        wipe_value_locked(e);
        e->neg_until = now + g.neg_ttl_ns;
    }
    info->outcome = VKS_CACHE_ERROR;
    g.st.errors++;
    return vks_err_set(err, st, "%s", msg);
}

/* The leader lets go of e: capacity is enforced again, and an entry that holds nothing and
 * remembers nothing is not worth keeping. */
static void lead_done_locked(struct entry *e, int64_t now, struct entry **dead)
{
    unref_locked(e, dead);
    while (g.count > g.capacity && evict_one_locked(NULL, dead))
        ;
    if (e->linked && !e->has_value && e->refs == 0 && !e->fetching && now >= e->neg_until &&
        !remembers_meta(e, now))
        drop_locked(e, dead);
}

/* Step 3: this caller fetches for everyone waiting on e. Entered with g.mu held; returns with it
 * released and `dead` freed. */
static vks_status lead_fetch(struct entry *e, const struct vks_cache_source_ops *ops, void *source,
                             bool waited, vks_secret *out, struct vks_cache_info *info,
                             struct vks_err *err, struct entry *dead)
{
    struct lead ld;
    memset(&ld, 0, sizeof ld);
    ld.had_value = e->has_value;
    bool want_clone = e->src == NULL && ops->clone != NULL;
    e->fetching = true;
    e->refs++;
    if (!waited)
        g.st.waits++;
    info->waited = true;
    g.st.fetches++;
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
    dead = NULL;

    fetch_unlocked(e, ops, source, want_clone, &ld);

    pthread_mutex_lock(&g.mu);
    int64_t now = now_ns();
    e->fetching = false;
    e->gen++;
    e->last_status = ld.st;
    pthread_cond_broadcast(&g.fetched);
    g.st.misses++;
    vks_status rc;
    if (ld.st != VKS_OK)
        rc = settle_failed_fetch_locked(e, ld.st, ld.ferr.msg, now, out, info, err, &dead);
    else if (ld.refused != VKS_OK)
        rc = withhold_fetched_locked(e, &ld, now, info, err);
    else
        rc = install_fetched_locked(e, ops, &ld, now, out, info, err, &dead);
    lead_done_locked(e, now, &dead);
    pthread_mutex_unlock(&g.mu);
    fetch_clear(&ld.fr);
    meta_unref(ld.meta);
    if (ld.clone)
        ops->free(ld.clone);
    free_dead(dead);
    return rc;
}

/* Step 0, under g.mu: the cache is usable (configuration from the environment is valid). */
static vks_status check_configured_locked(struct vks_cache_info *info, struct vks_err *err)
{
    fork_reset_locked();
    ensure_configured_locked();
    if (g.config_status == VKS_OK) {
        atomic_store_explicit(&g_fast, g.ttl_ns > 0, memory_order_release);
        return VKS_OK;
    }
    info->outcome = VKS_CACHE_ERROR;
    info->fetch_status = vks_err_set(err, g.config_status, "%s", g.config_msg);
    return g.config_status;
}

/*
 * The common case without g.mu: a fresh value (not yet due for refresh-ahead), read as a reader
 * (see "readers" above): nothing shared is written. Returns false, having changed nothing but
 * *out, whenever anything else may apply (a writer is in, no entry, no value, another validator,
 * expired or refresh due, no arena slot for the copy): the caller then takes the full path under
 * g.mu.
 */
static bool fast_hit(uint64_t h, const char *identity, const char *validator, vks_secret *out,
                     struct vks_cache_info *info)
{
    if (!atomic_load_explicit(&g_fast, memory_order_acquire))
        return false;
    struct reader *r = my_reader();
    if (r == NULL)
        return false;
    atomic_store_explicit(&r->active, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&g_writer.on, memory_order_seq_cst) != 0) {
        atomic_store_explicit(&r->active, 0, memory_order_release);
        return false;
    }
    bool hit = false;
    struct entry *e = find_locked(h, identity);
    if (e != NULL && e->has_value && same_validator(validator, e->validator)) {
        int64_t now = now_ns(), ttl = eff_ttl(e);
        bool fresh = now < e->fetched_at + ttl;
        bool refresh = g.cfg.refresh_fraction < 1.0 &&
                       now >= e->fetched_at + (int64_t)((double)ttl * g.cfg.refresh_fraction);
        bool copied = false;
        if (fresh && !refresh) {
            if (out->data != NULL && out->cap >= e->value.len) {
                /* the caller's own slot (vks_cache_get_hashed): no allocation */
                memcpy(out->data, e->value.data, e->value.len);
                out->len = e->value.len;
                copied = true;
            } else {
                vks_secret_free(out);
                copied = vks_secret_dup(e->value.data, e->value.len, out, NULL) == VKS_OK;
            }
        }
        if (copied) {
            info->outcome = VKS_CACHE_HIT;
            info->age_s = (double)(now - e->fetched_at) / NS_PER_S;
            info_set_meta(info, e->meta);
            /* written only when it changes by 50 us or more: threads hitting the same entry
             * would otherwise bounce its cache line on every hit */
            if (now - atomic_load_explicit(&e->last_used, memory_order_relaxed) >= 50000)
                atomic_store_explicit(&e->last_used, now, memory_order_relaxed);
            if (!atomic_load_explicit(&e->marked, memory_order_relaxed))
                atomic_store_explicit(&e->marked, true, memory_order_relaxed);
            /* only this thread writes its record: no read-modify-write needed */
            atomic_store_explicit(&r->hits, atomic_load_explicit(&r->hits, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            hit = true;
        }
    }
    atomic_store_explicit(&r->active, 0, memory_order_release);
    return hit;
}

/* Steps 1-3 for identity (hash h). Entered with g.mu held; returns with it released. Every value
 * returned passed ops->admit (step 2b for cached ones, step 3a for fetched ones). */
static vks_status lookup_locked(uint64_t h, const char *identity, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct entry *dead = NULL, *e;
    vks_status rc = VKS_OK;
    bool waited = false;
    enum step s;
    do {
        bool created = false;
        if ((e = entry_for_locked(h, identity, validator, &created, &dead)) == NULL) {
            rc = vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
            info->outcome = VKS_CACHE_ERROR;
            info->fetch_status = rc;
            s = STEP_ANSWERED;
        } else {
            s = created ? STEP_LEAD
                        : answer_or_wait_locked(e, ops, source, &waited, out, info, err, &dead, &rc);
        }
    } while (s == STEP_RESTART);
    if (s == STEP_LEAD)
        return lead_fetch(e, ops, source, waited, out, info, err, dead);
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
    if (rc == VKS_OK && ops->admit != NULL) /* HIT or STALE */
        rc = admit_served(h, identity, ops, source, out, info, err);
    return rc;
}

uint64_t vks_cache_identity_hash(const char *identity, size_t len)
{
    return hash_str(identity, len);
}

vks_status vks_cache_get(const char *identity, const char *validator,
                         const struct vks_cache_source_ops *ops, void *source,
                         vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    if (out != NULL)
        *out = VKS_SECRET_EMPTY; /* (uninitialised on entry) */
    size_t len = identity != NULL ? strlen(identity) : 0;
    return vks_cache_get_hashed(identity, len, identity != NULL ? hash_str(identity, len) : 0, validator, ops,
                                source, out, info, err);
}

vks_status vks_cache_get_hashed(const char *identity, size_t len, uint64_t h, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_cache_info dummy;
    if (info == NULL)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (out == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no output secret");
    if (identity == NULL || identity[0] == '\0' || len > IDENTITY_MAX || ops == NULL || ops->fetch == NULL) {
        vks_secret_free(out);
        if (ops == NULL || ops->fetch == NULL)
            return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no fetch callback");
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: identity must be 1..%d bytes", IDENTITY_MAX);
    }

    pthread_once(&g_once, once_init);
    vks_status rc = VKS_OK;
    if (fast_hit(h, identity, validator, out, info)) {
        /* served without any lock; judged for this caller like any HIT (step 2b) */
        if (ops->admit != NULL)
            rc = admit_served(h, identity, ops, source, out, info, err);
    } else {
        vks_secret_free(out); /* a caller's slot is only reused by fast_hit */
        pthread_mutex_lock(&g.mu);
        if ((rc = check_configured_locked(info, err)) != VKS_OK) {
            pthread_mutex_unlock(&g.mu);
        } else if (g.ttl_ns <= 0) {
            pthread_mutex_unlock(&g.mu);
            rc = bypass(ops, source, out, info, err);
        } else {
            rc = lookup_locked(h, identity, validator, ops, source, out, info, err);
        }
    }
    if (info == &dummy)
        vks_cache_info_release(info);
    return rc;
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
    pthread_once(&g_once, once_init);
    struct entry *dead = NULL;
    pthread_mutex_lock(&g.mu);
    fork_reset_locked();
    apply_config_locked(cfg);
    g.config_status = VKS_OK;
    atomic_store(&g_fast, g.ttl_ns > 0);
    while (g.count > g.capacity && evict_one_locked(NULL, &dead))
        ;
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
    return VKS_OK;
}

void vks_cache_get_config(struct vks_cache_config *out)
{
    pthread_once(&g_once, once_init);
    pthread_mutex_lock(&g.mu);
    ensure_configured_locked();
    *out = g.cfg;
    out->capacity = g.capacity;
    pthread_mutex_unlock(&g.mu);
}

static size_t invalidate_where(const char *s, bool prefix)
{
    if (s == NULL)
        return 0;
    pthread_once(&g_once, once_init);
    size_t n = 0, sl = strlen(s);
    struct entry *dead = NULL;
    pthread_mutex_lock(&g.mu);
    fork_reset_locked();
    struct entry *e = g.lru.next;
    while (e != &g.lru) {
        struct entry *nx = e->next;
        if (prefix ? strncmp(e->identity, s, sl) == 0 : strcmp(e->identity, s) == 0) {
            drop_locked(e, &dead);
            n++;
        }
        e = nx;
    }
    g.st.invalidations += n;
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
    return n;
}

size_t vks_cache_invalidate(const char *identity) { return invalidate_where(identity, false); }

size_t vks_cache_invalidate_prefix(const char *prefix) { return invalidate_where(prefix, true); }

size_t vks_cache_flush(void) { return invalidate_where("", true); }

void vks_cache_get_stats(struct vks_cache_stats *out)
{
    pthread_once(&g_once, once_init);
    pthread_mutex_lock(&g.mu);
    fork_reset_locked();
    ensure_configured_locked();
    *out = g.st;
    for (struct reader *r = atomic_load_explicit(&g_readers, memory_order_acquire); r != NULL; r = r->next)
        out->hits += atomic_load_explicit(&r->hits, memory_order_relaxed);
    out->entries = g.count;
    out->values = g.nvalues;
    out->value_bytes = g.value_bytes;
    out->capacity = g.capacity;
    pthread_mutex_unlock(&g.mu);
}

const unsigned char *vks_cache_test_slot(const char *identity, size_t *cap)
{
    pthread_once(&g_once, once_init);
    const unsigned char *p = NULL;
    pthread_mutex_lock(&g.mu);
    struct entry *e = find_locked(hash_str(identity, strlen(identity)), identity);
    if (e && e->has_value) {
        p = e->value.data;
        if (cap)
            *cap = e->value.cap;
    }
    pthread_mutex_unlock(&g.mu);
    return p;
}

void vks_cache_shutdown(void)
{
    pthread_once(&g_once, once_init);
    pthread_mutex_lock(&g.mu);
    atomic_store(&g_fast, false);
    if (g.thr_running) {
        g.thr_stop = true;
        pthread_cond_broadcast(&g.work);
        pthread_mutex_unlock(&g.mu);
        pthread_join(g.thr, NULL);
        pthread_mutex_lock(&g.mu);
        g.thr_running = false;
        g.thr_stop = false;
    }
    fork_reset_locked();
    struct entry *dead = NULL;
    while (g.qhead) {
        struct entry *e = g.qhead;
        g.qhead = e->qnext;
        e->queued = false;
        unref_locked(e, &dead);
    }
    g.qtail = NULL;
    while (g.lru.next != &g.lru)
        drop_locked(g.lru.next, &dead);
    readers_exclude();
    free(g.buckets);
    g.buckets = NULL;
    g.nbuckets = 0;
    for (struct reader *r = atomic_load(&g_readers); r != NULL; r = r->next)
        atomic_store(&r->hits, 0);
    readers_admit();
    g.configured = false;
    g.config_status = VKS_OK;
    memset(&g.st, 0, sizeof g.st);
    pthread_mutex_unlock(&g.mu);
    free_dead(dead);
}

/* ---- additions: hit-only lookups, values from a sibling's read ----------------------------- */

vks_status vks_cache_get_cached(const char *identity, size_t len, uint64_t h, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_cache_info dummy;
    if (info == NULL)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (out == NULL || identity == NULL || identity[0] == '\0' || len > IDENTITY_MAX || ops == NULL) {
        if (out != NULL)
            vks_secret_free(out);
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: bad hit-only lookup arguments");
    }
    pthread_once(&g_once, once_init);
    vks_status rc = VKS_OK;
    if (!fast_hit(h, identity, validator, out, info)) {
        /* anything but a fresh value not due for refresh: the caller takes the full path */
        vks_secret_free(out);
        info->outcome = VKS_CACHE_NONE;
        rc = vks_err_set(err, VKS_E_NOT_CACHED, "not cached");
    } else if (ops->admit != NULL) {
        rc = admit_served(h, identity, ops, source, out, info, err);
    }
    if (info == &dummy)
        vks_cache_info_release(info);
    return rc;
}

vks_status vks_cache_put(const char *identity, vks_secret *value, double ttl_hint_s,
                         const struct vks_cache_meta *meta, const struct vks_cache_source_ops *ops,
                         const void *source, struct vks_err *err)
{
    struct vks_cache_fetch fr;
    memset(&fr, 0, sizeof fr);
    if (value == NULL || value->data == NULL || meta == NULL || identity == NULL || identity[0] == '\0' ||
        strlen(identity) > IDENTITY_MAX) {
        if (value != NULL)
            vks_secret_free(value);
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: bad put arguments");
    }
    fr.value = *value; /* ours now: stored or wiped below */
    *value = VKS_SECRET_EMPTY;
    fr.ttl_hint_s = ttl_hint_s;
    fr.meta = *meta;
    fr.meta.custom_metadata_json = NULL;
    struct meta_ref *m = NULL;
    if ((meta->custom_metadata_json != NULL && (fr.meta.custom_metadata_json = strdup(meta->custom_metadata_json)) == NULL) ||
        (m = meta_ref_of(&fr.meta)) == NULL) {
        fetch_clear(&fr);
        return vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
    }
    fr.meta.custom_metadata_json = NULL; /* owned by m */
    void *clone = ops != NULL && ops->clone != NULL && source != NULL ? ops->clone(source) : NULL;
    pthread_once(&g_once, once_init);
    uint64_t h = hash_str(identity, strlen(identity));
    struct entry *dead = NULL, *e = NULL;
    struct vks_cache_info ci;
    memset(&ci, 0, sizeof ci);
    pthread_mutex_lock(&g.mu);
    vks_status rc = check_configured_locked(&ci, err);
    if (rc == VKS_OK && g.ttl_ns <= 0)
        rc = vks_err_set(err, VKS_E_CONFIG, "cache: caching is off");
    if (rc == VKS_OK && (e = find_locked(h, identity)) != NULL && (e->fetching || e->validator != NULL))
        rc = vks_err_set(err, VKS_E_INVALID_ARG, "cache: a fetch is in flight for it"); /* that one installs */
    if (rc == VKS_OK && e == NULL && (e = new_entry_locked(h, identity, NULL, &dead)) == NULL)
        rc = vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
    if (rc == VKS_OK) {
        install_locked(e, &fr, m, now_ns());
        m = NULL;
        if (clone != NULL && e->src == NULL) {
            e->src = clone;
            e->ops = ops;
            clone = NULL;
        }
        start_thread_locked();
    }
    pthread_mutex_unlock(&g.mu);
    fetch_clear(&fr);
    meta_unref(m);
    if (clone != NULL)
        ops->free(clone);
    free_dead(dead);
    return rc;
}
