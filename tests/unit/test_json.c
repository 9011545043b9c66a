/* Unit tests of the allocation-free JSON scanner (src/vks_json.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vks_json.h"
#include "vks_restrict.h"

#define S(lit) lit, sizeof(lit) - 1

static const char kv2_body[] =
    "{\"request_id\":\"992da4a2-f2d1-5786-ea53-1e8ea6440a7c\",\"lease_id\":\"\",\"renewable\":false,"
    "\"lease_duration\":0,\"data\":{\"data\":{\"password\":\"p\\u0061ss\\\"w\\\\rd\",\"n\":5},"
    "\"metadata\":{\"created_time\":\"2024-11-15T02:41:02.556301319Z\",\"custom_metadata\":"
    "{\"allowed_domains\":\"example.com,example.org\"},\"deletion_time\":\"\",\"destroyed\":false,"
    "\"version\":7}},\"wrap_info\":null,\"warnings\":null,\"auth\":null,\"mount_type\":\"kv\"}\n";

Test(json, finds_several_paths_in_one_pass)
{
    struct vks_json_query q[4] = {
        { .path = { "data", "data", "password" }, .npath = 3 },
        { .path = { "data", "metadata", "version" }, .npath = 3 },
        { .path = { "data", "metadata", "custom_metadata" }, .npath = 3 },
        { .path = { "data", "data", "absent" }, .npath = 3 },
    };
    struct vks_err e;
    cr_assert_eq(vks_json_scan(S(kv2_body), q, 4, "test", &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(q[0].found.type, VKS_JSON_STRING);
    unsigned char out[64];
    size_t n = 0;
    cr_assert_eq(vks_json_string_decoded_len(kv2_body, &q[0].found), 9);
    cr_assert_eq(vks_json_string_decode(kv2_body, &q[0].found, out, sizeof out, &n, &e), VKS_OK);
    cr_assert_eq(n, 9);
    cr_assert(memcmp(out, "pass\"w\\rd", 9) == 0);
    int64_t v = 0;
    cr_assert(vks_json_int64(kv2_body, &q[1].found, &v));
    cr_assert_eq(v, 7);
    cr_assert_eq(q[2].found.type, VKS_JSON_OBJECT);
    cr_assert(strncmp(kv2_body + q[2].found.off, "{\"allowed_domains\":\"example.com,example.org\"}",
                      q[2].found.len) == 0);
    cr_assert_eq(q[3].found.type, VKS_JSON_NONE);
}

Test(json, dotted_find_and_non_string_types)
{
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(S(kv2_body), "data.data.n", &sp, NULL), VKS_OK);
    cr_assert_eq(sp.type, VKS_JSON_NUMBER);
    unsigned char out[8];
    size_t n;
    struct vks_err e;
    cr_assert_eq(vks_json_string_decode(kv2_body, &sp, out, sizeof out, &n, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(vks_json_find(S(kv2_body), "wrap_info", &sp, NULL), VKS_OK);
    cr_assert_eq(sp.type, VKS_JSON_NULL);
    cr_assert_eq(vks_json_find(S(kv2_body), "data.metadata.destroyed", &sp, NULL), VKS_OK);
    cr_assert_eq(sp.type, VKS_JSON_FALSE);
    cr_assert_eq(vks_json_find(S(kv2_body), "", &sp, NULL), VKS_OK);
    cr_assert_eq(sp.type, VKS_JSON_OBJECT);
    cr_assert_eq(sp.len, sizeof kv2_body - 2); /* without the trailing newline */
    /* a path through a non-object is simply absent */
    cr_assert_eq(vks_json_find(S(kv2_body), "mount_type.x", &sp, NULL), VKS_OK);
    cr_assert_eq(sp.type, VKS_JSON_NONE);
}

Test(json, keys_are_compared_after_unescaping)
{
    const char body[] = "{\"a\\u0026b\":\"x\",\"p\\u00e9\":\"y\",\"a.b\":\"z\"}";
    struct vks_json_query q[3] = {
        { .path = { "a&b" }, .npath = 1 },
        { .path = { "p\xc3\xa9" }, .npath = 1 },
        { .path = { "a.b" }, .npath = 1 },
    };
    cr_assert_eq(vks_json_scan(S(body), q, 3, NULL, NULL), VKS_OK);
    cr_assert(vks_json_string_equals(body, &q[0].found, "x"));
    cr_assert(vks_json_string_equals(body, &q[1].found, "y"));
    cr_assert(vks_json_string_equals(body, &q[2].found, "z"));
    cr_assert_not(vks_json_string_equals(body, &q[2].found, "zz"));
    cr_assert_not(vks_json_string_equals(body, &q[2].found, ""));
}

