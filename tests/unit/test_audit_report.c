/*
 * vks_audit_report: the aggregation behind `vks audit report` (the integration test
 * 87-audit-report.py runs it on a real trail): grouping, outcome classes, period boundaries,
 * per-file status of a break, the CSV guard, bad dates.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit_report.h"

static void feed(struct vks_audit_report *r, const char *json)
{
    struct json_object *o = json_tokener_parse(json);
    cr_assert_not_null(o, "%s", json);
    vks_audit_report_event(r, "t.jsonl", 1, o, false);
    json_object_put(o);
}

static void lookup(struct vks_audit_report *r, const char *ts, const char *path, int pid,
                   const char *outcome, const char *result, const char *code)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"ts\":\"%s\",\"type\":\"secret.lookup\",\"outcome\":\"%s\",\"result\":\"%s\","
             "\"code\":\"%s\",\"mount\":\"secret\",\"path\":\"%s\",\"actor\":{\"host\":\"h\","
             "\"pid\":%d,\"uid\":7,\"program\":\"kumod\"}}", ts, outcome, result, code, path, pid);
    feed(r, buf);
}

static char *render(struct vks_audit_report *r, enum vks_audit_report_format f)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    struct vks_err err;
    cr_assert_eq(vks_audit_report_write(r, f, m, &err), VKS_OK);
    fclose(m);
    return buf;
}

Test(audit_report, groups_by_credential_and_actor_across_pids)
{
    struct vks_audit_report *r;
    struct vks_err err;
    cr_assert_eq(vks_audit_report_new("2026-12-01", "2026-12-01", &r, &err), VKS_OK);
    lookup(r, "2026-11-30T23:59:59.999999Z", "a", 1, "hit", "success", "ok");     /* before */
    lookup(r, "2026-12-01T00:00:00.000000Z", "a", 1, "hit", "success", "ok");
    lookup(r, "2026-12-01T08:00:00.000000Z", "a", 2, "denied", "failure", "restricted");
    lookup(r, "2026-12-01T09:00:00.000000Z", "a", 3, "error", "failure", "permission_denied");
    lookup(r, "2026-12-01T10:00:00.000000Z", "a", 3, "error", "failure", "not_found");
    lookup(r, "2026-12-01T11:00:00.000000Z", "b", 3, "miss", "success", "ok");
    lookup(r, "2026-12-01T23:59:59.999999Z", "a", 4, "miss", "success", "ok");     /* last second */
    lookup(r, "2026-12-02T00:00:00.000000Z", "a", 4, "miss", "success", "ok");     /* after */
    vks_audit_report_set_verdict(r, 0, 0, "OK: 1 chain\n");
    char *j = render(r, VKS_REPORT_JSON);
    struct json_object *d = json_tokener_parse(j), *l, *g, *x;
    cr_assert(json_object_object_get_ex(d, "lookups", &l));
    cr_assert_eq(json_object_array_length(l), 2, "%s", j);
    g = json_object_array_get_idx(l, 0);
    static const struct { const char *k; int v; } want[] = {
        { "count", 5 }, { "served", 2 }, { "refused", 2 }, { "failed", 1 } };
    for (size_t i = 0; i < 4; i++) {
        cr_assert(json_object_object_get_ex(g, want[i].k, &x));
        cr_assert_eq(json_object_get_int(x), want[i].v, "%s: %s", want[i].k, j);
    }
    cr_assert(json_object_object_get_ex(g, "first", &x));
    cr_assert_str_eq(json_object_get_string(x), "2026-12-01T00:00:00.000000Z");
    cr_assert(json_object_object_get_ex(g, "last", &x));
    cr_assert_str_eq(json_object_get_string(x), "2026-12-01T23:59:59.999999Z");
    cr_assert(json_object_object_get_ex(g, "actor", &x));
    cr_assert_str_eq(json_object_get_string(x), "kumod@h uid 7");
    cr_assert(json_object_object_get_ex(d, "events_in_period", &x));
    cr_assert_eq(json_object_get_int(x), 6);
    json_object_put(d);
    free(j);
    vks_audit_report_free(r);
}

