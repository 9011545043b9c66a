/*
 * vks_cred, the operations against Vault (contract: vks_cred.h; protocol: docs/credentials.md
 * "Every write is check-and-set"; design: docs/internals/cred.md).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_audit.h"
#include "vks_cred.h"
#include "vks_cred_int.h"

#define LIST_MAX 10000
#define LIST_DEPTH 8

/* ------------------------------------------------------------------ context, identity, audit */

vks_status vks_cred_ctx_init(struct vks_cred_ctx *ctx, struct vks_vault *vault, const struct vks_keyring *kr,
                             const char *mount, const char *prefix, const char *source, struct vks_err *err)
{
    memset(ctx, 0, sizeof *ctx);
    if (vault == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_cred_ctx_init: no Vault client");
    mount = mount ? mount : VKS_CRED_DEFAULT_MOUNT;
    prefix = prefix ? prefix : VKS_CRED_DEFAULT_PREFIX;
    if (strlen(mount) >= sizeof ctx->mount || vks_cred_check_name(mount, "--mount", NULL) != VKS_OK)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--mount \"%.64s\" must be 1-127 characters: path segments of "
                           "letters, digits, '.', '_' and '-', none empty, '.' or '..'", mount);
    vks_status st = vks_cred_check_prefix(prefix, "--prefix", err);
    if (st != VKS_OK)
        return st;
    snprintf(ctx->mount, sizeof ctx->mount, "%s", mount);
    snprintf(ctx->prefix, sizeof ctx->prefix, "%s", prefix);
    ctx->vault = vault;
    ctx->keyring = kr;
    ctx->source = source ? source : "cli";
    ctx->rotation_days = VKS_CRED_DUE_DAYS;
    ctx->vault_addr = vks_vault_address(vault);
    return VKS_OK;
}

static vks_status identity(struct vks_cred_ctx *ctx, struct vks_err *err)
{
    if (ctx->identity_known)
        return VKS_OK;
    vks_status st = vks_vault_token_identity(ctx->vault, ctx->operator_name, sizeof ctx->operator_name,
                                             ctx->operator_accessor, sizeof ctx->operator_accessor, err);
    if (st == VKS_OK)
        ctx->identity_known = true;
    return st;
}

struct act {
    const char *action, *path, *username, *reason;
    int64_t version;
    char detail[128];
};

/* One audit event for an act; returns st, or the audit failure when the act succeeded. */
static vks_status audit(struct vks_cred_ctx *ctx, const struct act *a, vks_status st, struct vks_err *err)
{
    struct vks_audit_admin_event ev = {
        .action = a->action, .status = st, .error = st != VKS_OK && err ? err->msg : NULL,
        .operator_name = ctx->operator_name[0] ? ctx->operator_name : NULL,
        .operator_accessor = ctx->operator_accessor[0] ? ctx->operator_accessor : NULL,
        .source = ctx->source, .vault_addr = ctx->vault_addr, .mount = ctx->mount, .path = a->path,
        .username = a->username && a->username[0] ? a->username : NULL, .secret_version = a->version,
        .reason = a->reason, .detail = a->detail[0] ? a->detail : NULL,
        .client_addr = ctx->client_addr, .user_agent = ctx->user_agent,
    };
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status ast = vks_audit_emit_admin(&ev, NULL, &aerr);
    if (st == VKS_OK && ast != VKS_OK) {
        vks_err_set(err, ast, "%s of %s was done but %s", a->action, a->path, aerr.msg);
        return ast;
    }
    return st;
}

static vks_status full_path(const struct vks_cred_ctx *ctx, const char *name, char *out, size_t cap,
                            struct vks_err *err)
{
    vks_status st = vks_cred_check_name(name, "NAME", err);
    if (st != VKS_OK)
        return st;
    snprintf(out, cap, "%s%s", ctx->prefix, name);
    return VKS_OK;
}

