/*
 * Inbound credentials (issue 15): the verifier format (round trips, strict bounded parsing, wrong
 * passwords) and vks_inbound against a real build/vault-dev over HTTPS: credentials created with
 * vks_cred_create(--inbound), the success cache (a different password never hits), the source
 * address and sender domain restrictions, state reset / outbound / deleted credentials refused,
 * and the lockout per username and per source address.
 * Secrets: tests/test-secrets.d/inbound.txt.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "vaultdev_harness.h"
#include "vks_cred.h"
#include "vks_envelope.h"
#include "vks_inbound.h"
#include "vks_verifier.h"

#define PW "inbound-Test-Password-7c41"
#define PW2 "inbound-Wrong-Password-19ad"

static struct vks_verifier_params fast(enum vks_verifier_scheme s)
{
    struct vks_verifier_params p;
    vks_verifier_params_default(&p);
    p.scheme = s;
    p.ln = 10;
    p.r = 8;
    p.p = 1;
    p.iterations = 10000;
    return p;
}

Test(verifier, round_trip_both_schemes)
{
    for (int s = 1; s <= 2; s++) {
        struct vks_verifier_params p = fast((enum vks_verifier_scheme)s);
        char v[VKS_VERIFIER_MAX + 1], v2[VKS_VERIFIER_MAX + 1];
        struct vks_err e;
        cr_assert_eq(vks_verifier_create(&p, (const unsigned char *)PW, strlen(PW), v, sizeof v, &e), VKS_OK, "%s",
                     e.msg);
        cr_assert_eq(vks_verifier_create(&p, (const unsigned char *)PW, strlen(PW), v2, sizeof v2, &e), VKS_OK);
        cr_assert_str_neq(v, v2, "a fresh salt each time");
        cr_assert(strstr(v, PW) == NULL);
        cr_assert(strncmp(v, s == 1 ? "$vks-scrypt$ln=10,r=8,p=1$" : "$vks-pbkdf2-sha256$i=10000$", 20) == 0, "%s", v);
        cr_assert_eq(vks_verifier_check(v, strlen(v), (const unsigned char *)PW, strlen(PW), &e), VKS_OK, "%s", e.msg);
        cr_assert_eq(vks_verifier_check(v, strlen(v), (const unsigned char *)PW2, strlen(PW2), &e), VKS_E_AUTH_FAILED);
        cr_assert_eq(vks_verifier_check(v, strlen(v), (const unsigned char *)PW, strlen(PW) - 1, &e),
                     VKS_E_AUTH_FAILED);
        cr_assert_eq(vks_verifier_check(v, strlen(v), NULL, 0, &e), VKS_E_AUTH_FAILED, "empty password");
    }
}

Test(verifier, strict_parsing_fails_closed)
{
    static const char *const bad[] = {
        "", "$vks-md5$x$y$z", "$vks-scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$"
                              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$vks-scrypt$ln=14,r=8$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$vks-scrypt$ln=14,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$vks-scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "$vks-scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$x",
        "$vks-pbkdf2-sha256$i=9$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$vks-pbkdf2-sha256$i=0600000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "$vks-scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAA!==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vks_err e;
        vks_err_clear(&e);
        cr_assert_eq(vks_verifier_check(bad[i], strlen(bad[i]), (const unsigned char *)PW, strlen(PW), &e),
                     VKS_E_BAD_RESPONSE, "case %zu", i);
        cr_assert(strstr(e.msg, "verifier"), "%s", e.msg);
    }
    char big[400];
    memset(big, 'A', sizeof big);
    memcpy(big, "$vks-scrypt$", 12);
    cr_assert_eq(vks_verifier_check(big, sizeof big, (const unsigned char *)PW, 2, NULL), VKS_E_BAD_RESPONSE);
    const char nul[] = "$vks-scrypt$ln=14\0,r=8,p=1$";
    cr_assert_eq(vks_verifier_check(nul, sizeof nul - 1, (const unsigned char *)PW, 2, NULL), VKS_E_BAD_RESPONSE);
}

Test(verifier, operator_parameters)
{
    struct vks_verifier_params p;
    struct vks_err e;
    cr_assert_eq(vks_verifier_params_parse("scrypt", "--verifier", &p, &e), VKS_OK);
    cr_assert(p.scheme == VKS_VERIFIER_SCRYPT && p.ln == 14 && p.r == 8 && p.p == 5);
    cr_assert_eq(vks_verifier_params_parse("scrypt:ln=15,r=8,p=1", "--verifier", &p, &e), VKS_OK);
    cr_assert(p.ln == 15 && p.p == 1);
    cr_assert_eq(vks_verifier_params_parse("pbkdf2-sha256:i=700000", "--verifier", &p, &e), VKS_OK);
    cr_assert(p.scheme == VKS_VERIFIER_PBKDF2_SHA256 && p.iterations == 700000);
    static const char *const bad[] = { "md5", "scrypt:", "scrypt:ln=21,r=8,p=1", "scrypt:r=8,ln=14,p=1",
                                       "pbkdf2-sha256:i=10", "pbkdf2-sha256:i=1e6", "scrypt:ln=14,r=8,p=1,x=2" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(vks_verifier_params_parse(bad[i], "--verifier", &p, &e), VKS_E_INVALID_INPUT, "%s", bad[i]);
        cr_assert(strstr(e.msg, "--verifier"), "%s", e.msg);
    }
}

/* ------------------------------------------------------------------ against vault-dev */

