/*
 * vks_audit_async: the async queue and its writer thread (vks_audit_async.h).
 * Design notes: docs/internals/audit.md "Async".
 */
#include "vks_audit_async.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit_chain.h"
#include "vks_audit_event.h"
#include "vks_audit_int.h"
#include "vks_secmem.h"

#define A audit_A /* the shared state (vks_audit_int.h) */

#define POOL_SLOT 64          /* bytes per value slot in the async value pool                 */
#define POOL_MAX 4096         /* value slots at most (256 KiB of locked scratch)              */
#define PROBE_MS 200          /* async writer retry period while every sink fails             */

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty, drained;
    struct audit_rec *ring;
    size_t cap, head, count;
    /* A FIFO of POOL_SLOT-byte value slots in one locked, non-dumpable, wiped-on-fork scratch
       mapping: a caller copies a short value here instead of taking a slot from the secret arena
       (whose mutex the writer's frees contend for). Empty pool.data: always use the arena. */
    vks_scratch pool;
    size_t pool_n, pool_head, pool_count;
    bool busy, idle, stop, running, failing;
    pthread_t thread;
};

static _Alignas(64) struct queue Q = {
    .lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP, .nonempty = PTHREAD_COND_INITIALIZER,
    .drained = PTHREAD_COND_INITIALIZER,
};

/*
 * The writer takes every queued record in one step and works on them in their ring slots without
 * q.lock: callers only append behind them (q.count still covers them), so the slots and their pool
 * slots stay the writer's until it gives them back under q.lock after the batch. Two q.lock round
 * trips per batch instead of two per record keep the writer off the callers' mutex.
 */
static void *writer_main(void *arg)
{
    (void)arg;
    struct queue *q = &Q;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        if (q->count == 0) {
            if (q->stop)
                break;
            q->idle = true;
            if (q->failing) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += PROBE_MS * 1000000L;
                if (dl.tv_nsec >= 1000000000L) {
                    dl.tv_sec++;
                    dl.tv_nsec -= 1000000000L;
                }
                int rc = pthread_cond_timedwait(&q->nonempty, &q->lock, &dl);
                q->idle = false;
                if (rc == ETIMEDOUT && q->count == 0) {
                    /* probe: can any sink record the pending notice now? */
                    pthread_mutex_unlock(&q->lock);
                    pthread_mutex_lock(&A.lock);
                    audit_chain_set_deadline(audit_deadline());
                    bool ok = audit_chain_probe();
                    pthread_mutex_unlock(&A.lock);
                    pthread_mutex_lock(&q->lock);
                    if (ok)
                        q->failing = false;
                }
            } else {
                pthread_cond_wait(&q->nonempty, &q->lock);
                q->idle = false;
            }
            continue;
        }
        size_t head = q->head, n = q->count, cap = q->cap;
        size_t pool_at = q->pool_head, pool_used = 0, pool_n = q->pool_n;
        unsigned char *pool = q->pool.data;
        q->busy = true;
        pthread_mutex_unlock(&q->lock);

        bool ok = true;
        for (size_t i = 0; i < n; i++) {
            struct audit_rec *r = &q->ring[(head + i) % cap];
            const unsigned char *v = NULL;
            size_t vlen = 0;
            unsigned char *slot = NULL;
            if (r->in_pool) {
                slot = pool + ((pool_at + pool_used) % pool_n) * POOL_SLOT;
                pool_used++;
                v = slot;
                vlen = r->pool_len;
            } else if (r->val.data != NULL) {
                v = r->val.data;
                vlen = r->val.len;
            }
            if (v != NULL) {
                struct vks_audit_keys *k = atomic_load(&A.keys);
                unsigned char mac[VKS_HMAC_LEN];
                if (k != NULL && vks_hmac(&k->fp, v, vlen, mac)) {
                    memcpy(r->fp, mac, VKS_AUDIT_FP_LEN);
                    r->has_fp = true;
                }
                vks_wipe(mac, sizeof mac);
                if (slot != NULL)
                    vks_wipe(slot, POOL_SLOT);
                vks_secret_free(&r->val);
                r->in_pool = false;
            }
            pthread_mutex_lock(&A.lock);
            audit_chain_set_deadline(audit_deadline());
            ok = audit_chain_lookup(r, AUDIT_CAP_NONE, NULL);
            audit_record_outcome(ok);
            pthread_mutex_unlock(&A.lock);
            audit_rec_release(r);
        }

        pthread_mutex_lock(&q->lock);
        q->head = (head + n) % cap;
        q->count -= n;
        q->pool_head = pool_n ? (pool_at + pool_used) % pool_n : 0;
        q->pool_count -= pool_used;
        q->busy = false;
        q->failing = !ok;
        if (q->count == 0)
            pthread_cond_broadcast(&q->drained);
    }
    q->running = false;
    pthread_cond_broadcast(&q->drained);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