/* Reads and parses the metadata of NAME (at path). */
static vks_status load(struct vks_cred_ctx *ctx, const char *name, const char *path, struct vks_cred_record *rec,
                       struct vks_err *err)
{
    struct vks_vault_reply r = { 0 };
    memset(rec, 0, sizeof *rec);
    vks_status st = vks_vault_kv2_metadata_read(ctx->vault, ctx->mount, path, &r, err);
    if (st == VKS_E_NOT_FOUND)
        return vks_err_set(err, VKS_E_NOT_FOUND, "credential '%s' not found (%s/%s)", name, ctx->mount, path);
    if (st == VKS_OK)
        st = vks_cred_record_parse(r.body, r.body_len, name, rec, err);
    vks_vault_reply_free(&r);
    return st;
}

/* A managed credential whose metadata describes its latest version (the rev guard). */
static vks_status editable(const struct vks_cred_record *rec, const char *path, struct vks_err *err)
{
    if (!rec->managed)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "'%s' is not managed by vks cred (no custom_metadata.vks_cred); "
                           "use vault kv for it", path);
    if (rec->rev != rec->vault_version)
        return vks_err_set(err, VKS_E_CONFLICT, "'%s': the metadata describes version %lld but the secret is at "
                           "version %lld: another edit is in progress or was interrupted; nothing was written",
                           path, (long long)rec->rev, (long long)rec->vault_version);
    return VKS_OK;
}

/* ------------------------------------------------------------------ create */

static vks_status unique_username(struct vks_cred_ctx *ctx, const char *username, struct vks_err *err)
{
    struct vks_cred_record *all = NULL;
    size_t n = 0;
    vks_status st = vks_cred_list(ctx, &all, &n, err);
    for (size_t i = 0; st == VKS_OK && i < n; i++)
        if (all[i].username[0] && strcasecmp(all[i].username, username) == 0)
            st = vks_err_set(err, VKS_E_EXISTS, "--username '%s' is already used by credential '%s'", username,
                             all[i].name);
    vks_cred_records_free(all, n);
    return st;
}

/* {"<field>":"<envelope or verifier>","username":"<u>"} (heap) */
static vks_status data_json_field(const char *field, const char *envelope, const char *username, char **out,
                                  struct vks_err *err)
{
    json_object *o = json_object_new_object();
    if (o == NULL || json_object_object_add(o, field, json_object_new_string(envelope)) != 0 ||
        json_object_object_add(o, "username", json_object_new_string(username)) != 0 ||
        (*out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))) == NULL) {
        json_object_put(o);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    json_object_put(o);
    return VKS_OK;
}

static vks_status data_json(const char *envelope, const char *username, char **out, struct vks_err *err)
{
    return data_json_field("key", envelope, username, out, err);
}

/* Inbound without --retrievable: only a verifier of the password is stored (issue 15). */
static vks_status inbound_verifier(const struct vks_cred_create_req *req, const vks_secret *pw, char **out,
                                   struct vks_err *err)
{
    struct vks_verifier_params def;
    vks_verifier_params_default(&def);
    char *v = malloc(VKS_VERIFIER_MAX + 1);
    if (v == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    vks_status st = vks_verifier_create(req->verifier ? req->verifier : &def, pw->data, pw->len, v,
                                        VKS_VERIFIER_MAX + 1, err);
    if (st != VKS_OK) {
        free(v);
        v = NULL;
    }
    *out = v;
    return st;
}

static vks_status create_checks(const struct vks_cred_create_req *req, struct vks_err *err)
{
    vks_status st = vks_cred_check_username(req->username, req->username ? strlen(req->username) : 0,
                                            "--username", err);
    if (st == VKS_OK && req->owner)
        st = vks_cred_check_owner(req->owner, "--owner", err);
    if (st == VKS_OK && req->tenant)
        st = vks_cred_check_tenant(req->tenant, "--tenant", err);
    if (st == VKS_OK && req->password)
        st = vks_cred_check_password(req->password->data, req->password->len, err);
    if (st == VKS_OK && req->relay)
        st = vks_cred_parse_relay(req->relay, "--relay", NULL, 0, NULL, err);
    if (st == VKS_OK && (!req->restrictions || (!req->restrictions->domains.all && req->restrictions->domains.n == 0)))
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "--domain: a credential is restricted to specific domains by "
                         "default: give at least one --domain, or --all-domains");
    return st;
}

