/*
 * The resolvers' side of the emergency reset (src/vks_reset_gate.c) through vks_resolve against
 * vault-dev over HTTPS, counting vault-dev's requests (docs/internals/reset.md):
 *  - hit_only lookups never check: VKS_E_NOT_CACHED while a check is due, the cached value while
 *    the record is fresh; a normal lookup checks (one metadata GET per interval, no data read while
 *    the version is unchanged, 404 = no reset);
 *  - a new entry drops the credential from the cache, and its own state=reset refuses it (revoked);
 *    a value marked reset without a record entry keeps being served until the entry comes (the
 *    record is what running processes learn from);
 *  - a rotation-like rewrite (state active again) is served within one interval;
 *  - the record unreadable: served for the bound after the first failed check, then unavailable,
 *    named; readable again: served.
 * Secrets: tests/test-secrets.d/reset.txt.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vaultdev_harness.h"
#include "vks_cache.h"
#include "vks_config.h"
#include "vks_reset_gate.h"
#include "vks_resolver.h"

#define PW "cred88-gate-unit-PW-3e7b10"

static struct vd srv;
static char tls_dir[600];

static void set_str(struct vks_config *c, const char *name, const char *v)
{
    struct vks_field f = { .name = name, .type = VKS_FT_STRING, .str = v, .len = strlen(v) };
    struct vks_err e;
    cr_assert_eq(vks_config_set(c, &f, &e), VKS_OK, "%s", e.msg);
}

static void setup(void)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    snprintf(tls_dir, sizeof tls_dir, "%s/reset-gate-tls", vd_work_dir());
    mkdir(tls_dir, 0700);
    vd_start(&srv, tls_dir);
    struct vks_config c;
    vks_config_defaults(&c);
    set_str(&c, "address", srv.addr);
    set_str(&c, "ca_cert", srv.cacert);
    set_str(&c, "token", VD_ROOT_TOKEN);
    set_str(&c, "max_retries", "0");
    set_str(&c, "reset_check_interval", "300ms");
    set_str(&c, "reset_max_unverified", "1s");
    struct vks_err e;
    bool changed;
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_resolver_setup(&c, &changed, &e), VKS_OK, "%s", e.msg);
    vks_config_clear(&c);
    struct vks_cache_config cc;
    vks_cache_config_defaults(&cc);
    cc.ttl_s = 3600;
    cr_assert_eq(vks_cache_configure(&cc, &e), VKS_OK, "%s", e.msg);
    vd_kv2_put(&srv, "secret", "smtp-auth/g.example", "{\"key\":\"" PW "\"}");
}

static void teardown(void)
{
    vks_cache_shutdown();
    vks_resolver_shutdown();
    vd_stop(&srv);
}

TestSuite(reset_gate, .init = setup, .fini = teardown, .timeout = 60);

static vks_status look(bool hit_only, char *msg, size_t cap)
{
    struct vks_field f[2] = {
        { .name = "vault_mount", .type = VKS_FT_STRING, .str = "secret", .len = 6 },
        { .name = "vault_path", .type = VKS_FT_STRING, .str = "smtp-auth/g.example", .len = 19 },
    };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(vks_keysource_from_fields(f, 2, &ks, &e), VKS_OK, "%s", e.msg);
    struct vks_resolve_req req = { .ks = &ks, .hit_only = hit_only };
    vks_secret out;
    vks_err_clear(&e);
    vks_status st = vks_resolve(&req, &out, NULL, &e);
    if (st == VKS_OK)
        cr_assert(out.len == strlen(PW) && memcmp(out.data, PW, out.len) == 0, "the value");
    cr_assert(strstr(e.msg, PW) == NULL);
    if (msg)
        snprintf(msg, cap, "%s", e.msg);
    vks_secret_free(&out);
    vks_keysource_clear(&ks);
    return st;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void mark(const char *state)
{
    char b[256];
    snprintf(b, sizeof b, "{\"custom_metadata\":{\"state\":\"%s\"}}", state);
    long st = vd_admin(&srv, "POST", "secret/metadata/smtp-auth/g.example", b);
    cr_assert(st == 200 || st == 204, "metadata: HTTP %ld", st);
}

static void entry(int seq)
{
    char b[512];
    snprintf(b, sizeof b, "{\"schema\":\"1\",\"seq\":%d,\"first_seq\":1,\"entries\":[{\"seq\":%d,\"scope\":\"name\","
             "\"paths\":[\"smtp-auth/g.example\"]}]}", seq, seq);
    vd_kv2_put(&srv, "secret", "vks-control/reset", b);
}

Test(reset_gate, hit_only_never_checks_and_one_metadata_get_per_interval)
{
    cr_assert_eq(look(true, NULL, 0), VKS_E_NOT_CACHED, "a check is due: hit_only does not do it");
    vd_reset_counters(&srv);
    cr_assert_eq(look(false, NULL, 0), VKS_OK);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/metadata/vks-control/reset"), 1);
    cr_assert_eq(look(true, NULL, 0), VKS_OK, "fresh: hit_only is served from the cache");
    for (int i = 0; i < 20; i++)
        cr_assert_eq(look(false, NULL, 0), VKS_OK);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/metadata/vks-control/reset"), 1, "no check while fresh");
    sleep_ms(400);
    cr_assert_eq(look(true, NULL, 0), VKS_E_NOT_CACHED, "due again");
    cr_assert_eq(look(false, NULL, 0), VKS_OK);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/metadata/vks-control/reset"), 2);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/data/vks-control/"), 0, "404: no data read");
}

Test(reset_gate, an_entry_drops_and_the_metadata_refuses)
{
    char msg[512];
    cr_assert_eq(look(false, NULL, 0), VKS_OK);
    mark("reset");
    sleep_ms(400);
    cr_assert_eq(look(false, NULL, 0), VKS_OK, "no entry yet: the cached copy is served");
    entry(1);
    sleep_ms(400);
    vd_reset_counters(&srv);
    cr_assert_eq(look(false, msg, sizeof msg), VKS_E_REVOKED, "%s", msg);
    cr_assert(strstr(msg, "reset") != NULL, "%s", msg);
    cr_assert_eq(vd_count(&srv, "GET /v1/secret/data/vks-control/"), 1, "one data read for the new version");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(look(false, NULL, 0), VKS_E_REVOKED);
    mark("active"); /* what a rotation's finish does (with a new password) */
    sleep_ms(400);
    cr_assert_eq(look(false, NULL, 0), VKS_OK, "served again within one interval");
    struct vks_reset_gate_stats gs;
    vks_reset_gate_get_stats(&gs);
    cr_assert(gs.dropped >= 2 && gs.data_reads == 1, "dropped %llu, data reads %llu",
              (unsigned long long)gs.dropped, (unsigned long long)gs.data_reads);
}

Test(reset_gate, unreadable_record_is_served_up_to_the_bound)
{
    char msg[512];
    cr_assert_eq(look(false, NULL, 0), VKS_OK);
    vd_fault(&srv, "{\"action\":\"status\",\"status\":503,\"method\":\"GET\","
                   "\"path_prefix\":\"/v1/secret/metadata/vks-control/\",\"count\":100000}");
    sleep_ms(400);
    cr_assert_eq(look(false, NULL, 0), VKS_OK, "the first failed check: still served");
    sleep_ms(1200);
    cr_assert_eq(look(false, msg, sizeof msg), VKS_E_UNAVAILABLE, "after the bound: %s", msg);
    cr_assert(strstr(msg, "reset_max_unverified") != NULL, "%s", msg);
    cr_assert_eq(vd_admin(&srv, "DELETE", "sys/dev/faults", NULL), 204);
    sleep_ms(400);
    cr_assert_eq(look(false, NULL, 0), VKS_OK, "readable again");
}