/* A repeated key in any object is refused (docs/internals/json.md, "Repeated keys"): Go keeps the
 * last into a map but merges into a struct's map field, so no reading of such a body is safe. */
Test(json, repeated_keys_are_refused_anywhere)
{
    static const char *const bad[] = {
        "{\"k\":\"first\",\"k\":\"second\"}",
        "{\"k\":1,\"k\":1}",
        "{\"data\":{\"data\":{\"key\":\"a\"}},\"data\":{\"data\":{\"key\":\"b\"}}}",
        "{\"data\":{\"data\":{\"key\":\"a\"},\"data\":{\"other\":\"b\"}}}",
        "{\"data\":{\"data\":{\"key\":\"a\",\"key\":\"b\"},\"metadata\":{\"version\":1}}}",
        "{\"data\":{\"data\":{\"key\":\"a\"},\"metadata\":{\"version\":1,\"version\":2}}}",
        "{\"data\":{\"metadata\":{\"custom_metadata\":{\"allowed_domains\":\"a\",\"allowed_domains\":\"b\"}}}}",
        "{\"data\":{\"metadata\":{\"custom_metadata\":null,\"custom_metadata\":{\"x\":\"y\"}}}}",
        "{\"auth\":{\"client_token\":\"t1\",\"client_token\":\"t2\"}}",
        "{\"auth\":{\"client_token\":\"t1\"},\"auth\":null}",
        "[{\"a\":1},{\"b\":2,\"b\":3}]",
        "{\"k\":1,\"\\u006b\":2}",            /* the same key, once escaped */
        "{\"\\u00e9\":1,\"\xc3\xa9\":2}",       /* U+00E9 escaped and in UTF-8 */
        "{\"a\":{\"x\":{\"y\":{\"z\":1,\"z\":2}}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vks_json_query q[2] = { { .path = { "data", "data" }, .npath = 2 },
                                       { .path = { "k" }, .npath = 1 } };
        struct vks_err e;
        cr_assert_eq(vks_json_scan(bad[i], strlen(bad[i]), q, 2, "response", &e), VKS_E_BAD_RESPONSE, "%s", bad[i]);
        cr_assert(strstr(e.msg, "repeated"), "%s: %s", bad[i], e.msg);
        cr_assert_eq(q[0].found.type, VKS_JSON_NONE);
        cr_assert_eq(q[1].found.type, VKS_JSON_NONE);
        cr_assert_null(strstr(e.msg, "first"));
    }
    /* the same key in different objects, and keys that only look alike, are fine */
    static const char *const good[] = {
        "{\"a\":{\"k\":1},\"b\":{\"k\":1},\"k\":{\"k\":{\"k\":1}}}",
        "[{\"k\":1},{\"k\":2}]",
        "{\"k\":1,\"K\":2,\"k \":3,\"\\u006b\\u006b\":4}",
        "{\"\":1,\"\\u0000\":2}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(vks_json_scan(good[i], strlen(good[i]), NULL, 0, NULL, NULL), VKS_OK, "%s", good[i]);
}

/* The restriction reader (json-c) refuses what the scanner refuses: a restriction given twice
 * must not be read as the last one (the other reader would see the first). */
Test(json, restriction_metadata_with_a_repeated_key_is_refused)
{
    static const char *const md[] = {
        "{\"allowed_domains\":\"a.example\",\"allowed_domains\":\"*\"}",
        "{\"allowed_hosts\":\"192.0.2.1\",\"allowed_domains\":\"a.example\",\"allowed_hosts\":\"0.0.0.0/0\"}",
        "{\"owner\":\"x\",\"owner\":\"y\"}",
    };
    for (size_t i = 0; i < sizeof md / sizeof md[0]; i++) {
        struct vks_restrict_ctx ctx = { .domain = "a.example" };
        struct vks_err e;
        vks_status st = vks_restrict_check(md[i], strlen(md[i]), &ctx, &e);
        cr_assert_eq(st, VKS_E_BAD_RESPONSE, "%s: %s (%s)", md[i], vks_status_code(st), e.msg);
        cr_assert(strstr(e.msg, "repeated"), "%s", e.msg);
        bool restricted;
        cr_assert_eq(vks_restrict_validate(md[i], strlen(md[i]), &restricted, &e), VKS_E_BAD_RESPONSE, "%s", md[i]);
    }
}

