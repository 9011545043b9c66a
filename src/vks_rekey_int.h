/*
 * vks_rekey_int: what src/vks_rekey.c (the run) and src/vks_rekey_walk.c (walk, reads, verify)
 * share. Not an API: nothing outside src/vks_rekey*.c includes it. Ownership and thread-safety as
 * in vks_rekey.h (one run per context; no globals).
 */
#ifndef VKS_REKEY_INT_H
#define VKS_REKEY_INT_H

#include "vks_rekey.h"

/* The paths a walk found (heap strings); max 0 = VKS_REKEY_SECRETS_MAX. */
struct names {
    char **v;
    size_t n, cap, max;
};

void rekey_names_free(struct names *nm);

/* Every secret under `dir` (mount-relative, ending in '/', or "" for the mount), depth first, into
 * nm. A folder too deep or a bad key is a per-item error in res (ignored when res is NULL); a
 * refused LIST and too many secrets end the walk with an error. *requests counts the LISTs. */
vks_status rekey_walk(struct vks_rekey_result *res, struct vks_vault *v, const char *mount, const char *dir,
                      int depth, struct names *nm, size_t *requests, struct vks_err *err);

/* Counts a per-item error and keeps it (the first VKS_REKEY_ERRORS_KEPT). */
void rekey_item_error(struct vks_rekey_result *res, const char *path, const char *field, vks_status code,
                      const char *msg);

/* One secret as read: metadata record, the latest version's answer (a scratch: it may hold
 * plaintext fields, wiped on reset) and its fields. Heap-allocated by the caller (it is large). */
struct secret {
    char path[VKS_CRED_NAME_MAX * 2 + 2], name[VKS_CRED_NAME_MAX + 1];
    struct vks_cred_record rec;
    bool loaded;
    vks_scratch body;              /* the data answer (wiped on close)                        */
    struct vks_rekey_field f[VKS_REKEY_FIELDS_MAX];
    size_t nf;
    int64_t version;               /* the version read                                        */
};

/* Frees the record and wipes the scratch; s can be read again. */
void rekey_secret_reset(struct secret *s);
/* GET metadata, then GET data of the latest version when it is live (*live). A secret removed
 * since the listing, or without a live latest version, is VKS_OK with *live false. */
vks_status rekey_secret_read(struct vks_cred_ctx *ctx, struct secret *s, bool *live, size_t *requests,
                             struct vks_err *err);
/* Field i's string (an envelope) decoded into a fresh arena slot, NUL-terminated (caller frees). */
vks_status rekey_field_value(const struct secret *s, size_t i, vks_secret *out, struct vks_err *err);

#endif
