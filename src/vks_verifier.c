/*
 * vks_verifier: scrypt and PBKDF2-HMAC-SHA256 verifiers (contract and format: vks_verifier.h).
 */
#include "vks_verifier.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vks_base64.h"
#include "vks_secmem.h"

#define SCRYPT_TAG "$vks-scrypt$"
#define PBKDF2_TAG "$vks-pbkdf2-sha256$"

void vks_verifier_params_default(struct vks_verifier_params *p)
{
    memset(p, 0, sizeof *p);
    p->scheme = VKS_VERIFIER_SCRYPT;
    p->ln = VKS_VERIFIER_DEFAULT_LN;
    p->r = VKS_VERIFIER_DEFAULT_R;
    p->p = VKS_VERIFIER_DEFAULT_P;
    p->iterations = VKS_VERIFIER_DEFAULT_ITER;
}

static bool in_range(const struct vks_verifier_params *p)
{
    if (p->scheme == VKS_VERIFIER_SCRYPT)
        return p->ln >= VKS_VERIFIER_SCRYPT_LN_MIN && p->ln <= VKS_VERIFIER_SCRYPT_LN_MAX && p->r >= 1 &&
               p->r <= VKS_VERIFIER_SCRYPT_R_MAX && p->p >= 1 && p->p <= VKS_VERIFIER_SCRYPT_P_MAX;
    return p->scheme == VKS_VERIFIER_PBKDF2_SHA256 && p->iterations >= VKS_VERIFIER_PBKDF2_MIN &&
           p->iterations <= VKS_VERIFIER_PBKDF2_MAX;
}

/* One decimal number of at most 8 digits, no sign, no leading zero: *s advanced past it. */
static bool number(const char **s, unsigned *out)
{
    const char *p = *s;
    unsigned long v = 0;
    size_t k = 0;
    while (p[k] >= '0' && p[k] <= '9' && k < 9)
        v = v * 10 + (unsigned long)(p[k++] - '0');
    if (k == 0 || k > 8 || (k > 1 && p[0] == '0'))
        return false;
    *out = (unsigned)v;
    *s = p + k;
    return true;
}

/* "ln=14,r=8,p=5" or "i=600000" (exactly these keys, in this order), up to `end`. */
static bool parse_list(const char *s, const char *end, struct vks_verifier_params *p)
{
    if (p->scheme == VKS_VERIFIER_SCRYPT) {
        if (strncmp(s, "ln=", 3) != 0 || (s += 3, !number(&s, &p->ln)) || strncmp(s, ",r=", 3) != 0 ||
            (s += 3, !number(&s, &p->r)) || strncmp(s, ",p=", 3) != 0 || (s += 3, !number(&s, &p->p)))
            return false;
    } else if (strncmp(s, "i=", 2) != 0 || (s += 2, !number(&s, &p->iterations))) {
        return false;
    }
    return s == end && in_range(p);
}

vks_status vks_verifier_params_parse(const char *s, const char *field, struct vks_verifier_params *out,
                                     struct vks_err *err)
{
    vks_verifier_params_default(out);
    const char *colon = s ? strchr(s, ':') : NULL;
    size_t head = s ? (colon ? (size_t)(colon - s) : strlen(s)) : 0;
    if (s && head == 6 && strncmp(s, "scrypt", 6) == 0)
        out->scheme = VKS_VERIFIER_SCRYPT;
    else if (s && head == 13 && strncmp(s, "pbkdf2-sha256", 13) == 0)
        out->scheme = VKS_VERIFIER_PBKDF2_SHA256;
    else
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: the scheme must be scrypt or pbkdf2-sha256, "
                           "optionally with parameters (scrypt:ln=14,r=8,p=5 or pbkdf2-sha256:i=600000)", field);
    if (colon && (strlen(colon + 1) > 64 || !parse_list(colon + 1, colon + 1 + strlen(colon + 1), out)))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: parameters must be ln=%d..%d,r=1..%d,p=1..%d for scrypt "
                           "or i=%d..%d for pbkdf2-sha256, in this order", field, VKS_VERIFIER_SCRYPT_LN_MIN,
                           VKS_VERIFIER_SCRYPT_LN_MAX, VKS_VERIFIER_SCRYPT_R_MAX, VKS_VERIFIER_SCRYPT_P_MAX,
                           VKS_VERIFIER_PBKDF2_MIN, VKS_VERIFIER_PBKDF2_MAX);
    return VKS_OK;
}

/* Derives VKS_VERIFIER_DK_LEN bytes into dk (an arena slot's data). */
static vks_status derive(const struct vks_verifier_params *p, const unsigned char *pw, size_t n,
                         const unsigned char *salt, unsigned char *dk, struct vks_err *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, p->scheme == VKS_VERIFIER_SCRYPT ? "SCRYPT" : "PBKDF2", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (kc == NULL)
        return vks_err_set(err, VKS_E_INTERNAL, "verifier: OpenSSL has no %s KDF",
                           p->scheme == VKS_VERIFIER_SCRYPT ? "SCRYPT" : "PBKDF2");
    uint64_t N = (uint64_t)1 << p->ln, maxmem = 128u * (uint64_t)p->r * (N + (uint64_t)p->p) + (1u << 20);
    uint32_t r = p->r, par = p->p, iter = p->iterations;
    static const unsigned char empty[1] = { 0 };
    OSSL_PARAM prm[7], *q = prm;
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(n ? pw : empty), n);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, VKS_VERIFIER_SALT_LEN);
    if (p->scheme == VKS_VERIFIER_SCRYPT) {
        *q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &N);
        *q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
        *q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &par);
        *q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    } else {
        *q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_ITER, &iter);
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    }
    *q = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kc, dk, VKS_VERIFIER_DK_LEN, prm);
    EVP_KDF_CTX_free(kc);
    return ok == 1 ? VKS_OK : vks_err_set(err, VKS_E_INTERNAL, "verifier: key derivation failed (memory?)");
}