static struct vd srv;
static char tls_dir[600];
static struct vks_vault *vault;

static void setup_server(void)
{
    if (!vd_available())
        cr_skip_test("build/vault-dev is not built");
    snprintf(tls_dir, sizeof tls_dir, "%s/inbound-tls-%d", vd_work_dir(), (int)getpid());
    mkdir(tls_dir, 0700);
    vd_start(&srv, tls_dir);
    struct vks_vault_config c;
    vks_vault_config_defaults(&c);
    c.address = strdup(srv.addr);
    c.cacert = strdup(srv.cacert);
    cr_assert_eq(vks_secret_dup(VD_ROOT_TOKEN, strlen(VD_ROOT_TOKEN), &c.token, NULL), VKS_OK);
    c.max_retries = 0;
    c.timeout_ms = 10000;
    struct vks_err e;
    cr_assert_eq(vks_vault_new(&c, &vault, &e), VKS_OK, "%s", e.msg);
    vks_vault_config_clear(&c);
}

static void teardown_server(void)
{
    vks_vault_free(vault);
    vd_stop(&srv);
}

TestSuite(inbound, .init = setup_server, .fini = teardown_server, .timeout = 120);

/* Creates NAME/USER with PW, domains (NULL = all), ips (NULL = all). */
static void create(const char *name, const char *user, bool inbound, const char *const *domains,
                   const char *const *ips)
{
    struct vks_cred_ctx ctx;
    struct vks_err e;
    cr_assert_eq(vks_cred_ctx_init(&ctx, vault, NULL, "secret", "smtp-auth/", "test", &e), VKS_OK, "%s", e.msg);
    struct vks_cred_restrictions r;
    memset(&r, 0, sizeof r);
    r.domains.all = domains == NULL;
    r.hosts.all = ips == NULL;
    for (; domains && *domains; domains++)
        cr_assert_eq(vks_cred_list_add(&r.domains, false, *domains, "--domain", &e), VKS_OK);
    for (; ips && *ips; ips++)
        cr_assert_eq(vks_cred_list_add(&r.hosts, true, *ips, "--ip", &e), VKS_OK);
    struct vks_verifier_params p = fast(VKS_VERIFIER_SCRYPT);
    vks_secret given = VKS_SECRET_EMPTY, out = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_dup(PW, strlen(PW), &given, NULL), VKS_OK);
    struct vks_cred_create_req req = { .name = name, .username = user, .restrictions = &r, .password = &given,
                                       .inbound = inbound, .verifier = &p };
    int64_t ver = 0;
    vks_status st = vks_cred_create(&ctx, &req, &out, &ver, &e);
    cr_assert_eq(st, VKS_OK, "%s", e.msg);
    vks_secret_free(&given);
    vks_secret_free(&out);
    vks_cred_restrictions_free(&r);
}

static struct vks_inbound *ib_new(long ttl, unsigned maxf, long lock_ms)
{
    struct vks_inbound_config c = { .cache_ttl_ms = ttl, .max_failures = maxf, .max_failures_address = maxf + 2,
                                    .lockout_ms = lock_ms, .window_ms = 600000, .entries = 64 };
    struct vks_inbound *ib = NULL;
    struct vks_err e;
    cr_assert_eq(vks_inbound_new(&c, vault, NULL, &ib, &e), VKS_OK, "%s", e.msg);
    return ib;
}

