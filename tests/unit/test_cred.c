/* vks_cred, the pure parts: username/name rules, restriction lists (CIDR validation through
 * vks_restrict's parser), the summary, the generator (alphabet, length, rejection sampling and a
 * distribution sanity check) and the metadata record round trip. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "vks_cred.h"
#include "vks_restrict.h"

static vks_status user(const char *u, struct vks_err *e)
{
    return vks_cred_check_username(u, strlen(u), "--username", e);
}

Test(cred, username_rules)
{
    struct vks_err e;
    const char *good[] = { "a", "relay-1", "user@example.com", "A+b=c,d.e@f_g-h", "0", "x.y_z" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(user(good[i], &e), VKS_OK, "%s: %s", good[i], e.msg);
    char max[256];
    memset(max, 'u', 255);
    max[255] = '\0';
    cr_assert_eq(user(max, &e), VKS_OK, "255 characters are allowed");
    char over[257];
    memset(over, 'u', 256);
    over[256] = '\0';
    cr_assert_eq(user(over, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "--username") && strstr(e.msg, "256") && strstr(e.msg, "255"), "%s", e.msg);
    const char *bad[] = { "", "a b", "a:b", "a^b", "a/b", "a\"b", "a'b", "a;b", "a\tb", "é", "a*b", "a#b", "a%b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(user(bad[i], &e), VKS_E_INVALID_INPUT, "%s accepted", bad[i]);
        cr_assert(strstr(e.msg, "--username") != NULL, "the field is named: %s", e.msg);
    }
    cr_assert_eq(vks_cred_check_username("ab\0c", 4, "--username", &e), VKS_E_INVALID_INPUT, "a NUL byte");
    cr_assert(strstr(e.msg, "character 3") && strstr(e.msg, "0x00"), "%s", e.msg);
    user("a:b", &e);
    cr_assert(strstr(e.msg, "character 2 (':')"), "position and character: %s", e.msg);
}

Test(cred, name_and_prefix_rules)
{
    struct vks_err e;
    cr_assert_eq(vks_cred_check_name("example.com", "NAME", &e), VKS_OK);
    cr_assert_eq(vks_cred_check_name("tenant-a/example.com", "NAME", &e), VKS_OK);
    const char *bad[] = { "", "/x", "x/", "a//b", "..", "a/../b", "./a", "a b", "a?b", "a%2fb", "a\\b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(vks_cred_check_name(bad[i], "NAME", &e), VKS_E_INVALID_INPUT, "'%s' accepted", bad[i]);
        cr_assert(strstr(e.msg, "NAME"), "%s", e.msg);
    }
    cr_assert_eq(vks_cred_check_prefix("smtp-auth/", "--prefix", &e), VKS_OK);
    cr_assert_eq(vks_cred_check_prefix("", "--prefix", &e), VKS_OK);
    cr_assert_eq(vks_cred_check_prefix("smtp-auth", "--prefix", &e), VKS_E_INVALID_INPUT, "must end in /");
    cr_assert_eq(vks_cred_check_prefix("../x/", "--prefix", &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_cred_check_tenant("t-1.a_b", "--tenant", &e), VKS_OK);
    cr_assert_eq(vks_cred_check_tenant("T1", "--tenant", &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_cred_check_owner("ops team <ops@example.com>", "--owner", &e), VKS_OK);
    cr_assert_eq(vks_cred_check_owner("a\nb", "--owner", &e), VKS_E_INVALID_INPUT);
}

Test(cred, provided_password_rules)
{
    struct vks_err e;
    cr_assert_eq(vks_cred_check_password((const unsigned char *)"Pr0vider:Issued^pw", 18, &e), VKS_OK);
    cr_assert_eq(vks_cred_check_password((const unsigned char *)"", 0, &e), VKS_E_INVALID_INPUT);
    cr_assert_eq(vks_cred_check_password((const unsigned char *)"abcd efgh", 9, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "position 5") && !strstr(e.msg, "abcd") && !strstr(e.msg, "efgh"), "names the position, never the bytes: %s",
              e.msg);
}

static vks_status add(struct vks_cred_list *l, bool hosts, const char *s, struct vks_err *e)
{
    return vks_cred_list_add(l, hosts, s, hosts ? "--ip" : "--domain", e);
}

Test(cred, ip_and_cidr_validation)
{
    struct vks_cred_list l = { true, NULL, 0 };
    struct vks_err e;
    const char *good[] = { "192.0.2.10", "10.1.0.0/16", "0.0.0.0/0", "2001:db8::/32", "2001:DB8::1", "::1",
                           "::ffff:192.0.2.1", "192.0.2.0/24", "fe80::/10" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(add(&l, true, good[i], &e), VKS_OK, "%s: %s", good[i], e.msg);
    cr_assert_eq(l.n, 9);
    cr_assert_str_eq(l.v[4], "2001:db8::1", "canonical (lower case)");
    cr_assert_str_eq(l.v[6], "192.0.2.1", "a mapped IPv6 address is its IPv4 address, as the resolver compares it");
    cr_assert_eq(add(&l, true, "192.0.2.10", &e), VKS_OK);
    cr_assert_eq(l.n, 9, "a duplicate is not added twice");
    const char *bad[] = { "10.0.0.300", "10.0.0.0/33", "2001:db8::/129", "10.0.0", "relay.example.com",
                          "*.example.com", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/8", "2001:db8::1/32", "",
                          "10.0.0.1,10.0.0.2", "::ffff:10.0.0.0/64", "10.0.0.0/0x8" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(add(&l, true, bad[i], &e), VKS_E_INVALID_INPUT, "'%s' accepted", bad[i]);
        cr_assert(strstr(e.msg, "--ip"), "the field is named: %s", e.msg);
    }
    add(&l, true, "1.2.3.4/8", &e);
    cr_assert(strstr(e.msg, "bits set after the /8"), "host bits: %s", e.msg);
    cr_assert_eq(vks_cred_list_remove(&l, true, "2001:DB8::1", "--remove-ip", &e), VKS_OK, "canonical compare");
    cr_assert_eq(vks_cred_list_remove(&l, true, "203.0.113.1", "--remove-ip", &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "--remove-ip") && strstr(e.msg, "not in the list"), "%s", e.msg);
    vks_cred_list_set_all(&l);
}

Test(cred, domain_validation)
{
    struct vks_cred_list l = { true, NULL, 0 };
    struct vks_err e;
    cr_assert_eq(add(&l, false, "Example.COM.", &e), VKS_OK);
    cr_assert_str_eq(l.v[0], "example.com", "lower case, no trailing dot");
    cr_assert_eq(add(&l, false, "*.example.org", &e), VKS_OK);
    const char *bad[] = { "a..b", "*", "a.*.com", "-a.com", "a-.com", "192.168.1", "10.0.0.300", "exa mple.com",
                          "ex/ample.com", "", "a,b.com" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(add(&l, false, bad[i], &e), VKS_E_INVALID_INPUT, "'%s' accepted", bad[i]);
        cr_assert(strstr(e.msg, "--domain"), "%s", e.msg);
    }
    vks_cred_list_set_all(&l);
}

Test(cred, summary_and_join_limits)
{
    struct vks_cred_restrictions r = { { true, NULL, 0 }, { true, NULL, 0 } };
    char s[64];
    struct vks_err e;
    vks_cred_summary(&r, s, sizeof s);
    cr_assert_str_eq(s, "All domains, all IPs");
    add(&r.domains, false, "a.example", &e);
    add(&r.domains, false, "b.example", &e);
    add(&r.hosts, true, "192.0.2.1", &e);
    add(&r.hosts, true, "192.0.2.2", &e);
    add(&r.hosts, true, "10.0.0.0/8", &e);
    vks_cred_summary(&r, s, sizeof s);
    cr_assert_str_eq(s, "2 domains, 3 IPs");
    vks_cred_list_remove(&r.domains, false, "b.example", "--remove-domain", &e);
    vks_cred_list_set_all(&r.hosts);
    vks_cred_summary(&r, s, sizeof s);
    cr_assert_str_eq(s, "1 domain, all IPs");
    char *j = NULL;
    cr_assert_eq(vks_cred_list_join(&r.hosts, "--ip", &j, &e), VKS_OK);
    cr_assert_null(j, "all = no key");
    /* Vault keeps at most 512 characters in a custom_metadata value */
    for (int i = 0; i < 40; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "198.51.100.%d", i + 1);
        cr_assert_eq(add(&r.hosts, true, ip, &e), VKS_OK);
    }
    cr_assert_eq(vks_cred_list_join(&r.hosts, "--ip", &j, &e), VKS_E_INVALID_INPUT);
    cr_assert(strstr(e.msg, "--ip") && strstr(e.msg, "512"), "%s", e.msg);
    struct vks_cred_list empty = { false, NULL, 0 };
    cr_assert_eq(vks_cred_list_join(&empty, "--domain", &j, &e), VKS_E_INVALID_INPUT, "an empty list is refused");
    vks_cred_restrictions_free(&r);
}

