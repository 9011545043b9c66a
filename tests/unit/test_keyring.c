/*
 * The keyring's sources, with a fake environment and real files (modes, sizes, genro's
 * /run/secrets/encryption_key stand-in), rotation with two keys, and clean error messages.
 *
 * The keys are listed in tests/test-secrets.d/envelope.txt.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_envelope.h"

#define KEY_A "envelope-test-key-A-0123456789ab"
#define KEY_B "envelope-test-key-B-0123456789ab"
#define KEY_C "envelope-test-key-C-0123456789ab"
#define B64_A "ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIzNDU2Nzg5YWI="
#define B64_B "ZW52ZWxvcGUtdGVzdC1rZXktQi0wMTIzNDU2Nzg5YWI="
#define B64_C "ZW52ZWxvcGUtdGVzdC1rZXktQy0wMTIzNDU2Nzg5YWI="
#define PASSWORD "relay-pass-ENVELOPE-7c1d"
/* genro-mail-proxy legacy value under KEY_A (python3-cryptography, see test_envelope.c) */
#define KAT_LEGACY "ENC:AAECAwQFBgcICQoLcr/v8EsirRPLHG/ROGP4ODa4MrAUr1ZlgGDMsSjPWYeMKvByGxyzeQ=="

static const struct vks_envelope_place PLACE = { "secret", "smtp-auth/example.com", "password" };

/* ---- a fake environment ---- */

struct fenv {
    const char *kv[16];
};

static const char *fget(const char *name, void *ctx)
{
    struct fenv *f = ctx;
    for (size_t i = 0; i + 1 < 16 && f->kv[i]; i += 2)
        if (strcmp(f->kv[i], name) == 0)
            return f->kv[i + 1];
    return NULL;
}

/* ---- scratch files under the suite's work directory ---- */

static char dir[512];

static void mkdir_work(void)
{
    const char *w = getenv("VKS_SUITE_WORK");
    snprintf(dir, sizeof dir, "%s/keyring-XXXXXX", w ? w : "/tmp");
    cr_assert(mkdtemp(dir) != NULL);
}