Test(audit_report, break_is_placed_in_its_file)
{
    struct vks_audit_report *r;
    struct vks_err err;
    cr_assert_eq(vks_audit_report_new("2026-12-01", "2026-12-31", &r, &err), VKS_OK);
    cr_assert_eq(vks_audit_report_add_file(r, "a.log", 1, 10, &err), VKS_OK);
    cr_assert_eq(vks_audit_report_add_file(r, "b.log", 11, 20, &err), VKS_OK);
    cr_assert_eq(vks_audit_report_add_file(r, "c.log", 21, 30, &err), VKS_OK);
    vks_audit_report_set_verdict(r, 1, 14, "FAIL: 1 problem; first: x\n");
    char *t = render(r, VKS_REPORT_TEXT);
    cr_assert(strncmp(t, "WARNING: AUDIT CHAIN BROKEN", 27) == 0, "%s", t);
    cr_assert(strstr(t, "file a.log: verified up to the break\n"), "%s", t);
    cr_assert(strstr(t, "file b.log: broken at line 4\n"), "%s", t);
    cr_assert(strstr(t, "file c.log: after the break (not trusted)\n"), "%s", t);
    cr_assert_eq(vks_audit_report_status(r), 1);
    free(t);
    vks_audit_report_set_verdict(r, 3, 0, "UNVERIFIED: ...");
    t = render(r, VKS_REPORT_TEXT);
    cr_assert(strstr(t, "file b.log: unverifiable without the key\n"), "%s", t);
    cr_assert_eq(vks_audit_report_status(r), 3);
    free(t);
    vks_audit_report_free(r);
}

Test(audit_report, csv_quotes_and_guards_formulas)
{
    struct vks_audit_report *r;
    struct vks_err err;
    cr_assert_eq(vks_audit_report_new("2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z", &r, &err), VKS_OK);
    feed(r, "{\"ts\":\"2026-12-01T10:00:00.5Z\",\"type\":\"cred.reveal\",\"operator\":\"=cmd|x\","
            "\"mount\":\"secret\",\"path\":\"p\",\"result\":\"success\",\"code\":\"ok\","
            "\"reason\":\"say \\\"hi\\\", ok\\nWARNING: forged\\u001b[2J\"}");
    feed(r, "{\"ts\":\"2026-12-01T10:00:01Z\",\"type\":\"cred.delete\",\"result\":\"success\"}");
    char *c = render(r, VKS_REPORT_CSV);
    cr_assert(strstr(c, "\"'=cmd|x\""), "a formula is defused: %s", c);
    cr_assert(strstr(c, "\"say \"\"hi\"\", ok?WARNING: forged?[2J\""), "quotes doubled, controls '?': %s", c);
    cr_assert_null(strstr(c, "cred.delete"), "10:00:01 is after --to 10:00:00: %s", c);
    free(c);
    vks_audit_report_free(r);
}

