/*
 * vks_resolver: process-wide runtime and vks_resolve() (see vks_resolver.h and
 * docs/internals/resolver.md).
 */
#include "vks_resolver_internal.h"
#include "vks_resolver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vks_audit.h"
#include "vks_cache.h"
#include "vks_envelope.h"
#include "vks_file.h"
#include "vks_fork.h"
#include "vks_redact.h"
#include "vks_reset_gate.h"
#include "vks_restrict.h"
#include "vks_vault.h"

/*
 * The keysource description that starts every message, built only when a message is (a lookup
 * that succeeds formats nothing). One buffer per thread: use the result at once.
 */
static _Thread_local char desc_buf[768];

static const char *D(const struct runtime *rt, const struct vks_keysource *ks)
{
    return vks_keysource_describe(ks, rt != NULL ? rt->cfg.vault.address : NULL, desc_buf, sizeof desc_buf);
}

/* ------------------------------------------------------------------ identity */

/*
 * A keysource with its own vault_token is cached under a keyed fingerprint of that token, so
 * that a keysource with another (or a revoked) token never gets a value fetched with this one.
 * The key is random per process; the fingerprint never leaves the process.
 */
static unsigned char fp_key[32];
static pthread_once_t fp_once = PTHREAD_ONCE_INIT;

static void fp_init(void)
{
    if (RAND_bytes(fp_key, sizeof fp_key) != 1) {
        /* no CSPRNG: fall back to something unique per process rather than a constant */
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        memcpy(fp_key, &t, sizeof t);
    }
}

static void token_fingerprint(const vks_secret *tok, char hex[33])
{
    pthread_once(&fp_once, fp_init);
    unsigned char mac[32];
    size_t maclen = 0;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, fp_key, sizeof fp_key, tok->data, tok->len, mac,
                  sizeof mac, &maclen) == NULL || maclen < 16) {
        snprintf(hex, 33, "unknown-token");
        return;
    }
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    vks_wipe(mac, sizeof mac);
}

/* Appends to an identity without printf (this runs on every lookup). */
struct idbuf {
    char *p;
    size_t n, len;
    bool overflow;
};

static void id_put(struct idbuf *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->n) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void id_str(struct idbuf *b, const char *s)
{
    id_put(b, "\x1f", 1);
    if (s != NULL)
        id_put(b, s, strlen(s));
}

