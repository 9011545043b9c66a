/*
 * vks_envelope: ENC: value envelopes (AES-256-GCM, OpenSSL EVP) and the keyring they decrypt with.
 *
 * CONTRACT for the resolver and the CLI (format and details: docs/internals/envelope.md).
 *  - Legacy genro-mail-proxy form: "ENC:" base64(nonce[12] || ciphertext || tag[16]), no AAD.
 *  - Our versioned form carries a key id and binds the ciphertext to (mount, path, key) with AAD,
 *    so a value copied to another credential fails to decrypt.
 * Keys live in arena slots (vks_secret). A failed tag wipes the output.
 *
 * Ownership: a keyring is created by vks_keyring_new / vks_keyring_load_env and freed by
 * vks_keyring_free (which wipes every key). Thread-safety: a keyring is immutable after load and
 * may be used for decrypt/encrypt from any number of threads at once.
 */
#ifndef VKS_ENVELOPE_H
#define VKS_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"
#include "vks_secmem.h"

struct vks_keyring;

/* Loads keys from VKS_ENCRYPTION_KEY (base64, 32 bytes), VKS_ENCRYPTION_KEY_FILE (raw 32 bytes,
 * refused if group/world readable), VKS_ENCRYPTION_KEYS (several "id:base64" entries for
 * rotation), MAIL_PROXY_ENCRYPTION_KEY and /run/secrets/encryption_key. An empty keyring is valid
 * (then ENC: values fail with VKS_E_DECRYPT_FAILED naming the missing key). */
vks_status vks_keyring_load_env(struct vks_keyring **out, struct vks_err *err);
vks_status vks_keyring_new(struct vks_keyring **out, struct vks_err *err);
/* Adds a 32-byte key under id (copied into the arena). */
vks_status vks_keyring_add(struct vks_keyring *kr, const char *id, const unsigned char *key32,
                           struct vks_err *err);
void vks_keyring_free(struct vks_keyring *kr);

/* Where a value lives: bound into the AAD of the versioned format. */
struct vks_envelope_place {
    const char *mount;
    const char *path;
    const char *key;
};

/* True when the value is an envelope of any supported form (by prefix only). */
bool vks_envelope_is_encrypted(const unsigned char *value, size_t len);

struct vks_envelope_info {
    int format;          /* 1 = legacy genro-mail-proxy, 2 = versioned with key id and AAD */
    char key_id[64];     /* "" for legacy */
};

/* Decrypts into a fresh arena slot. VKS_E_DECRYPT_FAILED names the place and key id, never bytes. */
vks_status vks_envelope_decrypt(const struct vks_keyring *kr, const unsigned char *value, size_t len,
                                const struct vks_envelope_place *place, vks_secret *out,
                                struct vks_envelope_info *info, struct vks_err *err);

/* Encrypts (versioned format when key_id is non-NULL, legacy when NULL). *out is a heap string
 * (an envelope holds no plaintext) that the caller frees with free(). A plaintext whose envelope
 * would be longer than VKS_ENVELOPE_WRITE_MAX is refused (VKS_E_INVALID_ARG naming both lengths and
 * the longest plaintext for that key id). */
vks_status vks_envelope_encrypt(const struct vks_keyring *kr, const char *key_id,
                                const struct vks_envelope_place *place,
                                const unsigned char *plain, size_t len, char **out,
                                struct vks_err *err);

/* ---- additions beyond the original contract (envelope engineer) ---- */

#define VKS_KEYRING_MAX 32          /* keys one keyring holds                               */
#define VKS_KEY_ID_MAX 63           /* key id: 1..63 of [A-Za-z0-9._-]                       */
/*
 * Size limits, one set (docs/internals/envelope.md, "Size limits"). Every keysource form (key_data,
 * a file, a Vault value, an event result) holds at most VKS_SECRET_MAX (4096) bytes, so:
 *  - VKS_ENVELOPE_MAX: the longest envelope decrypt accepts, the longest any form can deliver
 *    (trailing white space already removed); longer is "oversized".
 *  - VKS_ENVELOPE_WRITE_MAX: the longest envelope encrypt and rekey write, one byte less, so the
 *    newline `vks envelope encrypt` prints (and editors add) still fits a file keysource.
 *  - the longest plaintext is what fits VKS_ENVELOPE_WRITE_MAX: vks_envelope_plaintext_max();
 *    3038 bytes legacy, 3032 under key id "default", VKS_PLAINTEXT_MAX_ANY_ID under any id.
 */
