/*
 * vks_resolver: the process-wide runtime and vks_resolve(), the one function every lookup goes
 * through (docs/internals/resolver.md).
 *
 * The runtime (configuration, Vault client, keyring) is process-wide: it is built once, from the
 * environment on first use or from vks_resolver_setup, and replaced atomically when setup is
 * called with different options (the new runtime is built completely first; lookups in flight
 * keep the snapshot they started with; the old one is freed when its last user releases it).
 * Setup with the same options is a no-op.
 *
 * vks_resolve(), per lookup, in this order:
 *   1. the value: FILE read with open/fstat/read into an arena slot (refused over VKS_SECRET_MAX);
 *      DATA copied; EVENT taken from the front end's handler result; VAULT through the
 *      process-wide cache (vks_cache) whose fetch reads Vault (vks_vault) and decrypts;
 *   2. restrictions (vks_restrict) against ctx with the secret's custom_metadata, on every lookup,
 *      cache hits included, inside the cache (its admit callback): a refused value is wiped and
 *      never cached, and a cached one is wiped when a caller is refused (docs/restrictions.md);
 *   3. ENC: envelopes are decrypted (vks_envelope; the place is (mount, path, key) for Vault and
 *      empty for the other forms); with require_encrypted a plaintext value fails not_encrypted;
 *   4. exactly one audit event (vks_audit), whatever the outcome; when audit refuses
 *      (VKS_E_AUDIT_UNAVAILABLE) the value is wiped and the lookup fails with that code.
 *
 * Messages name the keysource (vks_keysource_describe) and never hold a secret.
 *
 * Thread-safety: every function may be called from any thread at any time, except
 * vks_resolver_shutdown (tests and exit only). No lock is held while Vault is read, a file is
 * read, or anything of the caller runs.
 */
#ifndef VKS_RESOLVER_H
#define VKS_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_config.h"
#include "vks_error.h"
#include "vks_keysource.h"
#include "vks_secmem.h"

/* The caller's context (all optional, NULL = absent): carried to restrictions and audit. */
struct vks_ctx {
    const char *domain;
    const char *site_name;
    const char *username;
    const char *destination;
    const char *tag;
};

/* An EVENT keysource's value, produced by the front end's handler before vks_resolve (the core
 * never calls into Lua). On VKS_OK vks_resolve takes ownership of `value`; on failure `msg` says
 * why (it must hold no secret; the handler's own error text is never used). */
struct vks_event_result {
    vks_status status;
    vks_secret value;
    char msg[256];
};

struct vks_resolve_req {
    const char *api;                  /* "resolve" (NULL) or "resolve_handle", for audit       */
    const struct vks_keysource *ks;   /* NULL: the keysource did not parse; `err` passed to
                                         vks_resolve already holds that failure, which is
                                         audited and returned                                   */
    const struct vks_ctx *ctx;        /* may be NULL                                            */
    struct vks_event_result *event;   /* EVENT keysources                                       */
    /* optional, VAULT only: the cache identity of exactly this ks as vks_resolver_identity_gen
     * returned it, with its generation. Used when that generation is still the runtime's
     * (saves building the identity, and the token fingerprint, on every lookup); otherwise
     * ignored and the identity is built again. NULL: always built.                          */
    const char *identity;
    unsigned long identity_gen;
    size_t identity_len;              /* with identity: strlen(identity) and                    */
    uint64_t identity_hash;           /* vks_cache_identity_hash(identity, identity_len)        */
    bool reuse_out;                   /* *out holds the caller's own arena slot (len 0, wiped)
                                         or is empty: a cache hit may copy into it instead of
                                         allocating; it is freed when not used. false: *out is
                                         overwritten (uninitialised is fine)                    */
    /* optional, VAULT only (added): other keys of the same secret (at most VKS_KV_SIBLINGS_MAX,
     * borrowed) that this lookup's Vault read caches too, each under its own identity (as if
     * looked up with the same keysource and that key): one Vault request for a credential whose
     * user name and password are two fields. Only when the read is admitted for this caller's
     * ctx (restrictions: a refused lookup keeps no key of the secret); an absent or non-string
     * key, or one whose envelope does not open, is simply not stored. No audit event for them:
     * each is audited when it is looked up. A cache hit reads nothing and stores nothing.      */
    const char *const *sibling_keys;
    size_t n_sibling_keys;
    /* optional (added): answer only from a fresh cache entry (vks_cache_get_cached), never read
     * Vault, a file or anything that may block. Anything else returns VKS_E_NOT_CACHED with no
     * audit event and nothing changed, so that the caller can repeat the lookup without hit_only
     * where blocking is fine. A hit (or a hit refused by restrictions) is audited as usual; the
     * audit sink's mode decides whether that may block (sync file writes do).                 */
    bool hit_only;
};

