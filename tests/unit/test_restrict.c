#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vks_restrict.h"

static vks_status chk(const char *json, const char *domain, const char *dest, struct vks_err *e)
{
    struct vks_restrict_ctx ctx = { .domain = domain, .destination = dest };
    return vks_restrict_check(json, json ? strlen(json) : 0, &ctx, e);
}

static void expect_malformed(const char *json, const char *field, const char *dom, const char *dst);

#define ALLOW(json, dom, dst)                                                                     \
    do {                                                                                          \
        struct vks_err e_;                                                                        \
        vks_status s_ = chk(json, dom, dst, &e_);                                                 \
        cr_assert_eq(s_, VKS_OK, "expected allow for %s / %s with %s: %s", dom ? dom : "(nil)", \
                     dst ? dst : "(nil)", json, e_.msg);                                          \
    } while (0)

#define DENY(json, dom, dst)                                                                      \
    do {                                                                                          \
        struct vks_err e_;                                                                        \
        vks_status s_ = chk(json, dom, dst, &e_);                                                 \
        cr_assert_eq(s_, VKS_E_RESTRICTED, "expected restricted for %s / %s with %s (got %s)",  \
                     dom ? dom : "(nil)", dst ? dst : "(nil)", json, vks_status_code(s_));       \
    } while (0)

Test(restrict, no_metadata_or_no_lists_is_unrestricted)
{
    ALLOW(NULL, NULL, NULL);
    ALLOW("", "example.com", NULL);
    ALLOW("null", "example.com", NULL);
    ALLOW("{}", NULL, NULL);
    ALLOW("{\"owner\":\"ops\",\"team\":\"mail\"}", "example.com", "10.0.0.1");
}

Test(restrict, exact_domains_case_insensitive_trailing_dot)
{
    const char *m = "{\"allowed_domains\":\"example.com, Example.ORG\"}";
    ALLOW(m, "example.com", NULL);
    ALLOW(m, "EXAMPLE.COM.", NULL);
    ALLOW(m, "example.org", NULL);
    DENY(m, "example.net", NULL);
    DENY(m, "sub.example.com", NULL);
    DENY(m, "notexample.com", NULL);
    DENY(m, NULL, NULL);
    DENY(m, "", NULL);
}

Test(restrict, wildcard_suffix_matches_subdomains_only)
{
    const char *m = "{\"allowed_domains\":\"*.example.com\"}";
    ALLOW(m, "a.example.com", NULL);
    ALLOW(m, "a.b.example.com", NULL);
    DENY(m, "example.com", NULL);
    DENY(m, "badexample.com", NULL);
    DENY(m, "a.example.com.evil.net", NULL);
}

Test(restrict, domain_denial_message_names_field_and_value)
{
    struct vks_err e;
    cr_assert_eq(chk("{\"allowed_domains\":\"example.com\"}", "other.net", NULL, &e),
                 VKS_E_RESTRICTED);
    cr_assert(strstr(e.msg, "allowed_domains") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "other.net") != NULL, "%s", e.msg);
    cr_assert_eq(chk("{\"allowed_domains\":\"example.com\"}", NULL, NULL, &e), VKS_E_RESTRICTED);
    cr_assert(strstr(e.msg, "no domain") != NULL, "%s", e.msg);
}

Test(restrict, hosts_ipv4_and_cidr)
{
    const char *m = "{\"allowed_hosts\":\"192.168.1.10 10.20.0.0/16\"}";
    ALLOW(m, NULL, "192.168.1.10");
    ALLOW(m, NULL, "192.168.1.10:25");
    ALLOW(m, NULL, "10.20.255.1");
    ALLOW(m, NULL, "[10.20.0.1]:587");
    DENY(m, NULL, "192.168.1.11");
    DENY(m, NULL, "10.21.0.1");
    DENY(m, NULL, "relay.example.com");
    DENY(m, NULL, NULL);
}

