/*
 * vks_cache: vks_cache_get step by step: judge an entry, wait for a fetch, lead one, install it.
 * Shared state and helpers: vks_cache_internal.h; design: docs/internals/cache.md.
 */
#include "vks_cache_internal.h"

/* ---- vks_cache_get, step by step ----------------------------------------------------------- */

/* Step 1: the entry for identity. One whose validator differs is wiped and replaced. *created
 * says the entry is new (nothing to serve: the caller leads its fetch). NULL: out of memory. */
struct entry *cache_entry_for_locked(uint64_t h, const char *identity, const char *validator,
                                      bool *created, struct entry **dead)
{
    struct entry *e = cache_find_locked(h, identity);
    if (e != NULL && !same_validator(validator, e->validator)) {
        cache_drop_locked(e, dead);
        g_cache.st.invalidations++;
        e = NULL;
    }
    *created = e == NULL;
    return e != NULL ? e : cache_new_entry_locked(h, identity, validator, dead);
}

/* A fresh value: a copy for the caller (HIT), and refresh-ahead when the entry is due. */
static vks_status serve_hit_locked(struct entry *e, int64_t now, bool waited, vks_secret *out,
                                   struct vks_cache_info *info, struct vks_err *err,
                                   struct entry **dead)
{
    vks_status rc = cache_copy_out_locked(e, out, err, dead);
    if (rc != VKS_OK) {
        info->outcome = VKS_CACHE_ERROR;
        info->fetch_status = rc;
        return rc;
    }
    info->outcome = VKS_CACHE_HIT;
    info->age_s = (double)(now - e->fetched_at) / NS_PER_S;
    cache_info_set_meta(info, e->meta);
    g_cache.st.hits++;
    if (waited)
        g_cache.st.coalesced++;
    if (cache_refresh_due(e, now)) {
        cache_enqueue_locked(e);
        cache_start_thread_locked();
    }
    return rc;
}

/* Single-flight: waits (g_cache.mu released meanwhile) for the fetch in flight on e. A failure of that
 * fetch is shared at once (STALE or NEGATIVE); otherwise the entry is judged again. */
static enum step wait_for_fetch_locked(struct entry *e, bool *waited, vks_secret *out,
                                       struct vks_cache_info *info, struct vks_err *err,
                                       struct entry **dead, vks_status *rc)
{
    uint64_t gen = e->gen;
    if (!*waited)
        g_cache.st.waits++;
    *waited = true;
    info->waited = true;
    e->refs++;
    while (e->fetching && e->gen == gen)
        pthread_cond_wait(&g_cache.fetched, &g_cache.mu);
    cache_unref_locked(e, dead);
    if (!e->linked)
        return STEP_RESTART;
    if (e->gen == gen || e->last_status == VKS_OK || cache_is_local(e->last_status))
        return STEP_AGAIN;
    int64_t now = now_ns();
    bool serve_stale = e->has_value && vks_cache_status_is_transient(e->last_status) &&
                       now < stale_limit(e);
    *rc = cache_answer_from_failure_locked(e, now, serve_stale, out, info, err, dead);
    g_cache.st.coalesced++;
    return STEP_ANSWERED;
}

