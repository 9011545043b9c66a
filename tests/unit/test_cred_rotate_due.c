/* vks_cred_due_select: which credentials `vks cred rotate --due` acts on, and how (pure). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vks_cred_rotate_due.h"

static const int64_t T0 = 1796319000, DAY = 86400; /* 2026-12-03T17:30:00Z */

/* A managed record: name, state, tenant, rotated (days before T0 or NULL for a bad date), extra members. */
static void rec(struct vks_cred_record *r, const char *name, const char *state, const char *tenant, int rotated_ago,
                const char *extra)
{
    char rot[40], answer[1024];
    vks_cred_time(T0, -rotated_ago, rot);
    snprintf(answer, sizeof answer,
             "{\"data\":{\"current_version\":3,\"custom_metadata\":{\"vks_cred\":\"1\",\"username\":\"u-%s\","
             "\"rev\":\"1\",\"state\":\"%s\",\"tenant\":\"%s\",\"rotated\":\"%s\",\"rotation_id\":\"rid-%s\","
             "\"relay\":\"relay.example:587\"%s%s}}}",
             name, state, tenant, rotated_ago < 0 ? "last tuesday" : rot, name, extra[0] ? "," : "", extra);
    struct vks_err e;
    cr_assert_eq(vks_cred_record_parse(answer, strlen(answer), name, r, &e), VKS_OK, "%s", e.msg);
}

struct fixture {
    struct vks_cred_record r[10];
    size_t n;
};

static void build(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    rec(&f->r[f->n++], "fresh", "active", "", 10, "");
    rec(&f->r[f->n++], "old", "active", "", 200, "");
    rec(&f->r[f->n++], "older", "active", "", 300, "");
    rec(&f->r[f->n++], "soon", "active", "", 170, "");
    rec(&f->r[f->n++], "bad", "active", "", -1, "");
    rec(&f->r[f->n++], "frozen", "frozen", "", 400, "");
    rec(&f->r[f->n++], "flying-due", "rotating", "", 250, "");
    rec(&f->r[f->n++], "flying", "rotating", "", 5, "");
    rec(&f->r[f->n++], "t1-old", "active", "t1", 200, "");
    const char *um = "{\"data\":{\"current_version\":1,\"custom_metadata\":null}}";
    struct vks_err e;
    cr_assert_eq(vks_cred_record_parse(um, strlen(um), "hand-made", &f->r[f->n++], &e), VKS_OK, "%s", e.msg);
}

static void release(struct fixture *f)
{
    for (size_t i = 0; i < f->n; i++)
        vks_cred_record_free(&f->r[i]);
}

static const char *names(const struct vks_cred_due_item *it, size_t n, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s:%s", i ? " " : "", it[i].rec->name,
                 vks_cred_due_action_name(it[i].action));
    return buf;
}

Test(cred_rotate_due, select_overdue)
{
    struct fixture f;
    build(&f);
    struct vks_cred_due_item it[10];
    struct vks_cred_due_counts c;
    size_t n;
    char buf[512];
    struct vks_cred_due_sel sel = { T0, 0, 180, NULL };
    vks_cred_due_select(f.r, f.n, &sel, it, &n, &c);
    /* refused first (by name), then by due date: older, flying-due, old and t1-old (same due, by name) */
    cr_assert_str_eq(names(it, n, buf, sizeof buf),
                     "bad:refuse frozen:refuse older:rotate flying-due:resume old:rotate t1-old:rotate "
                     "flying:in-flight");
    cr_assert(c.rotate == 3 && c.resume == 1 && c.refuse == 2 && c.inflight == 1, "counts");
    cr_assert(c.not_due == 2 && c.unmanaged == 1 && c.other_tenant == 0, "fresh and soon not due; 1 unmanaged");
    cr_assert_str_eq(it[3].rotation_id, "rid-flying-due", "a resumed rotation keeps its id");
    cr_assert_str_eq(it[2].rotation_id, "", "a new rotation has none yet");
    cr_assert_str_eq(it[2].relay, "relay.example:587", "the stored relay");
    cr_assert(strstr(it[0].due.why, "rotated") != NULL, "%s", it[0].due.why);
    cr_assert(strstr(it[1].due.why, "frozen") != NULL, "%s", it[1].due.why);
    release(&f);
}

