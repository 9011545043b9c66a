/*
 * vks_envelope: known answers produced outside our code (python3-cryptography's AESGCM, exactly
 * as genro-mail-proxy calls it), round trips, every way an envelope can be wrong, AAD binding, and
 * the wipe of the output slot when the tag does not authenticate.
 *
 * The keys and the password below are listed in tests/test-secrets.d/envelope.txt.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks_base64.h"
#include "vks_envelope.h"
#include "vks_secmem.h"

#define KEY_A "envelope-test-key-A-0123456789ab" /* 32 bytes */
#define KEY_B "envelope-test-key-B-0123456789ab"
#define PASSWORD "relay-pass-ENVELOPE-7c1d"

/* Generated once with /usr/bin/python3 and python3-cryptography 38 (Debian 12):
 *   AESGCM(KEY_A).encrypt(nonce=bytes(range(12)), PASSWORD, None)          -> legacy, as genro does
 *   AESGCM(KEY_B).encrypt(nonce=bytes(range(12)), PASSWORD, aad(k1, place)) -> v2, with the AAD
 *   written in Python from docs/internals/envelope.md (place secret / smtp-auth/example.com / password).
 * The runtime interop test below does the same with fresh random keys and nonces. */
static const char KAT_LEGACY[] =
    "ENC:AAECAwQFBgcICQoLcr/v8EsirRPLHG/ROGP4ODa4MrAUr1ZlgGDMsSjPWYeMKvByGxyzeQ==";
static const char KAT_V2[] =
    "ENC:v2:k1:AAECAwQFBgcICQoL9bmkEuLBUzNZhSngpdJePpIGpURMEoFPIOGQfLhuWu6Q11LlcjVjdw==";

static const struct vks_envelope_place PLACE = { "secret", "smtp-auth/example.com", "password" };

static struct vks_keyring *ring(const char *id1, const char *k1, const char *id2, const char *k2)
{
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    cr_assert_eq(vks_keyring_new(&kr, &e), VKS_OK);
    if (id1)
        cr_assert_eq(vks_keyring_add(kr, id1, (const unsigned char *)k1, &e), VKS_OK, "%s", e.msg);
    if (id2)
        cr_assert_eq(vks_keyring_add(kr, id2, (const unsigned char *)k2, &e), VKS_OK, "%s", e.msg);
    return kr;
}

static vks_status dec(const struct vks_keyring *kr, const char *v,
                      const struct vks_envelope_place *pl, vks_secret *out,
                      struct vks_envelope_info *info, struct vks_err *e)
{
    return vks_envelope_decrypt(kr, (const unsigned char *)v, strlen(v), pl, out, info, e);
}

static void assert_plain(const vks_secret *s, const void *p, size_t n)
{
    cr_assert_eq(s->len, n);
    cr_assert(n == 0 || memcmp(s->data, p, n) == 0, "plaintext differs");
}

/* No message may carry key or plaintext bytes. */
static void assert_clean(const struct vks_err *e)
{
    cr_assert(strstr(e->msg, PASSWORD) == NULL);
    cr_assert(strstr(e->msg, KEY_A) == NULL && strstr(e->msg, KEY_B) == NULL);
    cr_assert(strstr(e->msg, "AAECAwQFBgcICQoL") == NULL, "message echoes envelope bytes: %s", e->msg);
}

static void expect_fail(const struct vks_keyring *kr, const char *v,
                        const struct vks_envelope_place *pl, const char *needle)
{
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_err e;
    vks_status st = dec(kr, v, pl, &out, NULL, &e);
    cr_assert_eq(st, VKS_E_DECRYPT_FAILED, "expected decrypt_failed, got %s (%s)", vks_status_code(st),
                 e.msg);
    cr_assert_eq(out.data, NULL, "no slot is handed out on failure");
    cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    assert_clean(&e);
}

Test(envelope, legacy_known_answer_from_python_cryptography)
{
    struct vks_keyring *kr = ring("default", KEY_A, NULL, NULL);
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    struct vks_err e;
    cr_assert_eq(dec(kr, KAT_LEGACY, &PLACE, &out, &info, &e), VKS_OK, "%s", e.msg);
    assert_plain(&out, PASSWORD, strlen(PASSWORD));
    cr_assert_eq(info.format, 1);
    cr_assert_str_eq(info.key_id, "");
    vks_secret_free(&out);
    /* legacy has no AAD: any place (and none) decrypts it */
    cr_assert_eq(dec(kr, KAT_LEGACY, NULL, &out, NULL, &e), VKS_OK, "%s", e.msg);
    assert_plain(&out, PASSWORD, strlen(PASSWORD));
    vks_secret_free(&out);
    vks_keyring_free(kr);
}

