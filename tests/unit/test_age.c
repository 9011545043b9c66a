/*
 * vks_age: a known-answer file made once with Debian's age 1.1.1 (below), interop both ways with
 * Debian's age and age-keygen run by the test itself (fresh keys, several sizes around the 64 KiB
 * chunk), round trips with recipients and passphrases, every header error, every truncation and a
 * flipped byte at many offsets, the wrong identity or passphrase, and Bech32.
 *
 * The identity and plaintexts below are listed in tests/test-secrets.d/backup.txt.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_age.h"
#include "vks_base64.h"
#include "vks_secmem.h"

/* age-keygen -o katkey; printf 'vks-age-kat-plaintext-0001\n' | age -r <its public key> (2026-12-03) */
static const char KAT_ID[] = "AGE-SECRET-KEY-1M2Q2L4ED23WDLFQZ36FD7PJS8UQ7NUM0MQ555TTQTX40DWJ9P60QEMST9Z";
static const char KAT_PUB[] = "age1rn9yqf9p4y8mtfvjtx0n6gqr4tyrgzazm8tf6p3sr9hh6802x9gq3dupul";
static const char KAT_FILE_B64[] =
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSArL3QxY2VkR1J2QnVaSTBGWEdkWloydVF0VXB3dE9uRjd2MmQ4eUVXQ1dzCkdp"
    "OEtkUDh1SmJqOHQyNWZBK0ZUSXpWVUJwTjhmUTBvNUpNcUVmNGU3dlkKLS0tIHAydGNGL3pZNHdBT2pHUzJUdmFKZWFBdWpXci9NckM3"
    "VGNYOEF4VHA2bGcKCiKC++awQrqoQ3NQqRuA3lMIDxAkSon/ux/zmKTmrIHYymRzxZw4L0KEbiUxu51QEJ7OlecPw7rIo1Q=";
static const char KAT_PLAIN[] = "vks-age-kat-plaintext-0001\n";
#define PASS "age-test-passphrase-4f1e"

static char dir[] = "/tmp/vks-age-test-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}
static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
TestSuite(age, .init = setup, .fini = teardown);

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)l + 1);
    cr_assert_eq(fread(p, 1, (size_t)l, f), (size_t)l);
    fclose(f);
    *n = (size_t)l;
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void ids_of(const char *text, struct vks_age_identities *ids)
{
    struct vks_err e;
    vks_status st = vks_age_identities_parse((const unsigned char *)text, strlen(text), "-i", ids, &e);
    cr_assert_eq(st, VKS_OK, "%s", e.msg);
}

static vks_status open_with(const unsigned char *f, size_t n, const struct vks_age_identities *ids,
                            const char *pass, vks_scratch *out, struct vks_err *e)
{
    vks_secret p = VKS_SECRET_EMPTY;
    if (pass)
        cr_assert_eq(vks_secret_dup(pass, strlen(pass), &p, e), VKS_OK);
    struct vks_age_key k = { ids, pass ? &p : NULL, 0 };
    vks_status st = vks_age_open(f, n, &k, out, e);
    vks_secret_free(&p);
    return st;
}

static unsigned char *kat_file(size_t *n)
{
    unsigned char *f = malloc(sizeof KAT_FILE_B64);
    cr_assert_eq(vks_b64_decode(KAT_FILE_B64, strlen(KAT_FILE_B64), f, sizeof KAT_FILE_B64, n, NULL), VKS_B64_OK);
    return f;
}

