/* vks_totp: RFC 6238 appendix B vectors (SHA-1, 6 of the 8 digits), RFC 4226 appendix D, the
 * match window, refused codes, and base32 (RFC 4648 section 10 vectors, strictness). */
#include <criterion/criterion.h>
#include <string.h>

#include "vks_totp.h"

static const unsigned char K[] = "12345678901234567890";

Test(totp, rfc4226_hotp_vectors)
{
    static const char *const want[] = { "755224", "287082", "359152", "969429", "338314",
                                        "254676", "287922", "162583", "399871", "520489" };
    char out[7];
    for (unsigned i = 0; i < 10; i++) {
        vks_totp_hotp(K, 20, i, out);
        cr_assert_str_eq(out, want[i], "counter %u", i);
    }
}

Test(totp, rfc6238_sha1_vectors_last_six_digits)
{
    static const struct { int64_t t; const char *code; } v[] = {
        { 59, "287082" }, { 1111111109, "081804" }, { 1111111111, "050471" },
        { 1234567890, "005924" }, { 2000000000, "279037" }, { 20000000000LL, "353130" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_assert_eq(vks_totp_match(K, 20, v[i].code, v[i].t, 0), v[i].t / 30, "t=%lld", (long long)v[i].t);
}

Test(totp, window_and_refusals)
{
    cr_assert_eq(vks_totp_match(K, 20, "287082", 59 + 30, 1), 1);   /* one step late: window 1 */
    cr_assert_eq(vks_totp_match(K, 20, "287082", 59 + 30, 0), -1);
    cr_assert_eq(vks_totp_match(K, 20, "287082", 59 + 90, 1), -1);
    cr_assert_eq(vks_totp_match(K, 20, "28708", 59, 1), -1);
    cr_assert_eq(vks_totp_match(K, 20, "2870822", 59, 1), -1);
    cr_assert_eq(vks_totp_match(K, 20, "28708a", 59, 1), -1);
    cr_assert_eq(vks_totp_match(K, 20, NULL, 59, 1), -1);
    cr_assert_eq(vks_totp_match(K, 19, "287082", 59, 1), -1);        /* another key */
}

Test(totp, base32)
{
    unsigned char out[64];
    cr_assert_eq(vks_base32_decode("", 0, out, sizeof out), 0);
    cr_assert_eq(vks_base32_decode("MY======", 8, out, sizeof out), 1);
    cr_assert(memcmp(out, "f", 1) == 0);
    cr_assert_eq(vks_base32_decode("MZXW6YTBOI======", 16, out, sizeof out), 6);
    cr_assert(memcmp(out, "foobar", 6) == 0);
    cr_assert_eq(vks_base32_decode("mzxw 6ytb oi", 12, out, sizeof out), 6);
    const char *k = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; /* "12345678901234567890" */
    cr_assert_eq(vks_base32_decode(k, strlen(k), out, sizeof out), 20);
    cr_assert(memcmp(out, K, 20) == 0);
    cr_assert_eq(vks_base32_decode("MZ1W", 4, out, sizeof out), -1);   /* '1' is not base32 */
    cr_assert_eq(vks_base32_decode("M", 1, out, sizeof out), -1);      /* a dangling character */
    cr_assert_eq(vks_base32_decode("MZ", 2, out, sizeof out), -1);     /* non-zero spare bits */
    cr_assert_eq(vks_base32_decode("MY==MY", 6, out, sizeof out), -1); /* data after padding */
    cr_assert_eq(vks_base32_decode(k, strlen(k), out, 19), -1);        /* too long */
}
