/*
 * vks_cache: entries: the index, the LRU list, eviction, the refresh queue, metadata references.
 * Shared state and helpers: vks_cache_internal.h; design: docs/internals/cache.md.
 */
#include "vks_cache_internal.h"

/* ---- entries ------------------------------------------------------------------------------- */

void cache_meta_unref(struct meta_ref *m)
{
    if (m == NULL)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        free(m->m.custom_metadata_json);
        free(m);
    }
}

struct meta_ref *cache_meta_ref_of(const struct vks_cache_meta *src)
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

void cache_fetch_clear(struct vks_cache_fetch *f)
{
    vks_secret_free(&f->value);
    free(f->meta.custom_metadata_json);
    f->meta.custom_metadata_json = NULL;
}

/* Wipes the value only: the entry keeps its metadata (no secret). */
void cache_withhold_value_locked(struct entry *e)
{
    if (!e->has_value)
        return;
    g_cache.value_bytes -= e->value.cap;
    g_cache.nvalues--;
    cache_readers_exclude();
    vks_secret_free(&e->value);
    e->has_value = false;
    cache_readers_admit();
}

/* Wipes the value and forgets its metadata (also metadata remembered after a refusal). */
void cache_wipe_value_locked(struct entry *e)
{
    cache_withhold_value_locked(e);
    cache_readers_exclude();
    struct meta_ref *m = e->meta;
    e->meta = NULL;
    cache_readers_admit();
    cache_meta_unref(m);
}

void cache_set_msg(struct entry *e, const char *msg)
{
    free(e->last_msg);
    e->last_msg = (msg && *msg) ? strdup(msg) : NULL;
}

/* Frees the heap parts of an unlinked, unreferenced entry. Runs without g_cache.mu (ops->free). */
static void free_entry(struct entry *e)
{
    if (e->src && e->ops && e->ops->free)
        e->ops->free(e->src);
    vks_secret_free(&e->value);
    cache_meta_unref(e->meta);
    free(e->identity);
    free(e->validator);
    free(e->last_msg);
    free(e);
}

void cache_free_dead(struct entry *dead)
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
    e->next = g_cache.lru.next;
    e->prev = &g_cache.lru;
    g_cache.lru.next->prev = e;
    g_cache.lru.next = e;
}

void cache_lru_touch(struct entry *e)
{
    if (g_cache.lru.next != e) {
        lru_unlink(e);
        lru_push_front(e);
    }
}

struct entry *cache_find_locked(uint64_t h, const char *identity)
{
    if (g_cache.nbuckets == 0)
        return NULL;
    for (struct entry *e = g_cache.buckets[h & (g_cache.nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->identity, identity) == 0)
            return e;
    return NULL;
}

/* Wipes the value, unlinks from the index and the LRU list; the entry goes to *dead when nobody
 * else references it (otherwise the last reference frees it). */
void cache_drop_locked(struct entry *e, struct entry **dead)
{
    cache_wipe_value_locked(e);
    if (e->linked) {
        cache_readers_exclude();
        struct entry **pp = &g_cache.buckets[e->hash & (g_cache.nbuckets - 1)];
        while (*pp != e)
            pp = &(*pp)->hnext;
        *pp = e->hnext;
        e->hnext = NULL;
        cache_readers_admit();
        lru_unlink(e);
        e->linked = false;
        g_cache.count--;
    }
    if (e->refs == 0) {
        e->hnext = *dead;
        *dead = e;
    }
}

void cache_unref_locked(struct entry *e, struct entry **dead)
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

bool cache_evict_one_locked(const struct entry *keep, struct entry **dead)
{
    struct entry *seen[EVICT_SCAN], *victim = NULL;
    int n = 0;
    for (struct entry *e = g_cache.lru.prev; e != &g_cache.lru && n < EVICT_SCAN; e = e->prev) {
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
    cache_drop_locked(victim, dead);
    g_cache.st.evictions++;
    return true;
}

static void grow_locked(void)
{
    size_t nb = g_cache.nbuckets ? g_cache.nbuckets * 2 : 256;
    struct entry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    cache_readers_exclude();
    for (size_t i = 0; i < g_cache.nbuckets; i++) {
        struct entry *e = g_cache.buckets[i];
        while (e) {
            struct entry *n = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = n;
        }
    }
    free(g_cache.buckets);
    g_cache.buckets = b;
    g_cache.nbuckets = nb;
    cache_readers_admit();
}

struct entry *cache_new_entry_locked(uint64_t h, const char *identity, const char *validator,
                                      struct entry **dead)
{
    while (g_cache.count >= g_cache.capacity && cache_evict_one_locked(NULL, dead))
        ;
    if (g_cache.nbuckets == 0 || g_cache.count >= g_cache.nbuckets * 2)
        grow_locked();
    if (g_cache.nbuckets == 0)
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
    size_t b = h & (g_cache.nbuckets - 1);
    cache_readers_exclude();
    e->hnext = g_cache.buckets[b];
    g_cache.buckets[b] = e;
    cache_readers_admit();
    lru_push_front(e);
    e->linked = true;
    g_cache.count++;
    return e;
}

/* The entry holds no value but the metadata of one withheld from a refused caller, until the
 * value would have expired. */
bool cache_remembers_meta(const struct entry *e, int64_t now)
{
    return !e->has_value && e->meta != NULL && now < expires_at(e);
}

bool cache_refresh_due(const struct entry *e, int64_t now)
{
    if (g_cache.cfg.refresh_fraction >= 1.0 || e->src == NULL || e->fetching || e->queued || !e->has_value)
        return false;
    int64_t at = e->fetched_at + (int64_t)((double)eff_ttl(e) * g_cache.cfg.refresh_fraction);
    return now >= at && now >= e->retry_after;
}

void cache_enqueue_locked(struct entry *e)
{
    e->queued = true;
    e->refs++;
    e->qnext = NULL;
    if (g_cache.qtail)
        g_cache.qtail->qnext = e;
    else
        g_cache.qhead = e;
    g_cache.qtail = e;
    pthread_cond_signal(&g_cache.work);
}

bool cache_is_local(vks_status s)
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
void cache_fork_reset_locked(void)
{
    if (!g_cache.fork_reset)
        return;
    g_cache.fork_reset = false;
    cache_readers_exclude();
    for (size_t i = 0; i < g_cache.nbuckets; i++) {
        struct entry *e = g_cache.buckets[i];
        while (e) {
            struct entry *n = e->hnext;
            cache_meta_unref(e->meta);
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
        g_cache.buckets[i] = NULL;
    }
    g_cache.lru.next = g_cache.lru.prev = &g_cache.lru;
    g_cache.qhead = g_cache.qtail = NULL;
    g_cache.count = g_cache.nvalues = g_cache.value_bytes = 0;
    cache_readers_admit();
}
