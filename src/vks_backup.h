/*
 * vks_backup: sealed backup and restore of every secret under a KV v2 prefix (issue 13). The
 * bundle is one JSON document (format "vks-backup" version 1, docs/backup.md "The bundle") sealed
 * in the age format (vks_age). Design: docs/internals/backup.md.
 *
 * Two separate duties: ENC: values stay envelopes in the bundle (the bundle's key opens the
 * bundle, the envelope key opens the passwords); the bundle holds every field of every version
 * as Vault stores it, so plaintext values of secrets vks cred does not manage are in it too (the
 * age seal protects them).
 *
 * Create streams: LIST (recursive), then per secret one metadata read and one data read per
 * readable version, each version's data copied from Vault's answer (a vks_scratch) straight into
 * the age writer's chunk buffer; the plaintext bundle never exists whole in memory.
 * Open is all or nothing: the whole file is authenticated and the whole document parsed and
 * checked before a caller can use it, so restore refuses a tampered, truncated or foreign bundle
 * or a wrong key before its first request.
 *
 * Ownership: stated per function. Thread-safety: one operation per context at a time (the
 * vks_cred_ctx rule); the functions keep no global state of their own.
 */
#ifndef VKS_BACKUP_H
#define VKS_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_age.h"
#include "vks_cred.h"
#include "vks_error.h"
#include "vks_json.h"
#include "vks_secmem.h"

#define VKS_BACKUP_FORMAT "vks-backup"
#define VKS_BACKUP_VERSION 1
#define VKS_BACKUP_SECRETS_MAX 100000
#define VKS_BACKUP_FILE_MAX (1024u * 1024u * 1024u) /* 1 GiB sealed */

/* Called every VKS_BACKUP_PROGRESS_EVERY secrets and at the end; phase "create" or "restore". */
#define VKS_BACKUP_PROGRESS_EVERY 100
typedef void (*vks_backup_progress_fn)(void *arg, const char *phase, size_t done, size_t total);

struct vks_backup_summary {
    size_t secrets, managed;       /* managed: custom_metadata.vks_cred present                    */
    size_t live, deleted, destroyed, absent; /* versions by state; absent: pruned by max_versions */
    size_t requests;               /* Vault requests made by the operation                        */
};

struct vks_backup_create_opts {
    struct vks_cred_ctx *ctx;      /* source: Vault client, mount, prefix (borrowed)               */
    const struct vks_age_recipient *recipients;
    size_t nrecipients;            /* 0: seal to passphrase                                       */
    const vks_secret *passphrase;
    int scrypt_logn;               /* 0: VKS_AGE_SCRYPT_LOGN                                      */
    vks_age_sink sink;             /* the sealed bytes (a temporary file: see cli/backup.c)      */
    void *sink_arg;
    vks_backup_progress_fn progress;
    void *progress_arg;
};
/* Writes the sealed bundle to the sink. One audit event backup.create (operator, mount, prefix,
 * counts; never a value) whatever the outcome. */
vks_status vks_backup_create(const struct vks_backup_create_opts *o, struct vks_backup_summary *sum,
                             struct vks_err *err);

/* ---- a bundle opened and checked (spans point into plain) ---- */
enum vks_backup_state { VKS_BACKUP_LIVE = 0, VKS_BACKUP_DELETED, VKS_BACKUP_DESTROYED };
struct vks_backup_version {
    int64_t version;
    enum vks_backup_state state;
    struct vks_json_span data;     /* LIVE: the data object; else type NONE                       */
};
struct vks_backup_secret {
    char path[VKS_CRED_NAME_MAX * 2 + 2]; /* mount-relative, checked like a credential NAME     */
    int64_t current_version, max_versions;
    bool cas_required, managed;
    char delete_version_after[32];
    struct vks_json_span custom_metadata; /* object, or type NONE/NULL                          */
    struct vks_backup_version *versions;  /* strictly increasing, 1..current_version             */
    size_t nversions;
};
struct vks_backup_bundle {
    vks_scratch plain;             /* the decrypted document (wiped on free)                       */
    char created[40], mount[128], prefix[VKS_CRED_NAME_MAX + 1], source_addr[256];
    struct vks_backup_secret *secrets;
    size_t n;
    struct vks_backup_summary counts;
};
/*
 * Opens the sealed file[0..n) with key (vks_age_open) and parses and checks the whole document:
 * format and version, every path, version numbers, states, data objects. *b is owned by the
 * caller (vks_backup_bundle_free). VKS_E_INVALID_INPUT for a document that is not a vks-backup
 * bundle (naming the secret and field), plus vks_age_open's errors.
 */
vks_status vks_backup_open(const unsigned char *file, size_t n, const struct vks_age_key *key,
                           struct vks_backup_bundle *b, struct vks_err *err);
void vks_backup_bundle_free(struct vks_backup_bundle *b);

/*
 * What verify prints for secret i, secret-free: the first 128 bits of SHA-256 of the current
 * version's stored `key` field as 32 hex characters when that is an ENC: envelope (a digest of
 * ciphertext, no guessing oracle); "" with *plaintext true when it is a plaintext value (never
 * hashed: an unkeyed hash of a password is an offline guessing oracle), "" when there is none.
 */
void vks_backup_envelope_digest(const struct vks_backup_bundle *b, size_t i, char hex[33], bool *plaintext);

/* The keyed fingerprint (vks_cred_fingerprint's: audit key's fingerprint subkey) of secret i's
 * current password, decrypting its envelope with kr at (mount, path, "key"). VKS_E_CONFIG without
 * an audit key; VKS_E_DECRYPT_FAILED without the right encryption key. */
vks_status vks_backup_fingerprint(const struct vks_backup_bundle *b, size_t i, const struct vks_keyring *kr,
                                  char hex[33], struct vks_err *err);

/*
 * Restores b into ctx's Vault at ctx->mount (the bundle's paths kept). Refused before any write
 * (VKS_E_EXISTS) when anything exists under the bundle's prefix in the target. Per secret:
 * metadata first (custom_metadata with the restrictions, max_versions, cas_required,
 * delete_version_after), then versions 1..current_version in order with cas = v-1 so the numbers
 * match (a placeholder for a deleted, destroyed or pruned version, then deleted or destroyed as
 * the source had it). One audit event backup.restore.
 */
vks_status vks_backup_restore(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                              vks_backup_progress_fn progress, void *progress_arg, struct vks_backup_summary *sum,
                              struct vks_err *err);

#endif
