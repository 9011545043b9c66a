/* vks_backup internals shared by vks_backup.c and vks_backup_restore.c (not installed). */
#ifndef VKS_BACKUP_INT_H
#define VKS_BACKUP_INT_H

#include "vks_backup.h"

struct backup_names {
    char **v;
    size_t n, cap;
};
void backup_names_free(struct backup_names *nm);
vks_status backup_walk(struct vks_cred_ctx *ctx, const char *rel, int depth, struct backup_names *nm,
                       size_t *requests, struct vks_err *err);
vks_status backup_identity(struct vks_cred_ctx *ctx, struct vks_err *err);
/* One backup.<action> audit event; returns st, or the audit failure when st is VKS_OK. */
vks_status backup_audit(struct vks_cred_ctx *ctx, const char *action, const struct vks_backup_summary *s,
                        vks_status st, struct vks_err *err);

#endif