Test(restrict, hosts_ipv6_cidr_and_mapped_v4)
{
    const char *m = "{\"allowed_hosts\":\"2001:db8::/32, ::1, 127.0.0.0/8\"}";
    ALLOW(m, NULL, "2001:db8::25");
    ALLOW(m, NULL, "[2001:db8:ffff::1]:25");
    ALLOW(m, NULL, "::1");
    ALLOW(m, NULL, "[::1]:2525");
    ALLOW(m, NULL, "127.0.0.1");
    ALLOW(m, NULL, "::ffff:127.0.0.1");
    DENY(m, NULL, "2001:db9::1");
    DENY(m, NULL, "::2");
    DENY(m, NULL, "128.0.0.1");
}

/* IPv4-mapped IPv6 forms compare as their IPv4 address, in the list and in the destination */
Test(restrict, ipv4_mapped_forms_compare_as_ipv4)
{
    static const char *const lists[] = {
        "::ffff:192.0.2.1", "::FFFF:192.0.2.1", "::ffff:c000:201", "0:0:0:0:0:ffff:192.0.2.1",
        "::ffff:192.0.2.1/128", "::ffff:192.0.2.0/120", "::ffff:192.0.0.0/104",
        "192.0.2.1", "192.0.2.0/24",
    };
    static const char *const same[] = {
        "192.0.2.1", "192.0.2.1:25", "[192.0.2.1]:25", "::ffff:192.0.2.1", "[::ffff:192.0.2.1]:25",
        "::ffff:c000:201", "[::FFFF:C000:0201]:587",
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        char m[128];
        snprintf(m, sizeof m, "{\"allowed_hosts\":\"%s\"}", lists[i]);
        for (size_t j = 0; j < sizeof same / sizeof same[0]; j++)
            ALLOW(m, NULL, same[j]);
        DENY(m, NULL, "198.51.100.1");
        DENY(m, NULL, "::ffff:198.51.100.1");
        DENY(m, NULL, "2001:db8::1");
    }
    /* the mapped range is exactly the IPv4 range: its neighbours stay outside */
    const char *r = "{\"allowed_hosts\":\"::ffff:192.0.2.0/120\"}";
    ALLOW(r, NULL, "192.0.2.255");
    DENY(r, NULL, "192.0.3.0");
    DENY(r, NULL, "[::ffff:192.0.1.255]:25");
    ALLOW("{\"allowed_hosts\":\"::ffff:0.0.0.0/96\"}", NULL, "198.51.100.1"); /* all of IPv4 */
    DENY("{\"allowed_hosts\":\"::ffff:0.0.0.0/96\"}", NULL, "2001:db8::1");
    /* a mapped address is IPv4, not IPv6: an IPv6 range does not take it in */
    DENY("{\"allowed_hosts\":\"::/0\"}", NULL, "::ffff:192.0.2.1");
    DENY("{\"allowed_hosts\":\"::ffff:192.0.2.1\"}", NULL, "::192.0.2.1");
    /* a mapped-looking range shorter than /96 spans both families: malformed */
    expect_malformed("{\"allowed_hosts\":\"::ffff:0.0.0.0/95\"}", "allowed_hosts", NULL,
                     "192.0.2.1");
    expect_malformed("{\"allowed_hosts\":\"::ffff:192.0.2.0/64\"}", "allowed_hosts", NULL,
                     "::ffff:192.0.2.1");
    expect_malformed("{\"allowed_hosts\":\"::ffff:192.0.2.1/129\"}", "allowed_hosts", NULL,
                     "192.0.2.1");
}

