/*
 * vks_resolver: the process-wide runtime (configuration, Vault client, keyring) that every lookup
 * uses: built from the environment or vks_resolver_setup, replaced atomically, held by lookups
 * through per-thread hazard records, reclaimed when no one holds it, reset in a forked child.
 * See vks_resolver_internal.h and docs/internals/resolver.md.
 */
#include "vks_resolver_internal.h"
#include "vks_resolver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vks_audit.h"
#include "vks_cache.h"
#include "vks_envelope.h"
#include "vks_file.h"
#include "vks_fork.h"
#include "vks_reset_gate.h"
#include "vks_redact.h"
#include "vks_restrict.h"
#include "vks_vault.h"

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *_Atomic rt_current; /* written under rt_lock; read by runtime_hold without */
static unsigned long rt_generation; /* guarded by rt_lock */
static _Atomic unsigned long rt_generation_now; /* rt_current's gen (0: none), for lock-free readers */

unsigned long vks_resolver_generation(void)
{
    return atomic_load_explicit(&rt_generation_now, memory_order_acquire);
}

static pthread_once_t rt_atfork_once = PTHREAD_ONCE_INIT;

/* fork: rt_lock is never inherited locked (a child would hang on its first lookup). It is not
 * taken around fork (it is held while a runtime is built, under other libraries' locks): the
 * child starts it afresh; a runtime another thread was building is simply not there. */
static void rt_fork_child(void);
static bool rt_unreferenced_locked(struct runtime *rt);
static void rt_hazard_release(void *p);
static pthread_key_t rt_hazard_key;
static void rt_register_atfork(void)
{
    pthread_key_create(&rt_hazard_key, rt_hazard_release);
    pthread_atfork(NULL, NULL, rt_fork_child);
}

static void rt_lock_acquire(void)
{
    pthread_once(&rt_atfork_once, rt_register_atfork);
    pthread_mutex_lock(&rt_lock);
}

static void runtime_free(struct runtime *rt)
{
    if (rt == NULL)
        return;
    vks_vault_free(rt->vault);
    vks_keyring_free(rt->keyring);
    vks_config_clear(&rt->cfg);
    free(rt->vault_addr_shown);
    free(rt);
}

/*
 * Builds a runtime from a finished config (copied). Nothing global is touched. With `strict`
 * (setup) a Vault client or keyring that cannot be built fails the build; without (the
 * environment on first use) the failure is kept and reported by the lookups that need them, so
 * that file and key_data keysources keep working.
 */
static vks_status runtime_build(const struct vks_config *cfg, bool strict, struct runtime **out,
                                struct vks_err *err)
{
    struct runtime *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory building the runtime");
    vks_status st = vks_config_copy(cfg, &rt->cfg, err);
    if (st != VKS_OK) {
        free(rt);
        return st;
    }
    vks_err_clear(&rt->vault_err);
    vks_err_clear(&rt->keyring_err);
    if (rt->cfg.vault.address != NULL) {
        /* every audit event shows it: redacted once here rather than on every lookup */
        const char *a = rt->cfg.vault.address;
        size_t n = vks_redact_url(a, strlen(a), NULL, 0) + 1;
        if ((rt->vault_addr_shown = malloc(n)) == NULL) {
            runtime_free(rt);
            return vks_err_set(err, VKS_E_NOMEM, "out of memory building the runtime");
        }
        vks_redact_url(a, strlen(a), rt->vault_addr_shown, n);
    }
    rt->born_gen = vks_fork_generation();
    st = vks_vault_new(&rt->cfg.vault, &rt->vault, &rt->vault_err);
    if (st != VKS_OK) {
        rt->vault = NULL;
        if (strict) {
            vks_err_set(err, st, "Vault client: %s", rt->vault_err.msg);
            runtime_free(rt);
            return st;
        }
    }
    st = vks_keyring_load_env(&rt->keyring, &rt->keyring_err);
    if (st != VKS_OK) {
        rt->keyring = NULL;
        if (strict) {
            vks_err_set(err, st, "encryption keys: %s", rt->keyring_err.msg);
            runtime_free(rt);
            return st;
        }
    }
    rt->refs = 1; /* the reference of rt_current once installed */
    *out = rt;
    return VKS_OK;
}

static vks_status runtime_from_env(struct runtime **out, struct vks_err *err)
{
    struct vks_config cfg;
    vks_status st = vks_config_from_env(&cfg, err);
    if (st != VKS_OK)
        return st;
    if ((st = vks_config_finish(&cfg, err)) == VKS_OK)
        st = runtime_build(&cfg, false, out, err);
    vks_config_clear(&cfg);
    return st;
}

