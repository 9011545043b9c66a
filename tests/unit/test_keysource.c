#include <criterion/criterion.h>
#include <string.h>

#include "vks_keysource.h"

#define S(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_STRING, .str = (v), .len = strlen(v) })
#define I(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_INTEGER, .ival = (v) })
#define T(n, len) ((struct vks_field){ .name = (n), .type = VKS_FT_TABLE, .ival = (len) })
#define B(n, v) ((struct vks_field){ .name = (n), .type = VKS_FT_BOOLEAN, .bval = (v) })
#define N(a) (sizeof(a) / sizeof((a)[0]))

static vks_status parse(const struct vks_field *f, size_t n, struct vks_keysource *ks, struct vks_err *e)
{
    vks_err_clear(e);
    return vks_keysource_from_fields(f, n, ks, e);
}

Test(keysource, string_is_a_file_path)
{
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(vks_keysource_from_path("tiger", 5, &ks, &e), VKS_OK);
    cr_assert_eq(ks.kind, VKS_KS_FILE);
    cr_assert_str_eq(ks.file_path, "tiger");
    vks_keysource_clear(&ks);
    vks_keysource_clear(&ks); /* idempotent */
    cr_assert_eq(vks_keysource_from_path("", 0, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "file path") != NULL, "%s", e.msg);
    cr_assert_eq(vks_keysource_from_path("a\0b", 3, &ks, &e), VKS_E_BAD_KEYSOURCE);
}