static void id_num(struct idbuf *b, long long v)
{
    char t[24];
    int i = (int)sizeof t;
    bool neg = v < 0;
    unsigned long long u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        t[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (neg)
        t[--i] = '-';
    id_put(b, "\x1f", 1);
    id_put(b, t + i, sizeof t - (size_t)i);
}

/* Identity of a Vault keysource under runtime rt: generation, address, namespace, token, KV
 * version, then mount, path, key, version (so a prefix ending after the path selects every key
 * and version of one secret). Fields are separated by 0x1f, which names cannot contain. */
static vks_status identity_of(const struct runtime *rt, const struct vks_keysource *ks, char *buf, size_t n,
                              struct vks_err *err)
{
    struct idbuf b = { buf, n, 0, false };
    if (n > 0)
        buf[0] = '\0';
    if (ks->kind == VKS_KS_FILE) {
        /* files are not cached today; the identity exists so invalidate(path) is well defined */
        id_put(&b, "file", 4);
        id_str(&b, ks->file_path);
    } else if (ks->kind == VKS_KS_VAULT) {
        char tok[33] = "-";
        if (ks->has_token)
            token_fingerprint(&ks->token, tok);
        id_put(&b, "v1", 2);
        id_num(&b, (long long)rt->gen);
        id_str(&b, ks->address != NULL ? ks->address : rt->cfg.vault.address);
        id_str(&b, ks->namespace_ != NULL ? ks->namespace_ : rt->cfg.vault.namespace_);
        id_str(&b, tok);
        id_num(&b, ks->kv_version != VKS_KV_UNSET ? ks->kv_version : rt->cfg.kv_version);
        id_str(&b, ks->mount);
        id_str(&b, ks->path);
        id_str(&b, ks->key);
        id_num(&b, (long long)ks->version);
    } else {
        return vks_err_set(err, VKS_E_INVALID_ARG, "%s keysources are never cached",
                           vks_keysource_kind_name(ks->kind));
    }
    if (b.overflow)
        return vks_err_set(err, VKS_E_BAD_KEYSOURCE, "keysource identity longer than %zu bytes", n);
    return VKS_OK;
}

vks_status vks_resolver_identity_gen(const struct vks_keysource *ks, char *buf, size_t n,
                                     unsigned long *gen, struct vks_err *err)
{
    if (ks == NULL || buf == NULL || n == 0)
        return vks_err_set(err, VKS_E_INVALID_ARG, "identity: bad arguments");
    struct runtime *rt;
    vks_status st = runtime_acquire(&rt, err);
    if (st != VKS_OK)
        return st;
    st = identity_of(rt, ks, buf, n, err);
    if (gen != NULL)
        *gen = rt->gen;
    runtime_release(rt);
    return st;
}

vks_status vks_resolver_identity(const struct vks_keysource *ks, char *buf, size_t n, struct vks_err *err)
{
    return vks_resolver_identity_gen(ks, buf, n, NULL, err);
}

/* ------------------------------------------------------------------ sources */

/* Reads a whole file into an arena slot: no stdio buffer ever holds the bytes. The file is opened
 * without blocking and must be a regular file of at most VKS_SECRET_MAX bytes (vks_file). */
static vks_status read_file(const char *path, vks_secret *out, struct vks_err *err)
{
    const struct vks_file_opts fo = { .what = "keysource file", .code = VKS_E_FILE_ERROR,
                                      .max_bytes = VKS_SECRET_MAX };
    int fd = -1;
    size_t size = 0;
    vks_status st = vks_file_open(path, &fo, &fd, &size, err);
    if (st != VKS_OK)
        return st;
    vks_secret s = VKS_SECRET_EMPTY;
    if ((st = vks_secret_alloc(size > 0 ? size : 1, &s, err)) != VKS_OK) {
        st = vks_err_set(err, st, "no locked memory for keysource file \"%s\"", path);
        goto out;
    }
    size_t got = 0;
    bool more = false;
    if ((st = vks_file_read_fd(fd, s.data, s.cap, &got, &more, path, &fo, err)) != VKS_OK)
        goto out;
    if (more) {
        st = vks_err_set(err, VKS_E_FILE_ERROR, "keysource file \"%s\" changed size while read", path);
        goto out;
    }
    s.len = got;
    *out = s;
    s = VKS_SECRET_EMPTY;
out:
    vks_secret_free(&s);
    close(fd);
    return st;
}

/* What a source produced: the plaintext (after the envelope) and facts about it. */
struct fetched {
    vks_secret value;
    char *custom_metadata_json;
    int kv_version;
    int64_t secret_version;
    int64_t lease_duration;
    int http_status;
    bool encrypted;
    char token_accessor[64];
    /* VAULT: other keys wanted from the same read (input), their raw values (output) */
    const char *const *want;
    size_t n_want;
    vks_secret siblings[VKS_KV_SIBLINGS_MAX];
};

static void fetched_clear(struct fetched *f)
{
    vks_secret_free(&f->value);
    for (size_t i = 0; i < VKS_KV_SIBLINGS_MAX; i++)
        vks_secret_free(&f->siblings[i]);
    free(f->custom_metadata_json);
    memset(f, 0, sizeof *f);
}

static vks_status fetch_vault(struct runtime *rt, const struct vks_keysource *ks, struct fetched *out,
                              struct vks_err *err)
{
    if (rt->vault == NULL)
        return vks_err_set(err, rt->vault_err.status != VKS_OK ? rt->vault_err.status : VKS_E_CONFIG,
                           "%s: no Vault client: %s", D(rt, ks), rt->vault_err.msg);
    struct vks_kv_request req = {
        .address = ks->address,
        .token = ks->has_token ? &ks->token : NULL,
        .namespace_ = ks->namespace_,
        .mount = ks->mount,
        .path = ks->path,
        .key = ks->key,
        .kv_version = ks->kv_version != VKS_KV_UNSET ? ks->kv_version : rt->cfg.kv_version,
        .version = ks->version,
        .siblings = out->want,
        .n_siblings = out->n_want,
    };
    struct vks_kv_result res;
    memset(&res, 0, sizeof res);
    vks_status st = vks_vault_kv_read(rt->vault, &req, &res, err);
    out->http_status = res.http_status;
    if (st != VKS_OK) {
        vks_kv_result_free(&res);
        return st;
    }
    out->value = res.value;
    res.value = VKS_SECRET_EMPTY;
    out->custom_metadata_json = res.custom_metadata_json;
    res.custom_metadata_json = NULL;
    out->kv_version = res.kv_version;
    out->secret_version = res.secret_version;
    out->lease_duration = res.lease_duration;
    for (size_t i = 0; i < out->n_want; i++) {
        out->siblings[i] = res.siblings[i];
        res.siblings[i] = VKS_SECRET_EMPTY;
    }
    memcpy(out->token_accessor, res.token_accessor, sizeof out->token_accessor);
    out->token_accessor[sizeof out->token_accessor - 1] = '\0';
    vks_kv_result_free(&res);
    return VKS_OK;
}

/* ------------------------------------------------------------------ envelopes */

/*
 * Decrypts an ENC: value in place of the plaintext (Vault values are bound to (mount, path, key),
 * the other forms to the empty place), or refuses a plaintext one under require_encrypted.
 * Trailing white space (a newline at the end of a file) is not part of an envelope.
 */
static vks_status open_envelope(struct runtime *rt, const struct vks_keysource *ks, vks_secret *value,
                                bool *encrypted, struct vks_err *err)
{
    *encrypted = value->len > 0 && vks_envelope_is_encrypted(value->data, value->len);
    if (!*encrypted) {
        if (rt->cfg.require_encrypted)
            return vks_err_set(err, VKS_E_NOT_ENCRYPTED,
                               "%s: the value is not an ENC: envelope and require_encrypted is on", D(rt, ks));
        return VKS_OK;
    }
    if (rt->keyring == NULL)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED, "%s: ENC: value but no usable encryption keys: %s", D(rt, ks),
                           rt->keyring_err.msg);
    size_t len = value->len;
    while (len > 0 && (value->data[len - 1] == '\n' || value->data[len - 1] == '\r' ||
                       value->data[len - 1] == ' ' || value->data[len - 1] == '\t'))
        len--;
    struct vks_envelope_place place = { "", "", "" };
    if (ks->kind == VKS_KS_VAULT)
        place = (struct vks_envelope_place){ ks->mount, ks->path, ks->key };
    vks_secret plain = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = vks_envelope_decrypt(rt->keyring, value->data, len, &place, &plain, &info, &e);
    if (st != VKS_OK) {
        vks_secret_free(&plain);
        return vks_err_set(err, st, "%s: %s", D(rt, ks), e.msg);
    }
    vks_secret_free(value);
    *value = plain;
    return VKS_OK;
}