Test(age, known_answer_from_debian_age)
{
    struct vks_age_identities ids;
    ids_of(KAT_ID, &ids);
    struct vks_age_recipient r;
    char enc[VKS_AGE_RECIPIENT_LEN + 1];
    cr_assert_eq(vks_age_identity_recipient(&ids.keys[0], &r, NULL), VKS_OK);
    vks_age_recipient_encode(&r, enc);
    cr_assert_str_eq(enc, KAT_PUB);
    vks_secret idtext;
    cr_assert_eq(vks_age_identity_encode(&ids.keys[0], &idtext, NULL), VKS_OK);
    cr_assert_eq(idtext.len, strlen(KAT_ID));
    cr_assert(memcmp(idtext.data, KAT_ID, idtext.len) == 0);
    vks_secret_free(&idtext);
    size_t n;
    unsigned char *f = kat_file(&n);
    vks_scratch out;
    struct vks_err e;
    cr_assert_eq(open_with(f, n, &ids, NULL, &out, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(out.len, strlen(KAT_PLAIN));
    cr_assert(memcmp(out.data, KAT_PLAIN, out.len) == 0);
    vks_scratch_close(&out);
    free(f);
    vks_age_identities_free(&ids);
}

/* Every truncation and a flipped bit at every offset of the KAT file is refused (never a crash,
 * never plaintext). */
Test(age, truncated_or_flipped_files_are_refused)
{
    struct vks_age_identities ids;
    ids_of(KAT_ID, &ids);
    size_t n;
    unsigned char *f = kat_file(&n);
    struct vks_err e;
    vks_scratch out;
    for (size_t cut = 0; cut < n; cut++) {
        cr_assert_neq(open_with(f, cut, &ids, NULL, &out, &e), VKS_OK, "truncated at %zu accepted", cut);
        cr_assert_null(out.data);
    }
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            f[i] ^= (unsigned char)(1u << bit);
            vks_status st = open_with(f, n, &ids, NULL, &out, &e);
            f[i] ^= (unsigned char)(1u << bit);
            cr_assert_neq(st, VKS_OK, "flip at %zu bit %d accepted", i, bit);
            cr_assert(st == VKS_E_INVALID_INPUT || st == VKS_E_DECRYPT_FAILED, "flip at %zu: %s", i, e.msg);
        }
    }
    unsigned char *g = malloc(n + 1); /* a byte appended after the final chunk */
    memcpy(g, f, n);
    g[n] = 0;
    cr_assert_eq(open_with(g, n + 1, &ids, NULL, &out, &e), VKS_E_DECRYPT_FAILED);
    free(g);
    free(f);
    vks_age_identities_free(&ids);
}

static void keygen(const char *path, char pub[VKS_AGE_RECIPIENT_LEN + 1])
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "age-keygen -o %s 2>/dev/null && age-keygen -y %s > %s.pub", path, path, path);
    cr_assert_eq(system(cmd), 0, "age-keygen (Debian package age) must be installed");
    snprintf(cmd, sizeof cmd, "%s.pub", path);
    size_t n;
    unsigned char *p = slurp(cmd, &n);
    cr_assert_geq(n, (size_t)VKS_AGE_RECIPIENT_LEN);
    memcpy(pub, p, VKS_AGE_RECIPIENT_LEN);
    pub[VKS_AGE_RECIPIENT_LEN] = '\0';
    free(p);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 131 + (i >> 8));
    return p;
}

static const size_t SIZES[] = { 0, 1, 1000, 65535, 65536, 65537, 2 * 65536, 200000 };

Test(age, debian_age_encrypts_we_decrypt)
{
    char key[256], pub[VKS_AGE_RECIPIENT_LEN + 1], plain[256], enc[256], cmd[1024];
    snprintf(key, sizeof key, "%s/key", dir);
    keygen(key, pub);
    size_t kn;
    unsigned char *ktext = slurp(key, &kn);
    struct vks_age_identities ids;
    struct vks_err e;
    cr_assert_eq(vks_age_identities_parse(ktext, kn, "-i", &ids, &e), VKS_OK, "%s", e.msg);
    free(ktext);
    for (size_t s = 0; s < sizeof SIZES / sizeof SIZES[0]; s++) {
        unsigned char *p = pattern(SIZES[s]);
        snprintf(plain, sizeof plain, "%s/plain", dir);
        snprintf(enc, sizeof enc, "%s/enc.age", dir);
        spit(plain, p, SIZES[s]);
        snprintf(cmd, sizeof cmd, "age -r %s -o %s %s", pub, enc, plain);
        cr_assert_eq(system(cmd), 0);
        size_t n;
        unsigned char *f = slurp(enc, &n);
        vks_scratch out;
        cr_assert_eq(open_with(f, n, &ids, NULL, &out, &e), VKS_OK, "size %zu: %s", SIZES[s], e.msg);
        cr_assert_eq(out.len, SIZES[s]);
        cr_assert(SIZES[s] == 0 || memcmp(out.data, p, SIZES[s]) == 0, "size %zu differs", SIZES[s]);
        vks_scratch_close(&out);
        free(f);
        free(p);
    }
    vks_age_identities_free(&ids);
}