/* The record of a new credential at version 1 (or v). */
static void new_record(struct vks_cred_record *rec, const struct vks_cred_create_req *req, int64_t v, int days)
{
    int64_t now = (int64_t)time(NULL);
    snprintf(rec->username, sizeof rec->username, "%s", req->username);
    snprintf(rec->state, sizeof rec->state, "active");
    vks_cred_time(now, 0, rec->created);
    vks_cred_time(now, 0, rec->rotated);
    vks_cred_time(now, days, rec->due);
    snprintf(rec->owner, sizeof rec->owner, "%s", req->owner ? req->owner : "");
    snprintf(rec->tenant, sizeof rec->tenant, "%s", req->tenant ? req->tenant : "");
    snprintf(rec->relay, sizeof rec->relay, "%s", req->relay ? req->relay : "");
    rec->rev = rec->current_version = v;
}

static vks_status copy_lists(struct vks_cred_restrictions *dst, const struct vks_cred_restrictions *src,
                             struct vks_err *err)
{
    dst->domains.all = src->domains.all;
    dst->hosts.all = src->hosts.all;
    vks_status st = VKS_OK;
    for (size_t i = 0; st == VKS_OK && i < src->domains.n; i++)
        st = vks_cred_list_add(&dst->domains, false, src->domains.v[i], "--domain", err);
    for (size_t i = 0; st == VKS_OK && i < src->hosts.n; i++)
        st = vks_cred_list_add(&dst->hosts, true, src->hosts.v[i], "--ip", err);
    return st;
}

/* Steps after the checks: encrypt, write data (cas 0), write metadata. */
static vks_status create_write(struct vks_cred_ctx *ctx, const struct vks_cred_create_req *req, const char *path,
                               const vks_secret *pw, int64_t *version, struct act *a, struct vks_err *err)
{
    const char *kid = ctx->keyring ? vks_keyring_primary_id(ctx->keyring) : NULL;
    if (kid == NULL && !(req->inbound && !req->retrievable))
        return vks_err_set(err, VKS_E_CONFIG, "no encryption key to store the password as an ENC: envelope: set "
                           "VKS_ENCRYPTION_KEY, VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS");
    struct vks_envelope_place place = { ctx->mount, path, "key" };
    char *env = NULL, *data = NULL, *meta = NULL;
    bool verifier_only = req->inbound && !req->retrievable;
    vks_status st = verifier_only ? inbound_verifier(req, pw, &env, err)
                                  : vks_envelope_encrypt(ctx->keyring, kid, &place, pw->data, pw->len, &env, err);
    if (st == VKS_OK)
        st = data_json_field(verifier_only ? "verifier" : "key", env, req->username, &data, err);
    struct vks_cred_record rec;
    memset(&rec, 0, sizeof rec);
    new_record(&rec, req, 1, ctx->rotation_days > 0 ? ctx->rotation_days : VKS_CRED_DUE_DAYS);
    if (req->inbound)
        snprintf(rec.direction, sizeof rec.direction, "inbound");
    if (st == VKS_OK)
        st = copy_lists(&rec.restrictions, req->restrictions, err);
    if (st == VKS_OK) /* the lists are checked against Vault's limits before anything is written */
        st = vks_cred_metadata_body(&rec, &meta, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_write(ctx->vault, ctx->mount, path, data, 0, false, version, err);
    if (st == VKS_OK && *version != 1) { /* cas 0 wrote version 1, or Vault kept old versions */
        free(meta);
        rec.rev = rec.current_version = *version;
        st = vks_cred_metadata_body(&rec, &meta, err);
    }
    a->version = *version;
    vks_cred_summary(&rec.restrictions, a->detail, sizeof a->detail);
    if (st == VKS_OK && (st = vks_vault_kv2_metadata_write(ctx->vault, ctx->mount, path, meta, err)) != VKS_OK &&
        err != NULL) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        vks_err_set(err, st, "the password was stored (version %lld, it resolves) but not its metadata, so "
                    "vks cred does not manage it yet: %s", (long long)*version, why);
    }
    if (env)
        vks_wipe(env, strlen(env));
    free(env);
    if (data)
        vks_wipe(data, strlen(data));
    free(data);
    free(meta);
    vks_cred_record_free(&rec);
    return st;
}