/* ------------------------------------------------------------------ producing a value */

/* Reads the value of any form and opens its envelope: what the cache stores for Vault. */
static vks_status produce(struct runtime *rt, const struct vks_keysource *ks, struct vks_event_result *ev,
                          struct fetched *f, struct vks_err *err)
{
    vks_status st;
    switch (ks->kind) {
    case VKS_KS_FILE:
        st = read_file(ks->file_path, &f->value, err);
        break;
    case VKS_KS_DATA:
        st = vks_secret_dup(ks->key_data.data, ks->key_data.len, &f->value, err);
        if (st != VKS_OK)
            vks_err_set(err, st, "%s: no locked memory for the value", D(rt, ks));
        break;
    case VKS_KS_EVENT:
        if (ev == NULL) {
            st = vks_err_set(err, VKS_E_INVALID_ARG, "%s: no handler result given", D(rt, ks));
        } else if (ev->status != VKS_OK) {
            st = vks_err_set(err, ev->status, "%s: %s", D(rt, ks), ev->msg);
        } else {
            f->value = ev->value;
            ev->value = VKS_SECRET_EMPTY;
            st = VKS_OK;
        }
        break;
    case VKS_KS_VAULT:
        st = fetch_vault(rt, ks, f, err);
        break;
    case VKS_KS_NONE:
    default:
        st = vks_err_set(err, VKS_E_BAD_KEYSOURCE, "empty keysource");
        break;
    }
    if (st != VKS_OK)
        return st;
    return open_envelope(rt, ks, &f->value, &f->encrypted, err);
}