#define VKS_ENVELOPE_MAX VKS_SECRET_MAX
#define VKS_ENVELOPE_WRITE_MAX (VKS_SECRET_MAX - 1)
#define VKS_PLAINTEXT_MAX_ANY_ID 2990 /* with a 63-byte key id (the longest)                  */
#define VKS_KEY_ID_DEFAULT "default"       /* VKS_ENCRYPTION_KEY / VKS_ENCRYPTION_KEY_FILE   */
#define VKS_KEY_ID_MAIL_PROXY "mail-proxy" /* MAIL_PROXY_ENCRYPTION_KEY / compat secrets file */
#define VKS_COMPAT_KEY_FILE "/run/secrets/encryption_key"

/* Environment lookup used by vks_keyring_load: returns the value of `name` or NULL. */
typedef const char *(*vks_getenv_fn)(const char *name, void *ctx);

/* vks_keyring_load_env with an explicit environment and compatibility file (tests, the CLI).
 * getenv_fn NULL means the process environment (secure_getenv); compat_file NULL means
 * VKS_COMPAT_KEY_FILE. Sources and precedence: docs/internals/envelope.md. Any source that is set
 * but unusable fails the whole load with VKS_E_CONFIG naming the variable or file (never bytes). */
vks_status vks_keyring_load(struct vks_keyring **out, vks_getenv_fn getenv_fn, void *ctx,
                            const char *compat_file, struct vks_err *err);

/* Introspection (no key bytes): number of keys, id and source description of key i (in load
 * order; NULL when i is out of range), and the primary id (the first key loaded, the one new
 * envelopes should use; NULL for an empty keyring). Strings live as long as the keyring. */
size_t vks_keyring_count(const struct vks_keyring *kr);
const char *vks_keyring_id(const struct vks_keyring *kr, size_t i);
const char *vks_keyring_source(const struct vks_keyring *kr, size_t i);
const char *vks_keyring_primary_id(const struct vks_keyring *kr);

/* Like vks_envelope_decrypt, but into a slot the caller already owns (dst->cap must be at least
 * the ciphertext length; VKS_E_INVALID_ARG otherwise). On any failure dst->data[0..cap) is wiped
 * and dst->len is 0; the slot stays allocated and owned by the caller. */
vks_status vks_envelope_decrypt_into(const struct vks_keyring *kr, const unsigned char *value,
                                     size_t len, const struct vks_envelope_place *place,
                                     vks_secret *dst, struct vks_envelope_info *info,
                                     struct vks_err *err);

/* Longest plaintext whose envelope under key_id (NULL = legacy form) fits VKS_ENVELOPE_WRITE_MAX. */
size_t vks_envelope_plaintext_max(const char *key_id);

/* Reads the form of an envelope without any key: format and key id (for `vks rekey --check`,
 * finding values still under a retiring key). VKS_E_DECRYPT_FAILED with a "malformed envelope"
 * message when it does not parse (base64 and lengths are checked; the tag is not). */
vks_status vks_envelope_inspect(const unsigned char *value, size_t len,
                                struct vks_envelope_info *info, struct vks_err *err);

/* Rotation step for one value: decrypts `value` (either format) at `place` and encrypts it again
 * as format 2 under new_key_id (NULL = the primary) bound to the same place. The plaintext lives
 * only in an arena slot, wiped before return. *out is a heap string freed with free(). *changed
 * (optional) is false when the value already was format 2 under new_key_id; *out is then a copy
 * of the value. A plaintext value is VKS_E_NOT_ENCRYPTED (encrypting it is a separate decision). */
vks_status vks_envelope_rekey(const struct vks_keyring *kr, const unsigned char *value, size_t len,
                              const struct vks_envelope_place *place, const char *new_key_id,
                              char **out, bool *changed, struct vks_err *err);

#endif
