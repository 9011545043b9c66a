/*
 * vks_inbound_table: the success cache and the failure counters of vks_inbound (contract:
 * src/vks_inbound_int.h). Both are fixed-size tables allocated once: a key hashes to a window of
 * IB_PROBE slots; a new key takes a free slot of its window or evicts the least recently used one
 * (a counter evicts unlocked counters first), so an attacker with many usernames or addresses can
 * use up slots but never memory. Success tags live in a locked, non-dumpable scratch mapping.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_inbound_int.h"

int64_t ib_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ib_rec_clear(struct ib_rec *r)
{
    free(r->cm);
    memset(r, 0, sizeof *r);
}

vks_status ib_rec_copy(struct ib_rec *dst, const struct ib_rec *src)
{
    *dst = *src;
    dst->cm = NULL;
    if (src->cm != NULL && (dst->cm = strdup(src->cm)) == NULL)
        return VKS_E_NOMEM;
    return VKS_OK;
}

vks_status ib_table_init(struct vks_inbound *ib, struct vks_err *err)
{
    ib->users = calloc(ib->n, sizeof *ib->users);
    ib->counts = calloc(2 * ib->n, sizeof *ib->counts);
    if (ib->users == NULL || ib->counts == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "inbound: out of memory for %zu cache slots", ib->n);
    vks_status st = vks_scratch_open(ib->n * IB_TAG_LEN, &ib->tags, err);
    if (st == VKS_OK)
        ib->tags.len = ib->n * IB_TAG_LEN;
    return st;
}

void ib_table_free(struct vks_inbound *ib)
{
    for (size_t i = 0; ib->users && i < ib->n; i++)
        ib_rec_clear(&ib->users[i].rec);
    free(ib->users);
    free(ib->counts);
    ib->users = NULL;
    ib->counts = NULL;
    if (ib->tags.data)
        vks_scratch_close(&ib->tags);
}

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* The user slot of key (found, or taken over: *fresh). */
static struct ib_user *user_slot(struct vks_inbound *ib, const char *key, bool create, bool *fresh)
{
    size_t h = hash(key);
    struct ib_user *victim = NULL;
    for (size_t k = 0; k < IB_PROBE; k++) {
        struct ib_user *u = &ib->users[(h + k) % ib->n];
        if (strcmp(u->key, key) == 0)
            return u;
        if (victim == NULL || (u->key[0] == '\0' && victim->key[0] != '\0') ||
            (victim->key[0] != '\0' && u->used < victim->used))
            victim = u;
    }
    if (!create)
        return NULL;
    size_t i = (size_t)(victim - ib->users);
    ib_rec_clear(&victim->rec);
    vks_wipe(ib->tags.data + i * IB_TAG_LEN, IB_TAG_LEN);
    memset(victim, 0, sizeof *victim);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    *fresh = true;
    return victim;
}

static struct ib_count *count_slot(struct vks_inbound *ib, const char *key, bool create, int64_t now)
{
    size_t h = hash(key), m = 2 * ib->n;
    struct ib_count *victim = NULL;
    for (size_t k = 0; k < IB_PROBE; k++) {
        struct ib_count *c = &ib->counts[(h + k) % m];
        if (strcmp(c->key, key) == 0)
            return c;
        bool c_locked = c->locked_until > now, v_locked = victim && victim->locked_until > now;
        if (victim == NULL || (c->key[0] == '\0' && victim->key[0] != '\0') ||
            (victim->key[0] != '\0' && ((!c_locked && v_locked) || (c_locked == v_locked && c->used < victim->used))))
            victim = c;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof *victim);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    return victim;
}

static void count_key(char *out, size_t cap, char kind, const char *v)
{
    snprintf(out, cap, "%c:%s", kind, v ? v : "");
}

bool ib_locked(struct vks_inbound *ib, const char *ukey, const char *addr, int64_t now, const char **which,
               long *left_s)
{
    char k[2][VKS_CRED_USERNAME_MAX + 3];
    count_key(k[0], sizeof k[0], 'u', ukey);
    count_key(k[1], sizeof k[1], 'a', addr);
    bool locked = false;
    pthread_mutex_lock(&ib->mu);
    for (int i = 0; i < (addr && addr[0] ? 2 : 1) && !locked; i++) {
        struct ib_count *c = count_slot(ib, k[i], false, now);
        if (c != NULL && c->locked_until > now) {
            locked = true;
            *which = i == 0 ? "username" : "source address";
            *left_s = (long)((c->locked_until - now + 999) / 1000);
        }
    }
    pthread_mutex_unlock(&ib->mu);
    return locked;
}