static enum vks_inbound_outcome login(struct vks_inbound *ib, const char *u, const char *pw, const char *src,
                                      bool *cached)
{
    struct vks_inbound_answer a;
    cr_assert_eq(vks_inbound_verify(ib, u, (const unsigned char *)pw, strlen(pw), src, &a, NULL), VKS_OK);
    if (cached)
        *cached = a.cached;
    cr_assert(strstr(a.reason, pw) == NULL);
    return a.outcome;
}

static enum vks_inbound_outcome sender(struct vks_inbound *ib, const char *u, const char *s, char *why)
{
    struct vks_inbound_answer a;
    cr_assert_eq(vks_inbound_check_sender(ib, u, s, "127.0.0.1", &a, NULL), VKS_OK);
    if (why)
        strcpy(why, a.reason);
    return a.outcome;
}

Test(inbound, verify_cache_and_restrictions)
{
    static const char *const dom[] = { "app.example", "*.app.example", NULL };
    static const char *const ips[] = { "127.0.0.1", "2001:db8::/32", NULL };
    create("in/app1", "app1@app.example", true, dom, ips);
    struct vks_inbound *ib = ib_new(30000, 10, 60000);
    bool cached = true;
    cr_assert_eq(login(ib, "app1@app.example", PW, "127.0.0.1", &cached), VKS_IN_OK);
    cr_assert(!cached);
    cr_assert_eq(login(ib, "APP1@app.example", PW, "127.0.0.1", &cached), VKS_IN_OK, "usernames fold case");
    cr_assert(cached);
    cr_assert_eq(login(ib, "app1@app.example", PW2, "127.0.0.1", &cached), VKS_IN_BAD_PASSWORD);
    cr_assert(!cached, "a different password never hits the cache");
    cr_assert_eq(login(ib, "app1@app.example", PW, "2001:db8::7", NULL), VKS_IN_OK);
    cr_assert_eq(login(ib, "app1@app.example", PW, "127.0.0.2", NULL), VKS_IN_SOURCE_REFUSED, "cached, other IP");
    cr_assert_eq(login(ib, "app1@app.example", PW, NULL, NULL), VKS_IN_SOURCE_REFUSED, "no address: fail closed");
    cr_assert_eq(login(ib, "nobody@app.example", PW, "127.0.0.1", NULL), VKS_IN_UNKNOWN_USER);
    char why[256];
    cr_assert_eq(sender(ib, "app1@app.example", "x@app.example", NULL), VKS_IN_OK);
    cr_assert_eq(sender(ib, "app1@app.example", "x@mail.app.example", NULL), VKS_IN_OK);
    cr_assert_eq(sender(ib, "app1@app.example", "x@other.example", why), VKS_IN_SENDER_REFUSED);
    cr_assert(strstr(why, "other.example"), "%s", why);
    cr_assert_eq(sender(ib, "app1@app.example", "", NULL), VKS_IN_SENDER_REFUSED, "null sender, restricted");
    vks_inbound_flush(ib);
    cr_assert_eq(sender(ib, "app1@app.example", "x@app.example", NULL), VKS_IN_OK, "record read from Vault");
    cr_assert_eq(sender(ib, "nobody@app.example", "x@app.example", NULL), VKS_IN_UNKNOWN_USER);
    vks_inbound_free(ib);
}

Test(inbound, all_domains_and_no_cache)
{
    create("in/app2", "app2", true, NULL, NULL);
    struct vks_inbound *ib = ib_new(0, 10, 60000);
    bool cached = true;
    cr_assert_eq(login(ib, "app2", PW, "192.0.2.1", &cached), VKS_IN_OK);
    cr_assert_eq(login(ib, "app2", PW, "192.0.2.1", &cached), VKS_IN_OK);
    cr_assert(!cached, "ttl 0: never cached");
    cr_assert_eq(sender(ib, "app2", "a@any-new-domain.example", NULL), VKS_IN_OK);
    cr_assert_eq(sender(ib, "app2", "", NULL), VKS_IN_OK);
    vks_inbound_free(ib);
}