/* ------------------------------------------------------------------ cache source */

/* Everything the cache needs to read a Vault value again (also from its refresh thread). */
struct vsource {
    struct runtime *rt;                /* a reference is held by a clone */
    const struct vks_keysource *ks;
    const struct vks_ctx *ctx;         /* the caller's context (restrictions); NULL in a clone */
    const char *const *siblings;       /* vks_resolve_req.sibling_keys; none in a clone       */
    size_t n_siblings;
    struct vks_keysource own;          /* the clone's copy */
};

static const struct vks_cache_source_ops cache_ops;
static vks_status cache_admit(void *source, const struct vks_cache_meta *meta, struct vks_err *err);

/*
 * The other keys this caller asked for (vks_resolve_req.sibling_keys), read by the same request
 * as its own key: stored under their own identities with the same metadata and ttl, when the
 * caller is admitted for that metadata (the cache then admits the caller's own value the same
 * way). Refused: nothing is stored and the values are wiped with f.
 */
static void cache_siblings(const struct vsource *s, struct fetched *f, double ttl_hint_s)
{
    struct vks_cache_meta meta = { .kv_version = f->kv_version, .secret_version = f->secret_version,
                                   .custom_metadata_json = f->custom_metadata_json };
    memcpy(meta.token_accessor, f->token_accessor, sizeof meta.token_accessor);
    struct vks_err e;
    vks_err_clear(&e);
    if (cache_admit((void *)s, &meta, &e) != VKS_OK)
        return;
    for (size_t i = 0; i < f->n_want; i++) {
        if (f->siblings[i].data == NULL)
            continue; /* absent or not a string: not stored */
        struct vks_keysource ks = *s->ks; /* shallow: only the key differs */
        ks.key = (char *)f->want[i];
        char identity[3 * VKS_NAME_MAX + VKS_ADDRESS_MAX + 128];
        if (open_envelope(s->rt, &ks, &f->siblings[i], &meta.encrypted, &e) != VKS_OK ||
            identity_of(s->rt, &ks, identity, sizeof identity, &e) != VKS_OK) {
            vks_secret_free(&f->siblings[i]);
            continue;
        }
        const struct vsource sib = { .rt = s->rt, .ks = &ks };
        vks_cache_put(identity, &f->siblings[i], ttl_hint_s, &meta, &cache_ops, &sib, &e);
    }
}

