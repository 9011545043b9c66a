/*
 * vks-agent's inbound protocol parsers (issue 15), pure: the Dovecot auth protocol lines Postfix
 * sends (agent/sasl.c) and Postfix policy delegation requests (agent/policy.c). Each bad input
 * gets a reason naming what is wrong; nothing is read outside the line.
 */
#include <criterion/criterion.h>

#include "../../agent/policy.c"
#include "../../agent/sasl.c"

static int parse(const char *line, struct ag_sasl_line *l, bool *idk, char *why)
{
    return ag_sasl_parse(line, strlen(line), l, idk, why, 160);
}

Test(sasl, postfix_lines)
{
    struct ag_sasl_line l;
    bool idk;
    char why[160];
    cr_assert_eq(parse("VERSION\t1\t0", &l, &idk, why), 0);
    cr_assert(l.cmd == AG_SASL_VERSION && l.major == 1 && l.minor == 0);
    cr_assert_eq(parse("CPID\t31337", &l, &idk, why), 0);
    cr_assert_eq(l.cmd, AG_SASL_CPID);
    const char *auth = "AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.9\tsecured\tresp=AHUAcA==";
    cr_assert_eq(parse(auth, &l, &idk, why), 0, "%s", why);
    cr_assert(l.cmd == AG_SASL_AUTH && l.id == 7 && l.mech == AG_MECH_PLAIN && l.secured && l.has_resp);
    cr_assert_str_eq(l.rip, "192.0.2.9");
    cr_assert(l.data_len == 8 && memcmp(l.data, "AHUAcA==", 8) == 0);
    cr_assert_eq(parse("AUTH\t8\tLOGIN\tservice=smtp\trip=::1", &l, &idk, why), 0);
    cr_assert(l.mech == AG_MECH_LOGIN && !l.secured && !l.has_resp);
    cr_assert_eq(parse("CONT\t8\tdXNlcg==", &l, &idk, why), 0);
    cr_assert(l.cmd == AG_SASL_CONT && l.id == 8 && l.data_len == 8);
    cr_assert_eq(parse("CONT\t9", &l, &idk, why), 0);
    cr_assert(!l.has_resp);
}

Test(sasl, bad_lines_say_why)
{
    struct ag_sasl_line l;
    bool idk;
    char why[160];
    struct { const char *line, *want; bool id; } c[] = {
        { "HELLO\tx", "unknown command \"HELLO\"", false },
        { "", "unknown command", false },
        { "VERSION\t1", "VERSION needs", false },
        { "VERSION\tx\t0", "VERSION needs", false },
        { "CPID", "CPID needs", false },
        { "AUTH", "AUTH needs a numeric request id", false },
        { "AUTH\t01\tPLAIN", "AUTH needs a numeric request id", false },
        { "AUTH\t99999999999\tPLAIN", "AUTH needs a numeric request id", false },
        { "AUTH\t1", "AUTH without a mechanism", true },
        { "AUTH\t1\tCRAM-MD5", "mechanism CRAM-MD5 is not supported", true },
        { "AUTH\t1\tPLAIN\trip=0123456789012345678901234567890123456789012345678901234567890123456789", "rip= is longer", true },
        { "CONT\tx", "CONT needs a numeric request id", false },
        { "AUTH\t1\tPLAIN\r", "CR", false },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        cr_assert_eq(parse(c[i].line, &l, &idk, why), -1, "%s", c[i].line);
        cr_assert(strstr(why, c[i].want), "%s -> %s", c[i].line, why);
        cr_assert_eq(idk, c[i].id, "%s", c[i].line);
    }
    const char nul[] = "AUTH\t1\tPL\0AIN";
    cr_assert_eq(ag_sasl_parse(nul, sizeof nul - 1, &l, &idk, why, sizeof why), -1);
    char ctl[] = "\x01\x02\x7f";
    cr_assert_eq(parse(ctl, &l, &idk, why), -1);
    for (const char *p = why; *p; p++)
        cr_assert(*p >= 0x20 && *p < 0x7f, "the reason is printable: %s", why);
}

