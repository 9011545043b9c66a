/*
 * vks_audit_verifier_first_bad for a problem of no one line: an anchored head (--head) that never
 * appears is reported with line 0, whatever was fed before it (found by fuzz_audit_verify, which
 * checks that a reported line is one that was fed).
 */
#include <criterion/criterion.h>
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

Test(audit_verify_head, missing_head_in_an_empty_log_is_line_0)
{
    check_missing_head(NULL, 0);
}

Test(audit_verify_head, missing_head_after_unrelated_lines_is_line_0)
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