Test(cred, sample_rejects_high_bytes)
{
    unsigned char rnd[256], out[256];
    for (int i = 0; i < 256; i++)
        rnd[i] = (unsigned char)i;
    size_t n = vks_cred_sample(rnd, 256, out, 256);
    cr_assert_eq(n, VKS_CRED_REJECT_FROM, "bytes 248..255 are discarded, the rest kept");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], (unsigned char)VKS_CRED_ALPHABET[i % 62]);
    unsigned char high[8] = { 248, 249, 250, 251, 252, 253, 254, 255 };
    cr_assert_eq(vks_cred_sample(high, 8, out, 4), 0, "only rejected bytes: nothing produced");
    unsigned char two[3] = { 255, 61, 62 };
    cr_assert_eq(vks_cred_sample(two, 3, out, 1), 1, "stops at want");
    cr_assert_eq(out[0], '9');
    /* every residue class mod 62 has exactly 4 accepted byte values: uniform */
    int per[62] = { 0 };
    for (int b = 0; b < VKS_CRED_REJECT_FROM; b++)
        per[b % 62]++;
    for (int i = 0; i < 62; i++)
        cr_assert_eq(per[i], 4);
}

Test(cred, generator_alphabet_length_distribution)
{
    static const char safe[] = VKS_CRED_ALPHABET;
    cr_assert_eq(strlen(safe), 62);
    cr_assert(strpbrk(safe, ":^\"'\\$`%&+/=?#@ ,;{}<>|*!~") == NULL, "no character needs escaping");
    long count[256] = { 0 };
    const int rounds = 2000;
    char prev[33] = "";
    for (int r = 0; r < rounds; r++) {
        vks_secret pw = VKS_SECRET_EMPTY;
        struct vks_err e;
        cr_assert_eq(vks_cred_generate(&pw, &e), VKS_OK, "%s", e.msg);
        cr_assert_eq(pw.len, VKS_CRED_PASSWORD_LEN);
        for (size_t i = 0; i < pw.len; i++) {
            cr_assert(memchr(safe, pw.data[i], 62) != NULL, "byte 0x%02x outside the alphabet", pw.data[i]);
            count[pw.data[i]]++;
        }
        cr_assert(memcmp(prev, pw.data, 32) != 0, "two generations differ");
        memcpy(prev, pw.data, 32);
        vks_secret_free(&pw);
    }
    /* 64000 draws over 62 symbols: expected 1032 each, sd ~32; a chi-square over 61 degrees of
       freedom stays far below 140 unless the sampling is biased (e.g. plain modulo without
       rejection skews 8 symbols by +25%, giving a chi-square over 400) */
    double expect = (double)rounds * 32 / 62, chi = 0;
    for (int i = 0; i < 62; i++) {
        double d = (double)count[(unsigned char)safe[i]] - expect;
        chi += d * d / expect;
    }
    cr_assert(chi < 140.0, "chi-square %.1f: the generator is not uniform", chi);
}