/* Metadata remembered after a refusal: this caller is judged against it (ops->admit, g_cache.mu
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
    pthread_mutex_unlock(&g_cache.mu);
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status st = ops->admit(source, &m->m, &aerr);
    pthread_mutex_lock(&g_cache.mu);
    cache_unref_locked(e, dead);
    if (st != VKS_OK) {
        info->outcome = VKS_CACHE_NEGATIVE;
        info->age_s = (double)(now_ns() - e->fetched_at) / NS_PER_S;
        cache_info_set_meta(info, m);
        cache_meta_unref(m);
        *rc = cache_refuse_locked(st, &aerr, info, err);
        return STEP_ANSWERED;
    }
    cache_meta_unref(*admitted);
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
    cache_lru_touch(e);
    e->last_used = now;
    if (e->has_value && now >= stale_limit(e)) {
        cache_wipe_value_locked(e);
        g_cache.st.expirations++;
    }
    if (e->has_value && now < expires_at(e)) {
        *rc = serve_hit_locked(e, now, *waited, out, info, err, dead);
        return STEP_ANSWERED;
    }
    if (now < e->neg_until && e->last_status != VKS_OK) {
        *rc = cache_answer_from_failure_locked(e, now, e->has_value, out, info, err, dead);
        if (*waited)
            g_cache.st.coalesced++;
        return STEP_ANSWERED;
    }
    if (ops->admit != NULL && cache_remembers_meta(e, now) && e->meta != *admitted)
        return admit_remembered_locked(e, ops, source, admitted, info, err, dead, rc);
    if (!e->fetching)
        return STEP_LEAD;
    return wait_for_fetch_locked(e, waited, out, info, err, dead, rc);
}

/* Step 2, for an existing entry: judge it until there is an answer, or this caller must lead a
 * fetch, or the entry was dropped under it (STEP_RESTART). */
enum step cache_answer_or_wait_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                       void *source, bool *waited, vks_secret *out,
                                       struct vks_cache_info *info, struct vks_err *err,
                                       struct entry **dead, vks_status *rc)
{
    struct meta_ref *admitted = NULL;
    enum step s;
    do {
        s = judge_entry_locked(e, ops, source, waited, &admitted, out, info, err, dead, rc);
    } while (s == STEP_AGAIN);
    cache_meta_unref(admitted);
    return s;
}

/* Step 2b, g_cache.mu released: a value served from the cache (HIT, STALE) is judged for this caller.
 * Refused: the caller's copy is wiped, and so is the cached value (the entry keeps only its
 * metadata), so the next admitted caller fetches. */
