#include <criterion/criterion.h>
#include <string.h>

#include "vks_error.h"

Test(error, every_status_has_a_distinct_code_that_round_trips)
{
    for (int i = 0; i < VKS_STATUS_COUNT; i++) {
        const char *c = vks_status_code((vks_status)i);
        cr_assert(strcmp(c, "internal") != 0 || i == VKS_E_INTERNAL, "status %d has no code", i);
        cr_assert_eq(vks_status_from_code(c), (vks_status)i, "code %s does not round-trip", c);
    }
    cr_assert_str_eq(vks_status_code((vks_status)999), "internal");
    cr_assert_eq(vks_status_from_code("no_such_code"), VKS_STATUS_COUNT);
}

Test(error, set_formats_and_truncates)
{
    struct vks_err e;
    cr_assert_eq(vks_err_set(&e, VKS_E_NOT_FOUND, "no secret at %s/%s", "secret", "a/b"), VKS_E_NOT_FOUND);
    cr_assert_str_eq(e.msg, "no secret at secret/a/b");
    char big[2 * VKS_ERR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vks_err_set(&e, VKS_E_CONFIG, "%s", big);
    cr_assert_eq(strlen(e.msg), VKS_ERR_MSG_MAX - 1);
    vks_err_clear(&e);
    cr_assert_eq(e.status, VKS_OK);
    cr_assert_str_eq(e.msg, "");
    cr_assert_eq(vks_err_set(NULL, VKS_E_TLS, "x"), VKS_E_TLS);
}
