/*
 * vks_vault: the Vault HTTP client (libcurl). KV v1 / v2 reads, mount version detection, token and
 * AppRole auth with renewal, retries with jittered backoff inside one overall deadline.
 *
 * CONTRACT for the resolver (implementation and details: docs/internals/vault.md). Fields marked
 * (secret) are held in vks_secret arena slots and never logged or put into an error message.
 *
 * Ownership: a struct vks_vault is created by vks_vault_new and freed by vks_vault_free; it owns a
 * copy of its config. Results are owned by the caller and released with vks_kv_result_free.
 * Thread-safety: vks_vault_kv_read may be called concurrently from any number of threads on one
 * client (connections are pooled and reused; auth state is behind its own lock). new/free are not
 * concurrent with anything else on the same client.
 */
#ifndef VKS_VAULT_H
#define VKS_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_secmem.h"

enum vks_auth_method { VKS_AUTH_TOKEN = 0, VKS_AUTH_APPROLE = 1 };

struct vks_vault_config {
    char *address;          /* VAULT_ADDR; default https://127.0.0.1:8200                     */
    char *namespace_;       /* VAULT_NAMESPACE; NULL = none                                   */
    enum vks_auth_method auth;
    vks_secret token;       /* (secret) VAULT_TOKEN or ~/.vault-token, for VKS_AUTH_TOKEN     */
    char *approle_mount;    /* default "approle"                                              */
    char *role_id;          /* VKS_APPROLE_ROLE_ID                                            */
    char *secret_id_file;   /* VKS_APPROLE_SECRET_ID_FILE (or secret_id from env, see below)  */
    vks_secret secret_id;   /* (secret) VKS_APPROLE_SECRET_ID                                 */
    char *cacert, *capath, *client_cert, *client_key, *tls_server_name;
    bool skip_verify;       /* VAULT_SKIP_VERIFY=true means skip (warns once)                 */
    bool allow_http;        /* plain http:// to a non-loopback host only when true            */
    long timeout_ms;        /* VAULT_CLIENT_TIMEOUT, overall deadline per lookup; default 60000 */
    int max_retries;        /* VAULT_MAX_RETRIES; default 2                                   */
    long min_retry_wait_ms, max_retry_wait_ms; /* default 1000 / 1500 (Vault's Go client)     */
    size_t max_response_bytes; /* default 1 MiB                                               */
};

/* Sets every field to its default (no environment): address https://127.0.0.1:8200, token auth
 * with an empty token, approle_mount "approle", timeout 60000 ms, 2 retries, waits 1000/1500 ms,
 * 1 MiB responses. Any previous content is NOT freed (call on a fresh struct). (added) */
void vks_vault_config_defaults(struct vks_vault_config *cfg);

/* Fills cfg from the environment (and ~/.vault-token). Errors name the variable.
 * cfg is first reset to the defaults (previous content is not freed). Variables: VAULT_ADDR,
 * VAULT_TOKEN (else ~/.vault-token), VAULT_NAMESPACE, VAULT_CACERT, VAULT_CAPATH,
 * VAULT_CLIENT_CERT + VAULT_CLIENT_KEY (both or neither), VAULT_SKIP_VERIFY (Go ParseBool),
 * VAULT_TLS_SERVER_NAME, VAULT_CLIENT_TIMEOUT ("30", "30s", "1m30s", "500ms"), VAULT_MAX_RETRIES,
 * VKS_APPROLE_ROLE_ID (selects AppRole), VKS_APPROLE_SECRET_ID, VKS_APPROLE_SECRET_ID_FILE,
 * VKS_APPROLE_MOUNT, VKS_VAULT_ALLOW_HTTP (bool). On error cfg is cleared. */
vks_status vks_vault_config_from_env(struct vks_vault_config *cfg, struct vks_err *err);
/* Frees strings and wipes secret fields. */
void vks_vault_config_clear(struct vks_vault_config *cfg);

struct vks_vault;
/* Copies cfg (strings and secrets). Unset values take the defaults: address NULL, timeout_ms <= 0,
 * max_retries < 0 (0 means "no retries"), min/max_retry_wait_ms <= 0, max_response_bytes 0.
 * VKS_E_CONFIG for a bad address (named; never a crash), plain http to a non-loopback host without
 * allow_http, a client cert without key (or the reverse), AppRole without role_id. No network I/O:
 * the first vks_vault_kv_read logs in (AppRole) or looks the token up (accessor, TTL). */
