/*
 * libFuzzer target: base32 decoding of TOTP secrets (vks serve's totp_file) and the TOTP match
 * on any input. A decoded key re-decodes identically from its canonical base32 encoding; a match
 * is within the window.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_totp.h"

static void enc32(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = a[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits)
        out[o++] = a[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char key[VKS_TOTP_KEY_MAX], again[VKS_TOTP_KEY_MAX];
    char canon[VKS_TOTP_KEY_MAX * 2];
    int n = vks_base32_decode((const char *)data, size, key, sizeof key);
    if (n < -1 || n > (int)sizeof key)
        abort();
    if (n >= 0) {
        enc32(key, (size_t)n, canon);
        if (vks_base32_decode(canon, strlen(canon), again, sizeof again) != n || memcmp(key, again, (size_t)n) != 0)
            abort();
    }
    if (size >= 7) {
        char code[7];
        memcpy(code, data, 6);
        code[6] = '\0';
        int64_t t = (int64_t)data[6] * 1000003;
        int64_t c = vks_totp_match(data + 7, size - 7, code, t, 1);
        if (c != -1 && (c < t / 30 - 1 || c > t / 30 + 1))
            abort();
    }
    return 0;
}
