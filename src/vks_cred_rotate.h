/*
 * vks_cred_rotate: zero-downtime rotation of a managed credential (issue 12, phase 3), in the
 * manner of AWS Secrets Manager's four steps. Design: docs/internals/cred-rotate.md; the stored
 * shape: docs/credentials.md "Rotation".
 *
 * STATUS: contract written by the lead; implemented on branch `rotate` (src/vks_cred_rotate.c, the
 * set hook in src/vks_hook.c). `rotate --due` is built on it on branch `rotate-due`
 * (vks_cred_rotate_due.h). Refinements of the implementation (names kept): the pending record's
 * path and fields, the drill knob, the exact error codes below, relay/smtp options forced strict.
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
 * or abort. Each step writes one audit event (cred.rotate.<step>, result and code, the rotation id
 * in `detail`), as do abort (cred.rotate.abort) and rollback (cred.rollback, with the reason); a
 * rotation refused before its claim (in flight, metadata unreadable) is a failed cred.rotate.claim.
 *
 * Where the state lives (docs/credentials.md "Rotation"): custom_metadata of the credential (state,
 * rotation_id, rotation_started, current_version, previous_version, previous_rotated,
 * pending_version) under the check-and-set lock, and the pending record
 * <mount>/data/vks-rotation/<prefix><name> {pending_key: ENC envelope bound to that path and field,
 * rotation_id, step, base_version, finish_version}, written with cas and removed (metadata DELETE)
 * at finish and abort. Resolvers read only the main path's latest version: never a pending password.
 *
 * Drill: VKS_CRED_ROTATE_STOP_AFTER=claim|create|set|test|finish-data makes the process _exit(137)
 * right after that step (tests and fire drills; docs/internals/cred-rotate.md "Crash drills").
 *
 * Errors: VKS_E_CONFLICT (a rotation in flight and !resume: the message names --resume and
 * --abort; a lost check-and-set; restrict or rollback during a rotation), VKS_E_NOT_FOUND (resume
 * or abort with nothing in flight; no previous version), VKS_E_INVALID_INPUT (no relay given or
 * stored: names --relay; a bad --relay; a --password-stdin differing from the one already pending),
 * VKS_E_CONFIG (no encryption key), VKS_E_REJECTED (the hook exited non-zero; the relay refused
 * the pending password: reply code in the message and in result->test), VKS_E_TIMEOUT (hook or
 * SMTP deadline), VKS_E_RESTRICTED (the relay's address is not in allowed_hosts), VKS_E_TLS,
 * VKS_E_UNAVAILABLE, VKS_E_PERMISSION_DENIED and Vault's codes. The test step always uses
 * VKS_SMTP_TLS_REQUIRED with certificate verification whatever opts->smtp says (only cafile,
 * ehlo_name and timeout_ms of it are used; timeout 0 means 30 s).
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
/* Back to previous_version's password as a new current version (check-and-set): its envelope is
 * copied unchanged (same mount, path and field, so the same binding); previous_version becomes the
 * version rolled back from; rotated is the restored password's (previous_rotated, else that
 * version's creation time) and due follows it. Audited with reason (1-256 printable characters).
 * VKS_E_PERMISSION_DENIED without any data request when sys/capabilities-self says the token may
 * not read the data (cred-operator alone). */
vks_status vks_cred_rollback(struct vks_cred_ctx *ctx, const char *name, const char *reason,
                             int64_t *new_version, struct vks_err *err);
void vks_cred_rotate_result_free(struct vks_cred_rotate_result *result);

#endif
