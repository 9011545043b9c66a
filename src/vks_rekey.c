/*
 * vks_rekey: the run and the verify pass (contract: vks_rekey.h; design: docs/internals/rekey.md).
 * The walk, reads and the verify pass are in vks_rekey_walk.c; pure parts (the data object's
 * fields, the drill spec) in vks_rekey_scan.c.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vks_audit.h"
#include "vks_json.h"
#include "vks_rekey_int.h"

struct run {
    const struct vks_rekey_opts *o;
    struct vks_cred_ctx *ctx;
    struct vks_rekey_result *res;
    const char *phase;
    unsigned long drills[4];       /* list, read, data, meta: arrivals so far */
};

/* ------------------------------------------------------------------ drill, errors */

static void drill(struct run *r, int which)
{
    static const char *const steps[] = { "list", "read", "data", "meta" };
    r->drills[which]++;
    if (vks_rekey_drill_match(getenv("VKS_REKEY_STOP_AFTER"), steps[which], r->drills[which]))
        _exit(137); /* as if killed (docs/internals/rekey.md "Crash drills") */
    /* the race drill: after the first read, wait (at most 30 s) until the file exists, so that a
       test can edit the secret between the read and the check-and-set write */
    const char *pause = getenv("VKS_REKEY_PAUSE_FILE");
    if (pause != NULL && which == 1 && r->drills[1] == 1) {
        fprintf(stderr, "vks rekey: paused after the first read (VKS_REKEY_PAUSE_FILE)\n");
        for (int i = 0; i < 300 && access(pause, F_OK) != 0; i++)
            usleep(100000);
    }
}

void vks_rekey_result_free(struct vks_rekey_result *r)
{
    free(r->errors);
    memset(r, 0, sizeof *r);
}

static bool under(const vks_secret *env, const char *target, struct vks_envelope_info *info)
{
    struct vks_err ignored;
    memset(info, 0, sizeof *info);
    return vks_envelope_inspect(env->data, env->len, info, &ignored) == VKS_OK && info->format == 2 &&
           strcmp(info->key_id, target) == 0;
}

/* Re-encrypts every ENC: field of s not under the target into *patch (a json object of the new
   envelopes); counts; per-field errors go to the result. */
static void build_patch(struct run *r, struct secret *s, json_object *patch, struct vks_rekey_counts *c)
{
    for (size_t i = 0; i < s->nf; i++) {
        const struct vks_rekey_field *f = &s->f[i];
        if (f->kind != VKS_REKEY_ENC) {
            *(f->kind == VKS_REKEY_PLAIN ? &c->values_plain : &c->values_other) += 1;
            continue;
        }
        struct vks_err e;
        vks_err_clear(&e);
        vks_secret env = VKS_SECRET_EMPTY;
        struct vks_envelope_info info;
        char *out = NULL;
        vks_status st = rekey_field_value(s, i, &env, &e);
        if (st == VKS_OK && under(&env, r->o->target, &info)) {
            c->values_current++;
        } else if (st == VKS_OK) {
            struct vks_envelope_place place = { r->ctx->mount, s->path, f->name };
            st = vks_envelope_rekey(r->ctx->keyring, env.data, env.len, &place, r->o->target, &out, NULL, &e);
            if (st == VKS_OK && json_object_object_add(patch, f->name, json_object_new_string(out)) != 0)
                st = vks_err_set(&e, VKS_E_NOMEM, "out of memory");
        }
        if (st != VKS_OK)
            rekey_item_error(r->res, s->path, f->name, st, e.msg);
        free(out);
        vks_secret_free(&env);
    }
}

static const char *custom_str(const struct vks_cred_record *rec, const char *k)
{
    json_object *v = NULL;
    return rec->custom && json_object_object_get_ex((json_object *)rec->custom, k, &v) ? json_object_get_string(v)
                                                                                      : NULL;
}

/* A managed credential's metadata after data version nv: rev and current_version follow, key_id is
   the target (an operator key for vks_cred_metadata_body, kept with the others). */
