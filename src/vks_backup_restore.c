/*
 * vks_backup: open (decrypt, parse, check), verify digests, restore (contract: vks_backup.h;
 * design: docs/internals/backup.md).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_audit.h"
#include "vks_backup.h"
#include "vks_backup_int.h"
#include "vks_envelope.h"
#include "vks_hmac.h"

#define DOC(b) ((const char *)(b)->plain.data)

/* ------------------------------------------------------------------ parse */

static bool copy_str(const char *buf, const struct vks_json_span *s, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (s->type != VKS_JSON_STRING || vks_json_string_decoded_len(buf, s) >= cap ||
        vks_json_string_decode(buf, s, (unsigned char *)out, cap - 1, &n, NULL) != VKS_OK || memchr(out, 0, n))
        return false;
    out[n] = '\0';
    return true;
}

static struct vks_json_span rebase(struct vks_json_span s, size_t off)
{
    if (s.type != VKS_JSON_NONE)
        s.off += off;
    return s;
}

static vks_status bad(struct vks_err *err, size_t i, const char *what)
{
    return vks_err_set(err, VKS_E_INVALID_INPUT, "bundle: secret %zu: %s", i + 1, what);
}

/* One element of a secret's versions array (span v, absolute). */
static vks_status parse_version(const char *doc, struct vks_json_span v, size_t i, int64_t prev, int64_t cur,
                                struct vks_backup_version *out, struct vks_err *err)
{
    struct vks_json_query q[3] = { { { "version" }, 1, { 0 } }, { { "state" }, 1, { 0 } }, { { "data" }, 1, { 0 } } };
    if (v.type != VKS_JSON_OBJECT || vks_json_scan(doc + v.off, v.len, q, 3, "bundle version", err) != VKS_OK)
        return bad(err, i, "a version is not an object");
    if (q[0].found.type != VKS_JSON_NUMBER || !vks_json_int64(doc + v.off, &q[0].found, &out->version) ||
        out->version <= prev || out->version > cur)
        return bad(err, i, "version numbers must increase from 1 to current_version");
    const char *sd = doc + v.off;
    if (vks_json_string_equals(sd, &q[1].found, "live"))
        out->state = VKS_BACKUP_LIVE;
    else if (vks_json_string_equals(sd, &q[1].found, "deleted"))
        out->state = VKS_BACKUP_DELETED;
    else if (vks_json_string_equals(sd, &q[1].found, "destroyed"))
        out->state = VKS_BACKUP_DESTROYED;
    else
        return bad(err, i, "a version's state is not live, deleted or destroyed");
    out->data = rebase(q[2].found, v.off);
    if ((out->state == VKS_BACKUP_LIVE) != (out->data.type == VKS_JSON_OBJECT))
        return bad(err, i, "a live version needs a data object, and only a live one has data");
    return VKS_OK;
}