vks_status vks_cred_create(struct vks_cred_ctx *ctx, const struct vks_cred_create_req *req, vks_secret *password,
                           int64_t *version, struct vks_err *err)
{
    *password = VKS_SECRET_EMPTY;
    *version = 0;
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    vks_status st = full_path(ctx, req->name, path, sizeof path, err);
    if (st == VKS_OK)
        st = create_checks(req, err);
    if (st != VKS_OK)
        return st;
    struct act a = { .action = "create", .path = path, .username = req->username };
    if ((st = identity(ctx, err)) != VKS_OK)
        return st;
    struct vks_cred_record old;
    st = load(ctx, req->name, path, &old, err);
    if (st == VKS_OK) {
        vks_cred_record_free(&old);
        st = vks_err_set(err, VKS_E_EXISTS, "credential '%s' already exists (%s/%s)", req->name, ctx->mount, path);
    } else if (st == VKS_E_NOT_FOUND) {
        st = unique_username(ctx, req->username, err); /* the early, readable refusal */
    }
    int64_t iver = 0; /* the username index: the atomic refusal (docs/credentials.md) */
    if (st == VKS_OK)
        st = vks_cred_int_index_claim(ctx, req->name, req->username, &iver, err);
    if (st == VKS_OK)
        st = req->password ? vks_secret_dup(req->password->data, req->password->len, password, err)
                           : vks_cred_generate(password, err);
    if (st == VKS_OK)
        st = create_write(ctx, req, path, password, version, &a, err);
    if (st != VKS_OK && iver > 0 && *version == 0) /* nothing stored: give the username back (best effort) */
        (void)vks_cred_int_index_release(ctx, req->name, req->username, iver, NULL);
    st = audit(ctx, &a, st, err);
    if (*version == 0) /* nothing stored: the password goes away */
        vks_secret_free(password);
    return st;
}

/* ------------------------------------------------------------------ list and show */

void vks_cred_records_free(struct vks_cred_record *recs, size_t n)
{
    for (size_t i = 0; recs && i < n; i++)
        vks_cred_record_free(&recs[i]);
    free(recs);
}

struct walk {
    struct vks_cred_ctx *ctx;
    struct vks_cred_record *recs;
    size_t n, cap;
};

static vks_status walk_leaf(struct walk *w, const char *rel, struct vks_err *err)
{
    if (w->n == LIST_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "more than %d secrets under %s/%s", LIST_MAX,
                           w->ctx->mount, w->ctx->prefix);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 16;
        struct vks_cred_record *nr = realloc(w->recs, nc * sizeof *nr);
        if (nr == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory");
        w->recs = nr;
        w->cap = nc;
    }
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    snprintf(path, sizeof path, "%s%s", w->ctx->prefix, rel);
    vks_status st = load(w->ctx, rel, path, &w->recs[w->n], err);
    if (st == VKS_E_NOT_FOUND) /* deleted between LIST and read */
        return VKS_OK;
    if (st == VKS_OK)
        w->n++;
    return st;
}