vks_status vks_vault_new(const struct vks_vault_config *cfg, struct vks_vault **out, struct vks_err *err);
void vks_vault_free(struct vks_vault *v);

struct vks_kv_request {
    const char *address;    /* NULL: the client's address (keysource vault_address)          */
    const vks_secret *token;/* NULL: the client's auth (keysource vault_token)                */
    const char *namespace_; /* NULL: the client's namespace                                   */
    const char *mount;
    const char *path;
    const char *key;        /* the field inside the secret's data; "key" by default           */
    int kv_version;         /* 1, 2, or 0 = auto-detect via sys/internal/ui/mounts (cached)   */
    int64_t version;        /* KV v2 version pin; 0 = latest                                  */
    /* optional (added): other fields of the same secret wanted from the same read, at most
     * VKS_KV_SIBLINGS_MAX names (borrowed). Each present string field is returned in
     * res->siblings[i]; an absent, non-string or oversized one is left empty (not an error). */
    const char *const *siblings;
    size_t n_siblings;
};

#define VKS_KV_SIBLINGS_MAX 8

struct vks_kv_result {
    vks_secret value;            /* (secret) the string at `key`, exactly its UTF-8 bytes       */
    int kv_version;              /* the version actually used                                   */
    int64_t secret_version;      /* KV v2 metadata.version; 0 for KV v1                         */
    int64_t lease_duration;      /* KV v1 lease_duration seconds; 0 for KV v2                   */
    char *custom_metadata_json;  /* KV v2 metadata.custom_metadata JSON text unless null, or NULL */
    char token_accessor[64];     /* accessor of the token used, "" when unknown (never the token) */
    int http_status;             /* last HTTP status seen (0 when none)                         */
    int attempts;                /* requests made, retries included                             */
    vks_secret siblings[VKS_KV_SIBLINGS_MAX]; /* (secret) req->siblings[i]'s value, or empty    */
};

/*
 * Reads one string value. Status mapping: 404 {"errors":[]} -> VKS_E_NOT_FOUND; 404 with metadata
 * -> VKS_E_DELETED or VKS_E_DESTROYED; no string at key -> VKS_E_MISSING_KEY; 403 ->
 * VKS_E_PERMISSION_DENIED (after one re-login for a revoked/expired token with AppRole);
 * 503 sealed -> VKS_E_SEALED (after retries); connection failures, 5xx, 429 -> VKS_E_UNAVAILABLE;
 * deadline -> VKS_E_TIMEOUT; certificate -> VKS_E_TLS; bad/oversized body -> VKS_E_BAD_RESPONSE.
 * On failure `res` holds no secret and needs no free (freeing it is still safe).
 */
vks_status vks_vault_kv_read(struct vks_vault *v, const struct vks_kv_request *req,
                             struct vks_kv_result *res, struct vks_err *err);
void vks_kv_result_free(struct vks_kv_result *res);

/* ---- additions (announced in the commit that added them) ---- */

/* Counters of one client, for tests, benchmarks and vks.stats(). Thread-safe snapshot. */
struct vks_vault_stats {
    unsigned long reads;          /* vks_vault_kv_read calls                                  */
    unsigned long requests;       /* HTTP requests sent (retries and redirects included)       */
    unsigned long connects;       /* new TCP/TLS connections opened                            */
    unsigned long retries;
    unsigned long logins;         /* AppRole logins                                            */
    unsigned long renewals;       /* successful renew-self calls                               */
    unsigned long relogins;       /* re-logins after a 403 for an expired/revoked token        */
    unsigned long mount_lookups;  /* sys/internal/ui/mounts requests (auto KV version)         */
};
void vks_vault_get_stats(struct vks_vault *v, struct vks_vault_stats *out);

/* For tests only: moves this client's token-lifetime clock forward by `seconds` (to pair with
 * vault-dev's clock offset), so renewal at 2/3 of the TTL can be exercised without waiting. */
void vks_vault_advance_clock(struct vks_vault *v, int64_t seconds);

/* The normalised address this client talks to ("https://host:port"). Never NULL. */
const char *vks_vault_address(const struct vks_vault *v);

