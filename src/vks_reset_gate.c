/*
 * vks_reset_gate: the lazy, single-flight check of the reset control record (contract:
 * vks_reset_gate.h; design: docs/internals/reset.md).
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vks_cache.h"
#include "vks_reset_gate.h"
#include "vks_reset_record.h"

#define MOUNTS 64

struct mstate {
    char *key;                 /* "<address>\x1f<mount>" (heap); NULL: free slot            */
    const char *mount;         /* inside key                                               */
    int64_t version, seq;      /* last known record (0, 0: none)                           */
    bool have;                 /* a check succeeded once                                   */
    bool in_flight;
    bool bad;                  /* the record did not parse: why                             */
    char why[VKS_ERR_MSG_MAX];
    uint64_t next_ms, used_ms;
    _Atomic uint64_t fresh_until; /* next_ms while the last check succeeded, else 0: the fast path */
    uint64_t fail_since_ms;    /* start of the first failed check since the last good one; 0: none */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mstate g_m[MOUNTS];
static struct vks_reset_gate_stats g_st;
static uint64_t g_rng;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Bumped whenever a slot gets another key (and by clear): a thread's memo of "my mount is slot i"
 * is valid only under the generation it was made in. */
static atomic_ulong g_slots_gen = 1;
/* Bumped whenever a check finds the record changed (or unreadable as a record): caches outside
   vks_cache (the inbound success cache) drop what they hold from before (vks_reset_gate_epoch). */
static atomic_ulong g_epoch = 1;

/* The lookup's fast path, per thread: no lock while the mount's record is fresh. */
static _Thread_local struct {
    unsigned long gen;
    size_t idx;
    char addr[160], mount[96];
} tl;

/* Paths refused as reset since the mount's last check: the cache remembers a refused value's
 * metadata until the value would have expired (docs/internals/cache.md "Refused lookups"), which
 * would outlive the rotation that ends the reset; each check drops them, so a reset credential is
 * read again at most once per interval and served again within one interval of its rotation. */
#define REVOKED_MAX 256
static pthread_mutex_t g_rev_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_rev[REVOKED_MAX]; /* "<mount>\x1f<path>" */
static size_t g_nrev;
static bool g_rev_overflow;

