/* The reset control record (src/vks_reset_record.c): parse, refuse (naming the field), build,
 * append with trimming, match. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_reset_record.h"

static vks_status parse_data(const char *data, struct vks_reset_record *r, struct vks_err *e)
{
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "{\"data\":{\"data\":%s,\"metadata\":{\"version\":1}}}", data);
    return vks_reset_record_parse(buf, (size_t)n, r, e);
}

#define GOOD "{\"schema\":\"1\",\"seq\":3,\"first_seq\":2,\"entries\":[" \
             "{\"seq\":2,\"id\":\"i2\",\"scope\":\"tenant\",\"tenant\":\"acme\",\"paths\":[\"smtp-auth/acme/b\",\"smtp-auth/acme/a\"]}," \
             "{\"seq\":3,\"scope\":\"all\",\"prefix\":\"smtp-auth/other/\"}]}"

Test(reset_record, parses_and_matches)
{
    struct vks_reset_record r;
    struct vks_err e;
    cr_assert_eq(parse_data(GOOD, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(r.seq, 3);
    cr_assert_eq(r.first_seq, 2);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.entries[0].scope, VKS_RESET_TENANT);
    cr_assert_str_eq(r.entries[0].tenant, "acme");
    cr_assert_str_eq(r.entries[0].paths[0], "smtp-auth/acme/a"); /* sorted */
    cr_assert(vks_reset_entry_matches(&r.entries[0], "smtp-auth/acme/b", 16));
    cr_assert(!vks_reset_entry_matches(&r.entries[0], "smtp-auth/acme/", 15));
    cr_assert(!vks_reset_entry_matches(&r.entries[0], "smtp-auth/acme/bb", 17));
    cr_assert(!vks_reset_entry_matches(&r.entries[0], "smtp-auth/acme/bXX", 16) == false);
    cr_assert(vks_reset_entry_matches(&r.entries[1], "smtp-auth/other/x", 17));
    cr_assert(!vks_reset_entry_matches(&r.entries[1], "smtp-auth/othe", 14));
    vks_reset_record_free(&r);
}

static void refused(const char *data, const char *field)
{
    struct vks_reset_record r;
    struct vks_err e;
    vks_status st = parse_data(data, &r, &e);
    cr_assert_eq(st, VKS_E_BAD_RESPONSE, "accepted: %s", data);
    cr_assert(strstr(e.msg, field) != NULL, "'%s' not named in: %s", field, e.msg);
    cr_assert(strncmp(e.msg, "control record: ", 16) == 0, "%s", e.msg);
    cr_assert_eq(r.n, 0);
}

Test(reset_record, refuses_naming_the_field)
{
    refused("{\"seq\":1,\"first_seq\":1,\"entries\":[]}", "schema");
    refused("{\"schema\":\"2\",\"seq\":1,\"first_seq\":1,\"entries\":[]}", "schema");
    refused("{\"schema\":\"1\",\"seq\":\"seven\",\"first_seq\":1,\"entries\":[]}", "seq");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":2,\"entries\":[]}", "first_seq");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1}", "entries");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1,\"entries\":[{\"seq\":1,\"scope\":\"some\"}]}",
            "entries[0].scope");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1,\"entries\":[{\"seq\":1,\"scope\":\"all\"}]}",
            "entries[0].prefix");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1,\"entries\":[{\"seq\":1,\"scope\":\"name\",\"paths\":[]}]}",
            "entries[0].paths");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1,\"entries\":[{\"seq\":1,\"scope\":\"name\",\"paths\":[\"a b\"]}]}",
            "entries[0].paths[0]");
    refused("{\"schema\":\"1\",\"seq\":2,\"first_seq\":1,\"entries\":[{\"seq\":2,\"scope\":\"all\",\"prefix\":\"p/\"},"
            "{\"seq\":2,\"scope\":\"all\",\"prefix\":\"p/\"}]}", "entries[1].seq");
    refused("{\"schema\":\"1\",\"seq\":1,\"first_seq\":1,\"entries\":[{\"seq\":5,\"scope\":\"all\",\"prefix\":\"p/\"}]}",
            "entries[0].seq");
    refused("[1,2]", "data");
    struct vks_reset_record r;
    struct vks_err e;
    cr_assert_eq(vks_reset_record_parse("{\"data\":{\"data\":{", 17, &r, &e), VKS_E_BAD_RESPONSE);
    cr_assert(strstr(e.msg, "truncated") != NULL, "%s", e.msg);
    cr_assert_eq(vks_reset_record_parse("", 0, &r, &e), VKS_E_BAD_RESPONSE);
}

static struct vks_reset_entry entry(enum vks_reset_scope sc, size_t npaths, const char *tag)
{
    struct vks_reset_entry e;
    memset(&e, 0, sizeof e);
    e.scope = sc;
    snprintf(e.prefix, sizeof e.prefix, "smtp-auth/");
    snprintf(e.id, sizeof e.id, "%s", tag);
    if (npaths) {
        e.paths = calloc(npaths, sizeof *e.paths);
        for (size_t i = 0; i < npaths; i++) {
            char p[64];
            snprintf(p, sizeof p, "smtp-auth/%s-%zu", tag, i);
            e.paths[i] = strdup(p);
        }
        e.npaths = npaths;
    }
    return e;
}

Test(reset_record, append_round_trip_and_trim)
{
    struct vks_reset_record r;
    memset(&r, 0, sizeof r);
    struct vks_err e;
    for (int i = 0; i < VKS_RESET_KEEP_ENTRIES + 5; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "t%d", i);
        struct vks_reset_entry x = entry(i % 3 == 2 ? VKS_RESET_ALL : VKS_RESET_NAME, i % 3 == 2 ? 0 : 2, tag);
        cr_assert_eq(vks_reset_record_append(&r, &x, &e), VKS_OK);
        cr_assert_null(x.paths);
    }
    cr_assert_eq(r.n, VKS_RESET_KEEP_ENTRIES);
    cr_assert_eq(r.seq, VKS_RESET_KEEP_ENTRIES + 5);
    cr_assert_eq(r.first_seq, 6);
    char *json = NULL;
    cr_assert_eq(vks_reset_record_json(&r, &json, &e), VKS_OK);
    struct vks_reset_record back;
    char *answer = malloc(strlen(json) + 64);
    int n = sprintf(answer, "{\"data\":{\"data\":%s}}", json);
    cr_assert_eq(vks_reset_record_parse(answer, (size_t)n, &back, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(back.n, r.n);
    cr_assert_eq(back.first_seq, r.first_seq);
    cr_assert_eq(r.entries[0].scope, VKS_RESET_ALL); /* seq 6: i = 5 */
    cr_assert_str_eq(back.entries[1].paths[1], r.entries[1].paths[1]);
    free(answer);
    free(json);
    vks_reset_record_free(&back);
    /* one big entry pushes every older one out, but always stays itself */
    struct vks_reset_entry big = entry(VKS_RESET_TENANT, VKS_RESET_MAX_PATHS, "big");
    cr_assert_eq(vks_reset_record_append(&r, &big, &e), VKS_OK);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.first_seq, r.seq);
    cr_assert(vks_reset_entry_matches(&r.entries[0], "smtp-auth/big-19999", 19));
    vks_reset_record_free(&r);
}