static vks_status parse_versions(const char *doc, struct vks_json_span arr, size_t i, struct vks_backup_secret *s,
                                 struct vks_backup_summary *c, struct vks_err *err)
{
    if (arr.type != VKS_JSON_ARRAY)
        return bad(err, i, "no versions array");
    size_t cur = 0, n = 0;
    struct vks_json_span e;
    while (vks_json_array_next(doc, &arr, &cur, &e))
        n++;
    if (n > (size_t)s->current_version)
        return bad(err, i, "more versions than current_version");
    s->versions = calloc(n ? n : 1, sizeof *s->versions);
    if (s->versions == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    cur = 0;
    int64_t prev = 0;
    vks_status st = VKS_OK;
    while (st == VKS_OK && vks_json_array_next(doc, &arr, &cur, &e)) {
        struct vks_backup_version *v = &s->versions[s->nversions];
        st = parse_version(doc, e, i, prev, s->current_version, v, err);
        if (st == VKS_OK) {
            prev = v->version;
            s->nversions++;
            *(v->state == VKS_BACKUP_LIVE ? &c->live : v->state == VKS_BACKUP_DELETED ? &c->deleted
                                                                                         : &c->destroyed) += 1;
        }
    }
    c->absent += (size_t)s->current_version - s->nversions;
    return st;
}

static vks_status parse_secret(const struct vks_backup_bundle *b, struct vks_json_span el, size_t i,
                               struct vks_backup_secret *s, struct vks_backup_summary *c, struct vks_err *err)
{
    const char *doc = DOC(b);
    struct vks_json_query q[7] = {
        { { "path" }, 1, { 0 } },         { { "current_version" }, 1, { 0 } },
        { { "max_versions" }, 1, { 0 } }, { { "cas_required" }, 1, { 0 } },
        { { "delete_version_after" }, 1, { 0 } }, { { "custom_metadata" }, 1, { 0 } },
        { { "versions" }, 1, { 0 } },
    };
    if (el.type != VKS_JSON_OBJECT || vks_json_scan(doc + el.off, el.len, q, 7, "bundle secret", err) != VKS_OK)
        return bad(err, i, "not an object");
    for (int k = 0; k < 7; k++)
        q[k].found = rebase(q[k].found, el.off);
    if (!copy_str(doc, &q[0].found, s->path, sizeof s->path) || vks_cred_check_name(s->path, "path", NULL) != VKS_OK ||
        strncmp(s->path, b->prefix, strlen(b->prefix)) != 0)
        return bad(err, i, "path is missing, not a valid KV path, or not under the bundle's prefix");
    if (q[1].found.type != VKS_JSON_NUMBER || !vks_json_int64(doc, &q[1].found, &s->current_version) ||
        s->current_version < 1 || s->current_version > 1000000)
        return bad(err, i, "current_version is not a number 1-1000000");
    if (q[2].found.type != VKS_JSON_NUMBER || !vks_json_int64(doc, &q[2].found, &s->max_versions) ||
        s->max_versions < 0 || s->max_versions > 1000000)
        return bad(err, i, "max_versions is not a number 0-1000000");
    if (q[3].found.type != VKS_JSON_TRUE && q[3].found.type != VKS_JSON_FALSE)
        return bad(err, i, "cas_required is not true or false");
    s->cas_required = q[3].found.type == VKS_JSON_TRUE;
    if (!copy_str(doc, &q[4].found, s->delete_version_after, sizeof s->delete_version_after))
        return bad(err, i, "delete_version_after is not a short string");
    if (q[5].found.type != VKS_JSON_OBJECT && q[5].found.type != VKS_JSON_NULL)
        return bad(err, i, "custom_metadata is not an object or null");
    s->custom_metadata = q[5].found;
    if (s->custom_metadata.type == VKS_JSON_OBJECT) {
        struct vks_json_span m;
        s->managed = vks_json_find(doc + s->custom_metadata.off, s->custom_metadata.len, "vks_cred", &m, NULL) ==
                         VKS_OK && m.type == VKS_JSON_STRING;
        c->managed += s->managed;
    }
    return parse_versions(doc, q[6].found, i, s, c, err);
}

static int path_cmp(const void *x, const void *y)
{
    return strcmp((*(const struct vks_backup_secret *const *)x)->path, (*(const struct vks_backup_secret *const *)y)->path);
}

/* One entry per path (sorted pointers: n log n for up to VKS_BACKUP_SECRETS_MAX). */
static vks_status unique_paths(const struct vks_backup_bundle *b, struct vks_err *err)
{
    const struct vks_backup_secret **v = malloc((b->n ? b->n : 1) * sizeof *v);
    if (v == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n; i++)
        v[i] = &b->secrets[i];
    qsort(v, b->n, sizeof *v, path_cmp);
    vks_status st = VKS_OK;
    for (size_t i = 1; st == VKS_OK && i < b->n; i++)
        if (strcmp(v[i - 1]->path, v[i]->path) == 0)
            st = bad(err, (size_t)(v[i] - b->secrets), "the same path twice in the bundle");
    free(v);
    return st;
}

static vks_status parse_doc(struct vks_backup_bundle *b, struct vks_err *err)
{
    const char *doc = DOC(b);
    struct vks_json_query q[7] = {
        { { "format" }, 1, { 0 } }, { { "version" }, 1, { 0 } }, { { "created" }, 1, { 0 } },
        { { "source", "mount" }, 2, { 0 } }, { { "source", "prefix" }, 2, { 0 } },
        { { "source", "vault_addr" }, 2, { 0 } }, { { "secrets" }, 1, { 0 } },
    };
    int64_t ver = 0;
    struct vks_err je;
    if (vks_json_scan(doc, b->plain.len, q, 7, "the sealed document", &je) != VKS_OK)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "bundle: not a valid JSON document: %s", je.msg);
    if (!vks_json_string_equals(doc, &q[0].found, VKS_BACKUP_FORMAT))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the sealed file is not a vks backup bundle (an age file of "
                           "something else: no \"format\":\"%s\" JSON document inside)", VKS_BACKUP_FORMAT);
    if (q[1].found.type != VKS_JSON_NUMBER || !vks_json_int64(doc, &q[1].found, &ver) || ver != VKS_BACKUP_VERSION)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "bundle: version is not %d (made by a newer vks?)",
                           VKS_BACKUP_VERSION);
    if (!copy_str(doc, &q[2].found, b->created, sizeof b->created) ||
        !copy_str(doc, &q[3].found, b->mount, sizeof b->mount) ||
        !copy_str(doc, &q[4].found, b->prefix, sizeof b->prefix) ||
        !copy_str(doc, &q[5].found, b->source_addr, sizeof b->source_addr) ||
        vks_cred_check_prefix(b->prefix, "prefix", NULL) != VKS_OK || q[6].found.type != VKS_JSON_ARRAY)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "bundle: created, source.mount, source.prefix, "
                           "source.vault_addr or secrets is missing or malformed");
    size_t cur = 0, n = 0;
    struct vks_json_span e;
    while (vks_json_array_next(doc, &q[6].found, &cur, &e))
        n++;
    if (n > VKS_BACKUP_SECRETS_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "bundle: more than %d secrets", VKS_BACKUP_SECRETS_MAX);
    if ((b->secrets = calloc(n ? n : 1, sizeof *b->secrets)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    cur = 0;
    vks_status st = VKS_OK;
    while (st == VKS_OK && vks_json_array_next(doc, &q[6].found, &cur, &e)) {
        st = parse_secret(b, e, b->n, &b->secrets[b->n], &b->counts, err);
        b->n++;
    }
    if (st == VKS_OK)
        st = unique_paths(b, err);
    b->counts.secrets = b->n;
    return st;
}

void vks_backup_bundle_free(struct vks_backup_bundle *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; b->secrets && i < b->n; i++)
        free(b->secrets[i].versions);
    free(b->secrets);
    vks_scratch_close(&b->plain);
    memset(b, 0, sizeof *b);
}