static vks_status walk(struct walk *w, const char *rel, int depth, struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    snprintf(path, sizeof path, "%s%s", w->ctx->prefix, rel);
    size_t pl = strlen(path);
    if (pl > 0 && path[pl - 1] == '/')
        path[pl - 1] = '\0';
    struct vks_vault_reply r = { 0 };
    vks_status st = vks_vault_kv2_list(w->ctx->vault, w->ctx->mount, path, &r, err);
    json_object *o = st == VKS_OK && r.body ? json_tokener_parse(r.body) : NULL, *d = NULL, *keys = NULL;
    if (o && json_object_object_get_ex(o, "data", &d) && json_object_object_get_ex(d, "keys", &keys) &&
        json_object_is_type(keys, json_type_array)) {
        for (size_t i = 0; st == VKS_OK && i < json_object_array_length(keys); i++) {
            const char *k = json_object_get_string(json_object_array_get_idx(keys, i));
            char sub[VKS_CRED_NAME_MAX + 2];
            size_t kl = k ? strlen(k) : 0;
            if (kl == 0 || snprintf(sub, sizeof sub, "%s%s", rel, k) >= (int)sizeof sub)
                continue; /* a name too long for a credential is not one */
            if (k[kl - 1] == '/')
                st = depth < LIST_DEPTH ? walk(w, sub, depth + 1, err) : VKS_OK;
            else if (vks_cred_check_name(sub, "NAME", NULL) == VKS_OK)
                st = walk_leaf(w, sub, err);
        }
    }
    json_object_put(o);
    vks_vault_reply_free(&r);
    return st;
}

vks_status vks_cred_list(struct vks_cred_ctx *ctx, struct vks_cred_record **recs, size_t *n, struct vks_err *err)
{
    struct walk w = { ctx, NULL, 0, 0 };
    vks_status st = walk(&w, "", 0, err);
    if (st != VKS_OK) {
        vks_cred_records_free(w.recs, w.n);
        w.recs = NULL;
        w.n = 0;
    }
    *recs = w.recs;
    *n = w.n;
    return st;
}

vks_status vks_cred_show(struct vks_cred_ctx *ctx, const char *name, struct vks_cred_record *rec,
                         struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    memset(rec, 0, sizeof *rec);
    vks_status st = full_path(ctx, name, path, sizeof path, err);
    return st == VKS_OK ? load(ctx, name, path, rec, err) : st;
}

/* ------------------------------------------------------------------ the password: read, fingerprint, reveal */

/* The current password of NAME in an arena slot (decrypted when it is an envelope). */
static vks_status read_password(struct vks_cred_ctx *ctx, const char *path, vks_secret *out, int64_t *version,
                                struct vks_err *err)
{
    struct vks_kv_request rq = { .mount = ctx->mount, .path = path, .key = "key", .kv_version = 2 };
    struct vks_kv_result res;
    vks_status st = vks_vault_kv_read(ctx->vault, &rq, &res, err);
    if (st != VKS_OK)
        return st;
    *version = res.secret_version;
    if (vks_envelope_is_encrypted(res.value.data, res.value.len)) {
        struct vks_envelope_place place = { ctx->mount, path, "key" };
        if (ctx->keyring == NULL)
            st = vks_err_set(err, VKS_E_DECRYPT_FAILED, "%s: the password is an ENC: envelope and no encryption "
                             "key is loaded", path);
        else
            st = vks_envelope_decrypt(ctx->keyring, res.value.data, res.value.len, &place, out, NULL, err);
    } else {
        st = vks_secret_dup(res.value.data, res.value.len, out, err);
    }
    vks_kv_result_free(&res);
    return st;
}

