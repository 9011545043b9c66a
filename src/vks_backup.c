/*
 * vks_backup: create (contract: vks_backup.h; design: docs/internals/backup.md). Open, verify and
 * restore are in vks_backup_restore.c.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vks_audit.h"
#include "vks_backup.h"
#include "vks_backup_int.h"

#define LIST_DEPTH 8

/* ------------------------------------------------------------------ audit */

vks_status backup_audit(struct vks_cred_ctx *ctx, const char *action, const struct vks_backup_summary *s,
                        vks_status st, struct vks_err *err)
{
    char detail[128];
    snprintf(detail, sizeof detail, "%zu secrets, %zu versions (%zu deleted, %zu destroyed)", s->secrets,
             s->live + s->deleted + s->destroyed, s->deleted, s->destroyed);
    struct vks_audit_admin_event ev = {
        .action = action, .group = "backup", .status = st, .error = st != VKS_OK && err ? err->msg : NULL,
        .operator_name = ctx->operator_name[0] ? ctx->operator_name : NULL,
        .operator_accessor = ctx->operator_accessor[0] ? ctx->operator_accessor : NULL,
        .source = ctx->source, .vault_addr = ctx->vault_addr, .mount = ctx->mount, .path = ctx->prefix,
        .detail = detail,
    };
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status ast = vks_audit_emit_admin(&ev, NULL, &aerr);
    if (st == VKS_OK && ast != VKS_OK) {
        vks_err_set(err, ast, "backup %s was done but %s", action, aerr.msg);
        return ast;
    }
    return st;
}

vks_status backup_identity(struct vks_cred_ctx *ctx, struct vks_err *err)
{
    if (ctx->identity_known)
        return VKS_OK;
    vks_status st = vks_vault_token_identity(ctx->vault, ctx->operator_name, sizeof ctx->operator_name,
                                             ctx->operator_accessor, sizeof ctx->operator_accessor, err);
    ctx->identity_known = st == VKS_OK;
    return st;
}

/* ------------------------------------------------------------------ walk (LIST, recursive) */

void backup_names_free(struct backup_names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i]);
    free(nm->v);
    memset(nm, 0, sizeof *nm);
}