/* Many keys (the index leaves the stack): every one is checked, in time linear in the keys. */
Test(json, repeated_key_among_many)
{
    enum { N = 50000 };
    size_t cap = (size_t)N * 16 + 64;
    char *doc = malloc(cap);
    cr_assert_not_null(doc);
    size_t o = 0;
    doc[o++] = '{';
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(doc + o, cap - o, "%s\"k%d\":%d", i ? "," : "", i, i);
    doc[o++] = '}';
    cr_assert_eq(vks_json_scan(doc, o, NULL, 0, NULL, NULL), VKS_OK);
    o--; /* repeat the first key at the very end */
    o += (size_t)snprintf(doc + o, cap - o, ",\"k0\":1}");
    struct vks_err e;
    cr_assert_eq(vks_json_scan(doc, o, NULL, 0, "big", &e), VKS_E_BAD_RESPONSE);
    cr_assert(strstr(e.msg, "repeated"), "%s", e.msg);
    free(doc);
}

Test(json, unicode_escapes_and_surrogates_like_go)
{
    /* U+1F600 as a surrogate pair, a lone high surrogate followed by 'A', a lone low surrogate. */
    const char body[] = "[\"\\ud83d\\ude00|\\ud800\\u0041|\\udc00|\\u00e9|\\u20ac|\\/\\b\\f\\n\\r\\t\"]";
    struct vks_json_span arr, el;
    cr_assert_eq(vks_json_find(S(body), "", &arr, NULL), VKS_OK);
    size_t cur = 0;
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    unsigned char out[64];
    size_t n;
    cr_assert_eq(vks_json_string_decode(body, &el, out, sizeof out, &n, NULL), VKS_OK);
    const char want[] = "\xf0\x9f\x98\x80|\xef\xbf\xbd" "A|\xef\xbf\xbd|\xc3\xa9|\xe2\x82\xac|/\b\f\n\r\t";
    cr_assert_eq(n, sizeof want - 1);
    cr_assert(memcmp(out, want, n) == 0);
    cr_assert_eq(vks_json_string_decoded_len(body, &el), n);
    cr_assert_not(vks_json_array_next(body, &arr, &cur, &el));
}

