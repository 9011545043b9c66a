/*
 * Unit tests of the cache's own logic. The cache's dependency, the fetch callback, is an
 * in-process function here that produces known values and failures on demand and counts its calls;
 * the arena is the real one (vks_secmem). End-to-end behaviour against vault-dev is in
 * tests/integration/40-cache-*.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vks_cache.h"

/* every value starts with this prefix, listed in tests/test-secrets.d/cache.txt */
#define PW "cache-unit-pw-"

static atomic_int fetch_calls;
static atomic_int fetch_status = VKS_OK;   /* what the fake fetch returns            */
static atomic_int generation;              /* bumps the value ("rotation")          */
static atomic_int block_until_waits;       /* >0: fetch waits until stats.waits >= n */
static double ttl_hint;

struct src {
    char id[48];
};

static void value_for(const char *id, int gen, char *buf, size_t n)
{
    snprintf(buf, n, PW "%s-g%d", id, gen);
}

static vks_status fake_fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    struct src *s = source;
    atomic_fetch_add(&fetch_calls, 1);
    int need = atomic_load(&block_until_waits);
    if (need > 0) {
        for (int i = 0; i < 30000; i++) {
            struct vks_cache_stats st;
            vks_cache_get_stats(&st);
            if ((int)st.waits >= need)
                break;
            usleep(1000);
        }
    }
    vks_status st = (vks_status)atomic_load(&fetch_status);
    if (st != VKS_OK)
        return vks_err_set(err, st, "fake failure for %s", s->id);
    char v[128];
    value_for(s->id, atomic_load(&generation), v, sizeof v);
    vks_status rc = vks_secret_dup(v, strlen(v), &out->value, err);
    if (rc != VKS_OK)
        return rc;
    out->ttl_hint_s = ttl_hint;
    out->meta.kv_version = 2;
    out->meta.secret_version = atomic_load(&generation) + 1;
    snprintf(out->meta.token_accessor, sizeof out->meta.token_accessor, "acc-%s", s->id);
    out->meta.custom_metadata_json = strdup("{\"allowed_domains\":\"example.org\"}");
    return VKS_OK;
}

static void *fake_clone(const void *source)
{
    struct src *c = malloc(sizeof *c);
    if (c)
        memcpy(c, source, sizeof *c);
    return c;
}

static void fake_free(void *source) { free(source); }

static const struct vks_cache_source_ops ops = { fake_fetch, fake_clone, fake_free, NULL };
static const struct vks_cache_source_ops ops_noclone = { fake_fetch, NULL, NULL, NULL };

/* a KV v1-like value without custom metadata */
static vks_status nometa_fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    (void)source;
    out->meta.kv_version = 1;
    return vks_secret_dup(PW "nometa", strlen(PW "nometa"), &out->value, err);
}
static const struct vks_cache_source_ops nometa_ops = { nometa_fetch, NULL, NULL, NULL };

static void setup_cache(double ttl, double max_stale, double neg_ttl, double refresh, size_t cap)
{
    vks_cache_shutdown();
    struct vks_cache_config c;
    vks_cache_config_defaults(&c);
    c.ttl_s = ttl;
    c.max_stale_s = max_stale;
    c.neg_ttl_s = neg_ttl;
    c.refresh_fraction = refresh;
    c.capacity = cap;
    struct vks_err e;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_OK, "%s", e.msg);
    atomic_store(&fetch_calls, 0);
    atomic_store(&fetch_status, VKS_OK);
    atomic_store(&generation, 0);
    atomic_store(&block_until_waits, 0);
    ttl_hint = 0;
}

static void fini(void) { vks_cache_shutdown(); }

