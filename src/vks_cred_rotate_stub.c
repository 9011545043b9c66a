/*
 * TEMPORARY (branch rotate-due only): stands in for branch rotate's vks_cred_rotate.c so that
 * `rotate --due`'s selection and --dry-run build and are tested before the rotation lands. Deleted
 * when `rotate` is merged. Every call fails: nothing is ever rotated by this file.
 */
#include "vks_cred_rotate.h"

#include <string.h>

vks_status vks_cred_rotate(struct vks_cred_ctx *ctx, const char *name, const struct vks_cred_rotate_opts *opts,
                           struct vks_cred_rotate_result *result, struct vks_err *err)
{
    (void)ctx, (void)name, (void)opts;
    memset(result, 0, sizeof *result);
    return vks_err_set(err, VKS_E_INTERNAL, "rotation is not built on this branch yet");
}

void vks_cred_rotate_result_free(struct vks_cred_rotate_result *result)
{
    (void)result;
}
