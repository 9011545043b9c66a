/*
 * vks_cache_put (values read by another key's fetch) and vks_cache_get_cached (hit-only lookups),
 * with an in-process fetch that counts its calls. The resolver's use of them against vault-dev:
 * test_siblings.c. Secrets: tests/test-secrets.d/agentperf.txt ("cache-put-pw-" prefix).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks_cache.h"

#define PW "cache-put-pw-"

static atomic_int fetch_calls;
static atomic_int fetch_gate;   /* 1: fetch waits until it is 0 */
static atomic_int refuse;       /* admit refuses                */

static vks_status fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    (void)source;
    atomic_fetch_add(&fetch_calls, 1);
    for (int i = 0; i < 5000 && atomic_load(&fetch_gate); i++)
        usleep(1000);
    out->meta.kv_version = 2;
    return vks_secret_dup(PW "fetched", strlen(PW "fetched"), &out->value, err);
}

static vks_status admit(void *source, const struct vks_cache_meta *meta, struct vks_err *err)
{
    (void)source;
    (void)meta;
    return atomic_load(&refuse) ? vks_err_set(err, VKS_E_RESTRICTED, "refused") : VKS_OK;
}

static atomic_int clones;
static void *clone_src(const void *s)
{
    (void)s;
    atomic_fetch_add(&clones, 1);
    return malloc(1);
}

static const struct vks_cache_source_ops ops = { fetch, clone_src, free, admit };

static void setup_ttl(double ttl)
{
    vks_cache_shutdown();
    struct vks_cache_config c;
    vks_cache_config_defaults(&c);
    c.ttl_s = ttl;
    c.refresh_fraction = 1.0;
    struct vks_err e;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_OK, "%s", e.msg);
    atomic_store(&fetch_calls, 0);
    atomic_store(&fetch_gate, 0);
    atomic_store(&refuse, 0);
    atomic_store(&clones, 0);
}

static void setup(void) { setup_ttl(60); }
static void fini(void) { vks_cache_shutdown(); }

TestSuite(cache_put, .init = setup, .fini = fini, .timeout = 30);

static vks_status put(const char *id, const char *value, const char *custom)
{
    vks_secret v;
    cr_assert_eq(vks_secret_dup(value, strlen(value), &v, NULL), VKS_OK);
    struct vks_cache_meta m = { .kv_version = 2, .secret_version = 7, .custom_metadata_json = (char *)custom };
    struct vks_err e;
    char src = 0;
    vks_status st = vks_cache_put(id, &v, 0, &m, &ops, &src, &e);
    cr_assert_null(v.data, "put always takes the value");
    return st;
}

/* get (hit_only or not): status, and the value compared with want when OK */
static vks_status get(const char *id, bool hit_only, const char *want, enum vks_cache_outcome *oc)
{
    vks_secret v = VKS_SECRET_EMPTY;
    struct vks_cache_info info;
    struct vks_err e;
    char src = 0;
    size_t len = strlen(id);
    vks_status st = hit_only ? vks_cache_get_cached(id, len, vks_cache_identity_hash(id, len), NULL, &ops, &src, &v,
                                                    &info, &e)
                             : vks_cache_get(id, NULL, &ops, &src, &v, &info, &e);
    if (oc != NULL)
        *oc = info.outcome;
    if (st == VKS_OK) {
        cr_assert(v.len == strlen(want) && memcmp(v.data, want, v.len) == 0, "value of %s", id);
        cr_assert_not_null(info.meta);
    } else {
        cr_assert_null(v.data);
    }
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return st;
}

Test(cache_put, a_put_value_is_a_hit_with_its_metadata)
{
    cr_assert_eq(put("a", PW "a", "{\"allowed_hosts\":\"x\"}"), VKS_OK);
    vks_secret v = VKS_SECRET_EMPTY;
    struct vks_cache_info info;
    char src = 0;
    cr_assert_eq(vks_cache_get("a", NULL, &ops, &src, &v, &info, NULL), VKS_OK);
    cr_assert_eq(info.outcome, VKS_CACHE_HIT);
    cr_assert_eq(info.meta->secret_version, 7);
    cr_assert_str_eq(info.meta->custom_metadata_json, "{\"allowed_hosts\":\"x\"}", "metadata copied");
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    cr_assert_eq(atomic_load(&fetch_calls), 0);
    cr_assert_eq(atomic_load(&clones), 1, "the source was cloned for refresh-ahead");
}