vks_status cache_admit_served(uint64_t h, const char *identity,
                               const struct vks_cache_source_ops *ops, void *source,
                               vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status st = ops->admit(source, info->meta, &aerr);
    if (st == VKS_OK)
        return VKS_OK;
    vks_secret_free(out);
    pthread_mutex_lock(&g_cache.mu);
    struct entry *e = cache_find_locked(h, identity);
    if (e != NULL && e->has_value && e->meta != NULL && e->meta->serial == info->meta_serial_) {
        cache_withhold_value_locked(e);
        g_cache.st.refused_wipes++;
    }
    vks_status rc = cache_refuse_locked(st, &aerr, info, err);
    pthread_mutex_unlock(&g_cache.mu);
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

/* Step 3a, without g_cache.mu: calls the source (once more after making room when the arena was
 * full), makes the metadata shareable and, when wanted, clones the source for refresh-ahead. */
static void fetch_unlocked(struct entry *e, const struct vks_cache_source_ops *ops, void *source,
                           bool want_clone, struct lead *ld)
{
    vks_err_clear(&ld->ferr);
    ld->st = ops->fetch(source, &ld->fr, &ld->ferr);
    if (ld->st == VKS_E_LOCKED_MEMORY && cache_make_room(e)) {
        /* the arena was full: idle cached values were evicted, try once more */
        cache_fetch_clear(&ld->fr);
        memset(&ld->fr, 0, sizeof ld->fr);
        vks_err_clear(&ld->ferr);
        ld->st = ops->fetch(source, &ld->fr, &ld->ferr);
    }
    if (ld->st != VKS_OK) {
        ld->st = cache_fail_fetch_status(ld->st, &ld->ferr);
        return;
    }
    if ((ld->meta = cache_meta_ref_of(&ld->fr.meta)) == NULL) {
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
        cache_install_locked(e, &ld->fr, ld->meta, now);
        ld->meta = NULL;
        if (ld->clone && e->src == NULL) {
            e->src = ld->clone;
            e->ops = ops;
            ld->clone = NULL;
        }
        cache_start_thread_locked();
        rc = cache_copy_out_locked(e, out, err, dead);
        if (rc == VKS_OK)
            cache_info_set_meta(info, e->meta);
    } else {
        *out = ld->fr.value;
        ld->fr.value = VKS_SECRET_EMPTY;
        cache_info_set_meta(info, ld->meta);
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
    cache_info_set_meta(info, ld->meta);
    info->outcome = ld->had_value ? VKS_CACHE_REFRESH : VKS_CACHE_MISS;
    if (e->linked) {
        if (e->has_value)
            g_cache.st.refused_wipes++;
        cache_note_fetch_locked(e, &ld->fr, ld->meta, now);
        ld->meta = NULL;
    }
    return cache_refuse_locked(ld->refused, &ld->ferr, info, err);
}

/* Step 3b, failure: transient → remembered, the last good value served while inside the stale
 * window (STALE), else wiped; fail-closed → the value wiped at once and the failure remembered;
 * local → neither remembered nor allowed to drop a good value. */
static vks_status settle_failed_fetch_locked(struct entry *e, vks_status st, const char *msg,
                                             int64_t now, vks_secret *out,
                                             struct vks_cache_info *info, struct vks_err *err,
                                             struct entry **dead)
{
    cache_set_msg(e, msg);
    info->fetch_status = st;
    if (vks_cache_status_is_transient(st)) {
        e->neg_until = now + g_cache.neg_ttl_ns;
        if (e->has_value && now < stale_limit(e))
            return cache_answer_from_failure_locked(e, now, true, out, info, err, dead);
        cache_wipe_value_locked(e);
    } else if (!cache_is_local(st)) {
        if (e->has_value)
            g_cache.st.revocations++;
        cache_wipe_value_locked(e);
        e->neg_until = now + g_cache.neg_ttl_ns;
    }
    info->outcome = VKS_CACHE_ERROR;
    g_cache.st.errors++;
    return vks_err_set(err, st, "%s", msg);
}

/* The leader lets go of e: capacity is enforced again, and an entry that holds nothing and
 * remembers nothing is not worth keeping. */
static void lead_done_locked(struct entry *e, int64_t now, struct entry **dead)
{
    cache_unref_locked(e, dead);
    while (g_cache.count > g_cache.capacity && cache_evict_one_locked(NULL, dead))
        ;
    if (e->linked && !e->has_value && e->refs == 0 && !e->fetching && now >= e->neg_until &&
        !cache_remembers_meta(e, now))
        cache_drop_locked(e, dead);
}

/* Step 3: this caller fetches for everyone waiting on e. Entered with g_cache.mu held; returns with it
 * released and `dead` freed. */
vks_status cache_lead_fetch(struct entry *e, const struct vks_cache_source_ops *ops, void *source,
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
        g_cache.st.waits++;
    info->waited = true;
    g_cache.st.fetches++;
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
    dead = NULL;

    fetch_unlocked(e, ops, source, want_clone, &ld);

    pthread_mutex_lock(&g_cache.mu);
    int64_t now = now_ns();
    e->fetching = false;
    e->gen++;
    e->last_status = ld.st;
    pthread_cond_broadcast(&g_cache.fetched);
    g_cache.st.misses++;
    vks_status rc;
    if (ld.st != VKS_OK)
        rc = settle_failed_fetch_locked(e, ld.st, ld.ferr.msg, now, out, info, err, &dead);
    else if (ld.refused != VKS_OK)
        rc = withhold_fetched_locked(e, &ld, now, info, err);
    else
        rc = install_fetched_locked(e, ops, &ld, now, out, info, err, &dead);
    lead_done_locked(e, now, &dead);
    pthread_mutex_unlock(&g_cache.mu);
    cache_fetch_clear(&ld.fr);
    cache_meta_unref(ld.meta);
    if (ld.clone)
        ops->free(ld.clone);
    cache_free_dead(dead);
    return rc;
}

/* Step 0, under g_cache.mu: the cache is usable (configuration from the environment is valid). */