vks_status vks_backup_open(const unsigned char *file, size_t n, const struct vks_age_key *key,
                           struct vks_backup_bundle *b, struct vks_err *err)
{
    memset(b, 0, sizeof *b);
    vks_status st = vks_age_open(file, n, key, &b->plain, err);
    if (st == VKS_OK)
        st = parse_doc(b, err);
    if (st != VKS_OK)
        vks_backup_bundle_free(b);
    return st;
}

/* ------------------------------------------------------------------ verify */

/* The `key` string of secret i's current version, decoded into a fresh slot; false when absent. */
static bool current_key(const struct vks_backup_bundle *b, size_t i, vks_secret *out)
{
    const struct vks_backup_secret *s = &b->secrets[i];
    const struct vks_backup_version *v = s->nversions ? &s->versions[s->nversions - 1] : NULL;
    struct vks_json_span k;
    *out = VKS_SECRET_EMPTY;
    if (!v || v->version != s->current_version || v->state != VKS_BACKUP_LIVE ||
        vks_json_find(DOC(b) + v->data.off, v->data.len, "key", &k, NULL) != VKS_OK || k.type != VKS_JSON_STRING)
        return false;
    size_t need = vks_json_string_decoded_len(DOC(b) + v->data.off, &k), got = 0;
    if (need > VKS_SECRET_MAX || vks_secret_alloc(need ? need : 1, out, NULL) != VKS_OK)
        return false;
    if (vks_json_string_decode(DOC(b) + v->data.off, &k, out->data, out->cap, &got, NULL) != VKS_OK) {
        vks_secret_free(out);
        return false;
    }
    out->len = got;
    return true;
}

void vks_backup_envelope_digest(const struct vks_backup_bundle *b, size_t i, char hex[33], bool *plaintext)
{
    vks_secret k;
    hex[0] = '\0';
    *plaintext = false;
    if (!current_key(b, i, &k))
        return;
    if (vks_envelope_is_encrypted(k.data, k.len)) {
        unsigned char d[32];
        unsigned int dl = 0;
        if (EVP_Digest(k.data, k.len, d, &dl, EVP_sha256(), NULL) == 1)
            vks_hmac_hex(d, 16, hex);
    } else {
        *plaintext = true;
    }
    vks_secret_free(&k);
}