/* Takes a reference on the runtime in force, building it from the environment the first time. */
vks_status runtime_acquire(struct runtime **out, struct vks_err *err)
{
    rt_lock_acquire();
    if (rt_current == NULL) {
        /* built outside any caller lock; the mutex only orders first use */
        struct runtime *rt = NULL;
        vks_status st = runtime_from_env(&rt, err);
        if (st != VKS_OK) {
            pthread_mutex_unlock(&rt_lock);
            return st;
        }
        rt->gen = ++rt_generation;
        rt_current = rt;
        atomic_store_explicit(&rt_generation_now, rt->gen, memory_order_release);
        vks_fork_set_mode(rt->cfg.fork_mode);
    }
    rt_current->refs++;
    *out = rt_current;
    pthread_mutex_unlock(&rt_lock);
    return VKS_OK;
}

void runtime_release(struct runtime *rt)
{
    if (rt == NULL)
        return;
    pthread_mutex_lock(&rt_lock);
    bool last = --rt->refs == 0 && rt_unreferenced_locked(rt);
    pthread_mutex_unlock(&rt_lock);
    if (last)
        runtime_free(rt);
}

/*
 * A lookup holds the runtime in force without rt_lock (runtime_hold): the lock and the reference
 * count were written by every lookup, and two threads' lookups handed their cache line back and
 * forth. Each thread owns a hazard record on a cache line of its own and publishes there the
 * runtime it uses (store, then check that it is still current: sequentially consistent, against
 * the swap of rt_current and the scan of the records, both also sequentially consistent). A
 * runtime is freed when it has no reference and no record names it; one that loses its last
 * reference while a record names it is retired, and the holder frees it when it lets go.
 * Records are never freed (a thread's record goes to a later thread after it exits). Nested holds
 * (a lookup inside an audit callback of a lookup) and clones for refresh-ahead take references.
 */
struct rt_hazard {
    _Alignas(64) struct runtime *_Atomic rt;
    atomic_bool taken;
    struct rt_hazard *next; /* set before it is published */
};
static struct rt_hazard *_Atomic rt_hazards;
static _Thread_local struct rt_hazard *t_hazard;
static struct runtime *rt_retired; /* guarded by rt_lock */
static atomic_bool rt_have_retired;

static void rt_hazard_release(void *p)
{
    struct rt_hazard *h = p;
    if (t_hazard == h)
        t_hazard = NULL;
    atomic_store_explicit(&h->taken, false, memory_order_release);
}