vks_status vks_cred_fingerprint(struct vks_cred_ctx *ctx, const char *name, char hex[33], struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    hex[0] = '\0';
    vks_status st = full_path(ctx, name, path, sizeof path, err);
    if (st != VKS_OK)
        return st;
    unsigned char fp[VKS_AUDIT_FP_LEN];
    if (vks_audit_fingerprint((const unsigned char *)"", 0, fp, NULL) != VKS_OK) /* loads the key */
        return vks_err_set(err, VKS_E_CONFIG, "no audit key (VKS_AUDIT_KEY or VKS_AUDIT_KEY_FILE): no fingerprint");
    struct vks_audit_stats as;
    vks_audit_get_stats(&as);
    if (as.ephemeral_key)
        return vks_err_set(err, VKS_E_CONFIG, "no audit key (VKS_AUDIT_KEY or VKS_AUDIT_KEY_FILE): no fingerprint");
    /* show is a metadata act (the auditor and cred-operator roles may not read data/): the password is
       read only when the token may read it, asked of Vault first so no refused read is made */
    char full[VKS_CRED_NAME_MAX * 2 + 160];
    bool can = false;
    snprintf(full, sizeof full, "%s/data/%s", ctx->mount, path);
    st = vks_vault_token_can(ctx->vault, full, "read", &can, err);
    if (st == VKS_OK && !can)
        return vks_err_set(err, VKS_E_PERMISSION_DENIED, "this token may not read the password (no read on %s): "
                           "no fingerprint", full);
    if (st != VKS_OK)
        return st;
    vks_secret pw = VKS_SECRET_EMPTY;
    int64_t version = 0;
    st = read_password(ctx, path, &pw, &version, err);
    if (st == VKS_OK)
        st = vks_audit_fingerprint(pw.data, pw.len, fp, err);
    vks_secret_free(&pw);
    if (st == VKS_OK)
        for (int i = 0; i < VKS_AUDIT_FP_LEN; i++)
            snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    vks_wipe(fp, sizeof fp);
    return st;
}

static vks_status check_reason(const char *reason, struct vks_err *err)
{
    size_t n = reason ? strlen(reason) : 0;
    if (n == 0 || n > 256)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason is required: 1-256 characters saying why the "
                           "password is revealed (it is audited)");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason: character %zu is a control character", i + 1);
    return VKS_OK;
}

vks_status vks_cred_reveal(struct vks_cred_ctx *ctx, const char *name, const char *reason, vks_secret *out,
                           int64_t *version, struct vks_err *err)
{
    *out = VKS_SECRET_EMPTY;
    *version = 0;
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    vks_status st = full_path(ctx, name, path, sizeof path, err);
    if (st == VKS_OK)
        st = check_reason(reason, err);
    if (st == VKS_OK && !vks_audit_enabled()) /* a reveal is never unaudited */
        st = vks_err_set(err, VKS_E_AUDIT_UNAVAILABLE, "reveal is audited and no audit sink is configured "
                         "(VKS_AUDIT_FILE, VKS_AUDIT_SYSLOG or VKS_AUDIT_STDERR): refused");
    if (st == VKS_OK)
        st = identity(ctx, err);
    if (st != VKS_OK)
        return st;
    struct vks_cred_record rec;
    struct act a = { .action = "reveal", .path = path, .reason = reason };
    st = load(ctx, name, path, &rec, err);
    if (st == VKS_OK && strcmp(rec.direction, "inbound") == 0) {
        a.username = rec.username;
        st = read_password(ctx, path, out, version, err);
        if (st == VKS_E_MISSING_KEY) /* only a verifier is stored (docs/inbound.md) */
            st = vks_err_set(err, VKS_E_MISSING_KEY, "'%s' is an inbound credential without --retrievable: only a "
                             "verifier of its password is stored, the password cannot be revealed", path);
    } else if (st == VKS_OK) {
        a.username = rec.username;
        st = read_password(ctx, path, out, version, err);
        a.version = *version;
    }
    st = audit(ctx, &a, st, err); /* recorded before the password is handed out */
    vks_cred_record_free(&rec);
    if (st != VKS_OK)
        vks_secret_free(out);
    return st;
}

/* ------------------------------------------------------------------ restrict */

