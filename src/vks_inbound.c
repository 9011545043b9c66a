/*
 * vks_inbound: the verification flow (contract: vks_inbound.h; tables: src/vks_inbound_table.c).
 */
#include <ctype.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "vks_audit.h"
#include "vks_envelope.h"
#include "vks_cred_int.h"
#include "vks_inbound_int.h"
#include "vks_reset_gate.h"
#include "vks_restrict.h"
#include "vks_verifier.h"

#define PW_MAX 1024

const char *vks_inbound_outcome_name(enum vks_inbound_outcome o)
{
    static const char *const n[] = { "ok", "bad_password", "unknown_user", "source_refused", "sender_refused",
                                     "locked", "revoked", "temp" };
    return (unsigned)o < sizeof n / sizeof n[0] ? n[o] : "unknown";
}

vks_status vks_inbound_new(const struct vks_inbound_config *cfg, struct vks_vault *vault,
                           const struct vks_keyring *kr, struct vks_inbound **out, struct vks_err *err)
{
    *out = NULL;
    const char *mount = cfg && cfg->mount ? cfg->mount : VKS_CRED_DEFAULT_MOUNT;
    const char *prefix = cfg && cfg->prefix ? cfg->prefix : VKS_CRED_DEFAULT_PREFIX;
    if (vault == NULL || strlen(mount) >= 128 || vks_cred_check_name(mount, "mount", err) != VKS_OK ||
        vks_cred_check_prefix(prefix, "prefix", err) != VKS_OK)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_inbound_new: no Vault client, or a bad mount or prefix");
    struct vks_inbound *ib = calloc(1, sizeof *ib);
    if (ib == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    pthread_mutex_init(&ib->mu, NULL);
    ib->vault = vault;
    ib->kr = kr;
    snprintf(ib->mount, sizeof ib->mount, "%s", mount);
    snprintf(ib->prefix, sizeof ib->prefix, "%s", prefix);
    ib->ttl_ms = cfg && cfg->cache_ttl_ms >= 0 ? cfg->cache_ttl_ms : 30000;
    ib->lockout_ms = cfg && cfg->lockout_ms > 0 ? cfg->lockout_ms : 1800000;
    ib->window_ms = cfg && cfg->window_ms > 0 ? cfg->window_ms : 900000;
    ib->max_user = cfg && cfg->max_failures ? cfg->max_failures : 10;
    ib->max_addr = cfg && cfg->max_failures_address ? cfg->max_failures_address : 30;
    ib->n = cfg && cfg->entries ? cfg->entries : 1024;
    ib->reset_interval_ms = cfg ? cfg->reset_interval_ms : 0;
    ib->reset_bound_ms = cfg ? cfg->reset_bound_ms : 0;
    unsigned char rnd[32];
    vks_status st = ib_table_init(ib, err);
    if (st == VKS_OK && getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        st = vks_err_set(err, VKS_E_INTERNAL, "inbound: getrandom failed");
    if (st == VKS_OK)
        st = vks_hmac_key_set(&ib->key, rnd, sizeof rnd, err);
    struct vks_verifier_params p;
    vks_verifier_params_default(&p);
    if (st == VKS_OK) /* the dummy password is the random bytes themselves, wiped below */
        st = vks_verifier_create(&p, rnd, 16, ib->dummy, sizeof ib->dummy, err);
    vks_wipe(rnd, sizeof rnd);
    if (st != VKS_OK) {
        vks_inbound_free(ib);
        return st;
    }
    *out = ib;
    return VKS_OK;
}

void vks_inbound_free(struct vks_inbound *ib)
{
    if (ib == NULL)
        return;
    ib_table_free(ib);
    vks_hmac_key_clear(&ib->key);
    pthread_mutex_destroy(&ib->mu);
    free(ib);
}

/* ------------------------------------------------------------------ the credential record */

static void answer(struct vks_inbound_answer *a, enum vks_inbound_outcome o, const char *fmt, const char *arg)
{
    char t[160];
    size_t n = arg ? strnlen(arg, sizeof t - 1) : 0;
    memcpy(t, arg ? arg : "", n);
    t[n] = '\0';
    a->outcome = o;
    snprintf(a->reason, sizeof a->reason, fmt, t);
}

static enum vks_inbound_outcome read_fail(vks_status st)
{
    return st == VKS_E_NOT_FOUND || st == VKS_E_DELETED || st == VKS_E_DESTROYED || st == VKS_E_MISSING_KEY
               ? VKS_IN_UNKNOWN_USER
               : VKS_IN_TEMP;
}

/* Reads the record of username from Vault; pwfields (may be NULL) receives [verifier, key]. */
static void fetch(struct vks_inbound *ib, const char *ukey, struct ib_rec *rec, vks_secret pwfields[2],
                  struct vks_inbound_answer *a)
{
    static const char hx[] = "0123456789abcdef";
    char ipath[VKS_CRED_INDEX_PATH_MAX], path[2 * VKS_CRED_NAME_MAX + 2];
    int o = snprintf(ipath, sizeof ipath, "vks-index/%susernames/", ib->prefix);
    for (const unsigned char *p = (const unsigned char *)ukey; *p && (size_t)o + 3 <= sizeof ipath; p++) {
        ipath[o++] = hx[*p >> 4];
        ipath[o++] = hx[*p & 15];
        ipath[o] = '\0';
    }
    struct vks_kv_request rq = { .mount = ib->mount, .path = ipath, .key = "name", .kv_version = 2 };
    struct vks_kv_result res;
    struct vks_err e;
    vks_err_clear(&e);
    memset(&res, 0, sizeof res);
    vks_status st = vks_vault_kv_read(ib->vault, &rq, &res, &e);
    if (st == VKS_OK && (res.value.len == 0 || res.value.len > VKS_CRED_NAME_MAX))
        st = VKS_E_NOT_FOUND;
    if (st == VKS_OK)
        snprintf(rec->name, sizeof rec->name, "%.*s", (int)res.value.len, (const char *)res.value.data);
    vks_kv_result_free(&res);
    static const char *const sib[] = { "verifier", "key" };
    snprintf(path, sizeof path, "%s%s", ib->prefix, rec->name);
    struct vks_kv_request rd = { .mount = ib->mount, .path = path, .key = "username", .kv_version = 2,
                                 .siblings = sib, .n_siblings = pwfields ? 2 : 0 };
    if (st == VKS_OK && vks_cred_check_name(rec->name, "name", NULL) != VKS_OK)
        st = VKS_E_NOT_FOUND;
    if (st == VKS_OK && (st = vks_vault_kv_read(ib->vault, &rd, &res, &e)) == VKS_OK) {
        snprintf(rec->username, sizeof rec->username, "%.*s", (int)res.value.len, (const char *)res.value.data);
        rec->version = res.secret_version;
        if (res.custom_metadata_json && (rec->cm = strdup(res.custom_metadata_json)) == NULL)
            st = VKS_E_NOMEM;
        for (int i = 0; pwfields && i < 2; i++) {
            pwfields[i] = res.siblings[i];
            res.siblings[i] = VKS_SECRET_EMPTY;
        }
        vks_kv_result_free(&res);
    }
    if (st != VKS_OK)
        answer(a, read_fail(st), st == VKS_E_NOT_FOUND || read_fail(st) == VKS_IN_UNKNOWN_USER
                                     ? "no inbound credential has this username%s"
                                     : "the credential store could not be asked: %s", e.msg);
}

static void cm_get(json_object *cm, const char *k, char *out, size_t cap)
{
    json_object *v = NULL;
    out[0] = '\0';
    if (json_object_object_get_ex(cm, k, &v) && json_object_is_type(v, json_type_string))
        snprintf(out, cap, "%s", json_object_get_string(v));
}

/* Fail closed on the record: managed, inbound, this username, active/rotating without a reset_id, lists
   understood. */
static bool judge(const struct ib_rec *rec, const char *ukey, struct vks_inbound_answer *a)
{
    json_object *cm = rec->cm ? json_tokener_parse(rec->cm) : NULL;
    char mark[8] = "", dir[16] = "", state[24] = "", user[VKS_CRED_USERNAME_MAX + 1] = "";
    bool under_reset = false;
    if (cm && json_object_is_type(cm, json_type_object)) {
        under_reset = json_object_object_get_ex(cm, "reset_id", NULL);
        cm_get(cm, "vks_cred", mark, sizeof mark);
        cm_get(cm, "direction", dir, sizeof dir);
        cm_get(cm, "state", state, sizeof state);
        cm_get(cm, "username", user, sizeof user);
    }
    json_object_put(cm);
    struct vks_err e;
    bool ok = false;
    if (!mark[0])
        answer(a, VKS_IN_REVOKED, "the credential is not managed by vks cred%s", NULL);
    else if (strcmp(dir, "inbound") != 0)
        answer(a, VKS_IN_REVOKED, "the credential is not an inbound credential%s", NULL);
    else if (strcasecmp(user, ukey) != 0 || strcasecmp(rec->username, ukey) != 0)
        answer(a, VKS_IN_REVOKED, "the credential's username does not match its index record%s", NULL);
    else if (strcmp(state, "active") != 0 && strcmp(state, "rotating") != 0)
        answer(a, VKS_IN_REVOKED, "the credential is not active (state %s)", state[0] ? state : "absent");
    else if (under_reset) /* a rotation claimed a reset credential: still reset until it finishes */
        answer(a, VKS_IN_REVOKED, "the credential is under an emergency reset%s", "");
    else if (vks_restrict_validate(rec->cm, strlen(rec->cm), NULL, &e) != VKS_OK)
        answer(a, VKS_IN_REVOKED, "the credential's restrictions cannot be understood: %s", e.msg);
    else
        ok = true;
    return ok;
}

/* One restriction list of rec against ctx (the other list ignored). */
static bool allowed(const struct ib_rec *rec, const char *list, const struct vks_restrict_ctx *ctx, char *why,
                    size_t cap)
{
    json_object *cm = rec->cm ? json_tokener_parse(rec->cm) : NULL, *v = NULL, *one = json_object_new_object();
    bool ok = one != NULL;
    if (ok && cm && json_object_object_get_ex(cm, list, &v))
        json_object_object_add(one, list, json_object_get(v));
    const char *txt = ok ? json_object_to_json_string_ext(one, JSON_C_TO_STRING_PLAIN) : NULL;
    struct vks_err e;
    vks_err_clear(&e);
    if (ok && vks_restrict_check(txt, strlen(txt), ctx, &e) != VKS_OK) {
        ok = false;
        snprintf(why, cap, "%.150s", e.msg);
    }
    json_object_put(one);
    json_object_put(cm);
    return ok;
}

/* ------------------------------------------------------------------ audit */

static void audit(struct vks_inbound *ib, const char *api, const struct ib_rec *rec, const char *username,
                  const char *source, const char *domain, const struct vks_inbound_answer *a)
{
    char path[2 * VKS_CRED_NAME_MAX + 2] = "";
    if (rec && rec->name[0])
        snprintf(path, sizeof path, "%s%s", ib->prefix, rec->name);
    static const vks_status code[] = { VKS_OK, VKS_E_AUTH_FAILED, VKS_E_NOT_FOUND, VKS_E_RESTRICTED,
                                       VKS_E_RESTRICTED, VKS_E_AUTH_FAILED, VKS_E_REVOKED, VKS_E_UNAVAILABLE };
    struct vks_audit_event ev = {
        .api = api, .status = code[a->outcome], .source = VKS_AUDIT_SRC_VAULT,
        .outcome = a->outcome == VKS_IN_OK ? (a->cached ? VKS_AUDIT_HIT : VKS_AUDIT_MISS)
                   : a->outcome == VKS_IN_TEMP ? VKS_AUDIT_ERROR : VKS_AUDIT_DENIED,
        .error = a->outcome == VKS_IN_OK ? NULL : a->reason, .mount = ib->mount, .path = path[0] ? path : NULL,
        .key = strcmp(api, "inbound.sender") == 0 ? NULL : "verifier", .kv_version = 2, .secret_version = rec ? rec->version : 0, .cached = a->cached,
        .ctx = { .username = username, .destination = source, .domain = domain },
    };
    (void)vks_audit_emit(&ev, NULL, NULL);
}

/* ------------------------------------------------------------------ verify */

/* The emergency reset's check of the mount's control record (vks_reset_gate.h), as every resolver
   does: a reset seen changes the epoch, and cache entries of another epoch are absent, so a reset
   credential reaches Vault (and its state=reset) within one check interval. A record that cannot
   be understood, or one unverified past its bound, answers TEMP: the login is deferred, never
   accepted, and does not count towards a lockout. *epoch: the epoch to cache under. */
static bool reset_gate_ok(struct vks_inbound *ib, struct vks_inbound_answer *a, uint64_t *epoch)
{
    struct vks_reset_gate_req gr = { .vault = ib->vault, .mount = ib->mount, .interval_ms = ib->reset_interval_ms,
                                     .bound_ms = ib->reset_bound_ms, .hit_only = false };
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_reset_gate(&gr, &e);
    *epoch = vks_reset_gate_epoch();
    if (st != VKS_OK)
        answer(a, VKS_IN_TEMP, "%s", e.msg);
    return st == VKS_OK;
}

static bool lower_key(const char *u, char *out, size_t cap)
{
    size_t n = u ? strlen(u) : 0;
    if (n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e))
            return false;
        out[i] = (char)tolower((unsigned char)u[i]);
    }
    return true;
}

