/*
 * vks_cache internals: the state, types and helpers shared by the cache's translation units.
 * Not a contract for anyone else: the contract is vks_cache.h, the design docs/internals/cache.md.
 *
 *   vks_cache.c          the state, the hit path's reader records, fork handling, configuration,
 *                        management (configure, invalidate, stats, shutdown)
 *   vks_cache_entry.c    entries: index, LRU list, eviction, refresh queue, metadata references
 *   vks_cache_refresh.c  the refresh-ahead thread
 *   vks_cache_answer.c   answers built under g_cache.mu (copies, failures, bypass)
 *   vks_cache_steps.c    vks_cache_get step by step (judge, wait, lead a fetch, install)
 *   vks_cache_lookup.c   the entry points (get, get_hashed, get_cached, put) and the lock-free hit
 *
 * Every function here named *_locked is called with g_cache.mu held; the rest say otherwise.
 * Thread-safety and the lock order are described at the top of vks_cache.c.
 */
#ifndef VKS_CACHE_INTERNAL_H
#define VKS_CACHE_INTERNAL_H

#include "vks_cache.h"

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
extern atomic_ullong g_meta_serial;

struct entry {
    struct entry *hnext;          /* hash chain                                   */
    struct entry *prev, *next;    /* LRU list, g_cache.lru.next is the most recent     */
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

struct cache_state {
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
};
extern struct cache_state g_cache;

extern pthread_once_t g_cache_once;
extern atomic_llong g_clock_offset;

/* The hit path's readers (see the top of this file). g_fast: the cache is configured, caching is
 * on and no fork reset is pending, so fast_hit may look.
 *
 * Every thread that looks up owns a record on a cache line of its own. fast_hit marks its record
 * active, checks that no writer is in, reads, and clears the mark; a writer (g_cache.mu held) raises
 * g_writer and waits until no record is active, so readers and writers exclude each other while
 * a hit writes nothing but its own record (two threads hitting never hand a line back and forth).
 * A reader that finds a writer in takes the slow path (g_cache.mu) instead of waiting. The mark and the
 * flag are a Dekker pair (sequentially consistent store, then load, on both sides): at least one
 * of the two sees the other. Records are never freed (a thread's record goes to a later thread
 * after it exits), so a writer walks them without a lock. */
struct reader {
    _Alignas(64) atomic_uint active; /* in fast_hit                                          */
    atomic_bool taken;               /* owned by a live thread                               */
    _Atomic uint64_t hits;           /* fast hits: written by the owner, summed by get_stats */
    struct reader *next;             /* every record ever made; set before it is published  */
};
extern _Atomic(struct reader *) g_readers;
struct cache_writer_flag {
    _Alignas(64) atomic_uint on; /* a writer is in (g_cache.mu held): readers keep off */
    char pad[64 - sizeof(atomic_uint)];
};
extern struct cache_writer_flag g_writer;
extern _Thread_local struct reader *t_reader;
extern pthread_key_t g_reader_key; /* its destructor gives a record back at thread exit */
extern atomic_bool g_fast;

/* What a step taken under g_cache.mu decided for the caller. */
enum step {
    STEP_ANSWERED, /* out/info/err are filled, rc says how                                   */
    STEP_LEAD,     /* nothing usable and no fetch in flight: this caller fetches             */
    STEP_RESTART,  /* the entry was dropped while this caller waited: look it up again       */
    STEP_AGAIN,    /* the entry changed (a fetch completed, metadata admitted): judge again  */
};

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec +
           atomic_load_explicit(&g_clock_offset, memory_order_relaxed);
}

static inline uint64_t hash_str(const char *s, size_t n)
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

static inline int64_t eff_ttl(const struct entry *e)
{
    return (e->hint_ns > 0 && e->hint_ns < g_cache.ttl_ns) ? e->hint_ns : g_cache.ttl_ns;
}