/* A restriction key whose value is JSON null (or holds nulls) is present and malformed */
Test(restrict, null_lists_are_present_and_refused)
{
    expect_malformed("{\"allowed_domains\":null}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_hosts\":null}", "allowed_hosts", NULL, "192.0.2.1");
    expect_malformed("{\"allowed_hosts\":[null]}", "allowed_hosts", NULL, "192.0.2.1");
    expect_malformed("{\"allowed_domains\":[\"example.com\",null]}", "allowed_domains",
                     "example.com", NULL);
    expect_malformed("{\"allowed_domains\":{}}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"example.com\",\"allowed_hosts\":null}",
                     "allowed_hosts", "example.com", "192.0.2.1");
    bool r = false;
    struct vks_err e;
    cr_assert_eq(vks_restrict_validate("{\"allowed_hosts\":null}", 22, &r, &e), VKS_E_RESTRICTED);
    cr_assert(r, "a null list counts as present");
}

Test(restrict, cidr_prefix_edges)
{
    ALLOW("{\"allowed_hosts\":\"0.0.0.0/0\"}", NULL, "203.0.113.7");
    DENY("{\"allowed_hosts\":\"0.0.0.0/0\"}", NULL, "2001:db8::1");
    ALLOW("{\"allowed_hosts\":\"192.0.2.128/25\"}", NULL, "192.0.2.200");
    DENY("{\"allowed_hosts\":\"192.0.2.128/25\"}", NULL, "192.0.2.127");
    ALLOW("{\"allowed_hosts\":\"192.0.2.7/31\"}", NULL, "192.0.2.6");
}

Test(restrict, host_names_and_suffixes)
{
    const char *m = "{\"allowed_hosts\":\"relay.example.com,*.relays.example.org\"}";
    ALLOW(m, NULL, "relay.example.com");
    ALLOW(m, NULL, "RELAY.Example.com.");
    ALLOW(m, NULL, "relay.example.com:587");
    ALLOW(m, NULL, "mx1.relays.example.org");
    DENY(m, NULL, "relays.example.org");
    DENY(m, NULL, "other.example.com");
    DENY(m, NULL, "192.0.2.1"); /* names never match addresses: no DNS */
}

Test(restrict, both_lists_must_match)
{
    const char *m = "{\"allowed_domains\":\"example.com\",\"allowed_hosts\":\"192.168.1.10\"}";
    ALLOW(m, "example.com", "192.168.1.10");
    DENY(m, "example.com", "192.168.1.11");
    DENY(m, "example.net", "192.168.1.10");
    DENY(m, "example.com", NULL);
}

Test(restrict, json_array_form_is_accepted)
{
    const char *m = "{\"allowed_domains\":[\"example.com\",\" *.example.net \"]}";
    ALLOW(m, "example.com", NULL);
    ALLOW(m, "a.example.net", NULL);
    DENY(m, "example.net", NULL);
}

static void expect_malformed(const char *json, const char *field, const char *dom, const char *dst)
{
    struct vks_err e;
    vks_status s = chk(json, dom, dst, &e);
    cr_assert_eq(s, VKS_E_RESTRICTED, "%s: got %s", json, vks_status_code(s));
    cr_assert(strstr(e.msg, field) != NULL, "message does not name %s: %s", field, e.msg);
    cr_assert(strstr(e.msg, "malformed") != NULL || strstr(e.msg, "looks like a restriction") != NULL ||
                  strstr(e.msg, "cannot be read") != NULL,
              "message does not say malformed: %s", e.msg);
    cr_assert(strstr(e.msg, "refused") != NULL, "message does not say refused: %s", e.msg);
    bool restricted = false;
    cr_assert_eq(vks_restrict_validate(json, strlen(json), &restricted, &e), VKS_E_RESTRICTED,
                 "validate accepted %s", json);
}