Test(envelope, v2_known_answer_with_aad_written_independently)
{
    struct vks_keyring *kr = ring("k1", KEY_B, NULL, NULL);
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    struct vks_err e;
    cr_assert_eq(dec(kr, KAT_V2, &PLACE, &out, &info, &e), VKS_OK, "%s", e.msg);
    assert_plain(&out, PASSWORD, strlen(PASSWORD));
    cr_assert_eq(info.format, 2);
    cr_assert_str_eq(info.key_id, "k1");
    vks_secret_free(&out);
    /* mount and path are bound without leading/trailing '/' */
    struct vks_envelope_place slashed = { "/secret/", "/smtp-auth/example.com/", "password" };
    cr_assert_eq(dec(kr, KAT_V2, &slashed, &out, NULL, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&out);
    /* a trailing newline (echo, files) is tolerated */
    char nl[sizeof KAT_V2 + 2];
    snprintf(nl, sizeof nl, "%s\n", KAT_V2);
    cr_assert_eq(dec(kr, nl, &PLACE, &out, NULL, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&out);
    vks_keyring_free(kr);
}

Test(envelope, v2_value_copied_to_another_place_does_not_authenticate)
{
    struct vks_keyring *kr = ring("k1", KEY_B, NULL, NULL);
    const struct vks_envelope_place other[] = {
        { "secret", "smtp-auth/example.org", "password" },  /* other path  */
        { "kv", "smtp-auth/example.com", "password" },      /* other mount */
        { "secret", "smtp-auth/example.com", "username" },  /* other key   */
        { "secret/smtp-auth", "example.com", "password" },  /* same bytes, other split */
        { "secretsmtp-auth/example.com", "", "password" },
        { NULL, NULL, NULL },
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        expect_fail(kr, KAT_V2, &other[i], "did not authenticate with key id 'k1'");
    expect_fail(kr, KAT_V2, NULL, "copied from another mount/path/key");
    vks_keyring_free(kr);
}

Test(envelope, round_trips_both_formats_at_many_lengths)
{
    struct vks_keyring *kr = ring("k1", KEY_A, "k2", KEY_B);
    static unsigned char plain[VKS_SECRET_MAX];
    for (size_t i = 0; i < sizeof plain; i++)
        plain[i] = (unsigned char)(i * 7 + 3);
    size_t lens[] = { 0, 1, 15, 16, 17, 31, 32, 33, 255, 1000, 0 /* the longest, per format */ };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (int fmt = 0; fmt < 3; fmt++) {
            const char *id = fmt == 0 ? NULL : fmt == 1 ? "k1" : "k2";
            if (li == sizeof lens / sizeof lens[0] - 1)
                lens[li] = vks_envelope_plaintext_max(id);
            char *env = NULL;
            struct vks_err e;
            cr_assert_eq(vks_envelope_encrypt(kr, id, &PLACE, plain, lens[li], &env, &e), VKS_OK,
                         "%s", e.msg);
            cr_assert(vks_envelope_is_encrypted((unsigned char *)env, strlen(env)));
            cr_assert(strlen(env) <= VKS_ENVELOPE_WRITE_MAX);
            if (id) {
                char head[16];
                snprintf(head, sizeof head, "ENC:v2:%s:", id);
                cr_assert(strncmp(env, head, strlen(head)) == 0, "%.12s", env);
            } else {
                cr_assert(strchr(env + 4, ':') == NULL, "legacy form carries no ':'");
            }
            vks_secret out = VKS_SECRET_EMPTY;
            struct vks_envelope_info info;
            cr_assert_eq(dec(kr, env, &PLACE, &out, &info, &e), VKS_OK, "len %zu: %s", lens[li], e.msg);
            assert_plain(&out, plain, lens[li]);
            cr_assert_eq(info.format, id ? 2 : 1);
            cr_assert_str_eq(info.key_id, id ? id : "");
            vks_secret_free(&out);
            free(env);
        }
    }
    vks_keyring_free(kr);
}

Test(envelope, fresh_nonce_each_time)
{
    struct vks_keyring *kr = ring("k1", KEY_A, NULL, NULL);
    char *a = NULL, *b = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)PASSWORD,
                                      strlen(PASSWORD), &a, &e), VKS_OK);
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)PASSWORD,
                                      strlen(PASSWORD), &b, &e), VKS_OK);
    cr_assert_str_neq(a, b);
    free(a);
    free(b);
    vks_keyring_free(kr);
}

