/*
 * vks_keysource: the keysource as a C value, and its validation.
 *
 * A keysource says where a secret comes from, with KumoMTA's forms and precedence
 * (docs/internals/keysource.md):
 *   - a string is a FILE path;
 *   - a table with key_data is DATA (binary allowed; wins over every other form);
 *   - a table with vault_mount and vault_path is VAULT (vault_key defaults to "key");
 *   - a table with event_name and event_args is EVENT (the host's handler returns the secret).
 * Our extensions on VAULT: vault_namespace, vault_kv_version (1, 2 or "auto"), vault_version.
 * Unknown keys that start with "vault_" are errors (typos); other unknown keys are ignored.
 *
 * The binding (plugin/lvks.c) turns a Lua table into an array of struct vks_field and calls
 * vks_keysource_from_fields, so that every rule lives here and is unit-tested without Lua.
 * Error messages name the field and the keysource's place; never key_data or vault_token bytes.
 *
 * Ownership: struct vks_keysource is a caller-owned value; from_* fills it (all strings are heap
 * copies, key_data and vault_token are arena slots) and vks_keysource_clear releases everything
 * (wiping the secret fields). A zeroed struct is a valid "empty" keysource for clear.
 * On failure from_* leaves *out cleared (nothing to release, releasing is still safe).
 * Thread-safety: all functions are reentrant; a keysource is not shared while being filled.
 */
#ifndef VKS_KEYSOURCE_H
#define VKS_KEYSOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_secmem.h"

/* A name/value pair as read from a Lua table (or any other front end). */
enum vks_field_type {
    VKS_FT_STRING = 0, /* str/len; may hold NUL bytes                         */
    VKS_FT_INTEGER,    /* ival                                                */
    VKS_FT_NUMBER,     /* dval, a non-integral (or out of range) number       */
    VKS_FT_BOOLEAN,    /* bval                                                */
    VKS_FT_TABLE,      /* a nested table; ival = its length (#t) when an array */
    VKS_FT_OTHER       /* anything else; type_name says what, for messages    */
};

struct vks_field {
    const char *name;      /* NUL-terminated key                                  */
    enum vks_field_type type;
    const char *str;       /* VKS_FT_STRING: bytes (not necessarily NUL-free)     */
    size_t len;
    long long ival;
    double dval;
    bool bval;
    const char *type_name; /* the front end's name of the type, e.g. "table"      */
};

enum vks_ks_kind { VKS_KS_NONE = 0, VKS_KS_FILE, VKS_KS_DATA, VKS_KS_VAULT, VKS_KS_EVENT };

/* vault_kv_version: unset means "the configured default" (kv_version option, 2 by default). */
#define VKS_KV_UNSET (-1)
#define VKS_KV_AUTO 0

/* Limits on names, so that messages and requests stay bounded. */
#define VKS_NAME_MAX 1024 /* mount, path, key, namespace, event name */
#define VKS_ADDRESS_MAX 2048
#define VKS_PATH_MAX 4096 /* file path */

struct vks_keysource {
    enum vks_ks_kind kind;
    /* FILE */
    char *file_path;
    /* DATA */
    vks_secret key_data;    /* (secret) */
    /* VAULT */
    char *mount;
    char *path;
    char *key;              /* "key" when not given */
    char *address;          /* NULL: the configured address */
    vks_secret token;       /* (secret) empty (data NULL): the configured auth */
    bool has_token;
    char *namespace_;       /* NULL: the configured namespace; "" means the root namespace */
    int kv_version;         /* VKS_KV_UNSET, VKS_KV_AUTO, 1 or 2 */
    int64_t version;        /* KV v2 version pin; 0 = latest */
    /* EVENT */
    char *event_name;
    size_t event_nargs;     /* the arguments stay in the front end (Lua values) */
};

/* A string keysource: a file path (KumoMTA's File variant). Errors: VKS_E_BAD_KEYSOURCE. */
vks_status vks_keysource_from_path(const char *path, size_t len, struct vks_keysource *out,
                                   struct vks_err *err);

/* A table keysource given as fields (order irrelevant, names unique). Errors:
 * VKS_E_BAD_KEYSOURCE naming the field; VKS_E_LOCKED_MEMORY when a secret field cannot be
 * stored in the arena. */
vks_status vks_keysource_from_fields(const struct vks_field *fields, size_t n,
                                     struct vks_keysource *out, struct vks_err *err);

/* Deep copy (secret fields into new arena slots). */
vks_status vks_keysource_copy(const struct vks_keysource *src, struct vks_keysource *out,
                              struct vks_err *err);

/* Releases everything and zeroes *ks. Idempotent. */
void vks_keysource_clear(struct vks_keysource *ks);

/*
 * Writes a short human description for messages and audit, never containing a secret:
 *   file "/etc/x"      key_data      event "name"
 *   vault mount "secret" path "smtp-auth/example.com" key "password" [namespace "ns"]
 *     [version 3] [at https://vault:8200]
 * default_address is shown when the keysource has no vault_address (may be NULL).
 * Always NUL-terminates (truncates with "..."); returns buf.
 */
char *vks_keysource_describe(const struct vks_keysource *ks, const char *default_address,
                             char *buf, size_t n);

/* "file", "key_data", "vault", "event" ("none" for an empty keysource). */
const char *vks_keysource_kind_name(enum vks_ks_kind kind);

/*
 * Validates a Vault address the way every front end must (KumoMTA panics on a bad one):
 * http:// or https://, a non-empty host (name, IPv4 or [IPv6]), an optional port 1..65535, an
 * optional path; no user info (credentials in a URL are refused), query, fragment, spaces or
 * control bytes. `what` names the field or variable for the message (e.g. "vault_address").
 * The message repeats the address only when it holds no '@'.
 */
vks_status vks_address_validate(const char *addr, size_t len, const char *what, struct vks_err *err);

/* True when addr (already valid) names a loopback host: localhost, 127.0.0.0/8 or [::1]. */
bool vks_address_is_loopback(const char *addr);

/* The Lua-facing type name of a field ("string", "number", "boolean", "table", or the binding's
 * own type_name), for "expected X, got Y" messages. Shared with the config parser. Reentrant. */
const char *vks_field_type_name(const struct vks_field *f);

/* True when s[0..len) holds a control byte (< 0x20 or DEL). Shared with the config parser. */
bool vks_has_control(const char *s, size_t len);

/* Parses a kv_version value: 1, 2, "1", "2", "auto" (also used by the config). */
vks_status vks_kv_version_parse(const struct vks_field *f, int *out, struct vks_err *err);

#endif