/* ---- administrative calls for `vks cred` (docs/credentials.md, docs/internals/cred.md) ----
 * All use the client's own token (AppRole logs in when needed) and the client's address,
 * namespace, TLS settings, retries and deadline. Their request and answer bodies hold no
 * plaintext secret (an ENC: envelope is not one); answers are copied into a heap reply.
 * Status mapping: 2xx VKS_OK; 404 VKS_E_NOT_FOUND; 400 with Vault's check-and-set mismatch
 * VKS_E_CONFLICT, any other 400 VKS_E_REJECTED quoting Vault's errors; 403, 5xx, transport as
 * for vks_vault_kv_read. Thread-safety: as vks_vault_kv_read (any thread, one client). */
struct vks_vault_reply {
    long http_status;
    char *body;                  /* the answer (NUL-terminated), heap, or NULL when empty        */
    size_t body_len;
    char token_accessor[64];     /* accessor of the token used (never the token)                 */
};
/* Wipes and frees the body; the reply can be reused. Safe on a zeroed reply. */
void vks_vault_reply_free(struct vks_vault_reply *r);

/* POST (patch false) or PATCH (merge patch, patch true) <mount>/data/<path> with body
 * {"options":{"cas":cas},"data":<data_json>}; cas -1 sends no cas. *new_version (optional) is the
 * version written. data_json is borrowed (may hold an envelope; never plaintext). */
vks_status vks_vault_kv2_write(struct vks_vault *v, const char *mount, const char *path, const char *data_json,
                               int64_t cas, bool patch, int64_t *new_version, struct vks_err *err);
/* GET <mount>/metadata/<path>: the whole answer in *out (caller frees with vks_vault_reply_free). */
vks_status vks_vault_kv2_metadata_read(struct vks_vault *v, const char *mount, const char *path,
                                       struct vks_vault_reply *out, struct vks_err *err);
/* POST <mount>/metadata/<path> with the JSON body (custom_metadata, max_versions, cas_required). */
vks_status vks_vault_kv2_metadata_write(struct vks_vault *v, const char *mount, const char *path,
                                        const char *json, struct vks_err *err);
/* LIST <mount>/metadata/<path>: answer in *out; an empty folder (404) is VKS_OK with out->body NULL. */
vks_status vks_vault_kv2_list(struct vks_vault *v, const char *mount, const char *path,
                              struct vks_vault_reply *out, struct vks_err *err);
/* DELETE <mount>/metadata/<path>: every version and the metadata. */
vks_status vks_vault_kv2_metadata_delete(struct vks_vault *v, const char *mount, const char *path,
                                         struct vks_err *err);
/* auth/token/lookup-self of the client's token: display_name and accessor (never the token). */
vks_status vks_vault_token_identity(struct vks_vault *v, char *display_name, size_t dn_cap, char *accessor,
                                    size_t acc_cap, struct vks_err *err);
/* POST sys/capabilities-self {"paths":[path]} (Vault's default policy grants it): *can is true when
 * the client's token holds `cap` (or "root") on `path` ("<mount>/data/<p>"). Lets a caller skip a
 * request the token may not make instead of making it and being refused (vks cred show). */
vks_status vks_vault_token_can(struct vks_vault *v, const char *path, const char *cap, bool *can,
                               struct vks_err *err);

/* ---- additions for vks backup (docs/internals/backup.md) ----
 * GET <mount>/data/<path>?version=N (N >= 1): the whole answer (data.data holds every field of the
 * version, possibly plaintext of a secret vks cred does not manage) into *out, a fresh vks_scratch
 * the caller closes (wiped). Status mapping as above; a deleted or destroyed version is 404
 * (VKS_E_NOT_FOUND). Thread-safety: as vks_vault_kv_read. */
vks_status vks_vault_kv2_data_read_raw(struct vks_vault *v, const char *mount, const char *path, int64_t version,
                                       vks_scratch *out, struct vks_err *err);
/* POST <mount>/<op>/<path> {"versions":[...]} with op "delete", "destroy" or "undelete"; 1..64
 * versions. */
vks_status vks_vault_kv2_versions_op(struct vks_vault *v, const char *mount, const char *op, const char *path,
                                     const int64_t *versions, size_t n, struct vks_err *err);

/* ---- addition for vks serve ----
 * POST auth/token/revoke-self with the client's token (an operator's logout): the token and its
 * children are revoked in Vault. */
vks_status vks_vault_token_revoke_self(struct vks_vault *v, struct vks_err *err);

#endif
