/*
 * vks_hmac: HMAC-SHA256 (RFC 2104) whose key material lives only in a locked arena slot.
 *
 * The key is kept as its two padded blocks (key^ipad, key^opad) in a vks_secret; each MAC runs
 * two SHA-256 digests over those blocks with an EVP_MD_CTX that holds no key-equivalent state
 * once the digest is finished (OpenSSL's HMAC contexts would keep the padded key state on the
 * ordinary heap for as long as they live). HKDF-SHA256 derives labelled subkeys from one key.
 *
 * Ownership: a struct vks_hmac_key is a plain value owned by its holder; vks_hmac_key_clear wipes
 * and releases its slot. Thread-safety: a key is immutable after vks_hmac_key_set and may be used
 * from any number of threads at once; each thread uses its own digest context (vks_hmac uses a
 * per-thread one, vks_hmac_ctx the caller's).
 */
#ifndef VKS_HMAC_H
#define VKS_HMAC_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "vks_error.h"
#include "vks_secmem.h"

#define VKS_HMAC_LEN 32

struct vks_hmac_key {
    vks_secret pads; /* 128 bytes: key^ipad (64) || key^opad (64) */
};

/* Sets k from a key of 1..64 bytes (copied into a fresh arena slot). */
vks_status vks_hmac_key_set(struct vks_hmac_key *k, const unsigned char *key, size_t len,
                            struct vks_err *err);
void vks_hmac_key_clear(struct vks_hmac_key *k);
bool vks_hmac_key_is_set(const struct vks_hmac_key *k);

/* HMAC-SHA256 of msg with the digest context c (any state; left holding no key state). */
bool vks_hmac_ctx(EVP_MD_CTX *c, const struct vks_hmac_key *k, const void *msg, size_t len,
                  unsigned char out[VKS_HMAC_LEN]);
/* The same with a per-thread digest context. */
bool vks_hmac(const struct vks_hmac_key *k, const void *msg, size_t len,
              unsigned char out[VKS_HMAC_LEN]);

/* HKDF-SHA256 (RFC 5869): out_len bytes from ikm with salt and info. */
bool vks_hkdf_sha256(const unsigned char *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                     const void *info, size_t info_len, unsigned char *out, size_t out_len);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void vks_hmac_hex(const unsigned char *in, size_t n, char *out);

#endif