static struct rt_hazard *my_hazard(void)
{
    struct rt_hazard *h = t_hazard;
    if (h != NULL)
        return h;
    pthread_once(&rt_atfork_once, rt_register_atfork);
    for (h = atomic_load_explicit(&rt_hazards, memory_order_acquire); h != NULL; h = h->next) {
        bool free_ = false;
        if (atomic_compare_exchange_strong(&h->taken, &free_, true))
            break;
    }
    if (h == NULL) {
        if ((h = aligned_alloc(64, sizeof *h)) == NULL)
            return NULL;
        memset(h, 0, sizeof *h);
        atomic_init(&h->rt, NULL);
        atomic_init(&h->taken, true);
        h->next = atomic_load_explicit(&rt_hazards, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&rt_hazards, &h->next, h, memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    pthread_setspecific(rt_hazard_key, h);
    t_hazard = h;
    return h;
}

/* fork: the child starts rt_lock afresh (see above); the other threads' records name nothing
 * there (their threads are gone). */
static void rt_fork_child(void)
{
    pthread_mutex_init(&rt_lock, NULL);
    for (struct rt_hazard *h = atomic_load(&rt_hazards); h != NULL; h = h->next)
        if (h != t_hazard) {
            atomic_store(&h->rt, NULL);
            atomic_store(&h->taken, false);
        }
}

/* rt_lock held: whether a record names rt. */
static bool rt_hazard_on(const struct runtime *rt)
{
    for (struct rt_hazard *h = atomic_load_explicit(&rt_hazards, memory_order_acquire); h != NULL; h = h->next)
        if (atomic_load_explicit(&h->rt, memory_order_seq_cst) == rt)
            return true;
    return false;
}

/* rt_lock held, rt's last reference gone: true when the caller frees it (after unlocking); else
 * it is retired until its holders let go. */
static bool rt_unreferenced_locked(struct runtime *rt)
{
    /* the flag first, then the scan; a holder clears its record, then reads the flag (all
     * sequentially consistent): a holder the scan sees sees the flag, and reclaims */
    atomic_store(&rt_have_retired, true);
    if (!rt_hazard_on(rt)) {
        atomic_store(&rt_have_retired, rt_retired != NULL);
        return true;
    }
    if (!rt->retired) {
        rt->retired = true;
        rt->retired_next = rt_retired;
        rt_retired = rt;
    }
    return false;
}

/* Frees the retired runtimes nobody holds any more (a reference taken on one since, by a clone,
 * takes it off the list: its last release decides again). */
static void rt_reclaim(void)
{
    struct runtime *dead = NULL;
    pthread_mutex_lock(&rt_lock);
    for (struct runtime **pp = &rt_retired; *pp != NULL;) {
        struct runtime *rt = *pp;
        if (rt->refs > 0 || !rt_hazard_on(rt)) {
            *pp = rt->retired_next;
            rt->retired = false;
            if (rt->refs == 0) {
                rt->retired_next = dead;
                dead = rt;
            }
        } else {
            pp = &rt->retired_next;
        }
    }
    atomic_store(&rt_have_retired, rt_retired != NULL);
    pthread_mutex_unlock(&rt_lock);
    while (dead != NULL) {
        struct runtime *n = dead->retired_next;
        runtime_free(dead);
        dead = n;
    }
}

/* The runtime in force, held without a lock; false (nothing held) when there is none yet, when
 * this thread already holds one, or when it was replaced meanwhile: then runtime_acquire. */
bool runtime_hold(struct runtime **out)
{
    struct rt_hazard *h = my_hazard();
    if (h == NULL || atomic_load_explicit(&h->rt, memory_order_relaxed) != NULL)
        return false;
    struct runtime *rt = atomic_load(&rt_current);
    if (rt == NULL)
        return false;
    atomic_store(&h->rt, rt);
    if (atomic_load(&rt_current) != rt) {
        atomic_store_explicit(&h->rt, NULL, memory_order_release);
        return false;
    }
    *out = rt;
    return true;
}

void runtime_unhold(void)
{
    atomic_store(&t_hazard->rt, NULL);
    if (atomic_load(&rt_have_retired)) /* after the clear (see rt_unreferenced_locked) */
        rt_reclaim();
}

/* A prepared runtime is a built runtime that is not yet current. */
struct vks_resolver_prep {
    struct runtime *rt;
};

vks_status vks_resolver_prepare(const struct vks_config *cfg, struct vks_resolver_prep **out,
                                struct vks_err *err)
{
    *out = NULL;
    rt_lock_acquire();
    /* the same options again are a no-op, unless a strict fork wiped this runtime's credentials */
    bool same = rt_current != NULL && vks_config_equal(&rt_current->cfg, cfg) &&
                vks_fork_check(rt_current->born_gen, VKS_E_CONFIG, "", NULL) == VKS_OK;
    pthread_mutex_unlock(&rt_lock);
    if (same)
        return VKS_OK;

    vks_status st = vks_config_check_files(cfg, err);
    if (st != VKS_OK)
        return st;
    struct vks_resolver_prep *p = calloc(1, sizeof *p);
    if (p == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    if ((st = runtime_build(cfg, true, &p->rt, err)) != VKS_OK) {
        free(p);
        return st;
    }
    *out = p;
    return VKS_OK;
}

bool vks_resolver_commit(struct vks_resolver_prep *p)
{
    if (p == NULL)
        return false;
    struct runtime *rt = p->rt;
    free(p);
    pthread_mutex_lock(&rt_lock);
    struct runtime *old = rt_current;
    rt->gen = ++rt_generation;
    rt_current = rt;
    atomic_store_explicit(&rt_generation_now, rt->gen, memory_order_release);
    bool last = old != NULL && --old->refs == 0 && rt_unreferenced_locked(old);
    pthread_mutex_unlock(&rt_lock);
    vks_fork_set_mode(rt->cfg.fork_mode); /* applied with the rest, never by a failed setup */
    if (last)
        runtime_free(old);
    /* values fetched under the old options (address, auth, require_encrypted...) must not be
     * served under the new ones: the identities changed with the generation, and the old values
     * are wiped now rather than when they age out */
    if (old != NULL)
        vks_cache_flush();
    return true;
}

void vks_resolver_discard(struct vks_resolver_prep *p)
{
    if (p == NULL)
        return;
    runtime_free(p->rt);
    free(p);
}

vks_status vks_resolver_setup(const struct vks_config *cfg, bool *changed, struct vks_err *err)
{
    if (changed != NULL)
        *changed = false;
    struct vks_resolver_prep *p = NULL;
    vks_status st = vks_resolver_prepare(cfg, &p, err);
    if (st != VKS_OK)
        return st;
    bool c = vks_resolver_commit(p);
    if (changed != NULL)
        *changed = c;
    return VKS_OK;
}

vks_status vks_resolver_get_config(struct vks_config *out, struct vks_err *err)
{
    struct runtime *rt;
    vks_status st = runtime_acquire(&rt, err);
    if (st != VKS_OK)
        return st;
    st = vks_config_copy(&rt->cfg, out, err);
    runtime_release(rt);
    return st;
}

void vks_resolver_shutdown(void)
{
    pthread_mutex_lock(&rt_lock);
    struct runtime *old = rt_current;
    rt_current = NULL;
    atomic_store_explicit(&rt_generation_now, 0, memory_order_release);
    bool last = old != NULL && --old->refs == 0 && rt_unreferenced_locked(old);
    pthread_mutex_unlock(&rt_lock);
    if (last)
        runtime_free(old);
    vks_reset_gate_clear();
}

void runtime_ref(struct runtime *rt)
{
    pthread_mutex_lock(&rt_lock);
    rt->refs++;
    pthread_mutex_unlock(&rt_lock);
}