static inline int64_t expires_at(const struct entry *e) { return e->fetched_at + eff_ttl(e); }

static inline int64_t stale_limit(const struct entry *e) { return expires_at(e) + g_cache.max_stale_ns; }

static inline bool same_validator(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* vks_cache.c */
void cache_ensure_configured_locked(void);
struct reader *cache_my_reader(void);
void cache_once_init(void);
void cache_readers_admit(void);
void cache_readers_exclude(void);

/* vks_cache_answer.c */
vks_status cache_answer_from_failure_locked(struct entry *e, int64_t now, bool serve_stale,
                                             vks_secret *out, struct vks_cache_info *info,
                                             struct vks_err *err, struct entry **dead);
vks_status cache_bypass(const struct vks_cache_source_ops *ops, void *source, vks_secret *out,
                         struct vks_cache_info *info, struct vks_err *err);
vks_status cache_copy_out_locked(struct entry *e, vks_secret *out, struct vks_err *err,
                                  struct entry **dead);
vks_status cache_fail_fetch_status(vks_status st, struct vks_err *ferr);
void cache_info_set_meta(struct vks_cache_info *info, struct meta_ref *m);
bool cache_make_room(const struct entry *keep);
vks_status cache_refuse_locked(vks_status st, const struct vks_err *aerr,
                                struct vks_cache_info *info, struct vks_err *err);

/* vks_cache_entry.c */
void cache_drop_locked(struct entry *e, struct entry **dead);
void cache_enqueue_locked(struct entry *e);
bool cache_evict_one_locked(const struct entry *keep, struct entry **dead);
void cache_fetch_clear(struct vks_cache_fetch *f);
struct entry *cache_find_locked(uint64_t h, const char *identity);
void cache_fork_reset_locked(void);
void cache_free_dead(struct entry *dead);
bool cache_is_local(vks_status s);
void cache_lru_touch(struct entry *e);
struct meta_ref *cache_meta_ref_of(const struct vks_cache_meta *src);
void cache_meta_unref(struct meta_ref *m);
struct entry *cache_new_entry_locked(uint64_t h, const char *identity, const char *validator,
                                      struct entry **dead);
bool cache_refresh_due(const struct entry *e, int64_t now);
bool cache_remembers_meta(const struct entry *e, int64_t now);
void cache_set_msg(struct entry *e, const char *msg);
void cache_unref_locked(struct entry *e, struct entry **dead);
void cache_wipe_value_locked(struct entry *e);
void cache_withhold_value_locked(struct entry *e);

/* vks_cache_lookup.c */
bool cache_fast_hit(uint64_t h, const char *identity, const char *validator, vks_secret *out,
                     struct vks_cache_info *info);

/* vks_cache_refresh.c */
void cache_install_locked(struct entry *e, struct vks_cache_fetch *fr, struct meta_ref *meta,
                           int64_t now);
void cache_note_fetch_locked(struct entry *e, const struct vks_cache_fetch *fr,
                              struct meta_ref *meta, int64_t now);
void cache_start_thread_locked(void);

/* vks_cache_steps.c */
vks_status cache_admit_served(uint64_t h, const char *identity,
                               const struct vks_cache_source_ops *ops, void *source,
                               vks_secret *out, struct vks_cache_info *info, struct vks_err *err);
enum step cache_answer_or_wait_locked(struct entry *e, const struct vks_cache_source_ops *ops,
                                       void *source, bool *waited, vks_secret *out,
                                       struct vks_cache_info *info, struct vks_err *err,
                                       struct entry **dead, vks_status *rc);
struct entry *cache_entry_for_locked(uint64_t h, const char *identity, const char *validator,
                                      bool *created, struct entry **dead);
vks_status cache_lead_fetch(struct entry *e, const struct vks_cache_source_ops *ops, void *source,
                             bool waited, vks_secret *out, struct vks_cache_info *info,
                             struct vks_err *err, struct entry *dead);

#endif
