#include "vks_hmac.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

static EVP_MD *sha256_md;
static EVP_KDF *hkdf_kdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_ctx_key;

static void free_tls_ctx(void *p)
{
    EVP_MD_CTX_free(p);
}

static void fetch_algorithms(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    hkdf_kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    (void)pthread_key_create(&tls_ctx_key, free_tls_ctx);
}

static bool ready(void)
{
    pthread_once(&fetch_once, fetch_algorithms);
    return sha256_md != NULL;
}

vks_status vks_hmac_key_set(struct vks_hmac_key *k, const unsigned char *key, size_t len,
                            struct vks_err *err)
{
    if (k == NULL || key == NULL || len == 0 || len > 64)
        return vks_err_set(err, VKS_E_INVALID_ARG, "HMAC key must be 1..64 bytes");
    if (!ready())
        return vks_err_set(err, VKS_E_INTERNAL, "SHA-256 is not available from OpenSSL");
    vks_secret s = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_alloc(128, &s, err);
    if (st != VKS_OK)
        return st;
    for (size_t i = 0; i < 64; i++) {
        unsigned char b = i < len ? key[i] : 0;
        s.data[i] = (unsigned char)(b ^ 0x36);
        s.data[64 + i] = (unsigned char)(b ^ 0x5c);
    }
    s.len = 128;
    vks_hmac_key_clear(k);
    k->pads = s;
    return VKS_OK;
}

void vks_hmac_key_clear(struct vks_hmac_key *k)
{
    if (k != NULL)
        vks_secret_free(&k->pads);
}

bool vks_hmac_key_is_set(const struct vks_hmac_key *k)
{
    return k != NULL && k->pads.data != NULL && k->pads.len == 128;
}

bool vks_hmac_ctx(EVP_MD_CTX *c, const struct vks_hmac_key *k, const void *msg, size_t len,
                  unsigned char out[VKS_HMAC_LEN])
{
    if (!ready() || c == NULL || !vks_hmac_key_is_set(k))
        return false;
    unsigned char inner[VKS_HMAC_LEN];
    bool ok = EVP_DigestInit_ex2(c, sha256_md, NULL) == 1 &&
              EVP_DigestUpdate(c, k->pads.data, 64) == 1 &&
              (len == 0 || EVP_DigestUpdate(c, msg, len) == 1) &&
              EVP_DigestFinal_ex(c, inner, NULL) == 1 &&
              EVP_DigestInit_ex2(c, sha256_md, NULL) == 1 &&
              EVP_DigestUpdate(c, k->pads.data + 64, 64) == 1 &&
              EVP_DigestUpdate(c, inner, sizeof inner) == 1 &&
              EVP_DigestFinal_ex(c, out, NULL) == 1;
    vks_wipe(inner, sizeof inner);
    if (!ok) {
        /* a half-finished context could hold padded-key state: drop it */
        EVP_MD_CTX_reset(c);
        memset(out, 0, VKS_HMAC_LEN);
    }
    return ok;
}

bool vks_hmac(const struct vks_hmac_key *k, const void *msg, size_t len,
              unsigned char out[VKS_HMAC_LEN])
{
    if (!ready())
        return false;
    EVP_MD_CTX *c = pthread_getspecific(tls_ctx_key);
    if (c == NULL) {
        c = EVP_MD_CTX_new();
        if (c == NULL)
            return false;
        if (pthread_setspecific(tls_ctx_key, c) != 0) {
            bool ok = vks_hmac_ctx(c, k, msg, len, out);
            EVP_MD_CTX_free(c);
            return ok;
        }
    }
    return vks_hmac_ctx(c, k, msg, len, out);
}

bool vks_hkdf_sha256(const unsigned char *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                     const void *info, size_t info_len, unsigned char *out, size_t out_len)
{
    if (!ready() || hkdf_kdf == NULL)
        return false;
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(hkdf_kdf);
    if (kctx == NULL)
        return false;
    OSSL_PARAM params[5];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    params[4] = OSSL_PARAM_construct_end();
    bool ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(kctx); /* OpenSSL cleanses the copied key on free */
    return ok;
}

void vks_hmac_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
