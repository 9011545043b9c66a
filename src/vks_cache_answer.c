/*
 * vks_cache: answers built under g_cache.mu: copies out, failures, the bypass when caching is off.
 * Shared state and helpers: vks_cache_internal.h; design: docs/internals/cache.md.
 */
#include "vks_cache_internal.h"

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
    case VKS_CACHE_BYPASS: return "cache_bypass";
    case VKS_CACHE_NONE: break;
    }
    return "none";
}

void vks_cache_info_release(struct vks_cache_info *info)
{
    if (info == NULL)
        return;
    cache_meta_unref(info->meta_ref_);
    info->meta_ref_ = NULL;
    info->meta = NULL;
    info->meta_copy_.custom_metadata_json = NULL;
}

/* The caller gets a copy of the metadata: a hit writes nothing shared, except a reference to
 * m when it holds custom metadata (the copy points at its text). */
void cache_info_set_meta(struct vks_cache_info *info, struct meta_ref *m)
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
vks_status cache_copy_out_locked(struct entry *e, vks_secret *out, struct vks_err *err,
                                  struct entry **dead)
{
    vks_status st = VKS_OK;
    for (int i = 0; i <= COPY_RETRIES; i++) {
        st = vks_secret_dup(e->value.data, e->value.len, out, err);
        if (st != VKS_E_LOCKED_MEMORY || !cache_evict_one_locked(e, dead))
            break;
    }
    return st;
}

/* Answers a lookup from e's last failed fetch: with serve_stale, a copy of the last good value
 * marked stale; otherwise the remembered failure (a negative answer). Caller holds g_cache.mu. */
vks_status cache_answer_from_failure_locked(struct entry *e, int64_t now, bool serve_stale,
                                             vks_secret *out, struct vks_cache_info *info,
                                             struct vks_err *err, struct entry **dead)
{
    vks_status rc;
    if (serve_stale) {
        rc = cache_copy_out_locked(e, out, err, dead);
        if (rc == VKS_OK) {
            info->outcome = VKS_CACHE_STALE;
            info->age_s = (double)(now - e->fetched_at) / NS_PER_S;
            info->fetch_status = e->last_status;
            cache_info_set_meta(info, e->meta);
            g_cache.st.stale++;
        }
        return rc;
    }
    rc = vks_err_set(err, e->last_status, "%s", e->last_msg ? e->last_msg : vks_status_code(e->last_status));
    info->outcome = VKS_CACHE_NEGATIVE;
    info->fetch_status = rc;
    g_cache.st.negative++;
    return rc;
}

/* A fetch failed for lack of arena space: evicts up to COPY_RETRIES idle least recently used
 * entries (not `keep`) and says whether any was dropped (then the fetch is worth one retry).
 * Nothing is evicted when the arena refuses everything (require_locked without a lock). */
bool cache_make_room(const struct entry *keep)
{
    struct vks_secmem_status ss;
    vks_secmem_get_status(&ss);
    if (ss.require_locked && !ss.locked)
        return false;
    struct entry *dead = NULL;
    int n = 0;
    pthread_mutex_lock(&g_cache.mu);
    while (n < COPY_RETRIES && g_cache.nvalues > 0 && cache_evict_one_locked(keep, &dead))
        n++;
    if (n > 0)
        g_cache.st.fetches++;
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
    return n > 0;
}

vks_status cache_fail_fetch_status(vks_status st, struct vks_err *ferr)
{
    if (st == VKS_OK || (unsigned)st >= VKS_STATUS_COUNT) {
        st = VKS_E_INTERNAL;
        vks_err_set(ferr, st, "cache: fetch returned an invalid status");
    }
    if (ferr->msg[0] == '\0')
        vks_err_set(ferr, st, "lookup failed (%s)", vks_status_code(st));
    return st;
}

/* The answer to a caller that ops->admit refused (g_cache.mu held: counts it). */
vks_status cache_refuse_locked(vks_status st, const struct vks_err *aerr,
                                struct vks_cache_info *info, struct vks_err *err)
{
    if (st == VKS_OK || (unsigned)st >= VKS_STATUS_COUNT)
        st = VKS_E_INTERNAL;
    g_cache.st.refused++;
    info->fetch_status = st;
    return vks_err_set(err, st, "%s", aerr->msg[0] ? aerr->msg : vks_status_code(st));
}

vks_status cache_bypass(const struct vks_cache_source_ops *ops, void *source, vks_secret *out,
                         struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_cache_fetch fr;
    memset(&fr, 0, sizeof fr);
    struct vks_err ferr;
    vks_err_clear(&ferr);
    info->outcome = VKS_CACHE_BYPASS;
    info->waited = true;
    vks_status st = ops->fetch(source, &fr, &ferr);
    pthread_mutex_lock(&g_cache.mu);
    g_cache.st.fetches++;
    g_cache.st.waits++;
    g_cache.st.misses++;
    if (st != VKS_OK)
        g_cache.st.errors++;
    pthread_mutex_unlock(&g_cache.mu);
    if (st != VKS_OK) {
        st = cache_fail_fetch_status(st, &ferr);
        cache_fetch_clear(&fr);
        info->fetch_status = st;
        return vks_err_set(err, st, "%s", ferr.msg);
    }
    struct meta_ref *m = cache_meta_ref_of(&fr.meta);
    if (m == NULL) {
        cache_fetch_clear(&fr);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    fr.meta.custom_metadata_json = NULL;
    cache_info_set_meta(info, m);
    cache_meta_unref(m);
    vks_status ast = ops->admit != NULL ? ops->admit(source, info->meta, &ferr) : VKS_OK;
    if (ast != VKS_OK) {
        cache_fetch_clear(&fr); /* the refused value is wiped at once */
        pthread_mutex_lock(&g_cache.mu);
        vks_status rc = cache_refuse_locked(ast, &ferr, info, err);
        pthread_mutex_unlock(&g_cache.mu);
        return rc;
    }
    *out = fr.value;
    return VKS_OK;
}
