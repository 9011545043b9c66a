/*
 * vks_base64: strict standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /, '=' padding)
 * for key material and ENC: envelopes.
 *
 * Design (docs/internals/envelope.md): both directions write into a buffer the caller provides
 * (an arena slot for key material) and never allocate, so decoded keys never pass through the
 * heap or realloc. Decoding does not branch or index tables on the value of input characters
 * (the character class is computed with masks), so key material does not leak through the cache.
 * Decoding is strict: the length must be a multiple of 4, '=' appears only as one or two final
 * characters, and the unused bits of the last group must be zero (one encoding per byte string).
 * No whitespace is accepted; callers trim what their format allows.
 *
 * Ownership: nothing is retained. Thread-safety: pure functions, reentrant.
 */
#ifndef VKS_BASE64_H
#define VKS_BASE64_H

#include <stddef.h>

enum vks_b64_result {
    VKS_B64_OK = 0,
    VKS_B64_BAD_LENGTH,   /* length is not a multiple of 4                        */
    VKS_B64_BAD_CHAR,     /* a character outside the alphabet (position in *where) */
    VKS_B64_BAD_PADDING,  /* '=' in the wrong place, or non-zero unused bits       */
    VKS_B64_TOO_LONG      /* the decoded bytes do not fit in outcap                 */
};

/* Decoded size of n base64 characters (upper bound before padding is looked at). */
#define VKS_B64_DECODED_MAX(n) (((n) / 4) * 3)
/* Encoded size of n bytes, without the terminating NUL. */
#define VKS_B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Decodes in[0..inlen) into out[0..outcap). On VKS_B64_OK *outlen is the decoded length. On
 * failure *outlen is 0, out[0..outcap) holds no partial result (it is wiped), and *where (when
 * non-NULL) is the offset of the offending character (for messages; never print the character
 * of key material). */
enum vks_b64_result vks_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap,
                                   size_t *outlen, size_t *where);

/* Encodes in[0..n) into out, which must hold VKS_B64_ENCODED_LEN(n) + 1 bytes; NUL-terminates and
 * returns the encoded length. */
size_t vks_b64_encode(const unsigned char *in, size_t n, char *out);

/* Short English description of a result ("not a multiple of 4 characters", ...). */
const char *vks_b64_strerror(enum vks_b64_result r);

#endif
