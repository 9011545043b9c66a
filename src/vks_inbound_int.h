/*
 * vks_inbound_int: the state shared by src/vks_inbound.c (the verification flow) and
 * src/vks_inbound_table.c (success cache and failure counters). Not an API. Every ib_* function
 * of the table takes ib->mu itself; callers hold no lock. Thread-safety as vks_inbound.h.
 */
#ifndef VKS_INBOUND_INT_H
#define VKS_INBOUND_INT_H

#include <pthread.h>

#include "vks_cred.h"
#include "vks_hmac.h"
#include "vks_inbound.h"
#include "vks_secmem.h"

#define IB_TAG_LEN 32
#define IB_PROBE 8

/* A credential record as the checks need it (no secret). */
struct ib_rec {
    char name[VKS_CRED_NAME_MAX + 1];
    char username[VKS_CRED_USERNAME_MAX + 1];
    char *cm;                      /* custom_metadata JSON (heap) or NULL                        */
    int64_t version;
};

struct ib_user {                   /* one cache slot                                             */
    char key[VKS_CRED_USERNAME_MAX + 1]; /* lowercased username; "" = free                      */
    struct ib_rec rec;
    int64_t rec_until, ok_until, used;   /* monotonic ms                                         */
    uint64_t epoch;                /* vks_reset_gate_epoch() before the record was read            */
};

struct ib_count {                  /* one failure counter ("u:<user>" or "a:<address>")          */
    char key[VKS_CRED_USERNAME_MAX + 3];
    unsigned fails;
    int64_t start, locked_until, used;
};

struct vks_inbound {
    pthread_mutex_t mu;
    struct vks_vault *vault;
    const struct vks_keyring *kr;
    char mount[128], prefix[VKS_CRED_NAME_MAX + 1];
    long ttl_ms, lockout_ms, window_ms, reset_interval_ms, reset_bound_ms;
    unsigned max_user, max_addr;
    size_t n;                      /* slots in users and counts                                  */
    struct ib_user *users;
    struct ib_count *counts;       /* 2 * n                                                      */
    vks_scratch tags;              /* n * IB_TAG_LEN, locked: tag of users[i] at i * IB_TAG_LEN   */
    struct vks_hmac_key key;       /* per-process random key of the tags                         */
    char dummy[256];               /* a verifier of a random password (unknown users)            */
};

int64_t ib_now_ms(void);
void ib_rec_clear(struct ib_rec *r);
vks_status ib_rec_copy(struct ib_rec *dst, const struct ib_rec *src);

vks_status ib_table_init(struct vks_inbound *ib, struct vks_err *err);
void ib_table_free(struct vks_inbound *ib);
/* True when the username (lowercased) or the address is locked out now; *which = "username" or
 * "source address", *left_s the seconds left. */
bool ib_locked(struct vks_inbound *ib, const char *ukey, const char *addr, int64_t now, const char **which,
               long *left_s);
/* Counts one failure for both; *started_user / *started_addr: this failure started a lockout. */
void ib_fail(struct vks_inbound *ib, const char *ukey, const char *addr, int64_t now, bool *started_user,
             bool *started_addr);
/* A success forgets the username's failures. */
void ib_success(struct vks_inbound *ib, const char *ukey);
/* A cached success for this tag, stored under this reset epoch: *out a copy of the record. */
bool ib_cache_hit(struct vks_inbound *ib, const char *ukey, const unsigned char tag[IB_TAG_LEN], int64_t now,
                  uint64_t epoch, struct ib_rec *out);
/* A cached record (from a success or a sender check) less than ttl old, of this reset epoch. */
bool ib_cache_rec(struct vks_inbound *ib, const char *ukey, int64_t now, uint64_t epoch, struct ib_rec *out);
/* Remembers the record (and the success tag when tag != NULL); epoch: vks_reset_gate_epoch() read
   before the record was read from Vault, so a reset seen meanwhile makes the entry absent. */
void ib_cache_put(struct vks_inbound *ib, const char *ukey, const struct ib_rec *rec,
                  const unsigned char tag[IB_TAG_LEN], int64_t now, uint64_t epoch);

#endif
