#include "vks_base64.h"

#include "vks_secmem.h"

/*
 * Character classes are computed with arithmetic masks instead of a lookup table or branches, so
 * the memory access pattern and the branches taken do not depend on the key bytes being decoded
 * or encoded. The only data-dependent branch is the rejection of invalid input.
 */

/* All ones when lo <= c <= hi, zero otherwise (c in 0..255). Relies on arithmetic right shift of
 * negative ints, which gcc and clang provide. */
static int in_range(int c, int lo, int hi)
{
    return ((lo - 1 - c) & (c - hi - 1)) >> 8;
}

/* 0..63, or -1 when c is not in the alphabet. */
static int decode_char(unsigned char uc)
{
    int c = uc;
    int v = -1;
    v += in_range(c, 'A', 'Z') & (c - 'A' + 1);
    v += in_range(c, 'a', 'z') & (c - 'a' + 27);
    v += in_range(c, '0', '9') & (c - '0' + 53);
    v += in_range(c, '+', '+') & 63;
    v += in_range(c, '/', '/') & 64;
    return v;
}

/* All ones when v >= x (v, x small non-negative). */
static int at_least(int v, int x)
{
    return ~((v - x) >> 8);
}

static char encode_char(int v)
{
    int c = v + 'A';
    c += at_least(v, 26) & ('a' - 'A' - 26);
    c += at_least(v, 52) & ('0' - 'a' - 26);
    c += at_least(v, 62) & ('+' - '0' - 10);
    c += at_least(v, 63) & ('/' - '+' - 1);
    return (char)c;
}

enum vks_b64_result vks_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap,
                                   size_t *outlen, size_t *where)
{
    enum vks_b64_result r = VKS_B64_OK;
    size_t pos = 0, o = 0, pad = 0;

    *outlen = 0;
    if (inlen % 4 != 0) {
        pos = inlen;
        r = VKS_B64_BAD_LENGTH;
        goto fail;
    }
    if (inlen >= 4 && in[inlen - 1] == '=') {
        pad = 1;
        if (in[inlen - 2] == '=')
            pad = 2;
    }
    if ((inlen / 4) * 3 - pad > outcap) {
        pos = 0;
        r = VKS_B64_TOO_LONG;
        goto fail;
    }
    for (size_t i = 0; i < inlen; i += 4) {
        int last = (i + 4 == inlen);
        size_t data_chars = last ? 4 - pad : 4;
        unsigned long acc = 0;
        for (size_t j = 0; j < 4; j++) {
            int v = 0;
            if (j < data_chars) {
                v = decode_char((unsigned char)in[i + j]);
                if (v < 0) {
                    pos = i + j;
                    r = in[i + j] == '=' ? VKS_B64_BAD_PADDING : VKS_B64_BAD_CHAR;
                    goto fail;
                }
            }
            acc = (acc << 6) | (unsigned long)v;
        }
        if (last && pad == 2 && (acc & 0xFFFFu) != 0) {
            pos = i + 1;
            r = VKS_B64_BAD_PADDING;
            goto fail;
        }
        if (last && pad == 1 && (acc & 0xFFu) != 0) {
            pos = i + 2;
            r = VKS_B64_BAD_PADDING;
            goto fail;
        }
        out[o++] = (unsigned char)(acc >> 16);
        if (data_chars >= 3)
            out[o++] = (unsigned char)(acc >> 8);
        if (data_chars == 4)
            out[o++] = (unsigned char)acc;
        acc = 0;
    }
    *outlen = o;
    if (where)
        *where = 0;
    return VKS_B64_OK;

fail:
    if (outcap > 0)
        vks_wipe(out, outcap);
    if (where)
        *where = pos;
    return r;
}

size_t vks_b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned long acc = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        out[o++] = encode_char((int)((acc >> 18) & 63));
        out[o++] = encode_char((int)((acc >> 12) & 63));
        out[o++] = encode_char((int)((acc >> 6) & 63));
        out[o++] = encode_char((int)(acc & 63));
    }
    if (n - i == 1) {
        unsigned long acc = (unsigned long)in[i] << 16;
        out[o++] = encode_char((int)((acc >> 18) & 63));
        out[o++] = encode_char((int)((acc >> 12) & 63));
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        unsigned long acc = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        out[o++] = encode_char((int)((acc >> 18) & 63));
        out[o++] = encode_char((int)((acc >> 12) & 63));
        out[o++] = encode_char((int)((acc >> 6) & 63));
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

const char *vks_b64_strerror(enum vks_b64_result r)
{
    switch (r) {
    case VKS_B64_OK: return "ok";
    case VKS_B64_BAD_LENGTH: return "length is not a multiple of 4 characters";
    case VKS_B64_BAD_CHAR: return "character outside the base64 alphabet";
    case VKS_B64_BAD_PADDING: return "misplaced '=' padding or non-zero trailing bits";
    case VKS_B64_TOO_LONG: return "decodes to more bytes than allowed";
    }
    return "unknown base64 error";
}