static bool tag_of(struct vks_inbound *ib, const char *ukey, const unsigned char *pw, size_t n,
                   unsigned char tag[IB_TAG_LEN])
{
    vks_secret m = VKS_SECRET_EMPTY;
    size_t kl = strlen(ukey);
    bool ok = vks_secret_alloc(kl + 1 + n + 1, &m, NULL) == VKS_OK;
    if (ok) {
        memcpy(m.data, ukey, kl + 1);
        memcpy(m.data + kl + 1, pw, n);
        ok = vks_hmac(&ib->key, m.data, kl + 1 + n, tag);
    }
    vks_secret_free(&m);
    return ok;
}

/* The password against the verifier or the --retrievable envelope. */
static void check_password(struct vks_inbound *ib, const struct ib_rec *rec, vks_secret f[2], const unsigned char *pw,
                           size_t n, struct vks_inbound_answer *a)
{
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st;
    if (f[0].len > 0) {
        st = vks_verifier_check((const char *)f[0].data, f[0].len, pw, n, &e);
    } else if (f[1].len > 0 && ib->kr != NULL) {
        char path[2 * VKS_CRED_NAME_MAX + 2];
        snprintf(path, sizeof path, "%s%s", ib->prefix, rec->name);
        struct vks_envelope_place place = { ib->mount, path, "key" };
        vks_secret plain = VKS_SECRET_EMPTY;
        unsigned char t1[IB_TAG_LEN], t2[IB_TAG_LEN];
        st = vks_envelope_decrypt(ib->kr, f[1].data, f[1].len, &place, &plain, NULL, &e);
        if (st == VKS_OK && (!tag_of(ib, "", plain.data, plain.len, t1) || !tag_of(ib, "", pw, n, t2)))
            st = vks_err_set(&e, VKS_E_INTERNAL, "hmac failed");
        if (st == VKS_OK && CRYPTO_memcmp(t1, t2, IB_TAG_LEN) != 0)
            st = VKS_E_AUTH_FAILED;
        vks_secret_free(&plain);
    } else {
        st = vks_err_set(&e, VKS_E_BAD_RESPONSE, f[1].len ? "no encryption key to read the retrievable password"
                                                          : "the credential has no verifier");
    }
    if (st == VKS_OK)
        a->outcome = VKS_IN_OK;
    else if (st == VKS_E_AUTH_FAILED)
        answer(a, VKS_IN_BAD_PASSWORD, "wrong password%s", NULL);
    else
        answer(a, st == VKS_E_LOCKED_MEMORY || st == VKS_E_NOMEM ? VKS_IN_TEMP : VKS_IN_REVOKED,
               "the credential cannot be checked: %s", e.msg);
}

