/* vks_totp: RFC 6238 TOTP and RFC 4648 base32. Contract: vks_totp.h. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "vks_secmem.h"
#include "vks_totp.h"

void vks_totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, char out[7])
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    for (int i = 7; i >= 0; i--, counter >>= 8)
        msg[i] = (unsigned char)(counter & 0xff);
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof msg, mac, &mlen) == NULL || mlen < 20) {
        snprintf(out, 7, "------"); /* never matches a code of digits */
        vks_wipe(mac, sizeof mac);
        return;
    }
    unsigned off = mac[mlen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    snprintf(out, 7, "%06u", (unsigned)(bin % 1000000u));
    vks_wipe(mac, sizeof mac);
}

int64_t vks_totp_match(const unsigned char *key, size_t keylen, const char *code, int64_t t, int window)
{
    if (!code || strlen(code) != 6 || strspn(code, "0123456789") != 6 || t < 0 || window < 0 || window > 10)
        return -1;
    int64_t now = t / VKS_TOTP_STEP, found = -1;
    for (int64_t c = now - window; c <= now + window; c++) { /* every candidate: no early exit */
        char want[7];
        if (c < 0)
            continue;
        vks_totp_hotp(key, keylen, (uint64_t)c, want);
        if (CRYPTO_memcmp(want, code, 6) == 0)
            found = c;
        vks_wipe(want, sizeof want); /* a valid code of a neighbouring step: one-time, but still a code */
    }
    return found;
}

int vks_base32_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    bool pad = false;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int v;
        if (c == ' ')
            continue;
        if (c == '=') {
            pad = true;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (len == cap)
                return -1;
            out[len++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
        acc &= (1u << bits) - 1;
    }
    if (bits >= 5 || acc != 0) /* a dangling character or non-zero spare bits */
        return -1;
    return (int)len;
}
