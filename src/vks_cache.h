/*
 * vks_cache: the process-wide cache of resolved secrets (design: docs/internals/cache.md).
 *
 * One cache per process, shared by every thread and every Lua state. Entries are keyed by an
 * identity string that the resolver builds from everything that selects a value (address,
 * namespace, mount, path, key, version, kv version, and a fingerprint of a per-keysource token:
 * never the token itself). The cached plaintext lives only in arena slots (vks_secmem.h); the
 * index, LRU links, timestamps and metadata live in ordinary heap memory.
 *
 * What the cache does on a lookup (vks_cache_get):
 *  - fresh entry (age < ttl): HIT, a copy of the value is returned; if the entry is past
 *    refresh_fraction x ttl, a background thread re-fetches it (refresh-ahead) so that entries in
 *    use never expire under their callers;
 *  - no entry: MISS, the caller's fetch callback is called once for all concurrent callers of that
 *    identity (single-flight: the others wait and share the result);
 *  - expired entry: REFRESH, the same as a miss but the old value is still there as a fallback;
 *  - a "transient" failure (unavailable, timeout, sealed, tls, bad_response) while a value is held
 *    that expired less than max_stale ago: STALE, the last good value, marked stale;
 *  - a "fail-closed" failure (not_found, deleted, destroyed, permission_denied, auth_failed,
 *    missing_key, decrypt_failed, not_encrypted, restricted, file_error, bad_keysource): the entry
 *    is wiped and dropped at once and the error returned;
 *  - any failure is remembered for neg_ttl: lookups in that window get the stale value (transient)
 *    or the same error (NEGATIVE) without another fetch;
 *  - local failures (locked_memory, out_of_memory, internal, invalid_argument, config) are
 *    returned but neither cached nor allowed to drop a good value.
 *  - at most `capacity` entries; the least recently used idle entry is evicted (and wiped).
 *
 * Refused lookups (ops->admit says no): the caller gets the refusal and nothing is left behind.
 * A fetched value is wiped before it is cached (the old value of the entry too); a cached value
 * served to a refused caller is wiped from the cache and the caller's copy wiped. The entry keeps
 * only the metadata (no secret) until it would have expired, so later callers are judged against
 * it without a fetch: refused ones at once (outcome NEGATIVE), admitted ones fetch (MISS).
 *
 * Locks: one internal mutex guards the index; a fresh hit takes no lock and writes no shared
 * memory (the caller gets copies of the value and of its metadata; the exceptions: a reference
 * to the custom metadata text when the value has some, and an entry's last-use time at most every
 * 50 us), so hits from different threads do not serialise, whatever keys they use. No lock
 * is held while a fetch callback, a source clone/free callback, an admit callback, or anything of
 * the caller runs. Callbacks may therefore block, take their own locks and call back into the
 * cache (but see "fetch" below).
 *
 * Fork: a child process forgets every entry at its next call (the arena is wiped on fork); the
 * refresh thread is not running in a child until an entry is cached there again.
 *
 * Usage by the resolver (sketch):
 *
 *     static vks_status fetch(void *src, struct vks_cache_fetch *out, struct vks_err *err) {
 *         struct my_source *s = src;            // everything needed to read the value again
 *         ... vks_vault_kv_read(...) ...; decrypt; check sizes ...
 *         out->value = plaintext;               // ownership moves to the cache
 *         out->ttl_hint_s = kv1 ? 0.9 * lease_duration : 0;
 *         out->meta.kv_version = ...; out->meta.custom_metadata_json = strdup(...) or NULL;
 *         return VKS_OK;                        // or the failure status with err filled
 *     }
 *     static const struct vks_cache_source_ops ops = { fetch, my_source_clone, my_source_free };
 *
 *     vks_secret value; struct vks_cache_info info;
 *     vks_status st = vks_cache_get(identity, NULL, &ops, &src, &value, &info, err);
 *     // info.outcome says hit/miss/refresh/stale/negative/error, info.age_s the entry's age,
 *     // info.meta the metadata of the value (restrictions, audit) when a value is returned.
 *     ... use value ...; vks_secret_free(&value); vks_cache_info_release(&info);
 *
 * Thread-safety: every function is safe from any thread at any time, except where stated.
 */
#ifndef VKS_CACHE_H
#define VKS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_secmem.h"

/* ---------------------------------------------------------------------------------------------
 * Configuration
 */