Test(envelope, wrong_key)
{
    struct vks_keyring *kb = ring("default", KEY_B, NULL, NULL);
    expect_fail(kb, KAT_LEGACY, &PLACE,
                "legacy envelope did not authenticate with any of the 1 configured keys (default)");
    vks_keyring_free(kb);
    /* v2 names its key: the same id holding other bytes fails */
    struct vks_keyring *ka = ring("k1", KEY_A, NULL, NULL);
    expect_fail(ka, KAT_V2, &PLACE, "did not authenticate with key id 'k1'");
    vks_keyring_free(ka);
}

/* Decodes the base64 after `skip` characters, lets f modify the bytes, re-encodes. */
static char *mutate(const char *env, size_t skip, void (*f)(unsigned char *raw, size_t *n))
{
    unsigned char raw[8192];
    size_t n = 0;
    cr_assert_eq(vks_b64_decode(env + skip, strlen(env + skip), raw, sizeof raw, &n, NULL), VKS_B64_OK);
    f(raw, &n);
    char *s = malloc(skip + VKS_B64_ENCODED_LEN(n) + 1);
    memcpy(s, env, skip);
    vks_b64_encode(raw, n, s + skip);
    return s;
}

static void flip_nonce(unsigned char *r, size_t *n) { (void)n; r[3] ^= 0x01; }
static void flip_ct(unsigned char *r, size_t *n) { (void)n; r[12 + 5] ^= 0x80; }
static void flip_tag(unsigned char *r, size_t *n) { r[*n - 1] ^= 0x01; }
static void drop_last(unsigned char *r, size_t *n) { (void)r; (*n)--; }
static void to_27(unsigned char *r, size_t *n) { (void)r; *n = 27; }
static void to_28(unsigned char *r, size_t *n) { (void)r; *n = 28; }

Test(envelope, tampered_nonce_ciphertext_tag_and_truncation)
{
    struct vks_keyring *kr = ring("default", KEY_A, "k1", KEY_B);
    void (*fs[])(unsigned char *, size_t *) = { flip_nonce, flip_ct, flip_tag, drop_last, to_28 };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        char *l = mutate(KAT_LEGACY, 4, fs[i]);
        expect_fail(kr, l, &PLACE, "did not authenticate with any of the 2 configured keys");
        free(l);
        char *v = mutate(KAT_V2, 10, fs[i]);
        expect_fail(kr, v, &PLACE, "did not authenticate with key id 'k1'");
        free(v);
    }
    char *s = mutate(KAT_LEGACY, 4, to_27);
    expect_fail(kr, s, &PLACE, "malformed envelope: too short (27 bytes, need at least 28");
    free(s);
    vks_keyring_free(kr);
}

Test(envelope, tampered_key_id)
{
    /* k2 holds the very same key bytes as k1: only the AAD binding of the id makes it fail */
    struct vks_keyring *kr = ring("k1", KEY_B, "k2", KEY_B);
    char v[sizeof KAT_V2];
    memcpy(v, KAT_V2, sizeof v);
    v[8] = '2';
    expect_fail(kr, v, &PLACE, "did not authenticate with key id 'k2'");
    v[8] = '9';
    expect_fail(kr, v, &PLACE, "unknown key id 'k9' (keyring has: k1, k2)");
    vks_keyring_free(kr);
}

Test(envelope, malformed_envelopes_are_named_as_such)
{
    struct vks_keyring *kr = ring("k1", KEY_A, NULL, NULL);
    expect_fail(kr, "ENC:", &PLACE, "malformed envelope: empty");
    expect_fail(kr, "ENC:\n", &PLACE, "malformed envelope: empty");
    expect_fail(kr, "ENC:v2:k1:", &PLACE, "malformed envelope: empty");
    expect_fail(kr, "ENC:v2:k1", &PLACE, "v2 needs ENC:v2:<key id>:<base64>");
    expect_fail(kr, "ENC:v2::AAAA", &PLACE, "invalid key id");
    expect_fail(kr, "ENC:v2:bad/id:AAAA", &PLACE, "invalid key id");
    expect_fail(kr, "ENC:v3:k1:AAAA", &PLACE, "unsupported version 'v3'");
    expect_fail(kr, "ENC:x:y", &PLACE, "malformed envelope: expected ENC:v2:");
    expect_fail(kr, "ENC:AAECAwQFBgcICQoL*r/v", &PLACE, "bad base64 (character outside the base64 alphabet at offset 20)");
    expect_fail(kr, "ENC:AAECAwQFBgcICQoLc", &PLACE, "bad base64 (length is not a multiple of 4");
    expect_fail(kr, "ENC:AAEC AwQF", &PLACE, "bad base64");
    expect_fail(kr, "ENC:AAECAwQF", &PLACE, "too short (6 bytes");
    /* an embedded NUL is a bad character, not the end of the value */
    const unsigned char nul[] = "ENC:AAEC\0wQFBgcICQoLcr/v8EsirRPLHG/ROGP4ODa4";
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_err e;
    cr_assert_eq(vks_envelope_decrypt(kr, nul, sizeof nul - 1, &PLACE, &out, NULL, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "bad base64") != NULL, "%s", e.msg);
    vks_keyring_free(kr);
}