vks_status vks_backup_fingerprint(const struct vks_backup_bundle *b, size_t i, const struct vks_keyring *kr,
                                  char hex[33], struct vks_err *err)
{
    unsigned char fp[VKS_AUDIT_FP_LEN];
    struct vks_audit_stats as;
    hex[0] = '\0';
    if (vks_audit_fingerprint((const unsigned char *)"", 0, fp, NULL) != VKS_OK ||
        (vks_audit_get_stats(&as), as.ephemeral_key))
        return vks_err_set(err, VKS_E_CONFIG, "no audit key (VKS_AUDIT_KEY or VKS_AUDIT_KEY_FILE): no fingerprint");
    vks_secret k, pw = VKS_SECRET_EMPTY;
    if (!current_key(b, i, &k))
        return vks_err_set(err, VKS_E_NOT_FOUND, "%s: no current password in the bundle", b->secrets[i].path);
    vks_status st = VKS_OK;
    if (vks_envelope_is_encrypted(k.data, k.len)) {
        struct vks_envelope_place place = { b->mount, b->secrets[i].path, "key" };
        st = kr ? vks_envelope_decrypt(kr, k.data, k.len, &place, &pw, NULL, err)
                : vks_err_set(err, VKS_E_DECRYPT_FAILED, "no encryption key loaded");
    } else {
        st = vks_secret_dup(k.data, k.len, &pw, err);
    }
    if (st == VKS_OK)
        st = vks_audit_fingerprint(pw.data, pw.len, fp, err);
    if (st == VKS_OK)
        vks_hmac_hex(fp, VKS_AUDIT_FP_LEN, hex);
    vks_wipe(fp, sizeof fp);
    vks_secret_free(&pw);
    vks_secret_free(&k);
    return st;
}

/* ------------------------------------------------------------------ restore */

/* Refuses a target that has anything under the bundle's prefix (or at one of its paths). */
static vks_status target_empty(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                               struct vks_backup_summary *sum, struct vks_err *err)
{
    struct backup_names nm = { 0 };
    vks_status st = backup_walk(ctx, "", 0, &nm, &sum->requests, err);
    if (st == VKS_OK && nm.n > 0)
        st = vks_err_set(err, VKS_E_EXISTS, "the target is not empty: %zu secret%s under %s/%s (first: %s%s); "
                         "restore writes only into an empty mount or prefix, nothing was written", nm.n,
                         nm.n == 1 ? "" : "s", ctx->mount, ctx->prefix, ctx->prefix, nm.v[0]);
    backup_names_free(&nm);
    (void)b;
    return st;
}