static vks_status cache_fetch(void *source, struct vks_cache_fetch *out, struct vks_err *err)
{
    struct vsource *s = source;
    struct fetched f;
    memset(&f, 0, sizeof f);
    f.want = s->siblings;
    f.n_want = s->n_siblings;
    vks_status st = produce(s->rt, s->ks, NULL, &f, err);
    if (st != VKS_OK) {
        fetched_clear(&f);
        return st;
    }
    out->value = f.value;
    f.value = VKS_SECRET_EMPTY;
    /* KV v1 leases: never keep a value longer than 90% of its lease */
    out->ttl_hint_s = f.kv_version == 1 && f.lease_duration > 0 ? 0.9 * (double)f.lease_duration : 0;
    if (f.n_want > 0)
        cache_siblings(s, &f, out->ttl_hint_s);
    out->meta.kv_version = f.kv_version;
    out->meta.secret_version = f.secret_version;
    out->meta.encrypted = f.encrypted;
    memcpy(out->meta.token_accessor, f.token_accessor, sizeof out->meta.token_accessor);
    out->meta.custom_metadata_json = f.custom_metadata_json;
    f.custom_metadata_json = NULL;
    fetched_clear(&f);
    return VKS_OK;
}

static void *cache_clone(const void *source)
{
    const struct vsource *s = source;
    struct vsource *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (vks_keysource_copy(s->ks, &c->own, NULL) != VKS_OK) {
        free(c);
        return NULL;
    }
    runtime_ref(s->rt);
    c->rt = s->rt;
    c->ks = &c->own;
    return c;
}

static void cache_free_source(void *source)
{
    struct vsource *c = source;
    if (c == NULL)
        return;
    vks_keysource_clear(&c->own);
    runtime_release(c->rt);
    free(c);
}

/* The emergency reset (docs/internals/reset.md): a credential whose custom_metadata says
 * state=reset, or still carries a reset_id (a rotation claimed it but has not finished), is
 * refused with VKS_E_REVOKED, cache hits included. */
static vks_status reset_check(const char *cm, struct vks_err *err)
{
    if (strstr(cm, "reset") == NULL) /* the common case: no json parse on the hit path */
        return VKS_OK;
    json_object *o = json_tokener_parse(cm), *v;
    const char *state = o && json_object_object_get_ex(o, "state", &v) ? json_object_get_string(v) : NULL;
    const char *id = o && json_object_object_get_ex(o, "reset_id", &v) ? json_object_get_string(v) : NULL;
    vks_status st = VKS_OK;
    if (o == NULL)
        st = vks_err_set(err, VKS_E_REVOKED, "custom_metadata mentions a reset but does not parse: refused");
    else if ((state && strcmp(state, "reset") == 0) || id)
        st = vks_err_set(err, VKS_E_REVOKED, "credential reset (reset_id %.64s): refused until it is rotated "
                         "(vks cred rotate; docs/incident-runbook.md)", id ? id : "?");
    json_object_put(o);
    return st;
}

/* Restrictions (custom_metadata) against the caller's context, for every value the cache is about
 * to hand out or store: a refused value never reaches the caller nor stays in the cache. */
static vks_status cache_admit(void *source, const struct vks_cache_meta *meta, struct vks_err *err)
{
    const struct vsource *s = source;
    if (meta == NULL || meta->custom_metadata_json == NULL)
        return VKS_OK;
    struct vks_err re;
    vks_err_clear(&re);
    vks_status st = reset_check(meta->custom_metadata_json, &re);
    if (st != VKS_OK)
        return vks_err_set(err, st, "%s: %s", D(s->rt, s->ks), re.msg);
    struct vks_restrict_ctx rc = { s->ctx ? s->ctx->domain : NULL, s->ctx ? s->ctx->destination : NULL };
    st = vks_restrict_check(meta->custom_metadata_json, strlen(meta->custom_metadata_json), &rc, &re);
    if (st != VKS_OK)
        vks_err_set(err, st, "%s: %s", D(s->rt, s->ks), re.msg);
    return st;
}

static const struct vks_cache_source_ops cache_ops = { cache_fetch, cache_clone, cache_free_source, cache_admit };

/* ------------------------------------------------------------------ audit */