/* Rewrites custom_metadata key k of smtp-auth/NAME (the reset helper's state=reset). */
static void set_meta(const char *name, const char *k, const char *v)
{
    struct vks_cred_ctx ctx;
    struct vks_cred_record rec;
    struct vks_err e;
    cr_assert_eq(vks_cred_ctx_init(&ctx, vault, NULL, "secret", "smtp-auth/", "test", &e), VKS_OK);
    cr_assert_eq(vks_cred_show(&ctx, name, &rec, &e), VKS_OK, "%s", e.msg);
    if (strcmp(k, "state") == 0)
        snprintf(rec.state, sizeof rec.state, "%s", v);
    else
        snprintf(rec.direction, sizeof rec.direction, "%s", v);
    char *body = NULL, path[300];
    cr_assert_eq(vks_cred_metadata_body(&rec, &body, &e), VKS_OK);
    snprintf(path, sizeof path, "smtp-auth/%s", name);
    cr_assert_eq(vks_vault_kv2_metadata_write(vault, "secret", path, body, &e), VKS_OK, "%s", e.msg);
    free(body);
    vks_cred_record_free(&rec);
}

Test(inbound, reset_outbound_and_deleted_fail_closed)
{
    create("in/app3", "app3", true, NULL, NULL);
    struct vks_inbound *ib = ib_new(0, 100, 60000);
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_OK);
    set_meta("in/app3", "state", "reset");
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_REVOKED);
    cr_assert_eq(sender(ib, "app3", "a@b.example", NULL), VKS_IN_REVOKED);
    set_meta("in/app3", "state", "weird");
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_REVOKED);
    set_meta("in/app3", "state", "active");
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_OK);
    set_meta("in/app3", "direction", "outbound");
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_REVOKED, "an outbound credential");
    set_meta("in/app3", "direction", "inbound");
    struct vks_cred_ctx ctx;
    struct vks_err e;
    cr_assert_eq(vks_cred_ctx_init(&ctx, vault, NULL, "secret", "smtp-auth/", "test", &e), VKS_OK);
    cr_assert_eq(vks_cred_delete(&ctx, "in/app3", "app3", &e), VKS_OK, "%s", e.msg);
    cr_assert_eq(login(ib, "app3", PW, "127.0.0.1", NULL), VKS_IN_UNKNOWN_USER);
    vks_inbound_free(ib);
}

Test(inbound, cache_ttl_bounds_a_delete)
{
    create("in/app4", "app4", true, NULL, NULL);
    struct vks_inbound *ib = ib_new(1000, 100, 60000);
    cr_assert_eq(login(ib, "app4", PW, "127.0.0.1", NULL), VKS_IN_OK);
    struct vks_cred_ctx ctx;
    struct vks_err e;
    cr_assert_eq(vks_cred_ctx_init(&ctx, vault, NULL, "secret", "smtp-auth/", "test", &e), VKS_OK);
    cr_assert_eq(vks_cred_delete(&ctx, "in/app4", "app4", &e), VKS_OK, "%s", e.msg);
    bool cached = false;
    cr_assert_eq(login(ib, "app4", PW, "127.0.0.1", &cached), VKS_IN_OK, "within the ttl");
    cr_assert(cached);
    usleep(1100 * 1000);
    cr_assert_eq(login(ib, "app4", PW, "127.0.0.1", NULL), VKS_IN_UNKNOWN_USER, "after the ttl");
    vks_inbound_free(ib);
}

Test(inbound, lockout_per_username_and_address)
{
    create("in/app5", "app5", true, NULL, NULL);
    create("in/app6", "app6", true, NULL, NULL);
    struct vks_inbound *ib = ib_new(30000, 3, 1500);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(login(ib, "app5", PW2, "192.0.2.1", NULL), VKS_IN_BAD_PASSWORD);
    cr_assert_eq(login(ib, "app5", PW, "192.0.2.9", NULL), VKS_IN_LOCKED, "right password, locked username");
    cr_assert_eq(login(ib, "app6", PW, "192.0.2.9", NULL), VKS_IN_OK, "another username is served");
    usleep(1600 * 1000);
    cr_assert_eq(login(ib, "app5", PW, "192.0.2.9", NULL), VKS_IN_OK, "after the window");
    /* the address: max_failures + 2 = 5 failures over several usernames from one address */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(login(ib, i % 2 ? "ghost1" : "ghost2", PW2, "192.0.2.50", NULL), VKS_IN_UNKNOWN_USER);
    cr_assert_eq(login(ib, "app6", PW, "192.0.2.50", NULL), VKS_IN_LOCKED, "the address is locked");
    cr_assert_eq(login(ib, "app6", PW, "192.0.2.51", NULL), VKS_IN_OK);
    vks_inbound_free(ib);
}

