/*
 * vks_backup_open: the document checks that stand between a sealed file and a restore (every
 * field of a bad bundle is named, nothing is returned), and verify's digests (an envelope is
 * digested, a plaintext value never). Sealing is vks_age's (tested in test_age.c); no Vault here:
 * tests/integration/90-backup.py runs create and restore against vault-dev.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_backup.h"

static vks_secret key;
static struct vks_age_recipient rcpt;
static struct vks_age_identities ids;

static void setup(void)
{
    cr_assert_eq(vks_age_keygen(&key, &rcpt, NULL), VKS_OK);
    memset(&ids, 0, sizeof ids);
    cr_assert_eq(vks_secret_dup(key.data, key.len, &ids.keys[0], NULL), VKS_OK);
    ids.n = 1;
}
static void teardown(void)
{
    vks_secret_free(&key);
    vks_age_identities_free(&ids);
}
TestSuite(backup, .init = setup, .fini = teardown);

#define HEAD "{\"format\":\"vks-backup\",\"version\":1,\"created\":\"2026-12-03T20:00:00Z\"," \
             "\"source\":{\"vault_addr\":\"https://127.0.0.1:8200\",\"mount\":\"secret\",\"prefix\":\"smtp-auth/\"},"
#define ENV "ENC:v2:k1:AAECAwQFBgcICQoL9bmkEuLBUzNZhSngpdJePpIGpURMEoFPIOGQfLhuWu6Q11LlcjVjdw=="
#define SECRET(path, cur, versions) \
    "{\"path\":\"" path "\",\"name\":\"x\",\"current_version\":" #cur ",\"max_versions\":20," \
    "\"cas_required\":true,\"delete_version_after\":\"0s\",\"custom_metadata\":{\"vks_cred\":\"1\"}," \
    "\"versions\":[" versions "]}"
#define LIVE(v, key) "{\"version\":" #v ",\"state\":\"live\",\"data\":{\"key\":\"" key "\",\"username\":\"u\"}}"

static vks_status open_doc(const char *doc, struct vks_backup_bundle *b, struct vks_err *e)
{
    unsigned char *f = NULL;
    size_t n = 0;
    cr_assert_eq(vks_age_seal_buffer(&rcpt, 1, NULL, 0, doc, strlen(doc), &f, &n, e), VKS_OK);
    struct vks_age_key k = { &ids, NULL, 0 };
    vks_status st = vks_backup_open(f, n, &k, b, e);
    free(f);
    return st;
}

Test(backup, a_good_bundle_opens_with_its_counts_and_digests)
{
    const char *doc = HEAD "\"secrets\":[" SECRET("smtp-auth/a.example", 3, LIVE(1, ENV) ","
                      "{\"version\":2,\"state\":\"destroyed\"}," LIVE(3, ENV)) ","
                      SECRET("smtp-auth/t/b.example", 2, "{\"version\":2,\"state\":\"live\",\"data\":"
                             "{\"key\":\"backup-unit-plaintext-7e1\"}}") "],\"summary\":{}}\n";
    struct vks_backup_bundle b;
    struct vks_err e;
    cr_assert_eq(open_doc(doc, &b, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(b.n, 2u);
    cr_assert_str_eq(b.prefix, "smtp-auth/");
    cr_assert_eq(b.counts.live, 3u);
    cr_assert_eq(b.counts.destroyed, 1u);
    cr_assert_eq(b.counts.absent, 1u); /* b.example version 1 pruned */
    cr_assert_eq(b.counts.managed, 2u);
    cr_assert_eq(b.secrets[0].nversions, 3u);
    cr_assert(b.secrets[0].cas_required);
    char hex[33];
    bool plain = true;
    vks_backup_envelope_digest(&b, 0, hex, &plain);
    cr_assert(!plain && strlen(hex) == 32, "an envelope is digested");
    vks_backup_envelope_digest(&b, 1, hex, &plain);
    cr_assert(plain && hex[0] == '\0', "a plaintext value is never hashed");
    vks_backup_bundle_free(&b);
    cr_assert_null(b.plain.data);
}

struct bad {
    const char *doc, *want;
};