static enum vks_audit_outcome audit_outcome(vks_status st, const struct vks_cache_info *ci)
{
    if (st == VKS_E_PERMISSION_DENIED || st == VKS_E_RESTRICTED || st == VKS_E_NOT_ENCRYPTED ||
        st == VKS_E_REVOKED)
        return VKS_AUDIT_DENIED;
    if (ci != NULL && ci->outcome == VKS_CACHE_NEGATIVE)
        return VKS_AUDIT_NEGATIVE;
    if (st != VKS_OK)
        return VKS_AUDIT_ERROR;
    if (ci == NULL)
        return VKS_AUDIT_MISS;
    switch (ci->outcome) {
    case VKS_CACHE_HIT: return VKS_AUDIT_HIT;
    case VKS_CACHE_REFRESH: return VKS_AUDIT_REFRESH;
    case VKS_CACHE_STALE: return VKS_AUDIT_STALE;
    default: return VKS_AUDIT_MISS;
    }
}

static enum vks_audit_source audit_source(const struct vks_keysource *ks)
{
    switch (ks != NULL ? ks->kind : VKS_KS_NONE) {
    case VKS_KS_FILE: return VKS_AUDIT_SRC_FILE;
    case VKS_KS_DATA: return VKS_AUDIT_SRC_KEY_DATA;
    case VKS_KS_VAULT: return VKS_AUDIT_SRC_VAULT;
    case VKS_KS_EVENT: return VKS_AUDIT_SRC_EVENT;
    default: return VKS_AUDIT_SRC_UNKNOWN;
    }
}

/* ------------------------------------------------------------------ resolve */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* hit_only: the fresh cached value or VKS_E_NOT_CACHED (vks_cache_get_cached), with the front
 * end's identity when it is current. */
static vks_status resolve_cached(struct runtime *rt, const struct vks_resolve_req *req, struct vsource *src,
                                 vks_secret *keep, vks_secret *out, struct vks_cache_info *ci, struct vks_err *err)
{
    char identity[3 * VKS_NAME_MAX + VKS_ADDRESS_MAX + 128];
    const char *id = req->identity;
    size_t len = req->identity_len;
    uint64_t h = req->identity_hash;
    if (id == NULL || req->identity_gen != rt->gen) {
        vks_status st = identity_of(rt, req->ks, identity, sizeof identity, err);
        if (st != VKS_OK)
            return st;
        id = identity;
        len = strlen(identity);
        h = vks_cache_identity_hash(identity, len);
    }
    *out = *keep;
    *keep = VKS_SECRET_EMPTY;
    return vks_cache_get_cached(id, len, h, NULL, &cache_ops, src, out, ci, err);
}

vks_status vks_resolve(const struct vks_resolve_req *req, vks_secret *out, struct vks_resolve_info *info,
                       struct vks_err *err)
{
    struct vks_resolve_info dummy;
    if (info == NULL)
        info = &dummy;
    memset(info, 0, sizeof *info);
    info->outcome = "none";
    vks_secret keep = req->reuse_out ? *out : VKS_SECRET_EMPTY; /* the caller's slot, if any */
    *out = VKS_SECRET_EMPTY;
    /* the latency is for the audit event only: no clock read when auditing is off */
    uint64_t t0 = vks_audit_enabled() ? now_ns() : 0;

    const struct vks_keysource *ks = req->ks;
    struct runtime *rt = NULL;
    bool held = false; /* rt held by this thread's hazard record rather than a reference */
    struct fetched f; /* zeroed only where it is produced: a cache hit does not pay for it */
    f.value = VKS_SECRET_EMPTY;
    f.custom_metadata_json = NULL;
    f.http_status = 0;
    struct vks_cache_info ci;
    memset(&ci, 0, sizeof ci);
    vks_status st;