Test(keysource, key_data_wins_and_may_be_binary)
{
    struct vks_field f[] = {
        { .name = "key_data", .type = VKS_FT_STRING, .str = "ab\0cd", .len = 5 },
        S("vault_mount", "secret"), S("vault_path", "p"), S("event_name", "e"), T("event_args", 0),
    };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(parse(f, N(f), &ks, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(ks.kind, VKS_KS_DATA);
    cr_assert_eq(ks.key_data.len, 5);
    cr_assert_eq(memcmp(ks.key_data.data, "ab\0cd", 5), 0);
    vks_keysource_clear(&ks);
    cr_assert_null(ks.key_data.data);

    struct vks_field empty[] = { { .name = "key_data", .type = VKS_FT_STRING, .str = "", .len = 0 } };
    cr_assert_eq(parse(empty, 1, &ks, &e), VKS_OK);
    cr_assert_eq(ks.key_data.len, 0);
    vks_keysource_clear(&ks);

    struct vks_field wrong[] = { I("key_data", 3) };
    cr_assert_eq(parse(wrong, 1, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "key_data must be a string") != NULL, "%s", e.msg);
}

Test(keysource, vault_defaults_and_extensions)
{
    struct vks_field f[] = { S("vault_mount", "secret/"), S("vault_path", "smtp-auth/example.com"),
                             S("comment", "ignored like KumoMTA") };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(parse(f, N(f), &ks, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(ks.kind, VKS_KS_VAULT);
    cr_assert_str_eq(ks.mount, "secret");
    cr_assert_str_eq(ks.path, "smtp-auth/example.com");
    cr_assert_str_eq(ks.key, "key");
    cr_assert_null(ks.address);
    cr_assert_not(ks.has_token);
    cr_assert_null(ks.namespace_);
    cr_assert_eq(ks.kv_version, VKS_KV_UNSET);
    cr_assert_eq(ks.version, 0);
    char d[256];
    cr_assert_str_eq(vks_keysource_describe(&ks, "https://127.0.0.1:8200", d, sizeof d),
                     "vault mount \"secret\" path \"smtp-auth/example.com\" key \"key\" at https://127.0.0.1:8200");
    vks_keysource_clear(&ks);

    struct vks_field g[] = {
        S("vault_mount", "kv"), S("vault_path", "a/b"), S("vault_key", "password"),
        S("vault_address", "https://vault.example:8200/"), S("vault_token", "ks-token-UNIT-5b1d0e77"),
        S("vault_namespace", "team-a"), S("vault_kv_version", "auto"), I("vault_version", 3),
    };
    cr_assert_eq(parse(g, N(g), &ks, &e), VKS_OK, "%s", e.msg);
    cr_assert_str_eq(ks.key, "password");
    cr_assert_str_eq(ks.address, "https://vault.example:8200");
    cr_assert(ks.has_token);
    cr_assert_eq(ks.token.len, strlen("ks-token-UNIT-5b1d0e77"));
    cr_assert_str_eq(ks.namespace_, "team-a");
    cr_assert_eq(ks.kv_version, VKS_KV_AUTO);
    cr_assert_eq(ks.version, 3);
    vks_keysource_describe(&ks, NULL, d, sizeof d);
    cr_assert(strstr(d, "ks-token") == NULL, "description leaks the token: %s", d);
    cr_assert_str_eq(d, "vault mount \"kv\" path \"a/b\" key \"password\" namespace \"team-a\" version 3 at "
                        "https://vault.example:8200");

    struct vks_keysource copy;
    cr_assert_eq(vks_keysource_copy(&ks, &copy, &e), VKS_OK);
    cr_assert_neq(copy.token.data, ks.token.data);
    cr_assert_eq(memcmp(copy.token.data, ks.token.data, ks.token.len), 0);
    cr_assert_str_eq(copy.path, "a/b");
    vks_keysource_clear(&copy);
    vks_keysource_clear(&ks);
}

Test(keysource, kv_version_forms)
{
    struct vks_keysource ks;
    struct vks_err e;
    struct vks_field ok1[] = { S("vault_mount", "m"), S("vault_path", "p"), I("vault_kv_version", 1) };
    cr_assert_eq(parse(ok1, 3, &ks, &e), VKS_OK);
    cr_assert_eq(ks.kv_version, 1);
    vks_keysource_clear(&ks);
    struct vks_field ok2[] = { S("vault_mount", "m"), S("vault_path", "p"), S("vault_kv_version", "2") };
    cr_assert_eq(parse(ok2, 3, &ks, &e), VKS_OK);
    cr_assert_eq(ks.kv_version, 2);
    vks_keysource_clear(&ks);
    struct vks_field bad[] = { S("vault_mount", "m"), S("vault_path", "p"), I("vault_kv_version", 3) };
    cr_assert_eq(parse(bad, 3, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_kv_version") != NULL, "%s", e.msg);
    struct vks_field pin1[] = { S("vault_mount", "m"), S("vault_path", "p"), I("vault_kv_version", 1),
                                I("vault_version", 2) };
    cr_assert_eq(parse(pin1, 4, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_version") != NULL, "%s", e.msg);
    struct vks_field neg[] = { S("vault_mount", "m"), S("vault_path", "p"), I("vault_version", -1) };
    cr_assert_eq(parse(neg, 3, &ks, &e), VKS_E_BAD_KEYSOURCE);
    struct vks_field num[] = { S("vault_mount", "m"), S("vault_path", "p"),
                               { .name = "vault_version", .type = VKS_FT_NUMBER, .dval = 1.5 } };
    cr_assert_eq(parse(num, 3, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_version must be a whole number") != NULL, "%s", e.msg);
    struct vks_field str[] = { S("vault_mount", "m"), S("vault_path", "p"), S("vault_version", "7") };
    cr_assert_eq(parse(str, 3, &ks, &e), VKS_OK);
    cr_assert_eq(ks.version, 7);
    vks_keysource_clear(&ks);
}

Test(keysource, unknown_vault_field_is_an_error_naming_it)
{
    struct vks_field f[] = { S("vault_mount", "m"), S("vault_path", "p"), S("vault_keys", "password") };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(parse(f, N(f), &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_keys") != NULL, "%s", e.msg);
    cr_assert_eq(ks.kind, VKS_KS_NONE);
    /* even next to key_data, which would otherwise win */
    struct vks_field g[] = { S("key_data", "x"), S("vault_tokn", "t") };
    cr_assert_eq(parse(g, N(g), &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_tokn") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "\"t\"") == NULL);
}

Test(keysource, incomplete_forms_say_what_is_missing)
{
    struct vks_keysource ks;
    struct vks_err e;
    struct vks_field a[] = { S("vault_mount", "m") };
    cr_assert_eq(parse(a, 1, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "no vault_path") != NULL, "%s", e.msg);
    struct vks_field b[] = { S("vault_path", "p") };
    cr_assert_eq(parse(b, 1, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "no vault_mount") != NULL, "%s", e.msg);
    struct vks_field c[] = { S("event_name", "get") };
    cr_assert_eq(parse(c, 1, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "no event_args") != NULL, "%s", e.msg);
    struct vks_field d[] = { S("vault_key", "k") };
    cr_assert_eq(parse(d, 1, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_key but no vault_mount") != NULL, "%s", e.msg);
    cr_assert_eq(parse(NULL, 0, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "matches no form") != NULL, "%s", e.msg);
    struct vks_field ev[] = { S("event_name", "get"), S("event_args", "x") };
    cr_assert_eq(parse(ev, 2, &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "event_args must be a table") != NULL, "%s", e.msg);
}

Test(keysource, event_form)
{
    struct vks_field f[] = { S("event_name", "get_password"), T("event_args", 2) };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(parse(f, N(f), &ks, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(ks.kind, VKS_KS_EVENT);
    cr_assert_str_eq(ks.event_name, "get_password");
    cr_assert_eq(ks.event_nargs, 2);
    char d[64];
    cr_assert_str_eq(vks_keysource_describe(&ks, NULL, d, sizeof d), "event \"get_password\"");
    vks_keysource_clear(&ks);
}

Test(keysource, field_types_are_checked_and_named)
{
    struct vks_keysource ks;
    struct vks_err e;
    const char *names[] = { "vault_mount", "vault_path", "vault_key", "vault_address", "vault_token",
                            "vault_namespace" };
    for (size_t i = 0; i < N(names); i++) {
        struct vks_field f[] = { S("vault_mount", "m"), S("vault_path", "p"), B(names[i], true) };
        if (i < 2)
            f[i] = B(names[i], true);
        cr_assert_eq(parse(f, 3, &ks, &e), VKS_E_BAD_KEYSOURCE, "%s", names[i]);
        cr_assert(strstr(e.msg, names[i]) != NULL, "%s: %s", names[i], e.msg);
        cr_assert(strstr(e.msg, "boolean") != NULL, "%s: %s", names[i], e.msg);
    }
}

Test(keysource, paths_cannot_escape_their_mount)
{
    struct vks_keysource ks;
    struct vks_err e;
    const char *bad_paths[] = { "../sys/seal", "a/../../b", "a/./b", ".", "a?list=true", "a#x", "a%2e%2e",
                                "a\nb", "" };
    for (size_t i = 0; i < N(bad_paths); i++) {
        struct vks_field f[] = { S("vault_mount", "secret"), S("vault_path", bad_paths[i]) };
        cr_assert_eq(parse(f, 2, &ks, &e), VKS_E_BAD_KEYSOURCE, "path %zu accepted", i);
        cr_assert(strstr(e.msg, "vault_path") != NULL, "%s", e.msg);
    }
    struct vks_field m[] = { S("vault_mount", "/secret"), S("vault_path", "p") };
    cr_assert_eq(parse(m, 2, &ks, &e), VKS_E_BAD_KEYSOURCE);
    /* KumoMTA's dkim helper can produce a double slash: left to the server, not refused */
    struct vks_field ok[] = { S("vault_mount", "secret"), S("vault_path", "dkim//example.com/s1..x") };
    cr_assert_eq(parse(ok, 2, &ks, &e), VKS_OK, "%s", e.msg);
    vks_keysource_clear(&ks);
}

Test(keysource, addresses_are_validated_without_panicking)
{
    struct vks_err e;
    const char *good[] = { "https://127.0.0.1:8200", "http://localhost:1", "https://vault.example.com",
                           "https://[::1]:8200", "https://v.example/prefix" };
    for (size_t i = 0; i < N(good); i++)
        cr_assert_eq(vks_address_validate(good[i], strlen(good[i]), "VAULT_ADDR", &e), VKS_OK, "%s: %s",
                     good[i], e.msg);
    const char *bad[] = { "", "127.0.0.1:8200", "ftp://x", "https://", "https://:80", "https://h:0",
                          "https://h:65536", "https://h:x", "https://h?x=1", "https://h#f", "https://a b",
                          "https://[zz]:1", "https://h:123456" };
    for (size_t i = 0; i < N(bad); i++) {
        cr_assert_eq(vks_address_validate(bad[i], strlen(bad[i]), "VAULT_ADDR", &e), VKS_E_BAD_KEYSOURCE,
                     "%s accepted", bad[i]);
        cr_assert(strncmp(e.msg, "VAULT_ADDR", 10) == 0, "%s", e.msg);
    }
    const char *cred = "https://user:hunter2-UNIT-secret@vault:8200";
    cr_assert_eq(vks_address_validate(cred, strlen(cred), "vault_address", &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "hunter2") == NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "user information") != NULL, "%s", e.msg);

    cr_assert(vks_address_is_loopback("http://127.0.0.1:8200"));
    cr_assert(vks_address_is_loopback("http://localhost"));
    cr_assert(vks_address_is_loopback("http://[::1]:1"));
    cr_assert_not(vks_address_is_loopback("http://127.0.0.1.evil.example"));
    cr_assert_not(vks_address_is_loopback("http://vault.example"));
}

Test(keysource, token_is_never_in_messages)
{
    const char *tok = "ks-token-UNIT-5b1d0e77";
    struct vks_field f[] = { S("vault_mount", "m"), S("vault_path", "p"), S("vault_token", tok),
                             I("vault_kv_version", 9) };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(parse(f, N(f), &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, tok) == NULL);
    cr_assert_null(ks.token.data, "token slot not released on failure");
    struct vks_field g[] = { S("vault_mount", "m"), S("vault_path", "p"),
                             { .name = "vault_token", .type = VKS_FT_STRING, .str = "a\0b", .len = 3 } };
    cr_assert_eq(parse(g, N(g), &ks, &e), VKS_E_BAD_KEYSOURCE);
    cr_assert(strstr(e.msg, "vault_token") != NULL, "%s", e.msg);
}

Test(keysource, describe_truncates_safely)
{
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(vks_keysource_from_path("/a/very/long/path/name", 22, &ks, &e), VKS_OK);
    char d[10];
    vks_keysource_describe(&ks, NULL, d, sizeof d);
    cr_assert_str_eq(d, "file \"...");
    vks_keysource_clear(&ks);
    cr_assert_str_eq(vks_keysource_kind_name(VKS_KS_DATA), "key_data");
}