static vks_status write_meta(struct run *r, struct secret *s, int64_t nv, struct vks_err *err)
{
    struct vks_cred_record *rec = &s->rec;
    if (rec->current_version == rec->rev)
        rec->current_version = nv;
    rec->rev = nv;
    if (rec->custom == NULL)
        rec->custom = json_object_new_object();
    json_object_object_add((json_object *)rec->custom, "key_id", json_object_new_string(r->o->target));
    char *meta = NULL;
    vks_status st = vks_cred_metadata_body(rec, &meta, err);
    if (st == VKS_OK)
        st = vks_vault_kv2_metadata_write(r->ctx->vault, r->ctx->mount, s->path, meta, err);
    r->res->c.requests++;
    free(meta);
    return st;
}

static void cred_event(struct run *r, struct secret *s, int64_t nv, size_t nvalues, vks_status st, const char *msg)
{
    char detail[128];
    snprintf(detail, sizeof detail, "key_id=%s values=%zu", r->o->target, nvalues);
    struct vks_audit_admin_event ev = {
        .action = "rekey", .status = st, .error = st != VKS_OK ? msg : NULL,
        .operator_name = r->ctx->operator_name[0] ? r->ctx->operator_name : NULL,
        .operator_accessor = r->ctx->operator_accessor[0] ? r->ctx->operator_accessor : NULL,
        .source = r->ctx->source, .vault_addr = r->ctx->vault_addr, .mount = r->ctx->mount, .path = s->path,
        .username = s->rec.username, .secret_version = nv, .detail = detail,
    };
    struct vks_err aerr;
    vks_err_clear(&aerr);
    if (vks_audit_emit_admin(&ev, NULL, &aerr) != VKS_OK)
        rekey_item_error(r->res, s->path, NULL, aerr.status, aerr.msg);
}

enum outcome { DONE, RETRY };

/* The body of a version bump that changes no value: the first envelope as it is (the data version
   is the lock of docs/credentials.md, so a metadata change needs a data write with check-and-set). */
static vks_status same_value(const struct secret *s, json_object *patch, struct vks_err *err)
{
    for (size_t i = 0; i < s->nf; i++) {
        if (s->f[i].kind != VKS_REKEY_ENC)
            continue;
        vks_secret env = VKS_SECRET_EMPTY;
        vks_status st = rekey_field_value(s, i, &env, err);
        if (st == VKS_OK && json_object_object_add(patch, s->f[i].name,
                                                   json_object_new_string_len((const char *)env.data, (int)env.len)))
            st = vks_err_set(err, VKS_E_NOMEM, "out of memory");
        vks_secret_free(&env);
        return st;
    }
    return vks_err_set(err, VKS_E_INTERNAL, "no envelope to rewrite");
}

/* Writes the patch under check-and-set, then a managed credential's metadata. */
static vks_status write_secret(struct run *r, struct secret *s, json_object *patch, size_t n, struct vks_err *err)
{
    int64_t nv = 0;
    vks_status st = VKS_OK;
    if (n == 0)
        st = same_value(s, patch, err);
    if (st == VKS_OK) {
        st = vks_vault_kv2_write(r->ctx->vault, r->ctx->mount, s->path,
                                 json_object_to_json_string_ext(patch, JSON_C_TO_STRING_PLAIN), s->version, true,
                                 &nv, err);
        r->res->c.requests++;
    }
    if (st == VKS_E_CONFLICT)
        return st;
    if (st == VKS_OK)
        drill(r, 2);
    if (st == VKS_OK && s->rec.managed && (st = write_meta(r, s, nv, err)) == VKS_OK)
        drill(r, 3);
    if (s->rec.managed)
        cred_event(r, s, nv, n, st, err->msg);
    return st;
}