Test(envelope, oversized_values_are_refused)
{
    struct vks_keyring *kr = ring("k1", KEY_A, NULL, NULL);
    static unsigned char big[VKS_SECRET_MAX + 1];
    char *env = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, big, sizeof big, &env, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(env, NULL);
    /* a well-formed envelope whose plaintext would exceed the largest secret */
    static unsigned char raw[12 + VKS_SECRET_MAX + 1 + 16];
    static char s[4 + VKS_B64_ENCODED_LEN(sizeof raw) + 1];
    memcpy(s, "ENC:", 4);
    vks_b64_encode(raw, sizeof raw, s + 4);
    expect_fail(kr, s, &PLACE, "malformed envelope: oversized (");
    /* and a value longer than any envelope */
    static char huge[VKS_ENVELOPE_MAX + 2];
    memset(huge, 'A', sizeof huge - 1);
    memcpy(huge, "ENC:", 4);
    expect_fail(kr, huge, &PLACE, "malformed envelope: oversized (4097 bytes, at most 4096)");
    vks_keyring_free(kr);
}

/* One set of limits (docs/internals/envelope.md, "Size limits"): the longest plaintext gives an
 * envelope that fits every keysource form with a newline; one byte more is refused at encrypt
 * time, naming the limit; decrypt takes whatever a keysource can deliver (4096 bytes). */
Test(envelope, encrypt_refuses_a_plaintext_whose_envelope_would_not_fit)
{
    static const char id63[] = "k-63-bytes-id-0123456789012345678901234567890123456789012345678";
    cr_assert_eq(strlen(id63), 63);
    struct vks_keyring *kr = ring("default", KEY_A, id63, KEY_B);
    cr_assert_eq(vks_envelope_plaintext_max(NULL), 3038);
    cr_assert_eq(vks_envelope_plaintext_max("default"), 3032);
    cr_assert_eq(vks_envelope_plaintext_max(id63), VKS_PLAINTEXT_MAX_ANY_ID);
    static unsigned char plain[VKS_SECRET_MAX];
    memset(plain, 'p', sizeof plain);
    const char *ids[] = { NULL, "default", id63 };
    for (size_t i = 0; i < 3; i++) {
        size_t max = vks_envelope_plaintext_max(ids[i]);
        char *env = NULL;
        struct vks_err e;
        cr_assert_eq(vks_envelope_encrypt(kr, ids[i], &PLACE, plain, max, &env, &e), VKS_OK, "%s", e.msg);
        cr_assert(strlen(env) <= VKS_ENVELOPE_WRITE_MAX && strlen(env) + 4 > VKS_ENVELOPE_WRITE_MAX,
                  "max %zu: %zu bytes", max, strlen(env));
        vks_secret out = VKS_SECRET_EMPTY;
        cr_assert_eq(dec(kr, env, &PLACE, &out, NULL, &e), VKS_OK, "%s", e.msg);
        cr_assert_eq(out.len, max);
        vks_secret_free(&out);
        free(env);
        env = NULL;
        cr_assert_eq(vks_envelope_encrypt(kr, ids[i], &PLACE, plain, max + 1, &env, &e), VKS_E_INVALID_ARG);
        cr_assert_null(env);
        char want[64];
        snprintf(want, sizeof want, "at most %zu bytes", max);
        cr_assert(strstr(e.msg, want) && strstr(e.msg, "4095"), "%s", e.msg);
    }
    /* rekey of the longest legacy value to a longer v2 header is refused the same way */
    char *leg = NULL, *out = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, NULL, &PLACE, plain, 3038, &leg, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_envelope_rekey(kr, (unsigned char *)leg, strlen(leg), &PLACE, "default", &out, NULL, &e),
                 VKS_E_INVALID_ARG, "%s", e.msg);
    cr_assert_null(out);
    free(leg);
    vks_keyring_free(kr);
}