Test(cache_put, hit_only_misses_change_nothing)
{
    enum vks_cache_outcome oc;
    cr_assert_eq(get("m", true, NULL, &oc), VKS_E_NOT_CACHED);
    cr_assert_eq(oc, VKS_CACHE_NONE);
    struct vks_cache_stats s;
    vks_cache_get_stats(&s);
    cr_assert_eq(s.entries, 0, "no entry created");
    cr_assert_eq(atomic_load(&fetch_calls), 0);
    cr_assert_eq(get("m", false, PW "fetched", &oc), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(get("m", true, PW "fetched", &oc), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
}

Test(cache_put, hit_only_does_not_serve_expired_values)
{
    cr_assert_eq(put("e", PW "e", NULL), VKS_OK);
    cr_assert_eq(get("e", true, PW "e", NULL), VKS_OK);
    vks_cache_test_advance_clock(61);
    cr_assert_eq(get("e", true, NULL, NULL), VKS_E_NOT_CACHED, "expired: the full path decides");
    cr_assert_eq(atomic_load(&fetch_calls), 0);
}

Test(cache_put, a_refused_hit_only_lookup_wipes_the_value)
{
    cr_assert_eq(put("r", PW "r", NULL), VKS_OK);
    atomic_store(&refuse, 1);
    cr_assert_eq(get("r", true, NULL, NULL), VKS_E_RESTRICTED);
    cr_assert_null(vks_cache_test_slot("r", NULL), "no plaintext left after a refusal");
    atomic_store(&refuse, 0);
    cr_assert_eq(get("r", true, NULL, NULL), VKS_E_NOT_CACHED);
}

Test(cache_put, put_replaces_an_older_value)
{
    cr_assert_eq(put("o", PW "old", NULL), VKS_OK);
    cr_assert_eq(put("o", PW "new", NULL), VKS_OK);
    cr_assert_eq(get("o", true, PW "new", NULL), VKS_OK);
    struct vks_cache_stats s;
    vks_cache_get_stats(&s);
    cr_assert_eq(s.values, 1, "one value, the old one wiped");
}

static void *lead(void *arg)
{
    (void)arg;
    get("f", false, PW "fetched", NULL);
    return NULL;
}

Test(cache_put, put_leaves_an_entry_with_a_fetch_in_flight_alone)
{
    atomic_store(&fetch_gate, 1);
    pthread_t t;
    pthread_create(&t, NULL, lead, NULL);
    while (atomic_load(&fetch_calls) == 0)
        usleep(1000);
    cr_assert_neq(put("f", PW "put", NULL), VKS_OK, "a fetch in flight installs its own value");
    atomic_store(&fetch_gate, 0);
    pthread_join(t, NULL);
    cr_assert_eq(get("f", true, PW "fetched", NULL), VKS_OK);
}

Test(cache_put, put_with_caching_off_stores_nothing, .init = NULL)
{
    setup_ttl(0);
    cr_assert_neq(put("z", PW "z", NULL), VKS_OK);
    struct vks_cache_stats s;
    vks_cache_get_stats(&s);
    cr_assert_eq(s.entries, 0);
}

Test(cache_put, bad_arguments_are_refused_and_the_value_wiped)
{
    vks_secret v;
    cr_assert_eq(vks_secret_dup(PW "x", strlen(PW "x"), &v, NULL), VKS_OK);
    struct vks_err e;
    cr_assert_eq(vks_cache_put("", &v, 0, NULL, NULL, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_null(v.data);
    vks_secret none = VKS_SECRET_EMPTY;
    struct vks_cache_meta m = { 0 };
    cr_assert_eq(vks_cache_put("x", &none, 0, &m, NULL, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_cache_get_cached(NULL, 0, 0, NULL, &ops, NULL, &none, NULL, &e), VKS_E_INVALID_ARG);
}