Test(cred_rotate_due, select_within_and_tenant)
{
    struct fixture f;
    build(&f);
    struct vks_cred_due_item it[10];
    struct vks_cred_due_counts c;
    size_t n;
    char buf[512];
    struct vks_cred_due_sel sel = { T0, 30 * DAY, 180, NULL };
    vks_cred_due_select(f.r, f.n, &sel, it, &n, &c);
    cr_assert(strstr(names(it, n, buf, sizeof buf), "soon:rotate") != NULL, "%s", buf);
    cr_assert(c.rotate == 4 && c.not_due == 1, "only fresh is not due within 30 days");
    sel.within = 0;
    sel.tenant = "t1";
    vks_cred_due_select(f.r, f.n, &sel, it, &n, &c);
    cr_assert_str_eq(names(it, n, buf, sizeof buf), "t1-old:rotate");
    cr_assert(c.other_tenant == 9 && c.unmanaged == 0, "the others belong to no tenant t1");
    sel.tenant = NULL;
    sel.default_days = 5;
    vks_cred_due_select(f.r, f.n, &sel, it, &n, &c);
    cr_assert(c.rotate == 5 && c.resume == 2 && c.inflight == 0, "a 5-day policy: everything valid is due");
    release(&f);
}

Test(cred_rotate_due, select_state_missing_is_refused)
{
    struct vks_cred_record r;
    const char *a = "{\"data\":{\"current_version\":1,\"custom_metadata\":{\"vks_cred\":\"1\",\"username\":\"u\","
                    "\"rev\":\"1\",\"rotated\":\"2020-01-01T00:00:00Z\",\"relay\":\"r\\u0007:25\"}}}";
    struct vks_err e;
    cr_assert_eq(vks_cred_record_parse(a, strlen(a), "n", &r, &e), VKS_OK, "%s", e.msg);
    struct vks_cred_due_item it[1];
    struct vks_cred_due_counts c;
    size_t n;
    struct vks_cred_due_sel sel = { T0, 0, 180, NULL };
    vks_cred_due_select(&r, 1, &sel, it, &n, &c);
    cr_assert(n == 1 && it[0].action == VKS_CRED_DUE_REFUSE && strstr(it[0].due.why, "state is missing"));
    cr_assert_str_eq(it[0].relay, "r?:25", "a stored relay is printable");
    vks_cred_due_select(&r, 0, &sel, it, &n, &c);
    cr_assert(n == 0 && c.refuse == 0, "no records: nothing");
    vks_cred_record_free(&r);
    const char *nr = "{\"data\":{\"current_version\":1,\"custom_metadata\":{\"vks_cred\":\"1\",\"username\":\"u\","
                     "\"rev\":\"1\",\"state\":\"active\",\"rotated\":\"2020-01-01T00:00:00Z\"}}}";
    cr_assert_eq(vks_cred_record_parse(nr, strlen(nr), "norelay", &r, &e), VKS_OK, "%s", e.msg);
    vks_cred_due_select(&r, 1, &sel, it, &n, &c);
    cr_assert(n == 1 && it[0].action == VKS_CRED_DUE_REFUSE && strstr(it[0].due.why, "no relay"),
              "due without a relay: refused, naming it");
    sel.now = 1577836800 + 86400; /* 2020-01-02: not due, no relay needed yet */
    vks_cred_due_select(&r, 1, &sel, it, &n, &c);
    cr_assert(n == 0 && c.not_due == 1);
    vks_cred_record_free(&r);
}
