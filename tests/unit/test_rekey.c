/*
 * vks_rekey, the pure parts: the members of a secret's data object as read from Vault's answer
 * (names decoded, values only classified and located, never decoded), bad objects refused by
 * name, and the crash drill's spec. The run itself is tested against vault-dev by
 * tests/integration/89-rekey.py.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vks_json.h"
#include "vks_rekey.h"

static struct vks_rekey_field f[VKS_REKEY_FIELDS_MAX];

/* Scans the document and lists the members of data.data. */
static vks_status fields_of(const char *doc, size_t *n, struct vks_err *err)
{
    struct vks_json_span sp = { 0 };
    cr_assert_eq(vks_json_find(doc, strlen(doc), "data.data", &sp, NULL), VKS_OK);
    return vks_rekey_fields(doc, strlen(doc), sp.off, sp.len, f, VKS_REKEY_FIELDS_MAX, n, err);
}

static void span_is(const char *doc, size_t i, const char *want)
{
    cr_assert_eq(f[i].len, strlen(want), "field %zu length", i);
    cr_assert(memcmp(doc + f[i].off, want, f[i].len) == 0, "field %zu span", i);
}

Test(rekey, classifies_every_kind_of_member)
{
    const char *doc = "{\"data\":{\"data\":{\"key\":\"ENC:v2:k1:AAAA\", \"username\":\"u\\\"x\",\"port\":587,"
                      "\"obj\":{\"a\":\"ENC:inner\",\"b\":[1,{\"c\":\"}\"}]},\"list\":[\"ENC:x\"],\"t\":true,"
                      "\"n\":null,\"legacy\":\"ENC:QUJD\",\"plain\":\"ENCx\",\"empty\":\"\"},\"metadata\":{}}}";
    size_t n = 0;
    cr_assert_eq(fields_of(doc, &n, NULL), VKS_OK);
    cr_assert_eq(n, 10);
    const char *names[] = { "key", "username", "port", "obj", "list", "t", "n", "legacy", "plain", "empty" };
    enum vks_rekey_kind kinds[] = { VKS_REKEY_ENC, VKS_REKEY_PLAIN, VKS_REKEY_NOT_STRING, VKS_REKEY_NOT_STRING,
                                    VKS_REKEY_NOT_STRING, VKS_REKEY_NOT_STRING, VKS_REKEY_NOT_STRING, VKS_REKEY_ENC,
                                    VKS_REKEY_PLAIN, VKS_REKEY_PLAIN };
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(f[i].name, names[i]);
        cr_assert_eq(f[i].kind, kinds[i], "kind of %s", names[i]);
    }
    span_is(doc, 0, "\"ENC:v2:k1:AAAA\"");
    span_is(doc, 1, "\"u\\\"x\"");
    span_is(doc, 2, "587");
    span_is(doc, 3, "{\"a\":\"ENC:inner\",\"b\":[1,{\"c\":\"}\"}]}");
    span_is(doc, 9, "\"\"");
}

Test(rekey, escaped_names_are_decoded_and_whitespace_is_skipped)
{
    const char *doc = "{\"data\":{\"data\": { \"p\\u00e4ss\" : \"ENC:x\" ,\n\t\"a\\/b\":1 } }}";
    size_t n = 0;
    cr_assert_eq(fields_of(doc, &n, NULL), VKS_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(f[0].name, "p\xc3\xa4ss");
    cr_assert_eq(f[0].kind, VKS_REKEY_ENC);
    cr_assert_str_eq(f[1].name, "a/b");
}

Test(rekey, empty_object_has_no_fields)
{
    size_t n = 7;
    cr_assert_eq(fields_of("{\"data\":{\"data\":{}}}", &n, NULL), VKS_OK);
    cr_assert_eq(n, 0);
}

Test(rekey, too_many_fields_and_long_names_are_refused_by_name)
{
    char doc[8192] = "{\"data\":{\"data\":{";
    for (int i = 0; i <= VKS_REKEY_FIELDS_MAX; i++)
        snprintf(doc + strlen(doc), sizeof doc - strlen(doc), "%s\"f%d\":1", i ? "," : "", i);
    strcat(doc, "}}}");
    size_t n = 0;
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(fields_of(doc, &n, &err), VKS_E_INVALID_INPUT);
    cr_assert(strstr(err.msg, "more than 64 fields") != NULL, "%s", err.msg);

    char name[VKS_REKEY_FIELD_NAME_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(doc, sizeof doc, "{\"data\":{\"data\":{\"%s\":\"ENC:x\"}}}", name);
    cr_assert_eq(fields_of(doc, &n, &err), VKS_E_INVALID_INPUT);
    cr_assert(strstr(err.msg, "field name of 129 bytes") != NULL, "%s", err.msg);
}

Test(rekey, not_an_object_is_refused)
{
    const char *doc = "[1,2]";
    size_t n = 0;
    struct vks_err err;
    vks_err_clear(&err);
    cr_assert_eq(vks_rekey_fields(doc, strlen(doc), 0, strlen(doc), f, 4, &n, &err), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_rekey_fields(NULL, 0, 0, 0, f, 4, &n, &err), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_rekey_fields(doc, 2, 0, 5, f, 4, &n, &err), VKS_E_INVALID_INPUT);
}

Test(rekey, drill_spec)
{
    cr_assert(vks_rekey_drill_match("data", "data", 1));
    cr_assert(!vks_rekey_drill_match("data", "data", 2));
    cr_assert(vks_rekey_drill_match("data:3", "data", 3));
    cr_assert(!vks_rekey_drill_match("data:3", "data", 2));
    cr_assert(!vks_rekey_drill_match("data:3", "meta", 3));
    cr_assert(!vks_rekey_drill_match("dat", "data", 1));
    cr_assert(!vks_rekey_drill_match("datax", "data", 1));
    cr_assert(!vks_rekey_drill_match("data:0", "data", 0));
    cr_assert(!vks_rekey_drill_match("data:3x", "data", 3));
    cr_assert(!vks_rekey_drill_match("data:", "data", 1));
    cr_assert(!vks_rekey_drill_match(NULL, "data", 1));
    cr_assert(!vks_rekey_drill_match("", "data", 1));
}
