/*
 * vks_cache: the entry points and the lock-free hit path (fast_hit).
 * Shared state and helpers: vks_cache_internal.h; design: docs/internals/cache.md.
 */
#include "vks_cache_internal.h"

static vks_status check_configured_locked(struct vks_cache_info *info, struct vks_err *err)
{
    cache_fork_reset_locked();
    cache_ensure_configured_locked();
    if (g_cache.config_status == VKS_OK) {
        atomic_store_explicit(&g_fast, g_cache.ttl_ns > 0, memory_order_release);
        return VKS_OK;
    }
    info->outcome = VKS_CACHE_ERROR;
    info->fetch_status = vks_err_set(err, g_cache.config_status, "%s", g_cache.config_msg);
    return g_cache.config_status;
}

/*
 * The common case without g_cache.mu: a fresh value (not yet due for refresh-ahead), read as a reader
 * (see "readers" above): nothing shared is written. Returns false, having changed nothing but
 * *out, whenever anything else may apply (a writer is in, no entry, no value, another validator,
 * expired or refresh due, no arena slot for the copy): the caller then takes the full path under
 * g_cache.mu.
 */
bool cache_fast_hit(uint64_t h, const char *identity, const char *validator, vks_secret *out,
                     struct vks_cache_info *info)
{
    if (!atomic_load_explicit(&g_fast, memory_order_acquire))
        return false;
    struct reader *r = cache_my_reader();
    if (r == NULL)
        return false;
    atomic_store_explicit(&r->active, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&g_writer.on, memory_order_seq_cst) != 0) {
        atomic_store_explicit(&r->active, 0, memory_order_release);
        return false;
    }
    bool hit = false;
    struct entry *e = cache_find_locked(h, identity);
    if (e != NULL && e->has_value && same_validator(validator, e->validator)) {
        int64_t now = now_ns(), ttl = eff_ttl(e);
        bool fresh = now < e->fetched_at + ttl;
        bool refresh = g_cache.cfg.refresh_fraction < 1.0 &&
                       now >= e->fetched_at + (int64_t)((double)ttl * g_cache.cfg.refresh_fraction);
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
            cache_info_set_meta(info, e->meta);
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

/* Steps 1-3 for identity (hash h). Entered with g_cache.mu held; returns with it released. Every value
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
        if ((e = cache_entry_for_locked(h, identity, validator, &created, &dead)) == NULL) {
            rc = vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
            info->outcome = VKS_CACHE_ERROR;
            info->fetch_status = rc;
            s = STEP_ANSWERED;
        } else {
            s = created ? STEP_LEAD
                        : cache_answer_or_wait_locked(e, ops, source, &waited, out, info, err, &dead, &rc);
        }
    } while (s == STEP_RESTART);
    if (s == STEP_LEAD)
        return cache_lead_fetch(e, ops, source, waited, out, info, err, dead);
    pthread_mutex_unlock(&g_cache.mu);
    cache_free_dead(dead);
    if (rc == VKS_OK && ops->admit != NULL) /* HIT or STALE */
        rc = cache_admit_served(h, identity, ops, source, out, info, err);
    return rc;
}

/* The arguments of a lookup (get_hashed, and get_cached, which never fetches so needs no fetch
 * callback). On a refusal *out is freed (when there is one) and the message names the argument. */
