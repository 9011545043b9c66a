/*
 * vks_cred_reset: the emergency reset of managed credentials (issue 13). One operation for the
 * CLI (`vks cred reset`) and the web API (`vks serve`). Design: docs/internals/reset.md; the
 * operator's runbook: docs/incident-runbook.md; the stored shape: docs/credentials.md.
 *
 * Steps, in this order:
 *   1. select: NAME, every managed credential whose custom_metadata tenant is T, or every
 *      managed credential under the prefix (LIST, recursive, as vks cred list);
 *   2. mark each one at once under the check-and-set lock (docs/credentials.md): custom_metadata
 *      state=reset (a credential being rotated keeps state=rotating), reset_id, reset_at, and due
 *      brought forward to now. From here every resolver that reads the credential refuses it
 *      (VKS_E_REVOKED), a fresh process included. One audit event cred.reset.mark per credential
 *      (reason, reset_id). A credential already reset is left as it is ("already");
 *   3. append one entry to the control record <mount>/vks-control/reset (check-and-set, retried
 *      on a concurrent writer): running resolvers learn of it at their next check (default 2 s)
 *      and drop the credentials from their caches;
 *   4. with rotate, and only when every selected credential was marked (a rerun does both):
 *      vks_cred_rotate on each (its steps, not a copy; "already" ones too); a finished rotation
 *      ends the reset (state active, reset_id removed), a failed one leaves it reset;
 *   5. one audit event cred.reset for the act: operator, reason, scope, reset_id and counts.
 * A failure of Vault midway stops nothing already done: result->items say, per credential, what
 * was done; a rerun marks what is left (the ones already reset are skipped) and writes the record.
 *
 * Errors: VKS_E_INVALID_INPUT (reason missing or bad: 1-256 characters, no control character;
 * scope arguments; NAME not managed), VKS_E_NOT_FOUND (NAME, or a tenant/--all with no managed
 * credential), the first failure of a mark or of the record write (the message says how many were
 * marked and that a rerun completes), VKS_E_REJECTED/..., rotation's codes (with rotate), and the
 * audit failure. Result items are filled in every case.
 *
 * Ownership: ctx, req borrowed; result caller-owned (vks_cred_reset_result_free).
 * Thread-safety: as vks_cred_ctx (one ctx per thread).
 */
#ifndef VKS_CRED_RESET_H
#define VKS_CRED_RESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_cred.h"
#include "vks_cred_rotate.h"

enum vks_cred_reset_scope { VKS_CRED_RESET_NAME = 0, VKS_CRED_RESET_TENANT = 1, VKS_CRED_RESET_ALL = 2 };

struct vks_cred_reset_req {
    enum vks_cred_reset_scope scope;
    const char *name;                        /* NAME scope                                     */
    const char *tenant;                      /* TENANT scope                                   */
    const char *reason;                      /* required, audited                              */
    bool rotate;                             /* then rotate each marked credential             */
    const struct vks_cred_rotate_opts *rotate_opts; /* with rotate; NULL: generated password,
                                                        stored relay, no hook                  */
    void (*progress)(const char *name, const char *what, void *arg); /* may be NULL            */
    void *progress_arg;
};

struct vks_cred_reset_item {
    char name[VKS_CRED_NAME_MAX + 1];
    const char *outcome;                     /* "reset", "already", "rotated", "failed",
                                                "rotate-failed" (static)                       */
    vks_status status;
    char error[VKS_ERR_MSG_MAX];              /* the failure, no secret                         */
    int64_t new_version;                     /* after a rotation                               */
};

struct vks_cred_reset_result {
    char reset_id[64];
    char scope[VKS_CRED_NAME_MAX + 16];      /* "name:N", "tenant:T", "all:<prefix>"           */
    struct vks_cred_reset_item *items;
    size_t n, n_marked, n_failed, n_rotated;
    bool record_written;
    int64_t record_seq;
};

vks_status vks_cred_reset(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *req,
                          struct vks_cred_reset_result *result, struct vks_err *err);
void vks_cred_reset_result_free(struct vks_cred_reset_result *result);

/* True when rec (custom_metadata) says the credential is under a reset: state=reset or a
 * reset_id. Pure. */
bool vks_cred_is_reset(const struct vks_cred_record *rec);

#endif