Test(sasl, payloads)
{
    vks_secret b;
    char why[160];
    size_t uo, ul, po, pl;
    cr_assert_eq(ag_sasl_b64("AHVzZXIAcGFzcw==", 16, &b, why, sizeof why), 0); /* \0user\0pass */
    cr_assert_eq(ag_sasl_plain_split(&b, &uo, &ul, &po, &pl, why, sizeof why), 0);
    cr_assert(ul == 4 && memcmp(b.data + uo, "user", 4) == 0 && pl == 4 && memcmp(b.data + po, "pass", 4) == 0);
    vks_secret_free(&b);
    cr_assert_eq(ag_sasl_b64("dXNlcgB1c2VyAHA=", 16, &b, why, sizeof why), 0); /* user\0user\0p: same authzid */
    cr_assert_eq(ag_sasl_plain_split(&b, &uo, &ul, &po, &pl, why, sizeof why), 0);
    vks_secret_free(&b);
    cr_assert_eq(ag_sasl_b64("b3RoZXIAdXNlcgBw", 16, &b, why, sizeof why), 0); /* other\0user\0p */
    cr_assert_eq(ag_sasl_plain_split(&b, &uo, &ul, &po, &pl, why, sizeof why), -1);
    cr_assert(strstr(why, "authzid differs"), "%s", why);
    vks_secret_free(&b);
    cr_assert_eq(ag_sasl_b64("AAB4", 4, &b, why, sizeof why), 0); /* \0\0x: empty authcid */
    cr_assert_eq(ag_sasl_plain_split(&b, &uo, &ul, &po, &pl, why, sizeof why), -1);
    vks_secret_free(&b);
    cr_assert_eq(ag_sasl_b64("dXNlcg==", 8, &b, why, sizeof why), 0); /* no NUL at all */
    cr_assert_eq(ag_sasl_plain_split(&b, &uo, &ul, &po, &pl, why, sizeof why), -1);
    cr_assert(strstr(why, "authzid NUL authcid NUL password"), "%s", why);
    vks_secret_free(&b);
    cr_assert_eq(ag_sasl_b64("!!!!", 4, &b, why, sizeof why), -1);
    cr_assert(strstr(why, "not base64"), "%s", why);
    char big[2100];
    memset(big, 'A', sizeof big);
    cr_assert_eq(ag_sasl_b64(big, sizeof big, &b, why, sizeof why), -1);
    cr_assert(strstr(why, "at most"), "%s", why);
    char hs[400];
    size_t n = ag_sasl_handshake(hs, sizeof hs, 5);
    cr_assert(n > 0 && strncmp(hs, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n", 52) == 0);
    cr_assert(strstr(hs, "CUID\t5\n") && strstr(hs, "\nDONE\n") && hs[n - 1] == '\n');
}

static int feed(struct ag_policy_req *r, const char *s)
{
    return ag_policy_feed(r, s, strlen(s));
}

Test(policy, request_and_errors)
{
    struct ag_policy_req r;
    ag_policy_reset(&r);
    cr_assert_eq(feed(&r, "request=smtpd_access_policy"), 0);
    cr_assert_eq(feed(&r, "protocol_state=RCPT"), 0);
    cr_assert_eq(feed(&r, "sasl_username=app@x.example"), 0);
    cr_assert_eq(feed(&r, "sender=a@b.example\r"), 0);
    cr_assert_eq(feed(&r, "client_address=192.0.2.1"), 0);
    cr_assert_eq(feed(&r, "ccert_subject=anything = with equals"), 0);
    cr_assert_eq(feed(&r, ""), 1);
    cr_assert(!r.bad && r.has_request && r.has_sasl);
    cr_assert_str_eq(r.request, "smtpd_access_policy");
    cr_assert_str_eq(r.sasl_username, "app@x.example");
    cr_assert_str_eq(r.sender, "a@b.example");
    cr_assert_str_eq(r.client_address, "192.0.2.1");
    cr_assert_str_eq(r.state, "RCPT");
    ag_policy_reset(&r);
    feed(&r, "no equals sign");
    feed(&r, "=value");
    cr_assert(r.bad && strstr(r.why, "not name=value"), "%s", r.why);
    ag_policy_reset(&r);
    char longv[700];
    memset(longv, 'a', sizeof longv);
    memcpy(longv, "sender=", 7);
    longv[sizeof longv - 1] = '\0';
    feed(&r, longv);
    cr_assert(r.bad && strstr(r.why, "attribute sender is too long"), "%s", r.why);
    ag_policy_reset(&r);
    feed(&r, "sender=a\x01b");
    cr_assert(r.bad && strstr(r.why, "control character"), "%s", r.why);
    ag_policy_reset(&r);
    for (int i = 0; i < AG_POLICY_ATTRS_MAX + 1; i++)
        feed(&r, "x=y");
    cr_assert(r.bad && strstr(r.why, "more than 256 attributes"), "%s", r.why);
    cr_assert_eq(feed(&r, "\r"), 1, "a CRLF blank line ends the request too");
}
