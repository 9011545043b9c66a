/*
 * vks_cred_reset: mark, record, optionally rotate (contract: vks_cred_reset.h; design:
 * docs/internals/reset.md). Rotation is vks_cred_rotate itself; the marks use the same
 * check-and-set lock as every other metadata edit (vks_cred_int_*).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vks_cred_int.h"
#include "vks_cred_reset.h"
#include "vks_reset_record.h"

#define RECORD_TRIES 5
#define MARK_TRIES 6

bool vks_cred_is_reset(const struct vks_cred_record *rec)
{
    json_object *v;
    return strcmp(rec->state, "reset") == 0 ||
           (rec->custom && json_object_object_get_ex((json_object *)rec->custom, "reset_id", &v));
}

static vks_status check_req(const struct vks_cred_reset_req *q, struct vks_err *err)
{
    size_t n = q->reason ? strlen(q->reason) : 0;
    if (n == 0 || n > 256)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason is required: 1-256 characters saying why the "
                           "credentials are reset (it is audited)");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)q->reason[i] < 0x20 || q->reason[i] == 0x7f)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "--reason: character %zu is a control character", i + 1);
    if (q->scope == VKS_CRED_RESET_NAME)
        return vks_cred_check_name(q->name, "NAME", err);
    if (q->scope == VKS_CRED_RESET_TENANT)
        return vks_cred_check_tenant(q->tenant, "--tenant", err);
    if (q->scope != VKS_CRED_RESET_ALL)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "scope: give NAME, --tenant T or --all");
    return VKS_OK;
}

static vks_status new_id(char out[64], struct vks_err *err)
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return vks_err_set(err, VKS_E_INTERNAL, "getrandom failed: no reset id");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 64, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return VKS_OK;
}

/* ------------------------------------------------------------------ select */