Test(cred, record_round_trip_keeps_operator_keys)
{
    const char *answer =
        "{\"data\":{\"current_version\":3,\"versions\":{\"3\":{\"created_time\":\"t3\",\"deletion_time\":\"\","
        "\"destroyed\":false},\"1\":{\"created_time\":\"t1\",\"deletion_time\":\"\",\"destroyed\":true}},"
        "\"custom_metadata\":{\"vks_cred\":\"1\",\"username\":\"relay\",\"state\":\"active\",\"rev\":\"3\","
        "\"allowed_domains\":\"example.com, *.example.com\",\"allowed_hosts\":\"192.0.2.1 relay.example.net\","
        "\"team\":\"mail-ops\"}}}";
    struct vks_cred_record r;
    struct vks_err e;
    cr_assert_eq(vks_cred_record_parse(answer, strlen(answer), "x", &r, &e), VKS_OK, "%s", e.msg);
    cr_assert(r.managed);
    cr_assert_eq(r.rev, 3);
    cr_assert_eq(r.vault_version, 3);
    cr_assert_eq(r.nversions, 2);
    cr_assert_eq(r.versions[0].version, 1, "versions ascending");
    cr_assert(r.versions[0].destroyed);
    cr_assert_eq(r.restrictions.hosts.n, 2, "a hand-written host name is kept");
    cr_assert_not(r.restrictions_bad);
    char *body = NULL;
    cr_assert_eq(vks_cred_metadata_body(&r, &body, &e), VKS_OK, "%s", e.msg);
    json_object *o = json_tokener_parse(body), *cm = NULL, *v = NULL;
    cr_assert(json_object_object_get_ex(o, "custom_metadata", &cm));
    cr_assert(json_object_object_get_ex(cm, "team", &v), "the operator's own key survives");
    cr_assert(json_object_object_get_ex(cm, "allowed_hosts", &v));
    cr_assert_str_eq(json_object_get_string(v), "192.0.2.1, relay.example.net");
    cr_assert(json_object_object_get_ex(o, "cas_required", &v) && json_object_get_boolean(v));
    cr_assert(json_object_object_length(cm) <= 64);
    json_object_object_foreach(cm, k, val)
    {
        cr_assert(strlen(k) <= 128 && json_object_get_string_len(val) >= 1 &&
                  json_object_get_string_len(val) <= 512, "within Vault's custom_metadata limits: %s", k);
    }
    /* what vks cred writes, the resolver understands */
    const char *cmj = json_object_to_json_string(cm);
    cr_assert_eq(vks_restrict_validate(cmj, strlen(cmj), NULL, &e), VKS_OK, "%s", e.msg);
    json_object_put(o);
    free(body);
    vks_cred_record_free(&r);
    const char *broken = "{\"data\":{\"custom_metadata\":{\"allowed_hosts\":\"10.0.0.0/33\"}}}";
    cr_assert_eq(vks_cred_record_parse(broken, strlen(broken), "y", &r, &e), VKS_OK);
    cr_assert(r.restrictions_bad, "a list the resolver refuses is flagged");
    vks_cred_record_free(&r);
    cr_assert_eq(vks_cred_record_parse("[1]", 3, "z", &r, &e), VKS_E_BAD_RESPONSE);
}

