/*
 * vks_cache: the refresh-ahead thread.
 * Shared state and helpers: vks_cache_internal.h; design: docs/internals/cache.md.
 */
#include "vks_cache_internal.h"

/* ---- refresh thread ------------------------------------------------------------------------ */

static void scan_locked(int64_t now, struct entry **dead)
{
    struct entry *e = g_cache.lru.prev;
    while (e != &g_cache.lru) {
        struct entry *p = e->prev;
        if (e->has_value && now >= stale_limit(e) && !e->fetching) {
            cache_wipe_value_locked(e);
            g_cache.st.expirations++;
        }
        if (!e->has_value && !e->fetching && e->refs == 0 && now >= e->neg_until &&
            !cache_remembers_meta(e, now)) {
            cache_drop_locked(e, dead);
        } else if (cache_refresh_due(e, now) && e->last_used >= e->fetched_at) {
            cache_enqueue_locked(e);
        }
        e = p;
    }
}

/* Records a successful fetch (its metadata and times) in place of whatever e held; the value is
 * not installed (cache_install_locked does that; a value withheld from a refused caller is not). */
void cache_note_fetch_locked(struct entry *e, const struct vks_cache_fetch *fr,
                              struct meta_ref *meta, int64_t now)
{
    cache_wipe_value_locked(e);
    cache_readers_exclude(); /* cache_fast_hit reads these */
    e->meta = meta;
    e->fetched_at = now;
    e->hint_ns = fr->ttl_hint_s > 0 ? (int64_t)(fr->ttl_hint_s * NS_PER_S) : 0;
    if (e->hint_ns == 0 && fr->ttl_hint_s > 0)
        e->hint_ns = 1;
    cache_readers_admit();
    e->neg_until = 0;
    e->retry_after = 0;
    e->last_status = VKS_OK;
    cache_set_msg(e, NULL);
}

void cache_install_locked(struct entry *e, struct vks_cache_fetch *fr, struct meta_ref *meta,
                           int64_t now)
{
    cache_note_fetch_locked(e, fr, meta, now);
    cache_readers_exclude();
    e->value = fr->value;
    fr->value = VKS_SECRET_EMPTY;
    e->has_value = true;
    cache_readers_admit();
    g_cache.nvalues++;
    g_cache.value_bytes += e->value.cap;
}

static void *refresher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_cache.mu);
    int64_t next_scan = now_ns() + SCAN_INTERVAL_NS;
    while (!g_cache.thr_stop) {
        struct entry *dead = NULL;
        int64_t now = now_ns();
        if (now >= next_scan) {
            scan_locked(now, &dead);
            next_scan = now + SCAN_INTERVAL_NS;
        }
        struct entry *e = g_cache.qhead;
        if (e == NULL) {
            if (dead) {
                pthread_mutex_unlock(&g_cache.mu);
                cache_free_dead(dead);
                pthread_mutex_lock(&g_cache.mu);
                continue;
            }
            /* real time: the test clock offset only moves deadlines, it never sleeps */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&g_cache.work, &g_cache.mu, &ts);
            continue;
        }
        g_cache.qhead = e->qnext;
        if (g_cache.qhead == NULL)
            g_cache.qtail = NULL;
        e->queued = false;
        if (!e->linked || e->fetching || e->src == NULL || !e->has_value) {
            cache_unref_locked(e, &dead);
            pthread_mutex_unlock(&g_cache.mu);
            cache_free_dead(dead);
            pthread_mutex_lock(&g_cache.mu);
            continue;
        }
        e->fetching = true;
        const struct vks_cache_source_ops *ops = e->ops;
        void *src = e->src;
        g_cache.st.fetches++;
        pthread_mutex_unlock(&g_cache.mu);

        struct vks_cache_fetch fr;
        memset(&fr, 0, sizeof fr);
        struct vks_err ferr;
        vks_err_clear(&ferr);
        vks_status st = ops->fetch(src, &fr, &ferr);
        struct meta_ref *meta = NULL;
        if (st == VKS_OK && (meta = cache_meta_ref_of(&fr.meta)) == NULL)
            st = vks_err_set(&ferr, VKS_E_NOMEM, "out of memory caching metadata");
        if (meta)
            fr.meta.custom_metadata_json = NULL; /* owned by meta now */

        pthread_mutex_lock(&g_cache.mu);
        now = now_ns();
        e->fetching = false;
        e->gen++;
        e->last_status = st;
        pthread_cond_broadcast(&g_cache.fetched);
        if (e->linked) {
            if (st == VKS_OK) {
                cache_install_locked(e, &fr, meta, now);
                meta = NULL;
                g_cache.st.refreshes++;
            } else {
                g_cache.st.refresh_failures++;
                cache_set_msg(e, ferr.msg);
                e->retry_after = now + (g_cache.neg_ttl_ns > NS_PER_S ? g_cache.neg_ttl_ns : NS_PER_S);
                if (vks_cache_status_is_transient(st)) {
                    e->neg_until = now + g_cache.neg_ttl_ns;
                } else if (!cache_is_local(st)) {
                    cache_wipe_value_locked(e);
                    e->neg_until = now + g_cache.neg_ttl_ns;
                    g_cache.st.revocations++;
                }
            }
        }
        cache_unref_locked(e, &dead);
        pthread_mutex_unlock(&g_cache.mu);
        cache_fetch_clear(&fr);
        cache_meta_unref(meta);
        cache_free_dead(dead);
        pthread_mutex_lock(&g_cache.mu);
    }
    pthread_mutex_unlock(&g_cache.mu);
    return NULL;
}

/* At exit the refresh thread is asked to stop and given 2 s to finish a fetch in flight, so that
 * it is not inside libcurl/OpenSSL while their own exit handlers (registered earlier, so run
 * later) tear them down. A thread still blocked after that is left to the exit. */
static void stop_at_exit(void)
{
    pthread_mutex_lock(&g_cache.mu);
    bool running = g_cache.thr_running;
    pthread_t thr = g_cache.thr;
    if (running) {
        g_cache.thr_stop = true;
        pthread_cond_broadcast(&g_cache.work);
    }
    pthread_mutex_unlock(&g_cache.mu);
    if (!running)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    if (pthread_timedjoin_np(thr, NULL, &until) == 0) {
        pthread_mutex_lock(&g_cache.mu);
        g_cache.thr_running = false;
        pthread_mutex_unlock(&g_cache.mu);
    }
}

static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static void register_atexit(void) { atexit(stop_at_exit); }

void cache_start_thread_locked(void)
{
    if (g_cache.thr_running || g_cache.thr_stop)
        return;
    pthread_once(&g_atexit_once, register_atexit);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g_cache.thr_stop = false;
    if (pthread_create(&g_cache.thr, NULL, refresher, NULL) == 0)
        g_cache.thr_running = true;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
