/*
 * vks_error: the core's error codes and the error value every fallible function fills.
 *
 * Every core function that can fail returns a vks_status and, when given a non-NULL
 * `struct vks_err *`, leaves a human-readable message in it. Messages name the thing that failed
 * (keysource field, mount, path, key, address, file) and NEVER contain a token, a password,
 * key_data, key material or decrypted bytes: callers must only pass such names to vks_err_set.
 *
 * Ownership: struct vks_err is a plain value owned by the caller (usually on the stack).
 * Thread-safety: all functions are reentrant; vks_status_code/name return static strings.
 */
#ifndef VKS_ERROR_H
#define VKS_ERROR_H

#include <stddef.h>

typedef enum vks_status {
    VKS_OK = 0,
    /* the codes the Lua API returns as the third value of a failure (README "Error codes") */
    VKS_E_BAD_KEYSOURCE,     /* malformed keysource table or value                  */
    VKS_E_NOT_FOUND,         /* no secret at that mount/path (or version)           */
    VKS_E_DELETED,           /* KV v2 version soft-deleted                          */
    VKS_E_DESTROYED,         /* KV v2 version destroyed                             */
    VKS_E_MISSING_KEY,       /* secret exists but has no string at vault_key        */
    VKS_E_PERMISSION_DENIED, /* Vault answered 403 permission denied                */
    VKS_E_AUTH_FAILED,       /* no usable token / login failed                      */
    VKS_E_SEALED,            /* Vault is sealed (503)                               */
    VKS_E_UNAVAILABLE,       /* connection refused, 5xx, 429, standby...            */
    VKS_E_TIMEOUT,           /* overall deadline passed                             */
    VKS_E_TLS,               /* certificate / handshake failure, https->http refused */
    VKS_E_BAD_RESPONSE,      /* unparseable, truncated or oversized answer          */
    VKS_E_DECRYPT_FAILED,    /* ENC: value did not decrypt (tag, key id, AAD)       */
    VKS_E_NOT_ENCRYPTED,     /* plaintext value while require_encrypted is on       */
    VKS_E_FILE_ERROR,        /* file keysource could not be read                    */
    VKS_E_RESTRICTED,        /* custom_metadata restrictions exclude this context   */
    VKS_E_AUDIT_UNAVAILABLE, /* audit policy 'deny' and no sink could record        */
    VKS_E_LOCKED_MEMORY,     /* require_locked and memory could not be locked / full */
    VKS_E_REVOKED,           /* the credential was reset (vks cred reset): fail closed until
                                it gets a new password (docs/incident-runbook.md)      */
    /* internal codes; the Lua layer maps them onto one of the above or raises */
    VKS_E_INVALID_ARG,       /* programming error / misuse                          */
    VKS_E_CONFIG,            /* bad configuration option or environment variable   */
    VKS_E_NOMEM,             /* allocation failed                                   */
    VKS_E_INTERNAL,          /* should not happen                                   */
    VKS_E_NOT_CACHED,        /* a "hit only" lookup found no fresh cached value: nothing
                                was fetched, audited or changed (vks_resolve_req.hit_only) */
    /* administrative codes (vks cred; docs/credentials.md): never returned by a lookup */
    VKS_E_INVALID_INPUT,     /* an operator's input is malformed (the field is named)  */
    VKS_E_EXISTS,            /* the credential or username already exists             */
    VKS_E_CONFLICT,          /* check-and-set lost: edited concurrently, nothing written */
    VKS_E_REJECTED,          /* Vault refused the request (HTTP 400), its reason quoted */
    VKS_STATUS_COUNT
} vks_status;

#define VKS_ERR_MSG_MAX 512

struct vks_err {
    vks_status status;
    char msg[VKS_ERR_MSG_MAX];
};

/* Stable machine code, e.g. "not_found"; "ok" for VKS_OK; "internal" for unknown values. */
const char *vks_status_code(vks_status s);

/* Parses a machine code back; returns VKS_STATUS_COUNT when unknown. */
vks_status vks_status_from_code(const char *code);

/*
 * Records status and a printf-style message in err (if err is non-NULL) and returns status, so
 * that `return vks_err_set(err, VKS_E_NOT_FOUND, "...", ...);` reads naturally. The message is
 * truncated to VKS_ERR_MSG_MAX-1 bytes. Never pass secret bytes as arguments.
 */
vks_status vks_err_set(struct vks_err *err, vks_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to VKS_OK with an empty message. */
void vks_err_clear(struct vks_err *err);

#endif
