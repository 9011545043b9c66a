/*
 * Sibling keys and hit-only lookups (issue 11 "one Vault request per key"), end to end through
 * vks_resolve against vault-dev over HTTPS, counting vault-dev's GETs:
 *  - vks_resolve_req.sibling_keys: the read for one key caches the named other keys of the same
 *    secret; absent / non-string ones are not stored; a refused (restricted) lookup stores none;
 *    KV v1 too; the Vault client returns the siblings of one read;
 *  - vks_resolve_req.hit_only: never reads Vault, VKS_E_NOT_CACHED on a miss, no audit needed.
 * Pure cache behaviour of vks_cache_put / vks_cache_get_cached: test_cache_put.c.
 * Secrets: tests/test-secrets.d/agentperf.txt.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>

#include "vaultdev_harness.h"
#include "vks_cache.h"
#include "vks_config.h"
#include "vks_resolver.h"
#include "vks_vault.h"

#define PW_A "sibling-pw-ALPHA-71c3e9"
#define PW_B "sibling-pw-BRAVO-0d5a27"

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
    snprintf(tls_dir, sizeof tls_dir, "%s/siblings-tls", vd_work_dir());
    mkdir(tls_dir, 0700);
    const char *extra[] = { "--kv1", "kv", NULL };
    vd_start_args(&srv, tls_dir, extra);
    struct vks_config c;
    vks_config_defaults(&c);
    set_str(&c, "address", srv.addr);
    set_str(&c, "ca_cert", srv.cacert);
    set_str(&c, "token", VD_ROOT_TOKEN);
    struct vks_err e;
    bool changed;
    cr_assert_eq(vks_config_finish(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(vks_resolver_setup(&c, &changed, &e), VKS_OK, "%s", e.msg);
    vks_config_clear(&c);
    struct vks_cache_config cc;
    vks_cache_config_defaults(&cc);
    cc.ttl_s = 600;
    cr_assert_eq(vks_cache_configure(&cc, &e), VKS_OK, "%s", e.msg);
    vd_kv2_put(&srv, "secret", "cred/a", "{\"username\":\"user-a\",\"password\":\"" PW_A "\",\"n\":5}");
    vd_kv2_put(&srv, "secret", "cred/r", "{\"username\":\"user-r\",\"password\":\"" PW_B "\"}");
    long st = vd_admin(&srv, "POST", "secret/metadata/cred/r", "{\"custom_metadata\":{\"allowed_hosts\":\"ok.example\"}}");
    cr_assert(st == 200 || st == 204, "custom_metadata: HTTP %ld", st);
    st = vd_admin(&srv, "POST", "kv/cred/v1", "{\"username\":\"user-v1\",\"password\":\"" PW_A "\"}");
    cr_assert(st == 200 || st == 204, "kv1 write: HTTP %ld", st);
}

static void teardown(void)
{
    vks_cache_shutdown();
    vks_resolver_shutdown();
    vd_stop(&srv);
}

TestSuite(siblings, .init = setup, .fini = teardown, .timeout = 60);

/* One lookup of mount/path/key with optional siblings, ctx destination and hit_only; the value
 * is compared with `want` (NULL: expect failure `fail`). */