struct vks_cache_config {
    double ttl_s;            /* VKS_CACHE_TTL; default 300. 0 disables caching (every lookup
                                fetches; outcome BYPASS).                                        */
    double max_stale_s;      /* VKS_CACHE_MAX_STALE; default 900: how long after expiry the last
                                good value may be served on a transient failure. 0 = never.      */
    double neg_ttl_s;        /* VKS_CACHE_NEG_TTL; default 5: how long a failure is remembered. */
    double refresh_fraction; /* VKS_CACHE_REFRESH; default 0.75: an entry used after this
                                fraction of its ttl is re-fetched in the background. In (0, 1];
                                1 disables refresh-ahead.                                        */
    size_t capacity;         /* VKS_CACHE_CAPACITY; max entries; 0 = derived from the arena size
                                (arena bytes / 96, at most 100000).                             */
};

/* The defaults above (no environment). */
void vks_cache_config_defaults(struct vks_cache_config *cfg);

/* Overrides fields of cfg from the VKS_CACHE_* environment variables. Errors (VKS_E_CONFIG) name
 * the variable and the accepted range. */
vks_status vks_cache_config_from_env(struct vks_cache_config *cfg, struct vks_err *err);

/* Validates and applies cfg to the process-wide cache. Values already cached keep their fetch time
 * and are judged against the new ttl/max_stale from now on; a smaller capacity evicts at once.
 * Without any call the cache uses defaults + environment on first use. Errors: VKS_E_CONFIG
 * naming the field. */
vks_status vks_cache_configure(const struct vks_cache_config *cfg, struct vks_err *err);

/* The checks vks_cache_configure makes, without applying anything: VKS_OK means configure will
 * succeed with this cfg. */
vks_status vks_cache_config_check(const struct vks_cache_config *cfg, struct vks_err *err);

/* The configuration in force (after defaults/environment/configure). */
void vks_cache_get_config(struct vks_cache_config *out);

/* ---------------------------------------------------------------------------------------------
 * Sources: how the cache (re-)reads a value
 */

/* Non-secret facts about a value, kept with it for the resolver (restrictions) and audit. */
struct vks_cache_meta {
    int kv_version;              /* 1, 2, or 0 (not Vault)                                      */
    int64_t secret_version;      /* KV v2 metadata.version; 0 otherwise                         */
    bool encrypted;              /* the stored value was an ENC: envelope                       */
    char token_accessor[64];     /* accessor of the token used, "" when unknown                 */
    char *custom_metadata_json;  /* KV v2 custom_metadata as JSON text, or NULL (heap)          */
};

/* What a fetch produces. On VKS_OK the cache takes ownership of `value` and of
 * `meta.custom_metadata_json`. On failure the cache releases whatever is in it (so a fetch may
 * fail half-way without cleaning up). */
struct vks_cache_fetch {
    vks_secret value;     /* (secret) the plaintext, in an arena slot                          */
    double ttl_hint_s;    /* > 0: the value must not be kept longer than this (KV v1: 0.9 x
                             lease_duration); the cache uses min(hint, ttl). 0: ttl.             */
    struct vks_cache_meta meta;
};

struct vks_cache_source_ops {
    /* Reads the value again. Called without any cache lock held, from the caller's thread (miss,
     * refresh) or from the cache's refresh thread (refresh-ahead). Must not call vks_cache_get for
     * the same identity (it would wait for itself). Fill err with a message naming the keysource. */
    vks_status (*fetch)(void *source, struct vks_cache_fetch *out, struct vks_err *err);
    /* Makes an independent copy of a source that stays valid after the lookup returns (no pointer
     * into the caller's stack or Lua state); NULL when it cannot (then no refresh-ahead for that
     * entry). May be NULL: no refresh-ahead at all. */
    void *(*clone)(const void *source);
    /* Frees a clone. Called without cache locks held. May be NULL when clone is NULL. */
    void (*free)(void *source);
    /* Decides whether the caller described by `source` may have a value with this metadata
     * (restrictions): VKS_OK, or a refusal (normally VKS_E_RESTRICTED) with err filled. Called
     * without cache locks held, from the caller's thread only (never for refresh-ahead), for every
     * value before it reaches the caller: a fetched one before it is cached, a cached one (HIT,
     * STALE) after it was copied. Must not call the cache. May be NULL: every value is admitted.
     * A refusal leaves no plaintext behind (see "Refused lookups" at the top of this file). */
    vks_status (*admit)(void *source, const struct vks_cache_meta *meta, struct vks_err *err);
};