Test(envelope, empty_keyring_names_the_missing_key)
{
    struct vks_keyring *kr = ring(NULL, NULL, NULL, NULL);
    expect_fail(kr, KAT_LEGACY, &PLACE, "no encryption key configured");
    expect_fail(NULL, KAT_V2, &PLACE, "no encryption key configured");
    char *env = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, NULL, &PLACE, (const unsigned char *)"x", 1, &env, &e),
                 VKS_E_CONFIG);
    vks_keyring_free(kr);
}

Test(envelope, messages_name_the_place)
{
    struct vks_keyring *kr = ring("k1", KEY_A, NULL, NULL);
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_err e;
    cr_assert_eq(dec(kr, KAT_V2, &PLACE, &out, NULL, &e), VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "mount 'secret' path 'smtp-auth/example.com' key 'password'") != NULL,
              "%s", e.msg);
    cr_assert_eq(dec(kr, "plain-value", &PLACE, &out, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert(strstr(e.msg, "not an ENC: envelope") != NULL);
    vks_keyring_free(kr);
}

Test(envelope, is_encrypted_by_prefix_only)
{
    cr_assert(vks_envelope_is_encrypted((const unsigned char *)"ENC:", 4));
    cr_assert(vks_envelope_is_encrypted((const unsigned char *)"ENC:v2:x:y", 10));
    cr_assert(!vks_envelope_is_encrypted((const unsigned char *)"ENC", 3));
    cr_assert(!vks_envelope_is_encrypted((const unsigned char *)"enc:abcd", 8));
    cr_assert(!vks_envelope_is_encrypted((const unsigned char *)" ENC:abcd", 9));
    cr_assert(!vks_envelope_is_encrypted((const unsigned char *)PASSWORD, strlen(PASSWORD)));
    cr_assert(!vks_envelope_is_encrypted(NULL, 0));
}

static bool all_zero(const unsigned char *p, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

Test(envelope, failed_tag_wipes_the_output_slot)
{
    struct vks_keyring *kr = ring("default", KEY_A, "k1", KEY_A);
    struct vks_err e;
    vks_secret slot = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_alloc(256, &slot, &e), VKS_OK);
    unsigned char *kept = slot.data;
    size_t cap = slot.cap;

    /* Tag flipped: GCM writes the (correct!) plaintext before the tag check fails. */
    char *l = mutate(KAT_LEGACY, 4, flip_tag);
    memset(slot.data, 0xAA, slot.cap);
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)l, strlen(l), &PLACE, &slot, NULL, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert_eq(slot.data, kept, "slot still owned by the caller");
    cr_assert_eq(slot.len, 0);
    cr_assert(all_zero(kept, cap), "slot not wiped after a failed legacy tag");
    free(l);

    /* v2 under the right key bytes but another place: also written, also wiped. */
    char *v2 = NULL;
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)PASSWORD,
                                      strlen(PASSWORD), &v2, &e), VKS_OK);
    struct vks_envelope_place other = { "secret", "smtp-auth/other.example", "password" };
    memset(slot.data, 0xAA, slot.cap);
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)v2, strlen(v2), &other, &slot, NULL, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert(all_zero(kept, cap), "slot not wiped after a failed v2 tag");

    /* malformed input wipes too (the caller must never see stale bytes) */
    memset(slot.data, 0xAA, slot.cap);
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)"ENC:*", 5, &PLACE, &slot, NULL, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert(all_zero(kept, cap));

    /* and success fills exactly len bytes */
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)v2, strlen(v2), &PLACE, &slot, NULL, &e),
                 VKS_OK, "%s", e.msg);
    assert_plain(&slot, PASSWORD, strlen(PASSWORD));
    free(v2);

    /* a slot too small is misuse, reported before anything is written */
    vks_secret tiny = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_alloc(4, &tiny, &e), VKS_OK);
    cr_assert_eq(vks_envelope_decrypt_into(kr, (const unsigned char *)KAT_LEGACY, strlen(KAT_LEGACY),
                                           &PLACE, &tiny, NULL, &e), VKS_E_INVALID_ARG);
    vks_secret_free(&tiny);
    vks_secret_free(&slot);
    vks_keyring_free(kr);
}

/* ---- interoperability with an independent implementation, at run time ---- */