static vks_status add_item(struct vks_cred_reset_result *res, const char *name, struct vks_err *err)
{
    struct vks_cred_reset_item *n = realloc(res->items, (res->n + 1) * sizeof *n);
    if (n == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    res->items = n;
    memset(&n[res->n], 0, sizeof *n);
    snprintf(n[res->n].name, sizeof n[res->n].name, "%s", name);
    n[res->n++].outcome = "failed";
    return VKS_OK;
}

static vks_status select_items(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q,
                               struct vks_cred_reset_result *res, struct vks_err *err)
{
    if (q->scope == VKS_CRED_RESET_NAME)
        return add_item(res, q->name, err);
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    vks_status st = vks_cred_list(ctx, &recs, &n, err);
    for (size_t i = 0; st == VKS_OK && i < n; i++)
        if (recs[i].managed && (q->scope == VKS_CRED_RESET_ALL || strcmp(recs[i].tenant, q->tenant) == 0))
            st = add_item(res, recs[i].name, err);
    vks_cred_records_free(recs, n);
    if (st == VKS_OK && res->n == 0)
        st = q->scope == VKS_CRED_RESET_ALL
                 ? vks_err_set(err, VKS_E_NOT_FOUND, "no managed credential under %s/%s", ctx->mount, ctx->prefix)
                 : vks_err_set(err, VKS_E_NOT_FOUND, "--tenant '%s': no managed credential of that tenant under "
                               "%s/%s", q->tenant, ctx->mount, ctx->prefix);
    return st;
}

/* ------------------------------------------------------------------ mark */

static vks_status mark_once(struct vks_cred_ctx *ctx, const char *name, const char *path, const char *rid,
                            const char *at, bool adopt, struct vks_cred_record *rec, bool *already,
                            struct vks_err *err)
{
    vks_status st = vks_cred_int_load(ctx, name, path, rec, err);
    if (st == VKS_OK && rec->managed && vks_cred_is_reset(rec)) {
        *already = true;
        return VKS_OK;
    }
    if (st == VKS_OK)
        st = vks_cred_int_editable(rec, path, err);
    if (st == VKS_E_CONFLICT && adopt && rec->managed) /* an edit interrupted long ago: an emergency */
        st = VKS_OK;                                    /* does not wait for its repair          */
    int64_t nv = 0;
    if (st == VKS_OK) /* the data version is the lock: a PATCH of username, same password */
        st = vks_cred_int_bump(ctx, path, rec, &nv, err);
    if (st != VKS_OK)
        return st;
    if (rec->custom == NULL)
        rec->custom = json_object_new_object();
    if (rec->custom == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    json_object_object_add((json_object *)rec->custom, "reset_id", json_object_new_string(rid));
    json_object_object_add((json_object *)rec->custom, "reset_at", json_object_new_string(at));
    rec->rev = rec->current_version = rec->vault_version = nv;
    if (strcmp(rec->state, "rotating") != 0) /* a rotation in flight keeps its state; reset_id refuses */
        snprintf(rec->state, sizeof rec->state, "reset");
    snprintf(rec->due, sizeof rec->due, "%s", at); /* bring the rotation forward: due now */
    char *meta = NULL;
    st = vks_cred_metadata_body(rec, &meta, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_metadata_write(ctx->vault, ctx->mount, path, meta, err);
    free(meta);
    if (st != VKS_OK && err) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        vks_err_set(err, st, "version %lld was written but not the metadata that marks the reset (the credential "
                    "still resolves): run the reset again: %s", (long long)nv, why);
    }
    return st;
}

static vks_status mark(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q, const char *rid,
                       const char *at, struct vks_cred_reset_item *it, struct vks_err *err)
{
    char path[VKS_CRED_PATH_MAX], detail[128];
    vks_status st = vks_cred_int_path(ctx, it->name, path, sizeof path, err);
    struct vks_cred_record rec;
    memset(&rec, 0, sizeof rec);
    bool already = false;
    /* A conflict is either a writer that won the data version just now (retry at once) or metadata
     * lagging the data (an edit in progress, or one that died between its two writes: wait up to
     * about a second for it, then adopt the newer version as rotate --resume does). */
    for (int attempt = 0; st == VKS_OK && attempt < MARK_TRIES; attempt++) {
        vks_cred_record_free(&rec);
        st = mark_once(ctx, it->name, path, rid, at, attempt == MARK_TRIES - 1, &rec, &already, err);
        if (st != VKS_E_CONFLICT || attempt == MARK_TRIES - 1)
            break;
        if (rec.rev != rec.vault_version)
            nanosleep(&(struct timespec){ 0, 200 * 1000000L }, NULL);
        st = VKS_OK;
    }
    snprintf(detail, sizeof detail, "reset_id=%s%s", rid, already ? " already reset" : "");
    if (!already)
        st = vks_cred_int_audit(ctx, "reset.mark", path, rec.username, rec.vault_version, q->reason, detail, st,
                                err);
    it->status = st;
    it->outcome = st != VKS_OK ? "failed" : already ? "already" : "reset";
    if (st != VKS_OK)
        snprintf(it->error, sizeof it->error, "%s", err ? err->msg : "");
    vks_cred_record_free(&rec);
    return st;
}

/* ------------------------------------------------------------------ the control record */

static vks_status record_load(struct vks_cred_ctx *ctx, struct vks_reset_record *rec, int64_t *ver,
                              struct vks_err *err)
{
    struct vks_vault_reply rep;
    memset(&rep, 0, sizeof rep);
    memset(rec, 0, sizeof *rec);
    *ver = 0;
    vks_status st = vks_vault_kv2_metadata_read(ctx->vault, ctx->mount, VKS_RESET_RECORD_PATH, &rep, err);
    if (st == VKS_E_NOT_FOUND)
        return VKS_OK;
    json_object *root = st == VKS_OK && rep.body ? json_tokener_parse(rep.body) : NULL, *d, *cv;
    if (st == VKS_OK && root && json_object_object_get_ex(root, "data", &d) &&
        json_object_object_get_ex(d, "current_version", &cv))
        *ver = json_object_get_int64(cv);
    json_object_put(root);
    vks_vault_reply_free(&rep);
    if (st != VKS_OK || *ver <= 0)
        return st;
    vks_scratch body = { 0 };
    st = vks_vault_kv2_data_read_raw(ctx->vault, ctx->mount, VKS_RESET_RECORD_PATH, *ver, &body, err);
    if (st == VKS_E_NOT_FOUND) /* that version was deleted: start again from empty, cas keeps order */
        return VKS_OK;
    if (st == VKS_OK && (st = vks_reset_record_parse((const char *)body.data, body.len, rec, err)) != VKS_OK) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        vks_err_set(err, st, "%s/" VKS_RESET_RECORD_PATH " cannot be extended: %s (resolvers refuse every credential "
                    "of the mount until it is fixed: remove it with vault kv metadata delete and reset again)",
                    ctx->mount, why);
    }
    vks_scratch_close(&body);
    return st;
}

static vks_status entry_for(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q,
                            const struct vks_cred_reset_result *res, const char *rid, const char *at,
                            struct vks_reset_entry *e, struct vks_err *err)
{
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", rid);
    snprintf(e->at, sizeof e->at, "%s", at);
    e->scope = (enum vks_reset_scope)q->scope;
    if (q->scope == VKS_CRED_RESET_TENANT)
        snprintf(e->tenant, sizeof e->tenant, "%s", q->tenant);
    snprintf(e->prefix, sizeof e->prefix, "%s", ctx->prefix);
    if (q->scope == VKS_CRED_RESET_ALL)
        return VKS_OK;
    if ((e->paths = calloc(res->n, sizeof *e->paths)) == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < res->n; i++) {
        char path[VKS_CRED_PATH_MAX];
        if (strcmp(res->items[i].outcome, "failed") == 0)
            continue;
        snprintf(path, sizeof path, "%s%s", ctx->prefix, res->items[i].name);
        if ((e->paths[e->npaths] = strdup(path)) == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "out of memory");
        e->npaths++;
    }
    return VKS_OK;
}

static vks_status record_write(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q,
                               struct vks_cred_reset_result *res, const char *rid, const char *at,
                               struct vks_err *err)
{
    vks_status st = VKS_E_CONFLICT;
    for (int i = 0; i < RECORD_TRIES && st == VKS_E_CONFLICT; i++) {
        struct vks_reset_record rec;
        struct vks_reset_entry e;
        int64_t ver = 0;
        char *json = NULL;
        memset(&e, 0, sizeof e);
        st = record_load(ctx, &rec, &ver, err);
        if (st == VKS_OK)
            st = entry_for(ctx, q, res, rid, at, &e, err);
        if (st == VKS_OK)
            st = vks_reset_record_append(&rec, &e, err);
        if (st == VKS_OK)
            st = vks_reset_record_json(&rec, &json, err);
        if (st == VKS_OK)
            st = vks_vault_kv2_write(ctx->vault, ctx->mount, VKS_RESET_RECORD_PATH, json, ver, false, NULL, err);
        if (st == VKS_OK)
            res->record_seq = rec.seq;
        free(json);
        vks_reset_entry_free(&e);
        vks_reset_record_free(&rec);
    }
    res->record_written = st == VKS_OK;
    return st;
}

/* ------------------------------------------------------------------ the act */

static void progress(const struct vks_cred_reset_req *q, const char *name, const char *what)
{
    if (q->progress)
        q->progress(name, what, q->progress_arg);
}

static void rotate_all(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q,
                       struct vks_cred_reset_result *res)
{
    struct vks_cred_rotate_opts none;
    memset(&none, 0, sizeof none);
    for (size_t i = 0; i < res->n; i++) {
        struct vks_cred_reset_item *it = &res->items[i];
        if (strcmp(it->outcome, "failed") == 0)
            continue;
        struct vks_cred_rotate_result rr;
        struct vks_err re;
        vks_err_clear(&re);
        vks_status st = vks_cred_rotate(ctx, it->name, q->rotate_opts ? q->rotate_opts : &none, &rr, &re);
        it->status = st;
        it->outcome = st == VKS_OK ? "rotated" : "rotate-failed";
        it->new_version = rr.new_version;
        if (st != VKS_OK)
            snprintf(it->error, sizeof it->error, "%s", re.msg);
        res->n_rotated += st == VKS_OK;
        vks_cred_rotate_result_free(&rr);
        progress(q, it->name, it->outcome);
    }
}

static vks_status first_failure(const struct vks_cred_reset_result *res, struct vks_err *err)
{
    for (size_t i = 0; i < res->n; i++)
        if (res->items[i].status != VKS_OK)
            return vks_err_set(err, res->items[i].status, "%zu of %zu credentials %s; '%s': %s", res->n_failed ?
                               res->n_failed : res->n - res->n_rotated, res->n, res->n_failed ? "could not be marked "
                               "(run the reset again: the ones already reset are skipped)" : "were reset but not "
                               "rotated (still refused: vks cred rotate NAME)", res->items[i].name,
                               res->items[i].error);
    return VKS_OK;
}

static vks_status reset_run(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *q,
                            struct vks_cred_reset_result *res, struct vks_err *err)
{
    char at[40];
    vks_cred_time((int64_t)time(NULL), 0, at);
    vks_status st = select_items(ctx, q, res, err);
    for (size_t i = 0; st == VKS_OK && i < res->n; i++) {
        struct vks_err me;
        vks_err_clear(&me);
        if (mark(ctx, q, res->reset_id, at, &res->items[i], &me) == VKS_OK)
            res->n_marked++;
        else
            res->n_failed++;
        progress(q, res->items[i].name, res->items[i].outcome);
    }
    if (st == VKS_OK && res->n_marked > 0 && (st = record_write(ctx, q, res, res->reset_id, at, err)) != VKS_OK) {
        char why[VKS_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return vks_err_set(err, st, "%zu credentials were marked reset (fresh lookups refuse them) but the control "
                           "record %s/" VKS_RESET_RECORD_PATH " was not written, so running processes may serve "
                           "their cached copy: run the same reset again: %s", res->n_marked, ctx->mount, why);
    }
    if (st == VKS_OK && q->rotate && res->n_failed == 0)
        rotate_all(ctx, q, res);
    return st == VKS_OK ? first_failure(res, err) : st;
}

vks_status vks_cred_reset(struct vks_cred_ctx *ctx, const struct vks_cred_reset_req *req,
                          struct vks_cred_reset_result *result, struct vks_err *err)
{
    memset(result, 0, sizeof *result);
    vks_status st = check_req(req, err);
    if (st != VKS_OK)
        return st;
    if (req->scope == VKS_CRED_RESET_NAME)
        snprintf(result->scope, sizeof result->scope, "name:%s", req->name);
    else if (req->scope == VKS_CRED_RESET_TENANT)
        snprintf(result->scope, sizeof result->scope, "tenant:%s", req->tenant);
    else
        snprintf(result->scope, sizeof result->scope, "all:%s", ctx->prefix);
    if ((st = new_id(result->reset_id, err)) == VKS_OK)
        st = vks_cred_int_identity(ctx, err);
    if (st != VKS_OK)
        return st;
    st = reset_run(ctx, req, result, err);
    char detail[256], where[VKS_CRED_NAME_MAX + 32];
    char rotated[24] = "-";
    if (req->rotate)
        snprintf(rotated, sizeof rotated, "%zu", result->n_rotated);
    snprintf(detail, sizeof detail, "reset_id=%s scope=%.24s marked=%zu failed=%zu rotated=%s", result->reset_id,
             result->scope, result->n_marked, result->n_failed, rotated);
    snprintf(where, sizeof where, "%s%s", ctx->prefix, req->scope == VKS_CRED_RESET_NAME ? req->name : "");
    return vks_cred_int_audit(ctx, "reset", where, NULL, 0, req->reason, detail, st, err);
}

void vks_cred_reset_result_free(struct vks_cred_reset_result *result)
{
    if (result == NULL)
        return;
    free(result->items);
    memset(result, 0, sizeof *result);
}
