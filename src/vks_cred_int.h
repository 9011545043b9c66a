/*
 * vks_cred_int: the parts of src/vks_cred_ops.c that the other operation modules of vks_cred
 * (src/vks_cred_rotate.c) share. Not an API: nothing outside src/vks_cred*.c includes it.
 * Ownership and thread-safety as in vks_cred.h (one vks_cred_ctx per thread).
 */
#ifndef VKS_CRED_INT_H
#define VKS_CRED_INT_H

#include "vks_cred.h"

#define VKS_CRED_PATH_MAX (VKS_CRED_NAME_MAX * 2 + 2)

/* The operator's identity (lookup-self), cached in ctx. */
vks_status vks_cred_int_identity(struct vks_cred_ctx *ctx, struct vks_err *err);
/* <prefix><name> after checking NAME. */
vks_status vks_cred_int_path(const struct vks_cred_ctx *ctx, const char *name, char *out, size_t cap,
                             struct vks_err *err);
/* GET metadata and parse; VKS_E_NOT_FOUND names the credential. */
vks_status vks_cred_int_load(struct vks_cred_ctx *ctx, const char *name, const char *path,
                             struct vks_cred_record *rec, struct vks_err *err);
/* Managed, and rev == Vault's current_version (else VKS_E_CONFLICT naming both). */
vks_status vks_cred_int_editable(const struct vks_cred_record *rec, const char *path, struct vks_err *err);
/* One cred.<action> audit event; returns st, or the audit failure when st was VKS_OK. */
vks_status vks_cred_int_audit(struct vks_cred_ctx *ctx, const char *action, const char *path, const char *username,
                              int64_t version, const char *reason, const char *detail, vks_status st,
                              struct vks_err *err);
/* {"key":envelope,"username":username} (heap). */
vks_status vks_cred_int_data_json(const char *envelope, const char *username, char **out, struct vks_err *err);
/* PATCH username under cas = rec->vault_version: the next version, same password. */
vks_status vks_cred_int_bump(struct vks_cred_ctx *ctx, const char *path, const struct vks_cred_record *rec,
                             int64_t *nv, struct vks_err *err);

/* The username index (src/vks_cred_index.c; docs/credentials.md "Usernames are unique: the index"):
 * <mount>/data/vks-index/<prefix>usernames/<hex of the lowercased username>, {"name","username","claimed"}.
 * A claim younger than this many seconds whose credential is not (yet) managed is a create in flight. */
#define VKS_CRED_INDEX_GRACE 300
#define VKS_CRED_INDEX_PATH_MAX (VKS_CRED_NAME_MAX + 32 + 2 * VKS_CRED_USERNAME_MAX + 1)
/* Claims USERNAME for NAME: cas 0, or a takeover (cas = its version) of a left-over record; *version is
 * the index version written. VKS_E_EXISTS naming the username when a live credential (or a create in
 * flight) holds it. */
vks_status vks_cred_int_index_claim(struct vks_cred_ctx *ctx, const char *name, const char *username,
                                    int64_t *version, struct vks_err *err);
/* Removes the record of USERNAME if it still names NAME (and is at `version`, when > 0). A missing
 * record is VKS_OK. */
vks_status vks_cred_int_index_release(struct vks_cred_ctx *ctx, const char *name, const char *username,
                                      int64_t version, struct vks_err *err);

#endif