    if (ks == NULL) {
        /* the keysource did not parse: err already says why */
        st = err != NULL && err->status != VKS_OK ? err->status : VKS_E_BAD_KEYSOURCE;
        info->outcome = "error";
        goto done;
    }
    info->kind = ks->kind;
    if (!(held = runtime_hold(&rt)) && (st = runtime_acquire(&rt, err)) != VKS_OK)
        goto done;

    if (ks->kind == VKS_KS_VAULT) {
        if (ks->address == NULL && rt->cfg.vault.address == NULL) {
            st = vks_err_set(err, VKS_E_BAD_KEYSOURCE,
                             "%s: vault_address was not specified and VAULT_ADDR is not set", D(rt, ks));
            info->outcome = "error";
            goto done;
        }
        char identity[3 * VKS_NAME_MAX + VKS_ADDRESS_MAX + 128];
        /* restrictions are checked by cache_admit on every lookup, cache hits included */
        struct vsource src; /* `own` is only used by clones */
        src.rt = rt;
        src.ks = ks;
        src.ctx = req->ctx;
        src.siblings = req->sibling_keys;
        src.n_siblings = req->sibling_keys != NULL ? req->n_sibling_keys : 0;
        if (src.n_siblings > VKS_KV_SIBLINGS_MAX) {
            st = vks_err_set(err, VKS_E_INVALID_ARG, "%s: more than %d sibling keys", D(rt, ks), VKS_KV_SIBLINGS_MAX);
            info->outcome = "error";
            goto done;
        }
        struct vks_reset_gate_req gr = { rt->vault, ks->mount, rt->cfg.reset_interval_ms, rt->cfg.reset_bound_ms,
                                         req->hit_only };
        if ((st = vks_reset_gate(&gr, err)) != VKS_OK) {
            if (st == VKS_E_NOT_CACHED)
                goto quiet; /* hit_only and a check is due: nothing happened */
            info->outcome = "error";
            goto done;     /* refused: audited like any refusal */
        }
        if (req->hit_only) {
            st = resolve_cached(rt, req, &src, &keep, out, &ci, err);
            if (st == VKS_E_NOT_CACHED)
                goto quiet; /* nothing happened: no audit event */
        } else if (req->identity != NULL && req->identity_gen == rt->gen) {
            /* the front end's copy, built for this ks under this runtime, with its hash */
            *out = keep;
            keep = VKS_SECRET_EMPTY;
            st = vks_cache_get_hashed(req->identity, req->identity_len, req->identity_hash, NULL, &cache_ops,
                                      &src, out, &ci, err);
        } else if ((st = identity_of(rt, ks, identity, sizeof identity, err)) == VKS_OK) {
            st = vks_cache_get(identity, NULL, &cache_ops, &src, out, &ci, err);
        } else {
            goto done;
        }
        info->outcome = vks_cache_outcome_name(ci.outcome);
        info->cached = ci.outcome == VKS_CACHE_HIT || ci.outcome == VKS_CACHE_STALE ||
                       ci.outcome == VKS_CACHE_NEGATIVE;
        info->age_s = ci.age_s;
        if (ci.meta != NULL) {
            info->kv_version = ci.meta->kv_version;
            info->secret_version = ci.meta->secret_version;
            info->encrypted = ci.meta->encrypted;
        }
    } else if (req->hit_only) {
        st = vks_err_set(err, VKS_E_NOT_CACHED, "%s: not cached", D(rt, ks));
        goto quiet; /* only Vault values are cached */
    } else {
        memset(&f, 0, sizeof f);
        st = produce(rt, ks, req->event, &f, err);
        info->outcome = st == VKS_OK ? "miss" : "error";
        if (st == VKS_OK) {
            *out = f.value;
            f.value = VKS_SECRET_EMPTY;
            info->encrypted = f.encrypted;
        }
    }
done:
    if (st != VKS_OK)
        vks_secret_free(out);
    if (st == VKS_E_REVOKED && ks != NULL && ks->kind == VKS_KS_VAULT)
        vks_reset_gate_note_revoked(ks->mount, ks->path); /* dropped again at the next check */
    {
        /* the one audit event of this lookup, whatever happened above */
        struct vks_audit_event ev;
        memset(&ev, 0, sizeof ev);
        char addr_shown[VKS_ADDRESS_MAX + 64];
        bool via_cache = ks != NULL && ks->kind == VKS_KS_VAULT && ci.outcome != VKS_CACHE_NONE;
        ev.api = req->api;
        ev.outcome = audit_outcome(st, via_cache ? &ci : NULL);
        ev.status = st;
        ev.error = st != VKS_OK && err != NULL ? err->msg : NULL;
        ev.source = audit_source(ks);
        if (ks != NULL) {
            const char *addr = ks->kind == VKS_KS_VAULT ? (ks->address != NULL ? ks->address
                                                                               : rt != NULL ? rt->cfg.vault.address : NULL)
                                                      : NULL;
            if (addr != NULL && rt != NULL && addr == rt->cfg.vault.address && rt->vault_addr_shown != NULL)
                ev.vault_addr = rt->vault_addr_shown; /* redacted when the runtime was built */
            else if (addr != NULL) /* addresses with credentials are refused on entry; never print one */
                vks_redact_url(addr, strlen(addr), addr_shown, sizeof addr_shown);
            if (addr != NULL && ev.vault_addr == NULL)
                ev.vault_addr = addr_shown;
            ev.namespace_ = ks->namespace_ != NULL ? ks->namespace_ : rt != NULL && ks->kind == VKS_KS_VAULT ? rt->cfg.vault.namespace_ : NULL;
            ev.mount = ks->mount;
            ev.path = ks->path;
            ev.key = ks->key;
            ev.file_path = ks->file_path;
            ev.event_name = ks->event_name;
            ev.version_pin = ks->version;
        }
        ev.kv_version = info->kv_version;
        ev.secret_version = info->secret_version;
        ev.cached = info->cached || ci.outcome == VKS_CACHE_REFRESH;
        ev.cache_age_ms = (int64_t)(info->age_s * 1000.0);
        ev.http_status = f.http_status;
        ev.token_accessor = ci.meta != NULL && ci.meta->token_accessor[0] != '\0' ? ci.meta->token_accessor : NULL;
        if (req->ctx != NULL) {
            ev.ctx.domain = req->ctx->domain;
            ev.ctx.site_name = req->ctx->site_name;
            ev.ctx.username = req->ctx->username;
            ev.ctx.destination = req->ctx->destination;
            ev.ctx.tag = req->ctx->tag;
        }
        ev.encrypted = info->encrypted;
        if (st == VKS_OK) {
            ev.value = out->data;
            ev.value_len = out->len;
        }
        ev.latency_ns = t0 != 0 ? now_ns() - t0 : 0;
        struct vks_err ae;
        vks_err_clear(&ae);
        /* a lookup that failed keeps its own code (the more useful one); a value is withheld */
        if (vks_audit_emit(&ev, NULL, &ae) == VKS_E_AUDIT_UNAVAILABLE && st == VKS_OK) {
            /* policy deny: no record, no secret */
            vks_secret_free(out);
            char d2[768];
            if (ks != NULL)
                vks_keysource_describe(ks, rt != NULL ? rt->cfg.vault.address : NULL, d2, sizeof d2);
            else
                snprintf(d2, sizeof d2, "a keysource that did not parse");
            st = vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE, "%s: the lookup could not be audited (%s)", d2, ae.msg);
            info->outcome = "error";
        }
    }
quiet:
    if (st != VKS_OK)
        vks_secret_free(out);
    vks_cache_info_release(&ci);
    vks_secret_free(&keep);
    vks_secret_free(&f.value);
    free(f.custom_metadata_json);
    if (held)
        runtime_unhold();
    else
        runtime_release(rt);
    return st;
}