static void fork_prepare(void)
{
    pthread_mutex_lock(&g_mu);
    pthread_mutex_lock(&g_rev_mu);
}
static void fork_parent(void)
{
    pthread_mutex_unlock(&g_rev_mu);
    pthread_mutex_unlock(&g_mu);
}
static void fork_child(void)
{
    pthread_mutex_unlock(&g_rev_mu);
    for (size_t i = 0; i < MOUNTS; i++)
        g_m[i].in_flight = false; /* the thread doing it is not in this process */
    g_rng ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
    pthread_mutex_unlock(&g_mu);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void once_init(void)
{
    g_rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ now_ms();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* interval +-10 %, under g_mu */
static uint64_t jittered(long interval)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    long span = interval / 5;
    return (uint64_t)(interval - interval / 10 + (span > 0 ? (long)(g_rng % (uint64_t)span) : 0));
}

static struct mstate *slot_locked(const char *addr, const char *mount)
{
    size_t al = strlen(addr), ml = strlen(mount);
    struct mstate *free_s = NULL, *old = &g_m[0];
    for (size_t i = 0; i < MOUNTS; i++) {
        struct mstate *m = &g_m[i];
        if (m->key == NULL) {
            free_s = free_s ? free_s : m;
            continue;
        }
        if (strncmp(m->key, addr, al) == 0 && m->key[al] == '\x1f' && strcmp(m->key + al + 1, mount) == 0)
            return m;
        if (!m->in_flight && (old->in_flight || m->used_ms < old->used_ms))
            old = m;
    }
    struct mstate *m = free_s ? free_s : old;
    if (m->in_flight) /* 64 mounts, all being checked right now */
        return NULL;
    char *k = malloc(al + ml + 2);
    if (k == NULL)
        return NULL;
    free(m->key);
    atomic_store_explicit(&m->fresh_until, 0, memory_order_release);
    atomic_fetch_add_explicit(&g_slots_gen, 1, memory_order_acq_rel);
    m->key = NULL;
    m->mount = NULL;
    m->version = m->seq = 0;
    m->have = m->in_flight = m->bad = false;
    m->why[0] = '\0';
    m->next_ms = m->used_ms = m->fail_since_ms = 0;
    memcpy(k, addr, al);
    k[al] = '\x1f';
    memcpy(k + al + 1, mount, ml + 1);
    m->key = k;
    m->mount = k + al + 1;
    return m;
}

/* ------------------------------------------------------------------ dropping cache entries */

struct drop {
    const char *mount;
    const struct vks_reset_record *rec;
    int64_t after;    /* entries with seq > after                                          */
    bool all;         /* every entry of the mount (the record lost entries we had not seen) */
};

/* identity_of (vks_resolver.c): "v1" gen address namespace token kv mount path key version,
 * separated by 0x1f. */
static bool field(const char *id, int idx, const char **p, size_t *n)
{
    for (int i = 0; i < idx; i++) {
        id = strchr(id, '\x1f');
        if (id == NULL)
            return false;
        id++;
    }
    const char *e = strchr(id, '\x1f');
    *p = id;
    *n = e ? (size_t)(e - id) : strlen(id);
    return true;
}

static bool drop_match(const char *identity, void *arg)
{
    const struct drop *d = arg;
    const char *m, *p;
    size_t ml, pl;
    if (strncmp(identity, "v1\x1f", 3) != 0 || !field(identity, 6, &m, &ml) || !field(identity, 7, &p, &pl))
        return false;
    if (ml != strlen(d->mount) || memcmp(m, d->mount, ml) != 0)
        return false;
    if (d->all)
        return true;
    for (size_t i = 0; i < d->rec->n; i++)
        if (d->rec->entries[i].seq > d->after && vks_reset_entry_matches(&d->rec->entries[i], p, pl))
            return true;
    return false;
}

struct revoked {
    const char *mount;
    char **v;
    size_t n;
    bool all;
};

static bool revoked_match(const char *identity, void *arg)
{
    const struct revoked *r = arg;
    const char *m, *p;
    size_t ml, pl, l = strlen(r->mount);
    if (strncmp(identity, "v1\x1f", 3) != 0 || !field(identity, 6, &m, &ml) || !field(identity, 7, &p, &pl) ||
        ml != l || memcmp(m, r->mount, l) != 0)
        return false;
    if (r->all)
        return true;
    for (size_t i = 0; i < r->n; i++)
        if (strncmp(r->v[i] + l + 1, p, pl) == 0 && r->v[i][l + 1 + pl] == '\0')
            return true;
    return false;
}

void vks_reset_gate_note_revoked(const char *mount, const char *path)
{
    if (mount == NULL || path == NULL)
        return;
    size_t ml = strlen(mount), pl = strlen(path);
    pthread_mutex_lock(&g_rev_mu);
    bool have = false;
    for (size_t i = 0; i < g_nrev && !have; i++)
        have = strncmp(g_rev[i], mount, ml) == 0 && g_rev[i][ml] == '\x1f' && strcmp(g_rev[i] + ml + 1, path) == 0;
    char *k = have ? NULL : malloc(ml + pl + 2);
    if (!have && (k == NULL || g_nrev == REVOKED_MAX)) {
        g_rev_overflow = true; /* the next check of any mount drops all of it */
        free(k);
    } else if (!have) {
        memcpy(k, mount, ml);
        k[ml] = '\x1f';
        memcpy(k + ml + 1, path, pl + 1);
        g_rev[g_nrev++] = k;
    }
    pthread_mutex_unlock(&g_rev_mu);
}

/* At each check of `mount`: drop its paths refused as reset since the last one. */
static size_t drop_revoked(const char *mount)
{
    char *mine[REVOKED_MAX];
    struct revoked r = { mount, mine, 0, false };
    size_t ml = strlen(mount), k = 0;
    pthread_mutex_lock(&g_rev_mu);
    r.all = g_rev_overflow;
    g_rev_overflow = false;
    for (size_t i = 0; i < g_nrev; i++) {
        if (strncmp(g_rev[i], mount, ml) == 0 && g_rev[i][ml] == '\x1f')
            mine[r.n++] = g_rev[i];
        else
            g_rev[k++] = g_rev[i];
    }
    g_nrev = k;
    pthread_mutex_unlock(&g_rev_mu);
    size_t dropped = r.n > 0 || r.all ? vks_cache_invalidate_match(revoked_match, &r) : 0;
    for (size_t i = 0; i < r.n; i++)
        free(mine[i]);
    return dropped;
}

/* ------------------------------------------------------------------ one check (no lock held) */

struct outcome {
    int64_t version, seq;
    size_t dropped;
    bool bad, data_read;
};

static vks_status read_version(struct vks_vault *v, const char *mount, int64_t *ver, struct vks_err *err)
{
    struct vks_vault_reply rep;
    memset(&rep, 0, sizeof rep);
    vks_status st = vks_vault_kv2_metadata_read(v, mount, VKS_RESET_RECORD_PATH, &rep, err);
    *ver = 0;
    if (st == VKS_OK) {
        json_object *root = rep.body ? json_tokener_parse(rep.body) : NULL, *d, *cv;
        if (root && json_object_object_get_ex(root, "data", &d) &&
            json_object_object_get_ex(d, "current_version", &cv) && json_object_is_type(cv, json_type_int) &&
            json_object_get_int64(cv) >= 0)
            *ver = json_object_get_int64(cv);
        else
            st = vks_err_set(err, VKS_E_BAD_RESPONSE, "control record %s/" VKS_RESET_RECORD_PATH
                             ": metadata without current_version", mount);
        json_object_put(root);
    }
    vks_vault_reply_free(&rep);
    return st;
}

/* What the process knew before this check (copied under the lock). */
struct known {
    int64_t version, seq;
    bool have, bad;
};

static vks_status check(struct vks_vault *v, const char *mount, const struct known *known, struct outcome *o,
                        struct vks_err *err)
{
    memset(o, 0, sizeof *o);
    o->version = known->version;
    o->seq = known->seq;
    int64_t ver;
    vks_status st = read_version(v, mount, &ver, err);
    if (st == VKS_E_NOT_FOUND) { /* no record: no reset ever (or it was removed) */
        o->version = o->seq = 0;
        return VKS_OK;
    }
    if (st != VKS_OK)
        return st;
    if (ver == known->version && known->have && !known->bad)
        return VKS_OK;
    vks_scratch body = { 0 };
    struct vks_reset_record rec;
    memset(&rec, 0, sizeof rec);
    o->data_read = ver > 0;
    st = ver > 0 ? vks_vault_kv2_data_read_raw(v, mount, VKS_RESET_RECORD_PATH, ver, &body, err) : VKS_E_NOT_FOUND;
    if (st == VKS_E_NOT_FOUND) { /* the version was deleted: as no record */
        o->version = ver;
        o->seq = 0;
        return VKS_OK;
    }
    if (st == VKS_OK) {
        struct vks_err pe;
        vks_err_clear(&pe);
        if ((st = vks_reset_record_parse((const char *)body.data, body.len, &rec, &pe)) != VKS_OK) {
            o->bad = true;
            vks_err_set(err, VKS_E_REVOKED, "reset control record %s/" VKS_RESET_RECORD_PATH " version %lld is "
                        "malformed (%s): every credential of mount '%s' is refused until it is fixed", mount,
                        (long long)ver, pe.msg, mount);
        }
    }
    vks_scratch_close(&body);
    if (st == VKS_OK) {
        struct drop d = { mount, &rec, known->seq, rec.seq < known->seq || rec.first_seq > known->seq + 1 };
        if (known->have || known->seq > 0 || rec.n > 0)
            o->dropped = vks_cache_invalidate_match(drop_match, &d);
        o->version = ver;
        o->seq = rec.seq;
    }
    vks_reset_record_free(&rec);
    return st;
}

/* ------------------------------------------------------------------ the gate */

static vks_status verdict_locked(const struct mstate *m, uint64_t now, long bound, struct vks_err *err)
{
    if (m->bad)
        return vks_err_set(err, VKS_E_REVOKED, "%s", m->why);
    if (m->fail_since_ms != 0 && now - m->fail_since_ms > (uint64_t)bound)
        return vks_err_set(err, VKS_E_UNAVAILABLE, "reset control record %s/" VKS_RESET_RECORD_PATH " not verified "
                           "for %llu s (reset_max_unverified is %ld s): failing closed: %s", m->mount,
                           (unsigned long long)((now - m->fail_since_ms) / 1000), bound / 1000, m->why);
    return VKS_OK;
}

vks_status vks_reset_gate(const struct vks_reset_gate_req *req, struct vks_err *err)
{
    if (req->vault == NULL || req->mount == NULL)
        return VKS_OK;
    pthread_once(&g_once, once_init);
    long interval = req->interval_ms > 0 ? req->interval_ms : VKS_RESET_INTERVAL_DEFAULT_MS;
    if (interval < VKS_RESET_INTERVAL_MIN_MS)
        interval = VKS_RESET_INTERVAL_MIN_MS;
    long bound = req->bound_ms > 0 ? req->bound_ms : VKS_RESET_BOUND_DEFAULT_MS;
    uint64_t now = now_ms();
    const char *addr = vks_vault_address(req->vault);
    if (tl.gen == atomic_load_explicit(&g_slots_gen, memory_order_acquire) && strcmp(tl.mount, req->mount) == 0 &&
        strcmp(tl.addr, addr) == 0 && now < atomic_load_explicit(&g_m[tl.idx].fresh_until, memory_order_acquire))
        return VKS_OK;
    pthread_mutex_lock(&g_mu);
    struct mstate *m = slot_locked(addr, req->mount);
    if (m == NULL) {
        pthread_mutex_unlock(&g_mu);
        return vks_err_set(err, VKS_E_UNAVAILABLE, "reset control record of mount '%s': no room to track it "
                           "(64 mounts being checked at once): failing closed", req->mount);
    }
    m->used_ms = now;
    if (now >= m->next_ms && !m->in_flight) {
        if (req->hit_only) {
            pthread_mutex_unlock(&g_mu);
            return vks_err_set(err, VKS_E_NOT_CACHED, "reset control record of mount '%s': a check is due",
                               req->mount);
        }
        m->in_flight = true;
        struct known known = { m->version, m->seq, m->have, m->bad };
        const char *mount = m->mount; /* a slot in flight is never given another key */
        pthread_mutex_unlock(&g_mu);
        struct outcome o;
        struct vks_err ce;
        vks_err_clear(&ce);
        vks_status st = check(req->vault, mount, &known, &o, &ce);
        o.dropped += drop_revoked(mount);
        uint64_t started = now;
        now = now_ms();
        pthread_mutex_lock(&g_mu);
        g_st.checks++;
        g_st.dropped += o.dropped;
        g_st.data_reads += o.data_read;
        m->in_flight = false;
        m->next_ms = now + jittered(interval);
        if (st != VKS_OK ? o.bad : (o.version != known.version || o.seq != known.seq))
            atomic_fetch_add_explicit(&g_epoch, 1, memory_order_acq_rel);
        if (st == VKS_OK) {
            m->version = o.version;
            m->seq = o.seq;
            m->have = true;
            m->bad = false;
            m->fail_since_ms = 0;
            m->why[0] = '\0';
        } else {
            g_st.failures++;
            m->bad = o.bad; /* read, and it cannot be understood: refused at once, no bound */
            if (!o.bad && m->fail_since_ms == 0)
                m->fail_since_ms = started ? started : 1;
            if (o.bad)
                m->fail_since_ms = 0;
            const char *hint = st == VKS_E_AUTH_FAILED || st == VKS_E_PERMISSION_DENIED
                                   ? " (read with the process's own Vault auth: it needs read on "
                                     "vks-control/reset, as mta-reader grants)" : "";
            int room = (int)(sizeof m->why - strlen(hint) - 1);
            snprintf(m->why, sizeof m->why, "%.*s%s", room, ce.msg, hint);
        }
    }
    atomic_store_explicit(&m->fresh_until, m->have && !m->bad && m->fail_since_ms == 0 ? m->next_ms : 0,
                          memory_order_release);
    if (strlen(req->mount) < sizeof tl.mount && strlen(addr) < sizeof tl.addr) {
        tl.gen = atomic_load_explicit(&g_slots_gen, memory_order_acquire);
        tl.idx = (size_t)(m - g_m);
        snprintf(tl.mount, sizeof tl.mount, "%s", req->mount);
        snprintf(tl.addr, sizeof tl.addr, "%s", addr);
    }
    vks_status st = verdict_locked(m, now, bound, err);
    pthread_mutex_unlock(&g_mu);
    return st;
}

uint64_t vks_reset_gate_epoch(void)
{
    return atomic_load_explicit(&g_epoch, memory_order_acquire);
}

void vks_reset_gate_get_stats(struct vks_reset_gate_stats *out)
{
    pthread_mutex_lock(&g_mu);
    *out = g_st;
    pthread_mutex_unlock(&g_mu);
}

void vks_reset_gate_clear(void)
{
    pthread_mutex_lock(&g_mu);
    atomic_fetch_add_explicit(&g_slots_gen, 1, memory_order_acq_rel);
    for (size_t i = 0; i < MOUNTS; i++) {
        free(g_m[i].key);
        g_m[i].key = NULL;
        g_m[i].mount = NULL;
        g_m[i].version = g_m[i].seq = 0;
        g_m[i].have = g_m[i].in_flight = g_m[i].bad = false;
        g_m[i].next_ms = g_m[i].used_ms = g_m[i].fail_since_ms = 0;
        atomic_store_explicit(&g_m[i].fresh_until, 0, memory_order_release);
    }
    memset(&g_st, 0, sizeof g_st);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_lock(&g_rev_mu);
    for (size_t i = 0; i < g_nrev; i++)
        free(g_rev[i]);
    g_nrev = 0;
    g_rev_overflow = false;
    pthread_mutex_unlock(&g_rev_mu);
}
