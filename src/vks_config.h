/*
 * vks_config: every process-wide option of the module, from the environment and from
 * vks.setup{...} (docs/internals/config.md, docs/lua-api.md).
 *
 * Precedence: built-in defaults < environment < setup options. Each option has one parser used
 * for both its environment variable and its setup field, so `VAULT_CLIENT_TIMEOUT=30s` and
 * `setup{timeout = '30s'}` mean the same. The `cache = {...}` and `audit = {...}` setup subtables
 * belong to their modules (plugin/lvks_cache.c, plugin/lvks_audit.c) and are not handled here.
 *
 * Errors are VKS_E_CONFIG and name the option or the environment variable, never a token or
 * secret_id.
 *
 * Ownership: a struct vks_config is a caller-owned value; strings are heap copies, `vault.token`
 * and `vault.secret_id` are arena slots (vks_secret). vks_config_clear releases (wipes) all.
 * Thread-safety: functions are reentrant; a config is not shared while being modified (the
 * resolver keeps an immutable copy per runtime).
 */
#ifndef VKS_CONFIG_H
#define VKS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"
#include "vks_fork.h"
#include "vks_keysource.h"
#include "vks_secmem.h"
#include "vks_vault.h"

struct vks_config {
    struct vks_vault_config vault; /* address is NULL when neither VAULT_ADDR nor setup set it   */
    bool auth_explicit;            /* auth chosen by VKS_AUTH / setup auth (else inferred)       */
    int kv_version;                /* default for keysources without vault_kv_version: 1, 2 or
                                      VKS_KV_AUTO; VKS_KV_VERSION / kv_version; default 2        */
    bool require_encrypted;        /* VKS_REQUIRE_ENCRYPTED / require_encrypted; default false   */
    enum vks_fork_mode fork_mode;  /* VKS_FORK / fork: "inherit" (default) or "strict" (vks_fork) */
    struct vks_secmem_config secmem; /* VKS_LOCKED_BYTES, VKS_REQUIRE_LOCKED / locked_bytes,
                                        require_locked                                           */
    long reset_interval_ms;        /* VKS_RESET_CHECK_INTERVAL / reset_check_interval: how often a
                                      resolver checks each mount's reset control record; default 2 s
                                      (docs/internals/reset.md)                                  */
    long reset_bound_ms;           /* VKS_RESET_MAX_UNVERIFIED / reset_max_unverified: how long a
                                      mount is served while its control record cannot be read;
                                      default 30 s, then lookups fail closed                     */
    char *token_source;            /* where the token came from: "setup", "VAULT_TOKEN",
                                      "~/.vault-token" or NULL (for messages, never the token)   */
};

/* Built-in defaults (no environment): kv_version 2, timeout 60 s, 2 retries, waits 1000/1500 ms,
 * 1 MiB responses, verification on, token auth, approle mount "approle". */
void vks_config_defaults(struct vks_config *cfg);

/* Defaults, then every environment variable (table in docs/internals/config.md), then the token
 * from ~/.vault-token when VAULT_TOKEN is unset. On failure *cfg is cleared. */
vks_status vks_config_from_env(struct vks_config *cfg, struct vks_err *err);

/* Applies one setup option (name and value as a field). Unknown names are errors (typos). */
vks_status vks_config_set(struct vks_config *cfg, const struct vks_field *opt, struct vks_err *err);

/* Cross-option checks and inference, after all sets: auth inferred (AppRole when a role_id is
 * set), AppRole needs a role_id, address valid and plain http only to loopback unless allow_http,
 * client cert and key together, min_retry_wait <= max_retry_wait. */
vks_status vks_config_finish(struct vks_config *cfg, struct vks_err *err);

/* Checks that the files and directories the options name exist and can be read (ca_cert,
 * client_cert, client_key, secret_id_file: readable files; ca_path: a directory). Setup calls it so
 * that a typo fails at load time instead of at the first lookup. Errors name option and path. */
vks_status vks_config_check_files(const struct vks_config *cfg, struct vks_err *err);

/* True when both configs select exactly the same behaviour (secrets compared in constant time). */
bool vks_config_equal(const struct vks_config *a, const struct vks_config *b);

/* Deep copy. */
vks_status vks_config_copy(const struct vks_config *src, struct vks_config *out, struct vks_err *err);

/* Frees strings, wipes and frees secret slots, zeroes *cfg. Idempotent. */
void vks_config_clear(struct vks_config *cfg);

/* The names vks_config_set accepts, NULL-terminated (for documentation and tests). */
const char *const *vks_config_option_names(void);

/* Parsers shared with other modules' options: durations ("30", "30s", "500ms", "2m", "1h" or a
 * number of seconds), booleans (Go's strconv.ParseBool spellings, or a boolean) and sizes
 * (bytes with optional K/M/G suffix). `what` names the option for messages. */
vks_status vks_parse_duration_ms(const struct vks_field *f, const char *what, long *out_ms,
                                 struct vks_err *err);
vks_status vks_parse_bool(const struct vks_field *f, const char *what, bool *out, struct vks_err *err);
vks_status vks_parse_size(const struct vks_field *f, const char *what, size_t *out, struct vks_err *err);

#endif