Test(restrict, malformed_lists_fail_closed_even_when_an_entry_matches)
{
    /* each would "match" on its first entry; a broken later entry must still refuse */
    expect_malformed("{\"allowed_domains\":\"example.com, exa mple..com\"}", "allowed_domains",
                     "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"example.com,,example.org\"}", "allowed_domains",
                     "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"example.com,\"}", "allowed_domains", "example.com",
                     NULL);
    expect_malformed("{\"allowed_domains\":\",example.com\"}", "allowed_domains", "example.com",
                     NULL);
    expect_malformed("{\"allowed_domains\":\"\"}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"   \"}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"*\"}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"a.*.com\"}", "allowed_domains", "a.b.com", NULL);
    expect_malformed("{\"allowed_domains\":\"*example.com\"}", "allowed_domains", "x.example.com",
                     NULL);
    expect_malformed("{\"allowed_domains\":\"-bad.com\"}", "allowed_domains", "x.com", NULL);
    expect_malformed("{\"allowed_domains\":42}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":true}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":[]}", "allowed_domains", "example.com", NULL);
    expect_malformed("{\"allowed_domains\":[\"example.com\", 7]}", "allowed_domains",
                     "example.com", NULL);
    expect_malformed("{\"allowed_domains\":\"192.168.1.10\"}", "allowed_domains", "example.com",
                     NULL);
    expect_malformed("{\"allowed_hosts\":\"192.168.1.10, 10.0.0.0/33\"}", "allowed_hosts", NULL,
                     "192.168.1.10");
    expect_malformed("{\"allowed_hosts\":\"192.168.1.10, 10.0.0.300\"}", "allowed_hosts", NULL,
                     "192.168.1.10");
    expect_malformed("{\"allowed_hosts\":\"192.168.1.10, 10.0.0.0/\"}", "allowed_hosts", NULL,
                     "192.168.1.10");
    expect_malformed("{\"allowed_hosts\":\"::1, 2001:db8::/129\"}", "allowed_hosts", NULL, "::1");
    expect_malformed("{\"allowed_hosts\":\"::1, 2001:db8::/-1\"}", "allowed_hosts", NULL, "::1");
    expect_malformed("{\"allowed_hosts\":\"::1, host/name\"}", "allowed_hosts", NULL, "::1");
    expect_malformed("{\"allowed_hosts\":\"192.168.1\"}", "allowed_hosts", NULL, "192.168.1.10");
    expect_malformed("{\"allowed_hosts\":\"r\\u00e9lay.example.com\"}", "allowed_hosts", NULL,
                     "relay.example.com");
}

Test(restrict, unknown_allowed_key_is_refused)
{
    expect_malformed("{\"allowed_domain\":\"example.com\"}", "allowed_domain", "other.net", NULL);
    expect_malformed("{\"allowed_ips\":\"10.0.0.1\"}", "allowed_ips", NULL, "10.0.0.2");
}

Test(restrict, malformed_entry_message_quotes_position)
{
    struct vks_err e;
    chk("{\"allowed_hosts\":\"192.168.1.10, relay.example.com, 10.0.0.0/40\"}", NULL, "x", &e);
    cr_assert(strstr(e.msg, "entry 3") != NULL, "%s", e.msg);
    cr_assert(strstr(e.msg, "10.0.0.0/40") != NULL, "%s", e.msg);
}

/* custom_metadata that is not an object (or not JSON) might hide a restriction: refused */
Test(restrict, metadata_that_is_not_an_object_is_refused)
{
    static const char *const cases[] = {
        "\"allowed_domains=example.com\"", "\"\"", "[\"example.com\"]", "[]",
        "[{\"allowed_domains\":\"example.com\"}]", "42", "0", "-1.5e3", "true", "false",
        "{\"allowed_domains\":", "{} x", "not json", "{\"a\":\"b\"", "nul", "null x",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_malformed(cases[i], "custom_metadata", "example.com", "192.0.2.1");
        struct vks_err e;
        chk(cases[i], "example.com", "192.0.2.1", &e);
        cr_assert(strstr(e.msg, "cannot be read") != NULL, "%s: %s", cases[i], e.msg);
    }
    struct vks_err e;
    chk("[1]", NULL, NULL, &e);
    cr_assert(strstr(e.msg, "array") != NULL, "names the JSON type: %s", e.msg);
    chk("\"x\"", NULL, NULL, &e);
    cr_assert(strstr(e.msg, "string") != NULL, "names the JSON type: %s", e.msg);
    /* the literal null is how Vault says "no custom_metadata" */
    ALLOW("null", "example.com", NULL);
    ALLOW(" null\n", "example.com", NULL);
}