Test(age, we_encrypt_debian_age_decrypts)
{
    char key[256], pub[VKS_AGE_RECIPIENT_LEN + 1], enc[256], dec[256], cmd[1024];
    snprintf(key, sizeof key, "%s/key2", dir);
    keygen(key, pub);
    struct vks_age_recipient r[2];
    struct vks_err e;
    cr_assert_eq(vks_age_recipient_parse(pub, strlen(pub), "--recipient", &r[0], &e), VKS_OK, "%s", e.msg);
    vks_secret other;
    cr_assert_eq(vks_age_keygen(&other, &r[1], NULL), VKS_OK); /* a second recipient first in line */
    vks_secret_free(&other);
    for (size_t s = 0; s < sizeof SIZES / sizeof SIZES[0]; s++) {
        unsigned char *p = pattern(SIZES[s]), *f = NULL;
        size_t n = 0, dn = 0;
        struct vks_age_recipient two[2] = { r[1], r[0] };
        cr_assert_eq(vks_age_seal_buffer(two, 2, NULL, 0, p, SIZES[s], &f, &n, &e), VKS_OK, "%s", e.msg);
        snprintf(enc, sizeof enc, "%s/ours.age", dir);
        snprintf(dec, sizeof dec, "%s/ours.out", dir);
        spit(enc, f, n);
        snprintf(cmd, sizeof cmd, "age -d -i %s -o %s %s", key, dec, enc);
        cr_assert_eq(system(cmd), 0, "age -d refused our file of %zu bytes", SIZES[s]);
        unsigned char *d = NULL;
        if (SIZES[s] > 0 || access(dec, F_OK) == 0) /* age -o creates no file for empty output */
            d = slurp(dec, &dn);
        cr_assert_eq(dn, SIZES[s]);
        cr_assert(SIZES[s] == 0 || memcmp(d, p, dn) == 0);
        free(d);
        free(f);
        free(p);
    }
}