static vks_status check_lookup_args(const char *identity, size_t len, const struct vks_cache_source_ops *ops,
                                    bool needs_fetch, vks_secret *out, struct vks_err *err)
{
    if (out == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no output secret");
    if (identity != NULL && identity[0] != '\0' && len <= IDENTITY_MAX && ops != NULL &&
        (!needs_fetch || ops->fetch != NULL))
        return VKS_OK;
    vks_secret_free(out);
    if (ops == NULL || (needs_fetch && ops->fetch == NULL))
        return vks_err_set(err, VKS_E_INVALID_ARG, "cache: no %s", ops == NULL ? "source ops" : "fetch callback");
    return vks_err_set(err, VKS_E_INVALID_ARG, "cache: identity must be 1..%d bytes", IDENTITY_MAX);
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

/* vks_cache_get_hashed and, with hit_only, vks_cache_get_cached: the same checks and the same
 * lock-free hit; only what follows a miss differs (the full path, or VKS_E_NOT_CACHED). */
static vks_status get(const char *identity, size_t len, uint64_t h, const char *validator,
                      const struct vks_cache_source_ops *ops, void *source, bool hit_only,
                      vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    struct vks_cache_info dummy;
    if (info == NULL)
        info = &dummy;
    memset(info, 0, sizeof *info);
    vks_status bad = check_lookup_args(identity, len, ops, !hit_only, out, err);
    if (bad != VKS_OK)
        return bad;

    pthread_once(&g_cache_once, cache_once_init);
    vks_status rc = VKS_OK;
    if (cache_fast_hit(h, identity, validator, out, info)) {
        /* served without any lock; judged for this caller like any HIT (step 2b) */
        if (ops->admit != NULL)
            rc = cache_admit_served(h, identity, ops, source, out, info, err);
    } else if (hit_only) {
        /* anything but a fresh value not due for refresh: the caller takes the full path */
        vks_secret_free(out);
        info->outcome = VKS_CACHE_NONE;
        rc = vks_err_set(err, VKS_E_NOT_CACHED, "not cached");
    } else {
        vks_secret_free(out); /* a caller's slot is only reused by cache_fast_hit */
        pthread_mutex_lock(&g_cache.mu);
        if ((rc = check_configured_locked(info, err)) != VKS_OK) {
            pthread_mutex_unlock(&g_cache.mu);
        } else if (g_cache.ttl_ns <= 0) {
            pthread_mutex_unlock(&g_cache.mu);
            rc = cache_bypass(ops, source, out, info, err);
        } else {
            rc = lookup_locked(h, identity, validator, ops, source, out, info, err);
        }
    }
    if (info == &dummy)
        vks_cache_info_release(info);
    return rc;
}

vks_status vks_cache_get_hashed(const char *identity, size_t len, uint64_t h, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    return get(identity, len, h, validator, ops, source, false, out, info, err);
}

/* ---- additions: hit-only lookups, values from a sibling's read ----------------------------- */

vks_status vks_cache_get_cached(const char *identity, size_t len, uint64_t h, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err)
{
    return get(identity, len, h, validator, ops, source, true, out, info, err);
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
        (m = cache_meta_ref_of(&fr.meta)) == NULL) {
        cache_fetch_clear(&fr);
        return vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
    }
    fr.meta.custom_metadata_json = NULL; /* owned by m */
    void *clone = ops != NULL && ops->clone != NULL && source != NULL ? ops->clone(source) : NULL;
    pthread_once(&g_cache_once, cache_once_init);
    uint64_t h = hash_str(identity, strlen(identity));
    struct entry *dead = NULL, *e = NULL;
    struct vks_cache_info ci;
    memset(&ci, 0, sizeof ci);
    pthread_mutex_lock(&g_cache.mu);
    vks_status rc = check_configured_locked(&ci, err);
    if (rc == VKS_OK && g_cache.ttl_ns <= 0)
        rc = vks_err_set(err, VKS_E_CONFIG, "cache: caching is off");
    if (rc == VKS_OK && (e = cache_find_locked(h, identity)) != NULL && (e->fetching || e->validator != NULL))
        rc = vks_err_set(err, VKS_E_INVALID_ARG, "cache: a fetch is in flight for it"); /* that one installs */
    if (rc == VKS_OK && e == NULL && (e = cache_new_entry_locked(h, identity, NULL, &dead)) == NULL)
        rc = vks_err_set(err, VKS_E_NOMEM, "cache: out of memory");
    if (rc == VKS_OK) {
        cache_install_locked(e, &fr, m, now_ns());
        m = NULL;
        if (clone != NULL && e->src == NULL) {
            e->src = clone;
            e->ops = ops;
            clone = NULL;
        }
        cache_start_thread_locked();
    }
    pthread_mutex_unlock(&g_cache.mu);
    cache_fetch_clear(&fr);
    cache_meta_unref(m);
    if (clone != NULL)
        ops->free(clone);
    cache_free_dead(dead);
    return rc;
}
