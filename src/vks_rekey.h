/*
 * vks_rekey: bulk envelope key rotation (issue 13, `vks rekey --to KEYID`). Walks the KV v2 tree
 * under a mount and prefix (LIST, recursive) and re-encrypts every string value of the latest
 * version that is an ENC: envelope not under the target key id: decrypted with the keyring (old
 * and new keys both loaded), encrypted again as ENC:v2:<target> bound to the same (mount, path,
 * field), written back with a KV v2 merge PATCH under check-and-set on the version read (only the
 * changed fields travel; plaintext fields are never read into memory beyond their first bytes).
 * A managed credential's custom_metadata then follows the new version (rev, current_version) and
 * records `key_id` (docs/credentials.md). Design and decisions: docs/internals/rekey.md.
 *
 * Secrets: an envelope is decoded into an arena slot, decrypted by vks_envelope_rekey into an arena
 * slot that is wiped before it returns; nothing here holds a plaintext in heap memory or prints one.
 *
 * Ownership: stated per function. Thread-safety: one run per vks_cred_ctx at a time; the functions
 * keep no global state (the drill knob reads the environment).
 */
#ifndef VKS_REKEY_H
#define VKS_REKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_cred.h"
#include "vks_error.h"

#define VKS_REKEY_SECRETS_MAX 100000 /* secrets one run walks; more: narrow the prefix          */
#define VKS_REKEY_DEPTH_MAX 16       /* folder depth under the prefix                           */
#define VKS_REKEY_CAS_TRIES 5        /* re-reads after a lost check-and-set before giving up      */
#define VKS_REKEY_FIELDS_MAX 64      /* string fields looked at in one secret                    */
#define VKS_REKEY_FIELD_NAME_MAX 128
#define VKS_REKEY_ERRORS_KEPT 200    /* per-item errors kept for the report (all are counted)   */

/* ---------------------------------------------------------------- pure parts (vks_rekey_scan.c) */

/* What one field of a secret's data is. */
enum vks_rekey_kind {
    VKS_REKEY_PLAIN = 0,   /* a string that is not an ENC: envelope: left alone                  */
    VKS_REKEY_NOT_STRING,  /* a number, object, array, true/false/null: left alone               */
    VKS_REKEY_ENC,         /* a string beginning with ENC:                                        */
};
struct vks_rekey_field {
    char name[VKS_REKEY_FIELD_NAME_MAX + 1];
    enum vks_rekey_kind kind;
    size_t off, len;       /* the value's span in the buffer (strings: with the quotes)          */
};
/*
 * Lists the members of the JSON object span obj of buf (a span from a successful vks_json_scan of
 * buf, so the text is known to be well formed): name, kind and span of each, in order. Values are
 * not decoded. VKS_E_INVALID_INPUT when there are more than cap members or a name is longer than
 * VKS_REKEY_FIELD_NAME_MAX bytes (naming it by its length), or obj is not an object.
 * Pure, reentrant.
 */
vks_status vks_rekey_fields(const char *buf, size_t len, size_t obj_off, size_t obj_len, struct vks_rekey_field *out,
                            size_t cap, size_t *n, struct vks_err *err);

/* The crash drill: VKS_REKEY_STOP_AFTER="<step>" or "<step>:<N>" names a step ("list", "read",
 * "data", "meta") and the Nth time it is reached (default 1). Pure: true when `spec` asks to stop
 * at the `count`th arrival at `step`. */
bool vks_rekey_drill_match(const char *spec, const char *step, unsigned long count);

/* ---------------------------------------------------------------- the run (vks_rekey.c) */

struct vks_rekey_counts {
    size_t secrets;        /* secrets listed                                                      */
    size_t secrets_changed;/* secrets written (or, dry run, that would be)                        */
    size_t managed_changed;/* of them, vks cred credentials (metadata key_id written)             */
    size_t values_rekeyed; /* ENC: values re-encrypted (dry run: that would be)                   */
    size_t values_current; /* ENC: values already under the target key                           */
    size_t values_plain;   /* string values that are not envelopes                                */
    size_t values_other;   /* non-string values                                                   */
    size_t no_live;        /* secrets without a live latest version (metadata only, deleted, destroyed) */
    size_t busy;           /* credentials with a rotation in flight: skipped, reported            */
    size_t cas_retries;    /* lost check-and-set, re-read and retried                             */
    size_t meta_repaired;  /* metadata that lagged a data write of an earlier, killed run          */
    size_t failed;         /* items (secrets or fields) that could not be done: errors[]          */
    size_t requests;       /* Vault requests made                                                 */
};

struct vks_rekey_error {
    char path[VKS_CRED_NAME_MAX * 2 + 2]; /* mount-relative path of the secret (or folder)         */
    char field[VKS_REKEY_FIELD_NAME_MAX + 1]; /* "" for the whole secret                            */
    vks_status code;
    char msg[VKS_ERR_MSG_MAX];
};

/* Verify pass: what is left in live latest versions, by key. */
struct vks_rekey_verify {
    size_t secrets, values_target, values_other, values_legacy, busy, failed;
    char other_ids[256];   /* "k1 (3), mail-proxy (1)": ids of envelopes not under the target    */
};

/* Called after each secret; phase "rekey", "dry-run" or "verify". */
typedef void (*vks_rekey_progress_fn)(void *arg, const char *phase, size_t done, size_t total);

struct vks_rekey_opts {
    struct vks_cred_ctx *ctx;      /* Vault client, keyring (must hold target and the old keys), mount, prefix */
    const char *target;            /* the key id to re-encrypt under (must be in the keyring)       */
    bool dry_run;                  /* read, decrypt and count; write nothing (no audit event either) */
    size_t max_secrets;            /* refuse (before any write) a prefix holding more; 0 or more than
                                      VKS_REKEY_SECRETS_MAX: VKS_REKEY_SECRETS_MAX                  */
    vks_rekey_progress_fn progress;
    void *progress_arg;
};

struct vks_rekey_result {
    struct vks_rekey_counts c;
    struct vks_rekey_error *errors;/* heap, errors kept (at most VKS_REKEY_ERRORS_KEPT); free with
                                      vks_rekey_result_free                                      */
    size_t nerrors;
};
void vks_rekey_result_free(struct vks_rekey_result *r);

/*
 * The run. VKS_OK when every secret was done or left alone as documented; VKS_E_CONFLICT ("partial")
 * when some items failed or were skipped (each in res->errors, naming the path and field; nothing
 * lost: a failed item keeps its old value, a rerun picks it up); other codes when the run could not
 * start or the walk failed (target not in the keyring: VKS_E_CONFIG; LIST refused: Vault's code),
 * before anything was written. One audit event rekey.run (operator, target, mount, prefix, counts)
 * whatever the outcome (not for a dry run), and one cred.rekey per managed credential written.
 * res is owned by the caller (vks_rekey_result_free).
 */
vks_status vks_rekey_run(const struct vks_rekey_opts *o, struct vks_rekey_result *res, struct vks_err *err);

/*
 * The verify pass: lists again and inspects (no key needed) every ENC: value of every live latest
 * version. VKS_OK when the walk completed (then v->values_other + v->values_legacy is what is left
 * under other keys; 0 means the old key can be retired); *requests is increased by the requests made.
 */
vks_status vks_rekey_verify(struct vks_cred_ctx *ctx, const char *target, vks_rekey_progress_fn progress,
                            void *progress_arg, struct vks_rekey_verify *v, size_t *requests, struct vks_err *err);

#endif