static vks_status apply_change(struct vks_cred_record *rec, const struct vks_cred_change *ch,
                               struct vks_err *err)
{
    struct vks_cred_restrictions *r = &rec->restrictions;
    vks_status st = VKS_OK;
    if (ch->clear_relay)
        rec->relay[0] = '\0';
    if (ch->relay && (st = vks_cred_parse_relay(ch->relay, "--relay", NULL, 0, NULL, err)) == VKS_OK)
        snprintf(rec->relay, sizeof rec->relay, "%s", ch->relay);
    if (ch->all_domains)
        vks_cred_list_set_all(&r->domains);
    if (ch->all_hosts)
        vks_cred_list_set_all(&r->hosts);
    for (size_t i = 0; st == VKS_OK && i < ch->n_remove_domains; i++)
        st = vks_cred_list_remove(&r->domains, false, ch->remove_domains[i], "--remove-domain", err);
    for (size_t i = 0; st == VKS_OK && i < ch->n_remove_hosts; i++)
        st = vks_cred_list_remove(&r->hosts, true, ch->remove_hosts[i], "--remove-ip", err);
    for (size_t i = 0; st == VKS_OK && i < ch->n_add_domains; i++)
        st = vks_cred_list_add(&r->domains, false, ch->add_domains[i], "--domain", err);
    for (size_t i = 0; st == VKS_OK && i < ch->n_add_hosts; i++)
        st = vks_cred_list_add(&r->hosts, true, ch->add_hosts[i], "--ip", err);
    return st;
}

/* PATCH of the unchanged username under cas = rec->vault_version: the new version is the lock. */
static vks_status bump(struct vks_cred_ctx *ctx, const char *path, const struct vks_cred_record *rec,
                       int64_t *nv, struct vks_err *err)
{
    json_object *o = json_object_new_object();
    if (o == NULL || json_object_object_add(o, "username", json_object_new_string(rec->username)) != 0) {
        json_object_put(o);
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    }
    vks_status st = vks_vault_kv2_write(ctx->vault, ctx->mount, path,
                                        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                                        rec->vault_version, true, nv, err);
    json_object_put(o);
    return st;
}

vks_status vks_cred_restrict(struct vks_cred_ctx *ctx, const char *name, const struct vks_cred_change *ch,
                             struct vks_cred_record *out, struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    vks_status st = full_path(ctx, name, path, sizeof path, err);
    if (st == VKS_OK)
        st = identity(ctx, err);
    if (st != VKS_OK)
        return st;
    struct act a = { .action = "restrict", .path = path };
    struct vks_cred_record rec;
    char *meta = NULL;
    st = load(ctx, name, path, &rec, err);
    bool loaded = st == VKS_OK;
    if (st == VKS_OK && (st = editable(&rec, path, err)) == VKS_OK && strcmp(rec.state, "rotating") == 0)
        st = vks_err_set(err, VKS_E_CONFLICT, "'%s': a rotation is in flight (rotation_id %s): it owns the "
                         "credential until `vks cred rotate --resume %s` finishes it or `vks cred rotate --abort %s` "
                         "ends it; nothing was written", path, rec.rotation_id, name, name);
    if (st == VKS_OK)
        st = apply_change(&rec, ch, err);
    if (loaded)
        a.username = rec.username;
    if (st == VKS_OK) { /* checked against Vault's limits before anything is written */
        int64_t keep_rev = rec.rev;
        rec.rev = rec.current_version = rec.vault_version + 1;
        st = vks_cred_metadata_body(&rec, &meta, err);
        rec.rev = keep_rev;
    }
    int64_t nv = 0;
    if (st == VKS_OK)
        st = bump(ctx, path, &rec, &nv, err);
    if (st == VKS_OK && nv != rec.vault_version + 1) {
        free(meta);
        rec.rev = rec.current_version = nv;
        st = vks_cred_metadata_body(&rec, &meta, err);
    }
    if (st == VKS_OK)
        st = vks_vault_kv2_metadata_write(ctx->vault, ctx->mount, path, meta, err);
    if (st == VKS_OK)
        rec.rev = rec.current_version = rec.vault_version = nv;
    a.version = nv;
    if (loaded)
        vks_cred_summary(&rec.restrictions, a.detail, sizeof a.detail);
    free(meta);
    st = audit(ctx, &a, st, err);
    if (out != NULL && st == VKS_OK)
        *out = rec;
    else if (loaded)
        vks_cred_record_free(&rec);
    return st;
}