Test(backup, every_bad_document_is_refused_naming_the_field)
{
    static const struct bad cases[] = {
        { "{\"hello\":\"world\"}", "not a vks backup bundle" },
        { "not json at all", "not a valid JSON document" },
        { HEAD "\"secrets\":[]} trailing", "not a valid JSON document" },
        { "{\"format\":\"vks-backup\",\"version\":2}", "version is not 1" },
        { "{\"format\":\"vks-backup\",\"version\":1,\"secrets\":[]}", "source.mount" },
        { HEAD "\"secrets\":{}}", "secrets is missing" },
        { HEAD "\"secrets\":[" SECRET("other/a", 1, LIVE(1, ENV)) "]}", "secret 1: path" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/../a", 1, LIVE(1, ENV)) "]}", "secret 1: path" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, LIVE(1, ENV)) "," SECRET("smtp-auth/a", 1, LIVE(1, ENV))
          "]}", "secret 2: the same path twice" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 0, "") "]}", "current_version" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 2, LIVE(2, ENV) "," LIVE(1, ENV)) "]}", "increase" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, LIVE(2, ENV)) "]}", "increase" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, LIVE(1, ENV) "," LIVE(1, ENV)) "]}", "more versions" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, "{\"version\":1,\"state\":\"gone\"}") "]}", "state" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, "{\"version\":1,\"state\":\"live\"}") "]}", "data" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, "{\"version\":1,\"state\":\"deleted\",\"data\":{}}") "]}",
          "data" },
        { HEAD "\"secrets\":[" SECRET("smtp-auth/a", 1, "{\"version\":1,\"state\":\"live\",\"data\":[1]}") "]}",
          "data" },
        { HEAD "\"secrets\":[{\"path\":\"smtp-auth/a\",\"current_version\":1,\"max_versions\":-1}]}", "max_versions" },
        { HEAD "\"secrets\":[{\"path\":\"smtp-auth/a\",\"current_version\":1,\"max_versions\":1,"
          "\"cas_required\":\"yes\"}]}", "cas_required" },
        { HEAD "\"secrets\":[{\"path\":\"smtp-auth/a\",\"current_version\":1,\"max_versions\":1,"
          "\"cas_required\":true,\"delete_version_after\":\"0s\",\"custom_metadata\":[]}]}", "custom_metadata" },
        { HEAD "\"secrets\":[{\"path\":\"smtp-auth/a\",\"current_version\":1,\"max_versions\":1,"
          "\"cas_required\":true,\"delete_version_after\":\"0s\",\"custom_metadata\":null}]}", "versions" },
        { HEAD "\"secrets\":[7]}", "secret 1: not an object" },
        { HEAD "\"secrets\":[{\"path\":\"smtp-auth/a\",\"path\":\"smtp-auth/b\"}]}", "a key is repeated" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vks_backup_bundle b;
        struct vks_err e;
        vks_err_clear(&e);
        vks_status st = open_doc(cases[i].doc, &b, &e);
        cr_assert_eq(st, VKS_E_INVALID_INPUT, "case %zu accepted (%s)", i, e.msg);
        cr_assert(strstr(e.msg, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].want);
        cr_assert_null(b.plain.data, "case %zu: nothing is handed out", i);
        cr_assert_null(b.secrets);
    }
}

Test(backup, the_wrong_key_or_a_foreign_file_gives_nothing)
{
    const char *doc = HEAD "\"secrets\":[]}";
    unsigned char *f = NULL;
    size_t n = 0;
    struct vks_err e;
    cr_assert_eq(vks_age_seal_buffer(&rcpt, 1, NULL, 0, doc, strlen(doc), &f, &n, &e), VKS_OK);
    struct vks_age_identities other = { 0 };
    struct vks_age_recipient r2;
    cr_assert_eq(vks_age_keygen(&other.keys[0], &r2, NULL), VKS_OK);
    other.n = 1;
    struct vks_age_key k = { &other, NULL, 0 };
    struct vks_backup_bundle b;
    cr_assert_eq(vks_backup_open(f, n, &k, &b, &e), VKS_E_DECRYPT_FAILED);
    cr_assert_null(b.plain.data);
    k.ids = &ids;
    cr_assert_eq(vks_backup_open((const unsigned char *)doc, strlen(doc), &k, &b, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "not an age file") != NULL, "%s", e.msg);
    cr_assert_eq(vks_backup_open(f, n, &k, &b, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(b.n, 0u);
    vks_backup_bundle_free(&b);
    vks_age_identities_free(&other);
    free(f);
}