vks_status audit_q_start(size_t cap, struct vks_err *err)
{
    struct queue *q = &Q;
    pthread_mutex_lock(&q->lock);
    if (q->running) {
        pthread_mutex_unlock(&q->lock);
        return VKS_OK;
    }
    if (q->ring == NULL || q->cap != cap) {
        free(q->ring);
        q->ring = calloc(cap, sizeof *q->ring);
        if (q->ring == NULL) {
            q->cap = 0;
            pthread_mutex_unlock(&q->lock);
            return vks_err_set(err, VKS_E_NOMEM, "audit: cannot allocate a queue of %zu events",
                               cap);
        }
        q->cap = cap;
        q->head = q->count = 0;
    }
    if (q->pool.data == NULL) {
        /* best effort: without a locked pool every value goes through the secret arena */
        size_t n = cap < POOL_MAX ? cap : POOL_MAX;
        vks_scratch sc;
        if (vks_scratch_open(n * POOL_SLOT, &sc, NULL) == VKS_OK) {
            if (sc.locked) {
                sc.len = n * POOL_SLOT; /* close wipes it all */
                q->pool = sc;
                q->pool_n = n;
            } else {
                vks_scratch_close(&sc);
            }
        }
        q->pool_head = q->pool_count = 0;
    }
    q->stop = false;
    q->failing = false;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_create(&q->thread, &attr, writer_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_unlock(&q->lock);
        return vks_err_set(err, VKS_E_INTERNAL, "audit: cannot start the writer thread: %s",
                           strerror(rc));
    }
    q->running = true;
    pthread_mutex_unlock(&q->lock);
    return VKS_OK;
}

void vks_audit_flush(void)
{
    struct queue *q = &Q;
    pthread_mutex_lock(&q->lock);
    while (q->running && (q->count > 0 || q->busy))
        pthread_cond_wait(&q->drained, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

void audit_q_stop(void)
{
    struct queue *q = &Q;
    pthread_mutex_lock(&q->lock);
    if (!q->running) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    q->stop = true;
    pthread_cond_signal(&q->nonempty);
    pthread_t t = q->thread;
    pthread_mutex_unlock(&q->lock);
    pthread_join(t, NULL);
}

size_t audit_q_capacity(void)
{
    pthread_mutex_lock(&Q.lock);
    size_t cap = Q.cap;
    pthread_mutex_unlock(&Q.lock);
    return cap;
}

size_t audit_q_depth(void)
{
    pthread_mutex_lock(&Q.lock);
    size_t n = Q.count;
    pthread_mutex_unlock(&Q.lock);
    return n;
}

void audit_q_free(void)
{
    pthread_mutex_lock(&Q.lock);
    free(Q.ring);
    Q.ring = NULL;
    Q.cap = Q.head = Q.count = 0;
    if (Q.pool.data != NULL)
        vks_scratch_close(&Q.pool);
    Q.pool_n = Q.pool_head = Q.pool_count = 0;
    pthread_mutex_unlock(&Q.lock);
}

/* The writer fingerprints a locked copy of the value: 30 ns for the caller instead of an HMAC. */
enum audit_q_result audit_q_enqueue(const struct vks_audit_event *ev, const struct timespec *ts,
                                    const unsigned char *fp)
{
    struct queue *q = &Q;
    unsigned char fpbuf[VKS_AUDIT_FP_LEN];
    vks_secret val = VKS_SECRET_EMPTY;
    bool want_pool = fp == NULL && ev->value != NULL && ev->value_len <= POOL_SLOT;
    pthread_mutex_lock(&q->lock);
    bool use_pool = want_pool && q->running && q->pool.data != NULL &&
                    q->pool_count < q->pool_n;
    if (fp == NULL && ev->value != NULL && !use_pool) {
        pthread_mutex_unlock(&q->lock);
        if (vks_secret_dup(ev->value, ev->value_len, &val, NULL) != VKS_OK &&
            vks_audit_fingerprint(ev->value, ev->value_len, fpbuf, NULL) == VKS_OK)
            fp = fpbuf;
        pthread_mutex_lock(&q->lock);
    }
    enum audit_q_result res = AUDIT_Q_QUEUED;
    if (!q->running)
        res = AUDIT_Q_NOT_RUNNING; /* e.g. in a forked child before its writer starts */
    else if (q->failing && atomic_load(&A.on_failure) != VKS_AUDIT_ALLOW)
        res = AUDIT_Q_FAILING;
    else if (q->count == q->cap)
        res = AUDIT_Q_FULL;
    struct audit_rec *slot = NULL;
    if (res == AUDIT_Q_QUEUED) {
        slot = &q->ring[(q->head + q->count) % q->cap];
        if (!audit_rec_fill(slot, ev, ts, fp))
            res = AUDIT_Q_NOMEM;
    }
    if (res != AUDIT_Q_QUEUED) {
        pthread_mutex_unlock(&q->lock);
        vks_secret_free(&val);
        if (fp == fpbuf)
            vks_wipe(fpbuf, sizeof fpbuf);
        return res;
    }
    slot->val = val; /* the writer wipes and frees it */
    if (use_pool) {
        size_t at = (q->pool_head + q->pool_count) % q->pool_n;
        memcpy(q->pool.data + at * POOL_SLOT, ev->value, ev->value_len);
        slot->in_pool = true;
        slot->pool_len = (uint32_t)ev->value_len;
        q->pool_count++;
    }
    q->count++;
    if (q->idle)
        pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
    if (fp == fpbuf)
        vks_wipe(fpbuf, sizeof fpbuf);
    return AUDIT_Q_QUEUED;
}

void audit_q_atfork_prepare(void)
{
    pthread_mutex_lock(&Q.lock);
}

void audit_q_atfork_parent(void)
{
    pthread_mutex_unlock(&Q.lock);
}

void audit_q_atfork_child(void)
{
    /* the writer thread does not exist here and queued events belong to the parent's chain */
    Q.running = false;
    Q.busy = false;
    Q.idle = false;
    Q.count = 0;
    Q.head = 0;
    Q.pool_head = Q.pool_count = 0; /* the pool pages were wiped by fork (MADV_WIPEONFORK) */
    pthread_mutex_unlock(&Q.lock);
}