Test(age, passphrase_round_trip_and_wrong_passphrase)
{
    vks_secret pw;
    struct vks_err e;
    cr_assert_eq(vks_secret_dup(PASS, strlen(PASS), &pw, NULL), VKS_OK);
    unsigned char *p = pattern(70000), *f = NULL;
    size_t n = 0;
    cr_assert_eq(vks_age_seal_buffer(NULL, 0, &pw, 10, p, 70000, &f, &n, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&pw);
    vks_scratch out;
    cr_assert_eq(open_with(f, n, NULL, PASS, &out, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(out.len, 70000u);
    cr_assert(memcmp(out.data, p, 70000) == 0);
    vks_scratch_close(&out);
    cr_assert_eq(open_with(f, n, NULL, PASS "x", &out, &e), VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "wrong passphrase") != NULL, "%s", e.msg);
    struct vks_age_identities ids;
    ids_of(KAT_ID, &ids);
    cr_assert_eq(open_with(f, n, &ids, NULL, &out, &e), VKS_E_INVALID_INPUT); /* identity for a passphrase file */
    cr_assert(strstr(e.msg, "passphrase") != NULL, "%s", e.msg);
    size_t kn;
    unsigned char *k = kat_file(&kn);
    cr_assert_eq(open_with(k, kn, NULL, PASS, &out, &e), VKS_E_INVALID_INPUT); /* passphrase for a recipient file */
    cr_assert(strstr(e.msg, "identity") != NULL, "%s", e.msg);
    /* the work factor is capped */
    struct vks_age_key lim = { NULL, NULL, 9 };
    cr_assert_eq(vks_age_open(f, n, &lim, &out, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "work factor 10") != NULL, "%s", e.msg);
    vks_age_identities_free(&ids);
    free(k);
    free(f);
    free(p);
}

Test(age, wrong_identity_is_refused)
{
    vks_secret a;
    struct vks_age_recipient ra, rb;
    struct vks_age_identities ids = { 0 };
    struct vks_err e;
    cr_assert_eq(vks_age_keygen(&a, &ra, NULL), VKS_OK);
    cr_assert_eq(vks_age_keygen(&ids.keys[0], &rb, NULL), VKS_OK);
    ids.n = 1;
    unsigned char *f;
    size_t n;
    cr_assert_eq(vks_age_seal_buffer(&ra, 1, NULL, 0, "x", 1, &f, &n, &e), VKS_OK);
    vks_scratch out;
    cr_assert_eq(open_with(f, n, &ids, NULL, &out, &e), VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "no identity matches") != NULL, "%s", e.msg);
    vks_secret_free(&ids.keys[1]);
    ids.keys[1] = a; /* the right one second in the file */
    ids.n = 2;
    cr_assert_eq(open_with(f, n, &ids, NULL, &out, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(out.len, 1u);
    vks_scratch_close(&out);
    free(f);
    vks_age_identities_free(&ids);
}

struct bad_header {
    const char *text, *want;
};

Test(age, header_errors)
{
    static const char MAC[] = "--- p2tcF/zY4wAOjGS2TvaJeaAujWr/MrC7TcX8AxTp6lg\n";
    static const char ST[] = "-> X25519 +/t1cedGRvBuZI0FXGdZZ2uQtUpwtOnF7v2d8yEWCWs\n"
                             "Gi8KdP8uJbj8t25fA+FTIzVUBpN8fQ0o5JMqEf4e7vY\n";
    char buf[8][512];
    snprintf(buf[0], 512, "age-encryption.org/v1\n%s", MAC);                       /* no stanza */
    snprintf(buf[1], 512, "age-encryption.org/v1\n-> X25519  x\nAAAA\n%s", MAC);   /* empty argument */
    snprintf(buf[2], 512, "age-encryption.org/v1\n-> X25519 x\nAAA=\n%s", MAC);    /* padding */
    snprintf(buf[3], 512, "age-encryption.org/v1\n-> X25519 x\nAAB\n%s", MAC);     /* non-canonical bits */
    snprintf(buf[4], 512, "age-encryption.org/v1\n%s---\n", ST);                   /* MAC line without MAC */
    snprintf(buf[5], 512, "age-encryption.org/v1\n%s--- AAAA\n", ST);              /* short MAC */
    snprintf(buf[6], 512, "age-encryption.org/v1\n%sgarbage\n%s", ST, MAC);        /* not a stanza */
    snprintf(buf[7], 512, "age-encryption.org/v1\n-> X25519 x\n%s%s", /* a body line over 64 columns */
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", MAC);
    const struct bad_header cases[] = {
        { "", "not an age file" },
        { "hello world\n", "not an age file" },
        { "age-encryption.org/v2\n", "not an age file" },
        { "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", "ASCII-armored" },
        { "age-encryption.org/v1", "not an age file" },
        { "age-encryption.org/v1\n", "truncated" },
        { "age-encryption.org/v1\n-> X25519 abc\n", "truncated" },
        { buf[0], "no recipient stanza" },
        { buf[1], "empty stanza argument" },
        { buf[2], "base64" },
        { buf[3], "base64" },
        { buf[4], "MAC line" },
        { buf[5], "MAC line" },
        { buf[6], "expected a stanza" },
        { buf[7], "64" },
        { "age-encryption.org/v1\n-> \nAAAA\n", "empty stanza argument" },
        { "age-encryption.org/v1\n-> a\x01 b\n\n", "visible ASCII" },
        { "age-encryption.org/v1\n-> a b c d e f g h i\n\n", "more than 8" },
    };
    struct vks_age_header *h = malloc(sizeof *h);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vks_err e;
        vks_err_clear(&e);
        vks_status st = vks_age_header_parse((const unsigned char *)cases[i].text, strlen(cases[i].text), h, &e);
        cr_assert_eq(st, VKS_E_INVALID_INPUT, "case %zu accepted", i);
        cr_assert(strstr(e.msg, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].want);
    }
    /* too many stanzas, an over-long header */
    size_t cap = VKS_AGE_HEADER_MAX + 4096, l = 0;
    char *big = malloc(cap);
    l += (size_t)sprintf(big, "age-encryption.org/v1\n");
    for (int i = 0; i < VKS_AGE_STANZAS_MAX + 1; i++)
        l += (size_t)sprintf(big + l, "-> t%d\n\n", i);
    struct vks_err e;
    cr_assert_eq(vks_age_header_parse((unsigned char *)big, l, h, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "more than 32 stanzas") != NULL, "%s", e.msg);
    l = (size_t)sprintf(big, "age-encryption.org/v1\n-> x\n");
    while (l + 65 < cap) {
        memset(big + l, 'A', 64);
        big[l + 64] = '\n';
        l += 65;
    }
    cr_assert_eq(vks_age_header_parse((unsigned char *)big, l, h, &e), VKS_E_INVALID_INPUT);
    free(big);
    /* a stanza body of exactly 64 columns needs the empty line that follows it */
    const char *ok64 = "age-encryption.org/v1\n-> x\n"
                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\n"
                       "--- p2tcF/zY4wAOjGS2TvaJeaAujWr/MrC7TcX8AxTp6lg\n";
    cr_assert_eq(vks_age_header_parse((const unsigned char *)ok64, strlen(ok64), h, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(h->nstanzas, 1u);
    cr_assert_eq(h->stanzas[0].body_len, 48u);
    free(h);
}

Test(age, malformed_known_stanzas_and_unknown_ones)
{
    /* the KAT file with its X25519 stanza argument damaged (re-MACing is impossible without the
       key, so these fail either as malformed or as unmatched: never as success) */
    struct vks_age_identities ids;
    ids_of(KAT_ID, &ids);
    size_t n;
    unsigned char *f = kat_file(&n);
    struct vks_err e;
    vks_scratch out;
    unsigned char *g = malloc(n + 16);
    /* an extra argument */
    size_t at = strlen("age-encryption.org/v1\n-> X25519 ") + 43;
    memcpy(g, f, at);
    memcpy(g + at, " zz", 3);
    memcpy(g + at + 3, f + at, n - at);
    cr_assert_eq(open_with(g, n + 3, &ids, NULL, &out, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "X25519 stanza 1 is malformed") != NULL, "%s", e.msg);
    /* an unknown stanza type is skipped: no identity matches */
    memcpy(g, f, n);
    memcpy(g + strlen("age-encryption.org/v1\n-> "), "Y25519", 6);
    cr_assert_eq(open_with(g, n, &ids, NULL, &out, &e), VKS_E_DECRYPT_FAILED);
    /* an scrypt stanza beside another is refused */
    const char *two = "age-encryption.org/v1\n-> scrypt AAAAAAAAAAAAAAAAAAAAAA 10\n"
                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-> x\n\n"
                      "--- p2tcF/zY4wAOjGS2TvaJeaAujWr/MrC7TcX8AxTp6lg\n";
    cr_assert_eq(open_with((const unsigned char *)two, strlen(two), NULL, PASS, &out, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "only stanza") != NULL, "%s", e.msg);
    const char *lead0 = "age-encryption.org/v1\n-> scrypt AAAAAAAAAAAAAAAAAAAAAA 010\n"
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
                        "--- p2tcF/zY4wAOjGS2TvaJeaAujWr/MrC7TcX8AxTp6lg\n";
    cr_assert_eq(open_with((const unsigned char *)lead0, strlen(lead0), NULL, PASS, &out, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "scrypt stanza is malformed") != NULL, "%s", e.msg);
    free(g);
    free(f);
    vks_age_identities_free(&ids);
}

Test(age, bech32_and_key_files)
{
    struct vks_age_recipient r;
    struct vks_err e;
    cr_assert_eq(vks_age_recipient_parse(KAT_PUB, strlen(KAT_PUB), "--recipient", &r, &e), VKS_OK);
    char up[sizeof KAT_PUB], bad[sizeof KAT_PUB];
    for (size_t i = 0; i < sizeof KAT_PUB; i++)
        up[i] = (char)(KAT_PUB[i] >= 'a' && KAT_PUB[i] <= 'z' ? KAT_PUB[i] - 32 : KAT_PUB[i]);
    cr_assert_eq(vks_age_recipient_parse(up, strlen(up), "--recipient", &r, &e), VKS_OK); /* one case: fine */
    memcpy(bad, KAT_PUB, sizeof bad);
    bad[10] = bad[10] == 'q' ? 'p' : 'q'; /* checksum */
    cr_assert_eq(vks_age_recipient_parse(bad, strlen(bad), "--recipient", &r, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "--recipient") != NULL);
    memcpy(bad, KAT_PUB, sizeof bad);
    bad[5] = (char)(bad[5] - 32); /* mixed case */
    cr_assert_eq(vks_age_recipient_parse(bad, strlen(bad), "--recipient", &r, &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_age_recipient_parse(KAT_PUB, strlen(KAT_PUB) - 1, "--recipient", &r, &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_age_recipient_parse("ssh-ed25519 AAAA", 16, "--recipient", &r, &e), VKS_E_INVALID_INPUT);
    /* a recipients file: comments, blank lines, CRLF; a bad line is named */
    struct vks_age_recipient rs[4];
    size_t nr = 0;
    char text[512];
    snprintf(text, sizeof text, "# team\n\n%s\r\n  %s  \n", KAT_PUB, KAT_PUB);
    cr_assert_eq(vks_age_recipients_parse(text, strlen(text), "--recipients-file", rs, 4, &nr, &e), VKS_OK, "%s",
                 e.msg);
    cr_assert_eq(nr, 2u);
    nr = 0;
    snprintf(text, sizeof text, "%s\nnot-a-key\n", KAT_PUB);
    cr_assert_eq(vks_age_recipients_parse(text, strlen(text), "--recipients-file", rs, 4, &nr, &e),
                 VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "line 2") != NULL, "%s", e.msg);
    nr = 0;
    cr_assert_eq(vks_age_recipients_parse("# none\n", 7, "--recipients-file", rs, 4, &nr, &e), VKS_E_INVALID_INPUT);
    /* identity files: the key is never echoed in a message */
    struct vks_age_identities ids;
    snprintf(text, sizeof text, "# created: x\n%sQ\n", KAT_ID);
    cr_assert_eq(vks_age_identities_parse((unsigned char *)text, strlen(text), "-i", &ids, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "line 2") != NULL && strstr(e.msg, "M2Q2") == NULL, "%s", e.msg);
    cr_assert_eq(vks_age_identities_parse((unsigned char *)"\n#\n", 3, "-i", &ids, &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_age_identities_parse((unsigned char *)KAT_PUB, strlen(KAT_PUB), "-i", &ids, &e),
                 VKS_E_INVALID_INPUT);
}

static vks_status failing_sink(void *arg, const unsigned char *p, size_t n, struct vks_err *err)
{
    (void)p;
    size_t *left = arg;
    if (n > *left)
        return vks_err_set(err, VKS_E_FILE_ERROR, "no space left on device");
    *left -= n;
    return VKS_OK;
}

Test(age, a_failing_sink_stops_the_writer)
{
    vks_secret k;
    struct vks_age_recipient r;
    struct vks_err e;
    cr_assert_eq(vks_age_keygen(&k, &r, NULL), VKS_OK);
    size_t left = 1000;
    struct vks_age_writer *w = NULL;
    cr_assert_eq(vks_age_writer_new(&r, 1, NULL, 0, failing_sink, &left, &w, &e), VKS_OK);
    unsigned char *p = pattern(200000);
    cr_assert_eq(vks_age_writer_write(w, p, 200000, &e), VKS_E_FILE_ERROR);
    cr_assert_eq(vks_age_writer_write(w, p, 1, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_age_writer_finish(w, &e), VKS_E_INVALID_ARG);
    vks_age_writer_free(w);
    cr_assert_eq(vks_age_writer_new(&r, 0, NULL, 0, failing_sink, &left, &w, &e), VKS_E_INVALID_ARG);
    free(p);
    vks_secret_free(&k);
}