/* ------------------------------------------------------------------ delete */

vks_status vks_cred_delete(struct vks_cred_ctx *ctx, const char *name, const char *confirm_username,
                           struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    vks_status st = full_path(ctx, name, path, sizeof path, err);
    if (st == VKS_OK)
        st = identity(ctx, err);
    if (st != VKS_OK)
        return st;
    struct act a = { .action = "delete", .path = path };
    struct vks_cred_record rec;
    st = load(ctx, name, path, &rec, err);
    bool loaded = st == VKS_OK;
    if (loaded) {
        a.username = rec.username;
        a.version = rec.vault_version;
        if (!rec.managed)
            st = vks_err_set(err, VKS_E_INVALID_INPUT, "'%s' is not managed by vks cred (no "
                             "custom_metadata.vks_cred); use vault kv metadata delete for it", path);
        else if (!confirm_username || strcmp(confirm_username, rec.username) != 0)
            st = vks_err_set(err, VKS_E_INVALID_INPUT, "--confirm: the username typed does not match credential "
                             "'%s'; nothing was deleted", name);
    }
    if (st == VKS_OK)
        st = vks_vault_kv2_metadata_delete(ctx->vault, ctx->mount, path, err);
    if (st == VKS_OK && strcmp(rec.state, "rotating") == 0) { /* the pending password goes too */
        char pending[sizeof path + 16];
        snprintf(pending, sizeof pending, "vks-rotation/%s", path);
        st = vks_vault_kv2_metadata_delete(ctx->vault, ctx->mount, pending, err);
        if (st == VKS_E_NOT_FOUND)
            st = VKS_OK;
        else if (st != VKS_OK && err)
            vks_err_set(err, st, "'%s' was deleted, but not the pending record of its rotation in flight "
                        "(%s/%s): remove it with vault kv metadata delete", path, ctx->mount, pending);
    }
    if (st == VKS_OK && (st = vks_cred_int_index_release(ctx, name, rec.username, 0, err)) != VKS_OK && err) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        vks_err_set(err, st, "'%s' was deleted, but not its username index record (a later create takes it "
                    "over once it is %d s old): %s", path, VKS_CRED_INDEX_GRACE, why);
    }
    st = audit(ctx, &a, st, err);
    if (loaded)
        vks_cred_record_free(&rec);
    return st;
}

/* ------------------------------------------------------------------ for vks_cred_rotate.c (vks_cred_int.h) */

vks_status vks_cred_int_identity(struct vks_cred_ctx *ctx, struct vks_err *err)
{
    return identity(ctx, err);
}

vks_status vks_cred_int_path(const struct vks_cred_ctx *ctx, const char *name, char *out, size_t cap,
                             struct vks_err *err)
{
    return full_path(ctx, name, out, cap, err);
}

vks_status vks_cred_int_load(struct vks_cred_ctx *ctx, const char *name, const char *path,
                             struct vks_cred_record *rec, struct vks_err *err)
{
    return load(ctx, name, path, rec, err);
}

vks_status vks_cred_int_editable(const struct vks_cred_record *rec, const char *path, struct vks_err *err)
{
    return editable(rec, path, err);
}

vks_status vks_cred_int_audit(struct vks_cred_ctx *ctx, const char *action, const char *path, const char *username,
                              int64_t version, const char *reason, const char *detail, vks_status st,
                              struct vks_err *err)
{
    struct act a = { .action = action, .path = path, .username = username, .reason = reason, .version = version };
    snprintf(a.detail, sizeof a.detail, "%s", detail ? detail : "");
    return audit(ctx, &a, st, err);
}

vks_status vks_cred_int_data_json(const char *envelope, const char *username, char **out, struct vks_err *err)
{
    return data_json(envelope, username, out, err);
}

vks_status vks_cred_int_bump(struct vks_cred_ctx *ctx, const char *path, const struct vks_cred_record *rec,
                             int64_t *nv, struct vks_err *err)
{
    return bump(ctx, path, rec, nv, err);
}