Test(json, decode_refuses_a_too_small_buffer_and_wipes_it)
{
    const char body[] = "\"abcdefgh\"";
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(S(body), "", &sp, NULL), VKS_OK);
    unsigned char out[4] = { 1, 2, 3, 4 };
    size_t n = 99;
    struct vks_err e;
    cr_assert_eq(vks_json_string_decode(body, &sp, out, sizeof out, &n, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(n, 0);
    for (size_t i = 0; i < sizeof out; i++)
        cr_assert_eq(out[i], 0);
}

Test(json, iterates_arrays_of_mixed_values)
{
    const char body[] = "{\"errors\":[ \"permission denied\" , {\"x\":[1,2]} ,3, \"invalid token\" ]}";
    struct vks_json_span arr, el;
    cr_assert_eq(vks_json_find(S(body), "errors", &arr, NULL), VKS_OK);
    size_t cur = 0;
    int count = 0;
    enum vks_json_type types[8];
    while (vks_json_array_next(body, &arr, &cur, &el) && count < 8)
        types[count++] = el.type;
    cr_assert_eq(count, 4);
    cr_assert_eq(types[0], VKS_JSON_STRING);
    cr_assert_eq(types[1], VKS_JSON_OBJECT);
    cr_assert_eq(types[2], VKS_JSON_NUMBER);
    cr_assert_eq(types[3], VKS_JSON_STRING);
    const char empty[] = "{\"errors\":[]}";
    cr_assert_eq(vks_json_find(S(empty), "errors", &arr, NULL), VKS_OK);
    cur = 0;
    cr_assert_not(vks_json_array_next(empty, &arr, &cur, &el));
}

Test(json, int64_limits)
{
    const char body[] = "[9223372036854775807,-9223372036854775808,9223372036854775808,1.5,1e3,-0]";
    struct vks_json_span arr, el;
    cr_assert_eq(vks_json_find(S(body), "", &arr, NULL), VKS_OK);
    size_t cur = 0;
    int64_t v;
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert(vks_json_int64(body, &el, &v));
    cr_assert_eq(v, INT64_MAX);
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert(vks_json_int64(body, &el, &v));
    cr_assert_eq(v, INT64_MIN);
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert_not(vks_json_int64(body, &el, &v));
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert_not(vks_json_int64(body, &el, &v));
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert_not(vks_json_int64(body, &el, &v));
    cr_assert(vks_json_array_next(body, &arr, &cur, &el));
    cr_assert(vks_json_int64(body, &el, &v));
    cr_assert_eq(v, 0);
}

/* Every malformed document is refused, and the message never quotes the document. */
Test(json, malformed_documents_are_refused_without_quoting_them)
{
    static const char *const bad[] = {
        "", " ", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,}", "[1,]", "[1 2]", "{\"a\" 1}",
        "{a:1}", "'x'", "\"abc", "\"a\\x\"", "\"a\\u12\"", "\"a\\u12g4\"", "\"tab\there\"",
        "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "01", "1.", "-", "1e", "+1",
        "tru", "nul", "falsey", "{} {}", "{}x", "[\"SECRETVALUE-abc\"", "{\"k\":\"SECRETVALUE-abc\"}]",
        "<html>Internal Server Error</html>", "\"a\x01\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vks_err e;
        vks_err_clear(&e);
        struct vks_json_query q = { .npath = 0 };
        vks_status st = vks_json_scan(bad[i], strlen(bad[i]), &q, 1, "probe", &e);
        cr_assert_eq(st, VKS_E_BAD_RESPONSE, "document %zu accepted", i);
        cr_assert_eq(q.found.type, VKS_JSON_NONE);
        cr_assert(strstr(e.msg, "malformed JSON in probe") != NULL, "message: %s", e.msg);
        cr_assert(strstr(e.msg, "SECRETVALUE") == NULL);
        cr_assert(strstr(e.msg, "html") == NULL);
    }
}

Test(json, truncated_after_the_wanted_value_is_still_an_error)
{
    const char body[] = "{\"data\":{\"data\":{\"key\":\"v\"},\"metadata\":{\"version\":1";
    struct vks_json_span sp;
    struct vks_err e;
    cr_assert_eq(vks_json_find(S(body), "data.data.key", &sp, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(sp.type, VKS_JSON_NONE);
    cr_assert(strstr(e.msg, "truncated") != NULL, "%s", e.msg);
}

Test(json, nesting_is_bounded)
{
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < VKS_JSON_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < VKS_JSON_MAX_DEPTH; i++)
        deep[n++] = ']';
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(deep, n, "", &sp, NULL), VKS_OK);
    n = 0;
    for (int i = 0; i < VKS_JSON_MAX_DEPTH + 1; i++)
        deep[n++] = '[';
    for (int i = 0; i < VKS_JSON_MAX_DEPTH + 1; i++)
        deep[n++] = ']';
    struct vks_err e;
    cr_assert_eq(vks_json_find(deep, n, "", &sp, &e), VKS_E_BAD_RESPONSE);
    cr_assert(strstr(e.msg, "nesting") != NULL, "%s", e.msg);
}

Test(json, accepts_valid_utf8_and_whitespace)
{
    const char body[] = " \r\n\t{ \"k\" : \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\" , \"e\":[ ] , \"o\":{ } } \n";
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(S(body), "k", &sp, NULL), VKS_OK);
    cr_assert(vks_json_string_equals(body, &sp, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
}

Test(json, bad_arguments)
{
    struct vks_json_query q[VKS_JSON_MAX_QUERY + 1];
    memset(q, 0, sizeof q);
    cr_assert_eq(vks_json_scan(S("{}"), q, VKS_JSON_MAX_QUERY + 1, NULL, NULL), VKS_E_INVALID_ARG);
    q[0].npath = VKS_JSON_MAX_PATH + 1;
    cr_assert_eq(vks_json_scan(S("{}"), q, 1, NULL, NULL), VKS_E_INVALID_ARG);
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(S("{}"), "a.b.c.d.e.f.g.h.i", &sp, NULL), VKS_E_INVALID_ARG);
}

Test(json, write_string_escapes_and_round_trips)
{
    const unsigned char in[] = "a\"b\\c\x01\n\xc3\xa9";
    char out[64];
    size_t n = vks_json_write_string(in, sizeof in - 1, out, sizeof out);
    cr_assert_gt(n, 0);
    cr_assert(strncmp(out, "\"a\\\"b\\\\c\\u0001\\u000a\xc3\xa9\"", n) == 0, "%.*s", (int)n, out);
    struct vks_json_span sp;
    cr_assert_eq(vks_json_find(out, n, "", &sp, NULL), VKS_OK);
    unsigned char back[64];
    size_t bn;
    cr_assert_eq(vks_json_string_decode(out, &sp, back, sizeof back, &bn, NULL), VKS_OK);
    cr_assert_eq(bn, sizeof in - 1);
    cr_assert(memcmp(back, in, bn) == 0);
    char small[4] = { 'x', 'x', 'x', 'x' };
    cr_assert_eq(vks_json_write_string(in, sizeof in - 1, small, sizeof small), 0);
    for (size_t i = 0; i < sizeof small; i++)
        cr_assert_eq(small[i], 0);
}