/* ---------------------------------------------------------------------------------------------
 * Lookups
 */
enum vks_cache_outcome {
    VKS_CACHE_NONE = 0,
    VKS_CACHE_HIT,       /* fresh cached value                                                 */
    VKS_CACHE_MISS,      /* no entry: fetched now (by this caller or one it waited for)        */
    VKS_CACHE_REFRESH,   /* entry had expired: fetched now                                     */
    VKS_CACHE_STALE,     /* fetch failed transiently: the last good value, expired             */
    VKS_CACHE_NEGATIVE,  /* failure remembered from a fetch less than neg_ttl ago              */
    VKS_CACHE_ERROR,     /* fetched now and failed                                             */
    VKS_CACHE_BYPASS,    /* caching disabled (ttl 0): fetched now, not stored                  */
};

/* "hit", "miss", "refresh", "stale", "negative", "error", "bypass", "none". */
const char *vks_cache_outcome_name(enum vks_cache_outcome o);

struct vks_cache_info {
    enum vks_cache_outcome outcome;
    bool waited;                      /* this caller blocked on a fetch (its own or another's)  */
    double age_s;                     /* age of the value returned (0 for a fresh fetch)        */
    vks_status fetch_status;          /* STALE / NEGATIVE / ERROR: the failure behind it        */
    const struct vks_cache_meta *meta;/* metadata of the returned value, or NULL: points into
                                         this struct (meta_copy_), so an info is used where it
                                         was filled, never copied by value; read-only, valid
                                         until vks_cache_info_release                           */
    struct vks_cache_meta meta_copy_; /* internal: the caller's copy                            */
    uint64_t meta_serial_;            /* internal: which cached metadata it is a copy of        */
    void *meta_ref_;                  /* internal: keeps custom_metadata_json alive, or NULL    */
};

/* True for the failures that allow serving stale (unavailable, timeout, sealed, tls,
 * bad_response); false for fail-closed and local ones. */
bool vks_cache_status_is_transient(vks_status s);

/*
 * Looks up `identity`, fetching through ops->fetch(source) when needed (see the top of this file).
 *  - identity: non-empty string, at most 4096 bytes; copied.
 *  - validator: optional (NULL = none). When an entry exists with a different validator it is
 *    wiped and re-fetched: the resolver passes e.g. "inode:mtime_ns:size" for file keysources so
 *    changed files are re-read.
 *  - ops, source: used synchronously; `source` is only cloned (ops->clone), never kept.
 *  - out: receives a fresh arena COPY of the value, owned by the caller (vks_secret_free).
 *  - info: always filled (also on failure); release it with vks_cache_info_release.
 * Returns VKS_OK with a value (outcomes HIT, MISS, REFRESH, STALE, BYPASS) or the failure status
 * with err filled and *out empty (NEGATIVE, ERROR, or a local error such as VKS_E_LOCKED_MEMORY
 * when no arena slot is left for the copy).
 */
vks_status vks_cache_get(const char *identity, const char *validator,
                         const struct vks_cache_source_ops *ops, void *source,
                         vks_secret *out, struct vks_cache_info *info, struct vks_err *err);

/* vks_cache_get for a caller that keeps an identity and looks it up often: its length and
 * vks_cache_identity_hash are passed instead of computed on every lookup. Same contract, except
 * that *out must be initialised: an arena slot of the caller in it (len 0, contents wiped) is
 * reused for the copy when it is large enough, and freed otherwise; VKS_SECRET_EMPTY is fine. */
uint64_t vks_cache_identity_hash(const char *identity, size_t len);
vks_status vks_cache_get_hashed(const char *identity, size_t len, uint64_t hash, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err);

/* vks_cache_get_hashed that never fetches, never waits and never takes the index lock: only a
 * fresh value not yet due for refresh-ahead is served (outcome HIT, judged by ops->admit like any
 * hit: a refusal wipes the cached value and returns the refusal). Anything else (no entry,
 * expired, refresh due, a remembered failure, a fetch in flight) returns VKS_E_NOT_CACHED with
 * *out empty, outcome NONE and nothing changed: the caller then does the full lookup, e.g. on a
 * thread that may block. ops->fetch is not called (may be NULL). Cheap enough for an event loop. */
vks_status vks_cache_get_cached(const char *identity, size_t len, uint64_t hash, const char *validator,
                                const struct vks_cache_source_ops *ops, void *source,
                                vks_secret *out, struct vks_cache_info *info, struct vks_err *err);