/* ------------------------------------------------------------------ the due-date policy */

Test(cred, time_parse_is_strict)
{
    int64_t t = -1;
    cr_assert(vks_cred_parse_time("1970-01-01T00:00:00Z", &t) && t == 0);
    cr_assert(vks_cred_parse_time("2026-12-03T17:30:00Z", &t) && t == 1796319000);
    cr_assert(vks_cred_parse_time("2024-02-29T23:59:59Z", &t), "a leap day");
    cr_assert(vks_cred_parse_time("2026-12-03T17:30:00.123456789Z", &t) && t == 1796319000, "Vault's fraction");
    const char *bad[] = { "", "2026-12-03", "2026-12-03T17:30:00", "2026-12-03 17:30:00Z", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-12-03T24:00:00Z",
                          "2026-12-03T17:60:00Z", "2026-12-03T17:30:60Z", "1969-12-31T23:59:59Z",
                          "2026-12-03T17:30:00+01:00", "2026-12-03T17:30:00.Z", "2026-12-03T17:30:00.1234567890Z",
                          "+026-12-03T17:30:00Z", "2026-1a-03T17:30:00Z", "2026-12-03T17:30:00Zjunk", "soon" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert(!vks_cred_parse_time(bad[i], &t), "\"%s\" must not parse", bad[i]);
    cr_assert(!vks_cred_parse_time(NULL, &t));
}

Test(cred, durations_and_days)
{
    int64_t s = -1;
    int d = 0;
    cr_assert(vks_cred_parse_duration("0", &s) && s == 0);
    cr_assert(vks_cred_parse_duration("30d", &s) && s == 30 * 86400);
    cr_assert(vks_cred_parse_duration("2w", &s) && s == 14 * 86400);
    cr_assert(vks_cred_parse_duration("12h", &s) && s == 12 * 3600);
    cr_assert(vks_cred_parse_duration("3650d", &s));
    const char *bad[] = { "", "d", "30", "30m", "-1d", "3651d", "522w", "1.5d", "30 d", "99999d", "0d0" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert(!vks_cred_parse_duration(bad[i], &s), "\"%s\" must not parse", bad[i]);
    cr_assert(vks_cred_parse_days("180", &d) && d == 180);
    cr_assert(vks_cred_parse_days("1", &d) && vks_cred_parse_days("3650", &d));
    const char *badd[] = { "", "0", "3651", "-5", "90d", "1e3", " 90", "00000090" };
    for (size_t i = 0; i < sizeof badd / sizeof *badd; i++)
        cr_assert(!vks_cred_parse_days(badd[i], &d), "\"%s\" must not parse", badd[i]);
}

/* A record with the given custom_metadata members (JSON text after the managed mark). */
static void rec_with(struct vks_cred_record *r, const char *members)
{
    char answer[1024];
    snprintf(answer, sizeof answer, "{\"data\":{\"current_version\":1,\"custom_metadata\":{\"vks_cred\":\"1\","
             "\"username\":\"u\",\"rev\":\"1\"%s%s}}}", members[0] ? "," : "", members);
    struct vks_err e;
    cr_assert_eq(vks_cred_record_parse(answer, strlen(answer), "n", r, &e), VKS_OK, "%s", e.msg);
}

static struct vks_cred_due eval(const char *members, int64_t now, int64_t within, int days)
{
    struct vks_cred_record r;
    struct vks_cred_due d;
    rec_with(&r, members);
    vks_cred_due_eval(&r, now, within, days, &d);
    vks_cred_record_free(&r);
    return d;
}

Test(cred, due_policy)
{
    const int64_t t0 = 1796319000, day = 86400; /* 2026-12-03T17:30:00Z */
    const char *rot = "\"rotated\":\"2026-12-03T17:30:00Z\"";
    struct vks_cred_due d = eval(rot, t0 + 100 * day, 30 * day, 180);
    cr_assert(d.status == VKS_CRED_DUE_OK && d.due == t0 + 180 * day && !d.per_credential);
    d = eval(rot, t0 + 151 * day, 30 * day, 180);
    cr_assert_eq(d.status, VKS_CRED_DUE_SOON, "29 days left, 30-day window");
    d = eval(rot, t0 + 149 * day, 30 * day, 180);
    cr_assert_eq(d.status, VKS_CRED_DUE_OK, "31 days left");
    d = eval(rot, t0 + 180 * day, 0, 180);
    cr_assert_eq(d.status, VKS_CRED_DUE_OVERDUE, "due at the very second: overdue");
    d = eval(rot, t0 + 100 * day, 0, 90);
    cr_assert(d.status == VKS_CRED_DUE_OVERDUE && d.days == 90, "the default policy applies");
    char m[256];
    snprintf(m, sizeof m, "%s,\"rotation_days\":\"30\"", rot);
    d = eval(m, t0 + 31 * day, 0, 180);
    cr_assert(d.status == VKS_CRED_DUE_OVERDUE && d.days == 30 && d.per_credential, "per-credential policy");
    snprintf(m, sizeof m, "%s,\"due\":\"2026-12-10T00:00:00Z\"", rot);
    d = eval(m, t0 + 8 * day, 0, 180);
    cr_assert(d.status == VKS_CRED_DUE_OVERDUE && d.stored_earlier, "an earlier stored due wins");
    snprintf(m, sizeof m, "%s,\"due\":\"2036-01-01T00:00:00Z\"", rot);
    d = eval(m, t0 + 181 * day, 0, 180);
    cr_assert(d.status == VKS_CRED_DUE_OVERDUE && !d.stored_earlier, "a later stored due never extends the policy");
}

Test(cred, due_fails_closed)
{
    const int64_t t0 = 1796319000;
    const char *bad[] = { "",                                                     /* rotated missing   */
                          "\"rotated\":\"yesterday\"",
                          "\"rotated\":\"2026-02-30T00:00:00Z\"",
                          "\"rotated\":\"2026-12-03T17:30:00Z\",\"due\":\"never\"",
                          "\"rotated\":\"2026-12-03T17:30:00Z\",\"due\":\"2026-12-03T17:30:00Z"
                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",       /* too long: not cut */
                          "\"rotated\":\"2026-12-03T17:30:00Z\",\"rotation_days\":\"0\"",
                          "\"rotated\":\"2026-12-03T17:30:00Z\",\"rotation_days\":\"90d\"" };
    const char *field[] = { "rotated", "rotated", "rotated", "due", "due", "rotation_days", "rotation_days" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct vks_cred_due d = eval(bad[i], t0, 0, 180);
        cr_assert_eq(d.status, VKS_CRED_DUE_INVALID, "case %zu is invalid, not skipped", i);
        cr_assert(strstr(d.why, field[i]) != NULL, "case %zu names %s: %s", i, field[i], d.why);
    }
}

Test(cred, due_reason_is_printable)
{
    /* a value Vault would refuse (control characters) from a misbehaving server: the reason that goes
       to the terminal shows '?' instead */
    struct vks_cred_due d = eval("\"rotated\":\"\\u001b[2J2026\\u0007\"", 1796319000, 0, 180);
    cr_assert_eq(d.status, VKS_CRED_DUE_INVALID);
    for (const char *p = d.why; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "printable: %s", d.why);
    cr_assert(strstr(d.why, "\"?[2J2026?\"") != NULL, "%s", d.why);
}