static vks_status write_metadata(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                                 const struct vks_backup_secret *s, struct vks_err *err)
{
    const struct vks_json_span *cm = &s->custom_metadata;
    size_t cl = cm->type == VKS_JSON_OBJECT ? cm->len : 2, cap = cl + 256;
    char *body = malloc(cap);
    if (body == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    int n = snprintf(body, cap, "{\"max_versions\":%lld,\"cas_required\":%s,\"delete_version_after\":\"%s\","
                     "\"custom_metadata\":%.*s}", (long long)s->max_versions, s->cas_required ? "true" : "false",
                     s->delete_version_after[0] ? s->delete_version_after : "0s", (int)cl,
                     cm->type == VKS_JSON_OBJECT ? DOC(b) + cm->off : "{}");
    vks_status st = n > 0 && (size_t)n < cap ? vks_vault_kv2_metadata_write(ctx->vault, ctx->mount, s->path, body, err)
                                             : vks_err_set(err, VKS_E_INTERNAL, "metadata body too long");
    free(body);
    return st;
}

/* Writes version v (its data, or a placeholder) with cas v-1. */
static vks_status write_version(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                                const struct vks_backup_secret *s, const struct vks_backup_version *bv, int64_t v,
                                struct vks_err *err)
{
    static const char placeholder[] = "{\"vks_backup\":\"placeholder for a version the backup did not hold\"}";
    vks_scratch data = { 0 };
    const char *json = placeholder;
    vks_status st = VKS_OK;
    if (bv && bv->state == VKS_BACKUP_LIVE) { /* a NUL-terminated copy of the data object */
        st = vks_scratch_open(bv->data.len + 1, &data, err);
        if (st != VKS_OK)
            return st;
        memcpy(data.data, DOC(b) + bv->data.off, bv->data.len);
        data.data[bv->data.len] = '\0';
        data.len = bv->data.len + 1;
        json = (const char *)data.data;
    }
    int64_t got = 0;
    st = vks_vault_kv2_write(ctx->vault, ctx->mount, s->path, json, v - 1, false, &got, err);
    if (st == VKS_OK && got != v)
        st = vks_err_set(err, VKS_E_CONFLICT, "%s/%s: Vault wrote version %lld where the bundle has %lld: the target "
                         "was written concurrently", ctx->mount, s->path, (long long)got, (long long)v);
    vks_scratch_close(&data);
    return st;
}

/* Deletes or destroys what the source had deleted, destroyed or pruned (placeholders), in batches. */
static vks_status settle(struct vks_cred_ctx *ctx, const struct vks_backup_secret *s, struct vks_backup_summary *sum,
                         struct vks_err *err)
{
    int64_t del[64], des[64];
    size_t nd = 0, nx = 0, k = 0;
    vks_status st = VKS_OK;
    int64_t keep_from = s->max_versions > 0 ? s->current_version - s->max_versions + 1 : 1;
    for (int64_t v = 1; st == VKS_OK && v <= s->current_version; v++) {
        while (k < s->nversions && s->versions[k].version < v)
            k++;
        const struct vks_backup_version *bv = k < s->nversions && s->versions[k].version == v ? &s->versions[k] : NULL;
        if (bv && bv->state == VKS_BACKUP_DELETED)
            del[nd++] = v;
        else if ((bv && bv->state == VKS_BACKUP_DESTROYED) || (!bv && v >= keep_from))
            des[nx++] = v;
        if (st == VKS_OK && (nd == 64 || (v == s->current_version && nd))) {
            st = vks_vault_kv2_versions_op(ctx->vault, ctx->mount, "delete", s->path, del, nd, err);
            sum->requests++;
            nd = 0;
        }
        if (st == VKS_OK && (nx == 64 || (v == s->current_version && nx))) {
            st = vks_vault_kv2_versions_op(ctx->vault, ctx->mount, "destroy", s->path, des, nx, err);
            sum->requests++;
            nx = 0;
        }
    }
    return st;
}

static vks_status restore_secret(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                                 const struct vks_backup_secret *s, struct vks_backup_summary *sum,
                                 struct vks_err *err)
{
    /* restrictions first: a version is never readable in the target without its custom_metadata */
    vks_status st = write_metadata(ctx, b, s, err);
    sum->requests++;
    size_t k = 0;
    for (int64_t v = 1; st == VKS_OK && v <= s->current_version; v++) {
        const struct vks_backup_version *bv = k < s->nversions && s->versions[k].version == v ? &s->versions[k++]
                                                                                                 : NULL;
        st = write_version(ctx, b, s, bv, v, err);
        sum->requests++;
        if (bv)
            *(bv->state == VKS_BACKUP_LIVE ? &sum->live : bv->state == VKS_BACKUP_DELETED ? &sum->deleted
                                                                                             : &sum->destroyed) += 1;
        else
            sum->absent++;
    }
    if (st == VKS_OK)
        st = settle(ctx, s, sum, err);
    if (st == VKS_OK) {
        sum->secrets++;
        sum->managed += s->managed;
    } else if (err) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        vks_err_set(err, st, "restore stopped at %s/%s after %zu of %zu secrets (the target now "
                    "holds a partial restore: empty it before running again): %s", ctx->mount, s->path, sum->secrets,
                    b->n, why);
    }
    return st;
}

vks_status vks_backup_restore(struct vks_cred_ctx *ctx, const struct vks_backup_bundle *b,
                              vks_backup_progress_fn progress, void *progress_arg, struct vks_backup_summary *sum,
                              struct vks_err *err)
{
    memset(sum, 0, sizeof *sum);
    vks_status st = VKS_OK;
    if (strcmp(ctx->prefix, b->prefix) != 0)
        st = vks_err_set(err, VKS_E_INVALID_ARG, "restore: the context's prefix is not the bundle's");
    if (st == VKS_OK)
        st = backup_identity(ctx, err);
    if (st == VKS_OK)
        st = target_empty(ctx, b, sum, err);
    for (size_t i = 0; st == VKS_OK && i < b->n; i++) {
        st = restore_secret(ctx, b, &b->secrets[i], sum, err);
        if (progress && st == VKS_OK && ((i + 1) % VKS_BACKUP_PROGRESS_EVERY == 0 || i + 1 == b->n))
            progress(progress_arg, "restore", i + 1, b->n);
    }
    return backup_audit(ctx, "restore", sum, st, err);
}