/* Python side: reads the key and plaintext from the environment, never prints them. Modes:
 *   enc-legacy / enc-v2  -> prints an envelope
 *   dec-legacy / dec-v2 ENVELOPE -> prints "match" when it decrypts to VKS_T_PLAIN */
static const char PY[] =
    "import base64,os,struct,sys\n"
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
    "key=base64.b64decode(os.environ['VKS_T_KEY']); pt=os.environ['VKS_T_PLAIN'].encode()\n"
    "m,p,k=(os.environ['VKS_T_'+x].encode() for x in ('MOUNT','PATH','KEYNAME'))\n"
    "def aad(kid):\n"
    "    f=lambda b: struct.pack('>I',len(b))+b\n"
    "    return b'vks-envelope\\x00\\x02'+f(kid)+f(m.strip(b'/'))+f(p.strip(b'/'))+f(k)\n"
    "mode=sys.argv[1]\n"
    "if mode.startswith('enc'):\n"
    "    n=os.urandom(12)\n"
    "    if mode=='enc-legacy': print('ENC:'+base64.b64encode(n+AESGCM(key).encrypt(n,pt,None)).decode())\n"
    "    else: print('ENC:v2:py-1:'+base64.b64encode(n+AESGCM(key).encrypt(n,pt,aad(b'py-1'))).decode())\n"
    "else:\n"
    "    e=sys.argv[2]\n"
    "    if mode=='dec-legacy': raw=base64.b64decode(e[4:],validate=True); a=None\n"
    "    else: kid,b=e[7:].split(':',1); raw=base64.b64decode(b,validate=True); a=aad(kid.encode())\n"
    "    print('match' if AESGCM(key).decrypt(raw[:12],raw[12:],a)==pt else 'differ')\n";

static char *python(const char *mode, const char *arg)
{
    char script[600];
    const char *w = getenv("VKS_SUITE_WORK");
    snprintf(script, sizeof script, "%s/vks-envelope-py-XXXXXX", w ? w : "/tmp");
    int fd = mkstemp(script);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(PY, f);
    fclose(f);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s '%s'", script, mode, arg ? arg : "");
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL);
    static char line[9000];
    line[0] = '\0';
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    int rc = pclose(p);
    unlink(script);
    cr_assert_eq(rc, 0, "python3 (with python3-cryptography) failed for %s", mode);
    line[strcspn(line, "\n")] = '\0';
    return line;
}

Test(envelope, interoperates_with_python_cryptography_both_ways)
{
    /* a fresh random key for this run, shared with Python through the environment */
    unsigned char key[32];
    FILE *r = fopen("/dev/urandom", "rb");
    cr_assert(r && fread(key, 1, 32, r) == 32);
    fclose(r);
    char kb64[64];
    vks_b64_encode(key, 32, kb64);
    setenv("VKS_T_KEY", kb64, 1);
    setenv("VKS_T_PLAIN", PASSWORD, 1);
    setenv("VKS_T_MOUNT", "/secret/", 1);
    setenv("VKS_T_PATH", "smtp-auth/example.net", 1);
    setenv("VKS_T_KEYNAME", "password", 1);
    const struct vks_envelope_place pl = { "secret", "/smtp-auth/example.net", "password" };

    struct vks_keyring *kr = NULL;
    struct vks_err e;
    cr_assert_eq(vks_keyring_new(&kr, &e), VKS_OK);
    cr_assert_eq(vks_keyring_add(kr, "py-1", key, &e), VKS_OK);

    /* Python encrypts, we decrypt */
    const char *modes[] = { "enc-legacy", "enc-v2" };
    for (int i = 0; i < 2; i++) {
        char *env = python(modes[i], NULL);
        vks_secret out = VKS_SECRET_EMPTY;
        struct vks_envelope_info info;
        cr_assert_eq(dec(kr, env, &pl, &out, &info, &e), VKS_OK, "%s: %s", modes[i], e.msg);
        assert_plain(&out, PASSWORD, strlen(PASSWORD));
        cr_assert_eq(info.format, i + 1);
        vks_secret_free(&out);
    }
    /* we encrypt, Python decrypts */
    for (int i = 0; i < 2; i++) {
        char *env = NULL;
        cr_assert_eq(vks_envelope_encrypt(kr, i ? "py-1" : NULL, &pl, (const unsigned char *)PASSWORD,
                                          strlen(PASSWORD), &env, &e), VKS_OK);
        cr_assert_str_eq(python(i ? "dec-v2" : "dec-legacy", env), "match");
        free(env);
    }
    vks_wipe(key, sizeof key);
    vks_keyring_free(kr);
}