/* Cache miss: Vault, the record's checks, the password. */
static void verify_cold(struct vks_inbound *ib, const char *ukey, const unsigned char *pw, size_t n,
                        struct ib_rec *rec, struct vks_inbound_answer *a)
{
    vks_secret f[2] = { VKS_SECRET_EMPTY, VKS_SECRET_EMPTY };
    a->outcome = VKS_IN_OK;
    fetch(ib, ukey, rec, f, a);
    if (a->outcome == VKS_IN_UNKNOWN_USER) { /* the same cost as a known user */
        struct vks_inbound_answer dummy;
        (void)vks_verifier_check(ib->dummy, strlen(ib->dummy), pw, n, NULL);
        (void)dummy;
    } else if (a->outcome == VKS_IN_OK && judge(rec, ukey, a)) {
        check_password(ib, rec, f, pw, n, a);
    }
    vks_secret_free(&f[0]);
    vks_secret_free(&f[1]);
}

vks_status vks_inbound_verify(struct vks_inbound *ib, const char *username, const unsigned char *pw, size_t n,
                              const char *source, struct vks_inbound_answer *ans, struct vks_err *err)
{
    char ukey[VKS_CRED_USERNAME_MAX + 1];
    memset(ans, 0, sizeof *ans);
    if (ib == NULL || (pw == NULL && n > 0))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_inbound_verify: no object or password");
    int64_t now = ib_now_ms();
    struct ib_rec rec;
    memset(&rec, 0, sizeof rec);
    const char *which = NULL;
    long left = 0;
    unsigned char tag[IB_TAG_LEN];
    uint64_t epoch = 0;
    bool ukey_ok = lower_key(username, ukey, sizeof ukey);
    if (!ukey_ok || n > PW_MAX) {
        answer(ans, VKS_IN_UNKNOWN_USER, "%s", !ukey_ok ? "the username is empty, too long or not printable ASCII"
                                                        : "the password is too long");
        snprintf(ukey, sizeof ukey, "?");
    } else if (ib_locked(ib, ukey, source, now, &which, &left)) {
        char w[96];
        snprintf(w, sizeof w, "%s, %ld s left", which, left);
        answer(ans, VKS_IN_LOCKED, "too many failed logins: this %s", w);
    } else if (!reset_gate_ok(ib, ans, &epoch)) {
        /* answered TEMP: the reset check cannot vouch for the cache or Vault */
    } else if (!tag_of(ib, ukey, pw, n, tag)) {
        answer(ans, VKS_IN_TEMP, "%s", "out of locked memory");
    } else if (ib_cache_hit(ib, ukey, tag, now, epoch, &rec)) {
        ans->cached = true;
    } else {
        verify_cold(ib, ukey, pw, n, &rec, ans);
        if (ans->outcome == VKS_IN_OK)
            ib_cache_put(ib, ukey, &rec, tag, now, epoch);
    }
    vks_wipe(tag, sizeof tag);
    char why[200];
    struct vks_restrict_ctx rc = { .destination = source && source[0] ? source : NULL };
    if (ans->outcome == VKS_IN_OK && !allowed(&rec, "allowed_hosts", &rc, why, sizeof why))
        answer(ans, VKS_IN_SOURCE_REFUSED, "the source address is not allowed: %s", why);
    if (ans->outcome == VKS_IN_OK) {
        snprintf(ans->username, sizeof ans->username, "%s", rec.username);
        ib_success(ib, ukey);
    } else if (ans->outcome != VKS_IN_TEMP && ans->outcome != VKS_IN_LOCKED) {
        bool su = false, sa = false;
        ib_fail(ib, ukey, source, now, &su, &sa);
        if (su || sa) {
            struct vks_inbound_answer l = { .outcome = VKS_IN_LOCKED };
            snprintf(l.reason, sizeof l.reason, "lockout of the %s for %ld s after %u failures",
                     su ? "username" : "source address", ib->lockout_ms / 1000, su ? ib->max_user : ib->max_addr);
            audit(ib, "inbound.lockout", &rec, username, source, NULL, &l);
        }
    }
    audit(ib, "inbound.auth", &rec, username, source, NULL, ans);
    ib_rec_clear(&rec);
    return VKS_OK;
}