struct race {
    struct vks_inbound *ib;
    int wrong_ok, right_bad;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 40; i++) {
        struct vks_inbound_answer a;
        bool wrong = i % 4 == 3;
        const char *pw = wrong ? PW2 : PW;
        vks_inbound_verify(r->ib, i % 2 ? "app7" : "APP7", (const unsigned char *)pw, strlen(pw), "127.0.0.1", &a,
                           NULL);
        if (!wrong && a.outcome != VKS_IN_OK)
            __atomic_add_fetch(&r->right_bad, 1, __ATOMIC_RELAXED);
        if (wrong && a.outcome == VKS_IN_OK)
            __atomic_add_fetch(&r->wrong_ok, 1, __ATOMIC_RELAXED);
        vks_inbound_check_sender(r->ib, "app7", "a@b.example", "127.0.0.1", &a, NULL);
    }
    return NULL;
}

Test(inbound, concurrent_logins_share_the_cache_safely)
{
    create("in/app7", "app7", true, NULL, NULL);
    struct vks_inbound *ib = ib_new(30000, 100000, 60000);
    struct race r = { .ib = ib };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, racer, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(r.wrong_ok, 0, "a wrong password never succeeded");
    cr_assert_eq(r.right_bad, 0, "the right password always succeeded");
    vks_inbound_free(ib);
}

Test(inbound, retrievable_credentials_compare_the_decrypted_password)
{
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    unsigned char key[32];
    memset(key, 0x5a, sizeof key);
    cr_assert_eq(vks_keyring_new(&kr, &e), VKS_OK);
    cr_assert_eq(vks_keyring_add(kr, "k1", key, &e), VKS_OK, "%s", e.msg);
    struct vks_cred_ctx ctx;
    cr_assert_eq(vks_cred_ctx_init(&ctx, vault, kr, "secret", "smtp-auth/", "test", &e), VKS_OK);
    struct vks_cred_restrictions r;
    memset(&r, 0, sizeof r);
    r.domains.all = r.hosts.all = true;
    vks_secret given = VKS_SECRET_EMPTY, out = VKS_SECRET_EMPTY;
    cr_assert_eq(vks_secret_dup(PW, strlen(PW), &given, NULL), VKS_OK);
    struct vks_cred_create_req req = { .name = "in/app8", .username = "app8", .restrictions = &r, .password = &given,
                                       .inbound = true, .retrievable = true };
    int64_t ver = 0;
    cr_assert_eq(vks_cred_create(&ctx, &req, &out, &ver, &e), VKS_OK, "%s", e.msg);
    vks_secret_free(&given);
    vks_secret_free(&out);
    struct vks_inbound_config c = { .cache_ttl_ms = 0, .entries = 16 };
    struct vks_inbound *ib = NULL;
    cr_assert_eq(vks_inbound_new(&c, vault, kr, &ib, &e), VKS_OK);
    cr_assert_eq(login(ib, "app8", PW, "127.0.0.1", NULL), VKS_IN_OK, "the decrypted password matches");
    cr_assert_eq(login(ib, "app8", PW2, "127.0.0.1", NULL), VKS_IN_BAD_PASSWORD);
    cr_assert_eq(login(ib, "app8", "inbound-Test-Password-7c4", "127.0.0.1", NULL), VKS_IN_BAD_PASSWORD,
                 "a prefix of the password");
    vks_inbound_free(ib);
    cr_assert_eq(vks_inbound_new(&c, vault, NULL, &ib, &e), VKS_OK);
    struct vks_inbound_answer a;
    vks_inbound_verify(ib, "app8", (const unsigned char *)PW, strlen(PW), "127.0.0.1", &a, NULL);
    cr_assert_eq(a.outcome, VKS_IN_REVOKED, "no key to decrypt with: fail closed");
    cr_assert(strstr(a.reason, "no encryption key"), "%s", a.reason);
    vks_inbound_free(ib);
    vks_keyring_free(kr);
}
