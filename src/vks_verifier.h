/*
 * vks_verifier: password verifiers for inbound SMTP credentials (issue 15; docs/inbound.md
 * "Verifiers", design docs/internals/verifier.md).
 *
 * A verifier is a self-describing, printable string that lets the agent check a password without
 * being able to recover it. Two schemes, both from OpenSSL 3.0's EVP_KDF:
 *
 *   $vks-scrypt$ln=14,r=8,p=5$<salt base64>$<derived key base64>
 *   $vks-pbkdf2-sha256$i=600000$<salt base64>$<derived key base64>
 *
 * ln is log2 of scrypt's N. Salt 16 random bytes, derived key 32 bytes, standard base64 with
 * padding. The defaults (VKS_VERIFIER_DEFAULT_*) follow OWASP's password storage table (scrypt
 * N=2^14, r=8, p=5: 16 MiB; PBKDF2-HMAC-SHA256: 600000 iterations); docs/benchmarks.md has their
 * cost on this machine. Parsing is strict and bounded (VKS_VERIFIER_MAX characters, parameters
 * inside VKS_VERIFIER_*_MIN/MAX) so that a verifier written by hand cannot make the agent spend
 * unbounded memory or time: anything outside is VKS_E_BAD_RESPONSE naming the part.
 *
 * Ownership: callers own every buffer; nothing is retained. The derived key is computed into an
 * arena slot (vks_secret) and wiped. Thread-safety: every function is reentrant (OpenSSL 3 KDF
 * contexts are per call).
 */
#ifndef VKS_VERIFIER_H
#define VKS_VERIFIER_H

#include <stdbool.h>
#include <stddef.h>

#include "vks_error.h"

#define VKS_VERIFIER_MAX 200          /* longest encoded verifier accepted                          */
#define VKS_VERIFIER_SALT_LEN 16
#define VKS_VERIFIER_DK_LEN 32
#define VKS_VERIFIER_SCRYPT_LN_MIN 10 /* N = 2^10 .. 2^20 (1 MiB .. 1 GiB with r=8)                  */
#define VKS_VERIFIER_SCRYPT_LN_MAX 20
#define VKS_VERIFIER_SCRYPT_R_MAX 32
#define VKS_VERIFIER_SCRYPT_P_MAX 16
#define VKS_VERIFIER_PBKDF2_MIN 10000
#define VKS_VERIFIER_PBKDF2_MAX 10000000
#define VKS_VERIFIER_DEFAULT_LN 14
#define VKS_VERIFIER_DEFAULT_R 8
#define VKS_VERIFIER_DEFAULT_P 5
#define VKS_VERIFIER_DEFAULT_ITER 600000

enum vks_verifier_scheme { VKS_VERIFIER_SCRYPT = 1, VKS_VERIFIER_PBKDF2_SHA256 = 2 };

struct vks_verifier_params {
    enum vks_verifier_scheme scheme;
    unsigned ln, r, p;                /* scrypt                                                     */
    unsigned iterations;              /* pbkdf2                                                     */
};

/* The defaults: scrypt ln=14, r=8, p=5. */
void vks_verifier_params_default(struct vks_verifier_params *p);

/* "scrypt", "scrypt:ln=15,r=8,p=1", "pbkdf2-sha256", "pbkdf2-sha256:i=600000" (VKS_CRED_VERIFIER,
 * `vks cred create --verifier`). VKS_E_INVALID_INPUT naming `field` and the part. */
vks_status vks_verifier_params_parse(const char *s, const char *field, struct vks_verifier_params *out,
                                     struct vks_err *err);

/* A new verifier of pw[0..n) with a fresh random salt, written NUL-terminated into out
 * (cap >= VKS_VERIFIER_MAX + 1). */
vks_status vks_verifier_create(const struct vks_verifier_params *p, const unsigned char *pw, size_t n, char *out,
                               size_t cap, struct vks_err *err);

/* Parses an encoded verifier (strict, bounded). On VKS_OK fills *p, salt and dk (the stored
 * derived key; not a secret by itself, but not shown either). VKS_E_BAD_RESPONSE naming the part. */
vks_status vks_verifier_parse(const char *enc, size_t len, struct vks_verifier_params *p,
                              unsigned char salt[VKS_VERIFIER_SALT_LEN], unsigned char dk[VKS_VERIFIER_DK_LEN],
                              struct vks_err *err);

/* Checks pw against the encoded verifier: VKS_OK when it matches (constant-time comparison of the
 * derived keys), VKS_E_AUTH_FAILED when it does not, VKS_E_BAD_RESPONSE when the verifier cannot
 * be understood (fail closed), VKS_E_LOCKED_MEMORY / VKS_E_INTERNAL for local failures. The time
 * taken depends on the parameters only, never on where the keys differ. */
vks_status vks_verifier_check(const char *enc, size_t len, const unsigned char *pw, size_t n, struct vks_err *err);

/* True when s looks like one of our verifiers ("$vks-"). */
bool vks_verifier_is(const char *s, size_t len);

#endif