static void lookup(const char *mount, const char *path, const char *key, const char *const *sib, size_t nsib,
                   const char *dest, bool hit_only, vks_status want_st, const char *want)
{
    struct vks_field f[4] = {
        { .name = "vault_mount", .type = VKS_FT_STRING, .str = mount, .len = strlen(mount) },
        { .name = "vault_path", .type = VKS_FT_STRING, .str = path, .len = strlen(path) },
        { .name = "vault_key", .type = VKS_FT_STRING, .str = key, .len = strlen(key) },
        { .name = "vault_kv_version", .type = VKS_FT_INTEGER, .ival = 1 }, /* the "kv" mount only */
    };
    struct vks_keysource ks;
    struct vks_err e;
    cr_assert_eq(vks_keysource_from_fields(f, strcmp(mount, "kv") == 0 ? 4 : 3, &ks, &e), VKS_OK, "%s", e.msg);
    struct vks_ctx ctx = { .destination = dest };
    struct vks_resolve_req req = { .ks = &ks, .ctx = &ctx, .sibling_keys = sib, .n_sibling_keys = nsib,
                                   .hit_only = hit_only };
    vks_secret out;
    struct vks_resolve_info info;
    vks_err_clear(&e);
    vks_status st = vks_resolve(&req, &out, &info, &e);
    cr_assert_eq(st, want_st, "%s/%s %s: %s (%s)", mount, path, key, vks_status_code(st), e.msg);
    if (want != NULL) {
        cr_assert_eq(out.len, strlen(want), "%s/%s %s: length", mount, path, key);
        cr_assert(memcmp(out.data, want, out.len) == 0, "%s/%s %s: value", mount, path, key);
    } else {
        cr_assert_null(out.data);
    }
    cr_assert(strstr(e.msg, PW_A) == NULL && strstr(e.msg, PW_B) == NULL);
    vks_secret_free(&out);
    vks_keysource_clear(&ks);
}

static long gets(const char *path)
{
    char k[256];
    snprintf(k, sizeof k, "GET /v1/%s", path);
    return vd_count(&srv, k);
}

static void fresh(void)
{
    vks_cache_flush();
    vd_reset_counters(&srv);
}

Test(siblings, one_read_caches_the_named_siblings)
{
    fresh();
    const char *sib[] = { "password" };
    lookup("secret", "cred/a", "username", sib, 1, NULL, false, VKS_OK, "user-a");
    cr_assert_eq(gets("secret/data/cred/a"), 1);
    lookup("secret", "cred/a", "password", NULL, 0, NULL, false, VKS_OK, PW_A);
    cr_assert_eq(gets("secret/data/cred/a"), 1, "the password came from the user name's read");
    lookup("secret", "cred/a", "username", NULL, 0, NULL, false, VKS_OK, "user-a");
    cr_assert_eq(gets("secret/data/cred/a"), 1, "and both stay cached");
}

Test(siblings, without_siblings_each_key_is_its_own_read)
{
    fresh();
    lookup("secret", "cred/a", "username", NULL, 0, NULL, false, VKS_OK, "user-a");
    lookup("secret", "cred/a", "password", NULL, 0, NULL, false, VKS_OK, PW_A);
    cr_assert_eq(gets("secret/data/cred/a"), 2);
}

Test(siblings, absent_or_non_string_siblings_are_not_stored)
{
    fresh();
    const char *sib[] = { "n", "nope", "password" };
    lookup("secret", "cred/a", "username", sib, 3, NULL, false, VKS_OK, "user-a");
    cr_assert_eq(gets("secret/data/cred/a"), 1);
    lookup("secret", "cred/a", "password", NULL, 0, NULL, false, VKS_OK, PW_A);
    cr_assert_eq(gets("secret/data/cred/a"), 1, "the string sibling next to bad ones is stored");
    lookup("secret", "cred/a", "n", NULL, 0, NULL, false, VKS_E_MISSING_KEY, NULL);
    lookup("secret", "cred/a", "nope", NULL, 0, NULL, false, VKS_E_MISSING_KEY, NULL);
    cr_assert_eq(gets("secret/data/cred/a"), 3, "a number and an absent key were not stored: each read again");
}

Test(siblings, a_refused_lookup_stores_no_sibling)
{
    fresh();
    const char *sib[] = { "password" };
    lookup("secret", "cred/r", "username", sib, 1, "other.example", false, VKS_E_RESTRICTED, NULL);
    cr_assert_eq(gets("secret/data/cred/r"), 1);
    lookup("secret", "cred/r", "password", NULL, 0, "ok.example", false, VKS_OK, PW_B);
    cr_assert_eq(gets("secret/data/cred/r"), 2, "the refused read left no password behind: read again");
    /* admitted: the sibling is stored, and judged again for every caller */
    fresh();
    lookup("secret", "cred/r", "username", sib, 1, "ok.example", false, VKS_OK, "user-r");
    lookup("secret", "cred/r", "password", NULL, 0, "other.example", true, VKS_E_RESTRICTED, NULL);
    lookup("secret", "cred/r", "password", NULL, 0, "ok.example", true, VKS_E_NOT_CACHED, NULL);
    cr_assert_eq(gets("secret/data/cred/r"), 1, "a refused hit wiped the stored sibling (no read)");
}

