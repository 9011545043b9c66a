/* vks_base64: RFC 4648 vectors, strictness, every byte value, no partial output on failure. */
#include <criterion/criterion.h>
#include <string.h>

#include "vks_base64.h"

static void check_pair(const char *plain, const char *b64)
{
    char enc[64];
    unsigned char dec[64];
    size_t n = 0;
    cr_assert_eq(vks_b64_encode((const unsigned char *)plain, strlen(plain), enc), strlen(b64));
    cr_assert_str_eq(enc, b64);
    cr_assert_eq(vks_b64_decode(b64, strlen(b64), dec, sizeof dec, &n, NULL), VKS_B64_OK, "%s", b64);
    cr_assert_eq(n, strlen(plain));
    cr_assert(memcmp(dec, plain, n) == 0);
}

Test(base64, rfc4648_test_vectors)
{
    check_pair("", "");
    check_pair("f", "Zg==");
    check_pair("fo", "Zm8=");
    check_pair("foo", "Zm9v");
    check_pair("foob", "Zm9vYg==");
    check_pair("fooba", "Zm9vYmE=");
    check_pair("foobar", "Zm9vYmFy");
}

Test(base64, every_byte_value_round_trips_and_uses_the_standard_alphabet)
{
    unsigned char in[256], out[256];
    char enc[VKS_B64_ENCODED_LEN(256) + 1];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    for (size_t len = 0; len <= 256; len++) {
        size_t e = vks_b64_encode(in, len, enc), n = 0;
        cr_assert_eq(e, VKS_B64_ENCODED_LEN(len));
        cr_assert_eq(strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="), e);
        cr_assert_eq(vks_b64_decode(enc, e, out, sizeof out, &n, NULL), VKS_B64_OK);
        cr_assert_eq(n, len);
        cr_assert(memcmp(in, out, len) == 0);
    }
    /* 0xfb 0xff encodes with both '+' and '/' */
    const unsigned char pm[] = { 0xfb, 0xef, 0xff };
    vks_b64_encode(pm, sizeof pm, enc);
    cr_assert_str_eq(enc, "++//");
}

static enum vks_b64_result dec(const char *s, size_t *where)
{
    unsigned char out[64];
    size_t n = 99;
    enum vks_b64_result r = vks_b64_decode(s, strlen(s), out, sizeof out, &n, where);
    if (r != VKS_B64_OK)
        cr_assert_eq(n, 0);
    return r;
}

Test(base64, strict_decoding_rejects_what_is_not_canonical)
{
    size_t w = 0;
    cr_assert_eq(dec("Zm9", &w), VKS_B64_BAD_LENGTH);
    cr_assert_eq(dec("Zm9v\n", &w), VKS_B64_BAD_LENGTH);
    cr_assert_eq(dec("Zm*v", &w), VKS_B64_BAD_CHAR);
    cr_assert_eq(w, 2);
    cr_assert_eq(dec("Zm9 ", &w), VKS_B64_BAD_CHAR);
    cr_assert_eq(w, 3);
    cr_assert_eq(dec("Zm9-", &w), VKS_B64_BAD_CHAR, "url-safe alphabet is not accepted");
    cr_assert_eq(dec("Zm9_", &w), VKS_B64_BAD_CHAR);
    cr_assert_eq(dec("Zg==Zg==", &w), VKS_B64_BAD_PADDING, "padding in the middle");
    cr_assert_eq(w, 2);
    cr_assert_eq(dec("Z===", &w), VKS_B64_BAD_PADDING);
    cr_assert_eq(dec("====", &w), VKS_B64_BAD_PADDING);
    cr_assert_eq(dec("Zm=v", &w), VKS_B64_BAD_PADDING);
    cr_assert_eq(dec("Zh==", &w), VKS_B64_BAD_PADDING, "non-zero unused bits");
    cr_assert_eq(dec("Zm9=", &w), VKS_B64_BAD_PADDING, "non-zero unused bits");
    cr_assert_eq(dec("Zm8=", &w), VKS_B64_OK);
    const char nul[] = { 'Z', 'm', '\0', 'v' };
    unsigned char out[8];
    size_t n = 0;
    cr_assert_eq(vks_b64_decode(nul, 4, out, sizeof out, &n, &w), VKS_B64_BAD_CHAR);
    cr_assert_eq(w, 2);
}

Test(base64, output_limit_and_no_partial_output)
{
    unsigned char out[4];
    size_t n = 7, w = 0;
    memset(out, 0xAA, sizeof out);
    cr_assert_eq(vks_b64_decode("Zm9vYmFy", 8, out, 5, &n, &w), VKS_B64_TOO_LONG);
    cr_assert_eq(vks_b64_decode("Zm9vYg==", 8, out, 4, &n, &w), VKS_B64_OK);
    cr_assert_eq(n, 4);
    /* a failure late in the input leaves nothing decoded behind */
    memset(out, 0xAA, sizeof out);
    cr_assert_eq(vks_b64_decode("Zm9vY*==", 8, out, sizeof out, &n, &w), VKS_B64_BAD_CHAR);
    cr_assert_eq(n, 0);
    for (size_t i = 0; i < sizeof out; i++)
        cr_assert_eq(out[i], 0, "byte %zu not wiped", i);
    cr_assert_str_neq(vks_b64_strerror(VKS_B64_BAD_CHAR), "ok");
}