vks_status vks_inbound_check_sender(struct vks_inbound *ib, const char *username, const char *sender,
                                    const char *source, struct vks_inbound_answer *ans, struct vks_err *err)
{
    char ukey[VKS_CRED_USERNAME_MAX + 1];
    memset(ans, 0, sizeof *ans);
    if (ib == NULL || sender == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_inbound_check_sender: no object or sender");
    struct ib_rec rec;
    memset(&rec, 0, sizeof rec);
    int64_t now = ib_now_ms();
    const char *at = strrchr(sender, '@');
    const char *domain = at && at[1] ? at + 1 : NULL;
    uint64_t epoch = 0;
    if (!lower_key(username, ukey, sizeof ukey)) {
        answer(ans, VKS_IN_UNKNOWN_USER, "%s", "the username is empty, too long or not printable ASCII");
    } else if (!reset_gate_ok(ib, ans, &epoch)) {
        /* answered TEMP */
    } else if (ib_cache_rec(ib, ukey, now, epoch, &rec)) {
        ans->cached = true;
    } else {
        fetch(ib, ukey, &rec, NULL, ans);
        if (ans->outcome == VKS_IN_OK && judge(&rec, ukey, ans))
            ib_cache_put(ib, ukey, &rec, NULL, now, epoch);
    }
    char why[200];
    struct vks_restrict_ctx rc = { .domain = domain };
    if (ans->outcome == VKS_IN_OK && !allowed(&rec, "allowed_domains", &rc, why, sizeof why))
        answer(ans, VKS_IN_SENDER_REFUSED, "the sender's domain is not allowed for this login: %s", why);
    if (ans->outcome == VKS_IN_OK)
        snprintf(ans->username, sizeof ans->username, "%s", rec.username);
    audit(ib, "inbound.sender", &rec, username, source, domain, ans);
    ib_rec_clear(&rec);
    return VKS_OK;
}
