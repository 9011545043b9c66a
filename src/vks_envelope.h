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
 * (an envelope holds no plaintext) that the caller frees with free(). */
vks_status vks_envelope_encrypt(const struct vks_keyring *kr, const char *key_id,
                                const struct vks_envelope_place *place,
                                const unsigned char *plain, size_t len, char **out,
                                struct vks_err *err);

#endif