void ib_fail(struct vks_inbound *ib, const char *ukey, const char *addr, int64_t now, bool *started_user,
             bool *started_addr)
{
    char k[2][VKS_CRED_USERNAME_MAX + 3];
    count_key(k[0], sizeof k[0], 'u', ukey);
    count_key(k[1], sizeof k[1], 'a', addr);
    bool *started[2] = { started_user, started_addr };
    *started_user = *started_addr = false;
    pthread_mutex_lock(&ib->mu);
    for (int i = 0; i < (addr && addr[0] ? 2 : 1); i++) {
        struct ib_count *c = count_slot(ib, k[i], true, now);
        if (c->start == 0 || now - c->start >= ib->window_ms) /* a new counting window */
            c->start = now, c->fails = 0;
        c->used = now;
        unsigned max = i == 0 ? ib->max_user : ib->max_addr;
        if (++c->fails >= max && c->locked_until <= now) {
            c->locked_until = now + ib->lockout_ms;
            *started[i] = true;
        }
    }
    pthread_mutex_unlock(&ib->mu);
}

void ib_success(struct vks_inbound *ib, const char *ukey)
{
    char k[VKS_CRED_USERNAME_MAX + 3];
    count_key(k, sizeof k, 'u', ukey);
    pthread_mutex_lock(&ib->mu);
    struct ib_count *c = count_slot(ib, k, false, 0);
    if (c != NULL && c->locked_until == 0)
        memset(c, 0, sizeof *c);
    pthread_mutex_unlock(&ib->mu);
}

bool ib_cache_hit(struct vks_inbound *ib, const char *ukey, const unsigned char tag[IB_TAG_LEN], int64_t now,
                  uint64_t epoch, struct ib_rec *out)
{
    bool hit = false;
    pthread_mutex_lock(&ib->mu);
    struct ib_user *u = ib->ttl_ms > 0 ? user_slot(ib, ukey, false, NULL) : NULL;
    if (u != NULL && u->ok_until > now && u->epoch == epoch &&
        CRYPTO_memcmp(ib->tags.data + (size_t)(u - ib->users) * IB_TAG_LEN, tag, IB_TAG_LEN) == 0) {
        hit = ib_rec_copy(out, &u->rec) == VKS_OK;
        u->used = now;
    }
    pthread_mutex_unlock(&ib->mu);
    return hit;
}

bool ib_cache_rec(struct vks_inbound *ib, const char *ukey, int64_t now, uint64_t epoch, struct ib_rec *out)
{
    bool hit = false;
    pthread_mutex_lock(&ib->mu);
    struct ib_user *u = ib->ttl_ms > 0 ? user_slot(ib, ukey, false, NULL) : NULL;
    if (u != NULL && u->rec_until > now && u->epoch == epoch) {
        hit = ib_rec_copy(out, &u->rec) == VKS_OK;
        u->used = now;
    }
    pthread_mutex_unlock(&ib->mu);
    return hit;
}

void ib_cache_put(struct vks_inbound *ib, const char *ukey, const struct ib_rec *rec,
                  const unsigned char tag[IB_TAG_LEN], int64_t now, uint64_t epoch)
{
    if (ib->ttl_ms <= 0)
        return;
    struct ib_rec copy;
    if (ib_rec_copy(&copy, rec) != VKS_OK)
        return;
    pthread_mutex_lock(&ib->mu);
    bool fresh = false;
    struct ib_user *u = user_slot(ib, ukey, true, &fresh);
    ib_rec_clear(&u->rec);
    u->rec = copy;
    u->rec_until = now + ib->ttl_ms;
    u->used = now;
    if (u->epoch != epoch) /* a success remembered under another reset epoch is forgotten */
        u->ok_until = 0;
    u->epoch = epoch;
    unsigned char *t = ib->tags.data + (size_t)(u - ib->users) * IB_TAG_LEN;
    if (tag != NULL) {
        memcpy(t, tag, IB_TAG_LEN);
        u->ok_until = now + ib->ttl_ms;
    }
    pthread_mutex_unlock(&ib->mu);
}

void vks_inbound_flush(struct vks_inbound *ib)
{
    pthread_mutex_lock(&ib->mu);
    for (size_t i = 0; i < ib->n; i++) {
        ib_rec_clear(&ib->users[i].rec);
        memset(&ib->users[i], 0, sizeof ib->users[i]);
    }
    vks_wipe(ib->tags.data, ib->n * IB_TAG_LEN);
    pthread_mutex_unlock(&ib->mu);
}