/* One attempt on a secret that was read; RETRY after a lost check-and-set. */
static enum outcome attempt(struct run *r, struct secret *s, struct vks_rekey_counts *c)
{
    const struct vks_cred_record *rec = &s->rec;
    json_object *patch = json_object_new_object();
    size_t failed0 = r->res->c.failed, nerrors0 = r->res->nerrors;
    if (patch != NULL)
        build_patch(r, s, patch, c);
    size_t n = patch ? (size_t)json_object_object_length(patch) : 0;
    const char *kid = rec->managed ? custom_str(rec, "key_id") : NULL;
    /* every value is under the target but the metadata does not say so: an earlier run was killed
       between its data and metadata writes, or the credential was written under the target */
    bool meta_behind = rec->managed && n == 0 && r->res->c.failed == failed0 && c->values_current > 0 &&
                       (kid == NULL || strcmp(kid, r->o->target) != 0);
    struct vks_err e;
    vks_err_clear(&e);
    vks_status st = patch ? VKS_OK : vks_err_set(&e, VKS_E_NOMEM, "out of memory");
    if (st == VKS_OK && (n > 0 || meta_behind) && rec->managed && rec->rev != s->version &&
        !(meta_behind && rec->rev == s->version - 1))
        st = vks_err_set(&e, VKS_E_CONFLICT, "metadata rev %lld lags the data version %lld (an edit cut short): "
                         "`vks cred rotate --resume` repairs it; left alone", (long long)rec->rev,
                         (long long)s->version);
    bool lost = false;
    if (st == VKS_OK && (n > 0 || meta_behind) && !r->o->dry_run)
        lost = (st = write_secret(r, s, patch, n, &e)) == VKS_E_CONFLICT;
    json_object_put(patch);
    if (lost) { /* the next try reports its own field errors */
        r->res->c.failed = failed0;
        r->res->nerrors = nerrors0;
        return RETRY;
    }
    if (st != VKS_OK)
        rekey_item_error(r->res, s->path, NULL, st, e.msg);
    else if (n > 0) {
        c->secrets_changed++;
        c->managed_changed += rec->managed;
        c->values_rekeyed += n;
    } else if (meta_behind && !r->o->dry_run)
        r->res->c.meta_repaired++;
    return DONE;
}

