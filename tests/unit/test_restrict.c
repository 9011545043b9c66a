#include <criterion/criterion.h>
#include <string.h>

#include "vks_restrict.h"

static vks_status chk(const char *json, const char *domain, const char *dest, struct vks_err *e)
{
    struct vks_restrict_ctx ctx = { .domain = domain, .destination = dest };
    return vks_restrict_check(json, json ? strlen(json) : 0, &ctx, e);
}

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
    cr_assert(strstr(e.msg, "malformed") != NULL || strstr(e.msg, "not a known") != NULL,
              "message does not say malformed: %s", e.msg);
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

Test(restrict, broken_json_is_bad_response)
{
    struct vks_err e;
    cr_assert_eq(chk("{\"allowed_domains\":", "example.com", NULL, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(chk("[\"example.com\"]", "example.com", NULL, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(chk("\"example.com\"", "example.com", NULL, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(chk("{} x", "example.com", NULL, &e), VKS_E_BAD_RESPONSE);
    cr_assert_eq(chk("not json", "example.com", NULL, &e), VKS_E_BAD_RESPONSE);
}

Test(restrict, length_is_respected_and_limit_enforced)
{
    struct vks_err e;
    struct vks_restrict_ctx ctx = { .domain = "example.net" };
    /* only the first 2 bytes ("{}") are the metadata */
    const char *s = "{}{\"allowed_domains\":\"example.com\"}";
    cr_assert_eq(vks_restrict_check(s, 2, &ctx, &e), VKS_OK);
    cr_assert_eq(vks_restrict_check("{}", VKS_RESTRICT_MAX_JSON + 1, &ctx, &e), VKS_E_BAD_RESPONSE);
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