/* Facts about a lookup, for the front end (no secret). */
struct vks_resolve_info {
    enum vks_ks_kind kind;
    const char *outcome;      /* "hit", "miss", "refresh", "stale", "negative", "error", "bypass",
                                 "none" (static string)                                        */
    bool cached;
    double age_s;
    int kv_version;
    int64_t secret_version;
    bool encrypted;
};

/*
 * Resolves one keysource. On VKS_OK *out holds the value in a fresh arena slot owned by the caller
 * (vks_secret_free). On failure *out is empty and err names the keysource.
 */
vks_status vks_resolve(const struct vks_resolve_req *req, vks_secret *out,
                       struct vks_resolve_info *info, struct vks_err *err);

/*
 * Applies a configuration (already vks_config_finish'ed; borrowed, copied inside). *changed is
 * set to false when it equals the one in force (no-op). On error nothing changes.
 * Errors: VKS_E_CONFIG and the Vault client's / keyring's errors, naming the option or file.
 */
vks_status vks_resolver_setup(const struct vks_config *cfg, bool *changed, struct vks_err *err);

/*
 * vks_resolver_setup in two steps, for a front end that must apply several modules' options all
 * or nothing (vks.setup): prepare builds the new runtime (Vault client, keyring; files checked)
 * without touching anything global, and may fail; *out is NULL when cfg equals the configuration
 * in force (nothing to do). commit makes a prepared runtime current (cannot fail; frees `p`;
 * returns true when something was swapped); discard frees one that will not be used. Between
 * prepare and commit another thread's setup may have swapped: the last commit wins.
 * Ownership: `p` belongs to the caller until commit or discard, exactly one of which is called.
 */
struct vks_resolver_prep;
vks_status vks_resolver_prepare(const struct vks_config *cfg, struct vks_resolver_prep **out,
                                struct vks_err *err);
bool vks_resolver_commit(struct vks_resolver_prep *p);
void vks_resolver_discard(struct vks_resolver_prep *p);

/* Copies the configuration in force (building it from the environment if needed). */
vks_status vks_resolver_get_config(struct vks_config *out, struct vks_err *err);

/*
 * The cache identity of a keysource (VAULT and FILE; the others are never cached), as used by
 * vks_resolve with the current configuration: everything that selects a value, never a secret
 * (a per-keysource token is represented by a keyed fingerprint). Returns VKS_E_INVALID_ARG for
 * key_data and event keysources, VKS_E_BAD_KEYSOURCE when it does not fit in n bytes.
 */
vks_status vks_resolver_identity(const struct vks_keysource *ks, char *buf, size_t n,
                                 struct vks_err *err);

/* vks_resolver_identity, and the generation of the runtime it was built under (for
 * vks_resolve_req.identity: a front end may keep both with its parsed keysource). */
vks_status vks_resolver_identity_gen(const struct vks_keysource *ks, char *buf, size_t n,
                                     unsigned long *gen, struct vks_err *err);

/* The generation of the runtime in force (0 before the first one is built): a lock-free read, so
 * that a front end can tell whether an identity it kept is still current. */
unsigned long vks_resolver_generation(void);

/* Releases the runtime (tests and exit). Not concurrent with lookups. */
void vks_resolver_shutdown(void);

#endif