/* one lookup: returns status, fills outcome, compares the value with the expected generation */
static vks_status get(const char *id, const char *validator, enum vks_cache_outcome *oc, int expect_gen)
{
    struct src s;
    snprintf(s.id, sizeof s.id, "%s", id);
    vks_secret v;
    struct vks_cache_info info;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cache_get(id, validator, &ops, &s, &v, &info, &e);
    if (oc)
        *oc = info.outcome;
    if (st == VKS_OK) {
        char want[128];
        value_for(id, expect_gen, want, sizeof want);
        cr_assert_eq(v.len, strlen(want), "length of %s", id);
        cr_assert(memcmp(v.data, want, v.len) == 0, "value of %s (generation %d)", id, expect_gen);
        cr_assert_not_null(info.meta);
        cr_assert_str_eq(info.meta->custom_metadata_json, "{\"allowed_domains\":\"example.org\"}");
        cr_assert_eq(info.meta->kv_version, 2);
    } else {
        cr_assert_eq(v.data, NULL, "no value on failure");
        cr_assert_eq(e.status, st);
        cr_assert(strstr(e.msg, id) != NULL, "message names the keysource: %s", e.msg);
        cr_assert(strstr(e.msg, PW) == NULL);
    }
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return st;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static struct vks_cache_stats stats(void)
{
    struct vks_cache_stats s;
    vks_cache_get_stats(&s);
    return s;
}

TestSuite(cache, .fini = fini);

Test(cache, miss_then_hit_returns_copies_and_metadata)
{
    setup_cache(300, 900, 5, 0.75, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("a", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(get("a", NULL, &oc, 0), VKS_OK);
        cr_assert_eq(oc, VKS_CACHE_HIT);
    }
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.hits, 5);
    cr_assert_eq(s.misses, 1);
    cr_assert_eq(s.entries, 1);
    cr_assert_eq(s.values, 1);
    cr_assert(s.value_bytes >= strlen(PW "a-g0"));
    cr_assert_str_eq(vks_cache_outcome_name(VKS_CACHE_STALE), "stale");
}

Test(cache, hit_copy_is_independent_of_the_entry)
{
    setup_cache(300, 900, 5, 0.75, 100);
    struct src s = { "indep" };
    vks_secret v1, v2;
    struct vks_err e;
    cr_assert_eq(vks_cache_get("indep", NULL, &ops, &s, &v1, NULL, &e), VKS_OK);
    cr_assert_eq(vks_cache_get("indep", NULL, &ops, &s, &v2, NULL, &e), VKS_OK);
    cr_assert_neq(v1.data, v2.data);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("indep", &cap);
    cr_assert_not_null(slot);
    cr_assert_neq(slot, v1.data);
    vks_secret_free(&v1);
    vks_secret_free(&v2);
    cr_assert_eq(get("indep", NULL, NULL, 0), VKS_OK);
}

Test(cache, expiry_refetches_and_kv1_hint_shortens_ttl)
{
    setup_cache(300, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("t", NULL, &oc, 0), VKS_OK);
    vks_cache_test_advance_clock(299);
    cr_assert_eq(get("t", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    atomic_store(&generation, 1);
    vks_cache_test_advance_clock(2);
    cr_assert_eq(get("t", NULL, &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_REFRESH);
    cr_assert_eq(atomic_load(&fetch_calls), 2);

    ttl_hint = 9; /* KV v1: 0.9 x lease_duration of 10 s */
    cr_assert_eq(get("v1", NULL, &oc, 1), VKS_OK);
    vks_cache_test_advance_clock(8);
    cr_assert_eq(get("v1", NULL, &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    vks_cache_test_advance_clock(2);
    cr_assert_eq(get("v1", NULL, &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_REFRESH);
}

Test(cache, stale_if_error_is_bounded_by_max_stale)
{
    setup_cache(10, 20, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("s", &cap);
    cr_assert_not_null(slot);

    atomic_store(&fetch_status, VKS_E_UNAVAILABLE);
    vks_cache_test_advance_clock(11);
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_STALE);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    /* within neg_ttl: stale again without asking the source */
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_STALE);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    /* after neg_ttl the source is asked again, still within max_stale */
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_STALE);
    cr_assert_eq(atomic_load(&fetch_calls), 3);
    cr_assert_eq(stats().stale, 3);
    /* past expiry + max_stale: no value any more, and the slot was wiped */
    vks_cache_test_advance_clock(14);
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_E_UNAVAILABLE);
    cr_assert(all_zero(slot, cap), "expired value wiped");
    cr_assert_null(vks_cache_test_slot("s", NULL));
    cr_assert_eq(stats().expirations, 1);
    /* back to normal */
    atomic_store(&fetch_status, VKS_OK);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("s", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
}

Test(cache, each_transient_code_serves_stale)
{
    const vks_status codes[] = { VKS_E_UNAVAILABLE, VKS_E_TIMEOUT, VKS_E_SEALED, VKS_E_TLS,
                                 VKS_E_BAD_RESPONSE };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        setup_cache(10, 100, 0, 1.0, 100);
        enum vks_cache_outcome oc;
        cr_assert_eq(get("tr", NULL, &oc, 0), VKS_OK);
        atomic_store(&fetch_status, codes[i]);
        vks_cache_test_advance_clock(11);
        cr_assert_eq(get("tr", NULL, &oc, 0), VKS_OK, "%s", vks_status_code(codes[i]));
        cr_assert_eq(oc, VKS_CACHE_STALE);
        cr_assert(vks_cache_status_is_transient(codes[i]));
    }
}

Test(cache, fail_closed_codes_drop_and_wipe_at_once)
{
    const vks_status codes[] = { VKS_E_PERMISSION_DENIED, VKS_E_NOT_FOUND, VKS_E_DELETED,
                                 VKS_E_DESTROYED, VKS_E_AUTH_FAILED, VKS_E_MISSING_KEY,
                                 VKS_E_DECRYPT_FAILED };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        setup_cache(10, 900, 5, 1.0, 100);
        enum vks_cache_outcome oc;
        cr_assert_eq(get("fc", NULL, &oc, 0), VKS_OK);
        size_t cap = 0;
        const unsigned char *slot = vks_cache_test_slot("fc", &cap);
        atomic_store(&fetch_status, codes[i]);
        vks_cache_test_advance_clock(11);
        cr_assert_eq(get("fc", NULL, &oc, 0), codes[i], "%s", vks_status_code(codes[i]));
        cr_assert_eq(oc, VKS_CACHE_ERROR);
        cr_assert(all_zero(slot, cap), "%s wipes the value", vks_status_code(codes[i]));
        cr_assert_null(vks_cache_test_slot("fc", NULL));
        cr_assert_not(vks_cache_status_is_transient(codes[i]));
        cr_assert_eq(stats().revocations, 1);
        /* remembered for neg_ttl even when the source recovers */
        atomic_store(&fetch_status, VKS_OK);
        cr_assert_eq(get("fc", NULL, &oc, 0), codes[i]);
        cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
        cr_assert_eq(atomic_load(&fetch_calls), 2);
        /* invalidate forgets the failure */
        cr_assert_eq(vks_cache_invalidate("fc"), 1);
        cr_assert_eq(get("fc", NULL, &oc, 0), VKS_OK);
        cr_assert_eq(oc, VKS_CACHE_MISS);
    }
}

Test(cache, negative_cache_expires_after_neg_ttl)
{
    setup_cache(300, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    atomic_store(&fetch_status, VKS_E_NOT_FOUND);
    cr_assert_eq(get("n", NULL, &oc, 0), VKS_E_NOT_FOUND);
    cr_assert_eq(oc, VKS_CACHE_ERROR);
    cr_assert_eq(get("n", NULL, &oc, 0), VKS_E_NOT_FOUND);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    atomic_store(&fetch_status, VKS_E_UNAVAILABLE);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("n", NULL, &oc, 0), VKS_E_UNAVAILABLE);
    cr_assert_eq(oc, VKS_CACHE_ERROR);
    atomic_store(&fetch_status, VKS_OK);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("n", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(atomic_load(&fetch_calls), 3);
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.negative, 1);
    cr_assert_eq(s.errors, 2);
}

Test(cache, local_errors_are_not_remembered_and_keep_the_value)
{
    setup_cache(10, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    atomic_store(&fetch_status, VKS_E_LOCKED_MEMORY);
    cr_assert_eq(get("l", NULL, &oc, 0), VKS_E_LOCKED_MEMORY);
    cr_assert_eq(stats().entries, 0);
    atomic_store(&fetch_status, VKS_OK);
    cr_assert_eq(get("l", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    vks_cache_test_advance_clock(11);
    atomic_store(&fetch_status, VKS_E_NOMEM);
    cr_assert_eq(get("l", NULL, &oc, 0), VKS_E_NOMEM);
    cr_assert_not_null(vks_cache_test_slot("l", NULL), "a local failure does not drop the value");
}

Test(cache, lru_eviction_wipes_the_slot)
{
    setup_cache(300, 900, 5, 1.0, 3);
    cr_assert_eq(get("e1", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(get("e2", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(get("e3", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(get("e1", NULL, NULL, 0), VKS_OK); /* e2 is now least recently used */
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("e2", &cap);
    cr_assert_not_null(slot);
    cr_assert_not(all_zero(slot, cap));
    /* a new key evicts e2; its fetch fails so that nothing reuses the freed slot before we look */
    atomic_store(&fetch_status, VKS_E_NOT_FOUND);
    cr_assert_eq(get("e4", NULL, NULL, 0), VKS_E_NOT_FOUND);
    cr_assert(all_zero(slot, cap), "evicted slot reads all zeros");
    atomic_store(&fetch_status, VKS_OK);
    cr_assert_eq(vks_cache_invalidate("e4"), 1);
    cr_assert_eq(get("e4", NULL, NULL, 0), VKS_OK);
    cr_assert_null(vks_cache_test_slot("e2", NULL));
    cr_assert_not_null(vks_cache_test_slot("e1", NULL));
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.evictions, 1);
    cr_assert_eq(s.entries, 3);
    cr_assert_eq(s.values, 3);
    /* shrinking the capacity evicts at once */
    struct vks_cache_config c;
    vks_cache_get_config(&c);
    c.capacity = 1;
    struct vks_err e;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_OK);
    cr_assert_eq(stats().entries, 1);
    cr_assert_not_null(vks_cache_test_slot("e4", NULL), "the most recent survives");
}

Test(cache, changed_validator_rereads_and_wipes_the_old_value)
{
    setup_cache(300, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("f", "ino1:100:24", &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("f", &cap);
    cr_assert_eq(get("f", "ino1:100:24", &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    char old[128];
    value_for("f", 0, old, sizeof old);
    atomic_store(&generation, 1);
    cr_assert_eq(get("f", "ino1:200:24", &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    /* the old slot was wiped (it may already hold the new value: the arena reuses it) */
    cr_assert(memcmp(slot, old, strlen(old)) != 0, "old value gone from its slot");
    cr_assert_eq(stats().invalidations, 1);
}

Test(cache, invalidate_prefix_and_flush)
{
    setup_cache(300, 900, 5, 1.0, 100);
    cr_assert_eq(get("vault|secret|a|key", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(get("vault|secret|a|user", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(get("vault|secret|b|key", NULL, NULL, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("vault|secret|b|key", &cap);
    cr_assert_eq(vks_cache_invalidate("vault|secret|zzz"), 0);
    cr_assert_eq(vks_cache_invalidate_prefix("vault|secret|a|"), 2);
    cr_assert_eq(stats().entries, 1);
    cr_assert_eq(vks_cache_flush(), 1);
    cr_assert(all_zero(slot, cap));
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.entries, 0);
    cr_assert_eq(s.value_bytes, 0);
    cr_assert_eq(s.invalidations, 3);
}

struct racer {
    const char *id;
    vks_status st;
    enum vks_cache_outcome oc;
    bool ok_value;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct src s;
    snprintf(s.id, sizeof s.id, "%s", r->id);
    vks_secret v;
    struct vks_cache_info info;
    struct vks_err e;
    r->st = vks_cache_get(r->id, NULL, &ops, &s, &v, &info, &e);
    r->oc = info.outcome;
    char want[128];
    value_for(r->id, 0, want, sizeof want);
    r->ok_value = r->st == VKS_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return NULL;
}

Test(cache, sixty_four_concurrent_misses_make_one_fetch)
{
    setup_cache(300, 900, 5, 1.0, 100);
    atomic_store(&block_until_waits, 64); /* the fetch returns only once all 64 are waiting */
    pthread_t t[64];
    struct racer r[64];
    for (int i = 0; i < 64; i++) {
        r[i] = (struct racer){ .id = "sf" };
        cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int misses = 0;
    for (int i = 0; i < 64; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(r[i].st, VKS_OK);
        cr_assert(r[i].ok_value);
        misses += r[i].oc == VKS_CACHE_MISS;
    }
    cr_assert_eq(atomic_load(&fetch_calls), 1, "single-flight: %d fetches", atomic_load(&fetch_calls));
    cr_assert_eq(misses, 1);
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.waits, 64);
    cr_assert_eq(s.coalesced, 63);
}

Test(cache, concurrent_misses_share_a_failure)
{
    setup_cache(300, 900, 5, 1.0, 100);
    atomic_store(&fetch_status, VKS_E_PERMISSION_DENIED);
    atomic_store(&block_until_waits, 16);
    pthread_t t[16];
    struct racer r[16];
    for (int i = 0; i < 16; i++) {
        r[i] = (struct racer){ .id = "sff" };
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(r[i].st, VKS_E_PERMISSION_DENIED);
    }
    cr_assert_eq(atomic_load(&fetch_calls), 1);
}

static void wait_for_refreshes(uint64_t n, uint64_t failures)
{
    for (int i = 0; i < 20000; i++) {
        struct vks_cache_stats s = stats();
        if (s.refreshes >= n && s.refresh_failures >= failures)
            return;
        usleep(1000);
    }
    cr_assert_fail("background refresh did not happen");
}

Test(cache, refresh_ahead_keeps_entries_in_use_fresh)
{
    setup_cache(10, 900, 5, 0.5, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("r", NULL, &oc, 0), VKS_OK);
    atomic_store(&generation, 1);
    vks_cache_test_advance_clock(6); /* past 0.5 x ttl: this hit asks for a background refresh */
    cr_assert_eq(get("r", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    wait_for_refreshes(1, 0);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    /* 12 s after the first fetch (past its ttl) the caller still gets a hit, with the new value */
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("r", NULL, &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.waits, 1, "only the first lookup waited");
    cr_assert_eq(s.misses, 1);
}

Test(cache, no_refresh_ahead_without_clone)
{
    setup_cache(10, 900, 5, 0.5, 100);
    struct src s = { "nc" };
    vks_secret v;
    struct vks_err e;
    cr_assert_eq(vks_cache_get("nc", NULL, &ops_noclone, &s, &v, NULL, &e), VKS_OK);
    vks_secret_free(&v);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(vks_cache_get("nc", NULL, &ops_noclone, &s, &v, NULL, &e), VKS_OK);
    vks_secret_free(&v);
    usleep(100000);
    cr_assert_eq(stats().refreshes, 0);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
}

Test(cache, background_refresh_that_is_denied_drops_the_value)
{
    setup_cache(10, 900, 5, 0.5, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("bd", NULL, &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("bd", &cap);
    atomic_store(&fetch_status, VKS_E_DESTROYED);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("bd", NULL, &oc, 0), VKS_OK); /* still fresh: served, refresh queued */
    wait_for_refreshes(0, 1);
    cr_assert(all_zero(slot, cap));
    cr_assert_eq(get("bd", NULL, &oc, 0), VKS_E_DESTROYED);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
}

Test(cache, background_refresh_transient_failure_keeps_serving)
{
    setup_cache(10, 900, 5, 0.5, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("bt", NULL, &oc, 0), VKS_OK);
    atomic_store(&fetch_status, VKS_E_TIMEOUT);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("bt", NULL, &oc, 0), VKS_OK);
    wait_for_refreshes(0, 1);
    cr_assert_eq(get("bt", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    vks_cache_test_advance_clock(4.5); /* expired; failure remembered: stale without waiting */
    cr_assert_eq(get("bt", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_STALE);
}

Test(cache, ttl_zero_bypasses)
{
    setup_cache(0, 900, 5, 0.75, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(get("b", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_BYPASS);
    cr_assert_eq(get("b", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    cr_assert_eq(stats().entries, 0);
}

Test(cache, configuration_is_validated)
{
    struct vks_cache_config c;
    struct vks_err e;
    vks_cache_config_defaults(&c);
    cr_assert_eq(c.ttl_s, 300);
    cr_assert_eq(c.max_stale_s, 900);
    cr_assert_eq(c.neg_ttl_s, 5);
    c.ttl_s = -1;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "ttl") != NULL);
    vks_cache_config_defaults(&c);
    c.refresh_fraction = 0;
    cr_assert_eq(vks_cache_configure(&c, &e), VKS_E_CONFIG);

    setenv("VKS_CACHE_TTL", "60", 1);
    setenv("VKS_CACHE_MAX_STALE", "30", 1);
    setenv("VKS_CACHE_NEG_TTL", "2", 1);
    setenv("VKS_CACHE_CAPACITY", "1234", 1);
    vks_cache_config_defaults(&c);
    cr_assert_eq(vks_cache_config_from_env(&c, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(c.ttl_s, 60);
    cr_assert_eq(c.max_stale_s, 30);
    cr_assert_eq(c.neg_ttl_s, 2);
    cr_assert_eq(c.capacity, 1234);
    setenv("VKS_CACHE_MAX_STALE", "ten", 1);
    cr_assert_eq(vks_cache_config_from_env(&c, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VKS_CACHE_MAX_STALE") != NULL, "%s", e.msg);
    /* a bad environment makes lookups fail closed with the variable named */
    vks_cache_shutdown();
    struct src s = { "envbad" };
    vks_secret v;
    cr_assert_eq(vks_cache_get("envbad", NULL, &ops, &s, &v, NULL, &e), VKS_E_CONFIG);
    cr_assert(strstr(e.msg, "VKS_CACHE_MAX_STALE") != NULL);
    unsetenv("VKS_CACHE_MAX_STALE");
    vks_cache_shutdown();
    cr_assert_eq(vks_cache_get("envbad", NULL, &ops, &s, &v, NULL, &e), VKS_OK);
    vks_secret_free(&v);
    vks_cache_get_config(&c);
    cr_assert_eq(c.ttl_s, 60);
    cr_assert_eq(c.capacity, 1234);
}

Test(cache, bad_arguments_are_refused)
{
    setup_cache(300, 900, 5, 0.75, 100);
    struct src s = { "x" };
    vks_secret v;
    struct vks_err e;
    cr_assert_eq(vks_cache_get("", NULL, &ops, &s, &v, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_cache_get(NULL, NULL, &ops, &s, &v, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_cache_get("x", NULL, NULL, &s, &v, NULL, &e), VKS_E_INVALID_ARG);
    cr_assert_eq(vks_cache_get("x", NULL, &ops, &s, NULL, NULL, &e), VKS_E_INVALID_ARG);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(vks_cache_get(big, NULL, &ops, &s, &v, NULL, &e), VKS_E_INVALID_ARG);
}

Test(cache, a_forked_child_forgets_the_parents_entries)
{
    setup_cache(300, 900, 5, 0.75, 100);
    cr_assert_eq(get("fork", NULL, NULL, 0), VKS_OK);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        enum vks_cache_outcome oc = VKS_CACHE_NONE;
        struct src s = { "fork" };
        vks_secret v;
        struct vks_cache_info info;
        struct vks_err e;
        vks_status st = vks_cache_get("fork", NULL, &ops, &s, &v, &info, &e);
        oc = info.outcome;
        char want[128];
        value_for("fork", 0, want, sizeof want);
        bool good = st == VKS_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
        _exit(good && oc == VKS_CACHE_MISS && atomic_load(&fetch_calls) == 2 ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child re-fetched a correct value");
    enum vks_cache_outcome oc;
    cr_assert_eq(get("fork", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT, "the parent keeps its entry");
}

/* 16 threads hammer 40 keys through a cache of 24 entries while one thread invalidates: every value
 * returned is the right one, and the counters add up. Also run under ThreadSanitizer. */
static atomic_bool stop_hammer;

static void *hammer(void *arg)
{
    int seed = (int)(intptr_t)arg;
    unsigned x = (unsigned)seed * 2654435761u + 1;
    for (int i = 0; i < 4000; i++) {
        x = x * 1103515245u + 12345u;
        char id[32];
        snprintf(id, sizeof id, "k%02u", (x >> 16) % 40);
        struct src s;
        snprintf(s.id, sizeof s.id, "%s", id);
        vks_secret v;
        struct vks_cache_info info;
        struct vks_err e;
        vks_status st = vks_cache_get(id, NULL, &ops, &s, &v, &info, &e);
        char want[128];
        value_for(id, 0, want, sizeof want);
        if (st != VKS_OK || v.len != strlen(want) || memcmp(v.data, want, v.len) != 0)
            return (void *)1;
        if (info.meta == NULL || info.meta->kv_version != 2)
            return (void *)1;
        vks_secret_free(&v);
        vks_cache_info_release(&info);
    }
    return NULL;
}

static void *invalidator(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_hammer)) {
        vks_cache_invalidate("k07");
        vks_cache_invalidate_prefix("k1");
        usleep(200);
    }
    return NULL;
}

Test(cache, sixteen_threads_hammer_a_mix_of_keys, .timeout = 120)
{
    setup_cache(300, 900, 5, 0.75, 24);
    pthread_t t[16], inv;
    atomic_store(&stop_hammer, false);
    pthread_create(&inv, NULL, invalidator, NULL);
    for (int i = 0; i < 16; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)(i + 1));
    int bad = 0;
    for (int i = 0; i < 16; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    atomic_store(&stop_hammer, true);
    pthread_join(inv, NULL);
    cr_assert_eq(bad, 0, "every thread got the right values");
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.hits + s.misses + s.stale + s.negative + s.errors, 16 * 4000);
    cr_assert_leq(s.entries, 24);
    cr_assert_gt(s.evictions, 0);
    cr_assert_gt(s.hits, 0);
}

/* A full arena: values of 2000 bytes in a 64 KiB arena (at most 32 of them), fetched with a
 * temporary second slot. When the fetch fails for lack of space the cache evicts idle least
 * recently used values and fetches once more, so every one of 60 keys can still be looked up. */
static size_t big_len = 2000;

static vks_status big_fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    struct src *s = source;
    atomic_fetch_add(&fetch_calls, 1);
    /* like a decrypt, the fetch needs a second slot for a moment */
    vks_secret tmp;
    vks_status st = vks_secret_alloc(big_len, &tmp, err);
    if (st != VKS_OK)
        return vks_err_set(err, st, "no locked memory for %s", s->id);
    st = vks_secret_alloc(big_len, &out->value, err);
    vks_secret_free(&tmp);
    if (st != VKS_OK)
        return vks_err_set(err, st, "no locked memory for %s", s->id);
    memset(out->value.data, 'x', big_len);
    memcpy(out->value.data, PW, strlen(PW));
    out->value.len = big_len;
    return VKS_OK;
}

static const struct vks_cache_source_ops big_ops = { big_fetch, NULL, NULL, NULL };

Test(cache, a_full_arena_evicts_idle_values_to_make_room)
{
    struct vks_secmem_config sm = { 64 * 1024, false };
    struct vks_err e;
    cr_assert_eq(vks_secmem_init(&sm, &e), VKS_OK, "%s", e.msg);
    setup_cache(300, 900, 5, 1.0, 1000);
    for (int i = 0; i < 60; i++) {
        struct src s;
        snprintf(s.id, sizeof s.id, "big%02d", i);
        vks_secret v;
        vks_status st = vks_cache_get(s.id, NULL, &big_ops, &s, &v, NULL, &e);
        cr_assert_eq(st, VKS_OK, "key %d: %s", i, e.msg);
        cr_assert_eq(v.len, big_len);
        vks_secret_free(&v);
    }
    struct vks_cache_stats st = stats();
    cr_assert_gt(st.evictions, 0);
    cr_assert_lt(st.values, 32);
}

/* Hits on the fast path (shard lock only) mark entries instead of moving them in the LRU list;
 * eviction must still drop the entry used least recently, whatever the order of those hits. */
static void evict_case(const char *const *uses, size_t nuses, const char *gone, const char *const *kept, size_t nkept)
{
    setup_cache(300, 900, 5, 1.0, 3);
    for (size_t i = 0; i < nuses; i++) {
        cr_assert_eq(get(uses[i], NULL, NULL, 0), VKS_OK, "use %zu (%s)", i, uses[i]);
        /* distinct timestamps for every use */
        struct timespec d = { 0, 200 * 1000 };
        nanosleep(&d, NULL);
    }
    cr_assert_null(vks_cache_test_slot(gone, NULL), "%s should have been evicted", gone);
    for (size_t i = 0; i < nkept; i++)
        cr_assert_not_null(vks_cache_test_slot(kept[i], NULL), "%s should have been kept", kept[i]);
}

Test(cache, eviction_follows_the_last_use_of_fast_hits)
{
    const char *a[] = { "e1", "e2", "e3", "e2", "e1", "e4" };
    const char *ka[] = { "e1", "e2", "e4" };
    evict_case(a, 6, "e3", ka, 3);
    const char *b[] = { "e1", "e2", "e3", "e2", "e3", "e1", "e4" };
    const char *kb[] = { "e1", "e3", "e4" };
    evict_case(b, 7, "e2", kb, 3);
    const char *c[] = { "e1", "e2", "e3", "e3", "e2", "e4" };
    const char *kc[] = { "e2", "e3", "e4" };
    evict_case(c, 6, "e1", kc, 3);
    /* two evictions in a row: the survivors of the first are ordered by their last use */
    const char *d[] = { "e1", "e2", "e3", "e1", "e4", "e3", "e5" };
    const char *kd[] = { "e3", "e4", "e5" };
    evict_case(d, 7, "e1", kd, 3);
    cr_assert_null(vks_cache_test_slot("e2", NULL), "e2 went first");
    const char *e[] = { "e1", "e2", "e3", "e3", "e1", "e4", "e2", "e5" };
    const char *ke[] = { "e2", "e4", "e5" };
    evict_case(e, 8, "e1", ke, 3);
}

Test(cache, fast_hits_are_counted_and_share_the_metadata)
{
    setup_cache(300, 900, 5, 1.0, 100);
    cr_assert_eq(get("f1", NULL, NULL, 0), VKS_OK);
    enum vks_cache_outcome oc;
    for (int i = 0; i < 25; i++) {
        cr_assert_eq(get("f1", NULL, &oc, 0), VKS_OK);
        cr_assert_eq(oc, VKS_CACHE_HIT);
    }
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.hits, 25);
    cr_assert_eq(s.misses, 1);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    /* a different validator is not a hit: the old value is wiped and read again */
    cr_assert_eq(get("f1", "v2", &oc, 0), VKS_OK);
    cr_assert_neq(oc, VKS_CACHE_HIT);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    /* past the refresh point, lookups take the full path (which queues the refresh) */
    setup_cache(10, 900, 5, 0.5, 100);
    cr_assert_eq(get("f2", NULL, NULL, 0), VKS_OK);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(get("f2", NULL, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    vks_cache_test_advance_clock(5);
    cr_assert_eq(get("f2", NULL, &oc, 0), VKS_OK);
    cr_assert_neq(oc, VKS_CACHE_HIT, "expired: not a fast hit");
}

/* vks_cache_get_hashed: a caller's own slot is reused for a fast hit, freed on any other path;
 * the arena's count of live slots says nothing leaks. */
Test(cache, get_hashed_reuses_the_callers_slot_only_for_a_fast_hit)
{
    setup_cache(300, 900, 5, 1.0, 100);
    cr_assert_eq(get("r1", NULL, NULL, 0), VKS_OK);
    struct vks_secmem_status m0, m1;
    vks_secmem_get_status(&m0);
    struct src s = { "r1" };
    struct vks_err e;
    struct vks_cache_info info;
    vks_secret mine;
    cr_assert_eq(vks_secret_alloc(64, &mine, &e), VKS_OK);
    unsigned char *slot = mine.data;
    uint64_t h = vks_cache_identity_hash("r1", 2);
    char want[128];
    value_for("r1", 0, want, sizeof want);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(vks_cache_get_hashed("r1", 2, h, NULL, &ops, &s, &mine, &info, &e), VKS_OK, "%s", e.msg);
        cr_assert_eq(info.outcome, VKS_CACHE_HIT);
        cr_assert_eq(mine.data, slot, "the caller's slot was used");
        cr_assert_eq(mine.len, strlen(want));
        cr_assert(memcmp(mine.data, want, mine.len) == 0);
        vks_cache_info_release(&info);
        vks_wipe(mine.data, mine.cap);
        mine.len = 0;
    }
    vks_secmem_get_status(&m1);
    cr_assert_eq(m1.slots_in_use, m0.slots_in_use + 1, "only the caller's slot is live");
    /* a miss: the caller's slot is given back and a fresh copy returned */
    struct src s2 = { "r2" };
    uint64_t h2 = vks_cache_identity_hash("r2", 2);
    cr_assert_eq(vks_cache_get_hashed("r2", 2, h2, NULL, &ops, &s2, &mine, &info, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(info.outcome, VKS_CACHE_MISS);
    vks_cache_info_release(&info);
    vks_secret_free(&mine);
    /* too small a slot: freed, a fresh one returned */
    cr_assert_eq(vks_secret_alloc(1, &mine, &e), VKS_OK);
    cr_assert_eq(vks_cache_get_hashed("r1", 2, h, NULL, &ops, &s, &mine, &info, &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(mine.len, strlen(want));
    vks_cache_info_release(&info);
    vks_secret_free(&mine);
    /* bad arguments: the slot is freed too */
    cr_assert_eq(vks_secret_alloc(64, &mine, &e), VKS_OK);
    cr_assert_eq(vks_cache_get_hashed("", 0, 0, NULL, &ops, &s, &mine, &info, &e), VKS_E_INVALID_ARG);
    cr_assert_null(mine.data);
    cr_assert_eq(vks_secret_alloc(64, &mine, &e), VKS_OK);
    cr_assert_eq(vks_cache_get_hashed("r1", 2, h, NULL, NULL, &s, &mine, &info, &e), VKS_E_INVALID_ARG);
    cr_assert_null(mine.data);
    vks_secmem_get_status(&m1);
    cr_assert_eq(m1.slots_in_use, m0.slots_in_use + 1, "r2's cached value is the only new live slot");
}

/* ---- refused lookups (ops->admit): nothing is left behind ------------------------------------ */

/* A caller with a context: admitted while the value's secret_version (generation + 1) is at most
 * max_version, so max_version 0 is a caller that every value refuses. */
struct asrc {
    struct src s; /* first: fake_fetch and fake_clone read it */
    int64_t max_version;
};

static atomic_int admit_calls;

static vks_status fake_admit(void *source, const struct vks_cache_meta *meta, struct vks_err *err)
{
    const struct asrc *a = source;
    atomic_fetch_add(&admit_calls, 1);
    if (meta == NULL || meta->custom_metadata_json == NULL)
        return vks_err_set(err, VKS_E_INTERNAL, "%s: admit without metadata", a->s.id);
    if (meta->secret_version <= a->max_version)
        return VKS_OK;
    return vks_err_set(err, VKS_E_RESTRICTED, "%s: version %lld is not for this caller", a->s.id,
                       (long long)meta->secret_version);
}

static const struct vks_cache_source_ops aops = { fake_fetch, fake_clone, fake_free, fake_admit };

#define ALLOWED 100
#define REFUSED 0

/* one lookup as a caller with max_version; checks the value (generation expect_gen) when served */
static vks_status aget(const char *id, int64_t max_version, enum vks_cache_outcome *oc, int expect_gen)
{
    struct asrc a = { .max_version = max_version };
    snprintf(a.s.id, sizeof a.s.id, "%s", id);
    vks_secret v;
    struct vks_cache_info info;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_cache_get(id, NULL, &aops, &a, &v, &info, &e);
    if (oc)
        *oc = info.outcome;
    if (st == VKS_OK) {
        char want[128];
        value_for(id, expect_gen, want, sizeof want);
        cr_assert_eq(v.len, strlen(want));
        cr_assert(memcmp(v.data, want, v.len) == 0, "value of %s (generation %d)", id, expect_gen);
    } else {
        cr_assert_null(v.data, "no value on a refusal");
        cr_assert_eq(info.fetch_status, st);
        cr_assert(strstr(e.msg, id) != NULL, "the message is the admit callback's: %s", e.msg);
        cr_assert(strstr(e.msg, PW) == NULL);
    }
    vks_secret_free(&v);
    vks_cache_info_release(&info);
    return st;
}

Test(cache, a_refused_miss_caches_no_value_and_the_next_admitted_caller_fetches)
{
    setup_cache(300, 900, 5, 0.75, 100);
    atomic_store(&admit_calls, 0);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("rm", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_MISS, "it fetched");
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    cr_assert_null(vks_cache_test_slot("rm", NULL), "no value cached after a refusal");
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.values, 0);
    cr_assert_eq(s.value_bytes, 0);
    cr_assert_eq(s.refused, 1);
    cr_assert_eq(s.entries, 1, "the metadata (no secret) is remembered");
    /* another refused caller is refused from the remembered metadata, without a fetch */
    cr_assert_eq(aget("rm", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    /* an admitted caller is a miss that fetches, then hits */
    cr_assert_eq(aget("rm", ALLOWED, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    cr_assert_eq(aget("rm", ALLOWED, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    s = stats();
    cr_assert_eq(s.refused, 2);
    cr_assert_eq(s.refused_wipes, 0);
    cr_assert_eq(s.values, 1);
    cr_assert_eq(s.misses, 2);
    cr_assert_eq(s.hits, 1);
}

Test(cache, a_refused_hit_wipes_the_cached_value)
{
    setup_cache(300, 900, 5, 0.75, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("rh", ALLOWED, &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("rh", &cap);
    cr_assert_not_null(slot);
    cr_assert_not(all_zero(slot, cap));
    cr_assert_eq(aget("rh", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_HIT, "refused on a hit");
    cr_assert(all_zero(slot, cap), "the cached slot was wiped");
    cr_assert_null(vks_cache_test_slot("rh", NULL));
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.refused, 1);
    cr_assert_eq(s.refused_wipes, 1);
    cr_assert_eq(s.values, 0);
    /* refused again: from the remembered metadata; admitted: a miss that fetches */
    cr_assert_eq(aget("rh", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
    cr_assert_eq(atomic_load(&fetch_calls), 1);
    cr_assert_eq(aget("rh", ALLOWED, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
}

Test(cache, a_refused_stale_value_is_wiped_too)
{
    setup_cache(10, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("rs", ALLOWED, &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("rs", &cap);
    atomic_store(&fetch_status, VKS_E_UNAVAILABLE);
    vks_cache_test_advance_clock(11);
    cr_assert_eq(aget("rs", ALLOWED, &oc, 0), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_STALE);
    cr_assert_eq(aget("rs", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_STALE, "refused on a stale value");
    cr_assert(all_zero(slot, cap));
    cr_assert_null(vks_cache_test_slot("rs", NULL));
    cr_assert_eq(stats().refused_wipes, 1);
    /* the outage is still remembered: the admitted caller gets the error, not a value */
    cr_assert_eq(aget("rs", ALLOWED, &oc, 0), VKS_E_UNAVAILABLE);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
}

Test(cache, a_refused_refresh_wipes_the_old_value)
{
    setup_cache(10, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("rr", ALLOWED, &oc, 0), VKS_OK);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("rr", &cap);
    vks_cache_test_advance_clock(11); /* expired: the next caller re-fetches (REFRESH) */
    cr_assert_eq(aget("rr", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_REFRESH);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    cr_assert(all_zero(slot, cap), "the old value went with the refusal");
    cr_assert_null(vks_cache_test_slot("rr", NULL));
    struct vks_cache_stats s = stats();
    cr_assert_eq(s.refused_wipes, 1);
    cr_assert_eq(s.values, 0);
}

Test(cache, a_hit_that_new_metadata_refuses_is_wiped)
{
    /* the caller accepts version 1 only; a background refresh brings version 2 */
    setup_cache(10, 900, 5, 0.5, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("mc", 1, &oc, 0), VKS_OK);
    atomic_store(&generation, 1);
    vks_cache_test_advance_clock(6);
    cr_assert_eq(aget("mc", 1, &oc, 0), VKS_OK); /* still version 1; asks for a refresh */
    cr_assert_eq(oc, VKS_CACHE_HIT);
    wait_for_refreshes(1, 0);
    size_t cap = 0;
    const unsigned char *slot = vks_cache_test_slot("mc", &cap);
    cr_assert_not_null(slot);
    cr_assert_eq(aget("mc", 1, &oc, 1), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_HIT);
    cr_assert(all_zero(slot, cap));
    cr_assert_null(vks_cache_test_slot("mc", NULL));
    cr_assert_eq(stats().refused_wipes, 1);
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    /* the new metadata is remembered: refused again without a fetch; version 2 callers fetch */
    cr_assert_eq(aget("mc", 1, &oc, 1), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_NEGATIVE);
    cr_assert_eq(aget("mc", 2, &oc, 1), VKS_OK);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(atomic_load(&fetch_calls), 3);
}

Test(cache, remembered_metadata_ends_with_the_ttl_and_on_invalidate)
{
    setup_cache(10, 900, 5, 1.0, 100);
    enum vks_cache_outcome oc;
    cr_assert_eq(aget("re", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    vks_cache_test_advance_clock(11);
    cr_assert_eq(aget("re", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_MISS, "expired metadata is not used: fetched again");
    cr_assert_eq(atomic_load(&fetch_calls), 2);
    cr_assert_eq(vks_cache_invalidate("re"), 1);
    cr_assert_eq(stats().entries, 0);
    cr_assert_eq(aget("re", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_MISS);
    cr_assert_eq(atomic_load(&fetch_calls), 3);
}

Test(cache, a_refusal_with_caching_off_wipes_the_fetched_value)
{
    setup_cache(0, 900, 5, 0.75, 100);
    enum vks_cache_outcome oc;
    size_t in_use_before;
    {
        struct vks_secmem_status ms;
        vks_secmem_get_status(&ms);
        in_use_before = ms.in_use;
    }
    cr_assert_eq(aget("rb", REFUSED, &oc, 0), VKS_E_RESTRICTED);
    cr_assert_eq(oc, VKS_CACHE_BYPASS);
    struct vks_secmem_status ms;
    vks_secmem_get_status(&ms);
    cr_assert_eq(ms.in_use, in_use_before, "the fetched slot was freed (and so wiped)");
    cr_assert_eq(aget("rb", ALLOWED, &oc, 0), VKS_OK);
    cr_assert_eq(stats().refused, 1);
}

struct aracer {
    const char *id;
    int64_t max_version;
    vks_status st;
    bool ok_value;
};

static void *arace(void *arg)
{
    struct aracer *r = arg;
    struct asrc a = { .max_version = r->max_version };
    snprintf(a.s.id, sizeof a.s.id, "%s", r->id);
    vks_secret v;
    struct vks_err e;
    r->st = vks_cache_get(r->id, NULL, &aops, &a, &v, NULL, &e);
    char want[128];
    value_for(r->id, 0, want, sizeof want);
    r->ok_value = r->st == VKS_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
    vks_secret_free(&v);
    return NULL;
}

Test(cache, concurrent_refused_and_admitted_callers_each_get_their_answer, .timeout = 60)
{
    for (int round = 0; round < 4; round++) {
        setup_cache(300, 900, 5, 1.0, 100);
        atomic_store(&block_until_waits, 16);
        pthread_t t[16];
        struct aracer r[16];
        for (int i = 0; i < 16; i++) {
            /* round 0: the first caller is refused, round 1: admitted, then mixed orders */
            bool refused = round % 2 == 0 ? i % 2 == 0 : i % 2 == 1;
            r[i] = (struct aracer){ .id = "car", .max_version = refused ? REFUSED : ALLOWED };
            cr_assert_eq(pthread_create(&t[i], NULL, arace, &r[i]), 0);
        }
        for (int i = 0; i < 16; i++) {
            pthread_join(t[i], NULL);
            if (r[i].max_version == REFUSED)
                cr_assert_eq(r[i].st, VKS_E_RESTRICTED, "round %d caller %d", round, i);
            else
                cr_assert(r[i].ok_value, "round %d caller %d: %d", round, i, r[i].st);
        }
        cr_assert_eq(stats().refused, 8);
        cr_assert_leq(atomic_load(&fetch_calls), 9);
        /* a last refused caller leaves no value behind */
        cr_assert_eq(aget("car", REFUSED, NULL, 0), VKS_E_RESTRICTED);
        cr_assert_null(vks_cache_test_slot("car", NULL));
        cr_assert_eq(stats().values, 0);
    }
}

/* The caller's metadata is its own copy: it outlives the entry (invalidated, re-fetched with other
 * metadata, flushed), each of several lookups has its own, and a release clears it. Hits and
 * misses alike; without custom metadata too. */
Test(cache, a_callers_metadata_is_its_own_copy_and_outlives_the_entry, .fini = fini)
{
    setup_cache(300, 900, 5, 1.0, 0);
    struct src s = { "mc" };
    vks_secret v1, v2, v3;
    struct vks_cache_info i1, i2, i3;
    struct vks_err e;
    cr_assert_eq(vks_cache_get("mc", NULL, &ops, &s, &v1, &i1, &e), VKS_OK);        /* MISS */
    cr_assert_eq(i1.outcome, VKS_CACHE_MISS);
    cr_assert_eq(vks_cache_get("mc", NULL, &ops, &s, &v2, &i2, &e), VKS_OK);        /* HIT */
    cr_assert_eq(i2.outcome, VKS_CACHE_HIT);
    cr_assert(i1.meta != i2.meta && i1.meta == &i1.meta_copy_ && i2.meta == &i2.meta_copy_);
    atomic_store(&generation, 5);
    cr_assert_eq(vks_cache_invalidate("mc"), 1);
    cr_assert_eq(vks_cache_get("mc", NULL, &ops, &s, &v3, &i3, &e), VKS_OK);        /* new value */
    cr_assert_eq(vks_cache_flush(), 1);
    /* the entry is gone: both earlier copies still say what they were given (ASan: no use after
     * free of the custom metadata text) */
    for (int k = 0; k < 2; k++) {
        const struct vks_cache_info *i = k == 0 ? &i1 : &i2;
        cr_assert_eq(i->meta->secret_version, 1);
        cr_assert_str_eq(i->meta->token_accessor, "acc-mc");
        cr_assert_str_eq(i->meta->custom_metadata_json, "{\"allowed_domains\":\"example.org\"}");
    }
    cr_assert_eq(i3.meta->secret_version, 6);
    vks_cache_info_release(&i1);
    cr_assert_null(i1.meta);
    cr_assert_str_eq(i2.meta->custom_metadata_json, "{\"allowed_domains\":\"example.org\"}");
    vks_cache_info_release(&i1); /* idempotent */
    vks_cache_info_release(&i2);
    vks_cache_info_release(&i3);
    vks_secret_free(&v1);
    vks_secret_free(&v2);
    vks_secret_free(&v3);

    /* a value without custom metadata: a copy without text, hits included */
    setup_cache(300, 900, 5, 1.0, 0);
    cr_assert_eq(vks_cache_get("bench", NULL, &nometa_ops, NULL, &v1, &i1, &e), VKS_OK);
    cr_assert_eq(vks_cache_get("bench", NULL, &nometa_ops, NULL, &v2, &i2, &e), VKS_OK);
    cr_assert_eq(i2.outcome, VKS_CACHE_HIT);
    cr_assert(i2.meta != NULL && i2.meta->kv_version == 1 && i2.meta->custom_metadata_json == NULL);
    cr_assert_eq(vks_cache_flush(), 1);
    cr_assert_eq(i1.meta->kv_version, 1);
    vks_cache_info_release(&i1);
    vks_cache_info_release(&i2);
    vks_secret_free(&v1);
    vks_secret_free(&v2);
}
