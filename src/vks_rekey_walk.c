/*
 * vks_rekey: the walk (LIST, recursive), reading one secret, and the verify pass (contract:
 * vks_rekey.h, vks_rekey_int.h; design: docs/internals/rekey.md).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_json.h"
#include "vks_rekey_int.h"

/* ------------------------------------------------------------------ errors */

void rekey_item_error(struct vks_rekey_result *res, const char *path, const char *field, vks_status code,
                      const char *msg)
{
    res->c.failed++;
    if (res->nerrors == VKS_REKEY_ERRORS_KEPT)
        return;
    if (res->errors == NULL && (res->errors = calloc(VKS_REKEY_ERRORS_KEPT, sizeof *res->errors)) == NULL)
        return;
    struct vks_rekey_error *e = &res->errors[res->nerrors++];
    snprintf(e->path, sizeof e->path, "%s", path);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    e->code = code;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
}

/* ------------------------------------------------------------------ walk (LIST, recursive) */

void rekey_names_free(struct names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i]);
    free(nm->v);
    memset(nm, 0, sizeof *nm);
}

static vks_status names_add(struct names *nm, const char *path, const char *where, struct vks_err *err)
{
    size_t max = nm->max > 0 && nm->max < VKS_REKEY_SECRETS_MAX ? nm->max : VKS_REKEY_SECRETS_MAX;
    if (nm->n == max)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: more than %zu secrets under the prefix: give a narrower "
                           "--prefix (nothing was written)", where, max);
    if (nm->n == nm->cap) {
        size_t nc = nm->cap ? nm->cap * 2 : 256;
        char **nv = realloc(nm->v, nc * sizeof *nv);
        if (nv == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory");
        nm->v = nv;
        nm->cap = nc;
    }
    if ((nm->v[nm->n] = strdup(path)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    nm->n++;
    return VKS_OK;
}

vks_status rekey_walk(struct vks_rekey_result *res, struct vks_vault *v, const char *mount, const char *dir, int depth,
                       struct names *nm, size_t *requests, struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    snprintf(path, sizeof path, "%s", dir);
    size_t pl = strlen(path);
    if (pl > 0 && path[pl - 1] == '/')
        path[pl - 1] = '\0';
    struct vks_vault_reply rep = { 0 };
    vks_status st = vks_vault_kv2_list(v, mount, path, &rep, err);
    (*requests)++;
    json_object *o = st == VKS_OK && rep.body ? json_tokener_parse(rep.body) : NULL, *d = NULL, *keys = NULL;
    if (st == VKS_OK && rep.body && !(o && json_object_object_get_ex(o, "data", &d) &&
                                      json_object_object_get_ex(d, "keys", &keys) &&
                                      json_object_is_type(keys, json_type_array)))
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "LIST %s/%s: the answer has no data.keys array", mount, path);
    for (size_t i = 0; st == VKS_OK && keys && i < json_object_array_length(keys); i++) {
        const char *k = json_object_get_string(json_object_array_get_idx(keys, i));
        char sub[VKS_CRED_NAME_MAX * 2 + 2];
        size_t kl = k ? strlen(k) : 0;
        if (kl == 0 || snprintf(sub, sizeof sub, "%s%s", dir, k) >= (int)sizeof sub) {
            if (res)
                rekey_item_error(res, path, NULL, VKS_E_INVALID_INPUT, "a key in this folder is empty or too long: "
                           "left alone");
        } else if (k[kl - 1] == '/') {
            if (depth < VKS_REKEY_DEPTH_MAX)
                st = rekey_walk(res, v, mount, sub, depth + 1, nm, requests, err);
            else if (res)
                rekey_item_error(res, sub, NULL, VKS_E_INVALID_INPUT, "folder deeper than 16 levels under the prefix: "
                           "not walked (rekey it with its own --prefix)");
        } else {
            st = names_add(nm, sub, path, err);
        }
    }
    json_object_put(o);
    vks_vault_reply_free(&rep);
    return st;
}

/* ------------------------------------------------------------------ one secret */



void rekey_secret_reset(struct secret *s)
{
    if (s->loaded)
        vks_cred_record_free(&s->rec);
    s->loaded = false;
    vks_scratch_close(&s->body);
    s->nf = 0;
}

/* Reads metadata and the latest version's data. *live false (VKS_OK) when there is none to read. */
vks_status rekey_secret_read(struct vks_cred_ctx *ctx, struct secret *s, bool *live, size_t *requests,
                              struct vks_err *err)
{
    *live = false;
    struct vks_vault_reply rep = { 0 };
    vks_status st = vks_vault_kv2_metadata_read(ctx->vault, ctx->mount, s->path, &rep, err);
    (*requests)++;
    if (st == VKS_OK)
        st = vks_cred_record_parse(rep.body ? rep.body : "", rep.body_len, s->name, &s->rec, err);
    vks_vault_reply_free(&rep);
    if (st == VKS_E_NOT_FOUND) /* removed since the listing */
        return VKS_OK;
    if (st != VKS_OK)
        return st;
    s->loaded = true;
    s->version = s->rec.vault_version;
    for (size_t i = 0; i < s->rec.nversions; i++)
        if (s->rec.versions[i].version == s->version && (s->rec.versions[i].destroyed || s->rec.versions[i].deleted[0]))
            return VKS_OK;
    if (s->version < 1)
        return VKS_OK;
    st = vks_vault_kv2_data_read_raw(ctx->vault, ctx->mount, s->path, s->version, &s->body, err);
    (*requests)++;
    if (st == VKS_E_NOT_FOUND) /* deleted since the metadata read */
        return VKS_OK;
    struct vks_json_span sp = { 0 };
    if (st == VKS_OK && (vks_json_find((const char *)s->body.data, s->body.len, "data.data", &sp, err) != VKS_OK ||
                         sp.type != VKS_JSON_OBJECT))
        st = vks_err_set(err, VKS_E_BAD_RESPONSE, "%s/%s version %lld: the answer has no data.data object",
                         ctx->mount, s->path, (long long)s->version);
    if (st == VKS_OK)
        st = vks_rekey_fields((const char *)s->body.data, s->body.len, sp.off, sp.len, s->f, VKS_REKEY_FIELDS_MAX,
                              &s->nf, err);
    *live = st == VKS_OK;
    return st;
}

/* The envelope of field i decoded into an arena slot (the caller frees it). */
vks_status rekey_field_value(const struct secret *s, size_t i, vks_secret *out, struct vks_err *err)
{
    const struct vks_rekey_field *f = &s->f[i];
    struct vks_json_span sp = { VKS_JSON_STRING, f->off, f->len };
    size_t need = vks_json_string_decoded_len((const char *)s->body.data, &sp), got = 0;
    if (need > VKS_ENVELOPE_MAX)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED, "malformed envelope: oversized (%zu bytes, at most %d)", need,
                           VKS_ENVELOPE_MAX);
    vks_status st = vks_secret_alloc(need + 1, out, err);
    if (st == VKS_OK)
        st = vks_json_string_decode((const char *)s->body.data, &sp, out->data, out->cap - 1, &got, err);
    out->len = got;
    return st;
}

