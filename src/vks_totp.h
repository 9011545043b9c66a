/*
 * vks_totp: time-based one-time passwords (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1, 6 digits, 30 s
 * steps), the optional step-up of `vks serve` before a reveal (docs/serve.md "Step-up"), and the
 * base32 (RFC 4648, the form authenticator apps take) decoding of the shared secrets.
 *
 * All functions are pure and reentrant (OpenSSL's HMAC one-shot; no state, no I/O).
 * Secrets: the key is read only; intermediate HMAC output is wiped. Codes compare in constant time.
 */
#ifndef VKS_TOTP_H
#define VKS_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VKS_TOTP_STEP 30
#define VKS_TOTP_KEY_MAX 64

/* HOTP(key, counter) as 6 decimal digits plus NUL. */
void vks_totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, char out[7]);

/* The counter of `code` (6 digits) within window steps of time t (Unix seconds), or -1 when it
 * matches none (or is not 6 ASCII digits). A caller rejects a counter it has already accepted
 * (replay). */
int64_t vks_totp_match(const unsigned char *key, size_t keylen, const char *code, int64_t t, int window);

/* RFC 4648 base32 (A-Z 2-7; lower case, spaces and '=' padding accepted) into out[0..cap);
 * returns the length, or -1 for any other character, a length that is no whole number of bytes,
 * or too long. */
int vks_base32_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#endif