Test(siblings, kv1_siblings)
{
    fresh();
    const char *sib[] = { "password" };
    lookup("kv", "cred/v1", "username", sib, 1, NULL, false, VKS_OK, "user-v1");
    lookup("kv", "cred/v1", "password", NULL, 0, NULL, false, VKS_OK, PW_A);
    cr_assert_eq(gets("kv/cred/v1"), 1);
}

Test(siblings, user_then_password_repeated_reads_once)
{
    fresh();
    /* what the agent does for every credential: user name (password as sibling), then password */
    const char *sib[] = { "password" };
    for (int i = 0; i < 3; i++) {
        lookup("secret", "cred/a", "username", sib, 1, NULL, false, VKS_OK, "user-a");
        lookup("secret", "cred/a", "password", NULL, 0, NULL, false, VKS_OK, PW_A);
    }
    cr_assert_eq(gets("secret/data/cred/a"), 1);
}

Test(siblings, hit_only_never_reads_vault)
{
    fresh();
    lookup("secret", "cred/a", "username", NULL, 0, NULL, true, VKS_E_NOT_CACHED, NULL);
    lookup("kv", "cred/v1", "username", NULL, 0, NULL, true, VKS_E_NOT_CACHED, NULL);
    cr_assert_eq(gets(""), 0, "no request at all");
    const char *sib[] = { "password" };
    lookup("secret", "cred/a", "username", sib, 1, NULL, false, VKS_OK, "user-a");
    lookup("secret", "cred/a", "username", NULL, 0, NULL, true, VKS_OK, "user-a");
    lookup("secret", "cred/a", "password", NULL, 0, NULL, true, VKS_OK, PW_A);
    cr_assert_eq(gets("secret/data/cred/a"), 1);
}

Test(siblings, too_many_siblings_is_a_clear_error)
{
    const char *sib[VKS_KV_SIBLINGS_MAX + 1];
    for (size_t i = 0; i <= VKS_KV_SIBLINGS_MAX; i++)
        sib[i] = "password";
    lookup("secret", "cred/a", "username", sib, VKS_KV_SIBLINGS_MAX + 1, NULL, false, VKS_E_INVALID_ARG, NULL);
}

Test(siblings, the_vault_client_returns_siblings_of_one_read)
{
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(srv.addr);
    c.cacert = strdup(srv.cacert);
    cr_assert_eq(vks_secret_dup(VD_ROOT_TOKEN, strlen(VD_ROOT_TOKEN), &c.token, NULL), VKS_OK);
    struct vks_vault *v = NULL;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &v, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
    const char *sib[] = { "password", "n", "nope" };
    struct vks_kv_request rq = { .mount = "secret", .path = "cred/a", .key = "username", .kv_version = 2,
                                 .siblings = sib, .n_siblings = 3 };
    struct vks_kv_result r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_OK, "%s", e.msg);
    cr_assert(r.value.len == 6 && memcmp(r.value.data, "user-a", 6) == 0);
    cr_assert(r.siblings[0].len == strlen(PW_A) && memcmp(r.siblings[0].data, PW_A, r.siblings[0].len) == 0);
    cr_assert_null(r.siblings[1].data, "a number is not a string value");
    cr_assert_null(r.siblings[2].data, "an absent key");
    vks_kv_result_free(&r);
    cr_assert_null(r.siblings[0].data, "freed with the result");
    rq.n_siblings = VKS_KV_SIBLINGS_MAX + 1;
    memset(&r, 0, sizeof r);
    cr_assert_eq(vks_vault_kv_read(v, &rq, &r, &e), VKS_E_INVALID_ARG);
    vks_kv_result_free(&r);
    vks_vault_free(v);
}