/* True when the envelope is format 2 under target (no key needed). */
/* ------------------------------------------------------------------ verify */

static void tally_id(char *ids, size_t cap, const char *id)
{
    char key[80];
    snprintf(key, sizeof key, "%s (", id);
    char *p = strstr(ids, key);
    if (p != NULL && (p == ids || p[-1] == ' ')) {
        unsigned long n = strtoul(p + strlen(key), NULL, 10);
        char rest[256];
        const char *after = strchr(p, ')');
        snprintf(rest, sizeof rest, "%s", after ? after + 1 : "");
        snprintf(p, cap - (size_t)(p - ids), "%s%lu)%s", key, n + 1, rest);
    } else {
        size_t l = strlen(ids);
        snprintf(ids + l, cap - l, "%s%s1)", l ? ", " : "", key);
    }
}

static void verify_one(struct vks_cred_ctx *ctx, const char *target, struct secret *s, struct vks_rekey_verify *v,
                       size_t *requests)
{
    struct vks_err e;
    bool live = false;
    if (rekey_secret_read(ctx, s, &live, requests, &e) != VKS_OK) {
        v->failed++;
        return;
    }
    if (live && s->rec.managed && strcmp(s->rec.state, "rotating") == 0)
        v->busy++;
    for (size_t i = 0; live && i < s->nf; i++) {
        if (s->f[i].kind != VKS_REKEY_ENC)
            continue;
        vks_secret env = VKS_SECRET_EMPTY;
        struct vks_envelope_info info;
        if (rekey_field_value(s, i, &env, &e) != VKS_OK || vks_envelope_inspect(env.data, env.len, &info, &e) != VKS_OK)
            v->failed++;
        else if (info.format == 2 && strcmp(info.key_id, target) == 0)
            v->values_target++;
        else if (info.format == 1)
            v->values_legacy++, tally_id(v->other_ids, sizeof v->other_ids, "legacy");
        else
            v->values_other++, tally_id(v->other_ids, sizeof v->other_ids, info.key_id);
        vks_secret_free(&env);
    }
}

vks_status vks_rekey_verify(struct vks_cred_ctx *ctx, const char *target, vks_rekey_progress_fn progress,
                            void *progress_arg, struct vks_rekey_verify *v, size_t *requests, struct vks_err *err)
{
    memset(v, 0, sizeof *v);
    struct names nm = { 0 };
    vks_status st = rekey_walk(NULL, ctx->vault, ctx->mount, ctx->prefix, 0, &nm, requests, err);
    struct secret *s = st == VKS_OK ? calloc(1, sizeof *s) : NULL;
    if (st == VKS_OK && s == NULL)
        st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
    v->secrets = nm.n;
    for (size_t i = 0; st == VKS_OK && i < nm.n; i++) {
        snprintf(s->path, sizeof s->path, "%s", nm.v[i]);
        snprintf(s->name, sizeof s->name, "%s", nm.v[i]);
        verify_one(ctx, target, s, v, requests);
        rekey_secret_reset(s);
        if (progress)
            progress(progress_arg, "verify", i + 1, nm.n);
    }
    free(s);
    rekey_names_free(&nm);
    return st;
}
