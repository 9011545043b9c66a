/*
 * Verifier edge cases found by fuzzing. vks_audit_verifier_first_bad for a problem of no one line: an anchored head (--head) that never
 * appears is reported with line 0, whatever was fed before it (found by fuzz_audit_verify, which
 * checks that a reported line is one that was fed).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vks_audit.h"

#define HEAD "6a88a797d26b72f68b15f52814b906815dd0243252f23f34e819b072eada9708"

static void check_missing_head(const char **lines, size_t n)
{
    struct vks_audit_verifier *v = NULL;
    struct vks_err err;
    cr_assert_eq(vks_audit_verifier_new(NULL, "file", &v, &err), VKS_OK);
    cr_assert_eq(vks_audit_verifier_add_head(v, HEAD, &err), VKS_OK);
    for (size_t i = 0; i < n; i++)
        vks_audit_verifier_line(v, "t.jsonl", lines[i], strlen(lines[i]));
    cr_assert_eq(vks_audit_verifier_finish(v, NULL), 1, "a head that never appears is a problem");
    unsigned long line = 99;
    long long seq = 99;
    vks_audit_verifier_first_bad(v, &line, &seq);
    cr_assert_eq(line, 0, "no line is to blame, got %lu after %zu lines", line, n);
    cr_assert_eq(seq, -1);
    vks_audit_verifier_free(v);
}

Test(audit_verify_edges, missing_head_in_an_empty_log_is_line_0)
{
    check_missing_head(NULL, 0);
}

Test(audit_verify_edges, missing_head_after_unrelated_lines_is_line_0)
{
    const char *lines[] = { "{\"v\":1}", "{}" };
    /* these lines are problems of their own: the first problem keeps its line */
    struct vks_audit_verifier *v = NULL;
    struct vks_err err;
    cr_assert_eq(vks_audit_verifier_new(NULL, "file", &v, &err), VKS_OK);
    cr_assert_eq(vks_audit_verifier_add_head(v, HEAD, &err), VKS_OK);
    for (size_t i = 0; i < 2; i++)
        vks_audit_verifier_line(v, "t.jsonl", lines[i], strlen(lines[i]));
    cr_assert_eq(vks_audit_verifier_finish(v, NULL), 1);
    unsigned long line = 99;
    long long seq = 99;
    vks_audit_verifier_first_bad(v, &line, &seq);
    cr_assert_eq(line, 1, "the first bad line is still the first line, got %lu", line);
    vks_audit_verifier_free(v);
}

/* A line whose seq is past 2^53 is malformed (found by fuzz_audit_line: seq INT64_MAX overflowed
 * the verifier's seq + 1). Only its seq differs from a line the verifier accepts as an event. */
static long long first_bad_for_seq(const char *seq)
{
    char line[400];
    snprintf(line, sizeof line,
             "{\"v\":1,\"chain\":\"0123456789abcdef0123456789abcdef\",\"seq\":%s,\"type\":\"audit.open\","
             "\"reason\":\"start\",\"sink\":null,\"key_id\":\"k\",\"prev_mac\":\"%064d\",\"mac\":\"%064d\"}",
             seq, 0, 1);
    struct vks_audit_verifier *v = NULL;
    struct vks_err err;
    cr_assert_eq(vks_audit_verifier_new(NULL, "file", &v, &err), VKS_OK);
    vks_audit_verifier_line(v, "t.jsonl", line, strlen(line));
    vks_audit_verifier_line(v, "t.jsonl", line, strlen(line)); /* the seq + 1 step */
    (void)vks_audit_verifier_finish(v, NULL);
    unsigned long bad = 0;
    long long bad_seq = 0;
    vks_audit_verifier_first_bad(v, &bad, &bad_seq);
    vks_audit_verifier_free(v);
    return bad_seq;
}

Test(audit_verify_edges, seq_past_2_53_is_malformed_not_overflowed)
{
    /* malformed: reported with seq -1 (no event was read) */
    cr_assert_eq(first_bad_for_seq("9223372036854775807"), -1);
    cr_assert_eq(first_bad_for_seq("9007199254740993"), -1);
    cr_assert_eq(first_bad_for_seq("99999999999999999999"), -1);
    /* in range: read as an event, the repeat is the first problem (seq goes back) */
    cr_assert_eq(first_bad_for_seq("9007199254740992"), 9007199254740992LL);
}