/* ---- one keyring shared by many threads (the header's promise; also run under TSan) ---- */

struct worker {
    const struct vks_keyring *kr;
    const char *v2, *legacy;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 500; i++) {
        const char *env = (i & 1) ? w->v2 : w->legacy;
        vks_secret out = VKS_SECRET_EMPTY;
        struct vks_err e;
        if (dec(w->kr, env, &PLACE, &out, NULL, &e) != VKS_OK || out.len != strlen(PASSWORD) ||
            memcmp(out.data, PASSWORD, out.len) != 0)
            w->failures++;
        vks_secret_free(&out);
        struct vks_envelope_place other = { "secret", "smtp-auth/other", "password" };
        if (dec(w->kr, w->v2, &other, &out, NULL, &e) != VKS_E_DECRYPT_FAILED)
            w->failures++;
        char *s = NULL;
        if (vks_envelope_encrypt(w->kr, "k2", &PLACE, (const unsigned char *)PASSWORD,
                                 strlen(PASSWORD), &s, &e) != VKS_OK)
            w->failures++;
        free(s);
    }
    return NULL;
}

Test(envelope, one_keyring_shared_by_many_threads)
{
    struct vks_keyring *kr = ring("default", KEY_A, "k2", KEY_B);
    char *v2 = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, "k2", &PLACE, (const unsigned char *)PASSWORD,
                                      strlen(PASSWORD), &v2, &e), VKS_OK);
    enum { N = 8 };
    pthread_t t[N];
    struct worker w[N];
    /* the first decrypt of the process happens in the threads, racing for the cipher fetch */
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){ kr, v2, KAT_LEGACY, 0 };
        cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
    }
    cr_assert_eq(failures, 0, "%d wrong results across threads", failures);
    free(v2);
    vks_keyring_free(kr);
}

/* ---- rotation helpers ---- */

Test(envelope, inspect_reads_the_form_without_a_key)
{
    struct vks_envelope_info info;
    struct vks_err e;
    cr_assert_eq(vks_envelope_inspect((const unsigned char *)KAT_V2, strlen(KAT_V2), &info, &e), VKS_OK);
    cr_assert_eq(info.format, 2);
    cr_assert_str_eq(info.key_id, "k1");
    cr_assert_eq(vks_envelope_inspect((const unsigned char *)KAT_LEGACY, strlen(KAT_LEGACY), &info, &e), VKS_OK);
    cr_assert_eq(info.format, 1);
    cr_assert_str_eq(info.key_id, "");
    cr_assert_eq(vks_envelope_inspect((const unsigned char *)"ENC:v2:k1:AA", 12, &info, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "malformed envelope") != NULL, "%s", e.msg);
    cr_assert_eq(vks_envelope_inspect((const unsigned char *)PASSWORD, strlen(PASSWORD), &info, &e),
                 VKS_E_NOT_ENCRYPTED);
}

Test(envelope, rekey_moves_values_to_the_new_key_bound_to_their_place)
{
    struct vks_keyring *kr = ring("k2", KEY_B, "k1", KEY_A);
    struct vks_err e;
    char *out = NULL;
    bool changed = false;
    /* legacy (genro) -> v2 under the primary k2, now bound to PLACE */
    cr_assert_eq(vks_envelope_rekey(kr, (const unsigned char *)KAT_LEGACY, strlen(KAT_LEGACY), &PLACE,
                                    NULL, &out, &changed, &e), VKS_OK, "%s", e.msg);
    cr_assert(changed);
    cr_assert(strncmp(out, "ENC:v2:k2:", 10) == 0, "%.12s", out);
    vks_secret pt = VKS_SECRET_EMPTY;
    cr_assert_eq(dec(kr, out, &PLACE, &pt, NULL, &e), VKS_OK, "%s", e.msg);
    assert_plain(&pt, PASSWORD, strlen(PASSWORD));
    vks_secret_free(&pt);
    struct vks_envelope_place other = { "secret", "smtp-auth/example.org", "password" };
    expect_fail(kr, out, &other, "did not authenticate with key id 'k2'");

    /* already under k2: unchanged, same text */
    char *again = NULL;
    cr_assert_eq(vks_envelope_rekey(kr, (const unsigned char *)out, strlen(out), &PLACE, "k2", &again,
                                    &changed, &e), VKS_OK);
    cr_assert(!changed);
    cr_assert_str_eq(again, out);
    free(again);

    /* v2 k1 -> k2 */
    struct vks_keyring *k1only = ring("k1", KEY_B, NULL, NULL);
    cr_assert_eq(vks_envelope_rekey(k1only, (const unsigned char *)KAT_V2, strlen(KAT_V2), &PLACE, "k1",
                                    &again, &changed, &e), VKS_OK);
    cr_assert(!changed);
    free(again);
    vks_keyring_free(k1only);

    /* failures keep their codes and produce nothing */
    char *none = NULL;
    cr_assert_eq(vks_envelope_rekey(kr, (const unsigned char *)out, strlen(out), &other, "k1", &none,
                                    &changed, &e), VKS_E_DECRYPT_FAILED);
    cr_assert_eq(none, NULL);
    cr_assert_eq(vks_envelope_rekey(kr, (const unsigned char *)PASSWORD, strlen(PASSWORD), &PLACE, NULL,
                                    &none, &changed, &e), VKS_E_NOT_ENCRYPTED);
    cr_assert_eq(vks_envelope_rekey(kr, (const unsigned char *)out, strlen(out), &PLACE, "k9", &none,
                                    &changed, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "unknown key id 'k9'") != NULL, "%s", e.msg);
    cr_assert_eq(none, NULL);
    free(out);
    vks_keyring_free(kr);
}

