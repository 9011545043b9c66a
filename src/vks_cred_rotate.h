/*
 * vks_cred_rotate: zero-downtime rotation of a managed credential (issue 12, phase 3), in the
 * manner of AWS Secrets Manager's four steps. Design: docs/internals/cred-rotate.md; the stored
 * shape: docs/credentials.md "Rotation".
 *
 * STATUS: contract written by the lead; implemented on branch `rotate`. `rotate --due` is built on
 * it on branch `rotate-due` (vks_cred_rotate_due.h).
 *
 * Steps, each idempotent and recorded before the next starts, so that a process killed at any
 * point is completed by `--resume` (the same rotation_id, never a second rotation):
 *   claim   state=rotating + rotation_id in custom_metadata, under the check-and-set lock
 *           (docs/credentials.md "Every write is check-and-set"); refused with VKS_E_CONFLICT and a
 *           message naming `--resume` and `--abort` when a rotation is already in flight;
 *   create  the new password (generated, or the provider's from opts->password) stored as PENDING
 *           where resolvers never read it (the main path's latest version keeps the current one);
 *   set     opts->set_hook run with the pending password on stdin (no hook: a no-op, e.g. the
 *           provider rotates or issued the password);
 *   test    a real SMTP AUTH (EHLO, STARTTLS, AUTH PLAIN) against the credential's relay with the
 *           pending password, through vks_smtp, the relay's address checked against the
 *           credential's allowed_hosts before anything is sent: only 235 goes on;
 *   finish  the pending password becomes the current one (a new version, check-and-set), the old
 *           current becomes previous_version (the last known good), state=active, rotated=now,
 *           due=now+policy; the pending copy is removed.
 * A failure stops at that step with current untouched and resolvable; the error says how to resume
 * or abort. Each step writes one audit event (cred.rotate.<step>, result and code), as do abort
 * and rollback.
 *
 * Ownership: ctx, name, opts borrowed; result caller-owned (vks_cred_rotate_result_free).
 * Thread-safety: as vks_cred_ctx (one ctx per thread).
 */
#ifndef VKS_CRED_ROTATE_H
#define VKS_CRED_ROTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "vks_cred.h"
#include "vks_smtp.h"

struct vks_cred_rotate_opts {
    bool resume;                       /* continue the rotation in flight; refuse when none       */
    const vks_secret *password;        /* provider-issued (--password-stdin); NULL: generate      */
    const char *set_hook;              /* command (/bin/sh -c) fed the pending password on stdin;
                                          env VKS_CRED_NAME, VKS_CRED_USERNAME, VKS_CRED_ROTATION_ID;
                                          NULL: no hook                                           */
    int hook_timeout_ms;               /* 0: 60000; the hook's process group is killed after it  */
    const char *relay;                 /* "host:port" overriding custom_metadata.relay; NULL: stored */
    struct vks_smtp_opts smtp;         /* tls mode, cafile, ehlo_name, timeout_ms for the test step;
                                          host/port/username/peer_ok are filled by the operation */
    void (*progress)(const char *step, const char *detail, void *arg); /* may be NULL            */
    void *progress_arg;
};

struct vks_cred_rotate_result {
    char rotation_id[64];
    const char *step;                  /* the last step completed: "claim", "create", "set",
                                          "test", "finish" (static string)                       */
    int64_t old_version, new_version;  /* main-path versions: current before and after           */
    struct vks_smtp_result test;       /* the test step's session (transcript redacted)          */
};

vks_status vks_cred_rotate(struct vks_cred_ctx *ctx, const char *name, const struct vks_cred_rotate_opts *opts,
                           struct vks_cred_rotate_result *result, struct vks_err *err);
/* Ends the rotation in flight without touching current: the pending copy is removed, state=active. */
vks_status vks_cred_rotate_abort(struct vks_cred_ctx *ctx, const char *name, struct vks_err *err);
/* Back to previous_version's password as a new current version (check-and-set), audited with
 * reason; needs a token that may read that version. */
vks_status vks_cred_rollback(struct vks_cred_ctx *ctx, const char *name, const char *reason,
                             int64_t *new_version, struct vks_err *err);
void vks_cred_rotate_result_free(struct vks_cred_rotate_result *result);

#endif