static void one_secret(struct run *r, const char *path)
{
    struct secret *s = calloc(1, sizeof *s);
    if (s == NULL) {
        rekey_item_error(r->res, path, NULL, VKS_E_NOMEM, "out of memory");
        return;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    size_t pl = strlen(r->ctx->prefix);
    snprintf(s->name, sizeof s->name, "%s", strncmp(path, r->ctx->prefix, pl) == 0 ? path + pl : path);
    for (int t = 0; t <= VKS_REKEY_CAS_TRIES; t++) {
        struct vks_err e;
        vks_err_clear(&e);
        bool live = false;
        struct vks_rekey_counts c = { 0 };
        vks_status st = rekey_secret_read(r->ctx, s, &live, &r->res->c.requests, &e);
        if (st == VKS_OK)
            drill(r, 1);
        enum outcome out = DONE;
        if (st != VKS_OK)
            rekey_item_error(r->res, path, NULL, st, e.msg);
        else if (!live)
            r->res->c.no_live++;
        else if (s->rec.managed && strcmp(s->rec.state, "rotating") == 0) {
            r->res->c.busy++;
            rekey_item_error(r->res, path, NULL, VKS_E_CONFLICT, "a rotation is in flight: finish it (`vks cred rotate "
                       "--resume`) or abort it, then run vks rekey again; left alone");
        } else if (t == VKS_REKEY_CAS_TRIES) {
            rekey_item_error(r->res, path, NULL, VKS_E_CONFLICT, "edited concurrently on every try: left alone, run "
                       "vks rekey again");
        } else if ((out = attempt(r, s, &c)) == RETRY) {
            r->res->c.cas_retries++;
        }
        if (out == DONE) {
            struct vks_rekey_counts *a = &r->res->c;
            a->secrets_changed += c.secrets_changed, a->managed_changed += c.managed_changed;
            a->values_rekeyed += c.values_rekeyed, a->values_current += c.values_current;
            a->values_plain += c.values_plain, a->values_other += c.values_other;
        }
        rekey_secret_reset(s);
        if (out == DONE)
            break;
    }
    free(s);
}

/* ------------------------------------------------------------------ the run */

static vks_status run_audit(struct run *r, vks_status st, struct vks_err *err)
{
    const struct vks_rekey_counts *c = &r->res->c;
    char detail[200];
    snprintf(detail, sizeof detail, "to=%s secrets=%zu changed=%zu values=%zu current=%zu plain=%zu failed=%zu "
             "busy=%zu", r->o->target, c->secrets, c->secrets_changed, c->values_rekeyed, c->values_current,
             c->values_plain, c->failed, c->busy);
    struct vks_audit_admin_event ev = {
        .action = "run", .group = "rekey", .status = st, .error = st != VKS_OK && err ? err->msg : NULL,
        .operator_name = r->ctx->operator_name[0] ? r->ctx->operator_name : NULL,
        .operator_accessor = r->ctx->operator_accessor[0] ? r->ctx->operator_accessor : NULL,
        .source = r->ctx->source, .vault_addr = r->ctx->vault_addr, .mount = r->ctx->mount, .path = r->ctx->prefix,
        .detail = detail,
    };
    struct vks_err aerr;
    vks_err_clear(&aerr);
    vks_status ast = vks_audit_emit_admin(&ev, NULL, &aerr);
    if (st == VKS_OK && ast != VKS_OK) {
        vks_err_set(err, ast, "the rekey was done but %s", aerr.msg);
        return ast;
    }
    return st;
}

static vks_status check_target(const struct vks_rekey_opts *o, struct vks_err *err)
{
    const struct vks_keyring *kr = o->ctx ? o->ctx->keyring : NULL;
    if (o->ctx == NULL || o->target == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_rekey_run: no context or target");
    for (size_t i = 0; i < vks_keyring_count(kr); i++)
        if (strcmp(vks_keyring_id(kr, i), o->target) == 0)
            return VKS_OK;
    return vks_err_set(err, VKS_E_CONFIG, "--to '%.64s': no such key id in the keyring (load the new key next to "
                       "the old ones: VKS_ENCRYPTION_KEYS or VKS_ENCRYPTION_KEYRING_FILE); nothing was read",
                       o->target);
}

vks_status vks_rekey_run(const struct vks_rekey_opts *o, struct vks_rekey_result *res, struct vks_err *err)
{
    memset(res, 0, sizeof *res);
    vks_status st = check_target(o, err);
    if (st != VKS_OK)
        return st;
    struct run r = { .o = o, .ctx = o->ctx, .res = res, .phase = o->dry_run ? "dry-run" : "rekey" };
    if (!o->dry_run)
        st = vks_vault_token_identity(o->ctx->vault, o->ctx->operator_name, sizeof o->ctx->operator_name,
                                      o->ctx->operator_accessor, sizeof o->ctx->operator_accessor, err);
    o->ctx->identity_known = st == VKS_OK && !o->dry_run;
    struct names nm = { .max = o->max_secrets };
    if (st == VKS_OK)
        st = rekey_walk(res, o->ctx->vault, o->ctx->mount, o->ctx->prefix, 0, &nm, &res->c.requests, err);
    if (st == VKS_OK)
        drill(&r, 0);
    res->c.secrets = nm.n;
    for (size_t i = 0; st == VKS_OK && i < nm.n; i++) {
        one_secret(&r, nm.v[i]);
        if (o->progress)
            o->progress(o->progress_arg, r.phase, i + 1, nm.n);
    }
    rekey_names_free(&nm);
    if (st == VKS_OK && res->c.failed > 0)
        st = vks_err_set(err, VKS_E_CONFLICT, "%zu item(s) were not re-keyed (listed above); nothing was lost: fix "
                         "them and run vks rekey again", res->c.failed);
    return o->dry_run ? st : run_audit(&r, st, err);
}