static void rm_work(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(keyring, .init = mkdir_work, .fini = rm_work);

static const char *file(const char *name, const void *data, size_t n, mode_t mode)
{
    static char paths[8][600];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
    cr_assert_eq(chmod(p, mode), 0);
    return p;
}

static const char *sfile(const char *name, const char *text, mode_t mode)
{
    return file(name, text, strlen(text), mode);
}

static const char *nofile(void)
{
    static char p[600];
    snprintf(p, sizeof p, "%s/no-such-compat-file", dir);
    return p;
}

static struct vks_keyring *load_ok(struct fenv *f, const char *compat)
{
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    cr_assert_eq(vks_keyring_load(&kr, fget, f, compat ? compat : nofile(), &e), VKS_OK, "%s", e.msg);
    return kr;
}

static void assert_clean(const char *msg)
{
    const char *bad[] = { KEY_A, KEY_B, KEY_C, B64_A, B64_B, B64_C, "ZW52ZWxvcGUt", "envelope-test" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(strstr(msg, bad[i]) == NULL, "message carries key material: %s", msg);
}

static void load_fails(struct fenv *f, const char *compat, const char *needle)
{
    struct vks_keyring *kr = (struct vks_keyring *)1;
    struct vks_err e;
    vks_status st = vks_keyring_load(&kr, fget, f, compat ? compat : nofile(), &e);
    cr_assert_eq(st, VKS_E_CONFIG, "expected config error, got %s (%s)", vks_status_code(st), e.msg);
    cr_assert_eq(kr, NULL);
    cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    assert_clean(e.msg);
}

static bool decrypts(const struct vks_keyring *kr, const char *env, const char *expect)
{
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_err e;
    if (vks_envelope_decrypt(kr, (const unsigned char *)env, strlen(env), &PLACE, &out, NULL, &e) != VKS_OK)
        return false;
    bool ok = out.len == strlen(expect) && memcmp(out.data, expect, out.len) == 0;
    vks_secret_free(&out);
    return ok;
}

static char *enc(const struct vks_keyring *kr, const char *id)
{
    char *s = NULL;
    struct vks_err e;
    cr_assert_eq(vks_envelope_encrypt(kr, id, &PLACE, (const unsigned char *)PASSWORD,
                                      strlen(PASSWORD), &s, &e), VKS_OK, "%s", e.msg);
    return s;
}

Test(keyring, empty_environment_gives_an_empty_keyring)
{
    struct fenv f = { { NULL } };
    struct vks_keyring *kr = load_ok(&f, NULL);
    cr_assert_eq(vks_keyring_count(kr), 0);
    cr_assert_eq(vks_keyring_primary_id(kr), NULL);
    vks_keyring_free(kr);
    /* empty values count as unset, as in genro */
    struct fenv g = { { "VKS_ENCRYPTION_KEY", "", "MAIL_PROXY_ENCRYPTION_KEY", "" } };
    kr = load_ok(&g, NULL);
    cr_assert_eq(vks_keyring_count(kr), 0);
    vks_keyring_free(kr);
}

Test(keyring, base64_key_is_id_default)
{
    struct fenv f = { { "VKS_ENCRYPTION_KEY", " " B64_A "\n" } };
    struct vks_keyring *kr = load_ok(&f, NULL);
    cr_assert_eq(vks_keyring_count(kr), 1);
    cr_assert_str_eq(vks_keyring_id(kr, 0), "default");
    cr_assert_str_eq(vks_keyring_source(kr, 0), "VKS_ENCRYPTION_KEY");
    cr_assert_str_eq(vks_keyring_primary_id(kr), "default");
    cr_assert(decrypts(kr, KAT_LEGACY, PASSWORD));
    vks_keyring_free(kr);
}

Test(keyring, bad_base64_keys_are_refused_without_echoing_them)
{
    struct fenv f1 = { { "VKS_ENCRYPTION_KEY", "ZW52ZWxvcGUt*GVzdC1rZXktQS0wMTIzNDU2Nzg5YWI=" } };
    load_fails(&f1, NULL, "VKS_ENCRYPTION_KEY: key is not valid base64 (character outside the base64 alphabet at offset 12)");
    struct fenv f2 = { { "VKS_ENCRYPTION_KEY", "ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIz" } };
    load_fails(&f2, NULL, "VKS_ENCRYPTION_KEY: key decodes to 24 bytes, need 32");
    struct fenv f3 = { { "VKS_ENCRYPTION_KEY", B64_A B64_B } };
    load_fails(&f3, NULL, "VKS_ENCRYPTION_KEY: key is not base64 of 32 bytes");
    struct fenv f4 = { { "MAIL_PROXY_ENCRYPTION_KEY", KEY_A } };
    load_fails(&f4, NULL, "MAIL_PROXY_ENCRYPTION_KEY: key is not valid base64");
}

Test(keyring, raw_key_file_with_safe_mode)
{
    const char *p = file("raw.key", KEY_A, 32, 0600);
    struct fenv f = { { "VKS_ENCRYPTION_KEY_FILE", p } };
    struct vks_keyring *kr = load_ok(&f, NULL);
    cr_assert_str_eq(vks_keyring_id(kr, 0), "default");
    cr_assert(decrypts(kr, KAT_LEGACY, PASSWORD));
    vks_keyring_free(kr);
    p = file("raw-ro.key", KEY_A, 32, 0400);
    struct fenv g = { { "VKS_ENCRYPTION_KEY_FILE", p } };
    kr = load_ok(&g, NULL);
    vks_keyring_free(kr);
}

Test(keyring, key_file_readable_by_group_or_others_is_refused)
{
    const mode_t bad[] = { 0640, 0604, 0644, 0660, 0606, 0610 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = file("loose.key", KEY_A, 32, bad[i]);
        struct fenv f = { { "VKS_ENCRYPTION_KEY_FILE", p } };
        char needle[700];
        snprintf(needle, sizeof needle, "key file \"%s\" is refused: mode %04o lets group or others access it",
                 p, (unsigned)bad[i]);
        load_fails(&f, NULL, needle);
    }
}

Test(keyring, raw_key_file_must_hold_exactly_32_bytes)
{
    const char *p = file("short.key", KEY_A, 31, 0600);
    struct fenv f = { { "VKS_ENCRYPTION_KEY_FILE", p } };
    load_fails(&f, NULL, "must hold exactly 32 raw bytes (it holds 31)");
    p = file("nl.key", KEY_A "\n", 33, 0600);
    struct fenv g = { { "VKS_ENCRYPTION_KEY_FILE", p } };
    load_fails(&g, NULL, "it holds more than 32");
    p = file("b64.key", B64_A, 44, 0600);
    struct fenv h = { { "VKS_ENCRYPTION_KEY_FILE", p } };
    load_fails(&h, NULL, "a base64 key belongs in VKS_ENCRYPTION_KEY");
    struct fenv m = { { "VKS_ENCRYPTION_KEY_FILE", "/nonexistent/vks/key" } };
    load_fails(&m, NULL, "cannot open key file \"/nonexistent/vks/key\"");
    struct fenv d = { { "VKS_ENCRYPTION_KEY_FILE", dir } };
    load_fails(&d, NULL, "is a directory, not a regular file");
}

Test(keyring, key_and_key_file_together_is_ambiguous)
{
    const char *p = file("raw.key", KEY_A, 32, 0600);
    struct fenv f = { { "VKS_ENCRYPTION_KEY", B64_A, "VKS_ENCRYPTION_KEY_FILE", p } };
    load_fails(&f, NULL, "VKS_ENCRYPTION_KEY and VKS_ENCRYPTION_KEY_FILE are both set");
}

Test(keyring, genro_compat_variable_and_file)
{
    /* MAIL_PROXY_ENCRYPTION_KEY: base64, id "mail-proxy" */
    struct fenv f = { { "MAIL_PROXY_ENCRYPTION_KEY", B64_A } };
    struct vks_keyring *kr = load_ok(&f, NULL);
    cr_assert_str_eq(vks_keyring_id(kr, 0), "mail-proxy");
    cr_assert(decrypts(kr, KAT_LEGACY, PASSWORD));
    vks_keyring_free(kr);

    /* the secrets file: raw bytes, surrounding whitespace stripped as genro's bytes.strip() does,
     * read whatever its mode (container secrets are often 0444) */
    const char *p = file("encryption_key", KEY_A "\n", 33, 0444);
    struct fenv none = { { NULL } };
    kr = load_ok(&none, p);
    cr_assert_eq(vks_keyring_count(kr), 1);
    cr_assert_str_eq(vks_keyring_id(kr, 0), "mail-proxy");
    cr_assert_str_eq(vks_keyring_source(kr, 0), p);
    cr_assert(decrypts(kr, KAT_LEGACY, PASSWORD));
    vks_keyring_free(kr);

    /* genro's precedence: with the variable set, the file is not even read */
    const char *junk = file("encryption_key_junk", "not a key", 9, 0600);
    kr = load_ok(&f, junk);
    cr_assert_eq(vks_keyring_count(kr), 1);
    vks_keyring_free(kr);
    load_fails(&none, junk, "must hold 32 raw bytes (it holds 9 after trimming whitespace)");
    /* base64 text in the file is not what genro accepts either */
    const char *b = file("encryption_key_b64", B64_A, 44, 0600);
    load_fails(&none, b, "it holds 44 after trimming");
}

Test(keyring, several_keys_by_id_for_rotation)
{
    struct fenv f = { { "VKS_ENCRYPTION_KEYS", " k2:" B64_B " , k1:" B64_A } };
    struct vks_keyring *kr = load_ok(&f, NULL);
    cr_assert_eq(vks_keyring_count(kr), 2);
    cr_assert_str_eq(vks_keyring_primary_id(kr), "k2");
    cr_assert_str_eq(vks_keyring_id(kr, 1), "k1");
    cr_assert_str_eq(vks_keyring_source(kr, 1), "VKS_ENCRYPTION_KEYS entry 2");

    /* values written under the old key (k1) and the new one (k2) both read during the overlap */
    char *old = enc(kr, "k1"), *new_ = enc(kr, "k2");
    cr_assert(decrypts(kr, old, PASSWORD));
    cr_assert(decrypts(kr, new_, PASSWORD));
    /* a legacy value is tried against every key: KEY_A is the second one here */
    cr_assert(decrypts(kr, KAT_LEGACY, PASSWORD));
    vks_keyring_free(kr);

    /* after the old key is retired, its values fail with a clear unknown-id message */
    struct fenv g = { { "VKS_ENCRYPTION_KEYS", "k2:" B64_B } };
    kr = load_ok(&g, NULL);
    cr_assert(decrypts(kr, new_, PASSWORD));
    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_err e;
    cr_assert_eq(vks_envelope_decrypt(kr, (unsigned char *)old, strlen(old), &PLACE, &out, NULL, &e),
                 VKS_E_DECRYPT_FAILED);
    cr_assert(strstr(e.msg, "unknown key id 'k1' (keyring has: k2)") != NULL, "%s", e.msg);
    free(old);
    free(new_);
    vks_keyring_free(kr);
}

Test(keyring, all_sources_together_and_their_order)
{
    const char *ring = sfile("ring", "# rotation keyring\n\nfile-1: " B64_C "\n", 0600);
    const char *compat = file("encryption_key", KEY_B, 32, 0600);
    struct fenv f = { { "VKS_ENCRYPTION_KEYS", "env-1:" B64_A, "VKS_ENCRYPTION_KEYRING_FILE", ring,
                        "VKS_ENCRYPTION_KEY", B64_B } };
    struct vks_keyring *kr = load_ok(&f, compat);
    cr_assert_eq(vks_keyring_count(kr), 4);
    const char *ids[] = { "env-1", "file-1", "default", "mail-proxy" };
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(vks_keyring_id(kr, i), ids[i]);
    char src[700];
    snprintf(src, sizeof src, "%s line 3", ring);
    cr_assert_str_eq(vks_keyring_source(kr, 1), src);
    cr_assert_eq(vks_keyring_id(kr, 4), NULL);
    vks_keyring_free(kr);
}

Test(keyring, keyring_file_errors_name_the_line)
{
    const char *p = sfile("ring-bad", "a:" B64_A "\nb " B64_B "\n", 0600);
    struct fenv f = { { "VKS_ENCRYPTION_KEYRING_FILE", p } };
    char needle[700];
    snprintf(needle, sizeof needle, "%s line 2: expected id:base64-key", p);
    load_fails(&f, NULL, needle);

    p = sfile("ring-dup", "a:" B64_A "\na:" B64_B "\n", 0600);
    struct fenv g = { { "VKS_ENCRYPTION_KEYRING_FILE", p } };
    snprintf(needle, sizeof needle, "%s line 2: key id 'a' is already defined by %s line 1", p, p);
    load_fails(&g, NULL, needle);

    p = sfile("ring-loose", "a:" B64_A "\n", 0644);
    struct fenv h = { { "VKS_ENCRYPTION_KEYRING_FILE", p } };
    load_fails(&h, NULL, "mode 0644 lets group or others access it");
}

Test(keyring, list_variable_errors_name_the_entry)
{
    struct fenv f1 = { { "VKS_ENCRYPTION_KEYS", "k1:" B64_A ",k2" } };
    load_fails(&f1, NULL, "VKS_ENCRYPTION_KEYS entry 2: expected id:base64-key");
    struct fenv f2 = { { "VKS_ENCRYPTION_KEYS", "k1:" B64_A ",," } };
    load_fails(&f2, NULL, "VKS_ENCRYPTION_KEYS entry 2 is empty");
    struct fenv f3 = { { "VKS_ENCRYPTION_KEYS", "bad id:" B64_A } };
    load_fails(&f3, NULL, "VKS_ENCRYPTION_KEYS entry 1: invalid key id");
    struct fenv f4 = { { "VKS_ENCRYPTION_KEYS", "k1:" B64_A ",k1:" B64_B } };
    load_fails(&f4, NULL, "VKS_ENCRYPTION_KEYS entry 2: key id 'k1' is already defined by VKS_ENCRYPTION_KEYS entry 1");
    struct fenv f5 = { { "VKS_ENCRYPTION_KEYS", "default:" B64_A, "VKS_ENCRYPTION_KEY", B64_B } };
    load_fails(&f5, NULL, "VKS_ENCRYPTION_KEY: key id 'default' is already defined by VKS_ENCRYPTION_KEYS entry 1");
    struct fenv f6 = { { "VKS_ENCRYPTION_KEYS", "k1:" } };
    load_fails(&f6, NULL, "VKS_ENCRYPTION_KEYS entry 1: empty key");
}

Test(keyring, add_validates_ids_and_capacity)
{
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    cr_assert_eq(vks_keyring_new(&kr, &e), VKS_OK);
    cr_assert_eq(vks_keyring_add(kr, "", (const unsigned char *)KEY_A, &e), VKS_E_CONFIG);
    cr_assert_eq(vks_keyring_add(kr, "a:b", (const unsigned char *)KEY_A, &e), VKS_E_CONFIG);
    char longid[VKS_KEY_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    cr_assert_eq(vks_keyring_add(kr, longid, (const unsigned char *)KEY_A, &e), VKS_E_CONFIG);
    longid[VKS_KEY_ID_MAX] = '\0';
    cr_assert_eq(vks_keyring_add(kr, longid, (const unsigned char *)KEY_A, &e), VKS_OK, "%s", e.msg);
    for (int i = 1; i < VKS_KEYRING_MAX; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        cr_assert_eq(vks_keyring_add(kr, id, (const unsigned char *)KEY_A, &e), VKS_OK, "%s", e.msg);
    }
    cr_assert_eq(vks_keyring_add(kr, "one-more", (const unsigned char *)KEY_A, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "keyring full") != NULL);
    cr_assert_eq(vks_keyring_count(kr), VKS_KEYRING_MAX);
    vks_keyring_free(kr);
}