Test(audit_report, bad_dates_name_the_option)
{
    static const char *bad[][3] = {
        { "2026-12-1", "2026-12-02", "--from" }, { "2026-12-01", "2026-12-02T25:00:00Z", "--to" },
        { "2026-12-01", "2026-12-02T10:00:00", "--to" }, { "", "2026-12-02", "--from" },
        { "2026-12-03", "2026-12-02", "after" }, { "2026-12-01x", "2026-12-02", "--from" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vks_audit_report *r = (void *)1;
        struct vks_err err;
        cr_assert_eq(vks_audit_report_new(bad[i][0], bad[i][1], &r, &err), VKS_E_INVALID_ARG, "%zu", i);
        cr_assert_null(r);
        cr_assert(strstr(err.msg, bad[i][2]), "%zu: %s", i, err.msg);
    }
}

/* Issue 13: resets have their own section; issue 15: inbound logins are grouped apart from the
   outbound lookups of the same credential; issue 14: a refused vks serve login is a failed act. */
Test(audit_report, resets_inbound_logins_and_serve_logins)
{
    struct vks_audit_report *r;
    struct vks_err err;
    cr_assert_eq(vks_audit_report_new("2026-12-01", "2026-12-01", &r, &err), VKS_OK);
    feed(r, "{\"ts\":\"2026-12-01T10:00:00Z\",\"type\":\"cred.reset\",\"operator\":\"alice\","
            "\"mount\":\"secret\",\"path\":\"smtp-auth/a\",\"result\":\"success\",\"code\":\"ok\","
            "\"reason\":\"INC-7 host lost\",\"detail\":\"reset_id=r1 scope=name marked=1\"}");
    feed(r, "{\"ts\":\"2026-12-01T10:00:01Z\",\"type\":\"secret.lookup\",\"api\":\"inbound.auth\","
            "\"outcome\":\"denied\",\"result\":\"failure\",\"code\":\"revoked\",\"mount\":\"secret\","
            "\"path\":\"smtp-auth/a\",\"actor\":{\"host\":\"h\",\"pid\":1,\"uid\":0,\"program\":\"vks-agent\"}}");
    feed(r, "{\"ts\":\"2026-12-01T10:00:02Z\",\"type\":\"secret.lookup\",\"api\":\"get\","
            "\"outcome\":\"hit\",\"result\":\"success\",\"code\":\"ok\",\"mount\":\"secret\","
            "\"path\":\"smtp-auth/a\",\"actor\":{\"host\":\"h\",\"pid\":1,\"uid\":0,\"program\":\"vks-agent\"}}");
    feed(r, "{\"ts\":\"2026-12-01T10:00:03Z\",\"type\":\"serve.login\",\"operator\":\"mallory\","
            "\"result\":\"failure\",\"code\":\"permission_denied\",\"detail\":\"refused by Vault\"}");
    char *t = render(r, VKS_REPORT_TEXT);
    cr_assert(strstr(t, "\nemergency resets: 1\n  2026-12-01T10:00:00Z cred.reset secret/smtp-auth/a by alice: "
                        "success, reason \"INC-7 host lost\", reset_id=r1"), "%s", t);
    cr_assert(strstr(t, "secret/smtp-auth/a [inbound.auth] by vks-agent@h uid 0: refused 1, failed 0\n"), "%s", t);
    cr_assert(strstr(t, "secret/smtp-auth/a by vks-agent@h uid 0: 1 (served 1, refused 0"), "%s", t);
    cr_assert(strstr(t, "serve.login - by mallory: failure permission_denied"), "%s", t);
    free(t);
    char *j = render(r, VKS_REPORT_JSON);
    struct json_object *d = json_tokener_parse(j), *x, *y;
    cr_assert(json_object_object_get_ex(d, "resets", &x) && json_object_array_length(x) == 1, "%s", j);
    cr_assert(json_object_object_get_ex(json_object_array_get_idx(x, 0), "reason", &y));
    cr_assert_str_eq(json_object_get_string(y), "INC-7 host lost");
    cr_assert(json_object_object_get_ex(d, "lookups", &x) && json_object_array_length(x) == 2, "%s", j);
    cr_assert(json_object_object_get_ex(json_object_array_get_idx(x, 0), "api", &y));
    cr_assert_str_eq(json_object_get_string(y), "inbound.auth");
    json_object_put(d);
    free(j);
    char *c = render(r, VKS_REPORT_CSV);
    cr_assert(strstr(c, "\"reset\",\"2026-12-01T10:00:00Z\""), "%s", c);
    cr_assert(strstr(c, "\"inbound.auth\""), "%s", c);
    free(c);
    vks_audit_report_free(r);
}