vks_status vks_verifier_create(const struct vks_verifier_params *p, const unsigned char *pw, size_t n, char *out,
                               size_t cap, struct vks_err *err)
{
    if (p == NULL || out == NULL || cap < VKS_VERIFIER_MAX + 1 || !in_range(p))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_verifier_create: bad parameters or buffer");
    unsigned char salt[VKS_VERIFIER_SALT_LEN];
    if (getrandom(salt, sizeof salt, 0) != (ssize_t)sizeof salt)
        return vks_err_set(err, VKS_E_INTERNAL, "verifier: getrandom: %s", strerror(errno));
    vks_secret dk = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_alloc(VKS_VERIFIER_DK_LEN, &dk, err);
    if (st == VKS_OK)
        st = derive(p, pw, n, salt, dk.data, err);
    if (st == VKS_OK) {
        char s64[VKS_B64_ENCODED_LEN(VKS_VERIFIER_SALT_LEN) + 1], d64[VKS_B64_ENCODED_LEN(VKS_VERIFIER_DK_LEN) + 1];
        vks_b64_encode(salt, sizeof salt, s64);
        vks_b64_encode(dk.data, VKS_VERIFIER_DK_LEN, d64);
        if (p->scheme == VKS_VERIFIER_SCRYPT)
            snprintf(out, cap, SCRYPT_TAG "ln=%u,r=%u,p=%u$%s$%s", p->ln, p->r, p->p, s64, d64);
        else
            snprintf(out, cap, PBKDF2_TAG "i=%u$%s$%s", p->iterations, s64, d64);
        vks_wipe(d64, sizeof d64);
    }
    vks_secret_free(&dk);
    return st;
}

bool vks_verifier_is(const char *s, size_t len)
{
    return s != NULL && len >= 5 && memcmp(s, "$vks-", 5) == 0;
}

/* Decodes one base64 field [a, b) of exactly want bytes. */
static bool field64(const char *a, const char *b, unsigned char *out, size_t want)
{
    unsigned char tmp[64];
    size_t got = 0;
    if (b <= a || (size_t)(b - a) != VKS_B64_ENCODED_LEN(want) ||
        vks_b64_decode(a, (size_t)(b - a), tmp, sizeof tmp, &got, NULL) != VKS_B64_OK || got != want)
        return false;
    memcpy(out, tmp, want);
    vks_wipe(tmp, sizeof tmp);
    return true;
}

vks_status vks_verifier_parse(const char *enc, size_t len, struct vks_verifier_params *p,
                              unsigned char salt[VKS_VERIFIER_SALT_LEN], unsigned char dk[VKS_VERIFIER_DK_LEN],
                              struct vks_err *err)
{
    char b[VKS_VERIFIER_MAX + 1];
    memset(p, 0, sizeof *p);
    if (enc == NULL || len == 0 || len > VKS_VERIFIER_MAX || memchr(enc, '\0', len) != NULL)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: empty, too long (max %d) or has a NUL byte",
                           VKS_VERIFIER_MAX);
    memcpy(b, enc, len);
    b[len] = '\0';
    const char *rest;
    if (strncmp(b, SCRYPT_TAG, strlen(SCRYPT_TAG)) == 0)
        p->scheme = VKS_VERIFIER_SCRYPT, rest = b + strlen(SCRYPT_TAG);
    else if (strncmp(b, PBKDF2_TAG, strlen(PBKDF2_TAG)) == 0)
        p->scheme = VKS_VERIFIER_PBKDF2_SHA256, rest = b + strlen(PBKDF2_TAG);
    else
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: unknown scheme (expected $vks-scrypt$ or "
                           "$vks-pbkdf2-sha256$)");
    const char *d1 = strchr(rest, '$'), *d2 = d1 ? strchr(d1 + 1, '$') : NULL;
    if (d1 == NULL || d2 == NULL || strchr(d2 + 1, '$') != NULL)
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: expected 4 '$'-separated fields");
    if (!parse_list(rest, d1, p))
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: parameters missing or outside the accepted range");
    if (!field64(d1 + 1, d2, salt, VKS_VERIFIER_SALT_LEN))
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: the salt is not %d bytes of base64",
                           VKS_VERIFIER_SALT_LEN);
    if (!field64(d2 + 1, b + len, dk, VKS_VERIFIER_DK_LEN))
        return vks_err_set(err, VKS_E_BAD_RESPONSE, "verifier: the derived key is not %d bytes of base64",
                           VKS_VERIFIER_DK_LEN);
    return VKS_OK;
}

vks_status vks_verifier_check(const char *enc, size_t len, const unsigned char *pw, size_t n, struct vks_err *err)
{
    struct vks_verifier_params p;
    unsigned char salt[VKS_VERIFIER_SALT_LEN], want[VKS_VERIFIER_DK_LEN];
    vks_status st = vks_verifier_parse(enc, len, &p, salt, want, err);
    vks_secret dk = VKS_SECRET_EMPTY;
    if (st == VKS_OK)
        st = vks_secret_alloc(VKS_VERIFIER_DK_LEN, &dk, err);
    if (st == VKS_OK)
        st = derive(&p, pw, n, salt, dk.data, err);
    if (st == VKS_OK && CRYPTO_memcmp(dk.data, want, VKS_VERIFIER_DK_LEN) != 0)
        st = vks_err_set(err, VKS_E_AUTH_FAILED, "wrong password");
    vks_secret_free(&dk);
    vks_wipe(want, sizeof want);
    return st;
}