/* A key that reads as allowed_domains / allowed_hosts (or any allow-list) in another case or
 * with other separators would silently lift the restriction if ignored: refused. */
Test(restrict, restriction_keys_in_another_spelling_are_refused)
{
    static const char *const keys[] = {
        "Allowed_Domains", "ALLOWED_HOSTS", "allowed-domains", "allowed domains", "allowed.hosts",
        "allowedDomains", "AllowedHosts", " allowed_domains", "allowed_domains ", "allowed__domains",
        "allowed_domain", "allowed_ips", "allowed_destinations", "allow_domains", "allowlist",
        "allowed", "hosts_allowed", "domains-allowed", "x-allowed-hosts-allowed",
        "disallowed_domains", "allowance",
        "allowed_domains\u200b", "allowed_dom\u0430ins",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char json[256];
        /* the context matches the value, so only the key's refusal can deny */
        snprintf(json, sizeof json, "{\"%s\":\"example.com\"}", keys[i]);
        expect_malformed(json, "looks like a restriction", "example.com", "example.com");
        /* also next to a valid list that would allow */
        snprintf(json, sizeof json, "{\"allowed_domains\":\"example.com\",\"%s\":\"x.example\"}",
                 keys[i]);
        expect_malformed(json, "custom_metadata key", "example.com", NULL);
    }
    struct vks_err e;
    chk("{\"Allowed_Domains\":\"example.com\"}", "example.com", NULL, &e);
    cr_assert(strstr(e.msg, "Allowed_Domains") != NULL, "names the key: %s", e.msg);
    /* keys that do not read as a restriction are other people's metadata */
    ALLOW("{\"owner\":\"ops\",\"team\":\"mail\",\"shallow\":\"y\",\"callow_x\":\"z\"}",
          "example.com", NULL);
    ALLOW("{\"allowed_domains\":\"example.com\",\"note\":\"allowed for mail\"}", "example.com", NULL);
}

Test(restrict, length_is_respected_and_limit_enforced)
{
    struct vks_err e;
    struct vks_restrict_ctx ctx = { .domain = "example.net" };
    /* only the first 2 bytes ("{}") are the metadata */
    const char *s = "{}{\"allowed_domains\":\"example.com\"}";
    cr_assert_eq(vks_restrict_check(s, 2, &ctx, &e), VKS_OK);
    cr_assert_eq(vks_restrict_check("{}", VKS_RESTRICT_MAX_JSON + 1, &ctx, &e), VKS_E_RESTRICTED);
    cr_assert(strstr(e.msg, "too long") != NULL, "%s", e.msg);
    cr_assert_eq(vks_restrict_check("{}", 2, NULL, &e), VKS_E_INVALID_ARG);
}

Test(restrict, validate_reports_presence)
{
    struct vks_err e;
    bool r = true;
    cr_assert_eq(vks_restrict_validate("{\"owner\":\"x\"}", 13, &r, &e), VKS_OK);
    cr_assert(!r);
    const char *m = "{\"allowed_hosts\":\"10.0.0.0/8\"}";
    cr_assert_eq(vks_restrict_validate(m, strlen(m), &r, &e), VKS_OK);
    cr_assert(r);
    cr_assert_eq(vks_restrict_validate(NULL, 0, &r, &e), VKS_OK);
    cr_assert(!r);
}

Test(restrict, messages_never_echo_unprintable_bytes)
{
    struct vks_err e;
    chk("{\"allowed_domains\":\"ok.com, bad\\u0001\\u001bname\"}", "ok.com", NULL, &e);
    for (const char *p = e.msg; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "unprintable in %s", e.msg);
}