/*
 * Stores a value read by someone else's fetch under `identity` (e.g. another key of the same
 * Vault secret, read by the same request), as if fetched now: same metadata (copied), same
 * ttl_hint_s as a fetch would give. Takes ownership of *value (left empty): it is stored or wiped.
 * Not stored (a status says why, nothing changed): caching off, a fetch in flight for that
 * identity (it installs its own value), an entry with a validator, out of memory. An existing
 * value or remembered failure is replaced. ops/source (may be NULL): cloned (ops->clone) for the
 * entry's refresh-ahead when it has no source yet. The caller must have judged the value for
 * itself (restrictions) before storing it: nothing refused may be stored.
 * May be called from a fetch callback for another identity (no cache lock is held there).
 */
vks_status vks_cache_put(const char *identity, vks_secret *value, double ttl_hint_s,
                         const struct vks_cache_meta *meta, const struct vks_cache_source_ops *ops,
                         const void *source, struct vks_err *err);

/* Releases what info holds (the custom metadata text its copy points at); idempotent; a zeroed
 * info is fine. */
void vks_cache_info_release(struct vks_cache_info *info);

/* Drops (and wipes) the entry for exactly `identity`, its remembered failure included. Returns the
 * number of entries dropped (0 or 1). A fetch in flight for it completes but is not stored. */
size_t vks_cache_invalidate(const char *identity);

/* Drops every entry whose identity starts with `prefix` (e.g. all keys/versions of one path when
 * the resolver's identity format puts those last). Returns the number dropped. */
size_t vks_cache_invalidate_prefix(const char *prefix);

/* (added for the emergency reset, docs/internals/reset.md) Drops every entry for which
 * match(identity, arg) is true. match runs under the cache's lock: it must only look at the
 * identity string (no cache call, no blocking). Returns the number dropped. */
size_t vks_cache_invalidate_match(bool (*match)(const char *identity, void *arg), void *arg);

/* Drops and wipes every entry. Returns the number dropped. */
size_t vks_cache_flush(void);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 */
struct vks_cache_stats {
    uint64_t hits;              /* fresh values served (HIT)                                    */
    uint64_t misses;            /* lookups that found no usable entry and fetched (MISS+REFRESH)*/
    uint64_t stale;             /* stale values served                                          */
    uint64_t negative;          /* remembered failures served (NEGATIVE)                        */
    uint64_t errors;            /* fetches done for a caller that failed (ERROR)                */
    uint64_t refreshes;         /* successful background (refresh-ahead) re-fetches             */
    uint64_t refresh_failures;  /* failed background re-fetches                                 */
    uint64_t fetches;           /* every fetch callback call (caller, coalesced or background)  */
    uint64_t waits;             /* lookups that blocked on a fetch (own or another caller's)    */
    uint64_t coalesced;         /* lookups that waited for another caller's fetch               */
    uint64_t evictions;         /* entries dropped for capacity                                 */
    uint64_t expirations;       /* entries dropped because max_stale had passed                 */
    uint64_t revocations;       /* entries dropped on a fail-closed failure                     */
    uint64_t invalidations;     /* entries dropped by invalidate / flush / validator change     */
    uint64_t refused;           /* lookups refused by ops->admit (also counted as their outcome) */
    uint64_t refused_wipes;     /* cached values wiped because a lookup was refused             */
    size_t entries;             /* entries now (values + remembered failures)                   */
    size_t values;              /* entries now holding a value                                  */
    size_t value_bytes;         /* arena bytes (slot capacity) held by cached values            */
    size_t capacity;            /* max entries in force                                         */
};

void vks_cache_get_stats(struct vks_cache_stats *out);

/* ---------------------------------------------------------------------------------------------
 * Lifecycle and test hooks
 */

/* Stops the refresh thread, wipes and drops every entry, and returns the cache to its initial
 * state (defaults + environment on next use). Not concurrent with lookups: for tests and orderly
 * shutdown only. */
void vks_cache_shutdown(void);

/* Tests only: moves the cache's monotonic clock forward by `seconds` (cumulative). */
void vks_cache_test_advance_clock(double seconds);

/* Tests only: the arena address and capacity of the value cached for identity (NULL when none),
 * so a test can prove the slot reads zeros after eviction. Never dereference it in product code. */
const unsigned char *vks_cache_test_slot(const char *identity, size_t *cap);

#endif