Test(envelope, empty_plaintext_into_an_empty_slot)
{
    struct vks_keyring *kr = ring("k1", KEY_A, NULL, NULL);
    char *env = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, NULL, 0, &env, &e), VKS_OK, "%s", e.msg);
    vks_secret none = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)env, strlen(env), &PLACE, &none, NULL, &e),
                 VKS_OK, "%s", e.msg);
    cr_assert_eq(none.len, 0);
    /* but a non-empty plaintext needs room */
    char *full = NULL;
    cr_assert_eq(vks_envelope_encrypt(kr, "k1", &PLACE, (const unsigned char *)"x", 1, &full, &e), VKS_OK);
    cr_assert_eq(vks_envelope_decrypt_into(kr, (unsigned char *)full, strlen(full), &PLACE, &none, NULL, &e),
                 VKS_E_INVALID_ARG);
    free(env);
    free(full);
    vks_keyring_free(kr);
}

/* The GCM specification's own vectors (McGrew & Viega, "The Galois/Counter Mode of Operation",
 * test cases 13 and 14: AES-256, all-zero key and 96-bit IV, no AAD), wrapped as legacy envelopes
 * here in C from the published hex, so this answer does not come from any OpenSSL-based tool. */
static void unhex(const char *h, unsigned char *out)
{
    for (size_t i = 0; h[2 * i]; i++) {
        unsigned v = 0;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
}

Test(envelope, gcm_specification_test_cases_13_and_14)
{
    static const unsigned char zero_key[32];
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    cr_assert_eq(vks_keyring_new(&kr, &e), VKS_OK);
    cr_assert_eq(vks_keyring_add(kr, "zero", zero_key, &e), VKS_OK);
    struct { const char *ct_tag; size_t ptlen; } tc[] = {
        { "530f8afbc74536b9a963b4f1c4cb738b", 0 },                                   /* TC 13 */
        { "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919", 16 },  /* TC 14 */
    };
    for (size_t i = 0; i < 2; i++) {
        unsigned char raw[12 + 32] = { 0 }; /* IV = 0^96 */
        unhex(tc[i].ct_tag, raw + 12);
        size_t rawlen = 12 + strlen(tc[i].ct_tag) / 2;
        char env[4 + VKS_B64_ENCODED_LEN(sizeof raw) + 1] = "ENC:";
        vks_b64_encode(raw, rawlen, env + 4);
        vks_secret out = VKS_SECRET_EMPTY;
        cr_assert_eq(dec(kr, env, NULL, &out, NULL, &e), VKS_OK, "test case %zu: %s", 13 + i, e.msg);
        cr_assert_eq(out.len, tc[i].ptlen);
        for (size_t j = 0; j < out.len; j++)
            cr_assert_eq(out.data[j], 0, "P = 0^128");
        vks_secret_free(&out);
        /* one flipped bit of the published tag no longer authenticates */
        raw[rawlen - 1] ^= 1;
        vks_b64_encode(raw, rawlen, env + 4);
        cr_assert_eq(dec(kr, env, NULL, &out, NULL, &e), VKS_E_DECRYPT_FAILED);
    }
    vks_keyring_free(kr);
}