static vks_status names_add(struct backup_names *nm, const char *rel, struct vks_err *err)
{
    if (nm->n == VKS_BACKUP_SECRETS_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "more than %d secrets under the prefix", VKS_BACKUP_SECRETS_MAX);
    if (nm->n == nm->cap) {
        size_t nc = nm->cap ? nm->cap * 2 : 64;
        char **nv = realloc(nm->v, nc * sizeof *nv);
        if (nv == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory");
        nm->v = nv;
        nm->cap = nc;
    }
    if ((nm->v[nm->n] = strdup(rel)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    nm->n++;
    return VKS_OK;
}

/* Every secret under ctx->prefix (names relative to the prefix), in LIST order, depth first. */
vks_status backup_walk(struct vks_cred_ctx *ctx, const char *rel, int depth, struct backup_names *nm,
                       size_t *requests, struct vks_err *err)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    snprintf(path, sizeof path, "%s%s", ctx->prefix, rel);
    size_t pl = strlen(path);
    if (pl > 0 && path[pl - 1] == '/')
        path[pl - 1] = '\0';
    struct vks_vault_reply r = { 0 };
    vks_status st = vks_vault_kv2_list(ctx->vault, ctx->mount, path, &r, err);
    (*requests)++;
    json_object *o = st == VKS_OK && r.body ? json_tokener_parse(r.body) : NULL, *d = NULL, *keys = NULL;
    if (o && json_object_object_get_ex(o, "data", &d) && json_object_object_get_ex(d, "keys", &keys) &&
        json_object_is_type(keys, json_type_array)) {
        for (size_t i = 0; st == VKS_OK && i < json_object_array_length(keys); i++) {
            const char *k = json_object_get_string(json_object_array_get_idx(keys, i));
            char sub[VKS_CRED_NAME_MAX + 2];
            size_t kl = k ? strlen(k) : 0;
            if (kl == 0 || snprintf(sub, sizeof sub, "%s%s", rel, k) >= (int)sizeof sub)
                st = vks_err_set(err, VKS_E_INVALID_INPUT, "%s/%s: a key under the prefix is empty or longer than "
                                 "%d bytes: it cannot be backed up", ctx->mount, path, VKS_CRED_NAME_MAX);
            else if (k[kl - 1] == '/')
                st = depth < LIST_DEPTH ? backup_walk(ctx, sub, depth + 1, nm, requests, err)
                                        : vks_err_set(err, VKS_E_INVALID_INPUT, "%s/%s: deeper than %d folders",
                                                      ctx->mount, path, LIST_DEPTH);
            else
                st = names_add(nm, sub, err);
        }
    }
    json_object_put(o);
    vks_vault_reply_free(&r);
    return st;
}

/* ------------------------------------------------------------------ create */

struct out {
    struct vks_age_writer *w;
    struct vks_err *err;
};

static vks_status put(struct out *o, const char *s, size_t n)
{
    return vks_age_writer_write(o->w, s, n, o->err);
}
static vks_status puts_(struct out *o, const char *s)
{
    return put(o, s, strlen(s));
}
/* A JSON string literal of s (not secret) */
static vks_status putq(struct out *o, const char *s)
{
    json_object *j = json_object_new_string(s ? s : "");
    vks_status st = j ? puts_(o, json_object_to_json_string_ext(j, JSON_C_TO_STRING_NOSLASHESCAPE))
                      : vks_err_set(o->err, VKS_E_NOMEM, "out of memory");
    json_object_put(j);
    return st;
}
static vks_status puti(struct out *o, const char *key, int64_t v)
{
    char b[64];
    int n = snprintf(b, sizeof b, ",\"%s\":%lld", key, (long long)v);
    return put(o, b, (size_t)n);
}

static int64_t jint(json_object *o, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}
static const char *jstr(json_object *o, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : "";
}

/* One version's data object: read it and copy Vault's data.data verbatim into the bundle. */
static vks_status put_version_data(struct vks_cred_ctx *ctx, const char *path, int64_t v, struct out *o,
                                   size_t *requests)
{
    vks_scratch body;
    vks_status st = vks_vault_kv2_data_read_raw(ctx->vault, ctx->mount, path, v, &body, o->err);
    (*requests)++;
    struct vks_json_span sp = { 0 };
    if (st == VKS_OK && (vks_json_find((const char *)body.data, body.len, "data.data", &sp, o->err) != VKS_OK ||
                         sp.type != VKS_JSON_OBJECT))
        st = vks_err_set(o->err, VKS_E_BAD_RESPONSE, "%s/%s version %lld: the answer has no data.data object",
                         ctx->mount, path, (long long)v);
    if (st == VKS_OK && (st = puts_(o, ",\"data\":")) == VKS_OK)
        st = put(o, (const char *)body.data + sp.off, sp.len);
    vks_scratch_close(&body);
    return st;
}

/* "versions":[...] of one secret, from its metadata's versions map, in version order. */
static vks_status put_versions(struct vks_cred_ctx *ctx, const char *path, json_object *md, struct out *o,
                               struct vks_backup_summary *s)
{
    json_object *vs = NULL;
    int64_t cur = jint(md, "current_version");
    vks_status st = puts_(o, ",\"versions\":[");
    bool first = true;
    json_object_object_get_ex(md, "versions", &vs);
    for (int64_t v = 1; st == VKS_OK && v <= cur; v++) {
        char key[24];
        json_object *e = NULL;
        snprintf(key, sizeof key, "%lld", (long long)v);
        if (!vs || !json_object_object_get_ex(vs, key, &e)) {
            s->absent++;
            continue;
        }
        json_object *dj = NULL;
        bool destroyed = json_object_object_get_ex(e, "destroyed", &dj) && json_object_get_boolean(dj);
        bool deleted = !destroyed && jstr(e, "deletion_time")[0] != '\0';
        const char *state = destroyed ? "destroyed" : deleted ? "deleted" : "live";
        char head[160];
        snprintf(head, sizeof head, "%s{\"version\":%lld,\"state\":\"%s\",\"created_time\":", first ? "" : ",",
                 (long long)v, state);
        first = false;
        if ((st = puts_(o, head)) == VKS_OK)
            st = putq(o, jstr(e, "created_time"));
        if (st == VKS_OK && !destroyed && !deleted)
            st = put_version_data(ctx, path, v, o, &s->requests);
        if (st == VKS_OK)
            st = puts_(o, "}");
        *(destroyed ? &s->destroyed : deleted ? &s->deleted : &s->live) += 1;
    }
    return st == VKS_OK ? puts_(o, "]") : st;
}

static vks_status put_secret(struct vks_cred_ctx *ctx, const char *name, bool first, struct out *o,
                             struct vks_backup_summary *s)
{
    char path[VKS_CRED_NAME_MAX * 2 + 2];
    snprintf(path, sizeof path, "%s%s", ctx->prefix, name);
    struct vks_vault_reply r = { 0 };
    vks_status st = vks_vault_kv2_metadata_read(ctx->vault, ctx->mount, path, &r, o->err);
    s->requests++;
    if (st == VKS_E_NOT_FOUND) /* deleted between LIST and read */
        return VKS_OK;
    json_object *root = st == VKS_OK && r.body ? json_tokener_parse(r.body) : NULL, *md = NULL, *cm = NULL;
    vks_wipe(r.body, r.body_len);
    vks_vault_reply_free(&r);
    if (st == VKS_OK && (!root || !json_object_object_get_ex(root, "data", &md) ||
                         !json_object_is_type(md, json_type_object)))
        st = vks_err_set(o->err, VKS_E_BAD_RESPONSE, "%s/%s: the metadata answer is not usable", ctx->mount, path);
    if (st == VKS_OK) {
        json_object_object_get_ex(md, "custom_metadata", &cm);
        json_object *cas = NULL, *mark = NULL;
        json_object_object_get_ex(md, "cas_required", &cas);
        if (cm && json_object_is_type(cm, json_type_object) && json_object_object_get_ex(cm, "vks_cred", &mark))
            s->managed++;
        if ((st = puts_(o, first ? "{\"path\":" : ",{\"path\":")) == VKS_OK && (st = putq(o, path)) == VKS_OK &&
            (st = puts_(o, ",\"name\":")) == VKS_OK && (st = putq(o, name)) == VKS_OK &&
            (st = puti(o, "current_version", jint(md, "current_version"))) == VKS_OK &&
            (st = puti(o, "max_versions", jint(md, "max_versions"))) == VKS_OK &&
            (st = puts_(o, cas && json_object_get_boolean(cas) ? ",\"cas_required\":true" : ",\"cas_required\":false")) ==
                VKS_OK &&
            (st = puts_(o, ",\"delete_version_after\":")) == VKS_OK &&
            (st = putq(o, jstr(md, "delete_version_after"))) == VKS_OK &&
            (st = puts_(o, ",\"custom_metadata\":")) == VKS_OK)
            st = puts_(o, cm && json_object_is_type(cm, json_type_object)
                              ? json_object_to_json_string_ext(cm, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                              : "null");
        if (st == VKS_OK)
            st = put_versions(ctx, path, md, o, s);
        if (st == VKS_OK)
            st = puts_(o, "}");
        s->secrets++;
    }
    json_object_put(root);
    return st;
}

static vks_status put_head(struct vks_cred_ctx *ctx, struct out *o)
{
    char now[40], b[128];
    vks_cred_time((int64_t)time(NULL), 0, now);
    snprintf(b, sizeof b, "{\"format\":\"%s\",\"version\":%d,\"created\":\"%s\",\"source\":{\"vault_addr\":",
             VKS_BACKUP_FORMAT, VKS_BACKUP_VERSION, now);
    vks_status st = puts_(o, b);
    if (st == VKS_OK && (st = putq(o, ctx->vault_addr)) == VKS_OK && (st = puts_(o, ",\"mount\":")) == VKS_OK &&
        (st = putq(o, ctx->mount)) == VKS_OK && (st = puts_(o, ",\"prefix\":")) == VKS_OK &&
        (st = putq(o, ctx->prefix)) == VKS_OK)
        st = puts_(o, "},\"secrets\":[");
    return st;
}

static vks_status put_tail(struct out *o, const struct vks_backup_summary *s)
{
    char b[256];
    snprintf(b, sizeof b, "],\"summary\":{\"secrets\":%zu,\"managed\":%zu,\"live\":%zu,\"deleted\":%zu,"
             "\"destroyed\":%zu}}\n", s->secrets, s->managed, s->live, s->deleted, s->destroyed);
    return puts_(o, b);
}

vks_status vks_backup_create(const struct vks_backup_create_opts *opt, struct vks_backup_summary *sum,
                             struct vks_err *err)
{
    memset(sum, 0, sizeof *sum);
    struct vks_cred_ctx *ctx = opt->ctx;
    struct backup_names nm = { 0 };
    struct out o = { NULL, err };
    vks_status st = backup_identity(ctx, err);
    if (st == VKS_OK)
        st = backup_walk(ctx, "", 0, &nm, &sum->requests, err);
    if (st == VKS_OK)
        st = vks_age_writer_new(opt->recipients, opt->nrecipients, opt->passphrase, opt->scrypt_logn, opt->sink,
                                opt->sink_arg, &o.w, err);
    if (st == VKS_OK)
        st = put_head(ctx, &o);
    for (size_t i = 0; st == VKS_OK && i < nm.n; i++) {
        st = put_secret(ctx, nm.v[i], sum->secrets == 0, &o, sum);
        if (opt->progress && ((i + 1) % VKS_BACKUP_PROGRESS_EVERY == 0 || i + 1 == nm.n))
            opt->progress(opt->progress_arg, "create", i + 1, nm.n);
    }
    if (st == VKS_OK)
        st = put_tail(&o, sum);
    if (st == VKS_OK)
        st = vks_age_writer_finish(o.w, err);
    vks_age_writer_free(o.w);
    backup_names_free(&nm);
    return backup_audit(ctx, "create", sum, st, err);
}
