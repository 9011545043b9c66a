/*
 * libFuzzer target: strict base64. Decoding accepts exactly the canonical encodings, so
 * decode-then-encode must give back the input, and encode-then-decode must give back the bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char out[16384];
    static char enc[VKS_B64_ENCODED_LEN(16384) + 1];
    size_t n = 0, where = 0;
    size_t cap = size ? (size_t)data[0] * 64 : 0; /* sometimes too small, on purpose */
    if (cap > sizeof out)
        cap = sizeof out;

    enum vks_b64_result r = vks_b64_decode((const char *)data, size, out, cap, &n, &where);
    if (r == VKS_B64_OK) {
        if (n > cap || n != VKS_B64_DECODED_MAX(size) - (size && data[size - 1] == '=') -
                                (size > 1 && data[size - 1] == '=' && data[size - 2] == '='))
            abort();
        size_t e = vks_b64_encode(out, n, enc);
        if (e != size || memcmp(enc, data, size) != 0)
            abort();
    } else {
        if (n != 0 || (r != VKS_B64_TOO_LONG && r != VKS_B64_BAD_LENGTH && where >= size))
            abort();
        for (size_t i = 0; i < cap; i++)
            if (out[i] != 0)
                abort();
    }

    if (size <= sizeof out) {
        size_t e = vks_b64_encode(data, size, enc);
        if (e != VKS_B64_ENCODED_LEN(size) || enc[e] != '\0')
            abort();
        if (vks_b64_decode(enc, e, out, sizeof out, &n, NULL) != VKS_B64_OK || n != size ||
            (size && memcmp(out, data, size) != 0))
            abort();
    }
    return 0;
}
